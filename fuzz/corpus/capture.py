#!/usr/bin/python3
"""Captures real meshzero traffic and writes the seed corpus of fuzz/ from it.

Starts two real nodes A and B (B dials A) with the built binary, links a
Python peer P to A (tests/integration/mzproto.py: hello, welcome, sealed
unicasts), and drives a short session through both local APIs: register,
serve, query, execute across the mesh, subscribe, publish, unregister, bad
input, shutdown. Every message P receives and sends and every API request and
answer is kept, then turned into the seed inputs of each harness:

  envelope   messages as they crossed the wire (real signatures and seals)
  canonical  the same texts, records and API messages
  time       the timestamps seen
  directory  put/query/remove scripts over the records seen
  peer       nodesim scripts: what A sent P, replayed to the node under test
             with A as its neighbour (@peer), B as @c, P as the node (@node),
             envelopes re-signed (S) or re-sealed (E) by the harness
  api        the JSON-RPC requests, one per file, and two sessions
  cli        PARAMS_JSON and --meta values from the commands used

Files written here are named cap-*; hand-written seeds (hand-*) are kept.
Usage: /usr/bin/python3 fuzz/corpus/capture.py [--bin build/meshzero]
"""
import argparse
import asyncio
import json
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import meshlib  # noqa: E402
import mzproto  # noqa: E402
import websockets  # noqa: E402

BROADCAST = {"announce", "alive", "bye", "event"}


class Api:
    """A JSON-RPC connection that keeps every text both ways."""

    def __init__(self, url, log):
        self.url = url
        self.log = log
        self.ws = None
        self.next_id = 0
        self.pushed = []          # requests the node pushed to us

    async def open(self):
        self.ws = await websockets.connect(self.url, open_timeout=5, close_timeout=2,
                                           max_size=None)
        return self

    async def send_text(self, text):
        self.log.append(("req", text))
        await self.ws.send(text)

    async def recv(self, timeout=5.0):
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        self.log.append(("ans", text))
        return json.loads(text)

    async def call(self, method, params=None, timeout=5.0):
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        await self.send_text(json.dumps(req))
        while True:
            m = await self.recv(timeout)
            if m.get("id") == self.next_id and "method" not in m:
                return m
            if m.get("method") == "execute":
                self.pushed.append(m)

    async def close(self):
        await self.ws.close()


