"""Persistence and resilience against real node processes.

The store (src/state/store.h, src/core/persist.c): a local registration or
removal is durable before the API acknowledges it, so a kill -9 at any moment
loses none; at restart a node restores and re-announces its resources and
re-dials the peers it knew; restored remote records are verified again and
live one lease unless their host shows up; a corrupt, unwritable, foreign,
newer-schema, in-use or full database stops the node (exit 1) with a message
naming the file; schema 1 files are migrated. Then failure detection (a kill
-9'd node's resources vanish within the default 15 s lease, a briefly frozen
node is not declared dead) and the link policy (--min-links dials known
nodes, --max-links sheds the newest inbound link, re-dials back off).

Restarts that must keep a node's URLs use fixed loopback ports. Nothing
synchronises by sleeping: every wait polls against a deadline. The database
is inspected and tampered with through Python's sqlite3 while the node is
stopped (or read-only while it runs).
"""
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import websockets

from execlib import handler, procs  # noqa: F401 -- procs is a fixture
from meshlib import (BIN, Node, client_env, linked, rpc, sanitizer_reports, wait_for,
                     wait_linked)
from meshlib import free_port_unlistened


# ---- helpers -----------------------------------------------------------------------

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(mesh, name, data=None, listen_port=None, api_port=None, args=()):
    """Starts a node named NAME (its logs are NAME.stderr) on data directory
    DATA (default data-NAME), optionally on fixed ports. A later --listen or
    --api overrides the ephemeral ones meshlib.Node passes first."""
    a = []
    if listen_port is not None:
        a += ["--listen", "ws://127.0.0.1:%d" % listen_port]
    if api_port is not None:
        a += ["--api", "ws://127.0.0.1:%d" % api_port]
    n = Node(mesh, name, a + list(args))
    if data is not None:
        n.data = data
    mesh.nodes.append(n)
    return n.start()


def sigkill(node):
    """kill -9, flagged so that teardown expects no exit status."""
    node.killed = True
    node.kill()


def call(node, method, params=None):
    r = rpc(node.api, method, params, timeout=10.0)
    assert "result" in r, "%s on node %s failed: %s" % (method, node.name, r)
    return r["result"]


def local_records(node):
    return {r["resource_id"]: r for r in call(node, "query_resources", {"location": "local"})}


def records_of(node, host):
    """resource_id -> record of the records NODE lists as hosted by HOST."""
    return {r["resource_id"]: r for r in call(node, "query_resources", {"node": host.id})}


def counters(node):
    return call(node, "status")["counters"]


def unsigned(rec):
    return {k: v for k, v in rec.items() if k != "location"}


def register(node, rid, caps=("c",), meta=None):
    return call(node, "register_resource", {"resource_id": rid, "resource_type": "persisttest",
                                            "capabilities": list(caps),
                                            "metadata": meta or {}})


def node_cmd(data, extra=(), log="info"):
    return [BIN, "node", "--listen", "ws://127.0.0.1:0", "--api", "ws://127.0.0.1:0",
            "--data", str(data), "--log", log] + list(extra)


def run_node_expect_failure(data, what, name_in_message=None, timeout=20.0):
    """Runs a node on DATA that must refuse to start: exit status 1 (not a
    crash, not a hang), no banner, a message naming NAME_IN_MESSAGE (default
    DATA/state.db). A node that starts anyway is killed at once and the
    test fails."""
    name = name_in_message or os.path.join(str(data), "state.db")
    d = str(data).rstrip("/") + "-refused"
    out_path, err_path = d + ".stdout", d + ".stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(node_cmd(data), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=client_env())
    try:
        deadline = time.monotonic() + timeout
        while p.poll() is None and time.monotonic() < deadline:
            with open(out_path) as f:
                if "\n" in f.read():
                    break
            time.sleep(0.05)
    finally:
        started = p.poll() is None
        if started:
            p.kill()
        p.wait()
    with open(out_path) as f:
        stdout = f.read()
    with open(err_path) as f:
        stderr = f.read()
    assert not sanitizer_reports(stderr), "%s: sanitizer report:\n%s" % (what, stderr)
    assert not started, ("%s: the node is running (banner %r) instead of refusing; "
                         "stderr:\n%s" % (what, stdout, stderr[-2000:]))
    assert p.returncode == 1, ("%s: expected exit status 1, got %s; stderr:\n%s"
                               % (what, p.returncode, stderr))
    assert name in stderr, ("%s: the message does not name %s; stderr:\n%s"
                            % (what, name, stderr))
    return stderr


# ---- 1. kill -9 loses no acknowledged registration ----------------------------------

