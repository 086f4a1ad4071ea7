/*
 * gateway.h — the gateway module's public header: the member registry and the TLS 1.3
 * mutual-authentication engine (SPEC §3, §4).
 *
 * Both are free of I/O. The registry is a pure parser plus lookups (tdsx_registry_load is
 * the one call that reads a file). The TLS engine takes ciphertext in and gives ciphertext
 * out through memory buffers, like picotls' ptls_handshake or BearSSL's engine: the libuv
 * shell (gateway/conn.c) moves bytes between it and a socket, and tests pump two engines
 * against each other with no socket at all.
 */
#ifndef TDSX_GATEWAY_H
#define TDSX_GATEWAY_H

#include "certs.h"
#include "core.h"

/* ==========================================================================================
 * Member registry
 *
 * Until the signed trust bundle (SPEC §3) replaces it, the list of members is a local text
 * file, one member per line; `#` starts a comment that runs to the end of the line; blank
 * lines are ignored; fields are separated by spaces or tabs:
 *
 *   <USCC>/<node> <role> <host:port> auth=<hex> sign=<hex> enc=<hex>
 *
 *   USCC    18 characters that pass tdsx_uscc_check (GB 32100-2015)
 *   node    1..127 bytes, no white space, '/', '#' or control characters
 *   role    centre | brain | enterprise
 *   host    a DNS name or IPv4 address ([A-Za-z0-9.-_]), or an IPv6 address in brackets
 *   port    1..65535, decimal
 *   auth    SHA-256 of the DER of the node's auth (TLS) certificate, 64 hex digits
 *   sign    SHA-256 of the DER of the node's sign certificate, 64 hex digits
 *   enc     the node's X25519 public key, 64 hex digits
 *
 * The three key=value fields may come in any order, each exactly once. Ids, auth and sign
 * fingerprints must each be unique in the file.
 * ======================================================================================== */

/* Caps, defined once. */
#define TDSX_REGISTRY_FILE_CAP (16u * 1024u * 1024u) /* bytes in a registry file */
#define TDSX_REGISTRY_LINE_CAP 1024u                 /* bytes in one line, comment included */
#define TDSX_REGISTRY_MAX_MEMBERS 65536u

#define TDSX_NODE_MAX 127u /* bytes in a node name (certs.h: identity node[128]) */
/* "<USCC>/<node>" and its NUL; tdsx_identity_id needs at least this much. */
#define TDSX_ID_SIZE (TDSX_USCC_LEN + 1 + 128 + 1)
#define TDSX_HOST_MAX 253u /* a DNS name, or an IPv6 address with its brackets */

typedef struct tdsx_member_s {
    char id[TDSX_ID_SIZE]; /* "<USCC>/<node>" */
    char uscc[TDSX_USCC_LEN + 1];
    char node[TDSX_NODE_MAX + 1];
    tdsx_role_t role;
    char host[TDSX_HOST_MAX + 1]; /* as written, IPv6 brackets included */
    uint16_t port;
    uint8_t auth_fp[32]; /* SHA-256 of the auth certificate's DER */
    uint8_t sign_fp[32]; /* SHA-256 of the sign certificate's DER */
    uint8_t enc_pub[32]; /* raw X25519 public key */
    unsigned line;       /* where the member was defined, 1-based */
} tdsx_member_t;

typedef struct tdsx_registry_s tdsx_registry_t;

/* What was wrong with a registry file. Every line kind comes with TDSX_E_CONFIG, so callers
 * that only want yes/no look at the return code; `tdsx ca`/`tdsxd --check-config` print line
 * and msg. TDSX_REGISTRY_FILE carries the file error; TDSX_E_NOMEM leaves the fault at
 * TDSX_REGISTRY_OK (not the file's fault). */
