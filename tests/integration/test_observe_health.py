"""/health while a node stops (held open by --drain-ms) and when its store
fails (a real write refused by the kernel: the node runs under a file-size
limit, RLIMIT_FSIZE, so SQLite's write-ahead log cannot grow past it); and
README's metrics table against what /metrics exposes."""

import json
import re
import resource
import signal
from pathlib import Path

from meshlib import Node, rpc, sanitizer_reports, wait_for
from test_observe import http_get, metrics

DRAIN_MS = 5000
FSIZE_LIMIT = 384 * 1024     # room for the identity and the empty store, not for much more


def health_503(node):
    """(status, body) once /health answers 503, else None."""
    try:
        st, body = http_get(node, "/health")
    except OSError:
        return None
    return (st, body) if st == 503 else None


def test_health_503_stopping_through_the_drain_window(mesh):
    a = mesh.node("A", extra=["--drain-ms", str(DRAIN_MS)])
    assert http_get(a, "/health")[0] == 200
    a.proc.send_signal(signal.SIGTERM)
    st, body = wait_for(lambda: health_503(a), DRAIN_MS / 1000, what="/health 503 as A stops")
    h = json.loads(body)
    assert h["status"] == "stopping" and h["reason"] == "shutting down" and h["id"] == a.id
    fams, _ = metrics(a)
    assert fams["meshzero_up"].samples[0].value == 0
    # New calls are refused while it drains.
    r = rpc(a.api, "execute_remote", {"resource_id": "any", "method": "run", "params": {}})
    assert "shutting down" in r["error"]["message"], r
    assert a.running()
    assert a.terminate(signal_it=False) == 0


def test_drain_ms_over_its_limit_is_refused(mesh):
    from meshlib import run
    p = run(["node", "--listen", "ws://127.0.0.1:0", "--drain-ms", "60001"])
    assert p.returncode == 2 and "--drain-ms" in p.stderr and "60000" in p.stderr, p.stderr


def _limited():
    # Past the limit a write fails with EFBIG instead of the signal killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_health_503_with_the_reason_when_its_store_fails(mesh):
    a = Node(mesh, "A", ["--drain-ms", str(DRAIN_MS)])
    a.preexec = _limited
    a.start()
    try:
        assert http_get(a, "/health")[0] == 200
        blob = "x" * 3000
        refused = None
        for i in range(400):     # bounded: 400 records of 3 kB is far past the limit
            p = a.cli("register", "big%03d" % i, "--type", "tool", "--meta", "blob=" + blob,
                      "--json")
            if p.returncode != 0:
                refused = p.stderr
                break
        assert refused is not None, "the store took 1.2 MB under a %d-byte limit" % FSIZE_LIMIT
        assert "store" in refused, refused
        st, body = wait_for(lambda: health_503(a), DRAIN_MS / 1000,
                            what="/health 503 once the store failed")
        h = json.loads(body)
        assert h["status"] == "stopping" and "store" in h["reason"], h
        assert a.terminate(signal_it=False) == 1
        assert "store" in a.stderr()
    finally:
        if a.running():
            a.kill()
        assert not sanitizer_reports(a.stderr()), a.stderr()


def readme_metrics():
    """The metric names README's "Metrics" table lists."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("\n### Metrics\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(meshzero_[a-z0-9_]+)` \|", section, re.M))


def test_readme_metrics_table_is_what_metrics_exposes(mesh):
    a = mesh.node("A")
    fams, _ = metrics(a)
    # The client names a counter family without its _total suffix.
    exposed = {f.name + "_total" if f.type == "counter" else f.name for f in fams.values()}
    documented = readme_metrics()
    assert len(documented) > 30
    assert documented - exposed == set(), "listed in README, not in /metrics"
    assert exposed - documented == set(), "in /metrics, not listed in README"
