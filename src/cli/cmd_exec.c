/* exec, subscribe, publish: execution and events from the command line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero.h"

/* PARAMS_JSON / DATA_JSON: JSON (an object when object is set), else a
 * usage error. Returns new or NULL after printing why. */
static json_t *s_json_arg(const mz_cli *cli, const char *what, const char *text, bool object)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);

    if (v == NULL)
        mz_cli_usage(cli, "%s is not JSON: %s (column %d)", what, je.text, je.column);
    else if (object && !json_is_object(v)) {
        mz_cli_usage(cli, "%s must be a JSON object like '{\"k\": 1}'", what);
        json_decref(v);
        v = NULL;
    }
    return v;
}

typedef struct exec_args {
    double timeout;
    const char *agreement_file;
    const char *tool_hash;
} exec_args;

static int s_exec_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    exec_args *x = ctx;
    char *end;

    if (key == 'a') {
        x->agreement_file = arg;
        return 0;
    }
    if (key == 'H') {
        /* A pin is a lowercase hex SHA-256, as tool_hash is listed. */
        if (strlen(arg) != 64 || strspn(arg, "0123456789abcdef") != 64)
            return mz_cli_usage(cli, "--tool-hash takes 64 lowercase hex digits (the "
                                "tool_hash of the resource's metadata), not '%.80s'", arg);
        x->tool_hash = arg;
        return 0;
    }
    x->timeout = strtod(arg, &end);
    if (*arg == '\0' || *end != '\0' || !(x->timeout > 0 && x->timeout <= 600))
        return mz_cli_usage(cli, "--timeout needs seconds in (0, 600], not '%s'", arg);
    return 0;
}

/* The call's failure: "meshzero exec: CODE: MESSAGE" on stderr; with --json
 * the {"error"} object on stderr like every command, and on stdout as well,
 * where scripts read the call's outcome. */
static int s_exec_failed(const mz_cli *cli, const mz_err *e)
{
    const char *sep = strstr(e->msg, ": ");
    size_t n = sep ? (size_t)(sep - e->msg) : strlen(e->msg);
    char code[64];

    snprintf(code, sizeof code, "%.*s", (int)(n < sizeof code ? n : sizeof code - 1), e->msg);
    if (sep == NULL || strspn(code, "abcdefghijklmnopqrstuvwxyz_") != strlen(code)) {
        snprintf(code, sizeof code, "%s", mz_cli_status_code(e->code));
        sep = NULL;
    }
    if (cli->json) {
        json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
                              sep ? sep + 2 : e->msg);
        mz_cli_print_json(o);
        json_decref(o);
        fflush(stdout);
        return mz_cli_fail(cli, code, "%s", sep ? sep + 2 : e->msg);
    }
    return mz_cli_fail(cli, code, "%s", e->msg);
}

/* Reads --agreement FILE; the node checks nothing in it: the host does
 * (docs/AGREEMENTS.md). NULL after printing why. */
static json_t *s_load_agreement(const mz_cli *cli, const char *file)
{
    json_error_t je;
    json_t *a = json_load_file(file, JSON_REJECT_DUPLICATES, &je);

    if (a == NULL || !json_is_object(a)) {
        mz_cli_fail(cli, "bad_request", "--agreement %s: %s", file,
                    a ? "not a JSON object" : je.text);
        json_decref(a);
        return NULL;
    }
    return a;
}

/* Prints the result; an MCP tool result flagged isError is a failure. */
static int s_exec_result(const mz_cli *cli, json_t *res)
{
    bool is_error = json_is_true(json_object_get(res, "isError"));
    json_t *o = cli->json ? json_pack("{s:O}", "result", res) : json_incref(res);

    mz_cli_print_json(o);
    json_decref(o);
    if (is_error) {
        const json_t *c0 = json_array_get(json_object_get(res, "content"), 0);
        const char *t = json_string_value(json_object_get(c0, "text"));
        mz_cli text = *cli;     /* the result is on stdout already */
        text.json = false;
        fflush(stdout);
        return mz_cli_fail(&text, "tool_error", "tool_error: the tool reported an error "
                           "(isError)%s%.300s", t ? ": " : "", t ? t : "");
    }
    return MZ_EXIT_OK;
}

