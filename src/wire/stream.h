/* Streams over binary frames (PROTOCOL.md "Wire v2", "Streams"): a body
 * larger than one frame (a call's params or result, up to the payload
 * limit) travels as a HEAD frame and DATA frames of one stream, with
 * credit-based flow control per stream half, NOTIFY frames (progress, log)
 * from the answering side and RESET (cancel) from either.
 *
 * A pure state machine per pair of nodes (this node and one peer): feed it
 * the headers of frames that arrived (already opened or verified), and it
 * says what happened; ask it for the next frame to send, and it hands out
 * HEAD and DATA chunks round-robin over its streams within their credit.
 * It never stores body bytes: a sending half borrows its body, a receiving
 * half only counts, so what a receiver holds is bounded by the window it
 * grants. No I/O, no clock, one loop (not thread-safe). */
#ifndef MZ_WIRE_STREAM_H
#define MZ_WIRE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"
#include "wire/frame.h"

/* Largest body of one stream half (a call's params or its result); over it
 * a sender is refused before anything is sent and a receiver resets the
 * stream with too_large. The node's --max-payload. */
#define MZ_DEFAULT_MAX_PAYLOAD ((uint64_t)64 * 1024 * 1024)
/* Credit every stream half starts with, before any WINDOW_UPDATE: part of
 * the protocol, so both ends agree without a negotiation. */
#define MZ_STREAM_INITIAL_WINDOW (256 * 1024)
/* How far a receiver keeps its grant ahead of what it has consumed. */
#define MZ_DEFAULT_STREAM_WINDOW (256 * 1024)
/* Largest HEAD/DATA chunk sent: small enough that chunks of a big body
 * interleave with other traffic every few tens of microseconds. */
#define MZ_DEFAULT_STREAM_CHUNK (16 * 1024)
/* Open streams with one peer, both directions together. */
#define MZ_DEFAULT_MAX_STREAMS 256
/* Closed stream ids remembered, so a reused id is refused. */
#define MZ_DEFAULT_STREAM_HISTORY 1024
/* Longest RESET reason text. */
#define MZ_STREAM_MAX_REASON 256

typedef struct mz_stream_limits {
    uint64_t max_payload;   /* 0: MZ_DEFAULT_MAX_PAYLOAD */
    uint32_t window;        /* 0: MZ_DEFAULT_STREAM_WINDOW */
    uint32_t chunk;         /* 0: MZ_DEFAULT_STREAM_CHUNK */
    uint32_t max_streams;   /* 0: MZ_DEFAULT_MAX_STREAMS */
    uint32_t history;       /* 0: MZ_DEFAULT_STREAM_HISTORY */
} mz_stream_limits;

/* RESET codes (the frame's aux): name, value, wire name. */
#define MZ_STREAM_RESET_MAP(X)            \
    X(CANCEL,    0, "cancelled")          \
    X(REFUSED,   1, "refused")            \
    X(TOO_LARGE, 2, "too_large")          \
    X(PROTOCOL,  3, "protocol")           \
    X(INTERNAL,  4, "internal")

typedef enum {
#define MZ_X(name, code, text) MZ_STREAM_RESET_##name = code,
    MZ_STREAM_RESET_MAP(MZ_X)
#undef MZ_X
} mz_stream_reset_code;

/* "too_large" for MZ_STREAM_RESET_TOO_LARGE; NULL for an unknown code
 * (accepted on the wire: later versions may add codes). */
const char *mz__stream_reset_name(uint64_t code);

/* A frame to send: the caller completes the header (mz__frame_hdr_init with
 * type, then flags, stream_id, aux) and seals body (borrowed from the
 * sending half's body; NULL when body_len is 0). */
typedef struct mz_stream_frame {
    uint8_t        type;        /* mz_frame_type */
    uint16_t       flags;       /* MZ_FRAME_F_HEAD / MZ_FRAME_F_END */
    uint32_t       stream_id;
    uint64_t       aux;
    const uint8_t *body;
    size_t         body_len;
    bool           closed;      /* the stream closed with this frame */
} mz_stream_frame;

