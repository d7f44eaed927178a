/* Anti-entropy: per-node digests of the directory, exchanged when a link
 * comes up (link-level "digest" / "fetch" / "sync") and carried by every
 * node's own "alive", so a directory that missed announcements, kept ghosts,
 * or sat on the other side of a partition converges by fetching only the
 * records of the nodes whose digests differ. PROTOCOL.md §6.3 and §6.13. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "node_int.h"

/* How often at most we ask one node for its full record set. */
#define MZ_FETCH_GAP_MS 5000

typedef struct mz_digest {
    uint64_t hash;              /* XOR of the records' hashes */
    uint64_t count;
} mz_digest;

/* A record's contribution: BLAKE2b-64 of resource_id, version, owner key. */
static uint64_t s_rec_hash(const mz_record *rec)
{
    crypto_generichash_state st;
    unsigned char out[8];
    char v[24];
    uint64_t h = 0;

    snprintf(v, sizeof v, "%lld", (long long)mz_record_version(rec));
    crypto_generichash_init(&st, NULL, 0, sizeof out);
    crypto_generichash_update(&st, (const unsigned char *)mz_record_id(rec),
                              strlen(mz_record_id(rec)) + 1);
    crypto_generichash_update(&st, (const unsigned char *)v, strlen(v) + 1);
    crypto_generichash_update(&st, (const unsigned char *)mz_record_owner_key(rec), 64);
    crypto_generichash_final(&st, out, sizeof out);
    for (int i = 0; i < 8; i++)
        h = h << 8 | out[i];
    return h;
}

static bool s_digest_one(const mz_record *rec, void *ctx)
{
    mz_digest *d = ctx;

    d->hash ^= s_rec_hash(rec);
    d->count++;
    return true;
}

static mz_digest s_node_digest(mz_node *node, const char *id)
{
    mz_digest d = { 0, 0 };
    mz_query q;

    memset(&q, 0, sizeof q);
    q.node = id;
    mz_directory_query(node->dir, &q, s_digest_one, &d);
    return d;
}

