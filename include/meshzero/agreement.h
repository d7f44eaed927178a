/* Agreements: a provider's signed permission for one consumer to call some
 * methods of one resource, within a time window and usage limits,
 * counter-signed by the consumer. Document format, signatures and the
 * validation order: docs/AGREEMENTS.md. These functions keep no state; the
 * usage counters a host keeps live in the node (src/state/agreement.h). */
#ifndef MESHZERO_AGREEMENT_H
#define MESHZERO_AGREEMENT_H

#include <stdbool.h>
#include <stdint.h>

/* Exposes jansson: an agreement is a JSON document (json_t) the caller reads, writes and passes to exec. */
#include <jansson.h>

#include "meshzero/err.h"
#include "meshzero/msg.h"

/* Domain prefix of both agreement signatures (see mz_sign_object). */
#define MZ_AGREEMENT_SIG_DOMAIN  "meshzero/1 agreement"
/* Longest agreement_id; its characters are [A-Za-z0-9._:-]. */
#define MZ_AGREEMENT_ID_MAX      64
/* Longest resource_id and method name an agreement may name (the record
 * and execute limits). */
#define MZ_AGREEMENT_RESOURCE_MAX 128
#define MZ_AGREEMENT_METHOD_MAX  128
/* Most entries in "methods". */
#define MZ_AGREEMENT_METHODS_MAX 64

/* Why a call was refused: the exact strings of the `denied` reply. */
#define MZ_AGR_MISSING            "missing"
#define MZ_AGR_BAD_SIGNATURE      "bad_signature"  /* also: malformed document */
#define MZ_AGR_WRONG_CONSUMER     "wrong_consumer"
#define MZ_AGR_WRONG_RESOURCE     "wrong_resource"
#define MZ_AGR_METHOD_NOT_ALLOWED "method_not_allowed"
#define MZ_AGR_NOT_YET_VALID      "not_yet_valid"
#define MZ_AGR_EXPIRED            "expired"
#define MZ_AGR_OVER_LIMIT         "over_limit"

/* Keys each signature leaves out (NULL-terminated): the provider signs
 * without both signatures, the consumer signs the provider's signature too. */
extern const char *const mz_agreement_provider_unsigned[];
extern const char *const mz_agreement_consumer_unsigned[];

/* What mz_agreement_create puts in a new agreement. Strings are borrowed. */
typedef struct mz_agreement_spec {
    const char *agreement_id;     /* NULL: "agr-" and 16 random hex characters */
    const char *consumer;         /* the consumer's node id (64 hex) */
    const char *resource_id;      /* 1-128 bytes */
    const char *const *methods;   /* NULL-terminated; 1-64 names of 1-128 bytes */
    int64_t requests_per_day;     /* calls per UTC day; 0: no such limit */
    int64_t requests_total;       /* calls in all; 0: no such limit */
    int64_t not_before_ms;        /* valid from (ms since the epoch) */
    int64_t expires_at_ms;        /* valid until, exclusive; after not_before_ms */
} mz_agreement_spec;

/* Builds an agreement from spec and signs it as provider (whose public key
 * becomes "provider"). Returns new: *out is the document with
 * provider_signature and without consumer_signature. MZ_EINVAL names the
 * spec field that is wrong; MZ_ENOMEM. */
mz_status mz_agreement_create(const mz_agreement_spec *spec, const mz_identity *provider,
                              json_t **out, mz_err *err);

/* Counter-signs agreement (borrowed; modified in place: consumer_signature
 * added or replaced) as consumer. Refuses with MZ_EPROTO a malformed
 * document, with MZ_EINVAL a consumer whose id is not the document's
 * "consumer", with MZ_ESIG a document whose provider signature does not
 * verify (nobody should counter-sign what the provider did not sign). */
mz_status mz_agreement_countersign(json_t *agreement, const mz_identity *consumer,
                                   mz_err *err);

/* Checks the document's fields (docs/AGREEMENTS.md "The document"): exactly
 * the documented keys, each of its type and form, not_before earlier than
 * expires_at. need_signatures: both signature fields must be present;
 * otherwise either may be absent (a draft), but each present one must be 128
 * lowercase hex. Does not verify signatures. MZ_EPROTO naming the field. */
mz_status mz_agreement_validate(const json_t *agreement, bool need_signatures, mz_err *err);

/* Verify provider_signature against the "provider" key, consumer_signature
 * against the "consumer" key. MZ_ESIG on mismatch, MZ_EPROTO when the field
 * or the key is missing or malformed. The document is not otherwise checked. */
mz_status mz_agreement_verify_provider(const json_t *agreement, mz_err *err);
mz_status mz_agreement_verify_consumer(const json_t *agreement, mz_err *err);

/* Every check a host makes before counting usage, in the documented order:
 * missing, bad_signature (malformed, provider not provider_key_hex, either
 * signature wrong), wrong_consumer, wrong_resource, method_not_allowed,
 * not_yet_valid, expired. agreement is borrowed (NULL or JSON null: none).
 * provider_key_hex: the resource owner's key; caller_id: the authenticated
 * caller. Returns NULL when the call may go on to the usage limits, else
 * one of the static MZ_AGR_* strings, with err (may be NULL) saying why. */
const char *mz_agreement_refusal(const json_t *agreement, const char *provider_key_hex,
                                 const char *caller_id, const char *resource_id,
                                 const char *method, int64_t now_ms, mz_err *err);

#endif
