/* Trust sets and the one certificate verifier: OpenSSL builds and checks the chain (RFC 5280
 * §6) and revocation (§6.3); then the TDSX profile (SPEC §2) decides key type, purpose, role
 * and subject. */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

/* Caps, defined once. */
#define VERIFY_CACHE_SLOTS 1024u   /* verified leaves a trust set remembers (direct-mapped) */
#define VERIFY_CACHE_TTL_S 300     /* a remembered success is re-checked at least this often */
#define VERIFY_CACHE_EXTRAS_MAX 8u /* a leaf offered with more extras is never remembered */

/* A leaf that verified "now" with these options: every connection of a peer presents the
 * same two certificates (auth in TLS, sign in its Hello), and re-verifying them cost four
 * Ed25519 verifications and two certificate parses per handshake — 40% of tdsxd's
 * instructions per connection under callgrind. Only successes are kept, only until the
 * earliest of: the chain's first notAfter, the CRLs' first nextUpdate, the TTL. Any change to
 * the trust set forgets them all. */
typedef struct {
    uint8_t key[32]; /* cache_key(): the leaf with the extras it came with */
    uint8_t used, purpose, role, require_crl;
    int64_t until; /* exclusive */
    tdsx_identity_t id;
} vcache_t;

struct tdsx_trust_s {
    X509_STORE *store;             /* anchors only */
    STACK_OF(X509) *intermediates; /* untrusted, offered to chain building */
    STACK_OF(X509_CRL) *crls;
    int64_t crls_until;   /* earliest nextUpdate among the CRLs; INT64_MAX when none */
    pthread_mutex_t lock; /* guards cache: verifications run on several threads */
    vcache_t *cache;      /* VERIFY_CACHE_SLOTS entries; NULL: caching off (no memory) */
};

static void cache_forget(tdsx_trust_t *t)
{
    pthread_mutex_lock(&t->lock);
    if (t->cache)
        memset(t->cache, 0, VERIFY_CACHE_SLOTS * sizeof *t->cache);
    pthread_mutex_unlock(&t->lock);
}

static vcache_t *cache_slot(const tdsx_trust_t *t, const uint8_t key[32])
{
    return &t->cache[((size_t)key[0] | (size_t)key[1] << 8) % VERIFY_CACHE_SLOTS];
}

/* SHA-256 over the SHA-256 of each certificate's DER, leaf first: the same leaf offered with
 * other extras is another question (its answer may differ), so it is another entry. 0, or -1
 * when it cannot be computed (then nothing is cached). */
static int cache_key(const uint8_t leaf_fp[32], const uint8_t *extra_fp, size_t n_extra,
                     uint8_t key[32])
{
    uint8_t all[32 * (1 + VERIFY_CACHE_EXTRAS_MAX)];
    unsigned int len = 0;
    if (n_extra > VERIFY_CACHE_EXTRAS_MAX)
        return -1;
    memcpy(all, leaf_fp, 32);
    if (n_extra)
        memcpy(all + 32, extra_fp, 32 * n_extra);
    return EVP_Digest(all, 32 * (1 + n_extra), key, &len, EVP_sha256(), NULL) == 1 && len == 32
               ? 0
               : -1;
}

/* 1 and *id filled when key verified with options o and is still remembered at now. */
static int cache_get(const tdsx_trust_t *t, const uint8_t key[32], const tdsx_verify_opts_t *o,
                     int64_t now, tdsx_identity_t *id)
{
    if (!t->cache || o->at)
        return 0;
    tdsx_trust_t *mt = (tdsx_trust_t *)t; /* the lock and the cache, not the trust set */
    int hit = 0;
    pthread_mutex_lock(&mt->lock);
    const vcache_t *e = cache_slot(t, key);
    if (e->used && now < e->until && memcmp(e->key, key, 32) == 0 && e->purpose == o->purpose &&
        e->role == o->role && e->require_crl == (o->require_crl != 0)) {
        if (id)
            *id = e->id;
        hit = 1;
    }
    pthread_mutex_unlock(&mt->lock);
    return hit;
}

