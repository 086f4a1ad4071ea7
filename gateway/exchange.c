/*
 * exchange.c — Hello, catalog, push and pull transfers, dual-signed receipts (SPEC §5, §9, §10).
 *
 * Everything runs on the node's loop thread except what blocks on the disk for long: hashing
 * (or sealing, SPEC §9) a file before sending it, the final fsync+rename of a received object
 * and opening a payload sealed to us go to the libuv thread pool; file reads for sending use
 * uv_fs_read. The batch signer is flushed once per loop turn (a uv_check handle), so many
 * transfers finishing together share one Ed25519 signature (SPEC §10).
 *
 * Sealed transfers (SPEC §9): the sender seals for the final recipient's registry enc key into
 * tmp/<tid>.sealed (removed once the transfer is final) and sends that; the NRO describes the
 * ciphertext and carries sealed, plaintext_sha256, final_recipient and, for relays,
 * seal_transfer_id (the transfer the stream was sealed in: its associated data). The final
 * recipient commits the ciphertext like any payload, then opens it into a fresh object; a relay
 * stores it as it came and forwards it with `send --relay`, naming the upstream NRR.
 */
#include "exchange.h"
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agree.h"
#include "crypto.h"
#include "log.h"
#include "report.h"
#include "policy.h"
#include "store.h"

#define XS_READ_SIZE TDSX_XFER_CHUNK
#define TID_HEX (2 * TDSX_TRANSFER_ID_LEN + 1)
/* Sealed transfers (SPEC §9): plaintext read per sealer update, ciphertext read per opener
 * feed, and what one step may append to its output buffer. */
#define SEAL_READ_SIZE TDSX_SEAL_CHUNK
#define SEAL_OUT_CAP (TDSX_SEAL_RECORD_MAX + TDSX_SEAL_FINAL_MAX + SEAL_READ_SIZE)
#define OPEN_READ_SIZE TDSX_SEAL_CHUNK
#define OPEN_OUT_CAP (OPEN_READ_SIZE + TDSX_SEAL_RECORD_MAX)
/* The first bytes of every sealed stream: "TDSXSEAL" and the version (crypto.h). */
static const uint8_t seal_magic[9] = {'T', 'D', 'S', 'X', 'S', 'E', 'A', 'L', TDSX_SEAL_VERSION};

typedef enum {
    XS_SEND_PREPARE = 0, /* hashing the file / waiting for the NRO signature */
    XS_SEND_WAIT_ACCEPT,
    XS_SEND_DATA,
    XS_SEND_WAIT_RECEIPT,
    XS_RECV_DATA,
    XS_RECV_COMMIT, /* queued for, or in, a commit batch on the thread pool (then opening, when
                     * sealed to us) */
    XS_RECV_SIGN,   /* NRR waiting for the signer */
    XS_PULL_WAIT,   /* we asked for a dataset; the owner will send TransferStart */
    XS_QUERY_WAIT,  /* we asked for a catalog page; the peer will send CatalogResult */
    XS_LOGGING,     /* receipt or NRD stored; its transparency-log entry is on its way (log.c) */
    XS_DONE
} xs_state_t;

typedef struct xconn_s xconn_t;
typedef struct xstream_s xstream_t;

struct xstream_s {
    tdsx_node_t *node;
    tdsx_conn_t *conn; /* NULL once the connection is gone */
    xconn_t *xc;
    uint32_t id;
    xs_state_t state;
    int sender;
    int busy; /* async operations in flight (fs read, work, signer); freed when 0 and DONE */
    xstream_t *all_prev, *all_next; /* node-wide list, for the receipt timer */

    tdsx_transfer_t rec;
    uint8_t *nro; /* our copy of the NRO envelope bytes */
    size_t nro_len;
    uint8_t nro_hash[32];
    char dataset_id[256];
    char tags[1024];
    char rule[64];           /* id of our policy rule that decided */
    int refusal;             /* receiver: our policy refused (NRR POLICY_REFUSED) */
    const char *refusal_why; /* static text from the decision */
    /* The agreement the transfer runs under (agree.c): the sender's choice, or what the
     * received NRO names; agreement_until is when it stops being valid (0: none valid). */
    int has_agreement;
    uint8_t agreement[TDSX_SHA256_LEN];
    int64_t agreement_until;

    /* sender */
    char *path; /* file being sent */
    uv_file fd;
    uv_fs_t fs;
    uint8_t *rbuf;
    uint64_t next_offset;
    uint64_t credit;
    int reading;
    uint64_t end_sent_ms;
    int hash_rc;

    /* receiver */
    tdsx_object_writer_t *w;
    uint64_t since_sync;
    uint64_t granted; /* credit granted and not yet used */
    int starved;      /* wants credit the connection window could not give yet */
    int commit_rc;
    uv_work_t work;
    uint8_t got_sha[32];
    xstream_t *commit_next; /* in the exchange's commit queue */
    int pulled;             /* we asked for it */
    char out_path[4096];

    /* Sealed transfers and relays (SPEC §9). The payload on the wire is the sealed stream; the
     * final recipient alone opens it. */
    int sealed;                           /* the NRO says sealed */
    int relay;                            /* a relay of data received upstream */
    int seal_tmp;                         /* sender: we made tmp/<tid>.sealed */
    char final_recipient[TDSX_ID_SIZE];   /* who can open it */
    uint8_t seal_pk[TDSX_X25519_KEY_LEN]; /* sender: the final recipient's enc key */
    /* The transfer id the stream is sealed under (its associated data): our own id, or for a
     * relay the origin's, carried as NRO seal_transfer_id. */
    int has_seal_tid;
    uint8_t seal_tid[TDSX_SEAL_TRANSFER_ID_LEN];
    int has_plain_sha;
    uint8_t plain_sha[TDSX_SHA256_LEN]; /* the NRO's plaintext_sha256 */
    int has_upstream;
    uint8_t upstream_nrr[TDSX_SHA256_LEN]; /* relay: SHA-256 of the upstream NRR envelope */
    /* Relay sender: what decide() needs to check the upstream agreement grants the relay
     * (SPEC §9), read from the upstream NRO by start_relay (not known after a resume). */
    int up_known;
    int up_has_agreement;
    uint8_t up_agreement[TDSX_SHA256_LEN]; /* the agreement the upstream NRO names */
    char up_origin[256];                   /* the upstream sender (the agreement's provider) */
    uv_file seal_fd;                       /* sender: the sealed temp file while it is written */
    int final_here;                        /* receiver: we are the final recipient */
    int cipher_existed;       /* receiver: the ciphertext object was there before this transfer */
    char cipher_path[4096];   /* receiver: the committed ciphertext, to open */
    tdsx_object_writer_t *pw; /* receiver: the plaintext being opened */
    int open_rc;
    uint8_t open_sha[TDSX_SHA256_LEN]; /* written by the open work, read after it */
    int opened;                        /* receiver: the plaintext object (plain_sha) is committed */

    /* the local client waiting for the result */
    uint64_t client;
    uint64_t req_id;
    int progress;
    uint64_t progress_ms;

    /* The transparency log (log.c): where the receipt or NRD went, once durable. */
    int logged;
    uint64_t log_index;
};

struct xconn_s {
    tdsx_conn_t *conn;
    int hello;          /* the peer's Hello verified */
    uint8_t *peer_cert; /* DER of the peer's sign certificate */
    size_t peer_cert_len;
    tdsx_hash_t peer_key; /* its key id */
    xstream_t **slots;    /* open addressing on stream id */
    size_t cap, count;
    uint64_t granted; /* receive credit granted on all streams and not yet used */
    size_t starved;   /* receiving streams waiting for connection credit */
};

struct tdsx_exchange_s {
    tdsx_node_t *node;
    tdsx_store_t *store;
    tdsx_signer_t *signer;
    tdsx_verifier_t *verifier;
    tdsx_arena_t *arena; /* scratch for verifying statements */
    uint8_t *own_cert;   /* DER of our sign certificate */
    size_t own_cert_len;
    uint8_t *chain; /* DER intermediates, concatenated as separate entries below */
    tdsx_bytes_t chain_certs[4];
    size_t n_chain;
    uv_check_t flush_check;
    uv_prepare_t commit_prepare; /* group commit before the loop waits (exchange.h) */
    unsigned fault_commit_delay_ms; /* TDSX_FAULT_COMMIT_DELAY_MS: tests widen the window */
    uv_timer_t tick;
    int handles;
    int lock_fd; /* flock on <data_dir>/tdsxd.lock: one daemon per data directory */
    uint64_t last_sweep_ms;
    xstream_t *streams;  /* every live stream */
    /* Received payloads waiting to be made durable, committed together on the thread pool
     * (commit_start): one batch at a time, those finished meanwhile wait for the next. */
    xstream_t *cq_head, **cq_tail;
    int cq_busy;
    uv_work_t cq_work;
    tdsx_object_commit_t *cq_items;
    xstream_t **cq_streams;
    size_t cq_n, cq_alloc;
    tdsx_agree_t *agree; /* agreements (agree.c) */
    /* Our X25519 enc secret (SPEC §9), read-only sodium_malloc memory shared with the thread
     * pool's open work; NULL when the credentials hold no enc.key (nothing sealed to us opens). */
    uint8_t *enc_sk;
};

static tdsx_exchange_t *X(tdsx_node_t *n)
{
    return n->x;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void tid_hex(const uint8_t tid[TDSX_TRANSFER_ID_LEN], char out[TID_HEX])
{
    tdsx_hex_encode(out, tid, TDSX_TRANSFER_ID_LEN);
}

static int path_in(const tdsx_node_t *n, const char *sub, const char *name, tdsx_buf_t *b)
{
    tdsx_buf_init(b, 8192);
    return tdsx_buf_printf(b, "%s/%s/%s", n->cfg.data_dir, sub, name);
}

static int tags_to_proto(const char *text, Tdsx__Tags *t, char *cat, size_t cat_size)
{
    tdsx_tags_t tags;
    tdsx_tags_error_t err;
    int rc = tdsx_tags_parse(tdsx_bytes(text, strlen(text)), &tags, &err);
    if (rc)
        return rc;
    snprintf(cat, cat_size, "%s", tags.category);
    t->grade = (Tdsx__Grade)tags.grade;
    t->general_level = tags.level;
    t->domain = (Tdsx__Domain)tags.domain;
    t->category = cat;
    t->personal = (Tdsx__Personal)tags.personal;
    t->library = (Tdsx__Library)tags.library;
    t->source = (Tdsx__Source)tags.source;
    return 0;
}

static void tags_from_proto(const Tdsx__Tags *t, char *out, size_t size)
{
    tdsx_tags_t tags;
    memset(&tags, 0, sizeof tags);
    out[0] = '\0';
    if (!t)
        return;
    tags.grade = (tdsx_grade_t)t->grade;
    tags.level = (uint8_t)t->general_level;
    tags.domain = (tdsx_domain_t)t->domain;
    snprintf(tags.category, sizeof tags.category, "%s", t->category ? t->category : "");
    tags.personal = (tdsx_personal_t)t->personal;
    tags.library = (tdsx_library_t)t->library;
    tags.source = (tdsx_source_t)t->source;
    if (tdsx_tags_format(&tags, out, size) != 0)
        out[0] = '\0';
}

/* ---- stream table ------------------------------------------------------------------------- */

static xconn_t *xconn_of(tdsx_conn_t *c)
{
    return *tdsx__conn_xslot(c);
}

static xstream_t *stream_find(xconn_t *xc, uint32_t id)
{
    if (!xc || xc->cap == 0)
        return NULL;
    for (size_t i = id & (xc->cap - 1), k = 0; k < xc->cap; i = (i + 1) & (xc->cap - 1), k++) {
        if (!xc->slots[i])
            return NULL;
        if (xc->slots[i] != (xstream_t *)xc && xc->slots[i]->id == id)
            return xc->slots[i];
    }
    return NULL;
}

static int stream_insert(xconn_t *xc, xstream_t *s);

static int table_grow(xconn_t *xc)
{
    size_t ncap = xc->cap ? xc->cap * 2 : 64;
    xstream_t **old = xc->slots;
    size_t ocap = xc->cap;
    xc->slots = tdsx_calloc(ncap, sizeof *xc->slots);
    if (!xc->slots) {
        xc->slots = old;
        return TDSX_E_NOMEM;
    }
    xc->cap = ncap;
    xc->count = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i] && old[i] != (xstream_t *)xc && stream_insert(xc, old[i]) != 0)
            return TDSX_E_INTERNAL;
    tdsx_free(old);
    return 0;
}

static int stream_insert(xconn_t *xc, xstream_t *s)
{
    if ((xc->count + 1) * 2 > xc->cap) {
        int rc = table_grow(xc);
        if (rc)
            return rc;
    }
    size_t i = s->id & (xc->cap - 1);
    /* The tombstone (xc itself) may be reused. */
    while (xc->slots[i] && xc->slots[i] != (xstream_t *)xc)
        i = (i + 1) & (xc->cap - 1);
    xc->slots[i] = s;
    xc->count++;
    return 0;
}

static void stream_remove(xconn_t *xc, xstream_t *s)
{
    for (size_t i = s->id & (xc->cap - 1), k = 0; xc->cap && k < xc->cap;
         i = (i + 1) & (xc->cap - 1), k++) {
        if (!xc->slots[i])
            return;
        if (xc->slots[i] == s) {
            xc->slots[i] = (xstream_t *)xc; /* tombstone keeps probe chains intact */
            xc->count--;
            return;
        }
    }
}

/* ---- local answers ------------------------------------------------------------------------ */

static void reply_result(xstream_t *s, int err, const char *state, const char *msg,
                         tdsx_bytes_t receipt)
{
    if (!s->client)
        return;
    tdsx_ctl_client_t *cl = tdsx__control_find(s->node, s->client);
    s->client = 0;
    if (!cl)
        return;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__TransferResult r = TDSX__TRANSFER_RESULT__INIT;
    char path[4096] = "";
    resp.id = s->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_RESULT;
    resp.result = &r;
    r.transfer_id.data = s->rec.id;
    r.transfer_id.len = TDSX_TRANSFER_ID_LEN;
    r.state = (char *)state;
    r.error = tdsx_err_wire(err);
    r.message = (char *)(msg ? msg : (err ? tdsx_strerror(err) : ""));
    r.receipt.data = (uint8_t *)receipt.p;
    r.receipt.len = receipt.n;
    r.length = s->rec.length;
    r.sha256.data = s->rec.sha256;
    r.sha256.len = 32;
    r.sealed = s->sealed;
    r.logged = s->logged;
    r.log_index = s->log_index;
    if (s->has_plain_sha) {
        r.plaintext_sha256.data = s->plain_sha;
        r.plaintext_sha256.len = TDSX_SHA256_LEN;
    }
    /* The final recipient of a sealed payload points at what it opened, not the ciphertext. */
    if (!s->sender && err == 0 &&
        tdsx_store_object_path(X(s->node)->store, s->opened ? s->plain_sha : s->rec.sha256, path,
                               sizeof path) == 0)
        r.object_path = path;
    tdsx__control_reply(cl, &resp);
}

static void reply_progress(xstream_t *s, uint64_t done)
{
    if (!s->client || !s->progress)
        return;
    uint64_t now = uv_now(s->node->loop);
    if (now - s->progress_ms < TDSX_XFER_PROGRESS_MS && done < s->rec.length)
        return;
    s->progress_ms = now;
    tdsx_ctl_client_t *cl = tdsx__control_find(s->node, s->client);
    if (!cl)
        return;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__TransferProgress p = TDSX__TRANSFER_PROGRESS__INIT;
    resp.id = s->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_PROGRESS;
    resp.progress = &p;
    p.transfer_id.data = s->rec.id;
    p.transfer_id.len = TDSX_TRANSFER_ID_LEN;
    p.done = done;
    p.total = s->rec.length;
    tdsx__control_reply(cl, &resp);
}

/* Records the transfer's state. A failure here loses only bookkeeping the log and the
 * receipts also carry, so it is logged rather than failing the transfer. */
static void save_state(xstream_t *s)
{
    int rc = tdsx_store_transfer_update(X(s->node)->store, &s->rec);
    if (rc) {
        char hex[TID_HEX];
        tid_hex(s->rec.id, hex);
        tdsx_log(TDSX_LOG_ERROR, "store.update_failed", TDSX_KV_S("transfer", hex),
                 TDSX_KV_E("err", rc));
    }
}

/* Sends a frame whose loss the peer survives (it times out or retries); a failed send means
 * the connection is failing and will be reported there. */
static void send_quietly(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    int rc = tdsx__conn_send(c, f);
    if (rc)
        tdsx_log(TDSX_LOG_DEBUG, "conn.send_dropped", TDSX_KV_E("err", rc));
}

/* Keeps a statement we must be able to show again (an NRO to resume, an NRD). */
static void keep_file(xstream_t *s, const char *sub, const char *suffix, tdsx_bytes_t data)
{
    tdsx_buf_t p;
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    int rc = path_in(s->node, sub, hex, &p);
    if (rc == 0)
        rc = tdsx_buf_append_str(&p, suffix);
    if (rc == 0)
        rc = tdsx_file_write((const char *)p.p, data.p, data.n, 0600, 1);
    if (rc)
        tdsx_log(TDSX_LOG_ERROR, "store.keep_failed", TDSX_KV_S("what", sub), TDSX_KV_E("err", rc));
    tdsx_buf_free(&p);
}

/* tmp/<tid>.sealed: the sealed stream a sender made, kept until the transfer is final so an
 * interrupted send resumes with the same bytes (SPEC §9). */
static int sealed_tmp_path(const xstream_t *s, tdsx_buf_t *p)
{
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    int rc = path_in(s->node, "tmp", hex, p);
    return rc ? rc : tdsx_buf_append_str(p, ".sealed");
}

static void remove_sealed_tmp(xstream_t *s)
{
    if (!s->seal_tmp)
        return;
    s->seal_tmp = 0;
    tdsx_buf_t p;
    if (sealed_tmp_path(s, &p) == 0)
        unlink((const char *)p.p);
    tdsx_buf_free(&p);
}

