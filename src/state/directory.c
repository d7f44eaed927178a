/* ResourceDirectory storage and indexes.
 *
 * Layout, chosen to stay under 300 bytes per record at a million records
 * and to answer "type + capabilities" queries from a list that holds only
 * records of that type having one of those capabilities:
 *
 * - Strings that repeat across records (types, capabilities, owners, node
 *   ids) are interned as atoms: one copy each, named by a small integer id.
 *   Atoms are reference counted by the records that use them, in any role,
 *   and freed (their id recycled) when the last such record goes, so a
 *   stream of short-lived remote records cannot grow the table for ever.
 * - Each record is ONE block: fixed fields, its capability atom ids, the
 *   signature as 64 raw bytes, then resource_id and the compact metadata
 *   JSON as NUL-terminated text. Blocks come from slabs of one size class
 *   each (no per-block malloc header or rounding to 16), and a record finds
 *   its directory through its slab's header rather than a pointer of its
 *   own.
 * - Records live in a slot array and are named by slot number (uint32_t),
 *   which halves the size of every index entry against a pointer. Free slots
 *   are chained, so a slot number never moves while its record lives.
 * - Beside the slot array, a dense 32-bit filter word per slot: a Bloom
 *   filter of the capability atoms. A query rejects nearly every candidate
 *   from this array without reading the record itself.
 * - Per type atom and per node atom: the slots of its records. Per (type,
 *   capability) pair that some record has: the slots of those records; a
 *   capability's pairs are chained from its atom, so a query by capability
 *   without a type walks them. A record keeps its position in each list,
 *   so removal is a swap with the last entry, O(1) per list, and a pair
 *   goes when its last record does.
 * - resource_id -> slot is a separate open-addressing table whose entries
 *   are a slot number and 32 bits of hash: 8 bytes, no key copy.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/directory_int.h"
#include "util/hmap.h"
#include "meshzero/directory.h"

/* Record slabs tell AddressSanitizer which of their bytes are not a live
 * record, so that a stray access there is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define MZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MZ_ASAN 1
#endif
#endif
#ifdef MZ_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

/* Version numbers are exact in a JSON double up to 2^53 (PROTOCOL.md). */
#define MZ_VERSION_MAX  (INT64_C(1) << 53)
/* Raw bytes of a record signature (128 hex characters). */
#define MZ_SIG_BYTES    64
/* Hex characters of a node id. */
#define MZ_NODE_HEX     64
/* Marks "no atom", "no slot", "empty id-table entry". */
#define MZ_NONE         UINT32_MAX
/* Slot numbers and atom ids are uint32_t; MZ_NONE is reserved. */
#define MZ_DIR_MAX_SLOTS (UINT32_MAX - 1)

/* A growable array of slot numbers. */
struct mz_slotlist {
    uint32_t *v;        /* entries; NULL when cap is 0 */
    uint32_t n;         /* entries in use */
    uint32_t cap;       /* entries allocated */
};

/* An interned string and the records that use it. */
struct mz_atom {
    uint32_t refs;                 /* uses by records, in any role */
    uint32_t id;                   /* index in dir->atoms */
    struct mz_slotlist by_type;    /* records whose resource_type this is */
    struct mz_slotlist by_node;    /* records hosted by this node id */
    uint32_t n_cap;                /* records with this capability */
    uint32_t cap_pairs;            /* first pair of its chain (struct mz_pair) */
    char str[];                    /* the string, NUL-terminated */
};

/* The records of one type that have one capability. A capability's records
 * are the union of its pairs' lists, which are disjoint (a record has one
 * type), so the pairs replace a per-capability list at the same cost per
 * entry, and "type + capabilities" starts from a list that holds only
 * records of the right type. */
struct mz_pair {
    struct mz_slotlist recs;       /* never empty while the pair is live */
    uint32_t type;                 /* atom ids; type MZ_NONE: a free pair id */
    uint32_t cap;
    uint32_t prev;                 /* pairs of the same capability (pair ids, */
    uint32_t next;                 /* MZ_NONE ends); next chains free ids too */
};

struct mz_atom_slot {
    struct mz_atom *atom;          /* NULL when the id is free */
    uint32_t next_free;            /* next free id when atom is NULL */
};

struct mz_rec_cap {
    uint32_t atom;                 /* capability atom id */
    uint32_t pos;                  /* position in its (type, cap) pair's list */
};

struct mz_record {
    int64_t version;               /* 1 .. 2^53 */
    uint32_t type;                 /* atom ids: resource_type, owner, node */
    uint32_t owner;
    uint32_t node;
    uint32_t owner_key;            /* atom id of the owner's public key (hex) */
    uint32_t type_pos;             /* position in the type atom's by_type */
    uint32_t node_pos;             /* position in the node atom's by_node */
    uint16_t meta_len;             /* bytes of metadata JSON, NUL excluded */
    uint8_t id_len;                /* bytes of resource_id, NUL excluded */
    unsigned n_caps : 7;           /* entries in caps (MZ_CAPS_MAX fits) */
    unsigned local : 1;            /* hosted by this node */
    struct mz_rec_cap caps[];      /* then the signature (64 raw bytes),
                                    * resource_id, NUL, metadata, NUL */
};
/* What a query reads (atom ids, flags, caps) comes first, so that a
 * record with a few capabilities is checked from its first 64 or 128
 * bytes; the signature is read only to serialise. The record's slot
 * number is not stored: the id table and every index list already name
 * it. Nor is its directory, which the accessors need for the atoms'
 * strings: the slab holding the record names it (s_rec_dir). */

/* Records up to MZ_SLAB_MAX bytes are carved from slabs of MZ_SLAB_SIZE
 * bytes, aligned to their size, in size classes 8 bytes apart: no malloc
 * header or 16-byte rounding per record, and the slab's header, found by
 * masking a record's address, names the directory. Larger records are
 * malloc'd one by one behind a pointer to their directory. */
#define MZ_SLAB_SIZE    (256 * 1024)
#define MZ_SLAB_MAX     2048
#define MZ_SLAB_CLASSES (MZ_SLAB_MAX / 8)
/* Where a slab's records start: its header, rounded to a cache line. */
#define MZ_SLAB_START   64

struct mz_slab {
    mz_directory *dir;             /* the directory its records belong to */
    struct mz_slab *prev;          /* slabs of this class with room */
    struct mz_slab *next;
    void *free;                    /* freed records, chained through their first word */
    uint32_t bump;                 /* offset of the first never-used byte */
    uint32_t live;                 /* records in it */
    uint32_t size;                 /* bytes per record: its class times 8 */
    bool listed;                   /* on its class's list of slabs with room */
};

/* resource_id table entry: slot MZ_NONE means empty. */
struct mz_id_ent {
    uint32_t slot;
    uint32_t tag;                  /* 32 bits of the id's hash; home = tag & mask */
};

struct mz_directory {
    mz_record **recs;              /* slot -> record (owned); NULL when free */
    uint32_t *filt;                /* slot -> filter word (s_filt_*), or the
                                    * next free slot when the slot is free */
    uint32_t n_slots;              /* slots ever used (high-water mark) */
    uint32_t cap_slots;            /* slots allocated */
    uint32_t free_slot;            /* head of the free-slot chain, or MZ_NONE */
    size_t count;                  /* records held */
    struct mz_id_ent *ids;         /* resource_id -> slot */
    size_t cap_ids;                /* power of two, or 0 */
    uint64_t seed;                 /* hash seed of ids */
    mz_hmap *atom_by_str;          /* string -> struct mz_atom */
    struct mz_atom_slot *atoms;    /* atom id -> atom */
    uint32_t n_atoms;              /* atom ids ever used */
    uint32_t cap_atoms;            /* atoms allocated */
    uint32_t free_atom;            /* head of the free-id chain, or MZ_NONE */
    struct mz_pair *pairs;         /* pair id -> pair */
    uint32_t n_pairs;              /* pair ids ever used */
    uint32_t cap_pairs;            /* pairs allocated */
    uint32_t free_pair;            /* head of the free-id chain, or MZ_NONE */
    uint32_t live_pairs;           /* pairs in use */
    uint32_t *pair_ht;             /* (type, cap) -> pair id, MZ_NONE empty */
    size_t cap_pair_ht;            /* power of two, or 0 */
    struct mz_slab *slabs[MZ_SLAB_CLASSES]; /* per size class: slabs with room */
};

/* A record's fields as read by s_parse; strings borrow from the JSON. */
struct mz_rec_fields {
    const char *id;
    size_t id_len;
    const char *type;
    const char *owner;
    const char *node;
    const char *owner_key;
    const char *caps[MZ_CAPS_MAX];
    size_t n_caps;
    const json_t *metadata;
    size_t meta_len;               /* bytes of its compact sorted JSON */
    int64_t version;
    unsigned char sig[MZ_SIG_BYTES];
};

/* ---- record accessors --------------------------------------------------- */

static const char *s_atom_str(const mz_directory *dir, uint32_t id)
{
    return dir->atoms[id].atom->str;
}

/* Bytes of a record with these fields. From offsetof, not sizeof: the
 * struct's tail padding is not allocated on top of caps[]. */
