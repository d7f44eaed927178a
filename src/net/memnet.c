/* The in-memory transport; see memnet.h. Each link's inbox holds what its
 * far end sent and it has not read yet; links with something to do (a dial
 * to connect, messages to deliver, a close to report) wait in the network's
 * ready list, which an idle handle works off from the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/memnet.h"
#include "net/transport.h"
#include "util/log.h"

typedef struct mn_msg {
    struct mn_msg *next;
    size_t len;
    char *buf;                  /* owned; message at buf + MZ_LINK_PRE */
    bool binary;                /* a wire v2 frame */
} mn_msg;

typedef struct mn_mgr mn_mgr;
typedef struct mn_link mn_link;

struct mn_link {
    mz_link b;                  /* base (net/transport.h); first */
    mn_link *peer;              /* the far end; NULL: played by hand, or gone */
    bool connecting;            /* outbound, dial not yet worked off */
    bool closing;               /* closed here; on_close comes next */
    bool paused;                /* inbox not read (mz_link_pause) */
    bool ready;                 /* in the network's ready list */
    char reason[160];           /* for on_close */
    char hangup[160];           /* the far end closed, reported after the inbox; "" not */
    mn_msg *inbox, *inbox_tail;
    mn_msg *ulast;              /* last urgent message: urgent ones lead the inbox */
    size_t in_bytes, in_count;
    mn_link *next;              /* links of the manager */
    mn_link *rnext;             /* ready list */
};

struct mn_mgr {
    mz_connmgr b;               /* base; first */
    mz_memnet *net;
    int peer_port, api_port;    /* bound ports; 0 none */
    char peer_host[128], api_host[128];
    mn_link *links;
    mn_mgr *next;               /* managers of the network */
};

struct mz_memnet {
    mz_transport t;             /* the ops table, with this network behind it */
    uv_loop_t *loop;
    uv_idle_t idle;             /* works off the ready list while it is not empty */
    mn_mgr *mgrs;
    mn_link *ready, *ready_tail;
    mz_memnet_tap_fn tap;
    void *tap_ctx;
};

static mz_memnet *s_net_of(const mz_transport *t)
{
    return (mz_memnet *)t;      /* t is the network's first member */
}

static mn_mgr *s_mgr(const mn_link *l)
{
    return (mn_mgr *)l->b.cm;
}

/* ---- the ready list -------------------------------------------------- */

static void s_on_idle(uv_idle_t *h)
{
    mz_memnet *net = h->data;

    mz_memnet_run(net, 1024);
    if (net->ready == NULL)
        uv_idle_stop(&net->idle);
}

static void s_ready(mn_link *l)
{
    mz_memnet *net = s_mgr(l)->net;

    if (l->ready)
        return;
    l->ready = true;
    l->rnext = NULL;
    if (net->ready_tail) net->ready_tail->rnext = l;
    else net->ready = l;
    net->ready_tail = l;
    if (!uv_is_active((uv_handle_t *)&net->idle))
        uv_idle_start(&net->idle, s_on_idle);
}

static void s_unready(mn_link *l)
{
    mz_memnet *net = s_mgr(l)->net;
    mn_link *prev = NULL;

    if (!l->ready)
        return;
    for (mn_link *x = net->ready; x; prev = x, x = x->rnext) {
        if (x != l)
            continue;
        if (prev) prev->rnext = l->rnext;
        else net->ready = l->rnext;
        if (net->ready_tail == l)
            net->ready_tail = prev;
        break;
    }
    l->ready = false;
}

static bool s_has_work(const mn_link *l)
{
    return l->connecting || l->closing || (l->inbox && !l->paused) ||
           (!l->inbox && l->hangup[0]);
}

/* ---- links ------------------------------------------------------------- */

static mn_link *s_link_new(mn_mgr *cm, mz_link_kind kind, bool outbound)
{
    mn_link *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    mz__link_init(&l->b, &cm->b, kind, outbound);
    snprintf(l->b.addr, sizeof l->b.addr, "127.0.0.1:%llu",
             (unsigned long long)(40000 + l->b.id));
    l->next = cm->links;
    cm->links = l;
    return l;
}

static void s_inbox_clear(mn_link *l)
{
    while (l->inbox) {
        mn_msg *m = l->inbox;
        l->inbox = m->next;
        free(m->buf);
        free(m);
    }
    l->inbox_tail = l->ulast = NULL;
    l->in_bytes = l->in_count = 0;
}

