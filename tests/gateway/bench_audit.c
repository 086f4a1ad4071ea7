/*
 * bench_audit — a generator for timing `tdsx audit verify` (not a test). It makes a province
 * (root + intermediate), an enterprise, a brain and a centre, signs N receipts for real (both
 * halves, batch signers of 256, as the daemon does), appends them to a C2SP tile log with the
 * gateway's own store, has the centre cosign the head, and exports the evidence with
 * tdsx_audit_export, so what is timed is exactly what an auditor would run:
 *
 *     tdsx_bench_audit OUT [N]          (N defaults to 100000)
 *     time tdsx audit verify OUT/evidence --anchor OUT/ca/root.pem
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "audit.h"
#include "certs.h"
#include "crypto.h"
#include "gateway.h"
#include "log.h"
#include "statement.pb-c.h"
#include "tlog.h"

#define BATCH 16384u /* log entries per append */

typedef struct {
    char dir[1024], creds[1100], id[TDSX_ID_SIZE];
    uint8_t seed[32];
} node_t;

typedef struct {
    tdsx_buf_t *out; /* one envelope per statement, each as be32(len) || bytes */
    int failed;
} sink_t;

static void on_signed(void *ud, int status, tdsx_bytes_t env)
{
    sink_t *s = ud;
    if (status || tdsx_buf_u32be(s->out, (uint32_t)env.n) || tdsx_buf_append(s->out, env.p, env.n))
        s->failed = 1;
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "bench_audit: %s: %s (%s)\n", what, tdsx_strerror(rc), tdsx_err_name(rc));
    return 2;
}

static int issue(tdsx_ca_t *ca, const char *base, node_t *n, const char *name, tdsx_role_t role,
                 int serial)
{
    char first17[18], uscc[19];
    snprintf(first17, sizeof first17, "91370100MA3C%05d", serial);
    memcpy(uscc, first17, 17);
    uscc[17] = tdsx_uscc_check_char(first17);
    uscc[18] = '\0';
    snprintf(n->creds, sizeof n->creds, "%s/%s", base, name);
    snprintf(n->id, sizeof n->id, "%s/%s", uscc, name);
    tdsx_issue_opts_t o = {uscc, name, name, role, 0, 0, 1};
    int rc = tdsx_ca_issue(ca, &o, n->creds);
    char key[1200];
    snprintf(key, sizeof key, "%s/sign.key", n->creds);
    return rc ? rc : tdsx_key_load_ed25519(key, n->seed);
}

