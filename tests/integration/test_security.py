"""Adversarial tests against real node processes.

The attackers are fake peers written from docs/PROTOCOL.md (mzproto.py) and
a relay of our own (seclib.Relay). Each attack must be refused with the
documented reason, counted in `meshzero status --json`, change no state, and
leave the node serving honest peers (seclib.honest_check: a new node links,
its resource propagates, the attacked node executes it).

Agreement attacks and wss:// pinning are tested elsewhere.
"""
import asyncio
import os
import signal

import mzproto as mp
from meshlib import wait_for
from seclib import (arun, counters, flush, honest_check, ids, in_thread, linked_peer,
                    node_id_of, peer_ids, relayed_handler, snapshot, status, wait_for_async,
                    wait_linked, wait_until, without)


def announce(key, rec, **kw):
    return mp.envelope(key, "announce", {"op": "upsert", "record": rec}, **kw)


def strip_location(rec):
    return {k: v for k, v in rec.items() if k != "location"}


# ---- 1. forged record signature ----------------------------------------------------

def test_forged_record_signature(mesh):
    """Records whose signature does not verify against their owner_key, in an
    announce or a sync (§6.3): not stored, not passed on, counted `forged`."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    b.register("victim1", "agent", caps=["x"])
    wait_for(lambda: "victim1" in ids(a), 5.0, what="victim1 on A")
    before_a, before_b = snapshot(a), snapshot(b)
    f0a, f0b = counters(a)["forged"], counters(b)["forged"]
    key, observer_key = mp.Key(), mp.Key()

    async def go():
        p, synced, _ = await linked_peer(a, key)
        q, _, _ = await linked_peer(a, observer_key)     # sees what A passes on
        try:
            # (a) changed after signing
            rec = mp.record(key, "forged-a", "tool", capabilities=["x"])
            rec["capabilities"] = ["admin"]
            env_a = await p.send(announce(key, rec))
            # (b) claims B's key as owner_key but signed by ours
            rec_b = mp.record(key, "forged-b", "tool", owner_key=b.id)
            env_b = await p.send(announce(key, rec_b))
            # (c) a signature of another domain (the envelope's) over the same fields
            rec_c = mp.record(key, "forged-c", "tool")
            rec_c["signature"] = key.sign(mp.ENVELOPE_DOMAIN, rec_c, mp.RECORD_UNSIGNED)
            env_c = await p.send(announce(key, rec_c))
            # (d) B's record with a changed capability, offered in our digest
            # and sent in the sync A fetches from us
            victim = next(strip_location(r) for r in synced if r["resource_id"] == "victim1")
            victim["capabilities"] = ["x", "stolen"]
            victim["version"] += 1
            p2, _, _ = await linked_peer(a, offer=[victim])
            await flush(p2, [a], "1s")
            await flush(p, [a, b], "1")
            # what the observer got passed on by A (the marker is behind)
            await q.expect(lambda m: m["type"] == "announce"
                           and m["payload"]["record"]["resource_id"] == "marker-1", 5.0,
                           "the marker at the observer")
            forged_ids = {env_a["id"], env_b["id"], env_c["id"]}
            await p2.close()
            return [m for m in q.log if m["type"] == "announce" and m["id"] in forged_ids]
        finally:
            await p.close()
            await q.close()
    passed_on = arun(go())
    after_a, after_b = snapshot(a), snapshot(b)
    assert without(after_a, "marker-1", "marker-1s") == before_a
    assert without(after_b, "marker-1", "marker-1s") == before_b
    assert counters(a)["forged"] - f0a == 4
    honest_check(mesh, a, "H1")
    # §7 "verifies every record's signature ... before storing or passing it
    # on"; the design: "Every node verifies before storing or forwarding."
    assert not passed_on, "A forwarded %d announce(s) whose record it refused as forged: %s" \
        % (len(passed_on), [m["payload"]["record"]["resource_id"] for m in passed_on])
    assert counters(b)["forged"] == f0b, "forged records reached B through A"


# ---- 2. another owner's resource ------------------------------------------------------

def test_takeover_of_another_owners_resource(mesh):
    """Same resource_id, another owner key, higher version (announce, sync,
    tombstone), or a complete set of D's records that lacks it, sent by
    another node: refused (`conflicts`), the original intact everywhere."""
    d = mesh.node("D")
    a = mesh.node("A", peers=[d])
    b = mesh.node("B", peers=[a])
    wait_linked([(a, d), (a, b)])
    d.register("agent123", "agent", caps=["image_processing"], owner="user456")
    for n in (a, b):
        wait_for(lambda: "agent123" in ids(n), 5.0, what="agent123 on " + n.name)
    before = {n.name: snapshot(n) for n in (a, b, d)}
    c0 = {n.name: counters(n)["conflicts"] for n in (a, b, d)}
    u0 = counters(a)["unbound_records"]
    key = mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            # (a) our own node, our key, a higher version
            await p.send(announce(key, mp.record(key, "agent123", "agent", version=99,
                                                 capabilities=["image_processing"])))
            # (b) D as host, our key as owner, in a sync
            steal = mp.record(key, "agent123", "agent", node=d.id, version=100)
            p2, _, _ = await linked_peer(a, offer=[steal])
            await flush(p2, [a], "2s")
            # (c) a removal signed by our key
            await p.send(mp.envelope(key, "announce", {
                "op": "remove", "tombstone": mp.tombstone(key, "agent123", 101)}))
            # (d) "D's complete set" (§6.3 ghost removal), empty, sent by us
            await p.send_sync([], complete_for=[d.id])
            await flush(p, [a, b, d], "2")
            await p2.close()
        finally:
            await p.close()
    arun(go())
    for n in (a, b, d):
        assert without(snapshot(n), "marker-2", "marker-2s") == before[n.name], n.name
        rec = ids(n)["agent123"]
        assert rec["owner_key"] == d.id and rec["version"] == 1 and mp.verify_record(rec)
    # a: the announce (A, and B it was relayed to); c: the tombstone; b: the sync is
    # refused before that, as a record not bound to its host (PROTOCOL.md §7)
    assert counters(a)["conflicts"] - c0["A"] >= 2, counters(a)
    assert counters(a)["unbound_records"] - u0 >= 1, counters(a)
    # an honest node cannot take it over through its API either
    p = b.cli("register", "agent123", "--type", "agent")
    assert p.returncode != 0, p.stdout
    assert ids(b)["agent123"]["node"] == d.id
    honest_check(mesh, a, "H2")


def test_takeover_at_the_host_counted(mesh):
    """The same attack on the node that hosts the resource: refused and,
    per PROTOCOL.md §7, counted `conflicts`."""
    d = mesh.node("D")
    orig = d.register("agent123", "agent")
    key = mp.Key()
    c0 = counters(d)["conflicts"]

    async def go():
        p, _, _ = await linked_peer(d, key)
        try:
            await p.send(announce(key, mp.record(key, "agent123", "agent", version=99)))
            # D never fetches its own records from a peer: a sync it did not ask for
            steal = mp.record(key, "agent123", "agent", node=d.id, version=100)
            p2, _, _ = await linked_peer(d)
            await p2.send_sync([steal])
            await flush(p2, [d], "2hs")
            await flush(p, [d], "2h")
            await p2.close()
        finally:
            await p.close()
    arun(go())
    rec = ids(d)["agent123"]
    assert rec["signature"] == orig["signature"] and rec["location"] == "local"
    honest_check(mesh, d, "H2h")
    assert counters(d)["conflicts"] - c0 == 2, \
        "refused takeovers of a local resource are not counted: %s" % counters(d)


# ---- 3. rollback --------------------------------------------------------------------

def test_rollback_to_captured_older_version(mesh):
    """An older version captured earlier, sent again after an update (in a
    sync, by anyone; or announced by its own host): refused, counted
    `rollbacks`, the newest stays. After a removal, the captured copy does
    not bring the resource back (tombstone)."""
    d = mesh.node("D")
    a = mesh.node("A", peers=[d])
    wait_linked([(a, d)])
    d.register("r1", "tool", caps=["v1"])
    d.register("r2", "tool", caps=["v1"])
    wait_for(lambda: {"r1", "r2"} <= set(ids(a)), 5.0, what="r1, r2 on A")
    key = mp.Key()

    async def go():
        # capture version 1 of both
        spy, synced, _ = await linked_peer(a)
        await spy.close()
        v1 = {r["resource_id"]: strip_location(r) for r in synced}
        assert v1["r1"]["version"] == 1 and mp.verify_record(v1["r1"])
        await in_thread(d.register, "r1", "tool", ["v2"])            # r1 -> version 2
        await in_thread(d.unregister, "r2")                          # r2 -> tombstone
        await wait_for_async(lambda: (ids(a).get("r1") or {}).get("version") == 2
                             and "r2" not in ids(a), 5.0, "the update and removal on A")
        before = await in_thread(snapshot, a)
        r0 = (await in_thread(counters, a))["rollbacks"]

        p, _, _ = await linked_peer(a, key, offer=[v1["r1"], v1["r2"]])
        try:
            # our own record, rolled back by its own host
            await p.send(announce(key, mp.record(key, "own1", "tool", version=5)))
            await p.send(announce(key, mp.record(key, "own1", "tool", version=4)))
            await flush(p, [a, d], "3")
        finally:
            await p.close()
        after = await in_thread(snapshot, a)
        assert without(after, "marker-3", "own1") == before
        assert after["own1"][2] == 5
        assert "r2" not in after, "a captured copy brought a removed resource back"
        assert (await in_thread(counters, a))["rollbacks"] - r0 == 3
        at_d = await in_thread(ids, d)
        assert at_d["r1"]["version"] == 2 and "r2" not in at_d
    arun(go())
    honest_check(mesh, a, "H3")


# ---- 4. replay ------------------------------------------------------------------------

def test_replay_and_stale(mesh):
    """A captured message sent again: to the node (sealed or signed unicast)
    `replayed`; a broadcast is dropped as a duplicate. A timestamp 5 minutes
    off either way: `stale`. None of them is handled."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key = mp.Key()

    async def go():
        p, _, _ = await linked_peer(a, key)
        try:
            c0 = await in_thread(counters, a)
            # unicasts to A, sealed and signed: the answer comes once
            for sealed in (True, False):
                q, res = await p.request("query", {}, sealed=sealed)
                assert res["type"] == "query_result"
                await p.send(q)
                err = await p.expect(lambda m: m["payload"].get("ref") == q["id"], 5.0,
                                     "the answer to the replay")
                assert err["type"] == "error" and err["payload"]["code"] == "replayed", err
            # a broadcast captured by our peer (B's announce, forwarded by A),
            # replayed after B updated the record: a duplicate, dropped
            await in_thread(b.register, "rb", "tool", ["v1"])
            cap = await p.expect(lambda m: m["type"] == "announce" and m["sender"] == b.id,
                                 5.0, "B's announce")
            assert mp.verify_envelope(cap)
            await in_thread(b.register, "rb", "tool", ["v2"])
            await wait_for_async(lambda: (ids(a).get("rb") or {}).get("version") == 2, 5.0,
                                 "rb v2 on A")
            d0 = (await in_thread(counters, a))["duplicates"]
            await p.send(cap.raw)
            # stale: 5 minutes old and 5 minutes ahead, signed and sealed
            stale = [
                announce(key, mp.record(key, "stale1", "tool"),
                         timestamp=mp.now_rfc3339(-300)),
                announce(key, mp.record(key, "stale2", "tool"),
                         timestamp=mp.now_rfc3339(+300)),
                mp.sealed_envelope(key, "query", {}, a.id, timestamp=mp.now_rfc3339(-300)),
                mp.envelope(key, "query", {}, recipient=a.id, timestamp=mp.now_rfc3339(-300)),
            ]
            for env in stale:
                await p.send(env)
                err = await p.expect(lambda m: m["payload"].get("ref") == env["id"], 5.0,
                                     "the answer to a stale message")
                assert err["type"] == "error" and err["payload"]["code"] == "stale", err
            await flush(p, [a, b], "4")
            now = await in_thread(ids, a)
            assert now["rb"]["version"] == 2 and "stale1" not in now and "stale2" not in now
            c1 = await in_thread(counters, a)
            assert c1["replayed"] - c0["replayed"] == 2, c1
            assert c1["stale"] - c0["stale"] == 4, c1
            assert c1["duplicates"] > d0, c1
            # no second query_result
            assert len([m for m in p.log if m["type"] == "query_result"]) == 2
        finally:
            await p.close()
        # a hello 5 minutes old: stale, and the link is closed before it is up
        s0 = (await in_thread(counters, a))["stale"]
        late = mp.Peer(mp.Key())
        await late.open(a.listen)
        try:
            await late.expect(lambda m: m["type"] == "hello", 5.0, "A's hello")
            hello = await late.send(mp.envelope(late.key, "hello", {
                "protocol": mp.PROTOCOL, "listen": "", "challenge": "ab" * 32},
                timestamp=mp.now_rfc3339(-300)))
            code, _ = await late.wait_closed(5.0)
        finally:
            await late.close()
        assert code == 1008
        errs = [m for m in late.log if m["type"] == "error"]
        assert [(m["payload"]["code"], m["payload"]["ref"]) for m in errs] == \
            [("stale", hello["id"])], late.log
        assert not [m for m in late.log if m["type"] in ("welcome", "digest", "sync")], late.log
        assert (await in_thread(counters, a))["stale"] - s0 == 1
    arun(go())
    honest_check(mesh, a, "H4")


