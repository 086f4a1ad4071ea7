/*
 * Non-repudiation of a delivery attempt (SPEC §10, §11) with real daemons: an enterprise
 * sends to a brain that has received everything and then goes silent (SIGSTOP, caught by the
 * filesystem event of its object leaving tmp/). Within receipt_timeout (2 s here) the sender
 * must sign an NRD with its own key, keep it under nrd/, log it, and tell the client
 * "state nrd". Also: receipt_timeout below its 1 s minimum is refused by --check-config.
 */
#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "store.h"
#include "tlog.h"

#define TAGS                                                                                       \
    "grade=general:1 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"
#define ARENA_BUDGET (16u << 20)
#define RECEIPT_TIMEOUT_MS 2000

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t brain, ent;
    char *file;
    tdsx_note_verifier_t ent_v;
    uint8_t ent_pk[crypto_sign_PUBLICKEYBYTES], brain_pk[crypto_sign_PUBLICKEYBYTES];
    /* What the NRD transfer left behind (filled by nrd_when_receiver_stops). */
    char tid[33];
    uint8_t *nrd;
    size_t nrd_len;
    int frozen;
} world_t;

static world_t W;

/* ---- helpers ------------------------------------------------------------------------------- */

static void keys_of(const tdsx_test_node_t *n, tdsx_note_verifier_t *note_v,
                    uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
    char *path = tdsx_test_path(n->creds, "sign.key");
    uint8_t seed[32], sk[crypto_sign_SECRETKEYBYTES];
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    if (note_v) {
        tdsx_note_signer_t *s = NULL;
        assert_int_equal(tdsx_note_signer_new(n->id, TDSX_NOTE_ED25519, seed, &s), 0);
        *note_v = *tdsx_note_signer_verifier(s);
        tdsx_note_signer_free(s);
    }
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    free(path);
}

/* Opens `env` as an NRD with a verifier that holds only `pk`; 0 and the message in *out (in
 * arena), or the error. */
static int open_nrd(const uint8_t *pk, tdsx_bytes_t env, tdsx_arena_t *arena, Tdsx__Nrd **out)
{
    tdsx_verifier_t *v = NULL;
    ProtobufCMessage *msg = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    int rc = tdsx_statement_open(v, TDSX_STATEMENT_NRD, env, arena, &msg, NULL);
    tdsx_verifier_free(v);
    if (rc == 0)
        *out = (Tdsx__Nrd *)msg;
    return rc;
}

/* Inclusion proof of entry `index` of the enterprise's log: 0 and the entry bytes (heap, in
 * *entry) when the proof leads to the root of the checkpoint signed by the enterprise, or
 * the control call's error. `flip` >= 0 changes one byte of the proof's path first. */
static int proven_entry(uint64_t index, int flip, uint8_t **entry, size_t *entry_len)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogProofRequest pq = TDSX__LOG_PROOF_REQUEST__INIT;
    Tdsx__LocalResponse *resp = NULL;
    tdsx_arena_t *a = NULL;
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    tdsx_hash_t leaf, path[TDSX_MERKLE_PATH_MAX];
    pq.index = index;
    req.id = 7;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_PROOF;
    req.log_proof = &pq;
    assert_int_equal(tdsx_arena_new(ARENA_BUDGET, &a), 0);
    int rc = tdsx_control_call(W.ent.sock, &req, a, 30000, NULL, NULL, &resp);
    if (rc == 0 && resp->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR)
        rc = tdsx_err_from_wire(resp->error->code);
    if (rc)
        goto done;
    const Tdsx__LogProofResponse *p = resp->log_proof;
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(p->checkpoint.data, p->checkpoint.len),
                                          &W.ent_v, NULL, 0, W.ent_v.name, &note, &cp),
                     0);
    assert_true(p->n_hashes <= TDSX_MERKLE_PATH_MAX);
    for (size_t i = 0; i < p->n_hashes; i++) {
        assert_int_equal(p->hashes[i].len, TDSX_HASH_LEN);
        memcpy(path[i].b, p->hashes[i].data, TDSX_HASH_LEN);
    }
    if (flip >= 0 && p->n_hashes > 0)
        path[0].b[flip % TDSX_HASH_LEN] ^= 0x01;
    assert_int_equal(tdsx_merkle_leaf_hash(p->entry.data, p->entry.len, &leaf), 0);
    rc = tdsx_merkle_inclusion_verify(index, cp.size, &leaf, path, p->n_hashes, &cp.root);
    if (rc == 0) {
        *entry = malloc(p->entry.len ? p->entry.len : 1);
        assert_non_null(*entry);
        memcpy(*entry, p->entry.data, p->entry.len);
        *entry_len = p->entry.len;
    }
