"""Remote execution between real nodes: `meshzero serve` and API-client
handlers, execute_remote over several hops, and every error code from a real
situation.

The seed's square (no A-D link, so A reaches D through B or C):

     A
    / \\
   B   C
    \\ /
     D
"""
import asyncio
import time

import pytest

from execlib import (ApiConn, arun, assert_exec_error, build_pair, build_square, exec_cli,
                     handler, in_directory, parse_error_output, wait_known)
from execlib import procs  # noqa: F401 -- a fixture
from meshlib import wait_for

N_CONCURRENT = 200


@pytest.fixture
def square(mesh):
    return build_square(mesh)


# ---- 1. a result two hops away ---------------------------------------------------

def test_exec_two_hops_returns_handler_result(square, procs):
    a, b, c, d = square
    procs.serve(d, "echo1", handler("echo.sh"), caps=["echo"])
    rec = wait_known(a, "echo1")
    assert rec["node"] == d.id and rec["location"] == "remote"

    params = {"name": "mesh", "n": [1, 2.5, None], "nested": {"ok": True}, "s": "é \"q\""}
    out = exec_cli(a, "echo1", "greet", params)
    assert out.rc == 0, out
    assert out.stderr == "", out
    assert out.json == {"input": {"method": "greet", "params": params, "caller": a.id}}, out

    # --json wraps the same result
    out = exec_cli(a, "echo1", "greet", params, json_out=True)
    assert out.rc == 0, out
    assert out.json == {"result": {"input": {"method": "greet", "params": params,
                                             "caller": a.id}}}, out

    # no PARAMS_JSON: the handler gets {}; from B (1 hop) the caller is B
    out = exec_cli(b, "echo1", "m")
    assert out.rc == 0, out
    assert out.json == {"input": {"method": "m", "params": {}, "caller": b.id}}, out


# ---- 2. many concurrent calls through one API connection ---------------------------

def test_200_concurrent_calls_via_api(square):
    a, b, c, d = square
    pushed = []

    def double(p):
        pushed.append(p)
        i = p["params"]["i"]
        return {"i": i, "double": 2 * i}

    async def go():
        host = await ApiConn.open(d.api)
        caller = await ApiConn.open(a.api)
        try:
            rec = await host.result("register_resource", {
                "resource_id": "doubler", "resource_type": "tool", "capabilities": ["math"],
                "handler": True, "methods": ["double"]})
            assert rec["node"] == d.id
            serving = asyncio.ensure_future(host.serve(double))
            rec = await in_directory(caller, "doubler", timeout=5.0)
            assert rec["node"] == d.id and rec["location"] == "remote"

            t0 = time.monotonic()
            futs = []
            for i in range(N_CONCURRENT):
                futs.append(await caller.send_request(
                    "execute_remote", {"resource_id": "doubler", "method": "double",
                                       "params": {"i": i}, "timeout_ms": 25000},
                    rid=1000 + i))
            resps = await asyncio.wait_for(asyncio.gather(*futs), 30)
            elapsed = time.monotonic() - t0
            serving.cancel()
            return resps, elapsed, caller.stray
        finally:
            await caller.close()
            await host.close()

    resps, elapsed, stray = arun(go(), 45)
    assert not stray, "responses to no request: %s" % stray[:5]
    bad = []
    for i, r in enumerate(resps):
        if r.get("id") != 1000 + i or r.get("result") != {"i": i, "double": 2 * i}:
            bad.append((i, r))
    assert not bad, "%d of %d calls wrong, e.g. %s" % (len(bad), N_CONCURRENT, bad[:5])
    # the host saw each call exactly once, each from A
    assert sorted(p["params"]["i"] for p in pushed) == list(range(N_CONCURRENT))
    assert {p["caller"] for p in pushed} == {a.id}
    assert {p["method"] for p in pushed} == {"double"}
    assert {p["resource_id"] for p in pushed} == {"doubler"}
    assert elapsed < 30


# ---- 3. the error codes ---------------------------------------------------------

def test_not_found(square, procs):
    a, b, c, d = square
    out = exec_cli(a, "no-such-resource", "m", json_out=True)
    assert_exec_error(out, "not_found", "no-such-resource")
    out = exec_cli(a, "no-such-resource", "m")
    assert out.rc == 1 and out.stdout == "", out
    assert parse_error_output(out)[0] == "not_found"


