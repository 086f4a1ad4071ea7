/*
 * The transparency log inside tdsxd (SPEC §11). First the pure parts (entry format, the
 * witness's decision), then real daemons: a centre (the witness), a brain and an enterprise.
 *
 *  - every receipt lands in both parties' logs, with inclusion and consistency proofs that
 *    `tdsx log verify-proof` checks offline (and refuses once a byte is changed);
 *  - agreement events and policy reloads are entries too;
 *  - each node's published checkpoint is cosigned by the centre (cosignature/v1, verified
 *    here with the centre's key);
 *  - kill -9 during a stream of transfers, five times: after each restart the tree verifies,
 *    every acknowledged receipt is at the index it was acknowledged with, and the new
 *    checkpoint is consistent with the last one seen before the kill;
 *  - the centre checks what a member submits (its key, its origin, a proof from what it
 *    cosigned) and refuses forks and rollbacks, counting them;
 *  - a receipt stored but not logged (its append failed, or its mark in the store was lost)
 *    is in the log exactly once after the next start;
 *  - a stale copy of the log directory is refused at start; a restored stale backup of the
 *    whole data directory forks the log, and the centre refuses the fork and counts it.
 */
#include "daemon.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "log.h"
#include "tlog.h"

#define TAGS                                                                                       \
    "grade=general:1 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"
#define ARENA_BUDGET (64u << 20)
#define CRASH_ROUNDS 5
#define CRASH_THREADS 4
#define CRASH_ACKS 6 /* acknowledged receipts per round before the kill */
#define MAX_ACKS 256

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    tdsx_test_node_t rogue; /* a member with no daemon: a raw client speaks for it */
    char *file;             /* a small payload */
    tdsx_note_verifier_t ent_v, brain_v, centre_v, centre_cosig_v;
} world_t;

static world_t W;

/* ---- helpers ------------------------------------------------------------------------------- */

static void key_of(const tdsx_test_node_t *n, uint8_t type, tdsx_note_verifier_t *out)
{
    char *path = tdsx_test_path(n->creds, "sign.key");
    uint8_t seed[32];
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    assert_int_equal(tdsx_note_signer_new(n->id, type, seed, &s), 0);
    *out = *tdsx_note_signer_verifier(s);
    tdsx_note_signer_free(s);
    sodium_memzero(seed, sizeof seed);
    free(path);
}

/* One control request; returns 0 with *resp in *arena, or the daemon's or the call's error. */
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
    assert_int_equal(resp->body_case, TDSX__LOCAL_RESPONSE__BODY_LOG_STATUS);
    return resp->log_status;
}

static uint64_t log_size(const tdsx_test_node_t *n)
{
    tdsx_arena_t *a = NULL;
    uint64_t size = status(n, &a)->size;
    tdsx_arena_free(a);
    return size;
}

/* Inclusion (consistency = 0, num = index) or consistency (num = from) proof. */
static int try_proof(const tdsx_test_node_t *n, int consistency, uint64_t num, tdsx_arena_t **arena,
                     const Tdsx__LogProofResponse **out)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogProofRequest pq = TDSX__LOG_PROOF_REQUEST__INIT;
    Tdsx__LogConsistencyRequest cq = TDSX__LOG_CONSISTENCY_REQUEST__INIT;
    Tdsx__LocalResponse *resp = NULL;
    if (consistency) {
        cq.from = num;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_CONSISTENCY;
        req.log_consistency = &cq;
    } else {
        pq.index = num;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_PROOF;
        req.log_proof = &pq;
    }
    int rc = try_ask(n, &req, arena, &resp);
    if (rc == 0)
        *out = resp->log_proof;
    return rc;
}

/* Opens a checkpoint note with the log's key: 0 and its size and root, or the error. */
static int open_cp(const ProtobufCBinaryData *note, const tdsx_note_verifier_t *v,
                   tdsx_checkpoint_t *cp_out)
{
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t cp;
    int rc = tdsx_checkpoint_open(tdsx_bytes(note->data, note->len), v, NULL, 0, v->name, &n, &cp);
    if (rc == 0) {
        /* The views die with the note: keep the numbers only. */
        cp.origin = tdsx_bytes(NULL, 0);
        cp.extensions = tdsx_bytes(NULL, 0);
        *cp_out = cp;
    }
    tdsx_note_free(n);
    return rc;
}

static void hashes_of(const Tdsx__LogProofResponse *p, tdsx_hash_t *h)
{
    for (size_t i = 0; i < p->n_hashes; i++) {
        assert_int_equal(p->hashes[i].len, TDSX_HASH_LEN);
        memcpy(h[i].b, p->hashes[i].data, TDSX_HASH_LEN);
    }
}

/* Entry `index` of n's log, verified against its signed checkpoint; its description goes to
 * what. Returns the checkpoint's size. */
static uint64_t proven_entry(const tdsx_test_node_t *n, const tdsx_note_verifier_t *v,
                             uint64_t index, char *what, size_t what_size)
{
    tdsx_arena_t *a = NULL;
    const Tdsx__LogProofResponse *p = NULL;
    assert_int_equal(try_proof(n, 0, index, &a, &p), 0);
    tdsx_checkpoint_t cp;
    assert_int_equal(open_cp(&p->checkpoint, v, &cp), 0);
    tdsx_hash_t leaf, path[TDSX_MERKLE_CONSISTENCY_MAX];
    assert_true(p->n_hashes <= TDSX_MERKLE_PATH_MAX);
    hashes_of(p, path);
    assert_int_equal(tdsx_merkle_leaf_hash(p->entry.data, p->entry.len, &leaf), 0);
    assert_int_equal(
        tdsx_merkle_inclusion_verify(index, cp.size, &leaf, path, p->n_hashes, &cp.root), 0);
    tdsx__log_entry_describe(tdsx_bytes(p->entry.data, p->entry.len), what, what_size);
    tdsx_arena_free(a);
    return cp.size;
}

/* The index of the first entry at or after `from` whose description holds every needle
 * (NULL-terminated), or -1. */
static long find_entry(const tdsx_test_node_t *n, const tdsx_note_verifier_t *v, uint64_t from,
                       const char *needle, const char *needle2)
{
    uint64_t size = log_size(n);
    for (uint64_t i = from; i < size; i++) {
        char what[600];
        proven_entry(n, v, i, what, sizeof what);
        if (strstr(what, needle) && (!needle2 || strstr(what, needle2)))
            return (long)i;
    }
    return -1;
}

