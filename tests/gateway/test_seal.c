/*
 * Sealed transfers and relays with real daemons (SPEC §9): an enterprise seals a payload for
 * its final recipient; a brain that is the final recipient opens it into a plaintext object
 * equal to the original; a brain that is not stores the ciphertext it cannot read and relays
 * it to the centre, which opens it, and whose NRO names the upstream receipt. A sealed stream
 * altered anywhere (in flight from a raw client, or in the relay's store) ends in an
 * INTEGRITY_FAILED receipt with no plaintext kept; sealing to an unusable enc key is refused
 * before anything leaves; `require seal` policy rules see the sealed flag, deny rules the
 * relay flag. The enterprise and the brain hold an agreement granting relay-to the centre.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "policy.h"
#include "proto.h"

#define TAGS(grade)                                                                                \
    "grade=" grade " domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    tdsx_test_node_t ghost, ghost2; /* registered, never started, enc keys made unusable */
    char *root;
} world_t;

static world_t W;

/* The brain: sealed-only for general:3, no relay of general:4, otherwise general both ways. */
static const char brain_policy[] = "[relay-l4]  deny  grade general:4 relay\n"
                                   "[seal-l3]   allow grade general:3 from any require seal\n"
                                   "[in]        allow grade general from any\n"
                                   "[out]       allow grade general to centre\n"
                                   "[default]   deny  any\n";

static char *fmt(const char *f, ...) TDSX_PRINTF(1, 2);
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    assert_true(vasprintf(&s, f, ap) >= 0);
    va_end(ap);
    return s;
}

static void write_random(const char *path, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    randombytes_buf(b, n);
    tdsx_test_write_file(path, b, n);
    free(b);
}

static void sha_of_file(const char *path, uint8_t sha[32])
{
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(tdsx_file_read(path, 64u << 20, &b, &n), 0);
    assert_int_equal(tdsx_sha256(b, n, sha), 0);
    tdsx_free(b);
}

static char *object_path(const tdsx_test_node_t *n, const uint8_t sha[32])
{
    char hex[65];
    tdsx_hex_encode(hex, sha, 32);
    return fmt("%s/objects/%.2s/%s", n->data, hex, hex);
}

static int object_exists(const tdsx_test_node_t *n, const uint8_t sha[32])
{
    char *p = object_path(n, sha);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int count_objects(const tdsx_test_node_t *n)
{
    char *dir = fmt("%s/objects", n->data);
    DIR *d = opendir(dir);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = fmt("%s/%s", dir, e->d_name);
        count += count_dir(sub);
        free(sub);
    }
    if (d)
        closedir(d);
    free(dir);
    return count;
}

/* Files in the node's tmp/ whose name ends with `suffix`. */
static int count_tmp(const tdsx_test_node_t *n, const char *suffix)
{
    char *dir = fmt("%s/tmp", n->data);
    DIR *d = opendir(dir);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t a = strlen(e->d_name), b = strlen(suffix);
        count += a >= b && strcmp(e->d_name + a - b, suffix) == 0;
    }
    if (d)
        closedir(d);
    free(dir);
    return count;
}

/* The 64-hex value after `label` in `tdsx send` output (or the 32-hex transfer id). */
static void out_hex(const char *out, const char *label, uint8_t *dst, size_t n)
{
    const char *p = strstr(out, label);
    assert_non_null(p);
    p += strlen(label);
    while (*p == ' ')
        p++;
    char hex[65];
    assert_true(strlen(p) >= 2 * n);
    memcpy(hex, p, 2 * n);
    hex[2 * n] = '\0';
    assert_int_equal(tdsx_hex_decode(dst, n, hex), 0);
}

/* Makes a registered member's enc key in the registry file the given 64 hex digits. */
static void set_enc(const tdsx_test_node_t *n, const char *hex)
{
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(W.p.registry, 1u << 20, &text, &len), 0);
    char *line = strstr((char *)text, n->id);
    assert_non_null(line);
    char *enc = strstr(line, "enc=");
    assert_non_null(enc);
    memcpy(enc + 4, hex, 64);
    tdsx_test_write_file(W.p.registry, text, len);
    tdsx_free(text);
}

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ghost, "ghost", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ghost2, "ghost2", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    /* The zero key, and u = 1, a point of order 4 that crypto_box refuses. */
    set_enc(&W.ghost, "0000000000000000000000000000000000000000000000000000000000000000");
    set_enc(&W.ghost2, "0100000000000000000000000000000000000000000000000000000000000000");

    char *bp = tdsx_test_path(p->dir, "brain-policy.txt");
    char *open_policy = tdsx_test_path(p->dir, "allow-any.txt");
    tdsx_test_write_file(bp, brain_policy, strlen(brain_policy));
    tdsx_test_write_file(open_policy, "allow any\n", 10);
    char extra[8192];
    snprintf(extra, sizeof extra, "policy %s\n", open_policy);
    tdsx_test_node_config(p, &W.centre, extra);
    /* The brain checkpoints every MiB and grants 64 KiB windows, so the resume test finds it
     * holding part of a payload with a durable offset inside it. */
    snprintf(extra, sizeof extra,
             "policy %s\npeer %s 127.0.0.1:%d\nsync_every 1m\nstream_window 64k\n", bp, W.centre.id,
             W.centre.port);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra, "policy %s\npeer %s 127.0.0.1:%d\n", open_policy, W.brain.id,
             W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    free(bp);
    free(open_policy);
    W.root = tdsx_test_path(p->ca, "root.pem");
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    usleep(300000); /* the Hellos follow the handshakes */
    /* SPEC §9: the brain relays only under an upstream agreement granting relay-to the centre
     * (test_relay.c tests the refusals); this one covers every payload sent here. */
    char *out = NULL, id[33] = "";
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx agree propose --socket '%s' --with %s --category "
                                   "production.process --purpose seal-test --purpose-text seal "
                                   "--action receive --action relay-to:centre --days 1 2>&1",
                                   W.ent.sock, W.brain.id),
                     0);
    const char *at = strstr(out, "agreement  ");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "agreement  %32[0-9a-f]", id), 1);
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx agree accept --socket '%s' %s 2>&1", W.brain.sock, id), 0);
    free(out);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.centre);
    tdsx_test_node_free(&W.ghost);
    tdsx_test_node_free(&W.ghost2);
    free(W.root);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* `tdsx send` from the enterprise to the brain; returns the exit status. */
