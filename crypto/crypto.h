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
 * otherwise, pointer arguments must not be NULL: functions returning an error code refuse NULL
 * with TDSX_E_INVAL, accessors (returning void, a size or a pointer) simply require valid
 * objects.
 */
#ifndef TDSX_CRYPTO_H
#define TDSX_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "proto.h"

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

/* ------------------------------------------------------------------------------------------
 * Signed envelopes (SPEC §10)
 *
 * An envelope (proto/envelope.proto) carries payload_type, the payload bytes exactly as the
 * signer serialised them, and signatures. Every signature is a batch signature: the signer
 * builds an RFC 9162 tree whose leaves are PAE(payload_type, payload) of the statements in the
 * batch, and signs once, with Ed25519, the root statement
 *
 *     PAE("application/vnd.tdsx.batch-root.v1", be64(tree_size) || root)
 *
 * Each envelope carries key_id = SHA-256(raw Ed25519 public key), that signature, its leaf
 * index, tree_size and inclusion path. A batch of one has tree_size 1, index 0, empty path.
 * ---------------------------------------------------------------------------------------- */
#define TDSX_ED25519_SEED_LEN 32
#define TDSX_ED25519_PK_LEN 32
#define TDSX_ED25519_SIG_LEN 64

/* Type string of the root statement a batch signature covers. */
#define TDSX_BATCH_ROOT_TYPE "application/vnd.tdsx.batch-root.v1"
/* Longest payload_type accepted, signing or verifying. */
#define TDSX_PAYLOAD_TYPE_MAX 128
/* Largest payload a statement may have (a trust bundle with its CRLs is the big one). */
#define TDSX_STATEMENT_MAX (4u * 1024u * 1024u)
/* Most signatures one envelope may carry; verifiers refuse more. */
#define TDSX_ENVELOPE_SIGS_MAX 8
/* Largest serialised envelope: a maximal payload plus room for every signature's fields. */
#define TDSX_ENVELOPE_MAX (TDSX_STATEMENT_MAX + 64u * 1024u)
/* An arena budget that always fits a maximal envelope and the statement decoded from it (the
 * payload is copied once by each decode, plus protobuf-c's structures). */
#define TDSX_ENVELOPE_ARENA_BUDGET (4u * TDSX_ENVELOPE_MAX)

/* Appends DSSE's pre-authentication encoding to `out`:
 *     "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 * LEN is the ASCII decimal byte length. type is NUL-terminated, at most TDSX_PAYLOAD_TYPE_MAX
 * bytes (else TDSX_E_INVAL); body.p may be NULL when body.n is 0. On any error (also
 * TDSX_E_TOOBIG from out's cap, TDSX_E_NOMEM) out is unchanged. */
TDSX_MUST_CHECK int tdsx_pae(tdsx_buf_t *out, const char *type, tdsx_bytes_t body);

/* key_id of a raw Ed25519 public key: SHA-256 of its 32 bytes. */
TDSX_MUST_CHECK int tdsx_key_id(const uint8_t pk[TDSX_ED25519_PK_LEN], tdsx_hash_t *out);

/* SHA-256 of a whole serialised envelope, as referenced by other statements (Nrr.nro_hash,
 * AgreementTermination.agreement_hash, ...). Hash the bytes as received: never re-serialise. */
TDSX_MUST_CHECK int tdsx_envelope_hash(tdsx_bytes_t envelope, tdsx_hash_t *out);

/* ------------------------------------------------------------------------------------------
 * Signer: a queue of statements, signed in batches when the caller flushes.
 *
 * submit() copies the statement and returns at once; flush() signs everything that was waiting
 * when it was called, in batches of at most max_batch statements (one Ed25519 signature per
 * batch), and calls each statement's callback exactly once with its serialised Envelope.
 * There are no threads and no timers: the gateway decides when to flush (after each turn of its
 * event loop, say), so a quiet signer produces batches of one and a busy one amortises Ed25519
 * over hundreds of statements.
 *
 * The Ed25519 secret key lives in sodium_malloc memory, inaccessible except while signing, and
 * is wiped when the signer is freed. A signer is not thread-safe.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_signer_s tdsx_signer_t;

/*
 * Called once per submitted statement. status 0: `envelope` holds the serialised Envelope;
 * the bytes are the signer's and valid only during the call (copy them to keep them).
 * status < 0: the statement was not signed (TDSX_E_NOMEM, TDSX_E_INTERNAL from a failed
 * batch, TDSX_E_CANCELED when the signer was freed first); envelope is empty.
 * The callback may call tdsx_signer_submit (the new statement waits for the next flush) but
 * not tdsx_signer_flush (TDSX_E_STATE) nor tdsx_signer_free.
 */
typedef void (*tdsx_signer_cb)(void *userdata, int status, tdsx_bytes_t envelope);

#define TDSX_SIGNER_BATCH_DEFAULT 256
#define TDSX_SIGNER_QUEUE_DEFAULT 4096

