/* Observability in process: two real nodes on one loop, linked over
 * loopback. A C handler gets the caller's trace id and the caller sees the
 * host's span echoed; members and the counter list agree with status; the
 * trace context parser accepts and refuses what W3C says. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "meshzero.h"
#include "core/node_int.h"

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACEPARENT "00-" TRACE_ID "-00f067aa0ba902b7-01"

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t poll;            /* keeps uv_run(ONCE) from blocking forever */
    mz_node *a, *b;
    bool done;
    char handler_tp[64], handler_ts[64], echoed[64];
    json_t *result;
} fixture;

static void s_noop(uv_timer_t *t) { (void)t; }

static bool run_until(fixture *f, bool (*cond)(void *), void *ctx, uint64_t deadline_ms)
{
    uint64_t end = uv_now(&f->loop) + deadline_ms;

    while (!cond(ctx) && uv_now(&f->loop) < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    return cond(ctx);
}

static bool s_linked(void *ctx)
{
    fixture *f = ctx;
    json_t *pa = mz_node_peers(f->a), *pb = mz_node_peers(f->b);
    bool ok = json_array_size(pa) == 1 && json_array_size(pb) == 1;

    json_decref(pa);
    json_decref(pb);
    return ok;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    mz_node_opts o;
    mz_err e;
    const char *peers[1];

    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->poll);
    uv_timer_start(&f->poll, s_noop, 10, 10);
    memset(&o, 0, sizeof o);
    o.loop = &f->loop;
    o.listen_url = "ws://127.0.0.1:0";
    o.lease_ms = 3000;
    assert_int_equal(mz_node_new(&o, &f->a, &e), MZ_OK);
    peers[0] = mz_node_listen_url(f->a);
    o.peers = peers;
    o.n_peers = 1;
    assert_int_equal(mz_node_new(&o, &f->b, &e), MZ_OK);
    assert_true(run_until(f, s_linked, f, 5000));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    mz_node_stop(f->a);
    mz_node_stop(f->b);
    uv_timer_stop(&f->poll);
    uv_close((uv_handle_t *)&f->poll, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mz_node_free(f->a);
    mz_node_free(f->b);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    json_decref(f->result);
    free(f);
    return 0;
}

static void s_handler(mz_node *node, mz_exec *x, void *ctx)
{
    fixture *f = ctx;

    (void)node;
    snprintf(f->handler_tp, sizeof f->handler_tp, "%s", mz_exec_traceparent(x));
    snprintf(f->handler_ts, sizeof f->handler_ts, "%s",
             mz_exec_tracestate(x) ? mz_exec_tracestate(x) : "");
    mz_exec_reply(x, json_pack("{s:b}", "ok", 1));
}

static void s_done(mz_node *node, const json_t *result, const char *code, const char *msg,
                   void *ctx)
{
    fixture *f = ctx;
    const char *tp = mz_node_call_traceparent(node);

    (void)msg;
    assert_null(code);
    f->done = true;
    f->result = json_incref((json_t *)result);
    snprintf(f->echoed, sizeof f->echoed, "%s", tp ? tp : "");
}

static bool s_is_done(void *ctx) { return ((fixture *)ctx)->done; }

static bool s_known_at_a(void *ctx)
{
    fixture *f = ctx;
    return mz_directory_get(mz_node_directory(f->a), "traced") != NULL;
}

static void test_trace_reaches_the_c_handler(void **state)
{
    fixture *f = *state;
    mz_resource_spec spec;
    json_t *trace = json_pack("{s:s,s:s}", "traceparent", TRACEPARENT, "tracestate", "k=v");
    mz_err e;

    memset(&spec, 0, sizeof spec);
    spec.resource_id = "traced";
    spec.resource_type = "tool";
    assert_int_equal(mz_node_register_resource(f->b, &spec, NULL, &e), MZ_OK);
    assert_int_equal(mz_node_set_handler(f->b, "traced", NULL, s_handler, f, &e), MZ_OK);
    assert_true(run_until(f, s_known_at_a, f, 5000));
    assert_int_equal(mz_node_execute_traced(f->a, "traced", "run", NULL, NULL, trace, 5000,
                                            s_done, f, &e), MZ_OK);
    json_decref(trace);
    assert_true(run_until(f, s_is_done, f, 10000));
    /* Same trace, a span of the host's own; the state passes unchanged. */
    assert_memory_equal(f->handler_tp, "00-" TRACE_ID "-", 36);
    assert_string_not_equal(f->handler_tp, TRACEPARENT);
    assert_string_equal(f->handler_ts, "k=v");
    assert_string_equal(f->echoed, f->handler_tp);
    assert_null(mz_node_call_traceparent(f->a));    /* only inside the callback */
    /* Both ends counted the call as ok. */
    assert_int_equal(f->a->obs.exec_done[MZ_ROLE_CALLER][MZ_OUTCOME_OK], 1);
    assert_int_equal(f->b->obs.exec_done[MZ_ROLE_HOST][MZ_OUTCOME_OK], 1);
    assert_int_equal(f->a->obs.exec_dur[MZ_ROLE_CALLER].count, 1);
}

static bool s_b_knows_a_links(void *ctx)
{
    fixture *f = ctx;
    json_t *m = mz_node_members(f->b), *v;
    size_t i;
    bool ok = false;

    json_array_foreach(json_object_get(m, "members"), i, v)
        if (strcmp(json_string_value(json_object_get(v, "id")), mz_node_id(f->a)) == 0)
            ok = json_array_size(json_object_get(v, "peers")) == 1;
    json_decref(m);
    return ok;
}

static void test_members_and_counter_rows(void **state)
{
    fixture *f = *state;
    mz_counter_row rows[MZ_COUNTER_ROWS_MAX];
    size_t n = mz__counter_rows(f->b, rows, MZ_COUNTER_ROWS_MAX);
    json_t *st = mz_node_status(f->b), *cn = json_object_get(st, "counters");

    /* Every row is a status counter, and every status counter a row. */
    assert_int_equal(n, json_object_size(cn));
    for (size_t i = 0; i < n; i++)
        assert_non_null(json_object_get(cn, rows[i].name));
    assert_non_null(json_object_get(cn, "sync_busy"));
    json_decref(st);
    /* B learns A's links from A's alive (every lease/3 = 1 s here). */
    assert_true(run_until(f, s_b_knows_a_links, f, 5000));
}

static void test_trace_parsing(void **state)
{
    mz_trace t, c;

    (void)state;
    assert_true(mz__trace_set(&t, TRACEPARENT, NULL));
    assert_false(mz__trace_set(&t, "00-" TRACE_ID "-0000000000000000-01", NULL));
    assert_false(mz__trace_set(&t, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                               NULL));
    assert_false(mz__trace_set(&t, "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                               NULL));
    assert_false(mz__trace_set(&t, TRACEPARENT "x", NULL));
    assert_true(mz__trace_set(&t, "00-" TRACE_ID "-00f067aa0ba902b7-00", "a=1"));
    assert_string_equal(t.tracestate, "a=1");
    mz__trace_child(&t, &c);
    assert_memory_equal(c.traceparent, t.traceparent, 36);
    assert_string_equal(c.tracestate, "a=1");
    mz__trace_start(&c);
    assert_true(mz__trace_set(&t, c.traceparent, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_parsing),
        cmocka_unit_test_setup_teardown(test_trace_reaches_the_c_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_members_and_counter_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
