/*
 * http.c — the node's HTTP/1.1 endpoint: /healthz, /metrics, /pub/NAME (see http.h).
 *
 * One request per connection, GET and HEAD only. The head is parsed by a pure function
 * (tdsx__http_parse) so the protocol decisions are testable without sockets; the rest is the
 * libuv shell around it.
 */
#include "http.h"

#include "bundle.h"
#include "log.h"
#include "policy.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "crypto.h"

/* ---- the request-head parser ------------------------------------------------------------- */

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Field values: VCHAR, SP, HTAB, obs-text (RFC 9110 §5.5); no other control. */
static int is_field_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int ieq(tdsx_bytes_t a, const char *b)
{
    size_t n = strlen(b);
    if (a.n != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t x = a.p[i], y = (uint8_t)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (uint8_t)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (uint8_t)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* Takes one line (without its CRLF or bare LF, RFC 9112 §2.2). */
static int take_line(tdsx_bytes_t *in, tdsx_bytes_t *line)
{
    const uint8_t *nl = memchr(in->p, '\n', in->n);
    if (!nl)
        return TDSX_E_HTTP_REQUEST;
    size_t len = (size_t)(nl - in->p);
    if (tdsx_bytes_take(in, len, line) != 0 || tdsx_bytes_skip(in, 1) != 0)
        return TDSX_E_HTTP_REQUEST;
    if (line->n > 0 && line->p[line->n - 1] == '\r')
        line->n--;
    return 0;
}

static void trim_ows(tdsx_bytes_t *v)
{
    while (v->n > 0 && (v->p[0] == ' ' || v->p[0] == '\t')) {
        v->p++;
        v->n--;
    }
    while (v->n > 0 && (v->p[v->n - 1] == ' ' || v->p[v->n - 1] == '\t'))
        v->n--;
}

/* Where the head ends (after the empty line), or 0 when it has not ended within `in`. */
static size_t head_end(tdsx_bytes_t in)
{
    for (size_t i = 0; i + 1 < in.n; i++) {
        if (in.p[i] != '\n')
            continue;
        if (in.p[i + 1] == '\n')
            return i + 2;
        if (in.p[i + 1] == '\r' && i + 2 < in.n && in.p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int parse_request_line(tdsx_bytes_t line, tdsx_http_req_t *req)
{
    const uint8_t *sp1 = memchr(line.p, ' ', line.n);
    if (!sp1 || sp1 == line.p)
        return TDSX_E_HTTP_REQUEST;
    tdsx_bytes_t method = tdsx_bytes(line.p, (size_t)(sp1 - line.p));
    tdsx_bytes_t rest = tdsx_bytes(sp1 + 1, line.n - method.n - 1);
    const uint8_t *sp2 = memchr(rest.p, ' ', rest.n);
    if (!sp2 || sp2 == rest.p)
        return TDSX_E_HTTP_REQUEST;
    tdsx_bytes_t target = tdsx_bytes(rest.p, (size_t)(sp2 - rest.p));
    tdsx_bytes_t version = tdsx_bytes(sp2 + 1, rest.n - target.n - 1);
    for (size_t i = 0; i < method.n; i++)
        if (!is_tchar(method.p[i]))
            return TDSX_E_HTTP_REQUEST;
    for (size_t i = 0; i < target.n; i++)
        if (target.p[i] <= 0x20 || target.p[i] >= 0x7f)
            return TDSX_E_HTTP_REQUEST;
    /* RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive. */
    if (version.n != 8 || memcmp(version.p, "HTTP/", 5) != 0 || version.p[6] != '.' ||
        version.p[5] < '0' || version.p[5] > '9' || version.p[7] < '0' || version.p[7] > '9')
        return TDSX_E_HTTP_REQUEST;
    if (version.p[5] != '1' || version.p[7] > '1')
        return TDSX_E_HTTP_VERSION;
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    if (method.n == 3 && memcmp(method.p, "GET", 3) == 0)
        req->method = TDSX_HTTP_GET;
    else if (method.n == 4 && memcmp(method.p, "HEAD", 4) == 0)
        req->method = TDSX_HTTP_HEAD;
    else
        return TDSX_E_HTTP_METHOD;
    /* Origin form only (RFC 9112 §3.2.1); the query is not ours to interpret. */
    if (target.p[0] != '/')
        return TDSX_E_HTTP_REQUEST;
    const uint8_t *q = memchr(target.p, '?', target.n);
    size_t plen = q ? (size_t)(q - target.p) : target.n;
    if (plen >= sizeof req->path)
        return TDSX_E_HTTP_REQUEST;
    memcpy(req->path, target.p, plen);
    req->path[plen] = '\0';
    return version.p[7] == '1' ? 1 : 0; /* 1: HTTP/1.1, which requires Host */
}

int tdsx__http_parse(tdsx_bytes_t in, tdsx_http_req_t *req, size_t *head_len)
{
    memset(req, 0, sizeof *req);
    *head_len = 0;
    /* RFC 9112 §2.2: empty lines before the request line are ignored. */
    size_t lead = 0;
    while (lead < in.n && (in.p[lead] == '\r' || in.p[lead] == '\n'))
        lead++;
    tdsx_bytes_t rest = tdsx_bytes(in.p + lead, in.n - lead);
    size_t end = head_end(rest);
    if (end == 0 || lead + end > TDSX_HTTP_HEAD_CAP)
        return in.n >= TDSX_HTTP_HEAD_CAP || lead + end > TDSX_HTTP_HEAD_CAP
                   ? TDSX_E_HTTP_HEAD_TOOBIG
                   : 1;
    tdsx_bytes_t head = tdsx_bytes(rest.p, end), line;
    int rc = take_line(&head, &line);
    if (rc)
        return rc;
    int v11 = parse_request_line(line, req);
    if (v11 < 0)
        return v11;
    int hosts = 0, has_len = 0, te = 0;
    uint64_t clen = 0;
    while ((rc = take_line(&head, &line)) == 0 && line.n > 0) {
        /* Obsolete line folding is refused (RFC 9112 §5.2). */
        if (line.p[0] == ' ' || line.p[0] == '\t')
            return TDSX_E_HTTP_REQUEST;
        const uint8_t *colon = memchr(line.p, ':', line.n);
        if (!colon || colon == line.p)
            return TDSX_E_HTTP_REQUEST;
        tdsx_bytes_t name = tdsx_bytes(line.p, (size_t)(colon - line.p));
        tdsx_bytes_t value = tdsx_bytes(colon + 1, line.n - name.n - 1);
        /* No white space between name and colon (RFC 9112 §5.1). */
        for (size_t i = 0; i < name.n; i++)
            if (!is_tchar(name.p[i]))
                return TDSX_E_HTTP_REQUEST;
        for (size_t i = 0; i < value.n; i++)
            if (!is_field_char(value.p[i]))
                return TDSX_E_HTTP_REQUEST;
        trim_ows(&value);
        if (ieq(name, "host")) {
            hosts++;
        } else if (ieq(name, "content-length")) {
            /* A list or a second differing value is a framing error (RFC 9112 §6.3). */
            uint64_t v = 0;
            if (value.n == 0 || value.n > 19)
                return TDSX_E_HTTP_REQUEST;
            for (size_t i = 0; i < value.n; i++) {
                if (value.p[i] < '0' || value.p[i] > '9')
                    return TDSX_E_HTTP_REQUEST;
                v = v * 10 + (uint64_t)(value.p[i] - '0');
            }
            if (has_len && v != clen)
                return TDSX_E_HTTP_REQUEST;
            has_len = 1;
            clen = v;
        } else if (ieq(name, "transfer-encoding")) {
            te = 1;
        } else if (ieq(name, "if-none-match")) {
            if (value.n < sizeof req->if_none_match) {
                memcpy(req->if_none_match, value.p, value.n);
                req->if_none_match[value.n] = '\0';
            }
        }
    }
    if (rc)
        return rc;
    /* RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400. */
    if ((v11 && hosts != 1) || hosts > 1)
        return TDSX_E_HTTP_REQUEST;
    if (te || clen > 0)
        return TDSX_E_HTTP_BODY;
    *head_len = lead + end;
    return 0;
}

int tdsx__http_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > TDSX_HTTP_NAME_MAX || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- the server -------------------------------------------------------------------------- */

#define METRICS_CAP (256u * 1024u)
#define LINGER_MAX_MS 2000u /* after answering: how long unread input may still drain */

/* The statuses the server answers with, for tdsx_http_responses_total. */
static const int http_codes[] = {200, 304, 400, 404, 405, 413, 431, 500, 503, 505};
#define N_CODES (sizeof http_codes / sizeof http_codes[0])

typedef struct http_client_s http_client_t;

typedef struct tdsx_http_s {
    tdsx_node_t *node;
    uv_tcp_t listener;
    int listener_open; /* until its close callback */
    int stopping;
    http_client_t *clients;
    size_t n_clients;
    uint64_t responses[N_CODES];
    uint64_t refused; /* connections over http_max_connections */
    uint64_t timeouts;
} tdsx_http_t;

struct http_client_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    tdsx_http_t *srv;
    http_client_t *prev, *next;
    int handles; /* open libuv handles; freed at 0 */
    int answered;
    int written; /* the answer left in full: only the linger remains */
    int closing;
    size_t unsent; /* bytes of the answer libuv still held at the last timer check */
    tdsx_buf_t out;
    size_t len;
    uint8_t head[TDSX_HTTP_HEAD_CAP];
};

/* Where input goes once the request is answered: it is only drained, never looked at. */
static char discard[4096];

static void srv_maybe_free(tdsx_http_t *s)
{
    if (s->stopping && !s->listener_open && s->n_clients == 0)
        tdsx_free(s);
}

static void on_client_handle_closed(uv_handle_t *h)
{
    http_client_t *c = h->data;
    if (--c->handles > 0)
        return;
    tdsx_http_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_clients--;
    tdsx_buf_free(&c->out);
    tdsx_free(c);
    srv_maybe_free(s);
}

static void client_close(http_client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, on_client_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_client_handle_closed);
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

static void count_response(tdsx_http_t *s, int code)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (http_codes[i] == code)
            s->responses[i]++;
}

static void on_timer(uv_timer_t *t)
{
    http_client_t *c = t->data;
    if (!c->answered) {
        c->srv->timeouts++;
        tdsx_log(TDSX_LOG_DEBUG, "http.timeout", TDSX_KV_I("received", c->len));
    } else if (!c->written) {
        /* A client that reads slowly still gets the whole answer: the timeout is for a write
         * that made no progress at all in http_timeout, not for the whole answer. */
        size_t unsent = c->tcp.write_queue_size;
        if (unsent < c->unsent) {
            c->unsent = unsent;
            uv_timer_start(&c->timer, on_timer, c->srv->node->cfg.http_timeout_ms, 0);
            return;
        }
        tdsx_log(TDSX_LOG_DEBUG, "http.write_stalled", TDSX_KV_I("unsent", unsent));
    }
    client_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the read side or the timer closes the connection */
}

static void on_written(uv_write_t *req, int status)
{
    http_client_t *c = req->data;
    tdsx_buf_free(&c->out);
    if (c->closing)
        return;
    c->written = 1;
    uint64_t linger = c->srv->node->cfg.http_timeout_ms;
    uv_timer_start(&c->timer, on_timer, linger < LINGER_MAX_MS ? linger : LINGER_MAX_MS, 0);
    /* Half-close, then drain what the client still sends until it closes or the linger timer
     * fires: closing with unread input would reset the connection and could destroy the
     * answer before the client read it (RFC 9112 §9.6). */
    if (status < 0 || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        client_close(c);
}

typedef struct {
    int code;
    const char *content_type; /* NULL: no body */
    tdsx_bytes_t body;
    const char *etag; /* NULL: none */
    int allow;        /* 405: Allow header */
    int no_store;     /* dynamic answers */
} response_t;

static int format_response(const response_t *r, int head_only, tdsx_buf_t *out)
{
    char date[64];
    time_t now = (time_t)tdsx_now();
    struct tm tm;
    /* RFC 9110 §5.6.7 IMF-fixdate. */
    if (!gmtime_r(&now, &tm) || strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        date[0] = '\0';
    int rc =
        tdsx_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: tdsxd\r\nConnection: close\r\n",
                        r->code, reason_phrase(r->code), date);
    if (rc == 0 && r->etag)
        rc = tdsx_buf_printf(out, "ETag: %s\r\n", r->etag);
    if (rc == 0 && r->allow)
        rc = tdsx_buf_append_str(out, "Allow: GET, HEAD\r\n");
    if (rc == 0 && r->no_store)
        rc = tdsx_buf_append_str(out, "Cache-Control: no-store\r\n");
    /* A 304 has no body and repeats no Content-Length (RFC 9110 §15.4.5). */
    if (rc == 0 && r->code != 304)
        rc = tdsx_buf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                             r->content_type ? r->content_type : "text/plain; charset=utf-8",
                             r->body.n);
    if (rc == 0)
        rc = tdsx_buf_append_str(out, "\r\n");
    if (rc == 0 && !head_only && r->code != 304 && r->body.n)
        rc = tdsx_buf_append(out, r->body.p, r->body.n);
    return rc;
}

static void send_response(http_client_t *c, const response_t *r, int head_only)
{
    tdsx_http_t *s = c->srv;
    c->answered = 1;
    count_response(s, r->code);
    tdsx_buf_init(&c->out, TDSX_HTTP_FILE_CAP + TDSX_HTTP_HEAD_CAP);
    if (format_response(r, head_only, &c->out) != 0) {
        client_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->out.p, (unsigned)c->out.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        tdsx_buf_free(&c->out);
        client_close(c);
        return;
    }
    /* Until the answer has left: closed only when the client stops reading (on_timer). */
    c->unsent = c->tcp.write_queue_size;
    if (!c->written)
        uv_timer_start(&c->timer, on_timer, s->node->cfg.http_timeout_ms, 0);
}

static void send_text(http_client_t *c, int code, const char *text, int head_only)
{
    response_t r = {code, NULL, tdsx_bytes(text, strlen(text)), NULL, code == 405, 1};
    send_response(c, &r, head_only);
}

/* RFC 9110 §13.1.2: If-None-Match uses the weak comparison; "*" matches any current file. */
static int etag_matches(const char *header, const char *etag)
{
    const char *p = header;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == elen && memcmp(p, etag, n) == 0)
            return 1;
        p += n;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

static void serve_pub(http_client_t *c, const tdsx_http_req_t *req, const char *name)
{
    tdsx_node_t *n = c->srv->node;
    int head_only = req->method == TDSX_HTTP_HEAD;
    if (!n->cfg.publish_dir || !tdsx__http_name_ok(name)) {
        send_text(c, 404, "not found\n", head_only);
        return;
    }
    tdsx_buf_t path;
    tdsx_buf_init(&path, 8192);
    uint8_t *data = NULL;
    size_t len = 0;
    struct stat st;
    int code = 500;
    if (tdsx_buf_printf(&path, "%s/%s", n->cfg.publish_dir, name) != 0)
        goto fail;
    if (stat((const char *)path.p, &st) != 0 || !S_ISREG(st.st_mode)) {
        code = 404;
        goto fail;
    }
    /* Synchronous on the loop: published files are a bundle and CRLs, kilobytes. */
    int rc = tdsx_file_read((const char *)path.p, TDSX_HTTP_FILE_CAP, &data, &len);
    if (rc) {
        tdsx_log(TDSX_LOG_WARN, "http.pub_unreadable", TDSX_KV_S("name", name),
                 TDSX_KV_E("err", rc));
        code = rc == TDSX_E_NOTFOUND ? 404 : 500;
        goto fail;
    }
    uint8_t h[TDSX_HASH_LEN];
    if (tdsx_sha256(data, len, h) != 0)
        goto fail;
    char etag[2 * TDSX_HASH_LEN + 3];
    etag[0] = '"';
    tdsx_hex_encode(etag + 1, h, sizeof h);
    etag[2 * TDSX_HASH_LEN + 1] = '"';
    etag[2 * TDSX_HASH_LEN + 2] = '\0';
    int not_modified = req->if_none_match[0] && etag_matches(req->if_none_match, etag);
    response_t r = {
        not_modified ? 304 : 200, "application/octet-stream", tdsx_bytes(data, len), etag, 0, 0};
    send_response(c, &r, head_only);
    tdsx_free(data);
    tdsx_buf_free(&path);
    return;
fail:
    tdsx_free(data);
    tdsx_buf_free(&path);
    send_text(c, code, code == 404 ? "not found\n" : "cannot read the file\n", head_only);
}

/* Why the node does not exchange, or NULL when it does. */
static const char *not_serving(const tdsx_node_t *n)
{
    if (n->draining)
        return "draining: the node is shutting down";
    switch (tdsx__bundle_check(n)) {
    case 0: return NULL;
    case TDSX_E_BUNDLE_EXPIRED:
        return "bundle expired: exchange stopped until a fresh trust bundle is applied";
    case TDSX_E_BUNDLE_FLOOR:
        return "bundle requires a newer policy floor: exchange stopped until this node is "
               "upgraded or a bundle it honours is applied";
    default: return "exchange stopped by the trust bundle";
    }
}

static void serve(http_client_t *c, const tdsx_http_req_t *req)
{
    tdsx_node_t *n = c->srv->node;
    int head_only = req->method == TDSX_HTTP_HEAD;
    if (strcmp(req->path, "/healthz") == 0) {
        const char *why = not_serving(n);
        tdsx_buf_t b;
        tdsx_buf_init(&b, 1024);
        if (!why || tdsx_buf_printf(&b, "%s\n", why) != 0) {
            send_text(c, why ? 503 : 200, why ? "not serving\n" : "ok\n", head_only);
        } else {
            send_text(c, 503, (const char *)b.p, head_only);
        }
        tdsx_buf_free(&b);
    } else if (strcmp(req->path, "/metrics") == 0) {
        tdsx_buf_t b;
        tdsx_buf_init(&b, METRICS_CAP);
        if (tdsx__http_metrics(n, &b) != 0) {
            send_text(c, 500, "metrics unavailable\n", head_only);
        } else {
            response_t r = {
                200, "text/plain; version=0.0.4; charset=utf-8", tdsx_buf_bytes(&b), NULL, 0, 1};
            send_response(c, &r, head_only);
        }
        tdsx_buf_free(&b);
    } else if (strncmp(req->path, "/pub/", 5) == 0) {
        serve_pub(c, req, req->path + 5);
    } else {
        send_text(c, 404, "not found\n", head_only);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_client_t *c = h->data;
    (void)suggested;
    if (c->answered || c->len == sizeof c->head)
        *buf = uv_buf_init(discard, sizeof discard);
    else
        *buf = uv_buf_init((char *)c->head + c->len, (unsigned)(sizeof c->head - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    http_client_t *c = st->data;
    (void)buf;
    if (c->closing)
        return;
    if (nread < 0) {
        client_close(c);
        return;
    }
    if (nread == 0 || c->answered)
        return;
    c->len += (size_t)nread;
    tdsx_http_req_t *req = tdsx_malloc(sizeof *req);
    if (!req) {
        client_close(c);
        return;
    }
    size_t head_len;
    int rc = tdsx__http_parse(tdsx_bytes(c->head, c->len), req, &head_len);
    switch (rc) {
    case 0: serve(c, req); break;
    case 1: break;
    case TDSX_E_HTTP_HEAD_TOOBIG: send_text(c, 431, "request head too large\n", 0); break;
    case TDSX_E_HTTP_METHOD: send_text(c, 405, "only GET and HEAD\n", 0); break;
    case TDSX_E_HTTP_BODY: send_text(c, 413, "no request body is accepted\n", 0); break;
    case TDSX_E_HTTP_VERSION: send_text(c, 505, "HTTP/1.1 only\n", 0); break;
    default: send_text(c, 400, "bad request\n", 0); break;
    }
    if (rc != 0 && rc != 1)
        tdsx_log(TDSX_LOG_DEBUG, "http.refused", TDSX_KV_E("err", rc));
    tdsx_free(req);
}

static void on_connection(uv_stream_t *server, int status)
{
    tdsx_http_t *s = server->data;
    if (status < 0 || s->stopping)
        return;
    http_client_t *c = tdsx_calloc(1, sizeof *c);
    if (!c) {
        tdsx_log(TDSX_LOG_ERROR, "http.accept_failed", TDSX_KV_E("err", TDSX_E_NOMEM));
        return;
    }
    c->srv = s;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->n_clients++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    if (s->n_clients > s->node->cfg.http_max_connections) {
        s->refused++;
        tdsx_log(TDSX_LOG_WARN, "http.too_many_clients", TDSX_KV_I("open", s->n_clients - 1));
        client_close(c);
        return;
    }
    /* The whole head must arrive within http_timeout, however it trickles in (slowloris). */
    uv_timer_start(&c->timer, on_timer, s->node->cfg.http_timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        client_close(c);
}

static void on_listener_closed(uv_handle_t *h)
{
    tdsx_http_t *s = h->data;
    s->listener_open = 0;
    srv_maybe_free(s);
}

int tdsx__http_start(tdsx_node_t *n)
{
    char host[TDSX_HOST_MAX + 1];
    int port;
    struct sockaddr_storage ss;
    if (!n->cfg.http_listen)
        return 0;
    if (tdsx_config_split_addr(n->cfg.http_listen, host, sizeof host, &port) != 0)
        return TDSX_E_CONFIG;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        tdsx_log(TDSX_LOG_ERROR, "http.listen_failed", TDSX_KV_S("listen", n->cfg.http_listen),
                 TDSX_KV_S("reason", "not an IP address"));
        return TDSX_E_CONFIG;
    }
    tdsx_http_t *s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    s->node = n;
    uv_tcp_init(n->loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    n->http = s;
    int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "http.listen_failed", TDSX_KV_S("listen", n->cfg.http_listen),
                 TDSX_KV_S("reason", uv_strerror(rc)));
        tdsx__http_stop(n);
        return TDSX_E_IO;
    }
    tdsx_log(TDSX_LOG_INFO, "http.listening", TDSX_KV_S("listen", n->cfg.http_listen),
             TDSX_KV_S("publish_dir", n->cfg.publish_dir ? n->cfg.publish_dir : ""));
    return 0;
}

void tdsx__http_stop(tdsx_node_t *n)
{
    tdsx_http_t *s = n->http;
    if (!s)
        return;
    n->http = NULL;
    s->stopping = 1;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (http_client_t *c = s->clients; c; c = c->next)
        client_close(c);
}

/* ---- metrics ----------------------------------------------------------------------------- */

/* Prometheus label values escape backslash, double quote and line feed. */
static int label_value(tdsx_buf_t *b, const char *v)
{
    int rc = 0;
    for (; *v && rc == 0; v++) {
        if (*v == '\\')
            rc = tdsx_buf_append_str(b, "\\\\");
        else if (*v == '"')
            rc = tdsx_buf_append_str(b, "\\\"");
        else if (*v == '\n')
            rc = tdsx_buf_append_str(b, "\\n");
        else
            rc = tdsx_buf_append(b, v, 1);
    }
    return rc;
}

static int family(tdsx_buf_t *b, const char *name, const char *type, const char *help)
{
    return tdsx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int sample(tdsx_buf_t *b, const char *name, long long v)
{
    return tdsx_buf_printf(b, "%s %lld\n", name, v);
}

static int gauge(tdsx_buf_t *b, const char *name, const char *help, long long v)
{
    int rc = family(b, name, "gauge", help);
    return rc ? rc : sample(b, name, v);
}

static int counter(tdsx_buf_t *b, const char *name, const char *help, uint64_t v)
{
    int rc = family(b, name, "counter", help);
    return rc ? rc : tdsx_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static const char *const outcome_names[TDSX_XFER_OUTCOMES] = {"receipted", "refused", "aborted",
                                                              "interrupted", "nrd"};

void tdsx__http_count_transfer(tdsx_node_t *n, int inbound, const char *event, const char *tags)
{
    if (strncmp(event, "transfer.", 9) != 0)
        return;
    size_t o = 0;
    while (o < TDSX_XFER_OUTCOMES && strcmp(event + 9, outcome_names[o]) != 0)
        o++;
    if (o == TDSX_XFER_OUTCOMES)
        return;
    tdsx_tags_t t;
    tdsx_tags_error_t te;
    size_t g = TDSX_GRADE_UNSET;
    if (tags && tags[0] && tdsx_tags_parse(tdsx_bytes(tags, strlen(tags)), &t, &te) == 0 &&
        (size_t)t.grade < TDSX_XFER_GRADES)
        g = (size_t)t.grade;
    n->xfer_outcomes[inbound ? 1 : 0][o][g]++;
}

int tdsx__http_metrics(tdsx_node_t *n, tdsx_buf_t *b)
{
    int64_t now = tdsx_now();
    int rc = family(b, "tdsx_node_info", "gauge", "The node's identity; the value is always 1.");
    if (rc == 0)
        rc = tdsx_buf_append_str(b, "tdsx_node_info{id=\"");
    if (rc == 0)
        rc = label_value(b, n->self_id);
    if (rc == 0)
        rc = tdsx_buf_printf(b, "\",role=\"%s\",version=\"%s\"} 1\n", tdsx_role_name(n->cfg.role),
                             TDSX_VERSION);
    if (rc == 0)
        rc = gauge(b, "tdsx_start_time_seconds", "When the daemon started (Unix time).",
                   n->started_at);
    if (rc == 0)
        rc = gauge(b, "tdsx_draining", "1 while the node is shutting down.", n->draining != 0);
#define X(field, cname)                                                                            \
    if (rc == 0)                                                                                   \
        rc = counter(b, "tdsx_" cname "_total", "Node counter " cname " (as tdsx status).",        \
                     n->counters.field);
    TDSX_COUNTERS(X)
#undef X
    if (rc == 0)
        rc = gauge(b, "tdsx_connections_open", "Peer connections open now.", (long long)n->n_conns);

    if (rc == 0)
        rc = family(b, "tdsx_transfers_total", "counter",
                    "Transfers ended, by direction, outcome and grade of their tags.");
    for (int d = 0; d < 2 && rc == 0; d++)
        for (size_t o = 0; o < TDSX_XFER_OUTCOMES && rc == 0; o++)
            for (size_t g = 0; g < TDSX_XFER_GRADES && rc == 0; g++)
                rc = tdsx_buf_printf(b,
                                     "tdsx_transfers_total{direction=\"%s\",outcome=\"%s\","
                                     "grade=\"%s\"} %llu\n",
                                     d ? "in" : "out", outcome_names[o],
                                     g == TDSX_GRADE_UNSET ? "unset"
                                                           : tdsx_grade_name((tdsx_grade_t)g),
                                     (unsigned long long)n->xfer_outcomes[d][o][g]);
    if (rc == 0)
        rc = family(b, "tdsx_receipts_total", "counter",
                    "Transfers that ended with a signed receipt (receipted or refused).");
    for (int d = 0; d < 2 && rc == 0; d++) {
        uint64_t sum = 0;
        for (size_t g = 0; g < TDSX_XFER_GRADES; g++)
            sum += n->xfer_outcomes[d][0][g] + n->xfer_outcomes[d][1][g];
        rc = tdsx_buf_printf(b, "tdsx_receipts_total{direction=\"%s\"} %llu\n", d ? "in" : "out",
                             (unsigned long long)sum);
    }
    if (rc == 0)
        rc = gauge(b, "tdsx_log_entries", "Entries in the node's transparency log.",
                   (long long)tdsx__log_size(n));
    if (rc == 0)
        rc = family(b, "tdsx_certificate_expiry_seconds", "gauge",
                    "When the node's own certificate expires (Unix time).");
    if (rc == 0)
        rc = tdsx_buf_printf(b,
                             "tdsx_certificate_expiry_seconds{purpose=\"auth\"} %lld\n"
                             "tdsx_certificate_expiry_seconds{purpose=\"sign\"} %lld\n",
                             (long long)n->self_auth.not_after, (long long)n->self_sign.not_after);
    if (rc == 0)
        rc = family(b, "tdsx_certificate_expires_in_seconds", "gauge",
                    "Seconds until the node's own certificate expires (negative: expired).");
    if (rc == 0)
        rc = tdsx_buf_printf(b,
                             "tdsx_certificate_expires_in_seconds{purpose=\"auth\"} %lld\n"
                             "tdsx_certificate_expires_in_seconds{purpose=\"sign\"} %lld\n",
                             (long long)(n->self_auth.not_after - now),
                             (long long)(n->self_sign.not_after - now));
    uint64_t serial = 0;
    int64_t issued = 0, expires = 0;
    int expired = 0;
    tdsx__bundle_state(n, &serial, &issued, &expires, &expired);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_serial", "Serial of the trust bundle in force (0: none).",
                   (long long)serial);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_issued_seconds",
                   "When the bundle in force was issued (Unix time, 0: none).", issued);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_expiry_seconds",
                   "When the bundle in force expires (Unix time, 0: none).", expires);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_age_seconds", "Seconds since the bundle in force was issued.",
                   serial ? now - issued : 0);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_expires_in_seconds",
                   "Seconds until the bundle in force expires (negative: expired).",
                   serial ? expires - now : 0);
    if (rc == 0)
        rc = gauge(b, "tdsx_bundle_expired",
                   "1 while exchange is stopped because the bundle in force expired.", expired);
    if (rc == 0 && n->fetch) {
        tdsx_fetch_state_t fs;
        tdsx__fetch_state(n->fetch, &fs);
        if (rc == 0)
            rc = gauge(b, "tdsx_bundle_fetch_last_attempt_seconds",
                       "When a mirror was last asked for the bundle (Unix time, 0: never).",
                       fs.last_attempt_at);
        if (rc == 0)
            rc = gauge(b, "tdsx_bundle_fetch_last_success_seconds",
                       "When a mirror last answered with a usable bundle or 304 (0: never).",
                       fs.last_ok_at);
        if (rc == 0)
            rc = gauge(b, "tdsx_bundle_fetch_last_ok",
                       "1 when the last attempt succeeded, 0 when it failed.", fs.last_rc == 0);
        if (rc == 0)
            rc = gauge(b, "tdsx_bundle_fetch_last_http_status",
                       "HTTP status of the last attempt (0: no answer).", fs.last_status);
        if (rc == 0)
            rc = counter(b, "tdsx_bundle_fetch_attempts_total", "Requests to a mirror.",
                         fs.attempts);
        if (rc == 0)
            rc = counter(b, "tdsx_bundle_fetch_failures_total",
                         "Requests that failed (network, status, size, refused bundle).",
                         fs.failures);
        if (rc == 0)
            rc = counter(b, "tdsx_bundle_fetch_applied_total", "Downloaded bundles applied.",
                         fs.applied);
        if (rc == 0)
            rc = counter(b, "tdsx_bundle_fetch_not_modified_total",
                         "Mirror answers 304 Not Modified.", fs.not_modified);
        if (rc == 0)
            rc = counter(b, "tdsx_bundle_fetch_refused_total",
                         "Downloaded bodies the bundle engine refused.", fs.refused);
    }
    tdsx_http_t *s = n->http;
    if (rc == 0 && s) {
        rc = family(b, "tdsx_http_responses_total", "counter",
                    "Answers of this HTTP endpoint, by status.");
        for (size_t i = 0; i < N_CODES && rc == 0; i++)
            rc = tdsx_buf_printf(b, "tdsx_http_responses_total{code=\"%d\"} %llu\n", http_codes[i],
                                 (unsigned long long)s->responses[i]);
        if (rc == 0)
            rc = gauge(b, "tdsx_http_connections_open", "HTTP clients connected now.",
                       (long long)s->n_clients);
        if (rc == 0)
            rc = counter(b, "tdsx_http_connections_refused_total",
                         "HTTP clients closed on accept (http_max_connections).", s->refused);
        if (rc == 0)
            rc = counter(b, "tdsx_http_timeouts_total",
                         "HTTP clients closed before a complete request (http_timeout).",
                         s->timeouts);
    }
    return rc;
}