static int ent_send(char **out, const char *file, const char *dataset, const char *tags,
                    const char *more)
{
    return tdsx_test_run(out,
                         "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags '%s' %s 2>&1",
                         W.ent.sock, W.brain.id, file, dataset, tags, more ? more : "");
}

static int brain_relay(char **out, const uint8_t tid[16])
{
    char hex[33];
    tdsx_hex_encode(hex, tid, 16);
    return tdsx_test_run(out, "tdsx send --socket '%s' --to %s --relay %s 2>&1", W.brain.sock,
                         W.centre.id, hex);
}

static void assert_file_equal(const char *a, const char *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    assert_int_equal(tdsx_file_read(a, 64u << 20, &x, &nx), 0);
    assert_int_equal(tdsx_file_read(b, 64u << 20, &y, &ny), 0);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    tdsx_free(x);
    tdsx_free(y);
}

/* A stored object starts as a sealed stream does and is not the plaintext. */
static void assert_ciphertext(const tdsx_test_node_t *n, const uint8_t sha[32],
                              const uint8_t plain[32])
{
    char *path = object_path(n, sha);
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(path, 64u << 20, &b, &len), 0);
    assert_true(len > 9);
    assert_memory_equal(b, "TDSXSEAL\x01", 9);
    uint8_t got[32];
    assert_int_equal(tdsx_sha256(b, len, got), 0);
    assert_memory_equal(got, sha, 32);
    assert_memory_not_equal(got, plain, 32);
    tdsx_free(b);
    free(path);
}

/* ---- the final recipient opens --------------------------------------------------------------- */

static void sealed_transfer_opens_at_the_receiver(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "opens.bin");
    write_random(file, 200000); /* three full records and a partial one */
    uint8_t plain[32], cipher[32];
    sha_of_file(file, plain);
    char *out = NULL;
    assert_int_equal(ent_send(&out, file, "sealed-1", TAGS("general:2"), "--seal"), 0);
    assert_non_null(strstr(out, "state      receipted"));
    assert_non_null(strstr(out, "sealed     yes"));
    uint8_t got[32];
    out_hex(out, "plaintext", got, 32);
    assert_memory_equal(got, plain, 32);
    out_hex(out, "sha256", cipher, 32);
    uint64_t clen = 0;
    assert_int_equal(tdsx_seal_ciphertext_len(200000, &clen), 0);
    char want_len[64];
    snprintf(want_len, sizeof want_len, "length     %llu\n", (unsigned long long)clen);
    assert_non_null(strstr(out, want_len)); /* the NRO describes the ciphertext */
    free(out);

    /* The brain holds the plaintext, byte for byte, and says where. */
    char *obj = object_path(&W.brain, plain);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.opened\"",
                                   "\"dataset\":\"sealed-1\"", obj, NULL));
    assert_file_equal(obj, file);
    /* Its ciphertext is what went on the wire. */
    assert_ciphertext(&W.brain, cipher, plain);
    /* The sender's sealed temporary file went once the transfer was final. */
    assert_int_equal(count_tmp(&W.ent, ".sealed"), 0);
    free(obj);
    free(file);
}

/* A catalog dataset is sealed like a file; what the sender's policy refuses leaves nothing. */
static void sealed_dataset_and_sender_refusal(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "catalog.bin");
    write_random(file, 65536); /* exactly one full record */
    uint8_t plain[32];
    sha_of_file(file, plain);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx catalog publish --socket '%s' '%s' --id cat-1 --tags '%s'",
                                   W.ent.sock, file, TAGS("general:1")),
                     0);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx send --socket '%s' --to %s --dataset cat-1 --seal 2>&1",
                                   W.ent.sock, W.brain.id),
                     0);
    assert_non_null(strstr(out, "state      receipted"));
    assert_non_null(strstr(out, "sealed     yes"));
    free(out);
    char *obj = object_path(&W.brain, plain);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.opened\"",
                                   "\"dataset\":\"cat-1\"", obj, NULL));
    assert_file_equal(obj, file);
    free(obj);
    /* Core data is refused by the sender after sealing: the sealed stream does not stay. */
    assert_int_equal(ent_send(&out, file, "core-sealed",
                              "grade=core domain=production category=production.control "
                              "personal=none library=base source=enterprise",
                              "--seal"),
                     1);
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_int_equal(count_tmp(&W.ent, ".sealed"), 0);
    assert_int_equal(tdsx_test_log_count(&W.brain, "core-sealed", NULL), 0);
    free(file);
}

/* ---- relay ----------------------------------------------------------------------------------- */

