/* Unit tests for the routing table's second path and demotion
 * (src/util/routes.c), the keyed token buckets (src/util/ratelimit.c) and
 * the API Host check (src/util/hostcheck.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/hostcheck.h"
#include "util/ratelimit.h"
#include "util/routes.h"

static void test_second_path_takes_over(void **state)
{
    mz_routes *r = NULL;
    uint64_t link;
    int hops;

    (void)state;
    assert_int_equal(mz_routes_new(&r, NULL), MZ_OK);
    assert_true(mz_routes_offer(r, "x", 1, 2, 10000, 0));
    assert_false(mz_routes_offer(r, "x", 2, 3, 10000, 0));     /* kept second */
    assert_false(mz_routes_offer(r, "x", 3, 4, 10000, 0));     /* longer than both */
    assert_true(mz_routes_lookup(r, "x", 10, &link, &hops));
    assert_int_equal(link, 1);
    assert_int_equal(mz_routes_drop_link(r, 1), 1);
    assert_true(mz_routes_lookup(r, "x", 10, &link, &hops));   /* no wait for a broadcast */
    assert_int_equal(link, 2);
    assert_int_equal(hops, 3);
    assert_int_equal(mz_routes_drop_link(r, 2), 1);
    assert_false(mz_routes_lookup(r, "x", 10, NULL, NULL));
    assert_int_equal(mz_routes_count(r), 0);
    mz_routes_free(r);
}

static void test_demotion(void **state)
{
    mz_routes *r = NULL;
    uint64_t link;

    (void)state;
    assert_int_equal(mz_routes_new(&r, NULL), MZ_OK);
    assert_true(mz_routes_offer(r, "x", 1, 2, 100000, 0));
    assert_false(mz_routes_offer(r, "x", 2, 4, 100000, 0));
    assert_true(mz_routes_demote(r, "x", 1, 5000, 100));
    assert_true(mz_routes_lookup(r, "x", 200, &link, NULL));
    assert_int_equal(link, 2);                                  /* longer but not demoted */
    /* refreshed by its broadcasts, the demoted path stays demoted */
    mz_routes_offer(r, "x", 1, 1, 100000, 300);
    assert_true(mz_routes_lookup(r, "x", 300, &link, NULL));
    assert_int_equal(link, 2);
    /* the demotion ends: the short path is first again */
    assert_true(mz_routes_lookup(r, "x", 5000, &link, NULL));
    assert_int_equal(link, 1);
    /* an only path stays in use when demoted */
    assert_true(mz_routes_offer(r, "y", 7, 3, 100000, 0));
    assert_true(mz_routes_demote(r, "y", 7, 5000, 0));
    assert_true(mz_routes_lookup(r, "y", 10, &link, NULL));
    assert_int_equal(link, 7);
    assert_false(mz_routes_demote(r, "y", 8, 5000, 0));
    /* a fresh path through a third link replaces a demoted second one */
    assert_true(mz_routes_demote(r, "x", 2, 9000, 5000));
    mz_routes_offer(r, "x", 3, 6, 100000, 5000);
    assert_true(mz_routes_demote(r, "x", 1, 9000, 5000));
    assert_true(mz_routes_lookup(r, "x", 5000, &link, NULL));
    assert_int_equal(link, 3);
    mz_routes_free(r);
}

static void test_ratelimit(void **state)
{
    mz_ratelimit *rl = NULL;

    (void)state;
    assert_int_equal(mz_ratelimit_new(&rl, 2.0, 3.0, 2, NULL), MZ_OK);
    for (int i = 0; i < 3; i++)
        assert_true(mz_ratelimit_take(rl, "a", 1.0, 0));
    assert_false(mz_ratelimit_take(rl, "a", 1.0, 0));
    assert_true(mz_ratelimit_take(rl, "b", 3.0, 0));         /* keys are apart */
    assert_false(mz_ratelimit_take(rl, "c", 1.0, 0));        /* table full, none refilled */
    assert_true(mz_ratelimit_take(rl, "a", 1.0, 500));       /* 2/s: one back in 0.5 s */
    assert_false(mz_ratelimit_take(rl, "a", 1.0, 500));
    assert_true(mz_ratelimit_take(rl, "c", 1.0, 10000));     /* refilled ones forgotten */
    assert_true(mz_ratelimit_left(rl, "zz", 0) == 3.0);
    mz_ratelimit_free(rl);
}

static bool s_ok(const char *h, const char *listen)
{
    return mz_host_allowed(h, strlen(h), listen);
}

static void test_host_check(void **state)
{
    char host[64];

    (void)state;
    assert_true(s_ok("127.0.0.1:8766", NULL));
    assert_true(s_ok("127.1.2.3", NULL));
    assert_true(s_ok("LocalHost:1", NULL));
    assert_true(s_ok("[::1]:8766", NULL));
    assert_true(s_ok("10.0.0.5:8766", "10.0.0.5"));
    assert_false(s_ok("evil.example:8766", NULL));
    assert_false(s_ok("127.0.0.1.evil.example", NULL));
    assert_false(s_ok("localhost.evil.example:80", NULL));
    assert_false(s_ok("127.0.0.256", NULL));
    assert_false(s_ok("127.0.0.1:", NULL));
    assert_false(s_ok("", NULL));
    assert_false(s_ok(":8766", NULL));
    assert_false(s_ok("10.0.0.6", "10.0.0.5"));
    assert_true(mz_url_host("ws://127.0.0.1:8766", host, sizeof host));
    assert_string_equal(host, "127.0.0.1");
    assert_true(mz_url_host("ws://[::1]:8766/x", host, sizeof host));
    assert_string_equal(host, "[::1]");
    assert_false(mz_url_host("unix:/tmp/s", host, sizeof host));
    assert_true(mz_host_wildcard("0.0.0.0"));
    assert_false(mz_host_wildcard("127.0.0.1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_path_takes_over),
        cmocka_unit_test(test_demotion),
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_host_check),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
