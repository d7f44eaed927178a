/* The embedded store: round trips, batches, durability across a crash and a
 * kill -9, schema versions and migrations, and the failures that must stop
 * a node with a message naming the file (corrupt, unwritable, disk full). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "state/store.h"

#define NODE_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define KEY_A  "1111111111111111111111111111111111111111111111111111111111111111"

typedef struct fixture {
    char dir[64];              /* mkdtemp directory, removed at teardown */
    char db[128];              /* dir/state.db */
    char mounts[2][128];       /* tmpfs mounted by the test, unmounted at teardown */
    int n_mounts;
} fixture;

/* ---- helpers ------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int chmod_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR || S_ISDIR(sb->st_mode))
        (void)chmod(path, 0700);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s", "/tmp/mz-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/%s", f->dir, MZ_STORE_FILE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    for (int i = f->n_mounts - 1; i >= 0; i--)
        (void)umount2(f->mounts[i], MNT_DETACH);
    /* Tests take permissions away; give them back so the tree can go. */
    (void)nftw(f->dir, chmod_one, 16, FTW_PHYS);
    assert_int_equal(nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

/* Mounts a tmpfs of size bytes on path (created); false when not allowed
 * (not root, no CAP_SYS_ADMIN): the caller skips what needs it. */
static bool try_mount(fixture *f, const char *path, size_t size)
{
    char opts[64];

    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return false;
    snprintf(opts, sizeof opts, "size=%zu,mode=0700", size);
    if (f->n_mounts >= 2 || mount("tmpfs", path, "tmpfs", 0, opts) != 0)
        return false;
    snprintf(f->mounts[f->n_mounts++], sizeof f->mounts[0], "%s", path);
    return true;
}

static void path_in(const fixture *f, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", f->dir, name);
}

/* A record as PROTOCOL.md §7 has it (signature not real: the store does not
 * check). pad: bytes of metadata filler, to make big records. */
static json_t *make_rec(const char *id, const char *node, int64_t version, size_t pad)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:[s,s], s:{s:s}, s:s, s:I, s:s, s:s}",
                            "resource_id", id, "resource_type", "agent", "owner", "user456",
                            "capabilities", "image_processing", "text_analysis",
                            "metadata", "version", "1.0", "node", node,
                            "version", (json_int_t)version, "owner_key", KEY_A,
                            "signature", "00");

    assert_non_null(rec);
    if (pad > 0) {
        char *filler = malloc(pad + 1);

        assert_non_null(filler);
        memset(filler, 'x', pad);
        filler[pad] = '\0';
        assert_int_equal(json_object_set_new(json_object_get(rec, "metadata"), "pad",
                                             json_string(filler)), 0);
        free(filler);
    }
    return rec;
}

static void put(mz_store *st, const char *id, const char *node, int64_t version, bool local)
{
    json_t *rec = make_rec(id, node, version, 0);
    mz_err err = { MZ_OK, "" };

    if (mz_store_put_record(st, rec, local, &err) != MZ_OK)
        fail_msg("put_record %s: %s", id, err.msg);
    json_decref(rec);
}

static mz_store *open_ok(const char *dir)
{
    mz_store *st = NULL;
    mz_err err = { MZ_OK, "" };

    if (mz_store_open(dir, &st, &err) != MZ_OK)
        fail_msg("open %s: %s", dir ? dir : "(memory)", err.msg);
    assert_non_null(st);
    return st;
}

/* What load_records delivered: id -> {"rec": record, "local": bool}. */
typedef struct loaded {
    json_t *by_id;
    size_t calls;
    size_t stop_after;         /* 0: never stop */
} loaded;

static bool on_record(const json_t *rec, bool local, void *ctx)
{
    loaded *l = ctx;
    const char *id = json_string_value(json_object_get(rec, "resource_id"));

    assert_non_null(id);
    assert_int_equal(json_object_set_new(l->by_id, id,
                                         json_pack("{s:O, s:b}", "rec", rec, "local", local)),
                     0);
    l->calls++;
    return l->stop_after == 0 || l->calls < l->stop_after;
}

/* Loads every record into a new object id -> {rec, local}. */
static json_t *load_all(mz_store *st)
{
    loaded l = { json_object(), 0, 0 };
    mz_err err = { MZ_OK, "" };

    assert_non_null(l.by_id);
    if (mz_store_load_records(st, on_record, &l, &err) != MZ_OK)
        fail_msg("load_records: %s", err.msg);
    return l.by_id;
}

static size_t count_records(const char *dir)
{
    mz_store *st = open_ok(dir);
    json_t *all = load_all(st);
    size_t n = json_object_size(all);

    json_decref(all);
    mz_store_free(st);
    return n;
}

/* Raw SQL on the file, as another program (or a hand edit) would do. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("raw sql on %s: %s", path, msg ? msg : "?");
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("raw sql on %s: %s", path, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* sqlite3_auto_extension runs this for every connection opened in the
 * process: the tests use it to reach the store's own connection (PRAGMAs
 * that are per connection, such as max_page_count). */
static sqlite3 *s_last_db;

static int capture_db(sqlite3 *db, const char **errmsg, const struct sqlite3_api_routines *api)
{
    (void)errmsg;
    (void)api;
    s_last_db = db;
    return SQLITE_OK;
}

