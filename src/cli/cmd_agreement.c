/* meshzero agreement create|sign|show|usage: agreements from the command
 * line (docs/AGREEMENTS.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero.h"
#include "meshzero/agreement.h"

#define DAY_MS (86400 * (int64_t)1000)
/* Default validity of a new agreement when neither --expires nor --days. */
#define DEFAULT_DAYS 30
/* Longest validity --days accepts (a century). */
#define MAX_DAYS 36500

static bool s_count_arg(const char *s, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

/* Reads a JSON document from path ("-": stdin). Returns new; NULL with
 * the reason printed. */
static json_t *s_read_doc(const char *sub, const char *path)
{
    json_error_t je;
    json_t *v;

    if (strcmp(path, "-") == 0)
        v = json_loadf(stdin, JSON_REJECT_DUPLICATES, &je);
    else
        v = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL)
        fprintf(stderr, "meshzero agreement %s: %s: %s (line %d)\n", sub, path, je.text,
                je.line);
    return v;
}

/* Writes doc to path ("-": stdout) as indented JSON, through a temp file
 * renamed into place, so --out may name the --in file. */
static bool s_write_doc(const char *sub, const char *path, const json_t *doc)
{
    char *tmp = NULL, *text = json_dumps(doc, JSON_INDENT(2));
    size_t len = strlen(path) + sizeof ".XXXXXX";
    mode_t mask;
    FILE *fp = NULL;
    bool ok = false;
    int fd;

    if (text == NULL) {
        fprintf(stderr, "meshzero agreement %s: out of memory\n", sub);
        return false;
    }
    if (strcmp(path, "-") == 0) {
        ok = puts(text) >= 0 && fflush(stdout) == 0;
        free(text);
        return ok;
    }
    if ((tmp = malloc(len)) == NULL) {
        fprintf(stderr, "meshzero agreement %s: out of memory\n", sub);
        free(text);
        return false;
    }
    snprintf(tmp, len, "%s.XXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        fprintf(stderr, "meshzero agreement %s: creating %s: %s\n", sub, tmp, strerror(errno));
        goto done;
    }
    /* Not a secret: the usual mode for a new file (mkstemp made it 0600). */
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || (fp = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "meshzero agreement %s: %s: %s\n", sub, tmp, strerror(errno));
        close(fd);
        goto done;
    }
    if (fputs(text, fp) < 0 || fputc('\n', fp) == EOF || fflush(fp) != 0
        || fsync(fileno(fp)) != 0) {
        fprintf(stderr, "meshzero agreement %s: writing %s: %s\n", sub, tmp, strerror(errno));
        fclose(fp);
        goto done;
    }
    if (fclose(fp) != 0) {
        fprintf(stderr, "meshzero agreement %s: writing %s: %s\n", sub, tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "meshzero agreement %s: renaming %s to %s: %s\n", sub, tmp, path,
                strerror(errno));
        goto done;
    }
    ok = true;
done:
    if (!ok && fd >= 0)
        unlink(tmp);
    free(tmp);
    free(text);
    return ok;
}

/* Loads a key file, or DIR/identity.key when path is a directory. Does not
 * create one. Returns new; NULL with the reason printed. */
static mz_identity *s_load_key(const char *sub, const char *path)
{
    char *file = NULL;
    mz_identity *id = NULL;
    struct stat st;
    mz_err e;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t len = strlen(path) + sizeof "/identity.key";
        if ((file = malloc(len)) == NULL) {
            fprintf(stderr, "meshzero agreement %s: out of memory\n", sub);
            return NULL;
        }
        snprintf(file, len, "%s/identity.key", path);
    }
    if (mz_identity_load_file(file ? file : path, &id, &e) != MZ_OK) {
        fprintf(stderr, "meshzero agreement %s: %s\n", sub, e.msg);
        id = NULL;
    }
    free(file);
    return id;
}

static void s_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);

    if (s != NULL)
        puts(s);
    free(s);
}

/* ---- create ------------------------------------------------------------- */

typedef struct create_args {
    mz_agreement_spec spec;
    const char *methods[MZ_AGREEMENT_METHODS_MAX + 1];
    size_t n_methods;
    const char *key, *out;
    int64_t days;
    bool have_nb, have_exp, force;
} create_args;

