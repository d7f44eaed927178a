/* The local API: JSON-RPC 2.0 over WebSocket for programs on this machine.
 * One row per method in s_methods; docs/PROTOCOL.md "Local API". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/agreement.h"
#include "util/log.h"
#include "core/node_int.h"
#include "core/pins.h"
#include "svc/mcp_view.h"
#include "bridge/bridge_int.h"
#include "svc/http.h"
#include "util/nearest.h"

/* JSON-RPC error codes (the spec's, plus one server range code). */
#define RPC_PARSE_ERROR    (-32700)
#define RPC_INVALID_REQ    (-32600)
#define RPC_NO_METHOD      (-32601)
#define RPC_INVALID_PARAMS (-32602)
#define RPC_SERVER_ERROR   (-32000)

typedef struct mz_api_client {
    mz_link *link;              /* borrowed; NULL after close */
    uint64_t link_id;
    struct mz_api *api;
    json_t *subs;               /* array of subscription ids (integers) */
    json_t *handled;            /* array of resource ids this client serves */
    mz_hmap *pushed;            /* "x<N>" -> mz_exec* awaiting this client's answer */
    uint64_t next_push;
    struct mz_api_client *next;
} mz_api_client;

typedef struct mz_api {
    mz_node *node;
    mz_api_client *clients;
    uint64_t calls, errors;
} mz_api;

/* A method answers with *result (new reference) or an error; returning
 * RPC_ASYNC means it will answer later through s_reply. */
#define RPC_ASYNC 1
typedef int (*mz_method_fn)(mz_api *api, mz_api_client *c, const json_t *id,
                            const json_t *params, json_t **result, mz_err *err);

static void s_send(mz_api_client *c, json_t *msg)
{
    char *buf;

    if (msg == NULL)
        return;
    buf = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (buf == NULL)
        return;
    if (c->link && !mz_link_closing(c->link))
        (void)mz_link_send(c->link, buf, strlen(buf), NULL);
    free(buf);
}

static void s_reply(mz_api_client *c, const json_t *id, json_t *result)
{
    s_send(c, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                        "result", result ? result : json_null()));
}

static void s_reply_error(mz_api_client *c, const json_t *id, int code, mz_status st,
                          const char *msg)
{
    json_t *e = json_pack("{s:i,s:s}", "code", code, "message", msg);

    if (st != MZ_OK)
        json_object_set_new(e, "data", json_pack("{s:s}", "status", mz_status_name(st)));
    s_send(c, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                        "error", e));
}

/* ---- params helpers ----------------------------------------------------- */

static const char *s_opt_str(const json_t *params, const char *key, bool *bad)
{
    const json_t *v = json_object_get(params, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v))
        *bad = true;
    return json_string_value(v);
}

/* Reads a string array param into out (borrowed strings). */
static bool s_str_array(const json_t *params, const char *key, const char **out, size_t max,
                        size_t *n, mz_err *err)
{
    const json_t *arr = json_object_get(params, key), *v;
    size_t i;

    *n = 0;
    if (arr == NULL || json_is_null(arr))
        return true;
    if (!json_is_array(arr) || json_array_size(arr) > max) {
        mz_err_set(err, MZ_EINVAL, "params.%s must be an array of at most %zu strings", key,
                   max);
        return false;
    }
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) {
            mz_err_set(err, MZ_EINVAL, "params.%s[%zu] must be a string", key, i);
            return false;
        }
        out[(*n)++] = json_string_value(v);
    }
    return true;
}

/* ---- methods ------------------------------------------------------------ */

static void s_api_handler(mz_node *node, mz_exec *x, void *ctx);

/* The index of rid in a client's handled list, or -1. */
static int s_handled_index(const mz_api_client *c, const char *rid)
{
    size_t i;
    json_t *v;

    json_array_foreach(c->handled, i, v)
        if (strcmp(json_string_value(v), rid) == 0)
            return (int)i;
    return -1;
}

/* A resource another API client serves is taken over only with "replace":
 * true; the previous client then no longer owns it (its exit leaves the
 * resource alone). false with err set when refused. */
static bool s_may_serve(mz_api *api, mz_api_client *self, const json_t *params, mz_err *err)
{
    const json_t *rec = json_object_get(params, "record");
    const char *rid = json_string_value(json_object_get(rec ? rec : params, "resource_id"));
    const json_t *replace = json_object_get(params, "replace");

    if (rid == NULL)
        return true;            /* the usual checks report it */
    if (replace != NULL && !json_is_boolean(replace)) {
        mz_err_set(err, MZ_EINVAL, "params.replace must be true or false");
        return false;
    }
    for (mz_api_client *o = api->clients; o; o = o->next) {
        int i = o == self ? -1 : s_handled_index(o, rid);
        if (i < 0)
            continue;
        if (!json_is_true(replace)) {
            mz_err_set(err, MZ_EEXIST, "resource '%.128s' is already served on this node by "
                       "another client; replace it with params.replace (serve --replace)", rid);
            return false;
        }
        json_array_remove(o->handled, (size_t)i);
    }
    return true;
}

