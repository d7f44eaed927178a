"""Wire v2 frames (PROTOCOL.md §10): the independent Python codec in
mzproto.py, written from the document, against the C codec (src/wire/frame.c,
stream.c) through the unit test program's helper modes:
`test_frame --emit KEY` prints frames the C code made, `test_frame --check KEY`
decodes, opens or verifies frames Python made. Both must agree on every
accepted frame and on every refusal."""
import os
import subprocess

import pytest

import meshlib
import mzproto as mz

KEY = bytes(range(32))
BUILD = os.environ.get("MZ_BUILD_DIR") or os.path.dirname(meshlib.BIN)
TOOL = os.path.join(BUILD, "test_frame")
B_ID = bytes([0xb2]) * 32      # the peer id the C helper addresses


@pytest.fixture(scope="module")
def emitted():
    if not os.path.exists(TOOL):
        pytest.skip("test_frame not built (cmocka missing)")
    out = subprocess.run([TOOL, "--emit", KEY.hex()], capture_output=True, text=True,
                         timeout=meshlib.CLI_TIMEOUT, check=True).stdout
    frames = []
    for line in out.splitlines():
        name, hexed = line.split()
        frames.append((name, bytes.fromhex(hexed)))
    return frames


def check(frames):
    """The C codec's verdict on each frame: ("OK", plaintext) or ("ERR", status)."""
    res = subprocess.run([TOOL, "--check", KEY.hex()], input="".join(f.hex() + "\n"
                         for f in frames), capture_output=True, text=True,
                         timeout=meshlib.CLI_TIMEOUT, check=True).stdout.splitlines()
    assert len(res) == len(frames), res
    out = []
    for line in res:
        word, rest = line.split(" ", 1)
        out.append(("OK", bytes.fromhex(rest)) if word == "OK" else ("ERR", rest.split()[0]))
    return out


def test_c_sealed_frame_opens_in_python(emitted):
    frames = dict(emitted[:3])
    h, plain = mz.open_frame(frames["sealed"], KEY)
    assert h["name"] == "execute" and h["hops"] == 0 and h["hop_limit"] == 16
    assert h["dst"] == B_ID and h["hdr_len"] == mz.FRAME_HDR_LEN
    assert mz.loads_strict(plain.decode()) == {"resource_id": "echo", "method": "m",
                                                "params": {}}
    # The relay changed the hops byte and nothing else; the seal still holds.
    relayed = frames["relayed"]
    diff = [i for i in range(len(relayed)) if relayed[i] != frames["sealed"][i]]
    assert diff == [9]
    h2, plain2 = mz.open_frame(relayed, KEY)
    assert h2["hops"] == 1 and plain2 == plain
    assert mz.relay_frame(frames["sealed"]) == relayed
    with pytest.raises(mz.SealError):
        mz.open_frame(frames["sealed"], bytes(32))


def test_c_signed_frame_verifies_in_python(emitted):
    frames = dict(emitted[:3])
    h, plain = mz.verify_frame(frames["signed"])
    assert h["name"] == "event" and h["dst"] == bytes(32)
    assert plain == b'{"topic":"t","data":1}'
    forged = bytearray(frames["signed"])
    forged[mz.FRAME_HDR_LEN] ^= 1
    with pytest.raises(Exception):
        mz.verify_frame(bytes(forged))


def test_c_stream_chunks_follow_the_document(emitted):
    chunks = [f for name, f in emitted if name == "chunk"]
    assert len(chunks) == 3                      # 40,000 bytes in 16 KiB chunks
    body, sid = b"", None
    for i, f in enumerate(chunks):
        h, plain = mz.open_frame(f, KEY)
        sid = sid or h["stream"]
        assert h["stream"] == sid != 0
        if i == 0:
            assert h["name"] == "execute_result" and h["flags"] & mz.F_HEAD
            assert h["aux"] == 40000
        else:
            assert h["name"] == "data" and not h["flags"] & mz.F_HEAD
            assert h["aux"] == len(body)         # the chunk's offset
        assert bool(h["flags"] & mz.F_END) == (i == len(chunks) - 1)
        assert len(plain) <= 16384
        body += plain
    assert body == bytes(ord("a") + i % 26 for i in range(40000))


def test_python_frames_accepted_by_c():
    me = mz.Key()
    src = bytes.fromhex(me.id)
    plain = b'{"resource_id":"r","method":"m","params":{"x":[1,2,3]}}'
    sealed = mz.seal_frame(mz.frame_header("execute", src, B_ID), plain, KEY)
    head = mz.seal_frame(mz.frame_header("execute", src, B_ID, flags=mz.F_HEAD, stream=8,
                                         aux=100000), plain, KEY)
    data = mz.seal_frame(mz.frame_header("data", src, B_ID, flags=mz.F_END, stream=8,
                                         aux=99999), b"x", KEY)
    signed = mz.sign_frame(mz.frame_header("announce", src), b'{"op":"upsert"}', me)
    hello = mz.sign_frame(mz.frame_header("hello", src), b"{}", me)
    assert mz.frame_header("hello", src)["hop_limit"] == 1
    relayed = mz.relay_frame(sealed)
    got = check([sealed, head, data, signed, hello, relayed])
    assert got == [("OK", plain), ("OK", plain), ("OK", b"x"), ("OK", b'{"op":"upsert"}'),
                   ("OK", b"{}"), ("OK", plain)]


def _bad_frames():
    """Frames both codecs must refuse, with the C status each gets."""
    src = bytes.fromhex(mz.Key().id)
    good = mz.seal_frame(mz.frame_header("query", src, B_ID), b"{}", KEY)

    def patch(off, val):
        b = bytearray(good)
        b[off:off + len(val)] = val
        return bytes(b)

    return [
        (good[:100], "EPROTO"),                               # truncated
        (good + b"\0", "EPROTO"),                             # trailing byte
        (patch(12, (17).to_bytes(4, "big")), "EPROTO"),       # lying body length
        (patch(0, b"{{"), "EPROTO"),                          # not a frame
        (patch(2, b"\x03"), "EPROTO"),                        # unknown version
        (patch(3, b"\x7f"), "EPROTO"),                        # unknown type
        (patch(4, (264).to_bytes(2, "big")), "ELIMIT"),       # oversized header
        (patch(6, b"\x00\x03"), "EPROTO"),                    # sealed and signed
        (patch(88, bytes(32)), "EPROTO"),                     # unicast to nobody
        (patch(9, b"\x10"), "EPROTO"),                        # hops at the limit
        (patch(10, b"\x00\x01"), "EPROTO"),                   # reserved
        (patch(200, bytes([good[200] ^ 1])) if len(good) > 200 else patch(150, b"\x01"),
         "ESIG"),                                             # altered body
        (patch(40, bytes(16)), "ESIG"),                       # altered message id
        (patch(12, (0x7ffffff0).to_bytes(4, "big")), "ELIMIT"),   # over the frame limit
    ]


def test_refusals_agree():
    bad = _bad_frames()
    verdicts = check([f for f, _ in bad])
    for (frame, want), (word, status) in zip(bad, verdicts):
        assert (word, status) == ("ERR", want), frame.hex()[:64]
        with pytest.raises((mz.FrameError, mz.SealError)):
            mz.open_frame(frame, KEY)
