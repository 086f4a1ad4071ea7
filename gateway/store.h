/*
 * store.h — a node's durable state (SPEC §9, §14): metadata in SQLite (WAL mode) and payloads
 * in a content-addressed object directory.
 *
 *   <data_dir>/meta.db          SQLite, 0600: catalog, transfers, receipts, peers' sign certs,
 *                               agreements
 *   <data_dir>/objects/ab/<64 hex>   committed payloads, named by their SHA-256, 0600
 *   <data_dir>/tmp/<32 hex>.part     payloads being received, named by transfer id, 0600
 *
 * Nothing here knows libuv. Calls block (SQLite, fsync); the daemon decides which run on the
 * thread pool. A store is used from one thread at a time.
 *
 * Integrity rule: an object appears under objects/ only after its bytes were fsynced and their
 * length and SHA-256 matched what was expected; a rejected or interrupted payload never
 * becomes visible there, and nothing already stored is touched by a failed write.
 *
 * Durability: SQLite runs in WAL mode with synchronous=NORMAL (safe from a process crash, the
 * last commits may roll back after a power loss) for the catalog and peers' certificates, and
 * with synchronous=FULL (the WAL is fsynced at each commit) for what is promised to others:
 * transfer records and their updates, sequence numbers, receipts, agreements and catalog
 * withdrawals. Once one of those calls returns 0 the change survives a power loss.
 *
 * Memory: our allocations and SQLite's own (configured once, before SQLite initialises) go
 * through tdsx_malloc, so injected allocation failures reach both; they surface as
 * TDSX_E_NOMEM and leave the store usable.
 *
 * Unless a comment says otherwise, pointer arguments must not be NULL (TDSX_E_INVAL), string
 * arguments must not be empty (TDSX_E_INVAL), and a string or fixed-array field longer than
 * its array (or than TDSX_STORE_NAME_MAX for identities and ids given as arguments) is
 * refused with TDSX_E_TOOBIG, never truncated. Any call on the store made from inside a
 * listing callback fails with TDSX_E_STATE.
 */
#ifndef TDSX_GATEWAY_STORE_H
#define TDSX_GATEWAY_STORE_H

#include "core.h"

#define TDSX_TRANSFER_ID_LEN 16
#define TDSX_SHA256_LEN 32
#define TDSX_STORE_TEXT_MAX 4096u /* title, description, tags text, media type, ids */
#define TDSX_STORE_PAGE_MAX 1000u /* catalog and receipt listings */
#define TDSX_STORE_NAME_MAX 255u  /* identities, peers, owners, dataset ids (char[256] fields) */
#define TDSX_STORE_TOKEN_MAX 600u /* size of a page token buffer (`next`), NUL included */
#define TDSX_STORE_BLOB_MAX (1024u * 1024u) /* each receipt envelope or certificate */

typedef struct tdsx_store_s tdsx_store_t;

/* Opens (creating when absent) the store under data_dir: directories 0700, files 0600,
 * SQLite in WAL mode with foreign keys on, schema created or migrated (PRAGMA user_version).
 * Only the last component of data_dir is created. Leftover tmp/<tid>.part files are kept
 * (they are resumable); leftovers of interrupted imports are removed. Errors: TDSX_E_IO,
 * TDSX_E_NOMEM, TDSX_E_TOOBIG (data_dir longer than about 3960 bytes), TDSX_E_PERM (data_dir,
 * objects/, tmp/ or meta.db and its -wal/-shm files accessible to group or others, or owned by
 * another user: refused, not repaired), TDSX_E_FORMAT (a file that is not a database, a
 * database that is not ours, or one with a newer schema version). */
TDSX_MUST_CHECK int tdsx_store_open(const char *data_dir, tdsx_store_t **out);
/* Commits an open batch (below), then closes. NULL is allowed. */
void tdsx_store_close(tdsx_store_t *s);

/* ---- group commit ------------------------------------------------------------------------
 * A daemon doing many small writes per loop turn would pay one fsync for each. After
 * tdsx_store_batch_begin (for the life of the store; called when no transaction is open) every
 * write joins one transaction, opened by the first write after a commit, until
 * tdsx_store_batch_commit commits it at synchronous=FULL: one fsync for all of them. A write
 * call's own atomicity stays (its writes are a savepoint, undone alone when it fails), but
 * its durability moves to the commit: "once the call returns 0 the change survives a power
 * loss" holds only after tdsx_store_batch_commit returned 0, and the caller must not let
 * anything that depends on the write leave the node before (the daemon holds its output,
 * daemon.h). Reads see the batch's writes. If SQLite rolls the batch back by itself (I/O
 * error, full disk, out of memory) every later write and the commit return that error: the
 * writes since the last commit are lost and the caller must stop as if it had crashed. */