/* Sends W.file from the enterprise to the brain; returns the transfer id in hex. */
static void send_one(const char *dataset, char tid[33])
{
    char *out = NULL;
    int rc =
        tdsx_test_run(&out, "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags '%s' 2>&1",
                      W.ent.sock, W.brain.id, W.file, dataset, TAGS);
    if (rc != 0)
        fail_msg("send %s failed (%d): %s", dataset, rc, out ? out : "");
    assert_non_null(strstr(out, "state      receipted"));
    const char *t = strstr(out, "transfer   ");
    assert_non_null(t);
    memcpy(tid, t + 11, 32);
    tid[32] = '\0';
    free(out);
}

static int wait_until(int (*cond)(void), int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (cond())
            return 1;
        usleep(50000);
    }
    return cond();
}

/* The enterprise's last published checkpoint is the one the centre cosigned. */
static int ent_cosigned_current(void)
{
    tdsx_arena_t *a = NULL;
    const Tdsx__LogStatusResponse *st = status(&W.ent, &a);
    tdsx_checkpoint_t pub, cos;
    int ok = st->published.len && st->cosigned.len &&
             open_cp(&st->published, &W.ent_v, &pub) == 0 &&
             open_cp(&st->cosigned, &W.ent_v, &cos) == 0 && pub.size == cos.size &&
             memcmp(pub.root.b, cos.root.b, TDSX_HASH_LEN) == 0 && pub.size == st->size;
    tdsx_arena_free(a);
    return ok;
}

static void wait_ent_connected(void)
{
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    usleep(200000); /* the Hellos */
}

static void stop_ent(void)
{
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
}

static void start_ent(void)
{
    tdsx_test_node_start(&W.ent);
    wait_ent_connected();
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
    tdsx_test_node_issue(p, &W.rogue, "rogue", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_config(p, &W.centre, "checkpoint_interval 200ms\n");
    snprintf(extra, sizeof extra, "checkpoint_interval 200ms\nwitness %s\n", W.centre.id);
    tdsx_test_node_config(p, &W.brain, extra);
    /* The witness is not a configured peer: the enterprise dials it from the registry. */
    snprintf(extra, sizeof extra, "checkpoint_interval 200ms\nwitness %s\npeer %s 127.0.0.1:%d\n",
             W.centre.id, W.brain.id, W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    W.file = tdsx_test_path(p->dir, "payload.bin");
    tdsx_test_write_file(W.file, "日期,产量\n2026-11-01,1200\n", 30);
    key_of(&W.ent, TDSX_NOTE_ED25519, &W.ent_v);
    key_of(&W.brain, TDSX_NOTE_ED25519, &W.brain_v);
    key_of(&W.centre, TDSX_NOTE_ED25519, &W.centre_v);
    key_of(&W.centre, TDSX_NOTE_COSIG, &W.centre_cosig_v);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    start_ent();
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.centre);
    tdsx_test_node_free(&W.rogue);
    free(W.file);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- entries and the witness's decision (no daemons) ------------------------------------------
 */

static void entry_round_trip(void **state)
{
    (void)state;
    static const uint8_t nro[] = "NRO envelope bytes", nrr[] = "NRR";
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {{0}}}, back;
    e.item[0] = tdsx_bytes(nro, sizeof nro);
    e.item[1] = tdsx_bytes(nrr, sizeof nrr);
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_TLOG_ENTRY_MAX);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    assert_int_equal(b.len, 2 + 2 + sizeof nro + 2 + sizeof nrr);
    assert_int_equal(b.p[0], TDSX_LOG_ENTRY_VERSION);
    assert_int_equal(b.p[1], TDSX_LOG_ENTRY_RECEIPT);
    assert_int_equal(tdsx__log_entry_parse(tdsx_buf_bytes(&b), &back), 0);
    assert_int_equal(back.type, TDSX_LOG_ENTRY_RECEIPT);
    assert_int_equal(back.n, 2);
    assert_true(tdsx_bytes_equal(back.item[0], e.item[0]));
    assert_true(tdsx_bytes_equal(back.item[1], e.item[1]));
    /* Empty items are allowed (an agreement without acceptance yet). */
    tdsx_log_entry_t a = {TDSX_LOG_ENTRY_AGREEMENT, 7, {{0}}};
    a.item[0] = tdsx_bytes("proposed", 8);
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx__log_entry_encode(&a, &b), 0);
    assert_int_equal(tdsx__log_entry_parse(tdsx_buf_bytes(&b), &back), 0);
    assert_int_equal(back.n, 7);
    assert_int_equal(back.item[6].n, 0);
    assert_string_equal(tdsx__log_entry_type_name(TDSX_LOG_ENTRY_WITNESS_REFUSAL),
                        "witness-refusal");
    tdsx_buf_free(&b);
}

static void entry_defects_refused(void **state)
{
    (void)state;
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {{0}}}, back;
    e.item[0] = tdsx_bytes("a", 1);
    e.item[1] = tdsx_bytes("bc", 2);
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_TLOG_ENTRY_MAX);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), 0);
    uint8_t bad[64];
    memcpy(bad, b.p, b.len);
    /* Another version, an unknown type, a cut item, a byte too many, one item missing. */
    bad[0] = 2;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, b.len), &back), TDSX_E_FORMAT);
    bad[0] = 1;
    bad[1] = 9;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, b.len), &back), TDSX_E_FORMAT);
    bad[1] = 0;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, b.len), &back), TDSX_E_FORMAT);
    bad[1] = TDSX_LOG_ENTRY_RECEIPT;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, b.len - 1), &back), TDSX_E_FORMAT);
    bad[b.len] = 0;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, b.len + 1), &back), TDSX_E_FORMAT);
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, 2 + 2 + 1), &back), TDSX_E_FORMAT);
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(bad, 1), &back), TDSX_E_FORMAT);
    /* Encoding refuses what could not be parsed back. */
    size_t len = b.len;
    e.n = 3;
    assert_int_equal(tdsx__log_entry_encode(&e, &b), TDSX_E_INVAL);
    e.n = 2;
    e.type = 0;
    assert_int_equal(tdsx__log_entry_encode(&e, &b), TDSX_E_INVAL);
    e.type = TDSX_LOG_ENTRY_NRD;
    uint8_t *big = calloc(1, TDSX_TLOG_ENTRY_MAX);
    assert_non_null(big);
    e.item[0] = tdsx_bytes(big, 70000);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), TDSX_E_INVAL);
    e.item[0] = tdsx_bytes(big, 40000);
    e.item[1] = tdsx_bytes(big, 40000);
    assert_int_equal(tdsx__log_entry_encode(&e, &b), TDSX_E_TOOBIG);
    assert_int_equal(b.len, len); /* unchanged on error */
    free(big);
    char what[200];
    tdsx__log_entry_describe(tdsx_bytes("\x01\x09", 2), what, sizeof what);
    assert_non_null(strstr(what, "not a TDSX log entry"));
    tdsx_buf_free(&b);
}

