#include "support.h"

#include "policy.h"

#include <openssl/evp.h>
#include <string.h>

#define DATA TDSX_TEST_DATA "/policy/"

static tdsx_policy_t *parse_ok(const char *text)
{
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int rc = tdsx_policy_parse(tdsx_bytes(text, strlen(text)), &p, &d);
    if (rc)
        fail_msg("'%s': rc %d, first: %u:%u %s", text, rc, d.n ? d.v[0].line : 0,
                 d.n ? d.v[0].col : 0, d.n ? d.v[0].msg : "");
    tdsx_diags_free(&d);
    return p;
}

static tdsx_policy_t *load_ok(const char *path)
{
    tdsx_policy_t *p = NULL;
    assert_int_equal(tdsx_policy_load(path, &p, NULL), 0);
    return p;
}

static const char spec_canonical[] =
    "# tdsx policy v1 (normalised)\n"
    "deny grade core\n"
    "[r-important-to-centre] allow grade important to centre require agreement,seal\n"
    "allow grade general:3-4 to centre,brain require agreement\n"
    "allow grade general:1-2 library base to centre,brain\n"
    "deny any\n";

static void spec_example_parses_with_rule_ids(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    assert_int_equal(tdsx_policy_rule_count(p), 5);
    static const char *const ids[] = {"line-2", "r-important-to-centre", "line-4", "line-5",
                                      "line-6"};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(tdsx_policy_rule_id(p, i), ids[i]);
        assert_int_equal(tdsx_policy_rule_line(p, i), i + 2);
    }
    size_t len = 0;
    assert_string_equal(tdsx_policy_canonical(p, &len), spec_canonical);
    assert_int_equal(len, strlen(spec_canonical));
    char text[256];
    assert_int_equal(tdsx_policy_rule_text(p, 2, text, sizeof text), 0);
    assert_string_equal(text, "[line-4] allow grade general:3-4 to centre,brain require agreement");
    assert_int_equal(tdsx_policy_rule_text(p, 2, text, 10), TDSX_E_TOOBIG);
    assert_string_equal(text, "");
    assert_int_equal(tdsx_policy_rule_text(p, 5, text, sizeof text), TDSX_E_INVAL);
    tdsx_policy_free(p);
}

static void hash_is_sha256_of_the_canonical_text(void **state)
{
    (void)state;
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    size_t len;
    const char *c = tdsx_policy_canonical(p, &len);
    uint8_t want[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(c, len, want, &n, EVP_sha256(), NULL), 1);
    assert_memory_equal(tdsx_policy_hash(p), want, 32);
    char hex[65], want_hex[65];
    tdsx_policy_hash_hex(p, hex);
    tdsx_hex_encode(want_hex, want, 32);
    assert_string_equal(hex, want_hex);
    tdsx_policy_free(p);
}

static void reformatted_equivalent_hashes_equal(void **state)
{
    (void)state;
    tdsx_policy_t *a = load_ok(DATA "spec.policy");
    tdsx_policy_t *b = load_ok(DATA "spec-reformatted.policy");
    assert_string_equal(tdsx_policy_canonical(a, NULL), tdsx_policy_canonical(b, NULL));
    assert_memory_equal(tdsx_policy_hash(a), tdsx_policy_hash(b), 32);
    /* The canonical text parses back to the same policy. */
    tdsx_policy_t *c = parse_ok(tdsx_policy_canonical(a, NULL));
    assert_memory_equal(tdsx_policy_hash(a), tdsx_policy_hash(c), 32);
    tdsx_policy_free(a);
    tdsx_policy_free(b);
    tdsx_policy_free(c);
}

