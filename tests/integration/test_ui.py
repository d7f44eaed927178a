"""The dashboard at /ui/: its files as the node serves them, and the page in
a real headless Chromium on the seed's square (A-B, A-C, B-D, C-D).

The page builds its graph from the `members` API method (every node and each
node's links); a node without that method answers method-not-found, and the
page then shows the connected node, its peers and the hosts of the records
it holds, with the connected node's links only. The square test asserts
whichever the node offers, and says which in its output.
"""
import base64
import hashlib
import os
import re
import threading
import urllib.error
import urllib.request

from execlib import handler, procs  # noqa: F401 (a fixture)
from meshlib import rpc, wait_for, wait_linked
from uilib import artefact_dir, browser  # noqa: F401 (a fixture)

UI_SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                       "ui"))
AGENT_CAPS = ["image_processing", "text_analysis"]


def http_base(node):
    return "http://" + node.api[len("ws://"):]


def get(url, method="GET"):
    """(status, headers, body bytes) of one request; HTTP errors included."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def has_members(node):
    """Whether the node answers the members method (else method-not-found)."""
    r = rpc(node.api, "members")
    if "error" in r:
        assert r["error"]["code"] == -32601, r
        return False
    return True


def link(x, y):
    return " ".join(sorted([x.id, y.id]))


def allowed_problems(browser_problems, node, token=None):
    """Browser problems but a 404 from /health on a node that does not serve it."""
    status, _, _ = get(http_base(node) + "/health" + ("?token=" + token if token else ""))
    return [p for p in browser_problems
            if not (status == 404 and re.match(r"^http 404 http://[^/]+/health(\?|$)", p))]


# ---- the files ---------------------------------------------------------------------

def test_files_are_served_from_the_binary(mesh):
    a = mesh.node("A")
    base = http_base(a)
    status, h, page = get(base + "/ui/")
    assert status == 200 and h["Content-Type"] == "text/html; charset=utf-8"
    assert get(base + "/ui")[2] == page and get(base + "/ui/index.html")[2] == page
    assert h["Referrer-Policy"] == "no-referrer" and h["X-Frame-Options"] == "DENY"
    assert h["Cache-Control"] == "no-cache" and h["X-Content-Type-Options"] == "nosniff"

    # index.html carries app.js and style.css inline, and its CSP names both
    # by their SHA-256: the browser runs nothing else.
    js = open(os.path.join(UI_SRC, "app.js"), "rb").read()
    css = open(os.path.join(UI_SRC, "style.css"), "rb").read()
    assert b"<script>" + js + b"</script>" in page and b"<style>" + css + b"</style>" in page
    csp = h["Content-Security-Policy"]

    def digest(b):
        return "'sha256-%s'" % base64.b64encode(hashlib.sha256(b).digest()).decode()
    assert "script-src %s;" % digest(js) in csp and "style-src %s;" % digest(css) in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp

    for name, ctype, src in (("app.js", "text/javascript; charset=utf-8", js),
                             ("style.css", "text/css; charset=utf-8", css)):
        status, h, body = get(base + "/ui/" + name)
        assert (status, h["Content-Type"], body) == (200, ctype, src), name

    status, h, body = get(base + "/ui/nothing.js")
    assert status == 404 and b"no dashboard file 'nothing.js'" in body
    assert b"/ui/" in body
    status, h, _ = get(base + "/ui/../api.token")
    assert status == 404
    status, h, body = get(base + "/ui/", method="POST")
    assert status == 405 and h["Allow"] == "GET" and b"GET only" in body
    # not the dashboard's: still the listener's own answer
    assert get(base + "/uix")[0] == 404


def test_token_listener(mesh, browser, tmp_path):
    """With the API token required the page needs it in its URL and hands it
    to the API WebSocket; served from 127.0.0.2 (an address the origin check
    does not know as local) the page's own origin is accepted."""
    a = mesh.node("A", extra=["--api", "ws://127.0.0.2:0", "--api-require-token"])
    token = (a.data / "api.token").read_text().strip()
    base = http_base(a)
    assert base.startswith("http://127.0.0.2:")
    assert get(base + "/ui/")[0] == 401
    assert get(base + "/ui/?token=" + "0" * 64)[0] == 401
    assert browser.open(base + "/ui/?token=" + token)["status"] == 200
    st = browser.wait_state(lambda s: s["ready"] and s["conn"] == "open" and s["nodes"] == [a.id],
                            60.0, "the page connected with the token")
    assert st["node_rows"] == [a.id]
    st = rpc(a.api + "/?token=" + token, "status")["result"]
    assert st["counters"]["api_refused"] == 2     # the two refused GETs only
    assert allowed_problems(browser.problems, a, token) == []


# ---- the square --------------------------------------------------------------------

def _calls_until(node, rid, stop, limit=2000):
    """Calls rid from node, one after another, until stop is set (at most limit)."""
    for i in range(limit):
        if stop.is_set():
            return
        rpc(node.api, "execute_remote", {"resource_id": rid, "method": "echo",
                                         "params": {"i": i}, "timeout_ms": 5000})


