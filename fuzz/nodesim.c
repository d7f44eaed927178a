/* A real node on the in-memory transport (src/net/memnet.h); see nodesim.h. */
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "net/memnet.h"
#include "util/log.h"
#include "wire/msg_int.h"
#include "core/node_int.h"
#include "nodesim.h"

/* Lines handled per input: keeps one input's work bounded. */
#define SIM_MAX_LINES 32
/* Node limits kept small so that inputs of a few KiB can reach them. */
#define SIM_MAX_MESSAGE (32 * 1024)

enum { K_NODE, K_PEER, K_C, K_D, K_COUNT };

/* Fixed seeds: the same ids in every run, so inputs replay exactly. */
static const char *const s_seeds[K_COUNT] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333333333333333333333333333",
    "4444444444444444444444444444444444444444444444444444444444444444",
};

/* Known open bugs, tolerated unless MZ_FUZZ_STRICT=1 (see fuzz/README.md). */
static const char *const s_known_open[] = {
    NULL,
};

static struct {
    bool init;
    bool strict;
    bool trace;                   /* MZ_SIM_TRACE=1: every message on stderr */
    char tmp[64];                 /* data directories of the four keys */
    char dirs[K_COUNT][96];
    mz_identity *keys[K_COUNT];   /* the node loads its own copy of [K_NODE] */
    unsigned char shared[K_COUNT][32]; /* sealing key of the node and P, C, D */
    const char *ids[K_COUNT];
    uv_loop_t loop;
    mz_memnet *net;               /* the node's network, fresh per input */
    mz_node *node;
    mz_connmgr *cm;
    uint64_t peer, pre, api[2];   /* link ids, 0 when none */
    struct { uint64_t link; char chal[65]; } chal[8];   /* hello challenge per link */
    unsigned n_chal;
    char exec_id[MZ_MSG_ID_MAX + 1];
    char pushed[2][64];
    json_t *api_last[2];
    unsigned counter;
    char now[32];                 /* "@now", formatted on use */
    bool in_setup;                /* while linking P at the start of an input */
    bool setup_checked;           /* the first input's linking was verified */
    size_t tolerated[sizeof s_known_open / sizeof s_known_open[0]];
} S;

/* ---- violations ----------------------------------------------------------- */

bool mz_sim_strict(void)
{
    return S.strict;
}

void mz_sim_violation(const char *kind, const char *detail, const char *buf, size_t len)
{
    for (size_t i = 0; s_known_open[i] != NULL; i++) {
        if (strcmp(s_known_open[i], kind) != 0 || S.strict)
            continue;
        if (S.tolerated[i]++ == 0)
            fprintf(stderr, "nodesim: known open bug '%s' (tolerated; MZ_FUZZ_STRICT=1 "
                    "aborts): %s\n", kind, detail);
        return;
    }
    fprintf(stderr, "nodesim: INVARIANT VIOLATED [%s]: %s\n", kind, detail);
    if (buf != NULL)
        fprintf(stderr, "nodesim: offending message (%zu bytes): %.*s\n", len,
                (int)(len > 4000 ? 4000 : len), buf);
    abort();
}

/* ---- setup ---------------------------------------------------------------- */

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void s_cleanup(void)
{
    for (int i = 0; i < K_COUNT; i++)
        mz_identity_free(S.keys[i]);
    if (S.tmp[0])
        nftw(S.tmp, s_rm, 8, FTW_DEPTH | FTW_PHYS);
}

static void s_null_sink(int level, const char *line, void *ctx)
{
    (void)level;
    (void)line;
    (void)ctx;
}

