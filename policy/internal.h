/*
 * internal.h — what the policy/ source files share and nothing outside policy/ may use.
 */
#ifndef TDSX_POLICY_INTERNAL_H
#define TDSX_POLICY_INTERNAL_H

#include "policy.h"

/* Name tables indexed by enum value (index 0 is "unset"). */
extern const char *const tdsx__grade_names[4];
extern const char *const tdsx__domain_names[TDSX_DOMAIN_COUNT + 1];
extern const char *const tdsx__personal_names[4];
extern const char *const tdsx__library_names[4];
extern const char *const tdsx__source_names[4];
extern const char *const tdsx__role_names[4];

/* Index i in 1..count-1 with names[i] equal to the n bytes at s, else 0. */
int tdsx__name_find(const char *const *names, size_t count, const char *s, size_t n);

/* 0 when the n bytes at s form a category path (see policy.h) whose first segment is a
 * domain; the domain goes to *domain (may be NULL). TDSX_E_TAGS otherwise. */
TDSX_MUST_CHECK int tdsx__category_check_n(const char *s, size_t n, tdsx_domain_t *domain);
/* 1 when path equals prefix or lies below it (segment boundary). */
int tdsx__path_under(const char *path, const char *prefix);

/* Number of UTF-8 characters in the n bytes at p (continuation bytes not counted). */
unsigned tdsx__utf8_cols(const uint8_t *p, size_t n);
/* 1 when the n bytes at p are well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int tdsx__utf8_valid(const uint8_t *p, size_t n);

/* Appends one diagnostic (d may be NULL: nothing is kept). Past TDSX_DIAGS_MAX the entry is
 * counted as dropped. 0 or TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__diag_add(tdsx_diags_t *d, unsigned line, unsigned col,
                                   tdsx_diag_severity_t sev, tdsx_diag_kind_t kind, int code,
                                   const char *fmt, ...) TDSX_PRINTF(7, 8);

/* Bit masks of the enumerated conditions. A condition that was not written is the full mask,
 * so "absent" and "every value" mean the same thing everywhere (matching, lint, canonical). */
#define TDSX__GRADE_ALL 0x3fu /* bit rank-1: general:1..4, important, core */
#define TDSX__GRADE_GENERAL 0x0fu
#define TDSX__GRADE_IMPORTANT 0x10u
#define TDSX__GRADE_CORE 0x20u
#define TDSX__DOMAIN_ALL 0x7fu /* bit value-1 */
#define TDSX__TRI_ALL 0x07u    /* personal, library, source, roles: bit value-1 */
#define TDSX__DIR_ALL 0x03u    /* bit value-1: send, receive */
#define TDSX__RELAY_YES 0x01u
#define TDSX__RELAY_NO 0x02u
#define TDSX__RELAY_ALL 0x03u

static inline unsigned tdsx__bit(unsigned value)
{
    return value ? 1u << (value - 1) : 0u;
}

/* The conditions in canonical order; also indexes tdsx__rule_t.cond_col. */
typedef enum {
    TDSX__C_GRADE,
    TDSX__C_DOMAIN,
    TDSX__C_CATEGORY,
    TDSX__C_PERSONAL,
    TDSX__C_LIBRARY,
    TDSX__C_SOURCE,
    TDSX__C_DIRECTION, /* to / from / with / direction share this and C_ROLE */
    TDSX__C_ROLE,
    TDSX__C_PEER,
    TDSX__C_LOCAL,
    TDSX__C_RELAY,
    TDSX__C_PURPOSE,
    TDSX__C_COUNT
} tdsx__cond_t;

typedef struct tdsx__strlist_s {
    char **v; /* sorted, unique, each heap-allocated */
    size_t n;
} tdsx__strlist_t;

typedef struct tdsx__rule_s {
    char id[TDSX_POLICY_ID_MAX];
    int labelled;
    unsigned line;
    unsigned col; /* column of the label or of allow/deny */
    int allow;
    unsigned grade, domain, personal, library, source, dir, role, local, relay;
    tdsx__strlist_t category, peer, purpose;
    unsigned req;
    unsigned cond_col[TDSX__C_COUNT]; /* column where each condition was written, 0 if not */
    unsigned req_col;
} tdsx__rule_t;

struct tdsx_policy_s {
    tdsx__rule_t *rules;
    size_t n;
    char *canonical;
    size_t canonical_len;
    uint8_t hash[32];
};

/* Frees the lists of one rule. */
void tdsx__rule_clear(tdsx__rule_t *r);
/* Appends the normalised text of r (no newline). with_id: print `[id]` even for line-N. */
TDSX_MUST_CHECK int tdsx__rule_format(const tdsx__rule_t *r, int with_id, tdsx_buf_t *b);
/* Builds p->canonical and p->hash from p->rules. 0, TDSX_E_NOMEM or TDSX_E_INTERNAL. */
TDSX_MUST_CHECK int tdsx__policy_finish(tdsx_policy_t *p);
/* 1 when r's conditions (not its requirements) match the input. No allocation. */
int tdsx__rule_matches(const tdsx__rule_t *r, const tdsx_policy_input_t *in, int rank);

#endif
