/* The export server's resources, resource templates, prompts and
 * completions (mz_mcpsrv, bridge_mcp.c, hands these methods here).
 *
 * They come from the records of type mcp-server (bridge_res.c): a list is a
 * directory query, then the MCP method executed on every matching record,
 * the answers merged; a read, subscribe, get or complete is executed on the
 * record its URI or name designates. Names stay collision-free and need no
 * earlier listing: URIs become meshzero://<record id>/<the server's URI>,
 * prompt names <record id>/<the server's name>. docs/MCP.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_int.h"
#include "util/hmap.h"

#define MZ_URI_PREFIX "meshzero://"
#define MZ_URI_PREFIX_LEN 11
#define MZ_STR_(x) #x
#define MZ_STR(x) MZ_STR_(x)
/* MCP's error code for a resource that does not exist. */
#define MZ_RPC_NO_RESOURCE (-32002)

typedef enum { MZ_X_LIST, MZ_X_ONE, MZ_X_INIT } mz_xshape;

/* How one method crosses the mesh. */
typedef struct mz_xmethod {
    const char *name;
    mz_xshape shape;
    const char *cap;            /* the record capability it needs */
    const char *items;          /* lists: the result's array */
    const char *field;          /* lists: the member of each item to export */
} mz_xmethod;

static const mz_xmethod s_xmethods[] = {
    { "resources/list", MZ_X_LIST, "mcp-resources", "resources", "uri" },
    { "resources/templates/list", MZ_X_LIST, "mcp-resources", "resourceTemplates",
      "uriTemplate" },
    { "prompts/list", MZ_X_LIST, "mcp-prompts", "prompts", "name" },
    { "resources/read", MZ_X_ONE, "mcp-resources", NULL, NULL },
    { "resources/subscribe", MZ_X_ONE, "mcp-subscribe", NULL, NULL },
    { "resources/unsubscribe", MZ_X_ONE, "mcp-subscribe", NULL, NULL },
    { "prompts/get", MZ_X_ONE, "mcp-prompts", NULL, NULL },
    { "completion/complete", MZ_X_ONE, "mcp-completions", NULL, NULL },
};
static const mz_xmethod s_init = { "initialize", MZ_X_INIT, NULL, NULL, NULL };

/* One client request, and the requests it made. */
typedef struct mz_xop {
    const mz_xmethod *m;
    mz_mcpsrv_req *main;        /* carries the client's id: cancellation finds it */
    json_t *params;             /* the client's params */
    json_t *init;               /* initialize: the answer being completed */
    json_t *items;              /* lists: merged items */
    json_t *cursors;            /* lists: [[record id, cursor]] still to page */
    json_t *one;                /* X_ONE: the result */
    char code[32];              /* a mesh failure of X_ONE, or "" */
    char message[256];
    char rid[MZ_RESOURCE_ID_MAX + 1];
    size_t failed, answered;
    int pending;                /* requests not yet complete, main included */
} mz_xop;

/* The export server's own state: exported URIs subscribed to. */
typedef struct mz_xstate {
    mz_hmap *subs;
} mz_xstate;

/* What a request's ext points to. */
typedef struct mz_xref {
    mz_xop *op;
    char rid[MZ_RESOURCE_ID_MAX + 1];
} mz_xref;

static void x_free(void *state)
{
    mz_xstate *x = state;

    if (x == NULL)
        return;
    mz_hmap_free(x->subs, NULL);
    free(x);
}

static mz_xstate *s_state(mz_mcpsrv *s)
{
    void **slot = mz__mcpsrv_res_slot(s);
    mz_xstate *x = *slot;

    if (x == NULL && (x = calloc(1, sizeof *x)) != NULL) {
        if ((x->subs = mz_hmap_new()) == NULL) {
            free(x);
            return NULL;
        }
        *slot = x;
    }
    return x;
}

