/*
 * report.c — trust-status reports (SPEC §12): the note text, its signature, chaining and the
 * tally over log entries. The first part is pure (no I/O): the node and the auditor share it.
 */
#include "report.h"

#include <limits.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "tlog.h"

static const char *const dir_names[TDSX_REPORT_DIRS] = {"in", "out", "relayed"};
static const char *const grade_names[TDSX_REPORT_GRADES] = {"core",      "important", "general-1",
                                                            "general-2", "general-3", "general-4"};
static const char *const status_names[] = {"unknown", "good", "revoked"};

const char *tdsx_report_dir_name(unsigned dir)
{
    return dir < TDSX_REPORT_DIRS ? dir_names[dir] : NULL;
}

const char *tdsx_report_grade_name(unsigned grade)
{
    return grade < TDSX_REPORT_GRADES ? grade_names[grade] : NULL;
}

const char *tdsx_report_cert_status_name(unsigned status)
{
    return status < sizeof status_names / sizeof status_names[0] ? status_names[status] : NULL;
}

static const char *role_name(tdsx_role_t role)
{
    return role >= TDSX_ROLE_CENTRE && role <= TDSX_ROLE_ENTERPRISE ? tdsx_role_name(role) : NULL;
}

/* A token of the text: non-empty, printable, no space (node ids, rule ids, versions). */
static int token_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int is_zero(const tdsx_hash_t *h)
{
    static const tdsx_hash_t zero;
    return sodium_memcmp(h->b, zero.b, TDSX_HASH_LEN) == 0;
}

static int denial_cmp(const tdsx_report_denial_t *a, const tdsx_report_denial_t *b)
{
    if (a->dir != b->dir)
        return a->dir < b->dir ? -1 : 1;
    return strcmp(a->rule, b->rule);
}

/* Everything encode refuses, so that parse (which re-encodes) accepts exactly one form. */
static int check_fields(const tdsx_report_t *r)
{
    const tdsx_report_counts_t *c = &r->counts;
    if (!token_ok(r->node, sizeof r->node) || !role_name(r->role) || r->sequence == 0 ||
        r->period_from < 0 || r->period_to < r->period_from || r->first != r->prev_size ||
        r->size < r->first || r->bundle_expires < 0 || r->auth_not_after < 0 ||
        r->sign_not_after < 0 || !tdsx_report_cert_status_name(r->cert_status) ||
        !token_ok(r->software, sizeof r->software) || c->n_denials > TDSX_REPORT_DENIALS_MAX ||
        c->n_peers > TDSX_REPORT_PEERS_MAX)
        return TDSX_E_INVAL;
    if ((r->sequence == 1) != is_zero(&r->prev_report))
        return TDSX_E_INVAL;
    for (size_t i = 0; i < c->n_denials; i++) {
        const tdsx_report_denial_t *d = &c->denials[i];
        if ((d->dir != TDSX_REPORT_IN && d->dir != TDSX_REPORT_OUT) || d->count == 0 ||
            !token_ok(d->rule, sizeof d->rule) || (i && denial_cmp(&c->denials[i - 1], d) >= 0))
            return TDSX_E_INVAL;
    }
    for (size_t i = 0; i < c->n_peers; i++) {
        const tdsx_report_peer_t *p = &c->peers[i];
        if (!token_ok(p->id, sizeof p->id) || !role_name(p->role) ||
            (i && strcmp(c->peers[i - 1].id, p->id) >= 0))
            return TDSX_E_INVAL;
    }
    return 0;
}

