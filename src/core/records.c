/* Records, tombstones and leases: the directory's content as this node
 * signs, accepts, replicates and forgets it. Local resources are signed and
 * announced here; remote ones are verified and stored; removals live on as
 * tombstones; a node's records go when its lease runs out. The "announce",
 * "bye" and "query" message types are handled here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "core/node_int.h"

const char *const mz__record_unsigned_keys[] = { "signature", "location", NULL };

/* ---- nodes and leases --------------------------------------------------- */

void mz__node_touch(mz_node *node, const char *id, const char *listen, int64_t lease_ms)
{
    mz_nodeinfo *ni;
    int64_t until = mz_now_ms() + lease_ms;

    if (strcmp(id, mz_identity_id(node->ident)) == 0)
        return;
    ni = mz_hmap_get(node->nodes, id);
    if (ni == NULL) {
        ni = calloc(1, sizeof *ni);
        if (ni == NULL || mz_hmap_put(node->nodes, id, ni, NULL) != MZ_OK) {
            free(ni);
            return;
        }
    }
    if (listen != NULL && listen[0])
        snprintf(ni->listen, sizeof ni->listen, "%s", listen);
    if (until > ni->lease_until_ms)
        ni->lease_until_ms = until;
    ni->last_heard_ms = mz_now_ms();
}

static void s_on_record_removed(const mz_record *rec, void *ctx)
{
    mz__emit_record(ctx, "resource.removed", rec);
    mz_log(MZ_LOG_DEBUG, "node", "resource %s of %.12s removed", mz_record_id(rec),
           mz_record_node(rec));
}

/* Forgets a node: its records, route and lease. */
static void s_forget_node(mz_node *node, const char *id, const char *why)
{
    size_t n = mz_directory_remove_node(node->dir, id, s_on_record_removed, node);
    mz_nodeinfo *ni;

    mz_routes_drop(node->routes, id);
    ni = mz_hmap_get(node->nodes, id);
    if (ni != NULL)
        mz__members_left(node, id, ni->listen, why);
    free(mz_hmap_remove(node->nodes, id));
    mz__exec_node_gone(node, id);
    mz__persist_node_gone(node, id);
    mz_log(MZ_LOG_INFO, "node", "node %.12s %s: %zu resources removed", id, why, n);
}

void mz__forget_node(mz_node *node, const char *id, const char *why)
{
    s_forget_node(node, id, why);
}

void mz__expire_leases(mz_node *node, int64_t now)
{
    size_t pos = 0;
    const char *key;
    void *val;
    char expired[16][MZ_ID_HEX_LEN + 1];
    size_t n = 0;

    /* Collect first: forgetting modifies the map being iterated. */
    while (n < 16 && mz_hmap_next(node->nodes, &pos, &key, &val)) {
        mz_nodeinfo *ni = val;
        if (ni->lease_until_ms < now && mz__peer_by_id(node, key) == NULL)
            snprintf(expired[n++], sizeof expired[0], "%s", key);
    }
    for (size_t i = 0; i < n; i++) {
        node->c.leases_expired++;
        s_forget_node(node, expired[i], "lease expired");
    }
}

/* ---- resources ---------------------------------------------------------- */

/* ---- tombstones ------------------------------------------------------ */

/* How long a node remembers a removal, refusing older copies of the record
 * that may still arrive from lagging nodes. */
#define MZ_TOMB_MS (10 * 60 * 1000)

typedef struct mz_tomb {
    char owner_key[MZ_ID_HEX_LEN + 1];
    int64_t version;
    int64_t until_ms;
} mz_tomb;

const char *const mz__tomb_unsigned_keys[] = { "signature", NULL };

static void s_tomb_put(mz_node *node, const char *rid, const char *owner_key, int64_t version)
{
    mz_tomb *t = mz_hmap_get(node->tombs, rid);

    if (t == NULL) {
        t = calloc(1, sizeof *t);
        if (t == NULL || mz_hmap_put(node->tombs, rid, t, NULL) != MZ_OK) {
            free(t);
            return;
        }
    }
    snprintf(t->owner_key, sizeof t->owner_key, "%s", owner_key);
    if (version > t->version)
        t->version = version;
    t->until_ms = mz_now_ms() + MZ_TOMB_MS;
}

