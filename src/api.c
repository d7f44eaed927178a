/* The local API: JSON-RPC 2.0 over WebSocket for programs on this machine.
 * One row per method in s_methods; docs/PROTOCOL.md "Local API". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "node_int.h"

/* JSON-RPC error codes (the spec's, plus one server range code). */
#define RPC_PARSE_ERROR    (-32700)
#define RPC_INVALID_REQ    (-32600)
#define RPC_NO_METHOD      (-32601)
#define RPC_INVALID_PARAMS (-32602)
#define RPC_SERVER_ERROR   (-32000)

typedef struct mz_api_client {
    mz_link *link;              /* borrowed; NULL after close */
    uint64_t link_id;
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

static int m_register(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                      json_t **result, mz_err *err)
{
    const char *caps[MZ_CAPS_MAX];
    mz_resource_spec spec;
    bool bad = false;
    const json_t *meta = json_object_get(params, "metadata");

    (void)c;
    (void)id;
    memset(&spec, 0, sizeof spec);
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
    return 0;
}

static int m_unregister(mz_api *api, mz_api_client *c, const json_t *id, const json_t *params,
                        json_t **result, mz_err *err)
{
    bool bad = false;
    const char *rid = s_opt_str(params, "resource_id", &bad);

    (void)c;
    (void)id;
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
    *result = mz_node_status(api->node);
    if (*result)
        json_object_set_new(json_object_get(*result, "counters"), "api_calls",
                            json_integer((json_int_t)api->calls));
    return 0;
}

static const struct mz_method {
    const char *name;
    mz_method_fn fn;
} s_methods[] = {
    { "register_resource",   m_register },
    { "update_resource",     m_register },
    { "unregister_resource", m_unregister },
    { "query_resources",     m_query },
    { "connect_to_peer",     m_connect },
    { "peers",               m_peers },
    { "status",              m_status },
};

/* ---- plumbing ----------------------------------------------------------- */

static mz_api_client *s_client(mz_api *api, mz_link *link)
{
    for (mz_api_client *c = api->clients; c; c = c->next)
        if (c->link == link)
            return c;
    return NULL;
}

mz_status mz__api_new(mz_node *node, mz_err *err)
{
    node->api = calloc(1, sizeof *node->api);
    if (node->api == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api: allocating");
    node->api->node = node;
    return MZ_OK;
}

void mz__api_free(mz_node *node)
{
    if (node->api == NULL)
        return;
    while (node->api->clients) {
        mz_api_client *c = node->api->clients;
        node->api->clients = c->next;
        free(c);
    }
    free(node->api);
    node->api = NULL;
}

void mz__api_on_open(mz_node *node, mz_link *link)
{
    mz_api_client *c = calloc(1, sizeof *c);

    if (c == NULL) {
        mz_link_close(link, 1011, "out of memory");
        return;
    }
    c->link = link;
    c->link_id = mz_link_id(link);
    c->next = node->api->clients;
    node->api->clients = c;
}

void mz__api_on_close(mz_node *node, mz_link *link)
{
    for (mz_api_client **pp = &node->api->clients; *pp; pp = &(*pp)->next)
        if ((*pp)->link == link) {
            mz_api_client *c = *pp;
            *pp = c->next;
            free(c);
            return;
        }
}

void mz__api_on_message(mz_node *node, mz_link *link, const char *buf, size_t len)
{
    mz_api *api = node->api;
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
        rc = s_methods[i].fn(api, c, id, params ? params : empty, &result, &e);
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