static int s_create_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    create_args *a = ctx;

    switch (key) {
    case 'k': a->key = arg; break;
    case 'c': a->spec.consumer = arg; break;
    case 'r': a->spec.resource_id = arg; break;
    case 'i': a->spec.agreement_id = arg; break;
    case 'o': a->out = arg; break;
    case 'f': a->force = true; break;
    case 'm':
        if (a->n_methods == MZ_AGREEMENT_METHODS_MAX)
            return mz_cli_usage(cli, "at most %d methods", MZ_AGREEMENT_METHODS_MAX);
        a->methods[a->n_methods++] = arg;
        break;
    case 'p':
        if (!s_count_arg(arg, INT64_MAX, &a->spec.requests_per_day))
            return mz_cli_usage(cli, "--per-day needs a positive number, not '%s'", arg);
        break;
    case 't':
        if (!s_count_arg(arg, INT64_MAX, &a->spec.requests_total))
            return mz_cli_usage(cli, "--total needs a positive number, not '%s'", arg);
        break;
    case 'b':
        if (!mz_time_parse(arg, &a->spec.not_before_ms))
            return mz_cli_usage(cli, "--not-before needs an RFC 3339 date-time "
                                "(2026-03-01T00:00:00Z), not '%s'", arg);
        a->have_nb = true;
        break;
    case 'e':
        if (!mz_time_parse(arg, &a->spec.expires_at_ms))
            return mz_cli_usage(cli, "--expires needs an RFC 3339 date-time "
                                "(2026-04-01T00:00:00Z), not '%s'", arg);
        a->have_exp = true;
        break;
    case 'd':
        if (!s_count_arg(arg, MAX_DAYS, &a->days))
            return mz_cli_usage(cli, "--days needs a number of days in 1-36500, not '%s'", arg);
        break;
    }
    return 0;
}

/* Checks what the options alone cannot: required ones, consistency. */
static int s_create_check(const mz_cli *cli, create_args *a)
{
    struct stat sb;

    if (a->key == NULL || a->spec.consumer == NULL || a->spec.resource_id == NULL ||
        a->n_methods == 0 || a->out == NULL)
        return mz_cli_usage(cli, "need --provider-key, --consumer, --resource, at least one "
                            "--method and --out");
    if (a->have_exp && a->days > 0)
        return mz_cli_usage(cli, "give --expires or --days, not both");
    if (!mz_id_valid(a->spec.consumer))
        return mz_cli_usage(cli, "--consumer needs a node id (64 lowercase hex characters), "
                            "not '%s'", a->spec.consumer);
    if (!a->have_nb)
        a->spec.not_before_ms = mz_now_ms();
    if (!a->have_exp)
        a->spec.expires_at_ms = a->spec.not_before_ms +
                                (a->days > 0 ? a->days : DEFAULT_DAYS) * DAY_MS;
    if (a->spec.expires_at_ms <= a->spec.not_before_ms)
        return mz_cli_usage(cli, "the expiry must be later than --not-before");
    if (!a->force && strcmp(a->out, "-") != 0 && stat(a->out, &sb) == 0)
        return mz_cli_fail(cli, "exists", "%s exists (a signed agreement, perhaps); give "
                           "--force to overwrite it", a->out);
    a->methods[a->n_methods] = NULL;
    a->spec.methods = a->methods;
    return 0;
}

