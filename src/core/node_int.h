/* MeshNode internals shared by the files of src/core/ (and the local API
 * above them): the node's state, grouped by the module that owns it, and
 * each module's internal functions under its file's name. The order in
 * which they may call each other: docs/ARCHITECTURE.md "Layers". */
#ifndef MZ_NODE_INT_H
#define MZ_NODE_INT_H

#include <uv.h>

#include "meshzero/connmgr.h"
#include "meshzero/directory.h"
#include "meshzero/msg.h"
#include "meshzero/node.h"
#include "wire/message.h"
#include "core/counters.h"
#include "core/obs.h"
#include "util/hmap.h"
#include "util/routes.h"
#include "util/seen.h"
#include "core/hooks.h"

/* Per peer link: the hello exchange and who is on the other side. */
typedef struct mz_peer {
    mz_link *link;              /* borrowed from the connmgr; NULL once closed */
    mz_node *node;
    struct mz_static *stat;     /* the static peer entry this link serves, or NULL */
    char challenge[65];         /* ours, which the peer must sign back */
    char peer_id[MZ_ID_HEX_LEN + 1];
    char listen[256];           /* the peer's own listen URL from its hello */
    bool got_hello;             /* peer_id is set */
    bool sent_welcome;
    bool up;                    /* both sides proved their keys */
    bool offers_v2;             /* its hello offered wire v2 */
    bool v2;                    /* the link speaks wire v2 frames (both offered it) */
    int64_t since_ms;           /* link opened */
    int64_t hello_deadline_ms;
    double tokens;              /* rate limit bucket */
    int64_t refill_ms;          /* last refill */
    bool paused;                /* reading paused by the rate limit */
    int64_t throttle_window_ms; /* start of the 10 s window of throttles */
    int throttles;              /* throttles in that window */
    struct mz_peer *next;
} mz_peer;

/* A URL the node keeps a link to, re-dialed with backoff. */
typedef struct mz_static {
    char url[256];
    mz_peer *peer;              /* current link attempt or link, NULL when none */
    int64_t next_dial_ms;
    int64_t backoff_ms;
    char known_id[MZ_ID_HEX_LEN + 1]; /* node id last seen at this URL, "" if none */
    bool persistent;            /* re-dial even if it never came up (--peer) */
    bool ever_up;               /* came up once: re-dial when lost */
    char refusal[200];          /* why this node refused the peer, "" if it did not */
    mz_connect_cb cb;           /* pending connect_to_peer callback, fired once */
    void *cb_ctx;
    struct mz_static *next;
} mz_static;

/* What the node knows of another node: its listen URL and lease. */
typedef struct mz_nodeinfo {
    char listen[256];
    int64_t lease_until_ms;     /* its records go when this passes */
    int64_t last_fetch_ms;      /* last time we asked it for its records (sync.c) */
    int64_t last_auto_dial_ms;  /* last time the link policy dialed it */
    int64_t last_heard_ms;      /* its last alive (or link up) */
} mz_nodeinfo;

typedef struct mz_exec_state mz_exec_state; /* exec.c's, opaque elsewhere */
typedef struct mz_sync_state mz_sync_state; /* sync.c's, opaque elsewhere */

/* Generated from the list in counters.h. */
typedef struct mz_counters {
#define MZ_X(field, name, family, help) uint64_t field;
    MZ_NODE_COUNTERS(MZ_X)
#undef MZ_X
} mz_counters;

/* events.c's state: subscriptions. */
typedef struct mz_events_state {
    struct mz_sub *subs;
    size_t n_subs;
    uint64_t next_sub_id;
    int delivering;             /* > 0 while events are being delivered */
} mz_events_state;

/* persist.c's state: the store and the writes queued for its next batch. */
typedef struct mz_persist_state {
    struct mz_store *store;     /* NULL without a data dir */
    mz_hmap *pending_writes;
    int64_t next_flush_ms;
    int lock_fd;                /* flock on DATA/lock, or <= 0 */
} mz_persist_state;

