/* meshzero mcp: an MCP server on stdio (newline-delimited JSON-RPC, the MCP
 * stdio transport) whose tools are the mesh's resources, reached through a
 * node's local API. This is what a desktop MCP client is configured to
 * launch. The MCP logic is mz_mcpsrv (src/bridge_mcp.c); this file is the
 * transport: stdin/stdout, and the API connection as its backend, with
 * asynchronous requests so calls run side by side. docs/MCP.md. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cliopt.h"
#include "util/hmap.h"
#include "bridge/bridge_int.h"
#include "meshzero/bridge.h"
#include "meshzero/node.h"
#include "svc/mcp_view.h"

/* Longest line read from stdin. */
#define MZ_MCP_MAX_LINE (16u * 1024 * 1024)
/* Longest reuse of a directory answer (events invalidate it sooner). */
#define MZ_MCP_CACHE_MS 2000

static const mz_cli_opt s_opts[] = {
    { "type", 't', "TYPE", "resource type to present (default tool; '*' for every type)" },
    { "cap", 'c', "CAP", "only resources with this capability (repeatable: all of them;\n"
                         "default: any)" },
    { "timeout", 'T', "SECS", "per tools/call (default 30, at most 600)" },
    { "view", 'v', "NAME", "present the node's MCP view NAME (its mcp-views config)\n"
                          "instead of --type/--cap; unknown: exit 2 naming the views" },
    { NULL, 0, NULL, NULL } };

static const mz_cli_cmd s_cmd = {
    "mcp", "[--type TYPE] [--cap CAP]... [--view NAME] [--timeout SECS]\n"
           "       meshzero mcp approve TOOL [--view NAME]",
    "Runs an MCP server on stdin/stdout (the MCP stdio transport) whose tools are the\n"
    "resources of the mesh, as seen by the node whose API is at --node. tools/list is a\n"
    "directory query; tools/call runs execute_remote on the resource's host, anywhere in\n"
    "the mesh; notifications/tools/list_changed follows resources coming and going.\n"
    "Tool names are the resource ids with characters outside A-Z a-z 0-9 _ - replaced by\n"
    "'_' (longer than 64 or colliding: cut, plus '_' and 8 hex of the id's SHA-256).\n"
    "Resources imported from MCP servers are called with their own input schema; other\n"
    "resources take {\"method\": ..., \"params\": {...}}. Diagnostics go to stderr.\n"
    "In a view that pins tools, a tool whose tool_hash changed since it was pinned is\n"
    "listed with a warning and its calls fail with definition_changed until\n"
    "`meshzero mcp approve TOOL` (see its --help).",
    s_opts, MZ_CLI_NODE | MZ_CLI_NOARGS,
    "mcp --node ws://127.0.0.1:8766\nmcp --type '*' --cap local --timeout 60\n"
    "mcp --view small\nmcp approve everything_echo --view small", false };

typedef struct mz_mcpcli {
    mz_apiclient *api;
    mz_mcpsrv *srv;
    uv_pipe_t in;
    bool in_open;
    uv_tty_t tty;
    bool is_tty;
    mz_mcpnotify *notify;       /* coalesces list_changed */
    char *line;
    size_t line_len, line_cap;
    bool line_skip;             /* discarding an overlong line */
    mz_hmap *waits;             /* "m<N>" -> mz_mcpsrv_req* (query or execute) */
    unsigned long long next;
    bool stop;
    bool broken;                /* stdout is gone */
    const char *view_name;      /* --view, or NULL */
    mz_mcpview *view;           /* its definition, for resource events */
} mz_mcpcli;

/* ---- stdout ------------------------------------------------------------------- */

