/* The node's MCP endpoint: Streamable HTTP at /mcp on the local API
 * listener (loopback by default), backed by the node itself.
 *
 *   POST /mcp  one JSON-RPC message; a request is answered with one
 *              application/json response, anything else with 202.
 *   GET  /mcp  an SSE stream carrying notifications/tools/list_changed.
 *   other      405.
 *
 * Stateless: no Mcp-Session-Id is issued and no request needs an earlier
 * one (tools/call works without initialize). Requests carrying an Origin
 * header that is not this machine are refused (403), as are WebSocket
 * upgrades to the API with such an Origin: a web page must not reach the
 * loopback API (DNS rebinding; MCP's transport rules). docs/MCP.md. */
#include <uv.h>
#include <libwebsockets.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "bridge/bridge_int.h"
#include "util/log.h"
#include "core/hooks.h"
#include "core/pins.h"
#include "svc/http.h"
#include "svc/mcp_view.h"
#include "svc/ui.h"

/* Largest POST body accepted (the mesh's own message limit is smaller). */
#define MZ_MCPHTTP_MAX_BODY (4u * 1024 * 1024)
/* Bytes of notifications queued to one SSE client before it is dropped. */
#define MZ_MCPHTTP_MAX_SSE_QUEUE (1024u * 1024)

/* One MCP endpoint: /mcp (view NULL) or /mcp/<view>. */
typedef struct mz_mcpep {
    mz_mcphttp *h;
    const mz_mcpview *view;     /* borrowed from h->views; NULL: the whole mesh */
    mz_mcpsrv *srv;
    mz_mcpnotify *notify;       /* coalesces its list_changed (s_on_event) */
} mz_mcpep;

typedef struct mz_hconn {
    mz_mcphttp *h;
    mz_mcpep *ep;               /* the endpoint of the request or event stream */
    struct lws *wsi;
    uint64_t id;                /* this transaction's number for the MCP server */
    bool post, sse;
    char *body;                 /* request body */
    size_t body_len, body_cap;
    bool too_big;
    /* the response */
    bool ready;                 /* resp is complete: write it */
    bool head_sent;             /* headers out, body next */
    int status;
    const char *ctype;
    char *resp;                 /* LWS_PRE headroom, then resp_len bytes */
    size_t resp_len;
    char *sse_q;                /* SSE: queued event text (no headroom) */
    size_t sse_len;
    bool drop;                  /* close on the next WRITEABLE */
    struct mz_hconn *prev, *next;
} mz_hconn;

struct mz_mcphttp {
    mz_node *node;              /* borrowed */
    uv_loop_t *loop;            /* borrowed */
    bool serve;                 /* answer /mcp */
    bool stopped;
    mz_mcpviews *views;
    mz_mcpep eps[1 + MZ_MCP_VIEWS_MAX];     /* [0]: /mcp; then one per view */
    size_t n_eps;
    mz_hconn *conns;
    uint64_t next_id;
    uint64_t sub;               /* resource.* subscription */
    bool subscribed;
};

static int s_http(void *wsi, int reason, void *user, void *in, size_t len, void *ctx);

/* ---- connections ------------------------------------------------------------- */

static void s_conn_reset(mz_hconn *c)
{
    free(c->body);
    free(c->resp);
    c->body = c->resp = NULL;
    c->body_len = c->body_cap = c->resp_len = 0;
    c->too_big = c->ready = c->head_sent = c->post = false;
    c->status = 0;
    c->ctype = NULL;
}

static void s_conn_free(mz_hconn *c)
{
    mz_mcphttp *h = c->h;

    if (c->prev) c->prev->next = c->next;
    else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (!h->stopped && c->ep != NULL)
        mz_mcpsrv_conn_closed(c->ep->srv, c->id);
    s_conn_reset(c);
    free(c->sse_q);
    free(c);
}

