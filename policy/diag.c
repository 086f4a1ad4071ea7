/* Diagnostics lists and the UTF-8 helpers the parsers use for columns and labels. */
#include "internal.h"

#include <string.h>

void tdsx_diags_init(tdsx_diags_t *d)
{
    memset(d, 0, sizeof *d);
}

void tdsx_diags_free(tdsx_diags_t *d)
{
    if (!d)
        return;
    tdsx_free(d->v);
    memset(d, 0, sizeof *d);
}

size_t tdsx_diags_count(const tdsx_diags_t *d, tdsx_diag_severity_t severity)
{
    size_t n = 0;
    for (size_t i = 0; d && i < d->n; i++)
        n += d->v[i].severity == severity;
    return n;
}

int tdsx__diag_add(tdsx_diags_t *d, unsigned line, unsigned col, tdsx_diag_severity_t sev,
                   tdsx_diag_kind_t kind, int code, const char *fmt, ...)
{
    if (!d)
        return 0;
    if (d->n >= TDSX_DIAGS_MAX) {
        d->dropped++;
        return 0;
    }
    if (d->n == d->alloc) {
        size_t na = d->alloc ? d->alloc * 2 : 16;
        if (na > TDSX_DIAGS_MAX)
            na = TDSX_DIAGS_MAX;
        tdsx_diag_t *nv = tdsx_reallocarray(d->v, na, sizeof *nv);
        if (!nv)
            return TDSX_E_NOMEM;
        d->v = nv;
        d->alloc = na;
    }
    tdsx_diag_t *e = &d->v[d->n++];
    e->line = line;
    e->col = col;
    e->severity = sev;
    e->kind = kind;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return 0;
}

unsigned tdsx__utf8_cols(const uint8_t *p, size_t n)
{
    unsigned cols = 0;
    for (size_t i = 0; i < n; i++)
        cols += (p[i] & 0xc0) != 0x80;
    return cols;
}

/* RFC 3629 §4: the well-formed byte sequences. */
int tdsx__utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}
