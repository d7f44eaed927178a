"""The client against a fake node (websockets.serve): framing, matching of
answers, error mapping, hostile and malformed node messages, handlers,
event routing, connection loss and reconnect."""
import asyncio
import json
import threading

import pytest

import meshzero
from fakenode import STATUS, FakeNode

RECORD = {"resource_id": "agent123", "resource_type": "agent", "owner": "user456",
          "capabilities": ["image_processing"], "metadata": {"version": "1.0"},
          "node": "d" * 64, "version": 3, "owner_key": "d" * 64, "signature": "a" * 128,
          "location": "remote"}


async def fake(on_request=None, **kw):
    return await FakeNode(on_request, **kw).start()


async def test_framing_one_jsonrpc_request_per_message():
    async def on(f, ws, req):
        await f.reply(ws, req, [RECORD])
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        res = await mesh.query_resources(resource_type="agent", capabilities=["image_processing"])
    req = f.sent("query_resources")[0]
    assert req == {"jsonrpc": "2.0", "id": req["id"], "method": "query_resources",
                   "params": {"resource_type": "agent", "capabilities": ["image_processing"]}}
    assert isinstance(req["id"], int)
    assert all(isinstance(t, str) for t in f.raw)
    assert res == [meshzero.Resource.from_dict(RECORD)]
    r = res[0]
    assert (r.resource_id, r.owner, r.capabilities, r.node, r.version, r.location) == \
        ("agent123", "user456", ("image_processing",), "d" * 64, 3, "remote")
    assert r.to_dict() == RECORD
    with pytest.raises(Exception):
        r.owner = "x"       # frozen
    await f.stop()


async def test_answers_matched_by_id_in_any_order():
    held = []

    async def on(f, ws, req):
        held.append(req)
        if len(held) == 20:         # answer all, last request first
            for q in reversed(held):
                await f.reply(ws, q, {"echo": q["params"]["params"]["n"]})
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        out = await asyncio.gather(*(mesh.execute_remote("r", "m", {"n": i}) for i in range(20)))
    assert out == [{"echo": i} for i in range(20)]
    await f.stop()


CODES = [("not_found", meshzero.NotFound), ("unreachable", meshzero.Unreachable),
         ("timeout", meshzero.Timeout), ("handler_error", meshzero.HandlerError),
         ("busy", meshzero.Busy), ("denied", meshzero.Denied),
         ("bad_request", meshzero.BadRequest)]


async def test_execute_error_codes_map_one_to_one():
    async def on(f, ws, req):
        code = req["params"]["method"]
        await f.error(ws, req, -32000, "%s: it said %s" % (code, code),
                      {"code": code, "message": "it said " + code})
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        for code, cls in CODES:
            with pytest.raises(cls) as ei:
                await mesh.execute_remote("r", code)
            e = ei.value
            assert type(e) is cls and isinstance(e, meshzero.MeshError)
            assert (e.code, e.message, e.data["code"]) == (code, "it said " + code, code)
        with pytest.raises(TimeoutError):
            await mesh.execute_remote("r", "timeout")
        # an unknown code keeps its name on the root class
        with pytest.raises(meshzero.MeshError) as ei:
            await mesh.execute_remote("r", "new_code")
        assert type(ei.value) is meshzero.MeshError and ei.value.code == "new_code"
    await f.stop()


async def test_status_and_jsonrpc_errors_map():
    table = {"ENOTFOUND": meshzero.NotFound, "EUNREACHABLE": meshzero.Unreachable,
             "ELIMIT": meshzero.Busy, "EINVAL": meshzero.BadRequest, "EIO": meshzero.MeshError}

    async def on(f, ws, req):
        if req["method"] == "publish":
            await f.error(ws, req, -32601, "method not found")
        else:
            await f.error(ws, req, -32000, "failed", {"status": req["params"]["resource_id"]})
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        for status, cls in table.items():
            with pytest.raises(cls) as ei:
                await mesh.unregister_resource(status)
            assert type(ei.value) is cls and ei.value.data == {"status": status}
        with pytest.raises(meshzero.BadRequest):
            await mesh.publish("t", 1)
    await f.stop()


