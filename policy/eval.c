/* Policy evaluation (SPEC §8): first match, the rule's requirements, then the hard floors.
 * A pure function: no allocation, no I/O, nothing but its arguments. */
#include "internal.h"

#include <string.h>

/* Reason texts go to the counterpart in Error frames and receipts: they say what was
 * missing, never what the policy contains. */
static const char r_allowed[] = "allowed";
static const char r_invalid[] = "transfer description is invalid";
static const char r_tags[] = "classification tags are invalid";
static const char r_default[] = "no rule allows this transfer";
static const char r_denied[] = "refused by policy";
static const char r_agreement[] = "a valid agreement is required";
static const char r_expired[] = "the agreement has expired";
static const char r_terminated[] = "the agreement has been terminated";
static const char r_purpose[] = "the agreement must state a purpose";
static const char r_seal[] = "the transfer must be sealed";
static const char r_core[] = "core data never leaves its owner's node";
static const char r_imp_agreement[] = "important data needs a valid agreement";
static const char r_imp_seal[] = "important data must travel sealed";
static const char r_personal[] = "personal information needs an agreement with a stated purpose";

const char *tdsx_floor_id(unsigned floor)
{
    switch (floor) {
    case TDSX_FLOOR_CORE_STAYS_HOME: return "floor:core-stays-home";
    case TDSX_FLOOR_IMPORTANT_AGREEMENT: return "floor:important-needs-agreement";
    case TDSX_FLOOR_IMPORTANT_SEAL: return "floor:important-needs-seal";
    case TDSX_FLOOR_PERSONAL_PURPOSE: return "floor:personal-needs-purpose";
    default: return NULL;
    }
}

static int in_list(const tdsx__strlist_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return 1;
    return 0;
}

static int peer_in(const tdsx__strlist_t *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        const char *q = l->v[i];
        size_t n = strlen(q);
        /* A bare USCC names every node of the organisation. */
        if (n == 18 ? strncmp(id, q, 18) == 0 && id[18] == '/' : strcmp(id, q) == 0)
            return 1;
    }
    return 0;
}

static int mask_has(unsigned mask, unsigned all, unsigned value)
{
    return mask == all || (mask & tdsx__bit(value));
}

int tdsx__rule_matches(const tdsx__rule_t *r, const tdsx_policy_input_t *in, int rank)
{
    const tdsx_tags_t *t = in->tags;
    if (!mask_has(r->grade, TDSX__GRADE_ALL, (unsigned)rank) ||
        !mask_has(r->domain, TDSX__DOMAIN_ALL, t->domain) ||
        !mask_has(r->personal, TDSX__TRI_ALL, t->personal) ||
        !mask_has(r->library, TDSX__TRI_ALL, t->library) ||
        !mask_has(r->source, TDSX__TRI_ALL, t->source) ||
        !mask_has(r->dir, TDSX__DIR_ALL, in->direction) ||
        !mask_has(r->role, TDSX__TRI_ALL, in->peer_role) ||
        !mask_has(r->local, TDSX__TRI_ALL, in->local_role))
        return 0;
    if (r->relay != TDSX__RELAY_ALL && r->relay != (in->relay ? TDSX__RELAY_YES : TDSX__RELAY_NO))
        return 0;
    if (r->category.n) {
        size_t i = 0;
        while (i < r->category.n && !tdsx__path_under(t->category, r->category.v[i]))
            i++;
        if (i == r->category.n)
            return 0;
    }
    if (r->peer.n && (!in->peer_id || !peer_in(&r->peer, in->peer_id)))
        return 0;
    if (r->purpose.n && (in->agreement != TDSX_AGREEMENT_VALID || !in->purpose ||
                         !in_list(&r->purpose, in->purpose)))
        return 0;
    return 1;
}

static int agreement_code(tdsx_agreement_state_t a, const char **reason)
{
    switch (a) {
    case TDSX_AGREEMENT_EXPIRED: *reason = r_expired; return TDSX_E_AGREEMENT_EXPIRED;
    case TDSX_AGREEMENT_TERMINATED: *reason = r_terminated; return TDSX_E_AGREEMENT_TERMINATED;
    case TDSX_AGREEMENT_NONE:
    case TDSX_AGREEMENT_VALID:
    default: *reason = r_agreement; return TDSX_E_AGREEMENT;
    }
}

static int deny(tdsx_policy_decision_t *out, const char *rule_id, unsigned line, int code,
                const char *reason)
{
    out->allow = 0;
    out->rule_id = rule_id;
    out->line = line;
    out->code = code;
    out->reason = reason;
    return code;
}

