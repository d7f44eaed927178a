/* Identity, signatures, time stamps and envelope validation (msg.h). */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "meshzero/msg.h"

#define A8   "aaaaaaaa"
#define B8   "bbbbbbbb"
#define H64A A8 A8 A8 A8 A8 A8 A8 A8
#define H128B B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8 B8

/* A well-formed (unsigned-but-shaped) envelope; %s is the payload. */
#define GOOD_FMT                                                            \
    "{\"id\":\"m-1.x:Y\",\"type\":\"announce\",\"sender\":\"" H64A "\","    \
    "\"recipient\":\"*\",\"timestamp\":\"2026-01-02T03:04:05.678Z\","       \
    "\"payload\":%s,\"signature\":\"" H128B "\",\"hops\":3}"
#define GOOD_ID "m-1.x:Y"

/* Public key of the Ed25519 seed 00 01 02 ... 1f, computed once with
 * libsodium's crypto_sign_seed_keypair. */
#define SEED_0_31_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SEED_0_31_ID  "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"

/* ---- helpers ----------------------------------------------------------- */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    return s;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/mz-test-msg-XXXXXX";

    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void rm_tree(char *dir)
{
    assert_int_equal(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(dir);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static char *good_text(const char *payload)
{
    return xasprintf(GOOD_FMT, payload);
}

/* Parsing text must fail with want, the message mentioning needle, and
 * id_out holding want_id. */
static void expect_bad_n(const char *text, size_t len, const mz_msg_limits *lim,
                         mz_status want, const char *needle, const char *want_id)
{
    json_t *out = (json_t *)1;
    mz_err err = { MZ_OK, "" };
    char id[MZ_MSG_ID_MAX + 1] = "junk";
    mz_status rc = mz_msg_parse(text, len, lim, &out, id, &err);

    if (rc != want || strstr(err.msg, needle) == NULL)
        print_error("input %.200s\n -> %s: %s (wanted %s mentioning \"%s\")\n", text,
                    mz_status_name(rc), err.msg, mz_status_name(want), needle);
    assert_int_equal(rc, want);
    assert_int_equal(err.code, want);
    assert_null(out);
    assert_non_null(strstr(err.msg, needle));
    assert_string_equal(id, want_id);
}

static void expect_bad(const char *text, mz_status want, const char *needle, const char *want_id)
{
    expect_bad_n(text, strlen(text), NULL, want, needle, want_id);
}

/* The good envelope with field key replaced by value (a new reference,
 * taken) or removed (value NULL) must fail with EPROTO naming needle. */
static void expect_mutation(const char *key, json_t *value, const char *needle,
                            const char *want_id)
{
    char *text = good_text("{\"k\":1}");
    json_t *env = json_loads(text, 0, NULL);
    char *bad;

    assert_non_null(env);
    if (value != NULL)
        assert_int_equal(json_object_set_new(env, key, value), 0);
    else
        assert_int_equal(json_object_del(env, key), 0);
    bad = json_dumps(env, JSON_COMPACT);
    assert_non_null(bad);
    expect_bad(bad, MZ_EPROTO, needle, want_id);
    free(bad);
    json_decref(env);
    free(text);
}

/* Payload nested so that the whole envelope has the given depth. */
static char *deep_text(int depth)
{
    int k = depth - 2;          /* envelope and payload object are 1 and 2 */
    size_t n = (size_t)k * 2 + 16;
    char *inner = malloc(n), *p = inner, *text;

    assert_non_null(inner);
    p += sprintf(p, "{\"a\":");
    for (int i = 0; i < k; i++)
        *p++ = '[';
    for (int i = 0; i < k; i++)
        *p++ = ']';
    strcpy(p, "}");
    text = good_text(inner);
    free(inner);
    return text;
}

/* ---- identity ---------------------------------------------------------- */

static void test_identity_create_reload(void **state)
{
    char *base = make_tmpdir();
    char *dir = xasprintf("%s/node/keys", base);
    char *key = xasprintf("%s/identity.key", dir);
    mz_identity *a = NULL, *b = NULL, *c = NULL;
    mz_err err = { MZ_OK, "" };
    struct stat st;
    char buf[128];
    FILE *f;
    size_t n;

    (void)state;
    assert_int_equal(mz_identity_load_or_create(dir, &a, &err), MZ_OK);
    assert_true(mz_id_valid(mz_identity_id(a)));
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* 64 lowercase hex and a newline, and no temp file left behind. */
    f = fopen(key, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(n, 65);
    assert_int_equal(buf[64], '\n');

    assert_int_equal(mz_identity_load_or_create(dir, &b, &err), MZ_OK);
    assert_string_equal(mz_identity_id(a), mz_identity_id(b));
    assert_int_equal(mz_identity_generate(&c, &err), MZ_OK);
    assert_true(mz_id_valid(mz_identity_id(c)));
    assert_string_not_equal(mz_identity_id(a), mz_identity_id(c));

    mz_identity_free(a);
    mz_identity_free(b);
    mz_identity_free(c);
    mz_identity_free(NULL);
    free(key);
    free(dir);
    rm_tree(base);
}

static void test_identity_loose_mode(void **state)
{
    char *base = make_tmpdir();
    char *key = xasprintf("%s/identity.key", base);
    mz_identity *a = NULL;
    mz_err err = { MZ_OK, "" };

    (void)state;
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_OK);
    mz_identity_free(a);
    a = NULL;
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_EIO);
    assert_null(a);
    assert_non_null(strstr(err.msg, key));
    assert_non_null(strstr(err.msg, "0640"));
    assert_int_equal(chmod(key, 0604), 0);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_EIO);
    assert_non_null(strstr(err.msg, "0604"));
    assert_int_equal(chmod(key, 0400), 0);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_OK);
    mz_identity_free(a);
    free(key);
    rm_tree(base);
}

