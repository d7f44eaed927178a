/* The node's use of the SQLite store (store.c): local records and their
 * removals are written durably before they are acknowledged; remote records,
 * tombstones heard from others and known peers are queued and written in one
 * batch per tick. The restore at start (node.c) reads the store back
 * (remote records verified again, not trusted). A store that fails stops the node with the store's
 * message naming the file. docs/ARCHITECTURE.md "The store". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "core/node_int.h"
#include "state/store.h"

/* Queued writes: key "r:<rid>" -> record JSON (or json null: delete),
 * "n:<node id>" -> delete that node's remote records, "t:<rid>" -> tombstone
 * {owner_key, version, until}, "p:<url>" -> peer {id, static}. */

static void s_decref(void *p)
{
    json_decref(p);
}

static void s_fatal(mz_node *node, const char *msg)
{
    if (node->fatal[0] == '\0')
        snprintf(node->fatal, sizeof node->fatal, "%s", msg);
    mz_log(MZ_LOG_ERROR, "store", "%s: stopping the node", msg);
    node->stop(node);
}

static void s_queue(mz_node *node, const char *prefix, const char *key, json_t *val)
{
    char k[400];
    json_t *old = NULL;

    if (node->ps.store == NULL || val == NULL) {
        json_decref(val);
        return;
    }
    snprintf(k, sizeof k, "%s%s", prefix, key);
    if (mz_hmap_put(node->ps.pending_writes, k, val, (void **)&old) != MZ_OK) {
        json_decref(val);
        s_fatal(node, "store: out of memory queueing a write");
        return;
    }
    json_decref(old);
}

void mz__persist_remote_put(mz_node *node, const json_t *rec)
{
    const char *rid = json_string_value(json_object_get(rec, "resource_id"));

    if (rid)
        s_queue(node, "r:", rid, json_deep_copy(rec));
}

void mz__persist_remote_delete(mz_node *node, const char *rid)
{
    s_queue(node, "r:", rid, json_null());
}

void mz__persist_node_gone(mz_node *node, const char *id)
{
    size_t pos = 0, n = 0;
    const char *k;
    void *v;
    char drop[64][MZ_RESOURCE_ID_MAX + 3];

    if (node->ps.store == NULL)
        return;
    /* Saves of that node's records queued before it left must not outlive the
     * delete (the batch applies deletes first, then saves). */
    do {
        n = 0;
        pos = 0;
        while (n < 64 && mz_hmap_next(node->ps.pending_writes, &pos, &k, &v)) {
            const char *host = json_string_value(json_object_get(v, "node"));
            if (strncmp(k, "r:", 2) == 0 && host != NULL && strcmp(host, id) == 0)
                snprintf(drop[n++], sizeof drop[0], "%s", k);
        }
        for (size_t i = 0; i < n; i++)
            json_decref(mz_hmap_remove(node->ps.pending_writes, drop[i]));
    } while (n == 64);
    s_queue(node, "n:", id, json_true());
}

void mz__persist_tombstone(mz_node *node, const char *rid, const char *owner_key,
                           int64_t version, int64_t until_ms)
{
    s_queue(node, "t:", rid, json_pack("{s:s,s:I,s:I}", "owner_key", owner_key, "version",
                                       (json_int_t)version, "until", (json_int_t)until_ms));
}

void mz__persist_peer(mz_node *node, const char *url, const char *id, bool is_static)
{
    s_queue(node, "p:", url, json_pack("{s:s,s:b}", "id", id ? id : "", "static", is_static));
}

