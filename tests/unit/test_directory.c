/* Unit tests for the ResourceDirectory (src/state/directory.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/directory_int.h"
#include "meshzero/directory.h"

#define NODE_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define NODE_C "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SIG    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" \
               "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* A valid record; caps is a NULL-terminated list. Returns new. */
static json_t *s_rec(const char *id, const char *type, const char *owner,
                     const char *const *caps, const char *node, json_int_t version)
{
    json_t *arr = json_array();
    json_t *rec;

    assert_non_null(arr);
    for (size_t i = 0; caps != NULL && caps[i] != NULL; i++)
        assert_int_equal(json_array_append_new(arr, json_string(caps[i])), 0);
    /* The owner key is the hosting node's own key unless a test says otherwise. */
    rec = json_pack("{s:s, s:s, s:s, s:o, s:{s:s, s:s}, s:s, s:I, s:s, s:s}",
                    "resource_id", id, "resource_type", type, "owner", owner,
                    "capabilities", arr,
                    "metadata", "version", "1.0", "last_updated", "2026-01-01T00:00:00Z",
                    "node", node, "version", version, "signature", SIG, "owner_key", node);
    assert_non_null(rec);
    return rec;
}

static json_t *s_good(void)
{
    static const char *const caps[] = { "image_processing", "text_analysis", NULL };

    return s_rec("agent123", "agent", "user456", caps, NODE_A, 1);
}

static mz_directory *s_dir(void)
{
    mz_directory *dir = NULL;

    assert_int_equal(mz_directory_new(&dir, NULL), MZ_OK);
    assert_non_null(dir);
    return dir;
}

static void s_put(mz_directory *dir, json_t *rec, bool local, mz_dir_change want)
{
    mz_dir_change change = (mz_dir_change)-1;
    mz_err err = { 0 };

    if (mz_directory_put(dir, rec, local, &change, &err) != MZ_OK)
        fail_msg("put failed: %s", err.msg);
    assert_int_equal(change, want);
    json_decref(rec);
}

/* ---- validation ---------------------------------------------------------- */

static void test_validate_accepts_good(void **state)
{
    json_t *rec = s_good();
    mz_err err = { 0 };
    char owner[MZ_OWNER_MAX + 1];

    (void)state;
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    /* location is optional and ignored, whatever it says. */
    json_object_set_new(rec, "location", json_string("remote"));
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    /* Edge values: empty owner and capabilities, unicode owner, version
     * 2^53, metadata without last_updated, maximal lengths. */
    json_object_set_new(rec, "owner", json_string(""));
    json_object_set_new(rec, "capabilities", json_array());
    json_object_set_new(rec, "version", json_integer((json_int_t)1 << 53));
    json_object_set_new(rec, "metadata", json_object());
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    json_object_set_new(rec, "owner", json_string("J\xc3\xbcrgen \xe6\x97\xa5\xe6\x9c\xac"));
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    memset(owner, 'o', MZ_OWNER_MAX);
    owner[MZ_OWNER_MAX] = '\0';
    json_object_set_new(rec, "owner", json_string(owner));
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    json_object_set_new(rec, "resource_type", json_string("a.b:c-d_E9"));
    json_object_set_new(rec, "capabilities", json_pack("[s,s]", "x/y:z.w-v_1", "q"));
    json_object_set_new(rec, "resource_id", json_string("id!~\"{}"));
    assert_int_equal(mz_record_validate(rec, &err), MZ_OK);
    json_decref(rec);
}

/* Sets key to val (NULL: deletes key) on a good record, expects EPROTO
 * with an error naming field. */
static void s_bad(const char *key, json_t *val, const char *field)
{
    json_t *rec = s_good();
    mz_err err = { 0 };
    char want[80];

    if (val == NULL)
        json_object_del(rec, key);
    else
        json_object_set_new(rec, key, val);
    if (mz_record_validate(rec, &err) != MZ_EPROTO)
        fail_msg("bad %s accepted", key);
    snprintf(want, sizeof want, "'%s'", field);
    if (strstr(err.msg, want) == NULL)
        fail_msg("error for %s does not name it: %s", key, err.msg);
    json_decref(rec);
}

static json_t *s_str_of(char c, size_t n)
{
    char buf[20000];

    assert_true(n < sizeof buf);
    memset(buf, c, n);
    buf[n] = '\0';
    return json_string(buf);
}

