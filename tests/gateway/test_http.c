/*
 * The node's HTTP endpoint (gateway/http.h). First the pure request-head parser, then a real
 * tdsxd serving /healthz, /metrics and /pub/NAME on loopback, with an enterprise that sends
 * it a file so the transfer counters move:
 *  - oversize head -> 431, a body -> 413, POST/PUT -> 405 with Allow, unknown path -> 404,
 *    path traversal and hidden names -> 404, HEAD has headers and no body;
 *  - a slow client is closed at http_timeout without an answer; clients over
 *    http_max_connections are closed on accept;
 *  - /pub files carry a SHA-256 ETag and If-None-Match gives 304;
 *  - /metrics is Prometheus text (every sample `name{labels} value` under its HELP/TYPE) and
 *    its transfer and byte counts change after a transfer;
 *  - a non-loopback http_listen is refused without http_public.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "http.h"
#include "crypto.h"

#define TAGS                                                                                       \
    "grade=general:2 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"
#define HTTP_TIMEOUT_MS 1000

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, ent;
    int http_port;
    char *pub;   /* the centre's publish_dir */
    char *files; /* payloads */
} world_t;

static world_t W;

/* ---- the parser (no sockets) --------------------------------------------------------------- */

static int parse(const char *text, tdsx_http_req_t *req, size_t *head_len)
{
    return tdsx__http_parse(tdsx_bytes(text, strlen(text)), req, head_len);
}

static void parser_accepts_get_and_head(void **state)
{
    (void)state;
    tdsx_http_req_t *req = malloc(sizeof *req);
    assert_non_null(req);
    size_t len;
    const char *get = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"ab\"\r\n\r\nextra";
    assert_int_equal(parse(get, req, &len), 0);
    assert_int_equal(req->method, TDSX_HTTP_GET);
    assert_string_equal(req->path, "/metrics");
    assert_string_equal(req->if_none_match, "\"ab\"");
    assert_int_equal(len, strlen(get) - strlen("extra"));
    /* HTTP/1.0 needs no Host; bare LF line ends; Content-Length 0 is no body. */
    assert_int_equal(parse("HEAD /pub/x HTTP/1.0\nContent-Length: 0\n\n", req, &len), 0);
    assert_int_equal(req->method, TDSX_HTTP_HEAD);
    assert_string_equal(req->path, "/pub/x");
    /* Not complete yet. */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n", req, &len), 1);
    assert_int_equal(parse("GE", req, &len), 1);
    free(req);
}

static void parser_refuses_methods_bodies_and_size(void **state)
{
    (void)state;
    tdsx_http_req_t *req = malloc(sizeof *req);
    assert_non_null(req);
    size_t len;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\n\r\n", req, &len), TDSX_E_HTTP_METHOD);
    assert_int_equal(parse("PUT /pub/x HTTP/1.1\r\nHost: a\r\n\r\n", req, &len),
                     TDSX_E_HTTP_METHOD);
    /* Methods are case-sensitive. */
    assert_int_equal(parse("get / HTTP/1.1\r\nHost: a\r\n\r\n", req, &len), TDSX_E_HTTP_METHOD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", req, &len),
                     TDSX_E_HTTP_BODY);
    assert_int_equal(
        parse("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", req, &len),
        TDSX_E_HTTP_BODY);
    /* A head that does not end within the cap, and one that ends just past it. */
    char *big = malloc(TDSX_HTTP_HEAD_CAP + 64);
    assert_non_null(big);
    memset(big, 'a', TDSX_HTTP_HEAD_CAP + 63);
    memcpy(big, "GET / HTTP/1.1\r\nX-Pad: ", 23);
    big[TDSX_HTTP_HEAD_CAP + 63] = '\0';
    assert_int_equal(parse(big, req, &len), TDSX_E_HTTP_HEAD_TOOBIG);
    memcpy(big + TDSX_HTTP_HEAD_CAP + 59, "\r\n\r\n", 4);
    assert_int_equal(parse(big, req, &len), TDSX_E_HTTP_HEAD_TOOBIG);
    free(big);
    free(req);
}