/* The version a tombstone of the same owner holds for rid, or 0. */
static int64_t s_tomb_version(mz_node *node, const char *rid, const char *owner_key)
{
    mz_tomb *t = mz_hmap_get(node->tombs, rid);

    return (t && strcmp(t->owner_key, owner_key) == 0) ? t->version : 0;
}

void mz__tombs_expire(mz_node *node, int64_t now)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    char ids[32][MZ_RESOURCE_ID_MAX + 1];

    while (n < 32 && mz_hmap_next(node->tombs, &pos, &key, &val))
        if (((mz_tomb *)val)->until_ms < now)
            snprintf(ids[n++], sizeof ids[0], "%s", key);
    for (size_t i = 0; i < n; i++)
        free(mz_hmap_remove(node->tombs, ids[i]));
}

static mz_status s_tomb_check(const json_t *t, mz_err *err)
{
    static const char *const fields[] = { "resource_id", "node", "owner_key", "version",
                                          "deleted", "signature", NULL };
    const char *key;
    json_t *v;
    const char *rid = json_string_value(json_object_get(t, "resource_id"));

    if (!json_is_object(t))
        return mz_err_set(err, MZ_EPROTO, "tombstone: must be an object");
    json_object_foreach((json_t *)t, key, v) {
        size_t i;
        for (i = 0; fields[i] && strcmp(fields[i], key) != 0; i++)
            ;
        if (fields[i] == NULL)
            return mz_err_set(err, MZ_EPROTO, "tombstone: unknown field '%.40s'", key);
    }
    if (rid == NULL || strlen(rid) == 0 || strlen(rid) > MZ_RESOURCE_ID_MAX)
        return mz_err_set(err, MZ_EPROTO, "tombstone: field 'resource_id' must be a string of "
                          "1..%d bytes", MZ_RESOURCE_ID_MAX);
    if (!mz_id_valid(json_string_value(json_object_get(t, "node"))) ||
        !mz_id_valid(json_string_value(json_object_get(t, "owner_key"))))
        return mz_err_set(err, MZ_EPROTO, "tombstone '%s': fields 'node' and 'owner_key' must "
                          "be 64 lowercase hex characters", rid);
    if (!json_is_integer(json_object_get(t, "version")) ||
        json_integer_value(json_object_get(t, "version")) < 1)
        return mz_err_set(err, MZ_EPROTO, "tombstone '%s': field 'version' must be a positive "
                          "integer", rid);
    if (!json_is_true(json_object_get(t, "deleted")))
        return mz_err_set(err, MZ_EPROTO, "tombstone '%s': field 'deleted' must be true", rid);
    return MZ_OK;
}

/* Verifies a signed removal and applies it: only the record's owner key,
 * only forward. from_node: the announcing node (NULL: local). */
