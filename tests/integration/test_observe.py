"""Observability: /metrics checked against `status`, /health states, the
mesh-wide `members` view as a node dies, JSON log lines and call logs, and a
W3C trace id followed from the caller through a relay into a `serve`
handler's environment and every node's call log."""
import asyncio
import json
import re
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import mzproto as mp
from execlib import ApiConn, arun, handler, procs  # noqa: F401  (procs: fixture)
from mcplib import RawMcp
from meshlib import Node, free_port_unlistened, rpc, rpc_raw, wait_for, wait_linked

LEASE_MS = 3000
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = "00-%s-00f067aa0ba902b7-01" % TRACE_ID


def http_get(node, path, headers=None):
    """(status, body text) of GET path on the node's API listener."""
    url = "http://" + node.api[len("ws://"):] + path
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(node):
    status, text = http_get(node, "/metrics")
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def status_counters(node):
    r = rpc(node.api, "status")
    return r["result"]["counters"]


def by_status_name(families):
    """status counter name -> its sample value in /metrics, read from the
    HELP text "(status: a b c)" and the reason label."""
    out = {}
    for f in families.values():
        m = re.search(r"\(status: ([a-z_ ]+)\)$", f.documentation)
        if not m:
            continue
        names = m.group(1).split()
        for s in f.samples:
            if s.name.endswith("_created"):
                continue
            key = s.labels.get("reason") if len(names) > 1 else names[0]
            assert key in names, (f.name, s)
            out[key] = s.value
    return out


def test_metrics_parse_and_match_status(mesh, procs):  # noqa: F811
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    procs.serve(b, "echo-obs", handler("echo.sh"))
    wait_for(lambda: "echo-obs" in a.ids(), 10, what="echo-obs on A")
    r = rpc(a.api, "execute_remote", {"resource_id": "echo-obs", "method": "run",
                                       "params": {"x": 1}}, timeout=20)
    assert "result" in r, r

    before = status_counters(a)
    fams, text = metrics(a)
    after = status_counters(a)
    shown = by_status_name(fams)
    # Every counter of status is in /metrics, between two reads of status.
    assert set(before) == set(shown) | {"api_calls"}, set(before) ^ set(shown)
    for k, v in shown.items():
        assert before[k] <= v <= after[k], (k, before[k], v, after[k])
    assert before["api_calls"] <= fams["meshzero_api_calls"].samples[0].value <= after["api_calls"]
    # Prefix, base units and the families the issue lists.
    assert all(n.startswith("meshzero_") for n in fams), [n for n in fams if "meshzero_" not in n]
    for name in ("meshzero_build_info", "meshzero_node_info", "meshzero_peers",
                 "meshzero_messages_received", "meshzero_messages_sent",
                 "meshzero_messages_dropped", "meshzero_link_received_bytes",
                 "meshzero_send_queue_bytes", "meshzero_directory_records",
                 "meshzero_directory_changes", "meshzero_executes",
                 "meshzero_execute_duration_seconds", "meshzero_message_hops",
                 "meshzero_subscriptions", "meshzero_agreement_refusals",
                 "meshzero_bridge_calls", "meshzero_process_cpu_seconds",
                 "meshzero_process_resident_memory_bytes", "meshzero_process_open_fds",
                 "meshzero_process_start_time_seconds", "meshzero_links_closed",
                 "meshzero_peers_refused"):
        assert name in fams, name
    assert "# TYPE meshzero_execute_duration_seconds histogram" in text

    def sample(fam, suffix="", **labels):
        for s in fams[fam].samples:
            if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError("no sample %s%s %s" % (fam, suffix, labels))
    assert sample("meshzero_peers") == 1
    assert sample("meshzero_executes", "_total", role="caller", outcome="ok") == 1
    assert sample("meshzero_execute_duration_seconds", "_count", role="caller") == 1
    assert sample("meshzero_execute_duration_seconds", "_bucket", role="caller",
                  le="30") == 1
    assert sample("meshzero_execute_duration_seconds", "_bucket", role="caller",
                  le="5e-05") == 0
    assert sample("meshzero_messages_received", "_total", type="alive") >= 1
    assert sample("meshzero_messages_received", "_total", type="execute_result") == 1
    assert sample("meshzero_messages_sent", "_total", type="execute") == 1
    assert sample("meshzero_message_hops", "_count") >= 2
    assert sample("meshzero_directory_records", origin="remote") == 1
    assert sample("meshzero_directory_changes", "_total", op="added") >= 1
    assert sample("meshzero_process_resident_memory_bytes") > 1e6
    assert sample("meshzero_process_open_fds") > 3
    # At the host: its side of the call.
    bf, _ = metrics(b)
    host = [s for s in bf["meshzero_executes"].samples
            if s.labels.get("role") == "host" and s.labels.get("outcome") == "ok"]
    assert host and host[0].value == 1
    # /status is what `status --json` prints.
    st, body = http_get(a, "/status")
    assert st == 200
    js = json.loads(body)
    assert js["id"] == a.id and "api_calls" in js["counters"] and js["health"] == "serving"
    assert set(js["counters"]) == set(a.status()["counters"])