static mz_store *open_captured(const char *dir, sqlite3 **db)
{
    mz_store *st;

    s_last_db = NULL;
    assert_int_equal(sqlite3_auto_extension((void (*)(void))capture_db), SQLITE_OK);
    st = open_ok(dir);
    sqlite3_cancel_auto_extension((void (*)(void))capture_db);
    assert_non_null(s_last_db);
    *db = s_last_db;
    return st;
}

static int64_t db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* MZ_TEST_VERBOSE=1 prints the messages the tests check, to read them. */
static void assert_names(const mz_err *err, const char *path)
{
    if (getenv("MZ_TEST_VERBOSE") != NULL)
        print_message("  %s: %s\n", mz_status_name(err->code), err->msg);
    if (strstr(err->msg, path) == NULL)
        fail_msg("message does not name %s: %s", path, err->msg);
}

static void assert_says(const mz_err *err, const char *what)
{
    if (strstr(err->msg, what) == NULL)
        fail_msg("message does not say '%s': %s", what, err->msg);
}

/* Reads one byte from fd within ms; false on timeout or EOF. */
static bool read_byte(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;

    if (poll(&p, 1, ms) != 1)
        return false;
    return read(fd, &c, 1) == 1;
}

static void write_file(const char *path, const void *data, size_t len, off_t at)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, at), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* ---- opening --------------------------------------------------------------- */

static void test_open_settings(void **state)
{
    fixture *f = *state;
    char sub[128];
    sqlite3 *db;
    mz_store *st;
    struct stat sb;

    /* The directory is made when missing (one level). */
    path_in(f, "data", sub, sizeof sub);
    st = open_captured(sub, &db);
    assert_true(strstr(mz_store_path(st), "/data/" MZ_STORE_FILE) != NULL);
    assert_int_equal(stat(sub, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(db_int(db, "PRAGMA synchronous"), 2);          /* FULL */
    assert_int_equal(db_int(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(db_int(db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     MZ_STORE_SCHEMA);
    {
        sqlite3_stmt *s = NULL;

        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
    }
    mz_store_free(st);
    /* Reopening an existing store changes nothing. */
    st = open_ok(sub);
    mz_store_free(st);
    mz_store_free(NULL);
    assert_null(mz_store_path(NULL));
}

static void test_open_bad_args(void **state)
{
    mz_err err = { MZ_OK, "" };
    json_t *rec = make_rec("x", NODE_A, 1, 0);

    (void)state;
    assert_int_equal(mz_store_open("/tmp", NULL, &err), MZ_EINVAL);
    assert_int_equal(mz_store_put_record(NULL, rec, true, &err), MZ_EINVAL);
    assert_int_equal(mz_store_delete_record(NULL, "x", &err), MZ_EINVAL);
    assert_int_equal(mz_store_begin(NULL, &err), MZ_EINVAL);
    assert_int_equal(mz_store_commit(NULL, NULL), MZ_EINVAL);
    assert_int_equal(mz_store_bad_rows(NULL), 0);
    json_decref(rec);
}

static void test_memory_store(void **state)
{
    mz_store *st = open_ok(NULL);
    json_t *all;

    (void)state;
    assert_string_equal(mz_store_path(st), ":memory:");
    put(st, "agent123", NODE_A, 1, true);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 1);
    json_decref(all);
    mz_store_free(st);
}

/* ---- records ------------------------------------------------------------------ */

static void test_records_round_trip(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *rec = make_rec("agent123", NODE_A, 1, 0), *all, *want;

    /* "location" is the reader's view: not stored, and rec is untouched. */
    json_object_set_new(rec, "location", json_string("local"));
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_OK);
    assert_non_null(json_object_get(rec, "location"));
    put(st, "tool7", NODE_B, 4, false);
    put(st, "tool8", NODE_B, 1, false);
    mz_store_free(st);

    st = open_ok(f->dir);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 3);
    assert_int_equal(mz_store_bad_rows(st), 0);
    want = make_rec("agent123", NODE_A, 1, 0);
    assert_true(json_equal(json_object_get(json_object_get(all, "agent123"), "rec"), want));
    json_decref(want);
    assert_true(json_is_true(json_object_get(json_object_get(all, "agent123"), "local")));
    assert_true(json_is_false(json_object_get(json_object_get(all, "tool7"), "local")));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(all, "tool7"), "rec"), "version")), 4);
    json_decref(all);

    /* Upsert: the same id replaces the row (the caller applied §7). */
    json_object_set_new(rec, "version", json_integer(2));
    json_object_set_new(json_object_get(rec, "metadata"), "version", json_string("2.0"));
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_OK);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
                            json_object_get(all, "agent123"), "rec"), "metadata"), "version")),
                        "2.0");
    json_decref(all);

    /* Delete; an absent id is fine. */
    assert_int_equal(mz_store_delete_record(st, "tool8", &err), MZ_OK);
    assert_int_equal(mz_store_delete_record(st, "tool8", &err), MZ_OK);
    assert_int_equal(mz_store_delete_record(st, "never-there", &err), MZ_OK);
    assert_int_equal(mz_store_delete_record(st, "", &err), MZ_EINVAL);
    mz_store_free(st);
    assert_int_equal(count_records(f->dir), 2);
    json_decref(rec);
}

