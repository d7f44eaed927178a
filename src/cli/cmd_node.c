/* meshzero node: runs one node in the foreground until SIGINT/SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli.h"
#include "cliopt.h"
#include "config.h"
#include "util/log.h"
#include "svc/mcp_view.h"
#include "meshzero.h"
#include "meshzero/bridge.h"

#define MAX_CLI_PEERS 64

static const char s_help[] =
    "usage: meshzero node [OPTIONS]\n\n"
    "Runs a node in the foreground. The first stdout line is\n"
    "  node ID listen URL api URL\n"
    "SIGINT or SIGTERM shut it down cleanly.\n\n"
    "options:\n"
    "  --listen URL        peer listener, ws:// or wss:// (default ws://127.0.0.1:8765;\n"
    "                      port 0 picks one)\n"
    "  --tls-cert FILE     PEM certificate of a wss:// listener (default: a self-signed\n"
    "                      one whose key is the node key, kept in the data directory)\n"
    "  --tls-key FILE      PEM private key of --tls-cert\n"
    "  --tls-ca FILE       PEM CAs trusted for wss:// peers without a pinned id\n"
    "                      (default: the system store); pin with wss://HOST:PORT/#NODE_ID\n"
    "  --api URL|none      local JSON-RPC API (default ws://127.0.0.1:8766; loopback only),\n"
    "                      or unix:/PATH for a unix socket (mode 0600)\n"
    "  --api-allow-remote  allow a non-loopback API address; clients must then send the\n"
    "                      token of DATA/api.token (mode 0600, made on first start) as\n"
    "                      ?token=... or Authorization: Bearer (CLI: $MESHZERO_API_TOKEN)\n"
    "  --api-require-token require that token on a loopback API too\n"
    "  --data DIR          data directory holding identity.key (default: see below)\n"
    "  --peer URL          peer to link to and keep linked (repeatable)\n"
    "  --lease-ms N        how long others keep our resources without news (default 15000)\n"
    "  --max-message N     largest message in bytes (default 1048576)\n"
    "  --max-send-queue N  bytes queued per link before a slow peer is dropped (default 8388608)\n"
    "  --max-peers N       peer links at most (default 64)\n"
    "  --max-peers-out N   of those, dialed by this node (default 32)\n"
    "  --max-api-clients N API clients at most (default 64)\n"
    "  --max-hops N        hops a message may travel (default 16)\n"
    "  --ping-secs N       idle seconds before a keepalive ping (default 5)\n"
    "  --hangup-secs N     silent seconds before a link is dropped (default 15)\n"
    "  --trust FILE        admit only the node ids listed in FILE (one per line;\n"
    "                      re-read on SIGHUP)\n"
    "  --network-key FILE  admit only nodes that prove knowledge of this shared secret\n"
    "  --no-seal           send unicasts signed instead of end-to-end sealed\n"
    "  --wire1             offer peers only JSON envelopes, not binary wire v2 frames\n"
    "  --min-links N       below N links, dial known nodes (default 1)\n"
    "  --max-running N     calls this node runs at once (default 256; more: busy)\n"
    "  --max-running-per-caller N  of those, from one caller (default 256)\n"
    "  --max-kept-answers N  answers of finished calls kept for callers' retries\n"
    "                      (default 4096)\n"
    "  --max-kept-bytes N  bytes of those answers (default 8388608)\n"
    "  --max-pending N     calls this node and its clients await at once (default 4096)\n"
    "  --max-subscriptions N  subscriptions in all (default 10000)\n"
    "  --max-subs-per-client N  per API connection (default 1000)\n"
    "  --max-records-per-node N  remote records one node may host here (default 100000)\n"
    "  --max-records-per-owner N records one owner key may sign (default 100000)\n"
    "  --rate-msgs N       messages/s a peer may send (default 20000; over it reading\n"
    "                      pauses; paused over 20 times in 10 s: disconnected)\n"
    "  --rate-burst N      burst allowance of that rate (default 40000)\n"
    "  --fetch-rate N      fetches/s one peer may ask of this node, burst 5 s of it\n"
    "                      (default 2; over it: refused busy, counted fetch_refused)\n"
    "  --reply-rate N      sync and query reply bytes/s to one asker (default 4194304)\n"
    "  --reply-rate-all N  the same to all askers together (default 33554432)\n"
    "  --max-links N       above N links, shed the newest inbound link (default 8)\n"
    "  --replay-window-ms N refuse messages whose timestamp is further off (default 60000)\n"
    "  --drain-ms N        on stop, keep the API port answering /health 503 \"stopping\"\n"
    "                      for N ms (default 0, at most 60000) so monitors see it\n"
    "  --mcp NAME=CMD      import an MCP server: run CMD (no shell; quotes group words)\n"
    "                      over stdio, or NAME=http://HOST:PORT/PATH (Streamable HTTP);\n"
    "                      its tools become resources NAME/<tool> (repeatable)\n"
    "  --mcp-tag TAG       extra capability of every imported tool (repeatable)\n"
    "  --no-mcp-http       do not serve MCP at /mcp on the API listener\n"
    "  --mcp-views JSON    named subsets of the mesh's tools served at /mcp/NAME and\n"
    "                      by `meshzero mcp --view NAME`: {\"NAME\": {\"type\": T,\n"
    "                      \"capability\": [all of], \"tag\": [any of], \"owner\": O,\n"
    "                      \"node\": ID, \"pin\": true, \"pins\": FILE}} (docs/MCP.md)\n"
    "  --config FILE       read options from FILE, a JSON object whose keys are the long\n"
    "                      option names without dashes: {\"listen\": \"ws://0.0.0.0:7000\",\n"
    "                      \"peer\": [\"ws://a:7000\", \"ws://b:7000\"], \"min-links\": 2,\n"
    "                      \"no-seal\": true}; strings, non-negative integers, true/false\n"
    "                      for flags, a string or an array for repeatable options; at\n"
    "                      most 1 MiB. Command-line options win (a repeatable one given\n"
    "                      there replaces the file's list). Errors exit 2.\n"
    "  --log LEVEL         debug, info (default: links up/down, refusals, bridge\n"
    "                      state), warn or error\n"
    "  --log-format F      text (default) or json: one JSON object a line with time,\n"
    "                      level, node, event and fields\n"
    "  --log-calls         log every call at caller and host (resource, method,\n"
    "                      caller, duration, outcome, trace id; never params)\n"
    "  --json              print the first line as a JSON object instead\n"
    "  -h, --help          this text\n\n"
    "The data directory defaults to $MESHZERO_DATA, $XDG_DATA_HOME/meshzero,\n"
    "or ~/.local/share/meshzero.\n\n"
    "examples:\n"
    "  meshzero node --listen ws://127.0.0.1:9001 --api ws://127.0.0.1:9101 --data /tmp/a\n"
    "  meshzero node --config /etc/meshzero/node.json --peer ws://10.0.0.2:7000\n";

static uv_signal_t s_sigint, s_sigterm, s_sighup;

/* SIGHUP re-reads the trust file. */
static void s_on_sighup(uv_signal_t *h, int signum)
{
    mz_err e;

    (void)signum;
    if (mz_node_reload_trust(h->data, &e) != MZ_OK)
        fprintf(stderr, "meshzero node: SIGHUP: %s\n", e.msg);
}