/* Sets the response (takes text, may be NULL for an empty body). */
static void s_respond(mz_hconn *c, int status, const char *ctype, char *text)
{
    size_t n = text ? strlen(text) : 0;

    free(c->resp);
    c->resp = malloc(LWS_PRE + n + 1);
    c->resp_len = 0;
    if (c->resp == NULL) {
        free(text);
        status = 500;
        text = NULL;
        n = 0;
        ctype = "text/plain";
    } else {
        memcpy(c->resp + LWS_PRE, text ? text : "", n);
        c->resp_len = n;
        free(text);
    }
    c->status = status;
    c->ctype = ctype;
    c->ready = true;
    lws_callback_on_writable(c->wsi);
}

/* An HTTP-level refusal with a JSON-RPC error body. */
static void s_refuse(mz_hconn *c, int status, int code, const char *why)
{
    json_t *m = mz__rpc_error(NULL, code, why, NULL);

    s_respond(c, status, "application/json", m ? json_dumps(m, JSON_COMPACT) : NULL);
    json_decref(m);
}

static mz_hconn *s_conn_by_id(mz_mcphttp *h, uint64_t id)
{
    for (mz_hconn *c = h->conns; c; c = c->next)
        if (c->id == id && !c->sse)
            return c;
    return NULL;
}

/* ---- the in-process backend ------------------------------------------------ */

static void s_op_query(void *ctx, const json_t *params, mz_mcpsrv_req *req)
{
    mz_mcpep *ep = ctx;
    mz_mcphttp *h = ep->h;
    const json_t *caps = json_object_get(params, "capabilities"), *v;
    const char *capv[MZ_CAPS_MAX];
    mz_query q;
    json_t *res;
    size_t i;

    memset(&q, 0, sizeof q);
    q.resource_type = json_string_value(json_object_get(params, "resource_type"));
    json_array_foreach(caps, i, v)
        if (i < MZ_CAPS_MAX)
            capv[q.n_capabilities++] = json_string_value(v);
    q.capabilities = capv;
    res = ep->view ? mz_mcpviews_records(h->views, ep->view, h->node)
                   : mz_node_query_resources(h->node, &q);
    mz_mcpsrv_query_done(req, res, res ? NULL : "out of memory");
    json_decref(res);
}

static void s_exec_cb(mz_node *node, const json_t *result, const char *code,
                      const char *message, void *ctx)
{
    mz_mcpsrv_req_trace(ctx, mz_node_call_traceparent(node));
    if (code != NULL)
        mz_mcpsrv_req_error_data(ctx, mz_node_call_error_data(node));
    mz_mcpsrv_exec_done(ctx, result, code, message);
}

static void s_op_execute(void *ctx, const char *rid, const char *method, const json_t *params,
                         int64_t timeout_ms, mz_mcpsrv_req *req)
{
    mz_mcpep *ep = ctx;
    mz_mcphttp *h = ep->h;
    const char *pin = mz_mcpsrv_req_tool_hash(req), *code;
    char why[256];
    mz_err e;

    /* A pinned tool that changed is refused here, before anything is sent. */
    if (pin != NULL && (code = mz_pin_check(h->node, rid, pin, why, sizeof why)) != NULL) {
        mz_mcpsrv_exec_done(req, NULL, code, why);
        return;
    }
    if (mz_node_execute_traced(h->node, rid, method, params, NULL, mz_mcpsrv_req_meta(req),
                               timeout_ms, s_exec_cb, req, &e) != MZ_OK)
        mz_mcpsrv_exec_done(req, NULL, e.code == MZ_ELIMIT ? MZ_EXEC_BUSY : MZ_EXEC_UNREACHABLE,
                            e.msg);
}

static void s_op_send(void *ctx, uint64_t conn, json_t *msg)
{
    mz_mcphttp *h = ((mz_mcpep *)ctx)->h;
    mz_hconn *c = h->stopped ? NULL : s_conn_by_id(h, conn);

    if (c == NULL || c->ready) {
        json_decref(msg);       /* its client went away */
        return;
    }
    s_respond(c, 200, "application/json", json_dumps(msg, JSON_COMPACT));
    json_decref(msg);
}

