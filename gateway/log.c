/*
 * log.c — the transparency log inside tdsxd (SPEC §11): queued entries appended in batches on
 * the libuv thread pool, published checkpoints, the witness protocol on both sides, and the
 * control requests behind `tdsx log`. The contract is in log.h; tlog.h is the store.
 *
 * Threads: every call into tlog.h blocks on the disk, so it runs in a job on the thread pool.
 * A job owns everything its work function touches, apart from the node log's immutable parts
 * (paths, keys, the store, whose reads may run beside its one append) and the published state,
 * which only the one publish job reads while the loop leaves it alone. Results are applied and
 * logged on the loop, in the job's done callback.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "exchange.h"
#include "policy.h"
#include "tlog.h"

/* ---- entries (pure) ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t items;
} entry_types[] = {
    {NULL, 0},  {"receipt", 2},         {"nrd", 2},    {"agreement", 7}, {"policy", 3},
    {"key", 2}, {"witness-refusal", 4}, {"report", 2},
};
#define N_ENTRY_TYPES (sizeof entry_types / sizeof entry_types[0])

const char *tdsx__log_entry_type_name(uint8_t type)
{
    return type < N_ENTRY_TYPES ? entry_types[type].name : NULL;
}

size_t tdsx__log_entry_items(uint8_t type)
{
    return type < N_ENTRY_TYPES ? entry_types[type].items : 0;
}

int tdsx__log_entry_encode(const tdsx_log_entry_t *e, tdsx_buf_t *out)
{
    if (!e || !out || tdsx__log_entry_items(e->type) == 0 || e->n != tdsx__log_entry_items(e->type))
        return TDSX_E_INVAL;
    size_t total = 2;
    for (size_t i = 0; i < e->n; i++) {
        if (e->item[i].n > 0xffff || (e->item[i].n && !e->item[i].p))
            return TDSX_E_INVAL;
        total += 2 + e->item[i].n;
    }
    if (total > TDSX_TLOG_ENTRY_MAX)
        return TDSX_E_TOOBIG;
    size_t mark = out->len;
    int rc = tdsx_buf_reserve(out, total);
    if (rc)
        return rc;
    uint8_t head[2] = {TDSX_LOG_ENTRY_VERSION, e->type};
    rc = tdsx_buf_append(out, head, 2);
    for (size_t i = 0; rc == 0 && i < e->n; i++) {
        uint8_t len[2] = {(uint8_t)(e->item[i].n >> 8), (uint8_t)e->item[i].n};
        rc = tdsx_buf_append(out, len, 2);
        if (rc == 0)
            rc = tdsx_buf_append(out, e->item[i].p, e->item[i].n);
    }
    if (rc)
        out->len = mark;
    return rc;
}

int tdsx__log_entry_parse(tdsx_bytes_t in, tdsx_log_entry_t *out)
{
    tdsx_log_entry_t e;
    uint8_t version;
    memset(&e, 0, sizeof e);
    if (!out || tdsx_bytes_u8(&in, &version) != 0 || version != TDSX_LOG_ENTRY_VERSION ||
        tdsx_bytes_u8(&in, &e.type) != 0 || tdsx__log_entry_items(e.type) == 0)
        return TDSX_E_FORMAT;
    e.n = tdsx__log_entry_items(e.type);
    for (size_t i = 0; i < e.n; i++) {
        uint16_t len;
        if (tdsx_bytes_u16be(&in, &len) != 0 || tdsx_bytes_take(&in, len, &e.item[i]) != 0)
            return TDSX_E_FORMAT;
    }
    if (in.n != 0)
        return TDSX_E_FORMAT;
    *out = e;
    return 0;
}

/* Decodes a statement's payload without verifying it (for descriptions only). */
static ProtobufCMessage *payload_of(tdsx_arena_t *arena, tdsx_bytes_t env,
                                    const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = NULL;
    Tdsx__Envelope *e = NULL;
    if (tdsx_proto_unpack(arena, &tdsx__envelope__descriptor, env, (ProtobufCMessage **)&e) != 0 ||
        tdsx_proto_unpack(arena, desc, tdsx_bytes(e->payload.data, e->payload.len), &m) != 0)
        return NULL;
    return m;
}

static void describe_transfer(const tdsx_log_entry_t *e, char *out, size_t size)
{
    const char *name = tdsx__log_entry_type_name(e->type);
    tdsx_arena_t *arena = NULL;
    const Tdsx__Nro *nro = NULL;
    if (tdsx_arena_new(4 * TDSX_TLOG_ENTRY_MAX, &arena) == 0)
        nro = (const Tdsx__Nro *)payload_of(arena, e->item[0], &tdsx__nro__descriptor);
    char tid[2 * 16 + 1] = "?";
    if (nro && nro->transfer_id.len == 16)
        tdsx_hex_encode(tid, nro->transfer_id.data, 16);
    const char *status = "";
    if (e->type == TDSX_LOG_ENTRY_RECEIPT && arena) {
        const Tdsx__Nrr *nrr =
            (const Tdsx__Nrr *)payload_of(arena, e->item[1], &tdsx__nrr__descriptor);
        status = !nrr                                                         ? " (NRR unreadable)"
                 : nrr->status == TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED       ? " accepted"
                 : nrr->status == TDSX__NRR_STATUS__NRR_STATUS_POLICY_REFUSED ? " policy-refused"
                                                                              : " integrity-failed";
    }
    if (nro)
        snprintf(out, size, "%s transfer %s %.160s -> %.160s dataset %.200s%s", name, tid,
                 nro->sender, nro->receiver, nro->dataset_id, status);
    else
        snprintf(out, size, "%s (NRO unreadable)", name);
    tdsx_arena_free(arena);
}

static int clip(tdsx_bytes_t b, size_t max)
{
    return (int)(b.n < max ? b.n : max);
}

/* The text may come from a proof file anyone wrote: nothing in it reaches a terminal raw. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void describe(tdsx_bytes_t entry, char *out, size_t size);

void tdsx__log_entry_describe(tdsx_bytes_t entry, char *out, size_t size)
{
    if (!out || size == 0)
        return;
    out[0] = '\0';
    describe(entry, out, size);
    printable(out);
}

static void describe(tdsx_bytes_t entry, char *out, size_t size)
{
    tdsx_log_entry_t e;
    char hex[2 * TDSX_HASH_LEN + 1];
    if (tdsx__log_entry_parse(entry, &e) != 0) {
        snprintf(out, size, "not a TDSX log entry (%zu bytes)", entry.n);
        return;
    }
    const char *name = tdsx__log_entry_type_name(e.type);
    switch (e.type) {
    case TDSX_LOG_ENTRY_RECEIPT:
    case TDSX_LOG_ENTRY_NRD: describe_transfer(&e, out, size); return;
    case TDSX_LOG_ENTRY_AGREEMENT:
        if (e.item[2].n == TDSX_HASH_LEN)
            tdsx_hex_encode(hex, e.item[2].p, TDSX_HASH_LEN);
        else
            snprintf(hex, sizeof hex, "?");
        snprintf(out, size, "%s %.*s by %.*s hash %s", name, clip(e.item[0], 64),
                 (const char *)e.item[0].p, clip(e.item[1], 256), (const char *)e.item[1].p, hex);
        return;
    case TDSX_LOG_ENTRY_POLICY:
        if (e.item[1].n == TDSX_HASH_LEN)
            tdsx_hex_encode(hex, e.item[1].p, TDSX_HASH_LEN);
        else
            snprintf(hex, sizeof hex, "?");
        snprintf(out, size, "%s %.*s sha256 %s from %.*s", name, clip(e.item[0], 64),
                 (const char *)e.item[0].p, hex, clip(e.item[2], 512), (const char *)e.item[2].p);
        return;
    case TDSX_LOG_ENTRY_KEY:
        snprintf(out, size, "%s %.*s certificate (%zu bytes DER)", name, clip(e.item[0], 64),
                 (const char *)e.item[0].p, e.item[1].n);
        return;
    case TDSX_LOG_ENTRY_WITNESS_REFUSAL:
        snprintf(out, size, "%s node %.*s %.*s", name, clip(e.item[0], 256),
                 (const char *)e.item[0].p, clip(e.item[1], 64), (const char *)e.item[1].p);
        return;
    default: snprintf(out, size, "%s", name ? name : "?"); return;
    }
}

/* ---- the witness's decision (pure) ------------------------------------------------------------
 */

