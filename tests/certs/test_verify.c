/* The verification matrix: real CAs made in a temp dir, real certificates, each refusal with
 * its own code. Certificates the CA would never issue (no role, bad subject, wrong key) are
 * built with the internal builder and signed by the test CA's own key. */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "internal.h"

#define DAY 86400
#define USCC_A "91350100M000100Y43"

typedef struct fx_s {
    char *tmp;
    /* CA directories and open CAs */
    char *flat_dir, *deep_dir, *foreign_dir, *twin_dir, *deep2_dir;
    tdsx_ca_t *flat, *deep, *foreign, *twin, *deep2;
    /* node credential directories */
    char *ok, *brain, *expired, *future, *revoked;
    char *deep_ok, *deep_revoked, *foreign_ok, *twin_ok, *deep2_ok;
    /* CRL files, written after the revocations */
    char *flat_crl, *deep_crl, *foreign_crl, *twin_crl, *deep2_crl;
} fx_t;

static fx_t *fx;

static char *path2(const char *a, const char *b)
{
    return tdsx_test_path(a, b);
}

static tdsx_ca_t *make_ca(const char *dir, const char *name, int intermediate)
{
    tdsx_ca_init_opts_t o = {.name = name, .intermediate = intermediate};
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_init(dir, &o), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    return ca;
}

static char *issue(tdsx_ca_t *ca, const char *name, tdsx_role_t role, int64_t not_before,
                   int64_t days)
{
    char *out = path2(fx->tmp, name);
    tdsx_issue_opts_t o = {.uscc = USCC_A,
                           .org = "福建测试集团有限公司",
                           .node = name,
                           .role = role,
                           .not_before = not_before,
                           .days = days};
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    return out;
}

static X509 *load_first(const char *path)
{
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    X509 *x = sk_X509_shift(sk);
    sk_X509_pop_free(sk, X509_free);
    return x;
}

static void revoke_file(tdsx_ca_t *ca, const char *dir, const char *name)
{
    char *p = path2(dir, name);
    X509 *x = load_first(p);
    assert_int_equal(tdsx_ca_revoke(ca, x), 0);
    X509_free(x);
    free(p);
}

static char *crl(tdsx_ca_t *ca, const char *name)
{
    char *p = path2(fx->tmp, name);
    assert_int_equal(tdsx_ca_crl(ca, 0, p, 0), 0);
    return p;
}

