/*
 * Policy enforcement with real daemons (SPEC §8): the sender decides before anything leaves,
 * the receiver before accepting (its refusal is a signed NRR), SIGHUP swaps the policy
 * atomically (a bad file is refused, the old one kept) and a reloaded policy that now
 * refuses a running transfer aborts it with nothing stored.
 */
#include "daemon.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t brain, ent;
    char *brain_policy;
    char *file;     /* 1 KiB */
    char *big;      /* 48 MiB */
    char *root;     /* province root.pem */
    char *receipts; /* where refused receipts are written */
} world_t;

static world_t W;

#define TAGS(grade, lib)                                                                           \
    "grade=" grade " domain=production category=production.process personal=none "                 \
    "library=" lib " source=enterprise"

static const char brain_policy[] = "[no-scenario]  deny  library scenario from enterprise\n"
                                   "[general]      allow grade general from any\n"
                                   "[default]      deny  any\n";

static char *path_in(const char *dir, const char *name)
{
    return tdsx_test_path(dir, name);
}

static void write_random(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t buf[65536];
    uint32_t x = 0x12345678u;
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        for (size_t i = 0; i < k; i++) {
            x = x * 1664525u + 1013904223u; /* deterministic filler (an LCG) */
            buf[i] = (uint8_t)(x >> 24);
        }
        assert_int_equal(fwrite(buf, 1, k, f), k);
        n -= k;
    }
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.brain_policy = path_in(p->dir, "brain-policy.txt");
    tdsx_test_write_file(W.brain_policy, brain_policy, strlen(brain_policy));
    char *ent_policy = path_in(p->dir, "ent-policy.txt");
    /* The sender allows everything; only the floors hold it back. */
    tdsx_test_write_file(ent_policy, "allow any\n", 10);
    char extra[8192];
    /* Small windows keep a large transfer running long enough to be reloaded under, and
     * exercise flow control at its tightest. */
    snprintf(extra, sizeof extra,
             "policy %s\nstream_window 16k\nconn_window 16k\nmax_streams 2\npart_ttl 2s\n",
             W.brain_policy);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra, "policy %s\npeer %s 127.0.0.1:%d\n", ent_policy, W.brain.id,
             W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    free(ent_policy);
    W.file = path_in(p->dir, "small.bin");
    write_random(W.file, 1024);
    W.big = path_in(p->dir, "big.bin");
    write_random(W.big, 48u << 20);
    W.root = path_in(p->ca, "root.pem");
    W.receipts = path_in(p->dir, "receipt.bin");
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    /* Both Hellos are exchanged right after the handshake; give them a moment. */
    usleep(200000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.ent);
    free(W.brain_policy);
    free(W.file);
    free(W.big);
    free(W.root);
    free(W.receipts);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* Number of entries in data_dir/sub. */
static int count_files(const tdsx_test_node_t *n, const char *sub)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", n->data, sub);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (strcmp(sub, "objects") == 0) {
            char inner[4096 + 300];
            snprintf(inner, sizeof inner, "%s/%s", sub, e->d_name);
            count += count_files(n, inner);
        } else {
            count++;
        }
    }
    closedir(d);
    return count;
}

static int send_file(char **out, const char *file, const char *dataset, const char *tags,
                     const char *receipt)
{
    return tdsx_test_run(
        out, "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags '%s' %s%s 2>&1", W.ent.sock,
        W.brain.id, file, dataset, tags, receipt ? "--receipt-out " : "", receipt ? receipt : "");
}

static void allowed_transfer_is_receipted(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(send_file(&out, W.file, "ok-1", TAGS("general:1", "base"), NULL), 0);
    assert_non_null(strstr(out, "state      receipted"));
    free(out);
    /* The NRR names the receiver's rule. */
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.receipted\"",
                                   "\"dataset\":\"ok-1\"", NULL));
}

/* The receiver's policy refuses: the sender gets a signed refusal naming the rule, both keep
 * the receipt, nothing is stored. */
