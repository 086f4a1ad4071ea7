/* Signed envelopes: the DSSE encoding, the bytes a signature covers (recomputed here with
 * libsodium alone), and every way an envelope can be damaged or forged. */
#include "helpers.h"

#include <stdio.h>

static uint8_t pk_a[TDSX_ED25519_PK_LEN], pk_b[TDSX_ED25519_PK_LEN];
static tdsx_signer_t *signer_a, *signer_b;

static int setup(void **state)
{
    (void)state;
    signer_a = test_signer(0xa1, NULL, pk_a);
    signer_b = test_signer(0xb2, NULL, pk_b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_signer_free(signer_a);
    tdsx_signer_free(signer_b);
    return 0;
}

/* PAE written out by hand, independently of crypto/envelope.c. */
static size_t ref_pae(uint8_t *out, size_t cap, const char *type, const void *body, size_t n)
{
    int h = snprintf((char *)out, cap, "DSSEv1 %zu %s %zu ", strlen(type), type, n);
    assert_true(h > 0 && (size_t)h + n <= cap);
    memcpy(out + h, body, n);
    return (size_t)h + n;
}

static void ref_leaf(const char *type, const void *body, size_t n, uint8_t out[32])
{
    static uint8_t buf[4096];
    buf[0] = 0x00;
    size_t len = ref_pae(buf + 1, sizeof buf - 1, type, body, n);
    crypto_hash_sha256(out, buf, len + 1);
}

/* Three statements signed as one batch: the envelope of the middle one has a real path. */
static uint8_t *sign_middle_of_three(size_t *len)
{
    captured_t c[3] = {{0}};
    static const char *const payloads[3] = {"first", "second statement", "third"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tdsx_signer_submit(signer_a, TYPE_A,
                                            tdsx_bytes(payloads[i], strlen(payloads[i])),
                                            capture_cb, &c[i]),
                         0);
    assert_int_equal(tdsx_signer_flush(signer_a), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c[i].status, 0);
    uint8_t *env = c[1].env;
    *len = c[1].len;
    c[1].env = NULL;
    captured_free(c, 3);
    return env;
}

/* ------------------------------------------------------------------------------------------
 * What is signed
 * ---------------------------------------------------------------------------------------- */
static void pae_matches_dsse_spec(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    /* The example of the DSSE protocol document. */
    assert_int_equal(tdsx_pae(&b, "http://example.com/HelloWorld", tdsx_bytes("hello world", 11)),
                     0);
    assert_int_equal(b.len, strlen("DSSEv1 29 http://example.com/HelloWorld 11 hello world"));
    assert_memory_equal(b.p, "DSSEv1 29 http://example.com/HelloWorld 11 hello world", b.len);
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_pae(&b, "", tdsx_bytes(NULL, 0)), 0);
    assert_int_equal(b.len, strlen("DSSEv1 0  0 "));
    assert_memory_equal(b.p, "DSSEv1 0  0 ", b.len);
    tdsx_buf_free(&b);
}

static void pae_refusals_leave_the_buffer_alone(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 20);
    assert_int_equal(tdsx_buf_append(&b, "keep", 4), 0);
    assert_int_equal(tdsx_pae(&b, "t", tdsx_bytes("0123456789", 10)), TDSX_E_TOOBIG);
    assert_int_equal(b.len, 4);
    assert_int_equal(tdsx_pae(&b, NULL, tdsx_bytes("x", 1)), TDSX_E_INVAL);
    assert_int_equal(tdsx_pae(&b, "t", tdsx_bytes(NULL, 3)), TDSX_E_INVAL);
    assert_int_equal(tdsx_pae(NULL, "t", tdsx_bytes("x", 1)), TDSX_E_INVAL);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.p, "keep", 4);
    tdsx_buf_free(&b);
}