static int setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->tmp = tdsx_test_mkdtemp();
    const int64_t now = tdsx_now();
    fx->flat_dir = path2(fx->tmp, "ca-flat");
    fx->deep_dir = path2(fx->tmp, "ca-deep");
    fx->foreign_dir = path2(fx->tmp, "ca-foreign");
    fx->twin_dir = path2(fx->tmp, "ca-twin");
    fx->deep2_dir = path2(fx->tmp, "ca-deep2");
    fx->flat = make_ca(fx->flat_dir, "山东省数据流通根CA", 0);
    fx->deep = make_ca(fx->deep_dir, "Deep Root", 1);
    fx->foreign = make_ca(fx->foreign_dir, "Foreign Root", 0);
    /* Same name as the flat CA, different key: names alone must never be trusted. */
    fx->twin = make_ca(fx->twin_dir, "山东省数据流通根CA", 0);
    fx->deep2 = make_ca(fx->deep2_dir, "Deep Root Two", 1);

    fx->ok = issue(fx->flat, "ok", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx->brain = issue(fx->flat, "brain", TDSX_ROLE_BRAIN, 0, 0);
    fx->expired = issue(fx->flat, "expired", TDSX_ROLE_ENTERPRISE, now - 10 * DAY, 1);
    fx->future = issue(fx->flat, "future", TDSX_ROLE_ENTERPRISE, now + 10 * DAY, 30);
    fx->revoked = issue(fx->flat, "revoked", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx->deep_ok = issue(fx->deep, "deep-ok", TDSX_ROLE_CENTRE, 0, 0);
    fx->deep_revoked = issue(fx->deep, "deep-revoked", TDSX_ROLE_CENTRE, 0, 0);
    fx->foreign_ok = issue(fx->foreign, "foreign-ok", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx->twin_ok = issue(fx->twin, "twin-ok", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx->deep2_ok = issue(fx->deep2, "deep2-ok", TDSX_ROLE_BRAIN, 0, 0);

    revoke_file(fx->flat, fx->revoked, TDSX_CRED_AUTH_CERT);
    revoke_file(fx->flat, fx->revoked, TDSX_CRED_SIGN_CERT);
    revoke_file(fx->deep, fx->deep_revoked, TDSX_CRED_AUTH_CERT);
    /* deep2: the intermediate itself is revoked by the root. */
    revoke_file(fx->deep2, fx->deep2_dir, TDSX_CA_INTER_CERT);

    fx->flat_crl = crl(fx->flat, "flat.crl");
    fx->deep_crl = crl(fx->deep, "deep.crl");
    fx->foreign_crl = crl(fx->foreign, "foreign.crl");
    fx->twin_crl = crl(fx->twin, "twin.crl");
    fx->deep2_crl = crl(fx->deep2, "deep2.crl");
    /* Refusals are logged; keep them out of the test output unless a test looks. */
    tdsx_log_set_level(TDSX_LOG_OFF);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_log_set_level(TDSX_LOG_INFO);
    tdsx_ca_t *cas[] = {fx->flat, fx->deep, fx->foreign, fx->twin, fx->deep2};
    for (size_t i = 0; i < sizeof cas / sizeof cas[0]; i++)
        tdsx_ca_free(cas[i]);
    char *paths[] = {fx->flat_dir, fx->deep_dir,     fx->foreign_dir, fx->twin_dir, fx->deep2_dir,
                     fx->ok,       fx->brain,        fx->expired,     fx->future,   fx->revoked,
                     fx->deep_ok,  fx->deep_revoked, fx->foreign_ok,  fx->twin_ok,  fx->deep2_ok,
                     fx->flat_crl, fx->deep_crl,     fx->foreign_crl, fx->twin_crl, fx->deep2_crl};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        free(paths[i]);
    tdsx_test_rmdir(fx->tmp);
    free(fx);
    fx = NULL;
    return 0;
}

/* A trust set from a CA directory's root, an optional chain file and optional CRL file. */
static tdsx_trust_t *trust(const char *ca_dir, const char *chain, const char *crl_file)
{
    tdsx_trust_t *t = NULL;
    assert_int_equal(tdsx_trust_new(&t), 0);
    char *root = path2(ca_dir, TDSX_CA_ROOT_CERT);
    assert_int_equal(tdsx_trust_add_anchors_file(t, root), 0);
    free(root);
    if (chain) {
        uint8_t *data = NULL;
        size_t len = 0;
        assert_int_equal(tdsx_file_read(chain, 1 << 20, &data, &len), 0);
        assert_int_equal(tdsx_trust_add_intermediates_pem(t, data, len), 0);
        tdsx_free(data);
    }
    if (crl_file)
        assert_int_equal(tdsx_trust_add_crls_file(t, crl_file), 0);
    return t;
}

static int verify_file(const tdsx_trust_t *t, const char *node, const char *which,
                       tdsx_purpose_t purpose, tdsx_role_t role, int64_t at, int require_crl,
                       tdsx_identity_t *id)
{
    char *p = path2(node, which);
    uint8_t *pem = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(p, 1 << 20, &pem, &len), 0);
    tdsx_verify_opts_t o = {.purpose = purpose, .role = role, .at = at, .require_crl = require_crl};
    int rc = tdsx_cert_verify_pem(t, pem, len, &o, id);
    tdsx_free(pem);
    free(p);
    return rc;
}

static int verify_auth(const tdsx_trust_t *t, const char *node)
{
    return verify_file(t, node, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 0, NULL);
}

static int verify_x509(const tdsx_trust_t *t, X509 *x, tdsx_purpose_t purpose)
{
    tdsx_verify_opts_t o = {.purpose = purpose};
    return tdsx_cert_verify(t, x, NULL, &o, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Positive cases
 * ---------------------------------------------------------------------------------------- */

static void valid_auth_certificate_gives_identity(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    tdsx_identity_t id;
    assert_int_equal(verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH,
                                 TDSX_ROLE_ENTERPRISE, 0, 0, &id),
                     0);
    assert_string_equal(id.uscc, USCC_A);
    assert_string_equal(id.org, "福建测试集团有限公司");
    assert_string_equal(id.node, "ok");
    assert_int_equal(id.role, TDSX_ROLE_ENTERPRISE);
    assert_int_equal(id.org_warning, 0);
    assert_int_equal(id.not_after - id.not_before, 365 * DAY);
    assert_true(id.not_before <= tdsx_now() && tdsx_now() < id.not_after);
    char idstr[160];
    tdsx_identity_id(&id, idstr, sizeof idstr);
    assert_string_equal(idstr, USCC_A "/ok");

    /* The fingerprint is SHA-256 of the DER; the key is the one in auth.key. */
    char *cp = path2(fx->ok, TDSX_CRED_AUTH_CERT), *kp = path2(fx->ok, TDSX_CRED_AUTH_KEY);
    X509 *x = load_first(cp);
    uint8_t fp[32], seed[32], pub[32];
    assert_int_equal(tdsx_cert_fingerprint(x, fp), 0);
    assert_memory_equal(id.fingerprint, fp, 32);
    assert_int_equal(tdsx_key_load_ed25519(kp, seed), 0);
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    size_t len = 32;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &len), 1);
    assert_memory_equal(id.pubkey, pub, 32);
    EVP_PKEY_free(k);
    X509_free(x);
    free(cp);
    free(kp);
    tdsx_trust_free(t);
}

static void valid_sign_certificate(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    tdsx_identity_t id;
    assert_int_equal(verify_file(t, fx->brain, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_SIGN,
                                 TDSX_ROLE_BRAIN, 0, 1, &id),
                     0);
    assert_int_equal(id.role, TDSX_ROLE_BRAIN);
    assert_string_equal(id.node, "brain");
    tdsx_trust_free(t);
}

static void intermediate_chain_depth_two(void **state)
{
    (void)state;
    char *chain = path2(fx->deep_ok, TDSX_CRED_CHAIN);
    /* Intermediates from the trust set... */
    tdsx_trust_t *t = trust(fx->deep_dir, chain, fx->deep_crl);
    tdsx_identity_t id;
    assert_int_equal(verify_file(t, fx->deep_ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH,
                                 TDSX_ROLE_CENTRE, 0, 1, &id),
                     0);
    assert_int_equal(id.role, TDSX_ROLE_CENTRE);
    tdsx_trust_free(t);
    /* ...or presented by the peer after its certificate. */
    t = trust(fx->deep_dir, NULL, NULL);
    char *leaf = path2(fx->deep_ok, TDSX_CRED_AUTH_CERT);
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    assert_int_equal(tdsx_file_read(leaf, 1 << 20, &a, &alen), 0);
    assert_int_equal(tdsx_file_read(chain, 1 << 20, &b, &blen), 0);
    tdsx_buf_t both;
    tdsx_buf_init(&both, 1 << 20);
    assert_int_equal(tdsx_buf_append(&both, a, alen), 0);
    assert_int_equal(tdsx_buf_append(&both, b, blen), 0);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH};
    assert_int_equal(tdsx_cert_verify_pem(t, both.p, both.len, &o, &id), 0);
    /* Without the intermediate there is no path. */
    assert_int_equal(tdsx_cert_verify_pem(t, a, alen, &o, &id), TDSX_E_CERT_UNTRUSTED);
    tdsx_buf_free(&both);
    tdsx_free(a);
    tdsx_free(b);
    free(leaf);
    free(chain);
    tdsx_trust_free(t);
}

