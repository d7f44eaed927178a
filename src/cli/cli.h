/* The meshzero command line: one cmd_<name>_main per command, and the
 * JSON-RPC client the client commands share. */
#ifndef MZ_CLI_H
#define MZ_CLI_H

#include <stdbool.h>

#include <jansson.h>
#include <uv.h>

#include "meshzero/err.h"

/* Exit codes: 0 success, 1 failure, 2 misuse (bad arguments). */
enum { MZ_EXIT_OK = 0, MZ_EXIT_FAIL = 1, MZ_EXIT_USAGE = 2 };

int cmd_node_main(int argc, char **argv);
int cmd_id_main(int argc, char **argv);
int cmd_register_main(int argc, char **argv);
int cmd_unregister_main(int argc, char **argv);
int cmd_query_main(int argc, char **argv);
int cmd_peers_main(int argc, char **argv);
int cmd_connect_main(int argc, char **argv);
int cmd_status_main(int argc, char **argv);
int cmd_exec_main(int argc, char **argv);
int cmd_subscribe_main(int argc, char **argv);
int cmd_publish_main(int argc, char **argv);
int cmd_serve_main(int argc, char **argv);
int cmd_agreement_main(int argc, char **argv);
int cmd_keygen_main(int argc, char **argv);
int cmd_disconnect_main(int argc, char **argv);

/* Builds, signs with the owner key file and returns new the params of a
 * register_resource call carrying a record signed by that key (the node's
 * id and the next version are asked from the node at url). NULL on failure
 * with the reason printed. record_fields: resource_id, resource_type, owner,
 * capabilities, metadata (borrowed). */
json_t *mz_cli_owner_record(const char *url, const char *key_file, const json_t *record_fields);
/* Same for an unregister_resource call: a tombstone signed by the owner key. */
json_t *mz_cli_owner_tombstone(const char *url, const char *key_file, const char *resource_id);

/* The default data directory: $MESHZERO_DATA, else $XDG_DATA_HOME/meshzero,
 * else $HOME/.local/share/meshzero, else ./meshzero-data. */
const char *mz_cli_default_data_dir(char *buf, size_t len);

typedef struct mz_apiclient mz_apiclient;

/* Connects to a node's local API (url NULL: $MESHZERO_API, else the default
 * API URL). Returns new; free with mz_apiclient_free. */
mz_status mz_apiclient_open(const char *url, int timeout_ms, mz_apiclient **out, mz_err *err);
/* One JSON-RPC call. Takes params (may be NULL). On success *result is a
 * new reference; an RPC error comes back as its status and message. */
mz_status mz_apiclient_call(mz_apiclient *c, const char *method, json_t *params,
                            int timeout_ms, json_t **result, mz_err *err);
void mz_apiclient_free(mz_apiclient *c);

/* Messages from the node other than the awaited answer (pushed execute
 * requests, event notifications). msg is borrowed for the call. */
typedef void (*mz_apiclient_push_fn)(mz_apiclient *c, const json_t *msg, void *ctx);
void mz_apiclient_set_push(mz_apiclient *c, mz_apiclient_push_fn fn, void *ctx);
/* The client's own loop, for timers and child processes of the caller. */
uv_loop_t *mz_apiclient_loop(mz_apiclient *c);
/* Sends one message (takes msg). */
mz_status mz_apiclient_send(mz_apiclient *c, json_t *msg, mz_err *err);
/* Runs the loop until *stop is true or the connection closes (an error). */
mz_status mz_apiclient_run(mz_apiclient *c, const bool *stop, mz_err *err);

/* Opens, calls once, closes; prints the failure on stderr. Returns new result or NULL. */
json_t *mz_cli_call(const char *url, const char *method, json_t *params, int timeout_ms);

#endif
