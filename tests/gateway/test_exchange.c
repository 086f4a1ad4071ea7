/*
 * Integration tests of the exchange: real tdsxd processes on loopback (a centre, a brain that
 * dials it, an enterprise that dials the brain), real mutual TLS, the real `tdsx` commands.
 *
 * What a user would notice: a published dataset can be listed and pulled and arrives byte for
 * byte; a pushed file arrives and can be relayed; both parties hold the same receipt and it
 * verifies offline against the province root (and not when a byte is changed or another root
 * is trusted); a thousand transfers asked for at once on one connection all end receipted;
 * every bad transfer is refused with its own code in the receiver's log and leaves nothing in
 * its object store; a receiver killed mid-transfer resumes from what it held durably.
 *
 * The refusals are provoked by a raw client holding the enterprise's credentials: it speaks
 * TLS through the gateway's own engine, sends its Hello, and signs its own NROs with the
 * enterprise's sign key, so it can lie in ways the daemon never would.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "local.pb-c.h"
#include "policy.h"
#include "proto.h"

#define TAGS                                                                                       \
    "grade=general:2 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"
#define MIB (1024u * 1024u)
#define BRAIN_WINDOW (64u * 1024u) /* the brain's stream_window below */
#define MANY 1000                  /* concurrent transfers on one control connection */
#define BIG_SIZE (48u * MIB)       /* the transfer whose receiver is killed */
#define BIG_KILL_AT (8u * MIB)

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    tdsx_test_node_t ent2; /* registered, never started: a key the brain has never seen */
    char *files;           /* payloads, receipts and command output */
    char *root;            /* the province root (the auditor's anchor) */
    char *foreign_root;    /* an unrelated CA's root */
    char pull_tid[33];     /* ds1 pulled by the brain from the enterprise */
    char push_tid[33];     /* d2 pushed by the enterprise to the brain */
    char *push_receipt;    /* its receipt as `tdsx send --receipt-out` wrote it */
} world_t;

static world_t W;

/* ---- small helpers --------------------------------------------------------------------------- */

static char *str_printf(const char *fmt, ...) TDSX_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    return s;
}

/* Runs a shell command line (stderr folded into the output); the output is never NULL. When
 * want >= 0 and the exit status differs, prints the command and its output and fails. */
static char *run(int want, int *status, const char *fmt, ...) TDSX_PRINTF(3, 4);
static char *run(int want, int *status, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL, *out = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    int rc = tdsx_test_run(&out, "%s 2>&1", cmd);
    if (!out) {
        out = strdup("");
        assert_non_null(out);
    }
    if (want >= 0 && rc != want) {
        fprintf(stderr, "$ %s\nexit %d (wanted %d)\n%s\n", cmd, rc, want, out);
        free(cmd);
        fail_msg("command exited %d, wanted %d", rc, want);
    }
    if (status)
        *status = rc;
    free(cmd);
    return out;
}

/* The value after `label` on its line of `out` (e.g. "transfer   "), or "" when absent. */
static void field(const char *out, const char *label, char *val, size_t size)
{
    val[0] = '\0';
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, label, strlen(label)) == 0) {
            const char *v = l + strlen(label);
            size_t n = strcspn(v, "\n");
            snprintf(val, size, "%.*s", (int)(n < size ? n : size - 1), v);
            return;
        }
    }
}