def test_handler_error_carries_stderr(square, procs):
    a, b, c, d = square
    procs.serve(d, "failing", [handler("fail.sh"), "boom"])
    wait_known(a, "failing")
    out = exec_cli(a, "failing", "m", json_out=True)
    assert_exec_error(out, "handler_error", "boom")
    out = exec_cli(a, "failing", "m")
    assert out.rc == 1 and out.stdout == "", out
    code, msg = parse_error_output(out)
    assert code == "handler_error" and "boom" in msg, out


def test_timeout_kills_slow_handler(square, procs):
    a, b, c, d = square
    procs.serve(d, "sleepy", [handler("slow.sh"), "30"])
    wait_known(a, "sleepy")
    out = exec_cli(a, "sleepy", "m", timeout=1, json_out=True)
    assert_exec_error(out, "timeout")
    assert out.elapsed < 3.5, "exec --timeout 1 took %.2fs" % out.elapsed
    # the host gave up too: serve killed the command at the call's deadline
    pids = procs.handler_pids()
    assert len(pids) == 1, pids
    wait_for(lambda: not procs.handler_alive(pids[0]), 5.0,
             what="the timed-out handler to be killed")


def test_bad_request_params_not_object(square, procs):
    a, b, c, d = square
    procs.serve(d, "echo2", handler("echo.sh"))
    wait_known(a, "echo2")
    # from the command line, params that are JSON but not an object are a
    # usage error (exit 2), refused before any call
    for params in ("[1]", "3", '"text"', "true"):
        out = exec_cli(a, "echo2", "m", params, json_out=True)
        assert out.rc == 2 and "must be a JSON object" in out.stderr, out
    # the same through the API
    res = arun(_api_call(a.api, "execute_remote",
                         {"resource_id": "echo2", "method": "m", "params": [1]}), 10)
    assert res["error"]["code"] == -32000, res
    assert res["error"]["data"]["code"] == "bad_request", res
    assert res["error"]["message"].startswith("bad_request: "), res


def test_bad_request_undeclared_method(square, procs):
    a, b, c, d = square
    procs.serve(d, "picky", handler("echo.sh"), methods=["allowed", "also"])
    wait_known(a, "picky")
    out = exec_cli(a, "picky", "forbidden", json_out=True)
    assert_exec_error(out, "bad_request", "forbidden")
    out = exec_cli(a, "picky", "also", {"k": 1})
    assert out.rc == 0, out
    assert out.json == {"input": {"method": "also", "params": {"k": 1}, "caller": a.id}}


def test_busy_over_max_concurrent(square, procs):
    a, b, c, d = square
    procs.serve(d, "single", [handler("slow.sh"), "wait"], max_concurrent=1)
    wait_known(a, "single")
    first = procs.exec_bg(a, "single", "m", {"n": 1}, timeout=30)
    procs.wait_in_flight(1)
    assert first.running()
    second = exec_cli(a, "single", "m", {"n": 2}, json_out=True)
    assert_exec_error(second, "busy")
    # the first call was not disturbed
    procs.release()
    assert first.wait(20) == 0, first.err()
    assert first.out().strip() == '{"result":{"done":true}}', first.out()
    # and the slot is free again
    out = exec_cli(a, "single", "m", {"n": 3}, json_out=True)
    assert out.rc == 0 and out.json == {"result": {"done": True}}, out


@pytest.mark.parametrize("shape", ["two-hops", "neighbour"])
def test_unreachable_when_host_killed_mid_call(mesh, procs, shape):
    if shape == "two-hops":
        a, b, c, d = build_square(mesh)
    else:
        a, d = build_pair(mesh)
    server = procs.serve(d, "doomed", [handler("slow.sh"), "20"])
    wait_known(a, "doomed")
    call = procs.exec_bg(a, "doomed", "m", timeout=30)
    procs.wait_in_flight(1)
    assert call.running(), call.err()
    d.kill()
    killed = time.monotonic()
    rc = call.wait(15)
    took = time.monotonic() - killed
    assert rc == 1, (rc, call.out(), call.err())
    assert '"code":"unreachable"' in call.err(), call.err()
    assert '"code":"unreachable"' in call.out(), call.out()
    assert took < 8.0, "unreachable took %.2fs after the host died" % took
    # serve lost its node; it must not leave its command behind
    server.wait(10)
    pid = procs.handler_pids()[0]
    wait_for(lambda: not procs.handler_alive(pid), 5.0,
             what="serve's command to be killed when serve ended")


