/*
 * fuzz_envelope.c — arbitrary bytes as a signed envelope: verified against a fixed keyring and,
 * when they verify, decoded as every statement kind (verify-before-decode, SPEC §10).
 *
 * The keyring holds the key of the seed corpus (seed = 32 bytes 0xf5, the same as
 * tests/crypto/gen_seeds.c), so mutations of valid seeds reach the Merkle path walk, the
 * Ed25519 check and the statement decoders, not only the envelope decoder.
 * Checks: only documented errors come out; a successful verification hands out the payload
 * bytes that are in the input, repeats identically (through the root cache the second time)
 * and fails under any other type string; the arena never exceeds its budget.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Small enough that a budget failure is reachable, large enough for every seed. */
#define BUDGET (256u * 1024u)

static int verify_error(int rc)
{
    return rc == TDSX_E_ENVELOPE || rc == TDSX_E_SIG_TYPE || rc == TDSX_E_SIGNER_UNKNOWN ||
           rc == TDSX_E_MERKLE_PROOF || rc == TDSX_E_SIG_INVALID || rc == TDSX_E_ARENA_BUDGET ||
           rc == TDSX_E_TOOBIG;
}

/* The payload must be a copy of bytes that are somewhere in the input. */
static int inside(tdsx_bytes_t payload, const uint8_t *data, size_t size)
{
    if (payload.n == 0)
        return 1;
    for (size_t i = 0; i + payload.n <= size; i++) {
        if (memcmp(data + i, payload.p, payload.n) == 0)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A fresh verifier per input keeps runs reproducible (the root cache is state). */
    uint8_t seed[32], pk[32], sk[64];
    memset(seed, 0xf5, sizeof seed);
    check(sodium_init() >= 0);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(sk, sizeof sk);
    tdsx_verifier_t *v = NULL;
    tdsx_arena_t *a = NULL;
    check(tdsx_verifier_new(4, &v) == 0);
    check(tdsx_verifier_add_key(v, pk) == 0);
    check(tdsx_arena_new(BUDGET, &a) == 0);
    tdsx_bytes_t in = tdsx_bytes(data, size);

    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        const char *type = tdsx_statement_type((tdsx_statement_kind_t)k);
        tdsx_verified_t first, again;
        int rc = tdsx_envelope_verify(v, type, in, a, &first);
        check(rc == 0 || verify_error(rc));
        check(tdsx_arena_used(a) <= BUDGET);
        if (rc == 0) {
            check(inside(first.payload, data, size));
            check(first.index < first.tree_size);
            tdsx_arena_reset(a);
            check(tdsx_envelope_verify(v, type, in, a, &again) == 0);
            check(again.cached);
            check(again.payload.n == first.payload.n);
            check(memcmp(again.root.b, first.root.b, TDSX_HASH_LEN) == 0);
            check(tdsx_envelope_verify(v, "application/vnd.tdsx.other.v1", in, a, &again) ==
                  TDSX_E_SIG_TYPE);
        }
        tdsx_arena_reset(a);

        ProtobufCMessage *m = NULL;
        int orc = tdsx_statement_open(v, (tdsx_statement_kind_t)k, in, a, &m, NULL);
        check(orc == 0 || verify_error(orc) || orc == TDSX_E_PROTO_DECODE);
        if (rc != 0)
            check(orc == rc && m == NULL);
        if (orc == 0) {
            check(m->descriptor == tdsx_statement_descriptor((tdsx_statement_kind_t)k));
            /* The decoded statement is a complete message protobuf-c can walk. */
            size_t n = protobuf_c_message_get_packed_size(m);
            uint8_t *p = malloc(n ? n : 1);
            check(p != NULL);
            check(protobuf_c_message_pack(m, p) == n);
            free(p);
        }
        tdsx_arena_reset(a);
    }
    tdsx_hash_t h;
    check(tdsx_envelope_hash(in, &h) == 0);

    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    return 0;
}
