/* Node identity: an Ed25519 key pair kept in DIR/identity.key, plus the small
 * hex helpers the envelope code shares. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sodium.h>

#include "meshzero/msg.h"

#define MZ_KEY_FILE      "identity.key"
#define MZ_SEED_BYTES    crypto_sign_SEEDBYTES
#define MZ_SEED_HEX_LEN  (2 * MZ_SEED_BYTES)

struct mz_identity {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES]; /* public key; its hex is the node id */
    unsigned char sk[crypto_sign_SECRETKEYBYTES]; /* seed || pk; wiped by mz_identity_free */
    char id_hex[MZ_ID_HEX_LEN + 1];               /* lowercase hex of pk */
};

static bool s_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

bool mz_id_valid(const char *s)
{
    return s != NULL && strlen(s) == MZ_ID_HEX_LEN && s_is_lower_hex(s, MZ_ID_HEX_LEN);
}

/* Fast-key-erasure generator (one ChaCha20 block run per refill, the first
 * 32 bytes of each run becoming the next key): ids and nonces are drawn per
 * message, and the kernel's getrandom per draw was a syscall on every
 * message. Seeded from the system once per thread; a forked child reseeds. */
#define S_POOL 512
static _Thread_local struct {
    unsigned char key[randombytes_SEEDBYTES];
    unsigned char pool[S_POOL];
    size_t left;                /* unused bytes at the end of pool */
    bool seeded;
    unsigned gen;               /* fork generation the seed belongs to */
} s_rng;
static unsigned s_fork_gen;

static void s_after_fork(void) { s_fork_gen++; }

static void s_rng_refill(void)
{
    if (!s_rng.seeded || s_rng.gen != s_fork_gen) {
        int init = sodium_init();
        /* Idempotent. randombytes_buf works even if it failed (it opens its
         * random source on first use), so there is nothing to report. */
        (void)init;
        randombytes_buf(s_rng.key, sizeof s_rng.key);
        s_rng.seeded = true;
        s_rng.gen = s_fork_gen;
    }
    randombytes_buf_deterministic(s_rng.pool, S_POOL, s_rng.key);
    memcpy(s_rng.key, s_rng.pool, sizeof s_rng.key);
    sodium_memzero(s_rng.pool, sizeof s_rng.key);
    s_rng.left = S_POOL - sizeof s_rng.key;
}

static void s_once_atfork(void) { (void)pthread_atfork(NULL, NULL, s_after_fork); }

void mz_random_buf(void *buf, size_t n)
{
    static pthread_once_t reg = PTHREAD_ONCE_INIT;
    unsigned char *out = buf;

    (void)pthread_once(&reg, s_once_atfork);
    if (s_rng.seeded && s_rng.gen != s_fork_gen)
        s_rng.left = 0;
    while (n > 0) {
        size_t k;
        if (s_rng.left == 0)
            s_rng_refill();
        k = n < s_rng.left ? n : s_rng.left;
        /* Served from the end, and wiped: a byte is never handed out twice. */
        memcpy(out, s_rng.pool + S_POOL - s_rng.left, k);
        sodium_memzero(s_rng.pool + S_POOL - s_rng.left, k);
        s_rng.left -= k;
        out += k;
        n -= k;
    }
}

void mz_random_hex(char *buf, size_t n)
{
    unsigned char chunk[64];

    while (n > 0) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        mz_random_buf(chunk, k);
        sodium_bin2hex(buf, 2 * k + 1, chunk, k);
        buf += 2 * k;
        n -= k;
    }
    *buf = '\0';
    sodium_memzero(chunk, sizeof chunk);
}

static mz_status s_new_from_seed(const unsigned char seed[MZ_SEED_BYTES], mz_identity **out,
                                 mz_err *err)
{
    mz_identity *id = calloc(1, sizeof *id);

    if (id == NULL)
        return mz_err_set(err, MZ_ENOMEM, "identity: allocating key pair");
    if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0) {
        mz_identity_free(id);
        return mz_err_set(err, MZ_EIO, "identity: deriving key pair failed");
    }
    sodium_bin2hex(id->id_hex, sizeof id->id_hex, id->pk, sizeof id->pk);
    *out = id;
    return MZ_OK;
}