mz_status mz__apply_tombstone(mz_node *node, const json_t *t, const char *from_node,
                              mz_err *err)
{
    const char *rid, *okey;
    const mz_record *rec;
    int64_t version;
    mz_status rc;

    if ((rc = s_tomb_check(t, err)) != MZ_OK) {
        node->c.bad_records++;
        return rc;
    }
    rid = json_string_value(json_object_get(t, "resource_id"));
    okey = json_string_value(json_object_get(t, "owner_key"));
    version = json_integer_value(json_object_get(t, "version"));
    if (from_node && strcmp(from_node, json_string_value(json_object_get(t, "node"))) != 0) {
        node->c.bad_records++;
        return mz_err_set(err, MZ_EPROTO, "tombstone '%s': announced by a node that does not "
                          "host it", rid);
    }
    if ((rc = mz_verify_object(t, MZ_TOMB_SIG_DOMAIN, mz__tomb_unsigned_keys, "signature", okey,
                               err)) != MZ_OK) {
        node->c.forged++;
        return rc;
    }
    rec = mz_directory_get(node->dir, rid);
    if (rec != NULL && strcmp(mz_record_owner_key(rec), okey) != 0) {
        node->c.conflicts++;
        return mz_err_set(err, MZ_EEXIST, "tombstone '%s': signed by %.12s, not the owner key "
                          "%.12s", rid, okey, mz_record_owner_key(rec));
    }
    if (rec != NULL && version <= mz_record_version(rec)) {
        node->c.rollbacks++;
        return mz_err_set(err, MZ_ESTATE, "tombstone '%s': version %lld is not newer than %lld",
                          rid, (long long)version, (long long)mz_record_version(rec));
    }
    s_tomb_put(node, rid, okey, version);
    mz__persist_tombstone(node, rid, okey, version, mz_now_ms() + MZ_TOMB_MS);
    if (rec != NULL && !mz_record_local(rec))
        mz__persist_remote_delete(node, rid);
    if (rec != NULL) {
        mz__emit_record(node, "resource.removed", rec);
        if (mz_record_local(rec))
            mz__exec_drop_handler(node, rid);
        mz_directory_remove(node->dir, rid, NULL, NULL);
        mz_log(MZ_LOG_DEBUG, "node", "resource %s removed (tombstone v%lld)", rid,
               (long long)version);
    }
    return MZ_OK;
}

/* ---- resources ---------------------------------------------------------- */

/* Verifies a record against its owner key and stores it. local: hosted here
 * (then rec.node must be this node). */
static mz_status s_accept_record(mz_node *node, const json_t *rec, bool local, mz_err *err)
{
    const char *rid, *okey;
    const mz_record *old;
    int64_t version;
    mz_status rc;
    mz_dir_change ch;

    if ((rc = mz_record_validate(rec, err)) != MZ_OK) {
        node->c.bad_records++;
        return rc;
    }
    /* A record travels inside sync and announce envelopes (depth 32): keep
     * its metadata shallow enough to fit, or no peer could accept it. */
    if (!mz_json_within(json_object_get(rec, "metadata"), 16, 5000)) {
        node->c.bad_records++;
        return mz_err_set(err, MZ_EPROTO, "record '%s': metadata nests deeper than 16 or has "
                          "more than 5000 members",
                          json_string_value(json_object_get(rec, "resource_id")));
    }
    rid = json_string_value(json_object_get(rec, "resource_id"));
    okey = json_string_value(json_object_get(rec, "owner_key"));
    version = json_integer_value(json_object_get(rec, "version"));
    if ((rc = mz_verify_object(rec, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys,
                               "signature", okey, err)) != MZ_OK) {
        node->c.forged++;
        return rc;
    }
    if (version <= s_tomb_version(node, rid, okey)) {
        node->c.rollbacks++;
        return mz_err_set(err, MZ_ESTATE, "record '%s': version %lld was removed already", rid,
                          (long long)version);
    }
    old = mz_directory_get(node->dir, rid);
    if (old != NULL && strcmp(mz_record_owner_key(old), okey) == 0 &&
        version < mz_record_version(old)) {
        node->c.rollbacks++;
        return mz_err_set(err, MZ_ESTATE, "record '%s': version %lld is older than %lld", rid,
                          (long long)version, (long long)mz_record_version(old));
    }
    if (old != NULL && strcmp(mz_record_owner_key(old), okey) != 0) {
        node->c.conflicts++;
        return mz_err_set(err, MZ_EEXIST, "record '%s': already registered by owner key %.12s",
                          rid, mz_record_owner_key(old));
    }
    if (!local && old != NULL && mz_record_local(old))
        return MZ_OK;   /* ours coming back: the local copy is the truth */
    if (old == NULL && !local) {
        const char *host = json_string_value(json_object_get(rec, "node"));
        if (mz_directory_count_node(node->dir, host) >= node->o.max_records_per_node ||
            mz_directory_count_owner_key(node->dir, okey) >= node->o.max_records_per_owner) {
            node->c.record_limit++;
            return mz_err_set(err, MZ_ELIMIT, "record '%s': node %.12s or owner key %.12s "
                              "already has the most records allowed here", rid, host, okey);
        }
    }
    rc = mz_directory_put(node->dir, rec, local, &ch, err);
    if (rc == MZ_EEXIST)
        node->c.conflicts++;
    if (rc == MZ_OK && ch != MZ_DIR_UNCHANGED) {
        if (!local)
            mz__persist_remote_put(node, rec);
        mz__emit_record(node, ch == MZ_DIR_ADDED ? "resource.added" : "resource.updated",
                        mz_directory_get(node->dir, rid));
        mz_log(MZ_LOG_DEBUG, "node", "resource %s of %.12s %s", rid,
               json_string_value(json_object_get(rec, "node")),
               ch == MZ_DIR_ADDED ? "added" : "updated");
    }
    return rc;
}