static int m_register(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                      json_t **result, mz_err *err)
{
    const char *caps[MZ_CAPS_MAX], *methods[64];
    size_t n_methods = 0;
    mz_resource_spec spec;
    bool bad = false;
    const json_t *meta = json_object_get(params, "metadata"), *handler;

    (void)id;
    memset(&spec, 0, sizeof spec);
    /* Checked before anything is registered: a bad request changes nothing. */
    handler = json_object_get(params, "handler");
    if (handler != NULL && !json_is_boolean(handler)) {
        mz_err_set(err, MZ_EINVAL, "params.handler must be true or false");
        return RPC_INVALID_PARAMS;
    }
    if (!s_str_array(params, "methods", methods, 63, &n_methods, err))
        return RPC_INVALID_PARAMS;
    methods[n_methods] = NULL;
    if (json_is_true(handler) && !s_may_serve(api, c, params, err))
        return RPC_INVALID_PARAMS;

    if (json_is_object(json_object_get(params, "record"))) {
        /* A record signed by its owner key elsewhere (register --owner-key). */
        const json_t *rec = json_object_get(params, "record");
        spec.resource_id = json_string_value(json_object_get(rec, "resource_id"));
        if (mz_node_register_record(api->node, rec, result, err) != MZ_OK)
            return err->code == MZ_EPROTO || err->code == MZ_EINVAL ? RPC_INVALID_PARAMS
                                                                    : RPC_SERVER_ERROR;
        goto handler;
    }
    spec.resource_id = s_opt_str(params, "resource_id", &bad);
    spec.resource_type = s_opt_str(params, "resource_type", &bad);
    spec.owner = s_opt_str(params, "owner", &bad);
    if (bad || spec.resource_id == NULL || spec.resource_type == NULL) {
        mz_err_set(err, MZ_EINVAL, "params: resource_id and resource_type must be strings "
                   "(owner optional string)");
        return RPC_INVALID_PARAMS;
    }
    if (meta != NULL && !json_is_null(meta) && !json_is_object(meta)) {
        mz_err_set(err, MZ_EINVAL, "params.metadata must be an object");
        return RPC_INVALID_PARAMS;
    }
    spec.metadata = json_is_object(meta) ? meta : NULL;
    if (!s_str_array(params, "capabilities", caps, MZ_CAPS_MAX, &spec.n_capabilities, err))
        return RPC_INVALID_PARAMS;
    spec.capabilities = caps;
    if (mz_node_register_resource(api->node, &spec, result, err) != MZ_OK)
        return err->code == MZ_EPROTO || err->code == MZ_EINVAL ? RPC_INVALID_PARAMS
                                                                : RPC_SERVER_ERROR;
handler:
    if (json_is_true(handler)) {
        /* This connection serves the resource's calls until it closes. */
        if (mz_node_set_handler(api->node, spec.resource_id, n_methods ? methods : NULL,
                                s_api_handler, c, err) != MZ_OK) {
            json_decref(*result);
            *result = NULL;
            mz_node_unregister_resource(api->node, spec.resource_id, NULL);
            return RPC_SERVER_ERROR;
        }
        json_array_append_new(c->handled, json_string(spec.resource_id));
    }
    return 0;
}

static int m_unregister(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                        json_t **result, mz_err *err)
{
    bool bad = false;
    const char *rid = s_opt_str(params, "resource_id", &bad);
    const json_t *tomb = json_object_get(params, "tombstone");

    (void)c;
    (void)id;
    if (json_is_object(tomb)) {
        /* A removal signed by the resource's owner key (unregister --owner-key). */
        rid = json_string_value(json_object_get(tomb, "resource_id"));
        if (mz_node_unregister_tombstone(api->node, tomb, err) != MZ_OK)
            return err->code == MZ_EPROTO ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
        *result = json_pack("{s:s?,s:b}", "resource_id", rid, "removed", 1);
        return 0;
    }
    if (bad || rid == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.resource_id must be a string");
        return RPC_INVALID_PARAMS;
    }
    if (mz_node_unregister_resource(api->node, rid, err) != MZ_OK)
        return RPC_SERVER_ERROR;
    *result = json_pack("{s:s,s:b}", "resource_id", rid, "removed", 1);
    return 0;
}

