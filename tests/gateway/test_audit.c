/*
 * The evidence export and the offline auditor (SPEC §13), on evidence made by real daemons: a
 * centre (the witness), a brain and an enterprise exchange receipts; the enterprise's evidence
 * is exported while its daemon runs, then copies are tampered with one defect each. Every copy
 * must fail naming the check that caught it; the untampered bundle passes. The real `tdsx`
 * binary is run for the exit codes and --json.
 */
#include "daemon.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "bundle.h"
#include "crypto.h"
#include "envelope.pb-c.h"
#include "log.h"
#include "statement.pb-c.h"
#include "report.h"
#include "tlog.h"

#include <openssl/x509.h>
#include <sodium.h>
#include <time.h>

#define TAGS                                                                                       \
    "grade=general:1 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"
#define SENDS 4

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    char *file, *anchor, *foreign_anchor, *work;
    char *good;     /* the evidence exported after the first sends */
    char *reported; /* exported after the daemon made and submitted a report */
    char *later;    /* exported after more sends: a larger log */
} world_t;

static world_t W;

/* ---- collecting the checks ------------------------------------------------------------------ */

typedef struct {
    tdsx_audit_result_t r;
    char check[32], where[160], detail[400];
} line_t;

typedef struct {
    line_t v[4096];
    size_t n;
} lines_t;

static lines_t L;

static void collect(void *ud, tdsx_audit_result_t r, const char *check, const char *where,
                    const char *detail)
{
    lines_t *l = ud;
    if (l->n >= sizeof l->v / sizeof l->v[0])
        return;
    line_t *x = &l->v[l->n++];
    x->r = r;
    snprintf(x->check, sizeof x->check, "%s", check);
    snprintf(x->where, sizeof x->where, "%s", where);
    snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static tdsx_audit_summary_t verify_with(const char *dir, const char *anchor, const char *state)
{
    tdsx_audit_opts_t o = {anchor, state, 0};
    tdsx_audit_summary_t s;
    L.n = 0;
    assert_int_equal(tdsx_audit_verify(dir, &o, collect, &L, &s), 0);
    return s;
}

static tdsx_audit_summary_t verify(const char *dir)
{
    return verify_with(dir, W.anchor, NULL);
}

/* Lines with this result and check (where == NULL: any place). */
static size_t count(tdsx_audit_result_t r, const char *check, const char *where)
{
    size_t n = 0;
    for (size_t i = 0; i < L.n; i++)
        n += L.v[i].r == r && strcmp(L.v[i].check, check) == 0 &&
             (!where || strcmp(L.v[i].where, where) == 0);
    return n;
}

static void dump(void)
{
    for (size_t i = 0; i < L.n; i++)
        print_message("%s %s %s %s\n", tdsx_audit_result_name(L.v[i].r), L.v[i].check, L.v[i].where,
                      L.v[i].detail);
}

static void expect_fail(const char *check, const char *where)
{
    if (count(TDSX_AUDIT_FAIL, check, where) == 0) {
        dump();
        fail_msg("no FAIL %s %s", check, where ? where : "");
    }
}

/* ---- evidence files ------------------------------------------------------------------------ */

static char *copy_of(const char *src, const char *name)
{
    char *dst = tdsx_test_path(W.work, name);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "rm -rf '%s' && cp -a '%s' '%s'", dst, src, dst), 0);
    free(out);
    return dst;
}

/* noinline: inlined, gcc 12 -O3 takes the buffer tdsx_file_read returns through &d for a
 * pointer to d itself (-Wdangling-pointer, a false positive that -Werror makes fatal). */
__attribute__((noinline)) static uint8_t *slurp(const char *dir, const char *rel, size_t *n)
{
    char *path = tdsx_test_path(dir, rel);
    uint8_t *d = NULL;
    assert_int_equal(tdsx_file_read(path, 64u << 20, &d, n), 0);
    free(path);
    return d;
}

static void spill(const char *dir, const char *rel, const void *p, size_t n)
{
    char *path = tdsx_test_path(dir, rel);
    unlink(path);
    tdsx_test_write_file(path, p, n);
    free(path);
}

/* What a careful forger does after a change: puts the file's new SHA-256 in the MANIFEST, so
 * that the check meant to catch the change is the one that must. */
static void rehash(const char *dir, const char *rel)
{
    size_t n = 0, fn = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    uint8_t *f = slurp(dir, rel, &fn);
    uint8_t h[32];
    char hex[65], needle[600];
    assert_int_equal(tdsx_sha256(f, fn, h), 0);
    tdsx_hex_encode(hex, h, 32);
    snprintf(needle, sizeof needle, " %s\n", rel);
    char *at = strstr((char *)m, needle);
    if (at) {
        memcpy(at - 64, hex, 64);
    } else { /* a new file: list it */
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1u << 26);
        assert_int_equal(tdsx_buf_append(&b, m, n), 0);
        assert_int_equal(tdsx_buf_printf(&b, "%s %s\n", hex, rel), 0);
        tdsx_free(m);
        m = (uint8_t *)tdsx_buf_take(&b, &n);
    }
    spill(dir, TDSX_AUDIT_MANIFEST, m, n);
    tdsx_free(m);
    tdsx_free(f);
}

static uint64_t manifest_size(const char *dir)
{
    size_t n = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    const char *s = strstr((char *)m, "\nsize ");
    assert_non_null(s);
    uint64_t v = strtoull(s + 6, NULL, 10);
    tdsx_free(m);
    return v;
}

/* The entry bundle of a log under 256 entries. */
static void bundle_rel(const char *dir, char *rel, size_t size)
{
    uint64_t s = manifest_size(dir);
    assert_true(s > 0 && s < 256);
    snprintf(rel, size, "log/tile/entries/000.p/%llu", (unsigned long long)s);
}

typedef struct {
    tdsx_bytes_t e[256];
    size_t n;
} entries_t;

static void split(const uint8_t *d, size_t n, entries_t *out)
{
    tdsx_bytes_t c = tdsx_bytes(d, n);
    out->n = 0;
    while (c.n) {
        uint16_t l;
        assert_int_equal(tdsx_bytes_u16be(&c, &l), 0);
        assert_int_equal(tdsx_bytes_take(&c, l, &out->e[out->n++]), 0);
    }
}

static void join_write(const char *dir, const char *rel, const entries_t *es)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 26);
    for (size_t i = 0; i < es->n; i++) {
        uint8_t be[2] = {(uint8_t)(es->e[i].n >> 8), (uint8_t)es->e[i].n};
        assert_int_equal(tdsx_buf_append(&b, be, 2), 0);
        assert_int_equal(tdsx_buf_append(&b, es->e[i].p, es->e[i].n), 0);
    }
    spill(dir, rel, b.p, b.len);
    tdsx_buf_free(&b);
}

static size_t first_of_type(const entries_t *es, uint8_t type)
{
    for (size_t i = 0; i < es->n; i++) {
        tdsx_log_entry_t e;
        if (tdsx__log_entry_parse(es->e[i], &e) == 0 && e.type == type)
            return i;
    }
    fail_msg("no entry of type %u", type);
    return 0;
}

/* ---- reports made here with the enterprise's key, over its real log ------------------------ */

static int role_of(void *ud, const char *id, tdsx_role_t *role)
{
    (void)ud;
    const tdsx_test_node_t *all[] = {&W.centre, &W.brain, &W.ent};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(all[i]->id, id) == 0) {
            *role = all[i]->role;
            return 0;
        }
    return TDSX_E_NOTFOUND;
}

static int64_t not_after(const char *creds, const char *file)
{
    char *path = tdsx_test_path(creds, file);
    STACK_OF(X509) *sk = NULL;
    struct tm tm;
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(sk, 0)), &tm), 1);
    sk_X509_pop_free(sk, X509_free);
    free(path);
    return (int64_t)timegm(&tm);
}

typedef enum { HONEST, FORGED_COUNT, BROKEN_CHAIN, OVERLAP } lie_t;

/* Writes reports/1.note over entries [0, 3) and reports/2.note over [3, size) into dir, both
 * signed by the enterprise's key, the second chained to the first (unless told to lie), with
 * the centre's cosigned checkpoint of the head as reports/2.cosigned (report.c's layout). */
