/* Figures for operators beyond the counters (obs.h): written on the hot
 * paths, so each is a counter bump or a small map lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/node_int.h"
#include "util/log.h"

const double mz__obs_dur_bounds[MZ_OBS_DUR_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0,
};
const int mz__obs_hop_bounds[MZ_OBS_HOP_BUCKETS] = { 0, 1, 2, 3, 4, 6, 8, 16 };
const char *const mz__obs_role_names[MZ_ROLES] = { "caller", "host" };
const char *const mz__obs_outcome_names[MZ_OUTCOMES] = {
    "ok",
#define MZ_X(sym, text, doc) text,
    MZ_EXEC_CODES(MZ_X)
#undef MZ_X
    "other",
};

int mz__obs_outcome(const char *code)
{
    if (code == NULL)
        return MZ_OUTCOME_OK;
    for (int i = MZ_OUTCOME_OK + 1; i < MZ_OUTCOME_OTHER; i++)
        if (strcmp(mz__obs_outcome_names[i], code) == 0)
            return i;
    return MZ_OUTCOME_OTHER;
}

void mz__obs_free(mz_node *node)
{
    mz_hmap_free(node->obs.msg_in, free);
    mz_hmap_free(node->obs.msg_out, free);
    mz_hmap_free(node->obs.msg_fwd, free);
    mz_hmap_free(node->obs.link_downs, free);
    mz_hmap_free(node->obs.rec_changes, free);
    mz_hmap_free(node->obs.agr_refused, free);
    mz_hmap_free(node->obs.left, free);
    json_decref(node->obs.links);
    memset(&node->obs, 0, sizeof node->obs);
}

/* Callers pass only known type names: the map stays as small as the type table. */
void mz__obs_count(mz_hmap **map, const char *type)
{
    uint64_t *n;

    if (*map == NULL && (*map = mz_hmap_new()) == NULL)
        return;
    n = mz_hmap_get(*map, type);
    if (n == NULL) {
        if ((n = calloc(1, sizeof *n)) == NULL || mz_hmap_put(*map, type, n, NULL) != MZ_OK) {
            free(n);
            return;
        }
    }
    (*n)++;
}

void mz__obs_msg_in(mz_node *node, const char *type, int hops)
{
    int b = 0;

    mz__obs_count(&node->obs.msg_in, type);
    if (hops < 0)
        hops = 0;
    while (b < MZ_OBS_HOP_BUCKETS && hops > mz__obs_hop_bounds[b])
        b++;
    node->obs.hops[b]++;
    node->obs.hops_count++;
    node->obs.hops_sum += (uint64_t)hops;
}

void mz__obs_msg_out(mz_node *node, const char *type)
{
    mz__obs_count(&node->obs.msg_out, type);
}

static void s_exec_done(mz_node *node, int role, uint64_t ns, const char *code)
{
    mz_hist *h = &node->obs.exec_dur[role];
    double s = (double)ns / 1e9;
    int b = 0;

    while (b < MZ_OBS_DUR_BUCKETS - 1 && s > mz__obs_dur_bounds[b])
        b++;
    if (s <= mz__obs_dur_bounds[b])
        h->bucket[b]++;     /* over the last bound: only in count (+Inf) */
    h->count++;
    h->sum += s;
    node->obs.exec_done[role][mz__obs_outcome(code)]++;
}

/* The sentence a text log line says for each link event (the JSON line
 * carries it as fields.message beside the fields). */
typedef struct s_link_text {
    const char *peer, *addr, *direction, *reason;
} s_link_text;

static void s_up(char *b, size_t n, const s_link_text *t)
{
    snprintf(b, n, "peer %.12s up (%s %s)", t->peer, strcmp(t->direction, "out") == 0 ? "to"
             : "from", t->addr);
}

static void s_down(char *b, size_t n, const s_link_text *t)
{
    snprintf(b, n, "peer %.12s down: %s", t->peer, t->reason);
}

static void s_failed(char *b, size_t n, const s_link_text *t)
{
    snprintf(b, n, "link %s closed before hello completed: %s", t->addr, t->reason);
}

static void s_refused(char *b, size_t n, const s_link_text *t)
{
    snprintf(b, n, "refusing %s (%s): %s", t->peer[0] ? t->peer : "peer", t->addr, t->reason);
}

