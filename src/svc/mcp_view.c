/* MCP views and their pins (mcp_view.h). The pin store is one JSON object
 * {view: {resource_id: tool_hash}} in the node's data directory, written
 * whole (temporary file, then rename) whenever a pin is added or approved,
 * so a pin survives restarts of the node and of the tool's server: a tool
 * that goes away and comes back changed is still caught. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_int.h"
#include "core/pins.h"
#include "svc/mcp_view.h"
#include "util/log.h"

struct mz_mcpview {
    char *name;
    json_t *def;                /* the definition as configured */
    const char *type;           /* NULL: any type (borrowed from def, or "tool") */
    const char *caps[MZ_MCP_VIEW_VALUES_MAX];   /* all of them (borrowed from def) */
    size_t n_caps;
    const char *tags[MZ_MCP_VIEW_VALUES_MAX];   /* any one of them */
    size_t n_tags;
    const char *owner, *node;
    bool pin;
    json_t *preset;             /* pins from the view's "pins" file, or NULL */
};

struct mz_mcpviews {
    mz_mcpview *v[MZ_MCP_VIEWS_MAX];
    size_t n;
    char *path;                 /* the pin store, or NULL (memory only) */
    json_t *store;              /* {view: {resource_id: hash}} */
    void (*on_change)(void *ctx, const mz_mcpview *v);
    void *ctx;
};

/* ---- one view ---------------------------------------------------------------- */

static bool s_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= MZ_BRIDGE_NAME_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static bool s_hash_ok(const json_t *h)
{
    const char *s = json_string_value(h);

    return s != NULL && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* A string or an array of strings into out[] (borrowed from v). */
static mz_status s_values(const char *view, const char *key, const json_t *v, const char **out,
                          size_t *n, mz_err *err)
{
    size_t i;
    json_t *e;

    if (json_is_string(v)) {
        out[(*n)++] = json_string_value(v);
        return MZ_OK;
    }
    if (!json_is_array(v) || json_array_size(v) > MZ_MCP_VIEW_VALUES_MAX)
        return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": \"%s\" takes a string or "
                          "an array of at most %d strings", view, key, MZ_MCP_VIEW_VALUES_MAX);
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": %s[%zu] is not a "
                              "string", view, key, i);
        out[(*n)++] = json_string_value(e);
    }
    return MZ_OK;
}

/* Reads a view's "pins" file: {resource_id: tool_hash}. */
static mz_status s_load_preset(mz_mcpview *v, const char *path, mz_err *err)
{
    json_error_t je;
    const char *k;
    json_t *h;

    v->preset = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (v->preset == NULL)
        return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": pins file %.100s: %.80s",
                          v->name, path, je.text);
    if (!json_is_object(v->preset))
        return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": pins file %.100s must be "
                          "an object {resource_id: tool_hash}", v->name, path);
    json_object_foreach(v->preset, k, h)
        if (!s_hash_ok(h))
            return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": pins file %.100s: "
                              "\"%.60s\" is not a tool_hash (64 lowercase hex)", v->name, path, k);
    return MZ_OK;
}

/* One key of a view's definition. */
static mz_status s_view_key(mz_mcpview *v, const char *key, const json_t *val, mz_err *err)
{
    const char **str = strcmp(key, "owner") == 0 ? &v->owner
                     : strcmp(key, "node") == 0 ? &v->node
                     : strcmp(key, "type") == 0 ? &v->type : NULL;

    if (str != NULL) {
        if (!json_is_string(val))
            return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": \"%s\" must be a "
                              "string", v->name, key);
        *str = json_string_value(val);
        return MZ_OK;
    }
    if (strcmp(key, "capability") == 0)
        return s_values(v->name, key, val, v->caps, &v->n_caps, err);
    if (strcmp(key, "tag") == 0)
        return s_values(v->name, key, val, v->tags, &v->n_tags, err);
    if (strcmp(key, "pin") == 0) {
        if (!json_is_boolean(val))
            return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": \"pin\" must be true "
                              "or false", v->name);
        v->pin = v->pin || json_is_true(val);
        return MZ_OK;
    }
    if (strcmp(key, "pins") == 0) {
        if (!json_is_string(val))
            return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": \"pins\" must be a "
                              "file name", v->name);
        v->pin = true;
        return s_load_preset(v, json_string_value(val), err);
    }
    return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\": unknown key \"%.40s\" (known: "
                      "type, capability, tag, owner, node, pin, pins)", v->name, key);
}

