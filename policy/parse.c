/* The policy language (SPEC §8): lexer and parser. Every error is reported with its line and
 * column and parsing goes on, so an operator fixes a file in one pass. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef enum { T_WORD, T_COMMA, T_LBRACK, T_RBRACK, T_OP } tok_type_t;

typedef struct tok_s {
    tok_type_t type;
    const char *p;
    size_t n;
    unsigned col;
} tok_t;

#define LINE_TOKENS_MAX 2048
/* Words are quoted in messages up to this many bytes. */
#define QUOTE_MAX 40
#define Q(t) (int)((t)->n > QUOTE_MAX ? QUOTE_MAX : (t)->n), (t)->p

typedef enum {
    KW_NONE,
    KW_ALLOW,
    KW_DENY,
    KW_ANY,
    KW_GRADE,
    KW_DOMAIN,
    KW_CATEGORY,
    KW_PERSONAL,
    KW_LIBRARY,
    KW_SOURCE,
    KW_TO,
    KW_FROM,
    KW_WITH,
    KW_DIRECTION,
    KW_PEER,
    KW_LOCAL,
    KW_RELAY,
    KW_DIRECT,
    KW_PURPOSE,
    KW_REQUIRE,
    KW_COUNT
} kw_t;

static const char *const kw_names[KW_COUNT] = {
    "",         "allow",   "deny",   "any",    "grade",   "domain", "category",
    "personal", "library", "source", "to",     "from",    "with",   "direction",
    "peer",     "local",   "relay",  "direct", "purpose", "require"};

static const char *const dir_names[3] = {"unset", "send", "receive"};
static const char *const req_names[4] = {"", "agreement", "purpose", "seal"};
const char *const tdsx__role_names[4] = {"none", "centre", "brain", "enterprise"};

typedef struct parser_s {
    tdsx_diags_t *diags;
    int errors;
    int rc; /* first fatal error (allocation); parsing stops */
    unsigned line;
    tok_t *toks;
    size_t nt;
    size_t alloc;
    size_t at;
    tdsx__rule_t *rules;
    size_t n;
    size_t rules_alloc;
    int too_many_rules;
} parser_t;

static void perr(parser_t *ps, unsigned col, tdsx_diag_kind_t kind, const char *fmt, ...)
    TDSX_PRINTF(4, 5);

static void perr(parser_t *ps, unsigned col, tdsx_diag_kind_t kind, const char *fmt, ...)
{
    ps->errors++;
    if (!ps->diags || ps->rc)
        return;
    char msg[TDSX_DIAG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int rc = tdsx__diag_add(ps->diags, ps->line, col, TDSX_DIAG_ERROR, kind, TDSX_E_POLICY_PARSE,
                            "%s", msg);
    if (rc)
        ps->rc = rc;
}

/* ------------------------------------------------------------------------------------------
 * Lexer: one line into ps->toks.
 * ---------------------------------------------------------------------------------------- */
static int word_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':' || c == '/' || c == '*';
}

static int push_tok(parser_t *ps, tok_type_t type, const uint8_t *p, size_t n, unsigned col)
{
    if (ps->nt == LINE_TOKENS_MAX) {
        perr(ps, col, TDSX_DIAG_LIMIT, "more than %d words on one line", LINE_TOKENS_MAX);
        return -1;
    }
    if (ps->nt == ps->alloc) {
        size_t na = ps->alloc ? ps->alloc * 2 : 32;
        tok_t *nv = tdsx_reallocarray(ps->toks, na, sizeof *nv);
        if (!nv) {
            ps->rc = TDSX_E_NOMEM;
            return -1;
        }
        ps->toks = nv;
        ps->alloc = na;
    }
    tok_t *t = &ps->toks[ps->nt++];
    t->type = type;
    t->p = (const char *)p;
    t->n = n;
    t->col = col;
    return 0;
}

