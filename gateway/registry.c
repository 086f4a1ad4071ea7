/* The member registry: a pure line parser, sorted lookups, and the line formatter used when
 * a CA issues a node (SPEC §3 member list; a local file until the trust bundle carries it). */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

struct tdsx_registry_s {
    tdsx_member_t *m; /* file order */
    size_t n;
    size_t alloc;
    const tdsx_member_t **by_id;   /* sorted by id */
    const tdsx_member_t **by_auth; /* sorted by auth fingerprint */
};

#define NFIELDS 6
#define SHOW 40 /* bytes of an offending token quoted back in a message */
/* printf arguments for "%.*s" of a token, cut at SHOW bytes. */
#define QUOTE(t) (int)((t).n < SHOW ? (t).n : SHOW), (const char *)(t).p

static int set_err(tdsx_registry_error_t *e, unsigned line, tdsx_registry_fault_t fault, int err,
                   const char *fmt, ...) TDSX_PRINTF(5, 6);

static int set_err(tdsx_registry_error_t *e, unsigned line, tdsx_registry_fault_t fault, int err,
                   const char *fmt, ...)
{
    if (e) {
        e->line = line;
        e->fault = fault;
        e->err = err;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int is_blank(uint8_t ch)
{
    return ch == ' ' || ch == '\t';
}

/* Splits off the next line (without its '\n'). 0 when the input is exhausted. */
static int next_line(tdsx_bytes_t *in, tdsx_bytes_t *line)
{
    if (in->n == 0)
        return 0;
    const uint8_t *nl = memchr(in->p, '\n', in->n);
    size_t len = nl ? (size_t)(nl - in->p) : in->n;
    if (tdsx_bytes_take(in, len, line) != 0)
        return 0;
    if (nl && tdsx_bytes_skip(in, 1) != 0)
        return 0;
    return 1;
}

/* The next run of non-blank bytes. 0 when only blanks are left. */
static int next_token(tdsx_bytes_t *line, tdsx_bytes_t *tok)
{
    const uint8_t *ch;
    while (tdsx_bytes_peek(line, 1, &ch) == 0 && is_blank(*ch))
        if (tdsx_bytes_skip(line, 1) != 0)
            return 0;
    size_t len = 0;
    tdsx_bytes_t look = *line;
    while (tdsx_bytes_peek(&look, 1, &ch) == 0 && !is_blank(*ch)) {
        if (tdsx_bytes_skip(&look, 1) != 0)
            return 0;
        len++;
    }
    if (len == 0)
        return 0;
    return tdsx_bytes_take(line, len, tok) == 0;
}

/* Copies a token into a C string; -1 when it does not fit. */
static int tok_str(tdsx_bytes_t tok, char *buf, size_t size)
{
    size_t n = tok.n;
    if (n >= size || tdsx_bytes_copy(&tok, buf, n) != 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* Splits a token at its first `sep`. 0 when absent. */
static int split_at(tdsx_bytes_t tok, uint8_t sep, tdsx_bytes_t *left, tdsx_bytes_t *right)
{
    const uint8_t *at = tok.n ? memchr(tok.p, sep, tok.n) : NULL;
    if (!at)
        return 0;
    size_t pos = (size_t)(at - tok.p);
    if (tdsx_bytes_take(&tok, pos, left) != 0 || tdsx_bytes_skip(&tok, 1) != 0)
        return 0;
    *right = tok;
    return 1;
}

int tdsx__node_name_ok(tdsx_bytes_t node)
{
    if (node.n == 0 || node.n > TDSX_NODE_MAX)
        return 0;
    uint8_t ch;
    while (tdsx_bytes_u8(&node, &ch) == 0)
        if (ch <= 0x20 || ch == 0x7f || ch == '/' || ch == '#')
            return 0;
    return 1;
}

static int host_char_ok(uint8_t ch, int v6)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))
        return 1;
    if (v6)
        return ch == ':' || ch == '.';
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '-' ||
           ch == '_';
}

int tdsx__endpoint_parse(tdsx_bytes_t s, char host[TDSX_HOST_MAX + 1], uint16_t *port)
{
    tdsx_bytes_t h, p;
    const uint8_t *first;
    if (tdsx_bytes_peek(&s, 1, &first) != 0)
        return TDSX_E_CONFIG;
    if (*first == '[') {
        tdsx_bytes_t inside, rest;
        if (!split_at(s, ']', &inside, &rest))
            return TDSX_E_CONFIG;
        tdsx_bytes_t all = s;
        if (tdsx_bytes_take(&all, inside.n + 1, &h) != 0) /* "[addr]" */
            return TDSX_E_CONFIG;
        const uint8_t *colon;
        if (tdsx_bytes_peek(&rest, 1, &colon) != 0 || *colon != ':' ||
            tdsx_bytes_skip(&rest, 1) != 0)
            return TDSX_E_CONFIG;
        p = rest;
        tdsx_bytes_t addr = inside;
        if (tdsx_bytes_skip(&addr, 1) != 0 || addr.n < 2 || !memchr(addr.p, ':', addr.n))
            return TDSX_E_CONFIG;
        uint8_t ch;
        while (tdsx_bytes_u8(&addr, &ch) == 0)
            if (!host_char_ok(ch, 1))
                return TDSX_E_CONFIG;
    } else {
        /* Without brackets there is exactly one ':' (IPv6 must be bracketed). */
        if (!split_at(s, ':', &h, &p) || memchr(p.p, ':', p.n) || h.n == 0)
            return TDSX_E_CONFIG;
        tdsx_bytes_t scan = h;
        uint8_t ch;
        while (tdsx_bytes_u8(&scan, &ch) == 0)
            if (!host_char_ok(ch, 0))
                return TDSX_E_CONFIG;
    }
    if (h.n > TDSX_HOST_MAX || p.n == 0 || p.n > 5)
        return TDSX_E_CONFIG;
    unsigned long v = 0;
    uint8_t ch;
    tdsx_bytes_t digits = p;
    while (tdsx_bytes_u8(&digits, &ch) == 0) {
        if (ch < '0' || ch > '9')
            return TDSX_E_CONFIG;
        v = v * 10 + (unsigned long)(ch - '0');
    }
    if (v == 0 || v > 65535)
        return TDSX_E_CONFIG;
    if (host && tok_str(h, host, TDSX_HOST_MAX + 1) != 0)
        return TDSX_E_CONFIG;
    if (port)
        *port = (uint16_t)v;
    return 0;
}

/* Strips a trailing CR and the comment; refuses control bytes anywhere in the line. */
static int clean_line(tdsx_bytes_t *line, unsigned no, tdsx_registry_error_t *e)
{
    if (line->n > TDSX_REGISTRY_LINE_CAP)
        return set_err(e, no, TDSX_REGISTRY_LINE_TOO_LONG, TDSX_E_CONFIG,
                       "line is longer than %u bytes", TDSX_REGISTRY_LINE_CAP);
    const uint8_t *last;
    if (line->n && tdsx_bytes_peek(line, line->n, &last) == 0 && last[line->n - 1] == '\r')
        line->n--;
    tdsx_bytes_t scan = *line;
    uint8_t ch;
    while (tdsx_bytes_u8(&scan, &ch) == 0)
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return set_err(e, no, TDSX_REGISTRY_BAD_BYTE, TDSX_E_CONFIG,
                           "control byte 0x%02x in the line", ch);
    tdsx_bytes_t before, after;
    if (split_at(*line, '#', &before, &after))
        *line = before;
    return 0;
}

static int parse_id(tdsx_bytes_t tok, unsigned no, tdsx_member_t *m, tdsx_registry_error_t *e)
{
    tdsx_bytes_t uscc, node;
    if (!split_at(tok, '/', &uscc, &node))
        return set_err(e, no, TDSX_REGISTRY_ID, TDSX_E_CONFIG, "id '%.*s' is not <USCC>/<node>",
                       QUOTE(tok));
    if (uscc.n != TDSX_USCC_LEN || tok_str(uscc, m->uscc, sizeof m->uscc) != 0)
        return set_err(e, no, TDSX_REGISTRY_USCC, TDSX_E_CONFIG, "USCC '%.*s' is not 18 characters",
                       QUOTE(uscc));
    int rc = tdsx_uscc_check(m->uscc, NULL);
    if (rc)
        return set_err(e, no, TDSX_REGISTRY_USCC, TDSX_E_CONFIG, "USCC %s: %s", m->uscc,
                       tdsx_strerror(rc));
    if (!tdsx__node_name_ok(node) || tok_str(node, m->node, sizeof m->node) != 0)
        return set_err(e, no, TDSX_REGISTRY_ID, TDSX_E_CONFIG,
                       "node name '%.*s' is empty, too long or has '/', '#' or control bytes",
                       QUOTE(node));
    snprintf(m->id, sizeof m->id, "%s/%s", m->uscc, m->node);
    return 0;
}

static int parse_keys(const tdsx_bytes_t *tok, unsigned no, tdsx_member_t *m,
                      tdsx_registry_error_t *e)
{
    static const char *const names[3] = {"auth", "sign", "enc"};
    uint8_t *dst[3] = {m->auth_fp, m->sign_fp, m->enc_pub};
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++) {
        tdsx_bytes_t key, val;
        if (!split_at(tok[i], '=', &key, &val))
            return set_err(e, no, TDSX_REGISTRY_KEY, TDSX_E_CONFIG, "field '%.*s' is not key=value",
                           QUOTE(tok[i]));
        size_t k = 0;
        while (k < 3 && !(key.n == strlen(names[k]) && memcmp(key.p, names[k], key.n) == 0))
            k++;
        if (k == 3)
            return set_err(e, no, TDSX_REGISTRY_KEY, TDSX_E_CONFIG,
                           "unknown key '%.*s' (auth, sign, enc)", QUOTE(key));
        if (seen[k]++)
            return set_err(e, no, TDSX_REGISTRY_KEY, TDSX_E_CONFIG, "%s= given twice", names[k]);
        char hex[65];
        if (val.n != 64 || tok_str(val, hex, sizeof hex) != 0 || tdsx_hex_decode(dst[k], 32, hex))
            return set_err(e, no, TDSX_REGISTRY_HEX, TDSX_E_CONFIG, "%s= must be 64 hex digits",
                           names[k]);
    }
    /* Three fields, three distinct keys: none can be missing once none repeats. */
    return 0;
}