typedef struct tdsx_signer_opts_s {
    size_t max_batch; /* statements per signature, 1.. (0 = TDSX_SIGNER_BATCH_DEFAULT) */
    size_t max_queue; /* statements waiting at most (0 = TDSX_SIGNER_QUEUE_DEFAULT) */
} tdsx_signer_opts_t;

/* Makes a signer from a 32-byte Ed25519 seed (the raw private key; the caller should wipe its
 * copy). opts may be NULL for the defaults. TDSX_E_NOMEM, TDSX_E_INTERNAL (libsodium). */
TDSX_MUST_CHECK int tdsx_signer_new(const uint8_t seed[TDSX_ED25519_SEED_LEN],
                                    const tdsx_signer_opts_t *opts, tdsx_signer_t **out);
/* Calls the callback of every statement still waiting with TDSX_E_CANCELED, then wipes and
 * frees the key and the signer. NULL is a no-op. Not from inside a callback. */
void tdsx_signer_free(tdsx_signer_t *s);

void tdsx_signer_public_key(const tdsx_signer_t *s, uint8_t pk[TDSX_ED25519_PK_LEN]);
/* SHA-256 of the public key; valid as long as the signer. */
const tdsx_hash_t *tdsx_signer_key_id(const tdsx_signer_t *s);

/*
 * Queues payload (copied) under payload_type for the next flush; cb (not NULL) fires from that
 * flush. payload_type: 1..TDSX_PAYLOAD_TYPE_MAX printable ASCII characters. Errors (the
 * callback is then never called): TDSX_E_INVAL (arguments), TDSX_E_TOOBIG (payload over
 * TDSX_STATEMENT_MAX), TDSX_E_AGAIN (max_queue statements already waiting: flush first),
 * TDSX_E_STATE (the signer is being freed), TDSX_E_NOMEM.
 */
TDSX_MUST_CHECK int tdsx_signer_submit(tdsx_signer_t *s, const char *payload_type,
                                       tdsx_bytes_t payload, tdsx_signer_cb cb, void *userdata);

/* Statements waiting for a flush. */
size_t tdsx_signer_pending(const tdsx_signer_t *s);

/*
 * Signs every statement that was waiting when called, in batches of at most max_batch, and
 * calls their callbacks in submission order. Returns 0 once it has done so, whatever the
 * individual statuses (a batch that could not be signed reports its error through each of its
 * callbacks); TDSX_E_STATE when called from inside a callback (nothing is done). Flushing an
 * empty queue does nothing and returns 0.
 */
TDSX_MUST_CHECK int tdsx_signer_flush(tdsx_signer_t *s);

/* ------------------------------------------------------------------------------------------
 * Verifier: a keyring and a cache of verified batch roots.
 *
 * The cache holds (key_id, tree_size, root, signature) of batches whose Ed25519 signature
 * verified, at most cache_size of them, replacing the oldest. A later envelope from the same
 * batch still has its payload hashed and its inclusion path walked to the root; only the
 * Ed25519 verification is skipped, and only when that recomputed root and the signature bytes
 * match an entry exactly. A verifier is not thread-safe (the cache changes on every miss).
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_verifier_s tdsx_verifier_t;

#define TDSX_VERIFIER_CACHE_DEFAULT 1024
/* Most keys one keyring holds. */
#define TDSX_VERIFIER_KEYS_MAX 65536

/* cache_size 0 means TDSX_VERIFIER_CACHE_DEFAULT. TDSX_E_NOMEM, TDSX_E_INTERNAL. */
TDSX_MUST_CHECK int tdsx_verifier_new(size_t cache_size, tdsx_verifier_t **out);
/* NULL is a no-op. */
void tdsx_verifier_free(tdsx_verifier_t *v);

/* Trusts a raw Ed25519 public key (copied) from now on. Adding a key already present does
 * nothing and returns 0. TDSX_E_KEY (not a usable Ed25519 point), TDSX_E_TOOBIG (keyring
 * full), TDSX_E_NOMEM. There is no removal: build a new verifier when the keys change (a new
 * trust bundle), which also empties the cache. */
TDSX_MUST_CHECK int tdsx_verifier_add_key(tdsx_verifier_t *v,
                                          const uint8_t pk[TDSX_ED25519_PK_LEN]);
size_t tdsx_verifier_key_count(const tdsx_verifier_t *v);

typedef struct tdsx_verifier_stats_s {
    uint64_t verified;   /* envelopes accepted */
    uint64_t cache_hits; /* ...of which without an Ed25519 verification */
    uint64_t rejected;   /* envelopes refused, for any reason */
} tdsx_verifier_stats_t;

void tdsx_verifier_stats(const tdsx_verifier_t *v, tdsx_verifier_stats_t *out);

/* What a successful verification established. */
typedef struct tdsx_verified_s {
    tdsx_bytes_t payload; /* the signed payload bytes exactly; they live in the arena */
    tdsx_hash_t key_id;   /* the signer */
    uint8_t sig[TDSX_ED25519_SIG_LEN]; /* the batch signature that covers it */
    uint64_t index;                    /* leaf index in the batch */
    uint64_t tree_size;                /* batch size */
    tdsx_hash_t root;                  /* batch root */
    int cached;                        /* 1 when the root came from the cache */
} tdsx_verified_t;

