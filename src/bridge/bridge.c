/* MeshBridge, import side: MCP servers whose tools become mesh resources.
 *
 * Each imported server (mz_bsrv) is an MCP client session: over stdio (a
 * child process spawned with libuv, no shell, newline-delimited JSON-RPC)
 * or Streamable HTTP (bridge_http.c). It runs initialize, lists the tools
 * (every page), registers one resource per tool and serves their calls by
 * sending tools/call. notifications/tools/list_changed lists again. A server
 * that exits, breaks the protocol or stops answering is withdrawn (its
 * resources unregistered, its calls failed) and started again with backoff.
 * One repeating timer (the tick) handles deadlines, restarts and kills.
 * docs/MCP.md. */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_int.h"
#include "core/hooks.h"
#include "util/spawn.h"
#include "util/hmap.h"
#include "util/log.h"
#include "meshzero/msg.h"

/* Period of the bridge's housekeeping timer. */
#define MZ_BRIDGE_TICK_MS 50
/* Grace between SIGTERM and SIGKILL for a server being stopped. */
#define MZ_BRIDGE_KILL_MS 2000
/* Metadata bytes kept free for the last_updated the node adds. */
#define MZ_META_HEADROOM 64

typedef enum { MZ_BS_STARTING, MZ_BS_UP, MZ_BS_BACKOFF, MZ_BS_STOPPED } mz_bstate;

typedef enum { MZ_BC_INIT, MZ_BC_LIST, MZ_BC_CALL } mz_bcall_kind;

/* A request the bridge sent to an MCP server and awaits. */
typedef struct mz_bcall {
    mz_bcall_kind kind;
    json_int_t id;              /* JSON-RPC id (the map key is its decimal text) */
    mz_exec *x;                 /* MZ_BC_CALL: the mesh call to answer */
    int64_t deadline_ms;        /* wall clock */
    uint64_t http_req;          /* HTTP: the POST that carries it */
} mz_bcall;

/* A tool registered as a resource. */
typedef struct mz_btool {
    char *tool;                 /* the MCP tool name */
    char hash[65];              /* tool_hash: re-register only when it changed */
} mz_btool;

typedef struct mz_bsrv {
    mz_bridge *b;
    char name[MZ_BRIDGE_NAME_MAX + 1];
    char **argv;                /* stdio: NULL-terminated copy; NULL for HTTP */
    char **env;                 /* stdio: its environment (mz__bridge_env_build) */
    char *url;                  /* HTTP: the endpoint */
    char **tags;
    size_t n_tags;
    mz_bstate state;
    bool removed;               /* mz_bridge_remove / stop: never restart */
    bool until_up;              /* added at run time: not retried before it was once up */
    bool was_up;
    char last_error[256];
    unsigned restarts;
    int64_t backoff_ms;
    int64_t next_start_ms;      /* BACKOFF: start again at (wall clock) */
    int64_t up_since_ms;        /* when the last start succeeded */
    int64_t init_deadline_ms;   /* STARTING: initialize + tools/list must be done by */
    /* stdio */
    uv_process_t proc;
    uv_pipe_t pin, pout, perr;
    int open_handles;           /* of proc and the pipes, not yet closed */
    bool running;               /* spawned, exit not yet reported */
    bool pin_closed;
    int pid;
    int64_t kill_at_ms;         /* SIGKILL then, if still running; 0: none */
    int64_t eof_at_ms;          /* its stdout ended then (0: open) */
    char *line;                 /* stdout line being assembled */
    size_t line_len, line_cap;
    char errline[400];          /* stderr line being assembled (cut) */
    size_t errlen;
    /* Streamable HTTP */
    mz_httpc *http;
    char session[256];          /* Mcp-Session-Id, "" when none */
    uint64_t sse_req;           /* the GET stream, 0 when none */
    bool sse_unsupported;       /* the server answered 405 */
    int64_t sse_retry_ms;       /* reopen the GET stream then; 0: not scheduled */
    /* the MCP session */
    json_int_t next_id;
    mz_hmap *calls;             /* id text -> mz_bcall */
    char proto[16];             /* negotiated protocol version */
    json_t *server_info;        /* {name, version} */
    json_t *listing;            /* tools gathered from tools/list pages */
    bool listing_now;           /* a tools/list is in progress */
    bool relist;                /* list_changed arrived meanwhile */
    mz_hmap *tools;             /* resource id -> mz_btool */
    json_t *skipped;            /* [{tool, reason}] of the last listing */
    json_t *skipped_before;     /* while a listing is applied: the one before */
    size_t changed;             /* while a listing is applied: tools added/updated/gone */
    mz_bridge_tap_fn tap;       /* mz__bridge_add_tap: the caller is the transport */
    void *tap_ctx;
    json_t *served;             /* outcome -> calls served (bridge_list, /metrics) */
    struct mz_bsrv *next;
} mz_bsrv;

struct mz_bsrv;
static const char *s_state_name(const struct mz_bsrv *s);

/* Every state change is logged at the default level, with why. */
static void s_set_state(mz_bsrv *s, mz_bstate st)
{
    json_t *f;

    if (s->state == st && st != MZ_BS_STARTING)
        return;
    s->state = st;
    f = json_pack("{s:s,s:s,s:s}", "server", s->name, "state", s_state_name(s), "reason",
                  st == MZ_BS_UP ? "" : s->last_error);
    mz_log_event(MZ_LOG_INFO, "bridge", "bridge.state", f);
    json_decref(f);
}

/* The state as reported (docs/MCP.md "Server states"): starting (not yet
 * listed), ready, degraded (down after a failure: being restarted, its tools
 * withdrawn), failed (given up: not retried); stopped only while being
 * removed or shut down. */
static const char *s_state_name(const mz_bsrv *s)
{
    switch (s->state) {
    case MZ_BS_STARTING: return s->restarts > 0 || s->last_error[0] ? "degraded" : "starting";
    case MZ_BS_UP: return "ready";
    case MZ_BS_BACKOFF: return "degraded";
    case MZ_BS_STOPPED: return s->removed ? "stopped" : "failed";
    }
    return "failed";
}

static void s_count_call(mz_bsrv *s, const char *outcome)
{
    if (s->served == NULL && (s->served = json_object()) == NULL)
        return;
    json_object_set_new(s->served, outcome,
                        json_integer(json_integer_value(json_object_get(s->served, outcome)) + 1));
}

static void s_call_ok(mz_bsrv *s, mz_exec *x, json_t *result)
{
    s_count_call(s, "ok");
    mz_exec_reply(x, result);
}

static void s_call_fail(mz_bsrv *s, mz_exec *x, const char *code, const char *why)
{
    s_count_call(s, code);
    mz_exec_fail(x, code, why);
}

struct mz_bridge {
    uv_loop_t *loop;            /* borrowed */
    mz_node *node;              /* borrowed */
    mz_bsrv *servers;           /* imported */
    mz_bsrv *dying;             /* removed, waiting for their handles to close */
    size_t n_servers;
    uv_timer_t tick;
    bool tick_closed;
    mz_mcphttp *http;           /* the node's HTTP handler */
    bool stopping;
    bool adding_until_up;       /* mz_bridge_api_add in progress (mz_bsrv.until_up) */
};

