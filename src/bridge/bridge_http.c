/* A small HTTP/1.1 client on libuv for the Streamable HTTP transport of MCP
 * (bridge import of http:// servers). One TCP connection per request
 * ("Connection: close"): POST with a JSON body, answered by a JSON body or
 * an SSE stream of messages; GET for the server's own SSE stream. Bodies
 * may be Content-Length, chunked or read to EOF. No TLS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/bridge_int.h"
#include "meshzero/connmgr.h"

typedef enum { MZ_HB_LENGTH, MZ_HB_CHUNKED, MZ_HB_EOF } mz_hbody;

typedef struct mz_hreq {
    mz_httpc *c;
    uint64_t id;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    char *out;                  /* the request bytes */
    size_t out_len;
    bool resolving, tcp_init, aborted, done;
    /* response */
    char *in;                   /* header bytes, then undecoded body bytes */
    size_t in_len, in_cap;
    bool head_done;
    int status;
    char ctype[128];
    char session[256];
    mz_hbody mode;
    size_t remaining;           /* LENGTH: body bytes still due; CHUNKED: of this chunk */
    int chunk_state;            /* 0 size line, 1 data, 2 CRLF after data, 3 trailers */
    bool sse;
    char *body;                 /* decoded body (JSON) or SSE line being read */
    size_t body_len, body_cap;
    char *data;                 /* SSE: the event's data lines */
    size_t data_len, data_cap;
    struct mz_hreq *prev, *next;
} mz_hreq;

struct mz_httpc {
    uv_loop_t *loop;
    mz_httpc_events ev;
    void *ctx;
    char host[128];
    char port[8];
    char path[512];
    uint64_t next_id;
    mz_hreq *reqs;
    bool freeing;               /* free once the last request's handle closed */
    /* Offline (mz__httpc_offline): requests go to this hook, answers come
     * from mz__httpc_inject, finished requests wait for s_reap_offline. */
    mz_httpc_tap_fn tap;
    void *tap_ctx;
    int injecting;              /* inside mz__httpc_inject: nothing is freed */
};

mz_status mz__httpc_new(uv_loop_t *loop, const char *url, const mz_httpc_events *ev, void *ctx,
                        mz_httpc **out, mz_err *err)
{
    mz_httpc *c;
    char wsurl[800];
    int port;

    *out = NULL;
    if (strncmp(url, "http://", 7) != 0 || strlen(url) > 700)
        return mz_err_set(err, MZ_EINVAL, "url '%.100s': must be http://HOST[:PORT]/PATH", url);
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return mz_err_set(err, MZ_ENOMEM, "http client: allocating");
    /* The WebSocket URL parser knows the same shape. */
    snprintf(wsurl, sizeof wsurl, "ws://%s", url + 7);
    if (mz_url_parse(wsurl, c->host, sizeof c->host, &port, c->path, sizeof c->path, err) !=
        MZ_OK) {
        free(c);
        return mz_err_set(err, MZ_EINVAL, "url '%.100s': must be http://HOST[:PORT]/PATH", url);
    }
    snprintf(c->port, sizeof c->port, "%d", port);
    c->loop = loop;
    c->ev = *ev;
    c->ctx = ctx;
    *out = c;
    return MZ_OK;
}

static void s_req_unlink_free(mz_hreq *r)
{
    mz_httpc *c = r->c;

    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    free(r->out);
    free(r->in);
    free(r->body);
    free(r->data);
    free(r);
    if (c->freeing && c->reqs == NULL)
        free(c);
}

static void s_tcp_closed(uv_handle_t *h)
{
    s_req_unlink_free(h->data);
}

/* Ends a request: reports it once (unless aborted), closes its socket. */
static void s_finish(mz_hreq *r, const char *why)
{
    if (r->done)
        return;
    r->done = true;
    if (!r->aborted && r->c->ev.on_done)
        r->c->ev.on_done(r->c->ctx, r->id, r->head_done ? r->status : 0, why);
    if (r->resolving)
        return;                 /* the resolver callback frees it */
    if (r->c->tap != NULL)
        return;                 /* s_reap_offline frees it: callers still hold r */
    if (r->tcp_init) {
        if (!uv_is_closing((uv_handle_t *)&r->tcp))
            uv_close((uv_handle_t *)&r->tcp, s_tcp_closed);
    } else {
        s_req_unlink_free(r);
    }
}

