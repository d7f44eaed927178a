/* Agreements: documents, signatures, every refusal reason, and the usage
 * store (atomic counting, persistence, per-day rollover). */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "state/agreement.h"
#include "meshzero/agreement.h"
#include "meshzero/msg.h"

#define DAY_MS (86400 * (int64_t)1000)

/* 2026-03-01T12:00:00Z: the tests' "now". */
static int64_t s_t0;

typedef struct fixture {
    mz_identity *provider;      /* the resource owner's key */
    mz_identity *consumer;      /* the caller's node key */
    mz_identity *other;         /* somebody else */
    mz_agreements *store;       /* in memory */
    char *dir;                  /* temp dir for the tests that need a file */
} fixture;

/* ---- helpers ----------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char tmpl[] = "/tmp/mz-test-agreement-XXXXXX";

    assert_non_null(f);
    assert_true(mz_time_parse("2026-03-01T12:00:00Z", &s_t0));
    assert_int_equal(mz_identity_generate(&f->provider, NULL), MZ_OK);
    assert_int_equal(mz_identity_generate(&f->consumer, NULL), MZ_OK);
    assert_int_equal(mz_identity_generate(&f->other, NULL), MZ_OK);
    assert_int_equal(mz_agreements_open(NULL, &f->store, NULL), MZ_OK);
    assert_non_null(mkdtemp(tmpl));
    f->dir = strdup(tmpl);
    assert_non_null(f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    mz_agreements_free(f->store);
    mz_identity_free(f->provider);
    mz_identity_free(f->consumer);
    mz_identity_free(f->other);
    assert_int_equal(nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(f->dir);
    free(f);
    return 0;
}

/* An agreement from provider to consumer for resource "agent123", methods
 * process_image and describe, valid a day either side of s_t0, signed by
 * both. */
static json_t *make_agr(const mz_identity *provider, const mz_identity *consumer,
                        const char *id, int64_t per_day, int64_t total)
{
    static const char *const methods[] = { "process_image", "describe", NULL };
    mz_agreement_spec spec = {
        .agreement_id = id, .consumer = mz_identity_id(consumer), .resource_id = "agent123",
        .methods = methods, .requests_per_day = per_day, .requests_total = total,
        .not_before_ms = s_t0 - DAY_MS, .expires_at_ms = s_t0 + DAY_MS,
    };
    mz_err err = { MZ_OK, "" };
    json_t *a = NULL;

    if (mz_agreement_create(&spec, provider, &a, &err) != MZ_OK)
        fail_msg("create: %s", err.msg);
    if (mz_agreement_countersign(a, consumer, &err) != MZ_OK)
        fail_msg("countersign: %s", err.msg);
    return a;
}

static json_t *good(fixture *f)
{
    return make_agr(f->provider, f->consumer, "agr-1", 0, 0);
}

/* Checks a call (process_image on agent123 by the consumer at now) and
 * returns the reason ("ok" when allowed). */
static const char *check_full(fixture *f, mz_agreements *store, const json_t *a,
                              const char *provider_key, const char *caller,
                              const char *resource, const char *method, int64_t now)
{
    const char *reason = "junk";
    mz_err err = { MZ_OK, "" };
    mz_status rc = mz_agreements_check(store, a, provider_key, caller, resource, method, now,
                                       &reason, &err);

    (void)f;
    if (rc == MZ_OK) {
        assert_null(reason);
        return "ok";
    }
    if (rc != MZ_ELIMIT)
        fail_msg("check: %s: %s", mz_status_name(rc), err.msg);
    assert_int_equal(err.code, MZ_ELIMIT);
    assert_non_null(reason);
    assert_true(err.msg[0] != '\0');
    return reason;
}

static const char *check_at(fixture *f, const json_t *a, int64_t now)
{
    return check_full(f, f->store, a, mz_identity_id(f->provider), mz_identity_id(f->consumer),
                      "agent123", "process_image", now);
}

static const char *check(fixture *f, const json_t *a)
{
    return check_at(f, a, s_t0);
}

/* Re-signs a (modified) agreement with both real keys, so that only the
 * modification can make it fail. */
