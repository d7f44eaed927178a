/* Bounded cache of recently seen message ids (internal): stops a broadcast
 * from being processed or forwarded twice, and a replayed message from
 * being handled again. FIFO eviction when full; 24 bytes per id held. */
#ifndef MZ_SEEN_H
#define MZ_SEEN_H

#include <stdbool.h>
#include <stddef.h>

#include "meshzero/err.h"

/* Message ids remembered for de-duplication of broadcasts. */
#define MZ_DEFAULT_SEEN_CAPACITY 65536

typedef struct mz_seen mz_seen;

/* Returns new: a cache holding at most capacity ids (capacity >= 1). */
mz_status mz_seen_new(size_t capacity, mz_seen **out, mz_err *err);
void mz_seen_free(mz_seen *s);
/* True when id was already in the cache. Otherwise adds it (evicting the
 * oldest id when full) and returns false. An id that cannot be added for
 * lack of memory, or longer than MZ_MSG_ID_MAX (64) bytes, is reported as
 * seen (fail closed: no flood loops). */
bool mz_seen_check_add(mz_seen *s, const char *id);
bool mz_seen_contains(const mz_seen *s, const char *id);
size_t mz_seen_count(const mz_seen *s);

#endif
