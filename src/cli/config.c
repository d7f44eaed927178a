/* The config file of `meshzero node` (config.h): JSON object -> arguments. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

/* Paths in messages are cut to this many bytes so the key still fits. */
#define MZ_CFG_PATH_SHOWN 100

#define U64 ((uint64_t)INT64_MAX)   /* any JSON integer jansson reads */

const mz_cfg_key mz_cfg_node_keys[] = {
    { "listen",                 MZ_CFG_STRING, MZ_OPT_LISTEN, 0 },
    { "api",                    MZ_CFG_STRING, MZ_OPT_API, 0 },
    { "api-allow-remote",       MZ_CFG_FLAG,   MZ_OPT_API_ALLOW_REMOTE, 0 },
    { "api-require-token",      MZ_CFG_FLAG,   MZ_OPT_API_REQUIRE_TOKEN, 0 },
    { "data",                   MZ_CFG_STRING, MZ_OPT_DATA, 0 },
    /* The limits of the lists are the command's (cmd_node.c). */
    { "peer",                   MZ_CFG_LIST,   MZ_OPT_PEER, 64 },
    { "lease-ms",               MZ_CFG_UINT,   MZ_OPT_LEASE_MS, U64 },
    { "max-message",            MZ_CFG_UINT,   MZ_OPT_MAX_MESSAGE, U64 },
    { "max-send-queue",         MZ_CFG_UINT,   MZ_OPT_MAX_SEND_QUEUE, U64 },
    { "max-peers",              MZ_CFG_UINT,   MZ_OPT_MAX_PEERS, U64 },
    { "max-peers-out",          MZ_CFG_UINT,   MZ_OPT_MAX_PEERS_OUT, U64 },
    { "max-api-clients",        MZ_CFG_UINT,   MZ_OPT_MAX_API_CLIENTS, U64 },
    /* Hop counts travel in one byte; the command line clamps, a file is told. */
    { "max-hops",               MZ_CFG_UINT,   MZ_OPT_MAX_HOPS, 255 },
    { "ping-secs",              MZ_CFG_UINT,   MZ_OPT_PING_SECS, UINT_MAX },
    { "hangup-secs",            MZ_CFG_UINT,   MZ_OPT_HANGUP_SECS, UINT_MAX },
    { "log",                    MZ_CFG_STRING, MZ_OPT_LOG, 0 },
    { "json",                   MZ_CFG_FLAG,   MZ_OPT_JSON, 0 },
    { "mcp",                    MZ_CFG_LIST,   MZ_OPT_MCP, 32 },
    { "mcp-tag",                MZ_CFG_LIST,   MZ_OPT_MCP_TAG, 16 },
    { "no-mcp-http",            MZ_CFG_FLAG,   MZ_OPT_NO_MCP_HTTP, 0 },
    { "mcp-views",              MZ_CFG_OBJECT, MZ_OPT_MCP_VIEWS, 0 },
    { "trust",                  MZ_CFG_STRING, MZ_OPT_TRUST, 0 },
    { "network-key",            MZ_CFG_STRING, MZ_OPT_NETWORK_KEY, 0 },
    { "no-seal",                MZ_CFG_FLAG,   MZ_OPT_NO_SEAL, 0 },
    { "wire1",                  MZ_CFG_FLAG,   MZ_OPT_WIRE1, 0 },
    { "min-links",              MZ_CFG_UINT,   MZ_OPT_MIN_LINKS, U64 },
    { "max-links",              MZ_CFG_UINT,   MZ_OPT_MAX_LINKS, U64 },
    { "max-running",            MZ_CFG_UINT,   MZ_OPT_MAX_RUNNING, U64 },
    { "max-running-per-caller", MZ_CFG_UINT,   MZ_OPT_MAX_RUNNING_PER_CALLER, U64 },
    { "max-kept-answers",       MZ_CFG_UINT,   MZ_OPT_MAX_KEPT_ANSWERS, U64 },
    { "max-kept-bytes",         MZ_CFG_UINT,   MZ_OPT_MAX_KEPT_BYTES, U64 },
    { "max-pending",            MZ_CFG_UINT,   MZ_OPT_MAX_PENDING, U64 },
    { "max-subscriptions",      MZ_CFG_UINT,   MZ_OPT_MAX_SUBSCRIPTIONS, U64 },
    { "max-subs-per-client",    MZ_CFG_UINT,   MZ_OPT_MAX_SUBS_PER_CLIENT, U64 },
    { "max-records-per-node",   MZ_CFG_UINT,   MZ_OPT_MAX_RECORDS_PER_NODE, U64 },
    { "max-records-per-owner",  MZ_CFG_UINT,   MZ_OPT_MAX_RECORDS_PER_OWNER, U64 },
    { "rate-msgs",              MZ_CFG_UINT,   MZ_OPT_RATE_MSGS, U64 },
    { "rate-burst",             MZ_CFG_UINT,   MZ_OPT_RATE_BURST, U64 },
    { "fetch-rate",             MZ_CFG_UINT,   MZ_OPT_FETCH_RATE, U64 },
    { "reply-rate",             MZ_CFG_UINT,   MZ_OPT_REPLY_RATE, U64 },
    { "reply-rate-all",         MZ_CFG_UINT,   MZ_OPT_REPLY_RATE_ALL, U64 },
    { "replay-window-ms",       MZ_CFG_UINT,   MZ_OPT_REPLAY_WINDOW_MS, U64 },
    { "drain-ms",               MZ_CFG_UINT,   MZ_OPT_DRAIN_MS, 60000 },  /* MZ_MAX_DRAIN_MS */
    { "tls-cert",               MZ_CFG_STRING, MZ_OPT_TLS_CERT, 0 },
    { "tls-key",                MZ_CFG_STRING, MZ_OPT_TLS_KEY, 0 },
    { "tls-ca",                 MZ_CFG_STRING, MZ_OPT_TLS_CA, 0 },
    { "log-format",             MZ_CFG_STRING, MZ_OPT_LOG_FORMAT, 0 },
    { "log-calls",              MZ_CFG_FLAG,   MZ_OPT_LOG_CALLS, 0 },
};
const size_t mz_cfg_node_n_keys = sizeof mz_cfg_node_keys / sizeof mz_cfg_node_keys[0];

