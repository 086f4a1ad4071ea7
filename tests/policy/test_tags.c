#include "support.h"

#include "policy.h"

#include <string.h>

static const char spec_tags[] = "grade=general:3 domain=production "
                                "category=production.process.quality personal=none "
                                "library=base source=enterprise";

static int parse(const char *s, tdsx_tags_t *t, tdsx_tags_error_t *e)
{
    return tdsx_tags_parse(tdsx_bytes(s, strlen(s)), t, e);
}

static tdsx_tags_t tags_of(const char *s)
{
    tdsx_tags_t t;
    tdsx_tags_error_t e;
    int rc = parse(s, &t, &e);
    if (rc)
        fail_msg("'%s': %s", s, e.msg);
    return t;
}

static void spec_example_parses_into_fields(void **state)
{
    (void)state;
    tdsx_tags_t t = tags_of(spec_tags);
    assert_int_equal(t.grade, TDSX_GRADE_GENERAL);
    assert_int_equal(t.level, 3);
    assert_int_equal(t.domain, TDSX_DOMAIN_PRODUCTION);
    assert_string_equal(t.category, "production.process.quality");
    assert_int_equal(t.personal, TDSX_PERSONAL_NONE);
    assert_int_equal(t.library, TDSX_LIBRARY_BASE);
    assert_int_equal(t.source, TDSX_SOURCE_ENTERPRISE);
    assert_int_equal(tdsx_tags_check(&t), 0);
    char out[TDSX_TAGS_TEXT_MAX];
    assert_int_equal(tdsx_tags_format(&t, out, sizeof out), 0);
    assert_string_equal(out, spec_tags);
}

/* Every combination of grade, domain, personal, library and source formats and parses back
 * to the same struct and the same text. */
static void every_combination_round_trips(void **state)
{
    (void)state;
    static const char *const grades[] = {"general:1", "general:2", "general:3",
                                         "general:4", "important", "core"};
    static const char *const personal[] = {"none", "personal", "sensitive-personal"};
    static const char *const lib[] = {"base", "industry", "scenario"};
    static const char *const src[] = {"public", "industry", "enterprise"};
    unsigned n = 0;
    for (int g = 0; g < 6; g++)
        for (int d = 1; d <= TDSX_DOMAIN_COUNT; d++)
            for (int p = 0; p < 3; p++)
                for (int l = 0; l < 3; l++)
                    for (int s = 0; s < 3; s++) {
                        char in[TDSX_TAGS_TEXT_MAX], out[TDSX_TAGS_TEXT_MAX];
                        const char *dn = tdsx_domain_name((tdsx_domain_t)d);
                        snprintf(in, sizeof in,
                                 "grade=%s domain=%s category=%s.x-1.y personal=%s library=%s "
                                 "source=%s",
                                 grades[g], dn, dn, personal[p], lib[l], src[s]);
                        tdsx_tags_t t = tags_of(in), back;
                        assert_int_equal(tdsx_tags_rank(&t), g + 1);
                        assert_int_equal(tdsx_tags_format(&t, out, sizeof out), 0);
                        assert_string_equal(out, in);
                        back = tags_of(out);
                        assert_int_equal(tdsx_tags_cmp(&t, &back), 0);
                        n++;
                    }
    assert_int_equal(n, 6 * 7 * 27);
}

static void any_order_and_spacing_formats_canonically(void **state)
{
    (void)state;
    tdsx_tags_t t = tags_of("  source=enterprise\tlibrary=base personal=none\n"
                            "category=production.process.quality   domain=production "
                            "grade=general:3 ");
    char out[TDSX_TAGS_TEXT_MAX];
    assert_int_equal(tdsx_tags_format(&t, out, sizeof out), 0);
    assert_string_equal(out, spec_tags);
}

typedef struct bad_s {
    const char *in;
    const char *word; /* the offending word the error names */
    const char *msg;  /* a fragment of the message */
} bad_t;