static void make_reports(const char *dir, lie_t lie)
{
    char rel[64];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    assert_true(es.n > 3);
    tdsx_hash_t leaves[256];
    for (size_t i = 0; i < es.n; i++)
        assert_int_equal(tdsx_merkle_leaf_hash(es.e[i].p, es.e[i].n, &leaves[i]), 0);
    char *keypath = tdsx_test_path(W.ent.creds, "sign.key");
    uint8_t seed[32];
    tdsx_note_signer_t *key = NULL;
    assert_int_equal(tdsx_key_load_ed25519(keypath, seed), 0);
    assert_int_equal(tdsx_note_signer_new(W.ent.id, TDSX_NOTE_ED25519, seed, &key), 0);
    sodium_memzero(seed, sizeof seed);
    free(keypath);
    static tdsx_report_t r[2];
    uint64_t cut[3] = {0, 3, es.n};
    tdsx_hash_t prev_hash;
    memset(&prev_hash, 0, sizeof prev_hash);
    for (int k = 0; k < 2; k++) {
        tdsx_report_t *x = &r[k];
        memset(x, 0, sizeof *x);
        snprintf(x->node, sizeof x->node, "%s", W.ent.id);
        x->role = TDSX_ROLE_ENTERPRISE;
        x->sequence = (uint64_t)k + 1;
        x->period_from = k ? r[0].period_to : 0;
        x->period_to = tdsx_now();
        x->first = x->prev_size = cut[k];
        if (k == 1 && lie == OVERLAP) /* counts the whole log again, correctly */
            x->first = x->prev_size = 0;
        x->size = cut[k + 1];
        assert_int_equal(tdsx_merkle_root(leaves, (size_t)x->prev_size, &x->prev_root), 0);
        assert_int_equal(tdsx_merkle_root(leaves, (size_t)x->size, &x->root), 0);
        x->prev_report = prev_hash;
        x->auth_not_after = not_after(W.ent.creds, "auth.pem");
        x->sign_not_after = not_after(W.ent.creds, "sign.pem");
        x->cert_status = TDSX_REPORT_CERT_GOOD;
        snprintf(x->software, sizeof x->software, "test");
        tdsx_report_tally_t *t = NULL;
        assert_int_equal(tdsx_report_tally_new(W.ent.id, x->period_to, role_of, NULL, &t), 0);
        for (uint64_t i = x->first; i < x->size; i++)
            assert_int_equal(tdsx_report_tally_add(t, es.e[i]), 0);
        assert_int_equal(tdsx_report_tally_finish(t, &x->counts), 0);
        tdsx_report_tally_free(t);
        if (k == 1 && lie == FORGED_COUNT)
            x->counts.transfers[TDSX_REPORT_OUT][TDSX_REPORT_GENERAL_1][TDSX_ROLE_BRAIN - 1]++;
        if (k == 1 && lie == BROKEN_CHAIN)
            x->prev_report.b[0] ^= 1;
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1u << 20);
        assert_int_equal(tdsx_report_sign(x, key, &b), 0);
        assert_int_equal(tdsx_report_note_hash(tdsx_buf_bytes(&b), &prev_hash), 0);
        char name[32];
        snprintf(name, sizeof name, "reports/%d.note", k + 1);
        char *rd = tdsx_test_path(dir, "reports");
        mkdir(rd, 0700);
        free(rd);
        spill(dir, name, b.p, b.len);
        rehash(dir, name);
        tdsx_buf_free(&b);
    }
    size_t cn = 0;
    uint8_t *cos = slurp(dir, "checkpoints/cosigned", &cn);
    spill(dir, "reports/2.cosigned", cos, cn);
    rehash(dir, "reports/2.cosigned");
    tdsx_free(cos);
    tdsx_note_signer_free(key);
    tdsx_free(d);
}

/* ---- daemons --------------------------------------------------------------------------------- */

static void send_one(void)
{
    char *out = NULL;
    int rc = tdsx_test_run(&out,
                           "tdsx send --socket '%s' --to %s '%s' --dataset audited "
                           "--tags '%s' 2>&1",
                           W.ent.sock, W.brain.id, W.file, TAGS);
    if (rc != 0)
        fail_msg("send failed (%d): %s", rc, out ? out : "");
    free(out);
}

static uint64_t note_size(const ProtobufCBinaryData *b)
{
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    uint64_t size = UINT64_MAX;
    if (b->len && tdsx_note_parse(tdsx_bytes(b->data, b->len), &note) == 0 &&
        tdsx_checkpoint_parse(tdsx_note_text(note), &cp) == 0)
        size = cp.size;
    tdsx_note_free(note);
    return size;
}

/* The enterprise's log is published and cosigned at its current size. */
static void wait_cosigned(void)
{
    for (int i = 0; i < 200; i++) {
        Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
        Tdsx__LogStatusRequest q = TDSX__LOG_STATUS_REQUEST__INIT;
        Tdsx__LocalResponse *resp = NULL;
        tdsx_arena_t *a = NULL;
        req.id = 1;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_STATUS;
        req.log_status = &q;
        assert_int_equal(tdsx_arena_new(64u << 20, &a), 0);
        int ok = tdsx_control_call(W.ent.sock, &req, a, 30000, NULL, NULL, &resp) == 0 &&
                 resp->body_case == TDSX__LOCAL_RESPONSE__BODY_LOG_STATUS &&
                 resp->log_status->queued == 0 &&
                 note_size(&resp->log_status->published) == resp->log_status->size &&
                 note_size(&resp->log_status->cosigned) == resp->log_status->size;
        tdsx_arena_free(a);
        if (ok)
            return;
        usleep(100000);
    }
    fail_msg("the enterprise's checkpoint was not cosigned in time");
}

/* The enterprise proposes terms to the brain, which accepts: agreement events in both logs. */
static void agree_once(void)
{
    char *out = NULL, id[33] = "";
    int rc = tdsx_test_run(&out,
                           "tdsx agree propose --socket '%s' --with %s --dataset audited "
                           "--purpose analytics --purpose-text '质量分析' --action receive "
                           "--days 30 2>&1",
                           W.ent.sock, W.brain.id);
    const char *p = out ? strstr(out, "agreement  ") : NULL;
    if (rc != 0 || !p || sscanf(p, "agreement  %32[0-9a-f]", id) != 1)
        fail_msg("propose failed (%d): %s", rc, out ? out : "");
    free(out);
    out = NULL;
    for (int i = 0; i < 100; i++) { /* the proposal reaches the brain */
        rc = tdsx_test_run(&out, "tdsx agree accept --socket '%s' %s 2>&1", W.brain.sock, id);
        free(out);
        out = NULL;
        if (rc == 0)
            break;
        usleep(100000);
    }
    assert_int_equal(rc, 0);
    /* The acceptance reaches the enterprise, which logs it (queued with this line). */
    assert_true(
        tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"agreement.accepted\"", W.brain.id, NULL));
}

static char *export_now(const char *name)
{
    char *dir = tdsx_test_path(W.work, name);
    char *out = NULL;
    int rc = tdsx_test_run(&out, "tdsx audit export -c '%s' --out '%s' 2>&1", W.ent.conf, dir);
    if (rc != 0)
        fail_msg("export failed (%d): %s", rc, out ? out : "");
    free(out);
    return dir;
}

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    char extra[4096];
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_province_crl(p);
    snprintf(extra, sizeof extra, "checkpoint_interval 200ms\ncrl %s\n", p->crl);
    tdsx_test_node_config(p, &W.centre, extra);
    snprintf(extra, sizeof extra, "checkpoint_interval 200ms\ncrl %s\nwitness %s\n", p->crl,
             W.centre.id);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra,
             "checkpoint_interval 200ms\ncrl %s\nwitness %s\npeer %s 127.0.0.1:%d\n", p->crl,
             W.centre.id, W.brain.id, W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    W.file = tdsx_test_path(p->dir, "payload.bin");
    tdsx_test_write_file(W.file, "日期,产量\n2026-11-01,1200\n", 30);
    W.anchor = tdsx_test_path(p->ca, "root.pem");
    W.foreign_anchor = tdsx_test_path(p->foreign, "root.pem");
    W.work = tdsx_test_path(p->dir, "audit");
    assert_int_equal(mkdir(W.work, 0700), 0);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    usleep(200000); /* the Hellos */
    agree_once();
    for (int i = 0; i < SENDS; i++)
        send_one();
    wait_cosigned();
    W.good = export_now("good");
    /* The enterprise's daemon makes its first report, the centre cosigns it. */
    char *out = NULL;
    int rc = tdsx_test_run(&out, "tdsx report make --socket '%s' 2>&1", W.ent.sock);
    if (rc != 0)
        fail_msg("report make failed (%d): %s", rc, out ? out : "");
    free(out);
    wait_cosigned();
    rc = tdsx_test_run(&out, "tdsx report submit --socket '%s' 2>&1", W.ent.sock);
    if (rc != 0)
        fail_msg("report submit failed (%d): %s", rc, out ? out : "");
    free(out);
    wait_cosigned();
    W.reported = export_now("reported");
    for (int i = 0; i < 2; i++)
        send_one();
    wait_cosigned();
    W.later = export_now("later");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.centre);
    free(W.file);
    free(W.anchor);
    free(W.foreign_anchor);
    free(W.work);
    free(W.good);
    free(W.reported);
    free(W.later);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- the export -------------------------------------------------------------------------- */

