/* exec, subscribe, publish: execution and events from the command line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "meshzero.h"

static json_t *s_parse_json_arg(const char *cmd, const char *what, const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);

    if (v == NULL)
        fprintf(stderr, "meshzero %s: %s is not JSON: %s (column %d)\n", cmd, what, je.text,
                je.column);
    return v;
}

int cmd_exec_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero exec ID METHOD [PARAMS_JSON] [--agreement FILE] [--timeout SEC] [--json]\n"
        "           [--node URL]\n\n"
        "Calls METHOD of resource ID wherever it is hosted and prints the result as JSON.\n"
        "On failure prints CODE: MESSAGE on stderr (codes: not_found, unreachable, timeout,\n"
        "bad_request, handler_error, busy, denied) and exits 1.\n"
        "  PARAMS_JSON    a JSON object (default {})\n"
        "  --agreement FILE  send this agreement (signed by the resource's owner and this\n"
        "                 node) with the call; denied: REASON says why a host refused it\n"
        "  --timeout SEC  give up after SEC seconds (default 30)\n"
        "  --json         print {\"result\": ...} or {\"error\": {\"code\", \"message\"}}\n"
        "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "timeout", required_argument, NULL, 't' }, { "node", required_argument, NULL, 'n' },
        { "agreement", required_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    const char *node = NULL, *agreement_file = NULL;
    double timeout = 30.0;
    bool json = false;
    json_t *params, *call, *agreement = NULL, *res = NULL;
    json_error_t je;
    mz_apiclient *c;
    mz_err e;
    char *end, *text;
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 't':
            timeout = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || timeout <= 0 || timeout > 600) {
                fprintf(stderr, "meshzero exec: --timeout needs seconds in (0, 600], not '%s'\n",
                        optarg);
                return MZ_EXIT_USAGE;
            }
            break;
        case 'n': node = optarg; break;
        case 'a': agreement_file = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(usage, stdout); return MZ_EXIT_OK;
        default: fputs(usage, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (argc - optind < 2 || argc - optind > 3) {
        fprintf(stderr, "meshzero exec: need ID METHOD [PARAMS_JSON]\n%s", usage);
        return MZ_EXIT_USAGE;
    }
    /* The node checks nothing in it: the host does (docs/AGREEMENTS.md). */
    if (agreement_file != NULL) {
        agreement = json_load_file(agreement_file, JSON_REJECT_DUPLICATES, &je);
        if (agreement == NULL || !json_is_object(agreement)) {
            fprintf(stderr, "meshzero exec: --agreement %s: %s\n", agreement_file,
                    agreement ? "not a JSON object" : je.text);
            json_decref(agreement);
            return MZ_EXIT_FAIL;
        }
    }
    params = argc - optind == 3 ? s_parse_json_arg("exec", "PARAMS_JSON", argv[optind + 2])
                                : json_object();
    if (params == NULL) {
        json_decref(agreement);
        return MZ_EXIT_USAGE;
    }
    call = json_pack("{s:s,s:s,s:o,s:I}", "resource_id", argv[optind], "method",
                     argv[optind + 1], "params", params, "timeout_ms",
                     (json_int_t)(timeout * 1000));
    if (call == NULL)
        json_decref(agreement);       /* json_pack took params; set_new takes agreement */
    if (call == NULL || (agreement != NULL
                         && json_object_set_new(call, "agreement", agreement) != 0)) {
        json_decref(call);
        fprintf(stderr, "meshzero exec: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    if (mz_apiclient_open(node, 10000, &c, &e) != MZ_OK) {
        json_decref(call);
        fprintf(stderr, "meshzero exec: %s\n", e.msg);
        return MZ_EXIT_FAIL;
    }
    rc = mz_apiclient_call(c, "execute_remote", call, (int)(timeout * 1000) + 5000, &res, &e);
    mz_apiclient_free(c);
    if (rc != MZ_OK) {
        /* The node's message reads "code: message". */
        const char *sep = strstr(e.msg, ": ");
        fprintf(stderr, "meshzero exec: %s\n", e.msg);
        if (json) {
            json_t *o = json_pack("{s:{s:s%,s:s}}", "error", "code", e.msg,
                                  sep ? (size_t)(sep - e.msg) : strlen(e.msg), "message",
                                  sep ? sep + 2 : e.msg);
            text = json_dumps(o, JSON_COMPACT);
            if (text) puts(text);
            free(text);
            json_decref(o);
        }
        return MZ_EXIT_FAIL;
    }
    if (json) {
        json_t *o = json_pack("{s:O}", "result", res);
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    } else {
        text = json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    if (text) puts(text);
    free(text);
    json_decref(res);
    return MZ_EXIT_OK;
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

int cmd_subscribe_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero subscribe TOPIC [--count N] [--node URL]\n\n"
        "Prints each event as one JSON line {\"topic\", \"data\", \"source\"}.\n"
        "TOPIC is a topic, a prefix with a trailing wildcard (resource.*) or '*'.\n"
        "Built-in topics: resource.added, resource.updated, resource.removed,\n"
        "peer.connected, peer.disconnected. Prints 'subscribed TOPIC' on stderr once active.\n"
        "  --count N      exit after N events (default: until interrupted)\n"
        "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "count", required_argument, NULL, 'c' }, { "node", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    sub_state st = { 0, 0, false };
    const char *node = NULL;
    mz_apiclient *c;
    json_t *res;
    mz_err e;
    char *end;
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'c':
            st.want = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || st.want < 1) {
                fprintf(stderr, "meshzero subscribe: --count needs a positive number\n");
                return MZ_EXIT_USAGE;
            }
            break;
        case 'n': node = optarg; break;
        case 'j': break;            /* output is always JSON lines */
        case 'h': fputs(usage, stdout); return MZ_EXIT_OK;
        default: fputs(usage, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "meshzero subscribe: need exactly one TOPIC\n%s", usage);
        return MZ_EXIT_USAGE;
    }
    if (mz_apiclient_open(node, 10000, &c, &e) != MZ_OK) {
        fprintf(stderr, "meshzero subscribe: %s\n", e.msg);
        return MZ_EXIT_FAIL;
    }
    mz_apiclient_set_push(c, s_on_push, &st);
    if (mz_apiclient_call(c, "subscribe", json_pack("{s:s}", "topic", argv[optind]), 10000,
                          &res, &e) != MZ_OK) {
        fprintf(stderr, "meshzero subscribe: %s\n", e.msg);
        mz_apiclient_free(c);
        return MZ_EXIT_FAIL;
    }
    json_decref(res);
    fprintf(stderr, "subscribed %s\n", argv[optind]);
    s_sub = &st;
    signal(SIGINT, s_on_sigint);
    signal(SIGTERM, s_on_sigint);
    rc = mz_apiclient_run(c, &st.stop, &e);
    if (rc != MZ_OK && !st.stop)
        fprintf(stderr, "meshzero subscribe: %s\n", e.msg);
    mz_apiclient_free(c);
    s_sub = NULL;
    return rc == MZ_OK || st.stop ? MZ_EXIT_OK : MZ_EXIT_FAIL;
}

/* ---- publish ------------------------------------------------------------ */

int cmd_publish_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero publish TOPIC [DATA_JSON] [--json] [--node URL]\n\n"
        "Delivers an event to the subscribers of every node in the mesh, once per node.\n"
        "  DATA_JSON      any JSON value (default null)\n"
        "  --json         print {\"published\": true}\n"
        "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    const char *node = NULL;
    bool json = false;
    json_t *data, *res;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'n') node = optarg;
        else if (ch == 'j') json = true;
        else if (ch == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        fprintf(stderr, "meshzero publish: need TOPIC [DATA_JSON]\n%s", usage);
        return MZ_EXIT_USAGE;
    }
    data = argc - optind == 2 ? s_parse_json_arg("publish", "DATA_JSON", argv[optind + 1])
                              : json_null();
    if (data == NULL)
        return MZ_EXIT_USAGE;
    res = mz_cli_call(node, "publish",
                      json_pack("{s:s,s:o}", "topic", argv[optind], "data", data), 10000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json)
        puts("{\"published\":true}");
    else
        printf("published %s\n", argv[optind]);
    json_decref(res);
    return MZ_EXIT_OK;
}
