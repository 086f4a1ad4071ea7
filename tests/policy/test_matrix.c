/*
 * test_matrix.c — the whole decision matrix of SPEC §8: grade (core, important, general:1-4)
 * x personal (none, personal, sensitive-personal) x library (base, industry) x sender role x
 * receiver role x agreement (none, valid, expired, terminated, valid with a purpose the policy
 * does not list, valid without a purpose) x sealed, decided at BOTH ends — the sender (send,
 * peer = receiver's role) and the receiver (receive, peer = sender's role) — under
 *   - the SPEC §8 example with `from` rules for the receiving side (matrix_policy below), and
 *   - `allow any`, so that only the hard floors refuse.
 * The expected decision (allow, code, deciding rule, matched rule, floor) comes from
 * functions written here from the words of SPEC §8 and policy.h, never from the library.
 * Mutated policies then show that the comparison notices a one-rule change.
 */
#include "support.h"

#include "policy.h"

#include <string.h>

/* The SPEC §8 example as the sender applies it, then what a node accepts:
 *   - enterprises do not exchange with each other directly (the brain or centre relays);
 *   - only the centre takes important data in, under an agreement and sealed;
 *   - personal information comes in only for the listed purpose, sealed;
 *   - other general data comes in under any valid agreement. */
static const char matrix_policy[] =
    "# SPEC 8 example (sending side), then the receiving side\n"
    "[no-core]       deny  grade core\n"
    "[imp-out]       allow grade important to centre    require agreement, seal\n"
    "[gen34-out]     allow grade general>=3 to brain,centre require agreement\n"
    "[gen12-out]     allow grade general<=2 library base to brain,centre\n"
    "[no-ent-direct] deny  from enterprise local enterprise\n"
    "[imp-in]        allow grade important from any local centre require agreement, seal\n"
    "[personal-in]   allow grade general personal personal,sensitive-personal from any "
    "purpose P-QUALITY require purpose, seal\n"
    "[gen-in]        allow grade general personal none from any require agreement\n"
    "deny any\n";

static const char permissive_policy[] = "allow any\n";

typedef struct rule_line_s {
    const char *id;
    unsigned line;
} rule_line_t;

static const rule_line_t matrix_lines[] = {
    {"no-core", 2}, {"imp-out", 3},     {"gen34-out", 4}, {"gen12-out", 5}, {"no-ent-direct", 6},
    {"imp-in", 7},  {"personal-in", 8}, {"gen-in", 9},    {"line-10", 10},
};
static const rule_line_t permissive_lines[] = {{"line-1", 1}};

/* ------------------------------------------------------------------------------------------
 * The dimensions
 * ---------------------------------------------------------------------------------------- */
#define RANK_IMPORTANT 5
#define RANK_CORE 6

static const tdsx_policy_role_t roles[] = {TDSX_POLICY_ROLE_CENTRE, TDSX_POLICY_ROLE_BRAIN,
                                           TDSX_POLICY_ROLE_ENTERPRISE};
static const tdsx_personal_t personals[] = {TDSX_PERSONAL_NONE, TDSX_PERSONAL_PERSONAL,
                                            TDSX_PERSONAL_SENSITIVE};
static const tdsx_library_t libraries[] = {TDSX_LIBRARY_BASE, TDSX_LIBRARY_INDUSTRY};

typedef struct agreement_case_s {
    const char *name;
    tdsx_agreement_state_t state;
    const char *purpose;
} agreement_case_t;

static const agreement_case_t agreements[] = {
    {"none", TDSX_AGREEMENT_NONE, NULL},
    {"valid", TDSX_AGREEMENT_VALID, "P-QUALITY"},
    {"expired", TDSX_AGREEMENT_EXPIRED, "P-QUALITY"},
    {"terminated", TDSX_AGREEMENT_TERMINATED, "P-QUALITY"},
    {"valid-wrong-purpose", TDSX_AGREEMENT_VALID, "P-MARKETING"},
    {"valid-no-purpose", TDSX_AGREEMENT_VALID, ""},
};
#define N_AGREEMENTS (sizeof agreements / sizeof agreements[0])

