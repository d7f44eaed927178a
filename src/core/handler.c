/* MessageHandler: every peer message goes parse -> validate -> (dedupe,
 * verify) -> route or forward -> dispatch by type through the node's type
 * table (node.c fills it; each entry names the module that handles it).
 * docs/PROTOCOL.md "Delivery" describes the same steps for other nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "core/node_int.h"

static const mz__type *s_find_type(mz_node *node, const char *name)
{
    for (size_t i = 0; i < node->n_types; i++)
        if (strcmp(node->types[i].name, name) == 0)
            return &node->types[i];
    return NULL;
}

static const char *s_me(mz_node *node) { return mz_identity_id(node->ident); }

/* ---- the pipeline ------------------------------------------------------- */

/* Replay window (PROTOCOL.md "Replay protection"); refused when outside. */
static bool s_fresh(mz_node *node, mz_peer *p, const char *id, int64_t ts, int64_t now)
{
    char why[160];

    if (ts >= now - node->o.replay_window_ms && ts <= now + node->o.replay_window_ms)
        return true;
    node->c.stale++;
    snprintf(why, sizeof why, "message %s: timestamp outside the accepted window of %lld s", id,
             (long long)(node->o.replay_window_ms / 1000));
    mz__reject(node, p, id, "stale", why, !p->up);
    return false;
}

/* The checks every message passes before its recipient is looked at: a
 * known type, allowed before the hello if it came before it, a fresh
 * timestamp, sealed only if a unicast. NULL: refused (answered, counted). */
static const mz__type *s_admit(mz_node *node, mz_peer *p, const mz_msg *msg, const char *id)
{
    const mz__type *t = s_find_type(node, mz__msg_type(msg));
    char why[160];
    int64_t ts = 0, now = mz_now_ms();

    if (t == NULL) {
        node->c.unknown_type++;
        snprintf(why, 128, "message %s: unknown type '%s'", id, mz__msg_type(msg));
        mz__reject(node, p, id, "unknown_type", why, !p->up);
        return NULL;
    }
    if (!p->up && !(t->flags & MZ_T_PREAUTH)) {
        node->c.malformed++;
        snprintf(why, 128, "message %s: '%s' before the hello exchange completed", id,
                 t->name);
        mz__reject(node, p, id, "not_authenticated", why, true);
        return NULL;
    }
    mz_time_parse(mz__msg_timestamp(msg), &ts);
    if (!s_fresh(node, p, id, ts, now))
        return NULL;
    if (mz__msg_is_sealed(msg) && !(t->flags & MZ_T_UNICAST)) {
        node->c.malformed++;
        snprintf(why, sizeof why, "message %s: '%s' cannot be sealed", id, t->name);
        mz__reject(node, p, id, "bad_message", why, !p->up);
        return NULL;
    }
    return t;
}

/* A broadcast that verified and entered the seen cache: handled, then
 * passed on (frame: the bytes it came as, borrowed; NULL for an envelope). */
static void s_broadcast_handle(mz_node *node, mz_peer *p, const mz__type *t, mz_msg *msg,
                               const uint8_t *frame, size_t flen)
{
    const char *from = mz__msg_sender(msg);

    if (strcmp(from, s_me(node)) == 0)
        return;
    mz_routes_offer(node->routes, from, mz_link_id(p->link), mz__msg_hops(msg) + 1,
                    mz_now_ms() + node->o.lease_ms, mz_now_ms());
    node->c.msgs_handled++;
    mz__obs_msg_in(node, t->name, mz__msg_hops(msg));
    node->refuse_forward = false;
    t->fn(node, p, msg);
    /* Content a handler refused (a forged record, say) is not passed on. */
    if (node->refuse_forward)
        return;
    if (frame != NULL)
        mz__forward_frame(node, p, frame, flen, msg, NULL);
    else
        mz__forward(node, p, msg, NULL);
}