static void s_write_all(mz_mcpcli *m, const char *buf, size_t len)
{
    while (len > 0 && !m->broken) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0) {
            m->broken = true;     /* the client went away */
            m->stop = true;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* mz_mcpsrv send: one message per line on stdout. */
static void s_op_send(void *ctx, uint64_t conn, json_t *msg)
{
    mz_mcpcli *m = ctx;
    char *text = json_dumps(msg, JSON_COMPACT);

    (void)conn;
    json_decref(msg);
    if (text == NULL)
        return;
    s_write_all(m, text, strlen(text));
    s_write_all(m, "\n", 1);
    free(text);
}

/* ---- the node API as backend ------------------------------------------------------- */

typedef enum { MZ_WAIT_QUERY, MZ_WAIT_EXEC } mz_wait_kind;

typedef struct mz_wait {
    mz_wait_kind kind;
    mz_mcpsrv_req *req;
} mz_wait;

static void s_complete(mz_wait *w, const json_t *result, const char *code, const char *msg)
{
    /* mcp_view answers {view, definition, pin, records}. */
    if (w->kind == MZ_WAIT_QUERY && json_is_object(result))
        result = json_object_get(result, "records");
    if (w->kind == MZ_WAIT_QUERY)
        mz_mcpsrv_query_done(w->req, code ? NULL : result, msg);
    else
        mz_mcpsrv_exec_done(w->req, code ? NULL : result, code, msg);
    free(w);
}

static void s_api_request(mz_mcpcli *m, mz_wait_kind kind, mz_mcpsrv_req *req,
                          const char *method, json_t *params)
{
    mz_wait *w = calloc(1, sizeof *w);
    char id[32];
    json_t *msg;
    mz_err e;

    if (w == NULL) {
        json_decref(params);
        if (kind == MZ_WAIT_QUERY)
            mz_mcpsrv_query_done(req, NULL, "out of memory");
        else
            mz_mcpsrv_exec_done(req, NULL, MZ_EXEC_HANDLER_ERROR, "out of memory");
        return;
    }
    w->kind = kind;
    w->req = req;
    /* String ids: the API client keeps integer ids for its own blocking calls. */
    snprintf(id, sizeof id, "m%llu", ++m->next);
    msg = json_pack("{s:s,s:s,s:s,s:o}", "jsonrpc", "2.0", "id", id, "method", method, "params",
                    params);
    if (msg == NULL || mz_hmap_put(m->waits, id, w, NULL) != MZ_OK) {
        json_decref(msg);
        s_complete(w, NULL, MZ_EXEC_HANDLER_ERROR, "out of memory");
        return;
    }
    if (mz_apiclient_send(m->api, msg, &e) != MZ_OK) {
        mz_hmap_remove(m->waits, id);
        s_complete(w, NULL, MZ_EXEC_UNREACHABLE, e.msg);
    }
}

static void s_op_query(void *ctx, const json_t *params, mz_mcpsrv_req *req)
{
    mz_mcpcli *m = ctx;

    if (m->view_name != NULL)
        s_api_request(m, MZ_WAIT_QUERY, req, "mcp_view", json_pack("{s:s}", "view",
                                                                    m->view_name));
    else
        s_api_request(m, MZ_WAIT_QUERY, req, "query_resources", json_deep_copy(params));
}

static void s_op_execute(void *ctx, const char *rid, const char *method, const json_t *params,
                         int64_t timeout_ms, mz_mcpsrv_req *req)
{
    const json_t *meta = mz_mcpsrv_req_meta(req);

    /* The client's trace context (params._meta) goes on with the call. */
    s_api_request(ctx, MZ_WAIT_EXEC, req, "execute_remote",
                  json_pack("{s:s,s:s,s:O,s:I,s:O?,s:O?,s:s?}", "resource_id", rid, "method",
                            method, "params", params, "timeout_ms", (json_int_t)timeout_ms,
                            "traceparent", json_object_get(meta, "traceparent"), "tracestate",
                            json_object_get(meta, "tracestate"), "tool_hash",
                            mz_mcpsrv_req_tool_hash(req)));
}

static void s_on_notify(void *ctx)
{
    s_op_send(ctx, 0, mz_mcp_list_changed_msg());
}

/* Everything the node sends that is not the answer to a blocking call:
 * answers to our string-id requests, and event notifications. */
static void s_on_push(mz_apiclient *c, const json_t *msg, void *ctx)
{
    mz_mcpcli *m = ctx;
    const char *id = json_string_value(json_object_get(msg, "id"));
    const char *method = json_string_value(json_object_get(msg, "method"));

    (void)c;
    if (method != NULL && strcmp(method, "event") == 0) {
        const json_t *p = json_object_get(msg, "params");
        const char *topic = json_string_value(json_object_get(p, "topic"));
        const json_t *rec = json_object_get(p, "data");
        if (topic && strncmp(topic, "resource.", 9) == 0 &&
            (m->view ? mz_mcpview_match(m->view, rec) : mz_mcpsrv_record_matches(m->srv, rec))) {
            mz_mcpsrv_invalidate(m->srv);
            if (m->notify != NULL)
                mz__mcpnotify_poke(m->notify);
        }
        return;
    }
    if (method == NULL && id != NULL) {
        mz_wait *w = mz_hmap_remove(m->waits, id);
        const json_t *e = json_object_get(msg, "error");
        if (w == NULL)
            return;
        if (e != NULL) {
            /* execute_remote failures carry the mesh code in error.data.code. */
            const json_t *d = json_object_get(e, "data");
            const char *code = json_string_value(json_object_get(d, "code"));
            const char *text = json_string_value(json_object_get(d, "message"));
            if (code == NULL) {
                code = MZ_EXEC_HANDLER_ERROR;
                text = json_string_value(json_object_get(e, "message"));
            } else if (w->kind == MZ_WAIT_EXEC) {
                mz_mcpsrv_req_error_data(w->req, json_object_get(d, "data"));
            }
            s_complete(w, NULL, code, text ? text : "");
        } else {
            /* The call's trace context rides beside the result; echo it in
             * the CallToolResult's _meta as the HTTP /mcp endpoint does. */
            const json_t *tr = json_object_get(msg, "trace");
            if (w->kind == MZ_WAIT_EXEC)
                mz_mcpsrv_req_trace(w->req, json_string_value(json_object_get(tr, "traceparent")));
            s_complete(w, json_object_get(msg, "result"), NULL, NULL);
        }
    }
}

/* ---- stdin --------------------------------------------------------------------- */

static void s_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(sugg);
    buf->len = buf->base ? sugg : 0;
}

