/* Envelope decoding: mz_msg_parse (schema, limits), mz_msg_verify (signed
 * envelopes), mz_msg_open (sealed ones, with a wrong key: base64 and AEAD
 * checks), and the canonical form the signature or seal covers. Beyond "no
 * crash", checks that
 *  - a parsed envelope's canonical form parses again as a valid envelope
 *    with the same canonical form (the signed bytes are a fixed point);
 *  - the wire form a relay re-emits (mz_msg_dump, hops + 1) parses to the
 *    same canonical form and verifies exactly as the original did, so
 *    relaying never breaks a signature. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/msg.h"

static void s_fail(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_envelope: %s\n  first:  %s\n  second: %s\n", what, a ? a : "(null)",
            b ? b : "(null)");
    abort();
}

/* Parses buf as an envelope with limits that cannot refuse it for size. */
static json_t *s_reparse(const char *buf, size_t len, const char *what)
{
    mz_msg_limits big = { (size_t)-1, 0, 0 };
    json_t *env = NULL;
    mz_err e;

    if (mz_msg_parse(buf, len, &big, &env, NULL, &e) != MZ_OK)
        s_fail(what, buf, e.msg);
    return env;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char id[MZ_MSG_ID_MAX + 1];
    json_t *env = NULL, *env2, *env3;
    char *c1, *c2, *c3, *w;
    size_t n1, n2, n3, wn;
    mz_status v1, v2, v3;
    mz_err e;

    memset(id, 'x', sizeof id);
    if (mz_msg_parse((const char *)data, size, NULL, &env, id, &e) != MZ_OK) {
        if (env != NULL || memchr(id, '\0', sizeof id) == NULL)
            s_fail("failed parse left *out set or id_out unterminated", e.msg, NULL);
        return 0;
    }
    if (strcmp(id, mz_msg_id(env)) != 0)
        s_fail("id_out differs from the id field", id, mz_msg_id(env));
    if (mz_msg_type(env) == NULL || mz_msg_sender(env) == NULL ||
        mz_msg_recipient(env) == NULL || mz_msg_payload(env) == NULL ||
        mz_msg_hops(env) < 0 || mz_msg_hops(env) > MZ_MAX_HOPS)
        s_fail("accessor of a valid envelope", mz_msg_id(env), NULL);

    if (mz_msg_is_sealed(env)) {
        /* Sealed unicasts carry no signature; opening with a key that is not
         * the pair's exercises the base64 and AEAD checks. */
        static const unsigned char key[32] = { 1 };
        json_t *copy = json_deep_copy(env);
        mz_status o = mz_msg_open(copy, key, 0, &e);
        json_decref(copy);
        if (o != MZ_ESIG && o != MZ_EPROTO)
            s_fail("opening a sealed envelope with a wrong key neither ESIG nor EPROTO", e.msg,
                   NULL);
        v1 = MZ_ESIG;
    } else {
        v1 = mz_msg_verify(env, &e);
        if (v1 != MZ_OK && v1 != MZ_ESIG)
            s_fail("verify of a valid envelope neither OK nor ESIG", e.msg, NULL);
    }

    /* The canonical form is itself a valid envelope, and a fixed point. */
    c1 = mz_canon_dump(env, NULL, &n1);
    if (c1 == NULL || strlen(c1) != n1)
        s_fail("no canonical form for a valid envelope", mz_msg_id(env), NULL);
    env2 = s_reparse(c1, n1, "canonical form does not parse as an envelope");
    c2 = mz_canon_dump(env2, NULL, &n2);
    if (c2 == NULL || n1 != n2 || memcmp(c1, c2, n1) != 0)
        s_fail("canonical form is not a fixed point", c1, c2);
    v2 = mz_msg_is_sealed(env2) ? MZ_ESIG : mz_msg_verify(env2, NULL);
    if (v2 != v1)
        s_fail("verification changed through the canonical form", c1, c2);

    /* What a relay sends: hops + 1, jansson's compact dump. */
    json_object_set_new(env, "hops", json_integer(mz_msg_hops(env) + 1));
    w = mz_msg_dump(env, &wn);
    if (w == NULL)
        s_fail("mz_msg_dump failed", c1, NULL);
    env3 = s_reparse(w, wn, "relayed form does not parse as an envelope");
    c3 = mz_canon_dump(env3, mz_msg_unsigned_keys, &n3);
    free(c2);
    c2 = mz_canon_dump(env2, mz_msg_unsigned_keys, &n2);
    if (c2 == NULL || c3 == NULL || n2 != n3 || memcmp(c2, c3, n2) != 0)
        s_fail("relaying changed the signed bytes", c2, c3);
    v3 = mz_msg_is_sealed(env3) ? MZ_ESIG : mz_msg_verify(env3, NULL);
    if (v3 != v1)
        s_fail("verification changed through a relay", c1, w);

    free(c1);
    free(c2);
    free(c3);
    free(w);
    json_decref(env);
    json_decref(env2);
    json_decref(env3);
    return 0;
}
