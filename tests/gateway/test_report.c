/* Trust-status reports (SPEC §12). First the pure parts: the note text and its one accepted
 * form, signing and opening, chaining, and the tally over log entries built here (receipts of
 * each grade and direction, denials, NRDs, integrity failures, agreements). Then real daemons
 * (a centre, a brain, an enterprise): transfers, `tdsx report make` whose counts match and
 * recompute from the log, `report submit` cosigned by the centre, a second report chained to
 * the first, the daemon's refusals, the centre refusing forged reports (wrong key, another
 * node, a mismatched or inconsistent checkpoint), and reports made each report_period. */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509.h>
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

/* Every allocation that fails is reported as TDSX_E_NOMEM (never a crash, a wrong answer or
 * a half-written output), and the same call succeeds once allocation works again. */
static void allocation_failures_are_reported(void **state)
{
    (void)state;
    tdsx_report_t *r = sample(), *out = calloc(1, sizeof *out);
    char *text = text_of(r);
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_REPORT_TEXT_MAX);
    int done = 0;
    for (unsigned long n = 1; !done && n < 64; n++) {
        tdsx_test_alloc_fail_after(n);
        int rc = parse_str(text, out);
        tdsx_test_alloc_reset();
        if (rc == 0)
            done = 1;
        else
            assert_int_equal(rc, TDSX_E_NOMEM);
    }
    assert_true(done);
    done = 0;
    for (unsigned long n = 1; !done && n < 64; n++) {
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_report_encode(r, &b);
        tdsx_test_alloc_reset();
        if (rc == 0)
            done = 1;
        else {
            assert_int_equal(rc, TDSX_E_NOMEM);
            assert_int_equal(b.len, 0);
        }
    }
    assert_true(done);
    /* The tally: its creation and each add. */
    tdsx_buf_t log;
    tdsx_buf_init(&log, 1u << 20);
    size_t count = 0;
    transfer(&log, &count, SELF, BRAIN, TDSX__GRADE__GRADE_GENERAL, 1, 0,
             TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED, NULL);
    agreement(&log, &count, "accepted", 1, PERIOD_END + 1);
    int calls = 0;
    done = 0;
    for (unsigned long n = 1; !done && n < 256; n++) {
        tdsx_report_tally_t *t = NULL;
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_report_tally_new(SELF, PERIOD_END, roles, &calls, &t);
        if (rc == 0)
            rc = feed(t, &log);
        tdsx_test_alloc_reset();
        if (rc == 0)
            done = 1;
        else
            assert_int_equal(rc, TDSX_E_NOMEM);
        tdsx_report_tally_free(t);
    }
    assert_true(done);
    tdsx_buf_free(&log);
    tdsx_buf_free(&b);
    free(text);
    free(out);
    free(r);
}

/* ---- real daemons: a centre (the witness), a brain and an enterprise ---------------------------
 */

#define ARENA_BUDGET (64u << 20)

static const char brain_policy[] = "[no-ent-two]  deny  grade general>=2 from enterprise\n"
                                   "[general-in]  allow grade general from any\n"
                                   "[general-out] allow grade general<=2 library base to any\n"
                                   "[default]     deny  any\n";

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    tdsx_test_node_t rogue; /* a member with no daemon: a raw client speaks for it */
    char *file, *policy;
    tdsx_note_verifier_t ent_v, brain_v, centre_cosig_v;
    tdsx_report_t *first; /* the enterprise's report 1, as made */
} world_t;

static world_t W;

static void key_of(const tdsx_test_node_t *n, const char *name, uint8_t type,
                   tdsx_note_verifier_t *out, tdsx_note_signer_t **keep)
{
    char *path = tdsx_test_path(n->creds, "sign.key");
    uint8_t seed[32];
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    assert_int_equal(tdsx_note_signer_new(name, type, seed, &s), 0);
    if (out)
        *out = *tdsx_note_signer_verifier(s);
    if (keep)
        *keep = s;
    else
        tdsx_note_signer_free(s);
    sodium_memzero(seed, sizeof seed);
    free(path);
}

static int try_ask(const tdsx_test_node_t *n, Tdsx__LocalRequest *req, tdsx_arena_t **arena,
                   Tdsx__LocalResponse **resp)
{
    if (tdsx_arena_new(ARENA_BUDGET, arena) != 0)
        return TDSX_E_NOMEM;
    req->id = 7;
    int rc = tdsx_control_call(n->sock, req, *arena, 30000, NULL, NULL, resp);
    if (rc == 0 && (*resp)->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR)
        rc = tdsx_err_from_wire((*resp)->error->code);
    if (rc) {
        tdsx_arena_free(*arena);
        *arena = NULL;
    }
    return rc;
}

static const Tdsx__LogStatusResponse *status(const tdsx_test_node_t *n, tdsx_arena_t **arena)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogStatusRequest q = TDSX__LOG_STATUS_REQUEST__INIT;
    Tdsx__LocalResponse *resp = NULL;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_STATUS;
    req.log_status = &q;
    assert_int_equal(try_ask(n, &req, arena, &resp), 0);
    return resp->log_status;
}

