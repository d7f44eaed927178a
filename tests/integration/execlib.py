"""Helpers for the execution and event tests: background meshzero client
processes (serve, exec, subscribe), the shell handlers under handlers/, and an
asyncio JSON-RPC connection to a node's local API that can also act as a
resource handler and collect event notifications.

As in meshlib, nothing here synchronises by sleeping a fixed time: every wait
polls a condition against a deadline. Every process started through a Procs
(and every handler command those processes started) is gone after close().
"""
import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import websockets

from meshlib import (BIN, CLI_TIMEOUT, client_env, read_log, run, sanitizer_reports, wait_for,
                     wait_linked)

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLERS = os.path.join(HERE, "handlers")
STOP_TIMEOUT = 10.0


def handler(name):
    """The path of a shell handler under handlers/."""
    return os.path.join(HANDLERS, name)


# ---- meshes ---------------------------------------------------------------------

def build_square(mesh):
    """The seed's square A-B, A-C, B-D, C-D (no A-D link), all links up."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    c = mesh.node("C", peers=[a])
    d = mesh.node("D", peers=[b, c])
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    assert d.id not in a.peer_ids() and a.id not in d.peer_ids()
    return a, b, c, d


def build_pair(mesh):
    """Two linked nodes A-D."""
    a = mesh.node("A")
    d = mesh.node("D", peers=[a])
    wait_linked([(a, d)])
    return a, d


def wait_known(node, rid, timeout=5.0):
    """Waits until NODE's directory lists RID; returns the record."""
    return wait_for(lambda: node.ids().get(rid), timeout,
                    what="%s in the directory of node %s" % (rid, node.name))


# ---- background client processes ----------------------------------------------

