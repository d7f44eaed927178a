/* meshzero node: runs one node in the foreground until SIGINT/SIGTERM. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli.h"
#include "log.h"
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
    "  --max-links N       above N links, shed the newest inbound link (default 8)\n"
    "  --replay-window-ms N refuse messages whose timestamp is further off (default 60000)\n"
    "  --mcp NAME=CMD      import an MCP server: run CMD (no shell; quotes group words)\n"
    "                      over stdio, or NAME=http://HOST:PORT/PATH (Streamable HTTP);\n"
    "                      its tools become resources NAME/<tool> (repeatable)\n"
    "  --mcp-tag TAG       extra capability of every imported tool (repeatable)\n"
    "  --no-mcp-http       do not serve MCP at /mcp on the API listener\n"
    "  --log LEVEL         debug, info, warn (default) or error\n"
    "  --json              print the first line as a JSON object instead\n"
    "  -h, --help          this text\n\n"
    "The data directory defaults to $MESHZERO_DATA, $XDG_DATA_HOME/meshzero,\n"
    "or ~/.local/share/meshzero.\n";

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
/* getopt values of the MCP options: above any character, so no clash. */
enum { OPT_MCP = 1001, OPT_MCP_TAG, OPT_NO_MCP_HTTP };

/* Creates the bridge and starts importing the --mcp servers. */
static bool s_start_bridge(mz_node *node, uv_loop_t *loop, bool http, char **mcp, size_t n_mcp,
                           const char **tags, size_t n_tags)
{
    mz_bridge_opts bo = { loop, node, http };
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

static bool s_size(const char *opt, const char *v, size_t *out)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);

    if (*v == '\0' || *end != '\0' || *v == '-') {
        fprintf(stderr, "meshzero node: %s needs a non-negative integer, got '%s'\n", opt, v);
        return false;
    }
    *out = (size_t)n;
    return true;
}

