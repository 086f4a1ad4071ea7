/*
 * store.c — the node's durable state (SPEC §9, §14): SQLite metadata and content-addressed
 * objects. The contract is in store.h; this file says why it is built the way it is.
 *
 * Durability. The connection runs in WAL mode. With synchronous=NORMAL a commit is safe from a
 * crash of the process (the WAL is in the OS page cache) but not from a power loss or kernel
 * crash: the WAL is only fsynced at checkpoints, so the last transactions can roll back. That
 * is acceptable for the catalog and peers' certificates (the owner re-publishes, the peer
 * presents its certificate again at the next handshake). It is not acceptable for what the
 * exchange promises to other parties: a sequence number handed out must never be handed out
 * again (two signed NROs with one number), a transfer id once recorded must stay refused, a
 * state or receipt reported as stored must stay stored, and a withdrawal must not undo itself.
 * Those writes switch the connection to synchronous=FULL, where SQLite fsyncs the WAL at every
 * commit (https://www.sqlite.org/pragma.html#pragma_synchronous). The level is switched lazily
 * (set_sync) so a run of transfer writes costs one fsync each and no pragma round trips.
 *
 * Payload bytes are made durable separately (fdatasync of the part file, fsync of the object
 * and of its directory) before the caller records the offset or the COMMITTED state, so a
 * durable record never points at bytes that are not.
 */
#include "store.h"

#include "crypto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

_Static_assert(TDSX_SHA256_LEN == TDSX_HASH_LEN, "store and crypto agree on SHA-256 size");

#define STORE_PATH_MAX 4096
/* Room left after the data directory for "/objects/ab/<64 hex>" and "/tmp/import-<32>.part". */
#define STORE_ROOT_MAX (STORE_PATH_MAX - 128)
#define STORE_CHUNK (64u * 1024u)
#define STORE_SCHEMA 4
#define STORE_APP_ID 0x54445358 /* "TDSX" in PRAGMA application_id */
#define STORE_BUSY_MS 5000
#define STORE_IMPORT_PREFIX "import-"

/* ------------------------------------------------------------------------------------------
 * SQLite's allocations through tdsx_malloc, so allocation-failure tests reach them too. The
 * 16-byte prefix keeps the size (SQLite asks for it) and the alignment malloc gave.
 * ---------------------------------------------------------------------------------------- */
#define SQL_HDR 16

static void *sql_malloc(int n)
{
    if (n <= 0)
        return NULL;
    uint8_t *p = tdsx_malloc((size_t)n + SQL_HDR);
    if (!p)
        return NULL;
    size_t sz = (size_t)n;
    memcpy(p, &sz, sizeof sz);
    return p + SQL_HDR;
}

static void sql_free(void *p)
{
    if (p)
        tdsx_free((uint8_t *)p - SQL_HDR);
}

static void *sql_realloc(void *p, int n)
{
    if (!p)
        return sql_malloc(n);
    if (n <= 0)
        return NULL;
    uint8_t *q = tdsx_realloc((uint8_t *)p - SQL_HDR, (size_t)n + SQL_HDR);
    if (!q)
        return NULL;
    size_t sz = (size_t)n;
    memcpy(q, &sz, sizeof sz);
    return q + SQL_HDR;
}

static int sql_size(void *p)
{
    if (!p)
        return 0;
    size_t sz;
    memcpy(&sz, (uint8_t *)p - SQL_HDR, sizeof sz);
    return (int)sz;
}

static int sql_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sql_mem_init(void *ctx)
{
    (void)ctx;
    return SQLITE_OK;
}

static void sql_mem_shutdown(void *ctx)
{
    (void)ctx;
}

static const sqlite3_mem_methods sql_mem = {sql_malloc,  sql_free,     sql_realloc,      sql_size,
                                            sql_roundup, sql_mem_init, sql_mem_shutdown, NULL};

static pthread_once_t sql_once = PTHREAD_ONCE_INIT;

/* Must run before SQLite initialises; if something in the process already used SQLite the call
 * fails and SQLite keeps its own allocator, which is only a loss for fault-injection tests. */
static void sql_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MALLOC, &sql_mem);
}

/* ------------------------------------------------------------------------------------------
 * Schema and statements
 * ---------------------------------------------------------------------------------------- */

/* migrations[v] takes a database from user_version v to v + 1. Fields are only ever added. */
static const char *const migrations[STORE_SCHEMA] = {
    "CREATE TABLE catalog ("
    " owner TEXT NOT NULL, id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,"
    " tags TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,"
    " sha256 BLOB NOT NULL, published_at INTEGER NOT NULL, withdrawn INTEGER NOT NULL,"
    " PRIMARY KEY (owner, id)) WITHOUT ROWID, STRICT;"
    "CREATE TABLE transfers ("
    " id BLOB NOT NULL PRIMARY KEY, inbound INTEGER NOT NULL, peer TEXT NOT NULL,"
    " dataset_id TEXT NOT NULL, sha256 BLOB NOT NULL, length INTEGER NOT NULL,"
    " durable INTEGER NOT NULL, sequence INTEGER NOT NULL, state INTEGER NOT NULL,"
    " error INTEGER NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL)"
    " WITHOUT ROWID, STRICT;"
    "CREATE TABLE sequences ("
    " sender TEXT NOT NULL, receiver TEXT NOT NULL, last INTEGER NOT NULL,"
    " PRIMARY KEY (sender, receiver)) WITHOUT ROWID, STRICT;"
    /* n orders receipts by storage (newest first in listings); AUTOINCREMENT never reuses. */
    "CREATE TABLE receipts ("
    " n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " transfer_id BLOB NOT NULL UNIQUE REFERENCES transfers (id),"
    " sender TEXT NOT NULL, receiver TEXT NOT NULL, nro BLOB NOT NULL, nrr BLOB NOT NULL,"
    " sender_cert BLOB NOT NULL, receiver_cert BLOB NOT NULL, stored_at INTEGER NOT NULL)"
    " STRICT;"
    "CREATE TABLE peer_certs ("
    " peer TEXT NOT NULL PRIMARY KEY, der BLOB NOT NULL, stored_at INTEGER NOT NULL)"
    " WITHOUT ROWID, STRICT;",
    /* 1 -> 2: agreements (SPEC §7). n orders listings like receipts; the pair index serves
     * the lookup every transfer decision makes. */
    "CREATE TABLE agreements ("
    " n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " hash BLOB NOT NULL UNIQUE, id BLOB NOT NULL UNIQUE,"
    " provider TEXT NOT NULL, consumer TEXT NOT NULL, proposer TEXT NOT NULL,"
    " dataset_id TEXT NOT NULL, category TEXT NOT NULL,"
    " purpose_code TEXT NOT NULL, purpose_text TEXT NOT NULL, actions TEXT NOT NULL,"
    " not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
    " transfer_limit INTEGER NOT NULL, transfers_used INTEGER NOT NULL,"
    " state INTEGER NOT NULL, reason TEXT NOT NULL,"
    " proposal BLOB NOT NULL, acceptance BLOB NOT NULL, termination BLOB NOT NULL,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;"
    "CREATE INDEX agreements_pair ON agreements (provider, consumer);",
    /* 2 -> 3: the NRO a sender keeps to resume an interrupted transfer (SPEC §9). It used to be
     * a file per transfer; a row costs no inode and no fsync of its own. */
    "CREATE TABLE sent_nros ("
    " transfer_id BLOB NOT NULL PRIMARY KEY, nro BLOB NOT NULL) WITHOUT ROWID, STRICT;",
    /* 3 -> 4: where each receipt is in the transparency log (SPEC §11), NULL until its entry
     * is durable, so a start can append what a crash left out. Receipts from before were
     * logged by the same code path before they were acknowledged; their index was not kept
     * (-1): appending them again would duplicate them. The index serves both questions a start
     * asks: which receipts have none, and the highest one recorded. */
    "ALTER TABLE receipts ADD COLUMN log_index INTEGER;"
    "UPDATE receipts SET log_index = -1;"
    "CREATE INDEX receipts_log_index ON receipts (log_index);",
};

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_CAT_PUT,
    ST_CAT_GET,
    ST_CAT_WITHDRAW,
    ST_CAT_LIST,
    ST_XFER_INSERT,
    ST_XFER_GET,
    ST_XFER_UPDATE,
    ST_SEQ_NEXT,
    ST_RCPT_INSERT,
    ST_RCPT_GET,
    ST_RCPT_LIST,
    ST_RCPT_LOGGED,
    ST_RCPT_UNLOGGED,
    ST_RCPT_LOG_NEXT,
    ST_PEER_PUT,
    ST_PEER_GET,
    ST_NRO_PUT,
    ST_NRO_GET,
    ST_NRO_DROP,
    ST_AGR_INSERT,
    ST_AGR_GET,
    ST_AGR_GET_ID,
    ST_AGR_MOVE,
    ST_AGR_USE,
    ST_AGR_LIST,
    ST_AGR_MATCH,
    ST_COUNT
};

#define CAT_COLS                                                                                   \
    "owner, id, title, description, tags, media_type, size, sha256, published_at, withdrawn"
#define XFER_COLS                                                                                  \
    "id, inbound, peer, dataset_id, sha256, length, durable, sequence, state, error, started_at,"  \
    " finished_at"
#define RCPT_COLS                                                                                  \
    "n, transfer_id, sender, receiver, nro, nrr, sender_cert, receiver_cert, stored_at"
#define AGR_COLS                                                                                   \
    "n, hash, id, provider, consumer, proposer, dataset_id, category, purpose_code,"               \
    " purpose_text, actions, not_before, not_after, transfer_limit, transfers_used, state,"        \
    " reason, proposal, acceptance, termination, created_at, updated_at"

