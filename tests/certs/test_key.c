/* Key files: PKCS#8 PEM, 0600, the raw forms libsodium uses, and everything refused. */
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "internal.h"

typedef struct fixture_s {
    char *dir;
    char *node; /* credential directory */
} fixture_t;

static char *cred(const fixture_t *f, const char *name)
{
    return tdsx_test_path(f->node, name);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tdsx_test_mkdtemp();
    char *ca_dir = tdsx_test_path(f->dir, "ca");
    f->node = tdsx_test_path(f->dir, "node");
    tdsx_ca_init_opts_t io = {.name = "Key Test Root"};
    assert_int_equal(tdsx_ca_init(ca_dir, &io), 0);
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(ca_dir, &ca), 0);
    tdsx_issue_opts_t o = {.uscc = "91350100M000100Y43",
                           .org = "测试企业",
                           .node = "n1",
                           .role = TDSX_ROLE_ENTERPRISE};
    assert_int_equal(tdsx_ca_issue(ca, &o, f->node), 0);
    tdsx_ca_free(ca);
    free(ca_dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free(f->node);
    tdsx_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* The raw public key of the first certificate in a PEM file. */
static void cert_pub(const char *path, uint8_t pub[32])
{
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    size_t len = 32;
    assert_int_equal(EVP_PKEY_get_raw_public_key(X509_get0_pubkey(sk_X509_value(sk, 0)), pub, &len),
                     1);
    assert_int_equal(len, 32);
    sk_X509_pop_free(sk, X509_free);
}

static void pub_from_private(int type, const uint8_t priv[32], uint8_t pub[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(type, NULL, priv, 32);
    assert_non_null(k);
    size_t len = 32;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &len), 1);
    EVP_PKEY_free(k);
}

static void ed25519_seed_matches_certificate(void **state)
{
    fixture_t *f = *state;
    static const char *const pairs[][2] = {{TDSX_CRED_AUTH_KEY, TDSX_CRED_AUTH_CERT},
                                           {TDSX_CRED_SIGN_KEY, TDSX_CRED_SIGN_CERT}};
    for (size_t i = 0; i < 2; i++) {
        char *key = cred(f, pairs[i][0]), *crt = cred(f, pairs[i][1]);
        uint8_t seed[32], want[32], got[32];
        assert_int_equal(tdsx_key_load_ed25519(key, seed), 0);
        cert_pub(crt, want);
        pub_from_private(EVP_PKEY_ED25519, seed, got);
        assert_memory_equal(got, want, 32);
        free(key);
        free(crt);
    }
}

static void x25519_secret_matches_public_file(void **state)
{
    fixture_t *f = *state;
    char *key = cred(f, TDSX_CRED_ENC_KEY), *pubf = cred(f, TDSX_CRED_ENC_PUB);
    uint8_t secret[32], pub[32], derived[32];
    assert_int_equal(tdsx_key_load_x25519(key, secret), 0);
    assert_int_equal(tdsx_key_load_x25519_pub(pubf, pub), 0);
    pub_from_private(EVP_PKEY_X25519, secret, derived);
    assert_memory_equal(derived, pub, 32);
    free(key);
    free(pubf);
}

static void private_keys_are_written_0600(void **state)
{
    fixture_t *f = *state;
    static const char *const keys[] = {TDSX_CRED_AUTH_KEY, TDSX_CRED_SIGN_KEY, TDSX_CRED_ENC_KEY};
    struct stat st;
    for (size_t i = 0; i < 3; i++) {
        char *p = cred(f, keys[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        free(p);
    }
    assert_int_equal(stat(f->node, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* Copies a key file to name inside the fixture directory with the given mode. */
static char *copy_with_mode(const fixture_t *f, const char *from, const char *name, mode_t mode)
{
    char *src = cred(f, from), *dst = tdsx_test_path(f->dir, name);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(src, 1 << 16, &data, &len), 0);
    tdsx_test_write_file(dst, data, len);
    assert_int_equal(chmod(dst, mode), 0);
    tdsx_free(data);
    free(src);
    return dst;
}

static void group_or_other_access_is_refused(void **state)
{
    fixture_t *f = *state;
    static const mode_t modes[] = {0640, 0604, 0644, 0660, 0606, 0610, 0601};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        uint8_t raw[32];
        char *p = copy_with_mode(f, TDSX_CRED_AUTH_KEY, "open.key", modes[i]);
        assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_PERM);
        assert_int_equal(tdsx_key_load_x25519(p, raw), TDSX_E_PERM);
        remove(p);
        free(p);
    }
    /* 0400 (read-only for the owner) is fine. */
    uint8_t raw[32];
    char *p = copy_with_mode(f, TDSX_CRED_AUTH_KEY, "ro.key", 0400);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), 0);
    remove(p);
    free(p);
}

static void wrong_key_type_is_refused(void **state)
{
    fixture_t *f = *state;
    uint8_t raw[32];
    char *enc = cred(f, TDSX_CRED_ENC_KEY), *auth = cred(f, TDSX_CRED_AUTH_KEY);
    char *pub = cred(f, TDSX_CRED_ENC_PUB);
    assert_int_equal(tdsx_key_load_ed25519(enc, raw), TDSX_E_KEY_PARSE);
    assert_int_equal(tdsx_key_load_x25519(auth, raw), TDSX_E_KEY_PARSE);
    /* A public key file is not a private key, and a private key file not a public one. */
    char *pub_copy = copy_with_mode(f, TDSX_CRED_ENC_PUB, "pub.pem", 0600);
    assert_int_equal(tdsx_key_load_x25519(pub_copy, raw), TDSX_E_KEY_PARSE);
    char *enc_copy = copy_with_mode(f, TDSX_CRED_ENC_KEY, "enc-as-pub.pem", 0600);
    assert_int_equal(tdsx_key_load_x25519_pub(enc_copy, raw), TDSX_E_KEY_PARSE);
    remove(pub_copy);
    remove(enc_copy);
    free(pub_copy);
    free(enc_copy);
    free(enc);
    free(auth);
    free(pub);
}