static size_t s_rec_size(size_t n_caps, size_t id_len, size_t meta_len)
{
    return offsetof(mz_record, caps) + n_caps * sizeof(struct mz_rec_cap) + MZ_SIG_BYTES +
           id_len + 1 + meta_len + 1;
}

static struct mz_slab *s_slab_of(const void *p)
{
    return (struct mz_slab *)((uintptr_t)p & ~(uintptr_t)(MZ_SLAB_SIZE - 1));
}

static const mz_directory *s_rec_dir(const mz_record *rec)
{
    if (s_rec_size(rec->n_caps, rec->id_len, rec->meta_len) > MZ_SLAB_MAX)
        return ((mz_directory *const *)(const void *)rec)[-1];
    return s_slab_of(rec)->dir;
}

static const unsigned char *s_rec_sig(const mz_record *rec)
{
    return (const unsigned char *)&rec->caps[rec->n_caps];
}

static const char *s_rec_id(const mz_record *rec)
{
    return (const char *)s_rec_sig(rec) + MZ_SIG_BYTES;
}

/* The area after caps[], writable while the record is built. */
static unsigned char *s_rec_tail(mz_record *rec)
{
    return (unsigned char *)&rec->caps[rec->n_caps];
}

static const char *s_rec_meta(const mz_record *rec)
{
    return s_rec_id(rec) + rec->id_len + 1;
}

const char *mz_record_id(const mz_record *rec)
{
    return s_rec_id(rec);
}

const char *mz_record_type(const mz_record *rec)
{
    return s_atom_str(s_rec_dir(rec), rec->type);
}

const char *mz_record_node(const mz_record *rec)
{
    return s_atom_str(s_rec_dir(rec), rec->node);
}

const char *mz_record_metadata_text(const mz_record *rec)
{
    return s_rec_meta(rec);
}

const char *mz_record_owner_key(const mz_record *rec)
{
    return s_atom_str(s_rec_dir(rec), rec->owner_key);
}

const char *mz_record_owner(const mz_record *rec)
{
    return s_atom_str(s_rec_dir(rec), rec->owner);
}

int64_t mz_record_version(const mz_record *rec)
{
    return rec->version;
}

bool mz_record_local(const mz_record *rec)
{
    return rec->local;
}

static const char s_hex[] = "0123456789abcdef";

json_t *mz_record_to_json(const mz_record *rec)
{
    const mz_directory *dir = s_rec_dir(rec);
    json_t *o = json_object();
    json_t *caps = json_array();
    json_t *meta = NULL;
    const unsigned char *raw = s_rec_sig(rec);
    char sig[2 * MZ_SIG_BYTES + 1];

    if (o == NULL || caps == NULL)
        goto fail;
    for (size_t i = 0; i < rec->n_caps; i++) {
        if (json_array_append_new(caps, json_string(s_atom_str(dir, rec->caps[i].atom))) != 0)
            goto fail;
    }
    for (size_t i = 0; i < MZ_SIG_BYTES; i++) {
        sig[2 * i] = s_hex[raw[i] >> 4];
        sig[2 * i + 1] = s_hex[raw[i] & 15];
    }
    sig[2 * MZ_SIG_BYTES] = '\0';
    /* The _new setters consume their value even when they fail, hence
     * caps = NULL / meta = NULL straight after handing them over. */
    if (json_object_set_new(o, "resource_id", json_string(s_rec_id(rec))) != 0 ||
        json_object_set_new(o, "resource_type", json_string(mz_record_type(rec))) != 0 ||
        json_object_set_new(o, "location", json_string(rec->local ? "local" : "remote")) != 0 ||
        json_object_set_new(o, "owner", json_string(mz_record_owner(rec))) != 0)
        goto fail;
    if (json_object_set_new(o, "capabilities", caps) != 0) {
        caps = NULL;
        goto fail;
    }
    caps = NULL;
    /* The stored text is jansson's own compact output, so it parses back;
     * NULL here can only be out of memory. JSON_ALLOW_NUL keeps "\u0000"
     * inside strings round-tripping. */
    meta = json_loadb(s_rec_meta(rec), rec->meta_len, JSON_ALLOW_NUL, NULL);
    if (meta == NULL)
        goto fail;
    if (json_object_set_new(o, "metadata", meta) != 0) {
        meta = NULL;
        goto fail;
    }
    meta = NULL;
    if (json_object_set_new(o, "node", json_string(mz_record_node(rec))) != 0 ||
        json_object_set_new(o, "version", json_integer(rec->version)) != 0 ||
        json_object_set_new(o, "owner_key", json_string(mz_record_owner_key(rec))) != 0 ||
        json_object_set_new(o, "signature", json_string(sig)) != 0)
        goto fail;
    return o;
fail:
    json_decref(caps);
    json_decref(meta);
    json_decref(o);
    return NULL;
}

/* ---- validation --------------------------------------------------------- */

static bool s_is_type_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
}

static bool s_is_cap_char(unsigned char c)
{
    return s_is_type_char(c) || c == '/';
}

static int s_hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;              /* upper case is refused: ids have one spelling */
}

/* True when v is a string of exactly 2*n lowercase hex digits; the bytes go
 * to out when it is not NULL. */
static bool s_hex_decode(const json_t *v, unsigned char *out, size_t n)
{
    const char *s = json_string_value(v);

    if (s == NULL || json_string_length(v) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = s_hex_val((unsigned char)s[2 * i]);
        int lo = s_hex_val((unsigned char)s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        if (out != NULL)
            out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* A string of 1..max bytes, each accepted by ok. Uses the JSON length so
 * an embedded NUL is seen (and refused) rather than cutting the string. */
static const char *s_token(const json_t *v, size_t max, bool (*ok)(unsigned char))
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);

    if (s == NULL || len == 0 || len > max)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (!ok((unsigned char)s[i]))
            return NULL;
    }
    return s;
}

static bool s_is_id_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

/* Owner: free text, but no C0/DEL or C1 control characters (jansson has
 * already checked the UTF-8; C1 controls are U+0080..U+009F = C2 80..C2 9F). */
static const char *s_owner(const json_t *v)
{
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t len = json_string_length(v);

    if (s == NULL || len > MZ_OWNER_MAX)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return NULL;
        if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            return NULL;
    }
    return (const char *)s;
}

/* Copies a peer-chosen key into buf fit for an error message: printable
 * ASCII only, truncated. */
static const char *s_printable(const char *key, char *buf, size_t size)
{
    size_t i;

    for (i = 0; key[i] != '\0' && i + 4 < size; i++)
        buf[i] = (key[i] >= 0x20 && key[i] <= 0x7e) ? key[i] : '?';
    if (key[i] != '\0' && i >= 3) {
        memcpy(&buf[i - 3], "...", 3);
    }
    buf[i] = '\0';
    return buf;
}

/* The fields a record may have; all but the last (location) required. */
static const char *const s_fields[] = {
    "resource_id", "resource_type", "owner", "capabilities", "metadata",
    "node", "version", "signature", "owner_key", "location", NULL,
};
#define MZ_REQUIRED_FIELDS 9

static mz_status s_field_err(mz_err *err, const char *id, const char *field, const char *what)
{
    return mz_err_set(err, MZ_EPROTO, "record '%s': field '%s' %s", id, field, what);
}

/* Exactly the fields of a record, the required ones present. */
static mz_status s_parse_fieldset(const json_t *rec, const char *id, mz_err *err)
{
    const char *key;
    const json_t *v;
    char kbuf[48];

    /* Exact field set: an unknown field is an error, not something to
     * carry silently into other nodes' directories. The cast only drops
     * const for jansson's iteration macro, which does not modify. */
    json_object_foreach((json_t *)rec, key, v) {
        size_t i;

        for (i = 0; s_fields[i] != NULL && strcmp(s_fields[i], key) != 0; i++)
            ;
        if (s_fields[i] == NULL)
            return mz_err_set(err, MZ_EPROTO, "record '%s': unknown field '%s'", id,
                              s_printable(key, kbuf, sizeof kbuf));
    }
    for (size_t i = 1; i < MZ_REQUIRED_FIELDS; i++) {
        if (json_object_get(rec, s_fields[i]) == NULL)
            return s_field_err(err, id, s_fields[i], "is missing");
    }
    return MZ_OK;
}

/* capabilities (v) into f->caps: distinct tokens, at most MZ_CAPS_MAX. */
static mz_status s_parse_caps(const json_t *v, struct mz_rec_fields *f, mz_err *err)
{
    if (!json_is_array(v))
        return s_field_err(err, f->id, "capabilities", "must be an array of strings");
    if (json_array_size(v) > MZ_CAPS_MAX)
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'capabilities' must have at most "
                          "%d entries", f->id, MZ_CAPS_MAX);
    f->n_caps = json_array_size(v);
    for (size_t i = 0; i < f->n_caps; i++) {
        const json_t *c = json_array_get(v, i);

        if (!json_is_string(c))
            return s_field_err(err, f->id, "capabilities", "must be an array of strings");
        f->caps[i] = s_token(c, MZ_CAP_MAX, s_is_cap_char);
        if (f->caps[i] == NULL)
            return mz_err_set(err, MZ_EPROTO, "record '%s': field 'capabilities' entry %zu must "
                              "be 1..%d characters from [A-Za-z0-9_.:/-]", f->id, i, MZ_CAP_MAX);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(f->caps[j], f->caps[i]) == 0)
                return mz_err_set(err, MZ_EPROTO, "record '%s': field 'capabilities' lists "
                                  "'%s' twice", f->id, f->caps[i]);
        }
    }
    return MZ_OK;
}

