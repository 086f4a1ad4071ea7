#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void write_then_read(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *p = tdsx_test_path(dir, "k");
    assert_int_equal(tdsx_file_write(p, "secret", 6, 0600, 0), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t *data;
    size_t len;
    assert_int_equal(tdsx_file_read(p, 64, &data, &len), 0);
    assert_int_equal(len, 6);
    assert_string_equal((char *)data, "secret");
    tdsx_free(data);
    free(p);
    tdsx_test_rmdir(dir);
}

static void no_overwrite_without_force(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *p = tdsx_test_path(dir, "f");
    assert_int_equal(tdsx_file_write(p, "one", 3, 0644, 0), 0);
    assert_int_equal(tdsx_file_write(p, "two", 3, 0644, 0), TDSX_E_EXISTS);
    uint8_t *data;
    size_t len;
    assert_int_equal(tdsx_file_read(p, 64, &data, &len), 0);
    assert_string_equal((char *)data, "one");
    tdsx_free(data);
    assert_int_equal(tdsx_file_write(p, "two", 3, 0600, 1), 0);
    assert_int_equal(tdsx_file_read(p, 64, &data, &len), 0);
    assert_string_equal((char *)data, "two");
    tdsx_free(data);
    free(p);
    tdsx_test_rmdir(dir);
}

static void read_refuses_oversize_and_missing(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *p = tdsx_test_path(dir, "big");
    char big[100];
    memset(big, 'x', sizeof big);
    tdsx_test_write_file(p, big, sizeof big);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(p, 99, &data, &len), TDSX_E_TOOBIG);
    assert_null(data);
    assert_int_equal(tdsx_file_read(p, 100, &data, &len), 0);
    assert_int_equal(len, 100);
    tdsx_free(data);
    char *missing = tdsx_test_path(dir, "missing");
    assert_int_equal(tdsx_file_read(missing, 99, &data, &len), TDSX_E_NOTFOUND);
    free(missing);
    free(p);
    tdsx_test_rmdir(dir);
}

static void empty_file_reads_as_empty_string(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *p = tdsx_test_path(dir, "empty");
    tdsx_test_write_file(p, "", 0);
    uint8_t *data;
    size_t len = 9;
    assert_int_equal(tdsx_file_read(p, 10, &data, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal((char *)data, "");
    tdsx_free(data);
    free(p);
    tdsx_test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(write_then_read),
        cmocka_unit_test(no_overwrite_without_force),
        cmocka_unit_test(read_refuses_oversize_and_missing),
        cmocka_unit_test(empty_file_reads_as_empty_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