void tdsx_store_batch_begin(tdsx_store_t *s);
/* 1 when the batch holds writes not yet committed (or was lost). */
int tdsx_store_batch_dirty(const tdsx_store_t *s);
/* 0 when nothing was open or everything is now durable; else the error that lost it. */
TDSX_MUST_CHECK int tdsx_store_batch_commit(tdsx_store_t *s);

/* ---- objects ----------------------------------------------------------------------------- */

typedef struct tdsx_object_writer_s tdsx_object_writer_t;

/* Starts (or resumes) receiving the payload of transfer `tid` into tmp/<tid>.part. With
 * resume = 1 an existing part file is kept up to its durable length (what the last
 * tdsx_object_sync reported, stored in the transfer record by the caller and passed as
 * `offset`); bytes past it are cut off and the kept ones re-hashed so the final hash covers
 * the whole payload (resume = 1 with offset 0 and no part file starts afresh). With
 * resume = 0 any old part file is replaced (offset is ignored). The writer holds an exclusive
 * lock on its part file and does not refer to the store (it may outlive it). Errors:
 * TDSX_E_IO, TDSX_E_NOMEM, TDSX_E_STATE (resume asked but the part file is shorter than
 * offset, or another writer has this part file open); the part file is left as it was. */
TDSX_MUST_CHECK int tdsx_object_begin(tdsx_store_t *s, const uint8_t tid[TDSX_TRANSFER_ID_LEN],
                                      int resume, uint64_t offset, tdsx_object_writer_t **out);
/* Appends and hashes. TDSX_E_IO; after a failure every later write, sync and commit returns
 * the same error (the bytes past the durable offset are uncertain; resume from it). */
TDSX_MUST_CHECK int tdsx_object_write(tdsx_object_writer_t *w, const void *p, size_t n);
/* Bytes written so far (durable or not). */
uint64_t tdsx_object_length(const tdsx_object_writer_t *w);
/* fdatasync (and, the first time, fsync of tmp/ so the part file's name is durable too);
 * afterwards *durable = the length now safe on disk. */
TDSX_MUST_CHECK int tdsx_object_sync(tdsx_object_writer_t *w, uint64_t *durable);
/* Finishes: fsync, compare the length and SHA-256 with the expected ones, then link into
 * objects/ (link, not rename: it never replaces an existing object) and fsync the directory. got
 * (may be NULL) receives the hash actually computed. On TDSX_E_INTEGRITY (mismatch) the part file
 * is deleted and nothing is stored. The writer is freed whatever the result; after an I/O failure
 * the part file is kept (resumable). An object with the same hash already present is kept (the
 * bytes are the same) and the part file removed. */
TDSX_MUST_CHECK int tdsx_object_commit(tdsx_object_writer_t *w, const uint8_t sha[TDSX_SHA256_LEN],
                                       uint64_t length, uint8_t got[TDSX_SHA256_LEN]);
/* tdsx_object_commit for many writers at once: every part file is fdatasynced, then all are
 * linked, then each directory that gained a name is fsynced once, so objects sharing objects/ab
 * share its fsync. For each element: w (freed, set to NULL), sha and length (the expectation;
 * sha NULL: none), and on return got and rc, what tdsx_object_commit would have returned for
 * it. One element's failure does not stop the others; a failed directory fsync fails every
 * element not already failed (TDSX_E_IO). */
typedef struct tdsx_object_commit_s {
    tdsx_object_writer_t *w;
    const uint8_t *sha;
    uint64_t length;
    uint8_t got[TDSX_SHA256_LEN];
    int rc;
} tdsx_object_commit_t;
void tdsx_object_commit_many(tdsx_object_commit_t *c, size_t n);
/* Abandons: closes the writer and keeps the part file when keep = 1 (resumable), deletes it
 * otherwise. Frees the writer. NULL is allowed. */
void tdsx_object_abort(tdsx_object_writer_t *w, int keep);

/* Copies a local regular file into the object store (streamed in 64 KiB chunks, hashed on
 * the way, fsync, link into place). Returns its SHA-256 and length. Errors: TDSX_E_NOTFOUND,
 * TDSX_E_IO (also for a path that is not a regular file), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx_store_import(tdsx_store_t *s, const char *path,
                                      uint8_t sha[TDSX_SHA256_LEN], uint64_t *length);
/* Writes the path of a committed object into out (TDSX_E_NOTFOUND when absent, TDSX_E_TOOBIG
 * when size is too small). */
