/* Agreements: document checks, provider and consumer signatures, and the
 * host's usage counters in SQLite. docs/AGREEMENTS.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "state/agreement.h"
#include "meshzero/agreement.h"
#include "meshzero/msg.h"

#define MZ_AGREEMENTS_FILE "agreements.db"
/* Schema version of agreements.db this code writes (table schema_version,
 * component "agreements"). */
#define MZ_AGREEMENTS_SCHEMA 1
/* How long a call waits for another connection's write transaction on the
 * same file before failing with MZ_EIO. Only another process on the same
 * data directory (which nodes do not share) or a test holds one, so this is
 * long enough to ride out a burst and short enough not to stall the loop
 * for good. */
#define MZ_AGREEMENTS_BUSY_MS 2000
#define MZ_DAY_MS (86400 * (int64_t)1000)

const char *const mz_agreement_provider_unsigned[] = { "provider_signature",
                                                       "consumer_signature", NULL };
const char *const mz_agreement_consumer_unsigned[] = { "consumer_signature", NULL };

/* Every field of the document; nothing else is allowed (a host must not
 * ignore a condition it does not understand). */
static const char *const s_fields[] = {
    "agreement_id", "provider", "consumer", "resource_id", "methods", "limits",
    "not_before", "expires_at", "provider_signature", "consumer_signature", NULL
};
static const char *const s_limit_fields[] = { "requests_per_day", "requests_total", NULL };

/* ---- document ----------------------------------------------------------- */

static bool s_in(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static bool s_id_valid(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= MZ_AGREEMENT_ID_MAX
            || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                 || c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return n > 0;
}

static bool s_sig_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= MZ_SIG_HEX_LEN || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return n == MZ_SIG_HEX_LEN;
}

/* A string of 1..max bytes without NUL (jansson strings may hold NUL, and a
 * name that strcmp sees shorter than the signed one must not pass). */
static const char *s_text(const json_t *v, size_t max)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (s == NULL || n == 0 || n > max || strlen(s) != n)
        return NULL;
    return s;
}

static mz_status s_check_time(const json_t *a, const char *key, int64_t *ms, mz_err *err)
{
    const char *s = json_string_value(json_object_get(a, key));

    if (s == NULL || !mz_time_parse(s, ms))
        return mz_err_set(err, MZ_EPROTO, "agreement: field '%s' must be an RFC 3339 date-time",
                          key);
    return MZ_OK;
}

static mz_status s_check_limits(const json_t *limits, mz_err *err)
{
    const char *key;
    json_t *v;

    if (!json_is_object(limits))
        return mz_err_set(err, MZ_EPROTO, "agreement: field 'limits' must be an object");
    json_object_foreach((json_t *)limits, key, v) {
        if (!s_in(s_limit_fields, key))
            return mz_err_set(err, MZ_EPROTO,
                              "agreement: unknown limit 'limits.%.64s' (known: requests_per_day, "
                              "requests_total)", key);
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return mz_err_set(err, MZ_EPROTO,
                              "agreement: 'limits.%s' must be an integer of at least 1", key);
    }
    return MZ_OK;
}

