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

/* Room for "DSSEv1 <len> <type> <len> " with the longest type and 20-digit lengths. */
#define TDSX__PAE_HEAD_MAX (TDSX_PAYLOAD_TYPE_MAX + 64)
/* Room for the whole batch root statement. */
#define TDSX__ROOT_STATEMENT_MAX 128

/* The Merkle leaf of a statement: SHA-256(0x00 || PAE(type, payload)). type need not be
 * NUL-terminated. */
TDSX_MUST_CHECK int tdsx__statement_leaf(tdsx_sha256_t *h, const char *type, size_t type_len,
                                         tdsx_bytes_t payload, tdsx_hash_t *out);
/* PAE(TDSX_BATCH_ROOT_TYPE, be64(tree_size) || root): the bytes a batch signature covers. */
TDSX_MUST_CHECK int tdsx__root_statement(uint64_t tree_size, const tdsx_hash_t *root,
                                         uint8_t out[TDSX__ROOT_STATEMENT_MAX], size_t *len);

/* Queues a protobuf message packed straight into the queued statement (one serialisation, no
 * intermediate copy). Same contract as tdsx_signer_submit. */
TDSX_MUST_CHECK int tdsx__signer_submit_message(tdsx_signer_t *s, const char *payload_type,
                                                const ProtobufCMessage *msg, tdsx_signer_cb cb,
                                                void *userdata);

#endif
