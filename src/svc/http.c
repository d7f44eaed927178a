/* The route table of the local API listener's HTTP side (http.h). */
#include <uv.h>
#include <libwebsockets.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/bridge_int.h"
#include "core/node_int.h"
#include "svc/http.h"
#include "util/log.h"

/* Pages (a path, exact or everything below one ending in '/', and the
 * function that answers a GET there) and handlers (the MCP endpoint), added
 * by the services that serve them: the route table names none of them. */
#define S_N_ROUTES 8
#define S_MAX_HANDLERS 4

struct s_route {
    char path[64];
    mz_http_page_fn page;       /* NULL: free slot */
};

typedef struct mz_router {
    mz_node *node;              /* borrowed */
    struct s_route pages[S_N_ROUTES];
    struct {
        char path[64];
        mz_http_fn fn;          /* NULL: free slot */
        void *ctx;
    } h[S_MAX_HANDLERS];
} mz_router;

/* The router's part of a connection's area, after the handlers' part. */
typedef struct s_tail {
    struct s_reply *reply;      /* a page's answer being written, or NULL */
    uint8_t route;              /* 0: none; 1..S_N_ROUTES: page; 0x80|i: handler i */
    uint8_t touched;            /* handlers that saw this connection (bit i) */
} s_tail;

/* A page's answer being written. */
typedef struct s_reply {
    int status;
    const char *ctype;
    char *buf;                  /* LWS_PRE headroom, then len bytes */
    size_t len;
    bool head_sent;
} s_reply;

_Static_assert(MZ_HTTP_ROUTE_PSS + sizeof(s_tail) <= MZ_HTTP_PSS_SIZE, "HTTP area too small");

static int s_route_cb(void *wsi, int reason, void *user, void *in, size_t len, void *ctx);

bool mz__origin_local(const char *o)
{
    static const char *const hosts[] = { "localhost", "127.0.0.1", "[::1]" };

    if (o == NULL || o[0] == '\0')
        return true;
    if (strncasecmp(o, "http://", 7) == 0)
        o += 7;
    else if (strncasecmp(o, "https://", 8) == 0)
        o += 8;
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        size_t n = strlen(hosts[i]);
        if (strncasecmp(o, hosts[i], n) != 0)
            continue;
        o += n;
        if (*o == ':') {
            o++;
            if (*o == '\0')
                return false;
            while (*o >= '0' && *o <= '9')
                o++;
        }
        return *o == '\0' || (o[0] == '/' && o[1] == '\0');
    }
    return false;
}


static mz_router *s_router(const mz_node *node)
{
    return node->http_fn == s_route_cb ? node->http_ctx : NULL;
}

static bool s_path_match(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);

    if (n > 1 && pattern[n - 1] == '/')
        return strncmp(path, pattern, n) == 0 || (strncmp(path, pattern, n - 1) == 0 &&
                                                  path[n - 1] == '\0');
    return strcmp(pattern, path) == 0;
}

static void s_reply_free(s_tail *t)
{
    s_reply **slot = &t->reply;

    if (*slot != NULL) {
        free((*slot)->buf);
        free(*slot);
        *slot = NULL;
    }
}

/* Runs the page for a GET and queues its answer. */
static int s_on_page(mz_router *r, struct lws *wsi, s_tail *t, const struct s_route *rt,
                     const char *path)
{
    mz_http_page pg = { 500, "text/plain; charset=utf-8", NULL, 0 };
    char origin[256];
    s_reply *rp = calloc(1, sizeof *rp);

    if (rp == NULL)
        return -1;
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) < 0)
        origin[0] = '\0';
    if (!mz__origin_local(origin)) {
        mz_log(MZ_LOG_WARN, "http", "refusing %s from origin '%.100s'", path, origin);
        pg = (mz_http_page){ 403, "text/plain; charset=utf-8", strdup("forbidden origin\n"), 0 };
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        pg = (mz_http_page){ 405, "text/plain; charset=utf-8", strdup("use GET\n"), 0 };
    } else {
        rt->page(r->node, wsi, path, &pg);
    }
    if (pg.body != NULL && pg.len == 0)
        pg.len = strlen(pg.body);
    rp->status = pg.status;
    rp->ctype = pg.ctype;
    rp->len = pg.body ? pg.len : 0;
    rp->buf = malloc(LWS_PRE + rp->len + 1);
    if (rp->buf == NULL) {
        free(pg.body);
        free(rp);
        return -1;
    }
    memcpy(rp->buf + LWS_PRE, pg.body ? pg.body : "", rp->len);
    free(pg.body);
    s_reply_free(t);
    t->reply = rp;
    lws_callback_on_writable(wsi);
    return 0;
}

