/* The binary frame codec (frame.h; PROTOCOL.md "Wire v2"). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "meshzero/msg.h"
#include "wire/frame.h"

/* Signed frames: DOMAIN, NUL, header with hops zeroed, plaintext. */
#define S_SIG_DOMAIN "meshzero/2 frame"

static const struct s_type {
    uint8_t     code;
    const char *name;
    unsigned    classes;
} s_types[] = {
#define MZ_X(name, code, text, cls) { code, text, cls },
    MZ_FRAME_TYPE_MAP(MZ_X)
#undef MZ_X
};

static const struct s_type *s_type_row(uint8_t code)
{
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++)
        if (s_types[i].code == code)
            return &s_types[i];
    return NULL;
}

const char *mz__frame_type_name(uint8_t type)
{
    const struct s_type *t = s_type_row(type);

    return t ? t->name : NULL;
}

uint8_t mz__frame_type_code(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof s_types / sizeof s_types[0]; i++)
        if (strcmp(s_types[i].name, name) == 0)
            return s_types[i].code;
    return 0;
}

unsigned mz__frame_type_classes(uint8_t type)
{
    const struct s_type *t = s_type_row(type);

    return t ? t->classes : 0;
}

/* ---- big-endian fields ----------------------------------------------- */

static uint16_t s_get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t s_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t s_get64(const uint8_t *p)
{
    return (uint64_t)s_get32(p) << 32 | s_get32(p + 4);
}

static void s_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void s_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void s_put64(uint8_t *p, uint64_t v)
{
    s_put32(p, (uint32_t)(v >> 32));
    s_put32(p + 4, (uint32_t)v);
}

static bool s_all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;

    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

bool mz__frame_dst_is_all(const mz_frame_hdr *h)
{
    return s_all_zero(h->dst, sizeof h->dst);
}

/* ---- header ------------------------------------------------------------ */

void mz__frame_hdr_init(mz_frame_hdr *h, uint8_t type, const uint8_t src[MZ_FRAME_NODE_LEN],
                        const uint8_t dst[MZ_FRAME_NODE_LEN])
{
    unsigned cls = mz__frame_type_classes(type);

    memset(h, 0, sizeof *h);
    h->type = type;
    h->hdr_len = MZ_FRAME_HDR_LEN;
    /* A link-only type is never forwarded: one hop is all it may take. */
    h->hop_limit = cls == MZ_FRAME_C_LINK ? 1 : MZ_FRAME_DEFAULT_HOP_LIMIT;
    h->time_ms = mz_now_ms();
    mz_random_buf(h->id, sizeof h->id);
    memcpy(h->src, src, sizeof h->src);
    if (dst != NULL)
        memcpy(h->dst, dst, sizeof h->dst);
}

void mz__frame_hdr_encode(const mz_frame_hdr *h, uint8_t out[MZ_FRAME_HDR_LEN])
{
    memset(out, 0, MZ_FRAME_HDR_LEN);
    out[MZ_FRAME_OFF_MAGIC] = MZ_FRAME_MAGIC0;
    out[MZ_FRAME_OFF_MAGIC + 1] = MZ_FRAME_MAGIC1;
    out[MZ_FRAME_OFF_VERSION] = MZ_FRAME_VERSION;
    out[MZ_FRAME_OFF_TYPE] = h->type;
    s_put16(out + MZ_FRAME_OFF_HDR_LEN, MZ_FRAME_HDR_LEN);
    s_put16(out + MZ_FRAME_OFF_FLAGS, h->flags);
    out[MZ_FRAME_OFF_HOP_LIMIT] = h->hop_limit;
    out[MZ_FRAME_OFF_HOPS] = h->hops;
    s_put32(out + MZ_FRAME_OFF_BODY_LEN, h->body_len);
    s_put32(out + MZ_FRAME_OFF_STREAM, h->stream_id);
    s_put64(out + MZ_FRAME_OFF_AUX, h->aux);
    s_put64(out + MZ_FRAME_OFF_TIME, (uint64_t)h->time_ms);
    memcpy(out + MZ_FRAME_OFF_ID, h->id, MZ_FRAME_ID_LEN);
    memcpy(out + MZ_FRAME_OFF_SRC, h->src, MZ_FRAME_NODE_LEN);
    memcpy(out + MZ_FRAME_OFF_DST, h->dst, MZ_FRAME_NODE_LEN);
    memcpy(out + MZ_FRAME_OFF_NONCE, h->nonce, MZ_FRAME_NONCE_LEN);
}

