/* Typed statements: every kind signs and opens with its own type string and message type; a
 * statement is decoded only after its envelope verified, and only as the kind asked for. */
#include "helpers.h"

static uint8_t pk[TDSX_ED25519_PK_LEN];
static tdsx_signer_t *signer;

static int setup(void **state)
{
    (void)state;
    signer = test_signer(0x5e, NULL, pk);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_signer_free(signer);
    return 0;
}

static uint8_t id16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static uint8_t h32[32] = {0xde, 0xad, 0xbe, 0xef};

/* One message of each kind, each with something recognisable in it. */
struct samples {
    Tdsx__Nro nro;
    Tdsx__Nrr nrr;
    Tdsx__Nrd nrd;
    Tdsx__Action action;
    Tdsx__Action *actions[1];
    Tdsx__AgreementTerms terms;
    Tdsx__AgreementTermination termination;
    Tdsx__Member member;
    Tdsx__Member *members[1];
    Tdsx__TrustBundle bundle;
};

static void fill_samples(struct samples *s)
{
    s->nro = (Tdsx__Nro)TDSX__NRO__INIT;
    s->nro.transfer_id = (ProtobufCBinaryData){16, id16};
    s->nro.sender = "91350100M000100Y43/ent-a";
    s->nro.receiver = "91350100M000100Y43/brain";
    s->nro.payload_sha256 = (ProtobufCBinaryData){32, h32};
    s->nro.payload_length = 123456789;
    s->nro.sealed = 1;
    s->nro.sequence = 42;
    s->nro.time = 1767225600;

    s->nrr = (Tdsx__Nrr)TDSX__NRR__INIT;
    s->nrr.transfer_id = (ProtobufCBinaryData){16, id16};
    s->nrr.received_length = 123456789;
    s->nrr.status = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    s->nrr.receiver = "91350100M000100Y43/brain";

    s->nrd = (Tdsx__Nrd)TDSX__NRD__INIT;
    s->nrd.nro_hash = (ProtobufCBinaryData){32, h32};
    s->nrd.reason = "timeout";

    s->action = (Tdsx__Action)TDSX__ACTION__INIT;
    s->action.kind = TDSX__ACTION_KIND__ACTION_KIND_RECEIVE;
    s->actions[0] = &s->action;
    s->terms = (Tdsx__AgreementTerms)TDSX__AGREEMENT_TERMS__INIT;
    s->terms.provider = "provider";
    s->terms.consumer = "consumer";
    s->terms.purpose_text = "质量分析";
    s->terms.n_actions = 1;
    s->terms.actions = s->actions;
    s->terms.not_after = 1800000000;

    s->termination = (Tdsx__AgreementTermination)TDSX__AGREEMENT_TERMINATION__INIT;
    s->termination.agreement_hash = (ProtobufCBinaryData){32, h32};
    s->termination.by = "consumer";

    s->member = (Tdsx__Member)TDSX__MEMBER__INIT;
    s->member.uscc = "91350100M000100Y43";
    s->member.role = TDSX__ROLE__ROLE_CENTRE;
    s->members[0] = &s->member;
    s->bundle = (Tdsx__TrustBundle)TDSX__TRUST_BUNDLE__INIT;
    s->bundle.serial = 7;
    s->bundle.n_members = 1;
    s->bundle.members = s->members;
}

static const ProtobufCMessage *sample(const struct samples *s, tdsx_statement_kind_t kind)
{
    switch (kind) {
    case TDSX_STATEMENT_NRO: return &s->nro.base;
    case TDSX_STATEMENT_NRR: return &s->nrr.base;
    case TDSX_STATEMENT_NRD: return &s->nrd.base;
    case TDSX_STATEMENT_AGREEMENT_TERMS: return &s->terms.base;
    case TDSX_STATEMENT_AGREEMENT_TERMINATION: return &s->termination.base;
    case TDSX_STATEMENT_TRUST_BUNDLE: return &s->bundle.base;
    default: fail_msg("no sample for kind %d", (int)kind);
    }
    return NULL;
}

