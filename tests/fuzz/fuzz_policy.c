/*
 * fuzz_policy.c — arbitrary bytes as a node's exchange policy (SPEC §8): parsed and, when they
 * parse, normalised, hashed, parsed again from the normalised text, linted and evaluated.
 *
 * The input is the policy file itself, so the seed corpus (corpus/policy/) reads as policies.
 * Checks:
 *   - parsing returns 0 or TDSX_E_POLICY_PARSE; a refusal leaves *out alone and reports at
 *     least one error, each on a line of the input, with the parse code;
 *   - the hash is the SHA-256 of the normalised text; that text starts with the header, holds
 *     one line per rule (tdsx_policy_rule_text repeats it with the rule's id) and parses
 *     without a diagnostic to the same text and hash: a fixed point;
 *   - rule lines increase and ids are unique: the label, or line-N for line N;
 *   - on a fixed set of transfers every decision is coherent: allow exactly when code is 0, a
 *     rule id always, the deciding rule is the matched one (its requirements, or a deny) or a
 *     floor; an allowed transfer meets its rule's requirements and the floors, whatever the
 *     file says; the normalised policy decides the same way by the same rule;
 *   - the normalised text is read back here (conditions in their fixed order, once each) and,
 *     for each rule, transfers are built that its conditions match as policy.h defines them:
 *     the first match is that rule or an earlier one, and an earlier one when lint calls the
 *     rule unreachable; with one condition broken, that rule is not the match;
 *   - lint findings are warnings on rule lines, in line order; a rule that lint calls
 *     unreachable or never-matching never decides, one it calls floor-impossible never
 *     allows; the taxonomy findings name exactly the rule's categories the taxonomy lacks;
 *   - one allocation failure, at a point picked from the input, makes the parser and the
 *     linter return TDSX_E_NOMEM with *out untouched and nothing leaked.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_policy.c:%d: check failed: %s\n", __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * An allocator that counts calls and fails exactly the fail_at-th one (0: none).
 * ---------------------------------------------------------------------------------------- */
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

/* FNV-1a: picks the failing allocation from the input, so a run is reproducible. */
static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------------------------------
 * Rules as the normalised text shows them
 * ---------------------------------------------------------------------------------------- */
typedef struct view_s {
    const char *id;
    unsigned line;
    int labelled;
    int allow;
    unsigned req;
    const char *line_text; /* the rule's line of the normalised text, no newline */
    size_t line_len;
    /* From lint: never the first match (unreachable, never matches); never allows. */
    int dead;
    int impossible;
} view_t;

/* A string list of a rule: pointers into the normalised text. */
typedef struct words_s {
    size_t n;
    const char *p[TDSX_POLICY_LIST_MAX];
    size_t len[TDSX_POLICY_LIST_MAX];
} words_t;

/* The conditions of one rule, read back from its normalised line. Enumerations are bit sets
 * (bit value-1; grades bit rank-1), all bits when the condition is absent. */
typedef struct conds_s {
    int allow;
    unsigned req;
    unsigned grades, domains, personal, library, source, local;
    int dir;        /* 0 either, else TDSX_DIR_SEND / TDSX_DIR_RECEIVE */
    unsigned roles; /* counterpart roles; 7 for `any` */
    int role_given; /* to/from/with written: an unknown counterpart role does not match */
    int relay;      /* -1 either, 0 direct, 1 relay */
    words_t category, peer, purpose;
} conds_t;

#define ALL3 7u

static int starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

static int word_is(const char *w, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(w, s, n) == 0;
}

/* The bit (value-1) of w among the three names a, b, c (values 1-3); 0 when it is none. */
static unsigned bit3(const char *w, size_t n, const char *a, const char *b, const char *c)
{
    return word_is(w, n, a) ? 1u : word_is(w, n, b) ? 2u : word_is(w, n, c) ? 4u : 0u;
}

static unsigned grade_item(const char *w, size_t n)
{
    if (word_is(w, n, "core"))
        return 0x20;
    if (word_is(w, n, "important"))
        return 0x10;
    if (word_is(w, n, "general"))
        return 0x0f;
    check(starts(w, n, "general:") && (n == 9 || (n == 11 && w[9] == '-')));
    unsigned lo = (unsigned)(w[8] - '0'), hi = n == 11 ? (unsigned)(w[10] - '0') : lo;
    check(lo >= 1 && lo <= hi && hi <= 4);
    return ((1u << hi) - 1) & ~((1u << (lo - 1)) - 1);
}

typedef enum {
    C_GRADE,
    C_DOMAIN,
    C_CATEGORY,
    C_PERSONAL,
    C_LIBRARY,
    C_SOURCE,
    C_ROLE,
    C_PEER,
    C_LOCAL,
    C_RELAY,
    C_PURPOSE,
    C_ANY,
    C_REQUIRE
} clause_t;

/* Reads the line. It must be in the normalised form: single spaces, clauses in the fixed
 * order, each at most once, no empty list. */
