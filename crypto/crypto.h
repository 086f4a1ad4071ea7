/*
 * crypto.h — hashing, Merkle trees and signed statements for TDSX (SPEC §10, §11).
 *
 *  - SHA-256 on OpenSSL EVP, streaming and one-shot.
 *  - RFC 9162 §2.1 Merkle trees: tree hash, inclusion and consistency proofs (generation over an
 *    array of leaf hashes, verification of proofs from anywhere).
 *  - Signed envelopes: DSSE pre-authentication encoding, batch signing (every signature signs the
 *    Merkle root of a batch; each envelope carries its inclusion path), a verifier with a keyring
 *    and a cache of verified roots, and typed statements that can only be decoded after their
 *    signature verified.
 *
 * Nothing here does I/O, starts threads or knows libuv: the signer is a queue the caller flushes.
 * Every function returning int returns 0 on success or a negative TDSX_E_* code; a function that
 * takes a callback and returns an error never calls that callback. Unless a comment says
 * otherwise, pointer arguments must not be NULL (violations are TDSX_E_INVAL, not crashes).
 */
#ifndef TDSX_CRYPTO_H
#define TDSX_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* ------------------------------------------------------------------------------------------
 * SHA-256
 * ---------------------------------------------------------------------------------------- */
#define TDSX_HASH_LEN 32

/* A SHA-256 value. A struct so arrays of hashes (Merkle leaves, paths) are plain arrays. */
typedef struct tdsx_hash_s {
    uint8_t b[TDSX_HASH_LEN];
} tdsx_hash_t;

struct evp_md_ctx_st;

/* A streaming SHA-256 context wrapping an OpenSSL EVP_MD_CTX. Caller-allocated; the fields are
 * private. Lifecycle: tdsx_sha256_init, any number of updates, tdsx_sha256_final; after final
 * the same context hashes a new message (update/final again) until tdsx_sha256_free. */
typedef struct tdsx_sha256_s {
    struct evp_md_ctx_st *ctx;
    int started;
} tdsx_sha256_t;

/* Allocates the EVP context. TDSX_E_NOMEM, or TDSX_E_INTERNAL when OpenSSL has no SHA-256. On
 * failure nothing needs freeing (tdsx_sha256_free is still safe). */
TDSX_MUST_CHECK int tdsx_sha256_init(tdsx_sha256_t *h);
/* Hashes n bytes (p may be NULL when n == 0). */
TDSX_MUST_CHECK int tdsx_sha256_update(tdsx_sha256_t *h, const void *p, size_t n);
/* Writes the 32-byte digest and readies the context for a new message. */
TDSX_MUST_CHECK int tdsx_sha256_final(tdsx_sha256_t *h, uint8_t out[TDSX_HASH_LEN]);
/* Releases the context; safe on a context whose init failed and when called twice. */
void tdsx_sha256_free(tdsx_sha256_t *h);
/* One-shot digest of n bytes (p may be NULL when n == 0). */
TDSX_MUST_CHECK int tdsx_sha256(const void *p, size_t n, uint8_t out[TDSX_HASH_LEN]);

/* ------------------------------------------------------------------------------------------
 * RFC 9162 Merkle trees (§2.1)
 *
 * leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right), the hash of
 * the empty tree is SHA-256 of the empty string. Proof arrays list hashes in RFC order (from
 * the leaf up). Sizes and indexes are uint64 as on the wire; verifiers refuse anything they
 * cannot reproduce with TDSX_E_MERKLE_PROOF, whatever the numbers.
 * ---------------------------------------------------------------------------------------- */
/* Longest inclusion path of any tree with fewer than 2^64 leaves. */
#define TDSX_MERKLE_PATH_MAX 64
/* Longest consistency proof of any such tree (one more than a path: the old root's own node). */
#define TDSX_MERKLE_CONSISTENCY_MAX 65

TDSX_MUST_CHECK int tdsx_merkle_leaf_hash(const void *data, size_t n, tdsx_hash_t *out);
/* out may alias left or right. */
TDSX_MUST_CHECK int tdsx_merkle_node_hash(const tdsx_hash_t *left, const tdsx_hash_t *right,
                                          tdsx_hash_t *out);