/*
 * Verifies a serialised envelope (untrusted bytes, not kept) and fills *out. The envelope is
 * decoded into `arena` (its budget bounds the work; TDSX_ENVELOPE_ARENA_BUDGET always
 * suffices), so out->payload stays valid until the arena is reset or freed.
 *
 * Checks, in order: the envelope decodes (else TDSX_E_ENVELOPE; TDSX_E_ARENA_BUDGET,
 * TDSX_E_NOMEM, TDSX_E_TOOBIG over TDSX_ENVELOPE_MAX); payload_type equals expected_type
 * exactly (TDSX_E_SIG_TYPE); it carries 1..TDSX_ENVELOPE_SIGS_MAX signatures (TDSX_E_ENVELOPE)
 * of which at least one names a key in the keyring (TDSX_E_SIGNER_UNKNOWN); for such a
 * signature, index < tree_size and the path (32-byte hashes, the length the tree needs) leads
 * from the leaf to a root (TDSX_E_MERKLE_PROOF), and the Ed25519 signature over the root
 * statement verifies or the root is in the cache (TDSX_E_SIG_INVALID). The first signature by
 * a known key that passes wins; when none does, the error of the last one tried is returned.
 * *out is written only on success.
 */
TDSX_MUST_CHECK int tdsx_envelope_verify(tdsx_verifier_t *v, const char *expected_type,
                                         tdsx_bytes_t envelope, tdsx_arena_t *arena,
                                         tdsx_verified_t *out);

/* ------------------------------------------------------------------------------------------
 * Typed statements
 *
 * Each kind has one payload type string and one protobuf message type. Decoding a statement
 * is only possible through tdsx_statement_open, which verifies the envelope first
 * (verify-before-decode, SPEC §5 and §10).
 * ---------------------------------------------------------------------------------------- */
typedef enum {
    TDSX_STATEMENT_NRO = 0,               /* Tdsx__Nro */
    TDSX_STATEMENT_NRR,                   /* Tdsx__Nrr */
    TDSX_STATEMENT_NRD,                   /* Tdsx__Nrd */
    TDSX_STATEMENT_AGREEMENT_TERMS,       /* Tdsx__AgreementTerms */
    TDSX_STATEMENT_AGREEMENT_TERMINATION, /* Tdsx__AgreementTermination */
    TDSX_STATEMENT_TRUST_BUNDLE,          /* Tdsx__TrustBundle */
    TDSX_STATEMENT_KIND_COUNT
} tdsx_statement_kind_t;

/* "application/vnd.tdsx.<kind>.v1+protobuf", or NULL for a value outside the enum. */
const char *tdsx_statement_type(tdsx_statement_kind_t kind);
/* The protobuf-c descriptor of the kind's message, or NULL outside the enum. */
const ProtobufCMessageDescriptor *tdsx_statement_descriptor(tdsx_statement_kind_t kind);

/*
 * Serialises msg once (protobuf_c_message_pack) and queues the bytes like tdsx_signer_submit,
 * under the kind's type string. msg must be of the kind's message type (TDSX_E_INVAL
 * otherwise); it is not kept. Other errors as tdsx_signer_submit; on any error cb is never
 * called.
 */
TDSX_MUST_CHECK int tdsx_statement_submit(tdsx_signer_t *s, tdsx_statement_kind_t kind,
                                          const ProtobufCMessage *msg, tdsx_signer_cb cb,
                                          void *userdata);

/*
 * Verifies `envelope` as a statement of `kind` (tdsx_envelope_verify with the kind's type
 * string) and only then decodes its payload into `arena`: *msg (cast it to the kind's type)
 * and, when info is not NULL, *info are set only on success, and live until the arena is reset
 * or freed. Errors: those of tdsx_envelope_verify; TDSX_E_INVAL for a kind outside the enum;
 * TDSX_E_PROTO_DECODE when a correctly signed payload does not decode as the kind's message;
 * TDSX_E_ARENA_BUDGET, TDSX_E_NOMEM.
 */
TDSX_MUST_CHECK int tdsx_statement_open(tdsx_verifier_t *v, tdsx_statement_kind_t kind,
                                        tdsx_bytes_t envelope, tdsx_arena_t *arena,
                                        ProtobufCMessage **msg, tdsx_verified_t *info);