static void test_identity_garbage(void **state)
{
    static const char *const bad[] = {
        "hello\n",
        "",
        SEED_0_31_HEX "\n\n",
        SEED_0_31_HEX "x",
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e\n",
    };
    char *base = make_tmpdir();
    char *key = xasprintf("%s/identity.key", base);
    mz_identity *a = NULL;
    mz_err err = { MZ_OK, "" };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(key, bad[i], 0600);
        assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_EIO);
        assert_null(a);
        assert_non_null(strstr(err.msg, key));
        assert_non_null(strstr(err.msg, "64 lowercase hex"));
    }
    /* A directory where the key file should be. */
    assert_int_equal(unlink(key), 0);
    assert_int_equal(mkdir(key, 0700), 0);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_EIO);
    assert_null(a);
    assert_non_null(strstr(err.msg, key));
    free(key);
    rm_tree(base);
}

static void test_identity_seed_vector(void **state)
{
    char *base = make_tmpdir();
    char *key = xasprintf("%s/identity.key", base);
    mz_identity *a = NULL;
    mz_err err = { MZ_OK, "" };
    json_t *obj;

    (void)state;
    write_file(key, SEED_0_31_HEX "\n", 0600);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_OK);
    assert_string_equal(mz_identity_id(a), SEED_0_31_ID);
    mz_identity_free(a);
    /* The newline is optional. */
    write_file(key, SEED_0_31_HEX, 0600);
    assert_int_equal(mz_identity_load_or_create(base, &a, &err), MZ_OK);
    assert_string_equal(mz_identity_id(a), SEED_0_31_ID);
    /* And it signs for that id. */
    obj = json_pack("{s:s}", "hello", "world");
    assert_int_equal(mz_sign_object(obj, "test", NULL, "sig", a, &err), MZ_OK);
    assert_int_equal(mz_verify_object(obj, "test", NULL, "sig", SEED_0_31_ID, &err), MZ_OK);
    json_decref(obj);
    mz_identity_free(a);
    free(key);
    rm_tree(base);
}

