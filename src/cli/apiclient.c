/* A blocking JSON-RPC client for the CLI: its own loop and connmgr, run
 * until the answer (or the deadline) arrives. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cliopt.h"
#include "meshzero/connmgr.h"
#include "meshzero/node.h"
#include "net/dialhint.h"

struct mz_apiclient {
    uv_loop_t loop;
    mz_connmgr *cm;
    mz_link *link;              /* NULL once closed */
    bool open;
    bool closed;
    char close_reason[160];
    json_int_t next_id;
    json_t *answer;             /* the awaited response, when it came */
    json_int_t want_id;
    uv_timer_t timer;
    bool timed_out;
    mz_apiclient_push_fn push;  /* other messages: requests and notifications */
    char url_buf[512];          /* the URL with the token added */
    void *push_ctx;
    bool probing;               /* a peer-kind dial to tell a peer port from an API */
    bool saw_hello;
};

static void s_on_open(mz_link *link, void *ctx)
{
    mz_apiclient *c = ctx;

    c->link = link;
    c->open = true;
}

static void s_on_message(mz_link *link, const char *buf, size_t len, void *ctx)
{
    mz_apiclient *c = ctx;
    json_t *m = json_loadb(buf, len, 0, NULL);

    (void)link;
    if (m == NULL)
        return;
    if (c->probing) {
        const char *t = json_string_value(json_object_get(m, "type"));
        c->saw_hello = c->saw_hello || (t != NULL && strcmp(t, "hello") == 0);
        json_decref(m);
        return;
    }
    if (json_object_get(m, "method") == NULL &&
        json_integer_value(json_object_get(m, "id")) == c->want_id && c->answer == NULL) {
        c->answer = m;
        return;
    }
    if (c->push)
        c->push(c, m, c->push_ctx);
    json_decref(m);
}

static void s_on_close(mz_link *link, const char *reason, void *ctx)
{
    mz_apiclient *c = ctx;

    (void)link;
    c->link = NULL;
    c->closed = true;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
}

static void s_on_timer(uv_timer_t *t)
{
    mz_apiclient *c = t->data;
    c->timed_out = true;
}

/* Runs the loop until done(c) or the deadline. */
static bool s_run_until(mz_apiclient *c, bool (*done)(mz_apiclient *), int timeout_ms)
{
    c->timed_out = false;
    uv_timer_start(&c->timer, s_on_timer, (uint64_t)timeout_ms, 0);
    while (!done(c) && !c->timed_out && !c->closed)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_timer_stop(&c->timer);
    return done(c);
}

static bool s_is_open(mz_apiclient *c) { return c->open; }
static bool s_saw_hello(mz_apiclient *c) { return c->saw_hello; }

/* After an API dial the server refused: was it a peer port (a node's hello
 * comes back on a peer-kind dial), or an API wanting a token? */
static const char *s_refusal_cause(mz_apiclient *c, const char *url)
{
    bool hello;

    c->probing = true;
    c->closed = false;
    if (mz_connmgr_dial(c->cm, url, MZ_LINK_PEER, NULL, NULL, NULL) == MZ_OK)
        s_run_until(c, s_saw_hello, 3000);
    hello = c->saw_hello;
    if (c->link)
        mz_link_close(c->link, 1000, "bye");
    c->link = NULL;
    c->closed = true;
    if (hello)
        return "this is a node's peer port, not its API port (the node prints both: "
               "'node ID listen URL api URL')";
    if (getenv("MESHZERO_API_TOKEN") == NULL || getenv("MESHZERO_API_TOKEN")[0] == '\0')
        return "the API requires a token: set MESHZERO_API_TOKEN to the node's DATA/api.token";
    return "the API refused the token in $MESHZERO_API_TOKEN";
}

/* The message of a failed open: what was tried and the likely cause, never
 * the token. */
static mz_status s_open_failed(mz_apiclient *c, const char *url, const char *shown_url,
                               mz_err *err)
{
    char why[512];
    const char *reason = c->closed ? c->close_reason : "timed out";

    if (c->closed && strstr(reason, "read failed") != NULL) {
        char shown[300];
        const char *cause = s_refusal_cause(c, url);
        return mz_err_set(err, MZ_EUNREACHABLE, "cannot reach the node API at %s: %s",
                          mz__url_shown(shown_url, shown, sizeof shown), cause);
    }
    mz__dial_explain(shown_url, reason, 1, why, sizeof why);
    return mz_err_set(err, MZ_EUNREACHABLE, "cannot reach the node API at %s", why);
}
static bool s_has_answer(mz_apiclient *c) { return c->answer != NULL; }

