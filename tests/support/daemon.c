#define _GNU_SOURCE
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

extern char **environ;

static char *fmt_path(const char *fmt, ...) TDSX_PRINTF(1, 2);
static char *fmt_path(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    return s;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tdsx_test_province_init(tdsx_test_province_t *p)
{
    memset(p, 0, sizeof *p);
    p->dir = tdsx_test_mkdtemp();
    p->ca = fmt_path("%s/ca", p->dir);
    p->foreign = fmt_path("%s/foreign-ca", p->dir);
    p->registry = fmt_path("%s/registry.txt", p->dir);
    p->crl = fmt_path("%s/crl.pem", p->dir);
    tdsx_ca_init_opts_t o = {"山东省数据流通测试根CA", 1, 0, 0};
    assert_int_equal(tdsx_ca_init(p->ca, &o), 0);
    tdsx_ca_init_opts_t f = {"Foreign Root", 0, 0, 0};
    assert_int_equal(tdsx_ca_init(p->foreign, &f), 0);
    tdsx_test_write_file(p->registry, "# test registry\n", 16);
}

void tdsx_test_province_free(tdsx_test_province_t *p)
{
    free(p->ca);
    free(p->foreign);
    free(p->registry);
    free(p->crl);
    if (getenv("TDSX_TEST_KEEP"))
        fprintf(stderr, "kept %s\n", p->dir), free(p->dir);
    else
        tdsx_test_rmdir(p->dir);
    p->dir = NULL;
}

void tdsx_test_province_crl(tdsx_test_province_t *p)
{
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(p->ca, &ca), 0);
    assert_int_equal(tdsx_ca_crl(ca, 7, p->crl, 1), 0);
    tdsx_ca_free(ca);
}

int tdsx_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

void tdsx_test_node_issue(tdsx_test_province_t *p, tdsx_test_node_t *n, const char *name,
                          tdsx_role_t role, int64_t not_before, int days, int register_it,
                          int foreign)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    char first17[32];
    snprintf(first17, sizeof first17, "91370100MA3C%05d", (100 + p->next_uscc++) % 100000);
    memcpy(n->uscc, first17, 17);
    n->uscc[17] = tdsx_uscc_check_char(first17);
    n->uscc[18] = '\0';
    assert_int_equal(tdsx_uscc_check(n->uscc, NULL), 0);
    snprintf(n->id, sizeof n->id, "%s/%s", n->uscc, name);
    n->role = role;
    n->creds = fmt_path("%s/%s-creds", p->dir, name);
    n->conf = fmt_path("%s/%s.conf", p->dir, name);
    n->data = fmt_path("%s/%s-data", p->dir, name);
    n->log = fmt_path("%s/%s.log", p->dir, name);
    n->sock = fmt_path("%s/%s-data/tdsxd.sock", p->dir, name);
    n->port = tdsx_test_free_port();
    assert_int_equal(mkdir(n->data, 0700), 0);
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(foreign ? p->foreign : p->ca, &ca), 0);
    char org[64];
    snprintf(org, sizeof org, "测试单位 %s", name);
    tdsx_issue_opts_t o = {n->uscc, org, name, role, not_before, days, 1};
    assert_int_equal(tdsx_ca_issue(ca, &o, n->creds), 0);
    tdsx_ca_free(ca);
    if (register_it) {
        /* The line is built from the certificates directly (not tdsx_registry_format, which
         * verifies them now): tests register expired and foreign credentials on purpose. */
        char path[4096];
        uint8_t auth_fp[32], sign_fp[32], enc[32];
        STACK_OF(X509) *sk = NULL;
        snprintf(path, sizeof path, "%s/auth.pem", n->creds);
        assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
        assert_int_equal(tdsx_cert_fingerprint(sk_X509_value(sk, 0), auth_fp), 0);
        sk_X509_pop_free(sk, X509_free);
        snprintf(path, sizeof path, "%s/sign.pem", n->creds);
        assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
        assert_int_equal(tdsx_cert_fingerprint(sk_X509_value(sk, 0), sign_fp), 0);
        sk_X509_pop_free(sk, X509_free);
        snprintf(path, sizeof path, "%s/enc.pub", n->creds);
        assert_int_equal(tdsx_key_load_x25519_pub(path, enc), 0);
        char a[65], sg[65], e[65];
        tdsx_hex_encode(a, auth_fp, 32);
        tdsx_hex_encode(sg, sign_fp, 32);
        tdsx_hex_encode(e, enc, 32);
        FILE *f = fopen(p->registry, "a");
        assert_non_null(f);
        fprintf(f, "%s %s 127.0.0.1:%d auth=%s sign=%s enc=%s\n", n->id, tdsx_role_name(role),
                n->port, a, sg, e);
        fclose(f);
    }
}