static void conds_read(const view_t *v, conds_t *c)
{
    const char *s = v->line_text;
    size_t n = v->line_len;
    memset(c, 0, sizeof *c);
    c->grades = 0x3f;
    c->domains = (1u << TDSX_DOMAIN_COUNT) - 1;
    c->personal = c->library = c->source = c->local = c->roles = ALL3;
    c->relay = -1;
    if (n > 0 && s[0] == '[') {
        size_t idn = strlen(v->id);
        check(n > idn + 3 && s[idn + 1] == ']' && s[idn + 2] == ' ' &&
              memcmp(s + 1, v->id, idn) == 0);
        s += idn + 3;
        n -= idn + 3;
    }
    check(starts(s, n, "allow ") || starts(s, n, "deny "));
    c->allow = s[0] == 'a';
    size_t i = c->allow ? 6 : 5;
    int last = -1, conds = 0, any = 0;
    while (i < n) {
        size_t kn = 0;
        while (i + kn < n && s[i + kn] != ' ')
            kn++;
        check(kn > 0);
        const char *kw = s + i;
        i += kn + (i + kn < n);
        clause_t cl;
        if (word_is(kw, kn, "relay") || word_is(kw, kn, "direct")) {
            check(last < (int)C_RELAY);
            c->relay = kw[0] == 'r';
            last = C_RELAY;
            conds++;
            continue;
        }
        if (word_is(kw, kn, "any")) {
            check(last == -1);
            last = C_ANY;
            any = 1;
            continue;
        }
        size_t vs = i, vn = 0;
        while (i + vn < n && s[i + vn] != ' ')
            vn++;
        check(vn > 0);
        i += vn + (i + vn < n);
        if (word_is(kw, kn, "grade"))
            cl = C_GRADE;
        else if (word_is(kw, kn, "domain"))
            cl = C_DOMAIN;
        else if (word_is(kw, kn, "category"))
            cl = C_CATEGORY;
        else if (word_is(kw, kn, "personal"))
            cl = C_PERSONAL;
        else if (word_is(kw, kn, "library"))
            cl = C_LIBRARY;
        else if (word_is(kw, kn, "source"))
            cl = C_SOURCE;
        else if (word_is(kw, kn, "to") || word_is(kw, kn, "from") || word_is(kw, kn, "with"))
            cl = C_ROLE;
        else if (word_is(kw, kn, "peer"))
            cl = C_PEER;
        else if (word_is(kw, kn, "local"))
            cl = C_LOCAL;
        else if (word_is(kw, kn, "purpose"))
            cl = C_PURPOSE;
        else if (word_is(kw, kn, "require"))
            cl = C_REQUIRE;
        else
            check(!"unknown keyword in the normalised text");
        check((int)cl > last);
        last = (int)cl;
        conds += cl != C_REQUIRE;
        if (cl == C_ROLE) {
            c->dir = kw[0] == 't' ? TDSX_DIR_SEND : kw[0] == 'f' ? TDSX_DIR_RECEIVE : 0;
            c->role_given = 1;
        }
        unsigned mask = 0;
        for (size_t k = vs; k < vs + vn;) {
            size_t wn = 0;
            while (k + wn < vs + vn && s[k + wn] != ',')
                wn++;
            check(wn > 0);
            const char *w = s + k;
            k += wn + 1;
            words_t *list = cl == C_CATEGORY  ? &c->category
                            : cl == C_PEER    ? &c->peer
                            : cl == C_PURPOSE ? &c->purpose
                                              : NULL;
            if (list) {
                check(list->n < TDSX_POLICY_LIST_MAX);
                list->p[list->n] = w;
                list->len[list->n++] = wn;
                continue;
            }
            unsigned bit = 0;
            tdsx_domain_t d;
            switch (cl) {
            case C_GRADE: bit = grade_item(w, wn); break;
            case C_DOMAIN:
                check(tdsx_domain_parse(w, wn, &d) == 0);
                bit = 1u << (d - 1);
                break;
            case C_PERSONAL: bit = bit3(w, wn, "none", "personal", "sensitive-personal"); break;
            case C_LIBRARY: bit = bit3(w, wn, "base", "industry", "scenario"); break;
            case C_SOURCE: bit = bit3(w, wn, "public", "industry", "enterprise"); break;
            case C_ROLE:
            case C_LOCAL:
                bit = word_is(w, wn, "any") ? ALL3 : bit3(w, wn, "centre", "brain", "enterprise");
                break;
            case C_REQUIRE:
                bit = word_is(w, wn, "agreement") ? TDSX_POLICY_REQ_AGREEMENT
                      : word_is(w, wn, "purpose") ? TDSX_POLICY_REQ_PURPOSE
                      : word_is(w, wn, "seal")    ? TDSX_POLICY_REQ_SEAL
                                                  : 0;
                break;
            default: check(!"no list for this clause");
            }
            /* An unknown word (bit 0) or a value given twice is not normalised. */
            check(bit != 0 && !(mask & bit));
            mask |= bit;
        }
        switch (cl) {
        case C_GRADE: c->grades = mask; break;
        case C_DOMAIN: c->domains = mask; break;
        case C_PERSONAL: c->personal = mask; break;
        case C_LIBRARY: c->library = mask; break;
        case C_SOURCE: c->source = mask; break;
        case C_ROLE: c->roles = mask; break;
        case C_LOCAL: c->local = mask; break;
        case C_REQUIRE: c->req = mask; break;
        case C_CATEGORY:
        case C_PEER:
        case C_PURPOSE:
        case C_RELAY:
        case C_ANY:
        default: break;
        }
    }
    /* `any` stands alone, and a rule has either it or conditions. */
    check(any != (conds > 0));
    /* A deny rule has no requirements; `purpose` implies `agreement`. */
    check(c->allow || c->req == 0);
    check(!(c->req & TDSX_POLICY_REQ_PURPOSE) || (c->req & TDSX_POLICY_REQ_AGREEMENT));
}

static void view_parse(view_t *v)
{
    conds_t c;
    conds_read(v, &c);
    v->allow = c.allow;
    v->req = c.req;
}