/* The size of a checkpoint note (0 when empty), without verifying it. */
static uint64_t note_size(const ProtobufCBinaryData *note)
{
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t cp;
    uint64_t size = 0;
    if (note->len && tdsx_note_parse(tdsx_bytes(note->data, note->len), &n) == 0 &&
        tdsx_checkpoint_parse(tdsx_note_text(n), &cp) == 0)
        size = cp.size;
    tdsx_note_free(n);
    return size;
}

/* Waits until n's whole log is published (and, with cosigned, cosigned by the centre). */
static uint64_t wait_published(const tdsx_test_node_t *n, int cosigned)
{
    for (int waited = 0; waited < 15000; waited += 100) {
        tdsx_arena_t *a = NULL;
        const Tdsx__LogStatusResponse *st = status(n, &a);
        uint64_t size = st->size, pub = note_size(&st->published), cos = note_size(&st->cosigned);
        tdsx_arena_free(a);
        if (size && pub == size && (!cosigned || cos == size))
            return size;
        usleep(100000);
    }
    fail_msg("%s: the log was not published", n->name);
    return 0;
}

/* Entry `index` of n's log (bytes, heap) and its length. */
static uint8_t *entry_at(const tdsx_test_node_t *n, uint64_t index, size_t *len)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogProofRequest pq = TDSX__LOG_PROOF_REQUEST__INIT;
    Tdsx__LocalResponse *resp = NULL;
    tdsx_arena_t *a = NULL;
    pq.index = index;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_PROOF;
    req.log_proof = &pq;
    assert_int_equal(try_ask(n, &req, &a, &resp), 0);
    *len = resp->log_proof->entry.len;
    uint8_t *out = malloc(*len ? *len : 1);
    assert_non_null(out);
    memcpy(out, resp->log_proof->entry.data, *len);
    tdsx_arena_free(a);
    return out;
}

/* The index of the first REPORT entry at or after `from` (-1 when none); its items' sizes. */
static long report_entry(const tdsx_test_node_t *n, uint64_t from, uint64_t size, size_t *note_len,
                         size_t *cosigned_len)
{
    for (uint64_t i = from; i < size; i++) {
        size_t len;
        uint8_t *e = entry_at(n, i, &len);
        tdsx_log_entry_t le;
        int found =
            tdsx__log_entry_parse(tdsx_bytes(e, len), &le) == 0 && le.type == TDSX_LOG_ENTRY_REPORT;
        if (found) {
            *note_len = le.item[0].n;
            *cosigned_len = le.item[1].n;
        }
        free(e);
        if (found)
            return (long)i;
    }
    return -1;
}

/* Sends W.file from `from` to `to`; returns tdsx send's exit code. */
static int send_one(const tdsx_test_node_t *from, const tdsx_test_node_t *to, const char *dataset,
                    const char *grade)
{
    char *out = NULL;
    int rc = tdsx_test_run(&out,
                           "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags 'grade=%s "
                           "domain=production category=production.process personal=none "
                           "library=base source=enterprise' 2>&1",
                           from->sock, to->id, W.file, dataset, grade);
    free(out);
    return rc;
}

static char *file_of(const tdsx_test_node_t *n, const char *sub, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reports/%s%s%s", n->data, sub ? sub : "", sub ? "/" : "", name);
    return strdup(path);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *p = NULL;
    if (tdsx_file_read(path, TDSX_NOTE_MAX, &p, len) != 0)
        return NULL;
    return p;
}

static tdsx_report_t *open_file(const char *path, const tdsx_note_verifier_t *v, tdsx_hash_t *hash)
{
    size_t len = 0;
    uint8_t *p = slurp(path, &len);
    if (!p)
        fail_msg("no report at %s", path);
    tdsx_report_t *r = calloc(1, sizeof *r);
    assert_int_equal(tdsx_report_open(tdsx_bytes(p, len), v, r), 0);
    if (hash)
        assert_int_equal(tdsx_report_note_hash(tdsx_bytes(p, len), hash), 0);
    tdsx_free(p);
    return r;
}

static int report_cmd(char **out, const char *verb, const tdsx_test_node_t *n, const char *args)
{
    return tdsx_test_run(out, "tdsx report %s --socket '%s' %s 2>&1", verb, n->sock, args);
}

static int setup_daemons(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    char extra[4096];
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.rogue, "rogue", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.policy = tdsx_test_path(p->dir, "brain.policy");
    tdsx_test_write_file(W.policy, brain_policy, strlen(brain_policy));
    tdsx_test_node_config(p, &W.centre, "checkpoint_interval 200ms\n");
    snprintf(extra, sizeof extra, "checkpoint_interval 3s\nwitness %s\npolicy %s\n", W.centre.id,
             W.policy);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra, "checkpoint_interval 200ms\nwitness %s\npeer %s 127.0.0.1:%d\n",
             W.centre.id, W.brain.id, W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    W.file = tdsx_test_path(p->dir, "payload.bin");
    tdsx_test_write_file(W.file, "日期,产量\n2026-11-01,1200\n", 30);
    key_of(&W.ent, W.ent.id, TDSX_NOTE_ED25519, &W.ent_v, NULL);
    key_of(&W.brain, W.brain.id, TDSX_NOTE_ED25519, &W.brain_v, NULL);
    key_of(&W.centre, W.centre.id, TDSX_NOTE_COSIG, &W.centre_cosig_v, NULL);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    usleep(300000); /* the Hellos */
    return 0;
}

