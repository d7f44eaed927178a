/* Client commands: each talks to a node's local API (--node URL). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "meshzero.h"

#define CALL_TIMEOUT_MS 10000

static const char s_common[] =
    "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
    "  -h, --help     this text\n";

static int s_usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "meshzero %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return MZ_EXIT_USAGE;
}

static void s_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s) {
        puts(s);
        free(s);
    }
}

/* ---- id ----------------------------------------------------------------- */

int cmd_id_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero id [--data DIR] [--json]\n\n"
        "Prints the node id of a data directory (creating its key on first use).\n"
        "  --data DIR     data directory (default as for 'meshzero node')\n"
        "  --json         print {\"id\": ...}\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "data", required_argument, NULL, 'd' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    char buf[512];
    const char *dir = mz_cli_default_data_dir(buf, sizeof buf);
    mz_identity *id;
    mz_err e;
    bool json = false;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'd') dir = optarg;
        else if (c == 'j') json = true;
        else if (c == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (optind < argc)
        return s_usage_error("id", usage, "unexpected argument '%s'", argv[optind]);
    if (mz_identity_load_or_create(dir, &id, &e) != MZ_OK) {
        fprintf(stderr, "meshzero id: %s\n", e.msg);
        return MZ_EXIT_FAIL;
    }
    if (json)
        printf("{\"id\":\"%s\"}\n", mz_identity_id(id));
    else
        printf("%s\n", mz_identity_id(id));
    mz_identity_free(id);
    return MZ_EXIT_OK;
}

/* ---- register / unregister ---------------------------------------------- */