static void s_start(mz_bsrv *s);
static void s_fail(mz_bsrv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_on_rpc(mz_bsrv *s, const char *buf, size_t len);

/* ---- names ----------------------------------------------------------------- */

static bool s_bridge_name_ok(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > MZ_BRIDGE_NAME_MAX)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

/* The resource id of a tool: NAME/<tool> with characters a record id cannot
 * hold (outside 0x21-0x7e) replaced by '_'; when that is over 128 bytes, cut
 * and ended with "~" and 8 hex digits of SHA-256(tool name). */
static void s_tool_rid(const char *bname, const char *tool, char out[MZ_RESOURCE_ID_MAX + 1])
{
    size_t n = (size_t)snprintf(out, MZ_RESOURCE_ID_MAX + 1, "%s/", bname);
    size_t tl = strlen(tool);

    for (size_t i = 0; i < tl && n < MZ_RESOURCE_ID_MAX; i++) {
        unsigned char c = (unsigned char)tool[i];
        out[n++] = (c >= 0x21 && c <= 0x7e) ? (char)c : '_';
    }
    out[n] = '\0';
    if (strlen(bname) + 1 + tl > MZ_RESOURCE_ID_MAX) {
        char h[65];
        mz__sha256_hex(tool, tl, h);
        snprintf(out + MZ_RESOURCE_ID_MAX - 9, 10, "~%.8s", h);
    }
}

/* A capability from a tool name: 1-64 of A-Z a-z 0-9 _ . : / - */
static void s_tool_cap(const char *tool, char out[MZ_CAP_MAX + 1])
{
    size_t n = 0;

    for (const char *p = tool; *p && n < MZ_CAP_MAX; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, MZ_CAP_MAX + 1, "_");
}

/* ---- the MCP session: sending ------------------------------------------------ */

static void s_write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static mz_status s_http_post(mz_bsrv *s, const char *buf, size_t len, mz_bcall *call);

/* Sends one message (takes msg). call (may be NULL) is the request it
 * carries, for the HTTP transport to report a failed POST against. */
static mz_status s_send(mz_bsrv *s, json_t *msg, mz_bcall *call)
{
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    size_t len;

    json_decref(msg);
    if (text == NULL)
        return MZ_ENOMEM;
    len = strlen(text);
    if (s->url != NULL) {
        mz_status rc = s_http_post(s, text, len, call);
        free(text);
        return rc;
    }
    if (s->tap != NULL) {
        s->tap(s->tap_ctx, 0, text, len);
        free(text);
        return MZ_OK;
    }
    if (!s->running || s->pin_closed) {
        free(text);
        return MZ_ESTATE;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&s->pin) + len > MZ_BRIDGE_MAX_QUEUE) {
        free(text);
        return MZ_ELIMIT;
    }
    {
        /* JSON_COMPACT never writes a raw newline: one message per line. */
        uv_write_t *w = malloc(sizeof *w);
        char *line = realloc(text, len + 1);
        uv_buf_t b;
        if (w == NULL || line == NULL) {
            free(w);
            free(line ? line : text);
            return MZ_ENOMEM;
        }
        line[len] = '\n';
        b = uv_buf_init(line, (unsigned)(len + 1));
        w->data = line;
        if (uv_write(w, (uv_stream_t *)&s->pin, &b, 1, s_write_done) != 0) {
            free(line);
            free(w);
            return MZ_EIO;
        }
    }
    return MZ_OK;
}

/* Sends a request and remembers it. Returns the call, NULL on failure
 * (st says why). */
static mz_bcall *s_request(mz_bsrv *s, mz_bcall_kind kind, const char *method, json_t *params,
                           int64_t deadline_ms, mz_status *st)
{
    mz_bcall *c = calloc(1, sizeof *c);
    char key[32];
    json_t *msg;

    if (c == NULL) {
        json_decref(params);
        *st = MZ_ENOMEM;
        return NULL;
    }
    c->kind = kind;
    c->id = ++s->next_id;
    c->deadline_ms = deadline_ms;
    snprintf(key, sizeof key, "%lld", (long long)c->id);
    msg = json_pack("{s:s,s:I,s:s,s:o}", "jsonrpc", "2.0", "id", c->id, "method", method,
                    "params", params ? params : json_object());
    if (msg == NULL || mz_hmap_put(s->calls, key, c, NULL) != MZ_OK) {
        json_decref(msg);
        free(c);
        *st = MZ_ENOMEM;
        return NULL;
    }
    if ((*st = s_send(s, msg, c)) != MZ_OK) {
        free(mz_hmap_remove(s->calls, key));
        return NULL;
    }
    return c;
}

static void s_notify(mz_bsrv *s, const char *method, json_t *params)
{
    json_t *m = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", method);

    if (m != NULL && params != NULL)
        json_object_set_new(m, "params", params);
    else
        json_decref(params);
    (void)s_send(s, m, NULL);
}

/* ---- resources ------------------------------------------------------------------ */

static void s_btool_free(void *p)
{
    mz_btool *t = p;

    if (t == NULL)
        return;
    free(t->tool);
    free(t);
}

/* Unregisters every resource of the server. */
static void s_withdraw(mz_bsrv *s)
{
    size_t pos = 0;
    const char *key;
    void *val;

    while (mz_hmap_next(s->tools, &pos, &key, &val)) {
        mz_err e;
        if (mz_node_unregister_resource(s->b->node, key, &e) != MZ_OK)
            mz_log(MZ_LOG_WARN, "bridge", "mcp %s: unregister %s: %s", s->name, key, e.msg);
    }
    mz_hmap_free(s->tools, s_btool_free);
    s->tools = mz_hmap_new();
}

/* Fails every call in progress (the mesh caller gets code + why) and
 * forgets the other requests. */
static void s_fail_calls(mz_bsrv *s, const char *code, const char *why)
{
    size_t pos = 0;
    const char *key;
    void *val;

    while (mz_hmap_count(s->calls) > 0) {
        pos = 0;
        if (!mz_hmap_next(s->calls, &pos, &key, &val))
            break;
        mz_bcall *c = mz_hmap_remove(s->calls, key);
        if (c->kind == MZ_BC_CALL && c->x != NULL)
            s_call_fail(s, c->x, code, why);
        free(c);
    }
}

/* The server is no longer usable: withdraw it and plan the next start. */
static void s_down(mz_bsrv *s, const char *why)
{
    int64_t now = mz_now_ms();

    if (why && why[0])
        snprintf(s->last_error, sizeof s->last_error, "%s", why);
    s_withdraw(s);
    s_fail_calls(s, MZ_EXEC_HANDLER_ERROR, s->last_error[0] ? s->last_error : "server down");
    json_decref(s->listing);
    s->listing = NULL;
    s->listing_now = s->relist = false;
    s->session[0] = '\0';
    if (s->http != NULL) {
        mz__httpc_abort(s->http, 0);
        s->sse_req = 0;
        s->sse_retry_ms = 0;
    }
    if (s->removed || s->b->stopping || (s->until_up && !s->was_up)) {
        if (!s->removed && !s->b->stopping)
            mz_log(MZ_LOG_WARN, "bridge", "mcp %s: %s; never came up, not retried", s->name,
                   s->last_error);
        s_set_state(s, MZ_BS_STOPPED);
        return;
    }
    if (s->up_since_ms && now - s->up_since_ms >= MZ_BRIDGE_STABLE_MS)
        s->backoff_ms = MZ_BRIDGE_BACKOFF_MIN_MS;
    s->up_since_ms = 0;
    s_set_state(s, MZ_BS_BACKOFF);
    s->next_start_ms = now + s->backoff_ms;
    mz_log(MZ_LOG_WARN, "bridge", "mcp %s: %s; its tools are withdrawn, restart in %lld ms",
           s->name, s->last_error, (long long)s->backoff_ms);
    s->backoff_ms *= 2;
    if (s->backoff_ms > MZ_BRIDGE_BACKOFF_MAX_MS)
        s->backoff_ms = MZ_BRIDGE_BACKOFF_MAX_MS;
}

static void s_kill(mz_bsrv *s, int sig)
{
    if (s->running)
        uv_process_kill(&s->proc, sig);
}

/* A protocol or transport failure: record it, end the process (its exit
 * does the rest) or, for HTTP, go down now. */
static void s_fail(mz_bsrv *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->last_error, sizeof s->last_error, fmt, ap);
    va_end(ap);
    if (s->url != NULL || !s->running) {
        s_down(s, NULL);
        return;
    }
    mz_log(MZ_LOG_WARN, "bridge", "mcp %s: %s: stopping the server", s->name, s->last_error);
    s_fail_calls(s, MZ_EXEC_HANDLER_ERROR, s->last_error);
    s_withdraw(s);
    s_kill(s, SIGTERM);
    if (s->kill_at_ms == 0)
        s->kill_at_ms = mz_now_ms() + MZ_BRIDGE_KILL_MS;
}

