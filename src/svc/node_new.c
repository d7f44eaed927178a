/* The public constructor: the core node (core/node.c) with the local API
 * (api.c) attached through the node's service hook, and the pages of the
 * API listener's HTTP side (metrics.c). It sits above the core
 * so that the core never names the services built on it. */
#include "core/hooks.h"
#include "svc/http.h"

mz_status mz_node_new(const mz_node_opts *opts, mz_node **out, mz_err *err)
{
    mz_node *node;
    mz_status rc = mz__node_create(opts, &node, err);

    *out = NULL;
    if (rc != MZ_OK)
        return rc;
    /* The API brings the listener's HTTP route table; metrics adds its pages. */
    if ((rc = mz__api_attach(node, err)) != MZ_OK ||
        (rc = mz__metrics_attach(node, err)) != MZ_OK) {
        mz_node_free(node);
        return rc;
    }
    *out = node;
    return MZ_OK;
}