static void test_validate_rejects_each_field(void **state)
{
    json_t *caps;
    json_t *meta;

    (void)state;
    s_bad("resource_id", NULL, "resource_id");
    s_bad("resource_id", json_string(""), "resource_id");
    s_bad("resource_id", json_string("has space"), "resource_id");
    s_bad("resource_id", json_string("tab\there"), "resource_id");
    s_bad("resource_id", json_integer(5), "resource_id");
    s_bad("resource_id", json_string("\xc3\xa9"), "resource_id");
    s_bad("resource_id", s_str_of('i', MZ_RESOURCE_ID_MAX + 1), "resource_id");

    s_bad("resource_type", NULL, "resource_type");
    s_bad("resource_type", json_string(""), "resource_type");
    s_bad("resource_type", json_string("a/b"), "resource_type");
    s_bad("resource_type", json_string("a b"), "resource_type");
    s_bad("resource_type", json_null(), "resource_type");
    s_bad("resource_type", s_str_of('t', MZ_RESOURCE_TYPE_MAX + 1), "resource_type");

    s_bad("owner", NULL, "owner");
    s_bad("owner", json_integer(1), "owner");
    s_bad("owner", json_string("bell\a"), "owner");
    s_bad("owner", json_string("c1\xc2\x85"), "owner");
    s_bad("owner", json_string("del\x7f"), "owner");
    s_bad("owner", s_str_of('o', MZ_OWNER_MAX + 1), "owner");

    s_bad("capabilities", NULL, "capabilities");
    s_bad("capabilities", json_string("image_processing"), "capabilities");
    s_bad("capabilities", json_pack("[s,i]", "a", 1), "capabilities");
    s_bad("capabilities", json_pack("[s,s]", "a", "a"), "capabilities");
    s_bad("capabilities", json_pack("[s]", ""), "capabilities");
    s_bad("capabilities", json_pack("[s]", "a b"), "capabilities");
    s_bad("capabilities", json_pack("[o]", s_str_of('c', MZ_CAP_MAX + 1)), "capabilities");
    caps = json_array();
    for (int i = 0; i <= MZ_CAPS_MAX; i++)
        json_array_append_new(caps, json_sprintf("cap%d", i));
    s_bad("capabilities", caps, "capabilities");

    s_bad("metadata", NULL, "metadata");
    s_bad("metadata", json_array(), "metadata");
    s_bad("metadata", json_pack("{s:i}", "last_updated", 5), "metadata.last_updated");
    meta = json_pack("{s:o}", "blob", s_str_of('m', MZ_METADATA_MAX));
    s_bad("metadata", meta, "metadata");

    s_bad("node", NULL, "node");
    s_bad("node", json_string("abc"), "node");
    s_bad("node", json_string(NODE_A "a"), "node");
    s_bad("node", json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "node");
    s_bad("node", json_string("gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"), "node");

    s_bad("version", NULL, "version");
    s_bad("version", json_integer(0), "version");
    s_bad("version", json_integer(-3), "version");
    s_bad("version", json_integer(((json_int_t)1 << 53) + 1), "version");
    s_bad("version", json_real(2.0), "version");
    s_bad("version", json_string("2"), "version");

    s_bad("signature", NULL, "signature");
    s_bad("signature", json_string("00"), "signature");
    s_bad("signature", json_string(NODE_A NODE_A "0"), "signature");
    s_bad("signature", json_string(NODE_A "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
          "signature");

    s_bad("extra", json_true(), "extra");
}

static void test_validate_messages(void **state)
{
    json_t *rec = s_good();
    mz_err err = { 0 };

    (void)state;
    json_object_set_new(rec, "capabilities", json_pack("[i]", 1));
    assert_int_equal(mz_record_validate(rec, &err), MZ_EPROTO);
    assert_int_equal(err.code, MZ_EPROTO);
    assert_string_equal(err.msg,
                        "record 'agent123': field 'capabilities' must be an array of strings");
    json_decref(rec);
    rec = json_array();
    assert_int_equal(mz_record_validate(rec, &err), MZ_EPROTO);
    assert_int_equal(mz_record_validate(rec, NULL), MZ_EPROTO);
    json_decref(rec);
    /* A hostile unknown key is printed tamed: no control bytes. */
    rec = s_good();
    json_object_set_new(rec, "evil\n\x1b[31m", json_true());
    assert_int_equal(mz_record_validate(rec, &err), MZ_EPROTO);
    assert_null(strchr(err.msg, '\n'));
    assert_null(strchr(err.msg, '\x1b'));
    assert_non_null(strstr(err.msg, "unknown field 'evil?"));
    json_decref(rec);
}

/* ---- put / get / update -------------------------------------------------- */

static void test_put_get_update(void **state)
{
    mz_directory *dir = s_dir();
    static const char *const caps[] = { "c1", "c2", NULL };
    static const char *const caps2[] = { "c2", "c3", "c4", NULL };
    const mz_record *r;
    mz_dir_change change;
    mz_err err = { 0 };
    json_t *rec;

    (void)state;
    assert_null(mz_directory_get(dir, "x"));
    s_put(dir, s_rec("x", "agent", "alice", caps, NODE_A, 2), true, MZ_DIR_ADDED);
    assert_int_equal(mz_directory_count(dir), 1);
    r = mz_directory_get(dir, "x");
    assert_non_null(r);
    assert_string_equal(mz_record_id(r), "x");
    assert_string_equal(mz_record_type(r), "agent");
    assert_string_equal(mz_record_owner(r), "alice");
    assert_string_equal(mz_record_node(r), NODE_A);
    assert_int_equal(mz_record_version(r), 2);
    assert_true(mz_record_local(r));

    /* Same or lower version from the same node: kept. */
    s_put(dir, s_rec("x", "tool", "bob", caps2, NODE_A, 2), true, MZ_DIR_UNCHANGED);
    s_put(dir, s_rec("x", "tool", "bob", caps2, NODE_A, 1), true, MZ_DIR_UNCHANGED);
    r = mz_directory_get(dir, "x");
    assert_string_equal(mz_record_type(r), "agent");
    assert_int_equal(mz_record_version(r), 2);

    /* Higher version: replaced, indexes follow. */
    s_put(dir, s_rec("x", "tool", "bob", caps2, NODE_A, 3), false, MZ_DIR_UPDATED);
    r = mz_directory_get(dir, "x");
    assert_string_equal(mz_record_type(r), "tool");
    assert_string_equal(mz_record_owner(r), "bob");
    assert_int_equal(mz_record_version(r), 3);
    assert_false(mz_record_local(r));
    assert_int_equal(mz_directory_count(dir), 1);
    {
        mz_query q = { .resource_type = "agent" };
        const char *c1[] = { "c1" };
        const char *c3[] = { "c3" };

        assert_int_equal(mz_directory_query(dir, &q, NULL, NULL), 0);
        q.resource_type = "tool";
        assert_int_equal(mz_directory_query(dir, &q, NULL, NULL), 1);
        q.capabilities = c1;
        q.n_capabilities = 1;
        assert_int_equal(mz_directory_query(dir, &q, NULL, NULL), 0);
        q.capabilities = c3;
        assert_int_equal(mz_directory_query(dir, &q, NULL, NULL), 1);
    }

    /* Another node cannot take the id, whatever the version. */
    rec = s_rec("x", "tool", "mallory", caps, NODE_B, 99);
    change = MZ_DIR_ADDED;
    assert_int_equal(mz_directory_put(dir, rec, false, &change, &err), MZ_EEXIST);
    assert_int_equal(change, MZ_DIR_UNCHANGED);
    assert_non_null(strstr(err.msg, "'x'"));
    assert_string_equal(mz_record_owner(mz_directory_get(dir, "x")), "bob");
    json_decref(rec);

    /* The same owner key may move the id to another host, but only forward. */
    rec = s_rec("x", "tool", "bob", caps, NODE_B, 50);
    json_object_set_new(rec, "owner_key", json_string(NODE_A));
    assert_int_equal(mz_directory_put(dir, rec, false, &change, &err), MZ_OK);
    assert_int_equal(change, MZ_DIR_UPDATED);
    assert_string_equal(mz_record_node(mz_directory_get(dir, "x")), NODE_B);
    assert_string_equal(mz_record_owner_key(mz_directory_get(dir, "x")), NODE_A);
    json_object_set_new(rec, "version", json_integer(49));
    json_object_set_new(rec, "node", json_string(NODE_A));
    assert_int_equal(mz_directory_put(dir, rec, false, &change, &err), MZ_OK);
    assert_int_equal(change, MZ_DIR_UNCHANGED);
    assert_string_equal(mz_record_node(mz_directory_get(dir, "x")), NODE_B);
    json_decref(rec);

    /* Invalid input is refused by put as well; change may be NULL. */
    rec = s_good();
    json_object_set_new(rec, "version", json_integer(0));
    assert_int_equal(mz_directory_put(dir, rec, true, NULL, &err), MZ_EPROTO);
    assert_non_null(strstr(err.msg, "'version'"));
    json_decref(rec);
    assert_int_equal(mz_directory_count(dir), 1);
    mz_directory_free(dir);
    mz_directory_free(NULL);
}

static void test_to_json_roundtrip(void **state)
{
    mz_directory *dir = s_dir();
    json_t *in = s_good();
    json_t *out;
    json_t *meta = json_pack("{s:s, s:[i,f,b,n], s:{s:s}, s:s#}",
                             "last_updated", "2026-01-01T00:00:00Z",
                             "list", 1, 2.5, 1, "nested", "k", "v", "nul", "a\0b", (size_t)3);

    (void)state;
    assert_non_null(meta);
    json_object_set_new(in, "metadata", meta);
    json_object_set_new(in, "location", json_string("local"));   /* ignored */
    assert_int_equal(mz_directory_put(dir, in, false, NULL, NULL), MZ_OK);
    out = mz_record_to_json(mz_directory_get(dir, "agent123"));
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "location")), "remote");
    json_object_set_new(in, "location", json_string("remote"));
    if (!json_equal(in, out)) {
        char *a = json_dumps(in, JSON_SORT_KEYS), *b = json_dumps(out, JSON_SORT_KEYS);

        fail_msg("round trip differs:\n%s\n%s", a, b);
    }
    assert_int_equal(mz_record_validate(out, NULL), MZ_OK);
    json_decref(out);
    json_decref(in);
    mz_directory_free(dir);
}