/* A skipped tool, with the reason (logged and listed). */
static void s_skip(mz_bsrv *s, const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_skip(mz_bsrv *s, const char *tool, const char *fmt, ...)
{
    char why[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s,s:s}", "tool", tool, "reason", why), *old;
    size_t i;
    bool known = false;

    /* A relisting that skips the same tools again says nothing new. */
    json_array_foreach(s->skipped_before, i, old)
        known = known || json_equal(old, e);
    if (!known)
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: tool '%.100s' not imported: %s", s->name, tool,
               why);
    json_array_append_new(s->skipped, e);
}

static void s_on_exec(mz_node *node, mz_exec *x, void *ctx);

/* Builds the record metadata of a tool; NULL (with why) when it cannot be
 * imported. *hash gets tool_hash. */
static json_t *s_tool_meta(mz_bsrv *s, const json_t *tool, char hash[65], char *why,
                           size_t whylen)
{
    static const char *const copied[] = { "title", "description", "inputSchema",
                                          "outputSchema", "annotations", "icons", "_meta" };
    char *canon;
    size_t len;
    json_t *meta;

    canon = mz_canon_dump(tool, NULL, &len);
    if (canon == NULL) {
        snprintf(why, whylen, "its definition cannot be put in canonical form");
        return NULL;
    }
    mz__sha256_hex(canon, len, hash);
    free(canon);
    meta = json_pack("{s:s,s:s,s:s,s:O}", "tool", json_string_value(json_object_get(tool, "name")),
                     "bridge", s->name, "tool_hash", hash, "server",
                     s->server_info ? s->server_info : json_null());
    if (meta == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        json_t *v = json_object_get(tool, copied[i]);
        if (v != NULL && !json_is_null(v))
            json_object_set(meta, copied[i], v);
    }
    canon = mz_canon_dump(meta, NULL, &len);
    if (canon == NULL || len + MZ_META_HEADROOM > MZ_METADATA_MAX) {
        free(canon);
        json_decref(meta);
        snprintf(why, whylen, "its definition takes %zu bytes of record metadata, over the "
                 "%d-byte limit (MZ_METADATA_MAX)", len + MZ_META_HEADROOM, MZ_METADATA_MAX);
        return NULL;
    }
    free(canon);
    return meta;
}

/* Registers (or updates) one tool. Returns true when it is now served. */
static bool s_register_tool(mz_bsrv *s, const json_t *tool, const char *rid, mz_hmap *next)
{
    const char *name = json_string_value(json_object_get(tool, "name"));
    const char *caps[MZ_BRIDGE_MAX_TAGS + 3];
    static const char *const methods[] = { "call", NULL };
    char cap[MZ_CAP_MAX + 1], bcap[MZ_CAP_MAX + 1], hash[65], why[300];
    mz_btool *old = mz_hmap_get(s->tools, rid), *t;
    mz_resource_spec spec;
    json_t *meta;
    mz_err e;
    size_t n = 0;

    meta = s_tool_meta(s, tool, hash, why, sizeof why);
    if (meta == NULL) {
        s_skip(s, name, "%s", why);
        return false;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL || (t->tool = strdup(name)) == NULL) {
        free(t);
        json_decref(meta);
        s_skip(s, name, "out of memory");
        return false;
    }
    memcpy(t->hash, hash, sizeof t->hash);
    if (old != NULL && strcmp(old->hash, hash) == 0) {
        /* Unchanged: no new version, no announce. */
        json_decref(meta);
        if (mz_hmap_put(next, rid, t, NULL) != MZ_OK) {
            s_btool_free(t);
            return false;
        }
        return true;
    }
    s_tool_cap(name, cap);
    snprintf(bcap, sizeof bcap, "mcp:%s", s->name);
    caps[n++] = cap;
    caps[n++] = "mcp";
    caps[n++] = bcap;
    for (size_t i = 0; i < s->n_tags; i++) {
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup = dup || strcmp(caps[j], s->tags[i]) == 0;
        if (!dup)
            caps[n++] = s->tags[i];
    }
    memset(&spec, 0, sizeof spec);
    spec.resource_id = rid;
    spec.resource_type = "tool";
    spec.capabilities = caps;
    spec.n_capabilities = n;
    spec.metadata = meta;
    if (mz_node_register_resource(s->b->node, &spec, NULL, &e) != MZ_OK ||
        mz_node_set_handler(s->b->node, rid, methods, s_on_exec, s, &e) != MZ_OK) {
        json_decref(meta);
        s_btool_free(t);
        s_skip(s, name, "registering %s: %s", rid, e.msg);
        return false;
    }
    json_decref(meta);
    s->changed++;
    if (mz_hmap_put(next, rid, t, NULL) != MZ_OK) {
        mz_node_unregister_resource(s->b->node, rid, NULL);
        s_btool_free(t);
        return false;
    }
    return true;
}

/* The complete tool list arrived: make the resources match it. */
static void s_apply_listing(mz_bsrv *s)
{
    mz_hmap *next = mz_hmap_new();
    size_t i, pos = 0;
    const char *key;
    void *val;
    json_t *tool;
    bool was_up = s->state == MZ_BS_UP;

    s->skipped_before = s->skipped;
    s->skipped = json_array();
    s->changed = 0;
    if (next == NULL || s->skipped == NULL) {
        json_decref(s->skipped_before);
        s->skipped_before = NULL;
        mz_hmap_free(next, NULL);
        s_fail(s, "out of memory applying the tool list");
        return;
    }
    json_array_foreach(s->listing, i, tool) {
        const char *name = json_string_value(json_object_get(tool, "name"));
        const char *task = json_string_value(
            json_object_get(json_object_get(tool, "execution"), "taskSupport"));
        char rid[MZ_RESOURCE_ID_MAX + 1];
        if (!json_is_object(tool) || name == NULL || name[0] == '\0') {
            s_skip(s, "?", "entry %zu of tools/list has no name", i);
            continue;
        }
        if (i >= MZ_BRIDGE_MAX_TOOLS) {
            s_skip(s, name, "over %d tools from one server", MZ_BRIDGE_MAX_TOOLS);
            continue;
        }
        if (!json_is_object(json_object_get(tool, "inputSchema"))) {
            s_skip(s, name, "no inputSchema object");
            continue;
        }
        if (task != NULL && strcmp(task, "required") == 0) {
            s_skip(s, name, "it must be called as a task, which the bridge does not do");
            continue;
        }
        s_tool_rid(s->name, name, rid);
        if (mz_hmap_get(next, rid) != NULL) {
            s_skip(s, name, "its resource id %s is taken by another tool of the server", rid);
            continue;
        }
        s_register_tool(s, tool, rid, next);
    }
    /* Tools the server no longer lists go away. */
    while (mz_hmap_next(s->tools, &pos, &key, &val))
        if (mz_hmap_get(next, key) == NULL) {
            mz_node_unregister_resource(s->b->node, key, NULL);
            s->changed++;
        }
    mz_hmap_free(s->tools, s_btool_free);
    s->tools = next;
    json_decref(s->listing);
    s->listing = NULL;
    s->listing_now = false;
    if (s->state != MZ_BS_UP) {
        s_set_state(s, MZ_BS_UP);
        s->was_up = true;
        s->up_since_ms = mz_now_ms();
        s->last_error[0] = '\0';
    }
    /* Logged when something changed: a server's list_changed right after
     * initialize (common) relists the same tools. */
    if (!was_up || s->changed > 0 || !json_equal(s->skipped, s->skipped_before))
        mz_log(MZ_LOG_INFO, "bridge", "mcp %s: %zu tools imported, %zu skipped", s->name,
               mz_hmap_count(s->tools), json_array_size(s->skipped));
    json_decref(s->skipped_before);
    s->skipped_before = NULL;
    if (s->relist) {
        s->relist = false;
        s->listing_now = true;
        s->listing = json_array();
        mz_status st;
        if (s->listing == NULL ||
            s_request(s, MZ_BC_LIST, "tools/list", NULL, mz_now_ms() + MZ_BRIDGE_INIT_TIMEOUT_MS,
                      &st) == NULL)
            s_fail(s, "cannot send tools/list");
    }
}