static int count_substr(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Deterministic bytes (xorshift64), different for every seed. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        p[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

/* Writes `size` bytes from seed into W.files/name; returns the path and its SHA-256. */
static char *make_file(const char *name, size_t size, uint64_t seed, uint8_t sha[32])
{
    uint8_t *b = malloc(size ? size : 1);
    assert_non_null(b);
    fill(b, size, seed);
    char *path = tdsx_test_path(W.files, name);
    tdsx_test_write_file(path, b, size);
    assert_int_equal(tdsx_sha256(b, size, sha), 0);
    free(b);
    return path;
}

static int files_equal(const char *a, const char *b)
{
    uint8_t *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    int eq = tdsx_file_read(a, 256u * MIB, &pa, &na) == 0 &&
             tdsx_file_read(b, 256u * MIB, &pb, &nb) == 0 && na == nb && memcmp(pa, pb, na) == 0;
    tdsx_free(pa);
    tdsx_free(pb);
    return eq;
}

static char *object_path(const tdsx_test_node_t *n, const uint8_t sha[32])
{
    char hex[65];
    tdsx_hex_encode(hex, sha, 32);
    return str_printf("%s/objects/%.2s/%s", n->data, hex, hex);
}

static int object_exists(const tdsx_test_node_t *n, const uint8_t sha[32])
{
    char *p = object_path(n, sha);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static int part_exists(const tdsx_test_node_t *n, const char *tid_hex)
{
    char *p = str_printf("%s/tmp/%s.part", n->data, tid_hex);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static int n_files;
static int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)st;
    (void)ftw;
    if (flag == FTW_F)
        n_files++;
    return 0;
}

/* Files under the node's objects/ (every committed payload). */
static int count_objects(const tdsx_test_node_t *n)
{
    char *dir = str_printf("%s/objects", n->data);
    n_files = 0;
    assert_int_equal(nftw(dir, count_one, 16, FTW_PHYS), 0);
    free(dir);
    return n_files;
}

/* Waits until the node's log has more than `before` lines holding a, b and c (b and c may be
 * NULL). */
static int log_grows(const tdsx_test_node_t *n, int before, const char *a, const char *b,
                     const char *c)
{
    for (int i = 0; i < 250; i++) {
        if (tdsx_test_log_count(n, a, b, c, NULL) > before)
            return 1;
        usleep(20000);
    }
    return 0;
}

/* Every line of `tdsx receipts list` on the node, all pages. */
static char *all_receipts(const tdsx_test_node_t *n)
{
    char *acc = strdup(""), token[700] = "";
    assert_non_null(acc);
    for (int page = 0; page < 100; page++) {
        char *out =
            *token ? run(0, NULL, "tdsx receipts list --socket '%s' --page '%s'", n->sock, token)
                   : run(0, NULL, "tdsx receipts list --socket '%s'", n->sock);
        char *next = strstr(out, "next page: --page ");
        if (next) {
            snprintf(token, sizeof token, "%.*s", (int)strcspn(next + 18, "\n"), next + 18);
            *next = '\0';
        }
        char *joined = str_printf("%s%s", acc, out);
        free(acc);
        free(out);
        acc = joined;
        if (!next)
            return acc;
    }
    fail_msg("receipts list never ended");
    return acc;
}

/* The `streams=` count `tdsx status` shows for the node's connection to `peer`. */
static unsigned long streams_to(const tdsx_test_node_t *n, const char *peer)
{
    char *out = run(0, NULL, "tdsx status --socket '%s'", n->sock);
    const char *l = strstr(out, peer);
    assert_non_null(l);
    const char *s = strstr(l, "streams=");
    assert_non_null(s);
    unsigned long v = strtoul(s + 8, NULL, 10);
    free(out);
    return v;
}

/* Waits until `from` can talk to `to` (connection open, Hello verified): a remote catalog
 * listing answers only then. */
static void wait_linked(const tdsx_test_node_t *from, const tdsx_test_node_t *to)
{
    for (int i = 0; i < 150; i++) {
        if (tdsx_test_run(NULL, "tdsx catalog list --from '%s' --socket '%s' >/dev/null 2>&1",
                          to->id, from->sock) == 0)
            return;
        usleep(100000);
    }
    fail_msg("%s never linked to %s", from->name, to->name);
}

/* ---- world ----------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent2, "ent2", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.files = tdsx_test_path(p->dir, "files");
    assert_int_equal(mkdir(W.files, 0700), 0);
    W.root = str_printf("%s/root.pem", p->ca);
    W.foreign_root = str_printf("%s/root.pem", p->foreign);

    /* The centre checkpoints received payloads every MiB (the resume test needs a durable
     * offset well inside its 48 MiB). The brain grants 64 KiB windows: a MiB payload needs
     * many WindowUpdates, and one legal 256 KiB chunk can overrun a window. */
    tdsx_test_node_config(p, &W.centre, "sync_every 1m\n");
    char *extra =
        str_printf("peer %s 127.0.0.1:%d\nstream_window 64k\n", W.centre.id, W.centre.port);
    tdsx_test_node_config(p, &W.brain, extra);
    free(extra);
    extra = str_printf("peer %s 127.0.0.1:%d\n", W.brain.id, W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    free(extra);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* daemons_stop_cleanly stopped them; after a failure this kills what is left. */
    tdsx_test_node_t *all[] = {&W.ent, &W.brain, &W.centre, &W.ent2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tdsx_test_node_free(all[i]);
    free(W.root);
    free(W.foreign_root);
    free(W.push_receipt);
    free(W.files);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- through the CLI ------------------------------------------------------------------------- */

/* Every dialled link is up both ways, Hello included, before anything is sent. */
static void nodes_link_up(void **state)
{
    (void)state;
    wait_linked(&W.ent, &W.brain);
    wait_linked(&W.brain, &W.ent);
    wait_linked(&W.brain, &W.centre);
    wait_linked(&W.centre, &W.brain);
}

/* 1. publish + pull: the brain lists the enterprise's catalog and pulls a dataset; the object
 * it stores is the published file, byte for byte, readable by the owner only. */
static void publish_list_pull(void **state)
{
    (void)state;
    uint8_t sha[32];
    char hex[65], val[4096];
    char *file = make_file("ds1.bin", MIB + 123, 1, sha);
    tdsx_hex_encode(hex, sha, 32);
    char *out = run(0, NULL,
                    "tdsx catalog publish '%s' --id ds1 --tags '%s' --title 'Line 3 process "
                    "parameters' --socket '%s'",
                    file, TAGS, W.ent.sock);
    assert_non_null(strstr(out, "published  ds1"));
    field(out, "sha256     ", val, sizeof val);
    assert_string_equal(val, hex);
    free(out);

    out = run(0, NULL, "tdsx catalog list --from '%s' --socket '%s'", W.ent.id, W.brain.sock);
    const char *line = strstr(out, "ds1 ");
    assert_non_null(line);
    assert_non_null(strstr(line, W.ent.id));
    assert_non_null(strstr(line, "Line 3 process parameters"));
    free(out);

    out = run(0, NULL, "tdsx pull --from '%s' ds1 --socket '%s'", W.ent.id, W.brain.sock);
    field(out, "state      ", val, sizeof val);
    assert_string_equal(val, "receipted");
    field(out, "sha256     ", val, sizeof val);
    assert_string_equal(val, hex);
    field(out, "transfer   ", W.pull_tid, sizeof W.pull_tid);
    assert_int_equal(strlen(W.pull_tid), 32);
    field(out, "object     ", val, sizeof val);
    free(out);
    char *expected = object_path(&W.brain, sha);
    assert_string_equal(val, expected);
    free(expected);
    assert_true(files_equal(val, file));
    struct stat st;
    assert_int_equal(stat(val, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.receipted\"", W.pull_tid,
                                   "\"dir\":\"in\"", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"transfer.receipted\"", W.pull_tid,
                                   "\"dir\":\"out\"", NULL));
    free(file);
}

/* 2. push: the enterprise sends a file to the brain (receipt written out), and the brain
 * relays what it stored to the centre. */
static void push_and_relay(void **state)
{
    (void)state;
    uint8_t sha[32];
    char val[4096];
    char *file = make_file("d2.bin", 300 * 1024 + 7, 2, sha);
    W.push_receipt = tdsx_test_path(W.files, "d2.receipt");
    char *out = run(0, NULL,
                    "tdsx send --to '%s' '%s' --dataset d2 --tags '%s' --receipt-out '%s' "
                    "--socket '%s'",
                    W.brain.id, file, TAGS, W.push_receipt, W.ent.sock);
    field(out, "state      ", val, sizeof val);
    assert_string_equal(val, "receipted");
    field(out, "length     ", val, sizeof val);
    assert_string_equal(val, "307207");
    field(out, "transfer   ", W.push_tid, sizeof W.push_tid);
    assert_int_equal(strlen(W.push_tid), 32);
    free(out);
    char *at_brain = object_path(&W.brain, sha);
    assert_true(files_equal(at_brain, file));
    assert_int_equal(access(W.push_receipt, R_OK), 0);

    /* The relay: the brain's stored object goes on to the centre. */
    out = run(0, NULL, "tdsx send --to '%s' '%s' --dataset d2 --tags '%s' --socket '%s'",
              W.centre.id, at_brain, TAGS, W.brain.sock);
    field(out, "state      ", val, sizeof val);
    assert_string_equal(val, "receipted");
    free(out);
    char *at_centre = object_path(&W.centre, sha);
    assert_true(files_equal(at_centre, file));
    free(at_centre);
    free(at_brain);
    free(file);
}

/* 3. Both parties hold the very same receipt bytes, and it verifies offline against the
 * province root, naming both parties. */
static void receipts_identical_and_valid(void **state)
{
    (void)state;
    assert_int_equal(strlen(W.push_tid), 32);
    char *a = tdsx_test_path(W.files, "d2.sender.receipt");
    char *b = tdsx_test_path(W.files, "d2.receiver.receipt");
    char *out = run(0, NULL, "tdsx receipts show %s --anchor '%s' --out '%s' --socket '%s'",
                    W.push_tid, W.root, a, W.ent.sock);
    assert_non_null(strstr(out, "status     accepted"));
    free(out);
    out = run(0, NULL, "tdsx receipts show %s --anchor '%s' --out '%s' --socket '%s'", W.push_tid,
              W.root, b, W.brain.sock);
    free(out);
    assert_true(files_equal(a, b));
    assert_true(files_equal(a, W.push_receipt));

    out = run(0, NULL, "tdsx receipts verify '%s' --anchor '%s'", a, W.root);
    assert_non_null(strstr(out, "VALID"));
    assert_null(strstr(out, "INVALID"));
    char val[512];
    field(out, "transfer   ", val, sizeof val);
    assert_string_equal(val, W.push_tid);
    field(out, "sender     ", val, sizeof val);
    assert_string_equal(val, W.ent.id);
    field(out, "receiver   ", val, sizeof val);
    assert_string_equal(val, W.brain.id);
    field(out, "dataset    ", val, sizeof val);
    assert_string_equal(val, "d2");
    field(out, "status     ", val, sizeof val);
    assert_string_equal(val, "accepted");
    free(out);
    free(a);
    free(b);
}

/* Finds `part` inside `whole` (it must be there). */
static size_t offset_of(const uint8_t *whole, size_t n, ProtobufCBinaryData part)
{
    const uint8_t *at = memmem(whole, n, part.data, part.len);
    assert_non_null(at);
    return (size_t)(at - whole);
}

/* Writes `b` with one byte flipped at `off` and checks `tdsx receipts verify` refuses it. */
static void expect_tamper_refused(const uint8_t *b, size_t n, size_t off, const char *what)
{
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, b, n);
    copy[off] ^= 0x20;
    char *path = tdsx_test_path(W.files, "tampered.receipt");
    tdsx_test_write_file(path, copy, n);
    int rc = 0;
    char *out = run(-1, &rc, "tdsx receipts verify '%s' --anchor '%s'", path, W.root);
    if (rc != 1 || !strstr(out, "INVALID"))
        fprintf(stderr, "tampered %s at %zu: exit %d\n%s\n", what, off, rc, out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "INVALID"));
    free(out);
    free(path);
    free(copy);
}

/* 4. One flipped byte anywhere that matters makes the receipt invalid (exit 1); so does
 * trusting another root, cutting it short, or pairing the NRR of another transfer. */
static void tampered_receipt_refused(void **state)
{
    (void)state;
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(tdsx_file_read(W.push_receipt, 1u << 24, &b, &n), 0);
    Tdsx__ReceiptBundle *rb = tdsx__receipt_bundle__unpack(NULL, n, b);
    assert_non_null(rb);
    Tdsx__Envelope *nro = tdsx__envelope__unpack(NULL, rb->nro.len, rb->nro.data);
    Tdsx__Envelope *nrr = tdsx__envelope__unpack(NULL, rb->nrr.len, rb->nrr.data);
    assert_non_null(nro);
    assert_non_null(nrr);
    assert_true(nro->n_signatures >= 1 && nrr->n_signatures >= 1);
    assert_true(rb->sender_cert.len > 0 && rb->receiver_cert.len > 0);

    /* The untouched file is valid: what follows fails because of the flipped byte alone. */
    char *out = run(0, NULL, "tdsx receipts verify '%s' --anchor '%s'", W.push_receipt, W.root);
    free(out);

    size_t at = offset_of(b, n, nro->payload);
    expect_tamper_refused(b, n, at + nro->payload.len / 2, "NRO payload");
    expect_tamper_refused(b, n, at + nro->payload.len - 1, "NRO payload end");
    at = offset_of(b, n, nro->signatures[0]->sig);
    expect_tamper_refused(b, n, at + 10, "NRO signature");
    at = offset_of(b, n, nrr->payload);
    expect_tamper_refused(b, n, at + nrr->payload.len / 2, "NRR payload");
    at = offset_of(b, n, nrr->signatures[0]->sig);
    expect_tamper_refused(b, n, at, "NRR signature start");
    expect_tamper_refused(b, n, at + nrr->signatures[0]->sig.len - 1, "NRR signature end");
    at = offset_of(b, n, rb->sender_cert);
    expect_tamper_refused(b, n, at + rb->sender_cert.len / 2, "sender certificate");
    expect_tamper_refused(b, n, at + rb->sender_cert.len - 3, "sender certificate signature");
    at = offset_of(b, n, rb->receiver_cert);
    expect_tamper_refused(b, n, at + rb->receiver_cert.len / 2, "receiver certificate");
    if (rb->n_chain > 0) {
        at = offset_of(b, n, rb->chain[0]);
        expect_tamper_refused(b, n, at + rb->chain[0].len / 2, "intermediate certificate");
    }

    /* Another root: the chains lead nowhere the auditor trusts. */
    int rc = 0;
    out = run(-1, &rc, "tdsx receipts verify '%s' --anchor '%s'", W.push_receipt, W.foreign_root);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "INVALID"));
    assert_non_null(strstr(out, "TDSX_E_CERT_"));
    free(out);

    /* Cut short. */
    char *path = tdsx_test_path(W.files, "short.receipt");
    tdsx_test_write_file(path, b, n / 2);
    out = run(-1, &rc, "tdsx receipts verify '%s' --anchor '%s'", path, W.root);
    assert_int_equal(rc, 1);
    free(out);

    /* The NRR of the pull (same two parties, both halves validly signed) next to the NRO of
     * the push: each half verifies, but the NRR does not acknowledge this NRO. */
    assert_int_equal(strlen(W.pull_tid), 32);
    char *other = tdsx_test_path(W.files, "ds1.receipt");
    out = run(0, NULL, "tdsx receipts show %s --anchor '%s' --out '%s' --socket '%s'", W.pull_tid,
              W.root, other, W.brain.sock);
    free(out);
    uint8_t *ob = NULL;
    size_t on = 0;
    assert_int_equal(tdsx_file_read(other, 1u << 24, &ob, &on), 0);
    Tdsx__ReceiptBundle *orb = tdsx__receipt_bundle__unpack(NULL, on, ob);
    assert_non_null(orb);
    Tdsx__ReceiptBundle spliced = *rb;
    spliced.nrr = orb->nrr;
    size_t sn = tdsx__receipt_bundle__get_packed_size(&spliced);
    uint8_t *sb = malloc(sn);
    assert_non_null(sb);
    tdsx__receipt_bundle__pack(&spliced, sb);
    tdsx_test_write_file(path, sb, sn);
    out = run(-1, &rc, "tdsx receipts verify '%s' --anchor '%s'", path, W.root);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "TDSX_E_HASH_MISMATCH"));
    free(out);

    free(sb);
    tdsx__receipt_bundle__free_unpacked(orb, NULL);
    tdsx_free(ob);
    free(other);
    free(path);
    tdsx__envelope__free_unpacked(nro, NULL);
    tdsx__envelope__free_unpacked(nrr, NULL);
    tdsx__receipt_bundle__free_unpacked(rb, NULL);
    tdsx_free(b);
}

