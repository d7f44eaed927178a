/* MeshNode's composition root: lifecycle, the tick, peer links and the
 * hello exchange, static peers and the link policy, the restore from the
 * store, the table of message types, status. The only file of the core
 * that names every other one (docs/ARCHITECTURE.md "Layers"). Wire formats
 * in docs/PROTOCOL.md; records and leases in records.c; inbound dispatch in
 * handler.c, outbound in send.c. */
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "state/agreement.h"
#include "core/node_int.h"
#include "net/dialhint.h"
#include "state/store.h"

static const char *s_me(mz_node *node) { return mz_identity_id(node->ident); }

static int64_t s_clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- peers -------------------------------------------------------------- */

static mz_peer *s_peer_new(mz_node *node, mz_link *link)
{
    mz_peer *p = calloc(1, sizeof *p);

    if (p == NULL)
        return NULL;
    p->node = node;
    p->link = link;
    p->next = node->peers;
    node->peers = p;
    return p;
}

static void s_peer_free(mz_node *node, mz_peer *p)
{
    for (mz_peer **pp = &node->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p);
}

static void s_static_done(mz_node *node, mz_static *s, mz_status st, const char *peer_id,
                          const char *msg)
{
    mz_connect_cb cb = s->cb;

    s->cb = NULL;
    if (cb)
        cb(node, st, peer_id, msg, s->cb_ctx);
}

/* The dialer of a link: us for outbound links, the peer for inbound ones. */
static const char *s_dialer(mz_node *node, mz_peer *p)
{
    return mz_link_outbound(p->link) ? mz_identity_id(node->ident) : p->peer_id;
}

static void s_send_alive(mz_node *node);

static void s_emit_peer(mz_node *node, const char *topic, mz_peer *p)
{
    json_t *d;

    if (node->ev.subs == NULL)
        return;
    d = json_pack("{s:s,s:s}", "id", p->peer_id, "listen", p->listen);
    mz__emit(node, topic, d, p->peer_id);
    json_decref(d);
}

void mz__peer_up(mz_node *node, mz_peer *p)
{
    mz_peer *old = mz__peer_by_id(node, p->peer_id);

    if (p->stat)
        snprintf(p->stat->known_id, sizeof p->stat->known_id, "%s", p->peer_id);

    if (old != NULL && old != p) {
        /* Both sides keep the link dialed by the smaller id, so a
         * simultaneous dial in both directions leaves exactly one. */
        int c = strcmp(s_dialer(node, p), s_dialer(node, old));
        mz_peer *drop = (c < 0) ? old : p;
        if (c == 0)
            drop = p;
        mz_log(MZ_LOG_INFO, "node", "peer %.12s: duplicate link, closing one", p->peer_id);
        if (drop == p) {
            if (p->stat) {
                s_static_done(node, p->stat, MZ_OK, p->peer_id, "already linked");
                p->stat->backoff_ms = 1000;
            }
            mz_link_close(p->link, 1000, "duplicate link");
            return;
        }
        old->up = false;
        mz_link_close(old->link, 1000, "duplicate link");
        mz_routes_drop_link(node->routes, mz_link_id(old->link));
    }
    p->up = true;
    mz_routes_offer(node->routes, p->peer_id, mz_link_id(p->link), 1, INT64_MAX, mz_now_ms());
    mz__node_touch(node, p->peer_id, p->listen, node->o.lease_ms);
    mz__obs_link_event(node, "link.up", p->peer_id, mz_link_peer_addr(p->link),
                       mz_link_outbound(p->link) ? "out" : "in", NULL);
    if (p->stat)
        mz__persist_peer(node, p->stat->url, p->peer_id, p->stat->persistent);
    else if (p->listen[0])
        mz__persist_peer(node, p->listen, p->peer_id, false);
    if (p->stat) {
        /* The backoff is reset only once the link has lasted (s_on_close):
         * a peer that keeps dropping us (shedding) must not be re-dialed
         * every second. */
        p->stat->ever_up = true;
        s_static_done(node, p->stat, MZ_OK, p->peer_id, "connected");
    }
    mz__sync_link_up(node, p);
    /* Tell the whole mesh about us now: nodes behind the new link learn the
     * route to us without waiting for the next periodic alive. */
    s_send_alive(node);
    s_emit_peer(node, "peer.connected", p);
}

static void s_send_hello(mz_node *node, mz_peer *p)
{
    json_t *payload;

    mz_random_hex(p->challenge, 32);
    payload = json_pack("{s:s,s:s,s:s}", "protocol", "meshzero/1", "listen",
                        mz_connmgr_listen_url(node->cm), "challenge", p->challenge);
    /* "wire": the framings this node speaks (PROTOCOL.md "Negotiation"). */
    if (payload != NULL && !node->o.wire1)
        json_object_set_new(payload, "wire", json_pack("[ii]", 1, 2));
    mz__send_link(node, p, mz__msg_new("hello", mz_identity_id(node->ident), "*", payload));
}

/* ---- the hello exchange ---------------------------------------------- */

static const char *s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Refuses a peer: the reason goes to our log and counters, the stranger
 * learns only "refused" (PROTOCOL.md "Admission"). */
