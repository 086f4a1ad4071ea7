#include "support.h"

#include "policy.h"

#include <string.h>

#define DATA TDSX_TEST_DATA "/policy/"

static tdsx_policy_t *parse_ok(const char *text)
{
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    if (tdsx_policy_parse(tdsx_bytes(text, strlen(text)), &p, &d) != 0)
        fail_msg("'%s': %s", text, d.n ? d.v[0].msg : "?");
    tdsx_diags_free(&d);
    return p;
}

static tdsx_policy_t *load_ok(const char *path)
{
    tdsx_policy_t *p = NULL;
    assert_int_equal(tdsx_policy_load(path, &p, NULL), 0);
    return p;
}

static tdsx_tags_t tags_of(const char *s)
{
    tdsx_tags_t t;
    tdsx_tags_error_t e;
    if (tdsx_tags_parse(tdsx_bytes(s, strlen(s)), &t, &e) != 0)
        fail_msg("'%s': %s", s, e.msg);
    return t;
}

/* A general:2 production transfer, sent to a brain, no agreement, not sealed. */
static tdsx_policy_input_t input(const tdsx_tags_t *t)
{
    tdsx_policy_input_t in;
    memset(&in, 0, sizeof in);
    in.direction = TDSX_DIR_SEND;
    in.local_role = TDSX_POLICY_ROLE_ENTERPRISE;
    in.peer_role = TDSX_POLICY_ROLE_BRAIN;
    in.peer_id = "91350100M000100Y43/brain-1";
    in.tags = t;
    in.agreement = TDSX_AGREEMENT_NONE;
    return in;
}

static const char *const grades[] = {"core",      "important", "general:4",
                                     "general:3", "general:2", "general:1"};

static tdsx_tags_t grade_tags(const char *grade, const char *library, const char *personal)
{
    char text[TDSX_TAGS_TEXT_MAX];
    snprintf(text, sizeof text,
             "grade=%s domain=production category=production.process.quality personal=%s "
             "library=%s source=enterprise",
             grade, personal, library);
    return tags_of(text);
}

/* ------------------------------------------------------------------------------------------
 * SPEC §8 example: the whole matrix of grade x counterpart role x agreement x sealed x
 * library, checked against what each rule of the example says.
 * ---------------------------------------------------------------------------------------- */
typedef struct expect_s {
    int allow;
    const char *rule;
    int code;
} expect_t;

/* The example's intent, written out case by case (not by running the evaluator). */
static expect_t spec_expect(int g, tdsx_policy_role_t role, int agreement, int sealed,
                            int base_library)
{
    expect_t e = {0, "line-6", TDSX_E_POLICY_DENY}; /* deny any */
    int to_brain_or_centre = role == TDSX_POLICY_ROLE_BRAIN || role == TDSX_POLICY_ROLE_CENTRE;
    if (g == 0)
        return (expect_t){0, "line-2", TDSX_E_POLICY_DENY}; /* deny grade core */
    if (g == 1) {
        if (role != TDSX_POLICY_ROLE_CENTRE)
            return e;
        if (!agreement)
            return (expect_t){0, "r-important-to-centre", TDSX_E_AGREEMENT};
        if (!sealed)
            return (expect_t){0, "r-important-to-centre", TDSX_E_POLICY_SEAL};
        return (expect_t){1, "r-important-to-centre", 0};
    }
    if (g == 2 || g == 3) { /* general:4, general:3 */
        if (!to_brain_or_centre)
            return e;
        return agreement ? (expect_t){1, "line-4", 0} : (expect_t){0, "line-4", TDSX_E_AGREEMENT};
    }
    /* general:2, general:1 */
    if (!to_brain_or_centre || !base_library)
        return e;
    return (expect_t){1, "line-5", 0};
}

