/* The normalised text of a policy and its SHA-256 (SPEC §8, §12): two files that mean the
 * same thing produce the same bytes, so reports can compare policies by hash. */
#include "internal.h"

#include <openssl/evp.h>
#include <string.h>

/* Canonical text is bounded by the file cap: a rule never normalises to more than a few
 * times its own length, and the file is at most TDSX_POLICY_FILE_MAX. */
#define CANONICAL_MAX (8u * TDSX_POLICY_FILE_MAX)

static const char canonical_header[] = "# tdsx policy v1 (normalised)\n";

static int put_names(tdsx_buf_t *b, const char *kw, unsigned mask, const char *const *names,
                     unsigned count)
{
    int rc = tdsx_buf_printf(b, " %s ", kw);
    const char *sep = "";
    for (unsigned v = 1; v < count && rc == 0; v++) {
        if (!(mask & tdsx__bit(v)))
            continue;
        rc = tdsx_buf_printf(b, "%s%s", sep, names[v]);
        sep = ",";
    }
    return rc;
}

static int put_list(tdsx_buf_t *b, const char *kw, const tdsx__strlist_t *l)
{
    int rc = tdsx_buf_printf(b, " %s ", kw);
    for (size_t i = 0; i < l->n && rc == 0; i++)
        rc = tdsx_buf_printf(b, "%s%s", i ? "," : "", l->v[i]);
    return rc;
}

/* Grades as maximal runs: general, general:N, general:N-M, important, core. */
static int put_grade(tdsx_buf_t *b, unsigned mask)
{
    int rc = tdsx_buf_append_str(b, " grade ");
    const char *sep = "";
    if ((mask & TDSX__GRADE_GENERAL) == TDSX__GRADE_GENERAL) {
        rc = rc ? rc : tdsx_buf_printf(b, "general");
        sep = ",";
    } else {
        for (unsigned lo = 1; lo <= 4 && rc == 0; lo++) {
            if (!(mask & tdsx__bit(lo)))
                continue;
            unsigned hi = lo;
            while (hi < 4 && (mask & tdsx__bit(hi + 1)))
                hi++;
            if (hi == lo)
                rc = tdsx_buf_printf(b, "%sgeneral:%u", sep, lo);
            else
                rc = tdsx_buf_printf(b, "%sgeneral:%u-%u", sep, lo, hi);
            sep = ",";
            lo = hi;
        }
    }
    if (rc == 0 && (mask & TDSX__GRADE_IMPORTANT)) {
        rc = tdsx_buf_printf(b, "%simportant", sep);
        sep = ",";
    }
    if (rc == 0 && (mask & TDSX__GRADE_CORE))
        rc = tdsx_buf_printf(b, "%score", sep);
    return rc;
}

int tdsx__rule_format(const tdsx__rule_t *r, int with_id, tdsx_buf_t *b)
{
    size_t start = b->len;
    int rc = 0;
    if (with_id || r->labelled)
        rc = tdsx_buf_printf(b, "[%s] ", r->id);
    if (rc == 0)
        rc = tdsx_buf_append_str(b, r->allow ? "allow" : "deny");
    size_t conds = b->len;
    if (rc == 0 && r->grade != TDSX__GRADE_ALL)
        rc = put_grade(b, r->grade);
    if (rc == 0 && r->domain != TDSX__DOMAIN_ALL)
        rc = put_names(b, "domain", r->domain, tdsx__domain_names, TDSX_DOMAIN_COUNT + 1);
    if (rc == 0 && r->category.n)
        rc = put_list(b, "category", &r->category);
    if (rc == 0 && r->personal != TDSX__TRI_ALL)
        rc = put_names(b, "personal", r->personal, tdsx__personal_names, 4);
    if (rc == 0 && r->library != TDSX__TRI_ALL)
        rc = put_names(b, "library", r->library, tdsx__library_names, 4);
    if (rc == 0 && r->source != TDSX__TRI_ALL)
        rc = put_names(b, "source", r->source, tdsx__source_names, 4);
    if (rc == 0 && r->dir != TDSX__DIR_ALL) {
        const char *kw = r->dir == tdsx__bit(TDSX_DIR_SEND) ? "to" : "from";
        if (r->role == TDSX__TRI_ALL)
            rc = tdsx_buf_printf(b, " %s any", kw);
        else
            rc = put_names(b, kw, r->role, tdsx__role_names, 4);
    } else if (rc == 0 && r->role != TDSX__TRI_ALL) {
        rc = put_names(b, "with", r->role, tdsx__role_names, 4);
    }
    if (rc == 0 && r->peer.n)
        rc = put_list(b, "peer", &r->peer);
    if (rc == 0 && r->local != TDSX__TRI_ALL)
        rc = put_names(b, "local", r->local, tdsx__role_names, 4);
    if (rc == 0 && r->relay != TDSX__RELAY_ALL)
        rc = tdsx_buf_append_str(b, r->relay == TDSX__RELAY_YES ? " relay" : " direct");
    if (rc == 0 && r->purpose.n)
        rc = put_list(b, "purpose", &r->purpose);
    if (rc == 0 && b->len == conds)
        rc = tdsx_buf_append_str(b, " any");
    if (rc == 0 && r->req) {
        static const char *const req[3] = {"agreement", "purpose", "seal"};
        rc = tdsx_buf_append_str(b, " require ");
        const char *sep = "";
        for (unsigned i = 0; i < 3 && rc == 0; i++) {
            if (!(r->req & (1u << i)))
                continue;
            rc = tdsx_buf_printf(b, "%s%s", sep, req[i]);
            sep = ",";
        }
    }
    if (rc && b->p) {
        b->len = start;
        b->p[start] = '\0';
    }
    return rc;
}

int tdsx__policy_finish(tdsx_policy_t *p)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, CANONICAL_MAX);
    int rc = tdsx_buf_append_str(&b, canonical_header);
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        rc = tdsx__rule_format(&p->rules[i], 0, &b);
        if (rc == 0)
            rc = tdsx_buf_append(&b, "\n", 1);
    }
    if (rc)
        goto fail;
    unsigned int mdlen = 0;
    if (EVP_Digest(b.p, b.len, p->hash, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        rc = TDSX_E_INTERNAL;
        goto fail;
    }
    p->canonical = tdsx_buf_take(&b, &p->canonical_len);
    return 0;
fail:
    tdsx_buf_free(&b);
    return rc;
}

const char *tdsx_policy_canonical(const tdsx_policy_t *p, size_t *len)
{
    if (len)
        *len = p->canonical_len;
    return p->canonical;
}

const uint8_t *tdsx_policy_hash(const tdsx_policy_t *p)
{
    return p->hash;
}

void tdsx_policy_hash_hex(const tdsx_policy_t *p, char out[65])
{
    tdsx_hex_encode(out, p->hash, sizeof p->hash);
}

int tdsx_policy_rule_text(const tdsx_policy_t *p, size_t i, char *out, size_t size)
{
    if (size > 0)
        out[0] = '\0';
    if (i >= p->n)
        return TDSX_E_INVAL;
    tdsx_buf_t b;
    tdsx_buf_init(&b, size ? size - 1 : 0);
    int rc = tdsx__rule_format(&p->rules[i], 1, &b);
    if (rc == 0 && b.len > 0)
        memcpy(out, b.p, b.len + 1);
    tdsx_buf_free(&b);
    return rc;
}
