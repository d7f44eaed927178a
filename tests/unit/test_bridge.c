/* Unit tests of the MCP bridge's in-process parts: the tool-name mapping,
 * version negotiation, the export server (mz_mcpsrv) against a fake
 * backend, NAME=CMD parsing and the Origin check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bridge/bridge_int.h"

/* ---- helpers -------------------------------------------------------------- */

static json_t *s_rec(const char *id, const char *type, json_t *meta)
{
    return json_pack("{s:s,s:s,s:[],s:o,s:s}", "resource_id", id, "resource_type", type,
                     "capabilities", "metadata", meta ? meta : json_object(), "node",
                     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

static bool s_valid_name(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > 64)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return false;
    return true;
}

static const char *s_name_of(const json_t *map, const char *rid)
{
    size_t i;
    json_t *e;

    json_array_foreach(map, i, e)
        if (strcmp(json_string_value(json_object_get(e, "resource_id")), rid) == 0)
            return json_string_value(json_object_get(e, "name"));
    return NULL;
}

/* ---- mapping -------------------------------------------------------------- */

static void test_map_plain_and_sanitised(void **state)
{
    json_t *recs = json_pack("[o,o,o]", s_rec("plain-name_1", "tool", NULL),
                             s_rec("everything/get-sum", "tool", NULL),
                             s_rec("a:b.c d", "tool", NULL));
    json_t *map = mz_mcp_map_tools(recs);

    (void)state;
    assert_non_null(map);
    assert_int_equal(json_array_size(map), 3);
    assert_string_equal(s_name_of(map, "plain-name_1"), "plain-name_1");
    assert_string_equal(s_name_of(map, "everything/get-sum"), "everything_get-sum");
    assert_string_equal(s_name_of(map, "a:b.c d"), "a_b_c_d");
    /* sorted by name */
    assert_true(strcmp(json_string_value(json_object_get(json_array_get(map, 0), "name")),
                       json_string_value(json_object_get(json_array_get(map, 1), "name"))) < 0);
    json_decref(map);
    json_decref(recs);
}

static void test_map_collisions_and_long_ids(void **state)
{
    char longid[129];
    json_t *recs, *map, *rev;
    size_t i;
    json_t *e;

    (void)state;
    memset(longid, 'y', 128);
    longid[128] = '\0';
    recs = json_pack("[o,o,o,o]", s_rec("svc/alpha", "tool", NULL),
                     s_rec("svc_alpha", "tool", NULL), s_rec("svc:alpha", "tool", NULL),
                     s_rec(longid, "tool", NULL));
    map = mz_mcp_map_tools(recs);
    assert_non_null(map);
    assert_int_equal(json_array_size(map), 4);
    json_array_foreach(map, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        assert_true(s_valid_name(n));
        for (size_t j = i + 1; j < json_array_size(map); j++)
            assert_string_not_equal(n, json_string_value(
                json_object_get(json_array_get(map, j), "name")));
    }
    /* the three "svc_alpha" all carry hashes; the long id is cut + hashed */
    assert_int_equal(strlen(s_name_of(map, "svc/alpha")), 9 + 1 + 8);
    assert_int_equal(strncmp(s_name_of(map, "svc_alpha"), "svc_alpha_", 10), 0);
    assert_int_equal(strlen(s_name_of(map, longid)), 64);
    /* order-independent: the reversed set maps the same */
    rev = json_pack("[O,O,O,O]", json_array_get(recs, 3), json_array_get(recs, 2),
                    json_array_get(recs, 1), json_array_get(recs, 0));
    {
        json_t *map2 = mz_mcp_map_tools(rev);
        assert_true(json_equal(map, map2));
        json_decref(map2);
    }
    json_decref(rev);
    json_decref(map);
    json_decref(recs);
}

static void test_map_skips_bad_records(void **state)
{
    json_t *recs = json_pack("[{s:i},o,{s:s}]", "resource_id", 5, s_rec("ok", "tool", NULL),
                             "resource_id", "");
    json_t *map = mz_mcp_map_tools(recs);

    (void)state;
    assert_int_equal(json_array_size(map), 1);
    json_decref(map);
    json_decref(recs);
    map = mz_mcp_map_tools(NULL);
    assert_int_equal(json_array_size(map), 0);
    json_decref(map);
}

static void test_negotiate(void **state)
{
    (void)state;
    assert_string_equal(mz_mcp_negotiate("2025-03-26"), "2025-03-26");
    assert_string_equal(mz_mcp_negotiate("2025-06-18"), "2025-06-18");
    assert_string_equal(mz_mcp_negotiate("2025-11-25"), "2025-11-25");
    assert_string_equal(mz_mcp_negotiate("2024-11-05"), MZ_MCP_LATEST);
    assert_string_equal(mz_mcp_negotiate(NULL), MZ_MCP_LATEST);
    assert_false(mz_mcp_version_supported("2099-01-01"));
}

/* ---- the export server with a fake backend --------------------------------- */

typedef struct fake {
    json_t *records;            /* what queries return */
    json_t *sent;               /* messages the server sent */
    mz_mcpsrv_req *pending;     /* an execute not yet completed */
    char rid[200], method[100];
    json_t *params;
    bool defer_query;
    mz_mcpsrv_req *pending_query;
    int queries;
} fake;

static void f_query(void *ctx, const json_t *params, mz_mcpsrv_req *req)
{
    fake *f = ctx;

    assert_string_equal(json_string_value(json_object_get(params, "resource_type")), "tool");
    f->queries++;
    if (f->defer_query) {
        f->pending_query = req;
        return;
    }
    mz_mcpsrv_query_done(req, f->records, NULL);
}

static void f_execute(void *ctx, const char *rid, const char *method, const json_t *params,
                      int64_t timeout_ms, mz_mcpsrv_req *req)
{
    fake *f = ctx;

    assert_true(timeout_ms > 0);
    snprintf(f->rid, sizeof f->rid, "%s", rid);
    snprintf(f->method, sizeof f->method, "%s", method);
    json_decref(f->params);
    f->params = json_deep_copy(params);
    f->pending = req;
}

static void f_send(void *ctx, uint64_t conn, json_t *msg)
{
    fake *f = ctx;

    assert_int_equal(conn, 7);
    json_array_append_new(f->sent, msg);
}

static mz_mcpsrv *s_srv_cached(fake *f, int64_t cache_ms)
{
    mz_mcpsrv_opts o;
    mz_mcpsrv *s;

    memset(&o, 0, sizeof o);
    o.cache_ms = cache_ms;
    o.ops.query = f_query;
    o.ops.execute = f_execute;
    o.ops.send = f_send;
    o.ctx = f;
    f->sent = json_array();
    f->records = json_pack("[o,o]",
                           s_rec("ev/echo", "tool",
                                 json_pack("{s:s,s:{s:s},s:s}", "description", "echo",
                                           "inputSchema", "type", "object", "tool_hash",
                                           "ab")),
                           s_rec("agent9", "tool", NULL));
    assert_int_equal(mz_mcpsrv_new(&o, &s, NULL), MZ_OK);
    return s;
}

static mz_mcpsrv *s_srv(fake *f)
{
    return s_srv_cached(f, 0);
}

static void s_fake_free(fake *f)
{
    json_decref(f->records);
    json_decref(f->sent);
    json_decref(f->params);
}

/* Handles text; returns the last message sent (borrowed) or NULL. */
static const json_t *s_do(mz_mcpsrv *s, fake *f, const char *text, mz_mcp_outcome want)
{
    size_t before = json_array_size(f->sent);

    assert_int_equal(mz_mcpsrv_handle(s, 7, text, strlen(text)), want);
    return json_array_size(f->sent) > before ? json_array_get(f->sent,
                                                              json_array_size(f->sent) - 1)
                                             : NULL;
}

static int s_err_code(const json_t *m)
{
    return (int)json_integer_value(json_object_get(json_object_get(m, "error"), "code"));
}

static void test_srv_initialize_ping_and_errors(void **state)
{
    fake f;
    mz_mcpsrv *s;
    const json_t *m;

    (void)state;
    memset(&f, 0, sizeof f);
    s = s_srv(&f);
    m = s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
             "{\"protocolVersion\":\"2025-06-18\"}}", MZ_MCP_REPLIED);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "result"),
                                                          "protocolVersion")), "2025-06-18");
    assert_true(json_is_true(json_object_get(json_object_get(json_object_get(
        json_object_get(m, "result"), "capabilities"), "tools"), "listChanged")));
    m = s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}", MZ_MCP_REPLIED);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "p");
    assert_int_equal(s_err_code(s_do(s, &f, "{oops", MZ_MCP_REPLIED)), -32700);
    assert_int_equal(s_err_code(s_do(s, &f, "[]", MZ_MCP_REPLIED)), -32600);
    assert_int_equal(s_err_code(s_do(s, &f, "\"x\"", MZ_MCP_REPLIED)), -32600);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x/y\"}",
                                     MZ_MCP_REPLIED)), -32601);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"id\":1,\"method\":\"ping\"}", MZ_MCP_REPLIED)),
                     -32600);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}",
                                     MZ_MCP_REPLIED)), -32600);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                                     "\"tools/call\",\"params\":{\"name\":1}}", MZ_MCP_REPLIED)),
                     -32602);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"a\":1,\"a\":2,"
                                     "\"method\":\"ping\"}", MZ_MCP_REPLIED)), -32700);
    assert_null(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
                     MZ_MCP_NO_REPLY));
    assert_null(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}", MZ_MCP_NO_REPLY));
    mz_mcpsrv_free(s);
    s_fake_free(&f);
}

