/* The TLS engine, pumped against itself and against plain OpenSSL peers in memory. A real CA
 * (with an intermediate) issues every credential once for the whole group. */
#include "support.h"

#include "gateway.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ------------------------------------------------------------------------------------------
 * Fixture
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    char *dir;
    char *ca;
    char *foreign_ca;
    char *centre;   /* the server in most tests; registered */
    char *brain;    /* the client in most tests; registered */
    char *ent;      /* registered enterprise */
    char *revoked;  /* registered, then revoked */
    char *outsider; /* valid, never registered */
    char *expired;
    char *notyet;
    char *twin;    /* brain's name issued a second time: another certificate */
    char *foreign; /* brain's name from a foreign CA */
    char *crl;
    char *log;
    char centre_id[TDSX_ID_SIZE];
    char brain_id[TDSX_ID_SIZE];
    tdsx_trust_t *trust;     /* the root only: chains come from the peers */
    tdsx_trust_t *trust_crl; /* the root and the CRLs */
    tdsx_registry_t *reg;
    tdsx_registry_t *reg_role; /* ent registered with the wrong role */
    tdsx_registry_t *reg_no_centre;
    tdsx_tls_ctx_t *server;
    tdsx_tls_ctx_t *client;
} fixture_t;

static fixture_t fx;

static void make_uscc(const char *first17, char out[TDSX_USCC_LEN + 1])
{
    memcpy(out, first17, 17);
    out[17] = tdsx_uscc_check_char(first17);
    out[18] = '\0';
    assert_int_equal(tdsx_uscc_check(out, NULL), 0);
}

static char *issue(tdsx_ca_t *ca, const char *name, const char *uscc, const char *org,
                   const char *node, tdsx_role_t role, int64_t not_before, int64_t days)
{
    char *out = tdsx_test_path(fx.dir, name);
    tdsx_issue_opts_t o = {uscc, org, node, role, not_before, days, 0};
    int rc = tdsx_ca_issue(ca, &o, out);
    if (rc)
        fail_msg("issue %s: %s", name, tdsx_err_name(rc));
    return out;
}

static void append_line(tdsx_buf_t *b, const char *dir, const char *endpoint)
{
    int rc = tdsx_registry_format(dir, endpoint, 0, b);
    if (rc)
        fail_msg("format %s: %s", dir, tdsx_err_name(rc));
}

static tdsx_registry_t *registry_of(const tdsx_buf_t *b)
{
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t e;
    int rc = tdsx_registry_parse(tdsx_buf_bytes(b), &r, &e);
    if (rc)
        fail_msg("registry line %u: %s", e.line, e.msg);
    return r;
}

static tdsx_tls_ctx_t *ctx_crl(const char *dir, const char *cert, const char *key,
                               const tdsx_trust_t *trust, const tdsx_registry_t *reg,
                               int require_crl)
{
    tdsx_tls_config_t cfg = {dir, cert, key, trust, reg};
    tdsx_tls_ctx_t *t = NULL;
    int rc = tdsx_tls_ctx_new(&cfg, &t);
    if (rc)
        fail_msg("ctx for %s: %s", dir, tdsx_err_name(rc));
    tdsx_tls_ctx_require_crl(t, require_crl);
    return t;
}

static tdsx_tls_ctx_t *ctx_for(const char *dir, const char *cert, const char *key,
                               const tdsx_trust_t *trust, const tdsx_registry_t *reg)
{
    return ctx_crl(dir, cert, key, trust, reg, 0);
}

