/*
 * Relay authorisation with real daemons (SPEC §9): the brain relays what an enterprise sealed
 * for the centre only when the agreement that covered the upstream transfer grants relay-to the
 * centre (by its node id or by its role) and is valid now. Without an agreement, with one that
 * only allows receive, with relay-to another node or another role, or after the enterprise
 * terminated it, the relay is refused before anything leaves the brain and the centre holds
 * nothing of it.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define TAGS(grade)                                                                                \
    "grade=" grade " domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain, ent;
    tdsx_test_node_t other; /* a registered centre, never started: relay-to another node */
} world_t;

static world_t W;

/* The brain passes general data up and down: only the agreement can stop a relay. Important
 * data needs an agreement (and sealing) both ways. */
static const char brain_policy[] = "[imp-in]  allow grade important from enterprise "
                                   "require agreement, seal\n"
                                   "[imp-out] allow grade important to centre "
                                   "require agreement, seal\n"
                                   "[in]      allow grade general from any\n"
                                   "[out]     allow grade general to centre\n"
                                   "[default] deny  any\n";

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

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.other, "other", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    char *bp = tdsx_test_path(p->dir, "brain-policy.txt");
    char *open_policy = tdsx_test_path(p->dir, "allow-any.txt");
    tdsx_test_write_file(bp, brain_policy, strlen(brain_policy));
    tdsx_test_write_file(open_policy, "allow any\n", 10);
    char extra[8192];
    snprintf(extra, sizeof extra, "policy %s\n", open_policy);
    tdsx_test_node_config(p, &W.centre, extra);
    snprintf(extra, sizeof extra, "policy %s\npeer %s 127.0.0.1:%d\n", bp, W.centre.id,
             W.centre.port);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra, "policy %s\npeer %s 127.0.0.1:%d\n", open_policy, W.brain.id,
             W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    free(bp);
    free(open_policy);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 10000, "\"event\":\"conn.open\"", W.centre.id, NULL));
    usleep(300000); /* the Hellos follow the handshakes */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.centre);
    tdsx_test_node_free(&W.other);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* The 32-hex value after `label` in a command's output ("" when absent). */
static void out_field(const char *out, const char *label, char hex[33])
{
    hex[0] = '\0';
    const char *p = strstr(out, label);
    if (p)
        sscanf(p + strlen(label), " %32[0-9a-f]", hex);
}

/* The enterprise proposes an agreement for `dataset` with `actions` (and a day's validity
 * unless they give --not-after) to the brain, which accepts it; fills its id. */
static void agree_on(const char *dataset, const char *actions, char id[33])
{
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx agree propose --socket '%s' --with %s --dataset %s "
                                   "--purpose relay-test --purpose-text relay %s %s 2>&1",
                                   W.ent.sock, W.brain.id, dataset, actions,
                                   strstr(actions, "--not-after") ? "" : "--days 1"),
                     0);
    out_field(out, "agreement  ", id);
    free(out);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx agree accept --socket '%s' %s 2>&1", W.brain.sock, id), 0);
    assert_non_null(strstr(out, "state      active"));
    free(out);
}

/* The enterprise seals a fresh payload of `dataset` for the centre and sends it to the brain,
 * which accepts it; fills the upstream transfer id. */
static void send_up_tags(const char *dataset, const char *tags, char tid[33])
{
    char *file = fmt("%s/%s.bin", W.p.dir, dataset);
    uint8_t b[4000];
    randombytes_buf(b, sizeof b);
    tdsx_test_write_file(file, b, sizeof b);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags '%s' "
                                   "--seal --final %s 2>&1",
                                   W.ent.sock, W.brain.id, file, dataset, tags, W.centre.id),
                     0);
    assert_non_null(strstr(out, "state      receipted"));
    out_field(out, "transfer", tid);
    assert_int_equal(strlen(tid), 32);
    free(out);
    free(file);
}

static void send_up(const char *dataset, char tid[33])
{
    send_up_tags(dataset, TAGS("general:2"), tid);
}

/* `tdsx send --relay` on the brain to the centre; returns the exit status. */
static int relay(char **out, const char tid[33])
{
    return tdsx_test_run(out, "tdsx send --socket '%s' --to %s --relay %s 2>&1", W.brain.sock,
                         W.centre.id, tid);
}

/* The relay of dataset was refused at the brain with `code` by `rule`, and the centre never
 * heard of it. */
static void assert_relay_refused(const char *dataset, const char tid[33], const char *code,
                                 const char *rule)
{
    char *out = NULL;
    assert_int_equal(relay(&out, tid), 1);
    assert_non_null(strstr(out, "refused"));
    assert_non_null(strstr(out, code));
    free(out);
    char *r = fmt("\"rule\":\"%s\"", rule);
    char *ds = fmt("\"dataset\":\"%s\"", dataset);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"policy.refused\"", r, ds,
                                   "\"dir\":\"out\"", NULL));
    assert_int_equal(tdsx_test_log_count(&W.centre, dataset, NULL), 0);
    free(r);
    free(ds);
}

/* The relay of dataset was receipted and the centre opened it. */
static void assert_relay_receipted(const char *dataset, const char tid[33])
{
    char *out = NULL;
    int rc = relay(&out, tid);
    if (rc)
        fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "state      receipted"));
    free(out);
    char *ds = fmt("\"dataset\":\"%s\"", dataset);
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"transfer.opened\"", ds, NULL));
    free(ds);
}

