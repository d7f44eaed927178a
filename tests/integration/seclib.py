"""Helpers for test_security.py: fake peers (mzproto), a dishonest relay,
state snapshots, and the "an honest node is still served" check.

As in meshlib, nothing here synchronises by sleeping: waits poll a condition
against a deadline, or wait for a marker that travels behind the attack on
the same link (links deliver in order, so once the marker is handled, so
was everything sent before it).
"""
import asyncio
import concurrent.futures
import contextlib
import json
import time

import mzproto as mp
from execlib import ApiConn, in_directory
from meshlib import rpc, run, wait_for

# ---- a node's state through its API (cheaper than a CLI process per look) --------


def api(node, method, params=None):
    """One JSON-RPC call to NODE's API; its result. Callable from a coroutine
    too (it then blocks the loop for the call, as a CLI process would)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        r = rpc(node.api, method, params, timeout=10.0)
    else:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            r = ex.submit(rpc, node.api, method, params, 10.0).result()
    assert "result" in r, "%s %s on node %s: %s" % (method, params, node.name, r)
    return r["result"]


def status(node):
    return api(node, "status")


def ids(node):
    """resource_id -> record, of every record the node lists."""
    return {r["resource_id"]: r for r in api(node, "query_resources", {})}


def peer_ids(node):
    return {p["id"] for p in api(node, "peers")}


def wait_linked(pairs, timeout=10.0):
    for a, b in pairs:
        wait_for(lambda: b.id in peer_ids(a) and a.id in peer_ids(b), timeout,
                 what="link %s-%s" % (a.name, b.name))


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def in_thread(fn, *args, **kw):
    return await asyncio.to_thread(fn, *args, **kw)


async def wait_for_async(cond, timeout, what):
    return await asyncio.to_thread(wait_for, cond, timeout, 0.05, what)


def counters(node):
    return status(node)["counters"]


def snapshot(node):
    """resource_id -> the signed content of each record a node lists."""
    return {rid: (r["node"], r["owner_key"], r["version"], r["signature"])
            for rid, r in ids(node).items()}


def without(snap, *rids):
    return {k: v for k, v in snap.items() if k not in rids}


def node_id_of(mesh, name):
    """The id the node NAME of this mesh will have (its key is created now,
    in the data directory meshlib gives it)."""
    p = run(["id", "--data", str(mesh.tmp / ("data-" + name)), "--create", "--json"])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["id"]


async def linked_peer(node, key=None, network=None, offer=(), fetch=True):
    """A fake peer with an up link to NODE, after the §6.3 exchange: it
    fetched the node's records (fetch=True) and offered its own `offer`
    records in its digest, sending them when the node fetches them."""
    p = await mp.Peer(key or mp.Key()).open(node.listen)
    await p.handshake(network=network)
    assert p.node_id == node.id
    got, nodes = await p.link_up(offer=offer, fetch=fetch)
    return p, got, nodes


async def flush(peer, nodes, tag):
    """Announces a marker record from PEER and waits until every node in
    NODES lists it: what PEER sent before has been handled by then."""
    rec = mp.record(peer.key, "marker-" + tag, "marker")
    await peer.send(mp.envelope(peer.key, "announce", {"op": "upsert", "record": rec}))
    for n in nodes:
        await wait_for_async(lambda: "marker-" + tag in ids(n), 5.0,
                             "marker %s on node %s" % (tag, n.name))
    return rec["resource_id"]


# ---- the honest-service check ---------------------------------------------------

def honest_check(mesh, target, name, extra=()):
    """After an attack: a new honest node links to TARGET, a resource it
    serves propagates to TARGET, and TARGET executes it."""
    h = mesh.node(name, peers=[target], extra=extra)
    wait_linked([(target, h)])
    rid = "honest-" + name

    async def go():
        hc = await ApiConn.open(h.api)
        tc = await ApiConn.open(target.api)
        serving = None
        try:
            await hc.result("register_resource", {"resource_id": rid, "resource_type": "tool",
                                                  "handler": True})
            serving = asyncio.ensure_future(hc.serve(lambda p: {"echo": p["params"],
                                                                "caller": p["caller"]}))
            rec = await in_directory(tc, rid, 5.0)
            assert rec["node"] == h.id and mp.verify_record(rec)
            res = await tc.call("execute_remote", {"resource_id": rid, "method": "ping",
                                                   "params": {"n": 7}, "timeout_ms": 5000},
                                timeout=10)
            assert res.get("result") == {"echo": {"n": 7}, "caller": target.id}, res
        finally:
            if serving is not None:
                serving.cancel()
            await hc.close()
            await tc.close()
    arun(go(), 30)
    return h


# ---- a relay of our own -------------------------------------------------------------

LINK_TYPES = ("hello", "welcome", "digest", "fetch", "sync")   # link-level when to "*" or us


class Relay:
    """A fake node R with its own key that links (as a dialer) to several
    nodes and forwards every broadcast and unicast between them, hops + 1,
    like an honest relay. `mangle(from_id, env)` may change a message before
    it is forwarded (return None to drop it). Every frame R received or sent
    is kept in .frames (text), what it forwarded (as received) in .forwarded,
    and messages addressed to R itself in .own."""

    def __init__(self, key=None):
        self.key = key or mp.Key()
        self.peers = []
        self.sent = []
        self.forwarded = []
        self.own = []
        self.mangle = None
        self._tasks = []

    async def link(self, node):
        p, _, _ = await linked_peer(node, self.key, fetch=False)
        self.peers.append(p)
        self._tasks.append(asyncio.ensure_future(self._pump(p)))
        return p

    def peer_for(self, node_id):
        return next(p for p in self.peers if p.node_id == node_id)

    def frames(self):
        """Every text R received (handshake included) or sent."""
        out = [m.raw for p in self.peers for m in p.log]
        out += self.sent
        for p in self.peers:
            out += [json.dumps(p.sent_hello)]
        return out

    async def send_to(self, node_id, env):
        text = env if isinstance(env, str) else json.dumps(env, ensure_ascii=False)
        self.sent.append(text)
        await self.peer_for(node_id).send(text)

    async def _pump(self, p):
        while True:
            try:
                m = await p.recv(3600)
            except mp.Closed:
                return
            except asyncio.TimeoutError:
                continue
            to = m.get("recipient")
            if to == self.key.id or (to == "*" and m["type"] in LINK_TYPES):
                self.own.append(m)
                continue
            env = mp.loads_strict(m.raw)
            self.forwarded.append((p.node_id, env))
            out = dict(env)
            out["hops"] = env.get("hops", 0) + 1
            if self.mangle is not None:
                out = self.mangle(p.node_id, out)
                if out is None:
                    continue
            text = json.dumps(out, ensure_ascii=False)
            for q in self.peers:
                if q is not p:
                    self.sent.append(text)
                    try:
                        await q.send(text)
                    except Exception:   # noqa: BLE001 - a closed side: keep pumping
                        pass

    def captured(self, mtype, sender=None):
        return [e for f, e in self.forwarded
                if e["type"] == mtype and (sender is None or e["sender"] == sender)]

    async def close(self):
        for t in self._tasks:
            t.cancel()
        for p in self.peers:
            try:
                await p.close()
            except Exception:   # noqa: BLE001
                pass


@contextlib.asynccontextmanager
async def relayed_handler(a, d, rid, serve, relay=None):
    """A - R - D with R a Relay of ours (a new one unless given), API
    connections to A and D, and D hosting RID served by serve(dc) (a
    coroutine, cancelled at the end) until A lists it. Yields (relay, ac, dc);
    closes all of it after the block."""
    relay = relay or Relay()
    dc = await ApiConn.open(d.api)
    ac = await ApiConn.open(a.api)
    serving = None
    try:
        await relay.link(a)
        await relay.link(d)
        await dc.result("register_resource", {"resource_id": rid, "resource_type": "tool",
                                              "handler": True})
        serving = asyncio.ensure_future(serve(dc))
        await in_directory(ac, rid, 5.0)
        yield relay, ac, dc
    finally:
        if serving is not None:
            serving.cancel()
        await ac.close()
        await dc.close()
        await relay.close()


async def wait_until(cond, timeout, what, interval=0.05):
    """Polls a plain function from a coroutine without blocking the loop
    (the relay keeps pumping)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        await asyncio.sleep(interval)
