/* MessageHandler: every peer message goes parse -> validate -> (dedupe,
 * verify) -> route or forward -> dispatch by type through s_types.
 * docs/PROTOCOL.md "Delivery" describes the same steps for other nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "core/node_int.h"

void mz__forget_node(mz_node *node, const char *id, const char *why);

/* Policy flags of a message type. */
enum {
    MZ_T_PREAUTH = 1,   /* accepted before the hello exchange completed */
    MZ_T_LINK = 2,      /* for the neighbour only, never forwarded */
    MZ_T_BROADCAST = 4, /* recipient "*": flooded to every node once */
    MZ_T_UNICAST = 8,   /* recipient a node id: routed hop by hop */
};

typedef void (*mz_type_fn)(mz_node *node, mz_peer *p, const json_t *env);

typedef struct mz_type {
    const char *name;
    mz_type_fn fn;
    unsigned flags;
} mz_type;

static void s_on_hello(mz_node *, mz_peer *, const json_t *);
static void s_on_welcome(mz_node *, mz_peer *, const json_t *);
static void s_on_sync(mz_node *, mz_peer *, const json_t *);
static void s_on_digest(mz_node *, mz_peer *, const json_t *);
static void s_on_fetch(mz_node *, mz_peer *, const json_t *);
static void s_on_announce(mz_node *, mz_peer *, const json_t *);
static void s_on_alive(mz_node *, mz_peer *, const json_t *);
static void s_on_bye(mz_node *, mz_peer *, const json_t *);
static void s_on_query(mz_node *, mz_peer *, const json_t *);
static void s_on_query_result(mz_node *, mz_peer *, const json_t *);
static void s_on_error(mz_node *, mz_peer *, const json_t *);
static void s_on_execute(mz_node *, mz_peer *, const json_t *);
static void s_on_execute_result(mz_node *, mz_peer *, const json_t *);
static void s_on_event(mz_node *, mz_peer *, const json_t *);

static const mz_type s_types[] = {
    { "hello",        s_on_hello,        MZ_T_PREAUTH | MZ_T_LINK },
    { "welcome",      s_on_welcome,      MZ_T_PREAUTH | MZ_T_LINK },
    { "sync",         s_on_sync,         MZ_T_LINK | MZ_T_UNICAST },
    { "digest",       s_on_digest,       MZ_T_LINK },
    { "fetch",        s_on_fetch,        MZ_T_LINK | MZ_T_UNICAST },
    { "announce",     s_on_announce,     MZ_T_BROADCAST },
    { "alive",        s_on_alive,        MZ_T_BROADCAST },
    { "bye",          s_on_bye,          MZ_T_BROADCAST },
    { "query",        s_on_query,        MZ_T_UNICAST },
    { "query_result", s_on_query_result, MZ_T_UNICAST },
    { "error",        s_on_error,        MZ_T_PREAUTH | MZ_T_LINK | MZ_T_UNICAST },
    { "execute",      s_on_execute,      MZ_T_UNICAST },
    { "execute_result", s_on_execute_result, MZ_T_UNICAST },
    { "event",        s_on_event,        MZ_T_BROADCAST },
};

static const mz_type *s_find_type(const char *name)
{
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++)
        if (strcmp(s_types[i].name, name) == 0)
            return &s_types[i];
    return NULL;
}

static const char *s_me(mz_node *node) { return mz_identity_id(node->ident); }

/* ---- sending ------------------------------------------------------------ */

static char *s_sign_dump(mz_node *node, json_t *env, size_t *len, mz_err *err)
{
    char *buf;

    if (env == NULL) {
        mz_err_set(err, MZ_ENOMEM, "message: allocating");
        return NULL;
    }
    if (mz_msg_sign(env, node->ident, err) != MZ_OK)
        return NULL;
    buf = mz_msg_dump(env, len);
    if (buf == NULL)
        mz_err_set(err, MZ_ENOMEM, "message: serialising");
    return buf;
}

