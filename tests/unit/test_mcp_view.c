/* Unit tests for MCP views (src/svc/mcp_view.c): definitions, the filter,
 * the unknown-view message, pins files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "svc/mcp_view.h"

static mz_mcpview *s_view(const char *def)
{
    json_t *d = json_loads(def, 0, NULL);
    mz_mcpview *v = NULL;
    mz_err err;

    assert_non_null(d);
    if (mz_mcpview_parse("v", d, &v, &err) != MZ_OK)
        fail_msg("'%s': %s", def, err.msg);
    json_decref(d);
    return v;
}

static bool s_matches(const mz_mcpview *v, const char *rec)
{
    json_t *r = json_loads(rec, 0, NULL);
    bool m;

    assert_non_null(r);
    m = mz_mcpview_match(v, r);
    json_decref(r);
    return m;
}

static void test_filters(void **state)
{
    static const char tool[] = "{\"resource_type\":\"tool\",\"owner\":\"alice\",\"node\":\"n1\","
                               "\"capabilities\":[\"echo\",\"mcp\",\"mcp:ev\",\"demo\"]}";
    static const char svc[] = "{\"resource_type\":\"service\",\"owner\":\"bob\",\"node\":\"n2\","
                              "\"capabilities\":[]}";
    static const struct { const char *def; bool tool, svc; } cases[] = {
        { "{}", true, false },                              /* type tool by default */
        { "{\"type\":\"*\"}", true, true },
        { "{\"type\":\"service\"}", false, true },
        { "{\"capability\":[\"mcp\",\"mcp:ev\"]}", true, false },
        { "{\"capability\":[\"mcp\",\"mcp:other\"]}", false, false },   /* all of them */
        { "{\"tag\":[\"nope\",\"demo\"]}", true, false },               /* any of them */
        { "{\"tag\":\"nope\"}", false, false },
        { "{\"type\":\"*\",\"owner\":\"bob\"}", false, true },
        { "{\"type\":\"*\",\"node\":\"n1\"}", true, false },
        { "{\"pin\":true}", true, false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mz_mcpview *v = s_view(cases[i].def);
        if (s_matches(v, tool) != cases[i].tool || s_matches(v, svc) != cases[i].svc)
            fail_msg("view %s: tool %d, service %d expected", cases[i].def, cases[i].tool,
                     cases[i].svc);
        mz_mcpview_free(v);
    }
}

static void test_bad_definitions(void **state)
{
    static const struct { const char *views, *frag; } cases[] = {
        { "[]", "expected an object" },
        { "{\"a\": 1}", "view \"a\" must be an object" },
        { "{\"a b\": {}}", "view name \"a b\"" },
        { "{\"a\": {\"typo\": 1}}", "unknown key \"typo\"" },
        { "{\"a\": {\"type\": 1}}", "\"type\" must be a string" },
        { "{\"a\": {\"tag\": [1]}}", "tag[0] is not a string" },
        { "{\"a\": {\"pin\": \"yes\"}}", "\"pin\" must be true or false" },
        { "{\"a\": {\"pins\": \"/nonexistent/pins.json\"}}", "pins file /nonexistent" },
    };
    mz_mcpviews *vs;
    mz_err err;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vs = (mz_mcpviews *)1;
        assert_int_equal(mz_mcpviews_new(cases[i].views, NULL, &vs, &err), MZ_EINVAL);
        assert_null(vs);
        if (strstr(err.msg, cases[i].frag) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].views, err.msg, cases[i].frag);
    }
}

static void test_unknown_names_the_views(void **state)
{
    mz_mcpviews *vs;
    mz_err err;
    char buf[256];

    (void)state;
    assert_int_equal(mz_mcpviews_new("{\"b\": {}, \"a\": {\"pin\": true}}", NULL, &vs, &err),
                     MZ_OK);
    assert_int_equal(mz_mcpviews_count(vs), 2);
    assert_non_null(mz_mcpviews_find(vs, "a"));
    assert_true(mz_mcpview_pins(mz_mcpviews_find(vs, "a")));
    assert_false(mz_mcpview_pins(mz_mcpviews_find(vs, "b")));
    assert_null(mz_mcpviews_find(vs, "c"));
    mz_mcpviews_unknown(vs, "c", buf, sizeof buf);
    assert_string_equal(buf, "unknown MCP view 'c' (known views: b, a)");
    mz_mcpviews_free(vs);
    assert_int_equal(mz_mcpviews_new(NULL, NULL, &vs, &err), MZ_OK);
    mz_mcpviews_unknown(vs, "c", buf, sizeof buf);
    assert_string_equal(buf, "unknown MCP view 'c' (known views: none)");
    mz_mcpviews_free(vs);
}

static void test_pins_file(void **state)
{
    char path[] = "/tmp/mz-pins-XXXXXX", def[200];
    int fd = mkstemp(path);
    mz_mcpviews *vs;
    mz_err err;
    FILE *f;

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("{\"x/y\": \"not a hash\"}", f);
    fclose(f);
    snprintf(def, sizeof def, "{\"v\": {\"pins\": \"%s\"}}", path);
    assert_int_equal(mz_mcpviews_new(def, NULL, &vs, &err), MZ_EINVAL);
    assert_non_null(strstr(err.msg, "\"x/y\" is not a tool_hash"));
    f = fopen(path, "w");
    fprintf(f, "{\"x/y\": \"%064d\"}", 0);
    fclose(f);
    assert_int_equal(mz_mcpviews_new(def, NULL, &vs, &err), MZ_OK);
    assert_true(mz_mcpview_pins(mz_mcpviews_find(vs, "v")));     /* pins implies pin */
    mz_mcpviews_free(vs);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_bad_definitions),
        cmocka_unit_test(test_unknown_names_the_views),
        cmocka_unit_test(test_pins_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
