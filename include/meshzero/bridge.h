/* MeshBridge: connects the mesh with the Model Context Protocol (MCP).
 *
 * Import (mesh <- MCP server): an MCP server reached over stdio (a child
 * process, no shell) or Streamable HTTP is initialised, its tools are listed
 * and each becomes a local resource of type "tool" with id NAME/<tool>;
 * execute_remote(id, "call", arguments) runs tools/call and returns the MCP
 * result unchanged. A server that exits or stops answering is restarted with
 * backoff and its resources are withdrawn meanwhile.
 *
 * Export (MCP client -> mesh): mz_mcpsrv is a transport-free MCP server whose
 * tools are the mesh's resources (tools/list from a directory query,
 * tools/call through execute_remote). `meshzero mcp` runs it on stdio over a
 * node's local API; the node runs it on its API listener at /mcp
 * (Streamable HTTP).
 *
 * docs/MCP.md describes the mapping and the limits. Loop-thread only. */
#ifndef MESHZERO_BRIDGE_H
#define MESHZERO_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes jansson: tool listings and MCP messages are JSON values (json_t) handed over as they are. */
#include <jansson.h>
/* Exposes libuv: the bridge runs child processes and timers on the embedder's loop (uv_loop_t). */
#include <uv.h>

#include "meshzero/err.h"
#include "meshzero/node.h"

/* MCP revisions spoken, oldest first; the last is the one offered when a
 * client asks for one we do not know. */
#define MZ_MCP_VERSIONS { "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25" }
#define MZ_MCP_LATEST   "2025-11-25"
/* Longest bridge name (NAME in NAME=CMD; "mcp:NAME" is a capability, at
 * most 64 characters); characters A-Z a-z 0-9 _ . - */
#define MZ_BRIDGE_NAME_MAX 60
/* Longest MCP tool name the export side presents (characters A-Z a-z 0-9 _ -). */
#define MZ_MCP_TOOL_NAME_MAX 64
/* First and largest delay before an exited MCP server is started again. */
#define MZ_BRIDGE_BACKOFF_MIN_MS 250
#define MZ_BRIDGE_BACKOFF_MAX_MS 30000
/* A server that stayed up this long starts the next backoff from the minimum. */
#define MZ_BRIDGE_STABLE_MS 10000
/* How long a server has to answer initialize and tools/list. */
#define MZ_BRIDGE_INIT_TIMEOUT_MS 20000
/* Longest line (stdio) or body (HTTP) accepted from an MCP server. Longer
 * means the server is broken: it is restarted. */
#define MZ_BRIDGE_MAX_MESSAGE (16u * 1024 * 1024)
/* Bytes queued to one server's stdin before calls are refused with busy. */
#define MZ_BRIDGE_MAX_QUEUE (16u * 1024 * 1024)
/* Tools imported from one server at most (more are logged and skipped). */
#define MZ_BRIDGE_MAX_TOOLS 1024
/* Tags (extra capabilities) per imported server. */
#define MZ_BRIDGE_MAX_TAGS 16
/* Entries of a server's env and of its env_pass (mz_bridge_spec). */
#define MZ_BRIDGE_MAX_ENV 64
/* Servers one bridge imports at most. */
#define MZ_BRIDGE_MAX_SERVERS 64

/* ---- tool-name mapping (export) ------------------------------------------ */

/* Maps resource records (borrowed JSON array) to MCP tool names, valid for
 * every MCP client: 1-64 characters of A-Z a-z 0-9 _ -. The name is the
 * resource id with every other character replaced by '_'; when that is
 * longer than 64 characters, or two records of the set give the same name,
 * each of them gets instead the first 55 characters and "_" plus the first
 * 8 hex digits of SHA-256(resource id) (47 + "_" + 16 hex when even that
 * collides). The result depends only on the set of records, not on their
 * order, so any two calls over the same directory agree: tools/call needs
 * no state from an earlier tools/list. Returns new: an array of
 * {"name", "resource_id", "record"} sorted by name; NULL when out of
 * memory. Records without a string resource_id are skipped. */
json_t *mz_mcp_map_tools(const json_t *records);

/* The protocol version to answer an initialize asking for `requested`
 * (may be NULL): requested itself when supported, else MZ_MCP_LATEST. */
const char *mz_mcp_negotiate(const char *requested);
/* True if v is one of MZ_MCP_VERSIONS. */
bool mz_mcp_version_supported(const char *v);

