/*
 * daemon.h — the node (tdsxd) as the libuv shell around the I/O-free cores: listener, dialled
 * peers, connections, the local control socket, signals. Internal to gateway/.
 *
 * Lifetimes: a node owns its connections, dialers and control clients. Every object that
 * embeds libuv handles is freed only in the close callback of its last handle. The node
 * itself is freed by tdsx_node_free once uv_run has returned (all handles closed).
 */
#ifndef TDSX_GATEWAY_DAEMON_H
#define TDSX_GATEWAY_DAEMON_H

#include <uv.h>

#include "config.h"
#include "gateway.h"
#include "local.pb-c.h"
#include "proto.h"

typedef struct tdsx_node_s tdsx_node_t;
typedef struct tdsx_conn_s tdsx_conn_t;
typedef struct tdsx_dialer_s tdsx_dialer_t;
typedef struct tdsx_ctl_client_s tdsx_ctl_client_t;
typedef struct tdsx_exchange_s tdsx_exchange_t;

/* Caps, defined once. */
#define TDSX_CONN_READ_SIZE (64u * 1024u)     /* one socket read */
#define TDSX_CONTROL_FRAME_CAP (256u * 1024u) /* one control-socket message */
#define TDSX_CONTROL_MAX_CLIENTS 64u
#define TDSX_XFER_OUTCOMES 5 /* receipted, refused, aborted, interrupted, nrd (http.c) */
#define TDSX_XFER_GRADES 4   /* tdsx_grade_t: unset, general, important, core */

/* Counters kept by the node; names are what `tdsx status` and metrics show. */
#define TDSX_COUNTERS(X)                                                                           \
    X(conns_accepted, "connections_accepted")                                                      \
    X(conns_dialled, "connections_dialled")                                                        \
    X(conns_open, "connections_opened")                                                            \
    X(conns_refused, "connections_refused")                                                        \
    X(conns_closed, "connections_closed")                                                          \
    X(frames_in, "frames_in")                                                                      \
    X(frames_out, "frames_out")                                                                    \
    X(bytes_in, "bytes_in")                                                                        \
    X(bytes_out, "bytes_out")                                                                      \
    X(protocol_errors, "protocol_errors")                                                          \
    X(timeouts, "timeouts")

typedef struct tdsx_counters_s {
#define X(field, name) uint64_t field;
    TDSX_COUNTERS(X)
#undef X
} tdsx_counters_t;

struct tdsx_node_s {
    uv_loop_t *loop;
    tdsx_config_t cfg;
    tdsx_trust_t *trust;
    tdsx_registry_t *registry;
    tdsx_tls_ctx_t *tls;
    tdsx_identity_t self_auth;
    tdsx_identity_t self_sign;
    char self_id[TDSX_ID_SIZE];
    int64_t started_at;

    uv_tcp_t listener;
    int listening;
    uv_pipe_t control;
    int control_open;
    tdsx_ctl_client_t *control_clients;
    size_t n_control_clients;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    int draining;

    tdsx_conn_t *conns; /* doubly linked through prev/next */
    size_t n_conns;
    tdsx_dialer_t *dialers;
    size_t n_dialers;

    tdsx_counters_t counters;
    tdsx_exchange_t *x;           /* catalog, transfers, receipts (exchange.c) */
    struct tdsx_policy_s *policy; /* swapped whole on SIGHUP (policy.h) */
    struct tdsx_taxonomy_s *taxonomy;
    uint64_t next_ctl_serial;
    struct tdsx_nodelog_s *log; /* the transparency log (log.c), NULL until started */
    uint8_t *read_buf; /* TDSX_CONN_READ_SIZE, shared by every connection's reads (conn.c) */

    /* HTTP endpoint and bundle fetcher (http.h): NULL when not configured or stopped. */
    struct tdsx_http_s *http;
    struct tdsx_fetch_s *fetch;
    /* Transfers ended, for /metrics: [inbound][outcome][grade] (http.c names the outcomes). */
    uint64_t xfer_outcomes[2][TDSX_XFER_OUTCOMES][TDSX_XFER_GRADES];

    /* Trust bundle (bundle.h): the bundle in force and its state, NULL until
     * tdsx__bundle_load; the timer fires when the bundle in force expires. */
    struct tdsx_bundle_node_s *bundle;
    uv_timer_t bundle_timer;

    /* Trust-status reports (report.h): NULL until started. */
    struct tdsx_reporter_s *report;
};

/* Loads credentials, trust and registry named by cfg (taken: the node frees it). On failure
 * nothing is left open and *out is NULL; `what` (may be NULL) receives the file at fault. */
TDSX_MUST_CHECK int tdsx_node_new(uv_loop_t *loop, tdsx_config_t *cfg, tdsx_node_t **out,
                                  char *what, size_t what_size);
/* 1 when the node's members come from trust bundles (bundle_url or bundle_file), so a witness
 * no registry names yet may be waited for instead of refusing to start. */
int tdsx__node_witness_may_wait(const tdsx_node_t *n);
/* After a new registry is in force (bundle.c): starts dialling the witness when it needs a
 * dialer of its own and the registry now names it. Idempotent. */
void tdsx__node_witness_dial(tdsx_node_t *n);
/* Opens the listener, the control socket and the signal handlers and starts dialling. */
TDSX_MUST_CHECK int tdsx_node_start(tdsx_node_t *n);
/* Stops accepting and dialling, lets in-flight streams finish up to drain_timeout, closes
 * every connection and handle; uv_run then returns. Idempotent. */