static void test_delete_node_records(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *all;

    put(st, "b1", NODE_B, 1, false);
    put(st, "b2", NODE_B, 1, false);
    put(st, "a1", NODE_A, 1, false);
    /* A local row keeps its place whatever its node column says. */
    put(st, "mine", NODE_B, 1, true);
    assert_int_equal(mz_store_delete_node_records(st, NODE_B, &err), MZ_OK);
    assert_int_equal(mz_store_delete_node_records(st, "unknown-node", &err), MZ_OK);
    assert_int_equal(mz_store_delete_node_records(st, NULL, &err), MZ_EINVAL);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 2);
    assert_non_null(json_object_get(all, "a1"));
    assert_non_null(json_object_get(all, "mine"));
    json_decref(all);
    mz_store_free(st);
}

static void test_record_invalid(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *rec = make_rec("agent123", NODE_A, 1, 0);
    json_t *arr = json_array();

    assert_int_equal(mz_store_put_record(st, NULL, true, &err), MZ_EINVAL);
    assert_int_equal(mz_store_put_record(st, arr, true, &err), MZ_EINVAL);
    json_object_set_new(rec, "version", json_string("1"));
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_EINVAL);
    assert_says(&err, "'version'");
    json_object_set_new(rec, "version", json_integer(1));
    json_object_del(rec, "owner_key");
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_EINVAL);
    assert_says(&err, "'owner_key'");
    json_object_set_new(rec, "owner_key", json_string(KEY_A));
    json_object_set_new(rec, "node", json_integer(5));
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_EINVAL);
    assert_says(&err, "'node'");
    json_object_set_new(rec, "node", json_string(NODE_A));
    json_object_set_new(rec, "resource_id", json_string(""));
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_EINVAL);
    assert_says(&err, "'resource_id'");
    assert_int_equal(count_records(f->dir), 0);
    json_decref(rec);
    json_decref(arr);
    mz_store_free(st);
}

static void test_load_early_stop(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    loaded l = { json_object(), 0, 2 };
    mz_err err = { MZ_OK, "" };

    put(st, "r1", NODE_A, 1, true);
    put(st, "r2", NODE_A, 1, true);
    put(st, "r3", NODE_A, 1, true);
    assert_int_equal(mz_store_load_records(st, on_record, &l, &err), MZ_OK);
    assert_int_equal(l.calls, 2);
    /* In resource_id order. */
    assert_non_null(json_object_get(l.by_id, "r1"));
    assert_non_null(json_object_get(l.by_id, "r2"));
    json_decref(l.by_id);
    /* The statement was reset: a second scan starts over. */
    l.by_id = json_object();
    l.calls = 0;
    l.stop_after = 0;
    assert_int_equal(mz_store_load_records(st, on_record, &l, &err), MZ_OK);
    assert_int_equal(l.calls, 3);
    json_decref(l.by_id);
    assert_int_equal(mz_store_load_records(st, NULL, NULL, &err), MZ_EINVAL);
    mz_store_free(st);
}

static void test_bad_rows(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    json_t *all;

    put(st, "good", NODE_A, 1, true);
    mz_store_free(st);
    /* Text that is not JSON, JSON that is not an object, a record whose id
     * disagrees with its column and one whose version does. */
    raw_exec(f->db, "INSERT INTO records (resource_id, node, owner_key, version, is_local, json)"
                    " VALUES ('junk', 'n', 'k', 1, 0, '{not json'),"
                    " ('array', 'n', 'k', 1, 0, '[1,2]'),"
                    " ('liar', 'n', 'k', 1, 0, '{\"resource_id\":\"other\",\"node\":\"n\","
                    "  \"owner_key\":\"k\",\"version\":1}'),"
                    " ('oldver', 'n', 'k', 2, 0, '{\"resource_id\":\"oldver\",\"node\":\"n\","
                    "  \"owner_key\":\"k\",\"version\":1}')");
    st = open_ok(f->dir);
    assert_int_equal(mz_store_bad_rows(st), 0);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 1);
    assert_non_null(json_object_get(all, "good"));
    assert_int_equal(mz_store_bad_rows(st), 4);
    json_decref(all);
    /* The caller may delete them; the next load counts afresh. */
    assert_int_equal(mz_store_delete_record(st, "junk", NULL), MZ_OK);
    all = load_all(st);
    assert_int_equal(mz_store_bad_rows(st), 3);
    json_decref(all);
    mz_store_free(st);
}

/* fn deletes each remote record it is given (revalidation failing), and
 * tries a nested scan, which is refused. */
typedef struct revalidate {
    mz_store *st;
    const char *path;          /* the file, to look at it from another connection */
    size_t seen;
    mz_status nested;
    mz_status del;
    int64_t left_after_first;  /* rows another connection saw after the first delete */
} revalidate;

