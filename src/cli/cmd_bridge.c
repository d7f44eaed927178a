/* meshzero bridge: import an MCP server into a running node (bridge_add on
 * its local API), and list the servers a node imports. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "meshzero/bridge.h"

#define CALL_TIMEOUT_MS 10000

static const char s_usage[] =
    "usage: meshzero bridge add NAME [--tag TAG]... [--wait SECS] [--node URL] [--json]\n"
    "                          -- COMMAND [ARGS...]\n"
    "       meshzero bridge add NAME --url http://HOST:PORT/PATH [...]\n"
    "       meshzero bridge list [--node URL] [--json]\n\n"
    "add: the node runs COMMAND (no shell) as an MCP server over stdio, or talks to a\n"
    "Streamable HTTP MCP server at --url; each of its tools becomes a resource NAME/<tool>\n"
    "of type tool. Waits until the tools are registered (or the server failed) and\n"
    "prints them. list: the imported servers and their state.\n\n"
    "  --tag TAG       extra capability of every tool (repeatable)\n"
    "  --url URL       a Streamable HTTP server instead of a command\n"
    "  --wait SECS     how long to wait for the tools (default 30; 0: do not wait)\n"
    "  --node URL      the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
    "  --json          print the server's entry as JSON\n"
    "  -h, --help      this text\n";

static void s_print_entry(const json_t *ent, bool json)
{
    size_t i;
    json_t *v;

    if (json) {
        char *s = json_dumps(ent, JSON_COMPACT);
        if (s) {
            puts(s);
            free(s);
        }
        return;
    }
    printf("%s  %s %s  state=%s  tools=%zu  restarts=%lld%s%s\n",
           json_string_value(json_object_get(ent, "name")),
           json_string_value(json_object_get(ent, "transport")),
           json_string_value(json_object_get(ent, "target")),
           json_string_value(json_object_get(ent, "state")),
           json_array_size(json_object_get(ent, "tools")),
           (long long)json_integer_value(json_object_get(ent, "restarts")),
           json_string_value(json_object_get(ent, "last_error"))[0] ? "  last_error=" : "",
           json_string_value(json_object_get(ent, "last_error")));
    json_array_foreach(json_object_get(ent, "tools"), i, v)
        printf("  %s\n", json_string_value(v));
    json_array_foreach(json_object_get(ent, "skipped"), i, v)
        printf("  skipped %s: %s\n", json_string_value(json_object_get(v, "tool")),
               json_string_value(json_object_get(v, "reason")));
}

static json_t *s_find(json_t *list, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
            return v;
    return NULL;
}

static int s_list(const char *url, bool json)
{
    json_t *list = mz_cli_call(url, "bridge_list", NULL, CALL_TIMEOUT_MS);
    size_t i;
    json_t *v;

    if (list == NULL)
        return MZ_EXIT_FAIL;
    if (json) {
        char *s = json_dumps(list, JSON_COMPACT);
        if (s) {
            puts(s);
            free(s);
        }
    } else {
        json_array_foreach(list, i, v)
            s_print_entry(v, false);
    }
    json_decref(list);
    return MZ_EXIT_OK;
}

static int s_add(const char *url, const char *name, json_t *params, double wait_s, bool json)
{
    mz_apiclient *c;
    json_t *res = NULL;
    mz_err e;
    int rc = MZ_EXIT_FAIL;
    struct timespec t0, now;

    if (mz_apiclient_open(url, CALL_TIMEOUT_MS, &c, &e) != MZ_OK) {
        json_decref(params);
        fprintf(stderr, "meshzero bridge: %s\n", e.msg);
        return MZ_EXIT_FAIL;
    }
    if (mz_apiclient_call(c, "bridge_add", params, CALL_TIMEOUT_MS, &res, &e) != MZ_OK) {
        fprintf(stderr, "meshzero bridge: %s\n", e.msg);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Poll its state: the import runs in the node, asynchronously. */
    while (wait_s > 0) {
        json_t *list = NULL, *ent;
        const char *st;
        if (mz_apiclient_call(c, "bridge_list", NULL, CALL_TIMEOUT_MS, &list, &e) != MZ_OK) {
            fprintf(stderr, "meshzero bridge: %s\n", e.msg);
            goto out;
        }
        ent = s_find(list, name);
        st = json_string_value(json_object_get(ent, "state"));
        if (ent != NULL && st != NULL && strcmp(st, "starting") != 0) {
            json_decref(res);
            res = json_incref(ent);
            json_decref(list);
            if (strcmp(st, "up") != 0) {
                fprintf(stderr, "meshzero bridge: %s: %s (the node keeps retrying)\n", name,
                        json_string_value(json_object_get(res, "last_error")));
                goto out;
            }
            break;
        }
        json_decref(list);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >
            wait_s) {
            fprintf(stderr, "meshzero bridge: %s: still starting after %.0f s (the node goes "
                    "on trying)\n", name, wait_s);
            goto out;
        }
        {
            struct timespec d = { 0, 100 * 1000 * 1000 };
            nanosleep(&d, NULL);
        }
    }
    s_print_entry(res, json);
    rc = MZ_EXIT_OK;