static void crl_present_and_not_listing_the_cert(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    assert_int_equal(verify_auth(t, fx->ok), 0);
    tdsx_trust_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Remembered successes and DER input: the trust set's cache must never change an answer
 * ---------------------------------------------------------------------------------------- */

static void remembered_success_never_changes_an_answer(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    /* Other options are other questions. */
    assert_int_equal(verify_auth(t, fx->ok), 0);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_BRAIN, 0, 0, NULL),
        TDSX_E_CERT_ROLE);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, 0, 0, NULL),
        TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE,
                                 tdsx_now() + 400 * DAY, 0, NULL),
                     TDSX_E_CERT_EXPIRED);
    /* The expired one is still refused after a good one was remembered. */
    assert_int_equal(verify_auth(t, fx->expired), TDSX_E_CERT_EXPIRED);
    /* A remembered success lasts only while it may: once the clock passes the certificate's
     * notAfter, "now" is asked again and refused. */
    int64_t real_now = tdsx_now();
    tdsx_now_set(real_now + 400 * DAY);
    assert_int_equal(verify_auth(t, fx->ok), TDSX_E_CERT_EXPIRED);
    tdsx_now_set(0);
    assert_int_equal(verify_auth(t, fx->ok), 0);
    /* Without a CRL the revoked certificate verifies, and is remembered... */
    assert_int_equal(verify_auth(t, fx->revoked), 0);
    assert_int_equal(verify_auth(t, fx->revoked), 0);
    /* ...until the CRL that lists it joins the trust set. */
    assert_int_equal(tdsx_trust_add_crls_file(t, fx->flat_crl), 0);
    assert_int_equal(verify_auth(t, fx->revoked), TDSX_E_CERT_REVOKED);
    assert_int_equal(verify_auth(t, fx->ok), 0);
    tdsx_trust_free(t);
}

static uint8_t *der_of(const char *path, size_t *len)
{
    X509 *x = load_first(path);
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    X509_free(x);
    *len = (size_t)n;
    return der;
}

static void der_input_is_checked_and_remembered_exactly(void **state)
{
    (void)state;
    char *leaf_path = path2(fx->deep_ok, TDSX_CRED_AUTH_CERT);
    char *chain_path = path2(fx->deep_ok, TDSX_CRED_CHAIN);
    tdsx_trust_t *t = trust(fx->deep_dir, NULL, NULL);
    size_t leaf_len = 0, chain_len = 0;
    uint8_t *leaf = der_of(leaf_path, &leaf_len), *chain = der_of(chain_path, &chain_len);
    tdsx_bytes_t extra = tdsx_bytes(chain, chain_len);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH};
    tdsx_identity_t a, b;
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len), &extra, 1, &o, &a), 0);
    assert_int_equal(a.role, TDSX_ROLE_CENTRE);
    /* Asked again (answered from memory): the same identity. */
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len), &extra, 1, &o, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    /* The same leaf without its intermediate has no path: another question. */
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len), NULL, 0, &o, &b),
                     TDSX_E_CERT_UNTRUSTED);
    /* Trailing bytes, a truncated certificate, an extra that is not one, a flipped byte. */
    uint8_t *longer = tdsx_malloc(leaf_len + 1);
    assert_non_null(longer);
    memcpy(longer, leaf, leaf_len);
    longer[leaf_len] = 0;
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(longer, leaf_len + 1), &extra, 1, &o, &b),
                     TDSX_E_CERT_PARSE);
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len - 1), &extra, 1, &o, &b),
                     TDSX_E_CERT_PARSE);
    tdsx_bytes_t junk = tdsx_bytes("junk", 4);
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len), &junk, 1, &o, &b),
                     TDSX_E_CERT_PARSE);
    memcpy(longer, leaf, leaf_len);
    longer[leaf_len - 5] ^= 0x01; /* inside the signature */
    assert_int_not_equal(tdsx_cert_verify_der(t, tdsx_bytes(longer, leaf_len), &extra, 1, &o, &b),
                         0);
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(NULL, 0), NULL, 0, &o, &b), TDSX_E_INVAL);
    assert_int_equal(tdsx_cert_verify_der(t, tdsx_bytes(leaf, leaf_len), NULL, 1, &o, &b),
                     TDSX_E_INVAL);
    tdsx_free(longer);
    OPENSSL_free(leaf);
    OPENSSL_free(chain);
    free(leaf_path);
    free(chain_path);
    tdsx_trust_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Validity and revocation
 * ---------------------------------------------------------------------------------------- */

static void expired_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(verify_auth(t, fx->expired), TDSX_E_CERT_EXPIRED);
    /* A good certificate checked at a time after its notAfter. */
    assert_int_equal(verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE,
                                 tdsx_now() + 400 * DAY, 0, NULL),
                     TDSX_E_CERT_EXPIRED);
    tdsx_trust_free(t);
}

static void not_yet_valid_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(verify_auth(t, fx->future), TDSX_E_CERT_NOT_YET_VALID);
    /* ...and accepted once its time has come. */
    assert_int_equal(verify_file(t, fx->future, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH,
                                 TDSX_ROLE_NONE, tdsx_now() + 11 * DAY, 0, NULL),
                     0);
    tdsx_trust_free(t);
}