static void test_srv_list_and_call(void **state)
{
    fake f;
    mz_mcpsrv *s;
    const json_t *m, *tools;

    (void)state;
    memset(&f, 0, sizeof f);
    s = s_srv(&f);
    m = s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", MZ_MCP_PENDING);
    tools = json_object_get(json_object_get(m, "result"), "tools");
    assert_int_equal(json_array_size(tools), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 1), "name")),
                        "ev_echo");
    assert_string_equal(json_string_value(json_object_get(json_object_get(
        json_array_get(tools, 1), "_meta"), "meshzero/tool_hash")), "ab");
    /* a non-MCP resource gets the generic {method, params} schema */
    assert_non_null(json_object_get(json_object_get(json_object_get(
        json_array_get(tools, 0), "inputSchema"), "properties"), "method"));
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
                                     "\"tools/list\",\"params\":{\"cursor\":\"zz\"}}",
                                     MZ_MCP_PENDING)), -32602);

    /* an MCP-style tool: method call, the arguments as params, result unchanged */
    assert_null(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\","
                     "\"params\":{\"name\":\"ev_echo\",\"arguments\":{\"message\":\"m\"}}}",
                     MZ_MCP_PENDING));
    assert_string_equal(f.rid, "ev/echo");
    assert_string_equal(f.method, "call");
    assert_string_equal(json_string_value(json_object_get(f.params, "message")), "m");
    {
        json_t *r = json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text", "bad",
                              "isError", 1);
        mz_mcpsrv_exec_done(f.pending, r, NULL, NULL);
        m = json_array_get(f.sent, json_array_size(f.sent) - 1);
        assert_true(json_equal(json_object_get(m, "result"), r));
        json_decref(r);
    }
    /* a mesh failure is a JSON-RPC error with the code in the message */
    s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\","
         "\"params\":{\"name\":\"ev_echo\"}}", MZ_MCP_PENDING);
    mz_mcpsrv_exec_done(f.pending, NULL, "unreachable", "no route");
    m = json_array_get(f.sent, json_array_size(f.sent) - 1);
    assert_int_equal(s_err_code(m), -32000);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"),
                                                          "message")), "unreachable: no route");
    /* a generic resource: method and params from the arguments, result wrapped */
    s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":"
         "{\"name\":\"agent9\",\"arguments\":{\"method\":\"run\",\"params\":{\"k\":1}}}}",
         MZ_MCP_PENDING);
    assert_string_equal(f.method, "run");
    {
        json_t *r = json_pack("{s:i}", "answer", 42);
        mz_mcpsrv_exec_done(f.pending, r, NULL, NULL);
        json_decref(r);
        m = json_array_get(f.sent, json_array_size(f.sent) - 1);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(
            m, "result"), "structuredContent"), "answer")), 42);
    }
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":"
                                     "\"tools/call\",\"params\":{\"name\":\"agent9\"}}",
                                     MZ_MCP_PENDING)), -32602);
    assert_int_equal(s_err_code(s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":"
                                     "\"tools/call\",\"params\":{\"name\":\"nope\"}}",
                                     MZ_MCP_PENDING)), -32602);
    mz_mcpsrv_free(s);
    s_fake_free(&f);
}

