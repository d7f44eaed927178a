/* meshzero bridge: import an MCP server into a running node (bridge_add on
 * its local API), and list the servers a node imports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero/bridge.h"

#define CALL_TIMEOUT_MS 10000

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

static int s_list(const mz_cli *cli)
{
    json_t *list = mz_cli_call(cli->node, "bridge_list", NULL, CALL_TIMEOUT_MS);
    size_t i;
    json_t *v;

    if (list == NULL)
        return MZ_EXIT_FAIL;
    if (cli->json)
        mz_cli_print_json(list);
    else
        json_array_foreach(list, i, v)
            s_print_entry(v, false);
    if (!cli->json && json_array_size(list) == 0)
        printf("no MCP servers imported\n");
    json_decref(list);
    return MZ_EXIT_OK;
}

static double s_elapsed(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Polls bridge_list until NAME left "starting": the import runs in the node,
 * asynchronously. Returns the entry (new) or NULL after printing why. */
static json_t *s_wait_up(const mz_cli *cli, mz_apiclient *c, const char *name, double wait_s)
{
    struct timespec t0;
    mz_err e;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        json_t *list = NULL, *ent;
        const char *st;
        if (mz_apiclient_call(c, "bridge_list", NULL, CALL_TIMEOUT_MS, &list, &e) != MZ_OK) {
            mz_cli_fail_err(cli, &e);
            return NULL;
        }
        ent = json_incref(s_find(list, name));
        json_decref(list);
        st = json_string_value(json_object_get(ent, "state"));
        if (st != NULL && strcmp(st, "ready") == 0)
            return ent;
        if (st != NULL && strcmp(st, "starting") != 0) {
            mz_cli_fail(cli, "unreachable", "%s: %s (not retried; 'meshzero bridge remove %s' "
                        "forgets it)", name,
                        json_string_value(json_object_get(ent, "last_error")), name);
            json_decref(ent);
            return NULL;
        }
        json_decref(ent);
        if (s_elapsed(&t0) > wait_s) {
            mz_cli_fail(cli, "timeout", "%s: still starting after %.0f s (the node goes on "
                        "trying; 'meshzero bridge remove %s' stops it)", name, wait_s, name);
            return NULL;
        }
        {
            struct timespec d = { 0, 100 * 1000 * 1000 };
            nanosleep(&d, NULL);
        }
    }
}

static int s_add(const mz_cli *cli, const char *name, json_t *params, double wait_s)
{
    mz_apiclient *c;
    json_t *res = NULL;
    mz_err e;
    int rc = MZ_EXIT_FAIL;

    if (mz_apiclient_open(cli->node, CALL_TIMEOUT_MS, &c, &e) != MZ_OK) {
        json_decref(params);
        return mz_cli_fail_err(cli, &e);
    }
    if (mz_apiclient_call(c, "bridge_add", params, CALL_TIMEOUT_MS, &res, &e) != MZ_OK) {
        mz_cli_fail_err(cli, &e);
        goto out;
    }
    if (wait_s > 0) {
        json_decref(res);
        if ((res = s_wait_up(cli, c, name, wait_s)) == NULL)
            goto out;
    }
    s_print_entry(res, cli->json);
    rc = MZ_EXIT_OK;
out:
    json_decref(res);
    mz_apiclient_free(c);
    return rc;
}

typedef struct add_args {
    json_t *tags;
    json_t *env, *env_pass;     /* "NAME=value" / names */
    const char *url;
    double wait_s;
} add_args;

static int s_add_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    add_args *a = ctx;
    char *end;

    if (key == 't')
        json_array_append_new(a->tags, json_string(arg));
    else if (key == 'e' && (strchr(arg, '=') == NULL || arg[0] == '='))
        return mz_cli_usage(cli, "--env needs NAME=VALUE, not '%s'", arg);
    else if (key == 'e')
        json_array_append_new(a->env, json_string(arg));
    else if (key == 'p')
        json_array_append_new(a->env_pass, json_string(arg));
    else if (key == 'u')
        a->url = arg;
    else {
        a->wait_s = strtod(arg, &end);
        if (*arg == '\0' || *end != '\0' || !(a->wait_s >= 0 && a->wait_s <= 3600))
            return mz_cli_usage(cli, "--wait needs seconds in [0, 3600], not '%s'", arg);
    }
    return 0;
}

static const mz_cli_opt s_add_opts[] = {
    { "tag", 't', "TAG", "extra capability of every tool (repeatable; default none)" },
    { "url", 'u', "URL", "a Streamable HTTP server (http://HOST:PORT/PATH) instead of a\n"
                         "command" },
    { "wait", 'w', "SECS", "how long to wait for the tools (default 30; 0: do not wait)" },
    { "env", 'e', "NAME=VALUE", "set in the server's environment (repeatable)" },
    { "env-pass", 'p', "NAME", "pass NAME from the node's environment (repeatable); the\n"
                              "server gets only PATH, HOME, LANG and these" },
    { NULL, 0, NULL, NULL } };

