"""MCP bridge, export side: the official TypeScript SDK client
(@modelcontextprotocol/sdk, tests/mcp/client.mjs) uses the mesh as an MCP
server, through `meshzero mcp` (stdio) and the node's /mcp endpoint
(Streamable HTTP), on node A of the seed square while the tools live on D.
Malformed MCP traffic gets JSON-RPC errors and never ends the server.
"""
import http.client
import json
import re
import time

import pytest

from execlib import wait_known
from meshlib import wait_linked
from mcplib import (RawMcp, SdkClient, ensure_npm_packages, everything_cmd, mcp_http_url,
                    mcp_stdio_spec, run_sdk)

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.fixture(autouse=True)
def npm_packages():
    ensure_npm_packages()


@pytest.fixture
def square(mesh):
    """The seed square with server-everything imported on D; A knows its tools."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    c = mesh.node("C", peers=[a])
    d = mesh.node("D", peers=[b, c], extra=["--mcp", everything_cmd()])
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    wait_known(a, "everything/echo", timeout=30)
    wait_known(a, "everything/get-sum")
    assert d.id not in a.peer_ids()
    return a, b, c, d


def check_list_and_call(lines):
    connected, listed, summed, echoed = lines
    assert connected["protocolVersion"] == "2025-11-25"
    assert connected["serverInfo"]["name"] == "meshzero"
    names = {t["name"]: t for t in listed["tools"]}
    assert all(NAME_RE.match(n) for n in names), names.keys()
    assert "everything_echo" in names and "everything_get-sum" in names
    tool = names["everything_get-sum"]
    assert tool["inputSchema"]["required"] == ["a", "b"]
    assert tool["_meta"]["meshzero/resource_id"] == "everything/get-sum"
    assert re.fullmatch(r"[0-9a-f]{64}", tool["_meta"]["meshzero/tool_hash"])
    assert summed["result"]["content"] == [{"type": "text", "text": "The sum of 2 and 3 is 5."}]
    assert echoed["result"]["content"] == [{"type": "text", "text": "Echo: two hops"}]


OPS = [{"op": "list"},
       {"op": "call", "name": "everything_get-sum", "arguments": {"a": 2, "b": 3}},
       {"op": "call", "name": "everything_echo", "arguments": {"message": "two hops"}}]


def test_sdk_stdio_client_lists_and_calls_two_hops(square, tmp_path):
    a, b, c, d = square
    spec = dict(mcp_stdio_spec(a), ops=OPS)
    check_list_and_call(run_sdk(tmp_path, spec))


def test_sdk_http_client_lists_and_calls_two_hops(square, tmp_path):
    a, b, c, d = square
    spec = {"transport": "http", "url": mcp_http_url(a), "ops": OPS}
    check_list_and_call(run_sdk(tmp_path, spec))


def test_mesh_failures_are_jsonrpc_errors_tool_errors_are_results(square, tmp_path):
    a, b, c, d = square
    # a tool resource on C with no handler: the host answers handler_error
    c.register("orphan-tool", "tool", meta={"description": "nobody serves me"})
    wait_known(a, "orphan-tool")
    spec = dict(mcp_stdio_spec(a), ops=[
        {"op": "call", "name": "orphan-tool", "arguments": {"method": "run", "params": {}}},
        {"op": "call", "name": "no-such-tool", "arguments": {}},
        {"op": "call", "name": "everything_get-sum", "arguments": {"a": "not a number"}}])
    _, orphan, missing, bad = run_sdk(tmp_path, spec)
    assert orphan["error"]["code"] == -32000, orphan
    assert "handler_error" in orphan["error"]["message"], orphan
    assert missing["error"]["code"] == -32602 and "Unknown tool" in missing["error"]["message"]
    # server-everything's own validation: a tool error result or its own
    # protocol error relayed as handler_error, never a dead bridge
    assert bad.get("result", {}).get("isError") is True or "handler_error" in bad["error"][
        "message"], bad


def test_list_changed_reaches_clients_when_another_node_adds_a_tool(square, tmp_path):
    a, b, c, d = square
    stdio = SdkClient(tmp_path, dict(mcp_stdio_spec(a), ops=[
        {"op": "wait_list_changed", "timeout_ms": 15000}, {"op": "list"}]), name="stdio")
    http = SdkClient(tmp_path, {"transport": "http", "url": mcp_http_url(a), "ops": [
        {"op": "wait_list_changed", "timeout_ms": 15000}, {"op": "list"}]}, name="http")
    try:
        for cl in (stdio, http):
            assert cl.line()["op"] == "connected"
            assert cl.line()["op"] == "waiting"
        # the HTTP client opens its event stream right after initialization
        time.sleep(0.5)
        c.register("late-tool", "tool", caps=["late"], meta={"description": "added on C"})
        for cl in (stdio, http):
            seen = cl.line()
            assert seen == {"op": "wait_list_changed", "seen": True}, (cl.err_path, seen)
            names = [t["name"] for t in cl.line()["tools"]]
            assert "late-tool" in names
            assert cl.wait() == 0
    finally:
        stdio.close()
        http.close()


def test_raw_stdio_malformed_traffic_and_versions(square, tmp_path):
    a, b, c, d = square
    m = RawMcp(tmp_path, a)
    try:
        r = m.call({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                               "clientInfo": {"name": "raw", "version": "0"}}})
        assert r["result"]["protocolVersion"] == "2025-03-26"
        r = m.call({"jsonrpc": "2.0", "id": 2, "method": "initialize",
                    "params": {"protocolVersion": "1999-01-01"}})
        assert r["result"]["protocolVersion"] == "2025-11-25"
        assert m.call("this is not json")["error"]["code"] == -32700
        assert m.call("[1, 2]")["error"]["code"] == -32600
        assert m.call("42")["error"]["code"] == -32600
        assert m.call({"jsonrpc": "1.0", "id": 3, "method": "ping"})["error"]["code"] == -32600
        assert m.call({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"})["error"]["code"] \
            == -32600
        assert m.call({"jsonrpc": "2.0", "id": 4, "method": "nope/nope"})["error"]["code"] \
            == -32601
        assert m.call({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": []})[
            "error"]["code"] == -32602
        assert m.call({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                       "params": {"name": 7}})["error"]["code"] == -32602
        assert m.call({"jsonrpc": "2.0", "id": 7, "method": "tools/list",
                       "params": {"cursor": "bogus"}})["error"]["code"] == -32602
        m.send({"jsonrpc": "2.0", "method": "notifications/whatever"})   # ignored
        m.send({"jsonrpc": "2.0", "id": 99, "result": {}})                # ignored
        m.send(b"\xff\xfe not utf-8")
        assert m.recv()["error"]["code"] == -32700
        # still alive and working, stateless: tools/call without initialize
        r = m.call({"jsonrpc": "2.0", "id": 8, "method": "ping"})
        assert r == {"jsonrpc": "2.0", "id": 8, "result": {}}
        r = m.call({"jsonrpc": "2.0", "id": "s9", "method": "tools/call",
                    "params": {"name": "everything_echo", "arguments": {"message": "raw"}}})
        assert r["id"] == "s9" and r["result"]["content"][0]["text"] == "Echo: raw"
    finally:
        assert m.close() == 0


def http_post(node, body, headers=None, method="POST", path="/mcp"):
    host, port = node.api[len("ws://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, (json.loads(data) if data else None)


def test_http_endpoint_refuses_malformed_and_foreign_requests(square):
    a, b, c, d = square
    st, r = http_post(a, "not json")
    assert st == 200 and r["error"]["code"] == -32700
    st, r = http_post(a, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                      {"Origin": "http://evil.example"})
    assert st == 403
    st, r = http_post(a, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                      {"Content-Type": "text/plain"})
    assert st == 415
    st, r = http_post(a, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                      {"MCP-Protocol-Version": "1999-01-01"})
    assert st == 400
    st, r = http_post(a, None, method="DELETE")
    assert st == 405
    st, r = http_post(a, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    assert st == 202 and r is None
    st, r = http_post(a, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                     "params": {"name": "everything_echo",
                                                "arguments": {"message": "plain http"}}}),
                      {"Origin": "http://localhost:3000"})
    assert st == 200 and r["result"]["content"][0]["text"] == "Echo: plain http"
    # a web page cannot open the API WebSocket either
    import asyncio
    import websockets

    async def ws_from(origin):
        async with websockets.connect(a.api, origin=origin, open_timeout=5):
            return True
    with pytest.raises(Exception):
        asyncio.run(ws_from("http://evil.example"))
    assert asyncio.run(ws_from("http://127.0.0.1"))
    assert a.running() and a.status()["id"] == a.id


def test_name_mapping_for_ids_mcp_forbids(mesh, tmp_path):
    a = mesh.node("A")
    long_id = "x" * 100
    for rid in ("svc/alpha:1", "svc_alpha_1", long_id, "plain-name"):
        a.register(rid, "tool", meta={"description": "d"})
    spec = dict(mcp_stdio_spec(a), ops=[{"op": "list"}])
    _, listed = run_sdk(tmp_path, spec)
    names = {t["_meta"]["meshzero/resource_id"]: t["name"] for t in listed["tools"]}
    assert len(names) == 4 and len(set(names.values())) == 4
    assert all(NAME_RE.match(n) for n in names.values()), names
    assert names["plain-name"] == "plain-name"
    # "svc/alpha:1" and "svc_alpha_1" sanitise alike: both get a hash suffix
    assert re.fullmatch(r"svc_alpha_1_[0-9a-f]{8}", names["svc/alpha:1"])
    assert re.fullmatch(r"svc_alpha_1_[0-9a-f]{8}", names["svc_alpha_1"])
    assert re.fullmatch(r"x{55}_[0-9a-f]{8}", names[long_id])
    # a non-MCP resource is called with {method, params}; its result is wrapped
    spec = dict(mcp_stdio_spec(a, "--type", "*"), ops=[
        {"op": "call", "name": names["plain-name"], "arguments": {"method": "m", "params": {}}}])
    _, called = run_sdk(tmp_path, spec)
    assert "handler_error" in called["error"]["message"]   # registered without a handler
