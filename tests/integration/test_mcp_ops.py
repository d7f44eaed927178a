"""MCP bridge in operation: a server's JSON-RPC errors and tool _meta kept
end to end, protocol versions, the server's environment, `bridge remove`,
per-server state, and one list_changed per change, with the official SDK
client (tests/mcp/client.mjs) on node A and the servers on D of the seed
square, two hops away.
"""
import http.client
import json
import os
import re
import urllib.request

import pytest

from execlib import exec_cli, wait_known
from meshlib import rpc, run, wait_for, wait_linked
import mcplib
from mcplib import (CRASHY, EVERYTHING, SdkClient, bridge_entry, crashy_cmd,
                    ensure_npm_packages, mcp_http_url, mcp_stdio_spec, run_sdk)


@pytest.fixture(autouse=True)
def npm_packages():
    ensure_npm_packages()


def square(mesh, d_extra=()):
    a, b, c, d = mcplib.square(mesh, d_extra)
    assert d.id not in a.peer_ids()
    return a, b, c, d


def bridge_add(node, *args, timeout=60):
    """`meshzero bridge add` on NODE: options, then "--" and the command."""
    i = args.index("--") if "--" in args else len(args)
    return run(["bridge", "add"] + list(args[:i]) + ["--node", node.api] + list(args[i:]),
               timeout=timeout)


def both_transports(a, **spec):
    return [dict(mcp_stdio_spec(a), **spec),
            dict({"transport": "http", "url": mcp_http_url(a)}, **spec)]


def post_mcp(node, msg, headers=None):
    host, port = node.api[len("ws://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    h.update(headers or {})
    conn.request("POST", "/mcp", body=json.dumps(msg), headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, (json.loads(data) if data else None)


ELICIT = {"elicitations": [{"mode": "url", "url": "https://example.com/auth",
                            "message": "authorize first", "elicitationId": "e-1"}]}


def test_server_error_code_data_and_tool_meta_reach_the_client(mesh, tmp_path):
    a, b, c, d = square(mesh, ["--mcp", crashy_cmd()])
    wait_known(a, "crashy/rpcerror", timeout=30)
    args = {"code": -32042, "data": ELICIT}
    # The mesh caller sees the error's data beside its handler_error.
    r = run(["exec", "crashy/rpcerror", "call", json.dumps(args), "--json", "--node", a.api])
    assert r.returncode == 1 and "MCP error -32042" in r.stdout, r
    # The API's execute_remote carries it in error.data.data (PROTOCOL.md §8).
    r = rpc(a.api, "execute_remote", {"resource_id": "crashy/rpcerror", "method": "call",
                                      "params": args}, timeout=20)
    assert r["error"]["data"]["code"] == "handler_error", r
    assert r["error"]["data"]["data"] == {"mcp_error": {
        "code": -32042, "message": "bad arguments, says crashy", "data": ELICIT}}, r
    r = rpc(a.api, "execute_remote", {"resource_id": "crashy/fail", "method": "frob"}, timeout=20)
    assert r["error"]["data"]["code"] == "bad_request" and "data" not in r["error"]["data"], r
    ops = [{"op": "call", "name": "crashy_rpcerror", "arguments": args}, {"op": "list"}]
    for spec in both_transports(a, ops=ops):
        connected, called, listed = run_sdk(tmp_path, spec, name=spec["transport"])
        err = called["error"]
        assert err["code"] == -32042, (spec["transport"], called)
        assert err["data"] == ELICIT, (spec["transport"], called)
        assert "bad arguments, says crashy" in err["message"], called
        assert "handler_error" not in err["message"], called
        # The tool's own _meta is kept; meshzero's keys are under
        # meshzero/ and a server cannot forge them.
        ok = {t["name"]: t for t in listed["tools"]}["crashy_ok"]
        assert ok["_meta"]["org.example/owner"] == "crashy", ok
        assert ok["_meta"]["meshzero/node"] == d.id, ok
        assert ok["_meta"]["meshzero/resource_id"] == "crashy/ok", ok
    # On the wire, the JSON-RPC error is exactly the server's.
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "crashy_rpcerror", "arguments": args}})
    assert st == 200 and r == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32042, "message": "bad arguments, says crashy", "data": ELICIT}}, r
    # Without data the error stays data-less; other codes pass the same way.
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                         "params": {"name": "crashy_rpcerror", "arguments": {}}})
    assert r["error"] == {"code": -32602, "message": "bad arguments, says crashy"}, r
    # An error over 64 KiB keeps its code and message, not its data.
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                         "params": {"name": "crashy_rpcerror",
                                    "arguments": {"code": -32042, "data": "x" * 100000}}})
    assert r["error"] == {"code": -32042, "message": "bad arguments, says crashy"}, r
    assert "over 65536 (MZ_BRIDGE_ERROR_MAX)" in d.stderr()
    # A mesh failure (here the server crashing mid-call) is still the mesh's
    # -32000 with its code.
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                         "params": {"name": "crashy_crash", "arguments": {}}})
    assert st == 200 and r["error"]["code"] == -32000, r
    assert r["error"]["data"]["code"] == "handler_error", r