static bool x_knows(const char *method)
{
    for (size_t i = 0; i < sizeof s_xmethods / sizeof s_xmethods[0]; i++)
        if (strcmp(method, s_xmethods[i].name) == 0)
            return true;
    return false;
}

/* ---- names ---------------------------------------------------------------- */

/* A record id fit for names: no '/', which separates it from the server's part. */
static bool s_rid_ok(const char *rid)
{
    return rid != NULL && rid[0] != '\0' && strchr(rid, '/') == NULL &&
           strlen(rid) <= MZ_RESOURCE_ID_MAX;
}

/* True when a directory record (borrowed) is a server record offering cap
 * (NULL: anything). Checked here: a view's backend answers with its own set. */
static bool s_offers(const json_t *rec, const char *cap)
{
    const char *type = json_string_value(json_object_get(rec, "resource_type"));
    const json_t *c;
    size_t i;

    if (type == NULL || strcmp(type, MZ_MCP_SERVER_TYPE) != 0 ||
        !s_rid_ok(json_string_value(json_object_get(rec, "resource_id"))))
        return false;
    if (cap == NULL)
        return true;
    json_array_foreach(json_object_get(rec, "capabilities"), i, c)
        if (json_is_string(c) && strcmp(json_string_value(c), cap) == 0)
            return true;
    return false;
}

/* Returns new: meshzero://RID/ORIG (or RID/ORIG for prompts). */
static json_t *s_export_name(bool uri, const char *rid, const char *orig)
{
    size_t n = strlen(rid) + strlen(orig) + MZ_URI_PREFIX_LEN + 2;
    char *buf = malloc(n);
    json_t *v;

    if (buf == NULL)
        return NULL;
    snprintf(buf, n, "%s%s/%s", uri ? MZ_URI_PREFIX : "", rid, orig);
    v = json_string(buf);
    free(buf);
    return v;
}

/* Splits an exported URI (prefixed) or prompt name into record id and the
 * server's part. False when it is not one of ours. */
static bool s_split(const char *name, bool uri, char rid[MZ_RESOURCE_ID_MAX + 1],
                    const char **orig)
{
    const char *slash;

    if (name == NULL)
        return false;
    if (uri) {
        if (strncmp(name, MZ_URI_PREFIX, MZ_URI_PREFIX_LEN) != 0)
            return false;
        name += MZ_URI_PREFIX_LEN;
    }
    slash = strchr(name, '/');
    if (slash == NULL || slash == name || slash[1] == '\0' ||
        (size_t)(slash - name) > MZ_RESOURCE_ID_MAX)
        return false;
    memcpy(rid, name, (size_t)(slash - name));
    rid[slash - name] = '\0';
    *orig = slash + 1;
    return true;
}

/* Replaces the string member key of obj by its exported form. */
static void s_export_member(json_t *obj, const char *key, const char *rid, bool uri)
{
    const char *v = json_string_value(json_object_get(obj, key));
    json_t *n;

    if (v == NULL)
        return;
    n = s_export_name(uri, rid, v);
    if (n != NULL)
        json_object_set_new(obj, key, n);
}

/* One content item: an embedded resource's or a resource link's URI. */
static void s_export_content(json_t *c, const char *rid)
{
    const char *type = json_string_value(json_object_get(c, "type"));

    if (type == NULL)
        return;
    if (strcmp(type, "resource") == 0 && json_is_object(json_object_get(c, "resource")))
        s_export_member(json_object_get(c, "resource"), "uri", rid, true);
    else if (strcmp(type, "resource_link") == 0)
        s_export_member(c, "uri", rid, true);
}

/* URIs inside a read or prompts/get result become exported ones, so that
 * the client can read what it was shown. */
static void s_export_result(json_t *res, const char *rid)
{
    json_t *v;
    size_t i;

    json_array_foreach(json_object_get(res, "contents"), i, v)
        s_export_member(v, "uri", rid, true);
    json_array_foreach(json_object_get(res, "messages"), i, v)
        s_export_content(json_object_get(v, "content"), rid);
}