static void lex_line(parser_t *ps, tdsx_bytes_t line)
{
    const uint8_t *p;
    ps->nt = 0;
    ps->at = 0;
    if (line.n == 0 || tdsx_bytes_peek(&line, line.n, &p) != 0)
        return;
    size_t n = line.n;
    if (p[n - 1] == '\r')
        n--;
    size_t i = 0;
    unsigned col = 1;
    while (i < n && !ps->rc) {
        uint8_t c = p[i];
        if (c == ' ' || c == '\t') {
            i++;
            col++;
            continue;
        }
        if (c == '#')
            return;
        size_t len = 1;
        tok_type_t type;
        if (word_char(c)) {
            while (i + len < n && word_char(p[i + len]))
                len++;
            type = T_WORD;
        } else if (c == ',') {
            type = T_COMMA;
        } else if (c == '[') {
            type = T_LBRACK;
        } else if (c == ']') {
            type = T_RBRACK;
        } else if (c == '>' || c == '<' || c == '=') {
            if (c != '=' && i + 1 < n && p[i + 1] == '=')
                len = 2;
            type = T_OP;
        } else {
            if (c >= 0x80) {
                while (i + len < n && (p[i + len] & 0xc0) == 0x80)
                    len++;
                if (len == 3 && memcmp(p + i, "\xef\xbc\x8c", 3) == 0)
                    perr(ps, col, TDSX_DIAG_SYNTAX,
                         "full-width comma '，': separate list items with an ASCII ','");
                else if (tdsx__utf8_valid(p + i, len))
                    perr(ps, col, TDSX_DIAG_SYNTAX,
                         "unexpected character '%.*s' (only comments may hold non-ASCII text)",
                         (int)len, (const char *)p + i);
                else
                    perr(ps, col, TDSX_DIAG_SYNTAX, "invalid UTF-8 byte 0x%02x", c);
            } else {
                perr(ps, col, TDSX_DIAG_SYNTAX, "unexpected character 0x%02x%s%c%s", c,
                     c > ' ' && c < 0x7f ? " '" : "", c > ' ' && c < 0x7f ? c : ' ',
                     c > ' ' && c < 0x7f ? "'" : "");
            }
            i += len;
            col++;
            continue;
        }
        if (push_tok(ps, type, p + i, len, col) != 0)
            return;
        i += len;
        col += (unsigned)len;
    }
}

/* ------------------------------------------------------------------------------------------
 * Token helpers
 * ---------------------------------------------------------------------------------------- */
static const tok_t *peek(const parser_t *ps)
{
    return ps->at < ps->nt ? &ps->toks[ps->at] : NULL;
}

static int tok_is(const tok_t *t, const char *word)
{
    return t && t->type == T_WORD && strlen(word) == t->n && memcmp(t->p, word, t->n) == 0;
}

static kw_t keyword(const tok_t *t)
{
    if (!t || t->type != T_WORD)
        return KW_NONE;
    return (kw_t)tdsx__name_find(kw_names, KW_COUNT, t->p, t->n);
}

static int starts_clause(const tok_t *t)
{
    kw_t k = keyword(t);
    return k >= KW_ANY && k <= KW_REQUIRE;
}

/* Column just after the last token of the line, for "expected ..." at the end. */
static unsigned end_col(const parser_t *ps)
{
    if (ps->nt == 0)
        return 1;
    const tok_t *t = &ps->toks[ps->nt - 1];
    return t->col + (unsigned)t->n;
}

/* Skips to the next word that starts a condition or `require`, after an error. */
static void recover(parser_t *ps)
{
    while (ps->at < ps->nt && !starts_clause(&ps->toks[ps->at]))
        ps->at++;
}

/* Reports what stands where a value was expected. */
static void expected(parser_t *ps, const char *what)
{
    const tok_t *t = peek(ps);
    if (!t)
        perr(ps, end_col(ps), TDSX_DIAG_SYNTAX, "expected %s at the end of the line", what);
    else if (t->type == T_WORD)
        perr(ps, t->col, TDSX_DIAG_SYNTAX, "expected %s, found '%.*s'", what, Q(t));
    else
        perr(ps, t->col, TDSX_DIAG_SYNTAX, "expected %s, found '%.*s'", what, (int)t->n, t->p);
}

/* After one list item: 1 when a comma follows (and is consumed), 0 at the list's end, -1 on
 * a dangling comma. */
