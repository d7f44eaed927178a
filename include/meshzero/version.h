/* The library's version. CMakeLists.txt reads these three lines, so they
 * are the one place the version is written. Plain C, no dependencies. */
#ifndef MESHZERO_VERSION_H
#define MESHZERO_VERSION_H

#define MZ_VERSION_MAJOR 0
#define MZ_VERSION_MINOR 1
#define MZ_VERSION_PATCH 0

#define MZ_VERSION_STR_(x) #x
#define MZ_VERSION_STR(x) MZ_VERSION_STR_(x)
/* "0.1.0" */
#define MZ_VERSION_STRING MZ_VERSION_STR(MZ_VERSION_MAJOR) "." \
    MZ_VERSION_STR(MZ_VERSION_MINOR) "." MZ_VERSION_STR(MZ_VERSION_PATCH)
/* The peer protocol this version speaks (the hello's "protocol"). */
#define MZ_PROTOCOL_VERSION "meshzero/1"

/* The version of the library actually linked, which may differ from the
 * header's MZ_VERSION_STRING when a program runs against a newer shared
 * library: "MAJOR.MINOR.PATCH". Static storage. */
const char *mz_version(void);

#endif