static int m_query(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                   json_t **result, mz_err *err)
{
    const char *caps[MZ_CAPS_MAX], *loc;
    const json_t *lim = json_object_get(params, "limit");
    mz_query q;
    bool bad = false;

    (void)c;
    (void)id;
    memset(&q, 0, sizeof q);
    q.resource_type = s_opt_str(params, "resource_type", &bad);
    q.owner = s_opt_str(params, "owner", &bad);
    q.node = s_opt_str(params, "node", &bad);
    loc = s_opt_str(params, "location", &bad);
    if (bad) {
        mz_err_set(err, MZ_EINVAL, "params: resource_type, owner, node and location must be "
                   "strings");
        return RPC_INVALID_PARAMS;
    }
    if (loc != NULL) {
        if (strcmp(loc, "local") == 0) q.location = MZ_LOC_LOCAL;
        else if (strcmp(loc, "remote") == 0) q.location = MZ_LOC_REMOTE;
        else {
            mz_err_set(err, MZ_EINVAL, "params.location must be \"local\" or \"remote\"");
            return RPC_INVALID_PARAMS;
        }
    }
    if (lim != NULL && !json_is_null(lim)) {
        if (!json_is_integer(lim) || json_integer_value(lim) < 0) {
            mz_err_set(err, MZ_EINVAL, "params.limit must be a non-negative integer");
            return RPC_INVALID_PARAMS;
        }
        q.limit = (size_t)json_integer_value(lim);
    }
    if (!s_str_array(params, "capabilities", caps, MZ_CAPS_MAX, &q.n_capabilities, err))
        return RPC_INVALID_PARAMS;
    q.capabilities = caps;
    *result = mz_node_query_resources(api->node, &q);
    if (*result == NULL) {
        mz_err_set(err, MZ_ENOMEM, "query: out of memory");
        return RPC_SERVER_ERROR;
    }
    return 0;
}

typedef struct connect_wait {
    mz_api *api;
    uint64_t link_id;           /* the API client waiting, looked up again on completion */
    json_t *id;                 /* request id (owned) */
} connect_wait;

static void s_on_connected(mz_node *node, mz_status st, const char *peer_id, const char *msg,
                           void *ctx)
{
    connect_wait *w = ctx;

    (void)node;
    for (mz_api_client *c = w->api->clients; c; c = c->next) {
        if (c->link_id != w->link_id)
            continue;
        if (st == MZ_OK)
            s_reply(c, w->id, json_pack("{s:s}", "peer", peer_id ? peer_id : ""));
        else
            s_reply_error(c, w->id, RPC_SERVER_ERROR, st, msg ? msg : "connect failed");
        break;
    }
    json_decref(w->id);
    free(w);
}

static int m_connect(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                     json_t **result, mz_err *err)
{
    bool bad = false;
    const char *url = s_opt_str(params, "url", &bad);
    connect_wait *w;

    (void)result;
    if (bad || url == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.url must be a string like ws://HOST:PORT");
        return RPC_INVALID_PARAMS;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        mz_err_set(err, MZ_ENOMEM, "connect: allocating");
        return RPC_SERVER_ERROR;
    }
    w->api = api;
    w->link_id = c->link_id;
    w->id = json_deep_copy(id ? id : json_null());
    if (mz_node_connect_to_peer(api->node, url, s_on_connected, w, err) != MZ_OK) {
        json_decref(w->id);
        free(w);
        return err->code == MZ_EINVAL ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
    }
    return RPC_ASYNC;
}

static int m_get(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                 json_t **result, mz_err *err)
{
    bool bad = false;
    const char *rid = s_opt_str(params, "resource_id", &bad);
    const char *okey = s_opt_str(params, "owner_key", &bad);

    (void)c;
    (void)id;
    if (bad || rid == NULL || (okey != NULL && !mz_id_valid(okey))) {
        mz_err_set(err, MZ_EINVAL, "params: resource_id must be a string, owner_key 64 hex");
        return RPC_INVALID_PARAMS;
    }
    *result = mz_node_get_resource(api->node, rid, okey);
    return 0;
}

static int m_disconnect(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                        json_t **result, mz_err *err)
{
    bool bad = false;
    const char *peer = s_opt_str(params, "peer", &bad);

    (void)c;
    (void)id;
    if (bad || peer == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.peer must be a node id");
        return RPC_INVALID_PARAMS;
    }
    if (mz_node_disconnect_peer(api->node, peer, err) != MZ_OK)
        return RPC_SERVER_ERROR;
    *result = json_pack("{s:s,s:b}", "peer", peer, "disconnected", 1);
    return 0;
}

static int m_peers(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                   json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    (void)params;
    (void)err;
    *result = mz_node_peers(api->node);
    return 0;
}

