/*
 * receipt.c — offline verification of a complete transfer receipt (SPEC §10, §13): both
 * signatures, both certificate chains against the anchor the auditor trusts, and the links
 * between the halves. Nothing is taken from the party that hands the receipt over.
 */
#include "gateway.h"

#include <string.h>

#include "crypto.h"
#include "proto.h"

/* Verifies one sign certificate (DER) at time `at` and adds its key to the verifier. */
static int check_signer(const tdsx_trust_t *trust, ProtobufCBinaryData der, STACK_OF(X509) *chain,
                        int64_t at, tdsx_verifier_t *v, tdsx_identity_t *id, tdsx_hash_t *key)
{
    const uint8_t *p = der.data;
    X509 *cert = d2i_X509(NULL, &p, (long)der.len);
    if (!cert || p != der.data + der.len) {
        X509_free(cert);
        return TDSX_E_CERT_PARSE;
    }
    tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, at, 0};
    int rc = tdsx_cert_verify(trust, cert, chain, &o, id);
    X509_free(cert);
    if (rc == 0)
        rc = tdsx_verifier_add_key(v, id->pubkey);
    if (rc == 0)
        rc = tdsx_key_id(id->pubkey, key);
    return rc;
}

int tdsx_receipt_verify(tdsx_bytes_t bundle, const tdsx_trust_t *trust, tdsx_receipt_info_t *out,
                        const char **what)
{
    tdsx_arena_t *a = NULL;
    tdsx_verifier_t *v = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    Tdsx__ReceiptBundle *b = NULL;
    const char *ignored;
    int rc;
    if (!what)
        what = &ignored;
    *what = "bundle";
    memset(out, 0, sizeof *out);
    if (!chain)
        return TDSX_E_NOMEM;
    if ((rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a)) != 0 ||
        (rc = tdsx_verifier_new(4, &v)) != 0)
        goto done;
    if ((rc = tdsx_proto_unpack(a, &tdsx__receipt_bundle__descriptor, bundle,
                                (ProtobufCMessage **)&b)) != 0)
        goto done;
    for (size_t i = 0; i < b->n_chain && i < 8; i++) {
        const uint8_t *p = b->chain[i].data;
        X509 *c = d2i_X509(NULL, &p, (long)b->chain[i].len);
        if (!c || !sk_X509_push(chain, c)) {
            X509_free(c);
            rc = TDSX_E_CERT_PARSE;
            *what = "chain";
            goto done;
        }
    }
    /* Decode the NRO's time first (unverified) only to choose when to check the certificates:
     * a receipt stays verifiable after its signers' certificates expire. */
    tdsx_hash_t skey, rkey;
    tdsx_identity_t sid, rid;
    Tdsx__Envelope *e = NULL;
    Tdsx__Nro *peek = NULL;
    int64_t at = 0;
    if (tdsx_proto_unpack(a, &tdsx__envelope__descriptor, tdsx_bytes(b->nro.data, b->nro.len),
                          (ProtobufCMessage **)&e) == 0 &&
        tdsx_proto_unpack(a, &tdsx__nro__descriptor, tdsx_bytes(e->payload.data, e->payload.len),
                          (ProtobufCMessage **)&peek) == 0)
        at = peek->time;
    *what = "sender certificate";
    if ((rc = check_signer(trust, b->sender_cert, chain, at, v, &sid, &skey)) != 0)
        goto done;
    *what = "receiver certificate";
    if ((rc = check_signer(trust, b->receiver_cert, chain, at, v, &rid, &rkey)) != 0)
        goto done;
    ProtobufCMessage *m = NULL;
    tdsx_verified_t nro_info, nrr_info;
    *what = "nro";
    if ((rc = tdsx_statement_open(v, TDSX_STATEMENT_NRO, tdsx_bytes(b->nro.data, b->nro.len), a, &m,
                                  &nro_info)) != 0)
        goto done;
    const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
    if (memcmp(nro_info.key_id.b, skey.b, 32) != 0) {
        rc = TDSX_E_SIG_INVALID;
        goto done;
    }
    *what = "nrr";
    if ((rc = tdsx_statement_open(v, TDSX_STATEMENT_NRR, tdsx_bytes(b->nrr.data, b->nrr.len), a, &m,
                                  &nrr_info)) != 0)
        goto done;
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)m;
    if (memcmp(nrr_info.key_id.b, rkey.b, 32) != 0) {
        rc = TDSX_E_SIG_INVALID;
        goto done;
    }
    /* The halves must be about the same transfer between the certified parties. */
    char sender[TDSX_ID_SIZE], receiver[TDSX_ID_SIZE];
    tdsx_identity_id(&sid, sender, sizeof sender);
    tdsx_identity_id(&rid, receiver, sizeof receiver);
    tdsx_hash_t nro_hash;
    uint8_t sig_hash[32];
    if ((rc = tdsx_envelope_hash(tdsx_bytes(b->nro.data, b->nro.len), &nro_hash)) != 0 ||
        (rc = tdsx_sha256(nro_info.sig, sizeof nro_info.sig, sig_hash)) != 0)
        goto done;
    rc = TDSX_E_HASH_MISMATCH;
    *what = "nro sender";
    if (strcmp(nro->sender, sender) != 0)
        goto done;
    *what = "nro receiver";
    if (strcmp(nro->receiver, receiver) != 0 || strcmp(nrr->receiver, receiver) != 0)
        goto done;
    *what = "nrr transfer id";
    if (nro->transfer_id.len != 16 || nrr->transfer_id.len != 16 ||
        memcmp(nro->transfer_id.data, nrr->transfer_id.data, 16) != 0)
        goto done;
    *what = "nrr nro_hash";
    if (nrr->nro_hash.len != 32 || memcmp(nrr->nro_hash.data, nro_hash.b, 32) != 0)
        goto done;
    *what = "nrr nro_signature_hash";
    if (nrr->nro_signature_hash.len != 32 ||
        memcmp(nrr->nro_signature_hash.data, sig_hash, 32) != 0)
        goto done;
    rc = 0;
    *what = "";
    memcpy(out->transfer_id, nro->transfer_id.data, 16);
    snprintf(out->sender, sizeof out->sender, "%s", sender);
    snprintf(out->receiver, sizeof out->receiver, "%s", receiver);
    snprintf(out->dataset_id, sizeof out->dataset_id, "%s", nro->dataset_id);
    if (nro->payload_sha256.len == 32)
        memcpy(out->sha256, nro->payload_sha256.data, 32);
    out->length = nro->payload_length;
    out->sequence = nro->sequence;
    out->sent_at = nro->time;
    out->received_at = nrr->time;
    out->accepted = nrr->status == TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    out->status = nrr->status == TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED ? "accepted"
                  : nrr->status == TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED
                      ? "integrity-failed"
                  : nrr->status == TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED ? "policy-refused"
                                                                               : "unknown";
    if (nrr->received_sha256.len == 32)
        memcpy(out->received_sha256, nrr->received_sha256.data, 32);
    out->received_length = nrr->received_length;
    /* An accepted receipt must say the receiver got exactly what the sender signed for. */
    if (out->accepted && (out->received_length != out->length ||
                          memcmp(out->received_sha256, out->sha256, 32) != 0)) {
        rc = TDSX_E_HASH_MISMATCH;
        *what = "nrr received hash";
    }
done:
    sk_X509_pop_free(chain, X509_free);
    tdsx_verifier_free(v);
    tdsx_arena_free(a);
    return rc;
}
