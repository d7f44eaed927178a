/* mz_version(): the linked library's version (meshzero/version.h). */
#include "meshzero/version.h"

const char *mz_version(void)
{
    return MZ_VERSION_STRING;
}