/* metadata: an object of at most MZ_METADATA_MAX bytes as compact JSON. */
static mz_status s_parse_metadata(const json_t *metadata, struct mz_rec_fields *f, mz_err *err)
{
    const json_t *v;

    f->metadata = metadata;
    if (!json_is_object(f->metadata))
        return s_field_err(err, f->id, "metadata", "must be an object");
    v = json_object_get(f->metadata, "last_updated");
    if (v != NULL && !json_is_string(v))
        return s_field_err(err, f->id, "metadata.last_updated", "must be a string");
    /* Measure without keeping the text: json_dumpb with no buffer only
     * counts. 0 means failure, as "{}" is the shortest output. */
    f->meta_len = json_dumpb(f->metadata, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (f->meta_len == 0)
        return mz_err_set(err, MZ_ENOMEM, "record '%s': serialising metadata", f->id);
    if (f->meta_len > MZ_METADATA_MAX)
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'metadata' must be at most %d "
                          "bytes as compact JSON (is %zu)", f->id, MZ_METADATA_MAX, f->meta_len);
    return MZ_OK;
}

/* Checks rec and reads its fields into f (strings borrowed from rec). */
static mz_status s_parse(const json_t *rec, struct mz_rec_fields *f, mz_err *err)
{
    const json_t *v;
    mz_status rc;

    if (!json_is_object(rec))
        return mz_err_set(err, MZ_EPROTO, "record: must be a JSON object");
    v = json_object_get(rec, "resource_id");
    if (v == NULL)
        return mz_err_set(err, MZ_EPROTO, "record: field 'resource_id' is missing");
    f->id = s_token(v, MZ_RESOURCE_ID_MAX, s_is_id_char);
    if (f->id == NULL)
        return mz_err_set(err, MZ_EPROTO, "record: field 'resource_id' must be a string of "
                          "1..%d printable ASCII characters without spaces", MZ_RESOURCE_ID_MAX);
    f->id_len = json_string_length(v);

    if ((rc = s_parse_fieldset(rec, f->id, err)) != MZ_OK)
        return rc;

    f->type = s_token(json_object_get(rec, "resource_type"), MZ_RESOURCE_TYPE_MAX, s_is_type_char);
    if (f->type == NULL)
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'resource_type' must be a string "
                          "of 1..%d characters from [A-Za-z0-9_.:-]", f->id, MZ_RESOURCE_TYPE_MAX);

    f->owner = s_owner(json_object_get(rec, "owner"));
    if (f->owner == NULL)
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'owner' must be a string of at "
                          "most %d bytes without control characters", f->id, MZ_OWNER_MAX);

    if ((rc = s_parse_caps(json_object_get(rec, "capabilities"), f, err)) != MZ_OK)
        return rc;

    if ((rc = s_parse_metadata(json_object_get(rec, "metadata"), f, err)) != MZ_OK)
        return rc;

    v = json_object_get(rec, "node");
    if (!s_hex_decode(v, NULL, MZ_NODE_HEX / 2))
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'node' must be %d lowercase hex "
                          "characters", f->id, MZ_NODE_HEX);
    f->node = json_string_value(v);

    v = json_object_get(rec, "owner_key");
    if (!s_hex_decode(v, NULL, MZ_NODE_HEX / 2))
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'owner_key' must be %d lowercase "
                          "hex characters", f->id, MZ_NODE_HEX);
    f->owner_key = json_string_value(v);

    v = json_object_get(rec, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > MZ_VERSION_MAX)
        return s_field_err(err, f->id, "version", "must be an integer from 1 to 2^53");
    f->version = json_integer_value(v);

    if (!s_hex_decode(json_object_get(rec, "signature"), f->sig, MZ_SIG_BYTES))
        return mz_err_set(err, MZ_EPROTO, "record '%s': field 'signature' must be %d lowercase "
                          "hex characters", f->id, 2 * MZ_SIG_BYTES);
    return MZ_OK;
}

mz_status mz_record_validate(const json_t *rec, mz_err *err)
{
    struct mz_rec_fields f;

    return s_parse(rec, &f, err);
}

/* ---- slot lists ---------------------------------------------------------- */

/* List capacities run 6, 14, 30, 62, ...: with malloc's 8-byte header
 * every array is then a power-of-two block, so the blocks a growing list
 * gives back fit the next list passing through the same size. Growing by
 * half instead left more of the heap in odd-sized holes than doubling
 * leaves unused at the end of lists, with thousands of (type, capability)
 * lists growing side by side. */
#define MZ_LIST_MIN 6

/* Makes room for one more entry. */
static mz_status s_list_reserve(struct mz_slotlist *l)
{
    uint32_t cap;
    uint32_t *v;

    if (l->n < l->cap)
        return MZ_OK;
    if (l->cap >= MZ_DIR_MAX_SLOTS)
        return MZ_ELIMIT;
    cap = l->cap < MZ_LIST_MIN ? MZ_LIST_MIN : 2 * l->cap + 2;
    if (cap > MZ_DIR_MAX_SLOTS || cap < l->cap)
        cap = MZ_DIR_MAX_SLOTS;
    v = realloc(l->v, (size_t)cap * sizeof *v);
    if (v == NULL)
        return MZ_ENOMEM;
    l->v = v;
    l->cap = cap;
    return MZ_OK;
}

/* Appends slot (room reserved beforehand) and returns its position. */
static uint32_t s_list_push(struct mz_slotlist *l, uint32_t slot)
{
    l->v[l->n] = slot;
    return l->n++;
}

/* Removes the entry at pos by moving the last entry into it. Returns the
 * slot number that moved (its owner must learn its new position), or
 * MZ_NONE when pos was the last. Never frees: an update reserves room
 * before removing the old record, and that room must survive the removal
 * (s_list_trim gives memory back afterwards). */
static uint32_t s_list_remove(struct mz_slotlist *l, uint32_t pos)
{
    uint32_t moved = MZ_NONE;

    l->n--;
    if (pos != l->n) {
        moved = l->v[l->n];
        l->v[pos] = moved;
    }
    return moved;
}

/* Gives back the memory of a list that is empty or mostly empty; failing to
 * shrink is harmless. */
static void s_list_trim(struct mz_slotlist *l)
{
    if (l->n == 0) {
        free(l->v);
        l->v = NULL;
        l->cap = 0;
    } else if (l->cap >= 62 && l->n < l->cap / 4) {
        uint32_t cap = (l->cap - 2) / 2;        /* one step back down the sizes */
        uint32_t *v = realloc(l->v, (size_t)cap * sizeof *v);

        if (v != NULL) {
            l->v = v;
            l->cap = cap;
        }
    }
}

/* ---- atoms --------------------------------------------------------------- */

/* Finds or creates the atom for s and takes a reference to it. */
static mz_status s_atom_ref(mz_directory *dir, const char *s, uint32_t *out)
{
    struct mz_atom *a = mz_hmap_get(dir->atom_by_str, s);
    size_t len;
    uint32_t id;

    if (a != NULL) {
        a->refs++;
        *out = a->id;
        return MZ_OK;
    }
    if (dir->free_atom == MZ_NONE && dir->n_atoms == dir->cap_atoms) {
        uint32_t cap = dir->cap_atoms < 64 ? 64 : dir->cap_atoms + dir->cap_atoms / 2;
        struct mz_atom_slot *atoms;

        if (dir->cap_atoms >= MZ_DIR_MAX_SLOTS / 2)
            return MZ_ELIMIT;
        atoms = realloc(dir->atoms, (size_t)cap * sizeof *atoms);
        if (atoms == NULL)
            return MZ_ENOMEM;
        dir->atoms = atoms;
        dir->cap_atoms = cap;
    }
    len = strlen(s);
    a = calloc(1, sizeof *a + len + 1);
    if (a == NULL)
        return MZ_ENOMEM;
    memcpy(a->str, s, len + 1);
    a->cap_pairs = MZ_NONE;
    if (mz_hmap_put(dir->atom_by_str, s, a, NULL) != MZ_OK) {
        free(a);
        return MZ_ENOMEM;
    }
    if (dir->free_atom != MZ_NONE) {
        id = dir->free_atom;
        dir->free_atom = dir->atoms[id].next_free;
    } else {
        id = dir->n_atoms++;
    }
    dir->atoms[id].atom = a;
    a->id = id;
    a->refs = 1;
    *out = id;
    return MZ_OK;
}

/* Drops a reference; the last one frees the atom and recycles its id. By
 * then its lists are empty: every list entry is a record holding a ref. */
static void s_atom_unref(mz_directory *dir, uint32_t id)
{
    struct mz_atom *a;

    if (id == MZ_NONE)
        return;
    a = dir->atoms[id].atom;
    if (--a->refs > 0)
        return;
    mz_hmap_remove(dir->atom_by_str, a->str);
    free(a->by_type.v);
    free(a->by_node.v);
    free(a);
    dir->atoms[id].atom = NULL;
    dir->atoms[id].next_free = dir->free_atom;
    dir->free_atom = id;
}

