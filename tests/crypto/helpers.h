/*
 * helpers.h — small helpers shared by the crypto tests: callbacks that keep what the signer
 * hands out, deterministic keys, and envelope surgery with plain protobuf-c (malloc-based, so
 * the tests do not depend on the arena they exercise).
 */
#ifndef TDSX_TEST_CRYPTO_HELPERS_H
#define TDSX_TEST_CRYPTO_HELPERS_H

#include "support.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

/* What one callback received. */
typedef struct captured_s {
    int calls;
    int status;
    uint8_t *env;
    size_t len;
    int order; /* value of *counter when called */
    int *counter;
} captured_t;

static inline void capture_cb(void *userdata, int status, tdsx_bytes_t envelope)
{
    captured_t *c = userdata;
    c->calls++;
    c->status = status;
    if (c->counter)
        c->order = (*c->counter)++;
    if (status == 0) {
        assert_true(envelope.n > 0);
        free(c->env);
        c->env = malloc(envelope.n);
        assert_non_null(c->env);
        memcpy(c->env, envelope.p, envelope.n);
        c->len = envelope.n;
    } else {
        assert_int_equal(envelope.n, 0);
    }
}

static inline void captured_free(captured_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].env);
        c[i].env = NULL;
    }
}

/* A signer whose seed is 32 copies of `b`, and its public key. */
static inline tdsx_signer_t *test_signer(uint8_t b, const tdsx_signer_opts_t *opts,
                                         uint8_t pk[TDSX_ED25519_PK_LEN])
{
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    memset(seed, b, sizeof seed);
    tdsx_signer_t *s = NULL;
    assert_int_equal(tdsx_signer_new(seed, opts, &s), 0);
    if (pk)
        tdsx_signer_public_key(s, pk);
    return s;
}

static inline tdsx_verifier_t *test_verifier(const uint8_t pk[TDSX_ED25519_PK_LEN],
                                             size_t cache_size)
{
    tdsx_verifier_t *v = NULL;
    assert_int_equal(tdsx_verifier_new(cache_size, &v), 0);
    if (pk)
        assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    return v;
}

static inline tdsx_arena_t *test_arena(void)
{
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    return a;
}

/* Signs one payload as a batch of one and returns the envelope (free with free()). */
static inline uint8_t *sign_one(tdsx_signer_t *s, const char *type, const void *payload, size_t n,
                                size_t *len)
{
    captured_t c = {0};
    assert_int_equal(tdsx_signer_submit(s, type, tdsx_bytes(payload, n), capture_cb, &c), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    *len = c.len;
    return c.env;
}

/* Verification status of `env` under `type` with a fresh arena. */
static inline int verify_status(tdsx_verifier_t *v, const char *type, const uint8_t *env,
                                size_t len)
{
    tdsx_arena_t *a = test_arena();
    tdsx_verified_t out;
    int rc = tdsx_envelope_verify(v, type, tdsx_bytes(env, len), a, &out);
    tdsx_arena_free(a);
    return rc;
}

static inline Tdsx__Envelope *decode_env(const uint8_t *env, size_t len)
{
    Tdsx__Envelope *e = tdsx__envelope__unpack(NULL, len, env);
    assert_non_null(e);
    return e;
}

/* Serialises e into a new malloc'ed buffer. */
static inline uint8_t *encode_env(const Tdsx__Envelope *e, size_t *len)
{
    *len = tdsx__envelope__get_packed_size(e);
    uint8_t *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    assert_int_equal(tdsx__envelope__pack(e, p), *len);
    return p;
}

#define TYPE_A "application/vnd.tdsx.test-a.v1+protobuf"
#define TYPE_B "application/vnd.tdsx.test-b.v1+protobuf"

#endif
