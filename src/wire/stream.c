/* Stream state machine and round-robin scheduler (stream.h; PROTOCOL.md
 * "Wire v2", "Streams" and "Flow control"). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "wire/stream.h"

/* ---- scheduler ------------------------------------------------------------ */

struct mz_sched {
    mz_sched_item *head[2], *tail[2];   /* FIFO per lane */
    unsigned burst;                     /* urgent pops before one bulk pop */
    unsigned run;                       /* urgent pops since the last bulk one */
};

mz_sched *mz__sched_new(unsigned burst)
{
    mz_sched *q = calloc(1, sizeof *q);

    if (q != NULL)
        q->burst = burst ? burst : 8;
    return q;
}

void mz__sched_free(mz_sched *q)
{
    free(q);
}

void mz__sched_push(mz_sched *q, mz_sched_item *it, int lane)
{
    lane = lane == MZ_SCHED_URGENT ? MZ_SCHED_URGENT : MZ_SCHED_BULK;
    if (it->queued)
        return;
    it->queued = true;
    it->lane = lane;
    it->next = NULL;
    if (q->tail[lane] != NULL)
        q->tail[lane]->next = it;
    else
        q->head[lane] = it;
    q->tail[lane] = it;
}

static mz_sched_item *s_pop_lane(mz_sched *q, int lane)
{
    mz_sched_item *it = q->head[lane];

    if (it == NULL)
        return NULL;
    q->head[lane] = it->next;
    if (q->head[lane] == NULL)
        q->tail[lane] = NULL;
    it->next = NULL;
    it->queued = false;
    return it;
}

mz_sched_item *mz__sched_pop(mz_sched *q)
{
    bool bulk_turn = q->head[MZ_SCHED_BULK] != NULL && q->run >= q->burst;

    if (q->head[MZ_SCHED_URGENT] != NULL && !bulk_turn) {
        q->run++;
        return s_pop_lane(q, MZ_SCHED_URGENT);
    }
    q->run = 0;
    return s_pop_lane(q, MZ_SCHED_BULK);
}

void mz__sched_remove(mz_sched *q, mz_sched_item *it)
{
    mz_sched_item **pp, *prev = NULL;

    if (!it->queued)
        return;
    for (pp = &q->head[it->lane]; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        if (*pp != it)
            continue;
        *pp = it->next;
        if (q->tail[it->lane] == it)
            q->tail[it->lane] = prev;
        break;
    }
    it->next = NULL;
    it->queued = false;
}

bool mz__sched_empty(const mz_sched *q)
{
    return q->head[0] == NULL && q->head[1] == NULL;
}

/* ---- reset codes ----------------------------------------------------------- */

const char *mz__stream_reset_name(uint64_t code)
{
    switch (code) {
#define MZ_X(name, c, text) case c: return text;
        MZ_STREAM_RESET_MAP(MZ_X)
#undef MZ_X
    }
    return NULL;
}

/* ---- stream set ------------------------------------------------------------ */

struct s_out {                      /* the half this node sends */
    const uint8_t *body;            /* borrowed */
    uint64_t total, off;            /* body length, bytes handed out */
    uint64_t used, limit;           /* credit used (body + notify bytes), granted */
    uint8_t  type;
    bool     started, head_sent, ended;
};

struct s_in {                       /* the half this node receives */
    uint64_t total, off;            /* declared length, bytes received */
    uint64_t used, granted, consumed;   /* credit: received, granted, consumed */
    uint8_t  type;
    bool     started, ended;
};

struct s_stream {
    mz_sched_item item;             /* first: the ready queue holds streams by it */
    uint32_t id;
    bool     local;                 /* this node opened it */
    struct s_out out;
    struct s_in  in;
};

enum { S_HIST_CLEAN = 1, S_HIST_RESET = 2 };

struct s_hist {
    uint32_t id;
    uint8_t  how;                   /* 0 free, S_HIST_* */
};

struct mz_streams {
    uint8_t self[MZ_FRAME_NODE_LEN], peer[MZ_FRAME_NODE_LEN];
    mz_stream_limits lim;           /* defaults filled in */
    uint32_t parity;                /* 0: this node opens even ids, 1: odd */
    uint32_t next_id;               /* next id this node opens */
    struct s_stream **open;         /* open streams (owned), n_open of them */
    size_t n_open;
    struct s_hist *hist;            /* ring of lim.history closed ids */
    size_t hist_pos;
    mz_sched *ready;                /* streams with data and credit (bulk lane) */
};