/* ---- queries ------------------------------------------------------------- */

static bool s_count_cb(const mz_record *rec, void *ctx)
{
    (void)rec;
    ++*(int *)ctx;
    return true;
}

static bool s_stop_cb(const mz_record *rec, void *ctx)
{
    (void)rec;
    ++*(int *)ctx;
    return false;
}

/* Fixture for the query tests:
 *   a1 agent  alice NODE_A local  [img, txt]
 *   a2 agent  bob   NODE_A local  [img]
 *   a3 agent  alice NODE_B remote [img, txt, audio]
 *   t1 tool   bob   NODE_B remote [txt]
 *   t2 tool   carol NODE_C remote []                                   */
static mz_directory *s_fixture(void)
{
    static const char *const c_it[] = { "img", "txt", NULL };
    static const char *const c_i[] = { "img", NULL };
    static const char *const c_ita[] = { "img", "txt", "audio", NULL };
    static const char *const c_t[] = { "txt", NULL };
    mz_directory *dir = s_dir();

    s_put(dir, s_rec("a1", "agent", "alice", c_it, NODE_A, 1), true, MZ_DIR_ADDED);
    s_put(dir, s_rec("a2", "agent", "bob", c_i, NODE_A, 1), true, MZ_DIR_ADDED);
    s_put(dir, s_rec("a3", "agent", "alice", c_ita, NODE_B, 1), false, MZ_DIR_ADDED);
    s_put(dir, s_rec("t1", "tool", "bob", c_t, NODE_B, 1), false, MZ_DIR_ADDED);
    s_put(dir, s_rec("t2", "tool", "carol", NULL, NODE_C, 1), false, MZ_DIR_ADDED);
    return dir;
}