static void batch_of_one_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "payload bytes", 13, &len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    tdsx_arena_t *a = test_arena();
    tdsx_verified_t out;
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), a, &out), 0);
    assert_int_equal(out.payload.n, 13);
    assert_memory_equal(out.payload.p, "payload bytes", 13);
    assert_memory_equal(out.key_id.b, tdsx_signer_key_id(signer_a)->b, TDSX_HASH_LEN);
    assert_int_equal(out.index, 0);
    assert_int_equal(out.tree_size, 1);
    assert_false(out.cached);

    /* On the wire: tree_size 1, index 0, empty path, key_id = SHA-256(pk). */
    Tdsx__Envelope *e = decode_env(env, len);
    assert_string_equal(e->payload_type, TYPE_A);
    assert_int_equal(e->n_signatures, 1);
    const Tdsx__Signature *sg = e->signatures[0];
    assert_int_equal(sg->tree_size, 1);
    assert_int_equal(sg->index, 0);
    assert_int_equal(sg->n_path, 0);
    uint8_t id[32];
    crypto_hash_sha256(id, pk_a, sizeof pk_a);
    assert_int_equal(sg->key_id.len, 32);
    assert_memory_equal(sg->key_id.data, id, 32);
    tdsx__envelope__free_unpacked(e, NULL);

    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    free(env);
}

static void signature_covers_the_documented_root_statement(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "abc", 3, &len);
    Tdsx__Envelope *e = decode_env(env, len);
    const Tdsx__Signature *sg = e->signatures[0];
    assert_int_equal(sg->sig.len, crypto_sign_BYTES);

    /* A batch of one: the root is the leaf, SHA-256(0x00 || PAE(type, payload)). */
    uint8_t root[32];
    ref_leaf(TYPE_A, "abc", 3, root);
    uint8_t body[40] = {0, 0, 0, 0, 0, 0, 0, 1};
    memcpy(body + 8, root, 32);
    uint8_t msg[256];
    size_t msg_len = ref_pae(msg, sizeof msg, "application/vnd.tdsx.batch-root.v1", body, 40);
    assert_int_equal(crypto_sign_verify_detached(sg->sig.data, msg, msg_len, pk_a), 0);
    /* ...and not over the statement itself, nor over the root without the size. */
    uint8_t stmt[256];
    size_t stmt_len = ref_pae(stmt, sizeof stmt, TYPE_A, "abc", 3);
    assert_int_not_equal(crypto_sign_verify_detached(sg->sig.data, stmt, stmt_len, pk_a), 0);
    assert_int_not_equal(crypto_sign_verify_detached(sg->sig.data, root, 32, pk_a), 0);
    tdsx__envelope__free_unpacked(e, NULL);
    free(env);
}

static void key_id_and_envelope_hash_are_sha256(void **state)
{
    (void)state;
    uint8_t want[32];
    tdsx_hash_t got;
    assert_int_equal(tdsx_key_id(pk_b, &got), 0);
    crypto_hash_sha256(want, pk_b, sizeof pk_b);
    assert_memory_equal(got.b, want, 32);
    assert_memory_equal(tdsx_signer_key_id(signer_b)->b, want, 32);

    size_t len;
    uint8_t *env = sign_one(signer_b, TYPE_B, "x", 1, &len);
    assert_int_equal(tdsx_envelope_hash(tdsx_bytes(env, len), &got), 0);
    crypto_hash_sha256(want, env, len);
    assert_memory_equal(got.b, want, 32);
    free(env);
    assert_int_equal(tdsx_envelope_hash(tdsx_bytes(NULL, 2), &got), TDSX_E_INVAL);
    assert_int_equal(tdsx_key_id(NULL, &got), TDSX_E_INVAL);
}

static void empty_payload_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, NULL, 0, &len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    tdsx_arena_t *a = test_arena();
    tdsx_verified_t out;
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), a, &out), 0);
    assert_int_equal(out.payload.n, 0);
    /* An empty payload is still bound to its type. */
    assert_int_equal(tdsx_envelope_verify(v, TYPE_B, tdsx_bytes(env, len), a, &out),
                     TDSX_E_SIG_TYPE);
    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    free(env);
}

