/* Key files: PKCS#8 PEM private keys kept 0600, SubjectPublicKeyInfo PEM public keys, and the
 * raw 32-byte forms libsodium uses. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

int tdsx__key_generate(const char *alg, EVP_PKEY **out)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, alg);
    if (!k)
        return tdsx__ossl_err(TDSX_E_INTERNAL);
    *out = k;
    return 0;
}

/* Reads a private key file into buf (size TDSX__KEY_CAP) after checking its mode. */
static int read_secret_file(const char *path, uint8_t *buf, size_t *len)
{
    struct stat st;
    size_t got = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TDSX_E_NOTFOUND : -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = TDSX_E_KEY_PARSE;
        goto fail;
    }
    /* Checked on the open descriptor, so the file judged is the file read. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        rc = TDSX_E_PERM;
        goto fail;
    }
    for (;;) {
        if (got == TDSX__KEY_CAP) {
            rc = TDSX_E_TOOBIG;
            goto fail;
        }
        ssize_t r = read(fd, buf + got, TDSX__KEY_CAP - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *len = got;
fail:
    close(fd);
    return rc;
}

/* Parses one PEM block named `want` and returns its DER (OPENSSL_malloc'd). */
static int pem_block(tdsx_bytes_t in, const char *want, unsigned char **der, long *der_len)
{
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    if (in.n > INT32_MAX)
        return TDSX_E_TOOBIG;
    BIO *bio = BIO_new_mem_buf(in.p, (int)in.n);
    if (!bio)
        return TDSX_E_NOMEM;
    int rc = TDSX_E_KEY_PARSE;
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
        goto fail;
    }
    /* PKCS#8 only: encrypted or legacy blocks carry another name or Proc-Type headers. */
    if (strcmp(name, want) != 0 || header[0] != '\0')
        goto fail;
    *der = data;
    *der_len = len;
    data = NULL;
    rc = 0;
fail:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, (size_t)len);
    BIO_free(bio);
    return rc;
}

int tdsx__key_read_private(const char *path, const char *alg, EVP_PKEY **out)
{
    uint8_t buf[TDSX__KEY_CAP];
    size_t len = 0;
    unsigned char *der = NULL;
    long der_len = 0;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *k = NULL;
    int rc = read_secret_file(path, buf, &len);
    if (rc)
        goto fail;
    if ((rc = pem_block(tdsx_bytes(buf, len), PEM_STRING_PKCS8INF, &der, &der_len)))
        goto fail;
    const unsigned char *p = der;
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, der_len);
    if (!p8 || p != der + der_len) {
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
        goto fail;
    }
    k = EVP_PKCS82PKEY(p8);
    if (!k) {
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
        goto fail;
    }
    if (!EVP_PKEY_is_a(k, alg)) {
        rc = TDSX_E_KEY_PARSE;
        goto fail;
    }
    *out = k;
    k = NULL;
fail:
    EVP_PKEY_free(k);
    PKCS8_PRIV_KEY_INFO_free(p8);
    OPENSSL_clear_free(der, der_len > 0 ? (size_t)der_len : 0);
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

int tdsx__key_write_private(const char *path, EVP_PKEY *key, int force)
{
    char *data = NULL;
    /* The secure-memory BIO wipes its buffer when freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (!bio)
        return TDSX_E_NOMEM;
    int rc;
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = tdsx__ossl_err(TDSX_E_INTERNAL);
        goto fail;
    }
    long n = BIO_get_mem_data(bio, &data);
    rc = n > 0 ? tdsx_file_write(path, data, (size_t)n, 0600, force) : TDSX_E_INTERNAL;
fail:
    BIO_free(bio);
    return rc;
}

int tdsx__key_write_public(const char *path, EVP_PKEY *key, int force)
{
    char *data = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TDSX_E_NOMEM;
    int rc;
    if (PEM_write_bio_PUBKEY(bio, key) != 1) {
        rc = tdsx__ossl_err(TDSX_E_INTERNAL);
        goto fail;
    }
    long n = BIO_get_mem_data(bio, &data);
    rc = n > 0 ? tdsx_file_write(path, data, (size_t)n, 0644, force) : TDSX_E_INTERNAL;
fail:
    BIO_free(bio);
    return rc;
}

static int load_raw_private(const char *path, const char *alg, uint8_t raw[32])
{
    EVP_PKEY *k = NULL;
    size_t len = 32;
    if (!path || !raw)
        return TDSX_E_INVAL;
    int rc = tdsx__key_read_private(path, alg, &k);
    if (rc)
        return rc;
    if (EVP_PKEY_get_raw_private_key(k, raw, &len) != 1 || len != 32) {
        OPENSSL_cleanse(raw, 32);
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
    }
    EVP_PKEY_free(k);
    return rc;
}

int tdsx_key_load_ed25519(const char *path, uint8_t seed[32])
{
    ERR_set_mark();
    int rc = load_raw_private(path, "ED25519", seed);
    ERR_pop_to_mark();
    return rc;
}

int tdsx_key_load_x25519(const char *path, uint8_t secret[32])
{
    ERR_set_mark();
    int rc = load_raw_private(path, "X25519", secret);
    ERR_pop_to_mark();
    return rc;
}

static int load_x25519_pub(const char *path, uint8_t pub[32])
{
    uint8_t *data = NULL;
    size_t len = 0;
    unsigned char *der = NULL;
    long der_len = 0;
    EVP_PKEY *k = NULL;
    size_t raw_len = 32;
    if (!path || !pub)
        return TDSX_E_INVAL;
    int rc = tdsx_file_read(path, TDSX__KEY_CAP, &data, &len);
    if (rc)
        return rc;
    if ((rc = pem_block(tdsx_bytes(data, len), PEM_STRING_PUBLIC, &der, &der_len)))
        goto fail;
    const unsigned char *p = der;
    k = d2i_PUBKEY(NULL, &p, der_len);
    if (!k || p != der + der_len || !EVP_PKEY_is_a(k, "X25519")) {
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
        goto fail;
    }
    if (EVP_PKEY_get_raw_public_key(k, pub, &raw_len) != 1 || raw_len != 32)
        rc = tdsx__ossl_err(TDSX_E_KEY_PARSE);
fail:
    EVP_PKEY_free(k);
    OPENSSL_free(der);
    tdsx_free(data);
    return rc;
}

int tdsx_key_load_x25519_pub(const char *path, uint8_t pub[32])
{
    ERR_set_mark();
    int rc = load_x25519_pub(path, pub);
    ERR_pop_to_mark();
    return rc;
}
