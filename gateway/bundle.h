/*
 * bundle.h — the signed trust bundle (SPEC §3): built and signed at the centre
 * (`tdsx bundle make|sign|show`), verified and applied by every node. Internal to gateway/.
 *
 * The published file (`bundle.tdsx` by convention, and <data_dir>/bundle.current on a node)
 * is a serialised SignedBundle (proto/trust.proto): the Envelope of a TrustBundle statement
 * (proto/statement.proto) signed by the centre's `sign` key, and the DER certificates that
 * let a node chain that key to the anchor it was installed with (the centre's sign
 * certificate first, then its intermediates). Nothing in the file is trusted before
 * tdsx__bundle_verify accepted it.
 *
 * A bundle verifies when:
 *   - the signer certificate chains to the anchor with purpose SIGN and role centre, at the
 *     verification time, and is not revoked by the CRLs the bundle itself carries;
 *   - the envelope's signature is by that certificate's key (verify before decode);
 *   - the payload decodes as a TrustBundle with expires_at > issued_at, every member
 *     well formed (the same rules as a registry file, gateway.h), every certificate and CRL
 *     DER that parses, every log/witness key 32 bytes.
 * Expiry is NOT a verification failure (a node must be able to say which bundle expired);
 * callers compare expires_at with the time themselves (tdsx__bundle_apply does).
 */
#ifndef TDSX_GATEWAY_BUNDLE_H
#define TDSX_GATEWAY_BUNDLE_H

#include "crypto.h"
#include "statement.pb-c.h"
#include "daemon.h"
#include "gateway.h"

/* Caps and names, defined once. */
#define TDSX_BUNDLE_FILE_CAP (TDSX_ENVELOPE_MAX + 64u * 1024u) /* a SignedBundle file */
#define TDSX_BUNDLE_SIGNER_CERTS_MAX 4u       /* sign certificate + intermediates */
#define TDSX_BUNDLE_VALID_DEFAULT (24 * 3600) /* seconds from issued_at to expires_at */
#define TDSX_BUNDLE_CURRENT "bundle.current"  /* in data_dir: the bundle in force, 0600 */
#define TDSX_BUNDLE_HISTORY "bundles" /* in data_dir: every bundle applied, <serial>.tdsx, 0600 */
#define TDSX_BUNDLE_PUBLISHED "bundle.tdsx" /* in publish_dir: what mirrors serve */
/* The version of the hard floors (policy.h, SPEC §8) this build enforces. A bundle whose
 * policy_floor_version is higher stops exchange (TDSX_E_BUNDLE_FLOOR) until tdsxd is upgraded
 * or the centre lowers it; its registry and CRLs still apply. Raise it with every change to
 * the floors. */
#define TDSX_BUNDLE_FLOOR_VERSION 1u

/* ------------------------------------------------------------------------------------------
 * Centre side: make and sign (files in, bytes out; no sockets)
 * ---------------------------------------------------------------------------------------- */

typedef struct tdsx_bundle_make_opts_s {
    const char *ca_dir;   /* the CA directory (certs.h): root.pem, intermediate.pem, index */
    const char *registry; /* a registry file (gateway.h) listing every member */
    /* Member credential directories (certs.h), optional: each one's sign.pem must match the
     * registry's sign fingerprint of some member; it gives that member's organisation name
     * (subject O) and its raw sign key, which goes into log_keys. Members without one have
     * an empty org and no log key. */
    const char *const *creds;
    size_t n_creds;
    /* PEM CRL files to carry; none: the CA issues its current CRL(s) now (tdsx_ca_crl), valid
     * until at least expires_at. */
    const char *const *crl_files;
    size_t n_crl_files;
    const char *witness;   /* member id whose sign key goes into witness_keys; NULL: none.
                            * Its credential directory must be among creds. */
    uint64_t serial;       /* > 0 */
    int64_t issued_at;     /* 0: now */
    int64_t valid;         /* seconds until expires_at; 0: TDSX_BUNDLE_VALID_DEFAULT */
    uint32_t policy_floor; /* minimum policy floor version */
} tdsx_bundle_make_opts_t;

/* Builds the unsigned TrustBundle (its serialised protobuf) into `out`. `what` (may be NULL)
 * names the file or member at fault. Errors: TDSX_E_INVAL (serial 0, negative validity,
 * witness without credentials), TDSX_E_CONFIG (registry malformed, a creds dir matching no
 * member), TDSX_E_CA_STATE and the file errors of certs.h, TDSX_E_CERT_PARSE,
 * TDSX_E_CRL_INVALID (a CRL file that does not parse), TDSX_E_TOOBIG, TDSX_E_NOMEM. On
 * failure out is left as it was. */
TDSX_MUST_CHECK int tdsx__bundle_make(const tdsx_bundle_make_opts_t *o, tdsx_buf_t *out, char *what,
                                      size_t what_size);