static void spec_example_matrix(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    static const tdsx_policy_role_t roles[] = {TDSX_POLICY_ROLE_CENTRE, TDSX_POLICY_ROLE_BRAIN,
                                               TDSX_POLICY_ROLE_ENTERPRISE};
    unsigned cases = 0, allowed = 0;
    for (int g = 0; g < 6; g++)
        for (int lib = 0; lib < 2; lib++) {
            tdsx_tags_t t = grade_tags(grades[g], lib ? "base" : "industry", "none");
            for (int r = 0; r < 3; r++)
                for (int a = 0; a < 2; a++)
                    for (int s = 0; s < 2; s++) {
                        tdsx_policy_input_t in = input(&t);
                        in.peer_role = roles[r];
                        in.agreement = a ? TDSX_AGREEMENT_VALID : TDSX_AGREEMENT_NONE;
                        in.purpose = a ? "P-QUALITY" : NULL;
                        in.sealed = s;
                        tdsx_policy_decision_t d;
                        int rc = tdsx_policy_eval(p, &in, &d);
                        expect_t e = spec_expect(g, roles[r], a, s, lib);
                        if (d.allow != e.allow || strcmp(d.rule_id, e.rule) != 0 ||
                            d.code != e.code || rc != e.code)
                            fail_msg("%s %s to %s agreement=%d sealed=%d: got %s %s %s, want "
                                     "%s %s %s",
                                     grades[g], lib ? "base" : "industry",
                                     tdsx_policy_role_name(roles[r]), a, s,
                                     d.allow ? "allow" : "deny", d.rule_id, tdsx_err_name(d.code),
                                     e.allow ? "allow" : "deny", e.rule, tdsx_err_name(e.code));
                        /* The rule that decided is the one that matched: no floor needed. */
                        assert_null(tdsx_floor_id(d.floor));
                        assert_string_equal(d.matched_id, e.rule);
                        assert_int_equal(d.line, d.matched_line);
                        assert_non_null(d.reason);
                        cases++;
                        allowed += (unsigned)d.allow;
                    }
        }
    assert_int_equal(cases, 6 * 2 * 3 * 2 * 2);
    /* important: 1 (centre, agreement, sealed) x 2 libraries; general:3-4: 2 roles x 2 sealed
     * x 2 grades x 2 libraries; general:1-2 base: 2 roles x 2 x 2 x 2 grades. */
    assert_int_equal(allowed, 2 + 16 + 16);
    tdsx_policy_free(p);
}

static void spec_example_refuses_every_receive_it_does_not_name(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    for (int g = 0; g < 6; g++) {
        tdsx_tags_t t = grade_tags(grades[g], "base", "none");
        tdsx_policy_input_t in = input(&t);
        in.direction = TDSX_DIR_RECEIVE;
        in.peer_role = TDSX_POLICY_ROLE_CENTRE;
        in.agreement = TDSX_AGREEMENT_VALID;
        in.purpose = "P1";
        in.sealed = 1;
        tdsx_policy_decision_t d;
        assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
        /* `to` rules are about sending: receives fall to `deny any` (core to its own rule). */
        assert_string_equal(d.rule_id, g == 0 ? "line-2" : "line-6");
        assert_int_equal(d.line, g == 0 ? 2 : 6);
    }
    tdsx_policy_free(p);
}

/* ------------------------------------------------------------------------------------------
 * Floors against a file that allows everything
 * ---------------------------------------------------------------------------------------- */
static void core_never_leaves_whatever_the_file_says(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "permissive.policy");
    tdsx_tags_t t = grade_tags("core", "base", "none");
    for (int dir = TDSX_DIR_SEND; dir <= TDSX_DIR_RECEIVE; dir++)
        for (int role = 1; role <= 3; role++)
            for (int everything = 0; everything < 2; everything++) {
                tdsx_policy_input_t in = input(&t);
                in.direction = (tdsx_direction_t)dir;
                in.peer_role = (tdsx_policy_role_t)role;
                if (everything) {
                    in.agreement = TDSX_AGREEMENT_VALID;
                    in.purpose = "P1";
                    in.sealed = 1;
                    in.relay = 1;
                }
                tdsx_policy_decision_t d;
                assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
                assert_false(d.allow);
                assert_string_equal(d.rule_id, "floor:core-stays-home");
                assert_int_equal(d.floor, TDSX_FLOOR_CORE_STAYS_HOME);
                assert_int_equal(d.line, 0);
                assert_string_equal(d.matched_id, "line-2"); /* the file did allow it */
                assert_int_equal(d.matched_line, 2);
                assert_string_equal(d.reason, "core data never leaves its owner's node");
            }
    tdsx_policy_free(p);
}

