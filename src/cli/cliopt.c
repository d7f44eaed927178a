/* Shared command-line parsing and error output (cliopt.h). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero/node.h"
#include "util/nearest.h"

/* getopt codes of the shared options: above any command's own. */
enum { MZ_CLI_K_NODE = 0x7001, MZ_CLI_K_JSON };

#define MZ_CLI_MAX_OPTS 48

const char *mz_cli_global_node;
bool mz_cli_global_json;

static const mz_cli *s_current;

static const mz_cli_opt s_common[] = {
    { "node", MZ_CLI_K_NODE, "URL", "the node's local API (default $MESHZERO_API, else\n"
                                    MZ_DEFAULT_API_URL ")" },
    { "json", MZ_CLI_K_JSON, NULL, "print JSON; errors as {\"error\":{\"code\",\"message\"}} "
                                   "on stderr" },
};

const mz_cli *mz_cli_current(void)
{
    return s_current;
}

static const struct { mz_status st; const char *code; } s_codes[] = {
    { MZ_OK, "ok" },                  { MZ_EINVAL, "bad_request" },
    { MZ_ENOMEM, "out_of_memory" },   { MZ_EPROTO, "protocol_error" },
    { MZ_ESIG, "bad_signature" },     { MZ_ELIMIT, "too_large" },
    { MZ_ENOTFOUND, "not_found" },    { MZ_EEXIST, "exists" },
    { MZ_EIO, "io_error" },           { MZ_ESTATE, "wrong_state" },
    { MZ_ETIMEOUT, "timeout" },       { MZ_EUNREACHABLE, "unreachable" },
};

const char *mz_cli_status_code(mz_status st)
{
    for (size_t i = 0; i < sizeof s_codes / sizeof s_codes[0]; i++)
        if (s_codes[i].st == st)
            return s_codes[i].code;
    return "failed";
}

static const char *s_name(const mz_cli *cli)
{
    return cli && cli->cmd ? cli->cmd->name : "";
}

/* One error on stderr, as text or as JSON. */
static void s_error(const mz_cli *cli, const char *code, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof msg, fmt, ap);
    if (cli != NULL && cli->json) {
        json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        fprintf(stderr, "%s\n", s ? s : msg);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr, "meshzero%s%s: %s\n", s_name(cli)[0] ? " " : "", s_name(cli), msg);
    }
}

/* The first line of the synopsis. */
static void s_usage_line(const mz_cli_cmd *cmd, FILE *f)
{
    const char *s = cmd->synopsis ? cmd->synopsis : "";
    int n = (int)strcspn(s, "\n");

    fprintf(f, "usage: meshzero %s%s%.*s\n", cmd->name, n ? " " : "", n, s);
}

int mz_cli_usage(const mz_cli *cli, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    s_error(cli, "usage", fmt, ap);
    va_end(ap);
    if (cli != NULL && cli->cmd != NULL && !cli->json) {
        s_usage_line(cli->cmd, stderr);
        fprintf(stderr, "Try 'meshzero %s --help' for more.\n", cli->cmd->name);
    }
    return MZ_EXIT_USAGE;
}

int mz_cli_fail(const mz_cli *cli, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    s_error(cli, code ? code : "failed", fmt, ap);
    va_end(ap);
    return MZ_EXIT_FAIL;
}

int mz_cli_fail_err(const mz_cli *cli, const mz_err *e)
{
    /* A link refused for policy comes back as ESTATE with "refused" in it. */
    const char *code = e->code == MZ_ESTATE && strstr(e->msg, "refused") ? "refused"
                                                                          : mz_cli_status_code(e->code);
    return mz_cli_fail(cli, code, "%s", e->msg);
}

/* "  --name ARG   help" with help's continuation lines indented. */
static void s_help_opt(const mz_cli_opt *o, FILE *f)
{
    char left[64];
    const char *h = o->help;

    snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    fprintf(f, "  %-22s", left);
    if (strlen(left) > 22)
        fprintf(f, "\n  %-22s", "");
    while (*h) {
        int n = (int)strcspn(h, "\n");
        fprintf(f, "%.*s\n", n, h);
        h += n;
        if (*h == '\n' && *++h)
            fprintf(f, "  %-22s", "");
    }
}