/* Tells the endpoint's SSE clients that its tool list changed. */
static void s_notify(mz_mcpep *ep)
{
    static const char ev[] =
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";

    mz_mcpsrv_invalidate(ep->srv);
    for (mz_hconn *c = ep->h->conns; c; c = c->next) {
        char *nb;
        if (!c->sse || c->drop || c->ep != ep)
            continue;
        if (c->sse_len + sizeof ev > MZ_MCPHTTP_MAX_SSE_QUEUE ||
            (nb = realloc(c->sse_q, c->sse_len + sizeof ev)) == NULL) {
            mz_log(MZ_LOG_WARN, "mcp-http", "SSE client too slow, dropping it");
            c->drop = true;
        } else {
            memcpy(nb + c->sse_len, ev, sizeof ev - 1);
            c->sse_q = nb;
            c->sse_len += sizeof ev - 1;
        }
        lws_callback_on_writable(c->wsi);
    }
}

/* A burst of resource events is over (mcp_notify.c). */
static void s_notify_burst(void *ctx)
{
    mz_mcpep *ep = ctx;

    if (!ep->h->stopped)
        s_notify(ep);
}

/* resource.* events: each endpoint whose tools the record is among hears it:
 * its cached directory answer is stale now, its clients are told once the
 * burst is over. */
static void s_on_event(mz_node *node, const char *topic, const json_t *data,
                       const char *source, void *ctx)
{
    mz_mcphttp *h = ctx;

    (void)node;
    (void)topic;
    (void)source;
    for (size_t i = 0; !h->stopped && i < h->n_eps; i++) {
        mz_mcpep *ep = &h->eps[i];
        if (!(ep->view ? mz_mcpview_match(ep->view, data)
                       : mz_mcpsrv_record_matches(ep->srv, data)))
            continue;
        mz_mcpsrv_invalidate(ep->srv);
        if (ep->notify != NULL)
            mz__mcpnotify_poke(ep->notify);
        else
            s_notify(ep);
    }
}

/* An approval changed how a view lists a tool. */
static void s_on_view_change(void *ctx, const mz_mcpview *v)
{
    mz_mcphttp *h = ctx;

    for (size_t i = 1; !h->stopped && i < h->n_eps; i++)
        if (h->eps[i].view == v)
            s_notify(&h->eps[i]);
}

/* ---- lws callbacks ----------------------------------------------------------- */

static void s_header(struct lws *wsi, enum lws_token_indexes t, char *buf, int len)
{
    if (lws_hdr_copy(wsi, buf, len, t) < 0)
        buf[0] = '\0';
}

/* A page this listener served (the dashboard) opening the API WebSocket on
 * a non-loopback address: its Origin is the Host it was loaded from. Only
 * with the token required, which no rebinding page knows. */
static bool s_own_page(mz_mcphttp *h, struct lws *wsi, const char *origin)
{
    char host[256];

    if (!mz__node_api_token_required(h->node))
        return false;
    s_header(wsi, WSI_TOKEN_HOST, host, sizeof host);
    if (strncasecmp(origin, "http://", 7) == 0)
        origin += 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        origin += 8;
    else
        return false;
    return host[0] != '\0' && strcasecmp(origin, host) == 0;
}

/* The endpoint a URI names: /mcp (or /mcp/) and /mcp/<view> (a trailing
 * '/' allowed). *mcp false: not ours. NULL with *mcp true: an unknown view. */