static void export_layout_is_private_and_complete(void **state)
{
    (void)state;
    struct stat sb;
    assert_int_equal(stat(W.good, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    static const char *const files[] = {TDSX_AUDIT_MANIFEST,
                                        "log/checkpoint",
                                        "checkpoints/published",
                                        "checkpoints/cosigned",
                                        "certs/sign.pem",
                                        "certs/witness.der",
                                        "crls/0.pem"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = tdsx_test_path(W.good, files[i]);
        if (stat(p, &sb) != 0)
            fail_msg("%s missing from the export", files[i]);
        assert_int_equal(sb.st_mode & 0777, 0600);
        free(p);
    }
    char *d = tdsx_test_path(W.good, "log/tile");
    assert_int_equal(stat(d, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    free(d);
    size_t n = 0;
    uint8_t *m = slurp(W.good, TDSX_AUDIT_MANIFEST, &n);
    assert_memory_equal(m, TDSX_AUDIT_MAGIC "\nnode ", strlen(TDSX_AUDIT_MAGIC) + 6);
    assert_non_null(strstr((char *)m, W.ent.id));
    assert_non_null(strstr((char *)m, " log/tile/0/000.p/"));
    assert_non_null(strstr((char *)m, " certs/peers/"));
    tdsx_free(m);
    /* The counterpart's sign certificate came from the store: the brain's is there. */
    assert_true(manifest_size(W.later) > manifest_size(W.good));
}

static void export_refuses_bad_requests(void **state)
{
    (void)state;
    char *out = NULL;
    /* A directory that already holds something is not overwritten. */
    assert_int_equal(
        tdsx_test_run(&out, "tdsx audit export -c '%s' --out '%s' 2>&1", W.ent.conf, W.good), 2);
    assert_non_null(strstr(out, "TDSX_E_EXISTS"));
    free(out);
    /* A range that starts beyond the log. */
    char *dir = tdsx_test_path(W.work, "beyond");
    assert_int_not_equal(tdsx_test_run(&out,
                                       "tdsx audit export -c '%s' --out '%s' --from 100000 "
                                       "2>&1",
                                       W.ent.conf, dir),
                         0);
    free(out);
    free(dir);
    /* Numbers that are not indexes, a range backwards. */
    assert_int_equal(
        tdsx_test_run(&out, "tdsx audit export -c '%s' --out /tmp/x --from -1 2>&1", W.ent.conf),
        2);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx audit export -c '%s' --out /tmp/x --from 5 --to 2 "
                                   "2>&1",
                                   W.ent.conf),
                     2);
    free(out);
    /* No config. */
    assert_int_equal(tdsx_test_run(&out, "tdsx audit export --out /tmp/x 2>&1"), 2);
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx audit export -c /nonexistent.conf --out "
                                         "/tmp/x 2>&1"),
                     2);
    free(out);
}

static void export_of_a_range_verifies(void **state)
{
    (void)state;
    char *dir = tdsx_test_path(W.work, "range");
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx audit export -c '%s' --out '%s' --from 2 --to 5",
                                   W.ent.conf, dir),
                     0);
    free(out);
    tdsx_audit_summary_t s = verify(dir);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(s.entries, 3);
    free(dir);
}

/* ---- the untampered bundle ------------------------------------------------------------------ */

static void untampered_bundle_passes(void **state)
{
    (void)state;
    tdsx_audit_summary_t s = verify(W.good);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    /* The daemons make no report in this evidence: that, and only that, is undecided. */
    assert_int_equal(s.indeterminate, 1);
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "report-signature", NULL), 1);
    assert_true(s.receipts >= SENDS);
    assert_int_equal(count(TDSX_AUDIT_PASS, "manifest", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "cert-chain", "certs/sign.pem"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "revocation", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "checkpoint-signature", NULL), 3);
    assert_int_equal(count(TDSX_AUDIT_PASS, "witness", "checkpoints/cosigned"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "tree-root", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "entries", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "receipt", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "key", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "agreement", NULL), 1);
    s = verify(W.later);
    assert_int_equal(s.fail, 0);
}

/* ---- the tamper corpus ------------------------------------------------------------------ */

static void flipped_receipt_byte_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "flip"), rel[64], where[16];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    tdsx_log_entry_t e;
    assert_int_equal(tdsx__log_entry_parse(es.e[i], &e), 0);
    /* A byte in the middle of the NRO envelope (its payload or signature). */
    ((uint8_t *)e.item[0].p)[e.item[0].n / 2] ^= 0x01;
    spill(dir, rel, d, n);
    rehash(dir, rel);
    tdsx_audit_summary_t s = verify(dir);
    assert_true(s.fail > 0);
    snprintf(where, sizeof where, "%zu", i);
    expect_fail("receipt", where);
    expect_fail("entries", where);
    assert_int_equal(count(TDSX_AUDIT_FAIL, "manifest", NULL), 0);
    tdsx_free(d);
    free(dir);
}

static void dropped_entry_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "drop"), rel[64];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    memmove(&es.e[i], &es.e[i + 1], (es.n - i - 1) * sizeof es.e[0]);
    es.n--;
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    expect_fail("entries", rel); /* fewer entries than the tree holds there */
    char where[16];
    snprintf(where, sizeof where, "%zu", i);
    expect_fail("entries", where);
    assert_int_equal(count(TDSX_AUDIT_PASS, "entries", NULL), 0);
    tdsx_free(d);
    free(dir);
}

static void swapped_entries_fail(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "swap"), rel[64];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    assert_true(i + 1 < es.n);
    tdsx_bytes_t t = es.e[i];
    es.e[i] = es.e[i + 1];
    es.e[i + 1] = t;
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    char w1[16], w2[16];
    snprintf(w1, sizeof w1, "%zu", i);
    snprintf(w2, sizeof w2, "%zu", i + 1);
    expect_fail("entries", w1);
    expect_fail("entries", w2);
    /* Both entries are still well signed: only their order is wrong. */
    assert_int_equal(count(TDSX_AUDIT_FAIL, "receipt", NULL), 0);
    tdsx_free(d);
    free(dir);
}

static void tile_rewritten_to_match_fails_the_root(void **state)
{
    (void)state;
    /* A forger who drops an entry AND rewrites the level-0 tile to match the entries left
     * cannot reproduce the signed root. */
    char *dir = copy_of(W.good, "retile"), rel[64], tile[64];
    size_t n = 0, tn = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    snprintf(tile, sizeof tile, "log/tile/0/000.p/%zu", es.n);
    uint8_t *t = slurp(dir, tile, &tn);
    assert_int_equal(tn, es.n * 32);
    /* Replace the receipt by a copy of the entry before it, and its leaf hash to match. */
    es.e[i] = es.e[i - 1];
    memcpy(t + 32 * i, t + 32 * (i - 1), 32);
    join_write(dir, rel, &es);
    spill(dir, tile, t, tn);
    rehash(dir, rel);
    rehash(dir, tile);
    verify(dir);
    expect_fail("tree-root", "log/checkpoint");
    assert_int_equal(count(TDSX_AUDIT_FAIL, "manifest", NULL), 0);
    tdsx_free(t);
    tdsx_free(d);
    free(dir);
}

static void missing_or_short_tile_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "notile"), tile[64];
    snprintf(tile, sizeof tile, "log/tile/0/000.p/%llu", (unsigned long long)manifest_size(dir));
    size_t n = 0;
    uint8_t *t = slurp(dir, tile, &n);
    /* One hash short. */
    spill(dir, tile, t, n - 32);
    rehash(dir, tile);
    verify(dir);
    expect_fail("tiles", tile);
    expect_fail("tree-root", "log/checkpoint");
    /* Gone. */
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "rm '%s/%s' && grep -v ' %s$' '%s/MANIFEST' > '%s/M' && "
                                   "mv '%s/M' '%s/MANIFEST'",
                                   dir, tile, tile, dir, dir, dir, dir),
                     0);
    free(out);
    verify(dir);
    expect_fail("tiles", tile);
    expect_fail("tree-root", "log/checkpoint");
    assert_int_equal(count(TDSX_AUDIT_PASS, "tree-root", NULL), 0);
    tdsx_free(t);
    free(dir);
}

/* An allocator that refuses anything over 64 MiB and remembers the largest request. */
static size_t biggest;

static void *big_malloc(size_t size, void *ctx)
{
    (void)ctx;
    biggest = size > biggest ? size : biggest;
    return size > (64u << 20) ? NULL : malloc(size);
}

static void *big_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    biggest = size > biggest ? size : biggest;
    return size > (64u << 20) ? NULL : realloc(ptr, size);
}

static void big_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static void huge_signed_size_without_tiles_allocates_nothing(void **state)
{
    (void)state;
    /* The node signs a head checkpoint of 2^30 entries (the most this auditor replays) with
     * no tiles behind it: the auditor must fail it from what the directory holds, not ask for
     * the 32 GiB of leaves the signed size would take. */
    char *dir = copy_of(W.good, "hugesize");
    char *keypath = tdsx_test_path(W.ent.creds, "sign.key");
    uint8_t seed[32];
    tdsx_note_signer_t *key = NULL;
    assert_int_equal(tdsx_key_load_ed25519(keypath, seed), 0);
    assert_int_equal(tdsx_note_signer_new(W.ent.id, TDSX_NOTE_ED25519, seed, &key), 0);
    sodium_memzero(seed, sizeof seed);
    tdsx_checkpoint_t cp;
    memset(&cp, 0, sizeof cp);
    cp.origin = tdsx_bytes(W.ent.id, strlen(W.ent.id));
    cp.size = 1ull << 30;
    memset(cp.root.b, 0x5a, sizeof cp.root.b);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 16);
    assert_int_equal(tdsx_checkpoint_sign(&cp, key, &b), 0);
    spill(dir, "log/checkpoint", b.p, b.len);
    rehash(dir, "log/checkpoint");
    tdsx_allocator_t big = {big_malloc, big_realloc, big_free, NULL};
    biggest = 0;
    tdsx_allocator_set(&big);
    tdsx_audit_opts_t o = {W.anchor, NULL, 0};
    tdsx_audit_summary_t s;
    L.n = 0;
    int rc = tdsx_audit_verify(dir, &o, collect, &L, &s);
    tdsx_allocator_set(NULL);
    assert_int_equal(rc, 0);
    assert_true(biggest <= (64u << 20) + 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "checkpoint-signature", "log/checkpoint"), 1);
    expect_fail("tiles", "log/tile/0/000");
    expect_fail("tree-root", "log/checkpoint");
    assert_int_equal(count(TDSX_AUDIT_PASS, "tree-root", NULL), 0);
    tdsx_buf_free(&b);
    tdsx_note_signer_free(key);
    free(keypath);
    free(dir);
}

