"""Bad input on the peer listener (a fake peer) and on the local API."""
import json

from meshlib import fake_peer, rpc, rpc_raw, wait_for, wait_linked


def still_serves(mesh, a, tag):
    """The node answers its CLI and a real peer can link and exchange resources."""
    p = a.cli("status")
    assert p.returncode == 0, p.stderr
    assert a.id in p.stdout
    a.register("after-" + tag, "tool", caps=["check"])
    b = mesh.node("peer-" + tag)
    p = b.cli("connect", a.listen)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "linked to " + a.id
    wait_linked([(a, b)], timeout=5.0)
    b.register("from-" + tag, "tool")
    wait_for(lambda: "after-" + tag in b.ids(), 2.0, what="B to see A's resource")
    wait_for(lambda: "from-" + tag in a.ids(), 2.0, what="A to see B's resource")


def check_error(ex, a, code, ref):
    errs = ex.errors()
    assert errs, "no error message; got %r" % ex.messages
    e = errs[0]
    assert e["sender"] == a.id
    assert e["payload"]["code"] == code, e
    assert e["payload"]["ref"] == ref, e
    return e


def test_node_hello_first(mesh):
    a = mesh.node("A")
    ex = fake_peer(a.listen, timeout=0.5)
    h = ex.hello
    assert h["type"] == "hello" and h["sender"] == a.id and h["recipient"] == "*"
    assert h["payload"]["protocol"] == "meshzero/1"
    assert h["payload"]["listen"] == a.listen
    assert len(h["payload"]["challenge"]) == 64
    assert len(h["signature"]) == 128


def test_malformed_json(mesh):
    a = mesh.node("A")
    ex = fake_peer(a.listen, '{"id": "x1", "type": hello')
    check_error(ex, a, "bad_message", "")
    assert ex.close_code == 1008, \
        "expected close 1008 after a malformed message before hello, got %r %r" \
        % (ex.close_code, ex.close_reason)
    still_serves(mesh, a, "malformed")


def test_missing_sender(mesh):
    a = mesh.node("A")
    msg = {"id": "x1", "type": "hello", "recipient": "*",
           "timestamp": "2026-11-25T12:00:00.000Z",
           "payload": {"protocol": "meshzero/1", "listen": "", "challenge": "00" * 32},
           "signature": "00" * 64}
    ex = fake_peer(a.listen, json.dumps(msg))
    e = check_error(ex, a, "bad_message", "x1")
    assert "sender" in e["payload"]["reason"]
    assert ex.close_code == 1008, (ex.close_code, ex.close_reason)
    still_serves(mesh, a, "nosender")


def test_oversize_frame(mesh):
    a = mesh.node("A", max_message=4096)
    assert a.status()["limits"]["max_message"] == 4096
    ex = fake_peer(a.listen, "x" * 10000)
    assert ex.close_code == 1009, (ex.close_code, ex.close_reason)
    assert ex.close_reason.startswith("message too big"), ex.close_reason
    still_serves(mesh, a, "oversize")


def test_counters_count_bad_input(mesh):
    a = mesh.node("A", max_message=4096)
    c0 = a.status()["counters"]
    fake_peer(a.listen, "{not json")
    fake_peer(a.listen, "x" * 10000)
    c1 = wait_for(lambda: (lambda c: c if c["malformed"] > c0["malformed"]
                           and c["oversize_closes"] > c0["oversize_closes"] else None)(
                      a.status()["counters"]), 2.0, what="malformed and oversize_closes counted")
    assert c1["malformed"] == c0["malformed"] + 1
    assert c1["oversize_closes"] == c0["oversize_closes"] + 1


def test_api_parse_error(mesh):
    a = mesh.node("A")
    (r,) = rpc_raw(a.api, "not json")
    assert r["jsonrpc"] == "2.0" and r["id"] is None
    assert r["error"]["code"] == -32700
    assert "result" not in r
    assert "result" in rpc(a.api, "status")


def test_api_unknown_method(mesh):
    a = mesh.node("A")
    r = rpc(a.api, "no_such_method", {})
    assert r["error"]["code"] == -32601
    assert "result" in rpc(a.api, "status")


def test_api_invalid_requests(mesh):
    a = mesh.node("A")
    replies = rpc_raw(a.api,
                      json.dumps([1, 2]),
                      json.dumps({"jsonrpc": "2.0", "id": 7}),
                      json.dumps({"jsonrpc": "2.0", "id": 8, "method": "status", "params": [1]}))
    assert replies[0]["error"]["code"] == -32600, replies[0]
    assert replies[1]["error"]["code"] == -32600, replies[1]
    assert replies[2]["error"]["code"] == -32602, replies[2]
    assert "result" in rpc(a.api, "status")


def test_api_register_missing_type(mesh):
    a = mesh.node("A")
    r = rpc(a.api, "register_resource", {"resource_id": "x"})
    assert r["error"]["code"] == -32602, r
    assert a.ids() == {}


def test_api_register_bad_resource_id(mesh):
    a = mesh.node("A")
    r = rpc(a.api, "register_resource", {"resource_id": "has space", "resource_type": "t"})
    assert "error" in r and "result" not in r, r
    assert r["error"]["code"] in (-32602, -32000), r
    assert a.ids() == {}
    # the same session still works, and so does the rest of the node
    ok = rpc(a.api, "register_resource", {"resource_id": "good", "resource_type": "t"})
    assert ok["result"]["resource_id"] == "good"
    r = rpc(a.api, "register_resource", {"resource_id": "good", "resource_type": "t",
                                         "capabilities": "not-a-list"})
    assert r["error"]["code"] == -32602, r
    still_serves(mesh, a, "api")