/* ---- stream lifecycle ---------------------------------------------------------------------- */

static xstream_t *stream_new(tdsx_node_t *n, tdsx_conn_t *c, uint32_t id, int sender)
{
    xstream_t *s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->node = n;
    s->conn = c;
    s->xc = xconn_of(c);
    s->id = id;
    s->sender = sender;
    s->fd = -1;
    s->seal_fd = -1;
    if (stream_insert(s->xc, s) != 0) {
        tdsx_free(s);
        return NULL;
    }
    tdsx__conn_stream_count(c, 1);
    tdsx_exchange_t *x = X(n);
    s->all_next = x->streams;
    if (x->streams)
        x->streams->all_prev = s;
    x->streams = s;
    return s;
}

static void stream_maybe_free(xstream_t *s)
{
    if (s->state != XS_DONE || s->busy > 0)
        return;
    tdsx_exchange_t *x = X(s->node);
    if (s->all_prev)
        s->all_prev->all_next = s->all_next;
    else
        x->streams = s->all_next;
    if (s->all_next)
        s->all_next->all_prev = s->all_prev;
    if (s->fd >= 0) {
        uv_fs_t req;
        uv_fs_close(NULL, &req, s->fd, NULL);
        uv_fs_req_cleanup(&req);
    }
    if (s->seal_fd >= 0)
        close(s->seal_fd);
    tdsx_object_abort(s->pw, 0); /* a plaintext never proven complete is never kept */
    tdsx_object_abort(s->w, 1);
    tdsx_free(s->rbuf);
    tdsx_free(s->nro);
    tdsx_free(s->path);
    tdsx_free(s);
}

static void credit_release(xstream_t *s);
static int feed_starved(xconn_t *xc);

/* Ends the stream's life on the connection (the table entry and the stream count). */
static void stream_finish(xstream_t *s)
{
    if (s->state == XS_DONE)
        return;
    s->state = XS_DONE;
    if (s->conn) {
        credit_release(s);
        if (s->xc->starved && feed_starved(s->xc) != 0)
            tdsx_log(TDSX_LOG_DEBUG, "flow.feed_failed", TDSX_KV_I("stream", s->id));
        stream_remove(s->xc, s);
        tdsx__conn_stream_count(s->conn, -1);
        s->conn = NULL;
        s->xc = NULL;
    }
    stream_maybe_free(s);
}

static int send_abort(tdsx_conn_t *c, uint32_t stream, int err, const char *msg)
{
    Tdsx__TransferAbort a = TDSX__TRANSFER_ABORT__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    a.code = tdsx_err_wire(err);
    a.message = (char *)(msg ? msg : tdsx_strerror(err));
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_ABORT;
    f.transfer_abort = &a;
    return tdsx__conn_send(c, &f);
}

static void log_transfer(const xstream_t *s, tdsx_log_level_t lvl, const char *event, int err)
{
    /* Every end of a transfer passes here once: /metrics counts it by outcome and grade. */
    tdsx__http_count_transfer(s->node, !s->sender, event, s->tags);
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    if (err)
        tdsx_log(lvl, event, TDSX_KV_S("transfer", hex), TDSX_KV_S("peer", s->rec.peer),
                 TDSX_KV_S("dir", s->sender ? "out" : "in"), TDSX_KV_I("length", s->rec.length),
                 TDSX_KV_E("err", err));
    else
        tdsx_log(lvl, event, TDSX_KV_S("transfer", hex), TDSX_KV_S("peer", s->rec.peer),
                 TDSX_KV_S("dir", s->sender ? "out" : "in"), TDSX_KV_S("dataset", s->dataset_id),
                 TDSX_KV_I("length", s->rec.length));
}

/* Fails a transfer locally: records it, tells the peer (when asked and possible) and the
 * local client. `resumable` keeps the record STARTED (and the part file) for a retry. */
static void stream_fail(xstream_t *s, int err, int tell_peer, int resumable)
{
    if (s->state == XS_DONE)
        return;
    if (tell_peer && s->conn)
        (void)send_abort(s->conn, s->id, err, NULL);
    if (s->rec.started_at) {
        if (!resumable) {
            s->rec.state = TDSX_XFER_ABORTED;
            s->rec.error = err;
            s->rec.finished_at = tdsx_now();
        }
        save_state(s);
    }
    if (s->w && s->state != XS_RECV_COMMIT) {
        tdsx_object_abort(s->w, resumable);
        s->w = NULL;
    }
    if (!resumable)
        remove_sealed_tmp(s);
    log_transfer(s, TDSX_LOG_WARN, resumable ? "transfer.interrupted" : "transfer.aborted", err);
    reply_result(s, err, resumable ? "interrupted" : "aborted", NULL, tdsx_bytes(NULL, 0));
    stream_finish(s);
}

/* ---- receipts ------------------------------------------------------------------------------ */

static int bundle_pack(const tdsx_receipt_t *r, const tdsx_exchange_t *x, tdsx_buf_t *out)
{
    Tdsx__ReceiptBundle b = TDSX__RECEIPT_BUNDLE__INIT;
    ProtobufCBinaryData chain[4];
    b.nro.data = (uint8_t *)r->nro.p;
    b.nro.len = r->nro.n;
    b.nrr.data = (uint8_t *)r->nrr.p;
    b.nrr.len = r->nrr.n;
    b.sender_cert.data = (uint8_t *)r->sender_cert.p;
    b.sender_cert.len = r->sender_cert.n;
    b.receiver_cert.data = (uint8_t *)r->receiver_cert.p;
    b.receiver_cert.len = r->receiver_cert.n;
    for (size_t i = 0; i < x->n_chain; i++) {
        chain[i].data = (uint8_t *)x->chain_certs[i].p;
        chain[i].len = x->chain_certs[i].n;
    }
    b.n_chain = x->n_chain;
    b.chain = chain;
    size_t len = tdsx__receipt_bundle__get_packed_size(&b);
    int rc = tdsx_buf_reserve(out, len);
    if (rc)
        return rc;
    tdsx__receipt_bundle__pack(&b, out->p + out->len);
    out->len += len;
    return 0;
}

/* The receiver's NRR, to the sender (when still connected). */
static void send_nrr(xstream_t *s, tdsx_bytes_t nrr)
{
    if (!s->conn)
        return;
    Tdsx__TransferReceipt tr = TDSX__TRANSFER_RECEIPT__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    tr.nrr.data = (uint8_t *)nrr.p;
    tr.nrr.len = nrr.n;
    f.stream_id = s->id;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_RECEIPT;
    f.transfer_receipt = &tr;
    send_quietly(s->conn, &f);
}

/* ---- the transparency log (log.c) ----------------------------------------------------------- */

/* A reply held back until the transfer's log entry is durable. */
typedef struct {
    xstream_t *s;
    int receipt; /* a receipt (else an NRD) */
    int err;
    const char *state; /* static text */
    char msg[1024];
    int has_msg;
    tdsx_buf_t reply; /* the receipt bundle or the NRD envelope for the local client */
    uint8_t *nrr;     /* receiver: the NRR the sender gets once it is logged */
    size_t nrr_len;
} held_reply_t;

static void receipt_final(xstream_t *s);

/* The store learns the receipt's index: until then a start appends it again (relog below). */
static void mark_logged(tdsx_node_t *n, const uint8_t id[TDSX_TRANSFER_ID_LEN], uint64_t index)
{
    int rc = tdsx_store_receipt_logged(X(n)->store, id, index);
    if (rc) {
        char hex[TID_HEX];
        tid_hex(id, hex);
        tdsx_log(TDSX_LOG_WARN, "store.log_mark_failed", TDSX_KV_S("transfer", hex),
                 TDSX_KV_I("index", index), TDSX_KV_E("err", rc),
                 TDSX_KV_S("action", "the next start logs the receipt again"));
    }
}

typedef struct {
    tdsx_node_t *node;
    uint8_t id[TDSX_TRANSFER_ID_LEN];
} relog_t;

static void on_relogged(void *ud, int status, uint64_t index)
{
    relog_t *r = ud;
    char hex[TID_HEX];
    tid_hex(r->id, hex);
    if (status == 0) {
        mark_logged(r->node, r->id, index);
        tdsx_log(TDSX_LOG_INFO, "log.receipt_recovered", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("how", "appended"), TDSX_KV_I("index", index));
    } else {
        tdsx_log(TDSX_LOG_ERROR, "log.receipt_recovery_failed", TDSX_KV_S("transfer", hex),
                 TDSX_KV_E("err", status));
    }
    tdsx_free(r);
}

typedef struct {
    tdsx_node_t *node;
    uint64_t from;  /* where an entry appended but never marked can be (store.h) */
    size_t n_found; /* already in the log: marked once the walk is over */
    uint8_t found[TDSX_STORE_PAGE_MAX][TDSX_TRANSFER_ID_LEN];
    uint64_t found_at[TDSX_STORE_PAGE_MAX];
} relog_walk_t;

static int relog_one(void *ud, const tdsx_receipt_t *rcpt)
{
    relog_walk_t *w = ud;
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_RECEIPT, 2, {rcpt->nro, rcpt->nrr}};
    /* The append was durable and only its mark was lost: appending again would log the
     * receipt twice. */
    uint64_t at = 0;
    int rc = tdsx__log_find(w->node, &e, w->from, &at);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (w->n_found >= TDSX_STORE_PAGE_MAX)
            return TDSX_E_INTERNAL;
        memcpy(w->found[w->n_found], rcpt->transfer_id, TDSX_TRANSFER_ID_LEN);
        w->found_at[w->n_found++] = at;
        return 0;
    }
    relog_t *r = tdsx_malloc(sizeof *r);
    if (!r)
        return TDSX_E_NOMEM;
    r->node = w->node;
    memcpy(r->id, rcpt->transfer_id, sizeof r->id);
    rc = tdsx__log_append(w->node, &e, on_relogged, r);
    if (rc)
        tdsx_free(r);
    return rc;
}

void tdsx__exchange_relog(tdsx_node_t *n)
{
    tdsx_exchange_t *x = n ? X(n) : NULL;
    relog_walk_t *w = tdsx_calloc(1, sizeof *w);
    int rc = x && x->store && n->log ? 0 : TDSX_E_STATE;
    if (rc == 0 && !w)
        rc = TDSX_E_NOMEM;
    if (rc == 0) {
        w->node = n;
        rc = tdsx_store_receipt_log_next(x->store, &w->from);
    }
    if (rc == 0)
        rc = tdsx_store_receipt_unlogged(x->store, TDSX_STORE_PAGE_MAX, relog_one, w);
    /* Marked after the walk: the store's statement is busy during it. */
    for (size_t i = 0; w && i < w->n_found; i++) {
        char hex[TID_HEX];
        tid_hex(w->found[i], hex);
        mark_logged(n, w->found[i], w->found_at[i]);
        tdsx_log(TDSX_LOG_INFO, "log.receipt_recovered", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("how", "found"), TDSX_KV_I("index", w->found_at[i]));
    }
    tdsx_free(w);
    if (rc)
        tdsx_log(TDSX_LOG_ERROR, "log.receipt_recovery_failed", TDSX_KV_E("err", rc),
                 TDSX_KV_S("action", "receipts not queued are tried again at the next start"));
}

static void on_logged(void *ud, int status, uint64_t index)
{
    held_reply_t *h = ud;
    xstream_t *s = h->s;
    s->busy--;
    s->logged = status == 0;
    s->log_index = index;
    if (status == 0 && h->receipt)
        mark_logged(s->node, s->rec.id, index);
    int err = h->err;
    const char *msg = h->has_msg ? h->msg : NULL;
    if (status) {
        log_transfer(s, TDSX_LOG_ERROR, "transfer.log_failed", status);
        if (!err) {
            err = TDSX_E_LOG;
            msg = "stored, but its transparency-log entry failed";
        }
    }
    /* The sender is owed our signed receipt even when our log failed: it logs it in its own. */
    if (h->nrr)
        send_nrr(s, tdsx_bytes(h->nrr, h->nrr_len));
    reply_result(s, err, h->state, msg, tdsx_buf_bytes(&h->reply));
    if (h->receipt)
        receipt_final(s);
    else
        stream_finish(s);
    tdsx_buf_free(&h->reply);
    tdsx_free(h->nrr);
    tdsx_free(h);
}

/* Appends the transfer's entry (our NRO and `env`, the NRR or the NRD) and holds the replies
 * until it is durable: on 0 the stream waits in XS_LOGGING and *reply was taken. */
static int log_then_reply(xstream_t *s, uint8_t type, tdsx_bytes_t env, int err, const char *state,
                          const char *msg, tdsx_buf_t *reply)
{
    held_reply_t *h = tdsx_calloc(1, sizeof *h);
    if (!h)
        return TDSX_E_NOMEM;
    h->s = s;
    h->receipt = type == TDSX_LOG_ENTRY_RECEIPT;
    h->err = err;
    h->state = state;
    if (msg) {
        snprintf(h->msg, sizeof h->msg, "%s", msg);
        h->has_msg = 1;
    }
    if (h->receipt && !s->sender) {
        if (!(h->nrr = tdsx_malloc(env.n))) {
            tdsx_free(h);
            return TDSX_E_NOMEM;
        }
        memcpy(h->nrr, env.p, env.n);
        h->nrr_len = env.n;
    }
    tdsx_log_entry_t e = {type, 2, {tdsx_bytes(s->nro, s->nro_len), env}};
    int rc = tdsx__log_append(s->node, &e, on_logged, h);
    if (rc) {
        log_transfer(s, TDSX_LOG_ERROR, "transfer.log_failed", rc);
        tdsx_free(h->nrr);
        tdsx_free(h);
        return rc;
    }
    h->reply = *reply;
    tdsx_buf_init(reply, reply->cap);
    s->state = XS_LOGGING;
    s->busy++;
    return 0;
}

/* Stores the complete receipt and answers the local client with it. */
static void finish_with_receipt(xstream_t *s, tdsx_bytes_t nrr, int refused, int err,
                                const char *msg)
{
    tdsx_exchange_t *x = X(s->node);
    xconn_t *xc = s->xc;
    tdsx_receipt_t r;
    memset(&r, 0, sizeof r);
    memcpy(r.transfer_id, s->rec.id, TDSX_TRANSFER_ID_LEN);
    snprintf(r.sender, sizeof r.sender, "%s", s->sender ? s->node->self_id : s->rec.peer);
    snprintf(r.receiver, sizeof r.receiver, "%s", s->sender ? s->rec.peer : s->node->self_id);
    r.nro = tdsx_bytes(s->nro, s->nro_len);
    r.nrr = nrr;
    tdsx_bytes_t peer = xc ? tdsx_bytes(xc->peer_cert, xc->peer_cert_len) : tdsx_bytes(NULL, 0);
    tdsx_bytes_t own = tdsx_bytes(x->own_cert, x->own_cert_len);
    r.sender_cert = s->sender ? own : peer;
    r.receiver_cert = s->sender ? peer : own;
    r.stored_at = tdsx_now();
    s->rec.finished_at = r.stored_at;
    s->rec.error = err;
    int rc = tdsx_store_receipt_put(x->store, &r, refused);
    /* An accepted receipt under an agreement counts against its transfer limit (agree.c). */
    if (rc == 0 && !refused && !err && s->has_agreement)
        tdsx__agree_used(x->agree, s->agreement);
    if (rc == 0) {
        s->rec.state = refused ? TDSX_XFER_REFUSED : TDSX_XFER_RECEIPTED;
        log_transfer(s, refused ? TDSX_LOG_WARN : TDSX_LOG_INFO,
                     refused ? "transfer.refused" : "transfer.receipted", err);
    } else {
        log_transfer(s, TDSX_LOG_ERROR, "transfer.receipt_store_failed", rc);
    }
    tdsx_buf_t b;
    tdsx_buf_init(&b, 2 * TDSX_ENVELOPE_MAX);
    if (bundle_pack(&r, x, &b) != 0)
        tdsx_buf_reset(&b);
    /* SPEC §11: a stored receipt counts, and the sender (our NRR) and the local client hear of
     * it, only once its transparency-log entry is durable; meanwhile the stream waits. */
    if (rc == 0 && log_then_reply(s, TDSX_LOG_ENTRY_RECEIPT, nrr, err,
                                  refused ? "refused" : "receipted", msg, &b) == 0)
        return;
    if (!s->sender)
        send_nrr(s, nrr);
    reply_result(s, rc ? rc : err,
                 rc        ? "aborted"
                 : refused ? "refused"
                           : "receipted",
                 msg, tdsx_buf_bytes(&b));
    tdsx_buf_free(&b);
    receipt_final(s);
}

/* What a receipted transfer leaves behind goes, and the stream ends. */
static void receipt_final(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    if (s->sender) {
        /* The NRO kept for resuming is no longer needed: the receipt holds it. */
        if (tdsx_store_nro_drop(x->store, s->rec.id) != 0)
            tdsx_log(TDSX_LOG_DEBUG, "store.nro_drop_failed", TDSX_KV_I("stream", s->id));
        remove_sealed_tmp(s); /* the transfer is final: its sealed stream is no longer needed */
    }
    stream_finish(s);
}

/* ---- sender ------------------------------------------------------------------------------- */

static void send_more(xstream_t *s);

static void on_read_done(uv_fs_t *req)
{
    xstream_t *s = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    s->busy--;
    s->reading = 0;
    if (s->state != XS_SEND_DATA || !s->conn) {
        stream_maybe_free(s);
        return;
    }
    if (r <= 0) {
        stream_fail(s, TDSX_E_IO, 1, 1);
        return;
    }
    Tdsx__TransferData d = TDSX__TRANSFER_DATA__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    d.offset = s->next_offset;
    d.chunk.data = s->rbuf;
    d.chunk.len = (size_t)r;
    f.stream_id = s->id;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &d;
    int rc = tdsx__conn_send(s->conn, &f);
    if (rc) {
        stream_fail(s, rc, 0, 1);
        return;
    }
    s->next_offset += (uint64_t)r;
    s->credit -= (uint64_t)r;
    reply_progress(s, s->next_offset);
    send_more(s);
}

