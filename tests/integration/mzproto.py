"""An independent meshzero/1 peer, written only from docs/PROTOCOL.md.

Canonical JSON (§3); Ed25519 signatures of envelopes, owner-key records and
tombstones (§3, §7); sealed unicasts (§5.1: X25519 from the Ed25519
identities, crypto_box_beforenm, XChaCha20-Poly1305-IETF with the routing
header as associated data); the network-key proof of §5.3; and a small
asyncio peer that does the hello/welcome exchange (§6.1, §6.2), the link-up
digest / fetch / sync exchange (§6.3), and opens the sealed messages
addressed to it.
"""
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import math
import os
import re
import struct
import time

import nacl.bindings as sodium
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing
import websockets

PROTOCOL = "meshzero/1"
ENVELOPE_DOMAIN = b"meshzero/1 envelope"
RECORD_DOMAIN = b"meshzero/1 record"
TOMBSTONE_DOMAIN = b"meshzero/1 tombstone"
ENVELOPE_UNSIGNED = ("signature", "hops")
RECORD_UNSIGNED = ("signature", "location")
TOMBSTONE_UNSIGNED = ("signature",)
SEAL_HEADER_EXCLUDED = ("payload", "signature", "hops")   # §5.1 associated data
NETWORK_LABEL = b"meshzero/1 network"                      # §5.3
REPLAY_WINDOW_S = 60                                       # §5.2

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


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---- keys and signatures (§2, §3) ------------------------------------------------

def signed_bytes(domain, obj, unsigned):
    return domain + b"\x00" + canonical({k: v for k, v in obj.items() if k not in unsigned})


class Key:
    """An Ed25519 identity (a node's, or an owner key)."""

    def __init__(self, sk=None):
        self.sk = sk or nacl.signing.SigningKey.generate()
        self.id = self.sk.verify_key.encode().hex()
        self._xsk = None
        self._shared = {}

    @classmethod
    def from_file(cls, path):
        """A key file as `meshzero keygen` / a data directory's identity.key
        write it: the 32-byte seed in hex."""
        with open(path) as f:
            return cls(nacl.signing.SigningKey(bytes.fromhex(f.read().strip())))

    def sign(self, domain, obj, unsigned):
        return self.sk.sign(signed_bytes(domain, obj, unsigned)).signature.hex()

    def shared_key(self, other_id):
        """§5.1: crypto_box_beforenm(X25519(other), X25519(us))."""
        k = self._shared.get(other_id)
        if k is None:
            if self._xsk is None:
                self._xsk = sodium.crypto_sign_ed25519_sk_to_curve25519(
                    self.sk._signing_key)
            xpk = sodium.crypto_sign_ed25519_pk_to_curve25519(bytes.fromhex(other_id))
            k = sodium.crypto_box_beforenm(xpk, self._xsk)
            self._shared[other_id] = k
        return k