static uint32_t s_parity_fix(uint32_t id, uint32_t parity)
{
    id = (id & ~1u) | parity;
    return id == 0 ? 2 : id;
}

mz_status mz__streams_new(mz_streams **out, const uint8_t self[MZ_FRAME_NODE_LEN],
                          const uint8_t peer[MZ_FRAME_NODE_LEN], const mz_stream_limits *lim,
                          uint32_t first_id, mz_err *err)
{
    mz_streams *s = calloc(1, sizeof *s);
    int cmp = memcmp(self, peer, MZ_FRAME_NODE_LEN);

    if (s == NULL)
        return mz_err_set(err, MZ_ENOMEM, "streams: allocating a stream set");
    if (cmp == 0) {
        free(s);
        return mz_err_set(err, MZ_EINVAL, "streams: a node has no streams with itself");
    }
    memcpy(s->self, self, sizeof s->self);
    memcpy(s->peer, peer, sizeof s->peer);
    if (lim != NULL)
        s->lim = *lim;
    s->lim.max_payload = s->lim.max_payload ? s->lim.max_payload : MZ_DEFAULT_MAX_PAYLOAD;
    s->lim.window = s->lim.window ? s->lim.window : MZ_DEFAULT_STREAM_WINDOW;
    s->lim.chunk = s->lim.chunk ? s->lim.chunk : MZ_DEFAULT_STREAM_CHUNK;
    s->lim.max_streams = s->lim.max_streams ? s->lim.max_streams : MZ_DEFAULT_MAX_STREAMS;
    s->lim.history = s->lim.history ? s->lim.history : MZ_DEFAULT_STREAM_HISTORY;
    s->parity = cmp < 0 ? 0 : 1;
    s->next_id = s_parity_fix(first_id, s->parity);
    s->open = calloc(s->lim.max_streams, sizeof *s->open);
    s->hist = calloc(s->lim.history, sizeof *s->hist);
    s->ready = mz__sched_new(0);
    if (s->open == NULL || s->hist == NULL || s->ready == NULL) {
        mz__streams_free(s);
        return mz_err_set(err, MZ_ENOMEM, "streams: allocating tables for %u streams",
                          s->lim.max_streams);
    }
    *out = s;
    return MZ_OK;
}

void mz__streams_free(mz_streams *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->open != NULL && i < s->n_open; i++)
        free(s->open[i]);
    free(s->open);
    free(s->hist);
    mz__sched_free(s->ready);
    free(s);
}

/* Linear: at most max_streams entries, a few hundred compares. */
static struct s_stream *s_find(const mz_streams *s, uint32_t id, size_t *pos)
{
    for (size_t i = 0; i < s->n_open; i++) {
        if (s->open[i]->id == id) {
            if (pos != NULL)
                *pos = i;
            return s->open[i];
        }
    }
    return NULL;
}

static int s_hist_find(const mz_streams *s, uint32_t id)
{
    for (size_t i = 0; i < s->lim.history; i++)
        if (s->hist[i].how != 0 && s->hist[i].id == id)
            return s->hist[i].how;
    return 0;
}

static void s_hist_add(mz_streams *s, uint32_t id, int how)
{
    s->hist[s->hist_pos].id = id;
    s->hist[s->hist_pos].how = (uint8_t)how;
    s->hist_pos = (s->hist_pos + 1) % s->lim.history;
}

/* Forgets stream st (open[pos]); its id goes to the history. */
static void s_close(mz_streams *s, struct s_stream *st, int how)
{
    size_t pos = 0;

    if (s_find(s, st->id, &pos) == st)
        s->open[pos] = s->open[--s->n_open];
    mz__sched_remove(s->ready, &st->item);
    s_hist_add(s, st->id, how);
    free(st);
}

static bool s_done(const struct s_stream *st)
{
    return st->out.ended && st->in.ended;
}

static bool s_out_ready(const struct s_stream *st)
{
    const struct s_out *o = &st->out;

    if (!o->started || o->ended)
        return false;
    /* A HEAD goes out without credit (its first chunk may be empty); DATA
     * needs some, unless only the END is left to say. */
    return !o->head_sent || o->used < o->limit || o->off == o->total;
}

static struct s_stream *s_new_stream(mz_streams *s, uint32_t id, bool local)
{
    struct s_stream *st = calloc(1, sizeof *st);

