/* memnet: a ConnectionManager transport in memory (net/transport.h). Every
 * manager made on one network listens under its URL there, and dials reach
 * the managers listening on it, so several real nodes in one process on one
 * libuv loop link to each other with no socket: the unit tests of exec,
 * dispatch and sync, and the fuzz harnesses' node simulator, run on it.
 *
 * What it keeps of the WebSocket transport's contract: on_open, on_message
 * and on_close are called from the loop (never from inside a send or a
 * dial), in order per link; a closing link receives nothing but still
 * delivers what it sent before closing (a node's "bye"); the far end of a
 * closed link sees "closed by peer (CODE): REASON"; a message over
 * max_message closes the receiving link with 1009; the send queue (what the
 * far end has not read yet) is bounded by max_send_queue / max_send_msgs;
 * urgent messages overtake queued ones; the peer, outbound and API limits
 * are enforced and counted; pause stops delivery to a link. Port 0 binds the
 * lowest free port of the network, so runs are reproducible. Not modelled:
 * TLS (a wss:// URL works as ws://, mz_link_tls is false), unix sockets,
 * HTTP (http_cb and api_token are ignored), fragmentation, binary frames,
 * UTF-8 checks, keepalive. A dial to a URL nothing listens on fails on the
 * next turn with "dial failed: connection refused".
 *
 * The harness side (mz_memnet_accept/deliver/hangup) plays a remote party
 * by hand, synchronously, for the fuzzers. Loop-thread only. */
#ifndef MZ_NET_MEMNET_H
#define MZ_NET_MEMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "meshzero/connmgr.h"

typedef struct mz_memnet mz_memnet;

/* A network on loop (borrowed, outlives it). Returns new: mz_memnet_free. */
mz_status mz_memnet_new(uv_loop_t *loop, mz_memnet **out, mz_err *err);
/* Frees the network once every manager made on it is freed: its libuv
 * handle closes, so run the loop once more before uv_loop_close.
 * NULL-safe. */
void mz_memnet_free(mz_memnet *net);
/* The transport to put in mz_node_opts.transport (or
 * mz_connmgr_opts.transport). Borrowed, valid for the network's life. */
const mz_transport *mz_memnet_transport(mz_memnet *net);

/* Does now what the loop would do next: connects pending dials, delivers
 * queued messages, reports closes, until nothing is left or max steps
 * (0: no bound) were taken. Returns the steps taken. */
size_t mz_memnet_run(mz_memnet *net, size_t max);

/* Called with every message any link of the network sends, before the send
 * returns; it must not call back into the sender. NULL: none. */
typedef void (*mz_memnet_tap_fn)(mz_link *link, const char *buf, size_t len, void *ctx);
void mz_memnet_set_tap(mz_memnet *net, mz_memnet_tap_fn fn, void *ctx);

/* The manager whose peer or API listener is url (port resolved), or NULL. */
mz_connmgr *mz_memnet_listener(mz_memnet *net, const char *url);

/* ---- playing a remote party by hand (the fuzz harnesses) --------------- */

/* A remote party connects to cm: a new inbound link of that kind, reported
 * with on_open now. Its messages come from mz_memnet_deliver, what the node
 * sends to it goes only to the tap. Returns its id, 0 when refused (limit
 * reached, closing). */
uint64_t mz_memnet_accept(mz_connmgr *cm, mz_link_kind kind);
/* The link of cm with that id (until its on_close), or NULL. */
mz_link *mz_memnet_find(mz_connmgr *cm, uint64_t id);
/* One whole message from the remote side of link id, handed over now.
 * Dropped when the link is gone or closing; over max_message it closes the
 * link with 1009 instead. */
void mz_memnet_deliver(mz_connmgr *cm, uint64_t id, const char *buf, size_t len);
/* The remote side of link id hangs up (reported on the next turn). */
void mz_memnet_hangup(mz_connmgr *cm, uint64_t id);

#endif