static void receiver_refusal_is_a_signed_receipt(void **state)
{
    (void)state;
    int objects = count_files(&W.brain, "objects");
    char *out = NULL;
    assert_int_equal(send_file(&out, W.file, "scen-1", TAGS("general:1", "scenario"), W.receipts),
                     1);
    assert_non_null(strstr(out, "state      refused"));
    assert_non_null(strstr(out, "under rule no-scenario"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"policy.refused\"",
                                   "\"rule\":\"no-scenario\"", "\"dir\":\"in\"", NULL));
    assert_int_equal(count_files(&W.brain, "objects"), objects);
    /* The refusal verifies offline like any receipt, and says what it is. */
    assert_int_equal(
        tdsx_test_run(&out, "tdsx receipts verify '%s' --anchor '%s'", W.receipts, W.root), 0);
    assert_non_null(strstr(out, "status     policy-refused"));
    free(out);
}

/* Core data never leaves: refused by the sender, the receiver never hears of it. */
static void core_never_leaves(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(send_file(&out, W.file, "core-1",
                               "grade=core domain=production "
                               "category=production.control personal=none "
                               "library=base source=enterprise",
                               NULL),
                     1);
    assert_non_null(strstr(out, "refused"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"policy.refused\"",
                                   "\"rule\":\"floor:core-stays-home\"", NULL));
    assert_false(tdsx_test_log_wait(&W.brain, 300, "core-1", NULL));
}

static void personal_needs_purpose(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(send_file(&out, W.file, "pi-1",
                               "grade=general:2 domain=production "
                               "category=production.process "
                               "personal=personal library=base "
                               "source=enterprise",
                               NULL),
                     1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);
    assert_true(
        tdsx_test_log_wait(&W.ent, 3000, "\"rule\":\"floor:personal-needs-purpose\"", NULL));
}

static void bad_tags_refused(void **state)
{
    (void)state;
    char *out = NULL;
    /* No tags at all. */
    assert_int_equal(tdsx_test_run(&out, "tdsx send --socket '%s' --to %s '%s' 2>&1", W.ent.sock,
                                   W.brain.id, W.file),
                     1);
    assert_non_null(strstr(out, "TDSX_E_TAGS"));
    free(out);
    /* A category the taxonomy does not have. */
    assert_int_equal(send_file(&out, W.file, "tax-1",
                               "grade=general:1 domain=production "
                               "category=production.nonsense "
                               "personal=none library=base "
                               "source=enterprise",
                               NULL),
                     1);
    assert_non_null(strstr(out, "TDSX_E_TAGS"));
    free(out);
    /* Malformed text is refused by the daemon before any transfer. */
    assert_int_equal(send_file(&out, W.file, "tax-2", "grade=medium", NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_TAGS"));
    free(out);
}

/* SIGHUP with a broken file: refused, the old policy stays in force. */
static void bad_reload_keeps_old_policy(void **state)
{
    (void)state;
    tdsx_test_write_file(W.brain_policy, "allow grade medium\n", 19);
    kill(W.brain.pid, SIGHUP);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"policy.reload_refused\"", NULL));
    char *out = NULL;
    assert_int_equal(send_file(&out, W.file, "ok-2", TAGS("general:1", "base"), NULL), 0);
    free(out);
    assert_int_equal(send_file(&out, W.file, "scen-2", TAGS("general:1", "scenario"), NULL), 1);
    assert_non_null(strstr(out, "no-scenario"));
    free(out);
}

