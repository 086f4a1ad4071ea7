/* Batch signing: batches of 1 to 256 statements, one signature each, paths checked against an
 * independent recomputation; the queue's limits and callback rules; the verified-root cache;
 * allocation failure anywhere in the signer. */
#include "helpers.h"

#include <stdio.h>

static uint8_t pk[TDSX_ED25519_PK_LEN];

static void payload_of(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, "statement %zu of the batch", i);
}

/* Leaf hashes of the payloads, computed with libsodium and a hand-written PAE. */
static void ref_leaves(size_t n, tdsx_hash_t *out)
{
    for (size_t i = 0; i < n; i++) {
        char p[64], pae[256];
        payload_of(i, p, sizeof p);
        int len = snprintf(pae + 1, sizeof pae - 1, "DSSEv1 %zu %s %zu %s", strlen(TYPE_A), TYPE_A,
                           strlen(p), p);
        pae[0] = 0x00;
        crypto_hash_sha256(out[i].b, (const uint8_t *)pae, (size_t)len + 1);
    }
}

/* Submits n numbered statements and flushes once. */
static captured_t *sign_batch(tdsx_signer_t *s, size_t n)
{
    captured_t *c = calloc(n, sizeof *c);
    static int counter;
    counter = 0;
    for (size_t i = 0; i < n; i++) {
        char p[64];
        payload_of(i, p, sizeof p);
        c[i].counter = &counter;
        assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes(p, strlen(p)), capture_cb, &c[i]),
                         0);
    }
    assert_int_equal(tdsx_signer_pending(s), n);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(tdsx_signer_pending(s), 0);
    return c;
}

static void check_batch(size_t n)
{
    tdsx_signer_t *s = test_signer(0x11, NULL, pk);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    captured_t *c = sign_batch(s, n);
    tdsx_hash_t *leaves = calloc(n, sizeof *leaves);
    ref_leaves(n, leaves);
    tdsx_hash_t root;
    assert_int_equal(tdsx_merkle_root(leaves, n, &root), 0);
    uint8_t sig0[TDSX_ED25519_SIG_LEN];
    for (size_t i = 0; i < n; i++) {
        /* Every callback once, successful, in submission order. */
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, 0);
        assert_int_equal(c[i].order, (int)i);

        Tdsx__Envelope *e = decode_env(c[i].env, c[i].len);
        const Tdsx__Signature *sg = e->signatures[0];
        assert_int_equal(sg->index, i);
        assert_int_equal(sg->tree_size, n);
        /* The path is the RFC 9162 path over independently computed leaves. */
        tdsx_hash_t want[TDSX_MERKLE_PATH_MAX];
        size_t want_len;
        assert_int_equal(tdsx_merkle_inclusion_proof(leaves, n, i, want, &want_len), 0);
        assert_int_equal(sg->n_path, want_len);
        for (size_t j = 0; j < want_len; j++) {
            assert_int_equal(sg->path[j].len, 32);
            assert_memory_equal(sg->path[j].data, want[j].b, 32);
        }
        /* One signature for the whole batch. */
        if (i == 0)
            memcpy(sig0, sg->sig.data, sizeof sig0);
        else
            assert_memory_equal(sg->sig.data, sig0, sizeof sig0);
        tdsx__envelope__free_unpacked(e, NULL);

        tdsx_arena_t *a = test_arena();
        tdsx_verified_t out;
        assert_int_equal(tdsx_envelope_verify(v, TYPE_A, tdsx_bytes(c[i].env, c[i].len), a, &out),
                         0);
        char p[64];
        payload_of(i, p, sizeof p);
        assert_int_equal(out.payload.n, strlen(p));
        assert_memory_equal(out.payload.p, p, out.payload.n);
        assert_memory_equal(out.root.b, root.b, 32);
        assert_int_equal(out.cached, i > 0);
        tdsx_arena_free(a);
    }
    /* The signature is over the root statement of this very tree. */
    uint8_t msg[128];
    int h = snprintf((char *)msg, sizeof msg, "DSSEv1 34 application/vnd.tdsx.batch-root.v1 40 ");
    for (int b = 0; b < 8; b++)
        msg[h + b] = (uint8_t)((uint64_t)n >> (56 - 8 * b));
    memcpy(msg + h + 8, root.b, 32);
    assert_int_equal(crypto_sign_verify_detached(sig0, msg, (size_t)h + 40, pk), 0);

    tdsx_verifier_stats_t st;
    tdsx_verifier_stats(v, &st);
    assert_int_equal(st.verified, n);
    assert_int_equal(st.cache_hits, n - 1);
    assert_int_equal(st.rejected, 0);
    captured_free(c, n);
    free(c);
    free(leaves);
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

