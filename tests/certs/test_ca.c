/* The CA: what init, issue, revoke and crl write, and what they refuse. */
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "internal.h"

#define DAY 86400
#define USCC_A "91350100M000100Y43"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = tdsx_test_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_rmdir(tmp);
    tmp = NULL;
    return 0;
}

static char *sub(const char *a, const char *b)
{
    return tdsx_test_path(a, b);
}

static tdsx_ca_t *make_ca(const char *name, int intermediate, char **dir_out)
{
    char *dir = sub(tmp, name);
    tdsx_ca_init_opts_t o = {.name = name, .intermediate = intermediate};
    assert_int_equal(tdsx_ca_init(dir, &o), 0);
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    *dir_out = dir;
    return ca;
}

static tdsx_issue_opts_t node_opts(const char *node)
{
    tdsx_issue_opts_t o = {.uscc = USCC_A,
                           .org = "青岛海纳精密制造有限公司",
                           .node = node,
                           .role = TDSX_ROLE_ENTERPRISE};
    return o;
}

static X509 *load_first(const char *dir, const char *name)
{
    char *p = sub(dir, name);
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(p, &sk), 0);
    X509 *x = sk_X509_shift(sk);
    sk_X509_pop_free(sk, X509_free);
    free(p);
    return x;
}

static char *read_text(const char *dir, const char *name, size_t *len)
{
    char *p = sub(dir, name);
    uint8_t *data = NULL;
    size_t n = 0;
    int rc = tdsx_file_read(p, 1 << 20, &data, &n);
    free(p);
    if (rc)
        return NULL;
    if (len)
        *len = n;
    return (char *)data;
}

static mode_t mode_of(const char *dir, const char *name)
{
    char *p = name ? sub(dir, name) : strdup(dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    free(p);
    return st.st_mode & 0777;
}

static int exists_in(const char *dir, const char *name)
{
    char *p = sub(dir, name);
    struct stat st;
    int yes = lstat(p, &st) == 0;
    free(p);
    return yes;
}

static void serial_hex(X509 *x, char out[64])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    assert_true(strlen(hex) < 64);
    memcpy(out, hex, strlen(hex) + 1);
    OPENSSL_free(hex);
    BN_free(bn);
}

/* The UTF-8 value of the only entry of nid in the subject. */
static void subject_entry(X509 *x, int nid, char *out, size_t size, int *type)
{
    const X509_NAME *n = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(n, nid, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_NAME_get_index_by_NID(n, nid, idx), -1);
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    assert_true(len > 0 && (size_t)len < size);
    memcpy(out, utf8, (size_t)len);
    out[len] = '\0';
    OPENSSL_free(utf8);
    if (type)
        *type = ASN1_STRING_type(s);
}

/* ------------------------------------------------------------------------------------------
 * init
 * ---------------------------------------------------------------------------------------- */

static void init_writes_root_and_intermediate(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("省级根CA", 1, &dir);
    assert_int_equal(mode_of(dir, NULL), 0700);
    assert_int_equal(mode_of(dir, TDSX_CA_ROOT_KEY), 0600);
    assert_int_equal(mode_of(dir, TDSX_CA_INTER_KEY), 0600);
    X509 *root = load_first(dir, TDSX_CA_ROOT_CERT);
    X509 *inter = load_first(dir, TDSX_CA_INTER_CERT);
    /* Root: self-signed Ed25519 CA, key usage for certificates and CRLs only. */
    assert_int_equal(X509_self_signed(root, 1), 1);
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(root), "ED25519"));
    assert_int_equal(X509_check_ca(root), 1);
    assert_int_equal(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(root, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    assert_null(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(root);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(root);
    assert_non_null(ski);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);
    /* Intermediate: issued and signed by the root, path length 0. */
    assert_int_equal(X509_check_issued(root, inter), X509_V_OK);
    assert_int_equal(X509_verify(inter, X509_get0_pubkey(root)), 1);
    assert_int_equal(X509_get_pathlen(inter), 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(inter), ski), 0);
    char cn[256];
    subject_entry(root, NID_commonName, cn, sizeof cn, NULL);
    assert_string_equal(cn, "省级根CA");
    /* The index records the intermediate, so the root can revoke it. */
    char serial[64];
    serial_hex(inter, serial);
    char *index = read_text(dir, TDSX_CA_INDEX, NULL);
    assert_non_null(index);
    char *line = strstr(index, serial);
    assert_non_null(line);
    assert_int_equal(strncmp(line + strlen(serial), "\troot\tintermediate\t", 19), 0);
    tdsx_free(index);
    X509_free(root);
    X509_free(inter);
    tdsx_ca_free(ca);
    free(dir);
}