/* A tree of n leaves "leaf <i>" and its checkpoint under origin "o". */
static void tree(size_t n, tdsx_hash_t *leaves, tdsx_checkpoint_t *cp, const char *origin)
{
    for (size_t i = 0; i < n; i++) {
        char s[32];
        int k = snprintf(s, sizeof s, "leaf %zu", i);
        assert_int_equal(tdsx_merkle_leaf_hash(s, (size_t)k, &leaves[i]), 0);
    }
    memset(cp, 0, sizeof *cp);
    cp->origin = tdsx_bytes(origin, strlen(origin));
    cp->size = n;
    assert_int_equal(tdsx_merkle_root(leaves, n, &cp->root), 0);
}

static void witness_decides(void **state)
{
    (void)state;
    tdsx_hash_t leaves[20], proof[TDSX_MERKLE_CONSISTENCY_MAX];
    tdsx_checkpoint_t last, next, fork, other;
    size_t len;
    tree(7, leaves, &last, "o");
    tree(20, leaves, &next, "o");
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 20, 7, proof, &len), 0);
    /* The first checkpoint of a node is taken as it is; a proven extension is cosigned. */
    assert_int_equal(tdsx__log_witness_check(NULL, &next, 0, NULL, 0), 0);
    assert_int_equal(tdsx__log_witness_check(&last, &next, 7, proof, len), 0);
    /* The same checkpoint again needs no proof. */
    assert_int_equal(tdsx__log_witness_check(&next, &next, 20, NULL, 0), 0);

    /* Proving from another size than the witness holds: tell the node which. */
    assert_int_equal(tdsx__log_witness_check(&last, &next, 5, proof, len), TDSX_E_STATE);
    /* A smaller log, a changed proof, a proof too short, a root that is not the extension's. */
    assert_int_equal(tdsx__log_witness_check(&next, &last, 20, NULL, 0), TDSX_E_LOG_INCONSISTENT);
    proof[0].b[0] ^= 1;
    assert_int_equal(tdsx__log_witness_check(&last, &next, 7, proof, len), TDSX_E_LOG_INCONSISTENT);
    proof[0].b[0] ^= 1;
    assert_int_equal(tdsx__log_witness_check(&last, &next, 7, proof, len - 1),
                     TDSX_E_LOG_INCONSISTENT);
    fork = next;
    fork.root.b[31] ^= 0x80;
    assert_int_equal(tdsx__log_witness_check(&last, &fork, 7, proof, len), TDSX_E_LOG_INCONSISTENT);
    /* Same size, another root: a fork at equal size. */
    assert_int_equal(tdsx__log_witness_check(&next, &fork, 20, NULL, 0), TDSX_E_LOG_INCONSISTENT);
    /* Another log's checkpoint. */
    other = next;
    other.origin = tdsx_bytes("p", 1);
    assert_int_equal(tdsx__log_witness_check(&last, &other, 7, proof, len),
                     TDSX_E_LOG_INCONSISTENT);
}

/* ---- with daemons ------------------------------------------------------------------------------
 */

/* Every receipt is an entry in both parties' logs, provable from the signed checkpoints. */
static void receipts_are_logged(void **state)
{
    (void)state;
    uint64_t ent_before = log_size(&W.ent), brain_before = log_size(&W.brain);
    char tids[3][33];
    for (int i = 0; i < 3; i++) {
        char ds[32];
        snprintf(ds, sizeof ds, "logged-%d", i);
        send_one(ds, tids[i]);
    }
    /* Acknowledged as receipted means durable in the sender's log: already there. */
    assert_true(log_size(&W.ent) >= ent_before + 3);
    for (int i = 0; i < 3; i++) {
        long at = find_entry(&W.ent, &W.ent_v, ent_before, tids[i], "accepted");
        assert_true(at >= 0);
        char what[600];
        proven_entry(&W.ent, &W.ent_v, (uint64_t)at, what, sizeof what);
        assert_non_null(strstr(what, "receipt transfer"));
        assert_non_null(strstr(what, W.brain.id));
        /* The receiver logged the same receipt before it told the sender. */
        assert_true(find_entry(&W.brain, &W.brain_v, brain_before, tids[i], NULL) >= 0);
    }
    /* The checkpoint is consistent with the one before these transfers. */
    tdsx_arena_t *a = NULL;
    const Tdsx__LogProofResponse *p = NULL;
    assert_int_equal(try_proof(&W.ent, 1, ent_before, &a, &p), 0);
    tdsx_checkpoint_t cp;
    assert_int_equal(open_cp(&p->checkpoint, &W.ent_v, &cp), 0);
    tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX], from_root;
    hashes_of(p, proof);
    memcpy(from_root.b, p->from_root.data, TDSX_HASH_LEN);
    assert_int_equal(tdsx_merkle_consistency_verify(ent_before, cp.size, &from_root, &cp.root,
                                                    proof, p->n_hashes),
                     0);
    tdsx_arena_free(a);
}

/* Flips one hex digit of the first line starting with `prefix` in a proof file. */
static void tamper(const char *file, const char *prefix)
{
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(file, 1 << 20, &text, &len), 0);
    char *line = strstr((char *)text, prefix);
    assert_non_null(line);
    char *c = line + strlen(prefix) + 3;
    *c = *c == '0' ? '1' : '0';
    tdsx_test_write_file(file, text, len);
    tdsx_free(text);
}

