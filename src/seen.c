/* Recently seen message ids: a ring of fixed-size id cells, oldest first,
 * plus a hash map from id to cell for membership. */
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "seen.h"

/* Longest id stored; matches MZ_MSG_ID_MAX, the longest id the envelope
 * parser accepts, so every valid message id fits a cell. */
#define MZ_SEEN_ID_MAX 64

struct mz_seen {
    char (*ring)[MZ_SEEN_ID_MAX + 1]; /* capacity cells, each an id copy */
    size_t capacity;                  /* cells in ring */
    size_t start;                     /* cell of the oldest id */
    size_t count;                     /* ids held: cells start .. start+count-1 */
    mz_hmap *index;                   /* id -> its cell; keys are copies */
};

mz_status mz_seen_new(size_t capacity, mz_seen **out, mz_err *err)
{
    mz_seen *s = NULL;

    *out = NULL;
    if (capacity == 0 || capacity > SIZE_MAX / sizeof *s->ring)
        return mz_err_set(err, MZ_EINVAL, "seen cache: capacity %zu out of range", capacity);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto fail;
    s->capacity = capacity;
    s->ring = malloc(capacity * sizeof *s->ring);
    if (s->ring == NULL)
        goto fail;
    s->index = mz_hmap_new();
    if (s->index == NULL)
        goto fail;
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
    mz_hmap_free(s->index, NULL);   /* values point into ring */
    free(s->ring);
    free(s);
}

bool mz_seen_check_add(mz_seen *s, const char *id)
{
    size_t len = strlen(id);
    char *cell;

    if (mz_hmap_get(s->index, id) != NULL)
        return true;
    /* Longer than any valid message id: the envelope parser refuses these,
     * so they never reach here; if one does, fail closed rather than
     * truncate (two ids sharing a prefix would then collide). */
    if (len > MZ_SEEN_ID_MAX)
        return true;
    if (s->count == s->capacity) {
        mz_hmap_remove(s->index, s->ring[s->start]);
        s->start = (s->start + 1) % s->capacity;
        s->count--;
    }
    cell = s->ring[(s->start + s->count) % s->capacity];
    memcpy(cell, id, len + 1);
    /* On failure the ring simply holds one id fewer; the eviction above
     * already kept it consistent. */
    if (mz_hmap_put(s->index, cell, cell, NULL) != MZ_OK)
        return true;
    s->count++;
    return false;
}

bool mz_seen_contains(const mz_seen *s, const char *id)
{
    return mz_hmap_get(s->index, id) != NULL;
}

size_t mz_seen_count(const mz_seen *s)
{
    return s->count;
}
