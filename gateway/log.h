/*
 * log.h — the node's transparency log as the daemon runs it (SPEC §11). Internal to gateway/.
 *
 * The store underneath is tlog.h (C2SP tlog-tiles under <data_dir>/log, blocking calls); this
 * layer keeps the event loop off the disk and decides what goes in, when it counts, and who
 * vouches for it:
 *
 *  - Appends. Entries queue in memory; one batch at a time goes to the libuv thread pool as
 *    one tdsx_tlog_append (one group of fsyncs, whatever the batch size). Each entry's
 *    callback runs on the loop once its batch is durable, with its index. An entry counts
 *    only then: the exchange holds back a receipt's acknowledgement (the receiver's NRR to
 *    the sender, the local client's answer) until its entry is durable.
 *
 *  - Published checkpoints. Every append makes the store sign a checkpoint (its recovery needs
 *    one). Every checkpoint_interval, when the log grew, the node publishes the current one:
 *    it checks that the tiles prove it consistent with the last published checkpoint (RFC 9162
 *    §2.1.4) and records it durably in <data_dir>/log.published. At start the recovered log
 *    must extend that record (same root at its size), or the node refuses to start
 *    (TDSX_E_LOG_INCONSISTENT): a restored stale copy of the log directory must not grow into
 *    a fork.
 *
 *  - Witness (config `witness`, the centre). After publishing, the node sends CheckpointSubmit
 *    {checkpoint, old_size, consistency proof from old_size} where old_size is the last
 *    checkpoint the witness cosigned (<data_dir>/log.cosigned). The witness opens the
 *    checkpoint with the node's sign key (from its Hello certificate; origin = the node id),
 *    and cosigns (cosignature/v1) only when it extends the last checkpoint it cosigned for
 *    that node (trust on first use for a node it never saw). It keeps that checkpoint per node
 *    in <data_dir>/witness/<USCC>_<node>. An old_size other than its own is answered
 *    TDSX_E_STATE with its checkpoint, which the node adopts (after verifying both signatures)
 *    and submits again from. A checkpoint that is not an extension is refused
 *    (TDSX_E_LOG_INCONSISTENT): the witness logs the refusal (JSON line log.witness_refused and
 *    a WITNESS_REFUSAL entry in its own log holding both checkpoints) and counts it.
 *
 * Entry format (what each leaf of the Merkle tree holds; at most TDSX_TLOG_ENTRY_MAX bytes):
 *
 *     entry = version (1 byte, 0x01) || type (1 byte) || item*
 *     item  = be16(length) || bytes
 *
 * with exactly the items its type lists, nothing after the last. Signed objects are the exact
 * envelope or note bytes their signer produced (never re-serialised):
 *
 *     RECEIPT (1)           NRO envelope, NRR envelope            (both halves, SPEC §10)
 *     NRD (2)               NRO envelope, NRD envelope            (no receipt came)
 *     AGREEMENT (3)         event ("proposed", "accepted", "refused", "terminated"), by (node
 *                           id), agreement hash (32 bytes), proposal envelope, acceptance
 *                           envelope (may be empty), termination envelope (may be empty),
 *                           reason text (may be empty)
 *     POLICY (4)            why ("start" or "reload"), SHA-256 of the normalised policy (32
 *                           bytes), its source (file path or "(built-in)")
 *     KEY (5)               purpose ("sign"), the DER certificate of the key in use; logged at
 *                           every start
 *     WITNESS_REFUSAL (6)   node id, error name, the checkpoint last cosigned for it (note, may
 *                           be empty), the refused checkpoint (note as submitted)
 *     REPORT (7)            the node's trust-status report (signed note, report.h), the
 *                           centre's cosigned checkpoint it stated (note; empty when the
 *                           report is made, set in the entry logged once the centre answers)
 *
 * Everything here runs on the node's loop thread unless a comment says otherwise.
 */
#ifndef TDSX_GATEWAY_LOG_H
#define TDSX_GATEWAY_LOG_H