/* The CLI's proof files verify offline, and stop verifying when anything in them changes. */
static void proof_files_verify_offline(void **state)
{
    (void)state;
    char *dir = W.p.dir, *out = NULL;
    char *old = tdsx_test_path(dir, "old.cp"), *inc = tdsx_test_path(dir, "inc.proof"),
         *con = tdsx_test_path(dir, "con.proof");
    tdsx_arena_t *a = NULL;
    const char *vkey_src = status(&W.ent, &a)->vkey;
    char vkey[TDSX_NOTE_VKEY_MAX + 1], brain_vkey[TDSX_NOTE_VKEY_MAX + 1];
    snprintf(vkey, sizeof vkey, "%s", vkey_src);
    tdsx_arena_free(a);
    snprintf(brain_vkey, sizeof brain_vkey, "%s", status(&W.brain, &a)->vkey);
    tdsx_arena_free(a);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx log status --socket '%s' --checkpoint-out '%s'", W.ent.sock, old),
        0);
    assert_non_null(strstr(out, "vkey"));
    free(out);
    uint64_t from = log_size(&W.ent);
    char tid[33];
    send_one("proved", tid);
    long at = find_entry(&W.ent, &W.ent_v, from, tid, NULL);
    assert_true(at >= 0);

    assert_int_equal(tdsx_test_run(&out, "tdsx log proof --socket '%s' --index %ld --out '%s'",
                                   W.ent.sock, at, inc),
                     0);
    assert_non_null(strstr(out, tid));
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s' --vkey '%s'", inc, vkey), 0);
    assert_non_null(strstr(out, "PASS  inclusion"));
    assert_non_null(strstr(out, tid));
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx log consistency --socket '%s' --from %llu --out '%s'",
                                   W.ent.sock, (unsigned long long)from, con),
                     0);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx log verify-proof '%s' --vkey '%s' --old-checkpoint '%s'",
                                   con, vkey, old),
                     0);
    assert_non_null(strstr(out, "PASS  consistency"));
    assert_non_null(strstr(out, "PASS  old checkpoint"));
    free(out);
    /* Without a key it still checks the proof, and says the signature was not checked. */
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s'", inc), 0);
    assert_non_null(strstr(out, "NOT checked"));
    free(out);

    /* Another node's key: the checkpoint is not that log's. */
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s' --vkey '%s'", inc, brain_vkey),
                     1);
    assert_non_null(strstr(out, "FAIL  checkpoint"));
    free(out);
    /* An old checkpoint the proof does not start from: the brain's. */
    char *bold = tdsx_test_path(dir, "brain-old.cp");
    assert_int_equal(tdsx_test_run(&out, "tdsx log status --socket '%s' --checkpoint-out '%s'",
                                   W.brain.sock, bold),
                     0);
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx log verify-proof '%s' --old-checkpoint '%s'", con, bold), 1);
    assert_non_null(strstr(out, "FAIL  old checkpoint"));
    free(out);
    free(bold);
    /* One changed hex digit in the entry, in a path hash, in the old root. */
    char *copy = tdsx_test_path(dir, "inc2.proof");
    assert_int_equal(tdsx_test_run(&out, "cp '%s' '%s'", inc, copy), 0);
    free(out);
    tamper(inc, "\nentry ");
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s' --vkey '%s'", inc, vkey), 1);
    assert_non_null(strstr(out, "FAIL  inclusion"));
    free(out);
    /* The log holds more than one entry, so the path is not empty. */
    tamper(copy, "\nhash ");
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s' --vkey '%s'", copy, vkey), 1);
    assert_non_null(strstr(out, "FAIL  inclusion"));
    free(out);
    tamper(con, "\nfrom-root ");
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s' --vkey '%s'", con, vkey), 1);
    assert_non_null(strstr(out, "FAIL  consistency"));
    free(out);
    /* Not a proof file at all. */
    assert_int_equal(tdsx_test_run(&out, "tdsx log verify-proof '%s'", old), 1);
    assert_non_null(strstr(out, "FAIL  proof file"));
    free(out);
    free(copy);
    free(old);
    free(inc);
    free(con);
}

/* Asking for what the log does not hold is refused with its code, nothing printed as proof. */
static void proofs_beyond_the_log_refused(void **state)
{
    (void)state;
    uint64_t size = log_size(&W.ent);
    tdsx_arena_t *a = NULL;
    const Tdsx__LogProofResponse *p = NULL;
    assert_int_equal(try_proof(&W.ent, 0, size + 1000, &a, &p), TDSX_E_NOTFOUND);
    assert_int_equal(try_proof(&W.ent, 1, size + 1000, &a, &p), TDSX_E_NOTFOUND);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx log proof --socket '%s' --index %llu 2>&1",
                                   W.ent.sock, (unsigned long long)(size + 1000)),
                     1);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    assert_null(strstr(out, "tdsx-log-proof"));
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx log proof --socket '%s' --index -3 2>&1", W.ent.sock), 2);
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx log consistency --socket '%s' 2>&1", W.ent.sock), 2);
    assert_non_null(strstr(out, "--from is required"));
    free(out);
}

/* The centre cosigns each node's published checkpoint, and says so for itself. */
static void checkpoints_cosigned_by_centre(void **state)
{
    (void)state;
    char tid[33];
    send_one("witnessed", tid);
    assert_true(wait_until(ent_cosigned_current, 10000));
    tdsx_arena_t *a = NULL;
    const Tdsx__LogStatusResponse *st = status(&W.ent, &a);
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    /* Signed by the enterprise's log key and cosigned by the centre, cosignature/v1. */
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(st->cosigned.data, st->cosigned.len), &W.ent_v,
                                          &W.centre_cosig_v, 1, W.ent.id, &note, &cp),
                     0);
    const tdsx_note_sig_t *sig = tdsx_note_verified_by(note, &W.centre_cosig_v);
    assert_non_null(sig);
    assert_true(sig->timestamp > 0 && (int64_t)sig->timestamp <= time(NULL) + 5);
    assert_string_equal(st->witness, W.centre.id);
    assert_non_null(strstr(st->witness_state, "cosigned"));
    tdsx_note_free(note);
    tdsx_arena_free(a);
    /* A plain Ed25519 line by the centre is not a cosignature. */
    st = status(&W.ent, &a);
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(st->cosigned.data, st->cosigned.len), &W.ent_v,
                                          &W.centre_v, 1, W.ent.id, &note, &cp),
                     0);
    assert_null(tdsx_note_verified_by(note, &W.centre_v));
    tdsx_note_free(note);
    tdsx_arena_free(a);
    /* The centre keeps one record per node it witnesses and has refused nothing. */
    st = status(&W.centre, &a);
    assert_true(st->witness_cosigned >= 2);
    assert_int_equal(st->witnessed_nodes, 2);
    assert_int_equal(st->witness_refused, 0);
    tdsx_arena_free(a);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx log status --socket '%s'", W.ent.sock), 0);
    assert_non_null(strstr(out, "cosigned"));
    assert_non_null(strstr(out, W.centre.id));
    free(out);
    assert_true(
        tdsx_test_log_wait(&W.centre, 1000, "\"event\":\"log.witnessed\"", W.brain.id, NULL));
}

/* Policy reloads and agreement events are entries as well. */
static void policy_and_agreements_logged(void **state)
{
    (void)state;
    uint64_t from = log_size(&W.brain);
    kill(W.brain.pid, SIGHUP);
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"policy.reloaded\"", NULL));
    usleep(300000);
    assert_true(find_entry(&W.brain, &W.brain_v, from, "policy reload sha256", NULL) >= 0);
    uint64_t ent_from = log_size(&W.ent);
    from = log_size(&W.brain);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx agree propose --socket '%s' --with %s --dataset logged-ds "
                                   "--purpose stats --action receive --days 30 2>&1",
                                   W.ent.sock, W.brain.id),
                     0);
    free(out);
    usleep(300000);
    assert_true(find_entry(&W.ent, &W.ent_v, ent_from, "agreement proposed", W.ent.id) >= 0);
    assert_true(find_entry(&W.brain, &W.brain_v, from, "agreement proposed", W.ent.id) >= 0);
}

