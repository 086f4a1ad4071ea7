/*
 * tdsx bench conns — new mutual-TLS connections per second, and the server's memory per idle
 * authenticated connection (shared/BENCH.md), against tdsxd or any TLS 1.3 server (nginx).
 *
 * A plain OpenSSL client, not the gateway's engine, so that one tool measures both servers the
 * same way: TLS 1.3 only, our auth certificate, the server's chain checked against the
 * credential directory's CA, ALPN as given. A connection counts as made when the first byte of
 * application data from the server has arrived: in TLS 1.3 the client finishes its handshake
 * before the server has checked the client's certificate, so "handshake returned 1" alone would
 * count connections the server is about to refuse. tdsxd speaks first (its Hello, sent once the
 * peer is verified and found in the registry); for an HTTP server the client sends a request
 * (--request) and waits for the first byte of the answer. --hello sends the exchange's Hello
 * too, so tdsxd treats the connection as a fully authenticated peer.
 *
 * Rate: --count connections, --concurrency at a time, each closed once made.
 * Hold (--pid PID): --count connections made and kept open; the server's VmRSS (read from
 * /proc/PID/status) before and after, one second after the last was made, gives the memory per
 * idle connection.
 */
#include "cli.h"
#include "crypto.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "control.pb-c.h"
#include "frame.pb-c.h"

/* Caps, defined once. */
#define CONNS_COUNT_MAX 100000ul
#define CONNS_CONCURRENCY_MAX 4096ul
#define CONNS_TIMEOUT_MS 30000
#define CONNS_REQUEST_MAX 4096u
#define CONNS_HELLO_CAP (64u * 1024u)

typedef enum { C_IDLE = 0, C_CONNECT, C_HANDSHAKE, C_SEND, C_WAIT, C_DONE } cstate_t;

typedef struct {
    int fd;
    SSL *ssl;
    cstate_t st;
    size_t sent; /* bytes of the opening message written */
    uint64_t t0; /* ns, when the connect began */
} bconn_t;

typedef struct {
    const char *cmd;
    struct sockaddr_in addr;
    SSL_CTX *ctx;
    const uint8_t *opening; /* what the client sends first (Hello frame or request); may be NULL */
    size_t opening_len;
    unsigned long count, concurrency;
    int hold;
    uint64_t *lat; /* ns per made connection */
    unsigned long made, failed;
} bench_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void conn_reset(bconn_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->st = C_IDLE;
    c->sent = 0;
}

static int conn_begin(bench_t *b, bconn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t0 = now_ns();
    if (connect(c->fd, (const struct sockaddr *)&b->addr, sizeof b->addr) < 0 &&
        errno != EINPROGRESS)
        return -1;
    c->ssl = SSL_new(b->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return -1;
    c->st = C_CONNECT;
    return 0;
}

/* Moves c along as far as it goes without blocking: 1 made, 0 waiting, -1 failed. *events is
 * what to poll for. */
static int conn_step(bench_t *b, bconn_t *c, short *events)
{
    for (;;) {
        int r;
        switch (c->st) {
        case C_CONNECT: {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == EINPROGRESS) {
                *events = POLLOUT;
                return 0;
            }
            if (err)
                return -1;
            c->st = C_HANDSHAKE;
            break;
        }
        case C_HANDSHAKE:
            r = SSL_connect(c->ssl);
            if (r == 1) {
                c->st = b->opening_len ? C_SEND : C_WAIT;
                break;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ: *events = POLLIN; return 0;
            case SSL_ERROR_WANT_WRITE: *events = POLLOUT; return 0;
            default: return -1;
            }
        case C_SEND:
            r = SSL_write(c->ssl, b->opening + c->sent, (int)(b->opening_len - c->sent));
            if (r > 0) {
                c->sent += (size_t)r;
                if (c->sent == b->opening_len)
                    c->st = C_WAIT;
                break;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ: *events = POLLIN; return 0;
            case SSL_ERROR_WANT_WRITE: *events = POLLOUT; return 0;
            default: return -1;
            }
        case C_WAIT: {
            uint8_t buf[4096];
            r = SSL_read(c->ssl, buf, sizeof buf);
            if (r > 0) {
                c->st = C_DONE;
                return 1;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ: *events = POLLIN; return 0;
            case SSL_ERROR_WANT_WRITE: *events = POLLOUT; return 0;
            default: return -1; /* refused: an alert, or closed before a byte */
            }
        }
        case C_DONE: {
            /* Held: drain whatever the server sends (pings) so it never sees a stalled peer;
             * a close by the server counts as a failure of the hold. */
            uint8_t buf[4096];
            r = SSL_read(c->ssl, buf, sizeof buf);
            if (r > 0)
                continue;
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                *events = POLLIN;
                return 0;
            }
            return -1;
        }
        case C_IDLE: *events = 0; return 0;
        }
    }
}