static void s_line(mz_mcpcli *m)
{
    size_t n = m->line_len;

    if (n > 0 && m->line[n - 1] == '\r')
        n--;
    if (n > 0)
        (void)mz_mcpsrv_handle(m->srv, 1, m->line, n);
    m->line_len = 0;
}

static void s_on_stdin(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mz_mcpcli *m = st->data;

    if (nread < 0) {
        /* The client closed stdin: the MCP stdio way of saying goodbye. */
        free(buf->base);
        if (m->line_len > 0 && !m->line_skip)
            s_line(m);
        m->stop = true;
        uv_read_stop(st);
        return;
    }
    for (ssize_t i = 0; i < nread && !m->stop; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            if (m->line_skip) {
                json_t *e = json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", "error",
                                      "code", -32600, "message", "message too long");
                m->line_skip = false;
                m->line_len = 0;
                s_op_send(m, 0, e);
            } else {
                s_line(m);
            }
            continue;
        }
        if (m->line_skip)
            continue;
        if (m->line_len + 1 > MZ_MCP_MAX_LINE) {
            m->line_skip = true;
            continue;
        }
        if (m->line_len + 1 > m->line_cap) {
            size_t cap = m->line_cap ? m->line_cap * 2 : 4096;
            char *nb = realloc(m->line, cap);
            if (nb == NULL) {
                m->line_skip = true;
                continue;
            }
            m->line = nb;
            m->line_cap = cap;
        }
        m->line[m->line_len++] = ch;
    }
    free(buf->base);
}

/* ---- main ------------------------------------------------------------------------ */

static int s_approve_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    (void)cli;
    (void)key;
    *(const char **)ctx = arg;
    return 0;
}

typedef struct mcp_args {
    mz_mcpsrv_opts *so;
    const char **caps;
    const char *view;
    bool filtered;              /* --type or --cap given */
} mcp_args;

static int s_mcp_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    mcp_args *a = ctx;
    char *end;
    double v;

    switch (key) {
    case 't': a->so->resource_type = arg; a->filtered = true; break;
    case 'v': a->view = arg; break;
    case 'c':
        if (a->so->n_capabilities == MZ_CAPS_MAX)
            return mz_cli_usage(cli, "at most %d --cap options", MZ_CAPS_MAX);
        a->caps[a->so->n_capabilities++] = arg;
        a->filtered = true;
        break;
    case 'T':
        v = strtod(arg, &end);
        if (*arg == '\0' || *end != '\0' || !(v > 0 && v <= 600))
            return mz_cli_usage(cli, "--timeout takes seconds in (0, 600], not '%s'", arg);
        a->so->timeout_ms = (int64_t)(v * 1000.0);
        break;
    }
    return 0;
}