mz_status mz_agreement_validate(const json_t *a, bool need_signatures, mz_err *err)
{
    static const char *const sigs[] = { "provider_signature", "consumer_signature" };
    const json_t *methods, *v;
    const char *key;
    int64_t nb, exp;
    size_t i;
    mz_status rc;

    if (!json_is_object(a))
        return mz_err_set(err, MZ_EPROTO, "agreement: must be a JSON object");
    json_object_foreach((json_t *)a, key, v) {
        (void)v;
        if (!s_in(s_fields, key))
            return mz_err_set(err, MZ_EPROTO, "agreement: unknown field '%.64s'", key);
    }
    if (!s_id_valid(json_string_value(json_object_get(a, "agreement_id"))))
        return mz_err_set(err, MZ_EPROTO, "agreement: field 'agreement_id' must be 1-%d "
                          "characters of [A-Za-z0-9._:-]", MZ_AGREEMENT_ID_MAX);
    if (!mz_id_valid(json_string_value(json_object_get(a, "provider"))))
        return mz_err_set(err, MZ_EPROTO,
                          "agreement: field 'provider' must be 64 lowercase hex characters");
    if (!mz_id_valid(json_string_value(json_object_get(a, "consumer"))))
        return mz_err_set(err, MZ_EPROTO,
                          "agreement: field 'consumer' must be 64 lowercase hex characters");
    if (s_text(json_object_get(a, "resource_id"), MZ_AGREEMENT_RESOURCE_MAX) == NULL)
        return mz_err_set(err, MZ_EPROTO, "agreement: field 'resource_id' must be a string of "
                          "1-%d bytes", MZ_AGREEMENT_RESOURCE_MAX);
    methods = json_object_get(a, "methods");
    if (!json_is_array(methods) || json_array_size(methods) < 1
        || json_array_size(methods) > MZ_AGREEMENT_METHODS_MAX)
        return mz_err_set(err, MZ_EPROTO, "agreement: field 'methods' must be an array of "
                          "1-%d strings", MZ_AGREEMENT_METHODS_MAX);
    json_array_foreach(methods, i, v) {
        if (s_text(v, MZ_AGREEMENT_METHOD_MAX) == NULL)
            return mz_err_set(err, MZ_EPROTO, "agreement: 'methods[%zu]' must be a string of "
                              "1-%d bytes", i, MZ_AGREEMENT_METHOD_MAX);
    }
    if ((rc = s_check_limits(json_object_get(a, "limits"), err)) != MZ_OK)
        return rc;
    if ((rc = s_check_time(a, "not_before", &nb, err)) != MZ_OK
        || (rc = s_check_time(a, "expires_at", &exp, err)) != MZ_OK)
        return rc;
    if (nb >= exp)
        return mz_err_set(err, MZ_EPROTO, "agreement: 'expires_at' must be later than "
                          "'not_before'");
    for (i = 0; i < 2; i++) {
        v = json_object_get(a, sigs[i]);
        if (v == NULL && !need_signatures)
            continue;
        if (v == NULL)
            return mz_err_set(err, MZ_EPROTO, "agreement: field '%s' is missing", sigs[i]);
        if (!json_is_string(v) || !s_sig_valid(json_string_value(v)))
            return mz_err_set(err, MZ_EPROTO,
                              "agreement: field '%s' must be 128 lowercase hex characters",
                              sigs[i]);
    }
    return MZ_OK;
}

static mz_status s_verify(const json_t *a, const char *who, const char *const *skip,
                          const char *sig_key, mz_err *err)
{
    const char *key = json_string_value(json_object_get(a, who));

    if (!json_is_object(a))
        return mz_err_set(err, MZ_EPROTO, "agreement: must be a JSON object");
    if (!mz_id_valid(key))
        return mz_err_set(err, MZ_EPROTO,
                          "agreement: field '%s' must be 64 lowercase hex characters", who);
    return mz_verify_object(a, MZ_AGREEMENT_SIG_DOMAIN, skip, sig_key, key, err);
}

mz_status mz_agreement_verify_provider(const json_t *a, mz_err *err)
{
    return s_verify(a, "provider", mz_agreement_provider_unsigned, "provider_signature", err);
}

mz_status mz_agreement_verify_consumer(const json_t *a, mz_err *err)
{
    return s_verify(a, "consumer", mz_agreement_consumer_unsigned, "consumer_signature", err);
}