static void id_of(const char *dir, char out[TDSX_ID_SIZE])
{
    char *path = tdsx_test_path(dir, TDSX_CRED_AUTH_CERT);
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    tdsx_identity_t id;
    tdsx_verify_opts_t o = {TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, 0, 0};
    X509 *leaf = sk_X509_shift(sk);
    char *chain_path = tdsx_test_path(dir, TDSX_CRED_CHAIN);
    STACK_OF(X509) *chain = NULL;
    assert_int_equal(tdsx_cert_load_file(chain_path, &chain), 0);
    while (sk_X509_num(chain) > 0)
        assert_true(sk_X509_push(sk, sk_X509_shift(chain)) > 0);
    sk_X509_free(chain);
    free(chain_path);
    assert_int_equal(tdsx_cert_verify(fx.trust, leaf, sk, &o, &id), 0);
    tdsx_identity_id(&id, out, TDSX_ID_SIZE);
    X509_free(leaf);
    sk_X509_pop_free(sk, X509_free);
    free(path);
}

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    fx.dir = tdsx_test_mkdtemp();
    fx.ca = tdsx_test_path(fx.dir, "ca");
    fx.foreign_ca = tdsx_test_path(fx.dir, "foreign-ca");
    tdsx_ca_init_opts_t io = {"山东省产业数据仓根CA", 1, 0, 0};
    assert_int_equal(tdsx_ca_init(fx.ca, &io), 0);
    tdsx_ca_init_opts_t fo = {"Some Other Root", 0, 0, 0};
    assert_int_equal(tdsx_ca_init(fx.foreign_ca, &fo), 0);

    char u_centre[19], u_brain[19], u_ent[19];
    make_uscc("12370000MB0000001", u_centre);
    make_uscc("91350100M000100Y4", u_brain);
    make_uscc("91370100MA0000002", u_ent);
    int64_t now = tdsx_now();
    tdsx_ca_t *ca = NULL, *foreign = NULL;
    assert_int_equal(tdsx_ca_open(fx.ca, &ca), 0);
    assert_int_equal(tdsx_ca_open(fx.foreign_ca, &foreign), 0);
    fx.centre =
        issue(ca, "centre", u_centre, "山东省产业大脑能力中心", "centre", TDSX_ROLE_CENTRE, 0, 0);
    fx.brain =
        issue(ca, "brain", u_brain, "钢铁行业产业大脑", "steel-brain", TDSX_ROLE_BRAIN, 0, 0);
    fx.ent = issue(ca, "ent", u_ent, "济南某机械有限公司", "ent-a", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx.revoked =
        issue(ca, "revoked", u_ent, "济南某机械有限公司", "ent-r", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx.outsider =
        issue(ca, "outsider", u_ent, "济南某机械有限公司", "ent-b", TDSX_ROLE_ENTERPRISE, 0, 0);
    fx.expired = issue(ca, "expired", u_ent, "济南某机械有限公司", "ent-x", TDSX_ROLE_ENTERPRISE,
                       now - 10 * 86400, 1);
    fx.notyet = issue(ca, "notyet", u_ent, "济南某机械有限公司", "ent-y", TDSX_ROLE_ENTERPRISE,
                      now + 2 * 86400, 30);
    fx.twin = issue(ca, "twin", u_brain, "钢铁行业产业大脑", "steel-brain", TDSX_ROLE_BRAIN, 0, 0);
    fx.foreign = issue(foreign, "foreign", u_brain, "钢铁行业产业大脑", "steel-brain",
                       TDSX_ROLE_BRAIN, 0, 0);

    /* Revoke one and publish the CRLs. */
    char *revoked_cert = tdsx_test_path(fx.revoked, TDSX_CRED_AUTH_CERT);
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(revoked_cert, &sk), 0);
    assert_int_equal(tdsx_ca_revoke(ca, sk_X509_value(sk, 0)), 0);
    sk_X509_pop_free(sk, X509_free);
    free(revoked_cert);
    fx.crl = tdsx_test_path(fx.dir, "crl.pem");
    assert_int_equal(tdsx_ca_crl(ca, 7, fx.crl, 0), 0);
    tdsx_ca_free(ca);
    tdsx_ca_free(foreign);

    char *root = tdsx_test_path(fx.centre, TDSX_CRED_ROOT);
    assert_int_equal(tdsx_trust_new(&fx.trust), 0);
    assert_int_equal(tdsx_trust_add_anchors_file(fx.trust, root), 0);
    assert_int_equal(tdsx_trust_new(&fx.trust_crl), 0);
    assert_int_equal(tdsx_trust_add_anchors_file(fx.trust_crl, root), 0);
    assert_int_equal(tdsx_trust_add_crls_file(fx.trust_crl, fx.crl), 0);
    free(root);

    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    append_line(&b, fx.brain, "10.0.0.2:7002");
    append_line(&b, fx.ent, "10.0.0.3:7003");
    append_line(&b, fx.revoked, "10.0.0.4:7004");
    fx.reg_no_centre = registry_of(&b);
    append_line(&b, fx.centre, "10.0.0.1:7001");
    fx.reg = registry_of(&b);
    /* The same members, but ent-a listed as a brain. */
    tdsx_buf_reset(&b);
    append_line(&b, fx.centre, "10.0.0.1:7001");
    append_line(&b, fx.ent, "10.0.0.3:7003");
    char *role = strstr((char *)b.p, " enterprise ");
    assert_non_null(role);
    tdsx_buf_t fixed;
    tdsx_buf_init(&fixed, 1u << 20);
    assert_int_equal(tdsx_buf_append(&fixed, b.p, (size_t)(role - (char *)b.p)), 0);
    assert_int_equal(tdsx_buf_append_str(&fixed, " brain "), 0);
    assert_int_equal(tdsx_buf_append_str(&fixed, role + strlen(" enterprise ")), 0);
    fx.reg_role = registry_of(&fixed);
    tdsx_buf_free(&fixed);
    tdsx_buf_free(&b);

    id_of(fx.centre, fx.centre_id);
    id_of(fx.brain, fx.brain_id);
    fx.server = ctx_for(fx.centre, NULL, NULL, fx.trust, fx.reg);
    fx.client = ctx_for(fx.brain, NULL, NULL, fx.trust, fx.reg);
    fx.log = tdsx_test_path(fx.dir, "log.jsonl");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_tls_ctx_free(fx.server);
    tdsx_tls_ctx_free(fx.client);
    tdsx_registry_free(fx.reg);
    tdsx_registry_free(fx.reg_role);
    tdsx_registry_free(fx.reg_no_centre);
    tdsx_trust_free(fx.trust);
    tdsx_trust_free(fx.trust_crl);
    char **paths[] = {&fx.ca,      &fx.foreign_ca, &fx.centre,  &fx.brain,  &fx.ent,
                      &fx.revoked, &fx.outsider,   &fx.expired, &fx.notyet, &fx.twin,
                      &fx.foreign, &fx.crl,        &fx.log};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        free(*paths[i]);
    tdsx_test_rmdir(fx.dir);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Two ends in memory: our engine, or a plain OpenSSL peer on memory BIOs
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    tdsx_tls_conn_t *tls;
    SSL_CTX *raw_ctx;
    SSL *raw;
    BIO *rin, *rout;
    int raw_alert_in; /* first alert the raw peer received, -1 none */
    int raw_failed;
} end_t;

static void raw_info(const SSL *ssl, int where, int ret)
{
    end_t *e = SSL_get_app_data(ssl);
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && e->raw_alert_in < 0 &&
        (ret & 0xff) != SSL_AD_CLOSE_NOTIFY)
        e->raw_alert_in = ret & 0xff;
}

static void raw_drive(end_t *e)
{
    ERR_clear_error();
    if (!SSL_is_init_finished(e->raw)) {
        int r = SSL_do_handshake(e->raw);
        int err = SSL_get_error(e->raw, r);
        if (r <= 0 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
            e->raw_failed = 1;
    }
    if (SSL_is_init_finished(e->raw) && !e->raw_failed) {
        char buf[4096];
        int r;
        while ((r = SSL_read(e->raw, buf, sizeof buf)) > 0)
            ;
        int err = SSL_get_error(e->raw, r);
        if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL)
            e->raw_failed = 1;
    }
    ERR_clear_error();
}

/* A plain OpenSSL peer. alpn: wire-format list or NULL; cred: credential dir or NULL. */
static end_t raw_end(int server, int max_version, const char *alpn, size_t alpn_len,
                     const char *cred)
{
    end_t e;
    memset(&e, 0, sizeof e);
    e.raw_alert_in = -1;
    e.raw_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    assert_non_null(e.raw_ctx);
    if (max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(e.raw_ctx, max_version), 1);
    if (cred) {
        char *cert = tdsx_test_path(cred, TDSX_CRED_AUTH_CERT);
        char *chain = tdsx_test_path(cred, TDSX_CRED_CHAIN);
        char *key = tdsx_test_path(cred, TDSX_CRED_AUTH_KEY);
        assert_int_equal(SSL_CTX_use_certificate_file(e.raw_ctx, cert, SSL_FILETYPE_PEM), 1);
        STACK_OF(X509) *sk = NULL;
        if (tdsx_cert_load_file(chain, &sk) == 0) {
            for (int i = 0; i < sk_X509_num(sk); i++)
                assert_int_equal(SSL_CTX_add1_chain_cert(e.raw_ctx, sk_X509_value(sk, i)), 1);
            sk_X509_pop_free(sk, X509_free);
        }
        ERR_clear_error();
        assert_int_equal(SSL_CTX_use_PrivateKey_file(e.raw_ctx, key, SSL_FILETYPE_PEM), 1);
        free(cert);
        free(chain);
        free(key);
    }
    if (!server && alpn)
        assert_int_equal(
            SSL_CTX_set_alpn_protos(e.raw_ctx, (const unsigned char *)alpn, (unsigned)alpn_len), 0);
    SSL_CTX_set_verify(e.raw_ctx, SSL_VERIFY_NONE, NULL);
    e.raw = SSL_new(e.raw_ctx);
    assert_non_null(e.raw);
    e.rin = BIO_new(BIO_s_mem());
    e.rout = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(e.rin, -1);
    SSL_set_bio(e.raw, e.rin, e.rout);
    if (server)
        SSL_set_accept_state(e.raw);
    else
        SSL_set_connect_state(e.raw);
    return e;
}

