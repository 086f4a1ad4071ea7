/* Trust-status reports (SPEC §12): the note text and its one accepted form, signing and opening,
 * chaining, and the tally over log entries built here (receipts of each grade and direction,
 * denials, NRDs, integrity failures, agreements). */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "tlog.h"
#include "report.h"

#define SELF "91370000MA3C0001X1/ent-a"
#define CENTRE "91370000MA3C000CEN/centre"
#define BRAIN "91370000MA3C000BRN/brain"
#define ENT_B "91370000MA3C0002X2/ent-b"
#define STRANGER "91370000MA3C0009X9/nobody"

/* ---- a report to play with ------------------------------------------------------------------ */

static tdsx_report_t *sample(void)
{
    tdsx_report_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    snprintf(r->node, sizeof r->node, "%s", SELF);
    r->role = TDSX_ROLE_ENTERPRISE;
    r->sequence = 2;
    r->period_from = 1700000000;
    r->period_to = 1702592000;
    r->first = r->prev_size = 10;
    r->size = 42;
    for (int i = 0; i < TDSX_HASH_LEN; i++) {
        r->root.b[i] = (uint8_t)i;
        r->prev_root.b[i] = (uint8_t)(0xff - i);
        r->prev_report.b[i] = (uint8_t)(i * 7 + 1);
        r->policy.b[i] = (uint8_t)(i * 3);
    }
    r->bundle_serial = 7;
    r->bundle_expires = 1800000000;
    r->auth_not_after = 1750000000;
    r->sign_not_after = 1760000000;
    r->cert_status = TDSX_REPORT_CERT_GOOD;
    snprintf(r->software, sizeof r->software, "0.1.0");
    r->counts.transfers[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_1 + 1][1] = 3;
    r->counts.transfers[TDSX_REPORT_RELAYED][TDSX_REPORT_IMPORTANT][0] = 12345678901234ULL;
    r->counts.n_denials = 2;
    r->counts.denials[0] = (tdsx_report_denial_t){TDSX_REPORT_IN, "default-deny", 4};
    r->counts.denials[1] = (tdsx_report_denial_t){TDSX_REPORT_OUT, "line-3", 1};
    r->counts.agreements_active = 2;
    r->counts.agreements_terminated = 1;
    r->counts.agreements_expired = 0;
    r->counts.unacknowledged = 5;
    r->counts.integrity_failures = 1;
    r->counts.n_peers = 2;
    snprintf(r->counts.peers[0].id, sizeof r->counts.peers[0].id, "%s", BRAIN);
    r->counts.peers[0].role = TDSX_ROLE_BRAIN;
    snprintf(r->counts.peers[1].id, sizeof r->counts.peers[1].id, "%s", CENTRE);
    r->counts.peers[1].role = TDSX_ROLE_CENTRE;
    return r;
}

/* The encoded text of r as a NUL-terminated heap string. */
static char *text_of(const tdsx_report_t *r)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_REPORT_TEXT_MAX);
    assert_int_equal(tdsx_report_encode(r, &b), 0);
    assert_int_equal(tdsx_buf_append(&b, "", 1), 0);
    return tdsx_buf_take(&b, NULL);
}

static int parse_str(const char *s, tdsx_report_t *out)
{
    return tdsx_report_parse(tdsx_bytes(s, strlen(s)), out);
}

/* s with the first occurrence of `from` replaced by `to` (which must be there). */
static char *replaced(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

static tdsx_note_signer_t *signer_for(const char *name)
{
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    randombytes_buf(seed, sizeof seed);
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_note_signer_new(name, TDSX_NOTE_ED25519, seed, &s), 0);
    return s;
}

/* ---- text ------------------------------------------------------------------------------------ */