void mz_sim_init(void)
{
    mz_err e;

    if (S.init)
        return;
    S.init = true;
    S.strict = getenv("MZ_FUZZ_STRICT") && strcmp(getenv("MZ_FUZZ_STRICT"), "1") == 0;
    S.trace = getenv("MZ_SIM_TRACE") && strcmp(getenv("MZ_SIM_TRACE"), "1") == 0;
    /* Every log line is formatted (so its arguments are exercised) and
     * dropped, unless MESHZERO_LOG asks for them on stderr. */
    if (getenv("MESHZERO_LOG") == NULL) {
        mz_log_set_level(MZ_LOG_DEBUG);
        mz_log_set_sink(s_null_sink, NULL);
    }
    if (sodium_init() < 0)
        abort();
    /* tmpfs when there is one: the node's stores (SQLite) live here. */
    snprintf(S.tmp, sizeof S.tmp, "%s/mzfuzz.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(S.tmp) == NULL) {
        perror("nodesim: mkdtemp");
        abort();
    }
    atexit(s_cleanup);
    for (int i = 0; i < K_COUNT; i++) {
        char path[128];
        FILE *f;

        snprintf(S.dirs[i], sizeof S.dirs[i], "%s/k%d", S.tmp, i);
        if (mkdir(S.dirs[i], 0700) != 0)
            abort();
        snprintf(path, sizeof path, "%s/identity.key", S.dirs[i]);
        umask(077);
        if ((f = fopen(path, "w")) == NULL)
            abort();
        fprintf(f, "%s\n", s_seeds[i]);
        fclose(f);
        if (mz_identity_load_or_create(S.dirs[i], &S.keys[i], &e) != MZ_OK) {
            fprintf(stderr, "nodesim: %s\n", e.msg);
            abort();
        }
        S.ids[i] = mz_identity_id(S.keys[i]);
    }
    /* crypto_box_beforenm of the node's X25519 key and each other one, as
     * node.c computes it (PROTOCOL.md "Sealed unicasts"). */
    for (int i = K_PEER; i < K_COUNT; i++) {
        unsigned char xpk[32], xsk[32];
        if (crypto_sign_ed25519_pk_to_curve25519(xpk, mz_identity_pk(S.keys[K_NODE])) != 0 ||
            mz_identity_x25519_sk(S.keys[i], xsk, NULL) != MZ_OK ||
            crypto_box_beforenm(S.shared[i], xpk, xsk) != 0)
            abort();
        sodium_memzero(xsk, sizeof xsk);
    }
    if (uv_loop_init(&S.loop) != 0)
        abort();
}

/* ---- checks on what the node sends ------------------------------------------ */

/* K_NODE.. for a known id, -1 otherwise. */
static int s_key_index(const char *id)
{
    for (int i = 0; i < K_COUNT; i++)
        if (id != NULL && strcmp(id, S.ids[i]) == 0)
            return i;
    return -1;
}

static bool s_is_broadcast_type(const char *t)
{
    return strcmp(t, "announce") == 0 || strcmp(t, "alive") == 0 || strcmp(t, "bye") == 0 ||
           strcmp(t, "event") == 0;
}

/* A record the node hands out must be one its peers accept. */
static void s_check_record(const json_t *rec, const char *where, const char *buf, size_t len)
{
    const char *signer = json_string_value(json_object_get(rec, "owner_key"));
    char detail[512];
    mz_err e;

    if (signer == NULL)
        signer = json_string_value(json_object_get(rec, "node"));
    if (mz_record_validate(rec, &e) != MZ_OK) {
        snprintf(detail, sizeof detail, "%s: record does not validate: %s", where, e.msg);
        mz_sim_violation("out-record-invalid", detail, buf, len);
        return;
    }
    if (mz_verify_object(rec, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys, "signature",
                         signer, &e) != MZ_OK) {
        snprintf(detail, sizeof detail, "%s: record signature: %s", where, e.msg);
        mz_sim_violation("out-record-signature", detail, buf, len);
    }
}

