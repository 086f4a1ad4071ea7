/*
 * agree.h — agreements between two nodes (企业数据授权, 双向公平授权, SPEC §7). Internal to
 * gateway/.
 *
 * An agreement is valid only when both parties signed identical terms. The terms are an
 * AgreementTerms statement; the proposer signs it, the other party signs the very same payload
 * bytes (a second envelope of the same payload). The agreement id is terms.agreement_id, the
 * agreement hash is SHA-256 of the PROPOSER's envelope bytes (it goes into every NRO made
 * under the agreement). Either party may propose, accept the other's proposal, refuse it, or
 * terminate: a chain leader and an SME have exactly the same powers.
 *
 * On the wire each event opens a stream of its own and is answered on it:
 *
 *   party A                                       party B
 *   AgreementPropose{A's terms envelope}  ---->   verify: signed by the connected peer, A and B
 *                                                 are provider and consumer, window sane;
 *                                                 store PROPOSED
 *                                         <----   AgreementResult{record | error_code}
 *   (A stores its proposal before sending; an error answer marks it REFUSED)
 *
 *                                         <----   AgreementAccept{B's envelope, same payload}
 *   verify: signed by B, payload identical
 *   to A's proposal; store ACTIVE
 *   AgreementResult{record | error_code}  ---->   (B stores ACTIVE only on a positive answer)
 *
 *   AgreementRefuse{A's envelope, reason} and AgreementTerminate{AgreementTermination
 *   envelope} are answered the same way; the sender records them first, whatever the answer.
 *
 * A termination (ours or the peer's) re-decides every running transfer at once
 * (tdsx__exchange_policy_changed), so transfers under it abort at both ends with nothing
 * stored; expiry mid-transfer is caught by the exchange's tick through
 * tdsx_agree_view_t.not_after. Every event is logged as one JSON line, event agreement.*.
 *
 * Everything runs on the node's loop thread.
 */
#ifndef TDSX_GATEWAY_AGREE_H
#define TDSX_GATEWAY_AGREE_H

#include "crypto.h"
#include "daemon.h"
#include "policy.h"
#include "store.h"

/* Caps and timings, defined once. */
#define TDSX_AGREE_ANSWER_TIMEOUT_MS 10000u /* a peer that does not answer an event by then */
#define TDSX_AGREE_ACTIONS_MAX 6u           /* actions in one agreement */
#define TDSX_AGREE_PURPOSE_TEXT_MAX 1023u   /* bytes of purpose_text */
#define TDSX_AGREE_REASON_MAX 511u          /* bytes of a refusal or termination reason */

typedef struct tdsx_agree_s tdsx_agree_t;

/* Makes the node's agreement state. store, signer and verifier are the exchange's and must
 * outlive it; the verifier is expected to know the node's own key and every connected peer's
 * (the exchange adds them at Hello). TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx__agree_new(tdsx_node_t *n, tdsx_store_t *store, tdsx_signer_t *signer,
                                    tdsx_verifier_t *verifier, tdsx_agree_t **out);
/* Frees, with every local request still waiting (their clients went with the node). Call
 * after the signer was freed: its cancelled callbacks still reach us. NULL is a no-op. */
void tdsx__agree_free(tdsx_agree_t *a);

/* An Agreement* frame from the verified peer of c, whose sign key id is peer_key. Returns 0
 * when handled (a bad event is answered with an AgreementResult error and logged, not fatal;
 * AgreementQuery, which this node does not serve, is answered TDSX_E_UNSUPPORTED), or a
 * connection-level error (TDSX_E_NOMEM, a failed send, TDSX_E_PROTO_UNSUPPORTED for a body
 * that is not an agreement's). */
TDSX_MUST_CHECK int tdsx__agree_frame(tdsx_agree_t *a, tdsx_conn_t *c, const Tdsx__Frame *f,
                                      const tdsx_hash_t *peer_key);