/* ------------------------------------------------------------------------------------------
 * Damage and forgery
 * ---------------------------------------------------------------------------------------- */
static void any_flipped_byte_is_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_middle_of_three(&len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    assert_int_equal(verify_status(v, TYPE_A, env, len), 0);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            env[i] ^= masks[m];
            int rc = verify_status(v, TYPE_A, env, len);
            if (rc == 0)
                fail_msg("byte %zu ^ 0x%02x still verifies", i, masks[m]);
            env[i] ^= masks[m];
        }
    }
    /* The damage tests went through the cache path too; the original still verifies. */
    assert_int_equal(verify_status(v, TYPE_A, env, len), 0);
    tdsx_verifier_free(v);
    free(env);
}

/* Decodes, lets `edit` change one field, re-encodes, and checks that verification fails. */
static void expect_field_edit_rejected(tdsx_verifier_t *v, const uint8_t *env, size_t len,
                                       void (*edit)(Tdsx__Envelope *, size_t), size_t arg)
{
    Tdsx__Envelope *e = decode_env(env, len);
    edit(e, arg);
    size_t n;
    uint8_t *bad = encode_env(e, &n);
    int rc = verify_status(v, TYPE_A, bad, n);
    if (rc == 0)
        fail_msg("edit with arg %zu still verifies", arg);
    free(bad);
    tdsx__envelope__free_unpacked(e, NULL);
}

static void edit_payload(Tdsx__Envelope *e, size_t i)
{
    e->payload.data[i] ^= 0x01;
}
static void edit_type(Tdsx__Envelope *e, size_t i)
{
    e->payload_type[i] ^= 0x01;
}
static void edit_sig(Tdsx__Envelope *e, size_t i)
{
    e->signatures[0]->sig.data[i] ^= 0x01;
}
static void edit_path(Tdsx__Envelope *e, size_t i)
{
    e->signatures[0]->path[i / 32].data[i % 32] ^= 0x01;
}
static void edit_index(Tdsx__Envelope *e, size_t i)
{
    static const uint64_t v[] = {0, 2, 3, 4, UINT64_MAX, (uint64_t)1 << 63};
    e->signatures[0]->index = v[i];
}
static void edit_size(Tdsx__Envelope *e, size_t i)
{
    static const uint64_t v[] = {0, 1, 2, 4, 5, UINT64_MAX, (uint64_t)1 << 63};
    e->signatures[0]->tree_size = v[i];
}

static void every_field_edit_is_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_middle_of_three(&len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    Tdsx__Envelope *e = decode_env(env, len);
    size_t payload_len = e->payload.len, type_len = strlen(e->payload_type);
    size_t path_bytes = 32 * e->signatures[0]->n_path;
    assert_int_equal(e->signatures[0]->index, 1);
    assert_int_equal(e->signatures[0]->tree_size, 3);
    assert_int_equal(e->signatures[0]->n_path, 2);
    tdsx__envelope__free_unpacked(e, NULL);

    for (size_t i = 0; i < payload_len; i++)
        expect_field_edit_rejected(v, env, len, edit_payload, i);
    for (size_t i = 0; i < type_len; i++)
        expect_field_edit_rejected(v, env, len, edit_type, i);
    for (size_t i = 0; i < TDSX_ED25519_SIG_LEN; i++)
        expect_field_edit_rejected(v, env, len, edit_sig, i);
    for (size_t i = 0; i < path_bytes; i++)
        expect_field_edit_rejected(v, env, len, edit_path, i);
    for (size_t i = 0; i < 6; i++)
        expect_field_edit_rejected(v, env, len, edit_index, i);
    for (size_t i = 0; i < 7; i++)
        expect_field_edit_rejected(v, env, len, edit_size, i);
    tdsx_verifier_free(v);
    free(env);
}