static end_t tls_end(tdsx_tls_ctx_t *ctx, tdsx_tls_side_t side, const char *expect)
{
    end_t e;
    memset(&e, 0, sizeof e);
    e.raw_alert_in = -1;
    assert_int_equal(tdsx_tls_conn_new(ctx, side, expect, &e.tls), 0);
    return e;
}

static void end_start(end_t *e)
{
    if (e->tls) {
        assert_int_equal(tdsx_tls_conn_handshake(e->tls), TDSX_E_AGAIN);
    } else {
        SSL_set_app_data(e->raw, e);
        SSL_set_info_callback(e->raw, raw_info);
        raw_drive(e);
    }
}

static void end_free(end_t *e)
{
    tdsx_tls_conn_free(e->tls);
    SSL_free(e->raw);
    SSL_CTX_free(e->raw_ctx);
}

/* Moves ciphertext from one end to the other; returns the number of bytes moved. */
static size_t move(end_t *from, end_t *to)
{
    size_t total = 0;
    uint8_t tmp[16384];
    for (;;) {
        size_t room = to->tls ? tdsx_tls_conn_room(to->tls) : sizeof tmp;
        size_t n = room < sizeof tmp ? room : sizeof tmp;
        if (n == 0)
            break;
        if (from->tls) {
            size_t len = 0;
            const uint8_t *p = tdsx_tls_conn_output(from->tls, &len);
            if (len == 0)
                break;
            n = len < n ? len : n;
            memcpy(tmp, p, n);
            tdsx_tls_conn_consume(from->tls, n);
        } else {
            int r = BIO_read(from->rout, tmp, (int)n);
            if (r <= 0)
                break;
            n = (size_t)r;
        }
        if (to->tls) {
            int rc = tdsx_tls_conn_feed(to->tls, tdsx_bytes(tmp, n));
            (void)rc; /* the state tells; tests check it */
        } else {
            assert_int_equal(BIO_write(to->rin, tmp, (int)n), (int)n);
            raw_drive(to);
        }
        total += n;
    }
    return total;
}

static void pump(end_t *a, end_t *b)
{
    for (int i = 0; i < 10000; i++)
        if (move(a, b) + move(b, a) == 0)
            return;
    fail_msg("pump did not settle");
}

static void connect_pair(end_t *c, end_t *s)
{
    end_start(c);
    if (!s->tls)
        end_start(s);
    pump(c, s);
}

static tdsx_tls_state_t st(const end_t *e)
{
    return tdsx_tls_conn_state(e->tls);
}

/* A refused client: the server fails with `want`, sends `alert`; the client fails too. */
static void expect_client_refused(tdsx_tls_ctx_t *client_ctx, tdsx_tls_ctx_t *server_ctx, int want,
                                  int alert)
{
    end_t c = tls_end(client_ctx, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(server_ctx, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    if (tdsx_tls_conn_error(s.tls) != want)
        fail_msg("server error %s (%s), want %s", tdsx_err_name(tdsx_tls_conn_error(s.tls)),
                 tdsx_tls_conn_detail(s.tls), tdsx_err_name(want));
    assert_int_equal(st(&s), TDSX_TLS_FAILED);
    assert_null(tdsx_tls_conn_peer(s.tls));
    assert_null(tdsx_tls_conn_peer_id(s.tls));
    assert_int_equal(tdsx_tls_conn_alert_sent(s.tls), alert);
    /* The client learns it from the alert. */
    assert_int_equal(st(&c), TDSX_TLS_FAILED);
    assert_int_equal(tdsx_tls_conn_alert_received(c.tls), alert);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_TLS_HANDSHAKE);
    end_free(&c);
    end_free(&s);
}

/* ------------------------------------------------------------------------------------------
 * Working connections
 * ---------------------------------------------------------------------------------------- */

static void mutual_handshake_gives_both_verified_identities(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, fx.centre_id);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    assert_int_equal(st(&c), TDSX_TLS_HANDSHAKING);
    assert_null(tdsx_tls_conn_peer(c.tls));
    size_t dummy;
    assert_int_equal(tdsx_tls_conn_write(c.tls, "x", 1, &dummy), TDSX_E_AGAIN);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_handshake(c.tls), 0);
    assert_int_equal(tdsx_tls_conn_handshake(s.tls), 0);
    assert_int_equal(st(&c), TDSX_TLS_OPEN);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);

    const tdsx_identity_t *cp = tdsx_tls_conn_peer(c.tls);
    const tdsx_identity_t *sp = tdsx_tls_conn_peer(s.tls);
    assert_non_null(cp);
    assert_non_null(sp);
    assert_string_equal(tdsx_tls_conn_peer_id(c.tls), fx.centre_id);
    assert_string_equal(tdsx_tls_conn_peer_id(s.tls), fx.brain_id);
    assert_int_equal(cp->role, TDSX_ROLE_CENTRE);
    assert_int_equal(sp->role, TDSX_ROLE_BRAIN);
    assert_string_equal(sp->node, "steel-brain");
    assert_string_equal(sp->org, "钢铁行业产业大脑");
    /* Each side pinned what the registry says. */
    assert_memory_equal(sp->fingerprint, tdsx_registry_find(fx.reg, fx.brain_id)->auth_fp, 32);
    assert_memory_equal(cp->fingerprint, tdsx_registry_find(fx.reg, fx.centre_id)->auth_fp, 32);
    assert_int_equal(tdsx_tls_conn_alert_received(c.tls), -1);
    assert_int_equal(tdsx_tls_conn_alert_sent(s.tls), -1);
    assert_int_equal(tdsx_tls_conn_error(c.tls), 0);
    end_free(&c);
    end_free(&s);
}

