/* Anti-entropy: per-node digests of the directory, exchanged when a link
 * comes up (link-level "digest" / "fetch" / "sync") and carried by every
 * node's own "alive", so a directory that missed announcements, kept ghosts,
 * or sat on the other side of a partition converges by fetching only the
 * records of the nodes whose digests differ. PROTOCOL.md §6.3 and §6.13. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "core/node_int.h"

/* How often at most we ask one node for its full record set. */
#define MZ_FETCH_GAP_MS 5000

/* sync.c's state, reached through node->sy and nowhere else. */
struct mz_sync_state {
    mz_hmap *completing;        /* node id -> set of its record ids seen in a complete sync */
    struct mz_syncjob *jobs;    /* sync replies being paced out */
};

mz_status mz__sync_init(mz_node *node, mz_err *err)
{
    node->sy = calloc(1, sizeof *node->sy);
    if (node->sy == NULL || (node->sy->completing = mz_hmap_new()) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "node: allocating");
    return MZ_OK;
}

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
    mz__send_link(node, p, mz__msg_new("digest", mz_identity_id(node->ident), p->peer_id,
                                      json_pack("{s:o}", "nodes", nodes)));
}

void mz__sync_on_digest(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *nodes = json_object_get(mz__msg_payload(msg), "nodes");
    json_t *want = json_array(), *v;
    size_t i;

    if (!json_is_array(nodes) || want == NULL) {
        json_decref(want);
        mz__send_error_link(node, p, mz__msg_id(msg), "bad_payload", "digest needs a nodes array");
        return;
    }
    json_array_foreach(nodes, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        json_int_t hops = json_integer_value(json_object_get(v, "hops"));
        json_int_t count = json_integer_value(json_object_get(v, "count"));

        if (id == NULL || !mz_id_valid(id) || hops < 0 || hops >= node->o.max_hops ||
            strcmp(id, mz_identity_id(node->ident)) == 0)
            continue;
        /* Peer exchange only: the peer's word about others is a hint to
         * fetch or dial, never a route (PROTOCOL.md "Routes") and never
         * another node's lease or listen URL. */
        if (mz_hmap_get(node->nodes, id) == NULL || strcmp(id, p->peer_id) == 0)
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
    mz__send_link(node, p, mz__msg_new("fetch", mz_identity_id(node->ident), p->peer_id,
                                      json_pack("{s:o}", "nodes", want)));
}

/* ---- fetch: answer with the records of the nodes asked for --------------- */

/* A reply in progress. Records go out in chunks no bigger than half a
 * message, and only while the outgoing link's queue is short, so a big
 * directory never overflows the send queue (the peer would be dropped as
 * slow) or a message (1009). */
typedef struct mz_syncjob {
    char to[MZ_ID_HEX_LEN + 1];
    uint64_t link_id;           /* reply on this link; 0: routed to `to` */
    json_t *rids;               /* resource ids still to send (a snapshot) */
    size_t cursor;
    json_t *complete_for;       /* ids this reply is the complete set of, or NULL */
    struct mz_syncjob *next;
} mz_syncjob;

/* Jobs at once; a fetch beyond it is answered when one finishes. */
#define MZ_SYNC_JOBS_MAX 64

static void s_job_free(mz_syncjob *j)
{
    json_decref(j->rids);
    json_decref(j->complete_for);
    free(j);
}

static mz_peer *s_peer_by_link(mz_node *node, uint64_t link_id)
{
    for (mz_peer *q = node->peers; q; q = q->next)
        if (q->up && q->link && mz_link_id(q->link) == link_id)
            return q;
    return NULL;
}

/* Sends what the link can take now. Returns true when the job is done. */
static bool s_job_pump(mz_node *node, mz_syncjob *j)
{
    size_t budget = node->o.max_message / 2, qmax;
    uint64_t via;
    mz_peer *out;

    if (j->link_id) {
        via = j->link_id;
    } else if (!mz_routes_lookup(node->routes, j->to, mz_now_ms(), &via, NULL)) {
        return true;                       /* no way to the asker any more */
    }
    out = s_peer_by_link(node, via);
    if (out == NULL)
        return true;
    qmax = (node->o.max_send_queue ? node->o.max_send_queue : MZ_DEFAULT_MAX_SEND_QUEUE) / 4;
    while (mz_link_queued_bytes(out->link) < qmax) {
        json_t *batch = json_array(), *pl;
        mz_msg *msg;
        size_t bytes = 0, n = json_array_size(j->rids), start = j->cursor;
        bool last;

        if (batch == NULL)
            return true;
        while (j->cursor < n && json_array_size(batch) < MZ_SYNC_CHUNK && bytes < budget) {
            const char *rid = json_string_value(json_array_get(j->rids, j->cursor));
            const mz_record *rec = mz_directory_get(node->dir, rid);
            json_t *r;
            j->cursor++;
            if (rec == NULL || (r = mz_record_to_json(rec)) == NULL)
                continue;
            json_object_del(r, "location");
            bytes += strlen(mz_record_metadata_text(rec)) + 800;
            json_array_append_new(batch, r);
        }
        last = j->cursor >= n;
        if (json_array_size(batch) > 0 && !mz__guard_reply(node, j->to, bytes)) {
            j->cursor = start;          /* over the asker's budget: the next tick */
            json_decref(batch);
            return false;
        }
        pl = json_pack("{s:o,s:b}", "records", batch, "more", !last);
        if (pl == NULL)
            return true;
        if (j->complete_for)
            json_object_set(pl, "complete_for", j->complete_for);
        msg = mz__msg_new("sync", mz_identity_id(node->ident), j->to, pl);
        if (j->link_id)
            mz__send_link(node, out, msg);
        else
            mz__send(node, msg, NULL, NULL);
        if (last)
            return true;
        if (out->link == NULL || mz_link_closing(out->link))
            return true;
    }
    return false;
}

void mz__sync_pump(mz_node *node)
{
    for (mz_syncjob **pp = &node->sy->jobs; *pp;) {
        mz_syncjob *j = *pp;
        if (s_job_pump(node, j)) {
            *pp = j->next;
            s_job_free(j);
        } else {
            pp = &j->next;
        }
    }
}

/* Records a reply may carry: those bound to their host for any receiver
 * (ours, or signed by their host's key); others the asker gets from their
 * host (PROTOCOL.md §7 "Host binding"). */
typedef struct mz_collect {
    mz_node *node;
    json_t *rids;               /* resource ids found */
} mz_collect;

static bool s_collect(const mz_record *rec, void *ctx)
{
    mz_collect *c = ctx;

    if (strcmp(mz_record_node(rec), mz_identity_id(c->node->ident)) != 0 &&
        strcmp(mz_record_owner_key(rec), mz_record_node(rec)) != 0)
        return true;
    return json_array_append_new(c->rids, json_string(mz_record_id(rec))) == 0;
}

/* The record ids of the nodes named in ids, each node once however often
 * it is named (counted fetch_dups). */
static void s_collect_nodes(mz_node *node, const json_t *ids, json_t *rids)
{
    mz_collect c = { node, rids };
    mz_hmap *named = mz_hmap_new();
    const json_t *v;
    size_t i;

    if (named == NULL)
        return;
    json_array_foreach(ids, i, v) {
        const char *id = json_string_value(v);
        mz_query q;
        if (id == NULL || !mz_id_valid(id))
            continue;
        if (mz_hmap_get(named, id) != NULL) {
            node->c.fetch_dups++;
            continue;
        }
        if (mz_hmap_put(named, id, named, NULL) != MZ_OK)
            break;
        memset(&q, 0, sizeof q);
        q.node = id;
        mz_directory_query(node->dir, &q, s_collect, &c);
    }
    mz_hmap_free(named, NULL);
}

void mz__sync_on_fetch(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *ids = json_object_get(mz__msg_payload(msg), "nodes");
    const char *from = mz__msg_sender(msg);
    bool routed = !p->up || strcmp(from, p->peer_id) != 0;
    mz_syncjob *j;
    size_t njobs = 0;

    if (!json_is_array(ids) || json_array_size(ids) > 4096) {
        mz__send_error_link(node, p, mz__msg_id(msg), "bad_payload",
                            "fetch needs a nodes array of at most 4096 ids");
        return;
    }
    if (!mz__guard_fetch(node, from)) {
        if (!routed)            /* an error on this link would reach the relay, not the asker */
            mz__send_error_link(node, p, mz__msg_id(msg), "busy",
                                "fetch: more than the allowed fetches a second; ask again later");
        return;
    }
    for (mz_syncjob *k = node->sy->jobs; k; k = k->next)
        njobs++;
    if (njobs >= MZ_SYNC_JOBS_MAX) {
        node->c.sync_busy++;
        return;                 /* the asker retries on the next digest or alive */
    }
    j = calloc(1, sizeof *j);
    if (j == NULL || (j->rids = json_array()) == NULL) {
        free(j);
        return;
    }
    snprintf(j->to, sizeof j->to, "%s", from);
    j->link_id = routed ? 0 : mz_link_id(p->link);
    /* A node asked for its own records answers with the complete set. */
    if (json_array_size(ids) == 1 && json_is_string(json_array_get(ids, 0)) &&
        strcmp(json_string_value(json_array_get(ids, 0)), mz_identity_id(node->ident)) == 0)
        j->complete_for = json_pack("[s]", mz_identity_id(node->ident));
    s_collect_nodes(node, ids, j->rids);
    j->next = node->sy->jobs;
    node->sy->jobs = j;
    mz__sync_pump(node);
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
        mz__persist_remote_delete(node, rid);
        n++;
    }
    json_decref(recs);
    if (n > 0) {
        node->c.ghosts_removed += n;
        mz_log(MZ_LOG_INFO, "sync", "removed %zu records node %.12s no longer hosts", n, host);
    }
}

