/* RFC 9162 Merkle trees: known answers from Certificate Transparency, every inclusion and
 * consistency proof up to 64 leaves against a naive recursive reference written straight from
 * the RFC, and proofs that must be refused. */
#include "support.h"

#include <string.h>

#include <sodium.h>

#include "crypto.h"

/* ------------------------------------------------------------------------------------------
 * Reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 as written (recursive, no cleverness),
 * hashing with libsodium so that it shares no code with the implementation under test.
 * ---------------------------------------------------------------------------------------- */
static tdsx_hash_t ref_leaf(const uint8_t *d, size_t n)
{
    crypto_hash_sha256_state st;
    tdsx_hash_t out;
    const uint8_t prefix = 0x00;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    crypto_hash_sha256_update(&st, d, n);
    crypto_hash_sha256_final(&st, out.b);
    return out;
}

static tdsx_hash_t ref_node(tdsx_hash_t l, tdsx_hash_t r)
{
    crypto_hash_sha256_state st;
    tdsx_hash_t out;
    const uint8_t prefix = 0x01;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    crypto_hash_sha256_update(&st, l.b, sizeof l.b);
    crypto_hash_sha256_update(&st, r.b, sizeof r.b);
    crypto_hash_sha256_final(&st, out.b);
    return out;
}

/* k: the largest power of two smaller than n (n > 1). */
static size_t ref_k(size_t n)
{
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

static tdsx_hash_t ref_mth(const tdsx_hash_t *d, size_t n)
{
    if (n == 0) {
        tdsx_hash_t e;
        crypto_hash_sha256(e.b, NULL, 0);
        return e;
    }
    if (n == 1)
        return d[0];
    size_t k = ref_k(n);
    return ref_node(ref_mth(d, k), ref_mth(d + k, n - k));
}

/* PATH(m, D[n]) */
static void ref_path(size_t m, const tdsx_hash_t *d, size_t n, tdsx_hash_t *out, size_t *len)
{
    if (n == 1)
        return;
    size_t k = ref_k(n);
    if (m < k) {
        ref_path(m, d, k, out, len);
        out[(*len)++] = ref_mth(d + k, n - k);
    } else {
        ref_path(m - k, d + k, n - k, out, len);
        out[(*len)++] = ref_mth(d, k);
    }
}

/* SUBPROOF(m, D[n], b) */
static void ref_subproof(size_t m, const tdsx_hash_t *d, size_t n, int b, tdsx_hash_t *out,
                         size_t *len)
{
    if (m == n) {
        if (!b)
            out[(*len)++] = ref_mth(d, n);
        return;
    }
    size_t k = ref_k(n);
    if (m <= k) {
        ref_subproof(m, d, k, b, out, len);
        out[(*len)++] = ref_mth(d + k, n - k);
    } else {
        ref_subproof(m - k, d + k, n - k, 0, out, len);
        out[(*len)++] = ref_mth(d, k);
    }
}

#define N_MAX 64

/* Distinct leaves: no two equal hashes anywhere, so a wrong index cannot succeed by accident. */
static tdsx_hash_t leaves[N_MAX];

static int setup_leaves(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_MAX; i++) {
        const uint8_t d[3] = {(uint8_t)i, (uint8_t)(i * 7), 0x5a};
        leaves[i] = ref_leaf(d, sizeof d);
    }
    return 0;
}

static tdsx_hash_t from_hex(const char *hex)
{
    tdsx_hash_t h;
    assert_int_equal(tdsx_hex_decode(h.b, sizeof h.b, hex), 0);
    return h;
}

static void flip(tdsx_hash_t *h, size_t byte)
{
    h->b[byte % TDSX_HASH_LEN] ^= 0x01;
}

/* ------------------------------------------------------------------------------------------
 * Known answers: google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
 * (kInputs, kSHA256EmptyTreeHash, kSHA256Roots, and the paths/proofs in TestPathToCurrentRoot
 * and TestSnapshotConsistency of its Go wrapper; the same values as RFC 6962's reference code).
 * ---------------------------------------------------------------------------------------- */
static const struct {
    const char *hex;
} ct_inputs[8] = {{""},
                  {"00"},
                  {"10"},
                  {"2021"},
                  {"3031"},
                  {"40414243"},
                  {"5051525354555657"},
                  {"606162636465666768696a6b6c6d6e6f"}};