static int teardown_daemons(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.centre);
    tdsx_test_node_free(&W.rogue);
    free(W.file);
    free(W.policy);
    free(W.first);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* A few transfers each way, then `tdsx report make`: the counts are the exchange's. */
static void made_report_counts_the_exchange(void **state)
{
    (void)state;
    assert_int_equal(send_one(&W.ent, &W.brain, "r-1", "general:1"), 0);
    assert_int_equal(send_one(&W.ent, &W.brain, "r-2", "general:1"), 0);
    assert_int_equal(send_one(&W.ent, &W.brain, "r-3", "general:2"), 1); /* the brain refuses */
    assert_int_equal(send_one(&W.brain, &W.ent, "r-4", "general:1"), 0);
    uint64_t size = wait_published(&W.ent, 0);

    char *out = NULL;
    assert_int_equal(report_cmd(&out, "make", &W.ent, ""), 0);
    assert_non_null(strstr(out, "report     1\n"));
    assert_non_null(strstr(out, "transfers  in 1, out 2, relayed 0"));
    free(out);

    char *path = file_of(&W.ent, NULL, "1.note");
    tdsx_report_t *r = open_file(path, &W.ent_v, NULL);
    assert_int_equal(r->sequence, 1);
    assert_string_equal(r->node, W.ent.id);
    assert_int_equal(r->role, TDSX_ROLE_ENTERPRISE);
    assert_int_equal(r->first, 0);
    assert_true(r->size >= size); /* the last published checkpoint */
    assert_int_equal(r->cert_status, TDSX_REPORT_CERT_GOOD);
    assert_true(r->sign_not_after > tdsx_now());
    const tdsx_report_counts_t *c = &r->counts;
    assert_int_equal(c->transfers[TDSX_REPORT_OUT][TDSX_REPORT_GENERAL_1][TDSX_ROLE_BRAIN - 1], 2);
    assert_int_equal(c->transfers[TDSX_REPORT_IN][TDSX_REPORT_GENERAL_1][TDSX_ROLE_BRAIN - 1], 1);
    assert_int_equal(c->n_denials, 1);
    assert_int_equal(c->denials[0].dir, TDSX_REPORT_OUT);
    assert_string_equal(c->denials[0].rule, "no-ent-two");
    assert_int_equal(c->n_peers, 1);
    assert_string_equal(c->peers[0].id, W.brain.id);
    assert_int_equal(c->unacknowledged + c->integrity_failures, 0);
    assert_int_equal(r->bundle_serial, 0); /* a registry file, no bundle */
    assert_int_equal(r->bundle_expires, 0);

    /* An auditor's recomputation from the entries of the range gives the same counts. */
    tdsx_report_tally_t *t = NULL;
    tdsx_report_counts_t *again = calloc(1, sizeof *again);
    assert_int_equal(tdsx_report_tally_new(W.ent.id, r->period_to, tdsx_report_role_from_peers,
                                           (tdsx_report_counts_t *)c, &t),
                     0);
    for (uint64_t i = r->first; i < r->size; i++) {
        size_t len;
        uint8_t *e = entry_at(&W.ent, i, &len);
        assert_int_equal(tdsx_report_tally_add(t, tdsx_bytes(e, len)), 0);
        free(e);
    }
    assert_int_equal(tdsx_report_tally_finish(t, again), 0);
    assert_int_equal(tdsx_report_counts_diff(c, again, NULL, 0), 0);
    tdsx_report_tally_free(t);
    free(again);

    /* The report is logged after the range it covers, not yet cosigned. */
    size_t nl = 0, cl = 0;
    assert_true(report_entry(&W.ent, r->size, wait_published(&W.ent, 0), &nl, &cl) >= 0);
    assert_true(nl > 0);
    assert_int_equal(cl, 0);

    /* Shown offline, verified with the node's own certificate; another's key refuses it. */
    assert_int_equal(tdsx_test_run(&out, "tdsx report show '%s' -c '%s' 2>&1", path, W.ent.conf),
                     0);
    assert_non_null(strstr(out, "verified"));
    assert_non_null(strstr(out, "no-ent-two: 1"));
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx report show '%s' --cert '%s/sign.pem' 2>&1", path, W.brain.creds),
        1);
    assert_non_null(strstr(out, "TDSX_E_NOTE_UNVERIFIED"));
    free(out);
    /* The enterprise signs a report naming the brain, under the brain's name: its own
     * certificate verifies the signature, but must not vouch for the name. */
    {
        char *keypath = tdsx_test_path(W.ent.creds, "sign.key");
        uint8_t seed[32];
        tdsx_note_signer_t *key = NULL;
        assert_int_equal(tdsx_key_load_ed25519(keypath, seed), 0);
        assert_int_equal(tdsx_note_signer_new(W.brain.id, TDSX_NOTE_ED25519, seed, &key), 0);
        sodium_memzero(seed, sizeof seed);
        tdsx_report_t *as = malloc(sizeof *as);
        assert_non_null(as);
        *as = *r;
        snprintf(as->node, sizeof as->node, "%s", W.brain.id);
        as->role = TDSX_ROLE_BRAIN;
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1u << 20);
        assert_int_equal(tdsx_report_sign(as, key, &b), 0);
        char *posed = tdsx_test_path(W.p.dir, "posed.note");
        tdsx_test_write_file(posed, b.p, b.len);
        assert_int_equal(tdsx_test_run(&out, "tdsx report show '%s' --cert '%s/sign.pem' 2>&1",
                                       posed, W.ent.creds),
                         1);
        assert_null(strstr(out, "verified"));
        assert_non_null(strstr(out, "the report names"));
        free(out);
        assert_int_equal(
            tdsx_test_run(&out, "tdsx report show '%s' -c '%s' 2>&1", posed, W.ent.conf), 1);
        free(out);
        free(posed);
        tdsx_buf_free(&b);
        free(as);
        tdsx_note_signer_free(key);
        free(keypath);
    }
    W.first = r;
    free(path);
}

