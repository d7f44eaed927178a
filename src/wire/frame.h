/* The binary node-to-node frame (PROTOCOL.md "Wire v2"): a fixed header at
 * fixed offsets, then the body. Unicast bodies are sealed for the
 * recipient, everything else is signed by its origin; in both cases the
 * header minus the hop count is bound to the body, so a relay may bump the
 * hop count in place and must not change anything else.
 *
 * Pure code: no I/O, no node state, no allocation. Every function here may
 * be called from any thread on buffers the caller owns. */
#ifndef MZ_WIRE_FRAME_H
#define MZ_WIRE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshzero/err.h"
#include "meshzero/msg.h"

#define MZ_FRAME_MAGIC0   0x6d      /* 'm' */
#define MZ_FRAME_MAGIC1   0x7a      /* 'z' */
#define MZ_FRAME_VERSION  2
/* The header this version writes; receivers accept longer headers up to
 * MZ_FRAME_MAX_HDR (later fields, authenticated but ignored). */
#define MZ_FRAME_HDR_LEN  144
/* Largest header accepted: a bound on what a peer can make us copy as AD. */
#define MZ_FRAME_MAX_HDR  256
/* Largest whole frame (header + body) accepted by default; bodies larger
 * than a frame travel as a stream (stream.h). Same value as today's
 * largest JSON message. */
#define MZ_DEFAULT_MAX_FRAME (1024 * 1024)
/* Hop limit an origin writes by default (PROTOCOL.md section 5). */
#define MZ_FRAME_DEFAULT_HOP_LIMIT 16

#define MZ_FRAME_ID_LEN    16       /* message id */
#define MZ_FRAME_NODE_LEN  32       /* Ed25519 public key */
#define MZ_FRAME_NONCE_LEN 24       /* XChaCha20-Poly1305 nonce */
#define MZ_FRAME_TAG_LEN   16       /* Poly1305 tag ending a sealed body */
#define MZ_FRAME_SIG_LEN   64       /* Ed25519 signature ending a signed body */

/* Byte offsets of the header fields; all integers are big-endian. */
enum {
    MZ_FRAME_OFF_MAGIC     = 0,     /* 2: 'm' 'z' */
    MZ_FRAME_OFF_VERSION   = 2,     /* 1 */
    MZ_FRAME_OFF_TYPE      = 3,     /* 1 */
    MZ_FRAME_OFF_HDR_LEN   = 4,     /* 2 */
    MZ_FRAME_OFF_FLAGS     = 6,     /* 2 */
    MZ_FRAME_OFF_HOP_LIMIT = 8,     /* 1 */
    MZ_FRAME_OFF_HOPS      = 9,     /* 1: the only field a relay changes */
    MZ_FRAME_OFF_RSVD1     = 10,    /* 2: zero */
    MZ_FRAME_OFF_BODY_LEN  = 12,    /* 4 */
    MZ_FRAME_OFF_STREAM    = 16,    /* 4 */
    MZ_FRAME_OFF_RSVD2     = 20,    /* 4: zero */
    MZ_FRAME_OFF_AUX       = 24,    /* 8: per type (stream length, offset, window, code) */
    MZ_FRAME_OFF_TIME      = 32,    /* 8: origin's clock, ms since the epoch */
    MZ_FRAME_OFF_ID        = 40,    /* 16 */
    MZ_FRAME_OFF_SRC       = 56,    /* 32 */
    MZ_FRAME_OFF_DST       = 88,    /* 32: all zero = every node / the neighbour */
    MZ_FRAME_OFF_NONCE     = 120,   /* 24: zero unless sealed */
};

/* Header flags. Unknown bits are refused. */
#define MZ_FRAME_F_SEALED 0x0001u   /* body = ciphertext || tag */
#define MZ_FRAME_F_SIGNED 0x0002u   /* body = plaintext || signature */
#define MZ_FRAME_F_HEAD   0x0004u   /* first frame of a stream half; aux = its length */
#define MZ_FRAME_F_END    0x0008u   /* last frame of a stream half */
#define MZ_FRAME_F_ALL    0x000fu

/* Classes: what a type may be sent as. */
#define MZ_FRAME_C_LINK      0x01u  /* to the neighbour only: hop limit 1, signed */
#define MZ_FRAME_C_BROADCAST 0x02u  /* to every node: destination zero, signed */
#define MZ_FRAME_C_UNICAST   0x04u  /* to one node: sealed (or signed); may open a stream half */
#define MZ_FRAME_C_STREAM    0x08u  /* stream control: needs a stream id, sealed (or signed) */