/* Pairs of rules written differently that mean the same. */
static void equivalent_forms_normalise_alike(void **state)
{
    (void)state;
    static const char *const same[][2] = {
        {"allow grade general>=3", "allow grade general:3-4"},
        {"allow grade general>2", "allow grade general:4,general:3"},
        {"allow grade general<=2", "allow grade general:1, general:2"},
        {"allow grade general<3", "allow grade general:1-2"},
        {"allow grade general>=1", "allow grade general"},
        {"allow grade general:1-4", "allow grade general"},
        {"allow grade >=important", "allow grade core,important"},
        {"allow grade >general:3", "allow grade general:4,important,core"},
        {"allow grade <important", "allow grade general"},
        {"allow grade <=general:2", "allow grade general:1-2"},
        {"allow grade core,important,general to brain", "allow to brain"},
        {"allow grade general:2,general:2", "allow grade general:2"},
        {"allow to any", "allow direction send"},
        {"allow with any", "allow any"},
        {"allow with centre,brain,enterprise", "allow any"},
        {"allow direction send with brain", "allow to brain"},
        {"allow domain rd,ops", "allow domain ops,rd"},
        {"allow category production, production.process", "allow category production"},
        {"allow category rd.test,rd.design", "allow category rd.design,rd.test"},
        {"allow peer 91350100M000100Y43, 91350100M000100Y43/node-a",
         "allow peer 91350100M000100Y43"},
        {"allow purpose P2,P1,P2", "allow purpose P1,P2"},
        {"allow any require purpose", "allow any require agreement,purpose"},
        {"allow any require seal,agreement,seal", "allow any require agreement,seal"},
        {"allow personal none,personal,sensitive-personal", "allow any"},
        {"allow local brain relay", "allow relay local brain"},
        {"[x] allow any", "[x]allow any # comment"},
        {"allow any", "\tallow   any  \r"},
        {"", "# only a comment\n\n   \n"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        tdsx_policy_t *a = parse_ok(same[i][0]);
        tdsx_policy_t *b = parse_ok(same[i][1]);
        if (memcmp(tdsx_policy_hash(a), tdsx_policy_hash(b), 32) != 0)
            fail_msg("'%s' and '%s' differ:\n%s%s", same[i][0], same[i][1],
                     tdsx_policy_canonical(a, NULL), tdsx_policy_canonical(b, NULL));
        /* The normalised text is itself a policy that normalises to the same text. */
        tdsx_policy_t *c = parse_ok(tdsx_policy_canonical(a, NULL));
        assert_string_equal(tdsx_policy_canonical(c, NULL), tdsx_policy_canonical(a, NULL));
        tdsx_policy_free(c);
        tdsx_policy_free(a);
        tdsx_policy_free(b);
    }
}

static void semantic_changes_hash_different(void **state)
{
    (void)state;
    tdsx_policy_t *base = load_ok(DATA "spec.policy");
    /* One change each to the SPEC example. */
    static const char *const changed[] = {
        /* general>=3 -> general>=2 */
        "deny grade core\n[r-important-to-centre] allow grade important to centre require "
        "agreement, seal\nallow grade general>=2 to brain,centre require agreement\nallow "
        "grade general<=2 library base to brain,centre\ndeny any\n",
        /* seal dropped */
        "deny grade core\n[r-important-to-centre] allow grade important to centre require "
        "agreement\nallow grade general>=3 to brain,centre require agreement\nallow grade "
        "general<=2 library base to brain,centre\ndeny any\n",
        /* label changed (it goes into receipts) */
        "deny grade core\n[r-imp] allow grade important to centre require agreement, seal\n"
        "allow grade general>=3 to brain,centre require agreement\nallow grade general<=2 "
        "library base to brain,centre\ndeny any\n",
        /* two rules swapped */
        "deny grade core\nallow grade general>=3 to brain,centre require agreement\n"
        "[r-important-to-centre] allow grade important to centre require agreement, seal\n"
        "allow grade general<=2 library base to brain,centre\ndeny any\n",
        /* to -> from */
        "deny grade core\n[r-important-to-centre] allow grade important from centre require "
        "agreement, seal\nallow grade general>=3 to brain,centre require agreement\nallow "
        "grade general<=2 library base to brain,centre\ndeny any\n",
        /* last rule allow instead of deny */
        "deny grade core\n[r-important-to-centre] allow grade important to centre require "
        "agreement, seal\nallow grade general>=3 to brain,centre require agreement\nallow "
        "grade general<=2 library base to brain,centre\nallow any\n",
        /* trailing deny any removed */
        "deny grade core\n[r-important-to-centre] allow grade important to centre require "
        "agreement, seal\nallow grade general>=3 to brain,centre require agreement\nallow "
        "grade general<=2 library base to brain,centre\n",
        /* library base -> industry */
        "deny grade core\n[r-important-to-centre] allow grade important to centre require "
        "agreement, seal\nallow grade general>=3 to brain,centre require agreement\nallow "
        "grade general<=2 library industry to brain,centre\ndeny any\n",
    };
    uint8_t seen[sizeof changed / sizeof changed[0]][32];
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        tdsx_policy_t *p = parse_ok(changed[i]);
        if (memcmp(tdsx_policy_hash(p), tdsx_policy_hash(base), 32) == 0)
            fail_msg("change %zu hashes like the original", i);
        memcpy(seen[i], tdsx_policy_hash(p), 32);
        for (size_t k = 0; k < i; k++)
            assert_memory_not_equal(seen[k], seen[i], 32);
        tdsx_policy_free(p);
    }
    tdsx_policy_free(base);
}