static void init_refuses_existing_without_force(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Refuse Root", 1, &dir);
    tdsx_ca_free(ca);
    size_t len_before = 0;
    char *before = read_text(dir, TDSX_CA_ROOT_CERT, &len_before);
    tdsx_ca_init_opts_t o = {.name = "Other Root"};
    assert_int_equal(tdsx_ca_init(dir, &o), TDSX_E_EXISTS);
    size_t len_after = 0;
    char *after = read_text(dir, TDSX_CA_ROOT_CERT, &len_after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_before);
    assert_true(exists_in(dir, TDSX_CA_INTER_CERT));
    tdsx_free(after);
    /* With force it is replaced, and the old intermediate does not linger. */
    o.force = 1;
    assert_int_equal(tdsx_ca_init(dir, &o), 0);
    after = read_text(dir, TDSX_CA_ROOT_CERT, &len_after);
    assert_false(len_before == len_after && memcmp(before, after, len_before) == 0);
    assert_false(exists_in(dir, TDSX_CA_INTER_CERT));
    assert_false(exists_in(dir, TDSX_CA_INTER_KEY));
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    tdsx_ca_free(ca);
    tdsx_free(before);
    tdsx_free(after);
    free(dir);
}

static void init_refuses_bad_options(void **state)
{
    (void)state;
    char *dir = sub(tmp, "bad-init");
    tdsx_ca_init_opts_t o = {.name = ""};
    assert_int_equal(tdsx_ca_init(dir, &o), TDSX_E_INVAL);
    o.name = NULL;
    assert_int_equal(tdsx_ca_init(dir, &o), TDSX_E_INVAL);
    o.name = "Root";
    o.days = -1;
    assert_int_equal(tdsx_ca_init(dir, &o), TDSX_E_INVAL);
    o.days = 1000000;
    assert_int_equal(tdsx_ca_init(dir, &o), TDSX_E_INVAL);
    assert_int_equal(tdsx_ca_init(dir, NULL), TDSX_E_INVAL);
    /* Nothing was created by the refusals. */
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    free(dir);
}

/* ------------------------------------------------------------------------------------------
 * issue
 * ---------------------------------------------------------------------------------------- */

