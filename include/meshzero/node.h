/* MeshNode: a node of the mesh. It owns the identity, the ResourceDirectory,
 * the ConnectionManager, the routing table and the local API, and runs on
 * the caller's libuv loop. The seed's calls are the mz_node_* functions
 * below. Loop-thread only. */
#ifndef MESHZERO_NODE_H
#define MESHZERO_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes jansson: records, query results, call params and results are JSON values (json_t),
 * as on the wire; the caller owns the references the comments say it gets. */
#include <jansson.h>
/* Exposes libuv: the node runs on the embedder's event loop (mz_node_opts.loop, uv_loop_t). */
#include <uv.h>

#include "meshzero/connmgr.h"
#include "meshzero/directory.h"
#include "meshzero/err.h"

/* Default peer listener and local API. */
#define MZ_DEFAULT_LISTEN_URL "ws://127.0.0.1:8765"
#define MZ_DEFAULT_API_URL    "ws://127.0.0.1:8766"
/* How long a node's resources stay in other directories without news from
 * it. The node re-announces itself every third of this. */
#define MZ_DEFAULT_LEASE_MS   15000
/* Hops a message may travel before relays drop it. */
#define MZ_DEFAULT_MAX_HOPS   16
/* Seconds a new link has to complete the hello exchange. */
#define MZ_DEFAULT_HELLO_SECS 5
/* Links that have not completed the hello yet, at most (more are closed at
 * once): strangers cannot hold every peer slot. */
#define MZ_MAX_PREAUTH_LINKS 16
/* Records per sync message sent to a newly linked peer. */
#define MZ_SYNC_CHUNK         256

typedef struct mz_node mz_node;