static const char *const sql_text[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* Group commit (tdsx_store_batch_begin): a write function's own transaction becomes a
     * savepoint inside the batch's, so its failure still undoes only its own writes. */
    [ST_SAVEPOINT] = "SAVEPOINT w",
    [ST_RELEASE] = "RELEASE w",
    [ST_ROLLBACK_TO] = "ROLLBACK TO w",
    [ST_CAT_PUT] = "INSERT INTO catalog (" CAT_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                   " ON CONFLICT (owner, id) DO UPDATE SET title = excluded.title,"
                   " description = excluded.description, tags = excluded.tags,"
                   " media_type = excluded.media_type, size = excluded.size,"
                   " sha256 = excluded.sha256, published_at = excluded.published_at,"
                   " withdrawn = excluded.withdrawn",
    [ST_CAT_GET] = "SELECT " CAT_COLS " FROM catalog WHERE owner = ?1 AND id = ?2",
    [ST_CAT_WITHDRAW] = "UPDATE catalog SET withdrawn = 1 WHERE owner = ?1 AND id = ?2",
    /* Keyset pagination: the row value comparison walks the primary key from the token on,
     * so a page costs the same wherever it starts (no OFFSET scan). */
    [ST_CAT_LIST] = "SELECT " CAT_COLS " FROM catalog WHERE withdrawn = 0"
                    " AND (?1 IS NULL OR owner = ?1)"
                    " AND (?2 IS NULL OR instr(title, ?2) > 0 OR instr(description, ?2) > 0)"
                    " AND (owner, id) > (?3, ?4) ORDER BY owner, id LIMIT ?5",
    [ST_XFER_INSERT] = "INSERT INTO transfers (" XFER_COLS ")"
                       " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
                       " ON CONFLICT (id) DO NOTHING",
    [ST_XFER_GET] = "SELECT " XFER_COLS " FROM transfers WHERE id = ?1",
    [ST_XFER_UPDATE] = "UPDATE transfers SET state = ?2, durable = ?3, error = ?4,"
                       " finished_at = ?5 WHERE id = ?1",
    /* One statement, so the increment is atomic; the guard keeps `last` an integer (SQLite
     * would turn INT64_MAX + 1 into a REAL) and makes exhaustion visible as no row. */
    [ST_SEQ_NEXT] = "INSERT INTO sequences (sender, receiver, last) VALUES (?1, ?2, 1)"
                    " ON CONFLICT (sender, receiver) DO UPDATE SET last = last + 1"
                    " WHERE last < 9223372036854775807 RETURNING last",
    [ST_RCPT_INSERT] = "INSERT INTO receipts (transfer_id, sender, receiver, nro, nrr,"
                       " sender_cert, receiver_cert, stored_at)"
                       " VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    [ST_RCPT_GET] = "SELECT " RCPT_COLS " FROM receipts WHERE transfer_id = ?1",
    [ST_RCPT_LIST] = "SELECT " RCPT_COLS " FROM receipts WHERE n < ?1 ORDER BY n DESC LIMIT ?2",
    [ST_RCPT_LOGGED] = "UPDATE receipts SET log_index = ?2 WHERE transfer_id = ?1",
    [ST_RCPT_UNLOGGED] = "SELECT " RCPT_COLS " FROM receipts WHERE log_index IS NULL"
                         " ORDER BY n LIMIT ?1",
    [ST_RCPT_LOG_NEXT] = "SELECT coalesce(max(log_index), -1) + 1 FROM receipts",
    [ST_PEER_PUT] = "INSERT INTO peer_certs (peer, der, stored_at) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (peer) DO UPDATE SET der = excluded.der,"
                    " stored_at = excluded.stored_at",
    [ST_PEER_GET] = "SELECT der FROM peer_certs WHERE peer = ?1",
    [ST_NRO_PUT] = "INSERT INTO sent_nros (transfer_id, nro) VALUES (?1, ?2)"
                   " ON CONFLICT (transfer_id) DO UPDATE SET nro = excluded.nro",
    [ST_NRO_GET] = "SELECT nro FROM sent_nros WHERE transfer_id = ?1",
    [ST_NRO_DROP] = "DELETE FROM sent_nros WHERE transfer_id = ?1",
    [ST_AGR_INSERT] = "INSERT INTO agreements (hash, id, provider, consumer, proposer, dataset_id,"
                      " category, purpose_code, purpose_text, actions, not_before, not_after,"
                      " transfer_limit, transfers_used, state, reason, proposal, acceptance,"
                      " termination, created_at, updated_at)"
                      " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,0,?14,?15,?16,?17,?18,"
                      "?19,?19)",
    [ST_AGR_GET] = "SELECT " AGR_COLS " FROM agreements WHERE hash = ?1",
    [ST_AGR_GET_ID] = "SELECT " AGR_COLS " FROM agreements WHERE id = ?1",
    /* NULL leaves an envelope as it is: a move sets at most one of them. */
    [ST_AGR_MOVE] = "UPDATE agreements SET state = ?2, acceptance = coalesce(?3, acceptance),"
                    " termination = coalesce(?4, termination), reason = ?5, updated_at = ?6"
                    " WHERE hash = ?1",
    /* The guard makes the limit hold even against two counts racing: no row, no count. */
    [ST_AGR_USE] = "UPDATE agreements SET transfers_used = transfers_used + 1, updated_at = ?2"
                   " WHERE hash = ?1 AND state = 2"
                   " AND (transfer_limit = 0 OR transfers_used < transfer_limit)"
                   " RETURNING transfers_used",
    [ST_AGR_LIST] = "SELECT " AGR_COLS " FROM agreements WHERE n < ?1 ORDER BY n DESC LIMIT ?2",
    /* substr, not LIKE: a selector is matched as bytes, with no wildcard characters. */
    [ST_AGR_MATCH] = "SELECT " AGR_COLS " FROM agreements WHERE provider = ?1 AND consumer = ?2"
                     " AND state IN (2, 4) AND ((dataset_id <> '' AND dataset_id = ?3)"
                     " OR (category <> '' AND (?4 = category"
                     " OR substr(?4, 1, length(category) + 1) = category || '.')))"
                     " ORDER BY n DESC LIMIT ?5",
};

struct tdsx_store_s {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int sync_full; /* the connection's synchronous level: 1 FULL, 0 NORMAL */
    /* Group commit (store.h): batching is on; the batch's transaction is open (something was
     * written since the last commit); the first error that lost the batch's writes. */
    int batching;
    int batch_open;
    int batch_lost;
    int busy;      /* inside a listing callback: the cached statement is in use */
    char root[STORE_ROOT_MAX + 1];
};

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static int io_fail(const char *op, const char *path, int err)
{
    tdsx_log(TDSX_LOG_WARN, "store.io", TDSX_KV_S("op", op), TDSX_KV_S("path", path),
             TDSX_KV_S("errno", strerror(err)));
    return TDSX_E_IO;
}

static int sql_code(int rc)
{
    if (rc == SQLITE_IOERR_NOMEM)
        return TDSX_E_NOMEM;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return 0;
    case SQLITE_NOMEM: return TDSX_E_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_SCHEMA:
    case SQLITE_MISMATCH: return TDSX_E_FORMAT;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL: return TDSX_E_IO;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return TDSX_E_AGAIN;
    case SQLITE_TOOBIG: return TDSX_E_TOOBIG;
    default: return TDSX_E_INTERNAL;
    }
}

/* Maps an SQLite failure and logs it (allocation failures are only returned: the caller's
 * error path reports them, and logging would allocate again). */
static int sql_fail(const tdsx_store_t *s, const char *op, int rc)
{
    int e = sql_code(rc);
    if (e == 0)
        e = TDSX_E_INTERNAL;
    if (e != TDSX_E_NOMEM)
        tdsx_log(TDSX_LOG_WARN, "store.sql", TDSX_KV_S("op", op), TDSX_KV_I("sqlite", rc),
                 TDSX_KV_S("msg", s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc)),
                 TDSX_KV_E("err", e));
    return e;
}

/* Leaves a cached statement ready for the next use and releases its read snapshot (a reset
 * statement does not hold the WAL back from checkpointing). */
static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Binders accumulate the first failure in *b so a row is bound in a straight line. The values
 * outlive the step (SQLITE_STATIC) because every statement is reset before we return. */
static void bind_text(sqlite3_stmt *st, int i, const char *v, int *b)
{
    if (*b == SQLITE_OK)
        *b = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static void bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n, int *b)
{
    if (*b == SQLITE_OK)
        *b = sqlite3_bind_blob64(st, i, n ? p : "", n, SQLITE_STATIC);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *b)
{
    if (*b == SQLITE_OK)
        *b = sqlite3_bind_int64(st, i, v);
}

static void batch_check(tdsx_store_t *s, int rc);

/* SQLITE_ROW -> 1, SQLITE_DONE -> 0, otherwise a TDSX code; *raw receives SQLite's code. Any
 * failing statement, a read included, may have rolled an open batch back (batch_check). */
static int step(tdsx_store_t *s, sqlite3_stmt *st, const char *op, int *raw)
{
    int rc = sqlite3_step(st);
    if (raw)
        *raw = rc;
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    int e = (rc & 0xff) == SQLITE_CONSTRAINT && raw ? TDSX_E_INTERNAL /* the caller decides */
                                                     : sql_fail(s, op, rc);
    batch_check(s, e);
    return e;
}

/* Steps a write to its end, so that an autocommit's own COMMIT (and its errors) happens here
 * and not silently inside sqlite3_reset. */
static int step_done(tdsx_store_t *s, sqlite3_stmt *st, const char *op)
{
    int rc = step(s, st, op, NULL);
    if (rc == 1)
        return sql_fail(s, op, SQLITE_MISUSE);
    return rc;
}

static int set_sync_now(tdsx_store_t *s, int full)
{
    if (s->sync_full == full)
        return 0;
    /* PRAGMA synchronous acts when compiled, so a cached statement would not repeat it. */
    int rc = sqlite3_exec(s->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, "synchronous", rc);
    s->sync_full = full;
    return 0;
}

/* Every write function calls this first. Alone, it sets the level the write's commit needs.
 * In a batch, the write joins the batch's transaction (opened here by the first write since
 * the last commit) and the batch commits at FULL: what the exchange promises and what it does
 * not share one fsync. */
static int set_sync(tdsx_store_t *s, int full)
{
    if (!s->batching)
        return set_sync_now(s, full);
    batch_check(s, TDSX_E_IO); /* a rollback no failing call of ours reported */
    if (s->batch_lost)
        return s->batch_lost;
    if (s->batch_open)
        return 0;
    int rc = set_sync_now(s, 1);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_BEGIN];
    rc = step_done(s, st, "batch begin");
    done(st);
    if (rc == 0)
        s->batch_open = 1;
    return rc;
}

/* SQLite rolls a whole transaction back by itself after NOMEM, IOERR, FULL or BUSY: in a batch
 * that loses every write since the last commit, other functions' included. Noticed here, and
 * kept, so the commit reports it and the node stops instead of acknowledging lost writes. */
static void batch_check(tdsx_store_t *s, int rc)
{
    if (s->batching && s->batch_open && !s->batch_lost && sqlite3_get_autocommit(s->db)) {
        s->batch_lost = rc ? rc : TDSX_E_IO;
        s->batch_open = 0;
        tdsx_log(TDSX_LOG_ERROR, "store.batch_lost", TDSX_KV_E("err", s->batch_lost));
    }
}

static int tx_begin(tdsx_store_t *s)
{
    sqlite3_stmt *st = s->st[s->batching ? ST_SAVEPOINT : ST_BEGIN];
    int rc = step_done(s, st, "begin");
    done(st);
    return rc;
}

static int tx_commit(tdsx_store_t *s)
{
    sqlite3_stmt *st = s->st[s->batching ? ST_RELEASE : ST_COMMIT];
    int rc = step_done(s, st, "commit");
    done(st);
    batch_check(s, rc);
    return rc;
}

/* SQLite may already have rolled back by itself after NOMEM, IOERR, FULL or BUSY. */
static void tx_rollback(tdsx_store_t *s)
{
    if (sqlite3_get_autocommit(s->db)) {
        batch_check(s, TDSX_E_IO);
        return;
    }
    if (s->batching) {
        sqlite3_stmt *st = s->st[ST_ROLLBACK_TO];
        int rc = sqlite3_step(st);
        done(st);
        st = s->st[ST_RELEASE];
        if (rc == SQLITE_DONE)
            rc = sqlite3_step(st);
        done(st);
        batch_check(s, rc == SQLITE_DONE ? 0 : TDSX_E_IO);
        return;
    }
    sqlite3_stmt *st = s->st[ST_ROLLBACK];
    (void)sqlite3_step(st);
    done(st);
}

void tdsx_store_batch_begin(tdsx_store_t *s)
{
    if (s && !s->batching && sqlite3_get_autocommit(s->db))
        s->batching = 1;
}

int tdsx_store_batch_dirty(const tdsx_store_t *s)
{
    return s && (s->batch_open || s->batch_lost);
}

int tdsx_store_batch_commit(tdsx_store_t *s)
{
    if (!s)
        return TDSX_E_INVAL;
    if (s->batch_lost)
        return s->batch_lost;
    if (!s->batch_open)
        return 0;
    sqlite3_stmt *st = s->st[ST_COMMIT];
    int rc = step_done(s, st, "batch commit");
    done(st);
    if (rc == 0) {
        s->batch_open = 0;
        return 0;
    }
    /* A COMMIT that failed on BUSY leaves the transaction open; anything else may not. The
     * caller stops either way: what the batch held is not known to be on disk. */
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_stmt *rb = s->st[ST_ROLLBACK];
        (void)sqlite3_step(rb);
        done(rb);
    }
    s->batch_open = 0;
    s->batch_lost = rc;
    tdsx_log(TDSX_LOG_ERROR, "store.batch_lost", TDSX_KV_E("err", rc));
    return rc;
}

