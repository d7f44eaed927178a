/* Client commands: each talks to a node's local API (--node URL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero.h"

#define CALL_TIMEOUT_MS 10000

/* ---- id ----------------------------------------------------------------- */

static int s_id_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    const char **dir = ctx;

    (void)cli;
    if (key == 'd')
        dir[0] = arg;
    else
        dir[1] = "create";
    return 0;
}

int cmd_id_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "data", 'd', "DIR", "data directory (default $MESHZERO_DATA, else\n"
                              "$XDG_DATA_HOME/meshzero, else ~/.local/share/meshzero)" },
        { "create", 'c', NULL, "make a new identity when DIR has none (default: refuse, so\n"
                               "a mistyped DIR is not silently a new node)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "id", "[--data DIR] [--create] [--json]",
        "Prints the node id of a data directory (the public key of DIR/identity.key).",
        opts, MZ_CLI_JSON | MZ_CLI_NOARGS, "id --data /tmp/a\nid --data /tmp/new --create --json", false };
    char buf[512], key[600];
    const char *dir[2] = { mz_cli_default_data_dir(buf, sizeof buf), NULL };
    struct stat st;
    mz_identity *id;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_id_opt, (void *)dir);

    if (rc != MZ_CLI_GO)
        return rc;
    snprintf(key, sizeof key, "%s/identity.key", dir[0]);
    if (dir[1] == NULL && stat(key, &st) != 0)
        return mz_cli_fail(&cli, "not_found", "%s has no identity.key (not a node's data "
                           "directory?); give --create to make a new identity there", dir[0]);
    if (mz_identity_load_or_create(dir[0], &id, &e) != MZ_OK)
        return mz_cli_fail_err(&cli, &e);
    if (cli.json)
        printf("{\"id\":\"%s\"}\n", mz_identity_id(id));
    else
        printf("%s\n", mz_identity_id(id));
    mz_identity_free(id);
    return MZ_EXIT_OK;
}

/* ---- register / unregister ---------------------------------------------- */

typedef struct reg_args {
    const char *type, *owner, *owner_key;
    json_t *caps, *meta;
} reg_args;

static int s_reg_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    reg_args *r = ctx;

    switch (key) {
    case 't': r->type = arg; break;
    case 'c': json_array_append_new(r->caps, json_string(arg)); break;
    case 'o': r->owner = arg; break;
    case 'k': r->owner_key = arg; break;
    case 'm':
        if (!mz_cli_meta_arg(r->meta, (char *)arg))
            return mz_cli_usage(cli, "--meta '%s' is not KEY=VALUE", arg);
        break;
    }
    return 0;
}

int cmd_register_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "type", 't', "T", "resource type (required)" },
        { "cap", 'c', "C", "a capability (repeatable; default none)" },
        { "meta", 'm', "K=V", "a metadata entry; V is a string unless it is a JSON object,\n"
                              "array, quoted string, true, false or null (repeatable)" },
        { "owner", 'o', "O", "owner name (default \"\")" },
        { "owner-key", 'k', "FILE", "sign the record with the owner key in FILE (see 'keygen');\n"
                                    "only that key can then update or remove it (default: the\n"
                                    "node's key)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "register", "ID --type T [--cap C]... [--meta K=V]... [--owner O] [--owner-key FILE]",
        "Registers a resource hosted by the node (again with the same ID: an update).\n"
        "The node fills in metadata.last_updated unless given; other metadata is kept as\n"
        "given. With --json prints the stored record.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON,
        "register agent123 --type agent --cap image_processing --meta version=2.1\n"
        "register db1 --type database --owner ops --json --node ws://127.0.0.1:9101", false };
    reg_args r = { NULL, NULL, NULL, json_array(), json_object() };
    json_t *params = NULL, *res;
    mz_cli cli;
    int rc = MZ_EXIT_FAIL;

    if (r.caps == NULL || r.meta == NULL)
        goto out;
    if ((rc = mz_cli_parse(&cli, &cmd, argc, argv, s_reg_opt, &r)) != MZ_CLI_GO)
        goto out;
    if (cli.argc != 1 || r.type == NULL) {
        rc = mz_cli_usage(&cli, "need exactly one ID and --type");
        goto out;
    }
    params = json_pack("{s:s,s:s,s:O,s:O,s:s}", "resource_id", cli.argv[0], "resource_type",
                       r.type, "capabilities", r.caps, "metadata", r.meta, "owner",
                       r.owner ? r.owner : "");
    if (params && r.owner_key) {
        json_t *rec = mz_cli_owner_record(cli.node, r.owner_key, params);
        json_decref(params);
        if (rec == NULL) {
            rc = MZ_EXIT_FAIL;
            goto out;
        }
        params = json_pack("{s:o}", "record", rec);
    }
    res = mz_cli_call(cli.node, "register_resource", params, CALL_TIMEOUT_MS);
    rc = res ? MZ_EXIT_OK : MZ_EXIT_FAIL;
    if (res && cli.json)
        mz_cli_print_json(res);
    else if (res)
        printf("registered %s (version %lld)\n", cli.argv[0],
               (long long)json_integer_value(json_object_get(res, "version")));
    json_decref(res);