static void encode_and_parse_are_inverses(void **state)
{
    (void)state;
    tdsx_report_t *r = sample();
    char *text = text_of(r);
    /* Human-readable, in the documented order. */
    assert_non_null(strstr(text, "tdsx-report/v1\nnode " SELF "\nrole enterprise\nsequence 2\n"));
    assert_non_null(strstr(text, "\nrange 10 42\ncheckpoint 42 "));
    assert_non_null(strstr(text, "\ntransfers in general-2 brain 3\n"));
    assert_non_null(strstr(text, "\ntransfers relayed important centre 12345678901234\n"));
    assert_non_null(strstr(text, "\ndenials 2\ndenied in default-deny 4\ndenied out line-3 1\n"));
    assert_non_null(strstr(text, "\npeers 2\npeer " BRAIN " brain\npeer " CENTRE " centre\n"));

    tdsx_report_t *back = calloc(1, sizeof *back);
    assert_non_null(back);
    assert_int_equal(parse_str(text, back), 0);
    char *again = text_of(back);
    assert_string_equal(text, again);
    assert_string_equal(back->node, SELF);
    assert_int_equal(back->sequence, 2);
    assert_int_equal(back->size, 42);
    assert_memory_equal(back->root.b, r->root.b, TDSX_HASH_LEN);
    assert_memory_equal(back->prev_report.b, r->prev_report.b, TDSX_HASH_LEN);
    assert_int_equal(back->counts.transfers[TDSX_REPORT_RELAYED][TDSX_REPORT_IMPORTANT][0],
                     12345678901234ULL);
    assert_int_equal(tdsx_report_counts_diff(&r->counts, &back->counts, NULL, 0), 0);
    free(again);
    free(text);
    free(back);
    free(r);
}