TDSX_MUST_CHECK int tdsx_store_object_path(const tdsx_store_t *s,
                                           const uint8_t sha[TDSX_SHA256_LEN], char *out,
                                           size_t size);

/* ---- catalog (数据登记/上架) ---------------------------------------------------------------- */

typedef struct tdsx_dataset_s {
    char id[256];
    char owner[256]; /* "<USCC>/<node>" */
    char title[512];
    char description[TDSX_STORE_TEXT_MAX];
    char tags[1024]; /* canonical text form (policy/), e.g. "grade=general:2 domain=..." */
    char media_type[128];
    uint64_t size;
    uint8_t sha256[TDSX_SHA256_LEN];
    int64_t published_at;
    int withdrawn;
} tdsx_dataset_t;

/* Inserts or replaces (same owner and id) a descriptor, withdrawn flag included (putting an
 * entry again with withdrawn = 0 publishes it again). id and owner must not be empty
 * (TDSX_E_INVAL); an unterminated field or size > INT64_MAX is TDSX_E_TOOBIG. */
TDSX_MUST_CHECK int tdsx_store_catalog_put(tdsx_store_t *s, const tdsx_dataset_t *d);
/* TDSX_E_NOTFOUND when absent (a withdrawn entry is found, with withdrawn = 1). */
TDSX_MUST_CHECK int tdsx_store_catalog_get(tdsx_store_t *s, const char *owner, const char *id,
                                           tdsx_dataset_t *out);
/* Hides an entry from listings (durable). TDSX_E_NOTFOUND when absent; twice is fine. */
TDSX_MUST_CHECK int tdsx_store_catalog_withdraw(tdsx_store_t *s, const char *owner, const char *id);
/* Pages through entries that are not withdrawn, ordered by (owner, id). `after` is the page
 * token returned by the previous call ("" for the first page); at most `limit` entries
 * (1..TDSX_STORE_PAGE_MAX, else TDSX_E_INVAL) go to cb; next (next_size >=
 * TDSX_STORE_TOKEN_MAX, else TDSX_E_INVAL) receives the token of the next page or "" at the
 * end (a page ending exactly at the last entry already gives ""). `owner` (exact) and `text`
 * (case-sensitive substring of title or description) filter when not NULL. A malformed token
 * is TDSX_E_INVAL. The entry passed to cb is valid only during the call, and cb must not call
 * the store. cb returning non-zero stops the listing and is returned; on any non-zero return
 * next is "". after may be NULL (first page). */
typedef int (*tdsx_dataset_cb)(void *ud, const tdsx_dataset_t *d);
TDSX_MUST_CHECK int tdsx_store_catalog_list(tdsx_store_t *s, const char *owner, const char *text,
                                            const char *after, unsigned limit, tdsx_dataset_cb cb,
                                            void *ud, char *next, size_t next_size);

/* ---- transfers ---------------------------------------------------------------------------- */

typedef enum {
    TDSX_XFER_STARTED = 0,   /* NRO exchanged, bytes flowing */
    TDSX_XFER_COMMITTED = 1, /* receiver: object stored, NRR not yet sent/acknowledged */
    TDSX_XFER_RECEIPTED = 2, /* both halves held: final */
    TDSX_XFER_REFUSED = 3,   /* integrity-failed or policy-refused NRR: final */
    TDSX_XFER_ABORTED = 4,   /* abandoned by either side: final */
    TDSX_XFER_NRD = 5        /* sender: no acknowledgement, NRD logged: final, except that a
                              * late receipt may still move it to RECEIPTED or REFUSED */
} tdsx_xfer_state_t;

typedef struct tdsx_transfer_s {
    uint8_t id[TDSX_TRANSFER_ID_LEN];
    int inbound; /* 1: we receive */
    char peer[256];
    char dataset_id[256];
    uint8_t sha256[TDSX_SHA256_LEN];
    uint64_t length;
    uint64_t durable; /* receiver: bytes safe on disk (resume point) */
    uint64_t sequence;
    tdsx_xfer_state_t state;
    int error; /* TDSX error code of a refusal or abort, 0 otherwise */
    int64_t started_at, finished_at;
} tdsx_transfer_t;

