/* Events: local subscriptions, built-in events and mesh-wide publish.
 * docs/PROTOCOL.md "event". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "core/node_int.h"

typedef struct mz_sub {
    uint64_t id;
    char pattern[MZ_TOPIC_MAX + 1];
    mz_event_cb cb;
    void *ctx;
    bool dead;                  /* unsubscribed during delivery; freed after it */
    struct mz_sub *next;
} mz_sub;

bool mz_topic_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;

    if (n == 0 || n > MZ_TOPIC_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == ':' || ch == '/'))
            return false;
    }
    return true;
}

bool mz_topic_reserved(const char *t)
{
    return strncmp(t, "resource.", 9) == 0 || strncmp(t, "peer.", 5) == 0;
}

bool mz_topic_pattern_valid(const char *p)
{
    size_t n = p ? strlen(p) : 0;

    if (n == 1 && p[0] == '*')
        return true;
    if (n >= 3 && p[n - 1] == '*' && p[n - 2] == '.') {
        char buf[MZ_TOPIC_MAX + 1];
        if (n - 2 > MZ_TOPIC_MAX)
            return false;
        memcpy(buf, p, n - 2);
        buf[n - 2] = '\0';
        return mz_topic_valid(buf);
    }
    return mz_topic_valid(p);
}

bool mz_topic_match(const char *pattern, const char *topic)
{
    size_t n = strlen(pattern);

    if (n == 1 && pattern[0] == '*')
        return true;
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        /* "resource.*" matches "resource.added" and deeper, not "resource" itself. */
        return strncmp(pattern, topic, n - 1) == 0 && topic[n - 1] != '\0';
    return strcmp(pattern, topic) == 0;
}

mz_status mz_node_subscribe(mz_node *node, const char *pattern, mz_event_cb cb, void *ctx,
                            uint64_t *id, mz_err *err)
{
    mz_sub *s;

    if (!mz_topic_pattern_valid(pattern))
        return mz_err_set(err, MZ_EINVAL, "subscribe: '%.140s' is not a topic (1-128 of "
                          "A-Z a-z 0-9 . _ - : /), a prefix ending in '.*', or '*'",
                          pattern ? pattern : "(null)");
    if (node->ev.n_subs >= node->o.max_subscriptions)
        return mz_err_set(err, MZ_ELIMIT, "subscribe: %zu subscriptions already (the limit)",
                          node->ev.n_subs);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return mz_err_set(err, MZ_ENOMEM, "subscribe: allocating");
    s->id = ++node->ev.next_sub_id;
    snprintf(s->pattern, sizeof s->pattern, "%s", pattern);
    s->cb = cb;
    s->ctx = ctx;
    s->next = node->ev.subs;
    node->ev.subs = s;
    node->ev.n_subs++;
    if (id)
        *id = s->id;
    return MZ_OK;
}

static void s_reap(mz_node *node)
{
    for (mz_sub **pp = &node->ev.subs; *pp;) {
        mz_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

mz_status mz_node_unsubscribe(mz_node *node, uint64_t id, mz_err *err)
{
    for (mz_sub *s = node->ev.subs; s; s = s->next)
        if (s->id == id && !s->dead) {
            s->dead = true;
            node->ev.n_subs--;
            if (node->ev.delivering == 0)
                s_reap(node);
            return MZ_OK;
        }
    return mz_err_set(err, MZ_ENOTFOUND, "unsubscribe: no subscription %llu",
                      (unsigned long long)id);
}

void mz__events_free(mz_node *node)
{
    while (node->ev.subs) {
        mz_sub *s = node->ev.subs;
        node->ev.subs = s->next;
        free(s);
    }
    node->ev.n_subs = 0;
}

void mz__emit(mz_node *node, const char *topic, const json_t *data, const char *source)
{
    if (node->ev.subs == NULL)
        return;
    node->ev.delivering++;
    /* New subscriptions land at the head, so they see only later events. */
    for (mz_sub *s = node->ev.subs; s; s = s->next)
        if (!s->dead && mz_topic_match(s->pattern, topic))
            s->cb(node, topic, data ? data : json_null(), source, s->ctx);
    if (--node->ev.delivering == 0)
        s_reap(node);
    node->c.events_delivered++;
}

void mz__emit_record(mz_node *node, const char *topic, const mz_record *rec)
{
    json_t *j;

    /* "resource.added" -> op "added": every directory change passes here. */
    mz__obs_count(&node->obs.rec_changes, strchr(topic, '.') ? strchr(topic, '.') + 1 : topic);
    if (node->ev.subs == NULL)
        return;
    j = mz_record_to_json(rec);
    if (j != NULL)
        mz__emit(node, topic, j, mz_record_node(rec));
    json_decref(j);
}

mz_status mz_node_publish(mz_node *node, const char *topic, const json_t *data, mz_err *err)
{
    json_t *pl;

    if (!mz_topic_valid(topic))
        return mz_err_set(err, MZ_EINVAL, "publish: '%.140s' is not a topic (1-128 of "
                          "A-Z a-z 0-9 . _ - : /)", topic ? topic : "(null)");
    if (mz_topic_reserved(topic))
        return mz_err_set(err, MZ_EINVAL, "publish: topics under 'resource.' and 'peer.' "
                          "are the node's own events");
    /* The event travels in an envelope (depth 32, 50,000 members): data must
     * fit inside it with room to spare, or every peer would refuse it. */
    if (data != NULL && !mz_json_within(data, MZ_DEFAULT_MAX_JSON_DEPTH - 4,
                                        MZ_DEFAULT_MAX_JSON_MEMBERS / 2))
        return mz_err_set(err, MZ_EINVAL, "publish: data nests deeper than %d or has more "
                          "than %d members", MZ_DEFAULT_MAX_JSON_DEPTH - 4,
                          MZ_DEFAULT_MAX_JSON_MEMBERS / 2);
    pl = json_pack("{s:s,s:O}", "topic", topic, "data", data ? data : json_null());
    if (pl == NULL)
        return mz_err_set(err, MZ_ENOMEM, "publish: allocating");
    mz__emit(node, topic, data, mz_identity_id(node->ident));
    node->c.events_published++;
    return mz__send(node, mz__msg_new("event", mz_identity_id(node->ident), "*", pl), NULL, err);
}

void mz__events_on_message(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *topic = json_string_value(json_object_get(pl, "topic"));

    (void)p;
    if (!mz_topic_valid(topic) || mz_topic_reserved(topic)) {
        node->c.malformed++;
        mz_log(MZ_LOG_WARN, "events", "event %s from %.12s: bad topic", mz__msg_id(msg),
               mz__msg_sender(msg));
        return;
    }
    mz__emit(node, topic, json_object_get(pl, "data"), mz__msg_sender(msg));
}
