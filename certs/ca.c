/* The province CA: an Ed25519 root, an optional issuing intermediate, node credentials,
 * revocation and CRLs (RFC 5280 §5).
 *
 * CA directory (0700):
 *   root.key root.pem                   root key (0600) and self-signed certificate
 *   intermediate.key intermediate.pem   the issuing CA when there is one
 *   index.txt                           every certificate the CA issued (see below)
 *   crlnumber                           the last CRL number used (RFC 5280 §5.2.3)
 *   lock                                flock(2)ed while the index or counter changes
 *
 * index.txt holds comment lines starting with '#' and one line per certificate:
 *   SERIAL-HEX \t root|intermediate \t KIND \t NOT-AFTER \t REVOKED-AT|- \t SUBJECT
 * where the second field names the issuing CA, KIND is intermediate|auth|sign, times are
 * seconds since the epoch and SUBJECT is the RFC 2253 one-line form (no tabs or newlines).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CA_ROOT_KEY TDSX_CA_ROOT_KEY
#define CA_ROOT_CERT TDSX_CA_ROOT_CERT
#define CA_INTER_KEY TDSX_CA_INTER_KEY
#define CA_INTER_CERT TDSX_CA_INTER_CERT
#define CA_INDEX TDSX_CA_INDEX
#define CA_CRLNUMBER "crlnumber"
#define CA_LOCK "lock"

#define CA_PATH_CAP 4096u
#define CA_LINE_CAP 4096u
#define CA_DAY 86400
#define CA_ROOT_DAYS_DEFAULT 3650
#define CA_NODE_DAYS_DEFAULT 365
#define CA_CRL_DAYS_DEFAULT 7
#define CA_DAYS_MAX 36500 /* a hundred years bounds the time arithmetic */
#define CA_SERIAL_HEX_MAX 40

enum { ISSUER_ROOT = 0, ISSUER_INTER = 1 };
static const char *const issuer_names[] = {"root", "intermediate"};

struct tdsx_ca_s {
    char *dir;
    X509 *root;
    EVP_PKEY *root_key;
    X509 *inter; /* NULL when the root issues node certificates itself */
    EVP_PKEY *inter_key;
};

typedef struct ca_entry_s {
    char serial[CA_SERIAL_HEX_MAX + 1];
    int issuer;
    char kind[16];
    int64_t not_after;
    int64_t revoked_at; /* 0: not revoked */
    char *subject;
} ca_entry_t;

typedef struct ca_index_s {
    ca_entry_t *e;
    size_t n;
    size_t alloc;
} ca_index_t;

/* ------------------------------------------------------------------------------------------
 * Paths, locking, small files
 * ---------------------------------------------------------------------------------------- */

static char *join(const char *dir, const char *name)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, CA_PATH_CAP);
    if (tdsx_buf_printf(&b, "%s/%s", dir, name) != 0) {
        tdsx_buf_free(&b);
        return NULL;
    }
    return tdsx_buf_take(&b, NULL);
}

static int exists(const char *dir, const char *name, int *yes)
{
    struct stat st;
    char *p = join(dir, name);
    if (!p)
        return TDSX_E_NOMEM;
    *yes = lstat(p, &st) == 0;
    tdsx_free(p);
    return 0;
}

/* TDSX_E_EXISTS when any of names is present in dir. */
static int refuse_existing(const char *dir, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int yes = 0;
        int rc = exists(dir, names[i], &yes);
        if (rc)
            return rc;
        if (yes)
            return TDSX_E_EXISTS;
    }
    return 0;
}

static int make_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : TDSX_E_EXISTS;
}

/* Serialises changes to index.txt and crlnumber between concurrent `tdsx ca` runs. */
static int ca_lock(const tdsx_ca_t *ca, int *fd_out)
{
    char *p = join(ca->dir, CA_LOCK);
    if (!p)
        return TDSX_E_NOMEM;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    tdsx_free(p);
    if (fd < 0)
        return -errno;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int rc = -errno;
            close(fd);
            return rc;
        }
    }
    *fd_out = fd;
    return 0;
}

static void ca_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the descriptor releases the flock */
}

static int write_in(const char *dir, const char *name, const void *p, size_t n, unsigned mode,
                    int force)
{
    char *path = join(dir, name);
    if (!path)
        return TDSX_E_NOMEM;
    int rc = tdsx_file_write(path, p, n, mode, force);
    tdsx_free(path);
    return rc;
}