def test_replay_captured_execute_through_relay(mesh):
    """A relay R on the path A - R - D captures A's sealed execute and D's
    sealed execute_result and sends them again: D answers `replayed` and
    does not run the handler again; A refuses the result (`replayed`)."""
    a, d = mesh.node("A"), mesh.node("D")
    calls = []

    async def go():
        async with relayed_handler(a, d, "counter", lambda dc: dc.serve(
                lambda p: calls.append(p) or len(calls))) as (relay, ac, dc):
            res = await ac.call("execute_remote", {"resource_id": "counter", "method": "inc",
                                                   "timeout_ms": 5000}, timeout=10)
            assert res.get("result") == 1, res
            ex = relay.captured("execute", a.id)
            er = relay.captured("execute_result", d.id)
            assert len(ex) == 1 and len(er) == 1 and mp.is_sealed(ex[0])
            d0 = (await dc.result("status"))["counters"]
            a0 = (await ac.result("status"))["counters"]
            await relay.send_to(d.id, ex[0])
            await relay.send_to(a.id, er[0])
            await wait_until(lambda: len([m for m in relay.own if m["type"] == "error"]) >= 2,
                             5.0, "two errors to the relay")
            codes = sorted((m["sender"], m["payload"]["code"], m["payload"]["ref"])
                           for m in relay.own if m["type"] == "error")
            assert codes == sorted([(d.id, "replayed", ex[0]["id"]),
                                    (a.id, "replayed", er[0]["id"])]), codes
            d1 = (await dc.result("status"))["counters"]
            a1 = (await ac.result("status"))["counters"]
            assert d1["replayed"] - d0["replayed"] == 1 and d1["exec_served"] == d0["exec_served"]
            assert a1["replayed"] - a0["replayed"] == 1
            assert len(calls) == 1
            # still serving through the same relay
            res = await ac.call("execute_remote", {"resource_id": "counter", "method": "inc",
                                                   "timeout_ms": 5000}, timeout=10)
            assert res.get("result") == 2, res
    arun(go())