/* The brain stores what it cannot open and relays it; the centre opens it. */
static void relay_forwards_what_it_cannot_open(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "relay.bin");
    write_random(file, 70000);
    uint8_t plain[32], cipher[32], tid[16], relay_tid[16];
    sha_of_file(file, plain);
    char *out = NULL, *more = fmt("--seal --final %s", W.centre.id);
    assert_int_equal(ent_send(&out, file, "relay-1", TAGS("general:2"), more), 0);
    free(more);
    assert_non_null(strstr(out, "state      receipted"));
    out_hex(out, "transfer", tid, 16);
    out_hex(out, "sha256", cipher, 32);
    free(out);
    /* The brain keeps the ciphertext only: no plaintext object, nothing opened. */
    assert_ciphertext(&W.brain, cipher, plain);
    assert_false(object_exists(&W.brain, plain));
    assert_int_equal(tdsx_test_log_count(&W.brain, "transfer.opened", "relay-1", NULL), 0);

    int centre_objects = count_objects(&W.centre);
    int rc = brain_relay(&out, tid);
    if (rc)
        fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "state      receipted"));
    assert_non_null(strstr(out, "sealed     yes"));
    out_hex(out, "transfer", relay_tid, 16);
    free(out);
    assert_memory_not_equal(relay_tid, tid, 16);
    /* The centre holds the ciphertext and the plaintext, equal to the original. */
    char *obj = object_path(&W.centre, plain);
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"transfer.opened\"",
                                   "\"dataset\":\"relay-1\"", obj, NULL));
    assert_file_equal(obj, file);
    assert_int_equal(count_objects(&W.centre), centre_objects + 2);
    free(obj);

    /* The relay's NRO names the upstream receipt: SHA-256 of the brain's upstream NRR. */
    char *up_file = tdsx_test_path(W.p.dir, "up.receipt"),
         *down_file = tdsx_test_path(W.p.dir, "down.receipt");
    char hex[33], rhex[33];
    tdsx_hex_encode(hex, tid, 16);
    tdsx_hex_encode(rhex, relay_tid, 16);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx receipts show %s --socket '%s' --anchor '%s' --out '%s'",
                                   hex, W.brain.sock, W.root, up_file),
                     0);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx receipts show %s --socket '%s' --anchor '%s' --out '%s'",
                                   rhex, W.centre.sock, W.root, down_file),
                     0);
    assert_non_null(strstr(out, "dataset    relay-1"));
    free(out);
    uint8_t *up = NULL, *down = NULL;
    size_t up_len = 0, down_len = 0;
    assert_int_equal(tdsx_file_read(up_file, 1u << 20, &up, &up_len), 0);
    assert_int_equal(tdsx_file_read(down_file, 1u << 20, &down, &down_len), 0);
    Tdsx__ReceiptBundle *ub = tdsx__receipt_bundle__unpack(NULL, up_len, up);
    Tdsx__ReceiptBundle *db = tdsx__receipt_bundle__unpack(NULL, down_len, down);
    assert_non_null(ub);
    assert_non_null(db);
    uint8_t nrr_hash[32];
    assert_int_equal(tdsx_sha256(ub->nrr.data, ub->nrr.len, nrr_hash), 0);
    /* Decode the relay NRO after verifying it with the brain's sign key (from its certificate). */
    const uint8_t *q = db->sender_cert.data;
    X509 *cert = d2i_X509(NULL, &q, (long)db->sender_cert.len);
    assert_non_null(cert);
    tdsx_trust_t *trust = NULL;
    assert_int_equal(tdsx_trust_new(&trust), 0);
    assert_int_equal(tdsx_trust_add_anchors_file(trust, W.root), 0);
    char *chain = tdsx_test_path(W.brain.creds, "chain.pem");
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    assert_int_equal(tdsx_file_read(chain, 1u << 20, &pem, &pem_len), 0);
    assert_int_equal(tdsx_trust_add_intermediates_pem(trust, pem, pem_len), 0);
    tdsx_identity_t id;
    tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_BRAIN, 0, 0};
    assert_int_equal(tdsx_cert_verify(trust, cert, NULL, &o, &id), 0);
    tdsx_verifier_t *v = NULL;
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    assert_int_equal(tdsx_verifier_add_key(v, id.pubkey), 0);
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    ProtobufCMessage *m = NULL;
    assert_int_equal(tdsx_statement_open(v, TDSX_STATEMENT_NRO,
                                         tdsx_bytes(db->nro.data, db->nro.len), a, &m, NULL),
                     0);
    const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
    assert_string_equal(nro->sender, W.brain.id);
    assert_string_equal(nro->receiver, W.centre.id);
    assert_string_equal(nro->dataset_id, "relay-1");
    assert_true(nro->sealed);
    assert_string_equal(nro->final_recipient, W.centre.id);
    assert_int_equal(nro->upstream_receipt_hash.len, 32);
    assert_memory_equal(nro->upstream_receipt_hash.data, nrr_hash, 32);
    assert_int_equal(nro->plaintext_sha256.len, 32);
    assert_memory_equal(nro->plaintext_sha256.data, plain, 32);
    assert_memory_equal(nro->payload_sha256.data, cipher, 32); /* forwarded as it came */
    assert_non_null(nro->tags);
    assert_int_equal(nro->tags->general_level, 2);
    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    tdsx_trust_free(trust);
    X509_free(cert);
    tdsx_free(pem);
    free(chain);
    tdsx__receipt_bundle__free_unpacked(ub, NULL);
    tdsx__receipt_bundle__free_unpacked(db, NULL);
    tdsx_free(up);
    tdsx_free(down);
    free(up_file);
    free(down_file);
    free(file);
}

