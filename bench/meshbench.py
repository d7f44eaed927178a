"""What the benchmarks that run real meshzero node processes share
(bench_converge.py, bench_memory.py, bench_scale.py): a minimal WebSocket
client, starting a node and reading its first line, a process's resident
set and CPU time from /proc, graph distances, percentiles. Python stdlib
only."""
import base64, json, os, socket, struct, subprocess
from collections import deque


class WS:
    """Minimal RFC 6455 client: text frames, masked, no extensions."""

    def __init__(self, url, timeout=10):
        assert url.startswith("ws://")
        hostport = url[5:].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET / HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = self.sock.recv(4096)
            if not d:
                raise ConnectionError("upgrade refused")
            buf += d
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))
        self.next_id = 1

    @staticmethod
    def frame(text, opcode=1):
        data = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        # XOR by int arithmetic: fast enough for small frames.
        m = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
        return hdr + mask + masked

    def send(self, text):
        self.sock.sendall(self.frame(text))

    def parse(self):
        """Complete messages in self.buf (text payloads); pings answered."""
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                return out
            op, n = b[0] & 0x0F, b[1] & 0x7F
            off = 2
            if n == 126:
                if len(b) < 4:
                    return out
                n, off = struct.unpack("!H", b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    return out
                n, off = struct.unpack("!Q", b[2:10])[0], 10
            if len(b) < off + n:
                return out
            payload, self.buf = b[off:off + n], b[off + n:]
            if op == 9:
                self.sock.sendall(self.frame(payload, 10))
            elif op == 8:
                raise ConnectionError("closed by node")
            elif op in (1, 2, 0):
                out.append(payload)

    def recv(self):
        while True:
            msgs = self.parse()
            if msgs:
                # Callers of recv() use it one message at a time.
                rest = msgs[1:]
                if rest:
                    self.pending = getattr(self, "pending", deque())
                    self.pending.extend(rest)
                return msgs[0]
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d

    def call(self, method, params=None):
        i = self.next_id
        self.next_id += 1
        self.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                              "params": params or {}}))
        while True:
            p = getattr(self, "pending", None)
            m = json.loads(p.popleft() if p else self.recv())
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def node_argv(meshzero, data, extra=()):
    """The command line of a bench node: peer listener and API on loopback,
    port 0, its own data directory."""
    return [meshzero, "node", "--listen", "ws://127.0.0.1:0",
            "--api", "ws://127.0.0.1:0", "--data", data, *extra]


def parse_ready(line):
    """(id, listen, api) from a node's first stdout line
    `node ID listen URL api URL`, or None."""
    w = line.split()
    if len(w) < 6 or w[0] != "node":
        return None
    return w[1], w[3], w[5]


def start_node(meshzero, data, extra=()):
    p = subprocess.Popen(node_argv(meshzero, data, extra),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = parse_ready(p.stdout.readline())
    if ready is None:
        p.kill()
        raise RuntimeError("node did not start")
    return (p, *ready)   # proc, id, listen, api


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def bfs(adj, s):
    dist = {s: 0}
    q = deque([s])
    while q:
        v = q.popleft()
        for w in adj[v]:
            if w not in dist:
                dist[w] = dist[v] + 1
                q.append(w)
    return dist


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def cpu_ticks(pid):
    """utime + stime of a process in clock ticks (/proc/PID/stat), or None
    once it is gone. The command name may hold spaces: fields are counted
    after its closing parenthesis."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(rest[11]) + int(rest[12])   # fields 14 and 15 of proc(5)


CLK_TCK = os.sysconf("SC_CLK_TCK")