/* The atom for s, or NULL when no record uses s in any role. */
static const struct mz_atom *s_atom_find(const mz_directory *dir, const char *s)
{
    return mz_hmap_get(dir->atom_by_str, s);
}

/* ---- (type, capability) pairs ----------------------------------------------- */

/* Home position of (type, cap) in pair_ht: the murmur3 finaliser over both
 * ids and the directory's seed, so that peers choosing strings (and so the
 * order atom ids are handed out) cannot pile pairs onto one chain. */
static size_t s_pair_home(const mz_directory *dir, uint32_t type, uint32_t cap)
{
    uint64_t h = ((uint64_t)type << 32 | cap) ^ dir->seed;

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (size_t)h & (dir->cap_pair_ht - 1);
}

/* Position in pair_ht of (type, cap), or SIZE_MAX. The table is never full
 * (load <= 3/4), so the probe meets an empty entry. */
static size_t s_pair_at(const mz_directory *dir, uint32_t type, uint32_t cap)
{
    size_t mask = dir->cap_pair_ht - 1;

    if (dir->live_pairs == 0)
        return SIZE_MAX;
    for (size_t i = s_pair_home(dir, type, cap);; i = (i + 1) & mask) {
        uint32_t id = dir->pair_ht[i];

        if (id == MZ_NONE)
            return SIZE_MAX;
        if (dir->pairs[id].type == type && dir->pairs[id].cap == cap)
            return i;
    }
}

static struct mz_pair *s_pair_find(const mz_directory *dir, uint32_t type, uint32_t cap)
{
    size_t at = s_pair_at(dir, type, cap);

    return at == SIZE_MAX ? NULL : &dir->pairs[dir->pair_ht[at]];
}

static void s_pair_place(mz_directory *dir, uint32_t id)
{
    size_t mask = dir->cap_pair_ht - 1;
    size_t i = s_pair_home(dir, dir->pairs[id].type, dir->pairs[id].cap);

    while (dir->pair_ht[i] != MZ_NONE)
        i = (i + 1) & mask;
    dir->pair_ht[i] = id;
}

/* Makes room for n more pairs, ids and hash entries, so that s_pair_new
 * cannot fail. Moves dir->pairs: pair pointers do not survive it. */
static mz_status s_pairs_reserve(mz_directory *dir, uint32_t n)
{
    uint32_t need;

    if (dir->live_pairs > MZ_DIR_MAX_SLOTS - n)
        return MZ_ELIMIT;
    need = dir->live_pairs + n;
    if (need > dir->cap_pairs) {
        uint32_t cap = dir->cap_pairs < 64 ? 64 : dir->cap_pairs + dir->cap_pairs / 2;
        struct mz_pair *pairs;

        if (cap < need || cap > MZ_DIR_MAX_SLOTS)
            cap = need;
        pairs = realloc(dir->pairs, (size_t)cap * sizeof *pairs);
        if (pairs == NULL)
            return MZ_ENOMEM;
        dir->pairs = pairs;
        dir->cap_pairs = cap;
    }
    if ((size_t)need * 4 > dir->cap_pair_ht * 3) {
        size_t cap = dir->cap_pair_ht < 64 ? 64 : dir->cap_pair_ht;
        uint32_t *ht;

        while ((size_t)need * 4 > cap * 3)
            cap *= 2;
        ht = malloc(cap * sizeof *ht);
        if (ht == NULL)
            return MZ_ENOMEM;
        for (size_t i = 0; i < cap; i++)
            ht[i] = MZ_NONE;
        free(dir->pair_ht);
        dir->pair_ht = ht;
        dir->cap_pair_ht = cap;
        for (uint32_t id = 0; id < dir->n_pairs; id++) {
            if (dir->pairs[id].type != MZ_NONE)
                s_pair_place(dir, id);
        }
    }
    return MZ_OK;
}

/* Creates the empty pair (type, cap), room reserved, first in the chain of
 * its capability. */
static struct mz_pair *s_pair_new(mz_directory *dir, uint32_t type, uint32_t cap)
{
    struct mz_atom *ca = dir->atoms[cap].atom;
    uint32_t id = dir->free_pair;
    struct mz_pair *pr;

    if (id != MZ_NONE)
        dir->free_pair = dir->pairs[id].next;
    else
        id = dir->n_pairs++;
    pr = &dir->pairs[id];
    *pr = (struct mz_pair){ .type = type, .cap = cap, .prev = MZ_NONE, .next = ca->cap_pairs };
    if (ca->cap_pairs != MZ_NONE)
        dir->pairs[ca->cap_pairs].prev = id;
    ca->cap_pairs = id;
    s_pair_place(dir, id);
    dir->live_pairs++;
    return pr;
}

/* Frees the pair at pair_ht[at], whose list is empty, and recycles its id.
 * The hash entry is deleted by shifting back the entries after it (linear
 * probing without tombstones, as for resource ids). */
static void s_pair_drop(mz_directory *dir, size_t at)
{
    size_t mask = dir->cap_pair_ht - 1;
    uint32_t id = dir->pair_ht[at];
    struct mz_pair *pr = &dir->pairs[id];
    size_t i = at, j = at;

    if (pr->prev != MZ_NONE)
        dir->pairs[pr->prev].next = pr->next;
    else
        dir->atoms[pr->cap].atom->cap_pairs = pr->next;
    if (pr->next != MZ_NONE)
        dir->pairs[pr->next].prev = pr->prev;
    for (;;) {
        size_t home;
        uint32_t other;

        j = (j + 1) & mask;
        other = dir->pair_ht[j];
        if (other == MZ_NONE)
            break;
        home = s_pair_home(dir, dir->pairs[other].type, dir->pairs[other].cap);
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            dir->pair_ht[i] = other;
            i = j;
        }
    }
    dir->pair_ht[i] = MZ_NONE;
    free(pr->recs.v);
    *pr = (struct mz_pair){ .type = MZ_NONE, .cap = MZ_NONE, .prev = MZ_NONE,
                            .next = dir->free_pair };
    dir->free_pair = id;
    dir->live_pairs--;
}

/* Drops the pairs of rec's type and capabilities that are empty and trims
 * the others' lists. */
static void s_pairs_trim(mz_directory *dir, const mz_record *rec)
{
    for (size_t i = 0; i < rec->n_caps; i++) {
        size_t at = s_pair_at(dir, rec->type, rec->caps[i].atom);
        struct mz_pair *pr;

        if (at == SIZE_MAX)
            continue;
        pr = &dir->pairs[dir->pair_ht[at]];
        if (pr->recs.n == 0)
            s_pair_drop(dir, at);
        else
            s_list_trim(&pr->recs);
    }
}

/* ---- record memory --------------------------------------------------------- */

static void s_slab_link(mz_directory *dir, struct mz_slab *sl)
{
    struct mz_slab **head = &dir->slabs[sl->size / 8 - 1];

    sl->prev = NULL;
    sl->next = *head;
    if (*head != NULL)
        (*head)->prev = sl;
    *head = sl;
    sl->listed = true;
}

static void s_slab_unlink(mz_directory *dir, struct mz_slab *sl)
{
    if (sl->prev != NULL)
        sl->prev->next = sl->next;
    else
        dir->slabs[sl->size / 8 - 1] = sl->next;
    if (sl->next != NULL)
        sl->next->prev = sl->prev;
    sl->listed = false;
}

/* Memory for a record of size bytes, or NULL. */
static mz_record *s_rec_alloc(mz_directory *dir, size_t size)
{
    struct mz_slab *sl;
    size_t cls = (size + 7) / 8;
    char *p;

    if (size > MZ_SLAB_MAX) {
        mz_directory **big = malloc(sizeof *big + size);

        if (big == NULL)
            return NULL;
        big[0] = dir;
        return (mz_record *)(void *)&big[1];
    }
    sl = dir->slabs[cls - 1];
    if (sl == NULL) {
        void *mem = NULL;

        if (posix_memalign(&mem, MZ_SLAB_SIZE, MZ_SLAB_SIZE) != 0)
            return NULL;
        sl = mem;
        *sl = (struct mz_slab){ .dir = dir, .bump = MZ_SLAB_START, .size = (uint32_t)(cls * 8) };
        ASAN_POISON_MEMORY_REGION((char *)mem + MZ_SLAB_START, MZ_SLAB_SIZE - MZ_SLAB_START);
        s_slab_link(dir, sl);
    }
    if (sl->free != NULL) {
        p = sl->free;
        ASAN_UNPOISON_MEMORY_REGION(p, sl->size);
        memcpy(&sl->free, p, sizeof sl->free);
    } else {
        p = (char *)sl + sl->bump;
        ASAN_UNPOISON_MEMORY_REGION(p, sl->size);
        sl->bump += sl->size;
    }
    sl->live++;
    if (sl->free == NULL && sl->bump + sl->size > MZ_SLAB_SIZE)
        s_slab_unlink(dir, sl);            /* full */
    return (mz_record *)(void *)p;
}

