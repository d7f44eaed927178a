/* The binary frame codec (src/wire/frame.h): header round trips, sealing
 * and signing, the relay's hop bump, and every refusal of the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "meshzero/msg.h"
#include "wire/frame.h"
#include "wire/message.h"
#include "wire/stream.h"

static const uint8_t KEY[32] = { 7, 7, 7 };
static uint8_t A[32], B[32];

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    memset(A, 0xa1, sizeof A);
    memset(B, 0xb2, sizeof B);
    return 0;
}

/* A sealed execute of the given body into buf; returns its length. */
static size_t sealed(uint8_t *buf, size_t cap, const char *body, mz_frame_hdr *h)
{
    size_t n = 0;
    mz_err e;

    mz__frame_hdr_init(h, MZ_FRAME_EXECUTE, A, B);
    assert_int_equal(mz__frame_seal(h, (const uint8_t *)body, strlen(body), KEY, buf, cap, &n,
                                    &e), MZ_OK);
    assert_int_equal(n, mz__frame_sealed_len(strlen(body)));
    return n;
}

static void expect_refusal(const uint8_t *buf, size_t len, mz_status code, const char *text)
{
    mz_frame_hdr h;
    mz_err e = { 0 };

    assert_int_equal(mz__frame_decode(buf, len, 0, &h, &e), code);
    if (strstr(e.msg, text) == NULL)
        fail_msg("message \"%s\" does not say \"%s\"", e.msg, text);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- round trips ----------------------------------------------------------- */

static void test_sealed_round_trip(void **state)
{
    uint8_t buf[1024], plain[1024];
    const char *body = "{\"resource_id\":\"echo\",\"method\":\"m\",\"params\":{\"x\":1}}";
    mz_frame_hdr h, d;
    size_t n, pl = 0;
    mz_err e;

    (void)state;
    n = sealed(buf, sizeof buf, body, &h);
    assert_int_equal(buf[0], 'm');
    assert_int_equal(buf[1], 'z');
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    assert_int_equal(d.type, MZ_FRAME_EXECUTE);
    assert_int_equal(d.hdr_len, MZ_FRAME_HDR_LEN);
    assert_int_equal(d.flags, MZ_FRAME_F_SEALED);
    assert_int_equal(d.hop_limit, MZ_FRAME_DEFAULT_HOP_LIMIT);
    assert_int_equal(d.hops, 0);
    assert_int_equal(d.body_len, strlen(body) + MZ_FRAME_TAG_LEN);
    assert_true(d.time_ms == h.time_ms && d.time_ms > 0);
    assert_memory_equal(d.id, h.id, MZ_FRAME_ID_LEN);
    assert_memory_equal(d.src, A, 32);
    assert_memory_equal(d.dst, B, 32);
    assert_memory_equal(d.nonce, h.nonce, MZ_FRAME_NONCE_LEN);
    assert_int_equal(mz__frame_open(buf, n, &d, KEY, plain, &pl, &e), MZ_OK);
    assert_int_equal(pl, strlen(body));
    assert_memory_equal(plain, body, pl);
    /* In place: the plaintext overwrites the ciphertext. */
    assert_int_equal(mz__frame_open(buf, n, &d, KEY, buf + d.hdr_len, &pl, &e), MZ_OK);
    assert_memory_equal(buf + d.hdr_len, body, pl);
}

static void test_seal_in_place_and_fields(void **state)
{
    uint8_t buf[512], plain[512];
    mz_frame_hdr h, d;
    size_t n = 0, pl = 0;
    mz_err e;

    (void)state;
    mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE_RESULT, A, B);
    h.flags = MZ_FRAME_F_HEAD;
    h.stream_id = 0x01020304;
    h.aux = 0x1122334455667788ULL;
    memcpy(buf + MZ_FRAME_HDR_LEN, "hello", 5);
    assert_int_equal(mz__frame_seal(&h, buf + MZ_FRAME_HDR_LEN, 5, KEY, buf, sizeof buf, &n, &e),
                     MZ_OK);
    /* Fixed offsets, big-endian. */
    assert_int_equal(buf[MZ_FRAME_OFF_STREAM], 0x01);
    assert_int_equal(buf[MZ_FRAME_OFF_STREAM + 3], 0x04);
    assert_int_equal(buf[MZ_FRAME_OFF_AUX], 0x11);
    assert_int_equal(buf[MZ_FRAME_OFF_AUX + 7], 0x88);
    assert_int_equal(buf[MZ_FRAME_OFF_BODY_LEN + 3], 5 + MZ_FRAME_TAG_LEN);
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    assert_int_equal(d.flags, MZ_FRAME_F_HEAD | MZ_FRAME_F_SEALED);
    assert_int_equal(d.stream_id, 0x01020304);
    assert_true(d.aux == 0x1122334455667788ULL);
    assert_int_equal(mz__frame_open(buf, n, &d, KEY, plain, &pl, &e), MZ_OK);
    assert_int_equal(pl, 5);
    assert_memory_equal(plain, "hello", 5);
}

