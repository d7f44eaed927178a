/* Streams and flow control (src/wire/stream.h): a body chunked into HEAD
 * and DATA frames, credit per stream half, WINDOW_UPDATE, NOTIFY, RESET,
 * every refusal, round-robin interleaving, and 64 MiB through real sealed
 * frames with the bytes a receiver holds bounded by its window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "wire/frame.h"
#include "wire/stream.h"

static uint8_t A[32], B[32];            /* A < B: A opens even ids, B odd */
static const uint8_t KEY[32] = { 3 };

struct pair {
    mz_streams *a, *b;
};

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    memset(A, 0x11, sizeof A);
    memset(B, 0x22, sizeof B);
    return 0;
}

static void pair_new(struct pair *p, const mz_stream_limits *lim)
{
    mz_err e;

    assert_int_equal(mz__streams_new(&p->a, A, B, lim, 100, &e), MZ_OK);
    assert_int_equal(mz__streams_new(&p->b, B, A, lim, 7, &e), MZ_OK);
}

static void pair_free(struct pair *p)
{
    mz__streams_free(p->a);
    mz__streams_free(p->b);
}

/* The header the sender of f would write (no crypto: the state machine
 * sees only headers and plaintext lengths). */
static void hdr_of(const mz_stream_frame *f, const uint8_t *src, const uint8_t *dst,
                   mz_frame_hdr *h)
{
    mz__frame_hdr_init(h, f->type, src, dst);
    h->flags = (uint16_t)(f->flags | MZ_FRAME_F_SEALED);
    h->stream_id = f->stream_id;
    h->aux = f->aux;
    h->body_len = (uint32_t)(f->body_len + MZ_FRAME_TAG_LEN);
}

/* Delivers f, sent by the node with id src, to set to. */
static mz_status deliver(mz_streams *to, const uint8_t *src, const uint8_t *dst,
                         const mz_stream_frame *f, mz_stream_event *ev, mz_err *e)
{
    mz_frame_hdr h;

    hdr_of(f, src, dst, &h);
    return mz__streams_on_frame(to, &h, f->body_len, ev, e);
}

/* A frame by hand, from B to A unless from_a. */
static mz_status inject(mz_streams *to, bool from_a, uint8_t type, uint16_t flags, uint32_t id,
                        uint64_t aux, size_t len, mz_stream_event *ev, mz_err *e)
{
    mz_stream_frame f = { .type = type, .flags = flags, .stream_id = id, .aux = aux,
                          .body_len = len };

    return deliver(to, from_a ? A : B, from_a ? B : A, &f, ev, e);
}

static void expect(mz_status got, mz_status want, const mz_err *e, const char *text)
{
    assert_int_equal(got, want);
    if (strstr(e->msg, text) == NULL)
        fail_msg("message \"%s\" does not say \"%s\"", e->msg, text);
}

/* ---- basics ------------------------------------------------------------- */

static void test_small_call(void **state)
{
    struct pair p;
    uint8_t req[100], res[50];
    mz_stream_frame f;
    mz_stream_event ev;
    uint32_t id = 0;
    mz_err e;

    (void)state;
    memset(req, 'q', sizeof req);
    memset(res, 'r', sizeof res);
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, req, sizeof req, &id, &e), MZ_OK);
    assert_int_equal(id % 2, 0);
    assert_int_equal(id, 100);
    assert_true(mz__streams_pending(p.a));
    assert_true(mz__streams_next(p.a, &f));
    assert_int_equal(f.type, MZ_FRAME_EXECUTE);
    assert_int_equal(f.flags, MZ_FRAME_F_HEAD | MZ_FRAME_F_END);
    assert_int_equal(f.aux, sizeof req);
    assert_ptr_equal(f.body, req);
    assert_int_equal(f.body_len, sizeof req);
    assert_false(f.closed);
    assert_false(mz__streams_next(p.a, &f));
    assert_false(mz__streams_pending(p.a));

    assert_true(mz__streams_next(p.a, &f) == false);
    f = (mz_stream_frame){ .type = MZ_FRAME_EXECUTE, .flags = MZ_FRAME_F_HEAD | MZ_FRAME_F_END,
                           .stream_id = id, .aux = sizeof req, .body = req,
                           .body_len = sizeof req };
    assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
    assert_int_equal(ev.kind, MZ_STREAM_EV_HEAD);
    assert_int_equal(ev.type, MZ_FRAME_EXECUTE);
    assert_int_equal(ev.total, sizeof req);
    assert_int_equal(ev.len, sizeof req);
    assert_true(ev.end);
    assert_false(ev.local);
    assert_false(ev.closed);
    assert_int_equal(mz__streams_open_count(p.b), 1);

    assert_int_equal(mz__streams_answer(p.b, id, MZ_FRAME_EXECUTE_RESULT, res, sizeof res, &e),
                     MZ_OK);
    expect(mz__streams_answer(p.b, id, MZ_FRAME_EXECUTE_RESULT, res, 1, &e), MZ_ESTATE, &e,
           "already answered");
    assert_true(mz__streams_next(p.b, &f));
    assert_int_equal(f.type, MZ_FRAME_EXECUTE_RESULT);
    assert_true(f.closed);                       /* B: both halves done */
    assert_int_equal(mz__streams_open_count(p.b), 0);
    assert_int_equal(deliver(p.a, B, A, &f, &ev, &e), MZ_OK);
    assert_true(ev.local && ev.end && ev.closed);
    assert_int_equal(mz__streams_open_count(p.a), 0);
    pair_free(&p);
}

