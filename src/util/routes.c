/* Routing table: a hash map from destination node id to its best known
 * route. Expired routes stay in the map (invisible to lookups) until
 * mz_routes_expire or a fresh offer replaces them. */
#include <stdlib.h>

#include "util/hmap.h"
#include "util/routes.h"

struct mz_route {
    uint64_t link;      /* next hop: the link the route goes through */
    int hops;           /* distance to the destination */
    int64_t expires_ms; /* usable while now_ms < expires_ms */
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

static bool s_expired(const struct mz_route *rt, int64_t now_ms)
{
    return rt->expires_ms <= now_ms;
}

/* An offer that is already expired, or has a negative distance, is ignored:
 * it could only replace a usable route with an unusable one. Replacing an
 * expired route counts as a change even with the same link and hops,
 * because to lookups the destination goes from unreachable to reachable. */
bool mz_routes_offer(mz_routes *r, const char *dest, uint64_t link, int hops,
                     int64_t expires_ms, int64_t now_ms)
{
    struct mz_route *rt;
    bool changed;

    if (hops < 0 || expires_ms <= now_ms)
        return false;
    rt = mz_hmap_get(r->by_dest, dest);
    if (rt == NULL) {
        rt = malloc(sizeof *rt);
        if (rt == NULL)
            return false;
        if (mz_hmap_put(r->by_dest, dest, rt, NULL) != MZ_OK) {
            free(rt);
            return false;
        }
        changed = true;
    } else if (s_expired(rt, now_ms)) {
        changed = true;
    } else if (rt->link == link) {
        changed = rt->hops != hops;
    } else if (hops < rt->hops) {
        changed = true;
    } else {
        return false;
    }
    rt->link = link;
    rt->hops = hops;
    rt->expires_ms = expires_ms;
    return changed;
}

bool mz_routes_lookup(const mz_routes *r, const char *dest, int64_t now_ms,
                      uint64_t *link, int *hops)
{
    const struct mz_route *rt = mz_hmap_get(r->by_dest, dest);

    if (rt == NULL || s_expired(rt, now_ms))
        return false;
    if (link != NULL)
        *link = rt->link;
    if (hops != NULL)
        *hops = rt->hops;
    return true;
}

/* Both sweeps remove the current key while iterating, which mz_hmap_next
 * allows. */
size_t mz_routes_drop_link(mz_routes *r, uint64_t link)
{
    size_t pos = 0, n = 0;
    const char *dest;
    void *val;

    while (mz_hmap_next(r->by_dest, &pos, &dest, &val)) {
        if (((struct mz_route *)val)->link != link)
            continue;
        free(mz_hmap_remove(r->by_dest, dest));
        n++;
    }
    return n;
}

void mz_routes_drop(mz_routes *r, const char *dest)
{
    free(mz_hmap_remove(r->by_dest, dest));
}

size_t mz_routes_expire(mz_routes *r, int64_t now_ms)
{
    size_t pos = 0, n = 0;
    const char *dest;
    void *val;

    while (mz_hmap_next(r->by_dest, &pos, &dest, &val)) {
        if (!s_expired(val, now_ms))
            continue;
        free(mz_hmap_remove(r->by_dest, dest));
        n++;
    }
    return n;
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

        fn(dest, rt->link, rt->hops, rt->expires_ms, ctx);
    }
}