static void s_hdr_read(const uint8_t *b, mz_frame_hdr *h)
{
    h->type = b[MZ_FRAME_OFF_TYPE];
    h->hdr_len = s_get16(b + MZ_FRAME_OFF_HDR_LEN);
    h->flags = s_get16(b + MZ_FRAME_OFF_FLAGS);
    h->hop_limit = b[MZ_FRAME_OFF_HOP_LIMIT];
    h->hops = b[MZ_FRAME_OFF_HOPS];
    h->body_len = s_get32(b + MZ_FRAME_OFF_BODY_LEN);
    h->stream_id = s_get32(b + MZ_FRAME_OFF_STREAM);
    h->aux = s_get64(b + MZ_FRAME_OFF_AUX);
    h->time_ms = (int64_t)s_get64(b + MZ_FRAME_OFF_TIME);
    memcpy(h->id, b + MZ_FRAME_OFF_ID, MZ_FRAME_ID_LEN);
    memcpy(h->src, b + MZ_FRAME_OFF_SRC, MZ_FRAME_NODE_LEN);
    memcpy(h->dst, b + MZ_FRAME_OFF_DST, MZ_FRAME_NODE_LEN);
    memcpy(h->nonce, b + MZ_FRAME_OFF_NONCE, MZ_FRAME_NONCE_LEN);
}

/* The first checks: enough bytes for a header that is ours, of a length we
 * take. Only fixed offsets are read before the length is known good. */
static mz_status s_check_outer(const uint8_t *b, size_t len, mz_err *err)
{
    unsigned hl;

    if (len < MZ_FRAME_OFF_HDR_LEN + 2)
        return mz_err_set(err, MZ_EPROTO, "frame: truncated: %zu bytes, a header needs %d",
                          len, MZ_FRAME_HDR_LEN);
    if (b[0] != MZ_FRAME_MAGIC0 || b[1] != MZ_FRAME_MAGIC1)
        return mz_err_set(err, MZ_EPROTO, "frame: not a meshzero frame (magic %02x%02x, "
                          "expected 6d7a \"mz\")", b[0], b[1]);
    if (b[MZ_FRAME_OFF_VERSION] != MZ_FRAME_VERSION)
        return mz_err_set(err, MZ_EPROTO, "frame: unknown version %u (this node speaks %d)",
                          b[MZ_FRAME_OFF_VERSION], MZ_FRAME_VERSION);
    hl = s_get16(b + MZ_FRAME_OFF_HDR_LEN);
    if (hl > MZ_FRAME_MAX_HDR)
        return mz_err_set(err, MZ_ELIMIT, "frame: oversized header: %u bytes, at most %d",
                          hl, MZ_FRAME_MAX_HDR);
    if (hl < MZ_FRAME_HDR_LEN || hl % 8 != 0)
        return mz_err_set(err, MZ_EPROTO, "frame: header length %u is not a multiple of 8 "
                          "from %d to %d", hl, MZ_FRAME_HDR_LEN, MZ_FRAME_MAX_HDR);
    if (len < hl)
        return mz_err_set(err, MZ_EPROTO, "frame: truncated: %zu bytes, its header says %u",
                          len, hl);
    if (s_get16(b + MZ_FRAME_OFF_RSVD1) != 0 || s_get32(b + MZ_FRAME_OFF_RSVD2) != 0)
        return mz_err_set(err, MZ_EPROTO, "frame: reserved header bytes (offsets %d and %d) "
                          "must be zero", MZ_FRAME_OFF_RSVD1, MZ_FRAME_OFF_RSVD2);
    return MZ_OK;
}