typedef struct bad_rule_s {
    const char *text;
    unsigned line, col;
    tdsx_diag_kind_t kind;
    const char *frag;
} bad_rule_t;

static void malformed_rules_report_line_and_column(void **state)
{
    (void)state;
    static const bad_rule_t bad[] = {
        {"permit grade core", 1, 1, TDSX_DIAG_UNKNOWN_WORD, "unknown word 'permit'"},
        {"grade core", 1, 1, TDSX_DIAG_SYNTAX, "starts with allow or deny, not 'grade'"},
        {"allow grade", 1, 12, TDSX_DIAG_SYNTAX, "expected a grade"},
        {"allow grade secret", 1, 13, TDSX_DIAG_UNKNOWN_WORD, "unknown grade 'secret'"},
        {"allow grade general>=5", 1, 22, TDSX_DIAG_BAD_VALUE, "general level '5' is not 1 to 4"},
        {"allow grade general>=", 1, 22, TDSX_DIAG_SYNTAX, "expected a general level"},
        {"allow grade general:5", 1, 13, TDSX_DIAG_BAD_VALUE, "bad general level 'general:5'"},
        {"allow grade general:3-2", 1, 13, TDSX_DIAG_BAD_VALUE, "bad general level"},
        {"allow grade general:", 1, 13, TDSX_DIAG_BAD_VALUE, "bad general level"},
        {"allow grade general<1", 1, 20, TDSX_DIAG_BAD_VALUE, "'general<1' matches no level"},
        {"allow grade >core", 1, 13, TDSX_DIAG_BAD_VALUE, "'>core' matches no grade"},
        {"allow grade <general:1", 1, 13, TDSX_DIAG_BAD_VALUE, "matches no grade"},
        {"allow grade >=general", 1, 15, TDSX_DIAG_BAD_VALUE, "compare with a level"},
        {"allow grade >=", 1, 15, TDSX_DIAG_SYNTAX, "after the comparison"},
        {"allow grade general=3", 1, 20, TDSX_DIAG_SYNTAX, "unexpected '='"},
        {"allow grade=core", 1, 12, TDSX_DIAG_SYNTAX, "unexpected '='"},
        {"allow grade core,", 1, 18, TDSX_DIAG_SYNTAX, "expected a grade at the end"},
        {"allow grade core, domain rd", 1, 19, TDSX_DIAG_SYNTAX, "found 'domain'"},
        {"allow to brain centre", 1, 16, TDSX_DIAG_SYNTAX, "missing ',' before 'centre'"},
        {"allow to brain,,centre", 1, 16, TDSX_DIAG_SYNTAX, "expected role"},
        {"allow to brain,", 1, 16, TDSX_DIAG_SYNTAX, "at the end of the line"},
        {"allow to mars", 1, 10, TDSX_DIAG_UNKNOWN_WORD, "unknown role 'mars'"},
        {"allow from", 1, 11, TDSX_DIAG_SYNTAX, "expected role"},
        {"allow local moon", 1, 13, TDSX_DIAG_UNKNOWN_WORD, "unknown role 'moon'"},
        {"allow direction up", 1, 17, TDSX_DIAG_UNKNOWN_WORD, "unknown direction 'up'"},
        {"allow domain prod", 1, 14, TDSX_DIAG_UNKNOWN_WORD, "unknown domain 'prod'"},
        {"allow personal maybe", 1, 16, TDSX_DIAG_UNKNOWN_WORD, "unknown personal 'maybe'"},
        {"allow library core", 1, 15, TDSX_DIAG_UNKNOWN_WORD, "unknown library 'core'"},
        {"allow source private", 1, 14, TDSX_DIAG_UNKNOWN_WORD, "unknown source 'private'"},
        {"allow category factory.x", 1, 16, TDSX_DIAG_BAD_VALUE, "does not start with a domain"},
        {"allow category production..x", 1, 16, TDSX_DIAG_BAD_VALUE, "malformed category"},
        {"allow category Production", 1, 16, TDSX_DIAG_BAD_VALUE, "category 'Production'"},
        {"allow peer 12345/x", 1, 12, TDSX_DIAG_BAD_VALUE, "bad peer id '12345/x'"},
        {"allow peer 91350100M000100Y43/", 1, 12, TDSX_DIAG_BAD_VALUE, "bad peer id"},
        {"allow peer 91350100M000100I43/n", 1, 12, TDSX_DIAG_BAD_VALUE, "bad peer id"},
        {"allow purpose a/b", 1, 15, TDSX_DIAG_BAD_VALUE, "bad purpose code 'a/b'"},
        {"allow any grade core", 1, 7, TDSX_DIAG_SYNTAX, "'any' cannot be combined"},
        {"allow any any", 1, 11, TDSX_DIAG_DUPLICATE, "'any' already given"},
        {"allow", 1, 6, TDSX_DIAG_SYNTAX, "rule has no conditions"},
        {"allow require agreement", 1, 7, TDSX_DIAG_SYNTAX, "rule has no conditions"},
        {"deny grade core require agreement", 1, 17, TDSX_DIAG_SYNTAX,
         "a deny rule cannot have requirements"},
        {"allow grade core grade important", 1, 18, TDSX_DIAG_DUPLICATE,
         "grade already given at column 7"},
        {"allow to brain from centre", 1, 16, TDSX_DIAG_DUPLICATE, "direction already given"},
        {"allow with brain to centre", 1, 18, TDSX_DIAG_DUPLICATE, "counterpart role already"},
        {"allow relay direct", 1, 13, TDSX_DIAG_DUPLICATE, "relay or direct already given"},
        {"allow grade core require sealing", 1, 26, TDSX_DIAG_UNKNOWN_WORD,
         "unknown requirement 'sealing'"},
        {"allow grade core require", 1, 25, TDSX_DIAG_SYNTAX, "expected requirement"},
        {"allow grade core require seal grade important", 1, 31, TDSX_DIAG_SYNTAX,
         "'grade' after require"},
        {"allow grade core require seal agreement", 1, 31, TDSX_DIAG_SYNTAX,
         "missing ',' before 'agreement'"},
        {"allow any require agreement purpose", 1, 29, TDSX_DIAG_SYNTAX,
         "missing ',' before 'purpose'"},
        {"[bad label] allow any", 1, 1, TDSX_DIAG_SYNTAX, "malformed label"},
        {"[line-3] allow any", 1, 2, TDSX_DIAG_BAD_VALUE, "label 'line-3' is reserved"},
        {"[default-deny] allow any", 1, 2, TDSX_DIAG_BAD_VALUE, "is reserved"},
        {"[-x] allow any", 1, 2, TDSX_DIAG_BAD_VALUE, "bad label '-x'"},
        {"[x]", 1, 4, TDSX_DIAG_SYNTAX, "expected allow or deny after the label"},
        {"allow grade core allow", 1, 18, TDSX_DIAG_SYNTAX, "'allow' again"},
        {"allow grade core frobnicate", 1, 18, TDSX_DIAG_UNKNOWN_WORD, "unknown word 'frobnicate'"},
        {"allow grade general:1 ]", 1, 23, TDSX_DIAG_SYNTAX, "unexpected ']'"},
        {", allow any", 1, 1, TDSX_DIAG_SYNTAX, "unexpected ','"},
        {"allow grade core $", 1, 18, TDSX_DIAG_SYNTAX, "unexpected character 0x24 '$'"},
        {"allow to brain\xef\xbc\x8c"
         "centre",
         1, 15, TDSX_DIAG_SYNTAX, "full-width comma"},
        {"allow 研发 grade core", 1, 7, TDSX_DIAG_SYNTAX, "unexpected character '研'"},
        {"allow grade core\xff", 1, 17, TDSX_DIAG_SYNTAX, "invalid UTF-8 byte 0xff"},
        {"# 注释\n\n   deny grade nope", 3, 15, TDSX_DIAG_UNKNOWN_WORD, "unknown grade 'nope'"},
        {"[a] allow grade core\n[a] deny any", 2, 2, TDSX_DIAG_DUPLICATE,
         "label 'a' already used on line 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_policy_t *p = (tdsx_policy_t *)0x1;
        tdsx_diags_t d;
        tdsx_diags_init(&d);
        int rc = tdsx_policy_parse(tdsx_bytes(bad[i].text, strlen(bad[i].text)), &p, &d);
        if (rc != TDSX_E_POLICY_PARSE || d.n == 0)
            fail_msg("'%s' accepted (rc %d)", bad[i].text, rc);
        const tdsx_diag_t *e = &d.v[0];
        if (e->line != bad[i].line || e->col != bad[i].col || e->kind != bad[i].kind ||
            !strstr(e->msg, bad[i].frag) || e->code != TDSX_E_POLICY_PARSE ||
            e->severity != TDSX_DIAG_ERROR)
            fail_msg("'%s': got %u:%u kind %d '%s'", bad[i].text, e->line, e->col, e->kind, e->msg);
        assert_ptr_equal(p, (tdsx_policy_t *)0x1); /* untouched */
        tdsx_diags_free(&d);
    }
}

/* The parser goes on after an error: every problem of a file in one pass, in order. */
static void every_error_of_a_file_is_reported(void **state)
{
    (void)state;
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_load(DATA "bad.policy", &p, &d), TDSX_E_POLICY_PARSE);
    assert_null(p);
    static const struct {
        unsigned line, col;
        const char *frag;
    } want[] = {
        {3, 26, "unknown role 'centr'"},        {4, 1, "unknown word 'permit'"},
        {5, 22, "general level '5'"},           {5, 31, "unknown domain 'prod'"},
        {6, 45, "missing ',' before 'centre'"}, {7, 5, "rule has no conditions"},
    };
    assert_int_equal(d.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].line != want[i].line || d.v[i].col != want[i].col ||
            !strstr(d.v[i].msg, want[i].frag))
            fail_msg("error %zu: %u:%u %s", i, d.v[i].line, d.v[i].col, d.v[i].msg);
    tdsx_diags_free(&d);
    /* Several errors on one line are all found. */
    tdsx_diags_init(&d);
    const char *line = "allow grade nope domain nada to mars require nothing";
    assert_int_equal(tdsx_policy_parse(tdsx_bytes(line, strlen(line)), &p, &d),
                     TDSX_E_POLICY_PARSE);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.v[0].col, 13);
    assert_int_equal(d.v[1].col, 25);
    assert_int_equal(d.v[2].col, 33);
    assert_int_equal(d.v[3].col, 46);
    tdsx_diags_free(&d);
    /* NULL diags: still refused. */
    assert_int_equal(tdsx_policy_load(DATA "bad.policy", &p, NULL), TDSX_E_POLICY_PARSE);
    assert_null(p);
}