/* Gives back rec's memory; a slab whose last record goes is freed. */
static void s_rec_dealloc(mz_directory *dir, mz_record *rec)
{
    struct mz_slab *sl;

    if (s_rec_size(rec->n_caps, rec->id_len, rec->meta_len) > MZ_SLAB_MAX) {
        free((mz_directory **)(void *)rec - 1);
        return;
    }
    sl = s_slab_of(rec);
    memcpy(rec, &sl->free, sizeof sl->free);
    sl->free = rec;
    ASAN_POISON_MEMORY_REGION(rec, sl->size);
    if (--sl->live == 0) {
        if (sl->listed)
            s_slab_unlink(dir, sl);
        free(sl);
    } else if (!sl->listed) {
        s_slab_link(dir, sl);
    }
}

/* ---- records -------------------------------------------------------------- */

/* Releases what a (possibly half-built) record holds, then the record. */
static void s_rec_free(mz_directory *dir, mz_record *rec)
{
    if (rec == NULL)
        return;
    s_atom_unref(dir, rec->type);
    s_atom_unref(dir, rec->owner);
    s_atom_unref(dir, rec->node);
    s_atom_unref(dir, rec->owner_key);
    for (size_t i = 0; i < rec->n_caps; i++)
        s_atom_unref(dir, rec->caps[i].atom);
    s_rec_dealloc(dir, rec);
}

/* Builds a record from parsed fields, taking atom references. */
static mz_status s_rec_build(mz_directory *dir, const struct mz_rec_fields *f, bool local,
                             mz_record **out, mz_err *err)
{
    size_t size = s_rec_size(f->n_caps, f->id_len, f->meta_len);
    mz_record *rec = s_rec_alloc(dir, size);
    char *meta;
    mz_status rc = MZ_ENOMEM;

    if (rec == NULL)
        return mz_err_set(err, MZ_ENOMEM, "record '%s': allocating %zu bytes", f->id, size);
    rec->version = f->version;
    rec->type = rec->owner = rec->node = rec->owner_key = MZ_NONE;
    rec->type_pos = rec->node_pos = MZ_NONE;
    rec->meta_len = (uint16_t)f->meta_len;
    rec->id_len = (uint8_t)f->id_len;
    rec->n_caps = f->n_caps & 0x7f;
    rec->local = local;
    /* MZ_NONE first, so that s_rec_free on failure releases only the atoms
     * actually referenced. */
    for (size_t i = 0; i < f->n_caps; i++) {
        rec->caps[i].atom = MZ_NONE;
        rec->caps[i].pos = MZ_NONE;
    }
    memcpy(s_rec_tail(rec), f->sig, MZ_SIG_BYTES);
    memcpy(s_rec_tail(rec) + MZ_SIG_BYTES, f->id, f->id_len + 1);
    meta = (char *)s_rec_tail(rec) + MZ_SIG_BYTES + f->id_len + 1;
    if (json_dumpb(f->metadata, meta, f->meta_len, JSON_COMPACT | JSON_SORT_KEYS) != f->meta_len)
        goto fail;
    meta[f->meta_len] = '\0';
    if ((rc = s_atom_ref(dir, f->type, &rec->type)) != MZ_OK ||
        (rc = s_atom_ref(dir, f->owner, &rec->owner)) != MZ_OK ||
        (rc = s_atom_ref(dir, f->node, &rec->node)) != MZ_OK ||
        (rc = s_atom_ref(dir, f->owner_key, &rec->owner_key)) != MZ_OK)
        goto fail;
    for (size_t i = 0; i < f->n_caps; i++) {
        if ((rc = s_atom_ref(dir, f->caps[i], &rec->caps[i].atom)) != MZ_OK)
            goto fail;
    }
    *out = rec;
    return MZ_OK;
fail:
    s_rec_free(dir, rec);
    if (rc == MZ_ELIMIT)
        return mz_err_set(err, MZ_ELIMIT, "record '%s': too many distinct strings", f->id);
    return mz_err_set(err, MZ_ENOMEM, "record '%s': out of memory", f->id);
}

/* ---- slots and the resource_id table ------------------------------------- */

/* Makes sure s_slot_take has a slot to give. recs and filt grow one after
 * the other; if the second fails the first is merely bigger than cap_slots
 * says, which is harmless. */
static mz_status s_slot_reserve(mz_directory *dir)
{
    uint32_t cap;
    mz_record **recs;
    uint32_t *filt;

    if (dir->free_slot != MZ_NONE || dir->n_slots < dir->cap_slots)
        return MZ_OK;
    if (dir->cap_slots >= MZ_DIR_MAX_SLOTS)
        return MZ_ELIMIT;
    cap = dir->cap_slots < 64 ? 64 : dir->cap_slots + dir->cap_slots / 2;
    if (cap > MZ_DIR_MAX_SLOTS || cap < dir->cap_slots)
        cap = MZ_DIR_MAX_SLOTS;
    recs = realloc(dir->recs, (size_t)cap * sizeof *recs);
    if (recs == NULL)
        return MZ_ENOMEM;
    dir->recs = recs;
    filt = realloc(dir->filt, (size_t)cap * sizeof *filt);
    if (filt == NULL)
        return MZ_ENOMEM;
    dir->filt = filt;
    dir->cap_slots = cap;
    return MZ_OK;
}

/* Reuses the most recently freed slot first: it is likeliest in cache. */
static uint32_t s_slot_take(mz_directory *dir)
{
    uint32_t slot = dir->free_slot;

    if (slot != MZ_NONE)
        dir->free_slot = dir->filt[slot];
    else
        slot = dir->n_slots++;
    return slot;
}

static void s_slot_release(mz_directory *dir, uint32_t slot)
{
    dir->recs[slot] = NULL;
    dir->filt[slot] = dir->free_slot;
    dir->free_slot = slot;
}

static uint32_t s_id_tag(const mz_directory *dir, const char *id, size_t len)
{
    uint64_t h = mz_hmap_hash(dir->seed, id, len);

    return (uint32_t)(h ^ (h >> 32));
}

/* Position in dir->ids of resource_id, or SIZE_MAX. The table is never
 * full (load <= 3/4), so the probe meets an empty entry. */
static size_t s_id_find(const mz_directory *dir, const char *id, size_t len, uint32_t tag)
{
    size_t mask = dir->cap_ids - 1;

    if (dir->count == 0)
        return SIZE_MAX;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
        const struct mz_id_ent *e = &dir->ids[i];
        const mz_record *rec;

        if (e->slot == MZ_NONE)
            return SIZE_MAX;
        if (e->tag != tag)
            continue;
        rec = dir->recs[e->slot];
        if (rec->id_len == len && memcmp(s_rec_id(rec), id, len) == 0)
            return i;
    }
}

static void s_id_place(struct mz_id_ent *ids, size_t cap, struct mz_id_ent e)
{
    size_t i = e.tag & (cap - 1);

    while (ids[i].slot != MZ_NONE)
        i = (i + 1) & (cap - 1);
    ids[i] = e;
}

/* Makes room for one more id at load <= 3/4 (doubling). */
static mz_status s_ids_reserve(mz_directory *dir)
{
    size_t cap = dir->cap_ids < 16 ? 16 : dir->cap_ids * 2;
    struct mz_id_ent *ids;

    if ((dir->count + 1) * 4 <= dir->cap_ids * 3)
        return MZ_OK;
    if (cap > SIZE_MAX / sizeof *ids)
        return MZ_ENOMEM;
    ids = malloc(cap * sizeof *ids);
    if (ids == NULL)
        return MZ_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        ids[i].slot = MZ_NONE;
    for (size_t i = 0; i < dir->cap_ids; i++) {
        if (dir->ids[i].slot != MZ_NONE)
            s_id_place(ids, cap, dir->ids[i]);
    }
    free(dir->ids);
    dir->ids = ids;
    dir->cap_ids = cap;
    return MZ_OK;
}

/* Deletes entry i by shifting back the entries after it that may move
 * (linear probing, no tombstones: lookups stay short under churn). */
static void s_id_delete(mz_directory *dir, size_t i)
{
    size_t mask = dir->cap_ids - 1;
    size_t j = i;

    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (dir->ids[j].slot == MZ_NONE)
            break;
        home = dir->ids[j].tag & mask;
        /* The entry at j may fill the hole at i unless its home lies
         * cyclically in (i, j]: then it must stay after its home. */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            dir->ids[i] = dir->ids[j];
            i = j;
        }
    }
    dir->ids[i].slot = MZ_NONE;
}

/* ---- indexes --------------------------------------------------------------- */

/* Filter word: a 32-bit Bloom filter of the capability atoms, three bits
 * each. With four capabilities about a third of the bits are set, so an
 * absent capability slips through about one time in thirty. The type
 * needs no bits: a query with a type starts from a list holding only that
 * type (the type's, or a (type, capability) pair's) unless the node's list
 * is shorter. Multiplicative hashing spreads atom ids, which are allocated
 * in sequence; the top five bits of each product pick a bit. */
static uint32_t s_filt_cap(uint32_t cap)
{
    return (UINT32_C(1) << ((cap * UINT32_C(0x85ebca77)) >> 27)) |
           (UINT32_C(1) << ((cap * UINT32_C(0xc2b2ae3d)) >> 27)) |
           (UINT32_C(1) << ((cap * UINT32_C(0x9e3779b1)) >> 27));
}