struct mz_node {
    uv_loop_t *loop;            /* borrowed */
    mz_node_opts o;             /* copy; string pointers not kept */
    mz_identity *ident;
    mz_directory *dir;
    mz_connmgr *cm;
    mz_seen *seen;
    mz_routes *routes;
    mz_hmap *nodes;             /* node id -> mz_nodeinfo* (owned) */
    mz_peer *peers;             /* every peer link, up or not */
    mz_static *statics;
    const struct mz__link_service *api_svc; /* serves the API listener's links, or NULL */
    void *api_ctx;
    struct mz_bridge *bridge;   /* registered by the MCP bridge (mz_bridge_of_node) */
    mz_exec_state *ex;   /* exec.c: calls, handlers, kept answers */
    mz_hmap *tombs;             /* resource id -> remembered removal (node.c) */
    mz_events_state ev;         /* events.c */
    mz_http_fn http_fn;         /* HTTP requests on the API listener, or NULL */
    mz_seen *replay;            /* ids of messages handled for us, within the window */
    struct mz_agreements *agreements; /* usage counters of agreements (SQLite) */
    mz_sync_state *sy;   /* sync.c: complete syncs in progress, paced replies */
    mz_persist_state ps;        /* persist.c */
    char fatal[300];            /* why the node stopped itself, or "" */
    void (*stop)(mz_node *node); /* mz_node_stop, for the modules below node.c */
    bool refuse_forward;        /* set by a broadcast handler that refused the content */
    char api_token[65];         /* required by a non-loopback API listener, or "" */
    mz_hmap *keys;              /* node id -> 32-byte shared sealing key (cache) */
    unsigned char xsk[32];      /* our X25519 secret, from the identity */
    mz_hmap *trust;             /* allowlisted node ids (value unused); NULL: open */
    char *trust_file;           /* owned copy of the path */
    unsigned char netkey[32];   /* shared mesh secret, hashed */
    bool has_netkey;
    void *http_ctx;
    uv_timer_t tick;            /* 250 ms housekeeping: leases, hello timeouts, redials */
    uv_signal_t *unused;
    int64_t next_alive_ms;
    int64_t next_policy_ms;     /* next link-policy check */
    int64_t started_ms;
    bool stopping;
    bool tick_closed;
    struct mz_guard *guard;     /* per-asker request budgets (evidence.c), made on first use */
    const struct mz__type *types; /* the message types handled (node.c fills it) */
    size_t n_types;
    mz_counters c;
    mz_obs obs;                 /* figures beyond the counters (obs.c) */
};

/* handler.c: inbound dispatch. */
/* Policy flags of a message type. */
enum {
    MZ_T_PREAUTH = 1,   /* accepted before the hello exchange completed */
    MZ_T_LINK = 2,      /* for the neighbour only, never forwarded */
    MZ_T_BROADCAST = 4, /* recipient "*": flooded to every node once */
    MZ_T_UNICAST = 8,   /* recipient a node id: routed hop by hop */
};
typedef void (*mz__type_fn)(mz_node *node, mz_peer *p, const mz_msg *msg);
typedef struct mz__type {
    const char *name;
    mz__type_fn fn;
    unsigned flags;
} mz__type;
void mz__handle_message(mz_node *node, mz_peer *p, const char *buf, size_t len);
/* The same for a binary message: a wire v2 frame (PROTOCOL.md section 10). */
void mz__handle_frame(mz_node *node, mz_peer *p, const uint8_t *buf, size_t len);

/* send.c: outbound. Signs msg (takes it) and sends it to one link. */
mz_status mz__send_link(mz_node *node, mz_peer *p, mz_msg *msg);
/* Signs msg (takes it) and routes it: broadcast to all up peers except
 * `except` when recipient is "*", else to the next hop. */
mz_status mz__send(mz_node *node, mz_msg *msg, mz_peer *except, mz_err *err);
/* Sends an error message naming ref (may be "") to the link's peer. */
void mz__send_error_link(mz_node *node, mz_peer *p, const char *ref, const char *code,
                         const char *reason);
/* Reports a problem with a unicast message back to its origin. */
void mz__send_error_to(mz_node *node, const char *to, const char *ref, const char *code,
                       const char *reason);
/* Logs a refused message, answers it with an error, closes the link if close. */
void mz__reject(mz_node *node, mz_peer *p, const char *id, const char *code,
                const char *reason, bool close);
