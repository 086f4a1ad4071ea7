/*
 * http.h — the node's small HTTP/1.1 endpoint (SPEC §15) and its trust-bundle fetcher (SPEC §3).
 * Internal to gateway/.
 *
 * The endpoint (http.c) listens at the config's http_listen on the node's libuv loop and serves
 *   GET|HEAD /healthz     200 "ok", or 503 with the reason the node is not exchanging;
 *   GET|HEAD /metrics     Prometheus text exposition format 0.0.4;
 *   GET|HEAD /pub/NAME    the file NAME of publish_dir (NAME: [A-Za-z0-9._-]{1,255}, no leading
 *                         dot), with a strong ETag (quoted hex SHA-256 of the bytes) and
 *                         If-None-Match -> 304.
 * One request per connection: every answer carries `Connection: close` and the server closes
 * after writing it (no keep-alive: scrapers and libcurl open one connection per request anyway,
 * and a connection never outlives one request head plus one answer). Refusals: a request head
 * over TDSX_HTTP_HEAD_CAP -> 431, a method other than GET or HEAD -> 405 with `Allow: GET, HEAD`,
 * a body (Content-Length > 0 or any Transfer-Encoding) -> 413, anything unparsable -> 400, a
 * version other than HTTP/1.0 or 1.1 -> 505, an unknown path -> 404. A client that has not sent
 * a complete head within http_timeout is closed without an answer; more than
 * http_max_connections clients at once are closed on accept. Files are read synchronously on
 * the loop, capped at TDSX_HTTP_FILE_CAP (a bundle and CRLs are kilobytes).
 *
 * The fetcher (fetch.c) drives libcurl's multi-socket interface from the same loop (uv_poll
 * for curl's sockets, a uv_timer for its timeouts; no thread).
 */
#ifndef TDSX_GATEWAY_HTTP_H
#define TDSX_GATEWAY_HTTP_H

#include "daemon.h"

/* Caps, defined once. */
#define TDSX_HTTP_HEAD_CAP (8u * 1024u)           /* request line + headers */
#define TDSX_HTTP_FILE_CAP (16u * 1024u * 1024u)  /* one /pub file */
#define TDSX_HTTP_NAME_MAX 255u                   /* a /pub NAME */
#define TDSX_HTTP_ETAG_MAX 128u                   /* an ETag we send or keep, quotes included */
#define TDSX_FETCH_BODY_CAP (16u * 1024u * 1024u) /* one downloaded bundle */

/* ---- the request-head parser (pure: no I/O) ---------------------------------------------- */

typedef enum { TDSX_HTTP_GET = 0, TDSX_HTTP_HEAD = 1 } tdsx_http_method_t;

typedef struct tdsx_http_req_s {
    tdsx_http_method_t method;
    char path[TDSX_HTTP_HEAD_CAP]; /* the target's path, NUL-terminated, query dropped */
    char if_none_match[TDSX_HTTP_ETAG_MAX + 1]; /* the header's value, "" when absent or longer */
} tdsx_http_req_t;

/*
 * Parses one request head (RFC 9112 §2-§3, §6-§7) from the start of `in`.
 * Returns 0 with *req filled and *head_len = the bytes up to and including the empty line,
 * 1 when the head is not complete yet (ask again with more bytes), or
 *   TDSX_E_HTTP_HEAD_TOOBIG   no end of head within TDSX_HTTP_HEAD_CAP bytes;
 *   TDSX_E_HTTP_METHOD        a well-formed request whose method is not GET or HEAD;
 *   TDSX_E_HTTP_BODY          Content-Length other than 0, or a Transfer-Encoding;
 *   TDSX_E_HTTP_VERSION       not HTTP/1.0 or HTTP/1.1;
 *   TDSX_E_HTTP_REQUEST       anything else malformed (bare LF is accepted as a line end,
 *                             RFC 9112 §2.2; obsolete line folding is not).
 * req may be written on failure; its content is then meaningless.
 */
TDSX_MUST_CHECK int tdsx__http_parse(tdsx_bytes_t in, tdsx_http_req_t *req, size_t *head_len);

/* 1 when name may be served from publish_dir: 1..TDSX_HTTP_NAME_MAX bytes of [A-Za-z0-9._-]
 * not starting with '.' (so no "..", no hidden file, no '/'). */
int tdsx__http_name_ok(const char *name);

/* ---- the endpoint ---------------------------------------------------------------------------- */

/* Starts listening at n->cfg.http_listen (nothing when it is NULL) and sets n->http.
 * TDSX_E_CONFIG for an address that is not an IP address, TDSX_E_IO when the bind fails (logged
 * as http.listen_failed), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__http_start(tdsx_node_t *n);
/* Closes the listener and every client (node shutdown); the state is freed in the last close
 * callback. Idempotent, NULL-safe on a node without an endpoint. */
