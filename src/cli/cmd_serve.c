/* meshzero serve: hosts a resource on a node whose calls each run a command
 * (no shell): the call {"method","params","caller"} goes to its stdin as
 * JSON, its stdout is the JSON result; a non-zero exit is a handler_error
 * carrying stderr's text. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cliopt.h"
#include "util/spawn.h"
#include "meshzero.h"

/* Bytes of a command's stdout taken as its result, and of stderr kept. */
#define SERVE_MAX_OUT (1024 * 1024)
#define SERVE_MAX_ERR 4096

typedef struct serve_state {
    mz_apiclient *api;
    char **cmd;                 /* argv of the command, borrowed */
    long max_running;
    long running;
    bool stop;
    uv_signal_t sigint, sigterm;
    struct job *jobs;           /* running commands, killed when serve stops */
} serve_state;

typedef struct job {
    serve_state *st;
    char id[64];                /* the node's request id, echoed in the answer */
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer;
    uv_write_t wreq;
    char *input;                /* request JSON written to stdin (owned) */
    char *obuf, *ebuf;
    size_t olen, elen;
    bool too_big, timed_out, exited, answered;
    int64_t status;
    int term_signal;
    int open;                   /* handles still to close before freeing */
    int eofs;                   /* stdout and stderr finished */
    bool spawned;
    struct job *prev, *next;    /* serve_state.jobs */
} job;

/* The command runs in its own process group, so a kill reaches whatever it
 * started too (a shell's children hold the output pipes open otherwise). */
static void s_job_kill(job *j)
{
    if (j->spawned && !j->exited)
        uv_kill(-j->proc.pid, SIGKILL);
}

static void s_job_unlink(job *j)
{
    serve_state *st = j->st;

    if (j->prev) j->prev->next = j->next;
    else if (st->jobs == j) st->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

static void s_answer(serve_state *st, const char *id, json_t *result, const char *code,
                     const char *msg)
{
    json_t *m;
    mz_err e;

    if (code == NULL)
        m = json_pack("{s:s,s:s,s:o}", "jsonrpc", "2.0", "id", id, "result",
                      result ? result : json_null());
    else
        m = json_pack("{s:s,s:s,s:{s:i,s:s,s:{s:s}}}", "jsonrpc", "2.0", "id", id, "error",
                      "code", -32000, "message", msg, "data", "code", code);
    if (mz_apiclient_send(st->api, m, &e) != MZ_OK)
        fprintf(stderr, "meshzero serve: %s\n", e.msg);
}

static void s_job_closed(uv_handle_t *h)
{
    job *j = h->data;

    if (--j->open == 0) {
        s_job_unlink(j);
        free(j->input);
        free(j->obuf);
        free(j->ebuf);
        free(j);
    }
}

static void s_job_close(job *j)
{
    uv_handle_t *hs[] = { (uv_handle_t *)&j->proc, (uv_handle_t *)&j->in,
                          (uv_handle_t *)&j->out, (uv_handle_t *)&j->err,
                          (uv_handle_t *)&j->timer };

    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], s_job_closed);
}

