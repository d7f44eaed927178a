"""MCP bridge, import side: real MCP servers' tools become mesh resources.

@modelcontextprotocol/server-everything (the npm package, over stdio and
over Streamable HTTP) and tests/mcp/crashy.mjs (a server that breaks the
protocol on purpose) are imported on node D of the seed square and called
from node A, two hops away, with `meshzero exec`.
"""
import json
import os
import re
import socket
import subprocess

import pytest

from execlib import exec_cli, wait_known
from meshlib import run, wait_for, wait_linked
from mcplib import (EVERYTHING, bridge_entry, crashy_cmd, ensure_npm_packages,
                    everything_cmd, square)


@pytest.fixture(autouse=True)
def npm_packages():
    ensure_npm_packages()


def text_of(result):
    return [c["text"] for c in result["content"] if c["type"] == "text"]


def test_everything_on_d_echo_and_get_sum_from_a(mesh):
    a, b, c, d = square(mesh, ["--mcp", everything_cmd()])
    echo = wait_known(a, "everything/echo", timeout=30)
    wait_known(a, "everything/get-sum")
    # The record: type tool, capabilities from the name, the tool's
    # definition and a hash of it, inside the record D signed.
    assert echo["resource_type"] == "tool" and echo["node"] == d.id
    assert {"echo", "mcp", "mcp:everything"} <= set(echo["capabilities"])
    meta = echo["metadata"]
    assert meta["tool"] == "echo" and meta["bridge"] == "everything"
    assert meta["server"]["name"] == "mcp-servers/everything"
    assert meta["inputSchema"]["properties"]["message"]["type"] == "string"
    assert re.fullmatch(r"[0-9a-f]{64}", meta["tool_hash"])
    assert "annotations" in meta and meta["description"]

    out = exec_cli(a, "everything/echo", "call", {"message": "hello mesh"}, json_out=True)
    assert out.rc == 0, out
    assert out.json["result"] == {"content": [{"type": "text", "text": "Echo: hello mesh"}]}
    out = exec_cli(a, "everything/get-sum", "call", {"a": 2, "b": 3}, json_out=True)
    assert out.rc == 0, out
    assert text_of(out.json["result"]) == ["The sum of 2 and 3 is 5."]
    # structuredContent comes back unchanged
    out = exec_cli(a, "everything/get-structured-content", "call", {"location": "Chicago"},
                   json_out=True)
    assert out.rc == 0, out
    assert set(out.json["result"]["structuredContent"]) == {"temperature", "conditions",
                                                            "humidity"}
    # the server's own argument check is an MCP tool error or protocol error:
    # either way not a crash, and the bridge keeps serving
    out = exec_cli(a, "everything/get-sum", "call", {"a": "x"}, json_out=True)
    # (a result flagged isError exits 1, the result still printed with --json)
    assert out.rc == 1 and (out.json["result"].get("isError") is True
                            or out.code == "handler_error"), out
    # methods other than "call" are refused by the host
    out = exec_cli(a, "everything/echo", "frobnicate", {}, json_out=True)
    assert out.code == "bad_request", out
    # a task-only tool is not imported, and says why
    entry = bridge_entry(d, "everything")
    assert any(s["tool"] == "simulate-research-query" for s in entry["skipped"])
    assert "everything/echo" in entry["tools"]


def test_crash_mid_call_then_tools_return(mesh, tmp_path):
    state = tmp_path / "crashy.starts"
    a, b, c, d = square(mesh, ["--mcp", crashy_cmd(), "--mcp-env", "CRASHY_STATE=%s" % state])
    wait_known(a, "crashy/crash", timeout=30)
    out = exec_cli(a, "crashy/crash", "call", {}, json_out=True)
    assert out.code == "handler_error", out
    assert "exited with status 3" in out.message, out
    # withdrawn meanwhile, back after the restart (backoff), callable again
    wait_known(a, "crashy/ok", timeout=20)
    out = exec_cli(a, "crashy/ok", "call", {}, json_out=True)
    assert out.rc == 0 and text_of(out.json["result"])[0].startswith("ok"), out
    entry = bridge_entry(d, "crashy")
    assert entry["restarts"] >= 1
    assert state.read_text().count("start") >= 2
    assert d.running()


