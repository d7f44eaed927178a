/* meshzero agreement create|sign|show|usage: agreements from the command
 * line (docs/AGREEMENTS.md). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "meshzero.h"
#include "meshzero/agreement.h"

#define DAY_MS (86400 * (int64_t)1000)
/* Default validity of a new agreement when neither --expires nor --days. */
#define DEFAULT_DAYS 30
/* Longest validity --days accepts (a century). */
#define MAX_DAYS 36500

/* A usage error: message, usage text on stderr, exit 2. */
static int s_misuse(const char *sub, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "meshzero agreement %s: ", sub);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return MZ_EXIT_USAGE;
}

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

static int s_create(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero agreement create --provider-key FILE --consumer NODE_ID --resource ID\n"
        "           --method M [--method M]... [--per-day N] [--total N] [--not-before T]\n"
        "           [--expires T | --days N] [--id ID] --out FILE [--json]\n\n"
        "Writes a new agreement signed by the provider: the owner key of resource ID lets\n"
        "node NODE_ID call the given methods. The consumer then counter-signs it with\n"
        "'meshzero agreement sign'.\n"
        "  --provider-key FILE  the resource's owner key (meshzero keygen), or a data\n"
        "                       directory whose identity.key owns it\n"
        "  --consumer NODE_ID   the node that may call (64 hex; 'meshzero id' prints it)\n"
        "  --resource ID        the resource\n"
        "  --method M           a method it may call (repeat for more)\n"
        "  --per-day N          at most N calls per UTC day (default: no such limit)\n"
        "  --total N            at most N calls in all (default: no such limit)\n"
        "  --not-before T       valid from T, RFC 3339 (default: now)\n"
        "  --expires T          valid until T, RFC 3339 (exclusive)\n"
        "  --days N             valid for N days from --not-before (default 30)\n"
        "  --id ID              agreement id, 1-64 of [A-Za-z0-9._:-] (default: agr-<random>)\n"
        "  --out FILE           where to write it ('-': standard output)\n"
        "  --json               print {\"agreement_id\", \"out\"}\n"
        "  -h, --help           this text\n";
    static const struct option longs[] = {
        { "provider-key", required_argument, NULL, 'k' },
        { "consumer", required_argument, NULL, 'c' },
        { "resource", required_argument, NULL, 'r' },
        { "method", required_argument, NULL, 'm' },
        { "per-day", required_argument, NULL, 'p' },
        { "total", required_argument, NULL, 't' },
        { "not-before", required_argument, NULL, 'b' },
        { "expires", required_argument, NULL, 'e' },
        { "days", required_argument, NULL, 'd' },
        { "id", required_argument, NULL, 'i' },
        { "out", required_argument, NULL, 'o' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    const char *methods[MZ_AGREEMENT_METHODS_MAX + 1];
    const char *key = NULL, *out = NULL;
    mz_agreement_spec spec;
    size_t n_methods = 0;
    int64_t days = 0;
    bool json = false, have_nb = false, have_exp = false;
    mz_identity *provider;
    json_t *doc = NULL;
    mz_err e;
    int ch, rc;

    memset(&spec, 0, sizeof spec);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'k': key = optarg; break;
        case 'c': spec.consumer = optarg; break;
        case 'r': spec.resource_id = optarg; break;
        case 'm':
            if (n_methods == MZ_AGREEMENT_METHODS_MAX)
                return s_misuse("create", usage, "at most %s methods", "64");
            methods[n_methods++] = optarg;
            break;
        case 'p':
            if (!s_count_arg(optarg, INT64_MAX, &spec.requests_per_day))
                return s_misuse("create", usage, "--per-day needs a positive number, not '%s'",
                                optarg);
            break;
        case 't':
            if (!s_count_arg(optarg, INT64_MAX, &spec.requests_total))
                return s_misuse("create", usage, "--total needs a positive number, not '%s'",
                                optarg);
            break;
        case 'b':
            if (!mz_time_parse(optarg, &spec.not_before_ms))
                return s_misuse("create", usage, "--not-before needs an RFC 3339 date-time "
                                "(2026-03-01T00:00:00Z), not '%s'", optarg);
            have_nb = true;
            break;
        case 'e':
            if (!mz_time_parse(optarg, &spec.expires_at_ms))
                return s_misuse("create", usage, "--expires needs an RFC 3339 date-time "
                                "(2026-04-01T00:00:00Z), not '%s'", optarg);
            have_exp = true;
            break;
        case 'd':
            if (!s_count_arg(optarg, MAX_DAYS, &days))
                return s_misuse("create", usage, "--days needs a number of days in 1-36500, "
                                "not '%s'", optarg);
            break;
        case 'i': spec.agreement_id = optarg; break;
        case 'o': out = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(usage, stdout); return MZ_EXIT_OK;
        default: fputs(usage, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return s_misuse("create", usage, "unexpected argument '%s'", argv[optind]);
    if (key == NULL || spec.consumer == NULL || spec.resource_id == NULL || n_methods == 0
        || out == NULL)
        return s_misuse("create", usage, "%s", "need --provider-key, --consumer, --resource, "
                        "at least one --method and --out");
    if (have_exp && days > 0)
        return s_misuse("create", usage, "%s", "give --expires or --days, not both");
    if (!mz_id_valid(spec.consumer))
        return s_misuse("create", usage, "--consumer needs a node id (64 lowercase hex "
                        "characters), not '%s'", spec.consumer);
    if (!have_nb)
        spec.not_before_ms = mz_now_ms();
    if (!have_exp)
        spec.expires_at_ms = spec.not_before_ms + (days > 0 ? days : DEFAULT_DAYS) * DAY_MS;
    if (spec.expires_at_ms <= spec.not_before_ms)
        return s_misuse("create", usage, "%s", "the expiry must be later than --not-before");
    methods[n_methods] = NULL;
    spec.methods = methods;

    if ((provider = s_load_key("create", key)) == NULL)
        return MZ_EXIT_FAIL;
    rc = mz_agreement_create(&spec, provider, &doc, &e);
    mz_identity_free(provider);
    if (rc != MZ_OK) {
        fprintf(stderr, "meshzero agreement create: %s\n", e.msg);
        return rc == MZ_EINVAL ? MZ_EXIT_USAGE : MZ_EXIT_FAIL;
    }
    if (!s_write_doc("create", out, doc)) {
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
            printf("agreement %s written to %s; the consumer signs it with 'meshzero "
                   "agreement sign'\n", id, out);
        }
    }
    json_decref(doc);
    return MZ_EXIT_OK;
}

/* ---- sign --------------------------------------------------------------- */

static int s_sign(int argc, char **argv)
{
    static const char usage[] =
        "usage: meshzero agreement sign [--key FILE_OR_DIR | --data DIR] --in FILE --out FILE\n"
        "           [--json]\n\n"
        "Counter-signs an agreement as its consumer, after checking the provider's signature\n"
        "and that the key is the agreement's consumer. The result is what 'meshzero exec\n"
        "--agreement FILE' sends.\n"
        "  --key FILE_OR_DIR  a key file, or a data directory (its identity.key)\n"
        "  --data DIR         the consumer node's data directory (default as for\n"
        "                     'meshzero node'); the key is never created here\n"
        "  --in FILE          the provider-signed agreement ('-': standard input)\n"
        "  --out FILE         where to write the signed one (may be --in; '-': standard output)\n"
        "  --json             print {\"agreement_id\", \"out\"}\n"
        "  -h, --help         this text\n";
    static const struct option longs[] = {
        { "key", required_argument, NULL, 'k' }, { "data", required_argument, NULL, 'd' },
        { "in", required_argument, NULL, 'i' }, { "out", required_argument, NULL, 'o' },
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    const char *key = NULL, *data = NULL, *in = NULL, *out = NULL;
    char buf[512];
    bool json = false;
    mz_identity *consumer;
    json_t *doc;
    mz_err e;
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'k': key = optarg; break;
        case 'd': data = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(usage, stdout); return MZ_EXIT_OK;
        default: fputs(usage, stderr); return MZ_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return s_misuse("sign", usage, "unexpected argument '%s'", argv[optind]);
    if (in == NULL || out == NULL)
        return s_misuse("sign", usage, "%s", "need --in FILE and --out FILE");
    if (key != NULL && data != NULL)
        return s_misuse("sign", usage, "%s", "give --key or --data, not both");
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
    static const char usage[] =
        "usage: meshzero agreement show FILE [--json]\n\n"
        "Prints an agreement's fields, whether each signature verifies, and whether it is\n"
        "in its validity window now. Exits 1 when the document is malformed or a signature\n"
        "present does not verify (a missing one is shown as missing).\n"
        "  FILE           the agreement ('-': standard input)\n"
        "  --json         print {\"agreement\", \"provider_signature\", \"consumer_signature\",\n"
        "                 \"window\"} (or {\"error\"} when malformed)\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    const char *psig, *csig, *window, *id, *key;
    const json_t *limits, *v;
    int64_t nb = 0, exp = 0, now = mz_now_ms();
    bool json = false;
    json_t *doc;
    size_t i;
    mz_err e;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'j') json = true;
        else if (ch == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (argc - optind != 1)
        return s_misuse("show", usage, "%s", "need exactly one FILE");
    if ((doc = s_read_doc("show", argv[optind])) == NULL)
        return MZ_EXIT_FAIL;
    if (mz_agreement_validate(doc, false, &e) != MZ_OK) {
        if (json) {
            json_t *o = json_pack("{s:s}", "error", e.msg);
            s_print_json(o);
            json_decref(o);
        }
        fprintf(stderr, "meshzero agreement show: %s: %s\n", argv[optind], e.msg);
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
    static const char usage[] =
        "usage: meshzero agreement usage ID [--json] [--node URL]\n\n"
        "Prints how many calls the node has counted under agreement ID: in all, and today\n"
        "(UTC). The node counts the agreements of the resources it hosts.\n"
        "  --json         print {\"agreement_id\", \"day\", \"total\", \"today\", \"last_used\",\n"
        "                 \"providers\"}\n"
        "  --node URL     the node's local API (default $MESHZERO_API or ws://127.0.0.1:8766)\n"
        "  -h, --help     this text\n";
    static const struct option longs[] = {
        { "node", required_argument, NULL, 'n' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    const char *node = NULL, *id, *last;
    bool json = false;
    json_t *res, *p, *list;
    size_t i;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'n') node = optarg;
        else if (ch == 'j') json = true;
        else if (ch == 'h') { fputs(usage, stdout); return MZ_EXIT_OK; }
        else { fputs(usage, stderr); return MZ_EXIT_USAGE; }
    }
    if (argc - optind != 1)
        return s_misuse("usage", usage, "%s", "need exactly one agreement ID");
    id = argv[optind];
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

static const struct mz_subcmd {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} s_subs[] = {
    { "create", s_create, "write a new agreement signed by the resource's owner key" },
    { "sign",   s_sign,   "counter-sign an agreement as its consumer" },
    { "show",   s_show,   "print an agreement and check its signatures" },
    { "usage",  s_usage,  "ask a node how many calls an agreement has used" },
};

static void s_help(FILE *f)
{
    fprintf(f, "usage: meshzero agreement SUBCOMMAND [OPTIONS]\n\n"
               "Agreements let a resource's owner grant one node calls to some of its methods,\n"
               "within a time window and usage limits (docs/AGREEMENTS.md).\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof s_subs / sizeof s_subs[0]; i++)
        fprintf(f, "  %-8s %s\n", s_subs[i].name, s_subs[i].summary);
    fprintf(f, "\n'meshzero agreement SUBCOMMAND --help' describes one.\n");
}

int cmd_agreement_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "meshzero agreement: need a subcommand\n");
        s_help(stderr);
        return MZ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0) {
        s_help(stdout);
        return MZ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof s_subs / sizeof s_subs[0]; i++)
        if (strcmp(argv[1], s_subs[i].name) == 0)
            return s_subs[i].main(argc - 1, argv + 1);
    fprintf(stderr, "meshzero agreement: unknown subcommand '%s'\n", argv[1]);
    s_help(stderr);
    return MZ_EXIT_USAGE;
}
