/*
 * certs.h — identities in the province PKI (SPEC §2).
 *
 * - USCC (统一社会信用代码) validation, GB 32100-2015, with the GB 11714 organisation-code
 *   check as a warning.
 * - The certificate authority: a root (Ed25519), optionally an intermediate, issuing each
 *   node an `auth` certificate (TLS), a `sign` certificate (nonRepudiation) and an X25519
 *   `enc` key; revocation and CRLs.
 * - One verification function that turns a certificate into an identity or a specific error.
 *
 * Only OpenSSL is used here; nothing does network I/O.
 */
#ifndef TDSX_CERTS_H
#define TDSX_CERTS_H

#include "core.h"

#include <openssl/x509.h>

/* ------------------------------------------------------------------------------------------
 * Roles. The CA writes the role as a certificatePolicies OID under the project's arc
 * 2.25.122680217660750419427743317745993533235 (UUID 5c4b59b8-e7b6-4bbc-a361-3d04dedc4733):
 *   <arc>.1.1 centre, <arc>.1.2 brain, <arc>.1.3 enterprise.
 * Only the CA sets it; a certificate carrying none, or more than one, has no role.
 * ---------------------------------------------------------------------------------------- */
#define TDSX_OID_ARC "2.25.122680217660750419427743317745993533235"
#define TDSX_OID_ROLE_CENTRE TDSX_OID_ARC ".1.1"
#define TDSX_OID_ROLE_BRAIN TDSX_OID_ARC ".1.2"
#define TDSX_OID_ROLE_ENTERPRISE TDSX_OID_ARC ".1.3"

typedef enum {
    TDSX_ROLE_NONE = 0,
    TDSX_ROLE_CENTRE = 1,
    TDSX_ROLE_BRAIN = 2,
    TDSX_ROLE_ENTERPRISE = 3
} tdsx_role_t;

/* "centre", "brain", "enterprise"; "none" for TDSX_ROLE_NONE. */
const char *tdsx_role_name(tdsx_role_t role);
/* Parses one of the three names; TDSX_E_INVAL otherwise. */
TDSX_MUST_CHECK int tdsx_role_parse(const char *s, tdsx_role_t *out);

/* ------------------------------------------------------------------------------------------
 * USCC (SPEC §2)
 * ---------------------------------------------------------------------------------------- */
#define TDSX_USCC_LEN 18

/* Validates an 18-character USCC. Returns 0 when valid, else TDSX_E_USCC_LENGTH,
 * TDSX_E_USCC_CHAR (includes lower case and the letters I O S V Z) or TDSX_E_USCC_CHECK.
 * When org_warning is not NULL it is set to 1 if the embedded GB 11714 organisation code
 * (positions 9-17) fails its own check — a warning, not a rejection — else 0. */
TDSX_MUST_CHECK int tdsx_uscc_check(const char *code, int *org_warning);

/* The check character (position 18) for the first 17 characters, or '\0' when they are not
 * all from the USCC alphabet. */
char tdsx_uscc_check_char(const char *first17);

/* ------------------------------------------------------------------------------------------
 * Identities and verification
 * ---------------------------------------------------------------------------------------- */
typedef enum {
    TDSX_PURPOSE_ANY = 0,  /* chain, validity, subject and role only */
    TDSX_PURPOSE_AUTH = 1, /* TLS: EKU clientAuth+serverAuth, digitalSignature */
    TDSX_PURPOSE_SIGN = 2  /* statements: KeyUsage nonRepudiation (contentCommitment) */
} tdsx_purpose_t;

typedef struct tdsx_identity_s {
    char uscc[TDSX_USCC_LEN + 1];
    char org[256];  /* subject O, UTF-8 */
    char node[128]; /* subject CN */
    tdsx_role_t role;
    int64_t not_before; /* seconds since the epoch */
    int64_t not_after;
    uint8_t fingerprint[32]; /* SHA-256 of the certificate's DER */
    uint8_t pubkey[32];      /* raw Ed25519 public key (libsodium form) */
    int org_warning;         /* the GB 11714 organisation-code warning, see tdsx_uscc_check */
} tdsx_identity_t;

/* Writes "<USCC>/<node-name>" into out (size >= 19 + 1 + 128). */
void tdsx_identity_id(const tdsx_identity_t *id, char *out, size_t size);

/* The set of things a verifier trusts: one or more anchors (root certificates), any
 * intermediates it may need to build a chain, and CRLs. Built by the add functions, then
 * shared by many verifications (which only touch its cache of successes, under a lock). */
typedef struct tdsx_trust_s tdsx_trust_t;

TDSX_MUST_CHECK int tdsx_trust_new(tdsx_trust_t **out);
void tdsx_trust_free(tdsx_trust_t *t);
/* Adds every certificate in a PEM buffer / file as an anchor. TDSX_E_CERT_PARSE when the
 * input holds no certificate. */