    if (st == NULL)
        return NULL;
    st->id = id;
    st->local = local;
    st->out.limit = MZ_STREAM_INITIAL_WINDOW;
    st->in.granted = MZ_STREAM_INITIAL_WINDOW;
    s->open[s->n_open++] = st;
    return st;
}

static mz_status s_check_send(const mz_streams *s, uint8_t type, uint64_t len, mz_err *err)
{
    if (!(mz__frame_type_classes(type) & MZ_FRAME_C_UNICAST))
        return mz_err_set(err, MZ_EINVAL, "streams: type 0x%02x is not a unicast type", type);
    if (len > s->lim.max_payload)
        return mz_err_set(err, MZ_ELIMIT, "too_large: body of %llu bytes is over the "
                          "%llu-byte payload limit (--max-payload)", (unsigned long long)len,
                          (unsigned long long)s->lim.max_payload);
    return MZ_OK;
}

static void s_out_start(mz_streams *s, struct s_stream *st, uint8_t type, const uint8_t *body,
                        uint64_t len)
{
    st->out.type = type;
    st->out.body = body;
    st->out.total = len;
    st->out.started = true;
    mz__sched_push(s->ready, &st->item, MZ_SCHED_BULK);
}

mz_status mz__streams_open(mz_streams *s, uint8_t type, const uint8_t *body, uint64_t len,
                           uint32_t *id, mz_err *err)
{
    struct s_stream *st;
    mz_status rc;

    if ((rc = s_check_send(s, type, len, err)) != MZ_OK)
        return rc;
    if (s->n_open >= s->lim.max_streams)
        return mz_err_set(err, MZ_ELIMIT, "streams: %zu streams open with this peer, the limit",
                          s->n_open);
    /* Skip ids still open (only after 2^31 streams could one be). */
    while (s_find(s, s->next_id, NULL) != NULL)
        s->next_id = s_parity_fix(s->next_id + 2, s->parity);
    if ((st = s_new_stream(s, s->next_id, true)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "streams: allocating a stream");
    s->next_id = s_parity_fix(s->next_id + 2, s->parity);
    s_out_start(s, st, type, body, len);
    *id = st->id;
    return MZ_OK;
}

mz_status mz__streams_answer(mz_streams *s, uint32_t id, uint8_t type, const uint8_t *body,
                             uint64_t len, mz_err *err)
{
    struct s_stream *st = s_find(s, id, NULL);
    mz_status rc;

    if (st == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "stream %u: not open", id);
    if (st->local || st->out.started)
        return mz_err_set(err, MZ_ESTATE, "stream %u: %s", id,
                          st->local ? "opened by this node, the peer answers"
                                    : "already answered");
    if ((rc = s_check_send(s, type, len, err)) != MZ_OK)
        return rc;
    s_out_start(s, st, type, body, len);
    return MZ_OK;
}

/* One chunk of st's sending half into *out. */
static void s_chunk(mz_streams *s, struct s_stream *st, mz_stream_frame *out)
{
    struct s_out *o = &st->out;
    uint64_t left = o->total - o->off, credit = o->limit - o->used;
    uint64_t n = left < credit ? left : credit;

    if (n > s->lim.chunk)
        n = s->lim.chunk;
    memset(out, 0, sizeof *out);
    out->stream_id = st->id;
    if (!o->head_sent) {
        out->type = o->type;
        out->flags = MZ_FRAME_F_HEAD;
        out->aux = o->total;
        o->head_sent = true;
    } else {
        out->type = MZ_FRAME_DATA;
        out->aux = o->off;
    }
    out->body = n ? o->body + o->off : NULL;
    out->body_len = (size_t)n;
    o->off += n;
    o->used += n;
    if (o->off == o->total) {
        out->flags |= MZ_FRAME_F_END;
        o->ended = true;
    }
}

bool mz__streams_next(mz_streams *s, mz_stream_frame *out)
{
    mz_sched_item *it;

    while ((it = mz__sched_pop(s->ready)) != NULL) {
        struct s_stream *st = (struct s_stream *)it;

        if (!s_out_ready(st))
            continue;               /* waits for a WINDOW_UPDATE to queue it again */
        s_chunk(s, st, out);
        if (s_done(st)) {
            out->closed = true;
            s_close(s, st, S_HIST_CLEAN);
        } else if (s_out_ready(st)) {
            mz__sched_push(s->ready, &st->item, MZ_SCHED_BULK);
        }
        return true;
    }
    return false;
}

bool mz__streams_pending(const mz_streams *s)
{
    for (size_t i = 0; i < s->n_open; i++)
        if (s_out_ready(s->open[i]) && s->open[i]->item.queued)
            return true;
    return false;
}

/* ---- receiving ------------------------------------------------------------ */

/* Refuses with code for the answering RESET; the stream (if any) is closed. */
static mz_status s_refuse(mz_streams *s, struct s_stream *st, mz_stream_event *ev,
                          uint64_t code)
{
    ev->code = code;
    ev->closed = true;
    if (st != NULL)
        s_close(s, st, S_HIST_RESET);
    return MZ_OK;
}

/* Body bytes of the incoming half (HEAD's first chunk or DATA). */
static mz_status s_in_data(mz_streams *s, struct s_stream *st, const mz_frame_hdr *h,
                           uint64_t off, size_t len, mz_stream_event *ev, mz_err *err)
{
    struct s_in *in = &st->in;
    bool end = (h->flags & MZ_FRAME_F_END) != 0;
    mz_status rc = MZ_EPROTO;

    ev->offset = off;
    ev->len = len;
    if (in->ended)
        mz_err_set(err, rc, "stream %u: chunk after END", st->id);
    else if (off != in->off)
        mz_err_set(err, rc, "stream %u: chunk at offset %llu, expected %llu", st->id,
                   (unsigned long long)off, (unsigned long long)in->off);
    else if (len > in->total - in->off)
        mz_err_set(err, rc, "stream %u: chunk of %zu bytes at %llu runs past the declared "
                   "%llu bytes", st->id, len, (unsigned long long)off,
                   (unsigned long long)in->total);
    else if (len > in->granted - in->used)
        mz_err_set(err, rc, "stream %u: out of window: %zu bytes with %llu of credit left",
                   st->id, len, (unsigned long long)(in->granted - in->used));
    else if (len == 0 && !end && h->type == MZ_FRAME_DATA)
        mz_err_set(err, rc, "stream %u: empty chunk without END", st->id);
    else if (end && off + len != in->total)
        mz_err_set(err, rc, "stream %u: END at %llu of a declared %llu bytes (truncated)",
                   st->id, (unsigned long long)(off + len), (unsigned long long)in->total);
    else
        rc = MZ_OK;
    if (rc != MZ_OK)
        return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL), rc;
    in->off += len;
    in->used += len;
    if (end) {
        in->ended = true;
        ev->end = true;
    }
    if (s_done(st)) {
        ev->closed = true;
        s_close(s, st, S_HIST_CLEAN);
    }
    return MZ_OK;
}

