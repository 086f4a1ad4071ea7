/* signer.c — batch signing (SPEC §10): statements queue up, a flush builds one RFC 9162 tree
 * over their PAE leaves, signs its root once with Ed25519 and hands every statement its
 * envelope with its own inclusion path. */
#include "internal.h"

#include <string.h>

#include <sodium.h>

struct item {
    struct item *next;
    tdsx_signer_cb cb;
    void *userdata;
    size_t type_len;
    size_t payload_len;
    uint8_t *payload;
    char type[]; /* NUL-terminated, the payload follows it */
};

struct tdsx_signer_s {
    unsigned char *sk; /* sodium_malloc; PROT_NONE except while signing */
    uint8_t pk[TDSX_ED25519_PK_LEN];
    tdsx_hash_t key_id;
    size_t max_batch;
    size_t max_queue;
    struct item *head, *tail;
    size_t pending;
    int flushing;
    int closing;
};

int tdsx_signer_new(const uint8_t seed[TDSX_ED25519_SEED_LEN], const tdsx_signer_opts_t *opts,
                    tdsx_signer_t **out)
{
    tdsx_signer_t *s = NULL;
    int rc;

    if (!seed || !out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    s->max_batch = opts && opts->max_batch ? opts->max_batch : TDSX_SIGNER_BATCH_DEFAULT;
    s->max_queue = opts && opts->max_queue ? opts->max_queue : TDSX_SIGNER_QUEUE_DEFAULT;
    s->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!s->sk) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if (crypto_sign_seed_keypair(s->pk, s->sk, seed) != 0 || sodium_mprotect_noaccess(s->sk) != 0) {
        rc = TDSX_E_INTERNAL;
        goto fail;
    }
    rc = tdsx_key_id(s->pk, &s->key_id);
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    if (s)
        sodium_free(s->sk);
    tdsx_free(s);
    return rc;
}

void tdsx_signer_free(tdsx_signer_t *s)
{
    if (!s)
        return;
    /* Every accepted statement gets exactly one callback, even this late. */
    s->closing = 1;
    struct item *it = s->head;
    s->head = s->tail = NULL;
    s->pending = 0;
    while (it) {
        struct item *next = it->next;
        it->cb(it->userdata, TDSX_E_CANCELED, tdsx_bytes(NULL, 0));
        tdsx_free(it);
        it = next;
    }
    sodium_free(s->sk); /* wipes before unmapping */
    tdsx_free(s);
}

void tdsx_signer_public_key(const tdsx_signer_t *s, uint8_t pk[TDSX_ED25519_PK_LEN])
{
    memcpy(pk, s->pk, TDSX_ED25519_PK_LEN);
}

const tdsx_hash_t *tdsx_signer_key_id(const tdsx_signer_t *s)
{
    return &s->key_id;
}

size_t tdsx_signer_pending(const tdsx_signer_t *s)
{
    return s->pending;
}

static int check_type(const char *type, size_t *len)
{
    size_t n = 0;
    for (; type[n]; n++) {
        if (n >= TDSX_PAYLOAD_TYPE_MAX || type[n] < 0x20 || type[n] > 0x7e)
            return TDSX_E_INVAL;
    }
    if (n == 0)
        return TDSX_E_INVAL;
    *len = n;
    return 0;
}

/* A queue entry with room for the payload, not yet linked in. */
static int new_item(tdsx_signer_t *s, const char *type, size_t payload_len, tdsx_signer_cb cb,
                    void *userdata, struct item **out)
{
    size_t type_len;
    if (!s || !type || !cb)
        return TDSX_E_INVAL;
    int rc = check_type(type, &type_len);
    if (rc < 0)
        return rc;
    if (payload_len > TDSX_STATEMENT_MAX)
        return TDSX_E_TOOBIG;
    if (s->closing)
        return TDSX_E_STATE;
    if (s->pending >= s->max_queue)
        return TDSX_E_AGAIN;
    struct item *it = tdsx_malloc(sizeof *it + type_len + 1 + payload_len);
    if (!it)
        return TDSX_E_NOMEM;
    it->next = NULL;
    it->cb = cb;
    it->userdata = userdata;
    it->type_len = type_len;
    it->payload_len = payload_len;
    memcpy(it->type, type, type_len + 1);
    it->payload = (uint8_t *)it->type + type_len + 1;
    *out = it;
    return 0;
}

static void enqueue(tdsx_signer_t *s, struct item *it)
{
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->pending++;
}

int tdsx_signer_submit(tdsx_signer_t *s, const char *payload_type, tdsx_bytes_t payload,
                       tdsx_signer_cb cb, void *userdata)
{
    struct item *it;
    if (!payload.p && payload.n)
        return TDSX_E_INVAL;
    int rc = new_item(s, payload_type, payload.n, cb, userdata, &it);
    if (rc < 0)
        return rc;
    if (payload.n)
        memcpy(it->payload, payload.p, payload.n);
    enqueue(s, it);
    return 0;
}

int tdsx__signer_submit_message(tdsx_signer_t *s, const char *payload_type,
                                const ProtobufCMessage *msg, tdsx_signer_cb cb, void *userdata)
{
    struct item *it;
    if (!msg)
        return TDSX_E_INVAL;
    size_t len = protobuf_c_message_get_packed_size(msg);
    int rc = new_item(s, payload_type, len, cb, userdata, &it);
    if (rc < 0)
        return rc;
    if (protobuf_c_message_pack(msg, it->payload) != len) {
        tdsx_free(it);
        return TDSX_E_INTERNAL;
    }
    enqueue(s, it);
    return 0;
}