/* A broadcast: once per id, verified, handled, then passed on. */
static void s_on_broadcast(mz_node *node, mz_peer *p, const mz__type *t, mz_msg *msg,
                           const char *id)
{
    mz_err e;

    if (mz_seen_contains(node->seen, id)) {
        node->c.duplicates++;
        mz__evidence_duplicate(node, p, msg);
        return;
    }
    /* Remember the id only once it verified: a forged copy arriving first
     * must not suppress the genuine message. */
    if (mz__msg_verify(msg, &e) != MZ_OK) {
        node->c.forged++;
        mz__reject(node, p, id, "bad_signature", e.msg, false);
        return;
    }
    if (mz_seen_check_add(node->seen, id)) {
        node->c.duplicates++;
        return;
    }
    s_broadcast_handle(node, p, t, msg, NULL, 0);
}

/* An authentic message for us (or for the neighbour): not a replay, then
 * handled. */
static void s_local_handle(mz_node *node, mz_peer *p, const mz__type *t, mz_msg *msg,
                           const char *id)
{
    const char *from = mz__msg_sender(msg);

    /* Authentic, but have we handled it before? (PROTOCOL.md "Replay") */
    if (mz_seen_check_add(node->replay, id)) {
        char why[160];
        node->c.replayed++;
        snprintf(why, sizeof why, "message %s: already handled (replay)", id);
        mz__reject(node, p, id, "replayed", why, false);
        return;
    }
    if ((t->flags & MZ_T_LINK) && !(t->flags & MZ_T_UNICAST) && p->got_hello &&
        strcmp(from, p->peer_id) != 0) {
        node->c.forged++;
        mz__reject(node, p, id, "bad_sender", "link message from a node other than the peer",
                   true);
        return;
    }
    /* A verified unicast teaches the way back to its origin, so the
     * answer is routable even before the origin's next broadcast. */
    if ((t->flags & MZ_T_UNICAST) && p->up && strcmp(from, s_me(node)) != 0)
        mz_routes_offer(node->routes, from, mz_link_id(p->link), mz__msg_hops(msg) + 1,
                        mz_now_ms() + node->o.lease_ms, mz_now_ms());
    node->c.msgs_handled++;
    mz__obs_msg_in(node, t->name, mz__msg_hops(msg));
    t->fn(node, p, msg);
}

/* For us (or for the neighbour): opened or verified, then handled. */
static void s_on_local(mz_node *node, mz_peer *p, const mz__type *t, mz_msg *msg,
                       const char *id)
{
    const char *from = mz__msg_sender(msg);
    mz_err e;

    if (mz__msg_is_sealed(msg)) {
        const unsigned char *k = mz__shared_key(node, from);
        if (k == NULL || mz__msg_open(msg, k, &e) != MZ_OK) {
            node->c.bad_seals++;
            if (k == NULL)
                snprintf(e.msg, sizeof e.msg, "message %s: sender is not a usable key", id);
            mz__reject(node, p, id, "bad_seal", e.msg, !p->up);
            return;
        }
    } else if (mz__msg_verify(msg, &e) != MZ_OK) {
        node->c.forged++;
        mz__reject(node, p, id, "bad_signature", e.msg, !p->up);
        return;
    }
    s_local_handle(node, p, t, msg, id);
}

/* The next hop toward `to` but p; NULL: none, counted and the origin `from`
 * told (never for an error). */
static mz_peer *s_relay_hop(mz_node *node, mz_peer *p, const mz__type *t, const char *id,
                            const char *from, const char *to)
{
    mz_peer *hop = mz__next_hop_except(node, to, p);
    char why[160];

    if (hop != NULL)
        return hop;
    node->c.unroutable++;
    snprintf(why, sizeof why, "message %s: no route to node %.12s", id, to);
    if (strcmp(t->name, "error") != 0)
        mz__send_error_to(node, from, id, "unreachable", why);
    return NULL;
}