static void resign(fixture *f, json_t *a)
{
    assert_int_equal(mz_sign_object(a, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_provider_unsigned,
                                    "provider_signature", f->provider, NULL), MZ_OK);
    assert_int_equal(mz_sign_object(a, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_consumer_unsigned,
                                    "consumer_signature", f->consumer, NULL), MZ_OK);
}

static int64_t usage_field(mz_agreements *store, const char *id, int64_t now, const char *key)
{
    json_t *u = NULL;
    mz_err err = { MZ_OK, "" };
    int64_t v;

    if (mz_agreements_usage_at(store, id, now, &u, &err) != MZ_OK)
        fail_msg("usage: %s", err.msg);
    assert_true(json_is_integer(json_object_get(u, key)));
    v = json_integer_value(json_object_get(u, key));
    json_decref(u);
    return v;
}

/* ---- documents and signatures ------------------------------------------- */

static void test_create_and_countersign(void **state)
{
    static const char *const methods[] = { "process_image", NULL };
    fixture *f = *state;
    mz_agreement_spec spec = {
        .agreement_id = "deal.2026:q1_a-b", .consumer = mz_identity_id(f->consumer),
        .resource_id = "agent123", .methods = methods, .requests_per_day = 100,
        .requests_total = 1000, .not_before_ms = s_t0, .expires_at_ms = s_t0 + 30 * DAY_MS,
    };
    mz_err err = { MZ_OK, "" };
    json_t *a = NULL;
    int64_t ms;

    assert_int_equal(mz_agreement_create(&spec, f->provider, &a, &err), MZ_OK);
    assert_string_equal(json_string_value(json_object_get(a, "agreement_id")),
                        "deal.2026:q1_a-b");
    assert_string_equal(json_string_value(json_object_get(a, "provider")),
                        mz_identity_id(f->provider));
    assert_string_equal(json_string_value(json_object_get(a, "consumer")),
                        mz_identity_id(f->consumer));
    assert_string_equal(json_string_value(json_object_get(a, "resource_id")), "agent123");
    assert_int_equal(json_array_size(json_object_get(a, "methods")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "limits"),
                                                        "requests_per_day")), 100);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "limits"),
                                                        "requests_total")), 1000);
    assert_string_equal(json_string_value(json_object_get(a, "not_before")),
                        "2026-03-01T12:00:00.000Z");
    assert_true(mz_time_parse(json_string_value(json_object_get(a, "expires_at")), &ms));
    assert_true(ms == s_t0 + 30 * DAY_MS);
    /* Provider-signed only: a draft, not yet usable. */
    assert_non_null(json_object_get(a, "provider_signature"));
    assert_null(json_object_get(a, "consumer_signature"));
    assert_int_equal(mz_agreement_validate(a, false, NULL), MZ_OK);
    assert_int_equal(mz_agreement_validate(a, true, &err), MZ_EPROTO);
    assert_non_null(strstr(err.msg, "consumer_signature"));
    assert_int_equal(mz_agreement_verify_provider(a, NULL), MZ_OK);
    assert_int_equal(mz_agreement_verify_consumer(a, NULL), MZ_EPROTO);
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);

    assert_int_equal(mz_agreement_countersign(a, f->consumer, &err), MZ_OK);
    assert_int_equal(mz_agreement_validate(a, true, NULL), MZ_OK);
    assert_int_equal(mz_agreement_verify_provider(a, NULL), MZ_OK);   /* skips the consumer's */
    assert_int_equal(mz_agreement_verify_consumer(a, NULL), MZ_OK);
    json_decref(a);

    /* No limits at all: "limits" is {}. A generated id. */
    spec.agreement_id = NULL;
    spec.requests_per_day = spec.requests_total = 0;
    assert_int_equal(mz_agreement_create(&spec, f->provider, &a, &err), MZ_OK);
    assert_int_equal(json_object_size(json_object_get(a, "limits")), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(a, "agreement_id")), "agr-", 4),
                     0);
    assert_int_equal(strlen(json_string_value(json_object_get(a, "agreement_id"))), 20);
    json_decref(a);
}

/* The consumer signature covers the provider's; the provider's covers
 * neither. */
