/* verifier.c — keyring, verified-root cache and envelope verification (SPEC §10). */
#include "internal.h"

#include <string.h>

#include <sodium.h>

struct key {
    tdsx_hash_t id;
    uint8_t pk[TDSX_ED25519_PK_LEN];
};

struct cache_entry {
    tdsx_hash_t key_id;
    uint64_t tree_size;
    tdsx_hash_t root;
    uint8_t sig[TDSX_ED25519_SIG_LEN];
};

struct tdsx_verifier_s {
    struct key *keys; /* sorted by id */
    size_t nkeys, akeys;
    struct cache_entry *cache; /* ring: next is the oldest once full */
    size_t cache_size, cache_used, cache_next;
    tdsx_sha256_t h;
    tdsx_verifier_stats_t stats;
};

int tdsx_verifier_new(size_t cache_size, tdsx_verifier_t **out)
{
    tdsx_verifier_t *v = NULL;
    int rc;

    if (!out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    v = tdsx_calloc(1, sizeof *v);
    if (!v)
        return TDSX_E_NOMEM;
    v->cache_size = cache_size ? cache_size : TDSX_VERIFIER_CACHE_DEFAULT;
    v->cache = tdsx_calloc(v->cache_size, sizeof *v->cache);
    if (!v->cache) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = tdsx_sha256_init(&v->h);
    if (rc < 0)
        goto fail;
    *out = v;
    return 0;
fail:
    tdsx_verifier_free(v);
    return rc;
}

void tdsx_verifier_free(tdsx_verifier_t *v)
{
    if (!v)
        return;
    tdsx_sha256_free(&v->h);
    tdsx_free(v->cache);
    tdsx_free(v->keys);
    tdsx_free(v);
}

/* Index of the first key whose id is >= id. */
static size_t key_lower_bound(const tdsx_verifier_t *v, const uint8_t *id)
{
    size_t lo = 0, hi = v->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(v->keys[mid].id.b, id, TDSX_HASH_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct key *find_key(const tdsx_verifier_t *v, const uint8_t *id)
{
    size_t i = key_lower_bound(v, id);
    if (i < v->nkeys && memcmp(v->keys[i].id.b, id, TDSX_HASH_LEN) == 0)
        return &v->keys[i];
    return NULL;
}

int tdsx_verifier_add_key(tdsx_verifier_t *v, const uint8_t pk[TDSX_ED25519_PK_LEN])
{
    tdsx_hash_t id;
    if (!v || !pk)
        return TDSX_E_INVAL;
    /* Small-order and non-canonical points would let one signature verify for many messages. */
    if (!crypto_core_ed25519_is_valid_point(pk))
        return TDSX_E_KEY;
    int rc = tdsx_key_id(pk, &id);
    if (rc < 0)
        return rc;
    size_t i = key_lower_bound(v, id.b);
    if (i < v->nkeys && memcmp(v->keys[i].id.b, id.b, TDSX_HASH_LEN) == 0)
        return 0;
    if (v->nkeys >= TDSX_VERIFIER_KEYS_MAX)
        return TDSX_E_TOOBIG;
    if (v->nkeys == v->akeys) {
        size_t na = v->akeys ? v->akeys * 2 : 8;
        struct key *nk = tdsx_reallocarray(v->keys, na, sizeof *nk);
        if (!nk)
            return TDSX_E_NOMEM;
        v->keys = nk;
        v->akeys = na;
    }
    memmove(&v->keys[i + 1], &v->keys[i], (v->nkeys - i) * sizeof *v->keys);
    v->keys[i].id = id;
    memcpy(v->keys[i].pk, pk, TDSX_ED25519_PK_LEN);
    v->nkeys++;
    return 0;
}

size_t tdsx_verifier_key_count(const tdsx_verifier_t *v)
{
    return v->nkeys;
}

void tdsx_verifier_stats(const tdsx_verifier_t *v, tdsx_verifier_stats_t *out)
{
    *out = v->stats;
}

static int cache_find(const tdsx_verifier_t *v, const tdsx_hash_t *key_id, uint64_t tree_size,
                      const tdsx_hash_t *root, const uint8_t *sig)
{
    /* Newest first: the next statements of the batch just verified are the usual hit. */
    for (size_t n = 0; n < v->cache_used; n++) {
        size_t i = (v->cache_next + v->cache_size - 1 - n) % v->cache_size;
        const struct cache_entry *e = &v->cache[i];
        if (e->tree_size == tree_size && memcmp(e->root.b, root->b, TDSX_HASH_LEN) == 0 &&
            memcmp(e->key_id.b, key_id->b, TDSX_HASH_LEN) == 0 &&
            memcmp(e->sig, sig, TDSX_ED25519_SIG_LEN) == 0)
            return 1;
    }
    return 0;
}

static void cache_insert(tdsx_verifier_t *v, const tdsx_hash_t *key_id, uint64_t tree_size,
                         const tdsx_hash_t *root, const uint8_t *sig)
{
    struct cache_entry *e = &v->cache[v->cache_next];
    e->key_id = *key_id;
    e->tree_size = tree_size;
    e->root = *root;
    memcpy(e->sig, sig, TDSX_ED25519_SIG_LEN);
    v->cache_next = (v->cache_next + 1) % v->cache_size;
    if (v->cache_used < v->cache_size)
        v->cache_used++;
}

/* One signature by a key we hold, over the statement whose leaf hash is `leaf`. */
static int check_signature(tdsx_verifier_t *v, const struct key *key, const Tdsx__Signature *sg,
                           const tdsx_hash_t *leaf, tdsx_verified_t *out)
{
    tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], root;
    uint8_t msg[TDSX__ROOT_STATEMENT_MAX];
    size_t msg_len;
    int rc;

    if (sg->sig.len != TDSX_ED25519_SIG_LEN)
        return TDSX_E_SIG_INVALID;
    if (sg->n_path > TDSX_MERKLE_PATH_MAX)
        return TDSX_E_MERKLE_PROOF;
    for (size_t i = 0; i < sg->n_path; i++) {
        if (sg->path[i].len != TDSX_HASH_LEN)
            return TDSX_E_MERKLE_PROOF;
        memcpy(path[i].b, sg->path[i].data, TDSX_HASH_LEN);
    }
    rc =
        tdsx__merkle_inclusion_root(&v->h, sg->index, sg->tree_size, leaf, path, sg->n_path, &root);
    if (rc < 0)
        return rc;

    out->cached = cache_find(v, &key->id, sg->tree_size, &root, sg->sig.data);
    if (!out->cached) {
        rc = tdsx__root_statement(sg->tree_size, &root, msg, &msg_len);
        if (rc < 0)
            return rc;
        if (crypto_sign_verify_detached(sg->sig.data, msg, msg_len, key->pk) != 0)
            return TDSX_E_SIG_INVALID;
        cache_insert(v, &key->id, sg->tree_size, &root, sg->sig.data);
    }
    out->key_id = key->id;
    memcpy(out->sig, sg->sig.data, TDSX_ED25519_SIG_LEN);
    out->index = sg->index;
    out->tree_size = sg->tree_size;
    out->root = root;
    return 0;
}

static int verify(tdsx_verifier_t *v, const char *expected_type, tdsx_bytes_t envelope,
                  tdsx_arena_t *arena, tdsx_verified_t *out)
{
    ProtobufCMessage *m;
    tdsx_hash_t leaf;
    int have_leaf = 0;

    if (envelope.n > TDSX_ENVELOPE_MAX)
        return TDSX_E_TOOBIG;
    int rc = tdsx_proto_unpack(arena, &tdsx__envelope__descriptor, envelope, &m);
    if (rc == TDSX_E_PROTO_DECODE)
        return TDSX_E_ENVELOPE;
    if (rc < 0)
        return rc;
    const Tdsx__Envelope *env = (const Tdsx__Envelope *)m;

    /* The decoder refuses strings with NUL bytes, so strcmp compares the whole wire string. */
    if (!env->payload_type || strcmp(env->payload_type, expected_type) != 0)
        return TDSX_E_SIG_TYPE;
    size_t type_len = strlen(env->payload_type);
    if (type_len > TDSX_PAYLOAD_TYPE_MAX || env->payload.len > TDSX_STATEMENT_MAX)
        return TDSX_E_ENVELOPE;
    if (env->n_signatures == 0 || env->n_signatures > TDSX_ENVELOPE_SIGS_MAX)
        return TDSX_E_ENVELOPE;
    tdsx_bytes_t payload = tdsx_bytes(env->payload.data, env->payload.len);

    rc = TDSX_E_SIGNER_UNKNOWN;
    for (size_t i = 0; i < env->n_signatures; i++) {
        const Tdsx__Signature *sg = env->signatures[i];
        if (sg->key_id.len != TDSX_HASH_LEN)
            continue;
        const struct key *key = find_key(v, sg->key_id.data);
        if (!key)
            continue;
        if (!have_leaf) {
            int hrc = tdsx__statement_leaf(&v->h, env->payload_type, type_len, payload, &leaf);
            if (hrc < 0)
                return hrc;
            have_leaf = 1;
        }
        rc = check_signature(v, key, sg, &leaf, out);
        if (rc == 0) {
            out->payload = payload;
            return 0;
        }
    }
    return rc;
}

int tdsx_envelope_verify(tdsx_verifier_t *v, const char *expected_type, tdsx_bytes_t envelope,
                         tdsx_arena_t *arena, tdsx_verified_t *out)
{
    if (!v || !expected_type || !arena || !out || (!envelope.p && envelope.n))
        return TDSX_E_INVAL;
    /* Filled into a copy so that *out is untouched on failure. */
    tdsx_verified_t res;
    memset(&res, 0, sizeof res);
    int rc = verify(v, expected_type, envelope, arena, &res);
    if (rc < 0) {
        v->stats.rejected++;
        return rc;
    }
    v->stats.verified++;
    if (res.cached)
        v->stats.cache_hits++;
    *out = res;
    return 0;
}
