/* Keyed token buckets over the string hash map. */
#include <stdlib.h>

#include "util/hmap.h"
#include "util/ratelimit.h"

struct mz_bucket {
    double tokens;
    int64_t refill_ms;
};

struct mz_ratelimit {
    mz_hmap *by_key;        /* key -> struct mz_bucket (owned) */
    double rate, burst;
    size_t max_keys;
};

mz_status mz_ratelimit_new(mz_ratelimit **out, double rate, double burst, size_t max_keys,
                           mz_err *err)
{
    mz_ratelimit *rl = calloc(1, sizeof *rl);

    *out = NULL;
    if (rl == NULL || (rl->by_key = mz_hmap_new()) == NULL) {
        free(rl);
        return mz_err_set(err, MZ_ENOMEM, "rate limit: allocating");
    }
    rl->rate = rate;
    rl->burst = burst;
    rl->max_keys = max_keys;
    *out = rl;
    return MZ_OK;
}

void mz_ratelimit_free(mz_ratelimit *rl)
{
    if (rl == NULL)
        return;
    mz_hmap_free(rl->by_key, free);
    free(rl);
}

static void s_refill(const mz_ratelimit *rl, struct mz_bucket *b, int64_t now_ms)
{
    if (now_ms > b->refill_ms) {
        b->tokens += rl->rate * (double)(now_ms - b->refill_ms) / 1000.0;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->refill_ms = now_ms;
    }
}

/* Forgets the buckets that are full again: they hold no history. */
static void s_sweep(mz_ratelimit *rl, int64_t now_ms)
{
    size_t pos = 0;
    const char *key;
    void *val;

    while (mz_hmap_next(rl->by_key, &pos, &key, &val)) {
        s_refill(rl, val, now_ms);
        if (((struct mz_bucket *)val)->tokens >= rl->burst)
            free(mz_hmap_remove(rl->by_key, key));
    }
}

static struct mz_bucket *s_bucket(mz_ratelimit *rl, const char *key, int64_t now_ms)
{
    struct mz_bucket *b = mz_hmap_get(rl->by_key, key);

    if (b != NULL) {
        s_refill(rl, b, now_ms);
        return b;
    }
    if (mz_hmap_count(rl->by_key) >= rl->max_keys) {
        s_sweep(rl, now_ms);
        if (mz_hmap_count(rl->by_key) >= rl->max_keys)
            return NULL;
    }
    if ((b = malloc(sizeof *b)) == NULL)
        return NULL;
    b->tokens = rl->burst;
    b->refill_ms = now_ms;
    if (mz_hmap_put(rl->by_key, key, b, NULL) != MZ_OK) {
        free(b);
        return NULL;
    }
    return b;
}

bool mz_ratelimit_take(mz_ratelimit *rl, const char *key, double cost, int64_t now_ms)
{
    struct mz_bucket *b = s_bucket(rl, key, now_ms);

    if (b == NULL || b->tokens < cost)
        return false;
    b->tokens -= cost;
    return true;
}

double mz_ratelimit_left(mz_ratelimit *rl, const char *key, int64_t now_ms)
{
    struct mz_bucket *b = mz_hmap_get(rl->by_key, key);

    if (b == NULL)
        return rl->burst;
    s_refill(rl, b, now_ms);
    return b->tokens;
}
