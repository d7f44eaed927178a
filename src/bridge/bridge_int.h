/* MeshBridge internals shared by bridge.c (import), bridge_mcp.c (MCP
 * framing, tool-name mapping, the export server), bridge_http.c (the
 * Streamable HTTP client used to import HTTP servers) and mcp_http.c (the
 * node's /mcp endpoint). */
#ifndef MZ_BRIDGE_INT_H
#define MZ_BRIDGE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "meshzero/bridge.h"

/* Version the bridge reports as its serverInfo / clientInfo. */
#define MZ_BRIDGE_SOFTWARE_VERSION "0.1.0"

/* JSON-RPC error codes. */
#define MZ_RPC_PARSE_ERROR    (-32700)
#define MZ_RPC_INVALID_REQ    (-32600)
#define MZ_RPC_NO_METHOD      (-32601)
#define MZ_RPC_INVALID_PARAMS (-32602)
#define MZ_RPC_INTERNAL       (-32603)
#define MZ_RPC_SERVER_ERROR   (-32000)
#define MZ_RPC_CANCELLED      (-32800)

/* Member of a mesh call error's data holding the JSON-RPC error an imported
 * MCP server answered ({code, message, data?}): the export answers it as is. */
#define MZ_MCP_ERROR_KEY "mcp_error"
/* Largest server JSON-RPC error carried whole (compact JSON bytes). */
#define MZ_BRIDGE_ERROR_MAX (64 * 1024)
/* The _meta key prefix reserved for meshzero's own keys on exported tools
 * (a tool's own keys under it are dropped). */
#define MZ_MCP_META_PREFIX "meshzero/"

/* Writes the lowercase hex SHA-256 of len bytes to out. */
void mz__sha256_hex(const void *data, size_t len, char out[65]);

/* Returns new JSON-RPC messages (NULL when out of memory). id is borrowed
 * (NULL: null); data (may be NULL) is taken. */
json_t *mz__rpc_error(const json_t *id, int code, const char *message, json_t *data);
json_t *mz__rpc_result(const json_t *id, json_t *result);   /* takes result */

/* ---- a stdio server's environment (bridge_env.c) -------------------------- */

#define MZ_BRIDGE_ENV_NAME_MAX  128
#define MZ_BRIDGE_ENV_VALUE_MAX 32768

/* MZ_EINVAL (naming the entry) unless spec's env and env_pass are valid. */
mz_status mz__bridge_env_check(const char *server, const mz_bridge_spec *spec, mz_err *err);
/* Returns new: the NULL-terminated "NAME=value" array to start the server
 * with (PATH, HOME, LANG, env_pass from this process, then env); NULL when
 * out of memory. Free with mz__bridge_env_free. */
char **mz__bridge_env_build(const mz_bridge_spec *spec);
void mz__bridge_env_free(char **env);

/* ---- list_changed coalescing (mcp_notify.c) ------------------------------ */

/* A burst of resource events is told once: after this long without another
 * event, and at most this long after its first. */
#define MZ_MCP_NOTIFY_QUIET_MS 100
#define MZ_MCP_NOTIFY_MAX_MS   1000

typedef struct mz_mcpnotify mz_mcpnotify;
/* fn(ctx) runs once per burst of pokes. NULL when out of memory. */
mz_mcpnotify *mz__mcpnotify_new(uv_loop_t *loop, void (*fn)(void *ctx), void *ctx);
/* One event of a burst. */
void mz__mcpnotify_poke(mz_mcpnotify *n);
/* Drops what is pending; frees once its timer closed. NULL-safe. */
void mz__mcpnotify_free(mz_mcpnotify *n);

/* ---- the node's /mcp endpoint (mcp_http.c) ------------------------------- */

typedef struct mz_mcphttp mz_mcphttp;
/* Installs the node's HTTP handler: MCP at /mcp when serve_mcp, and the
 * Origin check on API WebSocket upgrades. */
mz_status mz__mcphttp_new(mz_node *node, uv_loop_t *loop, bool serve_mcp, const char *views,
                          const char *data_dir, mz_mcphttp **out, mz_err *err);
/* The node's MCP views (svc/mcp_view.h), or NULL. */
struct mz_mcpviews *mz__mcphttp_views(const mz_mcphttp *h);
struct mz_mcpviews *mz__bridge_views(const mz_bridge *b);
/* Ends SSE streams and detaches the handler. */
void mz__mcphttp_stop(mz_mcphttp *h);
void mz__mcphttp_free(mz_mcphttp *h);