/* Runs the whole measurement; returns 0, or -1 when a connection's setup failed locally. */
static int run(bench_t *b, bconn_t *cs, struct pollfd *pfd, unsigned long slots)
{
    unsigned long started = 0, active = 0;
    uint64_t deadline = now_ns() + (uint64_t)CONNS_TIMEOUT_MS * 1000000ull;
    while (b->made + b->failed < b->count) {
        /* Keep `concurrency` attempts in flight (held ones do not count). */
        for (unsigned long i = 0; i < slots && started < b->count && active < b->concurrency; i++) {
            if (cs[i].st != C_IDLE)
                continue;
            if (conn_begin(b, &cs[i]) < 0) {
                fprintf(stderr, "tdsx %s: socket: %s\n", b->cmd, strerror(errno));
                conn_reset(&cs[i]);
                return -1;
            }
            started++;
            active++;
        }
        for (unsigned long i = 0; i < slots; i++) {
            pfd[i].fd = -1;
            pfd[i].events = 0;
            pfd[i].revents = 0;
            if (cs[i].st == C_IDLE || cs[i].st == C_DONE)
                continue;
            short ev = 0;
            int r = conn_step(b, &cs[i], &ev);
            if (r == 0) {
                pfd[i].fd = cs[i].fd;
                pfd[i].events = ev;
                continue;
            }
            active--;
            if (r > 0) {
                b->lat[b->made++] = now_ns() - cs[i].t0;
                if (!b->hold)
                    conn_reset(&cs[i]);
            } else {
                b->failed++;
                conn_reset(&cs[i]);
            }
        }
        if (b->made + b->failed >= b->count)
            break;
        if (now_ns() > deadline) {
            fprintf(stderr, "tdsx %s: gave up after %d s with %lu of %lu made\n", b->cmd,
                    CONNS_TIMEOUT_MS / 1000, b->made, b->count);
            return -1;
        }
        if (poll(pfd, slots, 100) < 0 && errno != EINTR)
            return -1;
    }
    return 0;
}

/* Keeps the held connections read for `ms` (the server may ping them). */
static void hold_for(bench_t *b, bconn_t *cs, struct pollfd *pfd, unsigned long slots, int ms)
{
    uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
    while (now_ns() < end) {
        for (unsigned long i = 0; i < slots; i++) {
            pfd[i].fd = -1;
            pfd[i].events = 0;
            if (cs[i].st != C_DONE)
                continue;
            short ev = 0;
            if (conn_step(b, &cs[i], &ev) < 0) {
                b->failed++;
                b->made--;
                conn_reset(&cs[i]);
                continue;
            }
            pfd[i].fd = cs[i].fd;
            pfd[i].events = ev;
        }
        (void)poll(pfd, slots, 50);
    }
}

