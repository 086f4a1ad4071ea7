/* `tdsx policy check`: findings on a policy that parsed — rules that can never match, rules
 * an earlier one shadows, and allows that the floors make impossible or narrower. */
#include "internal.h"

#include <string.h>

/* Domains a rule can match: its domain condition narrowed by its category prefixes (a tag's
 * category always starts with its domain). */
static unsigned effective_domains(const tdsx__rule_t *r)
{
    if (!r->category.n)
        return r->domain;
    unsigned m = 0;
    for (size_t i = 0; i < r->category.n; i++) {
        tdsx_domain_t d = TDSX_DOMAIN_UNSET;
        if (tdsx__category_check_n(r->category.v[i], strlen(r->category.v[i]), &d) == 0)
            m |= tdsx__bit(d);
    }
    return m & r->domain;
}

static int sub(unsigned inner, unsigned outer)
{
    return (inner & ~outer) == 0;
}

static int covered_by_prefixes(const char *path, const tdsx__strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (tdsx__path_under(path, l->v[i]))
            return 1;
    return 0;
}

static int categories_within(const tdsx__rule_t *j, unsigned j_domains, const tdsx__rule_t *i)
{
    if (!i->category.n)
        return 1;
    if (j->category.n) {
        for (size_t k = 0; k < j->category.n; k++)
            if (!covered_by_prefixes(j->category.v[k], &i->category))
                return 0;
        return 1;
    }
    /* j matches whole domains: i must list each of them entire. */
    for (unsigned d = 1; d <= TDSX_DOMAIN_COUNT; d++)
        if ((j_domains & tdsx__bit(d)) && !covered_by_prefixes(tdsx__domain_names[d], &i->category))
            return 0;
    return 1;
}

static int peer_covers(const char *outer, const char *inner)
{
    size_t n = strlen(outer);
    if (n == 18)
        return strncmp(inner, outer, 18) == 0 && (inner[18] == '/' || inner[18] == '\0');
    return strcmp(inner, outer) == 0;
}

static int peers_within(const tdsx__rule_t *j, const tdsx__rule_t *i)
{
    if (!i->peer.n)
        return 1;
    if (!j->peer.n)
        return 0;
    for (size_t a = 0; a < j->peer.n; a++) {
        size_t b = 0;
        while (b < i->peer.n && !peer_covers(i->peer.v[b], j->peer.v[a]))
            b++;
        if (b == i->peer.n)
            return 0;
    }
    return 1;
}

static int purposes_within(const tdsx__rule_t *j, const tdsx__rule_t *i)
{
    if (!i->purpose.n)
        return 1;
    if (!j->purpose.n)
        return 0;
    for (size_t a = 0; a < j->purpose.n; a++) {
        size_t b = 0;
        while (b < i->purpose.n && strcmp(i->purpose.v[b], j->purpose.v[a]) != 0)
            b++;
        if (b == i->purpose.n)
            return 0;
    }
    return 1;
}

/* 1 when every transfer j matches, i matches too. Conditions are conjunctions over
 * independent dimensions, so containment is containment in each one; jd is j's effective
 * domain set. The bit masks go first: they decide most pairs cheaply. */
static int contains(const tdsx__rule_t *i, const tdsx__rule_t *j, unsigned jd)
{
    return sub(j->grade, i->grade) && sub(jd, i->domain) && sub(j->personal, i->personal) &&
           sub(j->library, i->library) && sub(j->source, i->source) && sub(j->dir, i->dir) &&
           sub(j->role, i->role) && sub(j->local, i->local) && sub(j->relay, i->relay) &&
           categories_within(j, jd, i) && peers_within(j, i) && purposes_within(j, i);
}

static unsigned col_of(const tdsx__rule_t *r, tdsx__cond_t c)
{
    return r->cond_col[c] ? r->cond_col[c] : r->col;
}

static int warn(tdsx_diags_t *d, const tdsx__rule_t *r, unsigned col, tdsx_diag_kind_t kind,
                int *count, const char *fmt, ...) TDSX_PRINTF(6, 7);

