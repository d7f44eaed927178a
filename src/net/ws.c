/* The WebSocket transport of ConnectionManager (net/transport.h), the
 * default one: libwebsockets on a foreign libuv loop.
 * See ../shared notes in docs/ARCHITECTURE.md: writes happen only from
 * WRITEABLE callbacks, listeners are explicit vhosts (so a failed bind is
 * reported), and shutdown is lws's two-step destroy. TLS (wss://) follows
 * docs/TLS.md: the peer vhost serves the listener's certificate and carries
 * every outgoing link with our own client SSL_CTX; certificate checks of
 * outgoing links happen in s_on_verify. OpenSSL is set up only when TLS is
 * used: at start for a wss:// listener, else at the first wss:// dial
 * (s_tls_client_on); a ws:// node never initialises it (docs/PERFORMANCE.md,
 * "Memory"). */
#include <uv.h>
#include <libwebsockets.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "meshzero/connmgr.h"
#include "net/transport.h"
#include "meshzero/msg.h"
#include "util/log.h"
#include "util/hostcheck.h"
#include "net/tls.h"

const size_t MZ_LINK_PRE = LWS_PRE;

typedef struct mz_qitem {
    struct mz_qitem *next;
    size_t len;                 /* message bytes after the LWS_PRE headroom */
    char *buf;                  /* owned; message at buf + LWS_PRE */
    bool binary;                /* a wire v2 frame, not a JSON text */
} mz_qitem;

typedef struct ws_mgr ws_mgr;
typedef struct ws_link ws_link;

struct ws_link {
    mz_link b;                  /* base (net/transport.h); first */
    struct lws *wsi;            /* NULL until connected / after close */
    bool closing;               /* close requested; frame goes out on WRITEABLE */
    bool dead;                  /* on_close reported; awaiting free */
    bool in_dial;               /* inside lws_client_connect_via_info: defer free */
    bool close_sent;            /* close reason handed to lws */
    bool free_pending;          /* finished while in_dial */
    bool pin_ok;                /* the server certificate's key matched pin */
    uint16_t close_code;
    char close_reason[124];     /* ws close payload is at most 123 bytes */
    char host[128];             /* host of the dialed URL (certificate name check) */
    char tls_error[224];        /* why the server certificate was refused; "" none */
    mz_qitem *qhead, *qtail;    /* send queue */
    mz_qitem *ulast;            /* last urgent item: urgent ones lead the queue */
    size_t qbytes, qcount;
    char *rx;                   /* message being reassembled from fragments */
    bool rx_binary;             /* the message being reassembled is binary */
    size_t rx_len, rx_cap;
    uv_getaddrinfo_t *gai;      /* pending name resolution (dial) */
    struct ws_link *prev, *next;/* all links of the manager */
};

struct ws_mgr {
    mz_connmgr b;               /* base (net/transport.h); first */
    struct lws_context *ctx;    /* owned */
    struct lws_vhost *peer_vh;  /* peer listener; also carries outgoing links */
    struct lws_vhost *api_vh;   /* API listener, NULL when disabled */
    lws_retry_bo_t retry;       /* keepalive policy, referenced by lws */
    SSL_CTX *client_ssl;        /* outgoing wss:// links; lws borrows it; NULL
                                   until TLS is first needed */
    uint64_t ctx_options;       /* the context's lws options */
    bool ca_loaded;             /* client_ssl trusts tls_ca / the system store */
    char tls_ca[1024];          /* --tls-ca file; "" the system store */
    char tls_cert[1024];        /* wss:// listener certificate file; "" ws:// */
    char tls_key[1024];         /* its key file */
    ws_link *links;             /* list head */
};

static ws_mgr *s_cm(const ws_link *l)
{
    return (ws_mgr *)l->b.cm;
}

static int s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                      void *in, size_t len);

