/* Two real nodes in one process on one loop, linked over loopback:
 * execute_remote request matching, timeouts and error codes, C handlers,
 * events and topic matching; the trace context a C handler gets and the
 * caller sees echoed, members, and the counter list against status. */
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

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t poll;            /* keeps uv_run(ONCE) from blocking forever */
    mz_node *a, *b;
} fixture;

static void s_noop(uv_timer_t *t) { (void)t; }

/* Runs the loop until cond(ctx) or deadline_ms pass. */
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
    o.max_running = 64;
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
    free(f);
    return 0;
}

/* ---- handlers on B ------------------------------------------------------ */

typedef struct later {
    uv_timer_t t;
    mz_exec *x;
} later;

static void s_later_closed(uv_handle_t *h) { free(h->data); }

static void s_later_fire(uv_timer_t *t)
{
    later *l = t->data;

    mz_exec_reply(l->x, json_pack("{s:s}", "late", "yes"));
    uv_close((uv_handle_t *)&l->t, s_later_closed);
}

/* echo: answers at once; slow: from a timer; fail: an error; never: never. */
static void s_handler(mz_node *node, mz_exec *x, void *ctx)
{
    const char *m = mz_exec_method(x);
    fixture *f = ctx;

    (void)node;
    if (strcmp(m, "echo") == 0) {
        mz_exec_reply(x, json_pack("{s:O,s:s}", "params", mz_exec_params(x), "caller",
                                   mz_exec_caller(x)));
    } else if (strcmp(m, "slow") == 0) {
        later *l = calloc(1, sizeof *l);
        l->x = x;
        uv_timer_init(&f->loop, &l->t);
        l->t.data = l;
        uv_timer_start(&l->t, s_later_fire, 50, 0);
    } else if (strcmp(m, "fail") == 0) {
        mz_exec_fail(x, MZ_EXEC_HANDLER_ERROR, "it broke");
    } else {
        /* "never": the host's sweep answers timeout; the reply never comes. */
        (void)0;
    }
}

static void s_register(fixture *f, const char *id, const char *const *methods)
{
    mz_resource_spec spec;
    const char *caps[] = { "image_processing" };
    mz_err e;

    memset(&spec, 0, sizeof spec);
    spec.resource_id = id;
    spec.resource_type = "agent";
    spec.capabilities = caps;
    spec.n_capabilities = 1;
    assert_int_equal(mz_node_register_resource(f->b, &spec, NULL, &e), MZ_OK);
    assert_int_equal(mz_node_set_handler(f->b, id, methods, s_handler, f, &e), MZ_OK);
}

typedef struct outcome {
    bool done;
    json_t *result;
    char code[32];
    char msg[256];
} outcome;

static void s_done(mz_node *node, const json_t *result, const char *code, const char *msg,
                   void *ctx)
{
    outcome *o = ctx;

    (void)node;
    assert_false(o->done);          /* exactly once */
    o->done = true;
    if (result)
        o->result = json_incref((json_t *)result);
    snprintf(o->code, sizeof o->code, "%s", code ? code : "");
    snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "");
}

static bool s_is_done(void *ctx) { return ((outcome *)ctx)->done; }

static bool s_known_at_a(void *ctx)
{
    fixture *f = ctx;
    return mz_directory_get(mz_node_directory(f->a), "agent123") != NULL;
}

static void s_call(fixture *f, mz_node *from, const char *id, const char *method, json_t *params,
                   int64_t timeout_ms, outcome *o)
{
    mz_err e;

    memset(o, 0, sizeof *o);
    assert_int_equal(mz_node_execute_remote(from, id, method, params, timeout_ms, s_done, o, &e),
                     MZ_OK);
    assert_false(o->done);          /* never completes inside the call */
    json_decref(params);
    assert_true(run_until(f, s_is_done, o, 10000));
}

static void test_execute_result(void **state)
{
    fixture *f = *state;
    outcome o;

    s_register(f, "agent123", NULL);
    assert_true(run_until(f, s_known_at_a, f, 3000));
    s_call(f, f->a, "agent123", "echo", json_pack("{s:s}", "image_url", "x.jpg"), 5000, &o);
    assert_string_equal(o.code, "");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o.result, "params"),
                                                          "image_url")), "x.jpg");
    assert_string_equal(json_string_value(json_object_get(o.result, "caller")), mz_node_id(f->a));
    json_decref(o.result);
    /* Completed later from the loop. */
    s_call(f, f->a, "agent123", "slow", NULL, 5000, &o);
    assert_string_equal(json_string_value(json_object_get(o.result, "late")), "yes");
    json_decref(o.result);
    /* The host calling its own resource. */
    s_call(f, f->b, "agent123", "echo", json_pack("{s:i}", "n", 7), 5000, &o);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o.result, "params"), "n")),
                     7);
    json_decref(o.result);
}