/* Relays msg (hops + 1, not re-signed) to to_one, or floods it but to from. */
void mz__forward(mz_node *node, mz_peer *from, mz_msg *msg, mz_peer *to_one);
/* The up peer that is the next hop towards dest, or NULL. */
mz_peer *mz__next_hop(mz_node *node, const char *dest);
mz_peer *mz__peer_by_id(mz_node *node, const char *id);
/* Shared sealing key with node id (cached); NULL if id is not a valid key. */
const unsigned char *mz__shared_key(mz_node *node, const char *id);
/* Remembers that node id speaks wire v2 (a frame from it verified or
 * opened, or its link negotiated v2): unicasts to it may travel as frames. */
void mz__node_speaks_v2(mz_node *node, const char *id);
/* Relays a frame (buf, len as received; borrowed) with hops + 1 to to_one,
 * or floods it to every peer but from (msg: the frame's message, which a
 * peer without wire v2 gets as an envelope). */
void mz__forward_frame(mz_node *node, mz_peer *from, const uint8_t *buf, size_t len,
                       mz_msg *msg, mz_peer *to_one);

/* node.c */
/* Charges one message to p's rate bucket; pauses or closes a flooding link.
 * True when the link is being closed (drop the message). */
bool mz__rate_take(mz_node *node, mz_peer *p);
size_t mz__max_subs_per_client(mz_node *node);
/* The node's agreement store, opened with its data directory (in memory
 * without one). Borrowed; valid until mz_node_free. */
struct mz_agreements *mz__node_agreements(mz_node *node);
void mz__count_subs_refused(mz_node *node);
void mz__rate_resume(mz_node *node, int64_t now);
bool mz__trusted(mz_node *node, const char *id);
void mz__peer_up(mz_node *node, mz_peer *p);
/* records.c */
void mz__node_touch(mz_node *node, const char *id, const char *listen, int64_t lease_ms);
/* Forgets a node: its records, route and lease. */
void mz__forget_node(mz_node *node, const char *id, const char *why);
void mz__expire_leases(mz_node *node, int64_t now);
mz_status mz__restore_local_record(mz_node *node, const json_t *rec, mz_err *err);
void mz__tomb_restore(mz_node *node, const char *rid, const char *owner_key, int64_t version,
                      int64_t until_ms);
