/* The TLS 1.3 mutual-authentication engine (SPEC §4): OpenSSL over a BIO pair, so bytes go
 * in and out through bounded ring buffers and nothing here touches a socket.
 *
 * Every SSL_* I/O call is bracketed the same way: ERR_clear_error() before, SSL_get_error()
 * right after. Whatever it returned, the ciphertext it produced (an alert included) is
 * already readable from the pair, so tdsx_tls_conn_output() always has it. */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct tdsx_tls_ctx_s {
    SSL_CTX *ssl_ctx;
    const tdsx_trust_t *trust;
    const tdsx_registry_t *registry;
    int require_crl;
};

struct tdsx_tls_conn_s {
    tdsx_tls_ctx_t *ctx;
    SSL *ssl;
    BIO *net; /* our end of the pair; the SSL owns the other end */
    tdsx_tls_side_t side;
    tdsx_tls_state_t state;
    int err;              /* first fatal error, sticky */
    int refusal;          /* why one of our callbacks refused the peer (0: none) */
    int handshake_done;   /* reached OPEN at least once */
    int shutdown_pending; /* close_notify still to be written once output has room */
    int eof;              /* transport end of file seen */
    int alert_in;         /* first non-close_notify alert received, -1 none */
    int alert_out;        /* first non-close_notify alert sent, -1 none */
    tdsx_buf_t plain;     /* decrypted, not yet read by the application */
    int have_fp;
    uint8_t peer_fp[32]; /* the peer leaf's fingerprint, verified or not (logs) */
    int have_peer;
    tdsx_identity_t peer;
    char peer_id[TDSX_ID_SIZE]; /* verified id, or the id a refused certificate claimed */
    char expect[TDSX_ID_SIZE];
    char detail[200];
};

/* TLS 1.3 record overhead (RFC 8446 §5.2): 5-byte header, 1-byte inner content type and a
 * 16-byte AEAD tag per record of at most 2^14 plaintext bytes. */
#define RECORD_PLAIN 16384u
#define RECORD_EXTRA 22u
/* Room kept for a KeyUpdate OpenSSL may have to send ahead of application data. */
#define WRITE_SLACK 256u

/* RFC 7301 §3.1 wire form: one length-prefixed protocol name. */
static const unsigned char alpn_wire[] = "\x06" TDSX_TLS_ALPN;
#define ALPN_WIRE_LEN (sizeof alpn_wire - 1)

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int conn_index = -1;

static void make_index(void)
{
    conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static tdsx_tls_conn_t *conn_of(const SSL *ssl)
{
    return ssl ? SSL_get_ex_data(ssl, conn_index) : NULL;
}

const char *tdsx_tls_state_name(tdsx_tls_state_t s)
{
    switch (s) {
    case TDSX_TLS_HANDSHAKING: return "handshaking";
    case TDSX_TLS_OPEN: return "open";
    case TDSX_TLS_CLOSING: return "closing";
    case TDSX_TLS_CLOSED: return "closed";
    case TDSX_TLS_FAILED: return "failed";
    default: return "unknown";
    }
}

/* ------------------------------------------------------------------------------------------
 * Failure: one place that makes an error sticky, keeps its story and logs it once.
 * ---------------------------------------------------------------------------------------- */

static int fail(tdsx_tls_conn_t *c, int rc, const char *why)
{
    if (c->state == TDSX_TLS_FAILED)
        return c->err;
    if (why && !c->detail[0])
        snprintf(c->detail, sizeof c->detail, "%s", why);
    unsigned long e = ERR_peek_error();
    if (!c->detail[0] && e)
        ERR_error_string_n(e, c->detail, sizeof c->detail);
    /* The queue is per thread: leave nothing behind for the next connection. */
    ERR_clear_error();
    /* A TLS 1.3 client learns that its certificate was refused only after its own side of
     * the handshake completed: that is still a handshake failure. */
    int during_handshake = c->state == TDSX_TLS_HANDSHAKING || rc == TDSX_E_TLS_HANDSHAKE;
    c->err = rc;
    c->state = TDSX_TLS_FAILED;
    char fp[65] = "";
    if (c->have_fp)
        tdsx_hex_encode(fp, c->peer_fp, 32);
    tdsx_log(TDSX_LOG_WARN, during_handshake ? "tls.handshake_failed" : "tls.failed",
             TDSX_KV_S("side", c->side == TDSX_TLS_CLIENT ? "client" : "server"),
             TDSX_KV_E("err", rc), TDSX_KV_S(c->have_peer ? "peer" : "claimed_peer", c->peer_id),
             TDSX_KV_S("fingerprint", fp), TDSX_KV_I("alert_received", c->alert_in),
             TDSX_KV_I("alert_sent", c->alert_out), TDSX_KV_S("detail", c->detail));
    return rc;
}

/* Alerts by which a peer refuses a handshake (RFC 8446 §6.2). */
static int is_refusal_alert(int desc)
{
    switch (desc) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED: return 1;
    default: return 0;
    }
}

