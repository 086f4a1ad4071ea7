/*
 * report.c — trust-status reports (SPEC §12): the note text, its signature, chaining and the
 * tally over log entries. The first part is pure (no I/O): the node and the auditor share it.
 */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bundle.h"
#include "policy.h"

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
                             TDSX_REPORT_MAGIC, r->node, tdsx_role_name(r->role), U(r->sequence),
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
        rc = tdsx_buf_printf(b, "peer %s %s\n", c->peers[i].id, tdsx_role_name(c->peers[i].role));
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

/* Decodes a statement's payload of the expected kind WITHOUT verifying it (report.h): 0 and
 * *out, TDSX_E_NOMEM (the allocator failed: not the entry's fault), else TDSX_E_REPORT_TALLY. */
static int payload_of(tdsx_report_tally_t *t, tdsx_bytes_t env, tdsx_statement_kind_t kind,
                      const void **out)
{
    Tdsx__Envelope *e = NULL;
    ProtobufCMessage *m = NULL;
    int rc = tdsx_proto_unpack(t->arena, &tdsx__envelope__descriptor, env, (ProtobufCMessage **)&e);
    if (rc == 0 && (!e->payload_type || strcmp(e->payload_type, tdsx_statement_type(kind)) != 0))
        rc = TDSX_E_REPORT_TALLY;
    if (rc == 0)
        rc = tdsx_proto_unpack(t->arena, tdsx_statement_descriptor(kind),
                               tdsx_bytes(e->payload.data, e->payload.len), &m);
    if (rc == TDSX_E_NOMEM)
        return rc;
    if (rc)
        return TDSX_E_REPORT_TALLY;
    *out = m;
    return 0;
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
    const Tdsx__Nro *nro = NULL;
    int rc = payload_of(t, e->item[0], TDSX_STATEMENT_NRO, (const void **)&nro);
    if (rc)
        return rc;
    if (!nro->sender || !nro->receiver)
        return TDSX_E_REPORT_TALLY;
    int out = strcmp(nro->sender, t->self) == 0;
    if (!out && strcmp(nro->receiver, t->self) != 0)
        return TDSX_E_REPORT_TALLY; /* not ours to count */
    if (e->type == TDSX_LOG_ENTRY_NRD) {
        const Tdsx__Nrd *nrd = NULL;
        if ((rc = payload_of(t, e->item[1], TDSX_STATEMENT_NRD, (const void **)&nrd)) != 0)
            return rc;
        t->c.unacknowledged++;
        return 0;
    }
    const Tdsx__Nrr *nrr = NULL;
    if ((rc = payload_of(t, e->item[1], TDSX_STATEMENT_NRR, (const void **)&nrr)) != 0)
        return rc;
    unsigned dir = !out                             ? TDSX_REPORT_IN
                   : nro->upstream_receipt_hash.len ? TDSX_REPORT_RELAYED
                                                    : TDSX_REPORT_OUT;
    switch (nrr->status) {
    case TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED: {
        unsigned g = grade_of(nro->tags), k;
        if (g >= TDSX_REPORT_GRADES)
            return TDSX_E_REPORT_TALLY;
        rc = peer_role(t, out ? nro->receiver : nro->sender, &k);
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
        const Tdsx__AgreementTerms *terms = NULL;
        int rc = payload_of(t, e->item[3], TDSX_STATEMENT_AGREEMENT_TERMS, (const void **)&terms);
        if (rc)
            return rc;
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

/* ---- the daemon's part (loop thread unless a comment says otherwise) -------------------------
 *
 * <data_dir>/reports/<seq>.note        the signed report (never overwritten)
 * <data_dir>/reports/<seq>.checkpoint  the signed checkpoint it states
 * <data_dir>/reports/<seq>.cosigned    that checkpoint with the witness's cosignature
 * On the centre: <data_dir>/reports/<USCC>_<node>/<seq>.note, each report it cosigned.
 */

#define REPORT_ACK_TIMEOUT_MS 10000u
#define REPORT_TICK_MAX_MS 1000u
#define REPORT_RETRIES 3u

typedef enum { OP_MAKE = 0, OP_SUBMIT, OP_SAVE } op_kind_t;

typedef struct op_s {
    uv_work_t work;
    tdsx_reporter_t *R;
    op_kind_t kind;
    int rc;
    const char *why; /* static text */
    int has_client;
    uint64_t client, req_id;
    int auto_submit; /* made by the timer: submit once made */
    tdsx_report_t *r;
    tdsx_hash_t hash; /* of the note */
    tdsx_buf_t cp;    /* the checkpoint note the report states */
    tdsx_buf_t note;  /* the signed report */
    tdsx_buf_t cosigned;
    tdsx_report_peer_t *members; /* the registry's roles, copied on the loop */
    size_t n_members;
    uint64_t seq, cos_size, old_size, log_index;
    tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t nproof;
    char witness[TDSX_ID_SIZE];
    uint32_t stream;
    uint64_t deadline;
    unsigned retries; /* the witness held another size than we knew (TDSX_E_STATE) */
} op_t;

struct tdsx_reporter_s {
    tdsx_node_t *node;
    char *dir;
    int has_prev;
    tdsx_report_t *prev;
    tdsx_hash_t prev_hash;
    int busy;      /* one make or submit at a time: each extends the last */
    op_t *waiting; /* a submit waiting for the witness's ReportAck */
    op_t *retry;   /* a submit to send again at the next tick */
    uv_timer_t timer;
    int timer_open;
    int64_t next_auto; /* unix seconds; 0: no automatic reports */
};

static char *dir_file(const char *dir, const char *sub, uint64_t seq, const char *ext)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, 8192);
    int rc = sub ? tdsx_buf_printf(&b, "%s/%s/%llu.%s", dir, sub, U(seq), ext)
                 : tdsx_buf_printf(&b, "%s/%llu.%s", dir, U(seq), ext);
    if (rc) {
        tdsx_buf_free(&b);
        return NULL;
    }
    return tdsx_buf_take(&b, NULL);
}

/* Thread pool: a file in R->dir, durably; with replace == 0 never over an existing one
 * (TDSX_E_EXISTS): a report and its checkpoint are written once, a cosignature may be renewed. */
static int save(const tdsx_reporter_t *R, uint64_t seq, const char *ext, tdsx_bytes_t data,
                int replace)
{
    if (mkdir(R->dir, 0700) != 0 && errno != EEXIST)
        return TDSX_E_IO;
    char *path = dir_file(R->dir, NULL, seq, ext);
    int rc = path ? tdsx_file_write(path, data.p, data.n, 0600, replace) : TDSX_E_NOMEM;
    tdsx_free(path);
    return rc ? rc : tdsx_dir_sync(R->dir);
}

static int load(const tdsx_reporter_t *R, uint64_t seq, const char *ext, tdsx_buf_t *out)
{
    char *path = dir_file(R->dir, NULL, seq, ext);
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = path ? tdsx_file_read(path, TDSX_NOTE_MAX, &p, &len) : TDSX_E_NOMEM;
    if (rc == 0)
        rc = tdsx_buf_append(out, p, len);
    tdsx_free(p);
    tdsx_free(path);
    return rc;
}

static op_t *op_new(tdsx_reporter_t *R, op_kind_t kind)
{
    op_t *o = tdsx_calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->R = R;
    o->kind = kind;
    o->work.data = o;
    tdsx_buf_init(&o->cp, TDSX_NOTE_MAX);
    tdsx_buf_init(&o->note, TDSX_NOTE_MAX);
    tdsx_buf_init(&o->cosigned, TDSX_NOTE_MAX);
    o->r = tdsx_calloc(1, sizeof *o->r);
    if (!o->r) {
        tdsx_free(o);
        return NULL;
    }
    return o;
}

static void op_free(op_t *o)
{
    if (!o)
        return;
    tdsx_buf_free(&o->cp);
    tdsx_buf_free(&o->note);
    tdsx_buf_free(&o->cosigned);
    tdsx_free(o->members);
    tdsx_free(o->r);
    tdsx_free(o);
}

static void reply_error(tdsx_node_t *n, const op_t *o, int err, const char *why)
{
    tdsx_ctl_client_t *cl = o->has_client ? tdsx__control_find(n, o->client) : NULL;
    if (!cl)
        return;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LocalError le = TDSX__LOCAL_ERROR__INIT;
    le.code = tdsx_err_wire(err);
    le.message = (char *)(why ? why : tdsx_strerror(err));
    resp.id = o->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_ERROR;
    resp.error = &le;
    tdsx__control_reply(cl, &resp);
}

static void reply_ok(tdsx_node_t *n, const op_t *o)
{
    tdsx_ctl_client_t *cl = o->has_client ? tdsx__control_find(n, o->client) : NULL;
    if (!cl)
        return;
    char *path = dir_file(o->R->dir, NULL, o->r->sequence, "note");
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__ReportResponse rr = TDSX__REPORT_RESPONSE__INIT;
    rr.sequence = o->r->sequence;
    rr.path = path ? path : "";
    rr.note.data = o->note.p;
    rr.note.len = o->note.len;
    rr.cosigned.data = o->cosigned.p;
    rr.cosigned.len = o->cosigned.len;
    rr.log_index = o->log_index;
    rr.witness = (char *)o->witness;
    resp.id = o->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_REPORT;
    resp.report = &rr;
    tdsx__control_reply(cl, &resp);
    tdsx_free(path);
}

/* ---- make ---- */

static int member_role(void *ud, const char *id, tdsx_role_t *role)
{
    const op_t *o = ud;
    for (size_t i = 0; i < o->n_members; i++)
        if (strcmp(o->members[i].id, id) == 0) {
            *role = o->members[i].role;
            return 0;
        }
    return TDSX_E_NOTFOUND;
}

/* Thread pool: tally the range, sign, keep the files. */
static void make_work(uv_work_t *w)
{
    op_t *o = w->data;
    tdsx_node_t *n = o->R->node;
    tdsx_tlog_t *tlog = tdsx__log_store(n);
    tdsx_report_tally_t *t = NULL;
    tdsx_buf_t entry;
    tdsx_buf_init(&entry, TDSX_TLOG_ENTRY_MAX);
    o->rc = tdsx_report_tally_new(n->self_id, o->r->period_to, member_role, o, &t);
    for (uint64_t i = o->r->first; o->rc == 0 && i < o->r->size; i++) {
        tdsx_buf_reset(&entry);
        o->rc = tdsx_tlog_entry(tlog, i, &entry);
        if (o->rc == 0)
            o->rc = tdsx_report_tally_add(t, tdsx_buf_bytes(&entry));
    }
    if (o->rc == 0)
        o->rc = tdsx_report_tally_finish(t, &o->r->counts);
    if (o->rc) {
        o->why = "the log range could not be counted";
        goto done;
    }
    o->rc = tdsx_report_sign(o->r, tdsx__log_key(n), &o->note);
    if (o->rc == 0)
        o->rc = tdsx_report_note_hash(tdsx_buf_bytes(&o->note), &o->hash);
    if (o->rc) {
        o->why = "the report could not be signed";
        goto done;
    }
    o->rc = save(o->R, o->r->sequence, "checkpoint", tdsx_buf_bytes(&o->cp), 0);
    if (o->rc == 0)
        o->rc = save(o->R, o->r->sequence, "note", tdsx_buf_bytes(&o->note), 0);
    if (o->rc)
        o->why = "the report could not be stored under data_dir/reports";
done:
    tdsx_buf_free(&entry);
    tdsx_report_tally_free(t);
}

static int submit_start(tdsx_reporter_t *R, uint64_t seq, int has_client, uint64_t client,
                        uint64_t req_id);

static void report_logged(void *ud, int status, uint64_t index)
{
    op_t *o = ud;
    tdsx_node_t *n = o->R->node;
    if (status) {
        tdsx_log(TDSX_LOG_ERROR, "report.log_failed", TDSX_KV_I("sequence", o->r->sequence),
                 TDSX_KV_E("err", status));
        reply_error(n, o, status, "the report is stored but could not be logged");
    } else {
        o->log_index = index;
        reply_ok(n, o);
    }
    op_free(o);
}

/* Appends REPORT(note, cosigned checkpoint or empty); o is freed once it is durable. */
static void log_report(op_t *o)
{
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_REPORT, 2, {{0}}};
    e.item[0] = tdsx_buf_bytes(&o->note);
    e.item[1] = tdsx_buf_bytes(&o->cosigned);
    int rc = tdsx__log_append(o->R->node, &e, report_logged, o);
    if (rc)
        report_logged(o, rc, 0);
}