static void batch_of_1(void **state)
{
    (void)state;
    check_batch(1);
}
static void batch_of_2(void **state)
{
    (void)state;
    check_batch(2);
}
static void batch_of_3(void **state)
{
    (void)state;
    check_batch(3);
}
static void batch_of_64(void **state)
{
    (void)state;
    check_batch(64);
}
static void batch_of_256(void **state)
{
    (void)state;
    check_batch(256);
}

static void flush_splits_at_max_batch(void **state)
{
    (void)state;
    tdsx_signer_opts_t opts = {.max_batch = 16, .max_queue = 0};
    tdsx_signer_t *s = test_signer(0x22, &opts, pk);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    captured_t *c = sign_batch(s, 40);
    static const size_t want_size[] = {16, 16, 8};
    uint8_t sigs[3][TDSX_ED25519_SIG_LEN];
    for (size_t i = 0; i < 40; i++) {
        assert_int_equal(c[i].status, 0);
        Tdsx__Envelope *e = decode_env(c[i].env, c[i].len);
        assert_int_equal(e->signatures[0]->tree_size, want_size[i / 16]);
        assert_int_equal(e->signatures[0]->index, i % 16);
        if (i % 16 == 0)
            memcpy(sigs[i / 16], e->signatures[0]->sig.data, TDSX_ED25519_SIG_LEN);
        tdsx__envelope__free_unpacked(e, NULL);
        assert_int_equal(verify_status(v, TYPE_A, c[i].env, c[i].len), 0);
    }
    assert_memory_not_equal(sigs[0], sigs[1], TDSX_ED25519_SIG_LEN);
    assert_memory_not_equal(sigs[1], sigs[2], TDSX_ED25519_SIG_LEN);
    tdsx_verifier_stats_t st;
    tdsx_verifier_stats(v, &st);
    assert_int_equal(st.cache_hits, 40 - 3);
    captured_free(c, 40);
    free(c);
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

static void empty_flush_does_nothing(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x33, NULL, NULL);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(tdsx_signer_pending(s), 0);
    assert_int_equal(tdsx_signer_flush(NULL), TDSX_E_INVAL);
    tdsx_signer_free(s);
}

/* ------------------------------------------------------------------------------------------
 * Queue and callback rules
 * ---------------------------------------------------------------------------------------- */
static void full_queue_refuses_until_flushed(void **state)
{
    (void)state;
    tdsx_signer_opts_t opts = {.max_batch = 2, .max_queue = 3};
    tdsx_signer_t *s = test_signer(0x44, &opts, NULL);
    captured_t c[5] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("q", 1), capture_cb, &c[i]), 0);
    assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("q", 1), capture_cb, &c[3]),
                     TDSX_E_AGAIN);
    assert_int_equal(tdsx_signer_pending(s), 3);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(c[3].calls, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c[i].calls, 1);
    assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("q", 1), capture_cb, &c[4]), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(c[4].calls, 1);
    assert_int_equal(c[4].status, 0);
    captured_free(c, 5);
    tdsx_signer_free(s);
}

struct reentry {
    tdsx_signer_t *s;
    int flush_rc;
    int submit_rc;
    captured_t later;
    int calls;
};

static void reentering_cb(void *userdata, int status, tdsx_bytes_t envelope)
{
    struct reentry *r = userdata;
    (void)envelope;
    assert_int_equal(status, 0);
    r->calls++;
    r->flush_rc = tdsx_signer_flush(r->s);
    r->submit_rc = tdsx_signer_submit(r->s, TYPE_A, tdsx_bytes("later", 5), capture_cb, &r->later);
}

