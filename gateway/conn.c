/*
 * conn.c — one TLS connection between two nodes, as a thin libuv shell around the TLS engine
 * and the frame decoder (SPEC §4).
 *
 * Memory is bounded on both paths. In: one socket read at a time is fed to the engine, whose
 * own buffers are capped; decrypted bytes go straight through the frame decoder (at most one
 * partial frame, frame_cap). Out: ciphertext is handed to uv_write and counted in
 * out_inflight; when that passes the connection's output cap we stop reading the socket, so a
 * peer that sends without reading cannot make us queue answers without bound, and if the
 * output makes no progress for stall_timeout the connection is closed.
 *
 * One timer per connection, set to the nearest deadline (handshake, idle, ping, stall). It is
 * not re-armed on every byte: it fires at the old deadline, sees the fresh timestamps and
 * re-arms, which costs one wake-up per deadline period instead of one timer update per read.
 */
#include "daemon.h"
#include "bundle.h"
#include "exchange.h"

#include <string.h>

#include <sodium.h>

/* Ciphertext queued in uv_write requests beyond which we stop reading: two whole frames plus
 * headroom, so a complete answer can always be queued before reading pauses. */
#define CONN_OUT_CAP(c) (2 * (c)->node->cfg.frame_cap + 256u * 1024u)
/* After a fatal error, how long the alert and Error frame get to leave before the socket is
 * closed regardless. */
#define CONN_LINGER_MS 1000u

struct tdsx_conn_s {
    uv_tcp_t tcp; /* first: handle->data is not needed to find the conn */
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    tdsx_node_t *node;
    tdsx_dialer_t *dialer; /* NULL for accepted connections */
    tdsx_conn_t *prev, *next;

    tdsx_conn_state_t state;
    int err;          /* first fatal error, sticky */
    int handles_open; /* tcp and timer; freed when it reaches 0 */
    int reading;
    int shutting_down;
    int inbound;
    char remote[64];

    tdsx_tls_conn_t *tls;
    tdsx_frame_decoder_t dec;
    tdsx_arena_t *arena;
    tdsx_buf_t tx; /* encoded frames waiting to be encrypted: coalesced into few records */
    int in_input;  /* processing received bytes: sends are flushed once at the end */
    int held;      /* tx holds frames the store's group commit has not released (below) */

    uint64_t t_state; /* uv_now when the state began */
    uint64_t t_rx;    /* last bytes received */
    uint64_t t_tx;    /* last write completion (or when output became pending) */
    uint64_t t_ping;  /* last ping sent */
    int64_t since;    /* wall clock of the state change, for status */
    uint64_t out_inflight;
    uint64_t bytes_in, bytes_out;
    uint64_t ping_nonce;
    uint32_t streams_open;
    uint32_t next_stream;
    int stall_suspect; /* the stall deadline passed; judged after one more I/O phase */
    int out_full;      /* output at its cap: reading paused until it drains */
    uint64_t t_full;   /* when the output reached its cap */
    uint64_t stall_tx; /* t_tx when the suspicion was raised */
    int out_blocked;   /* output passed its cap; the exchange is told when it drains */
    void *x;           /* the exchange's per-connection state */
};

typedef struct {
    uv_write_t req;
    tdsx_conn_t *conn;
    uv_buf_t buf;
    uint8_t data[];
} write_req_t;

static void flush_output(tdsx_conn_t *c);
static void arm_timer(tdsx_conn_t *c);
static void update_reading(tdsx_conn_t *c);

const char *tdsx__conn_state_name(tdsx_conn_state_t s)
{
    switch (s) {
    case TDSX_CONN_CONNECTING: return "connecting";
    case TDSX_CONN_HANDSHAKE: return "handshake";
    case TDSX_CONN_OPEN: return "open";
    case TDSX_CONN_DRAINING: return "draining";
    case TDSX_CONN_CLOSING: return "closing";
    default: return "unknown";
    }
}

static const char *peer_name(const tdsx_conn_t *c)
{
    const char *id = c->tls ? tdsx_tls_conn_peer_id(c->tls) : NULL;
    return id ? id : "";
}

static void set_state(tdsx_conn_t *c, tdsx_conn_state_t s)
{
    c->state = s;
    c->t_state = uv_now(c->node->loop);
    c->since = tdsx_now();
}

