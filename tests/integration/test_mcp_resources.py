"""MCP resources, resource templates, prompts and completions through the
mesh: server-everything imported on D of the seed square, the official SDK
client (tests/mcp/client.mjs) on A, two hops away, through `meshzero mcp`
(stdio) and A's /mcp (Streamable HTTP): lists, text and blob reads, a
subscription whose update notification arrives, prompts fetched with
arguments, completions for a prompt and a resource template.
"""
import base64
import os
import signal

import pytest

from meshlib import run, wait_for
from execlib import assert_exec_error, exec_cli, wait_known
from mcplib import (EVERYTHING, SdkClient, bridge_entry, ensure_npm_packages, mcp_http_url,
                    mcp_stdio_spec, run_sdk)
from test_mcp_export import square  # noqa: F401  (the fixture)

SRV = "meshzero://everything/"
DOC = SRV + "demo://resource/static/document/features.md"
TEXT_TEMPLATE = SRV + "demo://resource/dynamic/text/{resourceId}"


@pytest.fixture(autouse=True)
def npm_packages():
    ensure_npm_packages()


def req(method, params=None):
    return {"op": "request", "method": method, "params": params or {}}


OPS = [
    req("resources/list"),
    req("resources/templates/list"),
    req("resources/read", {"uri": SRV + "demo://resource/dynamic/text/3"}),
    req("resources/read", {"uri": SRV + "demo://resource/dynamic/blob/2"}),
    req("resources/read", {"uri": DOC}),
    req("prompts/list"),
    req("prompts/get", {"name": "everything/args-prompt",
                        "arguments": {"city": "Lyon", "state": "Rhone"}}),
    req("prompts/get", {"name": "everything/resource-prompt",
                        "arguments": {"resourceType": "Text", "resourceId": "4"}}),
    req("completion/complete", {"ref": {"type": "ref/prompt",
                                        "name": "everything/completable-prompt"},
                                "argument": {"name": "department", "value": "S"}}),
    req("completion/complete", {"ref": {"type": "ref/prompt",
                                        "name": "everything/completable-prompt"},
                                "argument": {"name": "name", "value": ""},
                                "context": {"arguments": {"department": "Engineering"}}}),
    req("completion/complete", {"ref": {"type": "ref/resource", "uri": TEXT_TEMPLATE},
                                "argument": {"name": "resourceId", "value": "7"}}),
    req("resources/subscribe", {"uri": DOC}),
    {"op": "call", "name": "everything_toggle-subscriber-updates", "arguments": {}},
    {"op": "wait_updated", "uri": DOC, "timeout_ms": 15000},
    {"op": "call", "name": "everything_toggle-subscriber-updates", "arguments": {}},
    req("resources/unsubscribe", {"uri": DOC}),
    req("resources/read", {"uri": "demo://resource/dynamic/text/3"}),
    req("resources/read", {"uri": SRV.replace("everything", "nobody") + "x://y"}),
    req("prompts/get", {"name": "no-slash"}),
    {"op": "call", "name": "everything_get-resource-links", "arguments": {"count": 2}},
    req("resources/read", {"uri": SRV + "demo://resource/dynamic/text/2"}),
]