/* Sets one field, taking v; false when out of memory. */
static bool s_set(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* The spec's fields within their limits; *n_methods gets the count. */
static mz_status s_check_spec(const mz_agreement_spec *spec, const char *id, size_t *n_methods,
                              mz_err *err)
{
    size_t n = 0;

    if (!s_id_valid(id))
        return mz_err_set(err, MZ_EINVAL, "agreement: id must be 1-%d characters of "
                          "[A-Za-z0-9._:-]", MZ_AGREEMENT_ID_MAX);
    if (!mz_id_valid(spec->consumer))
        return mz_err_set(err, MZ_EINVAL,
                          "agreement: consumer must be a node id (64 lowercase hex characters)");
    if (spec->resource_id == NULL || spec->resource_id[0] == '\0'
        || strlen(spec->resource_id) > MZ_AGREEMENT_RESOURCE_MAX)
        return mz_err_set(err, MZ_EINVAL, "agreement: resource id must be 1-%d bytes",
                          MZ_AGREEMENT_RESOURCE_MAX);
    while (spec->methods != NULL && spec->methods[n] != NULL) {
        size_t len = strlen(spec->methods[n]);
        if (len == 0 || len > MZ_AGREEMENT_METHOD_MAX)
            return mz_err_set(err, MZ_EINVAL, "agreement: method %zu must be 1-%d bytes", n + 1,
                              MZ_AGREEMENT_METHOD_MAX);
        n++;
    }
    *n_methods = n;
    if (n < 1 || n > MZ_AGREEMENT_METHODS_MAX)
        return mz_err_set(err, MZ_EINVAL, "agreement: need 1-%d methods, not %zu",
                          MZ_AGREEMENT_METHODS_MAX, n);
    if (spec->requests_per_day < 0 || spec->requests_total < 0)
        return mz_err_set(err, MZ_EINVAL, "agreement: limits must not be negative");
    if (spec->not_before_ms >= spec->expires_at_ms)
        return mz_err_set(err, MZ_EINVAL, "agreement: expiry must be later than not_before");
    return MZ_OK;
}

mz_status mz_agreement_create(const mz_agreement_spec *spec, const mz_identity *provider,
                              json_t **out, mz_err *err)
{
    char gen_id[4 + 16 + 1], nb[32], exp[32];
    const char *id;
    json_t *doc = NULL, *methods = NULL, *limits = NULL;
    size_t n = 0;
    mz_status rc;
    int jrc;

    *out = NULL;
    if (spec == NULL || provider == NULL)
        return mz_err_set(err, MZ_EINVAL, "agreement: need a spec and a provider key");
    id = spec->agreement_id;
    if (id == NULL) {
        memcpy(gen_id, "agr-", 4);
        mz_random_hex(gen_id + 4, 8);
        id = gen_id;
    }
    if ((rc = s_check_spec(spec, id, &n, err)) != MZ_OK)
        return rc;
    mz_time_format(spec->not_before_ms, nb);
    mz_time_format(spec->expires_at_ms, exp);

    if ((doc = json_object()) == NULL || (methods = json_array()) == NULL
        || (limits = json_object()) == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(methods, json_string(spec->methods[i])) != 0)
            goto nomem;
    if ((spec->requests_per_day > 0
         && !s_set(limits, "requests_per_day", json_integer(spec->requests_per_day)))
        || (spec->requests_total > 0
            && !s_set(limits, "requests_total", json_integer(spec->requests_total))))
        goto nomem;
    /* In the documented order: jansson keeps insertion order when dumping,
     * so the file reads like docs/AGREEMENTS.md (the signature does not care). */
    if (!s_set(doc, "agreement_id", json_string(id))
        || !s_set(doc, "provider", json_string(mz_identity_id(provider)))
        || !s_set(doc, "consumer", json_string(spec->consumer))
        || !s_set(doc, "resource_id", json_string(spec->resource_id)))
        goto nomem;
    jrc = json_object_set_new(doc, "methods", methods);
    methods = NULL;
    if (jrc != 0)
        goto nomem;
    jrc = json_object_set_new(doc, "limits", limits);
    limits = NULL;
    if (jrc != 0 || !s_set(doc, "not_before", json_string(nb))
        || !s_set(doc, "expires_at", json_string(exp)))
        goto nomem;
    if ((rc = mz_agreement_validate(doc, false, err)) != MZ_OK) {
        /* Times outside RFC 3339's years 0000-9999 format but do not parse. */
        if (err != NULL)
            err->code = MZ_EINVAL;
        rc = MZ_EINVAL;
        goto fail;
    }
    if ((rc = mz_sign_object(doc, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_provider_unsigned,
                             "provider_signature", provider, err)) != MZ_OK)
        goto fail;
    *out = doc;
    return MZ_OK;
nomem:
    rc = mz_err_set(err, MZ_ENOMEM, "agreement: out of memory building the document");
fail:
    json_decref(methods);
    json_decref(limits);
    json_decref(doc);
    return rc;
}

mz_status mz_agreement_countersign(json_t *a, const mz_identity *consumer, mz_err *err)
{
    const char *want;
    mz_status rc;

    if (consumer == NULL)
        return mz_err_set(err, MZ_EINVAL, "agreement: need the consumer's key");
    if ((rc = mz_agreement_validate(a, false, err)) != MZ_OK)
        return rc;
    want = json_string_value(json_object_get(a, "consumer"));
    if (strcmp(want, mz_identity_id(consumer)) != 0)
        return mz_err_set(err, MZ_EINVAL, "agreement %s: the consumer is %.12s..., not this "
                          "key (%.12s...)", json_string_value(json_object_get(a, "agreement_id")),
                          want, mz_identity_id(consumer));
    if (json_object_get(a, "provider_signature") == NULL)
        return mz_err_set(err, MZ_ESIG, "agreement %s: not signed by its provider",
                          json_string_value(json_object_get(a, "agreement_id")));
    if ((rc = mz_agreement_verify_provider(a, err)) != MZ_OK)
        return mz_err_set(err, MZ_ESIG, "agreement %s: the provider signature does not verify",
                          json_string_value(json_object_get(a, "agreement_id")));
    return mz_sign_object(a, MZ_AGREEMENT_SIG_DOMAIN, mz_agreement_consumer_unsigned,
                          "consumer_signature", consumer, err);
}

const char *mz_agreement_refusal(const json_t *a, const char *provider_key_hex,
                                 const char *caller_id, const char *resource_id,
                                 const char *method, int64_t now_ms, mz_err *err)
{
    const char *id, *provider, *consumer;
    const json_t *methods, *v;
    int64_t nb = 0, exp = 0;
    bool found = false;
    size_t i;

    if (a == NULL || json_is_null(a)) {
        mz_err_set(err, MZ_ELIMIT, "the resource requires an agreement and the call has none");
        return MZ_AGR_MISSING;
    }
    /* A malformed document proves nothing, so it is refused as a bad
     * signature: the reasons stay the eight documented ones. */
    if (mz_agreement_validate(a, true, err) != MZ_OK)
        return MZ_AGR_BAD_SIGNATURE;
    id = json_string_value(json_object_get(a, "agreement_id"));
    provider = json_string_value(json_object_get(a, "provider"));
    consumer = json_string_value(json_object_get(a, "consumer"));
    if (!mz_id_valid(provider_key_hex) || strcmp(provider, provider_key_hex) != 0) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: provider %.12s... is not the resource's "
                   "owner key %.12s...", id, provider,
                   provider_key_hex ? provider_key_hex : "(none)");
        return MZ_AGR_BAD_SIGNATURE;
    }
    if (mz_agreement_verify_provider(a, NULL) != MZ_OK) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: the provider signature does not verify", id);
        return MZ_AGR_BAD_SIGNATURE;
    }
    if (mz_agreement_verify_consumer(a, NULL) != MZ_OK) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: the consumer signature does not verify", id);
        return MZ_AGR_BAD_SIGNATURE;
    }
    if (caller_id == NULL || strcmp(consumer, caller_id) != 0) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: made for consumer %.12s..., not the caller "
                   "%.12s...", id, consumer, caller_id ? caller_id : "(unknown)");
        return MZ_AGR_WRONG_CONSUMER;
    }
    if (resource_id == NULL
        || strcmp(json_string_value(json_object_get(a, "resource_id")), resource_id) != 0) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: covers resource '%.128s', not '%.128s'", id,
                   json_string_value(json_object_get(a, "resource_id")),
                   resource_id ? resource_id : "");
        return MZ_AGR_WRONG_RESOURCE;
    }
    methods = json_object_get(a, "methods");
    json_array_foreach(methods, i, v) {
        if (method != NULL && strcmp(json_string_value(v), method) == 0)
            found = true;
    }
    if (!found) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: method '%.128s' is not among its methods", id,
                   method ? method : "");
        return MZ_AGR_METHOD_NOT_ALLOWED;
    }
    (void)mz_time_parse(json_string_value(json_object_get(a, "not_before")), &nb);
    (void)mz_time_parse(json_string_value(json_object_get(a, "expires_at")), &exp);
    if (now_ms < nb) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: not valid before %s", id,
                   json_string_value(json_object_get(a, "not_before")));
        return MZ_AGR_NOT_YET_VALID;
    }
    if (now_ms >= exp) {
        mz_err_set(err, MZ_ELIMIT, "agreement %s: expired at %s", id,
                   json_string_value(json_object_get(a, "expires_at")));
        return MZ_AGR_EXPIRED;
    }
    return NULL;
}