static void on_handle_closed(uv_handle_t *h)
{
    tdsx_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    tdsx_node_t *n = c->node;
    tdsx__exchange_conn_closed(c, c->err);
    if (c->dialer)
        tdsx__dialer_closed(c->dialer, c->err);
    tdsx_tls_conn_free(c->tls);
    tdsx_frame_decoder_free(&c->dec);
    tdsx_arena_free(c->arena);
    tdsx_buf_free(&c->tx);
    tdsx_free(c);
    tdsx__node_conn_gone(n);
}

static void unlink_conn(tdsx_conn_t *c)
{
    tdsx_node_t *n = c->node;
    if (c->prev)
        c->prev->next = c->next;
    else if (n->conns == c)
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    n->n_conns--;
}

/* Closes both handles; the connection is freed when the last one is closed. */
static void close_now(tdsx_conn_t *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->state != TDSX_CONN_CLOSING)
        set_state(c, TDSX_CONN_CLOSING);
    unlink_conn(c);
    c->node->counters.conns_closed++;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_now(req->data);
}

/* Lets queued output (the alert, an Error frame, close_notify) leave, then closes. The timer
 * bounds the wait: a peer that never reads cannot hold the connection open. */
static void linger_then_close(tdsx_conn_t *c)
{
    if (c->shutting_down || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->held)
        tdsx__exchange_commit(c->node); /* releases c's frames too */
    c->shutting_down = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    set_state(c, TDSX_CONN_CLOSING);
    flush_output(c);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
        arm_timer(c); /* bounds the wait: CONN_LINGER_MS */
        return;
    }
    close_now(c);
}

static void log_close(tdsx_conn_t *c, int err, const char *reason)
{
    const char *event = c->state == TDSX_CONN_OPEN || c->state == TDSX_CONN_DRAINING
                            ? "conn.close"
                            : "conn.refused";
    if (err == 0) {
        tdsx_log(TDSX_LOG_INFO, event, TDSX_KV_S("peer", peer_name(c)),
                 TDSX_KV_S("remote", c->remote), TDSX_KV_S("dir", c->inbound ? "in" : "out"),
                 TDSX_KV_S("reason", reason));
        return;
    }
    const char *detail = c->tls ? tdsx_tls_conn_detail(c->tls) : "";
    tdsx_log(TDSX_LOG_WARN, event, TDSX_KV_S("peer", peer_name(c)), TDSX_KV_S("remote", c->remote),
             TDSX_KV_S("dir", c->inbound ? "in" : "out"), TDSX_KV_E("err", err),
             TDSX_KV_S("reason", reason), TDSX_KV_S("detail", detail));
}

static int send_frame(tdsx_conn_t *c, const Tdsx__Frame *f);

/* Queues close_notify. A failure is already sticky in the engine and the connection is being
 * closed either way, so there is nothing more to do with it. */
static int flush_tx(tdsx_conn_t *c);

static void tls_close(tdsx_conn_t *c)
{
    if (c->held) /* what we answered leaves before close_notify, durable first */
        tdsx__exchange_commit(c->node);
    int rc = flush_tx(c);
    if (rc == 0)
        rc = tdsx_tls_conn_close(c->tls);
    (void)rc;
}

void tdsx__conn_fail(tdsx_conn_t *c, int err, const char *reason)
{
    if (c->err || c->shutting_down)
        return;
    c->err = err;
    if (c->state == TDSX_CONN_HANDSHAKE || c->state == TDSX_CONN_CONNECTING)
        c->node->counters.conns_refused++;
    if (err == TDSX_E_TIMEOUT)
        c->node->counters.timeouts++;
    if (err == TDSX_E_PROTOCOL || err == TDSX_E_FRAME_TOOBIG || err == TDSX_E_FRAME_EMPTY ||
        err == TDSX_E_FRAME_TRUNCATED || err == TDSX_E_PROTO_DECODE ||
        err == TDSX_E_PROTO_UNSUPPORTED || err == TDSX_E_FLOW || err == TDSX_E_ARENA_BUDGET)
        c->node->counters.protocol_errors++;
    log_close(c, err, reason);
    /* Tell the peer why, when the channel still works and the fault is in what it sent. */
    if (c->tls && tdsx_tls_conn_state(c->tls) == TDSX_TLS_OPEN && tdsx_err_wire(err)) {
        Tdsx__Error e = TDSX__ERROR__INIT;
        Tdsx__Frame f = TDSX__FRAME__INIT;
        e.code = tdsx_err_wire(err);
        e.message = (char *)tdsx_strerror(err);
        f.body_case = TDSX__FRAME__BODY_ERROR;
        f.error = &e;
        if (send_frame(c, &f) == 0)
            tls_close(c);
    }
    linger_then_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    tdsx_conn_t *c = w->conn;
    c->out_inflight -= w->buf.len;
    c->t_tx = uv_now(c->node->loop);
    tdsx_free(w);
    if (status < 0) {
        if (status != UV_ECANCELED && !c->err && !c->shutting_down)
            tdsx__conn_fail(c, TDSX_E_IO, uv_strerror(status));
        return;
    }
    update_reading(c);
    if (c->out_blocked && c->out_inflight < CONN_OUT_CAP(c) / 2 && !c->shutting_down) {
        c->out_blocked = 0;
        tdsx__exchange_writable(c);
    }
}