void tdsx_test_node_config(tdsx_test_province_t *p, tdsx_test_node_t *n, const char *extra)
{
    (void)p;
    char *text = fmt_path("role %s\n"
                          "listen 127.0.0.1:%d\n"
                          "credentials %s\n"
                          "data_dir %s\n"
                          "registry %s\n"
                          "log_level debug\n"
                          "handshake_timeout 1s\n"
                          "stall_timeout 2s\n"
                          "drain_timeout 3s\n"
                          "redial_min 100ms\n"
                          "redial_max 1s\n"
                          "%s",
                          tdsx_role_name(n->role), n->port, n->creds, n->data, p->registry,
                          extra ? extra : "");
    tdsx_test_write_file(n->conf, text, strlen(text));
    free(text);
}

void tdsx_test_node_start(tdsx_test_node_t *n)
{
    char *bin = fmt_path("%s/gateway/tdsxd", TDSX_BIN_DIR);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, n->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {bin, "-c", n->conf, NULL};
    /* ASan keeps freed memory in quarantine (256 MiB by default), which would hide whether
     * the daemon's live memory stays bounded; a small quarantine keeps RSS meaningful. */
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **env = calloc(n_env + 2, sizeof *env);
    assert_non_null(env);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0)
            env[k++] = environ[i];
    env[k++] = "ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=4";
    env[k] = NULL;
    assert_int_equal(posix_spawn(&n->pid, bin, &fa, NULL, argv, env), 0);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    free(bin);
    if (!tdsx_test_log_wait(n, 10000, "\"event\":\"node.ready\"", NULL)) {
        char *out = NULL;
        tdsx_test_run(&out, "cat '%s'", n->log);
        fprintf(stderr, "tdsxd %s did not become ready:\n%s\n", n->name, out ? out : "");
        free(out);
        fail();
    }
}

int tdsx_test_node_stop(tdsx_test_node_t *n, int timeout_ms)
{
    if (n->pid <= 0)
        return -1;
    kill(n->pid, SIGTERM);
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(n->pid, &status, WNOHANG);
        if (r == n->pid)
            break;
        if (now_ms() > end) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &status, 0);
            n->pid = 0;
            fail_msg("tdsxd %s did not stop within %d ms", n->name, timeout_ms);
        }
        usleep(10000);
    }
    n->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void tdsx_test_node_free(tdsx_test_node_t *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGKILL);
        waitpid(n->pid, NULL, 0);
    }
    free(n->creds);
    free(n->conf);
    free(n->data);
    free(n->log);
    free(n->sock);
    memset(n, 0, sizeof *n);
}

static int line_has_all(const char *line, size_t len, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    int ok = 1;
    for (const char *s = va_arg(aq, const char *); s; s = va_arg(aq, const char *))
        if (!memmem(line, len, s, strlen(s)))
            ok = 0;
    va_end(aq);
    return ok;
}

/* Scans the node's log once: the number of lines holding every string of `ap`, and a heap copy
 * of the first of them in *first when first is not NULL (NULL when none). */
static int scan_log(const tdsx_test_node_t *n, char **first, va_list ap)
{
    uint8_t *text = NULL;
    size_t len = 0;
    int count = 0;
    if (first)
        *first = NULL;
    if (tdsx_file_read(n->log, 256u << 20, &text, &len) != 0)
        return 0;
    const char *p = (const char *)text, *stop = p + len;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (!nl)
            break;
        if (line_has_all(p, (size_t)(nl - p), ap)) {
            if (first && !*first) {
                *first = strndup(p, (size_t)(nl - p));
                assert_non_null(*first);
            }
            count++;
        }
        p = nl + 1;
    }
    tdsx_free(text);
    return count;
}