/* A unicast for another node: relayed to the next hop, or the origin told. */
static void s_on_relay(mz_node *node, mz_peer *p, const mz__type *t, mz_msg *msg,
                       const char *id)
{
    const char *to = mz__msg_recipient(msg);
    mz_peer *hop;

    if (strcmp(mz__msg_sender(msg), mz_identity_id(node->ident)) == 0) {
        /* Our own message came back: a loop while routes settle. No route
         * leads to ourselves, so fail the attempt here. */
        node->c.unroutable++;
        (void)mz__exec_on_error(node, mz__msg_sender(msg), id, "unreachable",
                                "the message came back to its sender (a routing loop)");
        return;
    }
    hop = s_relay_hop(node, p, t, id, mz__msg_sender(msg), to);
    if (hop != NULL) {
        mz__exec_relayed(node, msg, mz_link_id(hop->link));
        mz__forward(node, p, msg, hop);
    }
}

void mz__handle_message(mz_node *node, mz_peer *p, const char *buf, size_t len)
{
    mz_msg_limits lim = { node->o.max_message, 0, 0 };
    char id[MZ_MSG_ID_MAX + 1] = "";
    mz_msg *msg = NULL;
    const mz__type *t;
    const char *to;
    mz_err e;

    if (mz__msg_parse(buf, len, &lim, &msg, id, &e) != MZ_OK) {
        node->c.malformed++;
        mz__reject(node, p, id, "bad_message", e.msg, !p->up);
        return;
    }
    if ((t = s_admit(node, p, msg, id)) == NULL)
        goto done;
    to = mz__msg_recipient(msg);
    if (strcmp(to, "*") == 0 && (t->flags & MZ_T_BROADCAST)) {
        s_on_broadcast(node, p, t, msg, id);
    } else if (strcmp(to, s_me(node)) == 0 || (strcmp(to, "*") == 0 && (t->flags & MZ_T_LINK))) {
        s_on_local(node, p, t, msg, id);
    } else if (t->flags & MZ_T_UNICAST) {
        s_on_relay(node, p, t, msg, id);
    } else {
        char why[160];
        node->c.malformed++;
        snprintf(why, sizeof why, "message %s: '%s' cannot be addressed to %s", id, t->name,
                 strcmp(to, "*") == 0 ? "every node" : "another node");
        mz__reject(node, p, id, "bad_recipient", why, !p->up);
    }
done:
    mz__msg_free(msg);
}


/* ---- wire v2 frames (PROTOCOL.md section 10) --------------------------- */

/* The message of an authentic frame; NULL: refused (a body that is not a
 * JSON object within the limits), answered and counted. */
static mz_msg *s_frame_msg(mz_node *node, mz_peer *p, const uint8_t *buf,
                           const mz_frame_hdr *h, const uint8_t *plain, size_t pl,
                           const char *id)
{
    mz_msg *msg = NULL;
    mz_err e;

    if (mz__msg_from_frame(buf, h, plain, pl, &msg, &e) == MZ_OK)
        return msg;
    node->c.malformed++;
    mz__reject(node, p, id, "bad_message", e.msg, false);
    return NULL;
}

/* A frame whose signature does not verify: refused, counted. */
static void s_frame_forged(mz_node *node, mz_peer *p, const char *id, const char *why)
{
    node->c.forged++;
    mz__reject(node, p, id, "bad_signature", why, false);
}

/* A broadcast frame: verified once, deduplicated by message id, handled,
 * and its bytes passed on. */
