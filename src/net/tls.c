/* TLS material for wss:// links. The node's certificate carries the node's
 * own Ed25519 identity key, so a dialer that pins the node id in its URL can
 * check the TLS layer without any CA: the certificate's public key must be
 * the pinned id (docs/TLS.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

#define S_SEED_BYTES 32
#define S_SEED_HEX   64
#define S_PUB_BYTES  32
#define S_IDENTITY_FILE "identity.key"

/* The most recent OpenSSL error as text; the error queue is cleared. */
static const char *s_ossl_err(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* PEM readers must never prompt on a terminal for a pass phrase. */
static int s_no_pass(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0;
}

/* Returns new: "dir/name", NULL on ENOMEM. */
static char *s_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int s_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void s_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Reads the 32-byte seed from an identity.key (64 lowercase hex, newline
 * optional): the same format identity.c writes. */
static mz_status s_read_seed(const char *path, unsigned char seed[S_SEED_BYTES], mz_err *err)
{
    char buf[S_SEED_HEX + 2];
    size_t have = 0;
    mz_status rc = MZ_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return mz_err_set(err, MZ_EIO, "tls: reading the node key %s: %s", path,
                          strerror(errno));
    while (have < sizeof buf) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = mz_err_set(err, MZ_EIO, "tls: reading the node key %s: %s", path,
                            strerror(errno));
            break;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    if (rc == MZ_OK && !(have == S_SEED_HEX || (have == S_SEED_HEX + 1 && buf[S_SEED_HEX] == '\n')))
        rc = mz_err_set(err, MZ_EIO, "tls: node key %s is malformed (expected 64 hex "
                        "characters)", path);
    for (size_t i = 0; rc == MZ_OK && i < S_SEED_BYTES; i++) {
        int hi = s_hexval(buf[2 * i]), lo = s_hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0)
            rc = mz_err_set(err, MZ_EIO, "tls: node key %s is malformed (expected 64 "
                            "lowercase hex characters)", path);
        else
            seed[i] = (unsigned char)(hi << 4 | lo);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

/* The raw Ed25519 public key of k; false for other key types. */
static bool s_pub_raw(const EVP_PKEY *k, unsigned char out[S_PUB_BYTES])
{
    size_t len = S_PUB_BYTES;

    if (k == NULL || !EVP_PKEY_is_a(k, "ED25519"))
        return false;
    if (EVP_PKEY_get_raw_public_key(k, out, &len) != 1 || len != S_PUB_BYTES) {
        ERR_clear_error();
        return false;
    }
    return true;
}

bool mz_tls_cert_key_hex(X509 *cert, char out[MZ_TLS_KEY_HEX_LEN + 1])
{
    unsigned char pk[S_PUB_BYTES];

    out[0] = '\0';
    if (cert == NULL || !s_pub_raw(X509_get0_pubkey(cert), pk))
        return false;
    s_hex(pk, sizeof pk, out);
    return true;
}

static X509 *s_read_cert(const char *path)
{
    FILE *f = fopen(path, "re");
    X509 *x = NULL;

    if (f != NULL) {
        x = PEM_read_X509(f, NULL, s_no_pass, NULL);
        fclose(f);
    }
    return x;
}

static EVP_PKEY *s_read_key(const char *path)
{
    FILE *f = fopen(path, "re");
    EVP_PKEY *k = NULL;

    if (f != NULL) {
        k = PEM_read_PrivateKey(f, NULL, s_no_pass, NULL);
        fclose(f);
    }
    return k;
}

/* MZ_OK when both files exist and hold the key pk; MZ_ENOTFOUND when they
 * must be (re)written; MZ_EIO when the key file is not private. */
static mz_status s_existing(const char *cert_path, const char *key_path,
                            const unsigned char pk[S_PUB_BYTES], mz_err *err)
{
    unsigned char got[S_PUB_BYTES];
    struct stat st;
    X509 *x;
    EVP_PKEY *k;
    bool ok;

    if (stat(key_path, &st) != 0)
        return MZ_ENOTFOUND;
    if (!S_ISREG(st.st_mode))
        return mz_err_set(err, MZ_EIO, "tls: %s is not a regular file", key_path);
    if ((st.st_mode & 077) != 0)
        return mz_err_set(err, MZ_EIO, "tls: key file %s has mode %04o; it must not be "
                          "accessible by group or others (chmod 600 it)", key_path,
                          (unsigned)(st.st_mode & 07777));
    x = s_read_cert(cert_path);
    k = s_read_key(key_path);
    ok = x != NULL && k != NULL && s_pub_raw(X509_get0_pubkey(x), got) &&
         memcmp(got, pk, S_PUB_BYTES) == 0 && s_pub_raw(k, got) &&
         memcmp(got, pk, S_PUB_BYTES) == 0;
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? MZ_OK : MZ_ENOTFOUND;
}

static bool s_add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    bool ok = e != NULL && X509_add_ext(x, e, -1) == 1;

    X509_EXTENSION_free(e);
    return ok;
}

/* Returns new: a self-signed certificate for k, subject O=meshzero, CN=<id>,
 * valid from an hour ago with no expiry (RFC 5280 4.1.2.5: 99991231235959Z).
 * The pin, not the dates, is what a dialer checks. */
static mz_status s_make_cert(EVP_PKEY *k, const char *id_hex, X509 **out, mz_err *err)
{
    unsigned char serial[16];
    char why[160];
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    X509_NAME *name;
    X509V3_CTX v3;
    bool ok;

    *out = NULL;
    if (x == NULL)
        return mz_err_set(err, MZ_ENOMEM, "tls: allocating a certificate");
    ok = RAND_bytes(serial, sizeof serial) == 1;
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);   /* positive, 16 bytes */
    ok = ok && (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL &&
         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
         X509_set_version(x, X509_VERSION_3) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "99991231235959Z") == 1 &&
         X509_set_pubkey(x, k) == 1;
    BN_free(bn);
    name = X509_get_subject_name(x);
    ok = ok && name != NULL &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                    (const unsigned char *)"meshzero", -1, -1, 0) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)id_hex,
                                    -1, -1, 0) == 1 &&
         X509_set_issuer_name(x, name) == 1;
    if (ok) {
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ok = s_add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") &&
             s_add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") &&
             s_add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") &&
             s_add_ext(x, &v3, NID_subject_key_identifier, "hash");
    }
    ok = ok && X509_sign(x, k, NULL) > 0;       /* Ed25519: no separate digest */
    if (!ok) {
        X509_free(x);
        return mz_err_set(err, MZ_EIO, "tls: making the certificate: %s",
                          s_ossl_err(why, sizeof why));
    }
    *out = x;
    return MZ_OK;
}