static void cache_put(const tdsx_trust_t *t, const uint8_t key[32], const tdsx_verify_opts_t *o,
                      int64_t now, int64_t chain_until, const tdsx_identity_t *id)
{
    if (!t->cache || o->at)
        return;
    int64_t until = now + VERIFY_CACHE_TTL_S;
    if (chain_until < until)
        until = chain_until;
    if (t->crls_until < until)
        until = t->crls_until;
    if (until <= now)
        return;
    tdsx_trust_t *mt = (tdsx_trust_t *)t;
    pthread_mutex_lock(&mt->lock);
    vcache_t *e = cache_slot(t, key);
    memcpy(e->key, key, 32);
    e->used = 1;
    e->purpose = (uint8_t)o->purpose;
    e->role = (uint8_t)o->role;
    e->require_crl = o->require_crl != 0;
    e->until = until;
    e->id = *id;
    pthread_mutex_unlock(&mt->lock);
}

int tdsx_trust_new(tdsx_trust_t **out)
{
    if (!out)
        return TDSX_E_INVAL;
    tdsx_trust_t *t = tdsx_calloc(1, sizeof *t);
    if (!t)
        return TDSX_E_NOMEM;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        tdsx_free(t);
        return TDSX_E_NOMEM;
    }
    t->crls_until = INT64_MAX;
    t->store = X509_STORE_new();
    t->intermediates = sk_X509_new_null();
    t->crls = sk_X509_CRL_new_null();
    t->cache = tdsx_calloc(VERIFY_CACHE_SLOTS, sizeof *t->cache);
    if (!t->store || !t->intermediates || !t->crls || !t->cache) {
        tdsx_trust_free(t);
        return TDSX_E_NOMEM;
    }
    *out = t;
    return 0;
}

void tdsx_trust_free(tdsx_trust_t *t)
{
    if (!t)
        return;
    X509_STORE_free(t->store);
    sk_X509_pop_free(t->intermediates, X509_free);
    sk_X509_CRL_pop_free(t->crls, X509_CRL_free);
    tdsx_free(t->cache);
    pthread_mutex_destroy(&t->lock);
    tdsx_free(t);
}