async def test_hostile_messages_are_ignored_and_counted():
    async def on(f, ws, req):
        for junk in ("not json {", "[1,2]", "42", '"str"', "[" * 100000 + "]" * 100000,
                     json.dumps({"jsonrpc": "2.0", "id": 999999, "result": 1}),
                     json.dumps({"jsonrpc": "2.0", "id": "x", "result": 1}),
                     json.dumps({"jsonrpc": "2.0", "id": req["id"] + 1000, "error": {}}),
                     json.dumps({"jsonrpc": "2.0", "method": "event",
                                 "params": {"topic": "nobody.listens", "data": 1}}),
                     json.dumps({"jsonrpc": "2.0", "method": "event", "params": "garbage"}),
                     json.dumps({"jsonrpc": "2.0", "method": "what", "id": 5}),
                     json.dumps({"jsonrpc": "2.0", "id": req["id"]})):
            await ws.send(junk)
        await ws.send(b"\x00binary")
        await f.reply(ws, req, {"published": True})
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        await mesh.publish("t", {"a": 1})
        s = mesh.stats
        assert s["ignored_non_json"] == 2     # the bad text and the too-deep nesting
        assert s["ignored_unknown_id"] == 3
        assert s["ignored_unknown_subscription"] == 1
        assert s["ignored_malformed"] >= 5
        assert s["ignored_binary"] == 1
        # the client still works, and answered the unknown method
        assert (await mesh.status()).id == "f" * 64
        await f.wait_for(lambda: any(m.get("id") == 5 and "error" in m for m in f.received))
    await f.stop()


async def test_malformed_results_fail_only_that_call():
    answers = {"query_resources": {"not": "a list"}, "peers": [{"id": 5}],
               "connect_to_peer": None, "subscribe": {"subscription": "x"},
               "register_resource": {"resource_id": 1}}

    async def on(f, ws, req):
        await f.reply(ws, req, answers[req["method"]])
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        calls = [mesh.query_resources(), mesh.peers(), mesh.connect_to_peer("ws://x:1"),
                 mesh.subscribe("t", lambda e: None),
                 mesh.register_resource(resource_id="a", resource_type="t")]
        for c in calls:
            with pytest.raises(meshzero.MeshError) as ei:
                await c
            assert ei.value.code == "bad_reply"
        assert (await mesh.status()).id == "f" * 64
    await f.stop()


async def test_oversized_node_message_fails_pending_promptly():
    async def on(f, ws, req):
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "x" * 5000}))
    f = await fake(on)
    mesh = await meshzero.AsyncMesh(f.url, max_receive=4096).connect()
    with pytest.raises(meshzero.ConnectionLost) as ei:
        await asyncio.wait_for(mesh.publish("t"), 5)
    assert "4096" in ei.value.message
    assert not mesh.connected
    with pytest.raises(meshzero.ConnectionLost):
        await mesh.status()
    await mesh.close()
    await f.stop()


async def test_node_closing_mid_call_is_connection_lost():
    async def on(f, ws, req):
        await ws.close(1011, "going away")
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        with pytest.raises(meshzero.ConnectionLost) as ei:
            await asyncio.wait_for(mesh.execute_remote("r", "m"), 5)
        assert "1011" in ei.value.message
    await f.stop()


async def test_too_large_refused_before_sending_and_on_1009():
    async def on(f, ws, req):
        await ws.close(1009, "message too big: over 2000 bytes")
    f = await fake(on, status=dict(STATUS, limits={"max_message": 3000}))
    async with meshzero.AsyncMesh(f.url) as mesh:
        assert mesh.max_message == 3000
        with pytest.raises(meshzero.TooLarge) as ei:
            await mesh.execute_remote("r", "m", {"blob": "x" * 4000})
        assert ei.value.data["limit"] == 3000
        assert not f.sent("execute_remote")          # never sent
        with pytest.raises(meshzero.TooLarge) as ei:  # over the node's real limit
            await mesh.execute_remote("r", "m", {"blob": "x" * 2500})
        assert "over 2000 bytes" in ei.value.message
    await f.stop()



async def test_no_answer_is_timeout():
    f = await fake(lambda f, ws, req: None)
    async with meshzero.AsyncMesh(f.url, timeout=0.3) as mesh:
        with pytest.raises(meshzero.Timeout):
            await mesh.publish("t")
        with pytest.raises(meshzero.Timeout):
            await mesh.execute_remote("r", "m", timeout=0.1)    # waits 0.1 s + slack
    await f.stop()


