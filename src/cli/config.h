/* The config file of `meshzero node --config FILE`: a JSON object whose keys
 * are the node's long option names without the dashes, e.g.
 *
 *   {"listen": "ws://127.0.0.1:7000", "peer": ["ws://10.0.0.2:7000"],
 *    "min-links": 2, "no-seal": true}
 *
 * Values: a string for options taking a text, a non-negative integer for
 * numeric ones, true/false for flags (false: as if absent), and a string or
 * an array of strings for repeatable options, an object for structured ones
 * ("mcp-views"). The file becomes a list of
 * "--name=value" / "--name" arguments that the command parses before its
 * own, so command-line options win (a repeatable option given on the
 * command line replaces the file's list). The parser is separate from the
 * file reading so that it can be fuzzed (fuzz/fuzz_config.c). */
#ifndef MZ_CLI_CONFIG_H
#define MZ_CLI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"

/* Largest config file read: far above any sensible file, small enough that
 * a wrong path (a log, a device) fails fast instead of filling memory. */
#define MZ_CONFIG_MAX_BYTES (1024 * 1024)

typedef enum {
    MZ_CFG_STRING,              /* "--name=text" */
    MZ_CFG_UINT,                /* integer 0..max, as "--name=N" */
    MZ_CFG_FLAG,                /* true: "--name"; false: nothing */
    MZ_CFG_LIST,                /* string or array of at most max strings: one "--name=text" each */
    MZ_CFG_OBJECT,              /* a JSON object, as "--name=<its compact JSON>" */
} mz_cfg_kind;

/* One option a config file may set. */
typedef struct mz_cfg_key {
    const char *name;           /* the long option name, without "--" */
    mz_cfg_kind kind;
    int code;                   /* getopt_long's val for it (MZ_OPT_*) */
    uint64_t max;               /* UINT: largest value; LIST: most elements */
} mz_cfg_key;

/* getopt_long codes of `meshzero node`'s options: above any character. */
enum {
    MZ_OPT_LISTEN = 0x100, MZ_OPT_API, MZ_OPT_API_ALLOW_REMOTE, MZ_OPT_API_REQUIRE_TOKEN,
    MZ_OPT_DATA, MZ_OPT_PEER, MZ_OPT_LEASE_MS, MZ_OPT_MAX_MESSAGE, MZ_OPT_MAX_SEND_QUEUE,
    MZ_OPT_MAX_PEERS, MZ_OPT_MAX_PEERS_OUT, MZ_OPT_MAX_API_CLIENTS, MZ_OPT_MAX_HOPS,
    MZ_OPT_PING_SECS, MZ_OPT_HANGUP_SECS, MZ_OPT_LOG, MZ_OPT_JSON, MZ_OPT_MCP,
    MZ_OPT_MCP_TAG, MZ_OPT_NO_MCP_HTTP, MZ_OPT_TRUST, MZ_OPT_NETWORK_KEY, MZ_OPT_NO_SEAL,
    MZ_OPT_MIN_LINKS, MZ_OPT_MAX_LINKS, MZ_OPT_MAX_RUNNING, MZ_OPT_MAX_RUNNING_PER_CALLER,
    MZ_OPT_MAX_KEPT_ANSWERS, MZ_OPT_MAX_KEPT_BYTES, MZ_OPT_MAX_PENDING, MZ_OPT_MAX_SUBSCRIPTIONS, MZ_OPT_MAX_SUBS_PER_CLIENT,
    MZ_OPT_MAX_RECORDS_PER_NODE, MZ_OPT_MAX_RECORDS_PER_OWNER, MZ_OPT_RATE_MSGS,
    MZ_OPT_RATE_BURST, MZ_OPT_REPLAY_WINDOW_MS, MZ_OPT_TLS_CERT, MZ_OPT_TLS_KEY, MZ_OPT_TLS_CA,
    MZ_OPT_CONFIG, MZ_OPT_HELP, MZ_OPT_LOG_FORMAT, MZ_OPT_LOG_CALLS,
    MZ_OPT_FETCH_RATE, MZ_OPT_REPLY_RATE, MZ_OPT_REPLY_RATE_ALL, MZ_OPT_DRAIN_MS,
    MZ_OPT_MCP_VIEWS, MZ_OPT_WIRE1,
};

/* Every option of `meshzero node` but --config and --help: the command's
 * getopt table is built from it, so the file and the command line always
 * know the same options. */
extern const mz_cfg_key mz_cfg_node_keys[];
extern const size_t mz_cfg_node_n_keys;

/* The options a config file gave, as command-line arguments. */
typedef struct mz_cfg mz_cfg;

/* Parses len bytes (not NUL-terminated, at most MZ_CONFIG_MAX_BYTES) of a
 * config file against keys (borrowed, n_keys entries). file (borrowed)
 * only names the file in messages. On success *out is new (free with
 * mz_cfg_free). On failure *out is NULL and err says, naming file and key
 * (a JSON path such as peer[2]), what is wrong: MZ_EINVAL (not JSON, not an
 * object, unknown key, wrong type, out of range), MZ_ELIMIT (too large),
 * MZ_ENOMEM. */
mz_status mz_cfg_parse(const char *buf, size_t len, const char *file, const mz_cfg_key *keys,
                       size_t n_keys, mz_cfg **out, mz_err *err);

/* Reads the file at path and parses it as above. Also MZ_EIO when it cannot
 * be opened or read. */
mz_status mz_cfg_load(const char *path, const mz_cfg_key *keys, size_t n_keys, mz_cfg **out,
                      mz_err *err);

/* Number of arguments, and argument i ("--name=value" or "--name";
 * borrowed, valid until mz_cfg_free). */
size_t mz_cfg_argc(const mz_cfg *c);
const char *mz_cfg_arg(const mz_cfg *c, size_t i);
/* Where argument i came from: its key's JSON path ("listen", "peer[1]"). */
const char *mz_cfg_origin(const mz_cfg *c, size_t i);

/* NULL-safe. */
void mz_cfg_free(mz_cfg *c);

#endif