static void limits_are_enforced(void **state)
{
    (void)state;
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_buf_t b;
    /* 65 values in one list. */
    tdsx_buf_init(&b, 1 << 22);
    assert_int_equal(tdsx_buf_append_str(&b, "allow purpose P0"), 0);
    for (int i = 1; i <= TDSX_POLICY_LIST_MAX; i++)
        assert_int_equal(tdsx_buf_printf(&b, ",P%d", i), 0);
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_parse(tdsx_buf_bytes(&b), &p, &d), TDSX_E_POLICY_PARSE);
    assert_int_equal(d.v[0].kind, TDSX_DIAG_LIMIT);
    tdsx_diags_free(&d);
    /* TDSX_POLICY_RULES_MAX + 10 rules: one error, not ten. */
    tdsx_buf_reset(&b);
    for (int i = 0; i < TDSX_POLICY_RULES_MAX + 10; i++)
        assert_int_equal(tdsx_buf_append_str(&b, "deny any\n"), 0);
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_parse(tdsx_buf_bytes(&b), &p, &d), TDSX_E_POLICY_PARSE);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].kind, TDSX_DIAG_LIMIT);
    assert_int_equal(d.v[0].line, TDSX_POLICY_RULES_MAX + 1);
    tdsx_diags_free(&d);
    /* Exactly the maximum is fine. */
    b.len = (size_t)TDSX_POLICY_RULES_MAX * 9;
    assert_int_equal(tdsx_policy_parse(tdsx_buf_bytes(&b), &p, NULL), 0);
    assert_int_equal(tdsx_policy_rule_count(p), TDSX_POLICY_RULES_MAX);
    tdsx_policy_free(p);
    p = NULL;
    /* Too many words on one line. */
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_buf_append_str(&b, "allow to brain"), 0);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(tdsx_buf_append_str(&b, ",brain"), 0);
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_parse(tdsx_buf_bytes(&b), &p, &d), TDSX_E_POLICY_PARSE);
    assert_int_equal(d.v[0].kind, TDSX_DIAG_LIMIT);
    tdsx_diags_free(&d);
    /* A file over the cap. */
    tdsx_buf_reset(&b);
    while (b.len <= TDSX_POLICY_FILE_MAX)
        assert_int_equal(tdsx_buf_append_str(&b, "# padding padding padding padding\n"), 0);
    assert_int_equal(tdsx_policy_parse(tdsx_buf_bytes(&b), &p, NULL), TDSX_E_TOOBIG);
    assert_null(p);
    tdsx_buf_free(&b);
    assert_int_equal(tdsx_policy_load(DATA "no-such.policy", &p, NULL), TDSX_E_NOTFOUND);
}