def test_http_endpoints_follow_the_api_token(mesh):
    a = mesh.node("A", extra=["--api-require-token"])
    token = (a.data / "api.token").read_text().strip()
    for path in ("/metrics", "/health", "/status"):
        assert http_get(a, path)[0] == 401, path
        assert http_get(a, path, {"Authorization": "Bearer " + token})[0] == 200, path
        assert http_get(a, path + "?token=" + token)[0] == 200, path
    assert http_get(a, "/metrics", {"Authorization": "Bearer " + token,
                                    "Origin": "http://evil.example"})[0] == 403
    assert http_get(a, "/nope", {"Authorization": "Bearer " + token})[0] == 404


def test_health_starting_until_its_peer_then_serving(mesh):
    sock, port = free_port_unlistened()
    url = "ws://127.0.0.1:%d" % port
    # A 60 s lease: "starting" lasts up to a third of it while --peer is down.
    a = mesh.node("A", peers=[url], lease_ms=60000)
    st, body = http_get(a, "/health")
    assert st == 503, body
    h = json.loads(body)
    assert h["status"] == "starting" and h["id"] == a.id and "peer" in h["reason"]
    fams, _ = metrics(a)
    assert fams["meshzero_up"].samples[0].value == 0
    sock.close()
    b = mesh.node("B", extra=["--listen", url])
    wait_linked([(a, b)], timeout=20)
    wait_for(lambda: http_get(a, "/health")[0] == 200, 10, what="A serving")
    assert json.loads(http_get(a, "/health")[1])["status"] == "serving"
    assert http_get(b, "/health")[0] == 200


def members(node):
    r = rpc(node.api, "members")
    assert "result" in r, r
    return {m["id"]: m for m in r["result"]["members"]}