/* Writes everything queued in one transaction. */
void mz__persist_flush(mz_node *node)
{
    size_t pos = 0;
    const char *k;
    void *v;
    mz_err e;
    mz_status rc;
    int64_t now = mz_now_ms();

    if (node->ps.store == NULL || mz_hmap_count(node->ps.pending_writes) == 0)
        return;
    if ((rc = mz_store_begin(node->ps.store, &e)) != MZ_OK) {
        s_fatal(node, e.msg);
        return;
    }
    /* Pass 1: deletions of whole nodes; pass 2: everything else. Saves queued
     * after a node left belong to its return and must survive the delete. */
    while (rc == MZ_OK && mz_hmap_next(node->ps.pending_writes, &pos, &k, &v))
        if (strncmp(k, "n:", 2) == 0)
            rc = mz_store_delete_node_records(node->ps.store, k + 2, &e);
    pos = 0;
    while (rc == MZ_OK && mz_hmap_next(node->ps.pending_writes, &pos, &k, &v)) {
        json_t *j = v;
        if (strncmp(k, "r:", 2) == 0)
            rc = json_is_null(j) ? mz_store_delete_record(node->ps.store, k + 2, &e)
                                 : mz_store_put_record(node->ps.store, j, false, &e);
        else if (strncmp(k, "n:", 2) == 0)
            ;
        else if (strncmp(k, "t:", 2) == 0)
            rc = mz_store_put_tombstone(node->ps.store, k + 2,
                                        json_string_value(json_object_get(j, "owner_key")),
                                        json_integer_value(json_object_get(j, "version")),
                                        json_integer_value(json_object_get(j, "until")), &e);
        else if (strncmp(k, "p:", 2) == 0)
            rc = mz_store_put_peer(node->ps.store, k + 2,
                                   json_string_value(json_object_get(j, "id")), now, 0,
                                   json_is_true(json_object_get(j, "static")), &e);
    }
    if (rc == MZ_OK)
        rc = mz_store_expire_tombstones(node->ps.store, now, &e);
    if (rc == MZ_OK)
        rc = mz_store_commit(node->ps.store, &e);
    else
        mz_store_rollback(node->ps.store, NULL);
    /* Written or not, the queue is done with: on failure the node stops. */
    mz_hmap_free(node->ps.pending_writes, s_decref);
    node->ps.pending_writes = mz_hmap_new();
    if (rc != MZ_OK)
        s_fatal(node, e.msg);
    else if (node->ps.pending_writes == NULL)
        s_fatal(node, "store: out of memory");
}

/* ---- local records: durable before acknowledged ---------------------------- */

mz_status mz__persist_local_put(mz_node *node, const json_t *rec, mz_err *err)
{
    mz_status rc;

    if (node->ps.store == NULL)
        return MZ_OK;
    if ((rc = mz_store_put_record(node->ps.store, rec, true, err)) != MZ_OK)
        s_fatal(node, err->msg);
    return rc;
}

mz_status mz__persist_local_delete(mz_node *node, const char *rid, const char *owner_key,
                                   int64_t version, int64_t until_ms, mz_err *err)
{
    mz_status rc;

    if (node->ps.store == NULL)
        return MZ_OK;
    if ((rc = mz_store_begin(node->ps.store, err)) == MZ_OK &&
        (rc = mz_store_delete_record(node->ps.store, rid, err)) == MZ_OK &&
        (rc = mz_store_put_tombstone(node->ps.store, rid, owner_key, version, until_ms, err)) ==
            MZ_OK)
        rc = mz_store_commit(node->ps.store, err);
    if (rc != MZ_OK) {
        mz_store_rollback(node->ps.store, NULL);
        s_fatal(node, err->msg);
    }
    return rc;
}

mz_status mz__persist_forget_local(mz_node *node, const char *rid, mz_err *err)
{
    mz_status rc;

    if (node->ps.store == NULL)
        return MZ_OK;
    if ((rc = mz_store_delete_record(node->ps.store, rid, err)) != MZ_OK)
        s_fatal(node, err->msg);
    return rc;
}

mz_status mz__persist_open(mz_node *node, const char *data_dir, mz_err *err)
{
    mz_status rc;

    if (data_dir == NULL)
        return MZ_OK;
    {
        /* One node per data directory: two would share a key and overwrite
         * each other's state. The lock goes with the process. */
        char path[1024];
        snprintf(path, sizeof path, "%s/lock", data_dir);
        node->ps.lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (node->ps.lock_fd < 0)
            return mz_err_set(err, MZ_EIO, "data directory %s: %s", data_dir, strerror(errno));
        if (flock(node->ps.lock_fd, LOCK_EX | LOCK_NB) != 0)
            return mz_err_set(err, MZ_EIO, "data directory %s is in use by another node",
                              data_dir);
    }
    if ((rc = mz_store_open(data_dir, &node->ps.store, err)) != MZ_OK)
        return rc;
    node->ps.pending_writes = mz_hmap_new();
    if (node->ps.pending_writes == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: allocating");
    return MZ_OK;
}

mz_status mz__persist_drop_queued(mz_node *node, mz_err *err)
{
    mz_hmap_free(node->ps.pending_writes, s_decref);
    node->ps.pending_writes = mz_hmap_new();
    if (node->ps.pending_writes == NULL)
        return mz_err_set(err, MZ_ENOMEM, "store: allocating");
    return MZ_OK;
}

void mz__persist_close(mz_node *node)
{
    if (node->ps.store != NULL && node->fatal[0] == '\0')
        mz__persist_flush(node);
    mz_hmap_free(node->ps.pending_writes, s_decref);
    node->ps.pending_writes = NULL;
    mz_store_free(node->ps.store);
    node->ps.store = NULL;
    if (node->ps.lock_fd > 0)
        close(node->ps.lock_fd);
    node->ps.lock_fd = -1;
}
