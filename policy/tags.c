/* Classification and grading tags (SPEC §6): names, text form, order and combination. */
#include "internal.h"

#include <string.h>

const char *const tdsx__grade_names[4] = {"unset", "general", "important", "core"};
const char *const tdsx__domain_names[TDSX_DOMAIN_COUNT + 1] = {
    "unset", "rd", "production", "ops", "management", "external", "platform", "enterprise-mgmt"};
const char *const tdsx__personal_names[4] = {"unset", "none", "personal", "sensitive-personal"};
const char *const tdsx__library_names[4] = {"unset", "base", "industry", "scenario"};
const char *const tdsx__source_names[4] = {"unset", "public", "industry", "enterprise"};

int tdsx__name_find(const char *const *names, size_t count, const char *s, size_t n)
{
    for (size_t i = 1; i < count; i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
            return (int)i;
    return 0;
}

#define NAME_OF(table, v)                                                                          \
    ((unsigned)(v) < sizeof(table) / sizeof(table)[0] ? (table)[(unsigned)(v)] : (table)[0])

const char *tdsx_grade_name(tdsx_grade_t g)
{
    return NAME_OF(tdsx__grade_names, g);
}

const char *tdsx_domain_name(tdsx_domain_t d)
{
    return NAME_OF(tdsx__domain_names, d);
}

const char *tdsx_personal_name(tdsx_personal_t p)
{
    return NAME_OF(tdsx__personal_names, p);
}

const char *tdsx_library_name(tdsx_library_t l)
{
    return NAME_OF(tdsx__library_names, l);
}

const char *tdsx_source_name(tdsx_source_t s)
{
    return NAME_OF(tdsx__source_names, s);
}

int tdsx_domain_parse(const char *s, size_t n, tdsx_domain_t *out)
{
    int i = tdsx__name_find(tdsx__domain_names, TDSX_DOMAIN_COUNT + 1, s, n);
    if (!i)
        return TDSX_E_TAGS;
    *out = (tdsx_domain_t)i;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Category paths
 * ---------------------------------------------------------------------------------------- */
static int segment_ok(const char *s, size_t n)
{
    if (n == 0 || n > 32 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

int tdsx__category_check_n(const char *s, size_t n, tdsx_domain_t *domain)
{
    if (n == 0 || n > TDSX_CATEGORY_MAX)
        return TDSX_E_TAGS;
    size_t start = 0;
    unsigned depth = 0;
    tdsx_domain_t d = TDSX_DOMAIN_UNSET;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        if (!segment_ok(s + start, i - start) || ++depth > TDSX_CATEGORY_DEPTH)
            return TDSX_E_TAGS;
        if (depth == 1 && tdsx_domain_parse(s, i, &d) != 0)
            return TDSX_E_TAGS;
        start = i + 1;
    }
    if (domain)
        *domain = d;
    return 0;
}

int tdsx_category_check(const char *category)
{
    if (!category)
        return TDSX_E_TAGS;
    return tdsx__category_check_n(category, strnlen(category, TDSX_CATEGORY_MAX + 1), NULL);
}

int tdsx__path_under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '.');
}

/* ------------------------------------------------------------------------------------------
 * Checks and order
 * ---------------------------------------------------------------------------------------- */
int tdsx_tags_check(const tdsx_tags_t *t)
{
    if (!t)
        return TDSX_E_TAGS;
    switch (t->grade) {
    case TDSX_GRADE_GENERAL:
        if (t->level < 1 || t->level > 4)
            return TDSX_E_TAGS;
        break;
    case TDSX_GRADE_IMPORTANT:
    case TDSX_GRADE_CORE:
        if (t->level != 0)
            return TDSX_E_TAGS;
        break;
    default: return TDSX_E_TAGS;
    }
    if (t->domain < TDSX_DOMAIN_RD || t->domain > TDSX_DOMAIN_ENTERPRISE_MGMT ||
        t->personal < TDSX_PERSONAL_NONE || t->personal > TDSX_PERSONAL_SENSITIVE ||
        t->library < TDSX_LIBRARY_BASE || t->library > TDSX_LIBRARY_SCENARIO ||
        t->source < TDSX_SOURCE_PUBLIC || t->source > TDSX_SOURCE_ENTERPRISE)
        return TDSX_E_TAGS;
    size_t n = strnlen(t->category, sizeof t->category);
    tdsx_domain_t d;
    if (n == sizeof t->category || tdsx__category_check_n(t->category, n, &d) != 0 ||
        d != t->domain)
        return TDSX_E_TAGS;
    return 0;
}

int tdsx_tags_rank(const tdsx_tags_t *t)
{
    switch (t->grade) {
    case TDSX_GRADE_GENERAL: return t->level >= 1 && t->level <= 4 ? t->level : 0;
    case TDSX_GRADE_IMPORTANT: return 5;
    case TDSX_GRADE_CORE: return 6;
    default: return 0;
    }
}

static int cmp_int(int a, int b)
{
    return (a > b) - (a < b);
}

/* Grade then personal: the part of the order that means "more sensitive". */
static int cmp_sensitivity(const tdsx_tags_t *a, const tdsx_tags_t *b)
{
    int c = cmp_int(tdsx_tags_rank(a), tdsx_tags_rank(b));
    return c ? c : cmp_int((int)a->personal, (int)b->personal);
}

int tdsx_tags_cmp(const tdsx_tags_t *a, const tdsx_tags_t *b)
{
    int c = cmp_sensitivity(a, b);
    if (!c)
        c = cmp_int((int)a->library, (int)b->library);
    if (!c)
        c = cmp_int((int)a->source, (int)b->source);
    if (!c)
        c = cmp_int((int)a->domain, (int)b->domain);
    if (!c)
        c = strncmp(a->category, b->category, sizeof a->category);
    /* Rank 0 covers several invalid grade/level pairs; keep them apart so 0 means equal. */
    if (!c)
        c = cmp_int((int)a->grade, (int)b->grade);
    if (!c)
        c = cmp_int((int)a->level, (int)b->level);
    return c < 0 ? -1 : c > 0;
}

/* Length of the longest common dotted prefix of a and b (0 when even the first segment
 * differs). */
static size_t common_prefix(const char *a, const char *b)
{
    size_t last = 0, i = 0;
    for (;; i++) {
        int end_a = a[i] == '\0' || a[i] == '.';
        int end_b = b[i] == '\0' || b[i] == '.';
        if (end_a || end_b) {
            if (end_a && end_b)
                last = i;
            if (!(end_a && end_b) || a[i] == '\0' || b[i] == '\0')
                return last;
            continue;
        }
        if (a[i] != b[i])
            return last;
    }
}

int tdsx_tags_combine(const tdsx_tags_t *parts, size_t n, unsigned flags, tdsx_tags_t *out)
{
    if (!parts || !out || n == 0)
        return TDSX_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (tdsx_tags_check(&parts[i]) != 0)
            return TDSX_E_TAGS;
    tdsx_tags_t acc = parts[0];
    const tdsx_tags_t *top = &parts[0];
    int mixed = 0;
    for (size_t i = 1; i < n; i++) {
        const tdsx_tags_t *p = &parts[i];
        if (p->domain != acc.domain)
            mixed = 1;
        if (tdsx_tags_rank(p) > tdsx_tags_rank(&acc)) {
            acc.grade = p->grade;
            acc.level = p->level;
        }
        if (p->personal > acc.personal)
            acc.personal = p->personal;
        if (p->library > acc.library)
            acc.library = p->library;
        if (p->source > acc.source)
            acc.source = p->source;
        if (cmp_sensitivity(p, top) > 0)
            top = p;
        if (!mixed)
            acc.category[common_prefix(acc.category, p->category)] = '\0';
    }
    if (mixed) {
        if (!(flags & TDSX_TAGS_MIXED_DOMAINS))
            return TDSX_E_TAGS;
        acc.domain = top->domain;
        memcpy(acc.category, top->category, sizeof acc.category);
    }
    *out = acc;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Text form
 * ---------------------------------------------------------------------------------------- */
enum { K_GRADE, K_DOMAIN, K_CATEGORY, K_PERSONAL, K_LIBRARY, K_SOURCE, K_COUNT };
static const char *const key_names[K_COUNT] = {"grade",    "domain",  "category",
                                               "personal", "library", "source"};

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Fills *err (may be NULL) for the word at offset and returns TDSX_E_TAGS. The message is
 * before + 'word' + after, the word cleaned of anything unprintable. */
static int tags_fail(tdsx_tags_error_t *err, size_t offset, const char *word, size_t n,
                     const char *before, const char *after)
{
    if (!err)
        return TDSX_E_TAGS;
    size_t k = n < sizeof err->word - 1 ? n : sizeof err->word - 1;
    for (size_t i = 0; i < k; i++) {
        char c = word[i];
        err->word[i] = (c > ' ' && c < 0x7f) ? c : '?';
    }
    err->word[k] = '\0';
    err->offset = offset;
    snprintf(err->msg, sizeof err->msg, "%s'%s'%s", before, err->word, after);
    return TDSX_E_TAGS;
}

static int find_key(const char *s, size_t n)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strlen(key_names[k]) == n && memcmp(key_names[k], s, n) == 0)
            return k;
    return -1;
}