static void s_frame_broadcast(mz_node *node, mz_peer *p, const mz__type *t, const uint8_t *buf,
                              size_t len, const mz_frame_hdr *h, const char *id)
{
    bool dup = mz_seen_contains(node->seen, id);
    const uint8_t *plain;
    size_t pl;
    mz_msg *msg = NULL;
    mz_err e;

    /* A copy of an alive still offers its link as a route (evidence.c). */
    if (dup && h->type != MZ_FRAME_ALIVE) {
        node->c.duplicates++;
        return;
    }
    if (mz__frame_verify(buf, len, h, &plain, &pl, &e) != MZ_OK) {
        if (dup)
            node->c.duplicates++;
        else
            s_frame_forged(node, p, id, e.msg);
        return;
    }
    if ((msg = s_frame_msg(node, p, buf, h, plain, pl, id)) == NULL)
        return;
    if (dup || mz_seen_check_add(node->seen, id)) {
        node->c.duplicates++;
        mz__evidence_duplicate(node, p, msg);
    } else {
        mz__node_speaks_v2(node, mz__msg_sender(msg));
        s_broadcast_handle(node, p, t, msg, buf, len);
    }
    mz__msg_free(msg);
}

/* A frame for us (or the neighbour): opened or verified, then handled. */
static void s_frame_local(mz_node *node, mz_peer *p, const mz__type *t, const uint8_t *buf,
                          size_t len, const mz_frame_hdr *h, const char *id)
{
    char src[MZ_ID_HEX_LEN + 1];
    uint8_t *own = NULL;
    const uint8_t *plain = NULL;
    size_t pl = 0;
    mz_msg *msg = NULL;
    mz_err e;

    sodium_bin2hex(src, sizeof src, h->src, sizeof h->src);
    if (h->flags & MZ_FRAME_F_SEALED) {
        const unsigned char *k = mz__shared_key(node, src);
        own = malloc(h->body_len);
        if (k == NULL || own == NULL || mz__frame_open(buf, len, h, k, own, &pl, &e) != MZ_OK) {
            node->c.bad_seals++;
            if (k == NULL || own == NULL)
                snprintf(e.msg, sizeof e.msg, "message %s: cannot open it (sender key or "
                         "memory)", id);
            mz__reject(node, p, id, "bad_seal", e.msg, false);
            free(own);
            return;
        }
        plain = own;
    } else if (mz__frame_verify(buf, len, h, &plain, &pl, &e) != MZ_OK) {
        s_frame_forged(node, p, id, e.msg);
        return;
    }
    if ((msg = s_frame_msg(node, p, buf, h, plain, pl, id)) != NULL) {
        mz__node_speaks_v2(node, src);
        s_local_handle(node, p, t, msg, id);
    }
    mz__msg_free(msg);
    free(own);
}

/* A frame for another node: the header is all a relay reads. */
static void s_frame_relay(mz_node *node, mz_peer *p, const mz__type *t, const uint8_t *buf,
                          size_t len, const mz_frame_hdr *h, const char *id)
{
    char src[MZ_ID_HEX_LEN + 1], dst[MZ_ID_HEX_LEN + 1];
    json_t *pl = NULL;
    mz_peer *hop;

    if (memcmp(h->src, mz_identity_pk(node->ident), MZ_FRAME_NODE_LEN) == 0) {
        /* Our own message came back: a loop while routes settle. */
        node->c.unroutable++;
        (void)mz__exec_on_error(node, s_me(node), id, "unreachable",
                                "the message came back to its sender (a routing loop)");
        return;
    }
    sodium_bin2hex(src, sizeof src, h->src, sizeof h->src);
    sodium_bin2hex(dst, sizeof dst, h->dst, sizeof h->dst);
    if ((hop = s_relay_hop(node, p, t, id, src, dst)) == NULL)
        return;
    /* A signed call (--no-seal) is readable on the way, as its envelope
     * was: the relay log and the relayed-call table keep their fields. */
    if ((h->flags & MZ_FRAME_F_SIGNED) && (h->type == MZ_FRAME_EXECUTE ||
                                           h->type == MZ_FRAME_EXECUTE_RESULT))
        pl = json_loadb((const char *)buf + h->hdr_len, h->body_len - MZ_FRAME_SIG_LEN,
                        JSON_REJECT_DUPLICATES, NULL);
    mz__exec_relayed_ids(node, t->name, id, src, dst, json_is_object(pl) ? pl : NULL,
                         mz_link_id(hop->link));
    json_decref(pl);
    node->c.frames_relayed++;
    mz__forward_frame(node, p, buf, len, NULL, hop);
}