static void make_done(uv_work_t *w, int status)
{
    op_t *o = w->data;
    tdsx_reporter_t *R = o->R;
    int rc = status ? TDSX_E_IO : o->rc;
    R->busy = 0;
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "report.make_failed", TDSX_KV_I("sequence", o->r->sequence),
                 TDSX_KV_E("err", rc), TDSX_KV_S("reason", o->why ? o->why : ""));
        reply_error(R->node, o, rc, o->why);
        op_free(o);
        return;
    }
    *R->prev = *o->r;
    R->prev_hash = o->hash;
    R->has_prev = 1;
    tdsx_log(TDSX_LOG_INFO, "report.made", TDSX_KV_I("sequence", o->r->sequence),
             TDSX_KV_I("first", o->r->first), TDSX_KV_I("size", o->r->size),
             TDSX_KV_I("period_to", o->r->period_to));
    uint64_t seq = o->r->sequence;
    int auto_submit = o->auto_submit;
    log_report(o);
    if (auto_submit && tdsx__log_witness_id(R->node)) {
        rc = submit_start(R, seq, 0, 0, 0);
        if (rc)
            tdsx_log(TDSX_LOG_WARN, "report.submit_failed", TDSX_KV_I("sequence", seq),
                     TDSX_KV_E("err", rc));
    }
}