/* Parses one cleaned, non-blank line. */
static int parse_member(tdsx_bytes_t line, unsigned no, tdsx_member_t *m, tdsx_registry_error_t *e)
{
    tdsx_bytes_t tok[NFIELDS + 1];
    size_t n = 0;
    while (n < NFIELDS + 1 && next_token(&line, &tok[n]))
        n++;
    if (n != NFIELDS)
        return set_err(e, no, TDSX_REGISTRY_FIELDS, TDSX_E_CONFIG,
                       "%s fields: want <USCC>/<node> <role> <host:port> auth= sign= enc=",
                       n > NFIELDS ? "too many" : "too few");
    memset(m, 0, sizeof *m);
    m->line = no;
    int rc = parse_id(tok[0], no, m, e);
    if (rc)
        return rc;
    char role[16];
    if (tok_str(tok[1], role, sizeof role) != 0 || tdsx_role_parse(role, &m->role) != 0)
        return set_err(e, no, TDSX_REGISTRY_ROLE, TDSX_E_CONFIG,
                       "unknown role '%.*s' (centre, brain, enterprise)", QUOTE(tok[1]));
    if (tdsx__endpoint_parse(tok[2], m->host, &m->port) != 0)
        return set_err(e, no, TDSX_REGISTRY_ENDPOINT, TDSX_E_CONFIG,
                       "endpoint '%.*s' is not host:port with port 1-65535", QUOTE(tok[2]));
    return parse_keys(&tok[3], no, m, e);
}

