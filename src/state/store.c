/* The embedded store: DATA/state.db in SQLite. Contract: src/state/store.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meshzero/msg.h"
#include "state/store.h"

/* The cached statements, one per operation; s_sql holds their text. */
enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_PUT_RECORD,
    S_DEL_RECORD,
    S_DEL_NODE,
    S_LOAD_RECORDS,
    S_PUT_TOMB,
    S_LOAD_TOMBS,
    S_EXPIRE_TOMBS,
    S_PUT_PEER,
    S_DEL_PEER,
    S_LOAD_PEERS,
    S_COUNT
};

static const char *const s_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_PUT_RECORD] =
        "INSERT INTO records (resource_id, node, owner_key, version, is_local, updated_ms, json)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (resource_id) DO UPDATE SET"
        " node = excluded.node, owner_key = excluded.owner_key, version = excluded.version,"
        " is_local = excluded.is_local, updated_ms = excluded.updated_ms, json = excluded.json",
    [S_DEL_RECORD] = "DELETE FROM records WHERE resource_id = ?1",
    [S_DEL_NODE] = "DELETE FROM records WHERE node = ?1 AND is_local = 0",
    [S_LOAD_RECORDS] = "SELECT resource_id, node, owner_key, version, is_local, json"
                       " FROM records ORDER BY resource_id",
    [S_PUT_TOMB] = "INSERT INTO tombstones (resource_id, owner_key, version, until_ms)"
                   " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (resource_id) DO UPDATE SET"
                   " owner_key = excluded.owner_key, version = excluded.version,"
                   " until_ms = excluded.until_ms",
    [S_LOAD_TOMBS] = "SELECT resource_id, owner_key, version, until_ms FROM tombstones"
                     " ORDER BY resource_id",
    [S_EXPIRE_TOMBS] = "DELETE FROM tombstones WHERE until_ms <= ?1",
    [S_PUT_PEER] = "INSERT INTO peers (url, node_id, last_seen_ms, failures, is_static)"
                   " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (url) DO UPDATE SET"
                   " node_id = excluded.node_id, last_seen_ms = excluded.last_seen_ms,"
                   " failures = excluded.failures, is_static = excluded.is_static",
    [S_DEL_PEER] = "DELETE FROM peers WHERE url = ?1",
    [S_LOAD_PEERS] = "SELECT url, node_id, last_seen_ms, failures, is_static FROM peers"
                     " ORDER BY url",
};

/* Migration i takes the schema from version i to i + 1; there are
 * MZ_STORE_SCHEMA of them and they run in order inside one transaction.
 * Never edit a released entry: add one. Version 1 is the first layout;
 * version 2 adds the updated_ms column, the peers table and the indexes
 * (and keeps the upgrade path in use, and tested, from the start). */
static const char *const s_migrations[MZ_STORE_SCHEMA] = {
    /* 0 -> 1 */
    "CREATE TABLE meta ("
    " key   TEXT PRIMARY KEY NOT NULL,"
    " value NOT NULL);"
    "CREATE TABLE records ("
    " resource_id TEXT PRIMARY KEY NOT NULL,"
    " node        TEXT NOT NULL,"            /* hosting node id */
    " owner_key   TEXT NOT NULL,"
    " version     INTEGER NOT NULL,"
    " is_local    INTEGER NOT NULL,"         /* 1: hosted by this node */
    " json        TEXT NOT NULL);"           /* PROTOCOL.md §7 without location */
    "CREATE TABLE tombstones ("
    " resource_id TEXT PRIMARY KEY NOT NULL,"
    " owner_key   TEXT NOT NULL,"
    " version     INTEGER NOT NULL,"
    " until_ms    INTEGER NOT NULL);",
    /* 1 -> 2 */
    "ALTER TABLE records ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX records_remote_by_node ON records (node) WHERE is_local = 0;"
    "CREATE INDEX tombstones_by_until ON tombstones (until_ms);"
    "CREATE TABLE peers ("
    " url          TEXT PRIMARY KEY NOT NULL,"
    " node_id      TEXT NOT NULL DEFAULT '',"  /* '' until the peer said hello */
    " last_seen_ms INTEGER NOT NULL,"
    " failures     INTEGER NOT NULL,"          /* consecutive failed dials */
    " is_static    INTEGER NOT NULL);",        /* 1: from the command line */
};