static size_t s_q(const mz_directory *dir, const mz_query *q)
{
    int calls = 0;
    size_t n = mz_directory_query(dir, q, s_count_cb, &calls);

    assert_int_equal((size_t)calls, n);
    return n;
}

static void test_query(void **state)
{
    mz_directory *dir = s_fixture();
    const char *img[] = { "img" };
    const char *img_txt[] = { "img", "txt" };
    const char *txt_img_txt[] = { "txt", "img", "txt" };
    const char *audio_txt[] = { "audio", "txt" };
    const char *unknown[] = { "img", "nope" };
    const char *nullcap[] = { NULL };
    mz_query q = { 0 };
    int calls = 0;

    (void)state;
    assert_int_equal(s_q(dir, &q), 5);
    assert_int_equal(s_q(dir, NULL), 5);
    q.resource_type = "agent";
    assert_int_equal(s_q(dir, &q), 3);
    q.resource_type = "tool";
    assert_int_equal(s_q(dir, &q), 2);
    q.resource_type = "nope";
    assert_int_equal(s_q(dir, &q), 0);
    q.resource_type = "img";                 /* interned, but only as a capability */
    assert_int_equal(s_q(dir, &q), 0);

    q = (mz_query){ .capabilities = img, .n_capabilities = 1 };
    assert_int_equal(s_q(dir, &q), 3);
    q.capabilities = img_txt;                /* ALL must match */
    q.n_capabilities = 2;
    assert_int_equal(s_q(dir, &q), 2);
    q.capabilities = txt_img_txt;            /* repeats do not matter */
    q.n_capabilities = 3;
    assert_int_equal(s_q(dir, &q), 2);
    q.capabilities = audio_txt;
    q.n_capabilities = 2;
    assert_int_equal(s_q(dir, &q), 1);
    q.capabilities = unknown;
    assert_int_equal(s_q(dir, &q), 0);
    q.capabilities = nullcap;
    q.n_capabilities = 1;
    assert_int_equal(s_q(dir, &q), 0);
    q.capabilities = NULL;
    assert_int_equal(s_q(dir, &q), 0);

    q = (mz_query){ .resource_type = "agent", .capabilities = img_txt, .n_capabilities = 2 };
    assert_int_equal(s_q(dir, &q), 2);
    q.owner = "alice";
    assert_int_equal(s_q(dir, &q), 2);
    q.location = MZ_LOC_LOCAL;
    assert_int_equal(s_q(dir, &q), 1);
    q.location = MZ_LOC_REMOTE;
    assert_int_equal(s_q(dir, &q), 1);
    q.node = NODE_A;
    assert_int_equal(s_q(dir, &q), 0);
    q.location = MZ_LOC_ANY;
    assert_int_equal(s_q(dir, &q), 1);

    q = (mz_query){ .owner = "bob" };
    assert_int_equal(s_q(dir, &q), 2);
    q.owner = "nobody";
    assert_int_equal(s_q(dir, &q), 0);
    q = (mz_query){ .node = NODE_B };
    assert_int_equal(s_q(dir, &q), 2);
    q.node = NODE_C;
    assert_int_equal(s_q(dir, &q), 1);
    q.node = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    assert_int_equal(s_q(dir, &q), 0);
    q = (mz_query){ .location = MZ_LOC_LOCAL };
    assert_int_equal(s_q(dir, &q), 2);
    q.location = MZ_LOC_REMOTE;
    assert_int_equal(s_q(dir, &q), 3);

    /* limit, and a callback that stops early. */
    q = (mz_query){ .limit = 2 };
    assert_int_equal(s_q(dir, &q), 2);
    q = (mz_query){ .resource_type = "agent", .limit = 1 };
    assert_int_equal(s_q(dir, &q), 1);
    q.limit = 10;
    assert_int_equal(s_q(dir, &q), 3);
    q = (mz_query){ .capabilities = img, .n_capabilities = 1 };
    assert_int_equal(mz_directory_query(dir, &q, s_stop_cb, &calls), 1);
    assert_int_equal(calls, 1);
    mz_directory_free(dir);
}