/* MCP bridge (--mcp): stopped before the node so its tools are withdrawn
 * while the links are still up. */
static mz_bridge *s_bridge;

static void s_on_signal(uv_signal_t *h, int signum)
{
    mz_node *node = h->data;

    (void)signum;
    mz_bridge_stop(s_bridge);
    mz_node_stop(node);
}

#define MAX_CLI_MCP 32

/* --mcp-views (checked when parsed) and the data directory its pins go to. */
static const char *s_views, *s_data_dir;

/* Creates the bridge and starts importing the --mcp servers. */
static bool s_start_bridge(mz_node *node, uv_loop_t *loop, bool http, const char **mcp,
                           size_t n_mcp, const char **tags, size_t n_tags)
{
    mz_bridge_opts bo = { loop, node, http, s_views, s_data_dir };
    mz_err e;

    if (mz_bridge_new(&bo, &s_bridge, &e) != MZ_OK) {
        fprintf(stderr, "meshzero node: MCP bridge: %s\n", e.msg);
        return false;
    }
    for (size_t i = 0; i < n_mcp; i++) {
        mz_bridge_spec spec;
        char *store;
        if (mz_bridge_parse_arg(mcp[i], &spec, &store, &e) != MZ_OK) {
            fprintf(stderr, "meshzero node: %s\n", e.msg);
            return false;
        }
        spec.tags = tags;
        spec.n_tags = n_tags;
        if (mz_bridge_add(s_bridge, &spec, &e) != MZ_OK) {
            fprintf(stderr, "meshzero node: --mcp %s\n", e.msg);
            free(store);
            return false;
        }
        free(store);
    }
    return true;
}