static int write_cert_in(const char *dir, const char *name, X509 *const *certs, size_t n, int force)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX__PEM_CAP);
    int rc = tdsx_buf_reserve(&b, 0);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = tdsx__pem_append_cert(&b, certs[i]);
    if (rc == 0)
        rc = write_in(dir, name, b.p, b.len, 0644, force);
    tdsx_buf_free(&b);
    return rc;
}

static int write_key_in(const char *dir, const char *name, EVP_PKEY *key, int force)
{
    char *path = join(dir, name);
    if (!path)
        return TDSX_E_NOMEM;
    int rc = tdsx__key_write_private(path, key, force);
    tdsx_free(path);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The index
 * ---------------------------------------------------------------------------------------- */

static void index_free(ca_index_t *ix)
{
    for (size_t i = 0; i < ix->n; i++)
        tdsx_free(ix->e[i].subject);
    tdsx_free(ix->e);
    memset(ix, 0, sizeof *ix);
}

static int index_push(ca_index_t *ix, const ca_entry_t *e)
{
    if (ix->n == ix->alloc) {
        size_t want = ix->alloc ? ix->alloc * 2 : 16;
        ca_entry_t *grown = tdsx_reallocarray(ix->e, want, sizeof *grown);
        if (!grown)
            return TDSX_E_NOMEM;
        ix->e = grown;
        ix->alloc = want;
    }
    ix->e[ix->n++] = *e;
    return 0;
}

/* Splits off everything before the next `delim` (or the rest), consuming the delimiter. */
static tdsx_bytes_t take_until(tdsx_bytes_t *c, uint8_t delim)
{
    size_t i = 0;
    tdsx_bytes_t field = tdsx_bytes(c->p, 0);
    while (i < c->n && c->p[i] != delim)
        i++;
    if (tdsx_bytes_take(c, i, &field) == 0 && c->n > 0 && tdsx_bytes_skip(c, 1) != 0)
        c->n = 0; /* cannot happen: one byte is known to remain */
    return field;
}

/* Copies a field into a NUL-terminated buffer; TDSX_E_CA_STATE when empty or too long. */
static int field_str(tdsx_bytes_t f, char *out, size_t size)
{
    size_t n = f.n;
    if (n == 0 || n >= size || tdsx_bytes_copy(&f, out, n) != 0 || memchr(out, '\0', n))
        return TDSX_E_CA_STATE;
    out[n] = '\0';
    return 0;
}

static int field_i64(tdsx_bytes_t f, int64_t *out)
{
    char s[24];
    memset(s, 0, sizeof s);
    if (field_str(f, s, sizeof s) != 0)
        return TDSX_E_CA_STATE;
    if (strcmp(s, "-") == 0) {
        *out = 0;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < 0)
        return TDSX_E_CA_STATE;
    *out = (int64_t)v;
    return 0;
}

static int parse_line(tdsx_bytes_t line, ca_entry_t *e)
{
    memset(e, 0, sizeof *e);
    char issuer[16];
    memset(issuer, 0, sizeof issuer);
    memset(e->serial, 0, sizeof e->serial);
    memset(e->kind, 0, sizeof e->kind);
    if (field_str(take_until(&line, '\t'), e->serial, sizeof e->serial) ||
        field_str(take_until(&line, '\t'), issuer, sizeof issuer) ||
        field_str(take_until(&line, '\t'), e->kind, sizeof e->kind) ||
        field_i64(take_until(&line, '\t'), &e->not_after) ||
        field_i64(take_until(&line, '\t'), &e->revoked_at))
        return TDSX_E_CA_STATE;
    if (strspn(e->serial, "0123456789ABCDEF") != strlen(e->serial))
        return TDSX_E_CA_STATE;
    if (strcmp(issuer, issuer_names[ISSUER_ROOT]) == 0)
        e->issuer = ISSUER_ROOT;
    else if (strcmp(issuer, issuer_names[ISSUER_INTER]) == 0)
        e->issuer = ISSUER_INTER;
    else
        return TDSX_E_CA_STATE;
    /* The subject is the rest of the line; it may not hold a NUL. */
    for (size_t i = 0; i < line.n; i++) {
        if (line.p[i] == '\0')
            return TDSX_E_CA_STATE;
    }
    e->subject = tdsx_strndup((const char *)line.p, line.n);
    return e->subject ? 0 : TDSX_E_NOMEM;
}

static int index_read(const tdsx_ca_t *ca, ca_index_t *ix)
{
    uint8_t *data = NULL;
    size_t len = 0;
    memset(ix, 0, sizeof *ix);
    char *path = join(ca->dir, CA_INDEX);
    if (!path)
        return TDSX_E_NOMEM;
    int rc = tdsx_file_read(path, TDSX__INDEX_CAP, &data, &len);
    tdsx_free(path);
    if (rc)
        return rc == TDSX_E_NOTFOUND ? TDSX_E_CA_STATE : rc;
    tdsx_bytes_t c = tdsx_bytes(data, len);
    while (rc == 0 && c.n > 0) {
        tdsx_bytes_t line = take_until(&c, '\n');
        const uint8_t *first = NULL;
        if (line.n == 0 || (tdsx_bytes_peek(&line, 1, &first) == 0 && *first == '#'))
            continue;
        if (line.n > CA_LINE_CAP) {
            rc = TDSX_E_CA_STATE;
            break;
        }
        ca_entry_t e;
        rc = parse_line(line, &e);
        if (rc == 0)
            rc = index_push(ix, &e);
        if (rc)
            tdsx_free(e.subject);
    }
    tdsx_free(data);
    if (rc)
        index_free(ix);
    return rc;
}

static int index_write(const char *dir, const ca_index_t *ix, int force)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX__INDEX_CAP);
    int rc = tdsx_buf_append_str(&b, "# tdsx CA index v1: serial, issuing CA, kind, not_after, "
                                     "revoked_at (seconds since the epoch), subject\n");
    for (size_t i = 0; rc == 0 && i < ix->n; i++) {
        const ca_entry_t *e = &ix->e[i];
        rc = tdsx_buf_printf(&b, "%s\t%s\t%s\t%lld\t", e->serial, issuer_names[e->issuer], e->kind,
                             (long long)e->not_after);
        if (rc == 0)
            rc = e->revoked_at ? tdsx_buf_printf(&b, "%lld\t", (long long)e->revoked_at)
                               : tdsx_buf_append_str(&b, "-\t");
        if (rc == 0)
            rc = tdsx_buf_printf(&b, "%s\n", e->subject);
    }
    if (rc == 0)
        rc = write_in(dir, CA_INDEX, b.p, b.len, 0600, force);
    tdsx_buf_free(&b);
    return rc;
}