static tdsx_report_cert_status_t own_cert_status(tdsx_node_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", n->cfg.credentials, TDSX_CRED_SIGN_CERT);
    uint8_t *pem = NULL;
    size_t len = 0;
    if (!n->trust || tdsx_file_read(path, 1u << 20, &pem, &len) != 0)
        return TDSX_REPORT_CERT_UNKNOWN;
    tdsx_verify_opts_t vo;
    memset(&vo, 0, sizeof vo);
    vo.purpose = TDSX_PURPOSE_SIGN;
    int rc = tdsx_cert_verify_pem(n->trust, pem, len, &vo, NULL);
    tdsx_free(pem);
    return rc == 0                     ? TDSX_REPORT_CERT_GOOD
           : rc == TDSX_E_CERT_REVOKED ? TDSX_REPORT_CERT_REVOKED
                                       : TDSX_REPORT_CERT_UNKNOWN;
}

static int make_start(tdsx_reporter_t *R, int64_t from, int64_t to, int auto_submit, int has_client,
                      uint64_t client, uint64_t req_id, const char **why)
{
    tdsx_node_t *n = R->node;
    if (R->busy) {
        *why = "a report is being made or submitted";
        return TDSX_E_BUSY;
    }
    op_t *o = op_new(R, OP_MAKE);
    if (!o)
        return TDSX_E_NOMEM;
    tdsx_report_t *r = o->r;
    const tdsx_report_t *p = R->has_prev ? R->prev : NULL;
    int rc = tdsx__log_published(n, &o->cp, &r->size, &r->root);
    if (rc == TDSX_E_NOTFOUND) {
        *why = "the log has published no checkpoint yet (checkpoint_interval)";
        rc = TDSX_E_STATE;
    }
    if (rc)
        goto fail;
    if (p && r->size <= p->size) {
        *why = "the published log has not grown since the previous report";
        rc = TDSX_E_REPORT_CHAIN;
        goto fail;
    }
    int64_t now = tdsx_now();
    if (from == 0 && to == 0) {
        from = p ? p->period_to : n->started_at;
        to = now > from ? now : from;
    }
    if (from < 0 || to < from || (p && from < p->period_to)) {
        *why = "the period must not end before it starts nor start before the previous "
               "report's end";
        rc = p && from < p->period_to ? TDSX_E_REPORT_CHAIN : TDSX_E_INVAL;
        goto fail;
    }
    snprintf(r->node, sizeof r->node, "%s", n->self_id);
    r->role = n->cfg.role;
    r->sequence = p ? p->sequence + 1 : 1;
    r->period_from = from;
    r->period_to = to;
    r->first = r->prev_size = p ? p->size : 0;
    if (p) {
        r->prev_root = p->root;
        r->prev_report = R->prev_hash;
    } else if ((rc = tdsx_merkle_root(NULL, 0, &r->prev_root)) != 0) {
        goto fail;
    }
    /* The bundle in force (bundle.h); all zero when the node runs on a registry file. */
    int64_t issued = 0, expires = 0;
    tdsx__bundle_state(n, &r->bundle_serial, &issued, &expires, NULL);
    r->bundle_expires = expires > 0 ? expires : 0;
    r->auth_not_after = n->self_auth.not_after > 0 ? n->self_auth.not_after : 0;
    r->sign_not_after = n->self_sign.not_after > 0 ? n->self_sign.not_after : 0;
    r->cert_status = own_cert_status(n);
    if (n->policy)
        memcpy(r->policy.b, tdsx_policy_hash(n->policy), TDSX_HASH_LEN);
    snprintf(r->software, sizeof r->software, "tdsx/%s", TDSX_VERSION);
    size_t nm = tdsx_registry_count(n->registry);
    o->members = tdsx_calloc(nm ? nm : 1, sizeof *o->members);
    if (!o->members) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < nm; i++) {
        const tdsx_member_t *m = tdsx_registry_at(n->registry, i);
        snprintf(o->members[i].id, sizeof o->members[i].id, "%s", m->id);
        o->members[i].role = m->role;
    }
    o->n_members = nm;
    o->auto_submit = auto_submit;
    o->has_client = has_client;
    o->client = client;
    o->req_id = req_id;
    if (uv_queue_work(n->loop, &o->work, make_work, make_done) != 0) {
        rc = TDSX_E_IO;
        goto fail;
    }
    R->busy = 1;
    return 0;