static int put_b64(tdsx_buf_t *b, const tdsx_hash_t *h)
{
    char s[sodium_base64_ENCODED_LEN(TDSX_HASH_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(s, sizeof s, h->b, TDSX_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
    return tdsx_buf_append_str(b, s);
}

static int put_hex(tdsx_buf_t *b, const tdsx_hash_t *h)
{
    char s[2 * TDSX_HASH_LEN + 1];
    tdsx_hex_encode(s, h->b, TDSX_HASH_LEN);
    return tdsx_buf_append_str(b, s);
}

#define U(x) ((unsigned long long)(x))
#define I(x) ((long long)(x))

static int encode_body(const tdsx_report_t *r, tdsx_buf_t *b)
{
    const tdsx_report_counts_t *c = &r->counts;
    int rc = tdsx_buf_printf(b, "%s\nnode %s\nrole %s\nsequence %llu\nperiod %lld %lld\n",
                             TDSX_REPORT_MAGIC, r->node, role_name(r->role), U(r->sequence),
                             I(r->period_from), I(r->period_to));
    if (rc == 0)
        rc = tdsx_buf_printf(b, "range %llu %llu\ncheckpoint %llu ", U(r->first), U(r->size),
                             U(r->size));
    if (rc == 0)
        rc = put_b64(b, &r->root);
    if (rc == 0)
        rc = tdsx_buf_printf(b, "\nprevious-checkpoint %llu ", U(r->prev_size));
    if (rc == 0)
        rc = put_b64(b, &r->prev_root);
    if (rc == 0)
        rc = tdsx_buf_append_str(b, "\nprevious-report ");
    if (rc == 0)
        rc = put_hex(b, &r->prev_report);
    if (rc == 0)
        rc = tdsx_buf_printf(b,
                             "\nbundle %llu %lld\ncert-auth-not-after %lld\n"
                             "cert-sign-not-after %lld\ncert-status %s\npolicy ",
                             U(r->bundle_serial), I(r->bundle_expires), I(r->auth_not_after),
                             I(r->sign_not_after), tdsx_report_cert_status_name(r->cert_status));
    if (rc == 0)
        rc = put_hex(b, &r->policy);
    if (rc == 0)
        rc = tdsx_buf_printf(b, "\nsoftware %s\n", r->software);
    for (unsigned d = 0; rc == 0 && d < TDSX_REPORT_DIRS; d++)
        for (unsigned g = 0; rc == 0 && g < TDSX_REPORT_GRADES; g++)
            for (unsigned k = 0; rc == 0 && k < TDSX_REPORT_ROLES; k++)
                rc =
                    tdsx_buf_printf(b, "transfers %s %s %s %llu\n", dir_names[d], grade_names[g],
                                    tdsx_role_name((tdsx_role_t)(k + 1)), U(c->transfers[d][g][k]));
    if (rc == 0)
        rc = tdsx_buf_printf(b, "denials %zu\n", c->n_denials);
    for (size_t i = 0; rc == 0 && i < c->n_denials; i++)
        rc = tdsx_buf_printf(b, "denied %s %s %llu\n", dir_names[c->denials[i].dir],
                             c->denials[i].rule, U(c->denials[i].count));
    if (rc == 0)
        rc = tdsx_buf_printf(b,
                             "agreements %llu %llu %llu\nunacknowledged %llu\n"
                             "integrity-failures %llu\npeers %zu\n",
                             U(c->agreements_active), U(c->agreements_terminated),
                             U(c->agreements_expired), U(c->unacknowledged),
                             U(c->integrity_failures), c->n_peers);
    for (size_t i = 0; rc == 0 && i < c->n_peers; i++)
        rc = tdsx_buf_printf(b, "peer %s %s\n", c->peers[i].id, role_name(c->peers[i].role));
    return rc;
}

int tdsx_report_encode(const tdsx_report_t *r, tdsx_buf_t *out)
{
    if (!r || !out)
        return TDSX_E_INVAL;
    int rc = check_fields(r);
    if (rc)
        return rc;
    size_t mark = out->len;
    rc = encode_body(r, out);
    if (rc == 0 && out->len - mark > TDSX_REPORT_TEXT_MAX)
        rc = TDSX_E_TOOBIG;
    if (rc)
        out->len = mark;
    return rc;
}

/* ---- parse ------------------------------------------------------------------------------------
 * A strict reader of each line's tokens, then a re-encoding compared byte for byte: whatever
 * the reader let through that encode would write differently (a leading zero, an uppercase
 * hex digit, non-canonical base64) is refused there. */

#define TOKENS_MAX 6
#define LINE_MAX_BYTES 512

typedef struct {
    tdsx_bytes_t rest;
    char line[LINE_MAX_BYTES];
    char *tok[TOKENS_MAX];
    size_t n;
} reader_t;

/* Reads the next line (which must end in '\n') and splits it at single spaces. */
static int next_line(reader_t *rd)
{
    const uint8_t *nl = rd->rest.n ? memchr(rd->rest.p, '\n', rd->rest.n) : NULL;
    if (!nl)
        return TDSX_E_REPORT;
    size_t len = (size_t)(nl - rd->rest.p);
    if (len == 0 || len >= sizeof rd->line || memchr(rd->rest.p, '\0', len))
        return TDSX_E_REPORT;
    memcpy(rd->line, rd->rest.p, len);
    rd->line[len] = '\0';
    rd->rest.p += len + 1;
    rd->rest.n -= len + 1;
    rd->n = 0;
    char *s = rd->line;
    for (;;) {
        if (rd->n == TOKENS_MAX || *s == ' ' || *s == '\0')
            return TDSX_E_REPORT; /* too many tokens, or an empty one */
        rd->tok[rd->n++] = s;
        char *sp = strchr(s, ' ');
        if (!sp)
            return 0;
        *sp = '\0';
        s = sp + 1;
    }
}

/* The next line must be `key` followed by exactly `args` tokens. */
static int expect(reader_t *rd, const char *key, size_t args)
{
    int rc = next_line(rd);
    if (rc == 0 && (rd->n != args + 1 || strcmp(rd->tok[0], key) != 0))
        rc = TDSX_E_REPORT;
    return rc;
}

static int get_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || (s[0] == '0' && s[1]))
        return TDSX_E_REPORT;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return TDSX_E_REPORT;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int get_time(const char *s, int64_t *out)
{
    uint64_t v;
    if (get_u64(s, &v) != 0 || v > INT64_MAX)
        return TDSX_E_REPORT;
    *out = (int64_t)v;
    return 0;
}

static int get_hex(const char *s, tdsx_hash_t *h)
{
    return strlen(s) == 2 * TDSX_HASH_LEN && tdsx_hex_decode(h->b, TDSX_HASH_LEN, s) == 0
               ? 0
               : TDSX_E_REPORT;
}

static int get_b64(const char *s, tdsx_hash_t *h)
{
    size_t len = 0;
    if (sodium_base642bin(h->b, TDSX_HASH_LEN, s, strlen(s), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != TDSX_HASH_LEN)
        return TDSX_E_REPORT;
    return 0;
}

static int get_token(const char *s, char *out, size_t size)
{
    if (!token_ok(s, size))
        return TDSX_E_REPORT;
    snprintf(out, size, "%s", s);
    return 0;
}

static int get_role(const char *s, tdsx_role_t *out)
{
    return tdsx_role_parse(s, out) == 0 ? 0 : TDSX_E_REPORT;
}

static int index_of(const char *const *names, size_t n, const char *s, unsigned *out)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    return TDSX_E_REPORT;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) != 0)                                                                       \
            goto fail;                                                                             \
    } while (0)

