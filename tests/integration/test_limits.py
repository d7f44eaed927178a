"""Limits (README "Limits and defaults", docs/PROTOCOL.md §1, §5): a slow peer
is dropped, a silent link is hung up, broadcasts stop at the hop limit, the
message and metadata size limits, the peer limit.

Real node processes on loopback; fake peers speak the protocol through
mzproto. Every wait polls with a deadline (meshlib.wait_for, execlib.until).
"""
import asyncio
import json
import signal
import socket
import time
from urllib.parse import urlparse

import websockets

import mzproto
from execlib import ApiConn, arun, in_directory, until
from meshlib import linked, rpc, wait_all, wait_for, wait_linked


def counters(node):
    return node.status()["counters"]


def counter_above(node, name, base):
    """Polling condition: NODE's counter NAME is above BASE (returns the counters)."""
    def cond():
        c = counters(node)
        return c if c[name] > base else None
    cond.__name__ = "counter %s of node %s above %d" % (name, node.name, base)
    return cond


def stderr_has(node, text):
    def cond():
        return text in node.stderr()
    cond.__name__ = "%r in the log of node %s" % (text, node.name)
    return cond


async def api_peer_ids(conn):
    return {p["id"] for p in await conn.result("peers")}


# ---- 1. a peer that stops reading is dropped ---------------------------------------

SLOW_QUEUE = 65536
BLOB = "x" * 15000          # metadata well under the 16 KiB limit; ~15.5 KB per announce
FLOOD_BATCH = 8             # registrations in flight at once on the API connection
FLOOD_MAX = 1500            # ~23 MB of announcements at most: far beyond any socket buffer
FLOOD_SECS = 25.0


async def open_tiny_buffer_peer(url, key):
    """A mzproto.Peer on a socket with a tiny receive buffer (set before
    connect, so the window the node sees stays small) and websockets' own
    read-ahead limited to one message."""
    u = urlparse(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5.0)
    s.connect((u.hostname, u.port))
    s.setblocking(False)
    peer = mzproto.Peer(key)
    peer.ws = await websockets.connect(url, sock=s, open_timeout=5, close_timeout=1,
                                       max_size=None, ping_interval=None, max_queue=1,
                                       read_limit=1024)
    return peer


async def slow_peer_flood(a):
    """Links a fake peer to A, stops reading, and registers resources on A
    until A reports a slow link close. Returns (registrations, A's
    slow_link_closes before, A's counters after)."""
    key = mzproto.Key()
    peer = await open_tiny_buffer_peer(a.listen, key)
    conn = await ApiConn.open(a.api)
    try:
        await peer.handshake()
        await until(lambda: _has_peer(conn, key.id), 5.0, "the fake peer's link up at A")
        # From here on nothing reads the socket: the kernel's tiny buffer fills,
        # then the node's send queue to us.
        peer.ws.transport.pause_reading()
        base = (await conn.result("status"))["counters"]["slow_link_closes"]
        deadline = time.monotonic() + FLOOD_SECS
        n = 0
        while True:
            futs = []
            for _ in range(FLOOD_BATCH):
                futs.append(await conn.send_request("register_resource", {
                    "resource_id": "flood-%04d" % n, "resource_type": "blob",
                    "metadata": {"blob": BLOB, "n": n}}))
                n += 1
            for r in await asyncio.wait_for(asyncio.gather(*futs), 15.0):
                assert "result" in r, "register failed during the flood: %s" % (r,)
            c = (await conn.result("status"))["counters"]
            if c["slow_link_closes"] > base:
                break
            assert n < FLOOD_MAX and time.monotonic() < deadline, \
                ("no slow link close after %d registrations (%.1f MB of announcements) "
                 "with --max-send-queue %d; counters %s"
                 % (n, n * len(BLOB) / 1e6, SLOW_QUEUE, c))
        # The link to the fake peer goes from A's peer list. Not at once: the
        # close waits behind the data still queued to the link (observed: the
        # link goes about 5 s after the "send queue full" log line).
        await until(lambda: _lacks_peer(conn, key.id), 12.0, "the slow peer dropped at A",
                    interval=0.1)
        return n, base, c
    finally:
        await conn.close()
        peer.ws.transport.abort()
        try:
            await asyncio.wait_for(peer.ws.wait_closed(), 5.0)
        except asyncio.TimeoutError:
            pass


async def _has_peer(conn, pid):
    return pid in await api_peer_ids(conn)


async def _lacks_peer(conn, pid):
    return pid not in await api_peer_ids(conn)