static mz_mcpep *s_endpoint(mz_mcphttp *h, const char *uri, bool *mcp, char *view, size_t n)
{
    size_t len;

    *mcp = uri != NULL && strncmp(uri, "/mcp", 4) == 0 && (uri[4] == '\0' || uri[4] == '/');
    if (!*mcp)
        return NULL;
    uri += uri[4] == '/' ? 5 : 4;
    len = strlen(uri);
    if (len > 0 && uri[len - 1] == '/')
        len--;
    if (len == 0)
        return &h->eps[0];
    snprintf(view, n, "%.*s", (int)len, uri);
    for (size_t i = 1; i < h->n_eps; i++)
        if (strcmp(mz_mcpview_name(h->eps[i].view), view) == 0)
            return &h->eps[i];
    return NULL;
}

static int s_on_request(mz_mcphttp *h, struct lws *wsi, mz_hconn **slot, const char *uri)
{
    char view[128] = "";
    bool mcp = false;
    mz_mcpep *ep = h->serve ? s_endpoint(h, uri, &mcp, view, sizeof view) : NULL;
    char origin[256], accept[256], ctype[128], ver[32];
    mz_hconn *c = *slot;
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;

    if (!h->serve || !mcp)
        return 1;
    if (c == NULL) {
        int one = 1, fd = lws_get_socket_fd(wsi);
        /* Headers and body go out as two writes: without this, Nagle holds
         * the body until the client's delayed ACK of the headers. */
        if (fd >= 0)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return -1;
        c->h = h;
        c->wsi = wsi;
        c->next = h->conns;
        if (h->conns)
            h->conns->prev = c;
        h->conns = c;
        *slot = c;
    }
    s_conn_reset(c);
    c->id = ++h->next_id;
    c->post = post;
    c->ep = ep;
    s_header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
    s_header(wsi, WSI_TOKEN_HTTP_ACCEPT, accept, sizeof accept);
    s_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, ctype, sizeof ctype);
    if (lws_hdr_custom_copy(wsi, ver, sizeof ver, "mcp-protocol-version:", 21) < 0)
        ver[0] = '\0';
    if (h->stopped) {
        s_refuse(c, 503, MZ_RPC_SERVER_ERROR, "the node is shutting down");
    } else if (ep == NULL) {
        char why[256];
        mz_mcpviews_unknown(h->views, view, why, sizeof why);
        s_refuse(c, 404, MZ_RPC_INVALID_REQ, why);
    } else if (!mz__origin_local(origin)) {
        mz_log(MZ_LOG_WARN, "mcp-http", "refusing /mcp request from origin '%.100s'", origin);
        s_refuse(c, 403, MZ_RPC_SERVER_ERROR, "forbidden origin");
    } else if (ver[0] != '\0' && !mz_mcp_version_supported(ver)) {
        char why[120];
        snprintf(why, sizeof why, "unsupported MCP-Protocol-Version '%.20s'", ver);
        s_refuse(c, 400, MZ_RPC_INVALID_REQ, why);
    } else if (get) {
        if (strstr(accept, "text/event-stream") == NULL) {
            s_refuse(c, 406, MZ_RPC_INVALID_REQ, "GET /mcp needs Accept: text/event-stream");
        } else {
            c->sse = true;
            lws_callback_on_writable(wsi);
        }
    } else if (!post) {
        s_refuse(c, 405, MZ_RPC_INVALID_REQ, "use POST (or GET for the event stream)");
    } else if (strncasecmp(ctype, "application/json", 16) != 0) {
        s_refuse(c, 415, MZ_RPC_INVALID_REQ, "POST /mcp needs Content-Type: application/json");
    }
    return 0;
}

static int s_on_body_done(mz_hconn *c)
{
    mz_mcp_outcome out;

    if (c->ready)
        return 0;               /* refused at the headers already */
    if (c->too_big) {
        s_refuse(c, 413, MZ_RPC_INVALID_REQ, "request body too large");
        return 0;
    }
    out = mz_mcpsrv_handle(c->ep->srv, c->id, c->body ? c->body : "", c->body_len);
    if (!c->ready) {
        if (out == MZ_MCP_NO_REPLY)
            s_respond(c, 202, "application/json", NULL);
        else
            /* tools/call may take up to its timeout: no lws timeout meanwhile. */
            lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    }
    return 0;
}

