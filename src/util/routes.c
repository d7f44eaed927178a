/* Routing table: a hash map from destination node id to its two best known
 * paths (PROTOCOL.md "Routes" gives the ranking). The second path is the
 * fail-over: when the first link closes, or calls through it go unanswered
 * and it is demoted, traffic moves at once instead of waiting for a new
 * broadcast. Expired paths stay in the map (invisible to lookups) until
 * mz_routes_expire or a fresh offer replaces them. */
#include <stdlib.h>

#include "util/hmap.h"
#include "util/routes.h"

#define MZ_PATHS 2

struct mz_path {
    bool set;               /* false: an empty slot */
    uint64_t link;          /* next hop */
    int hops;               /* distance to the destination */
    int64_t expires_ms;     /* usable while now_ms < expires_ms */
    int64_t demoted_ms;     /* ranked last while now_ms < demoted_ms */
};

struct mz_route {
    struct mz_path p[MZ_PATHS];
};

struct mz_routes {
    mz_hmap *by_dest;   /* dest node id -> struct mz_route (owned) */
};

mz_status mz_routes_new(mz_routes **out, mz_err *err)
{
    mz_routes *r = calloc(1, sizeof *r);

    *out = NULL;
    if (r == NULL)
        goto fail;
    r->by_dest = mz_hmap_new();
    if (r->by_dest == NULL)
        goto fail;
    *out = r;
    return MZ_OK;
fail:
    mz_routes_free(r);
    return mz_err_set(err, MZ_ENOMEM, "routes: allocating table");
}

void mz_routes_free(mz_routes *r)
{
    if (r == NULL)
        return;
    mz_hmap_free(r->by_dest, free);
    free(r);
}

static bool s_usable(const struct mz_path *p, int64_t now_ms)
{
    return p->set && p->expires_ms > now_ms;
}

/* True when a ranks before b: usable, then not demoted, then fewer hops;
 * on a tie the earlier slot (the incumbent) stays first. */
static bool s_better(const struct mz_path *a, const struct mz_path *b, int64_t now_ms)
{
    bool da = a->demoted_ms > now_ms, db = b->demoted_ms > now_ms;

    if (!s_usable(a, now_ms) || !s_usable(b, now_ms))
        return s_usable(a, now_ms) && !s_usable(b, now_ms);
    if (da != db)
        return db;
    return a->hops < b->hops;
}

/* Keeps the best path in slot 0. */
static void s_sort(struct mz_route *rt, int64_t now_ms)
{
    if (s_better(&rt->p[1], &rt->p[0], now_ms)) {
        struct mz_path t = rt->p[0];
        rt->p[0] = rt->p[1];
        rt->p[1] = t;
    }
}

static struct mz_route *s_get_or_add(mz_routes *r, const char *dest)
{
    struct mz_route *rt = mz_hmap_get(r->by_dest, dest);

    if (rt != NULL)
        return rt;
    rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    if (mz_hmap_put(r->by_dest, dest, rt, NULL) != MZ_OK) {
        free(rt);
        return NULL;
    }
    return rt;
}

/* The slot an offer through link goes to: the link's own (refresh), else an
 * empty or expired one, else the second one when the offer outranks it. */
static struct mz_path *s_slot_for(struct mz_route *rt, uint64_t link, int hops, int64_t now_ms)
{
    struct mz_path cand = { true, link, hops, INT64_MAX, 0 };

    for (int i = 0; i < MZ_PATHS; i++)
        if (rt->p[i].set && rt->p[i].link == link)
            return &rt->p[i];
    for (int i = 0; i < MZ_PATHS; i++)
        if (!s_usable(&rt->p[i], now_ms)) {
            rt->p[i].demoted_ms = 0;
            return &rt->p[i];
        }
    {
        struct mz_path *worse = s_better(&rt->p[0], &rt->p[1], now_ms) ? &rt->p[1] : &rt->p[0];
        if (!s_better(&cand, worse, now_ms))
            return NULL;
        worse->demoted_ms = 0;
        return worse;
    }
}

/* An offer that is already expired, or has a negative distance, is ignored:
 * it could only replace a usable route with an unusable one. A refresh keeps
 * a demotion: the path still has to deliver again to earn its rank back. */
