/* `status`: the node's counters (generated from counters.h), its limits,
 * and its health, for the API, /status and /metrics. */
#include <string.h>

#include "core/node_int.h"

typedef struct s_row_def {
    const char *name, *family, *help;
    size_t off;
} s_row_def;

#define MZ_X(field, name, family, help) { #name, #family, help, offsetof(mz_counters, field) },
static const s_row_def s_node_rows[] = { MZ_NODE_COUNTERS(MZ_X) };
#undef MZ_X
#define MZ_X(field, name, family, help) \
    { #name, #family, help, offsetof(mz_connmgr_stats, field) },
static const s_row_def s_link_rows[] = { MZ_LINK_COUNTERS(MZ_X) };
#undef MZ_X

static size_t s_add(mz_counter_row *out, size_t n, size_t max, const s_row_def *defs,
                    size_t n_defs, const void *base)
{
    for (size_t i = 0; i < n_defs && n < max; i++, n++) {
        out[n].name = defs[i].name;
        out[n].family = defs[i].family;
        out[n].help = defs[i].help;
        memcpy(&out[n].value, (const char *)base + defs[i].off, sizeof out[n].value);
        out[n].gauge = false;
    }
    return n;
}

static size_t s_gauge(mz_counter_row *out, size_t n, size_t max, const char *name,
                      const char *family, const char *help, uint64_t v)
{
    if (n >= max)
        return n;
    out[n] = (mz_counter_row){ name, family, help, v, true };
    return n + 1;
}

size_t mz__counter_rows(mz_node *node, mz_counter_row *out, size_t max)
{
    size_t n = s_add(out, 0, max, s_node_rows, sizeof s_node_rows / sizeof s_node_rows[0],
                     &node->c);

    n = s_add(out, n, max, s_link_rows, sizeof s_link_rows / sizeof s_link_rows[0],
              mz_connmgr_stats_get(node->cm));
    n = s_gauge(out, n, max, "exec_running", "exec_running", "Calls running here now",
                mz__exec_running(node));
    return s_gauge(out, n, max, "kept_answers", "exec_kept_answers",
                   "Answers of finished calls kept for retries",
                   mz__exec_kept(node));
}

static json_t *s_counters(mz_node *node)
{
    mz_counter_row rows[MZ_COUNTER_ROWS_MAX];
    size_t n = mz__counter_rows(node, rows, MZ_COUNTER_ROWS_MAX);
    json_t *o = json_object();

    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, rows[i].name, json_integer((json_int_t)rows[i].value));
    return o;
}

/* The limits in force: each option after its defaults were applied. */
static json_t *s_limits(mz_node *node)
{
    const mz_node_opts *o = &node->o;
    struct { const char *name; int64_t v; } t[] = {
        { "max_message", (int64_t)o->max_message },
        { "max_payload", (int64_t)o->max_payload },
        { "max_api_message", (int64_t)o->max_api_message },
        { "max_hops", o->max_hops },
        { "lease_ms", o->lease_ms },
        { "seen_capacity", (int64_t)o->seen_capacity },
        { "max_send_queue",
          (int64_t)(o->max_send_queue ? o->max_send_queue : MZ_DEFAULT_MAX_SEND_QUEUE) },
        { "max_peers", (int64_t)(o->max_peers ? o->max_peers : MZ_DEFAULT_MAX_PEERS) },
        { "max_running", (int64_t)o->max_running },
        { "max_pending", (int64_t)o->max_pending },
        { "max_subscriptions", (int64_t)o->max_subscriptions },
        { "max_kept_answers", (int64_t)o->max_kept_answers },
        { "max_kept_bytes", (int64_t)o->max_kept_bytes },
    };
    json_t *l = json_object();

    for (size_t i = 0; l && i < sizeof t / sizeof t[0]; i++)
        json_object_set_new(l, t[i].name, json_integer(t[i].v));
    return l;
}

static bool s_count_one(const mz_record *rec, void *ctx)
{
    (void)rec;
    (void)ctx;
    return true;
}

const char *mz__node_health(mz_node *node, const char **why)
{
    *why = "";
    if (node->fatal[0] != '\0') {
        *why = node->fatal;
        return "stopping";
    }
    if (node->stopping) {
        *why = "shutting down";
        return "stopping";
    }
    /* Until a --peer it must keep has come up once, for a third of a lease. */
    if (mz_now_ms() < node->started_ms + node->o.lease_ms / 3)
        for (mz_static *s = node->statics; s; s = s->next)
            if (s->persistent && !s->ever_up) {
                *why = "waiting for its first peer link";
                return "starting";
            }
    return "serving";
}

size_t mz__records_local(mz_node *node)
{
    mz_query q;

    memset(&q, 0, sizeof q);
    q.location = MZ_LOC_LOCAL;
    return mz_directory_query(node->dir, &q, s_count_one, NULL);
}

json_t *mz_node_status(mz_node *node)
{
    size_t local = mz__records_local(node), total = mz_directory_count(node->dir), peers = 0;
    const char *why, *health = mz__node_health(node, &why);

    for (mz_peer *p = node->peers; p; p = p->next)
        if (p->up && p->link)
            peers++;
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:{s:I,s:I},s:I,s:I,s:s,s:o,s:o}", "id",
                     mz_node_id(node), "listen", mz_node_listen_url(node), "api",
                     mz_node_api_url(node), "uptime_s",
                     (json_int_t)((mz_now_ms() - node->started_ms) / 1000), "peers",
                     (json_int_t)peers, "resources", "local", (json_int_t)local, "remote",
                     (json_int_t)(total - local), "nodes_known",
                     (json_int_t)mz_hmap_count(node->nodes), "routes",
                     (json_int_t)mz_routes_count(node->routes), "health", health, "counters",
                     s_counters(node), "limits", s_limits(node));
}