/* Moves the engine's ciphertext into write requests. */
static void flush_output(tdsx_conn_t *c)
{
    if (!c->tls || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    for (;;) {
        size_t len;
        const uint8_t *p = tdsx_tls_conn_output(c->tls, &len);
        if (!p || len == 0)
            return;
        write_req_t *w = tdsx_malloc(sizeof *w + len);
        if (!w) {
            c->err = c->err ? c->err : TDSX_E_NOMEM;
            close_now(c);
            return;
        }
        memcpy(w->data, p, len);
        tdsx_tls_conn_consume(c->tls, len);
        w->conn = c;
        w->buf = uv_buf_init((char *)w->data, (unsigned)len);
        if (c->out_inflight == 0)
            c->t_tx = uv_now(c->node->loop);
        c->out_inflight += len;
        int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_write);
        if (rc < 0) {
            c->out_inflight -= len;
            tdsx_free(w);
            c->err = c->err ? c->err : TDSX_E_IO;
            close_now(c);
            return;
        }
    }
}

/* Encrypts all of p; the engine's output buffer is emptied into write requests as it fills. */
static int write_plain(tdsx_conn_t *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t wrote = 0;
        int rc = tdsx_tls_conn_write(c->tls, p, n, &wrote);
        if (rc == TDSX_E_AGAIN && wrote == 0) {
            flush_output(c);
            if (uv_is_closing((uv_handle_t *)&c->tcp))
                return TDSX_E_CLOSED;
            rc = tdsx_tls_conn_write(c->tls, p, n, &wrote);
        }
        if (rc < 0 && wrote == 0)
            return rc;
        p += wrote;
        n -= wrote;
    }
    flush_output(c);
    return 0;
}

/* Encrypts everything waiting in tx and hands the ciphertext to libuv. */
static int flush_tx(tdsx_conn_t *c)
{
    int rc = 0;
    if (c->tx.len > 0) {
        rc = write_plain(c, c->tx.p, c->tx.len);
        tdsx_buf_reset(&c->tx);
    }
    return rc;
}

/* Group commit (store.h, exchange.h): while the store holds writes not yet committed, a frame
 * may announce one of them (an NRR, an accepted offset, a sequence number inside an NRO), so
 * nothing queued leaves until the commit: tdsx__exchange_commit releases every held
 * connection. Frames keep their order; the output cap counts held bytes (tdsx__conn_writable). */
static int flush_tx_gated(tdsx_conn_t *c)
{
    if (c->tx.len > 0 && tdsx__exchange_holding(c->node)) {
        c->held = 1;
        return 0;
    }
    return flush_tx(c);
}

void tdsx__conn_release(tdsx_node_t *n)
{
    for (tdsx_conn_t *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (!c->held)
            continue;
        c->held = 0;
        if (c->err || uv_is_closing((uv_handle_t *)&c->tcp))
            continue;
        int rc = flush_tx(c);
        if (rc)
            tdsx__conn_fail(c, rc, "write");
    }
}

/* Queues one frame. Frames queued while input is being processed leave together when it is
 * done (one TLS record and one write for many small answers); others leave at once, unless the
 * group commit holds them. */