done:
    tdsx_note_free(note);
    tdsx_arena_free(a);
    return rc;
}

/* The index of the enterprise's log entry of `type` whose second item is `env`, or -1. */
static long entry_holding(uint8_t type, const uint8_t *env, size_t env_len)
{
    for (uint64_t i = 0;; i++) {
        uint8_t *e = NULL;
        size_t n = 0;
        int rc = proven_entry(i, -1, &e, &n);
        if (rc == TDSX_E_NOTFOUND)
            return -1; /* past the end */
        assert_int_equal(rc, 0);
        tdsx_log_entry_t pe;
        assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(e, n), &pe), 0);
        int hit = pe.type == type && pe.n == 2 && pe.item[1].n == env_len &&
                  memcmp(pe.item[1].p, env, env_len) == 0;
        free(e);
        if (hit)
            return (long)i;
    }
}

typedef struct {
    int rc;
    char *out;
} send_t;

static void *send_thread(void *arg)
{
    send_t *s = arg;
    s->rc = tdsx_test_run(&s->out,
                          "tdsx send --socket '%s' --to %s '%s' --dataset nrd-1 --tags '%s' 2>&1",
                          W.ent.sock, W.brain.id, W.file, TAGS);
    return NULL;
}

/* Waits (up to timeout_ms) for a .part file to leave `dir` (deleted or renamed once the
 * object is published): 1 when seen. */
static int part_left(int fd, int timeout_ms)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf);
        for (ssize_t off = 0; n > 0 && off < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            size_t len = ev->len ? strlen(ev->name) : 0;
            if ((ev->mask & (IN_DELETE | IN_MOVED_FROM)) && len > 5 &&
                strcmp(ev->name + len - 5, ".part") == 0)
                return 1;
            off += (ssize_t)(sizeof *ev + ev->len);
        }
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    char extra[1024];
    tdsx_test_province_init(&W.p);
    tdsx_test_node_issue(&W.p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(&W.p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    /* idle_timeout far beyond the receipt deadline: the silent brain must not be cut first
     * (the stall timer only runs while bytes are waiting, and a small payload leaves none). */
    tdsx_test_node_config(&W.p, &W.brain, "checkpoint_interval 200ms\nidle_timeout 60s\n");
    snprintf(extra, sizeof extra,
             "checkpoint_interval 200ms\nidle_timeout 60s\nreceipt_timeout 2s\n"
             "peer %s 127.0.0.1:%d\n",
             W.brain.id, W.brain.port);
    tdsx_test_node_config(&W.p, &W.ent, extra);
    W.file = tdsx_test_path(W.p.dir, "payload.bin");
    tdsx_test_write_file(W.file, "日期,产量\n2026-11-01,1200\n", 30);
    keys_of(&W.ent, &W.ent_v, W.ent_pk);
    keys_of(&W.brain, NULL, W.brain_pk);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    usleep(200000); /* the Hellos */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (W.frozen && W.brain.pid > 0)
        kill(W.brain.pid, SIGCONT);
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    free(W.file);
    free(W.nrd);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- the NRD -------------------------------------------------------------------------------- */

static void nrd_when_receiver_stops(void **state)
{
    (void)state;
    char *tmp = tdsx_test_path(W.brain.data, "tmp");
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    assert_true(fd >= 0);
    assert_true(inotify_add_watch(fd, tmp, IN_DELETE | IN_MOVED_FROM) >= 0);
    free(tmp);

    send_t s = {-1, NULL};
    pthread_t th;
    struct timespec t0, t1;
    assert_int_equal(pthread_create(&th, NULL, send_thread, &s), 0);
    int seen = part_left(fd, 15000);
    /* Frozen before it can answer: its NRR waits for a signature and a durable log entry. */
    if (seen)
        W.frozen = kill(W.brain.pid, SIGSTOP) == 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pthread_join(th, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    assert_true(seen);
    assert_true(W.frozen);
    if (s.rc != 1)
        fail_msg("send: exit %d, expected 1: %s", s.rc, s.out ? s.out : "");
    assert_non_null(strstr(s.out, "state      nrd\n"));
    /* Not before the deadline (less the time between TransferEnd and the freeze). */
    long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(waited_ms >= RECEIPT_TIMEOUT_MS - 500);
    assert_true(waited_ms < RECEIPT_TIMEOUT_MS + 5000);
    const char *t = strstr(s.out, "transfer   ");
    assert_non_null(t);
    memcpy(W.tid, t + 11, 32);
    W.tid[32] = '\0';
    free(s.out);

    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"transfer.nrd\"", W.tid, NULL));
    /* The brain never said it received: no receipt event on its side either. */
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"event\":\"transfer.receipted\"", NULL), 0);

    char name[64];
    snprintf(name, sizeof name, "nrd/%s.env", W.tid);
    char *path = tdsx_test_path(W.ent.data, name);
    uint8_t *env = NULL;
    assert_int_equal(tdsx_file_read(path, TDSX_ENVELOPE_MAX, &env, &W.nrd_len), 0);
    W.nrd = malloc(W.nrd_len);
    assert_non_null(W.nrd);
    memcpy(W.nrd, env, W.nrd_len);
    tdsx_free(env);
    free(path);
}

