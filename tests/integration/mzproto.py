"""An independent meshzero/1 peer, written only from docs/PROTOCOL.md.

Canonical JSON (§3), Ed25519 signing of envelopes and records, and a small
asyncio peer that does the hello/welcome exchange (§6.1, §6.2).
"""
import asyncio
import datetime
import json
import math
import os
import time

import nacl.exceptions
import nacl.signing
import websockets

PROTOCOL = "meshzero/1"
ENVELOPE_DOMAIN = b"meshzero/1 envelope"
RECORD_DOMAIN = b"meshzero/1 record"
ENVELOPE_UNSIGNED = ("signature", "hops")
RECORD_UNSIGNED = ("signature", "location")

# ---- §3 canonical form -------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}


def _canon_string(s):
    out = ['"']
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _canon_real(x):
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinities are not JSON")
    for p in range(1, 18):
        s = "%.*g" % (p, x)
        if float(s) == x:
            break
    if "." not in s and "e" not in s:
        s += ".0"
    return s


def _canon(v, out):
    if v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif v is None:
        out.append("null")
    elif isinstance(v, int):
        if not -2**63 <= v < 2**63:
            raise ValueError("integer out of range: %d" % v)
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_canon_real(v))
    elif isinstance(v, str):
        out.append(_canon_string(v))
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _canon(x, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for i, k in enumerate(sorted(v, key=lambda k: k.encode("utf-8"))):
            if i:
                out.append(",")
            out.append(_canon_string(k))
            out.append(":")
            _canon(v[k], out)
        out.append("}")
    else:
        raise TypeError("not JSON: %r" % (v,))


def canonical(v):
    """The canonical form of a JSON value, as UTF-8 bytes."""
    out = []
    _canon(v, out)
    return "".join(out).encode("utf-8")


def loads_strict(text):
    """json.loads that rejects duplicate keys (§3.2)."""
    def pairs(ps):
        d = {}
        for k, v in ps:
            if k in d:
                raise ValueError("duplicate key %r" % k)
            d[k] = v
        return d
    return json.loads(text, object_pairs_hook=pairs)


# ---- signing -----------------------------------------------------------------

def signed_bytes(domain, obj, unsigned):
    return domain + b"\x00" + canonical({k: v for k, v in obj.items() if k not in unsigned})


class Key:
    def __init__(self, sk=None):
        self.sk = sk or nacl.signing.SigningKey.generate()
        self.id = self.sk.verify_key.encode().hex()

    def sign(self, domain, obj, unsigned):
        return self.sk.sign(signed_bytes(domain, obj, unsigned)).signature.hex()


def verify(node_id, domain, obj, unsigned):
    """True when obj["signature"] is node_id's signature of obj."""
    try:
        vk = nacl.signing.VerifyKey(bytes.fromhex(node_id))
        vk.verify(signed_bytes(domain, obj, unsigned), bytes.fromhex(obj["signature"]))
        return True
    except (ValueError, KeyError, nacl.exceptions.BadSignatureError):
        return False


def verify_envelope(env):
    return verify(env["sender"], ENVELOPE_DOMAIN, env, ENVELOPE_UNSIGNED)


def verify_record(rec):
    return verify(rec["node"], RECORD_DOMAIN, rec, RECORD_UNSIGNED)


def now_rfc3339():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def new_id():
    return os.urandom(16).hex()


def envelope(key, mtype, payload, recipient="*", sender=None, msg_id=None, hops=None):
    """A signed envelope (§4). sender defaults to key.id; a different sender
    makes a message signed by the wrong key."""
    env = {"id": msg_id or new_id(), "type": mtype, "sender": sender or key.id,
           "recipient": recipient, "timestamp": now_rfc3339(), "payload": payload}
    env["signature"] = key.sign(ENVELOPE_DOMAIN, env, ENVELOPE_UNSIGNED)
    if hops is not None:
        env["hops"] = hops
    return env


def record(key, resource_id, resource_type, capabilities=(), owner="", metadata=None,
           version=1):
    """A record hosted by key's node, signed per §7."""
    md = dict(metadata or {})
    md.setdefault("last_updated", now_rfc3339())
    rec = {"resource_id": resource_id, "resource_type": resource_type, "owner": owner,
           "capabilities": list(capabilities), "metadata": md, "node": key.id,
           "version": version}
    rec["signature"] = key.sign(RECORD_DOMAIN, rec, RECORD_UNSIGNED)
    return rec


# ---- a peer --------------------------------------------------------------------

class Closed(Exception):
    pass


class Peer:
    """One link to a node's listener, as a node with key `key`."""

    def __init__(self, key, listen=""):
        self.key = key
        self.listen = listen
        self.ws = None
        self.node_id = None
        self.node_hello = None
        self.sent_hello = None
        self.inbox = []          # messages received and not yet taken

    async def open(self, url, timeout=5.0):
        self.ws = await websockets.connect(url, open_timeout=timeout, close_timeout=2,
                                           max_size=None, ping_interval=None)
        return self

    async def close(self):
        if self.ws is not None:
            await self.ws.close()

    async def send(self, env):
        await self.ws.send(json.dumps(env, ensure_ascii=False) if isinstance(env, dict) else env)
        return env

    async def recv(self, timeout):
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed:
            raise Closed(self.ws.close_code, self.ws.close_reason)
        return loads_strict(text)

    async def expect(self, pred, timeout=5.0, what="a message"):
        """The first message (in order of arrival) for which pred holds;
        others are kept in the inbox."""
        for i, m in enumerate(self.inbox):
            if pred(m):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; got %r" % (what, self.inbox))
            try:
                m = await self.recv(left)
            except asyncio.TimeoutError:
                continue
            if pred(m):
                return m
            self.inbox.append(m)

    async def wait_closed(self, timeout=5.0):
        """Reads until the node closes the link; returns (code, reason)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the node did not close the link; got %r" % self.inbox)
            try:
                self.inbox.append(await self.recv(left))
            except asyncio.TimeoutError:
                continue
            except Closed as e:
                return e.args

    async def handshake(self, timeout=5.0, claim=None):
        """§6.1/§6.2: read the node's hello, send ours and our welcome, accept
        the node's welcome. claim: a node id to put in our sender fields
        instead of our own (an impersonation attempt)."""
        hello = await self.expect(lambda m: m["type"] == "hello", timeout, "the node's hello")
        self.node_hello = hello
        self.node_id = hello["sender"]
        assert verify_envelope(hello), "the node's hello signature does not verify"
        my_challenge = os.urandom(32).hex()
        self.sent_hello = await self.send(envelope(
            self.key, "hello", {"protocol": PROTOCOL, "listen": self.listen,
                                "challenge": my_challenge}, sender=claim))
        await self.send(envelope(self.key, "welcome",
                                 {"challenge": hello["payload"]["challenge"]},
                                 recipient=self.node_id, sender=claim))
        if claim is not None:
            return None
        welcome = await self.expect(lambda m: m["type"] in ("welcome", "error"), timeout,
                                    "the node's welcome")
        assert welcome["type"] == "welcome", welcome
        assert welcome["sender"] == self.node_id
        assert welcome["recipient"] == self.key.id
        assert welcome["payload"]["challenge"] == my_challenge
        assert verify_envelope(welcome), "the node's welcome signature does not verify"
        return welcome

    async def read_sync(self, timeout=5.0):
        """The node's sync chunks up to the one with more == false."""
        records, nodes = [], []
        while True:
            s = await self.expect(lambda m: m["type"] == "sync", timeout, "the node's sync")
            assert s["sender"] == self.node_id and verify_envelope(s)
            records += s["payload"]["records"]
            if not s["payload"].get("more"):
                nodes = s["payload"].get("nodes", [])
                return records, nodes

    async def send_sync(self, records=(), nodes=()):
        return await self.send(envelope(self.key, "sync", {"records": list(records),
                                                           "nodes": list(nodes),
                                                           "more": False}))