/* Signs an unsigned TrustBundle (untrusted bytes; must decode as one) with the sign key of
 * the credential directory `cred_dir` (sign.key, sign.pem, chain.pem) and appends the
 * SignedBundle file to `out`. The sign certificate must verify against the directory's
 * ca.pem with purpose SIGN and role centre (TDSX_E_CERT_ROLE for a non-centre member, other
 * TDSX_E_CERT_* codes). Other errors: TDSX_E_BUNDLE (input is not a TrustBundle), the key
 * errors of certs.h, TDSX_E_TOOBIG, TDSX_E_NOMEM. The key is wiped before returning. */
TDSX_MUST_CHECK int tdsx__bundle_sign(tdsx_bytes_t unsigned_bundle, const char *cred_dir,
                                      tdsx_buf_t *out);

/* ------------------------------------------------------------------------------------------
 * Verified bundles (pure: no I/O)
 * ---------------------------------------------------------------------------------------- */

typedef struct tdsx_bundle_s tdsx_bundle_t;

typedef struct tdsx_bundle_info_s {
    uint64_t serial;
    int64_t issued_at;
    int64_t expires_at;
    uint32_t policy_floor;
    size_t n_members, n_roots, n_intermediates, n_crls, n_log_keys, n_witness_keys;
    char signer[TDSX_ID_SIZE]; /* "<USCC>/<node>" of the centre that signed */
    uint8_t signer_fp[32];     /* SHA-256 of its sign certificate */
    uint8_t sha256[32];        /* SHA-256 of the whole file, as received */
    int verified;              /* 1: chained to an anchor; 0: tdsx__bundle_decode only */
} tdsx_bundle_info_t;

/* Verifies a SignedBundle file (untrusted, not kept: the bundle copies what it needs)
 * against the anchor certificates `anchor_pem` (the node's ca.pem; PEM, at least one) with
 * the optional intermediates `chain_pem` (the node's chain.pem; may be empty) at time `at`
 * (0: now), as described at the top. On success *out owns a new bundle. Errors:
 * TDSX_E_BUNDLE (not a SignedBundle, no signer certificate, malformed contents — the
 * detail is logged as "bundle.invalid"), the TDSX_E_CERT_* / TDSX_E_CRL_* code of the signer
 * certificate (TDSX_E_CERT_ROLE when it is not a centre's, TDSX_E_CERT_REVOKED when the
 * bundle's own CRLs revoke it, TDSX_E_CERT_UNTRUSTED for another CA), TDSX_E_SIG_INVALID /
 * TDSX_E_SIGNER_UNKNOWN / TDSX_E_SIG_TYPE / TDSX_E_ENVELOPE / TDSX_E_MERKLE_PROOF from the
 * envelope, TDSX_E_TOOBIG (over TDSX_BUNDLE_FILE_CAP), TDSX_E_CERT_PARSE (anchor_pem holds
 * no certificate), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__bundle_verify(tdsx_bytes_t file, tdsx_bytes_t anchor_pem,
                                        tdsx_bytes_t chain_pem, int64_t at, tdsx_bundle_t **out);
/* The same without an anchor, for `tdsx bundle show FILE`: the envelope must still be signed
 * by the key of the certificate the file carries, but nothing chains it; info.verified = 0.
 * Never use a decoded bundle for trust decisions. */
TDSX_MUST_CHECK int tdsx__bundle_decode(tdsx_bytes_t file, tdsx_bundle_t **out);
/* Whether the bundle in force `in_force` (NULL: none, then 0) revokes the signer of `b`:
 * TDSX_E_CERT_REVOKED when one of its CRLs lists b's signer certificate or a CA certificate b
 * carries (a revoked centre key cannot publish a newer bundle with CRLs that leave it out;
 * the CRLs count even past their nextUpdate), 0 otherwise; logged as "bundle.invalid". */
TDSX_MUST_CHECK int tdsx__bundle_check_signer(const tdsx_bundle_t *b,
                                              const tdsx_bundle_t *in_force);
/* NULL is allowed. */
void tdsx__bundle_free(tdsx_bundle_t *b);

void tdsx__bundle_info(const tdsx_bundle_t *b, tdsx_bundle_info_t *out);
/* The decoded TrustBundle; valid until tdsx__bundle_free. */
const Tdsx__TrustBundle *tdsx__bundle_msg(const tdsx_bundle_t *b);

/* The member registry the bundle carries, as a new registry (free with tdsx_registry_free).
 * TDSX_E_CONFIG (with *err, may be NULL) when a member is malformed, TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__bundle_registry(const tdsx_bundle_t *b, tdsx_registry_t **out,
                                          tdsx_registry_error_t *err);
/* Adds the bundle's intermediates and CRLs to `t` (not yet shared with any verifier).
 * TDSX_E_CERT_PARSE, TDSX_E_CRL_INVALID, TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__bundle_add_trust(const tdsx_bundle_t *b, tdsx_trust_t *t);
/* Writes the bundle as text (serial, times, signer, members, CRL entries, keys) to `out`;
 * `at` decides what "expired" says (0: now). */
