/* MeshBridge: MCP resources, resource templates, prompts and completions
 * across the mesh.
 *
 * Import: an imported server that offers any of them gets one more record,
 * type "mcp-server" with id NAME, whose capabilities say which (mcp-resources,
 * mcp-subscribe, mcp-prompts, mcp-completions) and whose methods are the MCP
 * methods themselves (resources/read, prompts/get, ...): a call is sent to the
 * server as that request and its result comes back unchanged. The server's
 * notifications/resources/updated and list_changed become mesh events
 * (mcp.resources.updated, mcp.list_changed).
 *
 * Export: mz_mcpsrv answers resources/list, resources/templates/list,
 * resources/read, resources/subscribe|unsubscribe, prompts/list, prompts/get
 * and completion/complete from those records: lists fan out to every server
 * record, the rest go to the one a name or URI designates. Exported URIs are
 * meshzero://<record id>/<the server's URI>, prompt names <record id>/<name>:
 * collision-free and resolvable without an earlier listing. docs/MCP.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_int.h"
#include "util/hmap.h"
#include "util/log.h"
#include "meshzero/msg.h"

/* ---- import: the server record ---------------------------------------------- */

struct mz_bres {
    mz_node *node;              /* borrowed */
    char name[MZ_BRIDGE_NAME_MAX + 1];
    mz_bres_fwd_fn fwd;
    mz_bres_fire_fn fire;
    void *ctx;
    json_t *caps;               /* the server's capabilities from initialize */
    json_t *info;               /* {name, version} */
    bool registered;
    mz_hmap *subs;              /* server URI -> subscriptions through the mesh */
};

/* One MCP feature a server may offer: the capability of its record and the
 * methods it brings. */
static const struct mz_bfeature {
    const char *server_cap;     /* key in the server's capabilities */
    const char *sub_key;        /* and a true member of it, or NULL */
    const char *mesh_cap;
    const char *methods[4];
} s_features[] = {
    { "resources", NULL, "mcp-resources",
      { "resources/list", "resources/templates/list", "resources/read", NULL } },
    { "resources", "subscribe", "mcp-subscribe",
      { "resources/subscribe", "resources/unsubscribe", NULL } },
    { "prompts", NULL, "mcp-prompts", { "prompts/list", "prompts/get", NULL } },
    { "completions", NULL, "mcp-completions", { "completion/complete", NULL } },
};
#define MZ_NFEATURES (sizeof s_features / sizeof s_features[0])

mz_bres *mz__bres_new(mz_node *node, const char *name, mz_bres_fwd_fn fwd, mz_bres_fire_fn fire,
                      void *ctx)
{
    mz_bres *r = calloc(1, sizeof *r);

    if (r == NULL || (r->subs = mz_hmap_new()) == NULL) {
        free(r);
        return NULL;
    }
    r->node = node;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->fwd = fwd;
    r->fire = fire;
    r->ctx = ctx;
    return r;
}

void mz__bres_free(mz_bres *r)
{
    if (r == NULL)
        return;
    mz__bres_down(r);
    mz_hmap_free(r->subs, NULL);
    json_decref(r->caps);
    json_decref(r->info);
    free(r);
}

void mz__bres_init(mz_bres *r, const json_t *init_result, const json_t *server_info)
{
    const json_t *caps = json_object_get(init_result, "capabilities");

    json_decref(r->caps);
    json_decref(r->info);
    r->caps = json_is_object(caps) ? json_deep_copy(caps) : NULL;
    r->info = server_info ? json_deep_copy(server_info) : NULL;
}

static bool s_offers(const mz_bres *r, const struct mz_bfeature *f)
{
    const json_t *c = json_object_get(r->caps, f->server_cap);

    if (!json_is_object(c))
        return false;
    return f->sub_key == NULL || json_is_true(json_object_get(c, f->sub_key));
}

/* Counts subscriptions so that one mesh client's unsubscribe does not end
 * another's: only the last one reaches the server. */
static bool s_count_sub(mz_bres *r, mz_exec *x)
{
    const char *m = mz_exec_method(x);
    const char *uri = json_string_value(json_object_get(mz_exec_params(x), "uri"));
    uintptr_t n;

    if (strncmp(m, "resources/", 10) != 0 || (strcmp(m + 10, "subscribe") != 0 &&
                                              strcmp(m + 10, "unsubscribe") != 0))
        return true;
    if (uri == NULL) {
        mz_exec_fail(x, MZ_EXEC_BAD_REQUEST, "params.uri must be a string");
        return false;
    }
    n = (uintptr_t)mz_hmap_get(r->subs, uri);
    if (strcmp(m + 10, "subscribe") == 0 && n == 0 &&
        mz_hmap_count(r->subs) >= MZ_MCP_MAX_SUBSCRIPTIONS) {
        mz_exec_fail(x, MZ_EXEC_BUSY, "the MCP server already has the most subscribed URIs "
                     "through the mesh (MZ_MCP_MAX_SUBSCRIPTIONS)");
        return false;
    }
    if (strcmp(m + 10, "subscribe") == 0) {
        (void)mz_hmap_put(r->subs, uri, (void *)(n + 1), NULL);
        return true;
    }
    if (n > 1) {
        (void)mz_hmap_put(r->subs, uri, (void *)(n - 1), NULL);
        mz_exec_reply(x, json_object());
        return false;
    }
    mz_hmap_remove(r->subs, uri);
    return true;
}

