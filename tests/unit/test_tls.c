/* TLS material and wss:// links: the self-signed certificate of the node
 * key (content, modes, reuse, renewal for a new identity), certificate/key
 * checks, URL pins, and two connection managers in one process linking over
 * wss:// with a right and a wrong pin. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "meshzero/connmgr.h"
#include "meshzero/msg.h"
#include "net/tls.h"

typedef struct tmpdir {
    char path[64];
} tmpdir;

static void s_rm_rf(const char *dir)
{
    static const char *const names[] = { "identity.key", MZ_TLS_CERT_FILE, MZ_TLS_KEY_FILE };
    char p[128];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int setup(void **state)
{
    tmpdir *t = calloc(1, sizeof *t);

    snprintf(t->path, sizeof t->path, "/tmp/mz-test-tls-XXXXXX");
    assert_non_null(mkdtemp(t->path));
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tmpdir *t = *state;

    s_rm_rf(t->path);
    free(t);
    return 0;
}

/* Creates DIR/identity.key; returns the node id in id. */
static void s_identity(const char *dir, char id[MZ_TLS_KEY_HEX_LEN + 1])
{
    mz_identity *ident = NULL;
    mz_err e;

    assert_int_equal(mz_identity_load_or_create(dir, &ident, &e), MZ_OK);
    snprintf(id, MZ_TLS_KEY_HEX_LEN + 1, "%s", mz_identity_id(ident));
    mz_identity_free(ident);
}

static X509 *s_load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    assert_non_null(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *s_load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;

    assert_non_null(f);
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static void test_self_signed_key_is_identity(void **state)
{
    tmpdir *t = *state;
    char id[MZ_TLS_KEY_HEX_LEN + 1], got[MZ_TLS_KEY_HEX_LEN + 1], cp[256], kp[256];
    struct stat st;
    X509 *x;
    EVP_PKEY *k;
    mz_err e;

    s_identity(t->path, id);
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_OK);
    x = s_load_cert(cp);
    k = s_load_key(kp);
    assert_true(mz_tls_cert_key_hex(x, got));
    assert_string_equal(got, id);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);     /* self-signed */
    X509_free(x);
    EVP_PKEY_free(k);
    assert_int_equal(stat(cp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_reused_then_renewed_for_new_identity(void **state)
{
    tmpdir *t = *state;
    char id[MZ_TLS_KEY_HEX_LEN + 1], id2[MZ_TLS_KEY_HEX_LEN + 1], got[MZ_TLS_KEY_HEX_LEN + 1];
    char cp[256], kp[256], idp[128];
    struct stat a, b;
    X509 *x1, *x2;
    mz_err e;

    s_identity(t->path, id);
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_OK);
    assert_int_equal(stat(cp, &a), 0);
    x1 = s_load_cert(cp);
    /* Second start: the same files, untouched. */
    assert_int_equal(mz_tls_self_signed(t->path, NULL, 0, NULL, 0, &e), MZ_OK);
    assert_int_equal(stat(cp, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    x2 = s_load_cert(cp);
    assert_int_equal(X509_cmp(x1, x2), 0);
    X509_free(x2);

    /* A new identity gets a new certificate. */
    snprintf(idp, sizeof idp, "%s/identity.key", t->path);
    assert_int_equal(unlink(idp), 0);
    s_identity(t->path, id2);
    assert_string_not_equal(id, id2);
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_OK);
    x2 = s_load_cert(cp);
    assert_int_not_equal(X509_cmp(x1, x2), 0);
    assert_true(mz_tls_cert_key_hex(x2, got));
    assert_string_equal(got, id2);
    X509_free(x1);
    X509_free(x2);
}

static void test_refusals(void **state)
{
    tmpdir *t = *state;
    char id[MZ_TLS_KEY_HEX_LEN + 1], cp[256], kp[256], other[128];
    tmpdir o;
    mz_err e;

    /* No identity yet. */
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_EIO);
    assert_non_null(strstr(e.msg, "identity.key"));
    assert_int_equal(mz_tls_self_signed(NULL, cp, sizeof cp, kp, sizeof kp, &e), MZ_EINVAL);

    s_identity(t->path, id);
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_OK);
    assert_int_equal(mz_tls_check_pair(cp, kp, &e), MZ_OK);
    assert_int_equal(mz_tls_check_ca(cp, &e), MZ_OK);
    assert_int_equal(mz_tls_check_ca(kp, &e), MZ_EINVAL);
    assert_int_equal(mz_tls_check_pair(cp, NULL, &e), MZ_EINVAL);
    assert_int_equal(mz_tls_check_pair(kp, kp, &e), MZ_EINVAL);
    assert_non_null(strstr(e.msg, "no PEM certificate"));
    assert_int_equal(mz_tls_check_pair(cp, "/nonexistent/key.pem", &e), MZ_EINVAL);

    /* A key of another identity does not belong to this certificate. */
    snprintf(o.path, sizeof o.path, "/tmp/mz-test-tls-XXXXXX");
    assert_non_null(mkdtemp(o.path));
    s_identity(o.path, id);
    assert_int_equal(mz_tls_self_signed(o.path, NULL, 0, NULL, 0, &e), MZ_OK);
    snprintf(other, sizeof other, "%s/%s", o.path, MZ_TLS_KEY_FILE);
    assert_int_equal(mz_tls_check_pair(cp, other, &e), MZ_EINVAL);
    assert_non_null(strstr(e.msg, "does not belong"));
    s_rm_rf(o.path);

    /* A key file others can read is refused, like identity.key. */
    assert_int_equal(chmod(kp, 0644), 0);
    assert_int_equal(mz_tls_self_signed(t->path, cp, sizeof cp, kp, sizeof kp, &e), MZ_EIO);
    assert_non_null(strstr(e.msg, "chmod 600"));
    /* Paths that do not fit. */
    assert_int_equal(chmod(kp, 0600), 0);
    assert_int_equal(mz_tls_self_signed(t->path, cp, 8, kp, sizeof kp, &e), MZ_EINVAL);
}

