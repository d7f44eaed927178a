/* ConnectionManager: the peer listener and the local API listener, and
 * outgoing peer links, on the caller's libuv loop; by default one
 * libwebsockets context (mz_transport_ws), or another transport
 * (mz_connmgr_opts.transport). It moves whole text messages; what they
 * mean is the owner's business (node.c, api.c). Loop-thread only. */
#ifndef MESHZERO_CONNMGR_H
#define MESHZERO_CONNMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes libuv: links run on the embedder's event loop (uv_loop_t), which it owns. */
#include <uv.h>

#include "meshzero/err.h"

/* Bytes queued to one link before it is judged too slow and closed. */
#define MZ_DEFAULT_MAX_SEND_QUEUE   (8u * 1024 * 1024)
/* Messages queued to one link before it is judged too slow and closed. */
#define MZ_DEFAULT_MAX_SEND_MSGS    8192
/* Peer links (inbound + outbound) a node keeps at once. */
#define MZ_DEFAULT_MAX_PEERS        64
/* Of those, outbound links (dialing or open). */
#define MZ_DEFAULT_MAX_PEERS_OUT    32
/* Local API clients connected at once. */
#define MZ_DEFAULT_MAX_API_CLIENTS  64
/* Idle seconds before a WebSocket ping is sent on a link. */
#define MZ_DEFAULT_PING_SECS        5
/* Idle seconds without any traffic (pongs included) before a link is dropped. */
#define MZ_DEFAULT_HANGUP_SECS      15

/* Bytes of per-connection state an HTTP handler gets on the API listener. */
#define MZ_HTTP_PSS_SIZE 64

typedef struct mz_connmgr mz_connmgr;
typedef struct mz_link mz_link;
/* What carries the links: an ops table behind every call below. */
typedef struct mz_transport mz_transport;

/* WebSocket over libwebsockets on the caller's libuv loop: the default.
 * (The in-memory transport of the tests is src/net/memnet.h.) */
const mz_transport *mz_transport_ws(void);

typedef enum { MZ_LINK_PEER = 0, MZ_LINK_API = 1 } mz_link_kind;

/* Callbacks into the owner. A link passed to on_close is freed right after
 * on_close returns. */
typedef struct mz_connmgr_cb {
    void (*on_open)(mz_link *link, void *ctx);
    void (*on_message)(mz_link *link, const char *buf, size_t len, void *ctx);
    /* A binary message (a wire v2 frame). NULL: binary messages are refused
     * (close 1003), as before wire v2. */
    void (*on_binary)(mz_link *link, const uint8_t *buf, size_t len, void *ctx);
    void (*on_close)(mz_link *link, const char *reason, void *ctx);
} mz_connmgr_cb;

typedef struct mz_connmgr_opts {
    uv_loop_t *loop;            /* borrowed; outlives the manager */
    const char *listen_url;     /* peer listener, ws://HOST:PORT or wss://HOST:PORT
                                   (port 0: any); NULL: no listener, dial only */
    const char *api_url;        /* API listener, ws://HOST:PORT; NULL: none */
    /* TLS (docs/TLS.md). A wss:// listener serves tls_cert/tls_key (PEM files,
     * both or neither); without them, a self-signed certificate whose key is
     * the node's Ed25519 identity, kept in tls_dir (see src/net/tls.h). */
    const char *tls_cert;       /* NULL: self-signed from tls_dir */
    const char *tls_key;        /* private key of tls_cert */
    const char *tls_dir;        /* directory holding identity.key; NULL: none */
    const char *tls_ca;         /* PEM CAs trusted for unpinned wss:// dials;
                                   NULL: the system store */
    size_t max_message;         /* bytes; 0: MZ_DEFAULT_MAX_MESSAGE */
    size_t max_send_queue;      /* bytes; 0: default */
    size_t max_send_msgs;       /* messages; 0: default */
    size_t max_peers;           /* 0: default */
    size_t max_peers_out;       /* outbound peer links; 0: default */
    size_t max_api_clients;     /* 0: default */
    unsigned ping_secs;         /* 0: default */
    unsigned hangup_secs;       /* 0: default */
    mz_connmgr_cb cb;
    void *ctx;                  /* passed to every callback */
    /* Plain HTTP requests on the API listener (not WebSocket upgrades) go
     * here with lws's arguments (wsi is a struct lws *, reason an enum
     * lws_callback_reasons). Return 1 for "not handled" (lws's default
     * answers), else what an lws callback returns. NULL: none. `user` is a
     * zeroed per-connection area of MZ_HTTP_PSS_SIZE bytes the handler may
     * use; it must NOT set lws's opaque user data (links use it). */
    int (*http_cb)(void *wsi, int reason, void *user, void *in, size_t len, void *ctx);
    /* When set, API connections and HTTP requests must carry it (?token= or
     * Authorization: Bearer); others are refused (counted api_refused). */
    const char *api_token;
    const mz_transport *transport;  /* borrowed, outlives the manager; NULL:
                                       mz_transport_ws() */
} mz_connmgr_opts;

/* Counters shown by `status`. */
typedef struct mz_connmgr_stats {
    uint64_t links_opened, links_refused_full, slow_link_closes, oversize_closes;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, dial_failures;
    uint64_t api_refused;
    uint64_t api_host_refused;  /* API requests whose Host header names another host */
    uint64_t tls_refusals;      /* wss:// dials refused: certificate not the pinned
                                   key, or untrusted without a pin */
} mz_connmgr_stats;

