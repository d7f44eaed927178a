/* The stream state machine (src/wire/stream.h), driven by a script: each
 * input byte picks an operation (open, answer, send the next chunk,
 * consume, notify, reset) on a well-behaved pair of nodes A and B, or
 * feeds a third set C a frame header made of the following input bytes.
 * Small limits (1 KiB chunks, 4 KiB window, 4 streams, 512 KiB payload)
 * so short inputs reach every refusal. Beyond "no crash", checks that
 *  - between A and B, which follow the protocol, every frame is accepted,
 *    or refused only as a stream limit (refused, answered with RESET) or
 *    ignored as late (after a reset);
 *  - every open stream's counters hold: credit used within the grant,
 *    consumed within received, sent within the body;
 *  - no more streams are open than the limit;
 *  - after the script, delivering everything left and consuming it all
 *    leaves the pair's credit consistent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"
#include "wire/stream.h"

#define S_MAX_IDS 16

static const mz_stream_limits s_lim = {
    .max_payload = 512 * 1024, .window = 4096, .chunk = 1024, .max_streams = 4, .history = 8,
};
static uint8_t s_body[600 * 1024];
static const uint8_t s_a[32] = { 0xa }, s_b[32] = { 0xb }, s_c[32] = { 0xc };

struct side {
    mz_streams *s;
    const uint8_t *self, *peer;
    uint32_t ids[S_MAX_IDS];        /* streams seen, most recent last */
    size_t n_ids;
};

static void s_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_stream: INVARIANT %s: %s\n", what, detail ? detail : "");
    abort();
}

static void s_remember(struct side *x, uint32_t id)
{
    if (x->n_ids == S_MAX_IDS) {
        memmove(x->ids, x->ids + 1, (S_MAX_IDS - 1) * sizeof x->ids[0]);
        x->n_ids--;
    }
    x->ids[x->n_ids++] = id;
}

static void s_check(const struct side *x)
{
    mz_stream_info i;

    if (mz__streams_open_count(x->s) > s_lim.max_streams)
        s_fail("more streams open than the limit", NULL);
    for (size_t k = 0; k < x->n_ids; k++) {
        if (mz__streams_info(x->s, x->ids[k], &i) != MZ_OK)
            continue;
        if (i.out_credit_used > i.out_credit_limit || i.out_sent > i.out_total ||
            i.in_credit_used > i.in_granted || i.in_consumed > i.in_credit_used ||
            i.in_received > i.in_total || i.in_granted - i.in_consumed >
            (s_lim.window > MZ_STREAM_INITIAL_WINDOW ? s_lim.window : MZ_STREAM_INITIAL_WINDOW))
            s_fail("stream counters out of bounds", NULL);
    }
}

/* Delivers f from `from` to `to` (NULL: nowhere). */
static void s_deliver(struct side *to, struct side *from, const mz_stream_frame *f);

/* A refusal between well-behaved nodes must be a stream limit, answered by
 * a RESET, or a late frame. */
static void s_refused(struct side *to, struct side *from, mz_status rc,
                      const mz_stream_event *ev, const mz_err *e)
{
    mz_stream_frame r;

    if (rc == MZ_ENOTFOUND)
        return;
    if (rc != MZ_ELIMIT || ev->code != MZ_STREAM_RESET_REFUSED)
        s_fail("a frame between well-behaved nodes refused", e->msg);
    mz__stream_reset_frame(ev->stream_id, ev->code, &r);
    s_deliver(from, to, &r);
}

static void s_deliver(struct side *to, struct side *from, const mz_stream_frame *f)
{
    mz_frame_hdr h;
    mz_stream_event ev;
    mz_status rc;
    mz_err e;

    if (to == NULL)
        return;                 /* C's own frames go nowhere */
    mz__frame_hdr_init(&h, f->type, from->self, to->self);
    h.flags = (uint16_t)(f->flags | MZ_FRAME_F_SEALED);
    h.stream_id = f->stream_id;
    h.aux = f->aux;
    rc = mz__streams_on_frame(to->s, &h, f->body_len, &ev, &e);
    if (rc != MZ_OK)
        s_refused(to, from, rc, &ev, &e);
    else if (ev.kind == MZ_STREAM_EV_HEAD && !ev.local)
        s_remember(to, ev.stream_id);
}

static void s_consume(struct side *x, struct side *peer, uint32_t id, uint64_t want)
{
    mz_stream_info i;
    mz_stream_frame w;
    bool send = false;
    mz_err e;

    if (mz__streams_info(x->s, id, &i) != MZ_OK)
        return;
    if (want > i.in_credit_used - i.in_consumed)
        want = i.in_credit_used - i.in_consumed;
    if (mz__streams_consumed(x->s, id, want, &w, &send, &e) != MZ_OK)
        s_fail("consuming what was received", e.msg);
    if (send)
        s_deliver(peer, x, &w);
}