/* 6d. Pulling a dataset the owner does not have fails with its code, on both sides. */
static void pull_unknown_dataset_refused(void **state)
{
    (void)state;
    int rc = 0;
    int before = count_objects(&W.brain);
    char *out =
        run(-1, &rc, "tdsx pull --from '%s' no-such-dataset --socket '%s'", W.ent.id, W.brain.sock);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"transfer.pull_refused\"",
                                   "no-such-dataset", "\"err\":\"TDSX_E_NOTFOUND\"", NULL));
    assert_int_equal(count_objects(&W.brain), before);
}

/* ---- 1,000 transfers on one control connection ----------------------------------------------- */

static void put_request(tdsx_buf_t *out, uint64_t id, const char *path, const char *dataset)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__SendRequest s = TDSX__SEND_REQUEST__INIT;
    req.id = id;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_SEND;
    req.send = &s;
    s.to = W.brain.id;
    s.path = (char *)path;
    s.dataset_id = (char *)dataset;
    s.tags = TAGS;
    size_t len = tdsx__local_request__get_packed_size(&req);
    assert_int_equal(tdsx_buf_u32be(out, (uint32_t)len), 0);
    assert_int_equal(tdsx_buf_reserve(out, len), 0);
    tdsx__local_request__pack(&req, out->p + out->len);
    out->len += len;
}

/* Writes every request in reqs to the sender's control socket without waiting for answers
 * (all at once, or with pace_ms > 0 one request every pace_ms) and reads the answers as they
 * come: on_result sees each final TransferResult (index = request id - 1). Stops when `want`
 * results arrived, after `seconds`, or (may_die) when the sender goes away; returns how many
 * results arrived. */
typedef void (*result_cb)(void *ud, size_t i, const Tdsx__TransferResult *res);

static int send_all(const tdsx_test_node_t *from, const tdsx_buf_t *reqs, int want, int seconds,
                    int may_die, int pace_ms, result_cb on_result, void *ud)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(strlen(from->sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, from->sock, strlen(from->sock) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    tdsx_frame_decoder_t dec;
    assert_int_equal(tdsx_frame_decoder_init(&dec, 1u << 20), 0);

    size_t written = 0, allowed = pace_ms > 0 ? 0 : reqs->len;
    int finals = 0;
    time_t start = time(NULL);
    while (finals < want && time(NULL) - start < seconds) {
        if (written == allowed && allowed < reqs->len) { /* paced: let one more frame go */
            const uint8_t *h = reqs->p + allowed;
            allowed += 4 + ((size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3]);
            usleep((useconds_t)pace_ms * 1000);
        }
        struct pollfd pfd = {fd, (short)(POLLIN | (written < allowed ? POLLOUT : 0)), 0};
        int pr = poll(&pfd, 1, pace_ms > 0 ? 0 : 500);
        assert_true(pr >= 0 || errno == EINTR);
        if (pr <= 0)
            continue;
        if ((pfd.revents & POLLOUT) && written < allowed) {
            ssize_t w = send(fd, reqs->p + written, allowed - written, MSG_NOSIGNAL);
            if (w < 0 && may_die && (errno == EPIPE || errno == ECONNRESET))
                break; /* the sender itself was killed */
            assert_true(w > 0 || errno == EAGAIN || errno == EINTR);
            if (w > 0)
                written += (size_t)w;
        }
        if (!(pfd.revents & (POLLIN | POLLHUP)))
            continue;
        uint8_t buf[65536];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0 && may_die)
            break; /* the sender itself was killed */
        if (r <= 0)
            fail_msg("the daemon closed the control connection after %d results", finals);
        tdsx_bytes_t in = tdsx_bytes(buf, (size_t)r), body;
        int rc;
        while ((rc = tdsx_frame_decoder_next(&dec, &in, &body)) > 0) {
            Tdsx__LocalResponse *m = tdsx__local_response__unpack(NULL, body.n, body.p);
            assert_non_null(m);
            assert_true(m->id >= 1 && m->id <= (uint64_t)want);
            size_t i = (size_t)m->id - 1;
            if (m->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR)
                fail_msg("request %zu refused: %s (%s)", i, m->error->message,
                         tdsx_err_name(tdsx_err_from_wire(m->error->code)));
            if (m->body_case == TDSX__LOCAL_RESPONSE__BODY_RESULT) {
                on_result(ud, i, m->result);
                finals++;
            }
            tdsx__local_response__free_unpacked(m, NULL);
        }
        assert_true(rc >= 0);
    }
    close(fd);
    tdsx_frame_decoder_free(&dec);
    return finals;
}

typedef struct {
    uint8_t (*sha)[32];
    uint8_t (*tid)[16];
    int *done;
} many_t;

static void many_result(void *ud, size_t i, const Tdsx__TransferResult *res)
{
    many_t *m = ud;
    if (strcmp(res->state, "receipted") != 0)
        fail_msg("transfer %zu ended %s: %s", i, res->state, res->message);
    assert_false(m->done[i]); /* exactly one final answer per request */
    m->done[i] = 1;
    assert_int_equal(res->transfer_id.len, 16);
    memcpy(m->tid[i], res->transfer_id.data, 16);
    assert_true(res->length == 1024);
    assert_int_equal(res->sha256.len, 32);
    assert_memory_equal(res->sha256.data, m->sha[i], 32);
    assert_true(res->receipt.len > 0);
}

/* Requests for n new 1 KiB files under files/<prefix>/ (their hashes in sha). */
static void small_requests(const char *prefix, int n, uint64_t seed, uint8_t (*sha)[32],
                           tdsx_buf_t *reqs)
{
    char *dir = tdsx_test_path(W.files, prefix);
    assert_int_equal(mkdir(dir, 0700), 0);
    free(dir);
    tdsx_buf_init(reqs, 64u * MIB);
    for (int i = 0; i < n; i++) {
        char name[64], dataset[64];
        snprintf(name, sizeof name, "%s/%04d.bin", prefix, i);
        snprintf(dataset, sizeof dataset, "%s-%04d", prefix, i);
        char *path = make_file(name, 1024, seed + (uint64_t)i, sha[i]);
        put_request(reqs, (uint64_t)i + 1, path, dataset);
        free(path);
    }
}

/* 5. One control-socket connection asks for 1,000 sends at once (written without waiting for
 * any answer); each gets exactly one final result, all receipted, and both daemons agree. */
