/*
 * Integration tests: real tdsxd processes on loopback, real mutual TLS. Each refusal must be
 * logged by the daemon with its own error code and end with the connection closed.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, brain;
    tdsx_test_node_t ent, revoked, expired, foreign, stranger, liar;
} world_t;

static world_t W;

static void append_registry_line(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(line, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.revoked, "revoked", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    /* Valid 400..370 days ago: registered while valid, expired now. */
    tdsx_test_node_issue(p, &W.expired, "expired", TDSX_ROLE_ENTERPRISE,
                         (int64_t)time(NULL) - 400 * 86400, 30, 1, 0);
    tdsx_test_node_issue(p, &W.foreign, "foreign", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 1);
    tdsx_test_node_issue(p, &W.stranger, "stranger", TDSX_ROLE_ENTERPRISE, 0, 0, 0, 0);
    /* A valid enterprise the registry lists as a centre: the role check must catch it. */
    tdsx_test_node_issue(p, &W.liar, "liar", TDSX_ROLE_ENTERPRISE, 0, 0, 0, 0);
    tdsx_buf_t line;
    tdsx_buf_init(&line, 4096);
    assert_int_equal(tdsx_registry_format(W.liar.creds, "127.0.0.1:9", 0, &line), 0);
    char *role = strstr((char *)line.p, " enterprise ");
    assert_non_null(role);
    char fixed[2048];
    snprintf(fixed, sizeof fixed, "%.*s centre %s", (int)(role - (char *)line.p), (char *)line.p,
             role + strlen(" enterprise "));
    append_registry_line(p->registry, fixed);
    tdsx_buf_free(&line);

    /* Revoke one enterprise's auth certificate and publish the CRL to the centre. */
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(p->ca, &ca), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/auth.pem", W.revoked.creds);
    STACK_OF(X509) *sk = NULL;
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    assert_int_equal(tdsx_ca_revoke(ca, sk_X509_value(sk, 0)), 0);
    sk_X509_pop_free(sk, X509_free);
    tdsx_ca_free(ca);
    tdsx_test_province_crl(p);

    char extra[8192];
    snprintf(extra, sizeof extra, "crl %s\nframe_cap 64k\n", p->crl);
    tdsx_test_node_config(p, &W.centre, extra);
    snprintf(extra, sizeof extra, "peer %s 127.0.0.1:%d\nping_interval 300ms\n", W.centre.id,
             W.centre.port);
    tdsx_test_node_config(p, &W.brain, extra);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.brain);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_t *all[] = {&W.centre,  &W.brain,   &W.ent,      &W.revoked,
                               &W.expired, &W.foreign, &W.stranger, &W.liar};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tdsx_test_node_free(all[i]);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* Both daemons see each other, with identities taken from the verified certificates. */
static void dialled_peer_is_connected(void **state)
{
    (void)state;
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"conn.open\"", W.centre.id,
                                   "\"dir\":\"out\"", NULL));
    assert_true(tdsx_test_log_wait(&W.centre, 5000, "\"event\":\"conn.open\"", W.brain.id,
                                   "\"role\":\"brain\"", "\"dir\":\"in\"", NULL));
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx status --socket '%s'", W.brain.sock), 0);
    assert_non_null(strstr(out, W.brain.id));
    assert_non_null(strstr(out, W.centre.id));
    assert_non_null(strstr(out, " open "));
    assert_non_null(strstr(out, "role             brain"));
    free(out);
    assert_int_equal(tdsx_test_run(&out, "tdsx status --socket '%s'", W.centre.sock), 0);
    assert_non_null(strstr(out, W.brain.id));
    assert_non_null(strstr(out, "connections_opened"));
    free(out);
}

/* Reads the next frame the daemon sends, skipping its Hello (the first frame of every
 * connection). The caller frees it with tdsx__frame__free_unpacked. NULL when none came. */
static Tdsx__Frame *next_frame(tdsx_test_client_t *c)
{
    for (;;) {
        uint8_t hdr[4];
        if (tdsx_test_client_recv(c, hdr, 4, 3000) != 4)
            return NULL;
        uint32_t len =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        uint8_t *body = malloc(len ? len : 1);
        assert_non_null(body);
        assert_int_equal(tdsx_test_client_recv(c, body, len, 3000), (long)len);
        Tdsx__Frame *f = tdsx__frame__unpack(NULL, len, body);
        free(body);
        assert_non_null(f);
        if (f->body_case != TDSX__FRAME__BODY_HELLO)
            return f;
        tdsx__frame__free_unpacked(f, NULL);
    }
}