static void statement_of_one_type_fails_under_another(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "p", 1, &len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    assert_int_equal(verify_status(v, TYPE_A, env, len), 0);
    assert_int_equal(verify_status(v, TYPE_B, env, len), TDSX_E_SIG_TYPE);
    assert_int_equal(verify_status(v, "application/vnd.tdsx.test-a.v1", env, len), TDSX_E_SIG_TYPE);
    assert_int_equal(verify_status(v, TYPE_A "x", env, len), TDSX_E_SIG_TYPE);
    assert_int_equal(verify_status(v, "APPLICATION/vnd.tdsx.test-a.v1+protobuf", env, len),
                     TDSX_E_SIG_TYPE);
    assert_int_equal(verify_status(v, "", env, len), TDSX_E_SIG_TYPE);

    /* Relabelling the envelope does not help: the type is inside the signed leaf. */
    Tdsx__Envelope *e = decode_env(env, len);
    char *orig = e->payload_type;
    e->payload_type = (char *)TYPE_B;
    size_t n;
    uint8_t *relabelled = encode_env(e, &n);
    e->payload_type = orig;
    assert_int_equal(verify_status(v, TYPE_B, relabelled, n), TDSX_E_SIG_INVALID);
    free(relabelled);
    tdsx__envelope__free_unpacked(e, NULL);
    tdsx_verifier_free(v);
    free(env);
}

static void unknown_signer_is_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "p", 1, &len);
    tdsx_verifier_t *empty = test_verifier(NULL, 0), *other = test_verifier(pk_b, 0);
    assert_int_equal(verify_status(empty, TYPE_A, env, len), TDSX_E_SIGNER_UNKNOWN);
    assert_int_equal(verify_status(other, TYPE_A, env, len), TDSX_E_SIGNER_UNKNOWN);
    /* Learning the key makes the same bytes verify. */
    assert_int_equal(tdsx_verifier_add_key(other, pk_a), 0);
    assert_int_equal(verify_status(other, TYPE_A, env, len), 0);
    tdsx_verifier_free(empty);
    tdsx_verifier_free(other);
    free(env);
}

static void truncated_envelope_is_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_middle_of_three(&len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, env, n);
        if (verify_status(v, TYPE_A, cut, n) == 0)
            fail_msg("prefix of %zu bytes verifies", n);
        free(cut);
    }
    tdsx_verifier_free(v);
    free(env);
}

static void signature_by_another_key_under_a_known_key_id_is_rejected(void **state)
{
    (void)state;
    size_t len_a, len_b;
    uint8_t *env_a = sign_one(signer_a, TYPE_A, "same", 4, &len_a);
    uint8_t *env_b = sign_one(signer_b, TYPE_A, "same", 4, &len_b);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    /* B's signature presented under A's key id. */
    Tdsx__Envelope *eb = decode_env(env_b, len_b);
    Tdsx__Envelope *ea = decode_env(env_a, len_a);
    ProtobufCBinaryData keep = eb->signatures[0]->key_id;
    eb->signatures[0]->key_id = ea->signatures[0]->key_id;
    size_t n;
    uint8_t *forged = encode_env(eb, &n);
    eb->signatures[0]->key_id = keep;
    assert_int_equal(verify_status(v, TYPE_A, forged, n), TDSX_E_SIG_INVALID);
    free(forged);
    tdsx__envelope__free_unpacked(ea, NULL);
    tdsx__envelope__free_unpacked(eb, NULL);
    tdsx_verifier_free(v);
    free(env_a);
    free(env_b);
}