static void x_export_links(json_t *result, const char *rid)
{
    json_t *v;
    size_t i;

    json_array_foreach(json_object_get(result, "content"), i, v)
        s_export_content(v, rid);
}

static char *x_links_rid(const json_t *rec)
{
    const char *b = json_string_value(json_object_get(json_object_get(rec, "metadata"),
                                                      "bridge"));
    const char *type = json_string_value(json_object_get(rec, "resource_type"));

    if (type == NULL || strcmp(type, "tool") != 0 || !s_rid_ok(b))
        return NULL;
    return strdup(b);
}

/* ---- requests ------------------------------------------------------------------ */

static void s_op_free(mz_xop *op)
{
    json_decref(op->params);
    json_decref(op->init);
    json_decref(op->items);
    json_decref(op->cursors);
    json_decref(op->one);
    free(op);
}

static void s_finish(mz_xop *op);

/* One of op's requests completed. */
static void s_release(mz_xop *op)
{
    if (--op->pending > 0)
        return;
    s_finish(op);
    mz__mcpsrv_req_free(op->main);
    s_op_free(op);
}

static void s_reply_error(mz_xop *op, int code, const char *fmt, const char *arg)
{
    mz_mcpsrv *s = mz__mcpsrv_req_live(op->main);
    char msg[300];

    if (s == NULL)
        return;
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    mz__mcpsrv_send(s, mz__mcpsrv_req_conn(op->main),
                    mz__rpc_error(mz__mcpsrv_req_id(op->main), code, msg, NULL));
}

/* Starts one request of op on record rid. */
static void s_sub(mz_xop *op, const char *rid, const char *method, const json_t *params)
{
    mz_mcpsrv *s = mz__mcpsrv_req_live(op->main);
    mz_xref *ref = calloc(1, sizeof *ref);
    mz_mcpsrv_req *r;

    if (s == NULL || ref == NULL ||
        (r = mz__mcpsrv_req_new(s, mz__mcpsrv_req_conn(op->main), NULL, ref)) == NULL) {
        free(ref);
        op->failed++;
        return;
    }
    ref->op = op;
    snprintf(ref->rid, sizeof ref->rid, "%s", rid);
    op->pending++;
    mz__mcpsrv_execute(r, rid, method, params);
}

static mz_mcp_outcome s_begin(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                              const mz_xmethod *m, const json_t *params, const char *rid,
                              json_t *init)
{
    mz_xop *op = calloc(1, sizeof *op);
    json_t *q = json_pack("{s:s}", "resource_type", MZ_MCP_SERVER_TYPE);
    json_t *caps = json_array();
    const json_t *v;
    size_t i;

    if (op == NULL || q == NULL || caps == NULL ||
        (op->main = mz__mcpsrv_req_new(s, conn, id, op)) == NULL) {
        free(op);
        json_decref(q);
        json_decref(caps);
        json_decref(init);
        mz__mcpsrv_send(s, conn, mz__rpc_error(id, MZ_RPC_INTERNAL, "out of memory", NULL));
        return MZ_MCP_REPLIED;
    }
    op->m = m;
    op->params = params ? json_deep_copy(params) : json_object();
    op->init = init;
    op->pending = 1;
    snprintf(op->rid, sizeof op->rid, "%s", rid ? rid : "");
    json_array_foreach(mz__mcpsrv_caps(s), i, v)
        json_array_append(caps, (json_t *)v);
    if (m->cap != NULL)
        json_array_append_new(caps, json_string(m->cap));
    json_object_set_new(q, "capabilities", caps);
    /* Held across the query: a backend that answers at once (in-process)
     * leaves only this hold, and the answer goes out when it is dropped. */
    op->pending++;
    mz__mcpsrv_query(op->main, q);
    json_decref(q);
    if (op->pending == 1) {
        s_release(op);
        return MZ_MCP_REPLIED;
    }
    s_release(op);
    return MZ_MCP_PENDING;
}