/* True when an Origin header value names this machine (http(s)://localhost,
 * 127.0.0.1, [::1], any port) or is absent (NULL/""): browsers on other
 * sites must not reach the loopback API (DNS rebinding). In svc/http.c. */
bool mz__origin_local(const char *origin);


/* ---- Streamable HTTP client (bridge_http.c) ------------------------------- */

typedef struct mz_httpc mz_httpc;
/* What came back for one POST or GET. status 0: no HTTP answer (connect
 * failed, reset, malformed), with why. */
typedef struct mz_httpc_events {
    /* Response headers arrived (status, content type, session id may be ""). */
    void (*on_head)(void *ctx, uint64_t req, int status, const char *content_type,
                    const char *session_id);
    /* One JSON-RPC message text from the body (a JSON body, or one SSE
     * event's data). */
    void (*on_message)(void *ctx, uint64_t req, const char *buf, size_t len);
    /* The exchange ended: status as on_head (0 if none came), why when failed. */
    void (*on_done)(void *ctx, uint64_t req, int status, const char *why);
} mz_httpc_events;

/* Parses http://HOST[:PORT][/PATH] (no TLS). */
mz_status mz__httpc_new(uv_loop_t *loop, const char *url, const mz_httpc_events *ev, void *ctx,
                        mz_httpc **out, mz_err *err);
/* Starts a request: POST when body != NULL (JSON), else GET (an SSE
 * stream). headers: extra "Name: value\r\n" lines (may be NULL). Returns
 * the request number reported to the events, 0 when it could not start. */
uint64_t mz__httpc_request(mz_httpc *c, const char *body, size_t len, const char *headers);
/* Aborts one request (no more events for it) or all (req 0). */
void mz__httpc_abort(mz_httpc *c, uint64_t req);
/* Requests in progress. */
size_t mz__httpc_active(const mz_httpc *c);
/* Aborts everything and closes handles; frees itself once they closed. */
void mz__httpc_free(mz_httpc *c);

/* ---- driving an import without its transport (fuzz/fuzz_mcp_import.c) ----
 * The server's side is played by the caller: nothing is spawned, resolved
 * or connected, and the bytes a server would send are handed in. Only for
 * harnesses and tests; the node never calls these. */

/* One request the client would send: body NULL for a GET (the SSE stream).
 * Called before mz__httpc_request returns; must not call back into c. */
typedef void (*mz_httpc_tap_fn)(void *ctx, uint64_t req, const char *body, size_t len);
/* Makes c send nothing: each request goes to fn instead. Call right after
 * mz__httpc_new. */
void mz__httpc_offline(mz_httpc *c, mz_httpc_tap_fn fn, void *ctx);
/* Response bytes of request req (any split; a no-op once it ended); eof:
 * the server then closes the connection. */
void mz__httpc_inject(mz_httpc *c, uint64_t req, const char *buf, size_t len, bool eof);

/* What the bridge sends to a tapped server: one JSON-RPC message (stdio:
 * req 0, len bytes without the newline) or one HTTP request (req its
 * number, buf NULL for the GET stream). Must not call back into the bridge. */
typedef void (*mz_bridge_tap_fn)(void *ctx, uint64_t req, const char *buf, size_t len);
/* Imports a server named name whose transport is the caller's: stdio
 * framing (answers through mz__bridge_tap_stdout) or, when http, Streamable
 * HTTP (answers through mz__bridge_tap_http). Otherwise as mz_bridge_add. */
mz_status mz__bridge_add_tap(mz_bridge *b, const char *name, bool http, mz_bridge_tap_fn fn,
                             void *ctx, mz_err *err);
/* Bytes the tapped server writes on its stdout (any split). */
void mz__bridge_tap_stdout(mz_bridge *b, const char *name, const char *buf, size_t len);
/* Bytes of the HTTP response to request req of the tapped server. */
void mz__bridge_tap_http(mz_bridge *b, const char *name, uint64_t req, const char *buf,
                         size_t len, bool eof);
/* Runs the bridge's periodic housekeeping once (deadlines, restarts, the
 * SSE stream), as its timer does every 50 ms. */
void mz__bridge_tick(mz_bridge *b);

#endif
