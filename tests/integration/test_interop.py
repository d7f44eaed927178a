"""An independent peer (mzproto.py, written from docs/PROTOCOL.md) against a
real node: hello/welcome, sync, announce, query, sealed unicasts (§5.1),
owner-key records and tombstones (§7), and the security cases."""
import asyncio
import json

import pytest

import mzproto as mp
from execlib import ApiConn
from meshlib import run, wait_for
from seclib import ids, peer_ids, status, wait_linked

# metadata that exercises the canonical form: floats, non-ASCII, escapes, nesting
TRICKY_META = {"version": "2.0", "pi": 3.14159, "hundred": 100.0, "neg_zero": -0.0,
               "tiny": 1e-300, "big": 12345678901234567, "text": "caf\u00e9 \u65e5\u672c \U0001f600",
               "ctl": "tab\there \"q\" back\\slash /slash \u0001\u001f\u007f",
               "nested": {"b": [1, 2.5, None, True, False], "a": {"\u00e9": 1, "e": 2, "Z": 3}},
               "empty": {}, "list": []}


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def in_thread(fn, *args, **kw):
    return await asyncio.to_thread(fn, *args, **kw)


async def wait_for_async(cond, timeout, what):
    return await asyncio.to_thread(wait_for, cond, timeout, 0.05, what)


async def linked_peer(node, key=None):
    p = await mp.Peer(key or mp.Key()).open(node.listen)
    await p.handshake()
    assert p.node_id == node.id
    records, nodes = await p.link_up()
    return p, records, nodes


def test_canonical_examples():
    c = mp.canonical
    assert c(0.1) == b"0.1" and c(1.0) == b"1.0" and c(2.5) == b"2.5"
    assert c(100.0) == b"1e+02" and c(1e300) == b"1e+300" and c(-0.0) == b"-0.0"
    assert c(-12) == b"-12" and c(0) == b"0"
    assert c({"b": 1, "a": [True, False, None]}) == b'{"a":[true,false,null],"b":1}'
    assert c("a\"\\/\b\t\n\f\r\x01\x7f\u00e9") == \
        '"a\\"\\\\/\\b\\t\\n\\f\\r\\u0001\x7f\u00e9"'.encode("utf-8")
    # keys by UTF-8 bytes, not UTF-16 units
    assert c({"\U0001f600": 1, "\uffff": 2}) == '{"\uffff":2,"\U0001f600":1}'.encode("utf-8")


def test_hello_sync_announce_query(mesh):
    a = mesh.node("A")
    native = a.register("native1", "agent", caps=["image_processing"],
                        meta={"version": "1.0", "score": "2.5", "n": '{"k":[1.5,100.0,"\u00e9"]}'},
                        owner="user456")
    key = mp.Key()

    async def go():
        p, records, nodes = await linked_peer(a, key)
        try:
            # the node's sync carries its record, verifiable by our canonical form
            assert [r["resource_id"] for r in records] == ["native1"]
            assert records[0]["signature"] == native["signature"]
            assert mp.verify_record(records[0]), "the node's record signature does not verify"
            await wait_for_async(lambda: key.id in peer_ids(a), 5.0, "us as A's peer")

            rec = mp.record(key, "interop1", "agent", capabilities=["image_processing", "x:y/z"],
                            owner="tester", metadata=TRICKY_META)
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": rec}))
            got = await wait_for_async(
                lambda: ids(a).get("interop1"), 5.0, "the announced record on A")
            assert got["location"] == "remote"
            assert got["node"] == key.id
            assert got["signature"] == rec["signature"]
            assert got["metadata"] == TRICKY_META | {"last_updated": rec["metadata"]["last_updated"]}
            assert mp.verify_record(got)

            # a signed query (receivers accept both forms, §5.1): the answer
            # comes sealed for us all the same
            q, res = await p.request("query", {"resource_type": "agent",
                                               "capabilities": ["image_processing"]},
                                     sealed=False)
            assert res["type"] == "query_result", res
            assert res.sealed and res.seal_error is None, (res.seal_error, res.raw)
            assert "signature" not in res
            assert res["sender"] == a.id and res["recipient"] == key.id
            assert res["payload"]["ref"] == q["id"]
            by_id = {r["resource_id"]: r for r in res["payload"]["records"]}
            assert set(by_id) == {"native1", "interop1"}
            assert by_id["native1"]["location"] == "local"
            assert by_id["interop1"]["location"] == "remote"
            assert by_id["native1"]["owner_key"] == a.id
            assert by_id["interop1"]["owner_key"] == key.id
            for r in by_id.values():
                assert mp.verify_record(r), r

            # a sealed query with a limit and an owner filter
            q2, res2 = await p.request("query", {"owner": "user456", "limit": 5})
            assert res2["type"] == "query_result" and res2.sealed, res2
            assert [r["resource_id"] for r in res2["payload"]["records"]] == ["native1"]

            # remove it again: a tombstone signed by the owner key, newer version
            await p.send(mp.envelope(key, "announce", {
                "op": "remove", "tombstone": mp.tombstone(key, "interop1", 2)}))
            await wait_for_async(lambda: "interop1" not in ids(a), 5.0, "removal on A")
            st = status(a)["counters"]
            assert st["forged"] == 0 and st["malformed"] == 0 and st["bad_seals"] == 0
        finally:
            await p.close()
    arun(go())


