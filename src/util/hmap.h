/* A string-keyed open-addressing hash map (internal). Keys are copied;
 * values are borrowed pointers the caller owns. */
#ifndef MZ_HMAP_H
#define MZ_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"

typedef struct mz_hmap mz_hmap;

/* Returns new, or NULL when out of memory. */
mz_hmap *mz_hmap_new(void);
/* Frees the map and its key copies; calls free_val (may be NULL) on each value. */
void mz_hmap_free(mz_hmap *h, void (*free_val)(void *val));
void *mz_hmap_get(const mz_hmap *h, const char *key);
/* Inserts or replaces. *old (may be NULL) gets the replaced value or NULL.
 * MZ_ENOMEM leaves the map unchanged. */
mz_status mz_hmap_put(mz_hmap *h, const char *key, void *val, void **old);
/* Removes key; returns its value, or NULL if absent. */
void *mz_hmap_remove(mz_hmap *h, const char *key);
size_t mz_hmap_count(const mz_hmap *h);
/* Iteration: start with *pos = 0; returns false at the end. The map must
 * not be modified during iteration, except removing the current key with
 * mz_hmap_remove followed by continuing (documented in hmap.c). */
bool mz_hmap_next(const mz_hmap *h, size_t *pos, const char **key, void **val);

/* The map's 64-bit hash of len bytes, shared with the directory's own
 * tables so the code base has one hash to tune. Not cryptographic; the seed
 * keeps peers from choosing keys that all collide (hash flooding). */
uint64_t mz_hmap_hash(uint64_t seed, const void *data, size_t len);
/* A fresh random seed for mz_hmap_hash (getrandom, falling back to the
 * clock and an address when that fails). Every map draws its own. */
uint64_t mz_hmap_seed(void);

#endif