/* ---- usage store -------------------------------------------------------- */

struct mz_agreements {
    sqlite3 *db;                /* the connection (agreements.db or :memory:); a
                                   file's is NULL until the first use */
    sqlite3_stmt *begin;        /* BEGIN IMMEDIATE: take the write lock before reading */
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *get;          /* the counters of (provider, agreement_id) */
    sqlite3_stmt *put;          /* insert or update them */
    sqlite3_stmt *by_id;        /* every provider's counters of one agreement_id */
    char *path;                 /* file name for messages */
    bool memory;                /* :memory: (the counters live in the connection) */
};

/* One entry per schema version: the SQL that takes version i to i+1. */
static const char *const s_migrations[] = {
    "CREATE TABLE agreement_usage ("
    " provider     TEXT NOT NULL,"      /* issuing owner key, 64 hex */
    " agreement_id TEXT NOT NULL,"
    " consumer     TEXT NOT NULL,"      /* node id the uses were made by */
    " total        INTEGER NOT NULL,"   /* uses in all */
    " day          INTEGER NOT NULL,"   /* UTC day (days since 1970-01-01) of 'today' */
    " today        INTEGER NOT NULL,"   /* uses on 'day' */
    " last_used_ms INTEGER NOT NULL,"
    " PRIMARY KEY (provider, agreement_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX agreement_usage_by_id ON agreement_usage (agreement_id);",
};