static void test_signature_coverage(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);
    char *sig = strdup(json_string_value(json_object_get(a, "provider_signature")));

    assert_non_null(sig);
    /* Another valid provider signature (Ed25519 is deterministic, so sign
     * something else first to get a different but valid-looking value). */
    json_object_set_new(a, "provider_signature", json_string(
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000"));
    assert_int_equal(mz_agreement_verify_provider(a, NULL), MZ_ESIG);
    assert_int_equal(mz_agreement_verify_consumer(a, NULL), MZ_ESIG);
    json_object_set_new(a, "provider_signature", json_string(sig));
    assert_int_equal(mz_agreement_verify_provider(a, NULL), MZ_OK);
    assert_int_equal(mz_agreement_verify_consumer(a, NULL), MZ_OK);
    /* The domain is part of what is signed. */
    assert_int_equal(mz_verify_object(a, "meshzero/1 record", mz_agreement_provider_unsigned,
                                      "provider_signature", mz_identity_id(f->provider), NULL),
                     MZ_ESIG);
    free(sig);
    json_decref(a);
}

static void test_countersign_refusals(void **state)
{
    fixture *f = *state;
    static const char *const methods[] = { "m", NULL };
    mz_agreement_spec spec = {
        .consumer = mz_identity_id(f->consumer), .resource_id = "r", .methods = methods,
        .not_before_ms = s_t0, .expires_at_ms = s_t0 + 1,
    };
    mz_err err = { MZ_OK, "" };
    json_t *a = NULL;

    assert_int_equal(mz_agreement_create(&spec, f->provider, &a, NULL), MZ_OK);
    /* Not the consumer's key. */
    assert_int_equal(mz_agreement_countersign(a, f->other, &err), MZ_EINVAL);
    assert_null(json_object_get(a, "consumer_signature"));
    /* A provider signature that does not verify. */
    json_object_set_new(a, "resource_id", json_string("r2"));
    assert_int_equal(mz_agreement_countersign(a, f->consumer, &err), MZ_ESIG);
    assert_null(json_object_get(a, "consumer_signature"));
    /* No provider signature. */
    json_object_del(a, "provider_signature");
    assert_int_equal(mz_agreement_countersign(a, f->consumer, &err), MZ_ESIG);
    /* Malformed. */
    json_object_set_new(a, "extra", json_true());
    assert_int_equal(mz_agreement_countersign(a, f->consumer, &err), MZ_EPROTO);
    assert_non_null(strstr(err.msg, "extra"));
    assert_int_equal(mz_agreement_countersign(a, NULL, &err), MZ_EINVAL);
    json_decref(a);
}

static void test_create_bad_spec(void **state)
{
    fixture *f = *state;
    static const char *const methods[] = { "m", NULL };
    static const char *const none[] = { NULL };
    static const char *const empty[] = { "", NULL };
    const mz_agreement_spec good_spec = {
        .consumer = mz_identity_id(f->consumer), .resource_id = "r", .methods = methods,
        .not_before_ms = s_t0, .expires_at_ms = s_t0 + DAY_MS,
    };
    mz_agreement_spec spec;
    json_t *a = (json_t *)1;
    char long_id[MZ_AGREEMENT_ID_MAX + 2];

    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
#define EXPECT_BAD(field, value)                                                      \
    do {                                                                              \
        spec = good_spec;                                                             \
        spec.field = value;                                                           \
        a = (json_t *)1;                                                              \
        assert_int_equal(mz_agreement_create(&spec, f->provider, &a, NULL), MZ_EINVAL); \
        assert_null(a);                                                               \
    } while (0)
    EXPECT_BAD(agreement_id, "");
    EXPECT_BAD(agreement_id, "has space");
    EXPECT_BAD(agreement_id, "slash/no");
    EXPECT_BAD(agreement_id, long_id);
    EXPECT_BAD(consumer, "not-a-node-id");
    EXPECT_BAD(consumer, NULL);
    EXPECT_BAD(resource_id, "");
    EXPECT_BAD(resource_id, NULL);
    EXPECT_BAD(methods, NULL);
    EXPECT_BAD(methods, none);
    EXPECT_BAD(methods, empty);
    EXPECT_BAD(requests_per_day, -1);
    EXPECT_BAD(requests_total, -5);
    EXPECT_BAD(expires_at_ms, s_t0);
#undef EXPECT_BAD
    long_id[MZ_AGREEMENT_ID_MAX] = '\0';          /* exactly 64: fine */
    spec = good_spec;
    spec.agreement_id = long_id;
    assert_int_equal(mz_agreement_create(&spec, f->provider, &a, NULL), MZ_OK);
    json_decref(a);
    assert_int_equal(mz_agreement_create(NULL, f->provider, &a, NULL), MZ_EINVAL);
    assert_int_equal(mz_agreement_create(&good_spec, NULL, &a, NULL), MZ_EINVAL);
}

/* ---- refusals, in the documented order ---------------------------------- */

static void test_accept(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    assert_string_equal(check(f, a), "ok");
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                        "ok");
    assert_int_equal(usage_field(f->store, "agr-1", s_t0, "total"), 2);
    /* The pure check agrees and counts nothing. */
    assert_null(mz_agreement_refusal(a, mz_identity_id(f->provider),
                                     mz_identity_id(f->consumer), "agent123", "describe",
                                     s_t0, NULL));
    assert_int_equal(usage_field(f->store, "agr-1", s_t0, "total"), 2);
    json_decref(a);
}