static void test_parity_and_ids(void **state)
{
    struct pair p;
    uint8_t x = 0;
    uint32_t id1, id2, id3;
    mz_err e;

    (void)state;
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.b, MZ_FRAME_QUERY, &x, 1, &id1, &e), MZ_OK);
    assert_int_equal(mz__streams_open(p.b, MZ_FRAME_QUERY, &x, 1, &id2, &e), MZ_OK);
    assert_int_equal(id1, 7);
    assert_int_equal(id2, 9);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_QUERY, &x, 1, &id3, &e), MZ_OK);
    assert_int_equal(id3 % 2, 0);
    expect(mz__streams_open(p.a, MZ_FRAME_EVENT, &x, 1, &id3, &e), MZ_EINVAL, &e,
           "not a unicast type");
    pair_free(&p);
    assert_int_equal(mz__streams_new(&p.a, A, A, NULL, 1, &e), MZ_EINVAL);
}

/* ---- flow control -------------------------------------------------------- */

/* Moves every frame A has to send into B; returns how many. */
static int pump_ab(struct pair *p, mz_stream_event *last)
{
    mz_stream_frame f;
    mz_err e;
    int n = 0;

    while (mz__streams_next(p->a, &f)) {
        assert_int_equal(deliver(p->b, A, B, &f, last, &e), MZ_OK);
        n++;
    }
    return n;
}

static void test_window_accounting(void **state)
{
    struct pair p;
    const size_t len = 1024 * 1024;
    uint8_t *body = malloc(len);
    mz_stream_frame f;
    mz_stream_event ev;
    mz_stream_info ia, ib;
    uint32_t id;
    bool send;
    mz_err e;

    (void)state;
    assert_non_null(body);
    memset(body, 'x', len);
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, body, len, &id, &e), MZ_OK);
    /* The initial window: 256 KiB in 16 KiB chunks, then A waits. */
    assert_int_equal(pump_ab(&p, &ev), MZ_STREAM_INITIAL_WINDOW / MZ_DEFAULT_STREAM_CHUNK);
    assert_false(mz__streams_pending(p.a));
    assert_int_equal(mz__streams_info(p.a, id, &ia), MZ_OK);
    assert_int_equal(ia.out_sent, MZ_STREAM_INITIAL_WINDOW);
    assert_int_equal(ia.out_credit_limit, MZ_STREAM_INITIAL_WINDOW);
    assert_int_equal(mz__streams_info(p.b, id, &ib), MZ_OK);
    assert_int_equal(ib.in_received, MZ_STREAM_INITIAL_WINDOW);
    assert_int_equal(ib.in_total, len);
    /* Consuming less than half a window grants nothing yet. */
    assert_int_equal(mz__streams_consumed(p.b, id, 100 * 1024, &f, &send, &e), MZ_OK);
    assert_false(send);
    assert_int_equal(mz__streams_consumed(p.b, id, 28 * 1024, &f, &send, &e), MZ_OK);
    assert_true(send);
    assert_int_equal(f.type, MZ_FRAME_WINDOW_UPDATE);
    assert_int_equal(f.aux, 128 * 1024 + MZ_DEFAULT_STREAM_WINDOW);
    expect(mz__streams_consumed(p.b, id, 200 * 1024, &f, &send, &e), MZ_EINVAL, &e,
           "not consumed");
    /* A learns the new limit; a stale smaller one changes nothing. */
    assert_int_equal(deliver(p.a, B, A, &f, &ev, &e), MZ_OK);
    assert_int_equal(ev.kind, MZ_STREAM_EV_WINDOW);
    assert_true(mz__streams_pending(p.a));
    assert_int_equal(inject(p.a, false, MZ_FRAME_WINDOW_UPDATE, 0, id, 1000, 0, &ev, &e),
                     MZ_OK);
    assert_int_equal(mz__streams_info(p.a, id, &ia), MZ_OK);
    assert_int_equal(ia.out_credit_limit, 384 * 1024);
    assert_int_equal(pump_ab(&p, &ev), 8);
    assert_false(mz__streams_pending(p.a));
    free(body);
    pair_free(&p);
}

