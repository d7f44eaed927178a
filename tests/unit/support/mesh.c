/* See mesh.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

static void s_die(const char *what, const char *why)
{
    fprintf(stderr, "mesh: %s: %s\n", what, why);
    abort();
}

static void s_noop(uv_timer_t *t)
{
    (void)t;
}

void mt_init(mt_mesh *m)
{
    mz_err e;

    memset(m, 0, sizeof *m);
    if (uv_loop_init(&m->loop) != 0)
        s_die("uv_loop_init", "failed");
    if (mz_memnet_new(&m->loop, &m->net, &e) != MZ_OK)
        s_die("mz_memnet_new", e.msg);
    uv_timer_init(&m->loop, &m->poll);
    uv_timer_start(&m->poll, s_noop, 10, 10);
    uv_unref((uv_handle_t *)&m->poll);     /* never what keeps the loop alive */
}

void mt_free(mt_mesh *m)
{
    for (size_t i = 0; i < m->n; i++)
        mz_node_stop(m->nodes[i]);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < m->n; i++)
        mz_node_free(m->nodes[i]);
    uv_close((uv_handle_t *)&m->poll, NULL);
    mz_memnet_free(m->net);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m->loop) != 0)
        s_die("uv_loop_close", "handles left on the loop");
}

mz_node *mt_node(mt_mesh *m, const mz_node_opts *o)
{
    mz_node_opts opts;
    mz_err e;

    if (m->n == MT_MAX_NODES)
        s_die("mt_node", "too many nodes");
    if (o != NULL)
        opts = *o;
    else
        memset(&opts, 0, sizeof opts);
    opts.loop = &m->loop;
    opts.listen_url = "ws://127.0.0.1:0";
    opts.transport = mz_memnet_transport(m->net);
    if (mz_node_new(&opts, &m->nodes[m->n], &e) != MZ_OK)
        s_die("mz_node_new", e.msg);
    return m->nodes[m->n++];
}

bool mt_linked(mz_node *a, mz_node *b)
{
    json_t *peers = mz_node_peers(a), *p;
    bool found = false;
    size_t i;

    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (id != NULL && strcmp(id, mz_node_id(b)) == 0)
            found = true;
    }
    json_decref(peers);
    return found;
}

typedef struct pair {
    mz_node *a, *b;
} pair;

static bool s_both_linked(void *ctx)
{
    pair *p = ctx;

    return mt_linked(p->a, p->b) && mt_linked(p->b, p->a);
}

bool mt_link(mt_mesh *m, mz_node *from, mz_node *to)
{
    pair p = { from, to };
    mz_err e;

    if (mz_node_connect_to_peer(from, mz_node_listen_url(to), NULL, NULL, &e) != MZ_OK)
        s_die("mz_node_connect_to_peer", e.msg);
    return mt_run_until(m, s_both_linked, &p, MT_DEADLINE_MS);
}

bool mt_run_until(mt_mesh *m, mt_cond_fn cond, void *ctx, int64_t deadline_ms)
{
    uint64_t end;

    uv_update_time(&m->loop);
    end = uv_now(&m->loop) + (uint64_t)deadline_ms;
    while (!cond(ctx) && uv_now(&m->loop) < end) {
        uv_ref((uv_handle_t *)&m->poll);       /* ONCE must not block past a poll */
        uv_run(&m->loop, UV_RUN_ONCE);
        uv_unref((uv_handle_t *)&m->poll);
    }
    return cond(ctx);
}

void mt_settle(mt_mesh *m)
{
    /* Bounded: a mesh that never goes quiet fails the test's later checks. */
    for (int i = 0; i < 1000; i++) {
        uv_run(&m->loop, UV_RUN_NOWAIT);
        if (mz_memnet_run(m->net, 100000) == 0)
            return;
    }
}

int64_t mt_counter(mz_node *n, const char *name)
{
    json_t *st = mz_node_status(n);
    const json_t *v = json_object_get(json_object_get(st, "counters"), name);
    int64_t r = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;

    json_decref(st);
    return r;
}

bool mt_has(mz_node *n, const char *resource_id)
{
    return mz_directory_get(mz_node_directory(n), resource_id) != NULL;
}

void mt_register(mz_node *n, const char *resource_id)
{
    mz_resource_spec spec;
    mz_err e;

    memset(&spec, 0, sizeof spec);
    spec.resource_id = resource_id;
    spec.resource_type = "test";
    if (mz_node_register_resource(n, &spec, NULL, &e) != MZ_OK)
        s_die("mz_node_register_resource", e.msg);
}