/* Answers once the process exited and both output pipes reached EOF. */
static void s_job_maybe_done(job *j)
{
    serve_state *st = j->st;

    if (!j->exited || j->eofs < 2)
        return;
    if (j->answered) {              /* answered at the deadline already */
        s_job_close(j);
        return;
    }
    j->answered = true;
    st->running--;
    if (j->status != 0 || j->term_signal != 0) {
        char msg[SERVE_MAX_ERR + 64];
        size_t n = j->elen;
        while (n > 0 && (j->ebuf[n - 1] == '\n' || j->ebuf[n - 1] == '\r'))
            n--;
        if (j->term_signal)
            snprintf(msg, sizeof msg, "command killed by signal %d%s%.*s", j->term_signal,
                     n ? ": " : "", (int)n, j->ebuf ? j->ebuf : "");
        else if (n)
            snprintf(msg, sizeof msg, "%.*s", (int)n, j->ebuf);
        else
            snprintf(msg, sizeof msg, "command exited with status %lld", (long long)j->status);
        s_answer(st, j->id, NULL, "handler_error", msg);
    } else if (j->too_big) {
        s_answer(st, j->id, NULL, "handler_error", "command output over 1 MiB");
    } else {
        json_error_t je;
        json_t *r = json_loadb(j->obuf ? j->obuf : "", j->olen, JSON_DECODE_ANY, &je);
        if (r == NULL) {
            char msg[300];
            snprintf(msg, sizeof msg, "command output is not JSON: %s", je.text);
            s_answer(st, j->id, NULL, "handler_error", msg);
        } else {
            s_answer(st, j->id, r, NULL, NULL);
        }
    }
    s_job_close(j);
}

static void s_on_exit(uv_process_t *p, int64_t status, int term_signal)
{
    job *j = p->data;

    j->exited = true;
    j->status = status;
    j->term_signal = term_signal;
    uv_timer_stop(&j->timer);
    s_job_maybe_done(j);
}

static void s_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[65536];     /* read() target; copied out at once */

    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void s_append(char **buf, size_t *len, size_t max, const char *data, size_t n,
                     bool *over)
{
    char *nb;

    if (*len + n > max) {
        if (over) *over = true;
        n = max > *len ? max - *len : 0;
    }
    if (n == 0)
        return;
    nb = realloc(*buf, *len + n + 1);
    if (nb == NULL) {
        if (over) *over = true;
        return;
    }
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

static void s_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    job *j = s->data;

    if (n > 0) {
        if (s == (uv_stream_t *)&j->out)
            s_append(&j->obuf, &j->olen, SERVE_MAX_OUT, buf->base, (size_t)n, &j->too_big);
        else
            s_append(&j->ebuf, &j->elen, SERVE_MAX_ERR, buf->base, (size_t)n, NULL);
    } else if (n < 0) {
        uv_read_stop(s);
        j->eofs++;
        s_job_maybe_done(j);
    }
}

static void s_on_written(uv_write_t *w, int status)
{
    job *j = w->data;

    (void)status;   /* a command that does not read its input is its business */
    uv_close((uv_handle_t *)&j->in, s_job_closed);
}

static void s_on_deadline(uv_timer_t *t)
{
    job *j = t->data;

    j->timed_out = true;
    s_job_kill(j);
    if (!j->answered) {
        j->answered = true;
        j->st->running--;
        s_answer(j->st, j->id, NULL, "timeout", "the command ran past the call's deadline");
    }
}

extern char **environ;

/* This process's environment with TRACEPARENT/TRACESTATE set to the call's
 * (malloc'd; NULL, the environment as it is, when there is no trace). */
static char **s_trace_env(const char *tp, const char *ts)
{
    size_t n = 0, k = 0;
    char **env;

    if (tp == NULL || strlen(tp) > 64 || (ts != NULL && strlen(ts) > 512))
        return NULL;
    while (environ[n])
        n++;
    if ((env = calloc(n + 3, sizeof *env)) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "TRACEPARENT=", 12) != 0 &&
            strncmp(environ[i], "TRACESTATE=", 11) != 0)
            env[k++] = environ[i];
    env[k] = malloc(strlen(tp) + 13);
    if (env[k] != NULL)
        sprintf(env[k++], "TRACEPARENT=%s", tp);
    if (ts != NULL && (env[k] = malloc(strlen(ts) + 12)) != NULL)
        sprintf(env[k++], "TRACESTATE=%s", ts);
    env[k] = NULL;
    return env;
}

static void s_trace_env_free(char **env)
{
    size_t n = 0;

    if (env == NULL)
        return;
    while (env[n])
        n++;
    /* Ours are the last one or two; the rest belong to environ. */
    for (size_t i = 0; i < n; i++)
        if (strncmp(env[i], "TRACEPARENT=", 12) == 0 || strncmp(env[i], "TRACESTATE=", 11) == 0)
            free(env[i]);
    free(env);
}