/* Records a new transfer. TDSX_E_DUPLICATE when the id is already known in a final state
 * (a transfer id is never accepted twice; *t is left alone); when known and not final,
 * TDSX_E_EXISTS and *t is overwritten with the stored record (the caller may resume it).
 * started_at 0 is set to tdsx_now() (in *t too). peer must not be empty; TDSX_E_INVAL for an
 * unknown state or inbound other than 0/1, TDSX_E_TOOBIG for unterminated fields or numbers
 * above INT64_MAX. */
TDSX_MUST_CHECK int tdsx_store_transfer_begin(tdsx_store_t *s, tdsx_transfer_t *t);
/* Updates state, durable, error, finished_at of an existing record (the other fields of *t
 * are ignored). TDSX_E_NOTFOUND when unknown. Allowed moves: STARTED to any state, COMMITTED
 * to COMMITTED or a final state, NRD to RECEIPTED or REFUSED (a late receipt); nothing else
 * changes a final record (TDSX_E_STATE). finished_at 0 with a final state is set to
 * tdsx_now(). */
TDSX_MUST_CHECK int tdsx_store_transfer_update(tdsx_store_t *s, const tdsx_transfer_t *t);
TDSX_MUST_CHECK int tdsx_store_transfer_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                                            tdsx_transfer_t *out);
/* The next sequence number for (sender, receiver), starting at 1, durable, strictly
 * increasing across reopen and crashes. TDSX_E_TOOBIG when the pair reached INT64_MAX. */
TDSX_MUST_CHECK int tdsx_store_next_sequence(tdsx_store_t *s, const char *sender,
                                             const char *receiver, uint64_t *out);

/* ---- receipts ------------------------------------------------------------------------------ */

/* A complete receipt as both parties hold it: the exact envelope bytes of the NRO and NRR
 * (never re-serialised) and the DER sign certificates of sender and receiver, so it can be
 * verified offline against the province root. Byte buffers are owned by the struct when
 * returned by the store (free with tdsx_receipt_clear). */
typedef struct tdsx_receipt_s {
    uint8_t transfer_id[TDSX_TRANSFER_ID_LEN];
    char sender[256];
    char receiver[256];
    tdsx_bytes_t nro, nrr, sender_cert, receiver_cert;
    int64_t stored_at;
} tdsx_receipt_t;

/* Stores a receipt (copies the bytes) and marks the transfer RECEIPTED or REFUSED (from the
 * NRR status, given as `refused`, 0 or 1), in one SQLite transaction; stored_at is set by the
 * store (r->stored_at is ignored). nro and nrr must not be empty (TDSX_E_INVAL); the
 * certificates may be (stored empty, e.g. when the peer's connection is gone: its certificate
 * is then in peer_certs); none may exceed TDSX_STORE_BLOB_MAX (TDSX_E_TOOBIG).
 * TDSX_E_DUPLICATE when a receipt for the transfer id exists already; TDSX_E_NOTFOUND when no
 * transfer with that id was recorded (tdsx_store_transfer_begin first); TDSX_E_STATE when the
 * transfer already ended otherwise (ABORTED, REFUSED or RECEIPTED by an update; NRD is allowed:
 * a late receipt). On any error nothing is stored. */
TDSX_MUST_CHECK int tdsx_store_receipt_put(tdsx_store_t *s, const tdsx_receipt_t *r, int refused);
/* The receipt of a transfer, with heap copies of its bytes (tdsx_receipt_clear).
 * TDSX_E_NOTFOUND. *out is zeroed on every error, so clearing it is always safe. */
TDSX_MUST_CHECK int tdsx_store_receipt_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                                           tdsx_receipt_t *out);
/* Receipts newest first (in the order they were stored), paged like the catalog (token = ""
 * or NULL first). The receipt passed to cb borrows its bytes from the store, valid only during
 * the call: copy what must outlive it, and do not tdsx_receipt_clear it. */
typedef int (*tdsx_receipt_cb)(void *ud, const tdsx_receipt_t *r);
TDSX_MUST_CHECK int tdsx_store_receipt_list(tdsx_store_t *s, const char *after, unsigned limit,
                                            tdsx_receipt_cb cb, void *ud, char *next,
                                            size_t next_size);
/* Records that the receipt of transfer `id` is durable in the node's transparency log at
 * `index` (SPEC §11; log.h). Until then the receipt is "unlogged". TDSX_E_NOTFOUND when no
 * receipt for id, TDSX_E_INVAL (NULL id, index over INT64_MAX). The mark is written without a
 * full sync: losing it to a power cut makes the next start log the receipt a second time,
 * never lose it. */
