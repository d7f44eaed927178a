/* meshzero keygen: makes an owner key (an Ed25519 key file). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "meshzero.h"

int cmd_keygen_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero keygen --out FILE [--json]\n\n"
        "Creates an owner key: an Ed25519 key file (mode 0600, the same format as a data\n"
        "directory's identity.key) and prints its public key. Records registered with\n"
        "'register --owner-key FILE' are signed by it, and only it can update or remove them.\n"
        "  --out FILE     where to write the key (never overwritten)\n"
        "  --json         print {\"public_key\": ...}\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "out", required_argument, NULL, 'o' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    const char *out = NULL;
    bool json = false;
    mz_identity *id;
    mz_err e;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == 'j') json = true;
        else if (c == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (out == NULL || optind < argc) {
        fprintf(stderr, "meshzero keygen: need --out FILE and nothing else\n%s", usage);
        return MZ_EXIT_USAGE;
    }
    if (mz_identity_create_file(out, &id, &e) != MZ_OK) {
        fprintf(stderr, "meshzero keygen: %s\n", e.msg);
        return MZ_EXIT_FAIL;
    }
    if (json)
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
        fprintf(stderr, "meshzero: --owner-key: %s\n", e.msg);
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
        fprintf(stderr, "meshzero: out of memory\n");
        goto done;
    }
    mz_time_format(mz_now_ms(), ts);
    if (json_object_get(meta, "version") == NULL)
        json_object_set_new(meta, "version", json_string("1.0"));
    json_object_set_new(meta, "last_updated", json_string(ts));
    json_object_set(rec, "node", json_object_get(info, "node"));
    json_object_set(rec, "version", json_object_get(info, "next_version"));
    json_object_set_new(rec, "owner_key", json_string(mz_identity_id(key)));
    if (mz_sign_object(rec, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys, "signature", key,
                       &e) != MZ_OK) {
        fprintf(stderr, "meshzero: signing the record: %s\n", e.msg);
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
        fprintf(stderr, "meshzero: --owner-key: %s\n", e.msg);
        return NULL;
    }
    info = s_get(url, rid, mz_identity_id(key));
    if (info == NULL)
        goto done;
    cur = json_object_get(info, "record");
    if (!json_is_object(cur)) {
        fprintf(stderr, "meshzero: no resource '%s' on that node\n", rid);
        goto done;
    }
    tomb = json_pack("{s:s,s:O,s:s,s:I,s:b}", "resource_id", rid, "node",
                     json_object_get(cur, "node"), "owner_key", mz_identity_id(key), "version",
                     json_integer_value(json_object_get(cur, "version")) + 1, "deleted", 1);
    if (tomb == NULL || mz_sign_object(tomb, MZ_TOMB_SIG_DOMAIN, mz__tomb_unsigned_keys,
                                       "signature", key, &e) != MZ_OK) {
        fprintf(stderr, "meshzero: signing the tombstone failed\n");
        json_decref(tomb);
        tomb = NULL;
    }
done:
    json_decref(info);
    mz_identity_free(key);
    return tomb;
}
