/* execute_remote: calls waiting at the caller (node->ex->calls), calls running at
 * the host (mz_exec), and the relays' memory of execute requests they passed
 * on, so that a broken path fails a call at once instead of at its timeout.
 * Wire format: docs/PROTOCOL.md "execute". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "state/agreement.h"
#include "core/node_int.h"

/* exec.c's state, reached through node->ex and nowhere else. */
struct mz_exec_state {
    mz_hmap *calls;             /* request id -> mz_call* we wait on */
    mz_hmap *relayed;           /* request id -> execute we relayed */
    mz_hmap *handlers;          /* resource id -> handler entry */
    struct mz_exec *execs;      /* calls our handlers are running */
    size_t running;             /* length of execs */
    mz_hmap *kept;              /* "caller/call" -> struct mz_kept*: calls run here */
    struct mz_kept *kept_old, *kept_new; /* answered ones, oldest first */
    size_t kept_answered, kept_bytes;
};

mz_status mz__exec_init(mz_node *node, mz_err *err)
{
    mz_exec_state *ex = calloc(1, sizeof *ex);

    node->ex = ex;
    if (ex == NULL)
        return mz_err_set(err, MZ_ENOMEM, "node: allocating");
    ex->calls = mz_hmap_new();
    ex->relayed = mz_hmap_new();
    ex->handlers = mz_hmap_new();
    if (ex->calls == NULL || ex->relayed == NULL || ex->handlers == NULL)
        return mz_err_set(err, MZ_ENOMEM, "node: allocating");
    return MZ_OK;
}

size_t mz__exec_running(const mz_node *node)
{
    return node->ex ? node->ex->running : 0;
}

size_t mz__exec_kept(const mz_node *node)
{
    return node->ex && node->ex->kept ? mz_hmap_count(node->ex->kept) : 0;
}

size_t mz__exec_pending(const mz_node *node)
{
    return node->ex ? mz_hmap_count(node->ex->calls) : 0;
}

/* ---- caller side -------------------------------------------------------- */

/* A call whose path breaks (a link on the way closes, a relay has no route,
 * a transient loop hits the hop limit) or that stays silent is sent again,
 * as a new envelope carrying the same "call" id: the host runs a call once
 * per (caller, call) and answers repeats from what it kept (host side
 * below). Timing, all bounded by the call's own timeout: */
#define MZ_RETRY_FIRST_MS 50     /* after a path failure, first retry; doubles */
#define MZ_RETRY_MAX_MS 800      /* cap of that backoff */
#define MZ_ROUTE_POLL_MS 100     /* waiting for a route: how often to look */
#define MZ_RTO_FIRST_MS 1000     /* silent this long: send again; doubles */
#define MZ_CALL_ALIASES 3        /* earlier attempts whose answers still count */

typedef struct mz_call {
    mz_node *node;
    char id[MZ_MSG_ID_MAX + 1];         /* current attempt's envelope id; key in node->ex->calls */
    char host[MZ_ID_HEX_LEN + 1];       /* node expected to answer */
    mz_result_cb cb;
    void *ctx;
    uv_timer_t timer;                   /* next of: deadline, retry, retransmit */
    uint64_t link_id;                   /* link the attempt left on; 0: local or none */
    const char *early_code;             /* set: fail with this when the timer fires */
    char early_msg[200];
    json_t *local_req;                  /* a call to our own resource, run on the next
                                           loop turn: {resource_id, method, params} */
    json_t *req_pl;                     /* request payload, sent again by retries */
    int64_t timeout_ms;
    int64_t deadline_ms;
    int64_t sent_ms;                    /* attempt in flight since; 0: waiting to send */
    int64_t retry_at_ms;                /* waiting: next try */
    int64_t give_up_ms;                 /* waiting: unreachable after this; 0: not set */
    int64_t last_fail_ms;
    int64_t backoff_ms;
    int64_t rto_ms;
    int attempts;                       /* envelopes sent */
    /* Earlier attempts' ids, also keys in node->ex->calls: the host may still
     * answer one of them (its answer was on the way when we sent again). */
    char old_ids[MZ_CALL_ALIASES][MZ_MSG_ID_MAX + 1];
    char why[160];                      /* last path failure, for the final error */
    mz_trace trace;                     /* this node's span of the call */
    char trace_echo[56];                /* the host's traceparent from its answer */
    uint64_t t0_ns;                     /* started (uv_hrtime) */
    char resource_id[MZ_RESOURCE_ID_MAX + 1], method[129];   /* for the call log */
} mz_call;

/* The call whose result callback is running (mz_node_call_traceparent). */
static _Thread_local const mz_call *s_finishing;

static void s_call_free_cb(uv_handle_t *h)
{
    mz_call *c = h->data;

    json_decref(c->local_req);
    json_decref(c->req_pl);
    free(c);
}

/* Removes the call and reports it; result XOR code. */
static void s_call_finish(mz_call *c, const json_t *result, const char *code, const char *msg)
{
    mz_node *node = c->node;

    mz_hmap_remove(node->ex->calls, c->id);
    for (int i = 0; i < MZ_CALL_ALIASES; i++)
        if (c->old_ids[i][0] != '\0')
            mz_hmap_remove(node->ex->calls, c->old_ids[i]);
    uv_timer_stop(&c->timer);
    mz__obs_call(node, MZ_ROLE_CALLER, c->host, c->resource_id, c->method, &c->trace,
                 uv_hrtime() - c->t0_ns, code);
    s_finishing = c;
    if (c->cb)
        c->cb(node, result, code, msg, c->ctx);
    s_finishing = NULL;
    uv_close((uv_handle_t *)&c->timer, s_call_free_cb);
}

const char *mz_node_call_traceparent(const mz_node *node)
{
    (void)node;
    if (s_finishing == NULL || s_finishing->trace.traceparent[0] == '\0')
        return NULL;
    return s_finishing->trace_echo[0] ? s_finishing->trace_echo : s_finishing->trace.traceparent;
}

