"""Helpers for meshzero integration tests: real node processes on loopback.

Nothing here sleeps for a fixed time to synchronise: conditions are polled
with a deadline (wait_for). Every process started is tracked by a Mesh and
stopped at teardown, even when the test fails.
"""
import asyncio
import json
import os
import re
import signal
import subprocess
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("MESHZERO_BIN") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "meshzero"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
BANNER_RE = re.compile(r"^node ([0-9a-f]{64}) listen (\S+) api (\S+)$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")

START_TIMEOUT = 15.0   # a node prints its banner (generous for sanitizer builds)
STOP_TIMEOUT = 15.0    # a node exits after SIGTERM
CLI_TIMEOUT = 15.0     # one client command


def client_env():
    """The environment for spawned processes, without the defaults that would
    make a command reach a node we did not start."""
    env = dict(os.environ)
    env.pop("MESHZERO_API", None)
    env.pop("MESHZERO_DATA", None)
    return env


def wait_for(cond, timeout, interval=0.05, what=None):
    """Polls cond() until it returns a truthy value (returned) or timeout
    seconds have passed (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what or getattr(cond, "__name__", "condition")))
        time.sleep(interval)


def sanitizer_reports(text):
    return [m for m in SANITIZER_MARKERS if m in text]


def run(args, timeout=CLI_TIMEOUT, check_sanitizer=True, stdin=None):
    """Runs `meshzero ARGS...` (STDIN: bytes for its standard input, else
    none) and returns the CompletedProcess (text)."""
    p = subprocess.run([BIN] + list(args),
                       stdin=subprocess.DEVNULL if stdin is None else None,
                       input=None if stdin is None else stdin.decode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, env=client_env())
    if check_sanitizer:
        bad = sanitizer_reports(p.stderr)
        assert not bad, "sanitizer report from `meshzero %s`:\n%s" % (" ".join(args), p.stderr)
    return p


# ---- JSON-RPC over WebSocket -------------------------------------------------

async def _rpc_raw(url, texts, timeout):
    out = []
    async with websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                  max_size=None) as ws:
        for t in texts:
            await ws.send(t)
            out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return out


def rpc_raw(url, *texts, timeout=5.0):
    """Sends each text on one API connection, returns the parsed replies."""
    return asyncio.run(_rpc_raw(url, texts, timeout))


_rpc_id = 0


def rpc(url, method, params=None, timeout=5.0):
    """One JSON-RPC call; returns the whole response object."""
    global _rpc_id
    _rpc_id += 1
    req = {"jsonrpc": "2.0", "id": _rpc_id, "method": method}
    if params is not None:
        req["params"] = params
    return rpc_raw(url, json.dumps(req), timeout=timeout)[0]


def read_log(path):
    """The text of a process's output file so far; "" before it exists."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# ---- nodes -------------------------------------------------------------------