static void test_id_valid_and_random_hex(void **state)
{
    char r1[33], r2[33], big[2 * 100 + 1];

    (void)state;
    assert_true(mz_id_valid(H64A));
    assert_false(mz_id_valid(NULL));
    assert_false(mz_id_valid(""));
    assert_false(mz_id_valid(A8));
    assert_false(mz_id_valid(H64A "a"));
    assert_false(mz_id_valid("A" A8 A8 A8 A8 A8 A8 A8 "aaaaaaa"));
    assert_false(mz_id_valid("g" A8 A8 A8 A8 A8 A8 A8 "aaaaaaa"));
    mz_random_hex(r1, 16);
    mz_random_hex(r2, 16);
    assert_int_equal(strlen(r1), 32);
    assert_string_not_equal(r1, r2);
    mz_random_hex(big, 100);
    assert_int_equal(strlen(big), 200);
    assert_int_equal(strspn(big, "0123456789abcdef"), 200);
}

/* ---- signing ----------------------------------------------------------- */

static json_t *signed_env(mz_identity *id)
{
    mz_err err = { MZ_OK, "" };
    json_t *env = mz_msg_new("announce", mz_identity_id(id), "*",
                             json_pack("{s:s,s:i,s:[f]}", "resource_type", "agent", "n", 1,
                                       "r", 0.5));

    assert_non_null(env);
    assert_int_equal(mz_msg_sign(env, id, &err), MZ_OK);
    return env;
}

static void test_sign_verify_roundtrip(void **state)
{
    mz_identity *id = NULL;
    mz_err err = { MZ_OK, "" };
    json_t *env, *parsed = NULL;
    char wire_id[MZ_MSG_ID_MAX + 1];
    int64_t ts;
    char *wire;
    size_t len = 0;

    (void)state;
    assert_int_equal(mz_identity_generate(&id, &err), MZ_OK);
    env = mz_msg_new("announce", mz_identity_id(id), "*", NULL);
    assert_non_null(env);
    assert_int_equal(strlen(mz_msg_id(env)), 32);
    assert_string_equal(mz_msg_type(env), "announce");
    assert_string_equal(mz_msg_sender(env), mz_identity_id(id));
    assert_string_equal(mz_msg_recipient(env), "*");
    assert_true(json_is_object(mz_msg_payload(env)));
    assert_int_equal(json_object_size(mz_msg_payload(env)), 0);
    assert_int_equal(mz_msg_hops(env), 0);
    assert_true(mz_time_parse(json_string_value(json_object_get(env, "timestamp")), &ts));
    assert_true(ts > mz_now_ms() - 60000 && ts <= mz_now_ms());
    assert_null(json_object_get(env, "signature"));
    /* Unsigned: the signature is missing, which is a protocol error. */
    assert_int_equal(mz_msg_verify(env, &err), MZ_EPROTO);
    assert_non_null(strstr(err.msg, "signature"));
    json_decref(env);

    env = signed_env(id);
    assert_true(json_is_string(json_object_get(env, "signature")));
    assert_int_equal(strlen(json_string_value(json_object_get(env, "signature"))), 128);
    assert_int_equal(mz_msg_verify(env, &err), MZ_OK);

    /* Through the wire and back. */
    wire = mz_msg_dump(env, &len);
    assert_non_null(wire);
    assert_int_equal(len, strlen(wire));
    assert_int_equal(mz_msg_parse(wire, len, NULL, &parsed, wire_id, &err), MZ_OK);
    assert_string_equal(wire_id, mz_msg_id(env));
    assert_int_equal(mz_msg_verify(parsed, &err), MZ_OK);
    assert_true(json_equal(parsed, env));
    json_decref(parsed);
    free(wire);
    json_decref(env);
    mz_identity_free(id);
}

