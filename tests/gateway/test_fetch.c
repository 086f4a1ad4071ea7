/*
 * The trust-bundle fetcher (gateway/fetch.c): libcurl's multi-socket interface on a libuv
 * loop in this process, fetching from a real tdsxd's /pub (the centre's publish_dir). The
 * bodies go to a callback here that plays the bundle engine: it takes bodies that start with
 * "BUNDLE" and refuses anything else.
 *  - the first mirror down (closed port), the second is used;
 *  - the next round sends If-None-Match and gets 304: nothing is applied twice;
 *  - a mirror serving garbage is refused (and its tag never remembered), the next mirror used;
 *  - every mirror failing (404) backs off and retries until the file appears;
 *  - a body over the cap fails without reaching the engine;
 *  - closing during an attempt to a server that never answers frees everything.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "http.h"

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, ent, fresh, late;
    int http_port, ent_http_port;
    char *pub;
} world_t;

static world_t W;

/* The engine stand-in: what it was given, and what it answers. */
typedef struct {
    int calls, taken, refused;
    int expired; /* what engine_in_force_ok says: the bundle in force expired */
    char last_url[512];
    uint8_t last[8192];
    size_t last_len;
} engine_t;

static int engine_apply(void *ud, tdsx_bytes_t body, const char *url)
{
    engine_t *e = ud;
    e->calls++;
    snprintf(e->last_url, sizeof e->last_url, "%s", url);
    e->last_len = body.n < sizeof e->last ? body.n : sizeof e->last;
    memcpy(e->last, body.p, e->last_len);
    if (body.n < 6 || memcmp(body.p, "BUNDLE", 6) != 0) {
        e->refused++;
        return TDSX_E_BUNDLE;
    }
    e->taken++;
    return 0;
}

static int engine_in_force_ok(void *ud)
{
    const engine_t *e = ud;
    return !e->expired;
}

static void publish(const char *name, const char *text)
{
    char *path = tdsx_test_path(W.pub, name);
    tdsx_test_write_file(path, text, strlen(text));
    free(path);
}

static void unpublish(const char *name)
{
    char *path = tdsx_test_path(W.pub, name);
    unlink(path);
    free(path);
}

static void url_of(char *out, size_t size, const char *name)
{
    snprintf(out, size, "http://127.0.0.1:%d/pub/%s", W.http_port, name);
}

/* ---- driving the loop ------------------------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick;
    tdsx_fetch_t *f;
    engine_t e;
    int (*done)(const tdsx_fetch_state_t *st, const engine_t *e);
    int reached;
} run_t;

static void on_tick(uv_timer_t *t)
{
    run_t *r = t->data;
    tdsx_fetch_state_t st;
    tdsx__fetch_state(r->f, &st);
    if (r->done(&st, &r->e)) {
        r->reached = 1;
        uv_stop(&r->loop);
    }
}

static void opts_default(tdsx_fetch_opts_t *o, const char *const *urls, size_t n)
{
    memset(o, 0, sizeof *o);
    o->urls = urls;
    o->n_urls = n;
    o->refresh_ms = 60000;
    o->connect_timeout_ms = 2000;
    o->timeout_ms = 5000;
    o->body_cap = 1 << 20;
    o->retry_min_ms = 200;
    o->retry_max_ms = 400;
}

static void run_start(run_t *r, const tdsx_fetch_opts_t *o)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(uv_loop_init(&r->loop), 0);
    assert_int_equal(tdsx__fetch_new(&r->loop, o, engine_apply, &r->e, &r->f), 0);
    uv_timer_init(&r->loop, &r->tick);
    r->tick.data = r;
    tdsx__fetch_start(r->f);
}

/* Runs the loop until done() holds (checked every 20 ms) or timeout_ms passed. */
static int run_until(run_t *r, int (*done)(const tdsx_fetch_state_t *, const engine_t *),
                     int timeout_ms)
{
    r->done = done;
    r->reached = 0;
    uv_timer_start(&r->tick, on_tick, 20, 20);
    uint64_t end = uv_now(&r->loop) + (uint64_t)timeout_ms;
    while (!r->reached && uv_now(&r->loop) < end) {
        uv_run(&r->loop, UV_RUN_ONCE);
        uv_update_time(&r->loop);
    }
    uv_timer_stop(&r->tick);
    return r->reached;
}