def test_members_on_the_square_after_a_node_dies(mesh):
    a = mesh.node("A", lease_ms=LEASE_MS)
    b = mesh.node("B", peers=[a], lease_ms=LEASE_MS)
    c = mesh.node("C", peers=[a], lease_ms=LEASE_MS)
    d = mesh.node("D", peers=[b, c], lease_ms=LEASE_MS)
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    d.register("agent123", "agent", caps=["image_processing"])

    def full():
        ms = members(a)
        if len(ms) != 4 or ms.get(d.id, {}).get("resources") != 1:
            return None
        if set(ms[d.id]["peers"]) != {b.id, c.id}:
            return None
        return ms
    ms = wait_for(full, 10, what="A's members to know all four nodes and D's links")
    me = ms[a.id]
    assert me["self"] and me["state"] == "alive" and me["hops"] == 0 and me["next_hop"] is None
    assert set(me["peers"]) == {b.id, c.id}
    md = ms[d.id]
    assert md["state"] == "alive" and not md["self"] and md["hops"] == 2
    assert md["next_hop"] in (b.id, c.id) and md["listen"] == d.listen
    assert 0 <= md["last_heard_ms"] <= LEASE_MS and 0 < md["lease_left_ms"] <= LEASE_MS
    assert ms[b.id]["hops"] == 1 and ms[b.id]["next_hop"] == b.id
    assert set(ms[b.id]["peers"]) == {a.id, d.id}
    # The CLI shows the same.
    cli = a.cli_json("members")
    assert {m["id"] for m in cli["members"]} == set(ms)
    text = a.cli("members")
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 5, text.stdout

    d.kill()
    seen = []

    def state_of_d():
        m = members(a).get(d.id)
        st = m["state"] if m else "gone"
        if not seen or seen[-1] != st:
            seen.append(st)
        return st == "gone"
    wait_for(state_of_d, 4 * LEASE_MS / 1000.0 + 10, interval=0.05, what="D gone from A")
    assert seen[0] in ("alive", "suspect") and "suspect" in seen, seen
    assert seen.index("suspect") < seen.index("gone"), seen
    assert all(x in ("alive", "suspect", "left", "gone") for x in seen), seen
    ms = members(a)
    assert set(ms) == {a.id, b.id, c.id}
    assert set(ms[b.id]["peers"]) == {a.id}


def json_lines(node):
    out = []
    for line in node.stderr().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def calls_logged(node):
    return [e for e in json_lines(node) if e["event"] in ("call", "call.relay")]


def test_trace_id_through_a_relay_into_serve_env_and_logs(mesh, procs):  # noqa: F811
    """A-B-D: the call from A to D is relayed by B."""
    logs = ["--log-format", "json", "--log-calls", "--no-seal"]
    a = mesh.node("A", extra=logs)
    b = mesh.node("B", peers=[a], extra=logs)
    d = mesh.node("D", peers=[b], extra=logs)
    wait_linked([(a, b), (b, d)])
    procs.serve(d, "trace-env", handler("traceenv.sh"))
    wait_for(lambda: "trace-env" in a.ids(), 10, what="trace-env on A")
    req = {"jsonrpc": "2.0", "id": 7, "method": "execute_remote",
           "params": {"resource_id": "trace-env", "method": "run", "params": {"secret": "s3"},
                      "traceparent": TRACEPARENT, "tracestate": "vendor=1"}}
    r = rpc_raw(a.api, json.dumps(req), timeout=20)[0]
    assert "result" in r, r
    env = r["result"]["env"]
    assert env.startswith("00-" + TRACE_ID + "-") and env != TRACEPARENT, env
    assert r["result"]["tracestate"] == "vendor=1"
    assert r["trace"]["traceparent"].split("-")[1] == TRACE_ID
    # Every hop wrote the trace id in its call log; no log line carries params.
    host = wait_for(lambda: [e for e in calls_logged(d) if e["fields"]["role"] == "host"], 5,
                    what="D's call log")
    relay = wait_for(lambda: [e for e in calls_logged(b) if e["fields"]["role"] == "relay"], 5,
                     what="B's relay log")
    caller = wait_for(lambda: [e for e in calls_logged(a) if e["fields"]["role"] == "caller"],
                      5, what="A's call log")
    for e in host + relay + caller:
        assert e["fields"]["traceparent"].split("-")[1] == TRACE_ID, e
        assert "s3" not in json.dumps(e), e
    h = host[0]["fields"]
    assert h["resource"] == "trace-env" and h["method"] == "run" and h["caller"] == a.id
    assert h["outcome"] == "ok" and h["duration_ms"] >= 0 and host[0]["node"] == d.id
    assert h["traceparent"] == env
    assert caller[0]["fields"]["host"] == d.id and caller[0]["fields"]["outcome"] == "ok"
    relayed = {s.labels["type"]: s.value
               for s in metrics(b)[0]["meshzero_messages_relayed"].samples}
    assert relayed.get("execute", 0) >= 1 and relayed.get("execute_result", 0) >= 1, relayed

    # Through the MCP endpoint: the trace context rides in params._meta and
    # comes back in the result's _meta.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "trace-env", "_meta": {"traceparent": TRACEPARENT},
                                  "arguments": {"method": "run", "params": {}}}}).encode()
    url = "http://" + a.api[len("ws://"):] + "/mcp"
    hreq = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(hreq, timeout=20) as resp:
        m = json.loads(resp.read())
    assert m["result"]["_meta"]["traceparent"].split("-")[1] == TRACE_ID, m
    assert TRACE_ID in json.dumps(m["result"]["content"]), m
    # The same through `meshzero mcp` (stdio).
    raw = RawMcp(mesh.tmp, a)
    try:
        m = raw.call({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "trace-env", "_meta": {"traceparent": TRACEPARENT},
                                 "arguments": {"method": "run", "params": {}}}})
    finally:
        assert raw.close() == 0
    assert m["result"]["_meta"]["traceparent"].split("-")[1] == TRACE_ID, m
    assert m["result"]["_meta"]["traceparent"] != TRACEPARENT, m
    assert TRACE_ID in json.dumps(m["result"]["content"]), m

    # Without a traceparent the caller's node starts one; a bad one too.
    for params in ({}, {"traceparent": "01-nothex"}):
        p = dict(req["params"], **params)
        p.pop("tracestate")
        if not params:
            p.pop("traceparent")
        r = rpc_raw(a.api, json.dumps(dict(req, params=p)), timeout=20)[0]
        got = r["result"]["env"]
        assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", got), got
        assert got.split("-")[1] != TRACE_ID


