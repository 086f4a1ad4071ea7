/* Certificates: PEM in and out, fingerprints, and the one builder every certificate the CA
 * makes goes through (RFC 5280 profile). */
#include "internal.h"

#include <limits.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

int tdsx__ossl_err(int fallback)
{
    /* Only the newest entry: older ones may be the caller's, and every public function
     * of this module removes its own entries (ERR_set_mark / ERR_pop_to_mark). */
    unsigned long e = ERR_peek_last_error();
    return e && ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE ? TDSX_E_NOMEM : fallback;
}

/* 1 when the last queued error only says the input held no further PEM block. */
static int pem_at_end(void)
{
    unsigned long e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

static BIO *bio_from(tdsx_bytes_t in, int *rc)
{
    if (in.n > INT_MAX) {
        *rc = TDSX_E_TOOBIG;
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(in.n ? in.p : (const uint8_t *)"", (int)in.n);
    *rc = bio ? 0 : TDSX_E_NOMEM;
    return bio;
}

int tdsx__pem_certs(tdsx_bytes_t pem, STACK_OF(X509) **out)
{
    int rc;
    STACK_OF(X509) *sk = NULL;
    BIO *bio = bio_from(pem, &rc);
    if (!bio)
        return rc;
    ERR_set_mark();
    sk = sk_X509_new_null();
    if (!sk) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!x) {
            if (pem_at_end())
                break;
            rc = tdsx__ossl_err(TDSX_E_CERT_PARSE);
            goto fail;
        }
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            rc = TDSX_E_NOMEM;
            goto fail;
        }
    }
    ERR_pop_to_mark();
    BIO_free(bio);
    *out = sk;
    return 0;
fail:
    ERR_pop_to_mark();
    sk_X509_pop_free(sk, X509_free);
    BIO_free(bio);
    return rc;
}

int tdsx__pem_crls(tdsx_bytes_t pem, STACK_OF(X509_CRL) **out)
{
    int rc;
    STACK_OF(X509_CRL) *sk = NULL;
    BIO *bio = bio_from(pem, &rc);
    if (!bio)
        return rc;
    ERR_set_mark();
    sk = sk_X509_CRL_new_null();
    if (!sk) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    for (;;) {
        X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
        if (!crl) {
            if (pem_at_end())
                break;
            rc = tdsx__ossl_err(TDSX_E_CRL_INVALID);
            goto fail;
        }
        if (!sk_X509_CRL_push(sk, crl)) {
            X509_CRL_free(crl);
            rc = TDSX_E_NOMEM;
            goto fail;
        }
    }
    ERR_pop_to_mark();
    BIO_free(bio);
    *out = sk;
    return 0;
fail:
    ERR_pop_to_mark();
    sk_X509_CRL_pop_free(sk, X509_CRL_free);
    BIO_free(bio);
    return rc;
}

/* Moves what a memory BIO holds to the end of b. */
static int bio_drain(BIO *bio, tdsx_buf_t *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0)
        return TDSX_E_INTERNAL;
    return tdsx_buf_append(b, data, (size_t)n);
}

int tdsx__pem_append_cert(tdsx_buf_t *b, X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TDSX_E_NOMEM;
    int rc = PEM_write_bio_X509(bio, x) == 1 ? bio_drain(bio, b) : tdsx__ossl_err(TDSX_E_INTERNAL);
    BIO_free(bio);
    return rc;
}

int tdsx__pem_append_crl(tdsx_buf_t *b, X509_CRL *crl)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TDSX_E_NOMEM;
    int rc =
        PEM_write_bio_X509_CRL(bio, crl) == 1 ? bio_drain(bio, b) : tdsx__ossl_err(TDSX_E_INTERNAL);
    BIO_free(bio);
    return rc;
}

