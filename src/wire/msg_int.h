/* Message internals shared with the fuzzing simulator (fuzz/nodesim.c). */
#ifndef MZ_MSG_INT_H
#define MZ_MSG_INT_H

#include <stddef.h>

#include "meshzero/msg.h"

/* mz_msg_seal with the plaintext given instead of the canonical form of
 * env's payload: seals plain (plain_len bytes, any content) for the key
 * under env's header as associated data, replacing payload and dropping
 * signature. mz_msg_seal is this over the canonical payload. */
mz_status mz__msg_seal_bytes(json_t *env, const unsigned char key[32], const char *plain,
                             size_t plain_len, mz_err *err);

#endif