static void run_end(run_t *r, tdsx_fetch_state_t *st)
{
    if (st)
        tdsx__fetch_state(r->f, st);
    tdsx__fetch_close(r->f);
    uv_close((uv_handle_t *)&r->tick, NULL);
    /* Every handle (curl's polls and timers included) closes: the loop ends by itself. */
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

/* ---- world ----------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    tdsx_test_province_init(&W.p);
    tdsx_test_node_issue(&W.p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    /* Registered before the centre loads its registry file: the centre must know it. */
    tdsx_test_node_issue(&W.p, &W.late, "late", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.pub = tdsx_test_path(W.p.dir, "pub");
    assert_int_equal(mkdir(W.pub, 0700), 0);
    W.http_port = tdsx_test_free_port();
    char extra[2048];
    snprintf(extra, sizeof extra, "http_listen 127.0.0.1:%d\npublish_dir %s\n", W.http_port, W.pub);
    tdsx_test_node_config(&W.p, &W.centre, extra);
    tdsx_test_node_start(&W.centre);
    assert_true(tdsx_test_log_wait(&W.centre, 5000, "http.listening", NULL));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.late);
    tdsx_test_node_free(&W.fresh);
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.centre);
    free(W.pub);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static int applied_once(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)e;
    return st->applied >= 1;
}

static int not_modified_once(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)e;
    return st->not_modified >= 1;
}

static void first_mirror_down_second_used_then_304(void **state)
{
    (void)state;
    publish("bundle.tdsx", "BUNDLE serial 1");
    char down[256], up[256];
    snprintf(down, sizeof down, "http://127.0.0.1:%d/pub/bundle.tdsx", tdsx_test_free_port());
    url_of(up, sizeof up, "bundle.tdsx");
    const char *urls[] = {down, up};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 2);
    o.refresh_ms = 300;
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, applied_once, 10000));
    assert_int_equal(r.e.calls, 1);
    assert_string_equal(r.e.last_url, up);
    assert_int_equal(r.e.last_len, 15);
    assert_memory_equal(r.e.last, "BUNDLE serial 1", 15);
    tdsx_fetch_state_t st;
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.attempts, 2);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.last_rc, 0);
    assert_int_equal(st.last_status, 200);
    assert_true(st.last_ok_at > 0);

    /* Next round (300 ms later): the first mirror is still down, the second answers 304 to
     * the ETag it gave, and the engine hears nothing. */
    assert_true(run_until(&r, not_modified_once, 10000));
    assert_int_equal(r.e.calls, 1);
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.last_status, 304);
    assert_int_equal(st.applied, 1);
    assert_true(st.rounds >= 2);
    run_end(&r, NULL);
}

static void garbage_mirror_refused_next_used(void **state)
{
    (void)state;
    publish("garbage.tdsx", "<html>not a bundle</html>");
    publish("bundle.tdsx", "BUNDLE serial 2");
    char bad[256], good[256];
    url_of(bad, sizeof bad, "garbage.tdsx");
    url_of(good, sizeof good, "bundle.tdsx");
    const char *urls[] = {bad, good};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 2);
    o.refresh_ms = 300;
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, applied_once, 10000));
    assert_int_equal(r.e.calls, 2);
    assert_int_equal(r.e.refused, 1);
    assert_int_equal(r.e.taken, 1);
    assert_string_equal(r.e.last_url, good);
    tdsx_fetch_state_t st;
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.failures, 1);
    /* Next round: the garbage mirror's tag was never kept, so it serves the body again (not
     * a 304) and is refused again; the good mirror answers 304. */
    int calls = r.e.calls;
    assert_true(run_until(&r, not_modified_once, 10000));
    assert_int_equal(r.e.calls, calls + 1);
    assert_int_equal(r.e.refused, 2);
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.applied, 1);
    run_end(&r, NULL);
    unpublish("garbage.tdsx");
}

static int called_twice(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)st;
    return e->calls >= 2;
}