def test_each_protocol_version_is_answered_in_kind(mesh, tmp_path):
    a = mesh.node("A")
    d = mesh.node("D", peers=[a], extra=["--mcp", "everything=node %s stdio" % EVERYTHING])
    wait_linked([(a, d)])
    wait_known(a, "everything/get-sum", timeout=30)
    ops = [{"op": "call", "name": "everything_get-sum", "arguments": {"a": 1, "b": 2}}]
    # The real SDK client asking for 2024-11-05: served in it, and over HTTP
    # its later requests carry the MCP-Protocol-Version header with it.
    for spec in both_transports(a, ops=ops, protocolVersion="2024-11-05"):
        connected, called = run_sdk(tmp_path, spec, name="old-" + spec["transport"])
        assert connected["protocolVersion"] == "2024-11-05", connected
        assert called["result"]["content"][0]["text"] == "The sum of 1 and 2 is 3.", called
    for v in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"):
        st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                             "params": {"protocolVersion": v, "capabilities": {},
                                        "clientInfo": {"name": "raw", "version": "0"}}})
        assert st == 200 and r["result"]["protocolVersion"] == v, (v, r)
        st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                         headers={"MCP-Protocol-Version": v})
        assert st == 200 and any(t["name"] == "everything_get-sum"
                                 for t in r["result"]["tools"]), (v, st, r)
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 3, "method": "initialize",
                         "params": {"protocolVersion": "2023-01-01"}})
    assert r["result"]["protocolVersion"] == "2025-11-25", r
    st, r = post_mcp(a, {"jsonrpc": "2.0", "id": 4, "method": "ping"},
                     headers={"MCP-Protocol-Version": "2023-01-01"})
    assert st == 400 and "2023-01-01" in r["error"]["message"], (st, r)


def test_server_gets_only_the_environment_it_is_given(mesh):
    os.environ["MZ_TEST_SECRET"] = "node-only"
    os.environ["MZ_TEST_PASSED"] = "passed-on"
    try:
        a, b, c, d = square(mesh)
    finally:
        del os.environ["MZ_TEST_SECRET"]
        del os.environ["MZ_TEST_PASSED"]
    p = bridge_add(d, "ev", "--env", "MZ_SET=from --env", "--env", "LANG=C.UTF-8",
              "--env-pass", "MZ_TEST_PASSED", "--env-pass", "MZ_TEST_UNSET", "--",
              "node", EVERYTHING, "stdio", timeout=60)
    assert p.returncode == 0, p.stderr
    wait_known(a, "ev/get-env", timeout=30)
    out = exec_cli(a, "ev/get-env", "call", {}, json_out=True)
    assert out.rc == 0, out
    env = json.loads(out.json["result"]["content"][0]["text"])
    assert set(env) <= {"PATH", "HOME", "LANG", "MZ_SET", "MZ_TEST_PASSED"}, sorted(env)
    assert env["MZ_SET"] == "from --env" and env["MZ_TEST_PASSED"] == "passed-on"
    assert env["LANG"] == "C.UTF-8" and "PATH" in env
    assert "MZ_TEST_SECRET" not in env and "MZ_TEST_UNSET" not in env
    # Bad entries are refused with what is wrong.
    p = bridge_add(d, "x1", "--env", "NOEQUALS", "--", "true")
    assert p.returncode == 2 and "NAME=VALUE" in p.stderr, p.stderr
    p = bridge_add(d, "x2", "--env", "1BAD=v", "--", "true")
    assert p.returncode == 1 and "1BAD" in p.stderr, p.stderr
    p = bridge_add(d, "x3", "--env-pass", "NO-DASH", "--", "true")
    assert p.returncode == 1 and "NO-DASH" in p.stderr, p.stderr
    p = bridge_add(d, "x4", "--env", "A=b", "--url", "http://127.0.0.1:9/mcp")
    assert p.returncode == 2 and "--url" in p.stderr, p.stderr


