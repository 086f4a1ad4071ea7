#include "support.h"

#include <stdlib.h>
#include <string.h>

static char *capture(tdsx_log_level_t min, void (*emit)(void))
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    tdsx_log_set_output(f);
    tdsx_log_set_level(min);
    emit();
    tdsx_log_set_output(NULL);
    tdsx_log_set_level(TDSX_LOG_INFO);
    fclose(f);
    return text;
}

static void emit_fields(void)
{
    tdsx_log(TDSX_LOG_WARN, "conn.refused", TDSX_KV_S("peer", "91350100M000100Y43/node \"a\"\n"),
             TDSX_KV_I("port", 7443), TDSX_KV_E("err", TDSX_E_CERT_REVOKED));
}

static void one_json_line_with_escaped_fields(void **state)
{
    (void)state;
    char *t = capture(TDSX_LOG_INFO, emit_fields);
    assert_int_equal(strncmp(t, "{\"ts\":\"", 7), 0);
    assert_non_null(strstr(t, "\"level\":\"warn\",\"event\":\"conn.refused\""));
    assert_non_null(strstr(t, "\"peer\":\"91350100M000100Y43/node \\\"a\\\"\\n\""));
    assert_non_null(strstr(t, "\"port\":7443"));
    assert_non_null(strstr(t, "\"err\":\"TDSX_E_CERT_REVOKED\""));
    assert_non_null(strstr(t, "\"err_msg\":\"certificate has been revoked\""));
    /* Exactly one line, terminated. */
    assert_int_equal(t[strlen(t) - 1], '\n');
    assert_ptr_equal(strchr(t, '\n'), t + strlen(t) - 1);
    free(t);
}

static void below_level_is_dropped(void **state)
{
    (void)state;
    char *t = capture(TDSX_LOG_ERROR, emit_fields);
    assert_string_equal(t, "");
    free(t);
}

static void emit_control(void)
{
    tdsx_log(TDSX_LOG_INFO, "x", TDSX_KV_S("v", "\x01\x7f\xe4\xb8\xad"));
}

static void control_bytes_escaped_utf8_kept(void **state)
{
    (void)state;
    char *t = capture(TDSX_LOG_DEBUG, emit_control);
    assert_non_null(strstr(t, "\"v\":\"\\u0001\\u007f\xe4\xb8\xad\""));
    free(t);
}

static void level_parse(void **state)
{
    (void)state;
    tdsx_log_level_t l;
    assert_int_equal(tdsx_log_level_parse("debug", &l), 0);
    assert_int_equal(l, TDSX_LOG_DEBUG);
    assert_int_equal(tdsx_log_level_parse("warn", &l), 0);
    assert_int_equal(l, TDSX_LOG_WARN);
    assert_int_equal(tdsx_log_level_parse("WARN", &l), TDSX_E_INVAL);
    assert_int_equal(tdsx_log_level_parse("", &l), TDSX_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_json_line_with_escaped_fields),
        cmocka_unit_test(below_level_is_dropped),
        cmocka_unit_test(control_bytes_escaped_utf8_kept),
        cmocka_unit_test(level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