static void test_refuse_missing(void **state)
{
    fixture *f = *state;
    json_t *null = json_null();

    assert_string_equal(check(f, NULL), MZ_AGR_MISSING);
    assert_string_equal(check(f, null), MZ_AGR_MISSING);
    json_decref(null);
}

/* Malformed documents are refused as bad_signature. */
static void test_refuse_malformed(void **state)
{
    fixture *f = *state;
    json_t *a, *v;
    static const char *const texts[] = { "\"agreement\"", "[]", "42", "{}" };

    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        v = json_loads(texts[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        assert_string_equal(check(f, v), MZ_AGR_BAD_SIGNATURE);
        json_decref(v);
    }
#define MALFORMED(stmt)                                                   \
    do {                                                                  \
        a = good(f);                                                      \
        stmt;                                                             \
        resign(f, a);                                                     \
        assert_int_equal(mz_agreement_validate(a, true, NULL), MZ_EPROTO); \
        assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);           \
        json_decref(a);                                                   \
    } while (0)
    MALFORMED(json_object_set_new(a, "note", json_string("an unknown field")));
    MALFORMED(json_object_del(a, "agreement_id"));
    MALFORMED(json_object_set_new(a, "agreement_id", json_string("bad id")));
    MALFORMED(json_object_set_new(a, "agreement_id", json_integer(7)));
    MALFORMED(json_object_set_new(a, "consumer", json_string("ABCD")));
    MALFORMED(json_object_del(a, "resource_id"));
    MALFORMED(json_object_set_new(a, "resource_id", json_string("")));
    MALFORMED(json_object_set_new(a, "resource_id", json_stringn("agent123\0x", 10)));
    MALFORMED(json_object_set_new(a, "methods", json_array()));
    MALFORMED(json_object_set_new(a, "methods", json_string("process_image")));
    MALFORMED(json_array_append_new(json_object_get(a, "methods"), json_integer(1)));
    MALFORMED(json_object_del(a, "limits"));
    MALFORMED(json_object_set_new(a, "limits", json_array()));
    MALFORMED(json_object_set_new(json_object_get(a, "limits"), "requests_per_day",
                                  json_integer(0)));
    MALFORMED(json_object_set_new(json_object_get(a, "limits"), "requests_total",
                                  json_string("10")));
    MALFORMED(json_object_set_new(json_object_get(a, "limits"), "requests_per_hour",
                                  json_integer(10)));
    MALFORMED(json_object_set_new(a, "not_before", json_string("yesterday")));
    MALFORMED(json_object_del(a, "expires_at"));
    MALFORMED(json_object_set_new(a, "expires_at", json_string("2026-02-28T12:00:00Z")));
#undef MALFORMED
    /* A signature field of the wrong form, or absent. */
    a = good(f);
    json_object_set_new(a, "consumer_signature", json_string("abc"));
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_object_del(a, "consumer_signature");
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);
    assert_int_equal(usage_field(f->store, "agr-1", s_t0, "total"), 0);
}

