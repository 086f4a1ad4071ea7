/* Bounds-checked reading of untrusted input and capped growable buffers. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

int tdsx_bytes_peek(const tdsx_bytes_t *c, size_t n, const uint8_t **out)
{
    if (c->n < n)
        return TDSX_E_BOUNDS;
    *out = c->p;
    return 0;
}

int tdsx_bytes_take(tdsx_bytes_t *c, size_t n, tdsx_bytes_t *out)
{
    if (c->n < n)
        return TDSX_E_BOUNDS;
    out->p = c->p;
    out->n = n;
    c->p += n;
    c->n -= n;
    return 0;
}

int tdsx_bytes_skip(tdsx_bytes_t *c, size_t n)
{
    tdsx_bytes_t ignored;
    return tdsx_bytes_take(c, n, &ignored);
}

int tdsx_bytes_copy(tdsx_bytes_t *c, void *dst, size_t n)
{
    tdsx_bytes_t t;
    int rc = tdsx_bytes_take(c, n, &t);
    if (rc == 0 && n)
        memcpy(dst, t.p, n);
    return rc;
}

static int read_be(tdsx_bytes_t *c, size_t n, uint64_t *out)
{
    tdsx_bytes_t t;
    int rc = tdsx_bytes_take(c, n, &t);
    if (rc)
        return rc;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | t.p[i];
    *out = v;
    return 0;
}

int tdsx_bytes_u8(tdsx_bytes_t *c, uint8_t *out)
{
    uint64_t v;
    int rc = read_be(c, 1, &v);
    if (rc == 0)
        *out = (uint8_t)v;
    return rc;
}

int tdsx_bytes_u16be(tdsx_bytes_t *c, uint16_t *out)
{
    uint64_t v;
    int rc = read_be(c, 2, &v);
    if (rc == 0)
        *out = (uint16_t)v;
    return rc;
}

int tdsx_bytes_u32be(tdsx_bytes_t *c, uint32_t *out)
{
    uint64_t v;
    int rc = read_be(c, 4, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int tdsx_bytes_u64be(tdsx_bytes_t *c, uint64_t *out)
{
    return read_be(c, 8, out);
}

int tdsx_bytes_equal(tdsx_bytes_t a, tdsx_bytes_t b)
{
    if (a.n != b.n)
        return 0;
    uint8_t d = 0;
    for (size_t i = 0; i < a.n; i++)
        d |= (uint8_t)(a.p[i] ^ b.p[i]);
    return d == 0;
}

void tdsx_buf_init(tdsx_buf_t *b, size_t cap)
{
    b->p = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

int tdsx_buf_reserve(tdsx_buf_t *b, size_t extra)
{
    /* One byte more than asked is kept for the NUL that tdsx_buf_take adds. */
    if (extra > b->cap || b->len > b->cap - extra)
        return TDSX_E_TOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->alloc)
        return 0;
    size_t na = b->alloc ? b->alloc : 64;
    while (na < need)
        na = na > SIZE_MAX / 2 ? need : na * 2;
    if (b->cap < SIZE_MAX && na > b->cap + 1)
        na = b->cap + 1;
    uint8_t *np = tdsx_realloc(b->p, na);
    if (!np)
        return TDSX_E_NOMEM;
    b->p = np;
    b->alloc = na;
    return 0;
}

int tdsx_buf_append(tdsx_buf_t *b, const void *p, size_t n)
{
    int rc = tdsx_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int tdsx_buf_append_str(tdsx_buf_t *b, const char *s)
{
    return tdsx_buf_append(b, s, strlen(s));
}

int tdsx_buf_printf(tdsx_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TDSX_E_INVAL;
    int rc = tdsx_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int tdsx_buf_u32be(tdsx_buf_t *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return tdsx_buf_append(b, t, 4);
}

int tdsx_buf_u64be(tdsx_buf_t *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        t[i] = (uint8_t)v;
    return tdsx_buf_append(b, t, 8);
}

void tdsx_buf_consume(tdsx_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p)
        b->p[b->len] = '\0';
}

void tdsx_buf_reset(tdsx_buf_t *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void tdsx_buf_free(tdsx_buf_t *b)
{
    tdsx_free(b->p);
    b->p = NULL;
    b->len = 0;
    b->alloc = 0;
}

char *tdsx_buf_take(tdsx_buf_t *b, size_t *len)
{
    char *p = (char *)b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}

void tdsx_hex_encode(char *out, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tdsx_hex_decode(void *out, size_t n, const char *s)
{
    uint8_t *d = out;
    if (strlen(s) != 2 * n)
        return TDSX_E_FORMAT;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return TDSX_E_FORMAT;
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