static void parse_refuses_every_defect(void **state)
{
    (void)state;
    tdsx_report_t *r = sample();
    char *good = text_of(r);
    tdsx_report_t *out = calloc(1, sizeof *out);
    assert_non_null(out);
    static const struct {
        const char *from, *to, *why;
    } bad[] = {
        {"tdsx-report/v1\n", "tdsx-report/v2\n", "other magic"},
        {"sequence 2\n", "sequence 2\nsequence 2\n", "duplicate line"},
        {"sequence 2\n", "sequence 2\ncolour blue\n", "unknown key"},
        {"sequence 2\n", "", "missing line"},
        {"role enterprise\nsequence 2\n", "sequence 2\nrole enterprise\n", "misplaced line"},
        {"sequence 2\n", "sequence 02\n", "leading zero"},
        {"sequence 2\n", "sequence -2\n", "negative"},
        {"sequence 2\n", "sequence 2x\n", "not a number"},
        {"sequence 2\n", "sequence 18446744073709551616\n", "overflow"},
        {"sequence 2\n", "sequence  2\n", "double space"},
        {"sequence 2\n", "sequence 2 \n", "trailing space"},
        {"sequence 2\n", "sequence 2\r\n", "carriage return"},
        {"sequence 2\n", "sequence\n", "missing value"},
        {"sequence 2\n", "sequence 0\n", "sequence 0"},
        {"role enterprise", "role king", "unknown role"},
        {"period 1700000000 1702592000", "period 1702592000 1700000000", "period backwards"},
        {"period 1700000000 1702592000", "period 1700000000 9223372036854775808",
         "time over int64"},
        {"range 10 42", "range 10 41", "range end is not the checkpoint size"},
        {"range 10 42", "range 11 42", "range start is not the previous size"},
        {"previous-report 01", "previous-report 0A", "uppercase hex"},
        {"policy 00", "policy 0", "short hash"},
        {"cert-status good", "cert-status fine", "unknown status"},
        {"denials 2\n", "denials 3\n", "more denials than lines"},
        {"denied in default-deny 4\ndenied out line-3 1\n",
         "denied out line-3 1\ndenied in default-deny 4\n", "unsorted denials"},
        {"denied out line-3 1\n", "denied out line-3 0\n", "zero denial"},
        {"denied out line-3 1\n", "denied relayed line-3 1\n", "denial direction"},
        {"transfers in core centre 0\n", "transfers in core brain 0\n", "transfers out of order"},
        {"peer " BRAIN " brain\npeer " CENTRE " centre\n",
         "peer " CENTRE " centre\npeer " BRAIN " brain\n", "unsorted peers"},
        {"peer " BRAIN " brain\npeer " CENTRE " centre\n",
         "peer " BRAIN " brain\npeer " BRAIN " brain\n", "duplicate peer"},
        {"peers 2\n", "peers 1\n", "trailing line after the peers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = replaced(good, bad[i].from, bad[i].to);
        int rc = parse_str(t, out);
        if (rc != TDSX_E_REPORT)
            fail_msg("%s: parse gave %d", bad[i].why, rc);
        free(t);
    }
    /* A base64 root that decodes but is not the canonical encoding. */
    char *cp = strstr(good, "\ncheckpoint 42 ");
    assert_non_null(cp);
    char *eol = strchr(cp + 1, '\n');
    assert_true(eol[-1] == '=');
    char *t = strdup(good);
    /* root[30..31] = 1e 1f: the last digit is '8' (111100); '9' sets a padding bit. */
    assert_int_equal(t[eol - good - 2], '8');
    t[eol - good - 2] = '9';
    assert_int_equal(parse_str(t, out), TDSX_E_REPORT);
    free(t);
    /* Trailing junk, no final newline, an embedded NUL, empty. */
    size_t n = strlen(good);
    char *junk = malloc(n + 8);
    snprintf(junk, n + 8, "%sjunk\n", good);
    assert_int_equal(parse_str(junk, out), TDSX_E_REPORT);
    assert_int_equal(tdsx_report_parse(tdsx_bytes(good, n - 1), out), TDSX_E_REPORT);
    memcpy(junk, good, n);
    junk[10] = '\0';
    assert_int_equal(tdsx_report_parse(tdsx_bytes(junk, n), out), TDSX_E_REPORT);
    assert_int_equal(tdsx_report_parse(tdsx_bytes(NULL, 0), out), TDSX_E_REPORT);
    free(junk);
    /* The untouched text still parses: the refusals above are the edits'. */
    assert_int_equal(parse_str(good, out), 0);
    free(good);
    free(out);
    free(r);
}

static void encode_refuses_what_it_could_not_parse_back(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_REPORT_TEXT_MAX);
    tdsx_report_t *r = sample();
    r->sequence = 0;
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    free(r);
    r = sample();
    r->first = 9;
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    free(r);
    r = sample();
    memset(r->prev_report.b, 0, TDSX_HASH_LEN); /* only the first report has no predecessor */
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    free(r);
    r = sample();
    snprintf(r->node, sizeof r->node, "has space");
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    free(r);
    r = sample();
    r->counts.denials[1].dir = TDSX_REPORT_IN; /* "line-3" before "default-deny": unsorted */
    snprintf(r->counts.denials[1].rule, sizeof r->counts.denials[1].rule, "a-rule");
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    free(r);
    r = sample();
    r->counts.peers[1].role = TDSX_ROLE_NONE;
    assert_int_equal(tdsx_report_encode(r, &b), TDSX_E_INVAL);
    assert_int_equal(b.len, 0); /* nothing written by any refusal */
    free(r);
    tdsx_buf_free(&b);
}

/* ---- signed note ------------------------------------------------------------------------------
 */

