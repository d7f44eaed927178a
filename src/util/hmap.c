/* String-keyed hash map: open addressing with linear probing over a
 * power-of-two table, grown (or cleaned) when live entries plus tombstones
 * pass 3/4 of it.
 *
 * Deletion leaves a tombstone rather than shifting later entries back. That
 * costs a periodic rehash under heavy churn but it is what makes
 * "remove the current key, then keep iterating" safe: no live entry ever
 * moves except inside mz_hmap_put, so an iteration neither skips nor repeats
 * an entry when the key it just returned is removed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util/hmap.h"

/* Smallest table allocated; keeps tiny maps to one small block. */
#define MZ_HMAP_MIN_CAP 8

/* A slot is live when key != NULL; otherwise hash tells empty (0) from
 * tombstone (1). */
struct mz_hmap_slot {
    char *key;      /* owned copy; NULL when empty or tombstone */
    void *val;      /* borrowed from the caller */
    uint64_t hash;  /* full hash of key, or the empty/tombstone marker */
};

#define MZ_HMAP_EMPTY 0
#define MZ_HMAP_TOMB  1

struct mz_hmap {
    struct mz_hmap_slot *slots; /* cap entries; NULL until the first put */
    size_t cap;                 /* power of two, or 0 */
    size_t count;               /* live entries */
    size_t tombs;               /* tombstones; count + tombs < cap always */
    uint64_t seed;              /* per-map hash seed (see mz_hmap_seed) */
};

static uint64_t s_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* MurmurHash3's 64-bit finaliser: every input bit reaches every output bit. */
static uint64_t s_fmix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

uint64_t mz_hmap_hash(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = s_fmix(seed ^ 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)len * 0x87c37b91114253d5ULL);
    uint64_t w;

    /* A word at a time (murmur3 x64 lane); memcpy keeps unaligned reads
     * defined. The value depends on byte order, which is fine in memory. */
    while (len >= 8) {
        memcpy(&w, p, 8);
        w *= 0x87c37b91114253d5ULL;
        w = s_rotl(w, 31);
        w *= 0x4cf5ad432745937fULL;
        h ^= w;
        h = s_rotl(h, 27) * 5 + 0x52dce729;
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        w = 0;
        memcpy(&w, p, len);
        w *= 0x87c37b91114253d5ULL;
        w = s_rotl(w, 31);
        w *= 0x4cf5ad432745937fULL;
        h ^= w;
    }
    return s_fmix(h);
}

uint64_t mz_hmap_seed(void)
{
    uint64_t seed = 0;
    struct timespec ts;

    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* Only before the kernel pool is ready: weak, but still unknown to a
     * remote peer, and the map works with any seed. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return s_fmix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                  (uint64_t)(uintptr_t)&seed);
}

mz_hmap *mz_hmap_new(void)
{
    mz_hmap *h = calloc(1, sizeof *h);

    if (h != NULL)
        h->seed = mz_hmap_seed();
    return h;
}

void mz_hmap_free(mz_hmap *h, void (*free_val)(void *val))
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->cap; i++) {
        if (h->slots[i].key == NULL)
            continue;
        if (free_val != NULL)
            free_val(h->slots[i].val);
        free(h->slots[i].key);
    }
    free(h->slots);
    free(h);
}

/* Index of key's slot, or SIZE_MAX. Terminates because at least one slot
 * is always empty (the load limit counts tombstones). */