static void issue_writes_credentials(void **state)
{
    (void)state;
    static const char *const files[] = {
        TDSX_CRED_ROOT,      TDSX_CRED_CHAIN,    TDSX_CRED_AUTH_CERT, TDSX_CRED_AUTH_KEY,
        TDSX_CRED_SIGN_CERT, TDSX_CRED_SIGN_KEY, TDSX_CRED_ENC_PUB,   TDSX_CRED_ENC_KEY};
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Issue Root", 1, &dir);
    char *out = sub(tmp, "issued");
    tdsx_issue_opts_t o = node_opts("gw-1");
    o.days = 30;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        assert_true(exists_in(out, files[i]));
    assert_int_equal(mode_of(out, NULL), 0700);
    assert_int_equal(mode_of(out, TDSX_CRED_AUTH_KEY), 0600);
    assert_int_equal(mode_of(out, TDSX_CRED_SIGN_KEY), 0600);
    assert_int_equal(mode_of(out, TDSX_CRED_ENC_KEY), 0600);

    /* ca.pem is the root, chain.pem the intermediate, byte for byte. */
    size_t a = 0, b = 0;
    char *x1 = read_text(out, TDSX_CRED_ROOT, &a), *x2 = read_text(dir, TDSX_CA_ROOT_CERT, &b);
    assert_int_equal(a, b);
    assert_memory_equal(x1, x2, a);
    tdsx_free(x1);
    tdsx_free(x2);
    x1 = read_text(out, TDSX_CRED_CHAIN, &a);
    x2 = read_text(dir, TDSX_CA_INTER_CERT, &b);
    assert_int_equal(a, b);
    assert_memory_equal(x1, x2, a);
    tdsx_free(x1);
    tdsx_free(x2);

    X509 *auth = load_first(out, TDSX_CRED_AUTH_CERT);
    X509 *sign = load_first(out, TDSX_CRED_SIGN_CERT);
    X509 *inter = load_first(dir, TDSX_CA_INTER_CERT);
    X509 *certs[2] = {auth, sign};
    for (int i = 0; i < 2; i++) {
        X509 *x = certs[i];
        assert_int_equal(X509_verify(x, X509_get0_pubkey(inter)), 1);
        assert_true(EVP_PKEY_is_a(X509_get0_pubkey(x), "ED25519"));
        assert_int_equal(X509_check_ca(x), 0);
        char v[256];
        int type = 0;
        subject_entry(x, NID_organizationName, v, sizeof v, &type);
        assert_string_equal(v, "青岛海纳精密制造有限公司");
        assert_int_equal(type, V_ASN1_UTF8STRING);
        subject_entry(x, NID_serialNumber, v, sizeof v, &type);
        assert_string_equal(v, USCC_A);
        assert_int_equal(type, V_ASN1_PRINTABLESTRING);
        subject_entry(x, NID_commonName, v, sizeof v, NULL);
        assert_string_equal(v, "gw-1");
        /* Subject order O, serialNumber, CN. */
        const X509_NAME *n = X509_get_subject_name(x);
        assert_int_equal(X509_NAME_entry_count(n), 3);
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 0))),
                         NID_organizationName);
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 2))),
                         NID_commonName);
        /* Role: exactly the enterprise policy OID. */
        CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(x, NID_certificate_policies, NULL, NULL);
        assert_non_null(pols);
        assert_int_equal(sk_POLICYINFO_num(pols), 1);
        char oid[128];
        OBJ_obj2txt(oid, sizeof oid, sk_POLICYINFO_value(pols, 0)->policyid, 1);
        assert_string_equal(oid, TDSX_OID_ROLE_ENTERPRISE);
        CERTIFICATEPOLICIES_free(pols);
        /* Serial: 16 octets, positive. */
        const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
        assert_int_equal(ASN1_STRING_length(serial), 16);
        assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER);
        /* Validity as asked. */
        int64_t nb = 0, na = 0;
        assert_int_equal(tdsx__asn1_time_get(X509_get0_notBefore(x), &nb), 0);
        assert_int_equal(tdsx__asn1_time_get(X509_get0_notAfter(x), &na), 0);
        assert_int_equal(na - nb, 30 * DAY);
        assert_non_null(X509_get0_subject_key_id(x));
        assert_int_equal(
            ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(inter)),
            0);
    }
    assert_int_not_equal(
        ASN1_INTEGER_cmp(X509_get0_serialNumber(auth), X509_get0_serialNumber(sign)), 0);
    assert_int_equal(X509_get_key_usage(auth), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(auth), XKU_SSL_CLIENT | XKU_SSL_SERVER);
    assert_int_equal(X509_get_key_usage(sign), KU_NON_REPUDIATION);
    assert_false(X509_get_extension_flags(sign) & EXFLAG_XKUSAGE);
    assert_false(EVP_PKEY_eq(X509_get0_pubkey(auth), X509_get0_pubkey(sign)));

    /* Both are in the index, issued by the intermediate. */
    char *index = read_text(dir, TDSX_CA_INDEX, NULL);
    char serial[64];
    serial_hex(auth, serial);
    char *line = strstr(index, serial);
    assert_non_null(line);
    assert_int_equal(strncmp(line + strlen(serial), "\tintermediate\tauth\t", 19), 0);
    serial_hex(sign, serial);
    line = strstr(index, serial);
    assert_non_null(line);
    assert_int_equal(strncmp(line + strlen(serial), "\tintermediate\tsign\t", 19), 0);
    tdsx_free(index);
    X509_free(auth);
    X509_free(sign);
    X509_free(inter);
    tdsx_ca_free(ca);
    free(out);
    free(dir);
}

