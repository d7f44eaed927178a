/* RFC 3339 timestamps: mz_time_parse on any string, and mz_time_format on
 * any instant. Checks that parse answers the same with and without an
 * output, that every accepted time lies within a day of the years
 * 0000-9999, that format's output is always accepted, and that
 * parse(format(t)) == t for every t format can write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/msg.h"

#define T_MIN (-62167219200000LL)   /* 0000-01-01T00:00:00.000Z */
#define T_MAX 253402300799999LL     /* 9999-12-31T23:59:59.999Z */
#define DAY   86400000LL

static void s_fail(const char *what, const char *s, long long v)
{
    fprintf(stderr, "fuzz_time: %s: '%s' (%lld)\n", what, s, v);
    abort();
}

static void s_roundtrip(int64_t t)
{
    char buf[32];
    int64_t back = 0;

    mz_time_format(t, buf);
    if (strlen(buf) != 24 || !mz_time_parse(buf, &back))
        s_fail("format wrote something parse refuses", buf, (long long)t);
    if (t >= T_MIN && t <= T_MAX && back != t)
        s_fail("parse(format(t)) != t", buf, (long long)t);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char s[80];
    int64_t ms = 0, t;
    bool ok;

    if (size >= sizeof s)
        size = sizeof s - 1;
    memcpy(s, data, size);
    s[size] = '\0';
    ok = mz_time_parse(s, &ms);
    if (ok != mz_time_parse(s, NULL))
        s_fail("parse answers differently without an output", s, (long long)ms);
    if (ok) {
        if (ms < T_MIN - DAY || ms > T_MAX + DAY)
            s_fail("accepted time out of range", s, (long long)ms);
        s_roundtrip(ms);
    }
    if (size >= 8) {
        memcpy(&t, data, sizeof t);
        s_roundtrip(t);
    }
    return 0;
}