static const struct {
    const char *event;
    int level;
    void (*text)(char *b, size_t n, const s_link_text *t);
} s_link_events[] = {
    { "link.up",      MZ_LOG_INFO, s_up },
    { "link.down",    MZ_LOG_INFO, s_down },
    { "link.failed",  MZ_LOG_INFO, s_failed },
    { "peer.refused", MZ_LOG_WARN, s_refused },
};

/* A closed link's reason text as a label: the first row it contains. */
static const struct {
    const char *text, *label;
} s_close_reasons[] = {
    { "closed by peer", "peer_closed" },    { "dial failed", "dial_failed" },
    { "tls", "tls" },                       { "send queue full", "slow_peer" },
    { "too slow", "slow_peer" },            { "rate", "rate_limit" },
    { "shedding", "shed" },                 { "duplicate link", "duplicate" },
    { "refused", "refused" },               { "hello", "hello_failed" },
    { "node shutting down", "shutdown" },   { "by request", "request" },
    { "too big", "oversize" },              { "connection closed", "connection_lost" },
};

static const char *s_close_label(const char *reason)
{
    for (size_t i = 0; reason && i < sizeof s_close_reasons / sizeof s_close_reasons[0]; i++)
        if (strstr(reason, s_close_reasons[i].text) != NULL)
            return s_close_reasons[i].label;
    return "other";
}

void mz__obs_link_event(mz_node *node, const char *event, const char *peer, const char *addr,
                        const char *direction, const char *reason)
{
    s_link_text t = { peer ? peer : "", addr ? addr : "", direction ? direction : "",
                      reason ? reason : "" };
    char text[512];
    json_t *f;

    if (strcmp(event, "link.down") == 0 || strcmp(event, "link.failed") == 0)
        mz__obs_count(&node->obs.link_downs, s_close_label(reason));
    for (size_t i = 0; i < sizeof s_link_events / sizeof s_link_events[0]; i++) {
        if (strcmp(s_link_events[i].event, event) != 0)
            continue;
        if (s_link_events[i].level < mz_log_level())
            return;
        s_link_events[i].text(text, sizeof text, &t);
        f = json_pack("{s:s,s:s*,s:s*,s:s*,s:s*}", "message", text, "peer", peer, "addr", addr,
                      "direction", direction, "reason", reason);
        mz_log_event(s_link_events[i].level, "node", event, f);
        json_decref(f);
        return;
    }
}

void mz__obs_call(mz_node *node, int role, const char *peer, const char *resource,
                  const char *method, const mz_trace *trace, uint64_t ns, const char *code)
{
    json_t *f;

    s_exec_done(node, role, ns, code);
    if (!node->o.log_calls || MZ_LOG_INFO < mz_log_level())
        return;
    /* Never the params: they may carry anything the caller sent. */
    f = json_pack("{s:s,s:s,s:s,s:s,s:f,s:s,s:s*,s:s*}", "role", mz__obs_role_names[role],
                  "resource", resource, "method", method,
                  role == MZ_ROLE_HOST ? "caller" : "host", peer, "duration_ms",
                  (double)ns / 1e6, "outcome", code ? code : "ok", "traceparent",
                  trace && trace->traceparent[0] ? trace->traceparent : NULL, "tracestate",
                  trace && trace->tracestate[0] ? trace->tracestate : NULL);
    mz_log_event(MZ_LOG_INFO, "exec", "call", f);
    json_decref(f);
}

void mz__obs_relay(mz_node *node, const char *caller, const char *host, const json_t *pl)
{
    mz_trace t;
    json_t *f;

    if (!node->o.log_calls || MZ_LOG_INFO < mz_log_level())
        return;
    (void)mz__trace_from_json(&t, pl);
    f = json_pack("{s:s,s:s*,s:s*,s:s,s:s,s:s*}", "role", "relay", "resource",
                  json_string_value(json_object_get(pl, "resource_id")), "method",
                  json_string_value(json_object_get(pl, "method")), "caller", caller, "host",
                  host, "traceparent", t.traceparent[0] ? t.traceparent : NULL);
    mz_log_event(MZ_LOG_INFO, "exec", "call.relay", f);
    json_decref(f);
}