struct mz_store {
    sqlite3 *db;                    /* the connection; NULL until opened */
    sqlite3_stmt *stmt[S_COUNT];    /* prepared once, reset after each use */
    char *path;                     /* DATA/state.db or ":memory:", for messages */
    size_t bad_rows;                /* rows the last load_records skipped */
    bool in_batch;                  /* between mz_store_begin and commit/rollback */
    bool batch_failed;              /* a write in the batch failed; it was rolled back */
    bool broken;                    /* a ROLLBACK failed: the transaction state is unknown */
    char batch_err[256];            /* that write's message */
};

/* ---- errors -------------------------------------------------------------- */

/* SQLite's name of the extended result codes that say where an I/O failure
 * happened; NULL for others. */
static const char *s_ext_name(int src)
{
    switch (src) {
    case SQLITE_IOERR_READ: return "SQLITE_IOERR_READ";
    case SQLITE_IOERR_SHORT_READ: return "SQLITE_IOERR_SHORT_READ";
    case SQLITE_IOERR_WRITE: return "SQLITE_IOERR_WRITE";
    case SQLITE_IOERR_FSYNC: return "SQLITE_IOERR_FSYNC";
    case SQLITE_IOERR_DIR_FSYNC: return "SQLITE_IOERR_DIR_FSYNC";
    case SQLITE_IOERR_TRUNCATE: return "SQLITE_IOERR_TRUNCATE";
    case SQLITE_IOERR_SHMOPEN: return "SQLITE_IOERR_SHMOPEN";
    case SQLITE_IOERR_SHMSIZE: return "SQLITE_IOERR_SHMSIZE";
    case SQLITE_IOERR_SHMMAP: return "SQLITE_IOERR_SHMMAP";
    case SQLITE_BUSY_TIMEOUT: return "SQLITE_BUSY_TIMEOUT";
    case SQLITE_CANTOPEN_ISDIR: return "SQLITE_CANTOPEN_ISDIR";
    case SQLITE_READONLY_DIRECTORY: return "SQLITE_READONLY_DIRECTORY";
    case SQLITE_READONLY_CANTINIT: return "SQLITE_READONLY_CANTINIT";
    case SQLITE_READONLY_RECOVERY: return "SQLITE_READONLY_RECOVERY";
    default: return NULL;
    }
}

/* SQLite's name of a primary result code. */
static const char *s_code_name(int src)
{
    switch (src & 0xff) {
    case SQLITE_ERROR: return "SQLITE_ERROR";
    case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ABORT: return "SQLITE_ABORT";
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_NOMEM: return "SQLITE_NOMEM";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
    case SQLITE_MISUSE: return "SQLITE_MISUSE";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    default: return "SQLITE";
    }
}

/* Fills err (may be NULL) from SQLite's result src: "store PATH: WHAT:
 * sqlite's message (SQLITE_CODE[, extended N][, errno E: text])". The
 * message is taken from the connection, so call this before resetting the
 * statement that failed. MZ_ENOMEM for SQLITE_NOMEM, MZ_EIO otherwise. */
static mz_status s_fail(const mz_store *st, int src, mz_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static mz_status s_fail(const mz_store *st, int src, mz_err *err, const char *fmt, ...)
{
    char what[128], ext[32] = "", sys[96] = "";
    const char *ext_name = s_ext_name(src);
    const char *msg = st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(src);
    int primary = src & 0xff, eno = st->db != NULL ? sqlite3_system_errno(st->db) : 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (src != primary && ext_name == NULL)
        snprintf(ext, sizeof ext, ", extended %d", src);
    /* The OS error says why an open or a write failed (EACCES, ENOSPC,
     * EROFS); other results have none, or a stale one. */
    if (eno != 0 && (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN
                     || primary == SQLITE_FULL || primary == SQLITE_READONLY
                     || primary == SQLITE_PERM))
        snprintf(sys, sizeof sys, ", errno %d: %s", eno, strerror(eno));
    return mz_err_set(err, primary == SQLITE_NOMEM ? MZ_ENOMEM : MZ_EIO,
                      "store %s: %s: %s (%s%s%s)", st->path, what, msg,
                      ext_name != NULL ? ext_name : s_code_name(src), ext, sys);
}

/* ---- opening -------------------------------------------------------------- */

/* Runs sql (no parameters) and copies the first column of its first row
 * into out (may be NULL; "" when there is no row). Other rows are stepped
 * through, so a PRAGMA finishes. */
static int s_query_text(sqlite3 *db, const char *sql, char *out, size_t outsz)
{
    sqlite3_stmt *s = NULL;
    bool first = true;
    int src;

    if (out != NULL && outsz > 0)
        out[0] = '\0';
    if ((src = sqlite3_prepare_v2(db, sql, -1, &s, NULL)) != SQLITE_OK)
        return src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);

        if (first && out != NULL && outsz > 0 && t != NULL)
            snprintf(out, outsz, "%s", (const char *)t);
        first = false;
    }
    sqlite3_finalize(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Runs sql (no parameters) expecting one integer. */
static int s_query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int src;

    *out = 0;
    if ((src = sqlite3_prepare_v2(db, sql, -1, &s, NULL)) != SQLITE_OK)
        return src;
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    src = (src == SQLITE_ROW || src == SQLITE_DONE) ? SQLITE_OK : src;
    sqlite3_finalize(s);
    return src;
}

