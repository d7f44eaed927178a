/* HTTP on the local API listener: one route table (http.c) in front of the
 * node's HTTP hook. A page answers a GET with a whole body; a handler (the
 * MCP endpoint) takes lws's HTTP callbacks for its path itself. The API's
 * access rules apply to every route: the listener is loopback unless
 * --api-allow-remote, and the connection manager checks the token first. */
#ifndef MZ_SVC_HTTP_H
#define MZ_SVC_HTTP_H

#include "meshzero/node.h"

/* A page's answer: status, content type (static) and body (malloc'd, taken). */
typedef struct mz_http_page {
    int status;
    const char *ctype;
    char *body;
    size_t len;
} mz_http_page;

/* Fills *out for GET path (the URL path, without the query). wsi is the
 * struct lws * of the request, for headers and arguments. */
typedef void (*mz_http_page_fn)(mz_node *node, void *wsi, const char *path, mz_http_page *out);

/* Bytes at the start of the connection's area (MZ_HTTP_PSS_SIZE) that a
 * handler may use; the router keeps the rest. */
#define MZ_HTTP_ROUTE_PSS 48

/* Starts / stops the route table on node (the node's HTTP hook). */
mz_status mz__http_start(mz_node *node, mz_err *err);
void mz__http_stop(mz_node *node);
/* Adds a handler for path (exact; "/x/" also matches below it), replacing
 * one there. It also sees requests no route claimed before LWS_CALLBACK_HTTP
 * (WebSocket upgrade checks); return 1 there for "not mine". */
mz_status mz__http_handle(mz_node *node, const char *path, mz_http_fn fn, void *ctx,
                          mz_err *err);
void mz__http_unhandle(mz_node *node, const char *path);
/* Adds the page answering GET path (exact; "/x/" also matches below it),
 * replacing one there. */
mz_status mz__http_page(mz_node *node, const char *path, mz_http_page_fn fn, mz_err *err);
/* ctx of the handler at path, or NULL. */
void *mz__http_handler_ctx(const mz_node *node, const char *path, mz_http_fn fn);

/* `status` with the API's own counter (api.c). New. */
json_t *mz__api_status(mz_node *node);
uint64_t mz__api_calls(mz_node *node);

/* Adds /metrics, /health and /status to node's route table (metrics.c). */
mz_status mz__metrics_attach(mz_node *node, mz_err *err);

#endif