/* Upper-case hex of a certificate's serial, as the index stores it. */
static int serial_hex(X509 *x, char out[CA_SERIAL_HEX_MAX + 1])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int rc = TDSX_E_NOMEM;
    if (hex) {
        size_t n = strlen(hex);
        rc = n == 0 || n > CA_SERIAL_HEX_MAX || hex[0] == '-' ? TDSX_E_CERT_PARSE : 0;
        if (rc == 0)
            memcpy(out, hex, n + 1);
    }
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

static int entry_for(X509 *x, int issuer, const char *kind, ca_entry_t *e)
{
    tdsx_buf_t subject;
    memset(e, 0, sizeof *e);
    e->issuer = issuer;
    if (strlen(kind) >= sizeof e->kind)
        return TDSX_E_INVAL;
    memcpy(e->kind, kind, strlen(kind) + 1);
    int rc = serial_hex(x, e->serial);
    if (rc || (rc = tdsx__asn1_time_get(X509_get0_notAfter(x), &e->not_after)))
        return rc;
    tdsx_buf_init(&subject, TDSX__NAME_TEXT_CAP);
    rc = tdsx__name_text(X509_get_subject_name(x), &subject);
    if (rc == 0) {
        e->subject = tdsx_buf_take(&subject, NULL);
        if (!e->subject)
            rc = TDSX_E_NOMEM;
    }
    tdsx_buf_free(&subject);
    return rc;
}

/* Adds index lines for newly issued certificates under the CA lock. */
static int index_add(const tdsx_ca_t *ca, X509 *const *certs, const char *const *kinds, size_t n)
{
    ca_index_t ix;
    int fd = -1;
    int rc = ca_lock(ca, &fd);
    if (rc)
        return rc;
    rc = index_read(ca, &ix);
    if (rc)
        goto fail;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ca_entry_t e;
        rc = entry_for(certs[i], ca->inter ? ISSUER_INTER : ISSUER_ROOT, kinds[i], &e);
        if (rc == 0)
            rc = index_push(&ix, &e);
        if (rc)
            tdsx_free(e.subject);
    }
    if (rc == 0)
        rc = index_write(ca->dir, &ix, 1);
    index_free(&ix);