/* ---- refused --------------------------------------------------------------------------------- */

static void relay_without_agreement_is_refused(void **state)
{
    (void)state;
    char tid[33];
    send_up("r-none", tid); /* the brain's policy receives general:2 without one */
    assert_relay_refused("r-none", tid, "TDSX_E_AGREEMENT", "agreement:relay-not-granted");
}

static void relay_under_receive_only_agreement_is_refused(void **state)
{
    (void)state;
    char id[33], tid[33];
    agree_on("r-recv", "--action receive --action derive", id);
    send_up("r-recv", tid);
    assert_relay_refused("r-recv", tid, "TDSX_E_AGREEMENT", "agreement:relay-not-granted");
}

static void relay_granted_to_another_node_or_role_is_refused(void **state)
{
    (void)state;
    char id[33], tid[33];
    char *acts = fmt("--action receive --action relay-to:%s", W.other.id);
    agree_on("r-other", acts, id); /* another centre, by its node id */
    free(acts);
    send_up("r-other", tid);
    assert_relay_refused("r-other", tid, "TDSX_E_AGREEMENT", "agreement:relay-not-granted");

    agree_on("r-role", "--action receive --action relay-to:enterprise", id);
    send_up("r-role", tid);
    assert_relay_refused("r-role", tid, "TDSX_E_AGREEMENT", "agreement:relay-not-granted");
}

static void relay_after_termination_is_refused(void **state)
{
    (void)state;
    char id[33], tid[33];
    agree_on("r-term", "--action receive --action relay-to:centre", id);
    send_up("r-term", tid);
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx agree terminate --socket '%s' %s --reason done 2>&1",
                                   W.ent.sock, id),
                     0);
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"agreement.terminated\"", id, NULL));
    assert_relay_refused("r-term", tid, "TDSX_E_AGREEMENT_TERMINATED",
                         "agreement:relay-terminated");
}

static void relay_after_expiry_is_refused(void **state)
{
    (void)state;
    char id[33], tid[33];
    long long until = (long long)time(NULL) + 2;
    char *acts = fmt("--action receive --action relay-to:centre --not-after %lld", until);
    agree_on("r-exp", acts, id);
    free(acts);
    send_up("r-exp", tid);
    while ((long long)time(NULL) <= until)
        usleep(100000);
    assert_relay_refused("r-exp", tid, "TDSX_E_AGREEMENT_EXPIRED", "agreement:relay-expired");
}

/* ---- granted --------------------------------------------------------------------------------- */

static void relay_granted_by_role_is_receipted(void **state)
{
    (void)state;
    char id[33], tid[33];
    agree_on("r-centre", "--action receive --action relay-to:centre", id);
    send_up("r-centre", tid);
    assert_relay_receipted("r-centre", tid);
}

static void relay_granted_by_node_id_is_receipted(void **state)
{
    (void)state;
    char id[33], tid[33];
    char *acts = fmt("--action receive --action relay-to:%s", W.centre.id);
    agree_on("r-node", acts, id);
    free(acts);
    send_up("r-node", tid);
    assert_relay_receipted("r-node", tid);
}

/* The granted upstream agreement is what the brain's [imp-out] rule sees; the centre does not
 * hold it and refuses important data until it has an agreement of its own with the brain. */
static void important_relay_needs_the_centres_own_agreement(void **state)
{
    (void)state;
    char id[33], tid[33], *out = NULL;
    agree_on("r-imp", "--action receive --action relay-to:centre", id);
    send_up_tags("r-imp", TAGS("important"), tid);
    assert_int_equal(relay(&out, tid), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);
    /* Refused by the centre, under its own policy with no agreement: not by the brain. */
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"policy.refused\"",
                                   "\"dataset\":\"r-imp\"", "\"dir\":\"in\"", NULL));
    assert_int_equal(tdsx_test_log_count(&W.brain, "\"event\":\"policy.refused\"",
                                         "\"dataset\":\"r-imp\"", NULL),
                     0);
    /* The brain and the centre agree: the same relay is receipted and opened. */
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx agree propose --socket '%s' --with %s --dataset r-imp "
                                   "--purpose relay-test --purpose-text relay --action receive "
                                   "--days 1 2>&1",
                                   W.brain.sock, W.centre.id),
                     0);
    out_field(out, "agreement  ", id);
    free(out);
    assert_int_equal(
        tdsx_test_run(&out, "tdsx agree accept --socket '%s' %s 2>&1", W.centre.sock, id), 0);
    free(out);
    char *ds = fmt("\"dataset\":\"r-imp\"");
    assert_int_equal(relay(&out, tid), 0);
    assert_non_null(strstr(out, "state      receipted"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"transfer.opened\"", ds, NULL));
    free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relay_without_agreement_is_refused),
        cmocka_unit_test(relay_under_receive_only_agreement_is_refused),
        cmocka_unit_test(relay_granted_to_another_node_or_role_is_refused),
        cmocka_unit_test(relay_after_termination_is_refused),
        cmocka_unit_test(relay_after_expiry_is_refused),
        cmocka_unit_test(relay_granted_by_role_is_receipted),
        cmocka_unit_test(relay_granted_by_node_id_is_receipted),
        cmocka_unit_test(important_relay_needs_the_centres_own_agreement),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