static void agreement_accepted_by_the_proposer_fails(void **state)
{
    (void)state;
    /* An acceptance that is the proposer's own envelope again: the other party never signed. */
    char *dir = copy_of(W.good, "selfaccept"), rel[64], where[16];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = es.n;
    tdsx_log_entry_t e;
    for (size_t j = 0; j < es.n && i == es.n; j++)
        if (tdsx__log_entry_parse(es.e[j], &e) == 0 && e.type == TDSX_LOG_ENTRY_AGREEMENT &&
            e.item[4].n)
            i = j;
    assert_true(i < es.n);
    e.item[4] = e.item[3];
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    es.e[i] = tdsx_buf_bytes(&b);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    snprintf(where, sizeof where, "%zu", i);
    expect_fail("agreement", where);
    assert_int_equal(count(TDSX_AUDIT_PASS, "agreement", NULL), 0);
    tdsx_buf_free(&b);
    tdsx_free(d);
    free(dir);
}

/* The accepted agreement entry of dir's log rewritten by edit(); returns its index. */
static size_t rewrite_agreement(const char *dir, void (*edit)(tdsx_log_entry_t *))
{
    char rel[64];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = es.n;
    tdsx_log_entry_t e;
    for (size_t j = 0; j < es.n && i == es.n; j++)
        if (tdsx__log_entry_parse(es.e[j], &e) == 0 && e.type == TDSX_LOG_ENTRY_AGREEMENT &&
            e.item[4].n)
            i = j;
    assert_true(i < es.n);
    edit(&e);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    es.e[i] = tdsx_buf_bytes(&b);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    tdsx_buf_free(&b);
    tdsx_free(d);
    return i;
}

static void drop_acceptance(tdsx_log_entry_t *e)
{
    e->item[4] = tdsx_bytes(NULL, 0);
}

static void terminated_unsigned(tdsx_log_entry_t *e)
{
    e->item[0] = tdsx_bytes("terminated", 10);
    e->item[5] = tdsx_bytes(NULL, 0);
}

static void unknown_event(tdsx_log_entry_t *e)
{
    e->item[0] = tdsx_bytes("active", 6);
}

static void agreement_event_without_its_statement_fails(void **state)
{
    (void)state;
    /* The tally counts by the event word: "accepted" with no acceptance by the other party
     * would count an agreement as active that only its proposer signed; "terminated" with no
     * termination would hide one that is. Both are lies the auditor must name. */
    void (*edits[])(tdsx_log_entry_t *) = {drop_acceptance, terminated_unsigned, unknown_event};
    for (size_t k = 0; k < 3; k++) {
        char *dir = copy_of(W.good, "agreeword"), where[16];
        size_t i = rewrite_agreement(dir, edits[k]);
        verify(dir);
        snprintf(where, sizeof where, "%zu", i);
        expect_fail("agreement", where);
        assert_int_equal(count(TDSX_AUDIT_PASS, "agreement", NULL), 0);
        free(dir);
    }
}

static void refusal_after_acceptance_fails(void **state)
{
    (void)state;
    /* Refusals carry no signature and the last event of an agreement decides its count: a
     * "refused" logged after the acceptance would drop an active agreement from a report. */
    char *dir = copy_of(W.good, "refusedlater"), rel[64], where[16];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = es.n;
    tdsx_log_entry_t e;
    for (size_t j = 0; j < es.n && i == es.n; j++)
        if (tdsx__log_entry_parse(es.e[j], &e) == 0 && e.type == TDSX_LOG_ENTRY_AGREEMENT &&
            e.item[4].n)
            i = j;
    assert_true(i + 1 < es.n);
    e.item[0] = tdsx_bytes("refused", 7);
    e.item[4] = tdsx_bytes(NULL, 0);
    e.item[5] = tdsx_bytes(NULL, 0);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    es.e[i + 1] = tdsx_buf_bytes(&b);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    snprintf(where, sizeof where, "%zu", i + 1);
    expect_fail("agreement", where);
    snprintf(where, sizeof where, "%zu", i);
    assert_int_equal(count(TDSX_AUDIT_FAIL, "agreement", where), 0);
    tdsx_buf_free(&b);
    tdsx_free(d);
    free(dir);
}

static void on_signed(void *ud, int status, tdsx_bytes_t env)
{
    tdsx_buf_t *b = ud;
    assert_int_equal(status, 0);
    assert_int_equal(tdsx_buf_append(b, env.p, env.n), 0);
}

/* One statement signed with a node's sign key. */
static void sign_as(const tdsx_test_node_t *n, tdsx_statement_kind_t kind,
                    const ProtobufCMessage *msg, tdsx_buf_t *out)
{
    char *path = tdsx_test_path(n->creds, "sign.key");
    uint8_t seed[32];
    tdsx_signer_t *s = NULL;
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), 0);
    sodium_memzero(seed, sizeof seed);
    assert_int_equal(tdsx_statement_submit(s, kind, msg, on_signed, out), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    tdsx_signer_free(s);
    free(path);
}

static void receipt_between_others_fails(void **state)
{
    (void)state;
    /* A well-signed receipt between the centre and the brain has no place in the enterprise's
     * log: in its place, it fails naming the entry. */
    uint8_t tid[16] = {7}, sha[32] = {9};
    Tdsx__Nro nro = TDSX__NRO__INIT;
    nro.transfer_id.data = tid;
    nro.transfer_id.len = 16;
    nro.sender = W.centre.id;
    nro.receiver = W.brain.id;
    nro.dataset_id = "elsewhere";
    nro.payload_sha256.data = sha;
    nro.payload_sha256.len = 32;
    nro.payload_length = 1;
    nro.sequence = 1;
    nro.time = tdsx_now();
    tdsx_buf_t nb, rb, eb;
    tdsx_buf_init(&nb, 1u << 20);
    tdsx_buf_init(&rb, 1u << 20);
    tdsx_buf_init(&eb, 1u << 20);
    sign_as(&W.centre, TDSX_STATEMENT_NRO, &nro.base, &nb);
    Tdsx__Envelope *env = NULL;
    tdsx_arena_t *arena = NULL;
    assert_int_equal(tdsx_arena_new(1u << 20, &arena), 0);
    assert_int_equal(tdsx_proto_unpack(arena, &tdsx__envelope__descriptor, tdsx_buf_bytes(&nb),
                                       (ProtobufCMessage **)&env),
                     0);
    tdsx_hash_t nh;
    uint8_t sh[32];
    assert_int_equal(tdsx_envelope_hash(tdsx_buf_bytes(&nb), &nh), 0);
    assert_int_equal(tdsx_sha256(env->signatures[0]->sig.data, env->signatures[0]->sig.len, sh), 0);
    Tdsx__Nrr nrr = TDSX__NRR__INIT;
    nrr.transfer_id.data = tid;
    nrr.transfer_id.len = 16;
    nrr.nro_hash.data = nh.b;
    nrr.nro_hash.len = 32;
    nrr.nro_signature_hash.data = sh;
    nrr.nro_signature_hash.len = 32;
    nrr.received_sha256.data = sha;
    nrr.received_sha256.len = 32;
    nrr.received_length = 1;
    nrr.status = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    nrr.time = tdsx_now();
    nrr.receiver = W.brain.id;
    sign_as(&W.brain, TDSX_STATEMENT_NRR, &nrr.base, &rb);
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {tdsx_buf_bytes(&nb), tdsx_buf_bytes(&rb)}};
    assert_int_equal(tdsx__log_entry_encode(&e, &eb), 0);

    char *dir = copy_of(W.good, "foreign-receipt"), rel[64], where[16];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    es.e[i] = tdsx_buf_bytes(&eb);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    snprintf(where, sizeof where, "%zu", i);
    expect_fail("receipt", where);
    int named = 0;
    for (size_t k = 0; k < L.n; k++)
        named |= strcmp(L.v[k].check, "receipt") == 0 && strstr(L.v[k].detail, "'s log") != NULL;
    assert_true(named);
    tdsx_free(d);
    free(dir);
    tdsx_arena_free(arena);
    tdsx_buf_free(&nb);
    tdsx_buf_free(&rb);
    tdsx_buf_free(&eb);
}