fail:
    ca_unlock(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Init and open
 * ---------------------------------------------------------------------------------------- */

static int name_ca(const char *cn, const char *org, X509_NAME **out)
{
    X509_NAME *name = X509_NAME_new();
    if (!name)
        return TDSX_E_NOMEM;
    if (X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)org, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1) {
        X509_NAME_free(name);
        return tdsx__ossl_err(TDSX_E_INVAL);
    }
    *out = name;
    return 0;
}

static int valid_days(int64_t days, int64_t dflt, int64_t *out)
{
    if (days < 0 || days > CA_DAYS_MAX)
        return TDSX_E_INVAL;
    *out = days ? days : dflt;
    return 0;
}

static int init_ca(const char *dir, const tdsx_ca_init_opts_t *o)
{
    static const char *const files[] = {CA_ROOT_KEY,   CA_ROOT_CERT, CA_INTER_KEY,
                                        CA_INTER_CERT, CA_INDEX,     CA_CRLNUMBER};
    EVP_PKEY *root_key = NULL, *inter_key = NULL;
    X509_NAME *root_name = NULL, *inter_name = NULL;
    X509 *root = NULL, *inter = NULL;
    tdsx_buf_t cn;
    ca_index_t ix;
    int64_t days = 0;
    memset(&ix, 0, sizeof ix);
    tdsx_buf_init(&cn, 256);
    if (!dir || !o || !o->name || !o->name[0] || valid_days(o->days, CA_ROOT_DAYS_DEFAULT, &days))
        return TDSX_E_INVAL;
    int rc = make_dir(dir);
    if (rc || (!o->force && (rc = refuse_existing(dir, files, sizeof files / sizeof files[0]))))
        goto fail;

    const int64_t now = tdsx_now();
    if ((rc = tdsx__key_generate("ED25519", &root_key)) ||
        (rc = name_ca(o->name, o->name, &root_name)))
        goto fail;
    const tdsx__cert_spec_t root_spec = {
        .subject = root_name,
        .key = root_key,
        .signer = root_key,
        .not_before = now,
        .not_after = now + days * CA_DAY,
        .ca = 1,
        .pathlen = -1,
        .key_usage = KU_KEY_CERT_SIGN | KU_CRL_SIGN,
    };
    if ((rc = tdsx__cert_build(&root_spec, &root)))
        goto fail;
    if (o->intermediate) {
        if ((rc = tdsx_buf_printf(&cn, "%s Issuing CA", o->name)) ||
            (rc = tdsx__key_generate("ED25519", &inter_key)) ||
            (rc = name_ca((const char *)cn.p, o->name, &inter_name)))
            goto fail;
        /* pathLenConstraint 0: the intermediate issues node certificates, never CAs. */
        const tdsx__cert_spec_t inter_spec = {
            .subject = inter_name,
            .key = inter_key,
            .issuer = root,
            .signer = root_key,
            .not_before = now,
            .not_after = now + days * CA_DAY,
            .ca = 1,
            .pathlen = 0,
            .key_usage = KU_KEY_CERT_SIGN | KU_CRL_SIGN,
        };
        ca_entry_t e;
        if ((rc = tdsx__cert_build(&inter_spec, &inter)) ||
            (rc = entry_for(inter, ISSUER_ROOT, "intermediate", &e)))
            goto fail;
        if ((rc = index_push(&ix, &e))) {
            tdsx_free(e.subject);
            goto fail;
        }
    }

    /* Keys first: a certificate on disk without its key would be a CA that cannot sign. */
    if ((rc = write_key_in(dir, CA_ROOT_KEY, root_key, o->force)) ||
        (rc = write_cert_in(dir, CA_ROOT_CERT, &root, 1, o->force)))
        goto fail;
    if (inter) {
        if ((rc = write_key_in(dir, CA_INTER_KEY, inter_key, o->force)) ||
            (rc = write_cert_in(dir, CA_INTER_CERT, &inter, 1, o->force)))
            goto fail;
    } else {
        /* A forced re-init without an intermediate must not leave the old one behind. */
        char *k = join(dir, CA_INTER_KEY), *c = join(dir, CA_INTER_CERT);
        if (!k || !c)
            rc = TDSX_E_NOMEM;
        else if ((unlink(c) != 0 && errno != ENOENT) || (unlink(k) != 0 && errno != ENOENT))
            rc = -errno;
        tdsx_free(k);
        tdsx_free(c);
        if (rc)
            goto fail;
    }
    if ((rc = index_write(dir, &ix, o->force)) ||
        (rc = write_in(dir, CA_CRLNUMBER, "0\n", 2, 0600, o->force)))
        goto fail;
fail:
    index_free(&ix);
    tdsx_buf_free(&cn);
    X509_free(inter);
    X509_free(root);
    X509_NAME_free(inter_name);
    X509_NAME_free(root_name);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(root_key);
    return rc;
}