int tdsx__log_witness_check(const tdsx_checkpoint_t *last, const tdsx_checkpoint_t *next,
                            uint64_t old_size, const tdsx_hash_t *proof, size_t proof_len)
{
    if (!next || (proof_len && !proof))
        return TDSX_E_INVAL;
    if (!last)
        return 0; /* the first checkpoint the witness sees for a node: trust on first use */
    if (!tdsx_bytes_equal(last->origin, next->origin))
        return TDSX_E_LOG_INCONSISTENT;
    if (next->size < last->size)
        return TDSX_E_LOG_INCONSISTENT; /* a log never shrinks */
    if (old_size != last->size)
        return TDSX_E_STATE;
    /* RFC 9162 §2.1.4.2; equal sizes need an empty proof and equal roots. */
    if (tdsx_merkle_consistency_verify(last->size, next->size, &last->root, &next->root, proof,
                                       proof_len) != 0)
        return TDSX_E_LOG_INCONSISTENT;
    return 0;
}

/* ---- state ------------------------------------------------------------------------------------
 */

typedef struct item_s {
    struct item_s *next;
    tdsx_log_done_cb cb;
    void *ud;
    size_t len;
    uint8_t data[];
} item_t;

typedef enum {
    J_APPEND = 0, /* one batch of queued entries */
    J_PUBLISH,    /* check and record the current checkpoint */
    J_SUBMIT,     /* node: the consistency proof for the witness */
    J_SAVE,       /* node: record what the witness cosigned */
    J_WITNESS,    /* centre: decide on a node's checkpoint, cosign, record */
    J_STATUS,     /* tdsx log status */
    J_PROOF,      /* tdsx log proof */
    J_CONSISTENCY /* tdsx log consistency */
} job_kind_t;

typedef struct job_s {
    uv_work_t work;
    tdsx_nodelog_t *L;
    job_kind_t kind;
    int rc;
    const char *why; /* static text saying what rc refers to */
    struct job_s *next;
    /* J_APPEND */
    item_t *items;
    tdsx_bytes_t *vec;
    size_t n;
    uint64_t first;
    /* a checkpoint note: the current one (publish, status, proofs), the one submitted
     * (submit, witness), the one to record (save) */
    tdsx_buf_t note;
    tdsx_buf_t out;  /* witness: the cosigned note */
    tdsx_buf_t last; /* witness: the note it held for the node */
    tdsx_buf_t entry;
    uint64_t size, index, from, old_size, nodes;
    tdsx_hash_t root, from_root;
    tdsx_hash_t hashes[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t nhashes;
    int published; /* J_PUBLISH: a newer checkpoint was recorded */
    int adopt;     /* J_SAVE: a resync to the witness's view, not a fresh cosignature */
    uint64_t client, req_id;
    char peer[TDSX_ID_SIZE];
    uint32_t stream;
    tdsx_note_verifier_t peer_v;
    /* J_WITNESS for a report (tdsx__log_witness): a smaller checkpoint proved a prefix of the
     * record is cosigned too; a file to keep; who hears the decision instead of the peer */
    int prefix_ok;
    char *keep_path;
    tdsx_buf_t keep;
    tdsx_log_witness_cb cb;
    tdsx_log_precheck_cb precheck;
    void *cb_ud;
} job_t;

struct tdsx_nodelog_s {
    tdsx_node_t *node;
    tdsx_tlog_t *tlog;
    tdsx_note_signer_t *key;      /* Ed25519 note key: signs our checkpoints */
    tdsx_note_signer_t *cosigner; /* the same key as cosignature/v1: cosigns others' */
    tdsx_note_verifier_t self_v, self_cosig_v;
    char *dir, *data_dir, *published_path, *cosigned_path, *witness_dir;

    item_t *head, *tail;
    size_t queued, queued_bytes;
    int appending;
    int broken; /* sticky: appends stopped (TDSX_E_LOG_INCONSISTENT, TDSX_E_IO, ...) */
    uint64_t size;
    uint64_t appended;

    int publishing;
    int has_pub;
    tdsx_buf_t published;
    uint64_t pub_size;
    tdsx_hash_t pub_root;

    const char *witness; /* NULL: none */
    int has_cos;
    tdsx_buf_t cosigned;
    uint64_t cos_size;
    tdsx_hash_t cos_root;
    int submitting; /* a proof on the pool, an answer awaited, or a save on the pool */
    uint32_t sub_stream;
    uint64_t sub_deadline;
    uint64_t sub_size;
    tdsx_hash_t sub_root;
    int has_refused;
    uint64_t refused_size;
    char witness_state[320];

    job_t *wq_head, *wq_tail; /* centre: submissions waiting, one decided at a time */
    size_t wq_len;
    int witnessing;
    uint64_t w_cosigned, w_refused;

    uv_timer_t timer;
    int timer_open;
};

static char *path_of(const char *dir, const char *name)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, 8192);
    if (tdsx_buf_printf(&b, "%s/%s", dir, name) != 0) {
        tdsx_buf_free(&b);
        return NULL;
    }
    return tdsx_buf_take(&b, NULL);
}

static int write_durable(const char *dir, const char *path, tdsx_bytes_t data)
{
    /* A renamed file's name is durable only once its directory is. */
    int rc = tdsx_file_write(path, data.p, data.n, 0600, 1);
    return rc ? rc : tdsx_dir_sync(dir);
}

/* Reads a note file (TDSX_E_NOTFOUND when absent) into b. */
static int read_note(const char *path, tdsx_buf_t *b)
{
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(path, TDSX_NOTE_MAX, &p, &len);
    if (rc == 0)
        rc = tdsx_buf_append(b, p, len);
    tdsx_free(p);
    return rc;
}

/* Opens a checkpoint of ours (and, when w is not NULL, requires w's cosignature on it). */
static int open_ours(const tdsx_nodelog_t *L, tdsx_bytes_t msg, const tdsx_note_verifier_t *w,
                     uint64_t *size, tdsx_hash_t *root)
{
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    int rc = tdsx_checkpoint_open(msg, &L->self_v, w, w ? 1 : 0, L->node->self_id, &note, &cp);
    if (rc == 0 && w && !tdsx_note_verified_by(note, w))
        rc = TDSX_E_NOTE_UNVERIFIED;
    if (rc == 0) {
        *size = cp.size;
        *root = cp.root;
    }
    tdsx_note_free(note);
    return rc;
}

/* The raw Ed25519 key of a sign certificate the exchange verified at Hello. */
static int cert_pubkey(tdsx_bytes_t der, uint8_t pk[TDSX_ED25519_PK_LEN])
{
    const unsigned char *p = der.p;
    X509 *x = der.n ? d2i_X509(NULL, &p, (long)der.n) : NULL;
    EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
    size_t len = TDSX_ED25519_PK_LEN;
    int rc = k && EVP_PKEY_id(k) == EVP_PKEY_ED25519 &&
                     EVP_PKEY_get_raw_public_key(k, pk, &len) == 1 && len == TDSX_ED25519_PK_LEN
                 ? 0
                 : TDSX_E_CERT_KEY;
    X509_free(x);
    return rc;
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    for (item_t *it = j->items, *next; it; it = next) {
        next = it->next;
        tdsx_free(it);
    }
    tdsx_free(j->vec);
    tdsx_buf_free(&j->note);
    tdsx_buf_free(&j->out);
    tdsx_buf_free(&j->last);
    tdsx_buf_free(&j->entry);
    tdsx_buf_free(&j->keep);
    tdsx_free(j->keep_path);
    tdsx_free(j);
}

static job_t *job_new(tdsx_nodelog_t *L, job_kind_t kind)
{
    job_t *j = tdsx_calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->L = L;
    j->kind = kind;
    j->work.data = j;
    tdsx_buf_init(&j->note, TDSX_NOTE_MAX);
    tdsx_buf_init(&j->out, TDSX_NOTE_MAX);
    tdsx_buf_init(&j->last, TDSX_NOTE_MAX);
    tdsx_buf_init(&j->entry, TDSX_TLOG_ENTRY_MAX);
    tdsx_buf_init(&j->keep, TDSX_NOTE_MAX);
    return j;
}

static int job_queue(job_t *j, uv_work_cb work, uv_after_work_cb done)
{
    return uv_queue_work(j->L->node->loop, &j->work, work, done) == 0 ? 0 : TDSX_E_IO;
}

/* The current signed checkpoint and its size and root (thread pool). */
static int current_checkpoint(job_t *j)
{
    tdsx_buf_reset(&j->note);
    int rc = tdsx_tlog_checkpoint(j->L->tlog, &j->note);
    return rc ? rc : open_ours(j->L, tdsx_buf_bytes(&j->note), NULL, &j->size, &j->root);
}

