#include "support.h"

#include <errno.h>
#include <string.h>

static void codes_are_below_libuv_and_distinct(void **state)
{
    (void)state;
    static const int all[] = {
#define X(name, off, msg) TDSX_E_##name,
#include "errors.def"
#undef X
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_true(all[i] <= TDSX_ERR_BASE - 1);
        for (size_t j = i + 1; j < sizeof all / sizeof all[0]; j++)
            assert_int_not_equal(all[i], all[j]);
    }
}

static void names_and_messages(void **state)
{
    (void)state;
    assert_string_equal(tdsx_err_name(TDSX_E_CERT_REVOKED), "TDSX_E_CERT_REVOKED");
    assert_string_equal(tdsx_strerror(TDSX_E_CERT_REVOKED), "certificate has been revoked");
    assert_string_equal(tdsx_err_name(0), "OK");
    assert_string_equal(tdsx_err_name(-ENOENT), "ENOENT");
    assert_string_equal(tdsx_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(tdsx_err_name(-99999), "UNKNOWN");
    assert_string_equal(tdsx_strerror(-99999), "unknown error");
}

static void wire_round_trip(void **state)
{
    (void)state;
    assert_int_equal(tdsx_err_wire(TDSX_E_FRAME_TOOBIG), 201);
    assert_int_equal(tdsx_err_from_wire(201), TDSX_E_FRAME_TOOBIG);
    /* Unknown wire values and non-TDSX codes never map to success. */
    assert_int_equal(tdsx_err_wire(-EIO), 0);
    assert_int_equal(tdsx_err_from_wire(0), TDSX_E_PROTOCOL);
    assert_int_equal(tdsx_err_from_wire(99), TDSX_E_PROTOCOL);
    assert_int_equal(tdsx_err_from_wire(0xffffffffu), TDSX_E_PROTOCOL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codes_are_below_libuv_and_distinct),
        cmocka_unit_test(names_and_messages),
        cmocka_unit_test(wire_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