bool mz_routes_offer(mz_routes *r, const char *dest, uint64_t link, int hops,
                     int64_t expires_ms, int64_t now_ms)
{
    struct mz_route *rt;
    struct mz_path *slot, before;
    bool had;

    if (hops < 0 || expires_ms <= now_ms)
        return false;
    if ((rt = s_get_or_add(r, dest)) == NULL)
        return false;
    s_sort(rt, now_ms);   /* a demotion or an expiry may have ended */
    had = s_usable(&rt->p[0], now_ms);
    before = rt->p[0];
    if ((slot = s_slot_for(rt, link, hops, now_ms)) == NULL)
        return false;
    slot->set = true;
    slot->link = link;
    slot->hops = hops;
    slot->expires_ms = expires_ms;
    s_sort(rt, now_ms);
    return !had || rt->p[0].link != before.link || rt->p[0].hops != before.hops;
}

bool mz_routes_lookup(const mz_routes *r, const char *dest, int64_t now_ms,
                      uint64_t *link, int *hops)
{
    const struct mz_route *rt = mz_hmap_get(r->by_dest, dest);
    const struct mz_path *best;

    if (rt == NULL)
        return false;
    /* A demotion or an expiry since the last offer may have changed the order. */
    best = s_better(&rt->p[1], &rt->p[0], now_ms) ? &rt->p[1] : &rt->p[0];
    if (!s_usable(best, now_ms))
        return false;
    if (link != NULL)
        *link = best->link;
    if (hops != NULL)
        *hops = best->hops;
    return true;
}

bool mz_routes_lookup_except(const mz_routes *r, const char *dest, int64_t now_ms,
                             uint64_t except, uint64_t *link)
{
    const struct mz_route *rt = mz_hmap_get(r->by_dest, dest);
    const struct mz_path *best = NULL;

    if (rt == NULL)
        return false;
    for (int i = 0; i < MZ_PATHS; i++) {
        const struct mz_path *p = &rt->p[i];
        if (s_usable(p, now_ms) && p->link != except && (best == NULL || s_better(p, best, now_ms)))
            best = p;
    }
    if (best == NULL)
        return false;
    *link = best->link;
    return true;
}

bool mz_routes_demote(mz_routes *r, const char *dest, uint64_t link, int64_t until_ms,
                      int64_t now_ms)
{
    struct mz_route *rt = mz_hmap_get(r->by_dest, dest);

    if (rt == NULL)
        return false;
    for (int i = 0; i < MZ_PATHS; i++)
        if (rt->p[i].set && rt->p[i].link == link && s_usable(&rt->p[i], now_ms)) {
            rt->p[i].demoted_ms = until_ms;
            s_sort(rt, now_ms);
            return true;
        }
    return false;
}

/* Clears the paths through link (by_link) or expired by now_ms, and removes
 * destinations left without a path. Returns how many paths went. */
static size_t s_sweep(mz_routes *r, bool by_link, uint64_t link, int64_t now_ms)
{
    size_t pos = 0, n = 0;
    const char *dest;
    void *val;

    while (mz_hmap_next(r->by_dest, &pos, &dest, &val)) {
        struct mz_route *rt = val;
        bool left = false;
        for (int i = 0; i < MZ_PATHS; i++) {
            struct mz_path *p = &rt->p[i];
            if (p->set && (by_link ? p->link == link : !s_usable(p, now_ms))) {
                p->set = false;
                n++;
            }
            left = left || p->set;
        }
        if (!left) {
            free(mz_hmap_remove(r->by_dest, dest));   /* mz_hmap_next allows this */
        } else if (!rt->p[0].set) {
            rt->p[0] = rt->p[1];                      /* the fail-over moves up */
            rt->p[1].set = false;
        }
    }
    return n;
}

size_t mz_routes_drop_link(mz_routes *r, uint64_t link)
{
    return s_sweep(r, true, link, INT64_MIN);
}

void mz_routes_drop(mz_routes *r, const char *dest)
{
    free(mz_hmap_remove(r->by_dest, dest));
}

size_t mz_routes_expire(mz_routes *r, int64_t now_ms)
{
    return s_sweep(r, false, 0, now_ms);
}

size_t mz_routes_count(const mz_routes *r)
{
    return mz_hmap_count(r->by_dest);
}

void mz_routes_foreach(const mz_routes *r,
                       void (*fn)(const char *dest, uint64_t link, int hops,
                                  int64_t expires_ms, void *ctx),
                       void *ctx)
{
    size_t pos = 0;
    const char *dest;
    void *val;

    while (mz_hmap_next(r->by_dest, &pos, &dest, &val)) {
        const struct mz_route *rt = val;

        if (rt->p[0].set)
            fn(dest, rt->p[0].link, rt->p[0].hops, rt->p[0].expires_ms, ctx);
    }
}