static void test_refuse_bad_signature(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    /* Changed after signing: a method added. */
    json_array_append_new(json_object_get(a, "methods"), json_string("delete_all"));
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);

    /* A limit raised, consumer re-signs, provider does not. */
    a = make_agr(f->provider, f->consumer, "agr-1", 0, 10);
    json_object_set_new(json_object_get(a, "limits"), "requests_total", json_integer(1000));
    assert_int_equal(mz_sign_object(a, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_consumer_unsigned,
                                    "consumer_signature", f->consumer, NULL), MZ_OK);
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);

    /* Self-consistent, but issued by a key that does not own the resource. */
    a = make_agr(f->other, f->consumer, "agr-1", 0, 0);
    assert_int_equal(mz_agreement_verify_provider(a, NULL), MZ_OK);
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    /* ... and the resource has no owner key to check against. */
    assert_string_equal(check_full(f, f->store, a, NULL, mz_identity_id(f->consumer),
                                   "agent123", "process_image", s_t0), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);

    /* Counter-signed by somebody other than the consumer. */
    a = good(f);
    assert_int_equal(mz_sign_object(a, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_consumer_unsigned,
                                    "consumer_signature", f->other, NULL), MZ_OK);
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);

    /* The provider's signature moved into the consumer's field. */
    a = good(f);
    json_object_set(a, "consumer_signature", json_object_get(a, "provider_signature"));
    assert_string_equal(check(f, a), MZ_AGR_BAD_SIGNATURE);
    json_decref(a);
    assert_int_equal(usage_field(f->store, "agr-1", s_t0, "total"), 0);
}

static void test_refuse_wrong_consumer(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    /* A valid agreement presented by somebody else. */
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->other), "agent123", "process_image", s_t0),
                        MZ_AGR_WRONG_CONSUMER);
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider), NULL,
                                   "agent123", "process_image", s_t0), MZ_AGR_WRONG_CONSUMER);
    json_decref(a);
}

static void test_refuse_wrong_resource(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent1234", "process_image",
                                   s_t0), MZ_AGR_WRONG_RESOURCE);
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent12", "process_image",
                                   s_t0), MZ_AGR_WRONG_RESOURCE);
    json_decref(a);
}

static void test_refuse_method_not_allowed(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "delete", s_t0),
                        MZ_AGR_METHOD_NOT_ALLOWED);
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "Describe", s_t0),
                        MZ_AGR_METHOD_NOT_ALLOWED);
    assert_string_equal(check_full(f, f->store, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", NULL, s_t0),
                        MZ_AGR_METHOD_NOT_ALLOWED);
    json_decref(a);
}

/* Valid from not_before inclusive to expires_at exclusive. */
static void test_refuse_time_window(void **state)
{
    fixture *f = *state;
    json_t *a = good(f);

    assert_string_equal(check_at(f, a, s_t0 - DAY_MS - 1), MZ_AGR_NOT_YET_VALID);
    assert_string_equal(check_at(f, a, s_t0 - 30 * DAY_MS), MZ_AGR_NOT_YET_VALID);
    assert_string_equal(check_at(f, a, s_t0 - DAY_MS), "ok");
    assert_string_equal(check_at(f, a, s_t0 + DAY_MS - 1), "ok");
    assert_string_equal(check_at(f, a, s_t0 + DAY_MS), MZ_AGR_EXPIRED);
    assert_string_equal(check_at(f, a, s_t0 + 400 * DAY_MS), MZ_AGR_EXPIRED);
    json_decref(a);
}