mz_status mz__send_link(mz_node *node, mz_peer *p, json_t *env)
{
    mz_err e;
    size_t len;
    char *buf = s_sign_dump(node, env, &len, &e);
    mz_status rc;

    json_decref(env);
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

static mz_peer *s_next_hop(mz_node *node, const char *dest)
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
static char *s_seal_dump(mz_node *node, json_t *env, size_t *len, mz_err *err)
{
    const unsigned char *k = mz__shared_key(node, mz_msg_recipient(env));
    char *buf;

    if (k == NULL) {
        mz_err_set(err, MZ_EINVAL, "no sealing key for node %.12s", mz_msg_recipient(env));
        return NULL;
    }
    if (mz_msg_seal(env, k, err) != MZ_OK)
        return NULL;
    buf = mz_msg_dump(env, len);
    if (buf == NULL)
        mz_err_set(err, MZ_ENOMEM, "message: serialising");
    return buf;
}

mz_status mz__send(mz_node *node, json_t *env, mz_peer *except, mz_err *err)
{
    size_t len;
    char *buf;
    const char *to;
    mz_status rc = MZ_OK;

    if (env == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    to = mz_msg_recipient(env);
    if (strcmp(to, "*") != 0 && !node->o.no_seal)
        buf = s_seal_dump(node, env, &len, err);
    else
        buf = s_sign_dump(node, env, &len, err);
    if (buf == NULL) {
        json_decref(env);
        return err ? err->code : MZ_ENOMEM;
    }
    to = mz_msg_recipient(env);
    if (strcmp(to, "*") == 0) {
        /* Our own broadcasts must not be handled again when they echo back. */
        mz_seen_check_add(node->seen, mz_msg_id(env));
        s_flood(node, buf, len, except);
    } else {
        mz_peer *hop = s_next_hop(node, to);
        if (hop == NULL)
            rc = mz_err_set(err, MZ_EUNREACHABLE, "no route to node %.12s", to);
        else
            s_send_raw_urgent(node, hop, buf, len);
    }
    free(buf);
    json_decref(env);
    return rc;
}

void mz__send_error_link(mz_node *node, mz_peer *p, const char *ref, const char *code,
                         const char *reason)
{
    json_t *payload = json_pack("{s:s,s:s,s:s}", "ref", ref ? ref : "", "code", code,
                                "reason", reason);

    mz__send_link(node, p, mz_msg_new("error", s_me(node), p->got_hello ? p->peer_id : "*",
                                      payload));
}

/* Reports a problem with a unicast message back to its origin. */
static void s_send_error_to(mz_node *node, const char *to, const char *ref, const char *code,
                            const char *reason)
{
    json_t *payload = json_pack("{s:s,s:s,s:s}", "ref", ref, "code", code, "reason", reason);

    mz__send(node, mz_msg_new("error", s_me(node), to, payload), NULL, NULL);
}

/* ---- the pipeline ------------------------------------------------------- */

static void s_reject(mz_node *node, mz_peer *p, const char *id, const char *code,
                     const char *reason, bool close)
{
    mz_log(MZ_LOG_WARN, "handler", "from %s: %s (%s)",
           p->got_hello ? p->peer_id : mz_link_peer_addr(p->link), reason, code);
    mz__send_error_link(node, p, id, code, reason);
    if (close && p->link)
        mz_link_close(p->link, 1008, reason);
}

/* Relays must not re-sign: they copy the envelope with hops + 1 only. */
static void s_forward(mz_node *node, mz_peer *from, json_t *env, mz_peer *to_one)
{
    int hops = mz_msg_hops(env) + 1;
    size_t len;
    char *buf;

    if (hops >= node->o.max_hops) {
        node->c.hop_limit_drops++;
        /* A routed message dying here (a loop while routes settle): tell its
         * origin now rather than let it wait for a timeout. */
        if (to_one != NULL && strcmp(mz_msg_type(env), "error") != 0) {
            char why[160];
            snprintf(why, sizeof why, "message %s: hop limit reached at %.12s", mz_msg_id(env),
                     s_me(node));
            s_send_error_to(node, mz_msg_sender(env), mz_msg_id(env), "unreachable", why);
        }
        return;
    }
    json_object_set_new(env, "hops", json_integer(hops));
    buf = mz_msg_dump(env, &len);
    if (buf == NULL)
        return;
    if (to_one) {
        s_send_raw_urgent(node, to_one, buf, len);
        node->c.forwarded++;
    } else if (s_flood_relayed(node, buf, len, from) > 0) {
        node->c.forwarded++;
    }
    free(buf);
}

void mz__handle_message(mz_node *node, mz_peer *p, const char *buf, size_t len)
{
    mz_msg_limits lim = { node->o.max_message, 0, 0 };
    char id[MZ_MSG_ID_MAX + 1] = "";
    json_t *env = NULL;
    const mz_type *t;
    const char *to, *from;
    mz_err e;

    if (mz__rate_take(node, p))
        return;                 /* the link is being closed for flooding */
    if (mz_msg_parse(buf, len, &lim, &env, id, &e) != MZ_OK) {
        node->c.malformed++;
        s_reject(node, p, id, "bad_message", e.msg, !p->up);
        return;
    }
    t = s_find_type(mz_msg_type(env));
    if (t == NULL) {
        char why[128];
        node->c.unknown_type++;
        snprintf(why, sizeof why, "message %s: unknown type '%s'", id, mz_msg_type(env));
        s_reject(node, p, id, "unknown_type", why, !p->up);
        goto done;
    }
    if (!p->up && !(t->flags & MZ_T_PREAUTH)) {
        char why[128];
        node->c.malformed++;
        snprintf(why, sizeof why, "message %s: '%s' before the hello exchange completed", id,
                 t->name);
        s_reject(node, p, id, "not_authenticated", why, true);
        goto done;
    }
    to = mz_msg_recipient(env);
    from = mz_msg_sender(env);
    {
        int64_t ts = 0, now = mz_now_ms();
        mz_time_parse(json_string_value(json_object_get(env, "timestamp")), &ts);
        if (ts < now - node->o.replay_window_ms || ts > now + node->o.replay_window_ms) {
            char why[160];
            node->c.stale++;
            snprintf(why, sizeof why, "message %s: timestamp outside the accepted window of "
                     "%lld s", id, (long long)(node->o.replay_window_ms / 1000));
            s_reject(node, p, id, "stale", why, !p->up);
            goto done;
        }
    }
    if (mz_msg_is_sealed(env) && !(t->flags & MZ_T_UNICAST)) {
        char why[160];
        node->c.malformed++;
        snprintf(why, sizeof why, "message %s: '%s' cannot be sealed", id, t->name);
        s_reject(node, p, id, "bad_message", why, !p->up);
        goto done;
    }
    if (strcmp(to, "*") == 0 && (t->flags & MZ_T_BROADCAST)) {
        if (mz_seen_contains(node->seen, id)) {
            node->c.duplicates++;
            goto done;
        }
        /* Remember the id only once it verified: a forged copy arriving first
         * must not suppress the genuine message. */
        if (mz_msg_verify(env, &e) != MZ_OK) {
            node->c.forged++;
            s_reject(node, p, id, "bad_signature", e.msg, false);
            goto done;
        }
        if (mz_seen_check_add(node->seen, id)) {
            node->c.duplicates++;
            goto done;
        }
        if (strcmp(from, s_me(node)) == 0)
            goto done;
        mz_routes_offer(node->routes, from, mz_link_id(p->link), mz_msg_hops(env) + 1,
                        mz_now_ms() + node->o.lease_ms, mz_now_ms());
        node->c.msgs_handled++;
        node->refuse_forward = false;
        t->fn(node, p, env);
        /* Content a handler refused (a forged record, say) is not passed on. */
        if (!node->refuse_forward)
            s_forward(node, p, env, NULL);
    } else if (strcmp(to, s_me(node)) == 0 || (strcmp(to, "*") == 0 && (t->flags & MZ_T_LINK))) {
        if (mz_msg_is_sealed(env)) {
            const unsigned char *k = mz__shared_key(node, from);
            if (k == NULL || mz_msg_open(env, k, 0, &e) != MZ_OK) {
                node->c.bad_seals++;
                if (k == NULL)
                    snprintf(e.msg, sizeof e.msg, "message %s: sender is not a usable key", id);
                s_reject(node, p, id, "bad_seal", e.msg, !p->up);
                goto done;
            }
        } else if (mz_msg_verify(env, &e) != MZ_OK) {
            node->c.forged++;
            s_reject(node, p, id, "bad_signature", e.msg, !p->up);
            goto done;
        }
        /* Authentic, but have we handled it before? (PROTOCOL.md "Replay") */
        if (mz_seen_check_add(node->replay, id)) {
            char why[160];
            node->c.replayed++;
            snprintf(why, sizeof why, "message %s: already handled (replay)", id);
            s_reject(node, p, id, "replayed", why, false);
            goto done;
        }
        if ((t->flags & MZ_T_LINK) && !(t->flags & MZ_T_UNICAST) && p->got_hello &&
            strcmp(from, p->peer_id) != 0) {
            node->c.forged++;
            s_reject(node, p, id, "bad_sender", "link message from a node other than the peer",
                     true);
            goto done;
        }
        /* A verified unicast teaches the way back to its origin, so the
         * answer is routable even before the origin's next broadcast. */
        if ((t->flags & MZ_T_UNICAST) && p->up && strcmp(from, s_me(node)) != 0)
            mz_routes_offer(node->routes, from, mz_link_id(p->link), mz_msg_hops(env) + 1,
                            mz_now_ms() + node->o.lease_ms, mz_now_ms());
        node->c.msgs_handled++;
        t->fn(node, p, env);
    } else if (t->flags & MZ_T_UNICAST) {
        mz_peer *hop = s_next_hop(node, to);
        if (hop == NULL) {
            char why[160];
            node->c.unroutable++;
            snprintf(why, sizeof why, "message %s: no route to node %.12s", id, to);
            if (strcmp(t->name, "error") != 0)
                s_send_error_to(node, from, id, "unreachable", why);
        } else {
            mz__exec_relayed(node, env, mz_link_id(hop->link));
            s_forward(node, p, env, hop);
        }
    } else {
        char why[160];
        node->c.malformed++;
        snprintf(why, sizeof why, "message %s: '%s' cannot be addressed to %s", id, t->name,
                 strcmp(to, "*") == 0 ? "every node" : "another node");
        s_reject(node, p, id, "bad_recipient", why, !p->up);
    }
done:
    json_decref(env);
}

/* ---- per-type handlers -------------------------------------------------- */

static const char *s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Refuses a peer: the reason goes to our log and counters, the stranger
 * learns only "refused" (PROTOCOL.md "Admission"). */
static void s_refuse(mz_node *node, mz_peer *p, uint64_t *counter, const char *why)
{
    (void)node;
    (*counter)++;
    if (p->stat)                /* our dial: the connect_to_peer caller hears why */
        snprintf(p->stat->refusal, sizeof p->stat->refusal, "%s", why);
    mz_log(MZ_LOG_WARN, "handler", "refusing %s (%s): %s",
           p->got_hello ? p->peer_id : "peer", mz_link_peer_addr(p->link), why);
    mz_link_close(p->link, 1008, "refused");
}

/* The id pinned in the dialed URL's fragment (ws://h:p/#<id>), or NULL. */
static const char *s_pin(mz_peer *p)
{
    const char *pin = mz_link_pin(p->link);

    return (pin != NULL && pin[0] != '\0') ? pin : NULL;
}

/* HMAC proving knowledge of the mesh secret for (challenge, sender). */
static void s_net_proof(mz_node *node, const char *challenge, const char *sender,
                        char out[65])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    crypto_auth_hmacsha256_init(&st, node->netkey, sizeof node->netkey);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)"meshzero/1 network", 18);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)challenge, 64);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)sender, 64);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(out, 65, mac, sizeof mac);
}