static const struct lws_protocols s_peer_protocols[] = {
    { "meshzero", s_callback, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
static const struct lws_protocols s_api_protocols[] = {
    { "meshzero-api", s_callback, MZ_HTTP_PSS_SIZE, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
/* A client-only manager (the CLI) dials both kinds from one vhost. */
static const struct lws_protocols s_client_protocols[] = {
    { "meshzero", s_callback, 0, 65536, 0, NULL, 0 },
    { "meshzero-api", s_callback, MZ_HTTP_PSS_SIZE, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void s_lws_log(int level, const char *line)
{
    size_t n = strlen(line);

    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    mz_log_raw(level & LLL_ERR ? MZ_LOG_WARN : MZ_LOG_DEBUG, "lws", "%.*s", (int)n, line);
}

/* lws does not report a failed bind on a foreign loop reliably, and undoing a
 * half-made context can crash: so try the address with a plain socket first. */
static mz_status s_probe_bind(const char *url, const char *host, int port, mz_err *err)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int fd, one = 1, r;

    if (port == 0)
        return MZ_OK;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    snprintf(portstr, sizeof portstr, "%d", port);
    r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0 || res == NULL)
        return mz_err_set(err, MZ_EIO, "cannot listen on %s: %s", url, gai_strerror(r));
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return mz_err_set(err, MZ_EIO, "cannot listen on %s: %s", url, strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    r = bind(fd, res->ai_addr, res->ai_addrlen);
    if (r == 0)
        r = listen(fd, 1);
    r = r == 0 ? 0 : errno;
    close(fd);
    freeaddrinfo(res);
    if (r != 0)
        return mz_err_set(err, MZ_EIO, "cannot listen on %s: %s", url, strerror(r));
    return MZ_OK;
}

/* The TLS part of a vhost's creation info. lws makes a vhost TLS-capable
 * only when its options carry DO_SSL_GLOBAL_INIT, so the API vhost goes
 * without (no SSL_CTX for it); the client SSL_CTX is ours (mz_tls_client_ctx),
 * lws only borrows it. */
static void s_vhost_tls(ws_mgr *cm, struct lws_context_creation_info *info,
                        bool tls_client, bool tls_server)
{
    tls_client = tls_client && cm->client_ssl != NULL;
    if (tls_client || tls_server)
        info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    else
        info->options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->provided_client_ssl_ctx = tls_client ? cm->client_ssl : NULL;
    info->ssl_cert_filepath = tls_server ? cm->tls_cert : NULL;
    info->ssl_private_key_filepath = tls_server ? cm->tls_key : NULL;
}

/* Creates a listening vhost for url. The peer vhost (tls_client) also
 * carries outgoing links, so it gets our client SSL_CTX; a wss:// URL gets
 * the listener certificate. */
/* A unix socket path for the API: refuse one a live node listens on, and
 * remove a stale one left by a node that died. */
static mz_status s_probe_unix(const char *path, mz_err *err)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    if (strlen(path) == 0 || strlen(path) >= sizeof sa.sun_path)
        return mz_err_set(err, MZ_EINVAL, "api socket path '%s': empty or too long", path);
    if (stat(path, &st) != 0)
        return MZ_OK;
    if (!S_ISSOCK(st.st_mode))
        return mz_err_set(err, MZ_EIO, "api socket %s: exists and is not a socket", path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        close(fd);
        return mz_err_set(err, MZ_EIO, "api socket %s: another node listens there", path);
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0)
        return mz_err_set(err, MZ_EIO, "api socket %s: removing the stale socket: %s", path,
                          strerror(errno));
    return MZ_OK;
}

static mz_status s_make_vhost(ws_mgr *cm, struct lws_context_creation_info *info,
                              const char *url, const struct lws_protocols *prot,
                              const char *name, bool tls_client, struct lws_vhost **vh,
                              char *bound, mz_err *err)
{
    mz_url u;
    mz_status rc;

    if ((rc = mz_url_parse2(url, &u, err)) != MZ_OK)
        return rc;
    s_vhost_tls(cm, info, tls_client, u.tls);
    info->port = u.port;
    info->iface = u.host;
    info->protocols = prot;
    info->vhost_name = name;
    *vh = lws_create_vhost(cm->ctx, info);
    if (*vh == NULL)
        return mz_err_set(err, MZ_EIO, "cannot listen on %s (address in use or not local?%s)",
                          url, u.tls ? " or a certificate lws cannot load" : "");
    snprintf(bound, 256, strchr(u.host, ':') ? "%s://[%s]:%d" : "%s://%s:%d",
             u.tls ? "wss" : "ws", u.host, lws_get_vhost_listen_port(*vh));
    return MZ_OK;
}

/* Checks the TLS options and, for a wss:// listener, prepares its
 * certificate (given, or self-signed from the identity) and the client
 * SSL_CTX. Without one, OpenSSL stays untouched until a wss:// dial. */
static mz_status s_tls_setup(ws_mgr *cm, const mz_connmgr_opts *opts, mz_err *err)
{
    mz_url u;
    mz_status rc;

    if (opts->api_url != NULL && strncmp(opts->api_url, "wss://", 6) == 0)
        return mz_err_set(err, MZ_EINVAL, "api url '%s': the local API is ws:// only",
                          opts->api_url);
    if (opts->tls_ca != NULL && (rc = mz_tls_check_ca(opts->tls_ca, err)) != MZ_OK)
        return rc;
    if (opts->listen_url != NULL && mz_url_parse2(opts->listen_url, &u, NULL) == MZ_OK &&
        u.tls) {
        if (opts->tls_cert != NULL || opts->tls_key != NULL) {
            if ((rc = mz_tls_check_pair(opts->tls_cert, opts->tls_key, err)) != MZ_OK)
                return rc;
            if ((size_t)snprintf(cm->tls_cert, sizeof cm->tls_cert, "%s", opts->tls_cert) >=
                    sizeof cm->tls_cert ||
                (size_t)snprintf(cm->tls_key, sizeof cm->tls_key, "%s", opts->tls_key) >=
                    sizeof cm->tls_key)
                return mz_err_set(err, MZ_EINVAL, "tls: certificate or key path too long");
        } else if (opts->tls_dir != NULL) {
            if ((rc = mz_tls_self_signed(opts->tls_dir, cm->tls_cert, sizeof cm->tls_cert,
                                         cm->tls_key, sizeof cm->tls_key, err)) != MZ_OK)
                return rc;
        } else {
            return mz_err_set(err, MZ_EINVAL, "listen url '%s': a wss:// listener needs a "
                              "certificate and key, or a data directory for a self-signed "
                              "one", opts->listen_url);
        }
        if ((cm->client_ssl = mz_tls_client_ctx(err)) == NULL)
            return err ? err->code : MZ_EIO;
    } else if (opts->tls_cert != NULL || opts->tls_key != NULL) {
        mz_log_raw(MZ_LOG_WARN, "connmgr", "a TLS certificate was given but the listener "
                   "is not wss://: it is not used");
    }
    if (opts->tls_ca != NULL &&
        (size_t)snprintf(cm->tls_ca, sizeof cm->tls_ca, "%s", opts->tls_ca) >= sizeof cm->tls_ca)
        return mz_err_set(err, MZ_EINVAL, "tls: CA file path too long");
    return MZ_OK;
}

/* Makes the vhost that carries outgoing links TLS-capable, once. lws's
 * global TLS init is a context option (it costs ~1.7 MiB of resident
 * libcrypto even when unused), so a context made without it gets TLS here:
 * mz_tls_client_ctx initialises OpenSSL and lws_init_vhost_client_ssl hands
 * the SSL_CTX to the vhost (lws-client.h). Without the global init lws
 * keeps its link pointer in the SSL's ex-data slot 0 (the app-data slot,
 * unused here), which is all s_on_verify needs. */
static mz_status s_tls_client_on(ws_mgr *cm, mz_err *err)
{
    struct lws_context_creation_info info;

    if (cm->client_ssl != NULL)
        return MZ_OK;
    if ((cm->client_ssl = mz_tls_client_ctx(err)) == NULL)
        return err ? err->code : MZ_EIO;
    memset(&info, 0, sizeof info);
    info.options = cm->ctx_options | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.provided_client_ssl_ctx = cm->client_ssl;
    if (lws_init_vhost_client_ssl(&info, cm->peer_vh) != 0) {
        SSL_CTX_free(cm->client_ssl);
        cm->client_ssl = NULL;
        return mz_err_set(err, MZ_EIO, "tls: enabling wss:// on the outgoing vhost failed");
    }
    return MZ_OK;
}

/* Refuses unusable addresses before lws exists (see s_probe_bind). */
static mz_status s_probe_urls(const mz_connmgr_opts *opts, mz_err *err)
{
    const char *urls[2] = { opts->listen_url, opts->api_url };
    mz_status rc;

    for (int i = 0; i < 2; i++) {
        char host[128], path[64];
        int port;
        if (urls[i] == NULL)
            continue;
        if (i == 1 && strncmp(urls[i], "unix:", 5) == 0) {
            if ((rc = s_probe_unix(urls[i] + 5, err)) != MZ_OK)
                return rc;
            continue;
        }
        if ((rc = mz_url_parse(urls[i], host, sizeof host, &port, path, sizeof path,
                               err)) != MZ_OK ||
            (rc = s_probe_bind(urls[i], host, port, err)) != MZ_OK)
            return rc;
    }
    return MZ_OK;
}

/* The lws context on the caller's loop (loops[0]); it listens nowhere
 * itself: the listeners are explicit vhosts. info is kept for them. */
static mz_status s_make_context(ws_mgr *cm, struct lws_context_creation_info *info,
                                void **loops, mz_err *err)
{
    struct rlimit rl;

    lws_set_log_level(LLL_ERR | LLL_WARN, s_lws_log);
    memset(info, 0, sizeof *info);
    loops[0] = cm->b.loop;
    info->options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                    LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (cm->client_ssl != NULL)         /* a wss:// listener: TLS from the start */
        info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    cm->ctx_options = info->options;
    info->foreign_loops = loops;
    info->port = CONTEXT_PORT_NO_LISTEN;
    /* Room for connections that have not said hello yet (they are refused or
     * time out, but must not lock the honest ones out meanwhile). */
    info->fd_limit_per_thread = (unsigned)(cm->b.o.max_peers + cm->b.o.max_api_clients + 64);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > info->fd_limit_per_thread + 32)
        info->fd_limit_per_thread = (unsigned)(rl.rlim_cur - 32 > 65536 ? 65536
                                                                     : rl.rlim_cur - 32);
    info->timeout_secs = 5;     /* an HTTP upgrade must arrive within 5 s */
    info->retry_and_idle_policy = &cm->retry;
    info->user = cm;
    cm->ctx = lws_create_context(info);
    if (cm->ctx == NULL)
        return mz_err_set(err, MZ_EIO, "cannot create the websocket context (is the "
                          "libwebsockets-evlib-uv package installed?)");
    return MZ_OK;
}

/* The peer listener, or for a client-only manager (no listen URL) the
 * vhost its links are dialed from. */
static mz_status s_peer_vhost(ws_mgr *cm, struct lws_context_creation_info *info,
                              const char *listen_url, mz_err *err)
{
    if (listen_url != NULL)
        return s_make_vhost(cm, info, listen_url, s_peer_protocols, "peer", true,
                            &cm->peer_vh, cm->b.listen_url, err);
    s_vhost_tls(cm, info, true, false);
    info->port = CONTEXT_PORT_NO_LISTEN;
    info->protocols = s_client_protocols;
    info->vhost_name = "client";
    cm->peer_vh = lws_create_vhost(cm->ctx, info);
    return cm->peer_vh ? MZ_OK : mz_err_set(err, MZ_EIO, "cannot create the client vhost");
}

/* An API listener on a unix socket: only local users the file mode allows
 * can connect. */
static mz_status s_api_unix_vhost(ws_mgr *cm, struct lws_context_creation_info *info,
                                  const char *api_url, mz_err *err)
{
    uint64_t saved = info->options;
    mz_status rc = MZ_OK;

    info->options |= LWS_SERVER_OPTION_UNIX_SOCK;
    info->iface = api_url + 5;
    info->port = 0;
    info->protocols = s_api_protocols;
    info->vhost_name = "api";
    s_vhost_tls(cm, info, false, false);
    cm->api_vh = lws_create_vhost(cm->ctx, info);
    info->options = saved;
    if (cm->api_vh == NULL)
        rc = mz_err_set(err, MZ_EIO, "cannot listen on %s", api_url);
    else if (chmod(api_url + 5, 0600) != 0)
        rc = mz_err_set(err, MZ_EIO, "api socket %s: chmod: %s", api_url + 5, strerror(errno));
    snprintf(cm->b.api_url, sizeof cm->b.api_url, "%s", api_url);
    return rc;
}

/* Frees a manager that never ran. Once the context exists, both destroy
 * steps at once, letting lws's handles close in between. */
static void s_abort_new(ws_mgr *cm)
{
    if (cm->ctx != NULL) {
        lws_context_destroy(cm->ctx);
        uv_run(cm->b.loop, UV_RUN_NOWAIT);
        lws_context_destroy(cm->ctx);
        uv_run(cm->b.loop, UV_RUN_NOWAIT);
    }
    SSL_CTX_free(cm->client_ssl);
    free(cm);
}

static mz_status s_ws_new(const mz_transport *t, const mz_connmgr_opts *opts, mz_connmgr **out,
                          mz_err *err)
{
    struct lws_context_creation_info info;
    void *loops[1];
    ws_mgr *cm;
    mz_status rc;

    *out = NULL;
    cm = calloc(1, sizeof *cm);
    if (cm == NULL)
        return mz_err_set(err, MZ_ENOMEM, "connmgr: allocating");
    mz__connmgr_init(&cm->b, t, opts);
    cm->retry.secs_since_valid_ping = (uint16_t)cm->b.o.ping_secs;
    cm->retry.secs_since_valid_hangup = (uint16_t)cm->b.o.hangup_secs;
    if ((rc = s_probe_urls(opts, err)) != MZ_OK ||
        (rc = s_tls_setup(cm, opts, err)) != MZ_OK ||
        (rc = s_make_context(cm, &info, loops, err)) != MZ_OK ||
        (rc = s_peer_vhost(cm, &info, opts->listen_url, err)) != MZ_OK)
        goto fail;
    if (opts->api_url != NULL && strncmp(opts->api_url, "unix:", 5) == 0)
        rc = s_api_unix_vhost(cm, &info, opts->api_url, err);
    else if (opts->api_url != NULL)
        rc = s_make_vhost(cm, &info, opts->api_url, s_api_protocols, "api", false,
                          &cm->api_vh, cm->b.api_url, err);
    if (rc != MZ_OK)
        goto fail;
    *out = &cm->b;
    return MZ_OK;
fail:
    s_abort_new(cm);
    return rc;
}

static void s_link_unlink(ws_link *l)
{
    ws_mgr *cm = s_cm(l);

    if (l->prev) l->prev->next = l->next;
    else cm->links = l->next;
    if (l->next) l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static void s_link_free(ws_link *l)
{
    mz_qitem *q = l->qhead;

    while (q) {
        mz_qitem *n = q->next;
        free(q->buf);
        free(q);
        q = n;
    }
    free(l->rx);
    free(l);
}

/* Reports the close once, then frees the link. */
static void s_link_finish(ws_link *l, const char *reason)
{
    ws_mgr *cm = s_cm(l);

    if (l->dead)
        return;
    l->dead = true;
    if (l->wsi)
        lws_set_opaque_user_data(l->wsi, NULL);
    l->wsi = NULL;
    if (l->b.open) {
        if (l->b.kind == MZ_LINK_PEER) cm->b.n_peer--;
        else cm->b.n_api--;
    }
    if (l->b.kind == MZ_LINK_PEER && l->b.outbound)
        cm->b.n_out--;
    s_link_unlink(l);
    if (l->tls_error[0]) {
        cm->b.stats.tls_refusals++;
        reason = l->tls_error;     /* the real cause, not lws's handshake summary */
    } else if (l->close_reason[0]) {
        reason = l->close_reason;
    }
    if (cm->b.o.cb.on_close)
        cm->b.o.cb.on_close(&l->b, reason, cm->b.o.ctx);
    if (l->in_dial)
        l->free_pending = true;    /* lws reported the failure from inside the dial call */
    else
        s_link_free(l);
}

static ws_link *s_link_new(ws_mgr *cm, mz_link_kind kind, bool outbound)
{
    ws_link *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    mz__link_init(&l->b, &cm->b, kind, outbound);
    l->next = cm->links;
    if (cm->links)
        cm->links->prev = l;
    cm->links = l;
    return l;
}

static void s_set_addr(ws_link *l)
{
    char ip[48] = "?";
    int fd = lws_get_socket_fd(l->wsi);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            uv_ip4_name(s4, ip, sizeof ip);
            snprintf(l->b.addr, sizeof l->b.addr, "%s:%d", ip, ntohs(s4->sin_port));
            return;
        }
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(s6, ip, sizeof ip);
            if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.'))   /* v4-mapped */
                snprintf(l->b.addr, sizeof l->b.addr, "%s:%d", ip + 7, ntohs(s6->sin6_port));
            else
                snprintf(l->b.addr, sizeof l->b.addr, "[%s]:%d", ip, ntohs(s6->sin6_port));
            return;
        }
    }
    snprintf(l->b.addr, sizeof l->b.addr, "?");
}

static int s_on_established(struct lws *wsi, ws_link *l, bool outbound)
{
    ws_mgr *cm = lws_context_user(lws_get_context(wsi));
    const struct lws_protocols *p = lws_get_protocol(wsi);
    mz_link_kind kind = (p && strcmp(p->name, "meshzero-api") == 0) ? MZ_LINK_API
                                                                      : MZ_LINK_PEER;

    if (cm->b.closing)
        return -1;
    if (!outbound) {
        size_t n = kind == MZ_LINK_PEER ? cm->b.n_peer : cm->b.n_api;
        size_t max = kind == MZ_LINK_PEER ? cm->b.o.max_peers : cm->b.o.max_api_clients;
        if (n >= max) {
            static const char why[] = "too many links";
            cm->b.stats.links_refused_full++;
            mz_log_raw(MZ_LOG_WARN, "connmgr", "refusing inbound %s link: %zu of %zu in use",
                       kind == MZ_LINK_PEER ? "peer" : "api", n, max);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)why, sizeof why - 1);
            return -1;
        }
        l = s_link_new(cm, kind, false);
        if (l == NULL)
            return -1;
        l->wsi = wsi;
        l->b.tls = lws_is_ssl(wsi) != 0;
        lws_set_opaque_user_data(wsi, l);
    }
    if (l == NULL)
        return -1;
    s_set_addr(l);
    l->b.open = true;
    if (kind == MZ_LINK_PEER) cm->b.n_peer++;
    else cm->b.n_api++;
    cm->b.stats.links_opened++;
    if (cm->b.o.cb.on_open)
        cm->b.o.cb.on_open(&l->b, cm->b.o.ctx);
    return l->closing ? (lws_callback_on_writable(wsi), 0) : 0;
}

