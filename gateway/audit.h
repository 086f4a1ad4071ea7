/*
 * audit.h — evidence export and the offline auditor (SPEC §13). Internal to gateway/.
 *
 * Evidence directory (what `tdsx audit export` writes and `tdsx audit verify` reads; every
 * file 0600, every directory 0700):
 *
 *   MANIFEST                   "tdsx-evidence v1" header lines ("node <id>", "size <n>",
 *                              "from <i>", "to <j>", "exported_at <unix>"), then one line per
 *                              file: "<sha256 hex> <relative path>", sorted by path
 *   log/checkpoint             the head checkpoint the export was made at (size n)
 *   log/tile/<L>/<N>[.p/<W>]   C2SP tlog-tiles hash tiles of the tree of size n, every level
 *   log/tile/entries/<N>[...]  entry bundles of the tiles that hold entries from..to-1
 *   checkpoints/published      <data_dir>/log.published (the last checkpoint published)
 *   checkpoints/cosigned       <data_dir>/log.cosigned (with the witness's cosignature/v1)
 *   proofs/<m>-<n>             RFC 9162 §2.1.4 consistency proof between two of the
 *                              checkpoints: "tdsx-consistency v1 <m> <n>\n" then one hex hash
 *                              per line
 *   certs/sign.pem, auth.pem, chain.pem, ca.pem   the node's credentials (ca.pem is what the
 *                              node trusts: informative, never trusted by the auditor)
 *   certs/peers/<sha256>.der   sign certificates of the node's counterparts (from its store)
 *   certs/witness.der          the witness's (centre's) sign certificate, when configured
 *   crls/<i>.pem               the CRL files the node's configuration names
 *   bundles/bundle.current     the trust bundle in force (issue 9), when present
 *   reports/<name>             <data_dir>/reports/, as the node keeps them
 *
 * The node's tlog store is never opened: export reads the tile files (taking a hash prefix of
 * a wider tile when the daemon grew the log meanwhile), so it runs beside a live daemon.
 *
 * Verification trusts only the anchor. Each check reports through the callback; the names are
 * stable (README lists them): manifest, anchor, crl, revocation, cert-chain, checkpoint-signature,
 * witness, tiles, tree-root, checkpoint-root, consistency, entries, entry-format, key, receipt,
 * nrd, report-*, state.
 */
#ifndef TDSX_GATEWAY_AUDIT_H
#define TDSX_GATEWAY_AUDIT_H

#include "config.h"
#include "core.h"

#define TDSX_AUDIT_MANIFEST "MANIFEST"
#define TDSX_AUDIT_MAGIC "tdsx-evidence v1"
#define TDSX_AUDIT_STATE_MAGIC "tdsx-audit-state v1"
#define TDSX_AUDIT_FILE_MAX (64u << 20) /* any one evidence file */
#define TDSX_AUDIT_FILES_MAX 1000000u   /* files in one evidence directory */

typedef enum {
    TDSX_AUDIT_PASS = 0,
    TDSX_AUDIT_FAIL = 1,
    TDSX_AUDIT_INDETERMINATE = 2
} tdsx_audit_result_t;

/* "PASS", "FAIL", "INDETERMINATE". */
const char *tdsx_audit_result_name(tdsx_audit_result_t r);

/* One check's outcome. `where` is the index, file or field at fault ("" when the check is
 * about the whole bundle); all strings live only during the call. */
typedef void (*tdsx_audit_cb)(void *ud, tdsx_audit_result_t result, const char *check,
                              const char *where, const char *detail);

typedef struct tdsx_audit_opts_s {
    const char *anchor; /* PEM file of the root(s) trusted; required */
    const char *state;  /* NULL: no rollback state; else read (absent: first audit) and, when
                           no check failed, rewritten atomically (0600) */
    int64_t at;         /* time the node's own certificates are judged at; 0: the export time
                           the MANIFEST states, which fails 'manifest exported_at' when it is
                           more than 600 s before the witness's cosignature in the evidence */
} tdsx_audit_opts_t;

typedef struct tdsx_audit_summary_s {
    uint64_t pass, fail, indeterminate;
    uint64_t entries;  /* entries replayed */
    uint64_t receipts; /* receipt entries whose envelopes verified */
} tdsx_audit_summary_t;

/*
 * Verifies the evidence directory `dir`, reporting every check through cb (may be NULL) and
 * counting in *sum (may be NULL). Returns 0 when it ran (look at sum->fail), or, when it could
 * not run: TDSX_E_NOTFOUND (no directory, no MANIFEST, no anchor file), TDSX_E_CERT_PARSE (the
 * anchor holds no certificate), TDSX_E_FORMAT (the state file is not one), TDSX_E_IO,
 * TDSX_E_NOMEM (also when an allocation failed midway: the results are then incomplete),
 * TDSX_E_INVAL (NULL dir or o, no anchor). Never prompts, never writes except the
 * state file.
 */
TDSX_MUST_CHECK int tdsx_audit_verify(const char *dir, const tdsx_audit_opts_t *o, tdsx_audit_cb cb,
                                      void *ud, tdsx_audit_summary_t *sum);

/*
 * Writes the evidence of the node configured by cfg into `out` (created 0700; TDSX_E_EXISTS
 * when it exists and is not empty), for entries [from, to) of the log (to = UINT64_MAX: up to
 * the head). Reads files only (tiles, log.published, log.cosigned, credentials, CRLs, the
 * bundle, reports) and the node's SQLite store read-only for its counterparts' certificates.
 * Errors: TDSX_E_INVAL (from > to, or beyond the head), TDSX_E_LOG_CORRUPT (tiles missing or
 * of the wrong size after retries), TDSX_E_NOTFOUND (no checkpoint: the log never started),
 * file errors. On error `out` may hold part of the export (its MANIFEST is written last).
 */
TDSX_MUST_CHECK int tdsx_audit_export(const tdsx_config_t *cfg, const char *out, uint64_t from,
                                      uint64_t to);

#endif