/* A reload that refuses a running transfer aborts it at both ends; nothing partial stays. */
static void reload_aborts_running_transfer(void **state)
{
    (void)state;
    char *outfile = path_in(W.p.dir, "big-send.out");
    int objects = count_files(&W.brain, "objects");
    char *ignored = NULL;
    assert_int_equal(
        tdsx_test_run(&ignored,
                      "(tdsx send --socket '%s' --to %s '%s' --dataset big-1 "
                      "--tags '%s' > '%s' 2>&1; echo \"exit $?\" >> '%s') >/dev/null 2>&1 &",
                      W.ent.sock, W.brain.id, W.big, TAGS("general:2", "base"), outfile, outfile),
        0);
    free(ignored);
    /* Wait until the receiver holds part of it. */
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"transfer.started\"",
                                   "\"dataset\":\"big-1\"", NULL));
    static const char deny_all[] = "[closed] deny any\n";
    tdsx_test_write_file(W.brain_policy, deny_all, strlen(deny_all));
    kill(W.brain.pid, SIGHUP);
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"policy.reloaded\"", NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"policy.refused\"",
                                   "\"rule\":\"closed\"", "\"dataset\":\"big-1\"", NULL));
    /* The sender learns it and stops. */
    char *out = NULL;
    for (int i = 0; i < 200; i++) {
        free(out);
        out = NULL;
        uint8_t *text = NULL;
        size_t len;
        if (tdsx_file_read(outfile, 1 << 20, &text, &len) == 0) {
            out = strdup((char *)text);
            tdsx_free(text);
            if (strstr(out, "exit "))
                break;
        }
        usleep(50000);
    }
    assert_non_null(out);
    assert_non_null(strstr(out, "exit 1"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_int_equal(count_files(&W.brain, "objects"), objects);
    assert_int_equal(count_files(&W.brain, "tmp"), 0);
    free(outfile);
}

/* A peer may hold at most max_streams (2 here) streams open at once: a third concurrent
 * transfer is refused on its own stream (TDSX_E_TOOBIG), the others complete. */
static void stream_limit_per_connection(void **state)
{
    (void)state;
    char *outs[3];
    char *ignored = NULL;
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "limit-%d.out", i);
        outs[i] = path_in(W.p.dir, name);
        assert_int_equal(tdsx_test_run(&ignored,
                                       "(tdsx send --socket '%s' --to %s '%s' --dataset lim-%d "
                                       "--tags '%s' > '%s' 2>&1; echo \"exit $?\" >> '%s') "
                                       ">/dev/null 2>&1 &",
                                       W.ent.sock, W.brain.id, W.big, i, TAGS("general:2", "base"),
                                       outs[i], outs[i]),
                         0);
        free(ignored);
        ignored = NULL;
    }
    int ok = 0, toobig = 0;
    for (int i = 0; i < 3; i++) {
        char *out = NULL;
        for (int k = 0; k < 600; k++) {
            uint8_t *text = NULL;
            size_t len;
            if (tdsx_file_read(outs[i], 1 << 20, &text, &len) == 0) {
                int done = strstr((char *)text, "exit ") != NULL;
                if (done)
                    out = strdup((char *)text);
                tdsx_free(text);
                if (done)
                    break;
            }
            usleep(50000);
        }
        assert_non_null(out);
        ok += strstr(out, "exit 0") != NULL;
        toobig += strstr(out, "TDSX_E_TOOBIG") != NULL;
        free(out);
        free(outs[i]);
    }
    assert_int_equal(ok + toobig, 3);
    assert_true(toobig >= 1);
    assert_true(ok >= 1);
    assert_true(
        tdsx_test_log_wait(&W.brain, 2000, "\"event\":\"stream.refused\"", "max_streams", NULL));
}

/* An interrupted transfer nobody resumes is swept after part_ttl (2 s here): its part file
 * goes, so a peer that starts transfers and vanishes cannot fill the disk. */
static void stale_part_files_are_swept(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp/0123456789abcdef0123456789abcdef.part", W.brain.data);
    tdsx_test_write_file(path, "partial", 7);
    struct timespec old[2] = {{time(NULL) - 60, 0}, {time(NULL) - 60, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    /* A file that is not a transfer's is left alone. */
    char other[4096];
    snprintf(other, sizeof other, "%s/tmp/notes.txt", W.brain.data);
    tdsx_test_write_file(other, "x", 1);
    assert_int_equal(utimensat(AT_FDCWD, other, old, 0), 0);
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"transfer.swept\"",
                                   "0123456789abcdef0123456789abcdef", NULL));
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(other, F_OK), 0);
    unlink(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allowed_transfer_is_receipted),
        cmocka_unit_test(receiver_refusal_is_a_signed_receipt),
        cmocka_unit_test(core_never_leaves),
        cmocka_unit_test(personal_needs_purpose),
        cmocka_unit_test(bad_tags_refused),
        cmocka_unit_test(stream_limit_per_connection),
        cmocka_unit_test(stale_part_files_are_swept),
        cmocka_unit_test(bad_reload_keeps_old_policy),
        cmocka_unit_test(reload_aborts_running_transfer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
