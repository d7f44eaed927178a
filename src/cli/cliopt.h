/* Option parsing shared by every command: each command describes itself in
 * one mz_cli_cmd (synopsis, text, its own options, examples), and
 * mz_cli_parse handles what all commands share -- --node URL, --json,
 * -h/--help, unknown options, missing values -- and builds the --help text
 * from the description, so every command's help has the same shape
 * (usage, text, options with their defaults, examples). Errors go through
 * mz_cli_usage (exit 2) and mz_cli_fail (exit 1): "meshzero CMD: ..." on
 * stderr, or {"error":{"code","message"}} with --json. */
#ifndef MZ_CLI_CLIOPT_H
#define MZ_CLI_CLIOPT_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "meshzero/err.h"

/* The shared options a command takes (mz_cli_cmd.common). */
/* Common options a command takes, and MZ_CLI_NOARGS: it takes no argument
 * besides its options (one is a usage error). */
enum { MZ_CLI_NODE = 1u, MZ_CLI_JSON = 2u, MZ_CLI_NOARGS = 4u };

/* One option of a command. key is what mz_cli_opt_fn receives: a
 * character or a code above 0x100, never 'h' or the MZ_CLI_K_* values. */
typedef struct mz_cli_opt {
    const char *name;           /* the long name, without "--"; NULL ends a table */
    int key;
    const char *arg;            /* NULL: a flag; else the value's name in help ("URL") */
    const char *help;           /* what it does, with its default; may hold '\n' */
} mz_cli_opt;

typedef struct mz_cli_cmd {
    const char *name;           /* "register", "agreement create" */
    const char *synopsis;       /* what follows the name in the usage line(s) */
    const char *about;          /* what the command does */
    const mz_cli_opt *opts;     /* its own options (NULL: none) */
    unsigned common;            /* MZ_CLI_NODE | MZ_CLI_JSON */
    const char *examples;       /* one example a line, without "meshzero " */
    bool stop_at_args;          /* options end at the first argument (a command follows) */
} mz_cli_cmd;

/* A parsed command line. */
typedef struct mz_cli {
    const mz_cli_cmd *cmd;
    const char *node;           /* --node, else the global one, else NULL (the default) */
    bool json;
    int argc;                   /* the arguments left (not options) */
    char **argv;
} mz_cli;

/* Options given before the command (`meshzero --node URL status`); main
 * sets them, mz_cli_parse starts from them. */
extern const char *mz_cli_global_node;
extern bool mz_cli_global_json;

/* Called for each of the command's own options (arg NULL for a flag).
 * Returns 0, or an exit code after printing why (mz_cli_usage). */
typedef int (*mz_cli_opt_fn)(mz_cli *cli, int key, const char *arg, void *ctx);

/* mz_cli_parse's "go on" answer. */
#define MZ_CLI_GO (-1)

/* Parses argv (argv[0] the command's name). Returns MZ_CLI_GO, or an exit
 * code: 0 after printing --help, 2 after a usage error, or what fn returned.
 * fn may be NULL when the command has no options of its own. */
int mz_cli_parse(mz_cli *cli, const mz_cli_cmd *cmd, int argc, char **argv, mz_cli_opt_fn fn,
                 void *ctx);

/* A usage error: "meshzero CMD: MESSAGE", the usage line and a --help hint
 * (or the JSON error) on stderr. Returns 2. */
int mz_cli_usage(const mz_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure: "meshzero CMD: MESSAGE" (or the JSON error with code) on
 * stderr. Returns 1. */
int mz_cli_fail(const mz_cli *cli, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a library error: the code is the status's JSON name. */
int mz_cli_fail_err(const mz_cli *cli, const mz_err *e);
/* "unreachable", "not_found", ... for a status: the codes of JSON errors. */
const char *mz_cli_status_code(mz_status st);

/* The command being run (set by mz_cli_parse), for messages printed deep
 * in shared helpers (mz_cli_call). NULL before any parse. */
const mz_cli *mz_cli_current(void);

/* The whole --help text of cmd on f. */
void mz_cli_help(const mz_cli_cmd *cmd, FILE *f);

/* A subcommand of a command with several (agreement, bridge). */
typedef struct mz_cli_sub {
    const char *name;           /* NULL ends a table */
    int (*main)(int argc, char **argv);
    const char *summary;
} mz_cli_sub;

/* Runs the subcommand argv[1] names (argv[0] is the command), or prints
 * the list (help, --help, -h: exit 0; nothing or an unknown name: exit 2). */
int mz_cli_subcommand(const char *cmd, const char *about, const mz_cli_sub *subs, int argc,
                      char **argv);

/* Prints v as one compact JSON line on stdout. */
void mz_cli_print_json(const json_t *v);

/* Reads "K=V" into obj (V a string unless it is a JSON object, array,
 * quoted string, true, false or null). false when arg is not K=V. */
bool mz_cli_meta_arg(json_t *obj, char *arg);

/* True if url has a scheme the CLI can dial: ws://, wss:// (and unix: when
 * unix_ok). */
bool mz_cli_url_ok(const char *url, bool unix_ok);

/* A non-negative decimal integer at most max; false otherwise. */
bool mz_cli_uint_arg(const char *s, long long max, long long *out);

#endif