static int list_next(parser_t *ps, const char *what)
{
    const tok_t *t = peek(ps);
    if (!t || t->type != T_COMMA)
        return 0;
    ps->at++;
    const tok_t *v = peek(ps);
    /* The item parser decides whether a keyword is also a value (`any`, `purpose`). */
    if (!v || v->type == T_COMMA || v->type == T_LBRACK || v->type == T_RBRACK) {
        expected(ps, what);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Conditions
 * ---------------------------------------------------------------------------------------- */
static int digit_level(const char *s, size_t n)
{
    return n == 1 && s[0] >= '1' && s[0] <= '4' ? s[0] - '0' : 0;
}

/* Mask of ranks lo..hi (1..6). */
static unsigned rank_range(int lo, int hi)
{
    unsigned m = 0;
    for (int r = lo; r <= hi; r++)
        if (r >= 1 && r <= 6)
            m |= 1u << (r - 1);
    return m;
}

/* Rank of a grade word with its level (core, important, general:N); 0 otherwise. */
static int word_rank(const tok_t *t)
{
    if (tok_is(t, "core"))
        return 6;
    if (tok_is(t, "important"))
        return 5;
    if (t->n == 9 && memcmp(t->p, "general:", 8) == 0)
        return digit_level(t->p + 8, 1);
    return 0;
}

static unsigned apply_op(const tok_t *op, int rank, int lo, int hi)
{
    if (op->n == 2 && op->p[0] == '>')
        return rank_range(rank, hi);
    if (op->n == 2 && op->p[0] == '<')
        return rank_range(lo, rank);
    if (op->n == 1 && op->p[0] == '>')
        return rank_range(rank + 1, hi);
    if (op->n == 1 && op->p[0] == '<')
        return rank_range(lo, rank - 1);
    return 0; /* '=' */
}

/* One grade item; returns its rank mask, 0 after reporting an error. */
static unsigned grade_item(parser_t *ps)
{
    const tok_t *t = peek(ps);
    if (!t) {
        expected(ps, "a grade (core, important, general, general:N or a comparison)");
        return 0;
    }
    if (t->type == T_OP) {
        ps->at++;
        const tok_t *g = peek(ps);
        if (t->n == 1 && t->p[0] == '=') {
            perr(ps, t->col, TDSX_DIAG_SYNTAX, "unexpected '=' (write >=, <=, > or <)");
            return 0;
        }
        int r = g && g->type == T_WORD ? word_rank(g) : 0;
        if (!r) {
            if (tok_is(g, "general"))
                perr(ps, g->col, TDSX_DIAG_BAD_VALUE,
                     "compare with a level: '%.*sgeneral:N', N = 1 to 4", (int)t->n, t->p);
            else
                expected(ps, "core, important or general:N after the comparison");
            return 0;
        }
        ps->at++;
        unsigned m = apply_op(t, r, 1, 6);
        if (!m)
            perr(ps, t->col, TDSX_DIAG_BAD_VALUE, "'%.*s%.*s' matches no grade", (int)t->n, t->p,
                 Q(g));
        return m;
    }
    if (t->type != T_WORD || starts_clause(t)) {
        expected(ps, "a grade (core, important, general, general:N or a comparison)");
        return 0;
    }
    ps->at++;
    if (tok_is(t, "core"))
        return TDSX__GRADE_CORE;
    if (tok_is(t, "important"))
        return TDSX__GRADE_IMPORTANT;
    if (tok_is(t, "general")) {
        const tok_t *op = peek(ps);
        if (!op || op->type != T_OP)
            return TDSX__GRADE_GENERAL;
        ps->at++;
        const tok_t *v = peek(ps);
        int lvl = v && v->type == T_WORD ? digit_level(v->p, v->n) : 0;
        if (op->n == 1 && op->p[0] == '=') {
            perr(ps, op->col, TDSX_DIAG_SYNTAX,
                 "unexpected '=' (write general:N, general>=N or general<=N)");
            return 0;
        }
        if (!lvl) {
            if (v && v->type == T_WORD)
                perr(ps, v->col, TDSX_DIAG_BAD_VALUE, "general level '%.*s' is not 1 to 4", Q(v));
            else
                expected(ps, "a general level 1 to 4");
            return 0;
        }
        ps->at++;
        unsigned m = apply_op(op, lvl, 1, 4);
        if (!m)
            perr(ps, op->col, TDSX_DIAG_BAD_VALUE, "'general%.*s%d' matches no level", (int)op->n,
                 op->p, lvl);
        return m;
    }
    if (t->n >= 8 && memcmp(t->p, "general:", 8) == 0) {
        const char *s = t->p + 8;
        size_t n = t->n - 8;
        int lo = 0, hi = 0;
        if (n == 1) {
            lo = hi = digit_level(s, 1);
        } else if (n == 3 && s[1] == '-') {
            lo = digit_level(s, 1);
            hi = digit_level(s + 2, 1);
        }
        if (!lo || !hi || lo > hi) {
            perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
                 "bad general level '%.*s' (general:N or general:N-M, 1 <= N <= M <= 4)", Q(t));
            return 0;
        }
        return rank_range(lo, hi);
    }
    perr(ps, t->col, TDSX_DIAG_UNKNOWN_WORD,
         "unknown grade '%.*s' (expected core, important, general, general:N or a comparison)",
         Q(t));
    return 0;
}

static int parse_grade(parser_t *ps, unsigned *mask)
{
    unsigned m = 0;
    for (;;) {
        unsigned item = grade_item(ps);
        if (!item)
            return -1;
        m |= item;
        int more = list_next(ps, "a grade");
        if (more < 0)
            return -1;
        if (!more)
            break;
    }
    *mask = m;
    return 0;
}

/* A list of names from a table (bit = index - 1). `any_ok`: the word `any` means all. */
static int parse_names(parser_t *ps, const char *const *names, size_t count, const char *what,
                       const char *choices, int any_ok, unsigned *mask)
{
    unsigned m = 0;
    size_t items = 0;
    for (;;) {
        const tok_t *t = peek(ps);
        int any = any_ok && tok_is(t, "any");
        if (!t || t->type != T_WORD ||
            (starts_clause(t) && !any && !tdsx__name_find(names, count, t->p, t->n))) {
            char buf[120];
            snprintf(buf, sizeof buf, "%s (%s)", what, choices);
            expected(ps, buf);
            return -1;
        }
        int i = any ? 0 : tdsx__name_find(names, count, t->p, t->n);
        if (!any && !i) {
            perr(ps, t->col, TDSX_DIAG_UNKNOWN_WORD, "unknown %s '%.*s' (expected %s)", what, Q(t),
                 choices);
            return -1;
        }
        if (++items > TDSX_POLICY_LIST_MAX) {
            perr(ps, t->col, TDSX_DIAG_LIMIT, "more than %d values in one list",
                 TDSX_POLICY_LIST_MAX);
            return -1;
        }
        m |= any ? (1u << (count - 1)) - 1 : tdsx__bit((unsigned)i);
        ps->at++;
        int more = list_next(ps, what);
        if (more < 0)
            return -1;
        if (!more)
            break;
    }
    *mask = m;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * String lists (category, peer, purpose)
 * ---------------------------------------------------------------------------------------- */
typedef struct item_s {
    const char *p;
    size_t n;
} item_t;

static int uscc_char(char c)
{
    return c && strchr("0123456789ABCDEFGHJKLMNPQRTUWXY", c) != NULL;
}

/* "<USCC>/<node-name>" or a bare "<USCC>": the shape only; the registry says who exists. */
static int peer_ok(const char *s, size_t n)
{
    if (n < 18 || n == 19 || n > 18 + 1 + 64 || (n > 18 && s[18] != '/'))
        return 0;
    for (size_t i = 0; i < 18; i++)
        if (!uscc_char(s[i]))
            return 0;
    for (size_t i = 19; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int purpose_ok(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int item_cmp(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* a lies below b (or equals it), on a segment boundary of `sep`. */
static int item_under(const item_t *a, const item_t *b, char sep)
{
    return a->n >= b->n && memcmp(a->p, b->p, b->n) == 0 && (a->n == b->n || a->p[b->n] == sep);
}

/* b is a bare USCC and a names a node of that organisation. */
static int peer_covered(const item_t *a, const item_t *b)
{
    return b->n == 18 && a->n > 19 && memcmp(a->p, b->p, 18) == 0 && a->p[18] == '/';
}

typedef enum { L_CATEGORY, L_PEER, L_PURPOSE } list_kind_t;

/* Sorts, removes duplicates and items another item covers, and copies into *out. */
static int store_list(parser_t *ps, item_t *items, size_t n, list_kind_t kind, tdsx__strlist_t *out)
{
    qsort(items, n, sizeof *items, item_cmp);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = 0;
        for (size_t k = 0; k < n && !drop; k++) {
            if (k == i)
                continue;
            if (item_cmp(&items[i], &items[k]) == 0)
                drop = k < i;
            else if (kind == L_CATEGORY)
                drop = item_under(&items[i], &items[k], '.');
            else if (kind == L_PEER)
                drop = peer_covered(&items[i], &items[k]);
        }
        if (!drop)
            items[w++] = items[i];
    }
    out->v = tdsx_calloc(w, sizeof *out->v);
    if (!out->v) {
        ps->rc = TDSX_E_NOMEM;
        return -1;
    }
    for (size_t i = 0; i < w; i++) {
        out->v[i] = tdsx_strndup(items[i].p, items[i].n);
        if (!out->v[i]) {
            ps->rc = TDSX_E_NOMEM;
            return -1;
        }
        out->n = i + 1;
    }
    return 0;
}

static int parse_strings(parser_t *ps, list_kind_t kind, tdsx__strlist_t *out)
{
    static const char *const what[] = {"a category", "a peer id", "a purpose code"};
    item_t items[TDSX_POLICY_LIST_MAX];
    size_t n = 0;
    for (;;) {
        const tok_t *t = peek(ps);
        if (!t || t->type != T_WORD || starts_clause(t)) {
            expected(ps, what[kind]);
            return -1;
        }
        tdsx_domain_t d;
        switch (kind) {
        case L_CATEGORY:
            if (tdsx__category_check_n(t->p, t->n, &d) != 0) {
                size_t first = 0;
                while (first < t->n && t->p[first] != '.')
                    first++;
                if (!tdsx__name_find(tdsx__domain_names, TDSX_DOMAIN_COUNT + 1, t->p, first))
                    perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
                         "category '%.*s' does not start with a domain (rd, production, ops, "
                         "management, external, platform, enterprise-mgmt)",
                         Q(t));
                else
                    perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
                         "malformed category '%.*s' (segments of a-z 0-9 '-' joined by '.')", Q(t));
                return -1;
            }
            break;
        case L_PEER:
            if (!peer_ok(t->p, t->n)) {
                perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
                     "bad peer id '%.*s' (expected <USCC>/<node-name> or <USCC>)", Q(t));
                return -1;
            }
            break;
        case L_PURPOSE:
            if (!purpose_ok(t->p, t->n)) {
                perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
                     "bad purpose code '%.*s' (1 to 32 of A-Z a-z 0-9 . _ -)", Q(t));
                return -1;
            }
            break;
        default: return -1;
        }
        if (n == TDSX_POLICY_LIST_MAX) {
            perr(ps, t->col, TDSX_DIAG_LIMIT, "more than %d values in one list",
                 TDSX_POLICY_LIST_MAX);
            return -1;
        }
        items[n].p = t->p;
        items[n].n = t->n;
        n++;
        ps->at++;
        int more = list_next(ps, what[kind]);
        if (more < 0)
            return -1;
        if (!more)
            break;
    }
    return store_list(ps, items, n, kind, out);
}

/* ------------------------------------------------------------------------------------------
 * Rules
 * ---------------------------------------------------------------------------------------- */
void tdsx__rule_clear(tdsx__rule_t *r)
{
    tdsx__strlist_t *lists[3] = {&r->category, &r->peer, &r->purpose};
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < lists[k]->n; i++)
            tdsx_free(lists[k]->v[i]);
        tdsx_free(lists[k]->v);
        lists[k]->v = NULL;
        lists[k]->n = 0;
    }
}