static bool s_grow(char **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 1024;
    char *nb;

    if (need <= *cap)
        return true;
    if (need > MZ_BRIDGE_MAX_MESSAGE + 1)
        return false;
    while (n < need)
        n *= 2;
    nb = realloc(*buf, n);
    if (nb == NULL)
        return false;
    *buf = nb;
    *cap = n;
    return true;
}

static void s_deliver(mz_hreq *r, const char *buf, size_t len)
{
    if (!r->aborted && r->c->ev.on_message && len > 0)
        r->c->ev.on_message(r->c->ctx, r->id, buf, len);
}

/* SSE (text/event-stream): "data:" lines make an event's data, a blank
 * line dispatches it; event, id, retry and comments are ignored. */
static bool s_sse_line(mz_hreq *r, const char *line, size_t n)
{
    if (n == 0) {
        if (r->data_len > 0) {
            s_deliver(r, r->data, r->data_len);
            r->data_len = 0;
        }
        return true;
    }
    if (n >= 5 && memcmp(line, "data:", 5) == 0) {
        const char *v = line + 5;
        size_t vl = n - 5;
        if (vl > 0 && v[0] == ' ') {
            v++;
            vl--;
        }
        if (!s_grow(&r->data, &r->data_cap, r->data_len + vl + 2))
            return false;
        if (r->data_len > 0)
            r->data[r->data_len++] = '\n';
        memcpy(r->data + r->data_len, v, vl);
        r->data_len += vl;
    }
    return true;
}

/* Decoded body bytes. */
static bool s_body(mz_hreq *r, const char *p, size_t n)
{
    if (!r->sse) {
        if (!s_grow(&r->body, &r->body_cap, r->body_len + n + 1))
            return false;
        memcpy(r->body + r->body_len, p, n);
        r->body_len += n;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            size_t l = r->body_len;
            if (l > 0 && r->body[l - 1] == '\r')
                l--;
            r->body_len = 0;
            if (!s_sse_line(r, r->body, l) || r->aborted)
                return !r->aborted ? false : true;
            continue;
        }
        if (!s_grow(&r->body, &r->body_cap, r->body_len + 2))
            return false;
        r->body[r->body_len++] = p[i];
    }
    return true;
}

/* The whole body arrived (or the connection ended it). */
static void s_body_end(mz_hreq *r)
{
    if (r->sse) {
        if (r->body_len > 0) {
            s_sse_line(r, r->body, r->body_len);
            r->body_len = 0;
        }
        s_sse_line(r, "", 0);
    } else if (r->status >= 200 && r->status < 300 && r->body_len > 0) {
        s_deliver(r, r->body, r->body_len);
    }
    s_finish(r, NULL);
}

static const char *s_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);

    out[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2, *e = strstr(l, "\r\n");
        if (e == NULL)
            break;
        if ((size_t)(e - l) > nl && strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(out, outlen, "%.*s", (int)(e - v), v);
            return out;
        }
    }
    return NULL;
}

static bool s_parse_head(mz_hreq *r, char *head)
{
    char v[64];

    if (sscanf(head, "HTTP/1.%*d %d", &r->status) != 1 || r->status < 100 || r->status > 999)
        return false;
    s_header(head, "Content-Type", r->ctype, sizeof r->ctype);
    s_header(head, "Mcp-Session-Id", r->session, sizeof r->session);
    r->sse = strncasecmp(r->ctype, "text/event-stream", 17) == 0;
    if (s_header(head, "Transfer-Encoding", v, sizeof v) && strcasestr(v, "chunked")) {
        r->mode = MZ_HB_CHUNKED;
    } else if (s_header(head, "Content-Length", v, sizeof v)) {
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (end == v || n > MZ_BRIDGE_MAX_MESSAGE)
            return false;
        r->mode = MZ_HB_LENGTH;
        r->remaining = (size_t)n;
    } else {
        r->mode = MZ_HB_EOF;
    }
    r->head_done = true;
    if (!r->aborted && r->c->ev.on_head)
        r->c->ev.on_head(r->c->ctx, r->id, r->status, r->ctype, r->session);
    return true;
}