def test_api_handler_outcomes(mesh):
    """An API-client handler's answers as the caller sees them: an error with
    data.code busy stays busy, a null result is a result, a silent handler is
    a caller timeout, and a handler that disconnects mid-call is a
    handler_error at once."""
    a, d = build_pair(mesh)

    async def go():
        host = await ApiConn.open(d.api)
        caller = await ApiConn.open(a.api)
        out = {}
        try:
            await host.result("register_resource", {"resource_id": "h", "resource_type": "t",
                                                    "handler": True})
            await in_directory(caller, "h")

            async def one(name, answer, req=None):
                f = await caller.send_request("execute_remote", dict(
                    {"resource_id": "h", "method": "m", "params": {"k": name}}, **(req or {})))
                push = await asyncio.wait_for(host.pushes.get(), 10)
                assert push["method"] == "execute" and push["params"]["params"] == {"k": name}
                assert push["params"]["caller"] == a.id
                t0 = time.monotonic()
                if answer is not None:
                    await host.send(dict({"jsonrpc": "2.0", "id": push["id"]}, **answer))
                out[name] = (await asyncio.wait_for(f, 10), time.monotonic() - t0)
                return push

            await one("busy", {"error": {"code": -32000, "message": "too many",
                                         "data": {"code": "busy"}}})
            await one("plain", {"error": {"code": -32000, "message": "it broke"}})
            await one("null", {"result": None})
            push = await one("silent", None, {"timeout": 0.5})
            # a late answer to the timed-out call is dropped quietly
            await host.send({"jsonrpc": "2.0", "id": push["id"], "result": 1})
            f = await caller.send_request("execute_remote", {"resource_id": "h", "method": "m"})
            await asyncio.wait_for(host.pushes.get(), 10)
            t0 = time.monotonic()
            await host.close()
            out["gone"] = (await asyncio.wait_for(f, 10), time.monotonic() - t0)
            return out
        finally:
            await caller.close()
            await host.close()

    out = arun(go(), 60)

    def code(name):
        return out[name][0]["error"]["data"]["code"]
    assert code("busy") == "busy", out["busy"]
    assert code("plain") == "handler_error", out["plain"]
    assert out["plain"][0]["error"]["data"]["message"] == "it broke", out["plain"]
    assert out["null"][0].get("result", "missing") is None, out["null"]
    assert code("silent") == "timeout" and out["silent"][1] < 3.0, out["silent"]
    assert code("gone") == "handler_error" and out["gone"][1] < 3.0, out["gone"]


def test_exec_local_resource(mesh, procs):
    """A call to a resource hosted on the calling node itself."""
    a = mesh.node("A")
    procs.serve(a, "loc", handler("echo.sh"))
    out = exec_cli(a, "loc", "m", {"x": 1})
    assert out.rc == 0, out
    assert out.json == {"input": {"method": "m", "params": {"x": 1}, "caller": a.id}}


# ---- 4. serve end to end ----------------------------------------------------------

def test_serve_registers_and_unregisters(square, procs):
    a, b, c, d = square
    server = procs.serve(d, "svc1", handler("echo.sh"), rtype="agent",
                         caps=["summarize", "translate"], meta={"version": "2"},
                         owner="alice")
    rec = wait_known(a, "svc1")
    assert rec["node"] == d.id and rec["location"] == "remote"
    assert rec["resource_type"] == "agent"
    assert sorted(rec["capabilities"]) == ["summarize", "translate"]
    assert rec["owner"] == "alice"
    assert rec["metadata"]["version"] == "2"
    found = a.query(rtype="agent", caps=["translate"])
    assert [r["resource_id"] for r in found] == ["svc1"]
    local = d.ids()["svc1"]
    assert local["location"] == "local"

    assert server.terminate() == 0, server.err()
    wait_for(lambda: "svc1" not in a.ids(), 5.0, what="svc1 gone from A")
    assert "svc1" not in d.ids()
    assert a.query(rtype="agent", caps=["translate"]) == []
    out = exec_cli(a, "svc1", "m", json_out=True)
    assert_exec_error(out, "not_found")


async def _api_call(url, method, params):
    conn = await ApiConn.open(url)
    try:
        return await conn.call(method, params)
    finally:
        await conn.close()
