/*
 * gen_seeds.c — writes the seed corpora of tests/fuzz/fuzz_envelope.c and fuzz_proof.c (a
 * tool, not a test): valid envelopes of every statement kind, in batches of 1, 3 and 17, signed
 * with the fuzz target's key (seed = 32 bytes 0xf5), a few that must be refused, and valid
 * inclusion and consistency proofs in fuzz_proof's input format.
 *
 *     tdsx_gen_crypto_seeds tests/fuzz/corpus     (writes corpus/envelope/ and corpus/proof/)
 *
 * The output is deterministic (Ed25519 signatures are), so regenerating changes nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto.h"

static const char *outdir;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s\n", what);
    exit(1);
}

static void write_seed(const char *sub, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("cannot create the corpus directory");
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die("cannot write a seed");
}

/* ------------------------------------------------------------------------------------------
 * Envelopes
 * ---------------------------------------------------------------------------------------- */
struct named {
    char name[64];
};

static void on_signed(void *userdata, int status, tdsx_bytes_t envelope)
{
    struct named *n = userdata;
    if (status != 0)
        die("signing failed");
    write_seed("envelope", n->name, envelope.p, envelope.n);
}

static uint8_t id16[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                           0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static uint8_t h32[32] = {0xab, 0xcd, 0xef};

static void submit_kind(tdsx_signer_t *s, tdsx_statement_kind_t kind, struct named *n)
{
    Tdsx__Nro nro = TDSX__NRO__INIT;
    Tdsx__Nrr nrr = TDSX__NRR__INIT;
    Tdsx__Nrd nrd = TDSX__NRD__INIT;
    Tdsx__Action action = TDSX__ACTION__INIT;
    Tdsx__Action *actions[1] = {&action};
    Tdsx__AgreementTerms terms = TDSX__AGREEMENT_TERMS__INIT;
    Tdsx__AgreementTermination term = TDSX__AGREEMENT_TERMINATION__INIT;
    Tdsx__Member member = TDSX__MEMBER__INIT;
    Tdsx__Member *members[2] = {&member, &member};
    uint8_t der[3] = {0x30, 0x01, 0x00};
    ProtobufCBinaryData certs[1] = {{sizeof der, der}};
    Tdsx__TrustBundle bundle = TDSX__TRUST_BUNDLE__INIT;
    const ProtobufCMessage *m = NULL;

    switch (kind) {
    case TDSX_STATEMENT_NRO:
        nro.transfer_id = (ProtobufCBinaryData){16, id16};
        nro.sender = "91350100M000100Y43/ent-a";
        nro.receiver = "91350100M000100Y43/brain";
        nro.payload_sha256 = (ProtobufCBinaryData){32, h32};
        nro.payload_length = 1 << 20;
        nro.sequence = 1;
        nro.time = 1767225600;
        nro.policy_rule = "r3";
        m = &nro.base;
        break;
    case TDSX_STATEMENT_NRR:
        nrr.transfer_id = (ProtobufCBinaryData){16, id16};
        nrr.nro_hash = (ProtobufCBinaryData){32, h32};
        nrr.received_length = 1 << 20;
        nrr.status = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
        nrr.receiver = "91350100M000100Y43/brain";
        m = &nrr.base;
        break;
    case TDSX_STATEMENT_NRD:
        nrd.transfer_id = (ProtobufCBinaryData){16, id16};
        nrd.reason = "timeout";
        m = &nrd.base;
        break;
    case TDSX_STATEMENT_AGREEMENT_TERMS:
        action.kind = TDSX__ACTION_KIND__ACTION_KIND_RECEIVE;
        terms.provider = "91350100M000100Y43/ent-a";
        terms.consumer = "91350100M000100Y43/brain";
        terms.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT_DATASET_ID;
        terms.dataset_id = "ds-1";
        terms.purpose_text = "质量分析";
        terms.n_actions = 1;
        terms.actions = actions;
        terms.not_after = 1800000000;
        m = &terms.base;
        break;
    case TDSX_STATEMENT_AGREEMENT_TERMINATION:
        term.agreement_hash = (ProtobufCBinaryData){32, h32};
        term.by = "91350100M000100Y43/brain";
        m = &term.base;
        break;
    case TDSX_STATEMENT_TRUST_BUNDLE:
        member.uscc = "91350100M000100Y43";
        member.role = TDSX__ROLE__ROLE_BRAIN;
        member.endpoint = "127.0.0.1:7443";
        bundle.serial = 3;
        bundle.n_root_certs = 1;
        bundle.root_certs = certs;
        bundle.n_members = 2;
        bundle.members = members;
        m = &bundle.base;
        break;
    default: die("unknown kind");
    }
    if (tdsx_statement_submit(s, kind, m, on_signed, n) != 0)
        die("submit failed");
}

static void envelopes(void)
{
    uint8_t seed[32];
    tdsx_signer_t *s = NULL, *stranger = NULL;
    memset(seed, 0xf5, sizeof seed);
    if (tdsx_signer_new(seed, NULL, &s) != 0)
        die("no signer");
    memset(seed, 0x5f, sizeof seed);
    if (tdsx_signer_new(seed, NULL, &stranger) != 0)
        die("no signer");

    struct named names[TDSX_STATEMENT_KIND_COUNT + 3 + 17 + 1];
    size_t used = 0;
    /* Each kind alone (batch of one, empty path). */
    for (int k = 0; k < TDSX_STATEMENT_KIND_COUNT; k++) {
        struct named *n = &names[used++];
        snprintf(n->name, sizeof n->name, "one-%d", k);
        submit_kind(s, (tdsx_statement_kind_t)k, n);
        if (tdsx_signer_flush(s) != 0)
            die("flush failed");
    }
    /* A batch of 3 and one of 17: paths of 1-2 and 4-5 hashes. */
    static const size_t sizes[2] = {3, 17};
    for (size_t b = 0; b < 2; b++) {
        for (size_t i = 0; i < sizes[b]; i++) {
            struct named *n = &names[used++];
            snprintf(n->name, sizeof n->name, "batch%zu-%zu", sizes[b], i);
            submit_kind(s, (tdsx_statement_kind_t)(i % TDSX_STATEMENT_KIND_COUNT), n);
        }
        if (tdsx_signer_flush(s) != 0)
            die("flush failed");
    }
    /* Signed by a key the fuzz keyring does not hold. */
    struct named *n = &names[used++];
    snprintf(n->name, sizeof n->name, "stranger");
    submit_kind(stranger, TDSX_STATEMENT_NRO, n);
    if (tdsx_signer_flush(stranger) != 0)
        die("flush failed");
    /* Not an envelope at all. */
    static const uint8_t junk[] = {0x0a, 0x05, 'a', 'b'};
    write_seed("envelope", "truncated", junk, sizeof junk);
    tdsx_signer_free(s);
    tdsx_signer_free(stranger);
}

/* ------------------------------------------------------------------------------------------
 * Proofs, in fuzz_proof.c's input format
 * ---------------------------------------------------------------------------------------- */
static void put_u64(tdsx_buf_t *b, uint64_t v)
{
    if (tdsx_buf_u64be(b, v) != 0)
        die("buffer");
}

static void put_hashes(tdsx_buf_t *b, const tdsx_hash_t *h, size_t n)
{
    if (tdsx_buf_append(b, h, n * sizeof *h) != 0)
        die("buffer");
}

static void proofs(void)
{
    tdsx_hash_t leaves[64], path[TDSX_MERKLE_CONSISTENCY_MAX], root, root_m;
    for (size_t i = 0; i < 64; i++) {
        uint8_t d[2] = {(uint8_t)i, 0x77};
        if (tdsx_merkle_leaf_hash(d, sizeof d, &leaves[i]) != 0)
            die("hash");
    }
    static const size_t incl[][2] = {{0, 1}, {0, 2}, {1, 3}, {5, 8}, {12, 13}, {31, 64}};
    for (size_t c = 0; c < sizeof incl / sizeof incl[0]; c++) {
        size_t i = incl[c][0], n = incl[c][1], len;
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1 << 16);
        if (tdsx_merkle_root(leaves, n, &root) != 0 ||
            tdsx_merkle_inclusion_proof(leaves, n, i, path, &len) != 0)
            die("proof");
        if (tdsx_buf_append(&b, "\x00", 1) != 0)
            die("buffer");
        put_u64(&b, i);
        put_u64(&b, n);
        put_hashes(&b, &leaves[i], 1);
        put_hashes(&b, &root, 1);
        put_hashes(&b, path, len);
        char name[64];
        snprintf(name, sizeof name, "incl-%zu-%zu", i, n);
        write_seed("proof", name, b.p, b.len);
        tdsx_buf_free(&b);
    }
    static const size_t cons[][2] = {{1, 2}, {2, 5}, {3, 7}, {4, 8}, {6, 8}, {17, 64}};
    for (size_t c = 0; c < sizeof cons / sizeof cons[0]; c++) {
        size_t m = cons[c][0], n = cons[c][1], len;
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1 << 16);
        if (tdsx_merkle_root(leaves, m, &root_m) != 0 || tdsx_merkle_root(leaves, n, &root) != 0 ||
            tdsx_merkle_consistency_proof(leaves, n, m, path, &len) != 0)
            die("proof");
        if (tdsx_buf_append(&b, "\x01", 1) != 0)
            die("buffer");
        put_u64(&b, m);
        put_u64(&b, n);
        put_hashes(&b, &root_m, 1);
        put_hashes(&b, &root, 1);
        put_hashes(&b, path, len);
        char name[64];
        snprintf(name, sizeof name, "cons-%zu-%zu", m, n);
        write_seed("proof", name, b.p, b.len);
        tdsx_buf_free(&b);
    }
    /* Round trips: n, index, m, flip, leaf data. */
    static const uint8_t rt1[] = {2, 6, 3, 4, 0x01, 0x07, 'l', 'e', 'a', 'v', 'e', 's'};
    static const uint8_t rt2[] = {2, 63, 40, 17, 0x03, 0x21, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    write_seed("proof", "roundtrip-7", rt1, sizeof rt1);
    write_seed("proof", "roundtrip-64", rt2, sizeof rt2);
    /* The largest tree: an index near 2^64 with a full-length path. */
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1 << 16);
    if (tdsx_buf_append(&b, "\x00", 1) != 0)
        die("buffer");
    put_u64(&b, UINT64_MAX - 1);
    put_u64(&b, UINT64_MAX);
    put_hashes(&b, leaves, 2);
    put_hashes(&b, leaves, 63);
    write_seed("proof", "incl-huge", b.p, b.len);
    tdsx_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    envelopes();
    proofs();
    return 0;
}