struct mz_cfg {
    char **argv;                /* "--name=value" / "--name"; owned */
    char **origin;              /* JSON path of each argument; owned */
    size_t n, cap;
};

void mz_cfg_free(mz_cfg *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->argv[i]);
        free(c->origin[i]);
    }
    free(c->argv);
    free(c->origin);
    free(c);
}

size_t mz_cfg_argc(const mz_cfg *c) { return c->n; }
const char *mz_cfg_arg(const mz_cfg *c, size_t i) { return i < c->n ? c->argv[i] : NULL; }
const char *mz_cfg_origin(const mz_cfg *c, size_t i) { return i < c->n ? c->origin[i] : NULL; }

/* Appends "--name[=value]" from path. value NULL: a flag. */
static mz_status s_add(mz_cfg *c, const char *name, const char *value, const char *path)
{
    size_t len = strlen(name) + 3 + (value ? strlen(value) + 1 : 0);
    char *arg, *org;

    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char **a = realloc(c->argv, cap * sizeof *a);
        if (a == NULL)
            return MZ_ENOMEM;
        c->argv = a;
        a = realloc(c->origin, cap * sizeof *a);
        if (a == NULL)
            return MZ_ENOMEM;
        c->origin = a;
        c->cap = cap;
    }
    arg = malloc(len);
    org = strdup(path);
    if (arg == NULL || org == NULL) {
        free(arg);
        free(org);
        return MZ_ENOMEM;
    }
    snprintf(arg, len, "--%s%s%s", name, value ? "=" : "", value ? value : "");
    c->argv[c->n] = arg;
    c->origin[c->n] = org;
    c->n++;
    return MZ_OK;
}

