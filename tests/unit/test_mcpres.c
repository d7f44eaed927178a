/* Unit tests of the export server's resources and prompts (mcpsrv_res.c)
 * against a fake backend holding two mcp-server records: the fan-out and
 * its paging cursor, routing by exported URI and prompt name, the view
 * filter, cancellation and orphaned requests, subscription events. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bridge/bridge_int.h"

#define MAXPEND 8

typedef struct fake {
    json_t *records;
    json_t *sent;               /* messages sent to the client */
    struct {
        mz_mcpsrv_req *req;
        char rid[64], method[64];
        json_t *params;
    } pend[MAXPEND];
    size_t n_pend;
} fake;

/* Records having every capability asked for. */
static void f_query(void *ctx, const json_t *params, mz_mcpsrv_req *req)
{
    fake *f = ctx;
    json_t *out = json_array(), *rec, *want, *c;
    size_t i, j, k;

    json_array_foreach(f->records, i, rec) {
        bool ok = true;
        json_array_foreach(json_object_get(params, "capabilities"), j, want) {
            bool has = false;
            json_array_foreach(json_object_get(rec, "capabilities"), k, c)
                has = has || json_equal(c, want);
            ok = ok && has;
        }
        if (ok)
            json_array_append(out, rec);
    }
    mz_mcpsrv_query_done(req, out, NULL);
    json_decref(out);
}

static void f_execute(void *ctx, const char *rid, const char *method, const json_t *params,
                      int64_t timeout_ms, mz_mcpsrv_req *req)
{
    fake *f = ctx;

    assert_true(timeout_ms > 0 && f->n_pend < MAXPEND);
    f->pend[f->n_pend].req = req;
    snprintf(f->pend[f->n_pend].rid, 64, "%s", rid);
    snprintf(f->pend[f->n_pend].method, 64, "%s", method);
    f->pend[f->n_pend].params = json_deep_copy(params);
    f->n_pend++;
}

static void f_send(void *ctx, uint64_t conn, json_t *msg)
{
    fake *f = ctx;

    (void)conn;
    json_array_append_new(f->sent, msg);
}

/* Completes pending call i (takes result, NULL: fails with code). */
static void f_answer(fake *f, size_t i, json_t *result, const char *code)
{
    mz_mcpsrv_exec_done(f->pend[i].req, result, code, code ? "it failed" : NULL);
    json_decref(result);
    json_decref(f->pend[i].params);
    f->pend[i].req = NULL;
}

static mz_mcpsrv *s_srv(fake *f, const char *cap)
{
    mz_mcpsrv_opts o;
    mz_mcpsrv *s;

    memset(&o, 0, sizeof o);
    memset(f, 0, sizeof *f);
    o.ext = mz_mcpsrv_resources();
    o.ops.query = f_query;
    o.ops.execute = f_execute;
    o.ops.send = f_send;
    o.ctx = f;
    o.capabilities = &cap;
    o.n_capabilities = cap ? 1 : 0;
    f->sent = json_array();
    /* a tool record with the capability (a view's backend may answer with
     * tools) is not a server record */
    f->records = json_pack("[{s:s,s:s,s:[s,s,s,s]},{s:s,s:s,s:[s,s]},{s:s,s:s,s:[s]},"
                           "{s:s,s:s,s:[s]}]",
                           "resource_id", "s1", "resource_type", "mcp-server", "capabilities",
                           "mcp", "mcp-resources", "mcp-prompts", "mcp-subscribe",
                           "resource_id", "s2", "resource_type", "mcp-server", "capabilities",
                           "mcp", "mcp-resources",
                           "resource_id", "bad/id", "resource_type", "mcp-server",
                           "capabilities", "mcp-resources",
                           "resource_id", "t1", "resource_type", "tool", "capabilities",
                           "mcp-resources");
    assert_int_equal(mz_mcpsrv_new(&o, &s, NULL), MZ_OK);
    return s;
}

static void s_fake_free(fake *f)
{
    for (size_t i = 0; i < f->n_pend; i++)
        if (f->pend[i].req != NULL)
            f_answer(f, i, NULL, MZ_EXEC_UNREACHABLE);
    json_decref(f->records);
    json_decref(f->sent);
}

static mz_mcp_outcome s_do(mz_mcpsrv *s, const char *text)
{
    return mz_mcpsrv_handle(s, 1, text, strlen(text));
}

static const json_t *s_last(const fake *f)
{
    return json_array_get(f->sent, json_array_size(f->sent) - 1);
}

/* The error code of the last message sent. */
static int s_last_code(const fake *f)
{
    return (int)json_integer_value(json_object_get(json_object_get(s_last(f), "error"),
                                                   "code"));
}