static void parser_refuses_malformed_heads(void **state)
{
    (void)state;
    tdsx_http_req_t *req = malloc(sizeof *req);
    assert_non_null(req);
    size_t len;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",                                    /* 1.1 without Host */
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",              /* two Hosts */
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",    /* obs-fold */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",                        /* space before colon */
        "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",              /* no colon */
        "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n",                 /* absolute form */
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                        /* empty target */
        "GET / HTTP/1.1x\r\nHost: a\r\n\r\n",                        /* version */
        "GET / http/1.1\r\nHost: a\r\n\r\n",                         /* version case */
        "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",                     /* control in target */
        "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",                     /* control in value */
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", /* list */
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], req, &len);
        if (rc != TDSX_E_HTTP_REQUEST)
            fail_msg("case %zu: got %d (%s)", i, rc, tdsx_err_name(rc));
    }
    assert_int_equal(parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n", req, &len), TDSX_E_HTTP_VERSION);
    assert_int_equal(parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n", req, &len), TDSX_E_HTTP_VERSION);
    free(req);
}

static void pub_names(void **state)
{
    (void)state;
    assert_true(tdsx__http_name_ok("bundle.tdsx"));
    assert_true(tdsx__http_name_ok("crl-2026_11.pem"));
    assert_false(tdsx__http_name_ok(""));
    assert_false(tdsx__http_name_ok(".."));
    assert_false(tdsx__http_name_ok(".hidden"));
    assert_false(tdsx__http_name_ok("a/b"));
    assert_false(tdsx__http_name_ok("%2e%2e"));
    assert_false(tdsx__http_name_ok("a b"));
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_false(tdsx__http_name_ok(long_name));
    long_name[TDSX_HTTP_NAME_MAX] = '\0';
    assert_true(tdsx__http_name_ok(long_name));
}

/* The config keys of the endpoint and the fetcher, as tdsxd --check-config reads them. */
static int config_try(const char *extra, tdsx_config_t *c, tdsx_config_diags_t *d)
{
    char text[4096];
    snprintf(text, sizeof text, "role enterprise\ncredentials /c\ndata_dir /d\nregistry /r\n%s",
             extra);
    return tdsx_config_parse(c, text, strlen(text), NULL, d);
}

static void config_keys(void **state)
{
    (void)state;
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(config_try("", &c, &d), 0);
    assert_int_equal(c.http_timeout_ms, 10000);
    assert_int_equal(c.http_max_connections, 64);
    assert_int_equal(c.bundle_refresh_ms, 3600000);
    assert_int_equal(c.n_bundle_urls, 0);
    assert_int_equal(c.http_public, 0);
    tdsx_config_free(&c);
    assert_int_equal(config_try("http_listen 127.0.0.1:9180\nhttp_timeout 2s\n"
                                "http_max_connections 3\npublish_dir pub\n"
                                "bundle_url https://a.example/b.tdsx\n"
                                "bundle_url http://127.0.0.1:9180/pub/bundle.tdsx\n"
                                "bundle_refresh 5m\n",
                                &c, &d),
                     0);
    assert_int_equal(c.http_timeout_ms, 2000);
    assert_int_equal(c.http_max_connections, 3);
    assert_string_equal(c.publish_dir, "pub");
    assert_int_equal(c.n_bundle_urls, 2);
    assert_string_equal(c.bundle_urls[0], "https://a.example/b.tdsx"); /* order kept */
    assert_string_equal(c.bundle_urls[1], "http://127.0.0.1:9180/pub/bundle.tdsx");
    assert_int_equal(c.bundle_refresh_ms, 300000);
    tdsx_config_free(&c);
    assert_int_equal(config_try("http_listen [::1]:9180\n", &c, &d), 0);
    tdsx_config_free(&c);

    /* Refusals, each with its line. */
    static const char *const bad[] = {
        "bundle_url ftp://a.example/b\n",
        "bundle_url file:///etc/passwd\n",
        "bundle_url http://a b\n",
        "bundle_refresh 500ms\n",
        "http_timeout 50ms\n",
        "http_max_connections 0\n",
        "http_public maybe\n",
        "http_listen 10.0.0.1:9180\n",
        "http_timeout 1s\nhttp_timeout 2s\n",
        "http_listen nohost\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = config_try(bad[i], &c, &d);
        if (rc != TDSX_E_CONFIG || d.n == 0 || d.d[0].line == 0)
            fail_msg("config accepted: %s", bad[i]);
        tdsx_config_free(&c);
    }
    char many[2048] = "";
    for (int i = 0; i < TDSX_CONFIG_MAX_BUNDLE_URLS + 1; i++) {
        size_t len = strlen(many);
        snprintf(many + len, sizeof many - len, "bundle_url http://m%d.example/b\n", i);
    }
    assert_int_equal(config_try(many, &c, &d), TDSX_E_CONFIG);
    assert_int_equal(d.d[0].err, TDSX_E_TOOBIG);
    tdsx_config_free(&c);
    assert_int_equal(config_try("http_listen 0.0.0.0:9180\nhttp_public yes\n", &c, &d), 0);
    assert_int_equal(c.http_public, 1);
    tdsx_config_free(&c);
}

/* publish_dir is served file by file: the credentials (private keys) and the data directory
 * (the store) must never be it, however the path is spelled. */
static void publish_dir_is_never_the_credentials_or_data(void **state)
{
    (void)state;
    char *tmp = tdsx_test_mkdtemp();
    char *cred = tdsx_test_path(tmp, "cred"), *data = tdsx_test_path(tmp, "data"),
         *pub = tdsx_test_path(tmp, "pub");
    assert_int_equal(mkdir(cred, 0700), 0);
    assert_int_equal(mkdir(data, 0700), 0);
    assert_int_equal(mkdir(pub, 0700), 0);
    const char *as[] = {cred, data, NULL, NULL};
    char other[4200], data_slash[4200];
    snprintf(other, sizeof other, "%s/../cred", data);
    snprintf(data_slash, sizeof data_slash, "%s/", data);
    as[2] = other;
    as[3] = data_slash;
    for (size_t i = 0; i < 4; i++) {
        char text[16384];
        snprintf(text, sizeof text,
                 "role centre\ncredentials %s\ndata_dir %s\nregistry /r\n"
                 "http_listen 127.0.0.1:9180\npublish_dir %s\n",
                 cred, data, as[i]);
        tdsx_config_t c;
        tdsx_config_diags_t d;
        int rc = tdsx_config_parse(&c, text, strlen(text), NULL, &d);
        if (rc != TDSX_E_CONFIG || d.n == 0 || d.d[0].line != 6)
            fail_msg("publish_dir %s accepted", as[i]);
        tdsx_config_free(&c);
    }
    char text[16384];
    snprintf(text, sizeof text,
             "role centre\ncredentials %s\ndata_dir %s\nregistry /r\npublish_dir %s\n", cred, data,
             pub);
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_parse(&c, text, strlen(text), NULL, &d), 0);
    tdsx_config_free(&c);
    char *out = NULL;
    (void)tdsx_test_run(&out, "rm -rf '%s'", tmp);
    free(out);
    free(cred);
    free(data);
    free(pub);
    free(tmp);
}