/* The decoded message carries what the sample had. */
static void check_decoded(tdsx_statement_kind_t kind, const ProtobufCMessage *m)
{
    assert_ptr_equal(m->descriptor, tdsx_statement_descriptor(kind));
    switch (kind) {
    case TDSX_STATEMENT_NRO: {
        const Tdsx__Nro *x = (const Tdsx__Nro *)m;
        assert_int_equal(x->transfer_id.len, 16);
        assert_memory_equal(x->transfer_id.data, id16, 16);
        assert_string_equal(x->sender, "91350100M000100Y43/ent-a");
        assert_int_equal(x->payload_length, 123456789);
        assert_true(x->sealed);
        assert_int_equal(x->sequence, 42);
        break;
    }
    case TDSX_STATEMENT_NRR: {
        const Tdsx__Nrr *x = (const Tdsx__Nrr *)m;
        assert_int_equal(x->status, TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED);
        assert_string_equal(x->receiver, "91350100M000100Y43/brain");
        break;
    }
    case TDSX_STATEMENT_NRD: {
        const Tdsx__Nrd *x = (const Tdsx__Nrd *)m;
        assert_string_equal(x->reason, "timeout");
        assert_memory_equal(x->nro_hash.data, h32, 32);
        break;
    }
    case TDSX_STATEMENT_AGREEMENT_TERMS: {
        const Tdsx__AgreementTerms *x = (const Tdsx__AgreementTerms *)m;
        assert_string_equal(x->purpose_text, "质量分析");
        assert_int_equal(x->n_actions, 1);
        assert_int_equal(x->actions[0]->kind, TDSX__ACTION_KIND__ACTION_KIND_RECEIVE);
        break;
    }
    case TDSX_STATEMENT_AGREEMENT_TERMINATION: {
        const Tdsx__AgreementTermination *x = (const Tdsx__AgreementTermination *)m;
        assert_string_equal(x->by, "consumer");
        break;
    }
    case TDSX_STATEMENT_TRUST_BUNDLE: {
        const Tdsx__TrustBundle *x = (const Tdsx__TrustBundle *)m;
        assert_int_equal(x->serial, 7);
        assert_int_equal(x->n_members, 1);
        assert_string_equal(x->members[0]->uscc, "91350100M000100Y43");
        break;
    }
    default: fail();
    }
}

/* Signs one statement of `kind` and returns its envelope (free()). */
static uint8_t *sign_kind(tdsx_statement_kind_t kind, size_t *len)
{
    struct samples s;
    fill_samples(&s);
    captured_t c = {0};
    assert_int_equal(tdsx_statement_submit(signer, kind, sample(&s, kind), capture_cb, &c), 0);
    assert_int_equal(tdsx_signer_flush(signer), 0);
    assert_int_equal(c.status, 0);
    *len = c.len;
    return c.env;
}

static void kinds_have_their_own_type_and_message(void **state)
{
    (void)state;
    static const char *const want[TDSX_STATEMENT_KIND_COUNT] = {
        "application/vnd.tdsx.nro.v1+protobuf",
        "application/vnd.tdsx.nrr.v1+protobuf",
        "application/vnd.tdsx.nrd.v1+protobuf",
        "application/vnd.tdsx.agreement-terms.v1+protobuf",
        "application/vnd.tdsx.agreement-termination.v1+protobuf",
        "application/vnd.tdsx.trust-bundle.v1+protobuf",
    };
    static const ProtobufCMessageDescriptor *const desc[TDSX_STATEMENT_KIND_COUNT] = {
        &tdsx__nro__descriptor,
        &tdsx__nrr__descriptor,
        &tdsx__nrd__descriptor,
        &tdsx__agreement_terms__descriptor,
        &tdsx__agreement_termination__descriptor,
        &tdsx__trust_bundle__descriptor,
    };
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        assert_string_equal(tdsx_statement_type((tdsx_statement_kind_t)k), want[k]);
        assert_ptr_equal(tdsx_statement_descriptor((tdsx_statement_kind_t)k), desc[k]);
    }
    assert_null(tdsx_statement_type(TDSX_STATEMENT_KIND_COUNT));
    assert_null(tdsx_statement_type((tdsx_statement_kind_t)-1));
    assert_null(tdsx_statement_descriptor(TDSX_STATEMENT_KIND_COUNT));
    assert_null(tdsx_statement_descriptor((tdsx_statement_kind_t)-1));
}