static void rule_init(tdsx__rule_t *r, unsigned line)
{
    memset(r, 0, sizeof *r);
    r->line = line;
    r->grade = TDSX__GRADE_ALL;
    r->domain = TDSX__DOMAIN_ALL;
    r->personal = r->library = r->source = r->role = r->local = TDSX__TRI_ALL;
    r->dir = TDSX__DIR_ALL;
    r->relay = TDSX__RELAY_ALL;
    snprintf(r->id, sizeof r->id, "line-%u", line);
}

static int label_ok(const tok_t *t)
{
    if (t->n == 0 || t->n >= TDSX_POLICY_ID_MAX)
        return 0;
    char c0 = t->p[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || (c0 >= '0' && c0 <= '9')))
        return 0;
    for (size_t i = 0; i < t->n; i++) {
        char c = t->p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int reserved_label(const tok_t *t)
{
    return (t->n >= 5 && memcmp(t->p, "line-", 5) == 0) || tok_is(t, "default-deny") ||
           tok_is(t, "invalid-input");
}

/* `[label]` at the start of the line; 0 ok or absent, -1 reported. */
static int parse_label(parser_t *ps, tdsx__rule_t *r)
{
    const tok_t *lb = peek(ps);
    if (!lb || lb->type != T_LBRACK)
        return 0;
    r->col = lb->col;
    ps->at++;
    const tok_t *t = peek(ps);
    const tok_t *rb = ps->at + 1 < ps->nt ? &ps->toks[ps->at + 1] : NULL;
    if (!t || t->type != T_WORD || !rb || rb->type != T_RBRACK) {
        perr(ps, lb->col, TDSX_DIAG_SYNTAX, "malformed label: write [name] before allow or deny");
        while (ps->at < ps->nt && ps->toks[ps->at].type != T_RBRACK &&
               keyword(&ps->toks[ps->at]) != KW_ALLOW && keyword(&ps->toks[ps->at]) != KW_DENY)
            ps->at++;
        if (ps->at < ps->nt && ps->toks[ps->at].type == T_RBRACK)
            ps->at++;
        return -1;
    }
    ps->at += 2;
    if (!label_ok(t)) {
        perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
             "bad label '%.*s' (1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
             Q(t));
        return -1;
    }
    if (reserved_label(t)) {
        perr(ps, t->col, TDSX_DIAG_BAD_VALUE,
             "label '%.*s' is reserved (line-N, default-deny and invalid-input are generated)",
             Q(t));
        return -1;
    }
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->rules[i].labelled && tok_is(t, ps->rules[i].id)) {
            perr(ps, t->col, TDSX_DIAG_DUPLICATE, "label '%.*s' already used on line %u", Q(t),
                 ps->rules[i].line);
            return -1;
        }
    }
    memcpy(r->id, t->p, t->n);
    r->id[t->n] = '\0';
    r->labelled = 1;
    return 0;
}