const char *mz_cli_default_data_dir(char *buf, size_t len)
{
    const char *e;

    if ((e = getenv("MESHZERO_DATA")) && e[0])
        snprintf(buf, len, "%s", e);
    else if ((e = getenv("XDG_DATA_HOME")) && e[0])
        snprintf(buf, len, "%s/meshzero", e);
    else if ((e = getenv("HOME")) && e[0])
        snprintf(buf, len, "%s/.local/share/meshzero", e);
    else
        snprintf(buf, len, "meshzero-data");
    return buf;
}

/* Where an option came from, for messages: "--name" on the command line,
 * FILE: key "name" from the config file. */
typedef struct s_where {
    const mz_cfg *cfg;          /* NULL: no config file */
    const char *file;
    size_t n_file;              /* arguments 1..n_file came from the file */
} s_where;

static const char *s_origin(const s_where *w, int token, const char *name, char *buf,
                            size_t len)
{
    if (w->cfg != NULL && token >= 1 && (size_t)token <= w->n_file)
        snprintf(buf, len, "%.100s: key \"%s\"", w->file, mz_cfg_origin(w->cfg,
                 (size_t)token - 1));
    else
        snprintf(buf, len, "--%s", name);
    return buf;
}

static bool s_size(const char *where, const char *v, size_t *out)
{
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0' || *v == '-' || errno == ERANGE || n > SIZE_MAX) {
        fprintf(stderr, "meshzero node: %s needs a non-negative integer, got '%s'\n", where, v);
        return false;
    }
    *out = (size_t)n;
    return true;
}

/* Options that set one size_t field of mz_node_opts. */
static const struct { int opt; size_t off; } s_size_opts[] = {
    { MZ_OPT_MAX_MESSAGE, offsetof(mz_node_opts, max_message) },
    { MZ_OPT_MAX_SEND_QUEUE, offsetof(mz_node_opts, max_send_queue) },
    { MZ_OPT_MAX_PEERS, offsetof(mz_node_opts, max_peers) },
    { MZ_OPT_MAX_API_CLIENTS, offsetof(mz_node_opts, max_api_clients) },
    { MZ_OPT_MIN_LINKS, offsetof(mz_node_opts, min_links) },
    { MZ_OPT_MAX_RUNNING, offsetof(mz_node_opts, max_running) },
    { MZ_OPT_MAX_PEERS_OUT, offsetof(mz_node_opts, max_peers_out) },
    { MZ_OPT_MAX_RUNNING_PER_CALLER, offsetof(mz_node_opts, max_running_per_caller) },
    { MZ_OPT_MAX_KEPT_ANSWERS, offsetof(mz_node_opts, max_kept_answers) },
    { MZ_OPT_MAX_KEPT_BYTES, offsetof(mz_node_opts, max_kept_bytes) },
    { MZ_OPT_MAX_PENDING, offsetof(mz_node_opts, max_pending) },
    { MZ_OPT_MAX_SUBSCRIPTIONS, offsetof(mz_node_opts, max_subscriptions) },
    { MZ_OPT_MAX_SUBS_PER_CLIENT, offsetof(mz_node_opts, max_subs_per_client) },
    { MZ_OPT_MAX_RECORDS_PER_NODE, offsetof(mz_node_opts, max_records_per_node) },
    { MZ_OPT_MAX_RECORDS_PER_OWNER, offsetof(mz_node_opts, max_records_per_owner) },
    { MZ_OPT_MAX_LINKS, offsetof(mz_node_opts, max_links) },
};