fail:
    op_free(o);
    return rc;
}

/* ---- submit, node side ---- */

/* Thread pool: the stored report and checkpoint, and the proof the witness needs. */
static void submit_work(uv_work_t *w)
{
    op_t *o = w->data;
    tdsx_reporter_t *R = o->R;
    o->rc = load(R, o->seq, "note", &o->note);
    if (o->rc == 0)
        o->rc = load(R, o->seq, "checkpoint", &o->cp);
    if (o->rc == 0)
        o->rc = tdsx_report_open(tdsx_buf_bytes(&o->note),
                                 tdsx_note_signer_verifier(tdsx__log_key(R->node)), o->r);
    if (o->rc) {
        o->why = o->rc == TDSX_E_NOTFOUND ? "no such report under data_dir/reports"
                                          : "the stored report does not open";
        return;
    }
    /* From the witness's last cosigned size to the report's, or back when it holds more. */
    uint64_t size = o->r->size, cos = o->cos_size;
    o->old_size = cos;
    if (cos == 0 || cos == size)
        return;
    tdsx_tlog_t *tlog = tdsx__log_store(R->node);
    o->rc = cos < size ? tdsx_tlog_consistency_proof(tlog, cos, size, o->proof, &o->nproof)
                       : tdsx_tlog_consistency_proof(tlog, size, cos, o->proof, &o->nproof);
    if (o->rc)
        o->why = "no consistency proof between the report and the witness's checkpoint";
}

static void submit_done(uv_work_t *w, int status)
{
    op_t *o = w->data;
    tdsx_reporter_t *R = o->R;
    int rc = status ? TDSX_E_IO : o->rc;
    tdsx_conn_t *c = rc ? NULL : tdsx__node_find_conn(R->node, o->witness);
    if (!rc && !c) {
        rc = TDSX_E_CLOSED;
        o->why = "not connected to the witness";
    }
    if (c) {
        Tdsx__ReportSubmit rs = TDSX__REPORT_SUBMIT__INIT;
        Tdsx__Frame f = TDSX__FRAME__INIT;
        ProtobufCBinaryData proof[TDSX_MERKLE_CONSISTENCY_MAX];
        for (size_t i = 0; i < o->nproof; i++) {
            proof[i].data = o->proof[i].b;
            proof[i].len = TDSX_HASH_LEN;
        }
        rs.report.data = o->note.p;
        rs.report.len = o->note.len;
        rs.checkpoint.data = o->cp.p;
        rs.checkpoint.len = o->cp.len;
        rs.consistency_proof = proof;
        rs.n_consistency_proof = o->nproof;
        rs.old_size = o->old_size;
        f.stream_id = tdsx__conn_new_stream(c);
        f.body_case = TDSX__FRAME__BODY_REPORT_SUBMIT;
        f.report_submit = &rs;
        rc = tdsx__conn_send(c, &f);
        if (rc == 0) {
            o->stream = f.stream_id;
            o->deadline = uv_now(R->node->loop) + REPORT_ACK_TIMEOUT_MS;
            R->waiting = o;
            tdsx_log(TDSX_LOG_INFO, "report.submitted", TDSX_KV_I("sequence", o->seq),
                     TDSX_KV_S("witness", o->witness), TDSX_KV_I("old_size", o->old_size));
            return;
        }
    }
    R->busy = 0;
    tdsx_log(TDSX_LOG_WARN, "report.submit_failed", TDSX_KV_I("sequence", o->seq),
             TDSX_KV_E("err", rc), TDSX_KV_S("reason", o->why ? o->why : ""));
    reply_error(R->node, o, rc, o->why);
    op_free(o);
}