static mz_status s_check_lengths(const mz_frame_hdr *h, size_t len, size_t max_frame,
                                 mz_err *err)
{
    uint64_t total = (uint64_t)h->hdr_len + h->body_len;

    if (total > max_frame)
        return mz_err_set(err, MZ_ELIMIT, "frame %s: %llu bytes, over the %zu-byte frame limit",
                          mz__frame_type_name(h->type), (unsigned long long)total, max_frame);
    if (total != len)
        return mz_err_set(err, MZ_EPROTO, "frame %s: body length says %u bytes, the frame "
                          "holds %zu after its header", mz__frame_type_name(h->type),
                          h->body_len, len - h->hdr_len);
    if ((h->flags & MZ_FRAME_F_SEALED) && h->body_len < MZ_FRAME_TAG_LEN)
        return mz_err_set(err, MZ_EPROTO, "frame %s: sealed body of %u bytes is shorter than "
                          "its %d-byte tag", mz__frame_type_name(h->type), h->body_len,
                          MZ_FRAME_TAG_LEN);
    if ((h->flags & MZ_FRAME_F_SIGNED) && h->body_len < MZ_FRAME_SIG_LEN)
        return mz_err_set(err, MZ_EPROTO, "frame %s: signed body of %u bytes is shorter than "
                          "its %d-byte signature", mz__frame_type_name(h->type), h->body_len,
                          MZ_FRAME_SIG_LEN);
    return MZ_OK;
}

/* Flags and stream rules that hold for every type. */
static mz_status s_check_flags(const mz_frame_hdr *h, unsigned cls, mz_err *err)
{
    const char *n = mz__frame_type_name(h->type);
    unsigned f = h->flags;

    if (f & ~MZ_FRAME_F_ALL)
        return mz_err_set(err, MZ_EPROTO, "frame %s: unknown flags 0x%04x", n,
                          f & ~MZ_FRAME_F_ALL);
    if ((f & MZ_FRAME_F_SEALED) && (f & MZ_FRAME_F_SIGNED))
        return mz_err_set(err, MZ_EPROTO, "frame %s: both sealed and signed", n);
    if (!(f & (MZ_FRAME_F_SEALED | MZ_FRAME_F_SIGNED)))
        return mz_err_set(err, MZ_EPROTO, "frame %s: neither sealed nor signed", n);
    if (!(f & MZ_FRAME_F_SEALED) && !s_all_zero(h->nonce, sizeof h->nonce))
        return mz_err_set(err, MZ_EPROTO, "frame %s: nonce must be zero when not sealed", n);
    if ((f & MZ_FRAME_F_SEALED) && !(cls & (MZ_FRAME_C_UNICAST | MZ_FRAME_C_STREAM)))
        return mz_err_set(err, MZ_EPROTO, "frame %s: only unicast and stream frames are sealed",
                          n);
    if ((f & MZ_FRAME_F_HEAD) && !(cls & MZ_FRAME_C_UNICAST))
        return mz_err_set(err, MZ_EPROTO, "frame %s: HEAD only opens a unicast type", n);
    if ((f & MZ_FRAME_F_END) && !(f & MZ_FRAME_F_HEAD) && h->type != MZ_FRAME_DATA)
        return mz_err_set(err, MZ_EPROTO, "frame %s: END only on a HEAD or data frame", n);
    if ((f & MZ_FRAME_F_HEAD) != 0 && h->stream_id == 0)
        return mz_err_set(err, MZ_EPROTO, "frame %s: HEAD needs a stream id", n);
    if ((cls & MZ_FRAME_C_STREAM) && h->stream_id == 0)
        return mz_err_set(err, MZ_EPROTO, "frame %s: stream id 0 (stream frames need one)", n);
    if (!(cls & MZ_FRAME_C_STREAM) && !(f & MZ_FRAME_F_HEAD) && h->stream_id != 0)
        return mz_err_set(err, MZ_EPROTO, "frame %s: stream id %u without HEAD", n,
                          h->stream_id);
    if (!(cls & MZ_FRAME_C_STREAM) && !(f & MZ_FRAME_F_HEAD) && h->aux != 0)
        return mz_err_set(err, MZ_EPROTO, "frame %s: aux must be zero", n);
    return MZ_OK;
}