static int s_write(struct lws *wsi, s_tail *t)
{
    s_reply *rp = t->reply;
    unsigned char hb[LWS_PRE + 512], *start = hb + LWS_PRE, *p = start, *end = hb + sizeof hb - 1;

    if (rp == NULL)
        return 0;
    if (!rp->head_sent) {
        if (lws_add_http_common_headers(wsi, (unsigned)rp->status, rp->ctype, rp->len, &p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        rp->head_sent = true;
        if (rp->len > 0) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (lws_write(wsi, (unsigned char *)rp->buf + LWS_PRE, rp->len,
                         LWS_WRITE_HTTP_FINAL) < 0) {
        return -1;
    }
    s_reply_free(t);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* A new request: bind the connection to the page or handler for its path. */
static int s_on_request(mz_router *r, struct lws *wsi, void *user, s_tail *t, const char *path)
{
    s_reply_free(t);
    t->route = 0;
    for (size_t i = 0; path && i < S_N_ROUTES; i++)
        if (r->pages[i].page && s_path_match(r->pages[i].path, path)) {
            t->route = (uint8_t)(i + 1);
            return s_on_page(r, wsi, t, &r->pages[i], path);
        }
    for (int i = 0; path && i < S_MAX_HANDLERS; i++)
        if (r->h[i].fn && s_path_match(r->h[i].path, path)) {
            t->route = (uint8_t)(0x80 | i);
            t->touched |= (uint8_t)(1u << i);
            return r->h[i].fn(wsi, LWS_CALLBACK_HTTP, user, (void *)path, strlen(path),
                              r->h[i].ctx);
        }
    return 1;                   /* lws answers 404 */
}

static int s_route_cb(void *vwsi, int reason, void *user, void *in, size_t len, void *ctx)
{
    mz_router *r = ctx;
    struct lws *wsi = vwsi;
    s_tail *t = user ? (s_tail *)((char *)user + MZ_HTTP_ROUTE_PSS) : NULL;
    int rc = 1;

    if (t == NULL) {
        /* Before a connection has its area: offer it to the handlers. */
        for (int i = 0; i < S_MAX_HANDLERS && rc == 1; i++)
            if (r->h[i].fn)
                rc = r->h[i].fn(vwsi, reason, user, in, len, r->h[i].ctx);
        return rc;
    }
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return s_on_request(r, wsi, user, t, in);
    case LWS_CALLBACK_CLOSED_HTTP:
        s_reply_free(t);
        for (int i = 0; i < S_MAX_HANDLERS; i++)
            if (r->h[i].fn && (t->touched & (1u << i)))
                r->h[i].fn(vwsi, reason, user, in, len, r->h[i].ctx);
        memset(t, 0, sizeof *t);
        return 1;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        t->route = 0;           /* every handler checks an upgrade */
        break;
    default:
        break;
    }
    if (t->route & 0x80) {
        int i = t->route & 0x7f;
        return r->h[i].fn ? r->h[i].fn(vwsi, reason, user, in, len, r->h[i].ctx) : -1;
    }
    if (t->route != 0) {
        if (reason == LWS_CALLBACK_HTTP_WRITEABLE)
            return s_write(wsi, t);
        if (reason == LWS_CALLBACK_HTTP_BODY || reason == LWS_CALLBACK_HTTP_BODY_COMPLETION)
            return 0;           /* a page ignores a body */
        return 1;
    }
    for (int i = 0; i < S_MAX_HANDLERS && rc == 1; i++)
        if (r->h[i].fn)
            rc = r->h[i].fn(vwsi, reason, user, in, len, r->h[i].ctx);
    return rc;
}

mz_status mz__http_start(mz_node *node, mz_err *err)
{
    mz_router *r = calloc(1, sizeof *r);

    if (r == NULL)
        return mz_err_set(err, MZ_ENOMEM, "http: allocating the route table");
    r->node = node;
    mz_node_set_http_handler(node, s_route_cb, r);
    return MZ_OK;
}

void mz__http_stop(mz_node *node)
{
    mz_router *r = s_router(node);

    if (r == NULL)
        return;
    mz_node_set_http_handler(node, NULL, NULL);
    free(r);
}

mz_status mz__http_handle(mz_node *node, const char *path, mz_http_fn fn, void *ctx,
                          mz_err *err)
{
    mz_router *r = s_router(node);
    int slot = -1;

    if (r == NULL)
        return mz_err_set(err, MZ_ESTATE, "http: the node has no route table");
    if (strlen(path) >= sizeof r->h[0].path)
        return mz_err_set(err, MZ_EINVAL, "http: path '%.80s' too long", path);
    for (int i = 0; i < S_MAX_HANDLERS; i++)
        if (r->h[i].fn && strcmp(r->h[i].path, path) == 0)
            slot = i;
    for (int i = 0; i < S_MAX_HANDLERS && slot < 0; i++)
        if (r->h[i].fn == NULL)
            slot = i;
    if (slot < 0)
        return mz_err_set(err, MZ_ELIMIT, "http: %d handlers already (the limit)",
                          S_MAX_HANDLERS);
    snprintf(r->h[slot].path, sizeof r->h[slot].path, "%s", path);
    r->h[slot].fn = fn;
    r->h[slot].ctx = ctx;
    return MZ_OK;
}

void mz__http_unhandle(mz_node *node, const char *path)
{
    mz_router *r = s_router(node);

    for (int i = 0; r && i < S_MAX_HANDLERS; i++)
        if (r->h[i].fn && strcmp(r->h[i].path, path) == 0)
            r->h[i].fn = NULL;
}

void *mz__http_handler_ctx(const mz_node *node, const char *path, mz_http_fn fn)
{
    mz_router *r = s_router(node);

    for (int i = 0; r && i < S_MAX_HANDLERS; i++)
        if (r->h[i].fn == fn && strcmp(r->h[i].path, path) == 0)
            return r->h[i].ctx;
    return NULL;
}

mz_status mz__http_page(mz_node *node, const char *path, mz_http_page_fn fn, mz_err *err)
{
    mz_router *r = s_router(node);

    if (r == NULL)
        return mz_err_set(err, MZ_ESTATE, "http: the node has no route table");
    if (strlen(path) >= sizeof r->pages[0].path)
        return mz_err_set(err, MZ_EINVAL, "http: path '%.80s' too long", path);
    for (int i = 0; i < S_N_ROUTES; i++)
        if (r->pages[i].page == NULL || strcmp(r->pages[i].path, path) == 0) {
            snprintf(r->pages[i].path, sizeof r->pages[i].path, "%s", path);
            r->pages[i].page = fn;
            return MZ_OK;
        }
    return mz_err_set(err, MZ_ELIMIT, "http: %d pages already (the limit)", S_N_ROUTES);
}
