#include "support.h"

#include "policy.h"

#include <string.h>

static int parse(const char *text, tdsx_taxonomy_t **out, tdsx_diags_t *d)
{
    return tdsx_taxonomy_parse(tdsx_bytes(text, strlen(text)), out, d);
}

static tdsx_tags_t tags(const char *category, tdsx_domain_t domain)
{
    tdsx_tags_t t;
    memset(&t, 0, sizeof t);
    t.grade = TDSX_GRADE_GENERAL;
    t.level = 2;
    t.domain = domain;
    snprintf(t.category, sizeof t.category, "%s", category);
    t.personal = TDSX_PERSONAL_NONE;
    t.library = TDSX_LIBRARY_BASE;
    t.source = TDSX_SOURCE_ENTERPRISE;
    return t;
}

static void default_has_every_miit_category_with_its_label(void **state)
{
    (void)state;
    static const char *const want[][2] = {
        {"rd.design", "研发设计数据"},
        {"rd.test", "开发测试数据"},
        {"production.control", "控制信息"},
        {"production.condition", "工况状态"},
        {"production.process", "工艺参数"},
        {"production.syslog", "系统日志"},
        {"ops.logistics", "物流数据"},
        {"ops.after-sales", "产品售后服务数据"},
        {"management.assets", "系统设备资产信息"},
        {"management.customer-product", "客户与产品信息"},
        {"management.supply-chain", "产品供应链数据"},
        {"management.statistics", "业务统计数据"},
        {"external.shared", "与其他主体共享的数据"},
        {"platform.iot", "物联采集数据"},
        {"platform.knowledge-model", "知识库模型库数据"},
        {"platform.rd", "研发数据"},
        {"enterprise-mgmt.customer", "客户数据"},
        {"enterprise-mgmt.cooperation", "业务合作数据"},
        {"enterprise-mgmt.hr-finance", "人事财务数据"},
        {"rd", "研发"},
        {"production", "生产"},
        {"ops", "运维"},
        {"management", "管理"},
        {"external", "外部"},
        {"platform", "平台运营"},
        {"enterprise-mgmt", "企业管理"},
    };
    tdsx_taxonomy_t *t = NULL;
    assert_int_equal(tdsx_taxonomy_new_default(&t), 0);
    size_t n = sizeof want / sizeof want[0];
    assert_int_equal(tdsx_taxonomy_count(t), n);
    for (size_t i = 0; i < n; i++) {
        const char *label = NULL;
        if (!tdsx_taxonomy_has(t, want[i][0], &label))
            fail_msg("default taxonomy lacks %s", want[i][0]);
        assert_non_null(label);
        assert_string_equal(label, want[i][1]);
    }
    /* Entries come sorted, categories open, domains closed. */
    const char *prev = "";
    for (size_t i = 0; i < tdsx_taxonomy_count(t); i++) {
        const char *path;
        int open;
        tdsx_taxonomy_entry(t, i, &path, NULL, &open);
        assert_true(strcmp(prev, path) < 0);
        assert_int_equal(open, strchr(path, '.') != NULL);
        prev = path;
    }
    tdsx_taxonomy_free(t);
}

static void default_accepts_refinements_but_not_new_branches(void **state)
{
    (void)state;
    tdsx_taxonomy_t *t = NULL;
    assert_int_equal(tdsx_taxonomy_new_default(&t), 0);
    const char *label = NULL;
    /* SPEC §6's example lies below the open production.process. */
    assert_true(tdsx_taxonomy_has(t, "production.process.quality", &label));
    assert_string_equal(label, "工艺参数");
    assert_true(tdsx_taxonomy_has(t, "platform.iot.sensor.temperature", NULL));
    tdsx_tags_t ok = tags("production.process.quality", TDSX_DOMAIN_PRODUCTION);
    assert_int_equal(tdsx_taxonomy_check(t, &ok), 0);
    /* Domains are closed: a new branch under one is not in the taxonomy. */
    label = "x";
    assert_false(tdsx_taxonomy_has(t, "production.paint", &label));
    assert_null(label);
    assert_false(tdsx_taxonomy_has(t, "rd.designs", NULL));
    assert_false(tdsx_taxonomy_has(t, "Production.process", NULL));
    assert_false(tdsx_taxonomy_has(t, "", NULL));
    tdsx_tags_t bad = tags("production.paint", TDSX_DOMAIN_PRODUCTION);
    assert_int_equal(tdsx_taxonomy_check(t, &bad), TDSX_E_TAGS);
    /* Category under another domain than the tag's. */
    bad = tags("rd.design", TDSX_DOMAIN_PRODUCTION);
    assert_int_equal(tdsx_taxonomy_check(t, &bad), TDSX_E_TAGS);
    bad = ok;
    bad.grade = TDSX_GRADE_UNSET;
    assert_int_equal(tdsx_taxonomy_check(t, &bad), TDSX_E_TAGS);
    assert_int_equal(tdsx_taxonomy_check(NULL, &ok), TDSX_E_TAGS);
    tdsx_taxonomy_free(t);
}