int cmd_exec_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "agreement", 'a', "FILE", "send this agreement (signed by the resource's owner and\n"
                                    "this node) with the call; denied: REASON says why a host\n"
                                    "refused it (default: none)" },
        { "timeout", 't', "SEC", "give up after SEC seconds (default 30, at most 600)" },
        { "tool-hash", 'H', "HASH", "call only if the resource's tool_hash is still HASH;\n"
                                    "else definition_changed, checked by this node before\n"
                                    "sending (default: no pin)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "exec", "ID METHOD [PARAMS_JSON] [--agreement FILE] [--timeout SEC] [--tool-hash HASH]",
        "Calls METHOD of resource ID wherever it is hosted and prints the result as JSON.\n"
        "PARAMS_JSON is a JSON object (default {}). On failure prints CODE: MESSAGE on\n"
        "stderr (codes: not_found, unreachable, timeout, bad_request, handler_error, busy,\n"
        "denied, too_large, definition_changed) and exits 1; an MCP tool result with isError true also exits 1.\n"
        "With --json prints {\"result\": ...} or {\"error\": {\"code\", \"message\"}} on stdout\n"
        "and the same {\"error\"} object on stderr.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON,
        "exec agent123 process_image '{\"image_url\":\"https://example.com/a.jpg\"}'\n"
        "exec everything/echo call '{\"message\":\"hi\"}' --timeout 5 --json", false };
    exec_args x = { 30.0, NULL, NULL };
    json_t *params, *call, *agreement = NULL, *res = NULL;
    mz_apiclient *c;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_exec_opt, &x);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc < 2 || cli.argc > 3)
        return mz_cli_usage(&cli, "need ID METHOD [PARAMS_JSON]");
    params = cli.argc == 3 ? s_json_arg(&cli, "PARAMS_JSON", cli.argv[2], true) : json_object();
    if (params == NULL)
        return MZ_EXIT_USAGE;
    if (x.agreement_file != NULL && (agreement = s_load_agreement(&cli, x.agreement_file)) == NULL) {
        json_decref(params);
        return MZ_EXIT_FAIL;
    }
    call = json_pack("{s:s,s:s,s:o,s:I}", "resource_id", cli.argv[0], "method", cli.argv[1],
                     "params", params, "timeout_ms", (json_int_t)(x.timeout * 1000));
    if (call == NULL || (agreement != NULL &&
                         json_object_set_new(call, "agreement", json_incref(agreement)) != 0) ||
        (x.tool_hash != NULL &&
         json_object_set_new(call, "tool_hash", json_string(x.tool_hash)) != 0)) {
        json_decref(call);
        json_decref(agreement);
        return mz_cli_fail(&cli, "out_of_memory", "out of memory");
    }
    json_decref(agreement);
    if (mz_apiclient_open(cli.node, 10000, &c, &e) != MZ_OK) {
        json_decref(call);
        return mz_cli_fail_err(&cli, &e);
    }
    rc = mz_apiclient_call(c, "execute_remote", call, (int)(x.timeout * 1000) + 5000, &res, &e);
    mz_apiclient_free(c);
    if (rc != MZ_OK)
        return s_exec_failed(&cli, &e);
    rc = s_exec_result(&cli, res);
    json_decref(res);
    return rc;
}

/* ---- subscribe ---------------------------------------------------------- */

typedef struct sub_state {
    long want;                  /* 0: forever */
    long got;
    bool stop;
} sub_state;

static sub_state *s_sub;

static void s_on_sigint(int sig)
{
    (void)sig;
    if (s_sub)
        s_sub->stop = true;
}

static void s_on_push(mz_apiclient *c, const json_t *msg, void *ctx)
{
    sub_state *st = ctx;
    const char *m = json_string_value(json_object_get(msg, "method"));
    char *text;

    (void)c;
    if (m == NULL || strcmp(m, "event") != 0 || st->stop)
        return;
    text = json_dumps(json_object_get(msg, "params"), JSON_COMPACT);
    if (text) {
        puts(text);
        fflush(stdout);
    }
    free(text);
    if (st->want > 0 && ++st->got >= st->want)
        st->stop = true;
}