static void s_check_peer_out(mz_link *link, const char *buf, size_t len)
{
    mz_msg_limits lim = { SIM_MAX_MESSAGE, 0, 0 };
    json_t *env = NULL, *pl;
    const char *type, *sender;
    char detail[512];
    mz_err e;
    bool own;

    if (mz_msg_parse(buf, len, &lim, &env, NULL, &e) != MZ_OK) {
        /* Tell the node's own messages from relayed ones without trusting
         * the envelope: look for our sender field in the raw text. */
        json_t *raw = json_loadb(buf, len, 0, NULL);
        const char *s = json_string_value(json_object_get(raw, "sender"));
        own = s != NULL && strcmp(s, S.ids[K_NODE]) == 0;
        snprintf(detail, sizeof detail, "the node sent a%s envelope it would itself refuse: %s",
                 own ? "" : " relayed", e.msg);
        json_decref(raw);
        mz_sim_violation(own ? "out-envelope-invalid" : "out-relayed-invalid", detail, buf, len);
        return;
    }
    type = mz_msg_type(env);
    sender = mz_msg_sender(env);
    own = strcmp(sender, S.ids[K_NODE]) == 0;
    if (own && mz_msg_is_sealed(env)) {
        /* Open it as its recipient would (when that is P, C or D). */
        int k = s_key_index(mz_msg_recipient(env));
        if (k >= K_PEER && mz_msg_open(env, S.shared[k], 0, &e) != MZ_OK) {
            snprintf(detail, sizeof detail, "own sealed %s does not open for its recipient: %s",
                     type, e.msg);
            mz_sim_violation("out-seal", detail, buf, len);
        }
    } else
    /* The linking exchange is the same in every input: its signatures are
     * checked by the first input only (they cost a third of the time). */
    if ((!S.in_setup || !S.setup_checked) && json_object_get(env, "signature") != NULL &&
        (own || (strcmp(mz_msg_recipient(env), "*") == 0 && s_is_broadcast_type(type)))) {
        if (mz_msg_verify(env, &e) != MZ_OK) {
            snprintf(detail, sizeof detail, "%s %s: %s", own ? "own" : "relayed", type, e.msg);
            mz_sim_violation("out-signature", detail, buf, len);
        }
    }
    pl = mz_msg_payload(env);
    if (own && strcmp(type, "hello") == 0 &&
        json_string_value(json_object_get(pl, "challenge")) != NULL) {
        unsigned k = S.n_chal++ % 8;
        S.chal[k].link = mz_link_id(link);
        snprintf(S.chal[k].chal, sizeof S.chal[k].chal, "%s",
                 json_string_value(json_object_get(pl, "challenge")));
    }
    if (own && strcmp(type, "execute") == 0)
        snprintf(S.exec_id, sizeof S.exec_id, "%s", mz_msg_id(env));
    if (own && (strcmp(type, "sync") == 0 || strcmp(type, "query_result") == 0)) {
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(pl, "records"), i, r)
            s_check_record(r, type, buf, len);
    }
    if (own && strcmp(type, "announce") == 0 && json_object_get(pl, "record") != NULL)
        s_check_record(json_object_get(pl, "record"), "announce", buf, len);
    json_decref(env);
}

static void s_check_api_out(mz_link *link, const char *buf, size_t len)
{
    uint64_t id = mz_link_id(link);
    int client = id == S.api[0] ? 0 : id == S.api[1] ? 1 : -1;
    json_error_t je;
    /* The CLI (src/cli/apiclient.c) reads answers with flags 0. */
    json_t *m = json_loadb(buf, len, 0, &je);
    const json_t *method, *err;
    char detail[512];

    if (m == NULL) {
        snprintf(detail, sizeof detail, "API output is not JSON a client can read: %s", je.text);
        mz_sim_violation("api-output-unparseable", detail, buf, len);
        return;
    }
    method = json_object_get(m, "method");
    err = json_object_get(m, "error");
    if (!json_is_object(m) ||
        json_string_value(json_object_get(m, "jsonrpc")) == NULL ||
        strcmp(json_string_value(json_object_get(m, "jsonrpc")), "2.0") != 0 ||
        (method != NULL && !json_is_string(method)) ||
        (method == NULL && (json_object_get(m, "id") == NULL ||
                            (json_object_get(m, "result") != NULL) == (err != NULL))) ||
        (err != NULL && (!json_is_integer(json_object_get(err, "code")) ||
                         !json_is_string(json_object_get(err, "message"))))) {
        mz_sim_violation("api-output-shape", "API output is not a JSON-RPC 2.0 message", buf,
                         len);
    }
    if (client >= 0) {
        if (json_is_string(method) && strcmp(json_string_value(method), "execute") == 0 &&
            json_is_string(json_object_get(m, "id")))
            snprintf(S.pushed[client], sizeof S.pushed[client], "%s",
                     json_string_value(json_object_get(m, "id")));
        json_decref(S.api_last[client]);
        S.api_last[client] = json_incref(m);
    }
    json_decref(m);
}

static void s_on_send(mz_link *link, const char *buf, size_t len, void *ctx)
{
    (void)ctx;
    if (S.trace)
        fprintf(stderr, "nodesim: link %llu <- node: %.*s\n", (unsigned long long)mz_link_id(link),
                (int)(len > 600 ? 600 : len), buf);
    if (mz_link_kind_get(link) == MZ_LINK_API)
        s_check_api_out(link, buf, len);
    else
        s_check_peer_out(link, buf, len);
}