static void test_signed_round_trip(void **state)
{
    uint8_t buf[1024];
    const uint8_t *pl = NULL;
    mz_identity *id = NULL, *other = NULL;
    mz_frame_hdr h, d;
    size_t n = 0, pn = 0;
    mz_err e;

    (void)state;
    assert_int_equal(mz_identity_generate(&id, &e), MZ_OK);
    assert_int_equal(mz_identity_generate(&other, &e), MZ_OK);
    mz__frame_hdr_init(&h, MZ_FRAME_EVENT, mz_identity_pk(id), NULL);
    assert_int_equal(mz__frame_sign(&h, (const uint8_t *)"{\"topic\":\"t\"}", 13, id, buf,
                                    sizeof buf, &n, &e), MZ_OK);
    assert_int_equal(n, mz__frame_signed_len(13));
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    assert_int_equal(d.flags, MZ_FRAME_F_SIGNED);
    assert_true(mz__frame_dst_is_all(&d));
    assert_int_equal(mz__frame_verify(buf, n, &d, &pl, &pn, &e), MZ_OK);
    assert_int_equal(pn, 13);
    assert_memory_equal(pl, "{\"topic\":\"t\"}", 13);
    /* The hop count is outside the signature; the body is not. */
    assert_int_equal(mz__frame_relay_hop(buf, n, &e), MZ_OK);
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    assert_int_equal(d.hops, 1);
    assert_int_equal(mz__frame_verify(buf, n, &d, &pl, &pn, &e), MZ_OK);
    buf[MZ_FRAME_HDR_LEN + 2] ^= 1;
    assert_int_equal(mz__frame_verify(buf, n, &d, &pl, &pn, &e), MZ_ESIG);
    assert_non_null(strstr(e.msg, "bad signature"));
    /* A source that is not the signer. */
    mz__frame_hdr_init(&h, MZ_FRAME_EVENT, mz_identity_pk(other), NULL);
    assert_int_equal(mz__frame_sign(&h, NULL, 0, id, buf, sizeof buf, &n, &e), MZ_EINVAL);
    /* Not signed. */
    d.flags = MZ_FRAME_F_SEALED;
    assert_int_equal(mz__frame_verify(buf, n, &d, &pl, &pn, &e), MZ_EPROTO);
    mz_identity_free(id);
    mz_identity_free(other);
}

static void test_link_frame(void **state)
{
    uint8_t buf[512];
    mz_identity *id = NULL;
    mz_frame_hdr h, d;
    size_t n = 0;
    mz_err e;

    (void)state;
    assert_int_equal(mz_identity_generate(&id, &e), MZ_OK);
    mz__frame_hdr_init(&h, MZ_FRAME_HELLO, mz_identity_pk(id), NULL);
    assert_int_equal(h.hop_limit, 1);
    assert_int_equal(mz__frame_sign(&h, (const uint8_t *)"{}", 2, id, buf, sizeof buf, &n, &e),
                     MZ_OK);
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    /* Never forwarded. */
    assert_int_equal(mz__frame_relay_hop(buf, n, &e), MZ_ELIMIT);
    assert_non_null(strstr(e.msg, "hop limit 1 reached"));
    assert_int_equal(buf[MZ_FRAME_OFF_HOPS], 0);
    mz_identity_free(id);
}

/* ---- relaying --------------------------------------------------------------- */