mz_status mz__accept_remote_record(mz_node *node, const json_t *rec, mz_err *err)
{
    const char *host = json_string_value(json_object_get(rec, "node"));

    if (host != NULL && strcmp(host, mz_identity_id(node->ident)) == 0) {
        const char *rid = json_string_value(json_object_get(rec, "resource_id"));
        const char *okey = json_string_value(json_object_get(rec, "owner_key"));
        const mz_record *old = rid ? mz_directory_get(node->dir, rid) : NULL;
        /* Naming us as host: ours coming back is ignored (our copy is the
         * truth), so is one we no longer hold (never let others re-create our
         * resources); another owner's claim on an id we host is a conflict. */
        if (old != NULL && okey != NULL && strcmp(mz_record_owner_key(old), okey) != 0) {
            node->c.conflicts++;
            return mz_err_set(err, MZ_EEXIST, "record '%s': already registered by owner key "
                              "%.12s", rid, mz_record_owner_key(old));
        }
        return MZ_OK;
    }
    return s_accept_record(node, rec, false, err);
}

static json_t *s_build_record(mz_node *node, const mz_resource_spec *spec, int64_t version,
                              mz_err *err)
{
    json_t *rec = NULL, *caps = NULL, *meta = NULL;
    char ts[32];

    caps = json_array();
    meta = spec->metadata ? json_deep_copy(spec->metadata) : json_object();
    if (caps == NULL || meta == NULL)
        goto nomem;
    if (!json_is_object(meta)) {
        json_decref(caps);
        json_decref(meta);
        mz_err_set(err, MZ_EINVAL, "resource '%s': metadata must be a JSON object",
                   spec->resource_id);
        return NULL;
    }
    for (size_t i = 0; i < spec->n_capabilities; i++)
        if (json_array_append_new(caps, json_string(spec->capabilities[i])) != 0)
            goto nomem;
    mz_time_format(mz_now_ms(), ts);
    /* The user's metadata is kept as given; only a missing last_updated is
     * filled in (docs/PROTOCOL.md, the record's fields). */
    if (json_object_get(meta, "last_updated") == NULL)
        json_object_set_new(meta, "last_updated", json_string(ts));
    rec = json_pack("{s:s?,s:s?,s:s,s:o,s:o,s:s,s:I,s:s}", "resource_id", spec->resource_id,
                    "resource_type", spec->resource_type, "owner",
                    spec->owner ? spec->owner : "", "capabilities", caps, "metadata", meta,
                    "node", mz_identity_id(node->ident), "version", (json_int_t)version,
                    "owner_key", mz_identity_id(node->ident));
    if (rec == NULL) {
        mz_err_set(err, MZ_EINVAL, "resource: resource_id and resource_type must be "
                   "UTF-8 strings");
        return NULL;
    }
    return rec;
nomem:
    json_decref(caps);
    json_decref(meta);
    mz_err_set(err, MZ_ENOMEM, "resource: allocating");
    return NULL;
}

