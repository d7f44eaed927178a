/* What the node records for operators beyond its counters (counters.h):
 * messages by type, call durations and outcomes, hop counts, the members
 * that left, and the W3C trace context of calls. Read by `status`,
 * `members` and /metrics; written by the core modules through the
 * mz__obs_* calls below. */
#ifndef MZ_OBS_H
#define MZ_OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "meshzero/node.h"

typedef struct mz_hmap mz_hmap;

/* Call duration buckets (upper bounds in seconds), 50 us ... 30 s. */
#define MZ_OBS_DUR_BUCKETS 18
extern const double mz__obs_dur_bounds[MZ_OBS_DUR_BUCKETS];
/* Hop count buckets (upper bounds). */
#define MZ_OBS_HOP_BUCKETS 8
extern const int mz__obs_hop_bounds[MZ_OBS_HOP_BUCKETS];

/* Which end of a call a figure is about. */
enum { MZ_ROLE_CALLER, MZ_ROLE_HOST, MZ_ROLES };
extern const char *const mz__obs_role_names[MZ_ROLES];

/* Outcomes of a call: "ok" then the execute error codes, then "other" (a
 * code a handler made up). Generated from MZ_EXEC_CODES in meshzero/node.h. */
enum {
    MZ_OUTCOME_OK,
#define MZ_X(sym, text, doc) MZ_OUTCOME_##sym,
    MZ_EXEC_CODES(MZ_X)
#undef MZ_X
    MZ_OUTCOME_OTHER,
    MZ_OUTCOMES
};
extern const char *const mz__obs_outcome_names[MZ_OUTCOMES];
int mz__obs_outcome(const char *code);      /* NULL: ok */

typedef struct mz_hist {
    uint64_t bucket[MZ_OBS_DUR_BUCKETS];    /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} mz_hist;

/* A call's W3C trace context (traceparent is "" when there is none). */
typedef struct mz_trace {
    char traceparent[56];                   /* 00-<32 hex>-<16 hex>-<2 hex> */
    char tracestate[513];
} mz_trace;

typedef struct mz_obs {
    mz_hmap *msg_in;                        /* type -> uint64_t*: messages handled */
    mz_hmap *msg_out;                       /* type -> uint64_t*: messages we sent */
    mz_hmap *msg_fwd;                       /* type -> uint64_t*: messages we relayed */
    mz_hmap *link_downs;                    /* reason label -> uint64_t*: peer links closed */
    mz_hmap *rec_changes;                   /* op -> uint64_t*: directory changes */
    mz_hmap *agr_refused;                   /* reason -> uint64_t*: agreement refusals */
    mz_hist exec_dur[MZ_ROLES];
    uint64_t exec_done[MZ_ROLES][MZ_OUTCOMES];
    uint64_t hops[MZ_OBS_HOP_BUCKETS + 1];  /* + over the last bound */
    uint64_t hops_count, hops_sum;
    mz_hmap *left;                          /* node id -> struct mz_left*: members gone */
    json_t *links;                          /* node id -> its links as it last announced */
} mz_obs;

void mz__obs_free(mz_node *node);
/* Counts a message of a known type handled here / sent by us. */
void mz__obs_msg_in(mz_node *node, const char *type, int hops);
void mz__obs_msg_out(mz_node *node, const char *type);
/* Logs a link event (INFO): link.up, link.down, link.failed (closed before
 * the hello exchange); peer and reason may be NULL. */
void mz__obs_link_event(mz_node *node, const char *event, const char *peer, const char *addr,
                        const char *direction, const char *reason);
/* Bumps the count of key (a static, low-cardinality name) in *map. */
void mz__obs_count(mz_hmap **map, const char *key);
/* A call finished at one end (code NULL: ok): counts it, and logs it with
 * --log-calls. peer: the host (at the caller) or the caller (at the host). */
void mz__obs_call(mz_node *node, int role, const char *peer, const char *resource,
                  const char *method, const mz_trace *trace, uint64_t ns, const char *code);
/* A relay passed an execute on (logged with --log-calls). */
void mz__obs_relay(mz_node *node, const char *caller, const char *host, const json_t *pl);

/* ---- status (status.c) ---- */
/* One counter of `status`: its name there, its /metrics family (without
 * prefix and suffix), HELP text ("" after a family's first row). */
typedef struct mz_counter_row {
    const char *name, *family, *help;
    uint64_t value;
    bool gauge;                             /* a level, not a running count */
} mz_counter_row;
#define MZ_COUNTER_ROWS_MAX 96
/* Every counter `status` shows, in list order (counters.h); returns the count. */
size_t mz__counter_rows(mz_node *node, mz_counter_row *out, size_t max);
/* Records hosted here. */
size_t mz__records_local(mz_node *node);
/* "starting", "serving" or "stopping", and why when not serving ("" else). */
const char *mz__node_health(mz_node *node, const char **why);

/* ---- members (members.c) ---- */
/* Our direct links' node ids, as the `alive` payload carries them. New. */
json_t *mz__members_links(mz_node *node);
/* An `alive` of id arrived with payload pl: remember its links. */
void mz__members_on_alive(mz_node *node, const char *id, const json_t *pl);
/* id was forgotten (lease ran out, said bye): show it as left a while. */
void mz__members_left(mz_node *node, const char *id, const char *listen, const char *why);
void mz__members_expire(mz_node *node, int64_t now);

/* ---- trace context (trace.c) ---- */
/* Parses and checks a traceparent/tracestate pair (either may be NULL);
 * false when traceparent is not a valid version-00 header. */
bool mz__trace_set(mz_trace *t, const char *traceparent, const char *tracestate);
/* Starts a new trace (random trace and span ids, sampled). */
void mz__trace_start(mz_trace *t);
/* The same trace, a new span id: what this node passes on for its part. */
void mz__trace_child(const mz_trace *parent, mz_trace *child);
/* Reads {traceparent, tracestate} from obj (either may be absent): a
 * traceparent that is present and invalid makes this false. */
bool mz__trace_from_json(mz_trace *t, const json_t *obj);
/* Adds traceparent (and tracestate when set) to obj. */
void mz__trace_to_json(const mz_trace *t, json_t *obj);

#endif