typedef struct kase_s {
    int rank; /* 1-4 general:N, 5 important, 6 core */
    tdsx_personal_t personal;
    tdsx_library_t library;
    tdsx_policy_role_t sender, receiver;
    const agreement_case_t *agreement;
    int sealed;
} kase_t;

typedef enum { END_SENDER, END_RECEIVER } end_t;

/* ------------------------------------------------------------------------------------------
 * What SPEC §8 says, written out
 * ---------------------------------------------------------------------------------------- */
typedef struct want_s {
    int allow;
    int code;
    const char *rule;    /* the deciding rule: a file rule, a floor, "default-deny" */
    const char *matched; /* the file rule that matched; NULL when none did */
    int matched_allow;   /* the matched rule allows (its requirements and floors apply) */
    unsigned req;        /* the matched allow rule's own requirements */
    unsigned floor;      /* the floor that refused, or 0 */
} want_t;

static int valid_agreement(const kase_t *k)
{
    return k->agreement->state == TDSX_AGREEMENT_VALID;
}

static int states_purpose(const kase_t *k)
{
    return valid_agreement(k) && k->agreement->purpose && k->agreement->purpose[0];
}

/* An agreement was needed and there is no valid one: the code says which state it is in. */
static int no_agreement_code(const kase_t *k)
{
    switch (k->agreement->state) {
    case TDSX_AGREEMENT_EXPIRED: return TDSX_E_AGREEMENT_EXPIRED;
    case TDSX_AGREEMENT_TERMINATED: return TDSX_E_AGREEMENT_TERMINATED;
    case TDSX_AGREEMENT_NONE:
    case TDSX_AGREEMENT_VALID:
    default: return TDSX_E_AGREEMENT;
    }
}

static want_t deny_rule(const char *rule)
{
    want_t w = {0, TDSX_E_POLICY_DENY, rule, rule, 0, 0, 0};
    return w;
}

/* An allow rule matched: its own requirements decide in its name (agreement, then purpose,
 * then seal), before any floor is looked at. */
static want_t allow_rule(const char *rule, unsigned req, const kase_t *k)
{
    want_t w = {1, 0, rule, rule, 1, req, 0};
    if ((req & TDSX_POLICY_REQ_AGREEMENT) && !valid_agreement(k))
        w.code = no_agreement_code(k);
    else if ((req & TDSX_POLICY_REQ_PURPOSE) && !states_purpose(k))
        w.code = TDSX_E_POLICY_PURPOSE;
    else if ((req & TDSX_POLICY_REQ_SEAL) && !k->sealed)
        w.code = TDSX_E_POLICY_SEAL;
    w.allow = w.code == 0;
    return w;
}

static want_t floor_refuses(want_t w, unsigned floor, int code)
{
    w.allow = 0;
    w.code = code;
    w.floor = floor;
    w.rule = tdsx_floor_id(floor);
    return w;
}

/* The hard floors no file lifts, applied to what the file allowed: core data never leaves
 * its owner's node; important data needs an agreement and a sealed transfer; personal
 * information needs an agreement with a purpose. */
static want_t apply_floors(want_t w, const kase_t *k)
{
    if (!w.allow)
        return w;
    if (k->rank == RANK_CORE)
        return floor_refuses(w, TDSX_FLOOR_CORE_STAYS_HOME, TDSX_E_POLICY_DENY);
    if (k->rank == RANK_IMPORTANT && !valid_agreement(k))
        return floor_refuses(w, TDSX_FLOOR_IMPORTANT_AGREEMENT, no_agreement_code(k));
    if (k->rank == RANK_IMPORTANT && !k->sealed)
        return floor_refuses(w, TDSX_FLOOR_IMPORTANT_SEAL, TDSX_E_POLICY_SEAL);
    if (k->personal != TDSX_PERSONAL_NONE && !valid_agreement(k))
        return floor_refuses(w, TDSX_FLOOR_PERSONAL_PURPOSE, no_agreement_code(k));
    if (k->personal != TDSX_PERSONAL_NONE && !states_purpose(k))
        return floor_refuses(w, TDSX_FLOOR_PERSONAL_PURPOSE, TDSX_E_POLICY_PURPOSE);
    return w;
}