/* A caller-supplied string argument: present, not empty, at most max bytes. */
static int arg_ok(const char *v, size_t max)
{
    if (!v || !*v)
        return TDSX_E_INVAL;
    return strnlen(v, max + 1) > max ? TDSX_E_TOOBIG : 0;
}

/* A fixed array field: NUL-terminated inside its array (else over-long), and not empty when
 * required. */
static int field_ok(const char *a, size_t size, int required)
{
    if (!memchr(a, '\0', size))
        return TDSX_E_TOOBIG;
    return required && !a[0] ? TDSX_E_INVAL : 0;
}

/* Copies a TEXT column into a fixed array; a value that does not fit was not written by us. */
static int col_text(tdsx_store_t *s, sqlite3_stmt *st, int i, char *dst, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return sqlite3_errcode(s->db) == SQLITE_NOMEM ? TDSX_E_NOMEM : TDSX_E_FORMAT;
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (n >= size || memchr(t, '\0', n))
        return TDSX_E_FORMAT;
    memcpy(dst, t, n);
    dst[n] = '\0';
    return 0;
}

/* A BLOB column of exactly n bytes. */
static int col_fixed(sqlite3_stmt *st, int i, uint8_t *dst, size_t n)
{
    const void *p = sqlite3_column_blob(st, i);
    if ((size_t)sqlite3_column_bytes(st, i) != n || (n && !p))
        return TDSX_E_FORMAT;
    memcpy(dst, p, n);
    return 0;
}

static int col_u64(sqlite3_stmt *st, int i, uint64_t *out)
{
    sqlite3_int64 v = sqlite3_column_int64(st, i);
    if (v < 0)
        return TDSX_E_FORMAT;
    *out = (uint64_t)v;
    return 0;
}

/* A borrowed view of a BLOB column (valid until the statement moves). Empty is allowed. */
static int col_view(tdsx_store_t *s, sqlite3_stmt *st, int i, tdsx_bytes_t *out)
{
    const void *p = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (!p && n)
        return TDSX_E_FORMAT;
    if (!p && sqlite3_errcode(s->db) == SQLITE_NOMEM)
        return TDSX_E_NOMEM;
    *out = tdsx_bytes(p, n);
    return 0;
}

static int check_store(const tdsx_store_t *s)
{
    if (!s)
        return TDSX_E_INVAL;
    return s->busy ? TDSX_E_STATE : 0;
}

/* Decimal without sign, at most 19 digits (INT64_MAX has 19). */
static int parse_u63(const char *p, size_t n, int64_t *out)
{
    if (n == 0 || n > 19)
        return TDSX_E_INVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return TDSX_E_INVAL;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return TDSX_E_INVAL;
    *out = (int64_t)v;
    return 0;
}

static int path_join(char *out, const char *root, const char *rest)
{
    int n = snprintf(out, STORE_PATH_MAX, "%s/%s", root, rest);
    return n < 0 || n >= STORE_PATH_MAX ? TDSX_E_TOOBIG : 0;
}

/* ------------------------------------------------------------------------------------------
 * Files and directories
 * ---------------------------------------------------------------------------------------- */

/* So a rename or link in the directory survives a power loss. */
static int fsync_dir(const char *path)
{
    return tdsx_dir_sync(path) == 0 ? 0 : io_fail("sync dir", path, errno);
}

/* A directory only we can enter: created 0700 when absent (*created = 1), refused when it
 * belongs to someone else or lets group or others in. */
static int private_dir(const char *path, int *created)
{
    if (created)
        *created = 0;
    if (mkdir(path, 0700) == 0) {
        if (created)
            *created = 1;
        /* The umask may have taken bits away; make it exactly 0700. */
        if (chmod(path, 0700) != 0)
            return io_fail("chmod", path, errno);
    } else if (errno != EEXIST) {
        return io_fail("mkdir", path, errno);
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return io_fail("stat", path, errno);
    if (!S_ISDIR(st.st_mode))
        return io_fail("stat", path, ENOTDIR);
    if ((st.st_mode & 077) || st.st_uid != geteuid()) {
        tdsx_log(TDSX_LOG_ERROR, "store.perm", TDSX_KV_S("path", path),
                 TDSX_KV_I("mode", st.st_mode & 07777));
        return TDSX_E_PERM;
    }
    return 0;
}

/* meta.db is created 0600 by us before SQLite opens it; SQLite gives the -wal and -shm files
 * the database's mode. An existing file with a wider mode is refused, not silently fixed:
 * its contents may already have been readable. */
static int db_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        int rc = fchmod(fd, 0600) == 0 ? 0 : io_fail("fchmod", path, errno);
        close(fd);
        return rc;
    }
    if (errno != EEXIST)
        return io_fail("create", path, errno);
    char side[STORE_PATH_MAX];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        if (snprintf(side, sizeof side, "%s%s", path, suffix[i]) >= (int)sizeof side)
            return TDSX_E_TOOBIG;
        struct stat st;
        if (lstat(side, &st) != 0) {
            if (errno == ENOENT && i > 0)
                continue;
            return io_fail("stat", side, errno);
        }
        if (!S_ISREG(st.st_mode))
            return io_fail("stat", side, EINVAL);
        if ((st.st_mode & 077) || st.st_uid != geteuid()) {
            tdsx_log(TDSX_LOG_ERROR, "store.perm", TDSX_KV_S("path", side),
                     TDSX_KV_I("mode", st.st_mode & 07777));
            return TDSX_E_PERM;
        }
    }
    return 0;
}

/* Imports are not resumable, so what an interrupted one left behind is only litter. */
static void remove_import_leftovers(const char *tmpdir)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    const struct dirent *e;
    char p[STORE_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, STORE_IMPORT_PREFIX, sizeof STORE_IMPORT_PREFIX - 1) != 0)
            continue;
        if (path_join(p, tmpdir, e->d_name) == 0)
            (void)unlink(p);
    }
    closedir(d);
}

/* ------------------------------------------------------------------------------------------
 * Open and close
 * ---------------------------------------------------------------------------------------- */

static int pragma_int(tdsx_store_t *s, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, sql, rc);
    rc = step(s, st, sql, NULL);
    if (rc == 1) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = sql_fail(s, sql, SQLITE_MISMATCH);
    }
    sqlite3_finalize(st);
    return rc;
}

static int set_wal(tdsx_store_t *s)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, "journal_mode", rc);
    rc = step(s, st, "journal_mode", NULL);
    if (rc == 1) {
        const unsigned char *mode = sqlite3_column_text(st, 0);
        /* SQLite answers with the mode in force: anything else means WAL is unavailable here
         * (no shared memory on this file system), and we promise WAL's crash behaviour. */
        rc = mode && strcmp((const char *)mode, "wal") == 0 ? 0 : TDSX_E_IO;
        if (rc)
            tdsx_log(TDSX_LOG_ERROR, "store.wal_unavailable",
                     TDSX_KV_S("mode", mode ? (const char *)mode : "?"));
    } else if (rc == 0) {
        rc = TDSX_E_IO;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Creates or migrates the schema inside one write transaction, so two processes opening a
 * fresh directory at once do not both create it. */
static int schema(tdsx_store_t *s)
{
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, "begin", rc);
    int64_t version = 0, app = 0, objects = 0;
    rc = pragma_int(s, "PRAGMA user_version", &version);
    if (rc == 0)
        rc = pragma_int(s, "PRAGMA application_id", &app);
    if (rc == 0)
        rc = pragma_int(s, "SELECT count(*) FROM sqlite_schema", &objects);
    if (rc)
        goto fail;
    if (version > STORE_SCHEMA || version < 0) {
        tdsx_log(TDSX_LOG_ERROR, "store.schema_newer", TDSX_KV_I("version", version),
                 TDSX_KV_I("supported", STORE_SCHEMA));
        rc = TDSX_E_FORMAT;
        goto fail;
    }
    /* Ours: our application id, or a blank database. Anything else is someone else's. */
    if ((version == 0 && (app != 0 || objects != 0)) || (version > 0 && app != STORE_APP_ID)) {
        tdsx_log(TDSX_LOG_ERROR, "store.not_ours", TDSX_KV_I("application_id", app),
                 TDSX_KV_I("version", version));
        rc = TDSX_E_FORMAT;
        goto fail;
    }
    for (int64_t v = version; v < STORE_SCHEMA; v++) {
        rc = sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            rc = sql_fail(s, "migrate", rc);
            goto fail;
        }
    }
    if (version < STORE_SCHEMA) {
        /* Pragmas take no parameters; these numbers are our own constants, not input. */
        char bump[96];
        snprintf(bump, sizeof bump, "PRAGMA application_id=%d; PRAGMA user_version=%d",
                 STORE_APP_ID, STORE_SCHEMA);
        rc = sqlite3_exec(s->db, bump, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            rc = sql_fail(s, "user_version", rc);
            goto fail;
        }
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sql_fail(s, "commit", rc);
        goto fail;
    }
    return 0;
fail:
    if (!sqlite3_get_autocommit(s->db))
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int configure(tdsx_store_t *s)
{
    int rc = sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    if (rc != SQLITE_OK)
        return sql_fail(s, "busy_timeout", rc);
    /* The first statement that reads the file: a file that is not a database fails here. */
    rc = set_wal(s);
    if (rc)
        return rc;
    rc = sqlite3_exec(s->db,
                      "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                      " PRAGMA trusted_schema=OFF",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, "pragmas", rc);
    s->sync_full = 0;
    int64_t fk = 0;
    rc = pragma_int(s, "PRAGMA foreign_keys", &fk);
    if (rc == 0 && fk != 1)
        rc = sql_fail(s, "foreign_keys", SQLITE_MISUSE);
    if (rc)
        return rc;
    rc = schema(s);
    if (rc)
        return rc;
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK)
            return sql_fail(s, sql_text[i], rc);
    }
    return 0;
}