static void test_srv_cancel_and_orphans(void **state)
{
    fake f;
    mz_mcpsrv *s;
    size_t n;

    (void)state;
    memset(&f, 0, sizeof f);
    s = s_srv(&f);
    s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\","
         "\"params\":{\"name\":\"ev_echo\"}}", MZ_MCP_PENDING);
    n = json_array_size(f.sent);
    /* cancelled on stdio: no answer at all */
    s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
         "\"params\":{\"requestId\":9}}", MZ_MCP_NO_REPLY);
    {
        json_t *r = json_object();
        mz_mcpsrv_exec_done(f.pending, r, NULL, NULL);
        json_decref(r);
    }
    assert_int_equal(json_array_size(f.sent), n);
    /* a query outliving the server completes into nothing, without leaks */
    f.defer_query = true;
    s_do(s, &f, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/list\"}", MZ_MCP_PENDING);
    mz_mcpsrv_free(s);
    mz_mcpsrv_query_done(f.pending_query, f.records, NULL);
    assert_int_equal(json_array_size(f.sent), n);
    s_fake_free(&f);
}

static void test_srv_cache(void **state)
{
    static const char list[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}";
    fake f;
    mz_mcpsrv *s;

    (void)state;
    memset(&f, 0, sizeof f);
    s = s_srv_cached(&f, 60000);
    s_do(s, &f, list, MZ_MCP_PENDING);
    s_do(s, &f, list, MZ_MCP_PENDING);
    assert_int_equal(f.queries, 1);
    mz_mcpsrv_invalidate(s);
    s_do(s, &f, list, MZ_MCP_PENDING);
    assert_int_equal(f.queries, 2);
    /* an answer that raced an invalidation is used once, not kept */
    f.defer_query = true;
    mz_mcpsrv_invalidate(s);
    s_do(s, &f, list, MZ_MCP_PENDING);
    mz_mcpsrv_invalidate(s);
    mz_mcpsrv_query_done(f.pending_query, f.records, NULL);
    f.defer_query = false;
    s_do(s, &f, list, MZ_MCP_PENDING);
    assert_int_equal(f.queries, 4);
    assert_int_equal(json_array_size(f.sent), 5);
    mz_mcpsrv_free(s);
    s_fake_free(&f);
}

