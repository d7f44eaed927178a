/* meshzero: the command table, the options given before a command, and the
 * commands about the command line itself (help, version, completion). */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero/node.h"
#include "meshzero/version.h"
#include "util/nearest.h"

#ifndef MZ_COMMIT
#define MZ_COMMIT "unknown"
#endif

/* MCP bridge commands (cmd_mcp.c, cmd_bridge.c). */
int cmd_mcp_main(int argc, char **argv);
int cmd_bridge_main(int argc, char **argv);
int cmd_members_main(int argc, char **argv);      /* cmd_members.c */
static int cmd_help_main(int argc, char **argv);
static int cmd_version_main(int argc, char **argv);
static int cmd_completion_main(int argc, char **argv);

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
    { "status",     cmd_status_main,     "show a node's state, counters and limits" },
    { "members",    cmd_members_main,    "list every node of the mesh this node knows of" },
    { "exec",       cmd_exec_main,       "call a method of a resource anywhere in the mesh" },
    { "subscribe",  cmd_subscribe_main,  "print events as JSON lines" },
    { "publish",    cmd_publish_main,    "send an event to every node" },
    { "serve",      cmd_serve_main,      "host a resource whose calls run a command" },
    { "agreement",  cmd_agreement_main,  "create, sign, show agreements; their usage" },
    { "mcp",        cmd_mcp_main,        "serve the mesh's resources as MCP tools on stdio" },
    { "bridge",     cmd_bridge_main,     "import MCP servers into a running node, list, remove" },
    { "help",       cmd_help_main,       "describe a command (help COMMAND)" },
    { "version",    cmd_version_main,    "print the version, commit and protocol version" },
    { "completion", cmd_completion_main, "print a bash or zsh completion script" },
};
#define N_CMDS (sizeof s_cmds / sizeof s_cmds[0])

static void s_usage(FILE *f)
{
    fprintf(f, "usage: meshzero [--node URL] [--json] COMMAND [OPTIONS]\n"
               "       meshzero --version | --help\n\n"
               "A mesh network for AI agents and tools.\n\ncommands:\n");
    for (size_t i = 0; i < N_CMDS; i++)
        fprintf(f, "  %-11s %s\n", s_cmds[i].name, s_cmds[i].summary);
    fprintf(f, "\n'meshzero help COMMAND' (or 'meshzero COMMAND --help') describes a command.\n"
               "Client commands reach a node's local API at --node URL, else $MESHZERO_API,\n"
               "else " MZ_DEFAULT_API_URL "; --node and --json may come before the command.\n"
               "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static const struct mz_cmd *s_find(const char *name)
{
    for (size_t i = 0; i < N_CMDS; i++)
        if (strcmp(name, s_cmds[i].name) == 0)
            return &s_cmds[i];
    return NULL;
}

static int s_unknown(const char *name)
{
    const char *names[N_CMDS];
    const char *near;

    for (size_t i = 0; i < N_CMDS; i++)
        names[i] = s_cmds[i].name;
    near = mz__nearest_name(name, names, N_CMDS);
    fprintf(stderr, "meshzero: unknown command '%s'%s%s%s\n"
            "usage: meshzero [--node URL] [--json] COMMAND [OPTIONS]\n"
            "Try 'meshzero --help' for the list of commands.\n", name,
            near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
    return MZ_EXIT_USAGE;
}

static int cmd_help_main(int argc, char **argv)
{
    const struct mz_cmd *c;
    char help[] = "--help";
    char *args[3];

    if (argc < 2) {
        s_usage(stdout);
        return MZ_EXIT_OK;
    }
    if (argc > 3 || (c = s_find(argv[1])) == NULL)
        return argc > 3 ? (fprintf(stderr, "meshzero help: usage: meshzero help COMMAND "
                                   "[SUBCOMMAND]\n"), MZ_EXIT_USAGE) : s_unknown(argv[1]);
    if (c->main == cmd_help_main) {
        s_usage(stdout);
        return MZ_EXIT_OK;
    }
    /* help bridge add -> bridge add --help */
    args[0] = argv[1];
    args[1] = argc == 3 ? argv[2] : help;
    args[2] = help;
    return c->main(argc == 3 ? 3 : 2, args);
}

static int cmd_version_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "version", "", "Prints the version of meshzero, the commit it was built from and the\n"
        "peer protocol it speaks.", NULL, MZ_CLI_JSON | MZ_CLI_NOARGS, "version\n--json version", false };
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.json)
        printf("{\"version\":\"%s\",\"commit\":\"%s\",\"protocol\":\"%s\"}\n", mz_version(),
               MZ_COMMIT, MZ_PROTOCOL_VERSION);
    else
        printf("meshzero %s (commit %s, protocol %s)\n", mz_version(), MZ_COMMIT,
               MZ_PROTOCOL_VERSION);
    return MZ_EXIT_OK;
}