void tdsx_node_shutdown(tdsx_node_t *n);
/* Frees what is left; only after uv_run returned. NULL is allowed. */
void tdsx_node_free(tdsx_node_t *n);

/* Connections (conn.c). */
typedef enum {
    TDSX_CONN_CONNECTING = 0,
    TDSX_CONN_HANDSHAKE = 1,
    TDSX_CONN_OPEN = 2,
    TDSX_CONN_DRAINING = 3,
    TDSX_CONN_CLOSING = 4
} tdsx_conn_state_t;

const char *tdsx__conn_state_name(tdsx_conn_state_t s);
/* Accepts a pending inbound connection from the listener. */
void tdsx__conn_accept(tdsx_node_t *n);
/* Dials d's peer; the connection reports back to d when it opens or closes. */
TDSX_MUST_CHECK int tdsx__conn_dial(tdsx_node_t *n, tdsx_dialer_t *d, const struct sockaddr *addr);
/* Begins a graceful close (close_notify once no stream is active). */
void tdsx__conn_drain(tdsx_conn_t *c);
/* Closes at once with err (logged; sent to the peer as an Error frame when it is ours). */
void tdsx__conn_fail(tdsx_conn_t *c, int err, const char *reason);
/* After a group commit (exchange.h): every connection's held frames leave. */
void tdsx__conn_release(tdsx_node_t *n);
/* Fills a PeerStatus for `tdsx status`; strings point into c and live as long as it. */
void tdsx__conn_status(const tdsx_conn_t *c, Tdsx__PeerStatus *ps);

/* For the exchange: send a frame, allocate a stream id (odd when we dialled, even when we
 * accepted), who the verified peer is, whether more output may be queued now. */
TDSX_MUST_CHECK int tdsx__conn_send(tdsx_conn_t *c, const Tdsx__Frame *f);
uint32_t tdsx__conn_new_stream(tdsx_conn_t *c);
const char *tdsx__conn_peer_id(const tdsx_conn_t *c);
/* The verified peer certificate (tdsx_tls_conn_peer_cert) of an open or draining connection,
 * or NULL. */
X509 *tdsx__conn_peer_cert(const tdsx_conn_t *c, STACK_OF(X509) **chain);
tdsx_conn_state_t tdsx__conn_state(const tdsx_conn_t *c);
/* The TLS context the connection's engine was made from (NULL before it has one). */
const tdsx_tls_ctx_t *tdsx__conn_tls_ctx(const tdsx_conn_t *c);
int tdsx__conn_writable(const tdsx_conn_t *c);
tdsx_node_t *tdsx__conn_node(tdsx_conn_t *c);
/* Open streams count toward draining: the connection closes when the last one ends. */
void tdsx__conn_stream_count(tdsx_conn_t *c, int delta);
/* The exchange's per-connection state. */
void **tdsx__conn_xslot(tdsx_conn_t *c);
/* An open connection to the member `id` (either direction), or NULL. */
tdsx_conn_t *tdsx__node_find_conn(tdsx_node_t *n, const char *id);

/* Iterates the node's connections: NULL starts, NULL ends. */
tdsx_conn_t *tdsx__conn_next(tdsx_node_t *n, tdsx_conn_t *c);

/* Dialers (node.c): the member id a dialer expects; called by a dialled connection when it opens or
 * closes. */
const char *tdsx__dialer_id(const tdsx_dialer_t *d);
void tdsx__dialer_opened(tdsx_dialer_t *d, tdsx_conn_t *c);
void tdsx__dialer_closed(tdsx_dialer_t *d, int err);
void tdsx__node_conn_gone(tdsx_node_t *n);

/* Policy (node.c): loads cfg.policy (or the built-in default) into a new object; on success
 * the caller swaps it in. */
TDSX_MUST_CHECK int tdsx__node_load_policy(tdsx_node_t *n, struct tdsx_policy_s **out);

/* Control socket (control.c). */
TDSX_MUST_CHECK int tdsx__control_start(tdsx_node_t *n);
void tdsx__control_stop(tdsx_node_t *n);

/* Asynchronous answers: a client is named by its serial, which is never reused, so an answer
 * for a client that went away is dropped. */
uint64_t tdsx__control_serial(const tdsx_ctl_client_t *cl);
tdsx_ctl_client_t *tdsx__control_find(tdsx_node_t *n, uint64_t serial);
/* Sends an answer; a client that cannot take it is closed (its requests end with it). */
void tdsx__control_reply(tdsx_ctl_client_t *cl, const Tdsx__LocalResponse *resp);
/* After a group commit (exchange.h): every held answer leaves, in order. */
void tdsx__control_release(tdsx_node_t *n);

/* Client side, blocking: sends req to the daemon at `path` and waits up to timeout_ms for the
 * answer, decoded into `arena`. TDSX_E_NOTFOUND when no daemon listens there, TDSX_E_TIMEOUT,
 * TDSX_E_CLOSED, framing and decoding errors. */
typedef void (*tdsx_control_progress_cb)(void *ud, const Tdsx__LocalResponse *progress);
TDSX_MUST_CHECK int tdsx_control_call(const char *path, const Tdsx__LocalRequest *req,
                                      tdsx_arena_t *arena, int timeout_ms,
                                      tdsx_control_progress_cb progress, void *ud,
                                      Tdsx__LocalResponse **resp);

#endif