static const char *s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction or exponent";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A string value for path; NULL with err set when v is not one. */
static const char *s_string(const json_t *v, const char *file, const char *path, mz_err *err)
{
    const char *s = json_string_value(v);

    if (s == NULL) {
        mz_err_set(err, MZ_EINVAL, "%.*s: key \"%.60s\": expected a string, got %s",
                   MZ_CFG_PATH_SHOWN, file, path, s_type_name(v));
        return NULL;
    }
    /* jansson refuses \u0000 unless asked to; an argument could not hold it. */
    if (strlen(s) != json_string_length(v)) {
        mz_err_set(err, MZ_EINVAL, "%.*s: key \"%.60s\": the string holds a NUL character",
                   MZ_CFG_PATH_SHOWN, file, path);
        return NULL;
    }
    return s;
}

/* One key and its value. */
static mz_status s_member(mz_cfg *c, const mz_cfg_key *k, const json_t *v, const char *file,
                          mz_err *err)
{
    char num[32], path[96];
    const char *s;
    json_int_t n;
    size_t i;
    json_t *e;

    switch (k->kind) {
    case MZ_CFG_STRING:
        if ((s = s_string(v, file, k->name, err)) == NULL)
            return MZ_EINVAL;
        return s_add(c, k->name, s, k->name);
    case MZ_CFG_UINT:
        if (!json_is_integer(v))
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": expected a non-negative "
                              "integer, got %s", MZ_CFG_PATH_SHOWN, file, k->name,
                              s_type_name(v));
        n = json_integer_value(v);
        if (n < 0 || (uint64_t)n > k->max)
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": %" JSON_INTEGER_FORMAT
                              " is out of range (0 to %" PRIu64 ")", MZ_CFG_PATH_SHOWN, file,
                              k->name, n, k->max);
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, n);
        return s_add(c, k->name, num, k->name);
    case MZ_CFG_FLAG:
        if (!json_is_boolean(v))
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": expected true or false, got "
                              "%s", MZ_CFG_PATH_SHOWN, file, k->name, s_type_name(v));
        return json_is_true(v) ? s_add(c, k->name, NULL, k->name) : MZ_OK;
    case MZ_CFG_OBJECT: {
        char *text;
        mz_status rc;
        if (!json_is_object(v))
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": expected an object, got %s",
                              MZ_CFG_PATH_SHOWN, file, k->name, s_type_name(v));
        if ((text = json_dumps(v, JSON_COMPACT)) == NULL)
            return mz_err_set(err, MZ_ENOMEM, "config: out of memory");
        rc = s_add(c, k->name, text, k->name);
        free(text);
        return rc;
    }
    case MZ_CFG_LIST:
        if (json_is_string(v)) {
            if ((s = s_string(v, file, k->name, err)) == NULL)
                return MZ_EINVAL;
            return s_add(c, k->name, s, k->name);
        }
        if (!json_is_array(v))
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": expected a string or an "
                              "array of strings, got %s", MZ_CFG_PATH_SHOWN, file, k->name,
                              s_type_name(v));
        if (json_array_size(v) > k->max)
            return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": %zu values, at most %" PRIu64
                              " allowed", MZ_CFG_PATH_SHOWN, file, k->name,
                              json_array_size(v), k->max);
        json_array_foreach(v, i, e) {
            mz_status rc;
            snprintf(path, sizeof path, "%s[%zu]", k->name, i);
            if ((s = s_string(e, file, path, err)) == NULL)
                return MZ_EINVAL;
            if ((rc = s_add(c, k->name, s, path)) != MZ_OK)
                return rc;
        }
        return MZ_OK;
    }
    return mz_err_set(err, MZ_EINVAL, "%.*s: key \"%s\": unknown kind", MZ_CFG_PATH_SHOWN,
                      file, k->name);
}

