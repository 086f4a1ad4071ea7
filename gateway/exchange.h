/*
 * exchange.h — the exchange on top of connections (SPEC §5, §9, §10): Hello (sign
 * certificates), catalog, push and pull transfers with dual-signed receipts. Internal to
 * gateway/.
 *
 * A transfer owns one stream on a connection:
 *
 *   sender                                   receiver
 *   TransferStart{nro}            ------>    verify NRO, record, open part file
 *                                 <------    TransferAccept{offset, window} | TransferAbort
 *   TransferData{offset, chunk}*  ------>    write + hash; WindowUpdate as bytes land
 *   TransferEnd{length, sha256}   ------>    fsync, check length and hash, rename
 *                                 <------    TransferReceipt{nrr}  (accepted or integrity-failed)
 *   verify NRR, store receipt                store receipt
 *
 * A pull is TransferPull from the requester on a new stream; the owner answers on the same
 * stream as the sender above. Resuming uses the same transfer id and NRO bytes: the receiver
 * answers with the offset it holds durably.
 */
#ifndef TDSX_GATEWAY_EXCHANGE_H
#define TDSX_GATEWAY_EXCHANGE_H

#include "daemon.h"

/* Caps and timings, defined once. */
#define TDSX_XFER_CHUNK (256u * 1024u) /* TransferData chunk, = TDSX_CHUNK_MAX */
#define TDSX_XFER_PROGRESS_MS 250u

typedef struct tdsx_exchange_s tdsx_exchange_t;

/* Loads the sign key and certificate and makes the signer (what --check-config checks). */
TDSX_MUST_CHECK int tdsx__exchange_new(tdsx_node_t *n, char *what, size_t what_size);
/* Opens the store and starts the signer's flush and the receipt timer. */
TDSX_MUST_CHECK int tdsx__exchange_start(tdsx_node_t *n);
/* Closes the exchange's libuv handles (at node shutdown). */
void tdsx__exchange_close(tdsx_node_t *n);
/* After uv_run returned. NULL-safe. */
void tdsx__exchange_free(tdsx_node_t *n);

/* Connection events (conn.c). */
void tdsx__exchange_conn_open(tdsx_conn_t *c);
void tdsx__exchange_conn_closed(tdsx_conn_t *c, int err);
/* An exchange frame arrived; a negative return is a connection-level error. */
TDSX_MUST_CHECK int tdsx__exchange_frame(tdsx_conn_t *c, const Tdsx__Frame *f);
/* The connection's output drained below its low-water mark. */
void tdsx__exchange_writable(tdsx_conn_t *c);

/* Group commit (store.h). The store's writes of a loop turn share one transaction, committed
 * with one fsync before the loop waits again (a uv_prepare and the signer's uv_check) and
 * whenever a connection must send at once. Until then every frame and control answer stays
 * queued, since it may announce one of those writes: holding says so (conn.c and control.c
 * hold; commit releases them through tdsx__conn_release and tdsx__control_release). A commit
 * that fails stops the node at once, logged as store.commit_failed, exit status 3: the writes
 * are lost, nothing that announced them has left, and the next start recovers as after a
 * crash. */
int tdsx__exchange_holding(const tdsx_node_t *n);
void tdsx__exchange_commit(tdsx_node_t *n);

/* The policy was replaced: every running transfer is decided again and those it now refuses
 * are aborted at both ends. */
void tdsx__exchange_policy_changed(tdsx_node_t *n);

/* Queues a RECEIPT log entry for every stored receipt whose entry a crash kept from becoming
 * durable (tdsx_store_receipt_unlogged), oldest first, and marks each in the store once it is
 * durable. Called by tdsx__log_start, before the node accepts connections, so these entries
 * precede any new one. A receipt whose entry did become durable (only its mark was lost) is
 * found in the log from tdsx_store_receipt_log_next on (tdsx__log_find, BLOCKS) and marked, not
 * appended again: each receipt is logged once. At most TDSX_STORE_PAGE_MAX per start. A
 * failure (no exchange or log, the store's or tdsx__log_append's errors) is logged as
 * log.receipt_recovery_failed; entries queued before it stay queued, the rest wait for the
 * next start. */
void tdsx__exchange_relog(tdsx_node_t *n);

/* A local request (control.c). Returns 1 when it will be answered later through
 * tdsx__control_reply, 0 when *resp was filled now (arena-allocated parts), or an error. */
TDSX_MUST_CHECK int tdsx__exchange_local(tdsx_node_t *n, tdsx_ctl_client_t *cl,
                                         const Tdsx__LocalRequest *req, tdsx_arena_t *arena,
                                         Tdsx__LocalResponse *resp);

#endif