static int send_frame(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    size_t before = c->tx.len;
    int rc = tdsx_frame_encode(f, c->node->cfg.frame_cap, &c->tx);
    if (rc == TDSX_E_TOOBIG) {
        /* tx is full: commit now rather than hold more (the commit releases tx). */
        if (tdsx__exchange_holding(c->node))
            tdsx__exchange_commit(c->node);
        rc = flush_tx(c);
        before = 0;
        if (rc == 0)
            rc = tdsx_frame_encode(f, c->node->cfg.frame_cap, &c->tx);
    }
    if (rc)
        return rc;
    size_t n = c->tx.len - before;
    c->node->counters.frames_out++;
    c->bytes_out += n;
    c->node->counters.bytes_out += n;
    if (!c->in_input || c->tx.len >= 64u * 1024u)
        rc = flush_tx_gated(c);
    return rc;
}

static void send_ping(tdsx_conn_t *c)
{
    Tdsx__Ping p = TDSX__PING__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    p.nonce = ++c->ping_nonce;
    f.body_case = TDSX__FRAME__BODY_PING;
    f.ping = &p;
    c->t_ping = uv_now(c->node->loop);
    int rc = send_frame(c, &f);
    if (rc)
        tdsx__conn_fail(c, rc, "ping");
}

/* Handles one decoded frame. Connection-level bodies are answered here; the rest belong to
 * the exchange, which later issues plug in. */
static int handle_frame(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    switch (f->body_case) {
    case TDSX__FRAME__BODY_PING: {
        Tdsx__Pong p = TDSX__PONG__INIT;
        Tdsx__Frame out = TDSX__FRAME__INIT;
        p.nonce = f->ping->nonce;
        out.stream_id = f->stream_id;
        out.body_case = TDSX__FRAME__BODY_PONG;
        out.pong = &p;
        return send_frame(c, &out);
    }
    case TDSX__FRAME__BODY_PONG: return 0;
    case TDSX__FRAME__BODY_ERROR: {
        int code = tdsx_err_from_wire(f->error->code);
        tdsx_log(TDSX_LOG_WARN, "conn.peer_error", TDSX_KV_S("peer", peer_name(c)),
                 TDSX_KV_E("err", code), TDSX_KV_S("message", f->error->message));
        if (f->stream_id == 0) {
            /* The peer is closing the connection on us: nothing of ours to send back. */
            c->err = code;
            linger_then_close(c);
        }
        return 0;
    }
    case TDSX__FRAME__BODY__NOT_SET: return TDSX_E_PROTO_UNSUPPORTED;
    default: return tdsx__exchange_frame(c, f);
    }
}

static void on_open(tdsx_conn_t *c)
{
    /* An expired (or too demanding) trust bundle stops all exchange (SPEC §3, bundle.h). */
    int stop = tdsx__bundle_check(c->node);
    if (stop != 0) {
        tdsx__conn_fail(c, stop, tdsx_strerror(stop));
        return;
    }
    set_state(c, TDSX_CONN_OPEN);
    c->node->counters.conns_open++;
    const tdsx_identity_t *id = tdsx_tls_conn_peer(c->tls);
    tdsx_log(TDSX_LOG_INFO, "conn.open", TDSX_KV_S("peer", peer_name(c)),
             TDSX_KV_S("org", id ? id->org : ""),
             TDSX_KV_S("role", id ? tdsx_role_name(id->role) : ""), TDSX_KV_S("remote", c->remote),
             TDSX_KV_S("dir", c->inbound ? "in" : "out"));
    if (c->dialer)
        tdsx__dialer_opened(c->dialer, c);
    tdsx__exchange_conn_open(c);
    if (c->node->draining)
        tdsx__conn_drain(c);
}

/* Decrypts what the engine holds and runs it through the frame decoder. */
static int pump_plaintext(tdsx_conn_t *c)
{
    uint8_t plain[16384];
    for (;;) {
        size_t got = 0;
        int rc = tdsx_tls_conn_read(c->tls, plain, sizeof plain, &got);
        if (rc == TDSX_E_AGAIN)
            return 0;
        if (rc == TDSX_E_CLOSED)
            return TDSX_E_CLOSED;
        if (rc < 0)
            return rc;
        c->bytes_in += got;
        c->node->counters.bytes_in += got;
        tdsx_bytes_t in = tdsx_bytes(plain, got), body;
        while ((rc = tdsx_frame_decoder_next(&c->dec, &in, &body)) > 0) {
            Tdsx__Frame *f = NULL;
            c->node->counters.frames_in++;
            rc = tdsx_frame_unpack(c->arena, body, &f);
            if (rc == 0)
                rc = handle_frame(c, f);
            tdsx_arena_reset(c->arena);
            if (rc < 0)
                return rc;
            if (c->shutting_down)
                return 0;
        }
        if (rc < 0)
            return rc;
    }
}