static void nrd_signed_by_sender_names_transfer_and_nro(void **state)
{
    (void)state;
    assert_non_null(W.nrd);
    tdsx_arena_t *a = NULL;
    Tdsx__Nrd *nrd = NULL;
    assert_int_equal(tdsx_arena_new(ARENA_BUDGET, &a), 0);
    assert_int_equal(open_nrd(W.ent_pk, tdsx_bytes(W.nrd, W.nrd_len), a, &nrd), 0);
    uint8_t id[TDSX_TRANSFER_ID_LEN];
    assert_int_equal(tdsx_hex_decode(id, sizeof id, W.tid), 0);
    assert_int_equal(nrd->transfer_id.len, TDSX_TRANSFER_ID_LEN);
    assert_memory_equal(nrd->transfer_id.data, id, sizeof id);
    assert_string_equal(nrd->sender, W.ent.id);
    assert_string_equal(nrd->receiver, W.brain.id);
    assert_non_null(strstr(nrd->reason, "no receipt"));

    /* The NRO it names is the one logged beside it. */
    long at = entry_holding(TDSX_LOG_ENTRY_NRD, W.nrd, W.nrd_len);
    assert_true(at >= 0);
    uint8_t *e = NULL;
    size_t n = 0;
    assert_int_equal(proven_entry((uint64_t)at, -1, &e, &n), 0);
    tdsx_log_entry_t pe;
    assert_int_equal(tdsx__log_entry_parse(tdsx_bytes(e, n), &pe), 0);
    tdsx_hash_t nro_hash;
    assert_int_equal(tdsx_envelope_hash(pe.item[0], &nro_hash), 0);
    assert_int_equal(nrd->nro_hash.len, TDSX_HASH_LEN);
    assert_memory_equal(nrd->nro_hash.data, nro_hash.b, TDSX_HASH_LEN);
    /* ... and that NRO is ent's own, for the same transfer. */
    tdsx_verifier_t *v = NULL;
    ProtobufCMessage *msg = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, W.ent_pk), 0);
    assert_int_equal(tdsx_statement_open(v, TDSX_STATEMENT_NRO, pe.item[0], a, &msg, NULL), 0);
    Tdsx__Nro *nro = (Tdsx__Nro *)msg;
    assert_int_equal(nro->transfer_id.len, TDSX_TRANSFER_ID_LEN);
    assert_memory_equal(nro->transfer_id.data, id, sizeof id);
    tdsx_verifier_free(v);
    free(e);
    tdsx_arena_free(a);
}