/* Next envelope of a sink buffer. */
static tdsx_bytes_t next_env(tdsx_bytes_t *c)
{
    uint32_t n = 0;
    tdsx_bytes_t e = {NULL, 0};
    if (tdsx_bytes_u32be(c, &n) != 0 || tdsx_bytes_take(c, n, &e) != 0)
        e = tdsx_bytes(NULL, 0);
    return e;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tdsx_bench_audit OUT [N]\n");
        return 2;
    }
    const char *out = argv[1];
    uint64_t total = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    char path[2048], data[1100], ev[1100];
    node_t ent, brain, centre;
    tdsx_ca_t *ca = NULL;
    int rc;
    if (sodium_init() < 0 || mkdir(out, 0700) != 0)
        return die("mkdir OUT (must not exist)", TDSX_E_EXISTS);
    snprintf(path, sizeof path, "%s/ca", out);
    tdsx_ca_init_opts_t co = {"bench root", 1, 0, 0};
    if ((rc = tdsx_ca_init(path, &co)) || (rc = tdsx_ca_open(path, &ca)) ||
        (rc = issue(ca, out, &ent, "ent", TDSX_ROLE_ENTERPRISE, 101)) ||
        (rc = issue(ca, out, &brain, "brain", TDSX_ROLE_BRAIN, 102)) ||
        (rc = issue(ca, out, &centre, "centre", TDSX_ROLE_CENTRE, 103)))
        return die("ca", rc);
    snprintf(path, sizeof path, "%s/crl.pem", out);
    if ((rc = tdsx_ca_crl(ca, 30, path, 1)))
        return die("crl", rc);
    tdsx_ca_free(ca);

    snprintf(data, sizeof data, "%s/data", out);
    mkdir(data, 0700);
    tdsx_note_signer_t *logkey = NULL, *witness = NULL;
    tdsx_signer_t *ss = NULL, *rs = NULL;
    tdsx_verifier_t *v = NULL;
    tdsx_arena_t *arena = NULL;
    tdsx_tlog_t *t = NULL;
    snprintf(path, sizeof path, "%s/log", data);
    tdsx_signer_opts_t so = {256, BATCH};
    if ((rc = tdsx_note_signer_new(ent.id, TDSX_NOTE_ED25519, ent.seed, &logkey)) ||
        (rc = tdsx_note_signer_new(centre.id, TDSX_NOTE_COSIG, centre.seed, &witness)) ||
        (rc = tdsx_signer_new(ent.seed, &so, &ss)) ||
        (rc = tdsx_signer_new(brain.seed, &so, &rs)) || (rc = tdsx_verifier_new(0, &v)) ||
        (rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &arena)) ||
        (rc = tdsx_tlog_open(path, logkey, &t)))
        return die("keys/log", rc);
    uint8_t pk[32];
    tdsx_signer_public_key(ss, pk);
    if ((rc = tdsx_verifier_add_key(v, pk)))
        return die("verifier", rc);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint8_t payload_hash[32];
    memset(payload_hash, 0xab, sizeof payload_hash);
    for (uint64_t done = 0; done < total;) {
        uint64_t n = total - done < BATCH ? total - done : BATCH;
        tdsx_buf_t nros, nrrs, entries;
        tdsx_buf_init(&nros, 1u << 30);
        tdsx_buf_init(&nrrs, 1u << 30);
        tdsx_buf_init(&entries, 1u << 30);
        sink_t sn = {&nros, 0}, sr = {&nrrs, 0};
        for (uint64_t i = 0; i < n; i++) {
            Tdsx__Nro nro = TDSX__NRO__INIT;
            uint8_t tid[16];
            uint64_t k = done + i;
            memset(tid, 0, sizeof tid);
            memcpy(tid, &k, sizeof k);
            nro.transfer_id.data = tid;
            nro.transfer_id.len = 16;
            nro.sender = ent.id;
            nro.receiver = brain.id;
            nro.dataset_id = "bench";
            nro.payload_sha256.data = payload_hash;
            nro.payload_sha256.len = 32;
            nro.payload_length = 1000;
            nro.sequence = k + 1;
            nro.time = tdsx_now();
            nro.policy_rule = "line-1";
            if ((rc = tdsx_statement_submit(ss, TDSX_STATEMENT_NRO, &nro.base, on_signed, &sn)))
                return die("submit nro", rc);
        }
        if ((rc = tdsx_signer_flush(ss)) || sn.failed)
            return die("sign nros", rc ? rc : TDSX_E_INTERNAL);
        tdsx_bytes_t c = tdsx_buf_bytes(&nros);
        for (uint64_t i = 0; i < n; i++) {
            tdsx_bytes_t e = next_env(&c);
            tdsx_verified_t info;
            tdsx_hash_t nh;
            uint8_t sh[32];
            tdsx_arena_reset(arena);
            if ((rc = tdsx_envelope_verify(v, tdsx_statement_type(TDSX_STATEMENT_NRO), e, arena,
                                           &info)) ||
                (rc = tdsx_envelope_hash(e, &nh)) || (rc = tdsx_sha256(info.sig, 64, sh)))
                return die("nro", rc);
            uint64_t k = done + i;
            uint8_t tid[16];
            memset(tid, 0, sizeof tid);
            memcpy(tid, &k, sizeof k);
            Tdsx__Nrr nrr = TDSX__NRR__INIT;
            nrr.transfer_id.data = tid;
            nrr.transfer_id.len = 16;
            nrr.nro_hash.data = nh.b;
            nrr.nro_hash.len = 32;
            nrr.nro_signature_hash.data = sh;
            nrr.nro_signature_hash.len = 32;
            nrr.received_sha256.data = payload_hash;
            nrr.received_sha256.len = 32;
            nrr.received_length = 1000;
            nrr.status = TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
            nrr.time = tdsx_now();
            nrr.policy_rule = "line-1";
            nrr.receiver = brain.id;
            if ((rc = tdsx_statement_submit(rs, TDSX_STATEMENT_NRR, &nrr.base, on_signed, &sr)))
                return die("submit nrr", rc);
        }
        if ((rc = tdsx_signer_flush(rs)) || sr.failed)
            return die("sign nrrs", rc ? rc : TDSX_E_INTERNAL);
        tdsx_bytes_t *views = tdsx_calloc((size_t)n, sizeof *views);
        size_t *offs = tdsx_calloc((size_t)n, sizeof *offs);
        if (!views || !offs)
            return die("alloc", TDSX_E_NOMEM);
        c = tdsx_buf_bytes(&nros);
        tdsx_bytes_t d = tdsx_buf_bytes(&nrrs);
        for (uint64_t i = 0; i < n; i++) {
            tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {next_env(&c), next_env(&d)}};
            offs[i] = entries.len;
            if ((rc = tdsx__log_entry_encode(&e, &entries)))
                return die("entry", rc);
        }
        for (uint64_t i = 0; i < n; i++)
            views[i] =
                tdsx_bytes(entries.p + offs[i], (i + 1 < n ? offs[i + 1] : entries.len) - offs[i]);
        uint64_t first;
        if ((rc = tdsx_tlog_append(t, views, (size_t)n, &first)))
            return die("append", rc);
        tdsx_free(views);
        tdsx_free(offs);
        tdsx_buf_free(&nros);
        tdsx_buf_free(&nrrs);
        tdsx_buf_free(&entries);
        done += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "bench_audit: %llu receipts signed and logged in %.2f s\n",
            (unsigned long long)total,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    tdsx_buf_t cp, cos;
    tdsx_buf_init(&cp, TDSX_NOTE_MAX);
    tdsx_buf_init(&cos, TDSX_NOTE_MAX);
    if ((rc = tdsx_tlog_checkpoint(t, &cp)) ||
        (rc = tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), witness, (uint64_t)tdsx_now(), &cos)))
        return die("checkpoint", rc);
    tdsx_tlog_close(t);
    snprintf(path, sizeof path, "%s/%s", data, TDSX_LOG_PUBLISHED_FILE);
    if ((rc = tdsx_file_write(path, cp.p, cp.len, 0600, 1)))
        return die("published", rc);
    snprintf(path, sizeof path, "%s/%s", data, TDSX_LOG_COSIGNED_FILE);
    if ((rc = tdsx_file_write(path, cos.p, cos.len, 0600, 1)))
        return die("cosigned", rc);
    /* The store the export reads counterparts' certificates from: the brain's and the centre's
     * sign certificates, as the daemon keeps them after their Hellos. */
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/meta.db", data);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "CREATE TABLE peer_certs (peer TEXT, der BLOB, stored_at INTEGER);"
                     "CREATE TABLE receipts (sender_cert BLOB, receiver_cert BLOB);",
                     NULL, NULL, NULL) != SQLITE_OK)
        return die("meta.db", TDSX_E_IO);
    node_t *peers[] = {&brain, &centre};
    for (size_t i = 0; i < 2; i++) {
        STACK_OF(X509) *sk = NULL;
        unsigned char *der = NULL;
        snprintf(path, sizeof path, "%s/sign.pem", peers[i]->creds);
        if ((rc = tdsx_cert_load_file(path, &sk)))
            return die("peer cert", rc);
        int len = i2d_X509(sk_X509_value(sk, 0), &der);
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "INSERT INTO peer_certs VALUES (?, ?, 0)", -1, &st, NULL);
        sqlite3_bind_text(st, 1, peers[i]->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, der, len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return die("insert", TDSX_E_IO);
        sqlite3_finalize(st);
        OPENSSL_free(der);
        sk_X509_pop_free(sk, X509_free);
    }
    sqlite3_close(db);
    tdsx_config_t cfg;
    tdsx_config_defaults(&cfg);
    char crl[1100];
    snprintf(crl, sizeof crl, "%s/crl.pem", out);
    cfg.data_dir = data;
    cfg.credentials = ent.creds;
    cfg.witness = centre.id;
    cfg.crls[0] = crl;
    cfg.n_crls = 1;
    snprintf(ev, sizeof ev, "%s/evidence", out);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = tdsx_audit_export(&cfg, ev, 0, UINT64_MAX)))
        return die("export", rc);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr,
            "bench_audit: exported in %.2f s\nnow: time tdsx audit verify %s --anchor "
            "%s/ca/root.pem\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, ev, out);
    tdsx_buf_free(&cp);
    tdsx_buf_free(&cos);
    tdsx_signer_free(ss);
    tdsx_signer_free(rs);
    tdsx_verifier_free(v);
    tdsx_arena_free(arena);
    tdsx_note_signer_free(logkey);
    tdsx_note_signer_free(witness);
    sodium_memzero(ent.seed, 32);
    sodium_memzero(brain.seed, 32);
    sodium_memzero(centre.seed, 32);
    return 0;
}
