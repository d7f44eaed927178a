/* meshzero members: every node the node knows of, like `consul members`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char s_help[] =
    "usage: meshzero members [--json] [--node URL]\n\n"
    "Lists every node of the mesh the node knows of, itself first: its id, state\n"
    "(alive, suspect: not heard for two alive periods or no route; left: gone, shown\n"
    "for a lease), hops and next hop from here, when it was last heard, its lease\n"
    "left, the resources it hosts and its direct links.\n"
    "  --json         print the API's answer: {\"members\": [...]}\n"
    "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
    "  -h, --help     this text\n\n"
    "examples:\n"
    "  meshzero members\n"
    "  meshzero members --json --node ws://127.0.0.1:8766\n";

static void s_print(const json_t *res)
{
    const json_t *list = json_object_get(res, "members"), *m;
    size_t i;

    printf("%-12s  %-7s  %4s  %-12s  %9s  %9s  %5s  %5s  %s\n", "NODE", "STATE", "HOPS",
           "VIA", "HEARD_MS", "LEASE_MS", "RES", "LINKS", "LISTEN");
    json_array_foreach(list, i, m) {
        const char *via = json_string_value(json_object_get(m, "next_hop"));
        printf("%-12.12s  %-7s  %4lld  %-12.12s  %9lld  %9lld  %5lld  %5zu  %s%s\n",
               json_string_value(json_object_get(m, "id")),
               json_string_value(json_object_get(m, "state")),
               (long long)json_integer_value(json_object_get(m, "hops")), via ? via : "-",
               (long long)json_integer_value(json_object_get(m, "last_heard_ms")),
               (long long)json_integer_value(json_object_get(m, "lease_left_ms")),
               (long long)json_integer_value(json_object_get(m, "resources")),
               json_array_size(json_object_get(m, "peers")),
               json_string_value(json_object_get(m, "listen")),
               json_is_true(json_object_get(m, "self")) ? "  (this node)" : "");
    }
}

int cmd_members_main(int argc, char **argv)
{
    static const struct option longs[] = {
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    const char *node = NULL;
    bool json = false;
    json_t *res;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'n') node = optarg;
        else if (c == 'j') json = true;
        else if (c == 'h') { fputs(s_help, stdout); return MZ_EXIT_OK; }
        else { fputs(s_help, stderr); return MZ_EXIT_USAGE; }
    }
    if (optind < argc) {
        fprintf(stderr, "meshzero members: takes no arguments, got '%s'\n%s", argv[optind],
                s_help);
        return MZ_EXIT_USAGE;
    }
    res = mz_cli_call(node, "members", json_object(), 15000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json) {
        char *text = json_dumps(res, JSON_COMPACT);
        puts(text ? text : "null");
        free(text);
    } else {
        s_print(res);
    }
    json_decref(res);
    return MZ_EXIT_OK;
}