/* ---- refusals --------------------------------------------------------------- */

/* B opens stream id 7 towards A with a 100,000-byte body; A has received
 * its HEAD with `first` bytes. */
static uint32_t open_from_b(struct pair *p, size_t first)
{
    mz_stream_event ev;
    mz_err e;

    assert_int_equal(inject(p->a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 7, 100000, first,
                            &ev, &e), MZ_OK);
    assert_false(ev.local);
    return 7;
}

static void test_refuse_chunks(void **state)
{
    struct pair p;
    mz_stream_event ev;
    mz_err e;
    uint32_t id;

    (void)state;
    pair_new(&p, NULL);
    id = open_from_b(&p, 1000);
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, id, 999, 10, &ev, &e), MZ_EPROTO, &e,
           "chunk at offset 999, expected 1000");
    assert_int_equal(ev.code, MZ_STREAM_RESET_PROTOCOL);
    assert_true(ev.closed);
    assert_int_equal(mz__streams_open_count(p.a), 0);
    /* The stream was reset: later frames of it are ignored, not violations. */
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, id, 1000, 10, &ev, &e), MZ_ENOTFOUND, &e,
           "not open");

    id = 9;
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, id, 100000, 0, &ev,
                            &e), MZ_OK);
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, id, 0, 0, &ev, &e), MZ_EPROTO, &e,
           "empty chunk");
    id = 11;
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, id, 100000, 99000,
                            &ev, &e), MZ_OK);
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, id, 99000, 1001, &ev, &e), MZ_EPROTO, &e,
           "runs past the declared 100000 bytes");
    id = 13;
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, id, 100000, 10,
                            &ev, &e), MZ_OK);
    expect(inject(p.a, false, MZ_FRAME_DATA, MZ_FRAME_F_END, id, 10, 10, &ev, &e), MZ_EPROTO,
           &e, "END at 20 of a declared 100000 bytes (truncated)");
    pair_free(&p);
}

static void test_refuse_out_of_window(void **state)
{
    struct pair p;
    mz_stream_event ev;
    mz_err e;

    (void)state;
    pair_new(&p, NULL);
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 7, 1 << 20,
                            MZ_STREAM_INITIAL_WINDOW - 10, &ev, &e), MZ_OK);
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, 7, MZ_STREAM_INITIAL_WINDOW - 10, 11, &ev, &e),
           MZ_EPROTO, &e, "out of window: 11 bytes with 10 of credit left");
    assert_int_equal(ev.code, MZ_STREAM_RESET_PROTOCOL);
    /* Notifications count against the same credit. */
    {
        uint8_t x = 0;
        uint32_t id;
        mz_stream_frame f;

        assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, &x, 1, &id, &e), MZ_OK);
        assert_true(mz__streams_next(p.a, &f));
        assert_int_equal(inject(p.a, false, MZ_FRAME_NOTIFY, 0, id, 0,
                                MZ_STREAM_INITIAL_WINDOW, &ev, &e), MZ_OK);
        assert_int_equal(ev.kind, MZ_STREAM_EV_NOTIFY);
        expect(inject(p.a, false, MZ_FRAME_NOTIFY, 0, id, 0, 1, &ev, &e), MZ_EPROTO, &e,
               "out of window: notify of 1 bytes");
    }
    pair_free(&p);
}