def metric_states(node):
    url = "http://" + node.api[len("ws://"):] + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return dict(re.findall(r'meshzero_bridge_servers\{server="([^"]+)",state="([^"]+)"\} 1',
                           text))


def test_state_everywhere_and_remove_withdraws_two_hops_away(mesh):
    a, b, c, d = square(mesh)
    p = bridge_add(d, "crashy", "--", "node", CRASHY, timeout=60)
    assert p.returncode == 0 and "state=ready" in p.stdout, (p.stdout, p.stderr)
    wait_known(a, "crashy/ok", timeout=30)
    assert bridge_entry(d, "crashy")["state"] == "ready"
    st = d.status()["bridge"]["crashy"]
    assert st["state"] == "ready" and st["tools"] >= 7, st
    assert "mcp       crashy ready" in d.cli("status").stdout
    assert metric_states(d)["crashy"] == "ready"
    # A crash: degraded while it restarts, then ready again.
    out = exec_cli(a, "crashy/crash", "call", {}, json_out=True)
    assert out.code == "handler_error", out
    wait_for(lambda: "bridge.state server=crashy state=degraded" in d.stderr(), 20,
             what="degraded logged")
    bridge_entry(d, "crashy", state="ready")
    # A server that never comes up: failed, in the list, status and metrics.
    p = bridge_add(d, "gone", "--wait", "10", "--", "/nonexistent/mcp-server")
    assert p.returncode == 1, p.stderr
    assert bridge_entry(d, "gone", state="failed")["last_error"]
    assert d.status()["bridge"]["gone"]["state"] == "failed"
    assert metric_states(d)["gone"] == "failed"
    # remove: the tools leave A's directory, two hops away, and D's list.
    wait_known(a, "crashy/ok", timeout=30)
    p = d.cli("bridge", "remove", "crashy")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: not any(r.startswith("crashy/") for r in a.ids()), 20,
             what="crashy's tools withdrawn at A")
    assert not any(e["name"] == "crashy" for e in d.cli_json("bridge", "list"))
    assert "crashy" not in d.status()["bridge"] and "crashy" not in metric_states(d)
    out = exec_cli(a, "crashy/ok", "call", {}, json_out=True)
    assert out.code == "not_found", out
    p = d.cli("bridge", "remove", "crashy")
    assert p.returncode == 1, p.stderr


def test_one_list_changed_per_change_on_both_transports(mesh, tmp_path):
    a, b, c, d = square(mesh)

    def counting(op):
        clients = [SdkClient(tmp_path, spec, name="%s-%d" % (spec["transport"], i))
                   for i, spec in enumerate(both_transports(a, ops=[op]))]
        for cl in clients:
            assert cl.line()["op"] == "connected"
            assert cl.line()["op"] == "waiting"
        return clients

    def counts(clients):
        try:
            res = [cl.line(40) for cl in clients]
            for cl in clients:
                assert cl.wait() == 0
            return res
        finally:
            for cl in clients:
                cl.close()

    clients = counting({"op": "count_list_changed", "present": "ev_echo", "timeout_ms": 30000})
    p = bridge_add(d, "ev", "--", "node", EVERYTHING, "stdio", timeout=60)
    assert p.returncode == 0, p.stderr
    for res in counts(clients):
        assert res == {"op": "count_list_changed", "count": 1, "done": True}, res
    # The server relists right after initialize; the import is logged once.
    assert len(re.findall(r"mcp ev: \d+ tools imported", d.stderr())) == 1, d.stderr()
    clients = counting({"op": "count_list_changed", "absent": "ev_echo", "timeout_ms": 30000})
    p = d.cli("bridge", "remove", "ev")
    assert p.returncode == 0, p.stderr
    for res in counts(clients):
        assert res == {"op": "count_list_changed", "count": 1, "done": True}, res