static void s_host_run(mz_node *node, const char *req_id, const char *caller,
                       const char *resource_id, const char *method, const json_t *params,
                       const json_t *agreement, int64_t timeout_ms, bool local,
                       const char *call_key, const mz_trace *trace);

static void s_on_call_timer(uv_timer_t *t);

/* Arms the timer for the call's next event. */
static void s_call_arm(mz_call *c, int64_t now)
{
    int64_t at = c->deadline_ms;

    if (c->sent_ms != 0) {
        if (c->sent_ms + c->rto_ms < at)
            at = c->sent_ms + c->rto_ms;
    } else {
        if (c->retry_at_ms < at)
            at = c->retry_at_ms;
        if (c->give_up_ms != 0 && c->give_up_ms < at)
            at = c->give_up_ms;
    }
    uv_timer_start(&c->timer, s_on_call_timer, (uint64_t)(at > now ? at - now : 0), 0);
}

/* How long a host may stay out of reach before its calls fail unreachable:
 * the time its next `alive` needs to bring a new route. */
static int64_t s_hold_ms(const mz_node *node)
{
    return node->o.lease_ms / 3 + 1000;
}

/* The attempt in flight is lost (or none could leave): wait a little, then
 * try again, for up to s_hold_ms since the failures began. */
static void s_call_path_failed(mz_call *c, int64_t now, const char *why)
{
    int64_t hold = s_hold_ms(c->node);

    snprintf(c->why, sizeof c->why, "%s", why);
    if (c->give_up_ms == 0 || now - c->last_fail_ms > hold)
        c->give_up_ms = now + hold;
    c->last_fail_ms = now;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : MZ_RETRY_FIRST_MS;
    if (c->backoff_ms > MZ_RETRY_MAX_MS)
        c->backoff_ms = MZ_RETRY_MAX_MS;
    c->sent_ms = 0;
    c->link_id = 0;
    c->retry_at_ms = now + c->backoff_ms;
    s_call_arm(c, now);
}

/* Sends the request over the current route, as a new envelope after the
 * first attempt (a repeated id would be refused as a replay). */
static void s_call_send(mz_call *c, int64_t now)
{
    mz_node *node = c->node;
    uint64_t link;
    mz_msg *msg;

    if (!mz_routes_lookup(node->routes, c->host, now, &link, NULL)) {
        /* A link on the way just went: the host's next alive brings a new route. */
        if (c->give_up_ms == 0) {
            node->c.exec_held++;
            snprintf(c->why, sizeof c->why, "no route to node %.12s", c->host);
            c->give_up_ms = now + s_hold_ms(node);
            c->last_fail_ms = now;
        }
        c->sent_ms = 0;
        c->retry_at_ms = now + MZ_ROUTE_POLL_MS;
        s_call_arm(c, now);
        return;
    }
    if (c->attempts++ > 0) {
        /* Not the first attempt: a new envelope id, and the call found under
         * it; the last few ids keep finding it too. */
        char *slot = c->old_ids[(c->attempts - 2) % MZ_CALL_ALIASES];
        if (slot[0] != '\0')
            mz_hmap_remove(node->ex->calls, slot);
        snprintf(slot, sizeof c->old_ids[0], "%s", c->id);
        mz_random_hex(c->id, 16);
        if (mz_hmap_put(node->ex->calls, c->id, c, NULL) != MZ_OK) {
            s_call_finish(c, NULL, MZ_EXEC_UNREACHABLE, "out of memory");
            return;
        }
    }
    msg = mz__msg_new("execute", mz_identity_id(node->ident), c->host, json_incref(c->req_pl));
    if (msg != NULL)
        mz__msg_set_id(msg, c->id);
    c->sent_ms = now;
    c->link_id = link;
    if (mz__send(node, msg, NULL, NULL) != MZ_OK) {
        s_call_path_failed(c, now, "could not send the request");
        return;
    }
    s_call_arm(c, now);
}

static void s_on_call_timer(uv_timer_t *t)
{
    mz_call *c = t->data;
    mz_node *node = c->node;
    int64_t now;
    char why[200];

    if (c->local_req) {
        /* First turn of a local call: arm the timeout, then run the handler. */
        json_t *req = c->local_req;
        c->local_req = NULL;
        uv_timer_start(&c->timer, s_on_call_timer, (uint64_t)c->timeout_ms, 0);
        s_host_run(node, c->id, mz_identity_id(node->ident),
                   json_string_value(json_object_get(req, "resource_id")),
                   json_string_value(json_object_get(req, "method")),
                   json_object_get(req, "params"), json_object_get(req, "agreement"),
                   c->timeout_ms, true, NULL, &c->trace);
        json_decref(req);
        return;
    }
    if (c->early_code) {
        s_call_finish(c, NULL, c->early_code, c->early_msg);
        return;
    }
    now = mz_now_ms();
    if (c->req_pl == NULL || now >= c->deadline_ms) {
        if (c->sent_ms == 0 && c->why[0] != '\0') {
            s_call_finish(c, NULL, MZ_EXEC_UNREACHABLE, c->why);
            return;
        }
        node->c.exec_timeouts++;
        snprintf(why, sizeof why, "no answer from node %.12s within the timeout", c->host);
        s_call_finish(c, NULL, MZ_EXEC_TIMEOUT, why);
        return;
    }
    if (c->sent_ms == 0) {
        if (c->give_up_ms != 0 && now >= c->give_up_ms) {
            s_call_finish(c, NULL, MZ_EXEC_UNREACHABLE, c->why);
            return;
        }
        if (now < c->retry_at_ms) {
            s_call_arm(c, now);
            return;
        }
        if (c->why[0] != '\0')
            node->c.exec_retries++;
        s_call_send(c, now);
        return;
    }
    if (now >= c->sent_ms + c->rto_ms) {
        /* Silence: the request or its answer may be lost on a path that broke
         * without a word. A repeat costs the host a lookup, not a run. */
        node->c.exec_retransmits++;
        mz__evidence_silent(node, c->host, c->link_id);
        c->rto_ms *= 2;
        s_call_send(c, now);
        return;
    }
    s_call_arm(c, now);
}

