/* meshzero: the command table. */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "cli.h"

/* MCP bridge commands (cmd_mcp.c, cmd_bridge.c). */
int cmd_mcp_main(int argc, char **argv);
int cmd_bridge_main(int argc, char **argv);
int cmd_members_main(int argc, char **argv);      /* cmd_members.c */

static const struct mz_cmd {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} s_cmds[] = {
    { "node",       cmd_node_main,       "run a node in the foreground" },
    { "id",         cmd_id_main,         "print a data directory's node id" },
    { "keygen",     cmd_keygen_main,     "make an owner key for signing records" },
    { "register",   cmd_register_main,   "register (or update) a resource on a node" },
    { "unregister", cmd_unregister_main, "remove a resource from a node" },
    { "query",      cmd_query_main,      "find resources by type and capability" },
    { "peers",      cmd_peers_main,      "list a node's linked peers" },
    { "connect",    cmd_connect_main,    "link a node to a peer" },
    { "disconnect", cmd_disconnect_main, "close a node's link to a peer" },
    { "status",     cmd_status_main,     "show a node's state and counters" },
    { "members",    cmd_members_main,    "list every node of the mesh this node knows of" },
    { "exec",       cmd_exec_main,       "call a method of a resource anywhere in the mesh" },
    { "subscribe",  cmd_subscribe_main,  "print events as JSON lines" },
    { "publish",    cmd_publish_main,    "send an event to every node" },
    { "serve",      cmd_serve_main,      "host a resource whose calls run a command" },
    { "agreement",  cmd_agreement_main,  "create, sign, show agreements; their usage" },
    { "mcp",        cmd_mcp_main,        "serve the mesh's resources as MCP tools on stdio" },
    { "bridge",     cmd_bridge_main,     "import an MCP server into a running node" },
};

static void s_usage(FILE *f)
{
    fprintf(f, "usage: meshzero COMMAND [OPTIONS]\n\n"
               "A mesh network for AI agents and tools.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        fprintf(f, "  %-11s %s\n", s_cmds[i].name, s_cmds[i].summary);
    fprintf(f, "\n'meshzero COMMAND --help' describes a command. Client commands reach a node's\n"
               "local API at --node URL, else $MESHZERO_API, else ws://127.0.0.1:8766.\n");
}

int main(int argc, char **argv)
{
    /* No up-front page-cache block per SQLite connection (20 pages, ~90 KiB,
     * all touched): pages are allocated as a database needs them. Must come
     * before SQLite's first use; process-wide, hence here and not in the
     * library. */
    (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    if (argc < 2) {
        s_usage(stderr);
        return MZ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        s_usage(stdout);
        return MZ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        if (strcmp(argv[1], s_cmds[i].name) == 0)
            return s_cmds[i].main(argc - 1, argv + 1);
    fprintf(stderr, "meshzero: unknown command '%s'\n\n", argv[1]);
    s_usage(stderr);
    return MZ_EXIT_USAGE;
}
