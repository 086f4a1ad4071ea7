/*
 * support.h — helpers shared by the cmocka tests: temporary directories, an allocator that
 * fails on demand, and small file utilities.
 */
#ifndef TDSX_TEST_SUPPORT_H
#define TDSX_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

/* Creates a fresh directory under $TMPDIR (or /tmp); returns its path (static storage per
 * call site is NOT used: the caller frees with tdsx_test_rmdir, which removes it whole). */
char *tdsx_test_mkdtemp(void);
/* Removes a directory tree made by tdsx_test_mkdtemp and frees the path. */
void tdsx_test_rmdir(char *dir);
/* Joins dir and name into a heap string (free with free()). */
char *tdsx_test_path(const char *dir, const char *name);
/* Writes bytes to a file (mode 0600), asserting success. */
void tdsx_test_write_file(const char *path, const void *p, size_t n);

/* Installs an allocator that fails the `n`-th allocation from now (1 = the next one) and
 * every one after it; n = 0 never fails. tdsx_test_alloc_count() says how many allocations
 * were made since the call. tdsx_test_alloc_reset() restores libc. */
void tdsx_test_alloc_fail_after(unsigned long n);
unsigned long tdsx_test_alloc_count(void);
void tdsx_test_alloc_reset(void);

#endif
