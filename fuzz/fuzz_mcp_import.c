/* The import side of the MCP bridge (src/bridge/bridge.c, src/bridge/bridge_http.c): the
 * input plays an imported MCP server, over stdio or Streamable HTTP, against
 * a real bridge on a real node (nodesim.c, so every record the bridge
 * registers is announced to the neighbour P and checked there). The bridge's
 * transport is the harness (mz__bridge_add_tap, bridge_int.h): what it
 * sends is recorded, what the input holds is handed in as the server's
 * bytes, through the same line splitting (stdio) or HTTP response parser
 * (head, Content-Length / chunked / to-EOF bodies, JSON or SSE) as a real
 * server's.
 *
 * Input: sections, each starting at a line "@@COMMAND ARGS"; the bytes up
 * to the next such line are the section's body, or exactly LEN bytes when
 * the command ends in " #LEN" (captured traffic). Bytes before the first
 * command are a body too.
 *   @@http          (first line only) import over Streamable HTTP, not stdio
 *   @@out           body: stdio: stdout bytes; HTTP: response bytes of the
 *                   oldest request still open (the default for any body)
 *   @@resp N        body: response bytes of open request N (0 the oldest)
 *   @@end N         same, then the server closes that connection
 *   @@exec TOOL JSON  a call of resource imp/TOOL (method "call") with
 *                   JSON as params, from the node itself
 *   @@sim LINE      one nodesim line (nodesim.h: A... an API request, S...
 *                   an envelope from P)
 *   @@tick          the bridge's housekeeping timer fires
 *   @@remove        the server is removed from the bridge
 * The bridge numbers its requests 1, 2, 3...: initialize is 1, the first
 * tools/list 2 (stdio) — so a captured session replays as it was.
 *
 * Checks beyond "no crash, no leak, no UB": everything the bridge sends is
 * a JSON-RPC 2.0 object (a request, a notification or a response); every
 * mesh call completes exactly once, with an object (the MCP result) or an
 * error code the protocol knows; nodesim's invariants on the node. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "bridge/bridge_int.h"
#include "meshzero/bridge.h"
#include "meshzero/node.h"
#include "nodesim.h"

#define NAME "imp"
#define MAX_SECTIONS 256
#define MAX_OPEN 64

static struct {
    bool http;
    uint64_t open[MAX_OPEN];     /* HTTP requests the server has not closed, oldest first */
    size_t n_open;
    unsigned issued, completed;  /* mesh calls */
} H;

static void s_fail(const char *what, const char *buf, size_t len)
{
    fprintf(stderr, "fuzz_mcp_import: %s: %.*s\n", what, (int)(len > 400 ? 400 : len),
            buf ? buf : "");
    abort();
}

/* A JSON-RPC 2.0 request, notification or response. */
static void s_check_rpc(const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *m = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *v = json_object_get(m, "jsonrpc");
    bool ok = json_is_object(m) && json_is_string(v) && strcmp(json_string_value(v), "2.0") == 0;

    if (ok && json_object_get(m, "method") != NULL)
        ok = json_is_string(json_object_get(m, "method"));
    else if (ok)
        ok = json_object_get(m, "id") != NULL &&
             (json_object_get(m, "result") != NULL) != (json_object_get(m, "error") != NULL);
    json_decref(m);
    if (!ok)
        s_fail("the bridge sent something that is not JSON-RPC 2.0", buf, len);
}

static void s_tap(void *ctx, uint64_t req, const char *buf, size_t len)
{
    (void)ctx;
    if (buf != NULL)
        s_check_rpc(buf, len);
    if (req == 0)
        return;
    if (H.n_open == MAX_OPEN) {
        memmove(H.open, H.open + 1, (MAX_OPEN - 1) * sizeof H.open[0]);
        H.n_open--;
    }
    H.open[H.n_open++] = req;
}

static void s_on_result(mz_node *node, const json_t *result, const char *code,
                        const char *message, void *ctx)
{
    static const char *const codes[] = { MZ_EXEC_NOT_FOUND, MZ_EXEC_UNREACHABLE,
                                         MZ_EXEC_TIMEOUT, MZ_EXEC_BAD_REQUEST,
                                         MZ_EXEC_HANDLER_ERROR, MZ_EXEC_BUSY, MZ_EXEC_DENIED };
    bool known = false;

    (void)node;
    (void)ctx;
    H.completed++;
    if (getenv("MZ_SIM_TRACE") != NULL) {
        char *t = result ? json_dumps(result, JSON_COMPACT) : NULL;
        fprintf(stderr, "fuzz_mcp_import: call done: %s %.200s\n", code ? code : "ok",
                t ? t : message);
        free(t);
    }
    if (H.completed > H.issued)
        s_fail("a call completed twice", NULL, 0);
    if (code == NULL) {
        if (!json_is_object(result))
            s_fail("a call succeeded without an object result", NULL, 0);
        return;
    }
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        known = known || strcmp(code, codes[i]) == 0;
    if (!known || message == NULL)
        s_fail("a call failed with an unknown code or no message", code, strlen(code));
}

static void s_exec(const char *args, size_t len)
{
    const char *sp = memchr(args, ' ', len);
    size_t tl = sp ? (size_t)(sp - args) : len;
    char rid[160];
    json_t *params = sp ? json_loadb(sp + 1, len - tl - 1, 0, NULL) : NULL;
    mz_err e;

    snprintf(rid, sizeof rid, "%s/%.*s", NAME, (int)(tl > 120 ? 120 : tl), args);
    H.issued++;
    if (mz_node_execute_remote(mz_sim_node(), rid, "call", params, 0, s_on_result, NULL, &e) !=
        MZ_OK)
        H.issued--;             /* refused at once: no callback */
    json_decref(params);
}