static mz_mcp_outcome x_initialize(mz_mcpsrv *s, uint64_t conn, const json_t *id, json_t *res)
{
    return s_begin(s, conn, id, &s_init, NULL, NULL, res);
}

/* ---- validation ----------------------------------------------------------------- */

/* The designated record id and the params to send it (new), or an error
 * sent and NULL. */
static json_t *s_target(mz_mcpsrv *s, uint64_t conn, const json_t *id, const mz_xmethod *m,
                        const json_t *params, char rid[MZ_RESOURCE_ID_MAX + 1])
{
    bool prompt = strncmp(m->name, "prompts/", 8) == 0;
    const json_t *ref = json_object_get(params, "ref");
    const char *key = prompt ? "name" : "uri", *orig, *name;
    json_t *out;

    if (strcmp(m->name, "completion/complete") == 0) {
        const char *t = json_string_value(json_object_get(ref, "type"));
        prompt = t != NULL && strcmp(t, "ref/prompt") == 0;
        key = prompt ? "name" : "uri";
        if (t == NULL || (!prompt && strcmp(t, "ref/resource") != 0)) {
            mz__mcpsrv_send(s, conn, mz__rpc_error(id, MZ_RPC_INVALID_PARAMS,
                            "completion/complete needs params.ref of type ref/prompt or "
                            "ref/resource", NULL));
            return NULL;
        }
    } else {
        ref = params;
    }
    name = json_string_value(json_object_get(ref, key));
    if (!s_split(name, !prompt, rid, &orig)) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s '%.200s' is not one this server listed (%s)",
                 prompt ? "prompt" : "URI", name ? name : "(missing)",
                 prompt ? "RECORD/NAME" : MZ_URI_PREFIX "RECORD/URI");
        mz__mcpsrv_send(s, conn, mz__rpc_error(id, prompt ? MZ_RPC_INVALID_PARAMS
                                                          : MZ_RPC_NO_RESOURCE, msg, NULL));
        return NULL;
    }
    out = json_deep_copy(params);
    if (out == NULL)
        return NULL;
    json_object_set_new(ref == params ? out : json_object_get(out, "ref"), key,
                        json_string(orig));
    return out;
}

static mz_mcp_outcome x_handle(mz_mcpsrv *s, uint64_t conn, const json_t *id,
                                 const char *method, const json_t *params)
{
    const mz_xmethod *m = NULL;
    const json_t *cur = json_object_get(params, "cursor");
    char rid[MZ_RESOURCE_ID_MAX + 1];
    json_t *fwd;
    mz_mcp_outcome out;

    for (size_t i = 0; i < sizeof s_xmethods / sizeof s_xmethods[0]; i++)
        if (strcmp(method, s_xmethods[i].name) == 0)
            m = &s_xmethods[i];
    if (m->shape == MZ_X_LIST) {
        if (cur != NULL && !json_is_string(cur) && !json_is_null(cur)) {
            mz__mcpsrv_send(s, conn, mz__rpc_error(id, MZ_RPC_INVALID_PARAMS,
                                                   "cursor must be a string", NULL));
            return MZ_MCP_REPLIED;
        }
        return s_begin(s, conn, id, m, params, NULL, NULL);
    }
    if (strcmp(method, "resources/subscribe") == 0 && s_state(s) != NULL &&
        mz_hmap_count(s_state(s)->subs) >= MZ_MCP_MAX_SUBSCRIPTIONS) {
        mz__mcpsrv_send(s, conn, mz__rpc_error(id, MZ_RPC_INVALID_PARAMS,
                        "already " MZ_STR(MZ_MCP_MAX_SUBSCRIPTIONS) " subscriptions, the "
                        "limit (MZ_MCP_MAX_SUBSCRIPTIONS): unsubscribe some first", NULL));
        return MZ_MCP_REPLIED;
    }
    if ((fwd = s_target(s, conn, id, m, params, rid)) == NULL)
        return MZ_MCP_REPLIED;
    out = s_begin(s, conn, id, m, fwd, rid, NULL);
    json_decref(fwd);
    return out;
}