/* Sets meta.key to value. */
static int s_set_meta(sqlite3 *db, const char *key, int64_t value)
{
    sqlite3_stmt *s = NULL;
    int src;

    src = sqlite3_prepare_v2(db, "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             -1, &s, NULL);
    if (src != SQLITE_OK)
        return src;
    if ((src = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_int64(s, 2, value)) == SQLITE_OK)
        src = sqlite3_step(s);
    sqlite3_finalize(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Reads meta.schema_version into *version: 0 for an empty database. A
 * database with tables but no meta, or a meta without a usable
 * schema_version, is not ours: refused. */
static mz_status s_schema_version(mz_store *st, int64_t *version, mz_err *err)
{
    sqlite3_stmt *s = NULL;
    int64_t n = 0;
    mz_status rc = MZ_OK;
    int src;

    *version = 0;
    src = s_query_int(st->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                      " AND name = 'meta'", &n);
    if (src != SQLITE_OK)
        return s_fail(st, src, err, "reading the schema");
    if (n == 0) {
        if ((src = s_query_int(st->db, "SELECT count(*) FROM sqlite_master", &n)) != SQLITE_OK)
            return s_fail(st, src, err, "reading the schema");
        if (n > 0)
            return mz_err_set(err, MZ_EIO, "store %s: not a meshzero state database (it has "
                              "tables but no meta table); move it away or use another data "
                              "directory", st->path);
        return MZ_OK;
    }
    src = sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'schema_version'",
                             -1, &s, NULL);
    if (src != SQLITE_OK)
        return s_fail(st, src, err, "reading the schema version");
    src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        rc = mz_err_set(err, MZ_EIO, "store %s: meta has no schema_version; not a meshzero "
                        "state database, or a damaged one", st->path);
    } else if (src != SQLITE_ROW) {
        rc = s_fail(st, src, err, "reading the schema version");
    } else if (sqlite3_column_type(s, 0) == SQLITE_INTEGER) {
        *version = sqlite3_column_int64(s, 0);
    } else {
        /* Accept a number written as text (a hand edit), nothing else. */
        const char *t = (const char *)sqlite3_column_text(s, 0);
        char *end = NULL;

        errno = 0;
        *version = t != NULL ? strtoll(t, &end, 10) : 0;
        if (t == NULL || end == t || *end != '\0' || errno != 0)
            rc = mz_err_set(err, MZ_EIO, "store %s: schema_version '%.32s' is not a number",
                            st->path, t != NULL ? t : "");
    }
    sqlite3_finalize(s);
    if (rc == MZ_OK && *version < 1)
        rc = mz_err_set(err, MZ_EIO, "store %s: schema_version %lld is invalid", st->path,
                        (long long)*version);
    return rc;
}

/* Brings the schema to MZ_STORE_SCHEMA in one transaction and records the
 * time of this open, proving the file writable. */
static mz_status s_migrate(mz_store *st, mz_err *err)
{
    int64_t version = 0;
    mz_status rc;
    int src;

    if ((src = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        return s_fail(st, src, err, "starting the schema transaction");
    if ((rc = s_schema_version(st, &version, err)) != MZ_OK)
        goto fail;
    if (version > MZ_STORE_SCHEMA) {
        rc = mz_err_set(err, MZ_EIO, "store %s: schema version %lld is newer than this "
                        "meshzero knows (%d): written by a later release; refusing to open it",
                        st->path, (long long)version, MZ_STORE_SCHEMA);
        goto fail;
    }
    for (int64_t v = version; v < MZ_STORE_SCHEMA; v++) {
        if ((src = sqlite3_exec(st->db, s_migrations[v], NULL, NULL, NULL)) != SQLITE_OK) {
            rc = s_fail(st, src, err, "migrating the schema from version %lld to %lld",
                        (long long)v, (long long)v + 1);
            goto fail;
        }
    }
    if (version < MZ_STORE_SCHEMA
        && (src = s_set_meta(st->db, "schema_version", MZ_STORE_SCHEMA)) != SQLITE_OK) {
        rc = s_fail(st, src, err, "recording the schema version");
        goto fail;
    }
    if ((src = s_set_meta(st->db, "last_open_ms", mz_now_ms())) != SQLITE_OK) {
        rc = s_fail(st, src, err, "writing");
        goto fail;
    }
    if ((src = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
        rc = s_fail(st, src, err, "committing the schema");
        goto fail;
    }
    return MZ_OK;
fail:
    if (sqlite3_get_autocommit(st->db) == 0)
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* quick_check reads every page (without cross-checking indexes, which
 * integrity_check would): corruption is found at start, with the file's
 * name, rather than as a failed write later. */
static mz_status s_check(mz_store *st, mz_err *err)
{
    char result[96];
    int src = s_query_text(st->db, "PRAGMA quick_check", result, sizeof result);

    if (src != SQLITE_OK)
        return s_fail(st, src, err, "checking the file");
    if (strcmp(result, "ok") != 0) {
        /* The report is lines; one is enough to say what is wrong. */
        for (char *c = result; *c != '\0'; c++)
            if (*c == '\n')
                *c = ' ';
        return mz_err_set(err, MZ_EIO, "store %s: the database is corrupt (quick_check: %s); "
                          "restore it from a backup or move it away", st->path, result);
    }
    return MZ_OK;
}

/* The file DATA/state.db (":memory:" without a directory), opened for
 * writing: a store that cannot be written must not start. */
static mz_status s_open_file(mz_store *st, const char *data_dir, mz_err *err)
{
    bool memory = data_dir == NULL;
    size_t len;
    int src;

    if (memory) {
        st->path = strdup(":memory:");
    } else {
        len = strlen(data_dir) + sizeof "/" MZ_STORE_FILE;
        if ((st->path = malloc(len)) != NULL)
            snprintf(st->path, len, "%s/%s", data_dir, MZ_STORE_FILE);
    }
    if (st->path == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: allocating the path");
    /* The node usually made the directory for its key already; a library
     * user may not have. One level only, like the key's. */
    if (!memory && mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return mz_err_set(err, MZ_EIO, "store %s: creating the directory %s: %s", st->path,
                          data_dir, strerror(errno));
    src = sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (st->db == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store %s: allocating the connection", st->path);
    sqlite3_extended_result_codes(st->db, 1);
    if (src != SQLITE_OK) {
        struct stat sb;

        /* SQLite retries a failed create read-only and reports that
         * attempt's ENOENT; say why the create failed instead. */
        if (!memory && stat(st->path, &sb) != 0 && errno == ENOENT
            && access(data_dir, W_OK | X_OK) != 0)
            return mz_err_set(err, MZ_EIO, "store %s: cannot create the file: directory %s: %s",
                              st->path, data_dir, strerror(errno));
        return s_fail(st, src, err, "opening");
    }
    /* READWRITE falls back to read-only when the OS refuses writing. */
    if (sqlite3_db_readonly(st->db, "main") == 1)
        return mz_err_set(err, MZ_EIO, "store %s: opened read-only: cannot write it (%s)",
                          st->path, access(st->path, W_OK) != 0 ? strerror(errno)
                                                                : "read-only");
    return MZ_OK;
}

/* WAL: a commit is an append and one fsync, and readers never block the
 * writer. synchronous=FULL syncs the WAL at every commit, so an
 * acknowledged write survives a power cut, not only a crash (NORMAL would
 * not). */
static mz_status s_set_journal(mz_store *st, bool memory, mz_err *err)
{
    char mode[16];
    int src;

    if ((src = s_query_text(st->db, "PRAGMA journal_mode=WAL", mode, sizeof mode)) != SQLITE_OK)
        return s_fail(st, src, err, "setting journal_mode=WAL");
    if (strcmp(mode, memory ? "memory" : "wal") != 0)
        return mz_err_set(err, MZ_EIO, "store %s: journal_mode is '%s', not WAL", st->path, mode);
    if ((src = sqlite3_exec(st->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON",
                            NULL, NULL, NULL)) != SQLITE_OK)
        return s_fail(st, src, err, "setting synchronous=FULL");
    return MZ_OK;
}

mz_status mz_store_open(const char *data_dir, mz_store **out, mz_err *err)
{
    mz_store *st;
    mz_status rc;
    int64_t version;
    int src;

    if (out == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: no place for the handle");
    *out = NULL;
    if ((st = calloc(1, sizeof *st)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: allocating the handle");
    if ((rc = s_open_file(st, data_dir, err)) != MZ_OK)
        goto fail;
    sqlite3_busy_timeout(st->db, MZ_STORE_BUSY_MS);
    /* Refuse another program's database before changing anything in it
     * (switching to WAL rewrites its header). */
    if ((rc = s_check(st, err)) != MZ_OK || (rc = s_schema_version(st, &version, err)) != MZ_OK ||
        (rc = s_set_journal(st, data_dir == NULL, err)) != MZ_OK ||
        (rc = s_migrate(st, err)) != MZ_OK)
        goto fail;
    for (int i = 0; i < S_COUNT; i++) {
        src = sqlite3_prepare_v3(st->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                 NULL);
        if (src != SQLITE_OK) {
            rc = s_fail(st, src, err, "preparing statement %d", i);
            goto fail;
        }
    }
    *out = st;
    return MZ_OK;
fail:
    mz_store_free(st);
    return rc;
}

void mz_store_free(mz_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    /* Closing rolls back an open batch; as the last connection it also
     * checkpoints the WAL into the file and removes it. */
    sqlite3_close_v2(st->db);
    free(st->path);
    free(st);
}

const char *mz_store_path(const mz_store *st)
{
    return st != NULL ? st->path : NULL;
}

/* ---- writing ---------------------------------------------------------------- */

/* Refuses writes once a batch has failed: they would run outside any
 * transaction, each committed alone, while the caller believes them part of
 * a batch that will be all or nothing. */
static mz_status s_writable(const mz_store *st, mz_err *err)
{
    if (st->broken)
        return mz_err_set(err, MZ_EIO, "store %s: a failed rollback left a transaction open; "
                          "nothing more can be written safely: reopen the store", st->path);
    if (st->batch_failed)
        return mz_err_set(err, MZ_ESTATE, "store %s: a write in this batch failed and the "
                          "batch was rolled back; end it with mz_store_commit or "
                          "mz_store_rollback first", st->path);
    return MZ_OK;
}

/* Rolls back the open transaction, if any. Returns SQLite's result. A
 * transaction still open after that would swallow every later write (never
 * committed), so the store is then marked broken and refuses writes. */
static int s_rollback(mz_store *st)
{
    int src = SQLITE_OK;

    if (sqlite3_get_autocommit(st->db) == 0) {
        src = sqlite3_step(st->stmt[S_ROLLBACK]);
        sqlite3_reset(st->stmt[S_ROLLBACK]);
        src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    if (sqlite3_get_autocommit(st->db) == 0)
        st->broken = true;
    return src;
}

/* After a failed write inside a batch: roll the whole batch back (SQLite
 * may have undone only the statement, or everything, depending on the
 * error) and remember why, for mz_store_commit. */
static void s_batch_fail(mz_store *st, const char *msg)
{
    if (!st->in_batch || st->batch_failed)
        return;
    (void)s_rollback(st);
    st->batch_failed = true;
    snprintf(st->batch_err, sizeof st->batch_err, "%s", msg);
}

/* Steps a bound write statement to completion and resets it. bind_src is
 * the first failing bind's result (SQLITE_OK when all bound). what names
 * the write in the error message. */
static mz_status s_run_write(mz_store *st, int idx, int bind_src, mz_err *err,
                             const char *what, const char *subject)
{
    sqlite3_stmt *s = st->stmt[idx];
    mz_err local;
    mz_err *e = err != NULL ? err : &local;
    mz_status rc = MZ_OK;
    int src = bind_src == SQLITE_OK ? sqlite3_step(s) : bind_src;

    if (src != SQLITE_DONE && src != SQLITE_OK)
        rc = s_fail(st, src, e, "%s%s%.64s", what, subject[0] != '\0' ? " " : "", subject);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != MZ_OK)
        s_batch_fail(st, e->msg);
    return rc;
}

static bool s_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

mz_status mz_store_put_record(mz_store *st, const json_t *rec, bool local, mz_err *err)
{
    sqlite3_stmt *s;
    json_t *copy;
    const char *rid, *node, *owner_key;
    char *text;
    json_int_t version;
    mz_status rc;
    int src;

    if (st == NULL || rec == NULL || !json_is_object(rec))
        return mz_err_set(err, MZ_EINVAL, "store: put_record needs a store and a record object");
    rid = json_string_value(json_object_get(rec, "resource_id"));
    node = json_string_value(json_object_get(rec, "node"));
    owner_key = json_string_value(json_object_get(rec, "owner_key"));
    if (s_empty(rid))
        return mz_err_set(err, MZ_EINVAL, "store: record: 'resource_id' must be a non-empty "
                          "string");
    if (node == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: record %.64s: 'node' must be a string", rid);
    if (owner_key == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: record %.64s: 'owner_key' must be a string",
                          rid);
    if (!json_is_integer(json_object_get(rec, "version")))
        return mz_err_set(err, MZ_EINVAL, "store: record %.64s: 'version' must be an integer",
                          rid);
    version = json_integer_value(json_object_get(rec, "version"));
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    /* A shallow copy shares rec's members; dropping "location" from it
     * leaves rec as it was. */
    if ((copy = json_copy((json_t *)rec)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: record %.64s: copying", rid);
    (void)json_object_del(copy, "location");
    text = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    if (text == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: record %.64s: serialising", rid);
    s = st->stmt[S_PUT_RECORD];
    if ((src = sqlite3_bind_text(s, 1, rid, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_text(s, 3, owner_key, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_int64(s, 4, (sqlite3_int64)version)) == SQLITE_OK
        && (src = sqlite3_bind_int(s, 5, local ? 1 : 0)) == SQLITE_OK
        && (src = sqlite3_bind_int64(s, 6, mz_now_ms())) == SQLITE_OK)
        src = sqlite3_bind_text(s, 7, text, -1, SQLITE_STATIC);
    rc = s_run_write(st, S_PUT_RECORD, src, err, "writing record", rid);
    free(text);
    return rc;
}

/* The one-string-key writes: delete_record, delete_node_records, forget_peer. */
static mz_status s_write_key(mz_store *st, int idx, const char *key, const char *what,
                             mz_err *err)
{
    mz_status rc;

    if (st == NULL || s_empty(key))
        return mz_err_set(err, MZ_EINVAL, "store: %s: needs a store and a non-empty key", what);
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    return s_run_write(st, idx, sqlite3_bind_text(st->stmt[idx], 1, key, -1, SQLITE_STATIC),
                       err, what, key);
}

mz_status mz_store_delete_record(mz_store *st, const char *resource_id, mz_err *err)
{
    return s_write_key(st, S_DEL_RECORD, resource_id, "deleting record", err);
}

mz_status mz_store_delete_node_records(mz_store *st, const char *node_id, mz_err *err)
{
    return s_write_key(st, S_DEL_NODE, node_id, "deleting the records of node", err);
}

mz_status mz_store_forget_peer(mz_store *st, const char *url, mz_err *err)
{
    return s_write_key(st, S_DEL_PEER, url, "forgetting peer", err);
}

mz_status mz_store_put_tombstone(mz_store *st, const char *resource_id, const char *owner_key,
                                 int64_t version, int64_t until_ms, mz_err *err)
{
    sqlite3_stmt *s;
    mz_status rc;
    int src;

    if (st == NULL || s_empty(resource_id) || s_empty(owner_key))
        return mz_err_set(err, MZ_EINVAL, "store: put_tombstone needs a store, a resource_id "
                          "and an owner_key");
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    s = st->stmt[S_PUT_TOMB];
    if ((src = sqlite3_bind_text(s, 1, resource_id, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_text(s, 2, owner_key, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_int64(s, 3, version)) == SQLITE_OK)
        src = sqlite3_bind_int64(s, 4, until_ms);
    return s_run_write(st, S_PUT_TOMB, src, err, "writing the tombstone of", resource_id);
}

mz_status mz_store_expire_tombstones(mz_store *st, int64_t now_ms, mz_err *err)
{
    mz_status rc;

    if (st == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: expire_tombstones needs a store");
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    return s_run_write(st, S_EXPIRE_TOMBS, sqlite3_bind_int64(st->stmt[S_EXPIRE_TOMBS], 1, now_ms),
                       err, "expiring tombstones", "");
}

mz_status mz_store_put_peer(mz_store *st, const char *url, const char *node_id,
                            int64_t last_seen_ms, int failures, bool is_static, mz_err *err)
{
    sqlite3_stmt *s;
    mz_status rc;
    int src;

    if (st == NULL || s_empty(url))
        return mz_err_set(err, MZ_EINVAL, "store: put_peer needs a store and a url");
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    s = st->stmt[S_PUT_PEER];
    if ((src = sqlite3_bind_text(s, 1, url, -1, SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_text(s, 2, node_id != NULL ? node_id : "", -1,
                                    SQLITE_STATIC)) == SQLITE_OK
        && (src = sqlite3_bind_int64(s, 3, last_seen_ms)) == SQLITE_OK
        && (src = sqlite3_bind_int(s, 4, failures)) == SQLITE_OK)
        src = sqlite3_bind_int(s, 5, is_static ? 1 : 0);
    return s_run_write(st, S_PUT_PEER, src, err, "writing peer", url);
}

/* ---- reading ------------------------------------------------------------------ */

/* Takes the cached statement idx for a scan; refuses a scan of the same
 * kind from inside its own callback (the statement is mid-step). */
static mz_status s_scan_start(mz_store *st, int idx, const char *what, mz_err *err)
{
    if (sqlite3_stmt_busy(st->stmt[idx]))
        return mz_err_set(err, MZ_ESTATE, "store %s: %s called from its own callback",
                          st->path, what);
    return MZ_OK;
}

/* A column's text; NULL only when SQLite ran out of memory converting it
 * (every text column is NOT NULL). */
static const char *s_col_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    if (t == NULL && sqlite3_column_type(s, col) == SQLITE_NULL)
        return "";
    return (const char *)t;
}

/* The row's record, parsed and checked against its columns; NULL for a bad
 * row. *nomem when SQLite failed to hand over a column. */
static json_t *s_row_record(sqlite3_stmt *s, bool *nomem)
{
    const char *rid = s_col_text(s, 0), *node = s_col_text(s, 1), *key = s_col_text(s, 2);
    const char *text = s_col_text(s, 5);
    int64_t version = sqlite3_column_int64(s, 3);
    json_error_t jerr;
    json_t *rec;

    *nomem = rid == NULL || node == NULL || key == NULL || text == NULL;
    if (*nomem)
        return NULL;
    rec = json_loadb(text, (size_t)sqlite3_column_bytes(s, 5),
                     JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (rec == NULL)
        return NULL;
    if (!json_is_object(rec)
        || !json_is_string(json_object_get(rec, "resource_id"))
        || strcmp(json_string_value(json_object_get(rec, "resource_id")), rid) != 0
        || !json_is_string(json_object_get(rec, "node"))
        || strcmp(json_string_value(json_object_get(rec, "node")), node) != 0
        || !json_is_string(json_object_get(rec, "owner_key"))
        || strcmp(json_string_value(json_object_get(rec, "owner_key")), key) != 0
        || !json_is_integer(json_object_get(rec, "version"))
        || json_integer_value(json_object_get(rec, "version")) != version) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

mz_status mz_store_load_records(mz_store *st,
                                bool (*fn)(const json_t *rec, bool local, void *ctx),
                                void *ctx, mz_err *err)
{
    sqlite3_stmt *s;
    mz_status rc;
    bool nomem = false;
    int src;

    if (st == NULL || fn == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: load_records needs a store and a callback");
    if ((rc = s_scan_start(st, S_LOAD_RECORDS, "load_records", err)) != MZ_OK)
        return rc;
    s = st->stmt[S_LOAD_RECORDS];
    st->bad_rows = 0;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *rec = s_row_record(s, &nomem);
        bool go;

        if (nomem)
            break;
        if (rec == NULL) {
            st->bad_rows++;
            continue;
        }
        go = fn(rec, sqlite3_column_int(s, 4) != 0, ctx);
        json_decref(rec);
        if (!go) {
            src = SQLITE_DONE;
            break;
        }
    }
    if (nomem)
        rc = mz_err_set(err, MZ_ENOMEM, "store %s: reading records: out of memory", st->path);
    else if (src != SQLITE_DONE)
        rc = s_fail(st, src, err, "reading records");
    sqlite3_reset(s);
    return rc;
}

size_t mz_store_bad_rows(const mz_store *st)
{
    return st != NULL ? st->bad_rows : 0;
}

mz_status mz_store_load_tombstones(mz_store *st,
                                   void (*fn)(const char *rid, const char *owner_key,
                                              int64_t version, int64_t until_ms, void *ctx),
                                   void *ctx, mz_err *err)
{
    sqlite3_stmt *s;
    mz_status rc;
    int src;

    if (st == NULL || fn == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: load_tombstones needs a store and a callback");
    if ((rc = s_scan_start(st, S_LOAD_TOMBS, "load_tombstones", err)) != MZ_OK)
        return rc;
    s = st->stmt[S_LOAD_TOMBS];
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *rid = s_col_text(s, 0), *key = s_col_text(s, 1);

        if (rid == NULL || key == NULL) {
            rc = mz_err_set(err, MZ_ENOMEM, "store %s: reading tombstones: out of memory",
                            st->path);
            break;
        }
        fn(rid, key, sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3), ctx);
    }
    if (rc == MZ_OK && src != SQLITE_DONE)
        rc = s_fail(st, src, err, "reading tombstones");
    sqlite3_reset(s);
    return rc;
}

mz_status mz_store_load_peers(mz_store *st,
                              void (*fn)(const char *url, const char *node_id,
                                         int64_t last_seen_ms, int failures, bool is_static,
                                         void *ctx),
                              void *ctx, mz_err *err)
{
    sqlite3_stmt *s;
    mz_status rc;
    int src;

    if (st == NULL || fn == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: load_peers needs a store and a callback");
    if ((rc = s_scan_start(st, S_LOAD_PEERS, "load_peers", err)) != MZ_OK)
        return rc;
    s = st->stmt[S_LOAD_PEERS];
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *url = s_col_text(s, 0), *id = s_col_text(s, 1);

        if (url == NULL || id == NULL) {
            rc = mz_err_set(err, MZ_ENOMEM, "store %s: reading peers: out of memory", st->path);
            break;
        }
        fn(url, id, sqlite3_column_int64(s, 2), sqlite3_column_int(s, 3),
           sqlite3_column_int(s, 4) != 0, ctx);
    }
    if (rc == MZ_OK && src != SQLITE_DONE)
        rc = s_fail(st, src, err, "reading peers");
    sqlite3_reset(s);
    return rc;
}

/* ---- batches ------------------------------------------------------------------- */

mz_status mz_store_begin(mz_store *st, mz_err *err)
{
    mz_status rc;
    int src;

    if (st == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: begin needs a store");
    if ((rc = s_writable(st, err)) != MZ_OK)
        return rc;
    if (st->in_batch)
        return mz_err_set(err, MZ_ESTATE, "store %s: begin: a batch is already open (batches "
                          "do not nest; commit or roll back the open one first)", st->path);
    src = sqlite3_step(st->stmt[S_BEGIN]);
    if (src != SQLITE_DONE) {
        rc = s_fail(st, src, err, "starting a batch");
        sqlite3_reset(st->stmt[S_BEGIN]);
        return rc;
    }
    sqlite3_reset(st->stmt[S_BEGIN]);
    st->in_batch = true;
    st->batch_failed = false;
    st->batch_err[0] = '\0';
    return MZ_OK;
}

/* Ends the batch state whatever happened to the transaction. */
static void s_batch_end(mz_store *st)
{
    st->in_batch = false;
    st->batch_failed = false;
    st->batch_err[0] = '\0';
}

mz_status mz_store_commit(mz_store *st, mz_err *err)
{
    mz_status rc = MZ_OK;
    int src;

    if (st == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: commit needs a store");
    if (!st->in_batch)
        return mz_err_set(err, MZ_ESTATE, "store %s: commit: no batch is open", st->path);
    if (st->batch_failed) {
        rc = mz_err_set(err, MZ_EIO, "batch rolled back, nothing written: %s", st->batch_err);
        s_batch_end(st);
        return rc;
    }
    src = sqlite3_step(st->stmt[S_COMMIT]);
    if (src != SQLITE_DONE) {
        rc = s_fail(st, src, err, "committing a batch (rolled back, nothing written)");
        sqlite3_reset(st->stmt[S_COMMIT]);
        /* A COMMIT that failed (SQLITE_BUSY, say) may leave the transaction
         * open; the contract is all or nothing, so make it nothing. */
        (void)s_rollback(st);
    } else {
        sqlite3_reset(st->stmt[S_COMMIT]);
    }
    s_batch_end(st);
    return rc;
}

mz_status mz_store_rollback(mz_store *st, mz_err *err)
{
    mz_status rc = MZ_OK;
    int src;

    if (st == NULL)
        return mz_err_set(err, MZ_EINVAL, "store: rollback needs a store");
    if (!st->in_batch)
        return mz_err_set(err, MZ_ESTATE, "store %s: rollback: no batch is open", st->path);
    if ((src = s_rollback(st)) != SQLITE_OK)
        rc = s_fail(st, src, err, "rolling back a batch");
    s_batch_end(st);
    return rc;
}
