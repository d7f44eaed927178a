/* execute_remote benchmark, one process per node.
 *
 *   bench_exec host              runs a node hosting "echo" (C handler that
 *                                returns its params); prints its listen URL
 *   bench_exec drive URL [--json] [--calls N] [--inflight K] [--seconds S]
 *                                runs a node linked to URL, waits for "echo",
 *                                then measures one call in flight (p50/p99)
 *                                and K in flight (calls/s)
 *
 * A relay between them is a plain `meshzero node --peer HOST_URL`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

#include <uv.h>

#include "meshzero.h"
#include "benchlib.h"

/* ---- host --------------------------------------------------------------- */

static void s_echo(mz_node *node, mz_exec *x, void *ctx)
{
    (void)node;
    (void)ctx;
    mz_exec_reply(x, json_incref((json_t *)mz_exec_params(x)));
}

static uv_signal_t s_sig;
static void s_on_sig(uv_signal_t *h, int sig)
{
    (void)sig;
    mz_node_stop(h->data);
}

static bool s_no_seal;          /* --no-seal: unicasts signed, not sealed */

static int s_host(void)
{
    uv_loop_t loop;
    mz_node_opts o;
    mz_node *node;
    mz_resource_spec spec;
    const char *caps[] = { "echo" };
    mz_err e;

    uv_loop_init(&loop);
    memset(&o, 0, sizeof o);
    o.loop = &loop;
    o.listen_url = "ws://127.0.0.1:0";
    o.max_running = 4096;
    o.max_running_per_caller = 4096;
    o.no_seal = s_no_seal;
    if (mz_node_new(&o, &node, &e) != MZ_OK) {
        fprintf(stderr, "bench host: %s\n", e.msg);
        return 1;
    }
    memset(&spec, 0, sizeof spec);
    spec.resource_id = "echo";
    spec.resource_type = "tool";
    spec.capabilities = caps;
    spec.n_capabilities = 1;
    if (mz_node_register_resource(node, &spec, NULL, &e) != MZ_OK ||
        mz_node_set_handler(node, "echo", NULL, s_echo, NULL, &e) != MZ_OK) {
        fprintf(stderr, "bench host: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", mz_node_listen_url(node));
    fflush(stdout);
    uv_signal_init(&loop, &s_sig);
    s_sig.data = node;
    uv_signal_start(&s_sig, s_on_sig, SIGTERM);
    uv_unref((uv_handle_t *)&s_sig);
    uv_run(&loop, UV_RUN_DEFAULT);
    mz_node_free(node);
    uv_close((uv_handle_t *)&s_sig, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

/* ---- driver ------------------------------------------------------------- */

typedef struct drive {
    uv_loop_t loop;
    mz_node *node;
    uv_timer_t tick;
    int phase;                  /* 0 wait, 1 latency, 2 throughput, 3 done */
    long calls, done, errors, inflight_max, inflight;
    double *lat;
    double t0, t_end, seconds;
    long tp_done;
    json_t *params;
    double started_us;
} drive;

static void s_issue(drive *d);

static void s_on_result(mz_node *node, const json_t *result, const char *code, const char *msg,
                        void *ctx)
{
    drive *d = ctx;

    (void)node;
    (void)result;
    if (code) {
        d->errors++;
        if (d->errors < 5)
            fprintf(stderr, "bench drive: %s: %s\n", code, msg);
    }
    d->inflight--;
    if (d->phase == 1) {
        d->lat[d->done++] = bench_now_us() - d->started_us;
        if (d->done < d->calls) {
            s_issue(d);
        } else {
            d->phase = 2;
            d->t0 = bench_now_us();
            for (long i = 0; i < d->inflight_max; i++)
                s_issue(d);
        }
    } else if (d->phase == 2) {
        d->tp_done++;
        if (bench_now_us() - d->t0 < d->seconds * 1e6)
            s_issue(d);
        else if (d->inflight == 0) {
            d->t_end = bench_now_us();
            d->phase = 3;
            mz_node_stop(d->node);
        }
    }
}

static void s_issue(drive *d)
{
    mz_err e;

    d->started_us = bench_now_us();
    d->inflight++;
    if (mz_node_execute_remote(d->node, "echo", "echo", d->params, 5000, s_on_result, d, &e) !=
        MZ_OK) {
        fprintf(stderr, "bench drive: %s\n", e.msg);
        d->inflight--;
        d->errors++;
    }
}

static void s_on_tick(uv_timer_t *t)
{
    drive *d = t->data;

    if (d->phase == 0 && mz_directory_get(mz_node_directory(d->node), "echo") != NULL) {
        /* Wait one more tick so routes settle, then start. */
        d->phase = 1;
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        s_issue(d);
    }
}

static int s_drive(int argc, char **argv)
{
    drive d;
    mz_node_opts o;
    mz_err e;
    const char *peers[1];
    bool json = false;

    memset(&d, 0, sizeof d);
    d.calls = 2000;
    d.inflight_max = 64;
    d.seconds = 2.0;
    peers[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) d.calls = atol(argv[++i]);
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
            d.inflight_max = atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) d.seconds = atof(argv[++i]);
    }
    d.lat = calloc((size_t)d.calls, sizeof *d.lat);
    /* A 200-byte JSON payload, as in the reference figures. */
    d.params = json_loads(BENCH_PAYLOAD, 0, NULL);
    uv_loop_init(&d.loop);
    memset(&o, 0, sizeof o);
    o.loop = &d.loop;
    o.listen_url = "ws://127.0.0.1:0";
    o.peers = peers;
    o.n_peers = 1;
    o.no_seal = s_no_seal;
    if (mz_node_new(&o, &d.node, &e) != MZ_OK) {
        fprintf(stderr, "bench drive: %s\n", e.msg);
        return 1;
    }
    uv_timer_init(&d.loop, &d.tick);
    d.tick.data = &d;
    uv_timer_start(&d.tick, s_on_tick, 20, 20);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    mz_node_free(d.node);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    json_decref(d.params);
    if (d.done < d.calls) {
        fprintf(stderr, "bench drive: only %ld of %ld calls completed\n", d.done, d.calls);
        free(d.lat);
        return 1;
    }
    qsort(d.lat, (size_t)d.calls, sizeof *d.lat, bench_cmp_double);
    {
        double p50 = d.lat[d.calls / 2], p99 = d.lat[(d.calls * 99) / 100];
        double tput = (double)d.tp_done / ((d.t_end - d.t0) / 1e6);
        if (json)
            printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"calls_per_s\":%.0f,\"errors\":%ld}\n", p50,
                   p99, tput, d.errors);
        else
            printf("p50 %.1f us  p99 %.1f us  %ld in flight: %.0f calls/s  errors %ld\n", p50, p99,
                   d.inflight_max, tput, d.errors);
    }
    free(d.lat);
    return d.errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--no-seal") == 0)
            s_no_seal = true;
    if (argc >= 2 && strcmp(argv[1], "host") == 0)
        return s_host();
    if (argc >= 3 && strcmp(argv[1], "drive") == 0)
        return s_drive(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_exec host | bench_exec drive URL [--json] [--calls N] "
                    "[--inflight K] [--seconds S]\n");
    return 2;
}