/* `tdsx report submit`: the centre cosigns the checkpoint the report states and keeps the
 * report; the enterprise stores the cosignature and logs it. */
static void submitted_report_is_cosigned(void **state)
{
    (void)state;
    assert_non_null(W.first);
    /* By now the witness cosigned a larger checkpoint (with the REPORT entry): the report's
     * is proved a prefix of it. */
    uint64_t size = wait_published(&W.ent, 1);
    assert_true(size > W.first->size);
    char *out = NULL;
    assert_int_equal(report_cmd(&out, "submit", &W.ent, ""), 0);
    assert_non_null(strstr(out, "cosigned   by"));
    free(out);

    char *path = file_of(&W.ent, NULL, "1.cosigned");
    size_t len = 0;
    uint8_t *cos = slurp(path, &len);
    assert_non_null(cos);
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(cos, len), &W.ent_v, &W.centre_cosig_v, 1,
                                          W.ent.id, &note, &cp),
                     0);
    assert_non_null(tdsx_note_verified_by(note, &W.centre_cosig_v));
    assert_int_equal(cp.size, W.first->size);
    assert_memory_equal(cp.root.b, W.first->root.b, TDSX_HASH_LEN);
    tdsx_note_free(note);
    tdsx_free(cos);
    free(path);

    /* The centre keeps the very bytes under reports/<USCC>_<node>/. */
    char sub[TDSX_ID_SIZE];
    snprintf(sub, sizeof sub, "%s", W.ent.id);
    *strchr(sub, '/') = '_';
    char *mine = file_of(&W.ent, NULL, "1.note"), *kept = file_of(&W.centre, sub, "1.note");
    size_t a_len = 0, b_len = 0;
    uint8_t *a = slurp(mine, &a_len), *b = slurp(kept, &b_len);
    assert_non_null(b);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    tdsx_free(a);
    tdsx_free(b);
    free(mine);
    free(kept);

    /* The cosigned report is logged too. */
    size_t nl = 0, cl = 0;
    long at = -1;
    for (int waited = 0; at < 0 && waited < 5000; waited += 200) {
        uint64_t now = wait_published(&W.ent, 0);
        long first = report_entry(&W.ent, W.first->size, now, &nl, &cl);
        at = first >= 0 ? report_entry(&W.ent, (uint64_t)first + 1, now, &nl, &cl) : -1;
        if (at < 0)
            usleep(200000);
    }
    assert_true(at >= 0);
    assert_true(cl > 0);
}

/* Report 2 extends report 1: its range starts at report 1's checkpoint, it names report 1's
 * hash, and counts only what happened since. */
static void second_report_chains_onto_the_first(void **state)
{
    (void)state;
    assert_non_null(W.first);
    assert_int_equal(send_one(&W.ent, &W.brain, "r-5", "general:1"), 0);
    wait_published(&W.ent, 0);
    char *out = NULL;
    assert_int_equal(report_cmd(&out, "make", &W.ent, ""), 0);
    assert_non_null(strstr(out, "report     2\n"));
    free(out);
    char *p1 = file_of(&W.ent, NULL, "1.note"), *p2 = file_of(&W.ent, NULL, "2.note");
    tdsx_hash_t h1;
    tdsx_report_t *r1 = open_file(p1, &W.ent_v, &h1), *r2 = open_file(p2, &W.ent_v, NULL);
    assert_int_equal(tdsx_report_chain_check(r1, &h1, r2), 0);
    assert_int_equal(r2->first, r1->size);
    assert_int_equal(
        r2->counts.transfers[TDSX_REPORT_OUT][TDSX_REPORT_GENERAL_1][TDSX_ROLE_BRAIN - 1], 1);
    assert_int_equal(r2->counts.n_denials, 0);
    int rc = report_cmd(&out, "submit", &W.ent, "2");
    if (rc != 0)
        fail_msg("submit 2: %d %s", rc, out ? out : "");
    free(out);
    char *c2 = file_of(&W.ent, NULL, "2.cosigned");
    assert_int_equal(access(c2, F_OK), 0);
    /* Submitting it again is cosigned again (the centre holds the same bytes). */
    assert_int_equal(report_cmd(&out, "submit", &W.ent, "2"), 0);
    free(out);
    /* A period starting before report 2 ended would break the chain. */
    char args[64];
    snprintf(args, sizeof args, "--period %lld %lld", (long long)r2->period_to - 1,
             (long long)r2->period_to + 5);
    assert_int_equal(report_cmd(&out, "make", &W.ent, args), 1);
    assert_non_null(strstr(out, "TDSX_E_REPORT_CHAIN"));
    free(out);
    free(c2);
    free(r1);
    free(r2);
    free(p1);
    free(p2);
}