# ---- 5. a relay flipping bits ----------------------------------------------------------

def test_relay_flipping_bits_in_execute(mesh):
    """A - R - D, R flips one bit inside the sealed payload of `execute`
    (then of `execute_result`, then of the bound header): the receiver
    refuses it (`bad_seal`), the call on A fails and never returns a wrong
    result; unflipped traffic through the same relay works."""
    a, d = mesh.node("A"), mesh.node("D")
    calls = []

    async def go():
        async with relayed_handler(a, d, "echo", lambda dc: dc.serve(
                lambda p: calls.append(p) or {"echo": p["params"]})) as (relay, ac, dc):

            async def call(n, timeout_ms=5000):
                return await ac.call("execute_remote", {"resource_id": "echo", "method": "m",
                                                        "params": {"n": n},
                                                        "timeout_ms": timeout_ms}, timeout=15)

            assert (await call(0)).get("result") == {"echo": {"n": 0}}
            d0 = (await dc.result("status"))["counters"]
            a0 = (await ac.result("status"))["counters"]

            def flip(mtype, how):
                def mangle(frm, env):
                    if env["type"] != mtype:
                        return env
                    assert mp.is_sealed(env), env
                    if how == "payload":
                        return mp.flip_sealed_byte(env)
                    env = dict(env)
                    env["timestamp"] = mp.now_rfc3339(-0.5)     # bound as associated data
                    return env
                return mangle

            # the execute, in its ciphertext and in its header: D refuses, runs nothing
            for i, how in enumerate(("payload", "header")):
                relay.mangle = flip("execute", how)
                # under the retransmit interval (1 s): one attempt per call
                res = await call(1 + i, timeout_ms=900)
                assert "result" not in res, res
                assert res["error"]["data"]["code"] in ("timeout", "unreachable"), res
            assert len(calls) == 1
            d1 = (await dc.result("status"))["counters"]
            assert d1["bad_seals"] - d0["bad_seals"] == 2, d1
            errs = [m for m in relay.own if m["type"] == "error" and m["sender"] == d.id]
            assert [m["payload"]["code"] for m in errs] == ["bad_seal", "bad_seal"], errs

            # the execute_result on its way back: A refuses it
            relay.mangle = flip("execute_result", "payload")
            res = await call(3, timeout_ms=900)
            assert "result" not in res, res
            a1 = (await ac.result("status"))["counters"]
            assert a1["bad_seals"] - a0["bad_seals"] == 1, a1

            # honest again
            relay.mangle = None
            assert (await call(4)).get("result") == {"echo": {"n": 4}}
    arun(go())