static void signed_report_opens_with_the_nodes_key_only(void **state)
{
    (void)state;
    tdsx_report_t *r = sample(), *out = calloc(1, sizeof *out);
    assert_non_null(out);
    tdsx_note_signer_t *key = signer_for(SELF), *other = signer_for(SELF),
                       *named = signer_for(BRAIN);
    tdsx_buf_t note;
    tdsx_buf_init(&note, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_report_sign(r, key, &note), 0);
    assert_int_equal(tdsx_report_open(tdsx_buf_bytes(&note), tdsx_note_signer_verifier(key), out),
                     0);
    assert_int_equal(out->sequence, 2);
    /* Another key under the same name: the signature line is not its. */
    assert_int_equal(tdsx_report_open(tdsx_buf_bytes(&note), tdsx_note_signer_verifier(other), out),
                     TDSX_E_NOTE_UNVERIFIED);
    /* A flipped byte of the text. */
    char *flip = malloc(note.len);
    memcpy(flip, note.p, note.len);
    char *seq = strstr(flip, "sequence 2");
    seq[9] = '3';
    assert_int_equal(
        tdsx_report_open(tdsx_bytes(flip, note.len), tdsx_note_signer_verifier(key), out),
        TDSX_E_SIG_INVALID);
    free(flip);
    /* A key named after another node cannot sign this node's report ... */
    tdsx_buf_t b2;
    tdsx_buf_init(&b2, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_report_sign(r, named, &b2), TDSX_E_KEY);
    /* ... and a report naming another node than its signer is refused on open. */
    snprintf(r->node, sizeof r->node, "%s", BRAIN);
    assert_int_equal(tdsx_report_sign(r, named, &b2), 0);
    assert_int_equal(tdsx_report_open(tdsx_buf_bytes(&b2), tdsx_note_signer_verifier(named), out),
                     0);
    tdsx_buf_t text;
    tdsx_buf_init(&text, TDSX_NOTE_MAX);
    snprintf(r->node, sizeof r->node, "%s", SELF);
    assert_int_equal(tdsx_report_encode(r, &text), 0);
    const tdsx_note_signer_t *ns[1] = {named};
    tdsx_buf_reset(&b2);
    assert_int_equal(tdsx_note_sign(tdsx_buf_bytes(&text), ns, 1, &b2), 0);
    assert_int_equal(tdsx_report_open(tdsx_buf_bytes(&b2), tdsx_note_signer_verifier(named), out),
                     TDSX_E_REPORT);
    tdsx_buf_free(&text);
    tdsx_buf_free(&b2);
    tdsx_buf_free(&note);
    tdsx_note_signer_free(key);
    tdsx_note_signer_free(other);
    tdsx_note_signer_free(named);
    free(out);
    free(r);
}

/* ---- chaining ---------------------------------------------------------------------------------
 */

static void chain_accepts_the_next_report_only(void **state)
{
    (void)state;
    tdsx_report_t *first = sample(), *next = sample();
    first->sequence = 1;
    first->first = first->prev_size = 0;
    memset(first->prev_report.b, 0, TDSX_HASH_LEN);
    assert_int_equal(tdsx_merkle_root(NULL, 0, &first->prev_root), 0);
    assert_int_equal(tdsx_report_chain_check(NULL, NULL, first), 0);
    tdsx_hash_t h;
    assert_int_equal(tdsx_report_note_hash(tdsx_bytes("note", 4), &h), 0);
    next->sequence = 2;
    next->first = next->prev_size = first->size;
    next->prev_root = first->root;
    next->prev_report = h;
    next->period_from = first->period_to;
    next->period_to = first->period_to + 10;
    assert_int_equal(tdsx_report_chain_check(first, &h, next), 0);

    /* Each link broken on its own. */
    tdsx_hash_t other = h;
    other.b[0] ^= 1;
    assert_int_equal(tdsx_report_chain_check(first, &other, next), TDSX_E_REPORT_CHAIN);
    next->sequence = 3;
    assert_int_equal(tdsx_report_chain_check(first, &h, next), TDSX_E_REPORT_CHAIN);
    next->sequence = 2;
    next->prev_root.b[5] ^= 1;
    assert_int_equal(tdsx_report_chain_check(first, &h, next), TDSX_E_REPORT_CHAIN);
    next->prev_root = first->root;
    next->first = next->prev_size = first->size - 1;
    assert_int_equal(tdsx_report_chain_check(first, &h, next), TDSX_E_REPORT_CHAIN);
    next->first = next->prev_size = first->size;
    snprintf(next->node, sizeof next->node, "%s", BRAIN);
    assert_int_equal(tdsx_report_chain_check(first, &h, next), TDSX_E_REPORT_CHAIN);
    snprintf(next->node, sizeof next->node, "%s", SELF);
    next->period_from = first->period_to - 1;
    assert_int_equal(tdsx_report_chain_check(first, &h, next), TDSX_E_REPORT_CHAIN);
    /* A second report presented as the first. */
    assert_int_equal(tdsx_report_chain_check(NULL, NULL, next), TDSX_E_REPORT_CHAIN);
    free(first);
    free(next);
}

/* ---- tally ------------------------------------------------------------------------------------
 */