/* Makes room for rec in every list s_index_add will append to, so that
 * adding (and an update's remove-then-add) cannot fail half-way. Until
 * s_index_add, each caps[i].pos holds the id of the capability's pair,
 * which saves looking the pairs up twice. */
static mz_status s_index_reserve(mz_directory *dir, mz_record *rec)
{
    mz_status rc;

    if ((rc = s_list_reserve(&dir->atoms[rec->type].atom->by_type)) != MZ_OK ||
        (rc = s_list_reserve(&dir->atoms[rec->node].atom->by_node)) != MZ_OK ||
        (rc = s_pairs_reserve(dir, rec->n_caps)) != MZ_OK)
        return rc;
    for (size_t i = 0; i < rec->n_caps; i++) {
        struct mz_pair *pr = s_pair_find(dir, rec->type, rec->caps[i].atom);

        if (pr == NULL)
            pr = s_pair_new(dir, rec->type, rec->caps[i].atom);
        rec->caps[i].pos = (uint32_t)(pr - dir->pairs);
        if ((rc = s_list_reserve(&pr->recs)) != MZ_OK) {
            s_pairs_trim(dir, rec);        /* no empty pair may stay */
            return rc;
        }
    }
    return MZ_OK;
}

static void s_index_add(mz_directory *dir, mz_record *rec, uint32_t slot)
{
    uint32_t filt = 0;

    dir->recs[slot] = rec;
    rec->type_pos = s_list_push(&dir->atoms[rec->type].atom->by_type, slot);
    rec->node_pos = s_list_push(&dir->atoms[rec->node].atom->by_node, slot);
    for (size_t i = 0; i < rec->n_caps; i++) {
        uint32_t a = rec->caps[i].atom;

        rec->caps[i].pos = s_list_push(&dir->pairs[rec->caps[i].pos].recs, slot);
        dir->atoms[a].atom->n_cap++;
        filt |= s_filt_cap(a);
    }
    dir->filt[slot] = filt;
}

/* Takes rec out of every list; the slot itself is left to the caller. */
static void s_index_del(mz_directory *dir, mz_record *rec)
{
    uint32_t moved;

    moved = s_list_remove(&dir->atoms[rec->type].atom->by_type, rec->type_pos);
    if (moved != MZ_NONE)
        dir->recs[moved]->type_pos = rec->type_pos;
    moved = s_list_remove(&dir->atoms[rec->node].atom->by_node, rec->node_pos);
    if (moved != MZ_NONE)
        dir->recs[moved]->node_pos = rec->node_pos;
    for (size_t i = 0; i < rec->n_caps; i++) {
        uint32_t a = rec->caps[i].atom;
        mz_record *other;

        moved = s_list_remove(&s_pair_find(dir, rec->type, a)->recs, rec->caps[i].pos);
        dir->atoms[a].atom->n_cap--;
        if (moved == MZ_NONE)
            continue;
        other = dir->recs[moved];
        for (size_t j = 0; j < other->n_caps; j++) {
            if (other->caps[j].atom == a) {
                other->caps[j].pos = rec->caps[i].pos;
                break;
            }
        }
    }
}

/* Trims the lists rec was in, once it is out of them. */
static void s_index_trim(mz_directory *dir, const mz_record *rec)
{
    s_list_trim(&dir->atoms[rec->type].atom->by_type);
    s_list_trim(&dir->atoms[rec->node].atom->by_node);
    s_pairs_trim(dir, rec);
}

/* Removes rec from the directory and frees it. */
static void s_remove_rec(mz_directory *dir, mz_record *rec)
{
    size_t at = s_id_find(dir, s_rec_id(rec), rec->id_len,
                          s_id_tag(dir, s_rec_id(rec), rec->id_len));
    uint32_t slot = dir->ids[at].slot;

    s_id_delete(dir, at);
    s_index_del(dir, rec);
    s_index_trim(dir, rec);
    s_slot_release(dir, slot);
    dir->count--;
    s_rec_free(dir, rec);
}

/* ---- directory ----------------------------------------------------------- */

mz_status mz_directory_new(mz_directory **out, mz_err *err)
{
    mz_directory *dir = calloc(1, sizeof *dir);

    *out = NULL;
    if (dir == NULL)
        goto fail;
    dir->free_slot = MZ_NONE;
    dir->free_atom = MZ_NONE;
    dir->free_pair = MZ_NONE;
    dir->seed = mz_hmap_seed();
    dir->atom_by_str = mz_hmap_new();
    if (dir->atom_by_str == NULL)
        goto fail;
    *out = dir;
    return MZ_OK;
fail:
    mz_directory_free(dir);
    return mz_err_set(err, MZ_ENOMEM, "directory: allocating");
}

void mz_directory_free(mz_directory *dir)
{
    if (dir == NULL)
        return;
    /* Records and atoms go wholesale: no need to unwind references. Each
     * slab goes with its last record. */
    for (uint32_t i = 0; i < dir->n_slots; i++) {
        if (dir->recs[i] != NULL)
            s_rec_dealloc(dir, dir->recs[i]);
    }
    for (uint32_t i = 0; i < dir->n_atoms; i++) {
        struct mz_atom *a = dir->atoms[i].atom;

        if (a == NULL)
            continue;
        free(a->by_type.v);
        free(a->by_node.v);
        free(a);
    }
    for (uint32_t i = 0; i < dir->n_pairs; i++)
        free(dir->pairs[i].recs.v);
    free(dir->pairs);
    free(dir->pair_ht);
    mz_hmap_free(dir->atom_by_str, NULL);
    free(dir->atoms);
    free(dir->ids);
    free(dir->filt);
    free(dir->recs);
    free(dir);
}

mz_status mz_directory_put(mz_directory *dir, const json_t *json, bool local,
                           mz_dir_change *change, mz_err *err)
{
    struct mz_rec_fields f;
    mz_record *rec = NULL, *old = NULL;
    uint32_t tag, slot;
    size_t at;
    mz_status rc;

    if (change != NULL)
        *change = MZ_DIR_UNCHANGED;
    if ((rc = s_parse(json, &f, err)) != MZ_OK)
        return rc;
    tag = s_id_tag(dir, f.id, f.id_len);
    at = s_id_find(dir, f.id, f.id_len, tag);
    if (at != SIZE_MAX) {
        old = dir->recs[dir->ids[at].slot];
        /* An id belongs to its owner key: nobody else can take it over, and
         * the owner only moves it forward (a higher version), possibly to
         * another host. */
        if (strcmp(mz_record_owner_key(old), f.owner_key) != 0)
            return mz_err_set(err, MZ_EEXIST, "record '%s': already registered by owner key "
                              "%.12s", f.id, mz_record_owner_key(old));
        if (f.version <= old->version)
            return MZ_OK;
    }
    if ((rc = s_rec_build(dir, &f, local, &rec, err)) != MZ_OK)
        return rc;
    if ((rc = s_index_reserve(dir, rec)) != MZ_OK)
        goto fail;
    if (old != NULL) {
        /* Same slot number, so the id table needs no change. */
        slot = dir->ids[at].slot;
        s_index_del(dir, old);
        s_index_add(dir, rec, slot);
        s_index_trim(dir, old);
        s_rec_free(dir, old);
        if (change != NULL)
            *change = MZ_DIR_UPDATED;
        return MZ_OK;
    }
    if ((rc = s_slot_reserve(dir)) != MZ_OK || (rc = s_ids_reserve(dir)) != MZ_OK)
        goto fail;
    slot = s_slot_take(dir);
    s_index_add(dir, rec, slot);
    s_id_place(dir->ids, dir->cap_ids, (struct mz_id_ent){ .slot = slot, .tag = tag });
    dir->count++;
    if (change != NULL)
        *change = MZ_DIR_ADDED;
    return MZ_OK;
fail:
    s_rec_free(dir, rec);
    if (rc == MZ_ELIMIT)
        return mz_err_set(err, rc, "record '%s': directory full", f.id);
    return mz_err_set(err, rc, "record '%s': out of memory", f.id);
}

static mz_record *s_get(const mz_directory *dir, const char *resource_id)
{
    size_t len = strlen(resource_id);
    size_t at = s_id_find(dir, resource_id, len, s_id_tag(dir, resource_id, len));

    return at == SIZE_MAX ? NULL : dir->recs[dir->ids[at].slot];
}

mz_status mz_directory_remove(mz_directory *dir, const char *resource_id,
                              const char *node, mz_err *err)
{
    mz_record *rec = s_get(dir, resource_id);

    if (rec == NULL)
        return mz_err_set(err, MZ_ENOTFOUND, "record '%.*s' not found",
                          MZ_RESOURCE_ID_MAX, resource_id);
    if (node != NULL && strcmp(node, mz_record_node(rec)) != 0)
        return mz_err_set(err, MZ_ENOTFOUND, "record '%s' is hosted by node %.12s, not %.12s",
                          s_rec_id(rec), mz_record_node(rec), node);
    s_remove_rec(dir, rec);
    return MZ_OK;
}