static const char *const ct_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void ct_leaf_hashes(tdsx_hash_t out[8])
{
    for (size_t i = 0; i < 8; i++) {
        uint8_t d[16];
        size_t n = strlen(ct_inputs[i].hex) / 2;
        assert_int_equal(tdsx_hex_decode(d, n, ct_inputs[i].hex), 0);
        assert_int_equal(tdsx_merkle_leaf_hash(d, n, &out[i]), 0);
    }
}

static void ct_known_roots_for_sizes_0_to_8(void **state)
{
    (void)state;
    tdsx_hash_t ct[8];
    ct_leaf_hashes(ct);
    for (size_t n = 0; n <= 8; n++) {
        tdsx_hash_t want = from_hex(ct_roots[n]), got;
        assert_int_equal(tdsx_merkle_root(ct, n, &got), 0);
        assert_memory_equal(got.b, want.b, TDSX_HASH_LEN);
        tdsx_merkle_tree_t *t;
        assert_int_equal(tdsx_merkle_tree_new(ct, n, &t), 0);
        assert_int_equal(tdsx_merkle_tree_size(t), n);
        assert_memory_equal(tdsx_merkle_tree_root(t)->b, want.b, TDSX_HASH_LEN);
        tdsx_merkle_tree_free(t);
        /* The reference agrees too, so the exhaustive comparisons below rest on known answers. */
        got = ref_mth(ct, n);
        assert_memory_equal(got.b, want.b, TDSX_HASH_LEN);
    }
}