typedef struct mz_node_opts {
    uv_loop_t *loop;            /* borrowed; must outlive the node */
    const char *data_dir;       /* identity.key lives here; NULL: in-memory key */
    const char *listen_url;     /* NULL: MZ_DEFAULT_LISTEN_URL; port 0 picks one */
    const char *api_url;        /* NULL: no local API */
    bool api_allow_remote;      /* allow a non-loopback API listener (it then requires
                                   the token in DATA/api.token) */
    bool api_require_token;     /* require the token on a loopback API too */
    const char *const *peers;   /* URLs dialed at start and re-dialed when lost */
    size_t n_peers;
    int64_t lease_ms;           /* 0: MZ_DEFAULT_LEASE_MS */
    int max_hops;               /* 0: MZ_DEFAULT_MAX_HOPS */
    size_t seen_capacity;       /* 0: MZ_DEFAULT_SEEN_CAPACITY */
    size_t max_message;         /* 0: MZ_DEFAULT_MAX_MESSAGE */
    size_t max_send_queue;      /* 0: MZ_DEFAULT_MAX_SEND_QUEUE (bytes per link) */
    size_t max_peers;           /* 0: MZ_DEFAULT_MAX_PEERS */
    size_t max_peers_out;       /* of those, outbound; 0: MZ_DEFAULT_MAX_PEERS_OUT */
    size_t max_api_clients;     /* 0: MZ_DEFAULT_MAX_API_CLIENTS */
    unsigned ping_secs;         /* 0: MZ_DEFAULT_PING_SECS */
    unsigned hangup_secs;       /* 0: MZ_DEFAULT_HANGUP_SECS */
    size_t max_running;         /* 0: MZ_DEFAULT_MAX_RUNNING (calls served at once) */
    size_t max_pending;         /* 0: MZ_DEFAULT_MAX_PENDING (calls awaited at once) */
    size_t max_subscriptions;   /* 0: MZ_DEFAULT_MAX_SUBSCRIPTIONS */
    /* TLS (docs/TLS.md): a wss:// listen_url serves tls_cert/tls_key (PEM
     * files, both or neither), else a self-signed certificate of the
     * identity key written to data_dir (tls-cert.pem, tls-key.pem). */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;         /* PEM CAs for unpinned wss:// peers; NULL: system store */
    bool no_seal;               /* send unicasts signed instead of sealed (benchmarks) */
    bool wire1;                 /* offer only JSON envelopes, not wire v2 frames (what an
                                   older node does: interop tests, A/B measurements) */
    size_t max_records_per_node;  /* remote records one node may host here; 0: default */
    size_t max_records_per_owner; /* records one owner key may sign; 0: default */
    size_t max_running_per_caller;/* calls one caller may run here at once; 0: default */
    size_t max_subs_per_client;   /* subscriptions per API connection; 0: default */
    double rate_msgs;           /* messages per second a peer may send; 0: default */
    double rate_burst;          /* bucket size; 0: default */
    size_t min_links;           /* low watermark; 0: MZ_DEFAULT_MIN_LINKS */
    size_t max_links;           /* high watermark; 0: MZ_DEFAULT_MAX_LINKS */
    int64_t replay_window_ms;   /* 0: MZ_DEFAULT_REPLAY_WINDOW_MS */
    const char *trust_file;     /* allowlist of node ids, one per line; NULL: open */
    const char *network_key_file; /* shared mesh secret; NULL: none */
    /* A host keeps the answers of calls it ran until their timeout, so that
     * a caller's retry is answered without running the call again
     * (docs/PROTOCOL.md "execute"): at most this many, and this many bytes
     * of results; the oldest go first. 0: the defaults. */
    size_t max_kept_answers;    /* 0: MZ_DEFAULT_MAX_KEPT_ANSWERS */
    size_t max_kept_bytes;      /* 0: MZ_DEFAULT_MAX_KEPT_BYTES */
    bool log_calls;             /* log every call at caller and host (INFO, "call") */
    /* What carries the node's links (borrowed, outlives the node); NULL:
     * WebSocket (mz_transport_ws). Tests run several nodes in one process
     * on the in-memory one (src/net/memnet.h). */
    const mz_transport *transport;
    /* What one linked peer's requests may make this node send
     * (docs/SECURITY.md "Amplification"); 0: the defaults below. */
    double fetch_rate;          /* fetches/s one asker may send (burst: 5 s of it) */
    double reply_rate;          /* sync/query reply bytes/s to one asker (burst: 2 s) */
    double reply_rate_all;      /* the same to all askers together (burst: 2 s) */
    /* After mz_node_stop, keep the API listener open this long (at most
     * MZ_MAX_DRAIN_MS) so monitors see /health answer 503 "stopping"; 0:
     * only until "bye" has left, at most 500 ms. */
    int64_t drain_ms;
} mz_node_opts;

/* Remote records one node may host in our directory; more are refused. */
#define MZ_DEFAULT_MAX_RECORDS_PER_NODE  100000
/* Records one owner key may sign in our directory. */
#define MZ_DEFAULT_MAX_RECORDS_PER_OWNER 100000
/* Calls one caller node may have running on this host at once (more: busy). */
#define MZ_DEFAULT_MAX_RUNNING_PER_CALLER 256
#define MZ_DEFAULT_MAX_KEPT_ANSWERS 4096
#define MZ_DEFAULT_MAX_KEPT_BYTES (8u << 20)
/* Subscriptions one API connection may hold. */
#define MZ_DEFAULT_MAX_SUBS_PER_CLIENT 1000
/* Messages per second a peer link may carry (token bucket), and the burst.
 * Over it the link's reading pauses (throttle); a peer throttled more than
 * MZ_RATE_MAX_THROTTLES times in 10 s is disconnected. */
#define MZ_DEFAULT_RATE_MSGS  20000.0
#define MZ_DEFAULT_RATE_BURST 40000.0
#define MZ_MAX_DRAIN_MS       60000
#define MZ_RATE_MAX_THROTTLES 20
/* Reply budgets: fetches per second per asker, reply bytes per second per
 * asker and for all askers together. */
#define MZ_DEFAULT_FETCH_RATE     2.0
#define MZ_DEFAULT_REPLY_RATE     (4.0 * 1024 * 1024)
#define MZ_DEFAULT_REPLY_RATE_ALL (32.0 * 1024 * 1024)

