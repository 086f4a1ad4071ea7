/*
 * fetch.c — downloads the trust bundle from its mirrors (SPEC §3) with libcurl's multi-socket
 * interface on the node's libuv loop: curl tells us which sockets to watch (uv_poll) and when
 * to call it back (uv_timer); nothing blocks and no thread is started.
 *
 * A round asks the mirrors in the configured order, one at a time, until one answers 200 with
 * a body the bundle engine takes (applied or the same serial) or 304 to our If-None-Match.
 * When every mirror failed the next round waits with exponential backoff and jitter;
 * otherwise it comes after refresh_ms.
 */
#include "http.h"

#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "bundle.h"

typedef struct {
    char *url;
    char etag[TDSX_HTTP_ETAG_MAX + 1]; /* of the last body accepted from this mirror */
} mirror_t;

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    tdsx_fetch_t *f;
} sock_t;

struct tdsx_fetch_s {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer;  /* curl's own timeouts */
    uv_timer_t round_timer; /* the next round */
    int handles;            /* open timers; freed at 0 after close */
    int closing;
    tdsx_fetch_apply_fn apply;
    void *ud;
    tdsx_fetch_opts_t o;
    char *ca_file;
    mirror_t *mirrors;
    size_t n_mirrors;

    /* the attempt in flight */
    CURL *easy;
    struct curl_slist *headers;
    tdsx_buf_t body;
    size_t current; /* mirror index */
    int in_round;
    uint64_t backoff_ms;
    tdsx_fetch_state_t st;
    char result[512]; /* the last attempt, for `tdsx status` */
};

static int curl_users; /* fetchers alive: curl_global_cleanup when the last one goes */

/* URLs are logged without user information or query, which may hold credentials. */
static void url_for_log(const char *url, char *out, size_t size)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    const char *path = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(path - host));
    size_t plen = strcspn(path, "?#");
    snprintf(out, size, "%.*s%.*s%.*s", (int)(host - url), url, (int)(path - (at ? at + 1 : host)),
             at ? at + 1 : host, (int)plen, path);
}

/* ---- libcurl <-> libuv ------------------------------------------------------------------- */

static void check_done(tdsx_fetch_t *f);

static void on_sock_closed(uv_handle_t *h)
{
    tdsx_free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    tdsx_fetch_t *f = s->f;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    (void)curl_multi_socket_action(f->multi, s->fd, flags, &running);
    check_done(f);
}

/* CURLMOPT_SOCKETFUNCTION: what to watch on one of curl's sockets. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    tdsx_fetch_t *f = userp;
    sock_t *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(f->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = tdsx_calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        s->f = f;
        if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
            tdsx_free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(f->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_curl_timeout(uv_timer_t *t)
{
    tdsx_fetch_t *f = t->data;
    int running;
    (void)curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(f);
}

/* CURLMOPT_TIMERFUNCTION: curl must not be called back from inside, so even a 0 ms timeout
 * goes through the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    tdsx_fetch_t *f = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&f->curl_timer);
    else
        uv_timer_start(&f->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    tdsx_fetch_t *f = ud;
    size_t n = size * nmemb;
    /* Past the cap: returning less than n makes curl fail the transfer (CURLE_WRITE_ERROR). */
    return tdsx_buf_append(&f->body, p, n) == 0 ? n : 0;
}

/* ---- rounds ------------------------------------------------------------------------------ */

static void start_attempt(tdsx_fetch_t *f);

static void on_round_timer(uv_timer_t *t)
{
    tdsx_fetch_t *f = t->data;
    if (f->in_round || f->closing)
        return;
    f->in_round = 1;
    f->current = 0;
    f->st.rounds++;
    start_attempt(f);
}

static void schedule_round(tdsx_fetch_t *f, int failed)
{
    uint64_t delay = f->o.refresh_ms;
    if (failed) {
        f->backoff_ms = f->backoff_ms == 0 ? f->o.retry_min_ms : f->backoff_ms * 2;
        if (f->backoff_ms > f->o.retry_max_ms)
            f->backoff_ms = f->o.retry_max_ms;
        /* 75-125 %: nodes that lost the same mirror do not come back in lockstep. */
        uint64_t b = f->backoff_ms;
        delay = b - b / 4 + randombytes_uniform((uint32_t)(b / 2 + 1));
        tdsx_log(TDSX_LOG_WARN, "bundle.fetch_backoff", TDSX_KV_I("mirrors", f->n_mirrors),
                 TDSX_KV_I("retry_ms", delay));
    } else {
        f->backoff_ms = 0;
    }
    f->in_round = 0;
    uv_timer_start(&f->round_timer, on_round_timer, delay, 0);
}