static void test_tamper(void **state)
{
    static const char *const fields[] = { "type", "recipient", "timestamp", "id", "sender" };
    mz_identity *id = NULL;
    mz_err err = { MZ_OK, "" };
    json_t *env, *t;

    (void)state;
    assert_int_equal(mz_identity_generate(&id, &err), MZ_OK);
    env = signed_env(id);

    /* Payload value. */
    t = json_deep_copy(env);
    json_object_set_new(mz_msg_payload(t), "n", json_integer(2));
    assert_int_equal(mz_msg_verify(t, &err), MZ_ESIG);
    assert_non_null(strstr(err.msg, mz_msg_id(env)));
    json_decref(t);
    /* Payload real changed in its last bit. */
    t = json_deep_copy(env);
    json_array_set_new(json_object_get(mz_msg_payload(t), "r"), 0,
                       json_real(0.50000000000000011));
    assert_int_equal(mz_msg_verify(t, &err), MZ_ESIG);
    json_decref(t);
    /* Each signed top-level string. */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        t = json_deep_copy(env);
        json_object_set_new(t, fields[i], json_string(i == 4 ? SEED_0_31_ID
                                                      : i == 1 ? H64A
                                                      : i == 2 ? "2020-01-01T00:00:00.000Z"
                                                               : "other"));
        assert_int_equal(mz_msg_verify(t, &err), MZ_ESIG);
        json_decref(t);
    }
    /* An added field is covered too. */
    t = json_deep_copy(env);
    json_object_set_new(t, "extra", json_true());
    assert_int_equal(mz_msg_verify(t, &err), MZ_ESIG);
    json_decref(t);

    /* hops is left out of the signature: relays change it. */
    t = json_deep_copy(env);
    json_object_set_new(t, "hops", json_integer(7));
    assert_int_equal(mz_msg_verify(t, &err), MZ_OK);
    assert_int_equal(mz_msg_hops(t), 7);
    json_object_del(t, "hops");
    assert_int_equal(mz_msg_verify(t, &err), MZ_OK);
    json_decref(t);

    /* A bit flipped in the signature itself. */
    t = json_deep_copy(env);
    {
        char sig[MZ_SIG_HEX_LEN + 1];
        strcpy(sig, json_string_value(json_object_get(t, "signature")));
        sig[10] = sig[10] == '0' ? '1' : '0';
        json_object_set_new(t, "signature", json_string(sig));
    }
    assert_int_equal(mz_msg_verify(t, &err), MZ_ESIG);
    json_decref(t);
    /* Malformed signatures are protocol errors, not forgeries. */
    t = json_deep_copy(env);
    json_object_set_new(t, "signature", json_string(H64A));
    assert_int_equal(mz_msg_verify(t, &err), MZ_EPROTO);
    json_object_set_new(t, "signature", json_string("A" H128B));
    assert_int_equal(mz_msg_verify(t, &err), MZ_EPROTO);
    json_object_set_new(t, "signature", json_integer(1));
    assert_int_equal(mz_msg_verify(t, &err), MZ_EPROTO);
    json_object_del(t, "sender");
    assert_int_equal(mz_msg_verify(t, &err), MZ_EPROTO);
    json_decref(t);

    json_decref(env);
    mz_identity_free(id);
}

