/* merkle.c — RFC 9162 §2.1 Merkle trees: tree hash, inclusion and consistency proofs.
 *
 * Hashing (§2.1.1): leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || left || right), the
 * empty tree hashes to SHA-256 of nothing. The generators work over an array of leaf hashes;
 * the verifiers know nothing about where the proof came from, so the transparency log can feed
 * them proofs assembled from tiles. */
#include "internal.h"

#include <string.h>

#define STACK_MAX (TDSX_MERKLE_PATH_MAX + 1)

int tdsx__merkle_leaf(tdsx_sha256_t *h, const void *p, size_t n, tdsx_hash_t *out)
{
    static const uint8_t prefix = 0x00;
    int rc = tdsx_sha256_update(h, &prefix, 1);
    if (rc == 0)
        rc = tdsx_sha256_update(h, p, n);
    if (rc == 0)
        rc = tdsx_sha256_final(h, out->b);
    return rc;
}

int tdsx__merkle_node(tdsx_sha256_t *h, const tdsx_hash_t *left, const tdsx_hash_t *right,
                      tdsx_hash_t *out)
{
    /* Concatenated first so that one update covers the node, and so that out may alias an
     * input. */
    uint8_t buf[1 + 2 * TDSX_HASH_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, left->b, TDSX_HASH_LEN);
    memcpy(buf + 1 + TDSX_HASH_LEN, right->b, TDSX_HASH_LEN);
    int rc = tdsx_sha256_update(h, buf, sizeof buf);
    if (rc == 0)
        rc = tdsx_sha256_final(h, out->b);
    return rc;
}

/* The largest power of two strictly below n (n >= 2): the k of RFC 9162 §2.1.1. Written so that
 * it cannot overflow even for n close to 2^64. */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k <= (n - 1) / 2)
        k <<= 1;
    return k;
}

/* MTH(D[n]) over leaf hashes without recursion or allocation: a stack of perfect subtrees whose
 * sizes are strictly decreasing (the binary digits of the count so far), folded right to left at
 * the end. That fold is exactly §2.1.1's split at the largest power of two. */
static int subtree_root(tdsx_sha256_t *h, const tdsx_hash_t *leaves, size_t n, tdsx_hash_t *out)
{
    tdsx_hash_t stack[STACK_MAX];
    uint64_t sizes[STACK_MAX];
    size_t top = 0;
    int rc;

    if (n == 0)
        return tdsx_sha256_final(h, out->b);
    for (size_t i = 0; i < n; i++) {
        stack[top] = leaves[i];
        sizes[top] = 1;
        top++;
        while (top >= 2 && sizes[top - 1] == sizes[top - 2]) {
            rc = tdsx__merkle_node(h, &stack[top - 2], &stack[top - 1], &stack[top - 2]);
            if (rc < 0)
                return rc;
            sizes[top - 2] *= 2;
            top--;
        }
    }
    while (top >= 2) {
        rc = tdsx__merkle_node(h, &stack[top - 2], &stack[top - 1], &stack[top - 2]);
        if (rc < 0)
            return rc;
        top--;
    }
    *out = stack[0];
    return 0;
}

int tdsx_merkle_leaf_hash(const void *data, size_t n, tdsx_hash_t *out)
{
    if ((!data && n) || !out)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;
    rc = tdsx__merkle_leaf(&h, data, n, out);
    tdsx_sha256_free(&h);
    return rc;
}

int tdsx_merkle_node_hash(const tdsx_hash_t *left, const tdsx_hash_t *right, tdsx_hash_t *out)
{
    if (!left || !right || !out)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;
    rc = tdsx__merkle_node(&h, left, right, out);
    tdsx_sha256_free(&h);
    return rc;
}

int tdsx_merkle_root(const tdsx_hash_t *leaves, size_t n, tdsx_hash_t *root)
{
    if ((!leaves && n) || !root)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;
    rc = subtree_root(&h, leaves, n, root);
    tdsx_sha256_free(&h);
    return rc;
}

static void reverse(tdsx_hash_t *v, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        tdsx_hash_t t = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = t;
    }
}

int tdsx_merkle_inclusion_proof(const tdsx_hash_t *leaves, size_t n, size_t index,
                                tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *path_len)
{
    if (!leaves || !path || !path_len || index >= n)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;

    /* §2.1.3.1 walked from the root down: each step keeps the half holding the leaf and records
     * the other half's hash. The recursion lists those from the leaf up, hence the reversal. */
    size_t lo = 0, size = n, m = index, len = 0;
    while (size > 1) {
        size_t k = (size_t)split_point(size);
        if (m < k) {
            rc = subtree_root(&h, leaves + lo + k, size - k, &path[len]);
            size = k;
        } else {
            rc = subtree_root(&h, leaves + lo, k, &path[len]);
            lo += k;
            m -= k;
            size -= k;
        }
        if (rc < 0)
            goto fail;
        len++;
    }
    reverse(path, len);
    *path_len = len;
    tdsx_sha256_free(&h);
    return 0;
fail:
    tdsx_sha256_free(&h);
    return rc;
}

