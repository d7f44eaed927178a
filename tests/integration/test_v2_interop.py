"""Wire v2 between real nodes and the independent peer (mzproto.py, written
from docs/PROTOCOL.md §10): the hello negotiating v2, signed broadcast frames
relayed as the same bytes, a sealed execute frame through a relay node to a
host, envelopes kept for peers that do not offer v2, and clear refusals of
broken frames while the node keeps serving."""
import asyncio
import struct

import mzproto as mp
from execlib import ApiConn, exec_cli, handler, wait_known
from execlib import procs  # noqa: F401 -- a fixture
from seclib import ids, status, wait_linked
from test_interop import arun, wait_for_async


async def v2_peer(node, key=None):
    """A peer offering wire v2, linked up with NODE (§6.1-§6.3, §10.7)."""
    p = await mp.Peer(key or mp.Key(), wire2=True).open(node.listen)
    await p.handshake()
    assert p.node_hello["payload"].get("wire") == [1, 2], p.node_hello
    assert p.node_welcome["payload"].get("wire") == 2, p.node_welcome
    assert p.v2
    await p.link_up()
    return p


async def serve_echo(b):
    """An API client on B hosting echo2; returns (conn, serving task)."""
    host = await ApiConn.open(b.api)
    await host.result("register_resource", {"resource_id": "echo2", "resource_type": "tool",
                                            "handler": True})
    serving = asyncio.ensure_future(host.serve(
        lambda p: {"got": p["params"], "method": p["method"], "caller": p["caller"]}))
    return host, serving


def test_v2_broadcast_frames_and_sealed_execute_through_relay(mesh):
    """P - A - B, every link v2: B's announce reaches P as B's signed frame
    (header with the envelope signature), P's sealed execute frame is relayed
    by A from its header alone, and B answers with a sealed frame."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key = mp.Key()

    async def go():
        peer = await v2_peer(a, key)
        # the node's link messages after the hello exchange are frames
        assert any(m.frame is not None and m["type"] == "digest" for m in peer.log), peer.log
        host, serving = await serve_echo(b)
        try:
            ann = await peer.expect(lambda m: m["type"] == "announce" and m["sender"] == b.id
                                    and m["payload"]["record"]["resource_id"] == "echo2",
                                    5.0, "B's announce of echo2")
            assert ann.frame is not None and ann.frame["flags"] & mp.F_SIGNED, ann
            assert ann.frame["hdr_len"] == mp.FRAME_BROADCAST_HDR_LEN and ann["hops"] == 1
            # the frame maps to an envelope whose own signature is B's (§10.8)
            assert mp.verify_envelope(ann), ann
            assert mp.verify_record(ann["payload"]["record"])
            params = {"s": "caf\u00e9", "n": [1, 2.5, None]}
            relayed0 = (await asyncio.to_thread(status, a))["counters"]["frames_relayed"]
            h, res = await peer.request_frame("execute", {"resource_id": "echo2", "method": "m",
                                                          "params": params,
                                                          "timeout_ms": 5000}, recipient=b.id)
            assert res.frame is not None and res.sealed, res
            assert res["type"] == "execute_result" and res["sender"] == b.id
            assert res["recipient"] == key.id and res["hops"] == 1
            assert res["payload"] == {"ref": h["id"].hex(),
                                      "result": {"got": params, "method": "m", "caller": key.id}}
            relayed = (await asyncio.to_thread(status, a))["counters"]["frames_relayed"]
            assert relayed >= relayed0 + 2, (relayed0, relayed)
        finally:
            serving.cancel()
            await host.close()
            await peer.close()
    arun(go())


def test_peer_without_v2_keeps_envelopes(mesh):
    """A text-only peer Q beside a v2 mesh: B's announce, a frame between the
    nodes, reaches Q from A as B's JSON envelope, and Q's sealed envelope
    execute through A gets an envelope answer."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[a])
    wait_linked([(a, b)])
    key = mp.Key()

    async def go():
        q = await mp.Peer(key).open(a.listen)
        await q.handshake()
        assert "wire" not in q.node_welcome["payload"] and not q.v2
        await q.link_up()
        host, serving = await serve_echo(b)
        try:
            ann = await q.expect(lambda m: m["type"] == "announce" and m["sender"] == b.id,
                                 5.0, "B's announce")
            assert ann.frame is None and isinstance(ann.raw, str)
            assert mp.verify_envelope(ann) and ann["hops"] == 1, ann
            env, res = await q.request("execute", {"resource_id": "echo2", "method": "m",
                                                   "params": {"x": 1}}, recipient=b.id)
            assert res.frame is None and res.sealed, res
            assert res["payload"]["result"]["got"] == {"x": 1}, res
            assert all(m.frame is None for m in q.log)
        finally:
            serving.cancel()
            await host.close()
            await q.close()
    arun(go())


