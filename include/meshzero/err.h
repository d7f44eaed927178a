/* meshzero status codes and the caller-owned error message. */
#ifndef MESHZERO_ERR_H
#define MESHZERO_ERR_H

#define MZ_STATUS_MAP(X)                                  \
    X(OK,          "success")                             \
    X(EINVAL,      "invalid argument")                    \
    X(ENOMEM,      "out of memory")                       \
    X(EPROTO,      "protocol violation")                  \
    X(ESIG,        "signature check failed")              \
    X(ELIMIT,      "limit exceeded")                      \
    X(ENOTFOUND,   "not found")                           \
    X(EEXIST,      "already exists")                      \
    X(EIO,         "I/O error")                           \
    X(ESTATE,      "wrong state")                         \
    X(ETIMEOUT,    "timed out")                           \
    X(EUNREACHABLE,"unreachable")

typedef enum {
#define MZ_X(name, text) MZ_##name,
    MZ_STATUS_MAP(MZ_X)
#undef MZ_X
} mz_status;

/* Filled by a failing call: the code again, and a sentence naming what was
 * wrong and where. Callers may pass NULL where they do not want the text. */
typedef struct mz_err {
    mz_status code;
    char msg[256];
} mz_err;

/* Sets err (may be NULL) and returns code, so a failure is one line. */
mz_status mz_err_set(mz_err *err, mz_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "EPROTO" for MZ_EPROTO: the stable name used in JSON output. */
const char *mz_status_name(mz_status s);
/* "protocol violation" for MZ_EPROTO. */
const char *mz_status_text(mz_status s);

#endif
