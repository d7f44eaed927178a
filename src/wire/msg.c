/* Signed objects and the message envelope (PROTOCOL.md "Envelope"). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "meshzero/msg.h"
#include "wire/msg_int.h"

const char *const mz_msg_unsigned_keys[] = { "signature", "hops", NULL };

/* ---- signed objects ---------------------------------------------------- */

static bool s_lower_hex(const char *s, size_t want)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (i >= want || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return i == want;
}

/* The signed bytes: domain, NUL, canonical(obj minus skip minus sig_key).
 * The signature key is always left out, or a signature would cover itself. */
static mz_status s_signed_bytes(const json_t *obj, const char *domain, const char *const *skip,
                                const char *sig_key, unsigned char **out, size_t *out_len,
                                mz_err *err)
{
    const char **keys = NULL;
    size_t nskip = 0, clen = 0, dlen = strlen(domain);
    char *canon = NULL;
    unsigned char *bytes = NULL;
    mz_status rc;

    while (skip != NULL && skip[nskip] != NULL)
        nskip++;
    if ((keys = calloc(nskip + 2, sizeof *keys)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "signing: allocating key list");
    for (size_t i = 0; i < nskip; i++)
        keys[i] = skip[i];
    keys[nskip] = sig_key;

    canon = mz_canon_dump(obj, keys, &clen);
    if (canon == NULL) {
        /* jansson cannot hold NaN/Inf, so in practice this is memory (or a
         * tree nested past the parser's own limit). */
        rc = mz_err_set(err, MZ_ENOMEM,
                        "signing: no canonical form (out of memory or nesting too deep)");
        goto done;
    }
    if ((bytes = malloc(dlen + 1 + clen)) == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "signing: allocating %zu bytes", dlen + 1 + clen);
        goto done;
    }
    memcpy(bytes, domain, dlen + 1);          /* includes the separating NUL */
    memcpy(bytes + dlen + 1, canon, clen);
    *out = bytes;
    *out_len = dlen + 1 + clen;
    rc = MZ_OK;
done:
    free(canon);
    free(keys);
    return rc;
}

mz_status mz_sign_object(json_t *obj, const char *domain, const char *const *skip,
                         const char *sig_key, const mz_identity *id, mz_err *err)
{
    char sig_hex[MZ_SIG_HEX_LEN + 1];
    unsigned char *bytes = NULL;
    size_t len = 0;
    mz_status rc;

    if (!json_is_object(obj) || domain == NULL || sig_key == NULL || id == NULL)
        return mz_err_set(err, MZ_EINVAL, "signing: need an object, a domain, a key and an identity");
    if ((rc = s_signed_bytes(obj, domain, skip, sig_key, &bytes, &len, err)) != MZ_OK)
        return rc;
    mz_identity_sign_hex(id, bytes, len, sig_hex);
    free(bytes);
    if (json_object_set_new(obj, sig_key, json_string(sig_hex)) != 0)
        return mz_err_set(err, MZ_ENOMEM, "signing: storing field '%s'", sig_key);
    return MZ_OK;
}

mz_status mz_verify_object(const json_t *obj, const char *domain, const char *const *skip,
                           const char *sig_key, const char *signer_hex, mz_err *err)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sig[crypto_sign_BYTES];
    unsigned char *bytes = NULL;
    const char *sig_hex;
    size_t len = 0;
    mz_status rc;
    int bad;

    if (!json_is_object(obj) || domain == NULL || sig_key == NULL)
        return mz_err_set(err, MZ_EINVAL, "verifying: need an object, a domain and a key");
    if (signer_hex == NULL || !s_lower_hex(signer_hex, MZ_ID_HEX_LEN)
        || sodium_hex2bin(pk, sizeof pk, signer_hex, MZ_ID_HEX_LEN, NULL, NULL, NULL) != 0)
        return mz_err_set(err, MZ_EPROTO, "signer must be 64 lowercase hex characters");
    sig_hex = json_string_value(json_object_get(obj, sig_key));
    if (sig_hex == NULL)
        return mz_err_set(err, MZ_EPROTO, "field '%s' is missing or not a string", sig_key);
    if (!s_lower_hex(sig_hex, MZ_SIG_HEX_LEN)
        || sodium_hex2bin(sig, sizeof sig, sig_hex, MZ_SIG_HEX_LEN, NULL, NULL, NULL) != 0)
        return mz_err_set(err, MZ_EPROTO, "field '%s' must be 128 lowercase hex characters",
                          sig_key);
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "verifying: libsodium initialisation failed");
    if ((rc = s_signed_bytes(obj, domain, skip, sig_key, &bytes, &len, err)) != MZ_OK)
        return rc;
    bad = crypto_sign_verify_detached(sig, bytes, len, pk);
    free(bytes);
    if (bad != 0)
        return mz_err_set(err, MZ_ESIG, "bad signature in '%s' from %.12s", sig_key, signer_hex);
    return MZ_OK;
}