static void test_refuse_after_end_and_reuse(void **state)
{
    struct pair p;
    mz_stream_frame f;
    mz_stream_event ev;
    uint8_t res[4] = "abc";
    mz_err e;

    (void)state;
    pair_new(&p, NULL);
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD | MZ_FRAME_F_END, 7,
                            10, 10, &ev, &e), MZ_OK);
    /* The stream stays open (A has not answered): a chunk after END. */
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, 7, 10, 1, &ev, &e), MZ_EPROTO, &e,
           "chunk after END");
    /* Reuse of an id that is open, and of one that ended cleanly. */
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD | MZ_FRAME_F_END, 9,
                            3, 3, &ev, &e), MZ_OK);
    expect(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 9, 3, 3, &ev, &e), MZ_EPROTO,
           &e, "stream 9: id reused");
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD | MZ_FRAME_F_END, 11,
                            3, 3, &ev, &e), MZ_OK);
    assert_int_equal(mz__streams_answer(p.a, 11, MZ_FRAME_EXECUTE_RESULT, res, 3, &e), MZ_OK);
    assert_true(mz__streams_next(p.a, &f));
    assert_true(f.closed);
    expect(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 11, 3, 3, &ev, &e), MZ_EPROTO,
           &e, "stream 11: id reused");
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, 11, 3, 1, &ev, &e), MZ_EPROTO, &e,
           "after the stream ended");
    /* An answer on a stream A never opened (A's parity). */
    expect(inject(p.a, false, MZ_FRAME_EXECUTE_RESULT, MZ_FRAME_F_HEAD, 40, 3, 3, &ev, &e),
           MZ_ENOTFOUND, &e, "not open");
    /* Data before any HEAD of the answer. */
    {
        uint8_t x = 0;
        uint32_t id;

        assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, &x, 1, &id, &e), MZ_OK);
        expect(inject(p.a, false, MZ_FRAME_DATA, 0, id, 0, 1, &ev, &e), MZ_EPROTO, &e,
               "data before HEAD");
        assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, &x, 1, &id, &e), MZ_OK);
        assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE_RESULT, MZ_FRAME_F_HEAD, id, 5, 1,
                                &ev, &e), MZ_OK);
        expect(inject(p.a, false, MZ_FRAME_EXECUTE_RESULT, MZ_FRAME_F_HEAD, id, 5, 1, &ev, &e),
               MZ_EPROTO, &e, "second HEAD");
    }
    /* Frames of another pair, or not of a stream. */
    {
        mz_frame_hdr h;

        mz__frame_hdr_init(&h, MZ_FRAME_DATA, A, B);
        h.stream_id = 7;
        expect(mz__streams_on_frame(p.a, &h, 0, &ev, &e), MZ_EINVAL, &e, "not of this pair");
        mz__frame_hdr_init(&h, MZ_FRAME_DATA, B, A);
        expect(mz__streams_on_frame(p.a, &h, 0, &ev, &e), MZ_EINVAL, &e, "not a stream frame");
        assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 13, 9, 1, &ev,
                                &e), MZ_OK);
        mz__frame_hdr_init(&h, MZ_FRAME_EXECUTE, B, A);
        h.stream_id = 13;
        expect(mz__streams_on_frame(p.a, &h, 0, &ev, &e), MZ_EPROTO, &e,
               "execute frame without HEAD");
    }
    pair_free(&p);
}