static int s_write(mz_hconn *c)
{
    struct lws *wsi = c->wsi;
    unsigned char hb[LWS_PRE + 512], *start = hb + LWS_PRE, *p = start, *end = hb + sizeof hb - 1;

    if (c->drop)
        return -1;
    if (c->sse) {
        if (!c->head_sent) {
            if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                            LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
                lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                            (const unsigned char *)"no-cache", 8, &p, end) ||
                lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
            c->head_sent = true;
            /* An event stream lives as long as the client wants it. */
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
            if (c->sse_len > 0)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (c->sse_len > 0) {
            char *b = malloc(LWS_PRE + c->sse_len);
            int n;
            if (b == NULL)
                return -1;
            memcpy(b + LWS_PRE, c->sse_q, c->sse_len);
            n = lws_write(wsi, (unsigned char *)b + LWS_PRE, c->sse_len, LWS_WRITE_HTTP);
            free(b);
            c->sse_len = 0;
            if (n < 0)
                return -1;
        }
        return 0;
    }
    if (!c->ready)
        return 0;
    if (!c->head_sent) {
        if (lws_add_http_common_headers(wsi, (unsigned)c->status, c->ctype, c->resp_len, &p,
                                        end))
            return -1;
        if (c->status == 405 &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                        (const unsigned char *)"GET, POST", 9, &p, end))
            return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        c->head_sent = true;
        if (c->resp_len > 0) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (lws_write(wsi, (unsigned char *)c->resp + LWS_PRE, c->resp_len,
                         LWS_WRITE_HTTP_FINAL) < 0) {
        return -1;
    }
    s_conn_reset(c);
    c->id = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int s_http(void *vwsi, int reason, void *user, void *in, size_t len, void *ctx)
{
    mz_mcphttp *h = ctx;
    struct lws *wsi = vwsi;
    mz_hconn **slot = user;
    mz_hconn *c = slot ? *slot : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        /* A WebSocket upgrade to the API: the headers are still there. */
        char origin[256];
        s_header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
        if (!mz__origin_local(origin) && !s_own_page(h, wsi, origin)) {
            mz_log(MZ_LOG_WARN, "mcp-http", "refusing an API WebSocket from origin '%.100s'",
                   origin);
            return -1;
        }
        return 1;
    }
    case LWS_CALLBACK_HTTP: {
        int r = mz__ui_http(wsi, in);    /* the dashboard, /ui/ */
        if (r != 1 || slot == NULL)
            return r;
        return s_on_request(h, wsi, slot, in);
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (c == NULL)
            return 1;
        if (c->body_len + len > MZ_MCPHTTP_MAX_BODY) {
            c->too_big = true;
            return 0;
        }
        if (c->body_len + len + 1 > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap : 4096;
            char *nb;
            while (cap < c->body_len + len + 1)
                cap *= 2;
            if ((nb = realloc(c->body, cap)) == NULL) {
                c->too_big = true;
                return 0;
            }
            c->body = nb;
            c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, in, len);
        c->body_len += len;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return c ? s_on_body_done(c) : 1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return c ? s_write(c) : 1;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c != NULL) {
            *slot = NULL;
            s_conn_free(c);
        }
        return 1;
    default:
        return 1;
    }
}

/* ---- lifecycle ------------------------------------------------------------------ */

