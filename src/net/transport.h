/* The transport seam under ConnectionManager (redis's ConnectionType is the
 * model): include/meshzero/connmgr.h is the one interface the node uses,
 * connmgr.c forwards each call through the ops table of the manager's
 * transport. Two implementations: ws.c (libwebsockets on the caller's libuv
 * loop, the default) and memnet.c (in memory, for unit tests, the fuzz
 * harnesses and the node simulator).
 *
 * What every transport shares lives in the two base structs below, which
 * each implementation embeds as the FIRST member of its own manager and link
 * structs (so a base pointer is also a pointer to the whole); the accessors
 * of connmgr.h that only read these fields are implemented once, in
 * connmgr.c, and the helpers below in transport.c. Behaviour (dialing,
 * queues, closing) is the transport's. */
#ifndef MZ_NET_TRANSPORT_H
#define MZ_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "meshzero/connmgr.h"

/* One manager: options, the bound URLs, counts and counters. */
struct mz_connmgr {
    const mz_transport *t;      /* the implementation; never NULL */
    uv_loop_t *loop;            /* borrowed */
    mz_connmgr_opts o;          /* copy, limits defaulted (mz__connmgr_init) */
    char listen_url[256];       /* bound peer URL; "" none */
    char api_url[256];          /* bound API URL; "" none */
    uint64_t next_id;           /* next link id: unique per manager, never reused */
    size_t n_peer, n_api;       /* open links (on_open reported) of each kind */
    size_t n_out;               /* outbound peer links, dialing or open */
    bool closing;               /* mz_connmgr_close was called */
    mz_connmgr_stats stats;
};

/* One link: what it is and where it goes. */
struct mz_link {
    mz_connmgr *cm;             /* owner */
    uint64_t id;
    mz_link_kind kind;
    bool outbound;
    bool open;                  /* on_open was reported (counted in n_peer/n_api) */
    bool tls;                   /* wss:// */
    char url[256];              /* dialed URL; "" inbound */
    char pin[MZ_URL_PIN_LEN + 1];   /* node id pinned by the URL; "" none */
    char addr[64];              /* remote IP:PORT */
    void *user;                 /* owner's per-link data */
};

/* Flags of the send operation. */
#define MZ_SEND_URGENT 0x1u
#define MZ_SEND_BINARY 0x2u

/* The operations of a transport. Every one is called on the loop thread.
 * Links and managers are the transport's own structs (base first). */
struct mz_transport {
    const char *name;           /* "ws", "memnet": for messages */
    /* Makes a manager (mz_connmgr_new's contract); t is this table. */
    mz_status (*cm_new)(const mz_transport *t, const mz_connmgr_opts *opts, mz_connmgr **out,
                        mz_err *err);
    void (*cm_close)(mz_connmgr *cm);       /* first shutdown step; cm not NULL */
    void (*cm_free)(mz_connmgr *cm);        /* second step; cm not NULL */
    mz_status (*dial)(mz_connmgr *cm, const char *url, mz_link_kind kind, void *user,
                      mz_link **out, mz_err *err);
    /* Queues buf (owned; malloc'd, message at buf + MZ_LINK_PRE), ahead of
     * the non-urgent messages with MZ_SEND_URGENT, as a binary message
     * with MZ_SEND_BINARY (else text). Frees buf on failure. */
    mz_status (*send)(mz_link *l, char *buf, size_t len, unsigned flags, mz_err *err);
    void (*pause)(mz_link *l, bool pause);
    void (*close)(mz_link *l, uint16_t code, const char *reason);
    bool (*closing)(const mz_link *l);
    size_t (*queued_bytes)(const mz_link *l);
    size_t (*queued_msgs)(const mz_link *l);
};

/* Fills the base of a new manager: the options copied with their limits
 * defaulted, the first link id. */
void mz__connmgr_init(mz_connmgr *cm, const mz_transport *t, const mz_connmgr_opts *opts);
/* Parses a URL to dial (into u) and refuses the dial when cm is closing or
 * at its peer or outbound limit: the checks every transport makes first. */
mz_status mz__connmgr_dial_check(const mz_connmgr *cm, const char *url, mz_link_kind kind,
                                 mz_url *u, mz_err *err);
/* Fills the base of a new link of cm (next id, kind, direction). */
void mz__link_init(mz_link *l, mz_connmgr *cm, mz_link_kind kind, bool outbound);

#endif