def test_sealed_relay_logs_no_names_the_ends_log_the_trace(mesh, procs):  # noqa: F811
    """A-B-D sealed (the default): B cannot read the execute it relays."""
    logs = ["--log-format", "json", "--log-calls"]
    a = mesh.node("A", extra=logs)
    b = mesh.node("B", peers=[a], extra=logs)
    d = mesh.node("D", peers=[b], extra=logs)
    wait_linked([(a, b), (b, d)])
    procs.serve(d, "trace-env", handler("traceenv.sh"))
    wait_for(lambda: "trace-env" in a.ids(), 10, what="trace-env on A")
    r = rpc(a.api, "execute_remote", {"resource_id": "trace-env", "method": "run",
                                      "params": {}, "traceparent": TRACEPARENT}, timeout=20)
    assert "result" in r, r
    relay = wait_for(lambda: [e for e in calls_logged(b) if e["fields"]["role"] == "relay"], 5,
                     what="B's relay log")
    f = relay[0]["fields"]
    assert f["caller"] == a.id and f["host"] == d.id, f
    assert not {"resource", "method", "traceparent"} & set(f), f
    host = wait_for(lambda: [e for e in calls_logged(d) if e["fields"]["role"] == "host"], 5,
                    what="D's call log")
    assert host[0]["fields"]["resource"] == "trace-env"
    assert host[0]["fields"]["traceparent"].split("-")[1] == TRACE_ID


class DefaultLogNode(Node):
    """A node run without --log: what an operator sees by default."""

    def command(self):
        cmd = super().command()
        i = cmd.index("--log")
        return cmd[:i] + cmd[i + 2:]


