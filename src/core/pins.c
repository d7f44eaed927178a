/* Tool pinning at the caller's node (pins.h). The check sits here, before
 * anything is sent: the record is the one this node verified (signed by the
 * host), and the host is the party a rug-pull comes from, so asking it to
 * enforce the pin would prove nothing. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/pins.h"
#include "meshzero/directory.h"

const char *mz_pin_record_hash(const json_t *rec)
{
    return json_string_value(json_object_get(json_object_get(rec, "metadata"), "tool_hash"));
}

const char *mz_pin_check(const mz_node *node, const char *rid, const char *expected, char *msg,
                         size_t msg_len)
{
    const mz_record *r = mz_directory_get(mz_node_directory(node), rid);
    const char *text = r ? mz_record_metadata_text(r) : NULL;
    json_t *meta = text ? json_loads(text, 0, NULL) : NULL;
    const char *now = json_string_value(json_object_get(meta, "tool_hash"));
    const char *code = NULL;

    if (r == NULL) {
        snprintf(msg, msg_len, "no resource '%.128s' is known to this node", rid);
        code = "not_found";
    } else if (now == NULL || strcmp(now, expected) != 0) {
        snprintf(msg, msg_len, "the definition of '%.100s' changed since it was pinned: "
                 "pinned tool_hash %.64s, now %.64s", rid, expected, now ? now : "none");
        code = MZ_EXEC_DEFINITION_CHANGED;
    }
    json_decref(meta);
    return code;
}