/* Closes from inside RECEIVE without returning -1 there: with the rest of a
 * big message unread, that makes lws crash (a client link freed twice).
 * The rest is discarded and the TIMER callback closes politely. */
static int s_close_from_rx(struct lws *wsi, ws_link *l, uint16_t code, const char *why)
{
    l->closing = true;
    l->close_sent = true;
    l->close_code = code;
    l->rx_len = 0;
    snprintf(l->close_reason, sizeof l->close_reason, "%s", why);
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)l->close_reason,
                     strlen(l->close_reason));
    lws_set_timer_usecs(wsi, 1);
    return 0;
}

/* Hands one whole message to the owner, text or binary. */
static void s_deliver(ws_mgr *cm, ws_link *l, const char *buf, size_t len, bool binary)
{
    cm->b.stats.msgs_in++;
    cm->b.stats.bytes_in += len;
    if (binary && cm->b.o.cb.on_binary)
        cm->b.o.cb.on_binary(&l->b, (const uint8_t *)buf, len, cm->b.o.ctx);
    else if (!binary && cm->b.o.cb.on_message)
        cm->b.o.cb.on_message(&l->b, buf, len, cm->b.o.ctx);
}

static int s_on_receive(struct lws *wsi, ws_link *l, const char *in, size_t len)
{
    ws_mgr *cm = s_cm(l);
    bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    bool binary;

    if (l->closing)
        return 0;
    /* Continuation fragments report the opcode of the first one. */
    binary = l->rx_len > 0 ? l->rx_binary : lws_frame_is_binary(wsi) != 0;
    if (binary && (cm->b.o.cb.on_binary == NULL || l->b.kind != MZ_LINK_PEER))
        return s_close_from_rx(wsi, l, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                               "binary frames are not supported on this link");
    if (l->rx_len + len > cm->b.o.max_message) {
        char why[100];
        int n = snprintf(why, sizeof why, "message too big: over %zu bytes", cm->b.o.max_message);
        cm->b.stats.oversize_closes++;
        mz_log_raw(MZ_LOG_WARN, "connmgr", "link %s: %s, closing", l->b.addr, why);
        (void)n;
        return s_close_from_rx(wsi, l, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, why);
    }
    if (final && l->rx_len == 0) {
        /* The common case: a whole message in one piece, no copy. */
        s_deliver(cm, l, in, len, binary);
        return 0;
    }
    if (l->rx_len + len + 1 > l->rx_cap) {
        size_t cap = l->rx_cap ? l->rx_cap : 4096;
        char *nb;
        while (cap < l->rx_len + len + 1)
            cap *= 2;
        nb = realloc(l->rx, cap);
        if (nb == NULL)
            return -1;
        l->rx = nb;
        l->rx_cap = cap;
    }
    memcpy(l->rx + l->rx_len, in, len);
    l->rx_len += len;
    l->rx_binary = binary;
    if (final) {
        size_t n = l->rx_len;
        l->rx_len = 0;
        s_deliver(cm, l, l->rx, n, binary);
    }
    return 0;
}