static void issue_by_root_only_ca_has_empty_chain(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Flat Root", 0, &dir);
    char *out = sub(tmp, "flat-node");
    tdsx_issue_opts_t o = node_opts("n");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    size_t len = 99;
    char *chain = read_text(out, TDSX_CRED_CHAIN, &len);
    assert_non_null(chain);
    assert_int_equal(len, 0);
    tdsx_free(chain);
    X509 *root = load_first(dir, TDSX_CA_ROOT_CERT);
    X509 *auth = load_first(out, TDSX_CRED_AUTH_CERT);
    assert_int_equal(X509_verify(auth, X509_get0_pubkey(root)), 1);
    X509_free(root);
    X509_free(auth);
    tdsx_ca_free(ca);
    free(out);
    free(dir);
}

static void issue_refuses_invalid_uscc(void **state)
{
    (void)state;
    static const struct {
        const char *uscc;
        int rc;
    } cases[] = {{"91350100M000100Y44", TDSX_E_USCC_CHECK},
                 {"91350100M000100Y4Z", TDSX_E_USCC_CHAR},
                 {"91350100m000100Y43", TDSX_E_USCC_CHAR},
                 {"91350100M000100Y4", TDSX_E_USCC_LENGTH},
                 {"", TDSX_E_USCC_LENGTH},
                 {NULL, TDSX_E_INVAL}};
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("USCC Root", 0, &dir);
    size_t before_len = 0;
    char *before = read_text(dir, TDSX_CA_INDEX, &before_len);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = sub(tmp, "never");
        tdsx_issue_opts_t o = node_opts("n");
        o.uscc = cases[i].uscc;
        assert_int_equal(tdsx_ca_issue(ca, &o, out), cases[i].rc);
        struct stat st;
        assert_int_not_equal(stat(out, &st), 0); /* nothing written */
        free(out);
    }
    size_t after_len = 0;
    char *after = read_text(dir, TDSX_CA_INDEX, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    tdsx_free(before);
    tdsx_free(after);
    tdsx_ca_free(ca);
    free(dir);
}

static void issue_refuses_bad_names_roles_and_days(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Names Root", 0, &dir);
    char *out = sub(tmp, "never-names");
    tdsx_issue_opts_t o = node_opts("n");
    o.role = TDSX_ROLE_NONE;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("a/b");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("line\nbreak");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("n");
    o.org = "";
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o.org = "\xff\xfe not UTF-8";
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("n");
    o.days = -5;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    o = node_opts("n");
    o.role = (tdsx_role_t)9;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_INVAL);
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
    free(out);
    tdsx_ca_free(ca);
    free(dir);
}

static void issue_refuses_overwrite_without_force(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Overwrite Root", 0, &dir);
    char *out = sub(tmp, "twice");
    tdsx_issue_opts_t o = node_opts("n");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    size_t a = 0, b = 0;
    char *first = read_text(out, TDSX_CRED_AUTH_KEY, &a);
    assert_int_equal(tdsx_ca_issue(ca, &o, out), TDSX_E_EXISTS);
    char *second = read_text(out, TDSX_CRED_AUTH_KEY, &b);
    assert_int_equal(a, b);
    assert_memory_equal(first, second, a);
    tdsx_free(second);
    o.force = 1;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    second = read_text(out, TDSX_CRED_AUTH_KEY, &b);
    assert_false(a == b && memcmp(first, second, a) == 0);
    assert_int_equal(mode_of(out, TDSX_CRED_AUTH_KEY), 0600);
    tdsx_free(first);
    tdsx_free(second);
    free(out);
    tdsx_ca_free(ca);
    free(dir);
}

