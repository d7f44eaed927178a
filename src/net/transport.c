/* What every transport shares (net/transport.h): the base of a manager and
 * of a link, and the checks before a dial. Below connmgr.c and the
 * transports, so that they need it and it needs neither. */
#include <string.h>

#include "meshzero/connmgr.h"
#include "meshzero/msg.h"
#include "net/transport.h"

void mz__connmgr_init(mz_connmgr *cm, const mz_transport *t, const mz_connmgr_opts *opts)
{
    cm->t = t;
    cm->o = *opts;
    cm->loop = opts->loop;
    cm->next_id = 1;
    if (!cm->o.max_message) cm->o.max_message = MZ_DEFAULT_MAX_MESSAGE;
    if (!cm->o.max_api_message) cm->o.max_api_message = cm->o.max_message;
    if (!cm->o.max_send_queue) cm->o.max_send_queue = MZ_DEFAULT_MAX_SEND_QUEUE;
    if (!cm->o.max_send_msgs) cm->o.max_send_msgs = MZ_DEFAULT_MAX_SEND_MSGS;
    if (!cm->o.max_peers) cm->o.max_peers = MZ_DEFAULT_MAX_PEERS;
    if (!cm->o.max_peers_out) cm->o.max_peers_out = MZ_DEFAULT_MAX_PEERS_OUT;
    if (!cm->o.max_api_clients) cm->o.max_api_clients = MZ_DEFAULT_MAX_API_CLIENTS;
    if (!cm->o.ping_secs) cm->o.ping_secs = MZ_DEFAULT_PING_SECS;
    if (!cm->o.hangup_secs) cm->o.hangup_secs = MZ_DEFAULT_HANGUP_SECS;
}

size_t mz__link_max_message(const mz_link *l)
{
    return l->kind == MZ_LINK_API ? l->cm->o.max_api_message : l->cm->o.max_message;
}

bool mz__link_oversize(mz_link *l, const char *head, size_t head_len)
{
    mz_connmgr *cm = l->cm;

    if (cm->o.cb.on_oversize == NULL ||
        !cm->o.cb.on_oversize(l, head, head_len, mz__link_max_message(l), cm->o.ctx)) {
        cm->stats.oversize_closes++;
        return false;
    }
    cm->stats.oversize_dropped++;
    return true;
}

void mz__link_init(mz_link *l, mz_connmgr *cm, mz_link_kind kind, bool outbound)
{
    l->cm = cm;
    l->kind = kind;
    l->outbound = outbound;
    l->id = cm->next_id++;
}

mz_status mz__connmgr_dial_check(const mz_connmgr *cm, const char *url, mz_link_kind kind,
                                 mz_url *u, mz_err *err)
{
    mz_status rc;

    if ((rc = mz_url_parse2(url, u, err)) != MZ_OK)
        return rc;
    if (u->port == 0)
        return mz_err_set(err, MZ_EINVAL, "url '%s': a port is required to dial", url);
    if (cm->closing)
        return mz_err_set(err, MZ_ESTATE, "dial %s: node is shutting down", url);
    if (kind == MZ_LINK_PEER && cm->n_out >= cm->o.max_peers_out)
        return mz_err_set(err, MZ_ELIMIT, "dial %s: already %zu outbound links (the limit)", url,
                          cm->n_out);
    if (cm->n_peer >= cm->o.max_peers)
        return mz_err_set(err, MZ_ELIMIT, "dial %s: already at the peer limit (%zu)", url,
                          cm->o.max_peers);
    return MZ_OK;
}
