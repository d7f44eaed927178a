"""Events between real nodes: built-in resource.* and peer.* events, mesh-wide
publish (once per node), and the topics and patterns a node refuses.

The seed's square (no A-D link):

     A
    / \\
   B   C
    \\ /
     D
"""
import asyncio
import json
import time

import pytest

from execlib import ApiConn, arun, build_square
from execlib import procs  # noqa: F401 -- a fixture
from meshlib import run, wait_linked

QUIET_S = 1.5       # after the first copy of an event, how long to watch for a second


@pytest.fixture
def square(mesh):
    return build_square(mesh)


def event_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- 5. resource.added for a registration two hops away --------------------------

def test_subscribe_cli_resource_added_remote(square, procs):
    a, b, c, d = square
    sub = procs.subscribe(a, "resource.added", count=1)
    rec = d.register("ev-res", "tool", caps=["x"], owner="bob")
    assert sub.wait(10) == 0, sub.err()
    evs = event_lines(sub.out())
    assert len(evs) == 1, sub.out()
    ev = evs[0]
    assert ev["topic"] == "resource.added"
    assert ev["source"] == d.id
    data = ev["data"]
    assert data["resource_id"] == "ev-res"
    assert data["location"] == "remote"
    assert data["node"] == d.id
    assert data["capabilities"] == ["x"] and data["owner"] == "bob"
    assert data["signature"] == rec["signature"] and data["version"] == rec["version"]


def test_resource_events_local_and_removed(square):
    """On the host the record is local; an update and the unregistration
    reach A as resource.updated and resource.removed."""
    a, b, c, d = square

    async def go():
        on_a = await ApiConn.open(a.api)
        on_d = await ApiConn.open(d.api)
        try:
            await on_a.result("subscribe", {"topic": "resource.*"})
            await on_d.result("subscribe", {"topic": "resource.added"})
            await on_d.result("register_resource", {"resource_id": "ev2",
                                                    "resource_type": "tool"})
            local = await on_d.wait_events(lambda es: es, 10, "resource.added on D")
            assert len(local) == 1 and local[0]["data"]["location"] == "local", local
            await on_a.wait_events(lambda es: len(es) >= 1, 10, "resource.added on A")
            await on_d.result("update_resource", {"resource_id": "ev2", "resource_type": "tool",
                                                  "capabilities": ["new"]})
            await on_a.wait_events(lambda es: len(es) >= 2, 10, "resource.updated on A")
            await on_d.result("unregister_resource", {"resource_id": "ev2"})
            evs = await on_a.wait_events(lambda es: es if len(es) >= 3 else None, 10,
                                         "resource.removed on A")
            return evs
        finally:
            await on_a.close()
            await on_d.close()

    evs = arun(go(), 40)
    assert [e["topic"] for e in evs] == ["resource.added", "resource.updated",
                                         "resource.removed"], evs
    assert all(e["data"]["resource_id"] == "ev2" and e["source"] == d.id for e in evs), evs
    assert evs[0]["data"]["location"] == "remote"
    assert evs[1]["data"]["capabilities"] == ["new"] and evs[1]["data"]["version"] == 2


# ---- 6. a published event reaches every node exactly once --------------------------

def test_publish_reaches_every_node_once(square):
    a, b, c, d = square
    nodes = [a, b, c, d]
    payload = {"n": 1, "text": "ping", "list": [1, 2, 3]}

    async def go():
        conns = {}
        try:
            for n in nodes:
                conns[n.name] = await ApiConn.open(n.api)
                r = await conns[n.name].result("subscribe", {"topic": "demo.ping"})
                assert r["topic"] == "demo.ping" and isinstance(r["subscription"], int), r
            # a wildcard subscriber on A too
            conns["A*"] = await ApiConn.open(a.api)
            await conns["A*"].result("subscribe", {"topic": "demo.*"})

            p = await asyncio.get_running_loop().run_in_executor(
                None, lambda: run(["publish", "demo.ping", json.dumps(payload),
                                   "--node", d.api]))
            assert p.returncode == 0, p.stderr
            assert p.stdout.strip() == "published demo.ping", p.stdout

            # the first copy everywhere, then a quiet period for duplicates
            await asyncio.gather(*(cn.wait_events(lambda es: es, 10, "demo.ping on " + name)
                                   for name, cn in conns.items()))
            last_first = max(cn.events[0][0] for cn in conns.values())
            deadline = last_first + QUIET_S
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return {name: [e for _, e in cn.events] for name, cn in conns.items()}
        finally:
            for cn in conns.values():
                await cn.close()

    got = arun(go(), 40)
    for name, evs in got.items():
        assert len(evs) == 1, "node %s got %d copies: %s" % (name, len(evs), evs)
        assert evs[0] == {"topic": "demo.ping", "data": payload, "source": d.id}, (name, evs)


