#include <stdarg.h>
#include <stdbool.h>
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

static int s_format = MZ_LOG_TEXT;
static char s_node[65];

void mz_log_set_format(int format) { s_format = format; }
int mz_log_format(void) { return s_format; }

void mz_log_set_node(const char *id)
{
    snprintf(s_node, sizeof s_node, "%s", id ? id : "");
}

static void s_emit(int level, const char *line)
{
    if (s_sink)
        s_sink(level, line, s_sink_ctx);
    else
        fprintf(stderr, "%s\n", line);
}

/* One JSON line; fields borrowed. */
static void s_emit_json(int level, const char *ts, const char *event, const json_t *fields)
{
    static const char *const lv[] = { "debug", "info", "warn", "error" };
    json_t *o = json_pack("{s:s,s:s,s:s?,s:s,s:O}", "time", ts, "level", lv[level], "node",
                          s_node[0] ? s_node : NULL, "event", event ? event : "-", "fields",
                          fields ? (json_t *)fields : json_object());
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

    if (text != NULL)
        s_emit(level, text);
    free(text);
    json_decref(o);
}

static int s_clamp(int level)
{
    return level < MZ_LOG_DEBUG ? MZ_LOG_DEBUG : level > MZ_LOG_ERROR ? MZ_LOG_ERROR : level;
}

/* key=value, the value bare when it is a plain word, else as JSON. */
static size_t s_text_field(char *out, size_t cap, const char *key, const json_t *v)
{
    const char *sv = json_string_value(v);
    bool bare = sv != NULL && sv[0] != '\0' && strpbrk(sv, " \t\n\"=\\") == NULL;
    char *enc = bare ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int n = snprintf(out, cap, " %s=%s", key, bare ? sv : enc ? enc : "?");

    free(enc);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

void mz_log_event(int level, const char *who, const char *event, const json_t *fields)
{
    char line[2048], ts[32];
    const char *key, *msg;
    json_t *v;
    size_t n;
    int k;

    if (level < mz_log_level())
        return;
    level = s_clamp(level);
    mz_time_format(mz_now_ms(), ts);
    if (s_format == MZ_LOG_JSON) {
        s_emit_json(level, ts, event, fields);
        return;
    }
    /* An event with a message reads as that sentence; others as key=value. */
    msg = json_string_value(json_object_get(fields, "message"));
    k = snprintf(line, sizeof line, "%s %s [%s] %s", ts, s_names[level], who ? who : "-",
                 msg ? msg : event ? event : "-");
    n = k < 0 ? 0 : (size_t)k >= sizeof line ? sizeof line - 1 : (size_t)k;
    json_object_foreach((json_t *)fields, key, v)
        if (msg == NULL)
            n += s_text_field(line + n, sizeof line - n, key, v);
    s_emit(level, line);
}

void mz_log_raw(int level, const char *who, const char *fmt, ...)
{
    char line[1024], ts[32];
    va_list ap;
    int n;

    if (level < mz_log_level())
        return;
    level = s_clamp(level);
    mz_time_format(mz_now_ms(), ts);
    if (s_format == MZ_LOG_JSON) {
        json_t *f, *m;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        f = json_object();
        /* Text quoting peer input may not be UTF-8: JSON lines must stay valid. */
        if ((m = json_string(line)) == NULL)
            m = json_string("(not UTF-8)");
        json_object_set_new(f, "message", m);
        s_emit_json(level, ts, who, f);
        json_decref(f);
        return;
    }
    n = snprintf(line, sizeof line, "%s %s [%s] ", ts, s_names[level], who ? who : "-");
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    s_emit(level, line);
}