int tdsx_merkle_consistency_proof(const tdsx_hash_t *leaves, size_t n, size_t m,
                                  tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX], size_t *proof_len)
{
    if (!leaves || !proof || !proof_len || m == 0 || m > n)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;

    /* SUBPROOF(m, D[n], true) of §2.1.4.1, unrolled from the top like the inclusion proof. */
    size_t lo = 0, size = n, mm = m, len = 0;
    int whole = 1; /* b: the subtree of size mm is the old tree itself */
    for (;;) {
        if (mm == size) {
            if (!whole) {
                rc = subtree_root(&h, leaves + lo, size, &proof[len]);
                if (rc < 0)
                    goto fail;
                len++;
            }
            break;
        }
        size_t k = (size_t)split_point(size);
        if (mm <= k) {
            rc = subtree_root(&h, leaves + lo + k, size - k, &proof[len]);
            size = k;
        } else {
            rc = subtree_root(&h, leaves + lo, k, &proof[len]);
            lo += k;
            mm -= k;
            size -= k;
            whole = 0;
        }
        if (rc < 0)
            goto fail;
        len++;
    }
    reverse(proof, len);
    *proof_len = len;
    tdsx_sha256_free(&h);
    return 0;
fail:
    tdsx_sha256_free(&h);
    return rc;
}

