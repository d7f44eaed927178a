/* Directory benchmark: registration rate, "type + 2 capabilities" query
 * latency and memory per record.
 *
 *   bench_directory [N] [--json]       N records, default 100000
 *
 * Data: 20 types, 200 capabilities (4 distinct per record), 1000 owners,
 * 50 nodes, ids "res-%d", the same small metadata everywhere. Every random
 * choice comes from a fixed seed, so runs are comparable. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "meshzero/directory.h"
#include "benchlib.h"


/* Resident set in bytes, from /proc/self/statm. */
static long s_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;

    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

struct matches {
    const mz_record **v;    /* every match of the current query */
    size_t n, cap;
};

static bool s_collect(const mz_record *rec, void *ctx)
{
    struct matches *m = ctx;

    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        const mz_record **v = realloc(m->v, cap * sizeof *v);

        if (v == NULL)
            return false;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = rec;
    return true;
}

int main(int argc, char **argv)
{
    long n = 100000;
    bool json_out = false;
    char types[N_TYPES][16], caps[N_CAPS][16], owners[N_OWNERS][16];
    char nodes[N_NODES][65];
    char sig[129], rid[32];
    mz_directory *dir = NULL;
    json_t *rec = NULL, *meta = NULL;
    mz_err err = { 0 };
    double *lat = NULL, put_us = 0, p50, p99;
    struct matches m = { 0 };
    long rss0, rss1;
    size_t total_matches = 0;
    int rc = 1;

    if ((rc = bench_args(argc, argv, &n, &json_out)) >= 0)
        return rc;
    rc = 1;
    bench_names(types, caps, owners, nodes);
    for (int k = 0; k < 8; k++)
        snprintf(&sig[16 * k], 17, "%016llx", (unsigned long long)bench_mix((uint64_t)k + 5000));

    /* One record object, its fields overwritten per put: the timing is the
     * directory's, not jansson building a million objects. */
    meta = json_pack("{s:s, s:s}", "version", "1.0", "last_updated", "2026-01-01T00:00:00Z");
    rec = json_pack("{s:s, s:s, s:s, s:[], s:O, s:s, s:i, s:s}",
                    "resource_id", "", "resource_type", "", "owner", "", "capabilities",
                    "metadata", meta, "node", "", "version", 1, "signature", sig,
                    "owner_key", "");
    lat = malloc(N_QUERIES * sizeof *lat);
    if (meta == NULL || rec == NULL || lat == NULL) {
        fprintf(stderr, "bench_directory: out of memory\n");
        goto out;
    }

    rss0 = s_rss();
    if (mz_directory_new(&dir, &err) != MZ_OK) {
        fprintf(stderr, "bench_directory: %s\n", err.msg);
        goto out;
    }
    for (long i = 0; i < n; i++) {
        struct bench_attrs a;
        json_t *arr = json_array();
        double t0;
        mz_status st;

        bench_attrs((uint64_t)i, &a);
        snprintf(rid, sizeof rid, "res-%ld", i);
        for (int k = 0; k < CAPS_PER; k++)
            json_array_append_new(arr, json_string(caps[a.caps[k]]));
        if (json_object_set_new(rec, "resource_id", json_string(rid)) != 0 ||
            json_object_set_new(rec, "resource_type", json_string(types[a.type])) != 0 ||
            json_object_set_new(rec, "owner", json_string(owners[a.owner])) != 0 ||
            json_object_set_new(rec, "node", json_string(nodes[a.node])) != 0 ||
            json_object_set_new(rec, "owner_key", json_string(nodes[a.node])) != 0 ||
            json_object_set_new(rec, "capabilities", arr) != 0) {
            fprintf(stderr, "bench_directory: out of memory\n");
            goto out;
        }
        t0 = bench_now_us();
        st = mz_directory_put(dir, rec, (i & 1) == 0, NULL, &err);
        put_us += bench_now_us() - t0;
        if (st != MZ_OK) {
            fprintf(stderr, "bench_directory: put %ld: %s\n", i, err.msg);
            goto out;
        }
    }
    /* Measured before the query phase adds its own buffers. */
    rss1 = s_rss();

    for (int qi = 0; qi < N_QUERIES; qi++) {
        struct bench_attrs a;
        uint64_t r = bench_mix((uint64_t)qi + 0xabcdef);
        const char *qcaps[2];
        int c0 = (int)(r % CAPS_PER), c1 = (int)((r >> 8) % (CAPS_PER - 1));
        mz_query q = { 0 };
        double t0;

        /* Two distinct capabilities of an existing record, and its type:
         * at least one match, usually very few. */
        bench_attrs(r % (uint64_t)n, &a);
        if (c1 >= c0)
            c1++;
        qcaps[0] = caps[a.caps[c0]];
        qcaps[1] = caps[a.caps[c1]];
        q.resource_type = types[a.type];
        q.capabilities = qcaps;
        q.n_capabilities = 2;
        m.n = 0;
        t0 = bench_now_us();
        mz_directory_query(dir, &q, s_collect, &m);
        lat[qi] = bench_now_us() - t0;
        if (m.n == 0) {
            fprintf(stderr, "bench_directory: query %d found nothing\n", qi);
            goto out;
        }
        total_matches += m.n;
    }
    qsort(lat, N_QUERIES, sizeof *lat, bench_cmp_double);
    p50 = lat[N_QUERIES / 2];
    p99 = lat[N_QUERIES * 99 / 100];

    if (json_out) {
        printf("{\"records\":%ld,\"register_per_s\":%.0f,\"query_us_p50\":%.2f,"
               "\"query_us_p99\":%.2f,\"bytes_per_record\":%.1f}\n",
               n, (double)n / (put_us / 1e6), p50, p99,
               (double)(rss1 - rss0) / (double)n);
    } else {
        printf("records           %ld\n", n);
        printf("register          %.0f puts/s (%.2f us/put)\n",
               (double)n / (put_us / 1e6), put_us / (double)n);
        printf("query type+2caps  p50 %.2f us, p99 %.2f us (%d queries, %.1f matches avg)\n",
               p50, p99, N_QUERIES, (double)total_matches / N_QUERIES);
        printf("memory            %.1f bytes/record (RSS growth)\n",
               (double)(rss1 - rss0) / (double)n);
    }
    rc = 0;
out:
    free(m.v);
    free(lat);
    mz_directory_free(dir);
    json_decref(rec);
    json_decref(meta);
    return rc;
}