/* ---- a raw HTTP client ---------------------------------------------------------------------- */

typedef struct {
    char *raw; /* the whole answer, NUL-terminated */
    size_t len;
    int status;
    const char *body;
    size_t body_len;
} answer_t;

static int http_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)W.http_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

/* Reads until the server closes (or timeout_ms passes: then *closed = 0). */
static char *read_to_close(int fd, int timeout_ms, size_t *len, int *closed)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    *closed = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long left =
            timeout_ms - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0)
            break;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void answer_parse(answer_t *a)
{
    a->status = 0;
    a->body = NULL;
    a->body_len = 0;
    if (strncmp(a->raw, "HTTP/1.1 ", 9) == 0)
        a->status = (int)strtol(a->raw + 9, NULL, 10);
    const char *end = strstr(a->raw, "\r\n\r\n");
    if (end) {
        a->body = end + 4;
        a->body_len = a->len - (size_t)(a->body - a->raw);
    }
}

/* Sends raw request bytes and reads the whole answer (the server closes after it). */
static void http_raw(const void *req, size_t req_len, answer_t *a)
{
    int fd = http_connect();
    send_all(fd, req, req_len);
    int closed;
    a->raw = read_to_close(fd, 5000, &a->len, &closed);
    close(fd);
    assert_true(closed);
    answer_parse(a);
}

static void http_req(const char *method, const char *path, const char *extra, answer_t *a)
{
    char req[2048];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, path,
             extra ? extra : "");
    http_raw(req, strlen(req), a);
}

/* The value of header `name` (case-insensitive) in the answer's head, "" when absent. */
static void header(const answer_t *a, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *l = strstr(a->raw, "\r\n"); l && l + 2 < (a->body ? a->body : l + 3);
         l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)strcspn(v, "\r"), v);
            return;
        }
    }
}

static void answer_free(answer_t *a)
{
    free(a->raw);
    a->raw = NULL;
}

/* ---- world -------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    tdsx_test_province_init(&W.p);
    tdsx_test_node_issue(&W.p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(&W.p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.pub = tdsx_test_path(W.p.dir, "pub");
    W.files = tdsx_test_path(W.p.dir, "files");
    assert_int_equal(mkdir(W.pub, 0700), 0);
    assert_int_equal(mkdir(W.files, 0700), 0);
    W.http_port = tdsx_test_free_port();
    char extra[4096];
    snprintf(extra, sizeof extra,
             "http_listen 127.0.0.1:%d\npublish_dir %s\nhttp_timeout %dms\n"
             "http_max_connections 4\n",
             W.http_port, W.pub, HTTP_TIMEOUT_MS);
    tdsx_test_node_config(&W.p, &W.centre, extra);
    snprintf(extra, sizeof extra, "peer %s 127.0.0.1:%d\n", W.centre.id, W.centre.port);
    tdsx_test_node_config(&W.p, &W.ent, extra);
    tdsx_test_node_start(&W.centre);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.centre, 5000, "http.listening", NULL));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.centre);
    free(W.pub);
    free(W.files);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- against the daemon ------------------------------------------------------------------- */