static void test_refuse_too_large(void **state)
{
    struct pair p;
    mz_stream_limits lim = { .max_payload = 1000, .max_streams = 2 };
    mz_stream_event ev;
    uint8_t x[4] = { 0 };
    uint32_t id;
    mz_err e;

    (void)state;
    pair_new(&p, &lim);
    /* At the sender, before anything is sent. */
    expect(mz__streams_open(p.a, MZ_FRAME_EXECUTE, x, 1001, &id, &e), MZ_ELIMIT, &e,
           "too_large: body of 1001 bytes is over the 1000-byte payload limit (--max-payload)");
    assert_int_equal(mz__streams_open_count(p.a), 0);
    /* At the receiver, from the declared length. */
    expect(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 7, 1001, 0, &ev, &e),
           MZ_ELIMIT, &e, "too_large: stream 7 declares 1001 bytes, over the 1000-byte");
    assert_int_equal(ev.code, MZ_STREAM_RESET_TOO_LARGE);
    assert_string_equal(mz__stream_reset_name(ev.code), "too_large");
    expect(inject(p.a, false, MZ_FRAME_DATA, 0, 7, 0, 10, &ev, &e), MZ_ENOTFOUND, &e,
           "ignored");
    /* The default limit is 64 MiB. */
    {
        struct pair q;

        pair_new(&q, NULL);
        expect(inject(q.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 7, (64u << 20) + 1, 0,
                      &ev, &e), MZ_ELIMIT, &e, "67108864-byte payload limit");
        assert_int_equal(inject(q.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 9, 64u << 20,
                                0, &ev, &e), MZ_OK);
        pair_free(&q);
    }
    /* Too many streams. */
    assert_int_equal(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 9, 10, 0, &ev, &e),
                     MZ_OK);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, x, 1, &id, &e), MZ_OK);
    expect(mz__streams_open(p.a, MZ_FRAME_EXECUTE, x, 1, &id, &e), MZ_ELIMIT, &e,
           "2 streams open");
    expect(inject(p.a, false, MZ_FRAME_EXECUTE, MZ_FRAME_F_HEAD, 11, 10, 0, &ev, &e),
           MZ_ELIMIT, &e, "stream 11: refused");
    assert_int_equal(ev.code, MZ_STREAM_RESET_REFUSED);
    pair_free(&p);
}

/* ---- notify, reset ----------------------------------------------------------- */

static void test_notify_and_reset(void **state)
{
    struct pair p;
    mz_stream_frame f, n;
    mz_stream_event ev;
    uint8_t req[10] = { 0 }, note[] = "{\"progress\":0.5}";
    uint32_t id;
    mz_err e;

    (void)state;
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, req, sizeof req, &id, &e), MZ_OK);
    assert_true(mz__streams_next(p.a, &f));
    assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
    /* The host notifies before answering; the caller may not. */
    assert_int_equal(mz__streams_notify(p.b, id, note, sizeof note, &n, &e), MZ_OK);
    assert_int_equal(n.type, MZ_FRAME_NOTIFY);
    assert_ptr_equal(n.body, note);
    assert_int_equal(deliver(p.a, B, A, &n, &ev, &e), MZ_OK);
    assert_int_equal(ev.kind, MZ_STREAM_EV_NOTIFY);
    assert_int_equal(ev.len, sizeof note);
    expect(mz__streams_notify(p.a, id, note, sizeof note, &n, &e), MZ_ESTATE, &e,
           "only the answering side");
    expect(inject(p.b, true, MZ_FRAME_NOTIFY, 0, id, 0, 5, &ev, &e), MZ_EPROTO, &e,
           "notify from the stream's opener");
    /* That closed it on B; open another to cancel. */
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, req, sizeof req, &id, &e), MZ_OK);
    assert_true(mz__streams_next(p.a, &f));
    assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
    expect(mz__streams_notify(p.b, id, note, MZ_STREAM_INITIAL_WINDOW + 1, &n, &e), MZ_ELIMIT,
           &e, "credit left");
    /* The caller cancels. */
    assert_int_equal(mz__streams_reset(p.a, id, MZ_STREAM_RESET_CANCEL, &f, &e), MZ_OK);
    assert_int_equal(f.type, MZ_FRAME_RESET);
    /* Left: the first call, which B closed (its RESET is the node's to send). */
    assert_int_equal(mz__streams_open_count(p.a), 1);
    assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
    assert_int_equal(ev.kind, MZ_STREAM_EV_RESET);
    assert_int_equal(ev.code, MZ_STREAM_RESET_CANCEL);
    assert_true(ev.closed);
    assert_int_equal(mz__streams_open_count(p.b), 0);
    /* The host's late notify and answer are ignored. */
    expect(inject(p.a, false, MZ_FRAME_NOTIFY, 0, id, 0, 5, &ev, &e), MZ_ENOTFOUND, &e,
           "ignored");
    expect(mz__streams_reset(p.a, id, 0, &f, &e), MZ_ENOTFOUND, &e, "not open");
    expect(inject(p.a, false, MZ_FRAME_RESET, 0, 2, 0, 0, &ev, &e), MZ_ENOTFOUND, &e,
           "not open");
    assert_null(mz__stream_reset_name(99));
    pair_free(&p);
}