TDSX_MUST_CHECK int tdsx__bundle_format(const tdsx_bundle_t *b, int64_t at, tdsx_buf_t *out);

/* ------------------------------------------------------------------------------------------
 * Node side (bundle.c, needs the node's loop)
 *
 * A node has a bundle when its config names `bundle_file` or its data_dir holds
 * bundle.current (the last applied one). Then the bundle's registry replaces the `registry`
 * file (which becomes optional), and its CRLs and intermediates join the TLS trust. When
 * the bundle in force expires, every exchange stops — new connections are refused, open
 * ones closed, transfers refused, all with TDSX_E_BUNDLE_EXPIRED — until a fresh bundle is
 * applied. The same holds, with TDSX_E_BUNDLE_FLOOR, while the bundle in force requires a
 * policy floor version above TDSX_BUNDLE_FLOOR_VERSION. Logs: "bundle.loaded",
 * "bundle.applied", "bundle.refused", "bundle.expired", "bundle.floor_outdated",
 * "bundle.peer_closed", "bundle.file_not_newer", "bundle.none".
 * ---------------------------------------------------------------------------------------- */

/* From tdsx_node_new, after the anchors, chain and configured CRLs are in n->trust and
 * before the registry is read: loads bundle.current and bundle_file, verifies both, keeps
 * the higher serial; adds its intermediates and CRLs to n->trust and sets n->registry from
 * it. A bundle_file newer than bundle.current becomes bundle.current in tdsx__bundle_start
 * (so `tdsxd --check-config` writes nothing). With no bundle, a node without a registry file
 * (only bundle_url) gets an empty registry: no member is accepted until one is applied;
 * otherwise n->registry is left NULL for the registry file. An expired bundle is loaded all
 * the same (the node starts with exchange stopped, and says so). Errors: those of
 * tdsx__bundle_verify for bundle_file (`what` names it), TDSX_E_CERT_REVOKED for a bundle_file
 * newer than bundle.current whose signer bundle.current or a `crl` file revokes, file errors of
 * the node's ca.pem and crl files,
 * TDSX_E_NOMEM. A damaged bundle.current is logged and ignored. n->bundle is set (and freed by
 * tdsx__bundle_node_free) whatever the result. */
TDSX_MUST_CHECK int tdsx__bundle_load(tdsx_node_t *n, char *what, size_t what_size);
/* From tdsx_node_start: arms the expiry timer. From close_node_handles: closes it. */
TDSX_MUST_CHECK int tdsx__bundle_start(tdsx_node_t *n);
void tdsx__bundle_stop(tdsx_node_t *n);
/* From tdsx_node_free. */
void tdsx__bundle_node_free(tdsx_node_t *n);

/* Verifies envelope bytes (a SignedBundle file, as above) against the node's anchor,
 * refuses a serial older than the one in force (TDSX_E_BUNDLE_ROLLBACK), a newer one whose
 * signer the CRLs of the bundle in force or the node's `crl` files revoke
 * (TDSX_E_CERT_REVOKED), an expired bundle
 * (TDSX_E_BUNDLE_EXPIRED), a bad signature/signer (TDSX_E_BUNDLE or the specific code of
 * tdsx__bundle_verify); returns 1 when it is the same serial as in force (nothing to do), 0
 * when applied: persisted atomically to <data_dir>/bundle.current (0600), registry swapped,
 * CRLs swapped, live connections of peers now revoked or no longer members closed. A bundle
 * requiring a newer policy floor is applied too, and then stops exchange (tdsx__bundle_check).
 * `source` is for logs (URL or path). Every refusal is logged ("bundle.refused") and leaves the
 * bundle in force as it was. TDSX_E_STATE before tdsx__bundle_load. Loop thread only. */
TDSX_MUST_CHECK int tdsx__bundle_apply(tdsx_node_t *n, tdsx_bytes_t envelope, const char *source);
/* SIGHUP: re-reads bundle_file (when configured) and applies it; 1 same serial, 0 applied,
 * else the error (logged). */
TDSX_MUST_CHECK int tdsx__bundle_reload(tdsx_node_t *n);

/* Bundle state for status and metrics: all zero when the node has no bundle. `expired` is 1
 * while exchange is stopped because the bundle in force expired (tdsx__bundle_check also
 * covers the policy floor). Any out pointer may be NULL. */
void tdsx__bundle_state(const tdsx_node_t *n, uint64_t *serial, int64_t *issued_at,
                        int64_t *expires_at, int *expired);
/* 0 when exchange may go on; TDSX_E_BUNDLE_EXPIRED or TDSX_E_BUNDLE_FLOOR when it must stop. */
int tdsx__bundle_check(const tdsx_node_t *n);
/* Fills the bundle fields of a StatusResponse (strings are static or live in n). */
void tdsx__bundle_status(const tdsx_node_t *n, Tdsx__StatusResponse *st);

#endif
