/* Remote execution across the mesh: real nodes in one process on the
 * in-memory transport (support/mesh.h), through the public node API only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"
#include "util/log.h"

/* ---- a handler and a call's outcome ------------------------------------ */

typedef struct host {
    int runs;                   /* times the handler ran */
    mz_exec *held;              /* a call not answered yet (the "hold" method) */
    mz_node *cut_from, *cut_to; /* link cut when a call arrives (both set) */
} host;

/* echo: answers with the params and the caller; hold: keeps the call;
 * grow: answers params.n bytes. */
static void s_handler(mz_node *node, mz_exec *x, void *ctx)
{
    host *h = ctx;
    mz_err e;

    (void)node;
    h->runs++;
    if (h->cut_from != NULL)
        assert_int_equal(mz_node_disconnect_peer(h->cut_from, mz_node_id(h->cut_to), &e), MZ_OK);
    if (strcmp(mz_exec_method(x), "hold") == 0) {
        h->held = x;
        return;
    }
    if (strcmp(mz_exec_method(x), "grow") == 0) {     /* a result of params.n bytes */
        size_t n = (size_t)json_integer_value(json_object_get(mz_exec_params(x), "n"));
        char *blob = calloc(1, n + 1);
        assert_non_null(blob);
        memset(blob, 'y', n);
        mz_exec_reply(x, json_pack("{s:s}", "blob", blob));
        free(blob);
        return;
    }
    mz_exec_reply(x, json_pack("{s:O,s:s}", "params", mz_exec_params(x), "caller",
                               mz_exec_caller(x)));
}

static void s_host(mz_node *n, const char *id, host *h)
{
    static const char *const methods[] = { "echo", "hold", "grow", NULL };
    mz_err e;

    mt_register(n, id);
    assert_int_equal(mz_node_set_handler(n, id, methods, s_handler, h, &e), MZ_OK);
}

typedef struct outcome {
    bool done;
    json_t *result;
    char code[32];
    char message[256];
} outcome;

static void s_done(mz_node *node, const json_t *result, const char *code, const char *message,
                   void *ctx)
{
    outcome *o = ctx;

    (void)node;
    o->done = true;
    o->result = result ? json_deep_copy(result) : NULL;
    snprintf(o->code, sizeof o->code, "%s", code ? code : "");
    snprintf(o->message, sizeof o->message, "%s", message ? message : "");
}

static bool s_is_done(void *ctx)
{
    return ((outcome *)ctx)->done;
}

typedef struct seen {
    mz_node *n;
    const char *id;
} seen;

static bool s_has(void *ctx)
{
    seen *s = ctx;

    return mt_has(s->n, s->id);
}

/* A - B - C, each pair linked. */
static void s_chain(mt_mesh *m, mz_node **a, mz_node **b, mz_node **c)
{
    *a = mt_node(m, NULL);
    *b = mt_node(m, NULL);
    *c = mt_node(m, NULL);
    assert_true(mt_link(m, *a, *b));
    assert_true(mt_link(m, *b, *c));
}

/* A fresh mesh A - B - C where C hosts id (handler h) and A has seen it. */
static void s_chain_hosting(mt_mesh *m, mz_node **a, mz_node **b, mz_node **c, const char *id,
                            host *h)
{
    seen s;

    mt_init(m);
    s_chain(m, a, b, c);
    s_host(*c, id, h);
    s = (seen){ *a, id };
    assert_true(mt_run_until(m, s_has, &s, MT_DEADLINE_MS));
}

/* Calls method "echo" of id from `from` and runs the loop until the
 * outcome is in (never from inside the call itself). */
static void s_call(mt_mesh *m, mz_node *from, const char *id, const json_t *params,
                   int64_t timeout_ms, outcome *o)
{
    mz_err e;

    assert_int_equal(mz_node_execute_remote(from, id, "echo", params, timeout_ms, s_done, o, &e),
                     MZ_OK);
    assert_false(o->done);
    assert_true(mt_run_until(m, s_is_done, o, timeout_ms));
}