/* An id without an open stream: a late frame of a reset stream is ignored
 * (MZ_ENOTFOUND), one of a cleanly ended stream is a violation. */
static mz_status s_not_open(const mz_streams *s, uint32_t id, const char *what, mz_err *err)
{
    if (s_hist_find(s, id) == S_HIST_CLEAN)
        return mz_err_set(err, MZ_EPROTO, "stream %u: %s after the stream ended", id, what);
    return mz_err_set(err, MZ_ENOTFOUND, "stream %u: %s on a stream that is not open (reset "
                      "or forgotten); ignored", id, what);
}

static mz_status s_on_head(mz_streams *s, const mz_frame_hdr *h, size_t len,
                           mz_stream_event *ev, mz_err *err)
{
    uint32_t id = h->stream_id;
    bool theirs = (id & 1u) != s->parity;
    struct s_stream *st = s_find(s, id, NULL);
    unsigned long long lim = (unsigned long long)s->lim.max_payload;

    ev->kind = MZ_STREAM_EV_HEAD;
    ev->type = h->type;
    ev->total = h->aux;
    if (theirs && (st != NULL || s_hist_find(s, id) != 0)) {
        if (st != NULL)
            s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL);
        return mz_err_set(err, MZ_EPROTO, "stream %u: id reused (a stream with it is open or "
                          "recently closed)", id);
    }
    if (!theirs && st == NULL)
        return s_not_open(s, id, "answer", err);
    if (!theirs && st->in.started)
        return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL),
               mz_err_set(err, MZ_EPROTO, "stream %u: second HEAD on the answer", id);
    if (h->aux > s->lim.max_payload) {
        if (theirs)
            s_hist_add(s, id, S_HIST_RESET);
        s_refuse(s, st, ev, MZ_STREAM_RESET_TOO_LARGE);
        return mz_err_set(err, MZ_ELIMIT, "too_large: stream %u declares %llu bytes, over the "
                          "%llu-byte payload limit (--max-payload)", id,
                          (unsigned long long)h->aux, lim);
    }
    if (theirs && s->n_open >= s->lim.max_streams) {
        s_hist_add(s, id, S_HIST_RESET);
        s_refuse(s, NULL, ev, MZ_STREAM_RESET_REFUSED);
        return mz_err_set(err, MZ_ELIMIT, "stream %u: refused, %zu streams already open with "
                          "this peer (the limit)", id, s->n_open);
    }
    if (theirs && (st = s_new_stream(s, id, false)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "streams: allocating a stream");
    ev->local = st->local;
    st->in.type = h->type;
    st->in.total = h->aux;
    st->in.started = true;
    return s_in_data(s, st, h, 0, len, ev, err);
}