static void revoked_is_refused_with_crl(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    assert_int_equal(verify_auth(t, fx->revoked), TDSX_E_CERT_REVOKED);
    assert_int_equal(verify_file(t, fx->revoked, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_SIGN,
                                 TDSX_ROLE_NONE, 0, 0, NULL),
                     TDSX_E_CERT_REVOKED);
    tdsx_trust_free(t);
}

static void revoked_at_intermediate_level(void **state)
{
    (void)state;
    /* The leaf is listed in the intermediate's CRL. */
    char *chain = path2(fx->deep_revoked, TDSX_CRED_CHAIN);
    tdsx_trust_t *t = trust(fx->deep_dir, chain, fx->deep_crl);
    assert_int_equal(verify_auth(t, fx->deep_revoked), TDSX_E_CERT_REVOKED);
    tdsx_trust_free(t);
    free(chain);
    /* The intermediate itself is listed in the root's CRL: every leaf under it falls. */
    chain = path2(fx->deep2_ok, TDSX_CRED_CHAIN);
    t = trust(fx->deep2_dir, chain, fx->deep2_crl);
    assert_int_equal(verify_auth(t, fx->deep2_ok), TDSX_E_CERT_REVOKED);
    tdsx_trust_free(t);
    /* Without the CRL nothing says so (revocation needs the CRL). */
    t = trust(fx->deep2_dir, chain, NULL);
    assert_int_equal(verify_auth(t, fx->deep2_ok), 0);
    tdsx_trust_free(t);
    free(chain);
}

static void missing_crl_with_require_crl(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 1, NULL),
        TDSX_E_CRL_MISSING);
    tdsx_trust_free(t);
    /* Intermediate chain with only the root's CRL: the intermediate's is missing. */
    char *chain = path2(fx->deep_ok, TDSX_CRED_CHAIN);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(fx->deep_crl, 1 << 20, &data, &len), 0);
    STACK_OF(X509_CRL) *crls = NULL;
    assert_int_equal(tdsx__pem_crls(tdsx_bytes(data, len), &crls), 0);
    assert_int_equal(sk_X509_CRL_num(crls), 2);
    tdsx_buf_t root_only;
    tdsx_buf_init(&root_only, 1 << 20);
    assert_int_equal(tdsx__pem_append_crl(&root_only, sk_X509_CRL_value(crls, 0)), 0);
    t = trust(fx->deep_dir, chain, NULL);
    assert_int_equal(tdsx_trust_add_crls_pem(t, root_only.p, root_only.len), 0);
    assert_int_equal(verify_file(t, fx->deep_ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH,
                                 TDSX_ROLE_NONE, 0, 1, NULL),
                     TDSX_E_CRL_MISSING);
    /* Not required: the CRLs present are used, the missing one is not an error. */
    assert_int_equal(verify_auth(t, fx->deep_ok), 0);
    tdsx_trust_free(t);
    tdsx_buf_free(&root_only);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    tdsx_free(data);
    free(chain);
}

static void foreign_crl_is_ignored_or_invalid(void **state)
{
    (void)state;
    /* A CRL from an unrelated CA says nothing about ours. */
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->foreign_crl);
    assert_int_equal(verify_auth(t, fx->ok), 0);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 1, NULL),
        TDSX_E_CRL_MISSING);
    tdsx_trust_free(t);
    /* A CRL claiming our CA's name but made by another key is unusable; as it might be
     * the one listing the certificate, verification fails closed. */
    t = trust(fx->flat_dir, NULL, fx->twin_crl);
    assert_int_equal(verify_auth(t, fx->ok), TDSX_E_CRL_INVALID);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 1, NULL),
        TDSX_E_CRL_INVALID);
    tdsx_trust_free(t);
    /* Next to our own CRL it changes nothing either way: ours is used. */
    t = trust(fx->flat_dir, NULL, fx->flat_crl);
    assert_int_equal(tdsx_trust_add_crls_file(t, fx->twin_crl), 0);
    assert_int_equal(verify_auth(t, fx->ok), 0);
    assert_int_equal(verify_auth(t, fx->revoked), TDSX_E_CERT_REVOKED);
    tdsx_trust_free(t);
}

static void tampered_crl_is_invalid(void **state)
{
    (void)state;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(fx->flat_crl, 1 << 20, &data, &len), 0);
    STACK_OF(X509_CRL) *crls = NULL;
    assert_int_equal(tdsx__pem_crls(tdsx_bytes(data, len), &crls), 0);
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(sk_X509_CRL_value(crls, 0), &der);
    assert_true(n > 10);
    der[n - 1] ^= 0x01; /* last byte of the signature */
    const unsigned char *p = der;
    X509_CRL *bad = d2i_X509_CRL(NULL, &p, n);
    assert_non_null(bad);
    tdsx_buf_t pem;
    tdsx_buf_init(&pem, 1 << 20);
    assert_int_equal(tdsx__pem_append_crl(&pem, bad), 0);
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(tdsx_trust_add_crls_pem(t, pem.p, pem.len), 0);
    assert_int_equal(verify_auth(t, fx->ok), TDSX_E_CRL_INVALID);
    tdsx_trust_free(t);
    tdsx_buf_free(&pem);
    X509_CRL_free(bad);
    OPENSSL_free(der);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    tdsx_free(data);
}

static void expired_crl_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    /* The CRL's nextUpdate is 7 days out; the certificate is good for a year. */
    assert_int_equal(verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE,
                                 tdsx_now() + 8 * DAY, 0, NULL),
                     TDSX_E_CRL_EXPIRED);
    tdsx_trust_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Trust
 * ---------------------------------------------------------------------------------------- */

static void foreign_ca_is_untrusted(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(verify_auth(t, fx->foreign_ok), TDSX_E_CERT_UNTRUSTED);
    /* Same issuer name, different key. */
    assert_int_equal(verify_auth(t, fx->twin_ok), TDSX_E_CERT_UNTRUSTED);
    /* A certificate from an intermediate we were never given. */
    assert_int_equal(verify_auth(t, fx->deep_ok), TDSX_E_CERT_UNTRUSTED);
    tdsx_trust_free(t);
}