# ---- 7. peer events -----------------------------------------------------------

def test_peer_connected_and_disconnected(mesh):
    a = mesh.node("A")

    async def go():
        conn = await ApiConn.open(a.api)
        try:
            await conn.result("subscribe", {"topic": "peer.*"})
            e = await asyncio.get_running_loop().run_in_executor(
                None, lambda: mesh.node("E", peers=[a]))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_linked([(a, e)]))
            await conn.wait_events(lambda es: es, 10, "peer.connected")
            rc = await asyncio.get_running_loop().run_in_executor(None, e.terminate)
            assert rc == 0
            evs = await conn.wait_events(lambda es: es if len(es) >= 2 else None, 10,
                                         "peer.disconnected")
            return e, evs
        finally:
            await conn.close()

    e, evs = arun(go(), 60)
    assert [x["topic"] for x in evs] == ["peer.connected", "peer.disconnected"], evs
    for x in evs:
        assert x["data"] == {"id": e.id, "listen": e.listen}, x
        assert x["source"] == e.id, x


# ---- 8. what a node refuses ------------------------------------------------------

RESERVED = ["resource.added", "resource.custom", "peer.connected", "peer.x"]
BAD_TOPICS = ["bad topic", "", "x" * 129, "a*", "demo.*"]
BAD_PATTERNS = ["bad topic", "", "foo*", "a.*.b", "*.x", "**", "x" * 129, "demo.**", "ü"]


def test_reserved_and_invalid_topics_refused(square):
    a, b, c, d = square

    async def go():
        watch = await ApiConn.open(a.api)
        pub = await ApiConn.open(d.api)
        try:
            await watch.result("subscribe", {"topic": "*"})
            loop = asyncio.get_running_loop()
            for topic in RESERVED + BAD_TOPICS:
                p = await loop.run_in_executor(
                    None, lambda: run(["publish", topic, "{}", "--node", d.api]))
                # a bad or reserved topic is a usage error (exit 2)
                assert p.returncode == 2, (topic, p.returncode, p.stdout, p.stderr)
                assert p.stderr.strip() and p.stdout == "", (topic, p.stdout, p.stderr)
                r = await pub.call("publish", {"topic": topic, "data": 1})
                assert "error" in r and "result" not in r, (topic, r)
            # an event published afterwards arrives alone: nothing refused got through
            await pub.result("publish", {"topic": "demo.after", "data": 2})
            evs = await watch.wait_events(
                lambda es: es if any(e["topic"] == "demo.after" for e in es) else None, 10,
                "demo.after on A")
            return evs
        finally:
            await watch.close()
            await pub.close()

    evs = arun(go(), 60)
    assert evs == [{"topic": "demo.after", "data": 2, "source": d.id}], evs


def test_invalid_subscription_patterns_refused(square):
    a, b, c, d = square
    for pattern in BAD_PATTERNS:
        p = run(["subscribe", pattern, "--count", "1", "--node", a.api], timeout=15)
        assert p.returncode == 2, (pattern, p.returncode, p.stdout, p.stderr)
        assert "subscribed" not in p.stderr and p.stdout == "", (pattern, p.stderr)

    async def go():
        conn = await ApiConn.open(a.api)
        try:
            out = []
            for pattern in BAD_PATTERNS + [None, 7]:
                out.append((pattern, await conn.call("subscribe", {"topic": pattern})))
            ok = await conn.result("subscribe", {"topic": "demo.*"})
            return out, ok
        finally:
            await conn.close()

    out, ok = arun(go(), 30)
    for pattern, r in out:
        assert "error" in r and r["error"]["code"] == -32602, (pattern, r)
    assert ok["topic"] == "demo.*"