static void every_malformed_form_is_refused_with_its_word(void **state)
{
    (void)state;
    static const bad_t bad[] = {
        {"", "grade", "missing key 'grade'"},
        {"   ", "grade", "missing key"},
        {"grade=core domain=rd category=rd.design personal=none library=base", "source",
         "missing key 'source'"},
        {"grade=core grade=core", "grade", "given twice"},
        {"grade=core colour=red", "colour", "unknown key 'colour'"},
        {"grade", "grade", "is not key=value"},
        {"grade=", "grade=", "has no value"},
        {"=core", "", "unknown key"},
        {"grade=general", "general", "bad grade 'general'"},
        {"grade=general:0", "general:0", "bad grade"},
        {"grade=general:5", "general:5", "bad grade"},
        {"grade=general:x", "general:x", "bad grade"},
        {"grade=general:34", "general:34", "bad grade"},
        {"grade=core:1", "core:1", "bad grade"},
        {"grade=Core", "Core", "bad grade"},
        {"grade=secret", "secret", "bad grade"},
        {"domain=prod", "prod", "unknown domain 'prod'"},
        {"domain=Production", "Production", "unknown domain"},
        {"category=Production.x", "Production.x", "bad category"},
        {"category=production..x", "production..x", "bad category"},
        {"category=production.", "production.", "bad category"},
        {"category=.production", ".production", "bad category"},
        {"category=factory.line", "factory.line", "bad category"},
        {"category=production.-x", "production.-x", "bad category"},
        {"category=production.x_y", "production.x_y", "bad category"},
        {"category=production.a.b.c.d.e.f.g.h", "production.a.b.c.d.e.f.g.h", "bad category"},
        {"personal=yes", "yes", "unknown personal 'yes'"},
        {"personal=sensitive", "sensitive", "unknown personal"},
        {"library=core", "core", "unknown library"},
        {"source=private", "private", "unknown source 'private'"},
        {"grade=core domain=rd category=rd.design personal=none library=base "
         "source=enterprise extra",
         "extra", "is not key=value"},
        {"grade=core domain=rd category=production.x personal=none library=base "
         "source=enterprise",
         "production.x", "is not under domain 'rd'"},
        {"grade=core domain=rd category=r\xc3\xa9.x", "category=r??.x", "printable ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_tags_t t;
        memset(&t, 0x5a, sizeof t);
        tdsx_tags_t before = t;
        tdsx_tags_error_t e;
        memset(&e, 0, sizeof e);
        int rc = parse(bad[i].in, &t, &e);
        if (rc != TDSX_E_TAGS)
            fail_msg("'%s' accepted", bad[i].in);
        if (strcmp(e.word, bad[i].word) != 0 || !strstr(e.msg, bad[i].msg))
            fail_msg("'%s': word '%s' msg '%s'", bad[i].in, e.word, e.msg);
        assert_memory_equal(&t, &before, sizeof t); /* untouched on failure */
    }
    /* A NULL error pointer is allowed. */
    tdsx_tags_t t;
    assert_int_equal(parse("grade=core", &t, NULL), TDSX_E_TAGS);
}

static void error_offset_points_at_the_word(void **state)
{
    (void)state;
    tdsx_tags_t t;
    tdsx_tags_error_t e;
    const char *in = "grade=core domain=prod";
    assert_int_equal(parse(in, &t, &e), TDSX_E_TAGS);
    assert_int_equal(e.offset, 18);
    assert_memory_equal(in + e.offset, "prod", 4);
}

static void input_need_not_be_terminated(void **state)
{
    (void)state;
    /* The cursor ends before "xx": parsing must not read past it. */
    char buf[sizeof spec_tags + 2];
    memcpy(buf, spec_tags, sizeof spec_tags - 1);
    memcpy(buf + sizeof spec_tags - 1, "xx", 2);
    tdsx_tags_t t;
    assert_int_equal(tdsx_tags_parse(tdsx_bytes(buf, sizeof spec_tags - 1), &t, NULL), 0);
    assert_int_equal(t.source, TDSX_SOURCE_ENTERPRISE);
}

static void check_refuses_inconsistent_structs(void **state)
{
    (void)state;
    tdsx_tags_t good = tags_of(spec_tags), t;
    assert_int_equal(tdsx_tags_check(&good), 0);
    assert_int_equal(tdsx_tags_check(NULL), TDSX_E_TAGS);
    t = good, t.grade = TDSX_GRADE_UNSET;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.grade = (tdsx_grade_t)4;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.level = 0;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.level = 5;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.grade = TDSX_GRADE_CORE; /* level must be 0 above general */
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.domain = TDSX_DOMAIN_UNSET;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.domain = TDSX_DOMAIN_RD; /* category still says production */
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.personal = TDSX_PERSONAL_UNSET;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.library = (tdsx_library_t)9;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.source = TDSX_SOURCE_UNSET;
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, memset(t.category, 'a', sizeof t.category); /* not terminated */
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    t = good, t.category[0] = '\0';
    assert_int_equal(tdsx_tags_check(&t), TDSX_E_TAGS);
    char out[TDSX_TAGS_TEXT_MAX] = "junk";
    assert_int_equal(tdsx_tags_format(&t, out, sizeof out), TDSX_E_TAGS);
    assert_string_equal(out, "");
}

static void format_refuses_a_small_buffer(void **state)
{
    (void)state;
    tdsx_tags_t t = tags_of(spec_tags);
    char out[TDSX_TAGS_TEXT_MAX];
    size_t need = strlen(spec_tags) + 1;
    assert_int_equal(tdsx_tags_format(&t, out, need - 1), TDSX_E_TOOBIG);
    assert_string_equal(out, "");
    assert_int_equal(tdsx_tags_format(&t, out, need), 0);
    assert_int_equal(tdsx_tags_format(&t, out, 0), TDSX_E_TOOBIG);
    /* The longest possible tag set fits TDSX_TAGS_TEXT_MAX. */
    tdsx_tags_t big = t;
    big.grade = TDSX_GRADE_IMPORTANT;
    big.level = 0;
    big.domain = TDSX_DOMAIN_ENTERPRISE_MGMT;
    big.personal = TDSX_PERSONAL_SENSITIVE;
    big.library = TDSX_LIBRARY_SCENARIO;
    big.source = TDSX_SOURCE_ENTERPRISE;
    /* The longest path: depth is capped too, so long segments. */
    snprintf(big.category, sizeof big.category, "enterprise-mgmt.%.32s.%.32s.%.32s.%.12s",
             "abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345",
             "abcdefghijklmnopqrstuvwxyz012345", "abcdefghijkl");
    assert_int_equal(strlen(big.category), TDSX_CATEGORY_MAX);
    assert_int_equal(tdsx_tags_check(&big), 0);
    assert_int_equal(tdsx_tags_format(&big, out, sizeof out), 0);
    assert_int_equal(tags_of(out).personal, TDSX_PERSONAL_SENSITIVE);
}

static void sensitivity_order_is_total(void **state)
{
    (void)state;
    const char *const in[] = {
        "grade=core domain=rd category=rd.design personal=none library=base source=public",
        "grade=important domain=rd category=rd.design personal=sensitive-personal "
        "library=base source=public",
        "grade=important domain=rd category=rd.design personal=none library=base source=public",
        "grade=general:4 domain=rd category=rd.design personal=personal library=base "
        "source=public",
        "grade=general:4 domain=rd category=rd.design personal=none library=base source=public",
        "grade=general:1 domain=rd category=rd.test personal=none library=base source=public",
        "grade=general:1 domain=rd category=rd.design personal=none library=base source=public",
    };
    enum { N = sizeof in / sizeof in[0] };
    tdsx_tags_t t[N];
    for (int i = 0; i < N; i++)
        t[i] = tags_of(in[i]);
    /* The list is in strictly decreasing order; antisymmetric and transitive follow. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int c = tdsx_tags_cmp(&t[i], &t[j]);
            assert_int_equal(c, i == j ? 0 : i < j ? 1 : -1);
            assert_int_equal(tdsx_tags_cmp(&t[j], &t[i]), -c);
        }
    assert_int_equal(tdsx_tags_rank(&t[0]), 6);
    assert_int_equal(tdsx_tags_rank(&t[2]), 5);
    assert_int_equal(tdsx_tags_rank(&t[4]), 4);
    tdsx_tags_t bad = t[0];
    bad.grade = TDSX_GRADE_UNSET;
    assert_int_equal(tdsx_tags_rank(&bad), 0);
    assert_true(tdsx_tags_cmp(&bad, &t[6]) < 0);
}

static void combine_takes_the_highest_grade_and_personal(void **state)
{
    (void)state;
    tdsx_tags_t parts[3] = {
        tags_of("grade=general:2 domain=production category=production.process.quality "
                "personal=none library=base source=public"),
        tags_of("grade=important domain=production category=production.process.welding "
                "personal=none library=industry source=enterprise"),
        tags_of("grade=general:4 domain=production category=production.process "
                "personal=sensitive-personal library=base source=industry"),
    };
    tdsx_tags_t out;
    assert_int_equal(tdsx_tags_combine(parts, 3, 0, &out), 0);
    char text[TDSX_TAGS_TEXT_MAX];
    assert_int_equal(tdsx_tags_format(&out, text, sizeof text), 0);
    assert_string_equal(text, "grade=important domain=production category=production.process "
                              "personal=sensitive-personal library=industry source=enterprise");
    /* Order of the parts does not matter for the result. */
    tdsx_tags_t rev[3] = {parts[2], parts[0], parts[1]}, out2;
    assert_int_equal(tdsx_tags_combine(rev, 3, 0, &out2), 0);
    assert_int_equal(tdsx_tags_cmp(&out, &out2), 0);
    /* Categories with only the domain in common reduce to the domain. */
    tdsx_tags_t two[2] = {parts[0], tags_of("grade=general:1 domain=production "
                                            "category=production.control personal=none "
                                            "library=base source=public")};
    assert_int_equal(tdsx_tags_combine(two, 2, 0, &out), 0);
    assert_string_equal(out.category, "production");
    assert_int_equal(out.level, 2);
    /* A category that is a prefix of another's segment is not a common parent. */
    tdsx_tags_t pre[2] = {tags_of("grade=general:1 domain=production category=production.ab "
                                  "personal=none library=base source=public"),
                          tags_of("grade=general:1 domain=production category=production.abc "
                                  "personal=none library=base source=public")};
    assert_int_equal(tdsx_tags_combine(pre, 2, 0, &out), 0);
    assert_string_equal(out.category, "production");
    /* One part combines to itself. */
    assert_int_equal(tdsx_tags_combine(parts, 1, 0, &out), 0);
    assert_int_equal(tdsx_tags_cmp(&out, &parts[0]), 0);
    /* core dominates everything. */
    tdsx_tags_t core[2] = {parts[1], tags_of("grade=core domain=production "
                                             "category=production.process personal=none "
                                             "library=base source=public")};
    assert_int_equal(tdsx_tags_combine(core, 2, 0, &out), 0);
    assert_int_equal(out.grade, TDSX_GRADE_CORE);
    assert_int_equal(out.level, 0);
}

static void combine_refuses_mixed_domains_unless_told(void **state)
{
    (void)state;
    tdsx_tags_t parts[2] = {
        tags_of("grade=general:2 domain=production category=production.process personal=none "
                "library=base source=public"),
        tags_of("grade=general:3 domain=management category=management.assets personal=none "
                "library=base source=public"),
    };
    tdsx_tags_t out;
    memset(&out, 0x33, sizeof out);
    tdsx_tags_t before = out;
    assert_int_equal(tdsx_tags_combine(parts, 2, 0, &out), TDSX_E_TAGS);
    assert_memory_equal(&out, &before, sizeof out);
    assert_int_equal(tdsx_tags_combine(parts, 2, TDSX_TAGS_MIXED_DOMAINS, &out), 0);
    /* The most sensitive part describes the whole. */
    assert_int_equal(out.domain, TDSX_DOMAIN_MANAGEMENT);
    assert_string_equal(out.category, "management.assets");
    assert_int_equal(out.level, 3);
    assert_int_equal(tdsx_tags_check(&out), 0);
}

static void combine_refuses_bad_input(void **state)
{
    (void)state;
    tdsx_tags_t parts[2] = {tags_of(spec_tags), tags_of(spec_tags)};
    tdsx_tags_t out;
    assert_int_equal(tdsx_tags_combine(parts, 0, 0, &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_tags_combine(NULL, 2, 0, &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_tags_combine(parts, 2, 0, NULL), TDSX_E_INVAL);
    parts[1].level = 7;
    assert_int_equal(tdsx_tags_combine(parts, 2, 0, &out), TDSX_E_TAGS);
    parts[1] = parts[0];
    parts[1].personal = TDSX_PERSONAL_UNSET;
    assert_int_equal(tdsx_tags_combine(parts, 2, TDSX_TAGS_MIXED_DOMAINS, &out), TDSX_E_TAGS);
}

static void names_and_category_checks(void **state)
{
    (void)state;
    assert_string_equal(tdsx_grade_name(TDSX_GRADE_IMPORTANT), "important");
    assert_string_equal(tdsx_grade_name((tdsx_grade_t)42), "unset");
    assert_string_equal(tdsx_domain_name(TDSX_DOMAIN_ENTERPRISE_MGMT), "enterprise-mgmt");
    assert_string_equal(tdsx_personal_name(TDSX_PERSONAL_SENSITIVE), "sensitive-personal");
    assert_string_equal(tdsx_library_name(TDSX_LIBRARY_SCENARIO), "scenario");
    assert_string_equal(tdsx_source_name(TDSX_SOURCE_PUBLIC), "public");
    tdsx_domain_t d;
    assert_int_equal(tdsx_domain_parse("ops", 3, &d), 0);
    assert_int_equal(d, TDSX_DOMAIN_OPS);
    assert_int_equal(tdsx_domain_parse("opsx", 3, &d), 0); /* n bytes only */
    assert_int_equal(tdsx_domain_parse("op", 2, &d), TDSX_E_TAGS);
    assert_int_equal(tdsx_domain_parse("unset", 5, &d), TDSX_E_TAGS);
    assert_int_equal(tdsx_category_check("rd"), 0);
    assert_int_equal(tdsx_category_check("platform.knowledge-model.v2"), 0);
    assert_int_equal(tdsx_category_check(NULL), TDSX_E_TAGS);
    assert_int_equal(tdsx_category_check(""), TDSX_E_TAGS);
    assert_int_equal(tdsx_category_check("rd.x-"), TDSX_E_TAGS);
    assert_int_equal(tdsx_category_check("rd.abcdefghijklmnopqrstuvwxyz0123456"), TDSX_E_TAGS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_parses_into_fields),
        cmocka_unit_test(every_combination_round_trips),
        cmocka_unit_test(any_order_and_spacing_formats_canonically),
        cmocka_unit_test(every_malformed_form_is_refused_with_its_word),
        cmocka_unit_test(error_offset_points_at_the_word),
        cmocka_unit_test(input_need_not_be_terminated),
        cmocka_unit_test(check_refuses_inconsistent_structs),
        cmocka_unit_test(format_refuses_a_small_buffer),
        cmocka_unit_test(sensitivity_order_is_total),
        cmocka_unit_test(combine_takes_the_highest_grade_and_personal),
        cmocka_unit_test(combine_refuses_mixed_domains_unless_told),
        cmocka_unit_test(combine_refuses_bad_input),
        cmocka_unit_test(names_and_category_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
