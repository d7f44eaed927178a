/* Evidence and budgets: what a single lying peer must not be able to do.
 * - Routes come only from what the destination signed or sealed; a path
 *   that stops delivering is demoted (PROTOCOL.md "Routes").
 * - A record is stored only when bound to its host (PROTOCOL.md §7 "Host
 *   binding").
 * - What a peer's requests make us send is bounded per asker
 *   (docs/SECURITY.md "Amplification"). */
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "core/node_int.h"

/* The rates come from the node's options (fetch_rate, reply_rate,
 * reply_rate_all); a burst is a few seconds of its rate, and a reply burst
 * at least two messages so one chunk always fits. All askers share one
 * bucket too: new keys cost nothing, so many of them must not multiply the
 * bound. */
#define MZ_FETCH_BURST_S 5.0
#define MZ_REPLY_BURST_S 2.0
/* Askers tracked at once (buckets that refilled are forgotten first). */
#define MZ_GUARD_KEYS   4096

struct mz_guard {
    mz_ratelimit *fetches;      /* asker id -> fetch bucket */
    mz_ratelimit *reply_bytes;  /* asker id -> reply byte bucket */
    mz_ratelimit *reply_all;    /* one bucket ("") for every asker */
};

static struct mz_guard *s_guard(mz_node *node)
{
    struct mz_guard *g = node->guard;
    const mz_node_opts *o = &node->o;
    double floor = 2.0 * (double)o->max_message;
    double burst = MZ_REPLY_BURST_S * o->reply_rate, burst_all = MZ_REPLY_BURST_S * o->reply_rate_all;

    if (g != NULL)
        return g;
    if (burst < floor)
        burst = floor;
    if (burst_all < burst)
        burst_all = burst;
    if ((g = calloc(1, sizeof *g)) == NULL)
        return NULL;
    if (mz_ratelimit_new(&g->fetches, o->fetch_rate, MZ_FETCH_BURST_S * o->fetch_rate,
                         MZ_GUARD_KEYS, NULL) != MZ_OK ||
        mz_ratelimit_new(&g->reply_bytes, o->reply_rate, burst, MZ_GUARD_KEYS, NULL) != MZ_OK ||
        mz_ratelimit_new(&g->reply_all, o->reply_rate_all, burst_all, 1, NULL) != MZ_OK) {
        mz_ratelimit_free(g->fetches);
        mz_ratelimit_free(g->reply_bytes);
        free(g);
        return NULL;
    }
    node->guard = g;
    return g;
}

void mz__guard_free(mz_node *node)
{
    struct mz_guard *g = node->guard;

    if (g == NULL)
        return;
    mz_ratelimit_free(g->fetches);
    mz_ratelimit_free(g->reply_bytes);
    mz_ratelimit_free(g->reply_all);
    free(g);
    node->guard = NULL;
}

bool mz__guard_fetch(mz_node *node, const char *asker)
{
    struct mz_guard *g = s_guard(node);

    if (g != NULL && mz_ratelimit_take(g->fetches, asker, 1.0, mz_now_ms()))
        return true;
    if (node->c.fetch_refused++ % 1000 == 0)
        mz_log(MZ_LOG_WARN, "guard", "node %.12s fetches more than %.0f times a second: "
               "refusing (--fetch-rate; %llu so far)", asker, node->o.fetch_rate,
               (unsigned long long)node->c.fetch_refused);
    return false;
}

bool mz__guard_reply(mz_node *node, const char *asker, size_t bytes)
{
    struct mz_guard *g = s_guard(node);
    int64_t now = mz_now_ms();

    /* Both budgets or neither: look at the shared one before taking. */
    if (g != NULL && mz_ratelimit_left(g->reply_all, "", now) >= (double)bytes &&
        mz_ratelimit_take(g->reply_bytes, asker, (double)bytes, now)) {
        (void)mz_ratelimit_take(g->reply_all, "", (double)bytes, now);
        return true;
    }
    node->c.replies_paced++;
    return false;
}

/* ---- routes ------------------------------------------------------------------- */

