/*
 * report.h — trust-status reports (可信状态报告, SPEC §12). Internal to gateway/.
 *
 * A report is a C2SP signed note by the node's `sign` key (key name = the node id, as for its
 * checkpoints). Its text is line-oriented `key value`, one field per line, in exactly this
 * order (every line present, nothing else; numbers are unsigned decimal without leading zeros,
 * hashes are lowercase hex except checkpoint roots, which are base64 as in C2SP checkpoints):
 *
 *     tdsx-report/v1
 *     node <USCC>/<node>
 *     role centre|brain|enterprise
 *     sequence <n>                       1, 2, ... (one more than the previous report)
 *     period <from> <to>                 unix seconds, from <= to
 *     range <first> <end>                the log indexes counted: first <= i < end
 *     checkpoint <size> <base64 root>    the checkpoint stated; size = end
 *     previous-checkpoint <size> <base64 root>   the previous report's; size = first
 *                                        (0 and the empty-tree hash for sequence 1)
 *     previous-report <hex>              SHA-256 of the previous report's whole note bytes
 *                                        (64 zeros for sequence 1, and only then)
 *     bundle <serial> <expires>          trust bundle in force (0 0: none)
 *     cert-auth-not-after <unix>
 *     cert-sign-not-after <unix>
 *     cert-status good|revoked|unknown   the node's own certificates against the CRLs it holds
 *     policy <hex>                       SHA-256 of the normalised policy in force
 *     software <version>                 1..63 printable ASCII bytes, no space
 *     transfers <dir> <grade> <role> <n> one line for every dir (in, out, relayed), grade
 *                                        (core, important, general-1 .. general-4) and role
 *                                        (centre, brain, enterprise), in that nested order
 *     denials <n>                        then n lines, sorted by (dir, rule), no duplicate:
 *     denied <in|out> <rule id> <count>  count >= 1
 *     agreements <active> <terminated> <expired>
 *     unacknowledged <n>                 NRD entries
 *     integrity-failures <n>             integrity-failed NRRs
 *     peers <n>                          then n lines, sorted by node id, no duplicate:
 *     peer <USCC>/<node> <role>          every counterpart named by a counted transfer
 *
 * Encode and parse are exact inverses: parse accepts only text encode could have produced.
 *
 * The tally (one piece of code for the node making a report and the auditor recomputing it)
 * reads the node's raw log entries (log.h format) in index order and counts:
 *
 *  - RECEIPT entries: the NRO's sender is this node -> "out", or "relayed" when the NRO names
 *    an upstream receipt (SPEC §9); the NRO's receiver is this node -> "in". By NRR status:
 *    accepted -> transfers[dir][grade of the NRO tags][role of the counterpart];
 *    policy-refused -> denials (dir, the NRR's policy_rule: the receiver's rule that refused);
 *    integrity-failed -> integrity_failures.
 *  - NRD entries: unacknowledged.
 *  - AGREEMENT entries: the last event of each agreement (by hash) within the range decides,
 *    at the end of the period (period.to): "accepted" -> expired when the terms' not_after <
 *    period.to, else active; "terminated" -> terminated; "proposed", "refused" -> not counted.
 *    Agreements with no event in the range are not counted (the counts stay recomputable
 *    from the range alone).
 *  - every other type (POLICY, KEY, WITNESS_REFUSAL, REPORT) counts nothing.
 *
 * Signed payloads are decoded WITHOUT verifying their signatures: the auditor verifies them
 * separately. Counterpart roles: the log entries name the counterpart node id but hold no
 * certificate of it, so the tally asks a role function. The node answers from its member
 * registry; the report carries the answers as its `peer` table; the auditor recomputes with
 * tdsx_report_role_from_peers (the report's own table) and checks that table against the
 * member registry of the trust bundle / certificates in its evidence.
 */
#ifndef TDSX_GATEWAY_REPORT_H
#define TDSX_GATEWAY_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "certs.h"
#include "core.h"
#include "crypto.h"
#include "daemon.h"
#include "gateway.h"