/* Routing rules of the type's classes: where it may go and how far. */
static mz_status s_check_route(const mz_frame_hdr *h, unsigned cls, mz_err *err)
{
    const char *n = mz__frame_type_name(h->type);
    bool all = mz__frame_dst_is_all(h);

    if (s_all_zero(h->src, sizeof h->src))
        return mz_err_set(err, MZ_EPROTO, "frame %s: source node id is zero", n);
    if (h->hop_limit == 0 || h->hops >= h->hop_limit)
        return mz_err_set(err, MZ_EPROTO, "frame %s: hop count %u not under its hop limit %u",
                          n, h->hops, h->hop_limit);
    /* A link frame: one hop, signed, to the neighbour (or zero before its
     * id is known). Types that are also unicast take the rules below
     * otherwise. */
    if ((cls & MZ_FRAME_C_LINK) && h->hop_limit == 1 && (h->flags & MZ_FRAME_F_SIGNED))
        return MZ_OK;
    if (cls == MZ_FRAME_C_LINK)
        return mz_err_set(err, MZ_EPROTO, "frame %s: link frames are signed, with hop limit 1 "
                          "(not %u)", n, h->hop_limit);
    if (cls & MZ_FRAME_C_BROADCAST) {
        if (!all)
            return mz_err_set(err, MZ_EPROTO, "frame %s: a broadcast has destination zero", n);
        if (!(h->flags & MZ_FRAME_F_SIGNED))
            return mz_err_set(err, MZ_EPROTO, "frame %s: broadcasts are signed", n);
        return MZ_OK;
    }
    if (all)
        return mz_err_set(err, MZ_EPROTO, "frame %s: a routed frame needs a destination", n);
    return MZ_OK;
}

mz_status mz__frame_decode(const uint8_t *buf, size_t len, size_t max_frame, mz_frame_hdr *h,
                           mz_err *err)
{
    mz_frame_hdr t;
    unsigned cls;
    mz_status rc;

    if (buf == NULL || h == NULL)
        return mz_err_set(err, MZ_EINVAL, "frame: no buffer");
    if (max_frame == 0)
        max_frame = MZ_DEFAULT_MAX_FRAME;
    if ((rc = s_check_outer(buf, len, err)) != MZ_OK)
        return rc;
    s_hdr_read(buf, &t);
    if ((cls = mz__frame_type_classes(t.type)) == 0)
        return mz_err_set(err, MZ_EPROTO, "frame: unknown type 0x%02x", t.type);
    if ((rc = s_check_lengths(&t, len, max_frame, err)) != MZ_OK ||
        (rc = s_check_flags(&t, cls, err)) != MZ_OK ||
        (rc = s_check_route(&t, cls, err)) != MZ_OK)
        return rc;
    *h = t;
    return MZ_OK;
}

/* ---- sealing and signing ------------------------------------------------- */

size_t mz__frame_sealed_len(size_t plain_len)
{
    return MZ_FRAME_HDR_LEN + plain_len + MZ_FRAME_TAG_LEN;
}

size_t mz__frame_signed_len(size_t plain_len)
{
    return MZ_FRAME_HDR_LEN + plain_len + MZ_FRAME_SIG_LEN;
}

/* The associated data / signed header: the header as sent, hops zeroed. */
static void s_ad(const uint8_t *hdr, size_t hdr_len, uint8_t *ad)
{
    memcpy(ad, hdr, hdr_len);
    ad[MZ_FRAME_OFF_HOPS] = 0;
}

/* Common start of seal and sign: class, room, body length in h. */
static mz_status s_prepare(mz_frame_hdr *h, size_t plain_len, size_t extra, uint16_t flag,
                           size_t cap, mz_err *err)
{
    unsigned cls = mz__frame_type_classes(h->type);

    if (cls == 0)
        return mz_err_set(err, MZ_EINVAL, "frame: unknown type 0x%02x", h->type);
    if (flag == MZ_FRAME_F_SEALED && !(cls & (MZ_FRAME_C_UNICAST | MZ_FRAME_C_STREAM)))
        return mz_err_set(err, MZ_EINVAL, "frame %s: only unicast and stream frames are "
                          "sealed", mz__frame_type_name(h->type));
    if (plain_len > UINT32_MAX - extra)
        return mz_err_set(err, MZ_ELIMIT, "frame %s: body of %zu bytes over 4 GiB",
                          mz__frame_type_name(h->type), plain_len);
    if (cap < MZ_FRAME_HDR_LEN + plain_len + extra)
        return mz_err_set(err, MZ_ELIMIT, "frame %s: %zu-byte buffer, the frame needs %zu",
                          mz__frame_type_name(h->type), cap,
                          MZ_FRAME_HDR_LEN + plain_len + extra);
    h->hdr_len = MZ_FRAME_HDR_LEN;
    h->flags = (uint16_t)((h->flags & ~(MZ_FRAME_F_SEALED | MZ_FRAME_F_SIGNED)) | flag);
    h->body_len = (uint32_t)(plain_len + extra);
    return MZ_OK;
}