static void sector_file_loads_with_implied_parents_and_open_paths(void **state)
{
    (void)state;
    tdsx_taxonomy_t *t = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_taxonomy_load(TDSX_TEST_DATA "/policy/sector.taxonomy", &t, &d), 0);
    assert_int_equal(d.n, 0);
    const char *label = NULL;
    assert_true(tdsx_taxonomy_has(t, "production.process.quality", &label));
    assert_string_equal(label, "质量检测数据"); /* the trailing comment is not in it */
    /* Implied: production.process.welding (open), and its parents. */
    assert_true(tdsx_taxonomy_has(t, "production.process.welding.arc", &label));
    assert_string_equal(label, "焊接参数");
    /* An implied parent exists but has no label of its own. */
    assert_true(tdsx_taxonomy_has(t, "management", &label));
    assert_null(label);
    assert_true(tdsx_taxonomy_has(t, "rd.anything.below", &label));
    assert_string_equal(label, "研发");
    /* Closed entries admit themselves, not their children. */
    assert_false(tdsx_taxonomy_has(t, "management.assets.cnc", NULL));
    assert_false(tdsx_taxonomy_has(t, "production.process.painting", NULL));
    assert_false(tdsx_taxonomy_has(t, "ops", NULL));
    assert_int_equal(tdsx_taxonomy_count(t), 8);
    int open = 0;
    const char *path;
    tdsx_taxonomy_entry(t, 6, &path, &label, &open); /* sorted: the 7th is the welding one */
    assert_string_equal(path, "production.process.welding");
    assert_true(open);
    tdsx_taxonomy_free(t);
    tdsx_diags_free(&d);
}

static void bad_file_reports_every_error_with_line_and_column(void **state)
{
    (void)state;
    tdsx_taxonomy_t *t = (tdsx_taxonomy_t *)0x1;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_taxonomy_load(TDSX_TEST_DATA "/policy/bad.taxonomy", &t, &d),
                     TDSX_E_TAXONOMY);
    assert_ptr_equal(t, (tdsx_taxonomy_t *)0x1); /* untouched */
    assert_int_equal(d.n, 4);
    static const struct {
        unsigned line, col;
        tdsx_diag_kind_t kind;
        const char *frag;
    } want[] = {
        {3, 1, TDSX_DIAG_UNKNOWN_WORD, "'factory.line' does not start with a domain"},
        {4, 3, TDSX_DIAG_BAD_VALUE, "malformed path 'production.Process'"},
        {5, 1, TDSX_DIAG_DUPLICATE,
         "duplicate path 'production.process' (first declared on "
         "line 2)"},
        {6, 11, TDSX_DIAG_BAD_VALUE, "label of 'rd.design' is not valid UTF-8"},
    };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(d.v[i].line, want[i].line);
        assert_int_equal(d.v[i].col, want[i].col);
        assert_int_equal(d.v[i].kind, want[i].kind);
        assert_int_equal(d.v[i].severity, TDSX_DIAG_ERROR);
        assert_int_equal(d.v[i].code, TDSX_E_TAXONOMY);
        if (!strstr(d.v[i].msg, want[i].frag))
            fail_msg("diag %zu: '%s'", i, d.v[i].msg);
    }
    assert_int_equal(tdsx_diags_count(&d, TDSX_DIAG_ERROR), 4);
    assert_int_equal(tdsx_diags_count(&d, TDSX_DIAG_WARNING), 0);
    tdsx_diags_free(&d);
}