/* Caps and names, defined once. */
#define TDSX_REPORT_MAGIC "tdsx-report/v1"
#define TDSX_REPORT_TEXT_MAX 60000u /* a report note fits one log entry item (65535) */
#define TDSX_REPORT_DENIALS_MAX 128u
#define TDSX_REPORT_PEERS_MAX 128u
#define TDSX_REPORT_RULE_MAX 64u          /* rule id bytes, NUL included (policy.h's id cap) */
#define TDSX_REPORT_VERSION_MAX 64u       /* software version bytes, NUL included */
#define TDSX_REPORT_AGREEMENTS_MAX 65536u /* distinct agreements one tally tracks */
#define TDSX_REPORT_DIR "reports"         /* under data_dir: <seq>.note, <seq>.checkpoint, ... */

typedef enum { TDSX_REPORT_IN = 0, TDSX_REPORT_OUT = 1, TDSX_REPORT_RELAYED = 2 } tdsx_report_dir_t;
#define TDSX_REPORT_DIRS 3

typedef enum {
    TDSX_REPORT_CORE = 0,
    TDSX_REPORT_IMPORTANT = 1,
    TDSX_REPORT_GENERAL_1 = 2, /* general-N is TDSX_REPORT_GENERAL_1 + N - 1 */
    TDSX_REPORT_GENERAL_4 = 5
} tdsx_report_grade_t;
#define TDSX_REPORT_GRADES 6

/* Roles index the tables as tdsx_role_t - 1 (centre 0, brain 1, enterprise 2). */
#define TDSX_REPORT_ROLES 3

typedef enum {
    TDSX_REPORT_CERT_UNKNOWN = 0,
    TDSX_REPORT_CERT_GOOD = 1,
    TDSX_REPORT_CERT_REVOKED = 2
} tdsx_report_cert_status_t;

typedef struct tdsx_report_denial_s {
    uint8_t dir; /* TDSX_REPORT_IN or TDSX_REPORT_OUT */
    char rule[TDSX_REPORT_RULE_MAX];
    uint64_t count;
} tdsx_report_denial_t;

typedef struct tdsx_report_peer_s {
    char id[TDSX_ID_SIZE];
    tdsx_role_t role;
} tdsx_report_peer_t;

/* What a report counts over its range. Plain data (about 40 KiB): copy freely. */
typedef struct tdsx_report_counts_s {
    uint64_t transfers[TDSX_REPORT_DIRS][TDSX_REPORT_GRADES][TDSX_REPORT_ROLES];
    size_t n_denials; /* sorted by (dir, rule) */
    tdsx_report_denial_t denials[TDSX_REPORT_DENIALS_MAX];
    uint64_t agreements_active;
    uint64_t agreements_terminated;
    uint64_t agreements_expired;
    uint64_t unacknowledged;     /* NRD entries */
    uint64_t integrity_failures; /* integrity-failed NRRs */
    size_t n_peers;              /* sorted by id */
    tdsx_report_peer_t peers[TDSX_REPORT_PEERS_MAX];
} tdsx_report_counts_t;

/* One report (SPEC §12). Plain data: copy freely. */
typedef struct tdsx_report_s {
    char node[TDSX_ID_SIZE]; /* "<USCC>/<node>", also the note's key name */
    tdsx_role_t role;
    uint64_t sequence;   /* 1, 2, ... */
    int64_t period_from; /* unix seconds, period_from <= period_to */
    int64_t period_to;
    uint64_t first;          /* first log index counted; = prev_size */
    uint64_t size;           /* checkpoint size = end of the range (exclusive) */
    tdsx_hash_t root;        /* checkpoint root hash at `size` */
    uint64_t prev_size;      /* the previous report's checkpoint (0 for the first) */
    tdsx_hash_t prev_root;   /* its root (the empty-tree hash for the first) */
    tdsx_hash_t prev_report; /* SHA-256 of the previous report's note bytes (zero for seq 1) */
    uint64_t bundle_serial;  /* 0 while no bundle is in force */
    int64_t bundle_expires;  /* 0 while no bundle is in force */
    int64_t auth_not_after;  /* the node's auth certificate */
    int64_t sign_not_after;  /* the node's sign certificate */
    tdsx_report_cert_status_t cert_status;
    tdsx_hash_t policy; /* SHA-256 of the normalised policy */
    char software[TDSX_REPORT_VERSION_MAX];
    tdsx_report_counts_t counts;
} tdsx_report_t;

