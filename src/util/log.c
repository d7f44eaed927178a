#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"
#include "meshzero/msg.h"

/* Process-wide by design (see log.h): -1 means "read MESHZERO_LOG first". */
static int s_level = -1;
static mz_log_sink s_sink;
static void *s_sink_ctx;

static const char *const s_names[] = { "DEBUG", "INFO ", "WARN ", "ERROR" };

int mz_log_level(void)
{
    if (s_level < 0) {
        const char *e = getenv("MESHZERO_LOG");
        s_level = MZ_LOG_WARN;
        if (e && strcasecmp(e, "debug") == 0) s_level = MZ_LOG_DEBUG;
        else if (e && strcasecmp(e, "info") == 0) s_level = MZ_LOG_INFO;
        else if (e && strcasecmp(e, "error") == 0) s_level = MZ_LOG_ERROR;
        else if (e && strcasecmp(e, "off") == 0) s_level = MZ_LOG_OFF;
    }
    return s_level;
}

void mz_log_set_level(int level) { s_level = level; }

void mz_log_set_sink(mz_log_sink sink, void *ctx)
{
    s_sink = sink;
    s_sink_ctx = ctx;
}

void mz_log_raw(int level, const char *who, const char *fmt, ...)
{
    char line[1024], ts[32];
    va_list ap;
    int n;

    if (level < mz_log_level())
        return;
    if (level < MZ_LOG_DEBUG) level = MZ_LOG_DEBUG;
    if (level > MZ_LOG_ERROR) level = MZ_LOG_ERROR;
    mz_time_format(mz_now_ms(), ts);
    n = snprintf(line, sizeof line, "%s %s [%s] ", ts, s_names[level], who ? who : "-");
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (s_sink)
        s_sink(level, line, s_sink_ctx);
    else
        fprintf(stderr, "%s\n", line);
}
