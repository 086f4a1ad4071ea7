/* The category taxonomy (SPEC §6): file parser, built-in MIIT default and lookups. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry_s {
    char *path;
    char *label; /* NULL when none */
    unsigned line;
    unsigned col;
    int open;
    int declared; /* 0 for a parent only implied by a longer path */
} entry_t;

struct tdsx_taxonomy_s {
    entry_t *v;
    size_t n;
    size_t alloc;
};

/* The MIIT 工业数据分类分级指南（试行） (2020) categories, SPEC §6. Open, so a sector refines
 * them without shipping a file of its own. */
static const char default_text[] = "rd                          研发\n"
                                   "rd.design.*                 研发设计数据\n"
                                   "rd.test.*                   开发测试数据\n"
                                   "production                  生产\n"
                                   "production.control.*        控制信息\n"
                                   "production.condition.*      工况状态\n"
                                   "production.process.*        工艺参数\n"
                                   "production.syslog.*         系统日志\n"
                                   "ops                         运维\n"
                                   "ops.logistics.*             物流数据\n"
                                   "ops.after-sales.*           产品售后服务数据\n"
                                   "management                  管理\n"
                                   "management.assets.*         系统设备资产信息\n"
                                   "management.customer-product.* 客户与产品信息\n"
                                   "management.supply-chain.*   产品供应链数据\n"
                                   "management.statistics.*     业务统计数据\n"
                                   "external                    外部\n"
                                   "external.shared.*           与其他主体共享的数据\n"
                                   "platform                    平台运营\n"
                                   "platform.iot.*              物联采集数据\n"
                                   "platform.knowledge-model.*  知识库模型库数据\n"
                                   "platform.rd.*               研发数据\n"
                                   "enterprise-mgmt             企业管理\n"
                                   "enterprise-mgmt.customer.*  客户数据\n"
                                   "enterprise-mgmt.cooperation.* 业务合作数据\n"
                                   "enterprise-mgmt.hr-finance.* 人事财务数据\n";

void tdsx_taxonomy_free(tdsx_taxonomy_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        tdsx_free(t->v[i].path);
        tdsx_free(t->v[i].label);
    }
    tdsx_free(t->v);
    tdsx_free(t);
}

/* Takes ownership of path and label (freed on failure too). */
static int push(tdsx_taxonomy_t *t, char *path, char *label, unsigned line, int open, int declared)
{
    if (t->n == t->alloc) {
        size_t na = t->alloc ? t->alloc * 2 : 32;
        entry_t *nv = tdsx_reallocarray(t->v, na, sizeof *nv);
        if (!nv) {
            tdsx_free(path);
            tdsx_free(label);
            return TDSX_E_NOMEM;
        }
        t->v = nv;
        t->alloc = na;
    }
    entry_t *e = &t->v[t->n++];
    e->path = path;
    e->label = label;
    e->line = line;
    e->col = 1;
    e->open = open;
    e->declared = declared;
    return 0;
}

static int is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static const char domain_list[] =
    "rd, production, ops, management, external, platform, enterprise-mgmt";