class LoggingPeer(mzproto.Peer):
    """mzproto.Peer that keeps every text it receives and sends, raw, and
    opens sealed unicasts addressed to it when mzproto can."""

    def __init__(self, key, listen=""):
        super().__init__(key, listen)
        self.got = []             # (raw text, parsed message, sealed) in order
        self.sent = []

    async def send(self, env):
        text = json.dumps(env, ensure_ascii=False) if isinstance(env, dict) else env
        self.sent.append(text)
        await self.ws.send(text)
        return env

    async def recv(self, timeout):
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed:
            raise mzproto.Closed(self.ws.close_code, self.ws.close_reason)
        m = mzproto.loads_strict(text)
        sealed = hasattr(mzproto, "is_sealed") and mzproto.is_sealed(m)
        if sealed and m.get("recipient") == self.key.id:
            try:
                m["payload"] = mzproto.open_sealed(self.key, m)
            except Exception:          # noqa: BLE001 - kept sealed, skipped below
                m["_unopened"] = True
        self.got.append((text, m, sealed))
        return m

    async def drain_for(self, seconds):
        """Reads for `seconds` into the inbox; False if the link closed."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return True
            try:
                self.inbox.append(await self.recv(left))
            except asyncio.TimeoutError:
                return True
            except mzproto.Closed:
                return False


async def session(a, b, peer, api_log):
    key = peer.key
    await peer.open(a.listen)
    await peer.handshake()
    await peer.drain_for(0.5)     # sync or digest, alive: whatever follows the link

    api_a = await Api(a.api, api_log).open()
    api_b = await Api(b.api, api_log).open()
    api_serve = await Api(a.api, api_log).open()

    await api_a.call("status")
    await api_a.call("peers")
    await api_a.call("subscribe", {"topic": "resource.*"})
    await api_a.call("subscribe", {"topic": "*"})
    await api_b.call("register_resource", {
        "resource_id": "agent123", "resource_type": "agent", "owner": "user456",
        "capabilities": ["image_processing", "text_analysis"],
        "metadata": {"version": "1.0", "tags": ["vision", "nlp"], "rate": 2.5,
                     "limits": {"max_mb": 10, "formats": ["png", "jpg"]}}})
    await api_serve.call("register_resource", {
        "resource_id": "translator", "resource_type": "tool", "capabilities": ["translate"],
        "metadata": {"langs": ["en", "fr"]}, "handler": True, "methods": ["translate"]})

    # P hosts a resource of its own and announces it.
    rec = mzproto.record(key, "p-tool", "tool", capabilities=["echo"], owner="p",
                         metadata={"note": "from the python peer"})
    await peer.send(mzproto.envelope(key, "announce", {"op": "upsert", "record": rec}))
    await peer.send(mzproto.envelope(key, "alive", {"listen": "", "lease_ms": 15000,
                                                    "resources": 1}))
    await peer.drain_for(0.5)

    await api_a.call("query_resources", {"resource_type": "agent",
                                         "capabilities": ["image_processing"]})
    await api_a.call("query_resources", {"location": "remote", "limit": 10})
    await api_b.call("query_resources", {"owner": "user456"})

    # A query from P to B, two hops, sealed both ways.
    await peer.send(mzproto.sealed_envelope(key, "query", {"resource_type": "tool"}, b.id))
    await peer.expect(lambda m: m.get("type") == "query_result", 5.0, "query_result")

    # A executes P's resource: the execute arrives at P, which answers.
    call = asyncio.ensure_future(api_a.call("execute_remote", {
        "resource_id": "p-tool", "method": "echo", "params": {"text": "hi", "n": [1, 2.5]},
        "timeout_ms": 5000}))
    ex = await peer.expect(lambda m: m.get("type") == "execute", 5.0, "execute")
    await peer.send(mzproto.sealed_envelope(
        key, "execute_result", {"ref": ex["id"], "result": {"echo": ex["payload"]["params"]}},
        a.id))
    await call

    # B executes A's API-served resource: pushed to api_serve, answered.
    call = asyncio.ensure_future(api_b.call("execute_remote", {
        "resource_id": "translator", "method": "translate",
        "params": {"text": "bonjour", "to": "en"}, "timeout": 5}))
    push = await api_serve.recv(5.0)
    await api_serve.send_text(json.dumps({"jsonrpc": "2.0", "id": push["id"],
                                          "result": {"text": "hello"}}))
    await call
    call = asyncio.ensure_future(api_b.call("execute_remote", {
        "resource_id": "translator", "method": "translate", "params": {"text": "x"}}))
    push = await api_serve.recv(5.0)
    await api_serve.send_text(json.dumps({
        "jsonrpc": "2.0", "id": push["id"],
        "error": {"code": -32000, "message": "no such language",
                  "data": {"code": "bad_request"}}}))
    await call
    await api_b.call("execute_remote", {"resource_id": "nope", "method": "m"})
    await api_b.call("execute_remote", {"resource_id": "translator", "method": "other"})

    await api_b.call("publish", {"topic": "demo.hello", "data": {"from": "B", "n": 1}})
    await peer.send(mzproto.envelope(key, "event", {"topic": "p.news",
                                                   "data": [True, None, "x"]}))
    await api_a.call("unsubscribe", {"subscription": 1})
    await api_a.call("connect_to_peer", {"url": b.listen})

    # Bad input, both kinds.
    await peer.send('{"id":"bad1","type":"query"}')
    await peer.send(mzproto.envelope(key, "mystery", {}, recipient=a.id))
    for text in ['{"jsonrpc":"2.0","id":7,"method":"nope"}', '{"jsonrpc":"2.0","id":8}',
                 '[1,2', '{"jsonrpc":"2.0","id":9,"method":"status","params":[1]}']:
        await api_a.send_text(text)
        await api_a.recv()

    await api_b.call("unregister_resource", {"resource_id": "agent123"})
    await peer.drain_for(0.5)
    for api in (api_a, api_b, api_serve):
        await api.close()
    b.terminate()
    await peer.drain_for(1.0)
    await peer.close()


# ---- turning traffic into seeds ------------------------------------------------

def write(name, fname, data):
    d = HERE / name
    d.mkdir(exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    (d / fname).write_bytes(data)


def compact(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def mapped(v, ids):
    """v with node ids replaced by placeholders, signatures of records and
    tombstones set to "@sign" (the harness re-signs them)."""
    if isinstance(v, dict):
        out = {k: mapped(x, ids) for k, x in v.items()}
        if "signature" in out and ("resource_id" in out or "deleted" in out):
            out["signature"] = "@sign"
        return out
    if isinstance(v, list):
        return [mapped(x, ids) for x in v]
    if isinstance(v, str) and v in ids:
        return ids[v]
    return v


def script_line(m, sealed, ids):
    """An S (signed) or E (sealed) line replaying message m at the node."""
    env = mapped(dict(m), ids)
    env.pop("signature", None)
    env["timestamp"] = "@now"
    if not env.get("hops"):
        env.pop("hops", None)
    return ("E" if sealed else "S") + compact(env)


def timestamps(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            if k in ("timestamp", "last_updated", "since") and isinstance(x, str):
                out.add(x)
            timestamps(x, out)
    elif isinstance(v, list):
        for x in v:
            timestamps(x, out)


def records_in(v, out):
    if isinstance(v, dict):
        if "resource_id" in v and "resource_type" in v:
            out.append(v)
        for x in v.values():
            records_in(x, out)
    elif isinstance(v, list):
        for x in v:
            records_in(x, out)


def emit(a, b, peer, api_log):
    received = peer.got
    sent = peer.sent
    for name in ("envelope", "canonical", "time", "directory", "peer", "api", "cli"):
        d = HERE / name
        d.mkdir(exist_ok=True)
        for f in d.glob("cap-*"):
            f.unlink()

    # envelope: one of each (type, direction, sealed) as it was on the wire.
    seen = set()
    for raw, m, sealed in received:
        k = ("in", m.get("type"), sealed, m.get("sender"))
        if k in seen:
            continue
        seen.add(k)
        write("envelope", "cap-%02d-%s%s" % (len(seen), m.get("type"), "-sealed" if sealed else ""),
              raw)
    for i, text in enumerate(sent):
        try:
            t = json.loads(text).get("type", "raw")
        except ValueError:
            t = "raw"
        write("envelope", "cap-p%02d-%s" % (i, t), text)

    # canonical: a spread of everything (messages, records, API texts).
    texts = [raw for raw, m, sealed in received[:12]] + [t for d, t in api_log[::3]]
    recs = []
    for raw, m, sealed in received:
        records_in(m, recs)
    texts += [compact(r) for r in recs[:6]]
    for i, t in enumerate(texts[:30]):
        write("canonical", "cap-%02d" % i, t)

    # time
    ts = set()
    for raw, m, sealed in received:
        timestamps(m, ts)
    for i, t in enumerate(sorted(ts)[:8]):
        write("time", "cap-%02d" % i, t)

    # directory: puts of the records seen, then queries and removals.
    uniq = {}
    for r in recs:
        r = {k: v for k, v in r.items() if k != "location"}
        uniq[(r["resource_id"], r.get("version"))] = r
    recs = list(uniq.values())
    for i, r in enumerate(recs):
        write("directory", "cap-put-%02d" % i, "P" + compact(r))
    if recs:
        lines = ["P" + compact(r) for r in recs]
        lines += ["L" + compact(recs[0])]
        r0 = recs[0]
        lines += ["Q" + compact({"resource_type": r0["resource_type"],
                                 "capabilities": r0["capabilities"][:1]}),
                  "Q" + compact({"owner": r0["owner"], "location": "remote", "limit": 1}),
                  "Q" + compact({"node": r0["node"]}),
                  "D%s %s" % (r0["resource_id"], r0["node"]),
                  "N%s" % recs[-1]["node"],
                  "Q{}"]
        write("directory", "cap-session", "\n".join(lines) + "\n")

    # peer: what A sent P, replayed to the node with A as its neighbour.
    ids = {a.id: "@peer", b.id: "@c", peer.key.id: "@node"}
    usable = [(m, sealed) for raw, m, sealed in received
              if m.get("type") not in ("hello", "welcome") and "_unopened" not in m]
    picked = {}
    for m, sealed in usable:
        picked.setdefault(m.get("type"), (m, sealed))
    for t, (m, sealed) in picked.items():
        write("peer", "cap-%s" % t, script_line(m, sealed, ids) + "\n")
    replay = [script_line(m, sealed, ids) for m, sealed in usable if m.get("type") != "error"]
    write("peer", "cap-session", "\n".join(replay[:40]) + "\n")
    # raw form of what P sent (its own keys: fail the signature check, reach parsing)
    for i, text in enumerate(sent[:6]):
        write("peer", "cap-raw-%02d" % i, "R" + text + "\n")

    # api: every distinct request, and the sessions as scripts.
    reqs = []
    for d, t in api_log:
        if d == "req" and t not in reqs:
            reqs.append(t)
    for i, t in enumerate(reqs):
        write("api", "cap-%02d" % i, t)
    write("api", "cap-session", "\n".join(reqs) + "\n")

    # cli
    write("cli", "cap-exec", '{"image_url":"https://example.com/image.jpg"}\nversion=1.0\n'
          'tags=["vision","nlp"]\nlimits={"max_mb":10}\nenabled=true\nnote=null\nowner=user456\n')


async def amain(binary):
    os.environ["MESHZERO_BIN"] = binary
    meshlib.BIN = binary
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mzcapture."))
    mesh = meshlib.Mesh(tmp)
    api_log = []
    try:
        a = mesh.node("A")
        b = mesh.node("B", peers=[a])
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: meshlib.wait_linked([(a, b)]))
        peer = LoggingPeer(mzproto.Key(), listen="")
        await session(a, b, peer, api_log)
        emit(a, b, peer, api_log)
        print("captured %d peer messages in, %d out, %d API texts"
              % (len(peer.got), len(peer.sent), len(api_log)))
    finally:
        problems = mesh.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "build" / "meshzero"))
    args = ap.parse_args()
    asyncio.run(amain(os.path.abspath(args.bin)))


if __name__ == "__main__":
    main()