void mz_cli_help(const mz_cli_cmd *cmd, FILE *f)
{
    const char *s = cmd->synopsis ? cmd->synopsis : "", *ex = cmd->examples;

    fprintf(f, "usage: meshzero %s", cmd->name);
    while (*s) {                        /* later synopsis lines under the first */
        int n = (int)strcspn(s, "\n");
        fprintf(f, " %.*s\n", n, s);
        s += n;
        /* A line starting with a space continues the one before; others are
         * another form of the command. */
        if (*s == '\n' && *++s) {
            if (*s == ' ')
                fprintf(f, "%*s", (int)strlen(cmd->name) + 15, "");
            else
                fprintf(f, "       meshzero %s", cmd->name);
        }
    }
    if (cmd->synopsis == NULL || cmd->synopsis[0] == '\0')
        fputc('\n', f);
    fprintf(f, "\n%s\n\noptions:\n", cmd->about);
    for (const mz_cli_opt *o = cmd->opts; o && o->name; o++)
        s_help_opt(o, f);
    if (cmd->common & MZ_CLI_NODE)
        s_help_opt(&s_common[0], f);
    if (cmd->common & MZ_CLI_JSON)
        s_help_opt(&s_common[1], f);
    fprintf(f, "  %-22s%s\n", "-h, --help", "this text");
    if (ex != NULL && ex[0]) {
        fprintf(f, "\nexamples:\n");
        while (*ex) {
            int n = (int)strcspn(ex, "\n");
            fprintf(f, "  meshzero %.*s\n", n, ex);
            ex += n;
            if (*ex == '\n')
                ex++;
        }
    }
}

/* The option name nearest to a mistyped one, for the hint. */
static const char *s_nearest_opt(const struct option *longs, const char *word)
{
    const char *names[MZ_CLI_MAX_OPTS + 4];
    size_t n = 0;

    for (const struct option *o = longs; o->name && n < MZ_CLI_MAX_OPTS + 4; o++)
        names[n++] = o->name;
    return mz__nearest_name(word, names, n);
}

static int s_bad_option(mz_cli *cli, const struct option *longs, const char *tok, bool missing)
{
    char word[80];
    const char *near;

    if (missing)
        return mz_cli_usage(cli, "option '%s' needs a value", tok);
    snprintf(word, sizeof word, "%s", tok + strspn(tok, "-"));
    word[strcspn(word, "=")] = '\0';
    near = s_nearest_opt(longs, word);
    if (near != NULL)
        return mz_cli_usage(cli, "unknown option '%s' (did you mean --%s?)", tok, near);
    return mz_cli_usage(cli, "unknown option '%s'", tok);
}

