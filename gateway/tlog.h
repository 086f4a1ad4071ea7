/*
 * tlog.h — a node's transparency log (SPEC §11): an append-only RFC 9162 Merkle log stored in
 * the C2SP tlog-tiles layout, so the directory can be served as it is by any static web server.
 *
 *   <dir>/checkpoint                   the latest checkpoint, a signed note (c2sp.org/
 *                                      tlog-checkpoint) by the log's key; origin = key name
 *   <dir>/tile/<L>/<N>                 full tiles: 256 hashes of 32 bytes (8192 bytes)
 *   <dir>/tile/<L>/<N>.p/<W>           partial tiles: the W (1..255) hashes of the right edge
 *   <dir>/tile/entries/<N>[.p/<W>]     entry bundles: entries as be16(length) || bytes
 *
 * <N> is the tile index in 3-digit groups, all but the last prefixed with 'x' (1234067 is
 * x001/x234/067). Level-0 hashes are the RFC 9162 leaf hashes SHA-256(0x00 || entry); a hash
 * at level L+1 is the Merkle root of the full level-L tile below it. Files are 0600 and
 * directories 0700 when we create them.
 *
 * Durability. tdsx_tlog_append writes the batch's new files (entry bundles, tiles, the new
 * signed checkpoint under a temporary name), fsyncs them and the directories holding them (one
 * group, whatever the batch size), and only then renames the checkpoint into place and returns.
 * Once it has returned 0 every entry of the batch survives a crash or power loss, and no index
 * it handed out is ever given to another entry. Publishing the checkpoint is a rename whose own
 * durability the next append (or close) completes; recovery does not need it (below).
 *
 * Recovery (tdsx_tlog_open). The checkpoint file is verified with the log's key; the tiles and
 * the entry bundle of its size must reproduce its root, or the log is refused
 * (TDSX_E_LOG_CORRUPT): what was published is never rolled back. Beyond it, the durable size is
 * the largest one at which the entry bundles and tiles on disk agree (every file an append to
 * that size would have written is present with exactly the expected bytes); a newer checkpoint
 * is then signed for it. Files past that size (torn writes of an append that never returned)
 * are removed, so their indexes are assigned afresh by the next append. An append that never
 * returned can thus survive whole, in part (a prefix ending at a multiple of 256 entries, where
 * a full bundle and its tiles agree on their own) or not at all: a caller that retries it must
 * tolerate duplicates.
 *
 * Integrity on read. A full tile read from disk is accepted only when its Merkle root equals
 * the hash above it, checked level by level up to the right edge that reproduced the signed
 * root; an entry read from a bundle must hash to its level-0 hash. Any mismatch, a file of the
 * wrong size or an unparsable bundle is TDSX_E_LOG_CORRUPT, never a crash.
 *
 * Proofs (RFC 9162 §2.1.3, §2.1.4) for any size up to the current one are assembled from the
 * tiles: O(log n) tile reads (at most a few per level, plus a small cache of recently read full
 * tiles) and O(log n) hashing; verify them with tdsx_merkle_inclusion_verify and
 * tdsx_merkle_consistency_verify.
 *
 * Threads. Every call BLOCKS on file I/O (fsync for appends): run them on a worker thread (the
 * daemon uses the libuv thread pool), never on the event loop. Appends are serialised among
 * themselves; reads (head, checkpoint, entry, proofs, stats) may run concurrently with an
 * append and with each other, and see the log as of the last completed append. open and close
 * must not run concurrently with anything else on the same log. One process at a time may
 * open a directory (flock; TDSX_E_BUSY otherwise).
 *
 * Errors: pointer arguments must not be NULL (TDSX_E_INVAL). File system failures are
 * TDSX_E_IO (logged with the path and errno), allocation failures TDSX_E_NOMEM.
 */
#ifndef TDSX_GATEWAY_TLOG_H
#define TDSX_GATEWAY_TLOG_H

#include "core.h"
#include "crypto.h"

/* Largest entry: its length is a big-endian uint16 in the bundle (c2sp.org/tlog-tiles). */
#define TDSX_TLOG_ENTRY_MAX 65535u
/* Most entries, and most entry bytes, one append takes. */
#define TDSX_TLOG_BATCH_MAX 65536u
#define TDSX_TLOG_BATCH_BYTES_MAX (64u * 1024u * 1024u)
/* Longest directory path accepted. */
#define TDSX_TLOG_DIR_MAX 3800u

typedef struct tdsx_tlog_s tdsx_tlog_t;