static void malformed_lines_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line, col;
    } bad[] = {
        {"rd.*.x\n", 1, 1},
        {"*\n", 1, 1},
        {"rd.\n", 1, 1},
        {"rd..x\n", 1, 1},
        {".rd\n", 1, 1},
        {"rd.x-\n", 1, 1},
        {"rd.a.b.c.d.e.f.g.h\n", 1, 1},
        {"# ok\n\trd.Design\n", 2, 2},
        {"rd.x 研发 \x01\n", 1, 9},
        {"rd.x\n\nrd.x.*\n", 3, 1},       /* open and closed forms are the same path */
        {"rd.x.*\nrd.x.* again\n", 2, 1}, /* open twice */
        {"  研发\n", 1, 3},
        /* a label of 129 bytes */
        {"rd.x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
         1, 6},
        {"rd.x\x00\n", 1, 5}, /* keep last: its length is set below */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_taxonomy_t *t = NULL;
        tdsx_diags_t d;
        tdsx_diags_init(&d);
        size_t len = strlen(bad[i].text);
        if (i == sizeof bad / sizeof bad[0] - 1)
            len = 6; /* the NUL is part of the input */
        int rc = tdsx_taxonomy_parse(tdsx_bytes(bad[i].text, len), &t, &d);
        if (rc != TDSX_E_TAXONOMY || d.n != 1)
            fail_msg("case %zu: rc %d, %zu diags", i, rc, d.n);
        if (d.v[0].line != bad[i].line || d.v[0].col != bad[i].col)
            fail_msg("case %zu: %u:%u %s", i, d.v[0].line, d.v[0].col, d.v[0].msg);
        assert_null(t);
        tdsx_diags_free(&d);
    }
}

static void accepted_forms(void **state)
{
    (void)state;
    tdsx_taxonomy_t *t = NULL;
    /* An explicit parent after its child is no duplicate; CRLF endings; a '#' inside a
     * label (not after whitespace) belongs to it; a file of comments is empty. */
    assert_int_equal(parse("rd.x.y\r\nrd.x 标签#1 # comment\r\n# only a comment\n", &t, NULL), 0);
    const char *label = NULL;
    assert_true(tdsx_taxonomy_has(t, "rd.x.y", &label));
    assert_string_equal(label, "标签#1");
    assert_int_equal(tdsx_taxonomy_count(t), 3);
    tdsx_taxonomy_free(t);
    assert_int_equal(parse("# nothing\n\n", &t, NULL), 0);
    assert_int_equal(tdsx_taxonomy_count(t), 0);
    assert_false(tdsx_taxonomy_has(t, "rd", NULL));
    tdsx_taxonomy_free(t);
    tdsx_taxonomy_free(NULL);
}

static void missing_file_is_not_found(void **state)
{
    (void)state;
    tdsx_taxonomy_t *t = NULL;
    assert_int_equal(tdsx_taxonomy_load(TDSX_TEST_DATA "/policy/no-such.taxonomy", &t, NULL),
                     TDSX_E_NOTFOUND);
    assert_null(t);
}

static void diagnostics_are_capped(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1 << 20);
    for (int i = 0; i < TDSX_DIAGS_MAX + 500; i++)
        assert_int_equal(tdsx_buf_append_str(&b, "nope.x\n"), 0);
    tdsx_taxonomy_t *t = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    assert_int_equal(tdsx_taxonomy_parse(tdsx_buf_bytes(&b), &t, &d), TDSX_E_TAXONOMY);
    assert_int_equal(d.n, TDSX_DIAGS_MAX);
    assert_int_equal(d.dropped, 500);
    assert_int_equal(d.v[TDSX_DIAGS_MAX - 1].line, TDSX_DIAGS_MAX);
    tdsx_diags_free(&d);
    tdsx_buf_free(&b);
}

static void allocation_failures_are_clean(void **state)
{
    (void)state;
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(TDSX_TEST_DATA "/policy/sector.taxonomy", 1 << 20, &text, &len),
                     0);
    int ok = 0;
    for (unsigned long n = 1; n < 200 && !ok; n++) {
        tdsx_taxonomy_t *t = NULL;
        tdsx_diags_t d;
        tdsx_diags_init(&d);
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_taxonomy_parse(tdsx_bytes(text, len), &t, &d);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            ok = 1;
            assert_true(tdsx_taxonomy_has(t, "production.process.quality", NULL));
        } else {
            assert_int_equal(rc, TDSX_E_NOMEM);
            assert_null(t);
        }
        tdsx_taxonomy_free(t);
        tdsx_diags_free(&d);
    }
    assert_true(ok);
    tdsx_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_has_every_miit_category_with_its_label),
        cmocka_unit_test(default_accepts_refinements_but_not_new_branches),
        cmocka_unit_test(sector_file_loads_with_implied_parents_and_open_paths),
        cmocka_unit_test(bad_file_reports_every_error_with_line_and_column),
        cmocka_unit_test(malformed_lines_are_refused),
        cmocka_unit_test(accepted_forms),
        cmocka_unit_test(missing_file_is_not_found),
        cmocka_unit_test(diagnostics_are_capped),
        cmocka_unit_test(allocation_failures_are_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