static const char role_choices[] = "centre, brain, enterprise or any";

/* Marks condition c as given at col; reports a repeat. */
static int given(parser_t *ps, tdsx__rule_t *r, tdsx__cond_t c, const tok_t *kw, const char *what)
{
    if (r->cond_col[c]) {
        perr(ps, kw->col, TDSX_DIAG_DUPLICATE, "%s already given at column %u", what,
             r->cond_col[c]);
        return -1;
    }
    r->cond_col[c] = kw->col;
    return 0;
}

/* One condition starting at keyword kw (already consumed). -1 after an error. */
static int parse_cond(parser_t *ps, tdsx__rule_t *r, kw_t k, const tok_t *kw)
{
    unsigned m = 0;
    switch (k) {
    case KW_GRADE:
        if (given(ps, r, TDSX__C_GRADE, kw, "grade") || parse_grade(ps, &r->grade))
            return -1;
        return 0;
    case KW_DOMAIN:
        if (given(ps, r, TDSX__C_DOMAIN, kw, "domain") ||
            parse_names(ps, tdsx__domain_names, TDSX_DOMAIN_COUNT + 1, "domain",
                        "rd, production, ops, management, external, platform, "
                        "enterprise-mgmt",
                        0, &r->domain))
            return -1;
        return 0;
    case KW_CATEGORY:
        if (given(ps, r, TDSX__C_CATEGORY, kw, "category"))
            return -1;
        return parse_strings(ps, L_CATEGORY, &r->category);
    case KW_PERSONAL:
        if (given(ps, r, TDSX__C_PERSONAL, kw, "personal") ||
            parse_names(ps, tdsx__personal_names, 4, "personal",
                        "none, personal, sensitive-personal", 0, &r->personal))
            return -1;
        return 0;
    case KW_LIBRARY:
        if (given(ps, r, TDSX__C_LIBRARY, kw, "library") ||
            parse_names(ps, tdsx__library_names, 4, "library", "base, industry, scenario", 0,
                        &r->library))
            return -1;
        return 0;
    case KW_SOURCE:
        if (given(ps, r, TDSX__C_SOURCE, kw, "source") ||
            parse_names(ps, tdsx__source_names, 4, "source", "public, industry, enterprise", 0,
                        &r->source))
            return -1;
        return 0;
    case KW_TO:
    case KW_FROM:
        if (given(ps, r, TDSX__C_DIRECTION, kw, "the direction") ||
            given(ps, r, TDSX__C_ROLE, kw, "the counterpart role") ||
            parse_names(ps, tdsx__role_names, 4, "role", role_choices, 1, &r->role))
            return -1;
        r->dir = tdsx__bit(k == KW_TO ? TDSX_DIR_SEND : TDSX_DIR_RECEIVE);
        return 0;
    case KW_WITH:
        if (given(ps, r, TDSX__C_ROLE, kw, "the counterpart role") ||
            parse_names(ps, tdsx__role_names, 4, "role", role_choices, 1, &r->role))
            return -1;
        return 0;
    case KW_DIRECTION:
        if (given(ps, r, TDSX__C_DIRECTION, kw, "the direction") ||
            parse_names(ps, dir_names, 3, "direction", "send or receive", 0, &m))
            return -1;
        r->dir = m;
        return 0;
    case KW_PEER:
        if (given(ps, r, TDSX__C_PEER, kw, "peer"))
            return -1;
        return parse_strings(ps, L_PEER, &r->peer);
    case KW_LOCAL:
        if (given(ps, r, TDSX__C_LOCAL, kw, "local") ||
            parse_names(ps, tdsx__role_names, 4, "role", role_choices, 1, &r->local))
            return -1;
        return 0;
    case KW_RELAY:
    case KW_DIRECT:
        if (given(ps, r, TDSX__C_RELAY, kw, "relay or direct"))
            return -1;
        r->relay = k == KW_RELAY ? TDSX__RELAY_YES : TDSX__RELAY_NO;
        return 0;
    case KW_PURPOSE:
        if (given(ps, r, TDSX__C_PURPOSE, kw, "purpose"))
            return -1;
        return parse_strings(ps, L_PURPOSE, &r->purpose);
    default: return -1;
    }
}

