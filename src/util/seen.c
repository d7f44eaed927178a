/* Recently seen message ids: a ring of 128-bit keyed hashes of the ids,
 * oldest first, and an open-addressing table (linear probing) from hash to
 * ring cell. 24 bytes an id where copies of the ids in a string map took
 * ~150; a node keeps two of these caches of 65,536 ids each.
 *
 * The hash is SipHash-2-4 with a 128-bit output (libsodium's
 * crypto_shorthash_siphashx24) under a random key per cache: a peer cannot
 * choose ids that collide, and two different ids collide by chance with
 * probability ~2^-128 per pair, so a hash stands in for its id. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/seen.h"

/* Longest id accepted; matches MZ_MSG_ID_MAX, the longest id the envelope
 * parser accepts. */
#define MZ_SEEN_ID_MAX 64

typedef struct mz_seen_hash {
    uint64_t lo, hi;
} mz_seen_hash;

struct mz_seen {
    mz_seen_hash *ring;     /* capacity cells */
    size_t capacity;
    size_t start;           /* cell of the oldest id */
    size_t count;           /* ids held: cells start .. start+count-1 (mod capacity) */
    uint32_t *table;        /* slots: ring cell + 1, or 0 when empty */
    size_t mask;            /* slots - 1; slots is a power of two >= 2 * capacity */
    unsigned char key[crypto_shorthash_siphashx24_KEYBYTES];
};

mz_status mz_seen_new(size_t capacity, mz_seen **out, mz_err *err)
{
    mz_seen *s = NULL;
    size_t slots = 2;

    *out = NULL;
    if (capacity == 0 || capacity > (size_t)1 << 30)
        return mz_err_set(err, MZ_EINVAL, "seen cache: capacity %zu out of range", capacity);
    while (slots < 2 * capacity)
        slots *= 2;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto fail;
    s->capacity = capacity;
    s->mask = slots - 1;
    s->ring = malloc(capacity * sizeof *s->ring);
    s->table = calloc(slots, sizeof *s->table);
    if (s->ring == NULL || s->table == NULL)
        goto fail;
    randombytes_buf(s->key, sizeof s->key);
    *out = s;
    return MZ_OK;
fail:
    mz_seen_free(s);
    return mz_err_set(err, MZ_ENOMEM, "seen cache: allocating %zu ids", capacity);
}

void mz_seen_free(mz_seen *s)
{
    if (s == NULL)
        return;
    free(s->ring);
    free(s->table);
    free(s);
}

static mz_seen_hash s_hash(const mz_seen *s, const char *id, size_t len)
{
    unsigned char h[crypto_shorthash_siphashx24_BYTES];
    mz_seen_hash r;

    crypto_shorthash_siphashx24(h, (const unsigned char *)id, len, s->key);
    memcpy(&r.lo, h, 8);
    memcpy(&r.hi, h + 8, 8);
    return r;
}

/* The slot holding h, or the empty slot where it would go. */
static size_t s_find(const mz_seen *s, mz_seen_hash h)
{
    size_t i = (size_t)h.lo & s->mask;

    for (;;) {
        uint32_t c = s->table[i];
        if (c == 0)
            return i;
        if (s->ring[c - 1].lo == h.lo && s->ring[c - 1].hi == h.hi)
            return i;
        i = (i + 1) & s->mask;
    }
}

/* Empties slot i and moves later entries of its probe run back into the
 * gap, so every entry stays reachable from its home slot without tombstones. */
static void s_remove_slot(mz_seen *s, size_t i)
{
    size_t j = i;

    s->table[i] = 0;
    for (;;) {
        size_t home;
        j = (j + 1) & s->mask;
        if (s->table[j] == 0)
            return;
        home = (size_t)s->ring[s->table[j] - 1].lo & s->mask;
        /* Move j to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->table[i] = s->table[j];
            s->table[j] = 0;
            i = j;
        }
    }
}

bool mz_seen_check_add(mz_seen *s, const char *id)
{
    size_t len = strlen(id), slot, cell;
    mz_seen_hash h;

    /* Longer than any valid message id: the envelope parser refuses these,
     * so they never reach here; if one does, fail closed. */
    if (len > MZ_SEEN_ID_MAX)
        return true;
    h = s_hash(s, id, len);
    slot = s_find(s, h);
    if (s->table[slot] != 0)
        return true;
    if (s->count == s->capacity) {
        s_remove_slot(s, s_find(s, s->ring[s->start]));
        s->start = (s->start + 1) % s->capacity;
        s->count--;
        slot = s_find(s, h);    /* the removal may have moved entries */
    }
    cell = (s->start + s->count) % s->capacity;
    s->ring[cell] = h;
    s->table[slot] = (uint32_t)(cell + 1);
    s->count++;
    return false;
}

bool mz_seen_contains(const mz_seen *s, const char *id)
{
    size_t len = strlen(id);

    if (len > MZ_SEEN_ID_MAX)
        return false;
    return s->table[s_find(s, s_hash(s, id, len))] != 0;
}

size_t mz_seen_count(const mz_seen *s)
{
    return s->count;
}