static void issue_logs_org_code_warning(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("Warn Root", 0, &dir);
    char code[19];
    memcpy(code, "91350100M000100Y5", 17);
    code[17] = tdsx_uscc_check_char("91350100M000100Y5");
    code[18] = '\0';
    FILE *log = tmpfile();
    assert_non_null(log);
    tdsx_log_set_output(log);
    char *out = sub(tmp, "warned");
    tdsx_issue_opts_t o = node_opts("n");
    o.uscc = code;
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    tdsx_log_set_output(NULL);
    char line[1024] = "";
    rewind(log);
    assert_non_null(fgets(line, sizeof line, log));
    assert_non_null(strstr(line, "\"event\":\"ca.uscc_org_code\""));
    assert_non_null(strstr(line, code));
    fclose(log);
    free(out);
    tdsx_ca_free(ca);
    free(dir);
}

/* ------------------------------------------------------------------------------------------
 * revoke and crl
 * ---------------------------------------------------------------------------------------- */

/* The CRLs of a file, in order. */
static STACK_OF(X509_CRL) *load_crls(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(path, 1 << 20, &data, &len), 0);
    STACK_OF(X509_CRL) *crls = NULL;
    assert_int_equal(tdsx__pem_crls(tdsx_bytes(data, len), &crls), 0);
    tdsx_free(data);
    return crls;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(n);
    long v = ASN1_INTEGER_get(n);
    ASN1_INTEGER_free(n);
    return v;
}

static void revoke_and_crl_at_both_levels(void **state)
{
    (void)state;
    char *dir = NULL;
    tdsx_ca_t *ca = make_ca("CRL Root", 1, &dir);
    char *out = sub(tmp, "to-revoke");
    tdsx_issue_opts_t o = node_opts("victim");
    assert_int_equal(tdsx_ca_issue(ca, &o, out), 0);
    X509 *auth = load_first(out, TDSX_CRED_AUTH_CERT);
    X509 *sign = load_first(out, TDSX_CRED_SIGN_CERT);
    X509 *root = load_first(dir, TDSX_CA_ROOT_CERT);
    X509 *inter = load_first(dir, TDSX_CA_INTER_CERT);

    const int64_t t1 = tdsx_now() - 3600;
    tdsx_now_set(t1);
    assert_int_equal(tdsx_ca_revoke(ca, auth), 0);
    assert_int_equal(tdsx_ca_revoke(ca, inter), 0);
    tdsx_now_set(t1 + 600);
    assert_int_equal(tdsx_ca_revoke(ca, auth), 0); /* again: keeps t1 */
    tdsx_now_set(0);

    char *crl_path = sub(tmp, "both.crl");
    const int64_t before = tdsx_now();
    assert_int_equal(tdsx_ca_crl(ca, 3, crl_path, 0), 0);
    STACK_OF(X509_CRL) *crls = load_crls(crl_path);
    assert_int_equal(sk_X509_CRL_num(crls), 2);
    X509_CRL *rc = sk_X509_CRL_value(crls, 0), *ic = sk_X509_CRL_value(crls, 1);
    /* v2, issued and signed by the right CA, with number and key identifier. */
    assert_int_equal(X509_CRL_get_version(rc), X509_CRL_VERSION_2);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(rc), X509_get_subject_name(root)), 0);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(ic), X509_get_subject_name(inter)), 0);
    assert_int_equal(X509_CRL_verify(rc, X509_get0_pubkey(root)), 1);
    assert_int_equal(X509_CRL_verify(ic, X509_get0_pubkey(inter)), 1);
    assert_int_equal(X509_CRL_verify(ic, X509_get0_pubkey(root)), 0);
    const long number = crl_number(rc);
    assert_true(number >= 1);
    assert_int_equal(crl_number(ic), number);
    int64_t last = 0, next = 0;
    assert_int_equal(tdsx__asn1_time_get(X509_CRL_get0_lastUpdate(ic), &last), 0);
    assert_int_equal(tdsx__asn1_time_get(X509_CRL_get0_nextUpdate(ic), &next), 0);
    assert_true(last >= before && last <= tdsx_now());
    assert_int_equal(next - last, 3 * DAY);
    /* The leaf is in the intermediate's CRL with the first date; the intermediate in the
     * root's; the sign certificate, not revoked, in neither. */
    X509_REVOKED *r = NULL;
    assert_int_equal(X509_CRL_get0_by_cert(ic, &r, auth), 1);
    int64_t when = 0;
    assert_int_equal(tdsx__asn1_time_get(X509_REVOKED_get0_revocationDate(r), &when), 0);
    assert_int_equal(when, t1);
    assert_int_equal(X509_CRL_get0_by_cert(rc, &r, auth), 0);
    assert_int_equal(X509_CRL_get0_by_cert(rc, &r, inter), 1);
    assert_int_equal(X509_CRL_get0_by_cert(ic, &r, sign), 0);
    assert_int_equal(X509_CRL_get0_by_cert(rc, &r, sign), 0);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* Refused without force, and that refusal does not use up a CRL number. */
    assert_int_equal(tdsx_ca_crl(ca, 0, crl_path, 0), TDSX_E_EXISTS);
    assert_int_equal(tdsx_ca_crl(ca, 0, crl_path, 1), 0);
    crls = load_crls(crl_path);
    assert_int_equal(crl_number(sk_X509_CRL_value(crls, 0)), number + 1);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    free(crl_path);
    X509_free(auth);
    X509_free(sign);
    X509_free(root);
    X509_free(inter);
    free(out);
    tdsx_ca_free(ca);
    free(dir);
}