/* ---- completions ------------------------------------------------------------ */

/* The records (borrowed) a list goes to, with the cursor each gets. */
static void s_fan_out(mz_xop *op, const json_t *records)
{
    const char *cur = json_string_value(json_object_get(op->params, "cursor"));
    json_t *pages = NULL, *rec, *pg;
    size_t i, j;

    if (cur != NULL && cur[0] != '\0') {
        pages = json_loads(cur, 0, NULL);
        if (!json_is_array(pages)) {
            json_decref(pages);
            s_reply_error(op, MZ_RPC_INVALID_PARAMS, "invalid cursor '%.64s'", cur);
            op->failed = SIZE_MAX;
            return;
        }
    }
    op->items = json_array();
    op->cursors = json_array();
    json_array_foreach(records, i, rec) {
        const char *rid = json_string_value(json_object_get(rec, "resource_id"));
        json_t *p = json_object();
        if (!s_offers(rec, op->m->cap) || p == NULL) {
            json_decref(p);
            continue;
        }
        if (pages != NULL) {
            json_t *c = NULL;
            json_array_foreach(pages, j, pg)
                if (json_is_string(json_array_get(pg, 0)) &&
                    strcmp(json_string_value(json_array_get(pg, 0)), rid) == 0)
                    c = json_array_get(pg, 1);
            if (!json_is_string(c)) {
                json_decref(p);
                continue;
            }
            json_object_set(p, "cursor", c);
        }
        s_sub(op, rid, op->m->name, p);
        json_decref(p);
    }
    json_decref(pages);
}

static void x_query_done(mz_mcpsrv_req *r, const json_t *records, const char *why)
{
    mz_xop *op = mz__mcpsrv_req_ext(r);
    const json_t *rec;
    bool found = false;
    size_t i;

    if (mz__mcpsrv_req_live(r) == NULL || records == NULL) {
        if (records == NULL && op->m->shape != MZ_X_INIT)
            s_reply_error(op, MZ_RPC_SERVER_ERROR, "directory query failed: %s",
                          why ? why : "unknown error");
        if (op->m->shape != MZ_X_INIT || records != NULL)
            op->failed = SIZE_MAX;
    } else if (op->m->shape == MZ_X_INIT) {
        op->items = json_incref((json_t *)records);
    } else if (op->m->shape == MZ_X_LIST) {
        s_fan_out(op, records);
    } else {
        json_array_foreach(records, i, rec)
            found = found || (s_offers(rec, op->m->cap) &&
                              strcmp(json_string_value(json_object_get(rec, "resource_id")),
                                     op->rid) == 0);
        if (!found) {
            bool prompt = strncmp(op->m->name, "prompts/", 8) == 0;
            s_reply_error(op, prompt ? MZ_RPC_INVALID_PARAMS : MZ_RPC_NO_RESOURCE,
                          "no MCP server '%s' offering that is in this mesh (or in this "
                          "server's view of it)", op->rid);
            op->failed = SIZE_MAX;
        } else {
            s_sub(op, op->rid, op->m->name, op->params);
        }
    }
    s_release(op);
}

/* A list answer of one record: its items exported and merged, its next
 * page remembered. */
static void s_merge(mz_xop *op, const char *rid, const json_t *result)
{
    const char *next = json_string_value(json_object_get(result, "nextCursor"));
    const json_t *items = json_object_get(result, op->m->items);
    json_t *it;
    size_t i;

    if (!json_is_array(items)) {
        op->failed++;
        return;
    }
    op->answered++;
    json_array_foreach(items, i, it) {
        json_t *c = json_deep_copy(it);
        if (c == NULL)
            continue;
        s_export_member(c, op->m->field, rid, strcmp(op->m->field, "name") != 0);
        json_array_append_new(op->items, c);
    }
    if (next != NULL && next[0] != '\0')
        json_array_append_new(op->cursors, json_pack("[s,s]", rid, next));
}