# ---- 6. a stranger claiming another node's id ----------------------------------------------

def test_stranger_claiming_another_nodes_id(mesh):
    """A stranger S says it is B: a hello signed by S's key with sender B;
    then B's own hello (captured from B's listener) replayed, followed by a
    welcome B signed for S over A's challenge. S never becomes a peer of A,
    each attempt is counted, and the real B stays linked."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    stranger = mp.Key()
    c0 = counters(a)

    async def go():
        # (1) the plain lie
        s = await mp.Peer(stranger).open(a.listen)
        try:
            await s.handshake(claim=b.id)
            code, reason = await s.wait_closed(5.0)
        finally:
            await s.close()
        assert code == 1008, (code, reason)
        errs = [m for m in s.log if m["type"] == "error"]
        assert errs and errs[0]["payload"]["code"] == "bad_signature", s.log
        assert not [m for m in s.log if m["type"] in ("digest", "sync")]

        # (2) replay B's real hello, then borrow a welcome from B
        spy = await mp.Peer(stranger).open(b.listen)
        s = await mp.Peer(stranger).open(a.listen)
        try:
            b_hello = await spy.expect(lambda m: m["type"] == "hello", 5.0, "B's hello")
            a_hello = await s.expect(lambda m: m["type"] == "hello", 5.0, "A's hello")
            await s.send(b_hello.raw)
            a_welcome = await s.expect(lambda m: m["type"] in ("welcome", "error"), 5.0,
                                       "A's welcome to 'B'")
            assert a_welcome["type"] == "welcome" and a_welcome["recipient"] == b.id
            # ask B to sign A's challenge: B answers our hello with a welcome ...
            await spy.send(mp.envelope(stranger, "hello", {
                "protocol": mp.PROTOCOL, "listen": "",
                "challenge": a_hello["payload"]["challenge"]}))
            borrowed = await spy.expect(lambda m: m["type"] == "welcome", 5.0, "B's welcome")
            assert borrowed["payload"]["challenge"] == a_hello["payload"]["challenge"]
            # ... addressed to us, not to A
            await s.send(borrowed.raw)
            err = await s.expect(lambda m: m["type"] == "error", 5.0, "A's refusal")
            assert err["payload"]["code"] in ("bad_recipient", "bad_hello"), err
            # Before the hello completes, that refusal also closes the link (§4).
            code, _ = await s.wait_closed(5.0)
            assert code == 1008, code
        finally:
            await s.close()
        # (3) a welcome of our own signature for B is a forgery
        s = await mp.Peer(stranger).open(a.listen)
        try:
            a_hello = await s.expect(lambda m: m["type"] == "hello", 5.0, "A's hello")
            await s.send(mp.envelope(stranger, "welcome",
                                     {"challenge": a_hello["payload"]["challenge"]},
                                     recipient=a.id, sender=b.id))
            await s.wait_closed(5.0)
        finally:
            await s.close()
            await spy.close()
        assert not [m for m in s.log if m["type"] in ("digest", "sync")], s.log
    arun(go())
    c1 = counters(a)
    assert c1["forged"] - c0["forged"] >= 2, c1
    assert c1["malformed"] + c1["hello_failures"] > c0["malformed"] + c0["hello_failures"]
    assert peer_ids(a) == {b.id} and status(a)["peers"] == 1
    assert peer_ids(b) == {a.id}
    honest_check(mesh, a, "H6")
    # B is still A's B: a resource of B's reaches A and executes
    honest_check(mesh, b, "H6b")


# ---- 7. pinned URL answered by a different key -----------------------------------------

def test_pinned_url_answered_by_another_key(mesh):
    y = mesh.node("Y")
    wrong = mp.Key().id
    x = mesh.node("X", peers=["%s/#%s" % (y.listen, wrong)])
    wait_for(lambda: counters(x)["refused_pin"] > 0, 10.0, what="refused_pin on X")
    assert peer_ids(x) == set() and x.id not in peer_ids(y)
    # the connect command with a wrong pin fails as well
    p = x.cli("connect", "%s/#%s" % (y.listen, mp.Key().id))
    assert p.returncode != 0
    # the right pin links
    y.register("y1", "tool")
    z = mesh.node("Z", peers=["%s/#%s" % (y.listen, y.id)])
    wait_linked([(y, z)])
    wait_for(lambda: "y1" in ids(z), 5.0, what="y1 on Z")
    assert counters(z)["refused_pin"] == 0
    assert "y1" not in ids(x)


# ---- 8. a stranger joining a network-key mesh ------------------------------------------------

def test_network_key(mesh, tmp_path):
    secret = tmp_path / "net.key"
    secret.write_text("correct horse battery staple\n")
    secret2 = tmp_path / "net2.key"
    secret2.write_text("correct horse battery staple")        # trimmed: the same secret
    other = tmp_path / "other.key"
    other.write_text("not the secret of this mesh\n")
    a = mesh.node("A", extra=["--network-key", str(secret)])
    b = mesh.node("B", peers=[a], extra=["--network-key", str(secret2)])
    wait_linked([(a, b)])
    a.register("private-a", "tool")
    b.register("private-b", "tool")
    wait_for(lambda: {"private-a", "private-b"} <= set(ids(a)), 5.0, what="records on A")
    c = mesh.node("C", peers=[a], extra=["--network-key", str(other)])
    d = mesh.node("D", peers=[a])
    c.register("stranger-c", "tool")
    d.register("stranger-d", "tool")
    # both strangers dialed and were refused by A (C also refuses A's proof)
    wait_for(lambda: counters(a)["refused_network"] >= 2 and counters(c)["refused_network"] >= 1
             and all(("refusing %s" % n.id) in a.stderr() for n in (c, d)), 10.0,
             what="A refusing C and D")
    assert set(ids(c)) == {"stranger-c"} and set(ids(d)) == {"stranger-d"}
    assert peer_ids(a) == {b.id}
    assert c.id not in peer_ids(a) and a.id not in peer_ids(c)

    async def go():
        results = {}
        # without the key; with a made-up proof; with a proof from another session
        for name, kw in (("none", {}), ("random", {"proof": os.urandom(32).hex()})):
            p = await mp.Peer(mp.Key()).open(a.listen)
            try:
                await p.handshake(expect_welcome=False, **kw)
                results[name] = (await p.wait_closed(5.0), p)
            finally:
                await p.close()
        # a member's proof is bound to the challenge: reuse it in a new session
        member = mp.Key()
        m, _, _ = await linked_peer(a, member, network=secret.read_bytes())
        old_proof = mp.network_proof(secret.read_bytes(),
                                     m.node_hello["payload"]["challenge"], member.id)
        await m.close()
        p = await mp.Peer(member).open(a.listen)
        try:
            await p.handshake(expect_welcome=False, proof=old_proof)
            results["reused"] = (await p.wait_closed(5.0), p)
        finally:
            await p.close()
        for name, ((code, reason), p) in results.items():
            assert (code, reason) == (1008, "refused"), (name, code, reason)
            got = [x for x in p.log if x["type"] in ("digest", "sync", "announce", "alive")]
            assert not got, (name, got)
            errs = [x for x in p.log if x["type"] == "error"]
            assert not errs, (name, errs)     # nothing beyond "refused"
        # with the key: a member, and the node's proof checks
        m, records, _ = await linked_peer(a, mp.Key(), network=secret.read_bytes())
        await m.close()
        assert {"private-a", "private-b"} <= {r["resource_id"] for r in records}
    arun(go())
    assert counters(a)["refused_network"] >= 5
    assert set(ids(c)) == {"stranger-c"} and set(ids(d)) == {"stranger-d"}
    assert "stranger-c" not in ids(a) and "stranger-d" not in ids(a)
    assert "stranger-d" not in ids(b)
    honest_check(mesh, a, "H8", extra=["--network-key", str(secret)])


# ---- 9. trust file ---------------------------------------------------------------------------

def test_trust_file_and_sighup(mesh, tmp_path):
    b_id, c_id = node_id_of(mesh, "B"), node_id_of(mesh, "C")
    trust = tmp_path / "trust.txt"
    trust.write_text("# the only node A admits\n%s\n" % b_id)
    b = mesh.node("B")
    a = mesh.node("A", peers=[b], extra=["--trust", str(trust)])
    a.register("a1", "tool")
    wait_linked([(a, b)])
    c = mesh.node("C", peers=[a])
    assert c.id == c_id and b.id == b_id
    wait_for(lambda: counters(a)["refused_trust"] >= 1, 10.0, what="refused_trust on A")
    assert c.id not in peer_ids(a) and "a1" not in ids(c)

    async def stranger():
        p = await mp.Peer(mp.Key()).open(a.listen)
        try:
            await p.handshake(expect_welcome=False)
            closed = await p.wait_closed(5.0)
        finally:
            await p.close()
        assert closed == (1008, "refused"), closed
        assert not [m for m in p.log if m["type"] in ("welcome", "digest", "sync", "error")], p.log
    arun(stranger())
    # admit C
    trust.write_text("%s\n# C, added\n%s\n" % (b_id, c_id))
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: c.id in peer_ids(a), 20.0, what="C linked to A after SIGHUP")
    wait_for(lambda: "a1" in ids(c), 5.0, what="a1 on C")
    # drop B
    r0 = counters(a)["refused_trust"]
    trust.write_text("%s\n" % c_id)
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b.id not in peer_ids(a) and a.id not in peer_ids(b), 5.0,
             what="B's link closed after SIGHUP")
    assert c.id in peer_ids(a)
    # A keeps dialing B and refuses it each time
    wait_for(lambda: counters(a)["refused_trust"] > r0, 10.0, what="B refused again")
    assert b.id not in peer_ids(a)
    honest_check(mesh, c, "H9")


# ---- 10. plaintext absent from a relay's traffic ------------------------------------------------

def test_relay_never_sees_params_or_results(mesh):
    """A - R - D: every frame R receives or sends is recorded. Params, results
    and handler errors of calls from A to D never appear in them."""
    a, d = mesh.node("A"), mesh.node("D")
    marker_in = "param-" + os.urandom(8).hex()
    marker_out = "result-" + os.urandom(8).hex()
    marker_err = "error-" + os.urandom(8).hex()

    def handler(p):
        if p["method"] == "fail":
            raise RuntimeError(marker_err)
        return {"echo": p["params"], "extra": marker_out}

    async def go():
        async with relayed_handler(a, d, "secretive",
                                   lambda dc: dc.serve(handler)) as (relay, ac, _):
            params = {"secret": marker_in, "nested": {"list": [marker_in]}}
            res = await ac.call("execute_remote", {"resource_id": "secretive", "method": "echo",
                                                   "params": params, "timeout_ms": 5000},
                                timeout=10)
            assert res.get("result") == {"echo": params, "extra": marker_out}, res
            res = await ac.call("execute_remote", {"resource_id": "secretive", "method": "fail",
                                                   "params": {"s": marker_in},
                                                   "timeout_ms": 5000}, timeout=10)
            assert res["error"]["data"]["code"] == "handler_error", res
            assert marker_err in res["error"]["message"], res
            # the relay carried both calls, sealed
            assert len(relay.captured("execute", a.id)) == 2
            assert len(relay.captured("execute_result", d.id)) == 2
            for _, env in relay.forwarded:
                if env["type"] in ("execute", "execute_result"):
                    assert mp.is_sealed(env), env
            frames = relay.frames()
            for m in (marker_in, marker_out, marker_err):
                leaks = [f for f in frames if m in f]
                assert not leaks, "the relay saw %s in %s" % (m, leaks)
    arun(go())


# ---- more of 1 and 5: copies and answers made up by peers and relays -------------------

def test_forged_copy_does_not_suppress_the_genuine_broadcast(mesh):
    """Two of A's neighbours deliver the same broadcast: P2 first, with the
    signature broken (what a tampering relay on one path forwards), then P1
    the genuine one (the honest path). The forged copy is refused
    (`bad_signature`, `forged`) and must not make A drop the genuine copy as
    a duplicate: a refused message changes no state, the seen-id cache
    included."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    origin = mp.Key()

    async def go():
        p1, _, _ = await linked_peer(a)
        p2, _, _ = await linked_peer(a)
        try:
            f0 = (await in_thread(counters, a))["forged"]
            rec = mp.record(origin, "genuine1", "tool")
            genuine = announce(origin, rec, hops=1)
            forged = dict(genuine)
            forged["signature"] = ("0" if genuine["signature"][0] != "0" else "1") \
                + genuine["signature"][1:]
            await p2.send(forged)
            err = await p2.expect(lambda m: m["type"] == "error", 5.0, "bad_signature")
            assert err["payload"]["code"] == "bad_signature" and \
                err["payload"]["ref"] == genuine["id"], err
            await p1.send(genuine)
            # p1's marker travels behind the genuine copy on the same link
            await flush(p1, [a], "poison")
            assert (await in_thread(counters, a))["forged"] - f0 == 1
            return await in_thread(ids, a)
        finally:
            await p1.close()
            await p2.close()
    at_a = arun(go())
    assert "genuine1" in at_a, "A dropped the genuine broadcast after a forged copy of its id"
    wait_for(lambda: "genuine1" in ids(b), 5.0, what="genuine1 passed on to B")