static void healthz_ok_and_head_has_no_body(void **state)
{
    (void)state;
    answer_t a;
    char v[256];
    http_req("GET", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 3);
    assert_memory_equal(a.body, "ok\n", 3);
    header(&a, "Connection", v, sizeof v);
    assert_string_equal(v, "close");
    answer_free(&a);
    http_req("HEAD", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
    header(&a, "Content-Length", v, sizeof v);
    assert_string_equal(v, "3");
    assert_int_equal(a.body_len, 0);
    answer_free(&a);
}

static void unknown_paths_and_traversal_are_404(void **state)
{
    (void)state;
    /* A real file one level above publish_dir: it must stay unreachable. */
    char *outside = tdsx_test_path(W.p.dir, "secret.txt");
    tdsx_test_write_file(outside, "secret", 6);
    static const char *const paths[] = {
        "/",
        "/nope",
        "/metricsx",
        "/pub/",
        "/pub/../secret.txt",
        "/pub/%2e%2e/secret.txt",
        "/pub/..%2fsecret.txt",
        "/pub/.hidden",
        "/pub/sub/x",
        "/pub/missing.tdsx",
        "/healthz/x",
    };
    char *hidden = tdsx_test_path(W.pub, ".hidden");
    tdsx_test_write_file(hidden, "h", 1);
    char *sub = tdsx_test_path(W.pub, "sub");
    assert_int_equal(mkdir(sub, 0700), 0);
    char *subx = tdsx_test_path(sub, "x");
    tdsx_test_write_file(subx, "x", 1);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        answer_t a;
        http_req("GET", paths[i], NULL, &a);
        if (a.status != 404)
            fail_msg("%s: status %d", paths[i], a.status);
        assert_null(strstr(a.raw, "secret\n"));
        assert_true(a.body_len < 6 || strstr(a.body, "secret") == NULL);
        answer_free(&a);
    }
    /* A directory name in publish_dir is not a file either. */
    answer_t a;
    http_req("GET", "/pub/sub", NULL, &a);
    assert_int_equal(a.status, 404);
    answer_free(&a);
    unlink(subx);
    rmdir(sub);
    unlink(hidden);
    free(subx);
    free(sub);
    free(hidden);
    free(outside);
}

static void other_methods_are_405(void **state)
{
    (void)state;
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    char v[256];
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        answer_t a;
        http_req(methods[i], "/metrics", NULL, &a);
        if (a.status != 405)
            fail_msg("%s: status %d", methods[i], a.status);
        header(&a, "Allow", v, sizeof v);
        assert_string_equal(v, "GET, HEAD");
        answer_free(&a);
    }
    /* A POST with a body: still 405, and the answer arrives whole (no reset). */
    const char post[] = "POST /pub/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    answer_t a;
    http_raw(post, sizeof post - 1, &a);
    assert_int_equal(a.status, 405);
    answer_free(&a);
}

static void body_is_413_bad_head_is_400(void **state)
{
    (void)state;
    answer_t a;
    http_req("GET", "/metrics", "Content-Length: 10\r\n", &a);
    assert_int_equal(a.status, 413);
    answer_free(&a);
    const char nohost[] = "GET /healthz HTTP/1.1\r\n\r\n";
    http_raw(nohost, sizeof nohost - 1, &a);
    assert_int_equal(a.status, 400);
    answer_free(&a);
    const char v2[] = "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n";
    http_raw(v2, sizeof v2 - 1, &a);
    assert_int_equal(a.status, 505);
    answer_free(&a);
}

static void oversize_head_is_431(void **state)
{
    (void)state;
    size_t n = TDSX_HTTP_HEAD_CAP + 1024;
    char *req = malloc(n);
    assert_non_null(req);
    memset(req, 'a', n);
    memcpy(req, "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: ", 39);
    memcpy(req + n - 4, "\r\n\r\n", 4);
    answer_t a;
    http_raw(req, n, &a);
    assert_int_equal(a.status, 431);
    answer_free(&a);
    free(req);
    /* The daemon still serves. */
    http_req("GET", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
    answer_free(&a);
}

static void slow_client_is_closed_at_timeout(void **state)
{
    (void)state;
    /* Half a request, then silence: closed without an answer after http_timeout. */
    int fd = http_connect();
    send_all(fd, "GET /healthz HT", 15);
    size_t len;
    int closed;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *got = read_to_close(fd, HTTP_TIMEOUT_MS * 5, &len, &closed);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(closed);
    assert_int_equal(len, 0);
    assert_true(ms >= HTTP_TIMEOUT_MS - 100);
    free(got);
    close(fd);
    /* Trickling bytes does not extend the deadline (it is for the whole head). */
    fd = http_connect();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *slow = "GET /healthz HTTP/1.1\r\nHost: a\r\n";
    int was_closed = 0;
    for (size_t i = 0; slow[i] && !was_closed; i++) {
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1)
            was_closed = 1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 150) > 0) {
            char c;
            if (recv(fd, &c, 1, 0) <= 0)
                was_closed = 1;
        }
    }
    if (!was_closed) {
        got = read_to_close(fd, HTTP_TIMEOUT_MS * 5, &len, &closed);
        assert_true(closed);
        assert_int_equal(len, 0);
        free(got);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < HTTP_TIMEOUT_MS * 4);
    close(fd);
    assert_true(tdsx_test_log_wait(&W.centre, 2000, "http.timeout", NULL));
}

