"""Routing and sync hardening against a single lying peer.

The liars are fake peers written from docs/PROTOCOL.md (mzproto.py) and a
relay of our own (seclib.Relay). Each class of attack has a test: lying
digests, a relay that stops forwarding calls, fetches that ask for more
than one answer's worth, records naming another host, and a web page's
request under a foreign Host name. docs/SECURITY.md has the threat model.
"""
import asyncio
import http.client
import json
import subprocess
import time

import mzproto as mp
from execlib import ApiConn, in_directory
from meshlib import BIN, client_env, wait_for
from seclib import (Relay, arun, counters, ids, linked_peer, wait_for_async, wait_linked,
                    wait_until)


async def reader(peer):
    """Keeps reading PEER's link (into peer.log) so the node never sees a
    slow link; cancelled by the caller."""
    while True:
        try:
            await peer.recv(3600)
        except asyncio.TimeoutError:
            continue
        except mp.Closed:
            return


async def serve_echo(conn, rid):
    await conn.result("register_resource", {"resource_id": rid, "resource_type": "tool",
                                            "handler": True})
    return asyncio.ensure_future(conn.serve(lambda p: {"echo": p["params"]}))


async def timed_call(conn, rid, n, timeout_ms=5000):
    t0 = time.monotonic()
    res = await conn.call("execute_remote", {"resource_id": rid, "method": "ping",
                                             "params": {"n": n}, "timeout_ms": timeout_ms},
                          timeout=timeout_ms / 1000 + 5)
    return res.get("result"), time.monotonic() - t0


# ---- routes only from evidence ---------------------------------------------------------

def test_lying_digest_does_not_divert_calls(mesh):
    """A - B - X, and a liar L linked to A that keeps claiming, in digests,
    to be at distance 0 from X. Digests are hints, never routes: every call
    from A to X succeeds through B, and none reaches L."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    x = mesh.node("X", peers=[b])
    wait_linked([(a, b), (b, x)])

    async def go():
        xc = await ApiConn.open(x.api)
        ac = await ApiConn.open(a.api)
        liar, _, _ = await linked_peer(a, fetch=False)
        pump = asyncio.ensure_future(reader(liar))
        serving = await serve_echo(xc, "victim-tool")
        try:
            await in_directory(ac, "victim-tool", 5.0)
            results = []
            for i in range(20):
                # the lie, repeated several times a second
                await liar.send_digest(hosts={x.id: 0, b.id: 0})
                results.append(await timed_call(ac, "victim-tool", i))
            got = [m for m in liar.log if m["type"] == "execute"]
            return results, got
        finally:
            serving.cancel()
            pump.cancel()
            await liar.close()
            await ac.close()
            await xc.close()
    results, got = arun(go(), 90)
    slowest = max(t for _, t in results)
    print("20 calls past the lying digests: slowest %.3f s, %d reached the liar"
          % (slowest, len(got)))
    assert [r for r, _ in results] == [{"echo": {"n": i}} for i in range(20)]
    assert got == []
    assert slowest < 1.0, results


def test_relay_that_stops_forwarding_calls_is_abandoned(mesh):
    """A - B - C - X (3 hops) and a relay R linked to A and X (2 hops): A's
    route to X goes through R. R then drops every execute. The first call
    after that fails over to the honest path within 2 s (the path is
    demoted, counted routes_demoted), and the next calls do not touch R."""
    lease = ["--lease-ms", "6000"]
    a = mesh.node("A", extra=lease)
    b = mesh.node("B", peers=[a], extra=lease)
    c = mesh.node("C", peers=[b], extra=lease)
    x = mesh.node("X", peers=[c], extra=lease)
    wait_linked([(a, b), (b, c), (c, x)])
    relay = Relay()

    async def go():
        xc = await ApiConn.open(x.api)
        ac = await ApiConn.open(a.api)
        serving = await serve_echo(xc, "far-tool")
        try:
            await in_directory(ac, "far-tool", 10.0)
            await relay.link(a)
            await relay.link(x)
            n0 = len(relay.captured("alive", x.id))
            await wait_until(lambda: len(relay.captured("alive", x.id)) > n0, 10.0,
                             "an alive of X through the relay")
            res, _ = await timed_call(ac, "far-tool", 0)
            assert res == {"echo": {"n": 0}}
            via_relay = len(relay.captured("execute", a.id))
            assert via_relay == 1, "the short path through the relay was not taken"
            d0 = (await ac.result("status"))["counters"]["routes_demoted"]
            relay.mangle = lambda frm, env: None if env["type"] == "execute" else env
            first = await timed_call(ac, "far-tool", 1)
            after = [await timed_call(ac, "far-tool", i) for i in range(2, 7)]
            d1 = (await ac.result("status"))["counters"]["routes_demoted"]
            return first, after, len(relay.captured("execute", a.id)) - via_relay, d1 - d0
        finally:
            serving.cancel()
            await relay.close()
            await ac.close()
            await xc.close()
    first, after, dropped, demoted = arun(go(), 90)
    print("relay stops forwarding: first call %.3f s, next five at most %.3f s; %d executes "
          "reached the relay; routes_demoted +%d"
          % (first[1], max(t for _, t in after), dropped, demoted))
    assert first[0] == {"echo": {"n": 1}} and first[1] < 2.0, first
    assert [r for r, _ in after] == [{"echo": {"n": i}} for i in range(2, 7)]
    assert max(t for _, t in after) < 1.0, after
    assert dropped == 1, "calls kept going to the relay that drops them"
    assert demoted >= 1


# ---- responses bounded by requests -----------------------------------------------------

def sync_bytes(peer, since):
    return sum(len(m.raw) for m in peer.log[since:] if m["type"] == "sync")


def pair_with_records(mesh, prefix, n=30):
    """A - B, with B hosting N records of ~900 bytes that A lists."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    for i in range(n):
        b.register("%s-%03d" % (prefix, i), "tool", caps=["x"], meta={"pad": "p" * 400})
    wait_for(lambda: sum(1 for r in ids(a) if r.startswith(prefix + "-")) == n, 10.0,
             what="B's records on A")
    return a, b