static void test_foreign_signature(void **state)
{
    mz_identity *a = NULL, *b = NULL;
    mz_err err = { MZ_OK, "" };
    json_t *env, *obj;

    (void)state;
    assert_int_equal(mz_identity_generate(&a, &err), MZ_OK);
    assert_int_equal(mz_identity_generate(&b, &err), MZ_OK);
    env = mz_msg_new("ping", mz_identity_id(a), mz_identity_id(b), json_object());
    assert_non_null(env);
    /* mz_msg_sign refuses a signer that is not the sender... */
    assert_int_equal(mz_msg_sign(env, b, &err), MZ_EINVAL);
    /* ...and a signature forced in by b does not verify as a's. */
    assert_int_equal(mz_sign_object(env, MZ_MSG_SIG_DOMAIN, mz_msg_unsigned_keys, "signature",
                                    b, &err), MZ_OK);
    assert_int_equal(mz_msg_verify(env, &err), MZ_ESIG);
    /* a's signature for another domain does not verify as an envelope. */
    assert_int_equal(mz_sign_object(env, "meshzero/1 other", mz_msg_unsigned_keys,
                                    "signature", a, &err), MZ_OK);
    assert_int_equal(mz_msg_verify(env, &err), MZ_ESIG);
    assert_int_equal(mz_msg_sign(env, a, &err), MZ_OK);
    assert_int_equal(mz_msg_verify(env, &err), MZ_OK);
    json_decref(env);

    /* Generic objects: sig_key is implicitly skipped, skip keys are free. */
    obj = json_pack("{s:s,s:i}", "k", "v", "ttl", 3);
    {
        static const char *const skip[] = { "ttl", NULL };
        assert_int_equal(mz_sign_object(obj, "d", skip, "proof", a, &err), MZ_OK);
        assert_int_equal(mz_verify_object(obj, "d", skip, "proof", mz_identity_id(a), &err),
                         MZ_OK);
        json_object_set_new(obj, "ttl", json_integer(9));
        assert_int_equal(mz_verify_object(obj, "d", skip, "proof", mz_identity_id(a), &err),
                         MZ_OK);
        assert_int_equal(mz_verify_object(obj, "d", NULL, "proof", mz_identity_id(a), &err),
                         MZ_ESIG);
        assert_int_equal(mz_verify_object(obj, "d", skip, "proof", mz_identity_id(b), &err),
                         MZ_ESIG);
        assert_int_equal(mz_verify_object(obj, "d", skip, "proof", "xyz", &err), MZ_EPROTO);
        assert_int_equal(mz_verify_object(obj, "d", skip, "nope", mz_identity_id(a), &err),
                         MZ_EPROTO);
    }
    json_decref(obj);
    mz_identity_free(a);
    mz_identity_free(b);
}

/* ---- parsing ----------------------------------------------------------- */

static void test_parse_good(void **state)
{
    char *text = good_text("{\"k\":[1,2.5,{\"x\":null}]}");
    json_t *env = NULL;
    mz_err err = { MZ_OK, "" };
    char id[MZ_MSG_ID_MAX + 1];
    json_t *v;

    (void)state;
    assert_int_equal(mz_msg_parse(text, strlen(text), NULL, &env, id, &err), MZ_OK);
    assert_string_equal(id, GOOD_ID);
    assert_string_equal(mz_msg_id(env), GOOD_ID);
    assert_string_equal(mz_msg_type(env), "announce");
    assert_string_equal(mz_msg_sender(env), H64A);
    assert_string_equal(mz_msg_recipient(env), "*");
    assert_int_equal(mz_msg_hops(env), 3);
    assert_true(json_is_array(json_object_get(mz_msg_payload(env), "k")));
    json_decref(env);
    free(text);

    /* hops is optional; id_out may be NULL; limits with zero fields. */
    {
        mz_msg_limits lim = { 0, 0, 0 };
        text = good_text("{}");
        env = json_loads(text, 0, NULL);
        json_object_del(env, "hops");
        json_object_set_new(env, "recipient", json_string(SEED_0_31_ID));
        json_object_set_new(env, "id", json_string(A8 A8 A8 A8 A8 A8 A8 A8));
        json_object_set_new(env, "type", json_string("a.b_c9"));
        json_object_set_new(env, "timestamp", json_string("2026-01-02 03:04:05+01:00"));
        free(text);
        text = json_dumps(env, JSON_COMPACT);
        json_decref(env);
        env = NULL;
        assert_int_equal(mz_msg_parse(text, strlen(text), &lim, &env, NULL, &err), MZ_OK);
        assert_int_equal(mz_msg_hops(env), 0);
        json_decref(env);
        free(text);
    }
    /* Largest hop count. */
    v = json_integer(MZ_MAX_HOPS);
    text = good_text("{}");
    env = json_loads(text, 0, NULL);
    json_object_set_new(env, "hops", v);
    free(text);
    text = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    env = NULL;
    assert_int_equal(mz_msg_parse(text, strlen(text), NULL, &env, id, &err), MZ_OK);
    assert_int_equal(mz_msg_hops(env), 255);
    json_decref(env);
    free(text);
}