static void clients_over_the_limit_are_closed(void **state)
{
    (void)state;
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = http_connect();
    /* Let the daemon accept them (a loaded CI machine may take a while), well inside
     * http_timeout after which it would close them itself. */
    usleep(300000);
    int fd = http_connect();
    size_t len;
    int closed;
    char *got = read_to_close(fd, HTTP_TIMEOUT_MS / 2, &len, &closed);
    assert_true(closed); /* well before http_timeout */
    assert_int_equal(len, 0);
    free(got);
    close(fd);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    assert_true(tdsx_test_log_wait(&W.centre, 2000, "http.too_many_clients", NULL));
    /* Once they are gone, a new client is served. */
    answer_t a;
    for (int i = 0; i < 50; i++) {
        http_req("GET", "/healthz", NULL, &a);
        if (a.status == 200)
            break;
        answer_free(&a);
        usleep(50000);
    }
    assert_int_equal(a.status, 200);
    answer_free(&a);
}

static void pub_file_with_etag_and_304(void **state)
{
    (void)state;
    uint8_t data[5000];
    randombytes_buf(data, sizeof data);
    char *path = tdsx_test_path(W.pub, "bundle.tdsx");
    tdsx_test_write_file(path, data, sizeof data);
    uint8_t h[32];
    assert_int_equal(tdsx_sha256(data, sizeof data, h), 0);
    char want[70];
    want[0] = '"';
    tdsx_hex_encode(want + 1, h, 32);
    memcpy(want + 65, "\"", 2);

    answer_t a;
    char etag[256], v[256];
    http_req("GET", "/pub/bundle.tdsx", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, sizeof data);
    assert_memory_equal(a.body, data, sizeof data);
    header(&a, "ETag", etag, sizeof etag);
    assert_string_equal(etag, want);
    header(&a, "Content-Length", v, sizeof v);
    assert_string_equal(v, "5000");
    answer_free(&a);

    /* HEAD: the same headers, no body. */
    http_req("HEAD", "/pub/bundle.tdsx", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 0);
    header(&a, "Content-Length", v, sizeof v);
    assert_string_equal(v, "5000");
    header(&a, "ETag", v, sizeof v);
    assert_string_equal(v, want);
    answer_free(&a);

    /* If-None-Match with the current tag (alone, weak, or in a list) -> 304, no body. */
    for (int i = 0; i < 3; i++) {
        char tag[300], hdr[400];
        if (i == 0)
            snprintf(tag, sizeof tag, "%s", want);
        else if (i == 1)
            snprintf(tag, sizeof tag, "W/%s", want);
        else
            snprintf(tag, sizeof tag, "\"x\", %s", want);
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", tag);
        http_req("GET", "/pub/bundle.tdsx", hdr, &a);
        if (a.status != 304)
            fail_msg("If-None-Match: %s -> %d", tag, a.status);
        assert_int_equal(a.body_len, 0);
        header(&a, "ETag", v, sizeof v);
        assert_string_equal(v, want);
        answer_free(&a);
    }
    /* The file changes: the old tag no longer matches, the new body comes with a new tag. */
    data[0] ^= 1;
    tdsx_test_write_file(path, data, sizeof data);
    char hdr[400];
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", want);
    http_req("GET", "/pub/bundle.tdsx", hdr, &a);
    assert_int_equal(a.status, 200);
    assert_memory_equal(a.body, data, sizeof data);
    header(&a, "ETag", v, sizeof v);
    assert_string_not_equal(v, want);
    answer_free(&a);
    free(path);
}

/* A large /pub file for the slow-client tests: bigger than what loopback socket buffers hold. */
#define BIG_FILE_LEN (15u * 1024u * 1024u)

static uint8_t *big_file(void)
{
    uint8_t *data = malloc(BIG_FILE_LEN);
    assert_non_null(data);
    randombytes_buf(data, BIG_FILE_LEN);
    char *path = tdsx_test_path(W.pub, "big.bin");
    tdsx_test_write_file(path, data, BIG_FILE_LEN);
    free(path);
    return data;
}