int tdsx__asn1_time_get(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return TDSX_E_CERT_PARSE;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int tdsx__name_text(const X509_NAME *name, tdsx_buf_t *b)
{
    /* RFC 2253 escaping minus ESC_MSB, so 中文 names stay readable; ESC_CTRL keeps tabs and
     * newlines out of the one-line form. */
    const unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TDSX_E_NOMEM;
    tdsx_buf_reset(b);
    /* bio_drain appends through tdsx_buf_append, which keeps b NUL-terminated. */
    int rc = X509_NAME_print_ex(bio, name, 0, flags) >= 0 ? bio_drain(bio, b)
                                                          : tdsx__ossl_err(TDSX_E_INTERNAL);
    BIO_free(bio);
    return rc;
}

int tdsx_cert_fingerprint(X509 *cert, uint8_t out[32])
{
    unsigned int len = 0;
    if (!cert || !out)
        return TDSX_E_INVAL;
    ERR_set_mark();
    int rc = X509_digest(cert, EVP_sha256(), out, &len) == 1 && len == 32
                 ? 0
                 : tdsx__ossl_err(TDSX_E_INTERNAL);
    ERR_pop_to_mark();
    return rc;
}

int tdsx_cert_load_file(const char *path, STACK_OF(X509) **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    STACK_OF(X509) *sk = NULL;
    if (!path || !out)
        return TDSX_E_INVAL;
    int rc = tdsx_file_read(path, TDSX__PEM_CAP, &data, &len);
    if (rc)
        return rc;
    rc = tdsx__pem_certs(tdsx_bytes(data, len), &sk);
    tdsx_free(data);
    if (rc)
        return rc;
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return TDSX_E_CERT_PARSE;
    }
    *out = sk;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Building
 * ---------------------------------------------------------------------------------------- */

/* RFC 5280 §4.1.2.2: positive, at most 20 octets. 16 random octets with the top bit clear
 * and the next one set, so every serial is exactly 16 octets long and non-negative. */
static int set_random_serial(X509 *x)
{
    uint8_t raw[16];
    int rc = TDSX_E_NOMEM;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return tdsx__ossl_err(TDSX_E_INTERNAL);
    raw[0] = (uint8_t)((raw[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    if (serial && X509_set_serialNumber(x, serial) == 1)
        rc = 0;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

static int set_time(X509 *x, int64_t t, int which)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t);
    if (!at)
        return tdsx__ossl_err(TDSX_E_INVAL);
    int ok = which == 0 ? X509_set1_notBefore(x, at) : X509_set1_notAfter(x, at);
    ASN1_TIME_free(at);
    return ok == 1 ? 0 : TDSX_E_NOMEM;
}

/* RFC 7093 §2 method 1: the leftmost 160 bits of SHA-256 over the subjectPublicKey bits. */
static int add_ski(X509 *x, ASN1_OCTET_STRING **ski_out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_pubkey_digest(x, EVP_sha256(), md, &len) != 1 || len < 20)
        return tdsx__ossl_err(TDSX_E_INTERNAL);
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    int rc = TDSX_E_NOMEM;
    if (ski && ASN1_OCTET_STRING_set(ski, md, 20) == 1 &&
        X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
    if (rc == 0 && ski_out)
        *ski_out = ski;
    else
        ASN1_OCTET_STRING_free(ski);
    return rc;
}

static int add_aki(X509 *x, const ASN1_OCTET_STRING *issuer_ski)
{
    if (!issuer_ski)
        return TDSX_E_INVAL;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    int rc = TDSX_E_NOMEM;
    if (akid) {
        akid->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
        if (akid->keyid &&
            X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1)
            rc = 0;
    }
    AUTHORITY_KEYID_free(akid);
    return rc;
}

static int add_basic_constraints(X509 *x, int ca, int pathlen)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int rc = TDSX_E_NOMEM;
    if (!bc)
        return rc;
    bc->ca = ca ? 0xff : 0;
    if (ca && pathlen >= 0) {
        bc->pathlen = ASN1_INTEGER_new();
        if (!bc->pathlen || ASN1_INTEGER_set(bc->pathlen, pathlen) != 1)
            goto fail;
    }
    /* RFC 5280 §4.2.1.9: critical in CA certificates; we mark it so everywhere. */
    if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
fail:
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

static int add_key_usage(X509 *x, unsigned ku)
{
    /* KU_DIGITAL_SIGNATURE is 0x80 and names bit 0 of the BIT STRING (RFC 5280 §4.2.1.3). */
    ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
    int rc = TDSX_E_NOMEM;
    if (!bits)
        return rc;
    for (int bit = 0; bit < 8; bit++) {
        if ((ku & (0x80u >> bit)) && ASN1_BIT_STRING_set_bit(bits, bit, 1) != 1)
            goto fail;
    }
    if (X509_add1_ext_i2d(x, NID_key_usage, bits, 1, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
fail:
    ASN1_BIT_STRING_free(bits);
    return rc;
}

static int add_ext_key_usage(X509 *x, unsigned eku)
{
    EXTENDED_KEY_USAGE *list = sk_ASN1_OBJECT_new_null();
    int rc = TDSX_E_NOMEM;
    if (!list)
        return rc;
    if ((eku & TDSX__EKU_CLIENT) && !sk_ASN1_OBJECT_push(list, OBJ_nid2obj(NID_client_auth)))
        goto fail;
    if ((eku & TDSX__EKU_SERVER) && !sk_ASN1_OBJECT_push(list, OBJ_nid2obj(NID_server_auth)))
        goto fail;
    if (X509_add1_ext_i2d(x, NID_ext_key_usage, list, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
fail:
    /* OBJ_nid2obj objects are static; ASN1_OBJECT_free leaves them alone. */
    sk_ASN1_OBJECT_pop_free(list, ASN1_OBJECT_free);
    return rc;
}

static int add_policies(X509 *x, const char *const *oids, size_t n)
{
    CERTIFICATEPOLICIES *pols = sk_POLICYINFO_new_null();
    int rc = TDSX_E_NOMEM;
    if (!pols)
        return rc;
    for (size_t i = 0; i < n; i++) {
        POLICYINFO *pi = POLICYINFO_new();
        if (!pi)
            goto fail;
        if (!sk_POLICYINFO_push(pols, pi)) {
            POLICYINFO_free(pi);
            goto fail;
        }
        ASN1_OBJECT_free(pi->policyid);
        pi->policyid = OBJ_txt2obj(oids[i], 1);
        if (!pi->policyid) {
            rc = tdsx__ossl_err(TDSX_E_INVAL);
            goto fail;
        }
    }
    if (X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
fail:
    sk_POLICYINFO_pop_free(pols, POLICYINFO_free);
    return rc;
}

int tdsx__cert_build(const tdsx__cert_spec_t *s, X509 **out)
{
    ASN1_OCTET_STRING *own_ski = NULL;
    int rc = TDSX_E_INVAL;
    if (!s || !out || !s->subject || !s->key || !s->signer || s->not_after < s->not_before ||
        (s->n_policies && !s->policies))
        return TDSX_E_INVAL;
    X509 *x = X509_new();
    if (!x)
        return TDSX_E_NOMEM;
    const X509_NAME *issuer_name = s->issuer ? X509_get_subject_name(s->issuer) : s->subject;
    rc = TDSX_E_NOMEM;
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, s->subject) != 1 ||
        X509_set_issuer_name(x, issuer_name) != 1 || X509_set_pubkey(x, s->key) != 1)
        goto fail;
    if ((rc = set_random_serial(x)) || (rc = set_time(x, s->not_before, 0)) ||
        (rc = set_time(x, s->not_after, 1)))
        goto fail;
    if ((rc = add_basic_constraints(x, s->ca, s->pathlen)))
        goto fail;
    if (s->key_usage && (rc = add_key_usage(x, s->key_usage)))
        goto fail;
    if (s->ext_key_usage && (rc = add_ext_key_usage(x, s->ext_key_usage)))
        goto fail;
    if ((rc = add_ski(x, &own_ski)))
        goto fail;
    if ((rc = add_aki(x, s->issuer ? X509_get0_subject_key_id(s->issuer) : own_ski)))
        goto fail;
    if (s->n_policies && (rc = add_policies(x, s->policies, s->n_policies)))
        goto fail;
    /* Ed25519 signs the message itself (RFC 8410 §6): no separate digest. */
    const EVP_MD *md = EVP_PKEY_is_a(s->signer, "ED25519") ? NULL : EVP_sha256();
    if (X509_sign(x, s->signer, md) <= 0) {
        rc = tdsx__ossl_err(TDSX_E_INTERNAL);
        goto fail;
    }
    ASN1_OCTET_STRING_free(own_ski);
    *out = x;
    return 0;
fail:
    ASN1_OCTET_STRING_free(own_ski);
    X509_free(x);
    return rc;
}

/* UTF-8 text with no control characters; `no_slash` keeps the "<USCC>/<node>" id
 * unambiguous. */
static int text_ok(const char *s, size_t max, int no_slash)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (no_slash && c == '/'))
            return 0;
    }
    return 1;
}

int tdsx__name_node(const char *org, const char *uscc, const char *node, X509_NAME **out)
{
    tdsx_identity_t sizes;
    if (!out || !text_ok(org, sizeof sizes.org - 1, 0) ||
        !text_ok(node, sizeof sizes.node - 1, 1) || !text_ok(uscc, TDSX_USCC_LEN, 1))
        return TDSX_E_INVAL;
    X509_NAME *name = X509_NAME_new();
    if (!name)
        return TDSX_E_NOMEM;
    /* MBSTRING_UTF8 validates the encoding; OpenSSL 3 stores O and CN as UTF8String and the
     * X.520 serialNumber as PrintableString. */
    if (X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)org, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_serialNumber, MBSTRING_UTF8,
                                   (const unsigned char *)uscc, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)node,
                                   -1, -1, 0) != 1) {
        X509_NAME_free(name);
        return tdsx__ossl_err(TDSX_E_INVAL);
    }
    *out = name;
    return 0;
}