static int parse_head(reader_t *rd, tdsx_report_t *r)
{
    int rc;
    uint64_t cp_size;
    unsigned st;
    TRY(next_line(rd));
    if (rd->n != 1 || strcmp(rd->tok[0], TDSX_REPORT_MAGIC) != 0)
        return TDSX_E_REPORT;
    TRY(expect(rd, "node", 1));
    TRY(get_token(rd->tok[1], r->node, sizeof r->node));
    TRY(expect(rd, "role", 1));
    TRY(get_role(rd->tok[1], &r->role));
    TRY(expect(rd, "sequence", 1));
    TRY(get_u64(rd->tok[1], &r->sequence));
    TRY(expect(rd, "period", 2));
    TRY(get_time(rd->tok[1], &r->period_from));
    TRY(get_time(rd->tok[2], &r->period_to));
    TRY(expect(rd, "range", 2));
    TRY(get_u64(rd->tok[1], &r->first));
    TRY(get_u64(rd->tok[2], &r->size));
    TRY(expect(rd, "checkpoint", 2));
    TRY(get_u64(rd->tok[1], &cp_size));
    TRY(get_b64(rd->tok[2], &r->root));
    if (cp_size != r->size)
        return TDSX_E_REPORT;
    TRY(expect(rd, "previous-checkpoint", 2));
    TRY(get_u64(rd->tok[1], &r->prev_size));
    TRY(get_b64(rd->tok[2], &r->prev_root));
    TRY(expect(rd, "previous-report", 1));
    TRY(get_hex(rd->tok[1], &r->prev_report));
    TRY(expect(rd, "bundle", 2));
    TRY(get_u64(rd->tok[1], &r->bundle_serial));
    TRY(get_time(rd->tok[2], &r->bundle_expires));
    TRY(expect(rd, "cert-auth-not-after", 1));
    TRY(get_time(rd->tok[1], &r->auth_not_after));
    TRY(expect(rd, "cert-sign-not-after", 1));
    TRY(get_time(rd->tok[1], &r->sign_not_after));
    TRY(expect(rd, "cert-status", 1));
    TRY(index_of(status_names, sizeof status_names / sizeof status_names[0], rd->tok[1], &st));
    r->cert_status = (tdsx_report_cert_status_t)st;
    TRY(expect(rd, "policy", 1));
    TRY(get_hex(rd->tok[1], &r->policy));
    TRY(expect(rd, "software", 1));
    TRY(get_token(rd->tok[1], r->software, sizeof r->software));
fail:
    return rc;
}