def test_announce_relayed_and_hops_unsigned(mesh):
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key = mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            rec = mp.record(key, "relayed1", "tool", capabilities=["c"])
            # hops is outside the signature: a value set by "a relay" is fine
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": rec}, hops=3))
            await p.send(mp.envelope(key, "alive", {"listen": "", "lease_ms": 15000,
                                                    "digest": mp.digest([rec])}))
            got = await wait_for_async(lambda: ids(b).get("relayed1"), 5.0,
                                       "the record relayed to B")
            assert got["node"] == key.id and got["signature"] == rec["signature"]
            assert mp.verify_record(got)
            # an update with a higher version replaces it everywhere
            rec2 = mp.record(key, "relayed1", "tool", capabilities=["c", "d"], version=2)
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": rec2}))
            await wait_for_async(lambda: (ids(b).get("relayed1") or {}).get("version") == 2,
                                 2.0, "version 2 on B")
            # an older version is ignored: a later marker arrives, relayed1 stays at 2
            old = mp.record(key, "relayed1", "tool", capabilities=["old"], version=1)
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": old}))
            marker = mp.record(key, "marker1", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": marker}))
            await wait_for_async(lambda: "marker1" in ids(b), 5.0, "marker on B")
            assert ids(a)["relayed1"]["version"] == 2
            assert ids(b)["relayed1"]["capabilities"] == ["c", "d"]

            # we relay a broadcast of a node behind us, unchanged but for hops
            behind = mp.Key()
            theirs = mp.record(behind, "behind1", "tool")
            await p.send(mp.envelope(behind, "announce", {"op": "upsert", "record": theirs},
                                     hops=1))
            got = await wait_for_async(lambda: ids(b).get("behind1"), 5.0, "behind1 on B")
            assert got["node"] == behind.id and mp.verify_record(got)
            # a query to that node is routed back to us, hop by hop
            b_q = await in_thread(b.cli_json, "query", "--type", "tool")   # the CLI too
            assert "behind1" in {r["resource_id"] for r in b_q}
        finally:
            await p.close()
        # our link closed without a bye: the records stay (until the lease runs out)
        assert "relayed1" in ids(a)
    arun(go())


def test_wrong_signature_refused(mesh):
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            forged0 = status(a)["counters"]["forged"]
            rec = mp.record(key, "forged1", "tool")
            env = mp.envelope(key, "announce", {"op": "upsert", "record": rec})
            env["payload"]["record"]["capabilities"] = ["admin"]   # changed after signing
            rec["signature"] = key.sign(mp.RECORD_DOMAIN, rec, mp.RECORD_UNSIGNED)
            await p.send(env)
            err = await p.expect(lambda m: m["type"] == "error", 5.0, "error bad_signature")
            assert err["payload"]["code"] == "bad_signature", err
            assert err["payload"]["ref"] == env["id"]
            assert err["sender"] == a.id and mp.verify_envelope(err)

            # a valid signature by a different key than the sender's
            other = mp.Key()
            env2 = mp.envelope(other, "announce", {"op": "upsert",
                                                   "record": mp.record(key, "forged2", "tool")},
                               sender=key.id)
            await p.send(env2)
            err2 = await p.expect(lambda m: m["type"] == "error", 5.0, "second bad_signature")
            assert err2["payload"]["code"] == "bad_signature" and err2["payload"]["ref"] == env2["id"]

            # the link is still usable, and neither record was stored
            marker = mp.record(key, "marker1", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": marker}))
            await wait_for_async(lambda: "marker1" in ids(a), 5.0, "marker on A")
            at_a = ids(a)
            assert "forged1" not in at_a and "forged2" not in at_a
            assert status(a)["counters"]["forged"] == forged0 + 2
            assert key.id in peer_ids(a)
        finally:
            await p.close()
    arun(go())


def test_record_of_another_node_refused(mesh):
    a = mesh.node("A")
    key, other = mp.Key(), mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            # correctly signed by its host, but announced by someone else
            theirs = mp.record(other, "theirs1", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": theirs}))
            # our node id and our key as owner_key on a record signed by another key
            fake = mp.record(other, "fake1", "tool", node=key.id, owner_key=key.id)
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": fake}))
            marker = mp.record(key, "marker1", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": marker}))
            await wait_for_async(lambda: "marker1" in ids(a), 5.0, "marker on A")
            at_a = ids(a)
            assert "theirs1" not in at_a and "fake1" not in at_a
            # a resource id held by the node itself cannot be taken over
            a.register("taken1", "tool")
            steal = mp.record(key, "taken1", "tool", version=99)
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": steal}))
            marker2 = mp.record(key, "marker2", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": marker2}))
            await wait_for_async(lambda: "marker2" in ids(a), 5.0, "marker2 on A")
            t = ids(a)["taken1"]
            assert t["node"] == a.id and t["location"] == "local" and t["version"] == 1
            assert t["owner_key"] == a.id and mp.verify_record(t)
            c = status(a)["counters"]
            assert c["forged"] >= 1, c   # conflicts counting: test_security.py
        finally:
            await p.close()
    arun(go())


def test_sealed_query_and_owner_keys(mesh, tmp_path):
    """§5.1 and §7 from the client's side: records verify against their
    owner_key (the node's own or a `meshzero keygen` key); a sealed query gets
    a sealed query_result we can open; our own records may be owned by a
    separate owner key, which alone can update and remove them."""
    a = mesh.node("A")
    kfile = tmp_path / "owner.key"
    p = run(["keygen", "--out", str(kfile), "--json"])
    assert p.returncode == 0, p.stderr
    owner = mp.Key.from_file(str(kfile))
    assert json.loads(p.stdout)["public_key"] == owner.id
    a.register("plain1", "agent", caps=["image_processing"])
    p = a.cli("register", "owned1", "--type", "agent", "--cap", "image_processing",
              "--owner", "user456", "--owner-key", str(kfile), "--json")
    assert p.returncode == 0, p.stderr
    key = mp.Key()

    async def go():
        peer, records, _ = await linked_peer(a, key)
        try:
            by_id = {r["resource_id"]: r for r in records}
            assert set(by_id) == {"plain1", "owned1"}
            assert by_id["plain1"]["owner_key"] == a.id
            assert by_id["owned1"]["owner_key"] == owner.id and by_id["owned1"]["node"] == a.id
            for r in records:
                assert mp.verify_record(r), r
                assert "location" not in r
            # the signature is the owner key's, not the node's
            assert not mp.verify(a.id, mp.RECORD_DOMAIN, by_id["owned1"], mp.RECORD_UNSIGNED)

            # a sealed query, with a hops value set "by a relay" (hops is not bound)
            q = mp.sealed_envelope(key, "query", {"capabilities": ["image_processing"]},
                                   a.id, hops=2)
            await peer.send(q)
            res = await peer.expect(lambda m: m["payload"].get("ref") == q["id"], 5.0,
                                    "the sealed query_result")
            assert res["type"] == "query_result", res
            assert res.sealed and res.seal_error is None, (res.seal_error, res.raw)
            assert set(res) == {"id", "type", "sender", "recipient", "timestamp", "payload",
                                "hops"} or set(res) == {"id", "type", "sender", "recipient",
                                                        "timestamp", "payload"}, res
            assert res["sender"] == a.id and res["recipient"] == key.id
            got = {r["resource_id"]: r for r in res["payload"]["records"]}
            assert set(got) == {"plain1", "owned1"}
            for r in got.values():
                assert mp.verify_record(r), r
                assert r["location"] == "local"
            assert got["owned1"]["signature"] == by_id["owned1"]["signature"]

            # our record, owned by a separate key: accepted, updated, removed by it
            mine = mp.Key()
            rec = mp.record(mine, "peerowned1", "tool", node=key.id, capabilities=["c"])
            await peer.send(mp.envelope(key, "announce", {"op": "upsert", "record": rec}))
            stored = await wait_for_async(lambda: ids(a).get("peerowned1"), 5.0,
                                          "peerowned1 on A")
            assert stored["owner_key"] == mine.id and stored["node"] == key.id
            assert stored["signature"] == rec["signature"] and mp.verify_record(stored)
            rec2 = mp.record(mine, "peerowned1", "tool", node=key.id, capabilities=["c", "d"],
                             version=2)
            await peer.send(mp.envelope(key, "announce", {"op": "upsert", "record": rec2}))
            await wait_for_async(lambda: (ids(a).get("peerowned1") or {}).get("version") == 2,
                                 2.0, "peerowned1 v2 on A")
            await peer.send(mp.envelope(key, "announce", {
                "op": "remove", "tombstone": mp.tombstone(mine, "peerowned1", 3, node=key.id)}))
            await wait_for_async(lambda: "peerowned1" not in ids(a), 5.0,
                                 "peerowned1 removed on A")
            c = status(a)["counters"]
            assert c["forged"] == 0 and c["bad_seals"] == 0 and c["conflicts"] == 0, c
        finally:
            await peer.close()
    arun(go())


def test_sealed_query_tampered_refused(mesh):
    """A sealed unicast whose header or ciphertext changed after sealing, or
    sealed with the wrong key, does not open: error bad_seal, counted."""
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        peer, _, _ = await linked_peer(a, key)
        try:
            bad = []
            q = mp.sealed_envelope(key, "query", {}, a.id)
            q["timestamp"] = mp.now_rfc3339(-1.0)           # header changed after sealing
            bad.append(q)
            q = mp.sealed_envelope(key, "query", {}, a.id)
            bad.append(mp.flip_sealed_byte(q))               # ciphertext changed
            bad.append(mp.sealed_envelope(key, "query", {}, a.id,
                                          seal_for=mp.Key().id))   # sealed for another node
            other = mp.Key()
            q = mp.sealed_envelope(other, "query", {}, a.id)   # sealed by another key ...
            q["sender"] = key.id                               # ... for our id
            q["payload"] = mp.seal_payload(other.shared_key(a.id), q, {})
            bad.append(q)
            for env in bad:
                await peer.send(env)
                err = await peer.expect(lambda m: m["payload"].get("ref") == env["id"], 5.0,
                                        "the answer to a tampered query")
                assert err["type"] == "error" and err["payload"]["code"] == "bad_seal", err
                assert mp.verify_envelope(err)
            assert status(a)["counters"]["bad_seals"] == len(bad)
            # the link still works
            _, res = await peer.request("query", {})
            assert res["type"] == "query_result" and res.sealed
            assert key.id in peer_ids(a)
        finally:
            await peer.close()
    arun(go())


def test_sealed_execute_two_hops(mesh):
    """Our peer P calls a resource on B through A (P - A - B): the sealed
    execute is relayed by A, and B's sealed execute_result comes back through A."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key = mp.Key()

    async def go():
        host = await ApiConn.open(b.api)
        serving = None
        peer = None
        try:
            await host.result("register_resource", {"resource_id": "echo2", "resource_type": "tool",
                                                    "handler": True})
            serving = asyncio.ensure_future(host.serve(
                lambda p: {"got": p["params"], "method": p["method"], "caller": p["caller"]}))
            await wait_for_async(lambda: "echo2" in ids(a), 5.0, "echo2 on A")
            peer, records, nodes = await linked_peer(a, key)
            assert "echo2" in {r["resource_id"] for r in records}
            assert b.id in {n["id"] for n in nodes}, nodes
            params = {"s": "caf\u00e9", "n": [1, 2.5, None]}
            env, res = await peer.request("execute", {"resource_id": "echo2", "method": "m",
                                                      "params": params, "timeout_ms": 5000},
                                          recipient=b.id)
            assert res["type"] == "execute_result", res
            assert res.sealed and res.seal_error is None, res.raw
            assert res["sender"] == b.id and res["recipient"] == key.id
            assert res["hops"] == 1
            assert res["payload"] == {"ref": env["id"], "result": {"got": params, "method": "m",
                                                                   "caller": key.id}}
            # not_found, also sealed
            env, res = await peer.request("execute", {"resource_id": "nope", "method": "m",
                                                      "params": {}}, recipient=b.id)
            assert res.sealed and res["payload"]["error"]["code"] == "not_found", res
        finally:
            if peer is not None:
                await peer.close()
            if serving is not None:
                serving.cancel()
            await host.close()
    arun(go())


def test_hello_claiming_another_id(mesh):
    a = mesh.node("A")
    ours, victim = mp.Key(), mp.Key()

    async def go():
        p = await mp.Peer(ours).open(a.listen)
        try:
            await p.handshake(claim=victim.id)
            code, reason = await p.wait_closed(5.0)
        finally:
            await p.close()
        return p
    p = arun(go())
    errs = [m for m in p.inbox if m["type"] == "error"]
    assert errs and errs[0]["payload"]["code"] in ("bad_signature", "bad_hello"), p.inbox
    assert not [m for m in p.inbox if m["type"] == "sync"], p.inbox
    c = status(a)["counters"]
    assert c["forged"] + c["hello_failures"] >= 1, c
    peers = peer_ids(a)
    assert victim.id not in peers and ours.id not in peers
    assert status(a)["peers"] == 0


def test_welcome_with_wrong_challenge(mesh):
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        p = await mp.Peer(key).open(a.listen)
        try:
            hello = await p.expect(lambda m: m["type"] == "hello", 5.0, "hello")
            await p.send(mp.envelope(key, "hello", {"protocol": mp.PROTOCOL, "listen": "",
                                                    "challenge": "ab" * 32}))
            await p.send(mp.envelope(key, "welcome", {"challenge": "00" * 32},
                                     recipient=hello["sender"]))
            await p.wait_closed(5.0)
        finally:
            await p.close()
        return p
    p = arun(go())
    errs = [m for m in p.inbox if m["type"] == "error"]
    assert errs and errs[0]["payload"]["code"] == "bad_hello", p.inbox
    assert not [m for m in p.inbox if m["type"] == "sync"], p.inbox
    assert key.id not in peer_ids(a)


def test_message_before_hello_refused(mesh):
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        p = await mp.Peer(key).open(a.listen)
        try:
            await p.expect(lambda m: m["type"] == "hello", 5.0, "hello")
            env = mp.envelope(key, "announce",
                              {"op": "upsert", "record": mp.record(key, "early1", "tool")})
            await p.send(env)
            err = await p.expect(lambda m: m["type"] == "error", 5.0, "not_authenticated")
            assert err["payload"]["code"] == "not_authenticated", err
            assert err["payload"]["ref"] == env["id"]
            await p.wait_closed(5.0)
        finally:
            await p.close()
    arun(go())
    assert "early1" not in ids(a)
    assert key.id not in peer_ids(a)


@pytest.mark.parametrize("mutate", ["extra_member", "bad_type", "bad_sender", "deep"])
def test_invalid_envelope_after_hello(mesh, mutate):
    """An invalid envelope on an up link gets error bad_message; the link stays up."""
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            env = mp.envelope(key, "alive", {"listen": "", "lease_ms": 15000,
                                             "digest": mp.digest([])})
            if mutate == "extra_member":
                env["extra"] = 1
            elif mutate == "bad_type":
                env["type"] = "Not-A-Type!"
            elif mutate == "bad_sender":
                env["sender"] = "XYZ"
            else:
                deep = {}
                cur = deep
                for _ in range(40):
                    cur["d"] = {}
                    cur = cur["d"]
                env["payload"] = deep
            await p.send(env)
            err = await p.expect(lambda m: m["type"] == "error", 5.0, "error bad_message")
            assert err["payload"]["code"] == "bad_message", err
            assert err["payload"]["ref"] == env["id"]
            # still linked
            marker = mp.record(key, "marker1", "tool")
            await p.send(mp.envelope(key, "announce", {"op": "upsert", "record": marker}))
            await wait_for_async(lambda: "marker1" in ids(a), 5.0, "marker on A")
            assert key.id in peer_ids(a)
        finally:
            await p.close()
    arun(go())