/* An unsigned envelope around msg: the tally decodes without verifying (report.h). */
static tdsx_buf_t envelope(tdsx_statement_kind_t kind, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *payload = malloc(n ? n : 1);
    assert_non_null(payload);
    protobuf_c_message_pack(msg, payload);
    Tdsx__Envelope e = TDSX__ENVELOPE__INIT;
    e.payload_type = (char *)tdsx_statement_type(kind);
    e.payload.data = payload;
    e.payload.len = n;
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_TLOG_ENTRY_MAX);
    size_t en = protobuf_c_message_get_packed_size(&e.base);
    assert_int_equal(tdsx_buf_reserve(&b, en), 0);
    protobuf_c_message_pack(&e.base, b.p);
    b.len = en;
    free(payload);
    return b;
}

static void add_entry(tdsx_buf_t *log, size_t *count, uint8_t type, size_t n, tdsx_bytes_t *items)
{
    tdsx_log_entry_t e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.n = n;
    for (size_t i = 0; i < n; i++)
        e.item[i] = items[i];
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_TLOG_ENTRY_MAX);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    uint8_t len[4] = {(uint8_t)(b.len >> 24), (uint8_t)(b.len >> 16), (uint8_t)(b.len >> 8),
                      (uint8_t)b.len};
    assert_int_equal(tdsx_buf_append(log, len, 4), 0);
    assert_int_equal(tdsx_buf_append(log, b.p, b.len), 0);
    tdsx_buf_free(&b);
    (*count)++;
}

/* A receipt or NRD entry for a transfer from `sender` to `receiver`. */
static void transfer(tdsx_buf_t *log, size_t *count, const char *sender, const char *receiver,
                     Tdsx__Grade grade, uint32_t level, int relay, int nrr_status, const char *rule)
{
    static uint8_t upstream[TDSX_HASH_LEN] = {1};
    Tdsx__Tags tags = TDSX__TAGS__INIT;
    tags.grade = grade;
    tags.general_level = level;
    Tdsx__Nro nro = TDSX__NRO__INIT;
    nro.sender = (char *)sender;
    nro.receiver = (char *)receiver;
    nro.tags = &tags;
    if (relay) {
        nro.upstream_receipt_hash.data = upstream;
        nro.upstream_receipt_hash.len = sizeof upstream;
    }
    tdsx_buf_t a = envelope(TDSX_STATEMENT_NRO, &nro.base), b;
    if (nrr_status == 0) {
        Tdsx__Nrd nrd = TDSX__NRD__INIT;
        nrd.sender = (char *)sender;
        nrd.receiver = (char *)receiver;
        b = envelope(TDSX_STATEMENT_NRD, &nrd.base);
    } else {
        Tdsx__Nrr nrr = TDSX__NRR__INIT;
        nrr.status = (Tdsx__NrrStatus)nrr_status;
        nrr.policy_rule = (char *)(rule ? rule : "line-1");
        b = envelope(TDSX_STATEMENT_NRR, &nrr.base);
    }
    tdsx_bytes_t items[2] = {tdsx_buf_bytes(&a), tdsx_buf_bytes(&b)};
    add_entry(log, count, nrr_status ? TDSX_LOG_ENTRY_RECEIPT : TDSX_LOG_ENTRY_NRD, 2, items);
    tdsx_buf_free(&a);
    tdsx_buf_free(&b);
}

static void agreement(tdsx_buf_t *log, size_t *count, const char *event, uint8_t id,
                      int64_t not_after)
{
    Tdsx__AgreementTerms terms = TDSX__AGREEMENT_TERMS__INIT;
    terms.provider = (char *)SELF;
    terms.consumer = (char *)BRAIN;
    terms.not_before = 1;
    terms.not_after = not_after;
    tdsx_buf_t p = envelope(TDSX_STATEMENT_AGREEMENT_TERMS, &terms.base);
    uint8_t hash[TDSX_HASH_LEN];
    memset(hash, id, sizeof hash);
    tdsx_bytes_t items[7] = {tdsx_bytes(event, strlen(event)),
                             tdsx_bytes(SELF, strlen(SELF)),
                             tdsx_bytes(hash, sizeof hash),
                             tdsx_buf_bytes(&p),
                             tdsx_bytes(NULL, 0),
                             tdsx_bytes(NULL, 0),
                             tdsx_bytes(NULL, 0)};
    add_entry(log, count, TDSX_LOG_ENTRY_AGREEMENT, 7, items);
    tdsx_buf_free(&p);
}