/* ---- interleaving ----------------------------------------------------------- */

static void test_sched_lanes(void **state)
{
    mz_sched *q = mz__sched_new(2);
    mz_sched_item u[4] = { 0 }, b[2] = { 0 };
    mz_sched_item *order[8];

    (void)state;
    assert_non_null(q);
    assert_true(mz__sched_empty(q));
    for (int i = 0; i < 4; i++)
        mz__sched_push(q, &u[i], MZ_SCHED_URGENT);
    mz__sched_push(q, &b[0], MZ_SCHED_BULK);
    mz__sched_push(q, &b[1], MZ_SCHED_BULK);
    mz__sched_push(q, &b[1], MZ_SCHED_BULK);        /* already queued: no-op */
    for (int i = 0; i < 6; i++)
        order[i] = mz__sched_pop(q);
    /* Two urgent, one bulk, two urgent, one bulk. */
    assert_ptr_equal(order[0], &u[0]);
    assert_ptr_equal(order[1], &u[1]);
    assert_ptr_equal(order[2], &b[0]);
    assert_ptr_equal(order[3], &u[2]);
    assert_ptr_equal(order[4], &u[3]);
    assert_ptr_equal(order[5], &b[1]);
    assert_null(mz__sched_pop(q));
    /* Removal from the middle and the tail. */
    for (int i = 0; i < 3; i++)
        mz__sched_push(q, &u[i], MZ_SCHED_BULK);
    mz__sched_remove(q, &u[1]);
    mz__sched_remove(q, &u[2]);
    mz__sched_remove(q, &u[2]);
    mz__sched_push(q, &u[3], MZ_SCHED_BULK);
    assert_ptr_equal(mz__sched_pop(q), &u[0]);
    assert_ptr_equal(mz__sched_pop(q), &u[3]);
    assert_true(mz__sched_empty(q));
    mz__sched_free(q);
}

/* A 64 MiB body is being sent; small calls opened meanwhile each finish
 * within a couple of frames of the big stream's, not after it. */
static void test_interleaving_fairness(void **state)
{
    struct pair p;
    const size_t big = 64u << 20;
    uint8_t *body = calloc(1, big), small[8][500];
    uint32_t big_id, ids[8];
    mz_stream_frame f, w;
    mz_stream_event ev;
    int frames = 0, big_frames = 0, done = 0;
    bool send;
    mz_err e;

    (void)state;
    assert_non_null(body);
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, body, big, &big_id, &e), MZ_OK);
    /* Send a while, the receiver consuming everything at once. */
    for (int i = 0; i < 100; i++) {
        assert_true(mz__streams_next(p.a, &f));
        assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
        assert_int_equal(mz__streams_consumed(p.b, big_id, f.body_len, &w, &send, &e), MZ_OK);
        if (send)
            assert_int_equal(deliver(p.a, B, A, &w, &ev, &e), MZ_OK);
    }
    for (int i = 0; i < 8; i++) {
        memset(small[i], 'a' + i, sizeof small[i]);
        assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE, small[i], sizeof small[i],
                                          &ids[i], &e), MZ_OK);
    }
    while (done < 8 && frames < 100) {
        assert_true(mz__streams_next(p.a, &f));
        frames++;
        assert_int_equal(deliver(p.b, A, B, &f, &ev, &e), MZ_OK);
        if (f.stream_id == big_id) {
            big_frames++;
            assert_int_equal(mz__streams_consumed(p.b, big_id, f.body_len, &w, &send, &e),
                             MZ_OK);
            if (send)
                assert_int_equal(deliver(p.a, B, A, &w, &ev, &e), MZ_OK);
        } else {
            assert_true(ev.end);
            done++;
        }
    }
    assert_int_equal(done, 8);
    /* Round robin: the big stream got at most one turn per small one. */
    assert_true(big_frames <= 8);
    assert_true(frames <= 16);
    free(body);
    pair_free(&p);
}

/* ---- 64 MiB through sealed frames, bounded buffering ------------------------ */

struct slow_rx {
    crypto_generichash_state h;
    uint64_t held, max_held;        /* received, not yet consumed */
};