static void malformed_signature_fields_are_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_middle_of_three(&len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    Tdsx__Envelope *e = decode_env(env, len);
    Tdsx__Signature *sg = e->signatures[0];
    size_t n;
    uint8_t *bad;

    /* No signature at all. */
    e->n_signatures = 0;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_ENVELOPE);
    free(bad);
    /* More signatures than allowed, all of them good. */
    Tdsx__Signature *many[TDSX_ENVELOPE_SIGS_MAX + 1];
    for (size_t i = 0; i <= TDSX_ENVELOPE_SIGS_MAX; i++)
        many[i] = sg;
    Tdsx__Signature **orig = e->signatures;
    e->signatures = many;
    e->n_signatures = TDSX_ENVELOPE_SIGS_MAX + 1;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_ENVELOPE);
    free(bad);
    e->signatures = orig;
    e->n_signatures = 1;
    /* A key id one byte short names no key. */
    sg->key_id.len--;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIGNER_UNKNOWN);
    free(bad);
    sg->key_id.len++;
    /* A signature one byte short. */
    sg->sig.len--;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    sg->sig.len++;
    /* A path element one byte short. */
    sg->path[1].len--;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_MERKLE_PROOF);
    free(bad);
    sg->path[1].len++;
    /* A path longer than any tree needs, and a path with one element missing or added. */
    ProtobufCBinaryData long_path[TDSX_MERKLE_PATH_MAX + 1];
    for (size_t i = 0; i <= TDSX_MERKLE_PATH_MAX; i++)
        long_path[i] = sg->path[i % 2];
    ProtobufCBinaryData *orig_path = sg->path;
    sg->path = long_path;
    sg->n_path = TDSX_MERKLE_PATH_MAX + 1;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_MERKLE_PROOF);
    free(bad);
    sg->n_path = 3;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_MERKLE_PROOF);
    free(bad);
    sg->path = orig_path;
    sg->n_path = 1;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_MERKLE_PROOF);
    free(bad);
    sg->n_path = 2;
    /* Not protobuf at all. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(verify_status(v, TYPE_A, junk, sizeof junk), TDSX_E_ENVELOPE);
    assert_int_equal(verify_status(v, TYPE_A, NULL, 0), TDSX_E_SIG_TYPE);

    tdsx__envelope__free_unpacked(e, NULL);
    tdsx_verifier_free(v);
    free(env);
}

static void several_signatures_need_one_good_known_one(void **state)
{
    (void)state;
    size_t len_a, len_b;
    uint8_t *env_a = sign_one(signer_a, TYPE_A, "both", 4, &len_a);
    uint8_t *env_b = sign_one(signer_b, TYPE_A, "both", 4, &len_b);
    Tdsx__Envelope *ea = decode_env(env_a, len_a), *eb = decode_env(env_b, len_b);
    Tdsx__Signature good_a = *ea->signatures[0], good_b = *eb->signatures[0];
    Tdsx__Signature bad_a = good_a;
    uint8_t bad_sig[TDSX_ED25519_SIG_LEN];
    memcpy(bad_sig, good_a.sig.data, sizeof bad_sig);
    bad_sig[10] ^= 0x40;
    bad_a.sig.data = bad_sig;
    Tdsx__Signature **orig = ea->signatures;
    size_t orig_n = ea->n_signatures;
    tdsx_verifier_t *only_a = test_verifier(pk_a, 0);
    size_t n;
    uint8_t *env;

    struct {
        Tdsx__Signature *sigs[2];
        size_t n;
        int want;
    } cases[] = {
        {{&good_b, &good_a}, 2, 0},                  /* unknown first, then good */
        {{&bad_a, &good_a}, 2, 0},                   /* bad then good, same key */
        {{&good_a, &good_b}, 2, 0},                  /* good first */
        {{&good_b, NULL}, 1, TDSX_E_SIGNER_UNKNOWN}, /* only an unknown signer */
        {{&good_b, &bad_a}, 2, TDSX_E_SIG_INVALID},  /* the known one is bad */
        {{&bad_a, &good_b}, 2, TDSX_E_SIG_INVALID},  /* ...in either order */
        {{&bad_a, &bad_a}, 2, TDSX_E_SIG_INVALID},   /* twice bad is still bad */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ea->signatures = cases[c].sigs;
        ea->n_signatures = cases[c].n;
        env = encode_env(ea, &n);
        assert_int_equal(verify_status(only_a, TYPE_A, env, n), cases[c].want);
        free(env);
    }
    ea->signatures = orig;
    ea->n_signatures = orig_n;
    tdsx__envelope__free_unpacked(ea, NULL);
    tdsx__envelope__free_unpacked(eb, NULL);
    tdsx_verifier_free(only_a);
    free(env_a);
    free(env_b);
}

