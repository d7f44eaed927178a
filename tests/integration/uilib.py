"""Helpers for the dashboard tests: a real headless Chromium (Debian's
chromium, installed by scripts/deps.sh) driven by puppeteer-core (pinned in
tests/ui/package.json, installed with npm ci like tests/mcp) through
tests/ui/drive.mjs, one JSON command and answer a line.

Every wait polls a condition against a deadline (meshlib.wait_for); the
browser and its driver are stopped at teardown, by PID, even when the test
fails.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

from mcplib import ensure_npm_packages
from meshlib import read_log, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
UI_TESTS = os.path.normpath(os.path.join(HERE, "..", "ui"))
DRIVER = os.path.join(UI_TESTS, "drive.mjs")
# Debian's /usr/bin/chromium is a wrapper script around this binary.
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
START_TIMEOUT = 60.0    # Chromium up and the first page loaded (sanitizer builds, 2 cores)
STOP_TIMEOUT = 15.0

# What the page shows, read from its DOM: the nodes and links drawn in the
# topology, which source they came from, the directory's rows and the
# event stream's topics.
STATE_JS = r"""(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  const topo = document.getElementById('topo');
  return {
    ready: document.body.dataset.ready === '1',
    conn: document.getElementById('conn').dataset.state,
    source: topo.dataset.source || '',
    nodes: q('#topo g.node').map((g) => g.dataset.id).sort(),
    node_states: Object.fromEntries(q('#topo g.node').map(
      (g) => [g.dataset.id, ['alive', 'suspect', 'left'].find((c) => g.classList.contains(c))])),
    links: q('#topo line.link').map((l) => [l.dataset.a, l.dataset.b].sort().join(' ')).sort(),
    node_rows: q('#nodes tbody tr').map((r) => r.dataset.id).sort(),
    rows: q('#resources tbody tr').map((r) => ({
      rid: r.dataset.rid, node: r.dataset.node,
      cells: [...r.cells].map((c) => c.textContent) })),
    events: q('#events li').map((l) => [l.dataset.topic, l.textContent]),
    rate_calls: Number(document.getElementById('rate-calls').textContent),
    counters: Object.fromEntries(q('#counters span[data-counter]').map(
      (s) => [s.dataset.counter, Number(s.nextElementSibling.textContent)])),
  };
})()"""


def chromium():
    for p in CHROMIUM_PATHS:
        if os.access(p, os.X_OK):
            return p
    pytest.fail("Chromium is not installed (scripts/deps.sh installs Debian's chromium)",
                pytrace=False)


def artefact_dir(tmp_path):
    """Where screenshots are kept: the build directory (ctest sets
    MZ_BUILD_DIR), else the test's own temporary directory."""
    d = os.environ.get("MZ_BUILD_DIR")
    if d:
        d = os.path.join(d, "ui-artefacts")
        os.makedirs(d, exist_ok=True)
        return d
    return str(tmp_path)


def _alive(pid):
    """True while PID is a running process (not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Browser:
    """tests/ui/drive.mjs with its own Chromium and a fresh profile."""

    def __init__(self, tmp, width=1400, height=1000):
        ensure_npm_packages(UI_TESTS)
        if shutil.which("node") is None:
            pytest.fail("node is not installed (scripts/deps.sh installs nodejs)", pytrace=False)
        self.err_path = tmp / "browser.stderr"
        self.errf = open(self.err_path, "wb")
        spec = {"chromium": chromium(), "profile": str(tmp / "chromium-profile"),
                "width": width, "height": height}
        self.proc = subprocess.Popen(["node", DRIVER, json.dumps(spec)], cwd=UI_TESTS,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf)
        self.buf = b""
        self.problems = []      # page errors, console errors, failed requests
        self.browser_pid = None
        try:
            self.browser_pid = self._line(time.monotonic() + START_TIMEOUT)["browser_pid"]
        except BaseException:
            self.close()
            raise

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the browser driver did not answer in time; stderr:\n"
                                     + self.stderr())
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("the browser driver exited (%s); stderr:\n%s"
                                         % (self.proc.poll(), self.stderr()))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, cmd, timeout=START_TIMEOUT):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        a = self._line(time.monotonic() + timeout + 5.0)
        self.problems += a.get("problems", [])
        assert a["ok"], "browser %s failed: %s\npage text:\n%s" % (cmd["op"], a["error"],
                                                                  a.get("text", ""))
        return a

    def open(self, url):
        return self.ask({"op": "open", "url": url, "timeout_ms": int(START_TIMEOUT * 1000)})

    def eval(self, js):
        return self.ask({"op": "eval", "js": js}, timeout=10.0).get("value")

    def state(self):
        return self.eval(STATE_JS)

    def wait_state(self, cond, timeout, what):
        """Polls the page's state until cond(state) holds; returns the state.
        On timeout the error shows the last state seen."""
        last = {}

        def check():
            last["s"] = self.state()
            return last["s"] if cond(last["s"]) else None
        try:
            return wait_for(check, timeout, interval=0.1, what=what)
        except AssertionError as e:
            raise AssertionError("%s; the page showed:\n%s"
                                 % (e, json.dumps(last.get("s"), indent=1)[:4000])) from None

    def screenshot(self, path):
        self.ask({"op": "screenshot", "path": path}, timeout=30.0)
        assert os.path.getsize(path) > 10000, "screenshot %s is suspiciously small" % path

    def stderr(self):
        return read_log(self.err_path)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op":"close"}\n')
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.terminate()       # puppeteer closes its browser on SIGTERM
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self.browser_pid and _alive(self.browser_pid):
            os.kill(self.browser_pid, signal.SIGKILL)
        self.errf.close()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    try:
        yield b
    finally:
        b.close()