static void ct_known_proofs(void **state)
{
    (void)state;
    tdsx_hash_t ct[8], path[TDSX_MERKLE_PATH_MAX], proof[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t len;
    ct_leaf_hashes(ct);
    static const struct {
        size_t index;
        const char *path[3];
    } incl[] = {
        {0,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {5,
         {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    };
    for (size_t c = 0; c < 2; c++) {
        assert_int_equal(tdsx_merkle_inclusion_proof(ct, 8, incl[c].index, path, &len), 0);
        assert_int_equal(len, 3);
        for (size_t i = 0; i < 3; i++) {
            tdsx_hash_t want = from_hex(incl[c].path[i]);
            assert_memory_equal(path[i].b, want.b, TDSX_HASH_LEN);
        }
    }
    static const struct {
        size_t m, n, len;
        const char *proof[3];
    } cons[] = {
        {1,
         8,
         3,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {6,
         8,
         3,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2,
         5,
         2,
         {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", NULL}},
    };
    for (size_t c = 0; c < 3; c++) {
        assert_int_equal(tdsx_merkle_consistency_proof(ct, cons[c].n, cons[c].m, proof, &len), 0);
        assert_int_equal(len, cons[c].len);
        for (size_t i = 0; i < len; i++) {
            tdsx_hash_t want = from_hex(cons[c].proof[i]);
            assert_memory_equal(proof[i].b, want.b, TDSX_HASH_LEN);
        }
        tdsx_hash_t rm = from_hex(ct_roots[cons[c].m]), rn = from_hex(ct_roots[cons[c].n]);
        assert_int_equal(tdsx_merkle_consistency_verify(cons[c].m, cons[c].n, &rm, &rn, proof, len),
                         0);
    }
}

static void assert_paths_equal(const tdsx_hash_t *a, size_t alen, const tdsx_hash_t *b, size_t blen)
{
    assert_int_equal(alen, blen);
    for (size_t i = 0; i < alen; i++)
        assert_memory_equal(a[i].b, b[i].b, TDSX_HASH_LEN);
}

/* ------------------------------------------------------------------------------------------
 * Exhaustive comparison with the reference
 * ---------------------------------------------------------------------------------------- */
static void every_inclusion_proof_up_to_64(void **state)
{
    (void)state;
    for (size_t n = 1; n <= N_MAX; n++) {
        tdsx_hash_t root, want_root = ref_mth(leaves, n);
        assert_int_equal(tdsx_merkle_root(leaves, n, &root), 0);
        assert_memory_equal(root.b, want_root.b, TDSX_HASH_LEN);
        tdsx_merkle_tree_t *t;
        assert_int_equal(tdsx_merkle_tree_new(leaves, n, &t), 0);
        assert_memory_equal(tdsx_merkle_tree_root(t)->b, want_root.b, TDSX_HASH_LEN);
        for (size_t i = 0; i < n; i++) {
            tdsx_hash_t want[TDSX_MERKLE_PATH_MAX], got[TDSX_MERKLE_PATH_MAX];
            size_t want_len = 0, got_len = 99;
            ref_path(i, leaves, n, want, &want_len);
            assert_int_equal(tdsx_merkle_inclusion_proof(leaves, n, i, got, &got_len), 0);
            assert_paths_equal(got, got_len, want, want_len);
            got_len = 99;
            assert_int_equal(tdsx_merkle_tree_path(t, i, got, &got_len), 0);
            assert_paths_equal(got, got_len, want, want_len);
            assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaves[i], got, got_len, &root),
                             0);
            tdsx_hash_t reached;
            assert_int_equal(tdsx_merkle_inclusion_root(i, n, &leaves[i], got, got_len, &reached),
                             0);
            assert_memory_equal(reached.b, want_root.b, TDSX_HASH_LEN);
        }
        tdsx_merkle_tree_free(t);
    }
}

static void every_consistency_proof_up_to_64(void **state)
{
    (void)state;
    tdsx_hash_t roots[N_MAX + 1];
    for (size_t n = 0; n <= N_MAX; n++)
        roots[n] = ref_mth(leaves, n);
    for (size_t n = 1; n <= N_MAX; n++) {
        for (size_t m = 1; m <= n; m++) {
            tdsx_hash_t want[TDSX_MERKLE_CONSISTENCY_MAX], got[TDSX_MERKLE_CONSISTENCY_MAX];
            size_t want_len = 0, got_len = 99;
            ref_subproof(m, leaves, n, 1, want, &want_len);
            assert_int_equal(tdsx_merkle_consistency_proof(leaves, n, m, got, &got_len), 0);
            assert_paths_equal(got, got_len, want, want_len);
            assert_int_equal(
                tdsx_merkle_consistency_verify(m, n, &roots[m], &roots[n], got, got_len), 0);
        }
        /* The empty tree is consistent with everything, with an empty proof. */
        assert_int_equal(tdsx_merkle_consistency_verify(0, n, &roots[0], &roots[n], NULL, 0), 0);
    }
}

static void empty_tree_hashes_to_sha256_of_nothing(void **state)
{
    (void)state;
    tdsx_hash_t root, want;
    crypto_hash_sha256(want.b, NULL, 0);
    assert_int_equal(tdsx_merkle_root(NULL, 0, &root), 0);
    assert_memory_equal(root.b, want.b, TDSX_HASH_LEN);
    tdsx_merkle_tree_t *t;
    assert_int_equal(tdsx_merkle_tree_new(NULL, 0, &t), 0);
    assert_memory_equal(tdsx_merkle_tree_root(t)->b, want.b, TDSX_HASH_LEN);
    tdsx_hash_t path[TDSX_MERKLE_PATH_MAX];
    size_t len;
    /* ...and has no leaves to prove. */
    assert_int_equal(tdsx_merkle_tree_path(t, 0, path, &len), TDSX_E_INVAL);
    tdsx_merkle_tree_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Proofs that must be refused
 * ---------------------------------------------------------------------------------------- */
static void inclusion_rejects_any_tampering(void **state)
{
    (void)state;
    for (size_t n = 1; n <= N_MAX; n++) {
        tdsx_hash_t root = ref_mth(leaves, n);
        for (size_t i = 0; i < n; i++) {
            tdsx_hash_t path[TDSX_MERKLE_PATH_MAX + 1];
            size_t len;
            assert_int_equal(tdsx_merkle_inclusion_proof(leaves, n, i, path, &len), 0);
            /* Each path element, one bit flipped. */
            for (size_t e = 0; e < len; e++) {
                flip(&path[e], e + i);
                assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaves[i], path, len, &root),
                                 TDSX_E_MERKLE_PROOF);
                flip(&path[e], e + i);
            }
            /* Another leaf at this index, or this leaf at another index. */
            tdsx_hash_t leaf = leaves[i];
            flip(&leaf, i);
            assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaf, path, len, &root),
                             TDSX_E_MERKLE_PROOF);
            for (size_t j = 0; j < n; j++) {
                if (j != i)
                    assert_int_equal(
                        tdsx_merkle_inclusion_verify(j, n, &leaves[i], path, len, &root),
                        TDSX_E_MERKLE_PROOF);
            }
            /* One hash missing, one too many. */
            if (len > 0)
                assert_int_equal(
                    tdsx_merkle_inclusion_verify(i, n, &leaves[i], path, len - 1, &root),
                    TDSX_E_MERKLE_PROOF);
            path[len] = leaves[0];
            assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaves[i], path, len + 1, &root),
                             TDSX_E_MERKLE_PROOF);
            /* The head of another tree. */
            tdsx_hash_t other = root;
            flip(&other, n);
            assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaves[i], path, len, &other),
                             TDSX_E_MERKLE_PROOF);
        }
    }
}