class Churn:
    """Registers, updates and unregisters resources on one API connection, one
    request at a time, recording what was acknowledged. The expected durable
    state is built from acknowledged replies only."""

    def __init__(self, rng, prefix, state, records, last_version):
        self.rng = rng
        self.prefix = prefix
        self.state = state                  # rid -> acknowledged version, None: removed
        self.records = records              # rid -> acknowledged record (live ones)
        self.last_version = last_version    # rid -> last acknowledged record version
        self.acks = 0
        self.inflight = None                # (op, rid) sent but not answered at the kill
        self.errors = []
        self.n = 0

    def next_op(self):
        live = [r for r, v in self.state.items() if v is not None]
        gone = [r for r, v in self.state.items() if v is None]
        x = self.rng.random()
        if len(live) < 5 or x < 0.45:
            self.n += 1
            return "register", "%s-%d" % (self.prefix, self.n)
        if x < 0.80:
            return "register", self.rng.choice(live)
        if x < 0.95 or not gone:
            return "unregister", self.rng.choice(live)
        return "register", self.rng.choice(gone)

    async def run(self, api, count):
        async with websockets.connect(api, open_timeout=10, close_timeout=1,
                                      max_size=None) as ws:
            for i in range(count):
                op, rid = self.next_op()
                if op == "register":
                    params = {"resource_id": rid, "resource_type": "persisttest",
                              "capabilities": ["c%d" % (i % 3)],
                              "metadata": {"op": "%s/%d" % (self.prefix, i)}}
                    method = "register_resource"
                else:
                    params = {"resource_id": rid}
                    method = "unregister_resource"
                self.inflight = (op, rid)
                try:
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                              "params": params}))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                except (websockets.ConnectionClosed, OSError):
                    return
                if "result" not in reply:
                    self.errors.append((op, rid, reply))
                    return
                if op == "register":
                    self.state[rid] = reply["result"]["version"]
                    self.records[rid] = unsigned(reply["result"])
                    self.last_version[rid] = reply["result"]["version"]
                else:
                    self.state[rid] = None
                    self.records.pop(rid, None)
                self.inflight = None
                self.acks += 1
        self.inflight = None


def check_restored(node, state, records, inflight):
    """Every acknowledged registration is local on NODE with the acknowledged
    record (same version and signature); every acknowledged removal stays
    removed; nothing else but the one request in flight at the kill. Returns
    the state as found, for the next round."""
    local = local_records(node)
    problems = []
    in_rid = inflight[1] if inflight else None
    for rid, v in sorted(state.items()):
        if rid == in_rid:
            continue
        if v is None:
            if rid in local:
                problems.append("%s: removal acknowledged, but restored as version %s"
                                % (rid, local[rid]["version"]))
        elif rid not in local:
            problems.append("%s: version %d acknowledged, missing after restart" % (rid, v))
        else:
            got = local[rid]
            if got.get("location") != "local":
                problems.append("%s: restored with location %r" % (rid, got.get("location")))
            if unsigned(got) != records[rid]:
                problems.append("%s: acknowledged version %d, restored version %s%s"
                                % (rid, v, got["version"],
                                   "" if got["version"] != v else " with other content"))
    expected_ids = {r for r, v in state.items() if v is not None}
    extra = set(local) - expected_ids - {in_rid}
    if extra:
        problems.append("restored resources never acknowledged: %s" % sorted(extra))
    if in_rid is not None:
        # The request in flight may or may not have become durable; either
        # way the result must be one of the two states.
        op, rid = inflight
        old = state.get(rid)
        if rid in local:
            got = local[rid]["version"]
            if op == "register":
                if old is not None and got < old:
                    problems.append("%s (in flight): restored version %s below acknowledged %s"
                                    % (rid, got, old))
            elif got != old:
                problems.append("%s (unregister in flight): restored version %s, acknowledged %s"
                                % (rid, got, old))
        elif op == "register" and old is not None:
            problems.append("%s: acknowledged version %s vanished (an update was in flight)"
                            % (rid, old))
    assert not problems, "after kill -9 and restart of %s:\n  %s" % (node.name,
                                                                    "\n  ".join(problems))
    # Adopt what the in-flight request left behind.
    if in_rid is not None:
        if in_rid in local:
            state[in_rid] = local[in_rid]["version"]
            records[in_rid] = unsigned(local[in_rid])
        elif in_rid in state:
            state[in_rid] = None
            records.pop(in_rid, None)
    return local