#include "crypto.h"
#include "daemon.h"
#include "tlog.h"

/* Caps and names, defined once. */
#define TDSX_LOG_ENTRY_VERSION 0x01
#define TDSX_LOG_ITEMS_MAX 8u                   /* items in one entry */
#define TDSX_LOG_QUEUE_BYTES_MAX (64u << 20)    /* entry bytes waiting for the disk */
#define TDSX_LOG_WITNESS_TIMEOUT_MS 10000u      /* a witness that does not answer by then */
#define TDSX_LOG_WITNESS_QUEUE_MAX 1024u        /* submissions a witness holds at once */
#define TDSX_LOG_DIR "log"                      /* under data_dir: the tiles (tlog.h) */
#define TDSX_LOG_PUBLISHED_FILE "log.published" /* under data_dir */
#define TDSX_LOG_COSIGNED_FILE "log.cosigned"   /* under data_dir */
#define TDSX_LOG_WITNESS_DIR "witness"          /* under data_dir, the centre's */

typedef enum {
    TDSX_LOG_ENTRY_RECEIPT = 1,
    TDSX_LOG_ENTRY_NRD = 2,
    TDSX_LOG_ENTRY_AGREEMENT = 3,
    TDSX_LOG_ENTRY_POLICY = 4,
    TDSX_LOG_ENTRY_KEY = 5,
    TDSX_LOG_ENTRY_WITNESS_REFUSAL = 6,
    TDSX_LOG_ENTRY_REPORT = 7
} tdsx_log_entry_type_t;

/* An entry as its parts: the views are borrowed (from the caller, or from the parsed bytes). */
typedef struct tdsx_log_entry_s {
    uint8_t type;
    size_t n;
    tdsx_bytes_t item[TDSX_LOG_ITEMS_MAX];
} tdsx_log_entry_t;

/* ---- pure functions (no I/O; exposed for tests and tools) ----------------------------------- */

/* "receipt", "nrd", "agreement", "policy", "key", "witness-refusal", "report"; NULL for other
 * types. */
const char *tdsx__log_entry_type_name(uint8_t type);
/* The number of items an entry of this type has; 0 for an unknown type. */
size_t tdsx__log_entry_items(uint8_t type);

/* Appends the encoded entry to out. TDSX_E_INVAL (unknown type, wrong item count, an item over
 * 65535 bytes), TDSX_E_TOOBIG (over TDSX_TLOG_ENTRY_MAX, or out's cap); out unchanged on error. */
TDSX_MUST_CHECK int tdsx__log_entry_encode(const tdsx_log_entry_t *e, tdsx_buf_t *out);
/* Parses untrusted entry bytes; out's views point into `in`. TDSX_E_FORMAT for any defect
 * (other version, unknown type, truncated item, wrong item count, trailing bytes). */
TDSX_MUST_CHECK int tdsx__log_entry_parse(tdsx_bytes_t in, tdsx_log_entry_t *out);

/* One line describing an entry for people (`tdsx log verify-proof`, the demo): its type and
 * what identifies it, e.g. "receipt transfer <hex> <sender> -> <receiver> dataset <id>". Decodes
 * signed payloads WITHOUT verifying them: a description, not evidence. Never fails: an entry
 * that does not parse is described as such. out always ends up NUL-terminated. */
void tdsx__log_entry_describe(tdsx_bytes_t entry, char *out, size_t size);

/*
 * The witness's decision on a node's checkpoint (SPEC §11). `last` is the checkpoint it last
 * cosigned for the node (NULL: none, the node is new), `next` the submitted one (both already
 * opened with the node's key), `old_size` and `proof` what the node sent. Returns 0 when it may
 * be cosigned: there is no `last`, or old_size equals last->size and `proof` proves `next`
 * extends `last` (equal size needs an empty proof and the same root). TDSX_E_STATE when
 * old_size is not last->size (the node must prove from last->size); TDSX_E_LOG_INCONSISTENT
 * when next is smaller than last, its origin differs, or the proof fails.
 */