static void inclusion_rejects_impossible_shapes(void **state)
{
    (void)state;
    tdsx_hash_t path[TDSX_MERKLE_PATH_MAX + 1], root;
    for (size_t i = 0; i <= TDSX_MERKLE_PATH_MAX; i++)
        path[i] = leaves[i % N_MAX];
    /* Index not below the size, and the empty tree. */
    assert_int_equal(tdsx_merkle_inclusion_root(5, 5, &leaves[0], path, 3, &root),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_inclusion_root(UINT64_MAX, 5, &leaves[0], path, 3, &root),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_inclusion_root(0, 0, &leaves[0], NULL, 0, &root),
                     TDSX_E_MERKLE_PROOF);
    /* A batch of one has an empty path; anything else is refused. */
    assert_int_equal(tdsx_merkle_inclusion_root(0, 1, &leaves[0], NULL, 0, &root), 0);
    assert_memory_equal(root.b, leaves[0].b, TDSX_HASH_LEN);
    assert_int_equal(tdsx_merkle_inclusion_root(0, 1, &leaves[0], path, 1, &root),
                     TDSX_E_MERKLE_PROOF);
    /* The largest tree: the first leaf needs exactly 64 hashes, and 65 is never valid. */
    assert_int_equal(tdsx_merkle_inclusion_root(0, UINT64_MAX, &leaves[0], path, 64, &root), 0);
    assert_int_equal(tdsx_merkle_inclusion_root(0, UINT64_MAX, &leaves[0], path, 63, &root),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_inclusion_root(0, UINT64_MAX, &leaves[0], path, 65, &root),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(
        tdsx_merkle_inclusion_root(UINT64_MAX - 1, UINT64_MAX, &leaves[0], path, 63, &root), 0);
    assert_int_equal(
        tdsx_merkle_inclusion_root(UINT64_MAX - 1, UINT64_MAX, &leaves[0], path, 64, &root),
        TDSX_E_MERKLE_PROOF);
    /* Missing arguments. */
    assert_int_equal(tdsx_merkle_inclusion_root(0, 2, NULL, path, 1, &root), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_inclusion_root(0, 2, &leaves[0], NULL, 1, &root),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_inclusion_verify(0, 2, &leaves[0], path, 1, NULL), TDSX_E_INVAL);
}

static void consistency_rejects_any_tampering(void **state)
{
    (void)state;
    tdsx_hash_t roots[N_MAX + 1];
    for (size_t n = 0; n <= N_MAX; n++)
        roots[n] = ref_mth(leaves, n);
    for (size_t n = 2; n <= N_MAX; n++) {
        for (size_t m = 1; m < n; m++) {
            tdsx_hash_t p[TDSX_MERKLE_CONSISTENCY_MAX + 1];
            size_t len;
            assert_int_equal(tdsx_merkle_consistency_proof(leaves, n, m, p, &len), 0);
            for (size_t e = 0; e < len; e++) {
                flip(&p[e], e + m);
                assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[m], &roots[n], p, len),
                                 TDSX_E_MERKLE_PROOF);
                flip(&p[e], e + m);
            }
            assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[m], &roots[n], p, len - 1),
                             TDSX_E_MERKLE_PROOF);
            p[len] = leaves[0];
            assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[m], &roots[n], p, len + 1),
                             TDSX_E_MERKLE_PROOF);
            /* Heads swapped, or of neighbouring sizes. */
            assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[n], &roots[m], p, len),
                             TDSX_E_MERKLE_PROOF);
            assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[m - 1], &roots[n], p, len),
                             TDSX_E_MERKLE_PROOF);
            assert_int_equal(tdsx_merkle_consistency_verify(m, n, &roots[m], &roots[n - 1], p, len),
                             TDSX_E_MERKLE_PROOF);
            /* The same proof claimed for other sizes. */
            if (m + 1 < n)
                assert_int_equal(
                    tdsx_merkle_consistency_verify(m + 1, n, &roots[m + 1], &roots[n], p, len),
                    TDSX_E_MERKLE_PROOF);
            if (n < N_MAX)
                assert_int_equal(
                    tdsx_merkle_consistency_verify(m, n + 1, &roots[m], &roots[n + 1], p, len),
                    TDSX_E_MERKLE_PROOF);
        }
    }
}