/* Turns what OpenSSL said into one of our codes. */
static int map_error(tdsx_tls_conn_t *c)
{
    if (c->refusal)
        return c->refusal;
    int hs = c->state == TDSX_TLS_HANDSHAKING;
    /* What the peer told us beats what we inferred: its alert names the reason. */
    if (c->alert_in == SSL_AD_PROTOCOL_VERSION)
        return TDSX_E_TLS_VERSION;
    if (c->alert_in == SSL_AD_NO_APPLICATION_PROTOCOL)
        return TDSX_E_TLS_ALPN;
    if (c->alert_in >= 0 && is_refusal_alert(c->alert_in))
        return TDSX_E_TLS_HANDSHAKE;
    unsigned long e = ERR_peek_error();
    int reason = e && ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_BAD_LEGACY_VERSION: return TDSX_E_TLS_VERSION;
    case SSL_R_NO_APPLICATION_PROTOCOL: return TDSX_E_TLS_ALPN;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED: return TDSX_E_PEER_CERT;
    default: break;
    }
    return hs ? TDSX_E_TLS_HANDSHAKE : TDSX_E_TLS;
}

/* ------------------------------------------------------------------------------------------
 * Callbacks: ALPN, peer verification, alerts
 * ---------------------------------------------------------------------------------------- */

static int alpn_is_ours(const unsigned char *p, size_t n)
{
    return n == sizeof TDSX_TLS_ALPN - 1 && memcmp(p, TDSX_TLS_ALPN, n) == 0;
}

/* Server: choose "tdsx/1" from the client's list (RFC 7301 §3.2) or refuse. */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    tdsx_bytes_t list = tdsx_bytes(in, inlen);
    uint8_t len;
    while (tdsx_bytes_u8(&list, &len) == 0) {
        tdsx_bytes_t name;
        if (tdsx_bytes_take(&list, len, &name) != 0)
            break;
        if (alpn_is_ours(name.p, name.n)) {
            *out = name.p;
            *outlen = len;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    tdsx_tls_conn_t *c = conn_of(ssl);
    if (c && !c->refusal)
        c->refusal = TDSX_E_TLS_ALPN;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Server: the ALPN select callback only runs when the client sent the extension, so a
 * ClientHello without it is refused here, before anything is sent back. */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    const unsigned char *ext = NULL;
    size_t len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                  &len) == 1)
        return SSL_CLIENT_HELLO_SUCCESS;
    tdsx_tls_conn_t *c = conn_of(ssl);
    if (c && !c->refusal)
        c->refusal = TDSX_E_TLS_ALPN;
    *al = SSL_AD_NO_APPLICATION_PROTOCOL;
    return SSL_CLIENT_HELLO_ERROR;
}

static void on_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_ALERT))
        return;
    tdsx_tls_conn_t *c = conn_of(ssl);
    int desc = ret & 0xff;
    if (!c || desc == SSL_AD_CLOSE_NOTIFY)
        return;
    if ((where & SSL_CB_READ) && c->alert_in < 0)
        c->alert_in = desc;
    if ((where & SSL_CB_WRITE) && c->alert_out < 0)
        c->alert_out = desc;
}

