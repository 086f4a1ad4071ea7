/* sha256.c — SHA-256 on OpenSSL EVP.
 *
 * OpenSSL rather than libsodium: on CPUs with SHA extensions EVP is several times faster, and
 * every payload byte and every Merkle node goes through here (SPEC §9). */
#include "internal.h"

#include <pthread.h>

#include <openssl/evp.h>

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha256;

/* An explicit fetch, kept for the life of the process: passing EVP_sha256() instead would make
 * OpenSSL 3 look the implementation up again on every init. */
static void fetch_md(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    if (pthread_once(&md_once, fetch_md) != 0)
        return NULL;
    return md_sha256;
}

/* The context is (re)started lazily so that one object hashes many messages in a row without
 * a new EVP_MD_CTX each time (the Merkle code hashes thousands of 65-byte nodes). */
static int ensure_started(tdsx_sha256_t *h)
{
    if (h->started)
        return 0;
    const EVP_MD *md = sha256_md();
    if (!md || EVP_DigestInit_ex2(h->ctx, md, NULL) != 1)
        return TDSX_E_INTERNAL;
    h->started = 1;
    return 0;
}

int tdsx_sha256_init(tdsx_sha256_t *h)
{
    if (!h)
        return TDSX_E_INVAL;
    h->started = 0;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx)
        return TDSX_E_NOMEM;
    int rc = ensure_started(h);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    tdsx_sha256_free(h);
    return rc;
}

int tdsx_sha256_update(tdsx_sha256_t *h, const void *p, size_t n)
{
    if (!h || !h->ctx || (!p && n))
        return TDSX_E_INVAL;
    int rc = ensure_started(h);
    if (rc < 0)
        return rc;
    if (n && EVP_DigestUpdate(h->ctx, p, n) != 1)
        return TDSX_E_INTERNAL;
    return 0;
}

int tdsx_sha256_final(tdsx_sha256_t *h, uint8_t out[TDSX_HASH_LEN])
{
    if (!h || !h->ctx || !out)
        return TDSX_E_INVAL;
    int rc = ensure_started(h);
    if (rc < 0)
        return rc;
    unsigned int len = 0;
    h->started = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &len) != 1 || len != TDSX_HASH_LEN)
        return TDSX_E_INTERNAL;
    return 0;
}

void tdsx_sha256_free(tdsx_sha256_t *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    h->started = 0;
}

int tdsx_sha256(const void *p, size_t n, uint8_t out[TDSX_HASH_LEN])
{
    if ((!p && n) || !out)
        return TDSX_E_INVAL;
    const EVP_MD *md = sha256_md();
    unsigned int len = 0;
    if (!md || EVP_Digest(n ? p : "", n, out, &len, md, NULL) != 1 || len != TDSX_HASH_LEN)
        return TDSX_E_INTERNAL;
    return 0;
}