mz_status mz_mcpview_parse(const char *name, const json_t *def, mz_mcpview **out, mz_err *err)
{
    mz_mcpview *v;
    const char *key;
    json_t *val;
    mz_status rc;

    *out = NULL;
    if (!s_name_ok(name))
        return mz_err_set(err, MZ_EINVAL, "mcp-views: view name \"%.60s\" must be 1-%d of "
                          "A-Z a-z 0-9 _ . -", name, MZ_BRIDGE_NAME_MAX);
    if (!json_is_object(def))
        return mz_err_set(err, MZ_EINVAL, "mcp-views: view \"%.60s\" must be an object of "
                          "filters", name);
    if ((v = calloc(1, sizeof *v)) == NULL || (v->name = strdup(name)) == NULL ||
        (v->def = json_deep_copy(def)) == NULL) {
        mz_mcpview_free(v);
        return mz_err_set(err, MZ_ENOMEM, "mcp-views: out of memory");
    }
    v->type = "tool";
    json_object_foreach(v->def, key, val)
        if ((rc = s_view_key(v, key, val, err)) != MZ_OK) {
            mz_mcpview_free(v);
            return rc;
        }
    if (strcmp(v->type, "*") == 0)
        v->type = NULL;
    *out = v;
    return MZ_OK;
}

void mz_mcpview_free(mz_mcpview *v)
{
    if (v == NULL)
        return;
    free(v->name);
    json_decref(v->def);
    json_decref(v->preset);
    free(v);
}

const char *mz_mcpview_name(const mz_mcpview *v) { return v->name; }
const char *mz_mcpview_type(const mz_mcpview *v) { return v->type ? v->type : "*"; }
bool mz_mcpview_pins(const mz_mcpview *v) { return v->pin; }

static bool s_has_cap(const json_t *caps, const char *c)
{
    size_t i;
    json_t *e;

    json_array_foreach(caps, i, e)
        if (json_is_string(e) && strcmp(json_string_value(e), c) == 0)
            return true;
    return false;
}

static bool s_str_is(const json_t *rec, const char *key, const char *want)
{
    const char *s = json_string_value(json_object_get(rec, key));

    return want == NULL || (s != NULL && strcmp(s, want) == 0);
}

bool mz_mcpview_match(const mz_mcpview *v, const json_t *rec)
{
    const json_t *caps = json_object_get(rec, "capabilities");
    bool tagged = v->n_tags == 0;

    if (!s_str_is(rec, "resource_type", v->type) || !s_str_is(rec, "owner", v->owner) ||
        !s_str_is(rec, "node", v->node))
        return false;
    for (size_t i = 0; i < v->n_caps; i++)
        if (!s_has_cap(caps, v->caps[i]))
            return false;
    for (size_t i = 0; i < v->n_tags && !tagged; i++)
        tagged = s_has_cap(caps, v->tags[i]);
    return tagged;
}

/* ---- the set of views and the pin store ------------------------------------------------ */

static mz_status s_load_store(mz_mcpviews *vs, mz_err *err)
{
    json_error_t je;
    FILE *f = vs->path ? fopen(vs->path, "r") : NULL;

    if (f == NULL) {
        vs->store = json_object();         /* none yet: pins start on first use */
        return vs->store ? MZ_OK : mz_err_set(err, MZ_ENOMEM, "mcp pins: out of memory");
    }
    vs->store = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!json_is_object(vs->store))
        return mz_err_set(err, MZ_EIO, "%.150s: not a JSON object (%.60s); fix or remove it "
                          "to start pinning afresh", vs->path, vs->store ? "wrong type" : je.text);
    return MZ_OK;
}

static void s_save_store(mz_mcpviews *vs)
{
    char tmp[600];

    if (vs->path == NULL)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", vs->path);
    if (json_dump_file(vs->store, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) != 0 ||
        rename(tmp, vs->path) != 0)
        mz_log(MZ_LOG_WARN, "mcp-view", "cannot write the pin store %s: pins are kept in "
               "memory only until it can be written", vs->path);
}