/* One scripted step on side x (peer y); returns bytes of script used. */
static size_t s_step(struct side *x, struct side *y, uint8_t op, const uint8_t *arg,
                     size_t left)
{
    uint32_t pick = left > 0 ? arg[0] : 0, id;
    uint64_t len = left > 1 ? ((uint64_t)arg[0] << 8 | arg[1]) * 9 : 0;
    mz_stream_frame f;
    mz_err e;

    id = x->n_ids ? x->ids[pick % x->n_ids] : 0;
    switch (op % 7) {
    case 0:
        if (mz__streams_open(x->s, MZ_FRAME_EXECUTE, s_body, len, &id, &e) == MZ_OK)
            s_remember(x, id);
        return 2;
    case 1:
        (void)mz__streams_answer(x->s, id, MZ_FRAME_EXECUTE_RESULT, s_body, len, &e);
        return 2;
    case 2:
        for (unsigned k = 0; k <= pick % 8 && mz__streams_next(x->s, &f); k++)
            s_deliver(y, x, &f);
        return 1;
    case 3:
        s_consume(x, y, id, len);
        return 2;
    case 4:
        if (mz__streams_notify(x->s, id, s_body, 1 + len % 2048, &f, &e) == MZ_OK)
            s_deliver(y, x, &f);
        return 2;
    case 5:
        if (mz__streams_reset(x->s, id, MZ_STREAM_RESET_CANCEL, &f, &e) == MZ_OK)
            s_deliver(y, x, &f);
        return 1;
    default:
        return 0;
    }
}

/* A header for C from 14 input bytes: type, flags, id, aux, length. */
static size_t s_hostile(struct side *c, const uint8_t *p, size_t left)
{
    static const uint8_t types[] = { MZ_FRAME_EXECUTE, MZ_FRAME_EXECUTE_RESULT, MZ_FRAME_DATA,
                                     MZ_FRAME_WINDOW_UPDATE, MZ_FRAME_RESET, MZ_FRAME_NOTIFY,
                                     MZ_FRAME_QUERY, MZ_FRAME_EVENT };
    mz_frame_hdr h;
    mz_stream_event ev;
    mz_err e;

    if (left < 14)
        return left;
    mz__frame_hdr_init(&h, types[p[0] % sizeof types], p[1] & 0x80 ? s_c : s_a, s_b);
    h.flags = (uint16_t)(p[1] & (MZ_FRAME_F_HEAD | MZ_FRAME_F_END));
    h.stream_id = (uint32_t)p[2] % 24;
    h.aux = (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
            (uint64_t)p[6] << 8 | p[7];
    if (p[8] & 1)
        h.aux &= 0xffff;
    if (mz__streams_on_frame(c->s, &h, ((size_t)p[9] << 8 | p[10]) % 9000, &ev, &e) != MZ_OK &&
        e.msg[0] == '\0')
        s_fail("a refusal without a message", NULL);
    if (ev.kind == MZ_STREAM_EV_HEAD)
        s_remember(c, h.stream_id);
    s_step(c, NULL, p[11], p + 12, 2);
    return 14;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct side a = { .self = s_a, .peer = s_b }, b = { .self = s_b, .peer = s_a };
    struct side c = { .self = s_b, .peer = s_a };
    mz_stream_frame f;
    mz_err e;
    size_t i = 0;

    if (mz__streams_new(&a.s, s_a, s_b, &s_lim, 10, &e) != MZ_OK ||
        mz__streams_new(&b.s, s_b, s_a, &s_lim, 3, &e) != MZ_OK ||
        mz__streams_new(&c.s, s_b, s_a, &s_lim, 5, &e) != MZ_OK)
        abort();
    while (i < size) {
        uint8_t op = data[i++];

        if (op >= 0xf0)
            i += s_hostile(&c, data + i, size - i);
        else if (op & 0x80)
            i += s_step(&b, &a, op, data + i, size - i);
        else
            i += s_step(&a, &b, op, data + i, size - i);
        s_check(&a);
        s_check(&b);
        s_check(&c);
    }
    /* Drain: whatever is left flows once consumed (bounded rounds). */
    for (int round = 0; round < 64; round++) {
        for (size_t k = 0; k < a.n_ids; k++)
            s_consume(&a, &b, a.ids[k], UINT64_MAX);
        for (size_t k = 0; k < b.n_ids; k++)
            s_consume(&b, &a, b.ids[k], UINT64_MAX);
        while (mz__streams_next(a.s, &f))
            s_deliver(&b, &a, &f);
        while (mz__streams_next(b.s, &f))
            s_deliver(&a, &b, &f);
    }
    s_check(&a);
    s_check(&b);
    mz__streams_free(a.s);
    mz__streams_free(b.s);
    mz__streams_free(c.s);
    return 0;
}
