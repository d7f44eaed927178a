"""Helpers for the MCP bridge tests: the real npm packages (installed with
npm from tests/mcp/package.json, pinned by its package-lock.json), the SDK
client script, the misbehaving test server, and a raw line-oriented MCP
stdio client for malformed traffic.

npm is run once per machine (under a file lock, since ctest runs the test
files in parallel); when it fails the test fails with npm's own output.
"""
import fcntl
import json
import os
import subprocess
import time

import pytest

from meshlib import BIN, client_env, read_log, sanitizer_reports, wait_for, wait_linked

HERE = os.path.dirname(os.path.abspath(__file__))
MCP_DIR = os.path.normpath(os.path.join(HERE, "..", "mcp"))
NODE_MODULES = os.path.join(MCP_DIR, "node_modules")
EVERYTHING = os.path.join(NODE_MODULES, "@modelcontextprotocol", "server-everything", "dist",
                          "index.js")
CLIENT = os.path.join(MCP_DIR, "client.mjs")
CRASHY = os.path.join(MCP_DIR, "crashy.mjs")
NPM_TIMEOUT = 300


def _installed_ok(pkg_dir):
    """True when node_modules holds exactly the versions package.json pins."""
    want = json.load(open(os.path.join(pkg_dir, "package.json")))["dependencies"]
    for name, version in want.items():
        p = os.path.join(pkg_dir, "node_modules", *name.split("/"), "package.json")
        try:
            if json.load(open(p)).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


def ensure_npm_packages(pkg_dir=MCP_DIR):
    """Installs the packages pkg_dir's package.json pins with `npm ci` unless
    they are there; fails the test (never skips) with npm's output when that
    fails."""
    for tool in ("node", "npm"):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode != 0:
            pytest.fail("%s is not installed (scripts/deps.sh installs nodejs and npm)" % tool,
                        pytrace=False)
    import hashlib
    import tempfile
    lock_path = os.path.join(tempfile.gettempdir(), "meshzero-npm-%s.lock"
                             % hashlib.sha256(pkg_dir.encode()).hexdigest()[:12])
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_ok(pkg_dir):
            return
        try:
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=pkg_dir,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            pytest.fail("npm ci in %s did not finish within %ds:\n%s"
                        % (pkg_dir, NPM_TIMEOUT, e.output), pytrace=False)
        if p.returncode != 0 or not _installed_ok(pkg_dir):
            pytest.fail("npm ci in %s failed (exit %d):\n%s" % (pkg_dir, p.returncode, p.stdout),
                        pytrace=False)


def square(mesh, d_extra=()):
    """The seed square A-B, A-C, B-D, C-D (D two hops from A), D started
    with d_extra (its --mcp servers)."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    c = mesh.node("C", peers=[a])
    d = mesh.node("D", peers=[b, c], extra=list(d_extra))
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    return a, b, c, d


def everything_cmd():
    return "everything=node %s stdio" % EVERYTHING


def crashy_cmd(name="crashy"):
    return "%s=node %s" % (name, CRASHY)


class SdkClient:
    """tests/mcp/client.mjs (the official SDK's Client) as a process: ops go
    in as its argument, result lines come back one JSON object each."""

    def __init__(self, tmp, spec, name="client"):
        self.err_path = tmp / (name + ".stderr")
        self.errf = open(self.err_path, "wb")
        self.proc = subprocess.Popen(["node", CLIENT, json.dumps(spec)], cwd=MCP_DIR,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.errf, env=client_env())
        self.fd = self.proc.stdout.fileno()
        self.buf = b""

    def line(self, timeout=20.0):
        """The next JSON line, read straight from the pipe (no buffered
        reader, so select() never misses a line already read)."""
        import select
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not r:
                raise AssertionError("no line from the SDK client within %.0fs; stderr:\n%s"
                                     % (timeout, self.stderr()))
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError("the SDK client ended; stderr:\n%s" % self.stderr())
            self.buf += chunk
        text, _, self.buf = self.buf.partition(b"\n")
        msg = json.loads(text)
        if msg.get("op") == "fatal":
            raise AssertionError("the SDK client failed: %s\nstderr:\n%s"
                                 % (msg["message"], self.stderr()))
        return msg

    def wait(self, timeout=20.0):
        rc = self.proc.wait(timeout)
        self.errf.close()
        bad = sanitizer_reports(self.stderr())
        assert not bad, "sanitizer report in the client's children:\n" + self.stderr()
        return rc

    def stderr(self):
        return read_log(self.err_path)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.errf.closed:
            self.errf.close()


def run_sdk(tmp, spec, timeout=60.0, name="client"):
    """Runs the SDK client to completion; returns its lines (connected first)."""
    c = SdkClient(tmp, spec, name)
    try:
        lines = [c.line(timeout)]
        for _ in spec.get("ops", []):
            lines.append(c.line(timeout))
        assert c.wait(timeout) == 0, c.stderr()
        return lines
    finally:
        c.close()


def mcp_stdio_spec(node, *extra):
    return {"transport": "stdio", "command": BIN, "args": ["mcp", "--node", node.api] + list(extra)}


def mcp_http_url(node):
    return "http://%s/mcp" % node.api[len("ws://"):]


class RawMcp:
    """`meshzero mcp` driven line by line (for traffic the SDK would never send)."""

    def __init__(self, tmp, node, *extra):
        self.err_path = tmp / "raw-mcp.stderr"
        self.errf = open(self.err_path, "wb")
        self.proc = subprocess.Popen([BIN, "mcp", "--node", node.api] + list(extra),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, env=client_env())
        self.fd = self.proc.stdout.fileno()
        self.buf = b""

    def send(self, text):
        if isinstance(text, (dict, list)):
            text = json.dumps(text)
        if isinstance(text, str):
            text = text.encode()
        self.proc.stdin.write(text + b"\n")
        self.proc.stdin.flush()

    def recv(self, timeout=10.0):
        import select
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            assert r, "no answer from meshzero mcp within %.0fs; stderr:\n%s" % (
                timeout, self.err_path.read_text(errors="replace"))
            chunk = os.read(self.fd, 65536)
            assert chunk, "meshzero mcp closed stdout; stderr:\n" + self.err_path.read_text(
                errors="replace")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def call(self, msg, timeout=10.0):
        self.send(msg)
        return self.recv(timeout)

    def close(self, timeout=10.0):
        """Closes stdin (the MCP stdio shutdown) and checks the exit."""
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.errf.close()
        err = self.err_path.read_text(errors="replace")
        assert not sanitizer_reports(err), "sanitizer report from meshzero mcp:\n" + err
        return rc


def bridge_entry(node, name, timeout=30.0, state="ready"):
    """Waits for bridge NAME on NODE to reach STATE; returns its entry."""
    def get():
        p = node.cli("bridge", "list", "--json")
        assert p.returncode == 0, p.stderr
        for e in json.loads(p.stdout):
            if e["name"] == name and e["state"] == state:
                return e
        return None
    return wait_for(get, timeout, what="bridge %s %s on node %s" % (name, state, node.name))