def test_slow_peer_dropped(mesh):
    a = mesh.node("A", extra=["--max-send-queue", str(SLOW_QUEUE)])
    assert a.status()["limits"]["max_send_queue"] == SLOW_QUEUE
    # B links before the flood (a new link would need a sync of every record)
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])

    n, base, c = arun(slow_peer_flood(a), 60.0)
    print("slow link closed after %d registrations" % n)
    assert c["slow_link_closes"] == base + 1, \
        "expected one slow link closed (the fake peer), not B's: %s" % c
    wait_for(stderr_has(a, "send queue full"), 5.0)

    # A keeps serving: its API answers, B is still linked and still sees news.
    st = a.status()
    assert st["resources"]["local"] == n, st
    assert linked(a, b)
    a.register("after-slow", "tool", caps=["check"])
    wait_for(lambda: "after-slow" in b.ids(), 10.0, what="B to see A's resource after the flood")
    assert counters(a)["slow_link_closes"] == base + 1


# ---- 2. a silent link is hung up by the keepalive ------------------------------------

KEEPALIVE = ["--ping-secs", "1", "--hangup-secs", "3"]


def test_keepalive_drops_stopped_peer(mesh):
    a = mesh.node("A", extra=KEEPALIVE)
    b = mesh.node("B", peers=[a], extra=KEEPALIVE)
    wait_linked([(a, b)])
    stopped_at = time.monotonic()
    b.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: b.id not in a.peer_ids(), 8.0, interval=0.1,
                 what="A to drop the link to the stopped B")
        elapsed = time.monotonic() - stopped_at
        # hang-up after 3 s of silence; B's last pong or alive came at most
        # about a ping interval before the stop.
        assert elapsed >= 1.5, "A dropped the link after only %.1fs" % elapsed
        assert elapsed <= 7.0, "A took %.1fs to drop the link" % elapsed
        assert a.status()["peers"] == 0
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # B runs again (it may re-link or not) and must stop cleanly at teardown.
    assert b.running()
    b.status()


# ---- 3. broadcasts stop at the hop limit ---------------------------------------------

def test_hop_limit_chain(mesh):
    # PROTOCOL.md §5: a relay forwards with hops + 1 unless hops + 1 reaches the
    # limit. With --max-hops 3, N5's announce arrives at N4 with hops 0, N3
    # with 1, N2 with 2; N2 would forward with 3 = the limit: dropped. So it
    # travels 3 links (N4, N3, N2 have it) and never reaches N1.
    # A long lease keeps periodic alives out of the window measured.
    ex = ["--max-hops", "3"]
    n1 = mesh.node("N1", lease_ms=60000, extra=ex)
    n2 = mesh.node("N2", peers=[n1], lease_ms=60000, extra=ex)
    n3 = mesh.node("N3", peers=[n2], lease_ms=60000, extra=ex)
    n4 = mesh.node("N4", peers=[n3], lease_ms=60000, extra=ex)
    n5 = mesh.node("N5", peers=[n4], lease_ms=60000, extra=ex)
    chain = [n1, n2, n3, n4, n5]
    wait_linked([(n1, n2), (n2, n3), (n3, n4), (n4, n5)])
    for n in chain:
        assert n.status()["limits"]["max_hops"] == 3
    drops2 = counters(n2)["hop_limit_drops"]
    drops1 = counters(n1)["hop_limit_drops"]

    # Registered after every link is up: only the announce can carry them
    # (a sync on link up is not hop-limited).
    n5.register("far-5", "tool")     # 4 links from N1
    n4.register("near-4", "tool")    # 3 links from N1
    wait_all([n4, n3, n2], lambda n: "far-5" in n.ids(), 10.0, "far-5")
    wait_all([n3, n2, n1], lambda n: "near-4" in n.ids(), 10.0, "near-4")
    assert n2.ids()["far-5"]["node"] == n5.id

    # Grace: N1 must still not have far-5 after 2 s (polled).
    deadline = time.monotonic() + 2.0
    for _ in range(200):
        assert "far-5" not in n1.ids(), "far-5 reached N1, 4 hops away, with --max-hops 3"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    assert set(n1.ids()) == {"near-4"}, n1.ids()
    # N2 dropped the announce of far-5 (hops + 1 = 3) ...
    assert counters(n2)["hop_limit_drops"] > drops2
    # ... and N1 the announce of near-4 (hops 2 + 1 = 3, nothing behind it anyway).
    assert counters(n1)["hop_limit_drops"] > drops1


# ---- 4. message and metadata size ----------------------------------------------------

def sized_announce(key, rid, size):
    """A valid, signed announce upsert whose text (as Peer.send writes it) is
    exactly SIZE bytes."""
    pad = 10
    for _ in range(5):
        rec = mzproto.record(key, rid, "tool", metadata={"pad": "p" * pad,
                                                         "last_updated": mzproto.now_rfc3339()})
        env = mzproto.envelope(key, "announce", {"op": "upsert", "record": rec})
        text = json.dumps(env, ensure_ascii=False)
        if len(text.encode()) == size:
            return text
        pad += size - len(text.encode())
        assert pad > 0, "SIZE too small for an announce"
    raise AssertionError("could not build a %d-byte announce" % size)