/* Below this many links a node dials known nodes it has no link to. One by
 * default, so a node never stays cut off yet explicit topologies stay as
 * built; raise it (--min-links) for denser self-healing meshes. */
#define MZ_DEFAULT_MIN_LINKS 1
/* Above this many links a node sheds its newest inbound link. */
#define MZ_DEFAULT_MAX_LINKS 8

/* Messages whose timestamp is further than this from our clock are refused. */
#define MZ_DEFAULT_REPLAY_WINDOW_MS 60000

/* Re-reads opts->trust_file (the CLI calls it on SIGHUP). Links to nodes no
 * longer trusted are closed. */
mz_status mz_node_reload_trust(mz_node *node, mz_err *err);

/* What register_resource needs; everything is borrowed for the call. */
typedef struct mz_resource_spec {
    const char *resource_id;
    const char *resource_type;
    const char *owner;                  /* NULL: "" */
    const char *const *capabilities;
    size_t n_capabilities;
    const json_t *metadata;             /* object or NULL; last_updated is set */
} mz_resource_spec;

/* Creates the node: loads or creates the identity, binds the listeners and
 * dials opts->peers. Returns new: stop with mz_node_stop, let uv_run return,
 * then mz_node_free. */
mz_status mz_node_new(const mz_node_opts *opts, mz_node **out, mz_err *err);
/* Begins a clean shutdown: tells peers goodbye, closes links, timers and
 * listeners. uv_run returns once everything is closed. Safe to call twice. */
void mz_node_stop(mz_node *node);
/* Frees a stopped node (runs the loop briefly to finish closing). NULL-safe. */
void mz_node_free(mz_node *node);

/* Why the node stopped itself (its store failed: the message names the
 * file), or NULL. Check after uv_run returns. */
const char *mz_node_fatal_error(const mz_node *node);
/* Borrowed strings, valid for the node's life. */
const char *mz_node_id(const mz_node *node);
const char *mz_node_listen_url(const mz_node *node);
const char *mz_node_api_url(const mz_node *node);
/* Borrowed: the node's directory (read it; change it through the node). */
const mz_directory *mz_node_directory(const mz_node *node);

/* register_resource: stores (or, for an id this node already hosts, updates
 * with version + 1) a local record, signed by this node, and announces it to
 * the mesh. record_out (may be NULL) gets a new reference to its JSON form. */
mz_status mz_node_register_resource(mz_node *node, const mz_resource_spec *spec,
                                    json_t **record_out, mz_err *err);
/* Registers a record signed elsewhere by its owner key (`register
 * --owner-key`): rec.node must be this node, rec.version higher than any
 * version of the id this node knows, rec.owner_key the id's owner. rec is
 * borrowed. */
mz_status mz_node_register_record(mz_node *node, const json_t *rec, json_t **record_out,
                                  mz_err *err);
/* Unregisters with a tombstone signed by the record's owner key:
 * {resource_id, node, owner_key, version, deleted: true, signature}. */
mz_status mz_node_unregister_tombstone(mz_node *node, const json_t *tomb, mz_err *err);
/* unregister_resource: removes a local record owned by the node's own key,
 * signing the tombstone itself, and announces the removal. */
mz_status mz_node_unregister_resource(mz_node *node, const char *resource_id, mz_err *err);
/* Returns new {node: this node's id, record: the record or null,
 * next_version: the version a new record of resource_id signed by owner_key
 * (NULL: the node's key) must carry}. */
json_t *mz_node_get_resource(mz_node *node, const char *resource_id, const char *owner_key);
/* query_resources: returns new JSON array of matching records (NULL: ENOMEM). */
json_t *mz_node_query_resources(mz_node *node, const mz_query *q);

/* Called once when a connect_to_peer attempt ends: MZ_OK with the peer's
 * node id once the hello exchange completed, or the failure. */
typedef void (*mz_connect_cb)(mz_node *node, mz_status st, const char *peer_id,
                              const char *msg, void *ctx);
/* connect_to_peer: dials url (ws://HOST:PORT). cb may be NULL. Once the link
 * has come up, the URL is re-dialed with backoff whenever it is lost; a first
 * attempt that fails is reported and not retried. (opts->peers are retried
 * from the start: they may simply not be up yet.) */