/* The relay's stored ciphertext damaged: the centre signs INTEGRITY_FAILED and keeps nothing. */
static void damaged_relay_copy_is_an_integrity_failure(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "damaged.bin");
    write_random(file, 100000);
    uint8_t plain[32], cipher[32], tid[16];
    sha_of_file(file, plain);
    char *out = NULL, *more = fmt("--seal --final %s", W.centre.id);
    assert_int_equal(ent_send(&out, file, "damaged-1", TAGS("general:2"), more), 0);
    free(more);
    out_hex(out, "transfer", tid, 16);
    out_hex(out, "sha256", cipher, 32);
    free(out);
    /* One byte inside a data record changes in the brain's store. */
    char *obj = object_path(&W.brain, cipher);
    FILE *f = fopen(obj, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 5000, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 5000, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    fclose(f);
    free(obj);
    int centre_objects = count_objects(&W.centre);
    assert_int_equal(brain_relay(&out, tid), 1);
    assert_non_null(strstr(out, "state      refused"));
    assert_non_null(strstr(out, "TDSX_E_INTEGRITY"));
    free(out);
    assert_false(object_exists(&W.centre, plain));
    assert_int_equal(count_objects(&W.centre), centre_objects);
    assert_int_equal(count_tmp(&W.centre, ".part"), 0);
    free(file);
}

/* Relaying needs a transfer this node received and accepted. */
static void relay_of_what_was_not_received_is_refused(void **state)
{
    (void)state;
    char *out = NULL;
    uint8_t unknown[16];
    randombytes_buf(unknown, sizeof unknown);
    assert_int_equal(brain_relay(&out, unknown), 2);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    free(out);
    /* The enterprise's own outbound transfer is not something it received. */
    char *file = tdsx_test_path(W.p.dir, "own.bin");
    write_random(file, 1000);
    assert_int_equal(ent_send(&out, file, "own-1", TAGS("general:1"), NULL), 0);
    uint8_t tid[16];
    out_hex(out, "transfer", tid, 16);
    free(out);
    char hex[33];
    tdsx_hex_encode(hex, tid, 16);
    assert_int_equal(tdsx_test_run(&out, "tdsx send --socket '%s' --to %s --relay %s 2>&1",
                                   W.ent.sock, W.brain.id, hex),
                     1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);
    /* A relay takes nothing but the transfer id. */
    assert_int_equal(tdsx_test_run(&out, "tdsx send --socket '%s' --to %s --relay %s '%s' 2>&1",
                                   W.brain.sock, W.centre.id, hex, file),
                     2);
    assert_non_null(strstr(out, "--relay takes no FILE"));
    free(out);
    free(file);
}

/* decide() sees relay = 1: the brain's [relay-l4] refuses the relay, not the direct receive. */
static void policy_sees_the_relay(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "l4.bin");
    write_random(file, 3000);
    char *out = NULL, *more = fmt("--seal --final %s", W.centre.id);
    assert_int_equal(ent_send(&out, file, "l4-1", TAGS("general:4"), more), 0);
    free(more);
    uint8_t tid[16];
    out_hex(out, "transfer", tid, 16);
    free(out);
    assert_int_equal(brain_relay(&out, tid), 1);
    assert_non_null(strstr(out, "refused"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"policy.refused\"",
                                   "\"rule\":\"relay-l4\"", "\"dir\":\"out\"", NULL));
    assert_int_equal(tdsx_test_log_count(&W.centre, "l4-1", NULL), 0);
    free(file);
}

/* ---- policy ---------------------------------------------------------------------------------- */

/* [seal-l3] allows general:3 only sealed: the unsealed send is refused by the brain. */
static void require_seal_allows_only_the_sealed_variant(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "l3.bin");
    write_random(file, 4096);
    int objects = count_objects(&W.brain);
    char *out = NULL;
    assert_int_equal(ent_send(&out, file, "l3-plain", TAGS("general:3"), NULL), 1);
    assert_non_null(strstr(out, "state      refused"));
    assert_non_null(strstr(out, "under rule seal-l3"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_SEAL"));
    free(out);
    assert_int_equal(count_objects(&W.brain), objects);
    assert_int_equal(ent_send(&out, file, "l3-sealed", TAGS("general:3"), "--seal"), 0);
    assert_non_null(strstr(out, "state      receipted"));
    free(out);
    /* Ciphertext and plaintext. */
    assert_int_equal(count_objects(&W.brain), objects + 2);
    free(file);
}

/* ---- unusable keys --------------------------------------------------------------------------- */

static void sealing_to_an_unusable_key_is_refused_before_sending(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.p.dir, "badkey.bin");
    write_random(file, 2048);
    char *out = NULL, *more;
    /* The zero key: refused at once. */
    more = fmt("--seal --final %s", W.ghost.id);
    assert_int_equal(ent_send(&out, file, "bad-zero", TAGS("general:1"), more), 1);
    assert_non_null(strstr(out, "TDSX_E_KEY"));
    free(out);
    free(more);
    /* A low-order point: refused by the sealer on the thread pool, nothing sent. */
    more = fmt("--seal --final %s", W.ghost2.id);
    assert_int_equal(ent_send(&out, file, "bad-order", TAGS("general:1"), more), 1);
    assert_non_null(strstr(out, "TDSX_E_KEY"));
    free(out);
    free(more);
    assert_true(
        tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"transfer.seal_failed\"", W.ghost2.id, NULL));
    /* A node not in the registry. */
    assert_int_equal(ent_send(&out, file, "bad-nobody", TAGS("general:1"),
                              "--seal --final 91350100M000100Y43/nobody"),
                     1);
    assert_non_null(strstr(out, "TDSX_E_PEER_UNKNOWN"));
    free(out);
    /* --final without --seal is a usage error. */
    more = fmt("--final %s", W.centre.id);
    assert_int_equal(ent_send(&out, file, "bad-usage", TAGS("general:1"), more), 2);
    assert_non_null(strstr(out, "needs --seal"));
    free(out);
    free(more);
    /* Nothing of these reached the brain, nothing is left behind. */
    assert_int_equal(tdsx_test_log_count(&W.brain, "\"dataset\":\"bad-", NULL), 0);
    assert_int_equal(count_tmp(&W.ent, ".sealed"), 0);
    free(file);
}