typedef enum {
    TDSX_REGISTRY_OK = 0,
    TDSX_REGISTRY_LINE_TOO_LONG, /* more than TDSX_REGISTRY_LINE_CAP bytes */
    TDSX_REGISTRY_BAD_BYTE,      /* NUL or another control character (tab and CR excepted) */
    TDSX_REGISTRY_FIELDS,        /* not exactly six fields */
    TDSX_REGISTRY_ID,            /* id without '/', empty or unfit node name */
    TDSX_REGISTRY_USCC,          /* the id's USCC fails tdsx_uscc_check */
    TDSX_REGISTRY_ROLE,          /* not centre, brain or enterprise */
    TDSX_REGISTRY_ENDPOINT,      /* host:port malformed, port 0 or > 65535 */
    TDSX_REGISTRY_KEY,           /* unknown key, key missing, or given twice */
    TDSX_REGISTRY_HEX,           /* auth/sign/enc value is not 64 hex digits */
    TDSX_REGISTRY_DUP_ID,        /* second line with an id already defined */
    TDSX_REGISTRY_DUP_AUTH,      /* second line with an auth fingerprint already used */
    TDSX_REGISTRY_DUP_SIGN,      /* second line with a sign fingerprint already used */
    TDSX_REGISTRY_TOO_MANY,      /* more than TDSX_REGISTRY_MAX_MEMBERS members */
    TDSX_REGISTRY_FILE           /* the file could not be read, or is over its cap */
} tdsx_registry_fault_t;

typedef struct tdsx_registry_error_s {
    unsigned line; /* 1-based; 0 when the problem is not tied to one line */
    tdsx_registry_fault_t fault;
    int err;       /* the code the call returned */
    char msg[160]; /* one sentence for a human, e.g. "unknown role 'king'" */
} tdsx_registry_error_t;

/* Parses a whole registry. `text` is untrusted and need not be NUL-terminated. On success
 * *out owns a new registry (free with tdsx_registry_free). On failure *out is NULL, *err (may
 * be NULL) describes the first malformed line or, when every line is well formed, the
 * duplicate on the lowest line, and the return is TDSX_E_CONFIG, or TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx_registry_parse(tdsx_bytes_t text, tdsx_registry_t **out,
                                        tdsx_registry_error_t *err);
/* Reads a file of at most TDSX_REGISTRY_FILE_CAP bytes and parses it. Adds the file errors of
 * tdsx_file_read (TDSX_E_NOTFOUND, TDSX_E_TOOBIG, -errno) with fault TDSX_REGISTRY_FILE. */
TDSX_MUST_CHECK int tdsx_registry_load(const char *path, tdsx_registry_t **out,
                                       tdsx_registry_error_t *err);
/* NULL is allowed. */
void tdsx_registry_free(tdsx_registry_t *r);

/* Number of members, and the i-th in file order (NULL when i >= count). Pointers stay valid
 * until tdsx_registry_free. */
size_t tdsx_registry_count(const tdsx_registry_t *r);
const tdsx_member_t *tdsx_registry_at(const tdsx_registry_t *r, size_t i);
/* Lookups (O(log n)); NULL when absent. */
const tdsx_member_t *tdsx_registry_find(const tdsx_registry_t *r, const char *id);
const tdsx_member_t *tdsx_registry_find_auth(const tdsx_registry_t *r, const uint8_t fp[32]);

/* Decides whether a verified certificate identity is a registered member (SPEC §4,
 * fingerprint pinning): 0 when the registry has the identity's id with the same auth
 * fingerprint and role; TDSX_E_PEER_UNKNOWN when the id is absent; TDSX_E_CERT_FINGERPRINT
 * when the id is there with another fingerprint; TDSX_E_CERT_ROLE when the roles differ.
 * When member is not NULL it receives the entry (or NULL). */
TDSX_MUST_CHECK int tdsx_registry_check(const tdsx_registry_t *r, const tdsx_identity_t *id,
                                        const tdsx_member_t **member);

/* Appends one registry line (with its '\n') describing the node whose credential directory
 * is `cred_dir` (see certs.h) reachable at `endpoint` ("host:port"). The auth and sign
 * certificates are verified against the directory's ca.pem (+ chain.pem) at time `at`
 * (0: now), with purposes AUTH and SIGN; they must name the same USCC, node and role.
 * Errors: TDSX_E_CONFIG (endpoint malformed, or a node name the registry cannot hold), the
 * certificate codes of tdsx_cert_verify, TDSX_E_CERT_SUBJECT (auth and sign disagree), file
 * errors (TDSX_E_NOTFOUND, ...), TDSX_E_TOOBIG / TDSX_E_NOMEM from the buffer. On failure
 * `out` is left as it was. */
TDSX_MUST_CHECK int tdsx_registry_format(const char *cred_dir, const char *endpoint, int64_t at,
                                         tdsx_buf_t *out);