static void test_url_parse(void **state)
{
    const char *pin = "AbCdEf0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789";
    char url[256], host[64], path[64];
    int port;
    mz_url u;
    mz_err e;

    (void)state;
    assert_int_equal(mz_url_parse2("wss://example.org", &u, &e), MZ_OK);
    assert_true(u.tls);
    assert_string_equal(u.host, "example.org");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/");
    assert_string_equal(u.pin, "");
    assert_int_equal(mz_url_parse2("ws://h", &u, &e), MZ_OK);
    assert_false(u.tls);
    assert_int_equal(u.port, 80);

    snprintf(url, sizeof url, "wss://[::1]:9001/p/q#%s", pin);
    assert_int_equal(mz_url_parse2(url, &u, &e), MZ_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9001);
    assert_string_equal(u.path, "/p/q");
    assert_string_equal(u.pin,
                        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    snprintf(url, sizeof url, "ws://127.0.0.1:9001/#%s", pin);
    assert_int_equal(mz_url_parse2(url, &u, &e), MZ_OK);
    assert_false(u.tls);
    assert_int_equal(strlen(u.pin), MZ_URL_PIN_LEN);
    snprintf(url, sizeof url, "ws://127.0.0.1:9001#%s", pin);
    assert_int_equal(mz_url_parse2(url, &u, &e), MZ_OK);
    assert_string_equal(u.path, "/");
    assert_int_equal(strlen(u.pin), MZ_URL_PIN_LEN);
    assert_int_equal(mz_url_parse2("ws://127.0.0.1:9001/#", &u, &e), MZ_OK);
    assert_string_equal(u.pin, "");

    assert_int_equal(mz_url_parse2("wss://127.0.0.1:9001/#abc", &u, &e), MZ_EINVAL);
    assert_non_null(strstr(e.msg, "node id"));
    snprintf(url, sizeof url, "wss://h:1/#%.63sg", pin);
    assert_int_equal(mz_url_parse2(url, &u, &e), MZ_EINVAL);
    snprintf(url, sizeof url, "wss://h:1/#%s0", pin);
    assert_int_equal(mz_url_parse2(url, &u, &e), MZ_EINVAL);
    assert_int_equal(mz_url_parse2("http://h:1", &u, &e), MZ_EINVAL);
    assert_int_equal(mz_url_parse2("wss://h:70000", &u, &e), MZ_EINVAL);

    /* The older call accepts wss:// too and still checks its buffers. */
    assert_int_equal(mz_url_parse("wss://h:7/x", host, sizeof host, &port, path, sizeof path,
                                  &e), MZ_OK);
    assert_string_equal(host, "h");
    assert_int_equal(port, 7);
    assert_string_equal(path, "/x");
    assert_int_equal(mz_url_parse("ws://h:7/xyz", host, sizeof host, &port, path, 3, &e),
                     MZ_EINVAL);
}

/* ---- two connection managers over wss:// -------------------------------- */

typedef struct pair {
    uv_loop_t loop;
    uv_timer_t poll;
    mz_connmgr *srv, *cli;
    int opened, closed, srv_opened;
    char reason[256];
} pair;

static void s_noop(uv_timer_t *h) { (void)h; }

static void s_on_open(mz_link *l, void *ctx)
{
    pair *p = ctx;

    if (mz_link_outbound(l))
        p->opened++;
    else
        p->srv_opened++;
}

static void s_on_message(mz_link *l, const char *buf, size_t len, void *ctx)
{
    (void)l; (void)buf; (void)len; (void)ctx;
}

static void s_on_close(mz_link *l, const char *reason, void *ctx)
{
    pair *p = ctx;

    if (mz_link_outbound(l)) {
        p->closed++;
        snprintf(p->reason, sizeof p->reason, "%s", reason);
    }
}

static void s_run_until(pair *p, const int *counter, int want)
{
    /* Generous: the first TLS handshake of a process is slow (OpenSSL fetches
     * its algorithms) and a loaded machine under ASan is slower still. */
    uint64_t end = uv_now(&p->loop) + 30000;

    while (*counter < want && uv_now(&p->loop) < end)
        uv_run(&p->loop, UV_RUN_ONCE);
}

static void s_new_pair(pair *p, const char *dir)
{
    mz_connmgr_opts o;
    mz_err e;

    memset(p, 0, sizeof *p);
    uv_loop_init(&p->loop);
    uv_timer_init(&p->loop, &p->poll);
    uv_timer_start(&p->poll, s_noop, 10, 10);
    memset(&o, 0, sizeof o);
    o.loop = &p->loop;
    o.cb.on_open = s_on_open;
    o.cb.on_message = s_on_message;
    o.cb.on_close = s_on_close;
    o.ctx = p;
    o.listen_url = "wss://127.0.0.1:0";
    o.tls_dir = dir;
    assert_int_equal(mz_connmgr_new(&o, &p->srv, &e), MZ_OK);
    assert_memory_equal(mz_connmgr_listen_url(p->srv), "wss://127.0.0.1:", 16);
    o.listen_url = NULL;
    o.tls_dir = NULL;
    assert_int_equal(mz_connmgr_new(&o, &p->cli, &e), MZ_OK);
}

static void s_free_pair(pair *p)
{
    uv_timer_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, NULL);
    mz_connmgr_close(p->srv);
    mz_connmgr_close(p->cli);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    mz_connmgr_free(p->srv);
    mz_connmgr_free(p->cli);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

static void test_wss_pins(void **state)
{
    tmpdir *t = *state;
    char id[MZ_TLS_KEY_HEX_LEN + 1], url[256];
    mz_link *l;
    mz_err e;
    pair p;

    s_identity(t->path, id);
    /* Twice in one process: lws's global TLS set-up and tear-down must not
     * break a second context. */
    for (int round = 0; round < 2; round++) {
        s_new_pair(&p, t->path);

        /* Wrong pin: refused once, with the reason, counted. */
        snprintf(url, sizeof url, "%s/#%064d", mz_connmgr_listen_url(p.srv), 7);
        assert_int_equal(mz_connmgr_dial(p.cli, url, MZ_LINK_PEER, NULL, &l, &e), MZ_OK);
        s_run_until(&p, &p.closed, 1);
        assert_int_equal(p.closed, 1);
        assert_int_equal(p.opened, 0);
        assert_non_null(strstr(p.reason, "does not match pinned id"));
        assert_non_null(strstr(p.reason, id));
        assert_int_equal(mz_connmgr_stats_get(p.cli)->tls_refusals, 1);
        assert_int_equal(mz_connmgr_stats_get(p.cli)->dial_failures, 1);

        /* No pin, no CA: refused. */
        assert_int_equal(mz_connmgr_dial(p.cli, mz_connmgr_listen_url(p.srv), MZ_LINK_PEER,
                                         NULL, &l, &e), MZ_OK);
        s_run_until(&p, &p.closed, 2);
        assert_int_equal(p.closed, 2);
        assert_non_null(strstr(p.reason, "not trusted"));
        assert_int_equal(mz_connmgr_stats_get(p.cli)->tls_refusals, 2);

        /* The right pin links, and the link knows its pin. */
        snprintf(url, sizeof url, "%s/#%s", mz_connmgr_listen_url(p.srv), id);
        assert_int_equal(mz_connmgr_dial(p.cli, url, MZ_LINK_PEER, NULL, &l, &e), MZ_OK);
        assert_string_equal(mz_link_pin(l), id);
        assert_true(mz_link_tls(l));
        s_run_until(&p, &p.opened, 1);
        assert_int_equal(p.opened, 1);
        s_run_until(&p, &p.srv_opened, 1);
        assert_int_equal(p.srv_opened, 1);
        assert_int_equal(p.closed, 2);
        assert_int_equal(mz_connmgr_stats_get(p.cli)->tls_refusals, 2);
        s_free_pair(&p);
        assert_int_equal(p.closed, 3);          /* reported once, at shutdown */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_self_signed_key_is_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_then_renewed_for_new_identity, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test_setup_teardown(test_wss_pins, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