def test_kill9_loses_no_acknowledged_registration(mesh):
    """Three times: ~150 register/update/unregister requests on one API
    connection while another thread SIGKILLs the node after a random number of
    acknowledgements (plus a few random milliseconds, to land mid-request);
    the node restarted on the same data directory lists every acknowledged
    registration as local with the acknowledged record, and no acknowledged
    removal. Each round continues on the restored node."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print("seed", seed)
    data = mesh.tmp / "data-X"
    state, records, last_version = {}, {}, {}
    node = start(mesh, "X0", data=data)
    node_id = node.id
    for rnd in range(3):
        churn = Churn(rng, "k%d" % rnd, state, records, last_version)
        target = rng.randint(5, 140)
        extra_ms = rng.uniform(0, 6)
        victim = node

        def killer():
            deadline = time.monotonic() + 30
            while churn.acks < target and time.monotonic() < deadline and victim.running():
                time.sleep(0.0005)
            time.sleep(extra_ms / 1000.0)
            sigkill(victim)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        asyncio.run(churn.run(node.api, 150))
        t.join(35)
        assert not churn.errors, "round %d: a request failed: %s" % (rnd, churn.errors)
        assert not victim.running()
        print("round %d: killed after %d acknowledgements (target %d + %.1f ms), in flight %s"
              % (rnd, churn.acks, target, extra_ms, churn.inflight))
        assert churn.acks >= target, "round %d: the loop ended early" % rnd
        node = start(mesh, "X%d" % (rnd + 1), data=data)
        assert node.id == node_id
        check_restored(node, state, records, churn.inflight)
    # Tombstones were restored too: re-registering a removed id continues
    # above its removal (else peers that remember the tombstone refuse it).
    gone = sorted(r for r, v in state.items() if v is None)
    if gone:
        rid = gone[0]
        v = register(node, rid)["version"]
        assert v > last_version[rid] + 1, (
            "%s removed after version %d, re-registered after restarts as version %d: the "
            "tombstone was not restored" % (rid, last_version[rid], v))


def test_acknowledged_unregister_survives_kill9(mesh):
    """An unregister acknowledged an instant before a kill -9 stays done: the
    resource is gone after restart, its neighbour kept; re-registering it
    continues above the tombstone's version."""
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data)
    register(x, "keep-me")
    register(x, "drop-me")
    register(x, "keep-me", meta={"v": "2"})

    async def unregister_then_kill():
        async with websockets.connect(x.api, open_timeout=10, close_timeout=1) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method":
                                      "unregister_resource",
                                      "params": {"resource_id": "drop-me"}}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            sigkill(x)       # at once: well before any periodic flush
            return reply

    reply = asyncio.run(unregister_then_kill())
    assert reply.get("result", {}).get("removed") is True, reply
    x2 = start(mesh, "X1", data=data)
    local = local_records(x2)
    assert "drop-me" not in local, "acknowledged unregister lost after kill -9: %s" % local
    assert local.get("keep-me", {}).get("version") == 2, local
    v = register(x2, "drop-me")["version"]
    assert v >= 3, ("drop-me (version 1, removed) re-registered after kill -9 as version %d: "
                    "the tombstone (version 2) was lost" % v)


# ---- 2. restart restores, re-announces and re-dials ---------------------------------

def test_restart_restores_and_reannounces(mesh):
    """X (fixed ports, --peer Y) hosts resources. SIGTERM: they vanish from Y
    and Z at once (bye). X restarted on the same data directory and ports,
    without --peer: its resources are local at once, it dials Y itself (the
    store's known peers), and Y and Z list the resources again with the same
    versions and signatures within a few seconds."""
    z = start(mesh, "Z")
    y = start(mesh, "Y", args=["--peer", z.listen])
    wait_linked([(y, z)])
    lport, aport = free_port(), free_port()
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data, listen_port=lport, api_port=aport,
              args=["--peer", y.listen])
    wait_linked([(x, y)])
    mine = {}
    for i in range(3):
        rec = register(x, "svc%d" % i, caps=["cap%d" % i], meta={"n": str(i)})
        mine[rec["resource_id"]] = unsigned(rec)
    mine["svc1"] = unsigned(register(x, "svc1", caps=["cap1", "more"]))   # version 2

    def listed(node):
        recs = records_of(node, x)
        return {k: unsigned(v) for k, v in recs.items()} == mine
    wait_for(lambda: listed(y) and listed(z), 5.0, what="X's resources on Y and Z")

    t0 = time.monotonic()
    assert x.terminate() == 0, x.stderr()
    wait_for(lambda: not records_of(y, x) and not records_of(z, x), 3.0,
             what="X's resources gone from Y and Z after its bye")
    print("bye took effect within %.2fs of SIGTERM" % (time.monotonic() - t0))

    x2 = start(mesh, "X1", data=data, listen_port=lport, api_port=aport)
    assert (x2.id, x2.listen, x2.api) == (x.id, x.listen, x.api)
    local = {k: unsigned(v) for k, v in local_records(x2).items()}
    assert local == mine, "restored local records differ: %s vs %s" % (local, mine)
    t1 = time.monotonic()
    wait_for(lambda: y.id in x2.peer_ids(), 5.0, what="X re-dialing Y from its store")
    print("X linked to Y again %.2fs after its banner" % (time.monotonic() - t1))
    link = [p for p in x2.peers() if p["id"] == y.id][0]
    assert link["direction"] == "out", "the link X-Y was not dialed by X: %s" % link
    wait_for(lambda: listed(y) and listed(z), 5.0,
             what="X's restored resources on Y and Z (re-announced)")
    print("resources back on Y and Z %.2fs after X's banner" % (time.monotonic() - t1))


