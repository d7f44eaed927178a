/* Unit tests for the config file parser of `meshzero node` (src/cli/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static mz_status s_parse(const char *text, mz_cfg **out, mz_err *err)
{
    return mz_cfg_parse(text, strlen(text), "f.json", mz_cfg_node_keys, mz_cfg_node_n_keys, out,
                        err);
}

/* Parses text, which must fail with code; its message must contain each of
 * the NULL-terminated fragments. */
static void s_fails(const char *text, mz_status code, ...)
{
    mz_cfg *c = (mz_cfg *)1;
    mz_err err = { 0 };
    va_list ap;
    const char *frag;

    assert_int_equal(s_parse(text, &c, &err), code);
    assert_null(c);
    assert_int_equal(err.code, code);
    va_start(ap, code);
    while ((frag = va_arg(ap, const char *)) != NULL) {
        if (strstr(err.msg, frag) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", text, err.msg, frag);
    }
    va_end(ap);
}

static void test_every_kind(void **state)
{
    static const char *const want[][2] = {
        { "--listen=ws://127.0.0.1:7000", "listen" },
        { "--min-links=2", "min-links" },
        { "--peer=ws://a:1", "peer[0]" },
        { "--peer=ws://b:2", "peer[1]" },
        { "--no-seal", "no-seal" },
        { "--mcp=x=http://h:1/mcp", "mcp" },
        { "--max-message=1048576", "max-message" },
        { "--api=", "api" },
    };
    mz_cfg *c = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_int_equal(s_parse("{\"listen\": \"ws://127.0.0.1:7000\", \"min-links\": 2,\n"
                             " \"peer\": [\"ws://a:1\", \"ws://b:2\"], \"no-seal\": true,\n"
                             " \"json\": false, \"mcp\": \"x=http://h:1/mcp\", \"mcp-tag\": [],\n"
                             " \"max-message\": 1048576, \"api\": \"\"}",
                             &c, &err), MZ_OK);
    assert_int_equal(mz_cfg_argc(c), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < mz_cfg_argc(c); i++) {
        assert_string_equal(mz_cfg_arg(c, i), want[i][0]);
        assert_string_equal(mz_cfg_origin(c, i), want[i][1]);
    }
    assert_null(mz_cfg_arg(c, mz_cfg_argc(c)));
    mz_cfg_free(c);
    mz_cfg_free(NULL);

    assert_int_equal(s_parse("{}", &c, &err), MZ_OK);
    assert_int_equal(mz_cfg_argc(c), 0);
    mz_cfg_free(c);
}

static void test_errors_name_file_and_key(void **state)
{
    (void)state;
    s_fails("{\"listen\": \"x\", \"bogus\": 1}", MZ_EINVAL, "f.json", "\"bogus\"", "unknown",
            NULL);
    s_fails("{\"config\": \"other.json\"}", MZ_EINVAL, "\"config\"", "another", NULL);
    s_fails("{\"listen\": 7000}", MZ_EINVAL, "\"listen\"", "expected a string",
            "an integer", NULL);
    s_fails("{\"min-links\": \"2\"}", MZ_EINVAL, "\"min-links\"", "non-negative integer",
            NULL);
    s_fails("{\"min-links\": 2.5}", MZ_EINVAL, "\"min-links\"", NULL);
    s_fails("{\"min-links\": -1}", MZ_EINVAL, "\"min-links\"", "out of range", NULL);
    s_fails("{\"max-hops\": 256}", MZ_EINVAL, "\"max-hops\"", "out of range", "255", NULL);
    s_fails("{\"no-seal\": 1}", MZ_EINVAL, "\"no-seal\"", "true or false", NULL);
    s_fails("{\"peer\": [\"ws://a:1\", null]}", MZ_EINVAL, "\"peer[1]\"", "null", NULL);
    s_fails("{\"peer\": {\"a\": 1}}", MZ_EINVAL, "\"peer\"", "an object", NULL);
    s_fails("{\"mcp-tag\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\","
            "\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}", MZ_EINVAL, "\"mcp-tag\"", "at most 16",
            NULL);
    s_fails("{\"listen\": \"x\",\n \"peer\": ", MZ_EINVAL, "f.json", "not valid JSON",
            "line 2", NULL);
    s_fails("{\"listen\": \"a\", \"listen\": \"b\"}", MZ_EINVAL, "duplicate", NULL);
    s_fails("[\"--listen\"]", MZ_EINVAL, "expected a JSON object", NULL);
    s_fails("", MZ_EINVAL, "not valid JSON", NULL);
    s_fails("{\"listen\": \"a\\u0000b\"}", MZ_EINVAL, "f.json", NULL);
}

static void test_size_limit(void **state)
{
    size_t n = MZ_CONFIG_MAX_BYTES + 1;
    char *buf = malloc(n);
    mz_cfg *c = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_non_null(buf);
    memset(buf, ' ', n);
    buf[0] = '{';
    buf[n - 1] = '}';
    assert_int_equal(mz_cfg_parse(buf, n, "big.json", mz_cfg_node_keys, mz_cfg_node_n_keys, &c,
                                  &err), MZ_ELIMIT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "big.json"));
    /* One byte less is read. */
    buf[n - 2] = '}';
    assert_int_equal(mz_cfg_parse(buf, n - 1, "big.json", mz_cfg_node_keys,
                                  mz_cfg_node_n_keys, &c, &err), MZ_OK);
    mz_cfg_free(c);
    free(buf);
}

static void test_load(void **state)
{
    char path[] = "/tmp/mz-test-config-XXXXXX";
    int fd = mkstemp(path);
    static const char text[] = "{\"peer\": \"ws://a:1\"}";
    mz_cfg *c = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    assert_int_equal(mz_cfg_load(path, mz_cfg_node_keys, mz_cfg_node_n_keys, &c, &err), MZ_OK);
    assert_int_equal(mz_cfg_argc(c), 1);
    assert_string_equal(mz_cfg_arg(c, 0), "--peer=ws://a:1");
    mz_cfg_free(c);
    unlink(path);
    assert_int_equal(mz_cfg_load(path, mz_cfg_node_keys, mz_cfg_node_n_keys, &c, &err), MZ_EIO);
    assert_null(c);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(mz_cfg_load("/", mz_cfg_node_keys, mz_cfg_node_n_keys, &c, &err), MZ_EIO);
}

/* An object key ("mcp-views") becomes one argument holding its JSON. */
static void test_object_kind(void **state)
{
    mz_cfg *c = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_int_equal(s_parse("{\"mcp-views\": {\"a\": {\"tag\": \"x\"}}}", &c, &err), MZ_OK);
    assert_int_equal(mz_cfg_argc(c), 1);
    assert_string_equal(mz_cfg_arg(c, 0), "--mcp-views={\"a\":{\"tag\":\"x\"}}");
    mz_cfg_free(c);
    s_fails("{\"mcp-views\": [1]}", MZ_EINVAL, "f.json", "mcp-views", "expected an object",
            NULL);
}

/* Names and getopt codes are unique; --config and --help are not keys. */
static void test_key_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < mz_cfg_node_n_keys; i++) {
        assert_string_not_equal(mz_cfg_node_keys[i].name, "config");
        assert_string_not_equal(mz_cfg_node_keys[i].name, "help");
        for (size_t j = i + 1; j < mz_cfg_node_n_keys; j++) {
            assert_string_not_equal(mz_cfg_node_keys[i].name, mz_cfg_node_keys[j].name);
            assert_int_not_equal(mz_cfg_node_keys[i].code, mz_cfg_node_keys[j].code);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_errors_name_file_and_key),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_object_kind),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