static mz_status s_on_window(mz_streams *s, struct s_stream *st, const mz_frame_hdr *h,
                             size_t len, mz_stream_event *ev, mz_err *err)
{
    ev->kind = MZ_STREAM_EV_WINDOW;
    if (len != 0)
        return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL),
               mz_err_set(err, MZ_EPROTO, "stream %u: window_update with a %zu-byte body",
                          st->id, len);
    /* An absolute limit: a smaller one than known is stale and changes
     * nothing (as in QUIC's MAX_STREAM_DATA). */
    if (h->aux > st->out.limit)
        st->out.limit = h->aux;
    if (s_out_ready(st))
        mz__sched_push(s->ready, &st->item, MZ_SCHED_BULK);
    return MZ_OK;
}

static mz_status s_on_notify(mz_streams *s, struct s_stream *st, size_t len,
                             mz_stream_event *ev, mz_err *err)
{
    struct s_in *in = &st->in;
    mz_status rc = MZ_EPROTO;

    ev->kind = MZ_STREAM_EV_NOTIFY;
    ev->len = len;
    if (!st->local)
        mz_err_set(err, rc, "stream %u: notify from the stream's opener", st->id);
    else if (in->ended)
        mz_err_set(err, rc, "stream %u: notify after the answer's END", st->id);
    else if (len == 0)
        mz_err_set(err, rc, "stream %u: empty notify", st->id);
    else if (len > in->granted - in->used)
        mz_err_set(err, rc, "stream %u: out of window: notify of %zu bytes with %llu of credit "
                   "left", st->id, len, (unsigned long long)(in->granted - in->used));
    else
        rc = MZ_OK;
    if (rc != MZ_OK)
        return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL), rc;
    in->used += len;
    return MZ_OK;
}

mz_status mz__streams_on_frame(mz_streams *s, const mz_frame_hdr *h, size_t plain_len,
                               mz_stream_event *ev, mz_err *err)
{
    struct s_stream *st;
    const char *what = mz__frame_type_name(h->type);

    memset(ev, 0, sizeof *ev);
    ev->stream_id = h->stream_id;
    if (memcmp(h->src, s->peer, MZ_FRAME_NODE_LEN) != 0 ||
        memcmp(h->dst, s->self, MZ_FRAME_NODE_LEN) != 0)
        return mz_err_set(err, MZ_EINVAL, "stream %u: frame is not of this pair of nodes",
                          h->stream_id);
    if (h->stream_id == 0 || what == NULL)
        return mz_err_set(err, MZ_EINVAL, "streams: not a stream frame");
    if (h->flags & MZ_FRAME_F_HEAD)
        return s_on_head(s, h, plain_len, ev, err);
    if ((st = s_find(s, h->stream_id, NULL)) == NULL)
        return s_not_open(s, h->stream_id, what, err);
    ev->local = st->local;
    switch (h->type) {
    case MZ_FRAME_DATA:
        ev->kind = MZ_STREAM_EV_DATA;
        if (!st->in.started)
            return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL),
                   mz_err_set(err, MZ_EPROTO, "stream %u: data before HEAD", h->stream_id);
        return s_in_data(s, st, h, h->aux, plain_len, ev, err);
    case MZ_FRAME_WINDOW_UPDATE:
        return s_on_window(s, st, h, plain_len, ev, err);
    case MZ_FRAME_NOTIFY:
        return s_on_notify(s, st, plain_len, ev, err);
    case MZ_FRAME_RESET:
        ev->kind = MZ_STREAM_EV_RESET;
        ev->code = h->aux;
        ev->closed = true;
        s_close(s, st, S_HIST_RESET);
        if (plain_len > MZ_STREAM_MAX_REASON)
            return mz_err_set(err, MZ_EPROTO, "stream %u: reset reason of %zu bytes, at most %d",
                              h->stream_id, plain_len, MZ_STREAM_MAX_REASON);
        return MZ_OK;
    default:
        return s_refuse(s, st, ev, MZ_STREAM_RESET_PROTOCOL),
               mz_err_set(err, MZ_EPROTO, "stream %u: %s frame without HEAD", h->stream_id,
                          what);
    }
}