/* Sends n bytes from one end and reads them at the other, pumping as buffers fill. */
static void transfer(end_t *from, end_t *to, const uint8_t *data, size_t n, uint8_t *out)
{
    size_t sent = 0, got = 0;
    int writes = 0;
    for (int guard = 0; got < n; guard++) {
        assert_true(guard < 100000);
        if (sent < n) {
            size_t w = 0;
            int rc = tdsx_tls_conn_write(from->tls, data + sent, n - sent, &w);
            assert_true(rc == 0 || rc == TDSX_E_AGAIN);
            sent += w;
            writes += w > 0;
        }
        pump(from, to);
        for (;;) {
            size_t r = 0;
            if (got == n)
                break;
            int rc = tdsx_tls_conn_read(to->tls, out + got, n - got, &r);
            if (rc == TDSX_E_AGAIN)
                break;
            assert_int_equal(rc, 0);
            assert_true(r > 0);
            got += r;
        }
    }
    /* 100 KiB cannot fit the 64 KiB output buffer in one go. */
    assert_true(writes > 1);
}

static void data_flows_both_ways_across_many_records(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&c), TDSX_TLS_OPEN);
    size_t n = 100 * 1024;
    uint8_t *up = malloc(n), *down = malloc(n), *got = malloc(n);
    assert_non_null(up);
    assert_non_null(down);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++) {
        up[i] = (uint8_t)(i * 7 + 3);
        down[i] = (uint8_t)(i * 13 + 1);
    }
    transfer(&c, &s, up, n, got);
    assert_memory_equal(got, up, n);
    memset(got, 0, n);
    transfer(&s, &c, down, n, got);
    assert_memory_equal(got, down, n);
    /* Nothing more is pending on either side. */
    size_t r;
    assert_int_equal(tdsx_tls_conn_read(s.tls, got, n, &r), TDSX_E_AGAIN);
    assert_int_equal(tdsx_tls_conn_read(c.tls, got, n, &r), TDSX_E_AGAIN);
    assert_int_equal(r, 0);
    free(up);
    free(down);
    free(got);
    end_free(&c);
    end_free(&s);
}

/* The plaintext buffer is taken only while decrypted bytes wait for the application: running
 * out of memory then fails that connection with TDSX_E_NOMEM (never a silent drop), and the
 * connection goes on holding nothing once they are read. */
static void plaintext_buffer_failure_fails_the_connection(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    uint8_t buf[16];
    size_t w = 0, r = 0;
    /* Works, then (the buffer released) works again. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tdsx_tls_conn_write(c.tls, "hello", 5, &w), 0);
        pump(&c, &s);
        assert_int_equal(tdsx_tls_conn_read(s.tls, buf, sizeof buf, &r), 0);
        assert_int_equal(r, 5);
        assert_memory_equal(buf, "hello", 5);
    }
    assert_int_equal(tdsx_tls_conn_write(c.tls, "again", 5, &w), 0);
    tdsx_test_alloc_fail_after(1);
    (void)move(&c, &s);
    tdsx_test_alloc_reset();
    assert_int_equal(tdsx_tls_conn_read(s.tls, buf, sizeof buf, &r), TDSX_E_NOMEM);
    assert_int_equal(r, 0);
    assert_int_equal(st(&s), TDSX_TLS_FAILED);
    end_free(&c);
    end_free(&s);
}

static void close_notify_is_observed_and_answered(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    size_t w = 0;
    assert_int_equal(tdsx_tls_conn_write(c.tls, "bye", 3, &w), 0);
    assert_int_equal(w, 3);
    assert_int_equal(tdsx_tls_conn_close(c.tls), 0);
    assert_int_equal(st(&c), TDSX_TLS_CLOSING);
    assert_int_equal(tdsx_tls_conn_write(c.tls, "more", 4, &w), TDSX_E_CLOSED);
    assert_int_equal(w, 0);
    pump(&c, &s);

    /* The server reads what came before close_notify, then sees the close. */
    char buf[16];
    size_t r = 0;
    assert_int_equal(tdsx_tls_conn_read(s.tls, buf, sizeof buf, &r), 0);
    assert_int_equal(r, 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(tdsx_tls_conn_read(s.tls, buf, sizeof buf, &r), TDSX_E_CLOSED);
    assert_int_equal(st(&s), TDSX_TLS_CLOSED);
    assert_int_equal(tdsx_tls_conn_write(s.tls, "late", 4, &w), TDSX_E_CLOSED);
    size_t one = 1;
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes("x", one)), TDSX_E_CLOSED);
    /* ... and answered it, so the client is fully closed too, cleanly. */
    assert_int_equal(st(&c), TDSX_TLS_CLOSED);
    assert_int_equal(tdsx_tls_conn_read(c.tls, buf, sizeof buf, &r), TDSX_E_CLOSED);
    assert_int_equal(tdsx_tls_conn_error(c.tls), 0);
    assert_int_equal(tdsx_tls_conn_error(s.tls), 0);
    assert_int_equal(tdsx_tls_conn_alert_received(c.tls), -1);
    assert_int_equal(tdsx_tls_conn_handshake(c.tls), 0);
    assert_string_equal(tdsx_tls_conn_peer_id(s.tls), fx.brain_id);
    end_free(&c);
    end_free(&s);
}

static void peer_hanging_up_after_our_close_notify_is_clean(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_close(c.tls), 0);
    assert_int_equal(tdsx_tls_conn_feed_eof(c.tls), 0);
    assert_int_equal(st(&c), TDSX_TLS_CLOSED);
    assert_int_equal(tdsx_tls_conn_error(c.tls), 0);
    end_free(&c);
    end_free(&s);
}

static void peer_data_sent_before_it_saw_our_close_is_delivered(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_close(c.tls), 0);
    size_t w = 0;
    assert_int_equal(tdsx_tls_conn_write(s.tls, "last words", 10, &w), 0);
    pump(&c, &s);
    char buf[32];
    size_t r = 0;
    assert_int_equal(tdsx_tls_conn_read(c.tls, buf, sizeof buf, &r), 0);
    assert_int_equal(r, 10);
    assert_memory_equal(buf, "last words", 10);
    assert_int_equal(tdsx_tls_conn_read(c.tls, buf, sizeof buf, &r), TDSX_E_CLOSED);
    assert_int_equal(st(&c), TDSX_TLS_CLOSED);
    assert_int_equal(st(&s), TDSX_TLS_CLOSED);
    end_free(&c);
    end_free(&s);
}

static int session_resumable(end_t *raw_client)
{
    SSL_SESSION *sess = SSL_get1_session(raw_client->raw);
    int yes = sess && SSL_SESSION_is_resumable(sess);
    SSL_SESSION_free(sess);
    return yes;
}