static void end_attempt(tdsx_fetch_t *f)
{
    if (f->easy) {
        curl_multi_remove_handle(f->multi, f->easy);
        curl_easy_cleanup(f->easy);
        f->easy = NULL;
    }
    curl_slist_free_all(f->headers);
    f->headers = NULL;
    tdsx_buf_free(&f->body);
}

static int in_force_ok(tdsx_fetch_t *f)
{
    return !f->o.in_force_ok || f->o.in_force_ok(f->ud);
}

/* One mirror answered (or not): decide, log, and move on. */
static void attempt_finished(tdsx_fetch_t *f, CURLcode cc)
{
    mirror_t *m = &f->mirrors[f->current];
    char url[1024];
    url_for_log(m->url, url, sizeof url);
    long status = 0;
    char etag[TDSX_HTTP_ETAG_MAX + 1] = "";
    const char *result;
    int rc = 0;
    if (cc == CURLE_OK) {
        (void)curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
        struct curl_header *h = NULL;
        if (curl_easy_header(f->easy, "ETag", 0, CURLH_HEADER, -1, &h) == CURLHE_OK &&
            strlen(h->value) < sizeof etag)
            snprintf(etag, sizeof etag, "%s", h->value);
    }
    if (cc != CURLE_OK) {
        rc = TDSX_E_FETCH;
        result = "failed";
    } else if (status == 304 && m->etag[0]) {
        result = "not_modified";
        f->st.not_modified++;
        if (!in_force_ok(f)) {
            result = "stale";
            rc = TDSX_E_BUNDLE_EXPIRED;
        }
    } else if (status == 200) {
        rc = f->apply(f->ud, tdsx_buf_bytes(&f->body), m->url);
        if (rc >= 0) {
            result = rc == 0 ? "applied" : "unchanged";
            if (rc == 0)
                f->st.applied++;
            /* Only a body the engine took may be named in the next If-None-Match. */
            snprintf(m->etag, sizeof m->etag, "%s", etag);
            /* The same expired bundle again: another mirror may have a fresh one. */
            if (rc == 1 && !in_force_ok(f)) {
                result = "stale";
                rc = TDSX_E_BUNDLE_EXPIRED;
            } else {
                rc = 0;
            }
        } else {
            result = "refused";
            f->st.refused++;
        }
    } else {
        rc = TDSX_E_FETCH_STATUS;
        result = "failed";
    }
    f->st.attempts++;
    f->st.last_attempt_at = tdsx_now();
    f->st.last_rc = rc;
    f->st.last_status = status;
    if (rc)
        f->st.failures++;
    else
        f->st.last_ok_at = f->st.last_attempt_at;
    if (cc != CURLE_OK)
        snprintf(f->result, sizeof f->result, "%s: %.100s (%.300s)", result, curl_easy_strerror(cc),
                 url);
    else
        snprintf(f->result, sizeof f->result, "%s (HTTP %ld, %.300s)", result, status, url);
    if (rc)
        tdsx_log(TDSX_LOG_WARN, "bundle.fetch", TDSX_KV_S("url", url), TDSX_KV_S("result", result),
                 TDSX_KV_I("status", status), TDSX_KV_I("bytes", f->body.len), TDSX_KV_E("err", rc),
                 TDSX_KV_S("curl", cc == CURLE_OK ? "" : curl_easy_strerror(cc)));
    else
        tdsx_log(TDSX_LOG_INFO, "bundle.fetch", TDSX_KV_S("url", url), TDSX_KV_S("result", result),
                 TDSX_KV_I("status", status), TDSX_KV_I("bytes", f->body.len));
    end_attempt(f);
    if (f->closing)
        return;
    if (rc == 0) {
        schedule_round(f, 0);
    } else if (++f->current < f->n_mirrors) {
        start_attempt(f);
    } else {
        schedule_round(f, 1);
    }
}

static void check_done(tdsx_fetch_t *f)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(f->multi, &pending)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == f->easy) {
            attempt_finished(f, msg->data.result);
            return; /* the handle is gone: its messages with it */
        }
    }
}