/* ---- receiver and sender controls ----------------------------------------- */

mz_status mz__streams_consumed(mz_streams *s, uint32_t id, uint64_t n, mz_stream_frame *out,
                               bool *send, mz_err *err)
{
    struct s_stream *st = s_find(s, id, NULL);
    uint64_t target;

    *send = false;
    if (st == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "stream %u: not open", id);
    if (n > st->in.used - st->in.consumed)
        return mz_err_set(err, MZ_EINVAL, "stream %u: consuming %llu bytes, %llu received and "
                          "not consumed", id, (unsigned long long)n,
                          (unsigned long long)(st->in.used - st->in.consumed));
    st->in.consumed += n;
    target = st->in.consumed + s->lim.window;
    /* Grant in steps of half a window (yamux, HTTP/2 practice): one update
     * per half window instead of one per chunk. */
    if (st->in.ended || target < st->in.granted || target - st->in.granted < s->lim.window / 2)
        return MZ_OK;
    st->in.granted = target;
    memset(out, 0, sizeof *out);
    out->type = MZ_FRAME_WINDOW_UPDATE;
    out->stream_id = id;
    out->aux = target;
    *send = true;
    return MZ_OK;
}

mz_status mz__streams_notify(mz_streams *s, uint32_t id, const uint8_t *body, size_t len,
                             mz_stream_frame *out, mz_err *err)
{
    struct s_stream *st = s_find(s, id, NULL);

    if (st == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "stream %u: not open", id);
    if (st->local || st->out.ended)
        return mz_err_set(err, MZ_ESTATE, "stream %u: %s", id,
                          st->local ? "only the answering side notifies" : "answer already ended");
    if (len == 0 || len > st->out.limit - st->out.used)
        return mz_err_set(err, len ? MZ_ELIMIT : MZ_EINVAL, "stream %u: notify of %zu bytes "
                          "with %llu of credit left", id, len,
                          (unsigned long long)(st->out.limit - st->out.used));
    st->out.used += len;
    memset(out, 0, sizeof *out);
    out->type = MZ_FRAME_NOTIFY;
    out->stream_id = id;
    out->body = body;
    out->body_len = len;
    return MZ_OK;
}

void mz__stream_reset_frame(uint32_t id, uint64_t code, mz_stream_frame *out)
{
    memset(out, 0, sizeof *out);
    out->type = MZ_FRAME_RESET;
    out->stream_id = id;
    out->aux = code;
    out->closed = true;
}

mz_status mz__streams_reset(mz_streams *s, uint32_t id, uint64_t code, mz_stream_frame *out,
                            mz_err *err)
{
    struct s_stream *st = s_find(s, id, NULL);

    if (st == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "stream %u: not open", id);
    s_close(s, st, S_HIST_RESET);
    mz__stream_reset_frame(id, code, out);
    return MZ_OK;
}

size_t mz__streams_open_count(const mz_streams *s)
{
    return s->n_open;
}

mz_status mz__streams_info(const mz_streams *s, uint32_t id, mz_stream_info *info)
{
    const struct s_stream *st = s_find(s, id, NULL);

    if (st == NULL)
        return MZ_ENOTFOUND;
    *info = (mz_stream_info){
        .local = st->local,
        .out_total = st->out.total, .out_sent = st->out.off,
        .out_credit_used = st->out.used, .out_credit_limit = st->out.limit,
        .in_total = st->in.total, .in_received = st->in.off, .in_credit_used = st->in.used,
        .in_granted = st->in.granted, .in_consumed = st->in.consumed,
        .out_started = st->out.started, .out_ended = st->out.ended,
        .in_started = st->in.started, .in_ended = st->in.ended,
    };
    return MZ_OK;
}