class Proc:
    """A `meshzero ...` process running in the background, its stdout and
    stderr going to files that can be polled."""

    def __init__(self, tmp, name, args, env):
        self.name = name
        self.args = list(args)
        self.out_path = tmp / (name + ".stdout")
        self.err_path = tmp / (name + ".stderr")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([BIN] + self.args, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, env=env)
        self.started = time.monotonic()
        self.ended = None

    @property
    def pid(self):
        return self.proc.pid

    def out(self):
        return read_log(self.out_path)

    def err(self):
        return read_log(self.err_path)

    def poll(self):
        rc = self.proc.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def running(self):
        return self.poll() is None

    def wait(self, timeout):
        """Waits for the exit (AssertionError after timeout); returns the status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("`meshzero %s` still running after %.1fs; stderr:\n%s"
                                 % (" ".join(self.args), timeout, self.err()))
        self.poll()
        return rc

    def wait_output(self, text, timeout, stream="out"):
        """Waits until TEXT appears on stdout (or stderr); fails early if the
        process exits without printing it."""
        read = self.out if stream == "out" else self.err

        def seen():
            if text in read():
                return True
            if self.poll() is not None and text not in read():
                raise AssertionError("`meshzero %s` exited with %s before printing %r;\n"
                                     "stdout:\n%s\nstderr:\n%s"
                                     % (" ".join(self.args), self.proc.returncode, text,
                                        self.out(), self.err()))
            return False
        wait_for(seen, timeout, what="%r from `meshzero %s`" % (text, " ".join(self.args)))

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the status,
        or None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        self.poll()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.poll()


class Procs:
    """Starts background client processes and guarantees they (and the
    handler commands `serve` ran for them) are gone at close().

    Handlers run by `serve` inherit MZ_PIDDIR; handlers/slow.sh records its
    pid there once it has read its call, which tells a test that a call is in
    flight, and lets close() kill the handler's process group (serve starts
    each command in a session of its own) should serve not have done so."""

    def __init__(self, tmp):
        self.tmp = tmp / "clients"
        self.tmp.mkdir(exist_ok=True)
        self.piddir = tmp / "handler-pids"
        self.piddir.mkdir(exist_ok=True)
        self.procs = []
        self.problems = []
        self._n = 0

    def env(self):
        env = client_env()
        env["MZ_PIDDIR"] = str(self.piddir)
        return env

    def spawn(self, name, args):
        self._n += 1
        p = Proc(self.tmp, "%02d-%s" % (self._n, name), args, self.env())
        self.procs.append(p)
        return p

    # -- serve

    def serve(self, node, rid, cmd, rtype="tool", caps=(), methods=(), max_concurrent=None,
              meta=None, owner=None, wait=True, timeout=CLI_TIMEOUT):
        """`meshzero serve RID ... -- CMD` against NODE; waits for 'serving RID'."""
        args = ["serve", rid, "--type", rtype, "--node", node.api]
        for c in caps:
            args += ["--cap", c]
        for m in methods:
            args += ["--method", m]
        for k, v in (meta or {}).items():
            args += ["--meta", "%s=%s" % (k, v)]
        if owner is not None:
            args += ["--owner", owner]
        if max_concurrent is not None:
            args += ["--max-concurrent", str(max_concurrent)]
        args += ["--"] + (list(cmd) if isinstance(cmd, (list, tuple)) else [cmd])
        p = self.spawn("serve-" + rid, args)
        if wait:
            p.wait_output("serving %s\n" % rid, timeout)
        return p

    # -- exec

    def exec_bg(self, node, rid, method, params=None, timeout=None):
        """`meshzero exec ... --json` in the background."""
        args = ["exec", rid, method]
        if params is not None:
            args.append(params if isinstance(params, str) else json.dumps(params))
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        args += ["--json", "--node", node.api]
        return self.spawn("exec-" + rid, args)

    # -- subscribe

    def subscribe(self, node, topic, count=None, timeout=CLI_TIMEOUT):
        """`meshzero subscribe TOPIC` in the background; waits until it is active."""
        args = ["subscribe", topic, "--node", node.api]
        if count is not None:
            args += ["--count", str(count)]
        p = self.spawn("subscribe", args)
        p.wait_output("subscribed %s\n" % topic, timeout, stream="err")
        return p

    # -- handlers

    def handler_pids(self):
        return sorted(int(f.name.split(".")[1]) for f in self.piddir.glob("pid.*")
                      if not f.name.endswith(".tmp"))

    def wait_in_flight(self, n=1, timeout=10.0):
        """Waits until N slow.sh handlers have started; returns their pids."""
        return wait_for(lambda: (lambda ps: ps if len(ps) >= n else None)(self.handler_pids()),
                        timeout, what="%d handler(s) in flight" % n)

    def release(self):
        """Lets every `slow.sh wait` handler finish."""
        (self.piddir / "release").touch()

    def handler_alive(self, pid):
        """True while the handler process PID (one of ours) exists."""
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read()
            with open("/proc/%d/stat" % pid, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state == b"Z":
            return False
        return ("MZ_PIDDIR=%s" % self.piddir).encode() in env.split(b"\0")

    # -- teardown

    def close(self):
        for p in self.procs:
            if p.proc.poll() is None:
                try:
                    p.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            if p.terminate() is None:
                self.problems.append("`meshzero %s` did not exit within %.0fs of SIGTERM"
                                     % (" ".join(p.args), STOP_TIMEOUT))
            bad = sanitizer_reports(p.err())
            if bad:
                self.problems.append("`meshzero %s` stderr has sanitizer reports %s:\n%s"
                                     % (" ".join(p.args), bad, p.err()))
        # Handlers serve did not kill (it was SIGKILLed, or it has a bug):
        # their process groups, verified to be ours by the environment marker.
        for pid in self.handler_pids():
            if self.handler_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        return self.problems

    def dump(self):
        parts = []
        for p in self.procs:
            parts.append("---- `meshzero %s` rc=%s\nstdout:\n%s\nstderr:\n%s"
                         % (" ".join(p.args), p.proc.returncode, p.out()[-2000:],
                            p.err()[-2000:]))
        return "\n".join(parts)


@pytest.fixture
def procs(mesh, tmp_path):
    """Background client processes; stopped before the mesh's nodes are."""
    ps = Procs(tmp_path)
    try:
        yield ps
    finally:
        problems = ps.close()
        print(ps.dump())
        if problems:
            pytest.fail("client problems at teardown:\n  " + "\n  ".join(problems),
                        pytrace=False)


# ---- exec from the command line ---------------------------------------------------

class ExecOutcome:
    def __init__(self, p, elapsed):
        self.rc = p.returncode
        self.stdout = p.stdout
        self.stderr = p.stderr
        self.elapsed = elapsed
        self.json = None
        if p.stdout.strip():
            try:
                self.json = json.loads(p.stdout)
            except ValueError:
                pass

    @property
    def code(self):
        return ((self.json or {}).get("error") or {}).get("code")

    @property
    def message(self):
        return ((self.json or {}).get("error") or {}).get("message")

    def __repr__(self):
        return "<exec rc=%s %.2fs stdout=%r stderr=%r>" % (self.rc, self.elapsed, self.stdout,
                                                          self.stderr)