static void s_refuse(mz_node *node, mz_peer *p, uint64_t *counter, const char *why)
{
    (*counter)++;
    if (p->stat)                /* our dial: the connect_to_peer caller hears why */
        snprintf(p->stat->refusal, sizeof p->stat->refusal, "%s", why);
    mz__obs_link_event(node, "peer.refused", p->got_hello ? p->peer_id : NULL,
                       mz_link_peer_addr(p->link), mz_link_outbound(p->link) ? "out" : "in", why);
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

/* True when a hello's "wire" array offers 2. */
static bool s_offers_v2(const json_t *wire)
{
    size_t i;
    json_t *v;

    json_array_foreach(wire, i, v)
        if (json_integer_value(v) == 2)
            return true;
    return false;
}

static void s_on_hello(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *proto = s_str(pl, "protocol"), *listen = s_str(pl, "listen");
    const char *chal = s_str(pl, "challenge"), *from = mz__msg_sender(msg);

    if (p->got_hello) {
        mz__reject(node, p, mz__msg_id(msg), "bad_hello", "second hello on one link", true);
        return;
    }
    if (proto == NULL || strcmp(proto, "meshzero/1") != 0) {
        node->c.hello_failures++;
        mz__reject(node, p, mz__msg_id(msg), "bad_hello", "unsupported protocol (want meshzero/1)",
                 true);
        return;
    }
    if (chal == NULL || strlen(chal) != 64 || listen == NULL || strlen(listen) > 255) {
        node->c.hello_failures++;
        mz__reject(node, p, mz__msg_id(msg), "bad_hello",
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
    p->offers_v2 = !node->o.wire1 && s_offers_v2(json_object_get(pl, "wire"));
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
        json_t *wpl = p->offers_v2 ? json_pack("{s:s,s:i}", "challenge", chal, "wire", 2)
                                   : json_pack("{s:s}", "challenge", chal);
        if (node->has_netkey && wpl != NULL) {
            char proof[65];
            s_net_proof(node, chal, s_me(node), proof);
            json_object_set_new(wpl, "network", json_string(proof));
        }
        mz__send_link(node, p, mz__msg_new("welcome", s_me(node), p->peer_id, wpl));
    }
    p->sent_welcome = true;
    s_check_up(node, p);
}

static void s_on_welcome(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const char *chal = s_str(mz__msg_payload(msg), "challenge");

    if (!p->got_hello || p->up) {
        node->c.hello_failures++;
        mz__reject(node, p, mz__msg_id(msg), "bad_hello", "welcome out of order", true);
        return;
    }
    /* The signed envelope carries our fresh challenge: proof of the key. */
    if (chal == NULL || strlen(chal) != 64 || p->challenge[0] == '\0' ||
        sodium_memcmp(chal, p->challenge, 64) != 0) {
        node->c.hello_failures++;
        mz__reject(node, p, mz__msg_id(msg), "bad_hello", "welcome does not answer our challenge",
                 true);
        return;
    }
    if (!node->has_netkey && s_str(mz__msg_payload(msg), "network") != NULL) {
        /* The peer proves a network key: it will refuse us, who have none.
         * Saying so here is what lets the dialer's user learn why. */
        s_refuse(node, p, &node->c.refused_network, "the peer requires a network key "
                 "(--network-key)");
        return;
    }
    if (node->has_netkey) {
        const char *got = s_str(mz__msg_payload(msg), "network");
        char want[65];
        s_net_proof(node, p->challenge, p->peer_id, want);
        if (got == NULL || strlen(got) != 64 || sodium_memcmp(got, want, 64) != 0) {
            s_refuse(node, p, &node->c.refused_network, "the peer gave no proof of this node's "
                     "network key (another --network-key, or none)");
            return;
        }
    }
    p->challenge[0] = '\0';
    /* Both hellos offered v2 and the peer accepted ours: frames from now. */
    p->v2 = p->offers_v2 &&
            json_integer_value(json_object_get(mz__msg_payload(msg), "wire")) == 2;
    if (p->v2)
        mz__node_speaks_v2(node, p->peer_id);
    s_check_up(node, p);
}

/* ---- connmgr callbacks -------------------------------------------------- */

static void s_on_open(mz_link *link, void *ctx)
{
    mz_node *node = ctx;
    mz_peer *p;

    if (mz_link_kind_get(link) == MZ_LINK_API) {
        if (node->api_svc != NULL)
            node->api_svc->on_open(node->api_ctx, link);
        else
            mz_link_close(link, 1011, "no API on this node");
        return;
    }
    p = mz_link_user(link);
    if (p == NULL) {
        p = s_peer_new(node, link);
        if (p == NULL) {
            mz_link_close(link, 1011, "out of memory");
            return;
        }
        mz_link_set_user(link, p);
    }
    p->since_ms = mz_now_ms();
    p->hello_deadline_ms = p->since_ms + MZ_DEFAULT_HELLO_SECS * 1000;
    if (!mz_link_outbound(link)) {
        size_t waiting = 0;
        for (mz_peer *q = node->peers; q; q = q->next)
            if (!q->up && q->link && !mz_link_outbound(q->link) && !mz_link_closing(q->link))
                waiting++;
        if (waiting > MZ_MAX_PREAUTH_LINKS) {
            node->c.preauth_refused++;
            mz_link_close(link, 1008, "too many links awaiting hello");
            return;
        }
    }
    p->tokens = node->o.rate_burst;
    p->refill_ms = p->since_ms;
    s_send_hello(node, p);
}

static void s_on_message(mz_link *link, const char *buf, size_t len, void *ctx)
{
    mz_node *node = ctx;
    mz_peer *p;

    if (mz_link_kind_get(link) == MZ_LINK_API) {
        if (node->api_svc != NULL)
            node->api_svc->on_message(node->api_ctx, link, buf, len);
        return;
    }
    p = mz_link_user(link);
    /* The rate bucket first: a flooding link is being closed, drop it. */
    if (p != NULL && !mz__rate_take(node, p))
        mz__handle_message(node, p, buf, len);
}

static void s_on_binary(mz_link *link, const uint8_t *buf, size_t len, void *ctx)
{
    mz_node *node = ctx;
    mz_peer *p = mz_link_user(link);

    if (p != NULL && !mz__rate_take(node, p))
        mz__handle_frame(node, p, buf, len);
}

static void s_static_remove(mz_node *node, mz_static *s)
{
    for (mz_static **pp = &node->statics; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            free(s);
            return;
        }
}

/* Why a link dialed for static s ended, for the connect_to_peer caller:
 * our own refusal's reason, the likely reason of the peer's (a peer that
 * refuses before its welcome does so by its trust file; network-key
 * refusals the dialer detects itself, s_on_welcome), else the dial's
 * failure explained. Returns true for a refusal (policy, not network). */
static bool s_link_refused(const mz_static *s, const mz_peer *p, const char *reason, char *out,
                           size_t len)
{
    char shown[300];

    mz__url_shown(s->url, shown, sizeof shown);
    if (s->refusal[0]) {
        snprintf(out, len, "%s: refused: %s", shown, s->refusal);
        return true;
    }
    if (strstr(reason, "(1008): refused") != NULL) {
        if (p->got_hello && p->challenge[0] != '\0')
            snprintf(out, len, "%s: refused by the peer %.16s: its trust file (--trust) does "
                     "not list this node's id", shown, p->peer_id);
        else
            snprintf(out, len, "%s: refused by the peer", shown);
        return true;
    }
    mz__dial_explain(s->url, reason, 0, out, len);
    return false;
}

static void s_on_close(mz_link *link, const char *reason, void *ctx)
{
    mz_node *node = ctx;
    mz_peer *p;

    if (mz_link_kind_get(link) == MZ_LINK_API) {
        if (node->api_svc != NULL)
            node->api_svc->on_close(node->api_ctx, link);
        return;
    }
    p = mz_link_user(link);
    if (p == NULL)
        return;
    mz_routes_drop_link(node->routes, mz_link_id(link));
    mz__exec_link_down(node, mz_link_id(link), p->peer_id);
    if (p->up) {
        mz__obs_link_event(node, "link.down", p->peer_id, mz_link_peer_addr(link),
                           mz_link_outbound(link) ? "out" : "in", reason);
        s_emit_peer(node, "peer.disconnected", p);
    }
    else
        mz__obs_link_event(node, "link.failed", NULL,
                           mz_link_url(link)[0] ? mz_link_url(link) : mz_link_peer_addr(link),
                           mz_link_outbound(link) ? "out" : "in", reason);
    if (p->stat) {
        mz_static *s = p->stat;
        char why[512];
        bool refused = s_link_refused(s, p, reason, why, sizeof why);
        s->peer = NULL;
        if (p->up && mz_now_ms() - p->since_ms > 10000)
            s->backoff_ms = 1000;
        s->next_dial_ms = mz_now_ms() + s->backoff_ms + (int64_t)randombytes_uniform(250);
        s->backoff_ms = s_clamp(s->backoff_ms * 2, 1000, 30000);
        s_static_done(node, s, refused ? MZ_ESTATE : MZ_EUNREACHABLE, NULL, why);
        s->refusal[0] = '\0';
        /* A connect that never worked, or was refused for policy, is not
         * retried (a --peer is: its node may change its mind). */
        if (!s->persistent && (!s->ever_up || refused))
            s_static_remove(node, s);
    }
    p->link = NULL;
    s_peer_free(node, p);
}

/* ---- static peers ------------------------------------------------------- */

static void s_dial_static(mz_node *node, mz_static *s)
{
    char why[512];
    mz_err e;
    mz_peer *p;
    mz_link *link;

    if (node->stopping)
        return;
    p = s_peer_new(node, NULL);
    if (p == NULL)
        return;
    p->stat = s;
    s->peer = p;
    if (mz_connmgr_dial(node->cm, s->url, MZ_LINK_PEER, p, &link, &e) != MZ_OK) {
        mz_log(MZ_LOG_WARN, "node", "%s", e.msg);
        s->peer = NULL;
        s_peer_free(node, p);
        s->next_dial_ms = mz_now_ms() + s->backoff_ms;
        s->backoff_ms = s_clamp(s->backoff_ms * 2, 1000, 30000);
        s_static_done(node, s, e.code, NULL, mz__dial_explain(s->url, e.msg, 0, why,
                                                               sizeof why));
        if (!s->persistent && !s->ever_up)
            s_static_remove(node, s);
        return;
    }
    /* link may already be gone if the dial failed synchronously. */
    if (s->peer == p)
        p->link = link;
}

static mz_status s_connect(mz_node *node, const char *url, bool persistent, mz_connect_cb cb,
                           void *ctx, mz_err *err);

mz_status mz_node_connect_to_peer(mz_node *node, const char *url, mz_connect_cb cb,
                                  void *ctx, mz_err *err)
{
    return s_connect(node, url, false, cb, ctx, err);
}

static mz_status s_connect(mz_node *node, const char *url, bool persistent, mz_connect_cb cb,
                           void *ctx, mz_err *err)
{
    char host[128], path[128];
    int port;
    mz_status rc;
    mz_static *s;

    if ((rc = mz_url_parse(url, host, sizeof host, &port, path, sizeof path, err)) != MZ_OK)
        return rc;
    if (port == 0)
        return mz_err_set(err, MZ_EINVAL, "url '%s': a port is required", url);
    for (s = node->statics; s; s = s->next)
        if (strcmp(s->url, url) == 0)
            break;
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return mz_err_set(err, MZ_ENOMEM, "connect %s: allocating", url);
        snprintf(s->url, sizeof s->url, "%s", url);
        s->backoff_ms = 1000;
        s->persistent = persistent;
        s->next = node->statics;
        node->statics = s;
    }
    if (s->cb != NULL)
        return mz_err_set(err, MZ_ESTATE, "connect %s: already in progress", url);
    s->cb = cb;
    s->cb_ctx = ctx;
    if (s->peer != NULL && s->peer->up) {
        s_static_done(node, s, MZ_OK, s->peer->peer_id, "already connected");
        return MZ_OK;
    }
    if (s->peer == NULL) {
        s->backoff_ms = 1000;
        s_dial_static(node, s);
    }
    return MZ_OK;
}

/* ---- housekeeping ------------------------------------------------------- */

static void s_send_alive(mz_node *node)
{
    json_t *payload = json_pack("{s:s,s:I,s:o}", "listen", mz_connmgr_listen_url(node->cm),
                                "lease_ms", (json_int_t)node->o.lease_ms, "digest",
                                mz__sync_own_digest(node));

    /* Our direct links, so every node can draw the mesh (PROTOCOL.md "alive"). */
    json_object_set_new(payload, "links", mz__members_links(node));
    mz__send(node, mz__msg_new("alive", mz_identity_id(node->ident), "*", payload), NULL, NULL);
}

static void s_finish_stop(mz_node *node);

/* A node the link policy may dial: reachable by URL, not linked, not one a
 * static peer entry already re-dials with its own backoff, and not dialed by
 * the policy in the last 10 s (a node that sheds us must not be hammered). */
static bool s_auto_candidate(mz_node *node, const char *id, const mz_nodeinfo *ni, int64_t now)
{
    if (!ni->listen[0] || mz__peer_by_id(node, id) != NULL || now - ni->last_auto_dial_ms < 10000)
        return false;
    for (mz_static *s = node->statics; s; s = s->next)
        if (strcmp(s->known_id, id) == 0)
            return false;
    return true;
}

/* Keeps the number of links between the watermarks (ARCHITECTURE.md "Link
 * policy"): below min_links, dial a random known node we have no link to
 * (pinned to its id); above max_links, shed the newest inbound link. */
static void s_link_policy(mz_node *node, int64_t now)
{
    size_t up = 0, cands = 0, pick;
    size_t pos = 0;
    const char *id;
    void *val;
    mz_peer *newest_in = NULL;

    if (now < node->next_policy_ms)
        return;
    node->next_policy_ms = now + 2000;
    for (mz_peer *p = node->peers; p; p = p->next) {
        if (!p->up || p->link == NULL)
            continue;
        up++;
        if (!mz_link_outbound(p->link) && (newest_in == NULL || p->since_ms > newest_in->since_ms))
            newest_in = p;
    }
    if (up > node->o.max_links && newest_in != NULL) {
        node->c.links_shed++;
        mz_log(MZ_LOG_INFO, "node", "%zu links, over the high watermark %zu: shedding %.12s",
               up, node->o.max_links, newest_in->peer_id);
        mz_link_close(newest_in->link, 1000, "shedding links over the high watermark");
        return;
    }
    if (up >= node->o.min_links)
        return;
    for (mz_static *s = node->statics; s; s = s->next)
        if (s->peer != NULL && !s->peer->up)
            return;                     /* a dial is in progress: wait for it */
    while (mz_hmap_next(node->nodes, &pos, &id, &val))
        if (s_auto_candidate(node, id, val, now))
            cands++;
    if (cands == 0)
        return;
    pick = randombytes_uniform((uint32_t)cands);
    pos = 0;
    while (mz_hmap_next(node->nodes, &pos, &id, &val)) {
        mz_nodeinfo *ni = val;
        char url[320];
        if (!s_auto_candidate(node, id, ni, now))
            continue;
        if (pick-- > 0)
            continue;
        ni->last_auto_dial_ms = now;
        /* Pinned: whoever answers at that URL must be the node we meant. */
        snprintf(url, sizeof url, "%s/#%s", ni->listen, id);
        node->c.links_dialed_auto++;
        mz_log(MZ_LOG_INFO, "node", "%zu links, under the low watermark %zu: dialing %.12s at %s",
               up, node->o.min_links, id, ni->listen);
        s_connect(node, url, false, NULL, NULL, NULL);
        return;
    }
}

static void s_on_tick(uv_timer_t *t)
{
    mz_node *node = t->data;
    int64_t now = mz_now_ms();

    if (node->stopping) {
        bool busy = false;
        for (mz_peer *p = node->peers; p; p = p->next)
            if (p->link && mz_link_queued_bytes(p->link) > 0)
                busy = true;
        int64_t held = now - node->next_alive_ms, most = node->o.drain_ms;
        /* Give "bye" half a second to leave, then shut down regardless; a
         * drain window holds the listeners open for monitors to see. */
        if ((!busy && held >= node->o.drain_ms) || held > (most > 500 ? most : 500))
            s_finish_stop(node);
        return;
    }
    if (now >= node->next_alive_ms) {
        s_send_alive(node);
        node->next_alive_ms = now + node->o.lease_ms / 3;
    }
    mz__expire_leases(node, now);
    s_link_policy(node, now);
    mz_routes_expire(node->routes, now);
    mz__exec_sweep(node, now);
    mz__tombs_expire(node, now);
    mz__rate_resume(node, now);
    mz__sync_pump(node);
    if (now >= node->ps.next_flush_ms) {
        mz__persist_flush(node);
        node->ps.next_flush_ms = now + 1000;
    }
    for (mz_peer *p = node->peers; p; p = p->next)
        /* A deadline of 0: still dialing (connmgr reports a failed dial itself). */
        if (!p->up && p->link && p->hello_deadline_ms != 0 && now > p->hello_deadline_ms &&
            !mz_link_closing(p->link)) {
            node->c.hello_failures++;
            mz_link_close(p->link, 1008, "hello not completed in time");
        }
    for (mz_static *s = node->statics, *next; s; s = next) {
        next = s->next;             /* a failed dial may free s */
        if (s->peer != NULL || now < s->next_dial_ms)
            continue;
        if (s->known_id[0] && mz__peer_by_id(node, s->known_id) != NULL) {
            /* Linked to that node already (it dialed us): nothing to do. */
            s->next_dial_ms = now + 5000;
            continue;
        }
        s_dial_static(node, s);
    }
}

/* ---- keys, trust, network secret ---------------------------------------- */

bool mz__trusted(mz_node *node, const char *id)
{
    return node->trust == NULL || mz_hmap_get(node->trust, id) != NULL;
}

/* Reads an allowlist: one node id per line; blank lines and # comments. */
static mz_status s_load_trust(const char *path, mz_hmap **out, mz_err *err)
{
    FILE *f = fopen(path, "r");
    char line[512];
    int lineno = 0;
    mz_hmap *h;

    *out = NULL;
    if (f == NULL)
        return mz_err_set(err, MZ_EIO, "trust file %s: %s", path, strerror(errno));
    if ((h = mz_hmap_new()) == NULL) {
        fclose(f);
        return mz_err_set(err, MZ_ENOMEM, "trust file: allocating");
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line, *e;
        lineno++;
        while (*p == ' ' || *p == '\t')
            p++;
        e = p + strcspn(p, " \t\r\n#");
        if (*p == '#' || p == e)
            continue;
        *e = '\0';
        for (char *q = p; *q; q++)      /* either case, as in a URL's pin */
            if (*q >= 'A' && *q <= 'F')
                *q = (char)(*q - 'A' + 'a');
        if (!mz_id_valid(p)) {
            fclose(f);
            mz_hmap_free(h, NULL);
            return mz_err_set(err, MZ_EINVAL, "trust file %s line %d: '%.70s' is not a node id "
                              "(64 hex characters)", path, lineno, p);
        }
        if (mz_hmap_put(h, p, h, NULL) != MZ_OK) {
            fclose(f);
            mz_hmap_free(h, NULL);
            return mz_err_set(err, MZ_ENOMEM, "trust file: allocating");
        }
    }
    fclose(f);
    *out = h;
    return MZ_OK;
}

mz_status mz_node_reload_trust(mz_node *node, mz_err *err)
{
    mz_hmap *h;
    mz_status rc;

    if (node->trust_file == NULL)
        return mz_err_set(err, MZ_ESTATE, "no trust file configured");
    if ((rc = s_load_trust(node->trust_file, &h, err)) != MZ_OK)
        return rc;
    mz_hmap_free(node->trust, NULL);
    node->trust = h;
    for (mz_peer *p = node->peers; p; p = p->next)
        if (p->up && p->link && !mz__trusted(node, p->peer_id)) {
            node->c.refused_trust++;
            mz_log(MZ_LOG_WARN, "node", "peer %.12s is no longer in the trust file: closing",
                   p->peer_id);
            mz_link_close(p->link, 1008, "refused");
        }
    mz_log(MZ_LOG_INFO, "node", "trust file %s reloaded: %zu node ids", node->trust_file,
           mz_hmap_count(h));
    return MZ_OK;
}

/* The network key file's bytes (whitespace at the ends trimmed) hashed to 32. */
static mz_status s_load_netkey(mz_node *node, const char *path, mz_err *err)
{
    FILE *f = fopen(path, "r");
    unsigned char buf[4096];
    size_t n, a = 0;

    if (f == NULL)
        return mz_err_set(err, MZ_EIO, "network key file %s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    while (a < n && (buf[a] == ' ' || buf[a] == '\n'))
        a++;
    if (n - a < 16) {
        sodium_memzero(buf, sizeof buf);
        return mz_err_set(err, MZ_EINVAL, "network key file %s: need at least 16 bytes of "
                          "secret", path);
    }
    crypto_generichash(node->netkey, sizeof node->netkey, buf + a, n - a,
                       (const unsigned char *)"meshzero/1 network", 18);
    sodium_memzero(buf, sizeof buf);
    node->has_netkey = true;
    return MZ_OK;
}

/* ---- rate limit ----------------------------------------------------------- */

static void s_refill(mz_node *node, mz_peer *p, int64_t now)
{
    p->tokens += (double)(now - p->refill_ms) * node->o.rate_msgs / 1000.0;
    if (p->tokens > node->o.rate_burst)
        p->tokens = node->o.rate_burst;
    p->refill_ms = now;
}

bool mz__rate_take(mz_node *node, mz_peer *p)
{
    int64_t now = mz_now_ms();

    s_refill(node, p, now);
    p->tokens -= 1.0;
    if (p->tokens >= 0 || p->paused)
        return false;
    /* Over the rate: stop reading from this link until the bucket refills. */
    if (now - p->throttle_window_ms > 10000) {
        p->throttle_window_ms = now;
        p->throttles = 0;
    }
    node->c.throttled++;
    if (++p->throttles > MZ_RATE_MAX_THROTTLES) {
        node->c.rate_closes++;
        mz_log(MZ_LOG_WARN, "node", "peer %.12s (%s) keeps sending over %.0f messages/s: "
               "closing", p->got_hello ? p->peer_id : "?", mz_link_peer_addr(p->link),
               node->o.rate_msgs);
        mz_link_close(p->link, 1008, "message rate over the limit");
        return true;
    }
    p->paused = true;
    mz_link_pause(p->link, true);
    return false;
}

void mz__rate_resume(mz_node *node, int64_t now)
{
    for (mz_peer *p = node->peers; p; p = p->next) {
        if (!p->paused || p->link == NULL)
            continue;
        s_refill(node, p, now);
        if (p->tokens >= 0) {
            p->paused = false;
            mz_link_pause(p->link, false);
        }
    }
}

/* Reads DATA/api.token, creating it (32 random bytes as hex, mode 0600) on
 * first use: the secret a non-loopback API listener requires. */
static mz_status s_api_token(const char *dir, char out[65], mz_err *err)
{
    char path[1024];
    FILE *f;
    int fd;

    snprintf(path, sizeof path, "%s/api.token", dir);
    f = fopen(path, "r");
    if (f != NULL) {
        size_t n = fread(out, 1, 64, f);
        fclose(f);
        out[n] = '\0';
        if (n == 64 && mz_id_valid(out))
            return MZ_OK;
        return mz_err_set(err, MZ_EIO, "api token %s: expected 64 lowercase hex characters",
                          path);
    }
    mz_random_hex(out, 32);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, out, 64) != 64 || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return mz_err_set(err, MZ_EIO, "api token %s: %s", path, strerror(errno));
    }
    close(fd);
    return MZ_OK;
}