def verify(key_id, domain, obj, unsigned, field="signature"):
    """True when obj[field] is key_id's signature of obj."""
    try:
        vk = nacl.signing.VerifyKey(bytes.fromhex(key_id))
        vk.verify(signed_bytes(domain, obj, unsigned), bytes.fromhex(obj[field]))
        return True
    except (ValueError, KeyError, TypeError, nacl.exceptions.BadSignatureError,
            nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False


def verify_envelope(env):
    return verify(env["sender"], ENVELOPE_DOMAIN, env, ENVELOPE_UNSIGNED)


def authentic(m):
    """A received message is its sender's: a frame's seal or signature was
    checked when it was decoded (§10.4); an envelope's signature here."""
    return getattr(m, "frame", None) is not None or verify_envelope(m)


RECORD_FIELDS = {"resource_id", "resource_type", "owner", "capabilities", "metadata", "node",
                 "version", "owner_key", "signature", "location"}


def verify_record(rec):
    """§7: the record's signature checks against its own owner_key, and it
    has no member outside the table."""
    if not isinstance(rec, dict) or set(rec) - RECORD_FIELDS:
        return False
    return verify(rec.get("owner_key", ""), RECORD_DOMAIN, rec, RECORD_UNSIGNED)


def verify_tombstone(t):
    return verify(t.get("owner_key", ""), TOMBSTONE_DOMAIN, t, TOMBSTONE_UNSIGNED)


# ---- envelopes (§4) ------------------------------------------------------------

def rfc3339(t):
    t = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def parse_rfc3339(text):
    """Seconds since the epoch of an RFC 3339 date-time (§4: Z or +hh:mm)."""
    t = text.replace("z", "Z")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(t).timestamp()


def fresh(env, window_s=REPLAY_WINDOW_S):
    """True when env's timestamp is within the replay window of our clock (§5.2)."""
    try:
        return abs(parse_rfc3339(env["timestamp"]) - time.time()) <= window_s
    except (KeyError, ValueError, TypeError):
        return False


def now_rfc3339(offset_s=0.0):
    """Now (plus offset_s seconds) as an RFC 3339 UTC timestamp."""
    return rfc3339(time.time() + offset_s)


def new_id():
    return os.urandom(16).hex()


def _header(key, mtype, recipient, sender, msg_id, timestamp):
    return {"id": msg_id or new_id(), "type": mtype, "sender": sender or key.id,
            "recipient": recipient, "timestamp": timestamp or now_rfc3339()}


def envelope(key, mtype, payload, recipient="*", sender=None, msg_id=None, hops=None,
             timestamp=None):
    """A signed envelope (§4). sender defaults to key.id; a different sender
    makes a message signed by the wrong key. timestamp: an RFC 3339 string
    (default now)."""
    env = _header(key, mtype, recipient, sender, msg_id, timestamp)
    env["payload"] = payload
    env["signature"] = key.sign(ENVELOPE_DOMAIN, env, ENVELOPE_UNSIGNED)
    if hops is not None:
        env["hops"] = hops
    return env


# ---- sealed unicasts (§5.1) ------------------------------------------------------

class SealError(Exception):
    pass


def seal_ad(env):
    """The associated data: the canonical envelope without payload, signature
    and hops."""
    return canonical({k: v for k, v in env.items() if k not in SEAL_HEADER_EXCLUDED})


def is_sealed(env):
    """The §5.1 shape: no signature, payload exactly {"sealed": string}."""
    pl = env.get("payload")
    return ("signature" not in env and isinstance(pl, dict) and list(pl) == ["sealed"]
            and isinstance(pl["sealed"], str))


def seal_payload(shared, env, payload, nonce=None):
    """The sealed form of payload for the header of env."""
    nonce = nonce or os.urandom(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(canonical(payload), seal_ad(env),
                                                           nonce, shared)
    return {"sealed": b64url(nonce + ct)}


def sealed_envelope(key, mtype, payload, recipient, sender=None, msg_id=None, hops=None,
                    timestamp=None, seal_for=None):
    """A unicast sealed by key for recipient (§5.1). seal_for: compute the
    key for another node than recipient (a message sealed for the wrong
    node)."""
    env = _header(key, mtype, recipient, sender, msg_id, timestamp)
    env["payload"] = seal_payload(key.shared_key(seal_for or recipient), env, payload)
    if hops is not None:
        env["hops"] = hops
    return env


def open_sealed(key, env):
    """The real payload of a sealed envelope addressed to key (from the
    envelope's sender). SealError when it does not open."""
    if not is_sealed(env):
        raise SealError("not a sealed envelope")
    try:
        blob = b64url_decode(env["payload"]["sealed"])
    except ValueError as e:
        raise SealError("sealed is not base64url: %s" % e)
    nb = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
    if len(blob) < nb + sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES:
        raise SealError("sealed payload too short")
    try:
        plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[nb:], seal_ad(env), blob[:nb], key.shared_key(env["sender"]))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise SealError("sealed payload fails authentication: %s" % e)
    payload = loads_strict(plain.decode("utf-8"))
    if not isinstance(payload, dict):
        raise SealError("sealed payload is not an object")
    if canonical(payload) != plain:
        raise SealError("sealed plaintext is not in canonical form")
    return payload


def flip_sealed_byte(env, index=-1):
    """A copy of a sealed envelope with one bit of the ciphertext flipped
    (what a dishonest relay might do)."""
    blob = bytearray(b64url_decode(env["payload"]["sealed"]))
    nb = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
    i = index if index >= 0 else nb + (len(blob) - nb) // 2
    blob[i] ^= 0x01
    out = dict(env)
    out["payload"] = {"sealed": b64url(bytes(blob))}
    return out


# ---- records and tombstones (§7) ----------------------------------------------------

def sign_record(owner_key, rec):
    rec["signature"] = owner_key.sign(RECORD_DOMAIN, rec, RECORD_UNSIGNED)
    return rec


def record(key, resource_id, resource_type, capabilities=(), owner="", metadata=None,
           version=1, node=None, owner_key=None):
    """A record signed per §7 by `key`, the owner key; hosted by `node`
    (default key.id: the host's own key). owner_key: the id written in the
    record (default key.id; another value makes a forgery)."""
    md = dict(metadata or {})
    md.setdefault("last_updated", now_rfc3339())
    rec = {"resource_id": resource_id, "resource_type": resource_type, "owner": owner,
           "capabilities": list(capabilities), "metadata": md, "node": node or key.id,
           "version": version, "owner_key": owner_key or key.id}
    return sign_record(key, rec)


def tombstone(key, resource_id, version, node=None, owner_key=None):
    """A removal (§7) signed by the owner key `key`."""
    t = {"resource_id": resource_id, "node": node or key.id, "owner_key": owner_key or key.id,
         "version": version, "deleted": True}
    t["signature"] = key.sign(TOMBSTONE_DOMAIN, t, TOMBSTONE_UNSIGNED)
    return t


def record_hash(rec):
    """§6.3: the first 8 bytes, big-endian, of BLAKE2b-64(resource_id NUL
    version NUL owner_key)."""
    data = (rec["resource_id"].encode("utf-8") + b"\x00" + str(rec["version"]).encode("ascii")
            + b"\x00" + rec["owner_key"].encode("ascii"))
    return int.from_bytes(nacl.hash.blake2b(data, digest_size=8,
                                            encoder=nacl.encoding.RawEncoder)[:8], "big")


def digest(records):
    """§6.3: {"count", "hash"} of a set of records."""
    h = 0
    n = 0
    for r in records:
        h ^= record_hash(r)
        n += 1
    return {"count": n, "hash": "%016x" % h}


# ---- network key (§5.3) --------------------------------------------------------------

def alive(listen, lease_ms, records=(), links=()):
    """An `alive` payload (PROTOCOL.md 6.5): links are the node ids of the
    sender's direct links, which receivers show in `members`."""
    return {"listen": listen, "lease_ms": lease_ms, "digest": digest(list(records)),
            "links": list(links)}


TRACEPARENT_RE = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id(traceparent):
    """The trace id of a valid version-00 traceparent (PROTOCOL.md 6.10), else None."""
    if not isinstance(traceparent, str) or not TRACEPARENT_RE.match(traceparent):
        return None
    return traceparent.split("-")[1]


def network_key(secret):
    """K = BLAKE2b-256(S, key = "meshzero/1 network"); S: the file's bytes, trimmed."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return nacl.hash.blake2b(secret.strip(), digest_size=32, key=NETWORK_LABEL,
                             encoder=nacl.encoding.RawEncoder)


def network_proof(secret, challenge, sender):
    """hex(HMAC-SHA256(K, "meshzero/1 network" || challenge || sender))."""
    msg = NETWORK_LABEL + challenge.encode("ascii") + sender.encode("ascii")
    return hmac.new(network_key(secret), msg, hashlib.sha256).hexdigest()


# ---- a peer --------------------------------------------------------------------

class Closed(Exception):
    pass


class Msg(dict):
    """A received message. For a sealed unicast addressed to us, the payload
    is the opened one; .sealed says it arrived sealed, .raw is the text as
    received, .seal_error why it did not open (payload left sealed). A v2
    frame (§10) arrives as the envelope it maps to (§10.6, §10.8): .frame
    is its header dict, .raw its bytes."""
    raw = None
    sealed = False
    seal_error = None
    frame = None


class Peer:
    """One link to a node's listener, as a node with key `key`."""

    def __init__(self, key, listen="", wire2=False):
        self.key = key
        self.listen = listen
        self.wire2 = wire2       # offer wire v2 in our hello (§10.7)
        self.v2 = False          # the link speaks v2 (both offered it)
        self.ws = None
        self.node_id = None
        self.node_hello = None
        self.node_welcome = None
        self.sent_hello = None
        self.node_digest = None
        self.inbox = []          # messages received and not yet taken
        self.log = []            # every message received, in order (Msg)

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

    def _decode(self, text):
        if isinstance(text, bytes):
            return frame_to_msg(self.key, text)
        m = Msg(loads_strict(text))
        m.raw = text
        if is_sealed(m) and m.get("recipient") == self.key.id:
            m.sealed = True
            try:
                m["payload"] = open_sealed(self.key, m)
            except (SealError, ValueError) as e:
                m.seal_error = str(e)
        return m

    async def recv(self, timeout):
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed:
            raise Closed(self.ws.close_code, self.ws.close_reason)
        m = self._decode(text)
        self.log.append(m)
        return m

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

    async def drain(self, timeout):
        """Reads for `timeout` seconds into the inbox; returns False if the
        node closed the link meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                self.inbox.append(await self.recv(left))
            except asyncio.TimeoutError:
                return True
            except Closed:
                return False

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

    async def handshake(self, timeout=5.0, claim=None, network=None, proof=None,
                        expect_welcome=True):
        """§6.1/§6.2: read the node's hello, send ours and our welcome, accept
        the node's welcome. claim: a node id to put in our sender fields
        instead of our own (an impersonation attempt). network: the mesh
        secret (§5.3): our welcome carries its proof, and the node's welcome
        must carry a valid one. proof: a network value to send as is."""
        hello = await self.expect(lambda m: m["type"] == "hello", timeout, "the node's hello")
        self.node_hello = hello
        self.node_id = hello["sender"]
        assert verify_envelope(hello), "the node's hello signature does not verify"
        assert len(hello["timestamp"]) <= 40 and fresh(hello), hello["timestamp"]
        assert hello["recipient"] == "*" and hello["payload"]["protocol"] == PROTOCOL, hello
        my_challenge = os.urandom(32).hex()
        hpl = {"protocol": PROTOCOL, "listen": self.listen, "challenge": my_challenge}
        if self.wire2:
            hpl["wire"] = [1, 2]
        self.sent_hello = await self.send(envelope(self.key, "hello", hpl, sender=claim))
        wpl = {"challenge": hello["payload"]["challenge"]}
        if self.wire2 and 2 in hello["payload"].get("wire", []):
            wpl["wire"] = 2
        if network is not None:
            wpl["network"] = network_proof(network, hello["payload"]["challenge"],
                                           claim or self.key.id)
        if proof is not None:
            wpl["network"] = proof
        await self.send(envelope(self.key, "welcome", wpl, recipient=self.node_id,
                                 sender=claim))
        if claim is not None or not expect_welcome:
            return None
        welcome = await self.expect(lambda m: m["type"] in ("welcome", "error"), timeout,
                                    "the node's welcome")
        self.node_welcome = welcome
        assert welcome["type"] == "welcome", welcome
        assert welcome["sender"] == self.node_id
        assert welcome["recipient"] == self.key.id
        assert welcome["payload"]["challenge"] == my_challenge
        assert verify_envelope(welcome), "the node's welcome signature does not verify"
        assert fresh(welcome), welcome["timestamp"]
        if network is not None:
            assert welcome["payload"].get("network") == network_proof(
                network, my_challenge, self.node_id), "the node's network proof is wrong"
        self.v2 = self.wire2 and welcome["payload"].get("wire") == 2
        return welcome

    async def read_sync(self, timeout=5.0, sender=None):
        """Sync chunks from `sender` (default the node) up to the one with
        more == false; returns (records, the last chunk)."""
        sender = sender or self.node_id
        records = []
        while True:
            s = await self.expect(lambda m: m["type"] == "sync" and m["sender"] == sender,
                                  timeout, "a sync from %s" % sender[:12])
            assert s.sealed or authentic(s), s
            records += s["payload"]["records"]
            if not s["payload"].get("more"):
                return records, s

    async def send_sync(self, records=(), more=False, complete_for=None, recipient=None):
        """A link-level sync (§6.3) with these records (sent as they are:
        nothing stops a peer from sending one unasked)."""
        pl = {"records": list(records), "more": more}
        if complete_for is not None:
            pl["complete_for"] = list(complete_for)
        return await self.send(envelope(self.key, "sync", pl,
                                        recipient=recipient or self.node_id))

    async def send_digest(self, records=(), hosts=None):
        """Our link-up digest (§6.3): ourselves at hops 0 and every host of
        `records` at hops 1 (or `hosts`: id -> hops), each with our digest of
        its records among `records`."""
        by_host = {}
        for r in records:
            by_host.setdefault(r["node"], []).append(r)
        hops = {self.key.id: 0}
        for h in by_host:
            hops.setdefault(h, 1)
        hops.update(hosts or {})
        nodes = [dict(digest(by_host.get(h, ())), id=h, listen=self.listen if h == self.key.id
                      else "", hops=n) for h, n in hops.items()]
        return await self.send(envelope(self.key, "digest", {"nodes": nodes},
                                        recipient=self.node_id))

    async def link_up(self, offer=(), fetch=True, timeout=5.0):
        """The §6.3 exchange after the handshake: reads the node's digest,
        sends ours for the records we `offer`, fetches the records of every
        node the node lists with count > 0 (fetch=True), and answers the
        node's fetch of our offer with a sync. Returns (records got, the
        node's digest entries)."""
        d = await self.expect(lambda m: m["type"] == "digest", timeout, "the node's digest")
        assert d["sender"] == self.node_id and authentic(d), d
        self.node_digest = d["payload"]["nodes"]
        await self.send_digest(offer)
        records = []
        want = [n["id"] for n in self.node_digest if n.get("count", 0) > 0]
        if fetch and want:
            await self.send(envelope(self.key, "fetch", {"nodes": want},
                                     recipient=self.node_id))
            records, _ = await self.read_sync(timeout)
        if offer:
            f = await self.expect(lambda m: m["type"] == "fetch" and m["sender"] == self.node_id,
                                  timeout, "the node's fetch of our offer")
            asked = set(f["payload"]["nodes"])
            await self.send_sync([r for r in offer if r["node"] in asked])
        return records, self.node_digest

    async def request(self, mtype, payload, recipient=None, sealed=True, timeout=5.0):
        """Sends a unicast (sealed by default) and returns (sent envelope,
        the answer: a message whose payload ref is the sent id)."""
        to = recipient or self.node_id
        env = (sealed_envelope(self.key, mtype, payload, to) if sealed
               else envelope(self.key, mtype, payload, recipient=to))
        await self.send(env)
        res = await self.expect(lambda m: isinstance(m.get("payload"), dict)
                                and m["payload"].get("ref") == env["id"], timeout,
                                "the answer to %s %s" % (mtype, env["id"]))
        return env, res

    async def request_frame(self, mtype, payload, recipient=None, timeout=5.0):
        """§10.8: a unicast as a sealed v2 frame; returns (its header dict,
        the answer: a message whose payload ref is the frame's message id)."""
        to = recipient or self.node_id
        h = frame_header(mtype, bytes.fromhex(self.key.id), bytes.fromhex(to))
        buf = seal_frame(h, json.dumps(payload).encode(), self.key.shared_key(to))
        await self.ws.send(buf)
        ref = h["id"].hex()
        res = await self.expect(lambda m: isinstance(m.get("payload"), dict)
                                and m["payload"].get("ref") == ref, timeout,
                                "the answer to frame %s %s" % (mtype, ref))
        return h, res


# ---- wire v2 frames (PROTOCOL.md §10), written from the document ----------

FRAME_MAGIC = b"mz"
FRAME_VERSION = 2
FRAME_HDR_LEN = 144
FRAME_MAX_HDR = 256
FRAME_MAX = 1024 * 1024
FRAME_SIG_DOMAIN = b"meshzero/2 frame\x00"
F_SEALED, F_SIGNED, F_HEAD, F_END = 0x0001, 0x0002, 0x0004, 0x0008
LINK, BROADCAST, UNICAST, STREAM = "link", "broadcast", "unicast", "stream"
FRAME_TYPES = {   # code: (name, classes), §10.3
    0x01: ("hello", {LINK}), 0x02: ("welcome", {LINK}), 0x03: ("error", {LINK, UNICAST}),
    0x04: ("digest", {LINK}), 0x05: ("fetch", {LINK, UNICAST}), 0x06: ("sync", {LINK, UNICAST}),
    0x10: ("announce", {BROADCAST}), 0x11: ("alive", {BROADCAST}), 0x12: ("bye", {BROADCAST}),
    0x13: ("event", {BROADCAST}), 0x20: ("query", {UNICAST}), 0x21: ("query_result", {UNICAST}),
    0x22: ("execute", {UNICAST}), 0x23: ("execute_result", {UNICAST}),
    0x30: ("data", {STREAM}), 0x31: ("window_update", {STREAM}), 0x32: ("reset", {STREAM}),
    0x33: ("notify", {STREAM}),
}
FRAME_CODE = {name: code for code, (name, _) in FRAME_TYPES.items()}
_HDR = struct.Struct(">2sBBHHBBHIIIQq16s32s32s24s")   # the 144 bytes of §10.1


class FrameError(Exception):
    """A frame refused by §10.3; .limit is True for the ELIMIT refusals."""

    def __init__(self, msg, limit=False):
        super().__init__(msg)
        self.limit = limit


def frame_header(mtype, src, dst=None, flags=0, hop_limit=None, hops=0, body_len=0, stream=0,
                 aux=0, time_ms=None, msg_id=None, nonce=None):
    """A header as a dict; src/dst are 32-byte node ids (dst None: all zero)."""
    code = FRAME_CODE[mtype] if isinstance(mtype, str) else mtype
    if hop_limit is None:
        hop_limit = 1 if FRAME_TYPES.get(code, ("", set()))[1] == {LINK} else 16
    return {"type": code, "hdr_len": FRAME_HDR_LEN, "flags": flags, "hop_limit": hop_limit,
            "hops": hops, "body_len": body_len, "stream": stream, "aux": aux,
            "time_ms": int(time.time() * 1000) if time_ms is None else time_ms,
            "id": msg_id or os.urandom(16), "src": src, "dst": dst or bytes(32),
            "nonce": nonce or bytes(24)}


def encode_frame_header(h):
    return _HDR.pack(FRAME_MAGIC, FRAME_VERSION, h["type"], FRAME_HDR_LEN, h["flags"],
                     h["hop_limit"], h["hops"], 0, h["body_len"], h["stream"], 0, h["aux"],
                     h["time_ms"], h["id"], h["src"], h["dst"], h["nonce"])


def decode_frame(buf, max_frame=FRAME_MAX):
    """Header dict of the frame in buf, checked as §10.3 says; FrameError otherwise."""
    if len(buf) < 6:
        raise FrameError("truncated")
    if buf[0:2] != FRAME_MAGIC:
        raise FrameError("not a meshzero frame")
    if buf[2] != FRAME_VERSION:
        raise FrameError("unknown version %d" % buf[2])
    hl = struct.unpack_from(">H", buf, 4)[0]
    if hl > FRAME_MAX_HDR:
        raise FrameError("oversized header", limit=True)
    if hl < FRAME_HDR_LEN or hl % 8:
        raise FrameError("bad header length %d" % hl)
    if len(buf) < hl:
        raise FrameError("truncated")
    (_, _, code, _, flags, limit, hops, r1, blen, stream, r2, aux, tms, mid, src, dst,
     nonce) = _HDR.unpack_from(buf)
    if r1 or r2:
        raise FrameError("reserved bytes")
    if code not in FRAME_TYPES:
        raise FrameError("unknown type 0x%02x" % code)
    name, cls = FRAME_TYPES[code]
    if hl + blen > max_frame:
        raise FrameError("over the frame limit", limit=True)
    if hl + blen != len(buf):
        raise FrameError("body length says %d" % blen)
    if (flags & F_SEALED and blen < 16) or (flags & F_SIGNED and blen < 64):
        raise FrameError("body shorter than its tag or signature")
    h = {"type": code, "name": name, "hdr_len": hl, "flags": flags, "hop_limit": limit,
         "hops": hops, "body_len": blen, "stream": stream, "aux": aux, "time_ms": tms,
         "id": mid, "src": src, "dst": dst, "nonce": nonce}
    _check_frame_rules(h, cls)
    return h


def _check_frame_rules(h, cls):
    f, all_zero = h["flags"], h["dst"] == bytes(32)
    sealed, signed = bool(f & F_SEALED), bool(f & F_SIGNED)
    if f & ~0x000f:
        raise FrameError("unknown flags")
    if sealed == signed:
        raise FrameError("exactly one of sealed and signed")
    if not sealed and h["nonce"] != bytes(24):
        raise FrameError("nonce of an unsealed frame")
    if sealed and not cls & {UNICAST, STREAM}:
        raise FrameError("sealed non-unicast")
    if f & F_HEAD and (UNICAST not in cls or not h["stream"]):
        raise FrameError("bad HEAD")
    if f & F_END and not f & F_HEAD and h["name"] != "data":
        raise FrameError("bad END")
    if STREAM in cls and not h["stream"]:
        raise FrameError("stream id 0")
    if STREAM not in cls and not f & F_HEAD and (h["stream"] or h["aux"]):
        raise FrameError("stream id or aux without HEAD")
    if h["src"] == bytes(32):
        raise FrameError("zero source")
    if h["hop_limit"] == 0 or h["hops"] >= h["hop_limit"]:
        raise FrameError("hops not under the hop limit")
    if LINK in cls and h["hop_limit"] == 1 and signed:
        return
    if cls == {LINK}:
        raise FrameError("link frames are signed with hop limit 1")
    if BROADCAST in cls:
        if not all_zero or not signed:
            raise FrameError("broadcasts are signed, to destination zero")
        return
    if all_zero:
        raise FrameError("a routed frame needs a destination")


def _frame_ad(buf, hdr_len):
    ad = bytearray(buf[:hdr_len])
    ad[9] = 0
    return bytes(ad)


def seal_frame(h, plain, key, nonce=None):
    """The sealed frame (bytes) of header dict h and plaintext, for pair key key."""
    h = dict(h, flags=(h["flags"] & ~F_SIGNED) | F_SEALED, body_len=len(plain) + 16,
             nonce=nonce or os.urandom(24))
    hdr = encode_frame_header(h)
    return hdr + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, _frame_ad(hdr, len(hdr)), h["nonce"], key)