/* A client with a small receive window that sent GET /pub/big.bin. */
static int big_request(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rcv = 64 * 1024;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv), 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)W.http_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *req = "GET /pub/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    return fd;
}

static void slow_reader_gets_the_whole_file(void **state)
{
    (void)state;
    uint8_t *data = big_file();
    /* Reads 512 KiB every 100 ms: the answer takes about 3 s, three times http_timeout and the
     * linger, yet the client keeps reading, so it must get every byte. */
    int fd = big_request();
    size_t cap = BIG_FILE_LEN + 4096, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    int closed = 0;
    while (!closed && n < cap) {
        size_t chunk = 0;
        while (chunk < 512u * 1024u && n < cap) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 5000) <= 0)
                break;
            ssize_t r = recv(fd, buf + n, cap - n < 65536 ? cap - n : 65536, 0);
            if (r <= 0) {
                closed = 1;
                break;
            }
            n += (size_t)r;
            chunk += (size_t)r;
        }
        if (chunk == 0 && !closed)
            break;
        usleep(100000);
    }
    buf[n] = '\0';
    close(fd);
    answer_t a = {buf, n, 0, NULL, 0};
    answer_parse(&a);
    assert_int_equal(a.status, 200);
    if (a.body_len != BIG_FILE_LEN)
        fail_msg("a slow reader got %zu of %u body bytes", a.body_len, BIG_FILE_LEN);
    assert_memory_equal(a.body, data, BIG_FILE_LEN);
    answer_free(&a);
    free(data);
}

static void client_that_stops_reading_is_closed(void **state)
{
    (void)state;
    uint8_t *data = big_file();
    free(data);
    /* Never reads: the write makes no progress, so the server gives up after http_timeout
     * (not never: the connection and its 15 MiB answer would be held for ever). */
    int fd = big_request();
    usleep(HTTP_TIMEOUT_MS * 3 * 1000);
    size_t len;
    int closed;
    char *got = read_to_close(fd, HTTP_TIMEOUT_MS * 5, &len, &closed);
    close(fd);
    assert_true(closed);
    assert_true(len < BIG_FILE_LEN);
    free(got);
    assert_true(tdsx_test_log_wait(&W.centre, 2000, "http.write_stalled", NULL));
}

/* ---- metrics ------------------------------------------------------------------------------- */

/* Checks the exposition format line by line; fails on the first bad line. */
static void metrics_check_format(const char *text)
{
    char families[256][96];
    size_t n_fam = 0;
    char help_for[96] = "";
    for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl); /* every line ends with LF, the last one too */
        size_t len = (size_t)(nl - l);
        char line[1024];
        assert_true(len < sizeof line);
        memcpy(line, l, len);
        line[len] = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_true(sscanf(line + 7, "%95s", help_for) == 1);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            assert_int_equal(sscanf(line + 7, "%95s %31s", name, type), 2);
            assert_string_equal(name, help_for); /* HELP comes first */
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
            assert_true(n_fam < 256);
            snprintf(families[n_fam++], sizeof families[0], "%s", name);
        } else {
            /* name{labels} value  |  name value */
            const char *p = line;
            assert_true(isalpha((unsigned char)*p) || *p == '_');
            while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
                p++;
            char name[96];
            snprintf(name, sizeof name, "%.*s", (int)(p - line), line);
            if (*p == '{') {
                p++;
                while (*p != '}') {
                    assert_true(isalpha((unsigned char)*p) || *p == '_');
                    while (isalnum((unsigned char)*p) || *p == '_')
                        p++;
                    assert_true(p[0] == '=' && p[1] == '"');
                    p += 2;
                    while (*p && *p != '"') {
                        if (*p == '\\')
                            p++;
                        p++;
                    }
                    assert_int_equal(*p, '"');
                    p++;
                    if (*p == ',')
                        p++;
                    else
                        assert_int_equal(*p, '}');
                }
                p++;
            }
            assert_int_equal(*p, ' ');
            char *end;
            (void)strtod(p + 1, &end);
            assert_true(end > p + 1 && *end == '\0');
            /* The sample belongs to the family declared last. */
            assert_true(n_fam > 0);
            if (strcmp(name, families[n_fam - 1]) != 0)
                fail_msg("sample %s outside its family (%s)", name, families[n_fam - 1]);
        }
    }
    assert_true(n_fam > 20);
}

/* The value of the sample line starting with `prefix` followed by a space, or -1. */
static double metric(const char *text, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, sample, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    return -1;
}

static char *get_metrics(void)
{
    answer_t a;
    char v[256];
    http_req("GET", "/metrics", NULL, &a);
    assert_int_equal(a.status, 200);
    header(&a, "Content-Type", v, sizeof v);
    assert_non_null(strstr(v, "version=0.0.4"));
    char *text = strndup(a.body, a.body_len);
    assert_non_null(text);
    answer_free(&a);
    return text;
}