/* ---- a raw client that seals dishonestly ----------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n;
} blob_t;

static blob_t der_of(const char *pem_path)
{
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(pem_path, &sk), 0);
    unsigned char *der = NULL;
    int len = i2d_X509(sk_X509_value(sk, 0), &der);
    assert_true(len > 0);
    blob_t b = {malloc((size_t)len), (size_t)len};
    assert_non_null(b.p);
    memcpy(b.p, der, (size_t)len);
    OPENSSL_free(der);
    sk_X509_pop_free(sk, X509_free);
    return b;
}

/* Connects to the brain with the enterprise's credentials and says Hello as the daemon does. */
static void raw_open(tdsx_test_client_t *c)
{
    assert_int_equal(tdsx_test_client_open(c, &W.p, W.ent.creds, W.brain.port), 0);
    char *path = tdsx_test_path(W.ent.creds, "sign.pem");
    blob_t cert = der_of(path);
    free(path);
    path = tdsx_test_path(W.ent.creds, "chain.pem");
    blob_t chain = der_of(path);
    free(path);
    ProtobufCBinaryData chain_der = {chain.n, chain.p};
    Tdsx__Hello h = TDSX__HELLO__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    h.sign_cert.data = cert.p;
    h.sign_cert.len = cert.n;
    h.chain = &chain_der;
    h.n_chain = 1;
    h.software = "raw-seal-test";
    f.body_case = TDSX__FRAME__BODY_HELLO;
    f.hello = &h;
    tdsx_test_client_send_frame(c, &f);
    free(cert.p);
    free(chain.p);
}

/* The next frame that is not Hello, window credit or a pong; NULL after 5 s of silence. */
static Tdsx__Frame *raw_next(tdsx_test_client_t *c)
{
    for (;;) {
        uint8_t hdr[4];
        if (tdsx_test_client_recv(c, hdr, 4, 5000) != 4)
            return NULL;
        uint32_t len =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        uint8_t *body = malloc(len ? len : 1);
        assert_non_null(body);
        assert_int_equal(tdsx_test_client_recv(c, body, len, 5000), (long)len);
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

static Tdsx__Frame *raw_expect(tdsx_test_client_t *c, uint32_t stream, int body_case)
{
    Tdsx__Frame *f = raw_next(c);
    if (!f)
        fail_msg("no frame from the brain (wanted body %d)", body_case);
    if (f->body_case == TDSX__FRAME__BODY_TRANSFER_ABORT && body_case != (int)f->body_case)
        fprintf(stderr, "TransferAbort %s: %s\n",
                tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)),
                f->transfer_abort->message);
    if (f->body_case == TDSX__FRAME__BODY_ERROR)
        fprintf(stderr, "Error %s: %s\n", tdsx_err_name(tdsx_err_from_wire(f->error->code)),
                f->error->message);
    assert_int_equal(f->body_case, body_case);
    assert_int_equal(f->stream_id, stream);
    return f;
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

/* A sealed payload as a raw sender makes it. */
typedef struct {
    uint8_t tid[16];      /* the transfer id the NRO carries */
    uint8_t seal_tid[16]; /* the transfer id the stream is sealed under */
    uint8_t pk[32];       /* the key it is sealed to */
    uint8_t plain[5000];
    uint8_t plain_sha[32]; /* what the NRO claims */
    int sealed;            /* the NRO's sealed flag */
    int claim_plain;       /* the NRO carries plain_sha even when not sealed */
    tdsx_buf_t wire;       /* the bytes sent */
    uint8_t wire_sha[32];
} raw_seal_t;

static void load_enc_pub(const tdsx_test_node_t *n, uint8_t pk[32])
{
    char *path = tdsx_test_path(n->creds, TDSX_CRED_ENC_PUB);
    assert_int_equal(tdsx_key_load_x25519_pub(path, pk), 0);
    free(path);
}

static void raw_seal_init(raw_seal_t *r)
{
    memset(r, 0, sizeof *r);
    randombytes_buf(r->tid, 16);
    memcpy(r->seal_tid, r->tid, 16);
    load_enc_pub(&W.brain, r->pk);
    randombytes_buf(r->plain, sizeof r->plain);
    assert_int_equal(tdsx_sha256(r->plain, sizeof r->plain, r->plain_sha), 0);
    r->sealed = 1;
    tdsx_buf_init(&r->wire, 1u << 20);
}

/* Seals r->plain as configured, then `tamper` may alter r->wire before it is hashed. */
static void raw_seal_make(raw_seal_t *r, void (*tamper)(tdsx_buf_t *))
{
    tdsx_sealer_t *s = NULL;
    assert_int_equal(tdsx_sealer_new(r->pk, r->seal_tid, &r->wire, &s), 0);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(r->plain, sizeof r->plain), &r->wire), 0);
    assert_int_equal(tdsx_sealer_final(s, &r->wire, NULL), 0);
    tdsx_sealer_free(s);
    if (tamper)
        tamper(&r->wire);
    assert_int_equal(tdsx_sha256(r->wire.p, r->wire.len, r->wire_sha), 0);
}