/* ---- building inputs ------------------------------------------------------------ */

/* The challenge the node sent in its hello on link, or "". */
static const char *s_chal_of(uint64_t link)
{
    for (unsigned i = 0; i < 8; i++)
        if (link != 0 && S.chal[i].link == link)
            return S.chal[i].chal;
    return "";
}

static const mz_identity *s_key_of(const char *id)
{
    int k = s_key_index(id);

    return k >= K_PEER ? S.keys[k] : NULL;
}

/* The replacement of placeholder s, or NULL when s is not one. */
static const char *s_placeholder(const char *s, char ch, int client)
{
    if (s == NULL || s[0] != '@')
        return NULL;
    if (strcmp(s, "@node") == 0) return S.ids[K_NODE];
    if (strcmp(s, "@peer") == 0) return S.ids[K_PEER];
    if (strcmp(s, "@c") == 0) return S.ids[K_C];
    if (strcmp(s, "@d") == 0) return S.ids[K_D];
    if (strcmp(s, "@chal") == 0) return s_chal_of(ch == 'H' ? S.pre : S.peer);
    if (strcmp(s, "@exec") == 0) return S.exec_id;
    if (strcmp(s, "@pushed") == 0 && client >= 0) return S.pushed[client];
    if (strcmp(s, "@now") == 0) {
        mz_time_format(mz_now_ms(), S.now);
        return S.now;
    }
    return NULL;
}

/* Replaces placeholder strings (exact matches) anywhere in v. */
static void s_subst(json_t *v, char ch, int client)
{
    const char *key, *r;
    json_t *child;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach(v, key, child) {
            if ((r = s_placeholder(json_string_value(child), ch, client)) != NULL)
                json_object_set_new(v, key, json_string(r));   /* replaces in place */
            else
                s_subst(child, ch, client);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child) {
            if ((r = s_placeholder(json_string_value(child), ch, client)) != NULL)
                json_array_set_new(v, i, json_string(r));
            else
                s_subst(child, ch, client);
        }
    }
}

/* Signs, innermost first, every object whose signature is "@sign", by its
 * owner_key (or node): as a tombstone when it has "deleted", else as a
 * record. The top level is left to the caller. */
static void s_sign_records(json_t *v, bool top)
{
    const char *key;
    json_t *child;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach(v, key, child)
            s_sign_records(child, false);
        if (!top) {
            const char *sig = json_string_value(json_object_get(v, "signature"));
            const char *who = json_string_value(json_object_get(v, "owner_key"));
            const mz_identity *k;
            if (who == NULL)
                who = json_string_value(json_object_get(v, "node"));
            if (sig == NULL || strcmp(sig, "@sign") != 0 || (k = s_key_of(who)) == NULL)
                return;
#ifdef MZ_TOMB_SIG_DOMAIN
            if (json_object_get(v, "deleted") != NULL) {
                mz_sign_object(v, MZ_TOMB_SIG_DOMAIN, mz__tomb_unsigned_keys, "signature", k,
                               NULL);
                return;
            }
#endif
            mz_sign_object(v, MZ_RECORD_SIG_DOMAIN, mz__record_unsigned_keys, "signature", k,
                           NULL);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
            s_sign_records(child, false);
    }
}

static void s_fill(json_t *env, const char *field, json_t *val)
{
    if (json_object_get(env, field) == NULL)
        json_object_set_new(env, field, val);
    else
        json_decref(val);
}

/* Sealed with any plaintext bytes, so the receiver's parsing of an opened
 * payload meets more than canonical JSON. */
static void s_seal_raw(json_t *env, const unsigned char key[32], const char *plain, size_t n)
{
    if (mz__msg_seal_bytes(env, key, plain, n, NULL) != MZ_OK)
        abort();
}

/* Completes and signs (S, H) or seals (E) an envelope; returns the text to
 * send (malloc), or NULL when text is not a JSON object. */