/* ------------------------------------------------------------------------------------------
 * Lint
 * ---------------------------------------------------------------------------------------- */
typedef struct finding_s {
    unsigned line;
    tdsx_diag_kind_t kind;
    const char *frag;
} finding_t;

static void expect_findings(const char *text, const tdsx_taxonomy_t *tax, const finding_t *want,
                            size_t n)
{
    tdsx_policy_t *p = parse_ok(text);
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int count = tdsx_policy_lint(p, tax, &d);
    if (count != (int)n || d.n != n) {
        for (size_t i = 0; i < d.n; i++)
            print_error("  %u:%u %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
        fail_msg("'%s': %d findings, want %zu", text, count, n);
    }
    for (size_t i = 0; i < n; i++) {
        const tdsx_diag_t *e = &d.v[i];
        if (e->line != want[i].line || e->kind != want[i].kind || !strstr(e->msg, want[i].frag) ||
            e->severity != TDSX_DIAG_WARNING)
            fail_msg("'%s' finding %zu: %u kind %d '%s'", text, i, e->line, e->kind, e->msg);
    }
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
}

static void spec_example_lints_clean(void **state)
{
    (void)state;
    tdsx_taxonomy_t *tax = NULL;
    assert_int_equal(tdsx_taxonomy_new_default(&tax), 0);
    tdsx_policy_t *p = load_ok(DATA "spec.policy");
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_lint(p, tax, &d), 0);
    assert_int_equal(d.n, 0);
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
    tdsx_taxonomy_free(tax);
}

