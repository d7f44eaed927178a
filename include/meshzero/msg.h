/* MessageHandler, part 1: node identity, canonical JSON, the signed envelope.
 * Wire format: docs/PROTOCOL.md. All functions are loop-thread only unless
 * noted; none keeps global state. */
#ifndef MESHZERO_MSG_H
#define MESHZERO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exposes jansson: an envelope's payload is a JSON value (json_t). */
#include <jansson.h>

#include "meshzero/err.h"

/* A node id is the lowercase hex of its Ed25519 public key: 64 characters.
 * Anyone can check a signature from the id alone, and nobody can claim an id
 * without the matching secret key. */
#define MZ_ID_HEX_LEN   64
#define MZ_SIG_HEX_LEN  128
/* Longest message id accepted on the wire. */
#define MZ_MSG_ID_MAX   64
/* Longest message type name. */
#define MZ_MSG_TYPE_MAX 32
/* Largest hop count a message may carry. */
#define MZ_MAX_HOPS     255

/* ---- identity ---------------------------------------------------------- */

typedef struct mz_identity mz_identity;

/* Loads DIR/identity.key, or creates it (mode 0600, DIR created 0700 if
 * missing) on first use. A key file readable by group or others is refused
 * with MZ_EIO naming the file and its mode. Returns new: *out is freed with
 * mz_identity_free(). */
mz_status mz_identity_load_or_create(const char *dir, mz_identity **out, mz_err *err);
/* A fresh key pair kept only in memory (tests, examples). Returns new. */
mz_status mz_identity_generate(mz_identity **out, mz_err *err);
/* Wipes the secret key; NULL-safe. */
void mz_identity_free(mz_identity *id);
/* Borrowed: the 64-character hex node id, valid until mz_identity_free. */
const char *mz_identity_id(const mz_identity *id);
/* Signs msg; writes 128 lowercase hex characters and a NUL to sig_hex. */
void mz_identity_sign_hex(const mz_identity *id, const unsigned char *msg, size_t len,
                          char sig_hex[MZ_SIG_HEX_LEN + 1]);
/* True if s is exactly 64 lowercase hex characters. */
bool mz_id_valid(const char *s);
/* Loads a key file (same format as DATA/identity.key: an owner key made by
 * `meshzero keygen`). Returns new. MZ_ENOTFOUND when it does not exist. */
mz_status mz_identity_load_file(const char *path, mz_identity **out, mz_err *err);
/* Creates a new key file at path (mode 0600; refuses to overwrite with
 * MZ_EEXIST) and returns the loaded key. Returns new. */
mz_status mz_identity_create_file(const char *path, mz_identity **out, mz_err *err);
/* Borrowed: the 32-byte Ed25519 public key. */
const unsigned char *mz_identity_pk(const mz_identity *id);
/* The X25519 secret key derived from the Ed25519 one (for sealing). */
mz_status mz_identity_x25519_sk(const mz_identity *id, unsigned char out[32], mz_err *err);

/* ---- canonical JSON ---------------------------------------------------- */

/* Serialises v canonically (PROTOCOL.md "Canonical form"): object keys sorted
 * by their UTF-8 bytes, no whitespace, minimal string escapes, integers in
 * decimal, reals as the shortest %.Ng that reads back exactly (with ".0"
 * appended when that has neither '.' nor 'e'). Keys listed in skip (a
 * NULL-terminated array, may be NULL) are left out of the top-level object
 * only. Returns new: a NUL-terminated malloc'd buffer, its length in *len
 * (may be NULL); NULL when out of memory, v holds NaN/Inf, or v nests deeper
 * than 2048 levels (jansson's parser bound; also stops a cyclic tree). */
char *mz_canon_dump(const json_t *v, const char *const *skip, size_t *len);

/* Signs the canonical form of obj (minus the skip keys, see mz_canon_dump),
 * prefixed with the domain string `domain` and a NUL byte, so that a
 * signature made for one purpose never verifies for another. Stores the hex
 * signature in obj under key sig_key (replacing any). */
mz_status mz_sign_object(json_t *obj, const char *domain, const char *const *skip,
                         const char *sig_key, const mz_identity *id, mz_err *err);
/* Verifies obj[sig_key] as a signature by the node/public key signer_hex
 * (64 hex) over the same bytes mz_sign_object signs. MZ_ESIG on mismatch,
 * MZ_EPROTO when the signature field is missing or not 128 hex. */
mz_status mz_verify_object(const json_t *obj, const char *domain, const char *const *skip,
                           const char *sig_key, const char *signer_hex, mz_err *err);

/* ---- time -------------------------------------------------------------- */

/* Wall clock in milliseconds since the Unix epoch. */
int64_t mz_now_ms(void);
/* Formats ms as RFC 3339 UTC with milliseconds: 2026-11-25T12:00:00.123Z.
 * buf must hold 32 bytes. */
void mz_time_format(int64_t ms, char buf[32]);
/* Parses an RFC 3339 date-time (any fraction digits, 'Z'/'z' or +hh:mm /
 * -hh:mm offset; 'T', 't' or ' ' separator) into ms since the epoch. False
 * when s is not such a string (range checked: month 1-12, day valid for
 * month incl. leap years, hour 0-23, minute 0-59, second 0-60). */