/* A receipt entry for a transfer from the enterprise to the brain, both halves signed, whose
 * NRO names `upstream` (NULL: none) as the NRR of the transfer it relays. */
static void ent_receipt(const uint8_t *upstream, tdsx_buf_t *entry)
{
    uint8_t tid[16] = {8}, sha[32] = {3};
    Tdsx__Nro nro = TDSX__NRO__INIT;
    nro.transfer_id.data = tid;
    nro.transfer_id.len = 16;
    nro.sender = W.ent.id;
    nro.receiver = W.brain.id;
    nro.dataset_id = "relayed";
    nro.payload_sha256.data = sha;
    nro.payload_sha256.len = 32;
    nro.payload_length = 1;
    nro.sequence = 99;
    nro.time = tdsx_now();
    if (upstream) {
        nro.upstream_receipt_hash.data = (uint8_t *)upstream;
        nro.upstream_receipt_hash.len = 32;
    }
    tdsx_buf_t nb, rb;
    tdsx_buf_init(&nb, 1u << 20);
    tdsx_buf_init(&rb, 1u << 20);
    sign_as(&W.ent, TDSX_STATEMENT_NRO, &nro.base, &nb);
    Tdsx__Envelope *env = NULL;
    tdsx_arena_t *arena = NULL;
    assert_int_equal(tdsx_arena_new(1u << 20, &arena), 0);
    assert_int_equal(tdsx_proto_unpack(arena, &tdsx__envelope__descriptor, tdsx_buf_bytes(&nb),
                                       (ProtobufCMessage **)&env),
                     0);
    tdsx_hash_t nh;
    uint8_t sh[32];
    assert_int_equal(tdsx_envelope_hash(tdsx_buf_bytes(&nb), &nh), 0);
    assert_int_equal(tdsx_sha256(env->signatures[0]->sig.data, env->signatures[0]->sig.len, sh), 0);
    Tdsx__Nrr nrr = TDSX__NRR__INIT;
    nrr.transfer_id.data = tid;
    nrr.transfer_id.len = 16;
    nrr.nro_hash.data = nh.b;
    nrr.nro_hash.len = 32;
    nrr.nro_signature_hash.data = sh;
    nrr.nro_signature_hash.len = 32;
    nrr.received_sha256.data = sha;
    nrr.received_sha256.len = 32;
    nrr.received_length = 1;
    nrr.status = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    nrr.time = tdsx_now();
    nrr.receiver = W.brain.id;
    sign_as(&W.brain, TDSX_STATEMENT_NRR, &nrr.base, &rb);
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {tdsx_buf_bytes(&nb), tdsx_buf_bytes(&rb)}};
    assert_int_equal(tdsx__log_entry_encode(&e, entry), 0);
    tdsx_arena_free(arena);
    tdsx_buf_free(&nb);
    tdsx_buf_free(&rb);
}

static void relay_of_nothing_received_fails(void **state)
{
    (void)state;
    /* The enterprise's outbound transfer passed off as a relay: the NRR it names as upstream
     * is no transfer this node ever accepted. Both halves are well signed. */
    uint8_t upstream[32];
    memset(upstream, 0x42, sizeof upstream);
    tdsx_buf_t eb;
    tdsx_buf_init(&eb, 1u << 20);
    ent_receipt(upstream, &eb);
    char *dir = copy_of(W.good, "relay-nothing"), rel[64], where[16];
    size_t n = 0;
    bundle_rel(dir, rel, sizeof rel);
    uint8_t *d = slurp(dir, rel, &n);
    entries_t es;
    split(d, n, &es);
    size_t i = first_of_type(&es, TDSX_LOG_ENTRY_RECEIPT);
    es.e[i] = tdsx_buf_bytes(&eb);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    snprintf(where, sizeof where, "%zu", i);
    expect_fail("receipt", where);
    assert_int_equal(count(TDSX_AUDIT_PASS, "receipt", NULL), 0);
    /* The same receipt without an upstream is an ordinary outbound one: its signatures hold. */
    tdsx_buf_reset(&eb);
    ent_receipt(NULL, &eb);
    es.e[i] = tdsx_buf_bytes(&eb);
    join_write(dir, rel, &es);
    rehash(dir, rel);
    verify(dir);
    assert_int_equal(count(TDSX_AUDIT_FAIL, "receipt", NULL), 0);
    tdsx_free(d);
    free(dir);
    tdsx_buf_free(&eb);
}

static void missing_witness_cosignature_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "nowitness");
    size_t n = 0;
    uint8_t *d = slurp(dir, "checkpoints/cosigned", &n);
    /* Keep the node's own signature line, drop the centre's cosignature line after it. */
    char needle[256];
    snprintf(needle, sizeof needle, "\n\xe2\x80\x94 %s ", W.centre.id);
    char *cos = strstr((char *)d, needle);
    assert_non_null(cos);
    char *eol = strchr(cos + 1, '\n');
    assert_non_null(eol);
    memmove(cos + 1, eol + 1, n - (size_t)(eol + 1 - (char *)d));
    n -= (size_t)(eol - cos);
    spill(dir, "checkpoints/cosigned", d, n);
    rehash(dir, "checkpoints/cosigned");
    verify(dir);
    expect_fail("witness", "checkpoints/cosigned");
    /* The node's signature on it still verifies: only the witness is missing. */
    assert_int_equal(count(TDSX_AUDIT_PASS, "checkpoint-signature", "checkpoints/cosigned"), 1);
    tdsx_free(d);

    /* No cosigned checkpoint at all is the same failure. */
    char *gone = copy_of(W.good, "nocosigned");
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "rm '%s/checkpoints/cosigned' && grep -v "
                                   "' checkpoints/cosigned$' '%s/MANIFEST' > '%s/M' && mv "
                                   "'%s/M' '%s/MANIFEST'",
                                   gone, gone, gone, gone, gone),
                     0);
    free(out);
    verify(gone);
    expect_fail("witness", "checkpoints/cosigned");
    free(gone);
    free(dir);
}

static void wrong_anchor_fails(void **state)
{
    (void)state;
    tdsx_audit_summary_t s = verify_with(W.good, W.foreign_anchor, NULL);
    assert_true(s.fail > 0);
    expect_fail("cert-chain", "certs/sign.pem");
    expect_fail("checkpoint-signature", "log/checkpoint");
    /* The CRLs of the province are not the foreign anchor's either. */
    expect_fail("crl", "crls/0.pem");
    /* Without a checkpoint that chains to the anchor the tiles prove nothing: no entry is
     * taken as the log's, no receipt counted as verified. */
    assert_int_equal(s.receipts, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "receipt", NULL), 0);
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "tree-root", NULL), 1);
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "entries", NULL), 1);
}

static void manifest_catches_changes_and_strays(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "stray");
    spill(dir, "certs/extra.pem", "x", 1);
    size_t n = 0;
    uint8_t *d = slurp(dir, "log/checkpoint", &n);
    d[0] ^= 1;
    spill(dir, "log/checkpoint", d, n);
    verify(dir);
    expect_fail("manifest", "certs/extra.pem");
    expect_fail("manifest", "log/checkpoint");
    expect_fail("checkpoint-signature", "log/checkpoint");
    tdsx_free(d);
    free(dir);
}

static void fifo_and_symlinks_in_the_evidence_fail(void **state)
{
    (void)state;
    /* The audited party made the directory: a FIFO listed in the MANIFEST must not hang the
     * auditor on open(), and a symlink listed with the SHA-256 of what it points to must not
     * make the auditor read (and vouch for) a file from outside the evidence. */
    char *dir = copy_of(W.good, "special"), *fifo = tdsx_test_path(dir, "reports/9.note");
    char *link = tdsx_test_path(dir, "certs/peers/outside.der");
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "mkdir -p '%s/reports'", dir), 0);
    free(out);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(symlink(W.file, link), 0);
    /* Listed as a careful forger would: the link with its target's hash, the FIFO with any. */
    size_t n = 0, fn = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n), *f = slurp(W.p.dir, "payload.bin", &fn);
    uint8_t h[32];
    char hex[65];
    assert_int_equal(tdsx_sha256(f, fn, h), 0);
    tdsx_hex_encode(hex, h, 32);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 24);
    assert_int_equal(tdsx_buf_append(&b, m, n), 0);
    assert_int_equal(tdsx_buf_printf(&b, "%s certs/peers/outside.der\n", hex), 0);
    assert_int_equal(tdsx_buf_printf(&b, "%s reports/9.note\n", hex), 0);
    spill(dir, TDSX_AUDIT_MANIFEST, b.p, b.len);
    tdsx_audit_summary_t s = verify(dir);
    assert_true(s.fail >= 2);
    expect_fail("manifest", "reports/9.note");
    expect_fail("manifest", "certs/peers/outside.der");
    assert_int_equal(count(TDSX_AUDIT_PASS, "manifest", NULL), 0);
    tdsx_buf_free(&b);
    tdsx_free(m);
    tdsx_free(f);
    free(fifo);
    free(link);
    free(dir);
}