mz_status mz_apiclient_open(const char *url, int timeout_ms, mz_apiclient **out, mz_err *err)
{
    mz_apiclient *c = calloc(1, sizeof *c);
    const char *shown_url;
    mz_connmgr_opts o;
    struct stat sb;
    mz_status rc;

    *out = NULL;
    if (c == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api client: allocating");
    if (url == NULL)
        url = getenv("MESHZERO_API");
    if (url == NULL || url[0] == '\0')
        url = MZ_DEFAULT_API_URL;
    shown_url = url;
    if (strncmp(url, "unix:", 5) == 0 && stat(url + 5, &sb) != 0) {
        /* Checked here: the answer is plainer than lws's, and nothing is dialed. */
        free(c);
        return mz_err_set(err, MZ_EUNREACHABLE, "cannot reach the node API at %s: no socket "
                          "at %s (%s; is the node running with --api %s?)", url, url + 5,
                          strerror(errno), url);
    }
    /* A remote API wants its token: $MESHZERO_API_TOKEN, unless the URL has one. */
    if (getenv("MESHZERO_API_TOKEN") && getenv("MESHZERO_API_TOKEN")[0] && !strchr(url, '?')) {
        snprintf(c->url_buf, sizeof c->url_buf, "%s%s?token=%s", url,
                 strchr(url + 6, '/') ? "" : "/", getenv("MESHZERO_API_TOKEN"));
        url = c->url_buf;
    }
    uv_loop_init(&c->loop);
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    memset(&o, 0, sizeof o);
    o.loop = &c->loop;
    o.cb.on_open = s_on_open;
    o.cb.on_message = s_on_message;
    o.cb.on_close = s_on_close;
    o.ctx = c;
    o.max_message = 64u * 1024 * 1024;
    if ((rc = mz_connmgr_new(&o, &c->cm, err)) != MZ_OK)
        goto fail;
    if ((rc = mz_connmgr_dial(c->cm, url, MZ_LINK_API, NULL, NULL, err)) != MZ_OK)
        goto fail;
    if (!s_run_until(c, s_is_open, timeout_ms)) {
        rc = s_open_failed(c, url, shown_url, err);
        goto fail;
    }
    *out = c;
    return MZ_OK;
fail:
    mz_apiclient_free(c);
    return rc;
}

mz_status mz_apiclient_call(mz_apiclient *c, const char *method, json_t *params,
                            int timeout_ms, json_t **result, mz_err *err)
{
    json_t *req, *e, *ans;
    char *buf;
    mz_status rc;

    *result = NULL;
    c->want_id = ++c->next_id;
    req = json_pack("{s:s,s:I,s:s,s:o}", "jsonrpc", "2.0", "id", c->want_id, "method", method,
                    "params", params ? params : json_object());
    if (req == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api call: allocating");
    buf = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (buf == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api call: allocating");
    rc = c->link ? mz_link_send(c->link, buf, strlen(buf), err)
                 : mz_err_set(err, MZ_EUNREACHABLE, "api connection closed");
    free(buf);
    if (rc != MZ_OK)
        return rc;
    if (!s_run_until(c, s_has_answer, timeout_ms))
        return mz_err_set(err, c->closed ? MZ_EUNREACHABLE : MZ_ETIMEOUT,
                          "%s: no answer from the node (%s)", method,
                          c->closed ? c->close_reason : "timed out");
    ans = c->answer;
    c->answer = NULL;
    e = json_object_get(ans, "error");
    if (e != NULL) {
        const char *st = json_string_value(json_object_get(json_object_get(e, "data"),
                                                           "status"));
        rc = MZ_EPROTO;
        for (int s = MZ_OK; s <= MZ_EUNREACHABLE; s++)
            if (st && strcmp(st, mz_status_name((mz_status)s)) == 0)
                rc = (mz_status)s;
        mz_err_set(err, rc == MZ_OK ? MZ_EPROTO : rc, "%s",
                   json_string_value(json_object_get(e, "message"))
                       ? json_string_value(json_object_get(e, "message"))
                       : "error without message");
        json_decref(ans);
        return rc == MZ_OK ? MZ_EPROTO : rc;
    }
    *result = json_incref(json_object_get(ans, "result"));
    json_decref(ans);
    return MZ_OK;
}

void mz_apiclient_free(mz_apiclient *c)
{
    if (c == NULL)
        return;
    if (c->cm) {
        if (c->link)
            mz_link_close(c->link, 1000, "bye");
        mz_connmgr_close(c->cm);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        mz_connmgr_free(c->cm);
    }
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    json_decref(c->answer);
    free(c);
}

json_t *mz_cli_call(const char *url, const char *method, json_t *params, int timeout_ms)
{
    const mz_cli *cli = mz_cli_current();
    mz_apiclient *c;
    json_t *res = NULL;
    mz_err e;

    if (mz_apiclient_open(url, timeout_ms, &c, &e) != MZ_OK) {
        json_decref(params);
        mz_cli_fail_err(cli, &e);
        return NULL;
    }
    if (mz_apiclient_call(c, method, params, timeout_ms, &res, &e) != MZ_OK)
        mz_cli_fail_err(cli, &e);
    mz_apiclient_free(c);
    return res;
}

void mz_apiclient_set_push(mz_apiclient *c, mz_apiclient_push_fn fn, void *ctx)
{
    c->push = fn;
    c->push_ctx = ctx;
}

uv_loop_t *mz_apiclient_loop(mz_apiclient *c)
{
    return &c->loop;
}

mz_status mz_apiclient_send(mz_apiclient *c, json_t *msg, mz_err *err)
{
    char *buf = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    mz_status rc;

    json_decref(msg);
    if (buf == NULL)
        return mz_err_set(err, MZ_ENOMEM, "api send: allocating");
    rc = c->link ? mz_link_send(c->link, buf, strlen(buf), err)
                 : mz_err_set(err, MZ_EUNREACHABLE, "api connection closed");
    free(buf);
    return rc;
}

mz_status mz_apiclient_run(mz_apiclient *c, const bool *stop, mz_err *err)
{
    while (!*stop && !c->closed)
        uv_run(&c->loop, UV_RUN_ONCE);
    if (c->closed && !*stop)
        return mz_err_set(err, MZ_EUNREACHABLE, "connection to the node closed: %s",
                          c->close_reason);
    return MZ_OK;
}