static void empty_trust_set_trusts_nothing(void **state)
{
    (void)state;
    tdsx_trust_t *t = NULL;
    assert_int_equal(tdsx_trust_new(&t), 0);
    assert_int_equal(verify_auth(t, fx->ok), TDSX_E_CERT_UNTRUSTED);
    tdsx_trust_free(t);
}

static void tampered_certificate_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    char *cp = path2(fx->ok, TDSX_CRED_AUTH_CERT);
    X509 *x = load_first(cp);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 100);
    /* One byte of the signature, then one byte of the subject's CN "ok". */
    static const int flips[] = {-1, 0};
    for (size_t i = 0; i < 2; i++) {
        unsigned char *copy = malloc((size_t)n);
        assert_non_null(copy);
        memcpy(copy, der, (size_t)n);
        int at = flips[i] < 0 ? n - 1 : -1;
        for (int j = 0; at < 0 && j + 3 < n; j++) {
            if (copy[j] == 0x0c && copy[j + 1] == 2 && copy[j + 2] == 'o' && copy[j + 3] == 'k')
                at = j + 3;
        }
        assert_true(at > 0);
        copy[at] ^= 0x04;
        const unsigned char *p = copy;
        X509 *bad = d2i_X509(NULL, &p, n);
        assert_non_null(bad);
        assert_int_equal(verify_x509(t, bad, TDSX_PURPOSE_AUTH), TDSX_E_CERT_UNTRUSTED);
        X509_free(bad);
        free(copy);
    }
    OPENSSL_free(der);
    X509_free(x);
    free(cp);
    tdsx_trust_free(t);
}

static void unparsable_input_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH};
    tdsx_identity_t id;
    assert_int_equal(tdsx_cert_verify_pem(t, "", 0, &o, &id), TDSX_E_CERT_PARSE);
    static const char garbage[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                                  "-----END CERTIFICATE-----\n";
    assert_int_equal(tdsx_cert_verify_pem(t, garbage, sizeof garbage - 1, &o, &id),
                     TDSX_E_CERT_PARSE);
    static const char truncated[] = "-----BEGIN CERTIFICATE-----\nMIIB\n";
    assert_int_equal(tdsx_cert_verify_pem(t, truncated, sizeof truncated - 1, &o, &id),
                     TDSX_E_CERT_PARSE);
    assert_int_equal(tdsx_cert_verify(t, NULL, NULL, &o, &id), TDSX_E_INVAL);
    assert_int_equal(tdsx_cert_verify_pem(t, "x", 1, NULL, &id), TDSX_E_INVAL);
    /* Trust-set inputs are checked too. */
    assert_int_equal(tdsx_trust_add_anchors_pem(t, "nothing", 7), TDSX_E_CERT_PARSE);
    assert_int_equal(tdsx_trust_add_crls_pem(t, "nothing", 7), TDSX_E_CRL_INVALID);
    static const char bad_crl[] = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    assert_int_equal(tdsx_trust_add_crls_pem(t, bad_crl, sizeof bad_crl - 1), TDSX_E_CRL_INVALID);
    char *missing = path2(fx->tmp, "no-such.pem");
    assert_int_equal(tdsx_trust_add_anchors_file(t, missing), TDSX_E_NOTFOUND);
    free(missing);
    tdsx_trust_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Purpose, role, subject, key
 * ---------------------------------------------------------------------------------------- */

static void auth_as_sign_and_sign_as_auth_fail(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, 0, 0, NULL),
        TDSX_E_CERT_PURPOSE);
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 0, NULL),
        TDSX_E_CERT_PURPOSE);
    /* Purpose ANY checks neither. */
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_ANY, TDSX_ROLE_NONE, 0, 0, NULL),
        0);
    tdsx_trust_free(t);
}

static void wrong_role_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    tdsx_identity_t id;
    assert_int_equal(
        verify_file(t, fx->ok, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, TDSX_ROLE_BRAIN, 0, 0, &id),
        TDSX_E_CERT_ROLE);
    assert_int_equal(id.role, TDSX_ROLE_NONE); /* nothing filled on failure */
    assert_int_equal(verify_file(t, fx->brain, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_SIGN,
                                 TDSX_ROLE_CENTRE, 0, 0, NULL),
                     TDSX_E_CERT_ROLE);
    tdsx_trust_free(t);
}

/* A name with any of O, serialNumber, CN (NULL leaves it out). */
static X509_NAME *name3(const char *o, const char *sn, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    assert_non_null(n);
    if (o)
        assert_int_equal(
            X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1, 0),
            1);
    if (sn)
        assert_int_equal(X509_NAME_add_entry_by_txt(n, "serialNumber", MBSTRING_ASC,
                                                    (const unsigned char *)sn, -1, -1, 0),
                         1);
    if (cn)
        assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
                                                    (const unsigned char *)cn, -1, -1, 0),
                         1);
    return n;
}

/* A certificate the CA would never issue, signed by its issuing key. */
static X509 *custom(tdsx_ca_t *ca, X509_NAME *subject, EVP_PKEY *key, unsigned ku, unsigned eku,
                    const char *const *pols, size_t npols)
{
    X509 *issuer = NULL;
    EVP_PKEY *signer = NULL, *own = NULL;
    tdsx__ca_issuer(ca, &issuer, &signer);
    if (!key) {
        assert_int_equal(tdsx__key_generate("ED25519", &own), 0);
        key = own;
    }
    const int64_t now = tdsx_now();
    tdsx__cert_spec_t s = {.subject = subject,
                           .key = key,
                           .issuer = issuer,
                           .signer = signer,
                           .not_before = now - 60,
                           .not_after = now + DAY,
                           .pathlen = -1,
                           .key_usage = ku,
                           .ext_key_usage = eku,
                           .policies = pols,
                           .n_policies = npols};
    X509 *x = NULL;
    assert_int_equal(tdsx__cert_build(&s, &x), 0);
    EVP_PKEY_free(own);
    X509_NAME_free(subject);
    return x;
}