static int m_status(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                    json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    (void)params;
    (void)err;
    *result = mz__api_status(api->node);
    return 0;
}

json_t *mz__api_status(mz_node *node)
{
    json_t *st = mz_node_status(node);

    if (st)
        json_object_set_new(json_object_get(st, "counters"), "api_calls",
                            json_integer((json_int_t)mz__api_calls(node)));
    return st;
}

static const mz__link_service s_service;

uint64_t mz__api_calls(mz_node *node)
{
    const mz_api *api = node->api_svc == &s_service ? node->api_ctx : NULL;

    return api ? api->calls : 0;
}

static int m_members(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                     json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    (void)params;
    *result = mz_node_members(api->node);
    if (*result == NULL) {
        mz_err_set(err, MZ_ENOMEM, "members: out of memory");
        return RPC_SERVER_ERROR;
    }
    return 0;
}


/* ---- execution ---------------------------------------------------------- */

typedef struct call_wait {
    mz_api *api;
    uint64_t link_id;
    json_t *id;                 /* request id (owned) */
} call_wait;

static mz_api_client *s_client_by_link_id(mz_api *api, uint64_t link_id)
{
    for (mz_api_client *c = api->clients; c; c = c->next)
        if (c->link_id == link_id)
            return c;
    return NULL;
}

static void s_on_call_done(mz_node *node, const json_t *result, const char *code,
                           const char *message, void *ctx)
{
    call_wait *w = ctx;
    mz_api_client *c = s_client_by_link_id(w->api, w->link_id);

    if (c != NULL) {
        const char *tp = mz_node_call_traceparent(node);
        if (code == NULL && tp == NULL) {
            s_reply(c, w->id, json_incref((json_t *)result));
        } else if (code == NULL) {
            /* The call's trace context rides beside the result (PROTOCOL.md). */
            s_send(c, json_pack("{s:s,s:O,s:O,s:{s:s}}", "jsonrpc", "2.0", "id", w->id,
                                "result", result ? result : json_null(), "trace",
                                "traceparent", tp));
        } else {
            char msg[320];
            json_t *e;
            snprintf(msg, sizeof msg, "%s: %s", code, message ? message : "");
            e = json_pack("{s:i,s:s,s:{s:s,s:s,s:s?}}", "code", RPC_SERVER_ERROR, "message",
                          msg, "data", "code", code, "message", message ? message : "",
                          "traceparent", tp);
            s_send(c, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", w->id, "error", e));
        }
    }
    json_decref(w->id);
    free(w);
}

/* Room an execute's envelope needs besides params and agreement: ids,
 * timestamp, resource id, method, signature or seal (docs/PROTOCOL.md). */
#define MZ_EXEC_ENVELOPE_BYTES 2048

/* An execute whose params (with its agreement) cannot fit in one message
 * under the node's max_message is refused here, naming the limit, instead
 * of being dropped by a link on the way. A sealed payload grows by 4/3
 * (base64). */
static bool s_exec_too_large(mz_api *api, const json_t *params, mz_err *err)
{
    size_t max = api->node->o.max_message, room, n;

    n = json_dumpb(json_object_get(params, "params"), NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY)
        + json_dumpb(json_object_get(params, "agreement"), NULL, 0, JSON_COMPACT);
    room = max > MZ_EXEC_ENVELOPE_BYTES ? max - MZ_EXEC_ENVELOPE_BYTES : 0;
    if (!api->node->o.no_seal)
        room = room / 4 * 3;
    if (n <= room)
        return false;
    mz_err_set(err, MZ_ELIMIT, "params of %zu bytes exceed what one execute message carries "
               "(%zu bytes of params under max_message %zu%s)", n, room, max,
               api->node->o.no_seal ? "" : ", sealed");
    return true;
}

static int m_execute(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                     json_t **result, mz_err *err)
{
    bool bad = false;
    const char *rid = s_opt_str(params, "resource_id", &bad);
    const char *method = s_opt_str(params, "method", &bad);
    const char *pin = s_opt_str(params, "tool_hash", &bad);
    const json_t *p = json_object_get(params, "params");
    const json_t *tms = json_object_get(params, "timeout_ms");
    const json_t *ts = json_object_get(params, "timeout");
    int64_t timeout_ms = 0;
    call_wait *w;

    (void)result;
    if (bad || rid == NULL || method == NULL) {
        mz_err_set(err, MZ_EINVAL, "params: resource_id and method (and tool_hash, if "
                   "given) must be strings");
        return RPC_INVALID_PARAMS;
    }
    if (tms != NULL && json_is_integer(tms))
        timeout_ms = json_integer_value(tms);
    else if (ts != NULL && json_is_number(ts)) {
        /* Clamped before the conversion: a huge number must not overflow. */
        double sec = json_number_value(ts);
        timeout_ms = sec > MZ_MAX_EXEC_TIMEOUT_MS / 1000.0 ? MZ_MAX_EXEC_TIMEOUT_MS
                   : sec > 0 ? (int64_t)(sec * 1000.0) : 0;
    }
    else if ((tms != NULL && !json_is_null(tms)) || (ts != NULL && !json_is_null(ts))) {
        mz_err_set(err, MZ_EINVAL, "params: timeout (seconds) or timeout_ms must be numbers");
        return RPC_INVALID_PARAMS;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        mz_err_set(err, MZ_ENOMEM, "execute: allocating");
        return RPC_SERVER_ERROR;
    }
    w->api = api;
    w->link_id = c->link_id;
    w->id = json_deep_copy(id ? id : json_null());
    if (s_exec_too_large(api, params, err)) {
        s_on_call_done(api->node, NULL, "too_large", err->msg, w);
        return RPC_ASYNC;
    }
    if (pin != NULL) {
        /* A pinned call whose tool changed never leaves this node (core/pins.c). */
        char why[256];
        const char *code = mz_pin_check(api->node, rid, pin, why, sizeof why);
        if (code != NULL) {
            s_on_call_done(api->node, NULL, code, why, w);
            return RPC_ASYNC;
        }
    }
    /* params that are not an object (null included) reach the node, which
     * answers bad_request; only an absent params means {}. */
    /* params.traceparent / params.tracestate: the caller's W3C trace context. */
    if (mz_node_execute_traced(api->node, rid, method, p, json_object_get(params, "agreement"),
                               params, timeout_ms, s_on_call_done, w, err) != MZ_OK) {
        json_decref(w->id);
        free(w);
        return RPC_SERVER_ERROR;
    }
    return RPC_ASYNC;
}

/* A resource served by an API client: push the call to it as a request. */
static void s_api_handler(mz_node *node, mz_exec *x, void *ctx)
{
    mz_api_client *c = ctx;
    char pid[32];
    json_t *req;

    (void)node;
    snprintf(pid, sizeof pid, "x%llu", (unsigned long long)++c->next_push);
    if (c->link == NULL || mz_hmap_put(c->pushed, pid, x, NULL) != MZ_OK) {
        mz_exec_fail(x, MZ_EXEC_HANDLER_ERROR, "handler client unavailable");
        return;
    }
    req = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:O,s:s,s:I}}", "jsonrpc", "2.0", "id", pid,
                    "method", "execute", "params", "resource_id", mz_exec_resource(x), "method",
                    mz_exec_method(x), "params", mz_exec_params(x), "caller", mz_exec_caller(x),
                    "deadline_ms", (json_int_t)mz_exec_deadline_ms(x));
    if (req != NULL) {
        json_t *rp = json_object_get(req, "params");
        json_object_set_new(rp, "traceparent", json_string(mz_exec_traceparent(x)));
        if (mz_exec_tracestate(x) != NULL)
            json_object_set_new(rp, "tracestate", json_string(mz_exec_tracestate(x)));
    }
    s_send(c, req);
}