static void no_session_ticket_is_ever_issued(void **state)
{
    (void)state;
    end_t c = raw_end(0, 0, "\x06tdsx/1", 7, fx.brain);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    size_t w = 0;
    assert_int_equal(tdsx_tls_conn_write(s.tls, "x", 1, &w), 0);
    pump(&c, &s);
    assert_false(session_resumable(&c));
    end_free(&c);
    end_free(&s);

    /* Control: a stock OpenSSL server does hand out tickets, and the check sees them. */
    c = raw_end(0, 0, "\x06tdsx/1", 7, fx.brain);
    end_t rs = raw_end(1, 0, NULL, 0, fx.centre);
    connect_pair(&c, &rs);
    assert_true(SSL_is_init_finished(rs.raw));
    assert_true(session_resumable(&c));
    end_free(&c);
    end_free(&rs);
}

static void a_peer_that_does_not_read_cannot_grow_memory(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    size_t n = 1024 * 1024, sent = 0;
    uint8_t *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i ^ (i >> 8));
    /* The server application never reads: everything backs up to the client. */
    for (int i = 0; i < 1000 && sent < n; i++) {
        size_t w = 0;
        int rc = tdsx_tls_conn_write(c.tls, data + sent, n - sent, &w);
        sent += w;
        pump(&c, &s);
        if (rc == TDSX_E_AGAIN)
            break;
    }
    size_t w = 0;
    assert_int_equal(tdsx_tls_conn_write(c.tls, data + sent, n - sent, &w), TDSX_E_AGAIN);
    /* The three buffers, plus the one record OpenSSL may hold while it is being read. */
    assert_true(sent <= TDSX_TLS_PLAIN_CAP + TDSX_TLS_IN_CAP + TDSX_TLS_OUT_CAP + 16384);
    assert_true(sent > TDSX_TLS_PLAIN_CAP);
    assert_int_equal(tdsx_tls_conn_room(s.tls), 0);
    uint8_t b = 0;
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(&b, 1)), TDSX_E_TOOBIG);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);

    /* Reading releases it all, intact. */
    uint8_t *got = malloc(n);
    assert_non_null(got);
    size_t have = 0;
    for (int guard = 0; have < sent; guard++) {
        assert_true(guard < 100000);
        size_t r = 0;
        int rc = tdsx_tls_conn_read(s.tls, got + have, sent - have, &r);
        assert_true(rc == 0 || rc == TDSX_E_AGAIN);
        have += r;
        pump(&c, &s);
    }
    assert_memory_equal(got, data, sent);
    free(got);
    free(data);
    end_free(&c);
    end_free(&s);
}

/* ------------------------------------------------------------------------------------------
 * Refused certificates: the server names the reason, the client gets the alert
 * ---------------------------------------------------------------------------------------- */

static void client_from_a_foreign_ca_is_untrusted(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.foreign, NULL, NULL, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_CERT_UNTRUSTED, SSL_AD_UNKNOWN_CA);
    tdsx_tls_ctx_free(c);
}

static void revoked_client_is_refused_once_the_crl_is_loaded(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.revoked, NULL, NULL, fx.trust, fx.reg);
    /* Without the CRL the certificate is still good: the CRL is what refuses it. */
    end_t ce = tls_end(c, TDSX_TLS_CLIENT, NULL);
    end_t se = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&ce, &se);
    assert_int_equal(st(&se), TDSX_TLS_OPEN);
    end_free(&ce);
    end_free(&se);

    tdsx_tls_ctx_t *s = ctx_for(fx.centre, NULL, NULL, fx.trust_crl, fx.reg);
    FILE *log = fopen(fx.log, "w+");
    assert_non_null(log);
    tdsx_log_set_output(log);
    tdsx_log_set_level(TDSX_LOG_WARN);
    expect_client_refused(c, s, TDSX_E_CERT_REVOKED, SSL_AD_CERTIFICATE_REVOKED);
    tdsx_log_set_level(TDSX_LOG_OFF);
    tdsx_log_set_output(NULL);
    fclose(log);

    /* The refusal is logged with its reason and the certificate's fingerprint. */
    uint8_t *text;
    size_t len;
    assert_int_equal(tdsx_file_read(fx.log, 1u << 20, &text, &len), 0);
    const char *line = strstr((char *)text, "TDSX_E_CERT_REVOKED");
    assert_non_null(line);
    assert_non_null(strstr((char *)text, "\"side\":\"server\""));
    char *cert = tdsx_test_path(fx.revoked, TDSX_CRED_AUTH_CERT);
    STACK_OF(X509) *sk = NULL;
    uint8_t fp[32];
    char hex[65];
    assert_int_equal(tdsx_cert_load_file(cert, &sk), 0);
    assert_int_equal(tdsx_cert_fingerprint(sk_X509_value(sk, 0), fp), 0);
    tdsx_hex_encode(hex, fp, 32);
    assert_non_null(strstr((char *)text, hex));
    sk_X509_pop_free(sk, X509_free);
    free(cert);
    tdsx_free(text);
    tdsx_tls_ctx_free(s);
    tdsx_tls_ctx_free(c);
}

static void missing_crl_is_refused_when_required(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *strict = ctx_crl(fx.centre, NULL, NULL, fx.trust, fx.reg, 1);
    expect_client_refused(fx.client, strict, TDSX_E_CRL_MISSING, SSL_AD_UNKNOWN_CA);
    tdsx_tls_ctx_free(strict);
    /* With the CRLs loaded the same strict server accepts a member in good standing. */
    strict = ctx_crl(fx.centre, NULL, NULL, fx.trust_crl, fx.reg, 1);
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(strict, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    assert_string_equal(tdsx_tls_conn_peer_id(s.tls), fx.brain_id);
    end_free(&c);
    end_free(&s);
    tdsx_tls_ctx_free(strict);
}

static void expired_client_is_refused(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.expired, NULL, NULL, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_CERT_EXPIRED, SSL_AD_CERTIFICATE_EXPIRED);
    tdsx_tls_ctx_free(c);
}

static void not_yet_valid_client_is_refused(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.notyet, NULL, NULL, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_CERT_NOT_YET_VALID, SSL_AD_BAD_CERTIFICATE);
    tdsx_tls_ctx_free(c);
}

static void sign_certificate_is_not_a_tls_certificate(void **state)
{
    (void)state;
    char *cert = tdsx_test_path(fx.brain, TDSX_CRED_SIGN_CERT);
    char *key = tdsx_test_path(fx.brain, TDSX_CRED_SIGN_KEY);
    tdsx_tls_ctx_t *c = ctx_for(fx.brain, cert, key, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_CERT_PURPOSE, SSL_AD_UNSUPPORTED_CERTIFICATE);
    tdsx_tls_ctx_free(c);
    free(cert);
    free(key);
}