out:
    json_decref(r.caps);
    json_decref(r.meta);
    return rc;
}

static int s_unreg_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    (void)cli;
    (void)key;
    *(const char **)ctx = arg;
    return 0;
}

int cmd_unregister_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "owner-key", 'k', "FILE", "sign the removal with the resource's owner key (needed\n"
                                    "when it was registered with --owner-key)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "unregister", "ID [--owner-key FILE]",
        "Removes a resource hosted by the node, everywhere in the mesh.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON,
        "unregister agent123 --node ws://127.0.0.1:9103\nunregister db1 --owner-key ops.key",
        false };
    const char *owner_key = NULL;
    json_t *params, *res;
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_unreg_opt, &owner_key);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need exactly one ID");
    if (owner_key) {
        json_t *tomb = mz_cli_owner_tombstone(cli.node, owner_key, cli.argv[0]);
        if (tomb == NULL)
            return MZ_EXIT_FAIL;
        params = json_pack("{s:o}", "tombstone", tomb);
    } else {
        params = json_pack("{s:s}", "resource_id", cli.argv[0]);
    }
    res = mz_cli_call(cli.node, "unregister_resource", params, CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (cli.json)
        mz_cli_print_json(res);
    else
        printf("unregistered %s\n", cli.argv[0]);
    json_decref(res);
    return MZ_EXIT_OK;
}

/* ---- query -------------------------------------------------------------- */

static int s_query_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    json_t *params = ctx;
    long long n;

    switch (key) {
    case 't': json_object_set_new(params, "resource_type", json_string(arg)); break;
    case 'c': json_array_append_new(json_object_get(params, "capabilities"), json_string(arg));
              break;
    case 'o': json_object_set_new(params, "owner", json_string(arg)); break;
    case 'H': json_object_set_new(params, "node", json_string(arg)); break;
    case 'L':
        if (strcmp(arg, "local") != 0 && strcmp(arg, "remote") != 0)
            return mz_cli_usage(cli, "--location must be local or remote, not '%s'", arg);
        json_object_set_new(params, "location", json_string(arg));
        break;
    case 'l':
        if (!mz_cli_uint_arg(arg, 1LL << 40, &n))
            return mz_cli_usage(cli, "--limit needs a number, not '%s'", arg);
        json_object_set_new(params, "limit", json_integer(n));
        break;
    }
    return 0;
}