mz_status mz_node_connect_to_peer(mz_node *node, const char *url, mz_connect_cb cb,
                                  void *ctx, mz_err *err);

/* Closes the link to peer_id (a static peer is re-dialed with backoff, so
 * this cuts a link for a while: the chaos test uses it). */
mz_status mz_node_disconnect_peer(mz_node *node, const char *peer_id, mz_err *err);
/* Returns new: [{id, listen, addr, direction, url, since}] of linked peers. */
json_t *mz_node_peers(mz_node *node);
/* Returns new: id, URLs, uptime, counts, counters and limits. */
json_t *mz_node_status(mz_node *node);
/* Returns new: {"members": [...]}, what this node knows of every node of the
 * mesh, itself first (docs/PROTOCOL.md "Local API", members). */
json_t *mz_node_members(mz_node *node);

/* ---- remote execution (execute_remote) ---------------------------------- */

/* Error codes of a failed call (docs/PROTOCOL.md "execute_result"). */
#define MZ_EXEC_NOT_FOUND     "not_found"      /* no such resource */
#define MZ_EXEC_UNREACHABLE   "unreachable"    /* no route, or the path broke mid-call */
#define MZ_EXEC_TIMEOUT       "timeout"
#define MZ_EXEC_BAD_REQUEST   "bad_request"    /* params not an object, unknown method */
#define MZ_EXEC_HANDLER_ERROR "handler_error"  /* the handler failed; message is its text */
#define MZ_EXEC_BUSY          "busy"           /* host over its concurrency limit */
#define MZ_EXEC_DENIED        "denied"
/* The same codes as one list, for tables over them (outcome labels). */
#define MZ_EXEC_CODES(X)                                                    \
    X(NOT_FOUND, MZ_EXEC_NOT_FOUND, "no such resource")                     \
    X(UNREACHABLE, MZ_EXEC_UNREACHABLE, "no route, or the path broke")      \
    X(TIMEOUT, MZ_EXEC_TIMEOUT, "no answer within the timeout")             \
    X(BAD_REQUEST, MZ_EXEC_BAD_REQUEST, "params not an object, no method")  \
    X(HANDLER_ERROR, MZ_EXEC_HANDLER_ERROR, "the handler failed")           \
    X(BUSY, MZ_EXEC_BUSY, "host over its concurrency limit")                \
    X(DENIED, MZ_EXEC_DENIED, "no valid agreement")

/* Calls a host runs at once before answering busy. */
#define MZ_DEFAULT_MAX_RUNNING   256
/* Calls a node waits on at once (its own and its API clients'). */
#define MZ_DEFAULT_MAX_PENDING   4096
/* Default and largest call timeout. */
#define MZ_DEFAULT_EXEC_TIMEOUT_MS 30000
#define MZ_MAX_EXEC_TIMEOUT_MS     600000

/* Completion of execute_remote: exactly one call, with either result
 * (borrowed; valid during the call) or code + message. */
typedef void (*mz_result_cb)(mz_node *node, const json_t *result, const char *code,
                             const char *message, void *ctx);

/* execute_remote: runs method on resource_id wherever it is hosted (here, a
 * neighbour, or over relays). params is borrowed (NULL: {}); timeout_ms 0
 * takes the default. cb is always called exactly once, never from inside
 * this function (failures found at once are reported on the next loop turn). */
mz_status mz_node_execute_remote(mz_node *node, const char *resource_id, const char *method,
                                 const json_t *params, int64_t timeout_ms, mz_result_cb cb,
                                 void *ctx, mz_err *err);

/* execute_remote with an agreement (borrowed; NULL: none) for resources
 * whose record declares metadata "requires_agreement": true
 * (docs/AGREEMENTS.md). A refusal fails the call with MZ_EXEC_DENIED and
 * the reason ("missing", "bad_signature", "wrong_consumer", ...). */
mz_status mz_node_execute_with(mz_node *node, const char *resource_id, const char *method,
                               const json_t *params, const json_t *agreement,
                               int64_t timeout_ms, mz_result_cb cb, void *ctx, mz_err *err);