static void test_srv_record_matches(void **state)
{
    const char *caps[] = { "echo" };
    mz_mcpsrv_opts o;
    mz_mcpsrv *s;
    json_t *yes = json_pack("{s:s,s:[s,s]}", "resource_type", "tool", "capabilities", "mcp",
                            "echo");
    json_t *no = json_pack("{s:s,s:[s]}", "resource_type", "tool", "capabilities", "mcp");
    json_t *agent = json_pack("{s:s,s:[s]}", "resource_type", "agent", "capabilities", "echo");

    (void)state;
    memset(&o, 0, sizeof o);
    o.capabilities = caps;
    o.n_capabilities = 1;
    o.ops.query = f_query;
    o.ops.execute = f_execute;
    o.ops.send = f_send;
    assert_int_equal(mz_mcpsrv_new(&o, &s, NULL), MZ_OK);
    assert_true(mz_mcpsrv_record_matches(s, yes));
    assert_false(mz_mcpsrv_record_matches(s, no));
    assert_false(mz_mcpsrv_record_matches(s, agent));
    mz_mcpsrv_free(s);
    o.resource_type = "*";
    assert_int_equal(mz_mcpsrv_new(&o, &s, NULL), MZ_OK);
    assert_true(mz_mcpsrv_record_matches(s, agent));
    mz_mcpsrv_free(s);
    json_decref(yes);
    json_decref(no);
    json_decref(agent);
}