def test_square_live(mesh, procs, browser, tmp_path):  # noqa: F811
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    c = mesh.node("C", peers=[a])
    d = mesh.node("D", peers=[b, c])
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    d.register("agent123", "agent", caps=AGENT_CAPS, meta={"version": "1.0"}, owner="user456")
    wait_for(lambda: "agent123" in a.ids(), 5.0, what="agent123 on A")

    members = has_members(a)
    print("dashboard topology path: %s" % ("members" if members else
                                           "peers of the connected node plus records"))
    want_nodes = sorted(n.id for n in (a, b, c, d))
    want_links = sorted([link(a, b), link(a, c)] +
                        ([link(b, d), link(c, d)] if members else []))

    assert browser.open(http_base(a) + "/ui/")["status"] == 200
    browser.eval("window.mzOpened = 1")     # gone if the page ever reloads
    st = browser.wait_state(
        lambda s: s["ready"] and s["nodes"] == want_nodes and s["links"] == want_links and
        any(r["rid"] == "agent123" for r in s["rows"]),
        60.0, "all four nodes, their links and agent123")
    assert st["source"] == ("members" if members else "peers")
    assert st["conn"] == "open" and st["node_rows"] == want_nodes
    assert link(a, d) not in st["links"]
    row = next(r for r in st["rows"] if r["rid"] == "agent123")
    assert row["node"] == d.id
    assert row["cells"][:3] == ["agent123", "agent", "image_processingtext_analysis"]
    assert row["cells"][3] == d.id[:8] and row["cells"][4] == "user456"

    # A resource registered while the page is open shows up without a
    # reload, and so does its resource.added event in the stream.
    c.register("live-tool", "tool", caps=["search"])
    st = browser.wait_state(
        lambda s: any(r["rid"] == "live-tool" and r["node"] == c.id for r in s["rows"]) and
        any(t == "resource.added" and "live-tool" in text for t, text in s["events"]),
        20.0, "live-tool in the directory and the event stream")
    assert browser.eval("window.mzOpened") == 1, "the page reloaded"

    # the type and capability filters
    shown = browser.eval("""(() => {
      const pick = (id, v) => { const s = document.getElementById(id); s.value = v;
        s.dispatchEvent(new Event('input')); };
      const rids = () => [...document.querySelectorAll('#resources tbody tr')]
        .map((r) => r.dataset.rid);
      pick('f-type', 'agent'); const byType = rids();
      pick('f-type', ''); pick('f-cap', 'search'); const byCap = rids();
      pick('f-cap', ''); return [byType, byCap, rids()];
    })()""")
    assert shown == [["agent123"], ["live-tool"], ["agent123", "live-tool"]]
    # a resource's record and its host
    rec = browser.eval("""(() => {
      document.querySelector('#resources tr[data-rid="agent123"]').click();
      return [document.getElementById('record-host').textContent,
              JSON.parse(document.getElementById('record').textContent)];
    })()""")
    assert rec[0].startswith("hosted by " + d.id)
    assert rec[1]["resource_id"] == "agent123" and rec[1]["signature"]

    # A node joining while the page is open: E behind D, hosting e-res.
    e = mesh.node("E", peers=[d])
    wait_linked([(d, e)])
    e.register("e-res", "tool", caps=["x"])
    want_nodes = sorted(want_nodes + [e.id])
    st = browser.wait_state(
        lambda s: s["nodes"] == want_nodes and any(r["rid"] == "e-res" for r in s["rows"]) and
        (not members or link(d, e) in s["links"]),
        30.0, "node E and e-res")

    # Calls per second, from the status counters over time.
    procs.serve(d, "echo", handler("echo.sh"), methods=["echo"])
    wait_for(lambda: "echo" in a.ids(), 5.0, what="echo on A")
    stop = threading.Event()
    caller = threading.Thread(target=_calls_until, args=(a, "echo", stop), daemon=True)
    caller.start()
    try:
        st = browser.wait_state(lambda s: s["rate_calls"] > 0 and
                                s["counters"].get("exec_calls", 0) >= 3,
                                30.0, "calls per second above zero")
    finally:
        stop.set()
        caller.join(30)
    assert not caller.is_alive()
    shot = os.path.join(artefact_dir(tmp_path), "dashboard-square.png")
    browser.screenshot(shot)
    print("screenshot: %s" % shot)

    # a removal is seen live too
    c.unregister("live-tool")
    browser.wait_state(lambda s: all(r["rid"] != "live-tool" for r in s["rows"]), 20.0,
                       "live-tool gone")
    # A node leaving: E stops (its records go with its bye); the page drops
    # e-res, and E is gone from the graph or shown as no longer alive.
    assert e.terminate() == 0
    browser.wait_state(lambda s: all(r["rid"] != "e-res" for r in s["rows"]) and
                       s["node_states"].get(e.id, "gone") != "alive", 30.0, "node E gone")
    assert browser.eval("window.mzOpened") == 1, "the page reloaded"
    assert allowed_problems(browser.problems, a) == []