static mz_call *s_call_new(mz_node *node, const char *id, mz_result_cb cb, void *ctx)
{
    mz_call *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->node = node;
    c->cb = cb;
    c->ctx = ctx;
    snprintf(c->id, sizeof c->id, "%s", id);
    if (mz_hmap_put(node->ex->calls, c->id, c, NULL) != MZ_OK) {
        free(c);
        return NULL;
    }
    uv_timer_init(node->loop, &c->timer);
    c->timer.data = c;
    return c;
}

static void s_call_fail_soon(mz_call *c, const char *code, const char *msg)
{
    c->early_code = code;
    snprintf(c->early_msg, sizeof c->early_msg, "%s", msg);
    uv_timer_start(&c->timer, s_on_call_timer, 0, 0);
}

mz_status mz_node_execute_remote(mz_node *node, const char *resource_id, const char *method,
                                 const json_t *params, int64_t timeout_ms, mz_result_cb cb,
                                 void *ctx, mz_err *err)
{
    return mz_node_execute_with(node, resource_id, method, params, NULL, timeout_ms, cb, ctx,
                                err);
}

mz_status mz_node_execute_with(mz_node *node, const char *resource_id, const char *method,
                               const json_t *params, const json_t *agreement,
                               int64_t timeout_ms, mz_result_cb cb, void *ctx, mz_err *err)
{
    return mz_node_execute_traced(node, resource_id, method, params, agreement, NULL,
                                  timeout_ms, cb, ctx, err);
}

/* The call's trace (the caller's, or a new one: an invalid traceparent also
 * starts one, as W3C Trace Context says; our span is its child), start time
 * and names for the call log. */
static void s_call_begin(mz_call *c, const json_t *trace, const char *resource_id,
                         const char *method)
{
    mz_trace in;

    if (mz__trace_from_json(&in, trace) && in.traceparent[0])
        mz__trace_child(&in, &c->trace);
    else
        mz__trace_start(&c->trace);
    c->t0_ns = uv_hrtime();
    snprintf(c->resource_id, sizeof c->resource_id, "%s", resource_id);
    snprintf(c->method, sizeof c->method, "%s", method);
}

mz_status mz_node_execute_traced(mz_node *node, const char *resource_id, const char *method,
                                 const json_t *params, const json_t *agreement,
                                 const json_t *trace, int64_t timeout_ms, mz_result_cb cb,
                                 void *ctx, mz_err *err)
{
    const mz_record *rec;
    json_t *pl;
    mz_call *c;
    char id[MZ_MSG_ID_MAX + 1];
    int64_t now;

    if (resource_id == NULL || method == NULL || method[0] == '\0' || strlen(method) > 128)
        return mz_err_set(err, MZ_EINVAL, "execute: resource_id and a method of 1-128 bytes "
                          "are required");
    if (node->stopping)
        return mz_err_set(err, MZ_ESTATE, "execute: node is shutting down");
    if (mz_hmap_count(node->ex->calls) >= node->o.max_pending)
        return mz_err_set(err, MZ_ELIMIT, "execute: %zu calls already pending (the limit)",
                          node->o.max_pending);
    if (timeout_ms <= 0)
        timeout_ms = MZ_DEFAULT_EXEC_TIMEOUT_MS;
    if (timeout_ms > MZ_MAX_EXEC_TIMEOUT_MS)
        timeout_ms = MZ_MAX_EXEC_TIMEOUT_MS;
    mz_random_hex(id, 16);
    c = s_call_new(node, id, cb, ctx);
    if (c == NULL)
        return mz_err_set(err, MZ_ENOMEM, "execute: allocating");
    node->c.exec_calls++;
    s_call_begin(c, trace, resource_id, method);
    if (params != NULL && !json_is_object(params)) {
        s_call_fail_soon(c, MZ_EXEC_BAD_REQUEST, "params must be a JSON object");
        return MZ_OK;
    }
    rec = mz_directory_get(node->dir, resource_id);
    if (rec == NULL) {
        char why[200];
        snprintf(why, sizeof why, "no resource '%.128s' in the directory", resource_id);
        s_call_fail_soon(c, MZ_EXEC_NOT_FOUND, why);
        return MZ_OK;
    }
    snprintf(c->host, sizeof c->host, "%s", mz_record_node(rec));
    c->timeout_ms = timeout_ms;
    if (mz_record_local(rec)) {
        c->local_req = json_pack("{s:s,s:s,s:o,s:O?}", "resource_id", resource_id, "method",
                                 method, "params",
                                 params ? json_deep_copy(params) : json_object(), "agreement",
                                 agreement);
        if (c->local_req == NULL) {
            s_call_fail_soon(c, MZ_EXEC_HANDLER_ERROR, "out of memory");
            return MZ_OK;
        }
        uv_timer_start(&c->timer, s_on_call_timer, 0, 0);
        return MZ_OK;
    }
    pl = json_pack("{s:s,s:s,s:o,s:I,s:s}", "resource_id", resource_id, "method", method,
                   "params", params ? json_deep_copy(params) : json_object(), "timeout_ms",
                   (json_int_t)timeout_ms, "call", c->id);
    if (pl != NULL && agreement != NULL && !json_is_null(agreement))
        json_object_set_new(pl, "agreement", json_deep_copy(agreement));
    if (pl != NULL)
        mz__trace_to_json(&c->trace, pl);
    if (pl == NULL) {
        s_call_fail_soon(c, MZ_EXEC_UNREACHABLE, "could not build the request");
        return MZ_OK;
    }
    c->req_pl = pl;
    now = mz_now_ms();
    c->deadline_ms = now + timeout_ms;
    c->rto_ms = MZ_RTO_FIRST_MS;
    s_call_send(c, now);
    return MZ_OK;
}

