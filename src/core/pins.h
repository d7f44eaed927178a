/* Tool pinning: a caller names the tool_hash it approved, and its own node
 * refuses the call before sending when the signed record it holds says the
 * tool's definition is now another one (docs/MCP.md "Pinning"). */
#ifndef MZ_CORE_PINS_H
#define MZ_CORE_PINS_H

#include <stddef.h>

#include "meshzero/node.h"

/* The execute failure code of a pinned call whose tool changed. */
#define MZ_EXEC_DEFINITION_CHANGED "definition_changed"

/* Checks resource_id's record in node's directory against expected (a
 * tool_hash). Returns NULL when they agree; otherwise the failure code
 * (MZ_EXEC_DEFINITION_CHANGED, or "not_found" when the node knows no such
 * resource) with a sentence in msg naming both hashes. */
const char *mz_pin_check(const mz_node *node, const char *resource_id, const char *expected,
                         char *msg, size_t msg_len);

/* The record's metadata.tool_hash (borrowed from rec), or NULL. */
const char *mz_pin_record_hash(const json_t *rec);

#endif