static void shadowed_rules_are_unreachable(void **state)
{
    (void)state;
    uint8_t *text;
    size_t len;
    assert_int_equal(tdsx_file_read(DATA "shadowed.policy", 1 << 16, &text, &len), 0);
    static const finding_t file[] = {
        {5, TDSX_DIAG_UNREACHABLE, "rule line-3 on line 3 matches every transfer"},
        {6, TDSX_DIAG_FLOOR_WEAKER, "allows every grade"},
        {7, TDSX_DIAG_UNREACHABLE, "rule line-6 on line 6"},
    };
    expect_findings((const char *)text, NULL, file, 3);
    tdsx_free(text);

    /* A whole domain written as a category prefix covers the domain condition. */
    static const finding_t dom[] = {{2, TDSX_DIAG_UNREACHABLE, "line-1"}};
    expect_findings("deny category production\ndeny domain production grade general:1", NULL, dom,
                    1);
    expect_findings("deny category production\nallow category production.process.x", NULL, dom, 1);
    /* ...but a narrower category does not cover the domain. */
    expect_findings("deny category production.process\ndeny domain production", NULL, NULL, 0);
    /* Organisation-wide peer covers one of its nodes, not the reverse. */
    expect_findings("deny peer 91350100M000100Y43\ndeny peer 91350100M000100Y43/n1", NULL, dom, 1);
    expect_findings("deny peer 91350100M000100Y43/n1\ndeny peer 91350100M000100Y43", NULL, NULL, 0);
    expect_findings("deny peer 91350100M000100Y43/n1\ndeny peer 91350100M000100Y43/n2", NULL, NULL,
                    0);
    /* Purpose lists: subset is shadowed; no purpose condition is wider than any. */
    expect_findings("deny purpose P1,P2\ndeny purpose P1 grade general:1", NULL, dom, 1);
    expect_findings("deny purpose P1\ndeny grade general:1", NULL, NULL, 0);
    /* Every dimension must be covered: a wider grade alone is not enough. */
    expect_findings("deny grade general to brain\ndeny grade general:1", NULL, NULL, 0);
    expect_findings("deny to brain\ndeny from brain", NULL, NULL, 0);
    expect_findings("deny with brain\ndeny from brain relay", NULL, dom, 1);
    expect_findings("deny relay\ndeny direct", NULL, NULL, 0);
    expect_findings("deny local centre\ndeny local centre,brain", NULL, NULL, 0);
    expect_findings("deny local centre,brain\ndeny local centre source public", NULL, dom, 1);
    /* Requirements do not matter for matching: an allow with requirements shadows too. */
    static const finding_t req[] = {{2, TDSX_DIAG_UNREACHABLE, "line-1"}};
    expect_findings("allow grade general require agreement\ndeny grade general:4", NULL, req, 1);
    /* Only the first shadowing rule is named. */
    static const finding_t first[] = {{3, TDSX_DIAG_UNREACHABLE, "rule line-1 on line 1"}};
    expect_findings("deny grade general\ndeny grade general:1-2\ndeny grade general:1", NULL,
                    (const finding_t[]){{2, TDSX_DIAG_UNREACHABLE, "line-1"}, first[0]}, 2);
}

