/* Routing table (internal): for each node heard of, up to two links that
 * lead towards it (next hops: the best, and a fail-over), with their
 * distance in hops and when each expires. PROTOCOL.md "Routes" ranks them. */
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
 * expires_ms. It refreshes the path through the same link, else fills an
 * empty or expired slot, else replaces the lower-ranked path when it
 * outranks it. Returns true when the best next hop or its distance for dest
 * changed. */
bool mz_routes_offer(mz_routes *r, const char *dest, uint64_t link, int hops,
                     int64_t expires_ms, int64_t now_ms);
/* Finds the best unexpired path; false when none. link/hops may be NULL. */
bool mz_routes_lookup(const mz_routes *r, const char *dest, int64_t now_ms,
                      uint64_t *link, int *hops);
/* The best unexpired path to dest whose link is not `except` (split
 * horizon: a relay never sends a message back where it came from). */
bool mz_routes_lookup_except(const mz_routes *r, const char *dest, int64_t now_ms,
                             uint64_t except, uint64_t *link);
/* Ranks the path to dest through link below any path not demoted, until
 * until_ms (the path stopped delivering). False when there is no such path. */
bool mz_routes_demote(mz_routes *r, const char *dest, uint64_t link, int64_t until_ms,
                      int64_t now_ms);
/* Forgets every path through link (the link closed). Returns how many. */
size_t mz_routes_drop_link(mz_routes *r, uint64_t link);
/* Forgets the route to dest. */
void mz_routes_drop(mz_routes *r, const char *dest);
/* Forgets paths expired by now_ms. Returns how many. */
size_t mz_routes_expire(mz_routes *r, int64_t now_ms);
/* Destinations held, including expired ones mz_routes_expire has not yet purged. */
size_t mz_routes_count(const mz_routes *r);
/* Calls fn for each destination with its first path; fn must not modify
 * the table. */
void mz_routes_foreach(const mz_routes *r,
                       void (*fn)(const char *dest, uint64_t link, int hops,
                                  int64_t expires_ms, void *ctx),
                       void *ctx);

#endif