class Node:
    def __init__(self, mesh, name, args):
        self.mesh = mesh
        self.name = name
        self.data = mesh.tmp / ("data-" + name)
        self.out_path = mesh.tmp / (name + ".stdout")
        self.err_path = mesh.tmp / (name + ".stderr")
        self.args = list(args)
        self.proc = None
        self.rc = None
        self.killed = False      # deliberately SIGKILLed: no exit status to check
        self.id = self.listen = self.api = None
        self.preexec = None      # run in the child before exec (limits, signals)

    # -- lifecycle

    def command(self):
        """The node's command line: defaults for a test node, then args."""
        return [BIN, "node", "--listen", "ws://127.0.0.1:0", "--api", "ws://127.0.0.1:0",
                "--data", str(self.data), "--log", "info"] + self.args

    def start(self):
        cmd = self.command()
        self.cmd = cmd
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=client_env(),
                                         preexec_fn=self.preexec)
        line = wait_for(self._banner, START_TIMEOUT, what="banner of node " + self.name)
        m = BANNER_RE.match(line)
        assert m, "node %s: bad banner %r" % (self.name, line)
        self.id, self.listen, self.api = m.group(1), m.group(2), m.group(3)
        return self

    def _banner(self):
        try:
            text = self.out_path.read_text()
        except FileNotFoundError:
            text = ""
        if "\n" in text:
            return text.split("\n", 1)[0]
        if self.proc.poll() is not None:
            raise AssertionError("node %s exited with %s before its banner; stderr:\n%s"
                                 % (self.name, self.proc.returncode, self.stderr()))
        return None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=STOP_TIMEOUT, signal_it=True):
        """SIGTERM (once) and wait; returns the exit status (None if it had to
        be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if signal_it:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.rc = None
                self.mesh.problems.append("node %s did not exit within %.0fs of SIGTERM"
                                          % (self.name, timeout))
                return None
        self.rc = self.proc.returncode
        return self.rc

    def kill(self):
        """SIGKILL (a crash, as far as the mesh can tell)."""
        if self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
        self.proc.wait()
        self.rc = self.proc.returncode

    def stderr(self):
        return read_log(self.err_path)

    # -- client commands against this node's API

    def cli(self, *args, timeout=CLI_TIMEOUT):
        return run(list(args) + ["--node", self.api], timeout=timeout)

    def cli_json(self, *args):
        p = self.cli(*(list(args) + ["--json"]))
        assert p.returncode == 0, "meshzero %s failed (%d): %s" % (args, p.returncode, p.stderr)
        return json.loads(p.stdout)

    def register(self, rid, rtype, caps=(), meta=None, owner=None):
        args = ["register", rid, "--type", rtype]
        for c in caps:
            args += ["--cap", c]
        for k, v in (meta or {}).items():
            args += ["--meta", "%s=%s" % (k, v)]
        if owner is not None:
            args += ["--owner", owner]
        return self.cli_json(*args)

    def unregister(self, rid):
        p = self.cli("unregister", rid)
        assert p.returncode == 0, "unregister %s failed: %s" % (rid, p.stderr)

    def query(self, rtype=None, caps=(), owner=None, location=None, limit=None):
        args = ["query"]
        if rtype is not None:
            args += ["--type", rtype]
        for c in caps:
            args += ["--cap", c]
        if owner is not None:
            args += ["--owner", owner]
        if location is not None:
            args += ["--location", location]
        if limit is not None:
            args += ["--limit", str(limit)]
        return self.cli_json(*args)

    def ids(self, **kw):
        """resource_id -> record of a query."""
        return {r["resource_id"]: r for r in self.query(**kw)}

    def status(self):
        return self.cli_json("status")

    def peers(self):
        return self.cli_json("peers")

    def peer_ids(self):
        return {p["id"] for p in self.peers()}

    def __repr__(self):
        return "<Node %s %s>" % (self.name, (self.id or "?")[:12])


class Mesh:
    """Starts nodes and guarantees they are gone at close()."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.nodes = []
        self.problems = []

    def node(self, name, peers=(), lease_ms=None, max_message=None, extra=()):
        args = []
        for p in peers:
            args += ["--peer", p.listen if isinstance(p, Node) else p]
        if lease_ms is not None:
            args += ["--lease-ms", str(lease_ms)]
        if max_message is not None:
            args += ["--max-message", str(max_message)]
        args += list(extra)
        n = Node(self, name, args)
        self.nodes.append(n)
        return n.start()

    def close(self):
        """Stops every node (SIGTERM, all at once, then wait), then returns the
        list of problems: bad exit codes, sanitizer reports."""
        signalled = set()
        for n in self.nodes:
            if n.running():
                try:
                    n.proc.send_signal(signal.SIGTERM)
                    signalled.add(n)
                except ProcessLookupError:
                    pass
        for n in self.nodes:
            if n.proc is not None and n.rc is None:
                n.terminate(signal_it=n not in signalled)
        for n in self.nodes:
            if n.proc is None:
                continue
            if not n.killed and n.rc != 0:
                self.problems.append("node %s exited with status %s (expected 0 after SIGTERM)"
                                     % (n.name, n.rc))
            bad = sanitizer_reports(n.stderr())
            if bad:
                self.problems.append("node %s stderr has sanitizer reports %s" % (n.name, bad))
        return self.problems

    def dump(self):
        """The tail of every node's stderr, for a failing test's report."""
        parts = []
        for n in self.nodes:
            lines = n.stderr().splitlines()
            parts.append("---- node %s (%s) rc=%s killed=%s, stderr (last 40 lines):\n%s"
                         % (n.name, n.id, n.rc, n.killed, "\n".join(lines[-40:])))
        return "\n".join(parts)


def linked(a, b):
    """True when a lists b as a peer and b lists a."""
    return b.id in a.peer_ids() and a.id in b.peer_ids()


def wait_linked(pairs, timeout=10.0):
    for a, b in pairs:
        wait_for(lambda: linked(a, b), timeout, what="link %s-%s" % (a.name, b.name))


def wait_all(nodes, cond, timeout, what):
    """Waits until cond(node) holds for every node, all within one deadline."""
    deadline = time.monotonic() + timeout
    for n in nodes:
        left = max(deadline - time.monotonic(), 0.0)
        wait_for(lambda: cond(n), left, what="%s on node %s" % (what, n.name))


def free_port_unlistened():
    """A socket bound to a loopback port but not listening: connecting to the
    port is refused for as long as the socket is held. Returns (sock, port)."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# ---- a fake peer on a node's listen URL ---------------------------------------

class Exchange:
    """What a fake peer saw: the node's hello, later messages, how it closed."""

    def __init__(self):
        self.hello = None
        self.messages = []
        self.close_code = None
        self.close_reason = None

    def errors(self):
        return [m for m in self.messages if m.get("type") == "error"]


async def _fake_peer(url, sends, timeout):
    ex = Exchange()
    async with websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                  max_size=None, ping_interval=None) as ws:
        first = await asyncio.wait_for(ws.recv(), timeout)
        ex.hello = json.loads(first)
        for s in sends:
            try:
                await ws.send(s)
            except websockets.ConnectionClosed:
                break
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                m = await asyncio.wait_for(ws.recv(), left)
                try:
                    ex.messages.append(json.loads(m))
                except ValueError:
                    ex.messages.append({"_raw": m})
        except websockets.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            pass
        # websockets reports 1006 when the TCP connection ended without a close frame
        ex.close_code = ws.close_code
        ex.close_reason = ws.close_reason
    return ex


def fake_peer(url, *sends, timeout=5.0):
    """Connects to a node's peer listener, reads its hello, sends each text,
    then reads until the node closes the link (or timeout)."""
    return asyncio.run(_fake_peer(url, sends, timeout))
