/* The embedded store: the node's durable state in SQLite, DATA/state.db.
 * It holds resource records (the node's own, with their signatures, and the
 * cache of remote ones), tombstones (PROTOCOL.md §7) and known peers. The
 * store keeps rows, not policy: what to write and what to trust on reload is
 * the node's business (restored remote records must be re-verified).
 *
 * Durability: the database is in WAL mode with synchronous=FULL, so a write
 * function that returns MZ_OK outside a batch has been committed and the
 * WAL fsynced: a kill -9 or a power cut after it loses nothing. Inside a
 * batch (mz_store_begin ... mz_store_commit) the writes become durable
 * together when mz_store_commit returns MZ_OK, and not at all before.
 *
 * Errors: every function that touches the database returns a status the
 * caller must act on; none drops a write silently. A failing database
 * (corrupt, unwritable, disk full, locked by another process for more than
 * MZ_STORE_BUSY_MS) gives MZ_EIO with a message that names the file and
 * carries SQLite's own error, e.g.
 *   "store /var/lib/mz/state.db: writing record agent123: database or disk
 *    is full (SQLITE_FULL)".
 * SQLite running out of memory gives MZ_ENOMEM. Bad arguments give MZ_EINVAL.
 *
 * Loop-thread only: a store is one SQLite connection, not shared between
 * threads. Strings passed in are borrowed for the duration of the call. */
#ifndef MESHZERO_STORE_H
#define MESHZERO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes jansson: stored records are JSON objects (json_t). */
#include <jansson.h>

#include "meshzero/err.h"

/* The database's file name inside the data directory. */
#define MZ_STORE_FILE       "state.db"
/* The schema this code writes; a file with a newer one is refused. */
#define MZ_STORE_SCHEMA     2
/* How long a statement waits for a lock held by another connection before
 * it fails with MZ_EIO ("database is locked"). */
#define MZ_STORE_BUSY_MS    5000

typedef struct mz_store mz_store;

/* Opens DATA_DIR/state.db, creating the directory (one level, mode 0700)
 * and the file when missing, then:
 *   - checks the file with PRAGMA quick_check (time linear in its size);
 *   - sets journal_mode=WAL, synchronous=FULL, foreign_keys=ON and a busy
 *     timeout of MZ_STORE_BUSY_MS;
 *   - reads meta.schema_version and applies the missing migrations in order,
 *     all in one transaction (a failed upgrade leaves the file as it was);
 *   - records the time of this open in meta (a write, so a read-only file,
 *     directory or full disk is found now rather than at the first
 *     registration).
 * data_dir NULL: an in-memory store, nothing durable (tests, nodes run
 * without a data directory); its path is ":memory:".
 * Returns new: *out, freed with mz_store_free; *out is NULL on failure.
 * MZ_EIO naming the file: the directory or file cannot be created, opened
 * or written; the file is not an SQLite database or is corrupt; it is an
 * SQLite database of something else (tables but no meta); its schema is
 * newer than MZ_STORE_SCHEMA; a migration failed. MZ_EINVAL: out NULL.
 * MZ_ENOMEM. */
mz_status mz_store_open(const char *data_dir, mz_store **out, mz_err *err);

/* Finalizes the prepared statements and closes the database (checkpointing
 * the WAL into the main file). A batch still open is rolled back: its
 * writes are lost. NULL-safe. */
void mz_store_free(mz_store *st);

/* The database file's path (":memory:" for an in-memory store). Borrowed:
 * valid until mz_store_free. */
const char *mz_store_path(const mz_store *st);

/* ---- records ------------------------------------------------------------
 * A record's JSON form is PROTOCOL.md §7's; it is stored as compact text
 * without "location" (which is relative to the reader), next to the columns
 * resource_id (the key), node, owner_key, version, local and updated_ms. */

/* Inserts rec, or replaces the stored row of its resource_id (whatever its
 * version: the caller has applied §7's rules). rec is borrowed and not
 * modified; it must be an object with a non-empty string "resource_id", a
 * string "node", a string "owner_key" and an integer "version" (else
 * MZ_EINVAL naming the field); the rest is not checked here. local: the
 * record is hosted by this node. Durable when MZ_OK returns (outside a
 * batch). MZ_EIO, MZ_ENOMEM, MZ_ESTATE (a batch that already failed). */
mz_status mz_store_put_record(mz_store *st, const json_t *rec, bool local, mz_err *err);

/* Deletes the record of resource_id; one that is absent is MZ_OK.
 * MZ_EINVAL, MZ_EIO, MZ_ENOMEM, MZ_ESTATE. */
mz_status mz_store_delete_record(mz_store *st, const char *resource_id, mz_err *err);

/* Deletes every remote (local = false) record hosted by node_id: a node that
 * left or whose lease ran out. Local rows are kept whatever their node
 * column says. MZ_EINVAL, MZ_EIO, MZ_ENOMEM, MZ_ESTATE. */
mz_status mz_store_delete_node_records(mz_store *st, const char *node_id, mz_err *err);