typedef struct many {
    outcome o[100];
    int done;
} many;

static bool s_all_done(void *ctx)
{
    many *m = ctx;
    for (int i = 0; i < 100; i++)
        if (!m->o[i].done)
            return false;
    return true;
}

static void test_execute_matching(void **state)
{
    fixture *f = *state;
    many *m = calloc(1, sizeof *m);
    mz_err e;

    s_register(f, "agent123", NULL);
    assert_true(run_until(f, s_known_at_a, f, 3000));
    for (int i = 0; i < 100; i++) {
        json_t *p = json_pack("{s:i}", "i", i);
        assert_int_equal(mz_node_execute_remote(f->a, "agent123", i % 2 ? "echo" : "slow", p,
                                                5000, s_done, &m->o[i], &e), MZ_OK);
        json_decref(p);
    }
    assert_true(run_until(f, s_all_done, m, 10000));
    for (int i = 0; i < 100; i++) {
        assert_string_equal(m->o[i].code, "");
        if (i % 2)
            assert_int_equal(json_integer_value(json_object_get(
                                 json_object_get(m->o[i].result, "params"), "i")), i);
        json_decref(m->o[i].result);
    }
    free(m);
}

static void test_execute_errors(void **state)
{
    fixture *f = *state;
    const char *methods[] = { "echo", "fail", "never", NULL };
    outcome o;

    s_register(f, "agent123", methods);
    assert_true(run_until(f, s_known_at_a, f, 3000));
    s_call(f, f->a, "nothere", "echo", NULL, 1000, &o);
    assert_string_equal(o.code, MZ_EXEC_NOT_FOUND);
    s_call(f, f->a, "agent123", "echo", json_pack("[i]", 1), 1000, &o);
    assert_string_equal(o.code, MZ_EXEC_BAD_REQUEST);
    s_call(f, f->a, "agent123", "other", NULL, 1000, &o);
    assert_string_equal(o.code, MZ_EXEC_BAD_REQUEST);
    assert_non_null(strstr(o.msg, "other"));
    s_call(f, f->a, "agent123", "fail", NULL, 1000, &o);
    assert_string_equal(o.code, MZ_EXEC_HANDLER_ERROR);
    assert_string_equal(o.msg, "it broke");
    s_call(f, f->a, "agent123", "never", NULL, 300, &o);
    assert_string_equal(o.code, MZ_EXEC_TIMEOUT);
}

/* ---- events ------------------------------------------------------------- */

typedef struct seen_events {
    int added, custom, peer;
    char last_topic[64];
} seen_events;

static void s_on_event(mz_node *node, const char *topic, const json_t *data, const char *source,
                       void *ctx)
{
    seen_events *s = ctx;

    (void)node;
    (void)source;
    snprintf(s->last_topic, sizeof s->last_topic, "%s", topic);
    if (strcmp(topic, "resource.added") == 0 &&
        strcmp(json_string_value(json_object_get(data, "resource_id")), "agent123") == 0)
        s->added++;
    else if (strcmp(topic, "demo.hello") == 0)
        s->custom++;
}

static bool s_events_in(void *ctx)
{
    seen_events *s = ctx;
    return s[0].added == 1 && s[0].custom == 1 && s[1].custom == 1;
}