/* ------------------------------------------------------------------------------------------
 * Sealed payload streams (SPEC §9, sealed transfers)
 *
 * The sender encrypts a payload for its FINAL recipient so that a relaying node forwards bytes
 * it cannot read. A fresh 32-byte stream key per payload drives libsodium's
 * crypto_secretstream_xchacha20poly1305; the key travels wrapped with crypto_box_seal to the
 * recipient's X25519 `enc` public key (the raw keys of certs/: tdsx_key_load_x25519_pub and
 * tdsx_key_load_x25519 are directly crypto_box public and secret keys).
 *
 * Format, version 1 (all integers big-endian):
 *
 *     header   magic "TDSXSEAL" (8) | version 0x01 (1)
 *              | crypto_box_seal(stream key) (32 + 48 = 80)
 *              | secretstream header (24)                          TDSX_SEAL_HEADER_LEN = 113
 *     records  u32 length L | L bytes of one secretstream message  (L = plaintext + 17)
 *
 *  - Data records carry the plaintext in order, tag TAG_MESSAGE, in chunks of exactly
 *    TDSX_SEAL_CHUNK bytes except the last data record, which holds 1..TDSX_SEAL_CHUNK bytes.
 *    Chunking depends only on the plaintext length, never on how the caller sliced its updates,
 *    so the ciphertext length is a function of the plaintext length (tdsx_seal_ciphertext_len).
 *    An empty payload has no data record.
 *  - The stream ends with exactly one record tagged TAG_FINAL whose plaintext is the trailer
 *    be64(plaintext length) | SHA-256(plaintext) (TDSX_SEAL_TRAILER_LEN = 40). Nothing follows.
 *  - Every record is authenticated with the associated data
 *        "TDSXSEAL" | 0x01 | transfer id (16) | recipient X25519 public key (32)   (57 bytes)
 *    so a sealed stream opens only inside the transfer it was made for and only for the key it
 *    was sealed to.
 *
 * Secretstream chains every message to the previous ones, so a dropped, duplicated, reordered
 * or altered record fails authentication; a stream cut anywhere lacks its FINAL record; bytes
 * after FINAL are refused; the trailer, inside the authenticated stream, proves the length and
 * SHA-256 of the plaintext to the recipient. The NRO (SPEC §10) covers the SHA-256 and length of
 * the ciphertext, which anyone forwarding it can check; plaintext_sha256 in the NRO is what the
 * sealer reports after tdsx_sealer_final.
 *
 * Memory is bounded on both sides: a sealer holds at most one chunk of plaintext, an opener at
 * most one record (TDSX_SEAL_RECORD_MAX bytes). Stream keys and the recipient secret live in
 * sodium_malloc memory and are wiped when no longer needed or when the object is freed.
 * Sealers and openers are not thread-safe; distinct objects are independent.
 * ---------------------------------------------------------------------------------------- */
#define TDSX_X25519_KEY_LEN 32
#define TDSX_SEAL_TRANSFER_ID_LEN 16
#define TDSX_SEAL_VERSION 1
/* Plaintext bytes per data record (the cap every data record but the last one fills). */
#define TDSX_SEAL_CHUNK (64u * 1024u)
#define TDSX_SEAL_HEADER_LEN 113u
/* Length prefix plus secretstream's own expansion (1 tag byte + 16 MAC bytes). */
#define TDSX_SEAL_RECORD_OVERHEAD 21u
#define TDSX_SEAL_TRAILER_LEN 40u
/* The largest record, prefix included: what an opener may have to buffer. */
#define TDSX_SEAL_RECORD_MAX (TDSX_SEAL_RECORD_OVERHEAD + TDSX_SEAL_CHUNK)
/* The FINAL record, prefix included. */
#define TDSX_SEAL_FINAL_RECORD_LEN (TDSX_SEAL_RECORD_OVERHEAD + TDSX_SEAL_TRAILER_LEN)
/* The most tdsx_sealer_final appends (a last partial data record and the FINAL record). */
#define TDSX_SEAL_FINAL_MAX (TDSX_SEAL_RECORD_MAX + TDSX_SEAL_FINAL_RECORD_LEN)

/* The exact length of the sealed stream of a plaintext of `plaintext_len` bytes, header and
 * FINAL record included: what an NRO declares before sending. TDSX_E_TOOBIG when it does not fit
 * 64 bits; TDSX_E_INVAL when out is NULL. */
TDSX_MUST_CHECK int tdsx_seal_ciphertext_len(uint64_t plaintext_len, uint64_t *out);
/* The inverse: the plaintext length whose sealed stream is `ciphertext_len` bytes long.
 * TDSX_E_SEAL when no plaintext seals to that length; TDSX_E_INVAL when out is NULL. */
TDSX_MUST_CHECK int tdsx_seal_plaintext_len(uint64_t ciphertext_len, uint64_t *out);
/* An upper bound of what tdsx_sealer_update appends for `n` plaintext bytes, whatever the
 * sealer holds (SIZE_MAX when the bound itself overflows). */
size_t tdsx_seal_update_bound(size_t n);

/* ---- Sealer ---- */
typedef struct tdsx_sealer_s tdsx_sealer_t;