int tdsx_store_open(const char *data_dir, tdsx_store_t **out)
{
    if (!out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (!data_dir || !*data_dir)
        return TDSX_E_INVAL;
    size_t len = strlen(data_dir);
    if (len > STORE_ROOT_MAX)
        return TDSX_E_TOOBIG;
    if (pthread_once(&sql_once, sql_setup) != 0)
        return TDSX_E_INTERNAL;

    char path[STORE_PATH_MAX];
    int rc;
    tdsx_store_t *s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    memcpy(s->root, data_dir, len + 1);

    rc = private_dir(s->root, NULL);
    if (rc == 0)
        rc = path_join(path, s->root, "objects");
    if (rc == 0)
        rc = private_dir(path, NULL);
    if (rc == 0)
        rc = path_join(path, s->root, "tmp");
    if (rc == 0)
        rc = private_dir(path, NULL);
    if (rc)
        goto fail;
    remove_import_leftovers(path);

    rc = path_join(path, s->root, "meta.db");
    if (rc == 0)
        rc = db_file(path);
    if (rc)
        goto fail;
    int orc = sqlite3_open_v2(path, &s->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
                                  SQLITE_OPEN_EXRESCODE,
                              NULL);
    if (orc != SQLITE_OK) {
        rc = sql_fail(s, "open", orc);
        goto fail;
    }
    rc = configure(s);
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    tdsx_store_close(s);
    return rc;
}

void tdsx_store_close(tdsx_store_t *s)
{
    if (!s)
        return;
    int rc = tdsx_store_batch_commit(s); /* what the last turn wrote; logged when lost */
    (void)rc;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    /* Every statement is finalized, so close cannot be left pending; v2 is the safe form. */
    if (s->db)
        sqlite3_close_v2(s->db);
    tdsx_free(s);
}

/* ------------------------------------------------------------------------------------------
 * Objects
 * ---------------------------------------------------------------------------------------- */

struct tdsx_object_writer_s {
    int fd;
    int err; /* first write or sync failure: sticky, the bytes on disk are uncertain */
    int tmp_synced;
    uint64_t length;
    tdsx_sha256_t h;
    char root[STORE_ROOT_MAX + 1];
    char part[STORE_PATH_MAX];
};

static void writer_free(tdsx_object_writer_t *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    tdsx_sha256_free(&w->h);
    tdsx_free(w);
}

/* Hashes the first `n` bytes of the part file again, so a resumed payload is hashed whole. */
static int rehash(tdsx_object_writer_t *w, uint64_t n)
{
    uint8_t *buf = tdsx_malloc(STORE_CHUNK);
    if (!buf)
        return TDSX_E_NOMEM;
    int rc = 0;
    uint64_t at = 0;
    while (rc == 0 && at < n) {
        size_t want = n - at < STORE_CHUNK ? (size_t)(n - at) : STORE_CHUNK;
        ssize_t r = pread(w->fd, buf, want, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            /* The file was checked long enough; shrinking under us is an I/O failure. */
            rc = io_fail("pread", w->part, r < 0 ? errno : EIO);
            break;
        }
        rc = tdsx_sha256_update(&w->h, buf, (size_t)r);
        at += (uint64_t)r;
    }
    tdsx_free(buf);
    return rc;
}

/* Opens tmp/<name>.part for writing: fresh (resume = 0) or kept up to `offset`. */
static int writer_new(const char *root, const char *name, int resume, uint64_t offset,
                      tdsx_object_writer_t **out)
{
    *out = NULL;
    if (offset > (uint64_t)INT64_MAX)
        return TDSX_E_INVAL;
    tdsx_object_writer_t *w = tdsx_calloc(1, sizeof *w);
    if (!w)
        return TDSX_E_NOMEM;
    w->fd = -1;
    int rc = tdsx_sha256_init(&w->h);
    if (rc)
        goto fail;
    snprintf(w->root, sizeof w->root, "%s", root);
    if (snprintf(w->part, sizeof w->part, "%s/tmp/%s.part", root, name) >= (int)sizeof w->part) {
        rc = TDSX_E_TOOBIG;
        goto fail;
    }
    w->fd = open(w->part, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_CREAT), 0600);
    if (w->fd < 0 && resume && errno == ENOENT) {
        /* Nothing kept: that is a resume from zero, and anything further is a lie. */
        if (offset > 0) {
            rc = TDSX_E_STATE;
            goto fail;
        }
        w->fd = open(w->part, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_CREAT, 0600);
    }
    if (w->fd < 0) {
        rc = io_fail("open", w->part, errno);
        goto fail;
    }
    /* Two writers on one part file would interleave bytes; the lock goes with the fd. */
    if (flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? TDSX_E_STATE : io_fail("flock", w->part, errno);
        goto fail;
    }
    struct stat st;
    if (fstat(w->fd, &st) != 0) {
        rc = io_fail("fstat", w->part, errno);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = io_fail("fstat", w->part, EINVAL);
        goto fail;
    }
    if ((st.st_mode & 07777) != 0600 && fchmod(w->fd, 0600) != 0) {
        rc = io_fail("fchmod", w->part, errno);
        goto fail;
    }
    if (!resume)
        offset = 0;
    if ((uint64_t)st.st_size < offset) {
        tdsx_log(TDSX_LOG_WARN, "store.resume_short", TDSX_KV_S("path", w->part),
                 TDSX_KV_I("size", st.st_size), TDSX_KV_I("offset", (long long)offset));
        rc = TDSX_E_STATE;
        goto fail;
    }
    /* Bytes past the durable offset may be torn by a crash; they are received again. */
    if (ftruncate(w->fd, (off_t)offset) != 0) {
        rc = io_fail("ftruncate", w->part, errno);
        goto fail;
    }
    rc = rehash(w, offset);
    if (rc)
        goto fail;
    if (lseek(w->fd, (off_t)offset, SEEK_SET) < 0) {
        rc = io_fail("lseek", w->part, errno);
        goto fail;
    }
    w->length = offset;
    *out = w;
    return 0;
fail:
    writer_free(w);
    return rc;
}

int tdsx_object_begin(tdsx_store_t *s, const uint8_t tid[TDSX_TRANSFER_ID_LEN], int resume,
                      uint64_t offset, tdsx_object_writer_t **out)
{
    if (!out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (!s || !tid || (resume != 0 && resume != 1))
        return TDSX_E_INVAL;
    char name[2 * TDSX_TRANSFER_ID_LEN + 1];
    tdsx_hex_encode(name, tid, TDSX_TRANSFER_ID_LEN);
    return writer_new(s->root, name, resume, offset, out);
}

int tdsx_object_write(tdsx_object_writer_t *w, const void *p, size_t n)
{
    if (!w || (!p && n))
        return TDSX_E_INVAL;
    if (w->err)
        return w->err;
    if (n > UINT64_MAX - w->length)
        return TDSX_E_TOOBIG;
    int rc = tdsx_sha256_update(&w->h, p, n);
    if (rc) {
        w->err = rc;
        return rc;
    }
    const uint8_t *q = p;
    size_t left = n;
    while (left) {
        ssize_t r = write(w->fd, q, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            w->err = io_fail("write", w->part, r < 0 ? errno : EIO);
            return w->err;
        }
        q += r;
        left -= (size_t)r;
    }
    w->length += n;
    return 0;
}

uint64_t tdsx_object_length(const tdsx_object_writer_t *w)
{
    return w ? w->length : 0;
}

int tdsx_object_sync(tdsx_object_writer_t *w, uint64_t *durable)
{
    if (!w || !durable)
        return TDSX_E_INVAL;
    if (w->err)
        return w->err;
    if (fdatasync(w->fd) != 0) {
        w->err = io_fail("fdatasync", w->part, errno);
        return w->err;
    }
    /* The part file's name must survive too, or there is nothing to resume from. */
    if (!w->tmp_synced) {
        char dir[STORE_PATH_MAX];
        int rc = path_join(dir, w->root, "tmp");
        if (rc == 0)
            rc = fsync_dir(dir);
        if (rc) {
            w->err = rc;
            return rc;
        }
        w->tmp_synced = 1;
    }
    *durable = w->length;
    return 0;
}

/* The first half of a commit: the writer's sticky error, then its length and SHA-256 against
 * what was expected (when `expect` is given). A mismatch deletes the part file. */
static int writer_check(tdsx_object_writer_t *w, const uint8_t *expect, uint64_t length,
                        uint8_t got[TDSX_SHA256_LEN])
{
    if (w->err) /* keep the part file: it is resumable from the durable offset */
        return w->err;
    int rc = tdsx_sha256_final(&w->h, got);
    if (rc)
        return rc;
    if (expect && (w->length != length || memcmp(got, expect, TDSX_SHA256_LEN) != 0)) {
        char hex[2 * TDSX_SHA256_LEN + 1];
        tdsx_hex_encode(hex, got, TDSX_SHA256_LEN);
        tdsx_log(TDSX_LOG_WARN, "store.integrity", TDSX_KV_S("path", w->part),
                 TDSX_KV_S("sha256", hex), TDSX_KV_I("length", (long long)w->length),
                 TDSX_KV_I("expected_length", (long long)length));
        (void)unlink(w->part);
        return TDSX_E_INTEGRITY;
    }
    return 0;
}

/* The second half, once the bytes are durable: link into objects/ (link() fails on an existing
 * name instead of replacing it, so a stored object is never touched), drop the part name.
 * dir receives objects/ab, whose new entry must be fsynced; *created says objects/ab itself is
 * new (then objects/ must be fsynced too). */
static int writer_publish(tdsx_object_writer_t *w, const uint8_t got[TDSX_SHA256_LEN],
                          char dir[STORE_PATH_MAX], int *created)
{
    char hex[2 * TDSX_SHA256_LEN + 1], rel[STORE_PATH_MAX], obj[STORE_PATH_MAX];
    tdsx_hex_encode(hex, got, TDSX_SHA256_LEN);
    snprintf(rel, sizeof rel, "objects/%.2s", hex);
    int rc = path_join(dir, w->root, rel);
    if (rc == 0)
        rc = path_join(obj, dir, hex);
    if (rc == 0)
        rc = private_dir(dir, created);
    if (rc)
        return rc;
    if (link(w->part, obj) != 0 && errno != EEXIST)
        return io_fail("link", obj, errno);
    /* Same name, same SHA-256: an existing object holds these bytes already. */
    (void)unlink(w->part);
    return 0;
}

/* Objects of many transfers committed together: every part file's bytes are fdatasynced, then
 * all are linked, then each directory that gained a name is fsynced once (a batch of 1 KiB
 * objects shares objects/ab directories, and their fsyncs, more often than not). The order
 * keeps the integrity rule: no name under objects/ reaches the disk before its bytes did. */
void tdsx_object_commit_many(tdsx_object_commit_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!c[i].w) {
            c[i].rc = TDSX_E_INVAL;
            continue;
        }
        c[i].rc = writer_check(c[i].w, c[i].sha, c[i].length, c[i].got);
        if (c[i].rc == 0 && fdatasync(c[i].w->fd) != 0)
            c[i].rc = io_fail("fdatasync", c[i].w->part, errno);
    }
    /* Directories to fsync: objects/ab per published object, deduplicated; objects/ once. */
    char (*dirs)[STORE_PATH_MAX] = n ? tdsx_calloc(n, sizeof *dirs) : NULL;
    size_t nd = 0;
    int objects_new = 0;
    const char *root = NULL;
    for (size_t i = 0; i < n; i++) {
        if (c[i].rc != 0)
            continue;
        char dir[STORE_PATH_MAX];
        int created = 0;
        c[i].rc = dirs ? writer_publish(c[i].w, c[i].got, dir, &created) : TDSX_E_NOMEM;
        if (c[i].rc != 0)
            continue;
        root = c[i].w->root;
        objects_new |= created;
        size_t k = 0;
        while (k < nd && strcmp(dirs[k], dir) != 0)
            k++;
        if (k == nd)
            memcpy(dirs[nd++], dir, sizeof dir);
    }
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < nd; k++)
        rc = fsync_dir(dirs[k]);
    if (rc == 0 && objects_new) {
        char objects[STORE_PATH_MAX];
        rc = path_join(objects, root, "objects");
        if (rc == 0)
            rc = fsync_dir(objects);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc && c[i].rc == 0)
            c[i].rc = rc;
        writer_free(c[i].w);
        c[i].w = NULL;
    }
    tdsx_free(dirs);
}

static int writer_finish(tdsx_object_writer_t *w, const uint8_t *expect, uint64_t length,
                         uint8_t sha[TDSX_SHA256_LEN])
{
    tdsx_object_commit_t c = {.w = w, .sha = expect, .length = length};
    tdsx_object_commit_many(&c, 1);
    if (sha && (c.rc == 0 || c.rc == TDSX_E_INTEGRITY))
        memcpy(sha, c.got, TDSX_SHA256_LEN);
    return c.rc;
}

int tdsx_object_commit(tdsx_object_writer_t *w, const uint8_t sha[TDSX_SHA256_LEN], uint64_t length,
                       uint8_t got[TDSX_SHA256_LEN])
{
    if (!w)
        return TDSX_E_INVAL;
    if (!sha) {
        writer_free(w);
        return TDSX_E_INVAL;
    }
    return writer_finish(w, sha, length, got);
}

void tdsx_object_abort(tdsx_object_writer_t *w, int keep)
{
    if (!w)
        return;
    if (!keep)
        (void)unlink(w->part);
    writer_free(w);
}