/* The client's answer to a pushed execute. */
static void s_on_push_answer(mz_api_client *c, const json_t *msg)
{
    const char *pid = json_string_value(json_object_get(msg, "id"));
    mz_exec *x = pid ? mz_hmap_remove(c->pushed, pid) : NULL;
    const json_t *e = json_object_get(msg, "error");

    if (x == NULL)
        return;
    if (e != NULL) {
        const char *m = json_string_value(json_object_get(e, "message"));
        const char *code = json_string_value(json_object_get(json_object_get(e, "data"),
                                                             "code"));
        if (code == NULL || (strcmp(code, MZ_EXEC_BAD_REQUEST) != 0 &&
                             strcmp(code, MZ_EXEC_BUSY) != 0 && strcmp(code, MZ_EXEC_TIMEOUT) != 0))
            code = MZ_EXEC_HANDLER_ERROR;
        mz_exec_fail(x, code, m ? m : "handler failed");
    } else {
        json_t *r = json_object_get(msg, "result");
        mz_exec_reply(x, json_incref(r ? r : json_null()));
    }
}

/* ---- events ------------------------------------------------------------- */

static void s_on_event(mz_node *node, const char *topic, const json_t *data,
                       const char *source, void *ctx)
{
    mz_api_client *c = ctx;

    (void)node;
    /* ctx alone does not say which subscription: the pattern list is small,
     * so the client is told the topic and matches it itself. */
    s_send(c, json_pack("{s:s,s:s,s:{s:s,s:O,s:s}}", "jsonrpc", "2.0", "method", "event",
                        "params", "topic", topic, "data", data, "source", source ? source : ""));
}