TDSX_MUST_CHECK int tdsx_trust_add_anchors_pem(tdsx_trust_t *t, const void *pem, size_t n);
TDSX_MUST_CHECK int tdsx_trust_add_anchors_file(tdsx_trust_t *t, const char *path);
/* Adds untrusted intermediates available for chain building. Input without any certificate
 * (an empty chain.pem) adds nothing and is not an error; a malformed certificate block is
 * TDSX_E_CERT_PARSE. */
TDSX_MUST_CHECK int tdsx_trust_add_intermediates_pem(tdsx_trust_t *t, const void *pem, size_t n);
/* Adds CRLs (PEM, one or more). A CRL whose signature does not verify against a trusted
 * issuer is rejected with TDSX_E_CRL_INVALID when verification uses it. */
TDSX_MUST_CHECK int tdsx_trust_add_crls_pem(tdsx_trust_t *t, const void *pem, size_t n);
TDSX_MUST_CHECK int tdsx_trust_add_crls_file(tdsx_trust_t *t, const char *path);

typedef struct tdsx_verify_opts_s {
    tdsx_purpose_t purpose;
    tdsx_role_t role; /* TDSX_ROLE_NONE accepts any of the three roles (one is still required) */
    int64_t at;       /* verification time, seconds since the epoch; 0 means now */
    int require_crl;  /* 1: every CA in the chain must have a CRL in the trust set */
} tdsx_verify_opts_t;

/* Verifies `leaf` (with optional extra untrusted certificates `extra`, may be NULL) against
 * the trust set: chain to an anchor (depth >= 2 supported), validity at o->at, revocation by
 * any CRL present, key usage for o->purpose, role, subject fields and USCC. On success fills
 * *id (may be NULL) and returns 0. On failure returns exactly one specific code:
 * TDSX_E_CERT_UNTRUSTED, _CHAIN, _EXPIRED, _NOT_YET_VALID, _REVOKED, _PURPOSE, _ROLE,
 * _SUBJECT, _USCC, _KEY, TDSX_E_CRL_INVALID, _CRL_MISSING, _CRL_EXPIRED. */
TDSX_MUST_CHECK int tdsx_cert_verify(const tdsx_trust_t *t, X509 *leaf, STACK_OF(X509) *extra,
                                     const tdsx_verify_opts_t *o, tdsx_identity_t *id);
/* Same for a DER leaf and n_extra DER extras (untrusted input: each must be exactly one
 * certificate, else TDSX_E_CERT_PARSE). A leaf the trust set remembers (below) is answered
 * from its SHA-256 without being parsed.
 *
 * Both verify functions remember successes made "now" (o->at == 0): a leaf that verified
 * with the same extras, purpose, role and require_crl is answered from memory until the
 * earliest of
 * its chain's notAfter, the CRLs' nextUpdate and five minutes; adding anchors,
 * intermediates or CRLs to the trust set forgets everything. Safe from several threads. */
TDSX_MUST_CHECK int tdsx_cert_verify_der(const tdsx_trust_t *t, tdsx_bytes_t der,
                                         const tdsx_bytes_t *extra, size_t n_extra,
                                         const tdsx_verify_opts_t *o, tdsx_identity_t *id);
/* Same for a PEM buffer: the first certificate is the leaf, any others are extras. */
TDSX_MUST_CHECK int tdsx_cert_verify_pem(const tdsx_trust_t *t, const void *pem, size_t n,
                                         const tdsx_verify_opts_t *o, tdsx_identity_t *id);

/* Loads every certificate of a PEM file. The caller frees with
 * sk_X509_pop_free(sk, X509_free). TDSX_E_CERT_PARSE when there is none. */
TDSX_MUST_CHECK int tdsx_cert_load_file(const char *path, STACK_OF(X509) **out);
/* SHA-256 of the DER encoding. */
TDSX_MUST_CHECK int tdsx_cert_fingerprint(X509 *cert, uint8_t out[32]);

/* ------------------------------------------------------------------------------------------
 * Keys. Private keys are PKCS#8 PEM files, mode 0600. The raw forms are what libsodium uses:
 * an Ed25519 32-byte seed (crypto_sign_seed_keypair) and an X25519 32-byte secret
 * (crypto_box / crypto_box_seal).
 * ---------------------------------------------------------------------------------------- */
/* Loads an Ed25519 private key and returns its raw 32-byte seed. TDSX_E_PERM when the file is
 * readable by group or others. The caller wipes seed after use. */
TDSX_MUST_CHECK int tdsx_key_load_ed25519(const char *path, uint8_t seed[32]);
/* Loads an X25519 private key (raw 32-byte secret) the same way. */
TDSX_MUST_CHECK int tdsx_key_load_x25519(const char *path, uint8_t secret[32]);
/* Loads an X25519 public key from a PEM SubjectPublicKeyInfo file. */
TDSX_MUST_CHECK int tdsx_key_load_x25519_pub(const char *path, uint8_t pub[32]);