static void important_needs_agreement_and_seal(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "permissive.policy");
    tdsx_tags_t t = grade_tags("important", "base", "none");
    static const struct {
        tdsx_agreement_state_t agreement;
        int sealed;
        const char *rule;
        int code;
        unsigned missing;
    } cases[] = {
        {TDSX_AGREEMENT_NONE, 0, "floor:important-needs-agreement", TDSX_E_AGREEMENT,
         TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL},
        {TDSX_AGREEMENT_NONE, 1, "floor:important-needs-agreement", TDSX_E_AGREEMENT,
         TDSX_POLICY_REQ_AGREEMENT},
        {TDSX_AGREEMENT_EXPIRED, 1, "floor:important-needs-agreement", TDSX_E_AGREEMENT_EXPIRED,
         TDSX_POLICY_REQ_AGREEMENT},
        {TDSX_AGREEMENT_TERMINATED, 1, "floor:important-needs-agreement",
         TDSX_E_AGREEMENT_TERMINATED, TDSX_POLICY_REQ_AGREEMENT},
        {TDSX_AGREEMENT_VALID, 0, "floor:important-needs-seal", TDSX_E_POLICY_SEAL,
         TDSX_POLICY_REQ_SEAL},
        {TDSX_AGREEMENT_VALID, 1, "line-2", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tdsx_policy_input_t in = input(&t);
        in.agreement = cases[i].agreement;
        in.sealed = cases[i].sealed;
        tdsx_policy_decision_t d;
        int rc = tdsx_policy_eval(p, &in, &d);
        if (rc != cases[i].code || strcmp(d.rule_id, cases[i].rule) != 0)
            fail_msg("case %zu: %s %s", i, d.rule_id, tdsx_err_name(rc));
        assert_int_equal(d.allow, cases[i].code == 0);
        assert_int_equal(d.required, TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL);
        assert_int_equal(d.missing, cases[i].missing);
        assert_int_equal(d.floors, TDSX_FLOOR_IMPORTANT_AGREEMENT | TDSX_FLOOR_IMPORTANT_SEAL);
        assert_string_equal(d.matched_id, "line-2");
    }
    tdsx_policy_free(p);
}

static void personal_information_needs_a_purpose(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "permissive.policy");
    for (int sensitive = 0; sensitive < 2; sensitive++) {
        tdsx_tags_t t =
            grade_tags("general:1", "base", sensitive ? "sensitive-personal" : "personal");
        static const struct {
            tdsx_agreement_state_t agreement;
            const char *purpose;
            int code;
        } cases[] = {
            {TDSX_AGREEMENT_NONE, NULL, TDSX_E_AGREEMENT},
            {TDSX_AGREEMENT_NONE, "P1", TDSX_E_AGREEMENT}, /* a purpose without agreement */
            {TDSX_AGREEMENT_EXPIRED, "P1", TDSX_E_AGREEMENT_EXPIRED},
            {TDSX_AGREEMENT_VALID, NULL, TDSX_E_POLICY_PURPOSE},
            {TDSX_AGREEMENT_VALID, "", TDSX_E_POLICY_PURPOSE},
            {TDSX_AGREEMENT_VALID, "P1", 0},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            tdsx_policy_input_t in = input(&t);
            in.agreement = cases[i].agreement;
            in.purpose = cases[i].purpose;
            tdsx_policy_decision_t d;
            int rc = tdsx_policy_eval(p, &in, &d);
            if (rc != cases[i].code)
                fail_msg("case %zu: %s", i, tdsx_err_name(rc));
            assert_string_equal(d.rule_id, rc ? "floor:personal-needs-purpose" : "line-2");
            assert_int_equal(d.floors, TDSX_FLOOR_PERSONAL_PURPOSE);
            assert_int_equal(d.required, TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE);
        }
    }
    /* Important personal data needs all three. */
    tdsx_tags_t t = grade_tags("important", "base", "personal");
    tdsx_policy_input_t in = input(&t);
    in.agreement = TDSX_AGREEMENT_VALID;
    in.sealed = 1;
    tdsx_policy_decision_t d;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_PURPOSE);
    assert_string_equal(d.rule_id, "floor:personal-needs-purpose");
    in.purpose = "P1";
    in.sealed = 0;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_SEAL);
    assert_string_equal(d.rule_id, "floor:important-needs-seal");
    in.sealed = 1;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_int_equal(d.required,
                     TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE | TDSX_POLICY_REQ_SEAL);
    assert_int_equal(d.missing, 0);
    /* Ordinary data passes the permissive file with no floor at all. */
    t = grade_tags("general:4", "scenario", "none");
    in = input(&t);
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_int_equal(d.floors, 0);
    assert_int_equal(d.required, 0);
    assert_string_equal(d.reason, "allowed");
    tdsx_policy_free(p);
}

