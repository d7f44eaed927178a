/* MeshBridge, MCP side: version negotiation, the tool-name mapping and the
 * export server (mz_mcpsrv), which answers MCP JSON-RPC with the mesh's
 * resources as tools. It owns no transport: `meshzero mcp` (stdio, through a
 * node's local API) and the node's /mcp endpoint (Streamable HTTP, in the
 * node) give it messages and carry its answers. docs/MCP.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bridge/bridge_int.h"
#include "util/hmap.h"
#include "meshzero/msg.h"

/* Tools per tools/list page. */
#define MZ_MCP_PAGE 200

static const char *const s_versions[] = MZ_MCP_VERSIONS;

/* ---- small helpers ------------------------------------------------------- */

void mz__sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, 65, h, sizeof h);
}

json_t *mz__rpc_error(const json_t *id, int code, const char *message, json_t *data)
{
    json_t *e = json_pack("{s:i,s:s}", "code", code, "message", message ? message : "");

    if (e == NULL) {
        json_decref(data);
        return NULL;
    }
    if (data != NULL)
        json_object_set_new(e, "data", data);
    return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error",
                     e);
}

json_t *mz__rpc_result(const json_t *id, json_t *result)
{
    return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result ? result : json_object());
}

bool mz_mcp_version_supported(const char *v)
{
    for (size_t i = 0; v && i < sizeof s_versions / sizeof s_versions[0]; i++)
        if (strcmp(v, s_versions[i]) == 0)
            return true;
    return false;
}

const char *mz_mcp_negotiate(const char *requested)
{
    for (size_t i = 0; requested && i < sizeof s_versions / sizeof s_versions[0]; i++)
        if (strcmp(requested, s_versions[i]) == 0)
            return s_versions[i];
    return MZ_MCP_LATEST;
}

json_t *mz_mcp_list_changed_msg(void)
{
    return json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", "notifications/tools/list_changed");
}

/* ---- tool-name mapping --------------------------------------------------- */

static bool s_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* base: the id with invalid characters replaced, cut to keep characters
 * (a NUL-terminated copy in out, at least keep + 1 bytes). Returns the full
 * sanitised length before cutting. */
static size_t s_sanitize(const char *id, char *out, size_t keep)
{
    size_t n = strlen(id);

    for (size_t i = 0; i < n && i < keep; i++)
        out[i] = s_name_char(id[i]) ? id[i] : '_';
    out[n < keep ? n : keep] = '\0';
    return n;
}

static void s_hashed_name(const char *id, size_t hex, char out[MZ_MCP_TOOL_NAME_MAX + 1])
{
    char h[65];
    size_t keep = MZ_MCP_TOOL_NAME_MAX - 1 - hex;

    mz__sha256_hex(id, strlen(id), h);
    s_sanitize(id, out, keep);
    snprintf(out + strlen(out), MZ_MCP_TOOL_NAME_MAX + 1 - strlen(out), "_%.*s", (int)hex, h);
}

static int s_cmp_name(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;

    return strcmp(json_string_value(json_object_get(x, "name")),
                  json_string_value(json_object_get(y, "name")));
}

/* Counts how many entries carry each name. */
static mz_hmap *s_count_names(json_t *const *ent, size_t n)
{
    mz_hmap *h = mz_hmap_new();

    for (size_t i = 0; h && i < n; i++) {
        const char *nm = json_string_value(json_object_get(ent[i], "name"));
        uintptr_t c = (uintptr_t)mz_hmap_get(h, nm);
        if (mz_hmap_put(h, nm, (void *)(c + 1), NULL) != MZ_OK) {
            mz_hmap_free(h, NULL);
            return NULL;
        }
    }
    return h;
}