/* ---- a raw witness client ---------------------------------------------------------------------
 */

typedef struct {
    tdsx_test_client_t c;
    uint32_t next_stream; /* odd: we dialled */
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

/* Connects to `to` as the rogue member and says who signs for it, as a daemon would. */
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
    h.software = "raw-witness-client";
    f.body_case = TDSX__FRAME__BODY_HELLO;
    f.hello = &h;
    tdsx_test_client_send_frame(&r->c, &f);
    for (size_t i = 0; i <= n_chain; i++)
        OPENSSL_free(der[i]);
}

/* Submits a checkpoint and returns the answer (free with tdsx__frame__free_unpacked).
 * short_hash makes the first proof hash 31 bytes. */
static Tdsx__Frame *raw_submit(raw_t *r, const tdsx_buf_t *note, uint64_t old_size,
                               const tdsx_hash_t *proof, size_t n, int short_hash)
{
    Tdsx__CheckpointSubmit cs = TDSX__CHECKPOINT_SUBMIT__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    ProtobufCBinaryData pr[TDSX_MERKLE_CONSISTENCY_MAX];
    for (size_t i = 0; i < n; i++) {
        pr[i].data = (uint8_t *)proof[i].b;
        pr[i].len = TDSX_HASH_LEN - (i == 0 && short_hash ? 1 : 0);
    }
    cs.checkpoint.data = note->p;
    cs.checkpoint.len = note->len;
    cs.old_size = old_size;
    cs.consistency_proof = pr;
    cs.n_consistency_proof = n;
    f.stream_id = r->next_stream;
    r->next_stream += 2;
    f.body_case = TDSX__FRAME__BODY_CHECKPOINT_SUBMIT;
    f.checkpoint_submit = &cs;
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
        if (a->body_case == TDSX__FRAME__BODY_CHECKPOINT_COSIGNED) {
            assert_int_equal(a->stream_id, f.stream_id);
            return a;
        }
        tdsx__frame__free_unpacked(a, NULL); /* its Hello, window credit, pongs */
    }
}

static int answer_code(const Tdsx__Frame *a)
{
    return a->checkpoint_cosigned->code ? tdsx_err_from_wire(a->checkpoint_cosigned->code) : 0;
}

/* The checkpoint of the first n leaves "<prefix> <i>", signed by `key`, origin `origin`. */
static void signed_cp(const tdsx_note_signer_t *key, const char *origin, const char *prefix,
                      size_t n, tdsx_hash_t *leaves, tdsx_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        char s[64];
        int k = snprintf(s, sizeof s, "%s %zu", prefix, i);
        assert_int_equal(tdsx_merkle_leaf_hash(s, (size_t)k, &leaves[i]), 0);
    }
    tdsx_checkpoint_t cp = {tdsx_bytes(origin, strlen(origin)), n, {{0}}, tdsx_bytes(NULL, 0)};
    assert_int_equal(tdsx_merkle_root(leaves, n, &cp.root), 0);
    tdsx_buf_reset(out);
    assert_int_equal(tdsx_checkpoint_sign(&cp, key, out), 0);
}

static tdsx_note_signer_t *signer_of(const tdsx_test_node_t *n, const char *name)
{
    char *path = tdsx_test_path(n->creds, "sign.key");
    uint8_t seed[32];
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    assert_int_equal(tdsx_note_signer_new(name, TDSX_NOTE_ED25519, seed, &s), 0);
    sodium_memzero(seed, sizeof seed);
    free(path);
    return s;
}

static uint64_t centre_refusals(void)
{
    tdsx_arena_t *a = NULL;
    uint64_t n = status(&W.centre, &a)->witness_refused;
    tdsx_arena_free(a);
    return n;
}

/* What a member sends the witness is checked before it is cosigned: its own key, its own
 * origin, a proof from what the witness holds; forks and rollbacks are refused and counted. */