/* ---- tests ------------------------------------------------------------- */

/* A call from A to a resource on C goes through B and back with the
 * handler's result; the handler sees A as the caller. */
static void test_execute_over_a_relay(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    host h = { 0 };
    outcome o = { 0 };
    json_t *params = json_pack("{s:i}", "x", 42);

    (void)state;
    s_chain_hosting(&m, &a, &b, &c, "calc", &h);
    s_call(&m, a, "calc", params, MT_DEADLINE_MS, &o);
    assert_string_equal(o.code, "");
    assert_non_null(o.result);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o.result, "params"), "x")),
                     42);
    assert_string_equal(json_string_value(json_object_get(o.result, "caller")), mz_node_id(a));
    assert_int_equal(h.runs, 1);
    assert_true(mt_counter(b, "forwarded") >= 2);     /* the request and its answer */
    assert_int_equal(mt_counter(c, "exec_served"), 1);
    json_decref(o.result);
    json_decref(params);
    mt_free(&m);
}

/* A resource removed at its host while the caller's directory still lists
 * it: the host answers not_found and the handler never runs. */
static void test_execute_vanished_resource_is_not_found(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    host h = { 0 };
    outcome o = { 0 };
    mz_err e;

    (void)state;
    s_chain_hosting(&m, &a, &b, &c, "gone", &h);
    /* Same loop turn: the removal has not reached A yet, the call goes out. */
    assert_int_equal(mz_node_unregister_resource(c, "gone", &e), MZ_OK);
    assert_true(mt_has(a, "gone"));
    s_call(&m, a, "gone", NULL, MT_DEADLINE_MS, &o);
    assert_string_equal(o.code, MZ_EXEC_NOT_FOUND);
    assert_null(o.result);
    assert_int_equal(h.runs, 0);
    mt_free(&m);
}

/* Unknown everywhere: not_found without anything sent. */
static void test_execute_unknown_resource_is_not_found(void **state)
{
    mt_mesh m;
    mz_node *a, *b;
    outcome o = { 0 };

    (void)state;
    mt_init(&m);
    a = mt_node(&m, NULL);
    b = mt_node(&m, NULL);
    assert_true(mt_link(&m, a, b));
    s_call(&m, a, "nowhere", NULL, MT_DEADLINE_MS, &o);
    assert_string_equal(o.code, MZ_EXEC_NOT_FOUND);
    mt_free(&m);
}

/* The link A-B is cut while C runs the call: the answer is lost on the way,
 * A sends the call again once it has a link again (B re-dialed, or C
 * itself, dialed for A's low watermark), and C answers that from the
 * answer it kept: the handler ran once, the caller got its result. */
static void test_retry_after_cut_runs_the_call_once(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    host h = { 0 };
    outcome o = { 0 };

    (void)state;
    s_chain_hosting(&m, &a, &b, &c, "once", &h);
    h.cut_from = a;             /* A drops B (and re-dials it) when C starts the call */
    h.cut_to = b;
    s_call(&m, a, "once", NULL, 20000, &o);
    assert_string_equal(o.code, "");
    assert_non_null(o.result);
    assert_int_equal(h.runs, 1);
    assert_true(mt_counter(a, "exec_retries") + mt_counter(a, "exec_retransmits") >= 1);
    assert_true(mt_counter(c, "exec_repeats") >= 1);
    json_decref(o.result);
    mt_free(&m);
}


/* A params object of about n bytes as compact JSON: {"blob":"xxx..."}. */
static json_t *s_blob(size_t n)
{
    char *x = malloc(n + 1);
    json_t *p;

    assert_non_null(x);
    memset(x, 'x', n);
    x[n] = '\0';
    p = json_pack("{s:s}", "blob", x);
    free(x);
    return p;
}