static void many_concurrent_transfers(void **state)
{
    (void)state;
    many_t m = {calloc(MANY, 32), calloc(MANY, 16), calloc(MANY, sizeof(int))};
    assert_true(m.sha && m.tid && m.done);
    tdsx_buf_t reqs;
    small_requests("many", MANY, 1000, m.sha, &reqs);
    int objects_before = count_objects(&W.brain);
    assert_int_equal(send_all(&W.ent, &reqs, MANY, 120, 0, 0, many_result, &m), MANY);
    tdsx_buf_free(&reqs);

    /* Every payload is in the brain's store; the transfer ids are all different. */
    for (int i = 0; i < MANY; i++)
        assert_true(object_exists(&W.brain, m.sha[i]));
    assert_int_equal(count_objects(&W.brain), objects_before + MANY);
    char *ent_list = all_receipts(&W.ent), *brain_list = all_receipts(&W.brain);
    for (int i = 0; i < MANY; i++) {
        char hex[33];
        tdsx_hex_encode(hex, m.tid[i], 16);
        assert_int_equal(count_substr(brain_list, hex), 1);
        assert_int_equal(count_substr(ent_list, hex), 1);
    }
    /* Nothing left open on either end of the connection. */
    assert_int_equal(streams_to(&W.ent, W.brain.id), 0);
    assert_int_equal(streams_to(&W.brain, W.ent.id), 0);
    free(ent_list);
    free(brain_list);
    free(m.done);
    free(m.tid);
    free(m.sha);
}

/* 6. Group commit: the brain's writes of a loop turn are committed together and nothing that
 * announces them (its NRR above all) leaves before the commit. The brain runs with every commit
 * delayed by 40 ms (TDSX_FAULT_COMMIT_DELAY_MS), so a SIGKILL during a burst of sends very
 * likely lands between writes and their commit. Whatever the enterprise was told is receipted
 * must still be in the brain's store after it restarts: the receipt and the object. (The NRR
 * also waits for its log entry, a later turn, so this holds twice over; 6b is the test that
 * fails when output is not held.) */
#define KILL_N 300
#define KILL_AFTER 40

typedef struct {
    uint8_t (*sha)[32];
    uint8_t (*tid)[16];
    int *receipted;
    int n_receipted, n_other;
    pid_t victim;
    int delay_ms; /* between the last result and the kill */
} kill_t;

static void kill_result(void *ud, size_t i, const Tdsx__TransferResult *res)
{
    kill_t *k = ud;
    if (strcmp(res->state, "receipted") == 0) {
        assert_false(k->receipted[i]);
        k->receipted[i] = 1;
        k->n_receipted++;
        assert_int_equal(res->transfer_id.len, 16);
        memcpy(k->tid[i], res->transfer_id.data, 16);
    } else {
        k->n_other++;
    }
    if (k->victim && k->n_receipted >= KILL_AFTER) {
        usleep((useconds_t)k->delay_ms * 1000);
        assert_int_equal(kill(k->victim, SIGKILL), 0);
        assert_int_equal(waitpid(k->victim, NULL, 0), k->victim);
        k->victim = 0;
    }
}

/* Restarts n with every group commit delayed by 40 ms. */
static void restart_slow_commits(tdsx_test_node_t *n)
{
    assert_int_equal(tdsx_test_node_stop(n, 10000), 0);
    assert_int_equal(setenv("TDSX_FAULT_COMMIT_DELAY_MS", "40", 1), 0);
    tdsx_test_node_start(n);
    assert_int_equal(unsetenv("TDSX_FAULT_COMMIT_DELAY_MS"), 0);
    assert_true(tdsx_test_log_wait(n, 3000, "\"event\":\"fault.commit_delay\"", NULL));
    wait_linked(&W.ent, &W.brain);
}

static kill_t kill_plan(pid_t victim, int delay_ms)
{
    kill_t k = {calloc(KILL_N, 32),
                calloc(KILL_N, 16),
                calloc(KILL_N, sizeof(int)),
                0,
                0,
                victim,
                delay_ms};
    assert_true(k.sha && k.tid && k.receipted);
    return k;
}

static void kill_plan_free(kill_t *k)
{
    free(k->receipted);
    free(k->tid);
    free(k->sha);
}

static void killed_receiver_kept_what_it_receipted(void **state)
{
    (void)state;
    restart_slow_commits(&W.brain);

    kill_t k = kill_plan(W.brain.pid, 0);
    tdsx_buf_t reqs;
    small_requests("kill", KILL_N, 5000, k.sha, &reqs);
    int got = send_all(&W.ent, &reqs, KILL_N, 120, 0, 0, kill_result, &k);
    tdsx_buf_free(&reqs);
    assert_int_equal(k.victim, 0); /* it was killed */
    W.brain.pid = 0;
    assert_int_equal(got, KILL_N); /* every send ended, one way or another */
    fprintf(stderr, "receipted before the kill: %d, ended otherwise: %d\n", k.n_receipted,
            k.n_other);
    assert_true(k.n_receipted >= KILL_AFTER);
    assert_true(k.n_other > 0); /* the kill cut transfers short */

    tdsx_test_node_start(&W.brain);
    wait_linked(&W.ent, &W.brain);
    char *brain_list = all_receipts(&W.brain);
    for (int i = 0; i < KILL_N; i++) {
        if (!k.receipted[i])
            continue;
        char hex[33];
        tdsx_hex_encode(hex, k.tid[i], 16);
        if (count_substr(brain_list, hex) != 1)
            fail_msg("transfer %s was receipted to the enterprise but the brain lost it", hex);
        assert_true(object_exists(&W.brain, k.sha[i]));
    }
    free(brain_list);
    kill_plan_free(&k);
}

/* 6b. The same for the sender's sequence numbers (SPEC: one number per NRO, never reused): the
 * enterprise runs with slow commits and is SIGKILLed while sends keep arriving (one every 3 ms,
 * so new NROs are being signed when it dies), then restarted and sends again. Every NRO the brain
 * saw from it, in either burst, has its own sequence number: no NRO left the enterprise before the
 * number in it was durable. */
static int duplicate_sequences(const tdsx_test_node_t *receiver, const char *sender, int *inbound)
{
    char *db = str_printf("%s/meta.db", receiver->data);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*), count(DISTINCT sequence) FROM transfers"
                                        " WHERE inbound = 1 AND peer = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_text(st, 1, sender, -1, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int all = sqlite3_column_int(st, 0), distinct = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(db);
    *inbound = all;
    return all - distinct;
}

static void killed_sender_never_reuses_a_sequence(void **state)
{
    (void)state;
    int before = 0;
    assert_int_equal(duplicate_sequences(&W.brain, W.ent.id, &before), 0);
    restart_slow_commits(&W.ent);

    /* A result leaves the enterprise just before its loop signs, sends and commits the turn's
     * NROs; 20 ms later it is in the middle of that turn's 40 ms commit. */
    kill_t k = kill_plan(W.ent.pid, 20);
    tdsx_buf_t reqs;
    small_requests("seq1", KILL_N, 9000, k.sha, &reqs);
    (void)send_all(&W.ent, &reqs, KILL_N, 120, 1, 3, kill_result, &k);
    tdsx_buf_free(&reqs);
    assert_int_equal(k.victim, 0);
    W.ent.pid = 0;
    int during = 0;
    assert_int_equal(duplicate_sequences(&W.brain, W.ent.id, &during), 0);
    fprintf(stderr, "NROs the brain saw: %d before, %d after the first burst\n", before, during);
    assert_true(during > before + KILL_AFTER);

    /* Restarted normally, the enterprise sends again: all of it goes through. */
    tdsx_test_node_start(&W.ent);
    wait_linked(&W.ent, &W.brain);
    many_t m = {calloc(100, 32), calloc(100, 16), calloc(100, sizeof(int))};
    assert_true(m.sha && m.tid && m.done);
    small_requests("seq2", 100, 12000, m.sha, &reqs);
    assert_int_equal(send_all(&W.ent, &reqs, 100, 120, 0, 0, many_result, &m), 100);
    tdsx_buf_free(&reqs);
    int after = 0;
    int dup = duplicate_sequences(&W.brain, W.ent.id, &after);
    if (dup)
        fail_msg("%d sequence numbers the enterprise handed out twice", dup);
    assert_int_equal(after, during + 100);
    free(m.done);
    free(m.tid);
    free(m.sha);
    kill_plan_free(&k);
}

/* ---- a raw client that lies ------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n;
} blob_t;

typedef struct {
    tdsx_test_client_t c;
    uint32_t next_stream; /* odd: we dialled */
} raw_t;

