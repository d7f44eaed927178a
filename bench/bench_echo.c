/* The floor for a WebSocket design: a plain libwebsockets echo on
 * the same libuv foreign loop set-up meshzero uses (docs: LWS-NOTES), the
 * same 200-byte payload and the same measurement as bench_exec.
 *
 *   bench_echo server            echoes every message back; prints its URL
 *   bench_echo client URL [--json] [--calls N] [--inflight K] [--seconds S]
 *                                one message in flight (p50/p99), then K in
 *                                flight for S seconds (round trips/s)
 *
 * No parsing, no signatures, no sealing: only the WebSocket framing and the
 * kernel round trip that any WebSocket mesh pays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

#include <uv.h>
#include <libwebsockets.h>

#include "benchlib.h"

#define MSG_MAX 1024
#define RING 256                /* > any in-flight count used here */

static const char s_payload[] = BENCH_PAYLOAD;

/* Per-connection queue of messages waiting to be written (LWS_PRE headroom
 * before each; writes only from the WRITEABLE callback). */
typedef struct msg {
    unsigned char buf[LWS_PRE + MSG_MAX];
    size_t len;
} msg;

typedef struct conn {
    msg ring[RING];
    unsigned head, tail;        /* tail: next to write; head: next free */
    msg rx;                     /* message being received (fragments) */
} conn;

static int s_queue(conn *c, const void *p, size_t n)
{
    msg *m;

    if (c->head - c->tail >= RING || n > MSG_MAX)
        return -1;
    m = &c->ring[c->head % RING];
    memcpy(m->buf + LWS_PRE, p, n);
    m->len = n;
    c->head++;
    return 0;
}

/* Writes queued messages while the pipe takes them; -1 on a write error. */
static int s_flush(struct lws *wsi, conn *c)
{
    while (c->tail != c->head) {
        msg *m = &c->ring[c->tail % RING];
        if ((size_t)lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < m->len)
            return -1;
        c->tail++;
        if (lws_send_pipe_choked(wsi))
            break;
    }
    if (c->tail != c->head)
        lws_callback_on_writable(wsi);
    return 0;
}

/* Appends a received fragment; 1 when the message is complete. */
static int s_rx(struct lws *wsi, conn *c, const void *in, size_t len)
{
    if (c->rx.len + len > MSG_MAX)
        return -1;
    memcpy(c->rx.buf + LWS_PRE + c->rx.len, in, len);
    c->rx.len += len;
    return lws_is_final_fragment(wsi) ? 1 : 0;
}

/* ---- common loop and shutdown (LWS-NOTES trap 3) ------------------------ */

static uv_loop_t s_loop;
static struct lws_context *s_ctx;
static uv_timer_t s_stop_timer;
static uv_signal_t s_sig;

static void s_stop_cb(uv_timer_t *t)
{
    (void)t;
    /* From a uv callback, not from inside lws: closes lws's handles. */
    lws_context_destroy(s_ctx);
    uv_close((uv_handle_t *)&s_stop_timer, NULL);
}

static void s_stop_soon(void)
{
    uv_timer_start(&s_stop_timer, s_stop_cb, 0, 0);
}

static void s_on_sig(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    s_stop_soon();
}

static struct lws_vhost *s_setup(const struct lws_protocols *prot, int port)
{
    struct lws_context_creation_info info;
    void *loops[1] = { &s_loop };
    struct lws_vhost *vh;

    uv_loop_init(&s_loop);
    uv_timer_init(&s_loop, &s_stop_timer);
    uv_signal_init(&s_loop, &s_sig);
    uv_signal_start(&s_sig, s_on_sig, SIGTERM);
    uv_unref((uv_handle_t *)&s_sig);
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.fd_limit_per_thread = 256;
    s_ctx = lws_create_context(&info);
    if (s_ctx == NULL) {
        fprintf(stderr, "bench_echo: cannot create the lws context (libwebsockets-evlib-uv?)\n");
        return NULL;
    }
    info.port = port;
    info.iface = port == CONTEXT_PORT_NO_LISTEN ? NULL : "127.0.0.1";
    info.protocols = prot;
    info.vhost_name = port == CONTEXT_PORT_NO_LISTEN ? "client" : "server";
    vh = lws_create_vhost(s_ctx, &info);
    if (vh == NULL)
        fprintf(stderr, "bench_echo: cannot create the vhost (listen failed?)\n");
    return vh;
}

static void s_teardown(void)
{
    uv_run(&s_loop, UV_RUN_DEFAULT);
    lws_context_destroy(s_ctx);
    uv_close((uv_handle_t *)&s_sig, NULL);
    uv_run(&s_loop, UV_RUN_DEFAULT);
    uv_loop_close(&s_loop);
}

/* ---- server ------------------------------------------------------------- */