static void s_hex64(uint64_t h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

json_t *mz__sync_own_digest(mz_node *node)
{
    mz_digest d = s_node_digest(node, mz_identity_id(node->ident));
    char hx[17];

    s_hex64(d.hash, hx);
    return json_pack("{s:I,s:s}", "count", (json_int_t)d.count, "hash", hx);
}

static bool s_same(mz_node *node, const char *id, const json_t *dg)
{
    mz_digest d = s_node_digest(node, id);
    char hx[17];
    const char *h = json_string_value(json_object_get(dg, "hash"));

    s_hex64(d.hash, hx);
    return h != NULL && (json_int_t)d.count == json_integer_value(json_object_get(dg, "count")) &&
           strcmp(h, hx) == 0;
}

/* ---- link up: digests both ways ------------------------------------------ */

void mz__sync_link_up(mz_node *node, mz_peer *p)
{
    json_t *nodes = json_array(), *self = mz__sync_own_digest(node);
    size_t pos = 0;
    const char *id;
    void *val;

    if (nodes == NULL || self == NULL) {
        json_decref(nodes);
        json_decref(self);
        return;
    }
    json_object_update_new(self, json_pack("{s:s,s:s,s:i}", "id", mz_identity_id(node->ident),
                                           "listen", mz_connmgr_listen_url(node->cm), "hops", 0));
    json_array_append_new(nodes, self);
    while (mz_hmap_next(node->nodes, &pos, &id, &val)) {
        mz_nodeinfo *ni = val;
        mz_digest d;
        char hx[17];
        int hops;

        if (strcmp(id, p->peer_id) == 0 ||
            !mz_routes_lookup(node->routes, id, mz_now_ms(), NULL, &hops))
            continue;
        d = s_node_digest(node, id);
        s_hex64(d.hash, hx);
        json_array_append_new(nodes, json_pack("{s:s,s:s,s:i,s:I,s:s}", "id", id, "listen",
                                               ni->listen, "hops", hops, "count",
                                               (json_int_t)d.count, "hash", hx));
    }
    mz__send_link(node, p, mz_msg_new("digest", mz_identity_id(node->ident), p->peer_id,
                                      json_pack("{s:o}", "nodes", nodes)));
}

void mz__sync_on_digest(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *nodes = json_object_get(mz_msg_payload(env), "nodes");
    json_t *want = json_array(), *v;
    int64_t now = mz_now_ms();
    size_t i;

    if (!json_is_array(nodes) || want == NULL) {
        json_decref(want);
        mz__send_error_link(node, p, mz_msg_id(env), "bad_payload", "digest needs a nodes array");
        return;
    }
    json_array_foreach(nodes, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        json_int_t hops = json_integer_value(json_object_get(v, "hops"));
        json_int_t count = json_integer_value(json_object_get(v, "count"));

        if (id == NULL || !mz_id_valid(id) || hops < 0 || hops >= node->o.max_hops ||
            strcmp(id, mz_identity_id(node->ident)) == 0)
            continue;
        /* Peer exchange and routes: every node the peer reaches, through it. */
        mz_routes_offer(node->routes, id, mz_link_id(p->link), (int)hops + 1,
                        now + node->o.lease_ms, now);
        if (mz_hmap_get(node->nodes, id) == NULL || hops == 0)
            mz__node_touch(node, id, json_string_value(json_object_get(v, "listen")),
                           node->o.lease_ms);
        if (count > 0 && !s_same(node, id, v))
            json_array_append_new(want, json_string(id));
    }
    if (json_array_size(want) == 0) {
        json_decref(want);
        return;
    }
    node->c.sync_fetches++;
    mz__send_link(node, p, mz_msg_new("fetch", mz_identity_id(node->ident), p->peer_id,
                                      json_pack("{s:o}", "nodes", want)));
}

/* ---- fetch: answer with the records of the nodes asked for --------------- */

typedef struct sync_out {
    mz_node *node;
    mz_peer *link_peer;         /* reply on this link, or NULL: routed to `to` */
    char to[MZ_ID_HEX_LEN + 1];
    json_t *batch;
    json_t *complete_for;       /* ids this reply is the complete set of, or NULL */
    bool failed;
} sync_out;

static void s_out_flush(sync_out *so, bool last)
{
    json_t *pl = json_pack("{s:o,s:b}", "records", so->batch, "more", !last);
    json_t *env;

    so->batch = json_array();
    if (pl == NULL || so->batch == NULL) {
        json_decref(pl);
        so->failed = true;
        return;
    }
    if (so->complete_for)
        json_object_set(pl, "complete_for", so->complete_for);
    env = mz_msg_new("sync", mz_identity_id(so->node->ident), so->to, pl);
    if (so->link_peer)
        mz__send_link(so->node, so->link_peer, env);
    else
        mz__send(so->node, env, NULL, NULL);
}

static bool s_out_one(const mz_record *rec, void *ctx)
{
    sync_out *so = ctx;
    json_t *j = mz_record_to_json(rec);

    if (j == NULL || so->batch == NULL) {
        json_decref(j);
        so->failed = true;
        return false;
    }
    json_object_del(j, "location");
    json_array_append_new(so->batch, j);
    if (json_array_size(so->batch) >= MZ_SYNC_CHUNK)
        s_out_flush(so, false);
    return !so->failed;
}

void mz__sync_on_fetch(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *ids = json_object_get(mz_msg_payload(env), "nodes"), *v;
    const char *from = mz_msg_sender(env);
    bool routed = !p->up || strcmp(from, p->peer_id) != 0;
    sync_out so;
    size_t i;

    if (!json_is_array(ids) || json_array_size(ids) > 4096) {
        mz__send_error_link(node, p, mz_msg_id(env), "bad_payload",
                            "fetch needs a nodes array of at most 4096 ids");
        return;
    }
    memset(&so, 0, sizeof so);
    so.node = node;
    so.link_peer = routed ? NULL : p;
    snprintf(so.to, sizeof so.to, "%s", from);
    so.batch = json_array();
    /* A node asked for its own records answers with the complete set. */
    if (json_array_size(ids) == 1 &&
        strcmp(json_string_value(json_array_get(ids, 0)) ? json_string_value(json_array_get(ids, 0))
                                                          : "",
               mz_identity_id(node->ident)) == 0)
        so.complete_for = json_pack("[s]", mz_identity_id(node->ident));
    json_array_foreach(ids, i, v) {
        mz_query q;
        if (!json_is_string(v) || !mz_id_valid(json_string_value(v)))
            continue;
        memset(&q, 0, sizeof q);
        q.node = json_string_value(v);
        mz_directory_query(node->dir, &q, s_out_one, &so);
    }
    if (!so.failed)
        s_out_flush(&so, true);
    json_decref(so.batch);
    json_decref(so.complete_for);
}

/* ---- sync: store what came, and drop what a complete set lacks ------------ */

static void s_complete(mz_node *node, const char *host, mz_hmap *seen)
{
    mz_query q;
    json_t *recs;
    size_t i, n = 0;
    json_t *r;

    memset(&q, 0, sizeof q);
    q.node = host;
    recs = mz_directory_query_json(node->dir, &q);
    json_array_foreach(recs, i, r) {
        const char *rid = json_string_value(json_object_get(r, "resource_id"));
        const mz_record *rec = rid ? mz_directory_get(node->dir, rid) : NULL;
        if (rec == NULL || mz_hmap_get(seen, rid) != NULL)
            continue;
        /* A ghost: the host itself no longer lists it. */
        mz__emit_record(node, "resource.removed", rec);
        mz_directory_remove(node->dir, rid, host, NULL);
        n++;
    }
    json_decref(recs);
    if (n > 0) {
        node->c.ghosts_removed += n;
        mz_log(MZ_LOG_INFO, "sync", "removed %zu records node %.12s no longer hosts", n, host);
    }
}

void mz__sync_on_sync(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);
    const json_t *recs = json_object_get(pl, "records");
    const json_t *cf = json_object_get(pl, "complete_for");
    const char *from = mz_msg_sender(env);
    bool complete = json_is_array(cf) && json_array_size(cf) == 1 &&
                    json_is_string(json_array_get(cf, 0)) &&
                    strcmp(json_string_value(json_array_get(cf, 0)), from) == 0;
    mz_hmap *seen = complete ? mz_hmap_get(node->completing, from) : NULL;
    size_t i;
    json_t *v;
    mz_err e;

    if (!json_is_array(recs)) {
        mz__send_error_link(node, p, mz_msg_id(env), "bad_payload", "sync needs a records array");
        return;
    }
    if (complete && seen == NULL) {
        seen = mz_hmap_new();
        if (seen == NULL || mz_hmap_put(node->completing, from, seen, NULL) != MZ_OK) {
            mz_hmap_free(seen, NULL);
            seen = NULL;
            complete = false;
        }
    }
    json_array_foreach(recs, i, v) {
        const char *host = json_string_value(json_object_get(v, "node"));
        const char *rid = json_string_value(json_object_get(v, "resource_id"));
        if (mz__accept_remote_record(node, v, &e) != MZ_OK) {
            mz_log(MZ_LOG_DEBUG, "sync", "from %.12s: %s", from, e.msg);
            continue;
        }
        if (complete && host && rid && strcmp(host, from) == 0)
            mz_hmap_put(seen, rid, seen, NULL);
        if (host && mz_hmap_get(node->nodes, host) == NULL)
            mz__node_touch(node, host, NULL, node->o.lease_ms);
    }
    if (complete && !json_is_true(json_object_get(pl, "more"))) {
        s_complete(node, from, seen);
        mz_hmap_free(mz_hmap_remove(node->completing, from), NULL);
    }
}

/* ---- alive: the host's own digest ----------------------------------------- */

void mz__sync_on_alive_digest(mz_node *node, const char *from, const json_t *dg)
{
    mz_nodeinfo *ni = mz_hmap_get(node->nodes, from);
    int64_t now = mz_now_ms();

    if (!json_is_object(dg) || ni == NULL || s_same(node, from, dg))
        return;
    if (now - ni->last_fetch_ms < MZ_FETCH_GAP_MS)
        return;
    ni->last_fetch_ms = now;
    node->c.sync_fetches++;
    /* Ask the host itself: its answer is authoritative, ghosts included. */
    mz__send(node, mz_msg_new("fetch", mz_identity_id(node->ident), from,
                              json_pack("{s:[s]}", "nodes", from)), NULL, NULL);
}

void mz__sync_free(mz_node *node)
{
    size_t pos = 0;
    const char *k;
    void *v;

    if (node->completing == NULL)
        return;
    while (mz_hmap_next(node->completing, &pos, &k, &v))
        mz_hmap_free(v, NULL);
    mz_hmap_free(node->completing, NULL);
    node->completing = NULL;
}