static void nrd_refused_with_wrong_key_kind_or_byte(void **state)
{
    (void)state;
    assert_non_null(W.nrd);
    tdsx_arena_t *a = NULL;
    Tdsx__Nrd *nrd = NULL;
    assert_int_equal(tdsx_arena_new(ARENA_BUDGET, &a), 0);
    /* The receiver's key does not vouch for it. */
    assert_int_not_equal(open_nrd(W.brain_pk, tdsx_bytes(W.nrd, W.nrd_len), a, &nrd), 0);
    /* It is not a receipt. */
    tdsx_verifier_t *v = NULL;
    ProtobufCMessage *msg = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, W.ent_pk), 0);
    assert_int_not_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_NRR, tdsx_bytes(W.nrd, W.nrd_len), a, &msg, NULL), 0);
    tdsx_verifier_free(v);
    /* One changed byte anywhere in the second half (payload and signature) breaks it. */
    uint8_t *bad = malloc(W.nrd_len);
    assert_non_null(bad);
    for (size_t i = W.nrd_len / 2; i < W.nrd_len; i += 7) {
        memcpy(bad, W.nrd, W.nrd_len);
        bad[i] ^= 0x20;
        assert_int_not_equal(open_nrd(W.ent_pk, tdsx_bytes(bad, W.nrd_len), a, &nrd), 0);
    }
    free(bad);
    tdsx_arena_free(a);
}

static void nrd_is_a_proven_log_entry(void **state)
{
    (void)state;
    assert_non_null(W.nrd);
    long at = entry_holding(TDSX_LOG_ENTRY_NRD, W.nrd, W.nrd_len);
    assert_true(at >= 0);
    /* Exactly once, and never as a receipt. */
    assert_int_equal(entry_holding(TDSX_LOG_ENTRY_RECEIPT, W.nrd, W.nrd_len), -1);
    uint8_t *e = NULL;
    size_t n = 0;
    assert_int_equal(proven_entry((uint64_t)at, -1, &e, &n), 0);
    char what[600];
    tdsx__log_entry_describe(tdsx_bytes(e, n), what, sizeof what);
    assert_non_null(strstr(what, "nrd"));
    free(e);
    /* A proof with one hash changed does not lead to the signed root. */
    e = NULL;
    assert_int_equal(proven_entry((uint64_t)at, 3, &e, &n), TDSX_E_MERKLE_PROOF);
    assert_null(e);
    /* The receiver's log holds no NRD. */
    char *nrd_dir = tdsx_test_path(W.brain.data, "nrd");
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "ls -A '%s'", nrd_dir), 0);
    assert_true(out == NULL || out[0] == '\0');
    free(out);
    free(nrd_dir);
}

static void daemons_stop_cleanly(void **state)
{
    (void)state;
    assert_true(W.frozen);
    assert_int_equal(kill(W.brain.pid, SIGCONT), 0);
    W.frozen = 0;
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    assert_int_equal(tdsx_test_node_stop(&W.brain, 10000), 0);
}

/* ---- receipt_timeout in the configuration ------------------------------------------------- */

static int check_config(const char *receipt_timeout, char **out)
{
    char extra[128], *conf = tdsx_test_path(W.p.dir, "rt.conf");
    tdsx_test_node_t n = W.ent;
    n.conf = conf;
    snprintf(extra, sizeof extra, "receipt_timeout %s\n", receipt_timeout);
    tdsx_test_node_config(&W.p, &n, extra);
    int rc = tdsx_test_run(out, "tdsxd -c '%s' --check-config 2>&1", conf);
    free(conf);
    return rc;
}

static void receipt_timeout_bounds(void **state)
{
    (void)state;
    static const char *refused[] = {"500ms", "999ms", "0s", "-1s", "soon", "25h"};
    static const char *accepted[] = {"1s", "1000ms", "2s", "24h"};
    char *out = NULL;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        int rc = check_config(refused[i], &out);
        if (rc == 0 || !out || !strstr(out, "receipt_timeout"))
            fail_msg("receipt_timeout %s: exit %d: %s", refused[i], rc, out ? out : "");
        free(out);
        out = NULL;
    }
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        int rc = check_config(accepted[i], &out);
        if (rc != 0)
            fail_msg("receipt_timeout %s: exit %d: %s", accepted[i], rc, out ? out : "");
        free(out);
        out = NULL;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nrd_when_receiver_stops),
        cmocka_unit_test(nrd_signed_by_sender_names_transfer_and_nro),
        cmocka_unit_test(nrd_refused_with_wrong_key_kind_or_byte),
        cmocka_unit_test(nrd_is_a_proven_log_entry),
        cmocka_unit_test(daemons_stop_cleanly),
        cmocka_unit_test(receipt_timeout_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