void mz__exec_on_result(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *ref = json_string_value(json_object_get(pl, "ref"));
    const json_t *e = json_object_get(pl, "error");
    mz_call *c = ref ? mz_hmap_get(node->ex->calls, ref) : NULL;

    (void)p;
    if (c == NULL || c->early_code != NULL) {
        node->c.late_results++;   /* timed out already, or never ours */
        return;
    }
    if (strcmp(mz__msg_sender(msg), c->host) != 0) {
        node->c.forged++;
        mz_log(MZ_LOG_WARN, "exec", "result for %s from %.12s, not the host %.12s", ref,
               mz__msg_sender(msg), c->host);
        return;
    }
    {
        mz_trace echo;
        if (mz__trace_from_json(&echo, pl) && echo.traceparent[0])
            snprintf(c->trace_echo, sizeof c->trace_echo, "%s", echo.traceparent);
    }
    if (json_is_object(e)) {
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *text = json_string_value(json_object_get(e, "message"));
        s_call_finish(c, NULL, code ? code : MZ_EXEC_HANDLER_ERROR, text ? text : "");
    } else {
        const json_t *r = json_object_get(pl, "result");
        s_call_finish(c, r ? r : json_null(), NULL, NULL);
    }
}

/* An `error` about one of our calls (a relay or the host could not go on). */
bool mz__exec_on_error(mz_node *node, const char *from, const char *ref, const char *code,
                       const char *reason)
{
    mz_call *c = ref ? mz_hmap_get(node->ex->calls, ref) : NULL;
    bool path = code != NULL && strcmp(code, "unreachable") == 0;

    if (c == NULL || c->early_code != NULL)
        return false;
    if (c->sent_ms == 0 || strcmp(ref, c->id) != 0)
        return true;            /* about an attempt that is no longer the one in flight */
    /* Only the host may fail a call for its own reasons; any node on the
     * path may say the path broke (no worse than dropping the call). */
    if (strcmp(from, c->host) != 0 && !path) {
        node->c.forged++;
        mz_log(MZ_LOG_WARN, "exec", "error about call %s from %.12s, not its host: ignored", ref,
               from);
        return true;
    }
    if (path)
        s_call_path_failed(c, mz_now_ms(), reason ? reason : "unreachable");
    else
        s_call_finish(c, NULL, MZ_EXEC_HANDLER_ERROR, reason ? reason : "");
    return true;
}

/* Calls whose attempt left on a link that just closed are sent again over
 * another route. Changes no map: no collecting needed. */
static void s_retry_calls_on(mz_node *node, uint64_t link, const char *why)
{
    size_t pos = 0;
    const char *key;
    void *val;
    int64_t now = mz_now_ms();

    while (mz_hmap_next(node->ex->calls, &pos, &key, &val)) {
        mz_call *c = val;
        if (!c->early_code && c->sent_ms != 0 && c->link_id == link)
            s_call_path_failed(c, now, why);
    }
}

/* Fails calls to a host that left. Collects first: finishing modifies the map. */
static void s_fail_calls(mz_node *node, const char *host, const char *why)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    mz_call *victims[64];

    do {
        n = 0;
        pos = 0;
        while (n < 64 && mz_hmap_next(node->ex->calls, &pos, &key, &val)) {
            mz_call *c = val;
            if (c->early_code || c->local_req || c->req_pl == NULL || strcmp(key, c->id) != 0)
                continue;       /* (an alias: the call is met under its id) */
            if (strcmp(c->host, host) == 0)
                victims[n++] = c;
        }
        for (size_t i = 0; i < n; i++)
            s_call_finish(victims[i], NULL, MZ_EXEC_UNREACHABLE, why);
    } while (n == 64);
}

/* ---- relays ------------------------------------------------------------- */

typedef struct mz_relayed {
    char origin[MZ_ID_HEX_LEN + 1];
    uint64_t out_link;
    int64_t expires_ms;
} mz_relayed;

/* Relays remember at most this many execute requests in flight. */
#define MZ_RELAY_TRACK_MAX 8192

void mz__exec_relayed(mz_node *node, const mz_msg *msg, uint64_t out_link)
{
    mz__exec_relayed_ids(node, mz__msg_type(msg), mz__msg_id(msg), mz__msg_sender(msg),
                         mz__msg_recipient(msg), mz__msg_payload(msg), out_link);
}

void mz__exec_relayed_ids(mz_node *node, const char *type, const char *id, const char *sender,
                          const char *recipient, const json_t *pl, uint64_t out_link)
{
    json_int_t t;
    mz_relayed *r;

    if (strcmp(type, "execute_result") == 0) {
        const char *ref = json_string_value(json_object_get(pl, "ref"));
        if (ref)
            free(mz_hmap_remove(node->ex->relayed, ref));
        return;
    }
    if (strcmp(type, "execute") != 0)
        return;
    /* A sealed request's payload is not ours to read: it logs without names. */
    mz__obs_relay(node, sender, recipient, pl);
    if (mz_hmap_count(node->ex->relayed) >= MZ_RELAY_TRACK_MAX)
        return;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    t = json_integer_value(json_object_get(pl, "timeout_ms"));
    if (t <= 0 || t > MZ_MAX_EXEC_TIMEOUT_MS)
        t = MZ_DEFAULT_EXEC_TIMEOUT_MS;
    snprintf(r->origin, sizeof r->origin, "%s", sender);
    r->out_link = out_link;
    r->expires_ms = mz_now_ms() + t;
    {
        void *old = NULL;
        /* The same call id seen twice (a retry over another path) replaces. */
        if (mz_hmap_put(node->ex->relayed, id, r, &old) != MZ_OK)
            free(r);
        free(old);
    }
}