static blob_t raw_nro(const raw_seal_t *r)
{
    Tdsx__Nro nro = TDSX__NRO__INIT;
    Tdsx__Tags tags = TDSX__TAGS__INIT;
    tdsx_tags_t t;
    tdsx_tags_error_t te;
    static const char text[] = TAGS("general:1");
    assert_int_equal(tdsx_tags_parse(tdsx_bytes(text, strlen(text)), &t, &te), 0);
    tags.grade = (Tdsx__Grade)t.grade;
    tags.general_level = t.level;
    tags.domain = (Tdsx__Domain)t.domain;
    tags.category = t.category;
    tags.personal = (Tdsx__Personal)t.personal;
    tags.library = (Tdsx__Library)t.library;
    tags.source = (Tdsx__Source)t.source;
    nro.transfer_id.data = (uint8_t *)r->tid;
    nro.transfer_id.len = 16;
    nro.sender = W.ent.id;
    nro.receiver = W.brain.id;
    nro.dataset_id = "raw-sealed";
    nro.tags = &tags;
    nro.payload_sha256.data = (uint8_t *)r->wire_sha;
    nro.payload_sha256.len = 32;
    nro.payload_length = r->wire.len;
    nro.sealed = r->sealed;
    if (r->sealed || r->claim_plain) {
        nro.plaintext_sha256.data = (uint8_t *)r->plain_sha;
        nro.plaintext_sha256.len = 32;
    }
    if (r->sealed)
        nro.final_recipient = W.brain.id;
    nro.sequence = 1;
    nro.time = (int64_t)time(NULL);
    uint8_t seed[32];
    char *path = tdsx_test_path(W.ent.creds, "sign.key");
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    free(path);
    tdsx_signer_t *s = NULL;
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), 0);
    sodium_memzero(seed, sizeof seed);
    blob_t env = {NULL, 0};
    assert_int_equal(tdsx_statement_submit(s, TDSX_STATEMENT_NRO, &nro.base, on_signed, &env), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    tdsx_signer_free(s);
    assert_non_null(env.p);
    return env;
}

static void raw_frame_start(tdsx_test_client_t *c, uint32_t stream, blob_t nro)
{
    Tdsx__TransferStart st = TDSX__TRANSFER_START__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    st.nro.data = nro.p;
    st.nro.len = nro.n;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_START;
    f.transfer_start = &st;
    tdsx_test_client_send_frame(c, &f);
}

static void raw_frame_data(tdsx_test_client_t *c, uint32_t stream, const raw_seal_t *r)
{
    Tdsx__TransferData d = TDSX__TRANSFER_DATA__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    d.offset = 0;
    d.chunk.data = r->wire.p;
    d.chunk.len = r->wire.len;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &d;
    tdsx_test_client_send_frame(c, &f);
}

static void raw_frame_end(tdsx_test_client_t *c, uint32_t stream, const raw_seal_t *r)
{
    Tdsx__TransferEnd e = TDSX__TRANSFER_END__INIT;
    Tdsx__Frame g = TDSX__FRAME__INIT;
    e.length = r->wire.len;
    e.sha256.data = (uint8_t *)r->wire_sha;
    e.sha256.len = 32;
    g.stream_id = stream;
    g.body_case = TDSX__FRAME__BODY_TRANSFER_END;
    g.transfer_end = &e;
    tdsx_test_client_send_frame(c, &g);
}

/* Sends r whole on a new stream; the brain must answer with a signed INTEGRITY_FAILED NRR,
 * log `open_err`, and keep neither the plaintext nor the ciphertext. */
static void raw_expect_integrity_failed(raw_seal_t *r, uint32_t stream, int open_err)
{
    int objects = count_objects(&W.brain);
    blob_t nro = raw_nro(r);
    tdsx_test_client_t c;
    raw_open(&c);
    raw_frame_start(&c, stream, nro);
    Tdsx__Frame *f = raw_expect(&c, stream, TDSX__FRAME__BODY_TRANSFER_ACCEPT);
    tdsx__frame__free_unpacked(f, NULL);
    raw_frame_data(&c, stream, r);
    raw_frame_end(&c, stream, r);
    f = raw_expect(&c, stream, TDSX__FRAME__BODY_TRANSFER_RECEIPT);
    tdsx_arena_t *a = NULL;
    tdsx_verifier_t *v = NULL;
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a), 0);
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    char *path = tdsx_test_path(W.brain.creds, "sign.key");
    uint8_t seed[32], pk[32], sk[64];
    assert_int_equal(tdsx_key_load_ed25519(path, seed), 0);
    free(path);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    ProtobufCMessage *m = NULL;
    assert_int_equal(
        tdsx_statement_open(v, TDSX_STATEMENT_NRR,
                            tdsx_bytes(f->transfer_receipt->nrr.data, f->transfer_receipt->nrr.len),
                            a, &m, NULL),
        0);
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)m;
    assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED);
    tdsx_arena_free(a);
    tdsx_verifier_free(v);
    tdsx__frame__free_unpacked(f, NULL);
    tdsx_test_client_free(&c);
    char hex[33];
    tdsx_hex_encode(hex, r->tid, 16);
    char err[64];
    snprintf(err, sizeof err, "\"err\":\"%s\"", tdsx_err_name(open_err));
    assert_true(
        tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.open_failed\"", hex, err, NULL));
    assert_false(object_exists(&W.brain, r->plain_sha));
    assert_int_equal(count_objects(&W.brain), objects);
    assert_int_equal(count_tmp(&W.brain, ".part"), 0);
    free(nro.p);
    tdsx_buf_free(&r->wire);
}