/* ---- pure functions -------------------------------------------------------------------------- */

/* "in", "out", "relayed" / "core", "important", "general-1".."general-4" / "good", "revoked",
 * "unknown"; NULL out of range. */
const char *tdsx_report_dir_name(unsigned dir);
const char *tdsx_report_grade_name(unsigned grade);
const char *tdsx_report_cert_status_name(unsigned status);

/* Appends the report's note text (the body above, no signature) to out. TDSX_E_INVAL when a
 * field cannot be written in the one accepted form (a name with a space or control byte, a
 * role out of range, unsorted or duplicate denials/peers, a zero denial count, first !=
 * prev_size, size < first, period_from > period_to, negative times, sequence 0, a non-zero
 * prev_report for sequence 1 or zero prev_report after it), TDSX_E_TOOBIG (over
 * TDSX_REPORT_TEXT_MAX or out's cap), TDSX_E_NOMEM. out is unchanged on error. */
TDSX_MUST_CHECK int tdsx_report_encode(const tdsx_report_t *r, tdsx_buf_t *out);

/* Parses untrusted note text (the text only: tdsx_report_open handles the signed note) into
 * *out. TDSX_E_REPORT for any defect: a missing, unknown, repeated or misplaced line, a bad
 * number (sign, leading zero, overflow), a bad hash or name, trailing bytes, or any text that
 * tdsx_report_encode would not write back byte for byte. *out is written only on success. */
TDSX_MUST_CHECK int tdsx_report_parse(tdsx_bytes_t text, tdsx_report_t *out);

/* Appends the signed note: encode, then tdsx_note_sign with `key` (a TDSX_NOTE_ED25519 key
 * whose name must equal r->node, else TDSX_E_KEY). Errors of both; out unchanged on error. */
TDSX_MUST_CHECK int tdsx_report_sign(const tdsx_report_t *r, const tdsx_note_signer_t *key,
                                     tdsx_buf_t *out);

/* Opens a signed report note (untrusted): tdsx_note_open with `key` (must verify: errors of
 * tdsx_note_open), the text must parse (TDSX_E_REPORT) and its node must equal key->name
 * (TDSX_E_REPORT). key may be NULL to parse without verifying (tools showing a file: the
 * caller must say so). *out is written only on success. */
TDSX_MUST_CHECK int tdsx_report_open(tdsx_bytes_t note, const tdsx_note_verifier_t *key,
                                     tdsx_report_t *out);

/* SHA-256 of the whole note bytes (text, blank line and signature lines) as stored: the value
 * the next report states as previous-report. */
TDSX_MUST_CHECK int tdsx_report_note_hash(tdsx_bytes_t note, tdsx_hash_t *out);

/* Checks that `next` extends `prev` (the previous report, NULL when next must be the first):
 * same node, sequence + 1, first = prev size and root, period not earlier, prev_report =
 * prev_note_hash. 0 or TDSX_E_REPORT_CHAIN. */
TDSX_MUST_CHECK int tdsx_report_chain_check(const tdsx_report_t *prev,
                                            const tdsx_hash_t *prev_note_hash,
                                            const tdsx_report_t *next);

/* 0 when a and b are equal; else 1 and `field` (may be NULL) receives the first text key that
 * differs, e.g. "transfers in general-2 brain", "denied out line-3", "agreements", "peers". */
int tdsx_report_counts_diff(const tdsx_report_counts_t *a, const tdsx_report_counts_t *b,
                            char *field, size_t field_size);

/* ---- the tally ------------------------------------------------------------------------------- */

/* Answers the role of a counterpart: 0 and *role, TDSX_E_NOTFOUND when unknown (the tally then
 * fails with TDSX_E_PEER_UNKNOWN: a report never guesses a role). */
typedef int (*tdsx_report_role_fn)(void *ud, const char *node_id, tdsx_role_t *role);

/* A role function over a report's peer table: ud is a const tdsx_report_counts_t *. */
int tdsx_report_role_from_peers(void *ud, const char *node_id, tdsx_role_t *role);

typedef struct tdsx_report_tally_s tdsx_report_tally_t;