static void blob_free(blob_t *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* DER of every certificate in a PEM file, at most `max`. */
static size_t load_ders(const char *path, blob_t *out, size_t max)
{
    STACK_OF(X509) *sk = NULL;
    if (tdsx_cert_load_file(path, &sk) != 0)
        return 0;
    size_t n = 0;
    for (int i = 0; i < sk_X509_num(sk) && n < max; i++) {
        unsigned char *der = NULL;
        int len = i2d_X509(sk_X509_value(sk, i), &der);
        assert_true(len > 0);
        out[n].p = malloc((size_t)len);
        assert_non_null(out[n].p);
        memcpy(out[n].p, der, (size_t)len);
        out[n].n = (size_t)len;
        OPENSSL_free(der);
        n++;
    }
    sk_X509_pop_free(sk, X509_free);
    return n;
}

/* Opens a TLS connection to the brain as the enterprise and sends the Hello the daemon would:
 * its sign certificate and the intermediates. */
static void raw_open(raw_t *r, int hello)
{
    assert_int_equal(tdsx_test_client_open(&r->c, &W.p, W.ent.creds, W.brain.port), 0);
    r->next_stream = 1;
    if (!hello)
        return;
    char *path = str_printf("%s/sign.pem", W.ent.creds);
    blob_t cert = {NULL, 0}, chain[4];
    assert_int_equal(load_ders(path, &cert, 1), 1);
    free(path);
    path = str_printf("%s/chain.pem", W.ent.creds);
    size_t n_chain = load_ders(path, chain, 4);
    free(path);
    ProtobufCBinaryData chain_der[4];
    for (size_t i = 0; i < n_chain; i++) {
        chain_der[i].data = chain[i].p;
        chain_der[i].len = chain[i].n;
    }
    Tdsx__Hello h = TDSX__HELLO__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    h.sign_cert.data = cert.p;
    h.sign_cert.len = cert.n;
    h.chain = chain_der;
    h.n_chain = n_chain;
    h.software = "raw-test-client";
    f.body_case = TDSX__FRAME__BODY_HELLO;
    f.hello = &h;
    tdsx_test_client_send_frame(&r->c, &f);
    blob_free(&cert);
    for (size_t i = 0; i < n_chain; i++)
        blob_free(&chain[i]);
}

static uint32_t raw_stream(raw_t *r)
{
    uint32_t id = r->next_stream;
    r->next_stream += 2;
    return id;
}

/* The next frame the daemon sends, skipping its Hello, window credit and pongs. NULL when
 * nothing came within 5 s (or the connection ended). Free with tdsx__frame__free_unpacked. */
static Tdsx__Frame *raw_next(raw_t *r)
{
    for (;;) {
        uint8_t hdr[4];
        if (tdsx_test_client_recv(&r->c, hdr, 4, 5000) != 4)
            return NULL;
        uint32_t len =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        uint8_t *body = malloc(len ? len : 1);
        assert_non_null(body);
        assert_int_equal(tdsx_test_client_recv(&r->c, body, len, 5000), (long)len);
        Tdsx__Frame *f = tdsx__frame__unpack(NULL, len, body);
        free(body);
        assert_non_null(f);
        if (f->body_case != TDSX__FRAME__BODY_HELLO &&
            f->body_case != TDSX__FRAME__BODY_WINDOW_UPDATE &&
            f->body_case != TDSX__FRAME__BODY_PONG)
            return f;
        tdsx__frame__free_unpacked(f, NULL);
    }
}

/* The next frame, which must be `body_case` on `stream` (details printed when it is not). */
static Tdsx__Frame *raw_expect(raw_t *r, uint32_t stream, int body_case)
{
    Tdsx__Frame *f = raw_next(r);
    if (!f)
        fail_msg("no frame from the brain (wanted body %d on stream %u)", body_case, stream);
    if (f->body_case != (Tdsx__Frame__BodyCase)body_case) {
        if (f->body_case == TDSX__FRAME__BODY_TRANSFER_ABORT)
            fprintf(stderr, "TransferAbort %s: %s\n",
                    tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)),
                    f->transfer_abort->message);
        if (f->body_case == TDSX__FRAME__BODY_ERROR)
            fprintf(stderr, "Error %s: %s\n", tdsx_err_name(tdsx_err_from_wire(f->error->code)),
                    f->error->message);
        fail_msg("frame body %d on stream %u, wanted %d", (int)f->body_case, f->stream_id,
                 body_case);
    }
    if (body_case != TDSX__FRAME__BODY_ERROR)
        assert_int_equal(f->stream_id, stream);
    return f;
}

static void raw_start(raw_t *r, uint32_t stream, blob_t nro)
{
    Tdsx__TransferStart st = TDSX__TRANSFER_START__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    st.nro.data = nro.p;
    st.nro.len = nro.n;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_START;
    f.transfer_start = &st;
    tdsx_test_client_send_frame(&r->c, &f);
}

static void raw_data(raw_t *r, uint32_t stream, uint64_t offset, const uint8_t *p, size_t n)
{
    Tdsx__TransferData d = TDSX__TRANSFER_DATA__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    d.offset = offset;
    d.chunk.data = (uint8_t *)p;
    d.chunk.len = n;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &d;
    tdsx_test_client_send_frame(&r->c, &f);
}

static void raw_end(raw_t *r, uint32_t stream, uint64_t length, const uint8_t sha[32])
{
    Tdsx__TransferEnd e = TDSX__TRANSFER_END__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    e.length = length;
    e.sha256.data = (uint8_t *)sha;
    e.sha256.len = 32;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_END;
    f.transfer_end = &e;
    tdsx_test_client_send_frame(&r->c, &f);
}

static void on_signed(void *ud, int status, tdsx_bytes_t env)
{
    blob_t *b = ud;
    assert_int_equal(status, 0);
    b->p = malloc(env.n);
    assert_non_null(b->p);
    memcpy(b->p, env.p, env.n);
    b->n = env.n;
}

static tdsx_signer_t *signer_of(const tdsx_test_node_t *n)
{
    uint8_t seed[32];
    char *path = str_printf("%s/sign.key", n->creds);
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    free(path);
    tdsx_signer_t *s = NULL;
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), 0);
    sodium_memzero(seed, sizeof seed);
    return s;
}

/* What the raw client claims in an NRO. */
typedef struct {
    const tdsx_test_node_t *key; /* whose sign key signs it */
    const char *sender, *receiver;
    const char *tags; /* tags text; NULL: the NRO carries none */
    uint8_t tid[16];
    uint8_t sha[32];
    uint64_t length, sequence;
} claim_t;

static void claim_init(claim_t *c, const uint8_t *payload, size_t n)
{
    memset(c, 0, sizeof *c);
    c->key = &W.ent;
    c->sender = W.ent.id;
    c->receiver = W.brain.id;
    c->tags = TAGS;
    randombytes_buf(c->tid, sizeof c->tid);
    assert_int_equal(tdsx_sha256(payload, n, c->sha), 0);
    c->length = n;
    c->sequence = 1;
}

static blob_t sign_nro(const claim_t *c)
{
    Tdsx__Nro nro = TDSX__NRO__INIT;
    nro.transfer_id.data = (uint8_t *)c->tid;
    nro.transfer_id.len = 16;
    nro.sender = (char *)c->sender;
    nro.receiver = (char *)c->receiver;
    nro.dataset_id = "raw";
    Tdsx__Tags tags = TDSX__TAGS__INIT;
    tdsx_tags_t t;
    tdsx_tags_error_t te;
    if (c->tags) {
        /* The proto enums have the values of policy/'s (as the daemon maps them). */
        assert_int_equal(tdsx_tags_parse(tdsx_bytes(c->tags, strlen(c->tags)), &t, &te), 0);
        tags.grade = (Tdsx__Grade)t.grade;
        tags.general_level = t.level;
        tags.domain = (Tdsx__Domain)t.domain;
        tags.category = t.category;
        tags.personal = (Tdsx__Personal)t.personal;
        tags.library = (Tdsx__Library)t.library;
        tags.source = (Tdsx__Source)t.source;
        nro.tags = &tags;
    }
    nro.payload_sha256.data = (uint8_t *)c->sha;
    nro.payload_sha256.len = 32;
    nro.payload_length = c->length;
    nro.sequence = c->sequence;
    nro.time = (int64_t)time(NULL);
    tdsx_signer_t *s = signer_of(c->key);
    blob_t env = {NULL, 0};
    assert_int_equal(tdsx_statement_submit(s, TDSX_STATEMENT_NRO, &nro.base, on_signed, &env), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    tdsx_signer_free(s);
    assert_non_null(env.p);
    return env;
}

/* Verifies an NRR envelope with the brain's sign key and checks it acknowledges `nro`;
 * the decoded statement lives in `a`. */
static const Tdsx__Nrr *open_nrr(tdsx_arena_t *a, ProtobufCBinaryData env, blob_t nro)
{
    tdsx_signer_t *s = signer_of(&W.brain);
    uint8_t pk[32];
    tdsx_signer_public_key(s, pk);
    tdsx_signer_free(s);
    tdsx_verifier_t *v = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    ProtobufCMessage *m = NULL;
    assert_int_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_NRR, tdsx_bytes(env.data, env.len), a, &m, NULL), 0);
    tdsx_verifier_free(v);
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)m;
    tdsx_hash_t h;
    assert_int_equal(tdsx_envelope_hash(tdsx_bytes(nro.p, nro.n), &h), 0);
    assert_int_equal(nrr->nro_hash.len, 32);
    assert_memory_equal(nrr->nro_hash.data, h.b, 32);
    assert_string_equal(nrr->receiver, W.brain.id);
    return nrr;
}