/* ---- envelope ---------------------------------------------------------- */

typedef bool (*s_check_fn)(const json_t *v);

static bool s_str_charset(const json_t *v, size_t max, const char *extra, bool upper)
{
    const char *s = json_string_value(v);
    size_t n;

    if (s == NULL || (n = json_string_length(v)) < 1 || n > max || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z')
            || strchr(extra, c) != NULL)
            continue;
        return false;
    }
    return true;
}

static bool s_check_id(const json_t *v)
{
    return s_str_charset(v, MZ_MSG_ID_MAX, "._:-", true);
}

static bool s_check_type(const json_t *v)
{
    return s_str_charset(v, MZ_MSG_TYPE_MAX, "_.", false);
}

static bool s_check_node(const json_t *v)
{
    return json_is_string(v) && s_lower_hex(json_string_value(v), MZ_ID_HEX_LEN);
}

static bool s_check_recipient(const json_t *v)
{
    return s_check_node(v) || (json_is_string(v) && strcmp(json_string_value(v), "*") == 0);
}

static bool s_check_timestamp(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) <= 40
        && mz_time_parse(json_string_value(v), NULL);
}

static bool s_check_payload(const json_t *v)
{
    return json_is_object(v);
}

static bool s_check_signature(const json_t *v)
{
    return json_is_string(v) && s_lower_hex(json_string_value(v), MZ_SIG_HEX_LEN);
}

static bool s_check_hops(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0
        && json_integer_value(v) <= MZ_MAX_HOPS;
}

/* The envelope schema: one row per field, checked in this order. */
static const struct s_field {
    const char *name;
    bool        required;
    s_check_fn  check;
    const char *expect;     /* completes "field 'x' must be ..." */
} s_fields[] = {
    { "id",        true,  s_check_id,        "a string of 1-64 characters from [A-Za-z0-9._:-]" },
    { "type",      true,  s_check_type,      "a string of 1-32 characters from [a-z0-9_.]" },
    { "sender",    true,  s_check_node,      "64 lowercase hex characters" },
    { "recipient", true,  s_check_recipient, "64 lowercase hex characters or \"*\"" },
    { "timestamp", true,  s_check_timestamp, "an RFC 3339 date-time of at most 40 characters" },
    { "payload",   true,  s_check_payload,   "an object" },
    { "signature", true,  s_check_signature, "128 lowercase hex characters" },
    { "hops",      false, s_check_hops,      "an integer from 0 to 255" },
};
#define S_NFIELDS (sizeof s_fields / sizeof s_fields[0])

/* True when v nests no deeper than max (a container counts 1). Stops
 * descending as soon as the bound is passed, so recursion stays <= max+1. */
static bool s_depth_ok(const json_t *v, size_t depth, size_t max)
{
    const char *key;
    json_t *child;
    size_t i;

    if (!json_is_object(v) && !json_is_array(v))
        return true;
    if (depth + 1 > max)
        return false;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, child)
            if (!s_depth_ok(child, depth + 1, max))
                return false;
    } else {
        json_array_foreach(v, i, child)
            if (!s_depth_ok(child, depth + 1, max))
                return false;
    }
    return true;
}

/* Object members plus array elements in v, counting no further than stop. */
static size_t s_members(const json_t *v, size_t stop)
{
    const char *key;
    json_t *child;
    size_t i, n = 0;

    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, child) {
            n += 1 + s_members(child, stop - n);
            if (n >= stop)
                return n;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child) {
            n += 1 + s_members(child, stop - n);
            if (n >= stop)
                return n;
        }
    }
    return n;
}

static bool s_known_field(const char *key)
{
    for (size_t i = 0; i < S_NFIELDS; i++)
        if (strcmp(key, s_fields[i].name) == 0)
            return true;
    return false;
}