/* Index of the rule on `line`, or -1. Lines increase with the index. */
static long rule_at(const view_t *v, size_t n, unsigned line)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].line == line)
            return (long)mid;
        if (v[mid].line < line)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Builds the views of p from its normalised text; checks ids, lines and rule_text. */
static view_t *views_of(const tdsx_policy_t *p, size_t n, unsigned text_lines)
{
    view_t *v = calloc(n ? n : 1, sizeof *v);
    check(v != NULL);
    size_t clen = 0;
    const char *canon = tdsx_policy_canonical(p, &clen);
    check(canon != NULL && strlen(canon) == clen);
    static const char header[] = "# tdsx policy v1 (normalised)\n";
    check(starts(canon, clen, header));
    const char *at = canon + sizeof header - 1;
    const char *end = canon + clen;
    /* Long enough for any rule: 64 list values of each kind at their longest. */
    size_t tsize = 32 * 1024;
    char *text = malloc(tsize);
    check(text != NULL);
    for (size_t i = 0; i < n; i++) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        check(nl != NULL);
        v[i].line_text = at;
        v[i].line_len = (size_t)(nl - at);
        at = nl + 1;
        v[i].id = tdsx_policy_rule_id(p, i);
        v[i].line = tdsx_policy_rule_line(p, i);
        check(v[i].id != NULL && strlen(v[i].id) < TDSX_POLICY_ID_MAX);
        check(v[i].line >= 1 && v[i].line <= text_lines);
        check(i == 0 || v[i].line > v[i - 1].line);
        char gen[TDSX_POLICY_ID_MAX];
        snprintf(gen, sizeof gen, "line-%u", v[i].line);
        v[i].labelled = strcmp(v[i].id, gen) != 0;
        check(v[i].labelled == (v[i].line_text[0] == '['));
        if (v[i].labelled)
            check(strncmp(v[i].id, "line-", 5) != 0 && strcmp(v[i].id, "default-deny") != 0 &&
                  strcmp(v[i].id, "invalid-input") != 0);
        for (size_t k = 0; k < i; k++)
            check(strcmp(v[k].id, v[i].id) != 0);
        view_parse(&v[i]);

        /* rule_text is "[id] " and the normalised line without its label. */
        check(tdsx_policy_rule_text(p, i, text, tsize) == 0);
        size_t idn = strlen(v[i].id);
        const char *body = v[i].line_text;
        size_t body_n = v[i].line_len;
        if (v[i].labelled) {
            body += idn + 3;
            body_n -= idn + 3;
        }
        size_t tn = strlen(text);
        check(tn == idn + 3 + body_n && text[0] == '[' && memcmp(text + 1, v[i].id, idn) == 0 &&
              memcmp(text + 1 + idn, "] ", 2) == 0 && memcmp(text + idn + 3, body, body_n) == 0);
        /* One byte short: refused, and the output is still a (empty) string. */
        memset(text, 'x', tn + 1);
        check(tdsx_policy_rule_text(p, i, text, tn) == TDSX_E_TOOBIG);
        check(memchr(text, '\0', tn) != NULL);
    }
    check(at == end); /* nothing after the last rule */
    check(tdsx_policy_rule_text(p, n, text, tsize) == TDSX_E_INVAL);
    free(text);
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Fixed transfers to decide
 * ---------------------------------------------------------------------------------------- */
static const char *const tag_texts[] = {
    "grade=core domain=production category=production.process personal=none library=base "
    "source=enterprise",
    "grade=important domain=production category=production.process.quality personal=none "
    "library=industry source=industry",
    "grade=important domain=rd category=rd.design personal=personal library=base source=public",
    "grade=general:1 domain=production category=production.process.quality personal=none "
    "library=base source=enterprise",
    "grade=general:2 domain=management category=management.customer-product "
    "personal=sensitive-personal library=scenario source=enterprise",
    "grade=general:3 domain=ops category=ops.logistics personal=personal library=industry "
    "source=public",
    "grade=general:4 domain=platform category=platform.iot.sensor personal=none library=base "
    "source=industry",
    "grade=general:2 domain=enterprise-mgmt category=enterprise-mgmt personal=none "
    "library=scenario source=public",
};
#define NTAGS (sizeof tag_texts / sizeof tag_texts[0])

typedef struct ctx_s {
    tdsx_direction_t dir;
    tdsx_policy_role_t local, peer;
    const char *peer_id;
    tdsx_agreement_state_t agreement;
    const char *purpose;
    int sealed, relay;
} ctx_t;