/* ---- completion --------------------------------------------------------- */

static void s_words(FILE *f)
{
    for (size_t i = 0; i < N_CMDS; i++)
        fprintf(f, "%s%s", i ? " " : "", s_cmds[i].name);
}

/* The options of a command come from its own --help at completion time, so
 * the scripts never fall out of step with the commands. */
static void s_bash(void)
{
    printf("# bash completion for meshzero: eval \"$(meshzero completion bash)\"\n"
           "_meshzero() {\n"
           "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" cmd=\"\" i\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        case \"${COMP_WORDS[i]}\" in\n"
           "            --node) ((i++)) ;;\n"
           "            -*) ;;\n"
           "            *) cmd=\"${COMP_WORDS[i]}\"; break ;;\n"
           "        esac\n"
           "    done\n"
           "    if [[ -z \"$cmd\" ]]; then\n"
           "        COMPREPLY=($(compgen -W \"");
    s_words(stdout);
    printf(" --node --json --help --version\" -- \"$cur\"))\n"
           "    elif [[ \"$cur\" == -* ]]; then\n"
           "        COMPREPLY=($(compgen -W \"$(meshzero \"$cmd\" --help 2>/dev/null | "
           "grep -o -- '--[a-z][a-z-]*' | sort -u)\" -- \"$cur\"))\n"
           "    else\n"
           "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
           "    fi\n"
           "}\n"
           "complete -F _meshzero meshzero\n");
}

static void s_zsh(void)
{
    printf("#compdef meshzero\n"
           "# zsh completion for meshzero: meshzero completion zsh > \"${fpath[1]}/_meshzero\"\n"
           "_meshzero() {\n"
           "    local -a cmds opts\n"
           "    cmds=(");
    s_words(stdout);
    printf(")\n"
           "    if (( CURRENT == 2 )); then\n"
           "        compadd -- $cmds --node --json --help --version\n"
           "    elif [[ $words[CURRENT] == -* ]]; then\n"
           "        opts=(${(f)\"$(meshzero $words[2] --help 2>/dev/null | "
           "grep -o -- '--[a-z][a-z-]*' | sort -u)\"})\n"
           "        compadd -- $opts\n"
           "    else\n"
           "        _files\n"
           "    fi\n"
           "}\n"
           "compdef _meshzero meshzero\n");
}

static int cmd_completion_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "completion", "bash|zsh",
        "Prints a shell completion script: commands, and each command's options as its\n"
        "--help lists them.", NULL, 0,
        "completion bash > /etc/bash_completion.d/meshzero\n"
        "completion zsh > \"${fpath[1]}/_meshzero\"", false };
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need one shell: bash or zsh");
    if (strcmp(cli.argv[0], "bash") == 0)
        s_bash();
    else if (strcmp(cli.argv[0], "zsh") == 0)
        s_zsh();
    else
        return mz_cli_usage(&cli, "no completion for '%s' (bash or zsh)", cli.argv[0]);
    return MZ_EXIT_OK;
}

/* ---- main --------------------------------------------------------------- */

/* Options before the command: --node URL, --json, --help, --version.
 * Returns the index of the command, or -(exit code + 1). */
static int s_globals(int argc, char **argv)
{
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--node") == 0 && i + 1 < argc)
            mz_cli_global_node = argv[++i];
        else if (strncmp(argv[i], "--node=", 7) == 0)
            mz_cli_global_node = argv[i] + 7;
        else if (strcmp(argv[i], "--json") == 0)
            mz_cli_global_json = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_usage(stdout);
            return -(MZ_EXIT_OK + 1);
        } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            char *args[] = { (char *)"version", mz_cli_global_json ? (char *)"--json" : NULL,
                             NULL };
            return -(cmd_version_main(mz_cli_global_json ? 2 : 1, args) + 1);
        } else {
            fprintf(stderr, "meshzero: %s '%s' before the command\n"
                    "usage: meshzero [--node URL] [--json] COMMAND [OPTIONS]\n"
                    "Try 'meshzero --help' for more.\n",
                    strcmp(argv[i], "--node") == 0 ? "missing URL after" : "unknown option",
                    argv[i]);
            return -(MZ_EXIT_USAGE + 1);
        }
    }
    if (i >= argc) {
        s_usage(stderr);
        return -(MZ_EXIT_USAGE + 1);
    }
    return i;
}

int main(int argc, char **argv)
{
    const struct mz_cmd *c;
    int i;

    /* No up-front page-cache block per SQLite connection (20 pages, ~90 KiB,
     * all touched): pages are allocated as a database needs them. Must come
     * before SQLite's first use; process-wide, hence here and not in the
     * library. */
    (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    if ((i = s_globals(argc, argv)) < 0)
        return -i - 1;
    if ((c = s_find(argv[i])) == NULL)
        return s_unknown(argv[i]);
    return c->main(argc - i, argv + i);
}