static void s_on_exec(mz_node *node, mz_exec *x, void *ctx)
{
    mz_bres *r = ctx;

    (void)node;
    if (s_count_sub(r, x))
        r->fwd(r->ctx, x, mz_exec_method(x), mz_exec_params(x));
}

/* The record's capabilities (cap[] has room for MZ_CAPS_MAX) and methods. */
static size_t s_record_caps(const mz_bres *r, const char *const *tags, size_t n_tags,
                            const char **cap, char *bcap, const char **methods, size_t *n_meth)
{
    size_t n = 0, f, i;

    snprintf(bcap, MZ_CAP_MAX + 1, "mcp:%s", r->name);
    cap[n++] = "mcp";
    cap[n++] = bcap;
    *n_meth = 0;
    for (f = 0; f < MZ_NFEATURES; f++) {
        if (!s_offers(r, &s_features[f]))
            continue;
        cap[n++] = s_features[f].mesh_cap;
        for (i = 0; s_features[f].methods[i]; i++)
            methods[(*n_meth)++] = s_features[f].methods[i];
    }
    methods[*n_meth] = NULL;
    for (i = 0; i < n_tags && n < MZ_CAPS_MAX; i++) {
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup = dup || strcmp(cap[j], tags[i]) == 0;
        if (!dup)
            cap[n++] = tags[i];
    }
    return n;
}

/* A restarted server has forgotten the subscriptions mesh clients still hold. */
static void s_resubscribe(mz_bres *r)
{
    size_t pos = 0;
    const char *uri;
    void *v;

    if (!s_offers(r, &s_features[1]))      /* resources.subscribe */
        return;
    while (mz_hmap_next(r->subs, &pos, &uri, &v))
        r->fire(r->ctx, "resources/subscribe", json_pack("{s:s}", "uri", uri));
}

void mz__bres_up(mz_bres *r, const char *const *tags, size_t n_tags)
{
    const char *cap[MZ_CAPS_MAX], *methods[16];
    char bcap[MZ_CAP_MAX + 1];
    size_t n_meth = 0, n;
    mz_resource_spec spec;
    json_t *meta, *mcaps = json_object();
    mz_err e;

    n = s_record_caps(r, tags, n_tags, cap, bcap, methods, &n_meth);
    if (n_meth == 0 || mcaps == NULL) {
        json_decref(mcaps);
        return;                 /* tools only: no record */
    }
    for (size_t f = 0; f < MZ_NFEATURES; f++)
        if (s_offers(r, &s_features[f]))
            json_object_set(mcaps, s_features[f].server_cap,
                            json_object_get(r->caps, s_features[f].server_cap));
    meta = json_pack("{s:s,s:O,s:o}", "bridge", r->name, "server",
                     r->info ? r->info : json_null(), "mcp_capabilities", mcaps);
    memset(&spec, 0, sizeof spec);
    spec.resource_id = r->name;
    spec.resource_type = MZ_MCP_SERVER_TYPE;
    spec.capabilities = cap;
    spec.n_capabilities = n;
    spec.metadata = meta;
    if (meta == NULL || mz_node_register_resource(r->node, &spec, NULL, &e) != MZ_OK ||
        mz_node_set_handler(r->node, r->name, methods, s_on_exec, r, &e) != MZ_OK) {
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: its resources and prompts are not imported: %s",
               r->name, meta ? e.msg : "out of memory");
        if (meta != NULL)
            mz_node_unregister_resource(r->node, r->name, NULL);
    } else {
        r->registered = true;
        s_resubscribe(r);
    }
    json_decref(meta);
}

void mz__bres_down(mz_bres *r)
{
    if (r == NULL)
        return;
    if (r->registered)
        mz_node_unregister_resource(r->node, r->name, NULL);
    r->registered = false;
}

void mz__bres_notification(mz_bres *r, const char *method, const json_t *params)
{
    const char *uri = json_string_value(json_object_get(params, "uri"));
    json_t *data = NULL;
    const char *topic = NULL;
    mz_err e;

    if (!r->registered)
        return;
    if (strcmp(method, "notifications/resources/updated") == 0 && uri != NULL) {
        topic = MZ_MCP_TOPIC_UPDATED;
        data = json_pack("{s:s,s:s}", "resource_id", r->name, "uri", uri);
    } else if (strcmp(method, "notifications/resources/list_changed") == 0 ||
               strcmp(method, "notifications/prompts/list_changed") == 0) {
        topic = MZ_MCP_TOPIC_LIST_CHANGED;
        data = json_pack("{s:s,s:s}", "resource_id", r->name, "kind",
                         method[14] == 'r' ? "resources" : "prompts");
    }
    if (topic == NULL)
        return;
    if (data == NULL || mz_node_publish(r->node, topic, data, &e) != MZ_OK)
        mz_log(MZ_LOG_WARN, "bridge", "mcp %s: cannot pass %s on: %s", r->name, method,
               data ? e.msg : "out of memory");
    json_decref(data);
}
