/* What a relay and an end point spend on one sealed unicast, binary frame
 * (wire v2, src/wire/frame.c) against today's JSON envelope, measured in
 * the same run and process, in CPU time (holds on a busy machine).
 *
 *   bench_frame [--json] [--n N]
 *
 * Rows, CPU µs per message (execute payload of ~290 bytes, as bench_msg):
 *   relay_json     parse the envelope text (validation included), set hops,
 *                  serialise it again: what a relay does today
 *   relay_frame    decode the header, bump the hop count in place, copy the
 *                  frame into a send buffer with LWS_PRE headroom
 *   seal_json / open_json    mz_msg_seal + mz_msg_dump / mz_msg_parse + mz_msg_open
 *   seal_frame / open_frame  header + XChaCha20-Poly1305 / decode + open
 *   seal_16k / open_16k      one 16 KiB stream chunk (a large body's unit)
 * Loops are timed as a whole (a clock read per message would cost more
 * than the binary relay itself). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "benchlib.h"
#include "meshzero/msg.h"
#include "wire/frame.h"
#include "wire/stream.h"

/* lws's LWS_PRE on x86-64: headroom every outgoing WebSocket buffer needs. */
#define S_PRE 16


/* bench_msg's payload: about 290 bytes of canonical JSON. */
static json_t *s_payload(void)
{
    return json_pack("{s:s,s:s,s:{s:s,s:i,s:[i,i,i],s:b},s:I,s:s}", "resource_id", "echo",
                     "method", "process",
                     "params", "text",
                     "the quick brown fox jumps over the lazy dog, then the quick brown fox "
                     "jumps over the lazy dog again; and once more for good measure",
                     "n", 42, "list", 1, 2, 3, "flag", 1,
                     "timeout_ms", (json_int_t)30000, "call", "0123456789abcdef0123456789abcdef");
}

enum { R_RELAY_JSON, R_RELAY_FRAME, R_SEAL_JSON, R_OPEN_JSON, R_SEAL_FRAME, R_OPEN_FRAME,
       R_SEAL_16K, R_OPEN_16K, R_N };
static const char *const s_rows[R_N] = {
    "relay_json", "relay_frame", "seal_json", "open_json", "seal_frame", "open_frame",
    "seal_16k", "open_16k",
};

struct ctx {
    uint8_t key[32], a[32], b[32];
    const char *ahex, *bhex;
    char *env_text;                 /* today's sealed execute, as sent */
    size_t env_len;
    char *plain;                    /* its canonical payload */
    size_t plain_len;
    uint8_t frame[4096];            /* the v2 sealed execute */
    size_t frame_len;
};

static int s_setup(struct ctx *c, mz_identity *id)
{
    json_t *env = mz_msg_new("execute", mz_identity_id(id), c->bhex, s_payload());
    json_t *pl = s_payload();
    mz_frame_hdr h;
    mz_err e;

    c->ahex = mz_identity_id(id);
    if (env == NULL || mz_msg_seal(env, c->key, &e) != MZ_OK)
        return -1;
    c->env_text = mz_msg_dump(env, &c->env_len);
    json_decref(env);
    c->plain = mz_canon_dump(pl, NULL, &c->plain_len);
    json_decref(pl);
    if (c->env_text == NULL || c->plain == NULL)
        return -1;
    mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, c->a, c->b);
    return mz__frame_seal(&h, (const uint8_t *)c->plain, c->plain_len, c->key, c->frame,
                          sizeof c->frame, &c->frame_len, &e) == MZ_OK ? 0 : -1;
}

static int s_relay_json(const struct ctx *c, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *env = NULL;
        char *out;
        size_t len;
        mz_err e;

        if (mz_msg_parse(c->env_text, c->env_len, NULL, &env, NULL, &e) != MZ_OK)
            return -1;
        json_object_set_new(env, "hops", json_integer(1));
        out = mz_msg_dump(env, &len);
        json_decref(env);
        if (out == NULL)
            return -1;
        free(out);
    }
    return 0;
}

static int s_relay_frame(const struct ctx *c, int n)
{
    static uint8_t in[4096], out[S_PRE + 4096];

    for (int i = 0; i < n; i++) {
        mz_frame_hdr h;
        mz_err e;

        /* lws owns the receive buffer: the frame arrives in `in`. */
        memcpy(in, c->frame, c->frame_len);
        if (mz__frame_decode(in, c->frame_len, 0, &h, &e) != MZ_OK ||
            mz__frame_relay_hop(in, c->frame_len, &e) != MZ_OK)
            return -1;
        memcpy(out + S_PRE, in, c->frame_len);
    }
    return 0;
}

