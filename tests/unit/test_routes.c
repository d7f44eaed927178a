/* Unit tests for the routing table (src/util/routes.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/routes.h"

static mz_routes *s_new(void)
{
    mz_routes *r = NULL;

    assert_int_equal(mz_routes_new(&r, NULL), MZ_OK);
    assert_non_null(r);
    return r;
}

static void test_offer_and_lookup(void **state)
{
    mz_routes *r = s_new();
    uint64_t link = 0;
    int hops = 0;

    (void)state;
    assert_false(mz_routes_lookup(r, "n1", 0, &link, &hops));
    assert_true(mz_routes_offer(r, "n1", 7, 3, 1000, 0));
    assert_true(mz_routes_lookup(r, "n1", 999, &link, &hops));
    assert_int_equal(link, 7);
    assert_int_equal(hops, 3);
    assert_true(mz_routes_lookup(r, "n1", 500, NULL, NULL));
    assert_int_equal(mz_routes_count(r), 1);
    mz_routes_free(r);
    mz_routes_free(NULL);
}

static void test_replace_by_shorter_only(void **state)
{
    mz_routes *r = s_new();
    uint64_t link;
    int hops;

    (void)state;
    assert_true(mz_routes_offer(r, "n1", 1, 4, 1000, 0));
    assert_false(mz_routes_offer(r, "n1", 2, 5, 2000, 10));   /* longer: ignored */
    assert_false(mz_routes_offer(r, "n1", 2, 4, 2000, 10));   /* equal: kept stable */
    assert_true(mz_routes_lookup(r, "n1", 10, &link, &hops));
    assert_int_equal(link, 1);
    assert_int_equal(hops, 4);
    assert_true(mz_routes_offer(r, "n1", 2, 2, 2000, 10));    /* shorter wins */
    assert_true(mz_routes_lookup(r, "n1", 1500, &link, &hops));
    assert_int_equal(link, 2);
    assert_int_equal(hops, 2);
    mz_routes_free(r);
}

static void test_refresh_same_link(void **state)
{
    mz_routes *r = s_new();
    uint64_t link;
    int hops;

    (void)state;
    assert_true(mz_routes_offer(r, "n1", 1, 2, 1000, 0));
    /* Same link, same distance: only the expiry moves; not a change. */
    assert_false(mz_routes_offer(r, "n1", 1, 2, 5000, 500));
    assert_true(mz_routes_lookup(r, "n1", 4000, &link, &hops));
    /* Same link, longer: taken (the path behind that link grew). */
    assert_true(mz_routes_offer(r, "n1", 1, 6, 6000, 600));
    assert_true(mz_routes_lookup(r, "n1", 700, &link, &hops));
    assert_int_equal(link, 1);
    assert_int_equal(hops, 6);
    mz_routes_free(r);
}

static void test_expiry(void **state)
{
    mz_routes *r = s_new();
    uint64_t link;
    int hops;

    (void)state;
    assert_true(mz_routes_offer(r, "n1", 1, 1, 1000, 0));
    assert_true(mz_routes_offer(r, "n2", 1, 1, 3000, 0));
    /* Expired at exactly expires_ms. */
    assert_false(mz_routes_lookup(r, "n1", 1000, &link, &hops));
    assert_true(mz_routes_lookup(r, "n2", 1000, &link, &hops));
    /* An expired route yields to any offer, even a longer one. */
    assert_true(mz_routes_offer(r, "n1", 9, 8, 4000, 1500));
    assert_true(mz_routes_lookup(r, "n1", 1500, &link, &hops));
    assert_int_equal(link, 9);
    assert_int_equal(hops, 8);
    /* An offer that is already expired is ignored. */
    assert_false(mz_routes_offer(r, "n3", 1, 1, 100, 200));
    assert_false(mz_routes_lookup(r, "n3", 0, NULL, NULL));
    assert_int_equal(mz_routes_count(r), 2);
    assert_int_equal(mz_routes_expire(r, 3000), 1);            /* n2 */
    assert_int_equal(mz_routes_count(r), 1);
    assert_true(mz_routes_lookup(r, "n1", 3000, NULL, NULL));
    assert_int_equal(mz_routes_expire(r, 4000), 1);
    assert_int_equal(mz_routes_count(r), 0);
    mz_routes_free(r);
}

static void s_sum(const char *dest, uint64_t link, int hops, int64_t expires_ms, void *ctx)
{
    long *sum = ctx;

    (void)dest;
    (void)expires_ms;
    *sum += (long)link * 100 + hops;
}

static void test_drop_link_and_drop(void **state)
{
    mz_routes *r = s_new();
    char dest[16];
    long sum = 0;

    (void)state;
    for (int i = 0; i < 300; i++) {
        snprintf(dest, sizeof dest, "node-%d", i);
        assert_true(mz_routes_offer(r, dest, (uint64_t)(i % 3), 1, 1000, 0));
    }
    assert_int_equal(mz_routes_count(r), 300);
    assert_int_equal(mz_routes_drop_link(r, 1), 100);
    assert_int_equal(mz_routes_drop_link(r, 1), 0);
    assert_int_equal(mz_routes_count(r), 200);
    assert_false(mz_routes_lookup(r, "node-1", 0, NULL, NULL));
    assert_true(mz_routes_lookup(r, "node-2", 0, NULL, NULL));
    mz_routes_foreach(r, s_sum, &sum);
    assert_int_equal(sum, 100 * (0 * 100 + 1) + 100 * (2 * 100 + 1));
    mz_routes_drop(r, "node-2");
    mz_routes_drop(r, "node-2");
    mz_routes_drop(r, "never");
    assert_false(mz_routes_lookup(r, "node-2", 0, NULL, NULL));
    assert_int_equal(mz_routes_count(r), 199);
    mz_routes_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer_and_lookup),
        cmocka_unit_test(test_replace_by_shorter_only),
        cmocka_unit_test(test_refresh_same_link),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_drop_link_and_drop),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