static int s_on_writeable(struct lws *wsi, ws_link *l)
{
    ws_mgr *cm = s_cm(l);

    /* A closing link still flushes what was queued (a node's "bye"), then closes. */
    while (l->qhead != NULL) {
        mz_qitem *q = l->qhead;
        int n = lws_write(wsi, (unsigned char *)q->buf + LWS_PRE, q->len,
                          q->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < 0)
            return -1;
        l->qhead = q->next;
        if (l->qhead == NULL)
            l->qtail = NULL;
        if (q == l->ulast)
            l->ulast = NULL;
        l->qbytes -= q->len;
        l->qcount--;
        cm->b.stats.msgs_out++;
        cm->b.stats.bytes_out += q->len;
        free(q->buf);
        free(q);
        /* The check costs a poll(2): only worth it when more is queued. */
        if (l->qhead != NULL && lws_send_pipe_choked(wsi))
            break;
    }
    if (l->closing && l->qhead == NULL) {
        /* lws closes a socket whose WRITEABLE (or timeout) callback failed
         * without a close frame; a failing TIMER callback closes politely,
         * with the reason set here. */
        if (!l->close_sent) {
            l->close_sent = true;
            lws_close_reason(wsi, (enum lws_close_status)l->close_code,
                             (unsigned char *)l->close_reason, strlen(l->close_reason));
            lws_set_timer_usecs(wsi, 1);
        }
        return 0;
    }
    if (l->qhead != NULL)
        lws_callback_on_writable(wsi);
    return 0;
}

