/* One leveled logger (internal). Lines go to stderr as
 * "2026-11-25T12:00:00.123Z WARN  [a1b2c3d4e5f6] text"; the library never
 * writes to stdout. The level and the tag are per process: the CLI runs one
 * node per process, and embedders set their own sink. */
#ifndef MZ_LOG_H
#define MZ_LOG_H

#include <jansson.h>

enum { MZ_LOG_DEBUG = 0, MZ_LOG_INFO = 1, MZ_LOG_WARN = 2, MZ_LOG_ERROR = 3, MZ_LOG_OFF = 4 };

typedef void (*mz_log_sink)(int level, const char *line, void *ctx);

/* Level below which lines are skipped (default WARN; env MESHZERO_LOG=debug|info|warn|error). */
void mz_log_set_level(int level);
int mz_log_level(void);
/* Replaces the stderr sink (NULL restores it). */
void mz_log_set_sink(mz_log_sink sink, void *ctx);

void mz_log_raw(int level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Line format (process-wide): text (above) or JSON, one object a line:
 * {"time","level","node","event","fields"}. A plain mz_log line is the
 * event named by `who` with fields {"message": text}. */
enum { MZ_LOG_TEXT = 0, MZ_LOG_JSON = 1 };
void mz_log_set_format(int format);
int mz_log_format(void);
/* The node id JSON lines name (copied; NULL or "" for none). */
void mz_log_set_node(const char *id);

/* A structured line: event (e.g. "link.down") and fields (a JSON object,
 * borrowed, may be NULL). Text: "... [who] event key=value ...", or the
 * string fields.message when there is one. */
void mz_log_event(int level, const char *who, const char *event, const json_t *fields);

#define mz_log(lvl, who, ...)                            \
    do {                                                 \
        if ((lvl) >= mz_log_level())                     \
            mz_log_raw((lvl), (who), __VA_ARGS__);       \
    } while (0)

#endif