def test_known_peers_survive_kill9(mesh):
    """Peers that came up are written within a second (batched): a node
    killed -9 after that and restarted without --peer re-dials them."""
    y = start(mesh, "Y")
    z = start(mesh, "Z", args=["--peer", y.listen])
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data, args=["--peer", y.listen])
    wait_linked([(x, y), (z, y)])
    db = str(data / "state.db")

    def peer_rows():
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            return {r[0]: r[1] for r in con.execute("SELECT url, node_id FROM peers")}
        finally:
            con.close()
    rows = wait_for(lambda: (lambda r: r if y.listen in r else None)(peer_rows()), 5.0,
                    what="Y in X's stored peers")
    assert rows[y.listen] == y.id, rows
    sigkill(x)
    x2 = start(mesh, "X1", data=data)
    wait_for(lambda: y.id in x2.peer_ids(), 5.0, what="X re-dialing Y after kill -9")


# ---- 3. restored remote records are verified again ----------------------------------

def test_tampered_remote_record_not_restored(mesh):
    """X caches Y's records. While X is stopped, one cached record's JSON is
    changed in state.db (a capability, not re-signed), and so is one of X's
    own. X restarted: both are refused (logged, counted forged), never
    served, and the genuine remote one comes back from Y through
    anti-entropy."""
    y = start(mesh, "Y")
    register(y, "target", caps=["genuine_cap"])
    register(y, "bystander", caps=["other_cap"])
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data, args=["--peer", y.listen])
    wait_linked([(x, y)])
    register(x, "mine", caps=["own_cap"])
    wait_for(lambda: set(records_of(x, y)) == {"target", "bystander"}, 5.0,
             what="Y's records on X")
    assert x.terminate() == 0, x.stderr()

    db = str(data / "state.db")
    con = sqlite3.connect(db)
    try:
        rows = dict(con.execute("SELECT resource_id, is_local FROM records").fetchall())
        assert rows == {"target": 0, "bystander": 0, "mine": 1}, "X's stored records: %s" % rows
        for rid, was, now in (("target", "genuine_cap", "stolen_cap"),
                              ("mine", "own_cap", "own_evil")):
            (text, ) = con.execute("SELECT json FROM records WHERE resource_id=?",
                                   (rid, )).fetchone()
            rec = json.loads(text)
            assert rec["capabilities"] == [was], rec
            rec["capabilities"] = [now]
            con.execute("UPDATE records SET json=? WHERE resource_id=?",
                        (json.dumps(rec, separators=(",", ":")), rid))
        con.commit()
    finally:
        con.close()

    x2 = start(mesh, "X1", data=data)
    # Served at once from the restored cache: the bystander, never the forgery.
    first = call(x2, "query_resources", {})
    bad = [r for r in first if {"stolen_cap", "own_evil"} & set(r.get("capabilities", []))]
    assert not bad, "X serves a tampered record after restart: %s" % bad
    assert call(x2, "query_resources", {"capabilities": ["stolen_cap"]}) == []
    log = x2.stderr()
    m = re.search(r"restored (\d+) local and (\d+) remote records from (\S+) \((\d+) refused", log)
    assert m, "no restore summary in X's log:\n%s" % log
    assert (m.group(1), m.group(2), m.group(4)) == ("0", "1", "2"), m.group(0)
    assert re.search(r"WARN.*not restoring local record.*", log), log
    assert m.group(3) == db, m.group(0)
    assert counters(x2)["forged"] >= 1, counters(x2)

    def genuine_back():
        assert call(x2, "query_resources", {"capabilities": ["stolen_cap"]}) == [], \
            "X serves the tampered record"
        r = records_of(x2, y).get("target")
        return r is not None and r["capabilities"] == ["genuine_cap"]
    wait_for(genuine_back, 8.0, what="the genuine record back on X from Y")

    # The store was corrected too (remote writes are batched once a second).
    def stored_caps():
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            row = c.execute("SELECT json FROM records WHERE resource_id='target'").fetchone()
        finally:
            c.close()
        return row is not None and json.loads(row[0])["capabilities"] == ["genuine_cap"]
    wait_for(stored_caps, 5.0, what="the genuine record written over the forgery in state.db")


def test_restored_records_of_a_dead_host_expire(mesh):
    """Restored remote records get a fresh lease, not eternal life: X caches
    Y's record, X stops, Y dies (kill -9: no bye). X restarted (lease 2 s)
    serves the restored record at first and drops it within its lease, Y
    never having shown up."""
    y = start(mesh, "Y")
    register(y, "ephemeral")
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data, args=["--peer", y.listen, "--lease-ms", "2000"])
    wait_linked([(x, y)])
    wait_for(lambda: "ephemeral" in records_of(x, y), 5.0, what="Y's record on X")
    assert x.terminate() == 0, x.stderr()
    sigkill(y)
    x2 = start(mesh, "X1", data=data, args=["--lease-ms", "2000"])
    t0 = time.monotonic()
    assert "ephemeral" in records_of(x2, y), "the cached record was not restored"
    wait_for(lambda: not records_of(x2, y), 2.0 + 2.0,
             what="the dead host's restored record expiring on X")
    print("restored record of a dead host gone %.2fs after X's banner" % (time.monotonic() - t0))
    assert counters(x2)["leases_expired"] >= 1