/* The X509_V_ERR_* whose alert (OpenSSL's ssl_x509err2alert) best tells the peer why. */
static int x509_code(int rc)
{
    switch (rc) {
    case TDSX_E_CERT_EXPIRED: return X509_V_ERR_CERT_HAS_EXPIRED;
    case TDSX_E_CERT_NOT_YET_VALID: return X509_V_ERR_CERT_NOT_YET_VALID;
    case TDSX_E_CERT_REVOKED: return X509_V_ERR_CERT_REVOKED;
    case TDSX_E_CERT_UNTRUSTED: return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
    case TDSX_E_CERT_CHAIN: return X509_V_ERR_INVALID_CA;
    case TDSX_E_CERT_PURPOSE: return X509_V_ERR_INVALID_PURPOSE;
    case TDSX_E_CRL_MISSING:
    case TDSX_E_CRL_INVALID: return X509_V_ERR_UNABLE_TO_GET_CRL;
    case TDSX_E_CRL_EXPIRED: return X509_V_ERR_CRL_HAS_EXPIRED;
    case TDSX_E_CERT_PARSE:
    case TDSX_E_CERT_SUBJECT:
    case TDSX_E_CERT_USCC:
    case TDSX_E_CERT_KEY:
    case TDSX_E_CERT_ROLE:
    case TDSX_E_CERT_FINGERPRINT: return X509_V_ERR_CERT_REJECTED;
    case TDSX_E_NOMEM: return X509_V_ERR_OUT_OF_MEM;
    default: return X509_V_ERR_APPLICATION_VERIFICATION;
    }
}

static int check_peer(tdsx_tls_conn_t *c, X509 *leaf, STACK_OF(X509) *chain)
{
    /* Client: EncryptedExtensions (with the server's ALPN choice) precede the Certificate
     * (RFC 8446 §4.3.1), so a server without "tdsx/1" is refused here, with an alert,
     * rather than after a handshake that looked complete. */
    if (c->side == TDSX_TLS_CLIENT) {
        const unsigned char *sel = NULL;
        unsigned int n = 0;
        SSL_get0_alpn_selected(c->ssl, &sel, &n);
        if (!sel || !alpn_is_ours(sel, n))
            return TDSX_E_TLS_ALPN;
    }
    if (!leaf)
        return TDSX_E_PEER_CERT;
    if (tdsx_cert_fingerprint(leaf, c->peer_fp) == 0)
        c->have_fp = 1;
    tdsx_verify_opts_t o = {TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, tdsx_now(), c->ctx->require_crl};
    tdsx_identity_t id;
    int rc = tdsx_cert_verify(c->ctx->trust, leaf, chain, &o, &id);
    if (rc)
        return rc;
    tdsx_identity_id(&id, c->peer_id, sizeof c->peer_id);
    rc = tdsx_registry_check(c->ctx->registry, &id, NULL);
    if (rc)
        return rc;
    if (c->expect[0] && strcmp(c->peer_id, c->expect) != 0) {
        snprintf(c->detail, sizeof c->detail, "expected %s", c->expect);
        return TDSX_E_PEER_CERT;
    }
    c->peer = id;
    c->have_peer = 1;
    return 0;
}

/* Replaces OpenSSL's chain verification for both sides: our verifier, then the registry. */
static int on_verify(X509_STORE_CTX *xs, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tdsx_tls_conn_t *c = conn_of(ssl);
    if (!c) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    int rc = check_peer(c, X509_STORE_CTX_get0_cert(xs), X509_STORE_CTX_get0_untrusted(xs));
    /* tdsx_cert_verify may have queued OpenSSL errors of its own; our code says it all. */
    ERR_clear_error();
    if (rc) {
        if (!c->refusal)
            c->refusal = rc;
        if (!c->detail[0])
            snprintf(c->detail, sizeof c->detail, "peer refused: %s", tdsx_strerror(rc));
        X509_STORE_CTX_set_error(xs, x509_code(rc));
        return 0;
    }
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Context
 * ---------------------------------------------------------------------------------------- */

static int path_of(tdsx_buf_t *b, const char *override, const char *dir, const char *name)
{
    tdsx_buf_reset(b);
    if (override)
        return tdsx_buf_append_str(b, override);
    return tdsx_buf_printf(b, "%s/%s", dir, name);
}

static int add_chain_certs(SSL_CTX *ctx, STACK_OF(X509) *sk, int from)
{
    for (int i = from; i < sk_X509_num(sk); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(sk, i)) != 1)
            return TDSX_E_TLS;
    return 0;
}