static int setup_easy(tdsx_fetch_t *f, const mirror_t *m)
{
    CURL *e = curl_easy_init();
    if (!e)
        return TDSX_E_NOMEM;
    f->easy = e;
    tdsx_buf_init(&f->body, f->o.body_cap);
    if (m->etag[0]) {
        char h[sizeof m->etag + 32];
        snprintf(h, sizeof h, "If-None-Match: %s", m->etag);
        struct curl_slist *l = curl_slist_append(NULL, h);
        if (!l)
            return TDSX_E_NOMEM;
        f->headers = l;
    }
    CURLcode c = CURLE_OK;
#define OPT(o, v)                                                                                  \
    if (c == CURLE_OK)                                                                             \
        c = curl_easy_setopt(e, o, v);
    OPT(CURLOPT_URL, m->url);
    OPT(CURLOPT_PROTOCOLS_STR, "http,https");
    OPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    OPT(CURLOPT_FOLLOWLOCATION, 1L);
    OPT(CURLOPT_MAXREDIRS, 3L);
    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_CONNECTTIMEOUT_MS, (long)f->o.connect_timeout_ms);
    OPT(CURLOPT_TIMEOUT_MS, (long)f->o.timeout_ms);
    OPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->o.body_cap);
    OPT(CURLOPT_WRITEFUNCTION, on_body);
    OPT(CURLOPT_WRITEDATA, f);
    OPT(CURLOPT_USERAGENT, "tdsxd/" TDSX_VERSION);
    OPT(CURLOPT_HTTPHEADER, f->headers);
    /* A mirror over https is verified like any web server: against the CA file given (the
     * node's anchor) and libcurl's default CA directory, which setting CAINFO leaves in place
     * (Debian: /etc/ssl/certs), so a CDN with a public certificate works too. The bundle's own
     * signature is what makes it trusted (SPEC §3), whoever served it. */
    OPT(CURLOPT_SSL_VERIFYPEER, 1L);
    OPT(CURLOPT_SSL_VERIFYHOST, 2L);
    if (f->ca_file)
        OPT(CURLOPT_CAINFO, f->ca_file);
#undef OPT
    if (c != CURLE_OK)
        return TDSX_E_INTERNAL;
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK)
        return TDSX_E_INTERNAL;
    return 0;
}