/* Creates the context and binds both listeners. A listener that cannot bind
 * (address in use, bad host) fails here with MZ_EIO naming the URL. Returns
 * new: free with mz_connmgr_free after mz_connmgr_close and the loop ran. */
mz_status mz_connmgr_new(const mz_connmgr_opts *opts, mz_connmgr **out, mz_err *err);
/* First shutdown step (LWS two-step destroy): closes every link and lws's
 * loop handles. Call from a uv callback, never from inside an mz callback. */
void mz_connmgr_close(mz_connmgr *cm);
/* Second step: frees the context. Call after uv_run returned; NULL-safe. */
void mz_connmgr_free(mz_connmgr *cm);

/* The URLs actually bound (port 0 resolved). Borrowed. */
const char *mz_connmgr_listen_url(const mz_connmgr *cm);
const char *mz_connmgr_api_url(const mz_connmgr *cm);
const mz_connmgr_stats *mz_connmgr_stats_get(const mz_connmgr *cm);
size_t mz_connmgr_count(const mz_connmgr *cm, mz_link_kind kind);

/* Dials url (ws:// or wss://HOST:PORT[/PATH][#NODE_ID]) as a peer or an API
 * client (the subprotocol differs); host names are resolved asynchronously.
 * The link is reported through on_open, or on_close with the reason when the
 * dial fails. user is stored in the link (mz_link_user).
 * wss:// links check the server's certificate: with a #NODE_ID pin, its
 * public key must be that Ed25519 key (any issuer, any name); without one,
 * it must chain to a trusted CA (opts.tls_ca or the system store) and name
 * the URL's host. A refusal reaches on_close as "tls: ..." and is counted in
 * tls_refusals. The pin of a ws:// URL is only stored (mz_link_pin). */
mz_status mz_connmgr_dial(mz_connmgr *cm, const char *url, mz_link_kind kind, void *user,
                          mz_link **out, mz_err *err);

/* Queues a copy of buf (len bytes) as one text message. MZ_ELIMIT (and the
 * link is closed with 1008 "send queue full") when the queue is over its
 * bounds; MZ_ESTATE when the link is closing. */
mz_status mz_link_send(mz_link *link, const char *buf, size_t len, mz_err *err);
/* Like mz_link_send, but ahead of the non-urgent messages already queued
 * (calls and their answers overtake relayed broadcasts). */
mz_status mz_link_send_urgent(mz_link *link, const char *buf, size_t len, mz_err *err);
/* Like mz_link_send (urgent: like mz_link_send_urgent), as one binary
 * message: a wire v2 frame. */
mz_status mz_link_send_binary(mz_link *link, const void *buf, size_t len, bool urgent,
                              mz_err *err);
/* Takes buf (malloc'd with LWS_PRE bytes of headroom: the message starts at
 * buf + MZ_LINK_PRE). Same limits as mz_link_send; buf is freed on failure. */
mz_status mz_link_send_owned(mz_link *link, char *buf, size_t len, mz_err *err);
/* Stops (pause) or resumes reading from the link: TCP backpressure on a
 * peer over its message rate. */
void mz_link_pause(mz_link *link, bool pause);
/* Starts closing: code and reason go in the close frame. First reason wins. */
void mz_link_close(mz_link *link, uint16_t code, const char *reason);

uint64_t mz_link_id(const mz_link *link);
mz_link_kind mz_link_kind_get(const mz_link *link);
bool mz_link_outbound(const mz_link *link);
/* Dialed URL for outbound links, "" for inbound ones. Borrowed. */
const char *mz_link_url(const mz_link *link);
/* The node id pinned in the dialed URL's fragment (64 lowercase hex), ""
 * when none or inbound. Borrowed, valid for the link's life. */
const char *mz_link_pin(const mz_link *link);
/* True for a TLS (wss://) link, inbound or outbound. */
bool mz_link_tls(const mz_link *link);
/* Remote address "IP:PORT". Borrowed. */
const char *mz_link_peer_addr(const mz_link *link);
bool mz_link_closing(const mz_link *link);
void *mz_link_user(const mz_link *link);
void mz_link_set_user(mz_link *link, void *user);
size_t mz_link_queued_bytes(const mz_link *link);
size_t mz_link_queued_msgs(const mz_link *link);

/* Headroom before a message owned by mz_link_send_owned. */
extern const size_t MZ_LINK_PRE;

/* Hex characters of a pinned node id. */
#define MZ_URL_PIN_LEN 64

/* A parsed ws:// or wss:// URL. */
typedef struct mz_url {
    bool tls;                       /* wss:// */
    char host[128];                 /* brackets of an IPv6 address removed */
    int port;                       /* default 80 (ws) or 443 (wss) */
    char path[128];                 /* default "/"; no fragment */
    char pin[MZ_URL_PIN_LEN + 1];   /* #fragment: a node id, lowercased; "" if none */
} mz_url;

/* Splits ws[s]://HOST[:PORT][/PATH][#NODE_ID]. A fragment, when present and
 * not empty, must be a 64-hex node id (the pin). MZ_EINVAL naming the URL
 * otherwise. */
mz_status mz_url_parse2(const char *url, mz_url *out, mz_err *err);

/* The older form of mz_url_parse2: host, port and path only (same rules,
 * wss:// accepted). */
mz_status mz_url_parse(const char *url, char *host, size_t host_len, int *port,
                       char *path, size_t path_len, mz_err *err);

#endif