/* Signs and writes the agreement a describes. */
static int s_create_run(const mz_cli *cli, create_args *a)
{
    const char *out = a->out;
    mz_identity *provider;
    json_t *doc = NULL;
    mz_err e;
    int rc;

    if ((provider = s_load_key("create", a->key)) == NULL)
        return MZ_EXIT_FAIL;
    rc = mz_agreement_create(&a->spec, provider, &doc, &e);
    mz_identity_free(provider);
    if (rc != MZ_OK) {
        return rc == MZ_EINVAL ? mz_cli_usage(cli, "%s", e.msg) : mz_cli_fail_err(cli, &e);
    }
    if (!s_write_doc("create", out, doc)) {
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    if (strcmp(out, "-") != 0) {
        const char *id = json_string_value(json_object_get(doc, "agreement_id"));
        if (cli->json) {
            json_t *o = json_pack("{s:s,s:s}", "agreement_id", id, "out", out);
            s_print_json(o);
            json_decref(o);
        } else {
            printf("agreement %s written to %s; the consumer signs it with 'meshzero "
                   "agreement sign'\n", id, out);
        }
    }
    json_decref(doc);
    return MZ_EXIT_OK;
}

static int s_create(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "provider-key", 'k', "FILE", "the resource's owner key (meshzero keygen), or a data\n"
                                       "directory whose identity.key owns it (required)" },
        { "consumer", 'c', "NODE_ID", "the node that may call (64 hex; 'meshzero id' prints it)" },
        { "resource", 'r', "ID", "the resource (required)" },
        { "method", 'm', "M", "a method it may call (required; repeat for more)" },
        { "per-day", 'p', "N", "at most N calls per UTC day (default: no such limit)" },
        { "total", 't', "N", "at most N calls in all (default: no such limit)" },
        { "not-before", 'b', "T", "valid from T, RFC 3339 (default: now)" },
        { "expires", 'e', "T", "valid until T, RFC 3339 (exclusive)" },
        { "days", 'd', "N", "valid for N days from --not-before (default 30)" },
        { "id", 'i', "ID", "agreement id, 1-64 of [A-Za-z0-9._:-] (default: agr-<random>)" },
        { "out", 'o', "FILE", "where to write it ('-': standard output; required)" },
        { "force", 'f', NULL, "overwrite FILE when it exists (default: refuse)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "agreement create", "--provider-key FILE --consumer NODE_ID --resource ID\n"
        " --method M [--method M]... [--per-day N] [--total N] [--not-before T]\n"
        " [--expires T | --days N] [--id ID] --out FILE [--force]",
        "Writes a new agreement signed by the provider: the owner key of resource ID lets\n"
        "node NODE_ID call the given methods. The consumer then counter-signs it with\n"
        "'meshzero agreement sign'. With --json prints {\"agreement_id\", \"out\"}.",
        opts, MZ_CLI_JSON | MZ_CLI_NOARGS,
        "agreement create --provider-key owner.key --consumer 5f1c... --resource db1 \\\n"
        "      --method query --per-day 100 --out db1.agr", false };
    create_args a;
    mz_cli cli;
    int rc;

    memset(&a, 0, sizeof a);
    if ((rc = mz_cli_parse(&cli, &cmd, argc, argv, s_create_opt, &a)) != MZ_CLI_GO)
        return rc;
    if ((rc = s_create_check(&cli, &a)) != 0)
        return rc;
    return s_create_run(&cli, &a);
}

/* ---- sign --------------------------------------------------------------- */

static int s_sign_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    const char **v = ctx;       /* key, data, in, out */

    (void)cli;
    v[key == 'k' ? 0 : key == 'd' ? 1 : key == 'i' ? 2 : 3] = arg;
    return 0;
}

