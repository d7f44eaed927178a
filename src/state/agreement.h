/* The host side of agreements: the usage store and the check exec.c makes
 * before running a call to a resource that requires an agreement.
 * docs/AGREEMENTS.md "Usage counting". Loop-thread only. */
#ifndef MZ_AGREEMENT_INT_H
#define MZ_AGREEMENT_INT_H

#include <stdint.h>

#include <jansson.h>

#include "meshzero/agreement.h"
#include "meshzero/err.h"
#include "meshzero/node.h"

/* Usage counters per (provider, agreement_id), in SQLite. */
typedef struct mz_agreements mz_agreements;

/* Opens (creating it and its schema) DATA_DIR/agreements.db in WAL mode
 * with synchronous=FULL; data_dir NULL keeps the counters in memory (tests,
 * nodes without a data directory). A store written by a newer schema
 * version is refused. A file's connection is closed again once checked and
 * reopened by the first mz_agreements_check or usage call, whose MZ_EIO
 * then names the file. Returns new: free with mz_agreements_free. MZ_EIO
 * naming the file, MZ_ENOMEM. */
mz_status mz_agreements_open(const char *data_dir, mz_agreements **out, mz_err *err);
/* Closes the database; NULL-safe. */
void mz_agreements_free(mz_agreements *a);

/* Validates agreement (borrowed; NULL or JSON null when the call carried
 * none) for a call by caller_id (the authenticated caller's node id) to
 * method of resource_id, whose owner key is provider_key_hex (64 hex), at
 * now_ms. When every check passes, counts the call in one transaction (read
 * the counters, check the limits, increment, commit) that is on disk before
 * MZ_OK returns. Returns:
 *   MZ_OK      allowed and counted; *reason = NULL
 *   MZ_ELIMIT  refused; *reason is a static MZ_AGR_* string ("missing",
 *              "bad_signature", "wrong_consumer", "wrong_resource",
 *              "method_not_allowed", "not_yet_valid", "expired",
 *              "over_limit") and err says why in a sentence
 *   MZ_EIO     the store failed (nothing counted; refuse the call)
 *   MZ_ENOMEM
 * reason may be NULL. */
mz_status mz_agreements_check(mz_agreements *a, const json_t *agreement,
                              const char *provider_key_hex, const char *caller_id,
                              const char *resource_id, const char *method, int64_t now_ms,
                              const char **reason, mz_err *err);

/* Usage of agreement_id as of now: returns new *out
 * {agreement_id, day, total, today, last_used, providers: [{provider,
 * consumer, total, today, last_used}]}; day is the current UTC day
 * (YYYY-MM-DD), total and today sum over every provider that issued this id
 * (normally one), last_used is RFC 3339 or null. An id never used counts 0.
 * MZ_EINVAL for an id that is not 1-64 of [A-Za-z0-9._:-]; MZ_EIO; MZ_ENOMEM. */
mz_status mz_agreements_usage(mz_agreements *a, const char *agreement_id, json_t **out,
                              mz_err *err);
/* The same as of now_ms (tests). */
mz_status mz_agreements_usage_at(mz_agreements *a, const char *agreement_id, int64_t now_ms,
                                 json_t **out, mz_err *err);

/* The local API method agreement_usage {agreement_id} -> usage (api.c
 * calls it with the node's store). a NULL: MZ_ESTATE. */
mz_status mz__agreements_api_usage(mz_agreements *a, const json_t *params, json_t **result,
                                   mz_err *err);

#endif
