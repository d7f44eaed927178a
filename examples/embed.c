/* Embedding a meshzero node: start a node on your own libuv loop, register a
 * resource, query the directory, and stop after a few seconds.
 *
 *   ./embed [PEER_URL]
 *
 * Against an installed meshzero (cmake --install):
 *   cc examples/embed.c $(pkg-config --cflags --libs meshzero) -o embed
 */
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "meshzero.h"

static void on_timer(uv_timer_t *t)
{
    mz_node *node = t->data;
    mz_query q = { 0 };
    const char *caps[] = { "image_processing" };
    json_t *found;
    char *text;

    q.resource_type = "agent";
    q.capabilities = caps;
    q.n_capabilities = 1;
    found = mz_node_query_resources(node, &q);
    text = found ? json_dumps(found, JSON_INDENT(2)) : NULL;
    printf("agents with image_processing:\n%s\n", text ? text : "(out of memory)");
    free(text);
    json_decref(found);
    uv_close((uv_handle_t *)t, NULL);
    mz_node_stop(node);              /* uv_run returns once everything closed */
}

int main(int argc, char **argv)
{
    const char *peers[1] = { argc > 1 ? argv[1] : NULL };
    const char *caps[] = { "image_processing", "text_analysis" };
    mz_node_opts o = { 0 };
    mz_resource_spec spec = { 0 };
    mz_node *node;
    uv_loop_t loop;
    uv_timer_t timer;
    json_t *rec;
    mz_err err;

    /* The header's version and the linked library's agree unless a program
     * runs against another build of the shared library. */
    printf("meshzero %s (built against %s)\n", mz_version(), MZ_VERSION_STRING);
    uv_loop_init(&loop);
    o.loop = &loop;
    o.listen_url = "ws://127.0.0.1:0";   /* any free port */
    o.peers = peers;
    o.n_peers = argc > 1 ? 1 : 0;
    if (mz_node_new(&o, &node, &err) != MZ_OK) {
        fprintf(stderr, "embed: %s\n", err.msg);
        return 1;
    }
    printf("node %s listening on %s\n", mz_node_id(node), mz_node_listen_url(node));

    spec.resource_id = "agent123";
    spec.resource_type = "agent";
    spec.owner = "user456";
    spec.capabilities = caps;
    spec.n_capabilities = 2;
    if (mz_node_register_resource(node, &spec, &rec, &err) != MZ_OK) {
        fprintf(stderr, "embed: %s\n", err.msg);
        mz_node_free(node);
        return 1;
    }
    printf("registered %s version %lld\n", spec.resource_id,
           (long long)json_integer_value(json_object_get(rec, "version")));
    json_decref(rec);

    uv_timer_init(&loop, &timer);
    timer.data = node;
    uv_timer_start(&timer, on_timer, 1000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    mz_node_free(node);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