void tdsx__http_stop(tdsx_node_t *n);

/* Transfers by outcome for /metrics: the exchange calls this with the event it logs for a
 * transfer ("transfer.receipted", "transfer.refused", "transfer.aborted",
 * "transfer.interrupted", "transfer.nrd"; any other event is ignored), the transfer's tag text
 * (its grade is the label; "" or unparsable counts as grade "unset") and its direction. */
void tdsx__http_count_transfer(tdsx_node_t *n, int inbound, const char *event, const char *tags);

/* Writes the whole /metrics page into out (a capped buffer). TDSX_E_TOOBIG, TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__http_metrics(tdsx_node_t *n, tdsx_buf_t *out);

/* ---- the bundle fetcher (fetch.c) ------------------------------------------------------------ */

typedef struct tdsx_fetch_s tdsx_fetch_t;

/* Called on the loop with each complete 200 body: 0 applied, 1 nothing new (the same serial),
 * negative when refused (the mirror then counts as failed and the next one is tried). body
 * lives only during the call. url is the mirror's URL as configured. */
typedef int (*tdsx_fetch_apply_fn)(void *ud, tdsx_bytes_t body, const char *url);

typedef struct tdsx_fetch_opts_s {
    const char *const *urls; /* mirrors in order; copied */
    size_t n_urls;           /* >= 1 */
    uint64_t refresh_ms;     /* between successful rounds */
    uint64_t connect_timeout_ms;
    uint64_t timeout_ms;   /* one attempt, connect included */
    size_t body_cap;       /* a larger body fails the attempt */
    uint64_t retry_min_ms; /* first wait after a round where every mirror failed; doubles */
    uint64_t retry_max_ms; /* ... up to this (jitter: the wait is 75-125 % of it) */
    const char *ca_file;   /* https: a CA file trusted besides libcurl's default CA directory;
                            * NULL: libcurl's defaults only */
    /* Optional (NULL: always 1), called on the loop with the apply callback's ud: 0 when the
     * bundle in force has expired. Then a 304, or a 200 the engine finds unchanged, is a
     * stale mirror: the attempt fails with TDSX_E_BUNDLE_EXPIRED (result "stale") and the
     * next mirror is asked, and a round where all are stale backs off instead of waiting
     * refresh_ms. */
    int (*in_force_ok)(void *ud);
} tdsx_fetch_opts_t;

/* What /metrics and logs show. Times are tdsx_now() seconds, 0 when it never happened. */
typedef struct tdsx_fetch_state_s {
    int64_t last_attempt_at; /* end of the last attempt, any mirror */
    int last_rc;             /* 0 or the last attempt's TDSX_E_* */
    long last_status;        /* its HTTP status, 0 when none */
    int64_t last_ok_at; /* end of the last round that reached a mirror (200 applied/same, 304) */
    uint64_t rounds, attempts, failures, applied, not_modified, refused;
} tdsx_fetch_state_t;

/* Creates a fetcher on loop; nothing runs until tdsx__fetch_start. TDSX_E_INVAL for no URL or a
 * zero cap/timeout, TDSX_E_NOMEM, TDSX_E_INTERNAL when libcurl cannot be initialised. */
TDSX_MUST_CHECK int tdsx__fetch_new(uv_loop_t *loop, const tdsx_fetch_opts_t *o,
                                    tdsx_fetch_apply_fn apply, void *ud, tdsx_fetch_t **out);
/* Starts a round now; later rounds every refresh_ms (after a success) or with backoff. */
void tdsx__fetch_start(tdsx_fetch_t *f);
/* Starts a round now unless one is running (SIGHUP). */
void tdsx__fetch_now(tdsx_fetch_t *f);
void tdsx__fetch_state(const tdsx_fetch_t *f, tdsx_fetch_state_t *out);
/* Aborts the attempt in flight (apply is not called again), closes the handles; f is freed in
 * the last close callback, so uv_run must run afterwards. NULL-safe. */
void tdsx__fetch_close(tdsx_fetch_t *f);

/* Fills the bundle_fetch_* fields of a StatusResponse (strings live in n's fetcher); nothing
 * when the node has no fetcher. */
void tdsx__fetch_status(const tdsx_node_t *n, Tdsx__StatusResponse *st);

/* The node's fetcher (node.c): created and started when the config has bundle_url; each body
 * goes to the bundle engine. Sets n->fetch. */
TDSX_MUST_CHECK int tdsx__fetch_node_start(tdsx_node_t *n);

#endif