static int cmp_id(const void *a, const void *b)
{
    const tdsx_member_t *x = *(const tdsx_member_t *const *)a;
    const tdsx_member_t *y = *(const tdsx_member_t *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_auth(const void *a, const void *b)
{
    const tdsx_member_t *x = *(const tdsx_member_t *const *)a;
    const tdsx_member_t *y = *(const tdsx_member_t *const *)b;
    int c = memcmp(x->auth_fp, y->auth_fp, 32);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_sign(const void *a, const void *b)
{
    const tdsx_member_t *x = *(const tdsx_member_t *const *)a;
    const tdsx_member_t *y = *(const tdsx_member_t *const *)b;
    int c = memcmp(x->sign_fp, y->sign_fp, 32);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* In an index sorted by (key, line), the lowest line that repeats an earlier line's key
 * (NULL: none). kind 0 compares ids, 1 auth fingerprints, 2 sign fingerprints. */
static const tdsx_member_t *first_dup(const tdsx_member_t **v, size_t n, int kind,
                                      const tdsx_member_t **earlier)
{
    const tdsx_member_t *best = NULL;
    for (size_t i = 1; i < n; i++) {
        const tdsx_member_t *a = v[i - 1], *b = v[i];
        int same = kind == 0   ? strcmp(a->id, b->id) == 0
                   : kind == 1 ? memcmp(a->auth_fp, b->auth_fp, 32) == 0
                               : memcmp(a->sign_fp, b->sign_fp, 32) == 0;
        if (same && (!best || b->line < best->line)) {
            best = b;
            *earlier = a;
        }
    }
    return best;
}

static int check_dups(tdsx_registry_t *r, tdsx_registry_error_t *e)
{
    const tdsx_member_t **by_sign = tdsx_reallocarray(NULL, r->n ? r->n : 1, sizeof *by_sign);
    if (!by_sign)
        return TDSX_E_NOMEM;
    for (size_t i = 0; i < r->n; i++)
        by_sign[i] = r->by_id[i] = r->by_auth[i] = &r->m[i];
    qsort(r->by_id, r->n, sizeof *r->by_id, cmp_id);
    qsort(r->by_auth, r->n, sizeof *r->by_auth, cmp_auth);
    qsort(by_sign, r->n, sizeof *by_sign, cmp_sign);

    static const struct {
        tdsx_registry_fault_t fault;
        const char *what;
    } kinds[3] = {{TDSX_REGISTRY_DUP_ID, "id"},
                  {TDSX_REGISTRY_DUP_AUTH, "auth fingerprint"},
                  {TDSX_REGISTRY_DUP_SIGN, "sign fingerprint"}};
    const tdsx_member_t **idx[3] = {r->by_id, r->by_auth, by_sign};
    const tdsx_member_t *worst = NULL, *earlier = NULL;
    size_t kind = 0;
    for (size_t k = 0; k < 3; k++) {
        const tdsx_member_t *prev = NULL;
        const tdsx_member_t *d = first_dup(idx[k], r->n, (int)k, &prev);
        if (d && (!worst || d->line < worst->line)) {
            worst = d;
            earlier = prev;
            kind = k;
        }
    }
    tdsx_free(by_sign);
    if (!worst)
        return 0;
    return set_err(e, worst->line, kinds[kind].fault, TDSX_E_CONFIG,
                   "duplicate %s (first defined on line %u)", kinds[kind].what, earlier->line);
}

int tdsx_registry_parse(tdsx_bytes_t text, tdsx_registry_t **out, tdsx_registry_error_t *e)
{
    *out = NULL;
    if (e)
        memset(e, 0, sizeof *e);
    tdsx_registry_t *r = tdsx_calloc(1, sizeof *r);
    if (!r)
        return set_err(e, 0, TDSX_REGISTRY_OK, TDSX_E_NOMEM, "out of memory");
    int rc = 0;
    tdsx_bytes_t line;
    unsigned no = 0;
    while (next_line(&text, &line)) {
        no++;
        rc = clean_line(&line, no, e);
        if (rc)
            goto fail;
        tdsx_bytes_t probe = line, tok;
        if (!next_token(&probe, &tok))
            continue;
        if (r->n == TDSX_REGISTRY_MAX_MEMBERS) {
            rc = set_err(e, no, TDSX_REGISTRY_TOO_MANY, TDSX_E_CONFIG, "more than %u members",
                         TDSX_REGISTRY_MAX_MEMBERS);
            goto fail;
        }
        if (r->n == r->alloc) {
            size_t na = r->alloc ? r->alloc * 2 : 16;
            tdsx_member_t *nm = tdsx_reallocarray(r->m, na, sizeof *nm);
            if (!nm) {
                rc = set_err(e, no, TDSX_REGISTRY_OK, TDSX_E_NOMEM, "out of memory");
                goto fail;
            }
            r->m = nm;
            r->alloc = na;
        }
        rc = parse_member(line, no, &r->m[r->n], e);
        if (rc)
            goto fail;
        r->n++;
    }
    size_t slots = r->n ? r->n : 1;
    r->by_id = tdsx_reallocarray(NULL, slots, sizeof *r->by_id);
    r->by_auth = tdsx_reallocarray(NULL, slots, sizeof *r->by_auth);
    if (!r->by_id || !r->by_auth) {
        rc = set_err(e, 0, TDSX_REGISTRY_OK, TDSX_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = check_dups(r, e);
    if (rc == TDSX_E_NOMEM)
        set_err(e, 0, TDSX_REGISTRY_OK, TDSX_E_NOMEM, "out of memory");
    if (rc)
        goto fail;
    *out = r;
    return 0;
fail:
    tdsx_registry_free(r);
    return rc;
}

int tdsx_registry_load(const char *path, tdsx_registry_t **out, tdsx_registry_error_t *e)
{
    *out = NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, TDSX_REGISTRY_FILE_CAP, &text, &len);
    if (rc)
        return set_err(e, 0, TDSX_REGISTRY_FILE, rc, "cannot read %s: %s", path, tdsx_strerror(rc));
    rc = tdsx_registry_parse(tdsx_bytes(text, len), out, e);
    tdsx_free(text);
    return rc;
}

void tdsx_registry_free(tdsx_registry_t *r)
{
    if (!r)
        return;
    tdsx_free(r->by_id);
    tdsx_free(r->by_auth);
    tdsx_free(r->m);
    tdsx_free(r);
}

size_t tdsx_registry_count(const tdsx_registry_t *r)
{
    return r ? r->n : 0;
}

const tdsx_member_t *tdsx_registry_at(const tdsx_registry_t *r, size_t i)
{
    return r && i < r->n ? &r->m[i] : NULL;
}

static int key_id(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const tdsx_member_t *const *)elem)->id);
}

static int key_auth(const void *key, const void *elem)
{
    return memcmp(key, (*(const tdsx_member_t *const *)elem)->auth_fp, 32);
}

const tdsx_member_t *tdsx_registry_find(const tdsx_registry_t *r, const char *id)
{
    if (!r || !id || r->n == 0)
        return NULL;
    const tdsx_member_t **hit = bsearch(id, r->by_id, r->n, sizeof *r->by_id, key_id);
    return hit ? *hit : NULL;
}

const tdsx_member_t *tdsx_registry_find_auth(const tdsx_registry_t *r, const uint8_t fp[32])
{
    if (!r || !fp || r->n == 0)
        return NULL;
    const tdsx_member_t **hit = bsearch(fp, r->by_auth, r->n, sizeof *r->by_auth, key_auth);
    return hit ? *hit : NULL;
}

int tdsx_registry_check(const tdsx_registry_t *r, const tdsx_identity_t *id,
                        const tdsx_member_t **member)
{
    if (member)
        *member = NULL;
    if (!r || !id)
        return TDSX_E_INVAL;
    char name[TDSX_ID_SIZE];
    tdsx_identity_id(id, name, sizeof name);
    const tdsx_member_t *m = tdsx_registry_find(r, name);
    if (!m)
        return TDSX_E_PEER_UNKNOWN;
    if (member)
        *member = m;
    /* Pinning: a certificate the CA issued is not enough, it must be the one registered. */
    if (memcmp(m->auth_fp, id->fingerprint, 32) != 0)
        return TDSX_E_CERT_FINGERPRINT;
    if (m->role != id->role)
        return TDSX_E_CERT_ROLE;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Formatting a line from a credential directory
 * ---------------------------------------------------------------------------------------- */

static int join(tdsx_buf_t *b, const char *dir, const char *name)
{
    tdsx_buf_reset(b);
    return tdsx_buf_printf(b, "%s/%s", dir, name);
}

static int verify_file(const tdsx_trust_t *t, const char *path, tdsx_purpose_t purpose, int64_t at,
                       tdsx_identity_t *id)
{
    STACK_OF(X509) *sk = NULL;
    int rc = tdsx_cert_load_file(path, &sk);
    if (rc)
        return rc;
    X509 *leaf = sk_X509_shift(sk);
    tdsx_verify_opts_t o = {purpose, TDSX_ROLE_NONE, at, 0};
    rc = tdsx_cert_verify(t, leaf, sk, &o, id);
    X509_free(leaf);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/* chain.pem may be absent or hold no certificate (no intermediate CA). */
static int add_chain(tdsx_trust_t *t, const char *path)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, TDSX_REGISTRY_FILE_CAP, &pem, &len);
    if (rc == TDSX_E_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (len && strstr((const char *)pem, "-----BEGIN"))
        rc = tdsx_trust_add_intermediates_pem(t, pem, len);
    tdsx_free(pem);
    return rc;
}

int tdsx_registry_format(const char *cred_dir, const char *endpoint, int64_t at, tdsx_buf_t *out)
{
    if (!cred_dir || !endpoint || !out)
        return TDSX_E_INVAL;
    if (tdsx__endpoint_parse(tdsx_bytes(endpoint, strlen(endpoint)), NULL, NULL) != 0)
        return TDSX_E_CONFIG;
    tdsx_trust_t *trust = NULL;
    tdsx_buf_t path, line;
    tdsx_buf_init(&path, 4096);
    tdsx_buf_init(&line, TDSX_REGISTRY_LINE_CAP + 1);
    tdsx_identity_t auth, sign;
    uint8_t enc[32];
    int rc = tdsx_trust_new(&trust);
    if (rc)
        goto fail;
    if ((rc = join(&path, cred_dir, TDSX_CRED_ROOT)) != 0 ||
        (rc = tdsx_trust_add_anchors_file(trust, (const char *)path.p)) != 0)
        goto fail;
    if ((rc = join(&path, cred_dir, TDSX_CRED_CHAIN)) != 0 ||
        (rc = add_chain(trust, (const char *)path.p)) != 0)
        goto fail;
    if ((rc = join(&path, cred_dir, TDSX_CRED_AUTH_CERT)) != 0 ||
        (rc = verify_file(trust, (const char *)path.p, TDSX_PURPOSE_AUTH, at, &auth)) != 0)
        goto fail;
    if ((rc = join(&path, cred_dir, TDSX_CRED_SIGN_CERT)) != 0 ||
        (rc = verify_file(trust, (const char *)path.p, TDSX_PURPOSE_SIGN, at, &sign)) != 0)
        goto fail;
    if (strcmp(auth.uscc, sign.uscc) != 0 || strcmp(auth.node, sign.node) != 0 ||
        auth.role != sign.role) {
        rc = TDSX_E_CERT_SUBJECT;
        goto fail;
    }
    if (!tdsx__node_name_ok(tdsx_bytes(auth.node, strlen(auth.node)))) {
        rc = TDSX_E_CONFIG;
        goto fail;
    }
    if ((rc = join(&path, cred_dir, TDSX_CRED_ENC_PUB)) != 0 ||
        (rc = tdsx_key_load_x25519_pub((const char *)path.p, enc)) != 0)
        goto fail;
    char a[65], s[65], x[65];
    tdsx_hex_encode(a, auth.fingerprint, 32);
    tdsx_hex_encode(s, sign.fingerprint, 32);
    tdsx_hex_encode(x, enc, 32);
    rc = tdsx_buf_printf(&line, "%s/%s %s %s auth=%s sign=%s enc=%s\n", auth.uscc, auth.node,
                         tdsx_role_name(auth.role), endpoint, a, s, x);
    if (rc)
        goto fail;
    /* What we write must be what the parser accepts. */
    tdsx_bytes_t body = tdsx_bytes(line.p, line.len - 1);
    tdsx_member_t check;
    if (clean_line(&body, 1, NULL) != 0 || parse_member(body, 1, &check, NULL) != 0) {
        rc = TDSX_E_CONFIG;
        goto fail;
    }
    rc = tdsx_buf_append(out, line.p, line.len);
fail:
    tdsx_buf_free(&line);
    tdsx_buf_free(&path);
    tdsx_trust_free(trust);
    return rc;
}
