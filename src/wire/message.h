/* The message as the layers above src/wire/ see it: one opaque mz_msg with
 * accessors. Only src/wire/ knows that it is a JSON envelope underneath
 * (docs/PROTOCOL.md "Envelope"), so the envelope's form changes here alone.
 * The payload is the client's data and stays a JSON value. */
#ifndef MZ_WIRE_MESSAGE_H
#define MZ_WIRE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "meshzero/msg.h"
#include "wire/frame.h"

typedef struct mz_msg mz_msg;

/* Parses and validates one message (the checks of mz_msg_parse; not the
 * signature). Returns new in *out, freed with mz__msg_free. On failure
 * id_out (MZ_MSG_ID_MAX + 1 bytes, may be NULL) names the message when its
 * id could be read, else "". */
mz_status mz__msg_parse(const char *buf, size_t len, const mz_msg_limits *lim, mz_msg **out,
                        char *id_out, mz_err *err);
/* A new unsigned message: random id, timestamp now, hops 0. Takes payload
 * (NULL means {}). recipient "*": every node. Returns new; NULL when out of
 * memory (payload freed). */
mz_msg *mz__msg_new(const char *type, const char *sender, const char *recipient,
                    json_t *payload);
/* NULL-safe. */
void mz__msg_free(mz_msg *msg);

/* Borrowed, valid while msg lives. */
const char *mz__msg_id(const mz_msg *msg);
const char *mz__msg_type(const mz_msg *msg);
const char *mz__msg_sender(const mz_msg *msg);
const char *mz__msg_recipient(const mz_msg *msg);
const char *mz__msg_timestamp(const mz_msg *msg);
int mz__msg_hops(const mz_msg *msg);
/* Borrowed: the payload (the plaintext once opened). */
const json_t *mz__msg_payload(const mz_msg *msg);
bool mz__msg_is_sealed(const mz_msg *msg);
/* True when msg carries an envelope signature (a broadcast made from a
 * frame without one cannot be handed on as an envelope). */
bool mz__msg_has_signature(const mz_msg *msg);

/* Gives an outgoing message another id (a call's next attempt). */
mz_status mz__msg_set_id(mz_msg *msg, const char *id);
/* Relays change the hop count and nothing else. */
void mz__msg_set_hops(mz_msg *msg, int hops);

/* Signs msg as its sender with id. */
mz_status mz__msg_sign(mz_msg *msg, const mz_identity *id, mz_err *err);
/* Checks the signature against the sender id. MZ_ESIG on forgery. */
mz_status mz__msg_verify(const mz_msg *msg, mz_err *err);
/* Seals the payload for the recipient (mz_msg_seal). */
mz_status mz__msg_seal(mz_msg *msg, const unsigned char key[32], mz_err *err);
/* Opens a sealed msg in place (mz_msg_open). MZ_ESIG when forged. */
mz_status mz__msg_open(mz_msg *msg, const unsigned char key[32], mz_err *err);
/* The bytes for the wire. Returns new malloc'd buffer, length in *len;
 * NULL when out of memory. */
char *mz__msg_dump(const mz_msg *msg, size_t *len);

/* ---- wire v2 (PROTOCOL.md "From the envelope to the frame") ---------- */

/* Fills h with msg's header as a frame (flags, body length, nonce zero);
 * link: sent to the neighbour only (hop limit 1). False when msg has no
 * frame form (an id that is not 32 lowercase hex, a timestamp that is not
 * whole UTC milliseconds, a type without a code or of another class): it
 * travels as an envelope. */
bool mz__msg_frame_hdr(const mz_msg *msg, bool link, mz_frame_hdr *h);
/* A sealed unicast frame of msg for the pair key: new malloc'd in *out. */
mz_status mz__msg_frame_seal(const mz_msg *msg, const unsigned char key[32], uint8_t **out,
                             size_t *out_len, mz_err *err);
/* A frame signed by id (msg's sender); a signed broadcast also carries the
 * envelope signature of msg (mz__msg_sign first) in its header extension.
 * New malloc'd in *out. */
mz_status mz__msg_frame_sign(const mz_msg *msg, const mz_identity *id, bool link,
                             uint8_t **out, size_t *out_len, mz_err *err);
/* The message of a frame whose seal opened or signature verified (buf as
 * decoded into h; plain, plain_len: its plaintext, a JSON object). The
 * message counts as verified. Returns new in *out. */
mz_status mz__msg_from_frame(const uint8_t *buf, const mz_frame_hdr *h, const uint8_t *plain,
                             size_t plain_len, mz_msg **out, mz_err *err);

#endif
