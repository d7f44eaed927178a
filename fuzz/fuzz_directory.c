/* Resource records and the ResourceDirectory: mz_record_validate,
 * mz_directory_put / remove / remove_node / query / get, and
 * mz_record_to_json. Input: one operation per line,
 *   P<record JSON>  put as remote       L<record JSON>  put as local
 *   D<id>[ <node>]  remove              N<node>         remove every record of node
 *   Q<query JSON>   query: {"resource_type","capabilities":[...],"owner","node",
 *                   "location":"local"|"remote","limit"}
 * (a line starting with '{' is a remote put). Each input runs twice: on a
 * fresh directory (replays alone) and on a long-lived one that keeps up to
 * 48 records across inputs (a failure there may need the inputs before it).
 *
 * Checks: put agrees with validate; an added or updated record reads back
 * (mz_record_to_json) as exactly the signed content that was put, so
 * signatures survive storage; an unchanged or refused put changes nothing;
 * removals remove exactly what they say; count agrees with foreach after
 * every operation; get and the queries by its type, owner, node,
 * capabilities and location find the record just put, and, after the last
 * operation, every record held; every query answer matches the query, and
 * the number of answers is what a full scan counts (up to the limit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/directory.h"
#include "meshzero/msg.h"

#define MAX_RECORDS   48       /* the long-lived directory starts over past this */
#define MAX_QUERY_CAPS 80      /* more than a record may have: s_plan's early out */

static const char *const s_unsigned[] = { "location", NULL };

static void s_fail(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_directory: %s\n  %s\n  %s\n", what, a ? a : "", b ? b : "");
    abort();
}

/* Returns new: the canonical text of a record as stored (location left out). */
static char *s_canon_rec(const mz_record *rec)
{
    json_t *j = mz_record_to_json(rec);
    char *c;

    if (j == NULL)
        s_fail("mz_record_to_json failed", mz_record_id(rec), NULL);
    c = mz_canon_dump(j, s_unsigned, NULL);
    json_decref(j);
    if (c == NULL)
        s_fail("stored record has no canonical form", mz_record_id(rec), NULL);
    return c;
}

/* ---- queries ------------------------------------------------------------- */

typedef struct qctx {
    const mz_query *q;
    const mz_record *want;     /* must be among the answers, or NULL */
    bool found;
    size_t n;
} qctx;

/* The capabilities of every record held, read once per check (there is no
 * accessor for them but the JSON form). */
static struct {
    const mz_record *rec;
    json_t *caps;
} s_caps[MAX_RECORDS + 1];
static size_t s_ncaps;

static void s_caps_clear(void)
{
    for (size_t i = 0; i < s_ncaps; i++)
        json_decref(s_caps[i].caps);
    s_ncaps = 0;
}

static bool s_caps_one(const mz_record *rec, void *ctx)
{
    json_t *j = mz_record_to_json(rec);

    (void)ctx;
    if (j == NULL)
        s_fail("mz_record_to_json failed", mz_record_id(rec), NULL);
    if (s_ncaps <= MAX_RECORDS) {
        s_caps[s_ncaps].rec = rec;
        s_caps[s_ncaps].caps = json_incref(json_object_get(j, "capabilities"));
        s_ncaps++;
    }
    json_decref(j);
    return true;
}

static void s_caps_load(const mz_directory *dir)
{
    s_caps_clear();
    mz_directory_foreach(dir, s_caps_one, NULL);
}

static bool s_rec_has_cap(const mz_record *rec, const char *cap)
{
    json_t *v;
    size_t i, k;

    for (k = 0; k < s_ncaps && s_caps[k].rec != rec; k++)
        ;
    if (k == s_ncaps)
        s_fail("a query answered a record foreach does not list", mz_record_id(rec), cap);
    json_array_foreach(s_caps[k].caps, i, v)
        if (strcmp(json_string_value(v), cap) == 0)
            return true;
    return false;
}