TDSX_MUST_CHECK int
tdsx_store_receipt_logged(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN], uint64_t index);
/* The unlogged receipts (stored, but a crash came before their log entry was durable), oldest
 * first, at most `limit` (1..TDSX_STORE_PAGE_MAX), to cb as in tdsx_store_receipt_list (the
 * bytes are borrowed for the call; cb must not use the store). Receipts stored before schema 4
 * count as logged. A non-zero return of cb stops the walk and is returned. TDSX_E_INVAL. */
TDSX_MUST_CHECK int tdsx_store_receipt_unlogged(tdsx_store_t *s, unsigned limit, tdsx_receipt_cb cb,
                                                void *ud);
/* One past the highest log index recorded for any receipt (0 when none is): a receipt logged
 * but not yet marked when the node stopped can only be at this index or later, since marks are
 * written in index order. TDSX_E_INVAL (NULL next). */
TDSX_MUST_CHECK int tdsx_store_receipt_log_next(tdsx_store_t *s, uint64_t *next);
/* Frees the byte buffers of a receipt returned by tdsx_store_receipt_get and zeroes it. NULL
 * is allowed. */
void tdsx_receipt_clear(tdsx_receipt_t *r);

/* ---- peers' sign certificates --------------------------------------------------------------- */

/* Remembers the DER sign certificate a peer presented (verified by the caller), replacing
 * the previous one. der must not be empty (TDSX_E_INVAL) nor exceed TDSX_STORE_BLOB_MAX. */
TDSX_MUST_CHECK int tdsx_store_peer_cert_put(tdsx_store_t *s, const char *peer, tdsx_bytes_t der);
/* Heap copy of the stored certificate (tdsx_free). TDSX_E_NOTFOUND. */
TDSX_MUST_CHECK int tdsx_store_peer_cert_get(tdsx_store_t *s, const char *peer, uint8_t **der,
                                             size_t *len);

/* ---- agreements (企业数据授权, SPEC §7) ----------------------------------------------------- */

/* Lifecycle as stored. Values equal proto AgreementState; expiry is not a stored state: it
 * follows from not_after and the transfer count, so it needs no write to happen. */
typedef enum {
    TDSX_AGREE_PROPOSED = 1,  /* signed by the proposer only */
    TDSX_AGREE_ACTIVE = 2,    /* both parties signed identical terms */
    TDSX_AGREE_REFUSED = 3,   /* the other party said no: final */
    TDSX_AGREE_TERMINATED = 4 /* either party ended it (or withdrew the proposal): final */
} tdsx_agree_status_t;

#define TDSX_AGREE_ID_LEN 16
#define TDSX_AGREE_PURPOSE_MAX 63u /* purpose_code bytes */

/* One agreement with the signed envelopes that make it up. The text fields are the decoded
 * terms, kept for lookups and listings; the envelopes are the evidence. Byte views are owned by
 * the struct when it comes from tdsx_store_agreement_get (free with tdsx_agreement_clear) and
 * borrowed during a listing callback. */
typedef struct tdsx_agreement_rec_s {
    uint8_t hash[TDSX_SHA256_LEN]; /* SHA-256 of the proposer's envelope: the key */
    uint8_t id[TDSX_AGREE_ID_LEN]; /* AgreementTerms.agreement_id, unique too */
    char provider[256];            /* "<USCC>/<node>" */
    char consumer[256];
    char proposer[256];   /* provider or consumer */
    char dataset_id[256]; /* the subject: one dataset ("" when category is set) */
    char category[128];   /* ... or a category prefix ("" when dataset_id is set) */
    char purpose_code[TDSX_AGREE_PURPOSE_MAX + 1];
    char purpose_text[1024];
    char actions[1024];            /* "receive,relay-to:centre,derive" (agree.c's text form) */
    int64_t not_before, not_after; /* validity, seconds since the epoch, both inclusive */
    uint64_t transfer_limit;       /* 0: none */
    uint64_t transfers_used;       /* receipted transfers counted against the limit */
    tdsx_agree_status_t state;
    char reason[512];               /* why it was refused or terminated ("" otherwise) */
    tdsx_bytes_t proposal;          /* the proposer's AgreementTerms envelope (required) */
    tdsx_bytes_t acceptance;        /* the accepter's envelope of the same payload, or empty */
    tdsx_bytes_t termination;       /* the AgreementTermination envelope, or empty */
    int64_t created_at, updated_at; /* set by the store */
} tdsx_agreement_rec_t;