static int brain_or_centre(tdsx_policy_role_t r)
{
    return r == TDSX_POLICY_ROLE_BRAIN || r == TDSX_POLICY_ROLE_CENTRE;
}

/* matrix_policy, rule by rule: first match wins, `deny any` (line 10) ends it. */
static want_t matrix_file(end_t end, const kase_t *k)
{
    tdsx_policy_role_t peer = end == END_SENDER ? k->receiver : k->sender;
    tdsx_policy_role_t local = end == END_SENDER ? k->sender : k->receiver;
    if (k->rank == RANK_CORE)
        return deny_rule("no-core");
    if (end == END_SENDER) {
        if (k->rank == RANK_IMPORTANT && peer == TDSX_POLICY_ROLE_CENTRE)
            return allow_rule("imp-out", TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL, k);
        if (k->rank >= 3 && k->rank <= 4 && brain_or_centre(peer))
            return allow_rule("gen34-out", TDSX_POLICY_REQ_AGREEMENT, k);
        if (k->rank <= 2 && k->library == TDSX_LIBRARY_BASE && brain_or_centre(peer))
            return allow_rule("gen12-out", 0, k);
        return deny_rule("line-10");
    }
    if (peer == TDSX_POLICY_ROLE_ENTERPRISE && local == TDSX_POLICY_ROLE_ENTERPRISE)
        return deny_rule("no-ent-direct");
    if (k->rank == RANK_IMPORTANT && local == TDSX_POLICY_ROLE_CENTRE)
        return allow_rule("imp-in", TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL, k);
    /* `purpose P-QUALITY` matches only a valid agreement that states that purpose. */
    if (k->rank <= 4 && k->personal != TDSX_PERSONAL_NONE && valid_agreement(k) &&
        strcmp(k->agreement->purpose, "P-QUALITY") == 0)
        return allow_rule(
            "personal-in",
            TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE | TDSX_POLICY_REQ_SEAL, k);
    if (k->rank <= 4 && k->personal == TDSX_PERSONAL_NONE)
        return allow_rule("gen-in", TDSX_POLICY_REQ_AGREEMENT, k);
    return deny_rule("line-10");
}

static want_t permissive_file(end_t end, const kase_t *k)
{
    (void)end;
    return allow_rule("line-1", 0, k);
}

/* The floors that apply to the tags, met or not, and what they require. */
static unsigned floors_for(const kase_t *k)
{
    unsigned f = 0;
    if (k->rank == RANK_CORE)
        f |= TDSX_FLOOR_CORE_STAYS_HOME;
    if (k->rank == RANK_IMPORTANT)
        f |= TDSX_FLOOR_IMPORTANT_AGREEMENT | TDSX_FLOOR_IMPORTANT_SEAL;
    if (k->personal != TDSX_PERSONAL_NONE)
        f |= TDSX_FLOOR_PERSONAL_PURPOSE;
    return f;
}

static unsigned floor_requirements(const kase_t *k)
{
    unsigned r = 0;
    if (k->rank == RANK_IMPORTANT)
        r |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL;
    if (k->personal != TDSX_PERSONAL_NONE)
        r |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE;
    return r;
}

static unsigned met_requirements(const kase_t *k)
{
    return (valid_agreement(k) ? TDSX_POLICY_REQ_AGREEMENT : 0) |
           (states_purpose(k) ? TDSX_POLICY_REQ_PURPOSE : 0) |
           (k->sealed ? TDSX_POLICY_REQ_SEAL : 0);
}

/* ------------------------------------------------------------------------------------------
 * Running the matrix
 * ---------------------------------------------------------------------------------------- */
typedef want_t (*file_fn)(end_t end, const kase_t *k);

