/* Unit tests for the seen-id cache (src/util/seen.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/seen.h"

static void test_dedupe(void **state)
{
    mz_seen *s = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_int_equal(mz_seen_new(8, &s, &err), MZ_OK);
    assert_false(mz_seen_contains(s, "m1"));
    assert_false(mz_seen_check_add(s, "m1"));
    assert_true(mz_seen_check_add(s, "m1"));
    assert_true(mz_seen_contains(s, "m1"));
    assert_false(mz_seen_check_add(s, "m2"));
    assert_true(mz_seen_check_add(s, "m2"));
    assert_int_equal(mz_seen_count(s), 2);
    mz_seen_free(s);
    mz_seen_free(NULL);
}

static void test_evicts_oldest_at_capacity_3(void **state)
{
    mz_seen *s = NULL;

    (void)state;
    assert_int_equal(mz_seen_new(3, &s, NULL), MZ_OK);
    assert_false(mz_seen_check_add(s, "a"));
    assert_false(mz_seen_check_add(s, "b"));
    assert_false(mz_seen_check_add(s, "c"));
    assert_int_equal(mz_seen_count(s), 3);
    /* A repeat is not an insertion: it neither evicts nor refreshes. */
    assert_true(mz_seen_check_add(s, "a"));
    assert_false(mz_seen_check_add(s, "d"));          /* evicts a */
    assert_int_equal(mz_seen_count(s), 3);
    assert_false(mz_seen_contains(s, "a"));
    assert_true(mz_seen_contains(s, "b"));
    assert_true(mz_seen_contains(s, "c"));
    assert_true(mz_seen_contains(s, "d"));
    assert_false(mz_seen_check_add(s, "e"));          /* evicts b */
    assert_false(mz_seen_contains(s, "b"));
    assert_false(mz_seen_check_add(s, "a"));          /* a is new again; evicts c */
    assert_false(mz_seen_contains(s, "c"));
    assert_true(mz_seen_contains(s, "d"));
    assert_true(mz_seen_contains(s, "e"));
    assert_true(mz_seen_contains(s, "a"));
    assert_int_equal(mz_seen_count(s), 3);
    mz_seen_free(s);
}

static void test_capacity_1_and_invalid(void **state)
{
    mz_seen *s = NULL;
    mz_err err = { 0 };

    (void)state;
    assert_int_equal(mz_seen_new(0, &s, &err), MZ_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.msg, "capacity"));
    assert_int_equal(mz_seen_new(1, &s, NULL), MZ_OK);
    assert_false(mz_seen_check_add(s, "x"));
    assert_false(mz_seen_check_add(s, "y"));
    assert_false(mz_seen_contains(s, "x"));
    assert_true(mz_seen_check_add(s, "y"));
    assert_int_equal(mz_seen_count(s), 1);
    mz_seen_free(s);
}

static void test_long_ids(void **state)
{
    mz_seen *s = NULL;
    char id64[65], id65[66];

    (void)state;
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'a', 65);
    id65[65] = '\0';
    assert_int_equal(mz_seen_new(4, &s, NULL), MZ_OK);
    assert_false(mz_seen_check_add(s, id64));
    assert_true(mz_seen_check_add(s, id64));
    /* Over the wire limit: reported as seen (fail closed), not stored. */
    assert_true(mz_seen_check_add(s, id65));
    assert_int_equal(mz_seen_count(s), 1);
    mz_seen_free(s);
}

/* Many ids through a small cache: exactly the last `cap` are remembered. */
static void test_window(void **state)
{
    enum { CAP = 100, N = 20000 };
    mz_seen *s = NULL;
    char id[32];

    (void)state;
    assert_int_equal(mz_seen_new(CAP, &s, NULL), MZ_OK);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "msg-%d", i);
        assert_false(mz_seen_check_add(s, id));
    }
    assert_int_equal(mz_seen_count(s), CAP);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "msg-%d", i);
        if (i >= N - CAP)
            assert_true(mz_seen_contains(s, id));
        else
            assert_false(mz_seen_contains(s, id));
    }
    mz_seen_free(s);
}

/* Random ids from a small pool through small caches, against a plain FIFO
 * model: exercises deletion from the middle of probe runs. */
static void test_against_model(void **state)
{
    enum { N = 30000, POOL = 300 };
    static const size_t caps[] = { 1, 2, 7, 37, 100, 256 };

    (void)state;
    srand(7);
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k], n = 0;
        int model[256];
        mz_seen *s = NULL;
        char id[32];

        assert_int_equal(mz_seen_new(cap, &s, NULL), MZ_OK);
        for (int i = 0; i < N; i++) {
            int v = rand() % POOL;
            bool in = false;
            for (size_t j = 0; j < n; j++)
                in = in || model[j] == v;
            snprintf(id, sizeof id, "id-%d", v);
            assert_int_equal(mz_seen_contains(s, id), in);
            assert_int_equal(mz_seen_check_add(s, id), in);
            if (!in) {
                if (n == cap) {
                    memmove(model, model + 1, (n - 1) * sizeof *model);
                    n--;
                }
                model[n++] = v;
            }
            assert_int_equal(mz_seen_count(s), n);
        }
        for (int v = 0; v < POOL; v++) {
            bool in = false;
            for (size_t j = 0; j < n; j++)
                in = in || model[j] == v;
            snprintf(id, sizeof id, "id-%d", v);
            assert_int_equal(mz_seen_contains(s, id), in);
        }
        mz_seen_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_evicts_oldest_at_capacity_3),
        cmocka_unit_test(test_capacity_1_and_invalid),
        cmocka_unit_test(test_long_ids),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
