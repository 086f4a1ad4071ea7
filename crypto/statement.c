/* statement.c — the statement kinds: one type string and one message type each, and the only
 * way to decode a statement, after its envelope verified (SPEC §10). */
#include "internal.h"

static const struct {
    tdsx_statement_kind_t kind;
    const char *type;
    const ProtobufCMessageDescriptor *desc;
} kinds[TDSX_STATEMENT_KIND_COUNT] = {
    {TDSX_STATEMENT_NRO, "application/vnd.tdsx.nro.v1+protobuf", &tdsx__nro__descriptor},
    {TDSX_STATEMENT_NRR, "application/vnd.tdsx.nrr.v1+protobuf", &tdsx__nrr__descriptor},
    {TDSX_STATEMENT_NRD, "application/vnd.tdsx.nrd.v1+protobuf", &tdsx__nrd__descriptor},
    {TDSX_STATEMENT_AGREEMENT_TERMS, "application/vnd.tdsx.agreement-terms.v1+protobuf",
     &tdsx__agreement_terms__descriptor},
    {TDSX_STATEMENT_AGREEMENT_TERMINATION, "application/vnd.tdsx.agreement-termination.v1+protobuf",
     &tdsx__agreement_termination__descriptor},
    {TDSX_STATEMENT_TRUST_BUNDLE, "application/vnd.tdsx.trust-bundle.v1+protobuf",
     &tdsx__trust_bundle__descriptor},
};

static int known(tdsx_statement_kind_t kind)
{
    /* The enum's underlying type may be unsigned: compare as int so negatives are caught. */
    return (int)kind >= 0 && (int)kind < TDSX_STATEMENT_KIND_COUNT && kinds[kind].kind == kind;
}

const char *tdsx_statement_type(tdsx_statement_kind_t kind)
{
    return known(kind) ? kinds[kind].type : NULL;
}

const ProtobufCMessageDescriptor *tdsx_statement_descriptor(tdsx_statement_kind_t kind)
{
    return known(kind) ? kinds[kind].desc : NULL;
}

int tdsx_statement_submit(tdsx_signer_t *s, tdsx_statement_kind_t kind, const ProtobufCMessage *msg,
                          tdsx_signer_cb cb, void *userdata)
{
    if (!known(kind) || !msg || msg->descriptor != kinds[kind].desc)
        return TDSX_E_INVAL;
    return tdsx__signer_submit_message(s, kinds[kind].type, msg, cb, userdata);
}

int tdsx_statement_open(tdsx_verifier_t *v, tdsx_statement_kind_t kind, tdsx_bytes_t envelope,
                        tdsx_arena_t *arena, ProtobufCMessage **msg, tdsx_verified_t *info)
{
    tdsx_verified_t res;
    ProtobufCMessage *m;
    if (!known(kind) || !msg)
        return TDSX_E_INVAL;
    int rc = tdsx_envelope_verify(v, kinds[kind].type, envelope, arena, &res);
    if (rc < 0)
        return rc;
    rc = tdsx_proto_unpack(arena, kinds[kind].desc, res.payload, &m);
    if (rc < 0)
        return rc;
    *msg = m;
    if (info)
        *info = res;
    return 0;
}