typedef struct matrix_s {
    const tdsx_policy_t *p;
    file_fn file;
    const rule_line_t *lines;
    size_t nlines;
    int verbose;
    /* Results */
    unsigned cases, mismatches, allowed;
    unsigned both_ends;   /* transfers both ends allow */
    const char *seen[32]; /* every deciding rule id met */
    size_t nseen;
} matrix_t;

static tdsx_tags_t tags_for(const kase_t *k)
{
    tdsx_tags_t t;
    memset(&t, 0, sizeof t);
    t.grade = k->rank == RANK_CORE        ? TDSX_GRADE_CORE
              : k->rank == RANK_IMPORTANT ? TDSX_GRADE_IMPORTANT
                                          : TDSX_GRADE_GENERAL;
    t.level = k->rank <= 4 ? (uint8_t)k->rank : 0;
    t.domain = TDSX_DOMAIN_PRODUCTION;
    snprintf(t.category, sizeof t.category, "production.process.quality");
    t.personal = k->personal;
    t.library = k->library;
    t.source = TDSX_SOURCE_ENTERPRISE;
    return t;
}

static const char *peer_id(tdsx_policy_role_t r)
{
    switch (r) {
    case TDSX_POLICY_ROLE_CENTRE: return "91110000600037341L/centre";
    case TDSX_POLICY_ROLE_BRAIN: return "91350100M000100Y43/brain-1";
    case TDSX_POLICY_ROLE_ENTERPRISE: return "91350200MA2XY00K1U/ent-1";
    case TDSX_POLICY_ROLE_NONE:
    default: return NULL;
    }
}

static unsigned line_of(const matrix_t *m, const char *id)
{
    for (size_t i = 0; i < m->nlines; i++)
        if (strcmp(m->lines[i].id, id) == 0)
            return m->lines[i].line;
    fail_msg("rule id %s is not in the policy's table", id);
    return 0;
}

static void describe(const kase_t *k, end_t end, char *out, size_t size)
{
    char grade[32];
    if (k->rank <= 4)
        snprintf(grade, sizeof grade, "general:%d", k->rank);
    else
        snprintf(grade, sizeof grade, "%s", k->rank == RANK_CORE ? "core" : "important");
    snprintf(out, size, "%s %s %s %s->%s agreement=%s sealed=%d, at the %s", grade,
             tdsx_personal_name(k->personal), tdsx_library_name(k->library),
             tdsx_policy_role_name(k->sender), tdsx_policy_role_name(k->receiver),
             k->agreement->name, k->sealed, end == END_SENDER ? "sender" : "receiver");
}

static void note_seen(matrix_t *m, const char *id)
{
    for (size_t i = 0; i < m->nseen; i++)
        if (strcmp(m->seen[i], id) == 0)
            return;
    assert_true(m->nseen < sizeof m->seen / sizeof m->seen[0]);
    m->seen[m->nseen++] = id;
}