static void s_list(mz_bsrv *s, const char *cursor)
{
    mz_status st;
    json_t *params = cursor ? json_pack("{s:s}", "cursor", cursor) : NULL;

    if (cursor == NULL) {
        if (s->listing_now) {
            s->relist = true;    /* list again once this listing is done */
            json_decref(params);
            return;
        }
        json_decref(s->listing);
        s->listing = json_array();
        s->listing_now = true;
    }
    if (s_request(s, MZ_BC_LIST, "tools/list", params, mz_now_ms() + MZ_BRIDGE_INIT_TIMEOUT_MS,
                  &st) == NULL)
        s_fail(s, "cannot send tools/list (%s)", mz_status_name(st));
}

/* ---- the MCP session: receiving ---------------------------------------------------- */

static void s_on_init(mz_bsrv *s, const json_t *res)
{
    const char *v = json_string_value(json_object_get(res, "protocolVersion"));
    const json_t *info = json_object_get(res, "serverInfo");

    if (!mz_mcp_version_supported(v)) {
        s_fail(s, "the server answered protocol version '%.20s', which the bridge does not "
               "speak", v ? v : "(none)");
        return;
    }
    snprintf(s->proto, sizeof s->proto, "%s", v);
    json_decref(s->server_info);
    s->server_info = json_pack("{s:s,s:s}", "name",
                               json_string_value(json_object_get(info, "name"))
                                   ? json_string_value(json_object_get(info, "name")) : "",
                               "version",
                               json_string_value(json_object_get(info, "version"))
                                   ? json_string_value(json_object_get(info, "version")) : "");
    s_notify(s, "notifications/initialized", NULL);
    if (s->url != NULL && s->state != MZ_BS_STOPPED)
        s->sse_retry_ms = mz_now_ms();      /* open the GET stream on the next tick */
    s_list(s, NULL);
}

/* The server's JSON-RPC error as the mesh error's data, for an MCP client
 * at the other end (docs/MCP.md "Calls"). One over MZ_BRIDGE_ERROR_MAX
 * bytes keeps its code and the start of its message only. Returns new. */
static json_t *s_server_error(mz_bsrv *s, const json_t *err)
{
    const json_t *code = json_object_get(err, "code"), *data = json_object_get(err, "data");
    const char *m = json_string_value(json_object_get(err, "message"));
    size_t len = json_dumpb(err, NULL, 0, JSON_COMPACT);

    if (len > MZ_BRIDGE_ERROR_MAX) {
        size_t n = m ? strlen(m) : 0;
        if (n > 1024)
            for (n = 1024; n > 0 && ((unsigned char)m[n] & 0xC0) == 0x80; n--)
                ;               /* cut on a UTF-8 character boundary */
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: a JSON-RPC error of %zu bytes, over %d "
               "(MZ_BRIDGE_ERROR_MAX): its data is left out", s->name, len,
               MZ_BRIDGE_ERROR_MAX);
        return json_pack("{s:{s:O,s:s#}}", MZ_MCP_ERROR_KEY, "code", code, "message",
                         m ? m : "", (int)n);
    }
    return json_pack("{s:{s:O,s:s,s:O*}}", MZ_MCP_ERROR_KEY, "code", code, "message", m ? m : "",
                     "data", data);
}

static void s_on_response(mz_bsrv *s, const json_t *msg)
{
    const json_t *id = json_object_get(msg, "id"), *res = json_object_get(msg, "result");
    const json_t *err = json_object_get(msg, "error");
    char key[32];
    mz_bcall *c;

    if (json_is_integer(id))
        snprintf(key, sizeof key, "%lld", (long long)json_integer_value(id));
    else if (json_is_string(id))
        snprintf(key, sizeof key, "%.30s", json_string_value(id));
    else
        return;
    c = mz_hmap_remove(s->calls, key);
    if (c == NULL)
        return;                 /* late (timed out) or not ours */
    if (err != NULL || !json_is_object(res)) {
        char why[300];
        const char *m = json_string_value(json_object_get(err, "message"));
        if (err != NULL)
            snprintf(why, sizeof why, "MCP error %lld: %.250s",
                     (long long)json_integer_value(json_object_get(err, "code")),
                     m ? m : "(no message)");
        else
            snprintf(why, sizeof why, "the server answered without a result object");
        switch (c->kind) {
        case MZ_BC_INIT: s_fail(s, "initialize failed: %s", why); break;
        case MZ_BC_LIST: s_fail(s, "tools/list failed: %s", why); break;
        case MZ_BC_CALL:
            if (json_is_object(err) && json_is_integer(json_object_get(err, "code"))) {
                s_count_call(s, MZ_EXEC_HANDLER_ERROR);
                mz_exec_fail_data(c->x, MZ_EXEC_HANDLER_ERROR, why, s_server_error(s, err));
            } else {
                s_call_fail(s, c->x, MZ_EXEC_HANDLER_ERROR, why);
            }
            break;
        }
        free(c);
        return;
    }
    switch (c->kind) {
    case MZ_BC_INIT:
        s_on_init(s, res);
        break;
    case MZ_BC_LIST: {
        const json_t *tools = json_object_get(res, "tools");
        const char *cursor = json_string_value(json_object_get(res, "nextCursor"));
        if (!json_is_array(tools) || s->listing == NULL) {
            s_fail(s, "tools/list answered without a tools array");
            break;
        }
        json_array_extend(s->listing, (json_t *)tools);
        if (cursor != NULL && cursor[0] != '\0' &&
            json_array_size(s->listing) <= MZ_BRIDGE_MAX_TOOLS)
            s_list(s, cursor);
        else
            s_apply_listing(s);
        break;
    }
    case MZ_BC_CALL:
        /* The MCP result, content, structuredContent and isError included,
         * goes back unchanged. */
        s_call_ok(s, c->x, json_incref((json_t *)res));
        break;
    }
    free(c);
}

/* A request from the server to us: only ping is answered with success. */
static void s_on_server_request(mz_bsrv *s, const json_t *msg, const char *method)
{
    const json_t *id = json_object_get(msg, "id");
    json_t *ans;

    if (strcmp(method, "ping") == 0) {
        ans = mz__rpc_result(id, json_object());
    } else {
        char why[200];
        snprintf(why, sizeof why, "the meshzero bridge does not offer '%.100s'", method);
        ans = mz__rpc_error(id, MZ_RPC_NO_METHOD, why, NULL);
    }
    (void)s_send(s, ans, NULL);
}

static void s_on_rpc(mz_bsrv *s, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *method;

    if (msg == NULL || !json_is_object(msg)) {
        /* Not JSON-RPC: tell the server (it may be logging to stdout by
         * mistake) and go on. */
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: ignoring a message that is not a JSON-RPC "
               "object: %.80s", s->name, msg ? "(not an object)" : jerr.text);
        json_decref(msg);
        (void)s_send(s, mz__rpc_error(NULL, msg ? MZ_RPC_INVALID_REQ : MZ_RPC_PARSE_ERROR,
                                      "the meshzero bridge could not read that message", NULL),
                     NULL);
        return;
    }
    method = json_string_value(json_object_get(msg, "method"));
    if (method == NULL) {
        s_on_response(s, msg);
    } else if (json_object_get(msg, "id") != NULL) {
        s_on_server_request(s, msg, method);
    } else if (strcmp(method, "notifications/tools/list_changed") == 0) {
        if (s->state == MZ_BS_UP)
            s_list(s, NULL);
        else if (s->listing_now)
            s->relist = true;
    } else if (strcmp(method, "notifications/message") == 0) {
        mz_log(MZ_LOG_DEBUG, "bridge", "mcp %s: log message from the server", s->name);
    }
    json_decref(msg);
}

/* ---- the mesh side of a call ------------------------------------------------------- */

