/* Unit tests for the string hash map (src/util/hmap.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/hmap.h"

static void test_put_get_replace_remove(void **state)
{
    mz_hmap *h = mz_hmap_new();
    int a = 1, b = 2, c = 3;
    void *old = &c;
    char key[8] = "alpha";

    (void)state;
    assert_non_null(h);
    assert_null(mz_hmap_get(h, "alpha"));
    assert_null(mz_hmap_remove(h, "alpha"));
    assert_int_equal(mz_hmap_put(h, key, &a, &old), MZ_OK);
    assert_null(old);
    /* The key is copied: changing the caller's buffer changes nothing. */
    memcpy(key, "omega", 6);
    assert_ptr_equal(mz_hmap_get(h, "alpha"), &a);
    assert_null(mz_hmap_get(h, "omega"));
    assert_int_equal(mz_hmap_put(h, "alpha", &b, &old), MZ_OK);
    assert_ptr_equal(old, &a);
    assert_ptr_equal(mz_hmap_get(h, "alpha"), &b);
    assert_int_equal(mz_hmap_count(h), 1);
    assert_int_equal(mz_hmap_put(h, "", &c, NULL), MZ_OK);
    assert_ptr_equal(mz_hmap_get(h, ""), &c);
    assert_int_equal(mz_hmap_count(h), 2);
    assert_ptr_equal(mz_hmap_remove(h, "alpha"), &b);
    assert_null(mz_hmap_get(h, "alpha"));
    assert_null(mz_hmap_remove(h, "alpha"));
    assert_int_equal(mz_hmap_count(h), 1);
    mz_hmap_free(h, NULL);
}

static void test_grow_100k(void **state)
{
    mz_hmap *h = mz_hmap_new();
    char key[32];
    const size_t n = 100000;

    (void)state;
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key-%zu", i);
        assert_int_equal(mz_hmap_put(h, key, (void *)(uintptr_t)(i + 1), NULL), MZ_OK);
    }
    assert_int_equal(mz_hmap_count(h), n);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key-%zu", i);
        assert_int_equal((uintptr_t)mz_hmap_get(h, key), i + 1);
    }
    assert_null(mz_hmap_get(h, "key-100000"));
    /* Remove the odd keys, then check both halves. */
    for (size_t i = 1; i < n; i += 2) {
        snprintf(key, sizeof key, "key-%zu", i);
        assert_int_equal((uintptr_t)mz_hmap_remove(h, key), i + 1);
    }
    assert_int_equal(mz_hmap_count(h), n / 2);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key-%zu", i);
        if (i % 2)
            assert_null(mz_hmap_get(h, key));
        else
            assert_int_equal((uintptr_t)mz_hmap_get(h, key), i + 1);
    }
    mz_hmap_free(h, NULL);
}

/* Heavy insert/remove churn at a steady size must keep working (tombstones
 * get cleaned by rehashing, never filling the table). */
static void test_churn(void **state)
{
    mz_hmap *h = mz_hmap_new();
    char key[32];

    (void)state;
    assert_non_null(h);
    for (size_t i = 0; i < 200000; i++) {
        snprintf(key, sizeof key, "c%zu", i);
        assert_int_equal(mz_hmap_put(h, key, (void *)(uintptr_t)(i + 1), NULL), MZ_OK);
        if (i >= 100) {
            snprintf(key, sizeof key, "c%zu", i - 100);
            assert_int_equal((uintptr_t)mz_hmap_remove(h, key), i - 100 + 1);
        }
    }
    assert_int_equal(mz_hmap_count(h), 100);
    for (size_t i = 199900; i < 200000; i++) {
        snprintf(key, sizeof key, "c%zu", i);
        assert_int_equal((uintptr_t)mz_hmap_get(h, key), i + 1);
    }
    mz_hmap_free(h, NULL);
}

static void test_iterate(void **state)
{
    mz_hmap *h = mz_hmap_new();
    enum { N = 1000 };
    unsigned char seen[N] = { 0 };
    char key[32];
    const char *k;
    void *v;
    size_t pos = 0, visits = 0;

    (void)state;
    assert_non_null(h);
    assert_false(mz_hmap_next(h, &pos, &k, &v));    /* empty map */
    for (size_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "it-%zu", i);
        assert_int_equal(mz_hmap_put(h, key, (void *)(uintptr_t)i, NULL), MZ_OK);
    }
    pos = 0;
    while (mz_hmap_next(h, &pos, &k, &v)) {
        size_t i = (uintptr_t)v;

        snprintf(key, sizeof key, "it-%zu", i);
        assert_string_equal(k, key);
        seen[i]++;
        visits++;
    }
    assert_int_equal(visits, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    mz_hmap_free(h, NULL);
}

/* Removing the current key while iterating: every key visited once. */
static void test_iterate_remove_current(void **state)
{
    mz_hmap *h = mz_hmap_new();
    enum { N = 5000 };
    unsigned char *seen = calloc(N, 1);
    char key[32];
    const char *k;
    void *v;
    size_t pos = 0, removed = 0;

    (void)state;
    assert_non_null(h);
    assert_non_null(seen);
    for (size_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "r-%zu", i);
        assert_int_equal(mz_hmap_put(h, key, (void *)(uintptr_t)i, NULL), MZ_OK);
    }
    while (mz_hmap_next(h, &pos, &k, &v)) {
        size_t i = (uintptr_t)v;

        seen[i]++;
        if (i % 3 != 0) {
            assert_ptr_equal(mz_hmap_remove(h, k), v);
            removed++;
        }
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(mz_hmap_count(h), N - removed);
    /* Remove everything the same way, then the map is empty but usable. */
    pos = 0;
    while (mz_hmap_next(h, &pos, &k, &v))
        assert_ptr_equal(mz_hmap_remove(h, k), v);
    assert_int_equal(mz_hmap_count(h), 0);
    pos = 0;
    assert_false(mz_hmap_next(h, &pos, &k, &v));
    assert_int_equal(mz_hmap_put(h, "again", seen, NULL), MZ_OK);
    assert_ptr_equal(mz_hmap_get(h, "again"), seen);
    mz_hmap_free(h, NULL);
    free(seen);
}

static void test_free_values(void **state)
{
    mz_hmap *h = mz_hmap_new();
    char key[16];

    (void)state;
    assert_non_null(h);
    for (int i = 0; i < 100; i++) {
        char *val = malloc(8);

        assert_non_null(val);
        snprintf(key, sizeof key, "v%d", i);
        assert_int_equal(mz_hmap_put(h, key, val, NULL), MZ_OK);
    }
    mz_hmap_free(h, free);      /* LSan reports any value left behind */
    mz_hmap_free(NULL, free);
}

static void test_hash(void **state)
{
    uint64_t a, b;

    (void)state;
    a = mz_hmap_hash(1, "abcdefgh12", 10);
    b = mz_hmap_hash(1, "abcdefgh12", 10);
    assert_true(a == b);
    assert_true(mz_hmap_hash(1, "abcdefgh12", 10) != mz_hmap_hash(1, "abcdefgh13", 10));
    assert_true(mz_hmap_hash(1, "abc", 3) != mz_hmap_hash(2, "abc", 3));
    assert_true(mz_hmap_hash(1, "", 0) != mz_hmap_hash(1, "\0", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_remove),
        cmocka_unit_test(test_grow_100k),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_iterate),
        cmocka_unit_test(test_iterate_remove_current),
        cmocka_unit_test(test_free_values),
        cmocka_unit_test(test_hash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