/* Decides one case at one end; 1 when it is allowed. Counts a mismatch on any difference. */
static int decide(matrix_t *m, const kase_t *k, end_t end)
{
    tdsx_tags_t t = tags_for(k);
    tdsx_policy_input_t in;
    memset(&in, 0, sizeof in);
    in.direction = end == END_SENDER ? TDSX_DIR_SEND : TDSX_DIR_RECEIVE;
    in.local_role = end == END_SENDER ? k->sender : k->receiver;
    in.peer_role = end == END_SENDER ? k->receiver : k->sender;
    in.peer_id = peer_id(in.peer_role);
    in.tags = &t;
    in.agreement = k->agreement->state;
    in.purpose = k->agreement->purpose;
    in.sealed = k->sealed;

    want_t w = apply_floors(m->file(end, k), k);
    unsigned want_line = w.floor ? 0 : line_of(m, w.rule);
    unsigned want_matched_line = w.matched ? line_of(m, w.matched) : 0;
    unsigned want_required = w.matched_allow ? w.req | floor_requirements(k) : 0;

    tdsx_policy_decision_t d;
    int rc = tdsx_policy_eval(m->p, &in, &d);
    int ok =
        rc == w.code && d.code == w.code && d.allow == w.allow && d.rule_id &&
        strcmp(d.rule_id, w.rule) == 0 && d.line == want_line && d.floor == w.floor &&
        (w.matched ? d.matched_id && strcmp(d.matched_id, w.matched) == 0 : d.matched_id == NULL) &&
        d.matched_line == want_matched_line && d.floors == floors_for(k) && d.reason &&
        (!w.matched_allow ||
         (d.required == want_required && d.missing == (want_required & ~met_requirements(k))));
    m->cases++;
    if (!ok) {
        m->mismatches++;
        if (m->verbose && m->mismatches <= 10) {
            char what[160];
            describe(k, end, what, sizeof what);
            print_error("%s: got %s %s %s (matched %s, line %u), want %s %s %s (matched %s, "
                        "line %u)\n",
                        what, d.allow ? "allow" : "deny", d.rule_id ? d.rule_id : "(null)",
                        tdsx_err_name(d.code), d.matched_id ? d.matched_id : "-", d.line,
                        w.allow ? "allow" : "deny", w.rule, tdsx_err_name(w.code),
                        w.matched ? w.matched : "-", want_line);
        }
    }
    note_seen(m, w.rule);
    m->allowed += (unsigned)d.allow;
    return d.allow;
}

/* Every case at both ends. */
static void run_matrix(matrix_t *m)
{
    for (int rank = 1; rank <= RANK_CORE; rank++)
        for (size_t pi = 0; pi < 3; pi++)
            for (size_t li = 0; li < 2; li++)
                for (size_t si = 0; si < 3; si++)
                    for (size_t ri = 0; ri < 3; ri++)
                        for (size_t ai = 0; ai < N_AGREEMENTS; ai++)
                            for (int sealed = 0; sealed < 2; sealed++) {
                                kase_t k = {rank,      personals[pi],   libraries[li], roles[si],
                                            roles[ri], &agreements[ai], sealed};
                                int out = decide(m, &k, END_SENDER);
                                int in = decide(m, &k, END_RECEIVER);
                                if (out && in) {
                                    m->both_ends++;
                                    /* Both ends allowing is a transfer: the floors hold. */
                                    assert_true(rank != RANK_CORE);
                                    assert_true(rank != RANK_IMPORTANT ||
                                                (valid_agreement(&k) && sealed));
                                    assert_true(k.personal == TDSX_PERSONAL_NONE ||
                                                states_purpose(&k));
                                }
                            }
}

#define MATRIX_CASES (6u * 3 * 2 * 3 * 3 * N_AGREEMENTS * 2)

static tdsx_policy_t *parse_ok(const char *text)
{
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    if (tdsx_policy_parse(tdsx_bytes(text, strlen(text)), &p, &d) != 0)
        fail_msg("policy does not parse: %u:%u %s", d.n ? d.v[0].line : 0, d.n ? d.v[0].col : 0,
                 d.n ? d.v[0].msg : "?");
    tdsx_diags_free(&d);
    return p;
}