/* The rule's own requirements are checked before the floors and refuse in its name. */
static void rule_requirements_come_before_floors(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok("[imp] allow grade important require agreement\n"
                                "[pers] allow personal personal require purpose, seal\n");
    tdsx_tags_t t = grade_tags("important", "base", "none");
    tdsx_policy_input_t in = input(&t);
    tdsx_policy_decision_t d;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_AGREEMENT);
    assert_string_equal(d.rule_id, "imp");
    assert_int_equal(d.line, 1);
    assert_string_equal(d.reason, "a valid agreement is required");
    in.agreement = TDSX_AGREEMENT_TERMINATED;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_AGREEMENT_TERMINATED);
    assert_string_equal(d.rule_id, "imp");
    in.agreement = TDSX_AGREEMENT_VALID;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_SEAL);
    assert_string_equal(d.rule_id, "floor:important-needs-seal");
    assert_int_equal(d.line, 0);
    assert_int_equal(d.matched_line, 1);

    t = grade_tags("general:1", "base", "personal");
    in = input(&t);
    in.agreement = TDSX_AGREEMENT_VALID;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_PURPOSE);
    assert_string_equal(d.rule_id, "pers");
    in.purpose = "P1";
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_SEAL);
    assert_string_equal(d.rule_id, "pers");
    assert_string_equal(d.reason, "the transfer must be sealed");
    assert_int_equal(d.missing, TDSX_POLICY_REQ_SEAL);
    in.sealed = 1;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_string_equal(d.rule_id, "pers");
    tdsx_policy_free(p);
}

/* ------------------------------------------------------------------------------------------
 * Each condition, matching and not
 * ---------------------------------------------------------------------------------------- */
typedef struct cond_case_s {
    const char *rule;
    int matches_default; /* against input(general:2 production.process.quality, send, brain) */
} cond_case_t;

static void conditions_match_what_they_say(void **state)
{
    (void)state;
    static const cond_case_t cases[] = {
        {"grade general:2", 1},
        {"grade general:1,general:3", 0},
        {"grade >=general:2", 1},
        {"grade >general:2", 0},
        {"domain production", 1},
        {"domain rd,ops", 0},
        {"category production", 1},
        {"category production.process.quality", 1},
        {"category production.process.quality.x", 0},
        {"category production.proc", 0}, /* prefixes end on a segment boundary */
        {"category rd.design, production.process", 1},
        {"personal none", 1},
        {"personal personal,sensitive-personal", 0},
        {"library industry", 1},
        {"library base", 0},
        {"source enterprise", 1},
        {"source public,industry", 0},
        {"to brain", 1},
        {"to centre,enterprise", 0},
        {"to any", 1},
        {"from brain", 0},
        {"from any", 0},
        {"with brain", 1},
        {"with centre", 0},
        {"direction send", 1},
        {"direction receive", 0},
        {"peer 91350100M000100Y43/brain-1", 1},
        {"peer 91350100M000100Y43", 1},
        {"peer 91350100M000100Y43/brain-2", 0},
        {"peer 91350100M000100Y43/brain", 0},
        {"peer 91110000600037341L", 0},
        {"local enterprise", 1},
        {"local brain,centre", 0},
        {"direct", 1},
        {"relay", 0},
        {"purpose P1", 0}, /* no agreement, so no purpose */
        {"grade general domain production to brain direct local enterprise", 1},
        {"grade general domain production to brain relay local enterprise", 0},
    };
    tdsx_tags_t t = grade_tags("general:2", "industry", "none");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "[hit] allow %s\n", cases[i].rule);
        tdsx_policy_t *p = parse_ok(text);
        tdsx_policy_input_t in = input(&t);
        tdsx_policy_decision_t d;
        int rc = tdsx_policy_eval(p, &in, &d);
        if ((rc == 0) != cases[i].matches_default)
            fail_msg("'%s': %s by %s", cases[i].rule, rc ? "refused" : "allowed", d.rule_id);
        assert_string_equal(d.rule_id, rc ? "default-deny" : "hit");
        if (rc) {
            assert_null(d.matched_id);
            assert_int_equal(d.code, TDSX_E_POLICY_DENY);
            assert_string_equal(d.reason, "no rule allows this transfer");
        }
        tdsx_policy_free(p);
    }
}