static int m_subscribe(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                       json_t **result, mz_err *err)
{
    bool bad = false;
    const char *topic = s_opt_str(params, "topic", &bad);
    uint64_t sid;

    (void)id;
    if (bad || topic == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.topic must be a string");
        return RPC_INVALID_PARAMS;
    }
    if (json_array_size(c->subs) >= mz__max_subs_per_client(api->node)) {
        mz__count_subs_refused(api->node);
        mz_err_set(err, MZ_ELIMIT, "subscribe: this connection holds %zu subscriptions "
                   "already (the limit)", json_array_size(c->subs));
        return RPC_SERVER_ERROR;
    }
    if (mz_node_subscribe(api->node, topic, s_on_event, c, &sid, err) != MZ_OK)
        return err->code == MZ_EINVAL ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
    json_array_append_new(c->subs, json_integer((json_int_t)sid));
    *result = json_pack("{s:I,s:s}", "subscription", (json_int_t)sid, "topic", topic);
    return 0;
}

static int m_unsubscribe(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                         json_t **result, mz_err *err)
{
    const json_t *sid = json_object_get(params, "subscription");
    size_t i;
    json_t *v;

    (void)id;
    if (!json_is_integer(sid)) {
        mz_err_set(err, MZ_EINVAL, "params.subscription must be an integer");
        return RPC_INVALID_PARAMS;
    }
    json_array_foreach(c->subs, i, v) {
        if (json_integer_value(v) != json_integer_value(sid))
            continue;
        mz_node_unsubscribe(api->node, (uint64_t)json_integer_value(sid), NULL);
        json_array_remove(c->subs, i);
        *result = json_pack("{s:b}", "removed", 1);
        return 0;
    }
    mz_err_set(err, MZ_ENOTFOUND, "no subscription %lld on this connection",
               (long long)json_integer_value(sid));
    return RPC_SERVER_ERROR;
}

static int m_publish(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                     json_t **result, mz_err *err)
{
    bool bad = false;
    const char *topic = s_opt_str(params, "topic", &bad);

    (void)c;
    (void)id;
    if (bad || topic == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.topic must be a string");
        return RPC_INVALID_PARAMS;
    }
    if (mz_node_publish(api->node, topic, json_object_get(params, "data"), err) != MZ_OK)
        return err->code == MZ_EINVAL ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
    *result = json_pack("{s:b}", "published", 1);
    return 0;
}

/* The usage counters of one agreement this node hosts (agreement.c). */
static int m_agreement_usage(mz_api *api, mz_api_client *c, const json_t *id,
                             const json_t *params, json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    if (mz__agreements_api_usage(mz__node_agreements(api->node), params, result, err) == MZ_OK)
        return 0;
    return err->code == MZ_EINVAL ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
}

/* MCP bridge (src/bridge.c): import a server, list the imported ones. */
#include "meshzero/bridge.h"

static int m_bridge_add(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                        json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    if (mz_bridge_api_add(mz_bridge_of_node(api->node), params, result, err) != MZ_OK)
        return err->code == MZ_EINVAL || err->code == MZ_EEXIST ? RPC_INVALID_PARAMS
                                                                : RPC_SERVER_ERROR;
    return 0;
}

static int m_bridge_list(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                         json_t **result, mz_err *err)
{
    mz_bridge *b = mz_bridge_of_node(api->node);

    (void)c;
    (void)id;
    (void)params;
    *result = b ? mz_bridge_list(b) : json_array();
    if (*result == NULL) {
        mz_err_set(err, MZ_ENOMEM, "bridge_list: out of memory");
        return RPC_SERVER_ERROR;
    }
    return 0;
}

/* Stops importing an MCP server: its tools are withdrawn mesh-wide. */
static int m_bridge_remove(mz_api *api, mz_api_client *c, const json_t *id,
                           const json_t *params, json_t **result, mz_err *err)
{
    mz_bridge *b = mz_bridge_of_node(api->node);
    bool bad = false;
    const char *name = s_opt_str(params, "name", &bad);

    (void)c;
    (void)id;
    if (bad || name == NULL) {
        mz_err_set(err, MZ_EINVAL, "params.name must be a string");
        return RPC_INVALID_PARAMS;
    }
    if (b == NULL) {
        mz_err_set(err, MZ_ESTATE, "this node runs no MCP bridge");
        return RPC_SERVER_ERROR;
    }
    if (mz_bridge_remove(b, name, err) != MZ_OK)
        return RPC_SERVER_ERROR;
    *result = json_pack("{s:s,s:b}", "name", name, "removed", 1);
    return 0;
}


/* params: the names a method accepts; any other is refused (-32602) with
 * the nearest valid name, so a misspelt filter never silently matches all. */