/*
 * Starts a sealed stream to the X25519 public key `recipient_pk` inside transfer
 * `transfer_id`: draws a fresh stream key, wraps it, and appends the TDSX_SEAL_HEADER_LEN header
 * bytes to `out`. Neither input is kept. The caller frees *sealer with tdsx_sealer_free.
 * Errors (out is then unchanged and *sealer NULL): TDSX_E_INVAL (NULL argument), TDSX_E_KEY
 * (recipient_pk is a low-order point crypto_box refuses), TDSX_E_TOOBIG (out's cap),
 * TDSX_E_NOMEM, TDSX_E_INTERNAL (libsodium or OpenSSL).
 */
TDSX_MUST_CHECK int tdsx_sealer_new(const uint8_t recipient_pk[TDSX_X25519_KEY_LEN],
                                    const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN],
                                    tdsx_buf_t *out, tdsx_sealer_t **sealer);

/*
 * Seals the next plaintext bytes (plaintext.p may be NULL when plaintext.n is 0) and appends
 * every record that became complete to `out` (at most tdsx_seal_update_bound(plaintext.n)
 * bytes); up to TDSX_SEAL_CHUNK - 1 bytes wait inside the sealer for the next call.
 * Errors: TDSX_E_TOOBIG (out's cap) and TDSX_E_NOMEM are checked before anything happens, so the
 * sealer and out are unchanged and the call may be repeated with room; TDSX_E_STATE after
 * tdsx_sealer_final; TDSX_E_INVAL for NULL arguments; TDSX_E_INTERNAL, after which the sealer is
 * failed and every later update or final returns that error.
 */
TDSX_MUST_CHECK int tdsx_sealer_update(tdsx_sealer_t *s, tdsx_bytes_t plaintext, tdsx_buf_t *out);

/*
 * Ends the stream: appends the last partial data record (if any) and the FINAL record (at most
 * TDSX_SEAL_FINAL_MAX bytes) and, when plaintext_sha256 is not NULL, writes the SHA-256 of all
 * the plaintext. Errors as tdsx_sealer_update (TDSX_E_TOOBIG and TDSX_E_NOMEM leave everything
 * unchanged); TDSX_E_STATE when called twice. The sealer then only answers
 * tdsx_sealer_plaintext_len and tdsx_sealer_free.
 */
TDSX_MUST_CHECK int tdsx_sealer_final(tdsx_sealer_t *s, tdsx_buf_t *out,
                                      uint8_t plaintext_sha256[TDSX_HASH_LEN]);

/* Plaintext bytes accepted so far. */
uint64_t tdsx_sealer_plaintext_len(const tdsx_sealer_t *s);
/* Wipes the stream state and any buffered plaintext, then frees. NULL is a no-op. */
void tdsx_sealer_free(tdsx_sealer_t *s);

/* ---- Opener ---- */
typedef struct tdsx_opener_s tdsx_opener_t;

/*
 * Prepares to open a stream sealed to the X25519 key pair whose secret is `recipient_sk`, inside
 * transfer `transfer_id`. The secret is copied into sodium_malloc memory and wiped as soon as the
 * header has been opened; the caller should wipe its own copy. The caller frees *opener with
 * tdsx_opener_free. Errors: TDSX_E_INVAL, TDSX_E_KEY, TDSX_E_NOMEM, TDSX_E_INTERNAL.
 */
TDSX_MUST_CHECK int tdsx_opener_new(const uint8_t recipient_sk[TDSX_X25519_KEY_LEN],
                                    const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN],
                                    tdsx_opener_t **opener);

/*
 * Consumes the next slice of the sealed stream (untrusted bytes, any slicing, not kept;
 * ciphertext.p may be NULL when ciphertext.n is 0) and appends the plaintext of every record
 * that became complete and authenticated to `out`: at most ciphertext.n + TDSX_SEAL_RECORD_MAX
 * bytes, so a caller that empties out after each call needs a cap of its slice size plus
 * TDSX_SEAL_RECORD_MAX. At most one incomplete record is held inside.
 *
 * Plaintext handed out is authentic but PROVISIONAL: only tdsx_opener_final proves that the
 * stream was complete. Keep it in a temporary object until then (SPEC §9).
 *
 * Errors are sticky: after the first one the opener is failed, every later feed and final
 * returns the same code, and out may hold plaintext of records before the failing one.
 *   TDSX_E_SEAL            the stream is not an authentic sealed stream of this transfer for this
 *                          key: bad magic, a record that does not authenticate (tampered,
 *                          dropped, duplicated, reordered, spliced, other transfer id), a record
 *                          length outside 18..TDSX_SEAL_CHUNK + 17, an unknown tag, an empty or
 *                          misplaced short data record, a FINAL record of the wrong size or whose
 *                          trailer disagrees with the plaintext, any byte after the FINAL record
 *   TDSX_E_SEAL_RECIPIENT  the stream key does not unwrap with this secret (sealed to another
 *                          node, or the wrapped key was altered)
 *   TDSX_E_UNSUPPORTED     a format version other than TDSX_SEAL_VERSION
 *   TDSX_E_TOOBIG          out's cap; TDSX_E_NOMEM; TDSX_E_INTERNAL; TDSX_E_INVAL (NULL)
 */