static int s_sign(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "key", 'k', "FILE_OR_DIR", "a key file, or a data directory (its identity.key)" },
        { "data", 'd', "DIR", "the consumer node's data directory (default as for\n"
                              "'meshzero node'); the key is never created here" },
        { "in", 'i', "FILE", "the provider-signed agreement ('-': standard input; required)" },
        { "out", 'o', "FILE", "where to write the signed one (may be --in; '-': standard\n"
                              "output; required)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "agreement sign", "[--key FILE_OR_DIR | --data DIR] --in FILE --out FILE",
        "Counter-signs an agreement as its consumer, after checking the provider's signature\n"
        "and that the key is the agreement's consumer. The result is what 'meshzero exec\n"
        "--agreement FILE' sends. With --json prints {\"agreement_id\", \"out\"}.",
        opts, MZ_CLI_JSON | MZ_CLI_NOARGS,
        "agreement sign --data /tmp/a --in db1.agr --out db1.agr\n"
        "agreement sign --key consumer.key --in - --out signed.agr", false };
    const char *v[4] = { NULL, NULL, NULL, NULL };
    char buf[512];
    mz_identity *consumer;
    json_t *doc;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, s_sign_opt, v);
    const char *key = v[0], *data = v[1], *in = v[2], *out = v[3];
    bool json = cli.json;

    if (rc != MZ_CLI_GO)
        return rc;
    if (in == NULL || out == NULL)
        return mz_cli_usage(&cli, "need --in FILE and --out FILE");
    if (key != NULL && data != NULL)
        return mz_cli_usage(&cli, "give --key or --data, not both");
    if (key == NULL)
        key = data != NULL ? data : mz_cli_default_data_dir(buf, sizeof buf);
    if ((doc = s_read_doc("sign", in)) == NULL)
        return MZ_EXIT_FAIL;
    if ((consumer = s_load_key("sign", key)) == NULL) {
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    rc = mz_agreement_countersign(doc, consumer, &e);
    mz_identity_free(consumer);
    if (rc != MZ_OK) {
        fprintf(stderr, "meshzero agreement sign: %s\n", e.msg);
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    if (!s_write_doc("sign", out, doc)) {
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    if (strcmp(out, "-") != 0) {
        const char *id = json_string_value(json_object_get(doc, "agreement_id"));
        if (json) {
            json_t *o = json_pack("{s:s,s:s}", "agreement_id", id, "out", out);
            s_print_json(o);
            json_decref(o);
        } else {
            printf("agreement %s counter-signed into %s\n", id, out);
        }
    }
    json_decref(doc);
    return MZ_EXIT_OK;
}

/* ---- show --------------------------------------------------------------- */

/* "valid", "invalid" or "missing". */
static const char *s_sig_state(const json_t *doc, const char *field,
                               mz_status (*verify)(const json_t *, mz_err *))
{
    if (json_object_get(doc, field) == NULL)
        return "missing";
    return verify(doc, NULL) == MZ_OK ? "valid" : "invalid";
}

static int s_show(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "agreement show", "FILE",
        "Prints an agreement's fields, whether each signature verifies, and whether it is\n"
        "in its validity window now. Exits 1 when the document is malformed or a signature\n"
        "present does not verify (a missing one is shown as missing). FILE '-' is standard\n"
        "input. With --json prints {\"agreement\", \"provider_signature\",\n"
        "\"consumer_signature\", \"window\"} (or {\"error\"} when malformed).",
        NULL, MZ_CLI_JSON, "agreement show db1.agr\nagreement show --json db1.agr", false };
    const char *psig, *csig, *window, *id, *key;
    const json_t *limits, *v;
    int64_t nb = 0, exp = 0, now = mz_now_ms();
    json_t *doc;
    size_t i;
    mz_cli cli;
    mz_err e;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);
    bool json = cli.json;
    char **args = cli.argv;

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need exactly one FILE");
    if ((doc = s_read_doc("show", args[0])) == NULL)
        return MZ_EXIT_FAIL;
    if (mz_agreement_validate(doc, false, &e) != MZ_OK) {
        if (json) {
            json_t *o = json_pack("{s:s}", "error", e.msg);
            s_print_json(o);
            json_decref(o);
        }
        fprintf(stderr, "meshzero agreement show: %s: %s\n", args[0], e.msg);
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    psig = s_sig_state(doc, "provider_signature", mz_agreement_verify_provider);
    csig = s_sig_state(doc, "consumer_signature", mz_agreement_verify_consumer);
    (void)mz_time_parse(json_string_value(json_object_get(doc, "not_before")), &nb);
    (void)mz_time_parse(json_string_value(json_object_get(doc, "expires_at")), &exp);
    window = now < nb ? "not_yet_valid" : now >= exp ? "expired" : "active";
    id = json_string_value(json_object_get(doc, "agreement_id"));

    if (json) {
        json_t *o = json_pack("{s:O,s:s,s:s,s:s}", "agreement", doc, "provider_signature", psig,
                              "consumer_signature", csig, "window", window);
        s_print_json(o);
        json_decref(o);
    } else {
        printf("agreement           %s\n", id);
        printf("provider            %s\n", json_string_value(json_object_get(doc, "provider")));
        printf("consumer            %s\n", json_string_value(json_object_get(doc, "consumer")));
        printf("resource            %s\n",
               json_string_value(json_object_get(doc, "resource_id")));
        printf("methods            ");
        json_array_foreach(json_object_get(doc, "methods"), i, v)
            printf("%s%s", i ? ", " : " ", json_string_value(v));
        printf("\nlimits             ");
        limits = json_object_get(doc, "limits");
        if (json_object_size(limits) == 0)
            printf(" none");
        json_object_foreach((json_t *)limits, key, v)
            printf(" %s=%lld", key, (long long)json_integer_value(v));
        printf("\nnot_before          %s\n",
               json_string_value(json_object_get(doc, "not_before")));
        printf("expires_at          %s\n",
               json_string_value(json_object_get(doc, "expires_at")));
        printf("window              %s\n", window);
        printf("provider_signature  %s\n", psig);
        printf("consumer_signature  %s\n", csig);
    }
    if (strcmp(psig, "invalid") == 0 || strcmp(csig, "invalid") == 0) {
        fprintf(stderr, "meshzero agreement show: agreement %s: the %s signature does not "
                "verify\n", id, strcmp(psig, "invalid") == 0 ? "provider" : "consumer");
        json_decref(doc);
        return MZ_EXIT_FAIL;
    }
    json_decref(doc);
    return MZ_EXIT_OK;
}

/* ---- usage -------------------------------------------------------------- */

static int s_usage(int argc, char **argv)
{
    static const mz_cli_cmd cmd = {
        "agreement usage", "ID",
        "Prints how many calls the node has counted under agreement ID: in all, and today\n"
        "(UTC). The node counts the agreements of the resources it hosts. With --json prints\n"
        "{\"agreement_id\", \"day\", \"total\", \"today\", \"last_used\", \"providers\"}.",
        NULL, MZ_CLI_NODE | MZ_CLI_JSON,
        "agreement usage agr-1f2e3d --node ws://127.0.0.1:9103", false };
    const char *id, *last;
    json_t *res, *p, *list;
    size_t i;
    mz_cli cli;
    int rc = mz_cli_parse(&cli, &cmd, argc, argv, NULL, NULL);
    const char *node = cli.node;
    bool json = cli.json;

    if (rc != MZ_CLI_GO)
        return rc;
    if (cli.argc != 1)
        return mz_cli_usage(&cli, "need exactly one agreement ID");
    id = cli.argv[0];
    res = mz_cli_call(node, "agreement_usage", json_pack("{s:s}", "agreement_id", id), 10000);
    if (res == NULL)
        return MZ_EXIT_FAIL;
    if (json) {
        s_print_json(res);
    } else {
        last = json_string_value(json_object_get(res, "last_used"));
        printf("agreement %s: %lld in all, %lld today (%s UTC), last used %s\n", id,
               (long long)json_integer_value(json_object_get(res, "total")),
               (long long)json_integer_value(json_object_get(res, "today")),
               json_string_value(json_object_get(res, "day")), last ? last : "never");
        list = json_object_get(res, "providers");
        if (json_array_size(list) > 1)
            json_array_foreach(list, i, p)
                printf("  provider %.12s... consumer %.12s...: %lld in all, %lld today\n",
                       json_string_value(json_object_get(p, "provider")),
                       json_string_value(json_object_get(p, "consumer")),
                       (long long)json_integer_value(json_object_get(p, "total")),
                       (long long)json_integer_value(json_object_get(p, "today")));
    }
    json_decref(res);
    return MZ_EXIT_OK;
}

/* ---- the command -------------------------------------------------------- */

static const mz_cli_sub s_subs[] = {
    { "create", s_create, "write a new agreement signed by the resource's owner key" },
    { "sign",   s_sign,   "counter-sign an agreement as its consumer" },
    { "show",   s_show,   "print an agreement and check its signatures" },
    { "usage",  s_usage,  "ask a node how many calls an agreement has used" },
    { NULL, NULL, NULL },
};

int cmd_agreement_main(int argc, char **argv)
{
    return mz_cli_subcommand("agreement", "Agreements let a resource's owner grant one node "
                             "calls to some of its methods,\nwithin a time window and usage "
                             "limits (docs/AGREEMENTS.md).", s_subs, argc, argv);
}