static void test_relay_hop(void **state)
{
    uint8_t buf[512], plain[512];
    mz_frame_hdr h, d;
    size_t n, pl;
    mz_err e;

    (void)state;
    n = sealed(buf, sizeof buf, "{\"a\":1}", &h);
    for (int i = 1; i < MZ_FRAME_DEFAULT_HOP_LIMIT; i++) {
        assert_int_equal(mz__frame_relay_hop(buf, n, &e), MZ_OK);
        assert_int_equal(buf[MZ_FRAME_OFF_HOPS], i);
        /* Still decodes and opens: hops is not in the associated data. */
        assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
        assert_int_equal(mz__frame_open(buf, n, &d, KEY, plain, &pl, &e), MZ_OK);
    }
    assert_int_equal(mz__frame_relay_hop(buf, n, &e), MZ_ELIMIT);
    assert_non_null(strstr(e.msg, "hop limit 16 reached"));
    assert_int_equal(buf[MZ_FRAME_OFF_HOPS], MZ_FRAME_DEFAULT_HOP_LIMIT - 1);
    assert_int_equal(mz__frame_relay_hop(buf, 10, &e), MZ_EPROTO);
    assert_int_equal(mz__frame_relay_hop(NULL, 0, &e), MZ_EPROTO);
}

/* Every byte but the hop count is bound to the body: a relay that changes
 * any of them makes the frame refused (by the decoder) or fail to open. */
static void test_every_header_byte_is_bound(void **state)
{
    uint8_t buf[512], copy[512], plain[512];
    mz_frame_hdr h, d;
    size_t n, pl;
    mz_err e;

    (void)state;
    n = sealed(buf, sizeof buf, "{\"params\":{}}", &h);
    for (size_t off = 0; off < n; off++) {
        mz_status rc;

        if (off == MZ_FRAME_OFF_HOPS)
            continue;
        memcpy(copy, buf, n);
        copy[off] ^= 0x40;
        rc = mz__frame_decode(copy, n, 0, &d, &e);
        if (rc == MZ_OK)
            rc = mz__frame_open(copy, n, &d, KEY, plain, &pl, &e);
        if (rc == MZ_OK)
            fail_msg("a change at offset %zu went unnoticed", off);
    }
}

static void test_open_refusals(void **state)
{
    uint8_t buf[512], plain[512];
    uint8_t wrong[32] = { 8 };
    mz_frame_hdr h, d;
    size_t n, pl;
    mz_err e;

    (void)state;
    n = sealed(buf, sizeof buf, "{}", &h);
    assert_int_equal(mz__frame_decode(buf, n, 0, &d, &e), MZ_OK);
    assert_int_equal(mz__frame_open(buf, n, &d, wrong, plain, &pl, &e), MZ_ESIG);
    assert_non_null(strstr(e.msg, "fails authentication"));
    assert_int_equal(mz__frame_open(buf, n - 1, &d, KEY, plain, &pl, &e), MZ_EINVAL);
    d.flags = MZ_FRAME_F_SIGNED;
    assert_int_equal(mz__frame_open(buf, n, &d, KEY, plain, &pl, &e), MZ_EPROTO);
    assert_non_null(strstr(e.msg, "not sealed"));
}

static void test_seal_refusals(void **state)
{
    uint8_t buf[256];
    mz_frame_hdr h;
    size_t n = 0;
    mz_err e;

    (void)state;
    mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, A, B);
    assert_int_equal(mz__frame_seal(&h, buf, 200, KEY, buf, sizeof buf, &n, &e), MZ_ELIMIT);
    assert_non_null(strstr(e.msg, "buffer"));
    mz__frame_hdr_init(&h, MZ_FRAME_ANNOUNCE, A, NULL);
    assert_int_equal(mz__frame_seal(&h, buf, 1, KEY, buf, sizeof buf, &n, &e), MZ_EINVAL);
    h.type = 0x7f;
    assert_int_equal(mz__frame_seal(&h, buf, 1, KEY, buf, sizeof buf, &n, &e), MZ_EINVAL);
    assert_non_null(strstr(e.msg, "unknown type"));
}

/* ---- decoder refusals ------------------------------------------------------- */