static bool s_matches(const mz_record *rec, const mz_query *q)
{
    if (q->resource_type && strcmp(q->resource_type, mz_record_type(rec)) != 0)
        return false;
    if (q->owner && strcmp(q->owner, mz_record_owner(rec)) != 0)
        return false;
    if (q->node && strcmp(q->node, mz_record_node(rec)) != 0)
        return false;
    if ((q->location == MZ_LOC_LOCAL && !mz_record_local(rec)) ||
        (q->location == MZ_LOC_REMOTE && mz_record_local(rec)))
        return false;
    for (size_t i = 0; i < q->n_capabilities; i++)
        if (!s_rec_has_cap(rec, q->capabilities[i]))
            return false;
    return true;
}

static bool s_on_answer(const mz_record *rec, void *ctx)
{
    qctx *c = ctx;

    if (!s_matches(rec, c->q))
        s_fail("query answered a record that does not match", mz_record_id(rec), NULL);
    if (rec == c->want)
        c->found = true;
    c->n++;
    return true;
}

static bool s_on_scan(const mz_record *rec, void *ctx)
{
    qctx *c = ctx;

    if (s_matches(rec, c->q))
        c->n++;
    return true;
}

/* Runs q, checks every answer, and the count against a full scan. */
static void s_query_check(const mz_directory *dir, const mz_query *q, const mz_record *want)
{
    qctx got = { q, want, false, 0 }, all = { q, NULL, false, 0 };
    size_t n = mz_directory_query(dir, q, s_on_answer, &got);
    size_t expect;

    mz_directory_foreach(dir, s_on_scan, &all);
    expect = (q->limit && all.n > q->limit) ? q->limit : all.n;
    if (n != got.n || n != expect || mz_directory_query(dir, q, NULL, NULL) != expect) {
        char detail[128];
        snprintf(detail, sizeof detail, "answers %zu (callbacks %zu), a scan finds %zu, "
                 "limit %zu", n, got.n, all.n, q->limit);
        s_fail("query count differs from a full scan", detail,
               q->resource_type ? q->resource_type : "(any type)");
    }
    if (want != NULL && !got.found && (q->limit == 0 || q->limit > all.n))
        s_fail("query does not find a record it matches", mz_record_id(want), NULL);
}

/* ---- whole-directory consistency ------------------------------------------ */

typedef struct cctx {
    const mz_directory *dir;
    size_t n;
} cctx;

static bool s_check_one(const mz_record *rec, void *ctx)
{
    cctx *c = ctx;
    const mz_directory *dir = c->dir;
    json_t *j = mz_record_to_json(rec), *caps;
    const char *capv[MZ_CAPS_MAX];
    mz_query q;
    mz_err e;
    size_t i;
    json_t *v;

    c->n++;
    if (mz_directory_get(dir, mz_record_id(rec)) != rec)
        s_fail("get does not find a held record", mz_record_id(rec), NULL);
    if (j == NULL || mz_record_validate(j, &e) != MZ_OK)
        s_fail("a held record does not validate", mz_record_id(rec), j ? e.msg : "no JSON");
    caps = json_object_get(j, "capabilities");

    memset(&q, 0, sizeof q);
    q.resource_type = mz_record_type(rec);
    s_query_check(dir, &q, rec);
    memset(&q, 0, sizeof q);
    q.owner = mz_record_owner(rec);
    q.location = mz_record_local(rec) ? MZ_LOC_LOCAL : MZ_LOC_REMOTE;
    s_query_check(dir, &q, rec);
    memset(&q, 0, sizeof q);
    q.node = mz_record_node(rec);
    s_query_check(dir, &q, rec);
    memset(&q, 0, sizeof q);
    q.resource_type = mz_record_type(rec);
    json_array_foreach(caps, i, v)
        capv[q.n_capabilities++] = json_string_value(v);
    q.capabilities = capv;
    s_query_check(dir, &q, rec);
    json_decref(j);
    return true;
}