TDSX_MUST_CHECK int tdsx_opener_feed(tdsx_opener_t *o, tdsx_bytes_t ciphertext, tdsx_buf_t *out);

/*
 * Declares the end of the input: 0 only when the FINAL record arrived and matched (its length
 * and SHA-256 equal those of the plaintext handed out). Then *plaintext_len and
 * plaintext_sha256 (either may be NULL) receive them. TDSX_E_SEAL_TRUNCATED when the input
 * ended before the FINAL record (at a record boundary or inside one); the sticky error of a
 * failed opener otherwise. Final may be called more than once with the same answer.
 */
TDSX_MUST_CHECK int tdsx_opener_final(tdsx_opener_t *o, uint64_t *plaintext_len,
                                      uint8_t plaintext_sha256[TDSX_HASH_LEN]);

/* Wipes the keys, the stream state and any buffered record, then frees. NULL is a no-op. */
void tdsx_opener_free(tdsx_opener_t *o);

/* ------------------------------------------------------------------------------------------
 * Signed notes, checkpoints and cosignatures (SPEC §11-§12)
 *
 * C2SP signed-note: a note is UTF-8 text (no control characters but newline) ending in a
 * newline, then an empty line, then one or more signature lines
 *
 *     "— " <key name> " " base64(be32(key ID) || signature) "\n"      ("—" is U+2014)
 *
 * A key name is non-empty UTF-8 without Unicode spaces or '+'. key ID = the first four bytes
 * of SHA-256(name || 0x0A || type || 32-byte Ed25519 public key), big-endian. Two types:
 *
 *  - TDSX_NOTE_ED25519 (0x01): Ed25519 over the note text (the node's `sign` key signing its
 *    checkpoints and reports);
 *  - TDSX_NOTE_COSIG (0x04, C2SP tlog-cosignature "cosignature/v1"): the signature is
 *    be64(timestamp) || Ed25519 over "cosignature/v1\ntime <timestamp>\n" || note text. A
 *    witness (the centre) cosigns a checkpoint with it.
 *
 * Public keys travel as verifier keys, "<name>+<8 lowercase hex key ID>+<base64(type ||
 * public key)>" (golang.org/x/mod/sumdb/note), private keys as signer keys,
 * "PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>".
 *
 * Verification follows the spec: signature lines by keys the caller does not trust are kept
 * but ignored; a line whose name and key ID match a trusted key must verify or the whole note
 * is refused; a note with no valid signature by a trusted key is refused.
 *
 * Limits (refused with their own codes, never truncated): a note of at most TDSX_NOTE_MAX
 * bytes (TDSX_E_NOTE_TOOBIG), at most TDSX_NOTE_LINES_MAX lines of text (TDSX_E_NOTE_LINES),
 * at most TDSX_NOTE_SIGS_MAX signature lines (TDSX_E_NOTE_SIGS; C2SP asks for at least 16).
 * Any other syntax error is TDSX_E_NOTE_FORMAT.
 * ---------------------------------------------------------------------------------------- */
#define TDSX_NOTE_ED25519 0x01
#define TDSX_NOTE_COSIG 0x04

#define TDSX_NOTE_MAX (256u * 1024u)
#define TDSX_NOTE_LINES_MAX 1024u
#define TDSX_NOTE_SIGS_MAX 32u
/* Longest key name in bytes (also the longest checkpoint origin, as in C2SP's ML-DSA
 * cosignature format). */
#define TDSX_NOTE_NAME_MAX 255u
/* Longest verifier key string: name, '+', 8 hex digits, '+', base64 of 33 bytes. */
#define TDSX_NOTE_VKEY_MAX (TDSX_NOTE_NAME_MAX + 1u + 8u + 1u + 44u)
/* Longest signer key string: "PRIVATE+KEY+" and the same fields. */
#define TDSX_NOTE_SKEY_MAX (12u + TDSX_NOTE_VKEY_MAX)

/* 1 when `name` is a valid key name (non-empty, at most TDSX_NOTE_NAME_MAX bytes of valid
 * UTF-8, no control character, no Unicode space, no '+'), else 0. */
int tdsx_note_name_valid(tdsx_bytes_t name);

/* The key ID of (name, type, public key). TDSX_E_INVAL when name is not a valid key name. */
TDSX_MUST_CHECK int tdsx_note_key_id(tdsx_bytes_t name, uint8_t type,
                                     const uint8_t pk[TDSX_ED25519_PK_LEN], uint32_t *out);

/* A public note key. Plain data: copy it freely; it owns nothing. */
typedef struct tdsx_note_verifier_s {
    char name[TDSX_NOTE_NAME_MAX + 1]; /* NUL-terminated */
    size_t name_len;
    uint8_t type; /* TDSX_NOTE_ED25519 or TDSX_NOTE_COSIG */
    uint32_t key_id;
    uint8_t pk[TDSX_ED25519_PK_LEN];
} tdsx_note_verifier_t;

/* Fills *out for a raw Ed25519 public key under `name` (NUL-terminated) and `type`.
 * TDSX_E_INVAL (name or type), TDSX_E_KEY (not a usable Ed25519 point). */