/* What the daemon refuses to make or submit, and files `show` refuses. */
static void refusals_of_the_daemon_and_show(void **state)
{
    (void)state;
    char *out = NULL;
    /* The brain publishes every 3 s: right after a report, nothing new is published yet. */
    wait_published(&W.brain, 0);
    assert_int_equal(report_cmd(&out, "make", &W.brain, ""), 0);
    free(out);
    assert_int_equal(report_cmd(&out, "make", &W.brain, ""), 1);
    assert_non_null(strstr(out, "TDSX_E_REPORT_CHAIN"));
    free(out);
    /* A node whose log has published nothing yet has nothing to report on. */
    tdsx_test_node_t quiet;
    memset(&quiet, 0, sizeof quiet);
    tdsx_test_node_issue(&W.p, &quiet, "quiet", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_config(&W.p, &quiet, "checkpoint_interval 24h\n");
    tdsx_test_node_start(&quiet);
    assert_int_equal(report_cmd(&out, "make", &quiet, ""), 2);
    assert_non_null(strstr(out, "published no checkpoint"));
    free(out);
    assert_int_equal(tdsx_test_node_stop(&quiet, 10000), 0);
    tdsx_test_node_free(&quiet);
    /* No such report; no witness for the centre itself; a period that ends before it starts. */
    assert_int_equal(report_cmd(&out, "submit", &W.ent, "99"), 2);
    free(out);
    assert_int_equal(report_cmd(&out, "submit", &W.centre, ""), 2);
    assert_non_null(strstr(out, "no witness"));
    free(out);
    assert_int_equal(report_cmd(&out, "make", &W.ent, "--period 20 10"), 2);
    free(out);
    /* A forged count in a copy: the signature no longer verifies. */
    char *path = file_of(&W.ent, NULL, "1.note");
    size_t len = 0;
    uint8_t *p = slurp(path, &len);
    char *forged = tdsx_test_path(W.p.dir, "forged.note");
    char *at = strstr((char *)p, "transfers out general-1 brain 2");
    assert_non_null(at);
    at[strlen("transfers out general-1 brain ")] = '9';
    tdsx_test_write_file(forged, p, len);
    assert_int_equal(tdsx_test_run(&out, "tdsx report show '%s' -c '%s' 2>&1", forged, W.ent.conf),
                     1);
    assert_non_null(strstr(out, "TDSX_E_SIG_INVALID"));
    free(out);
    /* Without a key it parses, and says it is not verified. */
    assert_int_equal(tdsx_test_run(&out, "tdsx report show '%s' 2>&1", forged), 0);
    assert_non_null(strstr(out, "NOT VERIFIED"));
    free(out);
    /* Not a report at all. */
    tdsx_test_write_file(forged, "hello\n", 6);
    assert_int_equal(tdsx_test_run(&out, "tdsx report show '%s' 2>&1", forged), 1);
    free(out);
    tdsx_free(p);
    free(forged);
    free(path);
}

/* ---- the centre's checks, driven by a raw client speaking for the rogue member ------------ */

typedef struct {
    tdsx_test_client_t c;
    uint32_t next_stream;
} raw_t;

static size_t load_ders(const char *creds, const char *file, uint8_t **out, int *len, size_t max)
{
    char *path = tdsx_test_path(creds, file);
    STACK_OF(X509) *sk = NULL;
    size_t n = 0;
    if (tdsx_cert_load_file(path, &sk) == 0)
        for (int i = 0; i < sk_X509_num(sk) && n < max; i++, n++) {
            out[n] = NULL;
            len[n] = i2d_X509(sk_X509_value(sk, i), &out[n]);
            assert_true(len[n] > 0);
        }
    sk_X509_pop_free(sk, X509_free);
    free(path);
    return n;
}

static void raw_open(raw_t *r, const tdsx_test_node_t *to)
{
    assert_int_equal(tdsx_test_client_open(&r->c, &W.p, W.rogue.creds, to->port), 0);
    r->next_stream = 1;
    uint8_t *der[5];
    int len[5];
    assert_int_equal(load_ders(W.rogue.creds, "sign.pem", der, len, 1), 1);
    size_t n_chain = load_ders(W.rogue.creds, "chain.pem", der + 1, len + 1, 4);
    ProtobufCBinaryData chain[4];
    for (size_t i = 0; i < n_chain; i++) {
        chain[i].data = der[i + 1];
        chain[i].len = (size_t)len[i + 1];
    }
    Tdsx__Hello h = TDSX__HELLO__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    h.sign_cert.data = der[0];
    h.sign_cert.len = (size_t)len[0];
    h.chain = chain;
    h.n_chain = n_chain;
    h.software = "raw-report-client";
    f.body_case = TDSX__FRAME__BODY_HELLO;
    f.hello = &h;
    tdsx_test_client_send_frame(&r->c, &f);
    for (size_t i = 0; i <= n_chain; i++)
        OPENSSL_free(der[i]);
}

/* Submits (report, checkpoint, old_size, proof); returns the ReportAck's code and, when it is
 * 0, the cosignature line in *line (heap, may be NULL). */
static int raw_report(raw_t *r, const tdsx_buf_t *report, const tdsx_buf_t *cp, uint64_t old_size,
                      const tdsx_hash_t *proof, size_t n, tdsx_buf_t *line)
{
    Tdsx__ReportSubmit rs = TDSX__REPORT_SUBMIT__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    ProtobufCBinaryData pr[TDSX_MERKLE_CONSISTENCY_MAX];
    for (size_t i = 0; i < n; i++) {
        pr[i].data = (uint8_t *)proof[i].b;
        pr[i].len = TDSX_HASH_LEN;
    }
    rs.report.data = report->p;
    rs.report.len = report->len;
    rs.checkpoint.data = cp->p;
    rs.checkpoint.len = cp->len;
    rs.old_size = old_size;
    rs.consistency_proof = pr;
    rs.n_consistency_proof = n;
    f.stream_id = r->next_stream;
    r->next_stream += 2;
    f.body_case = TDSX__FRAME__BODY_REPORT_SUBMIT;
    f.report_submit = &rs;
    tdsx_test_client_send_frame(&r->c, &f);
    for (;;) {
        uint8_t hdr[4];
        assert_int_equal(tdsx_test_client_recv(&r->c, hdr, 4, 10000), 4);
        uint32_t len =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        uint8_t *body = malloc(len ? len : 1);
        assert_non_null(body);
        assert_int_equal(tdsx_test_client_recv(&r->c, body, len, 10000), (long)len);
        Tdsx__Frame *a = tdsx__frame__unpack(NULL, len, body);
        free(body);
        assert_non_null(a);
        if (a->body_case == TDSX__FRAME__BODY_REPORT_ACK) {
            assert_int_equal(a->stream_id, f.stream_id);
            int code = a->report_ack->code ? tdsx_err_from_wire(a->report_ack->code) : 0;
            if (line) {
                tdsx_buf_reset(line);
                assert_int_equal(tdsx_buf_append(line, a->report_ack->cosignature.data,
                                                 a->report_ack->cosignature.len),
                                 0);
            }
            tdsx__frame__free_unpacked(a, NULL);
            return code;
        }
        tdsx__frame__free_unpacked(a, NULL);
    }
}

/* What a forged report follows: nothing (a first report, or one whose predecessor the centre
 * never saw), or a previous report note with its checkpoint. */
typedef struct {
    uint64_t seq;
    const tdsx_buf_t *prev_note; /* NULL: none */
    uint64_t prev_size;
    const tdsx_hash_t *prev_root;
    int64_t period_from;
} chain_t;

/* A checkpoint of the first n leaves "<prefix> i" signed by key (origin = its name), and a
 * report stating it, signed by `rkey`, naming `node`, placed in the chain `ch`. */
static void forge(const tdsx_note_signer_t *key, const tdsx_note_signer_t *rkey, const char *node,
                  const char *prefix, size_t n, tdsx_hash_t *leaves, tdsx_buf_t *cp_out,
                  tdsx_buf_t *report_out, const chain_t *ch)
{
    for (size_t i = 0; i < n; i++) {
        char s[64];
        int k = snprintf(s, sizeof s, "%s %zu", prefix, i);
        assert_int_equal(tdsx_merkle_leaf_hash(s, (size_t)k, &leaves[i]), 0);
    }
    const char *origin = tdsx_note_signer_verifier(key)->name;
    tdsx_checkpoint_t cp = {tdsx_bytes(origin, strlen(origin)), n, {{0}}, tdsx_bytes(NULL, 0)};
    assert_int_equal(tdsx_merkle_root(leaves, n, &cp.root), 0);
    tdsx_buf_reset(cp_out);
    assert_int_equal(tdsx_checkpoint_sign(&cp, key, cp_out), 0);
    tdsx_report_t *r = sample();
    snprintf(r->node, sizeof r->node, "%s", node);
    r->sequence = ch ? ch->seq : 1;
    r->first = r->prev_size = ch && ch->prev_note ? ch->prev_size : 0;
    assert_int_equal(tdsx_merkle_root(NULL, 0, &r->prev_root), 0);
    memset(r->prev_report.b, r->sequence == 1 ? 0 : 0x11, TDSX_HASH_LEN);
    if (ch && ch->prev_note) {
        r->prev_root = *ch->prev_root;
        assert_int_equal(tdsx_report_note_hash(tdsx_buf_bytes(ch->prev_note), &r->prev_report), 0);
    }
    if (ch && ch->period_from) {
        r->period_from = ch->period_from;
        r->period_to = ch->period_from + 100;
    }
    r->size = n;
    r->root = cp.root;
    tdsx_buf_t text;
    tdsx_buf_init(&text, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_report_encode(r, &text), 0);
    tdsx_buf_reset(report_out);
    assert_int_equal(tdsx_note_sign(tdsx_buf_bytes(&text), &rkey, 1, report_out), 0);
    tdsx_buf_free(&text);
    free(r);
}

static void centre_refuses_forged_reports(void **state)
{
    (void)state;
    tdsx_note_signer_t *own = NULL, *stolen = NULL;
    key_of(&W.rogue, W.rogue.id, TDSX_NOTE_ED25519, NULL, &own);
    key_of(&W.ent, W.rogue.id, TDSX_NOTE_ED25519, NULL, &stolen); /* another key, our name */
    tdsx_hash_t leaves[8], fork[8], proof[TDSX_MERKLE_CONSISTENCY_MAX], root3;
    size_t plen;
    tdsx_buf_t cp, rep, cp2, rep2, rep1, line;
    tdsx_buf_init(&cp, TDSX_NOTE_MAX);
    tdsx_buf_init(&rep, TDSX_NOTE_MAX);
    tdsx_buf_init(&cp2, TDSX_NOTE_MAX);
    tdsx_buf_init(&rep2, TDSX_NOTE_MAX);
    tdsx_buf_init(&rep1, TDSX_NOTE_MAX);
    tdsx_buf_init(&line, TDSX_NOTE_MAX);
    raw_t r;
    raw_open(&r, &W.centre);

    /* A report signed by a key that is not the member's sign key. */
    forge(own, stolen, W.rogue.id, "leaf", 3, leaves, &cp, &rep, NULL);
    assert_int_equal(raw_report(&r, &rep, &cp, 0, NULL, 0, NULL), TDSX_E_NOTE_UNVERIFIED);
    /* Its own key, but naming another node. */
    forge(own, own, W.ent.id, "leaf", 3, leaves, &cp, &rep, NULL);
    assert_int_equal(raw_report(&r, &rep, &cp, 0, NULL, 0, NULL), TDSX_E_REPORT);
    /* A report stating another checkpoint than the one sent with it. */
    forge(own, own, W.rogue.id, "leaf", 3, leaves, &cp, &rep, NULL);
    forge(own, own, W.rogue.id, "other", 3, fork, &cp2, &rep2, NULL);
    assert_int_equal(raw_report(&r, &rep, &cp2, 0, NULL, 0, NULL), TDSX_E_REPORT_MISMATCH);
    /* Not a report at all. */
    tdsx_buf_reset(&rep2);
    assert_int_equal(tdsx_buf_append_str(&rep2, "not a note\n"), 0);
    assert_int_equal(raw_report(&r, &rep2, &cp, 0, NULL, 0, NULL), TDSX_E_NOTE_FORMAT);

    /* The real report 1 is cosigned (first use): the line verifies on the checkpoint. */
    forge(own, own, W.rogue.id, "leaf", 3, leaves, &cp, &rep1, NULL);
    assert_int_equal(tdsx_merkle_root(leaves, 3, &root3), 0); /* leaves are reused below */
    assert_int_equal(raw_report(&r, &rep1, &cp, 0, NULL, 0, &line), 0);
    tdsx_buf_t cosigned;
    tdsx_buf_init(&cosigned, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_buf_append(&cosigned, cp.p, cp.len), 0);
    assert_int_equal(tdsx_buf_append(&cosigned, line.p, line.len), 0);
    tdsx_note_t *opened = NULL;
    tdsx_checkpoint_t c;
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&cosigned), tdsx_note_signer_verifier(own),
                                          &W.centre_cosig_v, 1, W.rogue.id, &opened, &c),
                     0);
    assert_non_null(tdsx_note_verified_by(opened, &W.centre_cosig_v));
    tdsx_note_free(opened);
    tdsx_buf_free(&cosigned);
    /* The same bytes again are cosigned again; another report 1 is refused. */
    assert_int_equal(raw_report(&r, &rep1, &cp, 3, NULL, 0, NULL), 0);
    chain_t other1 = {1, NULL, 0, NULL, 1600000000};
    forge(own, own, W.rogue.id, "leaf", 3, leaves, &cp, &rep, &other1);
    assert_int_equal(raw_report(&r, &rep, &cp, 3, NULL, 0, NULL), TDSX_E_REPORT_CHAIN);

    /* Report 2 must extend report 1 as the centre kept it. */
    chain_t unchained = {2, NULL, 0, NULL, 0};
    forge(own, own, W.rogue.id, "leaf", 5, leaves, &cp2, &rep2, &unchained);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 3, proof, &plen), 0);
    assert_int_equal(raw_report(&r, &rep2, &cp2, 3, proof, plen, NULL), TDSX_E_REPORT_CHAIN);
    /* Chained, but on another history of 5 entries "proved" from its own first 3. */
    chain_t after1 = {2, &rep1, 3, &root3, 1702592000}; /* from report 1's end */
    forge(own, own, W.rogue.id, "fork", 5, fork, &cp2, &rep2, &after1);
    assert_int_equal(tdsx_merkle_consistency_proof(fork, 5, 3, proof, &plen), 0);
    assert_int_equal(raw_report(&r, &rep2, &cp2, 3, proof, plen, NULL), TDSX_E_LOG_INCONSISTENT);
    /* From a size the centre does not hold. */
    assert_int_equal(raw_report(&r, &rep2, &cp2, 2, proof, plen, NULL), TDSX_E_STATE);
    /* Chained and consistent: cosigned. */
    forge(own, own, W.rogue.id, "leaf", 5, leaves, &cp2, &rep2, &after1);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 3, proof, &plen), 0);
    assert_int_equal(raw_report(&r, &rep2, &cp2, 3, proof, plen, NULL), 0);

    /* A report on an older checkpoint (its predecessor never sent here): cosigned when the
     * recorded checkpoint (5) extends it, refused when it belongs to another history. */
    chain_t lone = {7, NULL, 0, NULL, 0};
    forge(own, own, W.rogue.id, "leaf", 4, leaves, &cp, &rep, &lone);
    forge(own, own, W.rogue.id, "leaf", 5, leaves, &cp2, &rep2, &lone);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 4, proof, &plen), 0);
    assert_int_equal(raw_report(&r, &rep, &cp, 5, proof, plen, NULL), 0);
    chain_t lone2 = {9, NULL, 0, NULL, 0};
    forge(own, own, W.rogue.id, "fork", 4, fork, &cp, &rep, &lone2);
    assert_int_equal(raw_report(&r, &rep, &cp, 5, proof, plen, NULL), TDSX_E_LOG_INCONSISTENT);
    tdsx_test_client_free(&r.c);

    /* A node that is not the centre takes no reports. */
    raw_open(&r, &W.brain);
    assert_int_equal(raw_report(&r, &rep1, &cp, 0, NULL, 0, NULL), TDSX_E_UNSUPPORTED);
    tdsx_test_client_free(&r.c);
    tdsx_buf_free(&cp);
    tdsx_buf_free(&rep);
    tdsx_buf_free(&cp2);
    tdsx_buf_free(&rep2);
    tdsx_buf_free(&rep1);
    tdsx_buf_free(&line);
    tdsx_note_signer_free(own);
    tdsx_note_signer_free(stolen);
}

