/* envelope.c — what signer and verifier must agree on byte for byte: DSSE's pre-authentication
 * encoding, the leaf of a statement and the batch root statement (SPEC §10). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* "DSSEv1" SP LEN(type) SP type SP LEN(body) SP — everything of PAE before the body. */
static int pae_head(char *out, size_t cap, const char *type, size_t type_len, size_t body_len)
{
    int n = snprintf(out, cap, "DSSEv1 %zu %.*s %zu ", type_len, (int)type_len, type, body_len);
    if (n < 0 || (size_t)n >= cap)
        return TDSX_E_INTERNAL;
    return n;
}

int tdsx_pae(tdsx_buf_t *out, const char *type, tdsx_bytes_t body)
{
    if (!out || !type || (!body.p && body.n))
        return TDSX_E_INVAL;
    size_t type_len = strlen(type);
    if (type_len > TDSX_PAYLOAD_TYPE_MAX)
        return TDSX_E_INVAL;
    char head[TDSX__PAE_HEAD_MAX];
    int n = pae_head(head, sizeof head, type, type_len, body.n);
    if (n < 0)
        return n;
    if (body.n > SIZE_MAX - (size_t)n)
        return TDSX_E_TOOBIG;
    /* Reserve first so a failure leaves out as it was. */
    int rc = tdsx_buf_reserve(out, (size_t)n + body.n);
    if (rc < 0)
        return rc;
    rc = tdsx_buf_append(out, head, (size_t)n);
    if (rc == 0 && body.n)
        rc = tdsx_buf_append(out, body.p, body.n);
    return rc;
}

int tdsx__statement_leaf(tdsx_sha256_t *h, const char *type, size_t type_len, tdsx_bytes_t payload,
                         tdsx_hash_t *out)
{
    /* RFC 9162 leaf hash of PAE(type, payload), streamed so the payload is never copied. */
    static const uint8_t leaf_prefix = 0x00;
    char head[TDSX__PAE_HEAD_MAX];
    if (type_len > TDSX_PAYLOAD_TYPE_MAX)
        return TDSX_E_INVAL;
    int n = pae_head(head, sizeof head, type, type_len, payload.n);
    if (n < 0)
        return n;
    int rc = tdsx_sha256_update(h, &leaf_prefix, 1);
    if (rc == 0)
        rc = tdsx_sha256_update(h, head, (size_t)n);
    if (rc == 0)
        rc = tdsx_sha256_update(h, payload.p, payload.n);
    if (rc == 0)
        rc = tdsx_sha256_final(h, out->b);
    return rc;
}

int tdsx__root_statement(uint64_t tree_size, const tdsx_hash_t *root,
                         uint8_t out[TDSX__ROOT_STATEMENT_MAX], size_t *len)
{
    static const char type[] = TDSX_BATCH_ROOT_TYPE;
    const size_t body_len = 8 + TDSX_HASH_LEN;
    int n = pae_head((char *)out, TDSX__ROOT_STATEMENT_MAX, type, sizeof type - 1, body_len);
    if (n < 0)
        return n;
    if ((size_t)n + body_len > TDSX__ROOT_STATEMENT_MAX)
        return TDSX_E_INTERNAL;
    uint8_t *p = out + n;
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(tree_size >> (8 * i));
    memcpy(p, root->b, TDSX_HASH_LEN);
    *len = (size_t)n + body_len;
    return 0;
}

int tdsx_key_id(const uint8_t pk[TDSX_ED25519_PK_LEN], tdsx_hash_t *out)
{
    if (!pk || !out)
        return TDSX_E_INVAL;
    return tdsx_sha256(pk, TDSX_ED25519_PK_LEN, out->b);
}

int tdsx_envelope_hash(tdsx_bytes_t envelope, tdsx_hash_t *out)
{
    if ((!envelope.p && envelope.n) || !out)
        return TDSX_E_INVAL;
    return tdsx_sha256(envelope.p, envelope.n, out->b);
}