def test_departed_node_not_resurrected_from_cache(mesh):
    """Y registers records and leaves with bye at once, so X learns the
    records and the departure within the same one-second write batch. Once
    X has dropped them, its store must not hold them either: X stopped and
    restarted must not serve Y's records again (they would come back with a
    fresh lease, ghosts of a node that said goodbye). Checked three times:
    the batch is a hash map, its order differs run to run."""
    for rnd in range(3):
        y = start(mesh, "Y%d" % rnd)
        data = mesh.tmp / ("data-X%d" % rnd)
        x = start(mesh, "X%d" % rnd, data=data, args=["--peer", y.listen])
        wait_linked([(x, y)])

        async def burst():
            async with websockets.connect(y.api, open_timeout=10, close_timeout=1) as ws:
                for i in range(10):
                    await ws.send(json.dumps({
                        "jsonrpc": "2.0", "id": i, "method": "register_resource",
                        "params": {"resource_id": "brief%d-%d" % (rnd, i),
                                   "resource_type": "persisttest"}}))
                    assert "result" in json.loads(await asyncio.wait_for(ws.recv(), 10))
        asyncio.run(burst())
        assert y.terminate() == 0
        wait_for(lambda: not records_of(x, y), 5.0, what="Y's records gone from X after bye")
        assert x.terminate() == 0
        con = sqlite3.connect("file:%s?mode=ro" % (data / "state.db"), uri=True, timeout=5)
        try:
            stored = [r[0] for r in con.execute(
                "SELECT resource_id FROM records WHERE node=? AND is_local=0", (y.id, ))]
        finally:
            con.close()
        x2 = start(mesh, "X%d-again" % rnd, data=data)
        served = sorted(records_of(x2, y))
        assert not stored and not served, (
            "round %d: Y left with bye and X dropped its records, but X's store kept %s and "
            "X serves %s again after a restart" % (rnd, sorted(stored), served))
        assert x2.terminate() == 0


def test_served_resource_not_restored_without_its_handler(mesh, procs):
    """A resource served by an API client (`meshzero serve`) lives as long as
    that client's connection: "the resources it served are unregistered" when
    it closes (PROTOCOL.md section 8), "the resource is unregistered when serve
    exits" (serve --help). A node restart ends that connection, so the
    restarted node must not restore the resource and re-announce it to the
    mesh with no handler behind it (every call would fail with handler_error,
    and nothing would ever remove it). A plainly registered resource next to
    it is restored."""
    y = start(mesh, "Y")
    data = mesh.tmp / "data-X"
    x = start(mesh, "X0", data=data, args=["--peer", y.listen])
    wait_linked([(x, y)])
    register(x, "plain")
    serve = procs.serve(x, "served", handler("echo.sh"), caps=["echo"])
    wait_for(lambda: set(records_of(y, x)) == {"plain", "served"}, 5.0,
             what="both resources on Y")
    assert x.terminate() == 0, x.stderr()
    serve.wait(10.0)
    x2 = start(mesh, "X1", data=data)
    wait_linked([(x2, y)])
    wait_for(lambda: "plain" in records_of(y, x2), 5.0, what="plain back on Y")
    local = local_records(x2)
    assert "plain" in local
    problems = []
    if "served" in local:
        r = rpc(x2.api, "execute_remote", {"resource_id": "served", "method": "echo",
                                           "timeout_ms": 3000}, timeout=10.0)
        problems.append("X restored 'served' without its handler (a call: %s)"
                        % r.get("error", r).get("message"))
    if "served" in records_of(y, x2):
        problems.append("X re-announced 'served' to Y")
    assert not problems, "\n  ".join(problems)


# ---- 4. corrupt, unwritable and full databases --------------------------------------

def test_corrupt_database_stops_the_node(mesh):
    """Garbage in state.db, and a real database with its pages (all but the
    first) overwritten: the node exits 1 naming the file, without touching
    it."""
    x = start(mesh, "X")
    for i in range(40):
        register(x, "r%d" % i, meta={"pad": "p" * 1500})
    assert x.terminate() == 0, x.stderr()
    db = x.data / "state.db"
    for extra in ("state.db-wal", "state.db-shm"):
        try:
            os.unlink(str(x.data / extra))
        except FileNotFoundError:
            pass
    good = db.read_bytes()
    page = int.from_bytes(good[16:18], "big")
    page = 65536 if page == 1 else page
    assert len(good) >= 4 * page, "the database has only %d bytes" % len(good)

    # Pages 2.. overwritten: a valid header, broken b-trees.
    rng = random.Random(7)
    broken = good[:page] + bytes(rng.randrange(256) for _ in range(len(good) - page))
    db.write_bytes(broken)
    err = run_node_expect_failure(x.data, "corrupt pages")
    print("corrupt pages:", err.strip())
    assert db.read_bytes() == broken, "the node modified the corrupt file"

    garbage = b"this is not an SQLite database\n" * 300
    db.write_bytes(garbage)
    err = run_node_expect_failure(x.data, "garbage file")
    print("garbage:", err.strip())
    assert db.read_bytes() == garbage, "the node modified the garbage file"