json_t *mz_mcp_map_tools(const json_t *records)
{
    size_t n = json_array_size(records), m = 0, i;
    json_t **ent = calloc(n ? n : 1, sizeof *ent);
    json_t *out = NULL, *rec;
    mz_hmap *cnt = NULL;

    if (ent == NULL)
        return NULL;
    /* Pass 1: plain sanitised names (or hashed when too long). */
    json_array_foreach(records, i, rec) {
        const char *id = json_string_value(json_object_get(rec, "resource_id"));
        char name[MZ_MCP_TOOL_NAME_MAX + 1];
        if (id == NULL || id[0] == '\0')
            continue;
        if (s_sanitize(id, name, MZ_MCP_TOOL_NAME_MAX) > MZ_MCP_TOOL_NAME_MAX)
            s_hashed_name(id, 8, name);
        ent[m] = json_pack("{s:s,s:s,s:O}", "name", name, "resource_id", id, "record", rec);
        if (ent[m] == NULL)
            goto done;
        m++;
    }
    /* Pass 2 and 3: names shared by several records get the hash, then a
     * longer one. Order-independent: only counts over the whole set matter. */
    for (size_t hex = 8; hex <= 16; hex += 8) {
        cnt = s_count_names(ent, m);
        if (cnt == NULL)
            goto done;
        for (i = 0; i < m; i++) {
            const char *nm = json_string_value(json_object_get(ent[i], "name"));
            if ((uintptr_t)mz_hmap_get(cnt, nm) > 1) {
                char name[MZ_MCP_TOOL_NAME_MAX + 1];
                s_hashed_name(json_string_value(json_object_get(ent[i], "resource_id")), hex,
                              name);
                json_object_set_new(ent[i], "name", json_string(name));
            }
        }
        mz_hmap_free(cnt, NULL);
        cnt = NULL;
    }
    /* Whatever still collides (two ids with equal 64-bit hash prefixes and
     * equal sanitised prefixes) is left out rather than made ambiguous. */
    cnt = s_count_names(ent, m);
    if (cnt == NULL)
        goto done;
    qsort(ent, m, sizeof *ent, s_cmp_name);
    out = json_array();
    for (i = 0; out && i < m; i++)
        if ((uintptr_t)mz_hmap_get(cnt, json_string_value(json_object_get(ent[i], "name"))) == 1 &&
            json_array_append(out, ent[i]) != 0) {
            json_decref(out);
            out = NULL;
        }
done:
    mz_hmap_free(cnt, NULL);
    for (i = 0; i < m; i++)
        json_decref(ent[i]);
    free(ent);
    return out;
}

/* ---- the export server --------------------------------------------------- */

typedef enum { MZ_REQ_LIST, MZ_REQ_CALL } mz_req_kind;

struct mz_mcpsrv_req {
    mz_mcpsrv *srv;             /* NULL once the server was freed (orphan) */
    uint64_t conn;
    json_t *id;                 /* the client's request id */
    mz_req_kind kind;
    json_t *params;             /* the request's params (owned) */
    char *resource_id;          /* tools/call: the resource being called */
    char *tool_hash;            /* tools/call: the pinned hash the call requires, or NULL */
    bool wrap;                  /* tools/call of a non-MCP resource: wrap its result */
    bool cancelled;             /* answer nothing */
    char traceparent[64];       /* tools/call: echoed in the result's _meta, or "" */
    json_t *err_data;           /* tools/call: the mesh error's data, or NULL */
    uint64_t gen;               /* srv->gen when its query started */
    mz_mcpsrv_req *prev, *next; /* srv->reqs */
};

struct mz_mcpsrv {
    mz_mcpsrv_ops ops;
    void *ctx;
    char *type;                 /* NULL: any type */
    char **caps;
    size_t n_caps;
    int64_t timeout_ms;
    bool reply_cancelled;
    json_t *query_params;       /* {resource_type?, capabilities?} */
    mz_mcpsrv_req *reqs;        /* waiting on the backend */
    int64_t cache_ms;           /* 0: no cache */
    json_t *cache;              /* the last directory answer, or NULL */
    int64_t cache_until_ms;
    uint64_t gen;               /* bumped by every invalidation */
};

