/* Several real nodes in one process, on one libuv loop, linked by the
 * in-memory transport (src/net/memnet.h), driven only through the public
 * node API. The one way to wait is mt_run_until: the loop runs until a
 * condition holds or a deadline passes; never a sleep. */
#ifndef MZ_TEST_MESH_H
#define MZ_TEST_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "meshzero.h"
#include "net/memnet.h"

#define MT_MAX_NODES 8
/* Default deadline of a wait, ms: generous, since the machine may be loaded. */
#define MT_DEADLINE_MS 10000

typedef struct mt_mesh {
    uv_loop_t loop;
    uv_timer_t poll;            /* wakes uv_run(ONCE) so deadlines are checked */
    mz_memnet *net;
    mz_node *nodes[MT_MAX_NODES];
    size_t n;
} mt_mesh;

typedef bool (*mt_cond_fn)(void *ctx);

/* A mesh with no nodes yet. Aborts on failure (a broken test set-up). */
void mt_init(mt_mesh *m);
/* Stops and frees every node and the network; the loop must close clean. */
void mt_free(mt_mesh *m);

/* A new node on the mesh listening on the network; o may be NULL (defaults)
 * and is copied (loop, listen URL and transport are set here). */
mz_node *mt_node(mt_mesh *m, const mz_node_opts *o);
/* from dials to's listener (connect_to_peer) and waits until both list each
 * other as peers. */
bool mt_link(mt_mesh *m, mz_node *from, mz_node *to);
/* True when a lists b as a linked peer. */
bool mt_linked(mz_node *a, mz_node *b);

/* Runs the loop until cond(ctx) holds (true) or deadline_ms pass (false). */
bool mt_run_until(mt_mesh *m, mt_cond_fn cond, void *ctx, int64_t deadline_ms);
/* Runs until nothing is left in flight on the network and the loop has
 * nothing due now: every message sent so far has been handled. */
void mt_settle(mt_mesh *m);

/* The counter `name` of mz_node_status, or -1 when there is none. */
int64_t mt_counter(mz_node *n, const char *name);
/* True when n's directory holds resource_id. */
bool mt_has(mz_node *n, const char *resource_id);
/* Registers a resource of type "test" hosted by n; aborts on failure. */
void mt_register(mz_node *n, const char *resource_id);

#endif