def test_unwritable_database_stops_the_node(mesh, tmp_path):
    """state.db a directory, or its WAL a directory (root ignores modes):
    exit 1 naming the file."""
    d1 = tmp_path / "data-dir-db"
    (d1 / "state.db").mkdir(parents=True)
    print(run_node_expect_failure(d1, "state.db is a directory").strip())
    d2 = tmp_path / "data-dir-wal"
    (d2 / "state.db-wal").mkdir(parents=True)
    print(run_node_expect_failure(d2, "state.db-wal is a directory").strip())


def test_data_directory_in_use_is_refused(mesh):
    """A second node on a data directory a running node uses would share its
    identity and state.db: both would acknowledge registrations and overwrite
    each other's rows (an acknowledged record replaced by another one of the
    same id and version). The second must refuse to start (exit 1, naming the
    file or directory); the first keeps its acknowledged record."""
    x = start(mesh, "X")
    rec = unsigned(register(x, "only-mine", caps=["first"]))
    try:
        print(run_node_expect_failure(x.data, "second node on the same data directory",
                                      name_in_message=str(x.data), timeout=10.0).strip())
    finally:
        assert x.running(), "the first node died"
    assert unsigned(local_records(x)["only-mine"]) == rec


def test_full_disk_stops_the_node_without_acknowledging(mesh, tmp_path):
    """A node whose files may not grow past 512 KiB (RLIMIT_FSIZE, as a full
    disk): registrations are acknowledged until the store fails; the failing
    one is refused with the store's message, the node exits 1 naming the file,
    and every acknowledged registration is there after a restart."""
    data = tmp_path / "data-full"
    limit = 512 * 1024

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out_path, err_path = tmp_path / "full.stdout", tmp_path / "full.stderr"
    with open(str(out_path), "wb") as out, open(str(err_path), "wb") as err:
        p = subprocess.Popen(node_cmd(data, log="warn"), stdin=subprocess.DEVNULL, stdout=out,
                             stderr=err, env=client_env(), preexec_fn=limited)
    acked, refused = {}, []
    try:
        def banner():
            text = out_path.read_text()
            if "\n" in text:
                return text
            assert p.poll() is None, "exited before its banner: %s" % err_path.read_text()
            return None
        api = wait_for(banner, 15.0, what="banner").split()[5]

        async def fill():
            async with websockets.connect(api, open_timeout=10, close_timeout=1,
                                          max_size=None) as ws:
                for i in range(200):
                    rid = "big%d" % i
                    await ws.send(json.dumps({
                        "jsonrpc": "2.0", "id": i, "method": "register_resource",
                        "params": {"resource_id": rid, "resource_type": "persisttest",
                                   "metadata": {"blob": "x" * 8000}}}))
                    try:
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    except websockets.ConnectionClosed:
                        return
                    if "result" in reply:
                        if refused:
                            raise AssertionError("%s acknowledged after the store failed" % rid)
                        acked[rid] = reply["result"]["version"]
                    else:
                        refused.append(reply["error"]["message"])
        asyncio.run(fill())
        rc = p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    stderr = err_path.read_text()
    path = str(data / "state.db")
    assert not sanitizer_reports(stderr), stderr
    assert refused, "no registration was refused (%d acknowledged)" % len(acked)
    assert path in refused[0], "the refusal does not name the file: %s" % refused[0]
    assert rc == 1, "exit status %s after the store failed; stderr:\n%s" % (rc, stderr[-3000:])
    assert path in stderr.strip().splitlines()[-1], stderr[-3000:]
    print("%d acknowledged, then: %s" % (len(acked), refused[0]))

    x = start(mesh, "X-after", data=data)
    local = local_records(x)
    lost = sorted(r for r in acked if r not in local)
    assert not lost, "acknowledged before the disk filled, missing after restart: %s" % lost


def test_schema_versions(mesh):
    """A state.db of a newer schema is refused (exit 1, naming the file, file
    untouched); one of schema 1 is migrated to the current schema and its
    records served."""
    x = start(mesh, "X")
    register(x, "old-one", caps=["c1"])
    register(x, "old-two")
    before = local_records(x)
    assert x.terminate() == 0, x.stderr()
    db = x.data / "state.db"

    def sql(path, *stmts):
        con = sqlite3.connect(str(path))
        try:
            for st in stmts:
                con.execute(st)
            con.commit()
        finally:
            con.close()

    # Schema 1: no updated_ms, no indexes, no peers table.
    sql(db, "DROP INDEX records_remote_by_node", "DROP INDEX tombstones_by_until",
        "DROP TABLE peers", "ALTER TABLE records DROP COLUMN updated_ms",
        "UPDATE meta SET value=1 WHERE key='schema_version'")
    v1 = db.read_bytes()

    # A newer schema than the code knows: refused, nothing changed.
    sql(db, "UPDATE meta SET value=99 WHERE key='schema_version'")
    newer = db.read_bytes()
    print(run_node_expect_failure(x.data, "schema 99").strip())
    assert db.read_bytes() == newer, "the node modified a database of a newer schema"

    # Schema 1 again: migrated, records served.
    db.write_bytes(v1)
    x2 = start(mesh, "X-migrated", data=x.data)
    after = local_records(x2)
    assert {k: unsigned(v) for k, v in after.items()} == \
        {k: unsigned(v) for k, v in before.items()}, (before, after)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
    try:
        (ver, ) = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        cols = [r[1] for r in con.execute("PRAGMA table_info(records)")]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert int(ver) == 2 and "updated_ms" in cols and "peers" in tables, (ver, cols, tables)