static void x_exec_done(mz_mcpsrv_req *r, const json_t *result, const char *code,
                          const char *message)
{
    mz_xref *ref = mz__mcpsrv_req_ext(r);
    mz_xop *op = ref->op;

    if (op->failed != SIZE_MAX && mz__mcpsrv_req_live(op->main) != NULL) {
        if (code != NULL) {
            op->failed++;
            snprintf(op->code, sizeof op->code, "%s", code);
            snprintf(op->message, sizeof op->message, "%s", message ? message : "");
        } else if (op->m->shape == MZ_X_LIST) {
            s_merge(op, ref->rid, result);
        } else if (!json_is_object(result)) {
            op->failed++;
            snprintf(op->code, sizeof op->code, "%s", MZ_EXEC_HANDLER_ERROR);
            snprintf(op->message, sizeof op->message, "the MCP server answered no object");
        } else {
            op->one = json_deep_copy(result);
            s_export_result(op->one, ref->rid);
        }
    }
    mz__mcpsrv_req_free(r);
    free(ref);
    s_release(op);
}

/* initialize: what the mesh's records offer, and nothing more. */
static void s_finish_init(mz_xop *op, mz_mcpsrv *s)
{
    json_t *caps = json_object_get(op->init, "capabilities"), *rec;
    bool res = false, sub = false, prompts = false, comp = false;
    size_t i;

    json_array_foreach(op->items, i, rec) {
        res = res || s_offers(rec, "mcp-resources");
        sub = sub || s_offers(rec, "mcp-subscribe");
        prompts = prompts || s_offers(rec, "mcp-prompts");
        comp = comp || s_offers(rec, "mcp-completions");
    }
    if (res)
        json_object_set_new(caps, "resources",
                            json_pack("{s:b,s:b}", "subscribe", sub, "listChanged", 1));
    if (prompts)
        json_object_set_new(caps, "prompts", json_pack("{s:b}", "listChanged", 1));
    if (comp)
        json_object_set_new(caps, "completions", json_object());
    mz__mcpsrv_send(s, mz__mcpsrv_req_conn(op->main),
                    mz__rpc_result(mz__mcpsrv_req_id(op->main), json_incref(op->init)));
}

/* Subscriptions are remembered once the host accepted them. */
static void s_note_sub(mz_xop *op, mz_mcpsrv *s)
{
    mz_xstate *x = s_state(s);
    const char *orig = json_string_value(json_object_get(op->params, "uri"));
    json_t *ex;

    if (x == NULL || orig == NULL || (ex = s_export_name(true, op->rid, orig)) == NULL)
        return;
    if (strcmp(op->m->name, "resources/subscribe") == 0)
        (void)mz_hmap_put(x->subs, json_string_value(ex), (void *)1, NULL);
    else
        mz_hmap_remove(x->subs, json_string_value(ex));
    json_decref(ex);
}

static void s_finish(mz_xop *op)
{
    mz_mcpsrv *s = mz__mcpsrv_req_live(op->main);
    uint64_t conn = s ? mz__mcpsrv_req_conn(op->main) : 0;
    const json_t *id = s ? mz__mcpsrv_req_id(op->main) : NULL;
    json_t *res;

    if (s == NULL || op->failed == SIZE_MAX)
        return;
    if (op->m->shape == MZ_X_INIT) {
        s_finish_init(op, s);
    } else if (op->m->shape == MZ_X_ONE && op->one == NULL) {
        char msg[320];
        snprintf(msg, sizeof msg, "%s: %s", op->code[0] ? op->code : MZ_EXEC_HANDLER_ERROR,
                 op->message);
        mz__mcpsrv_send(s, conn, mz__rpc_error(id, MZ_RPC_SERVER_ERROR, msg,
                        json_pack("{s:s,s:s,s:s}", "code", op->code, "message", op->message,
                                  "resource_id", op->rid)));
    } else if (op->m->shape == MZ_X_ONE) {
        if (strstr(op->m->name, "subscribe") != NULL)
            s_note_sub(op, s);
        mz__mcpsrv_send(s, conn, mz__rpc_result(id, json_incref(op->one)));
    } else if (op->answered == 0 && op->failed > 0) {
        s_reply_error(op, MZ_RPC_SERVER_ERROR, "every MCP server failed to answer: %s",
                      op->message);
    } else {
        res = json_pack("{s:O}", op->m->items, op->items);
        if (res != NULL && json_array_size(op->cursors) > 0) {
            char *c = json_dumps(op->cursors, JSON_COMPACT);
            json_object_set_new(res, "nextCursor", json_string(c ? c : ""));
            free(c);
        }
        mz__mcpsrv_send(s, conn, mz__rpc_result(id, res));
    }
}

