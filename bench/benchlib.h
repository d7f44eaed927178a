/* What the benchmark programs share: the clock, sorting latencies, the
 * request payload of the execute benchmarks and their peers, and the
 * generated records of the directory benchmarks (bench_directory and its
 * SQLite twin must see the very same data). */
#ifndef MZ_BENCHLIB_H
#define MZ_BENCHLIB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* qsort comparator of doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The 200-byte JSON payload of bench_exec (its params, serialised), which
 * the echo and NATS peers send as it is. */
#define BENCH_PAYLOAD \
    "{\"text\":\"the quick brown fox jumps over the lazy dog; the quick brown fox jumps over " \
    "the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps " \
    "over\",\"n\":42}"

/* ---- directory data ------------------------------------------------------ */

#define N_TYPES   20
#define N_CAPS    200
#define N_OWNERS  1000
#define N_NODES   50
#define CAPS_PER  4
#define N_QUERIES 10000

/* splitmix64: a record's attributes are a pure function of its number, so
 * queries can be built from records known to exist. */
static inline uint64_t bench_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct bench_attrs {
    int type, owner, node;
    int caps[CAPS_PER];
};

/* Record i's type, owner, node and CAPS_PER distinct capabilities. */
static inline void bench_attrs(uint64_t i, struct bench_attrs *a)
{
    uint64_t r = bench_mix(i * 4 + 1);
    int n = 0;

    a->type = (int)(r % N_TYPES);
    a->owner = (int)(r / N_TYPES % N_OWNERS);
    a->node = (int)(r / N_TYPES / N_OWNERS % N_NODES);
    for (uint64_t k = 0; n < CAPS_PER; k++) {
        int c = (int)(bench_mix((i * 4 + 2) ^ (k << 40)) % N_CAPS);
        bool dup = false;

        for (int j = 0; j < n; j++)
            dup |= a->caps[j] == c;
        if (!dup)
            a->caps[n++] = c;
    }
}

/* The names record attributes draw from: "type-%d", "cap-%d", "owner-%d"
 * and 64-hex-digit node ids. */
static inline void bench_names(char types[][16], char caps[][16], char owners[][16],
                               char nodes[][65])
{
    for (int i = 0; i < N_TYPES; i++)
        snprintf(types[i], 16, "type-%d", i);
    for (int i = 0; i < N_CAPS; i++)
        snprintf(caps[i], 16, "cap-%d", i);
    for (int i = 0; i < N_OWNERS; i++)
        snprintf(owners[i], 16, "owner-%d", i);
    for (int i = 0; i < N_NODES; i++) {
        for (int k = 0; k < 4; k++)
            snprintf(&nodes[i][16 * k], 17, "%016llx",
                     (unsigned long long)bench_mix((uint64_t)i * 8 + (uint64_t)k + 1000));
    }
}

/* The directory benchmarks' command line, `[N] [--json]`: -1 to go on with
 * *n and *json_out set, else the exit status (0 after --help, 2 on misuse). */
static inline int bench_args(int argc, char **argv, long *n, bool *json_out)
{
    for (int i = 1; i < argc; i++) {
        char *end;

        if (strcmp(argv[i], "--json") == 0) {
            *json_out = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [N] [--json]\n", argv[0]);
            return 0;
        } else {
            *n = strtol(argv[i], &end, 10);
            if (*end != '\0' || *n < 1 || *n > 100000000) {
                fprintf(stderr, "usage: %s [N] [--json]\n", argv[0]);
                return 2;
            }
        }
    }
    return -1;
}

/* The CPU-time benchmarks' command line, `[--json] [--n N]` (bench_msg,
 * bench_frame): -1 to go on with *n and *json_out set, else the exit
 * status (0 after --help, 2 on misuse). */
static inline int bench_cpu_args(int argc, char **argv, int *n, bool *json_out)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json_out = true;
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            *n = atoi(argv[++i]);
        } else {
            bool help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;

            fprintf(help ? stdout : stderr, "usage: %s [--json] [--n N]\n", argv[0]);
            return help ? 0 : 2;
        }
    }
    if (*n <= 0) {
        fprintf(stderr, "%s: --n must be a positive number\n", argv[0]);
        return 2;
    }
    return -1;
}

/* CPU time of this process: holds on a busy machine, unlike wall time. */
static inline double bench_cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

#endif