int tdsx_store_import(tdsx_store_t *s, const char *path, uint8_t sha[TDSX_SHA256_LEN],
                      uint64_t *length)
{
    if (!s || !path || !sha || !length)
        return TDSX_E_INVAL;
    tdsx_object_writer_t *w = NULL;
    uint8_t *buf = NULL;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? TDSX_E_NOTFOUND : io_fail("open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = io_fail("fstat", path, errno);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = io_fail("import", path, EINVAL);
        goto fail;
    }
    uint8_t rnd[16];
    char name[sizeof STORE_IMPORT_PREFIX + 2 * sizeof rnd];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        rc = io_fail("getrandom", path, errno);
        goto fail;
    }
    memcpy(name, STORE_IMPORT_PREFIX, sizeof STORE_IMPORT_PREFIX - 1);
    tdsx_hex_encode(name + sizeof STORE_IMPORT_PREFIX - 1, rnd, sizeof rnd);
    buf = tdsx_malloc(STORE_CHUNK);
    if (!buf) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = writer_new(s->root, name, 0, 0, &w);
    while (rc == 0) {
        ssize_t r = read(fd, buf, STORE_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = io_fail("read", path, errno);
        if (r <= 0)
            break;
        rc = tdsx_object_write(w, buf, (size_t)r);
    }
    if (rc)
        goto fail;
    uint64_t n = w->length;
    tdsx_object_writer_t *finishing = w;
    w = NULL;
    rc = writer_finish(finishing, NULL, 0, sha);
    if (rc == 0)
        *length = n;
fail:
    if (w)
        tdsx_object_abort(w, 0);
    tdsx_free(buf);
    close(fd);
    return rc;
}

int tdsx_store_object_path(const tdsx_store_t *s, const uint8_t sha[TDSX_SHA256_LEN], char *out,
                           size_t size)
{
    if (!s || !sha || !out || size == 0)
        return TDSX_E_INVAL;
    char hex[2 * TDSX_SHA256_LEN + 1], p[STORE_PATH_MAX];
    tdsx_hex_encode(hex, sha, TDSX_SHA256_LEN);
    int n = snprintf(p, sizeof p, "%s/objects/%.2s/%s", s->root, hex, hex);
    if (n < 0 || n >= (int)sizeof p)
        return TDSX_E_TOOBIG;
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
        return TDSX_E_NOTFOUND;
    if ((size_t)n >= size)
        return TDSX_E_TOOBIG;
    memcpy(out, p, (size_t)n + 1);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Catalog
 * ---------------------------------------------------------------------------------------- */

static int dataset_ok(const tdsx_dataset_t *d)
{
    int rc = field_ok(d->id, sizeof d->id, 1);
    if (rc == 0)
        rc = field_ok(d->owner, sizeof d->owner, 1);
    if (rc == 0)
        rc = field_ok(d->title, sizeof d->title, 0);
    if (rc == 0)
        rc = field_ok(d->description, sizeof d->description, 0);
    if (rc == 0)
        rc = field_ok(d->tags, sizeof d->tags, 0);
    if (rc == 0)
        rc = field_ok(d->media_type, sizeof d->media_type, 0);
    if (rc == 0 && d->size > (uint64_t)INT64_MAX)
        rc = TDSX_E_TOOBIG;
    return rc;
}

static int row_dataset(tdsx_store_t *s, sqlite3_stmt *st, tdsx_dataset_t *d)
{
    memset(d, 0, sizeof *d);
    int rc = col_text(s, st, 0, d->owner, sizeof d->owner);
    if (rc == 0)
        rc = col_text(s, st, 1, d->id, sizeof d->id);
    if (rc == 0)
        rc = col_text(s, st, 2, d->title, sizeof d->title);
    if (rc == 0)
        rc = col_text(s, st, 3, d->description, sizeof d->description);
    if (rc == 0)
        rc = col_text(s, st, 4, d->tags, sizeof d->tags);
    if (rc == 0)
        rc = col_text(s, st, 5, d->media_type, sizeof d->media_type);
    if (rc == 0)
        rc = col_u64(st, 6, &d->size);
    if (rc == 0)
        rc = col_fixed(st, 7, d->sha256, sizeof d->sha256);
    if (rc == 0) {
        d->published_at = sqlite3_column_int64(st, 8);
        d->withdrawn = sqlite3_column_int64(st, 9) != 0;
    }
    return rc;
}

int tdsx_store_catalog_put(tdsx_store_t *s, const tdsx_dataset_t *d)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!d)
        return TDSX_E_INVAL;
    rc = dataset_ok(d);
    if (rc)
        return rc;
    rc = set_sync(s, 0);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_CAT_PUT];
    int b = SQLITE_OK;
    bind_text(st, 1, d->owner, &b);
    bind_text(st, 2, d->id, &b);
    bind_text(st, 3, d->title, &b);
    bind_text(st, 4, d->description, &b);
    bind_text(st, 5, d->tags, &b);
    bind_text(st, 6, d->media_type, &b);
    bind_i64(st, 7, (int64_t)d->size, &b);
    bind_blob(st, 8, d->sha256, sizeof d->sha256, &b);
    bind_i64(st, 9, d->published_at, &b);
    bind_i64(st, 10, d->withdrawn != 0, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "catalog_put") : sql_fail(s, "catalog_put", b);
    done(st);
    return rc;
}

int tdsx_store_catalog_get(tdsx_store_t *s, const char *owner, const char *id, tdsx_dataset_t *out)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!out)
        return TDSX_E_INVAL;
    rc = arg_ok(owner, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = arg_ok(id, TDSX_STORE_NAME_MAX);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_CAT_GET];
    int b = SQLITE_OK;
    bind_text(st, 1, owner, &b);
    bind_text(st, 2, id, &b);
    rc = b == SQLITE_OK ? step(s, st, "catalog_get", NULL) : sql_fail(s, "catalog_get", b);
    if (rc == 1)
        rc = row_dataset(s, st, out);
    else if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    done(st);
    return rc;
}

int tdsx_store_catalog_withdraw(tdsx_store_t *s, const char *owner, const char *id)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    rc = arg_ok(owner, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = arg_ok(id, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = set_sync(s, 1); /* a withdrawal of consent must not undo itself */
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_CAT_WITHDRAW];
    int b = SQLITE_OK;
    bind_text(st, 1, owner, &b);
    bind_text(st, 2, id, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "catalog_withdraw") : sql_fail(s, "catalog_withdraw", b);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = TDSX_E_NOTFOUND;
    done(st);
    return rc;
}

/* Catalog page token: "<owner length>:<owner><id>", unambiguous whatever the bytes. */
static int cat_token_parse(const char *tok, char owner[TDSX_STORE_NAME_MAX + 1],
                           char id[TDSX_STORE_NAME_MAX + 1])
{
    owner[0] = id[0] = '\0';
    if (!tok || !*tok)
        return 0;
    size_t n = strnlen(tok, TDSX_STORE_TOKEN_MAX);
    if (n == TDSX_STORE_TOKEN_MAX)
        return TDSX_E_INVAL;
    const char *colon = memchr(tok, ':', n < 4 ? n : 4);
    int64_t olen;
    if (!colon || parse_u63(tok, (size_t)(colon - tok), &olen) != 0 || olen < 1 ||
        olen > (int64_t)TDSX_STORE_NAME_MAX)
        return TDSX_E_INVAL;
    const char *o = colon + 1;
    size_t rest = n - (size_t)(o - tok);
    if (rest <= (size_t)olen || rest - (size_t)olen > TDSX_STORE_NAME_MAX)
        return TDSX_E_INVAL;
    memcpy(owner, o, (size_t)olen);
    owner[olen] = '\0';
    memcpy(id, o + olen, rest - (size_t)olen);
    id[rest - (size_t)olen] = '\0';
    return 0;
}

int tdsx_store_catalog_list(tdsx_store_t *s, const char *owner, const char *text, const char *after,
                            unsigned limit, tdsx_dataset_cb cb, void *ud, char *next,
                            size_t next_size)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!cb || !next || next_size < TDSX_STORE_TOKEN_MAX)
        return TDSX_E_INVAL;
    next[0] = '\0';
    if (limit == 0 || limit > TDSX_STORE_PAGE_MAX)
        return TDSX_E_INVAL;
    if (owner && (rc = arg_ok(owner, TDSX_STORE_NAME_MAX)) != 0)
        return rc;
    if (text && strnlen(text, TDSX_STORE_TEXT_MAX) == TDSX_STORE_TEXT_MAX)
        return TDSX_E_TOOBIG;
    char a_owner[TDSX_STORE_NAME_MAX + 1], a_id[TDSX_STORE_NAME_MAX + 1];
    rc = cat_token_parse(after, a_owner, a_id);
    if (rc)
        return rc;

    sqlite3_stmt *st = s->st[ST_CAT_LIST];
    tdsx_dataset_t *d = tdsx_malloc(sizeof *d);
    if (!d)
        return TDSX_E_NOMEM;
    int b = SQLITE_OK;
    bind_text(st, 1, owner, &b);
    bind_text(st, 2, text, &b);
    bind_text(st, 3, a_owner, &b);
    bind_text(st, 4, a_id, &b);
    /* One row more than the page tells whether a next page exists without an empty one. */
    bind_i64(st, 5, (int64_t)limit + 1, &b);
    if (b != SQLITE_OK) {
        rc = sql_fail(s, "catalog_list", b);
        goto fail;
    }
    unsigned count = 0;
    for (;;) {
        rc = step(s, st, "catalog_list", NULL);
        if (rc <= 0)
            break;
        if (count == limit) {
            /* d still holds the last entry handed out: the next page starts after it. */
            snprintf(next, next_size, "%zu:%s%s", strlen(d->owner), d->owner, d->id);
            rc = 0;
            break;
        }
        rc = row_dataset(s, st, d);
        if (rc)
            break;
        count++;
        s->busy = 1;
        rc = cb(ud, d);
        s->busy = 0;
        if (rc)
            break;
    }
fail:
    done(st);
    tdsx_free(d);
    if (rc)
        next[0] = '\0';
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Transfers
 * ---------------------------------------------------------------------------------------- */

#define XFER_BIT(x) (1u << (x))
#define XFER_FINAL                                                                                 \
    (XFER_BIT(TDSX_XFER_RECEIPTED) | XFER_BIT(TDSX_XFER_REFUSED) | XFER_BIT(TDSX_XFER_ABORTED) |   \
     XFER_BIT(TDSX_XFER_NRD))

/* The states a record may move to from each state. A receipt, a refusal or an abort is never
 * rewritten, and bytes once committed are not "started" again. NRD is the one final state that
 * can still end in a receipt: the sender keeps listening after signing it, and a late NRR is
 * better evidence than its absence (the NRD stays in the log either way). */
static const unsigned xfer_next[] = {
    [TDSX_XFER_STARTED] = XFER_BIT(TDSX_XFER_STARTED) | XFER_BIT(TDSX_XFER_COMMITTED) | XFER_FINAL,
    [TDSX_XFER_COMMITTED] = XFER_BIT(TDSX_XFER_COMMITTED) | XFER_FINAL,
    [TDSX_XFER_RECEIPTED] = 0,
    [TDSX_XFER_REFUSED] = 0,
    [TDSX_XFER_ABORTED] = 0,
    [TDSX_XFER_NRD] = XFER_BIT(TDSX_XFER_RECEIPTED) | XFER_BIT(TDSX_XFER_REFUSED),
};

static int state_ok(int state)
{
    return state >= TDSX_XFER_STARTED && state <= TDSX_XFER_NRD;
}

static int is_final(int state)
{
    return state_ok(state) && (XFER_FINAL & XFER_BIT(state)) != 0;
}

static int transfer_ok(const tdsx_transfer_t *t)
{
    if ((t->inbound != 0 && t->inbound != 1) || !state_ok((int)t->state))
        return TDSX_E_INVAL;
    int rc = field_ok(t->peer, sizeof t->peer, 1);
    if (rc == 0)
        rc = field_ok(t->dataset_id, sizeof t->dataset_id, 0);
    if (rc == 0 && (t->length > (uint64_t)INT64_MAX || t->durable > (uint64_t)INT64_MAX ||
                    t->sequence > (uint64_t)INT64_MAX))
        rc = TDSX_E_TOOBIG;
    return rc;
}

