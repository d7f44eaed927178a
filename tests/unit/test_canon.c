/* Canonical JSON: the bytes every signature covers, so each rule is pinned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "meshzero/msg.h"

/* Canonical form of v (skip may be NULL) must equal want exactly. */
static void expect_canon(const json_t *v, const char *const *skip, const char *want)
{
    size_t len = 0;
    char *got;

    assert_non_null(v);
    got = mz_canon_dump(v, skip, &len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

/* Parses text, then checks its canonical form. */
static void expect_text(const char *text, const char *want)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);

    assert_non_null(v);
    expect_canon(v, NULL, want);
    json_decref(v);
}

static void test_fixed_vector(void **state)
{
    (void)state;
    expect_text("{\"b\":[1,2.5,\"x\\n\"],\"a\":{\"z\":null,\"y\":true}}",
                "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2.5,\"x\\n\"]}");
}

static void test_key_order(void **state)
{
    (void)state;
    /* Byte order: uppercase before lowercase, shorter prefix first. */
    expect_text("{\"b\":1,\"a\":2,\"B\":3,\"aa\":4,\"\":5}",
                "{\"\":5,\"B\":3,\"a\":2,\"aa\":4,\"b\":1}");
    /* Nested objects are sorted too, arrays keep their order. */
    expect_text("{\"z\":{\"d\":[3,{\"y\":1,\"x\":2}],\"c\":0},\"y\":[]}",
                "{\"y\":[],\"z\":{\"c\":0,\"d\":[3,{\"x\":2,\"y\":1}]}}");
    /* Non-ASCII keys sort by UTF-8 bytes: z(7a) < a-umlaut(c3 a4) <
     * e-acute(c3 a9) < CJK(e4 b8 ad) < emoji(f0 9f 98 80); and stay raw. */
    expect_text("{\"\xf0\x9f\x98\x80\":1,\"\xe4\xb8\xad\":2,\"\xc3\xa9\":3,"
                "\"\xc3\xa4\":4,\"z\":5}",
                "{\"z\":5,\"\xc3\xa4\":4,\"\xc3\xa9\":3,\"\xe4\xb8\xad\":2,"
                "\"\xf0\x9f\x98\x80\":1}");
    /* \u escapes in the input come out as raw UTF-8. */
    expect_text("[\"\\u00e9\\ud83d\\ude00\"]", "[\"\xc3\xa9\xf0\x9f\x98\x80\"]");
    /* No whitespace anywhere, empty containers. */
    expect_text(" { \"a\" : [ ] , \"b\" : { } } ", "{\"a\":[],\"b\":{}}");
}

static void test_escapes(void **state)
{
    char raw[32];
    json_t *v;

    (void)state;
    for (int i = 0; i < 32; i++)
        raw[i] = (char)i;
    v = json_stringn(raw, sizeof raw);
    expect_canon(v,  NULL,
                 "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007"
                 "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f"
                 "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
                 "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"");
    json_decref(v);
    /* Only quote and backslash besides controls; '/' and DEL stay raw. */
    v = json_string("a\"b\\c/d\x7f" "e");
    expect_canon(v, NULL, "\"a\\\"b\\\\c/d\x7f" "e\"");
    json_decref(v);
    /* Keys are escaped the same way. */
    expect_text("{\"k\\t\\\"\":\"v\\u001F\"}", "{\"k\\t\\\"\":\"v\\u001f\"}");
}

static void test_reals(void **state)
{
    static const struct {
        double      d;
        const char *want;
    } cases[] = {
        { 0.1,           "0.1" },
        { 1.0,           "1.0" },
        { 2.5,           "2.5" },
        { 100.0,         "1e+02" },
        { 120.5,         "120.5" },
        { 1e300,         "1e+300" },
        { -0.0,          "-0.0" },
        { 0.0,           "0.0" },
        { 5e-324,        "5e-324" },
        { 123456789.125, "123456789.125" },
        { 1.0 / 3.0,     "0.3333333333333333" },
        { -1.5e-7,       "-1.5e-07" },
        { 1e21,          "1e+21" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = json_real(cases[i].d);
        expect_canon(v, NULL, cases[i].want);
        json_decref(v);
    }
    /* Reals inside structures, integers beside them stay integers. */
    expect_text("[1,1.0,1e2,-0]", "[1,1.0,1e+02,0]");
}

static void test_integers(void **state)
{
    json_t *v;

    (void)state;
    v = json_pack("[I,I,I,I]", (json_int_t)0, (json_int_t)-42, (json_int_t)INT64_MAX,
                  (json_int_t)INT64_MIN);
    expect_canon(v, NULL, "[0,-42,9223372036854775807,-9223372036854775808]");
    json_decref(v);
    expect_text("[true,false,null]", "[true,false,null]");
}

static void test_skip_top_level_only(void **state)
{
    static const char *const skip[] = { "sig", "hops", NULL };
    json_t *v;

    (void)state;
    v = json_loads("{\"sig\":1,\"hops\":2,\"a\":{\"sig\":3,\"hops\":[{\"sig\":4}]},\"sigx\":5}",
                   0, NULL);
    expect_canon(v, skip, "{\"a\":{\"hops\":[{\"sig\":4}],\"sig\":3},\"sigx\":5}");
    /* NULL skip keeps everything; len may be NULL. */
    expect_canon(v, NULL,
                 "{\"a\":{\"hops\":[{\"sig\":4}],\"sig\":3},\"hops\":2,\"sig\":1,\"sigx\":5}");
    {
        char *s = mz_canon_dump(v, skip, NULL);
        assert_non_null(s);
        free(s);
    }
    json_decref(v);
    /* A skip list on a non-object top level is ignored. */
    v = json_loads("[{\"sig\":1}]", 0, NULL);
    expect_canon(v, skip, "[{\"sig\":1}]");
    json_decref(v);
}

static void test_too_deep(void **state)
{
    json_t *root, *cur;

    (void)state;
    /* Built in code, past the parser's own bound: refused, not a crash. */
    root = cur = json_array();
    assert_non_null(root);
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_array();
        assert_non_null(next);
        assert_int_equal(json_array_append_new(cur, next), 0);
        cur = next;
    }
    assert_null(mz_canon_dump(root, NULL, NULL));
    json_decref(root);
    assert_null(mz_canon_dump(NULL, NULL, NULL));
}

static void test_large(void **state)
{
    json_t *v = json_array();
    char *s;
    size_t len = 0;

    (void)state;
    /* Enough output to make the buffer grow many times. */
    for (int i = 0; i < 20000; i++)
        assert_int_equal(json_array_append_new(v, json_string("0123456789")), 0);
    s = mz_canon_dump(v, NULL, &len);
    assert_non_null(s);
    assert_int_equal(len, 2 + 20000 * 12 + 20000 - 1);
    assert_int_equal(strlen(s), len);
    free(s);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_vector),
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_reals),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_skip_top_level_only),
        cmocka_unit_test(test_too_deep),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