static size_t s_find(const mz_hmap *h, const char *key, uint64_t hash)
{
    size_t mask = h->cap - 1;
    size_t i = (size_t)hash & mask;

    if (h->cap == 0)
        return SIZE_MAX;
    for (;;) {
        const struct mz_hmap_slot *s = &h->slots[i];

        if (s->key == NULL) {
            if (s->hash == MZ_HMAP_EMPTY)
                return SIZE_MAX;
        } else if (s->hash == hash && strcmp(s->key, key) == 0) {
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Rebuilds the table at a size where need entries fill at most half of it,
 * dropping every tombstone. May shrink. */
static mz_status s_rehash(mz_hmap *h, size_t need)
{
    size_t cap = MZ_HMAP_MIN_CAP;
    struct mz_hmap_slot *slots;

    while (cap / 2 < need) {
        if (cap > SIZE_MAX / 2 / sizeof *slots)
            return MZ_ENOMEM;
        cap *= 2;
    }
    slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return MZ_ENOMEM;
    for (size_t i = 0; i < h->cap; i++) {
        const struct mz_hmap_slot *s = &h->slots[i];
        size_t j;

        if (s->key == NULL)
            continue;
        j = (size_t)s->hash & (cap - 1);
        while (slots[j].key != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(h->slots);
    h->slots = slots;
    h->cap = cap;
    h->tombs = 0;
    return MZ_OK;
}

void *mz_hmap_get(const mz_hmap *h, const char *key)
{
    size_t i;

    if (h->count == 0)
        return NULL;
    i = s_find(h, key, mz_hmap_hash(h->seed, key, strlen(key)));
    return i == SIZE_MAX ? NULL : h->slots[i].val;
}

mz_status mz_hmap_put(mz_hmap *h, const char *key, void *val, void **old)
{
    size_t len = strlen(key);
    uint64_t hash = mz_hmap_hash(h->seed, key, len);
    size_t i = s_find(h, key, hash);
    char *copy;

    if (old != NULL)
        *old = NULL;
    if (i != SIZE_MAX) {
        if (old != NULL)
            *old = h->slots[i].val;
        h->slots[i].val = val;
        return MZ_OK;
    }
    copy = malloc(len + 1);
    if (copy == NULL)
        return MZ_ENOMEM;
    memcpy(copy, key, len + 1);
    if ((h->count + h->tombs + 1) * 4 > h->cap * 3 &&
        s_rehash(h, h->count + 1) != MZ_OK) {
        free(copy);
        return MZ_ENOMEM;
    }
    /* The key is absent, so the first free slot on its probe path will do,
     * tombstone or not. */
    i = (size_t)hash & (h->cap - 1);
    while (h->slots[i].key != NULL)
        i = (i + 1) & (h->cap - 1);
    if (h->slots[i].hash == MZ_HMAP_TOMB)
        h->tombs--;
    h->slots[i].key = copy;
    h->slots[i].val = val;
    h->slots[i].hash = hash;
    h->count++;
    return MZ_OK;
}

void *mz_hmap_remove(mz_hmap *h, const char *key)
{
    size_t mask = h->cap - 1;
    size_t i;
    void *val;

    if (h->count == 0)
        return NULL;
    i = s_find(h, key, mz_hmap_hash(h->seed, key, strlen(key)));
    if (i == SIZE_MAX)
        return NULL;
    val = h->slots[i].val;
    free(h->slots[i].key);
    h->slots[i].key = NULL;
    h->count--;
    if (h->slots[(i + 1) & mask].key == NULL &&
        h->slots[(i + 1) & mask].hash == MZ_HMAP_EMPTY) {
        /* Nothing probes past an empty slot, so this slot and the
         * tombstones just before it can become empty too. Only dead slots
         * change, which keeps iteration safe. */
        h->slots[i].hash = MZ_HMAP_EMPTY;
        i = (i - 1) & mask;
        while (h->slots[i].key == NULL && h->slots[i].hash == MZ_HMAP_TOMB) {
            h->slots[i].hash = MZ_HMAP_EMPTY;
            h->tombs--;
            i = (i - 1) & mask;
        }
    } else {
        h->slots[i].hash = MZ_HMAP_TOMB;
        h->tombs++;
    }
    return val;
}

size_t mz_hmap_count(const mz_hmap *h)
{
    return h->count;
}

/* *pos is the next slot to look at. Removing the key just returned only
 * turns its slot (and maybe dead neighbours) empty; live entries stay put,
 * so continuing from *pos visits each remaining key exactly once. */
bool mz_hmap_next(const mz_hmap *h, size_t *pos, const char **key, void **val)
{
    for (size_t i = *pos; i < h->cap; i++) {
        if (h->slots[i].key == NULL)
            continue;
        if (key != NULL)
            *key = h->slots[i].key;
        if (val != NULL)
            *val = h->slots[i].val;
        *pos = i + 1;
        return true;
    }
    *pos = h->cap;
    return false;
}
