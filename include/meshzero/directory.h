/* ResourceDirectory: every resource record the node knows, local and remote,
 * indexed by type and by capability. Record JSON: docs/PROTOCOL.md "Records".
 * Loop-thread only. */
#ifndef MESHZERO_DIRECTORY_H
#define MESHZERO_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes jansson: records and query results are JSON objects (json_t), as on the wire. */
#include <jansson.h>

#include "meshzero/err.h"

/* Field limits of a record (PROTOCOL.md "Records"). */
#define MZ_RESOURCE_ID_MAX   128   /* bytes of resource_id */
#define MZ_RESOURCE_TYPE_MAX 64    /* bytes of resource_type */
#define MZ_OWNER_MAX         128   /* bytes of owner */
#define MZ_CAP_MAX           64    /* bytes of one capability */
#define MZ_CAPS_MAX          64    /* capabilities per record */
#define MZ_METADATA_MAX      16384 /* bytes of canonical metadata JSON */

typedef struct mz_directory mz_directory;
typedef struct mz_record mz_record;

/* What mz_directory_put did. */
typedef enum { MZ_DIR_UNCHANGED = 0, MZ_DIR_ADDED, MZ_DIR_UPDATED } mz_dir_change;

/* Where a record lives relative to this node. */
typedef enum { MZ_LOC_ANY = 0, MZ_LOC_LOCAL, MZ_LOC_REMOTE } mz_location;

typedef struct mz_query {
    const char *resource_type;         /* NULL: any type */
    const char *const *capabilities;   /* record must have ALL of these */
    size_t n_capabilities;
    const char *owner;                 /* NULL: any owner */
    const char *node;                  /* NULL: any hosting node */
    mz_location location;              /* MZ_LOC_ANY by default */
    size_t limit;                      /* 0: no limit */
} mz_query;

/* Checks a record's JSON form: resource_id, resource_type, owner,
 * capabilities, metadata, node, version, owner_key, signature (location
 * optional and ignored). err names the field and what was expected. MZ_EPROTO. */
mz_status mz_record_validate(const json_t *rec, mz_err *err);

/* Returns new: an empty directory, freed with mz_directory_free. */
mz_status mz_directory_new(mz_directory **out, mz_err *err);
void mz_directory_free(mz_directory *dir);

/* Stores a copy of rec (borrowed; must have passed mz_record_validate).
 * local: hosted by this node. A record with the same resource_id and the
 * same owner_key is replaced when rec's version is higher (*change UPDATED;
 * the host may change), kept when not (UNCHANGED: no rollback). A
 * resource_id held by another owner key is refused with MZ_EEXIST (no
 * takeover). change may be NULL. */
mz_status mz_directory_put(mz_directory *dir, const json_t *rec, bool local,
                           mz_dir_change *change, mz_err *err);

/* Removes resource_id if it is hosted by node (node NULL: any). MZ_ENOTFOUND
 * when absent or hosted elsewhere. */
mz_status mz_directory_remove(mz_directory *dir, const char *resource_id,
                              const char *node, mz_err *err);

/* Borrowed: valid until the record is replaced or removed. NULL if absent. */
const mz_record *mz_directory_get(const mz_directory *dir, const char *resource_id);
size_t mz_directory_count(const mz_directory *dir);
/* Records hosted by node / signed by owner_key (O(1), for the limits). */
size_t mz_directory_count_node(const mz_directory *dir, const char *node);
size_t mz_directory_count_owner_key(const mz_directory *dir, const char *owner_key);

/* Borrowed accessors, valid as long as the record. */
const char *mz_record_id(const mz_record *rec);
const char *mz_record_type(const mz_record *rec);
const char *mz_record_node(const mz_record *rec);
const char *mz_record_owner(const mz_record *rec);
/* The metadata as stored: compact JSON with sorted keys. */
const char *mz_record_metadata_text(const mz_record *rec);
/* The owner's Ed25519 public key (64 hex) that signs the record. */
const char *mz_record_owner_key(const mz_record *rec);
int64_t mz_record_version(const mz_record *rec);
bool mz_record_local(const mz_record *rec);
/* Returns new: the record's JSON form with "location" set. NULL on ENOMEM. */
json_t *mz_record_to_json(const mz_record *rec);

/* Calls fn for each record matching q, at most q->limit times; fn returns
 * false to stop. fn must not modify the directory; fn NULL only counts, q
 * NULL matches everything. Uses the smallest of the type, (type,
 * capability), capability and node indexes as the candidate set: never a
 * full scan when a type, capability or node is given. No per-call
 * allocation. Returns the number of matches reported. */
size_t mz_directory_query(const mz_directory *dir, const mz_query *q,
                          bool (*fn)(const mz_record *rec, void *ctx), void *ctx);
/* Returns new: a JSON array of the matching records' JSON forms. */
json_t *mz_directory_query_json(const mz_directory *dir, const mz_query *q);

/* Calls fn for every record (fn must not modify the directory). */
void mz_directory_foreach(const mz_directory *dir,
                          bool (*fn)(const mz_record *rec, void *ctx), void *ctx);

/* Removes every record hosted by node, calling on_removed (may be NULL)
 * with each record just before it goes. Returns how many went. */
size_t mz_directory_remove_node(mz_directory *dir, const char *node,
                                void (*on_removed)(const mz_record *rec, void *ctx),
                                void *ctx);

#endif
