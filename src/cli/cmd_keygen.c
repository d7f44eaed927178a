/* meshzero keygen: makes an owner key (an Ed25519 key file). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero.h"

static int s_keygen_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    (void)cli;
    (void)key;
    *(const char **)ctx = arg;
    return 0;
}

int cmd_keygen_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "out", 'o', "FILE", "where to write the key (required; never overwritten)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "keygen", "--out FILE",
        "Creates an owner key: an Ed25519 key file (mode 0600, the same format as a data\n"
        "directory's identity.key) and prints its public key. Records registered with\n"
        "'register --owner-key FILE' are signed by it, and only it can update or remove\n"
        "them. With --json prints {\"public_key\", \"file\"}.",
        opts, MZ_CLI_JSON, "keygen --out ops.key\nkeygen --out ops.key --json", false };
    const char *out = NULL;
    mz_identity *id;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_keygen_opt, &out);

    if (rc != MZ_CLI_GO)
        return rc;
    if (out == NULL || cli.argc > 0)
        return mz_cli_usage(&cli, "need --out FILE and nothing else");
    if (mz_identity_create_file(out, &id, &e) != MZ_OK)
        return mz_cli_fail_err(&cli, &e);
    if (cli.json)
        printf("{\"public_key\":\"%s\",\"file\":\"%s\"}\n", mz_identity_id(id), out);
    else
        printf("%s\n", mz_identity_id(id));
    mz_identity_free(id);
    return MZ_EXIT_OK;
}

/* ---- records and tombstones signed by an owner key ------------------------ */

#include "core/node_int.h"   /* the signature domains */

static json_t *s_get(const char *url, const char *rid, const char *okey)
{
    return mz_cli_call(url, "get_resource",
                       json_pack("{s:s,s:s}", "resource_id", rid, "owner_key", okey), 10000);
}

json_t *mz_cli_owner_record(const char *url, const char *key_file, const json_t *fields)
{
    mz_identity *key;
    json_t *info, *rec = NULL, *meta;
    char ts[32];
    mz_err e;

    if (mz_identity_load_file(key_file, &key, &e) != MZ_OK) {
        mz_cli_fail(mz_cli_current(), mz_cli_status_code(e.code), "--owner-key: %s", e.msg);
        return NULL;
    }
    info = s_get(url, json_string_value(json_object_get(fields, "resource_id")),
                 mz_identity_id(key));
    if (info == NULL)
        goto done;
    rec = json_deep_copy(fields);
    meta = json_object_get(rec, "metadata");
    if (rec == NULL || !json_is_object(meta)) {
        json_decref(rec);
        rec = NULL;
        mz_cli_fail(mz_cli_current(), "out_of_memory", "out of memory");
        goto done;
    }
    mz_time_format(mz_now_ms(), ts);
    if (json_object_get(meta, "last_updated") == NULL)
        json_object_set_new(meta, "last_updated", json_string(ts));
    json_object_set(rec, "node", json_object_get(info, "node"));
    json_object_set(rec, "version", json_object_get(info, "next_version"));
    json_object_set_new(rec, "owner_key", json_string(mz_identity_id(key)));
    if (mz_sign_object(rec, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys, "signature", key,
                       &e) != MZ_OK) {
        mz_cli_fail(mz_cli_current(), "failed", "signing the record: %s", e.msg);
        json_decref(rec);
        rec = NULL;
    }
done:
    json_decref(info);
    mz_identity_free(key);
    return rec;
}

json_t *mz_cli_owner_tombstone(const char *url, const char *key_file, const char *rid)
{
    mz_identity *key;
    json_t *info, *tomb = NULL, *cur;
    mz_err e;

    if (mz_identity_load_file(key_file, &key, &e) != MZ_OK) {
        mz_cli_fail(mz_cli_current(), mz_cli_status_code(e.code), "--owner-key: %s", e.msg);
        return NULL;
    }
    info = s_get(url, rid, mz_identity_id(key));
    if (info == NULL)
        goto done;
    cur = json_object_get(info, "record");
    if (!json_is_object(cur)) {
        mz_cli_fail(mz_cli_current(), "not_found", "no resource '%s' on that node", rid);
        goto done;
    }
    tomb = json_pack("{s:s,s:O,s:s,s:I,s:b}", "resource_id", rid, "node",
                     json_object_get(cur, "node"), "owner_key", mz_identity_id(key), "version",
                     json_integer_value(json_object_get(cur, "version")) + 1, "deleted", 1);
    if (tomb == NULL || mz_sign_object(tomb, MZ_TOMB_SIG_DOMAIN, mz__tomb_unsigned_keys,
                                       "signature", key, &e) != MZ_OK) {
        mz_cli_fail(mz_cli_current(), "failed", "signing the tombstone failed");
        json_decref(tomb);
        tomb = NULL;
    }
done:
    json_decref(info);
    mz_identity_free(key);
    return tomb;
}
