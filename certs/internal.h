/*
 * internal.h — cross-file internals of certs/ (tdsx__*). Not part of the public contract:
 * other modules use certs.h only. The tests use the certificate builder and the CA accessors
 * below to make deliberately malformed certificates signed by a real test CA.
 */
#ifndef TDSX_CERTS_INTERNAL_H
#define TDSX_CERTS_INTERNAL_H

#include "certs.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Caps on what is read from disk or from a peer. */
#define TDSX__PEM_CAP (1u << 20)    /* one certificate, chain or CRL file */
#define TDSX__KEY_CAP (16u * 1024u) /* one private or public key file */
#define TDSX__INDEX_CAP (64u << 20) /* the CA's index of issued certificates */
#define TDSX__NAME_TEXT_CAP 1024u   /* a subject printed on one line */

/* Drains the OpenSSL error queue of this thread. Returns TDSX_E_NOMEM when any queued error
 * is an allocation failure, else `fallback`. */
TDSX_MUST_CHECK int tdsx__ossl_err(int fallback);

/* ------------------------------------------------------------------------------------------
 * PEM and time helpers (cert.c)
 * ---------------------------------------------------------------------------------------- */
/* Parses every CERTIFICATE block of `pem` into a new stack (*out, possibly empty; the caller
 * frees it with sk_X509_pop_free(sk, X509_free)). Blocks of other types are skipped.
 * TDSX_E_CERT_PARSE when a certificate block is malformed, TDSX_E_TOOBIG past INT_MAX. */
TDSX_MUST_CHECK int tdsx__pem_certs(tdsx_bytes_t pem, STACK_OF(X509) **out);
/* The same for X509 CRL blocks; a malformed one is TDSX_E_CRL_INVALID. */
TDSX_MUST_CHECK int tdsx__pem_crls(tdsx_bytes_t pem, STACK_OF(X509_CRL) **out);
/* Appends the PEM encoding of a certificate / CRL to b. */
TDSX_MUST_CHECK int tdsx__pem_append_cert(tdsx_buf_t *b, X509 *x);
TDSX_MUST_CHECK int tdsx__pem_append_crl(tdsx_buf_t *b, X509_CRL *crl);
/* Seconds since the epoch of an ASN.1 UTCTime / GeneralizedTime. */
TDSX_MUST_CHECK int tdsx__asn1_time_get(const ASN1_TIME *t, int64_t *out);
/* Replaces `b`'s content with the name on one line, RFC 2253 order, UTF-8 kept, control
 * characters escaped (so the text never holds a tab or a newline). */
TDSX_MUST_CHECK int tdsx__name_text(const X509_NAME *name, tdsx_buf_t *b);

/* ------------------------------------------------------------------------------------------
 * Building certificates (cert.c)
 * ---------------------------------------------------------------------------------------- */
/* Extended key usage bits for tdsx__cert_spec_t.ext_key_usage. */
#define TDSX__EKU_CLIENT 1u
#define TDSX__EKU_SERVER 2u

typedef struct tdsx__cert_spec_s {
    X509_NAME *subject; /* borrowed */
    EVP_PKEY *key;      /* the subject's key (only its public half is used), borrowed */
    X509 *issuer;       /* borrowed; NULL makes a self-signed certificate */
    EVP_PKEY *signer;   /* the issuer's private key (the subject's own when self-signed) */
    int64_t not_before; /* seconds since the epoch */
    int64_t not_after;
    int ca;                      /* basicConstraints cA */
    int pathlen;                 /* pathLenConstraint for a CA; -1 for none */
    unsigned key_usage;          /* KU_* bits of <openssl/x509v3.h>; 0 omits the extension */
    unsigned ext_key_usage;      /* TDSX__EKU_* bits; 0 omits the extension */
    const char *const *policies; /* dotted OIDs for certificatePolicies (NULL: none) */
    size_t n_policies;
} tdsx__cert_spec_t;

/* Builds and signs a v3 certificate with a random positive 16-byte serial, SKI (RFC 7093
 * method 1) and AKI from the issuer's SKI. *out is the caller's (X509_free). */
TDSX_MUST_CHECK int tdsx__cert_build(const tdsx__cert_spec_t *s, X509 **out);

/* The subject of a node: O=org, serialNumber=uscc, CN=node, in that order. Checks only
 * that the strings are non-empty, valid UTF-8 and short enough; USCC validation is the
 * caller's. */
TDSX_MUST_CHECK int tdsx__name_node(const char *org, const char *uscc, const char *node,
                                    X509_NAME **out);

/* The certificatePolicies OID of a role; NULL for TDSX_ROLE_NONE. */
const char *tdsx__role_oid(tdsx_role_t role);

/* ------------------------------------------------------------------------------------------
 * Keys (key.c)
 * ---------------------------------------------------------------------------------------- */
/* A fresh key of type "ED25519" or "X25519". */
TDSX_MUST_CHECK int tdsx__key_generate(const char *alg, EVP_PKEY **out);
/* Reads a PKCS#8 PEM private key of type `alg`: TDSX_E_PERM when group/other may access the
 * file, TDSX_E_KEY_PARSE when it is not a PKCS#8 key of that type. */
TDSX_MUST_CHECK int tdsx__key_read_private(const char *path, const char *alg, EVP_PKEY **out);
/* Writes the private key as PKCS#8 PEM, mode 0600; intermediate copies are wiped. */
TDSX_MUST_CHECK int tdsx__key_write_private(const char *path, EVP_PKEY *key, int force);
/* Writes the public key as SubjectPublicKeyInfo PEM, mode 0644. */
TDSX_MUST_CHECK int tdsx__key_write_public(const char *path, EVP_PKEY *key, int force);

/* ------------------------------------------------------------------------------------------
 * CA accessors for tests (ca.c). Pointers are borrowed and live as long as the CA.
 * ---------------------------------------------------------------------------------------- */
/* The certificate and key that sign node certificates (the intermediate when there is one). */
void tdsx__ca_issuer(const tdsx_ca_t *ca, X509 **cert, EVP_PKEY **key);
/* The root certificate and key. */
void tdsx__ca_root(const tdsx_ca_t *ca, X509 **cert, EVP_PKEY **key);

#endif