/* ------------------------------------------------------------------------------------------
 * Node credentials directory, as written by `tdsx ca issue --out DIR`:
 *   ca.pem       the root certificate (the anchor)
 *   chain.pem    intermediates between the root and the node's certificates (may be empty)
 *   auth.pem     auth certificate          auth.key  its Ed25519 private key (0600)
 *   sign.pem     sign certificate          sign.key  its Ed25519 private key (0600)
 *   enc.pub      X25519 public key (PEM)   enc.key   its private key (0600)
 * ---------------------------------------------------------------------------------------- */
#define TDSX_CRED_ROOT "ca.pem"
#define TDSX_CRED_CHAIN "chain.pem"
#define TDSX_CRED_AUTH_CERT "auth.pem"
#define TDSX_CRED_AUTH_KEY "auth.key"
#define TDSX_CRED_SIGN_CERT "sign.pem"
#define TDSX_CRED_SIGN_KEY "sign.key"
#define TDSX_CRED_ENC_PUB "enc.pub"
#define TDSX_CRED_ENC_KEY "enc.key"

/* ------------------------------------------------------------------------------------------
 * Certificate authority (`tdsx ca ...`). The CA directory holds the root (and intermediate)
 * keys 0600, a serial counter and an index of issued and revoked certificates. Nothing is
 * overwritten unless force is set.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_ca_s tdsx_ca_t;

/* Files of a CA directory, relative to it. The root certificate is the anchor to hand to
 * every node (`tdsx ca verify --anchor DIR/root.pem`). index.txt lists every certificate the
 * CA issued, one per line: serial (hex), issuing CA (root|intermediate), kind
 * (intermediate|auth|sign), not_after, revoked_at (seconds since the epoch, "-" when not
 * revoked) and the subject, separated by tabs. */
#define TDSX_CA_ROOT_CERT "root.pem"
#define TDSX_CA_ROOT_KEY "root.key"
#define TDSX_CA_INTER_CERT "intermediate.pem"
#define TDSX_CA_INTER_KEY "intermediate.key"
#define TDSX_CA_INDEX "index.txt"

typedef struct tdsx_ca_init_opts_s {
    const char *name;      /* subject CN and O of the root */
    int intermediate;      /* 1: also create an issuing intermediate under the root */
    int64_t days;          /* root validity in days; 0 means 3650 */
    int force;
} tdsx_ca_init_opts_t;

typedef struct tdsx_issue_opts_s {
    const char *uscc;
    const char *org;
    const char *node;
    tdsx_role_t role;
    int64_t not_before; /* 0 means now */
    int64_t days;       /* 0 means 365 */
    int force;
} tdsx_issue_opts_t;

/* Creates dir (0700) and a new root there (and an intermediate with the same validity).
 * TDSX_E_EXISTS when a CA is already there and force is 0; with force the old CA, its
 * intermediate and its index are replaced. TDSX_E_INVAL for an empty name. */
TDSX_MUST_CHECK int tdsx_ca_init(const char *dir, const tdsx_ca_init_opts_t *o);
/* Loads the CA of dir; the caller frees *out with tdsx_ca_free. TDSX_E_CA_STATE when a file
 * is missing or damaged or a key does not match its certificate, TDSX_E_PERM when a key
 * file is readable by group or others. */
TDSX_MUST_CHECK int tdsx_ca_open(const char *dir, tdsx_ca_t **out);
void tdsx_ca_free(tdsx_ca_t *ca);
/* Issues auth, sign and enc credentials into outdir (created 0700 if missing).
 * The USCC is validated first (TDSX_E_USCC_*; a GB 11714 warning is logged as
 * "ca.uscc_org_code"); org and node must be non-empty UTF-8 without control characters and
 * node without '/' (TDSX_E_INVAL). Both certificates are recorded in the index before any
 * file is written. TDSX_E_EXISTS when any credential file exists and force is 0. */
TDSX_MUST_CHECK int tdsx_ca_issue(tdsx_ca_t *ca, const tdsx_issue_opts_t *o, const char *outdir);
/* Marks a certificate issued by this CA as revoked (TDSX_E_NOTFOUND if it did not issue it).
 * Issuance is proved by the CA's signature, not by names. Revoking again is not an error and
 * keeps the first revocation time. The intermediate itself can be revoked (by the root). */
TDSX_MUST_CHECK int tdsx_ca_revoke(tdsx_ca_t *ca, X509 *cert);
/* Writes the current CRL(s) as PEM (root's, and the intermediate's when there is one).
 * Each is a v2 CRL with the next CRL number, thisUpdate now and nextUpdate `days` later
 * (0 means 7). TDSX_E_EXISTS when path exists and force is 0. */
TDSX_MUST_CHECK int tdsx_ca_crl(tdsx_ca_t *ca, int64_t days, const char *path, int force);

#endif