/* ==========================================================================================
 * TLS engine (SPEC §4)
 *
 * TLS 1.3 only, mutual authentication always, ALPN "tdsx/1" on both sides, no renegotiation,
 * no session tickets or resumption. The peer's certificate is checked by tdsx_cert_verify
 * (purpose AUTH, any role) and must then be in the member registry with the same auth
 * fingerprint and role (tdsx_registry_check). A refused peer gets a TLS alert; the reason is
 * the connection's error code.
 *
 * Byte flow (the engine never touches a socket):
 *
 *   network --> tdsx_tls_conn_feed --> [ciphertext in, <= TDSX_TLS_IN_CAP]
 *                                          |  TLS
 *                                          v
 *              tdsx_tls_conn_read <-- [plaintext, <= TDSX_TLS_PLAIN_CAP]
 *              tdsx_tls_conn_write --> [ciphertext out, <= TDSX_TLS_OUT_CAP]
 *                                          |
 *   network <-- tdsx_tls_conn_output / tdsx_tls_conn_consume
 *
 * Every buffer is bounded, so a peer cannot grow memory: when the application does not read,
 * plaintext stops being decrypted, ciphertext stays in, and tdsx_tls_conn_room() drops to 0;
 * the shell then stops reading the socket. Beyond the three caps OpenSSL holds at most the
 * one record (16 KiB) it is decrypting.
 *
 * The first fatal error is sticky (as in BearSSL): from then on every call that returns an
 * int returns it, and the state is TDSX_TLS_FAILED. Output stays available after a failure
 * so the alert that explains it can still be sent.
 *
 * Engines are not thread-safe; one thread drives a connection at a time. A context may be
 * shared by connections on several threads.
 * ======================================================================================== */

#define TDSX_TLS_ALPN "tdsx/1"
#define TDSX_TLS_IN_CAP (64u * 1024u)    /* ciphertext fed but not yet processed */
#define TDSX_TLS_OUT_CAP (64u * 1024u)   /* ciphertext produced but not yet consumed */
#define TDSX_TLS_PLAIN_CAP (64u * 1024u) /* decrypted bytes the application has not read */

typedef struct tdsx_tls_ctx_s tdsx_tls_ctx_t;
typedef struct tdsx_tls_conn_s tdsx_tls_conn_t;

typedef struct tdsx_tls_config_s {
    /* The node's credential directory: auth.pem (leaf, optionally followed by
     * intermediates), auth.key (Ed25519, must be 0600), chain.pem (optional). */
    const char *cred_dir;
    /* Overrides for the certificate and key files (NULL: the ones in cred_dir). */
    const char *cert_file;
    const char *key_file;
    /* Borrowed; both must outlive the context and every connection made from it. */
    const tdsx_trust_t *trust;
    const tdsx_registry_t *registry;
} tdsx_tls_config_t;

/* Builds a node's TLS context. Errors: TDSX_E_INVAL (NULL trust, registry or cred_dir), the
 * errors of tdsx_cert_load_file and tdsx_key_load_ed25519 (TDSX_E_CERT_PARSE,
 * TDSX_E_KEY_PARSE, TDSX_E_PERM, TDSX_E_NOTFOUND), TDSX_E_CONFIG (key does not match the
 * certificate), TDSX_E_TLS (OpenSSL refused a setting), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx_tls_ctx_new(const tdsx_tls_config_t *cfg, tdsx_tls_ctx_t **out);
/* NULL is allowed. Only once every connection made from it is freed. */
void tdsx_tls_ctx_free(tdsx_tls_ctx_t *ctx);
/* on = 1: every CA in a peer's chain must have a CRL in the trust set, else the peer is
 * refused with TDSX_E_CRL_MISSING (fail closed when revocation data is absent). Default 0:
 * CRLs in the trust set are checked, missing ones are not an error. Applies to handshakes
 * that verify a peer after the call; not to be called while another thread uses ctx. */
void tdsx_tls_ctx_require_crl(tdsx_tls_ctx_t *ctx, int on);

typedef enum { TDSX_TLS_CLIENT = 0, TDSX_TLS_SERVER = 1 } tdsx_tls_side_t;

typedef enum {
    TDSX_TLS_HANDSHAKING = 0, /* no application data yet */
    TDSX_TLS_OPEN = 1,        /* handshake done, peer verified, data flows both ways */
    TDSX_TLS_CLOSING = 2,     /* we sent close_notify; the peer may still send */
    TDSX_TLS_CLOSED = 3,      /* both close_notify alerts exchanged (or closed before open) */
    TDSX_TLS_FAILED = 4       /* fatal error, see tdsx_tls_conn_error */
} tdsx_tls_state_t;