def test_fetch_of_duplicate_ids_yields_one_answer(mesh):
    """A fetch naming B 500 times is answered like a fetch naming B once:
    duplicates are collapsed (counted fetch_dups)."""
    a, b = pair_with_records(mesh, "dup")
    c0 = counters(a)

    async def go():
        p, _, _ = await linked_peer(a, fetch=False)
        try:
            start = len(p.log)
            await p.send(mp.envelope(p.key, "fetch", {"nodes": [b.id]}, recipient=a.id))
            once, _ = await p.read_sync()
            one = sync_bytes(p, start)
            start = len(p.log)
            req = await p.send(mp.envelope(p.key, "fetch", {"nodes": [b.id] * 500},
                                           recipient=a.id))
            many, _ = await p.read_sync()
            assert await p.drain(1.5)
            return len(once), one, len(many), sync_bytes(p, start), len(json.dumps(req))
        finally:
            await p.close()
    n_once, one, n_many, got, req_len = arun(go())
    c1 = counters(a)
    print("fetch of B once: %d records, %d bytes; 500 times (%d-byte request): %d records, "
          "%d bytes; fetch_dups +%d" % (n_once, one, req_len, n_many, got,
                                         c1["fetch_dups"] - c0["fetch_dups"]))
    assert n_once == n_many == 30
    assert got <= one * 1.1, (got, one)
    assert c1["fetch_dups"] - c0["fetch_dups"] == 499


FLOOD = 1000


def test_fetch_flood_is_throttled_and_honest_calls_still_served(mesh):
    """A peer sends 1,000 fetches of everything as fast as it can. A answers
    at most its per-asker budget (the rest refused, counted fetch_refused,
    told `busy`), and honest calls through A keep being answered in < 1 s."""
    a, b = pair_with_records(mesh, "fl")
    c0 = counters(a)

    async def go():
        bc = await ApiConn.open(b.api)
        ac = await ApiConn.open(a.api)
        serving = await serve_echo(bc, "honest-tool")
        p, _, _ = await linked_peer(a, fetch=False)
        pump = asyncio.ensure_future(reader(p))
        try:
            await in_directory(ac, "honest-tool", 5.0)
            start = len(p.log)
            t0 = time.monotonic()

            async def flood():
                for _ in range(FLOOD):
                    await p.send(mp.envelope(p.key, "fetch", {"nodes": [b.id, a.id]},
                                             recipient=a.id))
            attack = asyncio.ensure_future(flood())
            calls = []
            i = 0
            while not attack.done() or i < 5:
                calls.append(await timed_call(ac, "honest-tool", i))
                i += 1
            await attack
            await wait_until(lambda: sum(1 for m in p.log[start:] if m["type"] == "error")
                             > 0, 5.0, "a busy answer")
            took = time.monotonic() - t0
            return calls, p.log[start:], took
        finally:
            serving.cancel()
            pump.cancel()
            await p.close()
            await ac.close()
            await bc.close()
    calls, log, took = arun(go(), 90)
    c1 = counters(a)
    answers = sum(1 for m in log if m["type"] == "sync" and not m["payload"].get("more"))
    busy = sum(1 for m in log if m["type"] == "error" and m["payload"]["code"] == "busy")
    slowest = max(t for _, t in calls)
    print("%d fetches in %.2f s: %d answered, %d told busy, fetch_refused +%d; %d honest "
          "calls, slowest %.3f s" % (FLOOD, took, answers, busy,
                                     c1["fetch_refused"] - c0["fetch_refused"], len(calls),
                                     slowest))
    assert [r for r, _ in calls] == [{"echo": {"n": i}} for i in range(len(calls))]
    assert slowest < 1.0, calls
    # burst 10, then 2 a second
    assert answers <= 10 + 2 * (took + 1), answers
    assert c1["fetch_refused"] - c0["fetch_refused"] >= FLOOD - answers - 2
    assert busy > 0