async def test_unreachable_url_is_connection_lost():
    f = await fake()
    url = f.url
    await f.stop()
    with pytest.raises(meshzero.ConnectionLost) as ei:
        await meshzero.AsyncMesh(url, timeout=2).connect()
    assert url in ei.value.message
    with pytest.raises(meshzero.BadRequest):
        meshzero.AsyncMesh("http://127.0.0.1:1")


async def _push(ws, pid, params):
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": pid, "method": "execute",
                              "params": params}))


async def test_handler_calls_served_concurrently_with_codes():
    release = asyncio.Event()

    async def handler(method, params, caller):
        if method == "slow":
            await release.wait()
            return {"slow": True}
        if method == "busy":
            raise meshzero.Busy("too many")
        if method == "bad":
            raise meshzero.BadRequest("no such thing")
        if method == "nojson":
            return {1, 2}
        if method == "boom":
            raise ValueError("it broke")
        return {"method": method, "params": params, "caller": caller}

    async def on(f, ws, req):
        if req["method"] == "register_resource":
            await f.reply(ws, req, dict(RECORD, location="local"))
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url) as mesh:
        await mesh.register_resource(resource_id="agent123", resource_type="agent",
                                     handler=handler, methods=["echo", "slow"])
        reg = f.sent("register_resource")[0]["params"]
        assert reg["handler"] is True and reg["methods"] == ["echo", "slow"]
        ws = f.conns[0]
        base = {"resource_id": "agent123", "params": {"a": 1}, "caller": "c" * 64,
                "deadline_ms": 0}
        await _push(ws, "x1", dict(base, method="slow"))
        for i, m in enumerate(("echo", "busy", "bad", "nojson", "boom"), 2):
            await _push(ws, "x%d" % i, dict(base, method=m))
        await _push(ws, "x7", {"resource_id": "other", "method": "m", "params": {}})
        await _push(ws, "x8", ["not", "an", "object"])

        def answers():
            return {m["id"]: m for m in f.received if "method" not in m}
        # everything but the slow call answered while it still runs
        await f.wait_for(lambda: len(answers()) == 7)
        a = answers()
        assert "x1" not in a
        assert a["x2"]["result"] == {"method": "echo", "params": {"a": 1}, "caller": "c" * 64}
        assert a["x3"]["error"]["data"]["code"] == "busy"
        assert a["x4"]["error"]["data"]["code"] == "bad_request"
        for pid in ("x5", "x6", "x7"):
            assert a[pid]["error"]["data"]["code"] == "handler_error"
        assert "not JSON" in a["x5"]["error"]["message"]
        assert a["x6"]["error"]["message"] == "ValueError: it broke"
        assert a["x8"]["error"]["data"]["code"] == "bad_request"
        release.set()
        await f.wait_for(lambda: "x1" in answers())
        assert answers()["x1"]["result"] == {"slow": True}
    await f.stop()


async def test_overlapping_subscriptions_each_get_an_event_once():
    subs = {}

    async def on(f, ws, req):
        if req["method"] == "subscribe":
            sid = len(f.sent("subscribe"))
            subs[sid] = req["params"]["topic"]
            await f.reply(ws, req, {"subscription": sid, "topic": req["params"]["topic"]})
        elif req["method"] == "publish":
            # the node: one notification per matching subscription
            topic = req["params"]["topic"]
            for p in subs.values():
                if meshzero.topic_matches(p, topic):
                    await ws.send(json.dumps({"jsonrpc": "2.0", "method": "event", "params": {
                        "topic": topic, "data": req["params"]["data"], "source": "s" * 64}}))
            await f.reply(ws, req, {"published": True})
        elif req["method"] == "unsubscribe":
            del subs[req["params"]["subscription"]]
            await f.reply(ws, req, {"removed": True})
    f = await fake(on)
    got = {"a": [], "b": [], "c": []}
    async with meshzero.AsyncMesh(f.url) as mesh:
        await mesh.subscribe("resource.*", lambda e: got["a"].append(e.data))
        await mesh.subscribe("*", lambda e: got["b"].append(e.data))

        async def acb(e):
            got["c"].append(e.data)
        sub_c = await mesh.subscribe("resource.added", acb)
        for i in range(5):
            await mesh.publish("resource.added", i)
        await mesh.publish("other", "o")
        async with mesh.events("resource.*") as stream:
            await mesh.publish("resource.removed", "r")
            ev = await asyncio.wait_for(stream.__anext__(), 5)
            assert (ev.topic, ev.data, ev.source) == ("resource.removed", "r", "s" * 64)
        await sub_c.unsubscribe()
        await sub_c.unsubscribe()          # idempotent
        await mesh.publish("resource.added", 9)
        assert len(f.sent("subscribe")) == 3      # "resource.*" twice is one node subscription
    assert got["a"] == [0, 1, 2, 3, 4, "r", 9]
    assert got["b"] == [0, 1, 2, 3, 4, "o", "r", 9]
    assert got["c"] == [0, 1, 2, 3, 4]
    await f.stop()