static void ed25519_public_key_is_not_x25519(void **state)
{
    fixture_t *f = *state;
    EVP_PKEY *k = NULL;
    assert_int_equal(tdsx__key_generate("ED25519", &k), 0);
    char *p = tdsx_test_path(f->dir, "ed.pub");
    assert_int_equal(tdsx__key_write_public(p, k, 1), 0);
    uint8_t raw[32];
    assert_int_equal(tdsx_key_load_x25519_pub(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    EVP_PKEY_free(k);
}

static void write_file(const fixture_t *f, const char *name, const void *p, size_t n, char **out)
{
    *out = tdsx_test_path(f->dir, name);
    tdsx_test_write_file(*out, p, n);
    assert_int_equal(chmod(*out, 0600), 0);
}

static void garbage_and_missing_files_are_refused(void **state)
{
    fixture_t *f = *state;
    uint8_t raw[32];
    char *p = NULL;
    write_file(f, "garbage.key", "not a key\n", 10, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    assert_int_equal(tdsx_key_load_x25519_pub(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    write_file(f, "empty.key", "", 0, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    /* A PEM block with the right name but a body that is not PKCS#8. */
    static const char fake[] = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAA\n"
                               "-----END PRIVATE KEY-----\n";
    write_file(f, "fake.key", fake, sizeof fake - 1, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    /* A certificate is not a key. */
    char *crt = cred(f, TDSX_CRED_AUTH_CERT);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(tdsx_file_read(crt, 1 << 16, &data, &len), 0);
    write_file(f, "cert-as.key", data, len, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    tdsx_free(data);
    free(crt);
    p = tdsx_test_path(f->dir, "missing.key");
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_NOTFOUND);
    assert_int_equal(tdsx_key_load_x25519_pub(p, raw), TDSX_E_NOTFOUND);
    free(p);
    /* A directory is not a key file. */
    assert_int_equal(chmod(f->node, 0700), 0);
    assert_int_equal(tdsx_key_load_ed25519(f->node, raw), TDSX_E_KEY_PARSE);
}

static void encrypted_and_legacy_keys_are_refused(void **state)
{
    fixture_t *f = *state;
    uint8_t raw[32];
    char *p = NULL;
    EVP_PKEY *k = NULL;
    assert_int_equal(tdsx__key_generate("ED25519", &k), 0);
    /* Encrypted PKCS#8: never prompts for a passphrase, just refuses. */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, k, EVP_aes_256_cbc(), "pw", 2, NULL, NULL),
                     1);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    write_file(f, "encrypted.key", data, (size_t)n, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    BIO_free(bio);
    EVP_PKEY_free(k);
    /* A traditional (non-PKCS#8) "EC PRIVATE KEY" block. */
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_non_null(strstr(data, "EC PRIVATE KEY"));
    write_file(f, "legacy.key", data, (size_t)n, &p);
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_KEY_PARSE);
    remove(p);
    free(p);
    BIO_free(bio);
    EVP_PKEY_free(k);
}

static void oversize_key_file_is_refused(void **state)
{
    fixture_t *f = *state;
    size_t n = TDSX__KEY_CAP + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'A', n);
    char *p = NULL;
    write_file(f, "big.key", big, n, &p);
    uint8_t raw[32];
    assert_int_equal(tdsx_key_load_ed25519(p, raw), TDSX_E_TOOBIG);
    remove(p);
    free(p);
    free(big);
}

static void key_writes_refuse_to_overwrite(void **state)
{
    fixture_t *f = *state;
    EVP_PKEY *k = NULL;
    assert_int_equal(tdsx__key_generate("ED25519", &k), 0);
    char *p = cred(f, TDSX_CRED_AUTH_KEY);
    uint8_t before[32], after[32];
    assert_int_equal(tdsx_key_load_ed25519(p, before), 0);
    assert_int_equal(tdsx__key_write_private(p, k, 0), TDSX_E_EXISTS);
    assert_int_equal(tdsx_key_load_ed25519(p, after), 0);
    assert_memory_equal(before, after, 32);
    char *q = tdsx_test_path(f->dir, "fresh.key");
    assert_int_equal(tdsx__key_write_private(q, k, 0), 0);
    assert_int_equal(tdsx__key_write_private(q, k, 0), TDSX_E_EXISTS);
    assert_int_equal(tdsx__key_write_private(q, k, 1), 0);
    remove(q);
    free(q);
    free(p);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ed25519_seed_matches_certificate),
        cmocka_unit_test(x25519_secret_matches_public_file),
        cmocka_unit_test(private_keys_are_written_0600),
        cmocka_unit_test(group_or_other_access_is_refused),
        cmocka_unit_test(wrong_key_type_is_refused),
        cmocka_unit_test(ed25519_public_key_is_not_x25519),
        cmocka_unit_test(garbage_and_missing_files_are_refused),
        cmocka_unit_test(encrypted_and_legacy_keys_are_refused),
        cmocka_unit_test(oversize_key_file_is_refused),
        cmocka_unit_test(key_writes_refuse_to_overwrite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