mz_status mz_msg_parse(const char *buf, size_t len, const mz_msg_limits *lim,
                       json_t **out, char *id_out, mz_err *err)
{
    size_t max_bytes = (lim && lim->max_bytes) ? lim->max_bytes : MZ_DEFAULT_MAX_MESSAGE;
    size_t max_depth = (lim && lim->max_depth) ? lim->max_depth : MZ_DEFAULT_MAX_JSON_DEPTH;
    char who[sizeof "message " + MZ_MSG_ID_MAX] = "message";
    json_error_t jerr;
    json_t *env = NULL, *idv;
    const char *key;
    json_t *val;
    mz_status rc;

    *out = NULL;
    if (id_out != NULL)
        id_out[0] = '\0';
    if (buf == NULL)
        return mz_err_set(err, MZ_EINVAL, "message: no buffer");
    if (len > max_bytes)
        return mz_err_set(err, MZ_ELIMIT, "message of %zu bytes exceeds the limit of %zu",
                          len, max_bytes);
    /* DECODE_ANY so a scalar gets our clearer "must be an object" below. */
    env = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (env == NULL) {
        switch (json_error_code(&jerr)) {
        case json_error_out_of_memory:
            return mz_err_set(err, MZ_ENOMEM, "message: out of memory while parsing");
        case json_error_stack_overflow:
            return mz_err_set(err, MZ_ELIMIT, "message: JSON nested too deeply (%s)", jerr.text);
        case json_error_duplicate_key:
            return mz_err_set(err, MZ_EPROTO, "message: duplicate field (%s)", jerr.text);
        default:
            return mz_err_set(err, MZ_EPROTO, "message: not valid JSON: %s at byte %d",
                              jerr.text, jerr.position);
        }
    }
    if (!json_is_object(env)) {
        rc = mz_err_set(err, MZ_EPROTO, "message: top level must be an object");
        goto fail;
    }
    /* Learn the id first, so every later error (and the reply) can name it. */
    idv = json_object_get(env, "id");
    if (idv != NULL && s_check_id(idv)) {
        snprintf(who, sizeof who, "message %s", json_string_value(idv));
        if (id_out != NULL)
            memcpy(id_out, json_string_value(idv), json_string_length(idv) + 1);
    }
    if (!s_depth_ok(env, 0, max_depth)) {
        rc = mz_err_set(err, MZ_ELIMIT, "%s: JSON nesting deeper than the limit of %zu", who,
                        max_depth);
        goto fail;
    }
    {
        size_t max_members = (lim && lim->max_members) ? lim->max_members
                                                       : MZ_DEFAULT_MAX_JSON_MEMBERS;
        size_t members = s_members(env, max_members + 1);
        if (members > max_members) {
            rc = mz_err_set(err, MZ_ELIMIT, "%s: more than %zu JSON members and elements",
                            who, max_members);
            goto fail;
        }
    }
    json_object_foreach(env, key, val) {
        if (!s_known_field(key)) {
            rc = mz_err_set(err, MZ_EPROTO, "%s: unknown field '%.40s'", who, key);
            goto fail;
        }
    }
    for (size_t i = 0; i < S_NFIELDS; i++) {
        const struct s_field *f = &s_fields[i];
        json_t *v = json_object_get(env, f->name);

        if (v == NULL) {
            if (!f->required)
                continue;
            /* A sealed unicast is authenticated by its AEAD, not signed. */
            if (strcmp(f->name, "signature") == 0 && mz_msg_is_sealed(env))
                continue;
            rc = mz_err_set(err, MZ_EPROTO, "%s: missing field '%s'", who, f->name);
            goto fail;
        }
        if (!f->check(v)) {
            rc = mz_err_set(err, MZ_EPROTO, "%s: field '%s' must be %s", who, f->name,
                            f->expect);
            goto fail;
        }
    }
    *out = env;
    return MZ_OK;
fail:
    json_decref(env);
    return rc;
}