static void s_on_exec(mz_node *node, mz_exec *x, void *ctx)
{
    mz_bsrv *s = ctx;
    mz_btool *t = mz_hmap_get(s->tools, mz_exec_resource(x));
    mz_status st;
    mz_bcall *c;
    json_t *params;

    (void)node;
    if (s->state != MZ_BS_UP || t == NULL) {
        char why[200];
        snprintf(why, sizeof why, "MCP server %s is not serving '%.100s' now", s->name,
                 mz_exec_resource(x));
        s_call_fail(s, x, MZ_EXEC_NOT_FOUND, why);
        return;
    }
    /* The call's trace context goes on in _meta (MCP's carrier for it). */
    params = json_pack("{s:s,s:O,s:{s:s,s:s?}}", "name", t->tool, "arguments",
                       mz_exec_params(x), "_meta", "traceparent", mz_exec_traceparent(x),
                       "tracestate", mz_exec_tracestate(x));
    if (params == NULL) {
        s_call_fail(s, x, MZ_EXEC_HANDLER_ERROR, "out of memory");
        return;
    }
    c = s_request(s, MZ_BC_CALL, "tools/call", params, mz_exec_deadline_ms(x), &st);
    if (c == NULL) {
        s_call_fail(s, x, st == MZ_ELIMIT ? MZ_EXEC_BUSY : MZ_EXEC_HANDLER_ERROR,
                     st == MZ_ELIMIT ? "the MCP server's input queue is full"
                                     : "could not send tools/call to the MCP server");
        return;
    }
    c->x = x;
}

/* ---- stdio transport ------------------------------------------------------------------ */

static void s_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(sugg);
    buf->len = buf->base ? sugg : 0;
}

static void s_handle_closed(uv_handle_t *h)
{
    mz_bsrv *s = h->data;

    s->open_handles--;
}

static void s_close_handles(mz_bsrv *s)
{
    uv_handle_t *hs[] = { (uv_handle_t *)&s->proc, (uv_handle_t *)&s->pin,
                          (uv_handle_t *)&s->pout, (uv_handle_t *)&s->perr };

    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], s_handle_closed);
    s->pin_closed = true;
}

/* True once the server failed while its output was being handled: the
 * rest of that output is moot. */
static bool s_output_moot(const mz_bsrv *s)
{
    if (s->tap != NULL)
        return s->state == MZ_BS_BACKOFF || s->state == MZ_BS_STOPPED;
    return !s->running || s->kill_at_ms != 0;
}

/* Bytes of the server's stdout: one JSON-RPC message per line. */
static void s_stdout_bytes(mz_bsrv *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            size_t len = s->line_len;
            if (len > 0 && s->line[len - 1] == '\r')
                len--;
            s->line_len = 0;
            if (len > 0)
                s_on_rpc(s, s->line, len);
            if (s_output_moot(s))
                break;
            continue;
        }
        if (s->line_len + 1 > MZ_BRIDGE_MAX_MESSAGE) {
            s->line_len = 0;
            s_fail(s, "the server sent a line over %u bytes", MZ_BRIDGE_MAX_MESSAGE);
            break;
        }
        if (s->line_len + 1 > s->line_cap) {
            size_t cap = s->line_cap ? s->line_cap * 2 : 4096;
            char *nb = realloc(s->line, cap);
            if (nb == NULL) {
                s_fail(s, "out of memory reading the server");
                break;
            }
            s->line = nb;
            s->line_cap = cap;
        }
        s->line[s->line_len++] = ch;
    }
}

static void s_on_stdout(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mz_bsrv *s = st->data;

    if (nread < 0) {
        free(buf->base);
        uv_read_stop(st);
        /* Usually the process is exiting: its exit status is the better
         * reason. The tick gives up on it after a grace. */
        if (s->running && s->eof_at_ms == 0)
            s->eof_at_ms = mz_now_ms();
        return;
    }
    s_stdout_bytes(s, buf->base, (size_t)nread);
    free(buf->base);
}

static void s_on_stderr(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mz_bsrv *s = st->data;

    if (nread < 0) {
        free(buf->base);
        uv_read_stop(st);
        return;
    }
    /* The server's log lines go to ours, cut to a sane length. */
    for (ssize_t i = 0; i < nread; i++) {
        char ch = buf->base[i];
        if (ch == '\n' || s->errlen + 1 >= sizeof s->errline) {
            s->errline[s->errlen] = '\0';
            if (s->errlen > 0)
                mz_log(MZ_LOG_INFO, "bridge", "mcp %s stderr: %s", s->name, s->errline);
            s->errlen = 0;
            if (ch == '\n')
                continue;
        }
        s->errline[s->errlen++] = (ch >= 0x20 || ch == '\t') ? ch : '?';
    }
    free(buf->base);
}

static void s_on_exit(uv_process_t *p, int64_t status, int sig)
{
    mz_bsrv *s = p->data;
    char why[200];

    bool failing = s->kill_at_ms != 0;

    s->running = false;
    s->kill_at_ms = 0;
    s->eof_at_ms = 0;
    if (sig)
        snprintf(why, sizeof why, "the server (pid %d) was ended by signal %d", s->pid, sig);
    else
        snprintf(why, sizeof why, "the server (pid %d) exited with status %lld", s->pid,
                 (long long)status);
    /* A failure recorded earlier (protocol error, timeout) is the better reason. */
    if (!failing && !s->removed)
        snprintf(s->last_error, sizeof s->last_error, "%s", why);
    s_close_handles(s);
    s_down(s, NULL);
}

static void s_start_stdio(mz_bsrv *s)
{
    int r;

    uv_pipe_init(s->b->loop, &s->pin, 0);
    uv_pipe_init(s->b->loop, &s->pout, 0);
    uv_pipe_init(s->b->loop, &s->perr, 0);
    s->pin.data = s->pout.data = s->perr.data = s->proc.data = s;
    s->open_handles = 4;
    s->pin_closed = false;
    s->line_len = s->errlen = 0;
    s->kill_at_ms = s->eof_at_ms = 0;
    r = mz__spawn_piped_env(s->b->loop, &s->proc, s->argv, s->env, &s->pin, &s->pout, &s->perr,
                            s_on_exit, 0);
    if (r != 0) {
        /* libuv wants the process handle closed even when the spawn failed. */
        s_close_handles(s);
        snprintf(s->last_error, sizeof s->last_error, "cannot start '%s': %s", s->argv[0],
                 uv_strerror(r));
        s_down(s, NULL);
        return;
    }
    s->running = true;
    s->pid = s->proc.pid;
    uv_read_start((uv_stream_t *)&s->pout, s_alloc, s_on_stdout);
    uv_read_start((uv_stream_t *)&s->perr, s_alloc, s_on_stderr);
    mz_log(MZ_LOG_INFO, "bridge", "mcp %s: started %s (pid %d)", s->name, s->argv[0], s->pid);
}

/* ---- Streamable HTTP transport ---------------------------------------------------- */

static mz_bcall *s_call_by_req(mz_bsrv *s, uint64_t req, char key[32])
{
    size_t pos = 0;
    const char *k;
    void *val;

    while (mz_hmap_next(s->calls, &pos, &k, &val))
        if (((mz_bcall *)val)->http_req == req) {
            snprintf(key, 32, "%s", k);
            return val;
        }
    return NULL;
}

static void s_http_head(void *ctx, uint64_t req, int status, const char *ctype,
                        const char *session)
{
    mz_bsrv *s = ctx;

    (void)ctype;
    if (status >= 200 && status < 300 && session && session[0] && req != s->sse_req)
        snprintf(s->session, sizeof s->session, "%s", session);
}

static void s_http_message(void *ctx, uint64_t req, const char *buf, size_t len)
{
    (void)req;
    s_on_rpc(ctx, buf, len);
}

static void s_http_done(void *ctx, uint64_t req, int status, const char *why)
{
    mz_bsrv *s = ctx;
    char key[32];
    mz_bcall *c;

    if (req == s->sse_req) {
        s->sse_req = 0;
        if (status == 405) {
            s->sse_unsupported = true;
        } else if (s->state == MZ_BS_UP) {
            s->sse_retry_ms = mz_now_ms() + 1000;
        }
        return;
    }
    if (status == 404 && s->session[0] != '\0') {
        /* The server forgot our session: start a new one. */
        s_fail(s, "the server ended the MCP session (HTTP 404)");
        return;
    }
    c = s_call_by_req(s, req, key);
    if (c == NULL)
        return;                 /* answered */
    {
        char msg[300];
        if (status == 0)
            snprintf(msg, sizeof msg, "HTTP request to %s failed: %s", s->url,
                     why ? why : "no answer");
        else
            snprintf(msg, sizeof msg, "HTTP %d from %s without a JSON-RPC answer", status,
                     s->url);
        if (c->kind == MZ_BC_CALL && status != 0) {
            mz_hmap_remove(s->calls, key);
            s_call_fail(s, c->x, MZ_EXEC_HANDLER_ERROR, msg);
            free(c);
            return;
        }
        s_fail(s, "%s", msg);
    }
}