int tdsx__merkle_inclusion_root(tdsx_sha256_t *h, uint64_t index, uint64_t size,
                                const tdsx_hash_t *leaf, const tdsx_hash_t *path, size_t path_len,
                                tdsx_hash_t *root)
{
    /* RFC 9162 §2.1.3.2, step by step. */
    if (index >= size || path_len > TDSX_MERKLE_PATH_MAX || (path_len && !path))
        return TDSX_E_MERKLE_PROOF;
    uint64_t fn = index, sn = size - 1;
    tdsx_hash_t r = *leaf;
    for (size_t i = 0; i < path_len; i++) {
        int rc;
        if (sn == 0)
            return TDSX_E_MERKLE_PROOF;
        if ((fn & 1) || fn == sn) {
            rc = tdsx__merkle_node(h, &path[i], &r, &r);
            while (fn != 0 && !(fn & 1)) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            rc = tdsx__merkle_node(h, &r, &path[i], &r);
        }
        if (rc < 0)
            return rc;
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return TDSX_E_MERKLE_PROOF;
    *root = r;
    return 0;
}

int tdsx_merkle_inclusion_root(uint64_t index, uint64_t size, const tdsx_hash_t *leaf,
                               const tdsx_hash_t *path, size_t path_len, tdsx_hash_t *root)
{
    if (!leaf || !root)
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;
    rc = tdsx__merkle_inclusion_root(&h, index, size, leaf, path, path_len, root);
    tdsx_sha256_free(&h);
    return rc;
}

int tdsx_merkle_inclusion_verify(uint64_t index, uint64_t size, const tdsx_hash_t *leaf,
                                 const tdsx_hash_t *path, size_t path_len, const tdsx_hash_t *root)
{
    if (!root)
        return TDSX_E_INVAL;
    tdsx_hash_t got;
    int rc = tdsx_merkle_inclusion_root(index, size, leaf, path, path_len, &got);
    if (rc < 0)
        return rc;
    return memcmp(got.b, root->b, TDSX_HASH_LEN) == 0 ? 0 : TDSX_E_MERKLE_PROOF;
}

static int hash_equal(const tdsx_hash_t *a, const tdsx_hash_t *b)
{
    return memcmp(a->b, b->b, TDSX_HASH_LEN) == 0;
}

static int consistency_check(tdsx_sha256_t *h, uint64_t m, uint64_t n, const tdsx_hash_t *root_m,
                             const tdsx_hash_t *root_n, const tdsx_hash_t *proof, size_t proof_len)
{
    /* RFC 9162 §2.1.4.2. Step 2 ("prepend first_hash when first is a power of two") is done by
     * choosing where the walk starts instead of copying the proof. */
    const tdsx_hash_t *rest = proof;
    size_t rest_len = proof_len;
    tdsx_hash_t fr, sr;
    int rc;

    if ((m & (m - 1)) == 0) {
        fr = *root_m;
    } else {
        fr = proof[0];
        rest++;
        rest_len--;
    }
    sr = fr;
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (size_t i = 0; i < rest_len; i++) {
        if (sn == 0)
            return TDSX_E_MERKLE_PROOF;
        if ((fn & 1) || fn == sn) {
            rc = tdsx__merkle_node(h, &rest[i], &fr, &fr);
            if (rc == 0)
                rc = tdsx__merkle_node(h, &rest[i], &sr, &sr);
            while (fn != 0 && !(fn & 1)) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            rc = tdsx__merkle_node(h, &sr, &rest[i], &sr);
        }
        if (rc < 0)
            return rc;
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0 || !hash_equal(&fr, root_m) || !hash_equal(&sr, root_n))
        return TDSX_E_MERKLE_PROOF;
    return 0;
}

int tdsx_merkle_consistency_verify(uint64_t m, uint64_t n, const tdsx_hash_t *root_m,
                                   const tdsx_hash_t *root_n, const tdsx_hash_t *proof,
                                   size_t proof_len)
{
    if (!root_m || !root_n || (proof_len && !proof))
        return TDSX_E_INVAL;
    if (m > n || proof_len > TDSX_MERKLE_CONSISTENCY_MAX)
        return TDSX_E_MERKLE_PROOF;
    tdsx_sha256_t h;
    int rc = tdsx_sha256_init(&h);
    if (rc < 0)
        return rc;
    if (m == n) {
        /* Same size: nothing to prove, the heads must simply agree. */
        rc = proof_len == 0 && hash_equal(root_m, root_n) ? 0 : TDSX_E_MERKLE_PROOF;
    } else if (m == 0) {
        /* The empty tree is a prefix of every tree; its head must still be the empty hash. */
        tdsx_hash_t empty;
        rc = tdsx_sha256_final(&h, empty.b);
        if (rc == 0)
            rc = proof_len == 0 && hash_equal(root_m, &empty) ? 0 : TDSX_E_MERKLE_PROOF;
    } else if (proof_len == 0) {
        rc = TDSX_E_MERKLE_PROOF;
    } else {
        rc = consistency_check(&h, m, n, root_m, root_n, proof, proof_len);
    }
    tdsx_sha256_free(&h);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Whole tree kept in memory, for handing every leaf its path (batch signing).
 * ---------------------------------------------------------------------------------------- */

struct tdsx_merkle_tree_s {
    size_t n;
    size_t levels;
    size_t count[STACK_MAX];
    size_t offset[STACK_MAX];
    tdsx_hash_t root;
    tdsx_hash_t nodes[];
};

int tdsx_merkle_tree_new(const tdsx_hash_t *leaves, size_t n, tdsx_merkle_tree_t **out)
{
    tdsx_merkle_tree_t *t = NULL;
    tdsx_sha256_t h = {0};
    int rc;

    if ((!leaves && n) || !out)
        return TDSX_E_INVAL;
    *out = NULL;
    /* The levels hold fewer than 2n + 65 hashes; keep that sum far from overflowing. */
    if (n > SIZE_MAX / (4 * sizeof(tdsx_hash_t)))
        return TDSX_E_TOOBIG;

    /* Level i+1 pairs the nodes of level i; a last node without a partner moves up unchanged.
     * Built bottom-up this way the tree is the same as §2.1.1's top-down split. */
    size_t levels = 0, total = 0, c = n;
    size_t count[STACK_MAX], offset[STACK_MAX];
    while (c > 0) {
        count[levels] = c;
        offset[levels] = total;
        total += c;
        levels++;
        if (c == 1)
            break;
        c = c / 2 + (c & 1);
    }
    if (total > (SIZE_MAX - sizeof *t) / sizeof(tdsx_hash_t))
        return TDSX_E_TOOBIG;
    t = tdsx_malloc(sizeof *t + total * sizeof(tdsx_hash_t));
    if (!t)
        return TDSX_E_NOMEM;
    t->n = n;
    t->levels = levels;
    for (size_t l = 0; l < levels; l++) {
        t->count[l] = count[l];
        t->offset[l] = offset[l];
    }
    rc = tdsx_sha256_init(&h);
    if (rc < 0)
        goto fail;
    if (n == 0) {
        rc = tdsx_sha256_final(&h, t->root.b);
        if (rc < 0)
            goto fail;
    } else {
        memcpy(t->nodes, leaves, n * sizeof(tdsx_hash_t));
        for (size_t l = 0; l + 1 < levels; l++) {
            const tdsx_hash_t *below = t->nodes + offset[l];
            tdsx_hash_t *above = t->nodes + offset[l + 1];
            for (size_t j = 0; j < count[l + 1]; j++) {
                if (2 * j + 1 < count[l]) {
                    rc = tdsx__merkle_node(&h, &below[2 * j], &below[2 * j + 1], &above[j]);
                    if (rc < 0)
                        goto fail;
                } else {
                    above[j] = below[2 * j];
                }
            }
        }
        t->root = t->nodes[offset[levels - 1]];
    }
    tdsx_sha256_free(&h);
    *out = t;
    return 0;
fail:
    tdsx_sha256_free(&h);
    tdsx_free(t);
    return rc;
}

size_t tdsx_merkle_tree_size(const tdsx_merkle_tree_t *t)
{
    return t->n;
}

const tdsx_hash_t *tdsx_merkle_tree_root(const tdsx_merkle_tree_t *t)
{
    return &t->root;
}

int tdsx_merkle_tree_path(const tdsx_merkle_tree_t *t, size_t index,
                          tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *path_len)
{
    if (!t || !path || !path_len || index >= t->n)
        return TDSX_E_INVAL;
    size_t len = 0, i = index;
    for (size_t l = 0; l + 1 < t->levels; l++) {
        size_t sibling = i ^ 1;
        if (sibling < t->count[l])
            path[len++] = t->nodes[t->offset[l] + sibling];
        i >>= 1;
    }
    *path_len = len;
    return 0;
}

void tdsx_merkle_tree_free(tdsx_merkle_tree_t *t)
{
    tdsx_free(t);
}