#define CORE_TAGS                                                                                  \
    "grade=core domain=production category=production.process personal=none library=base "         \
    "source=enterprise"
#define OUT_REFUSED_CORE                                                                           \
    "tdsx_transfers_total{direction=\"out\",outcome=\"refused\",grade=\"core\"}"
#define IN_RECEIPTED                                                                               \
    "tdsx_transfers_total{direction=\"in\",outcome=\"receipted\",grade=\"general\"}"

static void metrics_format_and_counts_after_a_transfer(void **state)
{
    (void)state;
    char *before = get_metrics();
    metrics_check_format(before);
    assert_true(metric(before, "tdsx_connections_open") >= 0);
    assert_true(metric(before, "tdsx_certificate_expires_in_seconds{purpose=\"auth\"}") > 86400);
    assert_true(metric(before, "tdsx_log_entries") >= 1);
    assert_true(metric(before, "tdsx_http_responses_total{code=\"404\"}") >= 1);
    assert_true(metric(before, "tdsx_bundle_serial") == 0); /* no bundle configured */
    double rec0 = metric(before, IN_RECEIPTED);
    double bytes0 = metric(before, "tdsx_bytes_in_total");
    double receipts0 = metric(before, "tdsx_receipts_total{direction=\"in\"}");
    assert_true(rec0 >= 0 && bytes0 >= 0 && receipts0 >= 0);

    /* The enterprise sends the centre a 200 KiB file. */
    size_t n = 200 * 1024;
    uint8_t *data = malloc(n);
    assert_non_null(data);
    randombytes_buf(data, n);
    char *file = tdsx_test_path(W.files, "m.bin");
    tdsx_test_write_file(file, data, n);
    free(data);
    char *out = NULL;
    int rc = 1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        free(out);
        out = NULL;
        rc = tdsx_test_run(&out,
                           "tdsx send --to '%s' '%s' --dataset m1 --tags '%s' --socket '%s' 2>&1",
                           W.centre.id, file, TAGS, W.ent.sock);
        if (rc)
            usleep(200000); /* the link is still coming up */
    }
    if (rc)
        fail_msg("tdsx send: %s", out ? out : "");
    assert_non_null(strstr(out, "receipted"));
    free(out);
    free(file);

    char *after = get_metrics();
    metrics_check_format(after);
    assert_true(metric(after, IN_RECEIPTED) == rec0 + 1);
    assert_true(metric(after, "tdsx_receipts_total{direction=\"in\"}") == receipts0 + 1);
    assert_true(metric(after, "tdsx_bytes_in_total") >= bytes0 + (double)n);
    /* Nothing was counted on the sending side of the centre. */
    assert_true(metric(after, "tdsx_transfers_total{direction=\"out\",outcome=\"receipted\","
                              "grade=\"general\"}") == 0);
    assert_true(metric(after, "tdsx_log_entries") > metric(before, "tdsx_log_entries"));

    /* The centre tries to send core data: its own policy refuses before anything leaves, and
     * that is counted too, as an outbound refusal of grade core. */
    double core0 = metric(after, OUT_REFUSED_CORE);
    assert_true(core0 >= 0);
    file = tdsx_test_path(W.files, "core.bin");
    tdsx_test_write_file(file, "core", 4);
    out = NULL;
    rc = tdsx_test_run(&out, "tdsx send --to '%s' '%s' --dataset c1 --tags '%s' --socket '%s' 2>&1",
                       W.ent.id, file, CORE_TAGS, W.centre.sock);
    assert_int_not_equal(rc, 0);
    free(out);
    free(file);
    char *last = get_metrics();
    assert_true(metric(last, OUT_REFUSED_CORE) == core0 + 1);
    assert_true(metric(last, IN_RECEIPTED) == rec0 + 1); /* nothing else moved */
    free(last);
    free(before);
    free(after);
}

static void non_loopback_listen_needs_http_public(void **state)
{
    (void)state;
    char *conf = tdsx_test_path(W.p.dir, "public.conf");
    char text[2048];
    snprintf(text, sizeof text,
             "role centre\ncredentials %s\ndata_dir %s\nregistry %s\nhttp_listen 0.0.0.0:%d\n",
             W.centre.creds, W.centre.data, W.p.registry, W.http_port);
    tdsx_test_write_file(conf, text, strlen(text));
    char *out = NULL;
    int rc = tdsx_test_run(&out, "tdsxd --check-config -c '%s' 2>&1", conf);
    assert_int_not_equal(rc, 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "http_public"));
    free(out);
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, "http_public yes\n");
    tdsx_test_write_file(conf, text, strlen(text));
    out = NULL;
    rc = tdsx_test_run(&out, "tdsxd --check-config -c '%s' 2>&1", conf);
    if (rc)
        fail_msg("%s", out ? out : "");
    free(out);
    free(conf);
}