/* Records a new agreement as given (state PROPOSED, or ACTIVE with an acceptance), durably;
 * transfers_used, created_at and updated_at are set by the store. provider, consumer, proposer
 * and purpose_code must not be empty and exactly one of dataset_id and category must be set
 * (TDSX_E_INVAL); not_before > not_after or transfer_limit above INT64_MAX is TDSX_E_INVAL.
 * TDSX_E_DUPLICATE when the hash or the id is known already (nothing stored). */
TDSX_MUST_CHECK int tdsx_store_agreement_put(tdsx_store_t *s, const tdsx_agreement_rec_t *a);
/* The agreement with this hash (tdsx_agreement_clear the result). TDSX_E_NOTFOUND. *out is
 * zeroed on every error. */
TDSX_MUST_CHECK int tdsx_store_agreement_get(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN],
                                             tdsx_agreement_rec_t *out);
/* The same by agreement id. */
TDSX_MUST_CHECK int tdsx_store_agreement_get_id(tdsx_store_t *s,
                                                const uint8_t id[TDSX_AGREE_ID_LEN],
                                                tdsx_agreement_rec_t *out);
/* Moves an agreement to `to`, durably, in one transaction:
 *   ACTIVE      from PROPOSED; env is the acceptance envelope (required)
 *   REFUSED     from PROPOSED; env must be empty; reason may be ""
 *   TERMINATED  from PROPOSED or ACTIVE; env is the termination envelope (required)
 * reason (NULL = "") is kept, at most 511 bytes (TDSX_E_TOOBIG). TDSX_E_NOTFOUND for an unknown
 * hash, TDSX_E_STATE for any other move (the record is unchanged), TDSX_E_INVAL for another
 * `to` or a missing envelope. */
TDSX_MUST_CHECK int tdsx_store_agreement_move(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN],
                                              tdsx_agree_status_t to, tdsx_bytes_t env,
                                              const char *reason);
/* Counts one receipted transfer against an ACTIVE agreement's limit, durably; *used (may be
 * NULL) receives the new count. TDSX_E_NOTFOUND; TDSX_E_STATE when the agreement is not ACTIVE
 * or its limit is already reached (nothing counted). */
TDSX_MUST_CHECK int tdsx_store_agreement_use(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN],
                                             uint64_t *used);
/* Agreements newest first, paged like receipts (token "" or NULL first, next >=
 * TDSX_STORE_TOKEN_MAX bytes). The record passed to cb borrows its bytes from the store, valid
 * only during the call; cb must not call the store. */
typedef int (*tdsx_agreement_cb)(void *ud, const tdsx_agreement_rec_t *a);
TDSX_MUST_CHECK int tdsx_store_agreement_list(tdsx_store_t *s, const char *after, unsigned limit,
                                              tdsx_agreement_cb cb, void *ud, char *next,
                                              size_t next_size);
/* Every ACTIVE or TERMINATED agreement from `provider` to `consumer` whose subject covers a
 * transfer of dataset_id with category `category`: the same dataset id, or a category selector
 * equal to the category or a dotted prefix of it ("production.process" covers
 * "production.process.quality", not "production.processing"). Newest first, at most
 * TDSX_STORE_PAGE_MAX; cb as in the listing (returning non-zero stops and is returned).
 * dataset_id and category may be "" (they then match nothing). */
TDSX_MUST_CHECK int tdsx_store_agreement_match(tdsx_store_t *s, const char *provider,
                                               const char *consumer, const char *dataset_id,
                                               const char *category, tdsx_agreement_cb cb,
                                               void *ud);
/* Frees the byte buffers of a record from tdsx_store_agreement_get and zeroes it. NULL is
 * allowed. */
void tdsx_agreement_clear(tdsx_agreement_rec_t *a);

/* ---- kept NROs (a sender's, to resume an interrupted transfer) -------------------------- */

/* Keeps (or replaces) the NRO envelope of one of our sends. Not synced on its own (see
 * store.c). tdsx_store_nro_get returns a heap copy (tdsx_free) or TDSX_E_NOTFOUND;
 * tdsx_store_nro_drop forgets it (once receipted: the receipt holds it). */
TDSX_MUST_CHECK int tdsx_store_nro_put(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                                       tdsx_bytes_t nro);
TDSX_MUST_CHECK int tdsx_store_nro_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                                       uint8_t **nro, size_t *len);
TDSX_MUST_CHECK int tdsx_store_nro_drop(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN]);

#endif
