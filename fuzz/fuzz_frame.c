/* The binary frame decoder (src/wire/frame.h): mz__frame_decode on any
 * bytes, then opening (sealed, with the harness's key), verifying (signed)
 * and the relay's hop bump. Beyond "no crash", checks that
 *  - a refused frame leaves the output header untouched;
 *  - a decoded header re-encodes to exactly its bytes (this version's
 *    length), and its lengths add up to the input;
 *  - a relay's hop bump changes one byte, the frame still decodes, and it
 *    opens or verifies exactly as it did before;
 *  - the input as a body seals and opens back to itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wire/frame.h"

/* The key of the seed corpus (fuzz/corpus/frame/, made by mzproto.py). */
static const uint8_t s_key[32] = { 0x6d, 0x7a, 0x32 };

static void s_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_frame: INVARIANT %s: %s\n", what, detail ? detail : "");
    abort();
}

/* MZ_OK when the body opens / verifies, else the refusal. */
static mz_status s_auth(const uint8_t *buf, size_t len, const mz_frame_hdr *h)
{
    static uint8_t plain[MZ_DEFAULT_MAX_FRAME];
    const uint8_t *p;
    size_t pl;
    mz_err e;

    if (h->flags & MZ_FRAME_F_SEALED)
        return mz__frame_open(buf, len, h, s_key, plain, &pl, &e);
    return mz__frame_verify(buf, len, h, &p, &pl, &e);
}

static void s_round_trip(const uint8_t *data, size_t size)
{
    static uint8_t out[MZ_DEFAULT_MAX_FRAME + MZ_FRAME_HDR_LEN + 64];
    static uint8_t plain[MZ_DEFAULT_MAX_FRAME];
    uint8_t src[32], dst[32];
    mz_frame_hdr h, d;
    size_t n = 0, pl = 0;
    mz_err e;

    if (size > MZ_DEFAULT_MAX_FRAME - MZ_FRAME_HDR_LEN - MZ_FRAME_TAG_LEN)
        return;
    memset(src, 1, sizeof src);
    memset(dst, 2, sizeof dst);
    mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, src, dst);
    if (mz__frame_seal(&h, data, size, s_key, out, sizeof out, &n, &e) != MZ_OK)
        s_fail("sealing the input", e.msg);
    if (mz__frame_decode(out, n, 0, &d, &e) != MZ_OK)
        s_fail("a sealed frame does not decode", e.msg);
    if (mz__frame_open(out, n, &d, s_key, plain, &pl, &e) != MZ_OK || pl != size ||
        (size && memcmp(plain, data, size) != 0))
        s_fail("a sealed frame does not open to its body", e.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t copy[MZ_DEFAULT_MAX_FRAME + 1];
    uint8_t enc[MZ_FRAME_HDR_LEN];
    mz_frame_hdr h, d;
    mz_status before, after, hop;
    mz_err e;

    if (sodium_init() < 0)
        abort();
    s_round_trip(data, size);
    if (size > sizeof copy)
        return 0;
    memset(&h, 0xee, sizeof h);
    memcpy(&d, &h, sizeof h);
    if (mz__frame_decode(data, size, 0, &h, &e) != MZ_OK) {
        if (memcmp(&h, &d, sizeof h) != 0)
            s_fail("a refused frame changed the output header", e.msg);
        if (e.msg[0] == '\0')
            s_fail("a refusal without a message", NULL);
        return 0;
    }
    if ((size_t)h.hdr_len + h.body_len != size)
        s_fail("lengths do not add up", NULL);
    mz__frame_hdr_encode(&h, enc);
    if (h.hdr_len == MZ_FRAME_HDR_LEN && memcmp(enc, data, MZ_FRAME_HDR_LEN) != 0)
        s_fail("the header does not re-encode to its bytes", NULL);
    before = s_auth(data, size, &h);

    memcpy(copy, data, size);
    hop = mz__frame_relay_hop(copy, size, &e);
    for (size_t i = 0; i < size; i++) {
        bool hop_byte = i == MZ_FRAME_OFF_HOPS;

        if (copy[i] != data[i] && !(hop_byte && hop == MZ_OK))
            s_fail("the hop bump changed another byte", NULL);
    }
    if (hop == MZ_OK && copy[MZ_FRAME_OFF_HOPS] != data[MZ_FRAME_OFF_HOPS] + 1)
        s_fail("the hop bump did not add one", NULL);
    if (hop != MZ_OK && hop != MZ_ELIMIT)
        s_fail("a decoded frame's hop bump failed otherwise than at its limit", e.msg);
    if (hop == MZ_OK) {
        if (mz__frame_decode(copy, size, 0, &d, &e) != MZ_OK)
            s_fail("a relayed frame does not decode", e.msg);
        after = s_auth(copy, size, &d);
        if (after != before)
            s_fail("relaying changed whether the frame authenticates", NULL);
    }
    return 0;
}