static void stale_mirror_skipped_while_the_bundle_in_force_expired(void **state)
{
    (void)state;
    publish("stale.tdsx", "BUNDLE serial 4");
    publish("fresh.tdsx", "BUNDLE serial 5");
    char stale[256], fresh[256];
    url_of(stale, sizeof stale, "stale.tdsx");
    url_of(fresh, sizeof fresh, "fresh.tdsx");
    const char *urls[] = {stale, fresh};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 2);
    o.in_force_ok = engine_in_force_ok;
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, applied_once, 10000));
    assert_string_equal(r.e.last_url, stale);
    /* While the bundle in force is good, the first mirror's 304 ends the round. */
    tdsx__fetch_now(r.f);
    assert_true(run_until(&r, not_modified_once, 10000));
    assert_int_equal(r.e.calls, 1);
    tdsx_fetch_state_t st;
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.last_rc, 0);
    assert_int_equal(st.failures, 0);
    /* Once it expired, the same 304 is a stale mirror: the next one is asked and its bundle
     * reaches the engine (the node would otherwise wait refresh_ms with exchange stopped). */
    r.e.expired = 1;
    tdsx__fetch_now(r.f);
    assert_true(run_until(&r, called_twice, 10000));
    assert_string_equal(r.e.last_url, fresh);
    assert_int_equal(r.e.last_len, 15);
    assert_memory_equal(r.e.last, "BUNDLE serial 5", 15);
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.not_modified, 2);
    assert_int_equal(st.last_rc, 0);
    assert_int_equal(st.last_status, 200);
    run_end(&r, NULL);
    unpublish("stale.tdsx");
    unpublish("fresh.tdsx");
}

static int three_rounds(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)e;
    return st->rounds >= 3;
}

static void all_mirrors_failing_back_off_and_retry(void **state)
{
    (void)state;
    char a[256], b[256];
    url_of(a, sizeof a, "late-a.tdsx");
    url_of(b, sizeof b, "late-b.tdsx");
    const char *urls[] = {a, b};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 2);
    run_t r;
    run_start(&r, &o);
    /* 404 everywhere: rounds repeat after the backoff (200-400 ms), not after refresh (60 s). */
    assert_true(run_until(&r, three_rounds, 10000));
    tdsx_fetch_state_t st;
    tdsx__fetch_state(r.f, &st);
    assert_int_equal(r.e.calls, 0);
    assert_int_equal(st.last_rc, TDSX_E_FETCH_STATUS);
    assert_int_equal(st.last_status, 404);
    assert_int_equal(st.failures, st.attempts);
    assert_int_equal(st.last_ok_at, 0);
    /* The file appears on the second mirror: a retry gets it. */
    publish("late-b.tdsx", "BUNDLE serial 3");
    assert_true(run_until(&r, applied_once, 10000));
    assert_string_equal(r.e.last_url, b);
    run_end(&r, NULL);
    unpublish("late-b.tdsx");
}

static int one_failure(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)e;
    return st->failures >= 1;
}

static void body_over_cap_fails(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    memcpy(big, "BUNDLE", 6);
    big[sizeof big - 1] = '\0';
    publish("big.tdsx", big);
    char u[256];
    url_of(u, sizeof u, "big.tdsx");
    const char *urls[] = {u};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 1);
    o.body_cap = 1000;
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, one_failure, 10000));
    tdsx_fetch_state_t st;
    run_end(&r, &st);
    assert_int_equal(r.e.calls, 0);
    assert_int_equal(st.last_rc, TDSX_E_FETCH);
    assert_int_equal(st.applied, 0);
    unpublish("big.tdsx");
}

static int one_attempt_started(const tdsx_fetch_state_t *st, const engine_t *e)
{
    (void)e;
    return st->rounds >= 1;
}

static void close_during_a_silent_attempt(void **state)
{
    (void)state;
    /* A listener that accepts (the kernel does) but never answers. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/pub/bundle.tdsx", ntohs(a.sin_port));
    const char *urls[] = {u};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 1);
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, one_attempt_started, 5000));
    /* Let curl connect and send, then close with the answer outstanding. */
    engine_t before = r.e;
    for (int i = 0; i < 10; i++)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    tdsx_fetch_state_t st;
    run_end(&r, &st);
    assert_int_equal(st.attempts, 0); /* it never finished */
    assert_int_equal(r.e.calls, before.calls);
    close(fd);
}

/* ---- https ----------------------------------------------------------------------------------- */

/* A throw-away CA, a server certificate for 127.0.0.1 it issued, and an unrelated CA. */
static void make_tls_files(const char *dir)
{
    char *out = NULL;
    int rc = tdsx_test_run(
        &out,
        "cd '%s' && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=mirror-ca -keyout ca.key -out ca.pem && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=other-ca -keyout other.key -out other.pem && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 "
        "-keyout srv.key -out srv.csr && "
        "printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile ext -out srv.pem 2>&1",
        dir);
    if (rc)
        fail_msg("openssl: %s", out ? out : "");
    free(out);
}