static void export_follows_no_symlink_out_of_the_data_dir(void **state)
{
    (void)state;
    /* A symlink among the node's reports, and a bundles directory that is a symlink: neither
     * copies a file from outside the data directory into the evidence. */
    char *outside = tdsx_test_path(W.work, "outside");
    char *target = tdsx_test_path(outside, "7.tdsx");
    char *rlink = tdsx_test_path(W.ent.data, "reports/outside.txt");
    char *blink = tdsx_test_path(W.ent.data, TDSX_BUNDLE_HISTORY);
    struct stat sb;
    assert_int_equal(mkdir(outside, 0700), 0);
    tdsx_test_write_file(target, "secret", 6);
    assert_int_equal(lstat(blink, &sb) != 0, 1); /* this node applies no bundles */
    assert_int_equal(symlink(target, rlink), 0);
    assert_int_equal(symlink(outside, blink), 0);
    char *dir = export_now("nolinks");
    unlink(rlink);
    unlink(blink);
    char *r = tdsx_test_path(dir, "reports/outside.txt");
    char *bnd = tdsx_test_path(dir, TDSX_BUNDLE_HISTORY "/7.tdsx");
    assert_int_not_equal(lstat(r, &sb), 0);
    assert_int_not_equal(lstat(bnd, &sb), 0);
    size_t n = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    assert_null(strstr((char *)m, "outside"));
    assert_null(strstr((char *)m, "7.tdsx"));
    tdsx_free(m);
    free(r);
    free(bnd);
    free(dir);
    free(rlink);
    free(blink);
    free(target);
    free(outside);
}

static void file_listed_twice_fails(void **state)
{
    (void)state;
    /* A name listed a million times would have the auditor hash its file a million times. */
    char *dir = copy_of(W.good, "twice");
    size_t n = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    char *line = strstr((char *)m, " log/checkpoint\n");
    assert_non_null(line);
    line -= 64;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 24);
    assert_int_equal(tdsx_buf_append(&b, m, n), 0);
    assert_int_equal(tdsx_buf_append(&b, line, 64 + strlen(" log/checkpoint\n")), 0);
    spill(dir, TDSX_AUDIT_MANIFEST, b.p, b.len);
    verify(dir);
    expect_fail("manifest", "log/checkpoint");
    assert_int_equal(count(TDSX_AUDIT_PASS, "manifest", NULL), 0);
    tdsx_buf_free(&b);
    tdsx_free(m);
    free(dir);
}

static void backdated_export_time_fails(void **state)
{
    (void)state;
    /* exported_at is unsigned and is the time the node's certificate is judged at: a node
     * whose certificate expired would state an earlier one. The witness's cosignature in the
     * evidence is signed and came before the export. */
    char *dir = copy_of(W.good, "backdated");
    size_t n = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    char *at = strstr((char *)m, "\nexported_at ");
    assert_non_null(at);
    long long t = strtoll(at + 13, NULL, 10);
    char *eol = strchr(at + 1, '\n');
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 24);
    assert_int_equal(tdsx_buf_append(&b, m, (size_t)(at - (char *)m)), 0);
    assert_int_equal(tdsx_buf_printf(&b, "\nexported_at %lld", t - 3600), 0);
    assert_int_equal(tdsx_buf_append(&b, eol, n - (size_t)(eol - (char *)m)), 0);
    spill(dir, TDSX_AUDIT_MANIFEST, b.p, b.len);
    verify(dir);
    expect_fail("manifest", "exported_at");
    /* The auditor's own --at is taken as given. */
    tdsx_audit_opts_t o = {W.anchor, NULL, (int64_t)t};
    tdsx_audit_summary_t s;
    L.n = 0;
    assert_int_equal(tdsx_audit_verify(dir, &o, collect, &L, &s), 0);
    assert_int_equal(count(TDSX_AUDIT_FAIL, "manifest", "exported_at"), 0);
    assert_int_equal(s.fail, 0);
    /* The untouched export is not flagged. */
    verify(W.good);
    assert_int_equal(count(TDSX_AUDIT_FAIL, "manifest", NULL), 0);
    tdsx_buf_free(&b);
    tdsx_free(m);
    free(dir);
}

static void manifest_lines_are_checked(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "badmanifest");
    size_t n = 0;
    uint8_t *m = slurp(dir, TDSX_AUDIT_MANIFEST, &n);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 24);
    assert_int_equal(tdsx_buf_append(&b, m, n), 0);
    static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
    /* A path out of the directory, a listed file that is not there, a line that is nothing. */
    assert_int_equal(tdsx_buf_printf(&b, "%s ../../etc/passwd\n", zeros), 0);
    assert_int_equal(tdsx_buf_printf(&b, "%s certs/gone.pem\n", zeros), 0);
    assert_int_equal(tdsx_buf_printf(&b, "what\n"), 0);
    spill(dir, TDSX_AUDIT_MANIFEST, b.p, b.len);
    tdsx_audit_summary_t s = verify(dir);
    assert_true(s.fail >= 3);
    expect_fail("manifest", "certs/gone.pem");
    assert_true(count(TDSX_AUDIT_FAIL, "manifest", TDSX_AUDIT_MANIFEST) >= 2);
    assert_int_equal(count(TDSX_AUDIT_PASS, "manifest", NULL), 0);
    /* Not a manifest at all. */
    spill(dir, TDSX_AUDIT_MANIFEST, "hello\n", 6);
    verify(dir);
    expect_fail("manifest", TDSX_AUDIT_MANIFEST);
    tdsx_buf_free(&b);
    tdsx_free(m);
    free(dir);
}

static void consistency_proofs_are_checked(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "badproof");
    char rel[64];
    uint64_t size = manifest_size(dir);
    snprintf(rel, sizeof rel, "proofs/%llu-%llu", (unsigned long long)size,
             (unsigned long long)size);
    tdsx_audit_summary_t s = verify(dir);
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "consistency", rel), 1);
    /* A hash where none belongs (equal sizes prove with an empty proof). */
    char text[256];
    int w = snprintf(text, sizeof text, "tdsx-consistency v1 %llu %llu\n%064d\n",
                     (unsigned long long)size, (unsigned long long)size, 0);
    spill(dir, rel, text, (size_t)w);
    rehash(dir, rel);
    verify(dir);
    expect_fail("consistency", rel);
    /* Not a proof file. */
    spill(dir, rel, "tdsx-consistency v1 1 2\nzz\n", 26);
    rehash(dir, rel);
    verify(dir);
    expect_fail("consistency", rel);
    /* No proof at all between the checkpoints. */
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "rm '%s/%s' && grep -v ' %s$' '%s/MANIFEST' > '%s/M' && "
                                   "mv '%s/M' '%s/MANIFEST'",
                                   dir, rel, rel, dir, dir, dir, dir),
                     0);
    free(out);
    verify(dir);
    expect_fail("consistency", rel);
    free(dir);
}

static void foreign_crl_fails(void **state)
{
    (void)state;
    /* A CRL signed by a CA outside the anchor's tree is refused, not trusted. */
    char *dir = copy_of(W.good, "foreigncrl");
    tdsx_ca_t *ca = NULL;
    char *crl = tdsx_test_path(dir, "crls/9.pem");
    assert_int_equal(tdsx_ca_open(W.p.foreign, &ca), 0);
    assert_int_equal(tdsx_ca_crl(ca, 7, crl, 1), 0);
    tdsx_ca_free(ca);
    rehash(dir, "crls/9.pem");
    verify(dir);
    expect_fail("crl", "crls/9.pem");
    assert_int_equal(count(TDSX_AUDIT_PASS, "crl", "crls/0.pem"), 1);
    free(crl);
    free(dir);
}

/* A trust bundle of serial 1 signed by `signer`'s credentials (the centre's, normally). */
static void make_bundle(const char *dir, const tdsx_test_node_t *signer,
                        const tdsx_test_node_t *witness)
{
    const char *creds[] = {W.centre.creds, W.brain.creds, W.ent.creds};
    const char *crls[] = {W.p.crl};
    tdsx_bundle_make_opts_t o = {W.p.ca, W.p.registry, creds, 3, crls, 1, witness->id, 1, 0, 0, 1};
    tdsx_buf_t u, f;
    char what[256];
    tdsx_buf_init(&u, 1u << 24);
    tdsx_buf_init(&f, 1u << 24);
    assert_int_equal(tdsx__bundle_make(&o, &u, what, sizeof what), 0);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), signer->creds, &f), 0);
    char *bd = tdsx_test_path(dir, "bundles");
    mkdir(bd, 0700);
    free(bd);
    spill(dir, "bundles/bundle.current", f.p, f.len);
    rehash(dir, "bundles/bundle.current");
    tdsx_buf_free(&u);
    tdsx_buf_free(&f);
}