/* ---- NAME=CMD, origins --------------------------------------------------------- */

static void test_parse_arg(void **state)
{
    mz_bridge_spec spec;
    char *store;
    mz_err e;

    (void)state;
    assert_int_equal(mz_bridge_parse_arg("ev=node  'my dir/x.js' \"a b\" stdio", &spec, &store,
                                         &e), MZ_OK);
    assert_string_equal(spec.name, "ev");
    assert_null(spec.url);
    assert_string_equal(spec.argv[0], "node");
    assert_string_equal(spec.argv[1], "my dir/x.js");
    assert_string_equal(spec.argv[2], "a b");
    assert_string_equal(spec.argv[3], "stdio");
    assert_null(spec.argv[4]);
    free(store);
    assert_int_equal(mz_bridge_parse_arg("h=http://127.0.0.1:3001/mcp", &spec, &store, &e),
                     MZ_OK);
    assert_string_equal(spec.url, "http://127.0.0.1:3001/mcp");
    assert_null(spec.argv);
    free(store);
    assert_int_equal(mz_bridge_parse_arg("noequals", &spec, &store, &e), MZ_EINVAL);
    assert_int_equal(mz_bridge_parse_arg("=cmd", &spec, &store, &e), MZ_EINVAL);
    assert_int_equal(mz_bridge_parse_arg("x=", &spec, &store, &e), MZ_EINVAL);
    assert_int_equal(mz_bridge_parse_arg("x=   ", &spec, &store, &e), MZ_EINVAL);
    assert_int_equal(mz_bridge_parse_arg("x=a 'unclosed", &spec, &store, &e), MZ_EINVAL);
}

static void test_origin(void **state)
{
    (void)state;
    assert_true(mz__origin_local(NULL));
    assert_true(mz__origin_local(""));
    assert_true(mz__origin_local("http://localhost:3000"));
    assert_true(mz__origin_local("https://127.0.0.1"));
    assert_true(mz__origin_local("http://[::1]:8080"));
    assert_true(mz__origin_local("127.0.0.1:8766"));
    assert_false(mz__origin_local("null"));
    assert_false(mz__origin_local("http://evil.example"));
    assert_false(mz__origin_local("http://localhost.evil.example"));
    assert_false(mz__origin_local("http://127.0.0.1.nip.io"));
    assert_false(mz__origin_local("http://localhost:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_plain_and_sanitised),
        cmocka_unit_test(test_map_collisions_and_long_ids),
        cmocka_unit_test(test_map_skips_bad_records),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_srv_initialize_ping_and_errors),
        cmocka_unit_test(test_srv_list_and_call),
        cmocka_unit_test(test_srv_cancel_and_orphans),
        cmocka_unit_test(test_srv_cache),
        cmocka_unit_test(test_srv_record_matches),
        cmocka_unit_test(test_parse_arg),
        cmocka_unit_test(test_origin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