/* A local request with an agree_* body, as tdsx__exchange_local: 1 when it will be answered
 * later through tdsx__control_reply (propose, accept, refuse, terminate), 0 when *resp was
 * filled now from `arena` (list), or an error (TDSX_E_INVAL bad arguments, TDSX_E_NOTFOUND
 * unknown agreement or unconnected peer, TDSX_E_AGAIN peer not ready, TDSX_E_STATE the
 * agreement is not in a state that allows it, TDSX_E_AGREEMENT_EXPIRED, store errors). */
TDSX_MUST_CHECK int tdsx__agree_local(tdsx_agree_t *a, tdsx_ctl_client_t *cl,
                                      const Tdsx__LocalRequest *req, tdsx_arena_t *arena,
                                      Tdsx__LocalResponse *resp);

/* Called about once a second: answers requests whose peer did not answer in time. */
void tdsx__agree_tick(tdsx_agree_t *a);

/* ---- what the exchange's decisions use ------------------------------------------------------- */

/* The agreement a transfer runs under, as the policy input needs it. */
typedef struct tdsx_agree_view_s {
    tdsx_agreement_state_t state;             /* for tdsx_policy_input_t.agreement */
    char purpose[TDSX_AGREE_PURPOSE_MAX + 1]; /* VALID: its purpose code, else "" */
    uint8_t hash[TDSX_SHA256_LEN];            /* the agreement found (state != NONE) */
    int named;                                /* the transfer itself names this agreement */
    int64_t not_after;                        /* VALID: last second of validity, else 0 */
} tdsx_agree_view_t;

/*
 * Finds the agreement covering a transfer of `dataset_id` (with tags category `category`) from
 * `provider` (the data sender) to `consumer` (the receiver) at tdsx_now():
 *   named != NULL  the agreement with that hash (what an NRO names, or what the sender chose
 *                  earlier): its state when it covers this transfer, NONE otherwise (unknown,
 *                  other parties, other subject, no `receive` action);
 *   named == NULL  with search = 1, the best of the stored ones: a VALID one when there is
 *                  one (dataset-specific before category selectors, newest first), else the
 *                  newest terminated or expired one; with search = 0, NONE.
 * Never fails: a store error is logged and reads as NONE (which refuses where an agreement is
 * needed). out->named is 1 exactly when named was given.
 */
void tdsx__agree_cover(tdsx_agree_t *a, const char *provider, const char *consumer,
                       const char *dataset_id, const char *category, const uint8_t *named,
                       int search, tdsx_agree_view_t *out);

/*
 * SPEC §9: may this node (`relayer`, the consumer of the upstream transfer) relay data it got
 * from `origin` (dataset_id, category) to `receiver`, whose registry role is `receiver_role`
 * ("centre", "brain", "enterprise"; NULL or "none" when unknown)? `upstream` is the agreement
 * hash the upstream NRO names (NULL when it named none). The agreement must be the one
 * covering the upstream transfer (origin as provider, relayer as consumer, subject, receive),
 * hold an action "relay-to:<receiver>" or "relay-to:<receiver_role>", and be VALID now.
 * Returns 0 when granted, with *out VALID (purpose, not_after, hash; named = 1); otherwise
 * TDSX_E_AGREEMENT (none named, unknown here, not covering, not yet valid, relay-to not
 * granted to this receiver), TDSX_E_AGREEMENT_TERMINATED or TDSX_E_AGREEMENT_EXPIRED, with
 * *out describing what was found and *why (may be NULL) a static reason. A store error is
 * logged and reads as TDSX_E_AGREEMENT.
 */
TDSX_MUST_CHECK int tdsx__agree_relay(tdsx_agree_t *a, const uint8_t *upstream, const char *origin,
                                      const char *relayer, const char *dataset_id,
                                      const char *category, const char *receiver,
                                      const char *receiver_role, tdsx_agree_view_t *out,
                                      const char **why);

/* A transfer that names an agreement stops when that agreement is terminated or expired,
 * whatever the policy says (SPEC §7). Returns 0 when v does not say so, else the refusal code
 * (TDSX_E_AGREEMENT_TERMINATED, TDSX_E_AGREEMENT_EXPIRED) with *d rewritten as a refusal by
 * rule "agreement:terminated" or "agreement:expired" (ids no policy label can take). */
