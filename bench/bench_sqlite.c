/* The embedded alternative to the directory: the same "type + 2
 * capabilities" query on an indexed SQLite table (in memory).
 *
 *   bench_sqlite [N] [--json]       N records, default 100000
 *
 * Same data as bench_directory: 20 types, 200 capabilities (4 distinct per
 * record), 1000 owners, 50 nodes, ids "res-%d", one fixed seed. Schema:
 * records(id, type, owner, node, ...) indexed on type, and
 * caps(cap, type, rid) with a unique index on (cap, type, rid) (the type
 * is copied in so one index narrows both). Query: the first
 * capability's (cap, type) range, each row checked against the second by
 * primary key, then the record by id (join order forced: a plain join on
 * records.type scanned all records of the type, ~7.5 ms at 100k). Registration: one insert
 * into records and 4 into caps per record, all in one transaction, prepared
 * statements, the indexes built after the load (SQLite's best case; the
 * rate includes building them). At 1M records 2,000 queries are timed
 * instead of 10,000 to bound the run. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "benchlib.h"

#define N_QUERIES_1M 2000

static int s_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bench_sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    return 1;
}

int main(int argc, char **argv)
{
    long n = 100000;
    bool json_out = false;
    char types[N_TYPES][16], caps[N_CAPS][16], owners[N_OWNERS][16];
    char nodes[N_NODES][65], rid[32];
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *insc = NULL, *q = NULL;
    double *lat = NULL, put_us, p50, p99, t0;
    sqlite3_int64 mem0, mem1;
    size_t total_matches = 0;
    int rc = 1, nq;

    if ((rc = bench_args(argc, argv, &n, &json_out)) >= 0)
        return rc;
    rc = 1;
    bench_names(types, caps, owners, nodes);
    nq = n >= 1000000 ? N_QUERIES_1M : N_QUERIES;
    lat = malloc(N_QUERIES * sizeof *lat);
    if (lat == NULL)
        return 1;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "CREATE TABLE records(id TEXT PRIMARY KEY, type TEXT NOT NULL, "
                     "owner TEXT, node TEXT, version INTEGER, metadata TEXT);"
                     "CREATE TABLE caps(cap TEXT NOT NULL, type TEXT NOT NULL, "
                     "rid TEXT NOT NULL);"
                     "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        rc = s_fail(db, "schema");
        goto out;
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO records VALUES(?1, ?2, ?3, ?4, 1, "
                           "'{\"version\":\"1.0\",\"last_updated\":\"2026-01-01T00:00:00Z\"}')",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO caps VALUES(?1, ?3, ?2)", -1, &insc, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT r.id, r.owner, r.node FROM caps c1 "
                           "CROSS JOIN caps c2 ON c2.cap = ?3 AND c2.type = ?1 "
                           "AND c2.rid = c1.rid "
                           "CROSS JOIN records r ON r.id = c1.rid "
                           "WHERE c1.cap = ?2 AND c1.type = ?1",
                           -1, &q, NULL) != SQLITE_OK) {
        rc = s_fail(db, "prepare");
        goto out;
    }

    mem0 = sqlite3_memory_used();
    t0 = bench_now_us();
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (long i = 0; i < n; i++) {
        struct bench_attrs a;

        bench_attrs((uint64_t)i, &a);
        snprintf(rid, sizeof rid, "res-%ld", i);
        sqlite3_bind_text(ins, 1, rid, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, types[a.type], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, owners[a.owner], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, nodes[a.node], -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = s_fail(db, "insert");
            goto out;
        }
        sqlite3_reset(ins);
        for (int k = 0; k < CAPS_PER; k++) {
            sqlite3_bind_text(insc, 1, caps[a.caps[k]], -1, SQLITE_STATIC);
            sqlite3_bind_text(insc, 2, rid, -1, SQLITE_STATIC);
            sqlite3_bind_text(insc, 3, types[a.type], -1, SQLITE_STATIC);
            if (sqlite3_step(insc) != SQLITE_DONE) {
                rc = s_fail(db, "insert cap");
                goto out;
            }
            sqlite3_reset(insc);
        }
    }
    if (sqlite3_exec(db, "COMMIT; CREATE INDEX records_type ON records(type);"
                     "CREATE UNIQUE INDEX caps_ct ON caps(cap, type, rid); ANALYZE;", NULL, NULL, NULL) != SQLITE_OK) {
        rc = s_fail(db, "commit");
        goto out;
    }
    put_us = bench_now_us() - t0;
    mem1 = sqlite3_memory_used();

    for (int qi = 0; qi < nq; qi++) {
        struct bench_attrs a;
        uint64_t r = bench_mix((uint64_t)qi + 0xabcdef);
        int c0 = (int)(r % CAPS_PER), c1 = (int)((r >> 8) % (CAPS_PER - 1));
        size_t found = 0;
        int st;

        bench_attrs(r % (uint64_t)n, &a);
        if (c1 >= c0)
            c1++;
        t0 = bench_now_us();
        sqlite3_bind_text(q, 1, types[a.type], -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, caps[a.caps[c0]], -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, caps[a.caps[c1]], -1, SQLITE_STATIC);
        while ((st = sqlite3_step(q)) == SQLITE_ROW)
            found++;
        sqlite3_reset(q);
        lat[qi] = bench_now_us() - t0;
        if (st != SQLITE_DONE || found == 0) {
            fprintf(stderr, "bench_sqlite: query %d found nothing\n", qi);
            goto out;
        }
        total_matches += found;
    }
    qsort(lat, (size_t)nq, sizeof *lat, bench_cmp_double);
    p50 = lat[nq / 2];
    p99 = lat[nq * 99 / 100];

    if (json_out) {
        printf("{\"records\":%ld,\"register_per_s\":%.0f,\"query_us_p50\":%.2f,"
               "\"query_us_p99\":%.2f,\"bytes_per_record\":%.1f}\n",
               n, (double)n / (put_us / 1e6), p50, p99, (double)(mem1 - mem0) / (double)n);
    } else {
        printf("records           %ld (SQLite %s, in memory)\n", n, sqlite3_libversion());
        printf("register          %.0f records/s (one transaction)\n",
               (double)n / (put_us / 1e6));
        printf("query type+2caps  p50 %.2f us, p99 %.2f us (%d queries, %.1f matches avg)\n",
               p50, p99, nq, (double)total_matches / nq);
        printf("memory            %.1f bytes/record (sqlite3_memory_used)\n",
               (double)(mem1 - mem0) / (double)n);
    }
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(insc);
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(lat);
    return rc;
}