/*
 * Opens the log in `dir`, creating the directory (its last component only, 0700) and an
 * empty log with a signed checkpoint of size 0 when it holds no checkpoint yet. `log` signs
 * every checkpoint; it must be a TDSX_NOTE_ED25519 key (TDSX_E_KEY otherwise), its name is
 * the log's origin, and it is borrowed: it must outlive the log. Recovery as described above.
 * Errors: TDSX_E_BUSY (another process has the directory open), TDSX_E_LOG_CORRUPT (damaged
 * files, tiles present without any checkpoint, a checkpoint the tiles do not reproduce), the
 * tdsx_checkpoint_open errors for the checkpoint file (TDSX_E_NOTE_UNVERIFIED or
 * TDSX_E_SIG_INVALID when it is not signed by `log`, TDSX_E_CHECKPOINT when it is malformed or
 * of another origin), TDSX_E_TOOBIG (dir longer than TDSX_TLOG_DIR_MAX), TDSX_E_IO,
 * TDSX_E_NOMEM. *out is set only on success.
 */
TDSX_MUST_CHECK int tdsx_tlog_open(const char *dir, const tdsx_note_signer_t *log,
                                   tdsx_tlog_t **out);
/* Makes the last published checkpoint durable, unlocks and frees. NULL is a no-op. */
void tdsx_tlog_close(tdsx_tlog_t *t);

/*
 * Appends the n entries (in order; each at most TDSX_TLOG_ENTRY_MAX bytes, may be empty; the
 * caller keeps them) as one batch and returns once they are durable, with *first = the index
 * of entries[0]. Errors, with nothing appended: TDSX_E_INVAL (n == 0 or over
 * TDSX_TLOG_BATCH_MAX), TDSX_E_TOOBIG (an entry or the batch's bytes over their caps, or the
 * log would pass 2^63 entries), TDSX_E_NOMEM. After an I/O failure (TDSX_E_IO) the batch may or
 * may not be in the log, and the failure is sticky: every later append returns it, reads still
 * work; close and reopen to let recovery decide.
 */
TDSX_MUST_CHECK int tdsx_tlog_append(tdsx_tlog_t *t, const tdsx_bytes_t *entries, size_t n,
                                     uint64_t *first);

/* The current tree size and root, as one consistent pair (either may be NULL). */
void tdsx_tlog_head(tdsx_tlog_t *t, uint64_t *size, tdsx_hash_t *root);
/* Appends the current signed checkpoint (the bytes of <dir>/checkpoint) to out. */
TDSX_MUST_CHECK int tdsx_tlog_checkpoint(tdsx_tlog_t *t, tdsx_buf_t *out);

/* Appends entry `index` to out. TDSX_E_NOTFOUND when index >= size, TDSX_E_LOG_CORRUPT, TDSX_E_IO,
 * TDSX_E_TOOBIG/TDSX_E_NOMEM from out (left unchanged on any error). */
TDSX_MUST_CHECK int tdsx_tlog_entry(tdsx_tlog_t *t, uint64_t index, tdsx_buf_t *out);

/* The root of the first `size` entries, 0 <= size <= current size (TDSX_E_INVAL otherwise). */
TDSX_MUST_CHECK int tdsx_tlog_root_at(tdsx_tlog_t *t, uint64_t size, tdsx_hash_t *root);

/* The RFC 9162 §2.1.3.1 inclusion path of entry `index` in the tree of the first `size`
 * entries, index < size <= current size (TDSX_E_INVAL otherwise); leaf first. */
TDSX_MUST_CHECK int tdsx_tlog_inclusion_proof(tdsx_tlog_t *t, uint64_t index, uint64_t size,
                                              tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *len);

/* The RFC 9162 §2.1.4.1 consistency proof from the tree of m entries to the tree of n,
 * 0 <= m <= n <= current size (TDSX_E_INVAL otherwise). Empty when m == 0 or m == n (what
 * tdsx_merkle_consistency_verify expects then). */
TDSX_MUST_CHECK int tdsx_tlog_consistency_proof(tdsx_tlog_t *t, uint64_t m, uint64_t n,
                                                tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX],
                                                size_t *len);

/* Counters since open, for tests and metrics. */
typedef struct tdsx_tlog_stats_s {
    uint64_t appends;      /* batches made durable */
    uint64_t entries;      /* entries appended by those batches */
    uint64_t fsyncs;       /* fsync calls on files and directories by appends */
    uint64_t tile_reads;   /* tile files read from disk (cache misses) */
    uint64_t bundle_reads; /* entry bundle files read from disk */
    uint64_t cache_hits;   /* full tiles found in the cache */
} tdsx_tlog_stats_t;

void tdsx_tlog_stats(tdsx_tlog_t *t, tdsx_tlog_stats_t *out);

#endif