static int parse_counts(reader_t *rd, tdsx_report_counts_t *c)
{
    int rc;
    uint64_t n;
    for (unsigned d = 0; d < TDSX_REPORT_DIRS; d++)
        for (unsigned g = 0; g < TDSX_REPORT_GRADES; g++)
            for (unsigned k = 0; k < TDSX_REPORT_ROLES; k++) {
                TRY(expect(rd, "transfers", 4));
                if (strcmp(rd->tok[1], dir_names[d]) != 0 ||
                    strcmp(rd->tok[2], grade_names[g]) != 0 ||
                    strcmp(rd->tok[3], tdsx_role_name((tdsx_role_t)(k + 1))) != 0)
                    return TDSX_E_REPORT;
                TRY(get_u64(rd->tok[4], &c->transfers[d][g][k]));
            }
    TRY(expect(rd, "denials", 1));
    TRY(get_u64(rd->tok[1], &n));
    if (n > TDSX_REPORT_DENIALS_MAX)
        return TDSX_E_REPORT;
    c->n_denials = (size_t)n;
    for (size_t i = 0; i < c->n_denials; i++) {
        unsigned dir;
        TRY(expect(rd, "denied", 3));
        TRY(index_of(dir_names, 2, rd->tok[1], &dir));
        c->denials[i].dir = (uint8_t)dir;
        TRY(get_token(rd->tok[2], c->denials[i].rule, sizeof c->denials[i].rule));
        TRY(get_u64(rd->tok[3], &c->denials[i].count));
    }
    TRY(expect(rd, "agreements", 3));
    TRY(get_u64(rd->tok[1], &c->agreements_active));
    TRY(get_u64(rd->tok[2], &c->agreements_terminated));
    TRY(get_u64(rd->tok[3], &c->agreements_expired));
    TRY(expect(rd, "unacknowledged", 1));
    TRY(get_u64(rd->tok[1], &c->unacknowledged));
    TRY(expect(rd, "integrity-failures", 1));
    TRY(get_u64(rd->tok[1], &c->integrity_failures));
    TRY(expect(rd, "peers", 1));
    TRY(get_u64(rd->tok[1], &n));
    if (n > TDSX_REPORT_PEERS_MAX)
        return TDSX_E_REPORT;
    c->n_peers = (size_t)n;
    for (size_t i = 0; i < c->n_peers; i++) {
        TRY(expect(rd, "peer", 2));
        TRY(get_token(rd->tok[1], c->peers[i].id, sizeof c->peers[i].id));
        TRY(get_role(rd->tok[2], &c->peers[i].role));
    }
fail:
    return rc;
}

int tdsx_report_parse(tdsx_bytes_t text, tdsx_report_t *out)
{
    if (!out || (text.n && !text.p))
        return TDSX_E_INVAL;
    if (text.n > TDSX_REPORT_TEXT_MAX)
        return TDSX_E_REPORT;
    int rc = TDSX_E_NOMEM;
    tdsx_buf_t again;
    tdsx_buf_init(&again, TDSX_REPORT_TEXT_MAX);
    reader_t *rd = tdsx_calloc(1, sizeof *rd);
    tdsx_report_t *r = tdsx_calloc(1, sizeof *r);
    if (!rd || !r)
        goto fail;
    rd->rest = text;
    TRY(parse_head(rd, r));
    TRY(parse_counts(rd, &r->counts));
    if (rd->rest.n != 0) {
        rc = TDSX_E_REPORT; /* trailing bytes */
        goto fail;
    }
    /* The one accepted form: what encode writes back, byte for byte. */
    rc = tdsx_report_encode(r, &again);
    if (rc == TDSX_E_NOMEM)
        goto fail;
    if (rc != 0 || !tdsx_bytes_equal(tdsx_buf_bytes(&again), text)) {
        rc = TDSX_E_REPORT;
        goto fail;
    }
    *out = *r;
fail:
    tdsx_buf_free(&again);
    tdsx_free(rd);
    tdsx_free(r);
    return rc;
}