/* Feeds body bytes according to the framing; false on a framing error. */
static bool s_feed(mz_hreq *r, const char *p, size_t n)
{
    while (n > 0 && !r->done) {
        if (r->mode == MZ_HB_EOF)
            return s_body(r, p, n);
        if (r->mode == MZ_HB_LENGTH) {
            size_t k = n < r->remaining ? n : r->remaining;
            if (!s_body(r, p, k))
                return false;
            r->remaining -= k;
            if (r->remaining == 0)
                s_body_end(r);
            return true;
        }
        /* chunked */
        if (r->chunk_state == 1) {
            size_t k = n < r->remaining ? n : r->remaining;
            if (!s_body(r, p, k))
                return false;
            r->remaining -= k;
            p += k;
            n -= k;
            if (r->remaining == 0)
                r->chunk_state = 2;
            continue;
        }
        /* Size lines, the CRLF after data and trailers are read a line at a
         * time into r->in (emptied after the head). */
        {
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p) + 1 : n;
            if (!s_grow(&r->in, &r->in_cap, r->in_len + k + 1) || r->in_len + k > 4096)
                return false;
            memcpy(r->in + r->in_len, p, k);
            r->in_len += k;
            p += k;
            n -= k;
            if (nl == NULL)
                return true;
            r->in[r->in_len] = '\0';
            r->in_len = 0;
            if (r->chunk_state == 2) {
                r->chunk_state = 0;
            } else if (r->chunk_state == 3) {
                if (r->in[0] == '\r' || r->in[0] == '\n')
                    s_body_end(r);
            } else {
                char *end;
                unsigned long long sz = strtoull(r->in, &end, 16);
                if (end == r->in || sz > MZ_BRIDGE_MAX_MESSAGE)
                    return false;
                if (sz == 0) {
                    r->chunk_state = 3;
                } else {
                    r->remaining = (size_t)sz;
                    r->chunk_state = 1;
                }
            }
        }
    }
    return true;
}

static void s_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(sugg);
    buf->len = buf->base ? sugg : 0;
}

/* The connection ended (nread < 0: UV_EOF or an error). */
static void s_on_end(mz_hreq *r, ssize_t nread)
{
    if (r->head_done && r->mode == MZ_HB_EOF)
        s_body_end(r);
    else
        s_finish(r, nread == UV_EOF ? "connection closed before the answer was complete"
                                    : uv_strerror((int)nread));
}

/* Response bytes as they arrive: the head, then the body. */
static void s_on_bytes(mz_hreq *r, const char *p, size_t n)
{
    if (r->done)
        return;
    if (!r->head_done) {
        char *end;
        if (!s_grow(&r->in, &r->in_cap, r->in_len + n + 1) || r->in_len + n > 65536) {
            s_finish(r, "response header too large");
            return;
        }
        memcpy(r->in + r->in_len, p, n);
        r->in_len += n;
        r->in[r->in_len] = '\0';
        end = strstr(r->in, "\r\n\r\n");
        if (end == NULL)
            return;
        {
            size_t head_len = (size_t)(end - r->in) + 4;
            size_t rest = r->in_len - head_len;
            char *body = malloc(rest + 1);
            end[2] = '\0';
            if (body == NULL || !s_parse_head(r, r->in)) {
                free(body);
                s_finish(r, "malformed response header");
                return;
            }
            memcpy(body, r->in + head_len, rest);
            r->in_len = 0;
            if (r->mode == MZ_HB_LENGTH && r->remaining == 0)
                s_body_end(r);
            else if (!s_feed(r, body, rest))
                s_finish(r, "malformed or oversized response body");
            free(body);
            return;
        }
    }
    if (!s_feed(r, p, n))
        s_finish(r, "malformed or oversized response body");
}

static void s_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mz_hreq *r = st->data;

    if (r->done) {
        free(buf->base);
        return;
    }
    if (nread < 0)
        s_on_end(r, nread);
    else
        s_on_bytes(r, buf->base, (size_t)nread);
    free(buf->base);
}

static void s_on_written(uv_write_t *w, int status)
{
    mz_hreq *r = w->data;

    if (status != 0 && !r->done)
        s_finish(r, uv_strerror(status));
}

static void s_on_connect(uv_connect_t *cr, int status)
{
    mz_hreq *r = cr->data;
    uv_buf_t b;

    if (r->done)
        return;
    if (status != 0) {
        char why[160];
        snprintf(why, sizeof why, "connect to %s:%s: %s", r->c->host, r->c->port,
                 uv_strerror(status));
        s_finish(r, why);
        return;
    }
    b = uv_buf_init(r->out, (unsigned)r->out_len);
    r->wr.data = r;
    if (uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, s_on_written) != 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, s_alloc, s_on_read) != 0)
        s_finish(r, "cannot write the request");
}