static int row_transfer(tdsx_store_t *s, sqlite3_stmt *st, tdsx_transfer_t *t)
{
    memset(t, 0, sizeof *t);
    int rc = col_fixed(st, 0, t->id, sizeof t->id);
    if (rc == 0)
        rc = col_text(s, st, 2, t->peer, sizeof t->peer);
    if (rc == 0)
        rc = col_text(s, st, 3, t->dataset_id, sizeof t->dataset_id);
    if (rc == 0)
        rc = col_fixed(st, 4, t->sha256, sizeof t->sha256);
    if (rc == 0)
        rc = col_u64(st, 5, &t->length);
    if (rc == 0)
        rc = col_u64(st, 6, &t->durable);
    if (rc == 0)
        rc = col_u64(st, 7, &t->sequence);
    if (rc)
        return rc;
    int64_t state = sqlite3_column_int64(st, 8);
    if (!state_ok((int)state) || state != (int)state)
        return TDSX_E_FORMAT;
    t->inbound = sqlite3_column_int64(st, 1) != 0;
    t->state = (tdsx_xfer_state_t)state;
    t->error = (int)sqlite3_column_int64(st, 9);
    t->started_at = sqlite3_column_int64(st, 10);
    t->finished_at = sqlite3_column_int64(st, 11);
    return 0;
}

/* One record by id: 0, TDSX_E_NOTFOUND or a failure. */
static int transfer_load(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                         tdsx_transfer_t *out)
{
    sqlite3_stmt *st = s->st[ST_XFER_GET];
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    int rc = b == SQLITE_OK ? step(s, st, "transfer_get", NULL) : sql_fail(s, "transfer_get", b);
    if (rc == 1)
        rc = row_transfer(s, st, out);
    else if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    done(st);
    return rc;
}

int tdsx_store_transfer_begin(tdsx_store_t *s, tdsx_transfer_t *t)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!t)
        return TDSX_E_INVAL;
    rc = transfer_ok(t);
    if (rc)
        return rc;
    if (t->started_at == 0)
        t->started_at = tdsx_now();
    rc = set_sync(s, 1); /* a recorded id must stay refused after a power loss */
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_XFER_INSERT];
    int b = SQLITE_OK;
    bind_blob(st, 1, t->id, sizeof t->id, &b);
    bind_i64(st, 2, t->inbound, &b);
    bind_text(st, 3, t->peer, &b);
    bind_text(st, 4, t->dataset_id, &b);
    bind_blob(st, 5, t->sha256, sizeof t->sha256, &b);
    bind_i64(st, 6, (int64_t)t->length, &b);
    bind_i64(st, 7, (int64_t)t->durable, &b);
    bind_i64(st, 8, (int64_t)t->sequence, &b);
    bind_i64(st, 9, (int64_t)t->state, &b);
    bind_i64(st, 10, t->error, &b);
    bind_i64(st, 11, t->started_at, &b);
    bind_i64(st, 12, t->finished_at, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "transfer_begin") : sql_fail(s, "transfer_begin", b);
    int inserted = rc == 0 && sqlite3_changes(s->db) == 1;
    done(st);
    if (rc || inserted)
        return rc;
    tdsx_transfer_t known;
    rc = transfer_load(s, t->id, &known);
    if (rc)
        return rc;
    if (is_final((int)known.state))
        return TDSX_E_DUPLICATE;
    *t = known;
    return TDSX_E_EXISTS;
}

int tdsx_store_transfer_update(tdsx_store_t *s, const tdsx_transfer_t *t)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!t)
        return TDSX_E_INVAL;
    if (!state_ok((int)t->state))
        return TDSX_E_INVAL;
    if (t->durable > (uint64_t)INT64_MAX)
        return TDSX_E_TOOBIG;
    rc = set_sync(s, 1);
    if (rc == 0)
        rc = tx_begin(s);
    if (rc)
        return rc;
    tdsx_transfer_t cur;
    rc = transfer_load(s, t->id, &cur);
    if (rc)
        goto fail;
    if (!(xfer_next[cur.state] & XFER_BIT(t->state))) {
        tdsx_log(TDSX_LOG_WARN, "store.transfer_state", TDSX_KV_I("from", cur.state),
                 TDSX_KV_I("to", t->state));
        rc = TDSX_E_STATE;
        goto fail;
    }
    int64_t finished = t->finished_at;
    if (finished == 0 && is_final((int)t->state))
        finished = tdsx_now();
    sqlite3_stmt *st = s->st[ST_XFER_UPDATE];
    int b = SQLITE_OK;
    bind_blob(st, 1, t->id, sizeof t->id, &b);
    bind_i64(st, 2, (int64_t)t->state, &b);
    bind_i64(st, 3, (int64_t)t->durable, &b);
    bind_i64(st, 4, t->error, &b);
    bind_i64(st, 5, finished, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "transfer_update") : sql_fail(s, "transfer_update", b);
    done(st);
    if (rc == 0)
        rc = tx_commit(s);
    if (rc)
        goto fail;
    return 0;
fail:
    tx_rollback(s);
    return rc;
}

int tdsx_store_transfer_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                            tdsx_transfer_t *out)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!id || !out)
        return TDSX_E_INVAL;
    return transfer_load(s, id, out);
}

int tdsx_store_next_sequence(tdsx_store_t *s, const char *sender, const char *receiver,
                             uint64_t *out)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!out)
        return TDSX_E_INVAL;
    rc = arg_ok(sender, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = arg_ok(receiver, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = set_sync(s, 1); /* a number handed out is never handed out again */
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_SEQ_NEXT];
    int b = SQLITE_OK;
    bind_text(st, 1, sender, &b);
    bind_text(st, 2, receiver, &b);
    rc = b == SQLITE_OK ? step(s, st, "next_sequence", NULL) : sql_fail(s, "next_sequence", b);
    int64_t v = 0;
    if (rc == 1) {
        v = sqlite3_column_int64(st, 0);
        rc = step_done(s, st, "next_sequence");
    } else if (rc == 0) {
        tdsx_log(TDSX_LOG_ERROR, "store.sequence_exhausted", TDSX_KV_S("sender", sender),
                 TDSX_KV_S("receiver", receiver));
        rc = TDSX_E_TOOBIG;
    }
    done(st);
    if (rc == 0 && v < 1)
        rc = TDSX_E_FORMAT;
    if (rc == 0)
        *out = (uint64_t)v;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Receipts
 * ---------------------------------------------------------------------------------------- */

static int blob_ok(tdsx_bytes_t b, int required)
{
    if ((!b.p && b.n) || (required && b.n == 0))
        return TDSX_E_INVAL;
    return b.n > TDSX_STORE_BLOB_MAX ? TDSX_E_TOOBIG : 0;
}

static int receipt_ok(const tdsx_receipt_t *r)
{
    int rc = field_ok(r->sender, sizeof r->sender, 1);
    if (rc == 0)
        rc = field_ok(r->receiver, sizeof r->receiver, 1);
    if (rc == 0)
        rc = blob_ok(r->nro, 1);
    if (rc == 0)
        rc = blob_ok(r->nrr, 1);
    /* A certificate the caller does not have (the connection is gone) must not cost the
     * receipt itself; the peer's certificate is also kept in peer_certs. */
    if (rc == 0)
        rc = blob_ok(r->sender_cert, 0);
    if (rc == 0)
        rc = blob_ok(r->receiver_cert, 0);
    return rc;
}

/* A receipt whose byte views point into the current row (no copies). */
static int row_receipt(tdsx_store_t *s, sqlite3_stmt *st, tdsx_receipt_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = col_fixed(st, 1, r->transfer_id, sizeof r->transfer_id);
    if (rc == 0)
        rc = col_text(s, st, 2, r->sender, sizeof r->sender);
    if (rc == 0)
        rc = col_text(s, st, 3, r->receiver, sizeof r->receiver);
    if (rc == 0)
        rc = col_view(s, st, 4, &r->nro);
    if (rc == 0)
        rc = col_view(s, st, 5, &r->nrr);
    if (rc == 0)
        rc = col_view(s, st, 6, &r->sender_cert);
    if (rc == 0)
        rc = col_view(s, st, 7, &r->receiver_cert);
    if (rc == 0)
        r->stored_at = sqlite3_column_int64(st, 8);
    return rc;
}

int tdsx_store_receipt_put(tdsx_store_t *s, const tdsx_receipt_t *r, int refused)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!r || (refused != 0 && refused != 1))
        return TDSX_E_INVAL;
    rc = receipt_ok(r);
    if (rc == 0)
        rc = set_sync(s, 1); /* reported as stored means stored, power loss or not */
    if (rc == 0)
        rc = tx_begin(s);
    if (rc)
        return rc;
    tdsx_transfer_t t;
    rc = transfer_load(s, r->transfer_id, &t);
    if (rc)
        goto fail;
    int64_t now = tdsx_now();
    sqlite3_stmt *st = s->st[ST_RCPT_INSERT];
    int b = SQLITE_OK, raw = SQLITE_OK;
    bind_blob(st, 1, r->transfer_id, sizeof r->transfer_id, &b);
    bind_text(st, 2, r->sender, &b);
    bind_text(st, 3, r->receiver, &b);
    bind_blob(st, 4, r->nro.p, r->nro.n, &b);
    bind_blob(st, 5, r->nrr.p, r->nrr.n, &b);
    bind_blob(st, 6, r->sender_cert.p, r->sender_cert.n, &b);
    bind_blob(st, 7, r->receiver_cert.p, r->receiver_cert.n, &b);
    bind_i64(st, 8, now, &b);
    rc = b == SQLITE_OK ? step(s, st, "receipt_put", &raw) : sql_fail(s, "receipt_put", b);
    done(st);
    if (raw == SQLITE_CONSTRAINT_UNIQUE)
        rc = TDSX_E_DUPLICATE;
    else if ((raw & 0xff) == SQLITE_CONSTRAINT)
        rc = sql_fail(s, "receipt_put", raw);
    if (rc)
        goto fail;
    /* Checked after the insert so that a second receipt reads as the duplicate it is. */
    tdsx_xfer_state_t to = refused ? TDSX_XFER_REFUSED : TDSX_XFER_RECEIPTED;
    if (!(xfer_next[t.state] & XFER_BIT(to))) {
        rc = TDSX_E_STATE;
        goto fail;
    }
    st = s->st[ST_XFER_UPDATE];
    bind_blob(st, 1, t.id, sizeof t.id, &b);
    bind_i64(st, 2, (int64_t)to, &b);
    bind_i64(st, 3, (int64_t)t.durable, &b);
    bind_i64(st, 4, t.error, &b);
    bind_i64(st, 5, now, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "receipt_put") : sql_fail(s, "receipt_put", b);
    done(st);
    if (rc == 0)
        rc = tx_commit(s);
    if (rc)
        goto fail;
    return 0;
fail:
    tx_rollback(s);
    return rc;
}

static int dup_bytes(tdsx_bytes_t src, tdsx_bytes_t *dst)
{
    uint8_t *p = tdsx_malloc(src.n);
    if (!p)
        return TDSX_E_NOMEM;
    if (src.n)
        memcpy(p, src.p, src.n);
    *dst = tdsx_bytes(p, src.n);
    return 0;
}

int tdsx_store_receipt_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                           tdsx_receipt_t *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!id || !out)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[ST_RCPT_GET];
    tdsx_receipt_t view;
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    rc = b == SQLITE_OK ? step(s, st, "receipt_get", NULL) : sql_fail(s, "receipt_get", b);
    if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    if (rc == 1)
        rc = row_receipt(s, st, &view);
    if (rc)
        goto fail;
    memcpy(out->transfer_id, view.transfer_id, sizeof out->transfer_id);
    memcpy(out->sender, view.sender, sizeof out->sender);
    memcpy(out->receiver, view.receiver, sizeof out->receiver);
    out->stored_at = view.stored_at;
    rc = dup_bytes(view.nro, &out->nro);
    if (rc == 0)
        rc = dup_bytes(view.nrr, &out->nrr);
    if (rc == 0)
        rc = dup_bytes(view.sender_cert, &out->sender_cert);
    if (rc == 0)
        rc = dup_bytes(view.receiver_cert, &out->receiver_cert);
    if (rc)
        goto fail;
    done(st);
    return 0;