static void set_witness_state(tdsx_nodelog_t *L, const char *fmt, ...) TDSX_PRINTF(2, 3);
static void set_witness_state(tdsx_nodelog_t *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->witness_state, sizeof L->witness_state, fmt, ap);
    va_end(ap);
}

/* ---- appends -------------------------------------------------------------------------------- */

static void start_batch(tdsx_nodelog_t *L);

static void fail_queued(tdsx_nodelog_t *L, int err)
{
    item_t *it = L->head;
    L->head = L->tail = NULL;
    L->queued = L->queued_bytes = 0;
    while (it) {
        item_t *next = it->next;
        if (it->cb)
            it->cb(it->ud, err, 0);
        tdsx_free(it);
        it = next;
    }
}

static void append_work(uv_work_t *w)
{
    job_t *j = w->data;
    j->rc = tdsx_tlog_append(j->L->tlog, j->vec, j->n, &j->first);
}

static void append_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    int rc = status ? TDSX_E_IO : j->rc;
    L->appending = 0;
    if (rc == 0) {
        L->size = j->first + j->n;
        L->appended += j->n;
    } else if (!L->broken) {
        /* tlog.h: after a failed append the store refuses every later one until reopened. */
        L->broken = rc == TDSX_E_IO ? TDSX_E_IO : TDSX_E_LOG;
        tdsx_log(TDSX_LOG_ERROR, "log.append_failed", TDSX_KV_I("entries", j->n),
                 TDSX_KV_E("err", rc),
                 TDSX_KV_S("action", "appends stopped: restart the node to let recovery decide"));
    }
    uint64_t i = 0;
    for (item_t *it = j->items; it; it = it->next, i++)
        if (it->cb)
            it->cb(it->ud, rc ? L->broken : 0, rc ? 0 : j->first + i);
    job_free(j);
    start_batch(L);
}

/* One batch at a time: entries that arrive meanwhile wait and share the next group fsync. */
static void start_batch(tdsx_nodelog_t *L)
{
    if (L->appending || !L->head)
        return;
    if (L->broken) {
        fail_queued(L, L->broken);
        return;
    }
    job_t *j = job_new(L, J_APPEND);
    size_t n = 0, bytes = 0;
    for (item_t *it = L->head;
         it && n < TDSX_TLOG_BATCH_MAX && bytes + it->len <= TDSX_TLOG_BATCH_BYTES_MAX;
         it = it->next) {
        n++;
        bytes += it->len;
    }
    if (!j || !(j->vec = tdsx_calloc(n, sizeof *j->vec))) {
        job_free(j);
        return; /* the timer tries again */
    }
    item_t *it = L->head, *last = NULL;
    for (size_t i = 0; i < n; i++, last = it, it = it->next)
        j->vec[i] = tdsx_bytes(it->data, it->len);
    j->items = L->head;
    j->n = n;
    L->head = it;
    if (!it)
        L->tail = NULL;
    last->next = NULL;
    L->queued -= n;
    L->queued_bytes -= bytes;
    if (job_queue(j, append_work, append_done) != 0) {
        /* Put the batch back in front; the timer tries again. */
        last->next = L->head;
        L->head = j->items;
        if (!L->tail)
            L->tail = last;
        L->queued += n;
        L->queued_bytes += bytes;
        j->items = NULL;
        job_free(j);
        return;
    }
    L->appending = 1;
}

int tdsx__log_append(tdsx_node_t *n, const tdsx_log_entry_t *e, tdsx_log_done_cb cb, void *ud)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!L || !e)
        return TDSX_E_STATE;
    if (L->broken)
        return TDSX_E_LOG;
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_TLOG_ENTRY_MAX);
    int rc = tdsx__log_entry_encode(e, &b);
    if (rc == 0 && L->queued_bytes + b.len > TDSX_LOG_QUEUE_BYTES_MAX)
        rc = TDSX_E_BUSY;
    item_t *it = rc ? NULL : tdsx_malloc(sizeof *it + b.len);
    if (rc == 0 && !it)
        rc = TDSX_E_NOMEM;
    if (rc) {
        tdsx_buf_free(&b);
        return rc;
    }
    it->next = NULL;
    it->cb = cb;
    it->ud = ud;
    it->len = b.len;
    memcpy(it->data, b.p, b.len);
    tdsx_buf_free(&b);
    if (L->tail)
        L->tail->next = it;
    else
        L->head = it;
    L->tail = it;
    L->queued++;
    L->queued_bytes += it->len;
    start_batch(L);
    return 0;
}

int tdsx__log_find(tdsx_node_t *n, const tdsx_log_entry_t *e, uint64_t from, uint64_t *index)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!L || !e || !index)
        return TDSX_E_STATE;
    tdsx_buf_t want, got;
    tdsx_buf_init(&want, TDSX_TLOG_ENTRY_MAX);
    tdsx_buf_init(&got, TDSX_TLOG_ENTRY_MAX);
    int rc = tdsx__log_entry_encode(e, &want);
    uint64_t size = 0;
    tdsx_tlog_head(L->tlog, &size, NULL);
    int found = 0;
    for (uint64_t i = from; rc == 0 && !found && i < size; i++) {
        tdsx_buf_reset(&got);
        rc = tdsx_tlog_entry(L->tlog, i, &got);
        if (rc == 0 && got.len == want.len && memcmp(got.p, want.p, want.len) == 0) {
            *index = i;
            found = 1;
        }
    }
    tdsx_buf_free(&want);
    tdsx_buf_free(&got);
    return rc ? rc : found;
}

void tdsx__log_event(tdsx_node_t *n, const tdsx_log_entry_t *e)
{
    int rc = tdsx__log_append(n, e, NULL, NULL);
    if (rc)
        tdsx_log(TDSX_LOG_ERROR, "log.append_failed",
                 TDSX_KV_S("type", tdsx__log_entry_type_name(e->type)
                                       ? tdsx__log_entry_type_name(e->type)
                                       : "?"),
                 TDSX_KV_E("err", rc));
}

uint64_t tdsx__log_size(const tdsx_node_t *n)
{
    return n && n->log ? n->log->size : 0;
}

void tdsx__log_policy(tdsx_node_t *n, const char *why)
{
    if (!n || !n->policy)
        return;
    const char *src = n->cfg.policy ? n->cfg.policy : "(built-in)";
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_POLICY, 3, {{0}}};
    e.item[0] = tdsx_bytes(why, strlen(why));
    e.item[1] = tdsx_bytes(tdsx_policy_hash(n->policy), TDSX_HASH_LEN);
    e.item[2] = tdsx_bytes(src, strlen(src) < 4096 ? strlen(src) : 4096);
    tdsx__log_event(n, &e);
}

/* The sign certificate in use, logged at every start (a key event, SPEC §11). */
static void log_key(tdsx_node_t *n)
{
    char *path = path_of(n->cfg.credentials, TDSX_CRED_SIGN_CERT);
    STACK_OF(X509) *sk = NULL;
    unsigned char *der = NULL;
    int len = 0;
    if (path && tdsx_cert_load_file(path, &sk) == 0 && sk_X509_num(sk) > 0)
        len = i2d_X509(sk_X509_value(sk, 0), &der);
    if (len > 0) {
        static const char purpose[] = "sign";
        tdsx_log_entry_t e = {TDSX_LOG_ENTRY_KEY, 2, {{0}}};
        e.item[0] = tdsx_bytes(purpose, sizeof purpose - 1);
        e.item[1] = tdsx_bytes(der, (size_t)len);
        tdsx__log_event(n, &e);
    } else {
        tdsx_log(TDSX_LOG_ERROR, "log.key_unreadable", TDSX_KV_S("file", path ? path : ""));
    }
    OPENSSL_free(der);
    sk_X509_pop_free(sk, X509_free);
    tdsx_free(path);
}

/* ---- publishing ------------------------------------------------------------------------------ */

static void maybe_submit(tdsx_nodelog_t *L);

static void publish_work(uv_work_t *w)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    j->rc = current_checkpoint(j);
    if (j->rc)
        return;
    if (L->has_pub && j->size <= L->pub_size) {
        if (j->size < L->pub_size || sodium_memcmp(j->root.b, L->pub_root.b, TDSX_HASH_LEN) != 0)
            j->rc = TDSX_E_LOG_INCONSISTENT;
        return;
    }
    /* Never publish what the tiles do not prove an extension of the last one (SPEC §11). */
    if (L->has_pub && L->pub_size > 0) {
        j->rc = tdsx_tlog_consistency_proof(L->tlog, L->pub_size, j->size, j->hashes, &j->nhashes);
        if (j->rc == 0 && tdsx_merkle_consistency_verify(L->pub_size, j->size, &L->pub_root,
                                                         &j->root, j->hashes, j->nhashes) != 0)
            j->rc = TDSX_E_LOG_INCONSISTENT;
        if (j->rc)
            return;
    }
    j->rc = write_durable(L->data_dir, L->published_path, tdsx_buf_bytes(&j->note));
    j->published = j->rc == 0;
}

