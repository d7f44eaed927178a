/* The CLI's JSON inputs, end to end: PARAMS_JSON of `meshzero exec` and the
 * `--meta KEY=VALUE` values of `register` / `serve`, turned into API
 * requests exactly as src/cli does, sent to a real node (nodesim.h).
 *
 * src/cli keeps these rules inline in its command functions (not callable),
 * so s_meta_value below is a copy of cmd_client.c:124 / cmd_serve.c:378 and
 * s_params of cmd_exec.c s_parse_json_arg: keep them in step. Everything
 * after them is the real node.
 *
 * Input: line 1 is PARAMS_JSON, every further line one --meta argument (an
 * argv string, so it ends at a NUL byte). Checks: a registration the node
 * accepts comes back with every --meta value intact (last one wins;
 * last_updated is the node's); the resource, served by API client 1 as
 * `serve` does, is executed from client 2 with PARAMS_JSON, and the echo
 * the handler answers arrives unchanged, or the call fails with bad_request
 * when PARAMS_JSON is not an object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodesim.h"

#define MAX_META 32

static void s_fail(const char *what, const json_t *a, const json_t *b)
{
    char *sa = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    char *sb = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

    fprintf(stderr, "fuzz_cli: %s\n  %.2000s\n  %.2000s\n", what, sa ? sa : "(null)",
            sb ? sb : "(null)");
    abort();
}

/* cmd_client.c / cmd_serve.c: numbers stay strings ("version=1.0"); values
 * starting like an object, array, quoted string, true, false or null are
 * read as JSON, falling back to the string when they do not parse. */
static json_t *s_meta_value(const char *v)
{
    json_t *j = v[0] && strchr("{[\"tfn", v[0]) ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;

    return j ? j : json_string(v);
}

/* cmd_exec.c s_parse_json_arg. */
static json_t *s_params(const char *text)
{
    json_error_t je;

    return json_loads(text, JSON_DECODE_ANY, &je);
}

/* An argv string: the bytes up to the line end or the first NUL. */
static char *s_arg(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static json_t *s_request(int id, const char *method, json_t *params)
{
    return json_pack("{s:s,s:i,s:s,s:o}", "jsonrpc", "2.0", "id", id, "method", method,
                     "params", params);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mz_sim_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    json_t *meta = json_object(), *params = NULL, *req;
    const json_t *ans, *rec, *res;
    char *line;
    int n = 0;

    mz_sim_begin();
    while (p <= end && n <= MAX_META) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *eq;

        line = s_arg(p, len);
        if (n++ == 0) {
            params = s_params(line);
        } else if ((eq = strchr(line, '=')) != NULL && eq != line) {
            *eq = '\0';
            json_object_set_new(meta, line, s_meta_value(eq + 1));
        }
        free(line);
        p += len + 1;
    }

    /* `meshzero serve fuzz-cli --type tool --meta ...`: client 1 serves it. */
    req = s_request(1, "register_resource",
                    json_pack("{s:s,s:s,s:[],s:O,s:b,s:[]}", "resource_id", "fuzz-cli",
                              "resource_type", "tool", "capabilities", "metadata", meta,
                              "handler", 1, "methods"));
    mz_sim_api_send(0, req);
    json_decref(req);
    ans = mz_sim_api_last(0);
    rec = json_object_get(ans, "result");
    if (rec != NULL) {
        const char *key;
        json_t *v;
        json_object_foreach(meta, key, v) {
            if (strcmp(key, "last_updated") == 0)
                continue;
            if (!json_equal(v, json_object_get(json_object_get(rec, "metadata"), key)))
                s_fail("a --meta value did not survive registration", meta, rec);
        }
    } else if (json_object_get(ans, "error") == NULL) {
        s_fail("register_resource got no answer", meta, ans);
    }

    /* `meshzero exec fuzz-cli run PARAMS_JSON` from client 2. */
    if (rec != NULL && params != NULL) {
        req = s_request(2, "execute_remote",
                        json_pack("{s:s,s:s,s:O,s:i}", "resource_id", "fuzz-cli", "method",
                                  "run", "params", params, "timeout_ms", 30000));
        mz_sim_api_send(1, req);
        json_decref(req);
        ans = mz_sim_api_last(0);
        if (json_is_object(params)) {
            /* The pushed request reached the handler: echo its params. */
            const json_t *pp = json_object_get(json_object_get(ans, "params"), "params");
            if (!json_equal(pp, params))
                s_fail("the handler was pushed other params than PARAMS_JSON", params, ans);
            req = json_pack("{s:s,s:O,s:{s:O}}", "jsonrpc", "2.0", "id",
                            json_object_get(ans, "id"), "result", "echo", pp);
            mz_sim_api_send(0, req);
            json_decref(req);
            res = json_object_get(json_object_get(mz_sim_api_last(1), "result"), "echo");
            if (!json_equal(res, params))
                s_fail("the echoed result differs from PARAMS_JSON", params, mz_sim_api_last(1));
        } else {
            const char *msg = json_string_value(
                json_object_get(json_object_get(mz_sim_api_last(1), "error"), "message"));
            if (msg == NULL || strncmp(msg, "bad_request", 11) != 0)
                s_fail("a non-object PARAMS_JSON did not fail with bad_request", params,
                       mz_sim_api_last(1));
        }
    }
    json_decref(meta);
    json_decref(params);
    mz_sim_end();
    return 0;
}