/* Parses one line (without its newline); appends a declared entry or diagnostics. */
static int parse_line(tdsx_taxonomy_t *t, tdsx_bytes_t line, unsigned lineno, tdsx_diags_t *diags,
                      int *errors)
{
    const uint8_t *p;
    if (line.n == 0)
        return 0;
    if (tdsx_bytes_peek(&line, line.n, &p) != 0)
        return TDSX_E_INTERNAL;
    size_t n = line.n, i = 0;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    for (size_t k = 0; k < n; k++) {
        if (p[k] == '\0' || (p[k] < ' ' && p[k] != '\t')) {
            ++*errors;
            return tdsx__diag_add(diags, lineno, tdsx__utf8_cols(p, k) + 1, TDSX_DIAG_ERROR,
                                  TDSX_DIAG_SYNTAX, TDSX_E_TAXONOMY,
                                  "control character (0x%02x) in the line", p[k]);
        }
    }
    while (i < n && is_blank(p[i]))
        i++;
    if (i == n || p[i] == '#')
        return 0;
    size_t ps = i;
    while (i < n && !is_blank(p[i]))
        i++;
    size_t pn = i - ps;
    unsigned pcol = tdsx__utf8_cols(p, ps) + 1;
    const char *path = (const char *)p + ps;
    int open = pn >= 2 && path[pn - 2] == '.' && path[pn - 1] == '*';
    size_t cn = open ? pn - 2 : pn;
    tdsx_domain_t d;
    if (tdsx__category_check_n(path, cn, &d) != 0) {
        size_t first = 0;
        while (first < cn && path[first] != '.')
            first++;
        ++*errors;
        if (first > 0 && first <= 32 && !tdsx__name_find(tdsx__domain_names, 8, path, first))
            return tdsx__diag_add(diags, lineno, pcol, TDSX_DIAG_ERROR, TDSX_DIAG_UNKNOWN_WORD,
                                  TDSX_E_TAXONOMY, "path '%.*s' does not start with a domain (%s)",
                                  (int)(pn > 60 ? 60 : pn), path, domain_list);
        return tdsx__diag_add(diags, lineno, pcol, TDSX_DIAG_ERROR, TDSX_DIAG_BAD_VALUE,
                              TDSX_E_TAXONOMY,
                              "malformed path '%.*s' (segments of a-z 0-9 '-' joined by '.', "
                              "optional '.*' at the end)",
                              (int)(pn > 60 ? 60 : pn), path);
    }
    /* The label runs to a '#' that follows whitespace, or to the end of the line. */
    while (i < n && is_blank(p[i]))
        i++;
    size_t ls = i, le = i;
    for (; i < n; i++) {
        if (p[i] == '#' && is_blank(p[i - 1]))
            break;
        if (!is_blank(p[i]))
            le = i + 1;
    }
    size_t ln = le - ls;
    if (ln > TDSX_TAXONOMY_LABEL_MAX || !tdsx__utf8_valid(p + ls, ln)) {
        ++*errors;
        return tdsx__diag_add(
            diags, lineno, tdsx__utf8_cols(p, ls) + 1, TDSX_DIAG_ERROR,
            ln > TDSX_TAXONOMY_LABEL_MAX ? TDSX_DIAG_LIMIT : TDSX_DIAG_BAD_VALUE, TDSX_E_TAXONOMY,
            ln > TDSX_TAXONOMY_LABEL_MAX ? "label of '%.*s' is longer than 128 bytes"
                                         : "label of '%.*s' is not valid UTF-8",
            (int)cn, path);
    }
    char *cp = tdsx_strndup(path, cn);
    char *lp = ln ? tdsx_strndup((const char *)p + ls, ln) : NULL;
    if (!cp || (ln && !lp)) {
        tdsx_free(cp);
        tdsx_free(lp);
        return TDSX_E_NOMEM;
    }
    int rc = push(t, cp, lp, lineno, open, 1);
    if (rc == 0)
        t->v[t->n - 1].col = pcol;
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c)
        return c;
    if (x->declared != y->declared)
        return y->declared - x->declared;
    return (x->line > y->line) - (x->line < y->line);
}

/* Diagnostics of one parse are reported in file order although duplicates are found after
 * sorting; an insertion sort keeps equal positions in the order found. */
static void sort_diags(tdsx_diags_t *d, size_t from)
{
    for (size_t i = from + 1; d && i < d->n; i++) {
        tdsx_diag_t x = d->v[i];
        size_t j = i;
        while (j > from && (d->v[j - 1].line > x.line ||
                            (d->v[j - 1].line == x.line && d->v[j - 1].col > x.col))) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = x;
    }
}

/* Adds every proper prefix of every declared path as an implied entry. */
static int add_parents(tdsx_taxonomy_t *t)
{
    size_t declared = t->n;
    for (size_t i = 0; i < declared; i++) {
        const char *path = t->v[i].path;
        for (size_t k = 0; path[k]; k++) {
            if (path[k] != '.')
                continue;
            char *pp = tdsx_strndup(t->v[i].path, k);
            if (!pp)
                return TDSX_E_NOMEM;
            int rc = push(t, pp, NULL, t->v[i].line, 0, 0);
            if (rc)
                return rc;
            path = t->v[i].path; /* push may have moved the array */
        }
    }
    return 0;
}

