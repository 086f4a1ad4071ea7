#include "support.h"

#include <string.h>

static void cursor_reads_in_order(void **state)
{
    (void)state;
    const uint8_t in[] = {1, 0x02, 0x03, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0, 'a', 'b'};
    tdsx_bytes_t c = tdsx_bytes(in, sizeof in);
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    tdsx_bytes_t sub;
    assert_int_equal(tdsx_bytes_u8(&c, &u8), 0);
    assert_int_equal(u8, 1);
    assert_int_equal(tdsx_bytes_u16be(&c, &u16), 0);
    assert_int_equal(u16, 0x0203);
    assert_int_equal(tdsx_bytes_u32be(&c, &u32), 0);
    assert_int_equal(u32, 5);
    assert_int_equal(tdsx_bytes_u64be(&c, &u64), 0);
    assert_int_equal(u64, 0x100);
    assert_int_equal(tdsx_bytes_take(&c, 2, &sub), 0);
    assert_memory_equal(sub.p, "ab", 2);
    assert_int_equal(c.n, 0);
}

static void cursor_refuses_overrun_without_moving(void **state)
{
    (void)state;
    const uint8_t in[3] = {1, 2, 3};
    tdsx_bytes_t c = tdsx_bytes(in, sizeof in);
    uint32_t u32 = 77;
    uint64_t u64;
    tdsx_bytes_t sub;
    uint8_t dst[4];
    assert_int_equal(tdsx_bytes_u32be(&c, &u32), TDSX_E_BOUNDS);
    assert_int_equal(u32, 77);
    assert_int_equal(tdsx_bytes_u64be(&c, &u64), TDSX_E_BOUNDS);
    assert_int_equal(tdsx_bytes_take(&c, 4, &sub), TDSX_E_BOUNDS);
    assert_int_equal(tdsx_bytes_copy(&c, dst, 4), TDSX_E_BOUNDS);
    assert_int_equal(tdsx_bytes_skip(&c, SIZE_MAX), TDSX_E_BOUNDS);
    assert_ptr_equal(c.p, in);
    assert_int_equal(c.n, 3);
    const uint8_t *peek;
    assert_int_equal(tdsx_bytes_peek(&c, 3, &peek), 0);
    assert_ptr_equal(peek, in);
}

static void equal_compares_bytes_and_lengths(void **state)
{
    (void)state;
    assert_true(tdsx_bytes_equal(tdsx_bytes("abc", 3), tdsx_bytes("abc", 3)));
    assert_false(tdsx_bytes_equal(tdsx_bytes("abc", 3), tdsx_bytes("abd", 3)));
    assert_false(tdsx_bytes_equal(tdsx_bytes("abc", 3), tdsx_bytes("ab", 2)));
}

static void buf_respects_cap(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 8);
    assert_int_equal(tdsx_buf_append(&b, "12345", 5), 0);
    assert_int_equal(tdsx_buf_append(&b, "6789", 4), TDSX_E_TOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal((char *)b.p, "12345");
    assert_int_equal(tdsx_buf_printf(&b, "%d", 678), 0);
    assert_string_equal((char *)b.p, "12345678");
    assert_int_equal(tdsx_buf_printf(&b, "%d", 9), TDSX_E_TOOBIG);
    tdsx_buf_consume(&b, 3);
    assert_string_equal((char *)b.p, "45678");
    assert_int_equal(tdsx_buf_u32be(&b, 0x01020304), TDSX_E_TOOBIG);
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_buf_u64be(&b, 0x0102030405060708ull), 0);
    assert_memory_equal(b.p, "\1\2\3\4\5\6\7\10", 8);
    size_t len;
    char *taken = tdsx_buf_take(&b, &len);
    assert_int_equal(len, 8);
    assert_null(b.p);
    tdsx_free(taken);
    tdsx_buf_free(&b);
}

static void buf_reports_allocation_failure(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_buf_append(&b, "x", 1), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_int_equal(b.len, 0);
    assert_int_equal(tdsx_buf_append(&b, "x", 1), 0);
    tdsx_buf_free(&b);
}

static void hex_round_trip_and_rejects(void **state)
{
    (void)state;
    char out[9];
    uint8_t back[4];
    tdsx_hex_encode(out, "\x00\xab\x10\xff", 4);
    assert_string_equal(out, "00ab10ff");
    assert_int_equal(tdsx_hex_decode(back, 4, "00AB10ff"), 0);
    assert_memory_equal(back, "\x00\xab\x10\xff", 4);
    assert_int_equal(tdsx_hex_decode(back, 4, "00ab10f"), TDSX_E_FORMAT);
    assert_int_equal(tdsx_hex_decode(back, 4, "00ab10fg"), TDSX_E_FORMAT);
    assert_int_equal(tdsx_hex_decode(back, 4, "00ab10ff00"), TDSX_E_FORMAT);
}

static void strdup_fails_cleanly(void **state)
{
    (void)state;
    tdsx_test_alloc_fail_after(1);
    assert_null(tdsx_strdup("abc"));
    tdsx_test_alloc_reset();
    char *s = tdsx_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    tdsx_free(s);
    assert_null(tdsx_calloc(SIZE_MAX / 2, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cursor_reads_in_order),
        cmocka_unit_test(cursor_refuses_overrun_without_moving),
        cmocka_unit_test(equal_compares_bytes_and_lengths),
        cmocka_unit_test(buf_respects_cap),
        cmocka_unit_test(buf_reports_allocation_failure),
        cmocka_unit_test(hex_round_trip_and_rejects),
        cmocka_unit_test(strdup_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
