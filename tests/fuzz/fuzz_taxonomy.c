/*
 * fuzz_taxonomy.c — arbitrary bytes as a category taxonomy file (SPEC §6), and the same bytes
 * as the text form of a tag set (the other parser of policy/ that reads untrusted text).
 *
 * The input is the file itself, so the seed corpus (corpus/taxonomy/) reads as taxonomies and
 * tag lines. Checks, taxonomy:
 *   - parsing returns 0 or TDSX_E_TAXONOMY; a refusal leaves *out alone and reports errors in
 *     file order, each on a line of the input, with the taxonomy code;
 *   - entries are sorted and unique, well-formed paths whose parents are entries too, with
 *     labels of at most TDSX_TAXONOMY_LABEL_MAX bytes;
 *   - tdsx_taxonomy_has and tdsx_taxonomy_check agree with a reference written here from the
 *     header's words (a path exists when it is an entry or lies below an open one), and the
 *     label is the nearest labelled entry's;
 *   - the entries written back out as a file parse to the same entries;
 *   - tdsx_policy_lint reports exactly the categories of a fixed policy the taxonomy lacks;
 *   - one allocation failure, at a point picked from the input, is TDSX_E_NOMEM.
 * Tags:
 *   - parsing returns 0 or TDSX_E_TAGS; a refusal leaves *out alone and points into the input;
 *   - a parsed set passes tdsx_tags_check, formats to a text that parses back to the same set,
 *     and combines as SPEC §6 says (the highest grade and personal level of the parts).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_taxonomy.c:%d: check failed: %s\n", __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* An allocator that counts calls and fails exactly the fail_at-th one (0: none). */
static unsigned long alloc_calls, alloc_fail_at;

static void *count_malloc(size_t size, void *ctx)
{
    (void)ctx;
    return ++alloc_calls == alloc_fail_at ? NULL : malloc(size);
}

static void *count_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    return ++alloc_calls == alloc_fail_at ? NULL : realloc(ptr, size);
}

static void count_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static void alloc_arm(unsigned long fail_at)
{
    static const tdsx_allocator_t a = {count_malloc, count_realloc, count_free, NULL};
    tdsx_allocator_set(&a);
    alloc_calls = 0;
    alloc_fail_at = fail_at;
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------------------------------
 * Taxonomy
 * ---------------------------------------------------------------------------------------- */
typedef struct entry_s {
    const char *path;
    const char *label;
    int open;
} entry_t;

static int below(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && path[n] == '.';
}

/* policy.h: a path exists when it is an entry (declared or implied) or lies below an open
 * entry; *label is the label of the nearest labelled entry at or above it. */
static int ref_has(const entry_t *e, size_t n, const char *path, const char **label)
{
    *label = NULL;
    if (tdsx_category_check(path) != 0)
        return 0;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        found = strcmp(e[i].path, path) == 0 || (e[i].open && below(path, e[i].path));
    if (!found)
        return 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(e[i].path);
        if (e[i].label && len > best && (strcmp(e[i].path, path) == 0 || below(path, e[i].path))) {
            best = len;
            *label = e[i].label;
        }
    }
    return 1;
}

static void tags_for(const char *path, tdsx_tags_t *t)
{
    memset(t, 0, sizeof *t);
    t->grade = TDSX_GRADE_GENERAL;
    t->level = 2;
    const char *dot = strchr(path, '.');
    size_t dn = dot ? (size_t)(dot - path) : strlen(path);
    check(tdsx_domain_parse(path, dn, &t->domain) == 0);
    snprintf(t->category, sizeof t->category, "%s", path);
    t->personal = TDSX_PERSONAL_NONE;
    t->library = TDSX_LIBRARY_BASE;
    t->source = TDSX_SOURCE_ENTERPRISE;
}

static void probe(const tdsx_taxonomy_t *tax, const entry_t *e, size_t n, const char *path)
{
    const char *want_label, *label = "unset";
    int want = ref_has(e, n, path, &want_label);
    int got = tdsx_taxonomy_has(tax, path, &label);
    check(got == want);
    check(label == want_label || (label && want_label && strcmp(label, want_label) == 0));
    check(tdsx_taxonomy_has(tax, path, NULL) == want);
    if (tdsx_category_check(path) == 0) {
        tdsx_tags_t t;
        tags_for(path, &t);
        check(tdsx_taxonomy_check(tax, &t) == (want ? 0 : TDSX_E_TAGS));
    }
}