/* Sends the next chunk when credit and the connection allow; TransferEnd after the last. */
static void send_more(xstream_t *s)
{
    if (s->state != XS_SEND_DATA || s->reading || !s->conn)
        return;
    if (s->next_offset >= s->rec.length) {
        Tdsx__TransferEnd e = TDSX__TRANSFER_END__INIT;
        Tdsx__Frame f = TDSX__FRAME__INIT;
        e.length = s->rec.length;
        e.sha256.data = s->rec.sha256;
        e.sha256.len = 32;
        f.stream_id = s->id;
        f.body_case = TDSX__FRAME__BODY_TRANSFER_END;
        f.transfer_end = &e;
        int rc = tdsx__conn_send(s->conn, &f);
        if (rc) {
            stream_fail(s, rc, 0, 1);
            return;
        }
        s->state = XS_SEND_WAIT_RECEIPT;
        s->end_sent_ms = uv_now(s->node->loop);
        return;
    }
    if (s->credit == 0 || !tdsx__conn_writable(s->conn))
        return;
    uint64_t want = s->rec.length - s->next_offset;
    if (want > XS_READ_SIZE)
        want = XS_READ_SIZE;
    if (want > s->credit)
        want = s->credit;
    if (!s->rbuf && !(s->rbuf = tdsx_malloc(XS_READ_SIZE))) {
        stream_fail(s, TDSX_E_NOMEM, 1, 1);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)s->rbuf, (unsigned)want);
    s->fs.data = s;
    if (uv_fs_read(s->node->loop, &s->fs, s->fd, &b, 1, (int64_t)s->next_offset, on_read_done) !=
        0) {
        stream_fail(s, TDSX_E_IO, 1, 1);
        return;
    }
    s->reading = 1;
    s->busy++;
}

static void send_start(xstream_t *s)
{
    Tdsx__TransferStart st = TDSX__TRANSFER_START__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    st.nro.data = s->nro;
    st.nro.len = s->nro_len;
    f.stream_id = s->id;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_START;
    f.transfer_start = &st;
    int rc = tdsx__conn_send(s->conn, &f);
    if (rc) {
        stream_fail(s, rc, 0, 1);
        return;
    }
    s->state = XS_SEND_WAIT_ACCEPT;
}

static void on_nro_signed(void *ud, int status, tdsx_bytes_t env)
{
    xstream_t *s = ud;
    s->busy--;
    if (s->state != XS_SEND_PREPARE || !s->conn) {
        stream_maybe_free(s);
        return;
    }
    if (status) {
        stream_fail(s, status, 1, 0);
        return;
    }
    s->nro = tdsx_malloc(env.n);
    if (!s->nro) {
        stream_fail(s, TDSX_E_NOMEM, 1, 0);
        return;
    }
    memcpy(s->nro, env.p, env.n);
    s->nro_len = env.n;
    tdsx_hash_t h;
    if (tdsx_envelope_hash(env, &h) == 0)
        memcpy(s->nro_hash, h.b, 32);
    /* Kept for a resume after an interruption (dropped once receipted). */
    int krc = tdsx_store_nro_put(X(s->node)->store, s->rec.id, tdsx_bytes(s->nro, s->nro_len));
    if (krc)
        tdsx_log(TDSX_LOG_ERROR, "store.nro_put_failed", TDSX_KV_E("err", krc));
    send_start(s);
}

/* Decides the transfer under the node's policy (SPEC §8) and remembers the deciding rule.
 * Tags are checked against the node's taxonomy first: a transfer without valid tags is
 * refused whatever the policy says. Returns 0 (allow) or the refusal code; *d is filled. */
static int decide(xstream_t *s, tdsx_direction_t dir, tdsx_policy_decision_t *d)
{
    tdsx_node_t *n = s->node;
    tdsx_tags_t tags;
    tdsx_tags_error_t te;
    memset(d, 0, sizeof *d);
    int rc = s->tags[0] ? tdsx_tags_parse(tdsx_bytes(s->tags, strlen(s->tags)), &tags, &te)
                        : TDSX_E_TAGS;
    if (rc == 0)
        rc = tdsx_taxonomy_check(n->taxonomy, &tags);
    if (rc) {
        d->code = TDSX_E_TAGS;
        d->rule_id = "invalid-tags";
        d->reason = "the transfer carries no valid classification tags";
        snprintf(s->rule, sizeof s->rule, "%s", d->rule_id);
        return TDSX_E_TAGS;
    }
    const tdsx_member_t *m = tdsx_registry_find(n->registry, s->rec.peer);
    tdsx_policy_input_t in;
    memset(&in, 0, sizeof in);
    in.direction = dir;
    in.local_role = (tdsx_policy_role_t)n->cfg.role;
    in.peer_role = m ? (tdsx_policy_role_t)m->role : TDSX_POLICY_ROLE_NONE;
    in.peer_id = s->rec.peer;
    in.tags = &tags;
    /* SPEC §9: what the NRO says (ours, or the sender's: a final recipient proves it by opening
     * the payload, a relay by the sealed stream's length and magic). */
    in.sealed = s->sealed;
    in.relay = s->relay;
    /* Agreements (agree.c, SPEC §7): provider = data sender, consumer = receiver. The sender
     * looks for one (then keeps to its choice), the receiver takes the one the NRO names. */
    int sending = dir == TDSX_DIR_SEND;
    tdsx_agree_view_t av;
    tdsx__agree_cover(X(n)->agree, sending ? n->self_id : s->rec.peer,
                      sending ? s->rec.peer : n->self_id, s->dataset_id, tags.category,
                      s->has_agreement ? s->agreement : NULL, sending, &av);
    in.agreement = av.state;
    in.purpose = av.purpose;
    /* SPEC §9: a relay must be allowed by the agreement that covered the upstream transfer: it
     * grants relay-to this receiver (by id or registry role) and is valid now, or nothing is
     * sent. When it is, it is the agreement the policy sees (its purpose), so `require
     * agreement` rules can allow the relay; an agreement of ours with the receiver still goes
     * into the NRO for the receiver, which does not hold the upstream one. A resumed relay
     * (up_known = 0) was checked on its first run. */
    int rrc = 0;
    const char *rwhy = NULL;
    tdsx_agree_view_t rv;
    if (sending && s->relay && s->up_known) {
        rrc = tdsx__agree_relay(X(n)->agree, s->up_has_agreement ? s->up_agreement : NULL,
                                s->up_origin, n->self_id, s->dataset_id, tags.category, s->rec.peer,
                                tdsx_policy_role_name(in.peer_role), &rv, &rwhy);
        if (rrc == 0) {
            in.agreement = rv.state;
            in.purpose = rv.purpose;
        }
    }
    rc = tdsx_policy_eval(n->policy, &in, d);
    if (rc == 0)
        rc = tdsx__agree_enforce(&av, d);
    if (rrc) {
        /* Whatever the policy says: rule ids no policy label can take (agree.h). */
        d->allow = 0;
        d->line = 0;
        d->code = rrc;
        d->rule_id = rrc == TDSX_E_AGREEMENT_TERMINATED ? "agreement:relay-terminated"
                     : rrc == TDSX_E_AGREEMENT_EXPIRED  ? "agreement:relay-expired"
                                                        : "agreement:relay-not-granted";
        d->reason = rwhy;
        rc = rrc;
    }
    if (sending && av.state == TDSX_AGREEMENT_VALID) {
        s->has_agreement = 1;
        memcpy(s->agreement, av.hash, sizeof s->agreement);
    }
    s->agreement_until = av.state == TDSX_AGREEMENT_VALID ? av.not_after : 0;
    /* A granted relay also stops when the upstream agreement ends (the tick re-decides). */
    if (rc == 0 && sending && s->relay && s->up_known &&
        (!s->agreement_until || rv.not_after < s->agreement_until))
        s->agreement_until = rv.not_after;
    snprintf(s->rule, sizeof s->rule, "%s", d->rule_id ? d->rule_id : "");
    return rc;
}

static void log_decision(const xstream_t *s, const tdsx_policy_decision_t *d)
{
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    tdsx_log(TDSX_LOG_WARN, "policy.refused", TDSX_KV_S("transfer", hex),
             TDSX_KV_S("peer", s->rec.peer), TDSX_KV_S("dir", s->sender ? "out" : "in"),
             TDSX_KV_S("dataset", s->dataset_id), TDSX_KV_S("tags", s->tags),
             TDSX_KV_S("rule", s->rule), TDSX_KV_E("err", d->code),
             TDSX_KV_S("reason", d->reason ? d->reason : ""));
}

/* With the payload's hash and length known: record the transfer, sign the NRO. */
static void sign_nro(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    Tdsx__Nro nro = TDSX__NRO__INIT;
    Tdsx__Tags tags = TDSX__TAGS__INIT;
    char cat[256];
    tdsx_policy_decision_t d;
    int rc = decide(s, TDSX_DIR_SEND, &d);
    if (rc) {
        /* Refused before anything leaves: the peer never hears of it. */
        log_decision(s, &d);
        tdsx__http_count_transfer(s->node, 0, "transfer.refused", s->tags);
        remove_sealed_tmp(s);
        reply_result(s, rc, "refused", d.reason, tdsx_bytes(NULL, 0));
        stream_finish(s);
        return;
    }
    if ((rc = tags_to_proto(s->tags, &tags, cat, sizeof cat)) != 0) {
        stream_fail(s, rc, 0, 0);
        return;
    }
    if ((rc = tdsx_store_next_sequence(x->store, s->node->self_id, s->rec.peer,
                                       &s->rec.sequence)) != 0 ||
        (rc = tdsx_store_transfer_begin(x->store, &s->rec)) != 0) {
        stream_fail(s, rc, 0, 0);
        return;
    }
    nro.transfer_id.data = s->rec.id;
    nro.transfer_id.len = TDSX_TRANSFER_ID_LEN;
    nro.sender = s->node->self_id;
    nro.receiver = s->rec.peer;
    nro.dataset_id = s->dataset_id;
    nro.tags = &tags;
    nro.policy_rule = s->rule;
    if (s->has_agreement) {
        nro.agreement_hash.data = s->agreement; /* agree.c: the agreement it runs under */
        nro.agreement_hash.len = sizeof s->agreement;
    }
    nro.payload_sha256.data = s->rec.sha256;
    nro.payload_sha256.len = 32;
    nro.payload_length = s->rec.length;
    /* SPEC §9: the payload above is the ciphertext when sealed; the plaintext's hash and who can
     * open it travel signed beside it. A relay names the receipt it forwards from. */
    nro.sealed = s->sealed;
    if (s->sealed) {
        nro.final_recipient = s->final_recipient;
        if (s->has_plain_sha) {
            nro.plaintext_sha256.data = s->plain_sha;
            nro.plaintext_sha256.len = TDSX_SHA256_LEN;
        }
    }
    if (s->has_upstream) {
        nro.upstream_receipt_hash.data = s->upstream_nrr;
        nro.upstream_receipt_hash.len = TDSX_SHA256_LEN;
    }
    if (s->sealed && s->has_seal_tid) {
        nro.seal_transfer_id.data = s->seal_tid;
        nro.seal_transfer_id.len = sizeof s->seal_tid;
    }
    nro.sequence = s->rec.sequence;
    nro.time = tdsx_now();
    rc = tdsx_statement_submit(x->signer, TDSX_STATEMENT_NRO, &nro.base, on_nro_signed, s);
    if (rc) {
        stream_fail(s, rc, 0, 0);
        return;
    }
    s->busy++;
}

static void hash_file_work(uv_work_t *req)
{
    xstream_t *s = req->data;
    tdsx_sha256_t h;
    uint8_t buf[1 << 16];
    uint64_t total = 0;
    s->hash_rc = tdsx_sha256_init(&h);
    if (s->hash_rc)
        return;
    for (;;) {
        ssize_t r = pread(s->fd, buf, sizeof buf, (off_t)total);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            s->hash_rc = TDSX_E_IO;
            break;
        }
        if (r == 0)
            break;
        if ((s->hash_rc = tdsx_sha256_update(&h, buf, (size_t)r)) != 0)
            break;
        total += (uint64_t)r;
    }
    if (s->hash_rc == 0)
        s->hash_rc = tdsx_sha256_final(&h, s->rec.sha256);
    tdsx_sha256_free(&h);
    s->rec.length = total;
}

static void hash_file_done(uv_work_t *req, int status)
{
    xstream_t *s = req->data;
    s->busy--;
    if (s->state != XS_SEND_PREPARE || !s->conn) {
        stream_maybe_free(s);
        return;
    }
    if (status || s->hash_rc) {
        stream_fail(s, status ? TDSX_E_CANCELED : s->hash_rc, 0, 0);
        return;
    }
    sign_nro(s);
}