static void every_kind_round_trips_in_one_batch(void **state)
{
    (void)state;
    struct samples s;
    fill_samples(&s);
    captured_t c[TDSX_STATEMENT_KIND_COUNT] = {{0}};
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++)
        assert_int_equal(tdsx_statement_submit(signer, (tdsx_statement_kind_t)k,
                                               sample(&s, (tdsx_statement_kind_t)k), capture_cb,
                                               &c[k]),
                         0);
    assert_int_equal(tdsx_signer_flush(signer), 0);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        assert_int_equal(c[k].status, 0);
        tdsx_arena_t *a = test_arena();
        ProtobufCMessage *m = NULL;
        tdsx_verified_t info;
        assert_int_equal(tdsx_statement_open(v, (tdsx_statement_kind_t)k,
                                             tdsx_bytes(c[k].env, c[k].len), a, &m, &info),
                         0);
        check_decoded((tdsx_statement_kind_t)k, m);
        assert_memory_equal(info.key_id.b, tdsx_signer_key_id(signer)->b, TDSX_HASH_LEN);
        assert_int_equal(info.index, (uint64_t)k);
        assert_int_equal(info.tree_size, TDSX_STATEMENT_KIND_COUNT);
        /* The payload is the message serialised once, byte for byte. */
        const ProtobufCMessage *orig = sample(&s, (tdsx_statement_kind_t)k);
        size_t n = protobuf_c_message_get_packed_size(orig);
        uint8_t *packed = malloc(n ? n : 1);
        assert_int_equal(protobuf_c_message_pack(orig, packed), n);
        assert_int_equal(info.payload.n, n);
        assert_memory_equal(info.payload.p, packed, n);
        free(packed);
        /* info is optional. */
        m = NULL;
        assert_int_equal(tdsx_statement_open(v, (tdsx_statement_kind_t)k,
                                             tdsx_bytes(c[k].env, c[k].len), a, &m, NULL),
                         0);
        check_decoded((tdsx_statement_kind_t)k, m);
        tdsx_arena_free(a);
    }
    captured_free(c, TDSX_STATEMENT_KIND_COUNT);
    tdsx_verifier_free(v);
}

static void statement_opened_as_another_kind_is_refused(void **state)
{
    (void)state;
    tdsx_verifier_t *v = test_verifier(pk, 0);
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        size_t len;
        uint8_t *env = sign_kind((tdsx_statement_kind_t)k, &len);
        for (int j = 0; j < TDSX_STATEMENT_KIND_COUNT; j++) {
            if (j == k)
                continue;
            tdsx_arena_t *a = test_arena();
            ProtobufCMessage *m = (ProtobufCMessage *)&m;
            assert_int_equal(
                tdsx_statement_open(v, (tdsx_statement_kind_t)j, tdsx_bytes(env, len), a, &m, NULL),
                TDSX_E_SIG_TYPE);
            assert_ptr_equal(m, (ProtobufCMessage *)&m);
            tdsx_arena_free(a);
        }
        free(env);
    }
    tdsx_verifier_free(v);
}