static int roles(void *ud, const char *id, tdsx_role_t *role)
{
    (*(int *)ud)++;
    if (strcmp(id, CENTRE) == 0)
        *role = TDSX_ROLE_CENTRE;
    else if (strcmp(id, BRAIN) == 0)
        *role = TDSX_ROLE_BRAIN;
    else if (strcmp(id, ENT_B) == 0)
        *role = TDSX_ROLE_ENTERPRISE;
    else
        return TDSX_E_NOTFOUND;
    return 0;
}

/* Feeds every entry of a log built by the helpers (be32 length || entry, ...). */
static int feed(tdsx_report_tally_t *t, const tdsx_buf_t *log)
{
    tdsx_bytes_t c = tdsx_buf_bytes(log), e;
    uint32_t len;
    int rc = 0;
    while (rc == 0 && c.n) {
        assert_int_equal(tdsx_bytes_u32be(&c, &len), 0);
        assert_int_equal(tdsx_bytes_take(&c, len, &e), 0);
        rc = tdsx_report_tally_add(t, e);
    }
    return rc;
}

#define PERIOD_END 2000000000

static void tally_counts_every_kind_of_entry(void **state)
{
    (void)state;
    tdsx_buf_t log;
    tdsx_buf_init(&log, 16u << 20);
    size_t n = 0;
    const int ACC = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    transfer(&log, &n, SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 2, 0, ACC, NULL);
    transfer(&log, &n, SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 2, 0, ACC, NULL);
    transfer(&log, &n, SELF, CENTRE, TDSX__GRADE__GRADE_IMPORTANT, 0, 0, ACC, NULL);
    transfer(&log, &n, BRAIN, SELF, TDSX__GRADE__GRADE_GENERAL, 4, 0, ACC, NULL);
    transfer(&log, &n, ENT_B, SELF, TDSX__GRADE__GRADE_GENERAL, 1, 0, ACC, NULL);
    transfer(&log, &n, SELF, CENTRE, TDSX__GRADE__GRADE_IMPORTANT, 0, 1, ACC, NULL); /* relay */
    transfer(&log, &n, ENT_B, SELF, TDSX__GRADE__GRADE_CORE, 0, 0,
             TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED, "floor-core");
    transfer(&log, &n, ENT_B, SELF, TDSX__GRADE__GRADE_CORE, 0, 0,
             TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED, "floor-core");
    transfer(&log, &n, SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 3, 0,
             TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED, "default-deny");
    transfer(&log, &n, SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 1, 0, 0, NULL); /* NRD */
    transfer(&log, &n, BRAIN, SELF, TDSX__GRADE__GRADE_GENERAL, 1, 0,
             TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED, NULL);
    agreement(&log, &n, "proposed", 1, PERIOD_END + 100);
    agreement(&log, &n, "accepted", 1, PERIOD_END + 100); /* active at the period's end */
    agreement(&log, &n, "proposed", 2, PERIOD_END - 1);
    agreement(&log, &n, "accepted", 2, PERIOD_END - 1); /* expired by then */
    agreement(&log, &n, "accepted", 3, PERIOD_END + 100);
    agreement(&log, &n, "terminated", 3, 0);
    agreement(&log, &n, "proposed", 4, PERIOD_END + 100); /* never accepted: not counted */
    agreement(&log, &n, "refused", 4, 0);
    uint8_t h[TDSX_HASH_LEN] = {0};
    tdsx_bytes_t pol[3] = {tdsx_bytes("start", 5), tdsx_bytes(h, sizeof h),
                           tdsx_bytes("(built-in)", 10)};
    add_entry(&log, &n, TDSX_LOG_ENTRY_POLICY, 3, pol); /* counts nothing */

    int calls = 0;
    tdsx_report_tally_t *t = NULL;
    assert_int_equal(tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t), 0);
    assert_int_equal(feed(t, &log), 0);
    assert_int_equal(tdsx_report_tally_entries(t), n);
    tdsx_report_counts_t *c = calloc(1, sizeof *c);
    assert_int_equal(tdsx_report_tally_finish(t, c), 0);
    assert_int_equal(calls, 3); /* once per counterpart */

    uint64_t(*tr)[TDSX_REPORT_GRADES][TDSX_REPORT_ROLES] = c->transfers;
    assert_int_equal(tr[TDSX_REPORT_OUT][TDSX_REPORT_GENERAL_1 + 1][1], 2);
    assert_int_equal(tr[TDSX_REPORT_OUT][TDSX_REPORT_IMPORTANT][0], 1);
    assert_int_equal(tr[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_4][1], 1);
    assert_int_equal(tr[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_1][2], 1);
    assert_int_equal(tr[TDSX_REPORT_RELAYED][TDSX_REPORT_IMPORTANT][0], 1);
    uint64_t total = 0;
    for (unsigned d = 0; d < TDSX_REPORT_DIRS; d++)
        for (unsigned g = 0; g < TDSX_REPORT_GRADES; g++)
            for (unsigned k = 0; k < TDSX_REPORT_ROLES; k++)
                total += tr[d][g][k];
    assert_int_equal(total, 6); /* refusals, NRDs and integrity failures are not transfers */
    assert_int_equal(c->n_denials, 2);
    assert_int_equal(c->denials[0].dir, TDSX_REPORT_IN);
    assert_string_equal(c->denials[0].rule, "floor-core");
    assert_int_equal(c->denials[0].count, 2);
    assert_int_equal(c->denials[1].dir, TDSX_REPORT_OUT);
    assert_string_equal(c->denials[1].rule, "default-deny");
    assert_int_equal(c->unacknowledged, 1);
    assert_int_equal(c->integrity_failures, 1);
    assert_int_equal(c->agreements_active, 1);
    assert_int_equal(c->agreements_expired, 1);
    assert_int_equal(c->agreements_terminated, 1);
    assert_int_equal(c->n_peers, 3);
    assert_string_equal(c->peers[0].id, ENT_B); /* sorted by bytes */
    assert_string_equal(c->peers[1].id, BRAIN);
    assert_string_equal(c->peers[2].id, CENTRE);
    assert_int_equal(c->peers[2].role, TDSX_ROLE_CENTRE);

    /* The auditor's recomputation from the report's own peer table gives the same counts. */
    tdsx_report_tally_t *again = NULL;
    tdsx_report_counts_t *c2 = calloc(1, sizeof *c2);
    assert_int_equal(
        tdsx_report_tally_new(SELF, PERIOD_END, tdsx_report_role_from_peers, c, &again), 0);
    assert_int_equal(feed(again, &log), 0);
    assert_int_equal(tdsx_report_tally_finish(again, c2), 0);
    assert_int_equal(tdsx_report_counts_diff(c, c2, NULL, 0), 0);
    /* A forged count is named. */
    char field[96];
    c2->transfers[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_4][1]++;
    assert_int_equal(tdsx_report_counts_diff(c, c2, field, sizeof field), 1);
    assert_string_equal(field, "transfers in general-4 brain");
    c2->transfers[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_4][1]--;
    c2->denials[0].count = 3;
    assert_int_equal(tdsx_report_counts_diff(c, c2, field, sizeof field), 1);
    assert_string_equal(field, "denied in floor-core");
    tdsx_report_tally_free(again);
    tdsx_report_tally_free(t);
    free(c);
    free(c2);
    tdsx_buf_free(&log);
}