static void after_input(tdsx_conn_t *c)
{
    if (c->state == TDSX_CONN_HANDSHAKE) {
        int rc = tdsx_tls_conn_handshake(c->tls);
        flush_output(c);
        if (rc == TDSX_E_AGAIN)
            return;
        if (rc < 0) {
            tdsx__conn_fail(c, rc, "handshake");
            return;
        }
        on_open(c);
    }
    c->in_input = 1;
    int rc = pump_plaintext(c);
    c->in_input = 0;
    int frc_tx = flush_tx_gated(c);
    if (rc == 0 && frc_tx < 0)
        rc = frc_tx;
    flush_output(c);
    if (rc == TDSX_E_CLOSED) {
        /* The peer's close_notify: a frame cut short by it is a truncated frame. */
        int frc = tdsx_frame_decoder_finish(&c->dec);
        if (frc < 0) {
            tdsx__conn_fail(c, frc, "peer closed inside a frame");
            return;
        }
        log_close(c, 0, "peer closed");
        linger_then_close(c);
        return;
    }
    if (rc < 0)
        tdsx__conn_fail(c, rc, rc == TDSX_E_TLS ? "tls" : "bad frame");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    tdsx_conn_t *c = h->data;
    /* The engine takes at most its room; reading no more than that means every byte read can
     * be fed at once. */
    size_t room = c->tls ? tdsx_tls_conn_room(c->tls) : 0;
    if (room > TDSX_CONN_READ_SIZE)
        room = TDSX_CONN_READ_SIZE;
    /* One buffer for every connection of the node: on_read feeds all of it to the engine
     * before libuv asks for the next (one thread), and a malloc/free of 64 KiB per read left
     * touched chunks that long-lived buffers then reused (resident memory per idle
     * connection, tdsx bench conns). */
    tdsx_node_t *n = c->node;
    if (room && !n->read_buf)
        n->read_buf = tdsx_malloc(TDSX_CONN_READ_SIZE);
    buf->base = room && n->read_buf ? (char *)n->read_buf : NULL;
    buf->len = buf->base ? room : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tdsx_conn_t *c = s->data;
    if (nread > 0 && !c->shutting_down) {
        c->t_rx = uv_now(c->node->loop);
        int rc = tdsx_tls_conn_feed(c->tls, tdsx_bytes(buf->base, (size_t)nread));
        if (rc == TDSX_E_CLOSED) {
            after_input(c);
            return;
        }
        if (rc < 0) {
            flush_output(c);
            tdsx__conn_fail(c, tdsx_tls_conn_error(c->tls) ? tdsx_tls_conn_error(c->tls) : rc,
                            c->state == TDSX_CONN_HANDSHAKE ? "handshake" : "tls");
            return;
        }
        after_input(c);
        update_reading(c);
        return;
    }
    if (nread == UV_ENOBUFS) {
        /* No room in the engine: stop until the application drains it. */
        update_reading(c);
        return;
    }
    if (nread < 0 && !c->shutting_down) {
        if (nread == UV_EOF) {
            int rc = tdsx_tls_conn_feed_eof(c->tls);
            after_input(c);
            if (c->shutting_down)
                return;
            if (rc == 0 && tdsx_tls_conn_state(c->tls) == TDSX_TLS_CLOSING) {
                linger_then_close(c);
                return;
            }
            int frc = tdsx_frame_decoder_finish(&c->dec);
            tdsx__conn_fail(c,
                            frc < 0                           ? frc
                            : c->state == TDSX_CONN_HANDSHAKE ? TDSX_E_TLS_HANDSHAKE
                                                              : TDSX_E_CLOSED,
                            frc < 0 ? "connection ended inside a frame" : "connection ended");
            return;
        }
        tdsx__conn_fail(c, TDSX_E_IO, uv_strerror((int)nread));
    }
}