/* The same carrying a W3C trace context: trace is {traceparent, tracestate}
 * (borrowed; NULL or an invalid traceparent starts a new trace). It travels
 * with the call to the host and its handler (docs/PROTOCOL.md "execute"). */
mz_status mz_node_execute_traced(mz_node *node, const char *resource_id, const char *method,
                                 const json_t *params, const json_t *agreement,
                                 const json_t *trace, int64_t timeout_ms, mz_result_cb cb,
                                 void *ctx, mz_err *err);
/* Inside a result callback: the traceparent of that call (the host's span
 * when its answer carried one, else the caller's); NULL elsewhere. */
const char *mz_node_call_traceparent(const mz_node *node);

/* One call being served by a local handler. Reply exactly once. */
typedef struct mz_exec mz_exec;
/* Borrowed accessors, valid until the reply. */
const char *mz_exec_resource(const mz_exec *x);
const char *mz_exec_method(const mz_exec *x);
const json_t *mz_exec_params(const mz_exec *x);
const char *mz_exec_caller(const mz_exec *x);
int64_t mz_exec_deadline_ms(const mz_exec *x);
/* The call's W3C trace context as the handler should carry it on (the
 * host's span): traceparent is always set, tracestate may be NULL. */
const char *mz_exec_traceparent(const mz_exec *x);
const char *mz_exec_tracestate(const mz_exec *x);
/* Completes the call with a result (takes the reference) and frees x. */
void mz_exec_reply(mz_exec *x, json_t *result);
/* Completes the call with an error (code one of MZ_EXEC_*) and frees x. */
void mz_exec_fail(mz_exec *x, const char *code, const char *message);

/* A resource handler: reply through x now or later from the loop. */
typedef void (*mz_handler_fn)(mz_node *node, mz_exec *x, void *ctx);

/* Attaches a handler to a resource this node hosts (replacing any). methods
 * (NULL-terminated, may be NULL) lists the methods it accepts; others get
 * bad_request. The handler goes when the resource is unregistered. */
mz_status mz_node_set_handler(mz_node *node, const char *resource_id,
                              const char *const *methods, mz_handler_fn fn, void *ctx,
                              mz_err *err);

/* ---- HTTP on the API listener ------------------------------------------- */

/* Plain HTTP requests reaching the local API listener (the MCP endpoint uses
 * this). Same contract as mz_connmgr_opts.http_cb. NULL removes it. */
typedef int (*mz_http_fn)(void *wsi, int reason, void *user, void *in, size_t len,
                          void *ctx);
void mz_node_set_http_handler(mz_node *node, mz_http_fn fn, void *ctx);

/* ---- events (subscribe / publish) --------------------------------------- */

/* Subscriptions a node holds at once (its own and its API clients'). */
#define MZ_DEFAULT_MAX_SUBSCRIPTIONS 10000
#define MZ_TOPIC_MAX 128

/* An event: data is borrowed for the call; source is the node it came from. */
typedef void (*mz_event_cb)(mz_node *node, const char *topic, const json_t *data,
                            const char *source, void *ctx);

/* subscribe: pattern is a topic ("resource.added"), a prefix with a trailing
 * wildcard ("resource.*") or "*". *id (may be NULL) identifies it for
 * mz_node_unsubscribe. Built-in topics: resource.added, resource.updated,
 * resource.removed (data: the record), peer.connected, peer.disconnected
 * (data: {id, listen}). */
mz_status mz_node_subscribe(mz_node *node, const char *pattern, mz_event_cb cb, void *ctx,
                            uint64_t *id, mz_err *err);
/* Removes a subscription; MZ_ENOTFOUND if there is none with that id. */
mz_status mz_node_unsubscribe(mz_node *node, uint64_t id, mz_err *err);
/* publish: delivers (topic, data) to the subscribers of every node in the
 * mesh, this one included, once per node. data borrowed (NULL: null). */
mz_status mz_node_publish(mz_node *node, const char *topic, const json_t *data, mz_err *err);

#endif
