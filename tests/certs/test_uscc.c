/* USCC (GB 32100-2015) and GB 11714 organisation-code checks, roles, identity strings. */
#include "support.h"

#include <string.h>

#include "certs.h"

static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* Independent of the implementation's table: the weights are 3^(i-1) mod 31, and a valid
 * code makes sum(Ci*Wi, i=1..17) + C18 a multiple of 31. */
static int checksum_holds(const char *code)
{
    int w = 1, sum = 0;
    for (int i = 0; i < 17; i++) {
        sum += (int)(strchr(alphabet, code[i]) - alphabet) * w;
        w = (w * 3) % 31;
    }
    sum += (int)(strchr(alphabet, code[17]) - alphabet);
    return sum % 31 == 0;
}

/* first17 + its check character into out[19]. */
static void complete(const char *first17, char out[19])
{
    memcpy(out, first17, 17);
    out[17] = tdsx_uscc_check_char(first17);
    out[18] = '\0';
    assert_int_not_equal(out[17], '\0');
}

static void spec_example_is_valid(void **state)
{
    (void)state;
    int warn = -1;
    assert_int_equal(tdsx_uscc_check("91350100M000100Y43", &warn), 0);
    assert_int_equal(warn, 0);
    assert_int_equal(tdsx_uscc_check_char("91350100M000100Y4"), '3');
    assert_true(checksum_holds("91350100M000100Y43"));
    /* The warning pointer is optional. */
    assert_int_equal(tdsx_uscc_check("91350100M000100Y43", NULL), 0);
}

static void spec_counter_example_is_invalid(void **state)
{
    (void)state;
    int warn = -1;
    assert_int_equal(tdsx_uscc_check("91350100M000100Y4Z", &warn), TDSX_E_USCC_CHAR);
    assert_int_equal(warn, 0);
}

static void constructed_codes_are_valid(void **state)
{
    (void)state;
    /* Registration authority, type, region (Jinan, Qingdao, Yantai, province level),
     * organisation body and org check chosen so every code also passes GB 11714. */
    static const char *const prefixes[] = {
        "91370100000000000", /* org 000000000: sum 0 -> check 11 -> '0' */
        "9137020000000006X", /* org 00000006X: sum 12 -> check 10 -> 'X' */
        "12370000MB0000019", /* 事业单位 style: org MB000001 check 9 */
        "91350100M000100Y4", /* the spec's example */
        "92370600LWYQ00013", /* 个体工商户 style, letters of the alphabet */
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char code[19];
        complete(prefixes[i], code);
        assert_true(checksum_holds(code));
        int warn = -1;
        assert_int_equal(tdsx_uscc_check(code, &warn), 0);
        assert_int_equal(warn, 0);
    }
}

static void every_wrong_check_character_fails(void **state)
{
    (void)state;
    static const char *const prefixes[] = {"91350100M000100Y4", "91370100000000000",
                                           "12370000MB0000019"};
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        char code[19];
        complete(prefixes[p], code);
        const char good = code[17];
        int failures = 0;
        for (const char *c = alphabet; *c; c++) {
            if (*c == good)
                continue;
            code[17] = *c;
            assert_int_equal(tdsx_uscc_check(code, NULL), TDSX_E_USCC_CHECK);
            failures++;
        }
        assert_int_equal(failures, 30);
    }
}

static void single_character_changes_fail(void **state)
{
    (void)state;
    /* Changing any one of the first 17 characters to another valid character breaks the
     * check (the weights are non-zero mod 31, which is prime). */
    char code[19];
    memcpy(code, "91350100M000100Y43", 19);
    for (int pos = 0; pos < 17; pos++) {
        const char orig = code[pos];
        for (const char *c = alphabet; *c; c++) {
            if (*c == orig)
                continue;
            code[pos] = *c;
            assert_int_equal(tdsx_uscc_check(code, NULL), TDSX_E_USCC_CHECK);
        }
        code[pos] = orig;
    }
}

static void forbidden_letters_fail(void **state)
{
    (void)state;
    static const char forbidden[] = "IOSVZ";
    static const int positions[] = {0, 1, 8, 12, 16, 17};
    for (const char *f = forbidden; *f; f++) {
        for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
            char code[19];
            memcpy(code, "91350100M000100Y43", 19);
            code[positions[i]] = *f;
            assert_int_equal(tdsx_uscc_check(code, NULL), TDSX_E_USCC_CHAR);
        }
        /* No check character exists for a prefix holding one. */
        char prefix[18];
        memcpy(prefix, "91350100M000100Y4", 18);
        prefix[8] = *f;
        assert_int_equal(tdsx_uscc_check_char(prefix), '\0');
    }
}

static void other_characters_fail(void **state)
{
    (void)state;
    static const char bad[] = {' ', '-', '/', '.', '@', '[', '\x7f', '\x80', '\xe4'};
    for (size_t i = 0; i < sizeof bad; i++) {
        char code[19];
        memcpy(code, "91350100M000100Y43", 19);
        code[5] = bad[i];
        assert_int_equal(tdsx_uscc_check(code, NULL), TDSX_E_USCC_CHAR);
    }
}

