/* A real mz_node on the in-memory transport (src/net/memnet.h),
 * driven by a small line-oriented script: the engine of fuzz_peer, fuzz_api
 * and fuzz_cli. Each input gets a fresh node (so a crash input replays
 * alone), linked to a neighbour P by a real hello/welcome exchange.
 *
 * Script: one action per line ('\n'); the first byte picks the channel.
 *   S<json>  envelope from the neighbour link, completed and signed (below)
 *   E<json>  same, but sealed for the node (PROTOCOL.md 5.1) instead of
 *            signed; a string payload is sealed as raw plaintext bytes
 *   H<json>  same, on a second, not yet authenticated link (opened on use)
 *   R<bytes> raw bytes on the neighbour link      P<bytes> raw, second link
 *   A<text>  local API message from client 1      B<text>  from client 2
 *   Y  the neighbour hangs up, then links again   h  the second link hangs up
 *   X  API client 1 disconnects                   Z  API client 2 disconnects
 *   #  comment
 * Any other first byte: the whole line goes to the default channel ('R' for
 * fuzz_peer, 'A' for fuzz_api).
 *
 * In S/E/H lines, and in A/B lines that contain '@', string values equal to a
 * placeholder are replaced: @node (the node under test), @peer (P, the
 * neighbour), @c and @d (two more nodes, reachable through P), @now (the
 * current time: messages outside the replay window are refused), @chal (the
 * challenge the node sent on that link), @exec (id of the node's latest
 * execute request), @pushed (id of the latest execute pushed to that API
 * client). S/E/H envelopes get id, sender (@c for H, else @peer), recipient
 * ("*" for hello and broadcast types, else @node), timestamp (@now) and payload
 * when missing; any object whose "signature" is "@sign" is signed by its
 * owner_key or node, as a tombstone if it has "deleted", else as a record; the envelope is signed by its sender when
 * "signature" is missing or "@sign" (and the sender is P, C or D).
 *
 * Invariants checked on everything the node sends (a failure aborts, i.e. is
 * a crash for libFuzzer): peer messages parse under the node's own limits,
 * its own and relayed broadcasts verify, its sealed unicasts open for their
 * recipient, records it hands out validate and verify; API messages parse
 * with the CLI's jansson flags and are JSON-RPC 2.0; after the node is
 * freed no libuv handle is left on the loop. MZ_SIM_TRACE=1 prints every
 * message both ways on stderr. */
#ifndef MZ_NODESIM_H
#define MZ_NODESIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Once per process: keys, temporary data directory, quiet logging. */
void mz_sim_init(void);
/* A fresh node linked to P. */
void mz_sim_begin(void);
/* One script line (without its '\n'). default_ch as described above. */
void mz_sim_line(const char *line, size_t len, char default_ch);
/* Sends msg (borrowed) as API client 0 or 1. */
void mz_sim_api_send(int client, const json_t *msg);
/* Borrowed: the last message the node sent to API client 0 or 1, or NULL. */
const json_t *mz_sim_api_last(int client);
/* The node under test and its loop, between mz_sim_begin and mz_sim_end
 * (for harnesses that attach more to the node, such as an MCP bridge). */
struct mz_node *mz_sim_node(void);
struct uv_loop_s *mz_sim_loop(void);
/* Runs what the node scheduled for "now" and reports pending closes. */
void mz_sim_settle(void);
/* Stops and frees the node; checks that nothing was left behind. */
void mz_sim_end(void);
/* begin, every line, end. */
void mz_sim_script(const uint8_t *data, size_t size, char default_ch);

/* Known open bugs are tolerated unless MZ_FUZZ_STRICT=1 (the regression
 * tests of fuzz/regress/open run strict, to show the bug is still there):
 * API requests that would trigger one are defused before delivery (see
 * s_defuse), and a failed invariant whose kind is listed in s_known_open is
 * counted and reported once instead of aborting. */
bool mz_sim_strict(void);
void mz_sim_violation(const char *kind, const char *detail, const char *buf, size_t len);

#endif