/* ---- events ------------------------------------------------------------------ */

static json_t *s_note(const char *method, const json_t *params)
{
    json_t *m = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", method);

    if (m != NULL && params != NULL)
        json_object_set_new(m, "params", json_deep_copy(params));
    return m;
}

/* A server record came, changed or went: its lists changed. */
static void s_record_event(mz_mcpsrv *s, const json_t *rec, json_t *out)
{
    const json_t *want = mz__mcpsrv_caps(s), *w, *c;
    bool res = false, prompts = false;
    size_t i, j;

    json_array_foreach(want, i, w) {
        bool has = false;
        json_array_foreach(json_object_get(rec, "capabilities"), j, c)
            has = has || json_equal(c, w);
        if (!has)
            return;             /* not in this server's view */
    }
    res = s_offers(rec, "mcp-resources");
    prompts = s_offers(rec, "mcp-prompts");
    if (res)
        json_array_append_new(out, s_note("notifications/resources/list_changed", NULL));
    if (prompts)
        json_array_append_new(out, s_note("notifications/prompts/list_changed", NULL));
}

json_t *mz_mcpsrv_event(mz_mcpsrv *s, const char *topic, const json_t *data)
{
    const char *rid = json_string_value(json_object_get(data, "resource_id"));
    const char *uri = json_string_value(json_object_get(data, "uri"));
    const char *kind = json_string_value(json_object_get(data, "kind"));
    const char *type = json_string_value(json_object_get(data, "resource_type"));
    mz_xstate *x = s_state(s);
    json_t *ex, *out = json_array();

    if (topic == NULL || !s_rid_ok(rid) || x == NULL || out == NULL) {
        json_decref(out);
        return NULL;
    }
    if (strcmp(topic, MZ_MCP_TOPIC_UPDATED) == 0 && uri != NULL) {
        if ((ex = s_export_name(true, rid, uri)) != NULL &&
            mz_hmap_get(x->subs, json_string_value(ex)) != NULL)
            json_array_append_new(out, json_pack("{s:s,s:s,s:{s:O}}", "jsonrpc", "2.0",
                                                 "method", "notifications/resources/updated",
                                                 "params", "uri", ex));
        json_decref(ex);
    } else if (strcmp(topic, MZ_MCP_TOPIC_LIST_CHANGED) == 0 && kind != NULL) {
        json_array_append_new(out, s_note(strcmp(kind, "prompts") == 0
                                              ? "notifications/prompts/list_changed"
                                              : "notifications/resources/list_changed", NULL));
    } else if (strncmp(topic, "resource.", 9) == 0 && type != NULL &&
               strcmp(type, MZ_MCP_SERVER_TYPE) == 0) {
        s_record_event(s, data, out);
    }
    if (json_array_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static const mz_mcpsrv_ext s_ext = {
    x_knows, x_handle, x_initialize, x_query_done, x_exec_done, x_free, x_links_rid,
    x_export_links,
};

const mz_mcpsrv_ext *mz_mcpsrv_resources(void)
{
    return &s_ext;
}