static void test_list_fans_out_and_pages(void **state)
{
    fake f;
    mz_mcpsrv *s = s_srv(&f, NULL);
    const json_t *res, *list;
    char req[300];

    (void)state;
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}"),
                     MZ_MCP_PENDING);
    /* bad/id is left out (its '/' would make names ambiguous), and t1 */
    assert_int_equal(f.n_pend, 2);
    assert_string_equal(f.pend[0].method, "resources/list");
    for (size_t i = 0; i < 2; i++)
        f_answer(&f, i, json_pack("{s:[{s:s,s:s}],s:s?}", "resources", "uri", "a://x", "name",
                                  "x", "nextCursor", strcmp(f.pend[i].rid, "s1") == 0
                                                         ? "p2" : NULL), NULL);
    res = json_object_get(s_last(&f), "result");
    list = json_object_get(res, "resources");
    assert_int_equal(json_array_size(list), 2);
    assert_true(strncmp(json_string_value(json_object_get(json_array_get(list, 0), "uri")),
                        "meshzero://s", 12) == 0);
    assert_string_equal(json_string_value(json_object_get(res, "nextCursor")), "[[\"s1\",\"p2\"]]");
    /* the next page goes to s1 alone, with its own cursor */
    snprintf(req, sizeof req, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/list\","
             "\"params\":{\"cursor\":\"[[\\\"s1\\\",\\\"p2\\\"]]\"}}");
    assert_int_equal(s_do(s, req), MZ_MCP_PENDING);
    assert_int_equal(f.n_pend, 3);
    assert_string_equal(f.pend[2].rid, "s1");
    assert_string_equal(json_string_value(json_object_get(f.pend[2].params, "cursor")), "p2");
    f_answer(&f, 2, json_pack("{s:[]}", "resources"), NULL);
    res = json_object_get(s_last(&f), "result");
    assert_null(json_object_get(res, "nextCursor"));
    /* a cursor that is not ours */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/list\","
                             "\"params\":{\"cursor\":\"zzz\"}}"), MZ_MCP_REPLIED);
    assert_int_equal(s_last_code(&f), -32602);
    mz_mcpsrv_free(s);
    s_fake_free(&f);
}

static void test_routing_filter_and_failures(void **state)
{
    fake f;
    mz_mcpsrv *s = s_srv(&f, NULL);
    const json_t *m;

    (void)state;
    /* prompts/get routed by name, result's embedded URIs exported */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\","
                             "\"params\":{\"name\":\"s1/p/q\",\"arguments\":{\"a\":\"b\"}}}"),
                     MZ_MCP_PENDING);
    assert_string_equal(f.pend[0].rid, "s1");
    assert_string_equal(json_string_value(json_object_get(f.pend[0].params, "name")), "p/q");
    f_answer(&f, 0, json_pack("{s:[{s:s,s:{s:s,s:{s:s,s:s}}}]}", "messages", "role", "user",
                              "content", "type", "resource", "resource", "uri", "z://1",
                              "text", "t"), NULL);
    m = json_object_get(s_last(&f), "result");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
        json_array_get(json_object_get(m, "messages"), 0), "content"), "resource"), "uri")),
        "meshzero://s1/z://1");
    /* s2 offers no prompts: refused before any call */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\","
                             "\"params\":{\"name\":\"s2/p\"}}"), MZ_MCP_REPLIED);
    assert_int_equal(s_last_code(&f), -32602);
    assert_int_equal(f.n_pend, 1);
    /* a mesh failure of a read: -32000 with the code */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\","
                             "\"params\":{\"uri\":\"meshzero://s2/a://x\"}}"), MZ_MCP_PENDING);
    f_answer(&f, 1, NULL, MZ_EXEC_TIMEOUT);
    m = json_object_get(s_last(&f), "error");
    assert_int_equal(json_integer_value(json_object_get(m, "code")), -32000);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "data"), "code")),
                        "timeout");
    /* completion with a bad ref */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"completion/complete\","
                             "\"params\":{\"ref\":{\"type\":\"ref/x\"}}}"), MZ_MCP_REPLIED);
    assert_int_equal(s_last_code(&f), -32602);
    mz_mcpsrv_free(s);
    s_fake_free(&f);

    /* a view (--cap mcp-prompts) holds s1 only: a read of s2 is unknown */
    s = s_srv(&f, "mcp-prompts");
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\","
                             "\"params\":{\"uri\":\"meshzero://s2/a://x\"}}"), MZ_MCP_REPLIED);
    assert_int_equal(s_last_code(&f), -32002);
    mz_mcpsrv_free(s);
    s_fake_free(&f);
}

static void test_cancel_orphans_and_subscriptions(void **state)
{
    fake f;
    mz_mcpsrv *s = s_srv(&f, NULL);
    json_t *ev, *notes;
    size_t before;

    (void)state;
    /* cancelled: the late answer goes nowhere */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
                             "\"params\":{\"uri\":\"meshzero://s1/a://x\"}}"), MZ_MCP_PENDING);
    s_do(s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
            "\"params\":{\"requestId\":1}}");
    before = json_array_size(f.sent);
    f_answer(&f, 0, json_pack("{s:[]}", "contents"), NULL);
    assert_int_equal(json_array_size(f.sent), before);
    /* subscribed: its update becomes a notification with the exported URI */
    ev = json_pack("{s:s,s:s}", "resource_id", "s1", "uri", "a://x");
    assert_null(mz_mcpsrv_event(s, MZ_MCP_TOPIC_UPDATED, ev));
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/subscribe\","
                             "\"params\":{\"uri\":\"meshzero://s1/a://x\"}}"), MZ_MCP_PENDING);
    f_answer(&f, 1, json_object(), NULL);
    notes = mz_mcpsrv_event(s, MZ_MCP_TOPIC_UPDATED, ev);
    assert_int_equal(json_array_size(notes), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(
        json_array_get(notes, 0), "params"), "uri")), "meshzero://s1/a://x");
    json_decref(notes);
    json_decref(ev);
    /* orphaned: the server goes while a list waits on two calls */
    assert_int_equal(s_do(s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/list\"}"),
                     MZ_MCP_PENDING);
    assert_int_equal(f.n_pend, 4);
    mz_mcpsrv_free(s);
    before = json_array_size(f.sent);
    f_answer(&f, 2, json_pack("{s:[]}", "resources"), NULL);
    f_answer(&f, 3, NULL, MZ_EXEC_UNREACHABLE);
    assert_int_equal(json_array_size(f.sent), before);
    s_fake_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_fans_out_and_pages),
        cmocka_unit_test(test_routing_filter_and_failures),
        cmocka_unit_test(test_cancel_orphans_and_subscriptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