static void peer_purpose_and_relay_conditions(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok("[a] allow purpose P-QUALITY,P-ENERGY require agreement\n"
                                "[b] deny relay from centre\n"
                                "[c] allow from brain peer 91350100M000100Y43\n");
    tdsx_tags_t t = grade_tags("general:1", "base", "none");
    tdsx_policy_input_t in = input(&t);
    tdsx_policy_decision_t d;
    in.agreement = TDSX_AGREEMENT_VALID;
    in.purpose = "P-ENERGY";
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_string_equal(d.rule_id, "a");
    in.purpose = "P-OTHER";
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    assert_string_equal(d.rule_id, "default-deny");
    /* An expired agreement's purpose does not count. */
    in.agreement = TDSX_AGREEMENT_EXPIRED;
    in.purpose = "P-ENERGY";
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    assert_string_equal(d.rule_id, "default-deny");

    in = input(&t);
    in.direction = TDSX_DIR_RECEIVE;
    in.peer_role = TDSX_POLICY_ROLE_CENTRE;
    in.relay = 1;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    assert_string_equal(d.rule_id, "b");
    assert_string_equal(d.reason, "refused by policy");

    in.peer_role = TDSX_POLICY_ROLE_BRAIN;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_string_equal(d.rule_id, "c");
    in.peer_id = "91110000600037341L/brain-1";
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    in.peer_id = "91350100M000100Y43"; /* no node part: not a node of the organisation */
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    in.peer_id = NULL; /* unknown peer never matches a peer condition */
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    /* An unknown counterpart role matches only rules that do not name one. */
    in.peer_id = "91350100M000100Y43/brain-1";
    in.peer_role = TDSX_POLICY_ROLE_NONE;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    tdsx_policy_free(p);
}

static void first_match_wins(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok("[one] deny grade general:4\n"
                                "[two] allow grade general\n"
                                "[three] deny grade general:1\n");
    tdsx_policy_decision_t d;
    for (int g = 2; g < 6; g++) {
        tdsx_tags_t t = grade_tags(grades[g], "base", "none");
        tdsx_policy_input_t in = input(&t);
        int rc = tdsx_policy_eval(p, &in, &d);
        assert_string_equal(d.rule_id, g == 2 ? "one" : "two");
        assert_int_equal(rc, g == 2 ? TDSX_E_POLICY_DENY : 0);
    }
    tdsx_policy_free(p);
    /* An empty policy refuses everything. */
    p = parse_ok("# nothing\n");
    tdsx_tags_t t = grade_tags("general:1", "base", "none");
    tdsx_policy_input_t in = input(&t);
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    assert_string_equal(d.rule_id, "default-deny");
    tdsx_policy_free(p);
}

static void invalid_input_is_refused(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "permissive.policy");
    tdsx_tags_t t = grade_tags("general:1", "base", "none");
    tdsx_policy_decision_t d;
    tdsx_policy_input_t in = input(&t);
    assert_int_equal(tdsx_policy_eval(p, NULL, &d), TDSX_E_INVAL);
    assert_string_equal(d.rule_id, "invalid-input");
    assert_false(d.allow);
    assert_int_equal(tdsx_policy_eval(NULL, &in, &d), TDSX_E_INVAL);
    in.tags = NULL;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    in = input(&t);
    in.direction = TDSX_DIR_UNSET;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    in.direction = (tdsx_direction_t)3;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    in = input(&t);
    in.peer_role = (tdsx_policy_role_t)4;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    in = input(&t);
    in.local_role = (tdsx_policy_role_t)-1;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    in = input(&t);
    in.agreement = (tdsx_agreement_state_t)9;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_INVAL);
    tdsx_tags_t bad = t;
    bad.level = 0;
    in = input(&bad);
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_TAGS);
    assert_string_equal(d.rule_id, "invalid-input");
    assert_string_equal(d.reason, "classification tags are invalid");
    bad = t;
    snprintf(bad.category, sizeof bad.category, "rd.design"); /* not under production */
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_TAGS);
    tdsx_policy_free(p);
}