static void s_announce(mz_node *node, json_t *payload)
{
    mz__send(node, mz__msg_new("announce", mz_identity_id(node->ident), "*", payload), NULL,
             NULL);
}

/* The version a new record for rid must carry to supersede what we know. */
static int64_t s_next_version(mz_node *node, const char *rid, const char *owner_key)
{
    const mz_record *old = mz_directory_get(node->dir, rid);
    int64_t v = s_tomb_version(node, rid, owner_key);

    if (old != NULL && strcmp(mz_record_owner_key(old), owner_key) == 0 &&
        mz_record_version(old) > v)
        v = mz_record_version(old);
    return v + 1;
}

mz_status mz_node_register_record(mz_node *node, const json_t *rec, json_t **record_out,
                                  mz_err *err)
{
    const char *host = json_string_value(json_object_get(rec, "node"));
    const char *rid, *okey;
    const mz_record *old;
    mz_status rc;

    if (record_out)
        *record_out = NULL;
    if (host == NULL || strcmp(host, mz_identity_id(node->ident)) != 0)
        return mz_err_set(err, MZ_EINVAL, "register: the record's node must be this node "
                          "(%.12s)", mz_identity_id(node->ident));
    rid = json_string_value(json_object_get(rec, "resource_id"));
    old = rid ? mz_directory_get(node->dir, rid) : NULL;
    okey = json_string_value(json_object_get(rec, "owner_key"));
    if (old != NULL && okey != NULL && json_is_integer(json_object_get(rec, "version")) &&
        json_integer_value(json_object_get(rec, "version")) <= mz_record_version(old) &&
        strcmp(mz_record_owner_key(old), okey) == 0)
        return mz_err_set(err, MZ_ESTATE, "register: resource '%s' is at version %lld; a new "
                          "record needs a higher one", rid, (long long)mz_record_version(old));
    if ((rc = s_accept_record(node, rec, true, err)) != MZ_OK)
        return rc;
    /* Acknowledged only once durable: a crash after this loses nothing. */
    if ((rc = mz__persist_local_put(node, rec, err)) != MZ_OK) {
        mz_directory_remove(node->dir, rid, NULL, NULL);
        return rc;
    }
    s_announce(node, json_pack("{s:s,s:O}", "op", "upsert", "record", rec));
    mz_log(MZ_LOG_DEBUG, "node", "resource %s registered (version %lld, owner key %.12s)", rid,
           (long long)json_integer_value(json_object_get(rec, "version")),
           json_string_value(json_object_get(rec, "owner_key")));
    if (record_out) {
        *record_out = json_deep_copy(rec);
        if (*record_out)
            json_object_set_new(*record_out, "location", json_string("local"));
    }
    return MZ_OK;
}

mz_status mz_node_register_resource(mz_node *node, const mz_resource_spec *spec,
                                    json_t **record_out, mz_err *err)
{
    const mz_record *old;
    json_t *rec;
    mz_status rc;

    if (record_out)
        *record_out = NULL;
    if (spec == NULL || spec->resource_id == NULL || spec->resource_type == NULL)
        return mz_err_set(err, MZ_EINVAL, "register: resource_id and resource_type are "
                          "required");
    old = mz_directory_get(node->dir, spec->resource_id);
    if (old != NULL && strcmp(mz_record_owner_key(old), mz_identity_id(node->ident)) != 0)
        return mz_err_set(err, MZ_EEXIST, "register: resource '%s' belongs to owner key %.12s "
                          "(hosted by node %.12s)", spec->resource_id, mz_record_owner_key(old),
                          mz_record_node(old));
    rec = s_build_record(node, spec,
                         s_next_version(node, spec->resource_id, mz_identity_id(node->ident)),
                         err);
    if (rec == NULL)
        return err ? err->code : MZ_EINVAL;
    if ((rc = mz_sign_object(rec, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys,
                             "signature", node->ident, err)) != MZ_OK ||
        (rc = mz_node_register_record(node, rec, record_out, err)) != MZ_OK) {
        json_decref(rec);
        return rc;
    }
    json_decref(rec);
    return MZ_OK;
}