static int sign_root(tdsx_signer_t *s, uint64_t tree_size, const tdsx_hash_t *root,
                     uint8_t sig[TDSX_ED25519_SIG_LEN])
{
    uint8_t msg[TDSX__ROOT_STATEMENT_MAX];
    size_t len;
    int rc = tdsx__root_statement(tree_size, root, msg, &len);
    if (rc < 0)
        return rc;
    if (sodium_mprotect_readonly(s->sk) != 0)
        return TDSX_E_INTERNAL;
    rc = crypto_sign_detached(sig, NULL, msg, len, s->sk) == 0 ? 0 : TDSX_E_INTERNAL;
    if (sodium_mprotect_noaccess(s->sk) != 0)
        rc = TDSX_E_INTERNAL;
    return rc;
}

/* Serialises one statement's envelope into out (reused across the batch). */
static int pack_envelope(tdsx_signer_t *s, const struct item *it, uint64_t index,
                         const tdsx_merkle_tree_t *tree, const uint8_t sig[TDSX_ED25519_SIG_LEN],
                         tdsx_buf_t *out)
{
    tdsx_hash_t path[TDSX_MERKLE_PATH_MAX];
    ProtobufCBinaryData elems[TDSX_MERKLE_PATH_MAX];
    size_t path_len;
    int rc = tdsx_merkle_tree_path(tree, (size_t)index, path, &path_len);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < path_len; i++) {
        elems[i].len = TDSX_HASH_LEN;
        elems[i].data = path[i].b;
    }

    /* protobuf-c wants mutable pointers; pack only reads through them. */
    Tdsx__Signature sg = TDSX__SIGNATURE__INIT;
    sg.key_id.len = TDSX_HASH_LEN;
    sg.key_id.data = s->key_id.b;
    sg.sig.len = TDSX_ED25519_SIG_LEN;
    sg.sig.data = (uint8_t *)sig;
    sg.index = index;
    sg.tree_size = tdsx_merkle_tree_size(tree);
    sg.n_path = path_len;
    sg.path = elems;
    Tdsx__Signature *sigs[1] = {&sg};
    Tdsx__Envelope env = TDSX__ENVELOPE__INIT;
    env.payload_type = (char *)it->type;
    env.payload.len = it->payload_len;
    env.payload.data = it->payload;
    env.n_signatures = 1;
    env.signatures = sigs;

    size_t size = tdsx__envelope__get_packed_size(&env);
    tdsx_buf_reset(out);
    rc = tdsx_buf_reserve(out, size);
    if (rc < 0)
        return rc;
    if (tdsx__envelope__pack(&env, out->p) != size)
        return TDSX_E_INTERNAL;
    out->len = size;
    return 0;
}

/* Signs the k detached items of `batch` and calls their callbacks; frees them. */
static void sign_batch(tdsx_signer_t *s, struct item *batch, size_t k)
{
    tdsx_hash_t *leaves = NULL;
    tdsx_merkle_tree_t *tree = NULL;
    tdsx_sha256_t h = {0};
    tdsx_buf_t out;
    uint8_t sig[TDSX_ED25519_SIG_LEN];
    struct item *it;
    size_t i;
    int rc;

    tdsx_buf_init(&out, TDSX_ENVELOPE_MAX);
    leaves = tdsx_reallocarray(NULL, k, sizeof *leaves);
    if (!leaves) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = tdsx_sha256_init(&h);
    if (rc < 0)
        goto fail;
    for (it = batch, i = 0; i < k; it = it->next, i++) {
        rc = tdsx__statement_leaf(&h, it->type, it->type_len,
                                  tdsx_bytes(it->payload, it->payload_len), &leaves[i]);
        if (rc < 0)
            goto fail;
    }
    rc = tdsx_merkle_tree_new(leaves, k, &tree);
    if (rc < 0)
        goto fail;
    rc = sign_root(s, k, tdsx_merkle_tree_root(tree), sig);
    if (rc < 0)
        goto fail;

    /* From here each statement succeeds or fails on its own. */
    for (i = 0; batch; i++) {
        it = batch;
        batch = it->next;
        rc = pack_envelope(s, it, i, tree, sig, &out);
        if (rc == 0)
            it->cb(it->userdata, 0, tdsx_buf_bytes(&out));
        else
            it->cb(it->userdata, rc, tdsx_bytes(NULL, 0));
        tdsx_free(it);
    }
fail:
    /* Reached with the whole batch still queued when it could not be signed (empty otherwise). */
    while (batch) {
        it = batch;
        batch = it->next;
        it->cb(it->userdata, rc, tdsx_bytes(NULL, 0));
        tdsx_free(it);
    }
    tdsx_buf_free(&out);
    tdsx_merkle_tree_free(tree);
    tdsx_sha256_free(&h);
    tdsx_free(leaves);
}

int tdsx_signer_flush(tdsx_signer_t *s)
{
    if (!s)
        return TDSX_E_INVAL;
    if (s->flushing || s->closing)
        return TDSX_E_STATE;
    s->flushing = 1;
    /* Only what was waiting now: statements submitted by callbacks wait for the next flush, so
     * a callback that always resubmits cannot keep this loop going. */
    size_t todo = s->pending;
    while (todo > 0) {
        size_t k = todo < s->max_batch ? todo : s->max_batch;
        struct item *batch = s->head, *last = batch;
        for (size_t i = 1; i < k; i++)
            last = last->next;
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
        s->pending -= k;
        todo -= k;
        sign_batch(s, batch, k);
    }
    s->flushing = 0;
    return 0;
}