static void client_missing_from_the_registry_is_unknown(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.outsider, NULL, NULL, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_PEER_UNKNOWN, SSL_AD_HANDSHAKE_FAILURE);
    tdsx_tls_ctx_free(c);
}

static void client_with_another_certificate_for_its_name_is_refused(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.twin, NULL, NULL, fx.trust, fx.reg);
    expect_client_refused(c, fx.server, TDSX_E_CERT_FINGERPRINT, SSL_AD_BAD_CERTIFICATE);
    tdsx_tls_ctx_free(c);
}

static void client_registered_under_another_role_is_refused(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *c = ctx_for(fx.ent, NULL, NULL, fx.trust, fx.reg);
    tdsx_tls_ctx_t *s = ctx_for(fx.centre, NULL, NULL, fx.trust, fx.reg_role);
    expect_client_refused(c, s, TDSX_E_CERT_ROLE, SSL_AD_BAD_CERTIFICATE);
    tdsx_tls_ctx_free(s);
    tdsx_tls_ctx_free(c);
}

static void client_without_a_certificate_is_refused(void **state)
{
    (void)state;
    end_t c = raw_end(0, 0, "\x06tdsx/1", 7, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_FAILED);
    assert_int_equal(tdsx_tls_conn_error(s.tls), TDSX_E_PEER_CERT);
    assert_int_equal(tdsx_tls_conn_alert_sent(s.tls), SSL_AD_CERTIFICATE_REQUIRED);
    assert_int_equal(c.raw_alert_in, SSL_AD_CERTIFICATE_REQUIRED);
    end_free(&c);
    end_free(&s);
}

/* The client checks the server just as strictly. */
static void server_missing_from_the_client_registry_is_refused(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *cc = ctx_for(fx.brain, NULL, NULL, fx.trust, fx.reg_no_centre);
    end_t c = tls_end(cc, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_PEER_UNKNOWN);
    assert_int_equal(tdsx_tls_conn_alert_sent(c.tls), SSL_AD_HANDSHAKE_FAILURE);
    assert_int_equal(tdsx_tls_conn_alert_received(s.tls), SSL_AD_HANDSHAKE_FAILURE);
    assert_int_equal(tdsx_tls_conn_error(s.tls), TDSX_E_TLS_HANDSHAKE);
    assert_null(tdsx_tls_conn_peer(s.tls));
    end_free(&c);
    end_free(&s);
    tdsx_tls_ctx_free(cc);
}

static void server_other_than_the_expected_member_is_refused(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, fx.brain_id);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_PEER_CERT);
    assert_non_null(strstr(tdsx_tls_conn_detail(c.tls), fx.brain_id));
    assert_int_equal(st(&s), TDSX_TLS_FAILED);
    end_free(&c);
    end_free(&s);
}

static void server_with_a_sign_certificate_is_refused(void **state)
{
    (void)state;
    char *cert = tdsx_test_path(fx.centre, TDSX_CRED_SIGN_CERT);
    char *key = tdsx_test_path(fx.centre, TDSX_CRED_SIGN_KEY);
    tdsx_tls_ctx_t *sc = ctx_for(fx.centre, cert, key, fx.trust, fx.reg);
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(sc, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_CERT_PURPOSE);
    assert_int_equal(tdsx_tls_conn_alert_received(s.tls), SSL_AD_UNSUPPORTED_CERTIFICATE);
    end_free(&c);
    end_free(&s);
    tdsx_tls_ctx_free(sc);
    free(cert);
    free(key);
}

/* ------------------------------------------------------------------------------------------
 * Protocol: ALPN, versions
 * ---------------------------------------------------------------------------------------- */

static void server_without_alpn_is_refused_by_the_client(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = raw_end(1, 0, NULL, 0, fx.centre);
    connect_pair(&c, &s);
    assert_int_equal(st(&c), TDSX_TLS_FAILED);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_TLS_ALPN);
    assert_null(tdsx_tls_conn_peer(c.tls));
    /* The raw server was told, and never finished its handshake. */
    assert_int_equal(s.raw_alert_in, SSL_AD_HANDSHAKE_FAILURE);
    assert_false(SSL_is_init_finished(s.raw));
    end_free(&c);
    end_free(&s);
}

static void client_without_alpn_is_refused_by_the_server(void **state)
{
    (void)state;
    end_t c = raw_end(0, 0, NULL, 0, fx.brain);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(s.tls), TDSX_E_TLS_ALPN);
    assert_int_equal(c.raw_alert_in, SSL_AD_NO_APPLICATION_PROTOCOL);
    assert_true(c.raw_failed);
    end_free(&c);
    end_free(&s);
}

static void client_offering_other_protocols_is_refused(void **state)
{
    (void)state;
    end_t c = raw_end(0, 0, "\x02h2\x08http/1.1\x06tdsx/2", 19, fx.brain);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(s.tls), TDSX_E_TLS_ALPN);
    assert_int_equal(c.raw_alert_in, SSL_AD_NO_APPLICATION_PROTOCOL);
    end_free(&c);
    end_free(&s);
}

static void raw_client_with_alpn_and_certificate_is_accepted(void **state)
{
    (void)state;
    /* Control for the raw-peer tests: the same peer with everything right gets in. */
    end_t c = raw_end(0, 0, "\x02h2\x06tdsx/1", 10, fx.brain);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    assert_string_equal(tdsx_tls_conn_peer_id(s.tls), fx.brain_id);
    assert_false(c.raw_failed);
    end_free(&c);
    end_free(&s);
}

static void tls12_only_client_is_refused(void **state)
{
    (void)state;
    end_t c = raw_end(0, TLS1_2_VERSION, "\x06tdsx/1", 7, fx.brain);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_error(s.tls), TDSX_E_TLS_VERSION);
    assert_int_equal(c.raw_alert_in, SSL_AD_PROTOCOL_VERSION);
    end_free(&c);
    end_free(&s);
}

static void tls12_only_server_is_refused(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = raw_end(1, TLS1_2_VERSION, NULL, 0, fx.centre);
    connect_pair(&c, &s);
    /* It cannot pick any version our ClientHello offers, and says so. */
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_TLS_VERSION);
    assert_int_equal(tdsx_tls_conn_alert_received(c.tls), SSL_AD_PROTOCOL_VERSION);
    assert_true(s.raw_failed);
    assert_false(SSL_is_init_finished(s.raw));
    end_free(&c);
    end_free(&s);
}