fail:
    done(st);
    tdsx_receipt_clear(out);
    return rc;
}

int tdsx_store_receipt_list(tdsx_store_t *s, const char *after, unsigned limit, tdsx_receipt_cb cb,
                            void *ud, char *next, size_t next_size)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!cb || !next || next_size < TDSX_STORE_TOKEN_MAX)
        return TDSX_E_INVAL;
    next[0] = '\0';
    if (limit == 0 || limit > TDSX_STORE_PAGE_MAX)
        return TDSX_E_INVAL;
    /* Receipt token: the storage number of the last receipt handed out, in decimal. */
    int64_t before = INT64_MAX;
    if (after && *after && parse_u63(after, strnlen(after, TDSX_STORE_TOKEN_MAX), &before) != 0)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[ST_RCPT_LIST];
    int b = SQLITE_OK;
    bind_i64(st, 1, before, &b);
    bind_i64(st, 2, (int64_t)limit + 1, &b);
    if (b != SQLITE_OK) {
        rc = sql_fail(s, "receipt_list", b);
        goto fail;
    }
    unsigned count = 0;
    int64_t last = 0;
    for (;;) {
        rc = step(s, st, "receipt_list", NULL);
        if (rc <= 0)
            break;
        if (count == limit) {
            snprintf(next, next_size, "%lld", (long long)last);
            rc = 0;
            break;
        }
        tdsx_receipt_t r;
        rc = row_receipt(s, st, &r);
        if (rc)
            break;
        last = sqlite3_column_int64(st, 0);
        count++;
        s->busy = 1;
        rc = cb(ud, &r);
        s->busy = 0;
        if (rc)
            break;
    }
fail:
    done(st);
    if (rc)
        next[0] = '\0';
    return rc;
}

void tdsx_receipt_clear(tdsx_receipt_t *r)
{
    if (!r)
        return;
    tdsx_free((void *)r->nro.p);
    tdsx_free((void *)r->nrr.p);
    tdsx_free((void *)r->sender_cert.p);
    tdsx_free((void *)r->receiver_cert.p);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------------------
 * Peers' sign certificates
 * ---------------------------------------------------------------------------------------- */

int tdsx_store_peer_cert_put(tdsx_store_t *s, const char *peer, tdsx_bytes_t der)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    rc = arg_ok(peer, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = blob_ok(der, 1);
    if (rc == 0)
        rc = set_sync(s, 0); /* the peer presents it again at its next handshake */
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_PEER_PUT];
    int b = SQLITE_OK;
    bind_text(st, 1, peer, &b);
    bind_blob(st, 2, der.p, der.n, &b);
    bind_i64(st, 3, tdsx_now(), &b);
    rc = b == SQLITE_OK ? step_done(s, st, "peer_cert_put") : sql_fail(s, "peer_cert_put", b);
    done(st);
    return rc;
}

/* Runs a bound single-row, single-BLOB query and hands the caller a heap copy of the value
 * (tdsx_free); TDSX_E_NOTFOUND when there is no row. b is the binding status. */
static int blob_result(tdsx_store_t *s, sqlite3_stmt *st, int b, const char *what, uint8_t **out,
                       size_t *len)
{
    int rc = b == SQLITE_OK ? step(s, st, what, NULL) : sql_fail(s, what, b);
    tdsx_bytes_t view;
    if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    if (rc == 1)
        rc = col_view(s, st, 0, &view);
    if (rc == 0) {
        tdsx_bytes_t copy;
        rc = dup_bytes(view, &copy);
        if (rc == 0) {
            *out = (uint8_t *)copy.p;
            *len = copy.n;
        }
    }
    done(st);
    return rc;
}

int tdsx_store_peer_cert_get(tdsx_store_t *s, const char *peer, uint8_t **der, size_t *len)
{
    if (der)
        *der = NULL;
    if (len)
        *len = 0;
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!der || !len)
        return TDSX_E_INVAL;
    rc = arg_ok(peer, TDSX_STORE_NAME_MAX);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_PEER_GET];
    int b = SQLITE_OK;
    bind_text(st, 1, peer, &b);
    return blob_result(s, st, b, "peer_cert_get", der, len);
}

/* ------------------------------------------------------------------------------------------
 * Kept NROs
 * ---------------------------------------------------------------------------------------- */

int tdsx_store_nro_put(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN], tdsx_bytes_t nro)
{
    int rc = check_store(s);
    if (rc == 0)
        rc = id ? blob_ok(nro, 1) : TDSX_E_INVAL;
    /* Not synced on its own: lost in a crash, the send simply cannot be resumed and is sent
     * again under a new id (the receiver's part file is swept after part_ttl). */
    if (rc == 0)
        rc = set_sync(s, 0);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_NRO_PUT];
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    bind_blob(st, 2, nro.p, nro.n, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "nro_put") : sql_fail(s, "nro_put", b);
    done(st);
    return rc;
}

int tdsx_store_nro_get(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN], uint8_t **nro,
                       size_t *len)
{
    if (nro)
        *nro = NULL;
    if (len)
        *len = 0;
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!id || !nro || !len)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[ST_NRO_GET];
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    return blob_result(s, st, b, "nro_get", nro, len);
}

int tdsx_store_receipt_logged(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN],
                              uint64_t index)
{
    int rc = check_store(s);
    if (rc == 0)
        rc = id && index <= (uint64_t)INT64_MAX ? set_sync(s, 0) : TDSX_E_INVAL;
    if (rc)
        return rc;
    /* NORMAL sync is enough: a mark lost with the power only makes the next start append the
     * receipt again, which is the duplicate the header admits, never a missing entry. */
    sqlite3_stmt *st = s->st[ST_RCPT_LOGGED];
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    bind_i64(st, 2, (int64_t)index, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "receipt_logged") : sql_fail(s, "receipt_logged", b);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = TDSX_E_NOTFOUND;
    done(st);
    return rc;
}

int tdsx_store_receipt_log_next(tdsx_store_t *s, uint64_t *next)
{
    int rc = check_store(s);
    if (rc == 0 && !next)
        rc = TDSX_E_INVAL;
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_RCPT_LOG_NEXT];
    rc = step(s, st, "receipt_log_next", NULL);
    if (rc == 1) {
        int64_t v = sqlite3_column_int64(st, 0);
        *next = v > 0 ? (uint64_t)v : 0;
        rc = 0;
    } else if (rc == 0) {
        rc = sql_fail(s, "receipt_log_next", SQLITE_MISUSE); /* an aggregate always has a row */
    }
    done(st);
    return rc;
}

int tdsx_store_receipt_unlogged(tdsx_store_t *s, unsigned limit, tdsx_receipt_cb cb, void *ud)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!cb || limit == 0 || limit > TDSX_STORE_PAGE_MAX)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[ST_RCPT_UNLOGGED];
    int b = SQLITE_OK;
    bind_i64(st, 1, (int64_t)limit, &b);
    if (b != SQLITE_OK) {
        done(st);
        return sql_fail(s, "receipt_unlogged", b);
    }
    for (;;) {
        rc = step(s, st, "receipt_unlogged", NULL);
        if (rc <= 0)
            break;
        tdsx_receipt_t r;
        rc = row_receipt(s, st, &r);
        if (rc)
            break;
        s->busy = 1;
        rc = cb(ud, &r);
        s->busy = 0;
        if (rc)
            break;
    }
    done(st);
    return rc;
}

int tdsx_store_nro_drop(tdsx_store_t *s, const uint8_t id[TDSX_TRANSFER_ID_LEN])
{
    int rc = check_store(s);
    if (rc == 0)
        rc = id ? set_sync(s, 0) : TDSX_E_INVAL;
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_NRO_DROP];
    int b = SQLITE_OK;
    bind_blob(st, 1, id, TDSX_TRANSFER_ID_LEN, &b);
    rc = b == SQLITE_OK ? step_done(s, st, "nro_drop") : sql_fail(s, "nro_drop", b);
    done(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Agreements
 * ---------------------------------------------------------------------------------------- */

static int agreement_ok(const tdsx_agreement_rec_t *a)
{
    int rc = field_ok(a->provider, sizeof a->provider, 1);
    if (rc == 0)
        rc = field_ok(a->consumer, sizeof a->consumer, 1);
    if (rc == 0)
        rc = field_ok(a->proposer, sizeof a->proposer, 1);
    if (rc == 0)
        rc = field_ok(a->dataset_id, sizeof a->dataset_id, 0);
    if (rc == 0)
        rc = field_ok(a->category, sizeof a->category, 0);
    if (rc == 0)
        rc = field_ok(a->purpose_code, sizeof a->purpose_code, 1);
    if (rc == 0)
        rc = field_ok(a->purpose_text, sizeof a->purpose_text, 0);
    if (rc == 0)
        rc = field_ok(a->actions, sizeof a->actions, 0);
    if (rc == 0)
        rc = field_ok(a->reason, sizeof a->reason, 0);
    if (rc == 0)
        rc = blob_ok(a->proposal, 1);
    if (rc == 0)
        rc = blob_ok(a->acceptance, a->state == TDSX_AGREE_ACTIVE);
    if (rc == 0)
        rc = blob_ok(a->termination, 0);
    if (rc)
        return rc;
    if (!a->dataset_id[0] == !a->category[0])
        return TDSX_E_INVAL; /* exactly one subject */
    if (a->not_before > a->not_after || a->transfer_limit > (uint64_t)INT64_MAX)
        return TDSX_E_INVAL;
    if (a->state != TDSX_AGREE_PROPOSED && a->state != TDSX_AGREE_ACTIVE)
        return TDSX_E_INVAL;
    return 0;
}

/* A record whose byte views point into the current row (no copies). */
static int row_agreement(tdsx_store_t *s, sqlite3_stmt *st, tdsx_agreement_rec_t *a)
{
    memset(a, 0, sizeof *a);
    int rc = col_fixed(st, 1, a->hash, sizeof a->hash);
    if (rc == 0)
        rc = col_fixed(st, 2, a->id, sizeof a->id);
    if (rc == 0)
        rc = col_text(s, st, 3, a->provider, sizeof a->provider);
    if (rc == 0)
        rc = col_text(s, st, 4, a->consumer, sizeof a->consumer);
    if (rc == 0)
        rc = col_text(s, st, 5, a->proposer, sizeof a->proposer);
    if (rc == 0)
        rc = col_text(s, st, 6, a->dataset_id, sizeof a->dataset_id);
    if (rc == 0)
        rc = col_text(s, st, 7, a->category, sizeof a->category);
    if (rc == 0)
        rc = col_text(s, st, 8, a->purpose_code, sizeof a->purpose_code);
    if (rc == 0)
        rc = col_text(s, st, 9, a->purpose_text, sizeof a->purpose_text);
    if (rc == 0)
        rc = col_text(s, st, 10, a->actions, sizeof a->actions);
    a->not_before = sqlite3_column_int64(st, 11);
    a->not_after = sqlite3_column_int64(st, 12);
    if (rc == 0)
        rc = col_u64(st, 13, &a->transfer_limit);
    if (rc == 0)
        rc = col_u64(st, 14, &a->transfers_used);
    int64_t state = sqlite3_column_int64(st, 15);
    if (rc == 0 && (state < TDSX_AGREE_PROPOSED || state > TDSX_AGREE_TERMINATED))
        rc = TDSX_E_FORMAT;
    a->state = (tdsx_agree_status_t)state;
    if (rc == 0)
        rc = col_text(s, st, 16, a->reason, sizeof a->reason);
    if (rc == 0)
        rc = col_view(s, st, 17, &a->proposal);
    if (rc == 0)
        rc = col_view(s, st, 18, &a->acceptance);
    if (rc == 0)
        rc = col_view(s, st, 19, &a->termination);
    a->created_at = sqlite3_column_int64(st, 20);
    a->updated_at = sqlite3_column_int64(st, 21);
    return rc;
}

int tdsx_store_agreement_put(tdsx_store_t *s, const tdsx_agreement_rec_t *a)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!a)
        return TDSX_E_INVAL;
    rc = agreement_ok(a);
    if (rc == 0)
        rc = set_sync(s, 1); /* what we signed or accepted must not roll back */
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_AGR_INSERT];
    int b = SQLITE_OK, raw = SQLITE_OK;
    bind_blob(st, 1, a->hash, sizeof a->hash, &b);
    bind_blob(st, 2, a->id, sizeof a->id, &b);
    bind_text(st, 3, a->provider, &b);
    bind_text(st, 4, a->consumer, &b);
    bind_text(st, 5, a->proposer, &b);
    bind_text(st, 6, a->dataset_id, &b);
    bind_text(st, 7, a->category, &b);
    bind_text(st, 8, a->purpose_code, &b);
    bind_text(st, 9, a->purpose_text, &b);
    bind_text(st, 10, a->actions, &b);
    bind_i64(st, 11, a->not_before, &b);
    bind_i64(st, 12, a->not_after, &b);
    bind_i64(st, 13, (int64_t)a->transfer_limit, &b);
    bind_i64(st, 14, (int64_t)a->state, &b);
    bind_text(st, 15, a->reason, &b);
    bind_blob(st, 16, a->proposal.p, a->proposal.n, &b);
    bind_blob(st, 17, a->acceptance.p, a->acceptance.n, &b);
    bind_blob(st, 18, a->termination.p, a->termination.n, &b);
    bind_i64(st, 19, tdsx_now(), &b);
    rc = b == SQLITE_OK ? step(s, st, "agreement_put", &raw) : sql_fail(s, "agreement_put", b);
    if (rc == 1)
        rc = sql_fail(s, "agreement_put", SQLITE_MISUSE);
    if (raw == SQLITE_CONSTRAINT_UNIQUE)
        rc = TDSX_E_DUPLICATE;
    else if ((raw & 0xff) == SQLITE_CONSTRAINT)
        rc = sql_fail(s, "agreement_put", raw);
    done(st);
    return rc;
}