bool mz_time_parse(const char *s, int64_t *ms);

/* ---- envelope ---------------------------------------------------------- */

/* Message limits applied by mz_msg_parse. Zero fields take the defaults. */
typedef struct mz_msg_limits {
    size_t max_bytes;   /* whole message; default MZ_DEFAULT_MAX_MESSAGE */
    size_t max_depth;   /* JSON nesting; default MZ_DEFAULT_MAX_JSON_DEPTH */
    size_t max_members; /* object members + array elements; MZ_DEFAULT_MAX_JSON_MEMBERS */
} mz_msg_limits;

/* Largest envelope accepted, in bytes. Larger frames close the link (1009). */
#define MZ_DEFAULT_MAX_MESSAGE    (1024 * 1024)
/* Deepest JSON nesting accepted in a message (envelope counts as 1). */
#define MZ_DEFAULT_MAX_JSON_DEPTH 32
/* Object members plus array elements accepted in one message. */
#define MZ_DEFAULT_MAX_JSON_MEMBERS 50000

/* Keys an envelope signature leaves out: "signature" itself and "hops",
 * which relays increment. NULL-terminated. */
extern const char *const mz_msg_unsigned_keys[];
/* Domain prefix of envelope signatures. */
#define MZ_MSG_SIG_DOMAIN "meshzero/1 envelope"

/* Parses and strictly validates one envelope (PROTOCOL.md "Envelope"):
 * an object with exactly the fields id, type, sender, recipient, timestamp,
 * payload, signature and optionally hops, each of the right type, size and
 * form. It does NOT check the signature (mz_msg_verify does).
 * On success *out is a new reference the caller json_decref()s.
 * On failure err names the field and what was expected, and id_out (may be
 * NULL; MZ_MSG_ID_MAX+1 bytes) receives the message id when one could be
 * read as a string (else ""), so an error reply can name it. Returns
 * MZ_EPROTO for malformed input, MZ_ELIMIT for size/depth, MZ_ENOMEM. */
mz_status mz_msg_parse(const char *buf, size_t len, const mz_msg_limits *lim,
                       json_t **out, char *id_out, mz_err *err);

/* Builds a new unsigned envelope: random 32-hex id, timestamp now, hops 0.
 * Takes the payload reference (payload NULL means {}). recipient "*" means
 * every node (broadcast). Returns new (NULL when out of memory). */
json_t *mz_msg_new(const char *type, const char *sender, const char *recipient,
                   json_t *payload);
/* Signs env in place with id (must be the sender). */
mz_status mz_msg_sign(json_t *env, const mz_identity *id, mz_err *err);
/* Checks env's signature against its sender id. MZ_ESIG on forgery. */
mz_status mz_msg_verify(const json_t *env, mz_err *err);

/* Borrowed field accessors for a parsed envelope (NULL/0 when absent). */
const char *mz_msg_id(const json_t *env);
const char *mz_msg_type(const json_t *env);
const char *mz_msg_sender(const json_t *env);
const char *mz_msg_recipient(const json_t *env);
json_t *mz_msg_payload(const json_t *env);
int mz_msg_hops(const json_t *env);
/* Sets the hop count (relays change nothing else of an envelope). */
void mz_msg_set_hops(json_t *env, int hops);
/* The envelope's timestamp text, or NULL. */
const char *mz_msg_timestamp(const json_t *env);

/* Serialises env for the wire (compact, any key order). Returns new malloc'd
 * buffer with its length in *len; NULL when out of memory. */
char *mz_msg_dump(const json_t *env, size_t *len);

/* True when v nests at most max_depth deep (a container counts 1) and has at
 * most max_members object members plus array elements: what travels inside
 * an envelope must leave room for the envelope's own limits. */
bool mz_json_within(const json_t *v, size_t max_depth, size_t max_members);

/* True when env is a sealed unicast: payload is exactly {"sealed": str}. */
bool mz_msg_is_sealed(const json_t *env);
/* Seals env's payload for its recipient with the pair's shared key (32
 * bytes, crypto_box_beforenm of the two X25519 keys): XChaCha20-Poly1305
 * over the canonical payload, with the canonical routing header (id, type,
 * sender, recipient, timestamp) as associated data. Removes "signature". */
mz_status mz_msg_seal(json_t *env, const unsigned char key[32], mz_err *err);
/* Opens a sealed env in place (payload replaced by the plaintext object).
 * MZ_ESIG when authentication fails (forged, altered, wrong key). */
mz_status mz_msg_open(json_t *env, const unsigned char key[32], size_t max_depth, mz_err *err);

/* Fills buf with n random bytes (a per-thread stream seeded once from the
 * system: no syscall per call). For ids and nonces, not long-term keys. */
void mz_random_buf(void *buf, size_t n);
/* Fills buf with n random bytes as 2n lowercase hex characters plus NUL. */
void mz_random_hex(char *buf, size_t n);

#endif