/* The evaluator allocates nothing: it runs with an allocator that always fails, and an
 * allocator that counts sees zero calls. */
static void evaluation_does_not_allocate(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    tdsx_tags_t t = grade_tags("important", "base", "personal");
    tdsx_policy_input_t in = input(&t);
    in.peer_role = TDSX_POLICY_ROLE_CENTRE;
    in.agreement = TDSX_AGREEMENT_VALID;
    in.purpose = "P1";
    in.sealed = 1;
    tdsx_policy_decision_t d;
    tdsx_test_alloc_fail_after(0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    assert_int_equal(tdsx_test_alloc_count(), 0);
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_policy_eval(p, &in, &d), 0);
    in.sealed = 0;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_SEAL);
    tdsx_test_alloc_reset();
    assert_string_equal(d.rule_id, "r-important-to-centre");
    tdsx_policy_free(p);
}

/* What goes back to the counterpart says what was missing, not the policy's content. */
static void reasons_do_not_reveal_the_policy(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok("[secret-rule] deny grade general:3 peer 91350100M000100Y43\n"
                                "[r2] allow grade general require agreement\n");
    tdsx_tags_t t = grade_tags("general:3", "base", "none");
    tdsx_policy_input_t in = input(&t);
    tdsx_policy_decision_t d;
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_POLICY_DENY);
    assert_null(strstr(d.reason, "secret"));
    assert_null(strstr(d.reason, "91350100M000100Y43"));
    assert_null(strstr(d.reason, "general"));
    assert_true(strlen(d.reason) < 80);
    t = grade_tags("general:2", "base", "none");
    assert_int_equal(tdsx_policy_eval(p, &in, &d), TDSX_E_AGREEMENT);
    assert_null(strstr(d.reason, "r2"));
    assert_true(strlen(d.reason) < 80);
    tdsx_policy_free(p);
}

static void names_of_floors_and_roles(void **state)
{
    (void)state;
    assert_string_equal(tdsx_floor_id(TDSX_FLOOR_CORE_STAYS_HOME), "floor:core-stays-home");
    assert_string_equal(tdsx_floor_id(TDSX_FLOOR_PERSONAL_PURPOSE), "floor:personal-needs-purpose");
    assert_null(tdsx_floor_id(0));
    assert_null(tdsx_floor_id(TDSX_FLOOR_CORE_STAYS_HOME | TDSX_FLOOR_IMPORTANT_SEAL));
    tdsx_policy_role_t r;
    assert_int_equal(tdsx_policy_role_parse("brain", &r), 0);
    assert_int_equal(r, TDSX_POLICY_ROLE_BRAIN);
    assert_int_equal(tdsx_policy_role_parse("none", &r), TDSX_E_INVAL);
    assert_int_equal(tdsx_policy_role_parse("Brain", &r), TDSX_E_INVAL);
    assert_int_equal(tdsx_policy_role_parse(NULL, &r), TDSX_E_INVAL);
    assert_string_equal(tdsx_policy_role_name(TDSX_POLICY_ROLE_CENTRE), "centre");
    assert_string_equal(tdsx_policy_role_name((tdsx_policy_role_t)17), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_matrix),
        cmocka_unit_test(spec_example_refuses_every_receive_it_does_not_name),
        cmocka_unit_test(core_never_leaves_whatever_the_file_says),
        cmocka_unit_test(important_needs_agreement_and_seal),
        cmocka_unit_test(personal_information_needs_a_purpose),
        cmocka_unit_test(rule_requirements_come_before_floors),
        cmocka_unit_test(conditions_match_what_they_say),
        cmocka_unit_test(peer_purpose_and_relay_conditions),
        cmocka_unit_test(first_match_wins),
        cmocka_unit_test(invalid_input_is_refused),
        cmocka_unit_test(evaluation_does_not_allocate),
        cmocka_unit_test(reasons_do_not_reveal_the_policy),
        cmocka_unit_test(names_of_floors_and_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