static void publish_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    L->publishing = 0;
    int rc = status ? TDSX_E_IO : j->rc;
    if (rc == TDSX_E_LOG_INCONSISTENT) {
        if (!L->broken)
            L->broken = rc;
        tdsx_log(TDSX_LOG_ERROR, "log.publish_refused", TDSX_KV_I("size", j->size),
                 TDSX_KV_I("published_size", L->pub_size), TDSX_KV_E("err", rc),
                 TDSX_KV_S("action", "appends stopped: the tiles no longer extend the "
                                     "published checkpoint"));
    } else if (rc) {
        tdsx_log(TDSX_LOG_WARN, "log.publish_failed", TDSX_KV_E("err", rc));
    } else if (j->published) {
        tdsx_buf_reset(&L->published);
        if (tdsx_buf_append(&L->published, j->note.p, j->note.len) == 0) {
            L->has_pub = 1;
            L->pub_size = j->size;
            L->pub_root = j->root;
            char hex[2 * TDSX_HASH_LEN + 1];
            tdsx_hex_encode(hex, j->root.b, TDSX_HASH_LEN);
            tdsx_log(TDSX_LOG_INFO, "log.published", TDSX_KV_I("size", j->size),
                     TDSX_KV_S("root", hex));
        }
    }
    job_free(j);
    maybe_submit(L);
}

static void maybe_publish(tdsx_nodelog_t *L)
{
    if (L->publishing || L->broken || L->size == 0 || (L->has_pub && L->size <= L->pub_size))
        return;
    job_t *j = job_new(L, J_PUBLISH);
    if (j && job_queue(j, publish_work, publish_done) == 0)
        L->publishing = 1;
    else
        job_free(j);
}

/* ---- witness, node side ---------------------------------------------------------------------- */

static void submit_work(uv_work_t *w)
{
    job_t *j = w->data;
    /* From a size beyond ours there is no proof: the witness refuses such a checkpoint. */
    if (j->from > j->size)
        return;
    j->rc = tdsx_tlog_consistency_proof(j->L->tlog, j->from, j->size, j->hashes, &j->nhashes);
}

static void submit_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    int rc = status ? TDSX_E_IO : j->rc;
    tdsx_conn_t *c = rc ? NULL : tdsx__node_find_conn(L->node, L->witness);
    if (c) {
        Tdsx__CheckpointSubmit cs = TDSX__CHECKPOINT_SUBMIT__INIT;
        Tdsx__Frame f = TDSX__FRAME__INIT;
        ProtobufCBinaryData proof[TDSX_MERKLE_CONSISTENCY_MAX];
        for (size_t i = 0; i < j->nhashes; i++) {
            proof[i].data = j->hashes[i].b;
            proof[i].len = TDSX_HASH_LEN;
        }
        cs.checkpoint.data = j->note.p;
        cs.checkpoint.len = j->note.len;
        cs.old_size = j->from;
        cs.consistency_proof = proof;
        cs.n_consistency_proof = j->nhashes;
        f.stream_id = tdsx__conn_new_stream(c);
        f.body_case = TDSX__FRAME__BODY_CHECKPOINT_SUBMIT;
        f.checkpoint_submit = &cs;
        rc = tdsx__conn_send(c, &f);
        if (rc == 0) {
            L->sub_stream = f.stream_id;
            L->sub_deadline = uv_now(L->node->loop) + TDSX_LOG_WITNESS_TIMEOUT_MS;
            L->sub_size = j->size;
            L->sub_root = j->root;
            tdsx_log(TDSX_LOG_DEBUG, "log.submitted", TDSX_KV_S("witness", L->witness),
                     TDSX_KV_I("size", j->size), TDSX_KV_I("old_size", j->from));
            job_free(j);
            return;
        }
    }
    if (rc)
        tdsx_log(TDSX_LOG_WARN, "log.submit_failed", TDSX_KV_S("witness", L->witness),
                 TDSX_KV_E("err", rc));
    L->submitting = 0;
    job_free(j);
}

/* Asks the witness to cosign the published checkpoint when it has not yet, and it is there. */
static void maybe_submit(tdsx_nodelog_t *L)
{
    if (!L->witness || L->submitting || !L->has_pub || L->pub_size == 0)
        return;
    if (L->has_cos && L->cos_size == L->pub_size &&
        sodium_memcmp(L->cos_root.b, L->pub_root.b, TDSX_HASH_LEN) == 0)
        return;
    if (L->has_refused && L->refused_size == L->pub_size)
        return; /* refused already: asking again says nothing new */
    if (!tdsx__node_find_conn(L->node, L->witness)) {
        set_witness_state(L, "not connected to the witness");
        return;
    }
    job_t *j = job_new(L, J_SUBMIT);
    if (!j || tdsx_buf_append(&j->note, L->published.p, L->published.len) != 0) {
        job_free(j);
        return;
    }
    j->from = L->has_cos ? L->cos_size : 0;
    j->size = L->pub_size;
    j->root = L->pub_root;
    if (job_queue(j, submit_work, submit_done) != 0) {
        job_free(j);
        return;
    }
    L->submitting = 1;
}

static void save_work(uv_work_t *w)
{
    job_t *j = w->data;
    j->rc = write_durable(j->L->data_dir, j->L->cosigned_path, tdsx_buf_bytes(&j->note));
}

static void save_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    int rc = status ? TDSX_E_IO : j->rc;
    L->submitting = 0;
    if (rc == 0) {
        tdsx_buf_reset(&L->cosigned);
        rc = tdsx_buf_append(&L->cosigned, j->note.p, j->note.len);
    }
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "log.cosigned_save_failed", TDSX_KV_E("err", rc));
        job_free(j);
        return;
    }
    L->has_cos = 1;
    L->cos_size = j->size;
    L->cos_root = j->root;
    if (j->adopt) {
        set_witness_state(L, "resynchronised to the witness's checkpoint of size %llu",
                          (unsigned long long)j->size);
        tdsx_log(TDSX_LOG_WARN, "log.witness_resync", TDSX_KV_S("witness", L->witness),
                 TDSX_KV_I("size", j->size));
        job_free(j);
        maybe_submit(L); /* now from the size the witness holds */
        return;
    }
    set_witness_state(L, "cosigned size %llu", (unsigned long long)j->size);
    tdsx_log(TDSX_LOG_INFO, "log.cosigned", TDSX_KV_S("witness", L->witness),
             TDSX_KV_I("size", j->size));
    job_free(j);
}

/* Records a note the witness cosigned: the fresh cosignature, or its view to resync to. */
static int save_cosigned(tdsx_nodelog_t *L, tdsx_bytes_t note, uint64_t size,
                         const tdsx_hash_t *root, int adopt)
{
    job_t *j = job_new(L, J_SAVE);
    if (!j)
        return TDSX_E_NOMEM;
    int rc = tdsx_buf_append(&j->note, note.p, note.n);
    j->size = size;
    j->root = *root;
    j->adopt = adopt;
    if (rc == 0)
        rc = job_queue(j, save_work, save_done);
    if (rc)
        job_free(j);
    return rc;
}

