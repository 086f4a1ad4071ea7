/*
 * fuzz_proof.c — RFC 9162 proof verification on arbitrary proofs, and generation/verification
 * round trips on arbitrary trees.
 *
 * Input: a mode byte, then
 *   mode 0  index u64, size u64, leaf[32], root[32], path: the rest in 32-byte hashes
 *           (inclusion: verify must agree with the root the path reaches);
 *   mode 1  m u64, n u64, root_m[32], root_n[32], proof: the rest in 32-byte hashes
 *           (consistency: only documented results, no crash for any size);
 *   mode 2  n u8, index u8, m u8, flip u16, then leaf data (generation: over n <= 64 leaves
 *           derived from the data, every generated proof verifies, both inclusion generators
 *           agree, and the proof with one bit flipped fails).
 * Integers are big-endian; missing bytes read as zero.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define HASHES_MAX (TDSX_MERKLE_CONSISTENCY_MAX + 4)

static uint8_t take_u8(tdsx_bytes_t *c)
{
    uint8_t v = 0;
    return tdsx_bytes_u8(c, &v) == 0 ? v : 0;
}

static uint64_t take_u64(tdsx_bytes_t *c)
{
    uint64_t v = 0;
    if (tdsx_bytes_u64be(c, &v))
        *c = tdsx_bytes(NULL, 0);
    return v;
}

static void take_hash(tdsx_bytes_t *c, tdsx_hash_t *h)
{
    memset(h, 0, sizeof *h);
    if (tdsx_bytes_copy(c, h->b, TDSX_HASH_LEN))
        *c = tdsx_bytes(NULL, 0);
}

static size_t take_hashes(tdsx_bytes_t *c, tdsx_hash_t *out)
{
    size_t n = 0;
    while (n < HASHES_MAX && tdsx_bytes_copy(c, out[n].b, TDSX_HASH_LEN) == 0)
        n++;
    return n;
}

static void inclusion(tdsx_bytes_t c)
{
    tdsx_hash_t leaf, root, reached, path[HASHES_MAX];
    uint64_t index = take_u64(&c), size = take_u64(&c);
    take_hash(&c, &leaf);
    take_hash(&c, &root);
    size_t n = take_hashes(&c, path);
    int rc = tdsx_merkle_inclusion_root(index, size, &leaf, path, n, &reached);
    int vrc = tdsx_merkle_inclusion_verify(index, size, &leaf, path, n, &root);
    check(rc == 0 || rc == TDSX_E_MERKLE_PROOF);
    check(vrc == 0 || vrc == TDSX_E_MERKLE_PROOF);
    if (rc == 0) {
        check(index < size && n <= TDSX_MERKLE_PATH_MAX);
        check(vrc == (memcmp(reached.b, root.b, TDSX_HASH_LEN) == 0 ? 0 : TDSX_E_MERKLE_PROOF));
        /* The reached root is, by definition, one the path proves. */
        check(tdsx_merkle_inclusion_verify(index, size, &leaf, path, n, &reached) == 0);
    } else {
        check(vrc == TDSX_E_MERKLE_PROOF);
    }
}

static void consistency(tdsx_bytes_t c)
{
    tdsx_hash_t rm, rn, proof[HASHES_MAX];
    uint64_t m = take_u64(&c), n = take_u64(&c);
    take_hash(&c, &rm);
    take_hash(&c, &rn);
    size_t len = take_hashes(&c, proof);
    int rc = tdsx_merkle_consistency_verify(m, n, &rm, &rn, proof, len);
    check(rc == 0 || rc == TDSX_E_MERKLE_PROOF);
    if (rc == 0)
        check(m <= n && len <= TDSX_MERKLE_CONSISTENCY_MAX);
}

static void round_trip(tdsx_bytes_t c)
{
    uint8_t n8 = take_u8(&c), i8 = take_u8(&c), m8 = take_u8(&c);
    unsigned flip = (unsigned)take_u8(&c) << 8;
    flip |= take_u8(&c);
    size_t n = (size_t)(n8 % 64) + 1, index = i8 % n, m = (size_t)(m8 % n) + 1;

    /* Leaf i hashes i and a slice of the remaining data, so leaves may repeat when the data
     * does: proofs must work then too. */
    tdsx_hash_t leaves[64], root, path[TDSX_MERKLE_CONSISTENCY_MAX], other[TDSX_MERKLE_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[9] = {(uint8_t)i};
        size_t take = c.n < 8 ? c.n : 8;
        check(tdsx_bytes_copy(&c, buf + 1, take) == 0);
        check(tdsx_merkle_leaf_hash(buf, 1 + take, &leaves[i]) == 0);
    }
    check(tdsx_merkle_root(leaves, n, &root) == 0);

    size_t len, olen;
    check(tdsx_merkle_inclusion_proof(leaves, n, index, path, &len) == 0);
    check(tdsx_merkle_inclusion_verify(index, n, &leaves[index], path, len, &root) == 0);
    tdsx_merkle_tree_t *t = NULL;
    check(tdsx_merkle_tree_new(leaves, n, &t) == 0);
    check(memcmp(tdsx_merkle_tree_root(t)->b, root.b, TDSX_HASH_LEN) == 0);
    check(tdsx_merkle_tree_path(t, index, other, &olen) == 0);
    check(olen == len && memcmp(other, path, len * sizeof path[0]) == 0);
    tdsx_merkle_tree_free(t);
    if (len > 0) {
        size_t e = (flip >> 8) % len;
        path[e].b[flip % TDSX_HASH_LEN] ^= (uint8_t)(1u << (flip % 8));
        check(tdsx_merkle_inclusion_verify(index, n, &leaves[index], path, len, &root) ==
              TDSX_E_MERKLE_PROOF);
    }

    tdsx_hash_t root_m;
    check(tdsx_merkle_root(leaves, m, &root_m) == 0);
    check(tdsx_merkle_consistency_proof(leaves, n, m, path, &len) == 0);
    check(tdsx_merkle_consistency_verify(m, n, &root_m, &root, path, len) == 0);
    if (len > 0) {
        size_t e = (flip >> 8) % len;
        path[e].b[flip % TDSX_HASH_LEN] ^= (uint8_t)(1u << (flip % 8));
        check(tdsx_merkle_consistency_verify(m, n, &root_m, &root, path, len) ==
              TDSX_E_MERKLE_PROOF);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tdsx_bytes_t c = tdsx_bytes(data, size);
    uint8_t mode = 0;
    if (tdsx_bytes_u8(&c, &mode))
        return 0;
    switch (mode % 3) {
    case 0: inclusion(c); break;
    case 1: consistency(c); break;
    default: round_trip(c); break;
    }
    return 0;
}