static void flip_in_first_record(tdsx_buf_t *b)
{
    b->p[TDSX_SEAL_HEADER_LEN + 100] ^= 0x01;
}

static void flip_in_wrapped_key(tdsx_buf_t *b)
{
    b->p[20] ^= 0x80;
}

static void flip_in_final_record(tdsx_buf_t *b)
{
    b->p[b->len - 3] ^= 0x10;
}

/* Bytes altered in flight, with the NRO and TransferEnd declaring the altered bytes: only
 * opening can tell, and the brain says INTEGRITY_FAILED. */
static void tampered_in_flight_is_an_integrity_failure(void **state)
{
    (void)state;
    raw_seal_t r;
    raw_seal_init(&r);
    raw_seal_make(&r, flip_in_first_record);
    raw_expect_integrity_failed(&r, 1, TDSX_E_SEAL);
    raw_seal_init(&r);
    raw_seal_make(&r, flip_in_final_record);
    raw_expect_integrity_failed(&r, 1, TDSX_E_SEAL);
    raw_seal_init(&r);
    raw_seal_make(&r, flip_in_wrapped_key);
    raw_expect_integrity_failed(&r, 1, TDSX_E_SEAL_RECIPIENT);
}

static void sealed_for_someone_else_is_an_integrity_failure(void **state)
{
    (void)state;
    raw_seal_t r;
    /* Sealed to the centre's key while the NRO says the brain is the final recipient. */
    raw_seal_init(&r);
    load_enc_pub(&W.centre, r.pk);
    raw_seal_make(&r, NULL);
    raw_expect_integrity_failed(&r, 1, TDSX_E_SEAL_RECIPIENT);
    /* Sealed inside another transfer: the stream is bound to its transfer id. */
    raw_seal_init(&r);
    randombytes_buf(r.seal_tid, sizeof r.seal_tid);
    raw_seal_make(&r, NULL);
    raw_expect_integrity_failed(&r, 1, TDSX_E_SEAL);
    /* An authentic stream whose plaintext is not the one the NRO promised. */
    raw_seal_init(&r);
    r.plain_sha[0] ^= 1;
    raw_seal_make(&r, NULL);
    raw_expect_integrity_failed(&r, 1, TDSX_E_HASH_MISMATCH);
}

/* A payload claimed sealed that is no sealed stream: refused before it is stored. */
static void claimed_seal_that_is_not_one_is_refused(void **state)
{
    (void)state;
    raw_seal_t r;
    tdsx_test_client_t c;
    /* A length no sealed stream has (longer than an empty one, too short for one record):
     * refused at TransferStart. */
    raw_seal_init(&r);
    uint64_t plain_len;
    assert_int_not_equal(tdsx_seal_plaintext_len(180, &plain_len), 0);
    assert_int_equal(tdsx_buf_append(&r.wire, r.plain, 180), 0);
    assert_int_equal(tdsx_sha256(r.wire.p, r.wire.len, r.wire_sha), 0);
    blob_t nro = raw_nro(&r);
    raw_open(&c);
    raw_frame_start(&c, 1, nro);
    Tdsx__Frame *f = raw_expect(&c, 1, TDSX__FRAME__BODY_TRANSFER_ABORT);
    assert_string_equal(tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)), "TDSX_E_SEAL");
    tdsx__frame__free_unpacked(f, NULL);
    free(nro.p);
    tdsx_buf_free(&r.wire);
    /* The right length but not a sealed stream's first bytes: refused with the first chunk. */
    raw_seal_init(&r);
    raw_seal_make(&r, NULL);
    memset(r.wire.p, 'x', 9);
    assert_int_equal(tdsx_sha256(r.wire.p, r.wire.len, r.wire_sha), 0);
    nro = raw_nro(&r);
    raw_frame_start(&c, 3, nro);
    f = raw_expect(&c, 3, TDSX__FRAME__BODY_TRANSFER_ACCEPT);
    tdsx__frame__free_unpacked(f, NULL);
    raw_frame_data(&c, 3, &r); /* no TransferEnd: a sender stops once aborted */
    f = raw_expect(&c, 3, TDSX__FRAME__BODY_TRANSFER_ABORT);
    assert_string_equal(tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)), "TDSX_E_SEAL");
    tdsx__frame__free_unpacked(f, NULL);
    free(nro.p);
    tdsx_buf_free(&r.wire);
    /* A plaintext hash on a payload not said to be sealed. */
    raw_seal_init(&r);
    raw_seal_make(&r, NULL);
    r.sealed = 0;
    r.claim_plain = 1;
    nro = raw_nro(&r);
    raw_frame_start(&c, 5, nro);
    f = raw_expect(&c, 5, TDSX__FRAME__BODY_TRANSFER_ABORT);
    assert_string_equal(tdsx_err_name(tdsx_err_from_wire(f->transfer_abort->code)),
                        "TDSX_E_PROTO_FIELD");
    tdsx__frame__free_unpacked(f, NULL);
    free(nro.p);
    tdsx_buf_free(&r.wire);
    tdsx_test_client_free(&c);
    assert_int_equal(count_tmp(&W.brain, ".part"), 0);
}

static off_t largest_part(const tdsx_test_node_t *n)
{
    char *dir = fmt("%s/tmp", n->data);
    DIR *d = opendir(dir);
    off_t max = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".part") != 0)
            continue;
        struct stat st;
        char *p = fmt("%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && st.st_size > max)
            max = st.st_size;
        free(p);
    }
    if (d)
        closedir(d);
    free(dir);
    return max;
}

/* ---- resume (last: it restarts the brain) ---------------------------------------------------- */