mz_status mz_identity_generate(mz_identity **out, mz_err *err)
{
    unsigned char seed[MZ_SEED_BYTES];
    mz_status rc;

    *out = NULL;
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "identity: libsodium initialisation failed");
    randombytes_buf(seed, sizeof seed);
    rc = s_new_from_seed(seed, out, err);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void mz_identity_free(mz_identity *id)
{
    if (id == NULL)
        return;
    sodium_memzero(id, sizeof *id);
    free(id);
}

const char *mz_identity_id(const mz_identity *id)
{
    return id->id_hex;
}

void mz_identity_sign_hex(const mz_identity *id, const unsigned char *msg, size_t len,
                          char sig_hex[MZ_SIG_HEX_LEN + 1])
{
    unsigned char sig[crypto_sign_BYTES];

    crypto_sign_detached(sig, NULL, msg, len, id->sk);
    sodium_bin2hex(sig_hex, MZ_SIG_HEX_LEN + 1, sig, sizeof sig);
}

/* mkdir -p with mode 0700 for every component we create: the key directory
 * must not be listable by others, and parents we invent need no more. */
static mz_status s_mkdirs(const char *dir, mz_err *err)
{
    char *p = strdup(dir);
    mz_status rc = MZ_OK;

    if (p == NULL)
        return mz_err_set(err, MZ_ENOMEM, "identity: copying directory name");
    for (char *s = p + 1; ; s++) {
        bool last = (*s == '\0');
        if (*s != '/' && !last)
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = mz_err_set(err, MZ_EIO, "identity: creating directory %s: %s", p,
                            strerror(errno));
            break;
        }
        if (last)
            break;
        *s = '/';
    }
    free(p);
    return rc;
}

static mz_status s_write_all(int fd, const char *buf, size_t len, const char *path, mz_err *err)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return mz_err_set(err, MZ_EIO, "identity: writing %s: %s", path, strerror(errno));
        }
        buf += n;
        len -= (size_t)n;
    }
    return MZ_OK;
}

/* Reads and checks an existing key file. MZ_ENOTFOUND (no err text) when it
 * does not exist, so the caller can create it. */
static mz_status s_load(const char *path, mz_identity **out, mz_err *err)
{
    unsigned char seed[MZ_SEED_BYTES];
    char buf[MZ_SEED_HEX_LEN + 2];        /* hex, newline, one byte to spot trailing junk */
    size_t have = 0;
    struct stat st;
    mz_status rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT)
            return MZ_ENOTFOUND;
        return mz_err_set(err, MZ_EIO, "identity: opening %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        rc = mz_err_set(err, MZ_EIO, "identity: stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = mz_err_set(err, MZ_EIO, "identity: key file %s is not a regular file", path);
        goto done;
    }
    /* Like wireguard-tools: a secret others can read is a secret already lost. */
    if ((st.st_mode & 077) != 0) {
        rc = mz_err_set(err, MZ_EIO,
                        "identity: key file %s has mode %04o; it must not be accessible by "
                        "group or others (chmod 600 it)",
                        path, (unsigned)(st.st_mode & 07777));
        goto done;
    }
    while (have < sizeof buf) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = mz_err_set(err, MZ_EIO, "identity: reading %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    /* Exactly the 64 hex characters of the seed, newline optional. */
    if (!(have == MZ_SEED_HEX_LEN || (have == MZ_SEED_HEX_LEN + 1 && buf[MZ_SEED_HEX_LEN] == '\n'))
        || !s_is_lower_hex(buf, MZ_SEED_HEX_LEN)
        || sodium_hex2bin(seed, sizeof seed, buf, MZ_SEED_HEX_LEN, NULL, NULL, NULL) != 0) {
        rc = mz_err_set(err, MZ_EIO,
                        "identity: key file %s is malformed: expected 64 lowercase hex "
                        "characters (an Ed25519 seed) and a newline",
                        path);
        goto done;
    }
    rc = s_new_from_seed(seed, out, err);
done:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(buf, sizeof buf);
    close(fd);
    return rc;
}

/* Writes a fresh seed to a private temp file, then link()s it into place:
 * the key file appears whole or not at all, and link() fails with EEXIST
 * rather than clobbering a key another process created meanwhile. */