/* A tally for the log of node `self_id` (copied) over a period ending at period_to. role_of
 * (not NULL) is called once per new counterpart, ud passed through. TDSX_E_INVAL, TDSX_E_NOMEM.
 */
TDSX_MUST_CHECK int tdsx_report_tally_new(const char *self_id, int64_t period_to,
                                          tdsx_report_role_fn role_of, void *ud,
                                          tdsx_report_tally_t **out);
/* Counts one raw log entry (the next index). Errors are sticky (every later add and finish
 * returns the first): TDSX_E_FORMAT (the entry does not parse, log.h), TDSX_E_REPORT_TALLY (a
 * payload that does not decode, a receipt or NRD that does not involve self, an unknown grade
 * or NRR status, an accepted agreement whose terms do not decode), TDSX_E_PEER_UNKNOWN (role
 * function), TDSX_E_TOOBIG (more than the caps of denials, peers or agreements), TDSX_E_NOMEM.
 */
TDSX_MUST_CHECK int tdsx_report_tally_add(tdsx_report_tally_t *t, tdsx_bytes_t entry);
/* Entries counted so far. */
uint64_t tdsx_report_tally_entries(const tdsx_report_tally_t *t);
/* Writes the counts of everything added (the tally may go on: finish again later). */
TDSX_MUST_CHECK int tdsx_report_tally_finish(tdsx_report_tally_t *t, tdsx_report_counts_t *out);
/* NULL is a no-op. */
void tdsx_report_tally_free(tdsx_report_tally_t *t);

/* ---- the daemon (loop thread; files under <data_dir>/reports) ------------------------------
 *
 * make: tallies the log from the previous report's checkpoint to the last PUBLISHED one, signs
 * the report, stores <seq>.note and <seq>.checkpoint (0600, never replaced), then logs a REPORT
 * entry (note, empty) and answers once it is durable. It refuses (TDSX_E_REPORT_CHAIN) when the
 * published log did not grow since the previous report or the period starts before the
 * previous one ended; TDSX_E_STATE when nothing is published yet; TDSX_E_BUSY during another
 * make or submit.
 * submit: sends ReportSubmit{report, the checkpoint it states, old_size = the witness's last
 * cosigned size, the consistency proof between the two} to the configured witness; the centre
 * opens the report with the node's sign key (its Hello certificate), checks the checkpoint
 * matches (TDSX_E_REPORT_MISMATCH), then, inside log.c's witness job (tdsx__log_witness): a
 * report N it kept before must be byte-identical (a resubmission) and one it kept as N-1 must
 * be extended by this one (tdsx_report_chain_check), else TDSX_E_REPORT_CHAIN; the witness
 * rules of the log decide on the checkpoint; it keeps the report under
 * <data_dir>/reports/<USCC>_<node>/<seq>.note and answers with its
 * cosignature/v1 line. The node verifies it, stores <seq>.cosigned (the checkpoint with the
 * line) and logs REPORT(note, cosigned checkpoint).
 * Automatic: every report_period (config) a report is made, and submitted when a witness is
 * configured.
 */
typedef struct tdsx_reporter_s tdsx_reporter_t;

/* Loads the latest stored report (BLOCKS; after tdsx__log_start): it must open with the node's
 * key (else that error: the node refuses to chain onto a report it cannot vouch for), starts
 * the timer. Sets n->report. TDSX_E_STATE without a log, TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__report_start(tdsx_node_t *n);
/* Closes the timer (shutdown). NULL-safe. */
void tdsx__report_close(tdsx_node_t *n);
/* After uv_run returned (and after the log's callbacks ran). NULL-safe. */
void tdsx__report_free(tdsx_node_t *n);
/* ReportSubmit (centre) or ReportAck (node) from the verified peer of c whose sign certificate
 * is peer_cert. 0 when handled (bad input is answered or logged), or a connection error. */
TDSX_MUST_CHECK int tdsx__report_frame(tdsx_node_t *n, tdsx_conn_t *c, const Tdsx__Frame *f,
                                       tdsx_bytes_t peer_cert);
/* report_make / report_submit local requests: 1 (answered, now or later), TDSX_E_STATE (not
 * started), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__report_local(tdsx_node_t *n, tdsx_ctl_client_t *cl,
                                       const Tdsx__LocalRequest *req);

#endif