static void witness_refuses_forged_submissions(void **state)
{
    (void)state;
    tdsx_note_signer_t *own = signer_of(&W.rogue, W.rogue.id);
    tdsx_note_signer_t *stolen = signer_of(&W.ent, W.rogue.id); /* another key, our name */
    tdsx_hash_t leaves[8], fork[8], proof[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t len;
    tdsx_buf_t note;
    tdsx_buf_init(&note, TDSX_NOTE_MAX);
    uint64_t refused = centre_refusals();
    raw_t r;
    raw_open(&r, &W.centre);

    /* Claiming to be another node's log, or signed by a key that is not ours, or no note. */
    signed_cp(own, W.ent.id, "leaf", 3, leaves, &note);
    Tdsx__Frame *a = raw_submit(&r, &note, 0, NULL, 0, 0);
    assert_int_equal(answer_code(a), TDSX_E_CHECKPOINT);
    tdsx__frame__free_unpacked(a, NULL);
    signed_cp(stolen, W.rogue.id, "leaf", 3, leaves, &note);
    a = raw_submit(&r, &note, 0, NULL, 0, 0);
    assert_int_equal(answer_code(a), TDSX_E_NOTE_UNVERIFIED);
    tdsx__frame__free_unpacked(a, NULL);
    tdsx_buf_reset(&note);
    assert_int_equal(tdsx_buf_append_str(&note, "not a signed note\n"), 0);
    a = raw_submit(&r, &note, 0, NULL, 0, 0);
    assert_int_equal(answer_code(a), TDSX_E_NOTE_FORMAT);
    tdsx__frame__free_unpacked(a, NULL);

    /* The first real one is taken on first use and cosigned by the centre. */
    signed_cp(own, W.rogue.id, "leaf", 3, leaves, &note);
    a = raw_submit(&r, &note, 0, NULL, 0, 0);
    assert_int_equal(answer_code(a), 0);
    const tdsx_note_verifier_t *rv = tdsx_note_signer_verifier(own);
    tdsx_note_t *opened = NULL;
    tdsx_checkpoint_t cp;
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(a->checkpoint_cosigned->cosigned.data,
                                                     a->checkpoint_cosigned->cosigned.len),
                                          rv, &W.centre_cosig_v, 1, W.rogue.id, &opened, &cp),
                     0);
    assert_non_null(tdsx_note_verified_by(opened, &W.centre_cosig_v));
    tdsx_note_free(opened);
    tdsx__frame__free_unpacked(a, NULL);

    /* Growing to 5 but proving from 0: the centre says it holds 3, and shows it. */
    signed_cp(own, W.rogue.id, "leaf", 5, leaves, &note);
    assert_int_equal(tdsx_merkle_consistency_proof(leaves, 5, 3, proof, &len), 0);
    a = raw_submit(&r, &note, 0, proof, len, 0);
    assert_int_equal(answer_code(a), TDSX_E_STATE);
    assert_true(a->checkpoint_cosigned->witnessed.len > 0);
    tdsx__frame__free_unpacked(a, NULL);
    /* A proof hash that is not 32 bytes is malformed, not a fork. */
    a = raw_submit(&r, &note, 3, proof, len, 1);
    assert_int_equal(answer_code(a), TDSX_E_PROTO_FIELD);
    tdsx__frame__free_unpacked(a, NULL);
    a = raw_submit(&r, &note, 3, proof, len, 0);
    assert_int_equal(answer_code(a), 0);
    tdsx__frame__free_unpacked(a, NULL);

    /* Another history of 6 entries, with a proof from its own first 5: refused. So is going
     * back to 4. */
    signed_cp(own, W.rogue.id, "fork", 6, fork, &note);
    assert_int_equal(tdsx_merkle_consistency_proof(fork, 6, 5, proof, &len), 0);
    a = raw_submit(&r, &note, 5, proof, len, 0);
    assert_int_equal(answer_code(a), TDSX_E_LOG_INCONSISTENT);
    /* The answer shows the checkpoint the centre keeps: the real one, cosigned. */
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(a->checkpoint_cosigned->witnessed.data,
                                                     a->checkpoint_cosigned->witnessed.len),
                                          rv, &W.centre_cosig_v, 1, W.rogue.id, &opened, &cp),
                     0);
    assert_int_equal(cp.size, 5);
    tdsx_note_free(opened);
    tdsx__frame__free_unpacked(a, NULL);
    signed_cp(own, W.rogue.id, "leaf", 4, leaves, &note);
    a = raw_submit(&r, &note, 5, NULL, 0, 0);
    assert_int_equal(answer_code(a), TDSX_E_LOG_INCONSISTENT);
    tdsx__frame__free_unpacked(a, NULL);
    tdsx_test_client_free(&r.c);

    /* Five refusals counted (the malformed proof and the resync are not refusals). */
    assert_int_equal(centre_refusals(), refused + 5);
    assert_true(find_entry(&W.centre, &W.centre_v, 0, "witness-refusal node", W.rogue.id) >= 0);

    /* A node that is not the centre witnesses nobody. */
    raw_open(&r, &W.brain);
    a = raw_submit(&r, &note, 0, NULL, 0, 0);
    assert_int_equal(answer_code(a), TDSX_E_UNSUPPORTED);
    tdsx__frame__free_unpacked(a, NULL);
    tdsx_test_client_free(&r.c);
    tdsx_buf_free(&note);
    tdsx_note_signer_free(own);
    tdsx_note_signer_free(stolen);
}

/* ---- kill -9 during a stream of transfers ------------------------------------------------------
 */

typedef struct {
    pthread_mutex_t mu;
    volatile int stop;
    int round;
    size_t n;
    char tid[MAX_ACKS][33];
    uint64_t index[MAX_ACKS];
} acks_t;

static acks_t A;

static void *sender(void *arg)
{
    long t = (long)arg;
    for (int i = 0; !A.stop; i++) {
        Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
        Tdsx__SendRequest s = TDSX__SEND_REQUEST__INIT;
        char ds[64];
        snprintf(ds, sizeof ds, "crash-%d-%ld-%d", A.round, t, i);
        req.body_case = TDSX__LOCAL_REQUEST__BODY_SEND;
        req.send = &s;
        s.to = W.brain.id;
        s.path = W.file;
        s.dataset_id = ds;
        s.tags = TAGS;
        tdsx_arena_t *a = NULL;
        Tdsx__LocalResponse *resp = NULL;
        if (try_ask(&W.ent, &req, &a, &resp) != 0)
            break; /* the daemon is gone */
        const Tdsx__TransferResult *r = resp->result;
        if (resp->body_case == TDSX__LOCAL_RESPONSE__BODY_RESULT &&
            strcmp(r->state, "receipted") == 0 && r->logged && r->transfer_id.len == 16) {
            pthread_mutex_lock(&A.mu);
            if (A.n < MAX_ACKS) {
                tdsx_hex_encode(A.tid[A.n], r->transfer_id.data, 16);
                A.index[A.n++] = r->log_index;
            }
            pthread_mutex_unlock(&A.mu);
        }
        tdsx_arena_free(a);
    }
    return NULL;
}

static size_t acked(void)
{
    pthread_mutex_lock(&A.mu);
    size_t n = A.n;
    pthread_mutex_unlock(&A.mu);
    return n;
}