void mz__exec_link_down(mz_node *node, uint64_t link, const char *peer_id)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    char ids[64][MZ_MSG_ID_MAX + 1];
    char why[160];

    snprintf(why, sizeof why, "link to %.12s lost while the call was in flight",
             peer_id && peer_id[0] ? peer_id : "peer");
    s_retry_calls_on(node, link, why);
    /* Tell the origins of requests we relayed over that link. */
    do {
        n = 0;
        pos = 0;
        while (n < 64 && mz_hmap_next(node->ex->relayed, &pos, &key, &val))
            if (((mz_relayed *)val)->out_link == link)
                snprintf(ids[n++], sizeof ids[0], "%s", key);
        for (size_t i = 0; i < n; i++) {
            mz_relayed *r = mz_hmap_remove(node->ex->relayed, ids[i]);
            json_t *pl = json_pack("{s:s,s:s,s:s}", "ref", ids[i], "code", "unreachable",
                                   "reason", why);
            mz__send(node, mz__msg_new("error", mz_identity_id(node->ident), r->origin, pl),
                     NULL, NULL);
            free(r);
        }
    } while (n == 64);
}

void mz__exec_node_gone(mz_node *node, const char *host)
{
    char why[160];

    snprintf(why, sizeof why, "host %.12s left the mesh", host);
    s_fail_calls(node, host, why);
}

/* ---- host side ---------------------------------------------------------- */

typedef struct mz_handler_entry {
    mz_handler_fn fn;
    void *ctx;
    char **methods;                     /* NULL-terminated copy, or NULL: any */
} mz_handler_entry;

struct mz_exec {
    mz_node *node;
    char req_id[MZ_MSG_ID_MAX + 1];
    char caller[MZ_ID_HEX_LEN + 1];
    char resource_id[MZ_RESOURCE_ID_MAX + 1];
    char method[129];
    json_t *params;                     /* owned */
    int64_t deadline_ms;
    bool local;                         /* caller is this node: no network reply */
    bool expired;                       /* answered "timeout" already; reply just frees */
    struct mz_kept *kept;               /* its entry in node->ex->kept, or NULL */
    mz_trace trace;                     /* the host's span of the call */
    bool echo;                          /* the request carried a trace: echo ours */
    uint64_t t0_ns;                     /* the request arrived (uv_hrtime) */
    struct mz_exec *prev, *next;        /* node->ex->execs, for cleanup at free */
};

static void s_host_answer(mz_node *node, const char *req_id, const char *caller, bool local,
                          json_t *result, const char *code, const char *msg,
                          const mz_trace *trace);

/* A call run here, by (caller, call): while it runs, a repeat only moves the
 * answer to the repeat's envelope id; once answered, a repeat gets the kept
 * answer. Kept until the call's timeout, within max_kept_answers/_bytes. */
typedef struct mz_kept {
    char key[MZ_ID_HEX_LEN + 1 + MZ_MSG_ID_MAX + 1];  /* "caller/call" */
    mz_exec *x;                         /* running; NULL once answered */
    json_t *result;                     /* the answer: result, or code + msg */
    char *code, *msg;
    size_t bytes;
    int64_t expires_ms;
    struct mz_kept *older, *newer;      /* answered ones: node->ex->kept_old..kept_new */
} mz_kept;

static void s_kept_free(void *p)
{
    mz_kept *k = p;

    if (k == NULL)
        return;
    if (k->x != NULL)
        k->x->kept = NULL;
    json_decref(k->result);
    free(k->code);
    free(k->msg);
    free(k);
}

static void s_kept_remove(mz_node *node, mz_kept *k)
{
    if (k->x == NULL) {
        if (k->older) k->older->newer = k->newer;
        else node->ex->kept_old = k->newer;
        if (k->newer) k->newer->older = k->older;
        else node->ex->kept_new = k->older;
        node->ex->kept_answered--;
        node->ex->kept_bytes -= k->bytes;
    }
    mz_hmap_remove(node->ex->kept, k->key);
    s_kept_free(k);
}

/* About the bytes a JSON value takes serialised, without serialising it
 * (that costs as much as the rest of answering): strings and keys by length,
 * scalars 8 each, so a bound on it is a bound on memory within a small factor. */
static size_t s_json_bytes(const json_t *v, int depth)
{
    size_t n = 8;
    const char *key;
    json_t *e;
    size_t i;

    if (depth > MZ_DEFAULT_MAX_JSON_DEPTH)
        return n;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return n + json_string_length(v);
    case JSON_ARRAY:
        json_array_foreach(v, i, e)
            n += s_json_bytes(e, depth + 1);
        return n;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, key, e)
            n += strlen(key) + s_json_bytes(e, depth + 1);
        return n;
    default:
        return n;
    }
}

/* Keeps x's answer for repeats of its call; forgets the oldest answers
 * beyond the limits (a repeat of those would run again). */
static void s_kept_answer(mz_node *node, mz_exec *x, const json_t *result, const char *code,
                          const char *msg)
{
    mz_kept *k = x->kept;

    if (k == NULL)
        return;
    x->kept = NULL;
    k->x = NULL;
    if (code != NULL) {
        k->code = strdup(code);
        k->msg = strdup(msg ? msg : "");
        k->bytes = strlen(code) + strlen(msg ? msg : "");
        if (k->code == NULL || k->msg == NULL) {
            mz_hmap_remove(node->ex->kept, k->key);
            s_kept_free(k);
            return;
        }
    } else {
        k->result = json_incref((json_t *)(result ? result : json_null()));
        k->bytes = s_json_bytes(k->result, 0);
    }
    k->bytes += sizeof *k;
    k->expires_ms = x->deadline_ms + 1000;
    k->older = node->ex->kept_new;
    k->newer = NULL;
    if (node->ex->kept_new) node->ex->kept_new->newer = k;
    else node->ex->kept_old = k;
    node->ex->kept_new = k;
    node->ex->kept_answered++;
    node->ex->kept_bytes += k->bytes;
    while (node->ex->kept_old != NULL && (node->ex->kept_answered > node->o.max_kept_answers ||
                                      node->ex->kept_bytes > node->o.max_kept_bytes)) {
        node->c.kept_evicted++;
        s_kept_remove(node, node->ex->kept_old);
    }
}

/* A repeat of a call run here: true when handled (running, or answered from
 * what was kept). */