/* Looks one record up by a 32-byte hash or a 16-byte id (the statement says which) and copies
 * its bytes. */
static int agreement_load(tdsx_store_t *s, int which, const uint8_t *key, size_t key_len,
                          tdsx_agreement_rec_t *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!key || !out)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[which];
    tdsx_agreement_rec_t view;
    int b = SQLITE_OK;
    bind_blob(st, 1, key, key_len, &b);
    rc = b == SQLITE_OK ? step(s, st, "agreement_get", NULL) : sql_fail(s, "agreement_get", b);
    if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    if (rc == 1)
        rc = row_agreement(s, st, &view);
    if (rc)
        goto fail;
    *out = view;
    out->proposal = out->acceptance = out->termination = tdsx_bytes(NULL, 0);
    rc = dup_bytes(view.proposal, &out->proposal);
    if (rc == 0)
        rc = dup_bytes(view.acceptance, &out->acceptance);
    if (rc == 0)
        rc = dup_bytes(view.termination, &out->termination);
    if (rc)
        goto fail;
    done(st);
    return 0;
fail:
    done(st);
    tdsx_agreement_clear(out);
    return rc;
}

int tdsx_store_agreement_get(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN],
                             tdsx_agreement_rec_t *out)
{
    return agreement_load(s, ST_AGR_GET, hash, TDSX_SHA256_LEN, out);
}

int tdsx_store_agreement_get_id(tdsx_store_t *s, const uint8_t id[TDSX_AGREE_ID_LEN],
                                tdsx_agreement_rec_t *out)
{
    return agreement_load(s, ST_AGR_GET_ID, id, TDSX_AGREE_ID_LEN, out);
}

/* The state of the record with this hash, read inside the caller's transaction. */
static int agreement_state(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN], int64_t *state)
{
    sqlite3_stmt *st = s->st[ST_AGR_GET];
    int b = SQLITE_OK;
    bind_blob(st, 1, hash, TDSX_SHA256_LEN, &b);
    int rc =
        b == SQLITE_OK ? step(s, st, "agreement_state", NULL) : sql_fail(s, "agreement_state", b);
    if (rc == 0)
        rc = TDSX_E_NOTFOUND;
    if (rc == 1) {
        *state = sqlite3_column_int64(st, 15);
        rc = 0;
    }
    done(st);
    return rc;
}

int tdsx_store_agreement_move(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN],
                              tdsx_agree_status_t to, tdsx_bytes_t env, const char *reason)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!hash)
        return TDSX_E_INVAL;
    if (!reason)
        reason = "";
    if (strnlen(reason, 512) > 511)
        return TDSX_E_TOOBIG;
    unsigned from; /* bit set of the states this move may start from */
    switch (to) {
    case TDSX_AGREE_ACTIVE: from = 1u << TDSX_AGREE_PROPOSED; break;
    case TDSX_AGREE_REFUSED: from = 1u << TDSX_AGREE_PROPOSED; break;
    case TDSX_AGREE_TERMINATED:
        from = (1u << TDSX_AGREE_PROPOSED) | (1u << TDSX_AGREE_ACTIVE);
        break;
    default: return TDSX_E_INVAL;
    }
    rc = blob_ok(env, to != TDSX_AGREE_REFUSED);
    if (rc == 0 && to == TDSX_AGREE_REFUSED && env.n)
        rc = TDSX_E_INVAL;
    if (rc == 0)
        rc = set_sync(s, 1);
    if (rc == 0)
        rc = tx_begin(s);
    if (rc)
        return rc;
    int64_t state = 0;
    rc = agreement_state(s, hash, &state);
    if (rc)
        goto fail;
    if (state < 0 || state > 31 || !(from & (1u << state))) {
        rc = TDSX_E_STATE;
        goto fail;
    }
    sqlite3_stmt *st = s->st[ST_AGR_MOVE];
    int b = SQLITE_OK;
    bind_blob(st, 1, hash, TDSX_SHA256_LEN, &b);
    bind_i64(st, 2, (int64_t)to, &b);
    if (to == TDSX_AGREE_ACTIVE)
        bind_blob(st, 3, env.p, env.n, &b);
    else if (b == SQLITE_OK)
        b = sqlite3_bind_null(st, 3);
    if (to == TDSX_AGREE_TERMINATED)
        bind_blob(st, 4, env.p, env.n, &b);
    else if (b == SQLITE_OK)
        b = sqlite3_bind_null(st, 4);
    bind_text(st, 5, reason, &b);
    bind_i64(st, 6, tdsx_now(), &b);
    rc = b == SQLITE_OK ? step_done(s, st, "agreement_move") : sql_fail(s, "agreement_move", b);
    done(st);
    if (rc == 0)
        rc = tx_commit(s);
    if (rc)
        goto fail;
    return 0;
fail:
    tx_rollback(s);
    return rc;
}

int tdsx_store_agreement_use(tdsx_store_t *s, const uint8_t hash[TDSX_SHA256_LEN], uint64_t *used)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!hash)
        return TDSX_E_INVAL;
    rc = set_sync(s, 1);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_AGR_USE];
    int b = SQLITE_OK;
    bind_blob(st, 1, hash, TDSX_SHA256_LEN, &b);
    bind_i64(st, 2, tdsx_now(), &b);
    rc = b == SQLITE_OK ? step(s, st, "agreement_use", NULL) : sql_fail(s, "agreement_use", b);
    if (rc == 1) {
        uint64_t n = 0;
        rc = col_u64(st, 0, &n);
        if (rc == 0 && used)
            *used = n;
        /* RETURNING hands the row out before the statement ends; the write commits here. */
        if (rc == 0)
            rc = step_done(s, st, "agreement_use");
        done(st);
        return rc;
    }
    done(st);
    if (rc)
        return rc;
    /* No row: unknown, not ACTIVE, or at its limit. Which one matters to the caller. */
    int64_t state = 0;
    rc = agreement_state(s, hash, &state);
    return rc ? rc : TDSX_E_STATE;
}

/* Steps through rows of a prepared agreement query, handing each to cb. */
static int agreement_rows(tdsx_store_t *s, sqlite3_stmt *st, const char *op, unsigned limit,
                          tdsx_agreement_cb cb, void *ud, int64_t *last, int *more)
{
    unsigned count = 0;
    int rc;
    *more = 0;
    for (;;) {
        rc = step(s, st, op, NULL);
        if (rc <= 0)
            break;
        if (count == limit) {
            *more = 1;
            rc = 0;
            break;
        }
        tdsx_agreement_rec_t a;
        rc = row_agreement(s, st, &a);
        if (rc)
            break;
        *last = sqlite3_column_int64(st, 0);
        count++;
        s->busy = 1;
        rc = cb(ud, &a);
        s->busy = 0;
        if (rc)
            break;
    }
    return rc;
}

int tdsx_store_agreement_list(tdsx_store_t *s, const char *after, unsigned limit,
                              tdsx_agreement_cb cb, void *ud, char *next, size_t next_size)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!cb || !next || next_size < TDSX_STORE_TOKEN_MAX)
        return TDSX_E_INVAL;
    next[0] = '\0';
    if (limit == 0 || limit > TDSX_STORE_PAGE_MAX)
        return TDSX_E_INVAL;
    /* Token: the storage number of the last agreement handed out, in decimal. */
    int64_t before = INT64_MAX;
    if (after && *after && parse_u63(after, strnlen(after, TDSX_STORE_TOKEN_MAX), &before) != 0)
        return TDSX_E_INVAL;
    sqlite3_stmt *st = s->st[ST_AGR_LIST];
    int b = SQLITE_OK, more = 0;
    int64_t last = 0;
    bind_i64(st, 1, before, &b);
    bind_i64(st, 2, (int64_t)limit + 1, &b);
    rc = b == SQLITE_OK ? agreement_rows(s, st, "agreement_list", limit, cb, ud, &last, &more)
                        : sql_fail(s, "agreement_list", b);
    done(st);
    if (rc == 0 && more)
        snprintf(next, next_size, "%lld", (long long)last);
    return rc;
}

int tdsx_store_agreement_match(tdsx_store_t *s, const char *provider, const char *consumer,
                               const char *dataset_id, const char *category, tdsx_agreement_cb cb,
                               void *ud)
{
    int rc = check_store(s);
    if (rc)
        return rc;
    if (!cb || !dataset_id || !category)
        return TDSX_E_INVAL;
    rc = arg_ok(provider, TDSX_STORE_NAME_MAX);
    if (rc == 0)
        rc = arg_ok(consumer, TDSX_STORE_NAME_MAX);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_AGR_MATCH];
    int b = SQLITE_OK, more = 0;
    int64_t last = 0;
    bind_text(st, 1, provider, &b);
    bind_text(st, 2, consumer, &b);
    bind_text(st, 3, dataset_id, &b);
    bind_text(st, 4, category, &b);
    bind_i64(st, 5, TDSX_STORE_PAGE_MAX, &b);
    rc = b == SQLITE_OK
             ? agreement_rows(s, st, "agreement_match", TDSX_STORE_PAGE_MAX, cb, ud, &last, &more)
             : sql_fail(s, "agreement_match", b);
    done(st);
    return rc;
}

void tdsx_agreement_clear(tdsx_agreement_rec_t *a)
{
    if (!a)
        return;
    tdsx_free((void *)a->proposal.p);
    tdsx_free((void *)a->acceptance.p);
    tdsx_free((void *)a->termination.p);
    memset(a, 0, sizeof *a);
}