async def size_boundary(a):
    key = mzproto.Key()
    peer = await mzproto.Peer(key).open(a.listen)
    conn = await ApiConn.open(a.api)
    try:
        await peer.handshake()
        await until(lambda: _has_peer(conn, key.id), 5.0, "the fake peer's link up at A")
        # 2000 bytes: under the 2048 limit, accepted and stored.
        await peer.send(sized_announce(key, "fits", 2000))
        rec = await in_directory(conn, "fits", 5.0)
        assert rec["node"] == key.id and rec["location"] == "remote"
        assert await _has_peer(conn, key.id)
        assert not [m for m in peer.inbox if m.get("type") == "error"], peer.inbox
        # 3000 bytes, equally valid: dropped, the sender told too_large, and
        # the link (of a peer that said hello) kept.
        await peer.send(sized_announce(key, "too-big", 3000))
        err = await peer.expect(lambda m: m.get("type") == "error" and
                                m.get("payload", {}).get("code") == "too_large", 5.0,
                                "A's too_large error")
        assert "over 2048 bytes (--max-message 2048)" in err["payload"]["reason"], err
        assert await _has_peer(conn, key.id)
        rs = await conn.result("query_resources", {})
        assert "too-big" not in {r["resource_id"] for r in rs}
        # The link still carries messages.
        await peer.send(sized_announce(key, "fits-too", 1500))
        await in_directory(conn, "fits-too", 5.0)
    finally:
        await conn.close()
        await peer.close()


def test_max_message_boundary(mesh):
    a = mesh.node("A", max_message=2048)
    assert a.status()["limits"]["max_message"] == 2048
    c0 = counters(a)
    arun(size_boundary(a), 30.0)
    c1 = wait_for(counter_above(a, "oversize_dropped", c0["oversize_dropped"]), 5.0)
    assert c1["oversize_dropped"] == c0["oversize_dropped"] + 1
    assert c1["oversize_closes"] == c0["oversize_closes"]


def test_api_metadata_over_16k_refused(mesh):
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    r = rpc(a.api, "register_resource", {"resource_id": "huge", "resource_type": "blob",
                                         "metadata": {"blob": "x" * 20000}})
    assert "error" in r and "result" not in r, r
    assert r["error"]["code"] in (-32602, -32000), r
    msg = r["error"]["message"]
    assert "metadata" in msg and "16384" in msg, "unclear error: %r" % msg
    assert "huge" not in a.ids()
    # Nothing died: just under the limit is accepted and reaches B.
    ok = rpc(a.api, "register_resource", {"resource_id": "large", "resource_type": "blob",
                                          "metadata": {"blob": "x" * 16000}})
    assert ok["result"]["resource_id"] == "large", ok
    wait_for(lambda: "large" in b.ids(), 5.0, what="B to see the 16000-byte record")
    assert len(b.ids()["large"]["metadata"]["blob"]) == 16000
    assert linked(a, b) and a.running() and b.running()


# ---- 5. the peer limit ----------------------------------------------------------------

async def refused_link(url, timeout=5.0):
    """Connects to a node's listener; returns (close code, reason, messages
    received before the close)."""
    got = []
    async with websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                  max_size=None, ping_interval=None) as ws:
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                got.append(await asyncio.wait_for(ws.recv(), left))
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
    return ws.close_code, ws.close_reason, got


def test_max_peers(mesh):
    a = mesh.node("A", extra=["--max-peers", "2"])
    assert a.status()["limits"]["max_peers"] == 2
    b = mesh.node("B", peers=[a])
    c = mesh.node("C", peers=[a])
    wait_linked([(a, b), (a, c)])
    c0 = counters(a)

    code, reason, got = arun(refused_link(a.listen), 15.0)
    assert code == 1008, (code, reason, got)
    assert got == [], "the node said something on a refused link: %r" % got
    c1 = wait_for(counter_above(a, "links_refused_full", c0["links_refused_full"]), 5.0)
    assert c1["links_refused_full"] == c0["links_refused_full"] + 1
    wait_for(stderr_has(a, "refusing inbound peer link"), 5.0)

    # The first two links are kept and still carry news both ways.
    assert a.peer_ids() == {b.id, c.id}
    assert a.status()["peers"] == 2
    b.register("from-b", "tool")
    c.register("from-c", "tool")
    wait_for(lambda: "from-b" in c.ids(), 5.0, what="C to see B's resource through A")
    wait_for(lambda: "from-c" in b.ids(), 5.0, what="B to see C's resource through A")
    assert linked(a, b) and linked(a, c)


# ---- 6. big messages and big directories on links a node dialed ------------------------

