/* MCP views: named subsets of the mesh's tools that the export presents at
 * /mcp/<view> and `meshzero mcp --view NAME`, defined in the node's config
 * (key "mcp-views"), optionally pinning each tool's tool_hash so that a
 * changed definition is refused until approved. docs/MCP.md "Views". */
#ifndef MZ_SVC_MCP_VIEW_H
#define MZ_SVC_MCP_VIEW_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "meshzero/err.h"
#include "meshzero/node.h"

/* Views one node defines at most. */
#define MZ_MCP_VIEWS_MAX 64
/* Values one filter key (capability, tag) takes at most. */
#define MZ_MCP_VIEW_VALUES_MAX 16
/* Pins one view keeps at most (first use beyond it: not pinned, logged). */
#define MZ_MCP_PINS_MAX 10000
/* The pin store in the node's data directory. */
#define MZ_MCP_PINS_FILE "mcp-pins.json"

typedef struct mz_mcpview mz_mcpview;
typedef struct mz_mcpviews mz_mcpviews;

/* One view from its definition (borrowed): {type?, capability?, tag?,
 * owner?, node?, pin?, pins?}. Returns new. MZ_EINVAL naming the view and
 * key for anything else. */
mz_status mz_mcpview_parse(const char *name, const json_t *def, mz_mcpview **out, mz_err *err);
void mz_mcpview_free(mz_mcpview *v);        /* NULL-safe */
const char *mz_mcpview_name(const mz_mcpview *v);
/* The resource type presented: "tool" by default, "*" for every type. */
const char *mz_mcpview_type(const mz_mcpview *v);
bool mz_mcpview_pins(const mz_mcpview *v);
/* True when a record (borrowed) belongs to the view. */
bool mz_mcpview_match(const mz_mcpview *v, const json_t *record);

/* Every view of a node: views is the "mcp-views" object's JSON text (NULL:
 * none); pins are kept in data_dir/MZ_MCP_PINS_FILE (data_dir NULL: in
 * memory only). Returns new. */
mz_status mz_mcpviews_new(const char *views, const char *data_dir, mz_mcpviews **out,
                          mz_err *err);
void mz_mcpviews_free(mz_mcpviews *vs);     /* NULL-safe */
size_t mz_mcpviews_count(const mz_mcpviews *vs);
const mz_mcpview *mz_mcpviews_at(const mz_mcpviews *vs, size_t i);
/* NULL when no such view (vs may be NULL). */
const mz_mcpview *mz_mcpviews_find(const mz_mcpviews *vs, const char *name);
/* "unknown MCP view 'X' (known views: a, b)" into buf. */
void mz_mcpviews_unknown(const mz_mcpviews *vs, const char *name, char *buf, size_t n);
/* Called after an approval changed what view v presents. */
void mz_mcpviews_on_change(mz_mcpviews *vs, void (*fn)(void *ctx, const mz_mcpview *v),
                           void *ctx);

/* Returns new: the records of the view in node's directory. In a pinning
 * view each record with a tool_hash also gets "pin": {"pinned", "current"}
 * (a local annotation, not part of the signed record); a tool seen for the
 * first time is pinned to its current hash. NULL when out of memory. */
json_t *mz_mcpviews_records(mz_mcpviews *vs, const mz_mcpview *v, mz_node *node);

/* The local API's mcp_view {view} -> {view, definition, pin, records} and
 * mcp_approve {tool, view?} -> {approved: [{view, tool, resource_id,
 * tool_hash, previous}]} on node's views vs (NULL: MZ_ESTATE, no bridge).
 * MZ_ENOTFOUND for an unknown view or tool, MZ_EINVAL for bad params. */
mz_status mz_mcpviews_api(mz_mcpviews *vs, mz_node *node, const char *method,
                          const json_t *params, json_t **result, mz_err *err);

#endif
