/* ResourceDirectory internals for tests (internal). */
#ifndef MZ_DIRECTORY_INT_H
#define MZ_DIRECTORY_INT_H

#include "meshzero/directory.h"

/* Checks every index against the records: each list entry names a live
 * record that belongs in it and knows its position there, each (type,
 * capability) pair is non-empty and chained from its capability, counts
 * and filter words agree. O(records); for tests. MZ_EPROTO names the first
 * broken rule. */
mz_status mz__directory_check(const mz_directory *dir, mz_err *err);

#endif