/* A second daemon asked to listen on the same HTTP port refuses to start, and says why. */
static void http_port_in_use_stops_the_start(void **state)
{
    (void)state;
    tdsx_test_node_t dup;
    tdsx_test_node_issue(&W.p, &dup, "dup", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    char extra[256];
    snprintf(extra, sizeof extra, "http_listen 127.0.0.1:%d\n", W.http_port);
    tdsx_test_node_config(&W.p, &dup, extra);
    char *out = NULL;
    int rc = tdsx_test_run(&out, "timeout 20 tdsxd -c '%s' 2>&1", dup.conf);
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, 124); /* it did not hang until the timeout */
    assert_non_null(out);
    assert_non_null(strstr(out, "http.listen_failed"));
    assert_null(strstr(out, "node.ready"));
    free(out);
    tdsx_test_node_free(&dup);
    /* The first daemon still serves. */
    answer_t a;
    http_req("GET", "/healthz", NULL, &a);
    assert_int_equal(a.status, 200);
    answer_free(&a);
}

/* SIGTERM with a transfer in flight: while the centre drains, /healthz says 503 "draining";
 * once it stopped nothing listens on the HTTP port. The sender is frozen (SIGSTOP) as soon as
 * the centre started receiving its 256 MiB, so the stream stays open through the drain. */
static void draining_is_503_then_the_endpoint_closes(void **state)
{
    (void)state;
    char *file = tdsx_test_path(W.files, "big.bin");
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    uint8_t *chunk = malloc(1u << 20);
    assert_non_null(chunk);
    for (int i = 0; i < 256; i++) {
        randombytes_buf(chunk, 1u << 20);
        assert_int_equal(fwrite(chunk, 1, 1u << 20, f), 1u << 20);
    }
    free(chunk);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(tdsx_test_run(NULL,
                                   "tdsx send --to '%s' '%s' --dataset big --tags '%s' "
                                   "--socket '%s' >/dev/null 2>&1 &",
                                   W.centre.id, file, TAGS, W.ent.sock),
                     0);
    assert_true(
        tdsx_test_log_wait(&W.centre, 30000, "transfer.started", "\"dataset\":\"big\"", NULL));
    kill(W.ent.pid, SIGSTOP);
    kill(W.centre.pid, SIGTERM);
    char v[256];
    int code = 0;
    answer_t a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < 100 && code != 503; i++) {
        answer_free(&a);
        http_req("GET", "/healthz", NULL, &a);
        code = a.status;
        if (code != 503)
            usleep(10000);
    }
    kill(W.ent.pid, SIGCONT);
    assert_int_equal(code, 503);
    assert_non_null(a.body);
    assert_non_null(strstr(a.body, "draining"));
    header(&a, "Cache-Control", v, sizeof v);
    assert_string_equal(v, "no-store");
    answer_free(&a);
    tdsx_test_node_stop(&W.centre, 15000);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    /* Stopped: nothing listens on the HTTP port any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)W.http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    unlink(file);
    free(file);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(parser_accepts_get_and_head),
        cmocka_unit_test(parser_refuses_methods_bodies_and_size),
        cmocka_unit_test(parser_refuses_malformed_heads),
        cmocka_unit_test(pub_names),
        cmocka_unit_test(config_keys),
        cmocka_unit_test(publish_dir_is_never_the_credentials_or_data),
    };
    const struct CMUnitTest daemon[] = {
        cmocka_unit_test(healthz_ok_and_head_has_no_body),
        cmocka_unit_test(unknown_paths_and_traversal_are_404),
        cmocka_unit_test(other_methods_are_405),
        cmocka_unit_test(body_is_413_bad_head_is_400),
        cmocka_unit_test(oversize_head_is_431),
        cmocka_unit_test(slow_client_is_closed_at_timeout),
        cmocka_unit_test(clients_over_the_limit_are_closed),
        cmocka_unit_test(pub_file_with_etag_and_304),
        cmocka_unit_test(slow_reader_gets_the_whole_file),
        cmocka_unit_test(client_that_stops_reading_is_closed),
        cmocka_unit_test(metrics_format_and_counts_after_a_transfer),
        cmocka_unit_test(non_loopback_listen_needs_http_public),
        cmocka_unit_test(http_port_in_use_stops_the_start),
        cmocka_unit_test(draining_is_503_then_the_endpoint_closes),
    };
    int rc = cmocka_run_group_tests_name("http.parser", pure, NULL, NULL);
    return rc | cmocka_run_group_tests_name("http.daemon", daemon, setup, teardown);
}
