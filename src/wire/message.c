/* mz_msg: the JSON envelope of msg.c behind one opaque handle, and its
 * mapping to and from the wire v2 frame (PROTOCOL.md "From the envelope to
 * the frame"). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wire/frame.h"
#include "wire/message.h"

struct mz_msg {
    json_t *env;                /* owned */
    bool authentic;             /* made from a frame that verified or opened */
};

static mz_msg *s_wrap(json_t *env)
{
    mz_msg *msg;

    if (env == NULL)
        return NULL;
    if ((msg = malloc(sizeof *msg)) == NULL) {
        json_decref(env);
        return NULL;
    }
    msg->env = env;
    msg->authentic = false;
    return msg;
}

mz_status mz__msg_parse(const char *buf, size_t len, const mz_msg_limits *lim, mz_msg **out,
                        char *id_out, mz_err *err)
{
    json_t *env = NULL;
    mz_status rc = mz_msg_parse(buf, len, lim, &env, id_out, err);

    *out = NULL;
    if (rc != MZ_OK)
        return rc;
    if ((*out = s_wrap(env)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    return MZ_OK;
}

mz_msg *mz__msg_new(const char *type, const char *sender, const char *recipient,
                    json_t *payload)
{
    json_t *env = mz_msg_new(type, sender, recipient, payload);

    return s_wrap(env);
}

void mz__msg_free(mz_msg *msg)
{
    if (msg == NULL)
        return;
    json_decref(msg->env);
    free(msg);
}

const char *mz__msg_id(const mz_msg *msg) { return mz_msg_id(msg->env); }
const char *mz__msg_type(const mz_msg *msg) { return mz_msg_type(msg->env); }
const char *mz__msg_sender(const mz_msg *msg) { return mz_msg_sender(msg->env); }
const char *mz__msg_recipient(const mz_msg *msg) { return mz_msg_recipient(msg->env); }
const char *mz__msg_timestamp(const mz_msg *msg) { return mz_msg_timestamp(msg->env); }
int mz__msg_hops(const mz_msg *msg) { return mz_msg_hops(msg->env); }
const json_t *mz__msg_payload(const mz_msg *msg) { return mz_msg_payload(msg->env); }
bool mz__msg_is_sealed(const mz_msg *msg) { return mz_msg_is_sealed(msg->env); }
bool mz__msg_has_signature(const mz_msg *msg)
{
    return json_object_get(msg->env, "signature") != NULL;
}

mz_status mz__msg_set_id(mz_msg *msg, const char *id)
{
    return json_object_set_new(msg->env, "id", json_string(id)) == 0 ? MZ_OK : MZ_ENOMEM;
}

void mz__msg_set_hops(mz_msg *msg, int hops) { mz_msg_set_hops(msg->env, hops); }

mz_status mz__msg_sign(mz_msg *msg, const mz_identity *id, mz_err *err)
{
    return mz_msg_sign(msg->env, id, err);
}

mz_status mz__msg_verify(const mz_msg *msg, mz_err *err)
{
    if (msg->authentic)         /* its frame's signature or seal was checked */
        return MZ_OK;
    return mz_msg_verify(msg->env, err);
}

mz_status mz__msg_seal(mz_msg *msg, const unsigned char key[32], mz_err *err)
{
    return mz_msg_seal(msg->env, key, err);
}

mz_status mz__msg_open(mz_msg *msg, const unsigned char key[32], mz_err *err)
{
    return mz_msg_open(msg->env, key, 0, err);
}

char *mz__msg_dump(const mz_msg *msg, size_t *len) { return mz_msg_dump(msg->env, len); }

/* ---- wire v2 ----------------------------------------------------------- */

static int s_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Exactly 2n lowercase hex characters into n bytes (ids on every send:
 * sodium_hex2bin's generality showed in profiles). */
static bool s_hex_to(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = s_nibble(hex[2 * i]), lo = hi < 0 ? -1 : s_nibble(hex[2 * i + 1]);
        if (lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == '\0';
}

bool mz__msg_frame_hdr(const mz_msg *msg, bool link, mz_frame_hdr *h)
{
    const char *to = mz__msg_recipient(msg), *ts = mz__msg_timestamp(msg);
    uint8_t code = mz__frame_type_code(mz__msg_type(msg));
    unsigned cls = mz__frame_type_classes(code);
    char back[32];
    int64_t ms = 0;
    int hops = mz__msg_hops(msg);

    if (cls == 0 || ts == NULL || !mz_time_parse(ts, &ms))
        return false;
    /* Only an exact round trip keeps the origin's signatures valid. */
    mz_time_format(ms, back);
    if (strcmp(back, ts) != 0 || hops < 0 || hops > 254)
        return false;
    memset(h, 0, sizeof *h);
    h->type = code;
    h->hdr_len = MZ_FRAME_HDR_LEN;
    h->time_ms = ms;
    h->hops = (uint8_t)hops;
    if (!s_hex_to(mz__msg_id(msg), h->id, sizeof h->id) ||
        !s_hex_to(mz__msg_sender(msg), h->src, sizeof h->src))
        return false;
    if (strcmp(to, "*") != 0 && !s_hex_to(to, h->dst, sizeof h->dst))
        return false;
    if (link)
        h->hop_limit = 1;
    else if (cls & (MZ_FRAME_C_BROADCAST | MZ_FRAME_C_UNICAST))
        h->hop_limit = MZ_FRAME_DEFAULT_HOP_LIMIT;
    else
        return false;
    if (link ? !(cls & MZ_FRAME_C_LINK)
             : (cls & MZ_FRAME_C_BROADCAST) ? strcmp(to, "*") != 0 : strcmp(to, "*") == 0)
        return false;
    return hops < h->hop_limit;
}

/* The payload's JSON bytes: the frame's plaintext. */
static char *s_body(const mz_msg *msg, size_t *len)
{
    char *b = json_dumps(mz__msg_payload(msg), JSON_COMPACT);

    if (b != NULL)
        *len = strlen(b);
    return b;
}

mz_status mz__msg_frame_seal(const mz_msg *msg, const unsigned char key[32], uint8_t **out,
                             size_t *out_len, mz_err *err)
{
    mz_frame_hdr h;
    size_t n = 0, cap;
    char *body;
    uint8_t *f;
    mz_status rc;

    *out = NULL;
    if (!mz__msg_frame_hdr(msg, false, &h))
        return mz_err_set(err, MZ_EINVAL, "message %s: has no frame form", mz__msg_id(msg));
    if ((body = s_body(msg, &n)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: serialising");
    cap = mz__frame_sealed_len(n);
    if ((f = malloc(cap)) == NULL) {
        free(body);
        return mz_err_set(err, MZ_ENOMEM, "frame: allocating %zu bytes", cap);
    }
    rc = mz__frame_seal(&h, (const uint8_t *)body, n, key, f, cap, out_len, err);
    free(body);
    if (rc != MZ_OK) {
        free(f);
        return rc;
    }
    *out = f;
    return MZ_OK;
}

mz_status mz__msg_frame_sign(const mz_msg *msg, const mz_identity *id, bool link,
                             uint8_t **out, size_t *out_len, mz_err *err)
{
    uint8_t ext[MZ_FRAME_SIG_LEN];
    const char *sig = json_string_value(json_object_get(msg->env, "signature"));
    mz_frame_hdr h;
    size_t n = 0, cap, ext_len = 0;
    char *body;
    uint8_t *f;
    mz_status rc;

    *out = NULL;
    if (!mz__msg_frame_hdr(msg, link, &h))
        return mz_err_set(err, MZ_EINVAL, "message %s: has no frame form", mz__msg_id(msg));
    /* A broadcast carries its envelope signature too, so that a node can
     * hand it on to a peer that speaks only envelopes. */
    if (!link && strcmp(mz__msg_recipient(msg), "*") == 0 && s_hex_to(sig, ext, sizeof ext))
        ext_len = sizeof ext;
    if ((body = s_body(msg, &n)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: serialising");
    cap = mz__frame_signed_len(n) + ext_len;
    if ((f = malloc(cap)) == NULL) {
        free(body);
        return mz_err_set(err, MZ_ENOMEM, "frame: allocating %zu bytes", cap);
    }
    rc = mz__frame_sign_ext(&h, ext, ext_len, (const uint8_t *)body, n, id, f, cap, out_len,
                            err);
    free(body);
    if (rc != MZ_OK) {
        free(f);
        return rc;
    }
    *out = f;
    return MZ_OK;
}

mz_status mz__msg_from_frame(const uint8_t *buf, const mz_frame_hdr *h, const uint8_t *plain,
                             size_t plain_len, mz_msg **out, mz_err *err)
{
    char id[2 * MZ_FRAME_ID_LEN + 1], src[MZ_ID_HEX_LEN + 1], dst[MZ_ID_HEX_LEN + 1], ts[32];
    const char *type = mz__frame_type_name(h->type);
    json_error_t jerr;
    json_t *pl, *env;

    *out = NULL;
    pl = json_loadb((const char *)plain, plain_len, JSON_REJECT_DUPLICATES, &jerr);
    if (pl == NULL || !json_is_object(pl)) {
        json_decref(pl);
        return mz_err_set(err, MZ_EPROTO, "frame %s: body is not a JSON object (%s)", type,
                          pl == NULL ? jerr.text : "another JSON value");
    }
    /* The envelope is level 1: the payload may nest one level less. */
    if (!mz_json_within(pl, MZ_DEFAULT_MAX_JSON_DEPTH - 1, MZ_DEFAULT_MAX_JSON_MEMBERS)) {
        json_decref(pl);
        return mz_err_set(err, MZ_ELIMIT, "frame %s: body nests deeper than %d levels or has "
                          "over %d members", type, MZ_DEFAULT_MAX_JSON_DEPTH - 1,
                          MZ_DEFAULT_MAX_JSON_MEMBERS);
    }
    sodium_bin2hex(id, sizeof id, h->id, sizeof h->id);
    sodium_bin2hex(src, sizeof src, h->src, sizeof h->src);
    sodium_bin2hex(dst, sizeof dst, h->dst, sizeof h->dst);
    mz_time_format(h->time_ms, ts);
    env = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:o}", "id", id, "type", type, "sender", src,
                    "recipient", mz__frame_dst_is_all(h) ? "*" : dst, "timestamp", ts,
                    "hops", (json_int_t)h->hops, "payload", pl);
    if (env != NULL && h->hdr_len >= MZ_FRAME_HDR_LEN + MZ_FRAME_SIG_LEN &&
        (h->flags & MZ_FRAME_F_SIGNED) && mz__frame_dst_is_all(h)) {
        char sig[MZ_SIG_HEX_LEN + 1];
        sodium_bin2hex(sig, sizeof sig, buf + MZ_FRAME_HDR_LEN, MZ_FRAME_SIG_LEN);
        json_object_set_new(env, "signature", json_string(sig));
    }
    if ((*out = s_wrap(env)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    (*out)->authentic = true;
    return MZ_OK;
}