static void trust_bundle_verified_against_the_anchor(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "bundle-ok");
    make_bundle(dir, &W.centre, &W.centre);
    tdsx_audit_summary_t s = verify(dir);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "bundle", "bundles/bundle.current"), 1);
    /* One changed byte anywhere in it, and it is refused. */
    size_t n = 0;
    uint8_t *d = slurp(dir, "bundles/bundle.current", &n);
    d[n / 2] ^= 0x20;
    spill(dir, "bundles/bundle.current", d, n);
    rehash(dir, "bundles/bundle.current");
    verify(dir);
    expect_fail("bundle", "bundles/bundle.current");
    tdsx_free(d);
    /* Under a foreign anchor it is refused too. */
    make_bundle(dir, &W.centre, &W.centre);
    verify_with(dir, W.foreign_anchor, NULL);
    expect_fail("bundle", "bundles/bundle.current");
    /* A bundle naming another witness: the centre's cosignature is not the one it trusts. */
    char *other = copy_of(W.good, "bundle-witness");
    make_bundle(other, &W.centre, &W.brain);
    verify(other);
    assert_int_equal(count(TDSX_AUDIT_PASS, "bundle", "bundles/bundle.current"), 1);
    expect_fail("witness", "certs/witness.der");
    free(other);
    free(dir);
}

/* The bundles the node applied over time (bundles/<serial>.tdsx) are verified one by one, at
 * their own issue time, and must hold the serial their name says. */
static void bundle_history_verified(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "bundle-history");
    make_bundle(dir, &W.centre, &W.centre); /* serial 1, in force */
    size_t n = 0;
    uint8_t *d = slurp(dir, "bundles/bundle.current", &n);
    spill(dir, "bundles/1.tdsx", d, n);
    rehash(dir, "bundles/1.tdsx");
    tdsx_audit_summary_t s = verify(dir);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "bundle", "bundles"), 1);
    /* A file named for another serial than the one it holds. */
    spill(dir, "bundles/2.tdsx", d, n);
    rehash(dir, "bundles/2.tdsx");
    verify(dir);
    expect_fail("bundle", "bundles/2.tdsx");
    assert_int_equal(count(TDSX_AUDIT_PASS, "bundle", "bundles"), 0);
    /* One changed byte in a kept bundle. */
    char *again = copy_of(W.good, "bundle-history-2");
    make_bundle(again, &W.centre, &W.centre);
    d[n / 3] ^= 0x01;
    spill(again, "bundles/1.tdsx", d, n);
    rehash(again, "bundles/1.tdsx");
    verify(again);
    expect_fail("bundle", "bundles/1.tdsx");
    tdsx_free(d);
    free(again);
    free(dir);
}

static void rolled_back_state_fails(void **state)
{
    (void)state;
    char *st = tdsx_test_path(W.work, "state");
    unlink(st);
    /* First audit of the larger log records it. */
    tdsx_audit_summary_t s = verify_with(W.later, W.anchor, st);
    assert_int_equal(s.fail, 0);
    size_t n = 0;
    uint8_t *before = slurp(W.work, "state", &n);
    assert_non_null(strstr((char *)before, W.ent.id));
    /* The older, smaller evidence is now a rollback; the state is left as it was. */
    s = verify_with(W.good, W.anchor, st);
    expect_fail("state", "size");
    size_t n2 = 0;
    uint8_t *after = slurp(W.work, "state", &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(before, after, n);
    /* Auditing the same evidence again is fine. */
    s = verify_with(W.later, W.anchor, st);
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "state", NULL), 1);
    /* A state whose root differs at its size: a fork. */
    char *text = (char *)before;
    char *root = strstr(text, "\nroot ");
    assert_non_null(root);
    root[6] = root[6] == '0' ? '1' : '0';
    spill(W.work, "state", before, n);
    s = verify_with(W.later, W.anchor, st);
    expect_fail("state", "root");
    /* Not a state file: the audit cannot run. */
    spill(W.work, "state", "garbage\n", 8);
    tdsx_audit_opts_t o = {W.anchor, st, 0};
    assert_int_equal(tdsx_audit_verify(W.later, &o, NULL, NULL, NULL), TDSX_E_FORMAT);
    tdsx_free(before);
    tdsx_free(after);
    free(st);
}

static void could_not_run(void **state)
{
    (void)state;
    tdsx_audit_opts_t o = {W.anchor, NULL, 0};
    assert_int_equal(tdsx_audit_verify("/nonexistent/evidence", &o, NULL, NULL, NULL),
                     TDSX_E_NOTFOUND);
    o.anchor = "/nonexistent/root.pem";
    assert_int_equal(tdsx_audit_verify(W.good, &o, NULL, NULL, NULL), TDSX_E_NOTFOUND);
    o.anchor = W.file; /* not a certificate */
    assert_int_equal(tdsx_audit_verify(W.good, &o, NULL, NULL, NULL), TDSX_E_CERT_PARSE);
    o.anchor = NULL;
    assert_int_equal(tdsx_audit_verify(W.good, &o, NULL, NULL, NULL), TDSX_E_INVAL);
    /* A directory without a MANIFEST. */
    o.anchor = W.anchor;
    assert_int_equal(tdsx_audit_verify(W.work, &o, NULL, NULL, NULL), TDSX_E_NOTFOUND);
}

static void honest_reports_pass(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "reports-ok");
    make_reports(dir, HONEST);
    tdsx_audit_summary_t s = verify(dir);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-signature", NULL), 2);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-chain", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-chain", "2"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "2"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-checkpoint", NULL), 2);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-cosignature", "2"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-field", NULL), 2);
    /* A later audit refuses a state that saw report 3 already. */
    char *st = tdsx_test_path(W.work, "report-state");
    unlink(st);
    s = verify_with(dir, W.anchor, st);
    assert_int_equal(s.fail, 0);
    size_t n = 0;
    uint8_t *text = slurp(W.work, "report-state", &n);
    assert_non_null(strstr((char *)text, "\nreport_seq 2\n"));
    char *p = strstr((char *)text, "\nreport_seq 2\n");
    p[12] = '3';
    spill(W.work, "report-state", text, n);
    verify_with(dir, W.anchor, st);
    expect_fail("state", "report-seq");
    tdsx_free(text);
    free(st);
    free(dir);
}

static void daemon_made_report_passes(void **state)
{
    (void)state;
    /* The report tdsxd made, logged and had cosigned: everything decided, everything passes. */
    tdsx_audit_summary_t s = verify(W.reported);
    if (s.fail || s.indeterminate)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(s.indeterminate, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-signature", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-chain", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-checkpoint", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-cosignature", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-field", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "1"), 1);
    /* Its stored note changed by one count (and re-listed): the signature no longer holds. */
    char *dir = copy_of(W.reported, "daemon-report");
    size_t n = 0;
    uint8_t *d = slurp(dir, "reports/1.note", &n);
    char *line = strstr((char *)d, "\ntransfers out general-1 brain ");
    assert_non_null(line);
    line += strlen("\ntransfers out general-1 brain ");
    assert_true(*line >= '1' && *line <= '8');
    (*line)++;
    spill(dir, "reports/1.note", d, n);
    rehash(dir, "reports/1.note");
    verify(dir);
    expect_fail("report-signature", "reports/1.note");
    tdsx_free(d);
    free(dir);
}

static void forged_report_count_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "reports-forged");
    make_reports(dir, FORGED_COUNT);
    verify(dir);
    /* Correctly signed by the node: only the recount catches the lie, and names the field. */
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-signature", NULL), 2);
    expect_fail("report-count", "2 transfers out general-1 brain");
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "1"), 1);
    free(dir);
}

static void broken_report_chain_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "reports-chain");
    make_reports(dir, BROKEN_CHAIN);
    verify(dir);
    expect_fail("report-chain", "2");
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "2"), 1);
    /* A report whose predecessor is missing from the evidence cannot be chained. */
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "rm '%s/reports/1.note' && grep -v ' reports/1.note$' "
                                   "'%s/MANIFEST' > '%s/M' && mv '%s/M' '%s/MANIFEST'",
                                   dir, dir, dir, dir, dir),
                     0);
    free(out);
    verify(dir);
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "report-chain", "2"), 1);
    free(dir);
}

static void overlapping_report_ranges_are_recounted_once(void **state)
{
    (void)state;
    /* Report 2 recounts the whole log, report 1's range included: its chain fails, and the
     * auditor does not tally entries a second time (a node signing a thousand reports over
     * the whole log would make it tally the log a thousand times). */
    char *dir = copy_of(W.good, "reports-overlap");
    make_reports(dir, OVERLAP);
    verify(dir);
    expect_fail("report-chain", "2");
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "1"), 1);
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "report-count", "2"), 1);
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-count", "2"), 0);
    free(dir);
}

static void report_cosigned_for_another_tree_fails(void **state)
{
    (void)state;
    /* Report 1 states size 3; the witness's cosignature beside it is for the head (size 6). */
    char *dir = copy_of(W.good, "reports-cosig");
    make_reports(dir, HONEST);
    size_t n = 0;
    uint8_t *cos = slurp(dir, "checkpoints/cosigned", &n);
    spill(dir, "reports/1.cosigned", cos, n);
    rehash(dir, "reports/1.cosigned");
    verify(dir);
    expect_fail("report-cosignature", "1");
    assert_int_equal(count(TDSX_AUDIT_PASS, "report-cosignature", "2"), 1);
    tdsx_free(cos);
    free(dir);
}