static void contradictions_never_match(void **state)
{
    (void)state;
    static const finding_t never[] = {{1, TDSX_DIAG_NEVER_MATCHES, "never matches"}};
    expect_findings("deny domain rd category production.process", NULL, never, 1);
    /* A rule that never matches shadows nothing and is not shadowed. */
    expect_findings("deny domain rd category production\ndeny category production", NULL, never, 1);
    expect_findings("deny domain rd,production category production.process", NULL, NULL, 0);
}

static void floors_flag_impossible_and_weaker_allows(void **state)
{
    (void)state;
    static const finding_t core[] = {
        {1, TDSX_DIAG_FLOOR_IMPOSSIBLE, "never allows anything: core data never leaves"}};
    expect_findings("allow grade core to centre require agreement,seal", NULL, core, 1);
    expect_findings("allow grade >important", NULL, core, 1);
    static const finding_t core_part[] = {
        {1, TDSX_DIAG_FLOOR_WEAKER, "core data it names is still refused"}};
    expect_findings("allow grade important,core require agreement,seal", NULL, core_part, 1);
    static const finding_t imp[] = {
        {1, TDSX_DIAG_FLOOR_WEAKER, "needs an agreement and a sealed transfer"}};
    expect_findings("allow grade important to centre", NULL, imp, 1);
    static const finding_t imp_seal[] = {
        {1, TDSX_DIAG_FLOOR_WEAKER, "still needs a sealed transfer (floor:important-needs-seal)"}};
    expect_findings("allow grade general:4,important require agreement", NULL, imp_seal, 1);
    static const finding_t imp_agr[] = {
        {1, TDSX_DIAG_FLOOR_WEAKER, "still needs an agreement (floor:important-needs-agreement)"}};
    expect_findings("allow grade important require seal", NULL, imp_agr, 1);
    static const finding_t pers[] = {{1, TDSX_DIAG_FLOOR_WEAKER, "floor:personal-needs-purpose"}};
    expect_findings("allow grade general personal personal require agreement", NULL, pers, 1);
    expect_findings("allow grade general personal sensitive-personal", NULL, pers, 1);
    static const finding_t every[] = {{1, TDSX_DIAG_FLOOR_WEAKER, "allows every grade"}};
    expect_findings("allow any", NULL, every, 1);
    expect_findings("allow to centre require agreement,seal,purpose", NULL, every, 1);
    /* Rules that say what the floors say, and deny rules, are clean. */
    expect_findings("allow grade important require agreement,seal", NULL, NULL, 0);
    expect_findings("allow grade general personal personal require purpose", NULL, NULL, 0);
    expect_findings("allow grade general personal none", NULL, NULL, 0);
    expect_findings("deny grade core\ndeny any", NULL, NULL, 0);
}

static void categories_are_checked_against_the_taxonomy(void **state)
{
    (void)state;
    tdsx_taxonomy_t *tax = NULL;
    assert_int_equal(tdsx_taxonomy_new_default(&tax), 0);
    static const finding_t tx[] = {
        {2, TDSX_DIAG_TAXONOMY, "category 'production.paint' is not in the taxonomy"}};
    const char *text = "deny category production.process.quality\n"
                       "deny category production.paint,rd.design";
    expect_findings(text, tax, tx, 1);
    expect_findings(text, NULL, NULL, 0); /* no taxonomy, no check */
    tdsx_taxonomy_free(tax);
}