int tdsx_test_log_count(const tdsx_test_node_t *n, ...)
{
    va_list ap;
    va_start(ap, n);
    int count = scan_log(n, NULL, ap);
    va_end(ap);
    return count;
}

char *tdsx_test_log_line(const tdsx_test_node_t *n, ...)
{
    va_list ap;
    char *line = NULL;
    va_start(ap, n);
    (void)scan_log(n, &line, ap);
    va_end(ap);
    return line;
}

int tdsx_test_log_wait(const tdsx_test_node_t *n, int timeout_ms, ...)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint8_t *text = NULL;
        size_t len = 0;
        if (tdsx_file_read(n->log, 64u << 20, &text, &len) == 0) {
            const char *p = (const char *)text, *stop = p + len;
            while (p < stop) {
                const char *nl = memchr(p, '\n', (size_t)(stop - p));
                if (!nl)
                    break;
                va_list ap;
                va_start(ap, timeout_ms);
                int ok = line_has_all(p, (size_t)(nl - p), ap);
                va_end(ap);
                if (ok) {
                    tdsx_free(text);
                    return 1;
                }
                p = nl + 1;
            }
            tdsx_free(text);
        }
        if (now_ms() > end)
            return 0;
        usleep(20000);
    }
}

long tdsx_test_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int tdsx_test_run(char **out, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    char *full = fmt_path("PATH='%s/gateway':\"$PATH\"; %s", TDSX_BIN_DIR, cmd);
    free(cmd);
    FILE *f = popen(full, "r");
    assert_non_null(f);
    free(full);
    size_t cap = 0, len = 0;
    char *buf = NULL;
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + r + 1 > cap) {
            cap = (len + r + 1) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        memcpy(buf + len, chunk, r);
        len += r;
        buf[len] = '\0';
    }
    int status = pclose(f);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- raw client ------------------------------------------------------------------------- */

void tdsx_test_client_tcp(tdsx_test_client_t *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void flush_out(tdsx_test_client_t *c)
{
    for (;;) {
        size_t len;
        const uint8_t *p = tdsx_tls_conn_output(c->tls, &len);
        if (!p || !len)
            return;
        size_t off = 0;
        while (off < len) {
            ssize_t w = send(c->fd, p + off, len - off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                tdsx_tls_conn_consume(c->tls, len);
                return; /* the peer is gone; reads will say so */
            }
            off += (size_t)w;
        }
        tdsx_tls_conn_consume(c->tls, len);
    }
}

/* Reads from the socket into the engine once; 0 ok, 1 EOF, -1 timeout. */
static int pump_in(tdsx_test_client_t *c, int timeout_ms)
{
    struct pollfd pfd = {c->fd, POLLIN, 0};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0)
        return -1;
    size_t room = tdsx_tls_conn_room(c->tls);
    uint8_t buf[65536];
    if (room > sizeof buf)
        room = sizeof buf;
    if (room == 0)
        return 0;
    ssize_t r = recv(c->fd, buf, room, 0);
    if (r <= 0) {
        int rc = tdsx_tls_conn_feed_eof(c->tls);
        (void)rc;
        return 1;
    }
    int rc = tdsx_tls_conn_feed(c->tls, tdsx_bytes(buf, (size_t)r));
    (void)rc;
    flush_out(c);
    return 0;
}