def test_json_log_lines_and_default_level_events(mesh):
    a = mesh.node("A", extra=["--log-format", "json"])
    b = DefaultLogNode(mesh, "B", ["--peer", a.listen, "--log-format", "json"])
    mesh.nodes.append(b)
    b.start()
    wait_linked([(a, b)])
    ups = wait_for(lambda: [e for e in json_lines(b) if e["event"] == "link.up"], 5,
                   what="link.up in B's log")
    e = ups[0]
    assert set(e) == {"time", "level", "node", "event", "fields"}, e
    assert e["level"] == "info" and e["node"] == b.id
    assert e["fields"]["peer"] == a.id and e["fields"]["direction"] == "out"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", e["time"]), e
    a.terminate()
    down = wait_for(lambda: [x for x in json_lines(b) if x["event"] == "link.down"], 10,
                    what="link.down in B's log")
    assert down[0]["fields"]["peer"] == a.id and down[0]["fields"]["reason"]
    closed = {s.labels["reason"]: s.value
              for s in metrics(b)[0]["meshzero_peer_links_closed"].samples}
    assert sum(closed.values()) >= 1 and "other" not in closed, closed
    # Every line of both nodes is one JSON object.
    for n in (a, b):
        for line in n.stderr().splitlines():
            if line.startswith("=="):
                continue        # sanitizer runtime banner lines, if any
            obj = json.loads(line)
            assert {"time", "level", "event", "fields"} <= set(obj), line


def test_log_format_and_members_usage_errors(mesh):
    from meshlib import run
    p = run(["node", "--log-format", "xml"])
    assert p.returncode == 2 and "text or json" in p.stderr
    p = run(["members", "extra"])
    assert p.returncode == 2 and "takes no arguments" in p.stderr
    p = run(["members", "--help"])
    assert p.returncode == 0 and "examples" in p.stdout


def test_independent_peer_reads_and_announces_links(mesh):
    """A peer built from PROTOCOL.md alone (mzproto) reads the node's links
    in its alive, announces its own, and sees its execute's trace echoed."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key, other = mp.Key(), mp.Key()

    async def go():
        p = await mp.Peer(key).open(a.listen)
        await p.handshake()
        try:
            al = await p.expect(lambda m: m["type"] == "alive" and m["sender"] == a.id, 15,
                                "A's alive")
            assert mp.verify_envelope(al)
            assert set(al["payload"]["links"]) == {b.id, key.id}, al["payload"]
            await p.send(mp.envelope(key, "alive", mp.alive("", 15000, links=[a.id, other.id])))
            api = await ApiConn.open(a.api)
            try:
                for _ in range(100):
                    res = await api.result("members")
                    got = {m["id"]: m for m in res["members"]}.get(key.id, {}).get("peers")
                    if got:
                        return got
                    await asyncio.sleep(0.05)
                raise AssertionError("A's members never showed the peer's links")
            finally:
                await api.close()
        finally:
            await p.close()
    peers = arun(go(), 30)
    assert peers == [a.id, other.id]
    assert mp.trace_id(TRACEPARENT) == TRACE_ID and mp.trace_id("00-" + "0" * 32 + "-x") is None


def test_trace_reaches_an_imported_mcp_server_in_meta(mesh):
    a = mesh.node("A", extra=["--mcp", "meta=/usr/bin/python3 " + handler("mcp_meta.py")])
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    wait_for(lambda: "meta/meta" in b.ids(), 15, what="meta/meta on B")
    r = rpc(b.api, "execute_remote", {"resource_id": "meta/meta", "method": "call",
                                       "params": {}, "traceparent": TRACEPARENT}, timeout=20)
    assert "result" in r, r
    meta = json.loads(r["result"]["content"][0]["text"])
    assert meta["traceparent"].split("-")[1] == TRACE_ID and meta["traceparent"] != TRACEPARENT
    # The host counts the bridge's calls by server and outcome.
    fams, _ = metrics(a)
    served = [s for s in fams["meshzero_bridge_calls"].samples
              if s.labels == {"server": "meta", "outcome": "ok"}]
    assert served and served[0].value == 1, fams["meshzero_bridge_calls"].samples
    up = [s for s in fams["meshzero_bridge_servers"].samples if s.labels.get("server") == "meta"]
    assert up and up[0].labels["state"] == "ready"
    # The bridge's state changes are logged at a node's default level.
    assert re.search(r"INFO  \[bridge\] bridge.state server=meta state=ready", a.stderr()), \
        a.stderr()