static void s_start_job(serve_state *st, const char *id, const json_t *p)
{
    uv_loop_t *loop = mz_apiclient_loop(st->api);
    json_int_t deadline = json_integer_value(json_object_get(p, "deadline_ms"));
    int64_t left = deadline ? deadline - mz_now_ms() : 30000;
    json_t *in;
    job *j;
    int r;

    if (st->running >= st->max_running) {
        s_answer(st, id, NULL, "busy", "all command slots are in use");
        return;
    }
    j = calloc(1, sizeof *j);
    in = json_pack("{s:O,s:O,s:O}", "method", json_object_get(p, "method"), "params",
                   json_object_get(p, "params"), "caller", json_object_get(p, "caller"));
    if (j == NULL || in == NULL || (j->input = json_dumps(in, JSON_COMPACT)) == NULL) {
        json_decref(in);
        free(j);
        s_answer(st, id, NULL, "handler_error", "serve: out of memory");
        return;
    }
    json_decref(in);
    j->st = st;
    snprintf(j->id, sizeof j->id, "%s", id);
    uv_pipe_init(loop, &j->in, 0);
    uv_pipe_init(loop, &j->out, 0);
    uv_pipe_init(loop, &j->err, 0);
    uv_timer_init(loop, &j->timer);
    j->proc.data = j->in.data = j->out.data = j->err.data = j->timer.data = j;
    j->wreq.data = j;
    j->open = 5;
    j->next = st->jobs;
    if (st->jobs)
        st->jobs->prev = j;
    st->jobs = j;
    /* Detached (setsid): its own process group, which s_job_kill ends whole. */
    {
        /* The call's trace context, as W3C's environment-variable carriers name it. */
        char **env = s_trace_env(json_string_value(json_object_get(p, "traceparent")),
                                 json_string_value(json_object_get(p, "tracestate")));
        r = mz__spawn_piped_env(loop, &j->proc, st->cmd, env, &j->in, &j->out, &j->err,
                                s_on_exit, UV_PROCESS_DETACHED);
        s_trace_env_free(env);
    }
    if (r != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot run %s: %s", st->cmd[0], uv_strerror(r));
        s_answer(st, id, NULL, "handler_error", msg);
        j->answered = true;
        uv_close((uv_handle_t *)&j->proc, s_job_closed);
        s_job_close(j);
        return;
    }
    st->running++;
    j->spawned = true;
    {
        uv_buf_t b = uv_buf_init(j->input, (unsigned)strlen(j->input));
        if (uv_write(&j->wreq, (uv_stream_t *)&j->in, &b, 1, s_on_written) != 0)
            uv_close((uv_handle_t *)&j->in, s_job_closed);
    }
    uv_read_start((uv_stream_t *)&j->out, s_alloc, s_on_read);
    uv_read_start((uv_stream_t *)&j->err, s_alloc, s_on_read);
    uv_timer_start(&j->timer, s_on_deadline, (uint64_t)(left > 0 ? left : 1), 0);
}

static void s_on_push(mz_apiclient *c, const json_t *msg, void *ctx)
{
    serve_state *st = ctx;
    const char *m = json_string_value(json_object_get(msg, "method"));
    const char *id = json_string_value(json_object_get(msg, "id"));

    (void)c;
    if (m == NULL || id == NULL || strcmp(m, "execute") != 0)
        return;
    s_start_job(st, id, json_object_get(msg, "params"));
}

static void s_on_signal(uv_signal_t *h, int sig)
{
    serve_state *st = h->data;

    (void)sig;
    st->stop = true;
}

typedef struct serve_args {
    serve_state *st;
    const char *type, *owner;
    json_t *caps, *meta, *methods;
    bool replace;
} serve_args;