static void hex16(const uint8_t tid[16], char out[33])
{
    tdsx_hex_encode(out, tid, 16);
}

/* Sends TransferStart for `length` bytes and expects TransferAccept{offset 0, window}: the
 * brain's stream window, never more than the payload still needs. */
static void raw_begin(raw_t *r, uint32_t stream, blob_t nro, uint64_t length)
{
    raw_start(r, stream, nro);
    Tdsx__Frame *f = raw_expect(r, stream, TDSX__FRAME__BODY_TRANSFER_ACCEPT);
    assert_true(f->transfer_accept->offset == 0);
    assert_true(f->transfer_accept->window == (length < BRAIN_WINDOW ? length : BRAIN_WINDOW));
    tdsx__frame__free_unpacked(f, NULL);
}

/* Sends TransferStart and expects TransferAbort with `code`; returns nothing else. */
static void raw_expect_abort(raw_t *r, blob_t nro, int code)
{
    uint32_t stream = raw_stream(r);
    raw_start(r, stream, nro);
    Tdsx__Frame *f = raw_expect(r, stream, TDSX__FRAME__BODY_TRANSFER_ABORT);
    assert_string_equal(tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)),
                        tdsx_err_name(code));
    tdsx__frame__free_unpacked(f, NULL);
}

/* The positive case first, so the refusals below are refusals of the lie and nothing else:
 * a correct transfer from the raw client is receipted; the same TransferStart again gets the
 * same NRR back; a new NRO under the same transfer id is refused as a duplicate (6c). */
static void raw_transfer_then_duplicate_refused(void **state)
{
    (void)state;
    uint8_t payload[5000];
    fill(payload, sizeof payload, 61);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    blob_t nro = sign_nro(&c);
    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, sizeof payload);
    raw_data(&r, stream, 0, payload, sizeof payload);
    raw_end(&r, stream, sizeof payload, c.sha);
    Tdsx__Frame *f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    const Tdsx__Nrr *nrr = open_nrr(a, f->transfer_receipt->nrr, nro);
    assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED);
    assert_true(nrr->received_length == sizeof payload);
    assert_memory_equal(nrr->received_sha256.data, c.sha, 32);
    assert_true(object_exists(&W.brain, c.sha));
    blob_t first = {malloc(f->transfer_receipt->nrr.len), f->transfer_receipt->nrr.len};
    assert_non_null(first.p);
    memcpy(first.p, f->transfer_receipt->nrr.data, first.n);
    tdsx__frame__free_unpacked(f, NULL);
    int objects = count_objects(&W.brain);

    /* The same NRO again (a sender that missed the receipt): the same NRR, nothing new. */
    stream = raw_stream(&r);
    raw_start(&r, stream, nro);
    f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    assert_int_equal(f->transfer_receipt->nrr.len, first.n);
    assert_memory_equal(f->transfer_receipt->nrr.data, first.p, first.n);
    tdsx__frame__free_unpacked(f, NULL);

    /* Another NRO (next sequence) under the same transfer id: never accepted twice. */
    char hex[33];
    hex16(c.tid, hex);
    int before =
        tdsx_test_log_count(&W.brain, "\"transfer.refused\"", hex, "TDSX_E_DUPLICATE", NULL);
    c.sequence = 2;
    blob_t again = sign_nro(&c);
    raw_expect_abort(&r, again, TDSX_E_DUPLICATE);
    assert_true(log_grows(&W.brain, before, "\"transfer.refused\"", hex, "TDSX_E_DUPLICATE"));
    assert_int_equal(count_objects(&W.brain), objects);
    assert_false(part_exists(&W.brain, hex));

    tdsx_test_client_free(&r.c);
    tdsx_arena_free(a);
    blob_free(&again);
    blob_free(&first);
    blob_free(&nro);
}

/* 6a. The NRO promises SHA-256(X); the bytes sent are Y (same length). The brain answers with
 * a signed NRR saying INTEGRITY_FAILED and what it actually got; neither X nor Y is stored and
 * no part file is left. The refused transfer id is final: a retry is a duplicate. */
static void payload_hash_mismatch_refused(void **state)
{
    (void)state;
    uint8_t x[4096], y[4096], ysha[32];
    fill(x, sizeof x, 62);
    memcpy(y, x, sizeof y);
    y[1234] ^= 0x01;
    assert_int_equal(tdsx_sha256(y, sizeof y, ysha), 0);
    claim_t c;
    claim_init(&c, x, sizeof x);
    blob_t nro = sign_nro(&c);
    char hex[33];
    hex16(c.tid, hex);
    int objects = count_objects(&W.brain);

    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, sizeof x);
    raw_data(&r, stream, 0, y, sizeof y);
    raw_end(&r, stream, sizeof x, c.sha);
    Tdsx__Frame *f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    const Tdsx__Nrr *nrr = open_nrr(a, f->transfer_receipt->nrr, nro);
    assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED);
    assert_int_equal(nrr->received_sha256.len, 32);
    assert_memory_equal(nrr->received_sha256.data, ysha, 32);
    assert_true(nrr->received_length == sizeof y);

    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.refused\"", hex,
                                   "\"err\":\"TDSX_E_INTEGRITY\"", NULL));
    assert_false(object_exists(&W.brain, c.sha));
    assert_false(object_exists(&W.brain, ysha));
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);

    /* The refusal is final. The same NRO again gets the same signed refusal back (nothing is
     * received a second time); a new NRO under the same id, even for the bytes actually
     * sent, is a duplicate. */
    stream = raw_stream(&r);
    raw_start(&r, stream, nro);
    Tdsx__Frame *g = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    assert_int_equal(g->transfer_receipt->nrr.len, f->transfer_receipt->nrr.len);
    assert_memory_equal(g->transfer_receipt->nrr.data, f->transfer_receipt->nrr.data,
                        g->transfer_receipt->nrr.len);
    tdsx__frame__free_unpacked(g, NULL);
    tdsx__frame__free_unpacked(f, NULL);
    memcpy(c.sha, ysha, 32);
    c.sequence = 2;
    blob_t again = sign_nro(&c);
    raw_expect_abort(&r, again, TDSX_E_DUPLICATE);
    assert_false(object_exists(&W.brain, ysha));
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);
    blob_free(&again);

    tdsx_test_client_free(&r.c);
    tdsx_arena_free(a);
    blob_free(&nro);
}

/* 6b. The NRO says 100 bytes; 50 come, then TransferEnd{100}: a signed INTEGRITY_FAILED NRR
 * that says 50 were received, nothing stored. */
static void short_payload_refused(void **state)
{
    (void)state;
    uint8_t payload[100];
    fill(payload, sizeof payload, 63);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    blob_t nro = sign_nro(&c);
    char hex[33];
    hex16(c.tid, hex);
    int objects = count_objects(&W.brain);

    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, sizeof payload);
    raw_data(&r, stream, 0, payload, 50);
    raw_end(&r, stream, sizeof payload, c.sha);
    Tdsx__Frame *f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    const Tdsx__Nrr *nrr = open_nrr(a, f->transfer_receipt->nrr, nro);
    assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED);
    assert_true(nrr->received_length == 50);
    tdsx__frame__free_unpacked(f, NULL);

    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.refused\"", hex,
                                   "\"err\":\"TDSX_E_INTEGRITY\"", NULL));
    assert_false(object_exists(&W.brain, c.sha));
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);
    tdsx_test_client_free(&r.c);
    tdsx_arena_free(a);
    blob_free(&nro);
}

/* 6b. The NRO says 100 bytes; 150 come in one chunk. The brain never grants more than a
 * payload still needs, so the excess is beyond the window too: the connection is closed with
 * TDSX_E_FLOW (said to the peer and logged) and nothing is stored. */
static void long_payload_closes(void **state)
{
    (void)state;
    uint8_t payload[150];
    fill(payload, sizeof payload, 64);
    claim_t c;
    claim_init(&c, payload, 100);
    blob_t nro = sign_nro(&c);
    int objects = count_objects(&W.brain);
    int before = tdsx_test_log_count(&W.brain, "\"event\":\"conn.close\"", W.ent.id,
                                     "\"err\":\"TDSX_E_FLOW\"", NULL);
    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, 100);
    raw_data(&r, stream, 0, payload, sizeof payload);
    Tdsx__Frame *f = raw_expect(&r, 0, TDSX__FRAME__BODY_ERROR);
    assert_int_equal(tdsx_err_from_wire(f->error->code), TDSX_E_FLOW);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(tdsx_test_client_closed(&r.c, 3000));
    assert_true(log_grows(&W.brain, before, "\"event\":\"conn.close\"", W.ent.id,
                          "\"err\":\"TDSX_E_FLOW\""));
    assert_false(object_exists(&W.brain, c.sha));
    assert_int_equal(count_objects(&W.brain), objects);
    tdsx_test_client_free(&r.c);
    blob_free(&nro);
}

