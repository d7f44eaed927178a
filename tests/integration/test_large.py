"""Large call bodies at the edges (README "Limits", docs/PROTOCOL.md §1
"Limits"): a call or an answer that cannot travel is refused where it
starts with `too_large`, naming the limit, and no link is closed for it.

Real node processes on loopback; a resource is served by an API client of
its host (execlib.ApiConn). Every wait polls with a deadline.
"""
import asyncio
import json

from execlib import ApiConn, arun, assert_exec_error, exec_cli, in_directory
from meshlib import run, wait_linked

KB = 1024
LINK_LIMIT = 1048576          # the default --max-message


def counters(node):
    return node.status()["counters"]


def line(mesh, extra=()):
    """A - B - C, all links up."""
    a = mesh.node("A", extra=list(extra))
    b = mesh.node("B", peers=[a], extra=list(extra))
    c = mesh.node("C", peers=[b], extra=list(extra))
    wait_linked([(a, b), (b, c)])
    return a, b, c


def assert_links_kept(nodes, before):
    """No link closed for size, no link lost: each node has the peers it had."""
    for n in nodes:
        cs = counters(n)
        assert cs["oversize_closes"] == 0, (n.name, cs)
        assert cs["oversize_dropped"] == 0, (n.name, cs)
        assert n.peer_ids() == before[n.name], (n.name, n.peer_ids(), before[n.name])


async def with_host(host, caller, fn, body):
    """HOST serves resource "big" answering fn(params); BODY(ac) runs with an
    API connection to CALLER once CALLER lists the resource. Returns
    (BODY's value, the params of every push the handler got)."""
    seen = []

    def handle(p):
        seen.append(p)
        return fn(p["params"])
    hc = await ApiConn.open(host.api)
    ac = await ApiConn.open(caller.api)
    serving = None
    try:
        await hc.result("register_resource", {"resource_id": "big", "resource_type": "tool",
                                              "handler": True})
        serving = asyncio.ensure_future(hc.serve(handle))
        await in_directory(ac, "big", 10.0)
        return await body(ac), seen
    finally:
        if serving is not None:
            serving.cancel()
        await ac.close()
        await hc.close()


def echo_size(p):
    """The handler: {"n": len(params.blob)}, or a result of params.answer bytes."""
    if "answer" in p:
        return {"text": "y" * p["answer"]}
    return {"n": len(p.get("blob", ""))}


def test_900k_params_on_a_line_refused_at_the_caller_links_stay_up(mesh):
    """The call that used to tear the line apart: 900 KB of params from A's
    API to C over B. A refuses it at once with too_large naming
    --max-message and its value; no link closes anywhere; a small call right
    after works; the handler never saw the big one."""
    a, b, c = line(mesh)
    before = {n.name: n.peer_ids() for n in (a, b, c)}
    sent_before = counters(a)["messages_out"]

    async def body(ac):
        big = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                               "params": {"blob": "x" * (900 * KB)}}, timeout=10)
        small = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                 "params": {"blob": "abc"}}, timeout=10)
        return big, small
    (big, small), seen = arun(with_host(c, a, echo_size, body), 40)
    err = big.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", big
    assert "--max-message %d" % LINK_LIMIT in err["message"], big
    assert "params are" in err["message"], big
    assert small.get("result") == {"n": 3}, small
    assert [p["params"].get("blob") for p in seen] == ["abc"], "the big call reached the host"
    assert_links_kept((a, b, c), before)
    assert counters(a)["exec_too_large"] == 1, counters(a)
    # Nothing big left A: a few small messages (the small call, keepalives).
    assert counters(a)["bytes_out"] < 200 * KB, counters(a)
    assert counters(a)["messages_out"] - sent_before < 100, counters(a)


def test_result_over_the_link_limit_becomes_too_large_without_resends(mesh):
    """C's handler answers 1.5 MB: C sends A a small too_large error instead
    (and keeps that, not the result); A's caller gets it; links stay up; C
    sends nothing big (no resend storm); a small call works after."""
    a, b, c = line(mesh)
    before = {n.name: n.peer_ids() for n in (a, b, c)}

    async def body(ac):
        big = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                               "params": {"answer": 1500 * KB}}, timeout=15)
        small = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                 "params": {"blob": "ab"}}, timeout=10)
        return big, small
    (big, small), seen = arun(with_host(c, a, echo_size, body), 40)
    err = big.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", big
    assert "result is" in err["message"] and "--max-message %d" % LINK_LIMIT in err["message"], big
    assert small.get("result") == {"n": 2}, small
    assert len(seen) == 2, seen
    assert_links_kept((a, b, c), before)
    cc = counters(c)
    assert cc["exec_too_large"] == 1, cc
    assert cc["oversize_unsent"] == 0, cc
    # C received the 1.5 MB from its own API client; it sent none of it on.
    assert cc["bytes_out"] < 300 * KB, cc


def test_max_payload_refuses_at_cli_api_and_on_the_host(mesh, tmp_path):
    """--max-payload 1000: a 2000-byte call is refused with too_large naming
    --max-payload 1000 through the API and the CLI (the C API,
    mz_node_execute_remote, in tests/unit/test_exec.c); a host with
    --max-payload 1000 refuses a caller whose own limit is larger."""
    a = mesh.node("A", extra=["--max-payload", "1000"])
    c = mesh.node("C", peers=[a])
    wait_linked([(a, c)])
    assert a.status()["limits"]["max_payload"] == 1000
    assert c.status()["limits"]["max_payload"] == 64 * 1024 * 1024
    blob = {"blob": "x" * 2000}

    async def body(ac):
        via_api = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                   "params": blob}, timeout=10)
        return via_api
    via_api, seen = arun(with_host(c, a, echo_size, body), 30)
    err = via_api.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", via_api
    assert "--max-payload 1000" in err["message"], via_api

    out = exec_cli(a, "big", "m", blob, json_out=True)
    assert_exec_error(out, "too_large", "--max-payload 1000")

    # The other way round: C calls A's resource; A (the host) refuses.
    async def body2(cc):
        return await cc.call("execute_remote", {"resource_id": "big", "method": "m",
                                                "params": blob}, timeout=10)
    res, seen2 = arun(with_host(a, c, echo_size, body2), 30)
    err = res.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", res
    assert "--max-payload 1000" in err["message"], res
    assert seen == [] and seen2 == []
    assert counters(a)["oversize_closes"] == 0 and counters(c)["oversize_closes"] == 0


