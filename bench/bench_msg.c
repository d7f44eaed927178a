/* What one message costs: CPU time of each step a sealed `execute` takes
 * from the sender's objects to the receiver's objects, and of the library
 * calls inside them, measured in one process (no network, no other
 * process), so the figures hold on a busy machine too.
 *
 *   bench_msg [--json] [--n N]
 *
 * Steps (docs/PERFORMANCE.md "What dominates"): build (payload object and
 * envelope), seal (canonical payload and header, XChaCha20-Poly1305,
 * base64), dump (envelope text), parse (text to objects, validation), open
 * (base64, decryption, payload text to objects). Beside them: the jansson
 * parse and serialisation of the same envelope text alone, the AEAD alone,
 * and Ed25519 sign + verify (what sealing replaced on unicasts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "benchlib.h"
#include "meshzero/msg.h"


/* The workload: params of about 200 bytes of JSON. */
static json_t *s_payload(int i)
{
    return json_pack("{s:s,s:s,s:{s:s,s:i,s:[i,i,i],s:b},s:I,s:s}", "resource_id", "echo",
                     "method", "process",
                     "params", "text",
                     "the quick brown fox jumps over the lazy dog, then the quick brown fox "
                     "jumps over the lazy dog again; and once more for good measure",
                     "n", i, "list", 1, 2, 3, "flag", 1,
                     "timeout_ms", (json_int_t)30000, "call", "0123456789abcdef0123456789abcdef");
}

enum { B_BUILD, B_SEAL, B_DUMP, B_PARSE, B_OPEN, B_JLOAD, B_JDUMP, B_AEAD, B_SIGN, B_NSTEPS };
static const char *const s_names[B_NSTEPS] = {
    "build", "seal", "dump", "parse", "open", "jansson_load", "jansson_dump", "aead_only",
    "sign_verify",
};

int main(int argc, char **argv)
{
    bool json_out = false;
    int n = 20000, rc;
    double t[B_NSTEPS] = { 0 };
    unsigned char key[32];
    mz_identity *ida = NULL;
    const char *a, *b;
    size_t env_len = 0, pl_len = 0;
    mz_err e;

    if ((rc = bench_cpu_args(argc, argv, &n, &json_out)) >= 0)
        return rc;
    if (sodium_init() < 0 || mz_identity_generate(&ida, &e) != MZ_OK) {
        fprintf(stderr, "bench_msg: set-up failed\n");
        return 1;
    }
    randombytes_buf(key, sizeof key);
    a = mz_identity_id(ida);
    b = "39304657c5e2b923048276ca2b1d891e4c840ceb4e7e87113fc49bdcc8843a0f";
    for (int i = 0; i < n; i++) {
        double t0, t1;
        json_t *env, *pl, *got = NULL, *j;
        char *buf, *d;
        size_t len;
        json_error_t je;
        unsigned char nonce[24], box[512 + 16];
        unsigned long long blen;

        t0 = bench_cpu_us();
        pl = s_payload(i);
        env = mz_msg_new("execute", a, b, pl);
        t1 = bench_cpu_us(); t[B_BUILD] += t1 - t0; t0 = t1;
        if (env == NULL || mz_msg_seal(env, key, &e) != MZ_OK)
            return 1;
        t1 = bench_cpu_us(); t[B_SEAL] += t1 - t0; t0 = t1;
        buf = mz_msg_dump(env, &len);
        t1 = bench_cpu_us(); t[B_DUMP] += t1 - t0; t0 = t1;
        json_decref(env);
        if (buf == NULL || mz_msg_parse(buf, len, NULL, &got, NULL, &e) != MZ_OK)
            return 1;
        t1 = bench_cpu_us(); t[B_PARSE] += t1 - t0; t0 = t1;
        if (mz_msg_open(got, key, MZ_DEFAULT_MAX_JSON_DEPTH, &e) != MZ_OK)
            return 1;
        t1 = bench_cpu_us(); t[B_OPEN] += t1 - t0; t0 = t1;
        env_len = len;
        json_decref(got);

        /* The library alone on the same bytes. */
        j = json_loadb(buf, len, 0, &je);
        t1 = bench_cpu_us(); t[B_JLOAD] += t1 - t0; t0 = t1;
        d = json_dumps(j, JSON_COMPACT);
        t1 = bench_cpu_us(); t[B_JDUMP] += t1 - t0;
        free(d);
        json_decref(j);
        free(buf);

        pl = s_payload(i);
        d = json_dumps(pl, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(pl);
        if (d == NULL)
            return 1;
        pl_len = strlen(d);
        randombytes_buf(nonce, sizeof nonce);
        t0 = bench_cpu_us();
        crypto_aead_xchacha20poly1305_ietf_encrypt(box, &blen, (unsigned char *)d,
                                                   pl_len < 512 ? pl_len : 512, NULL, 0,
                                                   NULL, nonce, key);
        t1 = bench_cpu_us(); t[B_AEAD] += t1 - t0;
        free(d);

        env = mz_msg_new("execute", a, b, s_payload(i));
        t0 = bench_cpu_us();
        if (env == NULL || mz_msg_sign(env, ida, &e) != MZ_OK || mz_msg_verify(env, &e) != MZ_OK)
            return 1;
        t1 = bench_cpu_us(); t[B_SIGN] += t1 - t0;
        json_decref(env);
    }
    if (json_out) {
        printf("{\"n\":%d,\"envelope_bytes\":%zu,\"payload_bytes\":%zu,\"cpu_us\":{", n, env_len,
               pl_len);
        for (int s = 0; s < B_NSTEPS; s++)
            printf("%s\"%s\":%.2f", s ? "," : "", s_names[s], t[s] / n);
        printf(",\"send_total\":%.2f,\"receive_total\":%.2f}}\n",
               (t[B_BUILD] + t[B_SEAL] + t[B_DUMP]) / n, (t[B_PARSE] + t[B_OPEN]) / n);
    } else {
        printf("one sealed execute (%zu bytes on the wire, payload %zu), CPU us per message:\n",
               env_len, pl_len);
        for (int s = 0; s < B_NSTEPS; s++)
            printf("  %-14s %7.2f\n", s_names[s], t[s] / n);
        printf("  send total     %7.2f\n  receive total  %7.2f\n",
               (t[B_BUILD] + t[B_SEAL] + t[B_DUMP]) / n, (t[B_PARSE] + t[B_OPEN]) / n);
    }
    mz_identity_free(ida);
    return 0;
}