static mz_status s_http_post(mz_bsrv *s, const char *buf, size_t len, mz_bcall *call)
{
    char hdr[600];
    uint64_t req;

    if (s->http == NULL)
        return MZ_ESTATE;
    snprintf(hdr, sizeof hdr, "%s%s%s%s%s",
             s->session[0] ? "Mcp-Session-Id: " : "", s->session, s->session[0] ? "\r\n" : "",
             s->proto[0] ? "MCP-Protocol-Version: " : "", s->proto[0] ? s->proto : "");
    if (s->proto[0])
        strncat(hdr, "\r\n", sizeof hdr - strlen(hdr) - 1);
    req = mz__httpc_request(s->http, buf, len, hdr);
    if (call != NULL)
        call->http_req = req;
    if (req == 0) {
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: cannot start an HTTP request", s->name);
        return MZ_EIO;
    }
    return MZ_OK;
}

static void s_open_sse(mz_bsrv *s)
{
    char hdr[600];

    s->sse_retry_ms = 0;
    if (s->sse_unsupported || s->sse_req != 0 || s->http == NULL)
        return;
    snprintf(hdr, sizeof hdr, "%s%s%sMCP-Protocol-Version: %s\r\n",
             s->session[0] ? "Mcp-Session-Id: " : "", s->session, s->session[0] ? "\r\n" : "",
             s->proto);
    s->sse_req = mz__httpc_request(s->http, NULL, 0, hdr);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static void s_start(mz_bsrv *s)
{
    json_t *params;
    mz_status st;

    s_set_state(s, MZ_BS_STARTING);
    s->proto[0] = '\0';
    s->session[0] = '\0';
    s->init_deadline_ms = mz_now_ms() + MZ_BRIDGE_INIT_TIMEOUT_MS;
    if (s->url == NULL && s->tap == NULL) {
        s_start_stdio(s);
        if (!s->running)
            return;
    }
    if (s->tap != NULL)
        s->line_len = 0;
    params = json_pack("{s:s,s:{},s:{s:s,s:s}}", "protocolVersion", MZ_MCP_LATEST,
                       "capabilities", "clientInfo", "name", "meshzero-bridge", "version",
                       MZ_BRIDGE_SOFTWARE_VERSION);
    if (s_request(s, MZ_BC_INIT, "initialize", params, s->init_deadline_ms, &st) == NULL)
        s_fail(s, "cannot send initialize (%s)", mz_status_name(st));
}

static void s_tick_server(mz_bsrv *s, int64_t now)
{
    size_t pos = 0;
    const char *key;
    void *val;
    char ids[64][32];
    size_t n = 0;

    if (s->kill_at_ms && now >= s->kill_at_ms && s->running) {
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: pid %d ignored SIGTERM, killing it", s->name,
               s->pid);
        s_kill(s, SIGKILL);
        s->kill_at_ms = 0;
    }
    if (s->eof_at_ms && s->running && s->kill_at_ms == 0 && now - s->eof_at_ms >= 1000) {
        s->eof_at_ms = 0;
        s_fail(s, "the server closed its stdout but did not exit");
        return;
    }
    if (s->state == MZ_BS_BACKOFF && now >= s->next_start_ms && s->open_handles == 0) {
        s->restarts++;
        s_start(s);
        return;
    }
    if (s->state == MZ_BS_STARTING && now >= s->init_deadline_ms && s->kill_at_ms == 0) {
        s_fail(s, "no answer to initialize and tools/list within %d ms",
               MZ_BRIDGE_INIT_TIMEOUT_MS);
        return;
    }
    if (s->url != NULL && s->state == MZ_BS_UP && s->sse_retry_ms && now >= s->sse_retry_ms)
        s_open_sse(s);
    /* Calls past their deadline: tell the server, answer the mesh. */
    while (n < 64 && mz_hmap_next(s->calls, &pos, &key, &val))
        if (((mz_bcall *)val)->kind == MZ_BC_CALL && ((mz_bcall *)val)->deadline_ms <= now)
            snprintf(ids[n++], sizeof ids[0], "%s", key);
    for (size_t i = 0; i < n; i++) {
        mz_bcall *c = mz_hmap_remove(s->calls, ids[i]);
        char why[160];
        s_notify(s, "notifications/cancelled",
                 json_pack("{s:I,s:s}", "requestId", c->id, "reason", "timeout"));
        snprintf(why, sizeof why, "MCP server %s did not answer tools/call in time", s->name);
        s_call_fail(s, c->x, MZ_EXEC_TIMEOUT, why);
        free(c);
    }
}

static void s_srv_free(mz_bsrv *s)
{
    if (s == NULL)
        return;
    json_decref(s->served);
    for (char **a = s->argv; a && *a; a++)
        free(*a);
    free(s->argv);
    mz__bridge_env_free(s->env);
    free(s->url);
    for (size_t i = 0; i < s->n_tags; i++)
        free(s->tags[i]);
    free(s->tags);
    free(s->line);
    mz_hmap_free(s->calls, free);
    mz_hmap_free(s->tools, s_btool_free);
    json_decref(s->server_info);
    json_decref(s->listing);
    json_decref(s->skipped);
    free(s);
}