static void revoke_refuses_what_the_ca_did_not_issue(void **state)
{
    (void)state;
    char *dir = NULL, *other_dir = NULL, *twin_dir = NULL;
    tdsx_ca_t *ca = make_ca("Revoke Root", 0, &dir);
    tdsx_ca_t *other = make_ca("Other Root", 0, &other_dir);
    /* Same name, different key. */
    char *twin_path = sub(tmp, "twin");
    tdsx_ca_init_opts_t io = {.name = "Revoke Root"};
    assert_int_equal(tdsx_ca_init(twin_path, &io), 0);
    tdsx_ca_t *twin = NULL;
    assert_int_equal(tdsx_ca_open(twin_path, &twin), 0);
    twin_dir = twin_path;

    char *o1 = sub(tmp, "other-node"), *o2 = sub(tmp, "twin-node");
    tdsx_issue_opts_t o = node_opts("n");
    assert_int_equal(tdsx_ca_issue(other, &o, o1), 0);
    assert_int_equal(tdsx_ca_issue(twin, &o, o2), 0);
    X509 *foreign = load_first(o1, TDSX_CRED_AUTH_CERT);
    X509 *lookalike = load_first(o2, TDSX_CRED_AUTH_CERT);
    size_t a = 0, b = 0;
    char *before = read_text(dir, TDSX_CA_INDEX, &a);
    assert_int_equal(tdsx_ca_revoke(ca, foreign), TDSX_E_NOTFOUND);
    assert_int_equal(tdsx_ca_revoke(ca, lookalike), TDSX_E_NOTFOUND);
    /* Signed by the CA's key but never recorded in its index. */
    X509 *issuer = NULL;
    EVP_PKEY *key = NULL, *leaf_key = NULL;
    tdsx__ca_issuer(ca, &issuer, &key);
    assert_int_equal(tdsx__key_generate("ED25519", &leaf_key), 0);
    X509_NAME *n = NULL;
    assert_int_equal(tdsx__name_node("Org", USCC_A, "ghost", &n), 0);
    tdsx__cert_spec_t s = {.subject = n,
                           .key = leaf_key,
                           .issuer = issuer,
                           .signer = key,
                           .not_before = tdsx_now(),
                           .not_after = tdsx_now() + DAY,
                           .pathlen = -1,
                           .key_usage = KU_DIGITAL_SIGNATURE};
    X509 *ghost = NULL;
    assert_int_equal(tdsx__cert_build(&s, &ghost), 0);
    assert_int_equal(tdsx_ca_revoke(ca, ghost), TDSX_E_NOTFOUND);
    /* The root itself is not in the index either. */
    X509 *root = load_first(dir, TDSX_CA_ROOT_CERT);
    assert_int_equal(tdsx_ca_revoke(ca, root), TDSX_E_NOTFOUND);
    char *after = read_text(dir, TDSX_CA_INDEX, &b);
    assert_int_equal(a, b);
    assert_memory_equal(before, after, a);
    tdsx_free(before);
    tdsx_free(after);
    X509_free(root);
    X509_free(ghost);
    X509_NAME_free(n);
    EVP_PKEY_free(leaf_key);
    X509_free(foreign);
    X509_free(lookalike);
    free(o1);
    free(o2);
    tdsx_ca_free(twin);
    tdsx_ca_free(other);
    tdsx_ca_free(ca);
    free(twin_dir);
    free(other_dir);
    free(dir);
}