static void test_parse_not_json(void **state)
{
    static const char nul_in_string[] = "{\"id\":\"a\0b\"}";

    (void)state;
    expect_bad("{\"id\":", MZ_EPROTO, "JSON", "");
    expect_bad("", MZ_EPROTO, "JSON", "");
    expect_bad("{} x", MZ_EPROTO, "JSON", "");
    expect_bad("{'id':1}", MZ_EPROTO, "JSON", "");
    expect_bad("{\"id\":\"\xff\"}", MZ_EPROTO, "JSON", "");
    expect_bad("{\"p\":\"\\u0000\"}", MZ_EPROTO, "JSON", "");
    expect_bad_n(nul_in_string, sizeof nul_in_string - 1, NULL, MZ_EPROTO, "JSON", "");
    expect_bad("[1,2]", MZ_EPROTO, "object", "");
    expect_bad("\"m1\"", MZ_EPROTO, "object", "");
    expect_bad("null", MZ_EPROTO, "object", "");
}

static void test_parse_missing(void **state)
{
    static const char *const fields[] = { "id", "type", "sender", "recipient",
                                          "timestamp", "payload", "signature" };
    char needle[32];

    (void)state;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        snprintf(needle, sizeof needle, "missing field '%s'", fields[i]);
        expect_mutation(fields[i], NULL, needle, i == 0 ? "" : GOOD_ID);
    }
}

static void test_parse_wrong_types(void **state)
{
    (void)state;
    expect_mutation("id", json_integer(5), "field 'id'", "");
    expect_mutation("type", json_true(), "field 'type'", GOOD_ID);
    expect_mutation("sender", json_integer(1), "field 'sender'", GOOD_ID);
    expect_mutation("recipient", json_null(), "field 'recipient'", GOOD_ID);
    expect_mutation("timestamp", json_integer(123), "field 'timestamp'", GOOD_ID);
    expect_mutation("payload", json_array(), "field 'payload'", GOOD_ID);
    expect_mutation("payload", json_string("x"), "field 'payload' must be an object", GOOD_ID);
    expect_mutation("signature", json_object(), "field 'signature'", GOOD_ID);
    expect_mutation("hops", json_string("3"), "field 'hops'", GOOD_ID);
    expect_mutation("hops", json_real(3.0), "field 'hops'", GOOD_ID);
}

static void test_parse_bad_values(void **state)
{
    (void)state;
    /* id: charset and length. */
    expect_mutation("id", json_string("a b"), "field 'id'", "");
    expect_mutation("id", json_string("a/b"), "field 'id'", "");
    expect_mutation("id", json_string("\xc3\xa9"), "field 'id'", "");
    expect_mutation("id", json_string(""), "field 'id'", "");
    expect_mutation("id", json_string(H64A "a"), "field 'id'", "");
    /* type. */
    expect_mutation("type", json_string("Announce"), "field 'type'", GOOD_ID);
    expect_mutation("type", json_string(""), "field 'type'", GOOD_ID);
    expect_mutation("type", json_string("a-b"), "field 'type'", GOOD_ID);
    expect_mutation("type", json_string(A8 A8 A8 A8 "a"), "field 'type'", GOOD_ID);
    /* sender: uppercase, short, non-hex; the text says what was wanted. */
    expect_mutation("sender", json_string("A" A8 A8 A8 A8 A8 A8 A8 "aaaaaaa"),
                    "message " GOOD_ID ": field 'sender' must be 64 lowercase hex characters",
                    GOOD_ID);
    expect_mutation("sender", json_string(A8), "field 'sender'", GOOD_ID);
    expect_mutation("sender", json_string("*"), "field 'sender'", GOOD_ID);
    /* recipient. */
    expect_mutation("recipient", json_string("**"), "field 'recipient'", GOOD_ID);
    expect_mutation("recipient", json_string(""), "field 'recipient'", GOOD_ID);
    expect_mutation("recipient", json_string("z" A8 A8 A8 A8 A8 A8 A8 "aaaaaaa"),
                    "field 'recipient'", GOOD_ID);
    /* timestamp. */
    expect_mutation("timestamp", json_string("2026-13-01T00:00:00Z"), "field 'timestamp'",
                    GOOD_ID);
    expect_mutation("timestamp", json_string("2026-02-30T00:00:00Z"), "field 'timestamp'",
                    GOOD_ID);
    expect_mutation("timestamp", json_string("2026-02-01T00:00:00"), "field 'timestamp'",
                    GOOD_ID);
    expect_mutation("timestamp", json_string("2026-02-01T00:00:00.0000000000000000000001Z"),
                    "field 'timestamp'", GOOD_ID);
    /* signature. */
    expect_mutation("signature", json_string(H64A), "field 'signature'", GOOD_ID);
    expect_mutation("signature", json_string("B" H128B), "field 'signature'", GOOD_ID);
    /* hops. */
    expect_mutation("hops", json_integer(256), "field 'hops'", GOOD_ID);
    expect_mutation("hops", json_integer(-1), "field 'hops'", GOOD_ID);
    /* Unknown fields. */
    expect_mutation("x", json_integer(1), "unknown field 'x'", GOOD_ID);
    expect_mutation("Id", json_string("m"), "unknown field 'Id'", GOOD_ID);
}