static const ctx_t ctxs[] = {
    {TDSX_DIR_SEND, TDSX_POLICY_ROLE_ENTERPRISE, TDSX_POLICY_ROLE_BRAIN,
     "91350100M000100Y43/brain-1", TDSX_AGREEMENT_NONE, NULL, 0, 0},
    {TDSX_DIR_SEND, TDSX_POLICY_ROLE_ENTERPRISE, TDSX_POLICY_ROLE_CENTRE,
     "91110000600037341L/centre", TDSX_AGREEMENT_VALID, "P-QUALITY", 1, 0},
    {TDSX_DIR_SEND, TDSX_POLICY_ROLE_BRAIN, TDSX_POLICY_ROLE_ENTERPRISE, "91350100M000100Y43/ent-a",
     TDSX_AGREEMENT_EXPIRED, "P-QUALITY", 1, 1},
    {TDSX_DIR_RECEIVE, TDSX_POLICY_ROLE_ENTERPRISE, TDSX_POLICY_ROLE_BRAIN,
     "91350100M000100Y43/brain-1", TDSX_AGREEMENT_VALID, "", 0, 0},
    {TDSX_DIR_RECEIVE, TDSX_POLICY_ROLE_CENTRE, TDSX_POLICY_ROLE_ENTERPRISE,
     "91110000600037341L/ent-b", TDSX_AGREEMENT_TERMINATED, "P1", 1, 0},
    {TDSX_DIR_RECEIVE, TDSX_POLICY_ROLE_BRAIN, TDSX_POLICY_ROLE_CENTRE, "91110000600037341L/centre",
     TDSX_AGREEMENT_VALID, "P1", 1, 1},
    {TDSX_DIR_SEND, TDSX_POLICY_ROLE_CENTRE, TDSX_POLICY_ROLE_NONE, NULL, TDSX_AGREEMENT_VALID,
     "P-ENERGY", 0, 0},
    {TDSX_DIR_RECEIVE, TDSX_POLICY_ROLE_NONE, TDSX_POLICY_ROLE_BRAIN, "91350100M000100Y43",
     TDSX_AGREEMENT_VALID, "P-QUALITY", 1, 0},
};
#define NCTX (sizeof ctxs / sizeof ctxs[0])

static unsigned floors_of(const tdsx_tags_t *t)
{
    unsigned f = 0;
    if (t->grade == TDSX_GRADE_CORE)
        f |= TDSX_FLOOR_CORE_STAYS_HOME;
    if (t->grade == TDSX_GRADE_IMPORTANT)
        f |= TDSX_FLOOR_IMPORTANT_AGREEMENT | TDSX_FLOOR_IMPORTANT_SEAL;
    if (t->personal != TDSX_PERSONAL_NONE)
        f |= TDSX_FLOOR_PERSONAL_PURPOSE;
    return f;
}

static unsigned floor_reqs(unsigned floors)
{
    unsigned r = 0;
    if (floors & (TDSX_FLOOR_IMPORTANT_AGREEMENT | TDSX_FLOOR_IMPORTANT_SEAL))
        r |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL;
    if (floors & TDSX_FLOOR_PERSONAL_PURPOSE)
        r |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE;
    return r;
}

static unsigned have_of(const tdsx_policy_input_t *in)
{
    int agreement = in->agreement == TDSX_AGREEMENT_VALID;
    return (agreement ? TDSX_POLICY_REQ_AGREEMENT : 0) |
           (agreement && in->purpose && in->purpose[0] ? TDSX_POLICY_REQ_PURPOSE : 0) |
           (in->sealed ? TDSX_POLICY_REQ_SEAL : 0);
}

static int single_bit(unsigned x)
{
    return x && !(x & (x - 1));
}

/* Checks one decision against the contract in policy.h; returns the matched rule's index or
 * -1 when none matched. */
static long check_decision(const view_t *v, size_t n, const tdsx_policy_input_t *in,
                           const tdsx_policy_decision_t *d, int rc)
{
    const tdsx_tags_t *t = in->tags;
    unsigned have = have_of(in);
    check(rc == d->code && (d->allow == 1) == (d->code == 0) && (d->allow == 0 || d->allow == 1));
    check(d->rule_id != NULL && d->reason != NULL && d->reason[0] != '\0');
    check(d->code == 0 || d->code == TDSX_E_POLICY_DENY || d->code == TDSX_E_AGREEMENT ||
          d->code == TDSX_E_AGREEMENT_EXPIRED || d->code == TDSX_E_AGREEMENT_TERMINATED ||
          d->code == TDSX_E_POLICY_PURPOSE || d->code == TDSX_E_POLICY_SEAL);
    check(d->floors == floors_of(t));

    /* The floors hold whatever the file says. */
    if (d->allow) {
        check(t->grade != TDSX_GRADE_CORE);
        if (t->grade == TDSX_GRADE_IMPORTANT)
            check(in->agreement == TDSX_AGREEMENT_VALID && in->sealed);
        if (t->personal != TDSX_PERSONAL_NONE)
            check(in->agreement == TDSX_AGREEMENT_VALID && in->purpose && in->purpose[0]);
    }

    if (!d->matched_id) {
        check(strcmp(d->rule_id, "default-deny") == 0 && d->code == TDSX_E_POLICY_DENY);
        check(d->line == 0 && d->matched_line == 0 && d->floor == 0);
        return -1;
    }
    long i = rule_at(v, n, d->matched_line);
    check(i >= 0);
    const view_t *r = &v[i];
    check(d->matched_id == r->id); /* lives in the policy */
    check(!r->dead);
    if (!r->allow) {
        check(d->rule_id == r->id && d->line == r->line && d->code == TDSX_E_POLICY_DENY);
        check(d->floor == 0);
        return i;
    }
    check(d->required == (r->req | floor_reqs(d->floors)));
    check(d->missing == (d->required & ~have));
    if (d->floor) {
        /* The rule's own requirements come first: a floor decides only when they hold. */
        check(single_bit(d->floor) && (d->floor & d->floors));
        check(strcmp(d->rule_id, tdsx_floor_id(d->floor)) == 0 && d->line == 0);
        check((r->req & ~have) == 0 && !d->allow);
        return i;
    }
    check(d->rule_id == r->id && d->line == r->line);
    if (d->allow) {
        check(d->missing == 0 && !r->impossible);
    } else {
        check((r->req & ~have) != 0);
        check(d->code != TDSX_E_POLICY_DENY);
    }
    return i;
}

/* a and its normalised form c decide one input alike, by the same rule; returns the index
 * of the matched rule (-1: none). */