int tdsx_report_sign(const tdsx_report_t *r, const tdsx_note_signer_t *key, tdsx_buf_t *out)
{
    if (!r || !key || !out)
        return TDSX_E_INVAL;
    const tdsx_note_verifier_t *v = tdsx_note_signer_verifier(key);
    if (v->type != TDSX_NOTE_ED25519 || strcmp(v->name, r->node) != 0)
        return TDSX_E_KEY;
    tdsx_buf_t text;
    tdsx_buf_init(&text, TDSX_REPORT_TEXT_MAX);
    int rc = tdsx_report_encode(r, &text);
    if (rc == 0)
        rc = tdsx_note_sign(tdsx_buf_bytes(&text), &key, 1, out);
    tdsx_buf_free(&text);
    return rc;
}

int tdsx_report_open(tdsx_bytes_t note, const tdsx_note_verifier_t *key, tdsx_report_t *out)
{
    if (!out)
        return TDSX_E_INVAL;
    tdsx_note_t *n = NULL;
    int rc = key ? tdsx_note_open(note, key, 1, &n) : tdsx_note_parse(note, &n);
    if (rc)
        return rc;
    tdsx_report_t *r = tdsx_calloc(1, sizeof *r);
    if (!r) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    TRY(tdsx_report_parse(tdsx_note_text(n), r));
    if (key && strcmp(r->node, key->name) != 0) {
        rc = TDSX_E_REPORT; /* signed by another node's key under its own name */
        goto fail;
    }
    *out = *r;
fail:
    tdsx_free(r);
    tdsx_note_free(n);
    return rc;
}

int tdsx_report_note_hash(tdsx_bytes_t note, tdsx_hash_t *out)
{
    if (!out || (note.n && !note.p))
        return TDSX_E_INVAL;
    return tdsx_sha256(note.p, note.n, out->b);
}

int tdsx_report_chain_check(const tdsx_report_t *prev, const tdsx_hash_t *prev_note_hash,
                            const tdsx_report_t *next)
{
    if (!next || (prev && !prev_note_hash))
        return TDSX_E_INVAL;
    if (!prev) {
        tdsx_hash_t empty;
        int rc = tdsx_merkle_root(NULL, 0, &empty);
        if (rc)
            return rc;
        return next->sequence == 1 && next->prev_size == 0 && next->first == 0 &&
                       sodium_memcmp(next->prev_root.b, empty.b, TDSX_HASH_LEN) == 0 &&
                       is_zero(&next->prev_report)
                   ? 0
                   : TDSX_E_REPORT_CHAIN;
    }
    if (strcmp(prev->node, next->node) != 0 || prev->sequence == UINT64_MAX ||
        next->sequence != prev->sequence + 1 || next->prev_size != prev->size ||
        next->first != prev->size || next->size < prev->size ||
        sodium_memcmp(next->prev_root.b, prev->root.b, TDSX_HASH_LEN) != 0 ||
        next->period_from < prev->period_to ||
        sodium_memcmp(next->prev_report.b, prev_note_hash->b, TDSX_HASH_LEN) != 0)
        return TDSX_E_REPORT_CHAIN;
    return 0;
}