json_t *mz_msg_new(const char *type, const char *sender, const char *recipient,
                   json_t *payload)
{
    char id[2 * 16 + 1], ts[32];
    json_t *env = NULL;

    if (payload == NULL && (payload = json_object()) == NULL)
        return NULL;
    if (type == NULL || sender == NULL || recipient == NULL || (env = json_object()) == NULL)
        goto fail;
    mz_random_hex(id, 16);
    mz_time_format(mz_now_ms(), ts);
    /* Insertion order is the wire order jansson dumps: keep it readable. */
    if (json_object_set_new(env, "id", json_string(id)) != 0
        || json_object_set_new(env, "type", json_string(type)) != 0
        || json_object_set_new(env, "sender", json_string(sender)) != 0
        || json_object_set_new(env, "recipient", json_string(recipient)) != 0
        || json_object_set_new(env, "timestamp", json_string(ts)) != 0
        || json_object_set_new(env, "hops", json_integer(0)) != 0)
        goto fail;
    if (json_object_set_new(env, "payload", payload) != 0) {
        payload = NULL;        /* set_new consumed it even on failure */
        goto fail;
    }
    return env;
fail:
    json_decref(payload);
    json_decref(env);
    return NULL;
}

mz_status mz_msg_sign(json_t *env, const mz_identity *id, mz_err *err)
{
    const char *sender = mz_msg_sender(env);
    const char *msg_id = mz_msg_id(env);

    if (id == NULL)
        return mz_err_set(err, MZ_EINVAL, "message %s: no identity to sign with",
                          msg_id ? msg_id : "?");
    /* A signature by anyone but the sender could never verify. */
    if (sender == NULL || strcmp(sender, mz_identity_id(id)) != 0)
        return mz_err_set(err, MZ_EINVAL, "message %s: signer %.12s is not the sender",
                          msg_id ? msg_id : "?", mz_identity_id(id));
    return mz_sign_object(env, MZ_MSG_SIG_DOMAIN, mz_msg_unsigned_keys, "signature", id, err);
}

mz_status mz_msg_verify(const json_t *env, mz_err *err)
{
    const char *msg_id = mz_msg_id(env);
    const char *sender = mz_msg_sender(env);
    mz_err inner = { MZ_OK, "" };
    mz_status rc;

    if (sender == NULL)
        return mz_err_set(err, MZ_EPROTO, "message %s: missing field 'sender'",
                          msg_id ? msg_id : "?");
    rc = mz_verify_object(env, MZ_MSG_SIG_DOMAIN, mz_msg_unsigned_keys, "signature", sender,
                          &inner);
    if (rc != MZ_OK)
        return mz_err_set(err, rc, "message %.64s: %s", msg_id ? msg_id : "?", inner.msg);
    return MZ_OK;
}

const char *mz_msg_id(const json_t *env)
{
    return json_string_value(json_object_get(env, "id"));
}

const char *mz_msg_type(const json_t *env)
{
    return json_string_value(json_object_get(env, "type"));
}

const char *mz_msg_sender(const json_t *env)
{
    return json_string_value(json_object_get(env, "sender"));
}

const char *mz_msg_recipient(const json_t *env)
{
    return json_string_value(json_object_get(env, "recipient"));
}

json_t *mz_msg_payload(const json_t *env)
{
    return json_object_get(env, "payload");
}

void mz_msg_set_hops(json_t *env, int hops)
{
    json_object_set_new(env, "hops", json_integer(hops));
}

const char *mz_msg_timestamp(const json_t *env)
{
    return json_string_value(json_object_get(env, "timestamp"));
}

int mz_msg_hops(const json_t *env)
{
    json_t *h = json_object_get(env, "hops");
    json_int_t v = json_is_integer(h) ? json_integer_value(h) : 0;

    /* Clamped: an unvalidated envelope may carry any integer here. */
    return v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v;
}

char *mz_msg_dump(const json_t *env, size_t *len)
{
    char *s = json_dumps(env, JSON_COMPACT);

    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}


bool mz_json_within(const json_t *v, size_t max_depth, size_t max_members)
{
    return s_depth_ok(v, 0, max_depth) && s_members(v, max_members + 1) <= max_members;
}

/* ---- sealing (PROTOCOL.md "Sealed messages") ---------------------------- */

/* The routing header bound to a sealed payload as associated data. */
static const char *const s_ad_skip[] = { "payload", "signature", "hops", NULL };

bool mz_msg_is_sealed(const json_t *env)
{
    const json_t *pl = json_object_get(env, "payload");
    const char *to = json_string_value(json_object_get(env, "recipient"));

    return json_is_object(pl) && json_object_size(pl) == 1 &&
           json_is_string(json_object_get(pl, "sealed")) && to != NULL && strcmp(to, "*") != 0;
}