/* getopt's table: the command's options, the shared ones it takes, help. */
static size_t s_longs(const mz_cli_cmd *cmd, struct option *longs)
{
    size_t n = 0;

    for (const mz_cli_opt *o = cmd->opts; o && o->name && n < MZ_CLI_MAX_OPTS; o++)
        longs[n++] = (struct option){ o->name, o->arg ? required_argument : no_argument,
                                      NULL, o->key };
    for (size_t i = 0; i < 2; i++)
        if (cmd->common & (i == 0 ? MZ_CLI_NODE : MZ_CLI_JSON))
            longs[n++] = (struct option){ s_common[i].name,
                                          s_common[i].arg ? required_argument : no_argument,
                                          NULL, s_common[i].key };
    longs[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    longs[n] = (struct option){ NULL, 0, NULL, 0 };
    return n;
}

int mz_cli_parse(mz_cli *cli, const mz_cli_cmd *cmd, int argc, char **argv, mz_cli_opt_fn fn,
                 void *ctx)
{
    struct option longs[MZ_CLI_MAX_OPTS + 4];
    int c, rc;

    memset(cli, 0, sizeof *cli);
    cli->cmd = cmd;
    cli->node = mz_cli_global_node;
    cli->json = mz_cli_global_json;
    s_current = cli;
    s_longs(cmd, longs);
    /* --json anywhere makes even an earlier usage error JSON. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if ((cmd->common & MZ_CLI_JSON) && strcmp(argv[i], "--json") == 0)
            cli->json = true;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, cmd->stop_at_args ? "+:h" : ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'h':
            mz_cli_help(cmd, stdout);
            return MZ_EXIT_OK;
        case MZ_CLI_K_NODE: cli->node = optarg; break;
        case MZ_CLI_K_JSON: cli->json = true; break;
        case ':': return s_bad_option(cli, longs, argv[optind - 1], true);
        case '?': return s_bad_option(cli, longs, argv[optind - 1], false);
        default:
            if (fn != NULL && (rc = fn(cli, c, optarg, ctx)) != 0)
                return rc;
        }
    }
    cli->argc = argc - optind;
    cli->argv = argv + optind;
    if (cli->node != NULL && !mz_cli_url_ok(cli->node, true))
        return mz_cli_usage(cli, "--node '%s' is not a node API URL: use ws://HOST:PORT, "
                            "wss://HOST:PORT or unix:/PATH", cli->node);
    if ((cmd->common & MZ_CLI_NOARGS) && cli->argc > 0)
        return mz_cli_usage(cli, "unexpected argument '%s'", cli->argv[0]);
    return MZ_CLI_GO;
}

void mz_cli_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s) {
        puts(s);
        free(s);
    }
}

bool mz_cli_meta_arg(json_t *obj, char *arg)
{
    char *eq = strchr(arg, '=');
    json_t *v;

    if (eq == NULL || eq == arg)
        return false;
    *eq = '\0';
    /* Numbers stay strings ("version=1.0" is "1.0"); objects, arrays, quoted
     * strings, true, false and null are read as JSON. */
    v = eq[1] && strchr("{[\"tfn", eq[1]) ? json_loads(eq + 1, JSON_DECODE_ANY, NULL) : NULL;
    json_object_set_new(obj, arg, v ? v : json_string(eq + 1));
    *eq = '=';
    return true;
}

bool mz_cli_uint_arg(const char *s, long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > max)
        return false;
    *out = v;
    return true;
}

static void s_sub_help(const char *cmd, const char *about, const mz_cli_sub *subs, FILE *f)
{
    fprintf(f, "usage: meshzero %s SUBCOMMAND [OPTIONS]\n\n%s\n\nsubcommands:\n", cmd, about);
    for (const mz_cli_sub *s = subs; s->name; s++)
        fprintf(f, "  %-8s %s\n", s->name, s->summary);
    fprintf(f, "\n'meshzero %s SUBCOMMAND --help' describes one.\n", cmd);
}

int mz_cli_subcommand(const char *cmd, const char *about, const mz_cli_sub *subs, int argc,
                      char **argv)
{
    const char *names[16];
    const char *near;
    size_t n = 0;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        s_sub_help(cmd, about, subs, stdout);
        return MZ_EXIT_OK;
    }
    for (const mz_cli_sub *s = subs; argc >= 2 && s->name; s++) {
        if (strcmp(argv[1], s->name) == 0)
            return s->main(argc - 1, argv + 1);
        if (n < sizeof names / sizeof names[0])
            names[n++] = s->name;
    }
    if (argc < 2) {
        fprintf(stderr, "meshzero %s: need a subcommand\n", cmd);
    } else {
        near = mz__nearest_name(argv[1], names, n);
        fprintf(stderr, "meshzero %s: unknown subcommand '%s'%s%s%s\n", cmd, argv[1],
                near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
    }
    fprintf(stderr, "usage: meshzero %s SUBCOMMAND [OPTIONS]\n"
            "Try 'meshzero %s --help' for the list of subcommands.\n", cmd, cmd);
    return MZ_EXIT_USAGE;
}

bool mz_cli_url_ok(const char *url, bool unix_ok)
{
    return strncmp(url, "ws://", 5) == 0 || strncmp(url, "wss://", 6) == 0 ||
           (unix_ok && strncmp(url, "unix:", 5) == 0);
}
