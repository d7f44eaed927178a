/* Hooks of the core node for the services above it (svc/, bridge/): they
 * register here, and the core forwards to them without naming them, so the
 * link graph has no circle (scripts/linkgraph.py). Defined in node.c. */
#ifndef MZ_CORE_HOOKS_H
#define MZ_CORE_HOOKS_H

#include "meshzero/connmgr.h"
#include "meshzero/node.h"

struct mz_bridge;

/* Serves the links of the API listener (the local API, svc/api.c). */
typedef struct mz__link_service {
    void (*on_open)(void *ctx, mz_link *link);
    void (*on_message)(void *ctx, mz_link *link, const char *buf, size_t len);
    void (*on_close)(void *ctx, mz_link *link);
    void (*free)(void *ctx);    /* by mz_node_free, after the links are gone */
    /* A request over max_api_message (limit) arrived, head its first bytes;
     * it is discarded and the link stays open. */
    void (*on_oversize)(void *ctx, mz_link *link, const char *head, size_t head_len,
                        size_t limit);
} mz__link_service;
/* Attaches svc (borrowed, static) with ctx (owned: svc->free frees it). */
void mz__node_set_api_service(mz_node *node, const mz__link_service *svc, void *ctx);
/* The core node without any service: mz_node_new (svc/node_new.c) is this
 * plus the local API. Same contract as mz_node_new. */
mz_status mz__node_create(const mz_node_opts *opts, mz_node **out, mz_err *err);
/* The bridge registered for the node (NULL: none); b borrowed. */
void mz__node_set_bridge(mz_node *node, struct mz_bridge *b);
struct mz_bridge *mz__node_bridge(const mz_node *node);
/* The ctx of the node's HTTP handler (mz_node_set_http_handler), or NULL. */
void *mz__node_http_ctx(const mz_node *node);
/* Whether the API listener requires the API token (svc/mcp_http.c lets a
 * page the listener served open the API WebSocket only then). */
bool mz__node_api_token_required(const mz_node *node);

/* svc/api.c: attaches the local API service to node. */
mz_status mz__api_attach(mz_node *node, mz_err *err);

#endif