static int load_ctx(const char *cmd, const char *creds, const char *alpn, SSL_CTX **out)
{
    char p[4096];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    snprintf(p, sizeof p, "%s/auth.pem", creds);
    if (SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM) != 1)
        goto fail;
    snprintf(p, sizeof p, "%s/auth.key", creds);
    if (SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM) != 1)
        goto fail;
    /* Intermediates go out with our leaf and are trusted for the server's chain. */
    snprintf(p, sizeof p, "%s/chain.pem", creds);
    FILE *f = fopen(p, "r");
    if (f) {
        X509 *x;
        while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
            int ok = SSL_CTX_add0_chain_cert(ctx, x);
            if (ok != 1) {
                X509_free(x);
                fclose(f);
                goto fail;
            }
        }
        fclose(f);
        ERR_clear_error(); /* the end of the file */
        if (SSL_CTX_load_verify_locations(ctx, p, NULL) != 1)
            goto fail;
    }
    snprintf(p, sizeof p, "%s/ca.pem", creds);
    if (SSL_CTX_load_verify_locations(ctx, p, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (alpn) {
        uint8_t wire[256];
        size_t n = strlen(alpn);
        if (n == 0 || n > 255)
            goto fail;
        wire[0] = (uint8_t)n;
        memcpy(wire + 1, alpn, n);
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)(n + 1)) != 0)
            goto fail;
    }
    *out = ctx;
    return 0;
fail:
    fprintf(stderr, "tdsx %s: TLS client setup from %s failed: %s\n", cmd, creds,
            ERR_reason_error_string(ERR_get_error()));
    SSL_CTX_free(ctx);
    return TDSX_EXIT_ERROR;
}

/* The exchange's Hello: our sign certificate and the intermediates, framed. */
static int make_hello(const char *cmd, const char *creds, tdsx_buf_t *out)
{
    char p[4096];
    int ex = TDSX_EXIT_ERROR;
    X509 *chain[8];
    size_t n_chain = 0, k = 0;
    uint8_t *der_leaf = NULL;
    ProtobufCBinaryData chain_der[8];
    snprintf(p, sizeof p, "%s/sign.pem", creds);
    FILE *f = fopen(p, "r");
    X509 *leaf = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    snprintf(p, sizeof p, "%s/chain.pem", creds);
    f = fopen(p, "r");
    while (f && n_chain < 8 && (chain[n_chain] = PEM_read_X509(f, NULL, NULL, NULL)))
        n_chain++;
    if (f)
        fclose(f);
    ERR_clear_error();
    int leaf_len = leaf ? i2d_X509(leaf, &der_leaf) : -1;
    if (leaf_len <= 0) {
        fprintf(stderr, "tdsx %s: cannot read %s/sign.pem\n", cmd, creds);
        goto done;
    }
    for (; k < n_chain; k++) {
        chain_der[k].data = NULL;
        int len = i2d_X509(chain[k], &chain_der[k].data);
        if (len <= 0)
            goto done;
        chain_der[k].len = (size_t)len;
    }
    Tdsx__Hello h = TDSX__HELLO__INIT;
    h.sign_cert.data = der_leaf;
    h.sign_cert.len = (size_t)leaf_len;
    h.n_chain = n_chain;
    h.chain = chain_der;
    h.software = (char *)"tdsx-bench/" TDSX_VERSION;
    Tdsx__Frame fr = TDSX__FRAME__INIT;
    fr.body_case = TDSX__FRAME__BODY_HELLO;
    fr.hello = &h;
    int rc = tdsx_frame_encode(&fr, CONNS_HELLO_CAP, out);
    if (rc < 0) {
        fprintf(stderr, "tdsx %s: Hello: %s\n", cmd, tdsx_strerror(rc));
        goto done;
    }
    ex = 0;
done:
    for (size_t i = 0; i < n_chain; i++) {
        if (i < k)
            OPENSSL_free(chain_der[i].data);
        X509_free(chain[i]);
    }
    OPENSSL_free(der_leaf);
    X509_free(leaf);
    return ex;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tdsx bench conns --connect HOST:PORT --creds DIR [options]\n"
            "  --connect IPV4:PORT   server to measure (tdsxd or any TLS 1.3 server)\n"
            "  --creds DIR           client credentials (auth.pem/auth.key, chain.pem, ca.pem)\n"
            "  --alpn NAME           ALPN to offer (tdsx/1 for tdsxd, http/1.1 for nginx)\n"
            "  --hello               send the exchange's Hello (sign.pem) after the handshake\n"
            "  --request TEXT        send TEXT (\\r\\n escapes allowed) and wait for the answer\n"
            "  --count N             connections to make (default 1000)\n"
            "  --concurrency C       attempts in flight (default 32)\n"
            "  --pid PID             hold all N open and report the server's memory per\n"
            "                        connection (VmRSS of PID before and after)\n"
            "  --hold S              with --pid: keep them open S seconds before measuring\n"
            "                        (default 1)\n"
            "  --json                one JSON object instead of text\n");
}