out:
    json_decref(res);
    mz_apiclient_free(c);
    return rc;
}

int cmd_bridge_main(int argc, char **argv)
{
    static const struct option longs[] = {
        { "tag", required_argument, NULL, 't' },
        { "url", required_argument, NULL, 'u' },
        { "wait", required_argument, NULL, 'w' },
        { "node", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *node = NULL, *hurl = NULL, *sub, *name = NULL;
    json_t *tags = json_array(), *cmd = NULL, *params;
    double wait_s = 30;
    bool json = false;
    int c;

    if (tags == NULL)
        return MZ_EXIT_FAIL;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        json_decref(tags);
        fputs(s_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? MZ_EXIT_USAGE : MZ_EXIT_OK;
    }
    sub = argv[1];
    optind = 2;
    /* "+" stops at the first non-option: NAME, then "--" and the command. */
    while ((c = getopt_long(argc, argv, "+h", longs, NULL)) != -1 ||
           (optind < argc && name == NULL && strcmp(sub, "add") == 0 &&
            strcmp(argv[optind], "--") != 0 && (name = argv[optind++]) != NULL)) {
        if (c == -1)
            continue;
        switch (c) {
        case 't': json_array_append_new(tags, json_string(optarg)); break;
        case 'u': hurl = optarg; break;
        case 'w': wait_s = strtod(optarg, NULL); break;
        case 'n': node = optarg; break;
        case 'j': json = true; break;
        case 'h': json_decref(tags); fputs(s_usage, stdout); return MZ_EXIT_OK;
        default: json_decref(tags); fputs(s_usage, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (strcmp(sub, "list") == 0) {
        json_decref(tags);
        if (optind < argc) {
            fprintf(stderr, "meshzero bridge list: unexpected argument '%s'\n", argv[optind]);
            return MZ_EXIT_USAGE;
        }
        return s_list(node, json);
    }
    if (strcmp(sub, "add") != 0) {
        json_decref(tags);
        fprintf(stderr, "meshzero bridge: unknown subcommand '%s'\n\n%s", sub, s_usage);
        return MZ_EXIT_USAGE;
    }
    if (optind < argc && strcmp(argv[optind - 1], "--") != 0 && strcmp(argv[optind], "--") == 0)
        optind++;
    if (name == NULL || (hurl == NULL) == (optind >= argc)) {
        json_decref(tags);
        fprintf(stderr, "meshzero bridge add: give NAME and either -- COMMAND [ARGS...] or "
                "--url URL\n\n%s", s_usage);
        return MZ_EXIT_USAGE;
    }
    if (hurl == NULL) {
        cmd = json_array();
        for (int i = optind; cmd && i < argc; i++)
            json_array_append_new(cmd, json_string(argv[i]));
    }
    params = json_pack("{s:s,s:o}", "name", name, "tags", tags);
    if (params == NULL || (hurl == NULL && cmd == NULL)) {
        json_decref(params);
        json_decref(cmd);
        fprintf(stderr, "meshzero bridge: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    if (hurl != NULL)
        json_object_set_new(params, "url", json_string(hurl));
    else
        json_object_set_new(params, "command", cmd);
    return s_add(node, name, params, wait_s, json);
}