int tdsx_policy_eval(const tdsx_policy_t *p, const tdsx_policy_input_t *in,
                     tdsx_policy_decision_t *out)
{
    memset(out, 0, sizeof *out);
    if (!p || !in || !in->tags ||
        (in->direction != TDSX_DIR_SEND && in->direction != TDSX_DIR_RECEIVE) ||
        (unsigned)in->local_role > TDSX_POLICY_ROLE_ENTERPRISE ||
        (unsigned)in->peer_role > TDSX_POLICY_ROLE_ENTERPRISE ||
        (unsigned)in->agreement > TDSX_AGREEMENT_TERMINATED)
        return deny(out, "invalid-input", 0, TDSX_E_INVAL, r_invalid);
    if (tdsx_tags_check(in->tags) != 0)
        return deny(out, "invalid-input", 0, TDSX_E_TAGS, r_tags);

    const tdsx_tags_t *t = in->tags;
    int rank = tdsx_tags_rank(t);
    int agreement = in->agreement == TDSX_AGREEMENT_VALID;
    int purpose = agreement && in->purpose && in->purpose[0];
    unsigned have = (agreement ? TDSX_POLICY_REQ_AGREEMENT : 0) |
                    (purpose ? TDSX_POLICY_REQ_PURPOSE : 0) |
                    (in->sealed ? TDSX_POLICY_REQ_SEAL : 0);

    unsigned floors = 0, floor_req = 0;
    if (t->grade == TDSX_GRADE_CORE)
        floors |= TDSX_FLOOR_CORE_STAYS_HOME;
    if (t->grade == TDSX_GRADE_IMPORTANT) {
        floors |= TDSX_FLOOR_IMPORTANT_AGREEMENT | TDSX_FLOOR_IMPORTANT_SEAL;
        floor_req |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_SEAL;
    }
    if (t->personal != TDSX_PERSONAL_NONE) {
        floors |= TDSX_FLOOR_PERSONAL_PURPOSE;
        floor_req |= TDSX_POLICY_REQ_AGREEMENT | TDSX_POLICY_REQ_PURPOSE;
    }
    out->floors = floors;

    const tdsx__rule_t *r = NULL;
    for (size_t i = 0; i < p->n && !r; i++)
        if (tdsx__rule_matches(&p->rules[i], in, rank))
            r = &p->rules[i];
    if (!r)
        return deny(out, "default-deny", 0, TDSX_E_POLICY_DENY, r_default);
    out->matched_id = r->id;
    out->matched_line = r->line;
    if (!r->allow)
        return deny(out, r->id, r->line, TDSX_E_POLICY_DENY, r_denied);

    out->required = r->req | floor_req;
    out->missing = out->required & ~have;
    const char *reason;
    unsigned rule_missing = r->req & ~have;
    if (rule_missing & TDSX_POLICY_REQ_AGREEMENT) {
        int code = agreement_code(in->agreement, &reason);
        return deny(out, r->id, r->line, code, reason);
    }
    if (rule_missing & TDSX_POLICY_REQ_PURPOSE)
        return deny(out, r->id, r->line, TDSX_E_POLICY_PURPOSE, r_purpose);
    if (rule_missing & TDSX_POLICY_REQ_SEAL)
        return deny(out, r->id, r->line, TDSX_E_POLICY_SEAL, r_seal);

    /* The floors, in the order of how much they protect. */
    unsigned floor = 0;
    int code = 0;
    if (floors & TDSX_FLOOR_CORE_STAYS_HOME) {
        floor = TDSX_FLOOR_CORE_STAYS_HOME;
        code = TDSX_E_POLICY_DENY;
        reason = r_core;
    } else if ((floors & TDSX_FLOOR_IMPORTANT_AGREEMENT) && !agreement) {
        floor = TDSX_FLOOR_IMPORTANT_AGREEMENT;
        code = agreement_code(in->agreement, &reason);
        if (in->agreement == TDSX_AGREEMENT_NONE)
            reason = r_imp_agreement;
    } else if ((floors & TDSX_FLOOR_IMPORTANT_SEAL) && !in->sealed) {
        floor = TDSX_FLOOR_IMPORTANT_SEAL;
        code = TDSX_E_POLICY_SEAL;
        reason = r_imp_seal;
    } else if ((floors & TDSX_FLOOR_PERSONAL_PURPOSE) && !purpose) {
        floor = TDSX_FLOOR_PERSONAL_PURPOSE;
        code = agreement ? TDSX_E_POLICY_PURPOSE : agreement_code(in->agreement, &reason);
        if (agreement || in->agreement == TDSX_AGREEMENT_NONE)
            reason = r_personal;
    }
    if (floor) {
        out->floor = floor;
        return deny(out, tdsx_floor_id(floor), 0, code, reason);
    }
    out->allow = 1;
    out->rule_id = r->id;
    out->line = r->line;
    out->reason = r_allowed;
    return 0;
}