typedef enum {
    MZ_STREAM_EV_HEAD,          /* a half began: type, total, then as DATA */
    MZ_STREAM_EV_DATA,          /* offset, len: body bytes in this frame */
    MZ_STREAM_EV_NOTIFY,        /* len: notification bytes (consume them too) */
    MZ_STREAM_EV_WINDOW,        /* more credit to send: call mz__streams_next */
    MZ_STREAM_EV_RESET,         /* code: the peer reset the stream; it is closed */
} mz_stream_ev_kind;

/* What a frame did. On an error other than MZ_ENOTFOUND the stream (if
 * any) is closed as reset and code says what to send back in a RESET
 * (mz__stream_reset_frame); MZ_ENOTFOUND is a late frame of a stream that
 * was reset or forgotten, to be ignored. */
typedef struct mz_stream_event {
    mz_stream_ev_kind kind;
    uint32_t stream_id;
    bool     local;             /* this node opened the stream */
    uint8_t  type;              /* HEAD: the message type */
    uint64_t total;             /* HEAD: declared body length */
    uint64_t offset;            /* HEAD/DATA: where this frame's bytes go */
    size_t   len;               /* HEAD/DATA/NOTIFY: bytes in this frame */
    bool     end;               /* the half is complete (HEAD/DATA with END) */
    bool     closed;            /* the stream is closed (both halves done, or reset) */
    uint64_t code;              /* RESET received, or the code to answer an error with */
} mz_stream_event;

/* Counters of one stream, for tests and status. */
typedef struct mz_stream_info {
    bool     local;
    uint64_t out_total, out_sent, out_credit_used, out_credit_limit;
    uint64_t in_total, in_received, in_credit_used, in_granted, in_consumed;
    bool     out_started, out_ended, in_started, in_ended;
} mz_stream_info;

typedef struct mz_streams mz_streams;

/* New stream set between self and peer (32-byte node ids, copied). The
 * node with the lower id (byte order) opens even stream ids, the other odd
 * ones, so both may open streams at once; first_id (any value; the node
 * passes a random one, so ids after a restart do not collide with those a
 * peer remembers) is where this side's ids start. lim may be NULL.
 * Returns new: free with mz__streams_free. */
mz_status mz__streams_new(mz_streams **out, const uint8_t self[MZ_FRAME_NODE_LEN],
                          const uint8_t peer[MZ_FRAME_NODE_LEN], const mz_stream_limits *lim,
                          uint32_t first_id, mz_err *err);
void mz__streams_free(mz_streams *s);

/* Opens a stream to send a message of type (a unicast type) whose body is
 * body (len bytes, borrowed until the half's last frame was handed out by
 * mz__streams_next, or the stream closed). *id gets the stream id.
 * MZ_ELIMIT when len is over the payload limit (too_large, naming it) or
 * too many streams are open; MZ_EINVAL for a type that is not unicast. */
mz_status mz__streams_open(mz_streams *s, uint8_t type, const uint8_t *body, uint64_t len,
                           uint32_t *id, mz_err *err);

/* Starts the answer on a stream the peer opened: as mz__streams_open.
 * MZ_ENOTFOUND when the stream is not open, MZ_ESTATE when this node opened
 * it or already answered. */
mz_status mz__streams_answer(mz_streams *s, uint32_t id, uint8_t type, const uint8_t *body,
                             uint64_t len, mz_err *err);

/* The next HEAD or DATA frame to send, round-robin over the streams that
 * have data and credit. false when there is none (all sent, or waiting for
 * credit). */
bool mz__streams_next(mz_streams *s, mz_stream_frame *out);
/* True when mz__streams_next would hand out a frame. */
bool mz__streams_pending(const mz_streams *s);