mz_status mz_node_unregister_tombstone(mz_node *node, const json_t *tomb, mz_err *err)
{
    const char *rid = json_string_value(json_object_get(tomb, "resource_id"));
    const mz_record *old = rid ? mz_directory_get(node->dir, rid) : NULL;
    mz_status rc;

    if (old == NULL || !mz_record_local(old))
        return mz_err_set(err, MZ_ENOTFOUND, "unregister: no resource '%s' hosted here",
                          rid ? rid : "(null)");
    if ((rc = mz__apply_tombstone(node, tomb, mz_identity_id(node->ident), err)) != MZ_OK)
        return rc;
    if ((rc = mz__persist_local_delete(node, rid,
                                       json_string_value(json_object_get(tomb, "owner_key")),
                                       json_integer_value(json_object_get(tomb, "version")),
                                       mz_now_ms() + MZ_TOMB_MS, err)) != MZ_OK)
        return rc;
    s_announce(node, json_pack("{s:s,s:O}", "op", "remove", "tombstone", tomb));
    mz_log(MZ_LOG_DEBUG, "node", "resource %s unregistered", rid);
    return MZ_OK;
}

mz_status mz_node_unregister_resource(mz_node *node, const char *resource_id, mz_err *err)
{
    const mz_record *old = resource_id ? mz_directory_get(node->dir, resource_id) : NULL;
    json_t *tomb;
    mz_status rc;

    if (old == NULL || !mz_record_local(old))
        return mz_err_set(err, MZ_ENOTFOUND, "unregister: no resource '%s' hosted here",
                          resource_id ? resource_id : "(null)");
    if (strcmp(mz_record_owner_key(old), mz_identity_id(node->ident)) != 0)
        return mz_err_set(err, MZ_EINVAL, "unregister: resource '%s' belongs to owner key "
                          "%.12s: its removal must be signed with that key", resource_id,
                          mz_record_owner_key(old));
    tomb = json_pack("{s:s,s:s,s:s,s:I,s:b}", "resource_id", resource_id, "node",
                     mz_identity_id(node->ident), "owner_key", mz_identity_id(node->ident),
                     "version", (json_int_t)(mz_record_version(old) + 1), "deleted", 1);
    if (tomb == NULL)
        return mz_err_set(err, MZ_ENOMEM, "unregister: allocating");
    rc = mz_sign_object(tomb, MZ_TOMB_SIG_DOMAIN, mz__tomb_unsigned_keys, "signature",
                        node->ident, err);
    if (rc == MZ_OK)
        rc = mz_node_unregister_tombstone(node, tomb, err);
    json_decref(tomb);
    return rc;
}

mz_status mz__restore_local_record(mz_node *node, const json_t *rec, mz_err *err)
{
    const char *host = json_string_value(json_object_get(rec, "node"));

    if (host == NULL || strcmp(host, mz_identity_id(node->ident)) != 0)
        return mz_err_set(err, MZ_EINVAL, "record names another host (the data directory's "
                          "key changed?)");
    return s_accept_record(node, rec, true, err);
}

void mz__tomb_restore(mz_node *node, const char *rid, const char *owner_key, int64_t version,
                      int64_t until_ms)
{
    mz_tomb *t;

    s_tomb_put(node, rid, owner_key, version);
    t = mz_hmap_get(node->tombs, rid);
    if (t != NULL)
        t->until_ms = until_ms;
}

json_t *mz_node_get_resource(mz_node *node, const char *resource_id, const char *owner_key)
{
    const mz_record *rec = mz_directory_get(node->dir, resource_id);
    json_t *out = json_pack("{s:s,s:o,s:I}", "node", mz_identity_id(node->ident), "record",
                            rec ? mz_record_to_json(rec) : json_null(), "next_version",
                            (json_int_t)s_next_version(node, resource_id,
                                                       owner_key ? owner_key
                                                                 : mz_identity_id(node->ident)));
    return out;
}