static void test_refuse_outer(void **state)
{
    uint8_t buf[512], bad[600];
    mz_frame_hdr h;
    size_t n;

    (void)state;
    n = sealed(buf, sizeof buf, "{}", &h);
    expect_refusal(buf, 3, MZ_EPROTO, "truncated: 3 bytes");
    expect_refusal(buf, 100, MZ_EPROTO, "truncated: 100 bytes, its header says 144");
    memcpy(bad, buf, n);
    bad[0] = '{';
    expect_refusal(bad, n, MZ_EPROTO, "not a meshzero frame");
    memcpy(bad, buf, n);
    bad[MZ_FRAME_OFF_VERSION] = 3;
    expect_refusal(bad, n, MZ_EPROTO, "unknown version 3");
    memcpy(bad, buf, n);
    bad[MZ_FRAME_OFF_HDR_LEN] = 0x01;           /* 264 */
    bad[MZ_FRAME_OFF_HDR_LEN + 1] = 0x08;
    expect_refusal(bad, n, MZ_ELIMIT, "oversized header: 264 bytes");
    bad[MZ_FRAME_OFF_HDR_LEN] = 0;
    bad[MZ_FRAME_OFF_HDR_LEN + 1] = 136;
    expect_refusal(bad, n, MZ_EPROTO, "header length 136");
    bad[MZ_FRAME_OFF_HDR_LEN + 1] = 146;
    expect_refusal(bad, n, MZ_EPROTO, "header length 146");
    memcpy(bad, buf, n);
    bad[MZ_FRAME_OFF_RSVD1 + 1] = 1;
    expect_refusal(bad, n, MZ_EPROTO, "reserved header bytes");
    memcpy(bad, buf, n);
    bad[MZ_FRAME_OFF_RSVD2] = 1;
    expect_refusal(bad, n, MZ_EPROTO, "reserved header bytes");
    memcpy(bad, buf, n);
    bad[MZ_FRAME_OFF_TYPE] = 0x7e;
    expect_refusal(bad, n, MZ_EPROTO, "unknown type 0x7e");
}

static void test_refuse_lengths(void **state)
{
    uint8_t buf[512], bad[600];
    mz_frame_hdr h, d;
    size_t n;
    mz_err e;

    (void)state;
    n = sealed(buf, sizeof buf, "{\"k\":\"v\"}", &h);
    /* Lying lengths: more than there is, less than there is. */
    memcpy(bad, buf, n);
    put32(bad + MZ_FRAME_OFF_BODY_LEN, h.body_len + 1);
    expect_refusal(bad, n, MZ_EPROTO, "body length says 26 bytes, the frame holds 25");
    put32(bad + MZ_FRAME_OFF_BODY_LEN, h.body_len - 1);
    expect_refusal(bad, n, MZ_EPROTO, "body length says 24 bytes, the frame holds 25");
    expect_refusal(buf, n - 1, MZ_EPROTO, "the frame holds 24");
    memcpy(bad, buf, n);
    bad[n] = 0;
    expect_refusal(bad, n + 1, MZ_EPROTO, "the frame holds 26");
    put32(bad + MZ_FRAME_OFF_BODY_LEN, 0xffffffffu);
    expect_refusal(bad, n, MZ_ELIMIT, "over the 1048576-byte frame limit");
    /* The limit is the caller's. */
    assert_int_equal(mz__frame_decode(buf, n, n - 1, &d, &e), MZ_ELIMIT);
    assert_int_equal(mz__frame_decode(buf, n, n, &d, &e), MZ_OK);
    /* A sealed body shorter than its tag. */
    memcpy(bad, buf, MZ_FRAME_HDR_LEN);
    put32(bad + MZ_FRAME_OFF_BODY_LEN, 15);
    expect_refusal(bad, MZ_FRAME_HDR_LEN + 15, MZ_EPROTO, "shorter than its 16-byte tag");
    assert_int_equal(mz__frame_decode(NULL, 0, 0, &d, &e), MZ_EINVAL);
}

/* A header built by hand, sealed or signed as flags say (the body is not
 * authenticated: the decoder never looks at it). */
static size_t raw(uint8_t *buf, uint8_t type, uint16_t flags, const uint8_t *dst,
                  uint8_t hop_limit, uint32_t stream, uint64_t aux, size_t body)
{
    mz_frame_hdr h;

    mz__frame_hdr_init(&h, type, A, dst);
    h.flags = flags;
    h.hop_limit = hop_limit;
    h.stream_id = stream;
    h.aux = aux;
    h.body_len = (uint32_t)body;
    if (flags & MZ_FRAME_F_SEALED)
        memset(h.nonce, 9, sizeof h.nonce);
    mz__frame_hdr_encode(&h, buf);
    memset(buf + MZ_FRAME_HDR_LEN, 0, body);
    return MZ_FRAME_HDR_LEN + body;
}