static const mz_cfg_key *s_find(const mz_cfg_key *keys, size_t n_keys, const char *name)
{
    for (size_t i = 0; i < n_keys; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

mz_status mz_cfg_parse(const char *buf, size_t len, const char *file, const mz_cfg_key *keys,
                       size_t n_keys, mz_cfg **out, mz_err *err)
{
    json_error_t jerr;
    json_t *root, *v;
    const char *name;
    mz_cfg *c;
    mz_status rc = MZ_OK;

    *out = NULL;
    if (len > MZ_CONFIG_MAX_BYTES)
        return mz_err_set(err, MZ_ELIMIT, "%.*s: %zu bytes, over the %d-byte limit of a "
                          "config file", MZ_CFG_PATH_SHOWN, file, len, MZ_CONFIG_MAX_BYTES);
    /* Duplicate keys are refused: which one wins would be a guess. */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jansson reports out of memory as a parse error too; its text says so. */
        return mz_err_set(err, MZ_EINVAL, "%.*s: not valid JSON: line %d, column %d: %.100s",
                          MZ_CFG_PATH_SHOWN, file, jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(root)) {
        rc = mz_err_set(err, MZ_EINVAL, "%.*s: expected a JSON object of options, got %s",
                        MZ_CFG_PATH_SHOWN, file, s_type_name(root));
        json_decref(root);
        return rc;
    }
    if ((c = calloc(1, sizeof *c)) == NULL) {
        json_decref(root);
        return mz_err_set(err, MZ_ENOMEM, "%.*s: out of memory", MZ_CFG_PATH_SHOWN, file);
    }
    json_object_foreach(root, name, v) {
        const mz_cfg_key *k = s_find(keys, n_keys, name);
        if (k == NULL) {
            rc = mz_err_set(err, MZ_EINVAL, "%.*s: key \"%.60s\": %s", MZ_CFG_PATH_SHOWN, file,
                            name, strcmp(name, "config") == 0
                                      ? "a config file cannot name another one"
                                      : "unknown option (keys are long option names "
                                        "without the dashes)");
            break;
        }
        if ((rc = s_member(c, k, v, file, err)) != MZ_OK) {
            if (rc == MZ_ENOMEM)
                mz_err_set(err, MZ_ENOMEM, "%.*s: out of memory", MZ_CFG_PATH_SHOWN, file);
            break;
        }
    }
    json_decref(root);
    if (rc != MZ_OK) {
        mz_cfg_free(c);
        return rc;
    }
    *out = c;
    return MZ_OK;
}

mz_status mz_cfg_load(const char *path, const mz_cfg_key *keys, size_t n_keys, mz_cfg **out,
                      mz_err *err)
{
    FILE *f;
    char *buf;
    size_t len;
    mz_status rc;

    *out = NULL;
    if ((f = fopen(path, "rb")) == NULL)
        return mz_err_set(err, MZ_EIO, "%.*s: cannot open: %s", MZ_CFG_PATH_SHOWN, path,
                          strerror(errno));
    /* One byte more than the limit tells "too large" without trusting
     * st_size (pipes and /proc files have none). */
    if ((buf = malloc(MZ_CONFIG_MAX_BYTES + 1)) == NULL) {
        fclose(f);
        return mz_err_set(err, MZ_ENOMEM, "%.*s: out of memory", MZ_CFG_PATH_SHOWN, path);
    }
    len = fread(buf, 1, MZ_CONFIG_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = mz_err_set(err, MZ_EIO, "%.*s: cannot read: %s", MZ_CFG_PATH_SHOWN, path,
                        strerror(errno));
    } else if (len > MZ_CONFIG_MAX_BYTES) {
        rc = mz_err_set(err, MZ_ELIMIT, "%.*s: larger than the %d-byte limit of a config file",
                        MZ_CFG_PATH_SHOWN, path, MZ_CONFIG_MAX_BYTES);
    } else {
        rc = mz_cfg_parse(buf, len, path, keys, n_keys, out, err);
    }
    free(buf);
    fclose(f);
    return rc;
}