#define AUTH_KU KU_DIGITAL_SIGNATURE
#define AUTH_EKU (TDSX__EKU_CLIENT | TDSX__EKU_SERVER)

static const char *const enterprise[] = {TDSX_OID_ROLE_ENTERPRISE};

static X509 *auth_like(X509_NAME *subject, const char *const *pols, size_t npols)
{
    return custom(fx->flat, subject, NULL, AUTH_KU, AUTH_EKU, pols, npols);
}

static void custom_control_cert_is_valid(void **state)
{
    (void)state;
    /* The builder used below makes valid certificates when nothing is wrong, so each
     * refusal that follows is due to the one thing changed. */
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    X509 *x = auth_like(name3("Org", USCC_A, "node"), enterprise, 1);
    assert_int_equal(verify_x509(t, x, TDSX_PURPOSE_AUTH), 0);
    X509_free(x);
    tdsx_trust_free(t);
}

static void missing_or_extra_role_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    static const char *const two[] = {TDSX_OID_ROLE_ENTERPRISE, TDSX_OID_ROLE_CENTRE};
    static const char *const unknown[] = {TDSX_OID_ARC ".1.4"};
    static const char *const other[] = {"2.23.140.1.2.2"};
    X509 *none = auth_like(name3("Org", USCC_A, "node"), NULL, 0);
    X509 *both = auth_like(name3("Org", USCC_A, "node"), two, 2);
    X509 *unk = auth_like(name3("Org", USCC_A, "node"), unknown, 1);
    X509 *oth = auth_like(name3("Org", USCC_A, "node"), other, 1);
    assert_int_equal(verify_x509(t, none, TDSX_PURPOSE_AUTH), TDSX_E_CERT_ROLE);
    assert_int_equal(verify_x509(t, both, TDSX_PURPOSE_AUTH), TDSX_E_CERT_ROLE);
    assert_int_equal(verify_x509(t, unk, TDSX_PURPOSE_AUTH), TDSX_E_CERT_ROLE);
    assert_int_equal(verify_x509(t, oth, TDSX_PURPOSE_ANY), TDSX_E_CERT_ROLE);
    X509_free(none);
    X509_free(both);
    X509_free(unk);
    X509_free(oth);
    tdsx_trust_free(t);
}

static void bad_subject_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    X509_NAME *two_cn = name3("Org", USCC_A, "node");
    assert_int_equal(X509_NAME_add_entry_by_txt(two_cn, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"other", -1, -1, 0),
                     1);
    X509 *cases[] = {
        auth_like(name3("Org", NULL, "node"), enterprise, 1),      /* no serialNumber */
        auth_like(name3(NULL, USCC_A, "node"), enterprise, 1),     /* no O */
        auth_like(name3("Org", USCC_A, NULL), enterprise, 1),      /* no CN */
        auth_like(two_cn, enterprise, 1),                          /* two CNs */
        auth_like(name3("Org", USCC_A, "a/b"), enterprise, 1),     /* '/' would fake an id */
        auth_like(name3("Org\nX", USCC_A, "node"), enterprise, 1), /* control character */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(verify_x509(t, cases[i], TDSX_PURPOSE_AUTH), TDSX_E_CERT_SUBJECT);
        X509_free(cases[i]);
    }
    tdsx_trust_free(t);
}

static void invalid_uscc_in_subject_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    static const char *const bad[] = {
        "91350100M000100Y44",  /* wrong check character */
        "91350100M000100Y4",   /* 17 characters */
        "91350100M000100Y433", /* 19 characters */
        "91350100m000100Y43",  /* lower case */
        "91350100O000100Y43",  /* forbidden letter */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        X509 *x = auth_like(name3("Org", bad[i], "node"), enterprise, 1);
        assert_int_equal(verify_x509(t, x, TDSX_PURPOSE_AUTH), TDSX_E_CERT_USCC);
        X509_free(x);
    }
    tdsx_trust_free(t);
}

static void org_code_warning_reaches_identity(void **state)
{
    (void)state;
    char code[19];
    memcpy(code, "91350100M000100Y5", 17);
    code[17] = tdsx_uscc_check_char("91350100M000100Y5");
    code[18] = '\0';
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    X509 *x = auth_like(name3("Org", code, "node"), enterprise, 1);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH};
    tdsx_identity_t id;
    assert_int_equal(tdsx_cert_verify(t, x, NULL, &o, &id), 0);
    assert_int_equal(id.org_warning, 1);
    assert_string_equal(id.uscc, code);
    X509_free(x);
    tdsx_trust_free(t);
}

static void non_ed25519_key_is_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    EVP_PKEY *x25519 = NULL;
    assert_int_equal(tdsx__key_generate("X25519", &x25519), 0);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    EVP_PKEY *keys[] = {x25519, ec};
    for (size_t i = 0; i < 2; i++) {
        X509 *x = custom(fx->flat, name3("Org", USCC_A, "node"), keys[i], AUTH_KU, AUTH_EKU,
                         enterprise, 1);
        assert_int_equal(verify_x509(t, x, TDSX_PURPOSE_AUTH), TDSX_E_CERT_KEY);
        X509_free(x);
        EVP_PKEY_free(keys[i]);
    }
    tdsx_trust_free(t);
}