/* Takes in a frame of this pair (h decoded and opened or verified; plain_len
 * its plaintext length) that belongs to a stream: HEAD, DATA,
 * WINDOW_UPDATE, RESET or NOTIFY. Fills *ev. Refusals, each with a message
 * naming the stream: MZ_EPROTO (reused id, chunk out of window, at the
 * wrong offset, past the declared length, after END, END short of the
 * declared length, empty chunk, data before HEAD, a second HEAD, notify
 * from the opener, any frame after the stream ended cleanly),
 * MZ_ELIMIT (declared length over the payload limit: too_large; too many
 * streams: refused), MZ_ENOTFOUND (stream reset or unknown: ignore),
 * MZ_EINVAL (not a stream frame of this pair). */
mz_status mz__streams_on_frame(mz_streams *s, const mz_frame_hdr *h, size_t plain_len,
                               mz_stream_event *ev, mz_err *err);

/* The receiver used n more bytes of stream id's incoming half (body bytes
 * handed on, notifications handled). When that moves the grant by half a
 * window or more, *out gets a WINDOW_UPDATE to send and *send is true.
 * MZ_EINVAL when n is more than was received and not yet consumed;
 * MZ_ENOTFOUND when the stream is no longer open (nothing left to grant). */
mz_status mz__streams_consumed(mz_streams *s, uint32_t id, uint64_t n, mz_stream_frame *out,
                               bool *send, mz_err *err);

/* A NOTIFY of len bytes (body borrowed, attached to *out) on a stream the
 * peer opened, charged to the answer's credit. MZ_ELIMIT when the credit
 * left is smaller (try again after a WINDOW_UPDATE), MZ_ESTATE after the
 * answer's END or on a stream this node opened. */
mz_status mz__streams_notify(mz_streams *s, uint32_t id, const uint8_t *body, size_t len,
                             mz_stream_frame *out, mz_err *err);

/* Resets (cancels) stream id: closes it here and fills *out with the RESET
 * to send. MZ_ENOTFOUND when it is not open. */
mz_status mz__streams_reset(mz_streams *s, uint32_t id, uint64_t code, mz_stream_frame *out,
                            mz_err *err);
/* A RESET frame for a stream that has no state here (refused at its HEAD). */
void mz__stream_reset_frame(uint32_t id, uint64_t code, mz_stream_frame *out);

size_t mz__streams_open_count(const mz_streams *s);
/* MZ_ENOTFOUND when id is not open. */
mz_status mz__streams_info(const mz_streams *s, uint32_t id, mz_stream_info *info);

/* ---- round-robin scheduler ---------------------------------------------- */

/* Interleaves senders on one link: an item (embedded in what sends, e.g. a
 * stream set's entry) is queued while it has something to send; pop hands
 * items out in turn. Two lanes: URGENT (single messages, control frames)
 * goes first, but after `burst` urgent pops while BULK items wait, one bulk
 * item is served, so neither lane starves the other. */
typedef struct mz_sched_item {
    struct mz_sched_item *next;     /* owned by the scheduler while queued */
    bool queued;
    int  lane;
} mz_sched_item;

enum { MZ_SCHED_URGENT = 0, MZ_SCHED_BULK = 1 };

typedef struct mz_sched mz_sched;

/* burst 0: 8. Returns new, or NULL when out of memory. */
mz_sched *mz__sched_new(unsigned burst);
void mz__sched_free(mz_sched *q);
/* Queues it at the tail of lane, unless it is already queued. */
void mz__sched_push(mz_sched *q, mz_sched_item *it, int lane);
/* The next item (dequeued), or NULL when both lanes are empty. */
mz_sched_item *mz__sched_pop(mz_sched *q);
/* Takes it out of its queue (no-op when not queued). */
void mz__sched_remove(mz_sched *q, mz_sched_item *it);
bool mz__sched_empty(const mz_sched *q);

#endif