static const mz_cli_cmd s_add_cmd = {
    "bridge add", "NAME [--tag TAG]... [--env NAME=VALUE]... [--env-pass NAME]... [--wait SECS]\n"
    "    -- COMMAND [ARGS...]\n"
    "NAME --url http://HOST:PORT/PATH [--tag TAG]... [--wait SECS]",
    "The node runs COMMAND (no shell) as an MCP server over stdio, or talks to a\n"
    "Streamable HTTP MCP server at --url; each of its tools becomes a resource\n"
    "NAME/<tool> of type tool. Waits until the tools are registered and prints them.\n"
    "A server that fails before its tools were listed is not retried: the command\n"
    "exits 1 with the reason. The command's environment is PATH, HOME and LANG of\n"
    "the node, the --env-pass variables, then the --env settings: nothing else of\n"
    "the node's environment.",
    s_add_opts, MZ_CLI_NODE | MZ_CLI_JSON,
    "bridge add everything -- npx -y @modelcontextprotocol/server-everything stdio\n"
    "bridge add gh --env GITHUB_HOST=github.com --env-pass GITHUB_TOKEN -- github-mcp\n"
    "bridge add files --url http://127.0.0.1:3001/mcp --tag local", true };

static int s_cmd_add(int argc, char **argv)
{
    add_args a = { json_array(), json_array(), json_array(), NULL, 30 };
    json_t *params, *cmd = NULL;
    const char *name;
    mz_cli cli, rest;
    int rc, n = 1;

    if (a.tags == NULL || a.env == NULL || a.env_pass == NULL) {
        rc = MZ_EXIT_FAIL;
        goto fail;
    }
    if ((rc = mz_cli_parse(&cli, &s_add_cmd, argc, argv, s_add_opt, &a)) != MZ_CLI_GO)
        goto fail;
    name = cli.argc > 0 ? cli.argv[0] : NULL;
    /* Options may follow NAME: parse up to "--"; what follows is the command. */
    while (n < cli.argc && strcmp(cli.argv[n], "--") != 0)
        n++;
    if (name != NULL && n > 1) {
        if ((rc = mz_cli_parse(&rest, &s_add_cmd, n, cli.argv, s_add_opt, &a)) != MZ_CLI_GO)
            goto fail;
        if (rest.argc > 0) {
            rc = mz_cli_usage(&cli, "unexpected argument '%s' before --", rest.argv[0]);
            goto fail;
        }
        if (rest.node != mz_cli_global_node)
            cli.node = rest.node;
        cli.json = cli.json || rest.json;
    }
    if (name == NULL || strcmp(name, "--") == 0 || (a.url == NULL) == (n + 1 >= cli.argc)) {
        rc = mz_cli_usage(&cli, "give NAME and either -- COMMAND [ARGS...] or --url URL");
        goto fail;
    }
    if (a.url != NULL && json_array_size(a.env) + json_array_size(a.env_pass) > 0) {
        rc = mz_cli_usage(&cli, "--env and --env-pass are for a command's environment, not "
                          "for a --url server");
        goto fail;
    }
    if (a.url == NULL) {
        cmd = json_array();
        for (int i = n + 1; cmd && i < cli.argc; i++)
            json_array_append_new(cmd, json_string(cli.argv[i]));
    }
    params = json_pack("{s:s,s:o,s:o,s:o}", "name", name, "tags", a.tags, "env", a.env,
                       "env_pass", a.env_pass);
    if (params == NULL || (a.url == NULL && cmd == NULL)) {
        json_decref(params);
        json_decref(cmd);
        return mz_cli_fail(&cli, "out_of_memory", "out of memory");
    }
    if (a.url != NULL)
        json_object_set_new(params, "url", json_string(a.url));
    else
        json_object_set_new(params, "command", cmd);
    return s_add(&cli, name, params, a.wait_s);
fail:
    json_decref(a.tags);
    json_decref(a.env);
    json_decref(a.env_pass);
    return rc;
}

static int s_cmd_list(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "bridge list", "", "Lists the MCP servers the node imports: transport, target, state,\n"
        "tools, restarts and the last error.", NULL, MZ_CLI_NODE | MZ_CLI_JSON | MZ_CLI_NOARGS,
        "bridge list --node ws://127.0.0.1:9101\nbridge list --json", false };
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    return s_list(&cli);
}

static int s_cmd_remove(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "bridge remove", "NAME",
        "Stops importing MCP server NAME: its tools are withdrawn everywhere in the mesh\n"
        "and its process (or HTTP session) ends. The name can then be added again.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON, "bridge remove everything", false };
    json_t *res;
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need exactly one NAME");
    res = mz_cli_call(cli.node, "bridge_remove", json_pack("{s:s}", "name", cli.argv[0]),
                      CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (cli.json)
        mz_cli_print_json(res);
    else
        printf("removed %s\n", cli.argv[0]);
    json_decref(res);
    return MZ_EXIT_OK;
}

static const mz_cli_sub s_subs[] = {
    { "add",    s_cmd_add,    "import an MCP server (a command over stdio, or --url)" },
    { "list",   s_cmd_list,   "list the imported servers and their state" },
    { "remove", s_cmd_remove, "stop importing a server and withdraw its tools" },
    { NULL, NULL, NULL },
};

int cmd_bridge_main(int argc, char **argv)
{
    return mz_cli_subcommand("bridge", "Imports MCP servers into a running node: their tools "
                             "become resources\nof the mesh (docs/MCP.md).", s_subs, argc, argv);
}