/* Types: name, code, wire name, classes. One row per type; the code is the
 * byte at MZ_FRAME_OFF_TYPE. */
#define MZ_FRAME_TYPE_MAP(X)                                                        \
    X(HELLO,          0x01, "hello",          MZ_FRAME_C_LINK)                      \
    X(WELCOME,        0x02, "welcome",        MZ_FRAME_C_LINK)                      \
    X(ERROR,          0x03, "error",          MZ_FRAME_C_LINK | MZ_FRAME_C_UNICAST) \
    X(DIGEST,         0x04, "digest",         MZ_FRAME_C_LINK)                      \
    X(FETCH,          0x05, "fetch",          MZ_FRAME_C_LINK | MZ_FRAME_C_UNICAST) \
    X(SYNC,           0x06, "sync",           MZ_FRAME_C_LINK | MZ_FRAME_C_UNICAST) \
    X(ANNOUNCE,       0x10, "announce",       MZ_FRAME_C_BROADCAST)                 \
    X(ALIVE,          0x11, "alive",          MZ_FRAME_C_BROADCAST)                 \
    X(BYE,            0x12, "bye",            MZ_FRAME_C_BROADCAST)                 \
    X(EVENT,          0x13, "event",          MZ_FRAME_C_BROADCAST)                 \
    X(QUERY,          0x20, "query",          MZ_FRAME_C_UNICAST)                   \
    X(QUERY_RESULT,   0x21, "query_result",   MZ_FRAME_C_UNICAST)                   \
    X(EXECUTE,        0x22, "execute",        MZ_FRAME_C_UNICAST)                   \
    X(EXECUTE_RESULT, 0x23, "execute_result", MZ_FRAME_C_UNICAST)                   \
    X(DATA,           0x30, "data",           MZ_FRAME_C_STREAM)                    \
    X(WINDOW_UPDATE,  0x31, "window_update",  MZ_FRAME_C_STREAM)                    \
    X(RESET,          0x32, "reset",          MZ_FRAME_C_STREAM)                    \
    X(NOTIFY,         0x33, "notify",         MZ_FRAME_C_STREAM)

typedef enum {
#define MZ_X(name, code, text, cls) MZ_FRAME_##name = code,
    MZ_FRAME_TYPE_MAP(MZ_X)
#undef MZ_X
} mz_frame_type;

/* A decoded header: plain values, no state. The byte arrays are copies. */
typedef struct mz_frame_hdr {
    uint8_t  type;                          /* mz_frame_type */
    uint16_t hdr_len;                       /* MZ_FRAME_HDR_LEN .. MZ_FRAME_MAX_HDR */
    uint16_t flags;                         /* MZ_FRAME_F_* */
    uint8_t  hop_limit;                     /* 1..255, set by the origin */
    uint8_t  hops;                          /* relays passed so far, < hop_limit */
    uint32_t body_len;                      /* bytes after the header, tag or signature included */
    uint32_t stream_id;                     /* 0: not part of a stream */
    uint64_t aux;                           /* per type, see PROTOCOL.md */
    int64_t  time_ms;                       /* origin's clock */
    uint8_t  id[MZ_FRAME_ID_LEN];
    uint8_t  src[MZ_FRAME_NODE_LEN];
    uint8_t  dst[MZ_FRAME_NODE_LEN];
    uint8_t  nonce[MZ_FRAME_NONCE_LEN];
} mz_frame_hdr;

/* "execute" for MZ_FRAME_EXECUTE, NULL for a code that is no type. */
const char *mz__frame_type_name(uint8_t type);
/* The code of a type name, 0 for a name that is no type. */
uint8_t mz__frame_type_code(const char *name);
/* The MZ_FRAME_C_* classes of a type, 0 for a code that is no type. */
unsigned mz__frame_type_classes(uint8_t type);
/* True when dst is all zero (every node, or the neighbour of a link frame). */
bool mz__frame_dst_is_all(const mz_frame_hdr *h);

/* Fills h with a fresh header: version fields, hdr_len MZ_FRAME_HDR_LEN, a
 * random message id, the current time, hop limit MZ_FRAME_DEFAULT_HOP_LIMIT
 * (1 for a link-only type), src and dst copied (dst may be NULL: all
 * zero). Flags, body length, stream id, aux and nonce are zero. */
void mz__frame_hdr_init(mz_frame_hdr *h, uint8_t type, const uint8_t src[MZ_FRAME_NODE_LEN],
                        const uint8_t dst[MZ_FRAME_NODE_LEN]);

/* Writes h as MZ_FRAME_HDR_LEN bytes (h->hdr_len is not consulted: this
 * version writes no later fields). */