mz_status mz_mcpsrv_new(const mz_mcpsrv_opts *o, mz_mcpsrv **out, mz_err *err)
{
    mz_mcpsrv *s = calloc(1, sizeof *s);
    json_t *caps = NULL;

    *out = NULL;
    if (s == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp server: allocating");
    s->ops = o->ops;
    s->ctx = o->ctx;
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : MZ_DEFAULT_EXEC_TIMEOUT_MS;
    s->reply_cancelled = o->reply_cancelled;
    s->cache_ms = o->cache_ms > 0 ? o->cache_ms : 0;
    s->query_params = json_object();
    caps = json_array();
    if (s->query_params == NULL || caps == NULL)
        goto oom;
    if (o->resource_type == NULL || strcmp(o->resource_type, "*") != 0) {
        s->type = strdup(o->resource_type ? o->resource_type : "tool");
        if (s->type == NULL ||
            json_object_set_new(s->query_params, "resource_type", json_string(s->type)) != 0)
            goto oom;
    }
    if (o->n_capabilities > 0) {
        s->caps = calloc(o->n_capabilities, sizeof *s->caps);
        if (s->caps == NULL)
            goto oom;
        for (size_t i = 0; i < o->n_capabilities; i++) {
            if ((s->caps[i] = strdup(o->capabilities[i])) == NULL)
                goto oom;
            s->n_caps++;
            if (json_array_append_new(caps, json_string(s->caps[i])) != 0)
                goto oom;
        }
        if (json_object_set(s->query_params, "capabilities", caps) != 0)
            goto oom;
    }
    json_decref(caps);
    *out = s;
    return MZ_OK;
oom:
    json_decref(caps);
    mz_mcpsrv_free(s);
    return mz_err_set(err, MZ_ENOMEM, "mcp server: allocating");
}

static void s_req_unlink(mz_mcpsrv_req *r)
{
    if (r->srv == NULL)
        return;
    if (r->prev) r->prev->next = r->next;
    else r->srv->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void s_req_free(mz_mcpsrv_req *r)
{
    s_req_unlink(r);
    json_decref(r->id);
    json_decref(r->params);
    json_decref(r->err_data);
    free(r->resource_id);
    free(r->tool_hash);
    free(r);
}

void mz_mcpsrv_free(mz_mcpsrv *s)
{
    if (s == NULL)
        return;
    for (mz_mcpsrv_req *r = s->reqs, *n; r; r = n) {
        n = r->next;
        r->srv = NULL;           /* the backend still owes a completion */
        r->prev = r->next = NULL;
    }
    for (size_t i = 0; i < s->n_caps; i++)
        free(s->caps[i]);
    free(s->caps);
    free(s->type);
    json_decref(s->query_params);
    json_decref(s->cache);
    free(s);
}

void mz_mcpsrv_invalidate(mz_mcpsrv *s)
{
    s->gen++;
    json_decref(s->cache);
    s->cache = NULL;
}

static void s_send(mz_mcpsrv *s, uint64_t conn, json_t *msg)
{
    if (msg != NULL)
        s->ops.send(s->ctx, conn, msg);
}

static void s_error(mz_mcpsrv *s, uint64_t conn, const json_t *id, int code, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
static void s_error(mz_mcpsrv *s, uint64_t conn, const json_t *id, int code, const char *fmt,
                    ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_send(s, conn, mz__rpc_error(id, code, msg, NULL));
}

bool mz_mcpsrv_record_matches(const mz_mcpsrv *s, const json_t *record)
{
    const json_t *caps = json_object_get(record, "capabilities");

    if (s->type != NULL) {
        const char *t = json_string_value(json_object_get(record, "resource_type"));
        if (t == NULL || strcmp(t, s->type) != 0)
            return false;
    }
    for (size_t i = 0; i < s->n_caps; i++) {
        bool has = false;
        size_t j;
        json_t *c;
        json_array_foreach(caps, j, c)
            if (json_is_string(c) && strcmp(json_string_value(c), s->caps[i]) == 0)
                has = true;
        if (!has)
            return false;
    }
    return true;
}

/* A resource that speaks MCP's tool shape (imported by a bridge, or
 * registered with an inputSchema): called with method "call" and the
 * arguments as params. Anything else is called as method + params. */
static bool s_mcp_style(const json_t *record)
{
    return json_is_object(json_object_get(json_object_get(record, "metadata"), "inputSchema"));
}

static json_t *s_generic_schema(void)
{
    return json_pack("{s:s,s:{s:{s:s,s:s},s:{s:s,s:s}},s:[s]}", "type", "object", "properties",
                     "method", "type", "string", "description", "the method to call",
                     "params", "type", "object", "description", "the call's parameters",
                     "required", "method");
}

/* A tool's _meta: its own (an imported tool's, as its server listed it)
 * without keys under meshzero's reserved prefix, then meshzero's. NULL
 * when out of memory. */
static json_t *s_tool_meta_keys(const json_t *meta, const char *rid, const char *node)
{
    const json_t *own = json_object_get(meta, "_meta");
    json_t *m = json_object(), *v;
    const char *key;

    if (m == NULL)
        return NULL;
    if (json_is_object(own))
        json_object_foreach((json_t *)own, key, v)
            if (strncmp(key, MZ_MCP_META_PREFIX, sizeof MZ_MCP_META_PREFIX - 1) != 0)
                json_object_set(m, key, v);
    json_object_set_new(m, MZ_MCP_META_PREFIX "resource_id", json_string(rid ? rid : ""));
    json_object_set_new(m, MZ_MCP_META_PREFIX "node", json_string(node ? node : ""));
    return m;
}

/* A tool whose definition changed since its view pinned it: listed with a
 * warning instead of its new text (which is what a rug-pull wants an LLM to
 * read), and with an empty schema; calls are refused until approved. */
static json_t *s_changed_tool_json(const json_t *ent, const json_t *pin)
{
    const char *name = json_string_value(json_object_get(ent, "name"));
    const char *was = json_string_value(json_object_get(pin, "pinned"));
    const char *now = json_string_value(json_object_get(pin, "current"));
    const char *node = json_string_value(json_object_get(json_object_get(ent, "record"), "node"));
    char d[400];

    snprintf(d, sizeof d, "meshzero: the definition of this tool changed since it was pinned "
             "(tool_hash %.12s... now %.12s...). Its new description is withheld and calls are "
             "refused with definition_changed until someone approves it with `meshzero mcp "
             "approve %s`.", was, now, name);
    return json_pack("{s:s,s:s,s:s,s:{s:s},s:{s:s,s:s,s:s,s:{s:s,s:s}}}", "name", name, "title",
                     "definition changed: not approved", "description", d, "inputSchema",
                     "type", "object", "_meta", "meshzero/resource_id",
                     json_string_value(json_object_get(ent, "resource_id")),
                     "meshzero/node", node ? node : "",
                     "meshzero/tool_hash", now, "meshzero/definition_changed", "pinned", was,
                     "current", now);
}

/* True when a record's view pin differs from its current tool_hash. */
static bool s_pin_changed(const json_t *pin)
{
    const char *was = json_string_value(json_object_get(pin, "pinned"));
    const char *now = json_string_value(json_object_get(pin, "current"));

    return was != NULL && now != NULL && strcmp(was, now) != 0;
}

/* The MCP tool for a mapping entry {name, resource_id, record}. */
static json_t *s_tool_json(const json_t *ent)
{
    const json_t *rec = json_object_get(ent, "record");
    const json_t *meta = json_object_get(rec, "metadata");
    const char *rid = json_string_value(json_object_get(ent, "resource_id"));
    const char *node = json_string_value(json_object_get(rec, "node"));
    const char *desc = json_string_value(json_object_get(meta, "description"));
    const char *title = json_string_value(json_object_get(meta, "title"));
    const char *hash = json_string_value(json_object_get(meta, "tool_hash"));
    const json_t *pin = json_object_get(rec, "pin");
    json_t *t, *m;

    if (s_pin_changed(pin))
        return s_changed_tool_json(ent, pin);
    t = json_pack("{s:O}", "name", json_object_get(ent, "name"));
    m = s_tool_meta_keys(meta, rid, node);
    if (t == NULL || m == NULL) {
        json_decref(t);
        json_decref(m);
        return NULL;
    }
    if (title)
        json_object_set_new(t, "title", json_string(title));
    if (desc) {
        json_object_set_new(t, "description", json_string(desc));
    } else {
        char d[400];
        const char *type = json_string_value(json_object_get(rec, "resource_type"));
        snprintf(d, sizeof d, "meshzero resource '%s' (type %s) on node %.12s: give the method "
                 "to call and its params", rid, type ? type : "?", node ? node : "?");
        json_object_set_new(t, "description", json_string(d));
    }
    if (s_mcp_style(rec)) {
        json_object_set(t, "inputSchema", json_object_get(meta, "inputSchema"));
        if (json_is_object(json_object_get(meta, "outputSchema")))
            json_object_set(t, "outputSchema", json_object_get(meta, "outputSchema"));
    } else {
        json_object_set_new(t, "inputSchema", s_generic_schema());
    }
    if (json_is_object(json_object_get(meta, "annotations")))
        json_object_set(t, "annotations", json_object_get(meta, "annotations"));
    if (json_is_array(json_object_get(meta, "icons")))
        json_object_set(t, "icons", json_object_get(meta, "icons"));
    if (hash)
        json_object_set_new(m, MZ_MCP_META_PREFIX "tool_hash", json_string(hash));
    json_object_set_new(t, "_meta", m);
    return t;
}

/* tools/list once the directory answered. */
static void s_finish_list(mz_mcpsrv_req *r, const json_t *records)
{
    mz_mcpsrv *s = r->srv;
    const json_t *cur = json_object_get(r->params, "cursor");
    json_t *map = mz_mcp_map_tools(records), *tools = json_array(), *res;
    size_t off = 0, i;

    if (json_is_string(cur)) {
        char *end;
        unsigned long long v = strtoull(json_string_value(cur), &end, 10);
        if (json_string_value(cur)[0] == '\0' || *end != '\0') {
            s_error(s, r->conn, r->id, MZ_RPC_INVALID_PARAMS, "invalid cursor '%.64s'",
                    json_string_value(cur));
            goto out;
        }
        off = (size_t)v;
    }
    if (map == NULL || tools == NULL) {
        s_error(s, r->conn, r->id, MZ_RPC_INTERNAL, "out of memory");
        goto out;
    }
    for (i = off; i < json_array_size(map) && i < off + MZ_MCP_PAGE; i++) {
        json_t *t = s_tool_json(json_array_get(map, i));
        if (t == NULL || json_array_append_new(tools, t) != 0) {
            s_error(s, r->conn, r->id, MZ_RPC_INTERNAL, "out of memory");
            goto out;
        }
    }
    res = json_pack("{s:O}", "tools", tools);
    if (res != NULL && i < json_array_size(map)) {
        char next[32];
        snprintf(next, sizeof next, "%zu", i);
        json_object_set_new(res, "nextCursor", json_string(next));
    }
    s_send(s, r->conn, mz__rpc_result(r->id, res));
out:
    json_decref(map);
    json_decref(tools);
}

/* tools/call once the directory answered: find the tool, call the resource. */
static bool s_start_call(mz_mcpsrv_req *r, const json_t *records)
{
    mz_mcpsrv *s = r->srv;
    const char *name = json_string_value(json_object_get(r->params, "name"));
    const json_t *args = json_object_get(r->params, "arguments");
    json_t *map = mz_mcp_map_tools(records), *ent = NULL, *empty = NULL;
    const json_t *rec;
    const char *method = "call", *pin;
    size_t i;

    if (map == NULL) {
        s_error(s, r->conn, r->id, MZ_RPC_INTERNAL, "out of memory");
        return false;
    }
    json_array_foreach(map, i, ent)
        if (strcmp(json_string_value(json_object_get(ent, "name")), name) == 0)
            break;
    if (i == json_array_size(map)) {
        json_decref(map);
        s_error(s, r->conn, r->id, MZ_RPC_INVALID_PARAMS, "Unknown tool: %.200s", name);
        return false;
    }
    rec = json_object_get(ent, "record");
    r->resource_id = strdup(json_string_value(json_object_get(ent, "resource_id")));
    /* A view's pin goes with the call: the node checks it before sending. */
    pin = json_string_value(json_object_get(json_object_get(rec, "pin"), "pinned"));
    if (pin != NULL)
        r->tool_hash = strdup(pin);
    if (r->resource_id == NULL || (pin != NULL && r->tool_hash == NULL)) {
        json_decref(map);
        s_error(s, r->conn, r->id, MZ_RPC_INTERNAL, "out of memory");
        return false;
    }
    if (!s_mcp_style(rec)) {
        const json_t *p = json_object_get(args, "params");
        method = json_string_value(json_object_get(args, "method"));
        if (method == NULL || method[0] == '\0' || (p != NULL && !json_is_object(p))) {
            s_error(s, r->conn, r->id, MZ_RPC_INVALID_PARAMS,
                    "tool %.64s is the meshzero resource '%.128s': its arguments need a "
                    "string 'method' and an object 'params'", name, r->resource_id);
            json_decref(map);
            return false;
        }
        args = p;
        r->wrap = true;
    }
    if (args == NULL)
        args = empty = json_object();
    s->ops.execute(s->ctx, r->resource_id, method, args, s->timeout_ms, r);
    json_decref(empty);
    json_decref(map);
    return true;
}

void mz_mcpsrv_query_done(mz_mcpsrv_req *r, const json_t *records, const char *why)
{
    mz_mcpsrv *s = r->srv;

    if (s == NULL || r->cancelled) {
        s_req_free(r);
        return;
    }
    /* Keep the answer unless the directory changed while it was on its way. */
    if (records != NULL && s->cache_ms > 0 && r->gen == s->gen && records != s->cache) {
        json_decref(s->cache);
        s->cache = json_incref((json_t *)records);
        s->cache_until_ms = mz_now_ms() + s->cache_ms;
    }
    if (records == NULL) {
        s_error(s, r->conn, r->id, MZ_RPC_SERVER_ERROR, "directory query failed: %s",
                why ? why : "unknown error");
    } else if (r->kind == MZ_REQ_LIST) {
        s_finish_list(r, records);
    } else if (s_start_call(r, records)) {
        return;                       /* now waiting on execute */
    }
    s_req_free(r);
}

/* A result that is not already an MCP CallToolResult becomes one: its JSON
 * as text, and as structuredContent when it is an object. */
static json_t *s_wrap_result(const json_t *result)
{
    char *text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *out;

    if (text == NULL)
        return NULL;
    out = json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", text);
    free(text);
    if (out != NULL && json_is_object(result))
        json_object_set(out, "structuredContent", (json_t *)result);
    return out;
}

const char *mz_mcpsrv_req_tool_hash(const mz_mcpsrv_req *r)
{
    return r->tool_hash;
}

const json_t *mz_mcpsrv_req_meta(const mz_mcpsrv_req *r)
{
    return json_object_get(r->params, "_meta");
}

void mz_mcpsrv_req_trace(mz_mcpsrv_req *r, const char *traceparent)
{
    snprintf(r->traceparent, sizeof r->traceparent, "%s", traceparent ? traceparent : "");
}

void mz_mcpsrv_req_error_data(mz_mcpsrv_req *r, const json_t *data)
{
    json_decref(r->err_data);
    r->err_data = data ? json_deep_copy(data) : NULL;
}

/* The JSON-RPC error an imported MCP server answered, carried in the mesh
 * error's data: sent to the client as the server gave it. NULL if none. */
static json_t *s_server_error(const mz_mcpsrv_req *r)
{
    const json_t *e = json_object_get(r->err_data, MZ_MCP_ERROR_KEY);
    const json_t *code = json_object_get(e, "code");
    const json_t *msg = json_object_get(e, "message");

    if (!json_is_integer(code) || !json_is_string(msg))
        return NULL;
    return json_pack("{s:s,s:O,s:{s:O,s:O,s:O*}}", "jsonrpc", "2.0", "id",
                     r->id ? r->id : json_null(), "error", "code", code, "message", msg,
                     "data", json_object_get(e, "data"));
}

/* Adds _meta.traceparent to a CallToolResult (takes and returns res). */
static json_t *s_with_trace(const mz_mcpsrv_req *r, json_t *res)
{
    json_t *meta;

    if (res == NULL || r->traceparent[0] == '\0')
        return res;
    meta = json_object_get(res, "_meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(res, "_meta", meta);
    }
    json_object_set_new(meta, "traceparent", json_string(r->traceparent));
    return res;
}

void mz_mcpsrv_exec_done(mz_mcpsrv_req *r, const json_t *result, const char *code,
                         const char *message)
{
    mz_mcpsrv *s = r->srv;

    if (s == NULL || r->cancelled) {
        s_req_free(r);
        return;
    }
    if (code != NULL && strcmp(code, "definition_changed") == 0)
        mz_mcpsrv_invalidate(s);    /* the list shows the tool as changed from now on */
    json_t *server_err = code != NULL ? s_server_error(r) : NULL;

    if (server_err != NULL) {
        s_send(s, r->conn, server_err);
    } else if (code != NULL) {
        /* A mesh failure (the tool never ran, or its host failed) is a
         * protocol error; a tool's own failure arrives as a result with
         * isError and is passed on as such. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", code, message ? message : "");
        s_send(s, r->conn,
               mz__rpc_error(r->id, MZ_RPC_SERVER_ERROR, msg,
                             json_pack("{s:s,s:s,s:s}", "code", code, "message",
                                       message ? message : "", "resource_id", r->resource_id)));
    } else if (!r->wrap && json_is_object(result) &&
               json_is_array(json_object_get(result, "content"))) {
        s_send(s, r->conn, mz__rpc_result(r->id, s_with_trace(r, json_deep_copy(result))));
    } else {
        json_t *w = s_wrap_result(result ? result : json_null());
        if (w == NULL)
            s_error(s, r->conn, r->id, MZ_RPC_INTERNAL, "out of memory");
        else
            s_send(s, r->conn, mz__rpc_result(r->id, s_with_trace(r, w)));
    }
    s_req_free(r);
}

static mz_mcp_outcome s_start(mz_mcpsrv *s, uint64_t conn, const json_t *id, mz_req_kind kind,
                              const json_t *params)
{
    mz_mcpsrv_req *r = calloc(1, sizeof *r);

    if (r == NULL || (r->id = json_deep_copy(id)) == NULL ||
        (r->params = params ? json_deep_copy(params) : json_object()) == NULL) {
        if (r) {
            json_decref(r->id);
            free(r);
        }
        s_error(s, conn, id, MZ_RPC_INTERNAL, "out of memory");
        return MZ_MCP_REPLIED;
    }
    r->srv = s;
    r->conn = conn;
    r->kind = kind;
    r->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
    r->gen = s->gen;
    if (s->cache != NULL && mz_now_ms() < s->cache_until_ms) {
        json_t *c = json_incref(s->cache);
        mz_mcpsrv_query_done(r, c, NULL);
        json_decref(c);
        return MZ_MCP_PENDING;
    }
    /* The query may complete right here (an in-process backend): then the
     * answer went out before we return, and r is gone. */
    s->ops.query(s->ctx, s->query_params, r);
    return MZ_MCP_PENDING;
}

static mz_mcp_outcome m_initialize(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                                   const json_t *params)
{
    const json_t *v = json_object_get(params, "protocolVersion");
    json_t *res;

    if (v != NULL && !json_is_string(v)) {
        s_error(s, conn, id, MZ_RPC_INVALID_PARAMS, "protocolVersion must be a string");
        return MZ_MCP_REPLIED;
    }
    res = json_pack("{s:s,s:{s:{s:b}},s:{s:s,s:s,s:s},s:s}", "protocolVersion",
                    mz_mcp_negotiate(json_string_value(v)), "capabilities", "tools",
                    "listChanged", 1, "serverInfo", "name", "meshzero", "title",
                    "meshzero mesh", "version", MZ_BRIDGE_SOFTWARE_VERSION, "instructions",
                    "The tools are resources of a meshzero mesh: each call runs on the node "
                    "that hosts the resource, which may be several hops away.");
    s_send(s, conn, mz__rpc_result(id, res));
    return MZ_MCP_REPLIED;
}

static mz_mcp_outcome m_ping(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                             const json_t *params)
{
    (void)params;
    s_send(s, conn, mz__rpc_result(id, json_object()));
    return MZ_MCP_REPLIED;
}

static mz_mcp_outcome m_tools_list(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                                   const json_t *params)
{
    const json_t *cur = json_object_get(params, "cursor");

    if (cur != NULL && !json_is_string(cur) && !json_is_null(cur)) {
        s_error(s, conn, id, MZ_RPC_INVALID_PARAMS, "cursor must be a string");
        return MZ_MCP_REPLIED;
    }
    return s_start(s, conn, id, MZ_REQ_LIST, params);
}

static mz_mcp_outcome m_tools_call(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                                   const json_t *params)
{
    const json_t *args = json_object_get(params, "arguments");

    if (!json_is_string(json_object_get(params, "name"))) {
        s_error(s, conn, id, MZ_RPC_INVALID_PARAMS, "tools/call needs params.name (a string)");
        return MZ_MCP_REPLIED;
    }
    if (args != NULL && !json_is_object(args) && !json_is_null(args)) {
        s_error(s, conn, id, MZ_RPC_INVALID_PARAMS, "params.arguments must be an object");
        return MZ_MCP_REPLIED;
    }
    return s_start(s, conn, id, MZ_REQ_CALL, params);
}

static const struct mz_mcp_method {
    const char *name;
    mz_mcp_outcome (*fn)(mz_mcpsrv *s, uint64_t conn, const json_t *id, const json_t *params);
} s_methods[] = {
    { "initialize", m_initialize },
    { "ping",       m_ping },
    { "tools/list", m_tools_list },
    { "tools/call", m_tools_call },
};

static void s_on_cancelled(mz_mcpsrv *s, uint64_t conn, const json_t *params)
{
    const json_t *rid = json_object_get(params, "requestId");

    for (mz_mcpsrv_req *r = s->reqs; r; r = r->next)
        if (r->conn == conn && !r->cancelled && json_equal(r->id, rid)) {
            r->cancelled = true;
            if (s->reply_cancelled)
                s_error(s, conn, r->id, MZ_RPC_CANCELLED, "request cancelled by the client");
        }
}

void mz_mcpsrv_conn_closed(mz_mcpsrv *s, uint64_t conn)
{
    for (mz_mcpsrv_req *r = s->reqs; r; r = r->next)
        if (r->conn == conn)
            r->cancelled = true;
}

mz_mcp_outcome mz_mcpsrv_handle(mz_mcpsrv *s, uint64_t conn, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    const json_t *id, *params, *jv;
    const char *method;
    mz_mcp_outcome out = MZ_MCP_REPLIED;

    if (msg == NULL) {
        s_error(s, conn, NULL, MZ_RPC_PARSE_ERROR, "parse error at line %d column %d: %s",
                jerr.line, jerr.column, jerr.text);
        return MZ_MCP_REPLIED;
    }
    if (json_is_array(msg)) {
        s_error(s, conn, NULL, MZ_RPC_INVALID_REQ,
                "JSON-RPC batches are not supported (MCP 2025-06-18 removed them)");
        goto done;
    }
    if (!json_is_object(msg)) {
        s_error(s, conn, NULL, MZ_RPC_INVALID_REQ, "invalid request: not a JSON object");
        goto done;
    }
    id = json_object_get(msg, "id");
    method = json_string_value(json_object_get(msg, "method"));
    params = json_object_get(msg, "params");
    jv = json_object_get(msg, "jsonrpc");
    if (id != NULL && !json_is_string(id) && !json_is_integer(id)) {
        s_error(s, conn, NULL, MZ_RPC_INVALID_REQ,
                "invalid request: id must be a string or an integer");
        goto done;
    }
    if (!json_is_string(jv) || strcmp(json_string_value(jv), "2.0") != 0) {
        s_error(s, conn, id, MZ_RPC_INVALID_REQ, "invalid request: jsonrpc must be \"2.0\"");
        goto done;
    }
    if (method == NULL) {
        if (id != NULL && (json_object_get(msg, "result") || json_object_get(msg, "error"))) {
            out = MZ_MCP_NO_REPLY;   /* a response: we send no requests, so nothing waits */
            goto done;
        }
        s_error(s, conn, id, MZ_RPC_INVALID_REQ, "invalid request: method must be a string");
        goto done;
    }
    if (params != NULL && !json_is_object(params)) {
        if (id == NULL) {
            out = MZ_MCP_NO_REPLY;
            goto done;
        }
        s_error(s, conn, id, MZ_RPC_INVALID_PARAMS, "params must be an object");
        goto done;
    }
    if (id == NULL) {
        /* Notifications are never answered; unknown ones are ignored. */
        if (strcmp(method, "notifications/cancelled") == 0)
            s_on_cancelled(s, conn, params);
        out = MZ_MCP_NO_REPLY;
        goto done;
    }
    for (size_t i = 0; i < sizeof s_methods / sizeof s_methods[0]; i++)
        if (strcmp(method, s_methods[i].name) == 0) {
            out = s_methods[i].fn(s, conn, id, params);
            goto done;
        }
    s_error(s, conn, id, MZ_RPC_NO_METHOD, "method not found: '%.100s'", method);
done:
    json_decref(msg);
    return out;
}