/* Each category of this policy is a finding exactly when the taxonomy lacks it. */
static const char lint_policy[] =
    "deny category production.process.quality, rd.design, ops\n"
    "allow grade general:1 category management.assets.x, platform.iot, external.shared, "
    "enterprise-mgmt.hr-finance require agreement\n";
static const char *const lint_cats[2][4] = {
    {"production.process.quality", "rd.design", "ops", NULL},
    {"management.assets.x", "platform.iot", "external.shared", "enterprise-mgmt.hr-finance"}};

static void lint_against(const tdsx_taxonomy_t *tax, const entry_t *e, size_t n)
{
    tdsx_policy_t *p = NULL;
    check(tdsx_policy_parse(tdsx_bytes(lint_policy, sizeof lint_policy - 1), &p, NULL) == 0);
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int count = tdsx_policy_lint(p, tax, &d);
    check(count >= 0 && (size_t)count == d.n);
    for (unsigned line = 1; line <= 2; line++) {
        size_t want = 0, got = 0;
        for (size_t k = 0; k < 4 && lint_cats[line - 1][k]; k++) {
            const char *label;
            want += !ref_has(e, n, lint_cats[line - 1][k], &label);
        }
        for (size_t i = 0; i < d.n; i++)
            got += d.v[i].kind == TDSX_DIAG_TAXONOMY && d.v[i].line == line;
        check(got == want);
    }
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
}

/* The entries as a file: every entry declared, parents first (sorted order). */
static char *write_back(const entry_t *e, size_t n, size_t *len)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(e[i].path) + 3 + (e[i].label ? strlen(e[i].label) + 1 : 0);
    char *s = malloc(cap);
    check(s != NULL);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(s + w, cap - w, "%s%s%s%s\n", e[i].path, e[i].open ? ".*" : "",
                         e[i].label ? " " : "", e[i].label ? e[i].label : "");
        check(k > 0 && (size_t)k < cap - w);
        w += (size_t)k;
    }
    *len = w;
    return s;
}

static entry_t *entries_of(const tdsx_taxonomy_t *tax, size_t *count)
{
    size_t n = tdsx_taxonomy_count(tax);
    entry_t *e = calloc(n ? n : 1, sizeof *e);
    check(e != NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].path = NULL;
        e[i].label = NULL;
        e[i].open = -1;
        tdsx_taxonomy_entry(tax, i, &e[i].path, &e[i].label, &e[i].open);
        check(e[i].path != NULL && (e[i].open == 0 || e[i].open == 1));
    }
    *count = n;
    return e;
}

