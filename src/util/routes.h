/* Routing table (internal): for each node heard of, the link that leads
 * towards it (next hop), its distance in hops and when the route expires. */
#ifndef MZ_ROUTES_H
#define MZ_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"

typedef struct mz_routes mz_routes;

/* Returns new: an empty table. */
mz_status mz_routes_new(mz_routes **out, mz_err *err);
void mz_routes_free(mz_routes *r);
/* Offers a path to dest through link at distance hops, valid until
 * expires_ms. It replaces the current route when there is none, when the
 * current one has expired by now_ms, when it goes through the same link
 * (refresh), or when it is shorter. Returns true when the table changed its
 * next hop or distance for dest. */
bool mz_routes_offer(mz_routes *r, const char *dest, uint64_t link, int hops,
                     int64_t expires_ms, int64_t now_ms);
/* Finds an unexpired route; false when none. link/hops may be NULL. */
bool mz_routes_lookup(const mz_routes *r, const char *dest, int64_t now_ms,
                      uint64_t *link, int *hops);
/* Forgets every route through link (the link closed). Returns how many. */
size_t mz_routes_drop_link(mz_routes *r, uint64_t link);
/* Forgets the route to dest. */
void mz_routes_drop(mz_routes *r, const char *dest);
/* Forgets routes expired by now_ms. Returns how many. */
size_t mz_routes_expire(mz_routes *r, int64_t now_ms);
/* Routes held, including expired ones mz_routes_expire has not yet purged. */
size_t mz_routes_count(const mz_routes *r);
/* Calls fn for each route; fn must not modify the table. */
void mz_routes_foreach(const mz_routes *r,
                       void (*fn)(const char *dest, uint64_t link, int hops,
                                  int64_t expires_ms, void *ctx),
                       void *ctx);

#endif