static void s_reap(mz_bridge *b)
{
    for (mz_bsrv **pp = &b->dying; *pp;) {
        mz_bsrv *s = *pp;
        if (s->open_handles == 0 && !s->running) {
            *pp = s->next;
            s_srv_free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void s_on_tick(uv_timer_t *t)
{
    mz_bridge *b = t->data;
    int64_t now = mz_now_ms();

    for (mz_bsrv *s = b->servers; s; s = s->next)
        s_tick_server(s, now);
    for (mz_bsrv *s = b->dying; s; s = s->next)
        if (s->kill_at_ms && now >= s->kill_at_ms && s->running) {
            s_kill(s, SIGKILL);
            s->kill_at_ms = 0;
        }
    s_reap(b);
}

/* Ends a server for good: resources, calls, process or HTTP client. */
static void s_shutdown(mz_bsrv *s, const char *why)
{
    s->removed = true;
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    s_down(s, NULL);
    if (s->http != NULL) {
        mz__httpc_free(s->http);
        s->http = NULL;
    }
    if (s->running) {
        /* EOF on stdin is the MCP stdio way to ask a server to exit;
         * SIGTERM for those that do not listen, SIGKILL after the grace. */
        if (!uv_is_closing((uv_handle_t *)&s->pin))
            uv_close((uv_handle_t *)&s->pin, s_handle_closed);
        s->pin_closed = true;
        s_kill(s, SIGTERM);
        s->kill_at_ms = mz_now_ms() + MZ_BRIDGE_KILL_MS;
    }
}

/* ---- public ------------------------------------------------------------------------ */

mz_status mz_bridge_new(const mz_bridge_opts *opts, mz_bridge **out, mz_err *err)
{
    mz_bridge *b = calloc(1, sizeof *b);
    mz_status rc;

    *out = NULL;
    if (b == NULL)
        return mz_err_set(err, MZ_ENOMEM, "bridge: allocating");
    b->loop = opts->loop;
    b->node = opts->node;
    uv_timer_init(b->loop, &b->tick);
    b->tick.data = b;
    uv_timer_start(&b->tick, s_on_tick, MZ_BRIDGE_TICK_MS, MZ_BRIDGE_TICK_MS);
    /* The tick never keeps the loop alive by itself; child processes do. */
    uv_unref((uv_handle_t *)&b->tick);
    if ((rc = mz__mcphttp_new(b->node, b->loop, opts->http_endpoint, opts->views,
                              opts->data_dir, &b->http, err)) != MZ_OK) {
        b->stopping = true;
        mz_bridge_free(b);
        return rc;
    }
    mz__node_set_bridge(b->node, b);    /* what mz_bridge_of_node answers */
    *out = b;
    return MZ_OK;
}

static char *s_dup_or_null(const char *v, bool *oom)
{
    char *d;

    if (v == NULL)
        return NULL;
    d = strdup(v);
    if (d == NULL)
        *oom = true;
    return d;
}

/* mz_bridge_add, with the caller as the transport when tap is set. */
static mz_status s_add(mz_bridge *b, const mz_bridge_spec *spec, mz_bridge_tap_fn tap,
                       void *tap_ctx, mz_err *err)
{
    mz_bsrv *s;
    bool oom = false;
    size_t argc = 0;

    if (b->stopping)
        return mz_err_set(err, MZ_ESTATE, "bridge: stopping");
    if (spec->name == NULL || !s_bridge_name_ok(spec->name))
        return mz_err_set(err, MZ_EINVAL, "bridge name '%.80s': need 1-%d characters of "
                          "A-Z a-z 0-9 _ . -", spec->name ? spec->name : "",
                          MZ_BRIDGE_NAME_MAX);
    if ((spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] == '\0') ==
        (spec->url == NULL))
        return mz_err_set(err, MZ_EINVAL, "bridge %s: give either a command or a URL",
                          spec->name);
    if (spec->url != NULL && strncmp(spec->url, "http://", 7) != 0)
        return mz_err_set(err, MZ_EINVAL, "bridge %s: URL '%.100s' must start with http:// "
                          "(https is not supported)", spec->name, spec->url);
    if (spec->n_tags > MZ_BRIDGE_MAX_TAGS)
        return mz_err_set(err, MZ_EINVAL, "bridge %s: at most %d tags", spec->name,
                          MZ_BRIDGE_MAX_TAGS);
    for (size_t i = 0; i < spec->n_tags; i++) {
        char cap[MZ_CAP_MAX + 1];
        s_tool_cap(spec->tags[i], cap);
        if (spec->tags[i][0] == '\0' || strcmp(cap, spec->tags[i]) != 0)
            return mz_err_set(err, MZ_EINVAL, "bridge %s: tag '%.80s' must be 1-64 "
                              "characters of A-Z a-z 0-9 _ . : / -", spec->name,
                              spec->tags[i]);
    }
    if (mz__bridge_env_check(spec->name, spec, err) != MZ_OK)
        return err->code;
    for (s = b->servers; s; s = s->next)
        if (strcmp(s->name, spec->name) == 0)
            return mz_err_set(err, MZ_EEXIST, "bridge: a server named %s is already imported",
                              spec->name);
    if (b->n_servers >= MZ_BRIDGE_MAX_SERVERS)
        return mz_err_set(err, MZ_ELIMIT, "bridge: already %d servers (the limit)",
                          MZ_BRIDGE_MAX_SERVERS);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return mz_err_set(err, MZ_ENOMEM, "bridge: allocating");
    s->b = b;
    s->until_up = b->adding_until_up;
    snprintf(s->name, sizeof s->name, "%s", spec->name);
    s->backoff_ms = MZ_BRIDGE_BACKOFF_MIN_MS;
    s->calls = mz_hmap_new();
    s->tools = mz_hmap_new();
    s->skipped = json_array();
    oom = s->calls == NULL || s->tools == NULL || s->skipped == NULL;
    if (spec->argv != NULL) {
        while (spec->argv[argc])
            argc++;
        s->argv = calloc(argc + 1, sizeof *s->argv);
        oom = oom || s->argv == NULL;
        for (size_t i = 0; !oom && i < argc; i++)
            s->argv[i] = s_dup_or_null(spec->argv[i], &oom);
        s->env = oom ? NULL : mz__bridge_env_build(spec);
        oom = oom || s->env == NULL;
    }
    s->url = s_dup_or_null(spec->url, &oom);
    if (spec->n_tags > 0) {
        s->tags = calloc(spec->n_tags, sizeof *s->tags);
        oom = oom || s->tags == NULL;
        for (size_t i = 0; !oom && i < spec->n_tags; i++) {
            s->tags[i] = s_dup_or_null(spec->tags[i], &oom);
            s->n_tags++;
        }
    }
    if (oom) {
        s_srv_free(s);
        return mz_err_set(err, MZ_ENOMEM, "bridge: allocating");
    }
    if (s->url != NULL) {
        static const mz_httpc_events ev = { s_http_head, s_http_message, s_http_done };
        mz_status rc = mz__httpc_new(b->loop, s->url, &ev, s, &s->http, err);
        if (rc != MZ_OK) {
            s_srv_free(s);
            return rc;
        }
        if (tap != NULL)
            mz__httpc_offline(s->http, tap, tap_ctx);
    }
    s->tap = tap;
    s->tap_ctx = tap_ctx;
    s->next = b->servers;
    b->servers = s;
    b->n_servers++;
    mz_log(MZ_LOG_INFO, "bridge", "mcp %s: importing %s", s->name, s->url ? s->url : s->argv[0]);
    s_start(s);
    return MZ_OK;
}

mz_status mz_bridge_add(mz_bridge *b, const mz_bridge_spec *spec, mz_err *err)
{
    return s_add(b, spec, NULL, NULL, err);
}

/* ---- the caller as the transport (bridge_int.h) ------------------------------- */

mz_status mz__bridge_add_tap(mz_bridge *b, const char *name, bool http, mz_bridge_tap_fn fn,
                             void *ctx, mz_err *err)
{
    static const char *const argv[] = { "(tap)", NULL };
    mz_bridge_spec spec;

    memset(&spec, 0, sizeof spec);
    spec.name = name;
    /* The URL is never dialled: the client is offline. */
    if (http)
        spec.url = "http://127.0.0.1:9/mcp";
    else
        spec.argv = argv;
    return s_add(b, &spec, fn, ctx, err);
}

static mz_bsrv *s_find(mz_bridge *b, const char *name)
{
    for (mz_bsrv *s = b->servers; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

void mz__bridge_tap_stdout(mz_bridge *b, const char *name, const char *buf, size_t len)
{
    mz_bsrv *s = s_find(b, name);

    /* A real process that failed is being killed: its output is dropped. */
    if (s != NULL && s->tap != NULL && s->url == NULL && !s_output_moot(s))
        s_stdout_bytes(s, buf, len);
}

void mz__bridge_tap_http(mz_bridge *b, const char *name, uint64_t req, const char *buf,
                         size_t len, bool eof)
{
    mz_bsrv *s = s_find(b, name);

    if (s != NULL && s->tap != NULL && s->http != NULL)
        mz__httpc_inject(s->http, req, buf, len, eof);
}

void mz__bridge_tick(mz_bridge *b)
{
    s_on_tick(&b->tick);
}

mz_status mz_bridge_remove(mz_bridge *b, const char *name, mz_err *err)
{
    for (mz_bsrv **pp = &b->servers; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0) {
            mz_bsrv *s = *pp;
            *pp = s->next;
            b->n_servers--;
            s_shutdown(s, "removed");
            s->next = b->dying;
            b->dying = s;
            s_reap(b);
            return MZ_OK;
        }
    return mz_err_set(err, MZ_ENOTFOUND, "bridge: no server named %s", name);
}

static json_t *s_entry(const mz_bsrv *s)
{
    json_t *e, *tools = json_array();
    size_t pos = 0;
    const char *key;
    void *val;

    if (tools == NULL)
        return NULL;
    while (mz_hmap_next(s->tools, &pos, &key, &val))
        json_array_append_new(tools, json_string(key));

    e = json_pack("{s:s,s:s,s:s,s:s,s:o,s:O,s:I,s:s}", "name", s->name, "transport",
                  s->url ? "http" : "stdio", "target", s->url ? s->url : s->argv[0], "state",
                  s_state_name(s), "tools", tools, "skipped", s->skipped,
                  "restarts", (json_int_t)s->restarts, "last_error", s->last_error);
    if (e != NULL)
        json_object_set_new(e, "calls", s->served ? json_deep_copy(s->served) : json_object());
    if (e != NULL && s->server_info != NULL)
        json_object_set(e, "server", s->server_info);
    if (e != NULL && s->running)
        json_object_set_new(e, "pid", json_integer(s->pid));
    return e;
}

json_t *mz_bridge_states(mz_bridge *b)
{
    json_t *o = json_object();

    for (mz_bsrv *s = b->servers; o && s; s = s->next)
        json_object_set_new(o, s->name,
                            json_pack("{s:s,s:I,s:s}", "state", s_state_name(s), "tools",
                                      (json_int_t)mz_hmap_count(s->tools), "last_error",
                                      s->last_error));
    return o;
}

json_t *mz_bridge_list(mz_bridge *b)
{
    json_t *arr = json_array();

    for (mz_bsrv *s = b->servers; arr && s; s = s->next)
        json_array_append_new(arr, s_entry(s));
    return arr;
}

/* A server that stopped for good (never came up) may be added again under
 * its name: the old entry goes. */
static mz_status s_forget_stopped(mz_bridge *b, const char *name, mz_err *err)
{
    mz_bsrv *s = name ? s_find(b, name) : NULL;

    if (s == NULL || s->state != MZ_BS_STOPPED)
        return MZ_OK;
    return mz_bridge_remove(b, name, err);
}

/* params.KEY, when present, as up to max strings in out (borrowed); *n their count. */
static mz_status s_str_array(const json_t *params, const char *key, const char **out, size_t max,
                             size_t *n, mz_err *err)
{
    const json_t *arr = json_object_get(params, key), *v;
    size_t i;

    *n = 0;
    if (arr == NULL)
        return MZ_OK;
    if (!json_is_array(arr) || json_array_size(arr) > max)
        return mz_err_set(err, MZ_EINVAL, "params.%s must be an array of at most %zu strings",
                          key, max);
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v))
            return mz_err_set(err, MZ_EINVAL, "params.%s[%zu] must be a string", key, i);
        out[i] = json_string_value(v);
    }
    *n = json_array_size(arr);
    return MZ_OK;
}

mz_status mz_bridge_api_add(mz_bridge *b, const json_t *params, json_t **result, mz_err *err)
{
    const json_t *cmd = json_object_get(params, "command");
    const char *argv[65], *tagv[MZ_BRIDGE_MAX_TAGS];
    const char *envv[MZ_BRIDGE_MAX_ENV], *passv[MZ_BRIDGE_MAX_ENV];
    mz_bridge_spec spec;
    size_t i;
    json_t *v;
    mz_status rc;

    *result = NULL;
    if (b == NULL)
        return mz_err_set(err, MZ_ESTATE, "this node runs no MCP bridge");
    memset(&spec, 0, sizeof spec);
    spec.name = json_string_value(json_object_get(params, "name"));
    spec.url = json_string_value(json_object_get(params, "url"));
    if (spec.name == NULL)
        return mz_err_set(err, MZ_EINVAL, "params.name must be a string");
    if (cmd != NULL) {
        if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > 64)
            return mz_err_set(err, MZ_EINVAL, "params.command must be an array of 1-64 strings");
        json_array_foreach(cmd, i, v) {
            if (!json_is_string(v))
                return mz_err_set(err, MZ_EINVAL, "params.command[%zu] must be a string", i);
            argv[i] = json_string_value(v);
        }
        argv[json_array_size(cmd)] = NULL;
        spec.argv = argv;
    }
    if ((rc = s_str_array(params, "tags", tagv, MZ_BRIDGE_MAX_TAGS, &spec.n_tags, err)) != MZ_OK ||
        (rc = s_str_array(params, "env", envv, MZ_BRIDGE_MAX_ENV, &spec.n_env, err)) != MZ_OK ||
        (rc = s_str_array(params, "env_pass", passv, MZ_BRIDGE_MAX_ENV, &spec.n_env_pass,
                          err)) != MZ_OK)
        return rc;
    spec.tags = tagv;
    spec.env = envv;
    spec.env_pass = passv;
    if ((rc = s_forget_stopped(b, spec.name, err)) != MZ_OK)
        return rc;
    /* The caller waits for it (bridge add): a server that never comes up is
     * reported, not retried for ever. Set around the add: a spawn failure
     * happens within it. */
    b->adding_until_up = true;
    rc = mz_bridge_add(b, &spec, err);
    b->adding_until_up = false;
    if (rc != MZ_OK)
        return rc;
    *result = s_entry(b->servers);
    return *result ? MZ_OK : mz_err_set(err, MZ_ENOMEM, "bridge_add: allocating");
}

