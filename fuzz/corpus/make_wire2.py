#!/usr/bin/python3
"""Writes the seed corpora of fuzz_frame and fuzz_stream (fuzz/README.md):
v2 frames made by the independent codec of tests/integration/mzproto.py with
fuzz_frame's key, and operation scripts for fuzz_stream. Replaces
fuzz/corpus/frame/gen-* and fuzz/corpus/stream/gen-*.

    /usr/bin/python3 fuzz/corpus/make_wire2.py"""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import mzproto as mz  # noqa: E402

KEY = bytes([0x6d, 0x7a, 0x32]) + bytes(29)     # s_key in fuzz/fuzz_frame.c
ME = mz.Key(mz.nacl.signing.SigningKey(bytes(range(32))))
SRC, DST = bytes.fromhex(ME.id), bytes([0xb2]) * 32
T = 1764000000000                                # fixed, so seeds are stable


def hdr(mtype, dst=DST, **kw):
    return mz.frame_header(mtype, SRC, dst, time_ms=T, msg_id=bytes(range(16)), **kw)


def frames():
    body = b'{"resource_id":"echo","method":"m","params":{"text":"hello"}}'
    n = bytes(range(24))
    yield "sealed-execute", mz.seal_frame(hdr("execute"), body, KEY, n)
    yield "sealed-head", mz.seal_frame(hdr("execute_result", flags=mz.F_HEAD, stream=8,
                                           aux=40000), b"x" * 300, KEY, n)
    yield "sealed-head-end", mz.seal_frame(hdr("execute", flags=mz.F_HEAD | mz.F_END, stream=9,
                                               aux=len(body)), body, KEY, n)
    yield "sealed-data-end", mz.seal_frame(hdr("data", flags=mz.F_END, stream=8, aux=39700),
                                           b"y" * 300, KEY, n)
    yield "sealed-window", mz.seal_frame(hdr("window_update", stream=8, aux=524288), b"", KEY,
                                         n)
    yield "sealed-reset", mz.seal_frame(hdr("reset", stream=8, aux=2), b"too large", KEY, n)
    yield "sealed-notify", mz.seal_frame(hdr("notify", stream=8), b'{"progress":1}', KEY, n)
    yield "sealed-relayed", mz.relay_frame(mz.seal_frame(hdr("query", hops=14), b"{}", KEY, n))
    yield "signed-announce", mz.sign_frame(hdr("announce", dst=None), b'{"op":"upsert"}', ME)
    yield "signed-hello", mz.sign_frame(hdr("hello", dst=None), b'{"listen":""}', ME)
    yield "signed-error-link", mz.sign_frame(hdr("error", dst=None, hop_limit=1),
                                             b'{"code":"x"}', ME)
    yield "signed-unicast", mz.sign_frame(hdr("execute"), body, ME)
    good = mz.seal_frame(hdr("query"), b"{}", KEY, n)
    yield "bad-length", good[:12] + (99).to_bytes(4, "big") + good[16:]
    yield "bad-hdrlen", good[:4] + (264).to_bytes(2, "big") + good[6:]
    yield "bad-truncated", good[:100]


# fuzz_stream scripts: op bytes (low 7 bits % 7: 0 open, 1 answer, 2 send,
# 3 consume, 4 notify, 5 reset; high bit: B instead of A; >= 0xf0: a
# hostile header for C, 14 bytes).
SCRIPTS = {
    "small-call": bytes([0, 0, 10, 2, 0, 0x81, 0, 0, 20, 0x82, 0]),
    "big-flow": bytes([0, 0x30, 0x00, 2, 7, 0x83, 0, 0x10, 0, 2, 7, 0x83, 0, 0x10, 0, 2, 7]),
    "notify": bytes([0, 0, 50, 2, 0, 0x84, 0, 0, 40, 0x81, 0, 0, 9, 0x82, 0, 3, 0, 0, 90]),
    "reset": bytes([0, 0x10, 0, 2, 1, 0x85, 0, 5, 0]),
    "both-open": bytes([0, 0, 9, 0x80, 0, 9, 2, 0, 0x82, 0, 1, 0, 0, 3, 0x81, 0, 0, 3]),
    "hostile": bytes([0xf0, 0, 0x04, 3, 0, 0, 0, 0x01, 0, 0, 0, 0, 0x10, 2, 0, 0,
                      0xf0, 2, 0x08, 3, 0, 0, 0, 0, 0x20, 1, 0, 0x10, 0, 0]),
}


def main():
    for d, items in (("frame", dict(frames())), ("stream", SCRIPTS)):
        for old in glob.glob(os.path.join(HERE, d, "gen-*")):
            os.remove(old)
        for name, data in items.items():
            with open(os.path.join(HERE, d, "gen-" + name), "wb") as f:
                f.write(data)
    print("fuzz corpora written: frame %d, stream %d" % (len(dict(frames())), len(SCRIPTS)))


if __name__ == "__main__":
    main()