/* The brain is killed in the middle of a sealed 24 MiB payload: the sender keeps its sealed
 * stream, resumes with the same bytes from the brain's durable offset, and the brain opens the
 * whole; the sealed temporary file goes once the receipt is held. */
static void interrupted_sealed_send_resumes(void **state)
{
    (void)state;
    const size_t size = 24u << 20;
    char *file = tdsx_test_path(W.p.dir, "resume.bin");
    char *out_path = tdsx_test_path(W.p.dir, "resume.out");
    char *rc_path = tdsx_test_path(W.p.dir, "resume.rc");
    write_random(file, size);
    uint8_t plain[32];
    sha_of_file(file, plain);
    assert_int_equal(
        tdsx_test_run(NULL,
                      "( tdsx send --socket '%s' --to %s '%s' --dataset big-sealed --tags '%s' "
                      "--seal > '%s' 2>&1; echo $? > '%s.tmp'; mv '%s.tmp' '%s' ) "
                      "</dev/null >/dev/null 2>&1 &",
                      W.ent.sock, W.brain.id, file, TAGS("general:2"), out_path, rc_path, rc_path,
                      rc_path),
        0);
    off_t held = 0;
    for (int i = 0; i < 30000 && (held = largest_part(&W.brain)) <= (off_t)(3u << 20); i++) {
        if (access(rc_path, F_OK) == 0)
            break;
        usleep(1000);
    }
    if (held <= (off_t)(3u << 20))
        fail_msg("the brain never held more than 3 MiB (largest part %lld)", (long long)held);
    assert_int_equal(kill(W.brain.pid, SIGKILL), 0);
    assert_int_equal(waitpid(W.brain.pid, NULL, 0), W.brain.pid);
    W.brain.pid = 0;
    for (int i = 0; i < 1500 && access(rc_path, F_OK) != 0; i++)
        usleep(10000);
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(out_path, 1u << 20, &text, &len), 0);
    assert_non_null(strstr((char *)text, "interrupted"));
    uint8_t tid[16];
    out_hex((char *)text, "transfer", tid, 16);
    tdsx_free(text);
    /* The sealed stream waits for the resume. */
    assert_int_equal(count_tmp(&W.ent, ".sealed"), 1);
    assert_false(object_exists(&W.brain, plain));

    tdsx_test_node_start(&W.brain);
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"conn.open\"", W.ent.id, NULL));
    char hex[33];
    tdsx_hex_encode(hex, tid, 16);
    char *out = NULL;
    int rc = 2;
    for (int i = 0; i < 100; i++) {
        free(out);
        out = NULL;
        rc = tdsx_test_run(&out,
                           "tdsx send --socket '%s' --to %s '%s' --dataset big-sealed --tags '%s' "
                           "--resume %s 2>&1",
                           W.ent.sock, W.brain.id, file, TAGS("general:2"), hex);
        if (rc != 2 || !strstr(out, "TDSX_E_AGAIN"))
            break;
        usleep(100000); /* until the Hellos are exchanged again */
    }
    if (rc != 0)
        fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "state      receipted"));
    assert_non_null(strstr(out, "sealed     yes"));
    free(out);
    char *line = tdsx_test_log_line(&W.brain, "\"event\":\"transfer.resumed\"",
                                    "\"dataset\":\"big-sealed\"", NULL);
    assert_non_null(line);
    const char *o = strstr(line, "\"offset\":");
    assert_non_null(o);
    assert_true(strtoull(o + 9, NULL, 10) > 0); /* went on, did not start over */
    free(line);
    char *obj = object_path(&W.brain, plain);
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"transfer.opened\"",
                                   "\"dataset\":\"big-sealed\"", obj, NULL));
    assert_file_equal(obj, file);
    free(obj);
    assert_int_equal(count_tmp(&W.ent, ".sealed"), 0);
    assert_int_equal(count_tmp(&W.brain, ".part"), 0);
    unlink(file);
    free(file);
    free(out_path);
    free(rc_path);
}

/* Every daemon drains and exits 0, and none reported a memory error, a leak or undefined
 * behaviour in the sealing, opening and relaying above (their stderr is their log). */
static void daemons_stop_cleanly(void **state)
{
    (void)state;
    tdsx_test_node_t *all[] = {&W.ent, &W.brain, &W.centre};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_int_equal(tdsx_test_node_stop(all[i], 10000), 0);
        assert_true(tdsx_test_log_wait(all[i], 1000, "\"event\":\"node.stopped\"", NULL));
        assert_int_equal(tdsx_test_log_count(all[i], "Sanitizer", NULL), 0);
        assert_int_equal(tdsx_test_log_count(all[i], "runtime error:", NULL), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sealed_transfer_opens_at_the_receiver),
        cmocka_unit_test(sealed_dataset_and_sender_refusal),
        cmocka_unit_test(relay_forwards_what_it_cannot_open),
        cmocka_unit_test(damaged_relay_copy_is_an_integrity_failure),
        cmocka_unit_test(relay_of_what_was_not_received_is_refused),
        cmocka_unit_test(policy_sees_the_relay),
        cmocka_unit_test(require_seal_allows_only_the_sealed_variant),
        cmocka_unit_test(sealing_to_an_unusable_key_is_refused_before_sending),
        cmocka_unit_test(tampered_in_flight_is_an_integrity_failure),
        cmocka_unit_test(sealed_for_someone_else_is_an_integrity_failure),
        cmocka_unit_test(claimed_seal_that_is_not_one_is_refused),
        cmocka_unit_test(interrupted_sealed_send_resumes),
        cmocka_unit_test(daemons_stop_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