static void test_refuse_rules(void **state)
{
    uint8_t buf[512];
    const uint16_t SE = MZ_FRAME_F_SEALED, SI = MZ_FRAME_F_SIGNED;
    size_t n;

    (void)state;
    n = raw(buf, MZ_FRAME_EXECUTE, SE | 0x0100, B, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "unknown flags 0x0100");
    n = raw(buf, MZ_FRAME_EXECUTE, SE | SI, B, 16, 0, 0, 64);
    expect_refusal(buf, n, MZ_EPROTO, "both sealed and signed");
    n = raw(buf, MZ_FRAME_EXECUTE, 0, B, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "neither sealed nor signed");
    n = raw(buf, MZ_FRAME_EXECUTE, SI, B, 16, 0, 0, 63);
    expect_refusal(buf, n, MZ_EPROTO, "shorter than its 64-byte signature");
    n = raw(buf, MZ_FRAME_EXECUTE, SI, B, 16, 0, 0, 64);
    buf[MZ_FRAME_OFF_NONCE + 5] = 1;
    expect_refusal(buf, n, MZ_EPROTO, "nonce must be zero");
    n = raw(buf, MZ_FRAME_EVENT, SE, NULL, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "only unicast and stream frames are sealed");
    n = raw(buf, MZ_FRAME_EVENT, SI, B, 16, 0, 0, 64);
    expect_refusal(buf, n, MZ_EPROTO, "a broadcast has destination zero");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, NULL, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "needs a destination");
    n = raw(buf, MZ_FRAME_HELLO, SI, NULL, 2, 0, 0, 64);
    expect_refusal(buf, n, MZ_EPROTO, "link frames are signed, with hop limit 1 (not 2)");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, B, 0, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "hop count 0 not under its hop limit 0");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, B, 4, 0, 0, 16);
    buf[MZ_FRAME_OFF_HOPS] = 4;
    expect_refusal(buf, n, MZ_EPROTO, "hop count 4 not under its hop limit 4");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, B, 16, 0, 0, 16);
    memset(buf + MZ_FRAME_OFF_SRC, 0, 32);
    expect_refusal(buf, n, MZ_EPROTO, "source node id is zero");
    /* Stream rules. */
    n = raw(buf, MZ_FRAME_DATA, SE, B, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "stream id 0");
    n = raw(buf, MZ_FRAME_EXECUTE, SE | MZ_FRAME_F_HEAD, B, 16, 0, 10, 16);
    expect_refusal(buf, n, MZ_EPROTO, "HEAD needs a stream id");
    n = raw(buf, MZ_FRAME_EVENT, SI | MZ_FRAME_F_HEAD, NULL, 16, 3, 10, 64);
    expect_refusal(buf, n, MZ_EPROTO, "HEAD only opens a unicast type");
    n = raw(buf, MZ_FRAME_WINDOW_UPDATE, SE | MZ_FRAME_F_END, B, 16, 3, 10, 16);
    expect_refusal(buf, n, MZ_EPROTO, "END only on a HEAD or data frame");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, B, 16, 3, 0, 16);
    expect_refusal(buf, n, MZ_EPROTO, "stream id 3 without HEAD");
    n = raw(buf, MZ_FRAME_EXECUTE, SE, B, 16, 0, 5, 16);
    expect_refusal(buf, n, MZ_EPROTO, "aux must be zero");
    /* And what is fine. */
    n = raw(buf, MZ_FRAME_EXECUTE, SE | MZ_FRAME_F_HEAD | MZ_FRAME_F_END, B, 16, 3, 0, 16);
    expect_refusal(buf, n, MZ_OK, "");
    n = raw(buf, MZ_FRAME_DATA, SE | MZ_FRAME_F_END, B, 16, 3, 1000, 16);
    expect_refusal(buf, n, MZ_OK, "");
    n = raw(buf, MZ_FRAME_ERROR, SI, NULL, 1, 0, 0, 64);
    expect_refusal(buf, n, MZ_OK, "");
    n = raw(buf, MZ_FRAME_ERROR, SE, B, 16, 0, 0, 16);
    expect_refusal(buf, n, MZ_OK, "");
    n = raw(buf, MZ_FRAME_EXECUTE, SI, B, 16, 0, 0, 64);     /* unsealed unicast, signed */
    expect_refusal(buf, n, MZ_OK, "");
}