static int s_json_ends(const struct ctx *c, int n, double *seal, double *open)
{
    for (int i = 0; i < n; i++) {
        json_t *env = mz_msg_new("execute", c->ahex, c->bhex, s_payload()), *got = NULL;
        double t0 = bench_cpu_us(), t1;
        char *text;
        size_t len;
        mz_err e;

        if (env == NULL || mz_msg_seal(env, c->key, &e) != MZ_OK)
            return -1;
        text = mz_msg_dump(env, &len);
        t1 = bench_cpu_us();
        *seal += t1 - t0;
        json_decref(env);
        if (text == NULL || mz_msg_parse(text, len, NULL, &got, NULL, &e) != MZ_OK ||
            mz_msg_open(got, c->key, 0, &e) != MZ_OK)
            return -1;
        *open += bench_cpu_us() - t1;
        json_decref(got);
        free(text);
    }
    return 0;
}

/* Seals and opens plain_len bytes n times; the times go to seal and open. */
static int s_frame_ends(const struct ctx *c, const uint8_t *plain, size_t plain_len, int n,
                        double *seal, double *open)
{
    size_t cap = S_PRE + mz__frame_sealed_len(plain_len);
    uint8_t *buf = malloc(cap), *out = malloc(plain_len + 1);
    double t0, t1;
    int rc = -1;

    if (buf == NULL || out == NULL)
        goto done;
    t0 = bench_cpu_us();
    for (int i = 0; i < n; i++) {
        mz_frame_hdr h;
        size_t len;
        mz_err e;

        mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, c->a, c->b);
        if (mz__frame_seal(&h, plain, plain_len, c->key, buf + S_PRE, cap - S_PRE, &len, &e)
            != MZ_OK)
            goto done;
    }
    t1 = bench_cpu_us();
    *seal += t1 - t0;
    for (int i = 0; i < n; i++) {
        mz_frame_hdr h;
        size_t len = mz__frame_sealed_len(plain_len), pl;
        mz_err e;

        if (mz__frame_decode(buf + S_PRE, len, 0, &h, &e) != MZ_OK ||
            mz__frame_open(buf + S_PRE, len, &h, c->key, out, &pl, &e) != MZ_OK)
            goto done;
    }
    *open += bench_cpu_us() - t1;
    rc = 0;
done:
    free(buf);
    free(out);
    return rc;
}

static void s_print(const double *t, int n, const struct ctx *c, bool json_out)
{
    if (json_out) {
        printf("{\"n\":%d,\"envelope_bytes\":%zu,\"frame_bytes\":%zu,\"payload_bytes\":%zu,"
               "\"cpu_us\":{", n, c->env_len, c->frame_len, c->plain_len);
        for (int r = 0; r < R_N; r++)
            printf("%s\"%s\":%.3f", r ? "," : "", s_rows[r], t[r] / n);
        printf("}}\n");
        return;
    }
    printf("one sealed execute: JSON envelope %zu bytes, v2 frame %zu bytes (payload %zu); "
           "CPU us per message:\n", c->env_len, c->frame_len, c->plain_len);
    for (int r = 0; r < R_N; r++)
        printf("  %-12s %8.3f\n", s_rows[r], t[r] / n);
    printf("  relay speed-up %.0fx\n", t[R_RELAY_JSON] / t[R_RELAY_FRAME]);
}

int main(int argc, char **argv)
{
    struct ctx c = { .bhex = "39304657c5e2b923048276ca2b1d891e4c840ceb4e7e87113fc49bdcc8843a0f" };
    double t[R_N] = { 0 }, t0;
    bool json_out = false;
    mz_identity *id = NULL;
    uint8_t *chunk = NULL;
    int n = 20000, rc;
    mz_err e;

    if ((rc = bench_cpu_args(argc, argv, &n, &json_out)) >= 0)
        return rc;
    if (sodium_init() < 0 || mz_identity_generate(&id, &e) != MZ_OK) {
        fprintf(stderr, "bench_frame: set-up failed\n");
        return 1;
    }
    randombytes_buf(c.key, sizeof c.key);
    memcpy(c.a, mz_identity_pk(id), 32);
    sodium_hex2bin(c.b, 32, c.bhex, 64, NULL, NULL, NULL);
    chunk = calloc(1, MZ_DEFAULT_STREAM_CHUNK);
    if (chunk == NULL || s_setup(&c, id) != 0)
        goto fail;
    t0 = bench_cpu_us();
    if (s_relay_json(&c, n) != 0)
        goto fail;
    t[R_RELAY_JSON] = bench_cpu_us() - t0;
    t0 = bench_cpu_us();
    if (s_relay_frame(&c, n) != 0)
        goto fail;
    t[R_RELAY_FRAME] = bench_cpu_us() - t0;
    if (s_json_ends(&c, n, &t[R_SEAL_JSON], &t[R_OPEN_JSON]) != 0 ||
        s_frame_ends(&c, (const uint8_t *)c.plain, c.plain_len, n, &t[R_SEAL_FRAME],
                     &t[R_OPEN_FRAME]) != 0 ||
        s_frame_ends(&c, chunk, MZ_DEFAULT_STREAM_CHUNK, n, &t[R_SEAL_16K], &t[R_OPEN_16K]) != 0)
        goto fail;
    s_print(t, n, &c, json_out);
    free(chunk);
    free(c.env_text);
    free(c.plain);
    mz_identity_free(id);
    return 0;
fail:
    fprintf(stderr, "bench_frame: a step failed\n");
    return 1;
}