TDSX_MUST_CHECK int tdsx__log_witness_check(const tdsx_checkpoint_t *last,
                                            const tdsx_checkpoint_t *next, uint64_t old_size,
                                            const tdsx_hash_t *proof, size_t proof_len);

/* ---- the daemon's log -------------------------------------------------------------------- */

typedef struct tdsx_nodelog_s tdsx_nodelog_t;

/* Called on the loop when an appended entry is durable (status 0, its index) or could not be
 * made so (status < 0: TDSX_E_IO, TDSX_E_LOG, ...; index 0). Exactly once per accepted entry. */
typedef void (*tdsx_log_done_cb)(void *ud, int status, uint64_t index);

/*
 * Opens n's log (BLOCKS: recovery reads the tiles; call it at start, before the loop runs the
 * exchange): loads the sign key as the log's note key (name = the node id), opens the store,
 * checks it against log.published (TDSX_E_LOG_INCONSISTENT, TDSX_E_LOG_CORRUPT), loads
 * log.cosigned, starts the checkpoint timer, and queues the KEY and POLICY entries of this
 * start. Sets n->log. The witness named by the config must be in the registry
 * (TDSX_E_NOTFOUND). Errors of tdsx_tlog_open too; everything is logged with its reason.
 */
TDSX_MUST_CHECK int tdsx__log_start(tdsx_node_t *n);
/* Closes the timer (node shutdown). Batches and proofs already on the thread pool finish and
 * their callbacks run; queued entries are still appended. NULL-safe. */
void tdsx__log_close(tdsx_node_t *n);
/* After uv_run returned: closes the store, wipes the keys. NULL-safe. */
void tdsx__log_free(tdsx_node_t *n);

/* Queues the entry (encoded now: e's views may go once this returns). cb may be NULL. Returns
 * 0 (cb will run), TDSX_E_STATE (no log open), TDSX_E_LOG (appends stopped after a failure),
 * TDSX_E_BUSY (the queue is at TDSX_LOG_QUEUE_BYTES_MAX), tdsx__log_entry_encode's errors. */
TDSX_MUST_CHECK int tdsx__log_append(tdsx_node_t *n, const tdsx_log_entry_t *e, tdsx_log_done_cb cb,
                                     void *ud);
/* Looks for an entry equal to e (as encoded) at indexes from `from` up to the current size,
 * reading the tiles (BLOCKS: for the start, see tdsx__exchange_relog). Returns 1 and sets
 * *index to the first match, 0 when there is none, TDSX_E_STATE (no log, NULL e or index),
 * tdsx__log_entry_encode's and tdsx_tlog_entry's errors. */
TDSX_MUST_CHECK int tdsx__log_find(tdsx_node_t *n, const tdsx_log_entry_t *e, uint64_t from,
                                   uint64_t *index);
/* The same, for events nobody waits on: a failure is logged (event log.append_failed). */
void tdsx__log_event(tdsx_node_t *n, const tdsx_log_entry_t *e);
/* Logs the policy now in force (a POLICY entry); why = "start" or "reload". */
void tdsx__log_policy(tdsx_node_t *n, const char *why);
/* Entries durable in the log now (0 with no log open), for /metrics (http.c). */
uint64_t tdsx__log_size(const tdsx_node_t *n);

/* A CheckpointSubmit or CheckpointCosigned frame from the verified peer of c, whose sign
 * certificate (DER, from its Hello) is peer_cert. Returns 0 when handled (bad input is answered
 * or logged, not fatal) or a connection-level error (TDSX_E_NOMEM, a failed send). */
TDSX_MUST_CHECK int tdsx__log_frame(tdsx_node_t *n, tdsx_conn_t *c, const Tdsx__Frame *f,
                                    tdsx_bytes_t peer_cert);