static bool on_revalidate(const json_t *rec, bool local, void *ctx)
{
    revalidate *r = ctx;
    mz_err err = { MZ_OK, "" };

    r->seen++;
    if (r->seen == 1)
        r->nested = mz_store_load_records(r->st, on_revalidate, r, &err);
    if (!local) {
        mz_status rc = mz_store_delete_record(
            r->st, json_string_value(json_object_get(rec, "resource_id")), &err);

        if (rc != MZ_OK)
            r->del = rc;
        /* Committed as it returned, mid-scan: another connection sees it. */
        if (r->left_after_first < 0)
            r->left_after_first = raw_int(r->path, "SELECT count(*) FROM records");
    }
    return true;
}

static void test_load_callback_writes(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    revalidate r = { st, f->db, 0, MZ_OK, MZ_OK, -1 };
    mz_err err = { MZ_OK, "" };
    char id[16];

    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "r%02d", i);
        put(st, id, i % 2 ? NODE_B : NODE_A, 1, i % 2 == 0);
    }
    assert_int_equal(mz_store_load_records(st, on_revalidate, &r, &err), MZ_OK);
    assert_int_equal(r.nested, MZ_ESTATE);
    assert_int_equal(r.del, MZ_OK);
    assert_int_equal(r.seen, 50);
    assert_int_equal(r.left_after_first, 49);
    mz_store_free(st);
    /* The deletes were committed one by one, as they happened. */
    assert_int_equal(count_records(f->dir), 25);
}

/* ---- tombstones and peers --------------------------------------------------------- */

static void on_tomb(const char *rid, const char *owner_key, int64_t version, int64_t until_ms,
                    void *ctx)
{
    json_t *all = ctx;

    json_object_set_new(all, rid, json_pack("{s:s, s:I, s:I}", "owner_key", owner_key,
                                            "version", (json_int_t)version,
                                            "until", (json_int_t)until_ms));
}

static void test_tombstones(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *all = json_object(), *want;

    assert_int_equal(mz_store_put_tombstone(st, "t1", KEY_A, 4, 1000, &err), MZ_OK);
    assert_int_equal(mz_store_put_tombstone(st, "t2", KEY_A, 1, 2000, &err), MZ_OK);
    assert_int_equal(mz_store_put_tombstone(st, "t3", KEY_A, 9, 3000, &err), MZ_OK);
    /* Replaced by id. */
    assert_int_equal(mz_store_put_tombstone(st, "t2", "other", 7, 2500, &err), MZ_OK);
    assert_int_equal(mz_store_put_tombstone(st, "", KEY_A, 1, 1, &err), MZ_EINVAL);
    assert_int_equal(mz_store_put_tombstone(st, "t4", NULL, 1, 1, &err), MZ_EINVAL);
    mz_store_free(st);

    st = open_ok(f->dir);
    assert_int_equal(mz_store_load_tombstones(st, on_tomb, all, &err), MZ_OK);
    want = json_pack("{s:{s:s, s:i, s:i}, s:{s:s, s:i, s:i}, s:{s:s, s:i, s:i}}",
                     "t1", "owner_key", KEY_A, "version", 4, "until", 1000,
                     "t2", "owner_key", "other", "version", 7, "until", 2500,
                     "t3", "owner_key", KEY_A, "version", 9, "until", 3000);
    assert_true(json_equal(all, want));
    json_decref(want);
    json_decref(all);

    /* until_ms <= now goes. */
    assert_int_equal(mz_store_expire_tombstones(st, 2500, &err), MZ_OK);
    all = json_object();
    assert_int_equal(mz_store_load_tombstones(st, on_tomb, all, &err), MZ_OK);
    assert_int_equal(json_object_size(all), 1);
    assert_non_null(json_object_get(all, "t3"));
    json_decref(all);
    assert_int_equal(mz_store_load_tombstones(st, NULL, NULL, &err), MZ_EINVAL);
    mz_store_free(st);
}

static void on_peer(const char *url, const char *node_id, int64_t last_seen_ms, int failures,
                    bool is_static, void *ctx)
{
    json_t *all = ctx;

    json_array_append_new(all, json_pack("{s:s, s:s, s:I, s:i, s:b}", "url", url, "id", node_id,
                                         "seen", (json_int_t)last_seen_ms, "failures", failures,
                                         "static", is_static));
}

