/* MCP messages as a client sends them to the bridge's export server
 * (`meshzero mcp` and /mcp share mz_mcpsrv): the input is split into lines,
 * each handed to mz_mcpsrv_handle on one of two connections. The backend
 * answers queries with two fixed tools and calls with a result, an error or
 * nothing (left pending), chosen by the input. Checks: the server never
 * crashes or leaks, and everything it sends is a JSON-RPC 2.0 object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "meshzero/bridge.h"

typedef struct backend {
    json_t *records;            /* what queries return */
    mz_mcpsrv_req *pending[8];  /* calls left unanswered until the end */
    int npending;
    unsigned char mode;         /* from the input: how calls are answered */
} backend;

static void s_check(const json_t *msg)
{
    const json_t *v = json_object_get(msg, "jsonrpc");

    if (!json_is_object(msg) || !json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0) {
        char *t = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(stderr, "fuzz_mcp: the server sent something that is not JSON-RPC 2.0: %s\n",
                t ? t : "(null)");
        abort();
    }
}

static void b_query(void *ctx, const json_t *params, mz_mcpsrv_req *req)
{
    backend *b = ctx;

    (void)params;
    mz_mcpsrv_query_done(req, (b->mode & 1) ? b->records : NULL,
                         (b->mode & 1) ? NULL : "directory unavailable");
}

static void b_execute(void *ctx, const char *rid, const char *method, const json_t *params,
                      int64_t timeout_ms, mz_mcpsrv_req *req)
{
    backend *b = ctx;
    json_t *r;

    (void)rid;
    (void)method;
    (void)timeout_ms;
    switch ((b->mode >> 1) & 3) {
    case 0:
        r = json_pack("{s:[{s:s,s:s}],s:O?}", "content", "type", "text", "text", "ok",
                      "structuredContent", params);
        mz_mcpsrv_exec_done(req, r, NULL, NULL);
        json_decref(r);
        break;
    case 1:
        mz_mcpsrv_exec_done(req, NULL, "timeout", "no answer");
        break;
    case 2:
        mz_mcpsrv_exec_done(req, json_null(), NULL, NULL);
        break;
    default:
        if (b->npending < 8) {
            b->pending[b->npending++] = req;
        } else {
            mz_mcpsrv_exec_done(req, NULL, "busy", "full");
        }
        break;
    }
}

static void b_send(void *ctx, uint64_t conn, json_t *msg)
{
    (void)ctx;
    (void)conn;
    s_check(msg);
    json_decref(msg);
}

static json_t *s_tool(const char *id, const char *desc)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:[s],s:{s:s,s:{s:s},s:s},s:s,s:i,s:s,s:s}",
                     "resource_id", id, "resource_type", "tool", "location", "remote",
                     "owner", "", "capabilities", "mcp", "metadata", "description", desc,
                     "inputSchema", "type", "object", "tool_hash", "ab", "node",
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                     "version", 1, "owner_key",
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                     "signature", "00");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    backend b;
    mz_mcpsrv_opts o;
    mz_mcpsrv *s = NULL;
    size_t i = 1, start;

    if (size < 1 || size > 65536)
        return 0;
    memset(&b, 0, sizeof b);
    b.mode = data[0];
    b.records = json_pack("[o,o]", s_tool("ev/echo", "echo"), s_tool("a b/é", "odd id"));
    memset(&o, 0, sizeof o);
    o.cache_ms = (b.mode & 8) ? 1000 : 0;
    o.ops.query = b_query;
    o.ops.execute = b_execute;
    o.ops.send = b_send;
    o.ctx = &b;
    if (b.records == NULL || mz_mcpsrv_new(&o, &s, NULL) != MZ_OK) {
        json_decref(b.records);
        return 0;
    }
    /* One message per line; a line starting with 0x01 goes to connection 2. */
    while (i < size) {
        start = i;
        while (i < size && data[i] != '\n')
            i++;
        if (i > start) {
            uint64_t conn = data[start] == 0x01 ? 2 : 1;
            size_t off = data[start] == 0x01 ? 1 : 0;
            mz_mcpsrv_handle(s, conn, (const char *)data + start + off, i - start - off);
        }
        i++;
    }
    if (b.mode & 16)
        mz_mcpsrv_conn_closed(s, 1);
    mz_mcpsrv_free(s);
    /* Calls still pending complete after the server is gone (allowed). */
    for (int k = 0; k < b.npending; k++)
        mz_mcpsrv_exec_done(b.pending[k], NULL, "timeout", "late");
    json_decref(b.records);
    return 0;
}