static void crash_recovers_every_acknowledged_receipt(void **state)
{
    (void)state;
    pthread_mutex_init(&A.mu, NULL);
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        A.round = round;
        A.stop = 0;
        size_t before = acked();
        pthread_t th[CRASH_THREADS];
        for (long t = 0; t < CRASH_THREADS; t++)
            assert_int_equal(pthread_create(&th[t], NULL, sender, (void *)t), 0);
        for (int i = 0; i < 400 && acked() < before + CRASH_ACKS; i++)
            usleep(25000);
        assert_true(acked() >= before + CRASH_ACKS);
        /* A checkpoint seen now was signed after a durable append: it must survive. */
        tdsx_arena_t *a = NULL;
        const Tdsx__LogStatusResponse *st = status(&W.ent, &a);
        tdsx_checkpoint_t seen;
        assert_int_equal(open_cp(&st->checkpoint, &W.ent_v, &seen), 0);
        tdsx_arena_free(a);
        kill(W.ent.pid, SIGKILL);
        waitpid(W.ent.pid, NULL, 0);
        W.ent.pid = 0;
        A.stop = 1;
        for (int t = 0; t < CRASH_THREADS; t++)
            pthread_join(th[t], NULL);
        /* The last checkpoint the dead node signed, as its log directory holds it. */
        char *cp_path = tdsx_test_path(W.ent.data, "log/checkpoint");
        uint8_t *cp_text = NULL;
        size_t cp_len = 0;
        assert_int_equal(tdsx_file_read(cp_path, TDSX_NOTE_MAX, &cp_text, &cp_len), 0);
        ProtobufCBinaryData cp_note = {cp_len, cp_text};
        tdsx_checkpoint_t last;
        assert_int_equal(open_cp(&cp_note, &W.ent_v, &last), 0);
        assert_true(last.size >= seen.size);
        tdsx_free(cp_text);
        free(cp_path);

        start_ent(); /* recovery, and the published-checkpoint check, pass or it never starts */
        /* The new checkpoint extends the one seen before the kill and the last one signed:
         * nothing durable was lost and no index was handed out twice. */
        const tdsx_checkpoint_t *signed_cps[2] = {&seen, &last};
        for (int k = 0; k < 2; k++) {
            const Tdsx__LogProofResponse *p = NULL;
            assert_int_equal(try_proof(&W.ent, 1, signed_cps[k]->size, &a, &p), 0);
            tdsx_checkpoint_t now;
            tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX];
            assert_int_equal(open_cp(&p->checkpoint, &W.ent_v, &now), 0);
            hashes_of(p, proof);
            assert_int_equal(tdsx_merkle_consistency_verify(signed_cps[k]->size, now.size,
                                                            &signed_cps[k]->root, &now.root, proof,
                                                            p->n_hashes),
                             0);
            tdsx_arena_free(a);
        }
        /* The whole tree: every entry parses and proves against the new checkpoint. */
        uint64_t size = log_size(&W.ent);
        for (uint64_t i = 0; i < size; i++) {
            char what[600];
            proven_entry(&W.ent, &W.ent_v, i, what, sizeof what);
            assert_null(strstr(what, "not a TDSX log entry"));
        }
        /* Every receipt acknowledged so far, in every round, is where it was acknowledged. */
        for (size_t i = 0; i < acked(); i++) {
            char what[600];
            proven_entry(&W.ent, &W.ent_v, A.index[i], what, sizeof what);
            if (!strstr(what, A.tid[i]))
                fail_msg("round %d: acknowledged receipt %s is not at index %llu (found: %s)",
                         round, A.tid[i], (unsigned long long)A.index[i], what);
        }
    }
    /* Indexes are never shared by two acknowledged receipts. */
    for (size_t i = 0; i < A.n; i++)
        for (size_t j = i + 1; j < A.n; j++)
            assert_true(A.index[i] != A.index[j]);
    pthread_mutex_destroy(&A.mu);
    /* The witness accepts the recovered log as the same log. */
    assert_true(wait_until(ent_cosigned_current, 10000));
}

/* ---- stale copies ------------------------------------------------------------------------------
 */

static void stale_log_directory_refused_at_start(void **state)
{
    (void)state;
    char *out = NULL;
    stop_ent();
    assert_int_equal(tdsx_test_run(&out, "cp -a '%s/log' '%s/log.stale'", W.ent.data, W.ent.data),
                     0);
    free(out);
    start_ent();
    char tid[33];
    send_one("after-copy", tid);
    /* Published beyond the copy. */
    for (int i = 0; i < 100; i++) {
        tdsx_arena_t *a = NULL;
        const Tdsx__LogStatusResponse *st = status(&W.ent, &a);
        tdsx_checkpoint_t pub;
        int done = st->published.len && open_cp(&st->published, &W.ent_v, &pub) == 0 &&
                   pub.size == st->size;
        tdsx_arena_free(a);
        if (done)
            break;
        usleep(50000);
    }
    stop_ent();
    assert_int_equal(
        tdsx_test_run(&out, "cd '%s' && mv log log.good && mv log.stale log", W.ent.data), 0);
    free(out);
    int rc = tdsx_test_run(&out, "tdsxd -c '%s' 2>&1", W.ent.conf);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "TDSX_E_LOG_INCONSISTENT"));
    assert_non_null(strstr(out, "\"event\":\"log.inconsistent\""));
    free(out);
    /* With the real directory back, it starts and carries on. */
    assert_int_equal(tdsx_test_run(&out, "cd '%s' && rm -rf log && mv log.good log", W.ent.data),
                     0);
    free(out);
    start_ent();
    send_one("after-restore", tid);
}

/* ---- receipts stored but not logged -------------------------------------------------------------
 */

/* Runs sql on the enterprise's store with ?1 = the transfer id in hex; returns the first
 * column of the first row (-2 when there is no row, -3 for NULL) or the number of rows changed. */
static int64_t ent_sql(const char *sql, const char *tid)
{
    char *db = tdsx_test_path(W.ent.data, "meta.db");
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    assert_int_equal(sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC), SQLITE_OK);
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW
                    ? (sqlite3_column_type(st, 0) == SQLITE_NULL ? -3 : sqlite3_column_int64(st, 0))
                : rc == SQLITE_DONE ? (sqlite3_column_count(st) ? -2 : sqlite3_changes(h))
                                    : -4;
    if (v == -4)
        fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(db);
    return v;
}

#define LOG_INDEX_OF "SELECT log_index FROM receipts WHERE lower(hex(transfer_id)) = lower(?1)"

/* How many entries of the enterprise's log are the receipt of tid; each one, and every other
 * entry, proven against the current checkpoint. *at is the last one's index. */
static int receipt_entries(const char *tid, uint64_t *at)
{
    int count = 0;
    uint64_t size = log_size(&W.ent);
    for (uint64_t i = 0; i < size; i++) {
        char what[600];
        proven_entry(&W.ent, &W.ent_v, i, what, sizeof what);
        assert_null(strstr(what, "not a TDSX log entry"));
        if (strstr(what, "receipt transfer") && strstr(what, tid)) {
            count++;
            *at = i;
        }
    }
    return count;
}

/* The crash came after the append was durable but before the store recorded it: the start
 * finds the entry and records it, and does not log the receipt a second time. */
static void unmarked_receipt_found_not_duplicated(void **state)
{
    (void)state;
    char tid[33];
    uint64_t at = 0, again = 0;
    send_one("unmarked", tid);
    assert_int_equal(receipt_entries(tid, &at), 1);
    assert_int_equal(ent_sql(LOG_INDEX_OF, tid), (int64_t)at);
    stop_ent();
    assert_int_equal(
        ent_sql("UPDATE receipts SET log_index = NULL WHERE lower(hex(transfer_id)) = lower(?1)",
                tid),
        1);
    start_ent();
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"log.receipt_recovered\"", tid,
                                   "\"how\":\"found\"", NULL));
    assert_int_equal(receipt_entries(tid, &again), 1);
    assert_int_equal(again, at);
    assert_int_equal(ent_sql(LOG_INDEX_OF, tid), (int64_t)at);
}

/* The receipt was stored but its entry never reached the log (here: every append fails, as
 * when the disk gives out between the store and the log). The sender's client hears of it;
 * the next start appends the receipt, exactly once, and the tree verifies. */
