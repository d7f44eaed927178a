/* Sizes of call bodies against the node's limits (docs/PROTOCOL.md
 * §1): found before anything is sent, so that a call or an answer
 * that cannot travel is refused at its edge with too_large, naming the
 * limit, instead of being dropped by a link on the way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/node_int.h"

/* What an envelope adds to its payload: id, type, sender, recipient,
 * timestamp, hops, and the signature, or the seal's framing. */
#define MZ_ENVELOPE_BYTES 1024
/* A seal's nonce and tag, before base64 (docs/PROTOCOL.md "Sealing"). */
#define MZ_SEAL_BYTES 40
/* JSON escaping makes a character at most this many bytes ("\u0001"). */
#define MZ_JSON_GROWTH 6

size_t mz__json_estimate(const json_t *v, int depth)
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
            n += mz__json_estimate(e, depth + 1);
        return n;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, key, e)
            n += strlen(key) + mz__json_estimate(e, depth + 1);
        return n;
    default:
        return n;
    }
}

size_t mz__json_size(const json_t *v, size_t limit)
{
    size_t est;

    if (v == NULL)
        return 0;
    est = mz__json_estimate(v, 0);
    /* Serialised, a value takes at most MZ_JSON_GROWTH times the estimate:
     * only a value that may be near the limit costs a serialisation. */
    if (est <= limit / MZ_JSON_GROWTH)
        return est;
    return json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
}

size_t mz__msg_room(const mz_node *node)
{
    size_t m = node->o.max_message, room;

    room = m > MZ_ENVELOPE_BYTES ? m - MZ_ENVELOPE_BYTES : 0;
    if (!node->o.no_seal)
        room = room / 4 * 3 > MZ_SEAL_BYTES ? room / 4 * 3 - MZ_SEAL_BYTES : 0;
    return room;
}

/* "900.0 KiB" for messages people read, beside the exact byte count. */
static const char *s_human(size_t n, char buf[32])
{
    if (n >= 1024 * 1024)
        snprintf(buf, 32, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    else if (n >= 1024)
        snprintf(buf, 32, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(buf, 32, "%zu bytes", n);
    return buf;
}

bool mz__body_too_large(const mz_node *node, const char *what, const json_t *body,
                        const json_t *whole, char *why, size_t cap)
{
    size_t max = node->o.max_payload, n, room;
    char h1[32], h2[32];

    n = mz__json_size(body, max);
    if (n > max) {
        snprintf(why, cap, "%s %s %s (%zu bytes as compact JSON); a call carries at most %s "
                 "(--max-payload %zu): send less, or raise --max-payload", what,
                 strcmp(what, "params") == 0 ? "are" : "is", s_human(n, h1), n,
                 s_human(max, h2), max);
        return true;
    }
    if (whole == NULL)
        return false;
    room = mz__msg_room(node);
    if (mz__json_size(whole, room) <= room)
        return false;
    n = json_dumpb(body, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(why, cap, "%s %s %s (%zu bytes as compact JSON); node links carry at most %s per "
             "message (--max-message %zu), which leaves about %zu bytes for a call's %s%s: "
             "send less, or raise --max-message on every node of the path", what,
             strcmp(what, "params") == 0 ? "are" : "is", s_human(n, h1), n,
             s_human(node->o.max_message, h2), node->o.max_message, room, what,
             node->o.no_seal ? "" : " once sealed");
    return true;
}

/* Where top-level members of an envelope or a request are: its first bytes
 * (the reference node writes id, type, sender first; clients id, method). */
#define MZ_HEAD_SCAN 256

json_t *mz__head_member(const char *head, size_t len, const char *key)
{
    size_t kl = strlen(key), i, j;

    if (len > MZ_HEAD_SCAN)
        len = MZ_HEAD_SCAN;
    for (i = 0; i + kl + 3 <= len; i++) {
        if (head[i] != '"' || memcmp(head + i + 1, key, kl) != 0 || head[i + 1 + kl] != '"')
            continue;
        for (i += kl + 2; i < len && (head[i] == ' ' || head[i] == ':'); i++)
            ;
        if (i < len && head[i] == '"') {
            for (j = ++i; j < len && head[j] != '"' && head[j] != '\\' &&
                          (unsigned char)head[j] >= 0x20; j++)
                ;
            return j < len && head[j] == '"' ? json_stringn(head + i, j - i) : NULL;
        }
        for (j = i; j < len && j - i < 18 && head[j] >= '0' && head[j] <= '9'; j++)
            ;
        if (j > i && j < len && (head[j] == ',' || head[j] == '}' || head[j] == ' ')) {
            char num[20];
            memcpy(num, head + i, j - i);
            num[j - i] = '\0';
            return json_integer(strtoll(num, NULL, 10));
        }
        return NULL;
    }
    return NULL;
}