static void tally_refuses_what_it_cannot_count(void **state)
{
    (void)state;
    const int ACC = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    int calls = 0;
    struct {
        const char *sender, *receiver;
        Tdsx__Grade grade;
        uint32_t level;
        int status;
        int want;
    } bad[] = {
        {BRAIN, CENTRE, TDSX__GRADE__GRADE_GENERAL, 1, ACC, TDSX_E_REPORT_TALLY}, /* not ours */
        {SELF, STRANGER, TDSX__GRADE__GRADE_GENERAL, 1, ACC, TDSX_E_PEER_UNKNOWN},
        {SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 5, ACC, TDSX_E_REPORT_TALLY}, /* level 5 */
        {SELF, BRAIN, TDSX__GRADE__GRADE_UNSPECIFIED, 0, ACC, TDSX_E_REPORT_TALLY},
        {SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 1, 9, TDSX_E_REPORT_TALLY}, /* NRR status */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_buf_t log;
        tdsx_buf_init(&log, 1u << 20);
        size_t n = 0;
        transfer(&log, &n, bad[i].sender, bad[i].receiver, bad[i].grade, bad[i].level, 0,
                 bad[i].status, NULL);
        tdsx_report_tally_t *t = NULL;
        assert_int_equal(tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t), 0);
        assert_int_equal(feed(t, &log), bad[i].want);
        tdsx_report_counts_t *c = calloc(1, sizeof *c);
        assert_int_equal(tdsx_report_tally_finish(t, c), bad[i].want); /* sticky */
        free(c);
        tdsx_report_tally_free(t);
        tdsx_buf_free(&log);
    }
    /* Bytes that are no log entry, and an envelope whose payload is of another type. */
    tdsx_report_tally_t *t = NULL;
    assert_int_equal(tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t), 0);
    assert_int_equal(tdsx_report_tally_add(t, tdsx_bytes("\x01\x63", 2)), TDSX_E_FORMAT);
    assert_int_equal(tdsx_report_tally_add(t, tdsx_bytes("\x01\x01", 2)), TDSX_E_FORMAT);
    tdsx_report_tally_free(t);
    Tdsx__Nrd nrd = TDSX__NRD__INIT;
    tdsx_buf_t a = envelope(TDSX_STATEMENT_NRD, &nrd.base);
    tdsx_bytes_t items[2] = {tdsx_buf_bytes(&a), tdsx_buf_bytes(&a)};
    tdsx_buf_t log;
    tdsx_buf_init(&log, 1u << 20);
    size_t n = 0;
    add_entry(&log, &n, TDSX_LOG_ENTRY_RECEIPT, 2, items); /* an NRD where the NRO should be */
    assert_int_equal(tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t), 0);
    assert_int_equal(feed(t, &log), TDSX_E_REPORT_TALLY);
    tdsx_report_tally_free(t);
    tdsx_buf_free(&log);
    tdsx_buf_free(&a);
    /* An accepted agreement whose proposal envelope is garbage. */
    uint8_t hash[TDSX_HASH_LEN] = {9};
    tdsx_bytes_t ag[7] = {tdsx_bytes("accepted", 8),
                          tdsx_bytes(SELF, strlen(SELF)),
                          tdsx_bytes(hash, sizeof hash),
                          tdsx_bytes("junk", 4),
                          tdsx_bytes(NULL, 0),
                          tdsx_bytes(NULL, 0),
                          tdsx_bytes(NULL, 0)};
    tdsx_buf_init(&log, 1u << 20);
    add_entry(&log, &n, TDSX_LOG_ENTRY_AGREEMENT, 7, ag);
    assert_int_equal(tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t), 0);
    assert_int_equal(feed(t, &log), TDSX_E_REPORT_TALLY);
    tdsx_report_tally_free(t);
    tdsx_buf_free(&log);
    /* Bad arguments. */
    assert_int_equal(tdsx_report_tally_new("has space", 0, roles, &calls, &t), TDSX_E_INVAL);
    assert_int_equal(tdsx_report_tally_new(SELF, 0, NULL, &calls, &t), TDSX_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_and_parse_are_inverses),
        cmocka_unit_test(parse_refuses_every_defect),
        cmocka_unit_test(encode_refuses_what_it_could_not_parse_back),
        cmocka_unit_test(signed_report_opens_with_the_nodes_key_only),
        cmocka_unit_test(chain_accepts_the_next_report_only),
        cmocka_unit_test(tally_counts_every_kind_of_entry),
        cmocka_unit_test(tally_refuses_what_it_cannot_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