int tdsx_trust_add_anchors_pem(tdsx_trust_t *t, const void *pem, size_t n)
{
    STACK_OF(X509) *certs = NULL;
    if (!t || (!pem && n))
        return TDSX_E_INVAL;
    int rc = tdsx__pem_certs(tdsx_bytes(pem, n), &certs);
    if (rc)
        return rc;
    cache_forget(t);
    if (sk_X509_num(certs) == 0)
        rc = TDSX_E_CERT_PARSE;
    ERR_set_mark();
    for (int i = 0; rc == 0 && i < sk_X509_num(certs); i++) {
        /* The store takes its own reference. */
        if (X509_STORE_add_cert(t->store, sk_X509_value(certs, i)) != 1)
            rc = tdsx__ossl_err(TDSX_E_NOMEM);
    }
    ERR_pop_to_mark();
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int tdsx_trust_add_intermediates_pem(tdsx_trust_t *t, const void *pem, size_t n)
{
    STACK_OF(X509) *certs = NULL;
    if (!t || (!pem && n))
        return TDSX_E_INVAL;
    int rc = tdsx__pem_certs(tdsx_bytes(pem, n), &certs);
    if (rc)
        return rc;
    cache_forget(t);
    while (rc == 0 && sk_X509_num(certs) > 0) {
        X509 *x = sk_X509_shift(certs);
        if (!sk_X509_push(t->intermediates, x)) {
            X509_free(x);
            rc = TDSX_E_NOMEM;
        }
    }
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int tdsx_trust_add_crls_pem(tdsx_trust_t *t, const void *pem, size_t n)
{
    STACK_OF(X509_CRL) *crls = NULL;
    if (!t || (!pem && n))
        return TDSX_E_INVAL;
    int rc = tdsx__pem_crls(tdsx_bytes(pem, n), &crls);
    if (rc)
        return rc;
    cache_forget(t);
    if (sk_X509_CRL_num(crls) == 0)
        rc = TDSX_E_CRL_INVALID;
    while (rc == 0 && sk_X509_CRL_num(crls) > 0) {
        X509_CRL *crl = sk_X509_CRL_shift(crls);
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        int64_t next_s;
        if (next && tdsx__asn1_time_get(next, &next_s) == 0 && next_s < t->crls_until)
            t->crls_until = next_s;
        if (!sk_X509_CRL_push(t->crls, crl)) {
            X509_CRL_free(crl);
            rc = TDSX_E_NOMEM;
        }
    }
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

typedef int (*add_pem_fn)(tdsx_trust_t *t, const void *pem, size_t n);

static int add_file(tdsx_trust_t *t, const char *path, add_pem_fn add)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (!t || !path)
        return TDSX_E_INVAL;
    int rc = tdsx_file_read(path, TDSX__PEM_CAP, &data, &len);
    if (rc)
        return rc;
    rc = add(t, data, len);
    tdsx_free(data);
    return rc;
}

int tdsx_trust_add_anchors_file(tdsx_trust_t *t, const char *path)
{
    return add_file(t, path, tdsx_trust_add_anchors_pem);
}

int tdsx_trust_add_crls_file(tdsx_trust_t *t, const char *path)
{
    return add_file(t, path, tdsx_trust_add_crls_pem);
}

/* ------------------------------------------------------------------------------------------
 * Verification
 * ---------------------------------------------------------------------------------------- */

/* One OpenSSL verdict, one TDSX code. */
static int map_x509_err(int e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return TDSX_E_CERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID: return TDSX_E_CERT_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED: return TDSX_E_CERT_REVOKED;

    case X509_V_ERR_UNABLE_TO_GET_CRL: return TDSX_E_CRL_MISSING;
    case X509_V_ERR_CRL_HAS_EXPIRED: return TDSX_E_CRL_EXPIRED;
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION: return TDSX_E_CRL_INVALID;

    /* No path to an anchor, or a signature on the path that does not verify: either way
     * nobody we trust vouches for this certificate. */
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return TDSX_E_CERT_UNTRUSTED;

    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: return TDSX_E_CERT_PARSE;

    case X509_V_ERR_OUT_OF_MEM: return TDSX_E_NOMEM;

    /* Structure of the path: CA flags, path length, key identifiers, extensions, the
     * RFC 5280 profile checks of X509_V_FLAG_X509_STRICT. */
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_INVALID_NON_CA:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
    case X509_V_ERR_AKID_SKID_MISMATCH:
    case X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH:
    case X509_V_ERR_SUBJECT_ISSUER_MISMATCH:
    case X509_V_ERR_PATH_LOOP:
    case X509_V_ERR_INVALID_EXTENSION:
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
    default: return TDSX_E_CERT_CHAIN;
    }
}

typedef struct verify_state_s {
    const tdsx_trust_t *t;
    int require_crl;
    int crl_unusable; /* a CRL names the issuer but OpenSSL could not use it */
} verify_state_t;

/* 1 when the trust set holds a CRL whose issuer name is `name`. */
static int has_crl_named(const tdsx_trust_t *t, const X509_NAME *name)
{
    for (int i = 0; i < sk_X509_CRL_num(t->crls); i++) {
        if (X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(t->crls, i)), name) == 0)
            return 1;
    }
    return 0;
}

static int on_verify(int ok, X509_STORE_CTX *ctx)
{
    if (ok)
        return 1;
    verify_state_t *st = X509_STORE_CTX_get_app_data(ctx);
    if (!st || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNABLE_TO_GET_CRL)
        return 0;
    /* A CRL that claims to come from this issuer but was not usable (another key made it,
     * or a lookup failed) fails closed: it may be the one listing this certificate. */
    X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
    if (!cur || has_crl_named(st->t, X509_get_issuer_name(cur))) {
        st->crl_unusable = 1;
        return 0;
    }
    /* CRL checking is on whenever a CRL is present, so a CA without any is only an error
     * when the caller asked for complete revocation data. */
    return st->require_crl ? 0 : 1;
}