static void s_print_records(const json_t *res)
{
    size_t i, k;
    json_t *r, *cv;

    json_array_foreach(res, i, r) {
        printf("%s  type=%s  %s  node=%.12s  owner=%s  caps=",
               json_string_value(json_object_get(r, "resource_id")),
               json_string_value(json_object_get(r, "resource_type")),
               json_string_value(json_object_get(r, "location")),
               json_string_value(json_object_get(r, "node")),
               json_string_value(json_object_get(r, "owner")));
        json_array_foreach(json_object_get(r, "capabilities"), k, cv)
            printf("%s%s", k ? "," : "", json_string_value(cv));
        printf("\n");
    }
    if (json_array_size(res) == 0)
        printf("no resources match\n");
}

int cmd_query_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "type", 't', "T", "only resources of type T (default: any type)" },
        { "cap", 'c', "C", "only resources having capability C; repeated, ALL of them\n"
                           "(default: any capabilities)" },
        { "owner", 'o', "O", "only resources whose owner name is O (default: any owner)" },
        { "host", 'H', "NODE_ID", "only resources hosted by that node (default: any node)" },
        { "location", 'L', "WHERE", "local (hosted by this node) or remote (default: both)" },
        { "limit", 'l', "N", "at most N records (default: all)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "query", "[--type T] [--cap C]... [--owner O] [--host NODE_ID] [--location local|remote]\n"
        " [--limit N]",
        "Lists the resources the node knows, local and remote, that match every filter\n"
        "given; without filters, all of them. Text output: one line per record; --json\n"
        "prints one array of the full signed records.",
        opts, MZ_CLI_NODE | MZ_CLI_JSON | MZ_CLI_NOARGS,
        "query --type agent --cap image_processing\n"
        "query --location remote --limit 10 --json --node ws://127.0.0.1:9101", false };
    json_t *params = json_pack("{s:[]}", "capabilities"), *res;
    mz_cli cli;
    int rc = params ? mz_cli_parse(&cli, &cmd, argc, argv, s_query_opt, params) : MZ_EXIT_FAIL;

    if (rc != MZ_CLI_GO) {
        json_decref(params);
        return rc;
    }
    res = mz_cli_call(cli.node, "query_resources", params, CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (cli.json)
        mz_cli_print_json(res);
    else
        s_print_records(res);
    json_decref(res);
    return MZ_EXIT_OK;
}

/* ---- peers / connect / disconnect / status ------------------------------ */

/* A client command with no options but the shared ones and at most one
 * argument, sent as params[arg_key] (arg_key NULL: no argument). */
static int s_simple(int argc, char **argv, const mz_cli_cmd *cmd, const char *method,
                    const char *arg_key, void (*print)(const json_t *res))
{
    json_t *params, *res;
    mz_cli cli;
    int rc = mz_cli_parse(&cli, cmd, argc, argv, NULL, NULL);

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != (arg_key ? 1 : 0))
        return arg_key ? mz_cli_usage(&cli, "need exactly one argument")
                       : mz_cli_usage(&cli, "unexpected argument '%s'", cli.argv[0]);
    if (arg_key && strcmp(arg_key, "url") == 0 && !mz_cli_url_ok(cli.argv[0], false))
        return mz_cli_usage(&cli, "'%s' is not a peer URL: use ws://HOST:PORT or "
                            "wss://HOST:PORT", cli.argv[0]);
    params = arg_key ? json_pack("{s:s}", arg_key, cli.argv[0]) : json_object();
    res = mz_cli_call(cli.node, method, params, CALL_TIMEOUT_MS + 5000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (cli.json)
        mz_cli_print_json(res);
    else
        print(res);
    json_decref(res);
    return MZ_EXIT_OK;
}

static void s_print_peers(const json_t *res)
{
    size_t i;
    json_t *p;

    json_array_foreach(res, i, p)
        printf("%s  %s  %s  listen=%s  since=%s\n",
               json_string_value(json_object_get(p, "id")),
               json_string_value(json_object_get(p, "direction")),
               json_string_value(json_object_get(p, "addr")),
               json_string_value(json_object_get(p, "listen")),
               json_string_value(json_object_get(p, "since")));
    if (json_array_size(res) == 0)
        printf("no peers\n");
}