/* chain.pem is optional and may hold no certificate when the root issues directly. */
static int load_chain_file(SSL_CTX *ctx, const char *path)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, 1024u * 1024u, &pem, &len);
    if (rc == TDSX_E_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    int has_cert = len && strstr((const char *)pem, "-----BEGIN") != NULL;
    tdsx_free(pem);
    if (!has_cert)
        return 0;
    STACK_OF(X509) *sk = NULL;
    rc = tdsx_cert_load_file(path, &sk);
    if (rc == 0)
        rc = add_chain_certs(ctx, sk, 0);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static int load_credentials(SSL_CTX *ctx, const tdsx_tls_config_t *cfg)
{
    tdsx_buf_t path;
    tdsx_buf_init(&path, 4096);
    STACK_OF(X509) *sk = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t seed[32];
    int rc = path_of(&path, cfg->cert_file, cfg->cred_dir, TDSX_CRED_AUTH_CERT);
    if (rc || (rc = tdsx_cert_load_file((const char *)path.p, &sk)) != 0)
        goto fail;
    if (SSL_CTX_use_certificate(ctx, sk_X509_value(sk, 0)) != 1 ||
        (rc = add_chain_certs(ctx, sk, 1)) != 0) {
        rc = TDSX_E_TLS;
        goto fail;
    }
    if (cfg->cred_dir) {
        if ((rc = path_of(&path, NULL, cfg->cred_dir, TDSX_CRED_CHAIN)) != 0 ||
            (rc = load_chain_file(ctx, (const char *)path.p)) != 0)
            goto fail;
    }
    if ((rc = path_of(&path, cfg->key_file, cfg->cred_dir, TDSX_CRED_AUTH_KEY)) != 0 ||
        (rc = tdsx_key_load_ed25519((const char *)path.p, seed)) != 0)
        goto fail;
    pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    if (!pkey) {
        rc = TDSX_E_KEY_PARSE;
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        rc = TDSX_E_CONFIG;
        goto fail;
    }
    rc = 0;
fail:
    OPENSSL_cleanse(seed, sizeof seed);
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(sk, X509_free);
    tdsx_buf_free(&path);
    ERR_clear_error();
    return rc;
}

int tdsx_tls_ctx_new(const tdsx_tls_config_t *cfg, tdsx_tls_ctx_t **out)
{
    *out = NULL;
    if (!cfg || !cfg->trust || !cfg->registry ||
        (!cfg->cred_dir && (!cfg->cert_file || !cfg->key_file)))
        return TDSX_E_INVAL;
    if (pthread_once(&index_once, make_index) != 0 || conn_index < 0)
        return TDSX_E_TLS;
    tdsx_tls_ctx_t *t = tdsx_calloc(1, sizeof *t);
    if (!t)
        return TDSX_E_NOMEM;
    t->trust = cfg->trust;
    t->registry = cfg->registry;
    int rc = TDSX_E_TLS;
    ERR_clear_error();
    SSL_CTX *ctx = t->ssl_ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        goto fail;
    /* SPEC §4: TLS 1.3 only; no renegotiation; no tickets or session cache, so nothing is
     * ever resumed, under any identity. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_num_tickets(ctx, 0) != 1)
        goto fail;
    /* Every node key is Ed25519 (SPEC §2); accept no other signature. */
    if (SSL_CTX_set1_sigalgs_list(ctx, "ed25519") != 1)
        goto fail;
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    /* An idle connection keeps no record buffers (about 33 KiB each otherwise): with
     * 10,000 peers connected that is most of the daemon's memory (tdsx bench conns). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, on_verify, t);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, t);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, t);
    SSL_CTX_set_info_callback(ctx, on_info);
    rc = load_credentials(ctx, cfg);
    if (rc)
        goto fail;
    *out = t;
    return 0;
fail:
    ERR_clear_error();
    tdsx_tls_ctx_free(t);
    return rc;
}

void tdsx_tls_ctx_require_crl(tdsx_tls_ctx_t *t, int on)
{
    t->require_crl = on ? 1 : 0;
}

void tdsx_tls_ctx_free(tdsx_tls_ctx_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ssl_ctx);
    tdsx_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Connection
 * ---------------------------------------------------------------------------------------- */

int tdsx_tls_conn_new(tdsx_tls_ctx_t *ctx, tdsx_tls_side_t side, const char *expect_peer,
                      tdsx_tls_conn_t **out)
{
    *out = NULL;
    if (!ctx || (side != TDSX_TLS_CLIENT && side != TDSX_TLS_SERVER) ||
        (expect_peer &&
         (side != TDSX_TLS_CLIENT || !*expect_peer || strlen(expect_peer) >= TDSX_ID_SIZE)))
        return TDSX_E_INVAL;
    tdsx_tls_conn_t *c = tdsx_calloc(1, sizeof *c);
    if (!c)
        return TDSX_E_NOMEM;
    c->ctx = ctx;
    c->side = side;
    c->state = TDSX_TLS_HANDSHAKING;
    c->alert_in = c->alert_out = -1;
    if (expect_peer)
        snprintf(c->expect, sizeof c->expect, "%s", expect_peer);
    /* Allocated while decrypted bytes wait for the application, not for the connection's life. */
    tdsx_buf_init(&c->plain, TDSX_TLS_PLAIN_CAP);
    int rc = TDSX_E_TLS;
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl_ctx);
    BIO *inner = NULL;
    if (!c->ssl || BIO_new_bio_pair(&inner, TDSX_TLS_OUT_CAP, &c->net, TDSX_TLS_IN_CAP) != 1)
        goto fail;
    SSL_set_bio(c->ssl, inner, inner);
    if (SSL_set_ex_data(c->ssl, conn_index, c) != 1)
        goto fail;
    if (side == TDSX_TLS_CLIENT) {
        SSL_set_connect_state(c->ssl);
        /* SSL_set_alpn_protos returns 0 on success. */
        if (SSL_set_alpn_protos(c->ssl, alpn_wire, ALPN_WIRE_LEN) != 0)
            goto fail;
    } else {
        SSL_set_accept_state(c->ssl);
    }
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    tdsx_tls_conn_free(c);
    return rc;
}

void tdsx_tls_conn_free(tdsx_tls_conn_t *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    BIO_free(c->net);
    tdsx_buf_free(&c->plain);
    tdsx_free(c);
}

/* Writes (or finishes writing) our close_notify. */
static int send_close(tdsx_tls_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    int e = SSL_get_error(c->ssl, r);
    if (r >= 0) {
        c->shutdown_pending = 0;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->shutdown_pending = 1;
        return 0;
    }
    return fail(c, map_error(c), NULL);
}

/* RFC 8446 §6.1: answer the peer's close_notify with ours; the connection is then over. */
static int on_close_notify(tdsx_tls_conn_t *c)
{
    int answer = c->state == TDSX_TLS_OPEN;
    c->state = TDSX_TLS_CLOSED;
    return answer || c->shutdown_pending ? send_close(c) : 0;
}

static int established(tdsx_tls_conn_t *c)
{
    /* Belt and braces: the callbacks enforce all of this, and refuse with an alert. */
    if (SSL_version(c->ssl) != TLS1_3_VERSION)
        return TDSX_E_TLS_VERSION;
    const unsigned char *sel = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->ssl, &sel, &n);
    if (!sel || !alpn_is_ours(sel, n))
        return TDSX_E_TLS_ALPN;
    if (!c->have_peer)
        return TDSX_E_PEER_CERT;
    return 0;
}