/* MCP views (svc/mcp_view.c): a view's tools with their pins; approvals. */
static int s_mcp_views(mz_api *api, const char *method, const json_t *params,
                       json_t **result, mz_err *err)
{
    mz_mcpviews *vs = mz__bridge_views(mz_bridge_of_node(api->node));

    if (mz_mcpviews_api(vs, api->node, method, params, result, err) != MZ_OK)
        return err->code == MZ_EINVAL ? RPC_INVALID_PARAMS : RPC_SERVER_ERROR;
    return 0;
}

static int m_mcp_view(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                      json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    return s_mcp_views(api, "mcp_view", params, result, err);
}

static int m_mcp_approve(mz_api *api, mz_api_client *c, const json_t *id,
                         const json_t *params, json_t **result, mz_err *err)
{
    (void)c;
    (void)id;
    return s_mcp_views(api, "mcp_approve", params, result, err);
}

static const struct mz_method {
    const char *name;
    mz_method_fn fn;
    const char *params;
} s_methods[] = {
    { "register_resource",   m_register, "resource_id resource_type capabilities owner "
                                         "metadata handler methods record replace" },
    { "update_resource",     m_register, "resource_id resource_type capabilities owner "
                                         "metadata handler methods record replace" },
    { "unregister_resource", m_unregister, "resource_id tombstone" },
    { "query_resources",     m_query, "resource_type capabilities owner node location limit" },
    { "get_resource",        m_get, "resource_id owner_key" },
    { "connect_to_peer",     m_connect, "url" },
    { "disconnect_peer",     m_disconnect, "peer" },
    { "peers",               m_peers, "" },
    { "status",              m_status, "" },
    { "members",             m_members, "" },
    { "execute_remote",      m_execute, "resource_id method params timeout_ms timeout "
                                        "agreement traceparent tracestate tool_hash" },
    { "subscribe",           m_subscribe, "topic" },
    { "unsubscribe",         m_unsubscribe, "subscription" },
    { "publish",             m_publish, "topic data" },
    { "agreement_usage",     m_agreement_usage, "agreement_id" },
    { "bridge_add",          m_bridge_add, "name command url tags" },
    { "bridge_list",         m_bridge_list, "" },
    { "bridge_remove",       m_bridge_remove, "name" },
    { "mcp_view",            m_mcp_view, "view" },
    { "mcp_approve",         m_mcp_approve, "tool view" },
};

/* Refuses a parameter the method does not take, naming the nearest one
 * it does. false with err set. */
static bool s_check_params(const struct mz_method *m, const json_t *params, mz_err *err)
{
    const char *names[16], *key, *near;
    char buf[256];
    size_t n = 0;
    json_t *v;

    snprintf(buf, sizeof buf, "%s", m->params);
    for (char *t = strtok(buf, " "); t && n < sizeof names / sizeof names[0];
         t = strtok(NULL, " "))
        names[n++] = t;
    json_object_foreach((json_t *)params, key, v) {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(key, names[i]) == 0;
        if (known)
            continue;
        near = mz__nearest_name(key, names, n);
        if (near != NULL)
            mz_err_set(err, MZ_EINVAL, "%s: unknown parameter '%.64s' (did you mean '%s'?)",
                       m->name, key, near);
        else
            mz_err_set(err, MZ_EINVAL, "%s: unknown parameter '%.64s' (it takes: %s)", m->name,
                       key, m->params[0] ? m->params : "no parameters");
        return false;
    }
    return true;
}

/* ---- plumbing ----------------------------------------------------------- */

static mz_api_client *s_client(mz_api *api, mz_link *link)
{
    for (mz_api_client *c = api->clients; c; c = c->next)
        if (c->link == link)
            return c;
    return NULL;
}

/* Undoes everything a client set up: its calls in progress fail, its
 * subscriptions end and the resources it served are unregistered. */
static void s_client_free(mz_node *node, mz_api_client *c)
{
    size_t i, pos = 0;
    json_t *v;
    const char *key;
    void *val;

    while (c->pushed && mz_hmap_count(c->pushed) > 0) {
        pos = 0;
        if (!mz_hmap_next(c->pushed, &pos, &key, &val))
            break;
        mz_hmap_remove(c->pushed, key);
        mz_exec_fail(val, MZ_EXEC_HANDLER_ERROR, "the handler's API client disconnected");
    }
    json_array_foreach(c->subs, i, v)
        mz_node_unsubscribe(node, (uint64_t)json_integer_value(v), NULL);
    json_array_foreach(c->handled, i, v)
        if (!node->stopping)
            mz_node_unregister_resource(node, json_string_value(v), NULL);
    json_decref(c->subs);
    json_decref(c->handled);
    mz_hmap_free(c->pushed, NULL);
    free(c);
}