/* `openssl s_server -WWW` serving dir's files over TLS on port; returns its pid. */
static pid_t start_https(const char *dir, int port)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        int null = open("/dev/null", O_RDWR);
        if (chdir(dir) != 0 || null < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execlp("openssl", "openssl", "s_server", "-accept", p, "-cert", "srv.pem", "-key",
               "srv.key", "-WWW", "-quiet", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return pid;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("openssl s_server did not start");
    return -1;
}

static void https_mirror_verified_with_the_ca_file(void **state)
{
    (void)state;
    char *dir = tdsx_test_path(W.p.dir, "https");
    assert_int_equal(mkdir(dir, 0700), 0);
    make_tls_files(dir);
    char *file = tdsx_test_path(dir, "bundle.tdsx");
    tdsx_test_write_file(file, "BUNDLE over https", 17);
    int port = tdsx_test_free_port();
    pid_t pid = start_https(dir, port);
    char u[256];
    snprintf(u, sizeof u, "https://127.0.0.1:%d/bundle.tdsx", port);
    const char *urls[] = {u};
    char *ca = tdsx_test_path(dir, "ca.pem"), *other = tdsx_test_path(dir, "other.pem");

    /* The mirror's certificate chains to the CA file given: the body arrives. */
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 1);
    o.ca_file = ca;
    run_t r;
    run_start(&r, &o);
    assert_true(run_until(&r, applied_once, 10000));
    assert_int_equal(r.e.last_len, 17);
    assert_memory_equal(r.e.last, "BUNDLE over https", 17);
    run_end(&r, NULL);

    /* Another CA file: the TLS handshake fails, nothing reaches the engine. */
    o.ca_file = other;
    run_start(&r, &o);
    assert_true(run_until(&r, one_failure, 10000));
    tdsx_fetch_state_t st;
    run_end(&r, &st);
    assert_int_equal(r.e.calls, 0);
    assert_int_equal(st.last_rc, TDSX_E_FETCH);
    assert_int_equal(st.last_status, 0);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    free(ca);
    free(other);
    free(file);
    free(dir);
}

static void options_are_checked(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    engine_t e;
    memset(&e, 0, sizeof e);
    tdsx_fetch_t *f = (tdsx_fetch_t *)&e; /* must be reset to NULL on failure */
    const char *urls[] = {"http://127.0.0.1:1/x"};
    tdsx_fetch_opts_t o;
    opts_default(&o, urls, 0);
    assert_int_equal(tdsx__fetch_new(&loop, &o, engine_apply, &e, &f), TDSX_E_INVAL);
    assert_null(f);
    opts_default(&o, urls, 1);
    o.body_cap = 0;
    assert_int_equal(tdsx__fetch_new(&loop, &o, engine_apply, &e, &f), TDSX_E_INVAL);
    opts_default(&o, urls, 1);
    o.retry_max_ms = o.retry_min_ms - 1;
    assert_int_equal(tdsx__fetch_new(&loop, &o, engine_apply, &e, &f), TDSX_E_INVAL);
    opts_default(&o, urls, 1);
    assert_int_equal(tdsx__fetch_new(&loop, &o, NULL, &e, &f), TDSX_E_INVAL);
    /* Out of memory at every step: an error, never a leak (ASan checks). */
    int ok = 0;
    for (unsigned long k = 1; k < 40 && !ok; k++) {
        tdsx_test_alloc_fail_after(k);
        int rc = tdsx__fetch_new(&loop, &o, engine_apply, &e, &f);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            ok = 1;
            tdsx__fetch_close(f);
            assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        } else {
            assert_int_equal(rc, TDSX_E_NOMEM);
            assert_null(f);
        }
    }
    assert_true(ok);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- a node fetching real bundles ------------------------------------------------------------ */

/* Makes and signs bundle `serial` into the centre's publish_dir with `tdsx bundle`. */
static void publish_bundle_valid(int serial, const char *valid);

static void publish_bundle(int serial)
{
    publish_bundle_valid(serial, "24h");
}

