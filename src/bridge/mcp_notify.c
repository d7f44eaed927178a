/* Coalescing of list_changed notifications for the MCP export: one change
 * (a server added, removed or relisted somewhere in the mesh) reaches a
 * node as a burst of resource events, spread over the links and paths they
 * travel; the client is told once, when the burst has been quiet for
 * MZ_MCP_NOTIFY_QUIET_MS, and at the latest MZ_MCP_NOTIFY_MAX_MS after its
 * first event. docs/MCP.md. */
#include <stdlib.h>

#include "bridge/bridge_int.h"

struct mz_mcpnotify {
    uv_timer_t timer;
    void (*fn)(void *ctx);
    void *ctx;
    uint64_t first_ms;          /* first event of the pending burst; 0: none */
};

static void s_fire(uv_timer_t *t)
{
    mz_mcpnotify *n = t->data;

    n->first_ms = 0;
    n->fn(n->ctx);
}

mz_mcpnotify *mz__mcpnotify_new(uv_loop_t *loop, void (*fn)(void *ctx), void *ctx)
{
    mz_mcpnotify *n = calloc(1, sizeof *n);

    if (n == NULL)
        return NULL;
    n->fn = fn;
    n->ctx = ctx;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    uv_unref((uv_handle_t *)&n->timer);
    return n;
}

void mz__mcpnotify_poke(mz_mcpnotify *n)
{
    uint64_t now = uv_now(n->timer.loop), wait = MZ_MCP_NOTIFY_QUIET_MS;

    if (n->first_ms == 0)
        n->first_ms = now;
    else if (n->first_ms + MZ_MCP_NOTIFY_MAX_MS <= now + wait)
        wait = n->first_ms + MZ_MCP_NOTIFY_MAX_MS > now ? n->first_ms + MZ_MCP_NOTIFY_MAX_MS - now
                                                          : 0;
    uv_timer_start(&n->timer, s_fire, wait, 0);
}

static void s_closed(uv_handle_t *h)
{
    free(h->data);
}

void mz__mcpnotify_free(mz_mcpnotify *n)
{
    if (n == NULL)
        return;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, s_closed);
}