/* Forgets l everywhere without reporting it: the far end sees it hang up. */
static void s_detach(mn_link *l)
{
    mn_mgr *cm = s_mgr(l);

    for (mn_link **pp = &cm->links; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    if (l->b.open) {
        if (l->b.kind == MZ_LINK_PEER) cm->b.n_peer--;
        else cm->b.n_api--;
    }
    if (l->b.kind == MZ_LINK_PEER && l->b.outbound)
        cm->b.n_out--;
    if (l->peer != NULL) {
        if (!l->peer->closing && !l->peer->hangup[0]) {
            snprintf(l->peer->hangup, sizeof l->peer->hangup, "connection closed");
            s_ready(l->peer);
        }
        l->peer->peer = NULL;
        l->peer = NULL;
    }
    s_unready(l);
    s_inbox_clear(l);
}

/* Reports the close, then frees l. */
static void s_finish(mn_link *l)
{
    mn_mgr *cm = s_mgr(l);
    char reason[sizeof l->reason];

    snprintf(reason, sizeof reason, "%s", l->reason[0] ? l->reason : "connection closed");
    s_detach(l);
    if (cm->b.o.cb.on_close)
        cm->b.o.cb.on_close(&l->b, reason, cm->b.o.ctx);
    free(l);
}

static void s_mn_close(mz_link *base, uint16_t code, const char *reason)
{
    mn_link *l = (mn_link *)base;

    if (l->closing)
        return;
    l->closing = true;
    snprintf(l->reason, sizeof l->reason, "%s", reason);
    if (l->peer != NULL && !l->peer->closing && !l->peer->hangup[0]) {
        snprintf(l->peer->hangup, sizeof l->peer->hangup, "closed by peer (%u): %s",
                 (unsigned)code, reason);
        s_ready(l->peer);
    }
    s_ready(l);
}

static void s_open(mn_link *l)
{
    mn_mgr *cm = s_mgr(l);

    l->b.open = true;
    if (l->b.kind == MZ_LINK_PEER) cm->b.n_peer++;
    else cm->b.n_api++;
    cm->b.stats.links_opened++;
    if (cm->b.o.cb.on_open)
        cm->b.o.cb.on_open(&l->b, cm->b.o.ctx);
}

static bool s_full(const mn_mgr *cm, mz_link_kind kind)
{
    if (kind == MZ_LINK_PEER)
        return cm->b.n_peer >= cm->b.o.max_peers;
    return cm->b.n_api >= cm->b.o.max_api_clients;
}

/* Hands l one message of its inbox. */
static void s_deliver_one(mn_link *l)
{
    mn_mgr *cm = s_mgr(l);
    mn_msg *m = l->inbox;

    l->inbox = m->next;
    if (l->inbox == NULL)
        l->inbox_tail = NULL;
    if (l->ulast == m)
        l->ulast = NULL;
    l->in_bytes -= m->len;
    l->in_count--;
    if (m->len > cm->b.o.max_message) {
        char why[100];
        cm->b.stats.oversize_closes++;
        snprintf(why, sizeof why, "message too big: over %zu bytes", cm->b.o.max_message);
        s_mn_close(&l->b, 1009, why);
    } else {
        cm->b.stats.msgs_in++;
        cm->b.stats.bytes_in += m->len;
        if (m->binary && cm->b.o.cb.on_binary && l->b.kind == MZ_LINK_PEER)
            cm->b.o.cb.on_binary(&l->b, (const uint8_t *)m->buf + MZ_LINK_PRE, m->len,
                                 cm->b.o.ctx);
        else if (m->binary)
            s_mn_close(&l->b, 1003, "binary frames are not supported on this link");
        else if (cm->b.o.cb.on_message)
            cm->b.o.cb.on_message(&l->b, m->buf + MZ_LINK_PRE, m->len, cm->b.o.ctx);
    }
    free(m->buf);
    free(m);
}

/* ---- listeners and dials -------------------------------------------------- */

static bool s_port_used(const mz_memnet *net, int port)
{
    for (const mn_mgr *m = net->mgrs; m; m = m->next)
        if (m->peer_port == port || m->api_port == port)
            return true;
    return false;
}

/* Binds url on the network: port 0 takes the lowest free one. */
static mz_status s_bind(mn_mgr *cm, const char *url, int *port, char *host, char *bound,
                        mz_err *err)
{
    mz_url u;
    mz_status rc = mz_url_parse2(url, &u, err);

    if (rc != MZ_OK)
        return rc;
    if (u.port != 0 && s_port_used(cm->net, u.port))
        return mz_err_set(err, MZ_EIO, "cannot listen on %s: address in use", url);
    for (u.port = u.port ? u.port : 1; u.port == 0 || s_port_used(cm->net, u.port); u.port++)
        ;
    *port = u.port;
    snprintf(host, 128, "%s", u.host);
    snprintf(bound, 256, strchr(u.host, ':') ? "%s://[%s]:%d" : "%s://%s:%d",
             u.tls ? "wss" : "ws", u.host, u.port);
    return MZ_OK;
}

static mn_mgr *s_listener(mz_memnet *net, const char *url, int kind)
{
    mz_url u;

    if (mz_url_parse2(url, &u, NULL) != MZ_OK)
        return NULL;
    for (mn_mgr *m = net->mgrs; m; m = m->next) {
        if (m->b.closing)
            continue;
        if (kind != MZ_LINK_API && m->peer_port == u.port && strcasecmp(m->peer_host, u.host) == 0)
            return m;
        if (kind != MZ_LINK_PEER && m->api_port == u.port && strcasecmp(m->api_host, u.host) == 0)
            return m;
    }
    return NULL;
}

/* A dial is worked off: the listener takes it, or it fails. Returns false
 * when l was freed. */
static bool s_connect(mn_link *l)
{
    mn_mgr *cm = s_mgr(l), *srv = s_listener(cm->net, l->b.url, (int)l->b.kind);
    mn_link *s;

    l->connecting = false;
    if (srv == NULL) {
        cm->b.stats.dial_failures++;
        snprintf(l->reason, sizeof l->reason, "dial failed: connection refused (nothing "
                 "listens at %.100s)", l->b.url);
        s_finish(l);
        return false;
    }
    if (s_full(srv, l->b.kind)) {
        /* As over WebSocket: the upgrade completes, then the listener closes. */
        srv->b.stats.links_refused_full++;
        mz_log_raw(MZ_LOG_WARN, "connmgr", "refusing inbound %s link: %zu in use",
                   l->b.kind == MZ_LINK_PEER ? "peer" : "api",
                   l->b.kind == MZ_LINK_PEER ? srv->b.n_peer : srv->b.n_api);
        snprintf(l->hangup, sizeof l->hangup, "closed by peer (1008): too many links");
        s_open(l);
        return true;
    }
    if ((s = s_link_new(srv, l->b.kind, false)) == NULL) {
        cm->b.stats.dial_failures++;
        snprintf(l->reason, sizeof l->reason, "dial failed: out of memory");
        s_finish(l);
        return false;
    }
    s->peer = l;
    l->peer = s;
    s_open(s);
    s_open(l);
    return true;
}

/* One thing for l: returns false when l was freed. */
static bool s_step(mn_link *l)
{
    if (l->closing) {
        if (l->connecting)
            snprintf(l->reason, sizeof l->reason, "closed before connecting");
        s_finish(l);
        return false;
    }
    if (l->connecting)
        return s_connect(l);
    if (l->inbox != NULL) {
        if (!l->paused)
            s_deliver_one(l);
        return true;
    }
    if (l->hangup[0]) {
        snprintf(l->reason, sizeof l->reason, "%s", l->hangup);
        s_finish(l);
        return false;
    }
    return true;
}

size_t mz_memnet_run(mz_memnet *net, size_t max)
{
    size_t n = 0;

    while (net->ready != NULL && (max == 0 || n < max)) {
        mn_link *l = net->ready;
        net->ready = l->rnext;
        if (net->ready == NULL)
            net->ready_tail = NULL;
        l->ready = false;
        n++;
        if (s_step(l) && s_has_work(l))
            s_ready(l);
    }
    return n;
}

/* ---- the ops -------------------------------------------------------------- */

static mz_status s_mn_new(const mz_transport *t, const mz_connmgr_opts *opts, mz_connmgr **out,
                          mz_err *err)
{
    mz_memnet *net = s_net_of(t);
    mn_mgr *cm;
    mz_status rc = MZ_OK;

    *out = NULL;
    if (opts->loop != net->loop)
        return mz_err_set(err, MZ_EINVAL, "memnet: the manager's loop is not the network's");
    if ((cm = calloc(1, sizeof *cm)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "connmgr: allocating");
    mz__connmgr_init(&cm->b, t, opts);
    cm->net = net;
    if (opts->listen_url != NULL)
        rc = s_bind(cm, opts->listen_url, &cm->peer_port, cm->peer_host, cm->b.listen_url, err);
    if (rc == MZ_OK && opts->api_url != NULL)
        rc = s_bind(cm, opts->api_url, &cm->api_port, cm->api_host, cm->b.api_url, err);
    if (rc != MZ_OK) {
        free(cm);
        return rc;
    }
    cm->next = net->mgrs;
    net->mgrs = cm;
    *out = &cm->b;
    return MZ_OK;
}

static void s_mn_cm_close(mz_connmgr *base)
{
    mn_mgr *cm = (mn_mgr *)base;

    if (cm->b.closing)
        return;
    cm->b.closing = true;
    /* Like lws's context destroy: every link closes, without a close frame
     * (both ends read "connection closed"), reported from the loop. */
    for (mn_link *l = cm->links; l; l = l->next) {
        if (l->closing)
            continue;
        l->closing = true;
        snprintf(l->reason, sizeof l->reason, "connection closed");
        if (l->peer != NULL && !l->peer->closing && !l->peer->hangup[0]) {
            snprintf(l->peer->hangup, sizeof l->peer->hangup, "connection closed");
            s_ready(l->peer);
        }
        s_ready(l);
    }
}

static void s_mn_cm_free(mz_connmgr *base)
{
    mn_mgr *cm = (mn_mgr *)base;

    if (!cm->b.closing) {
        s_mn_cm_close(base);
        uv_run(cm->b.loop, UV_RUN_DEFAULT);
    }
    while (cm->links) {
        mn_link *l = cm->links;
        s_detach(l);
        free(l);
    }
    for (mn_mgr **pp = &cm->net->mgrs; *pp; pp = &(*pp)->next)
        if (*pp == cm) {
            *pp = cm->next;
            break;
        }
    free(cm);
}

static mz_status s_mn_dial(mz_connmgr *base, const char *url, mz_link_kind kind, void *user,
                           mz_link **out, mz_err *err)
{
    mn_mgr *cm = (mn_mgr *)base;
    mz_url u;
    mn_link *l;
    mz_status rc;

    if (out)
        *out = NULL;
    if ((rc = mz__connmgr_dial_check(&cm->b, url, kind, &u, err)) != MZ_OK)
        return rc;
    if ((l = s_link_new(cm, kind, true)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "dial %s: allocating", url);
    snprintf(l->b.url, sizeof l->b.url, "%s", url);
    snprintf(l->b.addr, sizeof l->b.addr, "%.40s:%d", u.host, u.port);
    snprintf(l->b.pin, sizeof l->b.pin, "%s", u.pin);
    l->b.user = user;
    l->connecting = true;
    if (kind == MZ_LINK_PEER)
        cm->b.n_out++;
    s_ready(l);
    if (out)
        *out = &l->b;
    return MZ_OK;
}

static mz_status s_mn_send(mz_link *base, char *buf, size_t len, unsigned flags, mz_err *err)
{
    bool urgent = (flags & MZ_SEND_URGENT) != 0;
    mn_link *l = (mn_link *)base, *p = l->peer;
    mn_mgr *cm = s_mgr(l);
    mn_msg *m;

    if (l->closing || cm->b.closing || !l->b.open) {
        free(buf);
        return mz_err_set(err, MZ_ESTATE, "link %s is %s", l->b.addr,
                          l->b.open ? "closing" : "not connected yet");
    }
    if (p != NULL && (p->in_bytes + len > cm->b.o.max_send_queue ||
                      p->in_count + 1 > cm->b.o.max_send_msgs)) {
        cm->b.stats.slow_link_closes++;
        mz_log_raw(MZ_LOG_WARN, "connmgr",
                   "link %s: send queue full (%zu messages, %zu bytes), closing slow peer",
                   l->b.addr, p->in_count, p->in_bytes);
        free(buf);
        s_mn_close(base, 1008, "send queue full");
        return mz_err_set(err, MZ_ELIMIT, "link %s: send queue full", l->b.addr);
    }
    cm->b.stats.msgs_out++;
    cm->b.stats.bytes_out += len;
    if (cm->net->tap)
        cm->net->tap(base, buf + MZ_LINK_PRE, len, cm->net->tap_ctx);
    if (p == NULL || p->closing || (m = malloc(sizeof *m)) == NULL) {
        free(buf);              /* no far end (played by hand, or gone): lost in flight */
        return MZ_OK;
    }
    m->len = len;
    m->buf = buf;
    m->binary = (flags & MZ_SEND_BINARY) != 0;
    if (urgent) {
        /* Calls and replies overtake queued broadcasts, in their own order. */
        mn_msg **at = p->ulast ? &p->ulast->next : &p->inbox;
        m->next = *at;
        *at = m;
        if (m->next == NULL)
            p->inbox_tail = m;
        p->ulast = m;
    } else {
        m->next = NULL;
        if (p->inbox_tail) p->inbox_tail->next = m;
        else p->inbox = m;
        p->inbox_tail = m;
    }
    p->in_bytes += len;
    p->in_count++;
    s_ready(p);
    return MZ_OK;
}

static void s_mn_pause(mz_link *base, bool pause)
{
    mn_link *l = (mn_link *)base;

    l->paused = pause;
    if (!pause && s_has_work(l))
        s_ready(l);
}

static bool s_mn_closing(const mz_link *l) { return ((const mn_link *)l)->closing; }

static size_t s_mn_queued_bytes(const mz_link *base)
{
    const mn_link *l = (const mn_link *)base;

    return l->peer ? l->peer->in_bytes : 0;
}

static size_t s_mn_queued_msgs(const mz_link *base)
{
    const mn_link *l = (const mn_link *)base;

    return l->peer ? l->peer->in_count : 0;
}

static const mz_transport s_memnet_ops = {
    .name = "memnet",
    .cm_new = s_mn_new,
    .cm_close = s_mn_cm_close,
    .cm_free = s_mn_cm_free,
    .dial = s_mn_dial,
    .send = s_mn_send,
    .pause = s_mn_pause,
    .close = s_mn_close,
    .closing = s_mn_closing,
    .queued_bytes = s_mn_queued_bytes,
    .queued_msgs = s_mn_queued_msgs,
};

/* ---- the network ------------------------------------------------------------ */

mz_status mz_memnet_new(uv_loop_t *loop, mz_memnet **out, mz_err *err)
{
    mz_memnet *net = calloc(1, sizeof *net);

    *out = NULL;
    if (net == NULL)
        return mz_err_set(err, MZ_ENOMEM, "memnet: allocating");
    net->t = s_memnet_ops;
    net->loop = loop;
    uv_idle_init(loop, &net->idle);
    net->idle.data = net;
    *out = net;
    return MZ_OK;
}

static void s_net_closed(uv_handle_t *h)
{
    free(h->data);
}

void mz_memnet_free(mz_memnet *net)
{
    if (net == NULL)
        return;
    uv_close((uv_handle_t *)&net->idle, s_net_closed);
}

const mz_transport *mz_memnet_transport(mz_memnet *net)
{
    return &net->t;
}

void mz_memnet_set_tap(mz_memnet *net, mz_memnet_tap_fn fn, void *ctx)
{
    net->tap = fn;
    net->tap_ctx = ctx;
}

mz_connmgr *mz_memnet_listener(mz_memnet *net, const char *url)
{
    mn_mgr *m = s_listener(net, url, -1);

    return m ? &m->b : NULL;
}

/* ---- the harness side -------------------------------------------------------- */

uint64_t mz_memnet_accept(mz_connmgr *base, mz_link_kind kind)
{
    mn_mgr *cm = (mn_mgr *)base;
    mn_link *l;
    uint64_t id;

    if (cm->b.closing)
        return 0;
    if (s_full(cm, kind)) {
        cm->b.stats.links_refused_full++;
        return 0;
    }
    if ((l = s_link_new(cm, kind, false)) == NULL)
        return 0;
    id = l->b.id;
    s_open(l);
    return id;
}

mz_link *mz_memnet_find(mz_connmgr *base, uint64_t id)
{
    mn_mgr *cm = (mn_mgr *)base;

    if (cm == NULL || id == 0)
        return NULL;
    for (mn_link *l = cm->links; l; l = l->next)
        if (l->b.id == id)
            return &l->b;
    return NULL;
}

void mz_memnet_deliver(mz_connmgr *base, uint64_t id, const char *buf, size_t len)
{
    mn_link *l = (mn_link *)mz_memnet_find(base, id);

    if (l == NULL || l->closing || !l->b.open)
        return;
    if (len > base->o.max_message) {
        char why[100];
        base->stats.oversize_closes++;
        snprintf(why, sizeof why, "message too big: over %zu bytes", base->o.max_message);
        s_mn_close(&l->b, 1009, why);
        return;
    }
    base->stats.msgs_in++;
    base->stats.bytes_in += len;
    if (base->o.cb.on_message)
        base->o.cb.on_message(&l->b, buf, len, base->o.ctx);
}

void mz_memnet_hangup(mz_connmgr *base, uint64_t id)
{
    mz_link *l = mz_memnet_find(base, id);

    if (l != NULL)
        s_mn_close(l, 1000, "closed by peer (1000): bye");
}