static int seen(const matrix_t *m, const char *id)
{
    for (size_t i = 0; i < m->nseen; i++)
        if (strcmp(m->seen[i], id) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------------------------- */
static void spec_policy_matrix_at_both_ends(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok(matrix_policy);
    matrix_t m = {.p = p,
                  .file = matrix_file,
                  .lines = matrix_lines,
                  .nlines = sizeof matrix_lines / sizeof matrix_lines[0],
                  .verbose = 1};
    run_matrix(&m);
    if (m.mismatches)
        fail_msg("%u of %u decisions differ from SPEC 8", m.mismatches, m.cases);
    assert_int_equal(m.cases, 2 * MATRIX_CASES);
    /* Every rule of the file and every floor that can act behind it decides somewhere. */
    for (size_t i = 0; i < m.nlines; i++)
        if (!seen(&m, m.lines[i].id))
            fail_msg("rule %s never decides: the matrix does not reach it", m.lines[i].id);
    /* The important rules require agreement and seal themselves, so they refuse first. */
    assert_false(seen(&m, "floor:important-needs-agreement"));
    assert_false(seen(&m, "floor:important-needs-seal"));
    assert_true(seen(&m, "floor:personal-needs-purpose"));
    /* Some transfers get through both ends. */
    assert_true(m.both_ends > 0);
    tdsx_policy_free(p);
}

static void permissive_policy_leaves_only_the_floors(void **state)
{
    (void)state;
    tdsx_policy_t *p = parse_ok(permissive_policy);
    matrix_t m = {.p = p,
                  .file = permissive_file,
                  .lines = permissive_lines,
                  .nlines = sizeof permissive_lines / sizeof permissive_lines[0],
                  .verbose = 1};
    run_matrix(&m);
    if (m.mismatches)
        fail_msg("%u of %u decisions differ from the floors of SPEC 8", m.mismatches, m.cases);
    assert_int_equal(m.cases, 2 * MATRIX_CASES);
    static const unsigned floors[] = {TDSX_FLOOR_CORE_STAYS_HOME, TDSX_FLOOR_IMPORTANT_AGREEMENT,
                                      TDSX_FLOOR_IMPORTANT_SEAL, TDSX_FLOOR_PERSONAL_PURPOSE};
    for (size_t i = 0; i < 4; i++)
        if (!seen(&m, tdsx_floor_id(floors[i])))
            fail_msg("floor %s never decides", tdsx_floor_id(floors[i]));
    assert_true(seen(&m, "line-1"));
    /* Both ends allow alike under one permissive file: every allowed case passes both. */
    assert_int_equal(m.allowed, 2 * m.both_ends);
    tdsx_policy_free(p);
}

/* The comparison is not blind: change one rule and it finds the cases that change. */
static void one_rule_changed_is_noticed(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to;
    } edits[] = {
        /* important to the centre without the seal */
        {"require agreement, seal\n[gen34", "require agreement\n[gen34"},
        /* personal information for another purpose */
        {"purpose P-QUALITY", "purpose P-OTHER"},
        /* enterprises accept from each other (line kept, so ids stay) */
        {"[no-ent-direct] deny  from enterprise local enterprise", "# no-ent-direct removed"},
        /* general:1-2 of the industry library may leave too */
        {"library base to", "library base,industry to"},
        /* sealed or not, general:3-4 needs no agreement */
        {"general>=3 to brain,centre require agreement", "general>=3 to brain,centre"},
        /* the last rule allows */
        {"deny any\n", "allow any\n"},
        /* the brain takes important data in as well */
        {"from any local centre", "from any local centre,brain"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char text[sizeof matrix_policy + 64];
        const char *at = strstr(matrix_policy, edits[i].from);
        assert_non_null(at);
        size_t head = (size_t)(at - matrix_policy);
        snprintf(text, sizeof text, "%.*s%s%s", (int)head, matrix_policy, edits[i].to,
                 at + strlen(edits[i].from));
        tdsx_policy_t *p = parse_ok(text);
        matrix_t m = {.p = p,
                      .file = matrix_file,
                      .lines = matrix_lines,
                      .nlines = sizeof matrix_lines / sizeof matrix_lines[0],
                      .verbose = 0};
        run_matrix(&m);
        if (m.mismatches == 0)
            fail_msg("edit %zu ('%s' -> '%s') went unnoticed", i, edits[i].from, edits[i].to);
        tdsx_policy_free(p);
    }
    /* And a permissive file with a requirement is no longer only the floors. */
    tdsx_policy_t *p = parse_ok("allow any require seal\n");
    matrix_t m = {.p = p,
                  .file = permissive_file,
                  .lines = permissive_lines,
                  .nlines = sizeof permissive_lines / sizeof permissive_lines[0],
                  .verbose = 0};
    run_matrix(&m);
    assert_true(m.mismatches > 0);
    tdsx_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_policy_matrix_at_both_ends),
        cmocka_unit_test(permissive_policy_leaves_only_the_floors),
        cmocka_unit_test(one_rule_changed_is_noticed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