static mz_status s_create(const char *dir, const char *path, mz_err *err)
{
    unsigned char seed[MZ_SEED_BYTES];
    char hex[MZ_SEED_HEX_LEN + 2];
    char *tmp = NULL;
    size_t tmp_len = strlen(dir) + sizeof "/." MZ_KEY_FILE ".XXXXXX";
    mz_status rc;
    int fd = -1;

    if ((tmp = malloc(tmp_len)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "identity: allocating path");
    snprintf(tmp, tmp_len, "%s/.%s.XXXXXX", dir, MZ_KEY_FILE);
    randombytes_buf(seed, sizeof seed);
    sodium_bin2hex(hex, sizeof hex, seed, sizeof seed);
    hex[MZ_SEED_HEX_LEN] = '\n';

    fd = mkstemp(tmp);         /* O_CREAT|O_EXCL, mode 0600 */
    if (fd < 0) {
        rc = mz_err_set(err, MZ_EIO, "identity: creating %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';         /* nothing to unlink */
        goto done;
    }
    if (fchmod(fd, 0600) != 0) {
        rc = mz_err_set(err, MZ_EIO, "identity: chmod %s: %s", tmp, strerror(errno));
        goto done;
    }
    if ((rc = s_write_all(fd, hex, MZ_SEED_HEX_LEN + 1, tmp, err)) != MZ_OK)
        goto done;
    if (fsync(fd) != 0) {
        rc = mz_err_set(err, MZ_EIO, "identity: syncing %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (link(tmp, path) != 0 && errno != EEXIST) {
        rc = mz_err_set(err, MZ_EIO, "identity: creating %s: %s", path, strerror(errno));
        goto done;
    }
    rc = MZ_OK;                /* on EEXIST the caller loads the winner's key */
done:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        unlink(tmp);
    free(tmp);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(hex, sizeof hex);
    return rc;
}

mz_status mz_identity_load_or_create(const char *dir, mz_identity **out, mz_err *err)
{
    char *path = NULL;
    size_t path_len;
    mz_status rc;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return mz_err_set(err, MZ_EINVAL, "identity: no data directory given");
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "identity: libsodium initialisation failed");
    path_len = strlen(dir) + sizeof "/" MZ_KEY_FILE;
    if ((path = malloc(path_len)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "identity: allocating path");
    snprintf(path, path_len, "%s/%s", dir, MZ_KEY_FILE);

    rc = s_load(path, out, err);
    if (rc != MZ_ENOTFOUND)
        goto done;
    if ((rc = s_mkdirs(dir, err)) != MZ_OK)
        goto done;
    if ((rc = s_create(dir, path, err)) != MZ_OK)
        goto done;
    /* Read back what is on disk, so the id always matches the file. */
    rc = s_load(path, out, err);
    if (rc == MZ_ENOTFOUND)
        rc = mz_err_set(err, MZ_EIO, "identity: key file %s vanished after creation", path);
done:
    free(path);
    return rc;
}

/* ---- key files other than the node's, and X25519 ---------------------- */

mz_status mz_identity_load_file(const char *path, mz_identity **out, mz_err *err)
{
    mz_status rc;

    *out = NULL;
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "identity: libsodium initialisation failed");
    rc = s_load(path, out, err);
    if (rc == MZ_ENOTFOUND)
        return mz_err_set(err, MZ_ENOTFOUND, "key file %s does not exist", path);
    return rc;
}

mz_status mz_identity_create_file(const char *path, mz_identity **out, mz_err *err)
{
    char *dir;
    char *slash;
    mz_status rc;
    struct stat st;

    *out = NULL;
    if (sodium_init() < 0)
        return mz_err_set(err, MZ_EIO, "identity: libsodium initialisation failed");
    if (stat(path, &st) == 0)
        return mz_err_set(err, MZ_EEXIST, "key file %s already exists; not overwriting it", path);
    if ((dir = strdup(path)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "identity: allocating path");
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, strlen(dir) + 1, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    rc = s_create(dir, path, err);
    free(dir);
    if (rc != MZ_OK)
        return rc;
    return mz_identity_load_file(path, out, err);
}

const unsigned char *mz_identity_pk(const mz_identity *id)
{
    return id->pk;
}

mz_status mz_identity_x25519_sk(const mz_identity *id, unsigned char out[32], mz_err *err)
{
    if (crypto_sign_ed25519_sk_to_curve25519(out, id->sk) != 0)
        return mz_err_set(err, MZ_ESIG, "identity: cannot derive an X25519 key");
    return MZ_OK;
}