static bool s_kept_repeat(mz_node *node, const char *key, const char *req_id, const char *caller)
{
    mz_kept *k = node->ex->kept ? mz_hmap_get(node->ex->kept, key) : NULL;

    if (k == NULL)
        return false;
    node->c.exec_repeats++;
    if (k->x != NULL) {
        snprintf(k->x->req_id, sizeof k->x->req_id, "%s", req_id);
        return true;
    }
    /* Repeats are cheap to send and the answer may be big: they share the
     * caller's reply budget; over it, the repeat goes unanswered (counted
     * replies_paced) and the caller's next retransmit asks again. */
    if (!mz__guard_reply(node, caller, k->bytes))
        return true;
    s_host_answer(node, req_id, caller, false, k->result ? json_incref(k->result) : NULL, k->code,
                  k->msg, NULL);
    return true;
}

static void s_handler_entry_free(void *p)
{
    mz_handler_entry *h = p;

    if (h == NULL)
        return;
    for (char **m = h->methods; m && *m; m++)
        free(*m);
    free(h->methods);
    free(h);
}

mz_status mz_node_set_handler(mz_node *node, const char *resource_id,
                              const char *const *methods, mz_handler_fn fn, void *ctx,
                              mz_err *err)
{
    const mz_record *rec = mz_directory_get(node->dir, resource_id);
    mz_handler_entry *h;
    void *old = NULL;
    size_t n = 0;

    if (rec == NULL || !mz_record_local(rec))
        return mz_err_set(err, MZ_ENOTFOUND, "set handler: no resource '%s' hosted here",
                          resource_id);
    h = calloc(1, sizeof *h);
    if (h == NULL)
        return mz_err_set(err, MZ_ENOMEM, "set handler: allocating");
    h->fn = fn;
    h->ctx = ctx;
    if (methods != NULL) {
        while (methods[n])
            n++;
        h->methods = calloc(n + 1, sizeof *h->methods);
        for (size_t i = 0; h->methods && i < n; i++)
            if ((h->methods[i] = strdup(methods[i])) == NULL) {
                s_handler_entry_free(h);
                return mz_err_set(err, MZ_ENOMEM, "set handler: allocating");
            }
        if (h->methods == NULL) {
            free(h);
            return mz_err_set(err, MZ_ENOMEM, "set handler: allocating");
        }
    }
    if (mz_hmap_put(node->ex->handlers, resource_id, h, &old) != MZ_OK) {
        s_handler_entry_free(h);
        return mz_err_set(err, MZ_ENOMEM, "set handler: allocating");
    }
    s_handler_entry_free(old);
    /* A resource served by a handler lives as long as its server (a program,
     * an API connection): it is not restored after a restart, where nothing
     * would serve it. Whoever serves it registers it again. */
    return mz__persist_forget_local(node, resource_id, err);
}

void mz__exec_drop_handler(mz_node *node, const char *resource_id)
{
    s_handler_entry_free(mz_hmap_remove(node->ex->handlers, resource_id));
}

void mz__exec_free_all(mz_node *node)
{
    if (node->ex == NULL)
        return;
    /* Before the execs: freeing an entry clears its exec's pointer. */
    mz_hmap_free(node->ex->kept, s_kept_free);
    node->ex->kept = NULL;
    node->ex->kept_old = node->ex->kept_new = NULL;
    while (node->ex->execs) {
        mz_exec *x = node->ex->execs;
        node->ex->execs = x->next;
        json_decref(x->params);
        free(x);
    }
    mz_hmap_free(node->ex->handlers, s_handler_entry_free);
    mz_hmap_free(node->ex->relayed, free);
    /* Pending calls were failed by mz__exec_fail_pending before the loop ended. */
    mz_hmap_free(node->ex->calls, NULL);
    free(node->ex);
    node->ex = NULL;
}

void mz__exec_fail_pending(mz_node *node)
{
    size_t pos = 0;
    const char *key;
    void *val;
    mz_call *c;

    while (mz_hmap_count(node->ex->calls) > 0) {
        pos = 0;
        if (!mz_hmap_next(node->ex->calls, &pos, &key, &val))
            break;
        c = val;
        if (c->early_code) {
            /* Its timer is armed; finish now so the handle closes with the rest. */
            s_call_finish(c, NULL, c->early_code, c->early_msg);
        } else if (c->local_req) {
            s_call_finish(c, NULL, MZ_EXEC_UNREACHABLE, "node shutting down");
        } else {
            s_call_finish(c, NULL, MZ_EXEC_UNREACHABLE, "node shutting down");
        }
    }
}

static void s_exec_unlink(mz_exec *x)
{
    mz_node *node = x->node;

    if (x->prev) x->prev->next = x->next;
    else node->ex->execs = x->next;
    if (x->next) x->next->prev = x->prev;
    if (!x->expired)
        node->ex->running--;
}

/* Delivers the outcome to the caller: the local call, or an execute_result. */
static void s_host_answer(mz_node *node, const char *req_id, const char *caller, bool local,
                          json_t *result, const char *code, const char *msg,
                          const mz_trace *trace)
{
    if (local) {
        mz_call *c = mz_hmap_get(node->ex->calls, req_id);
        if (c != NULL && c->early_code == NULL)
            s_call_finish(c, result, code, msg);
        json_decref(result);
        return;
    }
    json_t *pl = code ? json_pack("{s:s,s:{s:s,s:s}}", "ref", req_id, "error", "code", code,
                                  "message", msg ? msg : "")
                      : json_pack("{s:s,s:o}", "ref", req_id, "result",
                                  result ? result : json_null());
    if (pl != NULL && trace != NULL)
        mz__trace_to_json(trace, pl);   /* echoed: the host's span of the call */
    mz__send(node, mz__msg_new("execute_result", mz_identity_id(node->ident), caller, pl), NULL,
             NULL);
}

/* True when the record's metadata says calls need an agreement. The stored
 * text is compact and sorted, so a substring test finds every candidate;
 * parsing confirms it is the top-level member. */