void mz__frame_hdr_encode(const mz_frame_hdr *h, uint8_t out[MZ_FRAME_HDR_LEN]);

/* Decodes and checks the frame in buf (len bytes: exactly one frame, as a
 * WebSocket message delivers it). max_frame is the largest frame accepted
 * (0: MZ_DEFAULT_MAX_FRAME). Checks, each with its own message: length
 * against the header, magic, version, header length (under the minimum:
 * MZ_EPROTO; over MZ_FRAME_MAX_HDR: MZ_ELIMIT), reserved bytes, type,
 * flags, the type's class rules (destination, hop limit, stream id,
 * seal/signature), body length against what buf holds (truncated or
 * trailing bytes: MZ_EPROTO) and against max_frame (MZ_ELIMIT). Does not
 * open or verify the body. Borrows buf; fills *h only on MZ_OK. */
mz_status mz__frame_decode(const uint8_t *buf, size_t len, size_t max_frame, mz_frame_hdr *h,
                           mz_err *err);

/* Bytes a sealed / signed frame of plain_len plaintext bytes takes. */
size_t mz__frame_sealed_len(size_t plain_len);
size_t mz__frame_signed_len(size_t plain_len);

/* Seals plain (plain_len bytes, borrowed; may be exactly out +
 * MZ_FRAME_HDR_LEN, for encrypting in place) for the pair key into out
 * (cap bytes): sets SEALED, a random nonce and the body length in h, writes
 * the header and the ciphertext with the header (hops zeroed) as associated
 * data. *out_len gets the frame's length. MZ_EINVAL when h's type may not
 * be sealed, MZ_ELIMIT when out is too small or the body over 4 GiB. */
mz_status mz__frame_seal(mz_frame_hdr *h, const uint8_t *plain, size_t plain_len,
                         const uint8_t key[32], uint8_t *out, size_t cap, size_t *out_len,
                         mz_err *err);

/* Opens a sealed frame (buf, len: as decoded into h) with the pair key.
 * The plaintext (h->body_len - MZ_FRAME_TAG_LEN bytes, *plain_len) goes to
 * plain, which may be buf + h->hdr_len (in place) and must hold that many
 * bytes. MZ_ESIG when the body or any header field but hops was changed or
 * the key is not the pair's; MZ_EPROTO when the frame is not sealed. */
mz_status mz__frame_open(const uint8_t *buf, size_t len, const mz_frame_hdr *h,
                         const uint8_t key[32], uint8_t *plain, size_t *plain_len, mz_err *err);

/* Signs: like mz__frame_seal, with the origin's signature (domain
 * "meshzero/2 frame", NUL, header with hops zeroed, plaintext) after the
 * plaintext. h->src must be id's public key (MZ_EINVAL otherwise). plain may
 * be out + MZ_FRAME_HDR_LEN. */
mz_status mz__frame_sign(mz_frame_hdr *h, const uint8_t *plain, size_t plain_len,
                         const mz_identity *id, uint8_t *out, size_t cap, size_t *out_len,
                         mz_err *err);

/* mz__frame_sign with ext_len bytes of header extension (a multiple of 8;
 * header length MZ_FRAME_HDR_LEN + ext_len, at most MZ_FRAME_MAX_HDR)
 * written at MZ_FRAME_HDR_LEN and covered by the signature. plain may be
 * out + MZ_FRAME_HDR_LEN + ext_len. */
mz_status mz__frame_sign_ext(mz_frame_hdr *h, const uint8_t *ext, size_t ext_len,
                             const uint8_t *plain, size_t plain_len, const mz_identity *id,
                             uint8_t *out, size_t cap, size_t *out_len, mz_err *err);

/* Verifies a signed frame (as decoded into h) against h->src. On MZ_OK
 * *plain (borrowed from buf) and *plain_len are the body without the
 * signature. MZ_ESIG on a bad signature, MZ_EPROTO when not signed. */
mz_status mz__frame_verify(const uint8_t *buf, size_t len, const mz_frame_hdr *h,
                           const uint8_t **plain, size_t *plain_len, mz_err *err);

/* What a relay does to a frame it forwards: checks, reading fixed offsets
 * only, that buf is long enough for the hop fields, then adds one to the
 * hop count in place. MZ_ELIMIT (and buf unchanged) when the frame has
 * used its hop limit: hops + 1 would reach hop_limit. The caller decoded
 * the frame first (mz__frame_decode) to route it. */
mz_status mz__frame_relay_hop(uint8_t *buf, size_t len, mz_err *err);

#endif