def exec_cli(node, rid, method, params=None, timeout=None, json_out=False):
    """Runs `meshzero exec` against NODE and returns an ExecOutcome."""
    args = ["exec", rid, method]
    if params is not None:
        args.append(params if isinstance(params, str) else json.dumps(params))
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    if json_out:
        args.append("--json")
    args += ["--node", node.api]
    t0 = time.monotonic()
    p = run(args, timeout=(timeout or 30) + CLI_TIMEOUT)
    return ExecOutcome(p, time.monotonic() - t0)


def assert_exec_error(out, code, contains=None):
    """A failed `exec --json`: exit 1, the same {"error"} object with CODE on
    stdout and on stderr."""
    assert out.rc == 1, out
    assert json.loads(out.stderr.strip().splitlines()[-1]) == out.json, out
    assert out.code == code, out
    if contains is not None:
        assert contains in out.message, out


def parse_error_output(out):
    """(code, message) from a plain (non --json) failed exec's stderr."""
    line = out.stderr.strip().splitlines()[-1]
    prefix = "meshzero exec: "
    assert line.startswith(prefix), out
    code, _, msg = line[len(prefix):].partition(": ")
    return code, msg


# ---- an asyncio connection to a node's local API -------------------------------------

def arun(coro, timeout):
    """Runs CORO to completion within TIMEOUT seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class ApiConn:
    """One WebSocket connection to a node's JSON-RPC API. Replies are matched
    to requests by id; `event` notifications are collected in .events as
    (monotonic time, params); requests pushed by the node (`execute`) are
    queued in .pushes."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = {}
        self.stray = []
        self.events = []
        self.pushes = asyncio.Queue()
        self.closed = False
        self._event_flag = asyncio.Event()
        self._next = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url, timeout=10.0):
        ws = await websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                      max_size=None, ping_interval=None)
        return cls(ws)

    async def _read(self):
        try:
            async for text in self.ws:
                m = json.loads(text)
                if "method" in m:
                    if m["method"] == "event":
                        self.events.append((time.monotonic(), m.get("params")))
                        self._event_flag.set()
                    else:
                        self.pushes.put_nowait(m)
                    continue
                fut = self.pending.pop(m.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(m)
                else:
                    self.stray.append(m)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._event_flag.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("API connection closed"))
            self.pending.clear()

    async def send_request(self, method, params=None, rid=None):
        """Sends a request; returns a future of the whole response."""
        if rid is None:
            self._next += 1
            rid = "r%d" % self._next
        req = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send(json.dumps(req))
        return fut

    async def call(self, method, params=None, timeout=10.0):
        """The whole response object of one request."""
        fut = await self.send_request(method, params)
        return await asyncio.wait_for(fut, timeout)

    async def result(self, method, params=None, timeout=10.0):
        resp = await self.call(method, params, timeout)
        assert "result" in resp, "%s %s failed: %s" % (method, params, resp)
        return resp["result"]

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def serve(self, fn):
        """Answers every pushed `execute` with fn(params) until cancelled;
        an exception from fn becomes an error answer."""
        while True:
            m = await self.pushes.get()
            if m.get("method") != "execute":
                continue
            try:
                reply = {"jsonrpc": "2.0", "id": m["id"], "result": fn(m["params"])}
            except Exception as e:  # noqa: BLE001 - the handler's failure is the answer
                reply = {"jsonrpc": "2.0", "id": m["id"],
                         "error": {"code": -32000, "message": str(e)}}
            await self.send(reply)

    async def wait_events(self, cond, timeout, what="events"):
        """Waits until cond(list of event params) is truthy; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond([e for _, e in self.events])
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError("timed out after %.1fs waiting for %s; got %s"
                                     % (timeout, what, [e for _, e in self.events]))
            self._event_flag.clear()
            try:
                await asyncio.wait_for(self._event_flag.wait(), min(left, 0.25))
            except asyncio.TimeoutError:
                pass

    async def close(self):
        await self.ws.close()
        try:
            await asyncio.wait_for(self._reader, 5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._reader.cancel()


async def until(cond, timeout, what, interval=0.05):
    """Awaits cond() (a coroutine function) until truthy, within TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        v = await cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        await asyncio.sleep(interval)


async def in_directory(conn, rid, timeout=5.0):
    """Waits until the node behind CONN lists RID; returns its record."""
    async def look():
        rs = await conn.result("query_resources", {})
        return next((r for r in rs if r["resource_id"] == rid), None)
    return await until(look, timeout, "%s in the directory" % rid)