TDSX_MUST_CHECK int tdsx_note_verifier_init(tdsx_note_verifier_t *out, const char *name,
                                            uint8_t type, const uint8_t pk[TDSX_ED25519_PK_LEN]);
/* Parses a verifier key string (untrusted). Every defect is TDSX_E_KEY: wrong shape, invalid
 * name, key ID not 8 hex digits, bad base64, unknown type, key not 32 bytes or not a usable
 * point, key ID that does not match the name and key. *out is written only on success. */
TDSX_MUST_CHECK int tdsx_note_verifier_parse(tdsx_bytes_t vkey, tdsx_note_verifier_t *out);
/* Appends the verifier key string (no NUL) to out. TDSX_E_TOOBIG/TDSX_E_NOMEM leave out
 * unchanged. */
TDSX_MUST_CHECK int tdsx_note_verifier_format(const tdsx_note_verifier_t *v, tdsx_buf_t *out);

/* A private note key. The Ed25519 secret key lives in sodium_malloc memory, read-only after
 * creation and wiped on free, so one signer may sign from several threads at once. */
typedef struct tdsx_note_signer_s tdsx_note_signer_t;

/* Makes a signer from a 32-byte Ed25519 seed (the raw private key: the caller wipes its copy)
 * under `name` and `type`. TDSX_E_INVAL, TDSX_E_NOMEM, TDSX_E_INTERNAL (libsodium). */
TDSX_MUST_CHECK int tdsx_note_signer_new(const char *name, uint8_t type,
                                         const uint8_t seed[TDSX_ED25519_SEED_LEN],
                                         tdsx_note_signer_t **out);
/* Parses a signer key string (secret: the caller wipes its copy). TDSX_E_KEY for any defect,
 * including a key ID that does not match the key derived from the seed; TDSX_E_NOMEM,
 * TDSX_E_INTERNAL. */
TDSX_MUST_CHECK int tdsx_note_signer_parse(tdsx_bytes_t skey, tdsx_note_signer_t **out);
/* The matching public key; valid as long as the signer. */
const tdsx_note_verifier_t *tdsx_note_signer_verifier(const tdsx_note_signer_t *s);
/* Wipes and frees. NULL is a no-op. */
void tdsx_note_signer_free(tdsx_note_signer_t *s);

/* One signature line of a parsed note. The views point into the note and live as long as it. */
typedef struct tdsx_note_sig_s {
    tdsx_bytes_t name; /* key name (not NUL-terminated) */
    uint32_t key_id;
    tdsx_bytes_t sig;  /* the signature bytes after the key ID */
    tdsx_bytes_t line; /* the whole line, "— " to "\n" included */
    int verified;      /* 1 when a trusted key verified it (tdsx_note_open) */
    uint8_t type;      /* when verified: the verifying key's type and public key */
    uint8_t pk[TDSX_ED25519_PK_LEN];
    uint64_t timestamp; /* when verified by a TDSX_NOTE_COSIG key: the cosignature time */
} tdsx_note_sig_t;

typedef struct tdsx_note_s tdsx_note_t;

/* Parses a signed note (untrusted bytes, copied) without verifying anything: every signature
 * is unverified. For tools and for adding signatures; anything that acts on the text must use
 * tdsx_note_open. Errors: TDSX_E_NOTE_TOOBIG, TDSX_E_NOTE_LINES, TDSX_E_NOTE_SIGS,
 * TDSX_E_NOTE_FORMAT, TDSX_E_NOMEM. *out is set only on success; free with tdsx_note_free. */
TDSX_MUST_CHECK int tdsx_note_parse(tdsx_bytes_t msg, tdsx_note_t **out);

/*
 * Parses `msg` and verifies every signature line whose name and key ID match one of the
 * nkeys trusted keys (keys may be NULL when nkeys is 0). Errors, besides those of
 * tdsx_note_parse: TDSX_E_DUPLICATE (a line matches two different trusted keys),
 * TDSX_E_COSIGNATURE (a line for a TDSX_NOTE_COSIG key is not 72 bytes or its timestamp
 * exceeds 2^63-1), TDSX_E_SIG_INVALID (a line by a trusted key does not verify: the whole
 * note is refused), TDSX_E_NOTE_UNVERIFIED (no line by a trusted key). Lines by other keys
 * are kept, unverified. *out is set only on success; free with tdsx_note_free.
 */
TDSX_MUST_CHECK int tdsx_note_open(tdsx_bytes_t msg, const tdsx_note_verifier_t *keys, size_t nkeys,
                                   tdsx_note_t **out);

/* The text: from the first byte to the newline before the separating empty line, included. */
tdsx_bytes_t tdsx_note_text(const tdsx_note_t *n);
size_t tdsx_note_sig_count(const tdsx_note_t *n);
/* The i-th signature line in note order; NULL when i >= count. */
const tdsx_note_sig_t *tdsx_note_sig(const tdsx_note_t *n, size_t i);
/* The first line verified by exactly this key (name, key ID, type and public key), or NULL.
 * Use it to require a given signer (the log) or to read a witness's cosignature time. */