static void test_peers(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *all = json_array(), *want;

    assert_int_equal(mz_store_put_peer(st, "ws://127.0.0.1:9002", NULL, 0, 3, true, &err),
                     MZ_OK);
    assert_int_equal(mz_store_put_peer(st, "ws://127.0.0.1:9001", NODE_A, 1234, 0, false, &err),
                     MZ_OK);
    assert_int_equal(mz_store_put_peer(st, "ws://127.0.0.1:9003", NODE_B, 1, 1, false, &err),
                     MZ_OK);
    /* Replaced by url. */
    assert_int_equal(mz_store_put_peer(st, "ws://127.0.0.1:9002", NODE_B, 99, 0, true, &err),
                     MZ_OK);
    assert_int_equal(mz_store_forget_peer(st, "ws://127.0.0.1:9003", &err), MZ_OK);
    assert_int_equal(mz_store_forget_peer(st, "ws://127.0.0.1:9003", &err), MZ_OK);
    assert_int_equal(mz_store_put_peer(st, "", NODE_A, 1, 0, false, &err), MZ_EINVAL);
    mz_store_free(st);

    st = open_ok(f->dir);
    assert_int_equal(mz_store_load_peers(st, on_peer, all, &err), MZ_OK);
    want = json_pack("[{s:s, s:s, s:i, s:i, s:b}, {s:s, s:s, s:i, s:i, s:b}]",
                     "url", "ws://127.0.0.1:9001", "id", NODE_A, "seen", 1234, "failures", 0,
                     "static", 0,
                     "url", "ws://127.0.0.1:9002", "id", NODE_B, "seen", 99, "failures", 0,
                     "static", 1);
    if (!json_equal(all, want)) {
        char *s = json_dumps(all, JSON_COMPACT);

        fail_msg("peers: %s", s);
    }
    json_decref(want);
    json_decref(all);
    /* node_id NULL is stored as "". */
    assert_int_equal(mz_store_put_peer(st, "ws://x:1", NULL, 0, 0, false, &err), MZ_OK);
    all = json_array();
    assert_int_equal(mz_store_load_peers(st, on_peer, all, &err), MZ_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, 2), "id")), "");
    json_decref(all);
    mz_store_free(st);
}

/* ---- batches ------------------------------------------------------------------------- */

static void test_batch(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    char id[16];

    assert_int_equal(mz_store_commit(st, &err), MZ_ESTATE);
    assert_says(&err, "no batch");
    assert_int_equal(mz_store_rollback(st, &err), MZ_ESTATE);

    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    assert_int_equal(mz_store_begin(st, &err), MZ_ESTATE);
    assert_says(&err, "do not nest");
    assert_names(&err, f->db);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "c%03d", i);
        put(st, id, NODE_B, 1, false);
    }
    assert_int_equal(mz_store_put_tombstone(st, "gone", KEY_A, 2, 5000, &err), MZ_OK);
    assert_int_equal(mz_store_commit(st, &err), MZ_OK);

    /* Rolled back: nothing of it stays. */
    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    put(st, "rolled", NODE_B, 1, false);
    assert_int_equal(mz_store_delete_record(st, "c000", &err), MZ_OK);
    assert_int_equal(mz_store_rollback(st, &err), MZ_OK);

    /* Left open at free: lost. */
    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    put(st, "never", NODE_B, 1, false);
    mz_store_free(st);

    assert_int_equal(count_records(f->dir), 100);
}

/* ---- durability ------------------------------------------------------------------------ */

/* A child that writes and leaves without closing anything (a crash that
 * runs no cleanup). */
static void test_crash_exit(void **state)
{
    fixture *f = *state;
    json_t *all;
    mz_store *st;
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mz_store *cst = NULL;
        json_t *rec = make_rec("crashed", NODE_A, 1, 0);

        if (mz_store_open(f->dir, &cst, NULL) != MZ_OK
            || mz_store_put_record(cst, rec, true, NULL) != MZ_OK)
            _exit(2);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    st = open_ok(f->dir);
    all = load_all(st);
    assert_non_null(json_object_get(all, "crashed"));
    json_decref(all);
    mz_store_free(st);
}

/* A child writes records as fast as it can and reports each put that
 * returned MZ_OK on a pipe; kill -9 lands mid-stream. Every reported
 * record must be there afterwards. */
static void test_kill9_loses_nothing_acknowledged(void **state)
{
    fixture *f = *state;
    size_t acked = 0;
    json_t *all;
    mz_store *st;
    int fds[2], status;
    pid_t pid;
    char id[32];

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mz_store *cst = NULL;

        close(fds[0]);
        if (mz_store_open(f->dir, &cst, NULL) != MZ_OK)
            _exit(2);
        for (int i = 0; i < 100000; i++) {
            json_t *rec;

            snprintf(id, sizeof id, "k%06d", i);
            rec = make_rec(id, NODE_A, 1, 200);
            if (mz_store_put_record(cst, rec, true, NULL) != MZ_OK)
                _exit(3);
            json_decref(rec);
            if (write(fds[1], "x", 1) != 1)
                _exit(4);
        }
        _exit(5);
    }
    close(fds[1]);
    while (acked < 40 && read_byte(fds[0], 20000))
        acked++;
    assert_int_equal(acked, 40);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* Acknowledgements written before the kill are still in the pipe. */
    while (read_byte(fds[0], 0))
        acked++;
    close(fds[0]);

    st = open_ok(f->dir);
    all = load_all(st);
    for (size_t i = 0; i < acked; i++) {
        snprintf(id, sizeof id, "k%06zu", i);
        if (json_object_get(all, id) == NULL)
            fail_msg("acknowledged record %s lost (%zu acknowledged, %zu found)", id, acked,
                     json_object_size(all));
    }
    /* At most the one put in flight when the kill came is extra. */
    assert_true(json_object_size(all) <= acked + 1);
    assert_int_equal(mz_store_bad_rows(st), 0);
    json_decref(all);
    mz_store_free(st);
}

