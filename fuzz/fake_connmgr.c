/* In-memory ConnectionManager for the fuzz harnesses; see fake_connmgr.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_connmgr.h"

/* Matches LWS_PRE on 64-bit builds; callers only use it as headroom. */
const size_t MZ_LINK_PRE = 16;

struct mz_link {
    mz_connmgr *cm;
    uint64_t id;
    mz_link_kind kind;
    bool outbound;
    bool open;                  /* on_open was reported */
    bool closing;               /* close requested; reported by the next pump */
    uint16_t close_code;
    char close_reason[124];
    char url[256];
    char addr[64];
    void *user;
    struct mz_link *next;
};

struct mz_connmgr {
    uv_loop_t *loop;
    mz_connmgr_opts o;
    char listen_url[256];
    char api_url[256];
    uint64_t next_id;
    mz_link *links;
    size_t n_peer, n_api;
    bool closing;
    bool pump_started;          /* pump timer armed by mz_connmgr_close */
    bool pump_closed;           /* its close callback ran */
    uv_timer_t pump;
    mz_connmgr_stats stats;
};

static mz_fake_send_fn s_hook;
static void *s_hook_ctx;
static mz_connmgr *s_last;

void mz_fake_set_send_hook(mz_fake_send_fn fn, void *ctx)
{
    s_hook = fn;
    s_hook_ctx = ctx;
}

mz_connmgr *mz_fake_last(void)
{
    return s_last;
}

static mz_status s_bound(const char *url, char out[256], mz_err *err)
{
    char host[128], path[64];
    int port;
    mz_status rc = mz_url_parse(url, host, sizeof host, &port, path, sizeof path, err);

    if (rc != MZ_OK)
        return rc;
    /* Port 0 "binds" to a fixed fake port, so output is reproducible. */
    snprintf(out, 256, "ws://%s:%d", host, port ? port : 1);
    return MZ_OK;
}

mz_status mz_connmgr_new(const mz_connmgr_opts *opts, mz_connmgr **out, mz_err *err)
{
    mz_connmgr *cm;
    mz_status rc;

    *out = NULL;
    cm = calloc(1, sizeof *cm);
    if (cm == NULL)
        return mz_err_set(err, MZ_ENOMEM, "connmgr: allocating");
    cm->o = *opts;
    cm->loop = opts->loop;
    cm->next_id = 1;
    if (!cm->o.max_message) cm->o.max_message = (1024 * 1024);
    if (!cm->o.max_peers) cm->o.max_peers = MZ_DEFAULT_MAX_PEERS;
    if (!cm->o.max_api_clients) cm->o.max_api_clients = MZ_DEFAULT_MAX_API_CLIENTS;
    if (opts->listen_url != NULL && (rc = s_bound(opts->listen_url, cm->listen_url, err)) != MZ_OK)
        goto fail;
    if (opts->api_url != NULL && (rc = s_bound(opts->api_url, cm->api_url, err)) != MZ_OK)
        goto fail;
    uv_timer_init(cm->loop, &cm->pump);
    cm->pump.data = cm;
    s_last = cm;
    *out = cm;
    return MZ_OK;
fail:
    free(cm);
    return rc;
}

static void s_unlink(mz_link *l)
{
    for (mz_link **pp = &l->cm->links; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            return;
        }
}

size_t mz_fake_pump(mz_connmgr *cm)
{
    size_t n = 0;
    bool again = true;

    /* on_close may close other links (duplicate links, relays), so rescan. */
    while (again) {
        again = false;
        for (mz_link *l = cm->links; l; l = l->next) {
            if (!l->closing)
                continue;
            s_unlink(l);
            if (l->open) {
                if (l->kind == MZ_LINK_PEER) cm->n_peer--;
                else cm->n_api--;
            }
            if (cm->o.cb.on_close)
                cm->o.cb.on_close(l, l->close_reason[0] ? l->close_reason : "connection closed",
                                  cm->o.ctx);
            free(l);
            n++;
            again = true;
            break;
        }
    }
    return n;
}

