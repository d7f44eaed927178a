/* /metrics (Prometheus text exposition 0.0.4), /health and /status: the
 * pages of the API listener's route table (http.c). Every counter of
 * `status` is exposed from the one list (counters.h); README "Metrics". */
#include <uv.h>
#include <libwebsockets.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/node_int.h"
#include "svc/http.h"
#include "meshzero/bridge.h"

#define P "meshzero_"
#ifndef MZ_VERSION
#define MZ_VERSION "0.1.0"
#endif

/* A label value, escaped as the format wants (\\, \", \n). */
static void s_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f);
        if (*v == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*v, f);
    }
}

static void s_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP " P "%s %s\n# TYPE " P "%s %s\n", name, help, name, type);
}

/* The status counters: rows of one family are one metric labeled by reason
 * (the status name); HELP names the status counters it shows. */
static void s_status_counters(FILE *f, mz_node *node)
{
    mz_counter_row rows[MZ_COUNTER_ROWS_MAX];
    size_t n = mz__counter_rows(node, rows, MZ_COUNTER_ROWS_MAX);
    bool done[MZ_COUNTER_ROWS_MAX] = { false };

    for (size_t i = 0; i < n; i++) {
        size_t members = 0;
        const char *type = rows[i].gauge ? "gauge" : "counter";
        const char *sfx = rows[i].gauge ? "" : "_total";
        if (done[i])
            continue;
        for (size_t j = i; j < n; j++)
            members += strcmp(rows[j].family, rows[i].family) == 0;
        fprintf(f, "# HELP " P "%s%s %s (status:", rows[i].family, sfx, rows[i].help);
        for (size_t j = i; j < n; j++)
            if (strcmp(rows[j].family, rows[i].family) == 0)
                fprintf(f, " %s", rows[j].name);
        fprintf(f, ")\n# TYPE " P "%s%s %s\n", rows[i].family, sfx, type);
        for (size_t j = i; j < n; j++) {
            if (strcmp(rows[j].family, rows[i].family) != 0)
                continue;
            done[j] = true;
            if (members > 1)
                fprintf(f, P "%s%s{reason=\"%s\"} %llu\n", rows[j].family, sfx, rows[j].name,
                        (unsigned long long)rows[j].value);
            else
                fprintf(f, P "%s%s %llu\n", rows[j].family, sfx,
                        (unsigned long long)rows[j].value);
        }
    }
}

/* A family from one of the obs maps: key -> count, one label. */
static void s_map(FILE *f, const mz_hmap *map, const char *name, const char *label,
                  const char *help)
{
    size_t pos = 0;
    const char *key;
    void *val;

    s_head(f, name, "counter", help);
    while (map && mz_hmap_next(map, &pos, &key, &val)) {
        fprintf(f, P "%s{%s=\"", name, label);
        s_label(f, key);
        fprintf(f, "\"} %llu\n", (unsigned long long)*(uint64_t *)val);
    }
}

static void s_executes(FILE *f, mz_node *node)
{
    s_head(f, "executes_total", "counter", "Calls finished, by role and outcome");
    for (int r = 0; r < MZ_ROLES; r++)
        for (int o = 0; o < MZ_OUTCOMES; o++)
            fprintf(f, P "executes_total{role=\"%s\",outcome=\"%s\"} %llu\n",
                    mz__obs_role_names[r], mz__obs_outcome_names[o],
                    (unsigned long long)node->obs.exec_done[r][o]);
    s_head(f, "execute_duration_seconds", "histogram",
           "Call durations: at the caller from the call to its answer, at the host from "
           "the request to the reply");
    for (int r = 0; r < MZ_ROLES; r++) {
        const mz_hist *h = &node->obs.exec_dur[r];
        uint64_t cum = 0;
        for (int b = 0; b < MZ_OBS_DUR_BUCKETS; b++) {
            cum += h->bucket[b];
            fprintf(f, P "execute_duration_seconds_bucket{role=\"%s\",le=\"%g\"} %llu\n",
                    mz__obs_role_names[r], mz__obs_dur_bounds[b], (unsigned long long)cum);
        }
        fprintf(f, P "execute_duration_seconds_bucket{role=\"%s\",le=\"+Inf\"} %llu\n"
                P "execute_duration_seconds_sum{role=\"%s\"} %.9f\n"
                P "execute_duration_seconds_count{role=\"%s\"} %llu\n",
                mz__obs_role_names[r], (unsigned long long)h->count, mz__obs_role_names[r],
                h->sum, mz__obs_role_names[r], (unsigned long long)h->count);
    }
}