/* Every record, every index: O(n^2), so after the last operation only. */
static void s_check_dir(const mz_directory *dir)
{
    cctx c = { dir, 0 };

    s_caps_load(dir);
    mz_directory_foreach(dir, s_check_one, &c);
    s_caps_clear();
    if (c.n != mz_directory_count(dir))
        s_fail("count differs from foreach", NULL, NULL);
}

static bool s_count_one(const mz_record *rec, void *ctx)
{
    (void)rec;
    ++*(size_t *)ctx;
    return true;
}

/* After every operation: the count, and the record it touched. */
static void s_check_op(const mz_directory *dir, const mz_record *touched)
{
    size_t n = 0;

    mz_directory_foreach(dir, s_count_one, &n);
    if (n != mz_directory_count(dir))
        s_fail("count differs from foreach", NULL, NULL);
    if (touched != NULL) {
        cctx c = { dir, 0 };
        s_caps_load(dir);
        s_check_one(touched, &c);
        s_caps_clear();
    }
}

/* ---- operations ------------------------------------------------------------- */

static void s_put(mz_directory *dir, const char *text, size_t len, bool local)
{
    json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const char *id = json_string_value(json_object_get(rec, "resource_id"));
    const mz_record *before = id ? mz_directory_get(dir, id) : NULL;
    char *old = before ? s_canon_rec(before) : NULL;
    size_t count = mz_directory_count(dir);
    mz_dir_change ch = MZ_DIR_ADDED;
    mz_status valid, rc;
    mz_err e;

    if (rec == NULL) {
        free(old);
        return;
    }
    valid = mz_record_validate(rec, NULL);
    rc = mz_directory_put(dir, rec, local, &ch, &e);
    if (valid != MZ_OK && rc == MZ_OK)
        s_fail("put accepted a record validate refuses", text, NULL);
    if (valid == MZ_OK && rc != MZ_OK && rc != MZ_EEXIST)
        s_fail("put refused a valid record", text, e.msg);
    if (rc != MZ_OK || ch == MZ_DIR_UNCHANGED) {
        const mz_record *after = id ? mz_directory_get(dir, id) : NULL;
        char *now = after ? s_canon_rec(after) : NULL;
        if (mz_directory_count(dir) != count || (old == NULL) != (now == NULL) ||
            (old != NULL && strcmp(old, now) != 0))
            s_fail("a refused or unchanged put changed the directory", old, now);
        free(now);
    } else {
        const mz_record *got = mz_directory_get(dir, id);
        char *in = mz_canon_dump(rec, s_unsigned, NULL), *stored;
        if (got == NULL)
            s_fail("get does not find the record just put", text, NULL);
        stored = s_canon_rec(got);
        if (in == NULL || strcmp(in, stored) != 0)
            s_fail("stored record differs from the one put (its signature would break)",
                   in, stored);
        if (mz_record_local(got) != local)
            s_fail("stored record has the wrong location", text, NULL);
        if (mz_directory_count(dir) != count + (ch == MZ_DIR_ADDED ? 1 : 0) ||
            (ch == MZ_DIR_ADDED) != (before == NULL))
            s_fail("count or change kind wrong after put", text, NULL);
        free(in);
        free(stored);
        s_check_op(dir, got);
    }
    free(old);
    json_decref(rec);
}

static void s_remove(mz_directory *dir, const char *text, size_t len)
{
    char id[200], node[100] = "";
    const char *sp = memchr(text, ' ', len);
    size_t idlen = sp ? (size_t)(sp - text) : len;
    const mz_record *rec;
    size_t count = mz_directory_count(dir);
    mz_status rc;

    if (idlen >= sizeof id)
        return;
    memcpy(id, text, idlen);
    id[idlen] = '\0';
    if (sp != NULL) {
        size_t nl = len - idlen - 1;
        if (nl >= sizeof node)
            return;
        memcpy(node, sp + 1, nl);
        node[nl] = '\0';
    }
    if (strlen(id) != idlen || strlen(node) != (sp ? len - idlen - 1 : 0))
        return;                              /* C strings: no NUL inside */
    rec = mz_directory_get(dir, id);
    rc = mz_directory_remove(dir, id, sp ? node : NULL, NULL);
    if (rc == MZ_OK && (rec == NULL || mz_directory_get(dir, id) != NULL ||
                        mz_directory_count(dir) != count - 1))
        s_fail("remove reported success but the record is still there", id, node);
    if (rc != MZ_OK && (mz_directory_get(dir, id) != rec || mz_directory_count(dir) != count))
        s_fail("a failed remove changed the directory", id, node);
}