static int s_serve_opt(mz_cli *cli, int key, const char *arg, void *ctx)
{
    serve_args *a = ctx;
    long long n;

    switch (key) {
    case 't': a->type = arg; break;
    case 'c': json_array_append_new(a->caps, json_string(arg)); break;
    case 'o': a->owner = arg; break;
    case 'M': json_array_append_new(a->methods, json_string(arg)); break;
    case 'r': a->replace = true; break;
    case 'x':
        if (!mz_cli_uint_arg(arg, 1 << 20, &n) || n < 1)
            return mz_cli_usage(cli, "--max-concurrent needs a positive number, not '%s'", arg);
        a->st->max_running = (long)n;
        break;
    case 'm':
        if (!mz_cli_meta_arg(a->meta, (char *)arg))
            return mz_cli_usage(cli, "--meta '%s' is not KEY=VALUE", arg);
        break;
    }
    return 0;
}

/* The command must be runnable now, not only at its first call: a path
 * names an executable file, a bare name one on $PATH. */
static bool s_runnable(const mz_cli *cli, const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    struct stat sb;

    if (strchr(prog, '/') != NULL) {
        if (stat(prog, &sb) != 0 || !S_ISREG(sb.st_mode) || access(prog, X_OK) != 0) {
            mz_cli_fail(cli, "not_found", "cannot run %s: %s", prog,
                        stat(prog, &sb) != 0 ? strerror(errno)
                        : !S_ISREG(sb.st_mode) ? "not a regular file" : "not executable");
            return false;
        }
        return true;
    }
    for (const char *p = path ? path : "/usr/bin:/bin"; *p; ) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", prog);
        if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    mz_cli_fail(cli, "not_found", "cannot run %s: not found on $PATH", prog);
    return false;
}

/* Registers the resource as served by this connection. */
static int s_serve_register(serve_state *st, const mz_cli *cli, const char *rid,
                            const serve_args *a)
{
    json_t *params, *res;
    mz_err e;

    params = json_pack("{s:s,s:s,s:O,s:O,s:b,s:O}", "resource_id", rid, "resource_type",
                       a->type, "capabilities", a->caps, "metadata", a->meta, "handler", 1,
                       "methods", a->methods);
    if (params && a->owner)
        json_object_set_new(params, "owner", json_string(a->owner));
    if (params && a->replace)
        json_object_set_new(params, "replace", json_true());
    if (mz_apiclient_call(st->api, "register_resource", params, 10000, &res, &e) != MZ_OK)
        return mz_cli_fail_err(cli, &e);
    json_decref(res);
    return MZ_EXIT_OK;
}

/* Serves calls until SIGINT/SIGTERM or the node goes. */
static int s_serve_loop(serve_state *st, const mz_cli *cli)
{
    int rc = MZ_EXIT_FAIL;
    mz_err e;

    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(mz_apiclient_loop(st->api), &st->sigint);
    uv_signal_init(mz_apiclient_loop(st->api), &st->sigterm);
    st->sigint.data = st->sigterm.data = st;
    uv_signal_start(&st->sigint, s_on_signal, SIGINT);
    uv_signal_start(&st->sigterm, s_on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&st->sigint);
    uv_unref((uv_handle_t *)&st->sigterm);
    if (mz_apiclient_run(st->api, &st->stop, &e) != MZ_OK)
        mz_cli_fail_err(cli, &e);
    else
        rc = MZ_EXIT_OK;
    for (job *j = st->jobs; j; j = j->next)
        s_job_kill(j);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    return rc;
}