/* Finds --config FILE (or --config=FILE) on the command line without
 * acting on anything else. NULL when absent; *dup when given twice. */
static const char *s_config_arg(int argc, char **argv, const struct option *longs, bool *dup)
{
    const char *file = NULL;
    int c, idx;

    *dup = false;
    opterr = 0;                 /* the real pass reports bad options */
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", longs, &idx)) != -1) {
        if (c != MZ_OPT_CONFIG)
            continue;
        if (file != NULL)
            *dup = true;
        file = optarg;
    }
    opterr = 1;
    return file;
}

/* The config file's arguments, then the command line's (argv[0] kept):
 * getopt sees the file first, so the command line wins. Returns new. */
static char **s_merge(int argc, char **argv, const mz_cfg *cfg, int *out_argc)
{
    size_t nf = cfg ? mz_cfg_argc(cfg) : 0;
    char **all = calloc((size_t)argc + nf + 1, sizeof *all);

    if (all == NULL)
        return NULL;
    all[0] = argv[0];
    for (size_t i = 0; i < nf; i++)
        all[1 + i] = (char *)mz_cfg_arg(cfg, i);
    for (int i = 1; i < argc; i++)
        all[nf + (size_t)i] = argv[i];
    *out_argc = argc + (int)nf;
    return all;
}

/* A repeatable option: the first command-line use replaces the values
 * the config file gave. */
typedef struct s_list {
    const char **v;
    size_t n, max;
    bool from_file;             /* the values so far came from the file */
} s_list;

static bool s_list_add(s_list *l, bool from_file, const char *where, const char *name,
                       const char *value)
{
    if (!from_file && l->from_file) {
        l->n = 0;
        l->from_file = false;
    }
    if (from_file)
        l->from_file = true;
    if (l->n == l->max) {
        fprintf(stderr, "meshzero node: %s: at most %zu --%s values\n", where, l->max, name);
        return false;
    }
    l->v[l->n++] = value;
    return true;
}

/* Everything the command line (and config file) set. */
typedef struct node_args {
    mz_node_opts o;
    const char *peers[MAX_CLI_PEERS];
    const char *mcp[MAX_CLI_MCP];
    const char *mcp_tags[MZ_BRIDGE_MAX_TAGS];
    s_list l_peers, l_mcp, l_tags;
    char datadir[512];
    bool json, mcp_http;
    mz_cfg *cfg;                /* the options point into it and into all */
    char **all;
    int all_argc;
    s_where w;
} node_args;

/* A usage error's tail: the one-line usage and where to read more. */
static int s_usage_hint(void)
{
    fprintf(stderr, "usage: meshzero node [OPTIONS]\nTry 'meshzero node --help' for more.\n");
    return MZ_EXIT_USAGE;
}

/* Numeric options that do not fill a size_t (s_size_opts does those). */
static bool s_numeric_opt(node_args *a, int c, const char *where, const char *arg)
{
    size_t v;

    if (!s_size(where, arg, &v))
        return false;
    switch (c) {
    case MZ_OPT_LEASE_MS: a->o.lease_ms = v > INT64_MAX ? INT64_MAX : (int64_t)v; break;
    case MZ_OPT_MAX_HOPS: a->o.max_hops = (int)(v > 255 ? 255 : v); break;
    case MZ_OPT_PING_SECS: a->o.ping_secs = v > UINT_MAX ? UINT_MAX : (unsigned)v; break;
    case MZ_OPT_HANGUP_SECS: a->o.hangup_secs = v > UINT_MAX ? UINT_MAX : (unsigned)v; break;
    case MZ_OPT_RATE_MSGS: a->o.rate_msgs = (double)v; break;
    case MZ_OPT_RATE_BURST: a->o.rate_burst = (double)v; break;
    case MZ_OPT_FETCH_RATE: a->o.fetch_rate = (double)v; break;
    case MZ_OPT_REPLY_RATE: a->o.reply_rate = (double)v; break;
    case MZ_OPT_REPLY_RATE_ALL: a->o.reply_rate_all = (double)v; break;
    case MZ_OPT_DRAIN_MS:
        if (v > MZ_MAX_DRAIN_MS) {
            fprintf(stderr, "meshzero node: %s: --drain-ms %zu is over its limit %d; give at "
                    "most %d\n", where, v, MZ_MAX_DRAIN_MS, MZ_MAX_DRAIN_MS);
            return false;
        }
        a->o.drain_ms = (int64_t)v;
        break;
    case MZ_OPT_REPLAY_WINDOW_MS:
        a->o.replay_window_ms = v > INT64_MAX ? INT64_MAX : (int64_t)v;
        break;
    }
    return true;
}