static void s_check_up(mz_node *node, mz_peer *p)
{
    if (p->got_hello && p->sent_welcome && p->challenge[0] == '\0' && !p->up)
        mz__peer_up(node, p);
}

static void s_on_hello(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);
    const char *proto = s_str(pl, "protocol"), *listen = s_str(pl, "listen");
    const char *chal = s_str(pl, "challenge"), *from = mz_msg_sender(env);

    if (p->got_hello) {
        s_reject(node, p, mz_msg_id(env), "bad_hello", "second hello on one link", true);
        return;
    }
    if (proto == NULL || strcmp(proto, "meshzero/1") != 0) {
        node->c.hello_failures++;
        s_reject(node, p, mz_msg_id(env), "bad_hello", "unsupported protocol (want meshzero/1)",
                 true);
        return;
    }
    if (chal == NULL || strlen(chal) != 64 || listen == NULL || strlen(listen) > 255) {
        node->c.hello_failures++;
        s_reject(node, p, mz_msg_id(env), "bad_hello",
                 "hello payload needs challenge (64 hex) and listen (string)", true);
        return;
    }
    if (strcmp(from, s_me(node)) == 0) {
        node->c.hello_failures++;
        if (p->stat)
            p->stat->backoff_ms = 30000;   /* dialing ourselves: do not hurry back */
        mz_link_close(p->link, 1008, "connected to self");
        return;
    }
    snprintf(p->peer_id, sizeof p->peer_id, "%s", from);
    snprintf(p->listen, sizeof p->listen, "%s", listen);
    p->got_hello = true;
    {
        const char *pin = s_pin(p);
        char why[200];
        if (pin != NULL && strcmp(pin, from) != 0) {
            snprintf(why, sizeof why, "URL pins node %.16s but the peer is %.16s", pin, from);
            s_refuse(node, p, &node->c.refused_pin, why);
            return;
        }
        if (!mz__trusted(node, from)) {
            s_refuse(node, p, &node->c.refused_trust, "the peer's node id is not in this node's "
                     "trust file");
            return;
        }
    }
    {
        json_t *wpl = json_pack("{s:s}", "challenge", chal);
        if (node->has_netkey && wpl != NULL) {
            char proof[65];
            s_net_proof(node, chal, s_me(node), proof);
            json_object_set_new(wpl, "network", json_string(proof));
        }
        mz__send_link(node, p, mz_msg_new("welcome", s_me(node), p->peer_id, wpl));
    }
    p->sent_welcome = true;
    s_check_up(node, p);
}

