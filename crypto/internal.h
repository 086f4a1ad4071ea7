/*
 * internal.h — crypto/ internals shared between its .c files. Not installed, not for other
 * modules.
 */
#ifndef TDSX_CRYPTO_INTERNAL_H
#define TDSX_CRYPTO_INTERNAL_H

#include "crypto.h"

/* Merkle hashing with a caller's context, so loops reuse one EVP_MD_CTX. */
TDSX_MUST_CHECK int tdsx__merkle_leaf(tdsx_sha256_t *h, const void *p, size_t n, tdsx_hash_t *out);
TDSX_MUST_CHECK int tdsx__merkle_node(tdsx_sha256_t *h, const tdsx_hash_t *left,
                                      const tdsx_hash_t *right, tdsx_hash_t *out);
TDSX_MUST_CHECK int tdsx__merkle_inclusion_root(tdsx_sha256_t *h, uint64_t index, uint64_t size,
                                                const tdsx_hash_t *leaf, const tdsx_hash_t *path,
                                                size_t path_len, tdsx_hash_t *root);

#endif