int cmd_node_main(int argc, char **argv)
{
    static const struct option longs[] = {
        { "listen", required_argument, NULL, 'l' },
        { "api", required_argument, NULL, 'a' },
        { "api-allow-remote", no_argument, NULL, 'R' },
        { "data", required_argument, NULL, 'd' },
        { "peer", required_argument, NULL, 'p' },
        { "lease-ms", required_argument, NULL, 'L' },
        { "max-message", required_argument, NULL, 'm' },
        { "max-send-queue", required_argument, NULL, 'q' },
        { "max-peers", required_argument, NULL, 'P' },
        { "max-api-clients", required_argument, NULL, 'C' },
        { "max-hops", required_argument, NULL, 'H' },
        { "ping-secs", required_argument, NULL, 'i' },
        { "hangup-secs", required_argument, NULL, 'u' },
        { "log", required_argument, NULL, 'g' },
        { "json", no_argument, NULL, 'j' },
        { "mcp", required_argument, NULL, OPT_MCP },
        { "mcp-tag", required_argument, NULL, OPT_MCP_TAG },
        { "no-mcp-http", no_argument, NULL, OPT_NO_MCP_HTTP },
        { "trust", required_argument, NULL, 'T' },
        { "network-key", required_argument, NULL, 'K' },
        { "no-seal", no_argument, NULL, 'S' },
        { "api-require-token", no_argument, NULL, 0x209 },
        { "min-links", required_argument, NULL, 'N' },
        { "max-running", required_argument, NULL, 0x200 },
        { "max-peers-out", required_argument, NULL, 0x20a },
        { "max-running-per-caller", required_argument, NULL, 0x201 },
        { "max-kept-answers", required_argument, NULL, 0x20b },
        { "max-kept-bytes", required_argument, NULL, 0x20c },
        { "max-pending", required_argument, NULL, 0x202 },
        { "max-subscriptions", required_argument, NULL, 0x203 },
        { "max-subs-per-client", required_argument, NULL, 0x204 },
        { "max-records-per-node", required_argument, NULL, 0x205 },
        { "max-records-per-owner", required_argument, NULL, 0x206 },
        { "rate-msgs", required_argument, NULL, 0x207 },
        { "rate-burst", required_argument, NULL, 0x208 },
        { "max-links", required_argument, NULL, 'X' },
        { "replay-window-ms", required_argument, NULL, 'W' },
        { "tls-cert", required_argument, NULL, 0x100 },
        { "tls-key", required_argument, NULL, 0x101 },
        { "tls-ca", required_argument, NULL, 0x102 },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *peers[MAX_CLI_PEERS];
    char datadir[512];
    mz_node_opts o;
    mz_node *node = NULL;
    uv_loop_t loop;
    mz_err e;
    size_t v;
    bool json = false;
    char *mcp[MAX_CLI_MCP];
    const char *mcp_tags[MZ_BRIDGE_MAX_TAGS];
    size_t n_mcp = 0, n_mcp_tags = 0;
    bool mcp_http = true;
    int c, rc = MZ_EXIT_OK;

    memset(&o, 0, sizeof o);
    o.listen_url = MZ_DEFAULT_LISTEN_URL;
    o.api_url = MZ_DEFAULT_API_URL;
    o.data_dir = mz_cli_default_data_dir(datadir, sizeof datadir);
    o.peers = peers;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen_url = optarg; break;
        case 'a': o.api_url = strcmp(optarg, "none") == 0 ? NULL : optarg; break;
        case 'R': o.api_allow_remote = true; break;
        case 'd': o.data_dir = optarg; break;
        case 'p':
            if (o.n_peers == MAX_CLI_PEERS) {
                fprintf(stderr, "meshzero node: at most %d --peer options\n", MAX_CLI_PEERS);
                return MZ_EXIT_USAGE;
            }
            peers[o.n_peers++] = optarg;
            break;
        case 'L': if (!s_size("--lease-ms", optarg, &v)) return MZ_EXIT_USAGE;
                  o.lease_ms = (int64_t)v; break;
        case 'm': if (!s_size("--max-message", optarg, &o.max_message)) return MZ_EXIT_USAGE;
                  break;
        case 'q': if (!s_size("--max-send-queue", optarg, &o.max_send_queue))
                      return MZ_EXIT_USAGE;
                  break;
        case 'P': if (!s_size("--max-peers", optarg, &o.max_peers)) return MZ_EXIT_USAGE;
                  break;
        case 'C': if (!s_size("--max-api-clients", optarg, &o.max_api_clients))
                      return MZ_EXIT_USAGE;
                  break;
        case 'H': if (!s_size("--max-hops", optarg, &v)) return MZ_EXIT_USAGE;
                  o.max_hops = (int)(v > 255 ? 255 : v); break;
        case 'i': if (!s_size("--ping-secs", optarg, &v)) return MZ_EXIT_USAGE;
                  o.ping_secs = (unsigned)v; break;
        case 'u': if (!s_size("--hangup-secs", optarg, &v)) return MZ_EXIT_USAGE;
                  o.hangup_secs = (unsigned)v; break;
        case 'g':
            if (strcmp(optarg, "debug") == 0) mz_log_set_level(MZ_LOG_DEBUG);
            else if (strcmp(optarg, "info") == 0) mz_log_set_level(MZ_LOG_INFO);
            else if (strcmp(optarg, "warn") == 0) mz_log_set_level(MZ_LOG_WARN);
            else if (strcmp(optarg, "error") == 0) mz_log_set_level(MZ_LOG_ERROR);
            else {
                fprintf(stderr, "meshzero node: --log takes debug, info, warn or error\n");
                return MZ_EXIT_USAGE;
            }
            break;
        case 'j': json = true; break;
        case OPT_MCP:
            if (n_mcp == MAX_CLI_MCP) {
                fprintf(stderr, "meshzero node: at most %d --mcp options\n", MAX_CLI_MCP);
                return MZ_EXIT_USAGE;
            }
            mcp[n_mcp++] = optarg;
            break;
        case OPT_MCP_TAG:
            if (n_mcp_tags == MZ_BRIDGE_MAX_TAGS) {
                fprintf(stderr, "meshzero node: at most %d --mcp-tag options\n",
                        MZ_BRIDGE_MAX_TAGS);
                return MZ_EXIT_USAGE;
            }
            mcp_tags[n_mcp_tags++] = optarg;
            break;
        case OPT_NO_MCP_HTTP: mcp_http = false; break;
        case 'T': o.trust_file = optarg; break;
        case 'K': o.network_key_file = optarg; break;
        case 'S': o.no_seal = true; break;
        case 0x209: o.api_require_token = true; break;
        case 'N': if (!s_size("--min-links", optarg, &o.min_links)) return MZ_EXIT_USAGE;
                  break;
        case 0x200: if (!s_size("--max-running", optarg, &o.max_running)) return MZ_EXIT_USAGE;
                    break;
        case 0x20a: if (!s_size("--max-peers-out", optarg, &o.max_peers_out))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x201: if (!s_size("--max-running-per-caller", optarg, &o.max_running_per_caller))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x20b: if (!s_size("--max-kept-answers", optarg, &o.max_kept_answers))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x20c: if (!s_size("--max-kept-bytes", optarg, &o.max_kept_bytes))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x202: if (!s_size("--max-pending", optarg, &o.max_pending)) return MZ_EXIT_USAGE;
                    break;
        case 0x203: if (!s_size("--max-subscriptions", optarg, &o.max_subscriptions))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x204: if (!s_size("--max-subs-per-client", optarg, &o.max_subs_per_client))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x205: if (!s_size("--max-records-per-node", optarg, &o.max_records_per_node))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x206: if (!s_size("--max-records-per-owner", optarg, &o.max_records_per_owner))
                        return MZ_EXIT_USAGE;
                    break;
        case 0x207: if (!s_size("--rate-msgs", optarg, &v)) return MZ_EXIT_USAGE;
                    o.rate_msgs = (double)v; break;
        case 0x208: if (!s_size("--rate-burst", optarg, &v)) return MZ_EXIT_USAGE;
                    o.rate_burst = (double)v; break;
        case 'X': if (!s_size("--max-links", optarg, &o.max_links)) return MZ_EXIT_USAGE;
                  break;
        case 'W': if (!s_size("--replay-window-ms", optarg, &v)) return MZ_EXIT_USAGE;
                  o.replay_window_ms = (int64_t)v; break;
        case 0x100: o.tls_cert = optarg; break;
        case 0x101: o.tls_key = optarg; break;
        case 0x102: o.tls_ca = optarg; break;
        case 'h': fputs(s_help, stdout); return MZ_EXIT_OK;
        default: fputs(s_help, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meshzero node: unexpected argument '%s'\n", argv[optind]);
        return MZ_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    o.loop = &loop;
    if (mz_node_new(&o, &node, &e) != MZ_OK) {
        fprintf(stderr, "meshzero node: %s\n", e.msg);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
        return MZ_EXIT_FAIL;
    }
    if (!s_start_bridge(node, &loop, mcp_http, mcp, n_mcp, mcp_tags, n_mcp_tags)) {
        mz_bridge_free(s_bridge);
        mz_node_stop(node);
        uv_run(&loop, UV_RUN_DEFAULT);
        mz_node_free(node);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return MZ_EXIT_FAIL;
    }
    if (json)
        printf("{\"id\":\"%s\",\"listen\":\"%s\",\"api\":\"%s\"}\n", mz_node_id(node),
               mz_node_listen_url(node), mz_node_api_url(node));
    else
        printf("node %s listen %s api %s\n", mz_node_id(node), mz_node_listen_url(node),
               mz_node_api_url(node)[0] ? mz_node_api_url(node) : "none");
    fflush(stdout);
    /* Signals stay installed (unref'd) until the very end: closing them early
     * would let a second SIGTERM kill the process mid-shutdown. */
    uv_signal_init(&loop, &s_sigint);
    uv_signal_init(&loop, &s_sigterm);
    s_sigint.data = s_sigterm.data = node;
    uv_signal_start(&s_sigint, s_on_signal, SIGINT);
    uv_signal_start(&s_sigterm, s_on_signal, SIGTERM);
    uv_signal_init(&loop, &s_sighup);
    s_sighup.data = node;
    uv_signal_start(&s_sighup, s_on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&s_sighup);
    uv_unref((uv_handle_t *)&s_sigint);
    uv_unref((uv_handle_t *)&s_sigterm);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (mz_node_fatal_error(node) != NULL) {
        fprintf(stderr, "meshzero node: %s\n", mz_node_fatal_error(node));
        rc = MZ_EXIT_FAIL;
    }
    mz_bridge_free(s_bridge);
    mz_node_free(node);
    uv_close((uv_handle_t *)&s_sigint, NULL);
    uv_close((uv_handle_t *)&s_sigterm, NULL);
    uv_close((uv_handle_t *)&s_sighup, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "meshzero node: event loop still had open handles at exit\n");
    return rc;
}