static void callbacks_may_submit_but_not_flush(void **state)
{
    (void)state;
    struct reentry r = {0};
    r.s = test_signer(0x55, NULL, NULL);
    assert_int_equal(tdsx_signer_submit(r.s, TYPE_A, tdsx_bytes("now", 3), reentering_cb, &r), 0);
    assert_int_equal(tdsx_signer_flush(r.s), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.flush_rc, TDSX_E_STATE);
    assert_int_equal(r.submit_rc, 0);
    /* The statement submitted from the callback waits for the next flush. */
    assert_int_equal(r.later.calls, 0);
    assert_int_equal(tdsx_signer_pending(r.s), 1);
    assert_int_equal(tdsx_signer_flush(r.s), 0);
    assert_int_equal(r.later.calls, 1);
    assert_int_equal(r.later.status, 0);
    captured_free(&r.later, 1);
    tdsx_signer_free(r.s);
}

static void freeing_cancels_waiting_statements(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x66, NULL, NULL);
    captured_t c[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("w", 1), capture_cb, &c[i]), 0);
    tdsx_signer_free(s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, TDSX_E_CANCELED);
        assert_null(c[i].env);
    }
}

static void signer_refuses_bad_construction(void **state)
{
    (void)state;
    tdsx_signer_t *s = (tdsx_signer_t *)&s;
    uint8_t seed[32] = {0};
    assert_int_equal(tdsx_signer_new(NULL, NULL, &s), TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_new(seed, NULL, NULL), TDSX_E_INVAL);
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_null(s);
    tdsx_signer_free(NULL);
}