/* "handshaking", "open", "closing", "closed", "failed". */
const char *tdsx_tls_state_name(tdsx_tls_state_t s);

/* New connection on `side`. A client may name the member it means to reach in
 * `expect_peer` ("<USCC>/<node>", copied; NULL: any registered member); any other verified
 * member is then refused with TDSX_E_PEER_CERT. Nothing is sent until the first
 * tdsx_tls_conn_handshake (or feed). Errors: TDSX_E_INVAL, TDSX_E_NOMEM, TDSX_E_TLS. */
TDSX_MUST_CHECK int tdsx_tls_conn_new(tdsx_tls_ctx_t *ctx, tdsx_tls_side_t side,
                                      const char *expect_peer, tdsx_tls_conn_t **out);
/* NULL is allowed. Sends nothing: call tdsx_tls_conn_close first for a clean close. */
void tdsx_tls_conn_free(tdsx_tls_conn_t *c);

/* Starts (client: queues the ClientHello) or drives the handshake. 0 once the handshake is
 * done (also in CLOSING/CLOSED after it), TDSX_E_AGAIN while it needs more input or room
 * for output, TDSX_E_CLOSED when closed before it completed, or the sticky error. */
TDSX_MUST_CHECK int tdsx_tls_conn_handshake(tdsx_tls_conn_t *c);

/* How many ciphertext bytes tdsx_tls_conn_feed accepts now (0 after failure or close). */
size_t tdsx_tls_conn_room(const tdsx_tls_conn_t *c);
/* Hands ciphertext received from the network to the engine, then drives it (handshake,
 * decryption into the plaintext buffer). All or nothing: more than tdsx_tls_conn_room()
 * bytes is TDSX_E_TOOBIG and nothing is taken (not fatal: read, flush, retry). Returns 0,
 * TDSX_E_CLOSED once the peer's close_notify was received (the bytes are ignored,
 * RFC 8446 §6.1), TDSX_E_STATE after tdsx_tls_conn_feed_eof, or the sticky error. */
TDSX_MUST_CHECK int tdsx_tls_conn_feed(tdsx_tls_conn_t *c, tdsx_bytes_t in);
/* Tells the engine the transport reached end of file. Buffered records are still processed;
 * then, without the peer's close_notify, the connection fails (truncation:
 * TDSX_E_TLS_HANDSHAKE during the handshake, TDSX_E_TLS after), except in CLOSING where the
 * peer need not answer our close_notify. Returns 0 or the sticky error. */
TDSX_MUST_CHECK int tdsx_tls_conn_feed_eof(tdsx_tls_conn_t *c);

/* The ciphertext waiting to be sent: *len bytes at the returned pointer (NULL and 0 when
 * none). The span may be only part of what is waiting (the buffer is a ring): send it,
 * consume it, and call again until *len is 0. The pointer stays valid, and its bytes
 * unchanged, until tdsx_tls_conn_consume or tdsx_tls_conn_free; other calls only append.
 * Works in every state, FAILED included (the alert). */
const uint8_t *tdsx_tls_conn_output(tdsx_tls_conn_t *c, size_t *len);
/* Marks n bytes of the output as sent (n <= the *len last returned; larger n is clamped).
 * Does not drive the engine: call read, write or handshake afterwards. */
void tdsx_tls_conn_consume(tdsx_tls_conn_t *c, size_t n);

/* Encrypts up to n application bytes; *written says how many were taken (all, or as many
 * as fit in the output buffer). 0 when *written > 0 (or n == 0); TDSX_E_AGAIN when nothing
 * fits now (consume output first) or the handshake is not done; TDSX_E_CLOSED after either
 * side sent close_notify; or the sticky error. */
TDSX_MUST_CHECK int tdsx_tls_conn_write(tdsx_tls_conn_t *c, const void *p, size_t n,
                                        size_t *written);
/* Copies up to cap decrypted bytes into p; *got says how many. 0 when *got > 0;
 * TDSX_E_AGAIN when nothing is there yet; TDSX_E_CLOSED when the peer sent close_notify and
 * everything before it was read; or the sticky error (data not yet read is then dropped). */
TDSX_MUST_CHECK int tdsx_tls_conn_read(tdsx_tls_conn_t *c, void *p, size_t cap, size_t *got);