static void consistency_with_a_rewritten_history_fails(void **state)
{
    (void)state;
    /* The old tree had a different leaf 2: no proof from the new tree can connect them. */
    tdsx_hash_t forged[N_MAX];
    memcpy(forged, leaves, sizeof forged);
    flip(&forged[2], 0);
    for (size_t m = 3; m < 20; m++) {
        tdsx_hash_t old_root = ref_mth(forged, m), new_root = ref_mth(leaves, 20);
        tdsx_hash_t p[TDSX_MERKLE_CONSISTENCY_MAX];
        size_t len;
        assert_int_equal(tdsx_merkle_consistency_proof(leaves, 20, m, p, &len), 0);
        assert_int_equal(tdsx_merkle_consistency_verify(m, 20, &old_root, &new_root, p, len),
                         TDSX_E_MERKLE_PROOF);
        assert_int_equal(tdsx_merkle_consistency_proof(forged, 20, m, p, &len), 0);
        assert_int_equal(tdsx_merkle_consistency_verify(m, 20, &old_root, &new_root, p, len),
                         TDSX_E_MERKLE_PROOF);
    }
}

static void consistency_edge_sizes(void **state)
{
    (void)state;
    tdsx_hash_t r5 = ref_mth(leaves, 5), r7 = ref_mth(leaves, 7), r0 = ref_mth(leaves, 0);
    tdsx_hash_t p[TDSX_MERKLE_CONSISTENCY_MAX + 1];
    for (size_t i = 0; i <= TDSX_MERKLE_CONSISTENCY_MAX; i++)
        p[i] = leaves[i % N_MAX];
    /* Shrinking is never consistent. */
    assert_int_equal(tdsx_merkle_consistency_verify(7, 5, &r7, &r5, NULL, 0), TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_consistency_verify(7, 5, &r7, &r5, p, 2), TDSX_E_MERKLE_PROOF);
    /* Same size: equal heads and nothing else. */
    assert_int_equal(tdsx_merkle_consistency_verify(5, 5, &r5, &r5, NULL, 0), 0);
    assert_int_equal(tdsx_merkle_consistency_verify(5, 5, &r5, &r7, NULL, 0), TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_consistency_verify(5, 5, &r5, &r5, p, 1), TDSX_E_MERKLE_PROOF);
    /* From empty: empty proof, empty head. */
    assert_int_equal(tdsx_merkle_consistency_verify(0, 5, &r0, &r5, p, 1), TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_consistency_verify(0, 5, &r7, &r5, NULL, 0), TDSX_E_MERKLE_PROOF);
    /* A real growth needs a proof. */
    assert_int_equal(tdsx_merkle_consistency_verify(5, 7, &r5, &r7, NULL, 0), TDSX_E_MERKLE_PROOF);
    /* Longer than any tree allows. */
    assert_int_equal(
        tdsx_merkle_consistency_verify(5, 7, &r5, &r7, p, TDSX_MERKLE_CONSISTENCY_MAX + 1),
        TDSX_E_MERKLE_PROOF);
    /* Enormous sizes are walked without overflow and refused. */
    assert_int_equal(tdsx_merkle_consistency_verify(UINT64_MAX - 1, UINT64_MAX, &r5, &r7, p,
                                                    TDSX_MERKLE_CONSISTENCY_MAX),
                     TDSX_E_MERKLE_PROOF);
    assert_int_equal(tdsx_merkle_consistency_verify(3, 5, NULL, &r5, p, 1), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_consistency_verify(3, 5, &r5, &r5, NULL, 1), TDSX_E_INVAL);
}