/* Unescapes \r and \n in place. */
static size_t unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && (r[1] == 'r' || r[1] == 'n')) {
            *w++ = r[1] == 'r' ? '\r' : '\n';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

int tdsx_cmd_bench_conns(int argc, char **argv)
{
    const char *cmd = "bench conns";
    static const struct option opts[] = {{"connect", required_argument, NULL, 'C'},
                                         {"creds", required_argument, NULL, 'k'},
                                         {"alpn", required_argument, NULL, 'a'},
                                         {"hello", no_argument, NULL, 'H'},
                                         {"request", required_argument, NULL, 'r'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"concurrency", required_argument, NULL, 'c'},
                                         {"pid", required_argument, NULL, 'p'},
                                         {"hold", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *connect_to = NULL, *creds = NULL, *alpn = NULL;
    char *request = NULL;
    int hello = 0, json = 0;
    long pid = 0;
    unsigned long count = 1000, conc = 32, hold_s = 1;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 'C': connect_to = optarg; break;
        case 'k': creds = optarg; break;
        case 'a': alpn = optarg; break;
        case 'H': hello = 1; break;
        case 'r': request = optarg; break;
        case 'j': json = 1; break;
        case 'n':
            count = strtoul(optarg, &end, 10);
            if (!end || *end || count == 0 || count > CONNS_COUNT_MAX)
                return tdsx_cli_usage(cmd, "--count takes 1..%lu", CONNS_COUNT_MAX);
            break;
        case 'c':
            conc = strtoul(optarg, &end, 10);
            if (!end || *end || conc == 0 || conc > CONNS_CONCURRENCY_MAX)
                return tdsx_cli_usage(cmd, "--concurrency takes 1..%lu", CONNS_CONCURRENCY_MAX);
            break;
        case 'p':
            pid = strtol(optarg, &end, 10);
            if (!end || *end || pid <= 0)
                return tdsx_cli_usage(cmd, "--pid takes a process id");
            break;
        case 'o':
            hold_s = strtoul(optarg, &end, 10);
            if (!end || *end || hold_s == 0 || hold_s > 3600)
                return tdsx_cli_usage(cmd, "--hold takes 1..3600 seconds");
            break;
        case 'h': usage(stdout); return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!connect_to || !creds)
        return tdsx_cli_usage(cmd, "--connect and --creds are required");
    if (hello && request)
        return tdsx_cli_usage(cmd, "--hello and --request exclude each other");
    if (request && strlen(request) > CONNS_REQUEST_MAX)
        return tdsx_cli_usage(cmd, "--request is longer than %u bytes", CONNS_REQUEST_MAX);

    bench_t b;
    memset(&b, 0, sizeof b);
    b.cmd = cmd;
    b.count = count;
    b.concurrency = conc < count ? conc : count;
    b.hold = pid > 0;
    char host[64];
    const char *colon = strrchr(connect_to, ':');
    unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 0;
    if (!colon || (size_t)(colon - connect_to) >= sizeof host || port == 0 || port > 65535)
        return tdsx_cli_usage(cmd, "--connect takes IPV4:PORT");
    memcpy(host, connect_to, (size_t)(colon - connect_to));
    host[colon - connect_to] = '\0';
    b.addr.sin_family = AF_INET;
    b.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &b.addr.sin_addr) != 1)
        return tdsx_cli_usage(cmd, "--connect: '%s' is not an IPv4 address", host);

    int ex = TDSX_EXIT_ERROR;
    tdsx_buf_t hello_frame;
    tdsx_buf_init(&hello_frame, CONNS_HELLO_CAP);
    bconn_t *cs = NULL;
    struct pollfd *pfd = NULL;
    unsigned long slots = b.hold ? count : b.concurrency;
    if (load_ctx(cmd, creds, alpn, &b.ctx) != 0)
        goto done;
    if (hello) {
        if (make_hello(cmd, creds, &hello_frame) != 0)
            goto done;
        b.opening = hello_frame.p;
        b.opening_len = hello_frame.len;
    } else if (request) {
        b.opening_len = unescape(request);
        b.opening = (const uint8_t *)request;
    }
    cs = tdsx_calloc(slots, sizeof *cs);
    pfd = tdsx_calloc(slots, sizeof *pfd);
    b.lat = tdsx_calloc(count, sizeof *b.lat);
    if (!cs || !pfd || !b.lat) {
        ex = tdsx_cli_fail(cmd, TDSX_E_NOMEM, NULL);
        goto done;
    }
    for (unsigned long i = 0; i < slots; i++)
        cs[i].fd = -1;

    long rss0 = b.hold ? rss_kib(pid) : 0;
    if (b.hold && rss0 < 0) {
        fprintf(stderr, "tdsx %s: cannot read /proc/%ld/status\n", cmd, pid);
        goto done;
    }
    uint64_t t0 = now_ns();
    if (run(&b, cs, pfd, slots) != 0)
        goto done;
    double secs = (double)(now_ns() - t0) / 1e9;
    long rss1 = 0;
    if (b.hold) {
        hold_for(&b, cs, pfd, slots, (int)hold_s * 1000);
        rss1 = rss_kib(pid);
    }
    if (b.made == 0) {
        fprintf(stderr, "tdsx %s: no connection was accepted (%lu refused)\n", cmd, b.failed);
        ex = TDSX_EXIT_INVALID;
        goto done;
    }
    qsort(b.lat, b.made, sizeof *b.lat, cmp_u64);
    double rate = (double)b.made / secs;
    double p50 = (double)b.lat[b.made / 2] / 1e6;
    double p99 =
        (double)b.lat[(b.made * 99) / 100 < b.made ? (b.made * 99) / 100 : b.made - 1] / 1e6;
    double per_conn = b.hold ? (double)(rss1 - rss0) * 1024.0 / (double)b.made : 0;
    if (json) {
        printf("{\"made\":%lu,\"failed\":%lu,\"seconds\":%.3f,\"per_second\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f",
               b.made, b.failed, secs, rate, p50, p99);
        if (b.hold)
            printf(",\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"bytes_per_conn\":%.0f", rss0,
                   rss1, per_conn);
        printf("}\n");
    } else {
        printf("connections  %lu made, %lu refused or failed, %.2f s\n", b.made, b.failed, secs);
        printf("rate         %.1f /s  (p50 %.2f ms, p99 %.2f ms to the first server byte)\n", rate,
               p50, p99);
        if (b.hold)
            printf("memory       server VmRSS %ld -> %ld KiB: %.0f bytes per held connection\n",
                   rss0, rss1, per_conn);
    }
    ex = b.failed ? TDSX_EXIT_INVALID : TDSX_EXIT_OK;
done:
    for (unsigned long i = 0; cs && i < slots; i++)
        conn_reset(&cs[i]);
    tdsx_free(cs);
    tdsx_free(pfd);
    tdsx_free(b.lat);
    tdsx_buf_free(&hello_frame);
    SSL_CTX_free(b.ctx);
    return ex;
}