/* The body case of the next frame, and its error code when it is an Error. */
static int read_frame(tdsx_test_client_t *c, uint32_t *err_code)
{
    Tdsx__Frame *f = next_frame(c);
    if (!f)
        return -1;
    int bc = f->body_case;
    if (bc == TDSX__FRAME__BODY_ERROR && err_code)
        *err_code = f->error->code;
    tdsx__frame__free_unpacked(f, NULL);
    return bc;
}

/* Pings keep an idle link alive; the answer carries the nonce back. */
static void ping_pong(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    assert_int_equal(tdsx_test_client_open(&c, &W.p, W.ent.creds, W.centre.port), 0);
    Tdsx__Ping ping = TDSX__PING__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    ping.nonce = 0x1234567890ull;
    f.stream_id = 7;
    f.body_case = TDSX__FRAME__BODY_PING;
    f.ping = &ping;
    tdsx_test_client_send_frame(&c, &f);
    Tdsx__Frame *pong = next_frame(&c);
    assert_non_null(pong);
    assert_int_equal(pong->body_case, TDSX__FRAME__BODY_PONG);
    assert_int_equal(pong->stream_id, 7);
    assert_true(pong->pong->nonce == 0x1234567890ull);
    tdsx__frame__free_unpacked(pong, NULL);
    tdsx_test_client_free(&c);
}

static void expect_refused(tdsx_test_node_t *creds_of, const char *code)
{
    tdsx_test_client_t c;
    int rc = tdsx_test_client_open(&c, &W.p, creds_of->creds, W.centre.port);
    if (rc == 0) {
        /* TLS 1.3: the client may finish before the server's verdict arrives. */
        assert_true(tdsx_test_client_closed(&c, 3000));
    } else {
        assert_true(rc < 0);
    }
    tdsx_test_client_free(&c);
    assert_true(tdsx_test_log_wait(&W.centre, 5000, "\"event\":\"conn.refused\"", code, NULL));
}

static void revoked_client_refused(void **state)
{
    (void)state;
    expect_refused(&W.revoked, "\"err\":\"TDSX_E_CERT_REVOKED\"");
}

static void expired_client_refused(void **state)
{
    (void)state;
    expect_refused(&W.expired, "\"err\":\"TDSX_E_CERT_EXPIRED\"");
}

static void foreign_ca_refused(void **state)
{
    (void)state;
    expect_refused(&W.foreign, "\"err\":\"TDSX_E_CERT_UNTRUSTED\"");
}

static void unregistered_refused(void **state)
{
    (void)state;
    expect_refused(&W.stranger, "\"err\":\"TDSX_E_PEER_UNKNOWN\"");
}

static void wrong_role_refused(void **state)
{
    (void)state;
    expect_refused(&W.liar, "\"err\":\"TDSX_E_CERT_ROLE\"");
}

