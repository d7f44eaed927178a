"""Abuse: real node processes under attack from one peer or
one local client. In every case the attacked node A stays up, its resident
memory stays under RSS_LIMIT_MB (sampled every ~0.2 s from /proc/PID/status
and printed), and an honest execute round trip through A keeps succeeding
within 1 s while the abuse runs.

Topology of every test: B and C are linked to A only (C and B are not
linked). A "prober" process (forked, so the attacker's Python work does not
delay its clock) serves resource `honest-echo` from an API client of B and
calls it every PROBE_INTERVAL seconds twice: from C's API (C -> A -> B: A
relays the sealed execute) and from an API connection to A opened before the
abuse (A -> B). Every call must succeed, each within CALL_LIMIT_S.

Counts follow the abuse scenarios where feasible; MZ_ABUSE_SCALE (default 1) scales
the flood and connection counts (e.g. 0.5 for a slow sanitizer machine).
MZ_ABUSE_RSS_MB overrides the memory bound (default 200 MB, 600 MB for a
binary built with AddressSanitizer, whose shadow memory and quarantine
inflate RSS).
"""
import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import time
import urllib.error
import urllib.request

import nacl.bindings as sodium
import pytest
import websockets

import mzproto
from execlib import ApiConn, arun, until
from meshlib import BIN, client_env, linked, rpc, wait_for, wait_linked

SCALE = float(os.environ.get("MZ_ABUSE_SCALE", "1"))
CALL_LIMIT_S = 1.0
PROBE_INTERVAL = 0.2


def scaled(n):
    return max(1, int(n * SCALE))


def _built_with_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = _built_with_asan(BIN)
RSS_LIMIT_MB = float(os.environ.get("MZ_ABUSE_RSS_MB") or (600 if ASAN else 200))