static void s_hops(FILE *f, mz_node *node)
{
    uint64_t cum = 0;

    s_head(f, "message_hops", "histogram", "Hops the messages handled here had travelled");
    for (int b = 0; b < MZ_OBS_HOP_BUCKETS; b++) {
        cum += node->obs.hops[b];
        fprintf(f, P "message_hops_bucket{le=\"%d\"} %llu\n", mz__obs_hop_bounds[b],
                (unsigned long long)cum);
    }
    fprintf(f, P "message_hops_bucket{le=\"+Inf\"} %llu\n" P "message_hops_sum %llu\n"
            P "message_hops_count %llu\n", (unsigned long long)node->obs.hops_count,
            (unsigned long long)node->obs.hops_sum, (unsigned long long)node->obs.hops_count);
}

static void s_gauges(FILE *f, mz_node *node)
{
    size_t peers = 0, queued = 0, local = mz__records_local(node);
    size_t total = mz_directory_count(node->dir);
    const char *why, *health = mz__node_health(node, &why);

    for (mz_peer *p = node->peers; p; p = p->next)
        if (p->link) {
            peers += p->up;
            queued += mz_link_queued_bytes(p->link);
        }
    s_head(f, "node_info", "gauge", "This node (value 1)");
    fprintf(f, P "node_info{id=\"%s\"} 1\n", mz_node_id(node));
    s_head(f, "up", "gauge", "1 while the node serves (/health 200), else 0");
    fprintf(f, P "up %d\n", strcmp(health, "serving") == 0);
    s_head(f, "peers", "gauge", "Peer links up");
    fprintf(f, P "peers %zu\n", peers);
    s_head(f, "api_clients", "gauge", "API clients connected");
    fprintf(f, P "api_clients %zu\n", mz_connmgr_count(node->cm, MZ_LINK_API));
    s_head(f, "send_queue_bytes", "gauge", "Bytes queued on peer links");
    fprintf(f, P "send_queue_bytes %zu\n", queued);
    s_head(f, "nodes_known", "gauge", "Other nodes this node knows of");
    fprintf(f, P "nodes_known %zu\n", mz_hmap_count(node->nodes));
    s_head(f, "routes", "gauge", "Routes held");
    fprintf(f, P "routes %zu\n", mz_routes_count(node->routes));
    s_head(f, "directory_records", "gauge", "Records in the directory, by origin");
    fprintf(f, P "directory_records{origin=\"local\"} %zu\n"
            P "directory_records{origin=\"remote\"} %zu\n", local, total - local);
    s_head(f, "subscriptions", "gauge", "Event subscriptions held (own and API clients')");
    fprintf(f, P "subscriptions %zu\n", node->ev.n_subs);
    s_head(f, "calls_pending", "gauge", "Calls this node and its clients await");
    fprintf(f, P "calls_pending %zu\n", mz__exec_pending(node));
}

/* The imported MCP servers, by their configured name (a few, chosen by the
 * operator: low cardinality). */
static void s_bridge(FILE *f, mz_node *node)
{
    mz_bridge *b = mz_bridge_of_node(node);
    json_t *list = b ? mz_bridge_list(b) : NULL, *e, *v;
    const char *key;
    size_t i;

    s_head(f, "bridge_servers", "gauge", "Imported MCP servers, by name and state (value 1)");
    json_array_foreach(list, i, e) {
        fputs(P "bridge_servers{server=\"", f);
        s_label(f, json_string_value(json_object_get(e, "name")));
        fprintf(f, "\",state=\"%s\"} 1\n", json_string_value(json_object_get(e, "state")));
    }
    s_head(f, "bridge_restarts_total", "counter", "Restarts of imported MCP servers");
    json_array_foreach(list, i, e) {
        fputs(P "bridge_restarts_total{server=\"", f);
        s_label(f, json_string_value(json_object_get(e, "name")));
        fprintf(f, "\"} %lld\n", (long long)json_integer_value(json_object_get(e, "restarts")));
    }
    s_head(f, "bridge_calls_total", "counter",
           "Calls served by imported MCP servers, by server and outcome");
    json_array_foreach(list, i, e) {
        json_object_foreach(json_object_get(e, "calls"), key, v) {
            fputs(P "bridge_calls_total{server=\"", f);
            s_label(f, json_string_value(json_object_get(e, "name")));
            fprintf(f, "\",outcome=\"");
            s_label(f, key);
            fprintf(f, "\"} %lld\n", (long long)json_integer_value(v));
        }
    }
    json_decref(list);
}