mz_status mz__frame_seal(mz_frame_hdr *h, const uint8_t *plain, size_t plain_len,
                         const uint8_t key[32], uint8_t *out, size_t cap, size_t *out_len,
                         mz_err *err)
{
    uint8_t ad[MZ_FRAME_HDR_LEN];
    unsigned long long clen;
    mz_status rc;

    if ((rc = s_prepare(h, plain_len, MZ_FRAME_TAG_LEN, MZ_FRAME_F_SEALED, cap, err)) != MZ_OK)
        return rc;
    mz_random_buf(h->nonce, sizeof h->nonce);
    /* The plaintext may already sit where the body goes; the header is
     * written around it, never over it. */
    mz__frame_hdr_encode(h, out);
    s_ad(out, MZ_FRAME_HDR_LEN, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + MZ_FRAME_HDR_LEN, &clen, plain, plain_len,
                                               ad, sizeof ad, NULL, h->nonce, key);
    *out_len = MZ_FRAME_HDR_LEN + (size_t)clen;
    return MZ_OK;
}

mz_status mz__frame_open(const uint8_t *buf, size_t len, const mz_frame_hdr *h,
                         const uint8_t key[32], uint8_t *plain, size_t *plain_len, mz_err *err)
{
    uint8_t ad[MZ_FRAME_MAX_HDR];
    unsigned long long mlen;

    if (!(h->flags & MZ_FRAME_F_SEALED))
        return mz_err_set(err, MZ_EPROTO, "frame %s: not sealed", mz__frame_type_name(h->type));
    if (len != (size_t)h->hdr_len + h->body_len || h->body_len < MZ_FRAME_TAG_LEN ||
        h->hdr_len > MZ_FRAME_MAX_HDR)
        return mz_err_set(err, MZ_EINVAL, "frame %s: buffer does not match its header",
                          mz__frame_type_name(h->type));
    s_ad(buf, h->hdr_len, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, NULL, buf + h->hdr_len,
                                                   h->body_len, ad, h->hdr_len, h->nonce,
                                                   key) != 0)
        return mz_err_set(err, MZ_ESIG, "frame %s: sealed body fails authentication (forged, "
                          "altered on the way or not for us)", mz__frame_type_name(h->type));
    *plain_len = (size_t)mlen;
    return MZ_OK;
}

/* The signed message: domain, NUL, header (hops zeroed), plaintext, laid
 * out in one allocation: pure Ed25519 (what the identity signs with) takes
 * the message in one piece, and signed bodies are small (records and
 * events within their own limits), so the copy is cheap next to the
 * signature itself. */
static mz_status s_signed_msg(const uint8_t *hdr, size_t hdr_len, const uint8_t *plain,
                              size_t plain_len, uint8_t **out, size_t *out_len, mz_err *err)
{
    size_t dl = sizeof S_SIG_DOMAIN;          /* includes the NUL */
    uint8_t *m = malloc(dl + hdr_len + plain_len + 1);

    if (m == NULL)
        return mz_err_set(err, MZ_ENOMEM, "frame: allocating %zu bytes to sign",
                          dl + hdr_len + plain_len);
    memcpy(m, S_SIG_DOMAIN, dl);
    s_ad(hdr, hdr_len, m + dl);
    if (plain_len > 0)
        memcpy(m + dl + hdr_len, plain, plain_len);
    *out = m;
    *out_len = dl + hdr_len + plain_len;
    return MZ_OK;
}