static void publish_bundle_valid(int serial, const char *valid)
{
    char *unsigned_path = tdsx_test_path(W.p.dir, "bundle.unsigned");
    char *out = NULL;
    int rc = tdsx_test_run(&out,
                           "tdsx bundle make --ca '%s' --registry '%s' --serial %d --valid %s "
                           "--out '%s' 2>&1 && tdsx bundle sign --creds '%s' --in '%s' "
                           "--publish '%s' 2>&1",
                           W.p.ca, W.p.registry, serial, valid, unsigned_path, W.centre.creds,
                           unsigned_path, W.pub);
    if (rc)
        fail_msg("tdsx bundle: %s", out ? out : "");
    free(out);
    free(unsigned_path);
}

/* GET path from 127.0.0.1:port; returns the whole answer (heap). */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n_req = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n_req, MSG_NOSIGNAL), n_req);
    size_t cap = 1 << 18, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    ssize_t r;
    while (n < cap && (r = recv(fd, buf + n, cap - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return buf;
}

/* The status of GET path; the body goes to `body` when given. */
static int http_status(int port, const char *path, char *body, size_t size)
{
    char *ans = http_get(port, path);
    int code = strncmp(ans, "HTTP/1.1 ", 9) == 0 ? (int)strtol(ans + 9, NULL, 10) : -1;
    const char *b = strstr(ans, "\r\n\r\n");
    if (body)
        snprintf(body, size, "%s", b ? b + 4 : "");
    free(ans);
    return code;
}

/* The value of a sample on the node's /metrics. */
static long node_metric(int port, const char *sample)
{
    char *buf = http_get(port, "/metrics");
    long v = -1;
    size_t sl = strlen(sample);
    for (const char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, sample, sl) == 0 && l[sl] == ' ')
            v = strtol(l + sl + 1, NULL, 10);
    free(buf);
    return v;
}

static void node_fetches_from_second_mirror_then_304_then_refuses_garbage(void **state)
{
    (void)state;
    publish_bundle(1);
    tdsx_test_node_issue(&W.p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    W.ent_http_port = tdsx_test_free_port();
    char extra[2048];
    snprintf(extra, sizeof extra,
             "bundle_url http://127.0.0.1:%d/pub/bundle.tdsx\n"
             "bundle_url http://127.0.0.1:%d/pub/bundle.tdsx\n"
             "bundle_refresh 1s\nhttp_listen 127.0.0.1:%d\n",
             tdsx_test_free_port(), W.http_port, W.ent_http_port);
    tdsx_test_node_config(&W.p, &W.ent, extra);
    tdsx_test_node_start(&W.ent);

    /* First mirror down (logged as failed), the second one applied. */
    char second[256];
    url_of(second, sizeof second, "bundle.tdsx");
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"bundle.fetch\"", "\"result\":\"applied\"",
                                   second, NULL));
    assert_true(tdsx_test_log_count(&W.ent, "\"bundle.fetch\"", "\"result\":\"failed\"",
                                    "Couldn't connect", NULL) >= 1);
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "bundle.applied", NULL));
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 1);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_fetch_applied_total"), 1);

    /* A second round a second later: 304 (the ETag), nothing applied again. */
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"bundle.fetch\"", "\"result\":\"not_modified\"",
                                   "\"status\":304", NULL));
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"bundle.applied\"", NULL), 1);
    /* `tdsx status` says when and how the last download went. */
    char *out = NULL;
    assert_int_equal(tdsx_test_run(&out, "tdsx status --socket '%s'", W.ent.sock), 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "bundle fetch"));
    assert_non_null(strstr(out, "(HTTP 304, "));
    assert_non_null(strstr(out, "fetched at"));
    free(out);

    /* The mirror now serves garbage: refused and logged, the node keeps serial 1. */
    publish("bundle.tdsx", "this is not a signed bundle");
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"bundle.fetch\"", "\"result\":\"refused\"",
                                   second, NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "bundle.refused", NULL));
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 1);
    assert_true(node_metric(W.ent_http_port, "tdsx_bundle_fetch_refused_total") >= 1);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_fetch_last_ok"), 0);

    /* Serial 2 published: the next round applies it. */
    publish_bundle(2);
    for (int i = 0; i < 100 && node_metric(W.ent_http_port, "tdsx_bundle_serial") != 2; i++)
        usleep(100000);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 2);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_fetch_last_ok"), 1);
    assert_int_equal(http_status(W.ent_http_port, "/healthz", NULL, 0), 200);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
}