static void start_attempt(tdsx_fetch_t *f)
{
    int rc = setup_easy(f, &f->mirrors[f->current]);
    if (rc == 0)
        return; /* curl asks for a timer; the loop takes it from there */
    char url[1024];
    url_for_log(f->mirrors[f->current].url, url, sizeof url);
    tdsx_log(TDSX_LOG_ERROR, "bundle.fetch", TDSX_KV_S("url", url), TDSX_KV_S("result", "failed"),
             TDSX_KV_E("err", rc));
    if (f->easy) {
        /* Removing a handle that was never added is harmless (CURLM_BAD_EASY_HANDLE). */
        curl_multi_remove_handle(f->multi, f->easy);
        curl_easy_cleanup(f->easy);
        f->easy = NULL;
    }
    end_attempt(f);
    f->st.attempts++;
    f->st.failures++;
    f->st.last_rc = rc;
    f->st.last_status = 0;
    f->st.last_attempt_at = tdsx_now();
    snprintf(f->result, sizeof f->result, "failed: %s (%.300s)", tdsx_strerror(rc), url);
    schedule_round(f, 1);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void free_fetch(tdsx_fetch_t *f)
{
    for (size_t i = 0; i < f->n_mirrors; i++)
        tdsx_free(f->mirrors[i].url);
    tdsx_free(f->mirrors);
    tdsx_free(f->ca_file);
    if (f->multi)
        curl_multi_cleanup(f->multi);
    tdsx_free(f);
    if (--curl_users == 0)
        curl_global_cleanup();
}

int tdsx__fetch_new(uv_loop_t *loop, const tdsx_fetch_opts_t *o, tdsx_fetch_apply_fn apply,
                    void *ud, tdsx_fetch_t **out)
{
    *out = NULL;
    if (!o || o->n_urls == 0 || !apply || o->body_cap == 0 || o->timeout_ms == 0 ||
        o->connect_timeout_ms == 0 || o->refresh_ms == 0 || o->retry_min_ms == 0 ||
        o->retry_max_ms < o->retry_min_ms)
        return TDSX_E_INVAL;
    /* Called before the loop runs anything on its thread pool; curl's global state is set up
     * once per process user. */
    if (curl_users == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return TDSX_E_INTERNAL;
    curl_users++;
    tdsx_fetch_t *f = tdsx_calloc(1, sizeof *f);
    if (!f) {
        if (--curl_users == 0)
            curl_global_cleanup();
        return TDSX_E_NOMEM;
    }
    f->loop = loop;
    f->o = *o;
    f->o.urls = NULL;
    f->apply = apply;
    f->ud = ud;
    int rc = TDSX_E_NOMEM;
    if (o->ca_file && !(f->ca_file = tdsx_strdup(o->ca_file)))
        goto fail;
    if (!(f->mirrors = tdsx_calloc(o->n_urls, sizeof *f->mirrors)))
        goto fail;
    for (; f->n_mirrors < o->n_urls; f->n_mirrors++)
        if (!(f->mirrors[f->n_mirrors].url = tdsx_strdup(o->urls[f->n_mirrors])))
            goto fail;
    rc = TDSX_E_INTERNAL;
    if (!(f->multi = curl_multi_init()))
        goto fail;
    if (curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f) != CURLM_OK)
        goto fail;
    uv_timer_init(loop, &f->curl_timer);
    uv_timer_init(loop, &f->round_timer);
    f->curl_timer.data = f->round_timer.data = f;
    f->handles = 2;
    *out = f;
    return 0;
fail:
    free_fetch(f);
    return rc;
}

void tdsx__fetch_start(tdsx_fetch_t *f)
{
    tdsx__fetch_now(f);
}

void tdsx__fetch_now(tdsx_fetch_t *f)
{
    if (!f || f->closing || f->in_round)
        return;
    uv_timer_start(&f->round_timer, on_round_timer, 0, 0);
}

void tdsx__fetch_state(const tdsx_fetch_t *f, tdsx_fetch_state_t *out)
{
    *out = f->st;
}

void tdsx__fetch_status(const tdsx_node_t *n, Tdsx__StatusResponse *st)
{
    const tdsx_fetch_t *f = n->fetch;
    if (!f || f->st.last_attempt_at == 0)
        return;
    st->bundle_fetch_at = f->st.last_attempt_at;
    st->bundle_fetch_ok_at = f->st.last_ok_at;
    st->bundle_fetch_result = (char *)f->result;
}

static void on_timer_closed(uv_handle_t *h)
{
    tdsx_fetch_t *f = h->data;
    if (--f->handles == 0)
        free_fetch(f);
}

void tdsx__fetch_close(tdsx_fetch_t *f)
{
    if (!f || f->closing)
        return;
    f->closing = 1;
    end_attempt(f); /* curl's REMOVE callbacks close the polls */
    uv_close((uv_handle_t *)&f->curl_timer, on_timer_closed);
    uv_close((uv_handle_t *)&f->round_timer, on_timer_closed);
}

/* ---- the node's fetcher ------------------------------------------------------------------ */

static int node_apply(void *ud, tdsx_bytes_t body, const char *url)
{
    return tdsx__bundle_apply(ud, body, url);
}

static int node_in_force_ok(void *ud)
{
    return tdsx__bundle_check(ud) != TDSX_E_BUNDLE_EXPIRED;
}

int tdsx__fetch_node_start(tdsx_node_t *n)
{
    if (n->cfg.n_bundle_urls == 0)
        return 0;
    tdsx_buf_t ca;
    tdsx_buf_init(&ca, 8192);
    int rc = tdsx_buf_printf(&ca, "%s/%s", n->cfg.credentials, TDSX_CRED_ROOT);
    if (rc == 0) {
        uint64_t retry_max = n->cfg.bundle_refresh_ms < 300000 ? n->cfg.bundle_refresh_ms : 300000;
        tdsx_fetch_opts_t o = {(const char *const *)n->cfg.bundle_urls,
                               n->cfg.n_bundle_urls,
                               n->cfg.bundle_refresh_ms,
                               5000,
                               30000,
                               TDSX_BUNDLE_FILE_CAP < TDSX_FETCH_BODY_CAP ? TDSX_BUNDLE_FILE_CAP
                                                                          : TDSX_FETCH_BODY_CAP,
                               retry_max < 1000 ? retry_max : 1000,
                               retry_max,
                               (const char *)ca.p,
                               node_in_force_ok};
        rc = tdsx__fetch_new(n->loop, &o, node_apply, n, &n->fetch);
    }
    tdsx_buf_free(&ca);
    if (rc == 0)
        tdsx__fetch_start(n->fetch);
    return rc;
}