/* --mcp-views: checked now, so a bad definition is a usage error. */
static bool s_views_opt(const char *where, const char *arg)
{
    mz_mcpviews *vs;
    mz_err e;

    if (mz_mcpviews_new(arg, NULL, &vs, &e) != MZ_OK) {
        fprintf(stderr, "meshzero node: %s: %s\n", where, e.msg);
        return false;
    }
    mz_mcpviews_free(vs);
    s_views = arg;
    return true;
}

static bool s_log_opt(const char *where, const char *arg)
{
    static const struct { const char *name; int level; } levels[] = {
        { "debug", MZ_LOG_DEBUG }, { "info", MZ_LOG_INFO }, { "warn", MZ_LOG_WARN },
        { "error", MZ_LOG_ERROR } };

    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(arg, levels[i].name) == 0) {
            mz_log_set_level(levels[i].level);
            return true;
        }
    fprintf(stderr, "meshzero node: %s takes debug, info, warn or error, got '%.60s'\n", where,
            arg);
    return false;
}

static bool s_log_format_opt(const char *where, const char *arg)
{
    if (strcmp(arg, "text") == 0 || strcmp(arg, "json") == 0) {
        mz_log_set_format(arg[0] == 'j' ? MZ_LOG_JSON : MZ_LOG_TEXT);
        return true;
    }
    fprintf(stderr, "meshzero node: %s takes text or json, got '%.60s'\n", where, arg);
    return false;
}

/* One option; false after printing why it is wrong. */
static bool s_node_opt(node_args *a, int c, const char *arg, bool from_file, const char *where,
                       const char *name)
{
    for (size_t i = 0; i < sizeof s_size_opts / sizeof s_size_opts[0]; i++)
        if (c == s_size_opts[i].opt)
            return s_size(where, arg, (size_t *)((char *)&a->o + s_size_opts[i].off));
    switch (c) {
    case MZ_OPT_LISTEN: a->o.listen_url = arg; break;
    case MZ_OPT_API: a->o.api_url = strcmp(arg, "none") == 0 ? NULL : arg; break;
    case MZ_OPT_API_ALLOW_REMOTE: a->o.api_allow_remote = true; break;
    case MZ_OPT_DATA: a->o.data_dir = arg; break;
    case MZ_OPT_PEER: return s_list_add(&a->l_peers, from_file, where, name, arg);
    case MZ_OPT_LEASE_MS: case MZ_OPT_MAX_HOPS: case MZ_OPT_PING_SECS:
    case MZ_OPT_HANGUP_SECS: case MZ_OPT_RATE_MSGS: case MZ_OPT_RATE_BURST:
    case MZ_OPT_REPLAY_WINDOW_MS: case MZ_OPT_FETCH_RATE: case MZ_OPT_REPLY_RATE:
    case MZ_OPT_REPLY_RATE_ALL: case MZ_OPT_DRAIN_MS:
        return s_numeric_opt(a, c, where, arg);
    case MZ_OPT_LOG: return s_log_opt(where, arg);
    case MZ_OPT_JSON: a->json = true; break;
    case MZ_OPT_LOG_FORMAT: return s_log_format_opt(where, arg);
    case MZ_OPT_LOG_CALLS: a->o.log_calls = true; break;
    case MZ_OPT_MCP: return s_list_add(&a->l_mcp, from_file, where, name, arg);
    case MZ_OPT_MCP_TAG: return s_list_add(&a->l_tags, from_file, where, name, arg);
    case MZ_OPT_NO_MCP_HTTP: a->mcp_http = false; break;
    case MZ_OPT_MCP_VIEWS: return s_views_opt(where, arg);
    case MZ_OPT_TRUST: a->o.trust_file = arg; break;
    case MZ_OPT_NETWORK_KEY: a->o.network_key_file = arg; break;
    case MZ_OPT_NO_SEAL: a->o.no_seal = true; break;
    case MZ_OPT_WIRE1: a->o.wire1 = true; break;
    case MZ_OPT_API_REQUIRE_TOKEN: a->o.api_require_token = true; break;
    case MZ_OPT_TLS_CERT: a->o.tls_cert = arg; break;
    case MZ_OPT_TLS_KEY: a->o.tls_key = arg; break;
    case MZ_OPT_TLS_CA: a->o.tls_ca = arg; break;
    case MZ_OPT_CONFIG: break;          /* read before the options */
    }
    return true;
}