static void generators_refuse_bad_arguments(void **state)
{
    (void)state;
    tdsx_hash_t p[TDSX_MERKLE_CONSISTENCY_MAX], root;
    size_t len = 77;
    assert_int_equal(tdsx_merkle_inclusion_proof(leaves, 5, 5, p, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_inclusion_proof(leaves, 0, 0, p, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_inclusion_proof(NULL, 5, 0, p, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 0, p, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 6, p, &len), TDSX_E_INVAL);
    assert_int_equal(len, 77);
    assert_int_equal(tdsx_merkle_root(NULL, 3, &root), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_leaf_hash(NULL, 3, &root), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_node_hash(&leaves[0], NULL, &root), TDSX_E_INVAL);
    tdsx_merkle_tree_t *t = (tdsx_merkle_tree_t *)&root;
    assert_int_equal(tdsx_merkle_tree_new(NULL, 3, &t), TDSX_E_INVAL);
    assert_int_equal(tdsx_merkle_tree_new(leaves, 4, &t), 0);
    assert_int_equal(tdsx_merkle_tree_path(t, 4, p, &len), TDSX_E_INVAL);
    assert_int_equal(len, 77);
    tdsx_merkle_tree_free(t);
    tdsx_merkle_tree_free(NULL);
}

static void tree_allocation_failure_is_reported(void **state)
{
    (void)state;
    tdsx_merkle_tree_t *t = (tdsx_merkle_tree_t *)&t;
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_merkle_tree_new(leaves, 10, &t), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_null(t);
    /* Nothing else allocates through the hook: proofs work while allocation fails. */
    tdsx_hash_t p[TDSX_MERKLE_PATH_MAX], root;
    size_t len;
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_merkle_inclusion_proof(leaves, 10, 3, p, &len), 0);
    assert_int_equal(tdsx_merkle_root(leaves, 10, &root), 0);
    tdsx_test_alloc_reset();
    assert_int_equal(tdsx_merkle_inclusion_verify(3, 10, &leaves[3], p, len, &root), 0);
}

static void node_and_leaf_are_domain_separated(void **state)
{
    (void)state;
    /* A leaf whose data is "left || right" must not hash like the node over left and right:
     * the 0x00/0x01 prefixes are what stop a second-preimage of an interior node. */
    uint8_t both[2 * TDSX_HASH_LEN];
    memcpy(both, leaves[0].b, TDSX_HASH_LEN);
    memcpy(both + TDSX_HASH_LEN, leaves[1].b, TDSX_HASH_LEN);
    tdsx_hash_t as_leaf, as_node;
    assert_int_equal(tdsx_merkle_leaf_hash(both, sizeof both, &as_leaf), 0);
    assert_int_equal(tdsx_merkle_node_hash(&leaves[0], &leaves[1], &as_node), 0);
    assert_memory_not_equal(as_leaf.b, as_node.b, TDSX_HASH_LEN);
    tdsx_hash_t want = ref_node(leaves[0], leaves[1]);
    assert_memory_equal(as_node.b, want.b, TDSX_HASH_LEN);
    want = ref_leaf(both, sizeof both);
    assert_memory_equal(as_leaf.b, want.b, TDSX_HASH_LEN);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ct_known_roots_for_sizes_0_to_8),
        cmocka_unit_test(ct_known_proofs),
        cmocka_unit_test(every_inclusion_proof_up_to_64),
        cmocka_unit_test(every_consistency_proof_up_to_64),
        cmocka_unit_test(empty_tree_hashes_to_sha256_of_nothing),
        cmocka_unit_test(node_and_leaf_are_domain_separated),
        cmocka_unit_test(inclusion_rejects_any_tampering),
        cmocka_unit_test(inclusion_rejects_impossible_shapes),
        cmocka_unit_test(consistency_rejects_any_tampering),
        cmocka_unit_test(consistency_with_a_rewritten_history_fails),
        cmocka_unit_test(consistency_edge_sizes),
        cmocka_unit_test(generators_refuse_bad_arguments),
        cmocka_unit_test(tree_allocation_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, setup_leaves, NULL);
}