mz_status mz__msg_seal_bytes(json_t *env, const unsigned char key[32], const char *plain,
                             size_t plain_len, mz_err *err)
{
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    unsigned char *box = NULL;
    char *ad = NULL, *b64 = NULL;
    size_t ad_len, b64_len;
    unsigned long long clen;
    mz_status rc = MZ_ENOMEM;

    ad = mz_canon_dump(env, s_ad_skip, &ad_len);
    if (ad == NULL)
        goto done;
    box = malloc(sizeof nonce + plain_len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    if (box == NULL)
        goto done;
    mz_random_buf(nonce, sizeof nonce);
    memcpy(box, nonce, sizeof nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(box + sizeof nonce, &clen,
                                               (const unsigned char *)plain, plain_len,
                                               (const unsigned char *)ad, ad_len, NULL, nonce,
                                               key);
    b64_len = sodium_base64_encoded_len(sizeof nonce + clen,
                                        sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if ((b64 = malloc(b64_len)) == NULL)
        goto done;
    sodium_bin2base64(b64, b64_len, box, sizeof nonce + clen,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (json_object_set_new(env, "payload", json_pack("{s:s}", "sealed", b64)) != 0)
        goto done;
    json_object_del(env, "signature");
    rc = MZ_OK;
done:
    free(ad);
    free(box);
    free(b64);
    return rc == MZ_OK ? MZ_OK : mz_err_set(err, rc, "sealing: out of memory");
}

mz_status mz_msg_seal(json_t *env, const unsigned char key[32], mz_err *err)
{
    size_t plain_len;
    char *plain = mz_canon_dump(json_object_get(env, "payload"), NULL, &plain_len);
    mz_status rc;

    if (plain == NULL)
        return mz_err_set(err, MZ_ENOMEM, "sealing: out of memory");
    rc = mz__msg_seal_bytes(env, key, plain, plain_len, err);
    sodium_memzero(plain, plain_len);
    free(plain);
    return rc;
}

mz_status mz_msg_open(json_t *env, const unsigned char key[32], size_t max_depth, mz_err *err)
{
    const char *b64 = json_string_value(json_object_get(json_object_get(env, "payload"),
                                                        "sealed"));
    size_t b64_len = b64 ? strlen(b64) : 0, bin_len = 0, ad_len;
    unsigned char *bin = NULL, *plain = NULL;
    unsigned long long plain_len;
    char *ad = NULL;
    json_t *pl = NULL;
    json_error_t jerr;
    mz_status rc;
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;

    if (b64 == NULL)
        return mz_err_set(err, MZ_EPROTO, "message %s: not sealed", mz_msg_id(env));
    bin = malloc(b64_len + 1);
    ad = mz_canon_dump(env, s_ad_skip, &ad_len);
    if (bin == NULL || ad == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "opening: out of memory");
        goto done;
    }
    if (sodium_base642bin(bin, b64_len + 1, b64, b64_len, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        bin_len < nb + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
        rc = mz_err_set(err, MZ_EPROTO, "message %s: 'sealed' is not base64url of a nonce and "
                        "a ciphertext", mz_msg_id(env));
        goto done;
    }
    plain = malloc(bin_len);
    if (plain == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "opening: out of memory");
        goto done;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plain_len, NULL, bin + nb,
                                                   bin_len - nb, (const unsigned char *)ad,
                                                   ad_len, bin, key) != 0) {
        rc = mz_err_set(err, MZ_ESIG, "message %s: sealed payload fails authentication (forged, "
                        "altered or not for us)", mz_msg_id(env));
        goto done;
    }
    pl = json_loadb((const char *)plain, (size_t)plain_len, JSON_REJECT_DUPLICATES, &jerr);
    if (pl == NULL || !json_is_object(pl) || !s_depth_ok(pl, 1, max_depth ? max_depth
                                                                  : MZ_DEFAULT_MAX_JSON_DEPTH)) {
        rc = mz_err_set(err, MZ_EPROTO, "message %s: sealed payload is not a JSON object within "
                        "the depth limit", mz_msg_id(env));
        goto done;
    }
    json_object_set(env, "payload", pl);
    rc = MZ_OK;
done:
    json_decref(pl);
    if (plain)
        sodium_memzero(plain, bin_len);
    free(plain);
    free(bin);
    free(ad);
    return rc;
}