int cmd_peers_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "peers", "", "Lists the node's linked peers: id, direction, address, listen URL, since.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON, "peers --node ws://127.0.0.1:9102\npeers --json",
        false };

    return s_simple(argc, argv, &cmd, "peers", NULL, s_print_peers);
}

static void s_print_connect(const json_t *res)
{
    printf("linked to %s\n", json_string_value(json_object_get(res, "peer")));
}

int cmd_connect_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "connect", "URL",
        "Links the node to the peer at URL (ws://HOST:PORT or wss://HOST:PORT, optionally\n"
        "pinning the peer's id: ws://HOST:PORT/#NODE_ID) and waits for the hello exchange;\n"
        "the node keeps the link up from then on. A refused link (pin, trust file,\n"
        "network key) fails with the reason and is not retried.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON,
        "connect ws://127.0.0.1:9003 --node ws://127.0.0.1:9101\n"
        "connect --json wss://10.0.0.2:7000/#5f1c...", false };

    return s_simple(argc, argv, &cmd, "connect_to_peer", "url", s_print_connect);
}

static void s_print_limits(const json_t *lim)
{
    const char *k;
    json_t *v;
    int col = 10;

    printf("limits   ");
    json_object_foreach((json_t *)lim, k, v) {
        int w = (int)strlen(k) + 22;
        if (col + w > 100) {
            printf("\n         ");
            col = 10;
        }
        col += printf(" %s=%lld", k, (long long)json_integer_value(v));
    }
    printf("\n");
}

static void s_print_status(const json_t *res)
{
    const json_t *r = json_object_get(res, "resources");
    const json_t *cn = json_object_get(res, "counters");
    const char *k;
    json_t *v;

    printf("id        %s\nlisten    %s\napi       %s\nuptime    %llds\npeers     %lld\n"
           "resources %lld local, %lld remote\nnodes     %lld known, %lld routes\n",
           json_string_value(json_object_get(res, "id")),
           json_string_value(json_object_get(res, "listen")),
           json_string_value(json_object_get(res, "api")),
           (long long)json_integer_value(json_object_get(res, "uptime_s")),
           (long long)json_integer_value(json_object_get(res, "peers")),
           (long long)json_integer_value(json_object_get(r, "local")),
           (long long)json_integer_value(json_object_get(r, "remote")),
           (long long)json_integer_value(json_object_get(res, "nodes_known")),
           (long long)json_integer_value(json_object_get(res, "routes")));
    printf("counters ");
    json_object_foreach((json_t *)cn, k, v)
        printf(" %s=%lld", k, (long long)json_integer_value(v));
    printf("\n");
    json_object_foreach(json_object_get(res, "bridge"), k, v)
        printf("mcp       %s %s, %lld tools%s%s\n", k,
               json_string_value(json_object_get(v, "state")),
               (long long)json_integer_value(json_object_get(v, "tools")),
               json_string_value(json_object_get(v, "last_error"))[0] ? ": " : "",
               json_string_value(json_object_get(v, "last_error")));
    s_print_limits(json_object_get(res, "limits"));
}

int cmd_status_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "status", "",
        "Shows the node's id, listen and API URLs, uptime, links, resources, known nodes,\n"
        "counters and limits.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON, "status --node ws://127.0.0.1:9101\nstatus --json",
        false };

    return s_simple(argc, argv, &cmd, "status", NULL, s_print_status);
}

static void s_print_disconnect(const json_t *res)
{
    printf("disconnected %s\n", json_string_value(json_object_get(res, "peer")));
}

int cmd_disconnect_main(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "disconnect", "PEER_ID",
        "Closes the node's link to PEER_ID (a peer given with --peer is re-dialed after a\n"
        "backoff).",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON, "disconnect 5f1c0e... --node ws://127.0.0.1:9101",
        false };

    return s_simple(argc, argv, &cmd, "disconnect_peer", "peer", s_print_disconnect);
}