int cmd_register_main(int argc, char **argv)
{
    static const char usage_head[] =
        "usage: meshzero register ID --type T [--cap C]... [--meta KEY=VALUE]... [--owner O]\n"
        "                         [--json] [--node URL]\n\n"
        "Registers a resource hosted by the node (again with the same ID: an update).\n"
        "  --type T       resource type (required)\n"
        "  --cap C        a capability (repeatable)\n"
        "  --meta K=V     a metadata entry; V is a string unless it is a JSON object,\n"
        "                 array, quoted string, true, false or null\n"
        "  --owner O      owner name\n"
        "  --owner-key F  sign the record with the owner key in file F (see 'keygen');\n"
        "                 only that key can then update or remove it (default: the node's key)\n"
        "  --json         print the stored record as JSON\n";
    static const struct option longs[] = {
        { "type", required_argument, NULL, 't' }, { "cap", required_argument, NULL, 'c' },
        { "meta", required_argument, NULL, 'm' }, { "owner", required_argument, NULL, 'o' },
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "owner-key", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    char usage[2048];
    const char *node = NULL, *type = NULL, *owner = NULL, *owner_key = NULL;
    json_t *caps = json_array(), *meta = json_object(), *params, *res;
    bool json = false;
    int c;

    snprintf(usage, sizeof usage, "%s%s", usage_head, s_common);
    if (caps == NULL || meta == NULL) {
        fprintf(stderr, "meshzero register: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': type = optarg; break;
        case 'c': json_array_append_new(caps, json_string(optarg)); break;
        case 'o': owner = optarg; break;
        case 'n': node = optarg; break;
        case 'j': json = true; break;
        case 'k': owner_key = optarg; break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            json_t *v;
            if (eq == NULL || eq == optarg) {
                json_decref(caps);
                json_decref(meta);
                return s_usage_error("register", usage, "--meta '%s' is not KEY=VALUE", optarg);
            }
            *eq = '\0';
            /* Numbers stay strings ("version=1.0" is the seed's "1.0"); objects,
             * arrays, quoted strings, true, false and null are read as JSON. */
            v = strchr("{[\"tfn", eq[1]) && eq[1] ? json_loads(eq + 1, JSON_DECODE_ANY, NULL)
                                                  : NULL;
            json_object_set_new(meta, optarg, v ? v : json_string(eq + 1));
            break;
        }
        case 'h':
            fputs(usage, stdout);
            json_decref(caps);
            json_decref(meta);
            return MZ_EXIT_OK;
        default:
            fputs(usage, stderr);
            json_decref(caps);
            json_decref(meta);
            return MZ_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || type == NULL) {
        json_decref(caps);
        json_decref(meta);
        return s_usage_error("register", usage, "%s", "need exactly one ID and --type");
    }
    params = json_pack("{s:s,s:s,s:o,s:o}", "resource_id", argv[optind], "resource_type", type,
                       "capabilities", caps, "metadata", meta);
    if (params)
        json_object_set_new(params, "owner", json_string(owner ? owner : ""));
    if (params && owner_key) {
        json_t *rec = mz_cli_owner_record(node, owner_key, params);
        json_decref(params);
        if (rec == NULL)
            return MZ_EXIT_FAIL;
        params = json_pack("{s:o}", "record", rec);
    }
    res = mz_cli_call(node, "register_resource", params, CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json)
        s_print_json(res);
    else
        printf("registered %s (version %lld)\n", argv[optind],
               (long long)json_integer_value(json_object_get(res, "version")));
    json_decref(res);
    return MZ_EXIT_OK;
}

int cmd_unregister_main(int argc, char **argv)
{
    static const char usage_head[] =
        "usage: meshzero unregister ID [--owner-key FILE] [--json] [--node URL]\n\n"
        "Removes a resource hosted by the node, everywhere in the mesh.\n"
        "  --owner-key F  sign the removal with the resource's owner key (needed when it\n"
        "                 was registered with --owner-key)\n"
        "  --json         print the result as JSON\n";
    static const struct option longs[] = {
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "owner-key", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    char usage[1024];
    const char *node = NULL, *owner_key = NULL;
    json_t *params;
    bool json = false;
    json_t *res;
    int c;

    snprintf(usage, sizeof usage, "%s%s", usage_head, s_common);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'n') node = optarg;
        else if (c == 'j') json = true;
        else if (c == 'k') owner_key = optarg;
        else if (c == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (optind != argc - 1)
        return s_usage_error("unregister", usage, "%s", "need exactly one ID");
    if (owner_key) {
        json_t *tomb = mz_cli_owner_tombstone(node, owner_key, argv[optind]);
        if (tomb == NULL)
            return MZ_EXIT_FAIL;
        params = json_pack("{s:o}", "tombstone", tomb);
    } else {
        params = json_pack("{s:s}", "resource_id", argv[optind]);
    }
    res = mz_cli_call(node, "unregister_resource", params, CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json)
        s_print_json(res);
    else
        printf("unregistered %s\n", argv[optind]);
    json_decref(res);
    return MZ_EXIT_OK;
}

/* ---- query -------------------------------------------------------------- */

int cmd_query_main(int argc, char **argv)
{
    static const char usage_head[] =
        "usage: meshzero query [--type T] [--cap C]... [--owner O] [--location local|remote]\n"
        "                      [--limit N] [--json] [--node URL]\n\n"
        "Lists resources known to the node; a record matches when it has ALL --cap values.\n"
        "  --json         print one JSON array of records\n";
    static const struct option longs[] = {
        { "type", required_argument, NULL, 't' }, { "cap", required_argument, NULL, 'c' },
        { "owner", required_argument, NULL, 'o' }, { "location", required_argument, NULL, 'L' },
        { "limit", required_argument, NULL, 'l' }, { "node", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    char usage[1536];
    const char *node = NULL;
    json_t *params = json_object(), *caps = json_array(), *res, *r;
    bool json = false;
    size_t i;
    int c;

    snprintf(usage, sizeof usage, "%s%s", usage_head, s_common);
    if (params == NULL || caps == NULL) {
        fprintf(stderr, "meshzero query: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': json_object_set_new(params, "resource_type", json_string(optarg)); break;
        case 'c': json_array_append_new(caps, json_string(optarg)); break;
        case 'o': json_object_set_new(params, "owner", json_string(optarg)); break;
        case 'n': node = optarg; break;
        case 'j': json = true; break;
        case 'L':
            if (strcmp(optarg, "local") != 0 && strcmp(optarg, "remote") != 0) {
                json_decref(params);
                json_decref(caps);
                return s_usage_error("query", usage, "--location must be local or remote, "
                                     "not '%s'", optarg);
            }
            json_object_set_new(params, "location", json_string(optarg));
            break;
        case 'l': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 0) {
                json_decref(params);
                json_decref(caps);
                return s_usage_error("query", usage, "--limit needs a number, not '%s'", optarg);
            }
            json_object_set_new(params, "limit", json_integer(n));
            break;
        }
        case 'h':
            fputs(usage, stdout);
            json_decref(params);
            json_decref(caps);
            return MZ_EXIT_OK;
        default:
            fputs(usage, stderr);
            json_decref(params);
            json_decref(caps);
            return MZ_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        json_decref(params);
        json_decref(caps);
        return s_usage_error("query", usage, "unexpected argument '%s'", argv[optind]);
    }
    json_object_set_new(params, "capabilities", caps);
    res = mz_cli_call(node, "query_resources", params, CALL_TIMEOUT_MS);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json) {
        s_print_json(res);
    } else {
        json_array_foreach(res, i, r) {
            json_t *cv;
            size_t k;
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
    json_decref(res);
    return MZ_EXIT_OK;
}

/* ---- peers / connect / status ------------------------------------------- */

/* A client command with no options but --node/--json and at most one
 * argument, sent as params[arg_key] (arg_key NULL: no argument). */
static int s_simple(int argc, char **argv, const char *cmd, const char *usage_head,
                    const char *method, const char *arg_key, void (*print)(const json_t *res))
{
    static const struct option longs[] = {
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    char usage[1536];
    const char *node = NULL;
    bool json = false;
    json_t *params, *res;
    int c;

    snprintf(usage, sizeof usage, "%s%s", usage_head, s_common);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'n') node = optarg;
        else if (c == 'j') json = true;
        else if (c == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (argc - optind != (arg_key ? 1 : 0))
        return s_usage_error(cmd, usage, "%s", arg_key ? "need exactly one argument"
                                                       : "takes no arguments");
    params = arg_key ? json_pack("{s:s}", arg_key, argv[optind]) : json_object();
    res = mz_cli_call(node, method, params, CALL_TIMEOUT_MS + 5000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json)
        s_print_json(res);
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
    return s_simple(argc, argv, "peers",
                    "usage: meshzero peers [--json] [--node URL]\n\n"
                    "Lists the node's linked peers.\n"
                    "  --json         print a JSON array\n",
                    "peers", NULL, s_print_peers);
}

static void s_print_connect(const json_t *res)
{
    printf("linked to %s\n", json_string_value(json_object_get(res, "peer")));
}

int cmd_connect_main(int argc, char **argv)
{
    return s_simple(argc, argv, "connect",
                    "usage: meshzero connect URL [--json] [--node URL]\n\n"
                    "Links the node to the peer at URL (ws://HOST:PORT) and waits for the\n"
                    "hello exchange; the node keeps the link up from then on.\n"
                    "  --json         print {\"peer\": ID}\n",
                    "connect_to_peer", "url", s_print_connect);
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
}

int cmd_status_main(int argc, char **argv)
{
    return s_simple(argc, argv, "status",
                    "usage: meshzero status [--json] [--node URL]\n\n"
                    "Shows the node's id, links, resources, counters and limits.\n"
                    "  --json         print a JSON object\n",
                    "status", NULL, s_print_status);
}

static void s_print_disconnect(const json_t *res)
{
    printf("disconnected %s\n", json_string_value(json_object_get(res, "peer")));
}

int cmd_disconnect_main(int argc, char **argv)
{
    return s_simple(argc, argv, "disconnect",
                    "usage: meshzero disconnect PEER_ID [--json] [--node URL]\n\n"
                    "Closes the node's link to PEER_ID (a peer given with --peer is re-dialed\n"
                    "after a backoff).\n"
                    "  --json         print {\"peer\", \"disconnected\"}\n",
                    "disconnect_peer", "peer", s_print_disconnect);
}