/* A word that would have been a value of the list just before it: a missing comma. */
static int list_value(kw_t prev, const tok_t *t)
{
    switch (prev) {
    case KW_DOMAIN: return tdsx__name_find(tdsx__domain_names, TDSX_DOMAIN_COUNT + 1, t->p, t->n);
    case KW_PERSONAL: return tdsx__name_find(tdsx__personal_names, 4, t->p, t->n);
    case KW_LIBRARY: return tdsx__name_find(tdsx__library_names, 4, t->p, t->n);
    case KW_SOURCE: return tdsx__name_find(tdsx__source_names, 4, t->p, t->n);
    case KW_TO:
    case KW_FROM:
    case KW_WITH:
    case KW_LOCAL: return tdsx__name_find(tdsx__role_names, 4, t->p, t->n);
    case KW_GRADE: return word_rank(t) || tok_is(t, "general");
    case KW_REQUIRE: return tdsx__name_find(req_names, 4, t->p, t->n);
    case KW_CATEGORY: return tdsx__category_check_n(t->p, t->n, NULL) == 0;
    default: return 0;
    }
}

static void parse_require(parser_t *ps, tdsx__rule_t *r, const tok_t *kw, int *bad)
{
    if (r->req_col) {
        perr(ps, kw->col, TDSX_DIAG_DUPLICATE, "require already given at column %u", r->req_col);
        *bad = 1;
        recover(ps);
        return;
    }
    r->req_col = kw->col;
    unsigned m = 0;
    if (parse_names(ps, req_names, 4, "requirement", "agreement, seal, purpose", 0, &m)) {
        *bad = 1;
        recover(ps);
        return;
    }
    /* bit 0 agreement, bit 1 purpose, bit 2 seal: the TDSX_POLICY_REQ_* values. */
    r->req = m;
    if (r->req & TDSX_POLICY_REQ_PURPOSE)
        r->req |= TDSX_POLICY_REQ_AGREEMENT;
}

