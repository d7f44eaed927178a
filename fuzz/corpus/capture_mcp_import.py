#!/usr/bin/python3
"""Seeds for fuzz_mcp_import from real traffic: a real node imports the real
@modelcontextprotocol/server-everything (tests/mcp, installed by the MCP
integration tests) over stdio and over Streamable HTTP, through a recorder
that keeps every byte both ways; the CLI calls a few tools across it. Each
session becomes a harness script (fuzz_mcp_import.c): the server's bytes as
@@out (stdio) or @@resp/@@end sections (HTTP, with exact lengths), the
mesh calls as @@exec at the point the bridge sent them.

  /usr/bin/python3 fuzz/corpus/capture_mcp_import.py --bin build/meshzero

writes fuzz/corpus/mcp_import/cap-* (replacing them only)."""
import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
EVERYTHING = os.path.join(ROOT, "tests", "mcp", "node_modules", "@modelcontextprotocol",
                          "server-everything", "dist", "index.js")
OUT = os.path.join(HERE, "mcp_import")

CALLS = [("echo", {"message": "hello mesh"}), ("get-sum", {"a": 2, "b": 3}),
         ("get-tiny-image", {}), ("get-sum", {"a": "x"}), ("no-such-tool", {})]


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("capture: timed out waiting for " + what)


# ---- the recorder, run as the bridge's MCP server command -------------------

def tee_stdio(log_path, cmd):
    """Relays stdin/stdout to cmd, logging both directions in order."""
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lock = threading.Lock()
    log = open(log_path, "w")

    def rec(d, data):
        with lock:
            log.write(json.dumps({"d": d, "x": data.decode("latin-1")}) + "\n")
            log.flush()

    def up():
        for line in sys.stdin.buffer:
            rec("c", line)
            child.stdin.write(line)
            child.stdin.flush()
        child.stdin.close()

    threading.Thread(target=up, daemon=True).start()
    while True:
        data = os.read(child.stdout.fileno(), 65536)
        if not data:
            break
        rec("s", data)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    child.wait()


class HttpRecorder:
    """A TCP relay in front of the HTTP server: one connection per request
    (the bridge sends Connection: close), each request and every response
    chunk logged in order."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.events = []
        self.n = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def rec(self, *ev):
        with self.lock:
            self.events.append(ev)

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += c.recv(65536)
        with self.lock:
            self.n += 1
            n = self.n
            self.events.append(("req", n, head.split(b" ")[0].decode(), body.decode()))
        u = socket.create_connection(("127.0.0.1", self.upstream))
        u.sendall(head + b"\r\n\r\n" + body)
        while True:
            try:
                d = u.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            self.rec("resp", n, d)
            try:
                c.sendall(d)
            except OSError:
                break
        self.rec("end", n)
        u.close()
        c.close()


# ---- sessions ---------------------------------------------------------------

def node(binary, tmp, mcp):
    p = subprocess.Popen([binary, "node", "--listen", "ws://127.0.0.1:0", "--api",
                          "ws://127.0.0.1:0", "--data", os.path.join(tmp, "data"),
                          "--mcp", mcp], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    api = p.stdout.readline().split()[-1]
    return p, api


def drive(binary, api):
    def up():
        r = subprocess.run([binary, "bridge", "list", "--json", "--node", api],
                           capture_output=True, text=True)
        return r.returncode == 0 and '"up"' in r.stdout
    wait_for(up, 30, "the bridge to import the server")
    for tool, args in CALLS:
        subprocess.run([binary, "exec", "imp/" + tool, "call", json.dumps(args), "--node", api,
                        "--timeout", "10"], capture_output=True)


def stop(p):
    p.terminate()
    p.wait(20)


def script_stdio(log):
    out = []
    for ev in log:
        data = ev["x"].encode("latin-1")
        if ev["d"] == "c":
            m = json.loads(data)
            if m.get("method") == "tools/call":
                out.append(b"@@exec %s %s\n" % (m["params"]["name"].encode(),
                                                json.dumps(m["params"]["arguments"]).encode()))
        else:
            out.append(b"@@out #%d\n" % len(data) + data)
    return b"".join(out)


def script_http(events):
    out = [b"@@http\n"]
    open_ = []
    for ev in events:
        if ev[0] == "req":
            _, n, method, body = ev
            if method == "GET":
                out.append(b"@@tick\n")
            elif body:
                m = json.loads(body)
                if m.get("method") == "tools/call":
                    out.append(b"@@exec %s %s\n" % (m["params"]["name"].encode(),
                                                    json.dumps(m["params"]["arguments"]).encode()))
            open_.append(n)
        elif ev[0] == "resp":
            if ev[1] in open_:
                out.append(b"@@resp %d #%d\n" % (open_.index(ev[1]), len(ev[2])) + ev[2])
        elif ev[1] in open_:
            out.append(b"@@end %d #0\n" % open_.index(ev[1]))
            open_.remove(ev[1])
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "meshzero"))
    ap.add_argument("--tee", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.tee:
        return tee_stdio(a.tee[0], a.tee[1:])
    import tempfile
    if not os.path.exists(EVERYTHING):
        sys.exit("capture: %s missing (run the MCP integration tests once)" % EVERYTHING)
    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, "cap-*")):
        os.unlink(f)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "stdio.log")
        p, api = node(a.bin, tmp, "imp=/usr/bin/python3 %s --tee %s node %s stdio"
                      % (os.path.abspath(__file__), log, EVERYTHING))
        drive(a.bin, api)
        stop(p)
        with open(log) as f:
            events = [json.loads(line) for line in f]
        with open(os.path.join(OUT, "cap-stdio-session"), "wb") as f:
            f.write(script_stdio(events))
        # Only the start (initialize, tools/list): a short seed.
        first = [e for e in events[:6]]
        with open(os.path.join(OUT, "cap-stdio-start"), "wb") as f:
            f.write(script_stdio(first))

    with tempfile.TemporaryDirectory() as tmp:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        srv = subprocess.Popen(["node", EVERYTHING, "streamableHttp"], env=dict(os.environ,
                               PORT=str(port)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            def listening():
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    return True
                except OSError:
                    return False
            wait_for(listening, 30, "server-everything streamableHttp")
            rec = HttpRecorder(port)
            p, api = node(a.bin, tmp, "imp=http://127.0.0.1:%d/mcp" % rec.port)
            drive(a.bin, api)
            stop(p)
        finally:
            srv.terminate()
            srv.wait(20)
        with rec.lock:
            events = list(rec.events)
        with open(os.path.join(OUT, "cap-http-session"), "wb") as f:
            f.write(script_http(events))
    for f in sorted(glob.glob(os.path.join(OUT, "cap-*"))):
        print("%s: %d bytes" % (os.path.relpath(f, ROOT), os.path.getsize(f)))


if __name__ == "__main__":
    main()