/* The node's /healthz and /metrics follow the bundle: a bundle fetched with a 3 s life expires,
 * health turns 503 with the reason, then a fresh one fetched from the mirror turns it back. */
static void healthz_follows_bundle_expiry_and_refresh(void **state)
{
    (void)state;
    tdsx_test_node_start(&W.ent); /* same config: two mirrors, refresh 1 s */
    publish_bundle_valid(3, "3s");
    for (int i = 0; i < 100 && node_metric(W.ent_http_port, "tdsx_bundle_serial") != 3; i++)
        usleep(100000);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 3);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_expired"), 0);
    assert_true(node_metric(W.ent_http_port, "tdsx_bundle_expires_in_seconds") <= 3);
    char body[512];
    int code = 0;
    for (int i = 0; i < 100 && code != 503; i++) {
        code = http_status(W.ent_http_port, "/healthz", body, sizeof body);
        if (code != 503)
            usleep(100000);
    }
    assert_int_equal(code, 503);
    assert_non_null(strstr(body, "bundle expired"));
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_expired"), 1);
    /* The mirror has nothing newer: its rounds go on, answered 304, and health stays 503. */
    long nm = node_metric(W.ent_http_port, "tdsx_bundle_fetch_not_modified_total");
    for (int i = 0;
         i < 50 && node_metric(W.ent_http_port, "tdsx_bundle_fetch_not_modified_total") <= nm; i++)
        usleep(100000);
    assert_true(node_metric(W.ent_http_port, "tdsx_bundle_fetch_not_modified_total") > nm);
    assert_int_equal(http_status(W.ent_http_port, "/healthz", NULL, 0), 503);

    publish_bundle(4);
    code = 0;
    for (int i = 0; i < 100 && code != 200; i++) {
        code = http_status(W.ent_http_port, "/healthz", NULL, 0);
        if (code != 200)
            usleep(100000);
    }
    assert_int_equal(code, 200);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 4);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_expired"), 0);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
}

/* With an hour between rounds, SIGHUP is what makes the node ask its mirrors again. */
static void sighup_fetches_now(void **state)
{
    (void)state;
    char extra[2048];
    snprintf(extra, sizeof extra,
             "bundle_url http://127.0.0.1:%d/pub/bundle.tdsx\nbundle_refresh 1h\n"
             "http_listen 127.0.0.1:%d\n",
             W.http_port, W.ent_http_port);
    tdsx_test_node_config(&W.p, &W.ent, extra);
    tdsx_test_node_start(&W.ent);
    /* The start's round: serial 4 is what the mirror has and what the node kept. */
    for (int i = 0; i < 100 && node_metric(W.ent_http_port, "tdsx_bundle_fetch_attempts_total") < 1;
         i++)
        usleep(100000);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 4);
    publish_bundle(5);
    usleep(1500000);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 4); /* no round yet */
    kill(W.ent.pid, SIGHUP);
    for (int i = 0; i < 100 && node_metric(W.ent_http_port, "tdsx_bundle_serial") != 5; i++)
        usleep(100000);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_serial"), 5);
    assert_int_equal(node_metric(W.ent_http_port, "tdsx_bundle_fetch_attempts_total"), 2);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
}

/* A node's first start with no registry file, only bundle_url: it knows no member until the
 * bundle arrives over HTTP; then its link to the centre opens. */
/* Drops the `registry` line of n's config: nothing but the mirror tells it who is a member. */
static void drop_registry_line(const tdsx_test_node_t *n)
{
    size_t len = 0;
    uint8_t *text = NULL;
    assert_int_equal(tdsx_file_read(n->conf, 1 << 16, &text, &len), 0);
    char *reg = strstr((char *)text, "registry ");
    assert_non_null(reg);
    char *eol = strchr(reg, '\n');
    memmove(reg, eol + 1, strlen(eol + 1) + 1);
    tdsx_test_write_file(n->conf, text, strlen((char *)text));
    tdsx_free(text);
}