/* When several things are wrong, the first in the documented order wins. */
static void test_refusal_order(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-1", 0, 1);
    const char *pk = mz_identity_id(f->provider), *me = mz_identity_id(f->consumer);
    const char *them = mz_identity_id(f->other);
    int64_t late = s_t0 + 5 * DAY_MS;

    assert_string_equal(check(f, a), "ok");           /* uses up the limit */
    assert_string_equal(check_full(f, f->store, a, pk, them, "x", "y", late),
                        MZ_AGR_WRONG_CONSUMER);
    assert_string_equal(check_full(f, f->store, a, pk, me, "x", "y", late),
                        MZ_AGR_WRONG_RESOURCE);
    assert_string_equal(check_full(f, f->store, a, pk, me, "agent123", "y", late),
                        MZ_AGR_METHOD_NOT_ALLOWED);
    assert_string_equal(check_full(f, f->store, a, pk, me, "agent123", "describe", late),
                        MZ_AGR_EXPIRED);
    assert_string_equal(check_full(f, f->store, a, pk, me, "agent123", "describe", s_t0),
                        MZ_AGR_OVER_LIMIT);
    json_object_set_new(a, "resource_id", json_string("x"));   /* breaks both signatures */
    assert_string_equal(check_full(f, f->store, a, pk, them, "agent123", "y", late),
                        MZ_AGR_BAD_SIGNATURE);
    json_decref(a);
}

/* ---- usage limits ------------------------------------------------------- */

static void test_over_limit_total(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-t", 0, 3);
    mz_err err = { MZ_OK, "" };
    const char *reason = NULL;

    for (int i = 0; i < 3; i++)
        assert_string_equal(check_at(f, a, s_t0 + i * DAY_MS / 4), "ok");
    assert_string_equal(check(f, a), MZ_AGR_OVER_LIMIT);
    assert_string_equal(check_at(f, a, s_t0 + DAY_MS / 2 + 1), MZ_AGR_OVER_LIMIT);
    assert_int_equal(mz_agreements_check(f->store, a, mz_identity_id(f->provider),
                                         mz_identity_id(f->consumer), "agent123", "describe",
                                         s_t0, &reason, &err), MZ_ELIMIT);
    assert_string_equal(reason, MZ_AGR_OVER_LIMIT);
    assert_non_null(strstr(err.msg, "agr-t"));
    assert_non_null(strstr(err.msg, "3 requests"));
    /* Refusals are not counted. */
    assert_int_equal(usage_field(f->store, "agr-t", s_t0, "total"), 3);
    json_decref(a);
}

static void test_per_day_rollover(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-d", 2, 5);
    int64_t midnight = s_t0 + DAY_MS / 2;        /* 2026-03-02T00:00:00Z */
    json_t *u = NULL;

    /* Day 1 (2026-03-01): two, then refused. */
    assert_string_equal(check_at(f, a, s_t0 - DAY_MS / 2), "ok");       /* 00:00:00 */
    assert_string_equal(check_at(f, a, midnight - 1), "ok");            /* 23:59:59.999 */
    assert_string_equal(check_at(f, a, midnight - 1), MZ_AGR_OVER_LIMIT);
    assert_int_equal(usage_field(f->store, "agr-d", midnight - 1, "today"), 2);
    /* Day 2: the daily count starts again; the total goes on. */
    assert_int_equal(usage_field(f->store, "agr-d", midnight, "today"), 0);
    assert_string_equal(check_at(f, a, midnight), "ok");
    assert_string_equal(check_at(f, a, midnight + 1000), "ok");
    assert_string_equal(check_at(f, a, midnight + 2000), MZ_AGR_OVER_LIMIT);
    assert_int_equal(mz_agreements_usage_at(f->store, "agr-d", midnight + 3000, &u, NULL),
                     MZ_OK);
    assert_string_equal(json_string_value(json_object_get(u, "day")), "2026-03-02");
    assert_int_equal(json_integer_value(json_object_get(u, "today")), 2);
    assert_int_equal(json_integer_value(json_object_get(u, "total")), 4);
    assert_string_equal(json_string_value(json_object_get(u, "last_used")),
                        "2026-03-02T00:00:01.000Z");
    json_decref(u);
    /* The clock goes back to day 1: still counted against day 2, so no
     * extra calls. */
    assert_string_equal(check_at(f, a, s_t0), MZ_AGR_OVER_LIMIT);
    json_decref(a);
    /* Day 3 would allow two more, but the total (5) allows one. */
    a = make_agr(f->provider, f->consumer, "agr-d", 2, 5);
    json_object_set_new(a, "expires_at", json_string("2026-03-10T00:00:00Z"));
    resign(f, a);
    assert_string_equal(check_at(f, a, midnight + DAY_MS), "ok");
    assert_string_equal(check_at(f, a, midnight + DAY_MS + 1), MZ_AGR_OVER_LIMIT);
    assert_int_equal(usage_field(f->store, "agr-d", midnight + DAY_MS, "total"), 5);
    json_decref(a);
}