static char *s_envelope(const char *text, size_t len, char ch, size_t *out_len)
{
    json_t *env = json_loadb(text, len, 0, NULL);
    const char *type, *sig;
    char *buf = NULL, id[32];

    if (!json_is_object(env)) {
        json_decref(env);
        return NULL;
    }
    snprintf(id, sizeof id, "f%u", ++S.counter);
    type = json_string_value(json_object_get(env, "type"));
    s_fill(env, "id", json_string(id));
    s_fill(env, "sender", json_string(ch == 'H' ? "@c" : "@peer"));
    s_fill(env, "recipient",
           json_string(type == NULL || strcmp(type, "hello") == 0 || s_is_broadcast_type(type)
                       ? "*" : "@node"));
    s_fill(env, "timestamp", json_string("@now"));   /* within the replay window */
    s_fill(env, "payload", json_object());
    s_subst(env, ch, -1);
    s_sign_records(env, true);
    if (ch == 'E' && s_key_index(json_string_value(json_object_get(env, "sender"))) >= K_PEER &&
        s_key_index(json_string_value(json_object_get(env, "recipient"))) == K_NODE) {
        const unsigned char *key =
            S.shared[s_key_index(json_string_value(json_object_get(env, "sender")))];
        const json_t *pl = json_object_get(env, "payload");
        if (json_is_string(pl))
            s_seal_raw(env, key, json_string_value(pl), json_string_length(pl));
        else
            mz_msg_seal(env, key, NULL);
        goto dump;
    }
    sig = json_string_value(json_object_get(env, "signature"));
    if (sig == NULL || strcmp(sig, "@sign") == 0) {
        const mz_identity *k = s_key_of(json_string_value(json_object_get(env, "sender")));
        json_object_del(env, "signature");
        if (k != NULL)
            mz_sign_object(env, MZ_MSG_SIG_DOMAIN, mz_msg_unsigned_keys, "signature", k, NULL);
    }
dump:
    buf = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (buf != NULL)
        *out_len = strlen(buf);
    return buf;
}

/* ---- driving the node ------------------------------------------------------------- */

static bool s_defuse(json_t *m);

/* Runs what the node scheduled for "now" and reports pending closes. */
static void s_settle(void)
{
    for (int i = 0; i < 16; i++) {
        uv_run(&S.loop, UV_RUN_NOWAIT);
        if (mz_memnet_run(S.net, 100000) == 0)
            break;
    }
}

void mz_sim_settle(void)
{
    s_settle();
}

mz_node *mz_sim_node(void)
{
    return S.node;
}

uv_loop_t *mz_sim_loop(void)
{
    return &S.loop;
}

static void s_deliver(uint64_t link, const char *buf, size_t len)
{
    if (S.trace)
        fprintf(stderr, "nodesim: link %llu -> node: %.*s\n", (unsigned long long)link,
                (int)(len > 600 ? 600 : len), buf);
    mz_memnet_deliver(S.cm, link, buf, len);
    s_settle();
}

static void s_send_env(uint64_t link, json_t *env, const mz_identity *key)
{
    char *buf;

    if (env == NULL || mz_msg_sign(env, key, NULL) != MZ_OK)
        abort();
    buf = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (buf == NULL)
        abort();
    s_deliver(link, buf, strlen(buf));
    free(buf);
}

static bool s_link_up(uint64_t link)
{
    for (mz_peer *p = S.node->peers; p; p = p->next)
        if (p->up && p->link != NULL && mz_link_id(p->link) == link)
            return true;
    return false;
}

/* Opens the neighbour link and runs the hello exchange as P. */
static void s_link_peer(void)
{
    static const char chal[] =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    S.peer = mz_memnet_accept(S.cm, MZ_LINK_PEER);
    if (S.peer == 0 || s_chal_of(S.peer)[0] == '\0') {
        S.peer = 0;
        return;                   /* the peer limit, or the node refused: not ours */
    }
    s_send_env(S.peer, mz_msg_new("hello", S.ids[K_PEER], "*",
                                  json_pack("{s:s,s:s,s:s}", "protocol", "meshzero/1",
                                            "listen", "ws://127.0.0.1:7002", "challenge", chal)),
               S.keys[K_PEER]);
    s_send_env(S.peer, mz_msg_new("welcome", S.ids[K_PEER], S.ids[K_NODE],
                                  json_pack("{s:s}", "challenge", s_chal_of(S.peer))),
               S.keys[K_PEER]);
    if (mz_memnet_find(S.cm, S.peer) != NULL && !s_link_up(S.peer) && S.in_setup) {
        mz_sim_violation("handshake", "a correct hello/welcome exchange did not bring the "
                         "link up", NULL, 0);
    }
}