static void empty_policy_refuses_everything(void **state)
{
    (void)state;
    static const finding_t empty[] = {{1, TDSX_DIAG_EMPTY, "no rules"}};
    expect_findings("# nothing here\n", NULL, empty, 1);
    tdsx_policy_t *p = parse_ok("");
    assert_int_equal(tdsx_policy_rule_count(p), 0);
    assert_string_equal(tdsx_policy_canonical(p, NULL), "# tdsx policy v1 (normalised)\n");
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_policy_lint(p, NULL, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_policy_lint(NULL, NULL, &d), TDSX_E_INVAL);
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
}

/* ------------------------------------------------------------------------------------------
 * Memory
 * ---------------------------------------------------------------------------------------- */
static void allocation_failures_are_clean(void **state)
{
    (void)state;
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(DATA "spec-reformatted.policy", 1 << 16, &text, &len), 0);
    tdsx_policy_t *ref = parse_ok((const char *)text);
    int ok = 0;
    for (unsigned long n = 1; n < 500 && !ok; n++) {
        tdsx_policy_t *p = NULL;
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_policy_parse(tdsx_bytes(text, len), &p, NULL);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            ok = 1;
            assert_memory_equal(tdsx_policy_hash(p), tdsx_policy_hash(ref), 32);
        } else {
            assert_int_equal(rc, TDSX_E_NOMEM);
            assert_null(p);
        }
        tdsx_policy_free(p);
    }
    assert_true(ok);
    /* With diagnostics to record, a failing allocation is NOMEM too. */
    const char *bad = "permit any\nallow grade x\n";
    for (unsigned long n = 1; n < 50; n++) {
        tdsx_policy_t *p = NULL;
        tdsx_diags_t d;
        tdsx_diags_init(&d);
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_policy_parse(tdsx_bytes(bad, strlen(bad)), &p, &d);
        tdsx_test_alloc_reset();
        assert_true(rc == TDSX_E_NOMEM || rc == TDSX_E_POLICY_PARSE);
        tdsx_diags_free(&d);
    }
    tdsx_policy_free(ref);
    tdsx_free(text);
}

/* Reload is parse-then-swap: a new object, the old one untouched and usable. */
static void reload_leaves_the_old_policy_valid(void **state)
{
    (void)state;
    tdsx_policy_t *old = load_ok(DATA "spec.policy");
    char before[65], after[65];
    tdsx_policy_hash_hex(old, before);
    tdsx_policy_t *next = old;
    assert_int_equal(tdsx_policy_load(DATA "bad.policy", &next, NULL), TDSX_E_POLICY_PARSE);
    assert_ptr_equal(next, old);
    assert_int_equal(tdsx_policy_load(DATA "permissive.policy", &next, NULL), 0);
    assert_ptr_not_equal(next, old);
    tdsx_policy_hash_hex(old, after);
    assert_string_equal(before, after);
    assert_string_equal(tdsx_policy_rule_id(old, 1), "r-important-to-centre");
    tdsx_policy_free(next);
    tdsx_policy_free(old);
    tdsx_policy_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_parses_with_rule_ids),
        cmocka_unit_test(hash_is_sha256_of_the_canonical_text),
        cmocka_unit_test(reformatted_equivalent_hashes_equal),
        cmocka_unit_test(equivalent_forms_normalise_alike),
        cmocka_unit_test(semantic_changes_hash_different),
        cmocka_unit_test(malformed_rules_report_line_and_column),
        cmocka_unit_test(every_error_of_a_file_is_reported),
        cmocka_unit_test(limits_are_enforced),
        cmocka_unit_test(spec_example_lints_clean),
        cmocka_unit_test(shadowed_rules_are_unreachable),
        cmocka_unit_test(contradictions_never_match),
        cmocka_unit_test(floors_flag_impossible_and_weaker_allows),
        cmocka_unit_test(categories_are_checked_against_the_taxonomy),
        cmocka_unit_test(empty_policy_refuses_everything),
        cmocka_unit_test(allocation_failures_are_clean),
        cmocka_unit_test(reload_leaves_the_old_policy_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