/* ---- restore from the store ------------------------------------------ */

static void s_redial_known(mz_node *node, const char *url, const char *id, bool is_static)
{
    mz_static *s;

    for (s = node->statics; s; s = s->next)
        if (strcmp(s->url, url) == 0)
            return;
    if (id != NULL && id[0] && strcmp(id, mz_identity_id(node->ident)) == 0)
        return;
    if (s_connect(node, url, is_static, NULL, NULL, NULL) != MZ_OK)
        return;
    for (s = node->statics; s; s = s->next)
        if (strcmp(s->url, url) == 0 && id != NULL)
            snprintf(s->known_id, sizeof s->known_id, "%s", id);
}

/* ---- restore ------------------------------------------------------------- */

typedef struct restore {
    mz_node *node;
    size_t local, remote, refused;
} restore;

static bool s_restore_record(const json_t *rec, bool local, void *ctx)
{
    restore *r = ctx;
    mz_err e;

    if (local) {
        if (mz__restore_local_record(r->node, rec, &e) == MZ_OK) {
            r->local++;
        } else {
            r->refused++;
            mz_log(MZ_LOG_WARN, "store", "not restoring local record: %s", e.msg);
        }
        return true;
    }
    /* Remote records are verified again and live only as long as their hosts
     * keep showing up (a fresh lease each). */
    if (mz__accept_remote_record(r->node, rec, &e) == MZ_OK) {
        const char *host = json_string_value(json_object_get(rec, "node"));
        r->remote++;
        if (host)
            mz__node_touch(r->node, host, NULL, r->node->o.lease_ms);
    } else {
        r->refused++;
    }
    return true;
}