def open_frame(buf, key, max_frame=FRAME_MAX):
    """(header, plaintext) of a sealed frame; SealError when it fails to open."""
    h = decode_frame(buf, max_frame)
    if not h["flags"] & F_SEALED:
        raise FrameError("not sealed")
    try:
        plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            bytes(buf[h["hdr_len"]:]), _frame_ad(buf, h["hdr_len"]), h["nonce"], key)
    except nacl.exceptions.CryptoError as e:
        raise SealError("frame fails authentication") from e
    return h, plain


def sign_frame(h, plain, key):
    """The signed frame of header dict h and plaintext, by Key key (h's src)."""
    h = dict(h, flags=(h["flags"] & ~F_SEALED) | F_SIGNED, body_len=len(plain) + 64,
             nonce=bytes(24))
    hdr = encode_frame_header(h)
    sig = key.sk.sign(FRAME_SIG_DOMAIN + _frame_ad(hdr, len(hdr)) + plain).signature
    return hdr + plain + sig


def verify_frame(buf, max_frame=FRAME_MAX):
    """(header, plaintext) of a signed frame; nacl BadSignatureError on forgery."""
    h = decode_frame(buf, max_frame)
    if not h["flags"] & F_SIGNED:
        raise FrameError("not signed")
    body = bytes(buf[h["hdr_len"]:])
    nacl.signing.VerifyKey(h["src"]).verify(
        FRAME_SIG_DOMAIN + _frame_ad(buf, h["hdr_len"]) + body[:-64], body[-64:])
    return h, body[:-64]