/* CPU, memory, descriptors and start time of this process (Linux /proc). */
static void s_process(FILE *f, mz_node *node)
{
    struct rusage ru;
    long rss_pages = 0, page = sysconf(_SC_PAGESIZE);
    size_t fds = 0;
    FILE *sf = fopen("/proc/self/statm", "r");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    struct rlimit rl;

    if (sf != NULL) {
        if (fscanf(sf, "%*d %ld", &rss_pages) != 1)
            rss_pages = 0;
        fclose(sf);
    }
    while (d && (e = readdir(d)) != NULL)
        fds += e->d_name[0] != '.';
    if (d) {
        closedir(d);
        fds--;                  /* the directory's own descriptor */
    }
    getrusage(RUSAGE_SELF, &ru);
    s_head(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent");
    fprintf(f, P "process_cpu_seconds_total %.6f\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    s_head(f, "process_resident_memory_bytes", "gauge", "Resident memory");
    fprintf(f, P "process_resident_memory_bytes %lld\n", (long long)rss_pages * page);
    s_head(f, "process_open_fds", "gauge", "Open file descriptors");
    fprintf(f, P "process_open_fds %zu\n", fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        s_head(f, "process_max_fds", "gauge", "File descriptor limit");
        fprintf(f, P "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    s_head(f, "process_start_time_seconds", "gauge", "When the node started (Unix time)");
    fprintf(f, P "process_start_time_seconds %.3f\n", (double)node->started_ms / 1000.0);
}

static void s_page_metrics(mz_node *node, void *wsi, const char *path, mz_http_page *out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)wsi;
    (void)path;
    if (f == NULL) {
        *out = (mz_http_page){ 500, "text/plain; charset=utf-8", strdup("out of memory\n"), 0 };
        return;
    }
    s_head(f, "build_info", "gauge", "The build (value 1)");
    fprintf(f, P "build_info{version=\"%s\",protocol=\"meshzero/1\"} 1\n", MZ_VERSION);
    s_gauges(f, node);
    s_status_counters(f, node);
    s_head(f, "api_calls_total", "counter", "Local API requests answered (status: api_calls)");
    fprintf(f, P "api_calls_total %llu\n", (unsigned long long)mz__api_calls(node));
    s_map(f, node->obs.msg_in, "messages_received_total", "type",
          "Messages verified and handled here, by type");
    s_map(f, node->obs.msg_out, "messages_sent_total", "type",
          "Messages this node originated, by type");
    s_map(f, node->obs.msg_fwd, "messages_relayed_total", "type",
          "Messages relayed on towards other nodes, by type");
    s_map(f, node->obs.link_downs, "peer_links_closed_total", "reason",
          "Peer links that closed (either side, or a dial that failed), by reason");
    s_map(f, node->obs.rec_changes, "directory_changes_total", "op",
          "Directory changes, by operation");
    s_map(f, node->obs.agr_refused, "agreement_refusals_total", "reason",
          "Calls refused for want of a valid agreement, by reason");
    s_executes(f, node);
    s_hops(f, node);
    s_bridge(f, node);
    s_process(f, node);
    fclose(f);
    *out = (mz_http_page){ 200, "text/plain; version=0.0.4; charset=utf-8", buf, len };
}

static void s_page_health(mz_node *node, void *wsi, const char *path, mz_http_page *out)
{
    const char *why, *health = mz__node_health(node, &why);
    bool ok = strcmp(health, "serving") == 0;
    json_t *j = json_pack("{s:s,s:s,s:I}", "status", health, "id", mz_node_id(node),
                          "uptime_s", (json_int_t)((mz_now_ms() - node->started_ms) / 1000));
    char *text;

    (void)wsi;
    (void)path;
    if (j != NULL && !ok)
        json_object_set_new(j, "reason", json_string(why));
    text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    *out = (mz_http_page){ ok ? 200 : 503, "application/json", text, 0 };
}

static void s_page_status(mz_node *node, void *wsi, const char *path, mz_http_page *out)
{
    json_t *j = mz__api_status(node);

    (void)wsi;
    (void)path;
    *out = (mz_http_page){ 200, "application/json", j ? json_dumps(j, JSON_COMPACT) : NULL, 0 };
    json_decref(j);
}

mz_status mz__metrics_attach(mz_node *node, mz_err *err)
{
    static const struct {
        const char *path;
        mz_http_page_fn fn;
    } pages[] = {
        { "/metrics", s_page_metrics },
        { "/health",  s_page_health },
        { "/status",  s_page_status },
    };
    mz_status rc;

    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        if ((rc = mz__http_page(node, pages[i].path, pages[i].fn, err)) != MZ_OK)
            return rc;
    return MZ_OK;
}