/* Writes data to dir/name through a private temp file and rename(), so the
 * file appears whole, mode 0600, or not at all. */
static mz_status s_write_file(const char *dir, const char *name, const char *data, size_t len,
                              mz_err *err)
{
    size_t tl = strlen(dir) + strlen(name) + sizeof "/..XXXXXX";
    char *tmp = malloc(tl), *path = s_join(dir, name);
    mz_status rc = MZ_OK;
    int fd = -1;

    if (tmp == NULL || path == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "tls: allocating a path");
        goto done;
    }
    snprintf(tmp, tl, "%s/.%s.XXXXXX", dir, name);
    if ((fd = mkstemp(tmp)) < 0) {
        rc = mz_err_set(err, MZ_EIO, "tls: creating %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    if (fchmod(fd, 0600) != 0) {
        rc = mz_err_set(err, MZ_EIO, "tls: chmod %s: %s", tmp, strerror(errno));
        goto done;
    }
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = mz_err_set(err, MZ_EIO, "tls: writing %s: %s", tmp, strerror(errno));
            goto done;
        }
        data += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        rc = mz_err_set(err, MZ_EIO, "tls: syncing %s: %s", tmp, strerror(errno));
        goto done;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = mz_err_set(err, MZ_EIO, "tls: creating %s: %s", path, strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
done:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL && tmp[0] != '\0')
        unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

/* PEM-encodes the key (in secure memory, wiped on free) or the certificate
 * and writes it to dir/name. */
static mz_status s_write_pem(const char *dir, const char *name, EVP_PKEY *k, X509 *x,
                             mz_err *err)
{
    BIO *b = k ? BIO_new(BIO_s_secmem()) : BIO_new(BIO_s_mem());
    char *data = NULL, why[160];
    long len;
    mz_status rc;
    int ok;

    if (b == NULL)
        return mz_err_set(err, MZ_ENOMEM, "tls: allocating a buffer");
    ok = k ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
           : PEM_write_bio_X509(b, x);
    len = BIO_get_mem_data(b, &data);
    if (ok != 1 || len <= 0)
        rc = mz_err_set(err, MZ_EIO, "tls: encoding %s: %s", name,
                        s_ossl_err(why, sizeof why));
    else
        rc = s_write_file(dir, name, data, (size_t)len, err);
    BIO_free(b);
    return rc;
}

static mz_status s_copy_path(char *out, size_t out_len, const char *dir, const char *name,
                             mz_err *err)
{
    if (out == NULL)
        return MZ_OK;
    if ((size_t)snprintf(out, out_len, "%s/%s", dir, name) >= out_len)
        return mz_err_set(err, MZ_EINVAL, "tls: path %s/%s is too long", dir, name);
    return MZ_OK;
}