/* Records why the server certificate of an outgoing link was refused; the
 * first reason wins and reaches on_close (s_link_finish counts it). */
static void s_tls_refuse(ws_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_tls_refuse(ws_link *l, const char *fmt, ...)
{
    va_list ap;

    if (l->tls_error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(l->tls_error, sizeof l->tls_error, fmt, ap);
    va_end(ap);
    mz_log_raw(MZ_LOG_WARN, "connmgr", "link %s: %s", l->b.url, l->tls_error);
}

/* LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION (LWS-NOTES "TLS"):
 * OpenSSL's verify callback, once per certificate of the chain and more than
 * once for one (first with the error, e.g. "self-signed", then again).
 * Returns 0 to accept, 1 to refuse. With a pin only the leaf's key matters:
 * errors are cleared with X509_V_OK, else lws would refuse anyway. Without
 * one, OpenSSL's verdict stands and the leaf must name the dialed host
 * (lws's own name check is off: it would also apply to pinned links, whose
 * certificates name no host). */
static int s_on_verify(ws_link *l, X509_STORE_CTX *xs, int preverify_ok)
{
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    bool leaf = cert != NULL && cert == X509_STORE_CTX_get0_cert(xs);
    char got[MZ_TLS_KEY_HEX_LEN + 1];

    if (l == NULL)
        return 1;
    if (l->b.pin[0]) {
        if (leaf) {
            mz_tls_cert_key_hex(cert, got);
            if (strcmp(got, l->b.pin) != 0) {
                s_tls_refuse(l, "tls: certificate key does not match pinned id %s (it is %s)",
                             l->b.pin, got[0] ? got : "not an Ed25519 key");
                return 1;
            }
            l->pin_ok = true;
        }
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 0;
    }
    if (!preverify_ok) {
        s_tls_refuse(l, "tls: certificate not trusted (%s) and no node id pinned in the URL",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
        return 1;
    }
    if (leaf && X509_check_ip_asc(cert, l->host, 0) != 1 &&
        X509_check_host(cert, l->host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        s_tls_refuse(l, "tls: certificate does not name host %s", l->host);
        return 1;
    }
    return 0;
}

/* Before the upgrade completes: a pinned wss:// link must have seen its
 * leaf certificate match (a second look, independent of how often OpenSSL
 * called s_on_verify). Nonzero refuses the link. */
static int s_check_pinned(struct lws *wsi, ws_link *l)
{
    SSL *ssl;
    char got[MZ_TLS_KEY_HEX_LEN + 1] = "";

    if (l == NULL || !l->b.tls || !l->b.pin[0])
        return 0;
    ssl = lws_get_ssl(wsi);
    if (ssl == NULL || !mz_tls_cert_key_hex(SSL_get0_peer_certificate(ssl), got) ||
        strcmp(got, l->b.pin) != 0) {
        s_tls_refuse(l, "tls: certificate key does not match pinned id %s (it is %s)",
                     l->b.pin, got[0] ? got : "unknown");
        return 1;
    }
    if (!l->pin_ok) {
        s_tls_refuse(l, "tls: the certificate was not checked against pinned id %s", l->b.pin);
        return 1;
    }
    return 0;
}

/* The API token (PROTOCOL.md "Local API"): required on the API listener
 * when one is set, as ?token=... or "Authorization: Bearer ...". */
static bool s_api_auth(struct lws *wsi)
{
    ws_mgr *cm = lws_context_user(lws_get_context(wsi));
    char buf[160];
    const char *arg;
    size_t tl;

    if (cm == NULL || cm->b.o.api_token == NULL || cm->api_vh == NULL ||
        lws_get_vhost(wsi) != cm->api_vh)
        return true;
    tl = strlen(cm->b.o.api_token);
    arg = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    if (arg != NULL && strlen(arg) == tl && sodium_memcmp(arg, cm->b.o.api_token, tl) == 0)
        return true;
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
        strncmp(buf, "Bearer ", 7) == 0 && strlen(buf + 7) == tl &&
        sodium_memcmp(buf + 7, cm->b.o.api_token, tl) == 0)
        return true;
    cm->b.stats.api_refused++;
    mz_log_raw(MZ_LOG_WARN, "connmgr", "API request without the right token refused");
    return false;
}

/* The Host header of an API request (WebSocket upgrade or HTTP) must name
 * loopback or the configured listen host: a web page that rebinds its own
 * name to 127.0.0.1 is refused. A wildcard listener needs the API token,
 * which no page has, so there any name is accepted. */
static bool s_api_host_ok(struct lws *wsi)
{
    ws_mgr *cm = lws_context_user(lws_get_context(wsi));
    char host[256], listen_host[200];
    int n;

    if (cm == NULL || cm->api_vh == NULL || lws_get_vhost(wsi) != cm->api_vh ||
        strncmp(cm->b.api_url, "unix:", 5) == 0)
        return true;
    if (!mz_url_host(cm->b.api_url, listen_host, sizeof listen_host))
        listen_host[0] = '\0';
    if (mz_host_wildcard(listen_host))
        return true;
    n = lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST);
    if (n > 0 && mz_host_allowed(host, (size_t)n, listen_host))
        return true;
    cm->b.stats.api_host_refused++;
    mz_log_raw(MZ_LOG_WARN, "connmgr", "API request for Host '%.100s' refused (not loopback "
               "or %s)", n > 0 ? host : "", listen_host);
    return false;
}

static int s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                      void *in, size_t len)
{
    ws_link *l = wsi ? lws_get_opaque_user_data(wsi) : NULL;

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return s_api_host_ok(wsi) && s_api_auth(wsi) ? 0 : -1;
    case LWS_CALLBACK_HTTP:
        if (!s_api_host_ok(wsi)) {
            lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "forbidden Host");
            return -1;
        }
        if (!s_api_auth(wsi)) {
            lws_return_http_status(wsi, HTTP_STATUS_UNAUTHORIZED, "API token required");
            return -1;
        }
        break;
    case LWS_CALLBACK_ESTABLISHED:
        return s_on_established(wsi, NULL, false);
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        return s_on_established(wsi, l, true);
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return l ? s_on_receive(wsi, l, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return l ? s_on_writeable(wsi, l) : -1;
    case LWS_CALLBACK_TIMER:
        return (l && l->close_sent) ? -1 : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (l && len >= 2 && !l->close_reason[0]) {
            const unsigned char *p = in;
            snprintf(l->close_reason, sizeof l->close_reason, "closed by peer (%u): %.*s",
                     (unsigned)(p[0] << 8 | p[1]), (int)(len - 2), (const char *)p + 2);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (l) {
            s_cm(l)->b.stats.dial_failures++;
            char why[200];
            const char *what = in ? (const char *)in : "unknown";
            /* lws's text for a failed handshake is OpenSSL's, often cryptic. */
            if (l->b.tls && strstr(what, "SSL") != NULL)
                snprintf(why, sizeof why, "dial failed: TLS handshake failed (is the peer "
                         "listening on wss://?): %.120s", what);
            else
                snprintf(why, sizeof why, "dial failed: %.160s", what);
            s_link_finish(l, why);
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
        /* An outgoing link can end here without CLIENT_CONNECTION_ERROR: under
         * TLS 1.3 a refused handshake shows up as CLOSED_CLIENT_HTTP. */
        if (l && l->b.outbound && !l->b.open && !l->closing && !s_cm(l)->b.closing) {
            s_cm(l)->b.stats.dial_failures++;
            s_link_finish(l, "dial failed: closed before the websocket upgrade");
        } else if (l) {
            s_link_finish(l, "connection closed");
        }
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return s_on_verify(l, (X509_STORE_CTX *)user, (int)len);
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
        return s_check_pinned(wsi, l);
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* user is the vhost's SSL_CTX: TLS 1.3 or nothing. */
        if (user != NULL && SSL_CTX_set_min_proto_version((SSL_CTX *)user, TLS1_3_VERSION) != 1)
            return 1;
        return 0;
    default:
        break;
    }
    if (wsi != NULL && l == NULL) {
        ws_mgr *cm = lws_context_user(lws_get_context(wsi));
        if (cm && cm->b.o.http_cb && cm->api_vh && lws_get_vhost(wsi) == cm->api_vh) {
            int r = cm->b.o.http_cb(wsi, (int)reason, user, in, len, cm->b.o.ctx);
            if (r != 1)
                return r;
        }
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static mz_status s_dial_now(ws_link *l, const char *ip, int port, const char *path,
                            mz_err *err)
{
    ws_mgr *cm = s_cm(l);
    struct lws_client_connect_info ci;
    char hosthdr[160];

    memset(&ci, 0, sizeof ci);
    /* TLS takes its SNI name from the Host header (port stripped): give it
     * the URL's host, not the address it resolved to. */
    if (l->b.tls)
        snprintf(hosthdr, sizeof hosthdr, strchr(l->host, ':') ? "[%s]:%d" : "%s:%d", l->host,
                 port);
    else if (ip[0] == '+')
        snprintf(hosthdr, sizeof hosthdr, "localhost");     /* unix socket */
    else
        snprintf(hosthdr, sizeof hosthdr, "%s:%d", ip, port);
    ci.context = cm->ctx;
    ci.vhost = cm->peer_vh;
    ci.address = ip;
    ci.port = port;
    ci.path = path;
    ci.host = hosthdr;
    ci.origin = hosthdr;
    ci.protocol = l->b.kind == MZ_LINK_API ? "meshzero-api" : "meshzero";
    ci.local_protocol_name = ci.protocol;
    ci.opaque_user_data = l;
    ci.retry_and_idle_policy = &cm->retry;
    ci.pwsi = &l->wsi;
    /* LWS-NOTES "TLS": no LCCSCF_ALLOW_SELFSIGNED (it would bypass s_on_verify);
     * lws's host name check is replaced by s_on_verify's. */
    if (l->b.tls)
        ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    l->in_dial = true;
    if (lws_client_connect_via_info(&ci) == NULL) {
        l->in_dial = false;
        if (!l->dead) {
            cm->b.stats.dial_failures++;
            s_link_finish(l, "dial failed: connection could not start");
        }
    } else {
        l->in_dial = false;
    }
    if (l->free_pending) {
        s_link_free(l);
        return mz_err_set(err, MZ_EIO, "dial: connection could not start");
    }
    return MZ_OK;
}

typedef struct mz_dialreq {
    uv_getaddrinfo_t req;
    ws_link *link;              /* NULL when the link went away meanwhile */
    int port;
    char path[128];
} mz_dialreq;

static void s_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    mz_dialreq *dr = (mz_dialreq *)req;
    ws_link *l = dr->link;
    char ip[64] = "";
    mz_err e;

    if (l != NULL)
        l->gai = NULL;
    if (status == 0 && res != NULL) {
        if (res->ai_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
        else
            uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    }
    uv_freeaddrinfo(res);
    if (l != NULL) {
        if (l->closing || s_cm(l)->b.closing) {
            s_link_finish(l, "closed before connecting");
        } else if (ip[0] == '\0') {
            char why[160];
            s_cm(l)->b.stats.dial_failures++;
            snprintf(why, sizeof why, "dial failed: cannot resolve host (%s)",
                     status ? uv_strerror(status) : "no address");
            s_link_finish(l, why);
        } else {
            (void)s_dial_now(l, ip, dr->port, dr->path, &e);  /* failures reported via on_close */
        }
    }
    free(dr);
}

/* An API client over a unix socket (the CLI with --node unix:/path): lws
 * takes "+/path" as the address of a unix socket. */
static mz_status s_dial_unix(ws_mgr *cm, const char *url, void *user, mz_link **out,
                             mz_err *err)
{
    char addr[200];
    ws_link *l;

    if (strlen(url + 5) == 0 || strlen(url + 5) >= 100)
        return mz_err_set(err, MZ_EINVAL, "url '%s': bad socket path", url);
    if (cm->b.closing)
        return mz_err_set(err, MZ_ESTATE, "dial %s: shutting down", url);
    l = s_link_new(cm, MZ_LINK_API, true);
    if (l == NULL)
        return mz_err_set(err, MZ_ENOMEM, "dial %s: allocating", url);
    snprintf(l->b.url, sizeof l->b.url, "%s", url);
    snprintf(l->b.addr, sizeof l->b.addr, "%.60s", url);
    snprintf(l->host, sizeof l->host, "localhost");
    l->b.user = user;
    snprintf(addr, sizeof addr, "+%s", url + 5);
    if (out)
        *out = &l->b;
    s_dial_now(l, addr, 0, "/", err);
    return MZ_OK;
}

static mz_status s_ws_dial(mz_connmgr *base, const char *url, mz_link_kind kind, void *user,
                           mz_link **out, mz_err *err)
{
    ws_mgr *cm = (ws_mgr *)base;
    mz_url u;
    int r;
    ws_link *l;
    mz_dialreq *dr;
    struct addrinfo hints;
    mz_status rc;

    if (out)
        *out = NULL;
    if (strncmp(url, "unix:", 5) == 0 && kind == MZ_LINK_API)
        return s_dial_unix(cm, url, user, out, err);
    if ((rc = mz__connmgr_dial_check(&cm->b, url, kind, &u, err)) != MZ_OK)
        return rc;
    if (u.tls && (rc = s_tls_client_on(cm, err)) != MZ_OK)
        return rc;
    /* CAs are loaded on the first dial that needs them (mz_tls_client_load_ca). */
    if (u.tls && !u.pin[0] && !cm->ca_loaded) {
        if ((rc = mz_tls_client_load_ca(cm->client_ssl, cm->tls_ca[0] ? cm->tls_ca : NULL,
                                        err)) != MZ_OK)
            return rc;
        cm->ca_loaded = true;
    }
    l = s_link_new(cm, kind, true);
    dr = calloc(1, sizeof *dr);
    if (l == NULL || dr == NULL) {
        if (l) { s_link_unlink(l); s_link_free(l); }
        free(dr);
        return mz_err_set(err, MZ_ENOMEM, "dial %s: allocating", url);
    }
    snprintf(l->b.url, sizeof l->b.url, "%s", url);
    snprintf(l->b.addr, sizeof l->b.addr, "%.40s:%d", u.host, u.port);
    snprintf(l->host, sizeof l->host, "%s", u.host);
    snprintf(l->b.pin, sizeof l->b.pin, "%s", u.pin);
    l->b.tls = u.tls;
    l->b.user = user;
    dr->link = l;
    dr->port = u.port;
    snprintf(dr->path, sizeof dr->path, "%s", u.path);
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    r = uv_getaddrinfo(cm->b.loop, &dr->req, s_on_resolved, u.host, NULL, &hints);
    if (r != 0) {
        s_link_unlink(l);
        s_link_free(l);
        free(dr);
        return mz_err_set(err, MZ_EIO, "dial %s: %s", url, uv_strerror(r));
    }
    if (kind == MZ_LINK_PEER)
        cm->b.n_out++;            /* from here the link ends through s_link_finish */
    l->gai = &dr->req;
    if (out)
        *out = &l->b;
    return MZ_OK;
}

static void s_ws_close(mz_link *base, uint16_t code, const char *reason);

static mz_status s_enqueue(ws_link *l, mz_qitem *q, bool urgent, mz_err *err)
{
    ws_mgr *cm = s_cm(l);

    if (l->closing || l->dead || cm->b.closing) {
        free(q->buf);
        free(q);
        return mz_err_set(err, MZ_ESTATE, "link %s is closing", l->b.addr);
    }
    if (l->qbytes + q->len > cm->b.o.max_send_queue || l->qcount + 1 > cm->b.o.max_send_msgs) {
        cm->b.stats.slow_link_closes++;
        mz_log_raw(MZ_LOG_WARN, "connmgr",
                   "link %s: send queue full (%zu messages, %zu bytes), closing slow peer",
                   l->b.addr, l->qcount, l->qbytes);
        free(q->buf);
        free(q);
        s_ws_close(&l->b, LWS_CLOSE_STATUS_POLICY_VIOLATION, "send queue full");
        return mz_err_set(err, MZ_ELIMIT, "link %s: send queue full", l->b.addr);
    }
    if (urgent) {
        /* Calls and replies overtake queued broadcasts, in their own order. */
        if (l->ulast) {
            q->next = l->ulast->next;
            l->ulast->next = q;
        } else {
            q->next = l->qhead;
            l->qhead = q;
        }
        if (q->next == NULL)
            l->qtail = q;
        l->ulast = q;
    } else {
        if (l->qtail) l->qtail->next = q;
        else l->qhead = q;
        l->qtail = q;
    }
    l->qbytes += q->len;
    l->qcount++;
    if (l->wsi && l->b.open)
        lws_callback_on_writable(l->wsi);
    return MZ_OK;
}

/* Takes buf (message at buf + LWS_PRE); frees it on failure. */
static mz_status s_ws_send(mz_link *base, char *buf, size_t len, unsigned flags, mz_err *err)
{
    mz_qitem *q = malloc(sizeof *q);

    if (q == NULL) {
        free(buf);
        return mz_err_set(err, MZ_ENOMEM, "link send: allocating");
    }
    q->next = NULL;
    q->len = len;
    q->buf = buf;
    q->binary = (flags & MZ_SEND_BINARY) != 0;
    return s_enqueue((ws_link *)base, q, (flags & MZ_SEND_URGENT) != 0, err);
}

static void s_ws_pause(mz_link *base, bool pause)
{
    ws_link *l = (ws_link *)base;

    if (l->wsi != NULL && !l->dead)
        lws_rx_flow_control(l->wsi, pause ? 0 : 1);
}

static void s_ws_close(mz_link *base, uint16_t code, const char *reason)
{
    ws_link *l = (ws_link *)base;

    if (l->closing || l->dead)
        return;
    l->closing = true;
    l->close_code = code;
    snprintf(l->close_reason, sizeof l->close_reason, "%s", reason);
    if (l->wsi)
        lws_callback_on_writable(l->wsi);
}

static void s_ws_cm_close(mz_connmgr *base)
{
    ws_mgr *cm = (ws_mgr *)base;

    if (cm->b.closing)
        return;
    cm->b.closing = true;
    for (ws_link *l = cm->links; l; l = l->next)
        if (l->gai)
            ((mz_dialreq *)l->gai)->link = NULL;
    lws_context_destroy(cm->ctx);
}

static void s_ws_cm_free(mz_connmgr *base)
{
    ws_mgr *cm = (ws_mgr *)base;

    if (!cm->b.closing) {
        s_ws_cm_close(base);
        uv_run(cm->b.loop, UV_RUN_DEFAULT);
    }
    lws_context_destroy(cm->ctx);
    SSL_CTX_free(cm->client_ssl);      /* after lws: its vhosts borrowed it */
    /* Links lws never reported (pending resolution at close) are ours to free. */
    while (cm->links) {
        ws_link *l = cm->links;
        s_link_unlink(l);
        s_link_free(l);
    }
    free(cm);
}

static bool s_ws_closing(const mz_link *base)
{
    const ws_link *l = (const ws_link *)base;

    return l->closing || l->dead;
}

static size_t s_ws_queued_bytes(const mz_link *l) { return ((const ws_link *)l)->qbytes; }
static size_t s_ws_queued_msgs(const mz_link *l) { return ((const ws_link *)l)->qcount; }

static const mz_transport s_ws = {
    .name = "ws",
    .cm_new = s_ws_new,
    .cm_close = s_ws_cm_close,
    .cm_free = s_ws_cm_free,
    .dial = s_ws_dial,
    .send = s_ws_send,
    .pause = s_ws_pause,
    .close = s_ws_close,
    .closing = s_ws_closing,
    .queued_bytes = s_ws_queued_bytes,
    .queued_msgs = s_ws_queued_msgs,
};

const mz_transport *mz_transport_ws(void)
{
    return &s_ws;
}
