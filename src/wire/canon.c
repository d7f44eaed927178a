/* Canonical JSON (PROTOCOL.md "Canonical form"): the exact bytes a signature
 * covers. Written by hand rather than with json_dumps so that key order,
 * escapes and number formatting are ours and cannot drift with jansson. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/msg.h"

/* Same bound as jansson's parser, so anything parsed can be dumped; it also
 * stops a cyclic tree built in code from recursing forever. */
#define MZ_CANON_MAX_DEPTH 2048

typedef struct s_buf {
    char  *p;      /* NUL-terminated when len < cap */
    size_t len;    /* bytes written */
    size_t cap;    /* bytes allocated */
} s_buf;

typedef struct s_member {
    const char *key;   /* borrowed from the object */
    size_t      klen;  /* key length; keys may hold NUL when built in code */
    json_t     *val;   /* borrowed */
} s_member;

static bool s_reserve(s_buf *b, size_t more)
{
    size_t need, cap;
    char *p;

    if (more > SIZE_MAX - b->len - 1)
        return false;
    need = b->len + more + 1;
    if (need <= b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if ((p = realloc(b->p, cap)) == NULL)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool s_put(s_buf *b, const char *s, size_t n)
{
    if (!s_reserve(b, n))
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

static bool s_putc(s_buf *b, char c)
{
    return s_put(b, &c, 1);
}

static bool s_string(s_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    if (!s_putc(b, '"'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        /* Flush the raw bytes before this one in a single copy. */
        if (!s_put(b, s + run, i - run))
            return false;
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':  esc[1] = '"';  break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b';  break;
        case '\f': esc[1] = 'f';  break;
        case '\n': esc[1] = 'n';  break;
        case '\r': esc[1] = 'r';  break;
        case '\t': esc[1] = 't';  break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
            break;
        }
        if (!s_put(b, esc, elen))
            return false;
    }
    return s_put(b, s + run, n - run) && s_putc(b, '"');
}

/* Shortest "%.Ng" that strtod reads back to the same double. */
static bool s_real(s_buf *b, double d)
{
    char tmp[40];
    int n = 0;

    if (!isfinite(d))
        return false;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (n <= 0 || (size_t)n >= sizeof tmp)
        return false;
    /* Keep reals distinguishable from integers: 1.0 stays "1.0", not "1". */
    if (strpbrk(tmp, ".eni") == NULL) {
        memcpy(tmp + n, ".0", 3);
        n += 2;
    }
    return s_put(b, tmp, (size_t)n);
}

static int s_member_cmp(const void *a, const void *b)
{
    const s_member *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);

    if (c != 0)
        return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

static bool s_skipped(const char *key, size_t klen, const char *const *skip)
{
    if (skip == NULL)
        return false;
    for (; *skip != NULL; skip++)
        if (strlen(*skip) == klen && memcmp(*skip, key, klen) == 0)
            return true;
    return false;
}

static bool s_value(s_buf *b, const json_t *v, const char *const *skip, int depth);

static bool s_object(s_buf *b, const json_t *v, const char *const *skip, int depth)
{
    size_t count = json_object_size(v), n = 0;
    s_member *m = NULL;
    const char *key;
    size_t klen;
    json_t *val;
    bool ok = false;

    if (count > 0 && (m = calloc(count, sizeof *m)) == NULL)
        return false;
    json_object_keylen_foreach((json_t *)v, key, klen, val) {
        if (n == count)
            break;
        if (depth == 0 && s_skipped(key, klen, skip))
            continue;
        m[n].key = key;
        m[n].klen = klen;
        m[n].val = val;
        n++;
    }
    if (n > 1)
        qsort(m, n, sizeof *m, s_member_cmp);
    if (!s_putc(b, '{'))
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && !s_putc(b, ','))
            goto done;
        if (!s_string(b, m[i].key, m[i].klen) || !s_putc(b, ':')
            || !s_value(b, m[i].val, NULL, depth + 1))
            goto done;
    }
    ok = s_putc(b, '}');
done:
    free(m);
    return ok;
}

static bool s_value(s_buf *b, const json_t *v, const char *const *skip, int depth)
{
    char num[32];
    int n;

    if (depth >= MZ_CANON_MAX_DEPTH)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return s_object(b, v, skip, depth);
    case JSON_ARRAY:
        if (!s_putc(b, '['))
            return false;
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0 && !s_putc(b, ','))
                return false;
            if (!s_value(b, json_array_get(v, i), NULL, depth + 1))
                return false;
        }
        return s_putc(b, ']');
    case JSON_STRING:
        return s_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        n = snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        return n > 0 && s_put(b, num, (size_t)n);
    case JSON_REAL:
        return s_real(b, json_real_value(v));
    case JSON_TRUE:
        return s_put(b, "true", 4);
    case JSON_FALSE:
        return s_put(b, "false", 5);
    case JSON_NULL:
        return s_put(b, "null", 4);
    }
    return false;
}

char *mz_canon_dump(const json_t *v, const char *const *skip, size_t *len)
{
    s_buf b = { NULL, 0, 0 };

    if (v == NULL || !s_value(&b, v, skip, 0) || !s_reserve(&b, 0)) {
        free(b.p);
        return NULL;
    }
    b.p[b.len] = '\0';
    if (len != NULL)
        *len = b.len;
    return b.p;
}