static void test_query_json(void **state)
{
    mz_directory *dir = s_fixture();
    const char *txt[] = { "txt" };
    mz_query q = { .resource_type = "agent", .capabilities = txt, .n_capabilities = 1 };
    json_t *arr = mz_directory_query_json(dir, &q);
    json_t *item;
    size_t i;
    bool seen_a1 = false, seen_a3 = false;

    (void)state;
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 2);
    json_array_foreach(arr, i, item) {
        const char *id = json_string_value(json_object_get(item, "resource_id"));
        const char *loc = json_string_value(json_object_get(item, "location"));

        assert_int_equal(mz_record_validate(item, NULL), MZ_OK);
        if (strcmp(id, "a1") == 0) {
            seen_a1 = true;
            assert_string_equal(loc, "local");
        } else {
            assert_string_equal(id, "a3");
            seen_a3 = true;
            assert_string_equal(loc, "remote");
            assert_int_equal(json_array_size(json_object_get(item, "capabilities")), 3);
        }
    }
    assert_true(seen_a1 && seen_a3);
    json_decref(arr);
    q.resource_type = "nothing";
    arr = mz_directory_query_json(dir, &q);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    mz_directory_free(dir);
}

/* ---- removal ------------------------------------------------------------- */

static void test_remove(void **state)
{
    mz_directory *dir = s_fixture();
    const char *img[] = { "img" };
    mz_query q = { .capabilities = img, .n_capabilities = 1 };
    mz_err err = { 0 };

    (void)state;
    assert_int_equal(mz_directory_remove(dir, "zz", NULL, &err), MZ_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'zz'"));
    assert_int_equal(mz_directory_remove(dir, "a1", NODE_B, &err), MZ_ENOTFOUND);
    assert_non_null(mz_directory_get(dir, "a1"));
    assert_int_equal(mz_directory_remove(dir, "a1", NODE_A, &err), MZ_OK);
    assert_null(mz_directory_get(dir, "a1"));
    assert_int_equal(mz_directory_count(dir), 4);
    assert_int_equal(s_q(dir, &q), 2);
    assert_int_equal(mz_directory_remove(dir, "a1", NULL, &err), MZ_ENOTFOUND);
    assert_int_equal(mz_directory_remove(dir, "t2", NULL, &err), MZ_OK);
    /* carol and NODE_C were used only by t2: gone from the atom table. */
    q = (mz_query){ .owner = "carol" };
    assert_int_equal(s_q(dir, &q), 0);
    q = (mz_query){ .node = NODE_C };
    assert_int_equal(s_q(dir, &q), 0);
    /* The id is free again, for any node. */
    s_put(dir, s_rec("a1", "agent", "dave", NULL, NODE_C, 1), false, MZ_DIR_ADDED);
    assert_string_equal(mz_record_owner(mz_directory_get(dir, "a1")), "dave");
    mz_directory_free(dir);
}

struct removed_ctx {
    int calls;
    bool ok;               /* every record handed over still readable, of the node */
};

static void s_on_removed(const mz_record *rec, void *ctx)
{
    struct removed_ctx *c = ctx;

    c->calls++;
    if (strcmp(mz_record_node(rec), NODE_B) != 0 || mz_record_id(rec)[0] == '\0')
        c->ok = false;
}

static void test_remove_node(void **state)
{
    mz_directory *dir = s_fixture();
    struct removed_ctx c = { 0, true };
    mz_query q = { 0 };

    (void)state;
    assert_int_equal(mz_directory_remove_node(dir, NODE_B, s_on_removed, &c), 2);
    assert_int_equal(c.calls, 2);
    assert_true(c.ok);
    assert_int_equal(mz_directory_count(dir), 3);
    assert_null(mz_directory_get(dir, "a3"));
    assert_null(mz_directory_get(dir, "t1"));
    assert_non_null(mz_directory_get(dir, "a1"));
    assert_int_equal(mz_directory_remove_node(dir, NODE_B, s_on_removed, &c), 0);
    assert_int_equal(mz_directory_remove_node(dir, "unknown", NULL, NULL), 0);
    q.node = NODE_B;
    assert_int_equal(s_q(dir, &q), 0);
    assert_int_equal(mz_directory_remove_node(dir, NODE_A, NULL, NULL), 2);
    assert_int_equal(mz_directory_count(dir), 1);
    mz_directory_free(dir);
}

static bool s_foreach_cb(const mz_record *rec, void *ctx)
{
    (void)rec;
    return ++*(int *)ctx < 3;
}

static void test_foreach(void **state)
{
    mz_directory *dir = s_fixture();
    int n = 0;

    (void)state;
    mz_directory_foreach(dir, s_count_cb, &n);
    assert_int_equal(n, 5);
    n = 0;
    mz_directory_foreach(dir, s_foreach_cb, &n);
    assert_int_equal(n, 3);
    mz_directory_free(dir);
}

/* ---- random operations against a brute-force model ---------------------- */

enum { M_IDS = 400, M_TYPES = 4, M_CAPS = 40, M_OWNERS = 5, M_NODES = 4, M_OPS = 5000 };

static const char *const s_nodes[M_NODES] = { NODE_A, NODE_B, NODE_C,
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" };

struct model_rec {
    bool present;
    int type, owner, node;
    uint64_t caps;         /* bit per capability index */
    int64_t version;
    bool local;
    bool big;              /* metadata too large for the record slabs */
};

/* Metadata of a "big" record: past the largest record the directory
 * carves from its slabs (2 KiB), so both kinds of record memory churn. */
#define M_BIG_META 3000

static void s_check_index(const mz_directory *dir)
{
    mz_err err = { 0 };

    if (mz__directory_check(dir, &err) != MZ_OK)
        fail_msg("index check: %s", err.msg);
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t s_rand(void)
{
    /* xorshift64*: fixed seed, so a failure reproduces. */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ULL;
}

static int s_randn(int n)
{
    return (int)(s_rand() % (uint64_t)n);
}

static json_t *s_model_json(int id, const struct model_rec *m)
{
    char rid[16], type[16], owner[16], caps[M_CAPS][16];
    const char *cp[M_CAPS + 1];
    size_t n = 0;
    json_t *rec;

    snprintf(rid, sizeof rid, "r%d", id);
    snprintf(type, sizeof type, "type%d", m->type);
    snprintf(owner, sizeof owner, "owner%d", m->owner);
    for (int c = 0; c < M_CAPS; c++) {
        if (m->caps >> c & 1) {
            snprintf(caps[n], sizeof caps[n], "cap%d", c);
            cp[n] = caps[n];
            n++;
        }
    }
    cp[n] = NULL;
    rec = s_rec(rid, type, owner, cp, s_nodes[m->node], m->version);
    if (m->big) {
        char *pad = malloc(M_BIG_META + 1);

        assert_non_null(pad);
        memset(pad, 'x', M_BIG_META);
        pad[M_BIG_META] = '\0';
        assert_int_equal(json_object_set_new(json_object_get(rec, "metadata"), "pad",
                                             json_string(pad)), 0);
        free(pad);
    }
    return rec;
}

struct model_q {
    int type, owner, node;     /* -1: any */
    uint64_t caps;
    mz_location loc;
    size_t limit;              /* 0: none */
};

static bool s_model_match(const struct model_rec *m, const struct model_q *q)
{
    return m->present && (q->type < 0 || m->type == q->type) &&
           (q->owner < 0 || m->owner == q->owner) && (q->node < 0 || m->node == q->node) &&
           (m->caps & q->caps) == q->caps &&
           (q->loc == MZ_LOC_ANY || (q->loc == MZ_LOC_LOCAL) == m->local);
}

struct collect {
    unsigned char hits[M_IDS];
    const struct model_rec *model;
    bool bad;
};

static bool s_collect_cb(const mz_record *rec, void *ctx)
{
    struct collect *c = ctx;
    int id = atoi(mz_record_id(rec) + 1);
    const struct model_rec *m = &c->model[id];
    char type[16];

    snprintf(type, sizeof type, "type%d", m->type);
    if (id < 0 || id >= M_IDS || !m->present || strcmp(mz_record_type(rec), type) != 0 ||
        (strlen(mz_record_metadata_text(rec)) > M_BIG_META) != m->big ||
        mz_record_version(rec) != m->version || mz_record_local(rec) != m->local)
        c->bad = true;
    else
        c->hits[id]++;
    return true;
}

static void s_check_query(const mz_directory *dir, const struct model_rec *model,
                          const struct model_q *mq)
{
    char type[16], owner[16], caps[M_CAPS][16];
    const char *cp[M_CAPS];
    mz_query q = { .location = mq->loc, .limit = mq->limit };
    struct collect *c = calloc(1, sizeof *c);
    size_t n, want = 0;

    assert_non_null(c);
    c->model = model;
    if (mq->type >= 0) {
        snprintf(type, sizeof type, "type%d", mq->type);
        q.resource_type = type;
    }
    if (mq->owner >= 0) {
        snprintf(owner, sizeof owner, "owner%d", mq->owner);
        q.owner = owner;
    }
    if (mq->node >= 0)
        q.node = s_nodes[mq->node];
    for (int i = 0; i < M_CAPS; i++) {
        if (mq->caps >> i & 1) {
            snprintf(caps[q.n_capabilities], sizeof caps[0], "cap%d", i);
            cp[q.n_capabilities] = caps[q.n_capabilities];
            q.n_capabilities++;
        }
    }
    q.capabilities = cp;
    n = mz_directory_query(dir, &q, s_collect_cb, c);
    assert_false(c->bad);
    /* With a limit, any limit-sized subset of the matches will do; each
     * match at most once, never a non-match. */
    for (int i = 0; i < M_IDS; i++) {
        bool match = s_model_match(&model[i], mq);

        want += match;
        if (c->hits[i] > (match ? 1 : 0) || (mq->limit == 0 && c->hits[i] != match))
            fail_msg("query mismatch on r%d: got %d, model says %d", i, c->hits[i], match);
    }
    if (mq->limit != 0 && want > mq->limit)
        want = mq->limit;
    assert_int_equal(n, want);
    free(c);
}

static void test_random_against_model(void **state)
{
    mz_directory *dir = s_dir();
    struct model_rec *model = calloc(M_IDS, sizeof *model);
    mz_err err = { 0 };

    (void)state;
    assert_non_null(model);
    for (int op = 0; op < M_OPS; op++) {
        int id = s_randn(M_IDS);
        struct model_rec *m = &model[id];
        int r = s_randn(100);

        if (r < 60) {
            struct model_rec nm = {
                .present = true, .type = s_randn(M_TYPES), .owner = s_randn(M_OWNERS),
                .node = s_randn(8) == 0 ? s_randn(M_NODES) : (m->present ? m->node : s_randn(M_NODES)),
                .version = s_randn(6) + 1, .local = s_randn(2), .big = s_randn(10) == 0,
            };
            int ncaps = s_randn(6);
            json_t *j;
            mz_dir_change change;
            mz_status rc;

            for (int k = 0; k < ncaps; k++)
                nm.caps |= UINT64_C(1) << s_randn(M_CAPS);
            j = s_model_json(id, &nm);
            rc = mz_directory_put(dir, j, nm.local, &change, &err);
            json_decref(j);
            if (m->present && m->node != nm.node) {
                assert_int_equal(rc, MZ_EEXIST);
            } else if (m->present && nm.version <= m->version) {
                assert_int_equal(rc, MZ_OK);
                assert_int_equal(change, MZ_DIR_UNCHANGED);
            } else {
                assert_int_equal(rc, MZ_OK);
                assert_int_equal(change, m->present ? MZ_DIR_UPDATED : MZ_DIR_ADDED);
                *m = nm;
            }
        } else if (r < 90) {
            char rid[16];
            const char *node = s_randn(2) ? s_nodes[s_randn(M_NODES)] : NULL;
            mz_status rc;

            snprintf(rid, sizeof rid, "r%d", id);
            rc = mz_directory_remove(dir, rid, node, &err);
            if (m->present && (node == NULL || node == s_nodes[m->node])) {
                assert_int_equal(rc, MZ_OK);
                m->present = false;
            } else {
                assert_int_equal(rc, MZ_ENOTFOUND);
            }
        } else if (r < 91) {
            int node = s_randn(M_NODES);
            size_t want = 0;

            for (int i = 0; i < M_IDS; i++) {
                if (model[i].present && model[i].node == node) {
                    model[i].present = false;
                    want++;
                }
            }
            assert_int_equal(mz_directory_remove_node(dir, s_nodes[node], NULL, NULL), want);
        } else {
            struct model_q mq = {
                .type = s_randn(3) ? s_randn(M_TYPES) : -1,
                .owner = s_randn(4) ? -1 : s_randn(M_OWNERS),
                .node = s_randn(4) ? -1 : s_randn(M_NODES),
                .loc = (mz_location)s_randn(3),
                .limit = s_randn(4) == 0 ? (size_t)s_randn(4) + 1 : 0,
            };
            int nq = s_randn(4);

            for (int k = 0; k < nq; k++)
                mq.caps |= UINT64_C(1) << s_randn(M_CAPS);
            s_check_query(dir, model, &mq);
        }
        if (op % 500 == 0) {
            size_t present = 0;

            s_check_index(dir);
            for (int i = 0; i < M_IDS; i++) {
                char rid[16];

                snprintf(rid, sizeof rid, "r%d", i);
                present += model[i].present;
                assert_true((mz_directory_get(dir, rid) != NULL) == model[i].present);
            }
            assert_int_equal(mz_directory_count(dir), present);
        }
    }
    /* Every single-capability and every type index, exhaustively, and
     * every (type, capability) pair alone and with a second capability. */
    s_check_index(dir);
    for (int c = 0; c < M_CAPS; c++) {
        struct model_q mq = { .type = -1, .owner = -1, .node = -1, .caps = UINT64_C(1) << c };

        s_check_query(dir, model, &mq);
        for (int t = 0; t < M_TYPES; t++) {
            mq.type = t;
            mq.caps = UINT64_C(1) << c;
            s_check_query(dir, model, &mq);
            mq.caps |= UINT64_C(1) << ((c + 1 + t) % M_CAPS);
            s_check_query(dir, model, &mq);
        }
    }
    for (int t = 0; t < M_TYPES; t++) {
        struct model_q mq = { .type = t, .owner = -1, .node = -1 };

        s_check_query(dir, model, &mq);
    }
    /* Emptied: every pair must have gone with its last record. */
    for (int i = 0; i < M_IDS; i++) {
        char rid[16];

        snprintf(rid, sizeof rid, "r%d", i);
        if (model[i].present)
            assert_int_equal(mz_directory_remove(dir, rid, NULL, NULL), MZ_OK);
    }
    s_check_index(dir);
    assert_int_equal(mz_directory_count(dir), 0);
    mz_directory_free(dir);
    free(model);
}

/* ---- long lists: the paths a small directory never takes ----------------- */

/* Enough records that (type, capability) lists pass the length up to which
 * a query intersects through a bitmap (8192), skewed so that some queries
 * pair a long list with a short one. */
enum { L_IDS = 40000, L_CAPS = 6 };

struct long_rec {
    bool present;
    int type;              /* 0: common, 1: rare */
    int node;
    unsigned caps;         /* bit per capability */
};

struct long_hits {
    unsigned char *hits;
    const struct long_rec *model;
    bool bad;
};

static bool s_long_cb(const mz_record *rec, void *ctx)
{
    struct long_hits *h = ctx;
    int id = atoi(mz_record_id(rec) + 1);

    if (id < 0 || id >= L_IDS || !h->model[id].present)
        h->bad = true;
    else
        h->hits[id]++;
    return true;
}

static void s_long_query(const mz_directory *dir, const struct long_rec *model, int type,
                         unsigned caps, int node, size_t limit)
{
    static const char *const cap_names[L_CAPS] = { "c0", "c1", "c2", "c3", "c4", "c5" };
    const char *cp[L_CAPS];
    mz_query q = { .resource_type = type < 0 ? NULL : type == 0 ? "common" : "rare",
                   .node = node < 0 ? NULL : s_nodes[node], .limit = limit };
    struct long_hits h = { calloc(L_IDS, 1), model, false };
    size_t n, want = 0;

    assert_non_null(h.hits);
    for (int c = 0; c < L_CAPS; c++) {
        if (caps >> c & 1)
            cp[q.n_capabilities++] = cap_names[c];
    }
    q.capabilities = cp;
    n = mz_directory_query(dir, &q, s_long_cb, &h);
    assert_false(h.bad);
    for (int i = 0; i < L_IDS; i++) {
        const struct long_rec *m = &model[i];
        bool match = m->present && (type < 0 || m->type == type) &&
                     (node < 0 || m->node == node) && (m->caps & caps) == caps;

        want += match;
        if (h.hits[i] > match || (limit == 0 && h.hits[i] != match))
            fail_msg("long query (type %d caps %#x node %d): r%d got %d, model says %d",
                     type, caps, node, i, h.hits[i], match);
    }
    if (limit != 0 && want > limit)
        want = limit;
    assert_int_equal(n, want);
    free(h.hits);
}

static void s_long_queries(const mz_directory *dir, const struct long_rec *model)
{
    for (int type = -1; type < 2; type++) {
        for (unsigned caps = 0; caps < (1u << L_CAPS); caps++) {
            /* every set of up to three capabilities */
            if (__builtin_popcount(caps) > 3)
                continue;
            s_long_query(dir, model, type, caps, -1, 0);
            if (caps % 7 == 0)
                s_long_query(dir, model, type, caps, (int)caps % M_NODES, 0);
            if (caps % 5 == 0)
                s_long_query(dir, model, type, caps, -1, 100);
        }
    }
}

static void test_long_lists_against_model(void **state)
{
    mz_directory *dir = s_dir();
    struct long_rec *model = calloc(L_IDS, sizeof *model);
    /* How often each capability is held: c0 and c1 by most records, c5 by
     * about one in a thousand. */
    static const int per_mille[L_CAPS] = { 600, 500, 100, 100, 20, 1 };

    (void)state;
    assert_non_null(model);
    for (int i = 0; i < L_IDS; i++) {
        struct long_rec *m = &model[i];
        static const char *const cap_names[L_CAPS] = { "c0", "c1", "c2", "c3", "c4", "c5" };
        const char *cp[L_CAPS + 1];
        char rid[16];
        size_t n = 0;

        m->present = true;
        m->type = s_randn(100) == 0;
        m->node = s_randn(M_NODES);
        for (int c = 0; c < L_CAPS; c++) {
            if (s_randn(1000) < per_mille[c]) {
                m->caps |= 1u << c;
                cp[n++] = cap_names[c];
            }
        }
        cp[n] = NULL;
        snprintf(rid, sizeof rid, "b%d", i);
        s_put(dir, s_rec(rid, m->type ? "rare" : "common", "o", cp, s_nodes[m->node], 1),
              s_randn(2), MZ_DIR_ADDED);
    }
    s_check_index(dir);
    s_long_queries(dir, model);
    /* Churn: a third go, so lists shrink and entries move. */
    for (int i = 0; i < L_IDS; i += 3) {
        char rid[16];

        snprintf(rid, sizeof rid, "b%d", i);
        assert_int_equal(mz_directory_remove(dir, rid, NULL, NULL), MZ_OK);
        model[i].present = false;
    }
    s_check_index(dir);
    s_long_queries(dir, model);
    mz_directory_free(dir);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_accepts_good),
        cmocka_unit_test(test_validate_rejects_each_field),
        cmocka_unit_test(test_validate_messages),
        cmocka_unit_test(test_put_get_update),
        cmocka_unit_test(test_to_json_roundtrip),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_query_json),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_remove_node),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_long_lists_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