static int on_cosigned(tdsx_nodelog_t *L, tdsx_conn_t *c, const Tdsx__Frame *f,
                       tdsx_bytes_t peer_cert)
{
    const Tdsx__CheckpointCosigned *a = f->checkpoint_cosigned;
    const char *peer = tdsx__conn_peer_id(c);
    if (!L->witness || !L->submitting || strcmp(peer, L->witness) != 0 ||
        f->stream_id != L->sub_stream || L->sub_deadline == 0) {
        tdsx_log(TDSX_LOG_DEBUG, "log.unexpected_cosignature", TDSX_KV_S("peer", peer),
                 TDSX_KV_I("stream", f->stream_id));
        return 0;
    }
    L->sub_deadline = 0;
    tdsx_note_verifier_t wv;
    uint8_t pk[TDSX_ED25519_PK_LEN];
    int rc = cert_pubkey(peer_cert, pk);
    if (rc == 0)
        rc = tdsx_note_verifier_init(&wv, L->witness, TDSX_NOTE_COSIG, pk);
    int code = a->code ? tdsx_err_from_wire(a->code) : 0;
    uint64_t size = 0;
    tdsx_hash_t root;
    memset(&root, 0, sizeof root);
    if (rc == 0 && code == 0) {
        tdsx_bytes_t note = tdsx_bytes(a->cosigned.data, a->cosigned.len);
        rc = open_ours(L, note, &wv, &size, &root);
        if (rc == 0 &&
            (size != L->sub_size || sodium_memcmp(root.b, L->sub_root.b, TDSX_HASH_LEN) != 0))
            rc = TDSX_E_HASH_MISMATCH;
        if (rc == 0 && (rc = save_cosigned(L, note, size, &root, 0)) == 0)
            return 0;
        tdsx_log(TDSX_LOG_WARN, "log.witness_bad_answer", TDSX_KV_S("witness", peer),
                 TDSX_KV_E("err", rc));
        set_witness_state(L, "the witness's answer did not verify (%s)", tdsx_err_name(rc));
        L->submitting = 0;
        return 0;
    }
    if (rc == 0 && code == TDSX_E_STATE && a->witnessed.len) {
        /* The witness cosigned another size for us than we hold (our record is older, or was
         * lost): its view, once verified as ours and cosigned by it, is where we prove from. */
        tdsx_bytes_t note = tdsx_bytes(a->witnessed.data, a->witnessed.len);
        rc = open_ours(L, note, &wv, &size, &root);
        if (rc == 0 && L->has_cos && size == L->cos_size &&
            sodium_memcmp(root.b, L->cos_root.b, TDSX_HASH_LEN) == 0)
            rc = TDSX_E_STATE; /* what we sent from already: do not loop */
        if (rc == 0 && (rc = save_cosigned(L, note, size, &root, 1)) == 0)
            return 0;
        code = rc;
    }
    L->submitting = 0;
    L->has_refused = 1;
    L->refused_size = L->sub_size;
    set_witness_state(L, "refused size %llu: %.160s (%s)", (unsigned long long)L->sub_size,
                      a->message && *a->message ? a->message : tdsx_strerror(code ? code : rc),
                      tdsx_err_name(code ? code : rc));
    tdsx_log(code == TDSX_E_LOG_INCONSISTENT ? TDSX_LOG_ERROR : TDSX_LOG_WARN,
             "log.witness_refused", TDSX_KV_S("witness", peer), TDSX_KV_I("size", L->sub_size),
             TDSX_KV_E("err", code ? code : rc), TDSX_KV_S("reason", a->message ? a->message : ""));
    return 0;
}

/* ---- witness, centre side -------------------------------------------------------------------- */

static int answer_submit(tdsx_conn_t *c, uint32_t stream, int err, const char *msg,
                         tdsx_bytes_t cosigned, tdsx_bytes_t witnessed)
{
    Tdsx__CheckpointCosigned a = TDSX__CHECKPOINT_COSIGNED__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    a.cosigned.data = (uint8_t *)cosigned.p;
    a.cosigned.len = cosigned.n;
    a.code = tdsx_err_wire(err);
    a.message = (char *)(msg ? msg : (err ? tdsx_strerror(err) : ""));
    a.witnessed.data = (uint8_t *)witnessed.p;
    a.witnessed.len = witnessed.n;
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_CHECKPOINT_COSIGNED;
    f.checkpoint_cosigned = &a;
    return tdsx__conn_send(c, &f);
}

static char *witness_file(const tdsx_nodelog_t *L, const char *id)
{
    char name[TDSX_ID_SIZE];
    snprintf(name, sizeof name, "%s", id);
    char *slash = strchr(name, '/');
    if (slash)
        *slash = '_'; /* node names hold no '/', so "<USCC>_<node>" is unambiguous */
    return path_of(L->witness_dir, name);
}

/* Writes path durably (0600), making the directories under data_dir it needs (0700). */
static int keep_file(char *path, tdsx_bytes_t data)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return TDSX_E_INVAL;
    *slash = '\0';
    int rc = 0;
    for (char *p = strchr(path + 1, '/');; p = strchr(p + 1, '/')) {
        if (p)
            *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            rc = TDSX_E_IO;
        if (!p)
            break;
        *p = '/';
    }
    char *dir = tdsx_strdup(path);
    *slash = '/';
    if (rc == 0)
        rc = dir ? write_durable(dir, path, data) : TDSX_E_NOMEM;
    tdsx_free(dir);
    return rc;
}

static void witness_work(uv_work_t *w)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    tdsx_note_t *next = NULL, *last = NULL;
    tdsx_checkpoint_t ncp, lcp;
    char *path = NULL;
    int has_last = 0;
    j->rc =
        tdsx_checkpoint_open(tdsx_buf_bytes(&j->note), &j->peer_v, NULL, 0, j->peer, &next, &ncp);
    if (j->rc) {
        j->why = "the checkpoint is not a valid one signed by the node";
        goto done;
    }
    j->size = ncp.size;
    /* The caller's own check runs inside the job: one decision per node at a time. */
    if (j->precheck && (j->rc = j->precheck(j->cb_ud, &j->why)) != 0)
        goto done;
    if (!(path = witness_file(L, j->peer))) {
        j->rc = TDSX_E_NOMEM;
        goto done;
    }
    int rc = read_note(path, &j->last);
    if (rc == 0) {
        /* Our own record must carry our cosignature: a damaged file is not a reason to trust
         * whatever comes next. */
        rc = tdsx_checkpoint_open(tdsx_buf_bytes(&j->last), &j->peer_v, &L->self_cosig_v, 1,
                                  j->peer, &last, &lcp);
        if (rc == 0 && !tdsx_note_verified_by(last, &L->self_cosig_v))
            rc = TDSX_E_NOTE_UNVERIFIED;
        if (rc) {
            j->rc = TDSX_E_LOG_CORRUPT;
            j->why = "the witness's record for this node is damaged";
            goto done;
        }
        has_last = 1;
        j->from = lcp.size;
    } else if (rc != TDSX_E_NOTFOUND) {
        j->rc = rc;
        j->why = "the witness could not read its record for this node";
        goto done;
    }
    int keep_record = 0;
    if (j->prefix_ok && has_last && ncp.size < lcp.size) {
        /* A report states a checkpoint older than the one cosigned since: it is part of the
         * one view when the record extends it (the same rule, read the other way round). */
        keep_record = 1;
        j->rc = j->old_size != lcp.size
                    ? TDSX_E_STATE
                    : tdsx__log_witness_check(&ncp, &lcp, ncp.size, j->hashes, j->nhashes);
    } else {
        j->rc = tdsx__log_witness_check(has_last ? &lcp : NULL, &ncp, j->old_size, j->hashes,
                                        j->nhashes);
    }
    if (j->rc == TDSX_E_STATE) {
        j->why = "the witness cosigned another size for this node: prove from that one";
        goto done;
    }
    if (j->rc) {
        j->why = "not an extension of the checkpoint the witness cosigned for this node";
        goto done;
    }
    /* Cosign the text and the node's own signature line only: lines by others are not ours
     * to vouch for. */
    const tdsx_note_sig_t *sig = tdsx_note_verified_by(next, &j->peer_v);
    tdsx_bytes_t text = tdsx_note_text(next);
    tdsx_buf_t clean;
    tdsx_buf_init(&clean, TDSX_NOTE_MAX);
    j->rc = sig ? 0 : TDSX_E_NOTE_UNVERIFIED;
    if (j->rc == 0)
        j->rc = tdsx_buf_append(&clean, text.p, text.n);
    if (j->rc == 0)
        j->rc = tdsx_buf_append(&clean, "\n", 1);
    if (j->rc == 0)
        j->rc = tdsx_buf_append(&clean, sig->line.p, sig->line.n);
    int64_t now = tdsx_now();
    if (j->rc == 0)
        j->rc = tdsx_checkpoint_cosign(tdsx_buf_bytes(&clean), L->cosigner,
                                       (uint64_t)(now > 0 ? now : 0), &j->out);
    tdsx_buf_free(&clean);
    if (j->rc == 0 && !keep_record && mkdir(L->witness_dir, 0700) != 0 && errno != EEXIST)
        j->rc = TDSX_E_IO;
    if (j->rc == 0 && !keep_record)
        j->rc = write_durable(L->witness_dir, path, tdsx_buf_bytes(&j->out));
    if (j->rc == 0 && j->keep_path)
        j->rc = keep_file(j->keep_path, tdsx_buf_bytes(&j->keep));
    if (j->rc)
        j->why = "the witness could not cosign or record it";
done:
    tdsx_note_free(next);
    tdsx_note_free(last);
    tdsx_free(path);
}

static void start_witness(tdsx_nodelog_t *L);