static void s_on_welcome(mz_node *node, mz_peer *p, const json_t *env)
{
    const char *chal = s_str(mz_msg_payload(env), "challenge");

    if (!p->got_hello || p->up) {
        node->c.hello_failures++;
        s_reject(node, p, mz_msg_id(env), "bad_hello", "welcome out of order", true);
        return;
    }
    /* The signed envelope carries our fresh challenge: proof of the key. */
    if (chal == NULL || strlen(chal) != 64 || p->challenge[0] == '\0' ||
        sodium_memcmp(chal, p->challenge, 64) != 0) {
        node->c.hello_failures++;
        s_reject(node, p, mz_msg_id(env), "bad_hello", "welcome does not answer our challenge",
                 true);
        return;
    }
    if (!node->has_netkey && s_str(mz_msg_payload(env), "network") != NULL) {
        /* The peer proves a network key: it will refuse us, who have none.
         * Saying so here is what lets the dialer's user learn why. */
        s_refuse(node, p, &node->c.refused_network, "the peer requires a network key "
                 "(--network-key)");
        return;
    }
    if (node->has_netkey) {
        const char *got = s_str(mz_msg_payload(env), "network");
        char want[65];
        s_net_proof(node, p->challenge, p->peer_id, want);
        if (got == NULL || strlen(got) != 64 || sodium_memcmp(got, want, 64) != 0) {
            s_refuse(node, p, &node->c.refused_network, "the peer gave no proof of this node's "
                     "network key (another --network-key, or none)");
            return;
        }
    }
    p->challenge[0] = '\0';
    s_check_up(node, p);
}