int tdsx_taxonomy_parse(tdsx_bytes_t text, tdsx_taxonomy_t **out, tdsx_diags_t *diags)
{
    size_t first_diag = diags ? diags->n : 0;
    int errors = 0, rc;
    tdsx_taxonomy_t *t = tdsx_calloc(1, sizeof *t);
    if (!t)
        return TDSX_E_NOMEM;
    tdsx_bytes_t c = text;
    unsigned lineno = 0;
    while (c.n > 0) {
        const uint8_t *p;
        if (tdsx_bytes_peek(&c, c.n, &p) != 0) {
            rc = TDSX_E_INTERNAL;
            goto fail;
        }
        const uint8_t *nl = memchr(p, '\n', c.n);
        size_t len = nl ? (size_t)(nl - p) : c.n;
        tdsx_bytes_t line;
        if (tdsx_bytes_take(&c, len, &line) != 0 || (nl && tdsx_bytes_skip(&c, 1) != 0)) {
            rc = TDSX_E_INTERNAL;
            goto fail;
        }
        rc = parse_line(t, line, ++lineno, diags, &errors);
        if (rc)
            goto fail;
    }
    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    for (size_t i = 1, first = 0; i < t->n; i++) {
        if (strcmp(t->v[i].path, t->v[first].path) != 0) {
            first = i;
            continue;
        }
        errors++;
        rc = tdsx__diag_add(diags, t->v[i].line, t->v[i].col, TDSX_DIAG_ERROR, TDSX_DIAG_DUPLICATE,
                            TDSX_E_TAXONOMY, "duplicate path '%s' (first declared on line %u)",
                            t->v[i].path, t->v[first].line);
        if (rc)
            goto fail;
    }
    sort_diags(diags, first_diag);
    if (errors) {
        rc = TDSX_E_TAXONOMY;
        goto fail;
    }
    rc = add_parents(t);
    if (rc)
        goto fail;
    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    /* Keep the first of each path: the declared one when there is one (cmp_entry order). */
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (w > 0 && strcmp(t->v[i].path, t->v[w - 1].path) == 0) {
            tdsx_free(t->v[i].path);
            tdsx_free(t->v[i].label);
            continue;
        }
        t->v[w++] = t->v[i];
    }
    t->n = w;
    *out = t;
    return 0;
fail:
    tdsx_taxonomy_free(t);
    return rc;
}

int tdsx_taxonomy_load(const char *path, tdsx_taxonomy_t **out, tdsx_diags_t *diags)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, TDSX_TAXONOMY_FILE_MAX, &buf, &len);
    if (rc)
        return rc;
    rc = tdsx_taxonomy_parse(tdsx_bytes(buf, len), out, diags);
    tdsx_free(buf);
    return rc;
}

int tdsx_taxonomy_new_default(tdsx_taxonomy_t **out)
{
    return tdsx_taxonomy_parse(tdsx_bytes(default_text, sizeof default_text - 1), out, NULL);
}

size_t tdsx_taxonomy_count(const tdsx_taxonomy_t *t)
{
    return t->n;
}

void tdsx_taxonomy_entry(const tdsx_taxonomy_t *t, size_t i, const char **path, const char **label,
                         int *open)
{
    const entry_t *e = &t->v[i];
    if (path)
        *path = e->path;
    if (label)
        *label = e->label;
    if (open)
        *open = e->open;
}

static const entry_t *find(const tdsx_taxonomy_t *t, const char *path)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, t->v[mid].path);
        if (c == 0)
            return &t->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int tdsx_taxonomy_has(const tdsx_taxonomy_t *t, const char *path, const char **label)
{
    char buf[TDSX_CATEGORY_MAX + 1];
    size_t n = strnlen(path, sizeof buf);
    if (label)
        *label = NULL;
    if (n == sizeof buf || tdsx__category_check_n(path, n, NULL) != 0)
        return 0;
    memcpy(buf, path, n + 1);
    int exact = 1, found = 0;
    for (;;) {
        const entry_t *e = find(t, buf);
        if (e) {
            if (exact || e->open)
                found = 1;
            if (label && !*label && e->label)
                *label = e->label;
            if (found && (!label || *label))
                return 1;
        }
        char *dot = strrchr(buf, '.');
        if (!dot) {
            if (!found && label)
                *label = NULL;
            return found;
        }
        *dot = '\0';
        exact = 0;
    }
}

int tdsx_taxonomy_check(const tdsx_taxonomy_t *t, const tdsx_tags_t *tags)
{
    if (tdsx_tags_check(tags) != 0 || !t)
        return TDSX_E_TAGS;
    return tdsx_taxonomy_has(t, tags->category, NULL) ? 0 : TDSX_E_TAGS;
}
