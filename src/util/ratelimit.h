/* Keyed token buckets (internal): one bucket per key (a peer's node id),
 * refilled at `rate` units per second up to `burst`. Used to bound what a
 * peer's requests can make a node send (docs/SECURITY.md "Amplification"). */
#ifndef MZ_RATELIMIT_H
#define MZ_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"

typedef struct mz_ratelimit mz_ratelimit;

/* Returns new: an empty set of buckets, each starting full. At most
 * max_keys buckets are held; past that, buckets that refilled are forgotten
 * first and a new key is refused while none has. */
mz_status mz_ratelimit_new(mz_ratelimit **out, double rate, double burst, size_t max_keys,
                           mz_err *err);
void mz_ratelimit_free(mz_ratelimit *rl);
/* Takes cost units from key's bucket. False when it holds fewer (nothing
 * is taken): the caller refuses the request. */
bool mz_ratelimit_take(mz_ratelimit *rl, const char *key, double cost, int64_t now_ms);
/* Units left in key's bucket now (burst for an unknown key). */
double mz_ratelimit_left(mz_ratelimit *rl, const char *key, int64_t now_ms);

#endif