def test_api_request_over_max_api_message_gets_a_jsonrpc_error(mesh):
    """--max-api-message 65536: a 100 KB request is answered with a JSON-RPC
    error naming the option (its id kept), not a close; the connection
    serves the next request."""
    a = mesh.node("A", extra=["--max-api-message", "65536"])
    assert a.status()["limits"]["max_api_message"] == 65536

    async def go():
        ac = await ApiConn.open(a.api)
        try:
            big = await ac.call("execute_remote", {"resource_id": "x", "method": "m",
                                                   "params": {"blob": "x" * (100 * KB)}})
            st = await ac.call("status")
            return big, st
        finally:
            await ac.close()
    big, st = arun(go(), 20)
    assert big["error"]["code"] == -32600, big
    assert "--max-api-message 65536" in big["error"]["message"], big
    assert "result" in st, st
    assert counters(a)["oversize_closes"] == 0


def test_default_api_limit_takes_a_16mib_request(mesh):
    """The API reads requests up to --max-payload + 1 MiB by default: 16 MiB
    of params reach the node, which refuses them only for the link limit."""
    a = mesh.node("A")
    c = mesh.node("C", peers=[a])
    wait_linked([(a, c)])
    lim = a.status()["limits"]
    assert lim["max_api_message"] == 64 * 1024 * 1024 + 1024 * 1024, lim

    async def body(ac):
        return await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                "params": {"blob": "x" * (16 << 20)}},
                             timeout=30)
    res, seen = arun(with_host(c, a, echo_size, body), 60)
    err = res.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", res
    assert "--max-message" in err["message"], res
    assert seen == []


def test_exec_params_from_a_file_and_stdin(mesh, tmp_path):
    """exec --params-file F and --params-file - (stdin) send params larger
    than argv carries; a missing file and bad JSON are usage errors naming
    the file and the place."""
    a = mesh.node("A")
    c = mesh.node("C", peers=[a])
    wait_linked([(a, c)])
    f = tmp_path / "params.json"
    f.write_text(json.dumps({"blob": "z" * (300 * KB)}))
    bad = tmp_path / "bad.json"
    bad.write_text('{"blob": "z",\n "oops" }\n')

    async def body(ac):
        loop = asyncio.get_running_loop()
        r1 = await loop.run_in_executor(None, lambda: run(
            ["exec", "big", "m", "--params-file", str(f), "--json", "--node", a.api]))
        with open(f, "rb") as fh:
            data = fh.read()
        r2 = await loop.run_in_executor(None, lambda: run(
            ["exec", "big", "m", "--params-file", "-", "--json", "--node", a.api], stdin=data))
        return r1, r2
    (r1, r2), seen = arun(with_host(c, a, echo_size, body), 60)
    assert r1.returncode == 0 and json.loads(r1.stdout) == {"result": {"n": 300 * KB}}, r1
    assert r2.returncode == 0 and json.loads(r2.stdout) == {"result": {"n": 300 * KB}}, r2
    missing = run(["exec", "big", "m", "--params-file", str(tmp_path / "nope.json"),
                   "--node", a.api])
    assert missing.returncode == 1 and "nope.json" in missing.stderr, missing
    badp = run(["exec", "big", "m", "--params-file", str(bad), "--node", a.api])
    assert badp.returncode == 2, badp
    assert "bad.json" in badp.stderr and "line 2" in badp.stderr, badp
    both = run(["exec", "big", "m", "{}", "--params-file", str(f), "--node", a.api])
    assert both.returncode == 2, both
    helped = run(["exec", "--help"])
    assert "--params-file" in helped.stdout, helped


def test_params_just_under_one_message_pass_a_relay(mesh):
    """780,000 bytes of params (under the ~767 KiB a sealed 1 MiB message
    leaves) go A - B - C and back: the size check refuses no call that fits."""
    a, b, c = line(mesh)
    before = {n.name: n.peer_ids() for n in (a, b, c)}

    async def body(ac):
        return await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                "params": {"blob": "x" * 780000}}, timeout=20)
    res, seen = arun(with_host(c, a, echo_size, body), 40)
    assert res.get("result") == {"n": 780000}, res
    assert_links_kept((a, b, c), before)
    for n in (a, b, c):
        assert counters(n)["oversize_unsent"] == 0, (n.name, counters(n))


def test_handler_answer_over_max_api_message_fails_the_call(mesh):
    """C (--max-api-message 65536) hosts a resource served by an API client
    that answers 100 KB: C cannot read that answer; the call fails
    too_large at once (not a timeout) and C's API connection stays open."""
    a = mesh.node("A")
    c = mesh.node("C", peers=[a], extra=["--max-api-message", "65536"])
    wait_linked([(a, c)])

    async def body(ac):
        return await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                "params": {"answer": 100 * KB},
                                                "timeout_ms": 20000}, timeout=25)
    res, seen = arun(with_host(c, a, echo_size, body), 40)
    err = res.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", res
    assert "--max-api-message 65536" in err["message"], res
    assert len(seen) == 1
    assert counters(c)["oversize_closes"] == 0