static void s_api_free(void *ctx)
{
    mz_api *api = ctx;

    mz__http_stop(api->node);
    while (api->clients) {
        mz_api_client *c = api->clients;
        api->clients = c->next;
        c->link = NULL;
        s_client_free(api->node, c);
    }
    free(api);
}

static void s_on_open(void *ctx, mz_link *link)
{
    mz_api *api = ctx;
    mz_api_client *c = calloc(1, sizeof *c);

    if (c == NULL) {
        mz_link_close(link, 1011, "out of memory");
        return;
    }
    c->link = link;
    c->link_id = mz_link_id(link);
    c->api = api;
    c->subs = json_array();
    c->handled = json_array();
    c->pushed = mz_hmap_new();
    if (c->subs == NULL || c->handled == NULL || c->pushed == NULL) {
        s_client_free(api->node, c);
        mz_link_close(link, 1011, "out of memory");
        return;
    }
    c->next = api->clients;
    api->clients = c;
}

static void s_on_close(void *ctx, mz_link *link)
{
    mz_api *api = ctx;

    for (mz_api_client **pp = &api->clients; *pp; pp = &(*pp)->next)
        if ((*pp)->link == link) {
            mz_api_client *c = *pp;
            *pp = c->next;
            c->link = NULL;
            s_client_free(api->node, c);
            return;
        }
}

static void s_on_message(void *ctx, mz_link *link, const char *buf, size_t len)
{
    mz_api *api = ctx;
    mz_api_client *c = s_client(api, link);
    json_error_t jerr;
    json_t *req, *result = NULL;
    const json_t *id, *params;
    const char *method;
    mz_err e = { MZ_OK, "" };
    int rc;

    if (c == NULL)
        return;
    api->calls++;
    req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (req == NULL) {
        char why[200];
        snprintf(why, sizeof why, "parse error at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        api->errors++;
        s_reply_error(c, NULL, RPC_PARSE_ERROR, MZ_EPROTO, why);
        return;
    }
    id = json_object_get(req, "id");
    method = json_string_value(json_object_get(req, "method"));
    if (json_is_object(req) && method == NULL &&
        (json_object_get(req, "result") != NULL || json_object_get(req, "error") != NULL)) {
        s_on_push_answer(c, req);      /* an answer to an execute we pushed */
        json_decref(req);
        return;
    }
    params = json_object_get(req, "params");
    if (!json_is_object(req) || method == NULL ||
        !json_is_string(json_object_get(req, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(req, "jsonrpc")), "2.0") != 0 ||
        (id != NULL && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id))) {
        api->errors++;
        s_reply_error(c, json_is_object(req) ? id : NULL, RPC_INVALID_REQ, MZ_EPROTO,
                      "invalid request: need jsonrpc \"2.0\", a string method and an id");
        json_decref(req);
        return;
    }
    if (params != NULL && !json_is_object(params)) {
        api->errors++;
        s_reply_error(c, id, RPC_INVALID_PARAMS, MZ_EINVAL, "params must be an object");
        json_decref(req);
        return;
    }
    for (size_t i = 0; i < sizeof s_methods / sizeof s_methods[0]; i++) {
        if (strcmp(s_methods[i].name, method) != 0)
            continue;
        json_t *empty = params ? NULL : json_object();
        rc = s_check_params(&s_methods[i], params ? params : empty, &e)
                 ? s_methods[i].fn(api, c, id, params ? params : empty, &result, &e)
                 : RPC_INVALID_PARAMS;
        json_decref(empty);
        if (rc == RPC_ASYNC) {
            json_decref(req);
            return;
        }
        if (id == NULL) {             /* a notification: no answer */
            json_decref(result);
        } else if (rc != 0) {
            api->errors++;
            s_reply_error(c, id, rc, e.code, e.msg);
        } else {
            s_reply(c, id, result);
        }
        json_decref(req);
        return;
    }
    {
        char why[160];
        snprintf(why, sizeof why, "method not found: '%.64s'", method);
        api->errors++;
        s_reply_error(c, id, RPC_NO_METHOD, MZ_ENOTFOUND, why);
    }
    json_decref(req);
}

static const mz__link_service s_service = { s_on_open, s_on_message, s_on_close, s_api_free };

mz_status mz__api_attach(mz_node *node, mz_err *err)
{
    mz_api *api = calloc(1, sizeof *api);

    if (api == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api: allocating");
    api->node = node;
    mz__node_set_api_service(node, &s_service, api);
    /* /metrics, /health, /status (and /mcp, /ui/) on the API listener. */
    return mz__http_start(node, err);
}