/* ------------------------------------------------------------------------------------------
 * Hostile bytes, caps, truncation
 * ---------------------------------------------------------------------------------------- */

static void expect_sticky(tdsx_tls_conn_t *t, int err)
{
    assert_int_equal(tdsx_tls_conn_state(t), TDSX_TLS_FAILED);
    assert_int_equal(tdsx_tls_conn_error(t), err);
    char buf[8];
    size_t n = 99;
    assert_int_equal(tdsx_tls_conn_read(t, buf, sizeof buf, &n), err);
    assert_int_equal(n, 0);
    assert_int_equal(tdsx_tls_conn_write(t, "x", 1, &n), err);
    assert_int_equal(n, 0);
    assert_int_equal(tdsx_tls_conn_feed(t, tdsx_bytes("\x17\x03\x03\x00\x01", 5)), err);
    assert_int_equal(tdsx_tls_conn_handshake(t), err);
    assert_int_equal(tdsx_tls_conn_close(t), err);
    assert_int_equal(tdsx_tls_conn_feed_eof(t), err);
    assert_int_equal(tdsx_tls_conn_room(t), 0);
    assert_null(tdsx_tls_conn_peer(t));
    assert_true(strlen(tdsx_tls_conn_detail(t)) > 0);
}

static void corrupted_record_is_fatal_and_sticky(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    size_t w = 0;
    assert_int_equal(tdsx_tls_conn_write(c.tls, "attack at dawn", 14, &w), 0);
    uint8_t rec[512];
    size_t len = 0, part;
    const uint8_t *p;
    while ((p = tdsx_tls_conn_output(c.tls, &part)) != NULL) {
        assert_true(len + part <= sizeof rec);
        memcpy(rec + len, p, part);
        len += part;
        tdsx_tls_conn_consume(c.tls, part);
    }
    assert_true(len > 14);
    rec[len / 2] ^= 0x01; /* one bit, in flight */
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(rec, len)), TDSX_E_TLS);
    assert_int_equal(tdsx_tls_conn_alert_sent(s.tls), SSL_AD_BAD_RECORD_MAC);
    expect_sticky(s.tls, TDSX_E_TLS);
    /* The alert still goes out, and the client fails on it. */
    pump(&c, &s);
    assert_int_equal(st(&c), TDSX_TLS_FAILED);
    assert_int_equal(tdsx_tls_conn_error(c.tls), TDSX_E_TLS);
    assert_int_equal(tdsx_tls_conn_alert_received(c.tls), SSL_AD_BAD_RECORD_MAC);
    end_free(&c);
    end_free(&s);
}

static void garbage_instead_of_a_client_hello_is_fatal(void **state)
{
    (void)state;
    static const char http[] = "GET / HTTP/1.1\r\nHost: centre\r\n\r\n";
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(http, sizeof http - 1)),
                     TDSX_E_TLS_HANDSHAKE);
    expect_sticky(s.tls, TDSX_E_TLS_HANDSHAKE);
    end_free(&s);

    /* A handshake record header announcing more than a record may hold (RFC 8446 §5.1). */
    static const uint8_t huge[] = {0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00};
    s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(huge, sizeof huge)),
                     TDSX_E_TLS_HANDSHAKE);
    expect_sticky(s.tls, TDSX_E_TLS_HANDSHAKE);
    end_free(&s);

    /* And a client fed garbage instead of a ServerHello. */
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    assert_int_equal(tdsx_tls_conn_handshake(c.tls), TDSX_E_AGAIN);
    uint8_t noise[300];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(tdsx_tls_conn_feed(c.tls, tdsx_bytes(noise, sizeof noise)),
                     TDSX_E_TLS_HANDSHAKE);
    expect_sticky(c.tls, TDSX_E_TLS_HANDSHAKE);
    end_free(&c);
}

static void input_beyond_the_cap_is_refused_without_harm(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    assert_int_equal(tdsx_tls_conn_room(s.tls), TDSX_TLS_IN_CAP);
    size_t n = TDSX_TLS_IN_CAP + 1;
    uint8_t *big = calloc(1, n);
    assert_non_null(big);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(big, n)), TDSX_E_TOOBIG);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(big, SIZE_MAX)), TDSX_E_TOOBIG);
    free(big);
    /* Nothing was taken, nothing broke: a real handshake still works. */
    assert_int_equal(st(&s), TDSX_TLS_HANDSHAKING);
    assert_int_equal(tdsx_tls_conn_error(s.tls), 0);
    connect_pair(&c, &s);
    assert_int_equal(st(&s), TDSX_TLS_OPEN);
    assert_int_equal(st(&c), TDSX_TLS_OPEN);
    end_free(&c);
    end_free(&s);
}

static void end_of_file_without_close_notify_is_truncation(void **state)
{
    (void)state;
    end_t c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    end_t s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    connect_pair(&c, &s);
    assert_int_equal(tdsx_tls_conn_feed_eof(s.tls), TDSX_E_TLS);
    assert_non_null(strstr(tdsx_tls_conn_detail(s.tls), "close_notify"));
    expect_sticky(s.tls, TDSX_E_TLS);
    end_free(&c);
    end_free(&s);

    /* During the handshake: half a ClientHello, then the transport ends. */
    c = tls_end(fx.client, TDSX_TLS_CLIENT, NULL);
    s = tls_end(fx.server, TDSX_TLS_SERVER, NULL);
    assert_int_equal(tdsx_tls_conn_handshake(c.tls), TDSX_E_AGAIN);
    size_t len = 0;
    const uint8_t *p = tdsx_tls_conn_output(c.tls, &len);
    assert_true(len > 10);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(p, len / 2)), 0);
    assert_int_equal(st(&s), TDSX_TLS_HANDSHAKING);
    assert_int_equal(tdsx_tls_conn_feed_eof(s.tls), TDSX_E_TLS_HANDSHAKE);
    assert_int_equal(tdsx_tls_conn_feed(s.tls, tdsx_bytes(p, 1)), TDSX_E_TLS_HANDSHAKE);
    end_free(&c);
    end_free(&s);
}

/* ------------------------------------------------------------------------------------------
 * Construction
 * ---------------------------------------------------------------------------------------- */