static void s_remove_node_cb(const mz_record *rec, void *ctx)
{
    if (strcmp(mz_record_node(rec), ctx) != 0)
        s_fail("remove_node removed another node's record", mz_record_id(rec), ctx);
}

static void s_remove_node(mz_directory *dir, const char *text, size_t len)
{
    char node[100];
    mz_query q;
    size_t had, gone;

    if (len >= sizeof node || memchr(text, '\0', len) != NULL)
        return;
    memcpy(node, text, len);
    node[len] = '\0';
    memset(&q, 0, sizeof q);
    q.node = node;
    had = mz_directory_query(dir, &q, NULL, NULL);
    gone = mz_directory_remove_node(dir, node, s_remove_node_cb, node);
    if (gone != had || mz_directory_query(dir, &q, NULL, NULL) != 0)
        s_fail("remove_node left records of the node", node, NULL);
}

static void s_query(const mz_directory *dir, const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL), *v;
    const char *capv[MAX_QUERY_CAPS];
    const char *loc;
    mz_query q;
    size_t i;

    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    memset(&q, 0, sizeof q);
    q.resource_type = json_string_value(json_object_get(j, "resource_type"));
    q.owner = json_string_value(json_object_get(j, "owner"));
    q.node = json_string_value(json_object_get(j, "node"));
    loc = json_string_value(json_object_get(j, "location"));
    q.location = loc == NULL ? MZ_LOC_ANY : strcmp(loc, "local") == 0 ? MZ_LOC_LOCAL
               : strcmp(loc, "remote") == 0 ? MZ_LOC_REMOTE : MZ_LOC_ANY;
    v = json_object_get(j, "limit");
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1000)
        q.limit = (size_t)json_integer_value(v);
    json_array_foreach(json_object_get(j, "capabilities"), i, v) {
        if (q.n_capabilities == MAX_QUERY_CAPS || !json_is_string(v))
            break;
        capv[q.n_capabilities++] = json_string_value(v);
    }
    q.capabilities = capv;
    s_caps_load(dir);
    s_query_check(dir, &q, NULL);
    s_caps_clear();
    json_decref(mz_directory_query_json(dir, &q));
    json_decref(j);
}

static void s_run(mz_directory *dir, const unsigned char *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (n > 0) {
            switch (p[0]) {
            case 'P': s_put(dir, p + 1, n - 1, false); break;
            case 'L': s_put(dir, p + 1, n - 1, true); break;
            case 'D': s_remove(dir, p + 1, n - 1); break;
            case 'N': s_remove_node(dir, p + 1, n - 1); break;
            case 'Q': s_query(dir, p + 1, n - 1); break;
            case '{': s_put(dir, p, n, false); break;
            default: break;
            }
            s_check_op(dir, NULL);
            if (mz_directory_count(dir) > MAX_RECORDS)
                break;
        }
        p += n + 1;
    }
    s_check_dir(dir);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static mz_directory *kept;
    static unsigned inputs;
    mz_directory *fresh = NULL;

    if (mz_directory_new(&fresh, NULL) != MZ_OK)
        abort();
    s_run(fresh, data, size);
    mz_directory_free(fresh);

    if (kept == NULL || mz_directory_count(kept) >= MAX_RECORDS || ++inputs % 1000 == 0) {
        mz_directory_free(kept);
        if (mz_directory_new(&kept, NULL) != MZ_OK)
            abort();
    }
    s_run(kept, data, size);
    return 0;
}
