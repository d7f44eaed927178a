/* meshzero members: every node the node knows of, like `consul members`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cliopt.h"

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
    static const mz_cli_cmd cmd = {
        "members", "",
        "Lists every node of the mesh the node knows of, itself first: its id, state\n"
        "(alive; suspect: no direct link, and no route or not heard for two alive\n"
        "periods; left: gone, shown for a lease), hops and next hop from here, when it\n"
        "was last heard, its lease left, the resources it hosts and its direct links.\n"
        "--json prints the API's answer: {\"members\": [...]}.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON, "members\nmembers --json --node ws://127.0.0.1:8766",
        false };
    mz_cli cli;
    json_t *res;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc > 0)
        return mz_cli_usage(&cli, "takes no arguments, got '%s'", cli.argv[0]);
    res = mz_cli_call(cli.node, "members", json_object(), 15000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (cli.json) {
        char *text = json_dumps(res, JSON_COMPACT);
        puts(text ? text : "null");
        free(text);
    } else {
        s_print(res);
    }
    json_decref(res);
    return MZ_EXIT_OK;
}