static void s_restore_tomb(const char *rid, const char *owner_key, int64_t version,
                           int64_t until_ms, void *ctx)
{
    mz__tomb_restore(ctx, rid, owner_key, version, until_ms);
}

static void s_restore_peer(const char *url, const char *node_id, int64_t last_seen_ms,
                           int failures, bool is_static, void *ctx)
{
    (void)last_seen_ms;
    (void)failures;
    s_redial_known(ctx, url, node_id, is_static);
}

static mz_status s_restore(mz_node *node, mz_err *err)
{
    restore r = { node, 0, 0, 0 };
    mz_status rc;

    if (node->ps.store == NULL)
        return MZ_OK;
    if ((rc = mz_store_load_tombstones(node->ps.store, s_restore_tomb, node, err)) != MZ_OK ||
        (rc = mz_store_load_records(node->ps.store, s_restore_record, &r, err)) != MZ_OK)
        return rc;
    /* Nothing restored needs writing back. */
    if ((rc = mz__persist_drop_queued(node, err)) != MZ_OK)
        return rc;
    if (r.local || r.remote || r.refused || mz_store_bad_rows(node->ps.store))
        mz_log(MZ_LOG_INFO, "store", "restored %zu local and %zu remote records from %s "
               "(%zu refused, %zu unreadable rows)", r.local, r.remote,
               mz_store_path(node->ps.store), r.refused, mz_store_bad_rows(node->ps.store));
    return MZ_OK;
}