/* The same agreement id from two providers: two sets of counters. */
static void test_same_id_two_providers(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "shared", 0, 1);
    json_t *b = make_agr(f->other, f->consumer, "shared", 0, 1);
    json_t *u = NULL;

    assert_string_equal(check(f, a), "ok");
    assert_string_equal(check(f, a), MZ_AGR_OVER_LIMIT);
    assert_string_equal(check_full(f, f->store, b, mz_identity_id(f->other),
                                   mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                        "ok");
    assert_int_equal(mz_agreements_usage_at(f->store, "shared", s_t0, &u, NULL), MZ_OK);
    assert_int_equal(json_integer_value(json_object_get(u, "total")), 2);
    assert_int_equal(json_array_size(json_object_get(u, "providers")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(u, "providers"), 0), "consumer")),
                        mz_identity_id(f->consumer));
    json_decref(u);
    json_decref(a);
    json_decref(b);
}

static void test_usage_queries(void **state)
{
    fixture *f = *state;
    json_t *u = NULL, *params;
    mz_err err = { MZ_OK, "" };

    assert_int_equal(mz_agreements_usage_at(f->store, "never-used", s_t0, &u, &err), MZ_OK);
    assert_string_equal(json_string_value(json_object_get(u, "agreement_id")), "never-used");
    assert_string_equal(json_string_value(json_object_get(u, "day")), "2026-03-01");
    assert_int_equal(json_integer_value(json_object_get(u, "total")), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "today")), 0);
    assert_true(json_is_null(json_object_get(u, "last_used")));
    assert_int_equal(json_array_size(json_object_get(u, "providers")), 0);
    json_decref(u);
    u = (json_t *)1;
    assert_int_equal(mz_agreements_usage(f->store, "", &u, &err), MZ_EINVAL);
    assert_null(u);
    assert_int_equal(mz_agreements_usage(f->store, "a b", &u, &err), MZ_EINVAL);
    assert_int_equal(mz_agreements_usage(f->store, NULL, &u, &err), MZ_EINVAL);
    assert_int_equal(mz_agreements_usage(NULL, "x", &u, &err), MZ_EINVAL);

    /* The API method. */
    params = json_pack("{s:s}", "agreement_id", "x");
    assert_int_equal(mz__agreements_api_usage(NULL, params, &u, &err), MZ_ESTATE);
    assert_int_equal(mz__agreements_api_usage(f->store, params, &u, &err), MZ_OK);
    assert_int_equal(json_integer_value(json_object_get(u, "total")), 0);
    json_decref(u);
    json_decref(params);
    params = json_pack("{s:i}", "agreement_id", 5);
    assert_int_equal(mz__agreements_api_usage(f->store, params, &u, &err), MZ_EINVAL);
    assert_non_null(strstr(err.msg, "agreement_id"));
    json_decref(params);
    assert_int_equal(mz_agreements_check(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, &err),
                     MZ_EINVAL);
}

/* ---- the store: persistence and atomicity ------------------------------- */