/* A longer header (a later version's fields) is accepted, authenticated and
 * skipped. */
static void test_longer_header(void **state)
{
    uint8_t buf[512], plain[64];
    const size_t hl = MZ_FRAME_HDR_LEN + 8;
    mz_frame_hdr h, d;
    unsigned long long clen;
    size_t pl;
    mz_err e;

    (void)state;
    mz__frame_hdr_init(&h, MZ_FRAME_QUERY, A, B);
    h.flags = MZ_FRAME_F_SEALED;
    h.body_len = 2 + MZ_FRAME_TAG_LEN;
    randombytes_buf(h.nonce, sizeof h.nonce);
    mz__frame_hdr_encode(&h, buf);
    buf[MZ_FRAME_OFF_HDR_LEN + 1] = (uint8_t)hl;
    memset(buf + MZ_FRAME_HDR_LEN, 0x55, 8);
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + hl, &clen, (const uint8_t *)"{}", 2, buf,
                                               hl, NULL, h.nonce, KEY);
    assert_int_equal(mz__frame_decode(buf, hl + clen, 0, &d, &e), MZ_OK);
    assert_int_equal(d.hdr_len, hl);
    assert_int_equal(mz__frame_open(buf, hl + clen, &d, KEY, plain, &pl, &e), MZ_OK);
    assert_memory_equal(plain, "{}", 2);
    buf[MZ_FRAME_HDR_LEN + 3] ^= 1;             /* the extension is authenticated */
    assert_int_equal(mz__frame_open(buf, hl + clen, &d, KEY, plain, &pl, &e), MZ_ESIG);
}

static void test_type_table(void **state)
{
    (void)state;
    assert_string_equal(mz__frame_type_name(MZ_FRAME_EXECUTE), "execute");
    assert_string_equal(mz__frame_type_name(MZ_FRAME_WINDOW_UPDATE), "window_update");
    assert_null(mz__frame_type_name(0));
    assert_null(mz__frame_type_name(0xff));
    assert_int_equal(mz__frame_type_classes(MZ_FRAME_ANNOUNCE), MZ_FRAME_C_BROADCAST);
    assert_int_equal(mz__frame_type_classes(0x99), 0);
    /* Every type has a distinct code and name. */
    for (unsigned a = 1; a < 256; a++)
        for (unsigned b = a + 1; b < 256; b++)
            if (mz__frame_type_name((uint8_t)a) && mz__frame_type_name((uint8_t)b))
                assert_string_not_equal(mz__frame_type_name((uint8_t)a),
                                        mz__frame_type_name((uint8_t)b));
}

/* ---- interoperability helper (tests/integration/test_frame_interop.py) ----
 *
 *   test_frame --emit KEYHEX    prints "NAME HEX" lines: frames made here
 *   test_frame --check KEYHEX   reads HEX lines, prints "OK PLAINHEX" or
 *                               "ERR STATUS message" for each
 * so the independent Python codec (mzproto.py) and this one check each
 * other's bytes. */

/* A message as a frame and back (PROTOCOL.md section 10.8). */
static mz_msg *s_round_trip(const uint8_t *f, size_t n, const unsigned char *key,
                            mz_frame_hdr *h)
{
    uint8_t plain[1024];
    const uint8_t *pl = plain;
    size_t pn = 0;
    mz_msg *m = NULL;
    mz_err e;

    assert_int_equal(mz__frame_decode(f, n, 0, h, &e), MZ_OK);
    if (key != NULL)
        assert_int_equal(mz__frame_open(f, n, h, key, plain, &pn, &e), MZ_OK);
    else
        assert_int_equal(mz__frame_verify(f, n, h, &pl, &pn, &e), MZ_OK);
    assert_int_equal(mz__msg_from_frame(f, h, pl, pn, &m, &e), MZ_OK);
    return m;
}