/* Reads while output is below its cap (with hysteresis) and the engine has room. */
static void update_reading(tdsx_conn_t *c)
{
    if (c->shutting_down || uv_is_closing((uv_handle_t *)&c->tcp) ||
        c->state == TDSX_CONN_CONNECTING)
        return;
    /* Hysteresis: reading pauses when the output reaches its cap and resumes only once the
     * peer has taken half of it. Without it, a peer whose kernel accepts a trickle (a tiny
     * receive buffer being collapsed) let a few bytes out, a few pings in, and restarted the
     * stall clock each time: the slow-reader test saw no stall in 20 s under CI load. Now the
     * peer must drain CONN_OUT_CAP / 2 within stall_timeout. */
    size_t mark = c->out_full ? CONN_OUT_CAP(c) / 2 : CONN_OUT_CAP(c);
    int full = c->out_inflight >= mark;
    if (full && !c->out_full)
        c->t_full = uv_now(c->node->loop);
    c->out_full = full;
    int want = !full && tdsx_tls_conn_room(c->tls) > 0;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void on_timer(uv_timer_t *t)
{
    tdsx_conn_t *c = t->data;
    const tdsx_config_t *cfg = &c->node->cfg;
    uint64_t now = uv_now(c->node->loop);
    if (c->shutting_down) {
        close_now(c); /* the linger ran out */
        return;
    }
    if (c->state == TDSX_CONN_CONNECTING || c->state == TDSX_CONN_HANDSHAKE) {
        if (now - c->t_state >= cfg->handshake_timeout_ms) {
            tdsx__conn_fail(c, TDSX_E_TIMEOUT, "handshake timeout");
            return;
        }
    } else {
        /* Stalled: nothing written for stall_timeout, or output held at its cap that long (a
         * peer whose kernel takes a trickle is still not reading). */
        int stalled = (c->out_inflight > 0 && now - c->t_tx >= cfg->stall_timeout_ms) ||
                      (c->out_full && now - c->t_full >= cfg->stall_timeout_ms);
        if (stalled) {
            /* A libuv loop turn runs timers before it polls for I/O, so after a long callback of
             * ours (a burst of durable store commits) writes the peer made room for long ago may
             * not have been attempted yet: that delay is ours. Judge only after one I/O phase
             * has run: still nothing written, or the output still held at its cap. (Found by
             * 1,000 concurrent sends; an earlier fix that polled the socket for POLLOUT excused
             * a peer that never read.) */
            if (!c->stall_suspect) {
                c->stall_suspect = 1;
                c->stall_tx = c->t_tx;
                uv_timer_start(&c->timer, on_timer, 1, 0);
                return;
            }
            int still_full = c->out_full && now - c->t_full >= cfg->stall_timeout_ms;
            if (still_full || c->stall_tx == c->t_tx) {
                tdsx__conn_fail(c, TDSX_E_TIMEOUT, "stalled: peer is not reading");
                return;
            }
        }
        c->stall_suspect = 0;
        if (now - c->t_rx >= cfg->idle_timeout_ms) {
            tdsx__conn_fail(c, TDSX_E_TIMEOUT, "idle timeout: nothing received");
            return;
        }
        if (now - c->t_rx >= cfg->ping_interval_ms && now - c->t_ping >= cfg->ping_interval_ms)
            send_ping(c);
        if (c->shutting_down)
            return;
    }
    arm_timer(c);
}

static void arm_timer(tdsx_conn_t *c)
{
    const tdsx_config_t *cfg = &c->node->cfg;
    uint64_t now = uv_now(c->node->loop);
    uint64_t due;
    if (c->shutting_down) {
        due = now + CONN_LINGER_MS;
    } else if (c->state == TDSX_CONN_CONNECTING || c->state == TDSX_CONN_HANDSHAKE) {
        due = c->t_state + cfg->handshake_timeout_ms;
    } else {
        due = c->t_rx + cfg->idle_timeout_ms;
        due = min_u64(due, c->t_rx + cfg->ping_interval_ms > c->t_ping + cfg->ping_interval_ms
                               ? c->t_rx + cfg->ping_interval_ms
                               : c->t_ping + cfg->ping_interval_ms);
        /* The stall check needs a wake-up even while output is still flowing. */
        due = min_u64(due, now + cfg->stall_timeout_ms / 2 + 1);
    }
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static int conn_new(tdsx_node_t *n, int inbound, tdsx_dialer_t *d, const char *expect_peer,
                    tdsx_conn_t **out)
{
    tdsx_conn_t *c = tdsx_calloc(1, sizeof *c);
    if (!c)
        return TDSX_E_NOMEM;
    c->node = n;
    c->inbound = inbound;
    c->dialer = d;
    tdsx_buf_init(&c->tx, 2 * (n->cfg.frame_cap + TDSX_FRAME_HEADER_LEN));
    int rc = tdsx_frame_decoder_init(&c->dec, n->cfg.frame_cap);
    if (rc == 0)
        rc = tdsx_arena_new(4 * n->cfg.frame_cap + 64 * 1024, &c->arena);
    if (rc == 0)
        rc = tdsx_tls_conn_new(n->tls, inbound ? TDSX_TLS_SERVER : TDSX_TLS_CLIENT, expect_peer,
                               &c->tls);
    if (rc == 0)
        rc = uv_tcp_init(n->loop, &c->tcp);
    if (rc != 0) {
        tdsx_tls_conn_free(c->tls);
        tdsx_arena_free(c->arena);
        tdsx_frame_decoder_free(&c->dec);
        tdsx_free(c);
        return rc < 0 && rc > -4096 ? TDSX_E_IO : rc;
    }
    uv_timer_init(n->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->n_conns++;
    set_state(c, TDSX_CONN_CONNECTING);
    c->t_rx = c->t_tx = c->t_ping = c->t_state;
    c->next_stream = inbound ? 2 : 1;
    *out = c;
    return 0;
}

static void remote_name(tdsx_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->remote, sizeof c->remote, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
             port);
}

static void start_tls(tdsx_conn_t *c)
{
    set_state(c, TDSX_CONN_HANDSHAKE);
    int rc = tdsx_tls_conn_handshake(c->tls);
    flush_output(c);
    if (rc < 0 && rc != TDSX_E_AGAIN) {
        tdsx__conn_fail(c, rc, "handshake");
        return;
    }
    update_reading(c);
    arm_timer(c);
}

void tdsx__conn_accept(tdsx_node_t *n)
{
    tdsx_conn_t *c;
    int rc = conn_new(n, 1, NULL, NULL, &c);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "conn.accept_failed", TDSX_KV_E("err", rc));
        return;
    }
    if (uv_accept((uv_stream_t *)&n->listener, (uv_stream_t *)&c->tcp) != 0) {
        close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    remote_name(c);
    n->counters.conns_accepted++;
    if (n->draining || n->n_conns > n->cfg.max_connections) {
        tdsx__conn_fail(c, n->draining ? TDSX_E_DRAINING : TDSX_E_TOOBIG,
                        n->draining ? "draining" : "max_connections reached");
        return;
    }
    tdsx_log(TDSX_LOG_DEBUG, "conn.accept", TDSX_KV_S("remote", c->remote));
    start_tls(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    tdsx_conn_t *c = req->data;
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (status < 0) {
        c->err = TDSX_E_IO;
        c->node->counters.conns_refused++;
        tdsx_log(TDSX_LOG_WARN, "conn.dial_failed", TDSX_KV_S("remote", c->remote),
                 TDSX_KV_S("reason", uv_strerror(status)));
        close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    start_tls(c);
}

int tdsx__conn_dial(tdsx_node_t *n, tdsx_dialer_t *d, const struct sockaddr *addr)
{
    tdsx_conn_t *c;
    int rc = conn_new(n, 0, d, tdsx__dialer_id(d), &c);
    if (rc)
        return rc;
    if (addr->sa_family == AF_INET6) {
        char h[INET6_ADDRSTRLEN];
        uv_ip6_name((const struct sockaddr_in6 *)addr, h, sizeof h);
        snprintf(c->remote, sizeof c->remote, "[%s]:%d", h,
                 ntohs(((const struct sockaddr_in6 *)addr)->sin6_port));
    } else {
        char h[INET_ADDRSTRLEN];
        uv_ip4_name((const struct sockaddr_in *)addr, h, sizeof h);
        snprintf(c->remote, sizeof c->remote, "%s:%d", h,
                 ntohs(((const struct sockaddr_in *)addr)->sin_port));
    }
    c->connect_req.data = c;
    n->counters.conns_dialled++;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connect);
    if (rc < 0) {
        c->dialer = NULL; /* the caller reports the failure itself */
        close_now(c);
        return TDSX_E_IO;
    }
    arm_timer(c);
    return 0;
}

void tdsx__conn_drain(tdsx_conn_t *c)
{
    if (c->shutting_down)
        return;
    if (c->state != TDSX_CONN_OPEN && c->state != TDSX_CONN_DRAINING) {
        c->err = TDSX_E_DRAINING;
        log_close(c, 0, "draining");
        linger_then_close(c);
        return;
    }
    set_state(c, TDSX_CONN_DRAINING);
    if (c->streams_open == 0) {
        tls_close(c);
        log_close(c, 0, "draining");
        linger_then_close(c);
    }
}

void tdsx__conn_status(const tdsx_conn_t *c, Tdsx__PeerStatus *ps)
{
    const tdsx_identity_t *id = c->tls ? tdsx_tls_conn_peer(c->tls) : NULL;
    ps->id = (char *)peer_name(c);
    ps->org = id ? (char *)id->org : "";
    ps->role = id ? (char *)tdsx_role_name(id->role) : "";
    ps->address = (char *)c->remote;
    ps->direction = c->inbound ? "in" : "out";
    ps->state = (char *)tdsx__conn_state_name(c->state);
    ps->since = c->since;
    ps->bytes_in = c->bytes_in;
    ps->bytes_out = c->bytes_out;
    ps->streams = c->streams_open;
    ps->cert_not_after = id ? id->not_after : 0;
    ps->last_error = c->err ? (char *)tdsx_err_name(c->err) : "";
    ps->queued_out = c->out_inflight;
}

tdsx_conn_t *tdsx__conn_next(tdsx_node_t *n, tdsx_conn_t *c)
{
    return c ? c->next : n->conns;
}

int tdsx__conn_send(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    if (c->err || c->shutting_down)
        return c->err ? c->err : TDSX_E_CLOSED;
    return send_frame(c, f);
}

uint32_t tdsx__conn_new_stream(tdsx_conn_t *c)
{
    uint32_t id = c->next_stream;
    c->next_stream += 2;
    return id;
}

const char *tdsx__conn_peer_id(const tdsx_conn_t *c)
{
    return peer_name(c);
}

X509 *tdsx__conn_peer_cert(const tdsx_conn_t *c, STACK_OF(X509) **chain)
{
    if (chain)
        *chain = NULL;
    return c->tls && (c->state == TDSX_CONN_OPEN || c->state == TDSX_CONN_DRAINING)
               ? tdsx_tls_conn_peer_cert(c->tls, chain)
               : NULL;
}

tdsx_conn_state_t tdsx__conn_state(const tdsx_conn_t *c)
{
    return c->state;
}

const tdsx_tls_ctx_t *tdsx__conn_tls_ctx(const tdsx_conn_t *c)
{
    return c->tls ? tdsx_tls_conn_ctx(c->tls) : NULL;
}

int tdsx__conn_writable(const tdsx_conn_t *c)
{
    tdsx_conn_t *m = (tdsx_conn_t *)c;
    if (c->err || c->shutting_down)
        return 0;
    if (c->out_inflight + c->tx.len >= CONN_OUT_CAP(c)) {
        m->out_blocked = 1;
        return 0;
    }
    return 1;
}

tdsx_node_t *tdsx__conn_node(tdsx_conn_t *c)
{
    return c->node;
}

void tdsx__conn_stream_count(tdsx_conn_t *c, int delta)
{
    if (delta < 0 && c->streams_open < (uint32_t)-delta)
        c->streams_open = 0;
    else
        c->streams_open = (uint32_t)((int64_t)c->streams_open + delta);
    if (c->streams_open == 0 && c->state == TDSX_CONN_DRAINING)
        tdsx__conn_drain(c);
}

void **tdsx__conn_xslot(tdsx_conn_t *c)
{
    return &c->x;
}

tdsx_conn_t *tdsx__node_find_conn(tdsx_node_t *n, const char *id)
{
    for (tdsx_conn_t *c = n->conns; c; c = c->next)
        if (c->state == TDSX_CONN_OPEN && !c->err && strcmp(peer_name(c), id) == 0)
            return c;
    return NULL;
}