static int push_rule(parser_t *ps, tdsx__rule_t *r)
{
    if (ps->n == TDSX_POLICY_RULES_MAX) {
        if (!ps->too_many_rules++)
            perr(ps, r->col, TDSX_DIAG_LIMIT, "more than %d rules", TDSX_POLICY_RULES_MAX);
        return -1;
    }
    if (ps->n == ps->rules_alloc) {
        size_t na = ps->rules_alloc ? ps->rules_alloc * 2 : 16;
        tdsx__rule_t *nv = tdsx_reallocarray(ps->rules, na, sizeof *nv);
        if (!nv) {
            ps->rc = TDSX_E_NOMEM;
            return -1;
        }
        ps->rules = nv;
        ps->rules_alloc = na;
    }
    ps->rules[ps->n++] = *r;
    return 0;
}

static void parse_rule(parser_t *ps)
{
    tdsx__rule_t r;
    rule_init(&r, ps->line);
    int bad = 0;
    if (parse_label(ps, &r) != 0)
        bad = 1;
    const tok_t *t = peek(ps);
    kw_t k = keyword(t);
    if (!r.col && t)
        r.col = t->col;
    if (k == KW_ALLOW || k == KW_DENY) {
        r.allow = k == KW_ALLOW;
        ps->at++;
    } else {
        bad = 1;
        if (!t)
            perr(ps, end_col(ps), TDSX_DIAG_SYNTAX, "expected allow or deny after the label");
        else if (starts_clause(t))
            perr(ps, t->col, TDSX_DIAG_SYNTAX, "a rule starts with allow or deny, not '%.*s'",
                 Q(t));
        else if (t->type == T_WORD)
            perr(ps, t->col, TDSX_DIAG_UNKNOWN_WORD,
                 "unknown word '%.*s': a rule starts with allow or deny", Q(t));
        else
            perr(ps, t->col, TDSX_DIAG_SYNTAX,
                 "unexpected '%.*s': a rule starts with allow or deny", (int)t->n, t->p);
        if (!starts_clause(t))
            ps->at = ps->nt;
    }
    kw_t prev = KW_NONE;
    unsigned any_col = 0;
    int conds = 0;
    while (ps->at < ps->nt && !ps->rc) {
        t = peek(ps);
        k = keyword(t);
        if (r.req_col && k != KW_NONE) {
            if (prev == KW_REQUIRE && list_value(KW_REQUIRE, t))
                perr(ps, t->col, TDSX_DIAG_SYNTAX, "missing ',' before '%.*s'", Q(t));
            else
                perr(ps, t->col, TDSX_DIAG_SYNTAX, "'%.*s' after require: requirements come last",
                     Q(t));
            bad = 1;
            ps->at++;
            recover(ps);
            continue;
        }
        if (k == KW_REQUIRE) {
            ps->at++;
            parse_require(ps, &r, t, &bad);
            prev = k;
            continue;
        }
        if (k == KW_ANY) {
            ps->at++;
            if (any_col) {
                perr(ps, t->col, TDSX_DIAG_DUPLICATE, "'any' already given at column %u", any_col);
                bad = 1;
            }
            any_col = t->col;
            prev = k;
            continue;
        }
        if (k >= KW_GRADE && k <= KW_PURPOSE) {
            ps->at++;
            if (parse_cond(ps, &r, k, t) != 0) {
                bad = 1;
                recover(ps);
            }
            conds++;
            prev = k;
            continue;
        }
        bad = 1;
        if (k == KW_ALLOW || k == KW_DENY)
            perr(ps, t->col, TDSX_DIAG_SYNTAX, "'%.*s' again: one rule per line", Q(t));
        else if (t->type == T_WORD && list_value(prev, t))
            perr(ps, t->col, TDSX_DIAG_SYNTAX, "missing ',' before '%.*s'", Q(t));
        else if (t->type == T_WORD)
            perr(ps, t->col, TDSX_DIAG_UNKNOWN_WORD, "unknown word '%.*s'", Q(t));
        else
            perr(ps, t->col, TDSX_DIAG_SYNTAX, "unexpected '%.*s'", (int)t->n, t->p);
        ps->at++;
        recover(ps);
    }
    if (!bad && any_col && conds) {
        perr(ps, any_col, TDSX_DIAG_SYNTAX, "'any' cannot be combined with other conditions");
        bad = 1;
    }
    if (!bad && !any_col && !conds) {
        perr(ps, r.req_col ? r.req_col : end_col(ps), TDSX_DIAG_SYNTAX,
             "rule has no conditions: write 'any' to match every transfer");
        bad = 1;
    }
    if (!bad && !r.allow && r.req_col) {
        perr(ps, r.req_col, TDSX_DIAG_SYNTAX,
             "a deny rule cannot have requirements (require belongs to allow rules)");
        bad = 1;
    }
    if (bad || ps->rc || push_rule(ps, &r) != 0)
        tdsx__rule_clear(&r);
}