static void test_message_mapping(void **state)
{
    mz_identity *a = NULL, *b = NULL;
    unsigned char key[32], ax[32], bx[32];
    mz_frame_hdr h;
    mz_msg *msg, *m;
    uint8_t *f = NULL;
    size_t n = 0, dl = 0;
    char *dump;
    json_t *env;
    mz_err e;

    (void)state;
    assert_int_equal(mz_identity_generate(&a, &e), MZ_OK);
    assert_int_equal(mz_identity_generate(&b, &e), MZ_OK);
    /* A broadcast: the frame carries the envelope signature, so the message
     * made from it dumps to an envelope that verifies as the origin's. */
    msg = mz__msg_new("announce", mz_identity_id(a), "*", json_pack("{s:s}", "k", "v\u00e9"));
    assert_int_equal(mz__msg_sign(msg, a, &e), MZ_OK);
    assert_int_equal(mz__msg_frame_sign(msg, a, false, &f, &n, &e), MZ_OK);
    m = s_round_trip(f, n, NULL, &h);
    assert_int_equal(h.hdr_len, MZ_FRAME_HDR_LEN + MZ_FRAME_SIG_LEN);
    assert_string_equal(mz__msg_id(m), mz__msg_id(msg));
    assert_string_equal(mz__msg_timestamp(m), mz__msg_timestamp(msg));
    assert_string_equal(mz__msg_recipient(m), "*");
    assert_true(json_equal((json_t *)mz__msg_payload(m), (json_t *)mz__msg_payload(msg)));
    dump = mz__msg_dump(m, &dl);
    assert_int_equal(mz_msg_parse(dump, dl, NULL, &env, NULL, &e), MZ_OK);
    assert_int_equal(mz_msg_verify(env, &e), MZ_OK);
    json_decref(env);
    free(dump);
    free(f);
    mz__msg_free(m);
    mz__msg_free(msg);
    /* A unicast, sealed for the pair: the body is the payload's bytes. */
    assert_int_equal(mz_identity_x25519_sk(a, ax, &e), MZ_OK);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(bx, mz_identity_pk(b)), 0);
    assert_int_equal(crypto_box_beforenm(key, bx, ax), 0);
    msg = mz__msg_new("execute", mz_identity_id(a), mz_identity_id(b),
                      json_pack("{s:s,s:[i,f]}", "resource_id", "r", "params", 1, 2.5));
    assert_int_equal(mz__msg_frame_seal(msg, key, &f, &n, &e), MZ_OK);
    m = s_round_trip(f, n, key, &h);
    assert_int_equal(h.hop_limit, MZ_FRAME_DEFAULT_HOP_LIMIT);
    assert_string_equal(mz__msg_recipient(m), mz_identity_id(b));
    assert_false(mz__msg_is_sealed(m));
    assert_int_equal(mz__msg_verify(m, &e), MZ_OK);        /* authentic by its seal */
    assert_true(json_equal((json_t *)mz__msg_payload(m), (json_t *)mz__msg_payload(msg)));
    free(f);
    mz__msg_free(m);
    /* No frame form: an id that is not 32 lowercase hex. */
    assert_int_equal(mz__msg_set_id(msg, "call-1"), MZ_OK);
    assert_false(mz__msg_frame_hdr(msg, false, &h));
    assert_int_equal(mz__msg_frame_seal(msg, key, &f, &n, &e), MZ_EINVAL);
    mz__msg_free(msg);
    /* A link message: hop limit 1, to the neighbour. */
    msg = mz__msg_new("digest", mz_identity_id(a), mz_identity_id(b), NULL);
    assert_int_equal(mz__msg_frame_sign(msg, a, true, &f, &n, &e), MZ_OK);
    m = s_round_trip(f, n, NULL, &h);
    assert_int_equal(h.hop_limit, 1);
    assert_int_equal(h.hdr_len, MZ_FRAME_HDR_LEN);
    free(f);
    mz__msg_free(m);
    mz__msg_free(msg);
    mz_identity_free(a);
    mz_identity_free(b);
}