static mz_status s_restore_peers(mz_node *node, mz_err *err)
{
    if (node->ps.store == NULL)
        return MZ_OK;
    return mz_store_load_peers(node->ps.store, s_restore_peer, node, err);
}

/* ---- the message types ------------------------------------------------ */

/* Every type this node handles, with its policy (handler.c applies it) and
 * the module that handles it. */
static const mz__type s_types[] = {
    { "hello",          s_on_hello,                  MZ_T_PREAUTH | MZ_T_LINK },
    { "welcome",        s_on_welcome,                MZ_T_PREAUTH | MZ_T_LINK },
    { "sync",           mz__sync_on_sync,            MZ_T_LINK | MZ_T_UNICAST },
    { "digest",         mz__sync_on_digest,          MZ_T_LINK },
    { "fetch",          mz__sync_on_fetch,           MZ_T_LINK | MZ_T_UNICAST },
    { "announce",       mz__records_on_announce,     MZ_T_BROADCAST },
    { "alive",          mz__sync_on_alive,           MZ_T_BROADCAST },
    { "bye",            mz__records_on_bye,          MZ_T_BROADCAST },
    { "query",          mz__records_on_query,        MZ_T_UNICAST },
    { "query_result",   mz__records_on_query_result, MZ_T_UNICAST },
    { "error",          mz__exec_on_error_msg,       MZ_T_PREAUTH | MZ_T_LINK | MZ_T_UNICAST },
    { "execute",        mz__exec_on_request,         MZ_T_UNICAST },
    { "execute_result", mz__exec_on_result,          MZ_T_UNICAST },
    { "event",          mz__events_on_message,       MZ_T_BROADCAST },
};

