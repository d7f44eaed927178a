/* ConnectionManager: the interface of include/meshzero/connmgr.h, forwarded
 * to the manager's transport (net/transport.h). The accessors that only read
 * what every transport keeps in the base structs are answered here; what
 * the transports share among themselves is transport.c. */
#include <stdlib.h>
#include <string.h>

#include "meshzero/connmgr.h"
#include "net/transport.h"

mz_status mz_connmgr_new(const mz_connmgr_opts *opts, mz_connmgr **out, mz_err *err)
{
    const mz_transport *t = opts->transport ? opts->transport : mz_transport_ws();

    return t->cm_new(t, opts, out, err);
}

void mz_connmgr_close(mz_connmgr *cm)
{
    if (cm != NULL)
        cm->t->cm_close(cm);
}

void mz_connmgr_free(mz_connmgr *cm)
{
    if (cm != NULL)
        cm->t->cm_free(cm);
}

mz_status mz_connmgr_dial(mz_connmgr *cm, const char *url, mz_link_kind kind, void *user,
                          mz_link **out, mz_err *err)
{
    return cm->t->dial(cm, url, kind, user, out, err);
}

/* Copies buf behind the headroom every transport's queue expects. */
static mz_status s_send_copy(mz_link *l, const void *buf, size_t len, unsigned flags,
                             mz_err *err)
{
    char *b = malloc(MZ_LINK_PRE + len);

    if (b == NULL)
        return mz_err_set(err, MZ_ENOMEM, "link send: allocating %zu bytes", len);
    memcpy(b + MZ_LINK_PRE, buf, len);
    return l->cm->t->send(l, b, len, flags, err);
}

mz_status mz_link_send(mz_link *l, const char *buf, size_t len, mz_err *err)
{
    return s_send_copy(l, buf, len, 0, err);
}

mz_status mz_link_send_urgent(mz_link *l, const char *buf, size_t len, mz_err *err)
{
    return s_send_copy(l, buf, len, MZ_SEND_URGENT, err);
}

mz_status mz_link_send_owned(mz_link *l, char *buf, size_t len, mz_err *err)
{
    return l->cm->t->send(l, buf, len, 0, err);
}

mz_status mz_link_send_binary(mz_link *l, const void *buf, size_t len, bool urgent, mz_err *err)
{
    return s_send_copy(l, buf, len, MZ_SEND_BINARY | (urgent ? MZ_SEND_URGENT : 0), err);
}

void mz_link_pause(mz_link *l, bool pause) { l->cm->t->pause(l, pause); }
void mz_link_close(mz_link *l, uint16_t code, const char *reason)
{
    l->cm->t->close(l, code, reason);
}
bool mz_link_closing(const mz_link *l) { return l->cm->t->closing(l); }
size_t mz_link_queued_bytes(const mz_link *l) { return l->cm->t->queued_bytes(l); }
size_t mz_link_queued_msgs(const mz_link *l) { return l->cm->t->queued_msgs(l); }

const char *mz_connmgr_listen_url(const mz_connmgr *cm) { return cm->listen_url; }
const char *mz_connmgr_api_url(const mz_connmgr *cm) { return cm->api_url; }
const mz_connmgr_stats *mz_connmgr_stats_get(const mz_connmgr *cm) { return &cm->stats; }
size_t mz_connmgr_count(const mz_connmgr *cm, mz_link_kind kind)
{
    return kind == MZ_LINK_PEER ? cm->n_peer : cm->n_api;
}
uint64_t mz_link_id(const mz_link *l) { return l->id; }
mz_link_kind mz_link_kind_get(const mz_link *l) { return l->kind; }
bool mz_link_outbound(const mz_link *l) { return l->outbound; }
const char *mz_link_url(const mz_link *l) { return l->url; }
const char *mz_link_pin(const mz_link *l) { return l->pin; }
bool mz_link_tls(const mz_link *l) { return l->tls; }
const char *mz_link_peer_addr(const mz_link *l) { return l->addr; }
void *mz_link_user(const mz_link *l) { return l->user; }
void mz_link_set_user(mz_link *l, void *user) { l->user = user; }