static void parser_free(parser_t *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        tdsx__rule_clear(&ps->rules[i]);
    tdsx_free(ps->rules);
    tdsx_free(ps->toks);
}

int tdsx_policy_parse(tdsx_bytes_t text, tdsx_policy_t **out, tdsx_diags_t *diags)
{
    parser_t ps;
    memset(&ps, 0, sizeof ps);
    ps.diags = diags;
    tdsx_policy_t *p = NULL;
    int rc = 0;
    if (text.n > TDSX_POLICY_FILE_MAX) {
        rc = TDSX_E_TOOBIG;
        goto fail;
    }
    tdsx_bytes_t c = text;
    while (c.n > 0 && !ps.rc) {
        const uint8_t *b;
        if (tdsx_bytes_peek(&c, c.n, &b) != 0) {
            rc = TDSX_E_INTERNAL;
            goto fail;
        }
        const uint8_t *nl = memchr(b, '\n', c.n);
        size_t len = nl ? (size_t)(nl - b) : c.n;
        tdsx_bytes_t line;
        if (tdsx_bytes_take(&c, len, &line) != 0 || (nl && tdsx_bytes_skip(&c, 1) != 0)) {
            rc = TDSX_E_INTERNAL;
            goto fail;
        }
        ps.line++;
        lex_line(&ps, line);
        if (ps.nt > 0 && !ps.rc)
            parse_rule(&ps);
    }
    if (ps.rc) {
        rc = ps.rc;
        goto fail;
    }
    if (ps.errors) {
        rc = TDSX_E_POLICY_PARSE;
        goto fail;
    }
    p = tdsx_calloc(1, sizeof *p);
    if (!p) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    p->rules = ps.rules;
    p->n = ps.n;
    ps.rules = NULL;
    ps.n = 0;
    rc = tdsx__policy_finish(p);
    if (rc)
        goto fail;
    parser_free(&ps);
    *out = p;
    return 0;
fail:
    tdsx_policy_free(p);
    parser_free(&ps);
    return rc;
}

int tdsx_policy_load(const char *path, tdsx_policy_t **out, tdsx_diags_t *diags)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, TDSX_POLICY_FILE_MAX, &buf, &len);
    if (rc)
        return rc;
    rc = tdsx_policy_parse(tdsx_bytes(buf, len), out, diags);
    tdsx_free(buf);
    return rc;
}

void tdsx_policy_free(tdsx_policy_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        tdsx__rule_clear(&p->rules[i]);
    tdsx_free(p->rules);
    tdsx_free(p->canonical);
    tdsx_free(p);
}

size_t tdsx_policy_rule_count(const tdsx_policy_t *p)
{
    return p->n;
}

const char *tdsx_policy_rule_id(const tdsx_policy_t *p, size_t i)
{
    return p->rules[i].id;
}

unsigned tdsx_policy_rule_line(const tdsx_policy_t *p, size_t i)
{
    return p->rules[i].line;
}

const char *tdsx_policy_role_name(tdsx_policy_role_t r)
{
    return (unsigned)r < 4 ? tdsx__role_names[r] : tdsx__role_names[0];
}

int tdsx_policy_role_parse(const char *s, tdsx_policy_role_t *out)
{
    int i = s ? tdsx__name_find(tdsx__role_names, 4, s, strlen(s)) : 0;
    if (!i)
        return TDSX_E_INVAL;
    *out = (tdsx_policy_role_t)i;
    return 0;
}