static void wrong_length_fails(void **state)
{
    (void)state;
    int warn = -1;
    assert_int_equal(tdsx_uscc_check("", &warn), TDSX_E_USCC_LENGTH);
    assert_int_equal(warn, 0);
    assert_int_equal(tdsx_uscc_check("91350100M000100Y4", NULL), TDSX_E_USCC_LENGTH);
    assert_int_equal(tdsx_uscc_check("91350100M000100Y433", NULL), TDSX_E_USCC_LENGTH);
    assert_int_equal(tdsx_uscc_check("91350100M000100Y43 ", NULL), TDSX_E_USCC_LENGTH);
    /* A very long string is refused without reading all of it as a code. */
    char longer[200];
    memset(longer, '9', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(tdsx_uscc_check(longer, NULL), TDSX_E_USCC_LENGTH);
}

static void lower_case_fails(void **state)
{
    (void)state;
    assert_int_equal(tdsx_uscc_check("91350100m000100Y43", NULL), TDSX_E_USCC_CHAR);
    assert_int_equal(tdsx_uscc_check("91350100m000100y43", NULL), TDSX_E_USCC_CHAR);
    assert_int_equal(tdsx_uscc_check_char("91350100m000100Y4"), '\0');
}

static void null_is_refused(void **state)
{
    (void)state;
    int warn = -1;
    assert_int_equal(tdsx_uscc_check(NULL, &warn), TDSX_E_INVAL);
    assert_int_equal(warn, 0);
    assert_int_equal(tdsx_uscc_check_char(NULL), '\0');
}

static void org_code_warning_is_set_but_not_fatal(void **state)
{
    (void)state;
    /* Positions 9-17 "M000100Y4" pass GB 11714 (M=22 in A-Z counting, not its USCC value
     * 21). Change the org check digit and recompute the USCC check: still valid, warned. */
    char code[19];
    complete("91350100M000100Y5", code);
    int warn = 0;
    assert_int_equal(tdsx_uscc_check(code, &warn), 0);
    assert_int_equal(warn, 1);
    /* An org body check of 10 must be written 'X', of 11 written '0'. */
    complete("9137020000000006X", code);
    assert_int_equal(tdsx_uscc_check(code, &warn), 0);
    assert_int_equal(warn, 0);
    complete("91370200000000060", code);
    assert_int_equal(tdsx_uscc_check(code, &warn), 0);
    assert_int_equal(warn, 1);
    complete("91370100000000000", code);
    assert_int_equal(tdsx_uscc_check(code, &warn), 0);
    assert_int_equal(warn, 0);
    complete("9137010000000000X", code);
    assert_int_equal(tdsx_uscc_check(code, &warn), 0);
    assert_int_equal(warn, 1);
}

static void warning_is_cleared_on_failure(void **state)
{
    (void)state;
    int warn = 1;
    assert_int_equal(tdsx_uscc_check("91350100M000100Y44", &warn), TDSX_E_USCC_CHECK);
    assert_int_equal(warn, 0);
}

static void roles_parse_and_print(void **state)
{
    (void)state;
    static const char *const names[] = {"centre", "brain", "enterprise"};
    for (int r = TDSX_ROLE_CENTRE; r <= TDSX_ROLE_ENTERPRISE; r++) {
        tdsx_role_t got = TDSX_ROLE_NONE;
        assert_int_equal(tdsx_role_parse(names[r - 1], &got), 0);
        assert_int_equal(got, r);
        assert_string_equal(tdsx_role_name((tdsx_role_t)r), names[r - 1]);
    }
    assert_string_equal(tdsx_role_name(TDSX_ROLE_NONE), "none");
    assert_string_equal(tdsx_role_name((tdsx_role_t)42), "none");
}

static void roles_refuse_unknown_names(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "none", "Centre", "center", "brain ", "enterprises"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_role_t got = TDSX_ROLE_BRAIN;
        assert_int_equal(tdsx_role_parse(bad[i], &got), TDSX_E_INVAL);
        assert_int_equal(got, TDSX_ROLE_BRAIN);
    }
    tdsx_role_t got;
    assert_int_equal(tdsx_role_parse(NULL, &got), TDSX_E_INVAL);
}

static void identity_id_joins_uscc_and_node(void **state)
{
    (void)state;
    tdsx_identity_t id;
    memset(&id, 0, sizeof id);
    memcpy(id.uscc, "91350100M000100Y43", 19);
    memcpy(id.node, "gw-1", 5);
    char out[19 + 1 + 128];
    tdsx_identity_id(&id, out, sizeof out);
    assert_string_equal(out, "91350100M000100Y43/gw-1");
    char small[8];
    tdsx_identity_id(&id, small, sizeof small);
    assert_string_equal(small, "9135010"); /* truncated, still terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_is_valid),
        cmocka_unit_test(spec_counter_example_is_invalid),
        cmocka_unit_test(constructed_codes_are_valid),
        cmocka_unit_test(every_wrong_check_character_fails),
        cmocka_unit_test(single_character_changes_fail),
        cmocka_unit_test(forbidden_letters_fail),
        cmocka_unit_test(other_characters_fail),
        cmocka_unit_test(wrong_length_fails),
        cmocka_unit_test(lower_case_fails),
        cmocka_unit_test(null_is_refused),
        cmocka_unit_test(org_code_warning_is_set_but_not_fatal),
        cmocka_unit_test(warning_is_cleared_on_failure),
        cmocka_unit_test(roles_parse_and_print),
        cmocka_unit_test(roles_refuse_unknown_names),
        cmocka_unit_test(identity_id_joins_uscc_and_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
