/* TLS material for wss:// links (internal): the self-signed certificate
 * whose key is the node's Ed25519 identity key, checks of certificate/key
 * files, and the certificate key comparison behind pinned URLs
 * (docs/TLS.md). OpenSSL 3. Loop-thread only; blocking file I/O happens only
 * at start-up. */
#ifndef MZ_TLS_H
#define MZ_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "meshzero/err.h"

/* File names inside the data directory. */
#define MZ_TLS_CERT_FILE "tls-cert.pem"
#define MZ_TLS_KEY_FILE  "tls-key.pem"
/* Hex characters of an Ed25519 public key (a node id). */
#define MZ_TLS_KEY_HEX_LEN 64

/* Makes sure DIR/tls-cert.pem and DIR/tls-key.pem hold a self-signed X.509
 * certificate and its private key, both being the Ed25519 identity key kept
 * in DIR/identity.key (64 hex characters of the seed). Files that already
 * hold that key are reused; missing or mismatched ones (a new identity) are
 * written anew, mode 0600, atomically (temp file + rename). A key file
 * readable by group or others is refused (MZ_EIO), like identity.key.
 * cert_path/key_path (may be NULL) get the paths. */
mz_status mz_tls_self_signed(const char *dir, char *cert_path, size_t cert_len, char *key_path,
                             size_t key_len, mz_err *err);

/* Checks that cert_file holds a PEM certificate and key_file the matching
 * PEM private key. MZ_EINVAL naming the file and the problem otherwise. */
mz_status mz_tls_check_pair(const char *cert_file, const char *key_file, mz_err *err);

/* Checks that ca_file holds at least one PEM certificate. */
mz_status mz_tls_check_ca(const char *ca_file, mz_err *err);

/* Writes the lowercase hex of cert's Ed25519 public key (a node id) to out.
 * false (out = "") when cert is NULL or its key is not Ed25519. */
bool mz_tls_cert_key_hex(X509 *cert, char out[MZ_TLS_KEY_HEX_LEN + 1]);

/* Returns new: a client SSL_CTX for outgoing wss:// links: TLS 1.3 at least,
 * trusting nothing yet (see mz_tls_client_load_ca). Initialises OpenSSL
 * (with its error strings) first, so it may be the process's first TLS use.
 * NULL with err set on failure. Free with SSL_CTX_free. */
SSL_CTX *mz_tls_client_ctx(mz_err *err);

/* Makes ctx trust the certificates of ca_file, or when ca_file is NULL the
 * system store (OpenSSL's default directory, plus $SSL_CERT_FILE /
 * $SSL_CERT_DIR when set). Called once, before the first unpinned dial:
 * pinned links need no CA, and a bundle can take a while to parse. */
mz_status mz_tls_client_load_ca(SSL_CTX *ctx, const char *ca_file, mz_err *err);

#endif