/* A client with no certificate at all: plain OpenSSL, TLS 1.3, right ALPN. */
static void no_client_certificate_refused(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    tdsx_test_client_tcp(&c, W.centre.port);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    static const unsigned char alpn[] = "\x06tdsx/1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c.fd);
    int hs = SSL_connect(ssl);
    /* With TLS 1.3 the refusal may only show on the first read. */
    char b[16];
    int r = hs == 1 ? SSL_read(ssl, b, sizeof b) : hs;
    assert_true(r <= 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(c.fd);
    assert_true(tdsx_test_log_wait(&W.centre, 5000, "\"event\":\"conn.refused\"",
                                   "\"err\":\"TDSX_E_PEER_CERT\"", NULL));
}

/* TCP only, no ClientHello: the handshake timeout (1 s in tests) closes it. */
static void handshake_timeout(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    tdsx_test_client_tcp(&c, W.centre.port);
    struct timeval tv = {5, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[16];
    ssize_t r = recv(c.fd, b, sizeof b, 0);
    assert_true(r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
    close(c.fd);
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"conn.refused\"",
                                   "\"err\":\"TDSX_E_TIMEOUT\"", "handshake timeout", NULL));
}

static void frame_over_cap_closes(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    assert_int_equal(tdsx_test_client_open(&c, &W.p, W.ent.creds, W.centre.port), 0);
    /* The centre's cap is 64 KiB: announce 2 MiB and send nothing more. */
    const uint8_t hdr[4] = {0x00, 0x20, 0x00, 0x00};
    tdsx_test_client_send(&c, hdr, sizeof hdr);
    uint32_t code = 0;
    assert_int_equal(read_frame(&c, &code), TDSX__FRAME__BODY_ERROR);
    assert_int_equal(tdsx_err_from_wire(code), TDSX_E_FRAME_TOOBIG);
    assert_true(tdsx_test_client_closed(&c, 3000));
    tdsx_test_client_free(&c);
    assert_true(
        tdsx_test_log_wait(&W.centre, 3000, "\"err\":\"TDSX_E_FRAME_TOOBIG\"", W.ent.id, NULL));
}

static void truncated_frame_closes(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    assert_int_equal(tdsx_test_client_open(&c, &W.p, W.ent.creds, W.centre.port), 0);
    const uint8_t partial[10] = {0, 0, 0, 100, 0x08, 0x01, 0x12, 0x02, 0x08, 0x01};
    tdsx_test_client_send(&c, partial, sizeof partial);
    assert_int_equal(tdsx_tls_conn_close(c.tls), 0);
    tdsx_test_client_send(&c, "", 0);
    assert_true(tdsx_test_client_closed(&c, 3000));
    tdsx_test_client_free(&c);
    assert_true(
        tdsx_test_log_wait(&W.centre, 3000, "\"err\":\"TDSX_E_FRAME_TRUNCATED\"", W.ent.id, NULL));
}

static void unknown_message_closes(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    assert_int_equal(tdsx_test_client_open(&c, &W.p, W.ent.creds, W.centre.port), 0);
    /* Frame{stream_id=1, field 999 (length-delimited, 2 bytes)}: a body member this node
     * does not know. */
    const uint8_t frame[] = {0, 0, 0, 8, 0x08, 0x01, 0xba, 0x3e, 0x02, 0xab, 0xcd, 0x00};
    uint8_t msg[11];
    memcpy(msg, frame, 4);
    memcpy(msg + 4, frame + 4, 7);
    msg[3] = 7;
    tdsx_test_client_send(&c, msg, sizeof msg);
    uint32_t code = 0;
    assert_int_equal(read_frame(&c, &code), TDSX__FRAME__BODY_ERROR);
    assert_int_equal(tdsx_err_from_wire(code), TDSX_E_PROTO_UNSUPPORTED);
    assert_true(tdsx_test_client_closed(&c, 3000));
    tdsx_test_client_free(&c);
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"err\":\"TDSX_E_PROTO_UNSUPPORTED\"",
                                   W.ent.id, NULL));
}

/* A peer that sends pings as fast as it can and never reads the pongs: the daemon stops
 * reading once its output is at its cap (memory stays bounded) and the stall timeout closes
 * the connection. */