int tdsx_report_counts_diff(const tdsx_report_counts_t *a, const tdsx_report_counts_t *b,
                            char *field, size_t field_size)
{
    char dummy[1];
    if (!field || field_size == 0) {
        field = dummy;
        field_size = sizeof dummy;
    }
    field[0] = '\0';
    for (unsigned d = 0; d < TDSX_REPORT_DIRS; d++)
        for (unsigned g = 0; g < TDSX_REPORT_GRADES; g++)
            for (unsigned k = 0; k < TDSX_REPORT_ROLES; k++)
                if (a->transfers[d][g][k] != b->transfers[d][g][k]) {
                    snprintf(field, field_size, "transfers %s %s %s", dir_names[d], grade_names[g],
                             tdsx_role_name((tdsx_role_t)(k + 1)));
                    return 1;
                }
    if (a->n_denials != b->n_denials) {
        snprintf(field, field_size, "denials");
        return 1;
    }
    for (size_t i = 0; i < a->n_denials; i++)
        if (denial_cmp(&a->denials[i], &b->denials[i]) != 0 ||
            a->denials[i].count != b->denials[i].count) {
            snprintf(field, field_size, "denied %s %s",
                     tdsx_report_dir_name(a->denials[i].dir) ? dir_names[a->denials[i].dir] : "?",
                     a->denials[i].rule);
            return 1;
        }
    if (a->agreements_active != b->agreements_active ||
        a->agreements_terminated != b->agreements_terminated ||
        a->agreements_expired != b->agreements_expired) {
        snprintf(field, field_size, "agreements");
        return 1;
    }
    if (a->unacknowledged != b->unacknowledged) {
        snprintf(field, field_size, "unacknowledged");
        return 1;
    }
    if (a->integrity_failures != b->integrity_failures) {
        snprintf(field, field_size, "integrity-failures");
        return 1;
    }
    int peers_differ = a->n_peers != b->n_peers;
    for (size_t i = 0; !peers_differ && i < a->n_peers; i++)
        peers_differ =
            strcmp(a->peers[i].id, b->peers[i].id) != 0 || a->peers[i].role != b->peers[i].role;
    if (peers_differ) {
        snprintf(field, field_size, "peers");
        return 1;
    }
    return 0;
}

/* ---- the tally --------------------------------------------------------------------------------
 */

typedef struct {
    tdsx_hash_t hash;
    int state; /* AG_* */
    int64_t not_after;
} agreement_t;

enum { AG_OTHER = 0, AG_ACCEPTED, AG_TERMINATED };

struct tdsx_report_tally_s {
    char self[TDSX_ID_SIZE];
    int64_t period_to;
    tdsx_report_role_fn role_of;
    void *ud;
    int err; /* sticky */
    uint64_t entries;
    tdsx_arena_t *arena;
    tdsx_report_counts_t c; /* transfers, denials, unacknowledged, integrity, peers */
    agreement_t *ag;        /* in order of first appearance */
    size_t n_ag, cap_ag;
};

int tdsx_report_role_from_peers(void *ud, const char *node_id, tdsx_role_t *role)
{
    const tdsx_report_counts_t *c = ud;
    if (!c || !node_id || !role)
        return TDSX_E_INVAL;
    for (size_t i = 0; i < c->n_peers; i++)
        if (strcmp(c->peers[i].id, node_id) == 0) {
            *role = c->peers[i].role;
            return 0;
        }
    return TDSX_E_NOTFOUND;
}

int tdsx_report_tally_new(const char *self_id, int64_t period_to, tdsx_report_role_fn role_of,
                          void *ud, tdsx_report_tally_t **out)
{
    if (!self_id || !role_of || !out || !token_ok(self_id, TDSX_ID_SIZE))
        return TDSX_E_INVAL;
    tdsx_report_tally_t *t = tdsx_calloc(1, sizeof *t);
    if (!t)
        return TDSX_E_NOMEM;
    int rc = tdsx_arena_new(4 * TDSX_TLOG_ENTRY_MAX, &t->arena);
    if (rc) {
        tdsx_free(t);
        return rc;
    }
    snprintf(t->self, sizeof t->self, "%s", self_id);
    t->period_to = period_to;
    t->role_of = role_of;
    t->ud = ud;
    *out = t;
    return 0;
}

void tdsx_report_tally_free(tdsx_report_tally_t *t)
{
    if (!t)
        return;
    tdsx_arena_free(t->arena);
    tdsx_free(t->ag);
    tdsx_free(t);
}

uint64_t tdsx_report_tally_entries(const tdsx_report_tally_t *t)
{
    return t ? t->entries : 0;
}

/* Decodes a statement's payload of the expected kind WITHOUT verifying it (report.h). */
static const ProtobufCMessage *payload_of(tdsx_report_tally_t *t, tdsx_bytes_t env,
                                          tdsx_statement_kind_t kind)
{
    Tdsx__Envelope *e = NULL;
    ProtobufCMessage *m = NULL;
    if (tdsx_proto_unpack(t->arena, &tdsx__envelope__descriptor, env, (ProtobufCMessage **)&e) !=
            0 ||
        !e->payload_type || strcmp(e->payload_type, tdsx_statement_type(kind)) != 0 ||
        tdsx_proto_unpack(t->arena, tdsx_statement_descriptor(kind),
                          tdsx_bytes(e->payload.data, e->payload.len), &m) != 0)
        return NULL;
    return m;
}