static void different_seeds_different_keys(void **state)
{
    (void)state;
    uint8_t pk1[32], pk2[32], pk1_again[32];
    tdsx_signer_t *s1 = test_signer(1, NULL, pk1), *s2 = test_signer(2, NULL, pk2);
    tdsx_signer_t *s1b = test_signer(1, NULL, pk1_again);
    assert_memory_not_equal(pk1, pk2, 32);
    assert_memory_equal(pk1, pk1_again, 32);
    /* Ed25519 is deterministic: the same key signs the same batch identically. */
    size_t l1, l2;
    uint8_t *e1 = sign_one(s1, TYPE_A, "det", 3, &l1), *e2 = sign_one(s1b, TYPE_A, "det", 3, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(e1, e2, l1);
    free(e1);
    free(e2);
    tdsx_signer_free(s1);
    tdsx_signer_free(s1b);
    tdsx_signer_free(s2);
}

/* ------------------------------------------------------------------------------------------
 * Verified-root cache
 * ---------------------------------------------------------------------------------------- */
static void cache_hit_still_rejects_tampering(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x77, NULL, pk);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    captured_t *c = sign_batch(s, 8);
    /* Envelope 0 puts the root in the cache. */
    assert_int_equal(verify_status(v, TYPE_A, c[0].env, c[0].len), 0);

    Tdsx__Envelope *e = decode_env(c[5].env, c[5].len);
    size_t n;
    uint8_t *bad;
    /* Payload changed: the path leads to another root, which was never signed. */
    e->payload.data[0] ^= 0x20;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e->payload.data[0] ^= 0x20;
    /* Signature changed: the root is cached, but only with the signature that verified. */
    e->signatures[0]->sig.data[3] ^= 0x01;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e->signatures[0]->sig.data[3] ^= 0x01;
    /* A path element changed. */
    e->signatures[0]->path[2].data[31] ^= 0x01;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e->signatures[0]->path[2].data[31] ^= 0x01;
    /* Another statement's payload with this one's index and path. */
    Tdsx__Envelope *other = decode_env(c[6].env, c[6].len);
    ProtobufCBinaryData keep = e->payload;
    e->payload = other->payload;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e->payload = keep;
    /* Index swapped with a neighbour's: same root set, wrong position. */
    e->signatures[0]->index = 4;
    bad = encode_env(e, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e->signatures[0]->index = 5;

    tdsx_verifier_stats_t before, after;
    tdsx_verifier_stats(v, &before);
    assert_int_equal(before.cache_hits, 0);
    /* Untouched, the same envelope is a cache hit. */
    assert_int_equal(verify_status(v, TYPE_A, c[5].env, c[5].len), 0);
    tdsx_verifier_stats(v, &after);
    assert_int_equal(after.cache_hits, 1);
    assert_int_equal(after.rejected, 5);
    tdsx__envelope__free_unpacked(other, NULL);
    tdsx__envelope__free_unpacked(e, NULL);
    captured_free(c, 8);
    free(c);
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

static void envelopes_do_not_mix_across_batches(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x78, NULL, pk);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    captured_t *b1 = sign_batch(s, 4);
    captured_t *b2 = sign_batch(s, 4);
    /* Both batches cached. */
    assert_int_equal(verify_status(v, TYPE_A, b1[0].env, b1[0].len), 0);
    assert_int_equal(verify_status(v, TYPE_A, b2[0].env, b2[0].len), 0);
    /* Identical payloads at identical positions: the batches have the same root, yet differ in
     * nothing but... nothing. Same signer, same tree, same signature: splicing is a no-op. */
    Tdsx__Envelope *e1 = decode_env(b1[1].env, b1[1].len);
    Tdsx__Envelope *e2 = decode_env(b2[1].env, b2[1].len);
    assert_memory_equal(e1->signatures[0]->sig.data, e2->signatures[0]->sig.data, 64);
    tdsx__envelope__free_unpacked(e1, NULL);
    tdsx__envelope__free_unpacked(e2, NULL);

    /* A batch of 5 has a different root: its signature does not cover the batch of 4. */
    captured_t *b3 = sign_batch(s, 5);
    e1 = decode_env(b1[1].env, b1[1].len);
    Tdsx__Envelope *e3 = decode_env(b3[1].env, b3[1].len);
    ProtobufCBinaryData keep = e1->signatures[0]->sig;
    e1->signatures[0]->sig = e3->signatures[0]->sig;
    size_t n;
    uint8_t *bad = encode_env(e1, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e1->signatures[0]->sig = keep;
    /* Claiming to be a batch of one (empty path) makes the leaf the root: never signed. */
    size_t keep_n = e1->signatures[0]->n_path;
    e1->signatures[0]->n_path = 0;
    e1->signatures[0]->tree_size = 1;
    e1->signatures[0]->index = 0;
    bad = encode_env(e1, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e1->signatures[0]->n_path = keep_n;
    tdsx__envelope__free_unpacked(e1, NULL);
    tdsx__envelope__free_unpacked(e3, NULL);
    captured_free(b1, 4);
    captured_free(b2, 4);
    captured_free(b3, 5);
    free(b1);
    free(b2);
    free(b3);
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

static void cache_forgets_the_oldest_root(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x79, NULL, pk);
    tdsx_verifier_t *v = test_verifier(pk, 2);
    captured_t *batch[3];
    for (size_t i = 0; i < 3; i++)
        batch[i] = sign_batch(s, 2 + i); /* different sizes: different roots */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(verify_status(v, TYPE_A, batch[i][0].env, batch[i][0].len), 0);
    tdsx_verifier_stats_t st;
    /* Batches 2 and 3 are cached... */
    assert_int_equal(verify_status(v, TYPE_A, batch[2][1].env, batch[2][1].len), 0);
    assert_int_equal(verify_status(v, TYPE_A, batch[1][1].env, batch[1][1].len), 0);
    tdsx_verifier_stats(v, &st);
    assert_int_equal(st.cache_hits, 2);
    /* ...batch 1 was replaced, so it is verified in full again (and still passes). */
    assert_int_equal(verify_status(v, TYPE_A, batch[0][1].env, batch[0][1].len), 0);
    tdsx_verifier_stats(v, &st);
    assert_int_equal(st.cache_hits, 2);
    assert_int_equal(st.verified, 6);
    for (size_t i = 0; i < 3; i++) {
        captured_free(batch[i], 2 + i);
        free(batch[i]);
    }
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

static void cache_is_per_key(void **state)
{
    (void)state;
    /* Two signers with the same batch: same root, different keys and signatures. A cached
     * root of one key is no help to an envelope claiming the other key. */
    uint8_t pk2[32];
    tdsx_signer_t *s1 = test_signer(0x7a, NULL, pk), *s2 = test_signer(0x7b, NULL, pk2);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk2), 0);
    captured_t *c1 = sign_batch(s1, 2);
    captured_t *c2 = sign_batch(s2, 2);
    assert_int_equal(verify_status(v, TYPE_A, c1[0].env, c1[0].len), 0);
    /* s2's key id with s1's (cached) signature. */
    Tdsx__Envelope *e1 = decode_env(c1[1].env, c1[1].len);
    Tdsx__Envelope *e2 = decode_env(c2[1].env, c2[1].len);
    ProtobufCBinaryData keep = e2->signatures[0]->sig;
    e2->signatures[0]->sig = e1->signatures[0]->sig;
    size_t n;
    uint8_t *bad = encode_env(e2, &n);
    assert_int_equal(verify_status(v, TYPE_A, bad, n), TDSX_E_SIG_INVALID);
    free(bad);
    e2->signatures[0]->sig = keep;
    tdsx__envelope__free_unpacked(e1, NULL);
    tdsx__envelope__free_unpacked(e2, NULL);
    captured_free(c1, 2);
    captured_free(c2, 2);
    free(c1);
    free(c2);
    tdsx_verifier_free(v);
    tdsx_signer_free(s1);
    tdsx_signer_free(s2);
}

/* ------------------------------------------------------------------------------------------
 * Allocation failure
 * ---------------------------------------------------------------------------------------- */
static void submit_allocation_failure_leaves_queue_alone(void **state)
{
    (void)state;
    tdsx_signer_t *s = test_signer(0x88, NULL, NULL);
    captured_t c = {0};
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("x", 1), capture_cb, &c),
                     TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_int_equal(tdsx_signer_pending(s), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(c.calls, 0);
    tdsx_signer_free(s);
}

static void flush_allocation_failure_at_every_step(void **state)
{
    (void)state;
    /* Fail the k-th allocation of a flush of 5 statements (in 2 batches), for every k until a
     * flush needs no more than k-1: every statement must get exactly one callback, either a
     * verifiable envelope or TDSX_E_NOMEM, and nothing may leak (ASan). */
    tdsx_signer_opts_t opts = {.max_batch = 3, .max_queue = 0};
    tdsx_signer_t *s = test_signer(0x99, &opts, pk);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    int saw_failure = 0, saw_partial = 0;
    for (unsigned long k = 1;; k++) {
        captured_t c[5] = {{0}};
        for (int i = 0; i < 5; i++)
            assert_int_equal(tdsx_signer_submit(s, TYPE_A, tdsx_bytes("abcde", (size_t)i + 1),
                                                capture_cb, &c[i]),
                             0);
        tdsx_test_alloc_fail_after(k);
        assert_int_equal(tdsx_signer_flush(s), 0);
        tdsx_test_alloc_reset();
        int failed = 0;
        for (int i = 0; i < 5; i++) {
            assert_int_equal(c[i].calls, 1);
            if (c[i].status == 0)
                assert_int_equal(verify_status(v, TYPE_A, c[i].env, c[i].len), 0);
            else {
                assert_int_equal(c[i].status, TDSX_E_NOMEM);
                failed++;
            }
        }
        assert_int_equal(tdsx_signer_pending(s), 0);
        captured_free(c, 5);
        if (failed)
            saw_failure = 1;
        if (failed > 0 && failed < 5)
            saw_partial = 1;
        if (!failed)
            break;
        assert_true(k < 100);
    }
    assert_true(saw_failure);
    assert_true(saw_partial);
    tdsx_verifier_free(v);
    tdsx_signer_free(s);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_of_1),
        cmocka_unit_test(batch_of_2),
        cmocka_unit_test(batch_of_3),
        cmocka_unit_test(batch_of_64),
        cmocka_unit_test(batch_of_256),
        cmocka_unit_test(flush_splits_at_max_batch),
        cmocka_unit_test(callbacks_may_submit_but_not_flush),
        cmocka_unit_test(different_seeds_different_keys),
        cmocka_unit_test(empty_flush_does_nothing),
        cmocka_unit_test(full_queue_refuses_until_flushed),
        cmocka_unit_test(freeing_cancels_waiting_statements),
        cmocka_unit_test(signer_refuses_bad_construction),
        cmocka_unit_test(cache_hit_still_rejects_tampering),
        cmocka_unit_test(envelopes_do_not_mix_across_batches),
        cmocka_unit_test(cache_forgets_the_oldest_root),
        cmocka_unit_test(cache_is_per_key),
        cmocka_unit_test(submit_allocation_failure_leaves_queue_alone),
        cmocka_unit_test(flush_allocation_failure_at_every_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