/* kill -9 inside a batch: none of it; right after commit: all of it. */
static void kill_batch(fixture *f, bool commit, size_t expect)
{
    int fds[2], status;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mz_store *cst = NULL;
        char id[32];

        close(fds[0]);
        if (mz_store_open(f->dir, &cst, NULL) != MZ_OK || mz_store_begin(cst, NULL) != MZ_OK)
            _exit(2);
        for (int i = 0; i < 50; i++) {
            json_t *rec;

            snprintf(id, sizeof id, "%s%02d", commit ? "c" : "u", i);
            rec = make_rec(id, NODE_B, 1, 0);
            if (mz_store_put_record(cst, rec, false, NULL) != MZ_OK)
                _exit(3);
            json_decref(rec);
        }
        if (commit && mz_store_commit(cst, NULL) != MZ_OK)
            _exit(4);
        if (write(fds[1], "x", 1) != 1)
            _exit(5);
        pause();
        _exit(6);
    }
    close(fds[1]);
    assert_true(read_byte(fds[0], 20000));
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    close(fds[0]);
    assert_int_equal(count_records(f->dir), expect);
}

static void test_kill9_batch(void **state)
{
    fixture *f = *state;

    kill_batch(f, false, 0);
    kill_batch(f, true, 50);
}

/* ---- schema ------------------------------------------------------------------------------ */

static void test_schema_newer_refused(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };

    put(st, "agent123", NODE_A, 1, true);
    mz_store_free(st);
    raw_exec(f->db, "UPDATE meta SET value = 999 WHERE key = 'schema_version'");
    st = (mz_store *)&err;
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_int_equal(err.code, MZ_EIO);
    assert_names(&err, f->db);
    assert_says(&err, "999");
    assert_says(&err, "newer");
    /* Refused, not touched: a later release still finds its data. */
    assert_int_equal(raw_int(f->db, "SELECT value FROM meta WHERE key = 'schema_version'"), 999);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM records"), 1);

    /* A version written as text by a hand edit counts the same. */
    raw_exec(f->db, "UPDATE meta SET value = '1000' WHERE key = 'schema_version'");
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_says(&err, "1000");
    raw_exec(f->db, "UPDATE meta SET value = 'banana' WHERE key = 'schema_version'");
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_names(&err, f->db);
    assert_says(&err, "not a number");
    raw_exec(f->db, "DELETE FROM meta WHERE key = 'schema_version'");
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_names(&err, f->db);
    assert_says(&err, "schema_version");
}

static void test_foreign_database_refused(void **state)
{
    fixture *f = *state;
    mz_store *st = NULL;
    mz_err err = { MZ_OK, "" };

    raw_exec(f->db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)");
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_names(&err, f->db);
    assert_says(&err, "not a meshzero state database");
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name = 'records'"),
                     0);
}

/* Version 1 as src/state/store.c's first migration made it. */
static const char s_v1_schema[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL);"
    "CREATE TABLE records (resource_id TEXT PRIMARY KEY NOT NULL, node TEXT NOT NULL,"
    " owner_key TEXT NOT NULL, version INTEGER NOT NULL, is_local INTEGER NOT NULL,"
    " json TEXT NOT NULL);"
    "CREATE TABLE tombstones (resource_id TEXT PRIMARY KEY NOT NULL, owner_key TEXT NOT NULL,"
    " version INTEGER NOT NULL, until_ms INTEGER NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('schema_version', 1);"
    "INSERT INTO records VALUES ('agent123', 'n1', 'k1', 3, 1,"
    " '{\"resource_id\":\"agent123\",\"resource_type\":\"agent\",\"node\":\"n1\","
    "\"owner_key\":\"k1\",\"version\":3}');"
    "INSERT INTO tombstones VALUES ('old', 'k1', 2, 123456);";