/* report_period: the brain makes and submits reports by itself. */
static void reports_are_made_each_period(void **state)
{
    (void)state;
    char extra[4096];
    assert_int_equal(tdsx_test_node_stop(&W.brain, 10000), 0);
    /* This time under a trust bundle (serial 5) signed by the centre: the report states it. */
    char *bundle = tdsx_test_path(W.p.dir, "bundle.tdsx"), *out = NULL;
    int rc = tdsx_test_run(&out,
                           "tdsx bundle make --ca '%s' --registry '%s' --serial 5 --out '%s' "
                           "--sign '%s' 2>&1",
                           W.p.ca, W.p.registry, bundle, W.centre.creds);
    if (rc != 0)
        fail_msg("bundle make: %s", out ? out : "");
    free(out);
    snprintf(extra, sizeof extra,
             "checkpoint_interval 200ms\nwitness %s\npolicy %s\nreport_period 1s\n"
             "bundle_file %s\n",
             W.centre.id, W.policy, bundle);
    tdsx_test_node_config(&W.p, &W.brain, extra);
    tdsx_test_node_start(&W.brain);
    assert_true(
        tdsx_test_log_wait(&W.brain, 15000, "\"event\":\"report.made\"", "\"sequence\":2", NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 15000, "\"event\":\"report.cosigned\"", NULL));
    char *p2 = file_of(&W.brain, NULL, "2.note");
    tdsx_report_t *r2 = open_file(p2, &W.brain_v, NULL);
    assert_int_equal(r2->sequence, 2);
    assert_int_equal(r2->role, TDSX_ROLE_BRAIN);
    assert_int_equal(r2->bundle_serial, 5);
    assert_true(r2->bundle_expires > tdsx_now());
    free(r2);
    free(p2);
    free(bundle);
}