static void s_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    mz_hreq *r = g->data;

    r->resolving = false;
    if (r->done) {
        uv_freeaddrinfo(res);
        s_req_unlink_free(r);
        return;
    }
    if (status != 0 || res == NULL) {
        char why[160];
        uv_freeaddrinfo(res);
        snprintf(why, sizeof why, "cannot resolve %s: %s", r->c->host, uv_strerror(status));
        s_finish(r, why);
        return;
    }
    uv_tcp_init(r->c->loop, &r->tcp);
    r->tcp.data = r;
    r->tcp_init = true;
    r->conn.data = r;
    if (uv_tcp_connect(&r->conn, &r->tcp, res->ai_addr, s_on_connect) != 0)
        s_finish(r, "cannot connect");
    uv_freeaddrinfo(res);
}

uint64_t mz__httpc_request(mz_httpc *c, const char *body, size_t len, const char *headers)
{
    mz_hreq *r;
    struct addrinfo hints;
    size_t cap;
    int n;

    if (c->freeing)
        return 0;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return 0;
    cap = len + strlen(headers ? headers : "") + strlen(c->path) + strlen(c->host) + 300;
    r->out = malloc(cap);
    if (r->out == NULL) {
        free(r);
        return 0;
    }
    n = snprintf(r->out, cap,
                 "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nUser-Agent: meshzero\r\n"
                 "Accept: %s\r\n%s",
                 body ? "POST" : "GET", c->path, c->host, c->port,
                 body ? "application/json, text/event-stream" : "text/event-stream",
                 headers ? headers : "");
    if (body)
        n += snprintf(r->out + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", len);
    n += snprintf(r->out + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(r->out + n, body, len);
        n += (int)len;
    }
    r->out_len = (size_t)n;
    r->c = c;
    r->id = ++c->next_id;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    if (c->tap != NULL) {
        c->tap(c->tap_ctx, r->id, body, len);
        return r->id;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    r->gai.data = r;
    r->resolving = true;
    if (uv_getaddrinfo(c->loop, &r->gai, s_on_resolved, c->host, c->port, &hints) != 0) {
        r->resolving = false;
        r->done = true;
        s_req_unlink_free(r);
        return 0;
    }
    return r->id;
}

void mz__httpc_abort(mz_httpc *c, uint64_t req)
{
    for (mz_hreq *r = c->reqs, *n; r; r = n) {
        n = r->next;
        if ((req == 0 || r->id == req) && !r->done) {
            r->aborted = true;
            if (r->resolving)
                uv_cancel((uv_req_t *)&r->gai);
            s_finish(r, "aborted");
        }
    }
}

size_t mz__httpc_active(const mz_httpc *c)
{
    size_t n = 0;

    for (const mz_hreq *r = c->reqs; r; r = r->next)
        n += !r->done;
    return n;
}

/* Offline: frees the finished requests (never while an injection is on
 * the stack). Returns true when c itself was freed. */
static bool s_reap_offline(mz_httpc *c)
{
    if (c->tap == NULL || c->injecting > 0)
        return false;
    for (mz_hreq *r = c->reqs, *n; r; r = n) {
        n = r->next;
        if (r->done) {
            bool last = c->freeing && c->reqs == r && r->next == NULL;
            s_req_unlink_free(r);
            if (last)
                return true;
        }
    }
    return false;
}

void mz__httpc_free(mz_httpc *c)
{
    if (c == NULL)
        return;
    mz__httpc_abort(c, 0);
    c->freeing = true;
    if (s_reap_offline(c))
        return;
    if (c->reqs == NULL)
        free(c);
}

void mz__httpc_offline(mz_httpc *c, mz_httpc_tap_fn fn, void *ctx)
{
    c->tap = fn;
    c->tap_ctx = ctx;
}

void mz__httpc_inject(mz_httpc *c, uint64_t req, const char *buf, size_t len, bool eof)
{
    mz_hreq *r = c->reqs;

    while (r != NULL && r->id != req)
        r = r->next;
    if (r == NULL || r->done)
        return;
    c->injecting++;
    if (len > 0)
        s_on_bytes(r, buf, len);
    if (eof && !r->done)
        s_on_end(r, UV_EOF);
    c->injecting--;
    s_reap_offline(c);
}