def test_relay_injecting_answers(mesh):
    """A - R - D: R holds A's execute back and answers it itself. Made-up
    results (sealed with R's key but naming D, sealed or signed by R, naming
    D but signed by R) are refused (`bad_seal`, `forged`); a made-up `error`
    with a handler error (as a sealed unicast, as a link error) must not be
    the call's outcome either (§6.11: a caller accepts a result only from the
    node it sent the call to; relays may only report `unreachable`). When R
    lets the execute through, A returns D's real result."""
    a, d = mesh.node("A"), mesh.node("D")

    async def go():
        held = []
        outcomes = []
        async with relayed_handler(a, d, "truth", lambda dc: dc.serve(
                lambda p: {"real": p["params"]})) as (relay, ac, dc):

            def hold(frm, env):
                if env["type"] == "execute":
                    held.append(env)
                    return None
                return env

            async def status():
                return (await ac.result("status"))["counters"]

            async def attempt(n, inject, expect):
                """One held call: inject(call id) -> envelopes sent to A;
                expect(c0, c1): A has handled them. Returns (outcome seen
                before the execute was let through, the final outcome)."""
                relay.mangle = hold
                held.clear()
                c0 = await status()
                fut = await ac.send_request("execute_remote", {
                    "resource_id": "truth", "method": "m", "params": {"n": n},
                    "timeout_ms": 8000})
                await wait_until(lambda: held, 5.0, "the execute at the relay")
                for env in inject(held[0]["id"]):
                    await relay.send_to(a.id, env)
                deadline = asyncio.get_running_loop().time() + 5.0
                while not expect(c0, await status()):
                    assert asyncio.get_running_loop().time() < deadline, \
                        "A did not handle the injected messages: %s" % (await status())
                    await asyncio.sleep(0.05)
                early = fut.result() if fut.done() else None
                relay.mangle = None
                await relay.send_to(d.id, held[0])
                final = early or await asyncio.wait_for(fut, 15)
                return early, final

            k = relay.key

            def results(cid):
                fake = {"ref": cid, "result": {"real": {"n": 666}}}
                return [mp.sealed_envelope(k, "execute_result", fake, a.id, sender=d.id),
                        mp.sealed_envelope(k, "execute_result", fake, a.id),
                        mp.envelope(k, "execute_result", fake, recipient=a.id),
                        mp.envelope(k, "execute_result", fake, recipient=a.id, sender=d.id)]
            early, final = await attempt(1, results, lambda c0, c1: (
                c1["bad_seals"] - c0["bad_seals"] >= 1 and c1["forged"] - c0["forged"] >= 3))
            assert early is None and final.get("result") == {"real": {"n": 1}}, (early, final)

            def made_up(cid):
                return {"ref": cid, "code": "handler_error", "reason": "made up by the relay"}
            for n, inject in ((2, lambda cid: [mp.sealed_envelope(k, "error", made_up(cid),
                                                                    a.id)]),
                              (3, lambda cid: [mp.envelope(k, "error", made_up(cid),
                                                           recipient=a.id)])):
                outcomes.append(await attempt(n, inject, lambda c0, c1: (
                    c1["errors_received"] > c0["errors_received"])))
        return outcomes
    outcomes = arun(go())
    wrong = ["%s -> %s" % (how, (early or final).get("error"))
             for (early, final), (n, how) in zip(outcomes, ((2, "as a sealed unicast"),
                                                            (3, "as a link error")))
             if early is not None or final.get("result") != {"real": {"n": n}}]
    assert not wrong, "a relay's made-up handler error became the call's outcome: %s" % wrong