static void report_signed_by_another_key_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "reports-other");
    make_reports(dir, HONEST);
    /* The brain's report dropped into the enterprise's evidence. */
    size_t n = 0;
    uint8_t *d = slurp(dir, "reports/1.note", &n);
    char *dash = strstr((char *)d, "\n\n\xe2\x80\x94 ");
    assert_non_null(dash);
    dash[5] ^= 1; /* a byte of the signer's name */
    spill(dir, "reports/1.note", d, n);
    rehash(dir, "reports/1.note");
    verify(dir);
    expect_fail("report-signature", "reports/1.note");
    assert_int_equal(count(TDSX_AUDIT_INDETERMINATE, "report-chain", "2"), 1);
    tdsx_free(d);
    free(dir);
}

static void allocation_failures_are_clean(void **state)
{
    (void)state;
    /* Every allocation of a whole audit failed in turn: it reports the failure (as a result
     * or as FAIL lines), never passes because of it, and leaks nothing (ASan). */
    tdsx_audit_opts_t o = {W.anchor, NULL, 0};
    unsigned long total = 0;
    tdsx_test_alloc_fail_after(0);
    tdsx_audit_summary_t s;
    assert_int_equal(tdsx_audit_verify(W.reported, &o, NULL, NULL, &s), 0);
    total = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    assert_int_equal(s.fail, 0);
    assert_true(total > 10);
    tdsx_audit_summary_t full = s;
    unsigned long step = total / 150 + 1;
    for (unsigned long n = 1; n <= total; n += step) {
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_audit_verify(W.reported, &o, NULL, NULL, &s);
        tdsx_test_alloc_reset();
        if (rc != 0)
            assert_int_equal(rc, TDSX_E_NOMEM);
        else if (s.fail == 0 && (s.pass != full.pass || s.indeterminate != full.indeterminate))
            fail_msg("allocation %lu failed silently: %llu pass, %llu indeterminate", n,
                     (unsigned long long)s.pass, (unsigned long long)s.indeterminate);
    }
}

/* ---- the real binary --------------------------------------------------------------------- */

static void cli_exit_codes_and_json(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx audit verify '%s' --anchor '%s'", W.good, W.anchor),
                     0);
    assert_non_null(strstr(out, "PASS witness checkpoints/cosigned "));
    assert_non_null(strstr(out, "PASS tree-root log/checkpoint "));
    assert_null(strstr(out, "\nFAIL "));
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx audit verify '%s' --anchor '%s'", W.good, W.foreign_anchor), 1);
    assert_non_null(strstr(out, "FAIL cert-chain certs/sign.pem "));
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx audit verify '%s' --anchor '%s' --json", W.good,
                                   W.foreign_anchor),
                     1);
    assert_non_null(strstr(out, "{\"checks\":["));
    assert_non_null(
        strstr(out, "{\"check\":\"cert-chain\",\"result\":\"FAIL\",\"where\":\"certs/sign.pem\""));
    assert_non_null(strstr(out, "\"result\":\"FAIL\"}}"));
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx audit verify '%s' --anchor '%s' --json", W.good, W.anchor), 0);
    assert_non_null(strstr(out, "\"fail\":0,"));
    assert_non_null(strstr(out, "\"result\":\"PASS\"}}"));
    free(out);
    /* Could not run: exit 2, never a prompt (stdin is closed). */
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx audit verify /nonexistent --anchor '%s' "
                                   "</dev/null 2>&1",
                                   W.anchor),
                     2);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx audit verify '%s' --anchor /nonexistent.pem "
                                   "</dev/null 2>&1",
                                   W.good),
                     2);
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx audit verify '%s' 2>&1", W.good), 2);
    free(out);
    /* A name the audited party chose cannot print a line no check wrote. */
    char *dir = copy_of(W.good, "newline");
    spill(dir, "certs/x\nPASS state forged", "x", 1);
    assert_int_equal(tdsx_test_run(&out, "tdsx audit verify '%s' --anchor '%s'", dir, W.anchor), 1);
    assert_null(strstr(out, "\nPASS state forged"));
    assert_non_null(strstr(out, "FAIL manifest certs/x\\x0aPASS state forged file is not"));
    free(out);
    free(dir);
}

/* Revokes the sign certificate in creds/sign.pem with revocation date `at`. */
static void revoke_at(const char *creds, int64_t at)
{
    tdsx_ca_t *ca = NULL;
    STACK_OF(X509) *sk = NULL;
    char *path = tdsx_test_path(creds, "sign.pem");
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    assert_int_equal(tdsx_ca_open(W.p.ca, &ca), 0);
    tdsx_now_set(at);
    assert_int_equal(tdsx_ca_revoke(ca, sk_X509_value(sk, 0)), 0);
    tdsx_now_set(0);
    tdsx_ca_free(ca);
    sk_X509_pop_free(sk, X509_free);
    free(path);
}

/* Last: it revokes certificates in the province CA. Revocation is judged at the time: the
 * brain's key revoked in the future leaves its receipts good; the enterprise's key revoked in
 * the past fails every receipt it signed after that date and every checkpoint (they carry no
 * signing time). */
static void checkpoint_signed_by_revoked_key_fails(void **state)
{
    (void)state;
    char *dir = copy_of(W.good, "revoked");
    revoke_at(W.brain.creds, tdsx_now() + 3600);
    tdsx_test_province_crl(&W.p);
    size_t n = 0;
    uint8_t *d = slurp(W.p.dir, "crl.pem", &n);
    spill(dir, "crls/0.pem", d, n);
    rehash(dir, "crls/0.pem");
    tdsx_free(d);
    tdsx_audit_summary_t s = verify(dir);
    if (s.fail)
        dump();
    assert_int_equal(s.fail, 0);
    assert_int_equal(count(TDSX_AUDIT_PASS, "receipt", NULL), 1);

    revoke_at(W.ent.creds, 1000000000); /* 2001 */
    tdsx_test_province_crl(&W.p);
    d = slurp(W.p.dir, "crl.pem", &n);
    spill(dir, "crls/0.pem", d, n);
    rehash(dir, "crls/0.pem");
    tdsx_free(d);
    verify(dir);
    assert_int_equal(count(TDSX_AUDIT_PASS, "crl", "crls/0.pem"), 1);
    expect_fail("cert-chain", "certs/sign.pem");
    expect_fail("checkpoint-signature", "log/checkpoint");
    expect_fail("checkpoint-signature", "checkpoints/cosigned");
    size_t sender = 0, receiver = 0;
    for (size_t i = 0; i < L.n; i++) {
        sender += strcmp(L.v[i].check, "receipt") == 0 && strstr(L.v[i].detail, "sender cert");
        receiver += strcmp(L.v[i].check, "receipt") == 0 && strstr(L.v[i].detail, "receiver cert");
    }
    assert_true(sender >= SENDS);
    assert_int_equal(receiver, 0);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(export_layout_is_private_and_complete),
        cmocka_unit_test(export_refuses_bad_requests),
        cmocka_unit_test(export_of_a_range_verifies),
        cmocka_unit_test(untampered_bundle_passes),
        cmocka_unit_test(flipped_receipt_byte_fails),
        cmocka_unit_test(dropped_entry_fails),
        cmocka_unit_test(swapped_entries_fail),
        cmocka_unit_test(tile_rewritten_to_match_fails_the_root),
        cmocka_unit_test(missing_or_short_tile_fails),
        cmocka_unit_test(huge_signed_size_without_tiles_allocates_nothing),
        cmocka_unit_test(agreement_accepted_by_the_proposer_fails),
        cmocka_unit_test(agreement_event_without_its_statement_fails),
        cmocka_unit_test(refusal_after_acceptance_fails),
        cmocka_unit_test(receipt_between_others_fails),
        cmocka_unit_test(relay_of_nothing_received_fails),
        cmocka_unit_test(missing_witness_cosignature_fails),
        cmocka_unit_test(wrong_anchor_fails),
        cmocka_unit_test(manifest_catches_changes_and_strays),
        cmocka_unit_test(manifest_lines_are_checked),
        cmocka_unit_test(backdated_export_time_fails),
        cmocka_unit_test(file_listed_twice_fails),
        cmocka_unit_test(fifo_and_symlinks_in_the_evidence_fail),
        cmocka_unit_test(export_follows_no_symlink_out_of_the_data_dir),
        cmocka_unit_test(consistency_proofs_are_checked),
        cmocka_unit_test(foreign_crl_fails),
        cmocka_unit_test(trust_bundle_verified_against_the_anchor),
        cmocka_unit_test(bundle_history_verified),
        cmocka_unit_test(rolled_back_state_fails),
        cmocka_unit_test(honest_reports_pass),
        cmocka_unit_test(daemon_made_report_passes),
        cmocka_unit_test(forged_report_count_fails),
        cmocka_unit_test(broken_report_chain_fails),
        cmocka_unit_test(overlapping_report_ranges_are_recounted_once),
        cmocka_unit_test(report_cosigned_for_another_tree_fails),
        cmocka_unit_test(report_signed_by_another_key_fails),
        cmocka_unit_test(could_not_run),
        cmocka_unit_test(allocation_failures_are_clean),
        cmocka_unit_test(cli_exit_codes_and_json),
        cmocka_unit_test(checkpoint_signed_by_revoked_key_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