static void keyring_refuses_unusable_keys(void **state)
{
    (void)state;
    tdsx_verifier_t *v = test_verifier(NULL, 0);
    /* The identity point (small order): every signature would be about nothing. */
    uint8_t identity[32] = {1};
    assert_int_equal(tdsx_verifier_add_key(v, identity), TDSX_E_KEY);
    uint8_t zero[32] = {0};
    assert_int_equal(tdsx_verifier_add_key(v, zero), TDSX_E_KEY);
    /* A y coordinate above the field prime is not canonical. */
    uint8_t big[32];
    memset(big, 0xff, sizeof big);
    big[31] = 0x7f;
    assert_int_equal(tdsx_verifier_add_key(v, big), TDSX_E_KEY);
    assert_int_equal(tdsx_verifier_key_count(v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk_a), 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk_a), 0);
    assert_int_equal(tdsx_verifier_key_count(v), 1);
    assert_int_equal(tdsx_verifier_add_key(v, pk_b), 0);
    assert_int_equal(tdsx_verifier_key_count(v), 2);
    assert_int_equal(tdsx_verifier_add_key(NULL, pk_b), TDSX_E_INVAL);
    assert_int_equal(tdsx_verifier_add_key(v, NULL), TDSX_E_INVAL);
    tdsx_verifier_free(v);
}

static void keyring_finds_every_key_among_many(void **state)
{
    (void)state;
    /* Keys arrive in no particular order; each must be found (the keyring is sorted). */
    tdsx_verifier_t *v = test_verifier(NULL, 0);
    uint8_t pk[32], sk[64], seed[32];
    for (int i = 0; i < 40; i++) {
        /* Unlike the 32-equal-bytes seeds of the test signers. */
        memset(seed, 0xee, sizeof seed);
        seed[0] = (uint8_t)i;
        crypto_sign_seed_keypair(pk, sk, seed);
        assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    }
    assert_int_equal(tdsx_verifier_add_key(v, pk_a), 0);
    assert_int_equal(tdsx_verifier_key_count(v), 41);
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "x", 1, &len);
    assert_int_equal(verify_status(v, TYPE_A, env, len), 0);
    free(env);
    env = sign_one(signer_b, TYPE_A, "x", 1, &len);
    assert_int_equal(verify_status(v, TYPE_A, env, len), TDSX_E_SIGNER_UNKNOWN);
    free(env);
    sodium_memzero(sk, sizeof sk);
    tdsx_verifier_free(v);
}

static void bad_submissions_are_refused_without_callback(void **state)
{
    (void)state;
    captured_t c = {0};
    char long_type[TDSX_PAYLOAD_TYPE_MAX + 2];
    memset(long_type, 'a', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    assert_int_equal(tdsx_signer_submit(signer_a, "", tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, long_type, tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, "a\nb", tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, "t\xc3\xa9", tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, NULL, tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, TYPE_A, tdsx_bytes("x", 1), NULL, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_submit(signer_a, TYPE_A, tdsx_bytes(NULL, 1), capture_cb, &c),
                     TDSX_E_INVAL);
    /* One byte over the statement cap, without touching that much memory. */
    static uint8_t big[TDSX_STATEMENT_MAX + 1];
    assert_int_equal(
        tdsx_signer_submit(signer_a, TYPE_A, tdsx_bytes(big, sizeof big), capture_cb, &c),
        TDSX_E_TOOBIG);
    assert_int_equal(tdsx_signer_pending(signer_a), 0);
    assert_int_equal(tdsx_signer_flush(signer_a), 0);
    assert_int_equal(c.calls, 0);
    /* Exactly at the longest type is fine. */
    long_type[TDSX_PAYLOAD_TYPE_MAX] = '\0';
    assert_int_equal(tdsx_signer_submit(signer_a, long_type, tdsx_bytes("x", 1), capture_cb, &c),
                     0);
    assert_int_equal(tdsx_signer_flush(signer_a), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    assert_int_equal(verify_status(v, long_type, c.env, c.len), 0);
    tdsx_verifier_free(v);
    captured_free(&c, 1);
}

static void verify_refuses_bad_arguments_and_oversize(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, "x", 1, &len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    tdsx_arena_t *a = test_arena();
    tdsx_verified_t out;
    memset(&out, 0x5c, sizeof out);
    tdsx_verified_t untouched = out;
    assert_int_equal(tdsx_envelope_verify(NULL, TYPE_A, tdsx_bytes(env, len), a, &out),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_envelope_verify(v, NULL, tdsx_bytes(env, len), a, &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), NULL, &out),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), a, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(NULL, 5), a, &out), TDSX_E_INVAL);
    /* The size cap is checked before anything is read. */
    assert_int_equal(
        tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, TDSX_ENVELOPE_MAX + 1), a, &out),
        TDSX_E_TOOBIG);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_B, tdsx_bytes(env, len), a, &out),
                     TDSX_E_SIG_TYPE);
    assert_memory_equal(&out, &untouched, sizeof out);
    tdsx_verifier_stats_t st;
    tdsx_verifier_stats(v, &st);
    assert_int_equal(st.verified, 0);
    assert_int_equal(st.rejected, 2);
    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    free(env);
}