/* max_payload 1000 at the caller: 2000 bytes of params fail too_large,
 * naming --max-payload and its value, before anything is sent. */
static void test_params_over_max_payload_refused_at_the_caller(void **state)
{
    mt_mesh m;
    mz_node *a, *b;
    mz_node_opts o = { 0 };
    host h = { 0 };
    outcome out = { 0 };
    json_t *params = s_blob(2000);
    seen sn;
    uint64_t sent;

    (void)state;
    mt_init(&m);
    o.max_payload = 1000;
    a = mt_node(&m, &o);
    b = mt_node(&m, NULL);
    assert_true(mt_link(&m, a, b));
    s_host(b, "small", &h);
    sn = (seen){ a, "small" };
    assert_true(mt_run_until(&m, s_has, &sn, MT_DEADLINE_MS));
    sent = mt_counter(a, "exec_too_large");
    s_call(&m, a, "small", params, MT_DEADLINE_MS, &out);
    assert_string_equal(out.code, MZ_EXEC_TOO_LARGE);
    assert_non_null(strstr(out.message, "--max-payload 1000"));
    assert_int_equal(h.runs, 0);
    assert_int_equal(mt_counter(a, "exec_too_large"), sent + 1);
    json_decref(params);
    mt_free(&m);
}

/* A - B - C: 900 KB of params cannot fit one message (1 MiB, sealed):
 * A refuses the call naming --max-message; no link drops a message. */
static void test_params_over_one_message_refused_at_the_caller(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    host h = { 0 };
    outcome out = { 0 };
    json_t *params = s_blob(900 * 1024);

    (void)state;
    s_chain_hosting(&m, &a, &b, &c, "far", &h);
    s_call(&m, a, "far", params, MT_DEADLINE_MS, &out);
    assert_string_equal(out.code, MZ_EXEC_TOO_LARGE);
    assert_non_null(strstr(out.message, "--max-message 1048576"));
    assert_int_equal(h.runs, 0);
    assert_int_equal(mt_counter(a, "oversize_unsent"), 0);
    assert_int_equal(mt_counter(b, "oversize_dropped") + mt_counter(b, "oversize_closes"), 0);
    json_decref(params);
    mt_free(&m);
}

/* The host's result does not fit one message to the caller: the caller
 * gets a small too_large answer naming --max-message instead, the handler
 * ran once, and the host sent nothing oversized. */
static void test_result_over_one_message_answered_too_large(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    host h = { 0 };
    outcome out = { 0 };
    json_t *params = json_pack("{s:i}", "n", 1200 * 1024);
    mz_err e;

    (void)state;
    s_chain_hosting(&m, &a, &b, &c, "grow", &h);
    assert_int_equal(mz_node_execute_remote(a, "grow", "grow", params, MT_DEADLINE_MS, s_done,
                                            &out, &e), MZ_OK);
    assert_true(mt_run_until(&m, s_is_done, &out, MT_DEADLINE_MS));
    assert_string_equal(out.code, MZ_EXEC_TOO_LARGE);
    assert_non_null(strstr(out.message, "result is"));
    assert_non_null(strstr(out.message, "--max-message 1048576"));
    assert_int_equal(h.runs, 1);
    assert_int_equal(mt_counter(c, "exec_too_large"), 1);
    assert_int_equal(mt_counter(c, "oversize_unsent"), 0);
    json_decref(params);
    mt_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_execute_over_a_relay),
        cmocka_unit_test(test_execute_vanished_resource_is_not_found),
        cmocka_unit_test(test_execute_unknown_resource_is_not_found),
        cmocka_unit_test(test_retry_after_cut_runs_the_call_once),
        cmocka_unit_test(test_params_over_max_payload_refused_at_the_caller),
        cmocka_unit_test(test_params_over_one_message_refused_at_the_caller),
        cmocka_unit_test(test_result_over_one_message_answered_too_large),
    };

    mz_log_set_level(MZ_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