static void first_start_from_http_alone(void **state)
{
    (void)state;
    tdsx_test_node_issue(&W.p, &W.fresh, "fresh", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    publish_bundle(6); /* the registry it carries now lists `fresh` */
    char extra[2048];
    snprintf(extra, sizeof extra,
             "bundle_url http://127.0.0.1:%d/pub/bundle.tdsx\nbundle_refresh 1h\npeer %s "
             "127.0.0.1:%d\n",
             W.http_port, W.centre.id, W.centre.port);
    tdsx_test_node_config(&W.p, &W.fresh, extra);
    drop_registry_line(&W.fresh);
    char *out = NULL;
    int rc = tdsx_test_run(&out, "tdsxd --check-config -c '%s' 2>&1", W.fresh.conf);
    if (rc)
        fail_msg("%s", out ? out : "");
    free(out);

    tdsx_test_node_start(&W.fresh);
    assert_true(
        tdsx_test_log_wait(&W.fresh, 10000, "\"bundle.fetch\"", "\"result\":\"applied\"", NULL));
    assert_true(tdsx_test_log_wait(&W.fresh, 10000, "conn.open", W.centre.id, NULL));
    assert_int_equal(tdsx_test_node_stop(&W.fresh, 10000), 0);
}

/* The natural config of a node whose members come from the centre's bundle: no registry file,
 * the centre as its log's witness but not as a peer. On its first start no registry names the
 * witness yet: the node starts all the same, dials the witness once the fetched bundle names
 * it, and has its checkpoint cosigned. A node on a registry file that does not name its
 * witness still refuses to start. */
static void first_start_with_a_witness_the_bundle_brings(void **state)
{
    (void)state;
    publish_bundle(7); /* its registry lists `late` (and so does the centre's) */
    char extra[2048];
    snprintf(extra, sizeof extra,
             "witness %s\ncheckpoint_interval 300ms\n"
             "bundle_url http://127.0.0.1:%d/pub/bundle.tdsx\nbundle_refresh 1h\n",
             W.centre.id, W.http_port);
    tdsx_test_node_config(&W.p, &W.late, extra);
    drop_registry_line(&W.late);
    char *out = NULL;
    int rc = tdsx_test_run(&out, "tdsxd --check-config -c '%s' 2>&1", W.late.conf);
    if (rc)
        fail_msg("%s", out ? out : "");
    free(out);

    tdsx_test_node_start(&W.late);
    assert_true(tdsx_test_log_wait(&W.late, 5000, "\"log.witness_pending\"", W.centre.id, NULL));
    assert_true(
        tdsx_test_log_wait(&W.late, 10000, "\"bundle.fetch\"", "\"result\":\"applied\"", NULL));
    assert_true(tdsx_test_log_wait(&W.late, 10000, "\"log.witness_dialled\"", W.centre.id, NULL));
    assert_true(tdsx_test_log_wait(&W.late, 10000, "conn.open", W.centre.id, NULL));
    assert_true(tdsx_test_log_wait(&W.late, 15000, "\"log.cosigned\"", W.centre.id, NULL));
    assert_int_equal(tdsx_test_node_stop(&W.late, 10000), 0);

    /* On a registry file (no bundle) that does not name the witness: refused, and said why. */
    snprintf(extra, sizeof extra, "witness 91370100MA3C4K2B2K/nobody\n");
    tdsx_test_node_config(&W.p, &W.late, extra);
    rc = tdsx_test_run(&out, "tdsxd --check-config -c '%s' 2>&1", W.late.conf);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "witness"));
    free(out);
}

static void centre_stops(void **state)
{
    (void)state;
    assert_int_equal(tdsx_test_node_stop(&W.centre, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_are_checked),
        cmocka_unit_test(first_mirror_down_second_used_then_304),
        cmocka_unit_test(garbage_mirror_refused_next_used),
        cmocka_unit_test(stale_mirror_skipped_while_the_bundle_in_force_expired),
        cmocka_unit_test(all_mirrors_failing_back_off_and_retry),
        cmocka_unit_test(body_over_cap_fails),
        cmocka_unit_test(close_during_a_silent_attempt),
        cmocka_unit_test(https_mirror_verified_with_the_ca_file),
        cmocka_unit_test(node_fetches_from_second_mirror_then_304_then_refuses_garbage),
        cmocka_unit_test(healthz_follows_bundle_expiry_and_refresh),
        cmocka_unit_test(sighup_fetches_now),
        cmocka_unit_test(first_start_from_http_alone),
        cmocka_unit_test(first_start_with_a_witness_the_bundle_brings),
        cmocka_unit_test(centre_stops),
    };
    return cmocka_run_group_tests_name("fetch", tests, setup, teardown);
}