static int submit_start(tdsx_reporter_t *R, uint64_t seq, int has_client, uint64_t client,
                        uint64_t req_id)
{
    tdsx_node_t *n = R->node;
    const char *witness = tdsx__log_witness_id(n);
    if (!witness)
        return TDSX_E_STATE;
    if (R->busy)
        return TDSX_E_BUSY;
    if (seq == 0 && !R->has_prev)
        return TDSX_E_NOTFOUND;
    op_t *o = op_new(R, OP_SUBMIT);
    if (!o)
        return TDSX_E_NOMEM;
    o->seq = seq ? seq : R->prev->sequence;
    o->cos_size = tdsx__log_cosigned_size(n);
    snprintf(o->witness, sizeof o->witness, "%s", witness);
    o->has_client = has_client;
    o->client = client;
    o->req_id = req_id;
    if (uv_queue_work(n->loop, &o->work, submit_work, submit_done) != 0) {
        op_free(o);
        return TDSX_E_IO;
    }
    R->busy = 1;
    return 0;
}

static void save_work(uv_work_t *w)
{
    op_t *o = w->data;
    o->rc = save(o->R, o->seq, "cosigned", tdsx_buf_bytes(&o->cosigned), 1);
}

static void save_done(uv_work_t *w, int status)
{
    op_t *o = w->data;
    int rc = status ? TDSX_E_IO : o->rc;
    o->R->busy = 0;
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "report.cosigned_save_failed", TDSX_KV_I("sequence", o->seq),
                 TDSX_KV_E("err", rc));
        reply_error(o->R->node, o, rc, "the cosignature could not be stored");
        op_free(o);
        return;
    }
    tdsx_log(TDSX_LOG_INFO, "report.cosigned", TDSX_KV_I("sequence", o->seq),
             TDSX_KV_S("witness", o->witness), TDSX_KV_I("size", o->r->size));
    log_report(o);
}

static int on_ack(tdsx_reporter_t *R, tdsx_conn_t *c, const Tdsx__Frame *f, tdsx_bytes_t peer_cert)
{
    op_t *o = R->waiting;
    const Tdsx__ReportAck *a = f->report_ack;
    if (!o || f->stream_id != o->stream || strcmp(tdsx__conn_peer_id(c), o->witness) != 0) {
        tdsx_log(TDSX_LOG_DEBUG, "report.unexpected_ack", TDSX_KV_S("peer", tdsx__conn_peer_id(c)));
        return 0;
    }
    R->waiting = NULL;
    int rc = a->code ? tdsx_err_from_wire(a->code) : 0;
    const char *why = a->code ? (a->message && *a->message ? a->message : NULL) : NULL;
    if (rc == TDSX_E_STATE && o->retries < REPORT_RETRIES) {
        /* The log's own submission moved the witness on meanwhile: once the log has recorded
         * that cosignature, prove from it (next tick). */
        o->retries++;
        tdsx_buf_reset(&o->note);
        tdsx_buf_reset(&o->cp);
        o->nproof = 0;
        R->retry = o;
        return 0;
    }
    uint8_t pk[TDSX_ED25519_PK_LEN];
    tdsx_note_verifier_t wv;
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    if (rc == 0)
        rc = tdsx__log_cert_key(peer_cert, pk);
    if (rc == 0)
        rc = tdsx_note_verifier_init(&wv, o->witness, TDSX_NOTE_COSIG, pk);
    /* The stated checkpoint with the witness's line must verify as cosigned by it. */
    if (rc == 0)
        rc = tdsx_buf_append(&o->cosigned, o->cp.p, o->cp.len);
    if (rc == 0)
        rc = tdsx_buf_append(&o->cosigned, a->cosignature.data, a->cosignature.len);
    if (rc == 0)
        rc = tdsx_checkpoint_open(tdsx_buf_bytes(&o->cosigned),
                                  tdsx_note_signer_verifier(tdsx__log_key(R->node)), &wv, 1,
                                  R->node->self_id, &note, &cp);
    if (rc == 0 && !tdsx_note_verified_by(note, &wv))
        rc = TDSX_E_NOTE_UNVERIFIED;
    if (rc == 0 &&
        (cp.size != o->r->size || sodium_memcmp(cp.root.b, o->r->root.b, TDSX_HASH_LEN) != 0))
        rc = TDSX_E_REPORT_MISMATCH;
    tdsx_note_free(note);
    if (rc == 0 && uv_queue_work(R->node->loop, &o->work, save_work, save_done) != 0)
        rc = TDSX_E_IO;
    if (rc == 0)
        return 0;
    R->busy = 0;
    tdsx_log(TDSX_LOG_WARN, "report.refused", TDSX_KV_I("sequence", o->seq),
             TDSX_KV_S("witness", o->witness), TDSX_KV_E("err", rc),
             TDSX_KV_S("reason", why ? why : tdsx_strerror(rc)));
    reply_error(R->node, o, rc, why);
    op_free(o);
    return 0;
}

/* ---- submit, centre side ---- */

typedef struct {
    tdsx_node_t *node;
    char peer[TDSX_ID_SIZE];
    uint32_t stream;
    uint64_t seq;
    tdsx_report_t *r;       /* as submitted (opened) */
    tdsx_buf_t note;        /* its bytes */
    tdsx_note_verifier_t v; /* the member's sign key */
    char *dir;              /* reports/<USCC>_<node> */
} ack_t;

static void ack_free(ack_t *k)
{
    if (!k)
        return;
    tdsx_free(k->r);
    tdsx_buf_free(&k->note);
    tdsx_free(k->dir);
    tdsx_free(k);
}