static int check_chain(const tdsx_trust_t *t, X509 *leaf, STACK_OF(X509) *extra,
                       const tdsx_verify_opts_t *o, int64_t *chain_until)
{
    verify_state_t st = {t, o->require_crl ? 1 : 0, 0};
    int rc = TDSX_E_NOMEM;
    STACK_OF(X509) *untrusted = sk_X509_dup(t->intermediates);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!untrusted || !ctx)
        goto fail;
    for (int i = 0; extra && i < sk_X509_num(extra); i++) {
        /* Borrowed: the context never frees its untrusted certificates. */
        if (!sk_X509_push(untrusted, sk_X509_value(extra, i)))
            goto fail;
    }
    if (X509_STORE_CTX_init(ctx, t->store, leaf, untrusted) != 1) {
        rc = tdsx__ossl_err(TDSX_E_NOMEM);
        goto fail;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    if (st.require_crl || sk_X509_CRL_num(t->crls) > 0)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    if (X509_VERIFY_PARAM_set_flags(param, flags) != 1)
        goto fail;
    X509_VERIFY_PARAM_set_time(param, (time_t)(o->at ? o->at : tdsx_now()));
    /* The store is shared and immutable: CRLs go to this context only. */
    X509_STORE_CTX_set0_crls(ctx, t->crls);
    X509_STORE_CTX_set_verify_cb(ctx, on_verify);
    if (X509_STORE_CTX_set_app_data(ctx, &st) != 1)
        goto fail;
    int v = X509_verify_cert(ctx);
    if (v == 1) {
        rc = 0;
        /* The verified chain lasts as long as its first certificate to expire. */
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
        *chain_until = INT64_MAX;
        for (int i = 0; i < sk_X509_num(chain); i++) {
            int64_t na;
            if (tdsx__asn1_time_get(X509_get0_notAfter(sk_X509_value(chain, i)), &na) != 0)
                na = 0; /* unreadable: never remembered */
            if (na < *chain_until)
                *chain_until = na;
        }
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        rc = st.crl_unusable  ? TDSX_E_CRL_INVALID
             : e == X509_V_OK ? tdsx__ossl_err(TDSX_E_INTERNAL)
                              : map_x509_err(e);
    }
fail:
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    return rc;
}

static int check_key(X509 *leaf, uint8_t pub[32])
{
    size_t len = 32;
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    if (!pk || !EVP_PKEY_is_a(pk, "ED25519"))
        return TDSX_E_CERT_KEY;
    if (EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1 || len != 32)
        return tdsx__ossl_err(TDSX_E_CERT_KEY);
    return 0;
}

static int check_purpose(X509 *leaf, tdsx_purpose_t purpose)
{
    const uint32_t both = XKU_SSL_CLIENT | XKU_SSL_SERVER;
    uint32_t flags = X509_get_extension_flags(leaf);
    /* Absent extensions read as "everything allowed" in OpenSSL; here they allow nothing. */
    uint32_t ku = (flags & EXFLAG_KUSAGE) ? X509_get_key_usage(leaf) : 0;
    uint32_t xku = (flags & EXFLAG_XKUSAGE) ? X509_get_extended_key_usage(leaf) : 0;
    switch (purpose) {
    case TDSX_PURPOSE_ANY: return 0;
    case TDSX_PURPOSE_AUTH:
        /* The TLS key must not double as the statement-signing key (SPEC §2). */
        if (X509_check_ca(leaf) || (xku & both) != both || !(ku & KU_DIGITAL_SIGNATURE) ||
            (ku & KU_NON_REPUDIATION))
            return TDSX_E_CERT_PURPOSE;
        return 0;
    case TDSX_PURPOSE_SIGN:
        if (X509_check_ca(leaf) || !(ku & KU_NON_REPUDIATION) || (xku & both))
            return TDSX_E_CERT_PURPOSE;
        return 0;
    default: return TDSX_E_INVAL;
    }
}

static int check_role(X509 *leaf, tdsx_role_t want, tdsx_role_t *got)
{
    static const tdsx_role_t roles[] = {TDSX_ROLE_CENTRE, TDSX_ROLE_BRAIN, TDSX_ROLE_ENTERPRISE};
    int crit = 0;
    tdsx_role_t found = TDSX_ROLE_NONE;
    int matches = 0;
    CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(leaf, NID_certificate_policies, &crit, NULL);
    if (!pols)
        return tdsx__ossl_err(TDSX_E_CERT_ROLE);
    for (int i = 0; i < sk_POLICYINFO_num(pols); i++) {
        char oid[128];
        const POLICYINFO *pi = sk_POLICYINFO_value(pols, i);
        int n = OBJ_obj2txt(oid, sizeof oid, pi->policyid, 1);
        if (n <= 0 || (size_t)n >= sizeof oid)
            continue;
        for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
            if (strcmp(oid, tdsx__role_oid(roles[r])) == 0) {
                found = roles[r];
                matches++;
            }
        }
    }
    CERTIFICATEPOLICIES_free(pols);
    if (matches != 1 || (want != TDSX_ROLE_NONE && want != found))
        return TDSX_E_CERT_ROLE;
    *got = found;
    return 0;
}