/* Index N (mod the number open) of the open HTTP requests; -1 when none. */
static long s_pick(const char *arg, size_t len)
{
    unsigned long n = 0;

    if (H.n_open == 0)
        return -1;
    for (size_t i = 0; i < len && arg[i] >= '0' && arg[i] <= '9' && n < 1000000; i++)
        n = n * 10 + (unsigned long)(arg[i] - '0');
    return (long)(n % H.n_open);
}

static void s_response(mz_bridge *b, long i, const char *body, size_t len, bool eof)
{
    uint64_t req;

    if (i < 0)
        return;
    req = H.open[i];
    if (eof) {
        memmove(H.open + i, H.open + i + 1, (H.n_open - (size_t)i - 1) * sizeof H.open[0]);
        H.n_open--;
    }
    mz__bridge_tap_http(b, NAME, req, body, len, eof);
}

/* One section: command (without "@@") and body. */
static void s_section(mz_bridge *b, const char *cmd, size_t cl, const char *body, size_t bl)
{
    const char *sp = memchr(cmd, ' ', cl);
    size_t wl = sp ? (size_t)(sp - cmd) : cl;
    const char *arg = sp ? sp + 1 : cmd + cl;
    size_t al = sp ? cl - wl - 1 : 0;
    bool body_done = false;

#define IS(w) (wl == sizeof(w) - 1 && memcmp(cmd, w, wl) == 0)
    if (IS("resp") || IS("end")) {
        if (H.http)
            s_response(b, s_pick(arg, al), body, bl, IS("end"));
        body_done = true;
    } else if (IS("exec")) {
        s_exec(arg, al);
    } else if (IS("sim")) {
        if (al > 0)
            mz_sim_line(arg, al, 'A');
    } else if (IS("tick")) {
        mz__bridge_tick(b);
    } else if (IS("remove")) {
        mz_bridge_remove(b, NAME, NULL);
    }
#undef IS
    mz_sim_settle();            /* a call reaches the bridge before the body answers it */
    if (!body_done && bl > 0) {
        if (H.http)
            s_response(b, s_pick("0", 1), body, bl, false);
        else
            mz__bridge_tap_stdout(b, NAME, body, bl);
    }
    mz_sim_settle();
}

/* A command ending in " #LEN" has a body of exactly LEN bytes (captured
 * traffic, whose bytes need not end in a newline); *cl loses the suffix. */
static bool s_body_len(const char *cmd, size_t *cl, size_t *len)
{
    size_t i = *cl, n = 0;

    while (i > 0 && cmd[i - 1] >= '0' && cmd[i - 1] <= '9')
        i--;
    if (i == *cl || *cl - i > 8 || i < 2 || cmd[i - 1] != '#' || cmd[i - 2] != ' ')
        return false;
    for (size_t j = i; j < *cl; j++)
        n = n * 10 + (size_t)(cmd[j] - '0');
    *len = n;
    *cl = i - 2;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    mz_bridge_opts bo;
    mz_bridge *b = NULL;
    mz_err e;
    int sections = 0;
    size_t blen;

    memset(&H, 0, sizeof H);
    H.http = size >= 6 && memcmp(p, "@@http", 6) == 0 && (size == 6 || p[6] == '\n');
    mz_sim_begin();
    memset(&bo, 0, sizeof bo);
    bo.loop = mz_sim_loop();
    bo.node = mz_sim_node();
    if (mz_bridge_new(&bo, &b, &e) != MZ_OK ||
        mz__bridge_add_tap(b, NAME, H.http, s_tap, NULL, &e) != MZ_OK) {
        fprintf(stderr, "fuzz_mcp_import: %s\n", e.msg);
        abort();
    }
    mz_sim_settle();
    /* Sections: a command line "@@..." then the body up to the next one. */
    while (p < end && sections++ < MAX_SECTIONS) {
        const char *cmd = "", *body, *next = NULL;
        size_t cl = 0;
        if (end - p >= 2 && p[0] == '@' && p[1] == '@') {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            cmd = p + 2;
            cl = (size_t)((nl ? nl : end) - cmd);
            p = nl ? nl + 1 : end;
        }
        body = p;
        if (s_body_len(cmd, &cl, &blen)) {
            next = blen < (size_t)(end - p) ? p + blen : end;
            s_section(b, cmd, cl, body, (size_t)(next - body));
            p = next;
            continue;
        }
        if (end - p >= 2 && p[0] == '@' && p[1] == '@')
            next = p;           /* no body: the next command follows at once */
        for (const char *q = p; next == NULL && q < end; q++) {
            q = memchr(q, '\n', (size_t)(end - q));
            if (q == NULL)
                break;
            if (end - q >= 3 && q[1] == '@' && q[2] == '@') {
                next = q + 1;
                break;
            }
        }
        if (next == NULL)
            next = end;
        s_section(b, cmd, cl, body, (size_t)(next - body));
        p = next;
    }
    mz_bridge_free(b);
    mz_sim_settle();
    mz_sim_end();
    if (H.completed != H.issued)
        s_fail("a call never completed", NULL, 0);
    return 0;
}