/* Header checks beyond the codec's: a link that negotiated v2, no streams
 * (not served by this node), a type this node handles, a fresh time. */
static const mz__type *s_frame_admit(mz_node *node, mz_peer *p, const mz_frame_hdr *h,
                                     const char *id)
{
    const char *name = mz__frame_type_name(h->type);
    const mz__type *t = name ? s_find_type(node, name) : NULL;
    char why[200];

    if (h->stream_id != 0 || (mz__frame_type_classes(h->type) & MZ_FRAME_C_STREAM)) {
        node->c.malformed++;
        snprintf(why, sizeof why, "frame %s (%s): streams are not served on this link; send "
                 "the message in one frame", id, name);
        mz__reject(node, p, id, "not_supported", why, false);
        return NULL;
    }
    /* The hello exchange is what negotiates frames: it stays JSON text. */
    if (t == NULL || h->type == MZ_FRAME_HELLO || h->type == MZ_FRAME_WELCOME) {
        node->c.unknown_type++;
        snprintf(why, sizeof why, "frame %s: type '%s' is not accepted as a frame (hello and "
                 "welcome are JSON text)", id, name ? name : "?");
        mz__reject(node, p, id, "unknown_type", why, false);
        return NULL;
    }
    return s_fresh(node, p, id, h->time_ms, mz_now_ms()) ? t : NULL;
}

void mz__handle_frame(mz_node *node, mz_peer *p, const uint8_t *buf, size_t len)
{
    char id[2 * MZ_FRAME_ID_LEN + 1] = "";
    unsigned cls;
    mz_frame_hdr h;
    const mz__type *t;
    bool all, me;
    mz_err e;

    node->c.frames_in++;
    if (len >= MZ_FRAME_OFF_ID + MZ_FRAME_ID_LEN)     /* names the frame in a refusal */
        sodium_bin2hex(id, sizeof id, buf + MZ_FRAME_OFF_ID, MZ_FRAME_ID_LEN);
    if (!p->up || !p->v2) {
        node->c.malformed++;
        mz__reject(node, p, "", "bad_message", "binary frame on a link that has not negotiated "
                   "wire v2 (send JSON text, or offer \"wire\": [1, 2] in the hello)", !p->up);
        return;
    }
    if (mz__frame_decode(buf, len, node->o.max_message, &h, &e) != MZ_OK) {
        node->c.malformed++;
        mz__reject(node, p, id, e.code == MZ_ELIMIT ? "too_large" : "bad_frame", e.msg, false);
        return;
    }
    if ((t = s_frame_admit(node, p, &h, id)) == NULL)
        return;
    cls = mz__frame_type_classes(h.type);
    all = mz__frame_dst_is_all(&h);
    me = memcmp(h.dst, mz_identity_pk(node->ident), MZ_FRAME_NODE_LEN) == 0;
    if (all && (cls & MZ_FRAME_C_BROADCAST))
        s_frame_broadcast(node, p, t, buf, len, &h, id);
    else if (me || (all && h.hop_limit == 1))
        s_frame_local(node, p, t, buf, len, &h, id);
    else if ((cls & MZ_FRAME_C_UNICAST) && !all && h.hop_limit > 1)
        s_frame_relay(node, p, t, buf, len, &h, id);
    else {
        char why[160];
        node->c.malformed++;
        snprintf(why, sizeof why, "frame %s: '%s' cannot be addressed to %s", id, t->name,
                 all ? "every node" : "another node");
        mz__reject(node, p, id, "bad_recipient", why, false);
    }
}