int tdsx_ca_init(const char *dir, const tdsx_ca_init_opts_t *o)
{
    /* Leave the OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    int rc = init_ca(dir, o);
    ERR_pop_to_mark();
    return rc;
}

/* Loads one CA certificate and its key and checks they belong together. */
static int load_pair(const char *dir, const char *cert_name, const char *key_name, X509 **cert,
                     EVP_PKEY **key)
{
    STACK_OF(X509) *sk = NULL;
    char *cp = join(dir, cert_name), *kp = join(dir, key_name);
    int rc = TDSX_E_NOMEM;
    if (!cp || !kp)
        goto fail;
    if ((rc = tdsx_cert_load_file(cp, &sk)))
        goto fail;
    if ((rc = tdsx__key_read_private(kp, "ED25519", key)))
        goto fail;
    *cert = sk_X509_shift(sk);
    if (X509_check_private_key(*cert, *key) != 1) {
        rc = tdsx__ossl_err(TDSX_E_CA_STATE);
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
fail:
    sk_X509_pop_free(sk, X509_free);
    tdsx_free(cp);
    tdsx_free(kp);
    if (rc == TDSX_E_NOTFOUND || rc == TDSX_E_CERT_PARSE || rc == TDSX_E_KEY_PARSE)
        rc = TDSX_E_CA_STATE;
    return rc;
}

static int open_ca(const char *dir, tdsx_ca_t **out)
{
    ca_index_t ix;
    int has_inter = 0;
    if (!dir || !out)
        return TDSX_E_INVAL;
    tdsx_ca_t *ca = tdsx_calloc(1, sizeof *ca);
    if (!ca)
        return TDSX_E_NOMEM;
    int rc = TDSX_E_NOMEM;
    ca->dir = tdsx_strdup(dir);
    if (!ca->dir)
        goto fail;
    if ((rc = load_pair(dir, CA_ROOT_CERT, CA_ROOT_KEY, &ca->root, &ca->root_key)) ||
        (rc = exists(dir, CA_INTER_CERT, &has_inter)))
        goto fail;
    if (has_inter && (rc = load_pair(dir, CA_INTER_CERT, CA_INTER_KEY, &ca->inter, &ca->inter_key)))
        goto fail;
    /* Open only a CA whose index can be read, so no later step finds it damaged. */
    if ((rc = index_read(ca, &ix)))
        goto fail;
    index_free(&ix);
    *out = ca;
    return 0;
fail:
    tdsx_ca_free(ca);
    return rc;
}

int tdsx_ca_open(const char *dir, tdsx_ca_t **out)
{
    /* Leave the OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    int rc = open_ca(dir, out);
    ERR_pop_to_mark();
    return rc;
}

void tdsx_ca_free(tdsx_ca_t *ca)
{
    if (!ca)
        return;
    X509_free(ca->inter);
    EVP_PKEY_free(ca->inter_key);
    X509_free(ca->root);
    EVP_PKEY_free(ca->root_key);
    tdsx_free(ca->dir);
    tdsx_free(ca);
}

void tdsx__ca_issuer(const tdsx_ca_t *ca, X509 **cert, EVP_PKEY **key)
{
    *cert = ca->inter ? ca->inter : ca->root;
    *key = ca->inter ? ca->inter_key : ca->root_key;
}

void tdsx__ca_root(const tdsx_ca_t *ca, X509 **cert, EVP_PKEY **key)
{
    *cert = ca->root;
    *key = ca->root_key;
}

/* ------------------------------------------------------------------------------------------
 * Issuing
 * ---------------------------------------------------------------------------------------- */

static int issue_node(tdsx_ca_t *ca, const tdsx_issue_opts_t *o, const char *outdir)
{
    static const char *const files[] = {
        TDSX_CRED_ROOT,      TDSX_CRED_CHAIN,    TDSX_CRED_AUTH_CERT, TDSX_CRED_AUTH_KEY,
        TDSX_CRED_SIGN_CERT, TDSX_CRED_SIGN_KEY, TDSX_CRED_ENC_PUB,   TDSX_CRED_ENC_KEY};
    static const char *const kinds[] = {"auth", "sign"};
    EVP_PKEY *auth_key = NULL, *sign_key = NULL, *enc_key = NULL;
    X509_NAME *subject = NULL;
    X509 *certs[2] = {NULL, NULL};
    int64_t days = 0;
    int org_warning = 0;
    if (!ca || !o || !outdir || o->not_before < 0 ||
        valid_days(o->days, CA_NODE_DAYS_DEFAULT, &days))
        return TDSX_E_INVAL;
    const char *role_oid = tdsx__role_oid(o->role);
    if (!role_oid)
        return TDSX_E_INVAL;
    /* SPEC §2: the USCC is validated at issuance; the GB 11714 part only warns. */
    int rc = tdsx_uscc_check(o->uscc, &org_warning);
    if (rc)
        return rc;
    if (org_warning)
        tdsx_log(TDSX_LOG_WARN, "ca.uscc_org_code", TDSX_KV_S("uscc", o->uscc),
                 TDSX_KV_S("detail", "organisation code fails its GB 11714 check"));
    if ((rc = tdsx__name_node(o->org, o->uscc, o->node, &subject)))
        return rc;
    if ((rc = make_dir(outdir)) ||
        (!o->force && (rc = refuse_existing(outdir, files, sizeof files / sizeof files[0]))))
        goto fail;

    X509 *issuer = NULL;
    EVP_PKEY *signer = NULL;
    tdsx__ca_issuer(ca, &issuer, &signer);
    const int64_t nb = o->not_before ? o->not_before : tdsx_now();
    const char *const policies[] = {role_oid};
    tdsx__cert_spec_t spec = {
        .subject = subject,
        .issuer = issuer,
        .signer = signer,
        .not_before = nb,
        .not_after = nb + days * CA_DAY,
        .pathlen = -1,
        .policies = policies,
        .n_policies = 1,
    };
    if ((rc = tdsx__key_generate("ED25519", &auth_key)) ||
        (rc = tdsx__key_generate("ED25519", &sign_key)) ||
        (rc = tdsx__key_generate("X25519", &enc_key)))
        goto fail;
    spec.key = auth_key;
    spec.key_usage = KU_DIGITAL_SIGNATURE;
    spec.ext_key_usage = TDSX__EKU_CLIENT | TDSX__EKU_SERVER;
    if ((rc = tdsx__cert_build(&spec, &certs[0])))
        goto fail;
    spec.key = sign_key;
    spec.key_usage = KU_NON_REPUDIATION;
    spec.ext_key_usage = 0;
    if ((rc = tdsx__cert_build(&spec, &certs[1])))
        goto fail;

    /* Recorded before anything is written: a certificate that exists must be revocable. */
    if ((rc = index_add(ca, certs, kinds, 2)))
        goto fail;
    if ((rc = write_cert_in(outdir, TDSX_CRED_ROOT, &ca->root, 1, o->force)) ||
        (rc = write_cert_in(outdir, TDSX_CRED_CHAIN, &ca->inter, ca->inter ? 1 : 0, o->force)) ||
        (rc = write_key_in(outdir, TDSX_CRED_AUTH_KEY, auth_key, o->force)) ||
        (rc = write_cert_in(outdir, TDSX_CRED_AUTH_CERT, &certs[0], 1, o->force)) ||
        (rc = write_key_in(outdir, TDSX_CRED_SIGN_KEY, sign_key, o->force)) ||
        (rc = write_cert_in(outdir, TDSX_CRED_SIGN_CERT, &certs[1], 1, o->force)) ||
        (rc = write_key_in(outdir, TDSX_CRED_ENC_KEY, enc_key, o->force)))
        goto fail;
    char *pub = join(outdir, TDSX_CRED_ENC_PUB);
    rc = pub ? tdsx__key_write_public(pub, enc_key, o->force) : TDSX_E_NOMEM;
    tdsx_free(pub);
fail:
    X509_free(certs[0]);
    X509_free(certs[1]);
    X509_NAME_free(subject);
    EVP_PKEY_free(enc_key);
    EVP_PKEY_free(sign_key);
    EVP_PKEY_free(auth_key);
    return rc;
}

int tdsx_ca_issue(tdsx_ca_t *ca, const tdsx_issue_opts_t *o, const char *outdir)
{
    /* Leave the OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    int rc = issue_node(ca, o, outdir);
    ERR_pop_to_mark();
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Revocation and CRLs
 * ---------------------------------------------------------------------------------------- */

/* Which of this CA's keys signed cert, or -1. */
static int issued_by(const tdsx_ca_t *ca, X509 *cert)
{
    X509 *cas[2] = {ca->root, ca->inter};
    for (int i = ISSUER_INTER; i >= ISSUER_ROOT; i--) {
        if (!cas[i] || X509_check_issued(cas[i], cert) != X509_V_OK)
            continue;
        /* Name and key identifier can be copied; only the signature proves issuance. */
        if (X509_verify(cert, X509_get0_pubkey(cas[i])) == 1)
            return i;
    }
    return -1;
}

static int revoke_cert(tdsx_ca_t *ca, X509 *cert)
{
    char serial[CA_SERIAL_HEX_MAX + 1];
    ca_index_t ix;
    int fd = -1;
    if (!ca || !cert)
        return TDSX_E_INVAL;
    int issuer = issued_by(ca, cert);
    if (issuer < 0)
        return TDSX_E_NOTFOUND;
    int rc = serial_hex(cert, serial);
    if (rc || (rc = ca_lock(ca, &fd)))
        return rc;
    if ((rc = index_read(ca, &ix)))
        goto fail;
    ca_entry_t *found = NULL;
    for (size_t i = 0; !found && i < ix.n; i++) {
        if (ix.e[i].issuer == issuer && strcmp(ix.e[i].serial, serial) == 0)
            found = &ix.e[i];
    }
    if (!found) {
        rc = TDSX_E_NOTFOUND;
    } else if (!found->revoked_at) {
        /* Revoking twice keeps the first date: later CRLs must not move it. */
        found->revoked_at = tdsx_now();
        rc = index_write(ca->dir, &ix, 1);
    }
    index_free(&ix);
fail:
    ca_unlock(fd);
    return rc;
}

int tdsx_ca_revoke(tdsx_ca_t *ca, X509 *cert)
{
    /* Leave the OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    int rc = revoke_cert(ca, cert);
    ERR_pop_to_mark();
    return rc;
}

static int add_revoked(X509_CRL *crl, const ca_entry_t *e)
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    X509_REVOKED *r = X509_REVOKED_new();
    int rc = TDSX_E_NOMEM;
    if (!r || BN_hex2bn(&bn, e->serial) == 0 || !(serial = BN_to_ASN1_INTEGER(bn, NULL)) ||
        !(when = ASN1_TIME_set(NULL, (time_t)e->revoked_at)))
        goto fail;
    if (X509_REVOKED_set_serialNumber(r, serial) != 1 ||
        X509_REVOKED_set_revocationDate(r, when) != 1 || X509_CRL_add0_revoked(crl, r) != 1)
        goto fail;
    r = NULL; /* the CRL owns it now */
    rc = 0;
fail:
    X509_REVOKED_free(r);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

/* One v2 CRL for the CA `which` (RFC 5280 §5.1), numbered, with the issuer's key id. */
static int build_crl(const tdsx_ca_t *ca, int which, const ca_index_t *ix, int64_t now,
                     int64_t next, long number, X509_CRL **out)
{
    X509 *issuer = which == ISSUER_INTER ? ca->inter : ca->root;
    EVP_PKEY *key = which == ISSUER_INTER ? ca->inter_key : ca->root_key;
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = NULL;
    AUTHORITY_KEYID *akid = NULL;
    int rc = TDSX_E_NOMEM;
    X509_CRL *crl = X509_CRL_new();
    if (!crl || X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) != 1)
        goto fail;
    if (!(t = ASN1_TIME_set(NULL, (time_t)now)) || X509_CRL_set1_lastUpdate(crl, t) != 1 ||
        !ASN1_TIME_set(t, (time_t)next) || X509_CRL_set1_nextUpdate(crl, t) != 1)
        goto fail;
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->e[i].issuer == which && ix->e[i].revoked_at && (rc = add_revoked(crl, &ix->e[i])))
            goto fail;
    }
    rc = TDSX_E_NOMEM;
    if (!(num = ASN1_INTEGER_new()) || ASN1_INTEGER_set(num, number) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_DEFAULT) != 1)
        goto fail;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    if (!(akid = AUTHORITY_KEYID_new()) || !ski || !(akid->keyid = ASN1_OCTET_STRING_dup(ski)) ||
        X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) != 1)
        goto fail;
    if (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, key, NULL) <= 0) {
        rc = tdsx__ossl_err(TDSX_E_INTERNAL);
        goto fail;
    }
    *out = crl;
    crl = NULL;
    rc = 0;