async def test_reconnect_restores_subscriptions_and_served_resources():
    async def on(f, ws, req):
        m = req["method"]
        if m == "subscribe":
            await f.reply(ws, req, {"subscription": 7, "topic": req["params"]["topic"]})
        elif m == "register_resource":
            await f.reply(ws, req, RECORD)
        elif m == "execute_remote":
            await ws.close(1001, "restarting")
    f = await fake(on)
    async with meshzero.AsyncMesh(f.url, reconnect=True) as mesh:
        got = []
        await mesh.subscribe("demo.*", got.append)
        await mesh.register_resource(resource_id="agent123", resource_type="agent",
                                     handler=lambda m, p, c: "ok")
        with pytest.raises(meshzero.ConnectionLost):
            await mesh.execute_remote("r", "m")
        await mesh.wait_connected(5)
        await f.wait_for(lambda: len(f.sent("register_resource")) == 2)
        assert f.connects == 2
        assert [m["params"]["topic"] for m in f.sent("subscribe")] == ["demo.*", "demo.*"]
        assert f.sent("register_resource")[1]["params"]["handler"] is True
        await f.conns[0].send(json.dumps({"jsonrpc": "2.0", "method": "event", "params": {
            "topic": "demo.x", "data": 1, "source": ""}}))
        await _push(f.conns[0], "x1", {"resource_id": "agent123", "method": "m", "params": {}})
        await f.wait_for(lambda: any(m.get("id") == "x1" for m in f.received))
        assert got and got[0].data == 1
    await f.stop()


def test_blocking_facade_runs_the_async_client():
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box = {}

    async def on(f, ws, req):
        if req["method"] == "execute_remote":
            await f.reply(ws, req, {"thread": threading.current_thread().name})
        elif req["method"] == "subscribe":
            await f.reply(ws, req, {"subscription": 1, "topic": "t"})
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "event",
                                      "params": {"topic": "t", "data": 5}}))

    def serve():
        asyncio.set_event_loop(loop)
        box["f"] = loop.run_until_complete(fake(on))
        ready.set()
        loop.run_forever()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(5)
    got = []
    seen = threading.Event()

    def cb(e):
        got.append((e.data, threading.current_thread().name))
        seen.set()
    with meshzero.connect(box["f"].url) as mesh:
        assert isinstance(mesh.aio, meshzero.AsyncMesh)
        assert mesh.execute_remote(resource_id="r", method="m", params={}) == {"thread": t.name}
        h = mesh.subscribe("t", cb)
        assert seen.wait(5)
        assert got[0][0] == 5 and got[0][1].startswith("meshzero-callback")
        assert isinstance(h, meshzero.SubscriptionHandle)
    mesh.close()        # idempotent
    asyncio.run_coroutine_threadsafe(box["f"].stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


async def test_concurrent_subscribes_to_one_pattern_share_one_node_subscription():
    async def on(f, ws, req):
        if req["method"] == "subscribe":
            await f.reply(ws, req, {"subscription": 1, "topic": req["params"]["topic"]})
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "event",
                                      "params": {"topic": "t.x", "data": 1}}))
    f = await fake(on)
    got = [[], []]
    async with meshzero.AsyncMesh(f.url) as mesh:
        await asyncio.gather(mesh.subscribe("t.*", got[0].append),
                             mesh.subscribe("t.*", got[1].append))
        await f.wait_for(lambda: len(f.sent("subscribe")) == 1)
        await mesh.status()         # the event came before this answer
    assert len(f.sent("subscribe")) == 1
    assert [len(g) for g in got] == [1, 1]
    await f.stop()


def test_blocking_connect_failure_leaves_no_thread():
    before = threading.active_count()
    with pytest.raises(meshzero.ConnectionLost):
        meshzero.connect("ws://127.0.0.1:1", timeout=2)
    with pytest.raises(meshzero.BadRequest):
        meshzero.connect("nonsense://x")
    assert threading.active_count() == before