/* A refusal the node's operator must hear of and the witness's report must count. */
static int counts_as_refusal(int rc)
{
    switch (rc) {
    case 0:
    case TDSX_E_STATE:
    case TDSX_E_IO:
    case TDSX_E_NOMEM:
    case TDSX_E_LOG_CORRUPT:
    case TDSX_E_TOOBIG: return 0;
    default: return 1;
    }
}

static void witness_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    int rc = status ? TDSX_E_IO : j->rc;
    L->witnessing = 0;
    if (rc == 0) {
        L->w_cosigned++;
        tdsx_log(TDSX_LOG_INFO, "log.witnessed", TDSX_KV_S("node", j->peer),
                 TDSX_KV_I("size", j->size));
    } else if (counts_as_refusal(rc)) {
        L->w_refused++;
        tdsx_log(TDSX_LOG_ERROR, "log.witness_refused", TDSX_KV_S("node", j->peer),
                 TDSX_KV_I("size", j->size), TDSX_KV_I("old_size", j->old_size),
                 TDSX_KV_I("cosigned_size", j->from), TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", j->why ? j->why : tdsx_strerror(rc)));
        /* The evidence goes in our own log: both checkpoints, as they were. */
        const char *name = tdsx_err_name(rc);
        tdsx_log_entry_t e = {TDSX_LOG_ENTRY_WITNESS_REFUSAL, 4, {{0}}};
        e.item[0] = tdsx_bytes(j->peer, strlen(j->peer));
        e.item[1] = tdsx_bytes(name, strlen(name));
        e.item[2] = tdsx_buf_bytes(&j->last);
        e.item[3] = tdsx_buf_bytes(&j->note);
        tdsx__log_event(L->node, &e);
    } else {
        tdsx_log(rc == TDSX_E_STATE ? TDSX_LOG_INFO : TDSX_LOG_ERROR, "log.witness_answer",
                 TDSX_KV_S("node", j->peer), TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", j->why ? j->why : tdsx_strerror(rc)));
    }
    tdsx_conn_t *c = j->cb ? NULL : tdsx__node_find_conn(L->node, j->peer);
    if (j->cb)
        j->cb(j->cb_ud, rc, rc ? j->why : NULL, tdsx_buf_bytes(&j->out),
              rc ? tdsx_buf_bytes(&j->last) : tdsx_bytes(NULL, 0));
    else if (c && answer_submit(c, j->stream, rc, rc ? j->why : NULL, tdsx_buf_bytes(&j->out),
                                rc ? tdsx_buf_bytes(&j->last) : tdsx_bytes(NULL, 0)) != 0)
        tdsx_log(TDSX_LOG_DEBUG, "log.witness_answer_dropped", TDSX_KV_S("node", j->peer));
    job_free(j);
    start_witness(L);
}

/* One node's checkpoint at a time: each decision reads and replaces that node's record. */
static void start_witness(tdsx_nodelog_t *L)
{
    while (!L->witnessing && L->wq_head) {
        job_t *j = L->wq_head;
        L->wq_head = j->next;
        if (!L->wq_head)
            L->wq_tail = NULL;
        L->wq_len--;
        if (job_queue(j, witness_work, witness_done) == 0) {
            L->witnessing = 1;
            return;
        }
        tdsx_conn_t *c = tdsx__node_find_conn(L->node, j->peer);
        if (j->cb)
            j->cb(j->cb_ud, TDSX_E_AGAIN, NULL, tdsx_bytes(NULL, 0), tdsx_bytes(NULL, 0));
        else if (c)
            (void)answer_submit(c, j->stream, TDSX_E_AGAIN, NULL, tdsx_bytes(NULL, 0),
                                tdsx_bytes(NULL, 0));
        job_free(j);
    }
}

/* Checks a submission's sizes; the proof hashes must be 32 bytes each. */
static int submission_ok(tdsx_bytes_t checkpoint, const ProtobufCBinaryData *proof, size_t n)
{
    int bad = checkpoint.n == 0 || checkpoint.n > TDSX_NOTE_MAX || n > TDSX_MERKLE_CONSISTENCY_MAX;
    for (size_t i = 0; !bad && i < n; i++)
        bad = proof[i].len != TDSX_HASH_LEN;
    return !bad;
}

/* A witness job for peer's checkpoint, queued behind the others (one decision at a time). */
static int queue_witness(tdsx_nodelog_t *L, const char *peer, tdsx_bytes_t peer_cert,
                         tdsx_bytes_t checkpoint, uint64_t old_size,
                         const ProtobufCBinaryData *proof, size_t nproof, job_t **out)
{
    uint8_t pk[TDSX_ED25519_PK_LEN];
    job_t *j = job_new(L, J_WITNESS);
    if (!j)
        return TDSX_E_NOMEM;
    int rc = cert_pubkey(peer_cert, pk);
    if (rc == 0)
        rc = tdsx_note_verifier_init(&j->peer_v, peer, TDSX_NOTE_ED25519, pk);
    if (rc == 0)
        rc = tdsx_buf_append(&j->note, checkpoint.p, checkpoint.n);
    if (rc) {
        job_free(j);
        return rc;
    }
    snprintf(j->peer, sizeof j->peer, "%s", peer);
    j->old_size = old_size;
    j->nhashes = nproof;
    for (size_t i = 0; i < j->nhashes; i++)
        memcpy(j->hashes[i].b, proof[i].data, TDSX_HASH_LEN);
    *out = j;
    return 0;
}

static void enqueue_witness(tdsx_nodelog_t *L, job_t *j)
{
    if (L->wq_tail)
        L->wq_tail->next = j;
    else
        L->wq_head = j;
    L->wq_tail = j;
    L->wq_len++;
    start_witness(L);
}

static int on_submit(tdsx_nodelog_t *L, tdsx_conn_t *c, const Tdsx__Frame *f,
                     tdsx_bytes_t peer_cert)
{
    const Tdsx__CheckpointSubmit *s = f->checkpoint_submit;
    const char *peer = tdsx__conn_peer_id(c);
    if (L->node->cfg.role != TDSX_ROLE_CENTRE)
        return answer_submit(c, f->stream_id, TDSX_E_UNSUPPORTED, "this node is not a witness",
                             tdsx_bytes(NULL, 0), tdsx_bytes(NULL, 0));
    tdsx_bytes_t cp = tdsx_bytes(s->checkpoint.data, s->checkpoint.len);
    if (!submission_ok(cp, s->consistency_proof, s->n_consistency_proof)) {
        tdsx_log(TDSX_LOG_WARN, "log.witness_bad_submit", TDSX_KV_S("node", peer));
        return answer_submit(c, f->stream_id, TDSX_E_PROTO_FIELD,
                             "checkpoint missing or too large, or a proof hash not 32 bytes",
                             tdsx_bytes(NULL, 0), tdsx_bytes(NULL, 0));
    }
    if (L->wq_len >= TDSX_LOG_WITNESS_QUEUE_MAX)
        return answer_submit(c, f->stream_id, TDSX_E_AGAIN, NULL, tdsx_bytes(NULL, 0),
                             tdsx_bytes(NULL, 0));
    job_t *j = NULL;
    int rc = queue_witness(L, peer, peer_cert, cp, s->old_size, s->consistency_proof,
                           s->n_consistency_proof, &j);
    if (rc)
        return rc == TDSX_E_NOMEM ? rc
                                  : answer_submit(c, f->stream_id, rc, NULL, tdsx_bytes(NULL, 0),
                                                  tdsx_bytes(NULL, 0));
    j->stream = f->stream_id;
    enqueue_witness(L, j);
    return 0;
}

int tdsx__log_witness(tdsx_node_t *n, const char *peer, tdsx_bytes_t peer_cert,
                      tdsx_bytes_t checkpoint, uint64_t old_size, const ProtobufCBinaryData *proof,
                      size_t nproof, const char *keep_path, tdsx_bytes_t keep,
                      tdsx_log_precheck_cb precheck, tdsx_log_witness_cb cb, void *ud)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!peer || !cb || (nproof && !proof))
        return TDSX_E_INVAL;
    if (!L)
        return TDSX_E_STATE;
    if (n->cfg.role != TDSX_ROLE_CENTRE)
        return TDSX_E_UNSUPPORTED;
    if (!submission_ok(checkpoint, proof, nproof))
        return TDSX_E_PROTO_FIELD;
    if (L->wq_len >= TDSX_LOG_WITNESS_QUEUE_MAX)
        return TDSX_E_AGAIN;
    job_t *j = NULL;
    int rc = queue_witness(L, peer, peer_cert, checkpoint, old_size, proof, nproof, &j);
    if (rc == 0 && keep_path) {
        j->keep_path = tdsx_strdup(keep_path);
        rc = j->keep_path ? tdsx_buf_append(&j->keep, keep.p, keep.n) : TDSX_E_NOMEM;
    }
    if (rc) {
        job_free(j);
        return rc;
    }
    j->prefix_ok = 1;
    j->precheck = precheck;
    j->cb = cb;
    j->cb_ud = ud;
    enqueue_witness(L, j);
    return 0;
}