def check(lines):
    (connected, listed, templates, text, blob, doc, prompts, args, embedded, dept, names,
     tmpl_comp, sub, on, updated, off, unsub, foreign, nobody, badprompt, links,
     followed) = lines
    caps = connected["capabilities"]
    assert caps["resources"]["subscribe"] is True, caps
    assert "prompts" in caps and "completions" in caps and "tools" in caps, caps

    uris = {r["uri"]: r for r in listed["result"]["resources"]}
    assert DOC in uris, sorted(uris)
    assert uris[DOC]["mimeType"] == "text/markdown"
    assert all(u.startswith(SRV) for u in uris)
    tmpls = {t["uriTemplate"] for t in templates["result"]["resourceTemplates"]}
    assert TEXT_TEMPLATE in tmpls, tmpls

    c = text["result"]["contents"][0]
    assert c["uri"] == SRV + "demo://resource/dynamic/text/3"
    assert c["text"].startswith("Resource 3:"), c
    b = blob["result"]["contents"][0]
    assert b["uri"] == SRV + "demo://resource/dynamic/blob/2"
    assert "text" not in b and len(base64.b64decode(b["blob"])) > 0, b
    assert "Everything Server" in doc["result"]["contents"][0]["text"]

    pnames = {p["name"]: p for p in prompts["result"]["prompts"]}
    assert {"everything/simple-prompt", "everything/args-prompt",
            "everything/completable-prompt", "everything/resource-prompt"} <= set(pnames)
    assert [a["name"] for a in pnames["everything/args-prompt"]["arguments"]] == ["city", "state"]
    assert args["result"]["messages"][0]["content"]["text"] == "What's weather in Lyon, Rhone?"
    res = [m["content"]["resource"] for m in embedded["result"]["messages"]
           if m["content"]["type"] == "resource"]
    # an embedded resource's URI is one the client can read through the mesh
    assert res and res[0]["uri"] == SRV + "demo://resource/dynamic/text/4", embedded

    assert dept["result"]["completion"]["values"] == ["Sales", "Support"], dept
    assert names["result"]["completion"]["values"] == ["Alice", "Bob", "Charlie"], names
    assert tmpl_comp["result"]["completion"]["values"] == ["7"], tmpl_comp

    assert sub["result"] == {}, sub
    assert "result" in on and not on["result"].get("isError"), on
    assert updated == {"op": "wait_updated", "seen": True}
    assert "result" in off and unsub["result"] == {}, unsub

    assert foreign["error"]["code"] == -32002, foreign
    assert "meshzero://RECORD/URI" in foreign["error"]["message"]
    assert nobody["error"]["code"] == -32002 and "nobody" in nobody["error"]["message"], nobody
    assert badprompt["error"]["code"] == -32602, badprompt

    # resource links a tool returns can be followed through the mesh
    linked = [x["uri"] for x in links["result"]["content"] if x["type"] == "resource_link"]
    assert linked == [SRV + "demo://resource/dynamic/blob/1",
                      SRV + "demo://resource/dynamic/text/2"], links
    assert followed["result"]["contents"][0]["text"].startswith("Resource 2:"), followed


def test_stdio_client_resources_prompts_completions_two_hops(square, tmp_path):  # noqa: F811
    a, b, c, d = square
    wait_known(a, "everything")
    check(run_sdk(tmp_path, dict(mcp_stdio_spec(a), ops=OPS)))


def test_http_client_resources_prompts_completions_two_hops(square, tmp_path):  # noqa: F811
    a, b, c, d = square
    wait_known(a, "everything")
    check(run_sdk(tmp_path, {"transport": "http", "url": mcp_http_url(a), "ops": OPS}))


def test_server_record_called_with_exec(square):  # noqa: F811
    """The mcp-server record from any node: its methods are MCP's, its
    results the server's own; methods it does not offer are refused."""
    a, b, c, d = square
    rec = wait_known(a, "everything")
    assert rec["resource_type"] == "mcp-server"
    assert {"mcp", "mcp:everything", "mcp-resources", "mcp-subscribe", "mcp-prompts",
            "mcp-completions"} <= set(rec["capabilities"]), rec
    out = exec_cli(a, "everything", "resources/read",
                   {"uri": "demo://resource/dynamic/text/5"}, json_out=True)
    assert out.rc == 0, out
    assert out.json["result"]["contents"][0]["uri"] == "demo://resource/dynamic/text/5", out
    assert_exec_error(exec_cli(a, "everything", "tools/call", {"name": "echo"}, json_out=True),
                      "bad_request")
    # the record goes with the server, mesh-wide
    p = run(["bridge", "remove", "everything", "--node", d.api])
    assert p.returncode == 0, p.stderr
    wait_for(lambda: "everything" not in a.ids(), 10, what="everything withdrawn from A")
    assert "everything/echo" not in a.ids()