static bool s_requires_agreement(const mz_record *rec)
{
    const char *text = mz_record_metadata_text(rec);
    json_t *m;
    bool yes;

    if (strstr(text, "\"requires_agreement\":true") == NULL)
        return false;
    m = json_loads(text, 0, NULL);
    yes = m == NULL || json_is_true(json_object_get(m, "requires_agreement"));
    json_decref(m);
    return yes;      /* unparseable: fail closed */
}

/* Why this host will not run the call (the code, with why filled), or NULL. */
static const char *s_host_refusal(mz_node *node, const mz_record *rec,
                                  const mz_handler_entry *h, const char *caller,
                                  const char *resource_id, const char *method,
                                  const json_t *agreement, char why[256])
{
    size_t mine = 0;

    if (rec == NULL || !mz_record_local(rec)) {
        snprintf(why, 256, "resource '%.128s' is not hosted on node %.12s", resource_id,
                 mz_identity_id(node->ident));
        return MZ_EXEC_NOT_FOUND;
    }
    if (h == NULL) {
        snprintf(why, 256, "resource '%.128s' has no handler on its host", resource_id);
        return MZ_EXEC_HANDLER_ERROR;
    }
    if (h->methods != NULL) {
        bool ok = false;
        for (char **m = h->methods; *m && !ok; m++)
            ok = strcmp(*m, method) == 0;
        if (!ok) {
            snprintf(why, 256, "resource '%.100s' has no method '%.100s'", resource_id, method);
            return MZ_EXEC_BAD_REQUEST;
        }
    }
    for (mz_exec *y = node->ex->execs; y; y = y->next)
        if (!y->expired && strcmp(y->caller, caller) == 0)
            mine++;
    if (mine >= node->o.max_running_per_caller) {
        node->c.caller_busy++;
        snprintf(why, 256, "caller %.12s already runs %zu calls here (its limit)", caller, mine);
        return MZ_EXEC_BUSY;
    }
    if (node->ex->running >= node->o.max_running) {
        node->c.exec_busy++;
        snprintf(why, 256, "host %.12s is running %zu calls (its limit)",
                 mz_identity_id(node->ident), node->ex->running);
        return MZ_EXEC_BUSY;
    }
    /* After the busy check: a call refused as busy must not use up the agreement. */
    if (s_requires_agreement(rec)) {
        const char *reason = NULL;
        mz_err ae;
        mz_status st = mz_agreements_check(node->agreements, agreement,
                                           mz_record_owner_key(rec), caller, resource_id, method,
                                           mz_now_ms(), &reason, &ae);
        if (st != MZ_OK) {
            node->c.exec_denied++;
            mz__obs_count(&node->obs.agr_refused, reason ? reason : "error");
            snprintf(why, 256, "%s: %.200s", reason ? reason : "error", ae.msg);
            mz_log(MZ_LOG_INFO, "exec", "denied %.12s calling %s.%s: %s", caller, resource_id,
                   method, why);
            return MZ_EXEC_DENIED;
        }
    }
    return NULL;
}

/* Remembers x under its (caller, call) key, so repeats find it. */
static void s_host_keep(mz_node *node, mz_exec *x, const char *call_key)
{
    mz_kept *k;

    if (call_key == NULL || (node->ex->kept == NULL && (node->ex->kept = mz_hmap_new()) == NULL))
        return;
    if ((k = calloc(1, sizeof *k)) == NULL)
        return;
    snprintf(k->key, sizeof k->key, "%s", call_key);
    k->x = x;
    if (mz_hmap_put(node->ex->kept, k->key, k, NULL) == MZ_OK)
        x->kept = k;
    else
        free(k);
}

static void s_host_run(mz_node *node, const char *req_id, const char *caller,
                       const char *resource_id, const char *method, const json_t *params,
                       const json_t *agreement, int64_t timeout_ms, bool local,
                       const char *call_key, const mz_trace *trace)
{
    const mz_record *rec = mz_directory_get(node->dir, resource_id);
    mz_handler_entry *h = mz_hmap_get(node->ex->handlers, resource_id);
    uint64_t t0 = uv_hrtime();
    const char *code;
    mz_trace span;
    mz_exec *x;
    char why[256];

    node->c.exec_served++;
    mz__trace_child(trace, &span);
    code = s_host_refusal(node, rec, h, caller, resource_id, method, agreement, why);
    if (code == NULL) {
        x = calloc(1, sizeof *x);
        if (x == NULL || (x->params = json_deep_copy(params)) == NULL) {
            free(x);
            code = MZ_EXEC_HANDLER_ERROR;
            snprintf(why, sizeof why, "host out of memory");
        }
    }
    if (code != NULL) {
        mz__obs_call(node, MZ_ROLE_HOST, caller, resource_id, method, &span, uv_hrtime() - t0,
                     code);
        s_host_answer(node, req_id, caller, local, NULL, code, why,
                      trace->traceparent[0] ? &span : NULL);
        return;
    }
    x->node = node;
    snprintf(x->req_id, sizeof x->req_id, "%s", req_id);
    snprintf(x->caller, sizeof x->caller, "%s", caller);
    snprintf(x->resource_id, sizeof x->resource_id, "%s", resource_id);
    snprintf(x->method, sizeof x->method, "%s", method);
    x->deadline_ms = mz_now_ms() + timeout_ms;
    x->local = local;
    x->trace = span;
    x->echo = trace->traceparent[0] != '\0';
    x->t0_ns = t0;
    x->next = node->ex->execs;
    if (node->ex->execs)
        node->ex->execs->prev = x;
    node->ex->execs = x;
    node->ex->running++;
    s_host_keep(node, x, call_key);
    h->fn(node, x, h->ctx);
}