static void context_refuses_bad_configuration(void **state)
{
    (void)state;
    tdsx_tls_ctx_t *t = (tdsx_tls_ctx_t *)1;
    tdsx_tls_config_t cfg = {fx.brain, NULL, NULL, NULL, fx.reg};
    assert_int_equal(tdsx_tls_ctx_new(&cfg, &t), TDSX_E_INVAL);
    assert_null(t);
    cfg.trust = fx.trust;
    cfg.registry = NULL;
    assert_int_equal(tdsx_tls_ctx_new(&cfg, &t), TDSX_E_INVAL);
    cfg.registry = fx.reg;

    /* A key readable by others is refused. */
    char *dir = tdsx_test_path(fx.dir, "loose");
    assert_int_equal(mkdir(dir, 0700), 0);
    static const char *const files[] = {TDSX_CRED_AUTH_CERT, TDSX_CRED_CHAIN, TDSX_CRED_AUTH_KEY};
    for (size_t i = 0; i < 3; i++) {
        char *from = tdsx_test_path(fx.brain, files[i]);
        char *to = tdsx_test_path(dir, files[i]);
        uint8_t *data;
        size_t len;
        assert_int_equal(tdsx_file_read(from, 1u << 20, &data, &len), 0);
        tdsx_test_write_file(to, data, len);
        tdsx_free(data);
        free(from);
        free(to);
    }
    cfg.cred_dir = dir;
    char *key = tdsx_test_path(dir, TDSX_CRED_AUTH_KEY);
    assert_int_equal(chmod(key, 0600), 0);
    t = ctx_for(dir, NULL, NULL, fx.trust, fx.reg); /* 0600: fine */
    tdsx_tls_ctx_free(t);
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(tdsx_tls_ctx_new(&cfg, &t), TDSX_E_PERM);
    assert_null(t);

    /* A key that is not the certificate's. */
    char *other_key = tdsx_test_path(fx.centre, TDSX_CRED_AUTH_KEY);
    cfg.key_file = other_key;
    assert_int_equal(tdsx_tls_ctx_new(&cfg, &t), TDSX_E_CONFIG);
    assert_null(t);

    /* Missing files. */
    char *nowhere = tdsx_test_path(fx.dir, "nowhere");
    tdsx_tls_config_t none = {nowhere, NULL, NULL, fx.trust, fx.reg};
    assert_int_equal(tdsx_tls_ctx_new(&none, &t), TDSX_E_NOTFOUND);
    assert_null(t);

    free(nowhere);
    free(other_key);
    free(key);
    free(dir);
}

static void connection_arguments_and_allocation_failures(void **state)
{
    (void)state;
    tdsx_tls_conn_t *c = (tdsx_tls_conn_t *)1;
    assert_int_equal(tdsx_tls_conn_new(NULL, TDSX_TLS_CLIENT, NULL, &c), TDSX_E_INVAL);
    assert_null(c);
    assert_int_equal(tdsx_tls_conn_new(fx.server, (tdsx_tls_side_t)7, NULL, &c), TDSX_E_INVAL);
    assert_int_equal(tdsx_tls_conn_new(fx.server, TDSX_TLS_SERVER, fx.brain_id, &c), TDSX_E_INVAL);
    assert_int_equal(tdsx_tls_conn_new(fx.client, TDSX_TLS_CLIENT, "", &c), TDSX_E_INVAL);
    /* One allocation of ours (the plaintext buffer comes later, only while it holds data). */
    for (unsigned long n = 1; n <= 1; n++) {
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_tls_conn_new(fx.client, TDSX_TLS_CLIENT, NULL, &c);
        tdsx_test_alloc_reset();
        assert_int_equal(rc, TDSX_E_NOMEM);
        assert_null(c);
    }
    /* Closing before the handshake sends nothing and ends the connection. */
    assert_int_equal(tdsx_tls_conn_new(fx.client, TDSX_TLS_CLIENT, NULL, &c), 0);
    assert_int_equal(tdsx_tls_conn_close(c), 0);
    assert_int_equal(tdsx_tls_conn_state(c), TDSX_TLS_CLOSED);
    assert_int_equal(tdsx_tls_conn_handshake(c), TDSX_E_CLOSED);
    size_t len = 1;
    assert_null(tdsx_tls_conn_output(c, &len));
    assert_int_equal(len, 0);
    assert_string_equal(tdsx_tls_state_name(tdsx_tls_conn_state(c)), "closed");
    tdsx_tls_conn_free(c);
    tdsx_tls_conn_free(NULL);
    tdsx_tls_ctx_free(NULL);
}

int main(void)
{
    tdsx_log_set_level(TDSX_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mutual_handshake_gives_both_verified_identities),
        cmocka_unit_test(data_flows_both_ways_across_many_records),
        cmocka_unit_test(plaintext_buffer_failure_fails_the_connection),
        cmocka_unit_test(close_notify_is_observed_and_answered),
        cmocka_unit_test(peer_hanging_up_after_our_close_notify_is_clean),
        cmocka_unit_test(peer_data_sent_before_it_saw_our_close_is_delivered),
        cmocka_unit_test(no_session_ticket_is_ever_issued),
        cmocka_unit_test(a_peer_that_does_not_read_cannot_grow_memory),
        cmocka_unit_test(raw_client_with_alpn_and_certificate_is_accepted),
        cmocka_unit_test(client_from_a_foreign_ca_is_untrusted),
        cmocka_unit_test(revoked_client_is_refused_once_the_crl_is_loaded),
        cmocka_unit_test(missing_crl_is_refused_when_required),
        cmocka_unit_test(expired_client_is_refused),
        cmocka_unit_test(not_yet_valid_client_is_refused),
        cmocka_unit_test(sign_certificate_is_not_a_tls_certificate),
        cmocka_unit_test(client_missing_from_the_registry_is_unknown),
        cmocka_unit_test(client_with_another_certificate_for_its_name_is_refused),
        cmocka_unit_test(client_registered_under_another_role_is_refused),
        cmocka_unit_test(client_without_a_certificate_is_refused),
        cmocka_unit_test(server_missing_from_the_client_registry_is_refused),
        cmocka_unit_test(server_other_than_the_expected_member_is_refused),
        cmocka_unit_test(server_with_a_sign_certificate_is_refused),
        cmocka_unit_test(server_without_alpn_is_refused_by_the_client),
        cmocka_unit_test(client_without_alpn_is_refused_by_the_server),
        cmocka_unit_test(client_offering_other_protocols_is_refused),
        cmocka_unit_test(tls12_only_client_is_refused),
        cmocka_unit_test(tls12_only_server_is_refused),
        cmocka_unit_test(corrupted_record_is_fatal_and_sticky),
        cmocka_unit_test(garbage_instead_of_a_client_hello_is_fatal),
        cmocka_unit_test(input_beyond_the_cap_is_refused_without_harm),
        cmocka_unit_test(end_of_file_without_close_notify_is_truncation),
        cmocka_unit_test(context_refuses_bad_configuration),
        cmocka_unit_test(connection_arguments_and_allocation_failures),
    };
    return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