static long decide_both(const tdsx_policy_t *a, const view_t *va, const tdsx_policy_t *c,
                        const view_t *vc, size_t n, const tdsx_policy_input_t *in)
{
    tdsx_policy_decision_t da, dc;
    int ra = tdsx_policy_eval(a, in, &da);
    int rcc = tdsx_policy_eval(c, in, &dc);
    long ia = check_decision(va, n, in, &da, ra);
    long ic = check_decision(vc, n, in, &dc, rcc);
    check(ia == ic);
    check(da.allow == dc.allow && da.code == dc.code && da.floor == dc.floor &&
          da.required == dc.required && da.missing == dc.missing);
    check(strcmp(da.reason, dc.reason) == 0);
    if (ia < 0 || da.floor || va[ia].labelled)
        check(strcmp(da.rule_id, dc.rule_id) == 0);
    return ia;
}

/* Decides every fixed transfer under a and under its normalised form c. */
static void decide(const tdsx_policy_t *a, const view_t *va, const tdsx_policy_t *c,
                   const view_t *vc, size_t n)
{
    tdsx_tags_t tags[NTAGS];
    for (size_t k = 0; k < NTAGS; k++)
        check(tdsx_tags_parse(tdsx_bytes(tag_texts[k], strlen(tag_texts[k])), &tags[k], NULL) == 0);
    for (size_t k = 0; k < NTAGS; k++) {
        for (size_t j = 0; j < NCTX; j++) {
            tdsx_policy_input_t in;
            memset(&in, 0, sizeof in);
            in.direction = ctxs[j].dir;
            in.local_role = ctxs[j].local;
            in.peer_role = ctxs[j].peer;
            in.peer_id = ctxs[j].peer_id;
            in.tags = &tags[k];
            in.agreement = ctxs[j].agreement;
            in.purpose = ctxs[j].purpose;
            in.sealed = ctxs[j].sealed;
            in.relay = ctxs[j].relay;
            decide_both(a, va, c, vc, n, &in);
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Transfers aimed at one rule: built from its conditions as policy.h defines them, so the
 * rule matches; first match wins, so the deciding match is that rule or an earlier one.
 * ---------------------------------------------------------------------------------------- */
static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* A value whose bit (value-1) is in mask; with every bit of `all` set, any value 0..count
 * (0, "unset"/"none", matches only a condition that is absent or covers all values). */
static unsigned pick(unsigned mask, unsigned all, unsigned count, int none_ok, uint32_t *rng)
{
    if (none_ok && mask == all)
        return rnd(rng) % (count + 1);
    unsigned bits = 0;
    for (unsigned m = mask; m; m &= m - 1)
        bits++;
    unsigned k = rnd(rng) % bits;
    for (unsigned v = 1;; v++)
        if ((mask & (1u << (v - 1))) && k-- == 0)
            return v;
}

typedef struct aimed_s {
    tdsx_tags_t tags;
    char peer[128];
    char purpose[40];
    tdsx_policy_input_t in;
} aimed_t;

/* Fills *x with a transfer every condition of c matches; 0 when there is none (no category
 * of the rule lies in a domain it allows). */
static int aim(const conds_t *c, uint32_t *rng, aimed_t *x)
{
    memset(x, 0, sizeof *x);
    tdsx_tags_t *t = &x->tags;
    unsigned rank = pick(c->grades, 0x3f, 6, 0, rng);
    t->grade = rank <= 4 ? TDSX_GRADE_GENERAL : rank == 5 ? TDSX_GRADE_IMPORTANT : TDSX_GRADE_CORE;
    t->level = rank <= 4 ? (uint8_t)rank : 0;
    if (c->category.n) {
        size_t fit[TDSX_POLICY_LIST_MAX], nfit = 0;
        for (size_t i = 0; i < c->category.n; i++) {
            const char *p = c->category.p[i];
            size_t len = c->category.len[i], dn = 0;
            while (dn < len && p[dn] != '.')
                dn++;
            tdsx_domain_t d;
            check(tdsx_domain_parse(p, dn, &d) == 0);
            if (c->domains & (1u << (d - 1)))
                fit[nfit++] = i;
        }
        if (nfit == 0)
            return 0;
        size_t i = fit[rnd(rng) % nfit];
        snprintf(t->category, sizeof t->category, "%.*s", (int)c->category.len[i],
                 c->category.p[i]);
    } else {
        unsigned d = pick(c->domains, (1u << TDSX_DOMAIN_COUNT) - 1, TDSX_DOMAIN_COUNT, 0, rng);
        snprintf(t->category, sizeof t->category, "%s", tdsx_domain_name((tdsx_domain_t)d));
    }
    if (rnd(rng) & 1) { /* a category prefix covers the paths below it */
        size_t len = strlen(t->category);
        if (len + 3 <= TDSX_CATEGORY_MAX) {
            memcpy(t->category + len, ".q", 3);
            if (tdsx_category_check(t->category) != 0)
                t->category[len] = '\0';
        }
    }
    const char *dot = strchr(t->category, '.');
    check(tdsx_domain_parse(t->category, dot ? (size_t)(dot - t->category) : strlen(t->category),
                            &t->domain) == 0);
    t->personal = (tdsx_personal_t)pick(c->personal, ALL3, 3, 0, rng);
    t->library = (tdsx_library_t)pick(c->library, ALL3, 3, 0, rng);
    t->source = (tdsx_source_t)pick(c->source, ALL3, 3, 0, rng);
    check(tdsx_tags_check(t) == 0);

    tdsx_policy_input_t *in = &x->in;
    in->tags = t;
    in->direction = c->dir ? (tdsx_direction_t)c->dir : (tdsx_direction_t)(1 + rnd(rng) % 2);
    in->peer_role = (tdsx_policy_role_t)pick(c->roles, ALL3, 3, 1, rng);
    in->local_role = (tdsx_policy_role_t)pick(c->local, ALL3, 3, 1, rng);
    if (c->peer.n) {
        size_t i = rnd(rng) % c->peer.n;
        /* A bare USCC names every node of the organisation: pick one of its nodes. */
        snprintf(x->peer, sizeof x->peer, "%.*s%s", (int)c->peer.len[i], c->peer.p[i],
                 c->peer.len[i] == 18 ? "/node-q" : "");
        in->peer_id = x->peer;
    } else {
        in->peer_id = (rnd(rng) & 1) ? "91350100M000100Y43/brain-1" : NULL;
    }
    in->relay = c->relay >= 0 ? c->relay : (int)(rnd(rng) & 1);
    if (c->purpose.n) {
        size_t i = rnd(rng) % c->purpose.n;
        snprintf(x->purpose, sizeof x->purpose, "%.*s", (int)c->purpose.len[i], c->purpose.p[i]);
        in->agreement = TDSX_AGREEMENT_VALID;
        in->purpose = x->purpose;
    } else {
        static const char *const purposes[] = {NULL, "", "P1", "P-QUALITY"};
        in->agreement = (tdsx_agreement_state_t)(rnd(rng) % 4);
        in->purpose = purposes[rnd(rng) % 4];
    }
    in->sealed = (int)(rnd(rng) & 1);
    return 1;
}

/* A value in 1..count whose bit is NOT in mask, or with none_ok also 0 (which matches no
 * explicit list). mask must leave a value out. */
static unsigned pick_outside(unsigned mask, unsigned count, int none_ok, uint32_t *rng)
{
    unsigned all = (1u << count) - 1;
    if (mask == all)
        return 0;
    unsigned cand[8], n = 0;
    for (unsigned v = 1; v <= count; v++)
        if (!(mask & (1u << (v - 1))))
            cand[n++] = v;
    if (none_ok)
        cand[n++] = 0;
    return cand[rnd(rng) % n];
}

static int under_any(const char *path, const words_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        size_t len = w->len[i];
        if (strncmp(path, w->p[i], len) == 0 && (path[len] == '\0' || path[len] == '.'))
            return 1;
    }
    return 0;
}

/* Turns the aimed transfer *x into one that breaks exactly one written condition of c, so
 * the rule does not match. 0 when c has no condition to break (`any`). */
static int miss(const conds_t *c, uint32_t *rng, aimed_t *x)
{
    enum {
        M_GRADE,
        M_DOMAIN,
        M_CATEGORY,
        M_TAGS3,
        M_DIR,
        M_ROLE,
        M_LOCAL,
        M_PEER,
        M_RELAY,
        M_PURPOSE
    };
    int options[10], n = 0;
    if (c->grades != 0x3f)
        options[n++] = M_GRADE;
    if (c->domains != (1u << TDSX_DOMAIN_COUNT) - 1)
        options[n++] = M_DOMAIN;
    if (c->category.n)
        options[n++] = M_CATEGORY;
    if (c->personal != ALL3 || c->library != ALL3 || c->source != ALL3)
        options[n++] = M_TAGS3;
    if (c->dir)
        options[n++] = M_DIR;
    if (c->roles != ALL3)
        options[n++] = M_ROLE;
    if (c->local != ALL3)
        options[n++] = M_LOCAL;
    if (c->peer.n)
        options[n++] = M_PEER;
    if (c->relay >= 0)
        options[n++] = M_RELAY;
    if (c->purpose.n)
        options[n++] = M_PURPOSE;
    if (n == 0)
        return 0;
    tdsx_tags_t *t = &x->tags;
    tdsx_policy_input_t *in = &x->in;
    unsigned v;
    switch (options[rnd(rng) % (unsigned)n]) {
    case M_GRADE:
        v = pick_outside(c->grades, 6, 0, rng);
        t->grade = v <= 4 ? TDSX_GRADE_GENERAL : v == 5 ? TDSX_GRADE_IMPORTANT : TDSX_GRADE_CORE;
        t->level = v <= 4 ? (uint8_t)v : 0;
        break;
    case M_DOMAIN:
        v = pick_outside(c->domains, TDSX_DOMAIN_COUNT, 0, rng);
        t->domain = (tdsx_domain_t)v;
        snprintf(t->category, sizeof t->category, "%s", tdsx_domain_name(t->domain));
        break;
    case M_CATEGORY:
        /* A sibling branch of the same domain that no listed prefix covers. */
        snprintf(t->category, sizeof t->category, "%s.zz-miss", tdsx_domain_name(t->domain));
        if (under_any(t->category, &c->category))
            return 0;
        break;
    case M_TAGS3:
        if (c->personal != ALL3)
            t->personal = (tdsx_personal_t)pick_outside(c->personal, 3, 0, rng);
        else if (c->library != ALL3)
            t->library = (tdsx_library_t)pick_outside(c->library, 3, 0, rng);
        else
            t->source = (tdsx_source_t)pick_outside(c->source, 3, 0, rng);
        break;
    case M_DIR: in->direction = c->dir == TDSX_DIR_SEND ? TDSX_DIR_RECEIVE : TDSX_DIR_SEND; break;
    case M_ROLE: in->peer_role = (tdsx_policy_role_t)pick_outside(c->roles, 3, 1, rng); break;
    case M_LOCAL: in->local_role = (tdsx_policy_role_t)pick_outside(c->local, 3, 1, rng); break;
    case M_PEER:
        /* An unknown peer never matches a peer condition; nor does another organisation. */
        in->peer_id = (rnd(rng) & 1) ? NULL : "9111000060003734ZZ/none";
        for (size_t i = 0; in->peer_id && i < c->peer.n; i++)
            if (c->peer.len[i] >= 18 && memcmp(c->peer.p[i], "9111000060003734ZZ", 18) == 0)
                return 0;
        break;
    case M_RELAY: in->relay = !c->relay; break;
    case M_PURPOSE:
        /* Only a valid agreement's purpose counts. */
        if (rnd(rng) & 1) {
            in->agreement = (tdsx_agreement_state_t)(rnd(rng) % 4);
            if (in->agreement == TDSX_AGREEMENT_VALID)
                in->agreement = TDSX_AGREEMENT_EXPIRED;
        } else {
            in->purpose = (rnd(rng) & 1) ? NULL : "zz-not-listed-purpose-code-000000";
        }
        break;
    default: return 0;
    }
    check(tdsx_tags_check(t) == 0);
    return 1;
}

static void decide_aimed(const tdsx_policy_t *a, const view_t *va, const tdsx_policy_t *c,
                         const view_t *vc, size_t n, uint32_t seed)
{
    uint32_t rng = seed;
    size_t tries = n < 64 ? n : 64;
    for (size_t k = 0; k < tries; k++) {
        size_t j = n <= 64 ? k : rnd(&rng) % n;
        conds_t cd;
        conds_read(&va[j], &cd);
        for (int rep = 0; rep < 3; rep++) {
            aimed_t x;
            if (!aim(&cd, &rng, &x)) {
                check(va[j].dead); /* lint calls it never-matching */
                break;
            }
            long m = decide_both(a, va, c, vc, n, &x.in);
            check(m >= 0 && (size_t)m <= j);
            /* A rule lint calls unreachable is always beaten by an earlier one. */
            check(!va[j].dead || (size_t)m < j);
            /* One condition broken: the rule no longer matches. */
            if (miss(&cd, &rng, &x)) {
                m = decide_both(a, va, c, vc, n, &x.in);
                check(m != (long)j);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Lint
 * ---------------------------------------------------------------------------------------- */
static int diag_same(const tdsx_diag_t *x, const tdsx_diag_t *y)
{
    return x->line == y->line && x->col == y->col && x->kind == y->kind &&
           x->severity == y->severity && x->code == y->code && strcmp(x->msg, y->msg) == 0;
}

static void lint(const tdsx_policy_t *p, view_t *v, size_t n, const tdsx_taxonomy_t *tax,
                 uint32_t seed)
{
    tdsx_diags_t d, dt;
    tdsx_diags_init(&d);
    tdsx_diags_init(&dt);
    int count = tdsx_policy_lint(p, NULL, &d);
    check(count >= 0 && (size_t)count == d.n + d.dropped);
    unsigned last = 0;
    for (size_t i = 0; i < d.n; i++) {
        const tdsx_diag_t *e = &d.v[i];
        check(e->severity == TDSX_DIAG_WARNING && e->code == TDSX_E_POLICY_DENY);
        check(memchr(e->msg, '\0', sizeof e->msg) != NULL && e->msg[0] != '\0');
        check(e->line >= last && e->col >= 1);
        last = e->line;
        if (n == 0) {
            check(e->kind == TDSX_DIAG_EMPTY && e->line == 1 && d.n == 1);
            continue;
        }
        long r = rule_at(v, n, e->line);
        check(r >= 0);
        switch (e->kind) {
        case TDSX_DIAG_UNREACHABLE:
        case TDSX_DIAG_NEVER_MATCHES: v[r].dead = 1; break;
        case TDSX_DIAG_FLOOR_IMPOSSIBLE:
            check(v[r].allow);
            v[r].impossible = 1;
            break;
        case TDSX_DIAG_FLOOR_WEAKER: check(v[r].allow); break;
        default: check(!"unexpected lint finding without a taxonomy");
        }
    }
    check(n > 0 || d.n == 1);

    /* With a taxonomy: the same findings, plus one per category the taxonomy lacks. */
    int tcount = tdsx_policy_lint(p, tax, &dt);
    check(tcount >= count && (size_t)tcount == dt.n + dt.dropped);
    if (dt.dropped == 0) {
        size_t k = 0;
        for (size_t i = 0; i < dt.n; i++) {
            const tdsx_diag_t *e = &dt.v[i];
            if (e->kind != TDSX_DIAG_TAXONOMY) {
                check(k < d.n && diag_same(e, &d.v[k]));
                k++;
            }
        }
        check(k == d.n);
        for (size_t r = 0; r < n; r++) {
            size_t want = 0, got = 0;
            conds_t cd;
            conds_read(&v[r], &cd);
            for (size_t c = 0; c < cd.category.n; c++) {
                char path[TDSX_CATEGORY_MAX + 1];
                check(cd.category.len[c] <= TDSX_CATEGORY_MAX);
                memcpy(path, cd.category.p[c], cd.category.len[c]);
                path[cd.category.len[c]] = '\0';
                check(tdsx_category_check(path) == 0);
                want += !tdsx_taxonomy_has(tax, path, NULL);
            }
            for (size_t i = 0; i < dt.n; i++)
                got += dt.v[i].kind == TDSX_DIAG_TAXONOMY && dt.v[i].line == v[r].line;
            check(got == want);
        }
    }

    /* One failed allocation anywhere in the linter is TDSX_E_NOMEM. */
    tdsx_diags_t df;
    tdsx_diags_init(&df);
    alloc_arm(0);
    check(tdsx_policy_lint(p, tax, &df) == tcount);
    unsigned long calls = alloc_calls;
    tdsx_diags_free(&df);
    if (calls > 0) {
        tdsx_diags_init(&df);
        alloc_arm(1 + seed % calls);
        check(tdsx_policy_lint(p, tax, &df) == TDSX_E_NOMEM);
        alloc_arm(0);
        tdsx_diags_free(&df);
    }
    tdsx_diags_free(&d);
    tdsx_diags_free(&dt);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------------------------- */
static unsigned count_lines(const uint8_t *p, size_t n)
{
    unsigned lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += p[i] == '\n';
    return lines;
}

static void check_parse_errors(const tdsx_diags_t *d, unsigned lines)
{
    check(d->n > 0);
    for (size_t i = 0; i < d->n; i++) {
        const tdsx_diag_t *e = &d->v[i];
        check(e->severity == TDSX_DIAG_ERROR && e->code == TDSX_E_POLICY_PARSE);
        check(e->line >= 1 && e->line <= lines && e->col >= 1);
        check(i == 0 || e->line >= d->v[i - 1].line);
        check(e->kind <= TDSX_DIAG_LIMIT);
        check(memchr(e->msg, '\0', sizeof e->msg) != NULL && e->msg[0] != '\0');
    }
}

/* Parsing with the k-th allocation failing: TDSX_E_NOMEM and *out untouched. */
static void parse_nomem(tdsx_bytes_t text, unsigned long calls, uint32_t seed)
{
    if (calls == 0)
        return;
    tdsx_policy_t *p = (tdsx_policy_t *)&calls; /* a marker: must not be written */
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    alloc_arm(1 + seed % calls);
    int rc = tdsx_policy_parse(text, &p, &d);
    alloc_arm(0);
    check(rc == TDSX_E_NOMEM && p == (tdsx_policy_t *)&calls);
    tdsx_diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tdsx_bytes_t text = tdsx_bytes(data, size);
    unsigned lines = count_lines(data, size);
    uint32_t seed = fnv1a(data, size);
    tdsx_policy_t *a = NULL, *c = NULL;
    tdsx_taxonomy_t *tax = NULL;
    view_t *va = NULL, *vc = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);

    alloc_arm(0);
    int rc = tdsx_policy_parse(text, &a, &d);
    unsigned long calls = alloc_calls;
    if (size > TDSX_POLICY_FILE_MAX) {
        check(rc == TDSX_E_TOOBIG && a == NULL);
        goto done;
    }
    check(rc == 0 || rc == TDSX_E_POLICY_PARSE);
    parse_nomem(text, calls, seed);
    if (rc) {
        check(a == NULL);
        check_parse_errors(&d, lines);
        /* Without a list to fill, the verdict is the same. */
        check(tdsx_policy_parse(text, &a, NULL) == TDSX_E_POLICY_PARSE && a == NULL);
        goto done;
    }
    check(a != NULL && d.n == 0);

    /* The hash is SHA-256 of the normalised text (SPEC §12 reports carry it). */
    size_t clen = 0;
    const char *canon = tdsx_policy_canonical(a, &clen);
    uint8_t md[32];
    unsigned int mdlen = 0;
    check(EVP_Digest(canon, clen, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32);
    check(memcmp(md, tdsx_policy_hash(a), 32) == 0);
    char hex[65];
    tdsx_policy_hash_hex(a, hex);
    for (size_t i = 0; i < 32; i++) {
        static const char digits[] = "0123456789abcdef";
        check(hex[2 * i] == digits[md[i] >> 4] && hex[2 * i + 1] == digits[md[i] & 15]);
    }
    check(hex[64] == '\0');

    /* The normalised text is a fixed point: it parses cleanly to the same text and hash. */
    check(tdsx_policy_parse(tdsx_bytes(canon, clen), &c, &d) == 0 && d.n == 0);
    size_t clen2 = 0;
    const char *canon2 = tdsx_policy_canonical(c, &clen2);
    check(clen2 == clen && memcmp(canon, canon2, clen) == 0);
    check(memcmp(tdsx_policy_hash(a), tdsx_policy_hash(c), 32) == 0);

    size_t n = tdsx_policy_rule_count(a);
    check(n <= TDSX_POLICY_RULES_MAX && tdsx_policy_rule_count(c) == n);
    va = views_of(a, n, lines);
    vc = views_of(c, n, (unsigned)n + 2);
    for (size_t i = 0; i < n; i++) {
        /* Labels survive normalisation; line-N ids follow the normalised line numbers. */
        check(vc[i].line == i + 2 && va[i].labelled == vc[i].labelled);
        check(!va[i].labelled || strcmp(va[i].id, vc[i].id) == 0);
        check(va[i].allow == vc[i].allow && va[i].req == vc[i].req);
    }

    check(tdsx_taxonomy_new_default(&tax) == 0);
    lint(a, va, n, tax, seed);
    lint(c, vc, n, tax, seed);
    decide(a, va, c, vc, n);
    decide_aimed(a, va, c, vc, n, seed);

done:
    alloc_arm(0);
    free(va);
    free(vc);
    tdsx_diags_free(&d);
    tdsx_policy_free(a);
    tdsx_policy_free(c);
    tdsx_taxonomy_free(tax);
    tdsx_allocator_set(NULL);
    return 0;
}