/* A local request with a log_* body, as tdsx__exchange_local: 1 when it will be answered later
 * (everything reads the tiles on the thread pool), or an error (TDSX_E_STATE no log,
 * TDSX_E_NOMEM). Proof errors come back as LocalError answers: TDSX_E_NOTFOUND for an index or
 * size beyond the latest checkpoint. */
TDSX_MUST_CHECK int tdsx__log_local(tdsx_node_t *n, tdsx_ctl_client_t *cl,
                                    const Tdsx__LocalRequest *req, tdsx_arena_t *arena,
                                    Tdsx__LocalResponse *resp);

/* ---- for trust-status reports (report.c) ------------------------------------------------- */

/* The store, for reads on the thread pool (reads may run beside log.c's one append); NULL when
 * no log is open. */
tdsx_tlog_t *tdsx__log_store(tdsx_node_t *n);
/* The log's note key (name = the node id); NULL when no log is open. */
const tdsx_note_signer_t *tdsx__log_key(tdsx_node_t *n);
/* Appends the last published checkpoint note to `note` and gives its size and root: 0,
 * TDSX_E_NOTFOUND (nothing published yet), TDSX_E_STATE (no log), buffer errors. */
TDSX_MUST_CHECK int tdsx__log_published(tdsx_node_t *n, tdsx_buf_t *note, uint64_t *size,
                                        tdsx_hash_t *root);
/* The configured witness (NULL: none) and the size of the last checkpoint it cosigned (0). */
const char *tdsx__log_witness_id(tdsx_node_t *n);
uint64_t tdsx__log_cosigned_size(tdsx_node_t *n);
/* The raw Ed25519 key of a DER sign certificate (TDSX_E_CERT_KEY). */
TDSX_MUST_CHECK int tdsx__log_cert_key(tdsx_bytes_t der, uint8_t pk[TDSX_ED25519_PK_LEN]);

/* The witness's decision, on the loop: rc 0 with the cosigned note, or the error, `why` (static
 * text or NULL) and the note the witness holds for the node (may be empty). */
typedef void (*tdsx_log_witness_cb)(void *ud, int rc, const char *why, tdsx_bytes_t cosigned,
                                    tdsx_bytes_t witnessed);
/* The caller's check, on the THREAD POOL inside the witness job (so it is serialised with every
 * other decision on any node's checkpoint): 0 to go on, else the refusal and *why (static). */
typedef int (*tdsx_log_precheck_cb)(void *ud, const char **why);
/*
 * The centre witnesses the checkpoint a report states (SPEC §11-§12): the same decision, queue
 * and record as a CheckpointSubmit from `peer` (whose sign certificate is peer_cert), with one
 * addition: a checkpoint smaller than the one cosigned for the node is cosigned too (the record
 * kept) when old_size is the recorded size and `proof` proves the record extends it. When it is
 * cosigned and keep_path is not NULL, `keep` is written there durably (0600, missing
 * directories made 0700) before cb runs. precheck (may be NULL) runs first, with ud; its
 * refusal is the decision. cb runs exactly once when 0 is returned; errors:
 * TDSX_E_INVAL, TDSX_E_STATE (no log), TDSX_E_UNSUPPORTED (not a centre), TDSX_E_PROTO_FIELD
 * (checkpoint empty or over TDSX_NOTE_MAX, a proof hash not 32 bytes, too many), TDSX_E_AGAIN
 * (queue full), TDSX_E_CERT_KEY, TDSX_E_NOMEM.
 */
TDSX_MUST_CHECK int tdsx__log_witness(tdsx_node_t *n, const char *peer, tdsx_bytes_t peer_cert,
                                      tdsx_bytes_t checkpoint, uint64_t old_size,
                                      const ProtobufCBinaryData *proof, size_t nproof,
                                      const char *keep_path, tdsx_bytes_t keep,
                                      tdsx_log_precheck_cb precheck, tdsx_log_witness_cb cb,
                                      void *ud);

#endif