/* ---- lifecycle ---------------------------------------------------------- */

static int s_on_http(void *wsi, int reason, void *user, void *in, size_t len, void *ctx)
{
    mz_node *node = ctx;

    return node->http_fn ? node->http_fn(wsi, reason, user, in, len, node->http_ctx) : 1;
}

void mz_node_set_http_handler(mz_node *node, mz_http_fn fn, void *ctx)
{
    node->http_fn = fn;
    node->http_ctx = ctx;
}

void *mz__node_http_ctx(const mz_node *node) { return node->http_fn ? node->http_ctx : NULL; }

bool mz__node_api_token_required(const mz_node *node) { return node->api_token[0] != '\0'; }

void mz__node_set_api_service(mz_node *node, const mz__link_service *svc, void *ctx)
{
    node->api_svc = svc;
    node->api_ctx = ctx;
}

void mz__node_set_bridge(mz_node *node, struct mz_bridge *b) { node->bridge = b; }
struct mz_bridge *mz__node_bridge(const mz_node *node) { return node->bridge; }

static bool s_loopback_url(const char *url)
{
    if (strncmp(url, "unix:", 5) == 0)
        return true;            /* a local socket, guarded by its file mode */
    char host[128], path[64];
    int port;

    if (mz_url_parse(url, host, sizeof host, &port, path, sizeof path, NULL) != MZ_OK)
        return false;
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* Zero or out-of-range options become their defaults (docs/PROTOCOL.md
 * "Limits" and node.h name them). */
static void s_apply_defaults(mz_node_opts *o)
{
    if (o->lease_ms <= 0) o->lease_ms = MZ_DEFAULT_LEASE_MS;
    o->lease_ms = s_clamp(o->lease_ms, 1000, 3600000);
    if (o->max_hops <= 0) o->max_hops = MZ_DEFAULT_MAX_HOPS;
    if (o->max_hops > MZ_MAX_HOPS) o->max_hops = MZ_MAX_HOPS;
    if (!o->seen_capacity) o->seen_capacity = MZ_DEFAULT_SEEN_CAPACITY;
    if (!o->max_message) o->max_message = MZ_DEFAULT_MAX_MESSAGE;
    if (!o->max_running) o->max_running = MZ_DEFAULT_MAX_RUNNING;
    if (!o->max_pending) o->max_pending = MZ_DEFAULT_MAX_PENDING;
    if (!o->max_subscriptions) o->max_subscriptions = MZ_DEFAULT_MAX_SUBSCRIPTIONS;
    if (!o->min_links) o->min_links = MZ_DEFAULT_MIN_LINKS;
    if (!o->max_records_per_node) o->max_records_per_node = MZ_DEFAULT_MAX_RECORDS_PER_NODE;
    if (!o->max_records_per_owner)
        o->max_records_per_owner = MZ_DEFAULT_MAX_RECORDS_PER_OWNER;
    if (!o->max_running_per_caller)
        o->max_running_per_caller = MZ_DEFAULT_MAX_RUNNING_PER_CALLER;
    if (!o->max_subs_per_client) o->max_subs_per_client = MZ_DEFAULT_MAX_SUBS_PER_CLIENT;
    if (!o->max_kept_answers) o->max_kept_answers = MZ_DEFAULT_MAX_KEPT_ANSWERS;
    if (!o->max_kept_bytes) o->max_kept_bytes = MZ_DEFAULT_MAX_KEPT_BYTES;
    if (o->rate_msgs <= 0) o->rate_msgs = MZ_DEFAULT_RATE_MSGS;
    if (o->rate_burst <= 0) o->rate_burst = MZ_DEFAULT_RATE_BURST;
    if (o->fetch_rate <= 0) o->fetch_rate = MZ_DEFAULT_FETCH_RATE;
    if (o->reply_rate <= 0) o->reply_rate = MZ_DEFAULT_REPLY_RATE;
    if (o->reply_rate_all <= 0) o->reply_rate_all = MZ_DEFAULT_REPLY_RATE_ALL;
    if (o->drain_ms < 0) o->drain_ms = 0;
    if (o->drain_ms > MZ_MAX_DRAIN_MS) o->drain_ms = MZ_MAX_DRAIN_MS;
    if (!o->max_links) o->max_links = MZ_DEFAULT_MAX_LINKS;
    if (o->max_links < o->min_links) o->max_links = o->min_links;
}

/* The connection manager's options from the node's, with the API token
 * when the API is reachable from other machines. */
static mz_status s_connmgr_opts(mz_node *node, const mz_node_opts *opts, mz_connmgr_opts *out,
                                mz_err *err)
{
    mz_connmgr_opts *co = out;
    mz_status rc;

    memset(co, 0, sizeof *co);
    co->loop = node->loop;
    co->listen_url = opts->listen_url ? opts->listen_url : MZ_DEFAULT_LISTEN_URL;
    co->api_url = opts->api_url;
    co->max_message = node->o.max_message;
    co->max_send_queue = opts->max_send_queue;
    co->max_peers = opts->max_peers;
    co->max_peers_out = opts->max_peers_out;
    co->max_api_clients = opts->max_api_clients;
    co->ping_secs = opts->ping_secs;
    co->hangup_secs = opts->hangup_secs;
    co->tls_cert = opts->tls_cert;
    co->tls_key = opts->tls_key;
    co->tls_ca = opts->tls_ca;
    co->tls_dir = opts->data_dir;    /* identity.key: the self-signed certificate's key */
    co->transport = opts->transport;
    co->cb.on_open = s_on_open;
    co->cb.on_message = s_on_message;
    co->cb.on_binary = s_on_binary;
    co->cb.on_close = s_on_close;
    co->http_cb = s_on_http;
    if (opts->api_url && (opts->api_require_token || !s_loopback_url(opts->api_url))) {
        /* Reachable from other machines: a token is required (api.token). */
        if (opts->data_dir == NULL) {
            rc = mz_err_set(err, MZ_EINVAL, "a non-loopback API needs a data directory for its "
                            "token");
            return rc;
        }
        if ((rc = s_api_token(opts->data_dir, node->api_token, err)) != MZ_OK)
            return rc;
        co->api_token = node->api_token;
        mz_log(MZ_LOG_WARN, "node", "the API at %s requires the token in %s/api.token",
               opts->api_url, opts->data_dir);
    }
    return MZ_OK;
}

static mz_status s_new_maps(mz_node *node, mz_err *err)
{
    mz_status rc;

    node->nodes = mz_hmap_new();
    node->tombs = mz_hmap_new();
    node->keys = mz_hmap_new();
    if (node->keys == NULL || node->tombs == NULL || node->nodes == NULL)
        return mz_err_set(err, MZ_ENOMEM, "node: allocating");
    if ((rc = mz__exec_init(node, err)) != MZ_OK)
        return rc;
    return mz__sync_init(node, err);
}

mz_status mz__node_create(const mz_node_opts *opts, mz_node **out, mz_err *err)
{
    mz_node *node;
    mz_connmgr_opts co;
    mz_status rc;

    *out = NULL;
    if (opts == NULL || opts->loop == NULL)
        return mz_err_set(err, MZ_EINVAL, "node: a libuv loop is required");
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "node: libsodium failed to initialise");
    node = calloc(1, sizeof *node);
    if (node == NULL)
        return mz_err_set(err, MZ_ENOMEM, "node: allocating");
    node->o = *opts;
    node->loop = opts->loop;
    node->stop = mz_node_stop;
    node->types = s_types;
    node->n_types = sizeof s_types / sizeof s_types[0];
    s_apply_defaults(&node->o);
    node->o.peers = NULL;
    node->o.n_peers = 0;
    node->o.data_dir = NULL;
    node->o.listen_url = NULL;
    node->o.api_url = NULL;

    if (opts->api_url && !opts->api_allow_remote && !s_loopback_url(opts->api_url)) {
        rc = mz_err_set(err, MZ_EINVAL, "api url '%s': the local API listens on loopback "
                        "only (127.0.0.0/8, ::1) unless remote access is allowed",
                        opts->api_url);
        goto fail;
    }
    rc = opts->data_dir ? mz_identity_load_or_create(opts->data_dir, &node->ident, err)
                        : mz_identity_generate(&node->ident, err);
    if (rc != MZ_OK)
        goto fail;
    if ((rc = mz_identity_x25519_sk(node->ident, node->xsk, NULL)) != MZ_OK) {
        rc = mz_err_set(err, MZ_EIO, "node: deriving the sealing key failed");
        goto fail;
    }
    if (!node->o.replay_window_ms)
        node->o.replay_window_ms = MZ_DEFAULT_REPLAY_WINDOW_MS;
    if (opts->trust_file != NULL) {
        if ((node->trust_file = strdup(opts->trust_file)) == NULL) {
            rc = mz_err_set(err, MZ_ENOMEM, "node: allocating");
            goto fail;
        }
        if ((rc = s_load_trust(node->trust_file, &node->trust, err)) != MZ_OK)
            goto fail;
    }
    node->o.trust_file = NULL;
    if (opts->network_key_file != NULL &&
        (rc = s_load_netkey(node, opts->network_key_file, err)) != MZ_OK)
        goto fail;
    node->o.network_key_file = NULL;
    if ((rc = mz_seen_new(node->o.seen_capacity, &node->replay, err)) != MZ_OK)
        goto fail;
    if ((rc = mz_agreements_open(opts->data_dir, &node->agreements, err)) != MZ_OK)
        goto fail;
    if ((rc = mz__persist_open(node, opts->data_dir, err)) != MZ_OK)
        goto fail;
    if ((rc = mz_directory_new(&node->dir, err)) != MZ_OK ||
        (rc = mz_seen_new(node->o.seen_capacity, &node->seen, err)) != MZ_OK ||
        (rc = mz_routes_new(&node->routes, err)) != MZ_OK)
        goto fail;
    if ((rc = s_new_maps(node, err)) != MZ_OK)
        goto fail;
    if ((rc = s_connmgr_opts(node, opts, &co, err)) != MZ_OK)
        goto fail;
    co.ctx = node;
    if ((rc = mz_connmgr_new(&co, &node->cm, err)) != MZ_OK)
        goto fail;
    if ((rc = s_restore(node, err)) != MZ_OK)
        goto fail;
    uv_timer_init(node->loop, &node->tick);
    node->tick.data = node;
    uv_timer_start(&node->tick, s_on_tick, 250, 250);
    node->started_ms = mz_now_ms();
    node->next_alive_ms = node->started_ms + node->o.lease_ms / 3;
    for (size_t i = 0; i < opts->n_peers; i++)
        if ((rc = s_connect(node, opts->peers[i], true, NULL, NULL, err)) != MZ_OK) {
            mz_node_stop(node);
            mz_node_free(node);
            return rc;
        }
    /* Known peers of earlier runs (after --peer, so those keep their flags). */
    if ((rc = s_restore_peers(node, err)) != MZ_OK) {
        mz_node_stop(node);
        mz_node_free(node);
        return rc;
    }
    *out = node;
    return MZ_OK;
fail:
    mz_node_free(node);
    return rc;
}

