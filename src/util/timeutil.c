/* Wall-clock time and RFC 3339 timestamps for envelopes. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "meshzero/msg.h"

int64_t mz_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The instants RFC 3339 can write: 0000-01-01 to 9999-12-31T23:59:59.999. */
#define MZ_TIME_MIN_MS (-62167219200000LL)
#define MZ_TIME_MAX_MS 253402300799999LL

void mz_time_format(int64_t ms, char buf[32])
{
    char tmp[96];              /* room for any int fields, keeps gcc's truncation check quiet */
    int64_t secs, frac;
    struct tm tm;
    time_t t;

    /* Clamped, so the output is always something mz_time_parse accepts. */
    if (ms < MZ_TIME_MIN_MS)
        ms = MZ_TIME_MIN_MS;
    if (ms > MZ_TIME_MAX_MS)
        ms = MZ_TIME_MAX_MS;
    /* Floor division, so times before 1970 keep a positive millisecond part. */
    secs = ms / 1000;
    frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    t = (time_t)secs;
    if (gmtime_r(&t, &tm) == NULL) {
        memcpy(buf, "1970-01-01T00:00:00.000Z", sizeof "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    tmp[31] = '\0';
    memcpy(buf, tmp, strlen(tmp) + 1);
}

/* Reads exactly n ASCII digits at *p, advancing it. */
static bool s_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool s_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard
 * Hinnant's days_from_civil). Done by hand instead of timegm(): it is exact
 * for every year 0000-9999 and has no -1 error value to confuse with
 * 1969-12-31T23:59:59. */
static int64_t s_days_from_civil(int y, int m, int d)
{
    int64_t yy = y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

bool mz_time_parse(const char *s, int64_t *ms)
{
    static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int year, mon, day, hour, min, sec, oh = 0, om = 0, frac = 0, sign = 0;
    const char *p = s;

    if (s == NULL)
        return false;
    if (!s_digits(&p, 4, &year) || *p++ != '-' || !s_digits(&p, 2, &mon) || *p++ != '-'
        || !s_digits(&p, 2, &day))
        return false;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return false;
    p++;
    if (!s_digits(&p, 2, &hour) || *p++ != ':' || !s_digits(&p, 2, &min) || *p++ != ':'
        || !s_digits(&p, 2, &sec))
        return false;
    if (*p == '.') {
        int ndig = 0;
        p++;
        /* Any number of digits; only the first three matter for ms. */
        while (*p >= '0' && *p <= '9') {
            if (ndig < 3)
                frac = frac * 10 + (*p - '0');
            ndig++;
            p++;
        }
        if (ndig == 0)
            return false;
        for (; ndig < 3; ndig++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = (*p == '+') ? 1 : -1;
        p++;
        if (!s_digits(&p, 2, &oh) || *p++ != ':' || !s_digits(&p, 2, &om))
            return false;
        if (oh > 23 || om > 59)
            return false;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    if (mon < 1 || mon > 12 || day < 1
        || day > mdays[mon - 1] + (mon == 2 && s_leap(year) ? 1 : 0)
        || hour > 23 || min > 59 || sec > 60)
        return false;
    if (ms != NULL) {
        int64_t t = s_days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
        /* Local time = UTC + offset, so subtract it to get UTC. */
        t -= (int64_t)sign * (oh * 3600 + om * 60);
        *ms = t * 1000 + frac;
    }
    return true;
}