static void test_migrate_from_v1(void **state)
{
    fixture *f = *state;
    mz_store *st;
    mz_err err = { MZ_OK, "" };
    json_t *all, *tombs = json_object();

    raw_exec(f->db, s_v1_schema);
    st = open_ok(f->dir);
    all = load_all(st);
    assert_int_equal(json_object_size(all), 1);
    assert_true(json_is_true(json_object_get(json_object_get(all, "agent123"), "local")));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(all, "agent123"), "rec"), "version")), 3);
    json_decref(all);
    assert_int_equal(mz_store_load_tombstones(st, on_tomb, tombs, &err), MZ_OK);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(tombs, "old"), "until")),
                     123456);
    json_decref(tombs);
    /* What version 2 added works. */
    assert_int_equal(mz_store_put_peer(st, "ws://127.0.0.1:1", NODE_A, 5, 0, false, &err), MZ_OK);
    put(st, "new", NODE_B, 1, false);
    assert_int_equal(mz_store_delete_node_records(st, NODE_B, &err), MZ_OK);
    mz_store_free(st);

    assert_int_equal(raw_int(f->db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     MZ_STORE_SCHEMA);
    assert_int_equal(raw_int(f->db, "SELECT updated_ms FROM records WHERE resource_id = "
                                    "'agent123'"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM peers"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                    " AND name = 'records_remote_by_node'"), 1);
}

/* A migration that fails leaves the file at its old version, whole. */
static void test_migration_failure_rolls_back(void **state)
{
    fixture *f = *state;
    mz_store *st = NULL;
    mz_err err = { MZ_OK, "" };

    raw_exec(f->db, s_v1_schema);
    raw_exec(f->db, "CREATE TABLE peers (x)");       /* in the way of migration 2 */
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_names(&err, f->db);
    assert_says(&err, "from version 1 to 2");
    assert_int_equal(raw_int(f->db, "SELECT value FROM meta WHERE key = 'schema_version'"), 1);
    /* The ALTER TABLE before the failing statement was undone too. */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pragma_table_info('records')"
                                    " WHERE name = 'updated_ms'"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM records"), 1);
}

/* ---- failures: corrupt, unwritable, full -------------------------------------------------- */

static void test_corrupt_garbage(void **state)
{
    fixture *f = *state;
    mz_store *st = NULL;
    mz_err err = { MZ_OK, "" };
    char junk[8192];

    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)("garbage!"[i % 8] ^ (i * 31));
    write_file(f->db, junk, sizeof junk, 0);
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_names(&err, f->db);
    assert_says(&err, "not a database");
}

static void test_corrupt_pages(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    char junk[4096], id[32];
    struct stat sb;

    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    for (int i = 0; i < 300; i++) {
        json_t *rec;

        snprintf(id, sizeof id, "r%04d", i);
        rec = make_rec(id, NODE_B, 1, 1000);
        assert_int_equal(mz_store_put_record(st, rec, false, &err), MZ_OK);
        json_decref(rec);
    }
    assert_int_equal(mz_store_commit(st, &err), MZ_OK);
    mz_store_free(st);                        /* checkpoints: everything is in state.db */
    assert_int_equal(stat(f->db, &sb), 0);
    assert_true(sb.st_size > 40 * 4096);
    /* The header page stays valid, so this is a database whose pages are
     * damaged, found only by reading them. */
    memset(junk, 0xa5, sizeof junk);
    for (off_t at = 3 * 4096; at + 4096 < sb.st_size; at += 4096)
        write_file(f->db, junk, sizeof junk, at);
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_null(st);
    assert_names(&err, f->db);
    if (strstr(err.msg, "corrupt") == NULL && strstr(err.msg, "malformed") == NULL)
        fail_msg("not reported as corruption: %s", err.msg);
}

static void test_unwritable(void **state)
{
    fixture *f = *state;
    mz_store *st = NULL;
    mz_err err = { MZ_OK, "" };
    char file[128], under[160], want[192];

    /* A data directory under a regular file: no permission bits involved,
     * so this fails for root too. */
    path_in(f, "plainfile", file, sizeof file);
    write_file(file, "x", 1, 0);
    snprintf(under, sizeof under, "%s/data", file);
    assert_int_equal(mz_store_open(under, &st, &err), MZ_EIO);
    assert_null(st);
    snprintf(want, sizeof want, "%s/%s", under, MZ_STORE_FILE);
    assert_names(&err, want);
    /* The data directory is itself a regular file. */
    assert_int_equal(mz_store_open(file, &st, &err), MZ_EIO);
    snprintf(want, sizeof want, "%s/%s", file, MZ_STORE_FILE);
    assert_names(&err, want);
    /* state.db is a directory. */
    assert_int_equal(mkdir(f->db, 0700), 0);
    assert_int_equal(mz_store_open(f->dir, &st, &err), MZ_EIO);
    assert_names(&err, f->db);
    assert_int_equal(rmdir(f->db), 0);

    if (geteuid() != 0) {
        char ro[128], rodb[160];

        /* A directory without write permission: no file can be made. */
        path_in(f, "ro", ro, sizeof ro);
        assert_int_equal(mkdir(ro, 0700), 0);
        assert_int_equal(chmod(ro, 0500), 0);
        assert_int_equal(mz_store_open(ro, &st, &err), MZ_EIO);
        snprintf(rodb, sizeof rodb, "%s/%s", ro, MZ_STORE_FILE);
        assert_names(&err, rodb);
        /* A store that exists but whose file is read-only. */
        assert_int_equal(chmod(ro, 0700), 0);
        mz_store_free(open_ok(ro));
        assert_int_equal(chmod(rodb, 0400), 0);
        assert_int_equal(mz_store_open(ro, &st, &err), MZ_EIO);
        assert_names(&err, rodb);
        /* ... or whose directory is (no -wal, -shm can be made). */
        assert_int_equal(chmod(rodb, 0600), 0);
        assert_int_equal(chmod(ro, 0500), 0);
        assert_int_equal(mz_store_open(ro, &st, &err), MZ_EIO);
        assert_names(&err, rodb);
        assert_int_equal(chmod(ro, 0700), 0);
    } else {
        char mnt[128], mntdb[160];

        /* root ignores permission bits: a read-only file system stops it. */
        path_in(f, "rofs", mnt, sizeof mnt);
        if (!try_mount(f, mnt, 1 << 20)) {
            print_message("  (read-only file system case skipped: cannot mount tmpfs)\n");
            return;
        }
        snprintf(mntdb, sizeof mntdb, "%s/%s", mnt, MZ_STORE_FILE);
        st = open_ok(mnt);
        put(st, "agent123", NODE_A, 1, true);
        mz_store_free(st);
        st = NULL;
        assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
        assert_int_equal(mz_store_open(mnt, &st, &err), MZ_EIO);
        assert_null(st);
        assert_names(&err, mntdb);
    }
}

/* Writes records of pad bytes until one fails; returns how many went in
 * and leaves the failure in err. */
static int fill(mz_store *st, const char *prefix, size_t pad, int max, mz_status *rc,
                mz_err *err)
{
    char id[32];
    int i;

    *rc = MZ_OK;
    for (i = 0; i < max; i++) {
        json_t *rec;

        snprintf(id, sizeof id, "%s%05d", prefix, i);
        rec = make_rec(id, NODE_B, 1, pad);
        *rc = mz_store_put_record(st, rec, false, err);
        json_decref(rec);
        if (*rc != MZ_OK)
            break;
    }
    return i;
}

/* The database may not grow (max_page_count): writes fail with
 * SQLITE_FULL, as on a full disk. */
static void test_full_max_page_count(void **state)
{
    fixture *f = *state;
    mz_err err = { MZ_OK, "" };
    mz_status rc;
    sqlite3 *db;
    mz_store *st = open_captured(f->dir, &db);
    int64_t pages;
    char sql[64];
    int n;

    put(st, "before", NODE_A, 1, true);
    pages = db_int(db, "PRAGMA page_count");
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages + 4);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);

    n = fill(st, "a", 3000, 1000, &rc, &err);
    assert_true(n < 1000);
    assert_int_equal(rc, MZ_EIO);
    assert_names(&err, f->db);
    assert_says(&err, "full");
    assert_says(&err, "SQLITE_FULL");

    /* The store still works for what fits: a failed write is not fatal. */
    assert_int_equal(mz_store_delete_record(st, "a00000", &err), MZ_OK);

    /* In a batch, the failure rolls back everything and says so at commit;
     * writes in between are refused rather than committed alone. */
    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    (void)fill(st, "b", 3000, 1000, &rc, &err);
    assert_int_equal(rc, MZ_EIO);
    assert_says(&err, "SQLITE_FULL");
    assert_int_equal(mz_store_delete_record(st, "before", &err), MZ_ESTATE);
    assert_says(&err, "rolled back");
    assert_int_equal(mz_store_begin(st, &err), MZ_ESTATE);
    assert_int_equal(mz_store_commit(st, &err), MZ_EIO);
    assert_says(&err, "rolled back");
    assert_names(&err, f->db);
    assert_says(&err, "SQLITE_FULL");
    /* The batch is over; the store takes writes again. */
    assert_int_equal(mz_store_delete_record(st, "before", &err), MZ_OK);
    assert_int_equal(mz_store_begin(st, &err), MZ_OK);
    assert_int_equal(mz_store_rollback(st, &err), MZ_OK);
    {
        json_t *all = load_all(st);
        const char *key;
        json_t *v;

        json_object_foreach(all, key, v) {
            (void)v;
            if (key[0] == 'b')
                fail_msg("record %s of the failed batch was kept", key);
        }
        assert_null(json_object_get(all, "before"));
        json_decref(all);
    }
    mz_store_free(st);
}