/* The index of the only entry of type nid, or -1 when there is none or more than one. */
static int only_entry(const X509_NAME *name, int nid)
{
    int idx = X509_NAME_get_index_by_NID(name, nid, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, nid, idx) >= 0)
        return -1;
    return idx;
}

/* Copies the UTF-8 text of an entry into out. Refuses what would not fit, and control
 * characters (including NUL) which would let a name print as another. */
static int entry_text(const X509_NAME *name, int idx, char *out, size_t size, int no_slash)
{
    unsigned char *utf8 = NULL;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    int n = s ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
    int rc = TDSX_E_CERT_SUBJECT;
    if (n < 0)
        return tdsx__ossl_err(TDSX_E_CERT_SUBJECT);
    if (n == 0 || (size_t)n >= size)
        goto fail;
    for (int i = 0; i < n; i++) {
        if (utf8[i] < 0x20 || utf8[i] == 0x7f || (no_slash && utf8[i] == '/'))
            goto fail;
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    rc = 0;
fail:
    OPENSSL_free(utf8);
    return rc;
}

static int check_subject(X509 *leaf, tdsx_identity_t *id)
{
    const X509_NAME *name = X509_get_subject_name(leaf);
    int o = only_entry(name, NID_organizationName);
    int sn = only_entry(name, NID_serialNumber);
    int cn = only_entry(name, NID_commonName);
    char uscc[TDSX_USCC_LEN + 2];
    if (o < 0 || sn < 0 || cn < 0)
        return TDSX_E_CERT_SUBJECT;
    int rc;
    if ((rc = entry_text(name, o, id->org, sizeof id->org, 0)) ||
        (rc = entry_text(name, cn, id->node, sizeof id->node, 1)))
        return rc;
    /* Anything that does not fit 18 characters is not a USCC. */
    rc = entry_text(name, sn, uscc, sizeof uscc, 1);
    if (rc == TDSX_E_NOMEM)
        return rc;
    if (rc || tdsx_uscc_check(uscc, &id->org_warning) != 0)
        return TDSX_E_CERT_USCC;
    memcpy(id->uscc, uscc, sizeof id->uscc);
    return 0;
}

static void log_refusal(X509 *leaf, int err)
{
    tdsx_buf_t subject;
    uint8_t fp[32];
    char hex[65] = "";
    tdsx_buf_init(&subject, TDSX__NAME_TEXT_CAP);
    int have_subject = tdsx__name_text(X509_get_subject_name(leaf), &subject) == 0;
    if (tdsx_cert_fingerprint(leaf, fp) == 0)
        tdsx_hex_encode(hex, fp, sizeof fp);
    tdsx_log(TDSX_LOG_INFO, "cert.refused", TDSX_KV_E("reason", err),
             TDSX_KV_S("subject", have_subject ? (const char *)subject.p : ""),
             TDSX_KV_S("fingerprint", hex));
    tdsx_buf_free(&subject);
}

int tdsx_cert_verify(const tdsx_trust_t *t, X509 *leaf, STACK_OF(X509) *extra,
                     const tdsx_verify_opts_t *o, tdsx_identity_t *id)
{
    tdsx_identity_t got;
    memset(&got, 0, sizeof got);
    if (id)
        memset(id, 0, sizeof *id);
    if (!t || !leaf || !o)
        return TDSX_E_INVAL;
    /* Whatever OpenSSL queues here stays here: a TLS engine calling us from its verify
     * callback keeps its own error queue. */
    int64_t now = tdsx_now(), chain_until = 0;
    uint8_t key[32];
    int keyed = 0;
    if (t->cache && !o->at) {
        uint8_t fps[1 + VERIFY_CACHE_EXTRAS_MAX][32];
        size_t n_extra = extra ? (size_t)sk_X509_num(extra) : 0;
        keyed = n_extra <= VERIFY_CACHE_EXTRAS_MAX && tdsx_cert_fingerprint(leaf, fps[0]) == 0;
        for (size_t i = 0; keyed && i < n_extra; i++)
            keyed = tdsx_cert_fingerprint(sk_X509_value(extra, (int)i), fps[1 + i]) == 0;
        keyed = keyed && cache_key(fps[0], fps[1], n_extra, key) == 0;
        if (keyed && cache_get(t, key, o, now, id))
            return 0;
    }
    ERR_set_mark();
    int rc;
    if ((rc = check_chain(t, leaf, extra, o, &chain_until)) || (rc = check_key(leaf, got.pubkey)) ||
        (rc = check_purpose(leaf, o->purpose)) || (rc = check_role(leaf, o->role, &got.role)) ||
        (rc = check_subject(leaf, &got)))
        goto fail;
    if ((rc = tdsx__asn1_time_get(X509_get0_notBefore(leaf), &got.not_before)) ||
        (rc = tdsx__asn1_time_get(X509_get0_notAfter(leaf), &got.not_after)) ||
        (rc = tdsx_cert_fingerprint(leaf, got.fingerprint)))
        goto fail;
    if (keyed)
        cache_put(t, key, o, now, chain_until, &got);
    if (id)
        *id = got;
fail:
    if (rc && rc != TDSX_E_NOMEM && rc != TDSX_E_INVAL)
        log_refusal(leaf, rc);
    ERR_pop_to_mark();
    return rc;
}

int tdsx_cert_verify_pem(const tdsx_trust_t *t, const void *pem, size_t n,
                         const tdsx_verify_opts_t *o, tdsx_identity_t *id)
{
    STACK_OF(X509) *certs = NULL;
    if (id)
        memset(id, 0, sizeof *id);
    if (!t || (!pem && n) || !o)
        return TDSX_E_INVAL;
    int rc = tdsx__pem_certs(tdsx_bytes(pem, n), &certs);
    if (rc)
        return rc;
    X509 *leaf = sk_X509_shift(certs);
    rc = leaf ? tdsx_cert_verify(t, leaf, certs, o, id) : TDSX_E_CERT_PARSE;
    X509_free(leaf);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int tdsx_cert_verify_der(const tdsx_trust_t *t, tdsx_bytes_t der, const tdsx_bytes_t *extra,
                         size_t n_extra, const tdsx_verify_opts_t *o, tdsx_identity_t *id)
{
    if (id)
        memset(id, 0, sizeof *id);
    if (!t || !o || !der.p || !der.n || der.n > LONG_MAX || (n_extra && !extra))
        return TDSX_E_INVAL;
    if (t->cache && !o->at && n_extra <= VERIFY_CACHE_EXTRAS_MAX) {
        /* The key from the bytes as they came: a certificate's fingerprint is the SHA-256 of
         * its DER, so a remembered answer needs no parse. */
        uint8_t fps[1 + VERIFY_CACHE_EXTRAS_MAX][32], key[32];
        unsigned int len = 0;
        int ok = EVP_Digest(der.p, der.n, fps[0], &len, EVP_sha256(), NULL) == 1 && len == 32;
        for (size_t i = 0; ok && i < n_extra; i++)
            ok = EVP_Digest(extra[i].p, extra[i].n, fps[1 + i], &len, EVP_sha256(), NULL) == 1 &&
                 len == 32;
        if (ok && cache_key(fps[0], fps[1], n_extra, key) == 0 &&
            cache_get(t, key, o, tdsx_now(), id))
            return 0;
    }
    ERR_set_mark();
    int rc = TDSX_E_CERT_PARSE;
    const uint8_t *p = der.p;
    X509 *leaf = d2i_X509(NULL, &p, (long)der.n);
    STACK_OF(X509) *chain = sk_X509_new_null();
    if (!chain) {
        rc = TDSX_E_NOMEM;
        goto done;
    }
    if (!leaf || p != der.p + der.n)
        goto done;
    for (size_t i = 0; i < n_extra; i++) {
        const uint8_t *q = extra[i].p;
        X509 *x = extra[i].n <= LONG_MAX ? d2i_X509(NULL, &q, (long)extra[i].n) : NULL;
        if (!x || q != extra[i].p + extra[i].n) {
            X509_free(x);
            goto done;
        }
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            rc = TDSX_E_NOMEM;
            goto done;
        }
    }
    rc = tdsx_cert_verify(t, leaf, chain, o, id);
done:
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    ERR_pop_to_mark();
    return rc;
}