static void submit_refuses_the_wrong_message(void **state)
{
    (void)state;
    struct samples s;
    fill_samples(&s);
    captured_t c = {0};
    /* An Nro offered as an Nrr, and each kind offered as its neighbour. */
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        int other = (k + 1) % TDSX_STATEMENT_KIND_COUNT;
        assert_int_equal(tdsx_statement_submit(signer, (tdsx_statement_kind_t)other,
                                               sample(&s, (tdsx_statement_kind_t)k), capture_cb,
                                               &c),
                         TDSX_E_INVAL);
    }
    assert_int_equal(
        tdsx_statement_submit(signer, TDSX_STATEMENT_KIND_COUNT, &s.nro.base, capture_cb, &c),
        TDSX_E_INVAL);
    assert_int_equal(tdsx_statement_submit(signer, TDSX_STATEMENT_NRO, NULL, capture_cb, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_statement_submit(signer, TDSX_STATEMENT_NRO, &s.nro.base, NULL, &c),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_signer_pending(signer), 0);
    assert_int_equal(tdsx_signer_flush(signer), 0);
    assert_int_equal(c.calls, 0);
}

static void signed_bytes_that_do_not_decode_are_refused(void **state)
{
    (void)state;
    tdsx_verifier_t *v = test_verifier(pk, 0);
    /* Properly signed, but not an Nro: a truncated varint, and a sender that is not UTF-8. */
    static const uint8_t not_protobuf[] = {0x40, 0xff};
    static const uint8_t bad_utf8[] = {0x12, 0x02, 0xc3, 0x28};
    static const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{not_protobuf, sizeof not_protobuf}, {bad_utf8, sizeof bad_utf8}};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        uint8_t *env =
            sign_one(signer, tdsx_statement_type(TDSX_STATEMENT_NRO), cases[i].p, cases[i].n, &len);
        tdsx_arena_t *a = test_arena();
        tdsx_verified_t info;
        /* The signature is fine... */
        assert_int_equal(tdsx_envelope_verify(v, tdsx_statement_type(TDSX_STATEMENT_NRO),
                                              tdsx_bytes(env, len), a, &info),
                         0);
        /* ...the statement is not. */
        ProtobufCMessage *m = (ProtobufCMessage *)&m;
        assert_int_equal(
            tdsx_statement_open(v, TDSX_STATEMENT_NRO, tdsx_bytes(env, len), a, &m, NULL),
            TDSX_E_PROTO_DECODE);
        assert_ptr_equal(m, (ProtobufCMessage *)&m);
        tdsx_arena_free(a);
        free(env);
    }
    tdsx_verifier_free(v);
}

static void unverified_statements_are_never_decoded(void **state)
{
    (void)state;
    size_t len;
    uint8_t *env = sign_kind(TDSX_STATEMENT_NRO, &len);
    tdsx_verifier_t *stranger = test_verifier(NULL, 0), *v = test_verifier(pk, 0);
    tdsx_arena_t *a = test_arena();
    ProtobufCMessage *m = (ProtobufCMessage *)&m;
    tdsx_verified_t info;
    memset(&info, 0x77, sizeof info);
    tdsx_verified_t untouched = info;

    assert_int_equal(
        tdsx_statement_open(stranger, TDSX_STATEMENT_NRO, tdsx_bytes(env, len), a, &m, &info),
        TDSX_E_SIGNER_UNKNOWN);
    /* A flipped payload byte: the statement would still decode, but must not. */
    Tdsx__Envelope *e = decode_env(env, len);
    e->payload.data[e->payload.len - 1] ^= 0x01;
    size_t n;
    uint8_t *bad = encode_env(e, &n);
    tdsx__envelope__free_unpacked(e, NULL);
    assert_int_equal(tdsx_statement_open(v, TDSX_STATEMENT_NRO, tdsx_bytes(bad, n), a, &m, &info),
                     TDSX_E_SIG_INVALID);
    assert_int_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_NRO, tdsx_bytes(env, len - 1), a, &m, &info),
        TDSX_E_ENVELOPE);
    assert_int_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_KIND_COUNT, tdsx_bytes(env, len), a, &m, &info),
        TDSX_E_INVAL);
    assert_int_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_NRO, tdsx_bytes(env, len), a, NULL, &info),
        TDSX_E_INVAL);
    assert_ptr_equal(m, (ProtobufCMessage *)&m);
    assert_memory_equal(&info, &untouched, sizeof info);
    free(bad);
    tdsx_arena_free(a);
    tdsx_verifier_free(stranger);
    tdsx_verifier_free(v);
    free(env);
}