const mz_record *mz_directory_get(const mz_directory *dir, const char *resource_id)
{
    return s_get(dir, resource_id);
}

size_t mz_directory_count(const mz_directory *dir)
{
    return dir->count;
}

/* A query with its strings resolved to atom ids. */
struct mz_qplan {
    uint32_t type;                 /* MZ_NONE: any */
    uint32_t owner;
    uint32_t node;
    uint32_t caps[MZ_CAPS_MAX];    /* distinct */
    size_t n_caps;
    uint32_t filt_mask;            /* filter bits the query constrains */
    uint32_t filt_want;            /* their required values */
    mz_location location;
    const struct mz_slotlist *cand; /* the candidates: one list, */
    const struct mz_atom *cand_cap; /* or every pair of this capability; */
                                    /* both NULL: every slot */
    uint32_t cand_n;               /* how many candidates; UINT32_MAX: all */
    const struct mz_slotlist *other; /* the next shortest list every match
                                    * is in (intersected with), or NULL */
};

/* A query's progress: what it reports to, and how many so far. */
struct mz_qrun {
    bool (*fn)(const mz_record *rec, void *ctx);
    void *ctx;
    size_t limit;                  /* 0: none */
    size_t n;                      /* matches reported */
    const uint64_t *bits;          /* plan->other's slots, hashed, or NULL */
    unsigned shift;                /* 32 - log2 of the number of bits */
};

/* Intersection: the slots of the second list set bits of a hashed bitmap
 * on the stack, 64 bits per slot up to 16 KB, and candidates are tested
 * there (L1-resident, no branch to mispredict) before their filter word
 * (a random read) is. With 8192 slots the bitmap still stops 94 % of the
 * candidates the list does not hold; longer lists fall back to the filter
 * words alone. */
#define MZ_ISECT_MAX    8192
#define MZ_ISECT_BITS   (16 * 1024 * 8)
/* ... and only when that list is at most this many times the candidates:
 * filling a bitmap from 8192 slots to test 10 candidates costs more than it
 * saves. */
#define MZ_ISECT_RATIO  16

/* Candidates ahead whose filter word the query loop prefetches. */
#define MZ_PREFETCH_AHEAD 32
/* Candidates that pass the cheap tests before their records are read:
 * enough that many records are fetched at once, few enough that a query
 * stopped by its limit does not read many more than it needs. */
#define MZ_SCAN_BATCH 64

/* The exact test, for a record whose filter word passed. */
static bool s_match(const mz_record *rec, const struct mz_qplan *p)
{
    if (p->type != MZ_NONE && rec->type != p->type)
        return false;
    if (p->owner != MZ_NONE && rec->owner != p->owner)
        return false;
    if (p->node != MZ_NONE && rec->node != p->node)
        return false;
    if ((p->location == MZ_LOC_LOCAL && !rec->local) ||
        (p->location == MZ_LOC_REMOTE && rec->local))
        return false;
    for (size_t i = 0; i < p->n_caps; i++) {
        size_t j;

        for (j = 0; j < rec->n_caps && rec->caps[j].atom != p->caps[i]; j++)
            ;
        if (j == rec->n_caps)
            return false;
    }
    return true;
}

/* Offers list l, which holds every match, to the plan: the shortest list
 * becomes the candidates, the second shortest the list they are
 * intersected with. */
static void s_offer_list(struct mz_qplan *p, const struct mz_slotlist *l)
{
    if (l->n < p->cand_n) {
        if (p->cand != NULL && (p->other == NULL || p->cand->n < p->other->n))
            p->other = p->cand;
        p->cand = l;
        p->cand_cap = NULL;
        p->cand_n = l->n;
    } else if (p->other == NULL || l->n < p->other->n) {
        p->other = l;
    }
}

/* The same for the records of capability a, spread over its pairs: they
 * can be the candidates, not the list intersected with. */
static void s_offer_chain(struct mz_qplan *p, const struct mz_atom *a)
{
    if (a->n_cap < p->cand_n) {
        if (p->cand != NULL && (p->other == NULL || p->cand->n < p->other->n))
            p->other = p->cand;
        p->cand = NULL;
        p->cand_cap = a;
        p->cand_n = a->n_cap;
    }
}

/* Resolves q. False when it cannot match anything: a string no record uses
 * (never interned), or a type no record has together with one of the
 * capabilities, needs no search at all. p->cand / p->cand_cap get the
 * smallest candidate set among the query's type, (type, capability) pairs
 * (or capabilities, without a type) and node, neither for a scan; p->other
 * the next smallest list. */
static bool s_plan(const mz_directory *dir, const mz_query *q, struct mz_qplan *p)
{
    const struct mz_atom *a;

    p->type = p->owner = p->node = MZ_NONE;
    p->n_caps = 0;
    p->filt_mask = p->filt_want = 0;
    p->location = MZ_LOC_ANY;
    p->cand = p->other = NULL;
    p->cand_cap = NULL;
    p->cand_n = UINT32_MAX;
    if (q == NULL)
        return true;
    p->location = q->location;
    if (q->resource_type != NULL) {
        if ((a = s_atom_find(dir, q->resource_type)) == NULL)
            return false;
        p->type = a->id;
        s_offer_list(p, &a->by_type);
    }
    if (q->n_capabilities > 0 && q->capabilities == NULL)
        return false;
    for (size_t i = 0; i < q->n_capabilities; i++) {
        size_t j;

        if (q->capabilities[i] == NULL || (a = s_atom_find(dir, q->capabilities[i])) == NULL ||
            a->n_cap == 0)
            return false;
        for (j = 0; j < p->n_caps && p->caps[j] != a->id; j++)
            ;
        if (j < p->n_caps)
            continue;                       /* asked twice */
        if (p->n_caps == MZ_CAPS_MAX)
            return false;                   /* no record has more */
        p->caps[p->n_caps++] = a->id;
        p->filt_mask |= s_filt_cap(a->id);
        p->filt_want |= s_filt_cap(a->id);
        if (p->type != MZ_NONE) {
            const struct mz_pair *pr = s_pair_find(dir, p->type, a->id);

            if (pr == NULL)
                return false;               /* no record of the type has it */
            s_offer_list(p, &pr->recs);
        } else {
            s_offer_chain(p, a);
        }
    }
    if (q->owner != NULL) {
        if ((a = s_atom_find(dir, q->owner)) == NULL)
            return false;
        p->owner = a->id;
    }
    if (q->node != NULL) {
        if ((a = s_atom_find(dir, q->node)) == NULL)
            return false;
        p->node = a->id;
        s_offer_list(p, &a->by_node);
    }
    return true;
}

/* The bit of the slot filter for slot: multiplicative hashing (slot
 * numbers are handed out in sequence, not chosen by peers). */
static uint32_t s_bit(uint32_t slot, unsigned shift)
{
    return (slot * UINT32_C(0x9e3779b1)) >> shift;
}

static bool s_bits_has(const uint64_t *bits, unsigned shift, uint32_t slot)
{
    uint32_t b = s_bit(slot, shift);

    return (bits[b >> 6] >> (b & 63)) & 1;
}

/* Sets the bits of l's slots in bits (1 << (32 - shift) bits, cleared
 * here). No branches: filling and testing cost the same for every slot. */
static void s_bits_fill(uint64_t *bits, unsigned shift, const struct mz_slotlist *l)
{
    memset(bits, 0, (((size_t)1 << (32 - shift)) + 63) / 64 * sizeof *bits);
    for (uint32_t k = 0; k < l->n; k++) {
        uint32_t b = s_bit(l->v[k], shift);

        bits[b >> 6] |= UINT64_C(1) << (b & 63);
    }
}

/* Reports the matches among the slots v[0..nc), in that order. False once
 * the query must stop: fn said so, or the limit is reached.
 *
 * Candidates go through in batches of up to MZ_SCAN_BATCH that pass the
 * cheap tests: the bitmap of the list intersected with (L1-resident), else
 * the filter words (random reads, prefetched a few entries ahead). Each
 * later step is a random read per candidate, so it is prefetched for the
 * whole batch before any is used: the cache misses of a batch overlap
 * instead of queueing one after the other. */
static bool s_scan(const mz_directory *dir, const uint32_t *v, uint32_t nc,
                   const struct mz_qplan *p, struct mz_qrun *r)
{
    /* Locals, so the hot loop keeps them in registers across calls to fn. */
    mz_record *const *recs = dir->recs;
    const uint32_t *filt = dir->filt;
    uint32_t mask = p->filt_mask, want = p->filt_want;
    uint32_t pass[MZ_SCAN_BATCH];
    uint32_t k = 0;

    while (k < nc) {
        uint32_t np = 0;

        if (r->bits != NULL) {
            uint32_t kept = 0;

            for (; k < nc && np < MZ_SCAN_BATCH; k++) {
                if (s_bits_has(r->bits, r->shift, v[k]))
                    pass[np++] = v[k];
            }
            for (uint32_t i = 0; i < np; i++) {
                __builtin_prefetch(&filt[pass[i]]);
                __builtin_prefetch(&recs[pass[i]]);
            }
            for (uint32_t i = 0; i < np; i++) {
                if ((filt[pass[i]] & mask) == want)
                    pass[kept++] = pass[i];
            }
            np = kept;
        } else {
            for (; k < nc && np < MZ_SCAN_BATCH; k++) {
                if (k + MZ_PREFETCH_AHEAD < nc)
                    __builtin_prefetch(&filt[v[k + MZ_PREFETCH_AHEAD]]);
                if ((filt[v[k]] & mask) == want) {
                    pass[np++] = v[k];
                    __builtin_prefetch(&recs[v[k]]);
                }
            }
        }
        for (uint32_t i = 0; i < np; i++) {
            const char *rec = (const char *)recs[pass[i]];

            __builtin_prefetch(rec);
            __builtin_prefetch(rec + 64);
        }
        for (uint32_t i = 0; i < np; i++) {
            const mz_record *rec = recs[pass[i]];

            if (!s_match(rec, p))
                continue;
            r->n++;
            if ((r->fn != NULL && !r->fn(rec, r->ctx)) || r->n == r->limit)
                return false;
        }
    }
    return true;
}