static void s_pump_closed(uv_handle_t *h)
{
    mz_connmgr *cm = h->data;

    cm->pump_closed = true;
}

static void s_on_pump(uv_timer_t *t)
{
    mz_connmgr *cm = t->data;

    mz_fake_pump(cm);
    uv_close((uv_handle_t *)&cm->pump, s_pump_closed);
}

static mz_link *s_link_new(mz_connmgr *cm, mz_link_kind kind, bool outbound)
{
    mz_link *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    l->cm = cm;
    l->kind = kind;
    l->outbound = outbound;
    l->id = cm->next_id++;
    snprintf(l->addr, sizeof l->addr, "127.0.0.1:%llu", (unsigned long long)(40000 + l->id));
    l->next = cm->links;
    cm->links = l;
    return l;
}

mz_link *mz_fake_find(mz_connmgr *cm, uint64_t id)
{
    if (cm == NULL || id == 0)
        return NULL;
    for (mz_link *l = cm->links; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

uint64_t mz_fake_open(mz_connmgr *cm, mz_link_kind kind)
{
    mz_link *l;
    uint64_t id;

    if (cm->closing)
        return 0;
    if ((kind == MZ_LINK_PEER ? cm->n_peer : cm->n_api) >=
        (kind == MZ_LINK_PEER ? cm->o.max_peers : cm->o.max_api_clients)) {
        cm->stats.links_refused_full++;
        return 0;
    }
    if ((l = s_link_new(cm, kind, false)) == NULL)
        return 0;
    id = l->id;
    l->open = true;
    if (kind == MZ_LINK_PEER) cm->n_peer++;
    else cm->n_api++;
    cm->stats.links_opened++;
    if (cm->o.cb.on_open)
        cm->o.cb.on_open(l, cm->o.ctx);
    return id;
}

void mz_fake_deliver(mz_connmgr *cm, uint64_t id, const char *buf, size_t len)
{
    mz_link *l = mz_fake_find(cm, id);

    if (l == NULL || l->closing || !l->open)
        return;
    if (len > cm->o.max_message) {
        char why[100];
        cm->stats.oversize_closes++;
        snprintf(why, sizeof why, "message too big: over %zu bytes", cm->o.max_message);
        mz_link_close(l, 1009, why);
        return;
    }
    cm->stats.msgs_in++;
    cm->stats.bytes_in += len;
    if (cm->o.cb.on_message)
        cm->o.cb.on_message(l, buf, len, cm->o.ctx);
}

void mz_fake_hangup(mz_connmgr *cm, uint64_t id)
{
    mz_link *l = mz_fake_find(cm, id);

    if (l != NULL)
        mz_link_close(l, 1000, "closed by peer (1000): bye");
}

void mz_connmgr_close(mz_connmgr *cm)
{
    if (cm == NULL || cm->closing)
        return;
    cm->closing = true;
    for (mz_link *l = cm->links; l; l = l->next)
        if (!l->closing) {
            l->closing = true;
            snprintf(l->close_reason, sizeof l->close_reason, "connection closed");
        }
    /* Like lws's context destroy: the closes are reported from the loop. */
    cm->pump_started = true;
    uv_timer_start(&cm->pump, s_on_pump, 0, 0);
}

void mz_connmgr_free(mz_connmgr *cm)
{
    if (cm == NULL)
        return;
    if (!cm->closing) {
        mz_connmgr_close(cm);
        uv_run(cm->loop, UV_RUN_DEFAULT);
    }
    if (!cm->pump_closed) {
        if (!uv_is_closing((uv_handle_t *)&cm->pump))
            uv_close((uv_handle_t *)&cm->pump, s_pump_closed);
        uv_run(cm->loop, UV_RUN_NOWAIT);
    }
    while (cm->links) {
        mz_link *l = cm->links;
        cm->links = l->next;
        free(l);
    }
    if (s_last == cm)
        s_last = NULL;
    free(cm);
}

const char *mz_connmgr_listen_url(const mz_connmgr *cm) { return cm->listen_url; }
const char *mz_connmgr_api_url(const mz_connmgr *cm) { return cm->api_url; }
const mz_connmgr_stats *mz_connmgr_stats_get(const mz_connmgr *cm) { return &cm->stats; }
size_t mz_connmgr_count(const mz_connmgr *cm, mz_link_kind kind)
{
    return kind == MZ_LINK_PEER ? cm->n_peer : cm->n_api;
}

mz_status mz_connmgr_dial(mz_connmgr *cm, const char *url, mz_link_kind kind, void *user,
                          mz_link **out, mz_err *err)
{
    char host[128], path[128];
    int port;
    mz_link *l;
    mz_status rc;

    if (out)
        *out = NULL;
    if ((rc = mz_url_parse(url, host, sizeof host, &port, path, sizeof path, err)) != MZ_OK)
        return rc;
    if (port == 0)
        return mz_err_set(err, MZ_EINVAL, "url '%s': a port is required to dial", url);
    if (cm->closing)
        return mz_err_set(err, MZ_ESTATE, "dial %s: node is shutting down", url);
    if (cm->n_peer >= cm->o.max_peers)
        return mz_err_set(err, MZ_ELIMIT, "dial %s: already at the peer limit (%zu)", url,
                          cm->o.max_peers);
    if ((l = s_link_new(cm, kind, true)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "dial %s: allocating", url);
    snprintf(l->url, sizeof l->url, "%s", url);
    snprintf(l->addr, sizeof l->addr, "%.40s:%d", host, port);
    l->user = user;
    /* Nothing listens in here: the dial fails on the next pump. */
    l->closing = true;
    snprintf(l->close_reason, sizeof l->close_reason, "dial failed: fake connmgr");
    cm->stats.dial_failures++;
    if (out)
        *out = l;
    return MZ_OK;
}

mz_status mz_link_send(mz_link *l, const char *buf, size_t len, mz_err *err)
{
    mz_connmgr *cm = l->cm;

    if (l->closing || cm->closing)
        return mz_err_set(err, MZ_ESTATE, "link %s is closing", l->addr);
    cm->stats.msgs_out++;
    cm->stats.bytes_out += len;
    if (s_hook)
        s_hook(l, buf, len, s_hook_ctx);
    return MZ_OK;
}

mz_status mz_link_send_owned(mz_link *l, char *buf, size_t len, mz_err *err)
{
    mz_status rc = mz_link_send(l, buf + MZ_LINK_PRE, len, err);

    free(buf);
    return rc;
}

void mz_link_pause(mz_link *l, bool pause)
{
    (void)l;
    (void)pause;     /* nothing to pause in memory */
}

void mz_link_close(mz_link *l, uint16_t code, const char *reason)
{
    if (l->closing)
        return;
    l->closing = true;
    l->close_code = code;
    snprintf(l->close_reason, sizeof l->close_reason, "%s", reason);
}

uint64_t mz_link_id(const mz_link *l) { return l->id; }
mz_link_kind mz_link_kind_get(const mz_link *l) { return l->kind; }
bool mz_link_outbound(const mz_link *l) { return l->outbound; }
const char *mz_link_url(const mz_link *l) { return l->url; }
/* Newer connmgr.h (TLS): no pins, no TLS in here. */
const char *mz_link_pin(const mz_link *l);
bool mz_link_tls(const mz_link *l);
const char *mz_link_pin(const mz_link *l) { (void)l; return ""; }
bool mz_link_tls(const mz_link *l) { (void)l; return false; }
const char *mz_link_peer_addr(const mz_link *l) { return l->addr; }
bool mz_link_closing(const mz_link *l) { return l->closing; }
void *mz_link_user(const mz_link *l) { return l->user; }
void mz_link_set_user(mz_link *l, void *user) { l->user = user; }
size_t mz_link_queued_bytes(const mz_link *l) { (void)l; return 0; }
size_t mz_link_queued_msgs(const mz_link *l) { (void)l; return 0; }
mz_status mz_link_send_urgent(mz_link *l, const char *buf, size_t len, mz_err *err)
{
    return mz_link_send(l, buf, len, err);
}