void mz__sync_on_sync(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const json_t *recs = json_object_get(pl, "records");
    const json_t *cf = json_object_get(pl, "complete_for");
    const char *from = mz__msg_sender(msg);
    bool complete = json_is_array(cf) && json_array_size(cf) == 1 &&
                    json_is_string(json_array_get(cf, 0)) &&
                    strcmp(json_string_value(json_array_get(cf, 0)), from) == 0;
    mz_hmap *seen = complete ? mz_hmap_get(node->sy->completing, from) : NULL;
    size_t i;
    json_t *v;
    mz_err e;

    if (!json_is_array(recs)) {
        mz__send_error_link(node, p, mz__msg_id(msg), "bad_payload", "sync needs a records array");
        return;
    }
    if (complete && seen == NULL) {
        seen = mz_hmap_new();
        if (seen == NULL || mz_hmap_put(node->sy->completing, from, seen, NULL) != MZ_OK) {
            mz_hmap_free(seen, NULL);
            seen = NULL;
            complete = false;
        }
    }
    json_array_foreach(recs, i, v) {
        const char *host = json_string_value(json_object_get(v, "node"));
        const char *rid = json_string_value(json_object_get(v, "resource_id"));
        if (!mz__evidence_record(node, v, from))
            continue;
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
        mz_hmap_free(mz_hmap_remove(node->sy->completing, from), NULL);
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
    mz__send(node, mz__msg_new("fetch", mz_identity_id(node->ident), from,
                              json_pack("{s:[s]}", "nodes", from)), NULL, NULL);
}

void mz__sync_free(mz_node *node)
{
    size_t pos = 0;
    const char *k;
    void *v;

    mz__guard_free(node);
    if (node->sy == NULL)
        return;
    while (node->sy->jobs) {
        mz_syncjob *j = node->sy->jobs;
        node->sy->jobs = j->next;
        s_job_free(j);
    }
    while (node->sy->completing && mz_hmap_next(node->sy->completing, &pos, &k, &v))
        mz_hmap_free(v, NULL);
    mz_hmap_free(node->sy->completing, NULL);
    free(node->sy);
    node->sy = NULL;
}

void mz__sync_on_alive(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    json_int_t lease = json_integer_value(json_object_get(pl, "lease_ms"));

    (void)p;
    if (lease < 1000) lease = 1000;
    if (lease > 3600000) lease = 3600000;
    mz__node_touch(node, mz__msg_sender(msg), json_string_value(json_object_get(pl, "listen")), (int64_t)lease);
    mz__members_on_alive(node, mz__msg_sender(msg), pl);
    mz__sync_on_alive_digest(node, mz__msg_sender(msg), json_object_get(pl, "digest"));
}
