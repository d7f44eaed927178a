/* What this node knows of every node of the mesh (`members`): the live
 * ones from node->nodes, their links from their signed `alive` ("links"),
 * and the ones that left, shown as "left" for a lease before they go. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/node_int.h"

/* A node that left: kept this long (its lease) for the members list. */
typedef struct mz_left {
    char listen[256];
    char why[64];
    int64_t left_ms;
    int64_t last_heard_ms;
} mz_left;

/* Links a node may announce (more are cut: the payload stays bounded). */
#define MZ_MEMBERS_MAX_LINKS 256

json_t *mz__members_links(mz_node *node)
{
    json_t *a = json_array();

    for (mz_peer *p = node->peers; p && a; p = p->next)
        if (p->up && p->link && json_array_size(a) < MZ_MEMBERS_MAX_LINKS)
            json_array_append_new(a, json_string(p->peer_id));
    return a;
}

void mz__members_on_alive(mz_node *node, const char *id, const json_t *pl)
{
    const json_t *links = json_object_get(pl, "links"), *v;
    mz_nodeinfo *ni = mz_hmap_get(node->nodes, id);
    json_t *copy;
    size_t i;

    if (ni != NULL)
        ni->last_heard_ms = mz_now_ms();
    free(node->obs.left ? mz_hmap_remove(node->obs.left, id) : NULL);
    if (!json_is_array(links))
        return;         /* a node that does not announce its links */
    if (node->obs.links == NULL && (node->obs.links = json_object()) == NULL)
        return;
    copy = json_array();
    json_array_foreach(links, i, v)
        if (i < MZ_MEMBERS_MAX_LINKS && json_is_string(v) && mz_id_valid(json_string_value(v)))
            json_array_append(copy, (json_t *)v);
    json_object_set_new(node->obs.links, id, copy);
}

void mz__members_left(mz_node *node, const char *id, const char *listen, const char *why)
{
    mz_left *l;
    void *old = NULL;

    mz__members_expire(node, mz_now_ms());
    if (node->obs.left == NULL && (node->obs.left = mz_hmap_new()) == NULL)
        return;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return;
    snprintf(l->listen, sizeof l->listen, "%s", listen ? listen : "");
    snprintf(l->why, sizeof l->why, "%s", why ? why : "");
    l->left_ms = mz_now_ms();
    {
        mz_nodeinfo *ni = mz_hmap_get(node->nodes, id);
        l->last_heard_ms = ni && ni->last_heard_ms ? ni->last_heard_ms : l->left_ms;
    }
    if (mz_hmap_put(node->obs.left, id, l, &old) != MZ_OK)
        free(l);
    free(old);
}

void mz__members_expire(mz_node *node, int64_t now)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    char gone[16][MZ_ID_HEX_LEN + 1];

    do {
        n = 0;
        pos = 0;
        while (n < 16 && node->obs.left && mz_hmap_next(node->obs.left, &pos, &key, &val))
            if (((mz_left *)val)->left_ms + node->o.lease_ms < now)
                snprintf(gone[n++], sizeof gone[0], "%s", key);
        for (size_t i = 0; i < n; i++) {
            free(mz_hmap_remove(node->obs.left, gone[i]));
            json_object_del(node->obs.links, gone[i]);
        }
    } while (n == 16);
}

static json_t *s_peers_of(mz_node *node, const char *id)
{
    json_t *a = json_object_get(node->obs.links, id);

    return a ? json_deep_copy(a) : json_array();
}

static json_t *s_member(mz_node *node, const char *id, const char *listen, const char *state)
{
    return json_pack("{s:s,s:b,s:s,s:s,s:i,s:n,s:I,s:I,s:I}", "id", id, "self", 0, "listen",
                     listen, "state", state, "hops", 0, "next_hop", "last_heard_ms",
                     (json_int_t)0, "lease_left_ms", (json_int_t)0, "resources",
                     (json_int_t)mz_directory_count_node(node->dir, id));
}

static json_t *s_known(mz_node *node, const char *id, const mz_nodeinfo *ni, int64_t now)
{
    json_t *m = s_member(node, id, ni->listen, "alive");
    int64_t heard = ni->last_heard_ms ? ni->last_heard_ms : now;
    uint64_t link = 0;
    int hops = 0;
    bool routed = mz_routes_lookup(node->routes, id, now, &link, &hops);
    mz_peer *direct = mz__peer_by_id(node, id);

    /* Two alive periods without news (or no way to it): suspect. */
    if (!direct && (!routed || now - heard > 2 * (node->o.lease_ms / 3)))
        json_object_set_new(m, "state", json_string("suspect"));
    if (direct != NULL) {
        hops = 1;
        json_object_set_new(m, "next_hop", json_string(id));
    } else if (routed) {
        for (mz_peer *p = node->peers; p; p = p->next)
            if (p->up && p->link && mz_link_id(p->link) == link)
                json_object_set_new(m, "next_hop", json_string(p->peer_id));
    }
    json_object_set_new(m, "hops", json_integer(hops));
    json_object_set_new(m, "last_heard_ms", json_integer(now - heard));
    json_object_set_new(m, "lease_left_ms",
                        json_integer(ni->lease_until_ms > now ? ni->lease_until_ms - now : 0));
    json_object_set_new(m, "peers", s_peers_of(node, id));
    return m;
}

json_t *mz_node_members(mz_node *node)
{
    json_t *list = json_array(), *self;
    int64_t now = mz_now_ms();
    size_t pos = 0;
    const char *key;
    void *val;

    mz__members_expire(node, now);
    /* Not through mz_node_id & co: members.c stays below node.c. */
    self = s_member(node, mz_identity_id(node->ident), mz_connmgr_listen_url(node->cm), "alive");
    json_object_set_new(self, "self", json_true());
    json_object_set_new(self, "lease_left_ms", json_integer(node->o.lease_ms));
    json_object_set_new(self, "peers", mz__members_links(node));
    json_array_append_new(list, self);
    while (mz_hmap_next(node->nodes, &pos, &key, &val))
        json_array_append_new(list, s_known(node, key, val, now));
    pos = 0;
    while (node->obs.left && mz_hmap_next(node->obs.left, &pos, &key, &val)) {
        mz_left *l = val;
        json_t *m;
        if (mz_hmap_get(node->nodes, key) != NULL)
            continue;
        m = s_member(node, key, l->listen, "left");
        json_object_set_new(m, "last_heard_ms", json_integer(now - l->last_heard_ms));
        json_object_set_new(m, "reason", json_string(l->why));
        json_object_set_new(m, "peers", s_peers_of(node, key));
        json_array_append_new(list, m);
    }
    return json_pack("{s:o}", "members", list);
}