static void test_64mib_sealed(void **state)
{
    struct pair p;
    const size_t big = 64u << 20;
    uint8_t *body = malloc(big), *frame = malloc(MZ_DEFAULT_STREAM_CHUNK + 512);
    uint8_t *plain = malloc(MZ_DEFAULT_STREAM_CHUNK + 512);
    uint8_t want[32], got[32];
    struct slow_rx rx = { 0 };
    uint64_t received = 0, max_out = 0;
    mz_stream_frame f, w;
    mz_stream_event ev;
    mz_stream_info ia;
    uint32_t id;
    int rounds = 0;
    bool closed = false, ended = false;
    mz_err e;

    (void)state;
    assert_true(body && frame && plain);
    for (size_t i = 0; i < big; i++)
        body[i] = (uint8_t)(i * 2654435761u >> 13);
    crypto_generichash(want, sizeof want, body, big, NULL, 0);
    crypto_generichash_init(&rx.h, NULL, 0, sizeof got);
    pair_new(&p, NULL);
    assert_int_equal(mz__streams_open(p.a, MZ_FRAME_EXECUTE_RESULT, body, big, &id, &e), MZ_OK);
    while (!ended && rounds++ < 100000) {
        /* The sender sends all its credit allows ... */
        while (mz__streams_next(p.a, &f)) {
            mz_frame_hdr h, d;
            size_t n = 0, pl = 0;

            hdr_of(&f, A, B, &h);
            assert_int_equal(mz__frame_seal(&h, f.body, f.body_len, KEY, frame,
                                            MZ_DEFAULT_STREAM_CHUNK + 512, &n, &e), MZ_OK);
            assert_int_equal(mz__frame_decode(frame, n, 0, &d, &e), MZ_OK);
            assert_int_equal(mz__frame_open(frame, n, &d, KEY, plain, &pl, &e), MZ_OK);
            assert_int_equal(mz__streams_on_frame(p.b, &d, pl, &ev, &e), MZ_OK);
            crypto_generichash_update(&rx.h, plain, pl);
            received += pl;
            rx.held += pl;
            if (rx.held > rx.max_held)
                rx.max_held = rx.held;
            if (mz__streams_info(p.a, id, &ia) == MZ_OK && ia.out_sent - (received - rx.held) >
                max_out)
                max_out = ia.out_sent - (received - rx.held);
            ended = ev.end;
        }
        /* ... and the slow receiver consumes 40 KiB per round. */
        {
            uint64_t n = rx.held < 40960 ? rx.held : 40960;
            bool send = false;

            if (!ended) {
                assert_int_equal(mz__streams_consumed(p.b, id, n, &w, &send, &e), MZ_OK);
                rx.held -= n;
            }
            if (send)
                assert_int_equal(deliver(p.a, B, A, &w, &ev, &e), MZ_OK);
        }
    }
    assert_true(ended);
    assert_int_equal(received, big);
    /* An empty answer closes the stream on both sides. */
    assert_int_equal(mz__streams_answer(p.b, id, MZ_FRAME_EXECUTE_RESULT, NULL, 0, &e), MZ_OK);
    assert_true(mz__streams_next(p.b, &f));
    assert_true(f.closed);
    assert_int_equal(f.flags, MZ_FRAME_F_HEAD | MZ_FRAME_F_END);
    assert_int_equal(deliver(p.a, B, A, &f, &ev, &e), MZ_OK);
    closed = ev.closed;
    assert_true(closed);
    crypto_generichash_final(&rx.h, got, sizeof got);
    assert_memory_equal(want, got, sizeof got);
    /* The receiver never held more than the window it granted. */
    assert_true(rx.max_held <= MZ_STREAM_INITIAL_WINDOW);
    assert_true(max_out <= MZ_STREAM_INITIAL_WINDOW);
    assert_int_equal(mz__streams_open_count(p.a), 0);
    assert_int_equal(mz__streams_open_count(p.b), 0);
    free(body);
    free(frame);
    free(plain);
    pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_call),
        cmocka_unit_test(test_parity_and_ids),
        cmocka_unit_test(test_window_accounting),
        cmocka_unit_test(test_refuse_chunks),
        cmocka_unit_test(test_refuse_out_of_window),
        cmocka_unit_test(test_refuse_after_end_and_reuse),
        cmocka_unit_test(test_refuse_too_large),
        cmocka_unit_test(test_notify_and_reset),
        cmocka_unit_test(test_sched_lanes),
        cmocka_unit_test(test_interleaving_fairness),
        cmocka_unit_test(test_64mib_sealed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