tdsx_tlog_t *tdsx__log_store(tdsx_node_t *n)
{
    return n && n->log ? n->log->tlog : NULL;
}

const tdsx_note_signer_t *tdsx__log_key(tdsx_node_t *n)
{
    return n && n->log ? n->log->key : NULL;
}

int tdsx__log_published(tdsx_node_t *n, tdsx_buf_t *note, uint64_t *size, tdsx_hash_t *root)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!L || !note || !size || !root)
        return TDSX_E_STATE;
    if (!L->has_pub)
        return TDSX_E_NOTFOUND;
    int rc = tdsx_buf_append(note, L->published.p, L->published.len);
    if (rc == 0) {
        *size = L->pub_size;
        *root = L->pub_root;
    }
    return rc;
}

const char *tdsx__log_witness_id(tdsx_node_t *n)
{
    return n && n->log ? n->log->witness : NULL;
}

uint64_t tdsx__log_cosigned_size(tdsx_node_t *n)
{
    return n && n->log && n->log->has_cos ? n->log->cos_size : 0;
}

int tdsx__log_cert_key(tdsx_bytes_t der, uint8_t pk[TDSX_ED25519_PK_LEN])
{
    return cert_pubkey(der, pk);
}

int tdsx__log_frame(tdsx_node_t *n, tdsx_conn_t *c, const Tdsx__Frame *f, tdsx_bytes_t peer_cert)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!c || !f)
        return TDSX_E_INVAL;
    if (!L)
        return 0; /* not started yet, or going away: the submitter retries */
    switch (f->body_case) {
    case TDSX__FRAME__BODY_CHECKPOINT_SUBMIT: return on_submit(L, c, f, peer_cert);
    case TDSX__FRAME__BODY_CHECKPOINT_COSIGNED: return on_cosigned(L, c, f, peer_cert);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

/* ---- control requests ------------------------------------------------------------------------ */

static void status_work(uv_work_t *w)
{
    job_t *j = w->data;
    j->rc = current_checkpoint(j);
    /* The centre's count of the nodes it witnesses: one record file each. */
    if (j->rc == 0 && j->L->node->cfg.role == TDSX_ROLE_CENTRE) {
        uv_fs_t req;
        if (uv_fs_scandir(NULL, &req, j->L->witness_dir, 0, NULL) >= 0) {
            uv_dirent_t ent;
            while (uv_fs_scandir_next(&req, &ent) != UV_EOF)
                if (ent.type == UV_DIRENT_FILE && !strstr(ent.name, ".tmp."))
                    j->nodes++;
        }
        uv_fs_req_cleanup(&req);
    }
}

static void proof_work(uv_work_t *w)
{
    job_t *j = w->data;
    tdsx_nodelog_t *L = j->L;
    j->rc = current_checkpoint(j);
    if (j->rc)
        return;
    if (j->kind == J_PROOF) {
        if (j->index >= j->size) {
            j->rc = TDSX_E_NOTFOUND;
            j->why = "no entry with that index in the latest checkpoint";
            return;
        }
        j->rc = tdsx_tlog_entry(L->tlog, j->index, &j->entry);
        if (j->rc == 0)
            j->rc = tdsx_tlog_inclusion_proof(L->tlog, j->index, j->size, j->hashes, &j->nhashes);
        return;
    }
    if (j->from > j->size) {
        j->rc = TDSX_E_NOTFOUND;
        j->why = "the latest checkpoint is smaller than that size";
        return;
    }
    j->rc = tdsx_tlog_root_at(L->tlog, j->from, &j->from_root);
    if (j->rc == 0)
        j->rc = tdsx_tlog_consistency_proof(L->tlog, j->from, j->size, j->hashes, &j->nhashes);
}

static void reply_error(tdsx_ctl_client_t *cl, uint64_t req_id, int err, const char *why)
{
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LocalError le = TDSX__LOCAL_ERROR__INIT;
    le.code = tdsx_err_wire(err);
    le.message = (char *)(why ? why : tdsx_strerror(err));
    resp.id = req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_ERROR;
    resp.error = &le;
    tdsx__control_reply(cl, &resp);
}

static void reply_status(tdsx_ctl_client_t *cl, const job_t *j)
{
    tdsx_nodelog_t *L = j->L;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LogStatusResponse st = TDSX__LOG_STATUS_RESPONSE__INIT;
    tdsx_buf_t vkey;
    tdsx_buf_init(&vkey, TDSX_NOTE_VKEY_MAX + 1);
    if (tdsx_note_verifier_format(&L->self_v, &vkey) != 0 || tdsx_buf_append(&vkey, "", 1) != 0)
        tdsx_buf_reset(&vkey);
    st.size = j->size;
    st.root.data = (uint8_t *)j->root.b;
    st.root.len = TDSX_HASH_LEN;
    st.checkpoint.data = j->note.p;
    st.checkpoint.len = j->note.len;
    st.published.data = L->published.p;
    st.published.len = L->published.len;
    st.cosigned.data = L->cosigned.p;
    st.cosigned.len = L->cosigned.len;
    st.witness = (char *)(L->witness ? L->witness : "");
    st.witness_state = L->witness_state;
    st.vkey = vkey.len ? (char *)vkey.p : "";
    st.queued = L->queued;
    st.appended = L->appended;
    st.witness_cosigned = L->w_cosigned;
    st.witness_refused = L->w_refused;
    st.witnessed_nodes = j->nodes;
    st.error = (char *)(L->broken ? tdsx_err_name(L->broken) : "");
    resp.id = j->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_LOG_STATUS;
    resp.log_status = &st;
    tdsx__control_reply(cl, &resp);
    tdsx_buf_free(&vkey);
}

static void reply_proof(tdsx_ctl_client_t *cl, job_t *j)
{
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LogProofResponse pr = TDSX__LOG_PROOF_RESPONSE__INIT;
    ProtobufCBinaryData hashes[TDSX_MERKLE_CONSISTENCY_MAX];
    for (size_t i = 0; i < j->nhashes; i++) {
        hashes[i].data = j->hashes[i].b;
        hashes[i].len = TDSX_HASH_LEN;
    }
    pr.checkpoint.data = j->note.p;
    pr.checkpoint.len = j->note.len;
    pr.hashes = hashes;
    pr.n_hashes = j->nhashes;
    pr.consistency = j->kind == J_CONSISTENCY;
    if (pr.consistency) {
        pr.from = j->from;
        pr.from_root.data = j->from_root.b;
        pr.from_root.len = TDSX_HASH_LEN;
    } else {
        pr.index = j->index;
        pr.entry.data = j->entry.p;
        pr.entry.len = j->entry.len;
    }
    resp.id = j->req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_LOG_PROOF;
    resp.log_proof = &pr;
    tdsx__control_reply(cl, &resp);
}

static void local_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    int rc = status ? TDSX_E_IO : j->rc;
    tdsx_ctl_client_t *cl = tdsx__control_find(j->L->node, j->client);
    if (cl && rc)
        reply_error(cl, j->req_id, rc, j->why);
    else if (cl && j->kind == J_STATUS)
        reply_status(cl, j);
    else if (cl)
        reply_proof(cl, j);
    job_free(j);
}