def relay_frame(buf):
    """The frame as a relay forwards it (hops + 1), or None at the hop limit."""
    if buf[9] + 1 >= buf[8]:
        return None
    out = bytearray(buf)
    out[9] += 1
    return bytes(out)


# ---- node messages as frames (§10.6, §10.8) -----------------------------------

FRAME_BROADCAST_HDR_LEN = 208     # a broadcast's header: + the envelope signature


def frame_time(ms):
    """§10.8: a frame's time as the envelope's timestamp (UTC, 3 fraction digits)."""
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def frame_to_msg(key, buf):
    """The envelope a received frame maps to, as a Msg: a sealed frame for
    us opened with our pair key, a signed one verified (FrameError, SealError
    or nacl's BadSignatureError otherwise). A broadcast's envelope signature
    (header bytes 144-207) becomes its "signature"."""
    h = decode_frame(buf)
    src = h["src"].hex()
    if h["flags"] & F_SEALED:
        _, plain = open_frame(buf, key.shared_key(src))
    else:
        _, plain = verify_frame(buf)
    m = Msg(id=h["id"].hex(), type=h["name"], sender=src,
            recipient="*" if h["dst"] == bytes(32) else h["dst"].hex(),
            timestamp=frame_time(h["time_ms"]), hops=h["hops"], payload=loads_strict(plain))
    if h["flags"] & F_SIGNED and h["dst"] == bytes(32) and h["hdr_len"] >= FRAME_BROADCAST_HDR_LEN:
        m["signature"] = bytes(buf[FRAME_HDR_LEN:FRAME_BROADCAST_HDR_LEN]).hex()
    m.raw, m.frame, m.sealed = bytes(buf), h, bool(h["flags"] & F_SEALED)
    return m