int cmd_serve_main(int argc, char **argv)
{
    static const mz_cli_opt opts[] = {
        { "type", 't', "T", "resource type (required)" },
        { "cap", 'c', "C", "a capability (repeatable; default none)" },
        { "meta", 'm', "K=V", "a metadata entry (a string unless V is a JSON object, array,\n"
                              "quoted string, true, false or null; repeatable)" },
        { "owner", 'o', "O", "owner name (default \"\")" },
        { "method", 'M', "M", "a method the resource accepts (repeatable; default: any)" },
        { "max-concurrent", 'x', "N", "commands running at once (default 16; more: busy)" },
        { "replace", 'r', NULL, "take over ID when another client already serves it on this\n"
                                "node (default: refuse)" },
        { NULL, 0, NULL, NULL } };
    static const mz_cli_cmd cmd = {
        "serve", "ID --type T [--cap C]... [--meta K=V]... [--owner O] [--method M]...\n"
        " [--max-concurrent N] [--replace] -- CMD [ARGS...]",
        "Registers resource ID on the node and serves its calls: each call runs CMD (no\n"
        "shell) with {\"method\",\"params\",\"caller\"} as JSON on stdin; its stdout (JSON)\n"
        "is the result; a non-zero exit is a handler_error with stderr's text. A call past\n"
        "its deadline kills CMD (timeout). CMD must be runnable when serve starts. The\n"
        "resource is unregistered when serve exits (SIGINT/SIGTERM). An ID another client\n"
        "serves on the node is refused unless --replace. Prints 'serving ID' once registered.",
        opts, MZ_CLI_NODE,
        "serve agent123 --type agent --cap image_processing -- ./examples/process_image.sh\n"
        "serve calc --type tool --method add --max-concurrent 4 -- python3 calc.py", true };
    serve_state st;
    serve_args a = { &st, NULL, NULL, json_array(), json_object(), json_array(), false };
    const char *rid;
    mz_cli cli, rest;
    mz_err e;
    int rc = MZ_EXIT_FAIL;

    memset(&st, 0, sizeof st);
    st.max_running = 16;
    /* Options end at ID (stop_at_args): CMD's own options stay CMD's. */
    if (a.caps == NULL || a.meta == NULL || a.methods == NULL ||
        (rc = mz_cli_parse(&cli, &cmd, argc, argv, s_serve_opt, &a)) != MZ_CLI_GO)
        goto out;
    rid = cli.argc > 0 ? cli.argv[0] : NULL;
    if (rid != NULL && cli.argc > 1) {
        /* Options may follow ID too: parse the rest up to "--". */
        int n = 1;
        while (n < cli.argc && strcmp(cli.argv[n], "--") != 0)
            n++;
        if ((rc = mz_cli_parse(&rest, &cmd, n, cli.argv, s_serve_opt, &a)) != MZ_CLI_GO)
            goto out;
        if (rest.argc > 0) {
            rc = mz_cli_usage(&cli, "unexpected argument '%s' before --", rest.argv[0]);
            goto out;
        }
        st.cmd = n + 1 < cli.argc ? cli.argv + n + 1 : NULL;
        rest.node = rest.node != mz_cli_global_node ? rest.node : cli.node;
        cli.node = rest.node;
        cli.json = cli.json || rest.json;
    }
    if (rid == NULL || a.type == NULL || st.cmd == NULL) {
        rc = mz_cli_usage(&cli, "need ID, --type and -- CMD");
        goto out;
    }
    if (!s_runnable(&cli, st.cmd[0])) {
        rc = MZ_EXIT_FAIL;
        goto out;
    }
    if (mz_apiclient_open(cli.node, 10000, &st.api, &e) != MZ_OK) {
        rc = mz_cli_fail_err(&cli, &e);
        goto out;
    }
    mz_apiclient_set_push(st.api, s_on_push, &st);
    if ((rc = s_serve_register(&st, &cli, rid, &a)) == MZ_EXIT_OK) {
        printf("serving %s\n", rid);
        fflush(stdout);
        rc = s_serve_loop(&st, &cli);
    }
    /* Closing the API connection unregisters the resource on the node. */
    mz_apiclient_free(st.api);
out:
    json_decref(a.caps);
    json_decref(a.meta);
    json_decref(a.methods);
    return rc;
}