def _frame(key, to, mtype="query", plain=b"{}"):
    h = mp.frame_header(mtype, bytes.fromhex(key.id), bytes.fromhex(to))
    return bytearray(mp.seal_frame(h, plain, key.shared_key(to))), h["id"].hex()


def test_broken_frames_refused_clearly_and_node_keeps_serving(mesh):
    """Lying lengths, a truncated frame, an oversized header, unknown flags
    and a frame on a link that did not negotiate v2: each gets an error
    naming the problem; the links stay up and the node keeps answering."""
    a = mesh.node("A")
    key = mp.Key()

    async def go():
        p = await v2_peer(a, key)
        other = await v2_peer(a)
        try:
            cases = []
            f, fid = _frame(key, a.id)
            struct.pack_into(">I", f, 12, struct.unpack_from(">I", f, 12)[0] + 40)
            cases.append((bytes(f), fid, "bad_frame", "body length"))
            f, fid = _frame(key, a.id)
            struct.pack_into(">I", f, 12, struct.unpack_from(">I", f, 12)[0] - 8)
            cases.append((bytes(f), fid, "bad_frame", "body length"))
            f, fid = _frame(key, a.id)
            cases.append((bytes(f[:100]), fid, "bad_frame", "truncated"))
            f, fid = _frame(key, a.id)
            struct.pack_into(">H", f, 4, 264)
            cases.append((bytes(f), fid, "too_large", "header"))
            f, fid = _frame(key, a.id)
            struct.pack_into(">H", f, 6, 0x0011)
            cases.append((bytes(f), fid, "bad_frame", "flag"))
            m0 = (await asyncio.to_thread(status, a))["counters"]["malformed"]
            for buf, fid, code, word in cases:
                await p.ws.send(buf)
                err = await p.expect(lambda m: m["type"] == "error"
                                     and m["payload"].get("ref") == fid
                                     and m["payload"].get("code") == code, 5.0,
                                     "the refusal of a frame with a bad %s" % word)
                assert word in err["payload"]["reason"].lower(), err
            m1 = (await asyncio.to_thread(status, a))["counters"]["malformed"]
            assert m1 >= m0 + len(cases), (m0, m1)
            # both links still serve: a sealed query frame from each is answered
            for peer in (p, other):
                _, res = await peer.request_frame("query", {})
                assert res["type"] == "query_result" and res.sealed, res
            # the same frame again is a replay (§5.2 with the header's id)
            f, fid = _frame(key, a.id)
            for want in ("query_result", "error"):
                await p.ws.send(bytes(f))
                got = await p.expect(lambda m: m["payload"].get("ref") == fid, 5.0, want)
                assert got["type"] == want, got
            assert got["payload"]["code"] == "replayed", got
            # a frame from a peer that did not offer v2: refused, link kept
            q = await mp.Peer(mp.Key()).open(a.listen)
            await q.handshake()
            await q.link_up()
            f, _ = _frame(q.key, a.id)
            await q.ws.send(bytes(f))
            err = await q.expect(lambda m: m["type"] == "error", 5.0, "the refusal")
            assert "not negotiated wire v2" in err["payload"]["reason"], err
            _, res = await q.request("query", {})
            assert res["type"] == "query_result", res
            await q.close()
        finally:
            await p.close()
            await other.close()
    arun(go())
    assert ids(a) is not None


def test_mixed_mesh_with_a_node_that_speaks_only_envelopes(mesh, procs):
    """O - B - C where O runs --wire1 (as an older node does): B and C speak
    frames, O only envelopes; records reach O as envelopes B converted, and
    calls both ways work, B relaying envelopes as text on its v2 link."""
    c = mesh.node("C")
    b = mesh.node("B", peers=[c])
    o = mesh.node("O", peers=[b], extra=("--wire1",))
    wait_linked([(o, b), (b, c)])
    procs.serve(c, "echoC", handler("echo.sh"), caps=["echo"])
    procs.serve(o, "echoO", handler("echo.sh"), caps=["echo"])
    wait_known(o, "echoC")
    wait_known(c, "echoO")
    out = exec_cli(o, "echoC", "m", {"x": 1})
    assert out.rc == 0 and out.json["input"]["caller"] == o.id, out
    out = exec_cli(c, "echoO", "m", {"y": 2})
    assert out.rc == 0 and out.json["input"]["caller"] == c.id, out
    assert status(o)["counters"]["frames_in"] == 0
    assert status(b)["counters"]["frames_in"] > 0 and status(c)["counters"]["frames_in"] > 0