/* Thread pool, inside the witness job (report.h): the report must be the one kept under its
 * sequence number, when there is one (a node does not get two different reports N cosigned),
 * and extend the previous one kept, when the centre kept it. */
static int kept_check(void *ud, const char **why)
{
    ack_t *k = ud;
    uint8_t *p = NULL;
    size_t len = 0;
    char *path = dir_file(k->dir, NULL, k->seq, "note");
    int rc = path ? tdsx_file_read(path, TDSX_NOTE_MAX, &p, &len) : TDSX_E_NOMEM;
    tdsx_free(path);
    if (rc == 0) {
        int same = tdsx_bytes_equal(tdsx_bytes(p, len), tdsx_buf_bytes(&k->note));
        tdsx_free(p);
        *why = same ? NULL : "another report with this sequence number was cosigned before";
        return same ? 0 : TDSX_E_REPORT_CHAIN;
    }
    if (rc != TDSX_E_NOTFOUND || k->seq == 1) {
        *why = rc == TDSX_E_NOTFOUND ? NULL : "the centre could not read the reports it kept";
        return rc == TDSX_E_NOTFOUND ? 0 : rc;
    }
    path = dir_file(k->dir, NULL, k->seq - 1, "note");
    rc = path ? tdsx_file_read(path, TDSX_NOTE_MAX, &p, &len) : TDSX_E_NOMEM;
    tdsx_free(path);
    if (rc == TDSX_E_NOTFOUND)
        return 0; /* the previous report never came here: the auditor checks the chain */
    tdsx_report_t *prev = rc == 0 ? tdsx_calloc(1, sizeof *prev) : NULL;
    tdsx_hash_t h;
    if (rc == 0)
        rc = prev ? tdsx_report_open(tdsx_bytes(p, len), &k->v, prev) : TDSX_E_NOMEM;
    if (rc == 0)
        rc = tdsx_report_note_hash(tdsx_bytes(p, len), &h);
    if (rc == 0 && tdsx_report_chain_check(prev, &h, k->r) != 0) {
        rc = TDSX_E_REPORT_CHAIN;
        *why = "the report does not extend the previous report kept for this node";
    } else if (rc) {
        *why = "the centre could not read the reports it kept";
    }
    tdsx_free(prev);
    tdsx_free(p);
    return rc;
}

static int answer(tdsx_conn_t *c, uint32_t stream, int err, const char *msg, tdsx_bytes_t line)
{
    Tdsx__ReportAck a = TDSX__REPORT_ACK__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    a.cosignature.data = (uint8_t *)line.p;
    a.cosignature.len = line.n;
    a.code = tdsx_err_wire(err);
    a.message = (char *)(msg ? msg : (err ? tdsx_strerror(err) : ""));
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_REPORT_ACK;
    f.report_ack = &a;
    return tdsx__conn_send(c, &f);
}