static int parse_grade(const char *v, size_t n, tdsx_tags_t *t)
{
    if (n == 4 && memcmp(v, "core", 4) == 0) {
        t->grade = TDSX_GRADE_CORE;
        t->level = 0;
        return 0;
    }
    if (n == 9 && memcmp(v, "important", 9) == 0) {
        t->grade = TDSX_GRADE_IMPORTANT;
        t->level = 0;
        return 0;
    }
    if (n == 9 && memcmp(v, "general:", 8) == 0 && v[8] >= '1' && v[8] <= '4') {
        t->grade = TDSX_GRADE_GENERAL;
        t->level = (uint8_t)(v[8] - '0');
        return 0;
    }
    return TDSX_E_TAGS;
}

int tdsx_tags_parse(tdsx_bytes_t text, tdsx_tags_t *out, tdsx_tags_error_t *err)
{
    tdsx_tags_t t;
    memset(&t, 0, sizeof t);
    int seen[K_COUNT] = {0};
    size_t off = 0, cat_off = 0;
    tdsx_bytes_t c = text;
    while (c.n > 0) {
        const uint8_t *p;
        if (tdsx_bytes_peek(&c, c.n, &p) != 0)
            return TDSX_E_INTERNAL;
        size_t wn = 0;
        while (wn < c.n && !is_space(p[wn]))
            wn++;
        if (wn == 0) {
            if (tdsx_bytes_skip(&c, 1) != 0)
                return TDSX_E_INTERNAL;
            off++;
            continue;
        }
        tdsx_bytes_t w;
        if (tdsx_bytes_take(&c, wn, &w) != 0)
            return TDSX_E_INTERNAL;
        const char *word = (const char *)w.p;
        for (size_t i = 0; i < wn; i++)
            if (w.p[i] <= ' ' || w.p[i] >= 0x7f)
                return tags_fail(err, off, word, wn, "",
                                 ": only printable ASCII is allowed in tags");
        const char *eq = memchr(word, '=', wn);
        if (!eq)
            return tags_fail(err, off, word, wn, "", " is not key=value");
        size_t kn = (size_t)(eq - word);
        const char *v = eq + 1;
        size_t vn = wn - kn - 1;
        size_t voff = off + kn + 1;
        int k = find_key(word, kn);
        if (k < 0)
            return tags_fail(err, off, word, kn, "unknown key ",
                             " (expected grade, domain, category, personal, library or "
                             "source)");
        if (seen[k]++)
            return tags_fail(err, off, word, kn, "key ", " given twice");
        if (vn == 0)
            return tags_fail(err, off, word, wn, "", " has no value");
        int i = 0;
        switch (k) {
        case K_GRADE:
            if (parse_grade(v, vn, &t) != 0)
                return tags_fail(err, voff, v, vn, "bad grade ",
                                 " (expected core, important or general:1 to general:4)");
            break;
        case K_DOMAIN:
            i = tdsx__name_find(tdsx__domain_names, TDSX_DOMAIN_COUNT + 1, v, vn);
            if (!i)
                return tags_fail(err, voff, v, vn, "unknown domain ",
                                 " (expected rd, production, ops, management, external, "
                                 "platform or enterprise-mgmt)");
            t.domain = (tdsx_domain_t)i;
            break;
        case K_CATEGORY:
            if (tdsx__category_check_n(v, vn, NULL) != 0)
                return tags_fail(err, voff, v, vn, "bad category ",
                                 " (a dotted lower-case path that starts with a domain)");
            memcpy(t.category, v, vn);
            t.category[vn] = '\0';
            cat_off = voff;
            break;
        case K_PERSONAL:
            i = tdsx__name_find(tdsx__personal_names, 4, v, vn);
            if (!i)
                return tags_fail(err, voff, v, vn, "unknown personal ",
                                 " (expected none, personal or sensitive-personal)");
            t.personal = (tdsx_personal_t)i;
            break;
        case K_LIBRARY:
            i = tdsx__name_find(tdsx__library_names, 4, v, vn);
            if (!i)
                return tags_fail(err, voff, v, vn, "unknown library ",
                                 " (expected base, industry or scenario)");
            t.library = (tdsx_library_t)i;
            break;
        case K_SOURCE:
            i = tdsx__name_find(tdsx__source_names, 4, v, vn);
            if (!i)
                return tags_fail(err, voff, v, vn, "unknown source ",
                                 " (expected public, industry or enterprise)");
            t.source = (tdsx_source_t)i;
            break;
        default: return TDSX_E_INTERNAL;
        }
        off += wn;
    }
    for (int k = 0; k < K_COUNT; k++)
        if (!seen[k])
            return tags_fail(err, text.n, key_names[k], strlen(key_names[k]), "missing key ", "");
    tdsx_domain_t cd;
    if (tdsx__category_check_n(t.category, strlen(t.category), &cd) != 0 || cd != t.domain) {
        char after[48];
        snprintf(after, sizeof after, " is not under domain '%s'", tdsx_domain_name(t.domain));
        return tags_fail(err, cat_off, t.category, strlen(t.category), "category ", after);
    }
    *out = t;
    return 0;
}

int tdsx_tags_format(const tdsx_tags_t *t, char *out, size_t size)
{
    if (size > 0)
        out[0] = '\0';
    if (tdsx_tags_check(t) != 0)
        return TDSX_E_TAGS;
    char grade[16];
    if (t->grade == TDSX_GRADE_GENERAL)
        snprintf(grade, sizeof grade, "general:%u", (unsigned)t->level);
    else
        snprintf(grade, sizeof grade, "%s", tdsx_grade_name(t->grade));
    int n =
        snprintf(out, size, "grade=%s domain=%s category=%s personal=%s library=%s source=%s",
                 grade, tdsx_domain_name(t->domain), t->category, tdsx_personal_name(t->personal),
                 tdsx_library_name(t->library), tdsx_source_name(t->source));
    if (n < 0 || (size_t)n >= size) {
        if (size > 0)
            out[0] = '\0';
        return TDSX_E_TOOBIG;
    }
    return 0;
}
