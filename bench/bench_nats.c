/* NATS request/reply through nats-server with the C client (libnats, Debian
 * libnats-dev), SendAsap on: the same workload as bench_exec.
 *
 *   bench_nats respond URL       answers every request on "mzbench.echo"
 *                                with its payload; prints "ready"
 *   bench_nats request URL [--json] [--calls N] [--inflight K] [--seconds S]
 *                                one request in flight (natsConnection_Request:
 *                                p50/p99), then K in flight for S seconds
 *                                (pipelined on one reply inbox: round trips/s)
 *
 * Built only when libnats is found (CMakeLists.txt, end). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include <nats/nats.h>

#include "benchlib.h"

#define SUBJECT "mzbench.echo"

static const char s_payload[] = BENCH_PAYLOAD;

/* Connects with SendAsap on, retrying up to ~5 s while the server starts. */
static natsConnection *s_connect(const char *url)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsStatus s;

    if (natsOptions_Create(&opts) != NATS_OK || natsOptions_SetURL(opts, url) != NATS_OK ||
        natsOptions_SetSendAsap(opts, true) != NATS_OK) {
        fprintf(stderr, "bench_nats: options: %s\n", nats_GetLastError(NULL));
        natsOptions_Destroy(opts);
        return NULL;
    }
    for (int i = 0; i < 100; i++) {
        if ((s = natsConnection_Connect(&nc, opts)) == NATS_OK)
            break;
        usleep(50000);
    }
    if (nc == NULL)
        fprintf(stderr, "bench_nats: cannot connect to %s: %s\n", url, natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    return nc;
}

/* ---- responder ---------------------------------------------------------- */

static volatile sig_atomic_t s_stop;

static void s_on_sig(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)sub;
    (void)closure;
    if (natsMsg_GetReply(m) != NULL)
        natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m),
                               natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
}

static int s_respond(const char *url)
{
    natsConnection *nc = s_connect(url);
    natsSubscription *sub = NULL;
    struct sigaction sa;

    if (nc == NULL)
        return 1;
    if (natsConnection_Subscribe(&sub, nc, SUBJECT, s_on_request, NULL) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK) {
        fprintf(stderr, "bench_nats: subscribe: %s\n", nats_GetLastError(NULL));
        natsConnection_Destroy(nc);
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    while (!s_stop)
        pause();
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}

/* ---- requester ---------------------------------------------------------- */

typedef struct drive {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    natsConnection *nc;
    char inbox[128];
    long inflight_max, inflight, tp_done, errors;
    double t0, t_end, seconds;
    int done;
} drive;

static void s_publish(drive *d)
{
    d->inflight++;
    if (natsConnection_PublishRequest(d->nc, SUBJECT, d->inbox, s_payload,
                                      (int)sizeof s_payload - 1) != NATS_OK) {
        d->inflight--;
        d->errors++;
    }
}

/* Replies of the throughput phase (one delivery thread): each one sends the
 * next request until the time is up. */
static void s_on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    drive *d = closure;

    (void)nc;
    (void)sub;
    pthread_mutex_lock(&d->mu);
    if (natsMsg_GetDataLength(m) != (int)sizeof s_payload - 1 ||
        memcmp(natsMsg_GetData(m), s_payload, sizeof s_payload - 1) != 0)
        d->errors++;
    d->inflight--;
    d->tp_done++;
    if (bench_now_us() - d->t0 < d->seconds * 1e6) {
        s_publish(d);
    } else if (d->inflight == 0 && !d->done) {
        d->t_end = bench_now_us();
        d->done = 1;
        pthread_cond_signal(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    natsMsg_Destroy(m);
}

static int s_request(int argc, char **argv)
{
    drive d;
    natsSubscription *sub = NULL;
    long calls = 2000, n = 0;
    double *lat;
    int json = 0, rc = 0;
    natsInbox *ib = NULL;

    memset(&d, 0, sizeof d);
    d.inflight_max = 64;
    d.seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) calls = atol(argv[++i]);
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
            d.inflight_max = atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) d.seconds = atof(argv[++i]);
    }
    if (calls < 1 || d.inflight_max < 1) {
        fprintf(stderr, "bench_nats: --calls and --inflight must be >= 1\n");
        return 2;
    }
    if ((d.nc = s_connect(argv[0])) == NULL)
        return 1;
    lat = calloc((size_t)calls, sizeof *lat);
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);

    /* 1 in flight: the client's own request/reply call. */
    for (n = 0; n < calls; n++) {
        natsMsg *reply = NULL;
        double t = bench_now_us();
        if (natsConnection_Request(&reply, d.nc, SUBJECT, s_payload, (int)sizeof s_payload - 1,
                                   5000) != NATS_OK) {
            fprintf(stderr, "bench_nats: request: %s\n", nats_GetLastError(NULL));
            d.errors++;
            break;
        }
        lat[n] = bench_now_us() - t;
        natsMsg_Destroy(reply);
    }

    /* K in flight: requests pipelined on one reply inbox. */
    if (n == calls) {
        struct timespec until;
        if (natsInbox_Create(&ib) != NATS_OK ||
            snprintf(d.inbox, sizeof d.inbox, "%s", (const char *)ib) >= (int)sizeof d.inbox ||
            natsConnection_Subscribe(&sub, d.nc, d.inbox, s_on_reply, &d) != NATS_OK ||
            natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK ||
            natsConnection_Flush(d.nc) != NATS_OK) {
            fprintf(stderr, "bench_nats: reply inbox: %s\n", nats_GetLastError(NULL));
            d.errors++;
        } else {
            pthread_mutex_lock(&d.mu);
            d.t0 = bench_now_us();
            for (long i = 0; i < d.inflight_max; i++)
                s_publish(&d);
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += (time_t)d.seconds + 10;
            while (!d.done)
                if (pthread_cond_timedwait(&d.cv, &d.mu, &until) != 0)
                    break;
            if (!d.done) {
                fprintf(stderr, "bench_nats: %ld replies missing\n", d.inflight);
                d.errors++;
                d.done = 1;     /* later replies are ignored */
            }
            pthread_mutex_unlock(&d.mu);
        }
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(ib);
    natsConnection_Destroy(d.nc);
    nats_Close();

    if (n < calls || d.t_end <= d.t0) {
        fprintf(stderr, "bench_nats: only %ld of %ld requests completed\n", n, calls);
        rc = 1;
    } else {
        qsort(lat, (size_t)calls, sizeof *lat, bench_cmp_double);
        double p50 = lat[calls / 2], p99 = lat[(calls * 99) / 100];
        double tput = (double)d.tp_done / ((d.t_end - d.t0) / 1e6);
        if (json)
            printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"calls_per_s\":%.0f,\"errors\":%ld}\n", p50,
                   p99, tput, d.errors);
        else
            printf("p50 %.1f us  p99 %.1f us  %ld in flight: %.0f requests/s  errors %ld\n", p50,
                   p99, d.inflight_max, tput, d.errors);
        rc = d.errors ? 1 : 0;
    }
    free(lat);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && strcmp(argv[1], "respond") == 0)
        return s_respond(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "request") == 0)
        return s_request(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_nats respond URL | bench_nats request URL [--json] "
                    "[--calls N] [--inflight K] [--seconds S]\n");
    return 2;
}