static void check_taxonomy(const tdsx_taxonomy_t *tax)
{
    size_t n;
    entry_t *e = entries_of(tax, &n);
    for (size_t i = 0; i < n; i++) {
        check(tdsx_category_check(e[i].path) == 0);
        check(i == 0 || strcmp(e[i - 1].path, e[i].path) < 0);
        if (e[i].label) {
            size_t ln = strlen(e[i].label);
            check(ln > 0 && ln <= TDSX_TAXONOMY_LABEL_MAX);
            check(e[i].label[0] != ' ' && e[i].label[0] != '\t' && e[i].label[0] != '#');
            check(e[i].label[ln - 1] != ' ' && e[i].label[ln - 1] != '\t');
            for (size_t k = 0; k < ln; k++)
                check((unsigned char)e[i].label[k] >= ' ' || e[i].label[k] == '\t');
        }
        /* Parents are implied: the path cut at its last dot is an entry too. */
        const char *dot = strrchr(e[i].path, '.');
        if (dot) {
            char parent[TDSX_CATEGORY_MAX + 1];
            snprintf(parent, sizeof parent, "%.*s", (int)(dot - e[i].path), e[i].path);
            size_t k = 0;
            while (k < i && strcmp(e[k].path, parent) != 0)
                k++;
            check(k < i);
        }
    }

    /* Lookups against the reference: every entry, paths just below and beside it (a bounded
     * number of them), and a few fixed ones. */
    size_t stride = n > 128 ? n / 128 : 1;
    for (size_t i = 0; i < n; i += stride) {
        char buf[TDSX_CATEGORY_MAX + 16];
        probe(tax, e, n, e[i].path);
        snprintf(buf, sizeof buf, "%s.x", e[i].path);
        probe(tax, e, n, buf);
        snprintf(buf, sizeof buf, "%s.x.y-2", e[i].path);
        probe(tax, e, n, buf);
        snprintf(buf, sizeof buf, "%s-z", e[i].path);
        probe(tax, e, n, buf);
    }
    static const char *const fixed[] = {"production",
                                        "production.process",
                                        "production.process.quality",
                                        "rd.design",
                                        "platform.iot.sensor",
                                        "ops.zz",
                                        "management",
                                        "enterprise-mgmt.hr-finance.payroll",
                                        "factory.line",
                                        "Production",
                                        "",
                                        "rd.",
                                        "rd..x",
                                        "production.-x"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        probe(tax, e, n, fixed[i]);

    lint_against(tax, e, n);

    /* Written back out, the entries parse to themselves. */
    size_t len;
    char *text = write_back(e, n, &len);
    tdsx_taxonomy_t *again = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    check(tdsx_taxonomy_parse(tdsx_bytes(text, len), &again, &d) == 0 && d.n == 0);
    size_t m;
    entry_t *f = entries_of(again, &m);
    check(m == n);
    for (size_t i = 0; i < n; i++) {
        check(strcmp(e[i].path, f[i].path) == 0 && e[i].open == f[i].open);
        check(e[i].label == NULL ? f[i].label == NULL
                                 : f[i].label != NULL && strcmp(e[i].label, f[i].label) == 0);
    }
    free(f);
    tdsx_taxonomy_free(again);
    tdsx_diags_free(&d);
    free(text);
    free(e);
}

static void check_taxonomy_errors(const tdsx_diags_t *d, const uint8_t *data, size_t size)
{
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    check(d->n > 0);
    for (size_t i = 0; i < d->n; i++) {
        const tdsx_diag_t *e = &d->v[i];
        check(e->severity == TDSX_DIAG_ERROR && e->code == TDSX_E_TAXONOMY);
        check(e->line >= 1 && e->line <= lines && e->col >= 1);
        check(i == 0 || e->line > d->v[i - 1].line ||
              (e->line == d->v[i - 1].line && e->col >= d->v[i - 1].col));
        check(memchr(e->msg, '\0', sizeof e->msg) != NULL && e->msg[0] != '\0');
    }
}

static void fuzz_taxonomy(const uint8_t *data, size_t size, uint32_t seed)
{
    tdsx_bytes_t text = tdsx_bytes(data, size);
    tdsx_taxonomy_t *tax = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    alloc_arm(0);
    int rc = tdsx_taxonomy_parse(text, &tax, &d);
    unsigned long calls = alloc_calls;
    check(rc == 0 || rc == TDSX_E_TAXONOMY);
    if (rc) {
        check(tax == NULL);
        check_taxonomy_errors(&d, data, size);
        check(tdsx_taxonomy_parse(text, &tax, NULL) == TDSX_E_TAXONOMY && tax == NULL);
    } else {
        check(tax != NULL && d.n == 0);
        check_taxonomy(tax);
        tdsx_taxonomy_free(tax);
    }
    tdsx_diags_free(&d);

    /* One failed allocation anywhere: TDSX_E_NOMEM, *out untouched, nothing leaked. */
    if (calls > 0) {
        tdsx_taxonomy_t *marker = (tdsx_taxonomy_t *)&calls;
        tax = marker;
        tdsx_diags_init(&d);
        alloc_arm(1 + seed % calls);
        rc = tdsx_taxonomy_parse(text, &tax, &d);
        alloc_arm(0);
        check(rc == TDSX_E_NOMEM && tax == marker);
        tdsx_diags_free(&d);
    }
}

/* ------------------------------------------------------------------------------------------
 * Tags
 * ---------------------------------------------------------------------------------------- */
static int tags_equal(const tdsx_tags_t *a, const tdsx_tags_t *b)
{
    return a->grade == b->grade && a->level == b->level && a->domain == b->domain &&
           strcmp(a->category, b->category) == 0 && a->personal == b->personal &&
           a->library == b->library && a->source == b->source;
}

static void fuzz_tags(const uint8_t *data, size_t size)
{
    tdsx_tags_t t, keep;
    memset(&t, 0xa5, sizeof t);
    keep = t;
    tdsx_tags_error_t err;
    memset(&err, 0, sizeof err);
    int rc = tdsx_tags_parse(tdsx_bytes(data, size), &t, &err);
    check(rc == 0 || rc == TDSX_E_TAGS);
    check(tdsx_tags_parse(tdsx_bytes(data, size), &t, NULL) == rc);
    if (rc) {
        check(memcmp(&t, &keep, sizeof t) == 0);
        check(err.offset <= size);
        check(memchr(err.word, '\0', sizeof err.word) != NULL);
        check(memchr(err.msg, '\0', sizeof err.msg) != NULL && err.msg[0] != '\0');
        return;
    }
    check(tdsx_tags_check(&t) == 0);
    int rank = tdsx_tags_rank(&t);
    check(rank >= 1 && rank <= 6);
    check(rank <= 4 ? t.grade == TDSX_GRADE_GENERAL && t.level == rank : t.level == 0);

    char text[TDSX_TAGS_TEXT_MAX], again_text[TDSX_TAGS_TEXT_MAX];
    check(tdsx_tags_format(&t, text, sizeof text) == 0);
    size_t tn = strlen(text);
    tdsx_tags_t again;
    check(tdsx_tags_parse(tdsx_bytes(text, tn), &again, NULL) == 0);
    check(tags_equal(&t, &again) && tdsx_tags_cmp(&t, &again) == 0);
    check(tdsx_tags_format(&again, again_text, sizeof again_text) == 0);
    check(strcmp(text, again_text) == 0);
    check(tdsx_tags_format(&t, again_text, tn) == TDSX_E_TOOBIG && again_text[0] == '\0');

    /* 就高从严 (SPEC §6): the whole is as sensitive as its most sensitive part. */
    tdsx_tags_t parts[2], out;
    parts[0] = t;
    parts[1] = again;
    check(tdsx_tags_combine(parts, 2, 0, &out) == 0 && tags_equal(&out, &t));
    static const char other_text[] = "grade=general:3 domain=production "
                                     "category=production.process.quality personal=personal "
                                     "library=industry source=public";
    check(tdsx_tags_parse(tdsx_bytes(other_text, sizeof other_text - 1), &parts[1], NULL) == 0);
    rc = tdsx_tags_combine(parts, 2, 0, &out);
    if (t.domain != TDSX_DOMAIN_PRODUCTION) {
        check(rc == TDSX_E_TAGS);
        check(tdsx_tags_combine(parts, 2, TDSX_TAGS_MIXED_DOMAINS, &out) == 0);
        /* Mixed domains: those of the most sensitive part, the earlier one on a tie. */
        int first = rank != 3 ? rank > 3 : t.personal >= TDSX_PERSONAL_PERSONAL;
        const tdsx_tags_t *top = first ? &t : &parts[1];
        check(out.domain == top->domain && strcmp(out.category, top->category) == 0);
    } else {
        check(rc == 0);
        /* The category is the common prefix: something both parts lie under. */
        size_t cn = strlen(out.category);
        check(strncmp(t.category, out.category, cn) == 0 &&
              (t.category[cn] == '\0' || t.category[cn] == '.'));
        check(strncmp(parts[1].category, out.category, cn) == 0);
    }
    check(tdsx_tags_check(&out) == 0);
    check(tdsx_tags_rank(&out) == (rank > 3 ? rank : 3));
    check(out.personal ==
          (t.personal > TDSX_PERSONAL_PERSONAL ? t.personal : TDSX_PERSONAL_PERSONAL));
    check(out.library == (t.library > TDSX_LIBRARY_INDUSTRY ? t.library : TDSX_LIBRARY_INDUSTRY));
    check(out.source == t.source); /* public is the least strict source */
    check(tdsx_tags_cmp(&out, &t) >= 0 && tdsx_tags_cmp(&out, &parts[1]) >= 0);

    tdsx_taxonomy_t *tax = NULL;
    check(tdsx_taxonomy_new_default(&tax) == 0);
    check(tdsx_taxonomy_check(tax, &t) ==
          (tdsx_taxonomy_has(tax, t.category, NULL) ? 0 : TDSX_E_TAGS));
    tdsx_taxonomy_free(tax);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_taxonomy(data, size, fnv1a(data, size));
    fuzz_tags(data, size);
    tdsx_allocator_set(NULL);
    return 0;
}
