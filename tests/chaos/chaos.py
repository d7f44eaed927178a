#!/usr/bin/env python3
"""Chaos driver for meshzero (`make soak`, tests/integration/test_chaos.py).

Starts N node processes on loopback with fixed ports (below the ephemeral
range, so a restarted node keeps its URLs) in a random connected graph (a
random spanning tree plus extra edges: every node at least 2 links, about 3 on
average; each edge a --peer of one of its ends), --lease-ms 3000 and
--min-links 2, then for SECONDS:

  * kills random nodes with SIGKILL and restarts them a few seconds later with
    the same data directory, ports and --peer arguments (at least MIN_ALIVE
    nodes stay up; the STABLE nodes are never killed);
  * cuts random links with `meshzero disconnect` (they come back by re-dial);
  * registers, updates (re-registers with new metadata) and unregisters
    resources on live nodes, recording every acknowledged operation (the CLI
    exited 0) as the ground truth;
  * executes methods of resources served by `meshzero serve` (handler
    tests/integration/handlers/echo.sh) on the stable nodes, from random live
    nodes that have been up for at least 2 s (--exec-settle-ms; a node that
    has just restarted is still joining), through the local API's
    execute_remote (the same call `meshzero exec` makes, without a process
    per call) and checks each result echoes its call.

Then it stops the chaos (nodes that are down stay down; if none is, one more
is killed so the lease path is always exercised) and polls every live node's
directory until it equals the ground truth, within the bound

    lease + alive interval (lease/3) + 250 ms sweep + per-sender fetch
    spacing (5 s, PROTOCOL.md §6.3) + first re-dial of a cut link (1.25 s)

(10.5 s with --lease-ms 3000). Ground truth, for every live node: each of its
resources at the latest acknowledged version; an operation that was not
acknowledged (the node died under it, a timeout) leaves either outcome
acceptable. A record of a node that is down, or an unregistered record, is a
ghost. Executes started in the last 20 s of the chaos must succeed at least 99%
of the time (calls whose calling node was itself killed during the call are
not counted).

Prints the figures as one table (--json: one JSON object on stdout, the table
on stderr). Exit status 0 when every check passed, 1 when one failed, 2 when
the mesh could not be set up. Every process started is stopped at the end,
also on failure or interruption.

    python3 tests/chaos/chaos.py --nodes 12 --seconds 60 --bin build/meshzero --json
"""
import argparse
import base64
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_BIN = os.environ.get("MESHZERO_BIN") or os.path.join(REPO, "build", "meshzero")
ECHO = os.path.join(REPO, "tests", "integration", "handlers", "echo.sh")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
QUERY_LIMIT = 500          # the largest query answer (PROTOCOL.md §6.7)
FETCH_SPACING_MS = 5000    # at most one alive-triggered fetch per sender every 5 s (§6.3)
REDIAL_MS = 1250           # first re-dial of a lost --peer link: 1 s + up to 250 ms jitter
SWEEP_MS = 250             # lease sweep interval (§6.5)
START_TIMEOUT = 20.0       # a node prints its banner
STOP_TIMEOUT = 15.0        # a node exits after SIGTERM
OP_TIMEOUT = 8.0           # one register/unregister/query/peers/disconnect command
EXEC_TIMEOUT_S = 5         # exec --timeout
EXEC_WINDOW_S = 20.0       # executes judged: those started in the last 20 s of the chaos
EXEC_TARGET = 0.99


class SetupError(Exception):
    pass


def now():
    return time.monotonic()


def short(node_id):
    return (node_id or "?")[:12]


def free_ports(count, rng):
    """COUNT distinct loopback ports that are free now, chosen below the
    kernel's ephemeral range so that no outgoing connection (ours or another
    program's) takes one while the node that owns it is down."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    ports = []
    if lo > 12000:
        cands = list(range(max(10000, lo - 12000), lo))
        rng.shuffle(cands)
        for p in cands:
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))
                s.listen(1)
            except OSError:
                continue
            finally:
                s.close()
            ports.append(p)
    while len(ports) < count:            # fallback: whatever the kernel gives
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p not in ports:
            ports.append(p)
    return ports


def random_graph(n, rng, degree=3.0):
    """Edges (a, b) of a random connected graph: a random spanning tree, then
    extra random edges so that every node has at least 2 links (no node is cut
    off by one lost link), then more up to an average degree of about DEGREE."""
    order = list(range(n))
    rng.shuffle(order)
    edges = set()
    deg = [0] * n

    def add(a, b):
        e = (min(a, b), max(a, b))
        if a != b and e not in edges:
            edges.add(e)
            deg[a] += 1
            deg[b] += 1
    for i in range(1, n):
        add(order[i], order[rng.randrange(i)])
    for a in range(n):
        while deg[a] < min(2, n - 1):
            add(a, rng.choice([b for b in range(n) if b != a and (min(a, b), max(a, b))
                               not in edges]))
    want = min(int(round(n * degree / 2)), n * (n - 1) // 2)
    while len(edges) < want:
        add(*rng.sample(range(n), 2))
    return sorted(edges)


class RpcError(Exception):
    pass


def _recv_exact(s, buf, n):
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise RpcError("connection closed by the node")
        buf += chunk
    return buf


def ws_rpc(url, method, params, timeout, req_id=1):
    """One JSON-RPC call on a fresh WebSocket connection to a node's local
    API (PROTOCOL.md §8); returns the response object. A minimal client (no
    dependency beyond the standard library): the executes use it because a
    `meshzero exec` process costs ~150 ms, too slow for enough samples."""
    hostport = url[len("ws://"):].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    deadline = now() + timeout
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % (hostport, key)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise RpcError("connection closed during the WebSocket handshake")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RpcError("WebSocket handshake refused: %r" % head[:100])
        payload = json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                              "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        msg = b""
        while True:
            left = deadline - now()
            if left <= 0:
                raise socket.timeout("no answer within %.0fs" % timeout)
            s.settimeout(left)
            buf = _recv_exact(s, buf, 2)
            b0, b1 = buf[0], buf[1]
            ln, off = b1 & 0x7f, 2
            if ln == 126:
                buf = _recv_exact(s, buf, 4)
                ln, off = struct.unpack("!H", buf[2:4])[0], 4
            elif ln == 127:
                buf = _recv_exact(s, buf, 10)
                ln, off = struct.unpack("!Q", buf[2:10])[0], 10
            if b1 & 0x80:
                off += 4            # a masked frame from a server: not expected, skip the key
            buf = _recv_exact(s, buf, off + ln)
            data, buf = buf[off:off + ln], buf[off + ln:]
            op = b0 & 0x0f
            if op == 8:
                raise RpcError("the node closed the API connection")
            if op not in (0, 1):
                continue            # ping/pong
            msg += data
            if not b0 & 0x80:
                continue
            obj = json.loads(msg.decode())
            msg = b""
            if isinstance(obj, dict) and obj.get("id") == req_id:
                return obj
    finally:
        try:
            s.sendall(struct.pack("!BB", 0x88, 0x80) + b"\0\0\0\0")
        except OSError:
            pass
        s.close()


def exec_cause(code, msg):
    """A failed execute's cause, one short word, for the figures."""
    msg = msg or ""
    if code == "unreachable":
        if "no route" in msg:
            return "unreachable/no_route"
        if "lost while the call was in flight" in msg:
            return "unreachable/link_lost"
        return "unreachable/other"
    return code or "unknown"