mz_status mz_mcpviews_new(const char *text, const char *data_dir, mz_mcpviews **out,
                          mz_err *err)
{
    mz_mcpviews *vs = calloc(1, sizeof *vs);
    json_t *defs = NULL, *def;
    json_error_t je;
    const char *name;
    mz_status rc = MZ_OK;

    *out = NULL;
    if (vs == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp-views: out of memory");
    if (text != NULL) {
        defs = json_loads(text, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(defs)) {
            rc = mz_err_set(err, MZ_EINVAL, "mcp-views: expected an object {NAME: {filters}}, "
                            "%.80s", defs ? "got another JSON value" : je.text);
            goto out;
        }
        if (json_object_size(defs) > MZ_MCP_VIEWS_MAX) {
            rc = mz_err_set(err, MZ_EINVAL, "mcp-views: %zu views, at most %d",
                            json_object_size(defs), MZ_MCP_VIEWS_MAX);
            goto out;
        }
    }
    json_object_foreach(defs, name, def)
        if ((rc = mz_mcpview_parse(name, def, &vs->v[vs->n], err)) != MZ_OK)
            goto out;
        else
            vs->n++;
    if (data_dir != NULL) {
        size_t len = strlen(data_dir) + sizeof MZ_MCP_PINS_FILE + 1;
        if ((vs->path = malloc(len)) == NULL) {
            rc = mz_err_set(err, MZ_ENOMEM, "mcp-views: out of memory");
            goto out;
        }
        snprintf(vs->path, len, "%s/%s", data_dir, MZ_MCP_PINS_FILE);
    }
    rc = s_load_store(vs, err);
out:
    json_decref(defs);
    if (rc != MZ_OK)
        mz_mcpviews_free(vs);
    else
        *out = vs;
    return rc;
}

void mz_mcpviews_free(mz_mcpviews *vs)
{
    if (vs == NULL)
        return;
    for (size_t i = 0; i < vs->n; i++)
        mz_mcpview_free(vs->v[i]);
    free(vs->path);
    json_decref(vs->store);
    free(vs);
}

size_t mz_mcpviews_count(const mz_mcpviews *vs) { return vs ? vs->n : 0; }
const mz_mcpview *mz_mcpviews_at(const mz_mcpviews *vs, size_t i) { return vs->v[i]; }

const mz_mcpview *mz_mcpviews_find(const mz_mcpviews *vs, const char *name)
{
    for (size_t i = 0; vs && name && i < vs->n; i++)
        if (strcmp(vs->v[i]->name, name) == 0)
            return vs->v[i];
    return NULL;
}

void mz_mcpviews_unknown(const mz_mcpviews *vs, const char *name, char *buf, size_t n)
{
    int k = snprintf(buf, n, "unknown MCP view '%.60s' (known views: ", name ? name : "");

    for (size_t i = 0; vs && i < vs->n && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%s%s", i ? ", " : "", vs->v[i]->name);
    if (k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, "%s)", mz_mcpviews_count(vs) ? "" : "none");
}

void mz_mcpviews_on_change(mz_mcpviews *vs, void (*fn)(void *ctx, const mz_mcpview *v),
                           void *ctx)
{
    vs->on_change = fn;
    vs->ctx = ctx;
}

/* The view's pins in the store (created on demand), NULL when out of memory. */
static json_t *s_view_pins(mz_mcpviews *vs, const mz_mcpview *v)
{
    json_t *p = json_object_get(vs->store, v->name);

    if (!json_is_object(p)) {
        p = json_object();
        if (p == NULL || json_object_set_new(vs->store, v->name, p) != 0)
            return NULL;
    }
    return p;
}

/* Annotates rec with its pin, pinning it now if it has none. true when the
 * store changed. */
static bool s_pin(const mz_mcpview *v, json_t *pins, json_t *rec)
{
    const char *rid = json_string_value(json_object_get(rec, "resource_id"));
    const char *now = mz_pin_record_hash(rec);
    const json_t *p;
    bool added = false;

    if (rid == NULL || now == NULL)
        return false;           /* nothing to pin: not a tool with a definition hash */
    p = json_object_get(pins, rid);
    if (p == NULL && v->preset != NULL)
        p = json_object_get(v->preset, rid);
    if (p == NULL) {
        if (json_object_size(pins) >= MZ_MCP_PINS_MAX) {
            mz_log(MZ_LOG_WARN, "mcp-view", "view %s: %d pins already, %s left unpinned",
                   v->name, MZ_MCP_PINS_MAX, rid);
            return false;
        }
        json_object_set_new(pins, rid, json_string(now));
        p = json_object_get(pins, rid);
        added = true;
    }
    json_object_set_new(rec, "pin", json_pack("{s:O,s:s}", "pinned", p, "current", now));
    return added;
}

json_t *mz_mcpviews_records(mz_mcpviews *vs, const mz_mcpview *v, mz_node *node)
{
    mz_query q;
    json_t *all, *out = json_array(), *rec, *pins = NULL;
    bool dirty = false;
    size_t i;

    memset(&q, 0, sizeof q);
    q.resource_type = v->type;
    q.capabilities = v->caps;
    q.n_capabilities = v->n_caps;
    q.owner = v->owner;
    q.node = v->node;
    all = mz_node_query_resources(node, &q);
    if (v->pin)
        pins = s_view_pins(vs, v);
    if (all == NULL || out == NULL || (v->pin && pins == NULL)) {
        json_decref(all);
        json_decref(out);
        return NULL;
    }
    json_array_foreach(all, i, rec) {
        if (!mz_mcpview_match(v, rec))
            continue;
        if (v->pin && s_pin(v, pins, rec))
            dirty = true;
        json_array_append(out, rec);
    }
    json_decref(all);
    if (dirty)
        s_save_store(vs);
    return out;
}

/* ---- the local API ------------------------------------------------------------------ */

static mz_status s_api_view(mz_mcpviews *vs, mz_node *node, const json_t *params,
                            json_t **result, mz_err *err)
{
    const char *name = json_string_value(json_object_get(params, "view"));
    const mz_mcpview *v;
    json_t *recs;
    char why[256];

    if (name == NULL)
        return mz_err_set(err, MZ_EINVAL, "mcp_view: params.view must be a string");
    if ((v = mz_mcpviews_find(vs, name)) == NULL) {
        mz_mcpviews_unknown(vs, name, why, sizeof why);
        return mz_err_set(err, MZ_ENOTFOUND, "%s", why);
    }
    if ((recs = mz_mcpviews_records(vs, v, node)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp_view: out of memory");
    *result = json_pack("{s:s,s:O,s:b,s:o}", "view", v->name, "definition", v->def, "pin",
                        v->pin, "records", recs);
    return *result ? MZ_OK : mz_err_set(err, MZ_ENOMEM, "mcp_view: out of memory");
}

/* Approves tool (an MCP tool name as the view lists it, or a resource id)
 * in one view: its pin becomes its current tool_hash. */
static mz_status s_approve_in(mz_mcpviews *vs, const mz_mcpview *v, mz_node *node,
                              const char *tool, json_t *approved)
{
    json_t *recs = mz_mcpviews_records(vs, v, node);
    json_t *map = mz_mcp_map_tools(recs), *ent, *pins = s_view_pins(vs, v);
    size_t i;

    json_array_foreach(map, i, ent) {
        const char *name = json_string_value(json_object_get(ent, "name"));
        const char *rid = json_string_value(json_object_get(ent, "resource_id"));
        const json_t *pin = json_object_get(json_object_get(ent, "record"), "pin");
        const char *now = json_string_value(json_object_get(pin, "current"));
        if ((strcmp(name, tool) != 0 && strcmp(rid, tool) != 0) || now == NULL || pins == NULL)
            continue;
        json_array_append_new(approved,
                              json_pack("{s:s,s:s,s:s,s:s,s:O}", "view", v->name, "tool", name,
                                        "resource_id", rid, "tool_hash", now, "previous",
                                        json_object_get(pin, "pinned")));
        json_object_set_new(pins, rid, json_string(now));
        s_save_store(vs);
        if (vs->on_change)
            vs->on_change(vs->ctx, v);
    }
    json_decref(map);
    json_decref(recs);
    return MZ_OK;
}

static mz_status s_api_approve(mz_mcpviews *vs, mz_node *node, const json_t *params,
                               json_t **result, mz_err *err)
{
    const char *tool = json_string_value(json_object_get(params, "tool"));
    const json_t *jv = json_object_get(params, "view");
    const char *name = json_string_value(jv);
    json_t *approved;
    char why[256];

    if (tool == NULL || (jv != NULL && !json_is_null(jv) && name == NULL))
        return mz_err_set(err, MZ_EINVAL, "mcp_approve: params.tool (and view, if given) must "
                          "be strings");
    if (name != NULL && mz_mcpviews_find(vs, name) == NULL) {
        mz_mcpviews_unknown(vs, name, why, sizeof why);
        return mz_err_set(err, MZ_ENOTFOUND, "%s", why);
    }
    if (name != NULL && !mz_mcpviews_find(vs, name)->pin)
        return mz_err_set(err, MZ_EINVAL, "MCP view '%.60s' does not pin tools (give it "
                          "\"pin\": true)", name);
    if ((approved = json_array()) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "mcp_approve: out of memory");
    for (size_t i = 0; i < vs->n; i++)
        if (vs->v[i]->pin && (name == NULL || strcmp(name, vs->v[i]->name) == 0))
            s_approve_in(vs, vs->v[i], node, tool, approved);
    if (json_array_size(approved) == 0) {
        json_decref(approved);
        return mz_err_set(err, MZ_ENOTFOUND, "no tool '%.100s' in %s%.60s (give the tool name "
                          "as the view lists it, or its resource id)", tool,
                          name ? "MCP view " : "any pinning MCP view", name ? name : "");
    }
    *result = json_pack("{s:o}", "approved", approved);
    return *result ? MZ_OK : mz_err_set(err, MZ_ENOMEM, "mcp_approve: out of memory");
}

mz_status mz_mcpviews_api(mz_mcpviews *vs, mz_node *node, const char *method,
                          const json_t *params, json_t **result, mz_err *err)
{
    if (vs == NULL)
        return mz_err_set(err, MZ_ESTATE, "this node runs no MCP bridge, so it has no views");
    if (strcmp(method, "mcp_view") == 0)
        return s_api_view(vs, node, params, result, err);
    return s_api_approve(vs, node, params, result, err);
}