mz_status mz__frame_sign_ext(mz_frame_hdr *h, const uint8_t *ext, size_t ext_len,
                             const uint8_t *plain, size_t plain_len, const mz_identity *id,
                             uint8_t *out, size_t cap, size_t *out_len, mz_err *err)
{
    char sig_hex[MZ_SIG_HEX_LEN + 1];
    size_t hl = MZ_FRAME_HDR_LEN + ext_len;
    uint8_t *m = NULL;
    size_t mlen;
    mz_status rc;

    if (id == NULL || memcmp(mz_identity_pk(id), h->src, MZ_FRAME_NODE_LEN) != 0)
        return mz_err_set(err, MZ_EINVAL, "frame %s: source is not the signing identity",
                          mz__frame_type_name(h->type));
    if (hl > MZ_FRAME_MAX_HDR || ext_len % 8 != 0)
        return mz_err_set(err, MZ_EINVAL, "frame %s: header extension of %zu bytes (a "
                          "multiple of 8, at most %d)", mz__frame_type_name(h->type), ext_len,
                          MZ_FRAME_MAX_HDR - MZ_FRAME_HDR_LEN);
    if ((rc = s_prepare(h, plain_len + ext_len, MZ_FRAME_SIG_LEN, MZ_FRAME_F_SIGNED, cap,
                        err)) != MZ_OK)
        return rc;
    /* s_prepare counted the extension as body: it is header. */
    h->hdr_len = (uint16_t)hl;
    h->body_len = (uint32_t)(plain_len + MZ_FRAME_SIG_LEN);
    memset(h->nonce, 0, sizeof h->nonce);
    if (plain != out + hl && plain_len > 0)
        memmove(out + hl, plain, plain_len);
    mz__frame_hdr_encode(h, out);
    s_put16(out + MZ_FRAME_OFF_HDR_LEN, (uint16_t)hl);
    if (ext_len > 0)
        memcpy(out + MZ_FRAME_HDR_LEN, ext, ext_len);
    if ((rc = s_signed_msg(out, hl, out + hl, plain_len, &m, &mlen, err)) != MZ_OK)
        return rc;
    /* The identity signs in hex only (its key stays inside identity.c). */
    mz_identity_sign_hex(id, m, mlen, sig_hex);
    free(m);
    sodium_hex2bin(out + hl + plain_len, MZ_FRAME_SIG_LEN, sig_hex, MZ_SIG_HEX_LEN, NULL, NULL,
                   NULL);
    *out_len = hl + plain_len + MZ_FRAME_SIG_LEN;
    return MZ_OK;
}

mz_status mz__frame_sign(mz_frame_hdr *h, const uint8_t *plain, size_t plain_len,
                         const mz_identity *id, uint8_t *out, size_t cap, size_t *out_len,
                         mz_err *err)
{
    return mz__frame_sign_ext(h, NULL, 0, plain, plain_len, id, out, cap, out_len, err);
}

mz_status mz__frame_verify(const uint8_t *buf, size_t len, const mz_frame_hdr *h,
                           const uint8_t **plain, size_t *plain_len, mz_err *err)
{
    size_t pl;
    uint8_t *m = NULL;
    size_t mlen;
    int bad;
    mz_status rc;

    if (!(h->flags & MZ_FRAME_F_SIGNED))
        return mz_err_set(err, MZ_EPROTO, "frame %s: not signed", mz__frame_type_name(h->type));
    if (len != (size_t)h->hdr_len + h->body_len || h->body_len < MZ_FRAME_SIG_LEN)
        return mz_err_set(err, MZ_EINVAL, "frame %s: buffer does not match its header",
                          mz__frame_type_name(h->type));
    pl = h->body_len - MZ_FRAME_SIG_LEN;
    if ((rc = s_signed_msg(buf, h->hdr_len, buf + h->hdr_len, pl, &m, &mlen, err)) != MZ_OK)
        return rc;
    bad = crypto_sign_verify_detached(buf + h->hdr_len + pl, m, mlen, h->src);
    free(m);
    if (bad != 0)
        return mz_err_set(err, MZ_ESIG, "frame %s: bad signature from %02x%02x%02x%02x%02x%02x",
                          mz__frame_type_name(h->type), h->src[0], h->src[1], h->src[2],
                          h->src[3], h->src[4], h->src[5]);
    *plain = buf + h->hdr_len;
    *plain_len = pl;
    return MZ_OK;
}

/* ---- relaying ---------------------------------------------------------- */

mz_status mz__frame_relay_hop(uint8_t *buf, size_t len, mz_err *err)
{
    unsigned limit, hops;

    if (buf == NULL || len < MZ_FRAME_HDR_LEN)
        return mz_err_set(err, MZ_EPROTO, "frame: truncated: %zu bytes, a header needs %d",
                          len, MZ_FRAME_HDR_LEN);
    limit = buf[MZ_FRAME_OFF_HOP_LIMIT];
    hops = buf[MZ_FRAME_OFF_HOPS];
    if (hops + 1 >= limit)
        return mz_err_set(err, MZ_ELIMIT, "frame: hop limit %u reached (%u hops so far); not "
                          "forwarded", limit, hops);
    buf[MZ_FRAME_OFF_HOPS] = (uint8_t)(hops + 1);
    return MZ_OK;
}
