#include <stdarg.h>
#include <stdio.h>

#include "meshzero/err.h"

mz_status mz_err_set(mz_err *err, mz_status code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *mz_status_name(mz_status s)
{
    switch (s) {
#define MZ_X(name, text) case MZ_##name: return #name;
        MZ_STATUS_MAP(MZ_X)
#undef MZ_X
    }
    return "EUNKNOWN";
}

const char *mz_status_text(mz_status s)
{
    switch (s) {
#define MZ_X(name, text) case MZ_##name: return text;
        MZ_STATUS_MAP(MZ_X)
#undef MZ_X
    }
    return "unknown status";
}