# ---- host binding ------------------------------------------------------------------------

def test_sync_record_naming_another_host_is_refused(mesh):
    """A peer sends, in a sync, a record it signed as owner that names B as
    its host. A refuses it (counted unbound_records); when B registers that
    id itself, A lists B's record at once."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    c0 = counters(a)

    async def go():
        p, _, _ = await linked_peer(a, fetch=False)
        try:
            rec = mp.record(p.key, "squat", "tool", node=b.id)
            await p.send_sync([rec])
            await wait_for_async(lambda: counters(a)["unbound_records"]
                                 > c0["unbound_records"], 5.0, "the refusal counted")
            return rec
        finally:
            await p.close()
    arun(go())
    assert "squat" not in ids(a)
    b.register("squat", "tool")
    rec = wait_for(lambda: ids(a).get("squat"), 5.0, what="B's own record on A")
    assert rec["node"] == b.id and rec["owner_key"] == b.id
    assert counters(a)["unbound_records"] - c0["unbound_records"] == 1


# ---- Host header on the API listener ----------------------------------------------------

def http_req(node, path, host, method="POST", body=None, headers=None):
    h, port = node.api[len("ws://"):].split(":")
    conn = http.client.HTTPConnection(h, int(port), timeout=10)
    hd = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    hd.update(headers or {})
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host)
    for k, v in hd.items():
        conn.putheader(k, v)
    data = body.encode() if body else b""
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    if r.status != 101:         # an upgraded link has no body to read
        r.read()
    conn.close()
    return r.status


def test_foreign_host_header_refused(mesh):
    """DNS rebinding: a page under its own name reaching the loopback API
    without an Origin. /mcp (and the API WebSocket) answer only loopback
    names and the configured address; others get 403 (a WebSocket upgrade
    is closed unanswered), counted api_host_refused."""
    a = mesh.node("A")
    port = a.api.rsplit(":", 1)[1]
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    c0 = counters(a)
    assert http_req(a, "/mcp", "evil.example:" + port, body=ping) == 403
    assert http_req(a, "/mcp", "evil.example", body=ping) == 403
    assert http_req(a, "/mcp", "127.0.0.1.evil.example:" + port, body=ping) == 403
    assert http_req(a, "/other", "evil.example:" + port, method="GET") == 403
    for ok in ("127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port):
        assert http_req(a, "/mcp", ok, body=ping) == 200, ok

    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    try:        # the upgrade is refused before any answer: the connection closes
        st = http_req(a, "/", "evil.example:" + port, "GET", headers=upgrade)
    except (http.client.RemoteDisconnected, ConnectionResetError):
        st = None
    assert st in (None, 403), st
    assert http_req(a, "/", "127.0.0.1:" + port, "GET", headers=upgrade) == 101
    assert counters(a)["api_host_refused"] - c0["api_host_refused"] == 5


# ---- usage errors at start ----------------------------------------------------------------

def test_invalid_pin_and_short_network_key_exit_2(tmp_path):
    key = tmp_path / "net.key"
    key.write_text("too-short\n")
    base = [BIN, "node", "--data", str(tmp_path / "d"), "--listen", "ws://127.0.0.1:0",
            "--api", "ws://127.0.0.1:0"]
    for extra, what in ((["--peer", "ws://127.0.0.1:1/#abc"], "node id"),
                        (["--network-key", str(key)], "16 bytes")):
        p = subprocess.run(base + extra, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30, env=client_env())
        assert p.returncode == 2 and what in p.stderr, (extra, p.returncode, p.stderr)
