/* Outbound: every message this node originates or relays leaves through
 * here, signed (broadcasts, link messages) or sealed for its recipient
 * (routed unicasts), then flooded or sent to the next hop. Inbound dispatch
 * (handler.c) and the modules that send (exec, events, sync, records) all
 * sit above this file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "core/node_int.h"

static const char *s_me(mz_node *node) { return mz_identity_id(node->ident); }

mz_peer *mz__peer_by_id(mz_node *node, const char *id)
{
    for (mz_peer *p = node->peers; p; p = p->next)
        if (p->up && p->link && strcmp(p->peer_id, id) == 0)
            return p;
    return NULL;
}

/* Shared keys cached at most; the cache is simply emptied when full. */
#define MZ_KEY_CACHE_MAX 4096

const unsigned char *mz__shared_key(mz_node *node, const char *id)
{
    unsigned char *k = mz_hmap_get(node->keys, id);
    unsigned char ed[32], xpk[32];

    if (k != NULL)
        return k;
    if (!mz_id_valid(id) || sodium_hex2bin(ed, sizeof ed, id, 64, NULL, NULL, NULL) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(xpk, ed) != 0)
        return NULL;
    if (mz_hmap_count(node->keys) >= MZ_KEY_CACHE_MAX) {
        mz_hmap_free(node->keys, free);
        node->keys = mz_hmap_new();
        if (node->keys == NULL)
            return NULL;
    }
    k = malloc(crypto_box_BEFORENMBYTES);
    if (k == NULL)
        return NULL;
    if (crypto_box_beforenm(k, xpk, node->xsk) != 0 || mz_hmap_put(node->keys, id, k, NULL) != MZ_OK) {
        free(k);
        return NULL;
    }
    return k;
}


static char *s_sign_dump(mz_node *node, mz_msg *msg, size_t *len, mz_err *err)
{
    char *buf;

    if (msg == NULL) {
        mz_err_set(err, MZ_ENOMEM, "message: allocating");
        return NULL;
    }
    if (mz__msg_sign(msg, node->ident, err) != MZ_OK)
        return NULL;
    buf = mz__msg_dump(msg, len);
    if (buf == NULL)
        mz_err_set(err, MZ_ENOMEM, "message: serialising");
    return buf;
}

mz_status mz__send_link(mz_node *node, mz_peer *p, mz_msg *msg)
{
    mz_err e;
    size_t len;
    char *buf = s_sign_dump(node, msg, &len, &e);
    mz_status rc;

    if (buf != NULL)
        mz__obs_msg_out(node, mz__msg_type(msg));
    mz__msg_free(msg);
    if (buf == NULL)
        return e.code;
    rc = p->link ? mz_link_send(p->link, buf, len, &e) : MZ_ESTATE;
    free(buf);
    return rc;
}

static void s_send_raw(mz_node *node, mz_peer *p, const char *buf, size_t len)
{
    (void)node;
    if (p->link && !mz_link_closing(p->link))
        (void)mz_link_send(p->link, buf, len, NULL);   /* a full queue closes the link */
}

/* Unicasts (calls, answers) go ahead of queued broadcasts. */
static void s_send_raw_urgent(mz_node *node, mz_peer *p, const char *buf, size_t len)
{
    (void)node;
    if (p->link && !mz_link_closing(p->link))
        (void)mz_link_send_urgent(p->link, buf, len, NULL);
}

/* Returns how many peers got a copy. */
static size_t s_flood(mz_node *node, const char *buf, size_t len, mz_peer *except)
{
    size_t n = 0;

    for (mz_peer *q = node->peers; q; q = q->next)
        if (q != except && q->up) {
            s_send_raw(node, q, buf, len);
            n++;
        }
    return n;
}

/* Forwarded broadcasts queued to one link before further ones are dropped
 * for it (counted): a neighbour that reads slower than a flood arrives must
 * not be disconnected, nor its calls stuck behind thousands of events. */
#define MZ_RELAY_QUEUE_MSGS  64
#define MZ_RELAY_QUEUE_BYTES (1024 * 1024)

static size_t s_flood_relayed(mz_node *node, const char *buf, size_t len, mz_peer *except)
{
    size_t n = 0;

    for (mz_peer *q = node->peers; q; q = q->next) {
        if (q == except || !q->up || q->link == NULL)
            continue;
        if (mz_link_queued_msgs(q->link) >= MZ_RELAY_QUEUE_MSGS ||
            mz_link_queued_bytes(q->link) >= MZ_RELAY_QUEUE_BYTES) {
            if (node->c.relay_drops++ % 1000 == 0)
                mz_log(MZ_LOG_WARN, "handler", "link to %.12s is backed up: dropping forwarded "
                       "broadcasts for it (%llu so far)", q->peer_id,
                       (unsigned long long)node->c.relay_drops);
            continue;
        }
        s_send_raw(node, q, buf, len);
        n++;
    }
    return n;
}

mz_peer *mz__next_hop(mz_node *node, const char *dest)
{
    uint64_t link;

    if (!mz_routes_lookup(node->routes, dest, mz_now_ms(), &link, NULL))
        return NULL;
    for (mz_peer *q = node->peers; q; q = q->next)
        if (q->up && q->link && mz_link_id(q->link) == link)
            return q;
    return NULL;
}

/* Routed unicasts are sealed for their recipient (unless sealing is off):
 * the AEAD authenticates them, relays cannot read or alter them. */