static void s_on_sync(mz_node *node, mz_peer *p, const json_t *env)
{
    mz__sync_on_sync(node, p, env);
}

static void s_on_digest(mz_node *node, mz_peer *p, const json_t *env)
{
    mz__sync_on_digest(node, p, env);
}

static void s_on_fetch(mz_node *node, mz_peer *p, const json_t *env)
{
    mz__sync_on_fetch(node, p, env);
}

static void s_on_announce(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);
    const char *op = s_str(pl, "op"), *from = mz_msg_sender(env);
    mz_err e;

    (void)p;
    mz__node_touch(node, from, NULL, node->o.lease_ms);
    if (op && strcmp(op, "upsert") == 0) {
        const json_t *rec = json_object_get(pl, "record");
        const char *host = s_str(rec, "node");
        if (host == NULL || strcmp(host, from) != 0) {
            node->c.bad_records++;
            node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s: record not hosted by its sender",
                   mz_msg_id(env));
            return;
        }
        if (mz__accept_remote_record(node, rec, &e) != MZ_OK) {
            /* Stale copies (an older version) may still travel on; forgeries
             * and takeovers stop here. */
            if (e.code != MZ_ESTATE)
                node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s from %.12s: %s", mz_msg_id(env), from,
                   e.msg);
        }
    } else if (op && strcmp(op, "remove") == 0) {
        if (mz__apply_tombstone(node, json_object_get(pl, "tombstone"), from, &e) != MZ_OK) {
            if (e.code != MZ_ESTATE)
                node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s from %.12s: %s", mz_msg_id(env), from,
                   e.msg);
        }
    } else {
        node->c.malformed++;
        mz_log(MZ_LOG_WARN, "handler", "announce %s: op must be upsert or remove",
               mz_msg_id(env));
    }
}