/* A chunk that skips ahead (offset 10 where 0 is due): the transfer is aborted with
 * TDSX_E_INTEGRITY, its part file removed, nothing stored; the connection stays usable. */
static void chunk_out_of_order_aborted(void **state)
{
    (void)state;
    uint8_t payload[100];
    fill(payload, sizeof payload, 70);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    blob_t nro = sign_nro(&c);
    char hex[33];
    hex16(c.tid, hex);
    int objects = count_objects(&W.brain);

    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, sizeof payload);
    raw_data(&r, stream, 10, payload + 10, 50);
    Tdsx__Frame *f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_ABORT);
    assert_int_equal(tdsx_err_from_wire(f->transfer_abort->code), TDSX_E_INTEGRITY);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.aborted\"", hex,
                                   "\"err\":\"TDSX_E_INTEGRITY\"", NULL));
    assert_false(object_exists(&W.brain, c.sha));
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);

    /* The same connection still carries a good transfer. */
    uint8_t good[300];
    fill(good, sizeof good, 71);
    claim_t g;
    claim_init(&g, good, sizeof good);
    blob_t gnro = sign_nro(&g);
    stream = raw_stream(&r);
    raw_begin(&r, stream, gnro, sizeof good);
    raw_data(&r, stream, 0, good, sizeof good);
    raw_end(&r, stream, sizeof good, g.sha);
    f = raw_expect(&r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(object_exists(&W.brain, g.sha));

    tdsx_test_client_free(&r.c);
    blob_free(&gnro);
    blob_free(&nro);
}

/* Starts a transfer whose NRO is wrong in one way and expects the brain to refuse it with
 * `code`, log it with `reason`, and create nothing. */
static void expect_nro_refused(const claim_t *c, int code, const char *reason)
{
    blob_t nro = sign_nro(c);
    int objects = count_objects(&W.brain);
    char err[64];
    snprintf(err, sizeof err, "\"err\":\"%s\"", tdsx_err_name(code));
    int before = tdsx_test_log_count(&W.brain, "\"event\":\"transfer.refused\"", err, reason, NULL);
    raw_t r;
    raw_open(&r, 1);
    raw_expect_abort(&r, nro, code);
    assert_true(log_grows(&W.brain, before, "\"event\":\"transfer.refused\"", err, reason));
    char hex[33];
    hex16(c->tid, hex);
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);
    tdsx_test_client_free(&r.c);
    blob_free(&nro);
}

/* Expects the brain to answer `nro` with a signed POLICY_REFUSED NRR carrying `code`, to log
 * the refusal, and to store nothing. */
static void expect_policy_refusal(raw_t *r, const claim_t *c, blob_t nro, int code)
{
    char hex[33];
    hex16(c->tid, hex);
    int objects = count_objects(&W.brain);
    uint32_t stream = raw_stream(r);
    raw_start(r, stream, nro);
    Tdsx__Frame *f = raw_expect(r, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    const Tdsx__Nrr *nrr = open_nrr(a, f->transfer_receipt->nrr, nro);
    assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED);
    assert_string_equal(tdsx_err_name(tdsx_err_from_wire(nrr->refusal_code)), tdsx_err_name(code));
    assert_true(nrr->received_length == 0);
    tdsx_arena_free(a);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"policy.refused\"", hex, NULL));
    assert_false(object_exists(&W.brain, c->sha));
    assert_false(part_exists(&W.brain, hex));
    assert_int_equal(count_objects(&W.brain), objects);
}

/* The receiver decides for itself (SPEC §8) whatever a sender claims to have checked: an NRO
 * with no classification tags, and one tagged core data (which never leaves its owner), are
 * refused with a signed NRR before a byte is taken. */
static void receiver_policy_refuses_what_sender_let_through(void **state)
{
    (void)state;
    uint8_t payload[256];
    fill(payload, sizeof payload, 72);
    raw_t r;
    raw_open(&r, 1);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    c.tags = NULL;
    blob_t nro = sign_nro(&c);
    expect_policy_refusal(&r, &c, nro, TDSX_E_TAGS);
    blob_free(&nro);
    claim_init(&c, payload, sizeof payload);
    c.tags = "grade=core domain=production category=production.process personal=none "
             "library=base source=enterprise";
    nro = sign_nro(&c);
    expect_policy_refusal(&r, &c, nro, TDSX_E_POLICY_DENY);
    blob_free(&nro);
    tdsx_test_client_free(&r.c);
}

/* 6e. An NRO signed by another node the brain knows (the centre): not the connected peer. */
static void nro_signed_by_another_node_refused(void **state)
{
    (void)state;
    uint8_t payload[64];
    fill(payload, sizeof payload, 65);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    c.key = &W.centre;
    expect_nro_refused(&c, TDSX_E_SIG_INVALID, "NRO not signed by the connected peer");
}

/* 6e. An NRO signed by a registered node the brain has never met: an unknown signer. */
static void nro_signed_by_unknown_key_refused(void **state)
{
    (void)state;
    uint8_t payload[64];
    fill(payload, sizeof payload, 66);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    c.key = &W.ent2;
    c.sender = W.ent2.id;
    expect_nro_refused(&c, TDSX_E_SIGNER_UNKNOWN, "NRO does not verify");
}

/* Correctly signed by the peer, but naming someone else as sender or receiver. */
static void nro_naming_other_parties_refused(void **state)
{
    (void)state;
    uint8_t payload[64];
    fill(payload, sizeof payload, 67);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    c.sender = W.ent2.id;
    expect_nro_refused(&c, TDSX_E_PROTO_FIELD, "NRO sender or receiver");
    claim_init(&c, payload, sizeof payload);
    c.receiver = W.centre.id;
    expect_nro_refused(&c, TDSX_E_PROTO_FIELD, "NRO sender or receiver");
}

/* 6f. A chunk one byte larger than the window the brain granted: the connection is closed
 * with TDSX_E_FLOW (said to the peer and logged), nothing stored. */
static void data_beyond_window_closes(void **state)
{
    (void)state;
    size_t n = BRAIN_WINDOW + 1;
    uint8_t *payload = malloc(MIB);
    assert_non_null(payload);
    fill(payload, MIB, 68);
    claim_t c;
    claim_init(&c, payload, MIB);
    blob_t nro = sign_nro(&c);
    int objects = count_objects(&W.brain);
    int before = tdsx_test_log_count(&W.brain, "\"event\":\"conn.close\"", W.ent.id,
                                     "\"err\":\"TDSX_E_FLOW\"", NULL);
    raw_t r;
    raw_open(&r, 1);
    uint32_t stream = raw_stream(&r);
    raw_begin(&r, stream, nro, MIB);
    raw_data(&r, stream, 0, payload, n);
    Tdsx__Frame *f = raw_expect(&r, 0, TDSX__FRAME__BODY_ERROR);
    assert_int_equal(tdsx_err_from_wire(f->error->code), TDSX_E_FLOW);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(tdsx_test_client_closed(&r.c, 3000));
    assert_true(log_grows(&W.brain, before, "\"event\":\"conn.close\"", W.ent.id,
                          "\"err\":\"TDSX_E_FLOW\""));
    assert_false(object_exists(&W.brain, c.sha));
    assert_int_equal(count_objects(&W.brain), objects);
    tdsx_test_client_free(&r.c);
    blob_free(&nro);
    free(payload);
}

/* A TransferStart before the peer's Hello: the brain cannot know who signs for the peer, so
 * the connection is closed with TDSX_E_PROTOCOL. */
static void transfer_before_hello_closes(void **state)
{
    (void)state;
    uint8_t payload[64];
    fill(payload, sizeof payload, 69);
    claim_t c;
    claim_init(&c, payload, sizeof payload);
    blob_t nro = sign_nro(&c);
    int before = tdsx_test_log_count(&W.brain, "\"event\":\"conn.close\"", W.ent.id,
                                     "\"err\":\"TDSX_E_PROTOCOL\"", NULL);
    raw_t r;
    raw_open(&r, 0);
    raw_start(&r, raw_stream(&r), nro);
    Tdsx__Frame *f = raw_expect(&r, 0, TDSX__FRAME__BODY_ERROR);
    assert_int_equal(tdsx_err_from_wire(f->error->code), TDSX_E_PROTOCOL);
    tdsx__frame__free_unpacked(f, NULL);
    assert_true(tdsx_test_client_closed(&r.c, 3000));
    assert_true(log_grows(&W.brain, before, "\"event\":\"conn.close\"", W.ent.id,
                          "\"err\":\"TDSX_E_PROTOCOL\""));
    char hex[33];
    hex16(c.tid, hex);
    assert_false(part_exists(&W.brain, hex));
    tdsx_test_client_free(&r.c);
    blob_free(&nro);
}