static void key_usage_mixtures_are_refused(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    /* sign certificate that also claims TLS */
    X509 *sign_tls = custom(fx->flat, name3("Org", USCC_A, "n"), NULL, KU_NON_REPUDIATION,
                            TDSX__EKU_CLIENT, enterprise, 1);
    /* auth certificate with only one of the two EKUs */
    X509 *client_only =
        custom(fx->flat, name3("Org", USCC_A, "n"), NULL, AUTH_KU, TDSX__EKU_CLIENT, enterprise, 1);
    X509 *server_only =
        custom(fx->flat, name3("Org", USCC_A, "n"), NULL, AUTH_KU, TDSX__EKU_SERVER, enterprise, 1);
    /* one key for both jobs */
    X509 *both = custom(fx->flat, name3("Org", USCC_A, "n"), NULL,
                        KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION, AUTH_EKU, enterprise, 1);
    /* no key usage extension at all (OpenSSL would read it as "anything") */
    X509 *no_ku = custom(fx->flat, name3("Org", USCC_A, "n"), NULL, 0, AUTH_EKU, enterprise, 1);
    assert_int_equal(verify_x509(t, sign_tls, TDSX_PURPOSE_SIGN), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, client_only, TDSX_PURPOSE_AUTH), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, server_only, TDSX_PURPOSE_AUTH), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, both, TDSX_PURPOSE_AUTH), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, no_ku, TDSX_PURPOSE_AUTH), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, no_ku, TDSX_PURPOSE_SIGN), TDSX_E_CERT_PURPOSE);
    X509 *all[] = {sign_tls, client_only, server_only, both, no_ku};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        X509_free(all[i]);
    tdsx_trust_free(t);
}

static void ca_certificate_is_not_a_node(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, NULL);
    X509 *root = NULL;
    EVP_PKEY *key = NULL;
    tdsx__ca_root(fx->flat, &root, &key);
    assert_int_equal(verify_x509(t, root, TDSX_PURPOSE_AUTH), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, root, TDSX_PURPOSE_SIGN), TDSX_E_CERT_PURPOSE);
    assert_int_equal(verify_x509(t, root, TDSX_PURPOSE_ANY), TDSX_E_CERT_ROLE);
    tdsx_trust_free(t);
}

static void refusal_is_logged(void **state)
{
    (void)state;
    FILE *log = tmpfile();
    assert_non_null(log);
    tdsx_log_set_output(log);
    tdsx_log_set_level(TDSX_LOG_INFO);
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    assert_int_equal(verify_auth(t, fx->revoked), TDSX_E_CERT_REVOKED);
    tdsx_log_set_level(TDSX_LOG_OFF);
    tdsx_log_set_output(NULL);
    char line[2048] = "";
    rewind(log);
    assert_non_null(fgets(line, sizeof line, log));
    assert_non_null(strstr(line, "\"event\":\"cert.refused\""));
    assert_non_null(strstr(line, "TDSX_E_CERT_REVOKED"));
    assert_non_null(strstr(line, "CN=revoked"));
    fclose(log);
    tdsx_trust_free(t);
}

static void caller_error_queue_is_left_alone(void **state)
{
    (void)state;
    /* A TLS engine calls the verifier from inside OpenSSL's verify callback: whatever it
     * had queued stays, and nothing of ours is left behind, whether we accept or refuse. */
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    const char *nodes[] = {fx->ok, fx->revoked, fx->foreign_ok};
    const int want[] = {0, TDSX_E_CERT_REVOKED, TDSX_E_CERT_UNTRUSTED};
    for (size_t i = 0; i < 3; i++) {
        ERR_clear_error();
        ERR_raise(ERR_LIB_SSL, ERR_R_PASSED_INVALID_ARGUMENT);
        const unsigned long mine = ERR_peek_last_error();
        assert_int_equal(verify_auth(t, nodes[i]), want[i]);
        assert_int_equal(ERR_peek_error(), mine);
        assert_int_equal(ERR_peek_last_error(), mine);
        ERR_clear_error();
        assert_int_equal(verify_auth(t, nodes[i]), want[i]);
        assert_int_equal(ERR_peek_error(), 0);
    }
    tdsx_trust_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Allocation failures (OpenSSL's allocations are routed through ours, see main)
 * ---------------------------------------------------------------------------------------- */

static int verify_fresh(const char *node, const char *crl_file, tdsx_identity_t *id)
{
    tdsx_trust_t *t = NULL;
    char *root = path2(fx->flat_dir, TDSX_CA_ROOT_CERT);
    char *cert = path2(node, TDSX_CRED_AUTH_CERT);
    uint8_t *pem = NULL;
    size_t len = 0;
    int rc = tdsx_trust_new(&t);
    if (rc == 0)
        rc = tdsx_trust_add_anchors_file(t, root);
    if (rc == 0)
        rc = tdsx_trust_add_crls_file(t, crl_file);
    if (rc == 0)
        rc = tdsx_file_read(cert, 1 << 20, &pem, &len);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH, .require_crl = 1};
    if (rc == 0)
        rc = tdsx_cert_verify_pem(t, pem, len, &o, id);
    tdsx_free(pem);
    tdsx_trust_free(t);
    free(root);
    free(cert);
    return rc;
}

/* Every allocation of a whole verification (trust set included) fails in turn: a good
 * certificate either fails cleanly or verifies with the right identity, and ASan reports
 * any leak on those paths. */
static void allocation_failures_fail_cleanly(void **state)
{
    (void)state;
    tdsx_identity_t id;
    tdsx_test_alloc_fail_after(0);
    assert_int_equal(verify_fresh(fx->ok, fx->flat_crl, &id), 0);
    unsigned long total = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    assert_true(total > 10);
    unsigned long failures = 0;
    for (unsigned long n = 1; n <= total; n++) {
        tdsx_test_alloc_fail_after(n);
        int rc = verify_fresh(fx->ok, fx->flat_crl, &id);
        tdsx_test_alloc_reset();
        if (rc == 0)
            assert_string_equal(id.node, "ok");
        else
            failures++;
    }
    assert_true(failures > 0);
    assert_int_equal(verify_fresh(fx->ok, fx->flat_crl, &id), 0);
}

/* Whatever allocation fails, a revoked certificate is never accepted (fail closed), even
 * when complete revocation data is not required. */
static void allocation_failures_never_accept_revoked(void **state)
{
    (void)state;
    tdsx_trust_t *t = trust(fx->flat_dir, NULL, fx->flat_crl);
    char *cert = path2(fx->revoked, TDSX_CRED_AUTH_CERT);
    uint8_t *pem = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(cert, 1 << 20, &pem, &len), 0);
    tdsx_verify_opts_t o = {.purpose = TDSX_PURPOSE_AUTH, .require_crl = 0};
    tdsx_identity_t id;
    tdsx_test_alloc_fail_after(0);
    assert_int_equal(tdsx_cert_verify_pem(t, pem, len, &o, &id), TDSX_E_CERT_REVOKED);
    unsigned long total = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    for (unsigned long n = 1; n <= total; n++) {
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_cert_verify_pem(t, pem, len, &o, &id);
        tdsx_test_alloc_reset();
        assert_int_not_equal(rc, 0);
    }
    tdsx_free(pem);
    free(cert);
    tdsx_trust_free(t);
}