/* MTH over n leaf hashes (§2.1.1); n == 0 gives the empty-tree hash (leaves may then be NULL).
 * Needs no allocation beyond the hashing context. */
TDSX_MUST_CHECK int tdsx_merkle_root(const tdsx_hash_t *leaves, size_t n, tdsx_hash_t *root);

/* The inclusion path of leaf `index` in the tree of the n leaves (§2.1.3.1): *path_len hashes
 * written to path. TDSX_E_INVAL when index >= n. O(n) hashing: to hand every leaf of a tree its
 * path, build a tdsx_merkle_tree_t instead. */
TDSX_MUST_CHECK int tdsx_merkle_inclusion_proof(const tdsx_hash_t *leaves, size_t n, size_t index,
                                                tdsx_hash_t path[TDSX_MERKLE_PATH_MAX],
                                                size_t *path_len);

/* The root that leaf hash `leaf` at `index` of a tree of `size` leaves reaches through `path`
 * (the §2.1.3.2 algorithm without its final comparison). TDSX_E_MERKLE_PROOF when index >= size
 * or the path length does not fit the tree. path may be NULL when path_len == 0. Use it when the
 * root is not known yet (a signature over it is checked next). */
TDSX_MUST_CHECK int tdsx_merkle_inclusion_root(uint64_t index, uint64_t size,
                                               const tdsx_hash_t *leaf, const tdsx_hash_t *path,
                                               size_t path_len, tdsx_hash_t *root);
/* §2.1.3.2: 0 when the path proves `leaf` at `index` in the tree of `size` leaves with head
 * `root`, else TDSX_E_MERKLE_PROOF. */
TDSX_MUST_CHECK int tdsx_merkle_inclusion_verify(uint64_t index, uint64_t size,
                                                 const tdsx_hash_t *leaf, const tdsx_hash_t *path,
                                                 size_t path_len, const tdsx_hash_t *root);

/* The consistency proof between the first m leaves and all n (§2.1.4.1), 0 < m <= n (the proof
 * is empty when m == n); TDSX_E_INVAL otherwise. O(n) hashing. */
TDSX_MUST_CHECK int tdsx_merkle_consistency_proof(const tdsx_hash_t *leaves, size_t n, size_t m,
                                                  tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX],
                                                  size_t *proof_len);
/* §2.1.4.2: 0 when `proof` shows the tree of m leaves with head root_m is a prefix of the tree of
 * n leaves with head root_n, else TDSX_E_MERKLE_PROOF. Edge cases: m > n fails; m == n needs
 * an empty proof and equal heads; m == 0 needs an empty proof and root_m equal to the
 * empty-tree hash. proof may be NULL when proof_len == 0. */
TDSX_MUST_CHECK int tdsx_merkle_consistency_verify(uint64_t m, uint64_t n,
                                                   const tdsx_hash_t *root_m,
                                                   const tdsx_hash_t *root_n,
                                                   const tdsx_hash_t *proof, size_t proof_len);

/* A whole tree kept in memory (about 2n hashes), to hand every leaf its path in O(log n). */
typedef struct tdsx_merkle_tree_s tdsx_merkle_tree_t;

/* Builds the tree over a copy of the n leaf hashes (the caller keeps its array). n == 0 is
 * allowed (root = empty hash, no paths). TDSX_E_NOMEM, TDSX_E_TOOBIG. */
TDSX_MUST_CHECK int tdsx_merkle_tree_new(const tdsx_hash_t *leaves, size_t n,
                                         tdsx_merkle_tree_t **out);
size_t tdsx_merkle_tree_size(const tdsx_merkle_tree_t *t);
/* Valid until tdsx_merkle_tree_free. */
const tdsx_hash_t *tdsx_merkle_tree_root(const tdsx_merkle_tree_t *t);
/* Same result as tdsx_merkle_inclusion_proof. TDSX_E_INVAL when index >= size. */
TDSX_MUST_CHECK int tdsx_merkle_tree_path(const tdsx_merkle_tree_t *t, size_t index,
                                          tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *path_len);
/* NULL is a no-op. */
void tdsx_merkle_tree_free(tdsx_merkle_tree_t *t);

#endif
