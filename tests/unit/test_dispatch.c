/* Inbound dispatch of peer messages: refusals, duplicates and the hop
 * limit, on real nodes in one process on the in-memory transport
 * (support/mesh.h). Refusals are driven from a link the test plays by hand
 * (mz_memnet_accept); the rest through the public node API only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"
#include "util/log.h"

/* ---- a link played by hand ------------------------------------------------- */

typedef struct hand {
    mt_mesh *m;
    mz_connmgr *cm;             /* the node's manager */
    uint64_t id;                /* the hand link */
    char last_error[64];        /* code of the last error the node sent on it */
    int errors;
} hand;

static void s_tap(mz_link *link, const char *buf, size_t len, void *ctx)
{
    hand *h = ctx;
    json_t *env;

    if (link != mz_memnet_find(h->cm, h->id))
        return;
    env = json_loadb(buf, len, 0, NULL);
    if (env != NULL && strcmp(mz_msg_type(env), "error") == 0) {
        h->errors++;
        snprintf(h->last_error, sizeof h->last_error, "%s",
                 json_string_value(json_object_get(mz_msg_payload(env), "code")));
    }
    json_decref(env);
}

/* A stranger connects to n's peer listener. */
static void s_hand_open(hand *h, mt_mesh *m, mz_node *n)
{
    memset(h, 0, sizeof *h);
    h->m = m;
    h->cm = mz_memnet_listener(m->net, mz_node_listen_url(n));
    assert_non_null(h->cm);
    mz_memnet_set_tap(m->net, s_tap, h);
    h->id = mz_memnet_accept(h->cm, MZ_LINK_PEER);
    assert_int_not_equal(h->id, 0);
}

static void s_hand_send(hand *h, const char *text)
{
    mz_memnet_deliver(h->cm, h->id, text, strlen(text));
    mt_settle(h->m);
}

/* A well-formed envelope signed by a fresh key. */
static void s_hand_send_env(hand *h, const char *type, const char *recipient)
{
    mz_identity *key;
    json_t *env;
    char *text;
    size_t len;

    assert_int_equal(mz_identity_generate(&key, NULL), MZ_OK);
    env = mz_msg_new(type, mz_identity_id(key), recipient, json_object());
    assert_int_equal(mz_msg_sign(env, key, NULL), MZ_OK);
    text = mz_msg_dump(env, &len);
    s_hand_send(h, text);
    free(text);
    json_decref(env);
    mz_identity_free(key);
}

/* One refusal: what a stranger sends before any hello (raw text, or a
 * signed envelope of a type to a recipient: "@node" is the node), the error
 * code it gets back, and the counter that counts it. The link is closed. */
typedef struct refusal {
    const char *raw;
    const char *type, *recipient;
    const char *code;
    const char *counter;
} refusal;

static void s_check_refusal(const refusal *r)
{
    mt_mesh m;
    mz_node *a;
    hand h;

    mt_init(&m);
    a = mt_node(&m, NULL);
    s_hand_open(&h, &m, a);
    if (r->raw != NULL)
        s_hand_send(&h, r->raw);
    else
        s_hand_send_env(&h, r->type, strcmp(r->recipient, "@node") == 0 ? mz_node_id(a)
                                                                         : r->recipient);
    assert_int_equal(h.errors, 1);
    assert_string_equal(h.last_error, r->code);
    assert_int_equal(mt_counter(a, r->counter), 1);
    assert_int_equal(mt_counter(a, "messages_handled"), 0);
    assert_int_equal(mt_counter(a, "exec_served"), 0);
    assert_null(mz_memnet_find(h.cm, h.id));
    mt_free(&m);
}

/* Bytes that are not an envelope: bad_message, counted as malformed. */
static void test_malformed_is_refused_and_counted(void **state)
{
    static const refusal r = { "{\"this is\": not json", NULL, NULL, "bad_message",
                               "malformed" };

    (void)state;
    s_check_refusal(&r);
}