int tdsx_test_client_open(tdsx_test_client_t *c, tdsx_test_province_t *p, const char *creds,
                          int port)
{
    tdsx_test_client_tcp(c, port);
    char *root = fmt_path("%s/ca.pem", creds);
    char *chain = fmt_path("%s/chain.pem", creds);
    assert_int_equal(tdsx_trust_new(&c->trust), 0);
    /* Trust the province whatever CA issued the client's own credentials. */
    char *proot = fmt_path("%s/root.pem", p->ca);
    assert_int_equal(tdsx_trust_add_anchors_file(c->trust, proot), 0);
    free(proot);
    uint8_t *pem = NULL;
    size_t len = 0;
    char *pchain = fmt_path("%s/intermediate.pem", p->ca);
    if (tdsx_file_read(pchain, 1 << 20, &pem, &len) == 0) {
        assert_int_equal(tdsx_trust_add_intermediates_pem(c->trust, pem, len), 0);
        tdsx_free(pem);
    }
    free(pchain);
    free(root);
    free(chain);
    tdsx_registry_error_t err;
    assert_int_equal(tdsx_registry_load(p->registry, &c->registry, &err), 0);
    tdsx_tls_config_t tc = {creds, NULL, NULL, c->trust, c->registry};
    assert_int_equal(tdsx_tls_ctx_new(&tc, &c->ctx), 0);
    assert_int_equal(tdsx_tls_conn_new(c->ctx, TDSX_TLS_CLIENT, NULL, &c->tls), 0);
    int rc = tdsx_tls_conn_handshake(c->tls);
    flush_out(c);
    uint64_t end = now_ms() + 5000;
    while (rc == TDSX_E_AGAIN && now_ms() < end) {
        int r = pump_in(c, 200);
        if (r == 1) {
            rc = tdsx_tls_conn_error(c->tls) ? tdsx_tls_conn_error(c->tls) : TDSX_E_CLOSED;
            break;
        }
        rc = tdsx_tls_conn_handshake(c->tls);
        flush_out(c);
    }
    return rc;
}

void tdsx_test_client_send(tdsx_test_client_t *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    flush_out(c); /* whatever is queued (a close_notify) leaves even when n is 0 */
    while (n > 0) {
        size_t wrote = 0;
        int rc = tdsx_tls_conn_write(c->tls, b, n, &wrote);
        flush_out(c);
        if (rc == TDSX_E_AGAIN && wrote == 0)
            continue;
        assert_true(rc == 0 || wrote > 0);
        b += wrote;
        n -= wrote;
    }
}

void tdsx_test_client_send_frame(tdsx_test_client_t *c, const void *frame)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_FRAME_CAP_MAX + 4);
    assert_int_equal(tdsx_frame_encode(frame, TDSX_FRAME_CAP_MAX, &b), 0);
    tdsx_test_client_send(c, b.p, b.len);
    tdsx_buf_free(&b);
}

long tdsx_test_client_recv(tdsx_test_client_t *c, void *p, size_t n, int timeout_ms)
{
    size_t got = 0;
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (got < n) {
        size_t r = 0;
        int rc = tdsx_tls_conn_read(c->tls, (uint8_t *)p + got, n - got, &r);
        got += r;
        if (rc != 0 && rc != TDSX_E_AGAIN)
            return got ? (long)got : rc;
        if (r)
            continue;
        uint64_t now = now_ms();
        if (now >= end)
            break;
        if (pump_in(c, (int)(end - now)) == 1) {
            rc = tdsx_tls_conn_read(c->tls, (uint8_t *)p + got, n - got, &r);
            got += r;
            if (!r)
                return got ? (long)got
                           : (tdsx_tls_conn_error(c->tls) ? tdsx_tls_conn_error(c->tls)
                                                          : TDSX_E_CLOSED);
        }
    }
    return (long)got;
}

int tdsx_test_client_closed(tdsx_test_client_t *c, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    uint8_t sink[4096];
    while (now_ms() < end) {
        long r = tdsx_test_client_recv(c, sink, sizeof sink, 100);
        if (r < 0)
            return 1;
        if (c->tls == NULL)
            return 1;
    }
    return 0;
}

void tdsx_test_client_free(tdsx_test_client_t *c)
{
    if (c->fd > 0)
        close(c->fd);
    tdsx_tls_conn_free(c->tls);
    tdsx_tls_ctx_free(c->ctx);
    tdsx_registry_free(c->registry);
    tdsx_trust_free(c->trust);
    memset(c, 0, sizeof *c);
}