mz_status mz_tls_self_signed(const char *dir, char *cert_path, size_t cert_len, char *key_path,
                             size_t key_len, mz_err *err)
{
    unsigned char seed[S_SEED_BYTES], pk[S_PUB_BYTES];
    char id[MZ_TLS_KEY_HEX_LEN + 1], why[160];
    char *idp = NULL, *cp = NULL, *kp = NULL;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    mz_status rc;

    if (dir == NULL || dir[0] == '\0')
        return mz_err_set(err, MZ_EINVAL, "tls: no data directory for the certificate");
    idp = s_join(dir, S_IDENTITY_FILE);
    cp = s_join(dir, MZ_TLS_CERT_FILE);
    kp = s_join(dir, MZ_TLS_KEY_FILE);
    if (idp == NULL || cp == NULL || kp == NULL) {
        rc = mz_err_set(err, MZ_ENOMEM, "tls: allocating paths");
        goto done;
    }
    if ((rc = s_read_seed(idp, seed, err)) != MZ_OK)
        goto done;
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    OPENSSL_cleanse(seed, sizeof seed);
    if (k == NULL || !s_pub_raw(k, pk)) {
        rc = mz_err_set(err, MZ_EIO, "tls: loading the node key: %s",
                        s_ossl_err(why, sizeof why));
        goto done;
    }
    s_hex(pk, sizeof pk, id);
    rc = s_existing(cp, kp, pk, err);
    if (rc == MZ_ENOTFOUND) {
        /* Key first: a crash in between leaves a mismatch, redone next start. */
        if ((rc = s_make_cert(k, id, &x, err)) != MZ_OK ||
            (rc = s_write_pem(dir, MZ_TLS_KEY_FILE, k, NULL, err)) != MZ_OK ||
            (rc = s_write_pem(dir, MZ_TLS_CERT_FILE, NULL, x, err)) != MZ_OK)
            goto done;
    } else if (rc != MZ_OK) {
        goto done;
    }
    if ((rc = s_copy_path(cert_path, cert_len, dir, MZ_TLS_CERT_FILE, err)) == MZ_OK)
        rc = s_copy_path(key_path, key_len, dir, MZ_TLS_KEY_FILE, err);
done:
    X509_free(x);
    EVP_PKEY_free(k);
    free(idp);
    free(cp);
    free(kp);
    return rc;
}

mz_status mz_tls_check_pair(const char *cert_file, const char *key_file, mz_err *err)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    mz_status rc = MZ_OK;

    if (cert_file == NULL || key_file == NULL)
        return mz_err_set(err, MZ_EINVAL, "tls: a certificate needs its key and a key its "
                          "certificate (give both files)");
    if (access(cert_file, R_OK) != 0)
        rc = mz_err_set(err, MZ_EINVAL, "tls: certificate %s: %s", cert_file, strerror(errno));
    else if ((x = s_read_cert(cert_file)) == NULL)
        rc = mz_err_set(err, MZ_EINVAL, "tls: %s holds no PEM certificate", cert_file);
    else if (access(key_file, R_OK) != 0)
        rc = mz_err_set(err, MZ_EINVAL, "tls: key %s: %s", key_file, strerror(errno));
    else if ((k = s_read_key(key_file)) == NULL)
        rc = mz_err_set(err, MZ_EINVAL, "tls: %s holds no PEM private key (pass-phrase "
                        "protected keys are not supported)", key_file);
    else if (X509_check_private_key(x, k) != 1)
        rc = mz_err_set(err, MZ_EINVAL, "tls: key %s does not belong to certificate %s",
                        key_file, cert_file);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

mz_status mz_tls_check_ca(const char *ca_file, mz_err *err)
{
    X509 *x;

    if (access(ca_file, R_OK) != 0)
        return mz_err_set(err, MZ_EINVAL, "tls: CA file %s: %s", ca_file, strerror(errno));
    x = s_read_cert(ca_file);
    ERR_clear_error();
    if (x == NULL)
        return mz_err_set(err, MZ_EINVAL, "tls: CA file %s holds no PEM certificate", ca_file);
    X509_free(x);
    return MZ_OK;
}

SSL_CTX *mz_tls_client_ctx(mz_err *err)
{
    SSL_CTX *c;
    char why[160];

    /* What lws's global init would have done: the first TLS use of a node
     * without a wss:// listener comes here (ws.c, s_tls_client_on). */
    if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
                         NULL) != 1) {
        mz_err_set(err, MZ_EIO, "tls: initialising OpenSSL: %s", s_ossl_err(why, sizeof why));
        return NULL;
    }
    c = SSL_CTX_new(TLS_client_method());
    if (c == NULL || SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1) {
        mz_err_set(err, MZ_EIO, "tls: creating the client context: %s",
                   s_ossl_err(why, sizeof why));
        SSL_CTX_free(c);
        return NULL;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    return c;
}

mz_status mz_tls_client_load_ca(SSL_CTX *ctx, const char *ca_file, mz_err *err)
{
    char why[160];
    const char *f, *d;

    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_file(ctx, ca_file) != 1)
            return mz_err_set(err, MZ_EIO, "tls: loading CA file %s: %s", ca_file,
                              s_ossl_err(why, sizeof why));
        return MZ_OK;
    }
    /* The default directory is looked up lazily, by hash; a bundle named by
     * $SSL_CERT_FILE is parsed whole. A missing store is no error here: an
     * unpinned dial then fails with "certificate not trusted". */
    f = getenv(X509_get_default_cert_file_env());
    d = getenv(X509_get_default_cert_dir_env());
    if (f != NULL && f[0] && SSL_CTX_load_verify_file(ctx, f) != 1)
        ERR_clear_error();
    if (SSL_CTX_load_verify_dir(ctx, d && d[0] ? d : X509_get_default_cert_dir()) != 1)
        ERR_clear_error();
    return MZ_OK;
}