/* ---- the export server ---------------------------------------------------- */

typedef struct mz_mcpsrv mz_mcpsrv;
/* One request in progress, waiting on its backend. */
typedef struct mz_mcpsrv_req mz_mcpsrv_req;

/* How the server reaches the mesh. Each query or execute must be completed
 * exactly once with mz_mcpsrv_query_done / mz_mcpsrv_exec_done, now or
 * later from the loop, even after mz_mcpsrv_free. */
typedef struct mz_mcpsrv_ops {
    /* params (borrowed): {resource_type?, capabilities?} as for the API's
     * query_resources. */
    void (*query)(void *ctx, const json_t *params, mz_mcpsrv_req *req);
    /* params borrowed; timeout_ms > 0. */
    void (*execute)(void *ctx, const char *resource_id, const char *method,
                    const json_t *params, int64_t timeout_ms, mz_mcpsrv_req *req);
    /* Delivers one message (takes msg) to the client connection conn. */
    void (*send)(void *ctx, uint64_t conn, json_t *msg);
} mz_mcpsrv_ops;

typedef struct mz_mcpsrv_opts {
    const char *resource_type;          /* NULL: "tool"; "*": every type */
    const char *const *capabilities;    /* resources must have all of these */
    size_t n_capabilities;
    int64_t timeout_ms;                 /* per tools/call; 0: MZ_DEFAULT_EXEC_TIMEOUT_MS */
    bool reply_cancelled;               /* answer a cancelled request with error -32800
                                           (HTTP, where each POST awaits an answer) instead
                                           of staying silent (stdio) */
    int64_t cache_ms;                   /* > 0: reuse a directory answer this long, until
                                           mz_mcpsrv_invalidate (call it on resource.*
                                           events); 0: query for every request */
    mz_mcpsrv_ops ops;
    void *ctx;                          /* passed to every op */
} mz_mcpsrv_opts;

/* Returns new; everything in opts is copied. */
mz_status mz_mcpsrv_new(const mz_mcpsrv_opts *opts, mz_mcpsrv **out, mz_err *err);
/* Frees the server. Requests still waiting on their backend are orphaned:
 * their completion then only frees them. NULL-safe. */
void mz_mcpsrv_free(mz_mcpsrv *s);

/* What mz_mcpsrv_handle did with a message. */
typedef enum {
    MZ_MCP_NO_REPLY = 0,    /* notification or response: nothing will be sent */
    MZ_MCP_REPLIED,         /* the answer was sent before returning */
    MZ_MCP_PENDING          /* the answer will be sent later (or never, if cancelled
                               on stdio) */
} mz_mcp_outcome;

/* Handles one JSON-RPC message text from connection conn (any number the
 * transport chooses). Malformed input is answered with a JSON-RPC error and
 * never fails the server. */
mz_mcp_outcome mz_mcpsrv_handle(mz_mcpsrv *s, uint64_t conn, const char *buf, size_t len);
/* Forgets requests of a connection that closed: their answers are dropped. */
void mz_mcpsrv_conn_closed(mz_mcpsrv *s, uint64_t conn);

/* Backend completions. records: borrowed array (NULL on failure, with why). */
void mz_mcpsrv_query_done(mz_mcpsrv_req *req, const json_t *records, const char *why);
/* result borrowed, or the failure's code (MZ_EXEC_*) and message. */
void mz_mcpsrv_exec_done(mz_mcpsrv_req *req, const json_t *result, const char *code,
                         const char *message);
/* A tools/call's params._meta (borrowed; NULL if none): where MCP carries
 * the caller's trace context (traceparent, tracestate). */
const json_t *mz_mcpsrv_req_meta(const mz_mcpsrv_req *req);
/* A tools/call's required tool_hash (the view's pin, borrowed), or NULL:
 * the backend refuses the call with definition_changed when the resource's
 * record has another one. */
const char *mz_mcpsrv_req_tool_hash(const mz_mcpsrv_req *req);
/* The traceparent to echo in the call's result _meta (before exec_done). */
void mz_mcpsrv_req_trace(mz_mcpsrv_req *req, const char *traceparent);
/* The failed call's error data (borrowed, copied; before exec_done): when it
 * holds an imported MCP server's JSON-RPC error, that error is answered. */
void mz_mcpsrv_req_error_data(mz_mcpsrv_req *req, const json_t *data);