/* Writes all of b to fd and hashes it: the sealed stream as it will go on the wire. */
static int write_hashed(int fd, tdsx_sha256_t *h, const tdsx_buf_t *b)
{
    int rc = tdsx_sha256_update(h, b->p, b->len);
    for (size_t done = 0; rc == 0 && done < b->len;) {
        ssize_t w = write(fd, b->p + done, b->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TDSX_E_IO;
        done += (size_t)w;
    }
    return rc;
}

/* Thread pool: seals the file s->fd for s->seal_pk into tmp/<tid>.sealed (0600, fsynced, so a
 * resumed send finds the same bytes) and hashes the ciphertext on the way (SPEC §9). On
 * return rec.sha256/length describe the ciphertext and plain_sha the plaintext. */
static void seal_file_work(uv_work_t *req)
{
    xstream_t *s = req->data;
    tdsx_sha256_t h;
    tdsx_sealer_t *sealer = NULL;
    tdsx_buf_t out, path;
    uint8_t *in = NULL;
    uint64_t pos = 0, want = 0;
    tdsx_buf_init(&out, SEAL_OUT_CAP);
    tdsx_buf_init(&path, 0);
    int rc = tdsx_sha256_init(&h);
    if (rc == 0 && (rc = sealed_tmp_path(s, &path)) == 0) {
        s->seal_fd = open((const char *)path.p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (s->seal_fd < 0)
            rc = TDSX_E_IO;
        else
            s->seal_tmp = 1;
    }
    tdsx_buf_free(&path);
    if (rc == 0 && !(in = tdsx_malloc(SEAL_READ_SIZE)))
        rc = TDSX_E_NOMEM;
    if (rc == 0 && (rc = tdsx_sealer_new(s->seal_pk, s->rec.id, &out, &sealer)) == 0)
        rc = write_hashed(s->seal_fd, &h, &out);
    while (rc == 0) {
        ssize_t r = pread(s->fd, in, SEAL_READ_SIZE, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = TDSX_E_IO;
            break;
        }
        tdsx_buf_reset(&out);
        if (r == 0) {
            if ((rc = tdsx_sealer_final(sealer, &out, s->plain_sha)) == 0)
                rc = write_hashed(s->seal_fd, &h, &out);
            break;
        }
        pos += (uint64_t)r;
        if ((rc = tdsx_sealer_update(sealer, tdsx_bytes(in, (size_t)r), &out)) == 0)
            rc = write_hashed(s->seal_fd, &h, &out);
    }
    /* The length the NRO declares must be the format's own function of the plaintext length. */
    if (rc == 0 && (rc = tdsx_seal_ciphertext_len(pos, &want)) == 0) {
        off_t end = lseek(s->seal_fd, 0, SEEK_CUR);
        if (end < 0 || (uint64_t)end != want)
            rc = TDSX_E_INTERNAL;
    }
    if (rc == 0 && fsync(s->seal_fd) != 0)
        rc = TDSX_E_IO;
    if (rc == 0 && (rc = tdsx_sha256_final(&h, s->rec.sha256)) == 0) {
        s->rec.length = want;
        s->has_plain_sha = 1;
    }
    tdsx_sealer_free(sealer);
    tdsx_sha256_free(&h);
    tdsx_buf_free(&out);
    if (in)
        sodium_memzero(in, SEAL_READ_SIZE); /* plaintext of a payload meant for someone else */
    tdsx_free(in);
    s->hash_rc = rc;
}

static void seal_file_done(uv_work_t *req, int status)
{
    xstream_t *s = req->data;
    s->busy--;
    if (status == 0 && s->hash_rc == 0) {
        /* From now on the stream sends the sealed file. */
        uv_fs_t c;
        uv_fs_close(NULL, &c, s->fd, NULL);
        uv_fs_req_cleanup(&c);
        s->fd = s->seal_fd;
        s->seal_fd = -1;
    }
    if (s->state != XS_SEND_PREPARE || !s->conn) {
        remove_sealed_tmp(s);
        stream_maybe_free(s);
        return;
    }
    if (status || s->hash_rc) {
        int err = status ? TDSX_E_CANCELED : s->hash_rc;
        char hex[TID_HEX];
        tid_hex(s->rec.id, hex);
        tdsx_log(TDSX_LOG_WARN, "transfer.seal_failed", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("final", s->final_recipient), TDSX_KV_E("err", err));
        stream_fail(s, err, 0, 0);
        return;
    }
    sign_nro(s);
}

/* Prepares the payload: sealed streams are made (and hashed) on the thread pool, plain files
 * are only hashed there. Returns 0 with the work queued. */
static int queue_prepare(xstream_t *s)
{
    s->work.data = s;
    if (uv_queue_work(s->node->loop, &s->work, s->sealed ? seal_file_work : hash_file_work,
                      s->sealed ? seal_file_done : hash_file_done) != 0)
        return TDSX_E_IO;
    s->busy++;
    return 0;
}

/* ---- receiving ---------------------------------------------------------------------------- */

/* Receive credit (SPEC §4: per-stream and per-connection flow control). A stream gets at most
 * stream_window outstanding, never more than it still needs, and all streams of a connection
 * together at most conn_window; a stream the connection cannot serve now is starved and served
 * first when credit comes back. Returns the credit to announce (0: nothing now). */
static uint64_t credit_due(xstream_t *s)
{
    const tdsx_config_t *cfg = &s->node->cfg;
    xconn_t *xc = s->xc;
    uint64_t need = s->rec.length - s->since_sync - s->granted;
    uint64_t room = cfg->stream_window - s->granted;
    uint64_t conn = cfg->conn_window > xc->granted ? cfg->conn_window - xc->granted : 0;
    uint64_t give = need < room ? need : room;
    int starved = give > conn;
    if (starved)
        give = conn;
    if (starved != s->starved) {
        s->starved = starved;
        if (starved)
            xc->starved++;
        else
            xc->starved--;
    }
    s->granted += give;
    xc->granted += give;
    return give;
}

/* Hands back what a finished stream was granted and did not use. */
static void credit_release(xstream_t *s)
{
    xconn_t *xc = s->xc;
    if (!xc)
        return;
    xc->granted -= s->granted < xc->granted ? s->granted : xc->granted;
    s->granted = 0;
    if (s->starved) {
        s->starved = 0;
        xc->starved--;
    }
}

static int grant(xstream_t *s)
{
    uint64_t credit = credit_due(s);
    if (credit == 0)
        return 0;
    Tdsx__WindowUpdate wu = TDSX__WINDOW_UPDATE__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    wu.stream_id = s->id;
    wu.credit = credit;
    f.stream_id = s->id;
    f.body_case = TDSX__FRAME__BODY_WINDOW_UPDATE;
    f.window_update = &wu;
    return tdsx__conn_send(s->conn, &f);
}

/* Credit came back to the connection: serve starved streams. */
static int feed_starved(xconn_t *xc)
{
    for (size_t i = 0; xc->starved > 0 && i < xc->cap; i++) {
        xstream_t *t = xc->slots[i];
        if (t && t != (xstream_t *)xc && t->starved && t->state == XS_RECV_DATA) {
            int rc = grant(t);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static void on_nrr_signed(void *ud, int status, tdsx_bytes_t env)
{
    xstream_t *s = ud;
    s->busy--;
    if (status) {
        if (s->state != XS_DONE)
            stream_fail(s, status, 1, 0);
        else
            stream_maybe_free(s);
        return;
    }
    int refused = s->commit_rc != 0;
    /* Our half is stored whether or not the sender is still there to hear it; the sender
     * hears it once it is in our transparency log (finish_with_receipt). */
    s->state = XS_RECV_SIGN;
    finish_with_receipt(s, env, refused, s->commit_rc, s->refusal_why);
}

static void sign_nrr(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    Tdsx__Nrr nrr = TDSX__NRR__INIT;
    uint8_t sig_hash[32] = {0};
    tdsx_verified_t info;
    ProtobufCMessage *m = NULL;
    /* Re-open our stored NRO (verified when it arrived) for the signature hash. */
    int rc = tdsx_statement_open(x->verifier, TDSX_STATEMENT_NRO, tdsx_bytes(s->nro, s->nro_len),
                                 x->arena, &m, &info);
    if (rc == 0)
        rc = tdsx_sha256(info.sig, sizeof info.sig, sig_hash);
    tdsx_arena_reset(x->arena);
    if (rc) {
        stream_fail(s, rc, 1, 0);
        return;
    }
    nrr.transfer_id.data = s->rec.id;
    nrr.transfer_id.len = TDSX_TRANSFER_ID_LEN;
    nrr.nro_hash.data = s->nro_hash;
    nrr.nro_hash.len = 32;
    nrr.nro_signature_hash.data = sig_hash;
    nrr.nro_signature_hash.len = 32;
    nrr.received_sha256.data = s->got_sha;
    nrr.received_sha256.len = 32;
    nrr.received_length = s->since_sync;
    nrr.status = s->refusal     ? TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED
                 : s->commit_rc ? TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED
                                : TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    if (s->refusal) {
        nrr.refusal_code = tdsx_err_wire(s->commit_rc);
        nrr.refusal_reason = (char *)(s->refusal_why ? s->refusal_why : "");
    }
    nrr.time = tdsx_now();
    nrr.receiver = s->node->self_id;
    nrr.policy_rule = s->rule;
    s->state = XS_RECV_SIGN;
    rc = tdsx_statement_submit(x->signer, TDSX_STATEMENT_NRR, &nrr.base, on_nrr_signed, s);
    if (rc) {
        stream_fail(s, rc, 1, 0);
        return;
    }
    s->busy++;
}

/* Thread pool: opens the committed ciphertext with our enc key into the plaintext writer
 * s->pw (SPEC §9). The plaintext is committed only when the opener's final record proved the
 * stream complete and its SHA-256 equals the one the NRO promised; otherwise nothing of it is
 * kept, nor the ciphertext when this transfer brought it. */
static void open_work(uv_work_t *req)
{
    xstream_t *s = req->data;
    tdsx_opener_t *o = NULL;
    tdsx_buf_t out;
    uint8_t *in = NULL;
    uint8_t sha[TDSX_SHA256_LEN];
    uint64_t pos = 0, len = 0;
    tdsx_buf_init(&out, OPEN_OUT_CAP);
    int fd = open(s->cipher_path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? TDSX_E_IO : 0;
    if (rc == 0 && !(in = tdsx_malloc(OPEN_READ_SIZE)))
        rc = TDSX_E_NOMEM;
    if (rc == 0)
        rc = tdsx_opener_new(X(s->node)->enc_sk, s->seal_tid, &o);
    while (rc == 0) {
        ssize_t r = pread(fd, in, OPEN_READ_SIZE, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = TDSX_E_IO;
        if (r <= 0)
            break;
        pos += (uint64_t)r;
        tdsx_buf_reset(&out);
        if ((rc = tdsx_opener_feed(o, tdsx_bytes(in, (size_t)r), &out)) == 0)
            rc = tdsx_object_write(s->pw, out.p, out.len);
    }
    if (rc == 0)
        rc = tdsx_opener_final(o, &len, sha);
    if (rc == 0 && s->has_plain_sha && sodium_memcmp(sha, s->plain_sha, sizeof sha) != 0)
        rc = TDSX_E_HASH_MISMATCH; /* authentic, but not the plaintext the sender signed for */
    if (rc == 0) {
        rc = tdsx_object_commit(s->pw, sha, len, NULL);
        s->pw = NULL; /* commit frees the writer whatever the result */
        memcpy(s->open_sha, sha, sizeof sha);
    }
    if (rc) {
        tdsx_object_abort(s->pw, 0);
        s->pw = NULL;
        if (!s->cipher_existed)
            unlink(s->cipher_path);
    }
    tdsx_opener_free(o);
    if (out.p)
        sodium_memzero(out.p, out.alloc);
    tdsx_buf_free(&out);
    if (in)
        sodium_memzero(in, OPEN_READ_SIZE);
    tdsx_free(in);
    if (fd >= 0)
        close(fd);
    s->open_rc = rc;
}

static void open_done(uv_work_t *req, int status)
{
    xstream_t *s = req->data;
    s->busy--;
    if (status)
        s->open_rc = TDSX_E_CANCELED;
    if (s->state != XS_RECV_COMMIT) {
        stream_maybe_free(s);
        return;
    }
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    if (s->open_rc) {
        tdsx_log(TDSX_LOG_WARN, "transfer.open_failed", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("peer", s->rec.peer), TDSX_KV_S("dataset", s->dataset_id),
                 TDSX_KV_E("err", s->open_rc));
        /* Our own trouble (disk, memory) is not the sender's fault: abort without a verdict.
         * A sealed payload that does not open is an integrity failure, signed as such. */
        if (s->open_rc == TDSX_E_IO || s->open_rc == TDSX_E_NOMEM ||
            s->open_rc == TDSX_E_INTERNAL || s->open_rc == TDSX_E_CANCELED) {
            stream_fail(s, s->open_rc, 1, 0);
            return;
        }
        s->commit_rc = TDSX_E_INTEGRITY;
    } else {
        char path[4096] = "";
        s->opened = 1;
        s->has_plain_sha = 1;
        memcpy(s->plain_sha, s->open_sha, sizeof s->plain_sha);
        if (tdsx_store_object_path(X(s->node)->store, s->plain_sha, path, sizeof path) != 0)
            path[0] = '\0';
        tdsx_log(TDSX_LOG_INFO, "transfer.opened", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("peer", s->rec.peer), TDSX_KV_S("dataset", s->dataset_id),
                 TDSX_KV_S("object", path));
    }
    sign_nrr(s);
}

/* The ciphertext is committed and we are its final recipient: open it on the thread pool into
 * a fresh part file (its own random id: the transfer's part name is the ciphertext's). */
static int start_open(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    uint8_t pid[TDSX_TRANSFER_ID_LEN];
    randombytes_buf(pid, sizeof pid);
    int rc = tdsx_store_object_path(x->store, s->rec.sha256, s->cipher_path, sizeof s->cipher_path);
    if (rc == 0)
        rc = tdsx_object_begin(x->store, pid, 0, 0, &s->pw);
    if (rc)
        return rc;
    s->work.data = s;
    if (uv_queue_work(s->node->loop, &s->work, open_work, open_done) != 0) {
        tdsx_object_abort(s->pw, 0);
        s->pw = NULL;
        return TDSX_E_IO;
    }
    s->busy++;
    return 0;
}

/* The payload is durable (or failed): the NRR follows, after opening it when sealed to us. */
static void commit_done(xstream_t *s)
{
    s->busy--;
    s->w = NULL; /* the commit frees the writer whatever the result */
    if (s->state != XS_RECV_COMMIT) {
        stream_maybe_free(s);
        return;
    }
    s->rec.durable = s->since_sync;
    if (s->commit_rc && s->commit_rc != TDSX_E_INTEGRITY) {
        stream_fail(s, s->commit_rc, 1, 0);
        return;
    }
    if (s->commit_rc == 0 && s->final_here) {
        int rc = start_open(s); /* the NRR follows once it is opened (open_done) */
        if (rc == 0)
            return;
        stream_fail(s, rc, 1, 0);
        return;
    }
    sign_nrr(s);
}

static void commit_batch_work(uv_work_t *req)
{
    tdsx_exchange_t *x = req->data;
    tdsx_object_commit_many(x->cq_items, x->cq_n);
}

static void commit_batch_done(uv_work_t *req, int status)
{
    tdsx_exchange_t *x = req->data;
    size_t n = x->cq_n;
    x->cq_busy = 0;
    x->cq_n = 0;
    for (size_t i = 0; i < n; i++) {
        xstream_t *s = x->cq_streams[i];
        s->commit_rc = status ? TDSX_E_CANCELED : x->cq_items[i].rc;
        memcpy(s->got_sha, x->cq_items[i].got, sizeof s->got_sha);
        commit_done(s);
    }
}

/* Queues a received payload for the next commit batch (started from the loop turn's check). */
static void commit_enqueue(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    s->busy++;
    s->commit_next = NULL;
    if (!x->cq_head)
        x->cq_tail = &x->cq_head;
    *x->cq_tail = s;
    x->cq_tail = &s->commit_next;
}

/* Everything received whole since the last batch goes to the thread pool as one batch:
 * tdsx_object_commit_many makes all of it durable with two device flushes. */
static void commit_start(tdsx_exchange_t *x)
{
    if (x->cq_busy || !x->cq_head)
        return;
    size_t n = 0;
    for (xstream_t *s = x->cq_head; s; s = s->commit_next)
        n++;
    if (n > x->cq_alloc) {
        size_t na = n < 64 ? 64 : 2 * n;
        tdsx_object_commit_t *items = tdsx_reallocarray(x->cq_items, na, sizeof *items);
        if (items)
            x->cq_items = items;
        xstream_t **ss = items ? tdsx_reallocarray(x->cq_streams, na, sizeof *ss) : NULL;
        if (ss)
            x->cq_streams = ss;
        if (!items || !ss)
            return; /* still queued: the next turn tries again */
        x->cq_alloc = na;
    }
    xstream_t *s = x->cq_head;
    for (size_t i = 0; i < n; i++, s = s->commit_next) {
        x->cq_streams[i] = s;
        x->cq_items[i] = (tdsx_object_commit_t){
            .w = s->w, .sha = s->rec.sha256, .length = s->rec.length};
    }
    x->cq_head = NULL;
    x->cq_n = n;
    x->cq_work.data = x;
    if (uv_queue_work(x->node->loop, &x->cq_work, commit_batch_work, commit_batch_done) == 0) {
        x->cq_busy = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tdsx_object_abort(x->cq_items[i].w, 1);
        x->cq_streams[i]->commit_rc = TDSX_E_IO;
    }
    x->cq_n = 0;
    for (size_t i = 0; i < n; i++)
        commit_done(x->cq_streams[i]);
}

/* SPEC §9: the sealed and relay fields of a received NRO must make sense before a byte is
 * accepted. Returns 0 or the refusal, with *why for the peer. */
static int check_sealed_nro(tdsx_node_t *n, const Tdsx__Nro *nro, const char **why)
{
    uint64_t plain;
    if ((nro->upstream_receipt_hash.len != 0 &&
         nro->upstream_receipt_hash.len != TDSX_SHA256_LEN) ||
        (nro->plaintext_sha256.len != 0 && nro->plaintext_sha256.len != TDSX_SHA256_LEN)) {
        *why = "NRO upstream receipt or plaintext hash has the wrong length";
        return TDSX_E_PROTO_FIELD;
    }
    if (!nro->sealed) {
        if (nro->plaintext_sha256.len == 0 && !*nro->final_recipient &&
            nro->seal_transfer_id.len == 0)
            return 0;
        *why = "NRO names a plaintext hash, final recipient or sealing transfer but is not sealed";
        return TDSX_E_PROTO_FIELD;
    }
    /* A stream sealed inside another transfer arrives only as a relay of it. */
    if (nro->seal_transfer_id.len != 0 && (nro->seal_transfer_id.len != TDSX_SEAL_TRANSFER_ID_LEN ||
                                           nro->upstream_receipt_hash.len == 0)) {
        *why = "NRO sealing transfer id is malformed or not a relay's";
        return TDSX_E_PROTO_FIELD;
    }
    if (tdsx_seal_plaintext_len(nro->payload_length, &plain) != 0) {
        *why = "the payload length is not that of any sealed stream";
        return TDSX_E_SEAL;
    }
    if (*nro->final_recipient && !tdsx_registry_find(n->registry, nro->final_recipient)) {
        *why = "the final recipient is not a member";
        return TDSX_E_PEER_UNKNOWN;
    }
    if ((!*nro->final_recipient || strcmp(nro->final_recipient, n->self_id) == 0) &&
        !X(n)->enc_sk) {
        *why = "sealed for this node, which holds no enc key";
        return TDSX_E_KEY;
    }
    return 0;
}

static int on_transfer_start(tdsx_conn_t *c, xconn_t *xc, const Tdsx__Frame *f, xstream_t *s)
{
    tdsx_node_t *node = s ? s->node : NULL;
    const Tdsx__TransferStart *st = f->transfer_start;
    if (!node) {
        /* A fresh stream opened by the peer. */
        node = tdsx__conn_node(c);
        s = stream_new(node, c, f->stream_id, 0);
        if (!s)
            return TDSX_E_NOMEM;
    } else if (s->state != XS_PULL_WAIT) {
        return TDSX_E_PROTOCOL;
    }
    tdsx_exchange_t *x = X(node);
    s->sender = 0;
    ProtobufCMessage *m = NULL;
    tdsx_verified_t info;
    tdsx_bytes_t env = tdsx_bytes(st->nro.data, st->nro.len);
    int rc = tdsx_statement_open(x->verifier, TDSX_STATEMENT_NRO, env, x->arena, &m, &info);
    const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
    const char *why = NULL;
    if (rc == 0 && memcmp(info.key_id.b, xc->peer_key.b, 32) != 0) {
        rc = TDSX_E_SIG_INVALID;
        why = "NRO not signed by the connected peer";
    }
    if (rc == 0 && (strcmp(nro->sender, tdsx__conn_peer_id(c)) != 0 ||
                    strcmp(nro->receiver, node->self_id) != 0)) {
        rc = TDSX_E_PROTO_FIELD;
        why = "NRO sender or receiver is not this connection's";
    }
    if (rc == 0 && (nro->transfer_id.len != TDSX_TRANSFER_ID_LEN || nro->payload_sha256.len != 32 ||
                    (nro->agreement_hash.len != 0 && nro->agreement_hash.len != TDSX_SHA256_LEN))) {
        rc = TDSX_E_PROTO_FIELD;
        why = "NRO transfer id or hash has the wrong length";
    }
    if (rc == 0)
        rc = check_sealed_nro(node, nro, &why);
    if (rc) {
        tdsx_arena_reset(x->arena);
        tdsx_log(TDSX_LOG_WARN, "transfer.refused", TDSX_KV_S("peer", tdsx__conn_peer_id(c)),
                 TDSX_KV_E("err", rc), TDSX_KV_S("reason", why ? why : "NRO does not verify"));
        (void)send_abort(c, f->stream_id, rc, why);
        s->rec.started_at = 0;
        reply_result(s, rc, "aborted", why, tdsx_bytes(NULL, 0));
        stream_finish(s);
        return 0;
    }
    memcpy(s->rec.id, nro->transfer_id.data, TDSX_TRANSFER_ID_LEN);
    s->rec.inbound = 1;
    snprintf(s->rec.peer, sizeof s->rec.peer, "%s", nro->sender);
    snprintf(s->rec.dataset_id, sizeof s->rec.dataset_id, "%s", nro->dataset_id);
    snprintf(s->dataset_id, sizeof s->dataset_id, "%s", nro->dataset_id);
    memcpy(s->rec.sha256, nro->payload_sha256.data, 32);
    s->rec.length = nro->payload_length;
    s->rec.sequence = nro->sequence;
    s->rec.state = TDSX_XFER_STARTED;
    s->rec.started_at = tdsx_now();
    tags_from_proto(nro->tags, s->tags, sizeof s->tags);
    /* The agreement the sender says this runs under; decide() checks we hold it (agree.c). */
    s->has_agreement = nro->agreement_hash.len == TDSX_SHA256_LEN;
    if (s->has_agreement)
        memcpy(s->agreement, nro->agreement_hash.data, sizeof s->agreement);
    /* Sealed and relayed (SPEC §9; checked by check_sealed_nro). Only the final recipient
     * opens; a relay stores the ciphertext as it came. */
    s->sealed = nro->sealed;
    s->has_upstream = s->relay = nro->upstream_receipt_hash.len == TDSX_SHA256_LEN;
    if (s->has_upstream)
        memcpy(s->upstream_nrr, nro->upstream_receipt_hash.data, TDSX_SHA256_LEN);
    s->has_plain_sha = nro->plaintext_sha256.len == TDSX_SHA256_LEN;
    if (s->has_plain_sha)
        memcpy(s->plain_sha, nro->plaintext_sha256.data, TDSX_SHA256_LEN);
    if (s->sealed)
        snprintf(s->final_recipient, sizeof s->final_recipient, "%s",
                 *nro->final_recipient ? nro->final_recipient : node->self_id);
    s->final_here = s->sealed && strcmp(s->final_recipient, node->self_id) == 0;
    s->has_seal_tid = nro->seal_transfer_id.len == TDSX_SEAL_TRANSFER_ID_LEN;
    memcpy(s->seal_tid, s->has_seal_tid ? nro->seal_transfer_id.data : s->rec.id,
           sizeof s->seal_tid);
    tdsx_arena_reset(x->arena);
    s->nro = tdsx_malloc(env.n);
    if (!s->nro)
        return TDSX_E_NOMEM;
    memcpy(s->nro, env.p, env.n);
    s->nro_len = env.n;
    tdsx_hash_t h;
    if ((rc = tdsx_envelope_hash(env, &h)) != 0)
        return rc;
    memcpy(s->nro_hash, h.b, 32);

    int resume = 0;
    rc = tdsx_store_transfer_begin(x->store, &s->rec);
    if (rc == TDSX_E_EXISTS) {
        resume = 1;
        rc = 0;
    } else if (rc == TDSX_E_DUPLICATE) {
        /* Never accepted twice; if it is the same NRO and we hold the receipt, give it
         * again so a sender that missed it can finish. */
        tdsx_receipt_t r;
        memset(&r, 0, sizeof r);
        if (tdsx_store_receipt_get(x->store, s->rec.id, &r) == 0 && tdsx_bytes_equal(r.nro, env)) {
            Tdsx__TransferReceipt tr = TDSX__TRANSFER_RECEIPT__INIT;
            Tdsx__Frame out = TDSX__FRAME__INIT;
            tr.nrr.data = (uint8_t *)r.nrr.p;
            tr.nrr.len = r.nrr.n;
            out.stream_id = s->id;
            out.body_case = TDSX__FRAME__BODY_TRANSFER_RECEIPT;
            out.transfer_receipt = &tr;
            send_quietly(c, &out);
            tdsx_receipt_clear(&r);
            s->rec.started_at = 0;
            stream_finish(s);
            return 0;
        }
        tdsx_receipt_clear(&r);
    }
    if (rc) {
        log_transfer(s, TDSX_LOG_WARN, "transfer.refused", rc);
        s->rec.started_at = 0;
        (void)send_abort(c, f->stream_id, rc, NULL);
        reply_result(s, rc, "aborted", NULL, tdsx_bytes(NULL, 0));
        stream_finish(s);
        return 0;
    }
    /* The receiver decides before accepting (SPEC §8); a refusal is a signed NRR. */
    tdsx_policy_decision_t d;
    if ((rc = decide(s, TDSX_DIR_RECEIVE, &d)) != 0) {
        log_decision(s, &d);
        s->refusal = 1;
        s->refusal_why = d.reason;
        s->commit_rc = rc;
        memset(s->got_sha, 0, sizeof s->got_sha);
        s->since_sync = 0;
        sign_nrr(s);
        return 0;
    }
    rc = tdsx_object_begin(x->store, s->rec.id, resume, resume ? s->rec.durable : 0, &s->w);
    if (rc == TDSX_E_STATE) {
        /* The part file lost bytes it was said to hold: start over. */
        rc = tdsx_object_begin(x->store, s->rec.id, 0, 0, &s->w);
        s->rec.durable = 0;
    }
    if (rc) {
        stream_fail(s, rc, 1, 0);
        return 0;
    }
    s->since_sync = tdsx_object_length(s->w);
    s->state = XS_RECV_DATA;
    if (resume)
        tdsx_log(TDSX_LOG_INFO, "transfer.resumed", TDSX_KV_S("peer", s->rec.peer),
                 TDSX_KV_S("dataset", s->dataset_id), TDSX_KV_I("offset", s->since_sync),
                 TDSX_KV_I("length", s->rec.length));
    else
        log_transfer(s, TDSX_LOG_INFO, "transfer.started", 0);
    Tdsx__TransferAccept acc = TDSX__TRANSFER_ACCEPT__INIT;
    Tdsx__Frame out = TDSX__FRAME__INIT;
    acc.offset = s->since_sync;
    s->granted = 0;
    acc.window = credit_due(s);
    out.stream_id = s->id;
    out.body_case = TDSX__FRAME__BODY_TRANSFER_ACCEPT;
    out.transfer_accept = &acc;
    return tdsx__conn_send(c, &out);
}

static int on_transfer_data(xstream_t *s, const Tdsx__TransferData *d)
{
    if (s->state != XS_RECV_DATA)
        return TDSX_E_PROTOCOL;
    if (d->chunk.len > s->granted)
        return TDSX_E_FLOW;
    if (d->offset != s->since_sync || d->chunk.len > s->rec.length - s->since_sync) {
        stream_fail(s, TDSX_E_INTEGRITY, 1, 0);
        return 0;
    }
    /* A payload said to be sealed starts as a sealed stream does: what a relay, which cannot
     * open it, can check beyond its length (SPEC §9). */
    if (s->sealed && s->since_sync < sizeof seal_magic) {
        size_t k = sizeof seal_magic - (size_t)s->since_sync;
        if (k > d->chunk.len)
            k = d->chunk.len;
        if (k > 0 && memcmp(d->chunk.data, seal_magic + s->since_sync, k) != 0) {
            stream_fail(s, TDSX_E_SEAL, 1, 0);
            return 0;
        }
    }
    int rc = tdsx_object_write(s->w, d->chunk.data, d->chunk.len);
    if (rc) {
        stream_fail(s, rc, 1, 1);
        return 0;
    }
    s->since_sync += d->chunk.len;
    s->granted -= d->chunk.len;
    s->xc->granted -= d->chunk.len;
    reply_progress(s, s->since_sync);
    /* Durable checkpoints for resuming large transfers. */
    if (s->since_sync - s->rec.durable >= s->node->cfg.sync_every) {
        uint64_t durable;
        if (tdsx_object_sync(s->w, &durable) == 0) {
            s->rec.durable = durable;
            save_state(s);
        }
    }
    /* Keep the sender's window open: top it up once half of it is used. */
    if (s->granted <= s->node->cfg.stream_window / 2 &&
        s->since_sync + s->granted < s->rec.length && (rc = grant(s)) != 0)
        return rc;
    return s->xc->starved ? feed_starved(s->xc) : 0;
}

static int on_transfer_end(xstream_t *s, const Tdsx__TransferEnd *e)
{
    if (s->state != XS_RECV_DATA)
        return TDSX_E_PROTOCOL;
    if (e->length != s->rec.length || e->sha256.len != 32 ||
        memcmp(e->sha256.data, s->rec.sha256, 32) != 0 || s->since_sync != s->rec.length) {
        /* What was sent is not what the NRO promised: an integrity failure, signed. */
        tdsx_object_abort(s->w, 0);
        s->w = NULL;
        s->commit_rc = TDSX_E_INTEGRITY;
        memset(s->got_sha, 0, sizeof s->got_sha);
        sign_nrr(s);
        return 0;
    }
    s->state = XS_RECV_COMMIT;
    /* Whether the ciphertext object is new: if it then fails to open, only a new one goes. */
    if (s->final_here) {
        char path[4096];
        s->cipher_existed =
            tdsx_store_object_path(X(s->node)->store, s->rec.sha256, path, sizeof path) == 0;
    }
    commit_enqueue(s);
    return 0;
}

/* ---- sender side of the reply ---------------------------------------------------------------- */

static int on_transfer_accept(xstream_t *s, const Tdsx__TransferAccept *a)
{
    if (s->state != XS_SEND_WAIT_ACCEPT)
        return TDSX_E_PROTOCOL;
    if (a->offset > s->rec.length)
        return TDSX_E_PROTO_FIELD;
    s->next_offset = a->offset;
    s->credit = a->window;
    s->state = XS_SEND_DATA;
    log_transfer(s, TDSX_LOG_INFO, a->offset ? "transfer.resumed" : "transfer.started", 0);
    send_more(s);
    return 0;
}

static int on_transfer_receipt(xstream_t *s, const Tdsx__TransferReceipt *tr)
{
    if (s->state != XS_SEND_WAIT_RECEIPT && s->state != XS_SEND_WAIT_ACCEPT &&
        s->state != XS_SEND_DATA)
        return TDSX_E_PROTOCOL;
    tdsx_exchange_t *x = X(s->node);
    tdsx_bytes_t env = tdsx_bytes(tr->nrr.data, tr->nrr.len);
    ProtobufCMessage *m = NULL;
    tdsx_verified_t info;
    int rc = tdsx_statement_open(x->verifier, TDSX_STATEMENT_NRR, env, x->arena, &m, &info);
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)m;
    if (rc == 0 && memcmp(info.key_id.b, s->xc->peer_key.b, 32) != 0)
        rc = TDSX_E_SIG_INVALID;
    if (rc == 0 && (nrr->nro_hash.len != 32 || memcmp(nrr->nro_hash.data, s->nro_hash, 32) != 0 ||
                    nrr->transfer_id.len != TDSX_TRANSFER_ID_LEN ||
                    memcmp(nrr->transfer_id.data, s->rec.id, TDSX_TRANSFER_ID_LEN) != 0))
        rc = TDSX_E_HASH_MISMATCH;
    if (rc) {
        tdsx_arena_reset(x->arena);
        stream_fail(s, rc, 1, 0);
        return 0;
    }
    int refused = nrr->status != TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED;
    int err = 0;
    char why[1024] = "";
    if (nrr->status == TDSX__NRR_STATUS__NRR_STATUS_INTEGRITY_FAILED) {
        err = TDSX_E_INTEGRITY;
    } else if (refused) {
        err = nrr->refusal_code ? tdsx_err_from_wire(nrr->refusal_code) : TDSX_E_POLICY_DENY;
        snprintf(why, sizeof why, "refused by %s under rule %s: %s", s->rec.peer, nrr->policy_rule,
                 nrr->refusal_reason);
    }
    tdsx_arena_reset(x->arena);
    finish_with_receipt(s, env, refused, err, why[0] ? why : NULL);
    return 0;
}

static int on_window_update(xstream_t *s, const Tdsx__WindowUpdate *wu)
{
    if (!s->sender)
        return TDSX_E_PROTOCOL;
    if (wu->credit > UINT64_MAX - s->credit)
        return TDSX_E_FLOW;
    s->credit += wu->credit;
    send_more(s);
    return 0;
}

static int on_transfer_abort(xstream_t *s, const Tdsx__TransferAbort *a)
{
    if (s->state == XS_LOGGING)
        return 0; /* the receipt is stored already: an abort racing its log entry is moot */
    int err = tdsx_err_from_wire(a->code);
    tdsx_log(TDSX_LOG_WARN, "transfer.peer_abort", TDSX_KV_S("peer", s->rec.peer),
             TDSX_KV_E("err", err), TDSX_KV_S("message", a->message));
    /* A refusal by the peer is final for this transfer id. */
    stream_fail(s, err, 0, 0);
    return 0;
}

/* ---- pull ---------------------------------------------------------------------------------- */

static int open_for_send(xstream_t *s, const char *path)
{
    uv_fs_t req;
    int fd = uv_fs_open(NULL, &req, path, O_RDONLY | O_CLOEXEC, 0, NULL);
    uv_fs_req_cleanup(&req);
    if (fd < 0)
        return fd == UV_ENOENT ? TDSX_E_NOTFOUND : TDSX_E_IO;
    s->fd = fd;
    return 0;
}

/* Starts sending a catalog dataset of ours on stream s (push or the answer to a pull). */
static int start_dataset(xstream_t *s, const char *dataset_id)
{
    tdsx_exchange_t *x = X(s->node);
    tdsx_dataset_t d;
    int rc = tdsx_store_catalog_get(x->store, s->node->self_id, dataset_id, &d);
    if (rc == 0 && d.withdrawn)
        rc = TDSX_E_NOTFOUND;
    char path[4096];
    if (rc == 0)
        rc = tdsx_store_object_path(x->store, d.sha256, path, sizeof path);
    if (rc == 0)
        rc = open_for_send(s, path);
    if (rc)
        return rc;
    memcpy(s->rec.sha256, d.sha256, 32);
    s->rec.length = d.size;
    snprintf(s->dataset_id, sizeof s->dataset_id, "%s", d.id);
    snprintf(s->rec.dataset_id, sizeof s->rec.dataset_id, "%s", d.id);
    snprintf(s->tags, sizeof s->tags, "%s", d.tags);
    if (s->sealed)
        return queue_prepare(s); /* sealed on the thread pool, then signed */
    sign_nro(s);
    return 0;
}

static int on_transfer_pull(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    tdsx_node_t *n = tdsx__conn_node(c);
    xstream_t *s = stream_new(n, c, f->stream_id, 1);
    if (!s)
        return TDSX_E_NOMEM;
    randombytes_buf(s->rec.id, TDSX_TRANSFER_ID_LEN);
    snprintf(s->rec.peer, sizeof s->rec.peer, "%s", tdsx__conn_peer_id(c));
    s->rec.state = TDSX_XFER_STARTED;
    int rc = start_dataset(s, f->transfer_pull->dataset_id);
    if (rc) {
        tdsx_log(TDSX_LOG_WARN, "transfer.pull_refused", TDSX_KV_S("peer", s->rec.peer),
                 TDSX_KV_S("dataset", f->transfer_pull->dataset_id), TDSX_KV_E("err", rc));
        (void)send_abort(c, f->stream_id, rc, rc == TDSX_E_NOTFOUND ? "no such dataset" : NULL);
        stream_finish(s);
    }
    return 0;
}

/* ---- catalog over the wire ------------------------------------------------------------------ */

static int dataset_to_proto(tdsx_arena_t *a, const tdsx_dataset_t *d, Tdsx__DatasetDescriptor **out)
{
    Tdsx__DatasetDescriptor *p = tdsx_arena_alloc(a, sizeof *p);
    Tdsx__Tags *t = tdsx_arena_alloc(a, sizeof *t);
    tdsx_dataset_t *copy = tdsx_arena_alloc(a, sizeof *copy);
    char *cat = tdsx_arena_alloc(a, 256);
    if (!p || !t || !copy || !cat)
        return TDSX_E_NOMEM;
    *copy = *d;
    tdsx__dataset_descriptor__init(p);
    tdsx__tags__init(t);
    p->id = copy->id;
    p->owner = copy->owner;
    p->title = copy->title;
    p->description = copy->description;
    p->media_type = copy->media_type;
    p->size = copy->size;
    p->sha256.data = copy->sha256;
    p->sha256.len = 32;
    if (copy->tags[0] && tags_to_proto(copy->tags, t, cat, 256) == 0)
        p->tags = t;
    *out = p;
    return 0;
}

typedef struct {
    tdsx_arena_t *arena;
    Tdsx__DatasetDescriptor **items;
    size_t n;
} collect_t;

static int collect_dataset(void *ud, const tdsx_dataset_t *d)
{
    collect_t *c = ud;
    return dataset_to_proto(c->arena, d, &c->items[c->n++]);
}

static int list_catalog(tdsx_exchange_t *x, const char *text, const char *token, unsigned size,
                        tdsx_arena_t *a, Tdsx__CatalogListResponse *out, char *next,
                        size_t next_size)
{
    if (size == 0 || size > 100)
        size = 100;
    collect_t c = {a, tdsx_arena_alloc(a, size * sizeof(Tdsx__DatasetDescriptor *)), 0};
    if (!c.items)
        return TDSX_E_NOMEM;
    int rc =
        tdsx_store_catalog_list(x->store, NULL, text && *text ? text : NULL, token ? token : "",
                                size, collect_dataset, &c, next, next_size);
    if (rc)
        return rc;
    out->datasets = c.items;
    out->n_datasets = c.n;
    out->next_page_token = next;
    return 0;
}

static int on_catalog_query(tdsx_conn_t *c, const Tdsx__Frame *f, tdsx_exchange_t *x)
{
    const Tdsx__CatalogQuery *q = f->catalog_query;
    Tdsx__CatalogListResponse page = TDSX__CATALOG_LIST_RESPONSE__INIT;
    Tdsx__CatalogResult res = TDSX__CATALOG_RESULT__INIT;
    Tdsx__Frame out = TDSX__FRAME__INIT;
    char next[600];
    tdsx_arena_t *a = NULL;
    int rc = tdsx_arena_new(1u << 22, &a);
    if (rc == 0)
        rc = list_catalog(x, q->filter ? q->filter->text : NULL, q->page_token, q->page_size, a,
                          &page, next, sizeof next);
    if (rc == 0) {
        res.datasets = page.datasets;
        res.n_datasets = page.n_datasets;
        res.next_page_token = page.next_page_token;
        out.stream_id = f->stream_id;
        out.body_case = TDSX__FRAME__BODY_CATALOG_RESULT;
        out.catalog_result = &res;
        rc = tdsx__conn_send(c, &out);
    } else {
        rc = send_abort(c, f->stream_id, rc, NULL);
    }
    tdsx_arena_free(a);
    return rc;
}

/* A peer's catalog answer to a local `tdsx catalog list --from`: forwarded to the client. */
static int on_catalog_result(tdsx_conn_t *c, xconn_t *xc, const Tdsx__Frame *f)
{
    (void)c;
    xstream_t *s = stream_find(xc, f->stream_id);
    if (!s || s->state != XS_QUERY_WAIT)
        return TDSX_E_STREAM;
    tdsx_ctl_client_t *cl = tdsx__control_find(s->node, s->client);
    if (cl) {
        Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
        Tdsx__CatalogListResponse page = TDSX__CATALOG_LIST_RESPONSE__INIT;
        page.datasets = f->catalog_result->datasets;
        page.n_datasets = f->catalog_result->n_datasets;
        page.next_page_token = f->catalog_result->next_page_token;
        resp.id = s->req_id;
        resp.body_case = TDSX__LOCAL_RESPONSE__BODY_CATALOG;
        resp.catalog = &page;
        tdsx__control_reply(cl, &resp);
    }
    s->client = 0;
    stream_finish(s);
    return 0;
}

/* ---- hello ---------------------------------------------------------------------------------- */

static int on_hello(tdsx_conn_t *c, xconn_t *xc, const Tdsx__Hello *h, tdsx_exchange_t *x)
{
    tdsx_node_t *n = x->node;
    if (xc->hello)
        return TDSX_E_PROTOCOL;
    if (h->n_chain > 4)
        return TDSX_E_CERT_CHAIN;
    tdsx_bytes_t extra[4];
    for (size_t i = 0; i < h->n_chain; i++)
        extra[i] = tdsx_bytes(h->chain[i].data, h->chain[i].len);
    tdsx_identity_t id;
    tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, 0, 0};
    int rc = h->sign_cert.len ? tdsx_cert_verify_der(n->trust,
                                                     tdsx_bytes(h->sign_cert.data, h->sign_cert.len),
                                                     extra, h->n_chain, &o, &id)
                              : TDSX_E_CERT_PARSE;
    char sid[TDSX_ID_SIZE];
    if (rc == 0) {
        tdsx_identity_id(&id, sid, sizeof sid);
        const tdsx_member_t *m = tdsx_registry_find(n->registry, sid);
        if (strcmp(sid, tdsx__conn_peer_id(c)) != 0)
            rc = TDSX_E_PEER_CERT;
        else if (!m || memcmp(m->sign_fp, id.fingerprint, 32) != 0)
            rc = TDSX_E_CERT_FINGERPRINT;
    }
    if (rc == 0)
        rc = tdsx_verifier_add_key(x->verifier, id.pubkey);
    if (rc == 0)
        rc = tdsx_key_id(id.pubkey, &xc->peer_key);
    if (rc == 0) {
        xc->peer_cert = tdsx_malloc(h->sign_cert.len);
        if (!xc->peer_cert)
            return TDSX_E_NOMEM;
        memcpy(xc->peer_cert, h->sign_cert.data, h->sign_cert.len);
        xc->peer_cert_len = h->sign_cert.len;
        xc->hello = 1;
        int prc =
            tdsx_store_peer_cert_put(x->store, sid, tdsx_bytes(xc->peer_cert, xc->peer_cert_len));
        if (prc)
            tdsx_log(TDSX_LOG_ERROR, "store.peer_cert_failed", TDSX_KV_S("peer", sid),
                     TDSX_KV_E("err", prc));
    }
    return rc;
}

void tdsx__exchange_conn_open(tdsx_conn_t *c)
{
    tdsx_exchange_t *x = X(tdsx__conn_node(c));
    xconn_t *xc = tdsx_calloc(1, sizeof *xc);
    if (!xc) {
        tdsx__conn_fail(c, TDSX_E_NOMEM, "exchange state");
        return;
    }
    xc->conn = c;
    *tdsx__conn_xslot(c) = xc;
    Tdsx__Hello h = TDSX__HELLO__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    ProtobufCBinaryData chain[4];
    h.sign_cert.data = x->own_cert;
    h.sign_cert.len = x->own_cert_len;
    for (size_t i = 0; i < x->n_chain; i++) {
        chain[i].data = (uint8_t *)x->chain_certs[i].p;
        chain[i].len = x->chain_certs[i].n;
    }
    h.chain = chain;
    h.n_chain = x->n_chain;
    h.software = "tdsx/" TDSX_VERSION;
    f.body_case = TDSX__FRAME__BODY_HELLO;
    f.hello = &h;
    int rc = tdsx__conn_send(c, &f);
    /* TDSX_E_CLOSED: the peer's close_notify came with its last handshake bytes; the input
     * still to be processed says why, so the connection is not failed here. */
    if (rc && rc != TDSX_E_CLOSED)
        tdsx__conn_fail(c, rc, "hello");
}

void tdsx__exchange_conn_closed(tdsx_conn_t *c, int err)
{
    xconn_t *xc = xconn_of(c);
    if (!xc)
        return;
    for (size_t i = 0; i < xc->cap; i++) {
        xstream_t *s = xc->slots[i];
        if (!s || s == (xstream_t *)xc)
            continue;
        int e = err ? err : TDSX_E_CLOSED;
        if (s->state == XS_SEND_WAIT_RECEIPT || s->state == XS_RECV_COMMIT ||
            s->state == XS_RECV_SIGN || s->state == XS_LOGGING) {
            /* Past the data phase the work continues without the connection: the receiver
             * still commits and signs, the sender waits for the NRD deadline. */
            stream_remove(xc, s);
            tdsx__conn_stream_count(c, -1);
            s->conn = NULL;
            s->xc = NULL;
            continue;
        }
        stream_fail(s, e, 0, 1);
    }
    tdsx_free(xc->slots);
    tdsx_free(xc->peer_cert);
    tdsx_free(xc);
    *tdsx__conn_xslot(c) = NULL;
}

void tdsx__exchange_writable(tdsx_conn_t *c)
{
    xconn_t *xc = xconn_of(c);
    if (!xc)
        return;
    for (size_t i = 0; i < xc->cap && tdsx__conn_writable(c); i++) {
        xstream_t *s = xc->slots[i];
        if (s && s != (xstream_t *)xc && s->state == XS_SEND_DATA)
            send_more(s);
    }
}

/* A peer may keep at most max_streams streams open on a connection (each holds a part file
 * and state): one more is refused on its own stream, the connection goes on. */
static int refuse_stream(tdsx_conn_t *c, uint32_t stream)
{
    tdsx_log(TDSX_LOG_WARN, "stream.refused", TDSX_KV_S("peer", tdsx__conn_peer_id(c)),
             TDSX_KV_I("stream", stream), TDSX_KV_E("err", TDSX_E_TOOBIG),
             TDSX_KV_S("reason", "max_streams reached"));
    return send_abort(c, stream, TDSX_E_TOOBIG, "too many open streams on this connection");
}

int tdsx__exchange_frame(tdsx_conn_t *c, const Tdsx__Frame *f)
{
    tdsx_exchange_t *x = X(tdsx__conn_node(c));
    xconn_t *xc = xconn_of(c);
    if (!xc)
        return TDSX_E_STATE;
    if (f->body_case == TDSX__FRAME__BODY_HELLO)
        return on_hello(c, xc, f->hello, x);
    if (!xc->hello)
        return TDSX_E_PROTOCOL; /* nothing before the peer said who signs for it */
    if (f->stream_id == 0)
        return TDSX_E_STREAM;
    xstream_t *s = stream_find(xc, f->stream_id);
    switch (f->body_case) {
    case TDSX__FRAME__BODY_TRANSFER_START:
        /* A new stream from the peer, or the owner answering our pull. */
        if (s && s->state != XS_PULL_WAIT)
            return TDSX_E_STREAM;
        if (!s && xc->count >= x->node->cfg.max_streams)
            return refuse_stream(c, f->stream_id);
        return on_transfer_start(c, xc, f, s);
    case TDSX__FRAME__BODY_TRANSFER_PULL:
        if (s)
            return TDSX_E_STREAM;
        if (xc->count >= x->node->cfg.max_streams)
            return refuse_stream(c, f->stream_id);
        return on_transfer_pull(c, f);
    case TDSX__FRAME__BODY_CATALOG_QUERY: return on_catalog_query(c, f, x);
    case TDSX__FRAME__BODY_CATALOG_RESULT: return on_catalog_result(c, xc, f);
    case TDSX__FRAME__BODY_AGREEMENT_PROPOSE:
    case TDSX__FRAME__BODY_AGREEMENT_ACCEPT:
    case TDSX__FRAME__BODY_AGREEMENT_REFUSE:
    case TDSX__FRAME__BODY_AGREEMENT_TERMINATE:
    case TDSX__FRAME__BODY_AGREEMENT_QUERY:
    case TDSX__FRAME__BODY_AGREEMENT_RESULT:
        /* Agreements (agree.c) keep their own streams, never in the transfer table. */
        return tdsx__agree_frame(x->agree, c, f, &xc->peer_key);
    case TDSX__FRAME__BODY_CHECKPOINT_SUBMIT:
    case TDSX__FRAME__BODY_CHECKPOINT_COSIGNED:
        /* The transparency log's witness protocol (log.c, SPEC §11): streams of its own. */
        return tdsx__log_frame(tdsx__conn_node(c), c, f,
                               tdsx_bytes(xc->peer_cert, xc->peer_cert_len));
    case TDSX__FRAME__BODY_REPORT_SUBMIT:
    case TDSX__FRAME__BODY_REPORT_ACK:
        /* Trust-status reports (report.c, SPEC §12): streams of their own. */
        return tdsx__report_frame(tdsx__conn_node(c), c, f,
                                  tdsx_bytes(xc->peer_cert, xc->peer_cert_len));
    default: break;
    }
    if (!s) {
        /* Late frames for a stream we already finished are ignored, not fatal. */
        return f->body_case == TDSX__FRAME__BODY_TRANSFER_DATA ||
                       f->body_case == TDSX__FRAME__BODY_TRANSFER_ABORT ||
                       f->body_case == TDSX__FRAME__BODY_WINDOW_UPDATE
                   ? 0
                   : TDSX_E_STREAM;
    }
    switch (f->body_case) {
    case TDSX__FRAME__BODY_TRANSFER_ACCEPT: return on_transfer_accept(s, f->transfer_accept);
    case TDSX__FRAME__BODY_TRANSFER_DATA: return on_transfer_data(s, f->transfer_data);
    case TDSX__FRAME__BODY_TRANSFER_END: return on_transfer_end(s, f->transfer_end);
    case TDSX__FRAME__BODY_TRANSFER_RECEIPT: return on_transfer_receipt(s, f->transfer_receipt);
    case TDSX__FRAME__BODY_TRANSFER_ABORT: return on_transfer_abort(s, f->transfer_abort);
    case TDSX__FRAME__BODY_WINDOW_UPDATE: return on_window_update(s, f->window_update);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

/* ---- NRD: a receipt that never came --------------------------------------------------------- */

static void on_nrd_signed(void *ud, int status, tdsx_bytes_t env)
{
    xstream_t *s = ud;
    s->busy--;
    if (status == 0) {
        keep_file(s, "nrd", ".env", env);
        s->rec.state = TDSX_XFER_NRD;
        s->rec.error = TDSX_E_TIMEOUT;
        s->rec.finished_at = tdsx_now();
        save_state(s);
        log_transfer(s, TDSX_LOG_WARN, "transfer.nrd", TDSX_E_TIMEOUT);
        /* Logged like a receipt (log.c, SPEC §11): the client hears once it is durable. */
        tdsx_buf_t b;
        tdsx_buf_init(&b, 2 * TDSX_ENVELOPE_MAX);
        if (tdsx_buf_append(&b, env.p, env.n) == 0 &&
            log_then_reply(s, TDSX_LOG_ENTRY_NRD, env, TDSX_E_TIMEOUT, "nrd",
                           "no receipt from the receiver: NRD signed", &b) == 0)
            return;
        tdsx_buf_free(&b);
    }
    reply_result(s, TDSX_E_TIMEOUT, "nrd", "no receipt from the receiver: NRD signed", env);
    s->state = XS_SEND_WAIT_RECEIPT;
    stream_finish(s);
}

static void sign_nrd(xstream_t *s, const char *reason)
{
    Tdsx__Nrd nrd = TDSX__NRD__INIT;
    nrd.transfer_id.data = s->rec.id;
    nrd.transfer_id.len = TDSX_TRANSFER_ID_LEN;
    nrd.nro_hash.data = s->nro_hash;
    nrd.nro_hash.len = 32;
    nrd.sender = s->node->self_id;
    nrd.receiver = s->rec.peer;
    nrd.time = tdsx_now();
    nrd.reason = (char *)reason;
    /* No frame handler accepts a stream in this state, and the tick does not time it. */
    s->state = XS_SEND_PREPARE;
    if (tdsx_statement_submit(X(s->node)->signer, TDSX_STATEMENT_NRD, &nrd.base, on_nrd_signed,
                              s) == 0) {
        s->busy++;
        s->end_sent_ms = UINT64_MAX; /* not again */
    }
}

/* Interrupted transfers are kept to be resumed, but not forever: a part file (receiver) or a
 * kept NRO (sender) untouched for part_ttl is deleted and its transfer recorded as aborted,
 * so a peer that starts transfers and vanishes cannot fill the disk. */
static void sweep_stale(tdsx_exchange_t *x)
{
    tdsx_node_t *n = x->node;
    tdsx_buf_t dir;
    tdsx_buf_init(&dir, 8192);
    if (tdsx_buf_printf(&dir, "%s/tmp", n->cfg.data_dir) != 0) {
        tdsx_buf_free(&dir);
        return;
    }
    DIR *d = opendir((const char *)dir.p);
    if (!d) {
        tdsx_buf_free(&dir);
        return;
    }
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        /* <32 hex>.part (receiver), .nro and .sealed (sender). */
        size_t len = strlen(e->d_name);
        const char *ext = len > 32 ? e->d_name + 32 : "";
        uint8_t tid[TDSX_TRANSFER_ID_LEN];
        char hex[TID_HEX];
        if (strcmp(ext, ".part") != 0 && strcmp(ext, ".nro") != 0 && strcmp(ext, ".sealed") != 0)
            continue;
        memcpy(hex, e->d_name, 32);
        hex[32] = '\0';
        if (tdsx_hex_decode(tid, sizeof tid, hex) != 0)
            continue;
        int live = 0;
        for (xstream_t *s = x->streams; s && !live; s = s->all_next)
            live = memcmp(s->rec.id, tid, sizeof tid) == 0;
        struct stat st;
        tdsx_buf_t path;
        tdsx_buf_init(&path, 8192);
        if (live || tdsx_buf_printf(&path, "%s/%s", (const char *)dir.p, e->d_name) != 0 ||
            stat((const char *)path.p, &st) != 0 ||
            (uint64_t)(now - st.st_mtime) * 1000u < n->cfg.part_ttl_ms) {
            tdsx_buf_free(&path);
            continue;
        }
        unlink((const char *)path.p);
        tdsx_buf_free(&path);
        tdsx_transfer_t rec;
        if (tdsx_store_transfer_get(x->store, tid, &rec) == 0 && rec.state == TDSX_XFER_STARTED) {
            rec.state = TDSX_XFER_ABORTED;
            rec.error = TDSX_E_TIMEOUT;
            rec.finished_at = tdsx_now();
            if (tdsx_store_transfer_update(x->store, &rec) != 0)
                tdsx_log(TDSX_LOG_ERROR, "store.update_failed", TDSX_KV_S("transfer", hex));
        }
        tdsx_log(TDSX_LOG_INFO, "transfer.swept", TDSX_KV_S("transfer", hex),
                 TDSX_KV_S("file", e->d_name), TDSX_KV_S("reason", "not resumed within part_ttl"));
    }
    closedir(d);
    tdsx_buf_free(&dir);
}

static void on_tick(uv_timer_t *t)
{
    tdsx_exchange_t *x = t->data;
    uint64_t now = uv_now(x->node->loop);
    /* Sweep twice per part_ttl, at most once an hour. */
    uint64_t period =
        x->node->cfg.part_ttl_ms / 2 < 3600000 ? x->node->cfg.part_ttl_ms / 2 : 3600000;
    if (now - x->last_sweep_ms >= period) {
        x->last_sweep_ms = now;
        sweep_stale(x);
    }
    int lapsed = 0;
    for (xstream_t *s = x->streams, *next; s; s = next) {
        next = s->all_next;
        if (s->sender && s->state == XS_SEND_WAIT_RECEIPT && s->end_sent_ms != UINT64_MAX &&
            now - s->end_sent_ms >= s->node->cfg.receipt_timeout_ms)
            sign_nrd(s, s->conn ? "no receipt before the deadline" : "connection lost");
        if (s->agreement_until && tdsx_now() > s->agreement_until &&
            (s->state == XS_SEND_WAIT_ACCEPT || s->state == XS_SEND_DATA ||
             s->state == XS_RECV_DATA))
            lapsed = 1;
    }
    /* An agreement expired under a running transfer: decide again (agree.c, SPEC §7). */
    if (lapsed)
        tdsx__exchange_policy_changed(x->node);
    tdsx__agree_tick(x->agree);
}

int tdsx__exchange_holding(const tdsx_node_t *n)
{
    const tdsx_exchange_t *x = n ? n->x : NULL;
    return x && tdsx_store_batch_dirty(x->store);
}

void tdsx__exchange_commit(tdsx_node_t *n)
{
    tdsx_exchange_t *x = n->x;
    if (!x || !tdsx_store_batch_dirty(x->store))
        return;
    if (x->fault_commit_delay_ms)
        uv_sleep(x->fault_commit_delay_ms);
    int rc = tdsx_store_batch_commit(x->store);
    if (rc) {
        /* Writes we may have built on are gone; nothing that announced them has left. Stopping
         * here is what a crash would do, and the next start recovers from what is durable. */
        tdsx_log(TDSX_LOG_ERROR, "store.commit_failed", TDSX_KV_E("err", rc),
                 TDSX_KV_S("action", "stopping: held answers are dropped"));
        _exit(3);
    }
    tdsx__conn_release(n);
    tdsx__control_release(n);
}

/* After the I/O callbacks of a loop turn: one signature for every statement queued in it,
 * then one commit for every write, then the answers leave. */
static void on_check(uv_check_t *h)
{
    tdsx_exchange_t *x = h->data;
    if (tdsx_signer_pending(x->signer) > 0 && tdsx_signer_flush(x->signer) != 0)
        tdsx_log(TDSX_LOG_ERROR, "signer.flush_failed",
                 TDSX_KV_I("pending", tdsx_signer_pending(x->signer)));
    commit_start(x);
    tdsx__exchange_commit(x->node);
}

/* Writes made by timers and close callbacks are committed before the loop waits for I/O. */
static void on_prepare(uv_prepare_t *h)
{
    tdsx_exchange_t *x = h->data;
    tdsx__exchange_commit(x->node);
}

void tdsx__exchange_policy_changed(tdsx_node_t *n)
{
    tdsx_exchange_t *x = X(n);
    for (xstream_t *s = x->streams, *next; s; s = next) {
        next = s->all_next;
        int sending = s->state == XS_SEND_WAIT_ACCEPT || s->state == XS_SEND_DATA;
        if (!sending && s->state != XS_RECV_DATA)
            continue;
        tdsx_policy_decision_t d;
        if (decide(s, sending ? TDSX_DIR_SEND : TDSX_DIR_RECEIVE, &d) == 0)
            continue;
        log_decision(s, &d);
        /* A policy that now refuses stops the transfer at both ends; nothing partial stays. */
        stream_fail(s, d.code, 1, 0);
    }
}

/* ---- local requests -------------------------------------------------------------------------- */

static tdsx_conn_t *peer_conn(tdsx_node_t *n, const char *id, int *err)
{
    tdsx_conn_t *c = tdsx__node_find_conn(n, id);
    if (!c) {
        *err = TDSX_E_NOTFOUND;
        return NULL;
    }
    xconn_t *xc = xconn_of(c);
    if (!xc || !xc->hello) {
        *err = TDSX_E_AGAIN;
        return NULL;
    }
    return c;
}

/* The sealed fields of an NRO of ours kept for resuming (SPEC §9): what decide() and the
 * choice of the file to send need. Decoded from its envelope, which verifies with our key. */
static void restore_nro(xstream_t *s)
{
    tdsx_exchange_t *x = X(s->node);
    ProtobufCMessage *m = NULL;
    if (tdsx_statement_open(x->verifier, TDSX_STATEMENT_NRO, tdsx_bytes(s->nro, s->nro_len),
                            x->arena, &m, NULL) == 0) {
        const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
        /* The agreement the kept NRO names (agree.c): counted and re-checked as on the first
         * run. */
        if (nro->agreement_hash.len == TDSX_SHA256_LEN) {
            s->has_agreement = 1;
            memcpy(s->agreement, nro->agreement_hash.data, TDSX_SHA256_LEN);
        }
        tags_from_proto(nro->tags, s->tags, sizeof s->tags);
        s->sealed = nro->sealed;
        snprintf(s->final_recipient, sizeof s->final_recipient, "%s", nro->final_recipient);
        s->has_plain_sha = nro->plaintext_sha256.len == TDSX_SHA256_LEN;
        if (s->has_plain_sha)
            memcpy(s->plain_sha, nro->plaintext_sha256.data, TDSX_SHA256_LEN);
        s->has_upstream = s->relay = nro->upstream_receipt_hash.len == TDSX_SHA256_LEN;
        if (s->has_upstream)
            memcpy(s->upstream_nrr, nro->upstream_receipt_hash.data, TDSX_SHA256_LEN);
        s->has_seal_tid = nro->seal_transfer_id.len == TDSX_SEAL_TRANSFER_ID_LEN;
        if (s->has_seal_tid)
            memcpy(s->seal_tid, nro->seal_transfer_id.data, sizeof s->seal_tid);
    }
    tdsx_arena_reset(x->arena);
}

/* Opens what a resumed send sends again: a relay's stored object, the sealed stream made on
 * the first run, the file given again, or the catalog dataset. */
static int reopen_for_resume(xstream_t *s, const char *path, const tdsx_transfer_t *old)
{
    tdsx_exchange_t *x = X(s->node);
    char obj[4096];
    if (s->has_upstream) {
        int rc = tdsx_store_object_path(x->store, old->sha256, obj, sizeof obj);
        return rc ? rc : open_for_send(s, obj);
    }
    if (s->sealed) {
        tdsx_buf_t p;
        int rc = sealed_tmp_path(s, &p);
        if (rc == 0)
            rc = open_for_send(s, (const char *)p.p);
        tdsx_buf_free(&p);
        s->seal_tmp = rc == 0;
        return rc;
    }
    if (*path)
        return open_for_send(s, path);
    tdsx_dataset_t d;
    int rc = tdsx_store_catalog_get(x->store, s->node->self_id, old->dataset_id, &d);
    if (rc == 0)
        rc = tdsx_store_object_path(x->store, d.sha256, obj, sizeof obj);
    return rc ? rc : open_for_send(s, obj);
}

static int resume_send(xstream_t *s, const Tdsx__SendRequest *r)
{
    tdsx_node_t *n = s->node;
    memcpy(s->rec.id, r->resume.data, TDSX_TRANSFER_ID_LEN);
    tdsx_transfer_t old;
    char hex[TID_HEX];
    tid_hex(s->rec.id, hex);
    uint8_t *nro = NULL;
    size_t len = 0;
    int rc = tdsx_store_transfer_get(X(n)->store, s->rec.id, &old);
    if (rc == 0 && (old.inbound || strcmp(old.peer, r->to) != 0))
        rc = TDSX_E_STATE;
    if (rc == 0)
        rc = tdsx_store_nro_get(X(n)->store, s->rec.id, &nro, &len);
    if (rc)
        return rc;
    s->nro = nro;
    s->nro_len = len;
    restore_nro(s);
    if ((rc = reopen_for_resume(s, r->path, &old)) != 0)
        return rc;
    s->rec = old;
    tdsx_hash_t h;
    if (tdsx_envelope_hash(tdsx_bytes(nro, len), &h) == 0)
        memcpy(s->nro_hash, h.b, 32);
    snprintf(s->dataset_id, sizeof s->dataset_id, "%s", old.dataset_id);
    send_start(s);
    return 0;
}

/* `tdsx send --seal [--final NODE]`: the payload is sealed to the final recipient's enc key
 * from the registry (SPEC §9). An unknown node or an unusable key is refused before any work. */
static int seal_for(xstream_t *s, const char *final)
{
    const tdsx_member_t *m = tdsx_registry_find(s->node->registry, final);
    if (!m)
        return TDSX_E_PEER_UNKNOWN;
    if (sodium_is_zero(m->enc_pub, sizeof m->enc_pub))
        return TDSX_E_KEY; /* other low-order points are refused by the sealer */
    s->sealed = 1;
    snprintf(s->final_recipient, sizeof s->final_recipient, "%s", m->id);
    memcpy(s->seal_pk, m->enc_pub, sizeof s->seal_pk);
    return 0;
}

/* `tdsx send --relay TRANSFER_ID` (SPEC §9): forwards the stored object of a transfer we
 * received and accepted, under a new NRO that keeps what the origin said about the payload
 * (dataset, tags, sealed, plaintext hash, final recipient) and names the upstream receipt. */
static int start_relay(xstream_t *s, const uint8_t up[TDSX_TRANSFER_ID_LEN])
{
    tdsx_node_t *n = s->node;
    tdsx_exchange_t *x = X(n);
    tdsx_transfer_t t;
    tdsx_receipt_t r;
    tdsx_identity_t id;
    uint8_t *der = NULL;
    size_t der_len = 0;
    X509 *cert = NULL;
    ProtobufCMessage *m = NULL;
    char path[4096];
    memset(&r, 0, sizeof r);
    int rc = tdsx_store_transfer_get(x->store, up, &t);
    if (rc == 0 && (!t.inbound || t.state != TDSX_XFER_RECEIPTED))
        rc = TDSX_E_STATE; /* only what we received and accepted */
    if (rc == 0)
        rc = tdsx_store_receipt_get(x->store, up, &r);
    /* The upstream NRO is decoded only once it verifies again, under the sender's sign
     * certificate as the receipt (or, when the connection was gone, the peer table) holds it. */
    tdsx_bytes_t cb = r.sender_cert;
    if (rc == 0 && cb.n == 0 &&
        (rc = tdsx_store_peer_cert_get(x->store, r.sender, &der, &der_len)) == 0)
        cb = tdsx_bytes(der, der_len);
    if (rc == 0) {
        const uint8_t *p = cb.p;
        cert = d2i_X509(NULL, &p, (long)cb.n);
        if (!cert || p != cb.p + cb.n)
            rc = TDSX_E_CERT_PARSE;
    }
    if (rc == 0) {
        tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, 0, 0};
        rc = tdsx_cert_verify(n->trust, cert, NULL, &o, &id);
    }
    if (rc == 0) {
        char sid[TDSX_ID_SIZE];
        tdsx_identity_id(&id, sid, sizeof sid);
        if (strcmp(sid, r.sender) != 0)
            rc = TDSX_E_PEER_CERT;
    }
    if (rc == 0)
        rc = tdsx_verifier_add_key(x->verifier, id.pubkey);
    if (rc == 0)
        rc = tdsx_statement_open(x->verifier, TDSX_STATEMENT_NRO, r.nro, x->arena, &m, NULL);
    if (rc == 0) {
        const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
        if (nro->payload_sha256.len != TDSX_SHA256_LEN ||
            memcmp(nro->payload_sha256.data, t.sha256, TDSX_SHA256_LEN) != 0 ||
            nro->payload_length != t.length)
            rc = TDSX_E_HASH_MISMATCH;
        snprintf(s->dataset_id, sizeof s->dataset_id, "%s", nro->dataset_id);
        snprintf(s->rec.dataset_id, sizeof s->rec.dataset_id, "%s", nro->dataset_id);
        tags_from_proto(nro->tags, s->tags, sizeof s->tags);
        s->sealed = nro->sealed;
        if (s->sealed)
            snprintf(s->final_recipient, sizeof s->final_recipient, "%s",
                     *nro->final_recipient ? nro->final_recipient : n->self_id);
        s->has_plain_sha = nro->plaintext_sha256.len == TDSX_SHA256_LEN;
        if (s->has_plain_sha)
            memcpy(s->plain_sha, nro->plaintext_sha256.data, TDSX_SHA256_LEN);
        /* decide() checks this agreement grants the relay (SPEC §9). */
        s->up_known = 1;
        snprintf(s->up_origin, sizeof s->up_origin, "%s", r.sender);
        s->up_has_agreement = nro->agreement_hash.len == TDSX_SHA256_LEN;
        if (s->up_has_agreement)
            memcpy(s->up_agreement, nro->agreement_hash.data, TDSX_SHA256_LEN);
        /* The stream stays bound to the transfer it was sealed in: the origin's. */
        s->has_seal_tid = s->sealed;
        if (nro->seal_transfer_id.len == TDSX_SEAL_TRANSFER_ID_LEN)
            memcpy(s->seal_tid, nro->seal_transfer_id.data, sizeof s->seal_tid);
        else
            memcpy(s->seal_tid, up, sizeof s->seal_tid);
    }
    tdsx_arena_reset(x->arena);
    /* Whether the upstream agreement allows relaying to this receiver is decide()'s. */
    tdsx_hash_t h;
    if (rc == 0 && (rc = tdsx_envelope_hash(r.nrr, &h)) == 0) {
        memcpy(s->upstream_nrr, h.b, TDSX_SHA256_LEN);
        s->has_upstream = s->relay = 1;
    }
    if (rc == 0)
        rc = tdsx_store_object_path(x->store, t.sha256, path, sizeof path);
    if (rc == 0)
        rc = open_for_send(s, path);
    X509_free(cert);
    tdsx_free(der);
    tdsx_receipt_clear(&r);
    if (rc)
        return rc;
    memcpy(s->rec.sha256, t.sha256, TDSX_SHA256_LEN);
    s->rec.length = t.length;
    sign_nro(s);
    return 0;
}

static int local_send(tdsx_node_t *n, tdsx_ctl_client_t *cl, uint64_t req_id,
                      const Tdsx__SendRequest *r)
{
    int rc = 0;
    tdsx_conn_t *c = peer_conn(n, r->to, &rc);
    if (!c)
        return rc;
    int relay = r->relay.len != 0;
    if (relay && (r->relay.len != TDSX_TRANSFER_ID_LEN || *r->path || *r->dataset_id || *r->tags ||
                  r->seal || *r->final_recipient || r->resume.len))
        return TDSX_E_INVAL; /* a relay sends exactly what came, as it came */
    if (!relay && !*r->path && !*r->dataset_id)
        return TDSX_E_INVAL;
    if (*r->path && r->path[0] != '/')
        return TDSX_E_INVAL;
    if (*r->final_recipient && !r->seal)
        return TDSX_E_INVAL;
    xstream_t *s = stream_new(n, c, tdsx__conn_new_stream(c), 1);
    if (!s)
        return TDSX_E_NOMEM;
    s->client = tdsx__control_serial(cl);
    s->req_id = req_id;
    s->progress = r->progress;
    snprintf(s->rec.peer, sizeof s->rec.peer, "%s", r->to);
    s->rec.state = TDSX_XFER_STARTED;
    s->state = XS_SEND_PREPARE;
    if (r->resume.len) {
        /* Same NRO, same transfer id: the receiver tells us where to go on from. */
        rc = r->resume.len == TDSX_TRANSFER_ID_LEN ? resume_send(s, r) : TDSX_E_INVAL;
        if (rc) {
            stream_finish(s);
            return rc;
        }
        return 1;
    }
    randombytes_buf(s->rec.id, TDSX_TRANSFER_ID_LEN);
    if (relay) {
        rc = start_relay(s, r->relay.data);
        if (rc) {
            stream_finish(s);
            return rc;
        }
        return 1;
    }
    if (r->seal && (rc = seal_for(s, *r->final_recipient ? r->final_recipient : r->to)) != 0) {
        stream_finish(s);
        return rc;
    }
    if (*r->path) {
        snprintf(s->dataset_id, sizeof s->dataset_id, "%s", r->dataset_id);
        snprintf(s->rec.dataset_id, sizeof s->rec.dataset_id, "%s", r->dataset_id);
        snprintf(s->tags, sizeof s->tags, "%s", r->tags);
        if (s->tags[0]) {
            tdsx_tags_t t;
            tdsx_tags_error_t te;
            if ((rc = tdsx_tags_parse(tdsx_bytes(s->tags, strlen(s->tags)), &t, &te)) != 0) {
                stream_finish(s);
                return rc;
            }
        }
        if ((rc = open_for_send(s, r->path)) != 0 || (rc = queue_prepare(s)) != 0) {
            stream_finish(s);
            return rc;
        }
        return 1;
    }
    rc = start_dataset(s, r->dataset_id);
    if (rc) {
        stream_finish(s);
        return rc;
    }
    return 1;
}

/* Opens a stream to `peer` for a local request that the peer answers on it later. */
static xstream_t *open_request(tdsx_node_t *n, tdsx_ctl_client_t *cl, uint64_t req_id,
                               const char *peer, xs_state_t state, int *rc)
{
    tdsx_conn_t *c = peer_conn(n, peer, rc);
    if (!c)
        return NULL;
    xstream_t *s = stream_new(n, c, tdsx__conn_new_stream(c), 0);
    if (!s) {
        *rc = TDSX_E_NOMEM;
        return NULL;
    }
    s->client = tdsx__control_serial(cl);
    s->req_id = req_id;
    s->state = state;
    snprintf(s->rec.peer, sizeof s->rec.peer, "%s", peer);
    return s;
}

/* Sends the request frame; 1 (answered later) or the error, with the stream closed. */
static int send_request(xstream_t *s, Tdsx__Frame *f)
{
    f->stream_id = s->id;
    int rc = tdsx__conn_send(s->conn, f);
    if (rc) {
        s->client = 0;
        stream_finish(s);
        return rc;
    }
    return 1;
}

static int local_pull(tdsx_node_t *n, tdsx_ctl_client_t *cl, uint64_t req_id,
                      const Tdsx__PullRequest *r)
{
    int rc = 0;
    xstream_t *s = open_request(n, cl, req_id, r->from, XS_PULL_WAIT, &rc);
    if (!s)
        return rc;
    s->progress = r->progress;
    s->pulled = 1;
    snprintf(s->dataset_id, sizeof s->dataset_id, "%s", r->dataset_id);
    Tdsx__TransferPull p = TDSX__TRANSFER_PULL__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    p.dataset_id = r->dataset_id;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_PULL;
    f.transfer_pull = &p;
    return send_request(s, &f);
}

static int local_catalog_remote(tdsx_node_t *n, tdsx_ctl_client_t *cl, uint64_t req_id,
                                const Tdsx__CatalogListRequest *r)
{
    int rc = 0;
    xstream_t *s = open_request(n, cl, req_id, r->from, XS_QUERY_WAIT, &rc);
    if (!s)
        return rc;
    Tdsx__CatalogQuery q = TDSX__CATALOG_QUERY__INIT;
    Tdsx__CatalogFilter filt = TDSX__CATALOG_FILTER__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    filt.text = r->text;
    q.filter = &filt;
    q.page_token = r->page_token;
    q.page_size = r->page_size;
    f.body_case = TDSX__FRAME__BODY_CATALOG_QUERY;
    f.catalog_query = &q;
    return send_request(s, &f);
}

static int local_publish(tdsx_node_t *n, const Tdsx__PublishRequest *r, tdsx_arena_t *a,
                         Tdsx__LocalResponse *resp)
{
    tdsx_exchange_t *x = X(n);
    tdsx_dataset_t *d = tdsx_arena_alloc(a, sizeof *d);
    if (!d)
        return TDSX_E_NOMEM;
    memset(d, 0, sizeof *d);
    if (!*r->path || r->path[0] != '/' || !*r->dataset_id || strlen(r->dataset_id) >= sizeof d->id)
        return TDSX_E_INVAL;
    tdsx_tags_t t;
    tdsx_tags_error_t te;
    int rc = tdsx_tags_parse(tdsx_bytes(r->tags, strlen(r->tags)), &t, &te);
    if (rc == 0)
        rc = tdsx_taxonomy_check(n->taxonomy, &t);
    if (rc)
        return rc;
    if (tdsx_tags_format(&t, d->tags, sizeof d->tags) != 0)
        return TDSX_E_TAGS;
    if (strlen(r->title) >= sizeof d->title || strlen(r->description) >= sizeof d->description ||
        strlen(r->media_type) >= sizeof d->media_type)
        return TDSX_E_TOOBIG;
    snprintf(d->id, sizeof d->id, "%s", r->dataset_id);
    snprintf(d->owner, sizeof d->owner, "%s", n->self_id);
    snprintf(d->title, sizeof d->title, "%s", r->title);
    snprintf(d->description, sizeof d->description, "%s", r->description);
    snprintf(d->media_type, sizeof d->media_type, "%s",
             *r->media_type ? r->media_type : "application/octet-stream");
    /* Import blocks on the disk: publishing is an operator action, not a hot path. */
    rc = tdsx_store_import(x->store, r->path, d->sha256, &d->size);
    if (rc)
        return rc;
    d->published_at = tdsx_now();
    if ((rc = tdsx_store_catalog_put(x->store, d)) != 0)
        return rc;
    tdsx_log(TDSX_LOG_INFO, "catalog.published", TDSX_KV_S("dataset", d->id),
             TDSX_KV_S("tags", d->tags), TDSX_KV_I("size", d->size));
    Tdsx__DatasetDescriptor *p;
    if ((rc = dataset_to_proto(a, d, &p)) != 0)
        return rc;
    resp->body_case = TDSX__LOCAL_RESPONSE__BODY_DATASET;
    resp->dataset = p;
    return 0;
}

typedef struct {
    tdsx_arena_t *arena;
    Tdsx__ReceiptSummary **items;
    size_t n;
} rcollect_t;

static int collect_receipt(void *ud, const tdsx_receipt_t *r)
{
    rcollect_t *c = ud;
    Tdsx__ReceiptSummary *s = tdsx_arena_alloc(c->arena, sizeof *s);
    char *sender = tdsx_arena_alloc(c->arena, 256), *receiver = tdsx_arena_alloc(c->arena, 256);
    uint8_t *tid = tdsx_arena_alloc(c->arena, TDSX_TRANSFER_ID_LEN);
    if (!s || !sender || !receiver || !tid)
        return TDSX_E_NOMEM;
    tdsx__receipt_summary__init(s);
    memcpy(tid, r->transfer_id, TDSX_TRANSFER_ID_LEN);
    snprintf(sender, 256, "%s", r->sender);
    snprintf(receiver, 256, "%s", r->receiver);
    s->transfer_id.data = tid;
    s->transfer_id.len = TDSX_TRANSFER_ID_LEN;
    s->sender = sender;
    s->receiver = receiver;
    s->stored_at = r->stored_at;
    c->items[c->n++] = s;
    return 0;
}

static int local_receipts(tdsx_node_t *n, const Tdsx__ReceiptsRequest *r, tdsx_arena_t *a,
                          Tdsx__LocalResponse *resp)
{
    tdsx_exchange_t *x = X(n);
    Tdsx__ReceiptsResponse *out = tdsx_arena_alloc(a, sizeof *out);
    if (!out)
        return TDSX_E_NOMEM;
    tdsx__receipts_response__init(out);
    resp->body_case = TDSX__LOCAL_RESPONSE__BODY_RECEIPTS;
    resp->receipts = out;
    if (r->transfer_id.len) {
        if (r->transfer_id.len != TDSX_TRANSFER_ID_LEN)
            return TDSX_E_INVAL;
        tdsx_receipt_t rec;
        memset(&rec, 0, sizeof rec);
        int rc = tdsx_store_receipt_get(x->store, r->transfer_id.data, &rec);
        if (rc)
            return rc;
        tdsx_buf_t b;
        tdsx_buf_init(&b, 2 * TDSX_ENVELOPE_MAX);
        rc = bundle_pack(&rec, x, &b);
        tdsx_receipt_clear(&rec);
        if (rc == 0) {
            uint8_t *copy = tdsx_arena_alloc(a, b.len);
            if (!copy)
                rc = TDSX_E_NOMEM;
            else {
                memcpy(copy, b.p, b.len);
                out->receipt.data = copy;
                out->receipt.len = b.len;
            }
        }
        tdsx_buf_free(&b);
        return rc;
    }
    unsigned size = r->page_size && r->page_size <= 200 ? r->page_size : 50;
    rcollect_t c = {a, tdsx_arena_alloc(a, size * sizeof(Tdsx__ReceiptSummary *)), 0};
    char *next = tdsx_arena_alloc(a, 600);
    if (!c.items || !next)
        return TDSX_E_NOMEM;
    int rc = tdsx_store_receipt_list(x->store, r->page_token, size, collect_receipt, &c, next, 600);
    out->receipts = c.items;
    out->n_receipts = c.n;
    out->next_page_token = next;
    return rc;
}

int tdsx__exchange_local(tdsx_node_t *n, tdsx_ctl_client_t *cl, const Tdsx__LocalRequest *req,
                         tdsx_arena_t *a, Tdsx__LocalResponse *resp)
{
    tdsx_exchange_t *x = X(n);
    if (n->draining && (req->body_case == TDSX__LOCAL_REQUEST__BODY_SEND ||
                        req->body_case == TDSX__LOCAL_REQUEST__BODY_PULL))
        return TDSX_E_DRAINING;
    switch (req->body_case) {
    case TDSX__LOCAL_REQUEST__BODY_SEND: return local_send(n, cl, req->id, req->send);
    case TDSX__LOCAL_REQUEST__BODY_PULL: return local_pull(n, cl, req->id, req->pull);
    case TDSX__LOCAL_REQUEST__BODY_PUBLISH: return local_publish(n, req->publish, a, resp);
    case TDSX__LOCAL_REQUEST__BODY_WITHDRAW: {
        int rc = tdsx_store_catalog_withdraw(x->store, n->self_id, req->withdraw->dataset_id);
        if (rc == 0) {
            Tdsx__CatalogListResponse *page = tdsx_arena_alloc(a, sizeof *page);
            if (!page)
                return TDSX_E_NOMEM;
            tdsx__catalog_list_response__init(page);
            resp->body_case = TDSX__LOCAL_RESPONSE__BODY_CATALOG;
            resp->catalog = page;
        }
        return rc;
    }
    case TDSX__LOCAL_REQUEST__BODY_CATALOG_LIST: {
        const Tdsx__CatalogListRequest *r = req->catalog_list;
        if (*r->from)
            return local_catalog_remote(n, cl, req->id, r);
        Tdsx__CatalogListResponse *page = tdsx_arena_alloc(a, sizeof *page);
        char *next = tdsx_arena_alloc(a, 600);
        if (!page || !next)
            return TDSX_E_NOMEM;
        tdsx__catalog_list_response__init(page);
        resp->body_case = TDSX__LOCAL_RESPONSE__BODY_CATALOG;
        resp->catalog = page;
        return list_catalog(x, r->text, r->page_token, r->page_size, a, page, next, 600);
    }
    case TDSX__LOCAL_REQUEST__BODY_RECEIPTS: return local_receipts(n, req->receipts, a, resp);
    case TDSX__LOCAL_REQUEST__BODY_AGREE_PROPOSE:
    case TDSX__LOCAL_REQUEST__BODY_AGREE_ACCEPT:
    case TDSX__LOCAL_REQUEST__BODY_AGREE_REFUSE:
    case TDSX__LOCAL_REQUEST__BODY_AGREE_TERMINATE:
    case TDSX__LOCAL_REQUEST__BODY_AGREE_LIST: /* agreements (agree.c) */
        return tdsx__agree_local(x->agree, cl, req, a, resp);
    case TDSX__LOCAL_REQUEST__BODY_LOG_STATUS:
    case TDSX__LOCAL_REQUEST__BODY_LOG_PROOF:
    case TDSX__LOCAL_REQUEST__BODY_LOG_CONSISTENCY: /* the transparency log (log.c) */
        return tdsx__log_local(n, cl, req, a, resp);
    case TDSX__LOCAL_REQUEST__BODY_REPORT_MAKE:
    case TDSX__LOCAL_REQUEST__BODY_REPORT_SUBMIT: /* trust-status reports (report.c) */
        return tdsx__report_local(n, cl, req);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

/* ---- setup ----------------------------------------------------------------------------------- */

static int load_der(const char *path, uint8_t **der, size_t *len, tdsx_exchange_t *x, int chain)
{
    STACK_OF(X509) *sk = NULL;
    int rc = tdsx_cert_load_file(path, &sk);
    if (rc)
        return rc;
    for (int i = 0; i < sk_X509_num(sk) && (chain ? x->n_chain < 4 : i < 1); i++) {
        unsigned char *buf = NULL;
        int n = i2d_X509(sk_X509_value(sk, i), &buf);
        if (n <= 0) {
            rc = TDSX_E_CERT_PARSE;
            break;
        }
        uint8_t *copy = tdsx_malloc((size_t)n);
        if (!copy) {
            OPENSSL_free(buf);
            rc = TDSX_E_NOMEM;
            break;
        }
        memcpy(copy, buf, (size_t)n);
        OPENSSL_free(buf);
        if (chain) {
            x->chain_certs[x->n_chain++] = tdsx_bytes(copy, (size_t)n);
        } else {
            *der = copy;
            *len = (size_t)n;
        }
    }
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static int make_dir(const char *base, const char *sub)
{
    tdsx_buf_t p;
    tdsx_buf_init(&p, 8192);
    int rc = tdsx_buf_printf(&p, "%s/%s", base, sub);
    if (rc == 0 && mkdir((const char *)p.p, 0700) != 0 && errno != EEXIST)
        rc = TDSX_E_IO;
    tdsx_buf_free(&p);
    return rc;
}

/* Loads our enc secret once (SPEC §9) into guarded memory, read-only from then on. A node
 * without enc.key still runs; payloads sealed to it are refused at TransferStart. */
static int load_enc_key(tdsx_node_t *n, const char *path)
{
    tdsx_exchange_t *x = X(n);
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        tdsx_log(TDSX_LOG_WARN, "node.no_enc_key", TDSX_KV_S("file", path),
                 TDSX_KV_S("reason", "payloads sealed to this node cannot be opened"));
        return 0;
    }
    x->enc_sk = sodium_malloc(TDSX_X25519_KEY_LEN);
    if (!x->enc_sk)
        return TDSX_E_NOMEM;
    int rc = tdsx_key_load_x25519(path, x->enc_sk);
    if (rc) {
        sodium_free(x->enc_sk);
        x->enc_sk = NULL;
        return rc;
    }
    /* Senders seal to the key the registry publishes for us: say so when it is not ours. */
    uint8_t pub[TDSX_X25519_KEY_LEN];
    const tdsx_member_t *self = tdsx_registry_find(n->registry, n->self_id);
    if (crypto_scalarmult_base(pub, x->enc_sk) != 0 ||
        (self && sodium_memcmp(pub, self->enc_pub, sizeof pub) != 0))
        tdsx_log(TDSX_LOG_WARN, "node.enc_key_mismatch", TDSX_KV_S("file", path),
                 TDSX_KV_S("reason", "the registry publishes another enc key for this node"));
    sodium_mprotect_readonly(x->enc_sk);
    return 0;
}

int tdsx__exchange_new(tdsx_node_t *n, char *what, size_t what_size)
{
    tdsx_exchange_t *x = tdsx_calloc(1, sizeof *x);
    uint8_t seed[32];
    tdsx_buf_t p;
    int rc;
    if (!x)
        return TDSX_E_NOMEM;
    x->node = n;
    x->lock_fd = -1;
    n->x = x;
    tdsx_buf_init(&p, 8192);
    if ((rc = tdsx_buf_printf(&p, "%s/%s", n->cfg.credentials, TDSX_CRED_SIGN_KEY)) != 0)
        goto fail;
    if ((rc = tdsx_key_load_ed25519((const char *)p.p, seed)) != 0) {
        snprintf(what, what_size, "%s", TDSX_CRED_SIGN_KEY);
        goto fail;
    }
    rc = tdsx_signer_new(seed, NULL, &x->signer);
    sodium_memzero(seed, sizeof seed);
    if (rc)
        goto fail;
    uint8_t pk[32];
    tdsx_signer_public_key(x->signer, pk);
    if (memcmp(pk, n->self_sign.pubkey, 32) != 0) {
        snprintf(what, what_size, "%s does not match %s", TDSX_CRED_SIGN_KEY, TDSX_CRED_SIGN_CERT);
        rc = TDSX_E_KEY;
        goto fail;
    }
    if ((rc = tdsx_verifier_new(0, &x->verifier)) != 0 ||
        (rc = tdsx_verifier_add_key(x->verifier, pk)) != 0 ||
        (rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &x->arena)) != 0)
        goto fail;
    tdsx_buf_reset(&p);
    if ((rc = tdsx_buf_printf(&p, "%s/%s", n->cfg.credentials, TDSX_CRED_SIGN_CERT)) != 0 ||
        (rc = load_der((const char *)p.p, &x->own_cert, &x->own_cert_len, x, 0)) != 0)
        goto fail;
    tdsx_buf_reset(&p);
    if ((rc = tdsx_buf_printf(&p, "%s/%s", n->cfg.credentials, TDSX_CRED_CHAIN)) != 0)
        goto fail;
    if (load_der((const char *)p.p, NULL, NULL, x, 1) != 0)
        x->n_chain = 0; /* no intermediates */
    tdsx_buf_reset(&p);
    if ((rc = tdsx_buf_printf(&p, "%s/%s", n->cfg.credentials, TDSX_CRED_ENC_KEY)) != 0 ||
        (rc = load_enc_key(n, (const char *)p.p)) != 0) {
        snprintf(what, what_size, "%s", TDSX_CRED_ENC_KEY);
        goto fail;
    }
    tdsx_buf_free(&p);
    return 0;
fail:
    tdsx_buf_free(&p);
    return rc;
}

int tdsx__exchange_start(tdsx_node_t *n)
{
    tdsx_exchange_t *x = X(n);
    tdsx_buf_t lp;
    tdsx_buf_init(&lp, 8192);
    int rc = tdsx_buf_printf(&lp, "%s/tdsxd.lock", n->cfg.data_dir);
    if (rc == 0) {
        x->lock_fd = open((const char *)lp.p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (x->lock_fd < 0)
            rc = TDSX_E_IO;
        else if (flock(x->lock_fd, LOCK_EX | LOCK_NB) != 0)
            rc = TDSX_E_BUSY;
    }
    tdsx_buf_free(&lp);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "node.data_dir_busy", TDSX_KV_S("data_dir", n->cfg.data_dir),
                 TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", rc == TDSX_E_BUSY ? "another tdsxd uses this data_dir"
                                                       : "cannot open the lock file"));
        return rc;
    }
    rc = tdsx_store_open(n->cfg.data_dir, &x->store);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "store.open_failed", TDSX_KV_S("data_dir", n->cfg.data_dir),
                 TDSX_KV_E("err", rc));
        return rc;
    }
    if ((rc = make_dir(n->cfg.data_dir, "tmp")) != 0 ||
        (rc = make_dir(n->cfg.data_dir, "nrd")) != 0)
        return rc;
    if ((rc = tdsx__agree_new(n, x->store, x->signer, x->verifier, &x->agree)) != 0)
        return rc; /* agreements (agree.c) */
    uv_check_init(n->loop, &x->flush_check);
    x->flush_check.data = x;
    uv_check_start(&x->flush_check, on_check);
    uv_prepare_init(n->loop, &x->commit_prepare);
    x->commit_prepare.data = x;
    uv_prepare_start(&x->commit_prepare, on_prepare);
    tdsx_store_batch_begin(x->store);
    /* Fault injection for the tests of the group commit: every commit waits this long first,
     * so a kill is likely to land between a turn's writes and their commit. */
    const char *delay = getenv("TDSX_FAULT_COMMIT_DELAY_MS");
    if (delay && *delay) {
        char *end;
        unsigned long ms = strtoul(delay, &end, 10);
        if (*end == '\0' && ms > 0 && ms <= 10000) {
            x->fault_commit_delay_ms = (unsigned)ms;
            tdsx_log(TDSX_LOG_WARN, "fault.commit_delay", TDSX_KV_I("ms", (long long)ms));
        }
    }
    uv_timer_init(n->loop, &x->tick);
    x->tick.data = x;
    uv_timer_start(&x->tick, on_tick, 1000, 1000);
    x->handles = 1;
    return 0;
}

void tdsx__exchange_close(tdsx_node_t *n)
{
    tdsx_exchange_t *x = X(n);
    if (!x || !x->handles)
        return;
    x->handles = 0;
    uv_close((uv_handle_t *)&x->flush_check, NULL);
    uv_close((uv_handle_t *)&x->commit_prepare, NULL);
    uv_close((uv_handle_t *)&x->tick, NULL);
}

void tdsx__exchange_free(tdsx_node_t *n)
{
    tdsx_exchange_t *x = n ? X(n) : NULL;
    if (!x)
        return;
    /* Streams left (only when the loop was cut short) are released without callbacks. */
    for (xstream_t *s = x->streams, *next; s; s = next) {
        next = s->all_next;
        s->state = XS_DONE;
        s->busy = 0;
        stream_maybe_free(s);
    }
    tdsx_free(x->cq_items);
    tdsx_free(x->cq_streams);
    tdsx_signer_free(x->signer);
    tdsx__agree_free(x->agree); /* after the signer: its cancelled callbacks reach agree.c */
    tdsx_verifier_free(x->verifier);
    tdsx_arena_free(x->arena);
    tdsx_store_close(x->store);
    tdsx_free(x->own_cert);
    sodium_free(x->enc_sk); /* wipes it */
    if (x->lock_fd >= 0)
        close(x->lock_fd);
    for (size_t i = 0; i < x->n_chain; i++)
        tdsx_free((void *)x->chain_certs[i].p);
    tdsx_free(x);
    n->x = NULL;
}