int tdsx__log_local(tdsx_node_t *n, tdsx_ctl_client_t *cl, const Tdsx__LocalRequest *req,
                    tdsx_arena_t *arena, Tdsx__LocalResponse *resp)
{
    (void)arena;
    (void)resp;
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!L)
        return TDSX_E_STATE;
    job_kind_t kind;
    switch (req->body_case) {
    case TDSX__LOCAL_REQUEST__BODY_LOG_STATUS: kind = J_STATUS; break;
    case TDSX__LOCAL_REQUEST__BODY_LOG_PROOF: kind = J_PROOF; break;
    case TDSX__LOCAL_REQUEST__BODY_LOG_CONSISTENCY: kind = J_CONSISTENCY; break;
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
    job_t *j = job_new(L, kind);
    if (!j)
        return TDSX_E_NOMEM;
    j->client = tdsx__control_serial(cl);
    j->req_id = req->id;
    if (kind == J_PROOF)
        j->index = req->log_proof->index;
    else if (kind == J_CONSISTENCY)
        j->from = req->log_consistency->from;
    int rc = job_queue(j, kind == J_STATUS ? status_work : proof_work, local_done);
    if (rc) {
        job_free(j);
        return rc;
    }
    return 1;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    tdsx_nodelog_t *L = t->data;
    start_batch(L); /* after a failed uv_queue_work */
    if (L->submitting && L->sub_deadline && uv_now(L->node->loop) > L->sub_deadline) {
        L->submitting = 0;
        L->sub_deadline = 0;
        set_witness_state(L, "the witness did not answer within %u ms",
                          TDSX_LOG_WITNESS_TIMEOUT_MS);
        tdsx_log(TDSX_LOG_WARN, "log.witness_silent", TDSX_KV_S("witness", L->witness));
    }
    maybe_publish(L);
    maybe_submit(L);
}

static void nodelog_free(tdsx_nodelog_t *L)
{
    if (!L)
        return;
    if (L->queued)
        tdsx_log(TDSX_LOG_ERROR, "log.entries_dropped", TDSX_KV_I("entries", L->queued));
    for (item_t *it = L->head, *next; it; it = next) {
        next = it->next;
        tdsx_free(it);
    }
    for (job_t *j = L->wq_head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    tdsx_tlog_close(L->tlog);
    tdsx_note_signer_free(L->key);
    tdsx_note_signer_free(L->cosigner);
    tdsx_buf_free(&L->published);
    tdsx_buf_free(&L->cosigned);
    tdsx_free(L->dir);
    tdsx_free(L->data_dir);
    tdsx_free(L->published_path);
    tdsx_free(L->cosigned_path);
    tdsx_free(L->witness_dir);
    tdsx_free(L);
}

static int load_keys(tdsx_nodelog_t *L)
{
    tdsx_node_t *n = L->node;
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    char *path = path_of(n->cfg.credentials, TDSX_CRED_SIGN_KEY);
    int rc = path ? tdsx_key_load_ed25519(path, seed) : TDSX_E_NOMEM;
    tdsx_free(path);
    if (rc)
        return rc;
    rc = tdsx_note_signer_new(n->self_id, TDSX_NOTE_ED25519, seed, &L->key);
    if (rc == 0)
        rc = tdsx_note_signer_new(n->self_id, TDSX_NOTE_COSIG, seed, &L->cosigner);
    sodium_memzero(seed, sizeof seed);
    if (rc == 0) {
        L->self_v = *tdsx_note_signer_verifier(L->key);
        L->self_cosig_v = *tdsx_note_signer_verifier(L->cosigner);
    }
    return rc;
}

/* The recovered log must extend the last published checkpoint: same root at its size. */
static int check_published(tdsx_nodelog_t *L)
{
    int rc = read_note(L->published_path, &L->published);
    if (rc == TDSX_E_NOTFOUND)
        return 0;
    if (rc == 0)
        rc = open_ours(L, tdsx_buf_bytes(&L->published), NULL, &L->pub_size, &L->pub_root);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "log.published_invalid", TDSX_KV_S("file", L->published_path),
                 TDSX_KV_E("err", rc));
        return TDSX_E_LOG_CORRUPT;
    }
    L->has_pub = 1;
    tdsx_hash_t root;
    rc = L->size < L->pub_size ? TDSX_E_LOG_INCONSISTENT
                               : tdsx_tlog_root_at(L->tlog, L->pub_size, &root);
    if (rc == 0 && sodium_memcmp(root.b, L->pub_root.b, TDSX_HASH_LEN) != 0)
        rc = TDSX_E_LOG_INCONSISTENT;
    if (rc)
        tdsx_log(TDSX_LOG_ERROR, "log.inconsistent", TDSX_KV_S("dir", L->dir),
                 TDSX_KV_I("size", L->size), TDSX_KV_I("published_size", L->pub_size),
                 TDSX_KV_E("err", rc),
                 TDSX_KV_S("reason", "the log directory does not extend the checkpoint this "
                                     "node published (a stale or foreign copy?): refusing to "
                                     "sign anything on top of it"));
    return rc;
}

static void load_cosigned(tdsx_nodelog_t *L)
{
    int rc = read_note(L->cosigned_path, &L->cosigned);
    if (rc == TDSX_E_NOTFOUND)
        return;
    if (rc == 0)
        rc = open_ours(L, tdsx_buf_bytes(&L->cosigned), NULL, &L->cos_size, &L->cos_root);
    if (rc) {
        /* Not fatal: the witness tells us its view again. */
        tdsx_log(TDSX_LOG_WARN, "log.cosigned_invalid", TDSX_KV_S("file", L->cosigned_path),
                 TDSX_KV_E("err", rc));
        tdsx_buf_reset(&L->cosigned);
        return;
    }
    L->has_cos = 1;
    set_witness_state(L, "cosigned size %llu (before this start)", (unsigned long long)L->cos_size);
}

int tdsx__log_start(tdsx_node_t *n)
{
    tdsx_nodelog_t *L = tdsx_calloc(1, sizeof *L);
    int rc = L ? 0 : TDSX_E_NOMEM;
    if (rc)
        return rc;
    L->node = n;
    tdsx_buf_init(&L->published, TDSX_NOTE_MAX);
    tdsx_buf_init(&L->cosigned, TDSX_NOTE_MAX);
    L->dir = path_of(n->cfg.data_dir, TDSX_LOG_DIR);
    L->data_dir = tdsx_strdup(n->cfg.data_dir);
    L->published_path = path_of(n->cfg.data_dir, TDSX_LOG_PUBLISHED_FILE);
    L->cosigned_path = path_of(n->cfg.data_dir, TDSX_LOG_COSIGNED_FILE);
    L->witness_dir = path_of(n->cfg.data_dir, TDSX_LOG_WITNESS_DIR);
    if (!L->dir || !L->data_dir || !L->published_path || !L->cosigned_path || !L->witness_dir) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if (n->cfg.witness && strcmp(n->cfg.witness, n->self_id) != 0) {
        /* With bundles the witness may still be on its way (node.c dials it once it comes):
         * submissions wait for a connection to it either way. */
        if (!tdsx_registry_find(n->registry, n->cfg.witness) && !tdsx__node_witness_may_wait(n)) {
            tdsx_log(TDSX_LOG_ERROR, "log.witness_unknown", TDSX_KV_S("witness", n->cfg.witness),
                     TDSX_KV_S("reason", "the witness is not in the member registry"));
            rc = TDSX_E_NOTFOUND;
            goto fail;
        }
        L->witness = n->cfg.witness;
    }
    if ((rc = load_keys(L)) != 0) {
        tdsx_log(TDSX_LOG_ERROR, "log.key_failed", TDSX_KV_E("err", rc));
        goto fail;
    }
    if ((rc = tdsx_tlog_open(L->dir, L->key, &L->tlog)) != 0) {
        tdsx_log(TDSX_LOG_ERROR, "log.open_failed", TDSX_KV_S("dir", L->dir), TDSX_KV_E("err", rc));
        goto fail;
    }
    tdsx_tlog_head(L->tlog, &L->size, NULL);
    if ((rc = check_published(L)) != 0)
        goto fail;
    load_cosigned(L);
    uv_timer_init(n->loop, &L->timer);
    L->timer.data = L;
    L->timer_open = 1;
    uv_timer_start(&L->timer, on_tick, n->cfg.checkpoint_interval_ms,
                   n->cfg.checkpoint_interval_ms);
    n->log = L;
    tdsx_log(TDSX_LOG_INFO, "log.opened", TDSX_KV_S("dir", L->dir), TDSX_KV_I("size", L->size),
             TDSX_KV_I("published_size", L->pub_size),
             TDSX_KV_S("witness", L->witness ? L->witness : ""));
    log_key(n);
    tdsx__log_policy(n, "start");
    /* SPEC §11: the log holds every receipt the node is party to, also one stored just before
     * a crash. Its failure is logged; the node still starts (the receipts stay unlogged). */
    tdsx__exchange_relog(n);
    return 0;
fail:
    nodelog_free(L);
    return rc;
}

void tdsx__log_close(tdsx_node_t *n)
{
    tdsx_nodelog_t *L = n ? n->log : NULL;
    if (!L || !L->timer_open)
        return;
    L->timer_open = 0;
    uv_close((uv_handle_t *)&L->timer, NULL);
}

void tdsx__log_free(tdsx_node_t *n)
{
    if (!n)
        return;
    nodelog_free(n->log);
    n->log = NULL;
}