static void on_witnessed(void *ud, int rc, const char *why, tdsx_bytes_t cosigned,
                         tdsx_bytes_t witnessed)
{
    (void)witnessed;
    ack_t *k = ud;
    tdsx_note_t *note = NULL;
    tdsx_bytes_t line = tdsx_bytes(NULL, 0);
    const tdsx_note_verifier_t *self =
        tdsx__log_key(k->node) ? tdsx_note_signer_verifier(tdsx__log_key(k->node)) : NULL;
    /* Our cosignature/v1 line: our name, and the 8-byte time before the signature. */
    if (rc == 0 && (rc = tdsx_note_parse(cosigned, &note)) == 0) {
        for (size_t i = 0; self && i < tdsx_note_sig_count(note); i++) {
            const tdsx_note_sig_t *s = tdsx_note_sig(note, i);
            if (s->sig.n == 72 && s->name.n == self->name_len &&
                memcmp(s->name.p, self->name, s->name.n) == 0)
                line = s->line;
        }
        if (!line.n)
            rc = TDSX_E_INTERNAL;
    }
    if (rc == 0)
        tdsx_log(TDSX_LOG_INFO, "report.witnessed", TDSX_KV_S("node", k->peer),
                 TDSX_KV_I("sequence", k->seq));
    else
        tdsx_log(TDSX_LOG_WARN, "report.witness_refused", TDSX_KV_S("node", k->peer),
                 TDSX_KV_I("sequence", k->seq), TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", why ? why : tdsx_strerror(rc)));
    tdsx_conn_t *c = tdsx__node_find_conn(k->node, k->peer);
    if (c && answer(c, k->stream, rc, why, line) != 0)
        tdsx_log(TDSX_LOG_DEBUG, "report.answer_dropped", TDSX_KV_S("node", k->peer));
    tdsx_note_free(note);
    ack_free(k);
}

static int on_submit(tdsx_reporter_t *R, tdsx_conn_t *c, const Tdsx__Frame *f,
                     tdsx_bytes_t peer_cert)
{
    tdsx_node_t *n = R->node;
    const Tdsx__ReportSubmit *s = f->report_submit;
    const char *peer = tdsx__conn_peer_id(c);
    const char *why = NULL;
    tdsx_report_t *r = tdsx_calloc(1, sizeof *r);
    tdsx_note_t *note = NULL;
    ack_t *k = NULL;
    char *keep = NULL;
    tdsx_checkpoint_t cp;
    tdsx_note_verifier_t v;
    uint8_t pk[TDSX_ED25519_PK_LEN];
    int rc = r ? 0 : TDSX_E_NOMEM;
    if (rc == 0 && n->cfg.role != TDSX_ROLE_CENTRE) {
        rc = TDSX_E_UNSUPPORTED;
        why = "this node is not a witness";
    }
    if (rc == 0)
        rc = tdsx__log_cert_key(peer_cert, pk);
    if (rc == 0)
        rc = tdsx_note_verifier_init(&v, peer, TDSX_NOTE_ED25519, pk);
    if (rc == 0 && (rc = tdsx_report_open(tdsx_bytes(s->report.data, s->report.len), &v, r)) != 0)
        why = "the report is not a valid report signed by the node's sign key";
    if (rc == 0 && (rc = tdsx_checkpoint_open(tdsx_bytes(s->checkpoint.data, s->checkpoint.len), &v,
                                              NULL, 0, peer, &note, &cp)) != 0)
        why = "the checkpoint is not a valid one signed by the node";
    if (rc == 0 &&
        (cp.size != r->size || sodium_memcmp(cp.root.b, r->root.b, TDSX_HASH_LEN) != 0)) {
        rc = TDSX_E_REPORT_MISMATCH;
        why = "the report states another checkpoint than the one submitted with it";
    }
    if (rc == 0) {
        char sub[TDSX_ID_SIZE];
        snprintf(sub, sizeof sub, "%s", peer);
        char *slash = strchr(sub, '/');
        if (slash)
            *slash = '_'; /* node names hold no '/': "<USCC>_<node>" is unambiguous */
        keep = dir_file(R->dir, sub, r->sequence, "note");
        k = tdsx_calloc(1, sizeof *k);
        if (k) {
            tdsx_buf_init(&k->note, TDSX_NOTE_MAX);
            tdsx_buf_t d;
            tdsx_buf_init(&d, 8192);
            if (tdsx_buf_printf(&d, "%s/%s", R->dir, sub) == 0)
                k->dir = tdsx_buf_take(&d, NULL);
            tdsx_buf_free(&d);
        }
        rc = keep && k && k->dir ? tdsx_buf_append(&k->note, s->report.data, s->report.len)
                                 : TDSX_E_NOMEM;
    }
    if (rc == 0) {
        k->node = n;
        snprintf(k->peer, sizeof k->peer, "%s", peer);
        k->stream = f->stream_id;
        k->seq = r->sequence;
        k->v = v;
        k->r = r;
        r = NULL;
        rc =
            tdsx__log_witness(n, peer, peer_cert, tdsx_bytes(s->checkpoint.data, s->checkpoint.len),
                              s->old_size, s->consistency_proof, s->n_consistency_proof, keep,
                              tdsx_buf_bytes(&k->note), kept_check, on_witnessed, k);
        if (rc == 0)
            k = NULL; /* on_witnessed has it */
    }
    if (rc) {
        tdsx_log(TDSX_LOG_WARN, "report.refused_from", TDSX_KV_S("node", peer),
                 TDSX_KV_E("err", rc), TDSX_KV_S("reason", why ? why : tdsx_strerror(rc)));
        if (rc != TDSX_E_NOMEM)
            rc = answer(c, f->stream_id, rc, why, tdsx_bytes(NULL, 0));
    }
    ack_free(k);
    tdsx_free(keep);
    tdsx_note_free(note);
    tdsx_free(r);
    return rc;
}

int tdsx__report_frame(tdsx_node_t *n, tdsx_conn_t *c, const Tdsx__Frame *f, tdsx_bytes_t peer_cert)
{
    tdsx_reporter_t *R = n ? n->report : NULL;
    if (!c || !f)
        return TDSX_E_INVAL;
    if (!R)
        return 0;
    switch (f->body_case) {
    case TDSX__FRAME__BODY_REPORT_SUBMIT: return on_submit(R, c, f, peer_cert);
    case TDSX__FRAME__BODY_REPORT_ACK: return on_ack(R, c, f, peer_cert);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

int tdsx__report_local(tdsx_node_t *n, tdsx_ctl_client_t *cl, const Tdsx__LocalRequest *req)
{
    tdsx_reporter_t *R = n ? n->report : NULL;
    const char *text = NULL, **why = &text;
    if (!R)
        return TDSX_E_STATE;
    uint64_t client = tdsx__control_serial(cl);
    int rc;
    switch (req->body_case) {
    case TDSX__LOCAL_REQUEST__BODY_REPORT_MAKE:
        rc = make_start(R, req->report_make->period_from, req->report_make->period_to, 0, 1, client,
                        req->id, why);
        break;
    case TDSX__LOCAL_REQUEST__BODY_REPORT_SUBMIT:
        rc = submit_start(R, req->report_submit->sequence, 1, client, req->id);
        if (rc == TDSX_E_STATE)
            *why = "no witness is configured (config key witness)";
        else if (rc == TDSX_E_NOTFOUND)
            *why = "no report made yet";
        else if (rc == TDSX_E_BUSY)
            *why = "a report is being made or submitted";
        break;
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
    if (rc == 0 || rc == TDSX_E_NOMEM)
        return rc ? rc : 1;
    op_t o;
    memset(&o, 0, sizeof o);
    o.has_client = 1;
    o.client = client;
    o.req_id = req->id;
    reply_error(n, &o, rc, text);
    return 1;
}

/* ---- lifecycle ---- */

static void on_tick(uv_timer_t *t)
{
    tdsx_reporter_t *R = t->data;
    tdsx_node_t *n = R->node;
    op_t *o = R->waiting;
    if (o && uv_now(n->loop) > o->deadline) {
        R->waiting = NULL;
        R->busy = 0;
        tdsx_log(TDSX_LOG_WARN, "report.witness_timeout", TDSX_KV_I("sequence", o->seq),
                 TDSX_KV_S("witness", o->witness));
        reply_error(n, o, TDSX_E_TIMEOUT, "the witness did not answer");
        op_free(o);
    }
    if (R->retry) {
        o = R->retry;
        R->retry = NULL;
        o->cos_size = tdsx__log_cosigned_size(n);
        if (uv_queue_work(n->loop, &o->work, submit_work, submit_done) != 0) {
            R->busy = 0;
            reply_error(n, o, TDSX_E_IO, NULL);
            op_free(o);
        }
    }
    int64_t now = tdsx_now();
    if (!R->next_auto || now < R->next_auto || R->busy || n->draining)
        return;
    R->next_auto =
        now + (int64_t)(n->cfg.report_period_ms / 1000 ? n->cfg.report_period_ms / 1000 : 1);
    const char *why = NULL;
    int rc = make_start(R, 0, 0, 1, 0, 0, 0, &why);
    if (rc)
        tdsx_log(TDSX_LOG_INFO, "report.auto_skipped", TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", why ? why : tdsx_strerror(rc)));
}

/* The latest report under dir (BLOCKS: at start): its sequence is the highest N.note. */
static int load_latest(tdsx_reporter_t *R)
{
    uv_fs_t req;
    uint64_t best = 0;
    if (uv_fs_scandir(NULL, &req, R->dir, 0, NULL) >= 0) {
        uv_dirent_t ent;
        while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
            const char *dot = strchr(ent.name, '.');
            uint64_t seq;
            char num[24];
            if (ent.type != UV_DIRENT_FILE || !dot || strcmp(dot, ".note") != 0 ||
                (size_t)(dot - ent.name) >= sizeof num)
                continue;
            snprintf(num, sizeof num, "%.*s", (int)(dot - ent.name), ent.name);
            if (get_u64(num, &seq) == 0 && seq > best)
                best = seq;
        }
    }
    uv_fs_req_cleanup(&req);
    if (best == 0)
        return 0;
    tdsx_buf_t note;
    tdsx_buf_init(&note, TDSX_NOTE_MAX);
    int rc = load(R, best, "note", &note);
    if (rc == 0)
        rc = tdsx_report_open(tdsx_buf_bytes(&note),
                              tdsx_note_signer_verifier(tdsx__log_key(R->node)), R->prev);
    if (rc == 0 && R->prev->sequence != best)
        rc = TDSX_E_REPORT;
    if (rc == 0)
        rc = tdsx_report_note_hash(tdsx_buf_bytes(&note), &R->prev_hash);
    tdsx_buf_free(&note);
    if (rc == 0)
        R->has_prev = 1;
    return rc;
}

int tdsx__report_start(tdsx_node_t *n)
{
    if (!n || !n->log)
        return TDSX_E_STATE;
    tdsx_reporter_t *R = tdsx_calloc(1, sizeof *R);
    if (!R)
        return TDSX_E_NOMEM;
    R->node = n;
    R->prev = tdsx_calloc(1, sizeof *R->prev);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 8192);
    int rc = R->prev && tdsx_buf_printf(&b, "%s/%s", n->cfg.data_dir, TDSX_REPORT_DIR) == 0
                 ? 0
                 : TDSX_E_NOMEM;
    R->dir = rc == 0 ? tdsx_buf_take(&b, NULL) : NULL;
    tdsx_buf_free(&b);
    if (rc == 0 && (rc = load_latest(R)) != 0)
        tdsx_log(TDSX_LOG_ERROR, "report.latest_invalid", TDSX_KV_S("dir", R->dir),
                 TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", "the latest stored report does not open with this node's "
                                     "key: refusing to chain new reports onto it"));
    if (rc) {
        tdsx_free(R->dir);
        tdsx_free(R->prev);
        tdsx_free(R);
        return rc;
    }
    uint64_t period = n->cfg.report_period_ms;
    if (period) {
        int64_t base = R->has_prev ? R->prev->period_to : n->started_at;
        R->next_auto = base + (int64_t)(period / 1000 ? period / 1000 : 1);
    }
    uv_timer_init(n->loop, &R->timer);
    R->timer.data = R;
    R->timer_open = 1;
    uint64_t tick = period && period < REPORT_TICK_MAX_MS ? period : REPORT_TICK_MAX_MS;
    uv_timer_start(&R->timer, on_tick, tick, tick);
    n->report = R;
    tdsx_log(TDSX_LOG_INFO, "report.opened",
             TDSX_KV_I("latest", R->has_prev ? R->prev->sequence : 0),
             TDSX_KV_I("period_ms", period));
    return 0;
}

void tdsx__report_close(tdsx_node_t *n)
{
    tdsx_reporter_t *R = n ? n->report : NULL;
    if (!R || !R->timer_open)
        return;
    R->timer_open = 0;
    uv_close((uv_handle_t *)&R->timer, NULL);
}

void tdsx__report_free(tdsx_node_t *n)
{
    tdsx_reporter_t *R = n ? n->report : NULL;
    if (!R)
        return;
    op_t *left[2] = {R->waiting, R->retry};
    for (int i = 0; i < 2; i++) {
        if (left[i])
            reply_error(n, left[i], TDSX_E_DRAINING, NULL);
        op_free(left[i]);
    }
    tdsx_free(R->dir);
    tdsx_free(R->prev);
    tdsx_free(R);
    n->report = NULL;
}