/* A node whose latest stored report no longer opens with its key refuses to start: it would
 * chain new reports onto something it cannot vouch for. */
static void damaged_latest_report_refused_at_start(void **state)
{
    (void)state;
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    char *path = file_of(&W.ent, NULL, "2.note"), *saved = tdsx_test_path(W.p.dir, "2.saved");
    size_t len = 0;
    uint8_t *p = slurp(path, &len);
    assert_non_null(p);
    tdsx_test_write_file(saved, p, len);
    char *at = strstr((char *)p, "\nsequence 2\n");
    assert_non_null(at);
    at[10] = '3'; /* the signature no longer verifies */
    tdsx_test_write_file(path, p, len);
    char *out = NULL;
    int rc = tdsx_test_run(&out, "timeout 20 tdsxd -c '%s' 2>&1", W.ent.conf);
    assert_true(rc != 0 && rc != 124);
    assert_non_null(strstr(out, "report.latest_invalid"));
    free(out);
    /* Put back, it starts and chains on. */
    tdsx_free(p);
    p = slurp(saved, &len);
    tdsx_test_write_file(path, p, len);
    tdsx_test_node_start(&W.ent);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"report.opened\"", "\"latest\":2", NULL));
    tdsx_free(p);
    free(saved);
    free(path);
}

static void daemons_stop_cleanly(void **state)
{
    (void)state;
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    assert_int_equal(tdsx_test_node_stop(&W.brain, 10000), 0);
    assert_int_equal(tdsx_test_node_stop(&W.centre, 10000), 0);
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
        cmocka_unit_test(allocation_failures_are_reported),
    };
    const struct CMUnitTest daemons[] = {
        cmocka_unit_test(made_report_counts_the_exchange),
        cmocka_unit_test(submitted_report_is_cosigned),
        cmocka_unit_test(second_report_chains_onto_the_first),
        cmocka_unit_test(refusals_of_the_daemon_and_show),
        cmocka_unit_test(centre_refuses_forged_reports),
        cmocka_unit_test(reports_are_made_each_period),
        cmocka_unit_test(damaged_latest_report_refused_at_start),
        cmocka_unit_test(daemons_stop_cleanly),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests(daemons, setup_daemons, teardown_daemons);
}