/* Queues close_notify (RFC 8446 §6.1). OPEN -> CLOSING (CLOSED when the peer's already
 * arrived); before the handshake completes the connection just becomes CLOSED and nothing
 * is sent. When the peer's close_notify arrives first, the engine answers it by itself.
 * Returns 0 or the sticky error. */
TDSX_MUST_CHECK int tdsx_tls_conn_close(tdsx_tls_conn_t *c);

tdsx_tls_state_t tdsx_tls_conn_state(const tdsx_tls_conn_t *c);
/* The first fatal error (0 while there is none). For a refused peer certificate it is the
 * specific code: TDSX_E_CERT_* from tdsx_cert_verify, TDSX_E_PEER_UNKNOWN,
 * TDSX_E_CERT_FINGERPRINT, TDSX_E_CERT_ROLE, TDSX_E_PEER_CERT (no certificate, or not the
 * expected member); otherwise TDSX_E_TLS_VERSION, TDSX_E_TLS_ALPN, TDSX_E_TLS_HANDSHAKE
 * (handshake failed, or the peer refused it with an alert), TDSX_E_TLS (after the
 * handshake: bad record, unexpected alert, truncation), TDSX_E_NOMEM, TDSX_E_INTERNAL. */
int tdsx_tls_conn_error(const tdsx_tls_conn_t *c);
/* OpenSSL's description of the failure (or ours), for logs; "" when none. Never NULL. */
const char *tdsx_tls_conn_detail(const tdsx_tls_conn_t *c);
/* The first alert other than close_notify the peer sent us / we sent the peer (RFC 8446
 * §6.2 AlertDescription, e.g. 44 certificate_revoked), -1 when none. */
int tdsx_tls_conn_alert_received(const tdsx_tls_conn_t *c);
int tdsx_tls_conn_alert_sent(const tdsx_tls_conn_t *c);

/* The verified peer: its certificate identity and "<USCC>/<node>" id. NULL until the
 * handshake completed, and after a failure. Valid until tdsx_tls_conn_free. */
const tdsx_identity_t *tdsx_tls_conn_peer(const tdsx_tls_conn_t *c);
const char *tdsx_tls_conn_peer_id(const tdsx_tls_conn_t *c);
/* The verified peer's leaf certificate and, when chain is not NULL, the chain it sent (may be
 * NULL), both owned by the connection and valid until tdsx_tls_conn_free. NULL when
 * tdsx_tls_conn_peer is. Lets a node re-check a live peer against a new trust bundle. */
X509 *tdsx_tls_conn_peer_cert(const tdsx_tls_conn_t *c, STACK_OF(X509) **chain);
/* The context the connection was made from (it must outlive the connection). */
const tdsx_tls_ctx_t *tdsx_tls_conn_ctx(const tdsx_tls_conn_t *c);

/* ==========================================================================================
 * Receipts (SPEC §10, §13)
 *
 * A complete receipt travels as a serialised ReceiptBundle (proto/transfer.proto): the exact
 * NRO and NRR envelopes and the DER sign certificates of both parties. Verifying it trusts only
 * `trust` (the auditor's anchor): both certificates must chain to it with purpose SIGN at the
 * time the NRO was signed, the NRO must be signed by the sender's key and the NRR by the
 * receiver's, and the NRR must name the NRO by its envelope hash and signature hash. An
 * accepted NRR must report the length and SHA-256 the NRO promised.
 * ======================================================================================== */
typedef struct tdsx_receipt_info_s {
    uint8_t transfer_id[16];
    char sender[TDSX_ID_SIZE];
    char receiver[TDSX_ID_SIZE];
    char dataset_id[256];
    uint8_t sha256[32];
    uint64_t length;
    uint64_t sequence;
    int64_t sent_at, received_at;
    int accepted;
    const char *status; /* "accepted", "integrity-failed", "policy-refused" */
    uint8_t received_sha256[32];
    uint64_t received_length;
} tdsx_receipt_info_t;

/* 0 when the receipt verifies (out filled); otherwise the specific code (TDSX_E_PROTO_DECODE,
 * a TDSX_E_CERT_* code, TDSX_E_SIG_INVALID, TDSX_E_SIGNER_UNKNOWN, TDSX_E_SIG_TYPE,
 * TDSX_E_HASH_MISMATCH, ...) and *what (may be NULL) names the part at fault. */
TDSX_MUST_CHECK int tdsx_receipt_verify(tdsx_bytes_t bundle, const tdsx_trust_t *trust,
                                        tdsx_receipt_info_t *out, const char **what);

#endif
