/* The directory across the mesh: announces, removals and anti-entropy on
 * real nodes in one process on the in-memory transport (support/mesh.h),
 * through the public node API only. */
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

/* Leases long enough that nothing in these tests is removed by expiry:
 * what disappears was removed by the protocol. */
#define LONG_LEASE_MS 120000

typedef struct want {
    mz_node *n;
    const char *const *ids;     /* NULL-terminated */
    bool present;               /* all present, or all absent */
} want;

static bool s_want(void *ctx)
{
    want *w = ctx;

    for (const char *const *id = w->ids; *id; id++)
        if (mt_has(w->n, *id) != w->present)
            return false;
    return true;
}

static bool s_wait(mt_mesh *m, mz_node *n, const char *const *ids, bool present)
{
    want w = { n, ids, present };

    return mt_run_until(m, s_want, &w, MT_DEADLINE_MS);
}

static mz_node *s_node(mt_mesh *m)
{
    mz_node_opts o;

    memset(&o, 0, sizeof o);
    o.lease_ms = LONG_LEASE_MS;
    return mt_node(m, &o);
}

/* A record registered on A reaches C through B, and so does its removal. */
static void test_register_and_remove_across_a_relay(void **state)
{
    static const char *const ids[] = { "printer", NULL };
    mt_mesh m;
    mz_node *a, *b, *c;
    mz_err e;

    (void)state;
    mt_init(&m);
    a = s_node(&m);
    b = s_node(&m);
    c = s_node(&m);
    assert_true(mt_link(&m, a, b));
    assert_true(mt_link(&m, b, c));
    mt_register(a, "printer");
    assert_true(s_wait(&m, c, ids, true));
    assert_true(mt_has(b, "printer"));
    assert_int_equal(mz_node_unregister_resource(a, "printer", &e), MZ_OK);
    assert_true(s_wait(&m, c, ids, false));
    assert_false(mt_has(b, "printer"));
    mt_free(&m);
}

/* Records registered before any link exist only on their host; when a link
 * comes up late, anti-entropy brings each side the other's whole directory
 * (C's record reaches A through B). */
static void test_late_link_syncs_both_directories(void **state)
{
    static const char *const on_a[] = { "a1", "a2", "a3", NULL };
    static const char *const on_c[] = { "c1", NULL };
    mt_mesh m;
    mz_node *a, *b, *c;

    (void)state;
    mt_init(&m);
    a = s_node(&m);
    b = s_node(&m);
    c = s_node(&m);
    for (const char *const *id = on_a; *id; id++)
        mt_register(a, *id);
    assert_true(mt_link(&m, b, c));
    mt_register(c, "c1");
    assert_true(s_wait(&m, b, on_c, true));
    mt_settle(&m);
    assert_false(mt_has(b, "a1"));      /* nothing reached B before the link */
    assert_true(mt_link(&m, a, b));
    assert_true(s_wait(&m, b, on_a, true));
    assert_true(s_wait(&m, c, on_a, true));
    assert_true(s_wait(&m, a, on_c, true));
    mt_free(&m);
}

/* A record removed at its host while the link to B was down: once the link
 * is back, anti-entropy removes B's stale copy (long before any lease). */
static void test_removal_while_cut_heals_on_relink(void **state)
{
    static const char *const ids[] = { "lamp", NULL };
    mt_mesh m;
    mz_node *a, *b;
    mz_err e;

    (void)state;
    mt_init(&m);
    a = s_node(&m);
    b = s_node(&m);
    assert_true(mt_link(&m, b, a));
    mt_register(a, "lamp");
    assert_true(s_wait(&m, b, ids, true));
    /* B dialed A: it drops the link and dials it again with backoff. */
    assert_int_equal(mz_node_disconnect_peer(b, mz_node_id(a), &e), MZ_OK);
    assert_int_equal(mz_node_unregister_resource(a, "lamp", &e), MZ_OK);
    mt_settle(&m);
    assert_true(mt_has(b, "lamp"));     /* the removal had no way to B */
    assert_true(s_wait(&m, b, ids, false));
    assert_true(mt_linked(b, a));
    mt_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_remove_across_a_relay),
        cmocka_unit_test(test_late_link_syncs_both_directories),
        cmocka_unit_test(test_removal_while_cut_heals_on_relink),
    };

    mz_log_set_level(MZ_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