/* Calls fn once per stored record, in resource_id order, with the parsed
 * record (borrowed: valid during the call only; json_incref or copy it to
 * keep it) and its local flag; fn returns false to stop early (still
 * MZ_OK). A row whose text does not parse as a JSON object, or whose
 * resource_id, node, owner_key or version disagree with its columns, is
 * skipped and counted (see mz_store_bad_rows). fn may call the store's write
 * functions (e.g. delete a record that fails re-verification); rows it
 * changes ahead of the scan may or may not be visited. fn must not call
 * mz_store_load_records again (MZ_ESTATE). MZ_EINVAL, MZ_EIO, MZ_ENOMEM. */
mz_status mz_store_load_records(mz_store *st,
                                bool (*fn)(const json_t *rec, bool local, void *ctx),
                                void *ctx, mz_err *err);

/* Rows mz_store_load_records skipped in its last call (0 before any). The
 * rows stay in the file; the caller decides whether to delete them. */
size_t mz_store_bad_rows(const mz_store *st);

/* ---- tombstones (PROTOCOL.md §7) ---------------------------------------- */

/* Inserts or replaces the tombstone of resource_id: the record of that id,
 * owner_key and a version not above version stays refused until until_ms
 * (ms since the epoch). Does not delete the record itself: to remove a
 * record and remember its tombstone atomically, do both in a batch.
 * MZ_EINVAL (NULL or empty strings), MZ_EIO, MZ_ENOMEM, MZ_ESTATE. */
mz_status mz_store_put_tombstone(mz_store *st, const char *resource_id, const char *owner_key,
                                 int64_t version, int64_t until_ms, mz_err *err);

/* Calls fn once per stored tombstone (expired or not), in resource_id
 * order; the strings are borrowed for the call. fn must not call
 * mz_store_load_tombstones again (MZ_ESTATE). MZ_EINVAL, MZ_EIO, MZ_ENOMEM. */
mz_status mz_store_load_tombstones(mz_store *st,
                                   void (*fn)(const char *rid, const char *owner_key,
                                              int64_t version, int64_t until_ms, void *ctx),
                                   void *ctx, mz_err *err);

/* Deletes the tombstones with until_ms <= now_ms. MZ_EIO, MZ_ENOMEM,
 * MZ_ESTATE. */
mz_status mz_store_expire_tombstones(mz_store *st, int64_t now_ms, mz_err *err);

/* ---- known peers --------------------------------------------------------- */

/* Inserts or replaces the peer at url (non-empty): node_id is its id, or
 * "" (NULL is taken as "") while unknown; last_seen_ms when a link to it was
 * last up (0: never); failures, consecutive failed dials; is_static, named
 * on the command line (the node re-adds those at every start anyway).
 * MZ_EINVAL, MZ_EIO, MZ_ENOMEM, MZ_ESTATE. */
mz_status mz_store_put_peer(mz_store *st, const char *url, const char *node_id,
                            int64_t last_seen_ms, int failures, bool is_static, mz_err *err);

/* Deletes the peer at url; one that is absent is MZ_OK. MZ_EINVAL, MZ_EIO,
 * MZ_ENOMEM, MZ_ESTATE. */
mz_status mz_store_forget_peer(mz_store *st, const char *url, mz_err *err);

/* Calls fn once per known peer, in url order; strings borrowed for the
 * call. fn must not call mz_store_load_peers again (MZ_ESTATE). MZ_EINVAL,
 * MZ_EIO, MZ_ENOMEM. */
mz_status mz_store_load_peers(mz_store *st,
                              void (*fn)(const char *url, const char *node_id,
                                         int64_t last_seen_ms, int failures, bool is_static,
                                         void *ctx),
                              void *ctx, mz_err *err);

/* ---- batches --------------------------------------------------------------
 * Many writes in one transaction: one fsync instead of one per write (the
 * remote records a sync brings). Batches do not nest. */

/* Starts a batch (BEGIN IMMEDIATE: takes the write lock now). MZ_ESTATE
 * when a batch is already open ("batches do not nest"); MZ_EIO (e.g. the
 * lock is held elsewhere for MZ_STORE_BUSY_MS), MZ_ENOMEM. */
mz_status mz_store_begin(mz_store *st, mz_err *err);

/* Commits the batch: every write since mz_store_begin is durable when this
 * returns MZ_OK. When a write inside the batch failed, the store rolled the
 * whole batch back at that moment and refused further writes with
 * MZ_ESTATE; commit then ends the batch and returns MZ_EIO saying so (with
 * the first failure's message), so a caller that checks only the commit
 * still learns that nothing was written. A failed COMMIT rolls back too
 * (MZ_EIO): either all of the batch is on disk or none of it. MZ_ESTATE
 * when no batch is open. */
mz_status mz_store_commit(mz_store *st, mz_err *err);

/* Abandons the batch: none of its writes is kept. MZ_ESTATE when no batch
 * is open; MZ_EIO if SQLite could not roll back (the batch is over anyway
 * and nothing of it was committed). */
mz_status mz_store_rollback(mz_store *st, mz_err *err);

#endif
