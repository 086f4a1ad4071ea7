#define _XOPEN_SOURCE 700
#include "support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tdsx_test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/tdsx-test-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *copy = strdup(d);
    assert_non_null(copy);
    return copy;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tdsx_test_rmdir(char *dir)
{
    if (!dir)
        return;
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

char *tdsx_test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tdsx_test_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fchmod(fileno(f), 0600), 0);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned long fail_at, count;

static void *t_malloc(size_t size, void *ctx)
{
    (void)ctx;
    if (fail_at && ++count >= fail_at)
        return NULL;
    if (!fail_at)
        count++;
    return malloc(size);
}

static void *t_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    if (fail_at && ++count >= fail_at)
        return NULL;
    if (!fail_at)
        count++;
    return realloc(ptr, size);
}

static void t_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

void tdsx_test_alloc_fail_after(unsigned long n)
{
    tdsx_allocator_t a = {t_malloc, t_realloc, t_free, NULL};
    fail_at = n;
    count = 0;
    tdsx_allocator_set(&a);
}

unsigned long tdsx_test_alloc_count(void)
{
    return count;
}

void tdsx_test_alloc_reset(void)
{
    fail_at = 0;
    count = 0;
    tdsx_allocator_set(NULL);
}