def test_capabilities_only_for_what_the_mesh_has(mesh, tmp_path):
    """A mesh with no imported resources or prompts advertises only tools."""
    a = mesh.node("A")
    lines = run_sdk(tmp_path, dict(mcp_stdio_spec(a), ops=[req("resources/list"),
                                                           req("prompts/list")]))
    assert set(lines[0]["capabilities"]) == {"tools"}, lines[0]
    assert lines[1]["result"] == {"resources": []}
    assert lines[2]["result"] == {"prompts": []}


def test_a_server_added_elsewhere_changes_the_lists(square, tmp_path):  # noqa: F811
    """bridge add on B: clients on A hear resources and prompts list_changed;
    the second server's equal URIs stay apart from the first's."""
    a, b, c, d = square
    wait_known(a, "everything")
    ops = [{"op": "wait_note", "method": "notifications/resources/list_changed",
            "timeout_ms": 30000},
           {"op": "wait_note", "method": "notifications/prompts/list_changed",
            "timeout_ms": 30000},
           req("resources/list")]
    toggle = {"op": "call", "name": "everything_toggle-subscriber-updates", "arguments": {}}
    # The HTTP client's notifications come on its GET event stream: an
    # update for a subscribed URI arriving shows the stream is open.
    barrier = [req("resources/subscribe", {"uri": DOC}), toggle,
               {"op": "wait_updated", "uri": DOC, "timeout_ms": 15000}, toggle]
    clients = [SdkClient(tmp_path, dict(mcp_stdio_spec(a), ops=ops), name="stdio"),
               SdkClient(tmp_path, {"transport": "http", "url": mcp_http_url(a),
                                    "ops": barrier + ops}, name="http")]
    try:
        for cl in clients:
            assert cl.line()["op"] == "connected"
        http = clients[1]
        assert http.line()["result"] == {}
        assert "result" in http.line()
        assert http.line(30) == {"op": "wait_updated", "seen": True}
        assert "result" in http.line()
        for cl in clients:
            assert cl.line()["op"] == "waiting"
        p = run(["bridge", "add", "ev2", "--node", b.api, "--", "node", EVERYTHING, "stdio"],
                timeout=60)
        assert p.returncode == 0, p.stderr
        for cl in clients:
            assert cl.line(40) == {"op": "wait_note", "seen": True}, cl.stderr()
            assert cl.line()["op"] == "waiting"
            assert cl.line(40) == {"op": "wait_note", "seen": True}, cl.stderr()
            uris = {r["uri"] for r in cl.line()["result"]["resources"]}
            doc = "demo://resource/static/document/features.md"
            assert {"meshzero://everything/" + doc, "meshzero://ev2/" + doc} <= uris
            assert cl.wait() == 0
    finally:
        for cl in clients:
            cl.close()


def test_subscription_renewed_when_the_server_restarts(square, tmp_path):  # noqa: F811
    """The host subscribes the restarted server again to what mesh clients
    still hold: an update of the new process reaches the client."""
    a, b, c, d = square
    wait_known(a, "everything")
    cl = SdkClient(tmp_path, dict(mcp_stdio_spec(a), ops=[
        req("resources/subscribe", {"uri": DOC}),
        {"op": "wait_updated", "uri": DOC, "timeout_ms": 60000}]))
    try:
        assert cl.line()["op"] == "connected"
        assert cl.line()["result"] == {}
        old = bridge_entry(d, "everything")["pid"]
        os.kill(old, signal.SIGKILL)     # the server the node started for this test
        bridge_entry(d, "everything", state="up", timeout=30)
        wait_for(lambda: bridge_entry(d, "everything").get("pid") not in (None, old), 30,
                 what="everything restarted")

        def toggled():
            return exec_cli(a, "everything/toggle-subscriber-updates", "call", {}).rc == 0
        wait_for(toggled, 30, what="the restarted server's tools reachable from A")
        assert cl.line(60) == {"op": "wait_updated", "seen": True}, cl.stderr()
        assert exec_cli(a, "everything/toggle-subscriber-updates", "call", {}).rc == 0
        assert cl.wait() == 0
    finally:
        cl.close()