TDSX_MUST_CHECK int tdsx__agree_enforce(const tdsx_agree_view_t *v, tdsx_policy_decision_t *d);

/* A receipt with status accepted was stored for a transfer under agreement `hash`: count it
 * against the transfer limit (logged; failures too, they do not undo the receipt). */
void tdsx__agree_used(tdsx_agree_t *a, const uint8_t hash[TDSX_SHA256_LEN]);

/* ---- pure checks (no I/O; exposed for tests) ------------------------------------------------- */

/* The state an agreement has at `now` for deciding transfers: VALID when ACTIVE, within
 * [not_before, not_after] and under its transfer limit; EXPIRED when ACTIVE and past not_after
 * or at its limit; TERMINATED; NONE otherwise (proposed, refused, not yet valid). */
tdsx_agreement_state_t tdsx__agree_state(const tdsx_agreement_rec_t *r, int64_t now);

/* 1 when r is between provider (as provider) and consumer, its subject covers dataset_id or
 * category (as tdsx_store_agreement_match), and its actions include receive. */
int tdsx__agree_covers(const tdsx_agreement_rec_t *r, const char *provider, const char *consumer,
                       const char *dataset_id, const char *category);

/* Checks terms proposed by `proposer` to `other` at `now`: 16-byte id and nonce, proposer named
 * as such, provider and consumer exactly the two parties, one subject (a dataset id of 1..255
 * bytes or a well-formed category path), a purpose code of 1..TDSX_AGREE_PURPOSE_MAX bytes of
 * [A-Za-z0-9._:-], purpose text within TDSX_AGREE_PURPOSE_TEXT_MAX bytes, no control characters
 * in either text, 1..TDSX_AGREE_ACTIONS_MAX well-formed actions (relay-to names one valid node
 * identity or one role), not_after >= now, 0 <= not_before <= not_after, transfer_limit <=
 * INT64_MAX. Returns 0, TDSX_E_PROTO_FIELD or TDSX_E_AGREEMENT_EXPIRED (the window is already
 * over, checked first); *why (may be NULL) names the problem. */
TDSX_MUST_CHECK int tdsx__agree_terms_check(const Tdsx__AgreementTerms *t, const char *proposer,
                                            const char *other, int64_t now, const char **why);

/* Checks that `acceptance` accepts `proposal`: both verify with v (the proposal by any key v
 * knows, the acceptance by the key whose id is `accepter`) as AgreementTerms statements, and
 * the acceptance's payload is byte for byte the proposal's. Uses `arena` and resets it.
 * Returns 0, TDSX_E_HASH_MISMATCH (the payloads differ), TDSX_E_SIG_INVALID (the acceptance is
 * signed by someone else), or the verification error (TDSX_E_SIG_TYPE, TDSX_E_ENVELOPE, ...). */
TDSX_MUST_CHECK int tdsx__agree_acceptance_check(tdsx_verifier_t *v, tdsx_arena_t *arena,
                                                 tdsx_bytes_t proposal, tdsx_bytes_t acceptance,
                                                 const tdsx_hash_t *accepter);

/* One action in text form: "receive", "derive", "relay-to:<centre|brain|enterprise>" or
 * "relay-to:<USCC>/<node>". Parse fills *out (party points into `party`, party_size >=
 * TDSX_ID_SIZE); TDSX_E_INVAL when malformed. Format writes the text (size >= TDSX_ID_SIZE +
 * 16 always suffices); TDSX_E_INVAL for an invalid action, TDSX_E_TOOBIG when it does not fit. */
TDSX_MUST_CHECK int tdsx__agree_action_parse(const char *text, Tdsx__Action *out, char *party,
                                             size_t party_size);
TDSX_MUST_CHECK int tdsx__agree_action_format(const Tdsx__Action *a, char *out, size_t size);

#endif