/* Empties the node's data directory but for its key: no state (stores,
 * usage counts) passes from one input to the next. */
static void s_reset_data_dir(void)
{
    DIR *d = opendir(S.dirs[K_NODE]);
    struct dirent *de;
    char path[256];

    if (d == NULL)
        abort();
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, "identity.key") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", S.dirs[K_NODE], de->d_name);
        nftw(path, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    }
    closedir(d);
}

void mz_sim_begin(void)
{
    mz_node_opts o;
    mz_err e;

    mz_sim_init();
    s_reset_data_dir();
    memset(&o, 0, sizeof o);
    o.loop = &S.loop;
    o.data_dir = S.dirs[K_NODE];
    o.listen_url = "ws://127.0.0.1:0";
    o.api_url = "ws://127.0.0.1:0";
    o.seen_capacity = 64;
    o.max_message = SIM_MAX_MESSAGE;
    o.max_peers = 4;
    o.max_api_clients = 3;
    o.max_running = 4;
    o.max_pending = 8;
    o.max_subscriptions = 8;
    if (mz_memnet_new(&S.loop, &S.net, &e) != MZ_OK)
        abort();
    mz_memnet_set_tap(S.net, s_on_send, NULL);
    o.transport = mz_memnet_transport(S.net);
    if (mz_node_new(&o, &S.node, &e) != MZ_OK) {
        fprintf(stderr, "nodesim: mz_node_new: %s\n", e.msg);
        abort();
    }
    S.cm = mz_memnet_listener(S.net, mz_node_listen_url(S.node));
    S.peer = S.pre = S.api[0] = S.api[1] = 0;
    S.exec_id[0] = S.pushed[0][0] = S.pushed[1][0] = '\0';
    S.counter = 0;
    S.n_chal = 0;
    memset(S.chal, 0, sizeof S.chal);
    S.in_setup = true;
    s_link_peer();
    S.in_setup = false;
    S.setup_checked = true;
}

static uint64_t s_api_link(int client)
{
    if (mz_memnet_find(S.cm, S.api[client]) == NULL) {
        S.api[client] = mz_memnet_accept(S.cm, MZ_LINK_API);
        S.pushed[client][0] = '\0';
    }
    return S.api[client];
}

void mz_sim_api_send(int client, const json_t *msg)
{
    json_t *m = json_deep_copy(msg);
    char *buf;
    uint64_t link = s_api_link(client);

    s_defuse(m);
    buf = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (buf != NULL && link != 0)
        s_deliver(link, buf, strlen(buf));
    free(buf);
}

const json_t *mz_sim_api_last(int client)
{
    return S.api_last[client];
}

/* True when v is what api.c's s_str_array accepts: absent, null, or an
 * array of at most max strings. */
static bool s_str_array_ok(const json_t *v, size_t max)
{
    const json_t *x;
    size_t i;

    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_array(v) || json_array_size(v) > max)
        return false;
    json_array_foreach(v, i, x)
        if (!json_is_string(x))
            return false;
    return true;
}

/* Known open bugs (fuzz/README.md "Bugs found", inputs in
 * fuzz/regress/open/): unless MZ_FUZZ_STRICT=1, API requests that would
 * trigger them are changed so they do not, so that fuzzing goes on past a
 * bug already reported. Delete a rule once its bug is fixed (run.sh open
 * says so). Returns true when m was changed. */
static bool s_defuse(json_t *m)
{
    const char *method = json_string_value(json_object_get(m, "method"));
    json_t *params = json_object_get(m, "params");
    bool changed = false;

    if (S.strict || method == NULL || !json_is_object(params))
        return false;
    /* leak-register-invalid-handler: m_register registers first, then
     * refuses a bad "handler" or "methods" and leaks the record. */
    if (strcmp(method, "register_resource") == 0 || strcmp(method, "update_resource") == 0) {
        json_t *h = json_object_get(params, "handler");
        if (h != NULL && !json_is_boolean(h)) {
            json_object_del(params, "handler");
            changed = true;
        }
        if (!s_str_array_ok(json_object_get(params, "methods"), 63)) {
            json_object_del(params, "methods");
            changed = true;
        }
    }
    /* ub-execute-timeout-overflow: m_execute casts timeout * 1000.0 to
     * int64_t unchecked. */
    if (strcmp(method, "execute_remote") == 0) {
        json_t *t = json_object_get(params, "timeout");
        if (json_is_number(t) && !(fabs(json_number_value(t)) < 1e12)) {
            json_object_set_new(params, "timeout", json_integer(1));
            changed = true;
        }
    }
    return changed;
}