static void slow_reader_is_bounded_and_cut(void **state)
{
    (void)state;
    tdsx_test_client_t c;
    assert_int_equal(tdsx_test_client_open(&c, &W.p, W.ent.creds, W.centre.port), 0);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    long rss_before = tdsx_test_rss_kib(W.centre.pid);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);

    /* 2,000 pings per TLS write. */
    tdsx_buf_t batch;
    tdsx_buf_init(&batch, 1 << 20);
    Tdsx__Ping ping = TDSX__PING__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    f.body_case = TDSX__FRAME__BODY_PING;
    f.ping = &ping;
    for (int i = 0; i < 2000; i++) {
        ping.nonce = (uint64_t)i;
        assert_int_equal(tdsx_frame_encode(&f, 1024, &batch), 0);
    }
    long peak = rss_before;
    time_t start = time(NULL);
    int blocked_ms = 0;
    size_t sent_total = 0;
    unsigned long long queued = 0;
    size_t at = 0; /* how much of the batch the engine has taken: frames must stay whole */
    while (time(NULL) - start < 20 && blocked_ms < 3000) {
        size_t wrote = 0;
        int rc = tdsx_tls_conn_write(c.tls, batch.p + at, batch.len - at, &wrote);
        assert_true(rc == 0 || rc == TDSX_E_AGAIN);
        at = (at + wrote) % batch.len;
        size_t len;
        const uint8_t *out;
        int progress = 0;
        while ((out = tdsx_tls_conn_output(c.tls, &len)) && len) {
            ssize_t w = send(c.fd, out, len, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            tdsx_tls_conn_consume(c.tls, (size_t)w);
            sent_total += (size_t)w;
            progress = 1;
        }
        if (!progress) {
            usleep(10000);
            blocked_ms += 10;
        } else {
            blocked_ms = 0;
        }
        if (blocked_ms == 300 && queued == 0) {
            /* While we are blocked (and before the 2 s stall timeout), the daemon's own
             * account of what it holds for us stays under its output cap (2 frames of
             * 64 KiB + 256 KiB): it stopped reading instead of queueing answers. */
            char *st = NULL;
            assert_int_equal(tdsx_test_run(&st, "tdsx status --socket '%s'", W.centre.sock), 0);
            const char *q = strstr(st, W.ent.id);
            assert_non_null(q);
            q = strstr(q, "queued=");
            assert_non_null(q);
            queued = strtoull(q + 7, NULL, 10);
            free(st);
            assert_true(queued > 0);
            assert_true(queued <= 2 * 64 * 1024 + 256 * 1024 + 64 * 1024);
        }
        long rss = tdsx_test_rss_kib(W.centre.pid);
        if (rss > peak)
            peak = rss;
    }
    /* The daemon stopped reading: our writes could not go on. */
    assert_true(queued > 0);
    assert_true(blocked_ms >= 3000);
    assert_true(sent_total > 1u << 20);
    /* Bounded: well under what it would take to queue an answer to every ping sent. */
    long growth_kib = peak - rss_before;
    fprintf(stderr, "slow reader: sent %zu bytes, daemon RSS %ld -> %ld KiB\n", sent_total,
            rss_before, peak);
    assert_true(growth_kib < 32 * 1024);
    int cut = tdsx_test_log_wait(&W.centre, 20000, "\"err\":\"TDSX_E_TIMEOUT\"", "stalled",
                                 W.ent.id, NULL);
    if (!cut) {
        /* Say what the daemon did with the connection instead. */
        char *out = NULL;
        (void)tdsx_test_run(&out, "grep -F '%s' '%s' | tail -n 8; tdsx status --socket '%s'",
                            W.ent.id, W.centre.log, W.centre.sock);
        fprintf(stderr, "no stall logged; centre's view:\n%s\n", out ? out : "");
        free(out);
    }
    assert_true(cut);
    tdsx_buf_free(&batch);
    tdsx_test_client_free(&c);
}

/* SIGTERM: stop accepting, close connections, exit 0. */
static void sigterm_drains_and_exits(void **state)
{
    (void)state;
    assert_int_equal(tdsx_test_node_stop(&W.brain, 8000), 0);
    assert_true(tdsx_test_log_wait(&W.brain, 1000, "\"event\":\"node.stopped\"", NULL));
    /* The centre saw the brain go away cleanly. */
    assert_true(tdsx_test_log_wait(&W.centre, 3000, "\"event\":\"conn.close\"", W.brain.id, NULL));
    assert_int_equal(tdsx_test_node_stop(&W.centre, 8000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dialled_peer_is_connected),
        cmocka_unit_test(ping_pong),
        cmocka_unit_test(revoked_client_refused),
        cmocka_unit_test(expired_client_refused),
        cmocka_unit_test(foreign_ca_refused),
        cmocka_unit_test(unregistered_refused),
        cmocka_unit_test(wrong_role_refused),
        cmocka_unit_test(no_client_certificate_refused),
        cmocka_unit_test(handshake_timeout),
        cmocka_unit_test(frame_over_cap_closes),
        cmocka_unit_test(truncated_frame_closes),
        cmocka_unit_test(unknown_message_closes),
        cmocka_unit_test(slow_reader_is_bounded_and_cut),
        cmocka_unit_test(sigterm_drains_and_exits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