static void test_parse_duplicate(void **state)
{
    char *text = good_text("{}");
    char *dup;

    (void)state;
    text[strlen(text) - 1] = '\0';             /* drop the closing brace */
    dup = xasprintf("%s,\"id\":\"m2\"}", text);
    expect_bad(dup, MZ_EPROTO, "duplicate", "");
    free(dup);
    /* Duplicates inside the payload are refused as well. */
    free(text);
    text = good_text("{\"a\":1,\"a\":2}");
    expect_bad(text, MZ_EPROTO, "duplicate", "");
    free(text);
}

static void test_parse_limits(void **state)
{
    char *text = good_text("{}");
    mz_msg_limits lim = { 100, 0, 0 };
    json_t *env = NULL;
    mz_err err = { MZ_OK, "" };
    char needle[80];

    (void)state;
    /* Oversize: refused before parsing, even if it is not JSON. */
    snprintf(needle, sizeof needle, "message of %zu bytes exceeds the limit of 100",
             strlen(text));
    expect_bad_n(text, strlen(text), &lim, MZ_ELIMIT, needle, "");
    lim.max_bytes = strlen(text);
    assert_int_equal(mz_msg_parse(text, strlen(text), &lim, &env, NULL, &err), MZ_OK);
    json_decref(env);
    env = NULL;
    free(text);

    /* Depth: exactly the default limit passes, one more does not. */
    text = deep_text(MZ_DEFAULT_MAX_JSON_DEPTH);
    assert_int_equal(mz_msg_parse(text, strlen(text), NULL, &env, NULL, &err), MZ_OK);
    json_decref(env);
    env = NULL;
    free(text);
    text = deep_text(MZ_DEFAULT_MAX_JSON_DEPTH + 1);
    expect_bad(text, MZ_ELIMIT, "nesting", GOOD_ID);
    free(text);

    /* Depth 40 against an explicit limit of 32. */
    lim.max_bytes = 0;
    lim.max_depth = 32;
    text = deep_text(40);
    expect_bad_n(text, strlen(text), &lim, MZ_ELIMIT, "limit of 32", GOOD_ID);
    free(text);
    /* A smaller custom depth. */
    lim.max_depth = 2;
    text = good_text("{\"a\":{}}");
    expect_bad_n(text, strlen(text), &lim, MZ_ELIMIT, "limit of 2", GOOD_ID);
    free(text);

    /* Deeper than jansson's own parser allows: its error, as a limit. */
    text = deep_text(5000);
    expect_bad(text, MZ_ELIMIT, "deep", "");
    free(text);
}

static void test_parse_id_out(void **state)
{
    (void)state;
    /* A valid id with a bad field is reported, an invalid one is not. */
    expect_mutation("sender", json_string("nope"), "message " GOOD_ID ":", GOOD_ID);
    expect_mutation("id", json_string("has space"), "message: field 'id'", "");
    {
        char *text = good_text("{}");
        json_t *env = json_loads(text, 0, NULL);
        char *bad;

        json_object_set_new(env, "id", json_string(H64A));
        json_object_set_new(env, "hops", json_integer(1000));
        bad = json_dumps(env, JSON_COMPACT);
        expect_bad(bad, MZ_EPROTO, "field 'hops'", H64A);
        free(bad);
        json_decref(env);
        free(text);
    }
}