static void arena_budget_bounds_verification(void **state)
{
    (void)state;
    static uint8_t payload[8192];
    memset(payload, 'p', sizeof payload);
    size_t len;
    uint8_t *env = sign_one(signer_a, TYPE_A, payload, sizeof payload, &len);
    tdsx_verifier_t *v = test_verifier(pk_a, 0);
    tdsx_arena_t *a;
    tdsx_verified_t out;
    assert_int_equal(tdsx_arena_new(1024, &a), 0);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), a, &out),
                     TDSX_E_ARENA_BUDGET);
    tdsx_arena_free(a);
    assert_int_equal(tdsx_arena_new(64 * 1024, &a), 0);
    assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(env, len), a, &out), 0);
    assert_memory_equal(out.payload.p, payload, sizeof payload);
    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    free(env);
}

static void verifier_allocation_failures_are_reported(void **state)
{
    (void)state;
    tdsx_verifier_t *v = NULL;
    for (unsigned long k = 1; k <= 2; k++) {
        tdsx_test_alloc_fail_after(k);
        assert_int_equal(tdsx_verifier_new(0, &v), TDSX_E_NOMEM);
        tdsx_test_alloc_reset();
        assert_null(v);
    }
    v = test_verifier(NULL, 0);
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_verifier_add_key(v, pk_a), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_int_equal(tdsx_verifier_key_count(v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk_a), 0);
    tdsx_verifier_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pae_matches_dsse_spec),
        cmocka_unit_test(batch_of_one_round_trip),
        cmocka_unit_test(signature_covers_the_documented_root_statement),
        cmocka_unit_test(key_id_and_envelope_hash_are_sha256),
        cmocka_unit_test(empty_payload_round_trip),
        cmocka_unit_test(keyring_finds_every_key_among_many),
        cmocka_unit_test(pae_refusals_leave_the_buffer_alone),
        cmocka_unit_test(any_flipped_byte_is_rejected),
        cmocka_unit_test(every_field_edit_is_rejected),
        cmocka_unit_test(statement_of_one_type_fails_under_another),
        cmocka_unit_test(unknown_signer_is_rejected),
        cmocka_unit_test(truncated_envelope_is_rejected),
        cmocka_unit_test(signature_by_another_key_under_a_known_key_id_is_rejected),
        cmocka_unit_test(malformed_signature_fields_are_rejected),
        cmocka_unit_test(several_signatures_need_one_good_known_one),
        cmocka_unit_test(keyring_refuses_unusable_keys),
        cmocka_unit_test(bad_submissions_are_refused_without_callback),
        cmocka_unit_test(verify_refuses_bad_arguments_and_oversize),
        cmocka_unit_test(arena_budget_bounds_verification),
        cmocka_unit_test(verifier_allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