/* getopt's table is the config file's key table plus --config and --help. */
static void s_node_longs(struct option *longs, size_t max)
{
    size_t nk = 0;

    for (size_t i = 0; i < mz_cfg_node_n_keys && nk < max - 3; i++) {
        const mz_cfg_key *k = &mz_cfg_node_keys[i];
        longs[nk++] = (struct option){ k->name,
                                       k->kind == MZ_CFG_FLAG ? no_argument : required_argument,
                                       NULL, k->code };
    }
    longs[nk++] = (struct option){ "config", required_argument, NULL, MZ_OPT_CONFIG };
    longs[nk++] = (struct option){ "help", no_argument, NULL, 'h' };
    longs[nk] = (struct option){ NULL, 0, NULL, 0 };
}

/* Reads --config FILE and puts its options before the command line's. */
static int s_node_config(node_args *a, int argc, char **argv, const struct option *longs)
{
    const char *cfg_file;
    mz_err e;
    bool dup;

    cfg_file = s_config_arg(argc, argv, longs, &dup);
    if (dup) {
        fprintf(stderr, "meshzero node: --config given more than once\n");
        return s_usage_hint();
    }
    if (cfg_file != NULL) {
        if (mz_cfg_load(cfg_file, mz_cfg_node_keys, mz_cfg_node_n_keys, &a->cfg, &e) != MZ_OK) {
            fprintf(stderr, "meshzero node: --config %s\n", e.msg);
            return e.code == MZ_ENOMEM ? MZ_EXIT_FAIL : MZ_EXIT_USAGE;
        }
        a->w = (s_where){ a->cfg, cfg_file, mz_cfg_argc(a->cfg) };
    }
    if ((a->all = s_merge(argc, argv, a->cfg, &a->all_argc)) == NULL) {
        fprintf(stderr, "meshzero node: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    return MZ_CLI_GO;
}

/* Parses the options into a. Returns MZ_CLI_GO or an exit code. */
static int s_node_parse(node_args *a, int argc, char **argv)
{
    struct option longs[64];
    char where[200];
    int c, idx, rc;

    s_node_longs(longs, sizeof longs / sizeof longs[0]);
    if ((rc = s_node_config(a, argc, argv, longs)) != MZ_CLI_GO)
        return rc;
    /* A node says what its links do by default (MESHZERO_LOG or --log change it). */
    if (getenv("MESHZERO_LOG") == NULL)
        mz_log_set_level(MZ_LOG_INFO);
    a->o.listen_url = MZ_DEFAULT_LISTEN_URL;
    a->o.api_url = MZ_DEFAULT_API_URL;
    a->o.data_dir = mz_cli_default_data_dir(a->datadir, sizeof a->datadir);
    a->o.peers = a->peers;
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(a->all_argc, a->all, ":h", longs, &idx)) != -1) {
        /* optind has moved past the option (and its value when separate). */
        bool from_file = a->cfg != NULL && (size_t)(optind - 1) <= a->w.n_file && optind - 1 >= 1;
        if (c == 'h') {
            fputs(s_help, stdout);
            return MZ_EXIT_OK;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "meshzero node: %s '%s'\n", c == ':' ? "missing value after"
                    : "unknown option", a->all[optind - 1]);
            return s_usage_hint();
        }
        s_origin(&a->w, optind - 1, longs[idx].name, where, sizeof where);
        if (!s_node_opt(a, c, optarg, from_file, where, longs[idx].name))
            return s_usage_hint();
    }
    a->o.n_peers = a->l_peers.n;
    if (optind < a->all_argc) {
        fprintf(stderr, "meshzero node: unexpected argument '%s'\n", a->all[optind]);
        return s_usage_hint();
    }
    return MZ_CLI_GO;
}

