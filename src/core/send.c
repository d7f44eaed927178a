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

/* What the node keeps per other node: the pair key, and whether that node
 * speaks wire v2 (forgotten with the cache: then envelopes, which every
 * node reads). */
typedef struct s_pairkey {
    unsigned char k[crypto_box_BEFORENMBYTES];
    bool v2;
} s_pairkey;

static s_pairkey *s_pair(mz_node *node, const char *id)
{
    s_pairkey *k = mz_hmap_get(node->keys, id);
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
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    if (crypto_box_beforenm(k->k, xpk, node->xsk) != 0 ||
        mz_hmap_put(node->keys, id, k, NULL) != MZ_OK) {
        free(k);
        return NULL;
    }
    return k;
}

const unsigned char *mz__shared_key(mz_node *node, const char *id)
{
    s_pairkey *k = s_pair(node, id);

    return k ? k->k : NULL;
}

void mz__node_speaks_v2(mz_node *node, const char *id)
{
    s_pairkey *k = s_pair(node, id);

    if (k != NULL)
        k->v2 = true;
}

static bool s_speaks_v2(mz_node *node, const char *id)
{
    s_pairkey *k = mz_hmap_get(node->keys, id);

    return k != NULL && k->v2;
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

/* A v2 link gets msg as a signed frame (link: for the neighbour only).
 * False when msg has no frame form: it goes as an envelope. */
static bool s_frame_signed(mz_node *node, mz_peer *p, const mz_msg *msg, bool link,
                           bool urgent)
{
    uint8_t *f;
    size_t n;

    if (!p->v2 || p->link == NULL || mz_link_closing(p->link) ||
        mz__msg_frame_sign(msg, node->ident, link, &f, &n, NULL) != MZ_OK)
        return false;
    (void)mz_link_send_binary(p->link, f, n, urgent, NULL);   /* a full queue closes the link */
    free(f);
    return true;
}

mz_status mz__send_link(mz_node *node, mz_peer *p, mz_msg *msg)
{
    mz_err e;
    size_t len;
    char *buf;
    mz_status rc;

    if (msg != NULL && p->up && s_frame_signed(node, p, msg, true, false)) {
        mz__obs_msg_out(node, mz__msg_type(msg));
        mz__msg_free(msg);
        return MZ_OK;
    }
    if ((buf = s_sign_dump(node, msg, &len, &e)) != NULL)
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

/* Forwarded broadcasts queued to one link before further ones are dropped
 * for it (counted): a neighbour that reads slower than a flood arrives must
 * not be disconnected, nor its calls stuck behind thousands of events. */
#define MZ_RELAY_QUEUE_MSGS  64
#define MZ_RELAY_QUEUE_BYTES (1024 * 1024)

/* Whether q may take another forwarded broadcast (else counted, dropped). */
static bool s_relay_room(mz_node *node, mz_peer *q)
{
    if (mz_link_queued_msgs(q->link) < MZ_RELAY_QUEUE_MSGS &&
        mz_link_queued_bytes(q->link) < MZ_RELAY_QUEUE_BYTES)
        return true;
    if (node->c.relay_drops++ % 1000 == 0)
        mz_log(MZ_LOG_WARN, "handler", "link to %.12s is backed up: dropping forwarded "
               "broadcasts for it (%llu so far)", q->peer_id,
               (unsigned long long)node->c.relay_drops);
    return false;
}

static size_t s_flood_relayed(mz_node *node, const char *buf, size_t len, mz_peer *except)
{
    size_t n = 0;

    for (mz_peer *q = node->peers; q; q = q->next) {
        if (q == except || !q->up || q->link == NULL || !s_relay_room(node, q))
            continue;
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

/* Floods our own broadcast: frames to v2 links, the envelope to others. */
static void s_flood_own(mz_node *node, mz_msg *msg, const char *buf, size_t len,
                        mz_peer *except)
{
    uint8_t *f = NULL;
    size_t n = 0;
    bool tried = false;

    for (mz_peer *q = node->peers; q; q = q->next) {
        if (q == except || !q->up)
            continue;
        if (q->v2 && !tried) {
            tried = true;
            (void)mz__msg_frame_sign(msg, node->ident, false, &f, &n, NULL);
        }
        if (q->v2 && f != NULL && q->link && !mz_link_closing(q->link))
            (void)mz_link_send_binary(q->link, f, n, false, NULL);
        else
            s_send_raw(node, q, buf, len);
    }
    free(f);
}

/* A unicast to a node that speaks wire v2, through a v2 link: one sealed
 * frame (signed with --no-seal). False: send the envelope instead. */
static bool s_unicast_frame(mz_node *node, mz_peer *hop, const mz_msg *msg)
{
    const unsigned char *k;
    uint8_t *f;
    size_t n;

    if (!hop->v2 || !s_speaks_v2(node, mz__msg_recipient(msg)))
        return false;
    if (node->o.no_seal)
        return s_frame_signed(node, hop, msg, false, true);
    if ((k = mz__shared_key(node, mz__msg_recipient(msg))) == NULL ||
        mz__msg_frame_seal(msg, k, &f, &n, NULL) != MZ_OK)
        return false;
    if (hop->link && !mz_link_closing(hop->link))
        (void)mz_link_send_binary(hop->link, f, n, true, NULL);
    free(f);
    return true;
}

static mz_status s_send_unicast(mz_node *node, mz_msg *msg, mz_err *err)
{
    const char *to = mz__msg_recipient(msg);
    mz_peer *hop = mz__next_hop(node, to);
    size_t len;
    char *buf;

    if (hop != NULL && s_unicast_frame(node, hop, msg)) {
        mz__obs_msg_out(node, mz__msg_type(msg));
        return MZ_OK;
    }
    buf = node->o.no_seal ? s_sign_dump(node, msg, &len, err) : s_seal_dump(node, msg, &len, err);
    if (buf == NULL)
        return err ? err->code : MZ_ENOMEM;
    mz__obs_msg_out(node, mz__msg_type(msg));
    if (hop != NULL)
        s_send_raw_urgent(node, hop, buf, len);
    free(buf);
    return hop != NULL ? MZ_OK
                       : mz_err_set(err, MZ_EUNREACHABLE, "no route to node %.12s", to);
}

mz_status mz__send(mz_node *node, mz_msg *msg, mz_peer *except, mz_err *err)
{
    size_t len;
    char *buf;
    mz_status rc = MZ_OK;

    if (msg == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    if (strcmp(mz__msg_recipient(msg), "*") != 0) {
        rc = s_send_unicast(node, msg, err);
        mz__msg_free(msg);
        return rc;
    }
    if ((buf = s_sign_dump(node, msg, &len, err)) == NULL) {
        mz__msg_free(msg);
        return err ? err->code : MZ_ENOMEM;
    }
    mz__obs_msg_out(node, mz__msg_type(msg));
    /* Our own broadcasts must not be handled again when they echo back. */
    mz_seen_check_add(node->seen, mz__msg_id(msg));
    s_flood_own(node, msg, buf, len, except);
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

/* Whether a relayed message may take one more hop; when not, counted and,
 * for a routed one, its origin told (a loop while routes settle) rather
 * than left waiting for a timeout. */
static bool s_hop_ok(mz_node *node, int hops, int limit, bool routed, const char *type,
                     const char *sender, const char *id)
{
    char why[160];

    if (hops < node->o.max_hops && hops < limit)
        return true;
    node->c.hop_limit_drops++;
    if (routed && strcmp(type, "error") != 0) {
        snprintf(why, sizeof why, "message %s: hop limit reached at %.12s", id, s_me(node));
        mz__send_error_to(node, sender, id, "unreachable", why);
    }
    return false;
}

/* Relays must not re-sign: they copy the envelope with hops + 1 only. */
void mz__forward(mz_node *node, mz_peer *from, mz_msg *msg, mz_peer *to_one)
{
    int hops = mz__msg_hops(msg) + 1;
    size_t len;
    char *buf;

    if (!s_hop_ok(node, hops, 256, to_one != NULL, mz__msg_type(msg), mz__msg_sender(msg),
                  mz__msg_id(msg)))
        return;
    mz__msg_set_hops(msg, hops);
    buf = mz__msg_dump(msg, &len);
    if (buf == NULL)
        return;
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

/* A relayed broadcast frame: the same bytes to v2 links, the envelope it
 * carries (when its origin signed one) to the others. */
static size_t s_flood_frame(mz_node *node, mz_peer *from, const uint8_t *f, size_t len,
                            mz_msg *msg, int hops)
{
    char *json = NULL;
    size_t jlen = 0, n = 0;
    bool tried = false;

    for (mz_peer *q = node->peers; q; q = q->next) {
        if (q == from || !q->up || q->link == NULL || mz_link_closing(q->link) ||
            !s_relay_room(node, q))
            continue;
        if (q->v2) {
            (void)mz_link_send_binary(q->link, f, len, false, NULL);
            n++;
            continue;
        }
        if (!tried && msg != NULL && mz__msg_has_signature(msg)) {
            mz__msg_set_hops(msg, hops);
            json = mz__msg_dump(msg, &jlen);
        }
        tried = true;
        if (json != NULL) {
            s_send_raw(node, q, json, jlen);
            n++;
        }
    }
    free(json);
    return n;
}

void mz__forward_frame(mz_node *node, mz_peer *from, const uint8_t *buf, size_t len,
                       mz_msg *msg, mz_peer *to_one)
{
    const char *type = mz__frame_type_name(buf[MZ_FRAME_OFF_TYPE]);
    char src[MZ_ID_HEX_LEN + 1], id[2 * MZ_FRAME_ID_LEN + 1];
    int hops = buf[MZ_FRAME_OFF_HOPS] + 1;
    uint8_t *f;
    size_t n;

    sodium_bin2hex(src, sizeof src, buf + MZ_FRAME_OFF_SRC, MZ_FRAME_NODE_LEN);
    sodium_bin2hex(id, sizeof id, buf + MZ_FRAME_OFF_ID, MZ_FRAME_ID_LEN);
    if (!s_hop_ok(node, hops, buf[MZ_FRAME_OFF_HOP_LIMIT], to_one != NULL, type, src, id))
        return;
    if (to_one != NULL && !to_one->v2) {
        /* A sealed frame cannot become an envelope on the way: only its
         * origin can make that. Told now, it retries or reports. */
        char why[200];
        node->c.unroutable++;
        snprintf(why, sizeof why, "message %s: the next hop %.12s toward %.12s does not speak "
                 "wire v2", id, to_one->peer_id, s_me(node));
        if (strcmp(type, "error") != 0)
            mz__send_error_to(node, src, id, "unreachable", why);
        return;
    }
    if ((f = malloc(len)) == NULL)
        return;
    memcpy(f, buf, len);
    (void)mz__frame_relay_hop(f, len, NULL);    /* s_hop_ok checked its limit */
    if (to_one != NULL) {
        (void)mz_link_send_binary(to_one->link, f, len, true, NULL);
        n = 1;
    } else {
        n = s_flood_frame(node, from, f, len, msg, hops);
    }
    if (n > 0) {
        node->c.forwarded++;
        mz__obs_count(&node->obs.msg_fwd, type);
    }
    free(f);
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