/* ------------------------------------------------------------------------------------------
 * open
 * ---------------------------------------------------------------------------------------- */

static void open_refuses_missing_or_damaged(void **state)
{
    (void)state;
    tdsx_ca_t *ca = NULL;
    char *missing = sub(tmp, "no-ca-here");
    assert_int_equal(tdsx_ca_open(missing, &ca), TDSX_E_CA_STATE);
    assert_null(ca);
    free(missing);

    char *dir = NULL;
    ca = make_ca("Damage Root", 1, &dir);
    tdsx_ca_free(ca);
    ca = NULL;
    char *key = sub(dir, TDSX_CA_ROOT_KEY), *index = sub(dir, TDSX_CA_INDEX);
    char *ikey = sub(dir, TDSX_CA_INTER_KEY);

    /* A root key others can read. */
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_PERM);
    assert_int_equal(chmod(key, 0600), 0);

    /* A damaged index. */
    size_t len = 0;
    char *saved = read_text(dir, TDSX_CA_INDEX, &len);
    static const char bad[] = "ZZZ\troot\tauth\t1\t-\tCN=x\n";
    assert_int_equal(tdsx_file_write(index, bad, sizeof bad - 1, 0600, 1), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_CA_STATE);
    static const char short_line[] = "ABCD\troot\n";
    assert_int_equal(tdsx_file_write(index, short_line, sizeof short_line - 1, 0600, 1), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_CA_STATE);
    assert_int_equal(remove(index), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_CA_STATE);
    assert_int_equal(tdsx_file_write(index, saved, len, 0600, 1), 0);
    tdsx_free(saved);

    /* An intermediate key that belongs to another certificate. */
    EVP_PKEY *k = NULL;
    assert_int_equal(tdsx__key_generate("ED25519", &k), 0);
    saved = read_text(dir, TDSX_CA_INTER_KEY, &len);
    assert_int_equal(tdsx__key_write_private(ikey, k, 1), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_CA_STATE);
    assert_int_equal(tdsx_file_write(ikey, saved, len, 0600, 1), 0);
    tdsx_free(saved);
    EVP_PKEY_free(k);

    /* A root key file that is not a key. */
    saved = read_text(dir, TDSX_CA_ROOT_KEY, &len);
    assert_int_equal(tdsx_file_write(key, "junk\n", 5, 0600, 1), 0);
    assert_int_equal(tdsx_ca_open(dir, &ca), TDSX_E_CA_STATE);
    assert_int_equal(tdsx_file_write(key, saved, len, 0600, 1), 0);
    tdsx_free(saved);

    /* Restored, it opens again. */
    assert_int_equal(tdsx_ca_open(dir, &ca), 0);
    tdsx_ca_free(ca);
    free(key);
    free(ikey);
    free(index);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_writes_root_and_intermediate),
        cmocka_unit_test(init_refuses_existing_without_force),
        cmocka_unit_test(init_refuses_bad_options),
        cmocka_unit_test(issue_writes_credentials),
        cmocka_unit_test(issue_by_root_only_ca_has_empty_chain),
        cmocka_unit_test(issue_refuses_invalid_uscc),
        cmocka_unit_test(issue_refuses_bad_names_roles_and_days),
        cmocka_unit_test(issue_refuses_overwrite_without_force),
        cmocka_unit_test(issue_logs_org_code_warning),
        cmocka_unit_test(revoke_and_crl_at_both_levels),
        cmocka_unit_test(revoke_refuses_what_the_ca_did_not_issue),
        cmocka_unit_test(open_refuses_missing_or_damaged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
