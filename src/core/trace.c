/* W3C Trace Context (traceparent, tracestate) of a call: checked where it
 * enters, started when absent, a new span id for each node's part. */
#include <stdio.h>
#include <string.h>

#include "core/obs.h"
#include "meshzero/msg.h"

static bool s_hex(const char *s, size_t n)
{
    bool nonzero = false;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

/* version 00: "00-" 32 hex "-" 16 hex "-" 2 hex, ids not all zero. */
static bool s_traceparent_valid(const char *tp)
{
    return strlen(tp) == 55 && strncmp(tp, "00-", 3) == 0 && s_hex(tp + 3, 32) &&
           tp[35] == '-' && s_hex(tp + 36, 16) && tp[52] == '-' &&
           (s_hex(tp + 53, 2) || strcmp(tp + 53, "00") == 0);
}

/* tracestate: printable ASCII, at most 512 bytes (the spec's limit). */
static bool s_tracestate_valid(const char *ts)
{
    size_t n = strlen(ts);

    if (n > 512)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ts[i] < 0x20 || ts[i] > 0x7e)
            return false;
    return true;
}

bool mz__trace_set(mz_trace *t, const char *traceparent, const char *tracestate)
{
    memset(t, 0, sizeof *t);
    if (traceparent == NULL || !s_traceparent_valid(traceparent))
        return false;
    snprintf(t->traceparent, sizeof t->traceparent, "%s", traceparent);
    if (tracestate != NULL && s_tracestate_valid(tracestate))
        snprintf(t->tracestate, sizeof t->tracestate, "%s", tracestate);
    return true;
}

void mz__trace_start(mz_trace *t)
{
    char trace_id[33], span_id[17];

    memset(t, 0, sizeof *t);
    mz_random_hex(trace_id, 16);
    mz_random_hex(span_id, 8);
    snprintf(t->traceparent, sizeof t->traceparent, "00-%s-%s-01", trace_id, span_id);
}

void mz__trace_child(const mz_trace *parent, mz_trace *child)
{
    char span_id[17];

    if (parent->traceparent[0] == '\0') {
        mz__trace_start(child);
        return;
    }
    *child = *parent;
    mz_random_hex(span_id, 8);
    memcpy(child->traceparent + 36, span_id, 16);
}

bool mz__trace_from_json(mz_trace *t, const json_t *obj)
{
    const json_t *tp = json_object_get(obj, "traceparent");

    memset(t, 0, sizeof *t);
    if (tp == NULL || json_is_null(tp))
        return true;
    return json_is_string(tp) &&
           mz__trace_set(t, json_string_value(tp),
                         json_string_value(json_object_get(obj, "tracestate")));
}

void mz__trace_to_json(const mz_trace *t, json_t *obj)
{
    if (t->traceparent[0] == '\0')
        return;
    json_object_set_new(obj, "traceparent", json_string(t->traceparent));
    if (t->tracestate[0] != '\0')
        json_object_set_new(obj, "tracestate", json_string(t->tracestate));
}