static void s_on_tick_closed(uv_handle_t *h)
{
    mz_node *node = h->data;
    node->tick_closed = true;
}

static void s_finish_stop(mz_node *node)
{
    if (!uv_is_closing((uv_handle_t *)&node->tick))
        uv_close((uv_handle_t *)&node->tick, s_on_tick_closed);
    mz_connmgr_close(node->cm);
}

void mz_node_stop(mz_node *node)
{
    if (node == NULL || node->stopping)
        return;
    node->stopping = true;
    node->next_alive_ms = mz_now_ms();   /* start of the drain window */
    mz__exec_fail_pending(node);
    mz__send(node, mz__msg_new("bye", mz_identity_id(node->ident), "*", json_object()), NULL,
             NULL);
    for (mz_peer *p = node->peers; p; p = p->next)
        if (p->link)
            mz_link_close(p->link, 1001, "node shutting down");
}

void mz_node_free(mz_node *node)
{
    if (node == NULL)
        return;
    if (node->cm != NULL) {
        if (!node->stopping)
            mz_node_stop(node);
        if (!node->tick_closed && node->tick.data == node)
            uv_run(node->loop, UV_RUN_DEFAULT);
        mz_connmgr_free(node->cm);
        uv_run(node->loop, UV_RUN_NOWAIT);
    }
    for (mz_static *s = node->statics; s; s = s->next)
        s_static_done(node, s, MZ_ESTATE, NULL, "node stopped");
    if (node->api_svc != NULL)
        node->api_svc->free(node->api_ctx);
    node->api_svc = NULL;
    mz__persist_close(node);
    mz__exec_free_all(node);
    mz__events_free(node);
    while (node->peers)
        s_peer_free(node, node->peers);
    while (node->statics) {
        mz_static *s = node->statics;
        node->statics = s->next;
        free(s);
    }
    mz_hmap_free(node->nodes, free);
    mz_hmap_free(node->tombs, free);
    mz_hmap_free(node->keys, free);
    mz__sync_free(node);
    mz_hmap_free(node->trust, NULL);
    free(node->trust_file);
    mz_seen_free(node->replay);
    mz_agreements_free(node->agreements);
    mz__obs_free(node);
    sodium_memzero(node->xsk, sizeof node->xsk);
    sodium_memzero(node->netkey, sizeof node->netkey);
    mz_routes_free(node->routes);
    mz_seen_free(node->seen);
    mz_directory_free(node->dir);
    mz_identity_free(node->ident);
    free(node);
}