/* Forgets the cached directory answer (a resource came, changed or went). */
void mz_mcpsrv_invalidate(mz_mcpsrv *s);
/* True when a record (borrowed) passes the server's filter: a change to it
 * changes the tool list. */
bool mz_mcpsrv_record_matches(const mz_mcpsrv *s, const json_t *record);
/* Returns new: the notifications/tools/list_changed message. */
json_t *mz_mcp_list_changed_msg(void);

/* ---- the bridge (import, and the node's /mcp endpoint) -------------------- */

typedef struct mz_bridge mz_bridge;

typedef struct mz_bridge_opts {
    uv_loop_t *loop;            /* borrowed; the node's loop */
    mz_node *node;              /* borrowed; outlives the bridge */
    bool http_endpoint;         /* serve MCP at /mcp on the node's API listener */
    const char *views;          /* "mcp-views" JSON text: named views served at
                                   /mcp/<view> (docs/MCP.md "Views"); NULL: none */
    const char *data_dir;       /* where view pins are kept; NULL: in memory */
} mz_bridge_opts;

/* One MCP server to import. Everything is copied. */
typedef struct mz_bridge_spec {
    const char *name;                   /* 1-60 of A-Z a-z 0-9 _ . - ; resource ids NAME/<tool> */
    const char *const *argv;            /* stdio: program (PATH searched) and arguments,
                                           NULL-terminated; NULL when url is set */
    const char *url;                    /* Streamable HTTP: http://HOST:PORT/PATH */
    const char *const *tags;            /* extra capabilities of every tool */
    size_t n_tags;
    /* stdio: the server's environment is PATH, HOME and LANG (from this
     * process), the variables env_pass names (from this process, when
     * set), then env ("NAME=value"); at most MZ_BRIDGE_MAX_ENV of each. */
    const char *const *env;
    size_t n_env;
    const char *const *env_pass;
    size_t n_env_pass;
} mz_bridge_spec;

/* Creates the bridge on the node; with http_endpoint the node's API listener
 * answers MCP at /mcp. Returns new: mz_bridge_stop, let the loop finish,
 * then mz_bridge_free. */
mz_status mz_bridge_new(const mz_bridge_opts *opts, mz_bridge **out, mz_err *err);
/* Starts importing a server (spawned now; tools registered once it
 * answered initialize and tools/list). MZ_EEXIST for a name already in use,
 * MZ_EINVAL for a bad name, command or URL, MZ_ELIMIT past
 * MZ_BRIDGE_MAX_SERVERS. */
mz_status mz_bridge_add(mz_bridge *b, const mz_bridge_spec *spec, mz_err *err);
/* Stops importing a server: its resources are withdrawn and its process ends. */
mz_status mz_bridge_remove(mz_bridge *b, const char *name, mz_err *err);
/* Returns new: [{"name","transport","target","state","tools":[ids],"restarts",
 * "last_error","server"?}] where state is starting, ready, degraded or failed. */
json_t *mz_bridge_list(mz_bridge *b);
/* Returns new: {"NAME": {"state","tools":N,"last_error"}} of every server
 * (the node's status carries it as "bridge"). */
json_t *mz_bridge_states(mz_bridge *b);
/* Parses "NAME=CMD ARGS..." (split on blanks, no shell; quotes ' and " group
 * words) or "NAME=http://..." into spec, whose strings point into *store
 * (returns new, the caller frees it with free()). */
mz_status mz_bridge_parse_arg(const char *arg, mz_bridge_spec *spec, char **store,
                              mz_err *err);
/* Withdraws every resource, fails calls in progress, ends the processes
 * (SIGTERM, SIGKILL after 2 s) and closes the bridge's handles. Call before
 * mz_node_stop; the loop ends once the processes are gone. Safe twice. */
void mz_bridge_stop(mz_bridge *b);
/* Frees a stopped bridge (runs the loop until its handles closed). NULL-safe. */
void mz_bridge_free(mz_bridge *b);

/* The bridge of a node (the one created on it with mz_bridge_new), or NULL.
 * The local API's bridge_* methods use it. */
mz_bridge *mz_bridge_of_node(const mz_node *node);
/* The local API's bridge_add: params {name, command: [program, args...]} or
 * {name, url}, tags? (array of strings). *result (new) is that server's
 * entry of mz_bridge_list. b may be NULL (MZ_ESTATE: no bridge). */
mz_status mz_bridge_api_add(mz_bridge *b, const json_t *params, json_t **result, mz_err *err);

#endif