/* A copy of a broadcast we already handled, from another link: when it is
 * the sender's own signed alive, that link is a second path to the sender
 * (the fail-over). Verified like the first copy: only what the sender
 * signed teaches a route. */
void mz__evidence_duplicate(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const char *from = mz__msg_sender(msg);
    int64_t now = mz_now_ms();

    if (p->link == NULL || strcmp(mz__msg_type(msg), "alive") != 0 ||
        strcmp(from, mz_identity_id(node->ident)) == 0 || mz__msg_verify(msg, NULL) != MZ_OK)
        return;
    mz_routes_offer(node->routes, from, mz_link_id(p->link), mz__msg_hops(msg) + 1,
                    now + node->o.lease_ms, now);
}

/* A call to host through link went unanswered: that path may drop what it
 * should forward. It ranks below any other path for one lease; a path that
 * is the only one stays in use. */
void mz__evidence_silent(mz_node *node, const char *host, uint64_t link)
{
    int64_t now = mz_now_ms();
    uint64_t best;

    if (!mz_routes_lookup(node->routes, host, now, &best, NULL) || best != link)
        return;
    if (mz_routes_demote(node->routes, host, link, now + node->o.lease_ms, now)) {
        node->c.routes_demoted++;
        mz_log(MZ_LOG_INFO, "guard", "route to %.12s: calls through link %llu go unanswered; "
               "demoted", host, (unsigned long long)link);
    }
}

mz_peer *mz__next_hop_except(mz_node *node, const char *dest, const mz_peer *from)
{
    uint64_t link;

    if (!mz_routes_lookup_except(node->routes, dest, mz_now_ms(),
                                 from->link ? mz_link_id(from->link) : 0, &link))
        return NULL;
    for (mz_peer *q = node->peers; q; q = q->next)
        if (q->up && q->link && mz_link_id(q->link) == link)
            return q;
    return NULL;
}

/* ---- host binding --------------------------------------------------------------- */

bool mz__record_bound(const json_t *rec, const char *from)
{
    const char *host = json_string_value(json_object_get(rec, "node"));
    const char *okey = json_string_value(json_object_get(rec, "owner_key"));

    return host != NULL && (strcmp(host, from) == 0 || (okey != NULL && strcmp(okey, host) == 0));
}

bool mz__evidence_record(mz_node *node, const json_t *rec, const char *from)
{
    const char *host = json_string_value(json_object_get(rec, "node"));
    const char *rid = json_string_value(json_object_get(rec, "resource_id"));

    if (mz__record_bound(rec, from) ||
        (host != NULL && strcmp(host, mz_identity_id(node->ident)) == 0))
        return true;
    if (node->c.unbound_records++ % 1000 == 0)
        mz_log(MZ_LOG_WARN, "guard", "record '%.64s' from %.12s names host %.12s but neither "
               "comes from it nor carries its signature: refused (%llu so far)",
               rid ? rid : "?", from,
               host ? host : "?", (unsigned long long)node->c.unbound_records);
    return false;
}

/* ---- query replies --------------------------------------------------------------- */

/* Cuts res to what fits one sealed message (base64 grows it by 4/3) and
 * charges it to the asker's reply budget. Over budget: res is freed, the
 * asker gets `error` `busy`, and false is returned. */
bool mz__guard_query(mz_node *node, const char *asker, const char *ref, json_t *res)
{
    size_t limit = node->o.max_message > 4096 ? (node->o.max_message - 4096) / 4 * 3 : 0;
    size_t bytes;

    if (res == NULL)
        return true;
    while ((bytes = json_dumpb(res, NULL, 0, JSON_COMPACT)) > limit && json_array_size(res) > 0)
        json_array_remove(res, json_array_size(res) - 1);
    if (mz__guard_reply(node, asker, bytes))
        return true;
    json_decref(res);
    mz__send(node, mz__msg_new("error", mz_identity_id(node->ident), asker,
                              json_pack("{s:s,s:s,s:s}", "ref", ref, "code", "busy", "reason",
                                        "query: over this node's reply budget for the asker; "
                                        "ask again later")),
             NULL, NULL);
    return false;
}