static mz_status s_db_err(mz_agreements *a, int rc, const char *what, mz_err *err)
{
    return mz_err_set(err, rc == SQLITE_NOMEM ? MZ_ENOMEM : MZ_EIO, "agreements %s: %s: %s",
                      a->path, what, a->db ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
}

/* Steps a statement that returns no rows, then resets it. */
static int s_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void s_rollback(mz_agreements *a)
{
    if (sqlite3_get_autocommit(a->db) == 0)
        (void)s_run(a->rollback);
}

static mz_status s_migrate(mz_agreements *a, mz_err *err)
{
    char sql[160];
    sqlite3_stmt *st = NULL;
    int64_t version = 0;
    mz_status rc = MZ_OK;
    int src;

    if ((src = sqlite3_exec(a->db, "BEGIN IMMEDIATE;"
                            "CREATE TABLE IF NOT EXISTS schema_version ("
                            " component TEXT PRIMARY KEY, version INTEGER NOT NULL);",
                            NULL, NULL, NULL)) != SQLITE_OK)
        return s_db_err(a, src, "creating the schema table", err);
    src = sqlite3_prepare_v2(a->db, "SELECT version FROM schema_version WHERE component = "
                             "'agreements'", -1, &st, NULL);
    if (src != SQLITE_OK) {
        rc = s_db_err(a, src, "reading the schema version", err);
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    else if (src != SQLITE_DONE) {
        rc = s_db_err(a, src, "reading the schema version", err);
        goto done;
    }
    if (version > MZ_AGREEMENTS_SCHEMA) {
        rc = mz_err_set(err, MZ_EIO, "agreements %s: schema version %lld is newer than this "
                        "meshzero's (%d)", a->path, (long long)version, MZ_AGREEMENTS_SCHEMA);
        goto done;
    }
    for (int64_t v = version; v < MZ_AGREEMENTS_SCHEMA; v++) {
        if ((src = sqlite3_exec(a->db, s_migrations[v], NULL, NULL, NULL)) != SQLITE_OK) {
            rc = s_db_err(a, src, "creating the tables", err);
            goto done;
        }
    }
    snprintf(sql, sizeof sql, "INSERT INTO schema_version (component, version) VALUES "
             "('agreements', %d) ON CONFLICT (component) DO UPDATE SET version = %d",
             MZ_AGREEMENTS_SCHEMA, MZ_AGREEMENTS_SCHEMA);
    if (version < MZ_AGREEMENTS_SCHEMA
        && (src = sqlite3_exec(a->db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
        rc = s_db_err(a, src, "recording the schema version", err);
        goto done;
    }
    if ((src = sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        rc = s_db_err(a, src, "committing the schema", err);
done:
    sqlite3_finalize(st);
    if (rc != MZ_OK && sqlite3_get_autocommit(a->db) == 0)
        (void)sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static mz_status s_prepare(mz_agreements *a, const char *sql, sqlite3_stmt **st, mz_err *err)
{
    int src = sqlite3_prepare_v3(a->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

    return src == SQLITE_OK ? MZ_OK : s_db_err(a, src, "preparing a statement", err);
}

/* Finalises the statements and closes the connection; the handle stays. */
static void s_disconnect(mz_agreements *a)
{
    sqlite3_finalize(a->begin);
    sqlite3_finalize(a->commit);
    sqlite3_finalize(a->rollback);
    sqlite3_finalize(a->get);
    sqlite3_finalize(a->put);
    sqlite3_finalize(a->by_id);
    sqlite3_close_v2(a->db);          /* NULL-safe; closes a handle open failed on too */
    a->begin = a->commit = a->rollback = a->get = a->put = a->by_id = NULL;
    a->db = NULL;
}

/* Opens the connection, brings the schema up to date and prepares the
 * statements; on failure nothing stays open. */
static mz_status s_connect(mz_agreements *a, mz_err *err)
{
    mz_status rc;
    int src;

    src = sqlite3_open_v2(a->path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (src != SQLITE_OK) {
        rc = s_db_err(a, src, "opening", err);
        goto fail;
    }
    sqlite3_busy_timeout(a->db, MZ_AGREEMENTS_BUSY_MS);
    /* WAL: a commit is one append and fsync, and readers never block the
     * writer. synchronous=FULL syncs the WAL at every commit, so a counted
     * call survives a power cut, not only a crash (NORMAL would not). */
    if ((src = sqlite3_exec(a->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                            NULL, NULL, NULL)) != SQLITE_OK) {
        rc = s_db_err(a, src, "setting WAL mode", err);
        goto fail;
    }
    if ((rc = s_migrate(a, err)) != MZ_OK)
        goto fail;
    if ((rc = s_prepare(a, "BEGIN IMMEDIATE", &a->begin, err)) != MZ_OK
        || (rc = s_prepare(a, "COMMIT", &a->commit, err)) != MZ_OK
        || (rc = s_prepare(a, "ROLLBACK", &a->rollback, err)) != MZ_OK
        || (rc = s_prepare(a, "SELECT total, day, today FROM agreement_usage "
                           "WHERE provider = ?1 AND agreement_id = ?2", &a->get, err)) != MZ_OK
        || (rc = s_prepare(a, "INSERT INTO agreement_usage (provider, agreement_id, consumer, "
                           "total, day, today, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                           "ON CONFLICT (provider, agreement_id) DO UPDATE SET "
                           "consumer = excluded.consumer, total = excluded.total, "
                           "day = excluded.day, today = excluded.today, "
                           "last_used_ms = excluded.last_used_ms", &a->put, err)) != MZ_OK
        || (rc = s_prepare(a, "SELECT provider, consumer, total, day, today, last_used_ms "
                           "FROM agreement_usage WHERE agreement_id = ?1 ORDER BY provider",
                           &a->by_id, err)) != MZ_OK)
        goto fail;
    return MZ_OK;
fail:
    s_disconnect(a);
    return rc;
}

/* The connection, opened on first use. */
static mz_status s_ready(mz_agreements *a, mz_err *err)
{
    return a->db != NULL ? MZ_OK : s_connect(a, err);
}

mz_status mz_agreements_open(const char *data_dir, mz_agreements **out, mz_err *err)
{
    mz_agreements *a = calloc(1, sizeof *a);
    size_t len;
    mz_status rc;

    *out = NULL;
    if (a == NULL)
        return mz_err_set(err, MZ_ENOMEM, "agreements: allocating the store");
    if (data_dir == NULL) {
        a->path = strdup(":memory:");
        a->memory = true;
    } else {
        len = strlen(data_dir) + sizeof "/" MZ_AGREEMENTS_FILE;
        if ((a->path = malloc(len)) != NULL)
            snprintf(a->path, len, "%s/%s", data_dir, MZ_AGREEMENTS_FILE);
        /* The node made the directory for its key already; a library user
         * may not have, and one level is all we make (like the key's). */
        if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
            rc = mz_err_set(err, MZ_EIO, "agreements: creating directory %s: %s", data_dir,
                            strerror(errno));
            goto fail;
        }
    }
    if (a->path == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "agreements: allocating the path");
        goto fail;
    }
    /* Opened now so that an unusable file stops the node at start; a file's
     * connection is then closed until the first agreement is checked or
     * asked about: most nodes never see one, and an open connection keeps
     * ~100 KiB of SQLite caches and the WAL index mapped (PERFORMANCE.md). */
    if ((rc = s_connect(a, err)) != MZ_OK)
        goto fail;
    if (!a->memory)
        s_disconnect(a);
    *out = a;
    return MZ_OK;
fail:
    mz_agreements_free(a);
    return rc;
}

void mz_agreements_free(mz_agreements *a)
{
    if (a == NULL)
        return;
    s_disconnect(a);
    free(a->path);
    free(a);
}

/* The UTC day of ms: days since 1970-01-01, rounding down before it. */
static int64_t s_day(int64_t ms)
{
    return ms >= 0 ? ms / MZ_DAY_MS : -((-ms + MZ_DAY_MS - 1) / MZ_DAY_MS);
}

static void s_day_text(int64_t day, char buf[16])
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;

    /* Days outside what gmtime handles never come from a real clock. */
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, 16, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, 16, "%s", "0000-00-00");
}

static int64_t s_limit(const json_t *a, const char *key)
{
    const json_t *v = json_object_get(json_object_get(a, "limits"), key);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* The counting transaction. *over is set (and nothing written) when a
 * limit is reached. */
static mz_status s_count(mz_agreements *a, const json_t *agr, int64_t now_ms, bool *over,
                         mz_err *err)
{
    const char *id = json_string_value(json_object_get(agr, "agreement_id"));
    const char *provider = json_string_value(json_object_get(agr, "provider"));
    const char *consumer = json_string_value(json_object_get(agr, "consumer"));
    int64_t per_day = s_limit(agr, "requests_per_day"), all = s_limit(agr, "requests_total");
    int64_t total = 0, today = 0, day = s_day(now_ms), cur = day;
    char dtext[16];
    int src;

    *over = false;
    /* IMMEDIATE takes the write lock before the read, so no other
     * connection can count between our read and our write. */
    if ((src = s_run(a->begin)) != SQLITE_OK)
        return s_db_err(a, src, "starting a transaction", err);
    sqlite3_bind_text(a->get, 1, provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(a->get, 2, id, -1, SQLITE_STATIC);
    src = sqlite3_step(a->get);
    if (src == SQLITE_ROW) {
        total = sqlite3_column_int64(a->get, 0);
        day = sqlite3_column_int64(a->get, 1);
        today = sqlite3_column_int64(a->get, 2);
    }
    sqlite3_reset(a->get);
    sqlite3_clear_bindings(a->get);
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        s_rollback(a);
        return s_db_err(a, src, "reading usage", err);
    }
    /* A new UTC day starts the daily count again. When the clock went back
     * across midnight, keep counting against the later day: a clock change
     * must never grant more calls. */
    if (cur > day) {
        day = cur;
        today = 0;
    }
    if (all > 0 && total >= all) {
        *over = true;
        s_rollback(a);
        return mz_err_set(err, MZ_ELIMIT, "agreement %s: all %lld requests used", id,
                          (long long)all);
    }
    if (per_day > 0 && today >= per_day) {
        *over = true;
        s_rollback(a);
        s_day_text(day, dtext);
        return mz_err_set(err, MZ_ELIMIT, "agreement %s: all %lld requests of %s (UTC) used",
                          id, (long long)per_day, dtext);
    }
    sqlite3_bind_text(a->put, 1, provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(a->put, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(a->put, 3, consumer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(a->put, 4, total + 1);
    sqlite3_bind_int64(a->put, 5, day);
    sqlite3_bind_int64(a->put, 6, today + 1);
    sqlite3_bind_int64(a->put, 7, now_ms);
    if ((src = s_run(a->put)) != SQLITE_OK) {
        s_rollback(a);
        return s_db_err(a, src, "counting a use", err);
    }
    if ((src = s_run(a->commit)) != SQLITE_OK) {
        s_rollback(a);
        return s_db_err(a, src, "committing a use", err);
    }
    return MZ_OK;
}

mz_status mz_agreements_check(mz_agreements *a, const json_t *agreement,
                              const char *provider_key_hex, const char *caller_id,
                              const char *resource_id, const char *method, int64_t now_ms,
                              const char **reason, mz_err *err)
{
    const char *why;
    bool over = false;
    mz_status rc;

    if (reason != NULL)
        *reason = NULL;
    if (a == NULL)
        return mz_err_set(err, MZ_EINVAL, "agreements: no store");
    why = mz_agreement_refusal(agreement, provider_key_hex, caller_id, resource_id, method,
                               now_ms, err);
    if (why != NULL) {
        if (err != NULL)
            err->code = MZ_ELIMIT;
        if (reason != NULL)
            *reason = why;
        return MZ_ELIMIT;
    }
    if ((rc = s_ready(a, err)) != MZ_OK)
        return rc;
    rc = s_count(a, agreement, now_ms, &over, err);
    if (over && reason != NULL)
        *reason = MZ_AGR_OVER_LIMIT;
    return rc;
}

mz_status mz_agreements_usage_at(mz_agreements *a, const char *agreement_id, int64_t now_ms,
                                 json_t **out, mz_err *err)
{
    int64_t cur = s_day(now_ms), total = 0, today = 0, last = -1;
    json_t *res = NULL, *list = NULL, *row;
    char dtext[16], when[32];
    mz_status rc = MZ_OK;
    int src;

    *out = NULL;
    if (a == NULL)
        return mz_err_set(err, MZ_EINVAL, "agreements: no store");
    if (!s_id_valid(agreement_id))
        return mz_err_set(err, MZ_EINVAL, "agreement_id must be 1-%d characters of "
                          "[A-Za-z0-9._:-]", MZ_AGREEMENT_ID_MAX);
    if ((rc = s_ready(a, err)) != MZ_OK)
        return rc;
    if ((list = json_array()) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "agreements: out of memory");
    sqlite3_bind_text(a->by_id, 1, agreement_id, -1, SQLITE_STATIC);
    while ((src = sqlite3_step(a->by_id)) == SQLITE_ROW) {
        int64_t t = sqlite3_column_int64(a->by_id, 2);
        int64_t day = sqlite3_column_int64(a->by_id, 3);
        int64_t n = day >= cur ? sqlite3_column_int64(a->by_id, 4) : 0;
        int64_t used = sqlite3_column_int64(a->by_id, 5);
        const char *p = (const char *)sqlite3_column_text(a->by_id, 0);
        const char *c = (const char *)sqlite3_column_text(a->by_id, 1);

        mz_time_format(used, when);
        row = json_pack("{s:s,s:s,s:I,s:I,s:s}", "provider", p ? p : "", "consumer",
                        c ? c : "", "total", (json_int_t)t, "today", (json_int_t)n,
                        "last_used", when);
        if (row == NULL || json_array_append_new(list, row) != 0) {
            rc = mz_err_set(err, MZ_ENOMEM, "agreements: out of memory");
            break;
        }
        total += t;
        today += n;
        if (used > last)
            last = used;
    }
    sqlite3_reset(a->by_id);
    sqlite3_clear_bindings(a->by_id);
    if (rc == MZ_OK && src != SQLITE_DONE)
        rc = s_db_err(a, src, "reading usage", err);
    if (rc != MZ_OK) {
        json_decref(list);
        return rc;
    }
    s_day_text(cur, dtext);
    mz_time_format(last, when);
    res = json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "agreement_id", agreement_id, "day", dtext,
                    "total", (json_int_t)total, "today", (json_int_t)today, "last_used",
                    last >= 0 ? json_string(when) : json_null(), "providers", list);
    if (res == NULL)
        return mz_err_set(err, MZ_ENOMEM, "agreements: out of memory");
    *out = res;
    return MZ_OK;
}

mz_status mz_agreements_usage(mz_agreements *a, const char *agreement_id, json_t **out,
                              mz_err *err)
{
    return mz_agreements_usage_at(a, agreement_id, mz_now_ms(), out, err);
}

mz_status mz__agreements_api_usage(mz_agreements *a, const json_t *params, json_t **result,
                                   mz_err *err)
{
    const char *id = json_string_value(json_object_get(params, "agreement_id"));

    if (a == NULL)
        return mz_err_set(err, MZ_ESTATE, "agreement usage: this node keeps no agreement store");
    if (id == NULL)
        return mz_err_set(err, MZ_EINVAL, "params.agreement_id must be a string");
    return mz_agreements_usage(a, id, result, err);
}