const char *mz_node_id(const mz_node *node) { return mz_identity_id(node->ident); }
mz_agreements *mz__node_agreements(mz_node *node) { return node->agreements; }
size_t mz__max_subs_per_client(mz_node *node) { return node->o.max_subs_per_client; }
void mz__count_subs_refused(mz_node *node) { node->c.subs_refused++; }
const char *mz_node_listen_url(const mz_node *node) { return mz_connmgr_listen_url(node->cm); }
const char *mz_node_api_url(const mz_node *node) { return mz_connmgr_api_url(node->cm); }
const mz_directory *mz_node_directory(const mz_node *node) { return node->dir; }

const char *mz_node_fatal_error(const mz_node *node)
{
    return node->fatal[0] ? node->fatal : NULL;
}

mz_status mz_node_disconnect_peer(mz_node *node, const char *peer_id, mz_err *err)
{
    mz_peer *p = mz__peer_by_id(node, peer_id);

    if (p == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "disconnect: no link to node %.16s", peer_id);
    mz_log(MZ_LOG_INFO, "node", "disconnecting %.12s on request", peer_id);
    mz_link_close(p->link, 1000, "disconnected by request");
    return MZ_OK;
}

json_t *mz_node_peers(mz_node *node)
{
    json_t *arr = json_array();
    char ts[32];

    if (arr == NULL)
        return NULL;
    for (mz_peer *p = node->peers; p; p = p->next) {
        if (!p->up || p->link == NULL)
            continue;
        mz_time_format(p->since_ms, ts);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", p->peer_id,
                                             "listen", p->listen, "addr",
                                             mz_link_peer_addr(p->link), "direction",
                                             mz_link_outbound(p->link) ? "out" : "in", "url",
                                             mz_link_url(p->link), "since", ts));
    }
    return arr;
}
