/* One hookable allocator so tests can make any allocation fail. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

static void *libc_malloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    return realloc(ptr, size);
}

static void libc_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static tdsx_allocator_t current = {libc_malloc, libc_realloc, libc_free, NULL};

void tdsx_allocator_set(const tdsx_allocator_t *a)
{
    if (a) {
        current = *a;
    } else {
        current.malloc_fn = libc_malloc;
        current.realloc_fn = libc_realloc;
        current.free_fn = libc_free;
        current.ctx = NULL;
    }
}

void *tdsx_malloc(size_t size)
{
    return current.malloc_fn(size ? size : 1, current.ctx);
}

void *tdsx_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = tdsx_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *tdsx_realloc(void *ptr, size_t size)
{
    return current.realloc_fn(ptr, size ? size : 1, current.ctx);
}

void *tdsx_reallocarray(void *ptr, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return tdsx_realloc(ptr, n * size);
}

void tdsx_free(void *ptr)
{
    if (ptr)
        current.free_fn(ptr, current.ctx);
}

char *tdsx_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = tdsx_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *tdsx_strdup(const char *s)
{
    return tdsx_strndup(s, strlen(s));
}