#define TRUNCATED "transport closed without close_notify"

/* 1 when the failure (or the wait) reported as e is the transport's end of file. OpenSSL does
 * not always turn it into an error: a WANT_READ once every fed byte was read is one too. */
static int at_eof(tdsx_tls_conn_t *c, int e)
{
    if (!c->eof)
        return 0;
    if (e == SSL_ERROR_WANT_READ)
        return BIO_ctrl_pending(SSL_get_rbio(c->ssl)) == 0;
    if (e == SSL_ERROR_SYSCALL)
        return 1;
    unsigned long x = ERR_peek_error();
    return e == SSL_ERROR_SSL && ERR_GET_LIB(x) == ERR_LIB_SSL &&
           ERR_GET_REASON(x) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* 1: handshake done, 0: waiting for input or output room, < 0: failed. */
static int step_handshake(tdsx_tls_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int e = SSL_get_error(c->ssl, r);
    if (r == 1) {
        int rc = established(c);
        if (rc)
            return fail(c, rc, "handshake completed without the required properties");
        c->handshake_done = 1;
        c->state = TDSX_TLS_OPEN;
        return 1;
    }
    if (at_eof(c, e))
        return fail(c, TDSX_E_TLS_HANDSHAKE, TRUNCATED);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return fail(c, map_error(c), NULL);
}

/* The plaintext buffer exists only while it holds something. */
static void plain_release(tdsx_tls_conn_t *c)
{
    if (c->plain.len == 0 && c->plain.p) {
        tdsx_buf_free(&c->plain);
        tdsx_buf_init(&c->plain, TDSX_TLS_PLAIN_CAP);
    }
}

static int pull_plaintext_into(tdsx_tls_conn_t *c);

/* Decrypts into the plaintext buffer until it is full, input runs out or output is full. */
static int pull_plaintext(tdsx_tls_conn_t *c)
{
    if (c->shutdown_pending) {
        int rc = send_close(c);
        if (rc)
            return rc;
    }
    if (c->state != TDSX_TLS_OPEN && c->state != TDSX_TLS_CLOSING)
        return 0;
    if (tdsx_buf_reserve(&c->plain, c->plain.cap - c->plain.len) != 0)
        return fail(c, TDSX_E_NOMEM, NULL);
    int rc = pull_plaintext_into(c);
    plain_release(c);
    return rc;
}

static int pull_plaintext_into(tdsx_tls_conn_t *c)
{
    while (c->state == TDSX_TLS_OPEN || c->state == TDSX_TLS_CLOSING) {
        size_t room = c->plain.cap - c->plain.len;
        if (room == 0)
            return 0;
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, c->plain.p + c->plain.len, room, &got);
        int e = SSL_get_error(c->ssl, r);
        if (r == 1) {
            c->plain.len += got;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return on_close_notify(c);
        if (at_eof(c, e)) {
            /* After our close_notify the peer may just hang up (RFC 8446 §6.1). */
            if (c->state == TDSX_TLS_CLOSING) {
                ERR_clear_error();
                c->state = TDSX_TLS_CLOSED;
                return 0;
            }
            return fail(c, TDSX_E_TLS, TRUNCATED);
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            /* Nothing more to decrypt for now: hand back the record buffers (about 33 KiB)
             * unless a record is half read; an idle connection then holds none. */
            (void)SSL_free_buffers(c->ssl);
            return 0;
        }
        return fail(c, map_error(c), NULL);
    }
    return 0;
}

/* Does whatever the buffered bytes allow. Returns 0 or the sticky error. */
static int advance(tdsx_tls_conn_t *c)
{
    for (;;) {
        switch (c->state) {
        case TDSX_TLS_HANDSHAKING: {
            int r = step_handshake(c);
            if (r != 1)
                return r;
            continue;
        }
        case TDSX_TLS_OPEN:
        case TDSX_TLS_CLOSING: return pull_plaintext(c);
        case TDSX_TLS_CLOSED: return c->shutdown_pending ? send_close(c) : 0;
        case TDSX_TLS_FAILED: return c->err;
        default: return fail(c, TDSX_E_INTERNAL, "unknown engine state");
        }
    }
}

int tdsx_tls_conn_handshake(tdsx_tls_conn_t *c)
{
    int rc = advance(c);
    if (rc)
        return rc;
    switch (c->state) {
    case TDSX_TLS_HANDSHAKING: return TDSX_E_AGAIN;
    case TDSX_TLS_OPEN:
    case TDSX_TLS_CLOSING: return 0;
    case TDSX_TLS_CLOSED: return c->handshake_done ? 0 : TDSX_E_CLOSED;
    case TDSX_TLS_FAILED: return c->err;
    default: return fail(c, TDSX_E_INTERNAL, "unknown engine state");
    }
}

size_t tdsx_tls_conn_room(const tdsx_tls_conn_t *c)
{
    if (c->eof || c->state == TDSX_TLS_FAILED || c->state == TDSX_TLS_CLOSED)
        return 0;
    return BIO_ctrl_get_write_guarantee(c->net);
}

int tdsx_tls_conn_feed(tdsx_tls_conn_t *c, tdsx_bytes_t in)
{
    if (c->state == TDSX_TLS_FAILED)
        return c->err;
    if (c->state == TDSX_TLS_CLOSED)
        return TDSX_E_CLOSED;
    if (c->eof)
        return TDSX_E_STATE;
    if (in.n > BIO_ctrl_get_write_guarantee(c->net))
        return TDSX_E_TOOBIG;
    if (in.n && BIO_write(c->net, in.p, (int)in.n) != (int)in.n)
        return fail(c, TDSX_E_INTERNAL, "ciphertext buffer refused input it had room for");
    return advance(c);
}

int tdsx_tls_conn_feed_eof(tdsx_tls_conn_t *c)
{
    if (c->state == TDSX_TLS_FAILED)
        return c->err;
    if (c->eof)
        return 0;
    c->eof = 1;
    /* The SSL end then reads what is buffered, then end of file. */
    (void)BIO_shutdown_wr(c->net);
    return advance(c);
}

const uint8_t *tdsx_tls_conn_output(tdsx_tls_conn_t *c, size_t *len)
{
    char *p = NULL;
    int n = BIO_nread0(c->net, &p);
    if (n <= 0 || !p) {
        *len = 0;
        return NULL;
    }
    *len = (size_t)n;
    return (const uint8_t *)p;
}

void tdsx_tls_conn_consume(tdsx_tls_conn_t *c, size_t n)
{
    char *p = NULL;
    while (n > 0) {
        int step = BIO_nread(c->net, &p, n > INT_MAX ? INT_MAX : (int)n);
        if (step <= 0)
            return;
        n -= (size_t)step;
    }
}

/* How much plaintext fits in `room` bytes of output once framed into records. */
static size_t writable(size_t room)
{
    if (room <= WRITE_SLACK + RECORD_EXTRA)
        return 0;
    size_t avail = room - WRITE_SLACK;
    size_t records = avail / (RECORD_PLAIN + RECORD_EXTRA) + 1;
    return avail > records * RECORD_EXTRA ? avail - records * RECORD_EXTRA : 0;
}

int tdsx_tls_conn_write(tdsx_tls_conn_t *c, const void *p, size_t n, size_t *written)
{
    *written = 0;
    int rc = advance(c);
    if (rc)
        return rc;
    switch (c->state) {
    case TDSX_TLS_OPEN: break;
    case TDSX_TLS_HANDSHAKING: return TDSX_E_AGAIN;
    case TDSX_TLS_CLOSING:
    case TDSX_TLS_CLOSED: return TDSX_E_CLOSED;
    case TDSX_TLS_FAILED: return c->err;
    default: return fail(c, TDSX_E_INTERNAL, "unknown engine state");
    }
    if (n == 0)
        return 0;
    /* Never let SSL_write meet a full buffer: after WANT_WRITE OpenSSL insists on a retry
     * with the same bytes, which a caller of a bounded engine cannot promise. */
    size_t max = writable(BIO_ctrl_get_write_guarantee(SSL_get_wbio(c->ssl)));
    if (max == 0)
        return TDSX_E_AGAIN;
    size_t want = n < max ? n : max;
    size_t done = 0;
    ERR_clear_error();
    int r = SSL_write_ex(c->ssl, p, want, &done);
    int e = SSL_get_error(c->ssl, r);
    if (r == 1) {
        *written = done;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        return fail(c, TDSX_E_INTERNAL, "output buffer overrun");
    return fail(c, map_error(c), NULL);
}

int tdsx_tls_conn_read(tdsx_tls_conn_t *c, void *p, size_t cap, size_t *got)
{
    *got = 0;
    if (c->state == TDSX_TLS_FAILED)
        return c->err;
    if (c->plain.len == 0) {
        int rc = advance(c);
        if (rc)
            return rc;
    }
    if (c->plain.len > 0 && cap > 0) {
        size_t n = cap < c->plain.len ? cap : c->plain.len;
        memcpy(p, c->plain.p, n);
        tdsx_buf_consume(&c->plain, n);
        plain_release(c);
        *got = n;
        /* Room was made: let buffered records through (an error sticks for next time). */
        (void)advance(c);
        return 0;
    }
    switch (c->state) {
    case TDSX_TLS_HANDSHAKING:
    case TDSX_TLS_OPEN:
    case TDSX_TLS_CLOSING: return TDSX_E_AGAIN;
    case TDSX_TLS_CLOSED: return TDSX_E_CLOSED;
    case TDSX_TLS_FAILED: return c->err;
    default: return fail(c, TDSX_E_INTERNAL, "unknown engine state");
    }
}

int tdsx_tls_conn_close(tdsx_tls_conn_t *c)
{
    switch (c->state) {
    case TDSX_TLS_HANDSHAKING: c->state = TDSX_TLS_CLOSED; return 0;
    case TDSX_TLS_OPEN: c->state = TDSX_TLS_CLOSING; return send_close(c);
    case TDSX_TLS_CLOSING:
    case TDSX_TLS_CLOSED: return 0;
    case TDSX_TLS_FAILED: return c->err;
    default: return fail(c, TDSX_E_INTERNAL, "unknown engine state");
    }
}

tdsx_tls_state_t tdsx_tls_conn_state(const tdsx_tls_conn_t *c)
{
    return c->state;
}

int tdsx_tls_conn_error(const tdsx_tls_conn_t *c)
{
    return c->state == TDSX_TLS_FAILED ? c->err : 0;
}

const char *tdsx_tls_conn_detail(const tdsx_tls_conn_t *c)
{
    return c->detail;
}

int tdsx_tls_conn_alert_received(const tdsx_tls_conn_t *c)
{
    return c->alert_in;
}

int tdsx_tls_conn_alert_sent(const tdsx_tls_conn_t *c)
{
    return c->alert_out;
}

const tdsx_identity_t *tdsx_tls_conn_peer(const tdsx_tls_conn_t *c)
{
    return c->handshake_done && c->have_peer && c->state != TDSX_TLS_FAILED ? &c->peer : NULL;
}

const char *tdsx_tls_conn_peer_id(const tdsx_tls_conn_t *c)
{
    return tdsx_tls_conn_peer(c) ? c->peer_id : NULL;
}

const tdsx_tls_ctx_t *tdsx_tls_conn_ctx(const tdsx_tls_conn_t *c)
{
    return c->ctx;
}

X509 *tdsx_tls_conn_peer_cert(const tdsx_tls_conn_t *c, STACK_OF(X509) **chain)
{
    if (chain)
        *chain = NULL;
    if (!tdsx_tls_conn_peer(c))
        return NULL;
    if (chain)
        *chain = SSL_get_peer_cert_chain(c->ssl);
    return SSL_get0_peer_certificate(c->ssl);
}