static void allocation_failures_in_the_ca(void **state)
{
    (void)state;
    char *dir = path2(fx->tmp, "alloc-ca"), *out = path2(fx->tmp, "alloc-node");
    char *crl_path = path2(fx->tmp, "alloc.crl");
    tdsx_ca_init_opts_t io = {.name = "Alloc Root", .intermediate = 1, .force = 1};
    tdsx_issue_opts_t o = {
        .uscc = USCC_A, .org = "Org", .node = "n", .role = TDSX_ROLE_BRAIN, .force = 1};
    /* Count one clean pass, then fail each allocation in turn (sampled: a pass writes
     * a dozen files). */
    tdsx_ca_t *ca = NULL;
    tdsx_test_alloc_fail_after(0);
    assert_int_equal(tdsx_ca_init(dir, &io), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    assert_int_equal(tdsx_ca_crl(ca, 0, crl_path, 1), 0);
    unsigned long total = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    tdsx_ca_free(ca);
    unsigned long step = total / 150 + 1;
    unsigned long failures = 0;
    for (unsigned long n = 1; n <= total; n += step) {
        ca = NULL;
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_ca_init(dir, &io);
        if (rc == 0)
            rc = tdsx_ca_open(dir, &ca);
        if (rc == 0)
            rc = tdsx_ca_issue(ca, &o, out);
        if (rc == 0)
            rc = tdsx_ca_crl(ca, 0, crl_path, 1);
        tdsx_test_alloc_reset();
        tdsx_ca_free(ca);
        failures += rc != 0;
    }
    assert_true(failures > 0);
    /* The directory is still usable afterwards. */
    assert_int_equal(tdsx_ca_init(dir, &io), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    tdsx_ca_free(ca);
    free(dir);
    free(out);
    free(crl_path);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return tdsx_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (n == 0) {
        tdsx_free(p);
        return NULL;
    }
    return tdsx_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    tdsx_free(p);
}

int main(void)
{
    /* Before any other OpenSSL call, so every OpenSSL allocation can be made to fail. */
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) {
        fprintf(stderr, "cannot hook OpenSSL's allocator\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_auth_certificate_gives_identity),
        cmocka_unit_test(valid_sign_certificate),
        cmocka_unit_test(intermediate_chain_depth_two),
        cmocka_unit_test(remembered_success_never_changes_an_answer),
        cmocka_unit_test(der_input_is_checked_and_remembered_exactly),
        cmocka_unit_test(crl_present_and_not_listing_the_cert),
        cmocka_unit_test(custom_control_cert_is_valid),
        cmocka_unit_test(org_code_warning_reaches_identity),
        cmocka_unit_test(expired_is_refused),
        cmocka_unit_test(not_yet_valid_is_refused),
        cmocka_unit_test(revoked_is_refused_with_crl),
        cmocka_unit_test(revoked_at_intermediate_level),
        cmocka_unit_test(missing_crl_with_require_crl),
        cmocka_unit_test(foreign_crl_is_ignored_or_invalid),
        cmocka_unit_test(tampered_crl_is_invalid),
        cmocka_unit_test(expired_crl_is_refused),
        cmocka_unit_test(foreign_ca_is_untrusted),
        cmocka_unit_test(empty_trust_set_trusts_nothing),
        cmocka_unit_test(tampered_certificate_is_refused),
        cmocka_unit_test(unparsable_input_is_refused),
        cmocka_unit_test(auth_as_sign_and_sign_as_auth_fail),
        cmocka_unit_test(wrong_role_is_refused),
        cmocka_unit_test(missing_or_extra_role_is_refused),
        cmocka_unit_test(bad_subject_is_refused),
        cmocka_unit_test(invalid_uscc_in_subject_is_refused),
        cmocka_unit_test(non_ed25519_key_is_refused),
        cmocka_unit_test(key_usage_mixtures_are_refused),
        cmocka_unit_test(ca_certificate_is_not_a_node),
        cmocka_unit_test(refusal_is_logged),
        cmocka_unit_test(caller_error_queue_is_left_alone),
        cmocka_unit_test(allocation_failures_fail_cleanly),
        cmocka_unit_test(allocation_failures_never_accept_revoked),
        cmocka_unit_test(allocation_failures_in_the_ca),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