static void s_hex_line(const char *name, const uint8_t *p, size_t n)
{
    printf("%s ", name);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static int s_emit(const uint8_t key[32])
{
    static uint8_t body[40000], buf[MZ_DEFAULT_STREAM_CHUNK + 1024];
    const char *plain = "{\"resource_id\":\"echo\",\"method\":\"m\",\"params\":{}}";
    const char *ev = "{\"topic\":\"t\",\"data\":1}";
    mz_identity *id = NULL;
    mz_streams *st = NULL;
    mz_stream_frame f;
    mz_frame_hdr h;
    uint32_t sid;
    size_t n;
    mz_err e;

    if (mz_identity_generate(&id, &e) != MZ_OK ||
        mz__streams_new(&st, mz_identity_pk(id), B, NULL, 1000, &e) != MZ_OK)
        return 1;
    mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, mz_identity_pk(id), B);
    if (mz__frame_seal(&h, (const uint8_t *)plain, strlen(plain), key, buf, sizeof buf, &n, &e))
        return 1;
    s_hex_line("sealed", buf, n);
    if (mz__frame_relay_hop(buf, n, &e) != MZ_OK)
        return 1;
    s_hex_line("relayed", buf, n);
    mz__frame_hdr_init(&h, MZ_FRAME_EVENT, mz_identity_pk(id), NULL);
    if (mz__frame_sign(&h, (const uint8_t *)ev, strlen(ev), id, buf, sizeof buf, &n, &e)
        != MZ_OK)
        return 1;
    s_hex_line("signed", buf, n);
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)('a' + i % 26);
    if (mz__streams_open(st, MZ_FRAME_EXECUTE_RESULT, body, sizeof body, &sid, &e) != MZ_OK)
        return 1;
    while (mz__streams_next(st, &f)) {
        mz__frame_hdr_init(&h, f.type, mz_identity_pk(id), B);
        h.flags = f.flags;
        h.stream_id = f.stream_id;
        h.aux = f.aux;
        if (mz__frame_seal(&h, f.body, f.body_len, key, buf, sizeof buf, &n, &e) != MZ_OK)
            return 1;
        s_hex_line("chunk", buf, n);
    }
    mz__streams_free(st);
    mz_identity_free(id);
    return 0;
}

static int s_check(const uint8_t key[32])
{
    static char line[2 * (MZ_DEFAULT_MAX_FRAME + 16) + 4];
    static uint8_t buf[MZ_DEFAULT_MAX_FRAME + 16], plain[MZ_DEFAULT_MAX_FRAME];

    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t n = 0, pl = 0;
        const uint8_t *p = plain;
        mz_frame_hdr h;
        mz_status rc;
        mz_err e = { 0 };

        line[strcspn(line, "\r\n")] = '\0';
        if (sodium_hex2bin(buf, sizeof buf, line, strlen(line), NULL, &n, NULL) != 0)
            return 1;
        rc = mz__frame_decode(buf, n, 0, &h, &e);
        if (rc == MZ_OK && (h.flags & MZ_FRAME_F_SEALED))
            rc = mz__frame_open(buf, n, &h, key, plain, &pl, &e);
        else if (rc == MZ_OK)
            rc = mz__frame_verify(buf, n, &h, &p, &pl, &e);
        if (rc != MZ_OK)
            printf("ERR %s %s\n", mz_status_name(rc), e.msg);
        else
            s_hex_line("OK", p, pl);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3) {
        uint8_t key[32];

        if (sodium_init() < 0 ||
            sodium_hex2bin(key, sizeof key, argv[2], strlen(argv[2]), NULL, NULL, NULL) != 0) {
            fprintf(stderr, "test_frame: KEYHEX must be 64 hex characters\n");
            return 2;
        }
        setup(NULL);
        if (strcmp(argv[1], "--emit") == 0)
            return s_emit(key);
        if (strcmp(argv[1], "--check") == 0)
            return s_check(key);
        fprintf(stderr, "usage: test_frame [--emit KEYHEX | --check KEYHEX]\n");
        return 2;
    }

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_round_trip),
        cmocka_unit_test(test_seal_in_place_and_fields),
        cmocka_unit_test(test_signed_round_trip),
        cmocka_unit_test(test_link_frame),
        cmocka_unit_test(test_relay_hop),
        cmocka_unit_test(test_every_header_byte_is_bound),
        cmocka_unit_test(test_open_refusals),
        cmocka_unit_test(test_seal_refusals),
        cmocka_unit_test(test_refuse_outer),
        cmocka_unit_test(test_refuse_lengths),
        cmocka_unit_test(test_refuse_rules),
        cmocka_unit_test(test_longer_header),
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_message_mapping),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