/* A valid envelope of a type nobody knows: unknown_type, counted. */
static void test_unknown_type_is_refused_and_counted(void **state)
{
    static const refusal r = { NULL, "frobnicate", "*", "unknown_type", "unknown_type" };

    (void)state;
    s_check_refusal(&r);
}

/* A call before the hello exchange: not_authenticated (counted as
 * malformed), and the call never runs. */
static void test_call_before_hello_is_refused(void **state)
{
    static const refusal r = { NULL, "execute", "@node", "not_authenticated", "malformed" };

    (void)state;
    s_check_refusal(&r);
}

/* ---- broadcasts between real nodes -------------------------------------------- */

typedef struct inbox {
    int got;
} inbox;

static void s_on_event(mz_node *node, const char *topic, const json_t *data, const char *source,
                       void *ctx)
{
    (void)node;
    (void)data;
    (void)source;
    if (strcmp(topic, "demo.ping") == 0)
        ((inbox *)ctx)->got++;
}

static void s_subscribe(mz_node *n, inbox *in)
{
    mz_err e;

    assert_int_equal(mz_node_subscribe(n, "demo.*", s_on_event, in, NULL, &e), MZ_OK);
}

static void s_publish(mz_node *n)
{
    mz_err e;
    json_t *data = json_pack("{s:i}", "n", 1);

    assert_int_equal(mz_node_publish(n, "demo.ping", data, &e), MZ_OK);
    json_decref(data);
}

/* In a triangle every node gets a broadcast twice (from both neighbours):
 * the second copy is dropped and counted, subscribers see it once. */
static void test_duplicates_are_dropped(void **state)
{
    mt_mesh m;
    mz_node *a, *b, *c;
    inbox ib = { 0 }, ic = { 0 };

    (void)state;
    mt_init(&m);
    a = mt_node(&m, NULL);
    b = mt_node(&m, NULL);
    c = mt_node(&m, NULL);
    assert_true(mt_link(&m, a, b));
    assert_true(mt_link(&m, b, c));
    assert_true(mt_link(&m, c, a));
    mt_settle(&m);
    s_subscribe(b, &ib);
    s_subscribe(c, &ic);
    int64_t before = mt_counter(b, "duplicates") + mt_counter(c, "duplicates");
    s_publish(a);
    mt_settle(&m);
    assert_int_equal(ib.got, 1);
    assert_int_equal(ic.got, 1);
    assert_true(mt_counter(b, "duplicates") + mt_counter(c, "duplicates") >= before + 2);
    mt_free(&m);
}

/* With max_hops 2 on A - B - C - D, a broadcast from A is handled by B
 * (hops 0) and C (hops 1), whose relay would make it 2: dropped, counted;
 * D never sees it. */
static void test_hop_limit_stops_a_broadcast(void **state)
{
    mt_mesh m;
    mz_node *n[4];
    inbox in[4] = { { 0 } };
    mz_node_opts o;

    (void)state;
    memset(&o, 0, sizeof o);
    o.max_hops = 2;
    mt_init(&m);
    for (int i = 0; i < 4; i++)
        n[i] = mt_node(&m, &o);
    for (int i = 0; i < 3; i++)
        assert_true(mt_link(&m, n[i], n[i + 1]));
    mt_settle(&m);
    for (int i = 1; i < 4; i++)
        s_subscribe(n[i], &in[i]);
    int64_t before = mt_counter(n[2], "hop_limit_drops");
    s_publish(n[0]);
    mt_settle(&m);
    assert_int_equal(in[1].got, 1);
    assert_int_equal(in[2].got, 1);
    assert_int_equal(in[3].got, 0);
    assert_true(mt_counter(n[2], "hop_limit_drops") > before);
    mt_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_is_refused_and_counted),
        cmocka_unit_test(test_unknown_type_is_refused_and_counted),
        cmocka_unit_test(test_call_before_hello_is_refused),
        cmocka_unit_test(test_duplicates_are_dropped),
        cmocka_unit_test(test_hop_limit_stops_a_broadcast),
    };

    mz_log_set_level(MZ_LOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