/* One endpoint's MCP server: the whole mesh's tools, or a view's. */
static mz_status s_ep_new(mz_mcphttp *h, const mz_mcpview *v, mz_err *err)
{
    mz_mcpep *ep = &h->eps[h->n_eps];
    mz_mcpsrv_opts o;
    mz_status rc;

    memset(&o, 0, sizeof o);
    o.resource_type = v ? mz_mcpview_type(v) : "tool";
    o.reply_cancelled = true;
    /* resource.* events (s_on_event) and approvals invalidate the cached answer. */
    o.cache_ms = h->serve ? 2000 : 0;
    o.ops.query = s_op_query;
    o.ops.execute = s_op_execute;
    o.ops.send = s_op_send;
    o.ctx = ep;
    ep->h = h;
    ep->view = v;
    if ((rc = mz_mcpsrv_new(&o, &ep->srv, err)) != MZ_OK)
        return rc;
    h->n_eps++;
    if (h->serve && (ep->notify = mz__mcpnotify_new(h->loop, s_notify_burst, ep)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp http: allocating");
    return MZ_OK;
}

static void s_eps_free(mz_mcphttp *h)
{
    for (size_t i = 0; i < h->n_eps; i++) {
        mz_mcpsrv_free(h->eps[i].srv);
        mz__mcpnotify_free(h->eps[i].notify);
        h->eps[i].notify = NULL;
    }
    h->n_eps = 0;
}

mz_status mz__mcphttp_new(mz_node *node, uv_loop_t *loop, bool serve_mcp, const char *views,
                          const char *data_dir, mz_mcphttp **out, mz_err *err)
{
    mz_mcphttp *h = calloc(1, sizeof *h);
    mz_status rc;

    *out = NULL;
    if (h == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp http: allocating");
    h->node = node;
    h->loop = loop;
    h->serve = serve_mcp;
    if ((rc = mz_mcpviews_new(views, data_dir, &h->views, err)) != MZ_OK ||
        (rc = s_ep_new(h, NULL, err)) != MZ_OK)
        goto fail;
    for (size_t i = 0; i < mz_mcpviews_count(h->views); i++)
        if ((rc = s_ep_new(h, mz_mcpviews_at(h->views, i), err)) != MZ_OK)
            goto fail;
    mz_mcpviews_on_change(h->views, s_on_view_change, h);
    if (serve_mcp &&
        (rc = mz_node_subscribe(node, "resource.*", s_on_event, h, &h->sub, err)) != MZ_OK)
        goto fail;
    h->subscribed = serve_mcp;
    /* Our rows of the API listener's route table (/ui/: the dashboard, which
     * s_http hands to ui.c); alone without one. */
    if (mz__http_handle(node, "/mcp/", s_http, h, NULL) != MZ_OK ||
        mz__http_handle(node, "/ui/", s_http, h, NULL) != MZ_OK)
        mz_node_set_http_handler(node, s_http, h);
    *out = h;
    return MZ_OK;
fail:
    s_eps_free(h);
    mz_mcpviews_free(h->views);
    free(h);
    return rc;
}

struct mz_mcpviews *mz__mcphttp_views(const mz_mcphttp *h)
{
    return h ? h->views : NULL;
}

void mz__mcphttp_stop(mz_mcphttp *h)
{
    if (h == NULL || h->stopped)
        return;
    h->stopped = true;
    if (h->subscribed)
        mz_node_unsubscribe(h->node, h->sub, NULL);
    h->subscribed = false;
    /* Calls still running answer into the void (their requests are orphaned). */
    s_eps_free(h);
    for (mz_hconn *c = h->conns; c; c = c->next)
        if (c->sse) {
            c->drop = true;
            lws_callback_on_writable(c->wsi);
        }
}

void mz__mcphttp_free(mz_mcphttp *h)
{
    if (h == NULL)
        return;
    mz__mcphttp_stop(h);
    if (h->node && mz__node_http_ctx(h->node) == h)
        mz_node_set_http_handler(h->node, NULL, NULL);
    else if (h->node && mz__http_handler_ctx(h->node, "/mcp/", s_http) == h) {
        mz__http_unhandle(h->node, "/mcp/");
        mz__http_unhandle(h->node, "/ui/");
    }
    while (h->conns)
        s_conn_free(h->conns);
    mz_mcpviews_free(h->views);
    free(h);
}