class Node:
    def __init__(self, drv, idx, port, api_port):
        self.drv = drv
        self.idx = idx
        self.name = "n%02d" % idx
        self.port = port
        self.api_port = api_port
        self.listen = "ws://127.0.0.1:%d" % port
        self.api = "ws://127.0.0.1:%d" % api_port
        self.data = os.path.join(drv.workdir, self.name)
        self.err_path = os.path.join(drv.workdir, self.name + ".stderr")
        self.peers = []             # nodes this one dials (--peer)
        self.stable = False
        self.proc = None
        self.procs = []             # every process of this node, for cleanup
        self.id = None
        self.alive = False          # running and its banner seen
        self.gen = 0                # starts so far
        self.up_since = None
        self.down_since = None
        self.restart_at = None
        self.kills = 0
        self.start_failures = 0
        self.pool = []              # Res hosted here

    def label(self):
        return "%s(%s)" % (self.name, short(self.id))

    def cmd(self):
        c = [self.drv.bin, "node", "--listen", self.listen, "--api", self.api,
             "--data", self.data, "--lease-ms", str(self.drv.lease_ms),
             "--min-links", "2", "--max-links", "8", "--log", "info"]
        for p in self.peers:
            c += ["--peer", p.listen]
        return c

    def spawn(self):
        out_path = os.path.join(self.drv.workdir, "%s.stdout.%d" % (self.name, self.gen + 1))
        with open(self.err_path, "ab") as err:
            err.write(("==== start %d at +%.2fs: %s\n"
                       % (self.gen + 1, self.drv.t(), " ".join(self.cmd()))).encode())
        with open(out_path, "wb") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=self.drv.env)
        self.procs.append(self.proc)
        self.out_path = out_path

    def wait_banner(self, timeout=START_TIMEOUT):
        deadline = now() + timeout
        while True:
            try:
                with open(self.out_path) as f:
                    text = f.read()
            except OSError:
                text = ""
            if "\n" in text:
                parts = text.split("\n", 1)[0].split()
                if len(parts) != 6 or parts[0] != "node":
                    raise SetupError("node %s: bad banner %r" % (self.name, text))
                if self.id is not None and parts[1] != self.id:
                    raise SetupError("node %s restarted with another id %s (was %s)"
                                     % (self.name, parts[1], self.id))
                self.id = parts[1]
                return
            if self.proc.poll() is not None:
                raise SetupError("node %s exited with status %s before its banner; stderr:\n%s"
                                 % (self.name, self.proc.returncode, self.stderr_tail(15)))
            if now() > deadline:
                raise SetupError("node %s printed no banner within %.0fs" % (self.name, timeout))
            time.sleep(0.02)

    def start(self):
        self.spawn()
        self.wait_banner()
        self.gen += 1
        self.up_since = now()
        self.down_since = None
        self.restart_at = None
        self.alive = True

    def kill(self):
        self.alive = False
        self.down_since = now()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.kills += 1

    def stderr_tail(self, n=40):
        try:
            with open(self.err_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""


class Res:
    """One resource id and what its directory entry may be. states: the
    acceptable states, each None (absent) or (version or None, gen); more than
    one only while an unacknowledged operation left the outcome open."""

    def __init__(self, rid, host, served=False):
        self.rid = rid
        self.host = host
        self.served = served
        self.lock = threading.Lock()
        self.states = [("any", None)] if served else [None]
        self.last_ack = None        # (t, op, version, gen, host start) of the last acknowledged op


def caps_for(gen):
    return ["c%d" % (gen % 3), "chaos"]


class Driver:
    def __init__(self, a):
        self.a = a
        self.bin = os.path.abspath(a.bin)
        self.lease_ms = a.lease_ms
        self.rng = random.Random(a.seed)
        self.seed = a.seed
        self.own_workdir = a.workdir is None
        self.workdir = a.workdir or tempfile.mkdtemp(prefix="meshzero-chaos-")
        os.makedirs(self.workdir, exist_ok=True)
        self.env = dict(os.environ)
        self.env.pop("MESHZERO_API", None)
        self.env.pop("MESHZERO_DATA", None)
        self.t0 = now()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.nodes = []
        self.serves = []            # (Popen, Res, stdout path, stderr path)
        self.res = {}               # rid -> Res
        self.gen = 0
        self.events = []            # the chaos log, one line per event
        self.topo = []              # (t, "kill -9 n03" / "cut n01 -- n04" / "restart n03")
        self.execs = []             # dicts
        self.problems = []          # sanitizer reports, bad exits, restart failures
        self.c = dict(registered=0, updated=0, unregistered=0, ops_failed=0, kills=0,
                      restarts=0, restart_failures=0, cuts=0, cut_failures=0)
        self.bound_s = (a.bound_s if a.bound_s is not None else
                        (self.lease_ms + self.lease_ms / 3 + SWEEP_MS + FETCH_SPACING_MS
                         + REDIAL_MS) / 1000.0)

    # ---- helpers

    def t(self):
        return now() - self.t0

    def log(self, text):
        line = "[%7.2f] %s" % (self.t(), text)
        with self.lock:
            self.events.append(line)
        if self.a.verbose:
            print(line, file=sys.stderr, flush=True)

    def next_gen(self):
        with self.lock:
            self.gen += 1
            return self.gen

    def cli(self, args, timeout=OP_TIMEOUT):
        """Runs `meshzero ARGS`; returns (rc or None on timeout, stdout, stderr)."""
        try:
            p = subprocess.run([self.bin] + list(args), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as e:
            return None, "", "timed out after %.0fs: %s" % (timeout, e)
        if any(m in p.stderr for m in SANITIZER_MARKERS):
            with self.lock:
                self.problems.append("sanitizer report from `meshzero %s`:\n%s"
                                     % (" ".join(args), p.stderr[-3000:]))
        return p.returncode, p.stdout, p.stderr

    def live(self):
        return [n for n in self.nodes if n.alive]

    def by_id(self):
        return {n.id: n for n in self.nodes if n.id}

    # ---- setup

    def setup(self):
        a = self.a
        n = a.nodes
        ports = free_ports(2 * n, self.rng)
        for i in range(n):
            self.nodes.append(Node(self, i, ports[2 * i], ports[2 * i + 1]))
        self.edges = random_graph(n, self.rng)
        for x, y in self.edges:
            if self.rng.random() < 0.5:
                x, y = y, x
            self.nodes[x].peers.append(self.nodes[y])
        stable = self.rng.sample(self.nodes, min(a.stable, n))
        for s in stable:
            s.stable = True
        rpn = max(1, min(a.resources_per_node, (QUERY_LIMIT - 50) // n))
        for nd in self.nodes:
            for k in range(rpn):
                r = Res("cx-%s-%d" % (nd.name, k), nd)
                nd.pool.append(r)
                self.res[r.rid] = r
        self.log("graph: %s" % " ".join("%s>%s" % (nd.name, p.name)
                                        for nd in self.nodes for p in nd.peers))
        self.log("stable nodes: %s" % " ".join(s.name for s in stable))
        for nd in self.nodes:
            nd.spawn()
        for nd in self.nodes:
            nd.wait_banner()
            nd.gen = 1
            nd.up_since = now()
            nd.alive = True
        # Executable resources on the stable nodes.
        for s in stable:
            rid = "exec-%s" % s.name
            r = Res(rid, s, served=True)
            self.res[rid] = r
            out = os.path.join(self.workdir, "serve-%s.out" % rid)
            err = os.path.join(self.workdir, "serve-%s.err" % rid)
            with open(out, "wb") as fo, open(err, "wb") as fe:
                p = subprocess.Popen([self.bin, "serve", rid, "--type", "chaos-exec",
                                      "--cap", "echo", "--method", "echo", "--node", s.api,
                                      "--", ECHO], stdin=subprocess.DEVNULL, stdout=fo,
                                     stderr=fe, env=self.env)
            self.serves.append((p, r, out, err))
        deadline = now() + START_TIMEOUT
        for p, r, out, err in self.serves:
            while True:
                with open(out, errors="replace") as f:
                    if ("serving %s\n" % r.rid) in f.read():
                        break
                if p.poll() is not None or now() > deadline:
                    with open(err, errors="replace") as f:
                        raise SetupError("`meshzero serve %s` did not start (status %s): %s"
                                         % (r.rid, p.poll(), f.read()[-2000:]))
                time.sleep(0.02)
        # The mesh must be whole before the chaos: every directory lists
        # exactly the served resources.
        t_start = now()
        deadline = t_start + 30.0
        while True:
            mism = self.check_all()
            if not mism:
                break
            if now() > deadline:
                raise SetupError("the mesh did not converge before the chaos (30 s):\n"
                                 + "\n".join(self.format_mismatch(m) for m in mism[:30]))
            time.sleep(0.2)
        self.log("mesh up: %d nodes, %d edges, converged in %.2fs"
                 % (n, len(self.edges), now() - t_start))

    # ---- the chaos

    def chaos_loop(self, t_end):
        a = self.a
        rng = random.Random(self.rng.random())
        next_kill = now() + rng.uniform(1.0, 3.0)
        next_cut = now() + rng.uniform(0.5, 1.5)
        while now() < t_end:
            for nd in self.nodes:
                if not nd.alive and nd.restart_at is not None and now() >= nd.restart_at:
                    self.restart(nd)
            t = now()
            if t >= next_kill:
                self.kill_random(rng, a.min_alive)
                next_kill = t + rng.uniform(a.kill_every[0], a.kill_every[1])
            if t >= next_cut:
                self.cut_random(rng)
                next_cut = t + rng.uniform(a.cut_every[0], a.cut_every[1])
            time.sleep(0.05)

    def kill_random(self, rng, min_alive, schedule_restart=True):
        cands = [nd for nd in self.nodes if nd.alive and not nd.stable]
        if not cands or len(self.live()) - 1 < min_alive:
            return None
        nd = rng.choice(cands)
        nd.kill()
        self.c["kills"] += 1
        self.topo.append((self.t(), "kill -9 %s" % nd.name))
        if schedule_restart:
            nd.restart_at = now() + rng.uniform(self.a.down_for[0], self.a.down_for[1])
            self.log("kill -9 %s (restart in %.1fs); live %d"
                     % (nd.label(), nd.restart_at - now(), len(self.live())))
        else:
            self.log("kill -9 %s (stays down); live %d" % (nd.label(), len(self.live())))
        return nd

    def restart(self, nd):
        try:
            nd.start()
        except SetupError as e:
            nd.start_failures += 1
            self.c["restart_failures"] += 1
            if nd.proc is not None and nd.proc.poll() is None:
                nd.proc.kill()
                nd.proc.wait()
            nd.restart_at = now() + 1.0
            with self.lock:
                self.problems.append("restart of %s failed: %s" % (nd.name, e))
            self.log("restart of %s failed: %s" % (nd.name, e))
            return
        self.c["restarts"] += 1
        self.topo.append((self.t(), "restart %s" % nd.name))
        self.log("restarted %s (start %d); live %d" % (nd.label(), nd.gen, len(self.live())))

    def cut_random(self, rng):
        live = self.live()
        if not live:
            return
        nd = rng.choice(live)
        rc, out, err = self.cli(["peers", "--json", "--node", nd.api])
        if rc != 0:
            return
        try:
            peers = json.loads(out)
        except ValueError:
            return
        if not peers:
            return
        p = rng.choice(peers)
        other = self.by_id().get(p["id"])
        rc, out, err = self.cli(["disconnect", p["id"], "--json", "--node", nd.api])
        if rc == 0:
            self.c["cuts"] += 1
            self.topo.append((self.t(), "cut %s -- %s" % (nd.name, other.name if other
                                                          else short(p["id"]))))
            self.log("cut %s -- %s" % (nd.name, other.name if other else short(p["id"])))
        else:
            self.c["cut_failures"] += 1
            self.log("cut %s -- %s failed: %s" % (nd.name, short(p["id"]), err.strip()))

    # ---- operations

    def ops_loop(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            live = self.live()
            if not live:
                time.sleep(0.05)
                continue
            nd = rng.choice(live)
            r = rng.choice(nd.pool)
            if not r.lock.acquire(blocking=False):
                continue
            try:
                self.one_op(rng, nd, r)
            finally:
                r.lock.release()
            if self.a.op_pause:
                time.sleep(self.a.op_pause)

    def one_op(self, rng, nd, r):
        may_exist = any(s is not None for s in r.states)
        op = "register"
        if may_exist and rng.random() < 0.3:
            op = "unregister"
        gen = self.next_gen()
        t = self.t()
        if op == "register":
            args = ["register", r.rid, "--type", "chaos"]
            for c in caps_for(gen):
                args += ["--cap", c]
            args += ["--meta", "gen=%d" % gen, "--json", "--node", nd.api]
        else:
            args = ["unregister", r.rid, "--json", "--node", nd.api]
        rc, out, err = self.cli(args)
        if rc == 0 and op == "register":
            try:
                rec = json.loads(out)
                version = rec["version"]
                ok = (rec["resource_id"] == r.rid and rec["node"] == nd.id
                      and rec["metadata"].get("gen") == str(gen))
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                with self.lock:
                    self.problems.append("register %s on %s acknowledged a wrong record: %s"
                                         % (r.rid, nd.name, out.strip()[:500]))
                r.states = r.states + [(None, gen)]
                return
            kind = "updated" if any(s is not None for s in r.states) else "registered"
            r.states = [(version, gen)]
            r.last_ack = (t, "register", version, gen, nd.gen)
            with self.lock:
                self.c[kind] += 1
        elif rc == 0:
            r.states = [None]
            r.last_ack = (t, "unregister", None, gen, nd.gen)
            with self.lock:
                self.c["unregistered"] += 1
        else:
            # Not acknowledged: either outcome is acceptable from now on.
            new = (None, gen) if op == "register" else None
            if new not in r.states:
                r.states = r.states + [new]
            with self.lock:
                self.c["ops_failed"] += 1
            self.log("%s %s on %s not acknowledged (rc %s): %s"
                     % (op, r.rid, nd.name, rc, (err.strip().splitlines() or [""])[-1][:200]))

    # ---- executes

    def exec_loop(self, seed):
        rng = random.Random(seed)
        served = [r for r in self.res.values() if r.served]
        k = 0
        while not self.stop.is_set():
            settle = self.a.exec_settle_ms / 1000.0
            callers = [nd for nd in self.live() if now() - nd.up_since >= settle]
            if not callers or not served:
                time.sleep(0.05)
                continue
            caller = rng.choice(callers)
            r = rng.choice(served)
            k += 1
            token = "%d-%d" % (seed % 100000, k)
            gen0 = caller.gen
            up = now() - caller.up_since
            t0 = self.t()
            ok, code, msg = False, None, None
            try:
                resp = ws_rpc(caller.api, "execute_remote",
                              {"resource_id": r.rid, "method": "echo",
                               "params": {"token": token}, "timeout_ms": EXEC_TIMEOUT_S * 1000},
                              timeout=EXEC_TIMEOUT_S + 5, req_id=k)
                if "result" in resp:
                    try:
                        ok = resp["result"]["input"]["params"]["token"] == token
                    except (KeyError, TypeError):
                        ok = False
                    if not ok:
                        code, msg = "wrong_result", json.dumps(resp)[:200]
                else:
                    e = resp.get("error") or {}
                    d = e.get("data") or {}
                    code = d.get("code") or "rpc%s" % e.get("code")
                    msg = d.get("message") or e.get("message")
            except (OSError, RpcError, ValueError) as e:
                code, msg = "api_failed", "%s: %s" % (type(e).__name__, e)
            t1 = self.t()
            caller_killed = caller.gen != gen0 or not caller.alive
            rec = dict(t0=round(t0, 3), t1=round(t1, 3), caller=caller.name,
                       caller_up_s=round(up, 2), resource=r.rid, ok=ok, code=code,
                       cause=None if ok else exec_cause(code, msg), message=msg,
                       caller_killed=caller_killed)
            with self.lock:
                self.execs.append(rec)
            if self.a.exec_pause:
                time.sleep(self.a.exec_pause)
            if not ok:
                self.log("exec %s from %s failed: %s %s%s" % (r.rid, caller.name, code, msg,
                                                            " (caller killed)" if caller_killed
                                                            else ""))

    # ---- checks

    def expected(self):
        """rid -> (host, acceptable states) for resources of live nodes that
        may be present."""
        exp = {}
        for r in self.res.values():
            if r.host.alive and any(s is not None for s in r.states):
                exp[r.rid] = r
        return exp

    def query(self, nd):
        rc, out, err = self.cli(["query", "--json", "--limit", str(QUERY_LIMIT), "--node", nd.api])
        if rc != 0:
            return None, err.strip() or "rc %s" % rc
        try:
            return {rec["resource_id"]: rec for rec in json.loads(out)}, None
        except (ValueError, KeyError, TypeError) as e:
            return None, "bad query output: %s" % e

    @staticmethod
    def matches(rec, states):
        for s in states:
            if s is None:
                continue
            v, gen = s
            if v == "any":
                return True
            if rec.get("metadata", {}).get("gen") != str(gen):
                continue
            if v is not None and rec.get("version") != v:
                continue
            if rec.get("resource_type") != "chaos" or rec.get("capabilities") != caps_for(gen):
                continue
            return True
        return False

    def check_node(self, nd, exp, ids):
        """Mismatches of one live node's directory against the truth."""
        found, err = self.query(nd)
        if found is None:
            return [dict(kind="query_failed", node=nd.name, detail=err)]
        out = []
        for rid, r in exp.items():
            rec = found.get(rid)
            if rec is None:
                if None in r.states:
                    continue            # an unacknowledged unregister may have happened
                kind = "lost" if nd is r.host else "missing"
                out.append(dict(kind=kind, node=nd.name, resource=rid, host=r.host.name,
                                expected=self.state_text(r), found=None))
            elif rec.get("node") != r.host.id:
                out.append(dict(kind="wrong_host", node=nd.name, resource=rid,
                                host=r.host.name, expected=self.state_text(r),
                                found=self.rec_text(rec, ids)))
            elif not self.matches(rec, r.states):
                kind = "stale_on_host" if nd is r.host else "stale"
                out.append(dict(kind=kind, node=nd.name, resource=rid, host=r.host.name,
                                expected=self.state_text(r), found=self.rec_text(rec, ids)))
        for rid, rec in found.items():
            if rid in exp:
                continue
            r = self.res.get(rid)
            host = ids.get(rec.get("node"))
            if r is None:
                kind = "unknown"
            elif not r.host.alive:
                kind = "ghost_of_down_node"
            else:
                kind = "ghost_unregistered"
            out.append(dict(kind=kind, node=nd.name, resource=rid,
                            host=host.name if host else short(rec.get("node")),
                            expected=("absent (host down since +%.1fs)"
                                      % (r.host.down_since - self.t0)
                                      if r is not None and not r.host.alive else
                                      "absent (unregistered)" if r is not None else "absent"),
                            found=self.rec_text(rec, ids)))
        return out

    def check_all(self):
        exp = self.expected()
        ids = self.by_id()
        mism = []
        live = self.live()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(live))) as ex:
            for m in ex.map(lambda nd: self.check_node(nd, exp, ids), live):
                mism += m
        return mism

    def state_text(self, r):
        parts = []
        for s in r.states:
            if s is None:
                parts.append("absent")
            elif s[0] == "any":
                parts.append("served by `meshzero serve`")
            else:
                parts.append("%sgen=%s" % ("v%s " % s[0] if s[0] is not None else "", s[1]))
        txt = " or ".join(parts)
        if r.last_ack:
            txt += " (last ack: %s at +%.1fs, host start %d)" % (r.last_ack[1], r.last_ack[0],
                                                                 r.last_ack[4])
        return txt

    @staticmethod
    def rec_text(rec, ids):
        host = ids.get(rec.get("node"))
        return "v%s gen=%s node=%s %s" % (rec.get("version"), rec.get("metadata", {}).get("gen"),
                                          host.name if host else short(rec.get("node")),
                                          rec.get("location"))

    @staticmethod
    def format_mismatch(m):
        if m["kind"] == "query_failed":
            return "  %s: query failed: %s" % (m["node"], m["detail"])
        return ("  %-18s on %s: %s (host %s): expected %s; found %s"
                % (m["kind"], m["node"], m["resource"], m["host"], m["expected"],
                   m["found"] or "nothing"))

    # ---- the run

    def run(self):
        a = self.a
        result = dict(ok=False, seed=self.seed, nodes=a.nodes, seconds=a.seconds,
                      lease_ms=self.lease_ms, workdir=self.workdir)
        threads = []
        try:
            self.setup()
            t_start = now()
            t_end = t_start + a.seconds
            self.chaos_start = self.t()
            for i in range(a.op_threads):
                threads.append(threading.Thread(target=self.ops_loop,
                                                args=(self.rng.randrange(1 << 30),), daemon=True))
            for i in range(a.exec_threads):
                threads.append(threading.Thread(target=self.exec_loop,
                                                args=(self.rng.randrange(1 << 30),), daemon=True))
            for th in threads:
                th.start()
            self.chaos_loop(t_end)
            self.chaos_end = self.t()
            self.stop.set()
            for th in threads:
                th.join(OP_TIMEOUT + 10)
            # Nodes that are down stay down; make sure one is.
            if not [nd for nd in self.nodes if not nd.alive]:
                self.kill_random(random.Random(self.seed), 1, schedule_restart=False)
            for nd in self.nodes:
                nd.restart_at = None
            self.down_at_end = [nd.name for nd in self.nodes if not nd.alive]
            self.log("chaos stopped; live: %s; down: %s"
                     % (" ".join(nd.name for nd in self.live()),
                        " ".join(nd.name for nd in self.nodes if not nd.alive)))
            self.converge(result)
        except SetupError as e:
            result["setup_error"] = str(e)
            self.log("setup error: %s" % e)
        finally:
            self.stop.set()
            for th in threads:
                th.join(OP_TIMEOUT + 10)
            self.teardown()
        self.finish(result)
        return result

    def converge(self, result):
        t_quiet = now()
        deadline = t_quiet + self.bound_s
        late_deadline = deadline + self.a.extra_wait_s
        converged = None
        at_bound = None
        rounds = 0
        while True:
            mism = self.check_all()
            rounds += 1
            t = now()
            if not mism:
                converged = t - t_quiet
                break
            if t > deadline and at_bound is None:
                at_bound = mism
                self.log("not converged within the bound (%.1fs): %d mismatches; waiting up "
                         "to %.0fs more to see whether they heal"
                         % (self.bound_s, len(mism), self.a.extra_wait_s))
            if t > late_deadline:
                break
            time.sleep(0.2)
        result["convergence_s"] = round(converged, 2) if converged is not None else None
        result["check_rounds"] = rounds
        result["converged_within_bound"] = converged is not None and at_bound is None
        result["mismatches"] = at_bound or []
        result["mismatches_remaining"] = mism if converged is None else []
        # Counters of the live nodes (summed), for the figures.
        sums = {}

        def status(nd):
            rc, out, err = self.cli(["status", "--json", "--node", nd.api])
            try:
                return json.loads(out).get("counters", {}) if rc == 0 else {}
            except ValueError:
                return {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.live()))) as ex:
            for counters in ex.map(status, self.live()):
                for k, v in counters.items():
                    if isinstance(v, int):
                        sums[k] = sums.get(k, 0) + v
        result["counters_live_sum"] = sums
        if at_bound is not None or converged is None:
            # What each live node saw of the mesh, for the report.
            links = {}
            ids = self.by_id()
            for nd in self.live():
                rc, out, err = self.cli(["peers", "--json", "--node", nd.api])
                try:
                    links[nd.name] = sorted(ids[p["id"]].name if p["id"] in ids else
                                            short(p["id"]) for p in json.loads(out))
                except (ValueError, KeyError, TypeError):
                    links[nd.name] = "peers failed: %s" % err.strip()
            result["links_at_end"] = links

    def teardown(self):
        # serve first (it unregisters and kills its handlers), then the nodes.
        for p, r, out, err in self.serves:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, r, out, err in self.serves:
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.problems.append("`meshzero serve %s` did not exit within %.0fs of SIGTERM"
                                     % (r.rid, STOP_TIMEOUT))
            with open(err, errors="replace") as f:
                text = f.read()
            if any(m in text for m in SANITIZER_MARKERS):
                self.problems.append("`meshzero serve %s` stderr has a sanitizer report:\n%s"
                                     % (r.rid, text[-3000:]))
        running = [nd for nd in self.nodes if nd.proc is not None and nd.proc.poll() is None]
        for nd in running:
            nd.proc.send_signal(signal.SIGTERM)
        for nd in running:
            try:
                rc = nd.proc.wait(STOP_TIMEOUT)
                if rc != 0:
                    self.problems.append("node %s exited with status %s after SIGTERM (expected 0)"
                                         % (nd.name, rc))
            except subprocess.TimeoutExpired:
                self.problems.append("node %s did not exit within %.0fs of SIGTERM"
                                     % (nd.name, STOP_TIMEOUT))
        self.kill_everything()
        for nd in self.nodes:
            text = ""
            try:
                with open(nd.err_path, errors="replace") as f:
                    text = f.read()
            except OSError:
                pass
            if any(m in text for m in SANITIZER_MARKERS):
                i = min(text.find(m) for m in SANITIZER_MARKERS if m in text)
                self.problems.append("node %s stderr has a sanitizer report:\n%s"
                                     % (nd.name, text[max(0, i - 200):i + 3000]))

    def kill_everything(self):
        """SIGKILL whatever we started that is still running."""
        for nd in self.nodes:
            for p in nd.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            nd.alive = False
        for p, r, out, err in self.serves:
            if p.poll() is None:
                p.kill()
                p.wait()

    def finish(self, result):
        a = self.a
        c = self.c
        result.update(c)
        result["ops_acknowledged"] = c["registered"] + c["updated"] + c["unregistered"]
        result["bound_s"] = round(self.bound_s, 2)
        result["extra_wait_s"] = a.extra_wait_s
        result["edges"] = ["%s>%s" % (nd.name, p.name) for nd in self.nodes for p in nd.peers]
        result["stable"] = [nd.name for nd in self.nodes if nd.stable]
        result["down_at_end"] = getattr(self, "down_at_end", None)
        # executes
        end = getattr(self, "chaos_end", None)
        window = [e for e in self.execs if end is not None and e["t0"] >= end - EXEC_WINDOW_S]
        judged = [e for e in window if not e["caller_killed"]]
        ok = sum(1 for e in judged if e["ok"])
        result["execs"] = len(self.execs)
        result["execs_ok"] = sum(1 for e in self.execs if e["ok"])
        result["execs_last20s"] = len(judged)
        result["execs_last20s_ok"] = ok
        result["execs_last20s_caller_killed"] = len(window) - len(judged)
        result["exec_success_last20s"] = round(ok / len(judged), 4) if judged else None
        result["exec_failures_last20s"] = [e for e in judged if not e["ok"]]
        for e in result["exec_failures_last20s"]:
            # The last topology change before the call started, for the report.
            before = [(t, what) for t, what in self.topo if t <= e["t0"]]
            e["after"] = ("%.2fs after %s" % (e["t0"] - before[-1][0], before[-1][1])
                          if before else None)
        causes = {}
        for e in result["exec_failures_last20s"]:
            causes[e["cause"]] = causes.get(e["cause"], 0) + 1
        result["exec_failure_causes_last20s"] = causes
        result["node_starts"] = {nd.name: nd.gen for nd in self.nodes}
        codes = {}
        for e in self.execs:
            if not e["ok"]:
                codes[e["code"]] = codes.get(e["code"], 0) + 1
        result["exec_failure_codes_all"] = codes
        result["problems"] = list(self.problems)
        failures = []
        if "setup_error" in result:
            failures.append("setup: " + result["setup_error"].splitlines()[0])
        else:
            if not result.get("converged_within_bound"):
                failures.append("directories did not equal the ground truth within %.1fs (%s)"
                                % (self.bound_s,
                                   "converged late after %.1fs" % result["convergence_s"]
                                   if result.get("convergence_s") is not None else
                                   "still %d mismatches after %.0fs"
                                   % (len(result["mismatches_remaining"]),
                                      self.bound_s + a.extra_wait_s)))
            lost = [m for m in result["mismatches"] if m["kind"] in ("lost", "stale_on_host")]
            if lost:
                failures.append("%d acknowledged registrations lost or rolled back on their "
                                "host" % len(lost))
            if judged and ok / len(judged) < EXEC_TARGET:
                result["exec_failure"] = (
                    "executes in the last %.0fs succeeded %.2f%% (%d/%d), want >= %.0f%%"
                    % (EXEC_WINDOW_S, 100.0 * ok / len(judged), ok, len(judged),
                       EXEC_TARGET * 100))
                failures.append(result["exec_failure"])
            elif len(judged) < a.min_execs:
                failures.append("only %d executes in the last %.0fs, too few to judge 99%% "
                                "(want >= %d)" % (len(judged), EXEC_WINDOW_S, a.min_execs))
        if self.problems:
            failures.append("%d process problems (restart failures, exit status, sanitizer)"
                            % len(self.problems))
        result["failures"] = failures
        result["ok"] = not failures
        result["events_tail"] = self.events[-60:]
        if result["ok"] and self.own_workdir and not a.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
            result["workdir"] = None


def grouped(mismatches, limit=60):
    """Mismatches grouped by resource: what it should be, then which nodes
    list what instead (the host's own view first: a host that lost an
    acknowledged registration explains the other nodes' misses)."""
    lines = []
    by_res = {}
    for m in mismatches:
        if m["kind"] == "query_failed":
            lines.append(Driver.format_mismatch(m))
            continue
        g = by_res.setdefault(m["resource"], dict(host=m["host"], expected=m["expected"],
                                                  rows={}))
        key = (m["kind"], m["found"] or "nothing")
        g["rows"].setdefault(key, []).append(m["node"])
    order = {"lost": 0, "stale_on_host": 0, "ghost_of_down_node": 2, "ghost_unregistered": 2}

    def rank(rid):
        return (min(order.get(k, 1) for k, _ in by_res[rid]["rows"]), rid)
    rids = sorted(by_res, key=rank)
    for rid in rids[:limit]:
        g = by_res[rid]
        lines.append("  %s (host %s): expected %s" % (rid, g["host"], g["expected"]))
        for (kind, found), nodes in sorted(g["rows"].items(), key=lambda kv: order.get(kv[0][0], 1)):
            lines.append("      %-18s on %s: found %s" % (kind, ",".join(sorted(nodes)), found))
    if len(rids) > limit:
        lines.append("  ... %d more resources" % (len(rids) - limit))
    return lines


def table(r):
    def f(v, fmt="%s"):
        return "-" if v is None else fmt % v
    rows = [
        ("nodes / stable / seconds / lease", "%s / %s / %s s / %s ms"
         % (r["nodes"], ",".join(r.get("stable", [])) or "-", r["seconds"], r["lease_ms"])),
        ("seed", r["seed"]),
        ("ops acknowledged", "%s (registered %s, updated %s, unregistered %s)"
         % (r["ops_acknowledged"], r["registered"], r["updated"], r["unregistered"])),
        ("ops not acknowledged", r["ops_failed"]),
        ("kills (kill -9) / restarts", "%s / %s (restart failures %s)"
         % (r["kills"], r["restarts"], r["restart_failures"])),
        ("link cuts", "%s (failed %s)" % (r["cuts"], r["cut_failures"])),
        ("down at end", ",".join(r.get("down_at_end") or []) or "-"),
        ("convergence time", "%s (bound %s s)" % (f(r.get("convergence_s"), "%.2f s"),
                                                  r["bound_s"])),
        ("executes (all / ok)", "%s / %s" % (r["execs"], r["execs_ok"])),
        ("exec success, last 20 s", "%s (%s/%s; %s more whose caller was killed)"
         % (f(r["exec_success_last20s"] if r["exec_success_last20s"] is None
              else 100.0 * r["exec_success_last20s"], "%.2f%%"),
            r["execs_last20s_ok"], r["execs_last20s"], r["execs_last20s_caller_killed"])),
        ("exec failures, last 20 s", ", ".join("%s %d" % kv for kv in
                                               sorted(r["exec_failure_causes_last20s"].items()))
         or "-"),
        ("node counters (live, summed)", ", ".join(
            "%s %s" % (k, (r.get("counters_live_sum") or {}).get(k, "-"))
            for k in ("unroutable", "hop_limit_drops", "exec_timeouts", "late_results",
                      "exec_retries", "exec_retransmits", "exec_repeats",
                      "leases_expired", "ghosts_removed", "links_dialed_auto"))),
        ("mismatches at the bound", len(r.get("mismatches") or [])),
        ("problems", len(r.get("problems") or [])),
        ("result", "PASS" if r["ok"] else "FAIL"),
    ]
    w = max(len(k) for k, _ in rows)
    lines = ["meshzero chaos"]
    lines += ["  %-*s  %s" % (w, k, v) for k, v in rows]
    return "\n".join(lines)


def report(r):
    """The table, and when the run failed, what went wrong, readably."""
    out = [table(r)]
    if r["ok"]:
        return "\n".join(out)
    out.append("FAILED:")
    out += ["  - " + x for x in r["failures"]]
    if r.get("setup_error"):
        out.append("setup error:\n" + r["setup_error"])
    if r.get("mismatches"):
        out.append("directory mismatches at the bound (%d; node: what it lists vs the truth):"
                   % len(r["mismatches"]))
        out += grouped(r["mismatches"])
    if r.get("mismatches_remaining"):
        out.append("still mismatched %.0f s later, at the end (%d):"
                   % (r.get("extra_wait_s", 0), len(r["mismatches_remaining"])))
        out += grouped(r["mismatches_remaining"], 30)
    if r.get("links_at_end"):
        out.append("links at the end: " + "; ".join("%s: %s" % (k, ",".join(v) if isinstance(v, list)
                                                             else v)
                                                 for k, v in sorted(r["links_at_end"].items())))
    if r.get("exec_failures_last20s"):
        out.append("failed executes in the last 20 s:")
        out += ["  +%.2fs..+%.2fs %s from %s (up %.1fs; %s): %s %s"
                % (e["t0"], e["t1"], e["resource"], e["caller"], e["caller_up_s"],
                   e.get("after") or "no change before", e["code"], e["message"])
                for e in r["exec_failures_last20s"][:30]]
    if r.get("problems"):
        out.append("process problems:")
        out += ["  - " + p.replace("\n", "\n    ") for p in r["problems"][:10]]
    out.append("graph (a>b: a dials b): " + " ".join(r.get("edges", [])))
    out.append("chaos log (tail):")
    out += ["  " + e for e in r.get("events_tail", [])]
    if r.get("workdir"):
        out.append("node logs: %s" % r["workdir"])
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="meshzero chaos test: kill -9, restarts, cut links, "
                                "register/update/unregister/exec, then check convergence.")
    p.add_argument("--nodes", type=int, default=12)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--bin", default=DEFAULT_BIN, help="the meshzero binary")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--lease-ms", type=int, default=3000)
    p.add_argument("--min-alive", type=int, default=None,
                   help="nodes kept alive at least (default 2/3 of --nodes)")
    p.add_argument("--stable", type=int, default=2, help="nodes never killed (host the execs)")
    p.add_argument("--resources-per-node", type=int, default=6)
    p.add_argument("--op-threads", type=int, default=2)
    p.add_argument("--exec-threads", type=int, default=4)
    p.add_argument("--op-pause", type=float, default=0.05, help="seconds between ops per thread")
    p.add_argument("--exec-pause", type=float, default=0.2,
                   help="seconds between executes per thread")
    p.add_argument("--exec-settle-ms", type=int, default=2000,
                   help="call only from nodes up for at least this long (a node that has "
                   "just (re)started is still joining)")
    p.add_argument("--kill-every", default="2,6", help="seconds between kills: MIN,MAX")
    p.add_argument("--cut-every", default="1.5,4", help="seconds between link cuts: MIN,MAX")
    p.add_argument("--down-for", default="1,5", help="seconds a killed node stays down: MIN,MAX")
    p.add_argument("--min-execs", type=int, default=100,
                   help="executes judged in the last 20 s at least")
    p.add_argument("--bound-s", type=float, default=None,
                   help="convergence bound (default lease + lease/3 + 0.25 + 5 + 1.25 s)")
    p.add_argument("--extra-wait-s", type=float, default=20.0,
                   help="after a missed bound, keep polling this long to see if it heals")
    p.add_argument("--workdir", default=None, help="node data and logs (default: a temp dir, "
                   "removed when the run passes)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("-v", "--verbose", action="store_true", help="log chaos events on stderr")
    a = p.parse_args(argv)
    if a.nodes < 3:
        p.error("--nodes must be at least 3")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    if a.min_alive is None:
        a.min_alive = max(a.stable + 1, -(-2 * a.nodes // 3))
    for name in ("kill_every", "cut_every", "down_for"):
        try:
            lo, hi = (float(x) for x in getattr(a, name).split(","))
        except ValueError:
            p.error("--%s wants MIN,MAX" % name.replace("_", "-"))
        setattr(a, name, (lo, max(lo, hi)))
    if not os.access(a.bin, os.X_OK):
        p.error("no meshzero binary at %s (--bin)" % a.bin)
    return a


def main(argv=None):
    a = parse_args(argv)
    drv = Driver(a)

    def on_signal(signum, frame):
        drv.stop.set()
        drv.kill_everything()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        r = drv.run()
    except BaseException:
        drv.stop.set()
        drv.kill_everything()
        raise
    if a.json:
        print(report(r), file=sys.stderr)
        print(json.dumps(r, sort_keys=True))
    else:
        print(report(r))
    if "setup_error" in r:
        return 2
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