static void statement_decoding_shares_the_arena_budget(void **state)
{
    (void)state;
    /* A bundle with many members: the envelope fits a small budget, the decoded bundle (one
     * structure per member) does not. Some budget must fail after a successful verification. */
    struct samples s;
    fill_samples(&s);
    enum { MEMBERS = 200 };
    Tdsx__Member *many[MEMBERS];
    for (int i = 0; i < MEMBERS; i++)
        many[i] = &s.member;
    s.bundle.members = many;
    s.bundle.n_members = MEMBERS;
    captured_t c = {0};
    assert_int_equal(
        tdsx_statement_submit(signer, TDSX_STATEMENT_TRUST_BUNDLE, &s.bundle.base, capture_cb, &c),
        0);
    assert_int_equal(tdsx_signer_flush(signer), 0);
    assert_int_equal(c.status, 0);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    int saw_late_budget = 0, opened = 0;
    for (size_t budget = 1024; budget <= 1024 * 1024 && !opened; budget += 1024) {
        tdsx_arena_t *a;
        assert_int_equal(tdsx_arena_new(budget, &a), 0);
        tdsx_verifier_stats_t before, after;
        tdsx_verifier_stats(v, &before);
        ProtobufCMessage *m = NULL;
        int rc = tdsx_statement_open(v, TDSX_STATEMENT_TRUST_BUNDLE, tdsx_bytes(c.env, c.len), a,
                                     &m, NULL);
        tdsx_verifier_stats(v, &after);
        if (rc == 0) {
            assert_int_equal(((Tdsx__TrustBundle *)m)->n_members, MEMBERS);
            opened = 1;
        } else {
            assert_int_equal(rc, TDSX_E_ARENA_BUDGET);
            assert_null(m);
            if (after.verified > before.verified)
                saw_late_budget = 1;
        }
        assert_true(tdsx_arena_used(a) <= budget);
        tdsx_arena_free(a);
    }
    assert_true(opened);
    assert_true(saw_late_budget);
    captured_free(&c, 1);
    tdsx_verifier_free(v);
}

static void allocation_failures_are_reported(void **state)
{
    (void)state;
    struct samples s;
    fill_samples(&s);
    captured_t c = {0};
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_statement_submit(signer, TDSX_STATEMENT_NRO, &s.nro.base, capture_cb, &c),
                     TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_int_equal(tdsx_signer_flush(signer), 0);
    assert_int_equal(c.calls, 0);

    size_t len;
    uint8_t *env = sign_kind(TDSX_STATEMENT_AGREEMENT_TERMS, &len);
    tdsx_verifier_t *v = test_verifier(pk, 0);
    int nomem = 0;
    for (unsigned long k = 1;; k++) {
        tdsx_arena_t *a = test_arena();
        ProtobufCMessage *m = NULL;
        tdsx_test_alloc_fail_after(k);
        int rc = tdsx_statement_open(v, TDSX_STATEMENT_AGREEMENT_TERMS, tdsx_bytes(env, len), a, &m,
                                     NULL);
        tdsx_test_alloc_reset();
        tdsx_arena_free(a);
        if (rc == 0)
            break;
        assert_int_equal(rc, TDSX_E_NOMEM);
        assert_null(m);
        nomem++;
        assert_true(k < 100);
    }
    assert_true(nomem > 0);
    tdsx_verifier_free(v);
    free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kinds_have_their_own_type_and_message),
        cmocka_unit_test(every_kind_round_trips_in_one_batch),
        cmocka_unit_test(statement_opened_as_another_kind_is_refused),
        cmocka_unit_test(submit_refuses_the_wrong_message),
        cmocka_unit_test(signed_bytes_that_do_not_decode_are_refused),
        cmocka_unit_test(unverified_statements_are_never_decoded),
        cmocka_unit_test(statement_decoding_shares_the_arena_budget),
        cmocka_unit_test(allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