/* ---- 7. the receiver killed mid-transfer ----------------------------------------------------- */

/* The size of the largest part file in the node's tmp/ (0 when none). */
static off_t largest_part(const tdsx_test_node_t *n)
{
    char *dir = str_printf("%s/tmp", n->data);
    DIR *d = opendir(dir);
    off_t max = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".part") != 0)
            continue;
        struct stat st;
        char *p = str_printf("%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && st.st_size > max)
            max = st.st_size;
        free(p);
    }
    if (d)
        closedir(d);
    free(dir);
    return max;
}

/* 7. The brain sends 48 MiB to the centre, which is SIGKILLed once it holds more than 8 MiB:
 * nothing is stored, the send ends "interrupted" with its transfer id; after a restart the
 * same send resumes from the centre's durable offset and ends receipted, with one receipt on
 * each side and the stored object equal to the file. */
static void killed_receiver_resumes(void **state)
{
    (void)state;
    uint8_t sha[32];
    char *file = make_file("big.bin", BIG_SIZE, 7, sha);
    char *out_path = tdsx_test_path(W.files, "big.out");
    char *rc_path = tdsx_test_path(W.files, "big.rc");
    int objects = count_objects(&W.centre);

    /* In the background, output to a file: the send blocks until it ends. */
    assert_int_equal(
        tdsx_test_run(NULL,
                      "( tdsx send --to '%s' '%s' --dataset big --tags '%s' --socket '%s' > '%s' "
                      "2>&1; echo $? > '%s.tmp'; mv '%s.tmp' '%s' ) </dev/null >/dev/null 2>&1 &",
                      W.centre.id, file, TAGS, W.brain.sock, out_path, rc_path, rc_path, rc_path),
        0);
    off_t held = 0;
    for (int i = 0; i < 30000 && (held = largest_part(&W.centre)) <= (off_t)BIG_KILL_AT; i++) {
        if (access(rc_path, F_OK) == 0)
            break;
        usleep(1000);
    }
    if (held <= (off_t)BIG_KILL_AT) {
        char *o = run(-1, NULL, "cat '%s'", out_path);
        fprintf(stderr, "send output:\n%s\n", o);
        free(o);
        fail_msg("the centre never held more than 8 MiB (largest part %lld)", (long long)held);
    }
    assert_int_equal(kill(W.centre.pid, SIGKILL), 0);
    assert_int_equal(waitpid(W.centre.pid, NULL, 0), W.centre.pid);
    W.centre.pid = 0;

    /* Nothing of it is in the centre's store. */
    assert_false(object_exists(&W.centre, sha));
    assert_int_equal(count_objects(&W.centre), objects);

    /* The sender notices, says it was interrupted and how to resume (exit 1). */
    for (int i = 0; i < 1500 && access(rc_path, F_OK) != 0; i++)
        usleep(10000);
    char *status = run(0, NULL, "cat '%s'", rc_path);
    char *out = run(0, NULL, "cat '%s'", out_path);
    if (strcmp(status, "1\n") != 0 || !strstr(out, "interrupted"))
        fprintf(stderr, "send exit %s\n%s\n", status, out);
    assert_string_equal(status, "1\n");
    char tid[64], val[4096];
    field(out, "transfer   ", tid, sizeof tid);
    assert_int_equal(strlen(tid), 32);
    field(out, "state      ", val, sizeof val);
    assert_string_equal(val, "interrupted");
    char *hint = str_printf("resume with --resume %s", tid);
    assert_non_null(strstr(out, hint));
    free(hint);
    free(status);
    free(out);
    /* What the centre held is kept for the resume. The brain keeps its signed NRO in its
     * store (the resume below needs it), not as a file per transfer. */
    assert_true(part_exists(&W.centre, tid));
    char *nro_path = str_printf("%s/tmp/%s.nro", W.brain.data, tid);
    assert_int_equal(access(nro_path, F_OK), -1);

    /* The centre comes back; the brain redials it. */
    tdsx_test_node_start(&W.centre);
    assert_true(tdsx_test_log_wait(&W.centre, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    int rc = 2;
    out = NULL;
    for (int i = 0; i < 100; i++) {
        free(out);
        out = run(-1, &rc,
                  "tdsx send --to '%s' '%s' --dataset big --tags '%s' --resume %s --socket '%s'",
                  W.centre.id, file, TAGS, tid, W.brain.sock);
        /* Until the brain has the centre's Hello again, the peer is not ready (exit 2). */
        if (rc != 2 || !strstr(out, "TDSX_E_AGAIN"))
            break;
        usleep(100000);
    }
    if (rc != 0)
        fprintf(stderr, "resume exit %d\n%s\n", rc, out);
    assert_int_equal(rc, 0);
    field(out, "transfer   ", val, sizeof val);
    assert_string_equal(val, tid);
    field(out, "state      ", val, sizeof val);
    assert_string_equal(val, "receipted");
    free(out);

    /* It went on from the centre's durable offset: more than nothing, no more than it held. */
    char *line = tdsx_test_log_line(&W.centre, "\"event\":\"transfer.resumed\"", W.brain.id,
                                    "\"dataset\":\"big\"", NULL);
    assert_non_null(line);
    const char *o = strstr(line, "\"offset\":");
    assert_non_null(o);
    unsigned long long offset = strtoull(o + 9, NULL, 10);
    fprintf(stderr, "resumed at %llu of %u (the centre held %lld when killed)\n", offset, BIG_SIZE,
            (long long)held);
    assert_true(offset > 0);
    assert_true(offset <= (unsigned long long)held);
    free(line);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.resumed\"", tid,
                                   "\"dir\":\"out\"", NULL));

    /* One receipt for it on each side, the object equals the file, no part file left. */
    char *brain_list = all_receipts(&W.brain), *centre_list = all_receipts(&W.centre);
    assert_int_equal(count_substr(brain_list, tid), 1);
    assert_int_equal(count_substr(centre_list, tid), 1);
    free(brain_list);
    free(centre_list);
    char *obj = object_path(&W.centre, sha);
    assert_true(files_equal(obj, file));
    free(obj);
    assert_int_equal(count_objects(&W.centre), objects + 1);
    assert_false(part_exists(&W.centre, tid));
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"transfer.receipted\"", tid, NULL));
    assert_int_equal(access(nro_path, F_OK), -1);
    free(nro_path);
    free(file);
    free(out_path);
    free(rc_path);
}

/* After all of the above, every daemon drains and exits 0 on SIGTERM, and none of them
 * reported a memory error, a leak or undefined behaviour (their stderr is their log). */
static void daemons_stop_cleanly(void **state)
{
    (void)state;
    tdsx_test_node_t *all[] = {&W.ent, &W.brain, &W.centre};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_int_equal(tdsx_test_node_stop(all[i], 10000), 0);
        assert_true(tdsx_test_log_wait(all[i], 1000, "\"event\":\"node.stopped\"", NULL));
        int reports = tdsx_test_log_count(all[i], "Sanitizer", NULL) +
                      tdsx_test_log_count(all[i], "runtime error:", NULL);
        if (reports) {
            char *log = run(-1, NULL, "cat '%s'", all[i]->log);
            fprintf(stderr, "%s\n", log);
            free(log);
        }
        assert_int_equal(reports, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nodes_link_up),
        cmocka_unit_test(publish_list_pull),
        cmocka_unit_test(push_and_relay),
        cmocka_unit_test(receipts_identical_and_valid),
        cmocka_unit_test(tampered_receipt_refused),
        cmocka_unit_test(pull_unknown_dataset_refused),
        cmocka_unit_test(many_concurrent_transfers),
        cmocka_unit_test(killed_receiver_kept_what_it_receipted),
        cmocka_unit_test(killed_sender_never_reuses_a_sequence),
        cmocka_unit_test(raw_transfer_then_duplicate_refused),
        cmocka_unit_test(payload_hash_mismatch_refused),
        cmocka_unit_test(short_payload_refused),
        cmocka_unit_test(long_payload_closes),
        cmocka_unit_test(chunk_out_of_order_aborted),
        cmocka_unit_test(receiver_policy_refuses_what_sender_let_through),
        cmocka_unit_test(nro_signed_by_another_node_refused),
        cmocka_unit_test(nro_signed_by_unknown_key_refused),
        cmocka_unit_test(nro_naming_other_parties_refused),
        cmocka_unit_test(data_beyond_window_closes),
        cmocka_unit_test(transfer_before_hello_closes),
        cmocka_unit_test(killed_receiver_resumes),
        cmocka_unit_test(daemons_stop_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
