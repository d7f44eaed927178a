/* Agreements (docs/AGREEMENTS.md): mz_agreement_validate, the two signature
 * checks, mz_agreement_refusal, mz_agreement_countersign, and the host's
 * usage store mz_agreements_check / mz_agreements_usage_at (SQLite, in
 * memory, fresh per input).
 *
 * Input: line 1 is the document; string values "@p" and "@c" become the
 * provider's and the consumer's keys, and a "provider_signature" or
 * "consumer_signature" of "@sign" is replaced by the real signature (the
 * provider signs first). Line 2, when present, is the RFC 3339 time of the
 * calls (default: now); line 3 the method called (default: the first of
 * "methods"). Each input makes three calls.
 *
 * Checks: a refusal-free document is valid and both signatures verify; the
 * store refuses exactly what mz_agreement_refusal refuses (same reason) and
 * refuses nothing else but over_limit; the calls it allowed are what
 * usage reports; requests_total is never exceeded; a counter-signed document
 * verifies for the consumer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/agreement.h"
#include "meshzero/agreement.h"
#include "meshzero/msg.h"

static mz_identity *s_provider, *s_consumer;

static void s_fail(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_agreement: %s\n  %s\n  %s\n", what, a ? a : "", b ? b : "");
    abort();
}

static void s_subst(json_t *v)
{
    const char *key;
    json_t *child;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach(v, key, child) {
            const char *s = json_string_value(child);
            if (s && strcmp(s, "@p") == 0)
                json_object_set_new(v, key, json_string(mz_identity_id(s_provider)));
            else if (s && strcmp(s, "@c") == 0)
                json_object_set_new(v, key, json_string(mz_identity_id(s_consumer)));
            else
                s_subst(child);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
            s_subst(child);
    }
}

static bool s_is(const json_t *doc, const char *key, const char *val)
{
    const char *s = json_string_value(json_object_get(doc, key));

    return s != NULL && strcmp(s, val) == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (mz_identity_generate(&s_provider, NULL) != MZ_OK ||
        mz_identity_generate(&s_consumer, NULL) != MZ_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size, *nl;
    char line[3][256] = { "", "", "" };
    json_t *doc;
    mz_agreements *store = NULL;
    const char *rid, *method, *refusal, *reason, *id;
    int64_t now = mz_now_ms(), total_limit;
    int allowed = 0;
    json_error_t je;

    nl = memchr(p, '\n', size);
    doc = json_loadb(p, nl ? (size_t)(nl - p) : size, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    for (int i = 1; i < 3 && nl != NULL; i++) {
        const char *s = nl + 1;
        size_t n;
        nl = memchr(s, '\n', (size_t)(end - s));
        n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (n >= sizeof line[i] || memchr(s, '\0', n) != NULL)
            break;
        memcpy(line[i], s, n);
        line[i][n] = '\0';
    }
    s_subst(doc);
    if (s_is(doc, "provider_signature", "@sign")) {
        if (s_is(doc, "provider", mz_identity_id(s_provider)))
            mz_sign_object(doc, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_provider_unsigned,
                           "provider_signature", s_provider, NULL);
        else
            json_object_del(doc, "provider_signature");
    }
    if (s_is(doc, "consumer_signature", "@sign")) {
        json_object_del(doc, "consumer_signature");
        if (s_is(doc, "consumer", mz_identity_id(s_consumer)))
            mz_sign_object(doc, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_consumer_unsigned,
                           "consumer_signature", s_consumer, NULL);
    }
    if (line[1][0] != '\0')
        (void)mz_time_parse(line[1], &now);
    rid = json_string_value(json_object_get(doc, "resource_id"));
    method = line[2][0] ? line[2]
                        : json_string_value(json_array_get(json_object_get(doc, "methods"), 0));
    if (rid == NULL)
        rid = "r";
    if (method == NULL)
        method = "m";

    refusal = mz_agreement_refusal(doc, mz_identity_id(s_provider), mz_identity_id(s_consumer),
                                   rid, method, now, NULL);
    if (refusal == NULL &&
        (mz_agreement_validate(doc, true, NULL) != MZ_OK ||
         mz_agreement_verify_provider(doc, NULL) != MZ_OK ||
         mz_agreement_verify_consumer(doc, NULL) != MZ_OK))
        s_fail("a document without refusal fails validation or a signature", rid, method);

    if (mz_agreements_open(NULL, &store, NULL) != MZ_OK)
        abort();
    total_limit = json_integer_value(
        json_object_get(json_object_get(doc, "limits"), "requests_total"));
    for (int call = 0; call < 3; call++) {
        mz_err e;
        mz_status st = mz_agreements_check(store, doc, mz_identity_id(s_provider),
                                           mz_identity_id(s_consumer), rid, method, now,
                                           &reason, &e);
        if (st == MZ_OK) {
            allowed++;
            if (refusal != NULL)
                s_fail("the store allowed a call mz_agreement_refusal refuses", refusal, rid);
        } else if (st == MZ_ELIMIT) {
            if (reason == NULL || (refusal != NULL && strcmp(reason, refusal) != 0) ||
                (refusal == NULL && strcmp(reason, MZ_AGR_OVER_LIMIT) != 0))
                s_fail("the store's refusal differs from mz_agreement_refusal",
                       reason ? reason : "(null)", refusal ? refusal : "(none)");
        } else {
            s_fail("the in-memory store failed", e.msg, rid);
        }
    }
    if (total_limit > 0 && allowed > total_limit)
        s_fail("more calls allowed than requests_total", rid, NULL);
    id = json_string_value(json_object_get(doc, "agreement_id"));
    if (allowed > 0 && id != NULL) {
        json_t *u = NULL;
        if (mz_agreements_usage_at(store, id, now, &u, NULL) != MZ_OK ||
            json_integer_value(json_object_get(u, "total")) != allowed)
            s_fail("usage does not count the calls allowed", id, NULL);
        json_decref(u);
    }
    mz_agreements_free(store);

    if (mz_agreement_verify_provider(doc, NULL) == MZ_OK &&
        s_is(doc, "consumer", mz_identity_id(s_consumer))) {
        json_t *copy = json_deep_copy(doc);
        if (mz_agreement_countersign(copy, s_consumer, NULL) == MZ_OK &&
            mz_agreement_verify_consumer(copy, NULL) != MZ_OK)
            s_fail("a counter-signed document does not verify for its consumer", id, NULL);
        json_decref(copy);
    }
    json_decref(doc);
    return 0;
}