fail:
    AUTHORITY_KEYID_free(akid);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

/* Takes the next CRL number; the caller holds the lock. */
static int next_crl_number(const tdsx_ca_t *ca, long *out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int64_t last = 0;
    char *path = join(ca->dir, CA_CRLNUMBER);
    if (!path)
        return TDSX_E_NOMEM;
    int rc = tdsx_file_read(path, 64, &data, &len);
    tdsx_free(path);
    if (rc == TDSX_E_NOTFOUND)
        rc = 0;
    else if (rc == 0) {
        tdsx_bytes_t c = tdsx_bytes(data, len);
        rc = field_i64(take_until(&c, '\n'), &last);
    }
    tdsx_free(data);
    if (rc)
        return rc == TDSX_E_TOOBIG ? TDSX_E_CA_STATE : rc;
    if (last >= LONG_MAX - 1)
        return TDSX_E_CA_STATE;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 64);
    rc = tdsx_buf_printf(&b, "%lld\n", (long long)(last + 1));
    if (rc == 0)
        rc = write_in(ca->dir, CA_CRLNUMBER, b.p, b.len, 0600, 1);
    tdsx_buf_free(&b);
    if (rc == 0)
        *out = (long)(last + 1);
    return rc;
}

static int write_crl(tdsx_ca_t *ca, int64_t days, const char *path, int force)
{
    X509_CRL *crls[2] = {NULL, NULL};
    ca_index_t ix;
    tdsx_buf_t pem;
    struct stat st;
    long number = 0;
    int fd = -1;
    memset(&ix, 0, sizeof ix);
    tdsx_buf_init(&pem, TDSX__PEM_CAP);
    if (!ca || !path || valid_days(days, CA_CRL_DAYS_DEFAULT, &days))
        return TDSX_E_INVAL;
    /* Refuse before taking a CRL number that would then go unused. */
    if (!force && lstat(path, &st) == 0)
        return TDSX_E_EXISTS;
    int rc = ca_lock(ca, &fd);
    if (rc)
        return rc;
    if ((rc = index_read(ca, &ix)) || (rc = next_crl_number(ca, &number)))
        goto fail;
    ca_unlock(fd);
    fd = -1;
    const int64_t now = tdsx_now();
    if ((rc = build_crl(ca, ISSUER_ROOT, &ix, now, now + days * CA_DAY, number, &crls[0])) ||
        (ca->inter &&
         (rc = build_crl(ca, ISSUER_INTER, &ix, now, now + days * CA_DAY, number, &crls[1]))))
        goto fail;
    for (int i = 0; rc == 0 && i < 2; i++)
        rc = crls[i] ? tdsx__pem_append_crl(&pem, crls[i]) : 0;
    if (rc == 0)
        rc = tdsx_file_write(path, pem.p, pem.len, 0644, force);
fail:
    ca_unlock(fd);
    X509_CRL_free(crls[0]);
    X509_CRL_free(crls[1]);
    tdsx_buf_free(&pem);
    index_free(&ix);
    return rc;
}

int tdsx_ca_crl(tdsx_ca_t *ca, int64_t days, const char *path, int force)
{
    /* Leave the OpenSSL error queue as the caller had it. */
    ERR_set_mark();
    int rc = write_crl(ca, days, path, force);
    ERR_pop_to_mark();
    return rc;
}