/* Prints the banner and runs the loop until SIGINT/SIGTERM. */
static int s_node_serve(mz_node *node, uv_loop_t *loop, bool json)
{
    int rc = MZ_EXIT_OK;

    mz_log_set_node(mz_node_id(node));
    if (json)
        printf("{\"id\":\"%s\",\"listen\":\"%s\",\"api\":\"%s\"}\n", mz_node_id(node),
               mz_node_listen_url(node), mz_node_api_url(node));
    else
        printf("node %s listen %s api %s\n", mz_node_id(node), mz_node_listen_url(node),
               mz_node_api_url(node)[0] ? mz_node_api_url(node) : "none");
    fflush(stdout);
    /* Signals stay installed (unref'd) until the very end: closing them early
     * would let a second SIGTERM kill the process mid-shutdown. */
    uv_signal_init(loop, &s_sigint);
    uv_signal_init(loop, &s_sigterm);
    s_sigint.data = s_sigterm.data = node;
    uv_signal_start(&s_sigint, s_on_signal, SIGINT);
    uv_signal_start(&s_sigterm, s_on_signal, SIGTERM);
    uv_signal_init(loop, &s_sighup);
    s_sighup.data = node;
    uv_signal_start(&s_sighup, s_on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&s_sighup);
    uv_unref((uv_handle_t *)&s_sigint);
    uv_unref((uv_handle_t *)&s_sigterm);
    uv_run(loop, UV_RUN_DEFAULT);
    if (mz_node_fatal_error(node) != NULL) {
        fprintf(stderr, "meshzero node: %s\n", mz_node_fatal_error(node));
        rc = MZ_EXIT_FAIL;
    }
    mz_bridge_free(s_bridge);
    mz_node_free(node);
    uv_close((uv_handle_t *)&s_sigint, NULL);
    uv_close((uv_handle_t *)&s_sigterm, NULL);
    uv_close((uv_handle_t *)&s_sighup, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0)
        fprintf(stderr, "meshzero node: event loop still had open handles at exit\n");
    return rc;
}

/* Starts the node and its bridge, then serves. */
static int s_node_run(node_args *a)
{
    mz_node *node = NULL;
    uv_loop_t loop;
    mz_err e;

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    a->o.loop = &loop;
    if (mz_node_new(&a->o, &node, &e) != MZ_OK) {
        fprintf(stderr, "meshzero node: %s\n", e.msg);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
        /* An invalid option value (a URL, a pin, a short network key) is a
         * usage error; anything else is a failure to start. */
        return e.code == MZ_EINVAL ? MZ_EXIT_USAGE : MZ_EXIT_FAIL;
    }
    s_data_dir = a->o.data_dir;
    if (!s_start_bridge(node, &loop, a->mcp_http, a->l_mcp.v, a->l_mcp.n, a->l_tags.v,
                        a->l_tags.n)) {
        mz_bridge_free(s_bridge);
        mz_node_stop(node);
        uv_run(&loop, UV_RUN_DEFAULT);
        mz_node_free(node);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return MZ_EXIT_FAIL;
    }
    return s_node_serve(node, &loop, a->json);
}

int cmd_node_main(int argc, char **argv)
{
    node_args *a = calloc(1, sizeof *a);
    int rc;

    if (a == NULL) {
        fprintf(stderr, "meshzero node: out of memory\n");
        return MZ_EXIT_FAIL;
    }
    a->l_peers = (s_list){ a->peers, 0, MAX_CLI_PEERS, false };
    a->l_mcp = (s_list){ a->mcp, 0, MAX_CLI_MCP, false };
    a->l_tags = (s_list){ a->mcp_tags, 0, MZ_BRIDGE_MAX_TAGS, false };
    a->mcp_http = true;
    rc = s_node_parse(a, argc, argv);
    if (rc == MZ_CLI_GO)
        rc = s_node_run(a);
    /* The options point into these until the node is gone. */
    free(a->all);
    mz_cfg_free(a->cfg);
    free(a);
    return rc;
}
