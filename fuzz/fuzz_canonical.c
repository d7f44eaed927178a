/* Canonical JSON (mz_canon_dump) on any JSON jansson accepts. Checks that
 * the dump exists (the header promises NULL only for NaN/Inf, memory, or
 * nesting past jansson's own parser bound), is deterministic, does not
 * depend on the order members were inserted in, reads back as an equal
 * value with the same canonical form, and that the top-level skip list
 * equals deleting those members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/msg.h"

static void s_fail(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_canonical: %s\n  first:  %.2000s\n  second: %.2000s\n", what,
            a ? a : "(null)", b ? b : "(null)");
    abort();
}

/* A deep copy whose objects have their members inserted in reverse order. */
static json_t *s_reversed(const json_t *v)
{
    json_t *out, *child;
    const char *key;
    size_t i, klen, n;

    if (json_is_array(v)) {
        out = json_array();
        json_array_foreach(v, i, child)
            json_array_append_new(out, s_reversed(child));
        return out;
    }
    if (!json_is_object(v))
        return json_deep_copy(v);
    n = json_object_size(v);
    {
        const char **keys = calloc(n ? n : 1, sizeof *keys);
        size_t *lens = calloc(n ? n : 1, sizeof *lens);
        json_t **vals = calloc(n ? n : 1, sizeof *vals);
        i = 0;
        json_object_keylen_foreach((json_t *)v, key, klen, child) {
            keys[i] = key;
            lens[i] = klen;
            vals[i] = child;
            i++;
        }
        out = json_object();
        while (i-- > 0)
            json_object_setn_new_nocheck(out, keys[i], lens[i], s_reversed(vals[i]));
        free(keys);
        free(lens);
        free(vals);
    }
    return out;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const skip[] = { "signature", "hops", "", NULL };
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_t *r, *v2, *cut;
    char *c1, *c2, *c3, *c4, *c5;
    size_t n1, n2, n3, n4, n5;

    if (v == NULL)
        return 0;
    c1 = mz_canon_dump(v, NULL, &n1);
    if (c1 == NULL)
        s_fail("no canonical form for a value jansson parsed", (const char *)data, NULL);
    c2 = mz_canon_dump(v, NULL, &n2);
    if (c2 == NULL || n1 != n2 || memcmp(c1, c2, n1) != 0)
        s_fail("canonical form is not deterministic", c1, c2);

    r = s_reversed(v);
    c3 = mz_canon_dump(r, NULL, &n3);
    if (c3 == NULL || n1 != n3 || memcmp(c1, c3, n1) != 0)
        s_fail("canonical form depends on member order", c1, c3);

    v2 = json_loadb(c1, n1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v2 == NULL || !json_equal(v, v2))
        s_fail("canonical form does not read back as an equal value", (const char *)c1, NULL);
    c4 = mz_canon_dump(v2, NULL, &n4);
    if (c4 == NULL || n1 != n4 || memcmp(c1, c4, n1) != 0)
        s_fail("canonical form is not a fixed point", c1, c4);

    /* skip drops top-level members only, exactly like deleting them. */
    cut = json_deep_copy(v);
    if (json_is_object(cut))
        for (size_t i = 0; skip[i] != NULL; i++)
            json_object_del(cut, skip[i]);
    free(c2);
    c2 = mz_canon_dump(v, skip, &n2);
    c5 = mz_canon_dump(cut, NULL, &n5);
    if (c2 == NULL || c5 == NULL || n2 != n5 || memcmp(c2, c5, n2) != 0)
        s_fail("skip list differs from deleting the members", c2, c5);

    free(c1);
    free(c2);
    free(c3);
    free(c4);
    free(c5);
    json_decref(v);
    json_decref(v2);
    json_decref(r);
    json_decref(cut);
    return 0;
}