static int s_sub_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    sub_state *st = ctx;
    long long n;

    (void)key;
    if (!mz_cli_uint_arg(arg, 1LL << 40, &n) || n < 1)
        return mz_cli_usage(cli, "--count needs a positive number, not '%s'", arg);
    st->want = (long)n;
    return 0;
}

int cmd_subscribe_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "count", 'c', "N", "exit after N events (default: until interrupted)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "subscribe", "TOPIC [--count N]",
        "Prints each event as one JSON line {\"topic\", \"data\", \"source\"} (with or without\n"
        "--json). TOPIC is a topic, a prefix with a trailing wildcard (resource.*) or '*'.\n"
        "Built-in topics: resource.added, resource.updated, resource.removed,\n"
        "peer.connected, peer.disconnected. Prints 'subscribed TOPIC' on stderr once active.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON,
        "subscribe 'resource.*' --count 1 --node ws://127.0.0.1:9101\n"
        "subscribe 'demo.*'", false };
    sub_state st = { 0, 0, false };
    mz_apiclient *c;
    json_t *res;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_sub_opt, &st);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need exactly one TOPIC");
    if (mz_apiclient_open(cli.node, 10000, &c, &e) != MZ_OK)
        return mz_cli_fail_err(&cli, &e);
    mz_apiclient_set_push(c, s_on_push, &st);
    if (mz_apiclient_call(c, "subscribe", json_pack("{s:s}", "topic", cli.argv[0]), 10000,
                          &res, &e) != MZ_OK) {
        mz_apiclient_free(c);
        /* A malformed topic is the caller's mistake. */
        return e.code == MZ_EINVAL ? mz_cli_usage(&cli, "%s", e.msg) : mz_cli_fail_err(&cli, &e);
    }
    json_decref(res);
    fprintf(stderr, "subscribed %s\n", cli.argv[0]);
    s_sub = &st;
    signal(SIGINT, s_on_sigint);
    signal(SIGTERM, s_on_sigint);
    rc = mz_apiclient_run(c, &st.stop, &e);
    if (rc != MZ_OK && !st.stop)
        mz_cli_fail_err(&cli, &e);
    mz_apiclient_free(c);
    s_sub = NULL;
    return rc == MZ_OK || st.stop ? MZ_EXIT_OK : MZ_EXIT_FAIL;
}

/* ---- publish ------------------------------------------------------------ */

int cmd_publish_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "publish", "TOPIC [DATA_JSON]",
        "Delivers an event to the subscribers of every node in the mesh, once per node.\n"
        "DATA_JSON is any JSON value (default null). With --json prints {\"published\": true}.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON,
        "publish demo.hello '{\"from\":\"C\"}' --node ws://127.0.0.1:9103\n"
        "publish jobs.done 42", false };
    json_t *data, *res;
    mz_apiclient *c;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc < 1 || cli.argc > 2)
        return mz_cli_usage(&cli, "need TOPIC [DATA_JSON]");
    data = cli.argc == 2 ? s_json_arg(&cli, "DATA_JSON", cli.argv[1], false) : json_null();
    if (data == NULL)
        return MZ_EXIT_USAGE;
    if (mz_apiclient_open(cli.node, 10000, &c, &e) != MZ_OK) {
        json_decref(data);
        return mz_cli_fail_err(&cli, &e);
    }
    rc = mz_apiclient_call(c, "publish", json_pack("{s:s,s:o}", "topic", cli.argv[0], "data",
                                                   data), 10000, &res, &e);
    mz_apiclient_free(c);
    if (rc != MZ_OK)
        return e.code == MZ_EINVAL ? mz_cli_usage(&cli, "%s", e.msg) : mz_cli_fail_err(&cli, &e);
    if (cli.json)
        puts("{\"published\":true}");
    else
        printf("published %s\n", cli.argv[0]);
    json_decref(res);
    return MZ_EXIT_OK;
}