async def oversize_from_dialed_peer(mesh, size, max_message):
    """B dials a fake peer that greets it with a SIZE-byte message
    (more than B's --max-message): B must close that link with 1009 and keep
    running. Returns (B, close code and reason the fake peer saw)."""
    state = {"conns": 0, "close": None}
    done = asyncio.Event()

    async def handler(ws, path=None):
        state["conns"] += 1
        first = state["conns"] == 1
        try:
            # At once, not after B's hello: the size is checked before anything else.
            if first:
                await ws.send(json.dumps({"pad": "x" * size}))
            await asyncio.wait_for(ws.wait_closed(), 10.0)
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        finally:
            if first:
                state["close"] = (ws.close_code, ws.close_reason)
                done.set()

    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                ping_interval=None, close_timeout=2) as srv:
        url = "ws://127.0.0.1:%d" % srv.sockets[0].getsockname()[1]
        b = await asyncio.to_thread(mesh.node, "B", peers=[url], max_message=max_message)
        await asyncio.wait_for(done.wait(), 15.0)
        st = await asyncio.to_thread(lambda: b.cli("status", "--json"))
        return b, state["close"], st


def test_oversize_message_from_dialed_peer(mesh):
    # The node that dialed gets the big message (LWS_CALLBACK_CLIENT_RECEIVE);
    # test_badinput covers the listening side.
    b, close, st = arun(oversize_from_dialed_peer(mesh, 200000, 65536), 40.0)
    assert close is not None and close[0] == 1009, close
    assert close[1].startswith("message too big"), close
    assert st.returncode == 0 and b.running(), \
        ("node B died after refusing a 200000-byte message on a link it dialed "
         "(exit %s); status: %s; stderr tail:\n%s"
         % (b.proc.poll(), st.stderr.strip(), "\n".join(b.stderr().splitlines()[-15:])))
    assert json.loads(st.stdout)["counters"]["oversize_closes"] == 1


async def register_many(node, n, meta_size, prefix):
    conn = await ApiConn.open(node.api)
    try:
        for i in range(0, n, 16):
            futs = []
            for j in range(i, min(n, i + 16)):
                futs.append(await conn.send_request("register_resource", {
                    "resource_id": "%s-%04d" % (prefix, j), "resource_type": "blob",
                    "metadata": {"blob": "x" * meta_size}}))
            for r in await asyncio.wait_for(asyncio.gather(*futs), 30.0):
                assert "result" in r, r
    finally:
        await conn.close()


def remote_count(node):
    if not node.running():
        raise AssertionError("node %s exited with %s; stderr tail:\n%s"
                             % (node.name, node.proc.poll(),
                                "\n".join(node.stderr().splitlines()[-15:])))
    return node.status()["resources"]["remote"]


def test_sync_of_large_records_fits_max_message(mesh):
    # 80 records with 15000 bytes of metadata each (legal: under 16 KiB) are
    # 1.2 MB; one sync chunk of up to 256 records would be over the 1 MiB
    # message limit of the receiver. A new peer must still get every record.
    a = mesh.node("A")
    arun(register_many(a, 80, 15000, "big"), 60.0)
    b = mesh.node("B", peers=[a])
    def synced():
        n = remote_count(b)
        big = counters(b)["oversize_closes"]
        assert big == 0, ("B refused a message over its 1 MiB limit from A (%d times); "
                          "B has %d of 80 records" % (big, n))
        return n == 80
    wait_for(synced, 10.0, interval=0.2, what="B to get A's 80 large records by sync")
    assert linked(a, b)
    assert counters(a)["oversize_closes"] == 0 and counters(b)["oversize_closes"] == 0


def test_sync_bigger_than_send_queue(mesh):
    # 600 records of ~3 KB are 1.8 MB, more than A's --max-send-queue of 1 MiB,
    # while every sync chunk (256 records, ~0.8 MB) fits both limits. A new
    # link is not a slow peer: it must get every record, not be dropped.
    # (The same happens with the defaults once a directory passes 8 MiB.)
    a = mesh.node("A", extra=["--max-send-queue", str(1 << 20)])
    arun(register_many(a, 600, 2500, "mid"), 60.0)
    b = mesh.node("B", peers=[a])
    def synced():
        slow = counters(a)["slow_link_closes"]
        assert slow == 0, ("A dropped the new link to B as a slow peer (%d times) while "
                           "sending its sync; B has %d of 600 records; A's log:\n%s"
                           % (slow, remote_count(b), "\n".join(
                               ln for ln in a.stderr().splitlines() if "queue" in ln)[:2000]))
        return remote_count(b) == 600
    wait_for(synced, 10.0, interval=0.2, what="B to get A's 600 records by sync")
    assert linked(a, b)
    assert counters(a)["slow_link_closes"] == 0
