/* An in-memory ConnectionManager for the fuzz harnesses: it implements
 * include/meshzero/connmgr.h without sockets or libwebsockets, so a real
 * mz_node (node.c, handler.c, api.c, exec.c, events.c unchanged) can be
 * driven message by message from one process, deterministically.
 *
 * What it keeps of connmgr.c's contract: on_open/on_message/on_close are
 * called the same way (on_close later, from mz_fake_pump or from the loop
 * after mz_connmgr_close), a closing link receives nothing, a message over
 * max_message closes the link (1009) instead of reaching the owner, sends to
 * a closing link fail with MZ_ESTATE, link counts and the peer/API limits
 * are enforced. What it does not model: send queues (every send "leaves" at
 * once, so the slow-peer limit never trips), fragmentation, binary frames,
 * UTF-8 validation by lws (the node must cope with any bytes), keepalive.
 * Dials never connect: they fail on the next pump ("dial failed").
 * mz_url_parse is the real one (connmgr.c with every other symbol made local
 * by objcopy, see CMakeLists.txt). */
#ifndef MZ_FAKE_CONNMGR_H
#define MZ_FAKE_CONNMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/connmgr.h"

/* Called for every message the owner sends, before mz_link_send returns.
 * It must not call back into the node. */
typedef void (*mz_fake_send_fn)(mz_link *link, const char *buf, size_t len, void *ctx);
void mz_fake_set_send_hook(mz_fake_send_fn fn, void *ctx);

/* The manager most recently created by mz_connmgr_new (NULL once freed). */
mz_connmgr *mz_fake_last(void);

/* A remote party connects: a new inbound link of that kind, reported with
 * on_open. Returns its id, or 0 when refused (limit reached, closing). */
uint64_t mz_fake_open(mz_connmgr *cm, mz_link_kind kind);
/* The live (not yet reported closed) link with that id, or NULL. */
mz_link *mz_fake_find(mz_connmgr *cm, uint64_t id);
/* One whole text message from the remote side of link `id`. Dropped when the
 * link is gone or closing; closes it with 1009 when over max_message. */
void mz_fake_deliver(mz_connmgr *cm, uint64_t id, const char *buf, size_t len);
/* The remote side hangs up (reported on the next pump). */
void mz_fake_hangup(mz_connmgr *cm, uint64_t id);
/* Reports every pending close (on_close, then frees the link). Returns how
 * many were reported. */
size_t mz_fake_pump(mz_connmgr *cm);

#endif