void mz__exec_on_request(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *rid = json_string_value(json_object_get(pl, "resource_id"));
    const char *method = json_string_value(json_object_get(pl, "method"));
    const json_t *params = json_object_get(pl, "params");
    json_int_t t = json_integer_value(json_object_get(pl, "timeout_ms"));
    mz_trace trace;

    (void)p;
    /* A traceparent that is not valid is dropped: the host starts its own. */
    (void)mz__trace_from_json(&trace, pl);
    if (rid == NULL || method == NULL || method[0] == '\0' || strlen(method) > 128 ||
        strlen(rid) > MZ_RESOURCE_ID_MAX) {
        s_host_answer(node, mz__msg_id(msg), mz__msg_sender(msg), false, NULL,
                      MZ_EXEC_BAD_REQUEST, "execute needs resource_id and method (1-128 bytes)",
                      NULL);
        return;
    }
    if (params != NULL && !json_is_object(params)) {
        s_host_answer(node, mz__msg_id(msg), mz__msg_sender(msg), false, NULL,
                      MZ_EXEC_BAD_REQUEST, "params must be a JSON object", NULL);
        return;
    }
    if (t <= 0 || t > MZ_MAX_EXEC_TIMEOUT_MS)
        t = MZ_DEFAULT_EXEC_TIMEOUT_MS;
    {
        const char *call = json_string_value(json_object_get(pl, "call"));
        char key[sizeof ((mz_kept *)0)->key];
        json_t *empty = params ? NULL : json_object();

        if (call != NULL && (call[0] == '\0' || strlen(call) > MZ_MSG_ID_MAX))
            call = NULL;      /* not a usable call id: run it, keep nothing */
        if (call != NULL) {
            snprintf(key, sizeof key, "%s/%s", mz__msg_sender(msg), call);
            if (s_kept_repeat(node, key, mz__msg_id(msg), mz__msg_sender(msg))) {
                json_decref(empty);
                return;
            }
        }
        s_host_run(node, mz__msg_id(msg), mz__msg_sender(msg), rid, method,
                   params ? params : empty, json_object_get(pl, "agreement"), t, false,
                   call ? key : NULL, &trace);
        json_decref(empty);
    }
}

const char *mz_exec_resource(const mz_exec *x) { return x->resource_id; }
const char *mz_exec_method(const mz_exec *x) { return x->method; }
const json_t *mz_exec_params(const mz_exec *x) { return x->params; }
const char *mz_exec_caller(const mz_exec *x) { return x->caller; }
int64_t mz_exec_deadline_ms(const mz_exec *x) { return x->deadline_ms; }
const char *mz_exec_traceparent(const mz_exec *x) { return x->trace.traceparent; }
const char *mz_exec_tracestate(const mz_exec *x)
{
    return x->trace.tracestate[0] ? x->trace.tracestate : NULL;
}

/* The host's figures and log line of a call it ran. */
static void s_host_done(mz_exec *x, const char *code)
{
    mz__obs_call(x->node, MZ_ROLE_HOST, x->caller, x->resource_id, x->method, &x->trace,
                 uv_hrtime() - x->t0_ns, code);
}

void mz_exec_reply(mz_exec *x, json_t *result)
{
    mz_node *node = x->node;

    s_exec_unlink(x);
    if (x->expired) {
        json_decref(result);
        json_decref(x->params);
        free(x);
        return;
    }
    s_kept_answer(node, x, result, NULL, NULL);
    s_host_done(x, NULL);
    s_host_answer(node, x->req_id, x->caller, x->local, result ? result : json_null(), NULL,
                  NULL, x->echo ? &x->trace : NULL);
    json_decref(x->params);
    free(x);
}

void mz_exec_fail(mz_exec *x, const char *code, const char *message)
{
    mz_node *node = x->node;

    s_exec_unlink(x);
    if (x->expired) {
        json_decref(x->params);
        free(x);
        return;
    }
    s_kept_answer(node, x, NULL, code ? code : MZ_EXEC_HANDLER_ERROR, message ? message : "");
    s_host_done(x, code ? code : MZ_EXEC_HANDLER_ERROR);
    s_host_answer(node, x->req_id, x->caller, x->local, NULL,
                  code ? code : MZ_EXEC_HANDLER_ERROR, message ? message : "",
                  x->echo ? &x->trace : NULL);
    json_decref(x->params);
    free(x);
}

void mz__exec_sweep(mz_node *node, int64_t now)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    char ids[64][MZ_MSG_ID_MAX + 1];

    while (n < 64 && mz_hmap_next(node->ex->relayed, &pos, &key, &val))
        if (((mz_relayed *)val)->expires_ms < now)
            snprintf(ids[n++], sizeof ids[0], "%s", key);
    for (size_t i = 0; i < n; i++)
        free(mz_hmap_remove(node->ex->relayed, ids[i]));
    /* Kept answers in answer order; their timeouts mostly follow it. */
    while (node->ex->kept_old != NULL && node->ex->kept_old->expires_ms < now)
        s_kept_remove(node, node->ex->kept_old);
    /* A handler that never answers must not hold a running slot forever. */
    for (mz_exec *x = node->ex->execs; x; x = x->next)
        if (!x->expired && x->deadline_ms + 1000 < now) {
            x->expired = true;
            node->ex->running--;
            node->c.exec_timeouts++;
            s_kept_answer(node, x, NULL, MZ_EXEC_TIMEOUT,
                          "the handler did not answer within the timeout");
            s_host_done(x, MZ_EXEC_TIMEOUT);
            s_host_answer(node, x->req_id, x->caller, x->local, NULL, MZ_EXEC_TIMEOUT,
                          "the handler did not answer within the timeout",
                          x->echo ? &x->trace : NULL);
        }
}

/* The "error" message type: an answer to one of our calls, or logged. */
void mz__exec_on_error_msg(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *ref = json_string_value(json_object_get(pl, "ref"));
    const char *code = json_string_value(json_object_get(pl, "code"));
    const char *reason = json_string_value(json_object_get(pl, "reason"));

    (void)p;
    node->c.errors_received++;
    if (mz__exec_on_error(node, mz__msg_sender(msg), ref, code, reason))
        return;
    mz_log(MZ_LOG_INFO, "handler", "error from %.12s about %s: %s: %s", mz__msg_sender(msg),
           ref ? ref : "?", code ? code : "?", reason ? reason : "?");
}