/* ---- time -------------------------------------------------------------- */

static void test_time(void **state)
{
    static const struct {
        const char *s;
        int64_t     ms;
    } good[] = {
        { "2026-11-25T12:00:00.123Z",        1795608000123 },
        { "2026-11-25T14:00:00.123+02:00",   1795608000123 },
        { "2026-11-25T06:30:00.123-05:30",   1795608000123 },
        { "2026-11-25t12:00:00.123z",        1795608000123 },
        { "2026-11-25 12:00:00.123Z",        1795608000123 },
        { "2026-11-25T12:00:00.123999999Z",  1795608000123 },
        { "2026-11-25T12:00:00.1Z",          1795608000100 },
        { "2026-11-25T12:00:00Z",            1795608000000 },
        { "2026-11-26T00:00:00+12:00",       1795608000000 },
        { "1970-01-01T00:00:00Z",            0 },
        { "1970-01-01T00:00:00+00:00",       0 },
        { "1970-01-01T00:00:00-00:00",       0 },
        { "1969-12-31T23:59:59.999Z",        -1 },
        { "2024-02-29T00:00:00Z",            1709164800000 },
        { "2000-02-29T00:00:00Z",            951782400000 },
        { "2016-12-31T23:59:60Z",            1483228800000 },
    };
    static const char *const bad[] = {
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z", "2100-02-29T00:00:00Z", "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:61Z",
        "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+2:00",
        "2026-01-01T00:00:00+0200", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+01:60",
        "2026-01-01T00:00:00ZZ", "2026-01-01T00:00:00Z ", " 2026-01-01T00:00:00Z",
        "2026-1-01T00:00:00Z", "26-01-01T00:00:00Z", "2026-01-01X00:00:00Z",
        "2026-01-01", "", "2026-01-01T00:00:00,5Z", "+2026-01-01T00:00:00Z",
    };
    char buf[32];
    int64_t ms;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ms = 42;
        if (!mz_time_parse(good[i].s, &ms) || ms != good[i].ms)
            print_error("%s -> %lld\n", good[i].s, (long long)ms);
        assert_true(mz_time_parse(good[i].s, &ms));
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mz_time_parse(bad[i], &ms))
            print_error("accepted %s\n", bad[i]);
        assert_false(mz_time_parse(bad[i], &ms));
    }
    assert_false(mz_time_parse(NULL, &ms));
    assert_true(mz_time_parse("2026-01-01T00:00:00Z", NULL));

    mz_time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    mz_time_format(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    mz_time_format(1795608000123, buf);
    assert_string_equal(buf, "2026-11-25T12:00:00.123Z");
    mz_time_format(253402300799999, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");

    /* Format then parse is the identity, now and at awkward instants. */
    {
        const int64_t samples[] = { mz_now_ms(), 0, -1, -86400001, 951782400000,
                                    1709251199999, 253402300799999 };
        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
            mz_time_format(samples[i], buf);
            assert_true(mz_time_parse(buf, &ms));
            assert_int_equal(ms, samples[i]);
        }
    }
    assert_true(mz_now_ms() > 1700000000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_create_reload),
        cmocka_unit_test(test_identity_loose_mode),
        cmocka_unit_test(test_identity_garbage),
        cmocka_unit_test(test_identity_seed_vector),
        cmocka_unit_test(test_id_valid_and_random_hex),
        cmocka_unit_test(test_sign_verify_roundtrip),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_foreign_signature),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_not_json),
        cmocka_unit_test(test_parse_missing),
        cmocka_unit_test(test_parse_wrong_types),
        cmocka_unit_test(test_parse_bad_values),
        cmocka_unit_test(test_parse_duplicate),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_id_out),
        cmocka_unit_test(test_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