static char *s_seal_dump(mz_node *node, mz_msg *msg, size_t *len, mz_err *err)
{
    const unsigned char *k = mz__shared_key(node, mz__msg_recipient(msg));
    char *buf;

    if (k == NULL) {
        mz_err_set(err, MZ_EINVAL, "no sealing key for node %.12s", mz__msg_recipient(msg));
        return NULL;
    }
    if (mz__msg_seal(msg, k, err) != MZ_OK)
        return NULL;
    buf = mz__msg_dump(msg, len);
    if (buf == NULL)
        mz_err_set(err, MZ_ENOMEM, "message: serialising");
    return buf;
}

mz_status mz__send(mz_node *node, mz_msg *msg, mz_peer *except, mz_err *err)
{
    size_t len;
    char *buf;
    const char *to;
    mz_status rc = MZ_OK;

    if (msg == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    to = mz__msg_recipient(msg);
    if (strcmp(to, "*") != 0 && !node->o.no_seal)
        buf = s_seal_dump(node, msg, &len, err);
    else
        buf = s_sign_dump(node, msg, &len, err);
    if (buf == NULL) {
        mz__msg_free(msg);
        return err ? err->code : MZ_ENOMEM;
    }
    if (len > node->o.max_message) {
        /* Links carry one message of at most max_message: never send more
         * (the receiver would drop it); callers check sizes before this. */
        node->c.oversize_unsent++;
        rc = mz_err_set(err, MZ_ELIMIT, "%s message of %zu bytes not sent: over --max-message "
                        "%zu", mz__msg_type(msg), len, node->o.max_message);
        mz_log(MZ_LOG_WARN, "send", "%s", err ? err->msg : "oversized message not sent");
        free(buf);
        mz__msg_free(msg);
        return rc;
    }
    mz__obs_msg_out(node, mz__msg_type(msg));
    to = mz__msg_recipient(msg);
    if (strcmp(to, "*") == 0) {
        /* Our own broadcasts must not be handled again when they echo back. */
        mz_seen_check_add(node->seen, mz__msg_id(msg));
        s_flood(node, buf, len, except);
    } else {
        mz_peer *hop = mz__next_hop(node, to);
        if (hop == NULL)
            rc = mz_err_set(err, MZ_EUNREACHABLE, "no route to node %.12s", to);
        else
            s_send_raw_urgent(node, hop, buf, len);
    }
    free(buf);
    mz__msg_free(msg);
    return rc;
}

void mz__send_error_link(mz_node *node, mz_peer *p, const char *ref, const char *code,
                         const char *reason)
{
    json_t *payload = json_pack("{s:s,s:s,s:s}", "ref", ref ? ref : "", "code", code,
                                "reason", reason);

    mz__send_link(node, p, mz__msg_new("error", s_me(node), p->got_hello ? p->peer_id : "*",
                                      payload));
}

/* Reports a problem with a unicast message back to its origin. */
void mz__send_error_to(mz_node *node, const char *to, const char *ref, const char *code,
                            const char *reason)
{
    json_t *payload = json_pack("{s:s,s:s,s:s}", "ref", ref, "code", code, "reason", reason);

    mz__send(node, mz__msg_new("error", s_me(node), to, payload), NULL, NULL);
}

/* Relays must not re-sign: they copy the envelope with hops + 1 only. */
void mz__forward(mz_node *node, mz_peer *from, mz_msg *msg, mz_peer *to_one)
{
    int hops = mz__msg_hops(msg) + 1;
    size_t len;
    char *buf;

    if (hops >= node->o.max_hops) {
        node->c.hop_limit_drops++;
        /* A routed message dying here (a loop while routes settle): tell its
         * origin now rather than let it wait for a timeout. */
        if (to_one != NULL && strcmp(mz__msg_type(msg), "error") != 0) {
            char why[160];
            snprintf(why, sizeof why, "message %s: hop limit reached at %.12s", mz__msg_id(msg),
                     s_me(node));
            mz__send_error_to(node, mz__msg_sender(msg), mz__msg_id(msg), "unreachable", why);
        }
        return;
    }
    mz__msg_set_hops(msg, hops);
    buf = mz__msg_dump(msg, &len);
    if (buf == NULL)
        return;
    if (len > node->o.max_message) {
        /* Larger than the next link carries: the origin hears why. */
        char why[160];
        node->c.oversize_unsent++;
        snprintf(why, sizeof why, "message %s of %zu bytes: over --max-message %zu of relay %.12s",
                 mz__msg_id(msg), len, node->o.max_message, s_me(node));
        if (to_one != NULL && strcmp(mz__msg_type(msg), "error") != 0)
            mz__send_error_to(node, mz__msg_sender(msg), mz__msg_id(msg), "too_large", why);
        free(buf);
        return;
    }
    if (to_one) {
        s_send_raw_urgent(node, to_one, buf, len);
        node->c.forwarded++;
        mz__obs_count(&node->obs.msg_fwd, mz__msg_type(msg));
    } else if (s_flood_relayed(node, buf, len, from) > 0) {
        node->c.forwarded++;
        mz__obs_count(&node->obs.msg_fwd, mz__msg_type(msg));
    }
    free(buf);
}


/* Answers a message refused on arrival with an error to the link, closing
 * the link when close is set. */
void mz__reject(mz_node *node, mz_peer *p, const char *id, const char *code,
                     const char *reason, bool close)
{
    mz_log(MZ_LOG_WARN, "handler", "from %s: %s (%s)",
           p->got_hello ? p->peer_id : mz_link_peer_addr(p->link), reason, code);
    mz__send_error_link(node, p, id, code, reason);
    if (close && p->link)
        mz_link_close(p->link, 1008, reason);
}