size_t mz_directory_query(const mz_directory *dir, const mz_query *q,
                          bool (*fn)(const mz_record *rec, void *ctx), void *ctx)
{
    struct mz_qplan p;
    struct mz_qrun r = { fn, ctx, q != NULL ? q->limit : 0, 0, NULL, 0 };
    mz_record *const *recs = dir->recs;
    const uint32_t *filt = dir->filt;
    uint64_t bits[MZ_ISECT_BITS / 64];

    if (!s_plan(dir, q, &p))
        return 0;
    if (p.other != NULL && p.other->n <= MZ_ISECT_MAX &&
        p.other->n / MZ_ISECT_RATIO <= p.cand_n) {
        unsigned shift = 26;                /* 64 bits at least */

        while (((size_t)1 << (32 - shift)) < (size_t)64 * p.other->n &&
               ((size_t)1 << (32 - shift)) < MZ_ISECT_BITS)
            shift--;
        s_bits_fill(bits, shift, p.other);
        r.bits = bits;
        r.shift = shift;
    }
    if (p.cand != NULL) {
        s_scan(dir, p.cand->v, p.cand->n, &p, &r);
        return r.n;
    }
    if (p.cand_cap != NULL) {
        /* The capability's records, one type at a time. */
        for (uint32_t id = p.cand_cap->cap_pairs; id != MZ_NONE; id = dir->pairs[id].next) {
            if (!s_scan(dir, dir->pairs[id].recs.v, dir->pairs[id].recs.n, &p, &r))
                break;
        }
        return r.n;
    }
    for (uint32_t i = 0; i < dir->n_slots; i++) {
        if (recs[i] == NULL || (filt[i] & p.filt_mask) != p.filt_want || !s_match(recs[i], &p))
            continue;
        r.n++;
        if ((fn != NULL && !fn(recs[i], ctx)) || r.n == r.limit)
            break;
    }
    return r.n;
}

struct mz_collect {
    json_t *arr;                   /* records' JSON forms */
    bool failed;                   /* out of memory part-way */
};

static bool s_collect(const mz_record *rec, void *ctx)
{
    struct mz_collect *c = ctx;

    if (json_array_append_new(c->arr, mz_record_to_json(rec)) != 0) {
        c->failed = true;
        return false;
    }
    return true;
}

json_t *mz_directory_query_json(const mz_directory *dir, const mz_query *q)
{
    struct mz_collect c = { json_array(), false };

    if (c.arr == NULL)
        return NULL;
    mz_directory_query(dir, q, s_collect, &c);
    if (c.failed) {
        json_decref(c.arr);
        return NULL;
    }
    return c.arr;
}

void mz_directory_foreach(const mz_directory *dir,
                          bool (*fn)(const mz_record *rec, void *ctx), void *ctx)
{
    for (uint32_t i = 0; i < dir->n_slots; i++) {
        if (dir->recs[i] != NULL && !fn(dir->recs[i], ctx))
            return;
    }
}

size_t mz_directory_remove_node(mz_directory *dir, const char *node,
                                void (*on_removed)(const mz_record *rec, void *ctx),
                                void *ctx)
{
    const struct mz_atom *a = s_atom_find(dir, node);
    size_t n;

    if (a == NULL)
        return 0;
    n = a->by_node.n;
    /* Always the last entry: removing it moves nothing. a stays valid while
     * a record of this node remains, so it is not read after the last. */
    for (size_t k = 0; k < n; k++) {
        mz_record *rec = dir->recs[a->by_node.v[a->by_node.n - 1]];

        if (on_removed != NULL)
            on_removed(rec, ctx);
        s_remove_rec(dir, rec);
    }
    return n;
}

size_t mz_directory_count_node(const mz_directory *dir, const char *node)
{
    const struct mz_atom *a = s_atom_find(dir, node);

    return a ? a->by_node.n : 0;
}

size_t mz_directory_count_owner_key(const mz_directory *dir, const char *owner_key)
{
    const struct mz_atom *a = s_atom_find(dir, owner_key);

    /* An atom counts every use of its string; as a node id it is also used by
     * the records that node hosts (the node's key owns its own records). The
     * difference is the records signed by this key. */
    return a ? a->refs - a->by_node.n : 0;
}

/* ---- consistency check (tests) ------------------------------------------- */

static mz_status s_check_rec(const mz_directory *dir, uint32_t slot, mz_err *err)
{
    const mz_record *rec = dir->recs[slot];
    const struct mz_atom *t = dir->atoms[rec->type].atom;
    const struct mz_atom *nd = dir->atoms[rec->node].atom;
    uint32_t filt = 0;

    if (s_rec_dir(rec) != dir)
        return mz_err_set(err, MZ_EPROTO, "slot %u: record names another directory", slot);
    if (rec->type_pos >= t->by_type.n || t->by_type.v[rec->type_pos] != slot)
        return mz_err_set(err, MZ_EPROTO, "slot %u: wrong position in its type list", slot);
    if (rec->node_pos >= nd->by_node.n || nd->by_node.v[rec->node_pos] != slot)
        return mz_err_set(err, MZ_EPROTO, "slot %u: wrong position in its node list", slot);
    for (size_t i = 0; i < rec->n_caps; i++) {
        const struct mz_pair *pr = s_pair_find(dir, rec->type, rec->caps[i].atom);

        if (pr == NULL || rec->caps[i].pos >= pr->recs.n || pr->recs.v[rec->caps[i].pos] != slot)
            return mz_err_set(err, MZ_EPROTO, "slot %u: not at its position in pair %zu", slot, i);
        filt |= s_filt_cap(rec->caps[i].atom);
    }
    if (dir->filt[slot] != filt)
        return mz_err_set(err, MZ_EPROTO, "slot %u: stale filter word", slot);
    return MZ_OK;
}

mz_status mz__directory_check(const mz_directory *dir, mz_err *err)
{
    size_t count = 0, entries = 0, caps = 0;
    uint32_t live = 0;
    mz_status rc;

    for (uint32_t slot = 0; slot < dir->n_slots; slot++) {
        if (dir->recs[slot] == NULL)
            continue;
        if ((rc = s_check_rec(dir, slot, err)) != MZ_OK)
            return rc;
        count++;
        caps += dir->recs[slot]->n_caps;
    }
    if (count != dir->count)
        return mz_err_set(err, MZ_EPROTO, "%zu records in slots, count says %zu", count,
                          dir->count);
    for (uint32_t id = 0; id < dir->n_pairs; id++) {
        const struct mz_pair *pr = &dir->pairs[id];

        if (pr->type == MZ_NONE)
            continue;
        live++;
        if (pr->recs.n == 0)
            return mz_err_set(err, MZ_EPROTO, "pair %u is empty", id);
        if (s_pair_find(dir, pr->type, pr->cap) != pr)
            return mz_err_set(err, MZ_EPROTO, "pair %u: not found by its key", id);
        for (uint32_t k = 0; k < pr->recs.n; k++) {
            const mz_record *rec = dir->recs[pr->recs.v[k]];

            if (rec == NULL || rec->type != pr->type)
                return mz_err_set(err, MZ_EPROTO, "pair %u: entry %u is not of its type", id, k);
        }
        entries += pr->recs.n;
    }
    if (live != dir->live_pairs || entries != caps)
        return mz_err_set(err, MZ_EPROTO, "%u pairs with %zu entries; expected %u and %zu", live,
                          entries, dir->live_pairs, caps);
    for (uint32_t i = 0; i < dir->n_atoms; i++) {
        const struct mz_atom *a = dir->atoms[i].atom;
        uint32_t prev = MZ_NONE;
        size_t n = 0;

        if (a == NULL)
            continue;

        for (uint32_t id = a->cap_pairs; id != MZ_NONE; prev = id, id = dir->pairs[id].next) {
            if (dir->pairs[id].cap != a->id || dir->pairs[id].prev != prev)
                return mz_err_set(err, MZ_EPROTO, "atom %u: its chain of pairs is broken", i);
            n += dir->pairs[id].recs.n;
        }
        if (n != a->n_cap)
            return mz_err_set(err, MZ_EPROTO, "atom %u: %zu records in its pairs, n_cap %u", i,
                              n, a->n_cap);
    }
    return MZ_OK;
}