/* The counterpart's role, from the table or once from role_of; records it as a peer. */
static int peer_role(tdsx_report_tally_t *t, const char *id, unsigned *k)
{
    tdsx_report_counts_t *c = &t->c;
    size_t lo = 0, hi = c->n_peers;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(c->peers[mid].id, id);
        if (cmp == 0) {
            *k = (unsigned)c->peers[mid].role - 1;
            return 0;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!token_ok(id, TDSX_ID_SIZE))
        return TDSX_E_REPORT_TALLY;
    tdsx_role_t role = TDSX_ROLE_NONE;
    int rc = t->role_of(t->ud, id, &role);
    if (rc == TDSX_E_NOTFOUND || (rc == 0 && !role_name(role)))
        return TDSX_E_PEER_UNKNOWN;
    if (rc)
        return rc;
    if (c->n_peers == TDSX_REPORT_PEERS_MAX)
        return TDSX_E_TOOBIG;
    memmove(&c->peers[lo + 1], &c->peers[lo], (c->n_peers - lo) * sizeof c->peers[0]);
    snprintf(c->peers[lo].id, sizeof c->peers[lo].id, "%s", id);
    c->peers[lo].role = role;
    c->n_peers++;
    *k = (unsigned)role - 1;
    return 0;
}

static int add_denial(tdsx_report_tally_t *t, uint8_t dir, const char *rule)
{
    tdsx_report_counts_t *c = &t->c;
    tdsx_report_denial_t key;
    memset(&key, 0, sizeof key);
    key.dir = dir;
    if (!rule || !token_ok(rule, sizeof key.rule))
        return TDSX_E_REPORT_TALLY;
    snprintf(key.rule, sizeof key.rule, "%s", rule);
    size_t i = 0;
    while (i < c->n_denials && denial_cmp(&c->denials[i], &key) < 0)
        i++;
    if (i < c->n_denials && denial_cmp(&c->denials[i], &key) == 0) {
        c->denials[i].count++;
        return 0;
    }
    if (c->n_denials == TDSX_REPORT_DENIALS_MAX)
        return TDSX_E_TOOBIG;
    memmove(&c->denials[i + 1], &c->denials[i], (c->n_denials - i) * sizeof c->denials[0]);
    key.count = 1;
    c->denials[i] = key;
    c->n_denials++;
    return 0;
}

static unsigned grade_of(const Tdsx__Tags *tags)
{
    if (!tags)
        return TDSX_REPORT_GRADES;
    switch (tags->grade) {
    case TDSX__GRADE__GRADE_CORE: return TDSX_REPORT_CORE;
    case TDSX__GRADE__GRADE_IMPORTANT: return TDSX_REPORT_IMPORTANT;
    case TDSX__GRADE__GRADE_GENERAL:
        return tags->general_level >= 1 && tags->general_level <= 4
                   ? TDSX_REPORT_GENERAL_1 + tags->general_level - 1
                   : TDSX_REPORT_GRADES;
    default: return TDSX_REPORT_GRADES;
    }
}

static int tally_transfer(tdsx_report_tally_t *t, const tdsx_log_entry_t *e)
{
    const Tdsx__Nro *nro = (const Tdsx__Nro *)payload_of(t, e->item[0], TDSX_STATEMENT_NRO);
    if (!nro || !nro->sender || !nro->receiver)
        return TDSX_E_REPORT_TALLY;
    int out = strcmp(nro->sender, t->self) == 0;
    if (!out && strcmp(nro->receiver, t->self) != 0)
        return TDSX_E_REPORT_TALLY; /* not ours to count */
    if (e->type == TDSX_LOG_ENTRY_NRD) {
        const Tdsx__Nrd *nrd = (const Tdsx__Nrd *)payload_of(t, e->item[1], TDSX_STATEMENT_NRD);
        if (!nrd)
            return TDSX_E_REPORT_TALLY;
        t->c.unacknowledged++;
        return 0;
    }
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)payload_of(t, e->item[1], TDSX_STATEMENT_NRR);
    if (!nrr)
        return TDSX_E_REPORT_TALLY;
    unsigned dir = !out                             ? TDSX_REPORT_IN
                   : nro->upstream_receipt_hash.len ? TDSX_REPORT_RELAYED
                                                    : TDSX_REPORT_OUT;
    switch (nrr->status) {
    case TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED: {
        unsigned g = grade_of(nro->tags), k;
        if (g >= TDSX_REPORT_GRADES)
            return TDSX_E_REPORT_TALLY;
        int rc = peer_role(t, out ? nro->receiver : nro->sender, &k);
        if (rc)
            return rc;
        t->c.transfers[dir][g][k]++;
        return 0;
    }
    case TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED:
        return add_denial(t, out ? TDSX_REPORT_OUT : TDSX_REPORT_IN, nrr->policy_rule);
    case TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED: t->c.integrity_failures++; return 0;
    default: return TDSX_E_REPORT_TALLY;
    }
}