def test_foreign_database_refused_untouched(tmp_path):
    """An SQLite database of something else (another program's, a wrong
    --data) is refused, exit 1 naming the file, and left exactly as it was:
    not even switched to WAL mode (bytes 18-19 of the header)."""
    other = tmp_path / "data-other"
    other.mkdir()
    con = sqlite3.connect(str(other / "state.db"))
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()
    before = (other / "state.db").read_bytes()
    print(run_node_expect_failure(other, "foreign database").strip())
    after = (other / "state.db").read_bytes()
    assert after[18:20] == before[18:20], (
        "the node switched the database it refused to journal mode WAL (header bytes 18-19 "
        "%s -> %s)" % (list(before[18:20]), list(after[18:20])))
    assert after == before, "the node modified the database it refused"


def test_full_disk_during_remote_batch_stops_the_node(mesh, tmp_path):
    """The batched path fails loudly too: X, whose files may not grow past
    256 KiB, links to Y holding ~600 KiB of records; writing the synced
    records fails: X exits 1 naming its state.db (the records are not
    silently dropped)."""
    y = start(mesh, "Y")

    async def fill():
        async with websockets.connect(y.api, open_timeout=10, close_timeout=1,
                                      max_size=None) as ws:
            for i in range(75):
                await ws.send(json.dumps({
                    "jsonrpc": "2.0", "id": i, "method": "register_resource",
                    "params": {"resource_id": "big%d" % i, "resource_type": "persisttest",
                               "metadata": {"blob": "y" * 8000}}}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert "result" in reply, reply
    asyncio.run(fill())

    data = tmp_path / "data-full"
    limit = 256 * 1024

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    err_path = tmp_path / "full.stderr"
    with open(str(err_path), "wb") as err:
        p = subprocess.Popen(node_cmd(data, ["--peer", y.listen], log="warn"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             env=client_env(), preexec_fn=limited)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    stderr = err_path.read_text()
    assert not sanitizer_reports(stderr), stderr
    assert rc == 1, ("X (files limited to %d bytes) did not stop on a failing batch: status %s"
                     "; stderr:\n%s" % (limit, rc, stderr[-3000:]))
    assert str(data / "state.db") in stderr.strip().splitlines()[-1], stderr[-3000:]
    print(stderr.strip().splitlines()[-1])


# ---- 5. failure detection -------------------------------------------------------------

def test_dead_node_expires_within_lease_and_frozen_node_survives(mesh):
    """Default lease (15 s): a node frozen (SIGSTOP) for 2 s keeps its
    resources and link on its neighbour; a kill -9'd node's resources vanish
    from the neighbour within 15 s (+2 s margin) of the kill, while the once
    frozen node's stay."""
    y = start(mesh, "Y")
    dead = start(mesh, "Dead", args=["--peer", y.listen])
    slow = start(mesh, "Slow", args=["--peer", y.listen])
    wait_linked([(dead, y), (slow, y)])
    register(dead, "doomed")
    register(slow, "sleepy")
    wait_for(lambda: "doomed" in records_of(y, dead) and "sleepy" in records_of(y, slow),
             5.0, what="both resources on Y")

    slow.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            assert "sleepy" in records_of(y, slow), (
                "Y dropped the frozen node's resource after %.1fs" % (time.monotonic() - t0))
            time.sleep(0.1)
    finally:
        slow.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: linked(slow, y), 10.0, what="Slow linked to Y after SIGCONT")

    sigkill(dead)
    t0 = time.monotonic()
    bound = 15.0 + 2.0
    while True:
        now = time.monotonic() - t0
        recs = {r["resource_id"] for r in call(y, "query_resources", {})}
        assert "sleepy" in recs, "the live (once frozen) node's resource vanished from Y"
        if "doomed" not in recs:
            break
        assert now < bound, "the dead node's resource still on Y %.1fs after kill -9" % now
        time.sleep(0.1)
    print("dead node's resource gone from Y %.2fs after kill -9 (bound %.0f s)" % (now, bound))
    assert counters(y)["leases_expired"] >= 1, counters(y)
    assert linked(slow, y)


# ---- 6. link policy -------------------------------------------------------------------

def test_min_links_dials_known_nodes(mesh):
    """N (--min-links 2, --peer A) learns B, C, D from A's digest and dials
    one of them; that node is killed: N dials another known node until it has
    two links again."""
    a = start(mesh, "A")
    others = [start(mesh, n, args=["--peer", a.listen]) for n in ("B", "C", "D")]
    wait_linked([(o, a) for o in others])
    n = start(mesh, "N", args=["--peer", a.listen, "--min-links", "2"])
    wait_for(lambda: len(n.peer_ids()) >= 2, 10.0, what="N with two links")
    first = n.peer_ids() - {a.id}
    assert len(first) == 1 and a.id in n.peer_ids(), n.peers()
    victim = [o for o in others if o.id in first][0]
    assert counters(n)["links_dialed_auto"] >= 1
    sigkill(victim)
    t0 = time.monotonic()

    def healed():
        ids = n.peer_ids() - {victim.id}
        return len(ids) >= 2 and ids
    ids = wait_for(healed, 15.0, what="N back to two links after losing %s" % victim.name)
    live = {o.id for o in others if o is not victim}
    assert a.id in ids and ids - {a.id} <= live, ids
    print("N dialed a new node %.2fs after losing one" % (time.monotonic() - t0))


def test_max_links_sheds_newest_inbound(mesh):
    """M (--max-links 2) linked from P1 and P2; P3 links too: M sheds the
    newest inbound link (P3's), counted links_shed, and keeps P1 and P2."""
    m = start(mesh, "M", args=["--max-links", "2"])
    p1 = start(mesh, "P1", args=["--peer", m.listen])
    p2 = start(mesh, "P2", args=["--peer", m.listen])
    wait_linked([(p1, m), (p2, m)])
    p3 = start(mesh, "P3", args=["--peer", m.listen])
    wait_for(lambda: counters(m)["links_shed"] >= 1, 8.0, what="M shedding a link")
    log = m.stderr()
    first = re.search(r"shedding ([0-9a-f]{12})", log)
    assert first and first.group(1) == p3.id[:12], (
        "M shed %s, not the newest inbound link (P3 %s)" % (first and first.group(1),
                                                              p3.id[:12]))
    # P3 re-dials M (static peer, with backoff) and is shed again; P1 and P2 stay.
    wait_for(lambda: m.peer_ids() == {p1.id, p2.id}, 10.0, what="M back to its 2 oldest links")
    assert p1.id in m.peer_ids() and p2.id in m.peer_ids()
    print("M shed %d links; P3's links: %s" % (counters(m)["links_shed"],
                                               [q["id"][:12] for q in p3.peers()]))


def test_shed_peer_backs_off(mesh):
    """A node shed for being over the high watermark must not come straight
    back in a loop: P3 keeps M as --peer, M (--max-links 2, full) sheds it.
    Re-dialed with the documented backoff (1 s doubling), P3 returns at most
    ~3 more times in the 14 s after the first shed (at ~+1-2, ~+4-6,
    ~+8-12 s). A backoff reset by every link that comes up re-dials at the
    same pace forever: a shed, a hello, a digest exchange every ~2 s."""
    m = start(mesh, "M", args=["--max-links", "2"])
    p1 = start(mesh, "P1", args=["--peer", m.listen])
    p2 = start(mesh, "P2", args=["--peer", m.listen])
    wait_linked([(p1, m), (p2, m)])
    start(mesh, "P3", args=["--peer", m.listen])
    wait_for(lambda: counters(m)["links_shed"] >= 1, 8.0, what="M shedding a link")
    t0 = time.monotonic()
    most = 4
    while time.monotonic() - t0 < 14.0:
        shed = counters(m)["links_shed"]
        assert shed <= most, (
            "M shed %d links within %.1fs of the first shed: the shed peer re-dials without "
            "backing off (every ~2 s)" % (shed, time.monotonic() - t0))
        time.sleep(0.25)
    print("M shed %d links in the 14 s after the first" % counters(m)["links_shed"])

def test_redial_backoff_doubles(mesh):
    """A --peer that refuses connections is re-dialed with exponential
    backoff: 1 s, 2 s, 4 s apart (plus up to 250 ms of jitter), as the
    node's own log timestamps show."""
    from datetime import datetime
    sock, port = free_port_unlistened()
    try:
        url = "ws://127.0.0.1:%d" % port
        x = start(mesh, "X", args=["--peer", url])
        pat = re.compile(r"^(\S+) INFO  \[node\] link %s closed before hello completed"
                         % re.escape(url), re.M)

        def failures():
            ts = pat.findall(x.stderr())
            return ts if len(ts) >= 4 else None
        ts = wait_for(failures, 12.0, interval=0.2, what="four failed dials")
    finally:
        sock.close()
    t = [datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() for v in ts[:4]]
    gaps = [round(b - a, 3) for a, b in zip(t, t[1:])]
    print("gaps between dials:", gaps)
    for gap, base in zip(gaps, (1.0, 2.0, 4.0)):
        assert base - 0.05 <= gap <= base + 0.25 + 0.5, "dial gaps %s, expected ~1, 2, 4 s" % gaps