void mz__records_on_announce(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__records_on_bye(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__records_on_query(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__records_on_query_result(mz_node *node, mz_peer *p, const mz_msg *msg);
/* Record signatures: domain and unsigned keys. */
#define MZ_RECORD_SIG_DOMAIN "meshzero/1 record"
extern const char *const mz__record_unsigned_keys[];
#define MZ_TOMB_SIG_DOMAIN "meshzero/1 tombstone"
extern const char *const mz__tomb_unsigned_keys[];
/* Verifies and applies a signed removal; from_node: the announcing node. */
mz_status mz__apply_tombstone(mz_node *node, const json_t *tomb, const char *from_node,
                              mz_err *err);
void mz__tombs_expire(mz_node *node, int64_t now);
/* Validates rec and its signature by rec.node; stores it as remote. */
mz_status mz__accept_remote_record(mz_node *node, const json_t *rec, mz_err *err);

/* exec.c */
/* Makes exec.c's state (node->ex); MZ_ENOMEM. Freed by mz__exec_free_all. */
mz_status mz__exec_init(mz_node *node, mz_err *err);
/* Calls our handlers are running now. */
size_t mz__exec_running(const mz_node *node);
/* Answers of finished calls kept for retries. */
size_t mz__exec_kept(const mz_node *node);
/* Calls of ours waiting for their answer. */
size_t mz__exec_pending(const mz_node *node);
void mz__exec_on_request(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__exec_on_result(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__exec_on_error_msg(mz_node *node, mz_peer *p, const mz_msg *msg);
bool mz__exec_on_error(mz_node *node, const char *from, const char *ref, const char *code,
                       const char *reason);
void mz__exec_relayed(mz_node *node, const mz_msg *msg, uint64_t out_link);
/* The same from the routing fields alone (a relayed frame: pl NULL, its
 * body is sealed). */
void mz__exec_relayed_ids(mz_node *node, const char *type, const char *id, const char *sender,
                          const char *recipient, const json_t *pl, uint64_t out_link);
void mz__exec_link_down(mz_node *node, uint64_t link, const char *peer_id);
void mz__exec_node_gone(mz_node *node, const char *host);
void mz__exec_sweep(mz_node *node, int64_t now);
void mz__exec_drop_handler(mz_node *node, const char *resource_id);
void mz__exec_fail_pending(mz_node *node);
void mz__exec_free_all(mz_node *node);

/* events.c */
bool mz_topic_valid(const char *topic);
bool mz_topic_pattern_valid(const char *pattern);
bool mz_topic_reserved(const char *topic);
bool mz_topic_match(const char *pattern, const char *topic);
void mz__emit(mz_node *node, const char *topic, const json_t *data, const char *source);
void mz__emit_record(mz_node *node, const char *topic, const mz_record *rec);
void mz__events_on_message(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__events_free(mz_node *node);

/* persist.c */
mz_status mz__persist_open(mz_node *node, const char *data_dir, mz_err *err);
/* Empties the write queue (what the restore put back needs no writing). */
mz_status mz__persist_drop_queued(mz_node *node, mz_err *err);
void mz__persist_close(mz_node *node);
void mz__persist_flush(mz_node *node);
mz_status mz__persist_local_put(mz_node *node, const json_t *rec, mz_err *err);
mz_status mz__persist_local_delete(mz_node *node, const char *rid, const char *owner_key,
                                   int64_t version, int64_t until_ms, mz_err *err);
void mz__persist_remote_put(mz_node *node, const json_t *rec);
/* Drops a local record from the store (kept in memory): handler-bound ones. */
mz_status mz__persist_forget_local(mz_node *node, const char *rid, mz_err *err);
void mz__persist_remote_delete(mz_node *node, const char *rid);
void mz__persist_node_gone(mz_node *node, const char *id);
void mz__persist_tombstone(mz_node *node, const char *rid, const char *owner_key,
                           int64_t version, int64_t until_ms);
void mz__persist_peer(mz_node *node, const char *url, const char *id, bool is_static);

/* sync.c */
/* Makes sync.c's state (node->sy); MZ_ENOMEM. Freed by mz__sync_free. */
mz_status mz__sync_init(mz_node *node, mz_err *err);
void mz__sync_link_up(mz_node *node, mz_peer *p);
void mz__sync_on_digest(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__sync_on_fetch(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__sync_on_sync(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__sync_on_alive(mz_node *node, mz_peer *p, const mz_msg *msg);
void mz__sync_on_alive_digest(mz_node *node, const char *from, const json_t *digest);
json_t *mz__sync_own_digest(mz_node *node);
void mz__sync_free(mz_node *node);
/* Sends more of the sync replies in progress (each tick). */
void mz__sync_pump(mz_node *node);

/* evidence.c: routes from evidence, host binding, per-asker budgets */
/* Takes one fetch from asker's budget; false (counted): refuse the fetch. */
bool mz__guard_fetch(mz_node *node, const char *asker);
/* Takes bytes from asker's reply budget; false (counted): send later. */
bool mz__guard_reply(mz_node *node, const char *asker, size_t bytes);
void mz__guard_free(mz_node *node);
/* Fits a query result (taken) in one message and charges it to asker's
 * budget; false: refused, res freed and the asker told `busy`. */
bool mz__guard_query(mz_node *node, const char *asker, const char *ref, json_t *res);
/* A duplicate broadcast that arrived on p: a possible second path. */
void mz__evidence_duplicate(mz_node *node, mz_peer *p, const mz_msg *msg);
/* The next hop towards dest for a message that came from `from`: never
 * back on from's link (split horizon). NULL: no such route. */
mz_peer *mz__next_hop_except(mz_node *node, const char *dest, const mz_peer *from);
/* A call to host that left on link went unanswered. */
void mz__evidence_silent(mz_node *node, const char *host, uint64_t link);
/* True when rec, received from node `from`, is bound to its host: it came
 * from the host or the host's key signed it (PROTOCOL.md §7). */
bool mz__record_bound(const json_t *rec, const char *from);
/* mz__record_bound, or rec names us; false is counted (unbound_records). */
bool mz__evidence_record(mz_node *node, const json_t *rec, const char *from);

#endif