static int tally_agreement(tdsx_report_tally_t *t, const tdsx_log_entry_t *e)
{
    int state;
    if (tdsx_bytes_equal(e->item[0], tdsx_bytes("accepted", 8)))
        state = AG_ACCEPTED;
    else if (tdsx_bytes_equal(e->item[0], tdsx_bytes("terminated", 10)))
        state = AG_TERMINATED;
    else
        state = AG_OTHER;
    if (e->item[2].n != TDSX_HASH_LEN)
        return TDSX_E_REPORT_TALLY;
    int64_t not_after = 0;
    if (state == AG_ACCEPTED) {
        const Tdsx__AgreementTerms *terms =
            (const Tdsx__AgreementTerms *)payload_of(t, e->item[3], TDSX_STATEMENT_AGREEMENT_TERMS);
        if (!terms)
            return TDSX_E_REPORT_TALLY;
        not_after = terms->not_after;
    }
    size_t i = 0;
    while (i < t->n_ag && memcmp(t->ag[i].hash.b, e->item[2].p, TDSX_HASH_LEN) != 0)
        i++;
    if (i == t->n_ag) {
        if (t->n_ag == TDSX_REPORT_AGREEMENTS_MAX)
            return TDSX_E_TOOBIG;
        if (t->n_ag == t->cap_ag) {
            size_t cap = t->cap_ag ? 2 * t->cap_ag : 16;
            agreement_t *ag = tdsx_malloc(cap * sizeof *ag);
            if (!ag)
                return TDSX_E_NOMEM;
            if (t->n_ag)
                memcpy(ag, t->ag, t->n_ag * sizeof *ag);
            tdsx_free(t->ag);
            t->ag = ag;
            t->cap_ag = cap;
        }
        memcpy(t->ag[i].hash.b, e->item[2].p, TDSX_HASH_LEN);
        t->ag[i].state = AG_OTHER;
        t->ag[i].not_after = 0;
        t->n_ag++;
    }
    /* The last event in the range decides; an accepted agreement keeps its terms' end. */
    t->ag[i].state = state;
    if (state == AG_ACCEPTED)
        t->ag[i].not_after = not_after;
    return 0;
}

int tdsx_report_tally_add(tdsx_report_tally_t *t, tdsx_bytes_t entry)
{
    if (!t)
        return TDSX_E_INVAL;
    if (t->err)
        return t->err;
    tdsx_log_entry_t e;
    int rc = tdsx__log_entry_parse(entry, &e);
    tdsx_arena_reset(t->arena);
    if (rc == 0) {
        switch (e.type) {
        case TDSX_LOG_ENTRY_RECEIPT:
        case TDSX_LOG_ENTRY_NRD: rc = tally_transfer(t, &e); break;
        case TDSX_LOG_ENTRY_AGREEMENT: rc = tally_agreement(t, &e); break;
        default: break; /* counts nothing (report.h) */
        }
    }
    tdsx_arena_reset(t->arena);
    if (rc) {
        t->err = rc;
        return rc;
    }
    t->entries++;
    return 0;
}

int tdsx_report_tally_finish(tdsx_report_tally_t *t, tdsx_report_counts_t *out)
{
    if (!t || !out)
        return TDSX_E_INVAL;
    if (t->err)
        return t->err;
    *out = t->c;
    out->agreements_active = out->agreements_terminated = out->agreements_expired = 0;
    for (size_t i = 0; i < t->n_ag; i++) {
        if (t->ag[i].state == AG_TERMINATED)
            out->agreements_terminated++;
        else if (t->ag[i].state == AG_ACCEPTED && t->ag[i].not_after < t->period_to)
            out->agreements_expired++;
        else if (t->ag[i].state == AG_ACCEPTED)
            out->agreements_active++;
    }
    return 0;
}