static void test_persistence(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-p", 2, 3);
    mz_agreements *st = NULL;
    char path[512];
    struct stat sb;

    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    snprintf(path, sizeof path, "%s/agreements.db", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_string_equal(check_full(f, st, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                        "ok");
    assert_string_equal(check_full(f, st, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                        "ok");
    mz_agreements_free(st);

    /* Reopened: the day's two are used up; tomorrow one is left in all. */
    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    assert_int_equal(usage_field(st, "agr-p", s_t0, "total"), 2);
    assert_int_equal(usage_field(st, "agr-p", s_t0, "today"), 2);
    assert_string_equal(check_full(f, st, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                        MZ_AGR_OVER_LIMIT);
    assert_string_equal(check_full(f, st, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe",
                                   s_t0 + DAY_MS / 2), "ok");
    mz_agreements_free(st);

    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    assert_string_equal(check_full(f, st, a, mz_identity_id(f->provider),
                                   mz_identity_id(f->consumer), "agent123", "describe",
                                   s_t0 + DAY_MS / 2), MZ_AGR_OVER_LIMIT);
    assert_int_equal(usage_field(st, "agr-p", s_t0 + DAY_MS / 2, "total"), 3);
    mz_agreements_free(st);
    json_decref(a);
}

/* Two connections to one file, interleaved: every count sees the other's. */
static void test_two_connections(void **state)
{
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-2c", 0, 5);
    mz_agreements *st[2] = { NULL, NULL };
    int allowed = 0;

    assert_int_equal(mz_agreements_open(f->dir, &st[0], NULL), MZ_OK);
    assert_int_equal(mz_agreements_open(f->dir, &st[1], NULL), MZ_OK);
    for (int i = 0; i < 12; i++)
        if (strcmp(check_full(f, st[i % 2], a, mz_identity_id(f->provider),
                              mz_identity_id(f->consumer), "agent123", "describe", s_t0),
                   "ok") == 0)
            allowed++;
    assert_int_equal(allowed, 5);
    assert_int_equal(usage_field(st[0], "agr-2c", s_t0, "total"), 5);
    assert_int_equal(usage_field(st[1], "agr-2c", s_t0, "total"), 5);
    mz_agreements_free(st[0]);
    mz_agreements_free(st[1]);
    json_decref(a);
}

/* Processes racing on one file never grant more than the limit, and every
 * grant is counted. */
static void test_concurrent_processes(void **state)
{
    enum { KIDS = 4, TRIES = 15, LIMIT = 37 };
    fixture *f = *state;
    json_t *a = make_agr(f->provider, f->consumer, "agr-race", 0, LIMIT);
    mz_agreements *st = NULL;
    pid_t kids[KIDS];
    int allowed = 0;

    /* Create the schema first, so the children only count. */
    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    mz_agreements_free(st);
    fflush(NULL);
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            mz_agreements *mine = NULL;
            int n = 0;

            if (mz_agreements_open(f->dir, &mine, NULL) != MZ_OK)
                _exit(255);
            for (int i = 0; i < TRIES; i++) {
                mz_status rc = mz_agreements_check(mine, a, mz_identity_id(f->provider),
                                                   mz_identity_id(f->consumer), "agent123",
                                                   "describe", s_t0, NULL, NULL);
                if (rc == MZ_OK)
                    n++;
                else if (rc != MZ_ELIMIT)
                    _exit(254);
            }
            mz_agreements_free(mine);
            _exit(n);
        }
    }
    for (int k = 0; k < KIDS; k++) {
        int status = 0;
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status));
        assert_true(WEXITSTATUS(status) <= TRIES);
        allowed += WEXITSTATUS(status);
    }
    assert_int_equal(allowed, LIMIT);
    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    assert_int_equal(usage_field(st, "agr-race", s_t0, "total"), LIMIT);
    mz_agreements_free(st);
    json_decref(a);
}

static void test_open_failures(void **state)
{
    fixture *f = *state;
    mz_agreements *st = (mz_agreements *)1;
    mz_err err = { MZ_OK, "" };
    sqlite3 *db = NULL;
    char path[512];
    FILE *fp;

    /* The data directory is a file. */
    snprintf(path, sizeof path, "%s/plain", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(mz_agreements_open(path, &st, &err), MZ_EIO);
    assert_null(st);
    assert_true(err.msg[0] != '\0');

    /* A store from a newer meshzero. */
    assert_int_equal(mz_agreements_open(f->dir, &st, NULL), MZ_OK);
    mz_agreements_free(st);
    snprintf(path, sizeof path, "%s/agreements.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 99 WHERE component "
                                  "= 'agreements'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(mz_agreements_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_non_null(strstr(err.msg, "newer"));

    /* Not a database at all. */
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("this is not an SQLite file, but it is long enough to look like one's header\n", fp);
    fclose(fp);
    remove(strcat(path, "-wal"));
    assert_int_equal(mz_agreements_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    mz_agreements_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_countersign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signature_coverage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_countersign_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_bad_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_bad_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_wrong_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_wrong_resource, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_time_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_limit_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_day_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_id_two_providers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failures, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