/* A real full file system: a small tmpfs (only where the test may mount
 * one, i.e. as root). */
static void test_full_tmpfs(void **state)
{
    fixture *f = *state;
    mz_err err = { MZ_OK, "" };
    char mnt[128], mntdb[160];
    mz_status rc;
    mz_store *st;
    int n;

    path_in(f, "small", mnt, sizeof mnt);
    if (!try_mount(f, mnt, 256 * 1024)) {
        skip();
        return;
    }
    snprintf(mntdb, sizeof mntdb, "%s/%s", mnt, MZ_STORE_FILE);
    st = open_ok(mnt);
    n = fill(st, "a", 4000, 1000, &rc, &err);
    assert_true(n > 0 && n < 1000);
    assert_int_equal(rc, MZ_EIO);
    assert_names(&err, mntdb);
    if (strstr(err.msg, "full") == NULL && strstr(err.msg, "No space") == NULL)
        fail_msg("not reported as a full disk: %s", err.msg);
    mz_store_free(st);
    /* Once space is freed, everything acknowledged is there. */
    assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, "size=4m"), 0);
    assert_int_equal(count_records(mnt), (size_t)n);
}

/* Another connection (another process on the same data directory, say)
 * holds the write lock: after MZ_STORE_BUSY_MS the write fails, loudly. */
static void test_locked(void **state)
{
    fixture *f = *state;
    mz_store *st = open_ok(f->dir);
    mz_err err = { MZ_OK, "" };
    json_t *rec = make_rec("agent123", NODE_A, 1, 0);
    sqlite3 *other = NULL;

    assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_EIO);
    assert_names(&err, f->db);
    assert_says(&err, "locked");
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* Once the lock is gone, writes go through again. */
    assert_int_equal(mz_store_put_record(st, rec, true, &err), MZ_OK);
    json_decref(rec);
    mz_store_free(st);
    assert_int_equal(count_records(f->dir), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_settings, setup, teardown),
        cmocka_unit_test(test_open_bad_args),
        cmocka_unit_test(test_memory_store),
        cmocka_unit_test_setup_teardown(test_records_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_node_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_early_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_callback_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_newer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_max_page_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