def test_tool_errors_timeouts_and_garbage(mesh):
    a, d = mesh.node("A"), None
    d = mesh.node("D", peers=[a], extra=["--mcp", crashy_cmd()])
    wait_linked([(a, d)])
    wait_known(a, "crashy/ok", timeout=30)
    # a tool's own failure stays a result (isError), printed, and exec exits 1
    out = exec_cli(a, "crashy/fail", "call", {}, json_out=True)
    assert out.rc == 1, out
    assert out.json["result"]["isError"] is True
    assert "isError" in out.stderr and "it broke" in out.stderr, out
    # a JSON-RPC error from the server is a handler_error naming the MCP error
    out = exec_cli(a, "crashy/rpcerror", "call", {}, json_out=True)
    assert out.code == "handler_error" and "MCP error -32602" in out.message, out
    # malformed lines from the server are ignored, the call still answers
    out = exec_cli(a, "crashy/garbage", "call", {}, json_out=True)
    assert out.rc == 0 and text_of(out.json["result"]) == ["after garbage"], out
    # a server slower than the call's timeout: timeout, and the server lives on
    out = exec_cli(a, "crashy/slow", "call", {"ms": 5000}, timeout=1, json_out=True)
    assert out.code == "timeout", out
    out = exec_cli(a, "crashy/ok", "call", {}, json_out=True)
    assert out.rc == 0, out
    # the oversized tool was skipped with a reason, not imported
    entry = bridge_entry(d, "crashy")
    huge = [s for s in entry["skipped"] if s["tool"] == "huge"]
    assert huge and "16384" in huge[0]["reason"], entry
    assert "crashy/huge" not in a.ids()
    assert entry["restarts"] == 0


def test_list_changed_resyncs_resources(mesh):
    a = mesh.node("A")
    d = mesh.node("D", peers=[a], extra=["--mcp", crashy_cmd()])
    wait_linked([(a, d)])
    wait_known(a, "crashy/grow", timeout=30)
    assert "crashy/grown" not in a.ids()
    out = exec_cli(a, "crashy/grow", "call", {}, json_out=True)
    assert out.rc == 0, out
    rec = wait_known(a, "crashy/grown", timeout=10)
    assert rec["metadata"]["description"] == "new"


def test_bridge_add_against_running_node(mesh):
    a = mesh.node("A")
    d = mesh.node("D", peers=[a])
    wait_linked([(a, d)])
    def add(*args, timeout=30):
        # --node goes before "--": everything after it is the command
        i = args.index("--")
        return run(["bridge", "add"] + list(args[:i]) + ["--node", d.api] + list(args[i:]),
                   timeout=timeout)

    p = add("ev2", "--tag", "demo", "--json", "--", "node", EVERYTHING, "stdio", timeout=60)
    assert p.returncode == 0, p.stderr
    entry = json.loads(p.stdout)
    assert entry["state"] == "ready" and "ev2/echo" in entry["tools"]
    rec = wait_known(a, "ev2/echo")
    assert "demo" in rec["capabilities"]
    out = exec_cli(a, "ev2/echo", "call", {"message": "added"}, json_out=True)
    assert text_of(out.json["result"]) == ["Echo: added"], out
    # the same name again, a bad name, a command that does not exist
    p = add("ev2", "--", "node", EVERYTHING)
    assert p.returncode == 1 and "already" in p.stderr, p.stderr
    p = add("bad/name", "--", "true")
    assert p.returncode == 1 and "bridge name" in p.stderr, p.stderr
    p = add("nosuch", "--wait", "10", "--", "/nonexistent/mcp-server")
    assert p.returncode == 1 and "cannot start" in p.stderr, p.stderr
    p = d.cli("bridge", "list")
    assert p.returncode == 0 and "ev2" in p.stdout and "nosuch" in p.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_streamable_http_server_imported(mesh, tmp_path):
    port = free_port()
    log = open(tmp_path / "everything-http.log", "wb")
    env = dict(os.environ, PORT=str(port))
    srv = subprocess.Popen(["node", EVERYTHING, "streamableHttp"], stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return srv.poll() is not None and pytest.fail(
                    "server-everything streamableHttp exited: "
                    + (tmp_path / "everything-http.log").read_text())
        wait_for(listening, 20, what="server-everything on port %d" % port)
        a = mesh.node("A")
        d = mesh.node("D", peers=[a],
                      extra=["--mcp", "evh=http://127.0.0.1:%d/mcp" % port])
        wait_linked([(a, d)])
        rec = wait_known(a, "evh/get-sum", timeout=30)
        assert rec["metadata"]["server"]["name"] == "mcp-servers/everything"
        out = exec_cli(a, "evh/get-sum", "call", {"a": 40, "b": 2}, json_out=True)
        assert out.rc == 0, out
        assert text_of(out.json["result"]) == ["The sum of 40 and 2 is 42."]
        out = exec_cli(a, "evh/echo", "call", {"message": "over http"}, json_out=True)
        assert text_of(out.json["result"]) == ["Echo: over http"], out
        # the server goes away: its tools are withdrawn, calls fail cleanly
        srv.terminate()
        srv.wait(10)
        wait_for(lambda: "evh/echo" not in a.ids() or exec_cli(
            a, "evh/echo", "call", {"message": "x"}, json_out=True).rc == 1, 20,
            what="evh withdrawn or failing")
        assert d.running()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        log.close()