static void test_events(void **state)
{
    fixture *f = *state;
    seen_events *s = calloc(2, sizeof *s);
    uint64_t id_a, id_a2, id_b;
    json_t *d = json_pack("{s:i}", "x", 1);
    mz_err e;

    assert_int_equal(mz_node_subscribe(f->a, "resource.*", s_on_event, &s[0], &id_a, &e), MZ_OK);
    assert_int_equal(mz_node_subscribe(f->a, "demo.hello", s_on_event, &s[0], &id_a2, &e), MZ_OK);
    assert_int_equal(mz_node_subscribe(f->b, "*", s_on_event, &s[1], &id_b, &e), MZ_OK);
    assert_int_equal(mz_node_subscribe(f->a, "bad topic", s_on_event, NULL, NULL, &e), MZ_EINVAL);
    assert_int_equal(mz_node_publish(f->b, "resource.added", d, &e), MZ_EINVAL);
    s_register(f, "agent123", NULL);
    assert_int_equal(mz_node_publish(f->b, "demo.hello", d, &e), MZ_OK);
    assert_true(run_until(f, s_events_in, s, 3000));
    assert_int_equal(mz_node_unsubscribe(f->a, id_a, &e), MZ_OK);
    assert_int_equal(mz_node_unsubscribe(f->a, id_a, &e), MZ_ENOTFOUND);
    assert_int_equal(mz_node_unsubscribe(f->a, id_a2, &e), MZ_OK);
    assert_int_equal(mz_node_unsubscribe(f->b, id_b, &e), MZ_OK);
    json_decref(d);
    free(s);
}

static void test_topic_match(void **state)
{
    (void)state;
    assert_true(mz_topic_match("*", "resource.added"));
    assert_true(mz_topic_match("resource.*", "resource.added"));
    assert_true(mz_topic_match("resource.*", "resource.a.b"));
    assert_false(mz_topic_match("resource.*", "resource"));
    assert_false(mz_topic_match("resource.*", "resources.added"));
    assert_true(mz_topic_match("peer.connected", "peer.connected"));
    assert_false(mz_topic_match("peer.connected", "peer.connectedx"));
    assert_true(mz_topic_pattern_valid("a.*"));
    assert_false(mz_topic_pattern_valid("a*"));
    assert_false(mz_topic_pattern_valid(".*"));
    assert_false(mz_topic_pattern_valid(""));
    assert_false(mz_topic_valid("has space"));
    assert_true(mz_topic_reserved("peer.x"));
    assert_false(mz_topic_reserved("peers"));
}

/* ---- observability: trace context, members, the counter list ------------- */

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACEPARENT "00-" TRACE_ID "-00f067aa0ba902b7-01"

static struct {
    bool done;
    char handler_tp[64], handler_ts[64], echoed[64];
    json_t *result;
} s_tr;

static void s_trace_handler(mz_node *node, mz_exec *x, void *ctx)
{
    (void)node;
    (void)ctx;
    snprintf(s_tr.handler_tp, sizeof s_tr.handler_tp, "%s", mz_exec_traceparent(x));
    snprintf(s_tr.handler_ts, sizeof s_tr.handler_ts, "%s",
             mz_exec_tracestate(x) ? mz_exec_tracestate(x) : "");
    mz_exec_reply(x, json_pack("{s:b}", "ok", 1));
}

static void s_trace_done(mz_node *node, const json_t *result, const char *code, const char *msg,
                   void *ctx)
{
    const char *tp = mz_node_call_traceparent(node);

    (void)msg;
    (void)ctx;
    assert_null(code);
    s_tr.done = true;
    s_tr.result = json_incref((json_t *)result);
    snprintf(s_tr.echoed, sizeof s_tr.echoed, "%s", tp ? tp : "");
}

static bool s_trace_is_done(void *ctx) { (void)ctx; return s_tr.done; }

static bool s_traced_at_a(void *ctx)
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
    assert_int_equal(mz_node_set_handler(f->b, "traced", NULL, s_trace_handler, f, &e), MZ_OK);
    assert_true(run_until(f, s_traced_at_a, f, 5000));
    assert_int_equal(mz_node_execute_traced(f->a, "traced", "run", NULL, NULL, trace, 5000,
                                            s_trace_done, f, &e), MZ_OK);
    json_decref(trace);
    assert_true(run_until(f, s_trace_is_done, f, 10000));
    json_decref(s_tr.result);
    /* Same trace, a span of the host's own; the state passes unchanged. */
    assert_memory_equal(s_tr.handler_tp, "00-" TRACE_ID "-", 36);
    assert_string_not_equal(s_tr.handler_tp, TRACEPARENT);
    assert_string_equal(s_tr.handler_ts, "k=v");
    assert_string_equal(s_tr.echoed, s_tr.handler_tp);
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
        cmocka_unit_test(test_topic_match),
        cmocka_unit_test_setup_teardown(test_execute_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execute_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execute_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test(test_trace_parsing),
        cmocka_unit_test_setup_teardown(test_trace_reaches_the_c_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_members_and_counter_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