json_t *mz_node_query_resources(mz_node *node, const mz_query *q)
{
    mz_query all;

    if (q == NULL) {
        memset(&all, 0, sizeof all);
        q = &all;
    }
    return mz_directory_query_json(node->dir, q);
}


/* ---- message types --------------------------------------------------- */

static const char *s_me(mz_node *node) { return mz_identity_id(node->ident); }

static const char *s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

void mz__records_on_announce(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const char *op = s_str(pl, "op"), *from = mz__msg_sender(msg);
    mz_err e;

    (void)p;
    mz__node_touch(node, from, NULL, node->o.lease_ms);
    if (op && strcmp(op, "upsert") == 0) {
        const json_t *rec = json_object_get(pl, "record");
        const char *host = s_str(rec, "node");
        if (host == NULL || strcmp(host, from) != 0) {
            node->c.bad_records++;
            node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s: record not hosted by its sender",
                   mz__msg_id(msg));
            return;
        }
        if (mz__accept_remote_record(node, rec, &e) != MZ_OK) {
            /* Stale copies (an older version) may still travel on; forgeries
             * and takeovers stop here. */
            if (e.code != MZ_ESTATE)
                node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s from %.12s: %s", mz__msg_id(msg), from,
                   e.msg);
        }
    } else if (op && strcmp(op, "remove") == 0) {
        if (mz__apply_tombstone(node, json_object_get(pl, "tombstone"), from, &e) != MZ_OK) {
            if (e.code != MZ_ESTATE)
                node->refuse_forward = true;
            mz_log(MZ_LOG_WARN, "handler", "announce %s from %.12s: %s", mz__msg_id(msg), from,
                   e.msg);
        }
    } else {
        node->c.malformed++;
        mz_log(MZ_LOG_WARN, "handler", "announce %s: op must be upsert or remove",
               mz__msg_id(msg));
    }
}

void mz__records_on_bye(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    (void)p;
    mz__forget_node(node, mz__msg_sender(msg), "said goodbye");
}

void mz__records_on_query(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    const json_t *pl = mz__msg_payload(msg);
    const json_t *caps = json_object_get(pl, "capabilities");
    const char *capv[MZ_CAPS_MAX];
    const char *loc = s_str(pl, "location");
    json_int_t limit = json_integer_value(json_object_get(pl, "limit"));
    mz_query q;
    json_t *res, *v;
    size_t i;

    (void)p;
    memset(&q, 0, sizeof q);
    q.resource_type = s_str(pl, "resource_type");
    q.owner = s_str(pl, "owner");
    q.location = loc == NULL ? MZ_LOC_ANY : strcmp(loc, "local") == 0 ? MZ_LOC_LOCAL
                                                                       : MZ_LOC_REMOTE;
    /* Replies must fit in one message. */
    q.limit = (limit <= 0 || limit > 500) ? 500 : (size_t)limit;
    if (json_is_array(caps)) {
        json_array_foreach(caps, i, v) {
            if (i >= MZ_CAPS_MAX || !json_is_string(v))
                break;
            capv[q.n_capabilities++] = json_string_value(v);
        }
    }
    q.capabilities = capv;
    res = mz_directory_query_json(node->dir, &q);
    if (!mz__guard_query(node, mz__msg_sender(msg), mz__msg_id(msg), res))
        return;
    mz__send(node, mz__msg_new("query_result", s_me(node), mz__msg_sender(msg),
                              json_pack("{s:s,s:o}", "ref", mz__msg_id(msg), "records",
                                        res ? res : json_array())),
             NULL, NULL);
}

void mz__records_on_query_result(mz_node *node, mz_peer *p, const mz_msg *msg)
{
    (void)node;
    (void)p;
    mz_log(MZ_LOG_DEBUG, "handler", "query_result %s from %.12s", mz__msg_id(msg),
           mz__msg_sender(msg));
}