/* --view: asks the node for the view (an unknown one is a usage error
 * naming the known views) and presents it. */
static int s_open_view(mz_mcpcli *m, const mz_cli *cli, mz_mcpsrv_opts *so)
{
    json_t *res = NULL;
    mz_err e;
    int rc = MZ_CLI_GO;

    if (mz_apiclient_call(m->api, "mcp_view", json_pack("{s:s}", "view", m->view_name), 10000,
                          &res, &e) != MZ_OK)
        return e.code == MZ_ENOTFOUND ? mz_cli_usage(cli, "%s", e.msg)
                                      : mz_cli_fail_err(cli, &e);
    if (mz_mcpview_parse(m->view_name, json_object_get(res, "definition"), &m->view, &e) !=
        MZ_OK) {
        rc = mz_cli_fail_err(cli, &e);
    } else {
        so->resource_type = mz_mcpview_type(m->view);
        /* A pinning view is asked afresh for every request: an approval
         * made elsewhere counts at once. */
        if (json_is_true(json_object_get(res, "pin")))
            so->cache_ms = 0;
    }
    json_decref(res);
    return rc;
}

static int cmd_mcp_approve_main(int argc, char **argv);

int cmd_mcp_main(int argc, char **argv)
{
    const char *url, *caps[MZ_CAPS_MAX];
    mz_mcpsrv_opts so;
    mz_mcpcli m;
    json_t *res = NULL;
    mcp_args args = { &so, caps, NULL, false };
    mz_cli cli;
    mz_err e;
    int rc;
    uv_loop_t *loop;

    memset(&so, 0, sizeof so);
    memset(&m, 0, sizeof m);
    if (argc > 1 && strcmp(argv[1], "approve") == 0)
        return cmd_mcp_approve_main(argc - 1, argv + 1);
    if ((rc = mz_cli_parse(&cli, &s_cmd, argc, argv, s_mcp_opt, &args)) != MZ_CLI_GO)
        return rc;
    if (args.view != NULL && args.filtered)
        return mz_cli_usage(&cli, "--view NAME replaces --type and --cap (the view's "
                            "definition on the node says what it presents)");
    m.view_name = args.view;
    rc = MZ_EXIT_FAIL;
    url = cli.node;
    signal(SIGPIPE, SIG_IGN);
    so.capabilities = caps;
    /* The directory answer is reused until a resource.* event says it
     * changed (and at most this long): a tools/call then costs one API
     * round trip, not two. */
    so.cache_ms = MZ_MCP_CACHE_MS;
    so.ops.query = s_op_query;
    so.ops.execute = s_op_execute;
    so.ops.send = s_op_send;
    so.ctx = &m;
    if ((m.waits = mz_hmap_new()) == NULL) {
        fprintf(stderr, "meshzero mcp: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    if (mz_apiclient_open(url, 10000, &m.api, &e) != MZ_OK) {
        fprintf(stderr, "meshzero mcp: %s\n", e.msg);
        goto out;
    }
    if (m.view_name != NULL && (rc = s_open_view(&m, &cli, &so)) != MZ_CLI_GO)
        goto out;
    rc = MZ_EXIT_FAIL;
    if (mz_mcpsrv_new(&so, &m.srv, &e) != MZ_OK) {
        fprintf(stderr, "meshzero mcp: %s\n", e.msg);
        goto out;
    }
    /* One blocking call first (it also makes the client's awaited integer id
     * non-zero, so our string-id answers are never taken for it), then the
     * event subscription for list_changed. */
    if (mz_apiclient_call(m.api, "subscribe", json_pack("{s:s}", "topic", "resource.*"), 10000,
                          &res, &e) != MZ_OK) {
        fprintf(stderr, "meshzero mcp: %s\n", e.msg);
        goto out;
    }
    json_decref(res);
    mz_apiclient_set_push(m.api, s_on_push, &m);
    loop = mz_apiclient_loop(m.api);
    if ((m.notify = mz__mcpnotify_new(loop, s_on_notify, &m)) == NULL) {
        fprintf(stderr, "meshzero mcp: out of memory\n");
        goto out;
    }
    if (uv_guess_handle(STDIN_FILENO) == UV_TTY) {
        m.is_tty = true;
        uv_tty_init(loop, &m.tty, STDIN_FILENO, 1);
        m.tty.data = &m;
        uv_read_start((uv_stream_t *)&m.tty, s_alloc, s_on_stdin);
    } else {
        uv_pipe_init(loop, &m.in, 0);
        m.in.data = &m;
        if (uv_pipe_open(&m.in, STDIN_FILENO) != 0 ||
            uv_read_start((uv_stream_t *)&m.in, s_alloc, s_on_stdin) != 0) {
            fprintf(stderr, "meshzero mcp: stdin must be a pipe, a socket or a terminal\n");
            uv_close((uv_handle_t *)&m.in, NULL);
            goto out;
        }
    }
    m.in_open = true;
    if (mz_apiclient_run(m.api, &m.stop, &e) != MZ_OK)
        fprintf(stderr, "meshzero mcp: %s\n", e.msg);
    else
        rc = MZ_EXIT_OK;
    uv_close(m.is_tty ? (uv_handle_t *)&m.tty : (uv_handle_t *)&m.in, NULL);
out:
    mz__mcpnotify_free(m.notify);
    /* Requests still waiting on the node end here; their answers go
     * nowhere (the client left, or the node did). */
    mz_mcpsrv_free(m.srv);
    if (m.waits != NULL) {
        size_t pos = 0;
        const char *key;
        void *val;
        while (mz_hmap_count(m.waits) > 0) {
            pos = 0;
            if (!mz_hmap_next(m.waits, &pos, &key, &val))
                break;
            mz_hmap_remove(m.waits, key);
            s_complete(val, NULL, MZ_EXEC_UNREACHABLE, "shutting down");
        }
        mz_hmap_free(m.waits, NULL);
    }
    mz_apiclient_free(m.api);
    mz_mcpview_free(m.view);
    free(m.line);
    return rc;
}

/* meshzero mcp approve TOOL [--view NAME] */
static int cmd_mcp_approve_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "view", 'v', "NAME", "only in this view (default: every view that pins tools)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "mcp approve", "TOOL [--view NAME]",
        "Approves the current definition of TOOL (its MCP tool name as the view lists it,\n"
        "or its resource id) in the node's pinning MCP views: its pin becomes its current\n"
        "tool_hash, so calls refused with definition_changed go through again and the\n"
        "view lists its new description. Exit 2 for an unknown view, 1 for a tool no\n"
        "pinning view has.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON,
        "mcp approve everything_echo\nmcp approve everything/echo --view small --json", false };
    const char *view = NULL;
    json_t *res = NULL, *a;
    mz_apiclient *c;
    mz_cli cli;
    mz_err e;
    size_t i;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_approve_opt, &view);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need TOOL (a tool name or a resource id)");
    if (mz_apiclient_open(cli.node, 10000, &c, &e) != MZ_OK)
        return mz_cli_fail_err(&cli, &e);
    if (mz_apiclient_call(c, "mcp_approve", json_pack("{s:s,s:s?}", "tool", cli.argv[0], "view",
                                                      view), 10000, &res, &e) != MZ_OK) {
        mz_apiclient_free(c);
        return e.code == MZ_ENOTFOUND && strncmp(e.msg, "unknown MCP view", 16) == 0
                   ? mz_cli_usage(&cli, "%s", e.msg) : mz_cli_fail_err(&cli, &e);
    }
    mz_apiclient_free(c);
    if (cli.json)
        mz_cli_print_json(res);
    else
        json_array_foreach(json_object_get(res, "approved"), i, a)
            printf("approved %s in view %s: tool_hash %s (was %s)\n",
                   json_string_value(json_object_get(a, "tool")),
                   json_string_value(json_object_get(a, "view")),
                   json_string_value(json_object_get(a, "tool_hash")),
                   json_string_value(json_object_get(a, "previous")));
    json_decref(res);
    return MZ_EXIT_OK;
}