static int s_server_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(c, 0, sizeof *c);
        break;
    case LWS_CALLBACK_RECEIVE: {
        int r = s_rx(wsi, c, in, len);
        if (r < 0)
            return -1;
        if (r == 1) {
            if (s_queue(c, c->rx.buf + LWS_PRE, c->rx.len) != 0)
                return -1;
            c->rx.len = 0;
            lws_callback_on_writable(wsi);
        }
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return s_flush(wsi, c);
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols s_server_prot[] = {
    { "echo", s_server_cb, sizeof(conn), MSG_MAX, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static int s_server(void)
{
    struct lws_vhost *vh = s_setup(s_server_prot, 0);

    if (vh == NULL)
        return 1;
    printf("ws://127.0.0.1:%d\n", lws_get_vhost_listen_port(vh));
    fflush(stdout);
    s_teardown();
    return 0;
}

/* ---- client ------------------------------------------------------------- */

typedef struct drive {
    int phase;                  /* 0 connecting, 1 latency, 2 throughput, 3 done */
    long calls, done, errors, inflight_max, inflight, tp_done;
    double *lat, t0, t_end, seconds, started_us;
    struct lws *wsi;
    conn c;
} drive;

static drive s_d;

static void s_send(drive *d)
{
    d->started_us = bench_now_us();
    d->inflight++;
    if (s_queue(&d->c, s_payload, sizeof s_payload - 1) != 0) {
        d->inflight--;
        d->errors++;
        return;
    }
    lws_callback_on_writable(d->wsi);
}

static void s_on_reply(drive *d)
{
    d->inflight--;
    if (d->phase == 1) {
        d->lat[d->done++] = bench_now_us() - d->started_us;
        if (d->done < d->calls) {
            s_send(d);
        } else {
            d->phase = 2;
            d->t0 = bench_now_us();
            for (long i = 0; i < d->inflight_max; i++)
                s_send(d);
        }
    } else if (d->phase == 2) {
        d->tp_done++;
        if (bench_now_us() - d->t0 < d->seconds * 1e6) {
            s_send(d);
        } else if (d->inflight == 0) {
            d->t_end = bench_now_us();
            d->phase = 3;
            s_stop_soon();
        }
    }
}

static int s_client_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    drive *d = &s_d;

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        d->phase = 1;
        s_send(d);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        int r = s_rx(wsi, &d->c, in, len);
        if (r < 0)
            return -1;
        if (r == 1) {
            if (d->c.rx.len != sizeof s_payload - 1 ||
                memcmp(d->c.rx.buf + LWS_PRE, s_payload, d->c.rx.len) != 0)
                d->errors++;
            d->c.rx.len = 0;
            s_on_reply(d);
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return s_flush(wsi, &d->c);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "bench_echo: connection error: %s\n", in ? (const char *)in : "?");
        d->wsi = NULL;
        d->errors++;
        s_stop_soon();
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        d->wsi = NULL;
        if (d->phase != 3) {
            fprintf(stderr, "bench_echo: connection closed early\n");
            d->errors++;
            s_stop_soon();
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols s_client_prot[] = {
    { "echo", s_client_cb, 0, MSG_MAX, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static int s_client(int argc, char **argv)
{
    drive *d = &s_d;
    struct lws_client_connect_info ci;
    struct lws_vhost *vh;
    char host[64], hosthdr[96];
    int port = 0;
    int json = 0;

    d->calls = 2000;
    d->inflight_max = 64;
    d->seconds = 2.0;
    if (sscanf(argv[0], "ws://%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "bench_echo: bad URL %s\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) d->calls = atol(argv[++i]);
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
            d->inflight_max = atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) d->seconds = atof(argv[++i]);
    }
    if (d->calls < 1 || d->inflight_max < 1 || d->inflight_max >= RING) {
        fprintf(stderr, "bench_echo: --calls >= 1, 1 <= --inflight < %d\n", RING);
        return 2;
    }
    d->lat = calloc((size_t)d->calls, sizeof *d->lat);
    if ((vh = s_setup(s_client_prot, CONTEXT_PORT_NO_LISTEN)) == NULL)
        return 1;
    snprintf(hosthdr, sizeof hosthdr, "%s:%d", host, port);
    memset(&ci, 0, sizeof ci);
    ci.context = s_ctx;
    ci.vhost = vh;
    ci.address = host;
    ci.port = port;
    ci.path = "/";
    ci.host = hosthdr;
    ci.origin = hosthdr;
    ci.protocol = "echo";
    ci.local_protocol_name = "echo";
    ci.pwsi = &d->wsi;
    if (lws_client_connect_via_info(&ci) == NULL) {
        fprintf(stderr, "bench_echo: cannot start the connection\n");
        d->errors++;
        s_stop_soon();
    }
    s_teardown();
    if (d->done < d->calls) {
        fprintf(stderr, "bench_echo: only %ld of %ld round trips completed\n", d->done, d->calls);
        free(d->lat);
        return 1;
    }
    qsort(d->lat, (size_t)d->calls, sizeof *d->lat, bench_cmp_double);
    {
        double p50 = d->lat[d->calls / 2], p99 = d->lat[(d->calls * 99) / 100];
        double tput = (double)d->tp_done / ((d->t_end - d->t0) / 1e6);
        if (json)
            printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"calls_per_s\":%.0f,\"errors\":%ld}\n", p50,
                   p99, tput, d->errors);
        else
            printf("p50 %.1f us  p99 %.1f us  %ld in flight: %.0f round trips/s  errors %ld\n",
                   p50, p99, d->inflight_max, tput, d->errors);
    }
    free(d->lat);
    return d->errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "server") == 0)
        return s_server();
    if (argc >= 3 && strcmp(argv[1], "client") == 0)
        return s_client(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_echo server | bench_echo client URL [--json] [--calls N] "
                    "[--inflight K] [--seconds S]\n");
    return 2;
}