static void s_api_line(int client, const char *text, size_t len)
{
    uint64_t link = s_api_link(client);
    bool subst = memchr(text, '@', len) != NULL;
    json_t *m;
    char *buf;

    if (link == 0)
        return;
    /* Raw unless placeholders or a known bug need the message changed. */
    if ((!subst && S.strict) || (m = json_loadb(text, len, 0, NULL)) == NULL) {
        s_deliver(link, text, len);
        return;
    }
    if (!s_defuse(m) && !subst) {
        json_decref(m);
        s_deliver(link, text, len);
        return;
    }
    s_subst(m, 'A', client);
    buf = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (buf != NULL)
        s_deliver(link, buf, strlen(buf));
    free(buf);
}

void mz_sim_line(const char *line, size_t len, char default_ch)
{
    char ch = len > 0 ? line[0] : '#';
    const char *rest = len > 0 ? line + 1 : line;
    size_t rlen = len > 0 ? len - 1 : 0;
    char *buf;
    size_t blen = 0;

    if (strchr("SEHRPABYhXZ#", ch) == NULL || ch == '\0') {
        ch = default_ch;
        rest = line;
        rlen = len;
    }
    switch (ch) {
    case 'S':
    case 'E':
    case 'H':
        if (ch == 'H' && mz_memnet_find(S.cm, S.pre) == NULL) {
            S.pre = mz_memnet_accept(S.cm, MZ_LINK_PEER);
        }
        buf = s_envelope(rest, rlen, ch, &blen);
        if (buf != NULL)
            s_deliver(ch == 'H' ? S.pre : S.peer, buf, blen);
        else
            s_deliver(ch == 'H' ? S.pre : S.peer, rest, rlen);
        free(buf);
        break;
    case 'R':
        s_deliver(S.peer, rest, rlen);
        break;
    case 'P':
        if (mz_memnet_find(S.cm, S.pre) == NULL) {
            S.pre = mz_memnet_accept(S.cm, MZ_LINK_PEER);
        }
        s_deliver(S.pre, rest, rlen);
        break;
    case 'A':
    case 'B':
        s_api_line(ch == 'A' ? 0 : 1, rest, rlen);
        break;
    case 'Y':
        mz_memnet_hangup(S.cm, S.peer);
        s_settle();
        s_link_peer();
        break;
    case 'h':
        mz_memnet_hangup(S.cm, S.pre);
        s_settle();
        break;
    case 'X':
    case 'Z':
        mz_memnet_hangup(S.cm, S.api[ch == 'X' ? 0 : 1]);
        s_settle();
        break;
    default:
        break;
    }
}

static void s_count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    ++*(size_t *)arg;
}

void mz_sim_end(void)
{
    size_t left = 0;

    mz_node_stop(S.node);
    /* The node finishes stopping on its next 250 ms tick; fire it now. */
    if (!uv_is_closing((uv_handle_t *)&S.node->tick))
        uv_timer_start(&S.node->tick, S.node->tick.timer_cb, 0, 250);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    mz_node_free(S.node);
    S.node = NULL;
    S.cm = NULL;
    mz_memnet_free(S.net);      /* the harness's handle, not the node's */
    S.net = NULL;
    uv_run(&S.loop, UV_RUN_NOWAIT);
    uv_walk(&S.loop, s_count_handle, &left);
    if (left != 0) {
        char detail[96];
        snprintf(detail, sizeof detail, "%zu libuv handle(s) left on the loop after "
                 "mz_node_free", left);
        mz_sim_violation("handle-leak", detail, NULL, 0);
    }
    for (int i = 0; i < 2; i++) {
        json_decref(S.api_last[i]);
        S.api_last[i] = NULL;
    }
}

void mz_sim_script(const uint8_t *data, size_t size, char default_ch)
{
    const char *p = (const char *)data, *end = p + size;
    int lines = 0;

    mz_sim_begin();
    while (p < end && lines < SIM_MAX_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0) {
            mz_sim_line(p, n, default_ch);
            lines++;
        }
        p += n + 1;
    }
    mz_sim_end();
}