static int warn(tdsx_diags_t *d, const tdsx__rule_t *r, unsigned col, tdsx_diag_kind_t kind,
                int *count, const char *fmt, ...)
{
    char msg[TDSX_DIAG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ++*count;
    return tdsx__diag_add(d, r->line, col, TDSX_DIAG_WARNING, kind, TDSX_E_POLICY_DENY,
                          "rule %s: %s", r->id, msg);
}

static int lint_floors(tdsx_diags_t *d, const tdsx__rule_t *r, int *count)
{
    unsigned gcol = col_of(r, TDSX__C_GRADE);
    int rc = 0;
    if (r->grade == TDSX__GRADE_CORE)
        return warn(d, r, gcol, TDSX_DIAG_FLOOR_IMPOSSIBLE, count,
                    "never allows anything: core data never leaves its owner's node "
                    "(floor:core-stays-home)");
    if (r->grade == TDSX__GRADE_ALL) {
        rc = warn(d, r, r->col, TDSX_DIAG_FLOOR_WEAKER, count,
                  "allows every grade, but core data is still refused and important data still "
                  "needs an agreement and a sealed transfer (floors)");
    } else {
        if (r->grade & TDSX__GRADE_CORE)
            rc = warn(d, r, gcol, TDSX_DIAG_FLOOR_WEAKER, count,
                      "core data it names is still refused (floor:core-stays-home)");
        unsigned both = TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL;
        if (rc == 0 && (r->grade & TDSX__GRADE_IMPORTANT) && (r->req & both) != both) {
            const char *what =
                (r->req & TDSX_POLICY_REQ_AGREEMENT)
                    ? "a sealed transfer (floor:important-needs-seal)"
                : (r->req & TDSX_POLICY_REQ_SEAL)
                    ? "an agreement (floor:important-needs-agreement)"
                    : "an agreement and a sealed transfer (floor:important-needs-agreement, "
                      "floor:important-needs-seal)";
            rc = warn(d, r, gcol, TDSX_DIAG_FLOOR_WEAKER, count,
                      "important data it names still needs %s", what);
        }
    }
    unsigned personal = tdsx__bit(TDSX_PERSONAL_PERSONAL) | tdsx__bit(TDSX_PERSONAL_SENSITIVE);
    if (rc == 0 && r->personal != TDSX__TRI_ALL && (r->personal & personal) &&
        !(r->req & TDSX_POLICY_REQ_PURPOSE))
        rc = warn(d, r, col_of(r, TDSX__C_PERSONAL), TDSX_DIAG_FLOOR_WEAKER, count,
                  "personal information it names still needs an agreement with a purpose "
                  "(floor:personal-needs-purpose)");
    return rc;
}

int tdsx_policy_lint(const tdsx_policy_t *p, const tdsx_taxonomy_t *tax, tdsx_diags_t *diags)
{
    int count = 0, rc = 0;
    if (!p || !diags)
        return TDSX_E_INVAL;
    if (p->n == 0) {
        count++;
        rc = tdsx__diag_add(diags, 1, 1, TDSX_DIAG_WARNING, TDSX_DIAG_EMPTY, TDSX_E_POLICY_DENY,
                            "the policy has no rules: every transfer is refused");
        return rc ? rc : count;
    }
    unsigned *dom = tdsx_calloc(p->n, sizeof *dom);
    if (!dom)
        return TDSX_E_NOMEM;
    for (size_t j = 0; j < p->n; j++)
        dom[j] = effective_domains(&p->rules[j]);
    for (size_t j = 0; j < p->n && rc == 0; j++) {
        const tdsx__rule_t *r = &p->rules[j];
        int never = 0;
        if (dom[j] == 0) {
            never = 1;
            rc = warn(diags, r, col_of(r, TDSX__C_CATEGORY), TDSX_DIAG_NEVER_MATCHES, &count,
                      "never matches: no category it lists lies in the domains it allows");
        }
        for (size_t i = 0; i < j && !never && rc == 0; i++) {
            const tdsx__rule_t *e = &p->rules[i];
            if (dom[i] == 0 || !contains(e, r, dom[j]))
                continue;
            rc = warn(diags, r, r->col, TDSX_DIAG_UNREACHABLE, &count,
                      "unreachable: rule %s on line %u matches every transfer this one does", e->id,
                      e->line);
            never = 1; /* what the floors do to it no longer matters */
            break;
        }
        if (rc == 0 && r->allow && !never)
            rc = lint_floors(diags, r, &count);
        for (size_t k = 0; tax && k < r->category.n && rc == 0; k++)
            if (!tdsx_taxonomy_has(tax, r->category.v[k], NULL))
                rc = warn(diags, r, col_of(r, TDSX__C_CATEGORY), TDSX_DIAG_TAXONOMY, &count,
                          "category '%s' is not in the taxonomy", r->category.v[k]);
    }
    tdsx_free(dom);
    return rc ? rc : count;
}