def rss_mb(pid):
    """Resident set size of process PID in MB (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def counters(node):
    return node.status()["counters"]


# ---- the honest traffic -----------------------------------------------------------

RID = "honest-echo"


async def _probe(pipe, stop, a_pid, a_api, b_api, c_api):
    host = await ApiConn.open(b_api)
    via_c = await ApiConn.open(c_api)
    at_a = await ApiConn.open(a_api)
    serving = asyncio.ensure_future(host.serve(lambda p: {"echo": p["params"]}))
    try:
        await host.result("register_resource", {"resource_id": RID, "resource_type": "tool",
                                                "handler": True, "methods": ["echo"]})

        async def known(conn):
            rs = await conn.result("query_resources", {"resource_type": "tool"})
            return any(r["resource_id"] == RID for r in rs)
        await until(lambda: known(via_c), 10.0, "C to learn %s" % RID)
        await until(lambda: known(at_a), 10.0, "A to learn %s" % RID)
        for conn in (via_c, at_a):     # the first call sets up routes and keys
            await conn.result("execute_remote", {"resource_id": RID, "method": "echo",
                                                 "params": {}, "timeout_ms": 10000}, 12.0)
        pipe.send("ready")
        samples, rss = [], []
        n = 0
        t0 = time.monotonic()

        async def sample_rss():
            while True:
                rss.append((time.monotonic() - t0, rss_mb(a_pid)))
                await asyncio.sleep(0.2)
        sampling = asyncio.ensure_future(sample_rss())
        while not stop.is_set():
            for path, conn in (("C->A->B", via_c), ("A->B", at_a)):
                n += 1
                s = time.monotonic()
                try:
                    r = await conn.call("execute_remote", {
                        "resource_id": RID, "method": "echo", "params": {"n": n},
                        "timeout_ms": 5000}, 6.0)
                    ok = r.get("result") == {"echo": {"n": n}}
                    err = None if ok else r
                except Exception as e:  # noqa: BLE001 - reported as a failed call
                    ok, err = False, repr(e)
                samples.append({"t": s - t0, "path": path, "latency": time.monotonic() - s,
                                "ok": ok, "error": err})
            await asyncio.sleep(PROBE_INTERVAL)
        sampling.cancel()
        pipe.send({"samples": samples, "rss": rss})
    except Exception as e:  # noqa: BLE001 - the parent reports it
        pipe.send({"failed": repr(e)})
    finally:
        serving.cancel()
        for c in (host, via_c, at_a):
            try:
                await c.close()
            except Exception:  # noqa: BLE001
                pass


def _probe_main(pipe, stop, a_pid, a_api, b_api, c_api):
    asyncio.run(_probe(pipe, stop, a_pid, a_api, b_api, c_api))


class Prober:
    """The honest calls, in a forked process, from start() to stop()."""

    def __init__(self, a, b, c):
        ctx = multiprocessing.get_context("fork")
        self.parent, child = ctx.Pipe()
        self.stop_evt = ctx.Event()
        self.proc = ctx.Process(target=_probe_main, daemon=True, args=(
            child, self.stop_evt, a.proc.pid, a.api, b.api, c.api))
        self.a = a
        self.result = None

    def start(self):
        self.proc.start()
        if not self.parent.poll(30.0):
            self.proc.kill()
            raise AssertionError("the honest prober did not get ready in 30 s")
        got = self.parent.recv()
        assert got == "ready", "the honest prober failed to start: %r" % (got,)
        self.started = time.monotonic()
        return self

    def stop(self):
        if self.result is not None:
            return self.result
        self.stop_evt.set()
        if not self.parent.poll(20.0):
            self.proc.kill()
            raise AssertionError("the honest prober did not stop in 20 s")
        self.result = self.parent.recv()
        self.proc.join(5.0)
        assert "failed" not in self.result, "honest prober: %s" % self.result["failed"]
        return self.result

    def close(self):
        if self.proc.is_alive():
            self.stop_evt.set()
            self.proc.join(5.0)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()

    def summary(self, what):
        """Stops the calls, prints the figures; returns (samples, the calls
        that failed or were too slow, A's peak RSS in MB)."""
        res = self.stop()
        samples, rss = res["samples"], res["rss"]
        peak = max([m for _, m in rss] + [rss_mb(self.a.proc.pid)])
        lat = sorted(s["latency"] for s in samples)
        bad = [s for s in samples if not s["ok"] or s["latency"] > CALL_LIMIT_S]
        print("%s: %d honest calls (%d failed or over %.1fs), latency median %.3fs max %.3fs; "
              "A's RSS peak %.1f MB (bound %.0f MB)" % (
                  what, len(samples), len(bad), CALL_LIMIT_S, lat[len(lat) // 2] if lat else -1,
                  lat[-1] if lat else -1, peak, RSS_LIMIT_MB))
        return samples, bad, peak

    def check(self, what, min_calls=4):
        """Every honest call during the abuse succeeded within CALL_LIMIT_S, and
        A's RSS stayed under the bound. Prints the figures."""
        samples, bad, peak = self.summary(what)
        assert len(samples) >= min_calls, "only %d honest calls were made" % len(samples)
        assert not bad, ("%s: %d of %d honest execute calls failed or took over %.1fs: %s"
                         % (what, len(bad), len(samples), CALL_LIMIT_S, bad_calls(bad)))
        assert peak < RSS_LIMIT_MB, "%s: A's RSS reached %.1f MB (bound %.0f MB)" % (
            what, peak, RSS_LIMIT_MB)
        return samples, peak


def bad_calls(bad, n=8):
    """A short text of failed or slow calls."""
    out = []
    for s in bad[:n]:
        err = s["error"]
        if isinstance(err, dict):
            err = (err.get("error") or {}).get("message", err)
        out.append("t=%.1fs %s %.2fs %s" % (s["t"], s["path"], s["latency"],
                                            "ok" if s["ok"] else err))
    return "; ".join(out) + ("; ..." if len(bad) > n else "")


@pytest.fixture
def trio(mesh):
    """A factory: (A, B, C, prober) with A started with extra options;
    the prober is stopped at teardown."""
    probers = []

    def make(a_extra=()):
        a = mesh.node("A", extra=list(a_extra))
        b = mesh.node("B", peers=[a])
        c = mesh.node("C", peers=[a])
        wait_linked([(a, b), (a, c)])
        pr = Prober(a, b, c)
        probers.append(pr)
        pr.start()
        print("A's RSS before the abuse: %.1f MB" % rss_mb(a.proc.pid))
        return a, b, c, pr
    try:
        yield make
    finally:
        for pr in probers:
            pr.close()


def still_for(cond, secs, interval=0.1):
    """Polls COND for SECS seconds: None if it held throughout, else the
    seconds after which it stopped holding."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        if not cond():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


def assert_up(*nodes):
    for n in nodes:
        assert n.running(), "node %s exited with %s; stderr tail:\n%s" % (
            n.name, n.proc.poll(), "\n".join(n.stderr().splitlines()[-20:]))


# ---- signing fast enough for a flood ----------------------------------------------

def _canon_fast(obj):
    """The canonical form (PROTOCOL.md §3) of objects holding only ASCII
    strings without control characters, integers, lists and dicts: what
    json.dumps writes with sorted keys and no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fast_envelope(key, mtype, payload, recipient="*", timestamp=None):
    env = {"id": os.urandom(16).hex(), "type": mtype, "sender": key.id, "recipient": recipient,
           "timestamp": timestamp or mzproto.now_rfc3339(), "payload": payload}
    msg = mzproto.ENVELOPE_DOMAIN + b"\x00" + _canon_fast(env)
    env["signature"] = sodium.crypto_sign(msg, key.sk._signing_key)[:64].hex()
    return env


def fast_record(key, rid, ts):
    rec = {"resource_id": rid, "resource_type": "bulk", "owner": "", "capabilities": ["x"],
           "metadata": {"last_updated": ts}, "node": key.id, "version": 1,
           "owner_key": key.id}
    msg = mzproto.RECORD_DOMAIN + b"\x00" + _canon_fast(rec)
    rec["signature"] = sodium.crypto_sign(msg, key.sk._signing_key)[:64].hex()
    return rec


def test_fast_signing_matches_mzproto():
    key = mzproto.Key()
    env = fast_envelope(key, "event", {"topic": "flood.t", "data": {"n": 1, "s": "x"}})
    assert mzproto.canonical(env) == _canon_fast(env)
    assert mzproto.verify_envelope(env)
    assert mzproto.verify_record(fast_record(key, "r1", mzproto.now_rfc3339()))


async def linked_fake_peer(node, key=None):
    """A fake peer (mzproto) linked to NODE: hello, welcome, digest exchanged."""
    peer = await mzproto.Peer(key or mzproto.Key()).open(node.listen)
    await peer.handshake()
    await peer.link_up(fetch=False)
    return peer


class Drain:
    """Reads everything a node sends on a websocket (so its send queue to us
    never fills), counting messages and error messages."""

    def __init__(self, ws):
        self.ws = ws
        self.n = 0
        self.errors = 0
        self.last_errors = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        try:
            while True:
                m = await self.ws.recv()
                self.n += 1
                if '"error"' in m:
                    self.errors += 1
                    if len(self.last_errors) < 5:
                        self.last_errors.append(m[:400])
        except websockets.ConnectionClosed:
            pass

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass


# ---- 1. a flood of 10,000 messages/s from one peer ----------------------------------

FLOOD_RATE = scaled(10000)
FLOOD_SECS = 3.0
GARBAGE_SECS = 2.0


async def paced_send(ws, texts, rate):
    """Sends TEXTS at RATE messages/s (in batches every 10 ms). Returns (sent,
    seconds, the close the node made or None)."""
    batch = max(1, rate // 100)
    t0 = time.monotonic()
    sent = 0
    try:
        for i in range(0, len(texts), batch):
            d = t0 + i / rate - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            for t in texts[i:i + batch]:
                await ws.send(t)
                sent += 1
    except websockets.ConnectionClosed:
        return sent, time.monotonic() - t0, (ws.close_code, ws.close_reason)
    return sent, time.monotonic() - t0, None


def flood_texts(key, n):
    ts = mzproto.now_rfc3339()
    return [json.dumps(fast_envelope(key, "event", {"topic": "flood.x", "data": i},
                                     timestamp=ts)) for i in range(n)]


def garbage_texts(key, n):
    """Parseable messages a node must refuse: half lack the timestamp
    (bad_message, counted malformed), half carry a wrong signature
    (bad_signature, counted forged)."""
    ts = mzproto.now_rfc3339()
    out = []
    for i in range(n):
        if i % 2:
            out.append('{"id":"g%d","type":"event","sender":"%s","recipient":"*",'
                       '"payload":{"topic":"flood.g","data":%d},"signature":"%s"}'
                       % (i, key.id, i, "00" * 64))
        else:
            out.append('{"id":"f%d","type":"event","sender":"%s","recipient":"*",'
                       '"timestamp":"%s","payload":{"topic":"flood.f","data":%d},'
                       '"signature":"%s"}' % (i, key.id, ts, i, "ab" * 64))
    return out


def flood_report(what, r, c0, c1, drain=None):
    sent, secs, close = r
    delta = {k: c1[k] - c0[k] for k in c1 if isinstance(c1[k], int) and c1[k] != c0[k]}
    print("%s: %d messages in %.2fs (%.0f/s; TCP backpressure from A slows the sender when "
          "A cannot keep up), close %s%s" % (what, sent, secs, sent / max(secs, 1e-6), close,
                                             "; %d error answers" % drain.errors if drain else ""))
    print("A's counters changed: %s" % delta)
    return delta


def test_flood_signed_events(trio):
    """A linked peer sends FLOOD_SECS worth of valid, signed, distinct `event`
    broadcasts at 10,000 messages/s: under the default --rate-msgs 20000,
    so nothing is throttled; A verifies each, and forwards it to B and C.
    The honest links A-B and A-C must survive (no slow_link_closes), and the
    honest calls relayed by A must stay under 1 s.

    Where a node verifies fewer signatures a second than the flood (a few
    thousand on a busy 2-CPU machine), A reads slower (TCP backpressure
    holds the sender back) and B and C, each verifying every forwarded
    event, may fall behind A: then A must still not drop them, nor delay
    the honest calls behind thousands of queued events."""
    key = mzproto.Key()
    valid = flood_texts(key, int(FLOOD_RATE * FLOOD_SECS))
    a, b, c, pr = trio()
    c0 = counters(a)

    async def attack():
        peer = await linked_fake_peer(a, key)
        drain = Drain(peer.ws)
        r = await paced_send(peer.ws, valid, FLOOD_RATE)
        conn = await ApiConn.open(a.api)

        async def handled():       # A has read everything we sent
            return (await conn.result("status"))["counters"]["messages_in"] \
                >= c0["messages_in"] + len(valid)
        try:
            await until(handled, 30.0, "A to read the whole flood", interval=0.2)
        finally:
            await conn.close()
            await drain.stop()
            up = peer.ws.open
            await peer.close()
        return r, up

    r, still_linked = arun(attack(), 90.0)
    c1 = counters(a)
    delta = flood_report("signed event flood", r, c0, c1)
    samples, bad, peak = pr.summary("signed event flood")
    assert_up(a, b, c)
    assert r[2] is None and still_linked, "A closed the flooding link: %s" % (r[2],)
    assert delta.get("throttled", 0) == 0 and delta.get("rate_closes", 0) == 0, delta
    assert peak < RSS_LIMIT_MB
    assert not bad and delta.get("slow_link_closes", 0) == 0, \
        ("%d of %d honest calls failed or took over %.1fs (%s), and A dropped %d honest "
         "link(s) as slow peers while relaying the flood (its send queues to B and C filled "
         "with forwarded events); A's log:\n%s"
         % (len(bad), len(samples), CALL_LIMIT_S, bad_calls(bad),
            delta.get("slow_link_closes", 0), "\n".join(
                ln[:200] for ln in a.stderr().splitlines() if "queue" in ln or " down" in ln)))
    # Every valid event was passed on, or dropped for a backed-up neighbour and
    # counted (relay_drops, once per link): the node forwards without letting a
    # flood disconnect its slower neighbours.
    assert delta.get("forwarded", 0) + delta.get("relay_drops", 0) >= len(valid), delta
    assert linked(a, b) and linked(a, c)


def test_flood_garbage(trio):
    """A linked peer sends parseable but invalid messages at 10,000/s for
    GARBAGE_SECS: half lack the timestamp (bad_message, counted malformed),
    half carry a wrong signature (bad_signature, counted forged). A answers
    each with an error (the peer reads them), keeps the link and serves."""
    key = mzproto.Key()
    garbage = garbage_texts(key, int(FLOOD_RATE * GARBAGE_SECS))
    a, b, c, pr = trio()
    c0 = counters(a)
    cb0 = counters(b)

    async def attack():
        peer = await linked_fake_peer(a, key)
        drain = Drain(peer.ws)
        r = await paced_send(peer.ws, garbage, FLOOD_RATE)

        async def answered():
            return drain.errors >= len(garbage) or drain.task.done()
        try:
            await until(answered, 30.0, "A's answers to the garbage")
        finally:
            await drain.stop()
            up = peer.ws.open
            await peer.close()
        return r, drain, up

    r, drain, still_linked = arun(attack(), 90.0)
    c1 = counters(a)
    delta = flood_report("garbage flood", r, c0, c1, drain)
    assert_up(a, b, c)
    assert r[2] is None and still_linked, "A closed the flooding link: %s" % (r[2],)
    pr.check("garbage flood")
    assert delta.get("throttled", 0) == 0 and delta.get("rate_closes", 0) == 0, delta
    assert delta.get("malformed", 0) == len(garbage) // 2, delta
    assert delta.get("forged", 0) == len(garbage) - len(garbage) // 2, delta
    assert drain.errors == len(garbage), drain.last_errors
    # nothing of it was passed on
    cb1 = counters(b)
    assert (cb1["malformed"], cb1["forged"]) == (cb0["malformed"], cb0["forged"]), (cb0, cb1)
    assert linked(a, b) and linked(a, c)


RATE_MSGS = 200
RATE_FLOOD = 15000        # enough to last past the close (~21 pauses, ~5 s)


def test_flood_over_rate_limit_throttled_then_closed(trio):
    """With --rate-msgs 200 --rate-burst 200, a 10,000 messages/s flood of
    signed events: A pauses reading the link whenever its bucket is empty
    (throttled; it resumes on its 250 ms tick), and after over 20 pauses in
    10 s closes the link with 1008 (rate_closes); what it read stays within
    the limit. A rate well under what a node can verify, so that the
    limiter, not A's CPU, is what holds the flood back (A verifies a few
    thousand signatures a second; with a limit near that, A simply reads
    slower and pauses too seldom to ever close the link), and low enough
    that the events A does accept and forward to B and C do not delay the
    honest calls behind them."""
    key = mzproto.Key()
    valid = flood_texts(key, RATE_FLOOD)
    a, b, c, pr = trio(["--rate-msgs", str(RATE_MSGS), "--rate-burst", str(RATE_MSGS)])
    c0 = counters(a)

    async def attack():
        peer = await linked_fake_peer(a, key)
        drain = Drain(peer.ws)
        t0 = time.monotonic()
        r = await paced_send(peer.ws, valid, FLOOD_RATE)
        if r[2] is None:
            try:
                await asyncio.wait_for(asyncio.shield(drain.task), 10.0)
            except asyncio.TimeoutError:
                pass
            if drain.task.done():
                r = (r[0], r[1], (peer.ws.close_code, peer.ws.close_reason))
        elapsed = time.monotonic() - t0
        await drain.stop()
        await peer.close()
        return r + (elapsed,)

    sent, secs, close, elapsed = arun(attack(), 60.0)
    c1 = counters(a)
    delta = flood_report("flood over the rate limit", (sent, secs, close), c0, c1)
    # What A read is within the limit: the burst plus the rate for as long
    # as the link was open, plus A's other traffic (a few hundred messages).
    allowed = RATE_MSGS + RATE_MSGS * elapsed
    print("A read %d messages in %.1fs (the limit allows %.0f)" % (
        delta.get("messages_in", 0), elapsed, allowed))
    assert delta.get("messages_in", 0) <= allowed * 1.2 + 500, (delta, elapsed)
    assert_up(a, b, c)
    pr.check("flood over the rate limit")
    assert close is not None and close[0] == 1008, close
    assert "rate" in (close[1] or ""), close
    assert c1["throttled"] - c0["throttled"] > 20
    assert c1["rate_closes"] - c0["rate_closes"] == 1
    assert linked(a, b) and linked(a, c)


# ---- 2. 2,000 idle connections opened at once ---------------------------------------

IDLE_CONNS = scaled(2000)
IDLE_HOLD = 15.0          # past the 10 s hello deadline
HONEST_LINK_WITHIN = 12.0  # the hello deadline frees every slot an idle link took


def ensure_nofile(n):
    """Raises this process's soft RLIMIT_NOFILE to at least N (the nodes we
    start inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/")[0])


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


async def idle_raw(port, hold, out):
    """A TCP connection that never sends a byte. Records when the node closed
    it (seconds after connecting), or None."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), hold)
    except (OSError, asyncio.TimeoutError):
        out.append(("no connection", None))
        return
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(r.read(1 << 16), hold)
        out.append(("closed", time.monotonic() - t0))
    except asyncio.TimeoutError:
        out.append(("held", None))
    except OSError:
        out.append(("closed", time.monotonic() - t0))
    finally:
        w.close()


async def idle_ws(url, hold, out):
    """A websocket that completes the upgrade and never says hello."""
    t0 = time.monotonic()
    try:
        ws = await websockets.connect(url, open_timeout=hold, ping_interval=None,
                                      close_timeout=1, max_size=None)
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
        out.append(("no websocket", None))
        return
    t1 = time.monotonic()
    try:
        await asyncio.wait_for(ws.wait_closed(), max(0.1, hold - (t1 - t0)))
        out.append(("closed %s" % ws.close_code, time.monotonic() - t1))
    except asyncio.TimeoutError:
        out.append(("held", None))
    finally:
        await ws.close()


def test_2000_idle_connections(trio, mesh):
    """IDLE_CONNS connections to A's peer port at once, held for IDLE_HOLD s:
    half raw TCP that never send a byte, half websockets that never say
    hello (--max-peers 64: over it refused with 1008, the rest closed by the
    10 s hello deadline). Meanwhile: honest calls over the existing links,
    a new honest peer D must link within HONEST_LINK_WITHIN s, and a new
    client must reach A's API within 5 s, while the attacker still holds
    its connections."""
    ensure_nofile(IDLE_CONNS + 1024)
    a, b, c, pr = trio()
    port = port_of(a.listen)
    fds0 = nfds(a.proc.pid)
    raw_out, ws_out = [], []
    seen = {"fds": fds0, "d": None, "api": None}

    async def watch(stop):
        while not stop.is_set():
            seen["fds"] = max(seen["fds"], nfds(a.proc.pid))
            await asyncio.sleep(0.5)

    async def honest_link():
        await asyncio.sleep(1.0)          # every attacker connection is in flight
        t0 = time.monotonic()
        d = await asyncio.to_thread(mesh.node, "D", [a])

        def d_linked():
            return a.id in d.peer_ids()
        try:
            await asyncio.to_thread(wait_for, d_linked, HONEST_LINK_WITHIN, 0.2,
                                    "D to link to A during the abuse")
            seen["d"] = time.monotonic() - t0
        except AssertionError:
            seen["d"] = None

    async def new_api_client():
        await asyncio.sleep(1.5)
        t0 = time.monotonic()
        try:
            r = await asyncio.to_thread(rpc, a.api, "status", None, 5.0)
            seen["api"] = time.monotonic() - t0 if "result" in r else None
        except Exception:  # noqa: BLE001 - a refused or timed-out client
            seen["api"] = None

    async def attack():
        conn = await ApiConn.open(a.api)
        c0 = (await conn.result("status"))["counters"]
        stop = asyncio.Event()
        w = asyncio.ensure_future(watch(stop))
        n_ws = IDLE_CONNS // 2
        jobs = [idle_ws(a.listen, IDLE_HOLD, ws_out) for _ in range(n_ws)]
        jobs += [idle_raw(port, IDLE_HOLD, raw_out) for _ in range(IDLE_CONNS - n_ws)]
        t0 = time.monotonic()
        await asyncio.gather(*jobs, honest_link(), new_api_client())
        held_for = time.monotonic() - t0
        stop.set()
        await w
        c1 = (await conn.result("status"))["counters"]
        await conn.close()
        return c0, c1, held_for

    c0, c1, held_for = arun(attack(), IDLE_HOLD + 60.0)
    assert_up(a, b, c)
    delta = {k: c1[k] - c0[k] for k in c1 if isinstance(c1[k], int) and c1[k] != c0[k]}

    def tally(out):
        t = {}
        for what, when in out:
            t.setdefault(what, []).append(when)
        return {k: (len(v), "closed after %.1f-%.1fs" % (min(v), max(v)) if v[0] is not None
                    else "") for k, v in t.items()}
    print("idle connections: %d raw %s; %d websockets %s; held %.1fs" % (
        len(raw_out), tally(raw_out), len(ws_out), tally(ws_out), held_for))
    print("A's fds: %d before, %d at most; counters changed: %s" % (fds0, seen["fds"], delta))
    print("during the abuse: new peer D linked after %s s; a new API client answered after %s s"
          % (seen["d"], seen["api"]))
    pr.check("2000 idle connections")
    # No more attacker links than --max-peers (64, B and C included) were up
    # waiting for a hello; every websocket was refused or closed by the hello
    # deadline.
    assert delta.get("hello_failures", 0) <= 64 - 2, delta
    assert not [w for w in ws_out if w[0] == "held"], tally(ws_out)
    n_ws_up = len([w for w in ws_out if w[0] != "no websocket"])
    # ... or closed at once as one too many waiting for a hello (preauth_refused).
    assert (delta.get("links_refused_full", 0) + delta.get("hello_failures", 0)
            + delta.get("preauth_refused", 0)) >= n_ws_up, delta
    raw_held = sum(1 for what, _ in raw_out if what == "held")
    assert seen["d"] is not None and seen["api"] is not None, \
        ("while %d idle connections were held open on A's peer port (%d raw TCP ones never "
         "closed by A in %.0fs; A's open fds peaked at %d, %d before), a new honest peer %s "
         "and a new client of A's local API %s"
         % (IDLE_CONNS, raw_held, held_for, seen["fds"], fds0,
            "linked after %.1fs" % seen["d"] if seen["d"] is not None
            else "could not link within %.0fs" % HONEST_LINK_WITHIN,
            "got an answer after %.1fs" % seen["api"] if seen["api"] is not None
            else "got no answer within 5 s"))
    # After the abuse, everything links again.
    e = mesh.node("E", peers=[a])
    wait_linked([(a, e)], timeout=10.0)


# ---- 3. slowloris -------------------------------------------------------------------

SLOW_SECS = 25.0
UPGRADE = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "X-Padding: " + "a" * 200 + "\r\n\r\n").encode()


async def slow_bytes(port, data, secs, head=b""):
    """Connects, sends HEAD at once, then DATA one byte a second until the
    node closes the connection or SECS pass. Returns (seconds until the node
    closed it or None, bytes sent one by one)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    sent = 0
    try:
        if head:
            w.write(head)
            await w.drain()
        for byte in data:
            if time.monotonic() - t0 > secs:
                return None, sent
            w.write(bytes([byte]))
            await w.drain()
            sent += 1
            try:
                got = await asyncio.wait_for(r.read(4096), 1.0)
                if got == b"":
                    return time.monotonic() - t0, sent
            except asyncio.TimeoutError:
                pass
        return None, sent
    except OSError:
        return time.monotonic() - t0, sent
    finally:
        w.close()


def close_frame_in(buf):
    """The close code of the first close frame in BUF (unmasked frames from a
    server, the HTTP 101 answer already removed), or None."""
    i = 0
    while i + 2 <= len(buf):
        op, ln = buf[i] & 0x0F, buf[i + 1] & 0x7F
        j = i + 2
        if ln == 126:
            if j + 2 > len(buf):
                return None
            ln, j = int.from_bytes(buf[j:j + 2], "big"), j + 2
        elif ln == 127:
            if j + 8 > len(buf):
                return None
            ln, j = int.from_bytes(buf[j:j + 8], "big"), j + 8
        if op == 0x8:
            return int.from_bytes(buf[j:j + 2], "big") if ln >= 2 else 1005
        i = j + ln
    return None


async def slow_ws_frame(url, secs):
    """A websocket (upgrade done, no hello) that sends one text frame of 300
    bytes one byte a second: the frame header at once, then the masked
    payload byte by byte. Returns (seconds until the node sent a close frame
    or closed the connection, or None; the close code)."""
    from urllib.parse import urlparse
    u = urlparse(url)
    r, w = await asyncio.open_connection(u.hostname, u.port)
    t0 = time.monotonic()
    buf = b""
    try:
        w.write(UPGRADE)
        await w.drain()
        resp = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5.0)
        assert b" 101 " in resp.split(b"\r\n")[0], resp
        payload = b"x" * 300
        w.write(bytes([0x81, 0x80 | 126]) + (len(payload)).to_bytes(2, "big") + b"\0\0\0\0")
        await w.drain()
        for byte in payload:
            if time.monotonic() - t0 > secs:
                return None, None
            w.write(bytes([byte]))
            await w.drain()
            try:
                got = await asyncio.wait_for(r.read(4096), 1.0)
                if got == b"":
                    return time.monotonic() - t0, None
                buf += got
                code = close_frame_in(buf)
                if code is not None:
                    return time.monotonic() - t0, code
            except asyncio.TimeoutError:
                pass
        return None, None
    except OSError:
        return time.monotonic() - t0, None
    finally:
        w.close()


def test_slowloris(trio, mesh):
    """Three slow connections at once, one byte a second, for up to
    SLOW_SECS: a partial HTTP upgrade request to the peer port, the same to
    the API port, and a websocket on the peer port that trickles its first
    frame (never completing a hello). A keeps serving: honest calls, a new
    peer D links within 5 s and a new API client gets an answer, while the
    slow connections are open. The websocket one must be closed by the
    10 s hello deadline; the HTTP ones by lws's own timeouts (reported)."""
    a, b, c, pr = trio()
    seen = {}

    async def others():
        await asyncio.sleep(3.0)
        t0 = time.monotonic()
        r = await asyncio.to_thread(rpc, a.api, "status", None, 5.0)
        seen["api"] = time.monotonic() - t0 if "result" in r else None
        t0 = time.monotonic()
        d = await asyncio.to_thread(mesh.node, "D", [a])
        await asyncio.to_thread(wait_for, lambda: a.id in d.peer_ids(), 5.0, 0.1,
                                "D to link to A during the slowloris")
        seen["d"] = time.monotonic() - t0

    async def attack():
        return await asyncio.gather(
            slow_bytes(port_of(a.listen), UPGRADE, SLOW_SECS),
            slow_bytes(port_of(a.api), UPGRADE, SLOW_SECS),
            slow_ws_frame(a.listen, SLOW_SECS),
            others())

    (peer_http, api_http, ws_frame, _) = arun(attack(), SLOW_SECS + 30.0)
    print("slowloris: peer-port HTTP closed after %s s (%d bytes sent), API-port HTTP closed "
          "after %s s (%d bytes), websocket frame closed after %s s (code %s); meanwhile a new "
          "API client answered in %.2fs, D linked in %.2fs" % (
              peer_http[0], peer_http[1], api_http[0], api_http[1], ws_frame[0], ws_frame[1],
              seen["api"], seen["d"]))
    assert_up(a, b, c)
    pr.check("slowloris")
    assert ws_frame[0] is not None and ws_frame[0] < 10.0 + 3.0 and ws_frame[1] == 1008, \
        "the trickling websocket was not closed by the 10 s hello deadline: %s" % (ws_frame,)
    assert peer_http[0] is not None, \
        "A kept a connection sending one byte a second open for %.0fs" % SLOW_SECS
    assert api_http[0] is not None, \
        "A's API kept a connection sending one byte a second open for %.0fs" % SLOW_SECS


# ---- 4. JSON bombs ---------------------------------------------------------------------

DEPTH = 100000
BIG_STRING = 10 * 1000 * 1000
HUGE_MEMBERS = 1000000
MANY_MEMBERS = 60000      # over the 50,000 member limit, ~0.7 MB: under the 1 MiB size limit


def deep_array(depth):
    return "[" * depth + "]" * depth


def members_object(n):
    return "{" + ",".join('"k%d":0' % i for i in range(n)) + "}"


def env_text(key, payload_text, mid):
    """An event envelope whose payload is PAYLOAD_TEXT (raw JSON), unsigned:
    a bomb is refused before any signature check."""
    return ('{"id":"%s","type":"event","sender":"%s","recipient":"*","timestamp":"%s",'
            '"payload":{"topic":"bomb","data":%s},"signature":"%s"}'
            % (mid, key.id, mzproto.now_rfc3339(), payload_text, "00" * 64))


async def bomb_peer(node, text, expect_close):
    """Sends TEXT on a fresh linked fake peer. Returns (close code and reason
    or None, error messages got, the link still up after a valid event)."""
    key = mzproto.Key()
    peer = await linked_fake_peer(node, key)
    try:
        await peer.send(text)
        if expect_close:
            code, reason = await peer.wait_closed(10.0)
            return (code, reason), [], False
        err = await peer.expect(lambda m: m["type"] == "error", 10.0, "an error for the bomb")
        # the link still works: a valid event is handled (no error, link open)
        ok = mzproto.envelope(key, "event", {"topic": "after.bomb", "data": 1})
        await peer.send(ok)
        still = await peer.drain(1.0)
        errs = [m for m in peer.inbox if m.get("type") == "error"
                and m["payload"].get("ref") == ok["id"]]
        return None, [err], still and not errs
    finally:
        await peer.close()


async def bomb_api(node, text, expect_close):
    """Sends TEXT as one API message. Returns (close or None, the reply or
    None, whether a status request on the same connection still works)."""
    ws = await websockets.connect(node.api, open_timeout=10, ping_interval=None,
                                  close_timeout=2, max_size=None)
    try:
        await ws.send(text)
        if expect_close:
            try:
                await asyncio.wait_for(ws.recv(), 10.0)
            except websockets.ConnectionClosed:
                pass
            return (ws.close_code, ws.close_reason), None, False
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": "after", "method": "status"}))
        after = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
        return None, reply, "result" in after
    finally:
        await ws.close()


def test_json_bombs(trio):
    """JSON bombs on the peer port (a linked fake peer) and on the API port:
    nesting 100,000 deep (200 KB: refused by the depth limit with an error,
    the link or connection stays usable); a 10 MB string and a 1,000,000-
    member object (on the peer port over --max-message 1 MiB: dropped with
    a too_large error, the link kept; on the API, here with
    --max-api-message 1 MiB, not read: a JSON-RPC error -32600, the
    connection kept); a 60,000-
    member object of ~0.7 MB (under the size limit, over the 50,000 member
    limit: refused with an error on the peer port; on the API, which parses
    with jansson directly, answered or refused, and the node survives)."""
    a, b, c, pr = trio(["--max-api-message", str(1 << 20)])
    key = mzproto.Key()
    c0 = counters(a)
    deep = deep_array(DEPTH)
    big = '"' + "x" * BIG_STRING + '"'
    huge = members_object(HUGE_MEMBERS)
    many = members_object(MANY_MEMBERS)
    assert len(many) < (1 << 20) and len(deep) < (1 << 20)
    assert len(huge) > (1 << 20)

    async def attack():
        out = {}
        out["peer depth"] = await bomb_peer(a, env_text(key, deep, "bomb-deep"), False)
        out["peer bare depth"] = await bomb_peer(a, deep, False)
        out["peer 10MB string"] = await bomb_peer(a, env_text(key, big, "bomb-big"), False)
        out["peer 1M members"] = await bomb_peer(a, env_text(key, huge, "bomb-huge"), False)
        out["peer 60k members"] = await bomb_peer(a, env_text(key, many, "bomb-many"), False)
        req = '{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":%s}}'
        out["api depth"] = await bomb_api(a, req % deep, False)
        out["api bare depth"] = await bomb_api(a, deep, False)
        out["api 10MB string"] = await bomb_api(a, req % big, False)
        out["api 1M members"] = await bomb_api(a, req % huge, False)
        out["api 60k members"] = await bomb_api(a, req % many, False)
        return out

    out = arun(attack(), 120.0)
    c1 = counters(a)
    for k, v in out.items():
        close, got, still = v
        print("%-18s close %s; got %s; usable after: %s" % (
            k, close, json.dumps(got)[:300] if got else None, still))
    delta = {k: c1[k] - c0[k] for k in c1 if isinstance(c1[k], int) and c1[k] != c0[k]}
    print("A's counters changed: %s" % delta)
    assert_up(a, b, c)
    pr.check("JSON bombs")
    for k in ("peer depth", "peer bare depth", "peer 60k members"):
        close, errs, still = out[k]
        assert close is None and errs and errs[0]["payload"]["code"] == "bad_message", (k, out[k])
        assert still, "%s: the link was not usable after the refusal: %s" % (k, out[k])
    assert "deep" in out["peer depth"][1][0]["payload"]["reason"] \
        or "nest" in out["peer depth"][1][0]["payload"]["reason"], out["peer depth"]
    assert "member" in out["peer 60k members"][1][0]["payload"]["reason"], out["peer 60k members"]
    for k in ("peer 10MB string", "peer 1M members"):
        close, errs, still = out[k]
        assert close is None and errs and errs[0]["payload"]["code"] == "too_large", (k, out[k])
        assert still, "%s: the link was not usable after the refusal: %s" % (k, out[k])
    for k in ("api 10MB string", "api 1M members"):
        close, reply, still = out[k]
        assert close is None and reply["error"]["code"] == -32600, (k, out[k])
        assert reply["id"] == 1 and "--max-api-message" in reply["error"]["message"], out[k]
        assert still, (k, out[k])
    for k in ("api depth", "api bare depth"):
        close, reply, still = out[k]
        assert close is None and reply["error"]["code"] == -32700, (k, reply)
        assert still, (k, out[k])
    close, reply, still = out["api 60k members"]
    assert close is None and ("result" in reply or "error" in reply), out["api 60k members"]
    assert still
    assert delta.get("malformed", 0) >= 3, delta
    assert delta.get("oversize_closes", 0) == 0, delta
    assert delta.get("oversize_dropped", 0) == 4, delta
    assert linked(a, b) and linked(a, c)


def test_api_publish_over_wire_limits(trio):
    """The API parses with jansson alone (nesting up to 2048, any member
    count): an event published through it that no peer would accept (data
    nested 100 deep: over the 32-level limit; 60,000 members: over the
    50,000-member limit) must be refused by the API (error), not broadcast
    to peers that refuse it as malformed."""
    a, b, c, pr = trio()
    cb0 = counters(b)

    async def go():
        conn = await ApiConn.open(a.api)
        try:
            deep = json.loads(deep_array(100))
            many = {"k%d" % i: 0 for i in range(MANY_MEMBERS)}
            r1 = await conn.call("publish", {"topic": "bomb.deep", "data": deep}, 20.0)
            r2 = await conn.call("publish", {"topic": "bomb.many", "data": many}, 20.0)
            return r1, r2
        finally:
            await conn.close()

    r1, r2 = arun(go(), 60.0)
    # Whatever A broadcast reaches B within a second or two (polled: the
    # failure shows as soon as it happens).
    grew = still_for(lambda: counters(b)["malformed"] == cb0["malformed"], 3.0)
    cb1 = counters(b)
    print("publish nested 100 deep: %s" % json.dumps(r1)[:300])
    print("publish 60,000 members: %s" % json.dumps(r2)[:300])
    print("B's malformed: %d -> %d" % (cb0["malformed"], cb1["malformed"]))
    assert_up(a, b, c)
    samples, bad, peak = pr.summary("API publish over the wire limits")
    assert grew is None and cb1["malformed"] == cb0["malformed"], \
        ("A broadcast events its peers refuse as malformed (B's malformed counter went from "
         "%d to %d); API answers: %s / %s" % (cb0["malformed"], cb1["malformed"],
                                              json.dumps(r1)[:200], json.dumps(r2)[:200]))
    assert "error" in r1 and "error" in r2, (r1, r2)
    assert not bad and peak < RSS_LIMIT_MB, bad_calls(bad)


def test_api_record_metadata_over_depth_limit(trio, mesh):
    """A local client registers a record whose metadata nests 40 levels deep
    (well under the 16 KiB metadata limit, over the wire's 32-level limit).
    The API must refuse it, or its peers must accept it; above all it must
    not poison A's anti-entropy: a node linking afterwards gets A's other
    records by sync, and B keeps getting A's announcements."""
    a, b, c, pr = trio()
    cb0 = counters(b)
    a.register("plain-1", "tool")
    wait_for(lambda: "plain-1" in b.ids(), 5.0, what="B to see plain-1")
    deep = json.loads(deep_array(40))
    r = rpc(a.api, "register_resource", {"resource_id": "deep-meta", "resource_type": "tool",
                                         "metadata": {"d": deep}})
    a.register("plain-2", "tool")
    d = mesh.node("D", peers=[a])
    wait_linked([(a, d)])

    def d_synced():
        return {"plain-1", "plain-2"} <= set(d.ids())
    got = still_for(lambda: not d_synced(), 8.0, interval=0.2)
    seen = {n.name: sorted(i for i in n.ids() if i != RID) for n in (a, b, d)}
    cb1, cd = counters(b), counters(d)
    print("register with metadata nested 40 deep: %s" % json.dumps(r)[:200])
    print("directories: %s; B's malformed %d -> %d, D's malformed %d, D's sync fetches %d" % (
        seen, cb0["malformed"], cb1["malformed"], cd["malformed"], cd["sync_fetches"]))
    assert_up(a, b, c, d)
    samples, bad, peak = pr.summary("record metadata over the depth limit")
    accepted = "result" in r
    assert got is not None, \
        ("a node that linked to A after the API accepted a record with metadata nested 40 "
         "deep got none of A's records by sync in 8 s (its sync chunks are refused as "
         "malformed: D's malformed counter is %d); directories: %s" % (cd["malformed"], seen))
    assert not accepted or "deep-meta" in seen["B"], \
        ("the API accepted a record nested over the wire's depth limit, and B refused its "
         "announcement (B's malformed %d -> %d): the resource is invisible to the mesh"
         % (cb0["malformed"], cb1["malformed"]))
    assert not bad and peak < RSS_LIMIT_MB, bad_calls(bad)


# ---- 5. a peer announcing records past the per-node limit --------------------------------

ANNOUNCE_RECORDS = scaled(20000)
RECORDS_LIMIT = 5000
SYNC_CHUNK = 500


def test_announcing_many_records(trio):
    """A peer announcing 1,000,000 records would take ~100 s of Python
    signing (PyNaCl, one signature per record) and as long again of the
    node's verification, over this file's time budget. Instead A runs with
    --max-records-per-node 5000 and a fake peer sends 20,000 valid signed
    records it hosts (unsolicited link-level `sync` chunks of 500, plus 200
    `announce` broadcasts past the limit): A keeps exactly 5,000, refuses the
    rest (counter record_limit), stays up with bounded memory and keeps
    serving honest calls."""
    key = mzproto.Key()
    ts = mzproto.now_rfc3339()
    recs = [fast_record(key, "bulk-%06d" % i, ts) for i in range(ANNOUNCE_RECORDS)]
    extra = [fast_record(key, "late-%06d" % i, ts) for i in range(200)]
    a, b, c, pr = trio(["--max-records-per-node", str(RECORDS_LIMIT)])
    c0 = counters(a)
    base_remote = a.status()["resources"]["remote"]

    async def attack():
        peer = await linked_fake_peer(a, key)
        drain = Drain(peer.ws)
        try:
            for i in range(0, len(recs), SYNC_CHUNK):
                await peer.ws.send(json.dumps(fast_envelope(
                    key, "sync", {"records": recs[i:i + SYNC_CHUNK], "more": False},
                    recipient=peer.node_id)))
            for r in extra:
                await peer.ws.send(json.dumps(fast_envelope(
                    key, "announce", {"op": "upsert", "record": r})))
            conn = await ApiConn.open(a.api)
            try:
                async def done():
                    st = await conn.result("status")
                    k = st["counters"]
                    return (k["record_limit"] - c0["record_limit"]
                            >= len(recs) + len(extra) - RECORDS_LIMIT) and st
                st = await until(done, 60.0, "A to handle every record", interval=0.25)
            finally:
                await conn.close()
            return st, peer.ws.open
        finally:
            await drain.stop()
            await peer.close()

    st, still_linked = arun(attack(), 120.0)
    c1 = st["counters"]
    print("records: %d sent (%d in sync chunks of %d, %d announces); A holds %d remote; "
          "record_limit +%d" % (len(recs) + len(extra), len(recs), SYNC_CHUNK, len(extra),
                                st["resources"]["remote"],
                                c1["record_limit"] - c0["record_limit"]))
    assert_up(a, b, c)
    pr.check("records past the limit")
    assert st["resources"]["remote"] - base_remote == RECORDS_LIMIT, st["resources"]
    assert c1["record_limit"] - c0["record_limit"] == len(recs) + len(extra) - RECORDS_LIMIT
    assert still_linked
    ids = {r["resource_id"] for r in rpc(a.api, "query_resources",
                                         {"resource_type": "bulk", "limit": 500})["result"]}
    assert len(ids) == 500 and all(i.startswith("bulk-") for i in ids)


# ---- 6. 10,000 subscriptions from one client ----------------------------------------------

SUBSCRIPTIONS = scaled(10000)
SUBS_PER_CLIENT = 1000


def test_10000_subscriptions_one_client(trio):
    """One API client asks for 10,000 subscriptions (pipelined): the first
    1,000 (--max-subs-per-client default) succeed, the rest are refused with
    an error (counter subs_refused). Another client can still subscribe, an
    event reaches the abuser's subscription once, and when the abuser goes
    its subscriptions go with it."""
    a, b, c, pr = trio()
    c0 = counters(a)

    async def go():
        abuser = await ApiConn.open(a.api)
        other = await ApiConn.open(a.api)
        try:
            futs = []
            for i in range(SUBSCRIPTIONS):
                futs.append(await abuser.send_request("subscribe", {"topic": "abuse.t%05d" % i}))
            replies = await asyncio.wait_for(asyncio.gather(*futs), 60.0)
            ok = [r for r in replies if "result" in r]
            refused = [r for r in replies if "error" in r]
            st = await other.result("status")
            mine = await other.result("subscribe", {"topic": "abuse.t00001"})
            await other.result("publish", {"topic": "abuse.t00001", "data": {"x": 1}})
            await abuser.wait_events(lambda evs: [e for e in evs if e["topic"] == "abuse.t00001"],
                                     5.0, "the event on the abuser's subscription")
            await other.wait_events(lambda evs: evs, 5.0, "the event on the other client")
            await asyncio.sleep(0.5)
            n_abuser = len([e for _, e in abuser.events if e["topic"] == "abuse.t00001"])
            return ok, refused, st, mine, n_abuser
        finally:
            await abuser.close()
            await other.close()

    ok, refused, st, mine, n_abuser = arun(go(), 120.0)
    c1 = counters(a)
    print("subscriptions: %d granted, %d refused (e.g. %s); subs_refused +%d; the abuser got "
          "the event %d time(s)" % (len(ok), len(refused),
                                    json.dumps(refused[0])[:200] if refused else None,
                                    c1["subs_refused"] - c0["subs_refused"], n_abuser))
    assert_up(a, b, c)
    pr.check("10,000 subscriptions")
    assert len(ok) == min(SUBS_PER_CLIENT, SUBSCRIPTIONS)
    assert len(refused) == SUBSCRIPTIONS - len(ok)
    assert all(r["error"]["code"] == -32000 and "subscription" in r["error"]["message"]
               for r in refused), refused[:3]
    assert c1["subs_refused"] - c0["subs_refused"] == len(refused)
    assert "subscription" in mine
    assert n_abuser == 1
    # the abuser's 1,000 subscriptions ended with its connection: a new
    # client gets its own 1,000.
    async def again():
        conn = await ApiConn.open(a.api)
        try:
            futs = [await conn.send_request("subscribe", {"topic": "again.%d" % i})
                    for i in range(SUBS_PER_CLIENT)]
            return [r for r in await asyncio.gather(*futs) if "result" in r]
        finally:
            await conn.close()
    assert len(arun(again(), 60.0)) == SUBS_PER_CLIENT


# ---- the API token --------------------------------------------------------------------

def test_api_token_required(mesh):
    """--api-require-token: a websocket or HTTP request to the API without
    DATA/api.token (or with a wrong one) is refused (HTTP 401; a websocket
    upgrade may instead be dropped without an answer), counted api_refused;
    ?token= and Authorization: Bearer with the right one work."""
    a = mesh.node("A", extra=["--api-require-token"])
    tok_path = a.data / "api.token"
    token = tok_path.read_text().strip()
    assert len(token) == 64 and (tok_path.stat().st_mode & 0o777) == 0o600

    async def try_ws(url, headers=None):
        try:
            async with websockets.connect(url, open_timeout=5, close_timeout=2,
                                          extra_headers=headers or {}) as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
                return json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        except websockets.InvalidStatusCode as e:
            return e.status_code
        except (websockets.InvalidMessage, EOFError, ConnectionError):
            return "dropped"     # closed without an HTTP answer

    base = a.api.rstrip("/")
    no_tok = arun(try_ws(base), 20.0)
    bad_tok = arun(try_ws(base + "/?token=" + "0" * 64), 20.0)
    bad_bearer = arun(try_ws(base, {"Authorization": "Bearer " + "1" * 64}), 20.0)
    good = arun(try_ws(base + "/?token=" + token), 20.0)
    bearer = arun(try_ws(base, {"Authorization": "Bearer " + token}), 20.0)
    http_url = base.replace("ws://", "http://") + "/mcp"
    try:
        urllib.request.urlopen(urllib.request.Request(
            http_url, data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            headers={"Content-Type": "application/json"}), timeout=5)
        http_no_tok = 200
    except urllib.error.HTTPError as e:
        http_no_tok = e.code
    cli = a.cli("status")
    print("no token: %s; wrong token: %s; wrong bearer: %s; HTTP /mcp without token: %s; "
          "CLI without $MESHZERO_API_TOKEN: exit %d" % (no_tok, bad_tok, bad_bearer, http_no_tok,
                                                       cli.returncode))
    # Refused: HTTP 401, or (lws refusing the upgrade) the connection closed
    # without an answer.
    assert {no_tok, bad_tok, bad_bearer} <= {401, "dropped"}, (no_tok, bad_tok, bad_bearer)
    assert http_no_tok == 401
    assert cli.returncode != 0
    assert isinstance(good, dict) and good["result"]["id"] == a.id, good
    assert isinstance(bearer, dict) and bearer["result"]["id"] == a.id, bearer
    assert good["result"]["counters"]["api_refused"] == 3
    env = client_env()
    env["MESHZERO_API_TOKEN"] = token
    p = subprocess.run([BIN, "status", "--json", "--node", a.api], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["id"] == a.id
    # the 3 websocket refusals, the HTTP one and the CLI without a token
    assert st["counters"]["api_refused"] >= 5, st["counters"]
    assert a.running()