static void unlogged_receipt_logged_at_start(void **state)
{
    (void)state;
    char tid[33], *out = NULL;
    uint64_t at = 0;
    stop_ent();
    /* A directory where the log writes its next checkpoint: every append fails (even as
     * root), while reads still work. */
    char *blocker = tdsx_test_path(W.ent.data, "log/checkpoint.tmp");
    assert_int_equal(mkdir(blocker, 0700), 0);
    start_ent();
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"log.append_failed\"", NULL));
    int rc = tdsx_test_run(
        &out, "tdsx send --socket '%s' --to %s '%s' --dataset unlogged --tags '%s' 2>&1",
        W.ent.sock, W.brain.id, W.file, TAGS);
    (void)rc; /* what the client is told is not the point here: the store and the log are */
    const char *t = out ? strstr(out, "transfer   ") : NULL;
    if (!t)
        fail_msg("send gave no transfer id: %s", out ? out : "");
    memcpy(tid, t + 11, 32);
    tid[32] = '\0';
    free(out);
    assert_true(ent_sql(LOG_INDEX_OF, tid) == -3); /* stored, no index */
    assert_int_equal(receipt_entries(tid, &at), 0);
    stop_ent();
    assert_int_equal(rmdir(blocker), 0);
    free(blocker);
    start_ent();
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"log.receipt_recovered\"", tid,
                                   "\"how\":\"appended\"", NULL));
    /* The mark follows the entry once it is durable. */
    for (int i = 0; i < 100 && ent_sql(LOG_INDEX_OF, tid) < 0; i++)
        usleep(50000);
    assert_int_equal(receipt_entries(tid, &at), 1);
    assert_int_equal(ent_sql(LOG_INDEX_OF, tid), (int64_t)at);
    /* And a further start leaves it alone. */
    stop_ent();
    start_ent();
    uint64_t again = 0;
    assert_int_equal(receipt_entries(tid, &again), 1);
    assert_int_equal(again, at);
    assert_true(wait_until(ent_cosigned_current, 10000));
}

static uint64_t refusals_before_fork;

static int centre_refused_ent(void)
{
    return centre_refusals() > refusals_before_fork;
}

/* The enterprise's witness state reports a refusal of the checkpoint it published last, which
 * covers its whole log. Until the log stops growing, a refusal of an earlier checkpoint is
 * followed by another submission, and the state passes through other values meanwhile. */
static int ent_refused_current(void)
{
    tdsx_arena_t *a = NULL;
    const Tdsx__LogStatusResponse *st = status(&W.ent, &a);
    tdsx_checkpoint_t pub;
    char want[64];
    int ok =
        st->published.len && open_cp(&st->published, &W.ent_v, &pub) == 0 && pub.size == st->size;
    if (ok) {
        snprintf(want, sizeof want, "refused size %llu:", (unsigned long long)pub.size);
        ok = strstr(st->witness_state, want) != NULL;
    }
    tdsx_arena_free(a);
    return ok;
}

static void witness_refuses_a_fork(void **state)
{
    (void)state;
    char *out = NULL, tid[33];
    assert_true(wait_until(ent_cosigned_current, 10000));
    stop_ent();
    assert_int_equal(tdsx_test_run(&out, "cp -a '%s' '%s.bak'", W.ent.data, W.ent.data), 0);
    free(out);
    start_ent();
    send_one("before-restore-1", tid);
    send_one("before-restore-2", tid);
    assert_true(wait_until(ent_cosigned_current, 10000));
    stop_ent();
    /* The operator restores yesterday's backup of the whole data directory: locally nothing
     * tells it from the real thing, and new transfers grow another history. */
    assert_int_equal(
        tdsx_test_run(&out, "rm -rf '%s' && mv '%s.bak' '%s'", W.ent.data, W.ent.data, W.ent.data),
        0);
    free(out);
    refusals_before_fork = centre_refusals();
    start_ent();
    send_one("forked-1", tid);
    send_one("forked-2", tid);
    send_one("forked-3", tid);
    assert_true(wait_until(centre_refused_ent, 15000));
    assert_true(tdsx_test_log_wait(&W.centre, 10000, "\"event\":\"log.witness_refused\"", W.ent.id,
                                   "TDSX_E_LOG_INCONSISTENT", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"log.witness_refused\"",
                                   "TDSX_E_LOG_INCONSISTENT", NULL));
    /* The refusal may have been of a checkpoint before the last transfer; the node then
     * publishes and submits again, and is refused again: wait for the refusal of the whole
     * forked log rather than read the state at an arbitrary moment. */
    assert_true(wait_until(ent_refused_current, 15000));
    tdsx_arena_t *a = NULL;
    const Tdsx__LogStatusResponse *st = NULL;
    /* The centre's own log holds the evidence; its count is what its report will say. */
    assert_true(find_entry(&W.centre, &W.centre_v, 0, "witness-refusal node", W.ent.id) >= 0);
    assert_int_equal(tdsx_test_run(&out, "tdsx log status --socket '%s'", W.centre.sock), 0);
    assert_non_null(strstr(out, "refused"));
    free(out);
    /* What the centre cosigned for the node is still the real history, not the fork. */
    st = status(&W.ent, &a);
    tdsx_checkpoint_t cos, pub;
    assert_int_equal(open_cp(&st->cosigned, &W.ent_v, &cos), 0);
    assert_int_equal(open_cp(&st->published, &W.ent_v, &pub), 0);
    assert_true(cos.size != pub.size || memcmp(cos.root.b, pub.root.b, TDSX_HASH_LEN) != 0);
    tdsx_arena_free(a);
}

/* SIGTERM: every daemon drains its log queue and exits cleanly (no leak under ASan). */
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
        cmocka_unit_test(entry_round_trip),
        cmocka_unit_test(entry_defects_refused),
        cmocka_unit_test(witness_decides),
        cmocka_unit_test(receipts_are_logged),
        cmocka_unit_test(proof_files_verify_offline),
        cmocka_unit_test(proofs_beyond_the_log_refused),
        cmocka_unit_test(checkpoints_cosigned_by_centre),
        cmocka_unit_test(policy_and_agreements_logged),
        cmocka_unit_test(witness_refuses_forged_submissions),
        cmocka_unit_test(crash_recovers_every_acknowledged_receipt),
        cmocka_unit_test(stale_log_directory_refused_at_start),
        cmocka_unit_test(unmarked_receipt_found_not_duplicated),
        cmocka_unit_test(unlogged_receipt_logged_at_start),
        cmocka_unit_test(witness_refuses_a_fork),
        cmocka_unit_test(daemons_stop_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