const tdsx_note_sig_t *tdsx_note_verified_by(const tdsx_note_t *n, const tdsx_note_verifier_t *key);
/* NULL is a no-op. */
void tdsx_note_free(tdsx_note_t *n);

/*
 * Appends to `out` the note made of `text` signed by each of the n signers (in order):
 * text, "\n", one signature line per signer. The signers must be TDSX_NOTE_ED25519 keys
 * (TDSX_E_KEY otherwise; cosignatures go through tdsx_checkpoint_cosign) with distinct names
 * or key IDs (TDSX_E_DUPLICATE). text must be a valid note text ending in "\n" and must not
 * begin with "cosignature/v1\n", so that no note signature can pass for a cosignature
 * (TDSX_E_NOTE_FORMAT); the note must respect the limits above. 1 <= n <=
 * TDSX_NOTE_SIGS_MAX. On any error out is unchanged.
 */
TDSX_MUST_CHECK int tdsx_note_sign(tdsx_bytes_t text, const tdsx_note_signer_t *const *signers,
                                   size_t n, tdsx_buf_t *out);

/* ------------------------------------------------------------------------------------------
 * Checkpoints (C2SP tlog-checkpoint): the text of a signed note,
 *
 *     <origin>\n<tree size, decimal>\n<base64 RFC 9162 root hash>\n[<extension line>\n ...]
 *
 * The origin is any non-empty line of at most TDSX_NOTE_NAME_MAX bytes (SHOULD be a
 * schema-less URL; for TDSX it is the node identity "<USCC>/<node>", the log key's name).
 * The size has no leading zeros ("0" for the empty tree). Extension lines are opaque and
 * non-empty.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_checkpoint_s {
    tdsx_bytes_t origin; /* without its newline */
    uint64_t size;
    tdsx_hash_t root;
    tdsx_bytes_t extensions; /* the extension lines, each with its newline; n == 0 for none */
} tdsx_checkpoint_t;

/* Parses checkpoint text (untrusted; use tdsx_checkpoint_open for a signed one). The views
 * point into `text`. TDSX_E_CHECKPOINT for any defect; *out is written only on success. */
TDSX_MUST_CHECK int tdsx_checkpoint_parse(tdsx_bytes_t text, tdsx_checkpoint_t *out);
/* Appends the checkpoint text. TDSX_E_CHECKPOINT when the origin or the extensions would not
 * parse back; on any error out is unchanged. */
TDSX_MUST_CHECK int tdsx_checkpoint_format(const tdsx_checkpoint_t *cp, tdsx_buf_t *out);
/* Appends the checkpoint signed by the log's TDSX_NOTE_ED25519 key (errors of
 * tdsx_checkpoint_format and tdsx_note_sign; out unchanged on error). It is the caller's duty
 * (SPEC §11) never to sign a checkpoint inconsistent with the last one it signed. */
TDSX_MUST_CHECK int tdsx_checkpoint_sign(const tdsx_checkpoint_t *cp, const tdsx_note_signer_t *log,
                                         tdsx_buf_t *out);
/*
 * Opens a signed checkpoint: tdsx_note_open with the log's key and the witnesses' keys
 * (witnesses may be NULL when nwitnesses is 0), then requires a valid signature by `log` (else
 * TDSX_E_NOTE_UNVERIFIED, even when a witness signed) and parses the text (TDSX_E_CHECKPOINT).
 * When origin is not NULL the checkpoint's origin must equal it (TDSX_E_CHECKPOINT). On
 * success *note holds the opened note (witness lines can be read with tdsx_note_verified_by)
 * and *out views its text; both live until tdsx_note_free(*note).
 */
TDSX_MUST_CHECK int tdsx_checkpoint_open(tdsx_bytes_t msg, const tdsx_note_verifier_t *log,
                                         const tdsx_note_verifier_t *witnesses, size_t nwitnesses,
                                         const char *origin, tdsx_note_t **note,
                                         tdsx_checkpoint_t *out);
/*
 * A witness cosigns: appends to `out` the signed checkpoint `msg` with one more line, a
 * cosignature/v1 by `witness` (a TDSX_NOTE_COSIG signer, else TDSX_E_KEY) at `timestamp`
 * (seconds since the epoch, at most 2^63-1, else TDSX_E_COSIGNATURE). An earlier line by the
 * same witness key is dropped; every other line is kept as it was. The text must be a
 * checkpoint (TDSX_E_CHECKPOINT). This function checks syntax only: the witness must first
 * have opened the checkpoint with the log's key and checked it is consistent with the last one
 * it cosigned for that log (SPEC §11). Other errors as tdsx_note_parse; out unchanged on error.
 */
TDSX_MUST_CHECK int tdsx_checkpoint_cosign(tdsx_bytes_t msg, const tdsx_note_signer_t *witness,
                                           uint64_t timestamp, tdsx_buf_t *out);

#endif