struct mz_mcpviews *mz__bridge_views(const mz_bridge *b)
{
    return b ? mz__mcphttp_views(b->http) : NULL;
}

mz_bridge *mz_bridge_of_node(const mz_node *node)
{
    return node ? mz__node_bridge(node) : NULL;
}

void mz_bridge_stop(mz_bridge *b)
{
    if (b == NULL || b->stopping)
        return;
    b->stopping = true;
    while (b->servers) {
        mz_bsrv *s = b->servers;
        b->servers = s->next;
        s_shutdown(s, "bridge stopping");
        s->next = b->dying;
        b->dying = s;
    }
    b->n_servers = 0;
    mz__mcphttp_stop(b->http);
    s_reap(b);
}

static void s_tick_closed(uv_handle_t *h)
{
    mz_bridge *b = h->data;

    b->tick_closed = true;
}

void mz_bridge_free(mz_bridge *b)
{
    if (b == NULL)
        return;
    mz_bridge_stop(b);
    /* Children still exiting keep their handles open: let the loop run
     * (the tick sends SIGKILL after the grace) until they are gone. */
    while (b->dying != NULL) {
        uv_run(b->loop, UV_RUN_ONCE);
        s_reap(b);
    }
    uv_close((uv_handle_t *)&b->tick, s_tick_closed);
    while (!b->tick_closed)
        uv_run(b->loop, UV_RUN_ONCE);
    mz__mcphttp_free(b->http);
    if (b->node != NULL && mz__node_bridge(b->node) == b)
        mz__node_set_bridge(b->node, NULL);
    free(b);
}

/* ---- NAME=CMD ------------------------------------------------------------------------ */

mz_status mz_bridge_parse_arg(const char *arg, mz_bridge_spec *spec, char **store, mz_err *err)
{
    const char *eq = strchr(arg, '=');
    size_t len = strlen(arg), nw = 0;
    char *buf, *w, **argv;
    const char *p;

    memset(spec, 0, sizeof spec[0]);
    *store = NULL;
    if (eq == NULL || eq == arg || eq[1] == '\0')
        return mz_err_set(err, MZ_EINVAL, "--mcp '%.100s': expected NAME=COMMAND or "
                          "NAME=http://HOST:PORT/PATH", arg);
    /* One block: the argv array (at most len/2+2 words), then the words. */
    buf = calloc(1, (len / 2 + 2) * sizeof(char *) + 2 * len + 2);
    if (buf == NULL)
        return mz_err_set(err, MZ_ENOMEM, "--mcp: allocating");
    argv = (char **)(void *)buf;
    w = buf + (len / 2 + 2) * sizeof(char *);
    memcpy(w, arg, (size_t)(eq - arg));
    w[eq - arg] = '\0';
    spec->name = w;
    w += (eq - arg) + 1;
    p = eq + 1;
    if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
        strcpy(w, p);
        spec->url = w;
        *store = buf;
        return MZ_OK;
    }
    for (;;) {
        char quote = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        argv[nw++] = w;
        while (*p && (quote || (*p != ' ' && *p != '\t'))) {
            if (quote && *p == quote) quote = 0;
            else if (!quote && (*p == '\'' || *p == '"')) quote = *p;
            else *w++ = *p;
            p++;
        }
        *w++ = '\0';
        if (quote) {
            free(buf);
            return mz_err_set(err, MZ_EINVAL, "--mcp '%.100s': unclosed quote", arg);
        }
    }
    argv[nw] = NULL;
    if (nw == 0) {
        free(buf);
        return mz_err_set(err, MZ_EINVAL, "--mcp '%.100s': empty command", arg);
    }
    spec->argv = (const char *const *)argv;
    *store = buf;
    return MZ_OK;
}