static void s_on_alive(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);
    json_int_t lease = json_integer_value(json_object_get(pl, "lease_ms"));

    (void)p;
    if (lease < 1000) lease = 1000;
    if (lease > 3600000) lease = 3600000;
    mz__node_touch(node, mz_msg_sender(env), s_str(pl, "listen"), (int64_t)lease);
    mz__sync_on_alive_digest(node, mz_msg_sender(env), json_object_get(pl, "digest"));
}

static void s_on_bye(mz_node *node, mz_peer *p, const json_t *env)
{
    (void)p;
    mz__forget_node(node, mz_msg_sender(env), "said goodbye");
}

static void s_on_query(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);
    const json_t *caps = json_object_get(pl, "capabilities");
    const char *capv[MZ_CAPS_MAX];
    const char *loc = s_str(pl, "location");
    json_int_t limit = json_integer_value(json_object_get(pl, "limit"));
    mz_query q;
    json_t *res, *v;
    size_t i;

    (void)p;
    memset(&q, 0, sizeof q);
    q.resource_type = s_str(pl, "resource_type");
    q.owner = s_str(pl, "owner");
    q.location = loc == NULL ? MZ_LOC_ANY : strcmp(loc, "local") == 0 ? MZ_LOC_LOCAL
                                                                       : MZ_LOC_REMOTE;
    /* Replies must fit in one message. */
    q.limit = (limit <= 0 || limit > 500) ? 500 : (size_t)limit;
    if (json_is_array(caps)) {
        json_array_foreach(caps, i, v) {
            if (i >= MZ_CAPS_MAX || !json_is_string(v))
                break;
            capv[q.n_capabilities++] = json_string_value(v);
        }
    }
    q.capabilities = capv;
    res = mz_directory_query_json(node->dir, &q);
    mz__send(node, mz_msg_new("query_result", s_me(node), mz_msg_sender(env),
                              json_pack("{s:s,s:o}", "ref", mz_msg_id(env), "records",
                                        res ? res : json_array())),
             NULL, NULL);
}

static void s_on_query_result(mz_node *node, mz_peer *p, const json_t *env)
{
    (void)node;
    (void)p;
    mz_log(MZ_LOG_DEBUG, "handler", "query_result %s from %.12s", mz_msg_id(env),
           mz_msg_sender(env));
}

static void s_on_error(mz_node *node, mz_peer *p, const json_t *env)
{
    const json_t *pl = mz_msg_payload(env);

    (void)p;
    node->c.errors_received++;
    if (mz__exec_on_error(node, mz_msg_sender(env), s_str(pl, "ref"), s_str(pl, "code"),
                          s_str(pl, "reason")))
        return;
    mz_log(MZ_LOG_INFO, "handler", "error from %.12s about %s: %s: %s", mz_msg_sender(env),
           s_str(pl, "ref") ? s_str(pl, "ref") : "?", s_str(pl, "code") ? s_str(pl, "code") : "?",
           s_str(pl, "reason") ? s_str(pl, "reason") : "?");
}

static void s_on_execute(mz_node *node, mz_peer *p, const json_t *env)
{
    (void)p;
    mz__exec_on_request(node, env);
}

static void s_on_execute_result(mz_node *node, mz_peer *p, const json_t *env)
{
    (void)p;
    mz__exec_on_result(node, env);
}

static void s_on_event(mz_node *node, mz_peer *p, const json_t *env)
{
    (void)p;
    mz__events_on_message(node, env);
}
