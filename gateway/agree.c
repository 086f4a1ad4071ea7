/*
 * agree.c — agreements (企业数据授权, 双向公平授权, SPEC §7): the events on the wire, the local
 * requests behind `tdsx agree`, and the lookup every transfer decision makes. The protocol
 * and the contract are in agree.h.
 *
 * Nothing here knows which party is the chain leader: the handlers look only at who signed
 * and whether that party is one of the two in the terms, so both sides hold the same powers.
 */
#include "agree.h"

#include <string.h>

#include <sodium.h>

#include "exchange.h"
#include "internal.h"
#include "log.h"

#define AGREE_SCRATCH_BUDGET (1u << 20) /* a local answer: one page of summaries */
#define AGREE_LIST_PAGE 50u
#define AGREE_LIST_PAGE_MAX 200u
#define HASH_HEX (2 * TDSX_SHA256_LEN + 1)
#define ID_HEX (2 * TDSX_AGREE_ID_LEN + 1)
#define NO_SUCH "no agreement with this id on this node (tdsx agree list)"

typedef enum { OP_PROPOSE = 0, OP_ACCEPT, OP_REFUSE, OP_TERMINATE } op_kind_t;

/* A local request waiting for the signer or for the peer's answer. */
typedef struct agree_op_s agree_op_t;
struct agree_op_s {
    tdsx_agree_t *a;
    agree_op_t *prev, *next; /* in a->ops once the event is on the wire */
    int linked;
    op_kind_t kind;
    uint64_t client; /* control client serial (tdsx__control_find) */
    uint64_t req_id;
    char peer[TDSX_ID_SIZE];
    uint32_t stream;
    uint64_t deadline; /* uv_now() by which the peer must have answered */
    uint8_t hash[TDSX_SHA256_LEN];
    uint8_t *env; /* the envelope we signed (proposal, acceptance or termination) */
    size_t env_len;
    char reason[TDSX_AGREE_REASON_MAX + 1];
    tdsx_agreement_rec_t rec; /* propose: the record to store once signed (no bytes owned) */
};

struct tdsx_agree_s {
    tdsx_node_t *node;
    tdsx_store_t *store;
    tdsx_signer_t *signer;
    tdsx_verifier_t *verifier;
    tdsx_arena_t *arena; /* scratch for verifying statements */
    agree_op_t *ops;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static const char *self_id(const tdsx_agree_t *a)
{
    return a->node->self_id;
}

static const char *other_party(const tdsx_agreement_rec_t *r, const char *self)
{
    return strcmp(r->provider, self) == 0 ? r->consumer : r->provider;
}

/* 1 when `peer` and we are the agreement's two parties. */
static int parties_are(const tdsx_agreement_rec_t *r, const char *self, const char *peer)
{
    return (strcmp(r->provider, self) == 0 && strcmp(r->consumer, peer) == 0) ||
           (strcmp(r->provider, peer) == 0 && strcmp(r->consumer, self) == 0);
}

/* Copies src into a fixed field; TDSX_E_TOOBIG rather than truncating. */
static int copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size);
    if (n >= size)
        return TDSX_E_TOOBIG;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Like copy_field, but cuts a human-readable text at a character boundary to fit, and turns
 * control characters into spaces: a peer's reason ends up on an operator's terminal. */
static void clip_text(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--; /* never split a UTF-8 sequence */
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
    dst[n] = '\0';
}

/* No control characters (terminal escapes, line breaks) in text that gets listed. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* "<USCC>/<node>" as the registry and certificates write it, without commas (the actions'
 * text form separates items with them). */
static int id_ok(const char *s)
{
    size_t n = strnlen(s, TDSX_ID_SIZE);
    char uscc[TDSX_USCC_LEN + 1];
    if (n >= TDSX_ID_SIZE || n < TDSX_USCC_LEN + 2 || s[TDSX_USCC_LEN] != '/' || memchr(s, ',', n))
        return 0;
    memcpy(uscc, s, TDSX_USCC_LEN);
    uscc[TDSX_USCC_LEN] = '\0';
    if (tdsx_uscc_check(uscc, NULL) != 0)
        return 0;
    return tdsx__node_name_ok(tdsx_bytes(s + TDSX_USCC_LEN + 1, n - TDSX_USCC_LEN - 1));
}

static int purpose_code_ok(const char *s)
{
    size_t n = strnlen(s, TDSX_AGREE_PURPOSE_MAX + 1);
    if (n == 0 || n > TDSX_AGREE_PURPOSE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- actions --------------------------------------------------------------------------------- */

static int action_ok(const Tdsx__Action *x)
{
    int party = x->relay_to_party && x->relay_to_party[0];
    int role = x->relay_to_role != TDSX__ROLE__ROLE_UNSPECIFIED;
    switch (x->kind) {
    case TDSX__ACTION_KIND__ACTION_KIND_RECEIVE:
    case TDSX__ACTION_KIND__ACTION_KIND_DERIVE: return !party && !role;
    case TDSX__ACTION_KIND__ACTION_KIND_RELAY_TO:
        if (party)
            return !role && id_ok(x->relay_to_party);
        return x->relay_to_role >= TDSX__ROLE__ROLE_CENTRE &&
               x->relay_to_role <= TDSX__ROLE__ROLE_ENTERPRISE;
    default: return 0;
    }
}

int tdsx__agree_action_format(const Tdsx__Action *x, char *out, size_t size)
{
    if (!x || !out || !action_ok(x))
        return TDSX_E_INVAL;
    int n;
    switch (x->kind) {
    case TDSX__ACTION_KIND__ACTION_KIND_RECEIVE: n = snprintf(out, size, "receive"); break;
    case TDSX__ACTION_KIND__ACTION_KIND_DERIVE: n = snprintf(out, size, "derive"); break;
    default:
        n = x->relay_to_party && x->relay_to_party[0]
                ? snprintf(out, size, "relay-to:%s", x->relay_to_party)
                : snprintf(out, size, "relay-to:%s", tdsx_role_name((tdsx_role_t)x->relay_to_role));
        break;
    }
    return n < 0 || (size_t)n >= size ? TDSX_E_TOOBIG : 0;
}

int tdsx__agree_action_parse(const char *text, Tdsx__Action *out, char *party, size_t party_size)
{
    static const char relay[] = "relay-to:";
    if (!text || !out || !party || party_size < TDSX_ID_SIZE)
        return TDSX_E_INVAL;
    tdsx__action__init(out);
    if (strcmp(text, "receive") == 0) {
        out->kind = TDSX__ACTION_KIND__ACTION_KIND_RECEIVE;
        return 0;
    }
    if (strcmp(text, "derive") == 0) {
        out->kind = TDSX__ACTION_KIND__ACTION_KIND_DERIVE;
        return 0;
    }
    if (strncmp(text, relay, sizeof relay - 1) != 0)
        return TDSX_E_INVAL;
    const char *to = text + sizeof relay - 1;
    out->kind = TDSX__ACTION_KIND__ACTION_KIND_RELAY_TO;
    tdsx_role_t role;
    if (tdsx_role_parse(to, &role) == 0) {
        out->relay_to_role = (Tdsx__Role)role;
        return 0;
    }
    if (!id_ok(to) || copy_field(party, party_size, to) != 0)
        return TDSX_E_INVAL;
    out->relay_to_party = party;
    return 0;
}

/* The actions as "a,b,c". */
static int actions_text(const Tdsx__AgreementTerms *t, char *out, size_t size)
{
    tdsx_buf_t b;
    char one[TDSX_ID_SIZE + 16];
    int rc = 0;
    tdsx_buf_init(&b, size - 1);
    for (size_t i = 0; rc == 0 && i < t->n_actions; i++) {
        rc = tdsx__agree_action_format(t->actions[i], one, sizeof one);
        if (rc == 0 && i > 0)
            rc = tdsx_buf_append_str(&b, ",");
        if (rc == 0)
            rc = tdsx_buf_append_str(&b, one);
    }
    if (rc == 0) {
        if (b.len)
            memcpy(out, b.p, b.len);
        out[b.len] = '\0';
    }
    tdsx_buf_free(&b);
    return rc;
}

/* 1 when the comma-separated list holds `word` as one of its items. */
static int list_has(const char *list, const char *word)
{
    size_t w = strlen(word);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == w && memcmp(p, word, w) == 0)
            return 1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* ---- pure checks ----------------------------------------------------------------------------- */

tdsx_agreement_state_t tdsx__agree_state(const tdsx_agreement_rec_t *r, int64_t now)
{
    if (!r)
        return TDSX_AGREEMENT_NONE;
    switch (r->state) {
    case TDSX_AGREE_TERMINATED: return TDSX_AGREEMENT_TERMINATED;
    case TDSX_AGREE_ACTIVE:
        if (now > r->not_after || (r->transfer_limit && r->transfers_used >= r->transfer_limit))
            return TDSX_AGREEMENT_EXPIRED;
        return now < r->not_before ? TDSX_AGREEMENT_NONE : TDSX_AGREEMENT_VALID;
    default: return TDSX_AGREEMENT_NONE;
    }
}

int tdsx__agree_covers(const tdsx_agreement_rec_t *r, const char *provider, const char *consumer,
                       const char *dataset_id, const char *category)
{
    if (!r || !provider || !consumer || !dataset_id || !category)
        return 0;
    if (strcmp(r->provider, provider) != 0 || strcmp(r->consumer, consumer) != 0)
        return 0;
    if (!list_has(r->actions, "receive"))
        return 0;
    if (r->dataset_id[0])
        return strcmp(r->dataset_id, dataset_id) == 0;
    size_t n = strlen(r->category);
    return n > 0 && strncmp(category, r->category, n) == 0 &&
           (category[n] == '\0' || category[n] == '.');
}

int tdsx__agree_terms_check(const Tdsx__AgreementTerms *t, const char *proposer, const char *other,
                            int64_t now, const char **why)
{
    const char *w = NULL;
    int rc = TDSX_E_PROTO_FIELD;
    if (!t || !proposer || !other) {
        w = "no terms";
        rc = TDSX_E_INVAL;
    } else if (t->agreement_id.len != TDSX_AGREE_ID_LEN || t->nonce.len != 16) {
        w = "agreement id and nonce must be 16 bytes";
    } else if (strcmp(t->proposer, proposer) != 0) {
        w = "the terms do not name their signer as the proposer";
    } else if (strcmp(proposer, other) == 0 || strcmp(t->provider, t->consumer) == 0 ||
               !((strcmp(t->provider, proposer) == 0 && strcmp(t->consumer, other) == 0) ||
                 (strcmp(t->provider, other) == 0 && strcmp(t->consumer, proposer) == 0))) {
        w = "provider and consumer must be the two parties";
    } else if (t->subject_case == TDSX__AGREEMENT_TERMS__SUBJECT_DATASET_ID
                   ? (!t->dataset_id[0] || strlen(t->dataset_id) > TDSX_STORE_NAME_MAX ||
                      !printable(t->dataset_id))
               : t->subject_case == TDSX__AGREEMENT_TERMS__SUBJECT_CATEGORY_SELECTOR
                   ? tdsx_category_check(t->category_selector) != 0
                   : 1) {
        w = "the subject must be one dataset id or a valid category path";
    } else if (!purpose_code_ok(t->purpose_code)) {
        w = "the purpose code must be 1-63 characters of A-Z a-z 0-9 . _ : -";
    } else if (strlen(t->purpose_text) > TDSX_AGREE_PURPOSE_TEXT_MAX ||
               !printable(t->purpose_text)) {
        w = "the purpose text is too long or holds control characters";
    } else if (t->n_actions == 0 || t->n_actions > TDSX_AGREE_ACTIONS_MAX) {
        w = "an agreement allows 1 to 6 actions";
    } else if (t->not_after < now) {
        w = "the validity window is already over";
        rc = TDSX_E_AGREEMENT_EXPIRED;
    } else if (t->not_before < 0 || t->not_before > t->not_after) {
        w = "not-before must not be after not-after";
    } else if (t->transfer_limit > (uint64_t)INT64_MAX) {
        w = "the transfer limit is out of range";
    } else {
        rc = 0;
        for (size_t i = 0; i < t->n_actions; i++) {
            if (!t->actions[i] || !action_ok(t->actions[i])) {
                w = "an action is malformed (relay-to names one node or one role)";
                rc = TDSX_E_PROTO_FIELD;
                break;
            }
        }
    }
    if (why)
        *why = w;
    return rc;
}

int tdsx__agree_acceptance_check(tdsx_verifier_t *v, tdsx_arena_t *arena, tdsx_bytes_t proposal,
                                 tdsx_bytes_t acceptance, const tdsx_hash_t *accepter)
{
    if (!v || !arena || !accepter)
        return TDSX_E_INVAL;
    tdsx_verified_t p, q;
    int rc = tdsx_envelope_verify(v, tdsx_statement_type(TDSX_STATEMENT_AGREEMENT_TERMS), proposal,
                                  arena, &p);
    if (rc == 0)
        rc = tdsx_envelope_verify(v, tdsx_statement_type(TDSX_STATEMENT_AGREEMENT_TERMS),
                                  acceptance, arena, &q);
    if (rc == 0 && memcmp(q.key_id.b, accepter->b, TDSX_HASH_LEN) != 0)
        rc = TDSX_E_SIG_INVALID;
    /* Identical terms means identical bytes: the accepter signed what it was shown, not an
     * equivalent re-encoding (SPEC §5: signed objects are never re-serialised). */
    if (rc == 0 && (p.payload.n != q.payload.n || !tdsx_bytes_equal(p.payload, q.payload)))
        rc = TDSX_E_HASH_MISMATCH;
    tdsx_arena_reset(arena);
    return rc;
}

/* Fills a record from verified terms; the proposal view borrows env. */
static int record_from_terms(const Tdsx__AgreementTerms *t, tdsx_bytes_t env,
                             tdsx_agreement_rec_t *r)
{
    memset(r, 0, sizeof *r);
    memcpy(r->id, t->agreement_id.data, TDSX_AGREE_ID_LEN);
    int rc = copy_field(r->provider, sizeof r->provider, t->provider);
    if (rc == 0)
        rc = copy_field(r->consumer, sizeof r->consumer, t->consumer);
    if (rc == 0)
        rc = copy_field(r->proposer, sizeof r->proposer, t->proposer);
    if (rc == 0 && t->subject_case == TDSX__AGREEMENT_TERMS__SUBJECT_DATASET_ID)
        rc = copy_field(r->dataset_id, sizeof r->dataset_id, t->dataset_id);
    else if (rc == 0)
        rc = copy_field(r->category, sizeof r->category, t->category_selector);
    if (rc == 0)
        rc = copy_field(r->purpose_code, sizeof r->purpose_code, t->purpose_code);
    if (rc == 0)
        rc = copy_field(r->purpose_text, sizeof r->purpose_text, t->purpose_text);
    if (rc == 0)
        rc = actions_text(t, r->actions, sizeof r->actions);
    r->not_before = t->not_before;
    r->not_after = t->not_after;
    r->transfer_limit = t->transfer_limit;
    r->state = TDSX_AGREE_PROPOSED;
    r->proposal = env;
    if (rc == 0 && env.n) {
        tdsx_hash_t h;
        rc = tdsx_envelope_hash(env, &h);
        if (rc == 0)
            memcpy(r->hash, h.b, TDSX_SHA256_LEN);
    }
    return rc;
}

/* ---- logging --------------------------------------------------------------------------------- */

/* Every agreement event is also an entry of the node's transparency log (log.h, SPEC §11),
 * with the signed envelopes as they are stored. */
static void log_entry(const tdsx_agree_t *a, const char *event, const tdsx_agreement_rec_t *r,
                      const char *by)
{
    tdsx_agreement_rec_t full;
    memset(&full, 0, sizeof full);
    /* A record being created may not carry its envelope here: the store has it. */
    if (r->proposal.n == 0 && tdsx_store_agreement_get(a->store, r->hash, &full) == 0)
        r = &full;
    const char *what = strncmp(event, "agreement.", 10) == 0 ? event + 10 : event;
    tdsx_log_entry_t e = {TDSX_LOG_ENTRY_AGREEMENT, 7, {{0}}};
    e.item[0] = tdsx_bytes(what, strlen(what));
    e.item[1] = tdsx_bytes(by, strlen(by));
    e.item[2] = tdsx_bytes(r->hash, TDSX_SHA256_LEN);
    e.item[3] = r->proposal;
    e.item[4] = r->acceptance;
    e.item[5] = r->termination;
    e.item[6] = tdsx_bytes(r->reason, strlen(r->reason));
    tdsx__log_event(a->node, &e);
    tdsx_agreement_clear(&full);
}

static void log_event(const tdsx_agree_t *a, tdsx_log_level_t lvl, const char *event,
                      const tdsx_agreement_rec_t *r, const char *by, int err)
{
    char id[ID_HEX], hash[HASH_HEX];
    tdsx_hex_encode(id, r->id, TDSX_AGREE_ID_LEN);
    tdsx_hex_encode(hash, r->hash, TDSX_SHA256_LEN);
    tdsx_log(lvl, event, TDSX_KV_S("agreement", id), TDSX_KV_S("hash", hash),
             TDSX_KV_S("peer", other_party(r, self_id(a))), TDSX_KV_S("by", by),
             TDSX_KV_S("provider", r->provider), TDSX_KV_S("consumer", r->consumer),
             TDSX_KV_S("dataset", r->dataset_id), TDSX_KV_S("category", r->category),
             TDSX_KV_S("purpose", r->purpose_code), TDSX_KV_S("actions", r->actions),
             TDSX_KV_I("not_before", r->not_before), TDSX_KV_I("not_after", r->not_after),
             TDSX_KV_I("limit", r->transfer_limit), TDSX_KV_S("reason", r->reason),
             TDSX_KV_E("err", err));
    log_entry(a, event, r, by);
}

/* A peer's event we refused: logged with what the peer sent it as. */
static void log_rejected(const char *peer, const char *what, int err, const char *why)
{
    tdsx_log(TDSX_LOG_WARN, "agreement.rejected", TDSX_KV_S("peer", peer), TDSX_KV_S("event", what),
             TDSX_KV_E("err", err), TDSX_KV_S("reason", why ? why : tdsx_strerror(err)));
}

/* ---- answers on the wire --------------------------------------------------------------------- */

static Tdsx__AgreementState wire_state(const tdsx_agreement_rec_t *r, int64_t now)
{
    switch (r->state) {
    case TDSX_AGREE_PROPOSED: return TDSX__AGREEMENT_STATE__AGREEMENT_STATE_PROPOSED;
    case TDSX_AGREE_ACTIVE:
        return tdsx__agree_state(r, now) == TDSX_AGREEMENT_EXPIRED
                   ? TDSX__AGREEMENT_STATE__AGREEMENT_STATE_EXPIRED
                   : TDSX__AGREEMENT_STATE__AGREEMENT_STATE_ACTIVE;
    case TDSX_AGREE_REFUSED: return TDSX__AGREEMENT_STATE__AGREEMENT_STATE_REFUSED;
    case TDSX_AGREE_TERMINATED: return TDSX__AGREEMENT_STATE__AGREEMENT_STATE_TERMINATED;
    default: return TDSX__AGREEMENT_STATE__AGREEMENT_STATE_UNSPECIFIED;
    }
}

/* Answers an event on its stream: the record as we now hold it, or the refusal. */
static int answer(tdsx_conn_t *c, uint32_t stream, int err, const char *why,
                  const tdsx_agreement_rec_t *r)
{
    Tdsx__AgreementResult res = TDSX__AGREEMENT_RESULT__INIT;
    Tdsx__AgreementRecord rec = TDSX__AGREEMENT_RECORD__INIT;
    Tdsx__AgreementRecord *list[1] = {&rec};
    Tdsx__Frame f = TDSX__FRAME__INIT;
    if (err) {
        res.error_code = tdsx_err_wire(err);
        res.error_message = (char *)(why ? why : tdsx_strerror(err));
    } else if (r) {
        rec.proposal.data = (uint8_t *)r->proposal.p;
        rec.proposal.len = r->proposal.n;
        rec.acceptance.data = (uint8_t *)r->acceptance.p;
        rec.acceptance.len = r->acceptance.n;
        rec.termination.data = (uint8_t *)r->termination.p;
        rec.termination.len = r->termination.n;
        rec.state = wire_state(r, tdsx_now());
        res.agreements = list;
        res.n_agreements = 1;
    }
    f.stream_id = stream;
    f.body_case = TDSX__FRAME__BODY_AGREEMENT_RESULT;
    f.agreement_result = &res;
    return tdsx__conn_send(c, &f);
}

/* ---- local answers --------------------------------------------------------------------------- */

static const char *state_text(const tdsx_agreement_rec_t *r, const char *self, int64_t now)
{
    switch (r->state) {
    case TDSX_AGREE_PROPOSED:
        return strcmp(r->proposer, self) == 0 ? "proposed-by-us" : "proposed-to-us";
    case TDSX_AGREE_ACTIVE:
        switch (tdsx__agree_state(r, now)) {
        case TDSX_AGREEMENT_VALID: return "active";
        case TDSX_AGREEMENT_EXPIRED: return "expired";
        default: return "not-yet-valid";
        }
    case TDSX_AGREE_REFUSED: return "refused";
    case TDSX_AGREE_TERMINATED: return "terminated";
    default: return "unknown";
    }
}

static char *arena_str(tdsx_arena_t *arena, const char *s)
{
    size_t n = strlen(s);
    char *p = tdsx_arena_alloc(arena, n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

static uint8_t *arena_dup(tdsx_arena_t *arena, const uint8_t *p, size_t n)
{
    uint8_t *q = tdsx_arena_alloc(arena, n);
    if (q)
        memcpy(q, p, n);
    return q;
}

/* A summary of r with every part copied into the arena (r may be a borrowed view). */
static int summary_new(tdsx_arena_t *arena, const tdsx_agreement_rec_t *r, const char *self,
                       Tdsx__AgreementSummary **out)
{
    Tdsx__AgreementSummary *s = tdsx_arena_alloc(arena, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    tdsx__agreement_summary__init(s);
    size_t n_actions = r->actions[0] ? 1 : 0;
    for (const char *p = r->actions; *p; p++)
        n_actions += *p == ',';
    char **actions = tdsx_arena_alloc(arena, (n_actions ? n_actions : 1) * sizeof *actions);
    s->agreement_id.data = arena_dup(arena, r->id, TDSX_AGREE_ID_LEN);
    s->agreement_id.len = TDSX_AGREE_ID_LEN;
    s->agreement_hash.data = arena_dup(arena, r->hash, TDSX_SHA256_LEN);
    s->agreement_hash.len = TDSX_SHA256_LEN;
    s->counterpart = arena_str(arena, other_party(r, self));
    s->our_role = strcmp(r->provider, self) == 0 ? "provider" : "consumer";
    s->proposer = arena_str(arena, r->proposer);
    s->dataset_id = arena_str(arena, r->dataset_id);
    s->category = arena_str(arena, r->category);
    s->purpose_code = arena_str(arena, r->purpose_code);
    s->purpose_text = arena_str(arena, r->purpose_text);
    s->not_before = r->not_before;
    s->not_after = r->not_after;
    s->state = (char *)state_text(r, self, tdsx_now());
    s->transfers_used = r->transfers_used;
    s->transfer_limit = r->transfer_limit;
    s->reason = arena_str(arena, r->reason);
    if (!actions || !s->agreement_id.data || !s->agreement_hash.data || !s->counterpart ||
        !s->proposer || !s->dataset_id || !s->category || !s->purpose_code || !s->purpose_text ||
        !s->reason)
        return TDSX_E_NOMEM;
    size_t k = 0;
    for (const char *p = r->actions; *p && k < n_actions;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *one = tdsx_arena_alloc(arena, n + 1);
        if (!one)
            return TDSX_E_NOMEM;
        memcpy(one, p, n);
        one[n] = '\0';
        actions[k++] = one;
        p = end ? end + 1 : p + n;
    }
    s->actions = actions;
    s->n_actions = k;
    *out = s;
    return 0;
}

/* Fills resp with one agreement and a note (both copied into the arena). */
static int respond_one(tdsx_arena_t *arena, const tdsx_agreement_rec_t *r, const char *self,
                       const char *note, Tdsx__LocalResponse *resp)
{
    Tdsx__AgreeResponse *ar = tdsx_arena_alloc(arena, sizeof *ar);
    Tdsx__AgreementSummary **list = tdsx_arena_alloc(arena, sizeof *list);
    if (!ar || !list)
        return TDSX_E_NOMEM;
    tdsx__agree_response__init(ar);
    int rc = summary_new(arena, r, self, &list[0]);
    if (rc)
        return rc;
    ar->agreements = list;
    ar->n_agreements = 1;
    if (note && !(ar->note = arena_str(arena, note)))
        return TDSX_E_NOMEM;
    resp->body_case = TDSX__LOCAL_RESPONSE__BODY_AGREE;
    resp->agree = ar;
    return 0;
}

static void reply_error(tdsx_agree_t *a, uint64_t client, uint64_t req_id, int err, const char *msg)
{
    tdsx_ctl_client_t *cl = tdsx__control_find(a->node, client);
    if (!cl)
        return;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LocalError le = TDSX__LOCAL_ERROR__INIT;
    le.code = tdsx_err_wire(err);
    le.message = (char *)(msg ? msg : tdsx_strerror(err));
    resp.id = req_id;
    resp.body_case = TDSX__LOCAL_RESPONSE__BODY_ERROR;
    resp.error = &le;
    tdsx__control_reply(cl, &resp);
}

/* Answers the client with the agreement as stored now (re-read, so it shows every change). */
static void reply_record(tdsx_agree_t *a, uint64_t client, uint64_t req_id,
                         const uint8_t hash[TDSX_SHA256_LEN], const char *note)
{
    tdsx_ctl_client_t *cl = tdsx__control_find(a->node, client);
    if (!cl)
        return;
    tdsx_agreement_rec_t r;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    int rc = tdsx_store_agreement_get(a->store, hash, &r);
    if (rc == 0)
        rc = tdsx_arena_new(AGREE_SCRATCH_BUDGET, &arena);
    if (rc == 0)
        rc = respond_one(arena, &r, self_id(a), note, &resp);
    if (rc == 0) {
        resp.id = req_id;
        tdsx__control_reply(cl, &resp);
    } else {
        reply_error(a, client, req_id, rc, NULL);
    }
    tdsx_arena_free(arena);
    tdsx_agreement_clear(&r);
}

/* ---- pending operations ---------------------------------------------------------------------- */

static void op_link(agree_op_t *op)
{
    tdsx_agree_t *a = op->a;
    op->prev = NULL;
    op->next = a->ops;
    if (a->ops)
        a->ops->prev = op;
    a->ops = op;
    op->linked = 1;
}

static void op_unlink(agree_op_t *op)
{
    if (!op->linked)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else
        op->a->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->linked = 0;
}

static void op_free(agree_op_t *op)
{
    if (!op)
        return;
    op_unlink(op);
    tdsx_free(op->env);
    tdsx_free(op);
}

static agree_op_t *op_new(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id, op_kind_t kind,
                          const char *peer)
{
    size_t n = strlen(peer);
    if (n >= sizeof((agree_op_t *)0)->peer)
        return NULL; /* no member id is that long */
    agree_op_t *op = tdsx_calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->a = a;
    op->kind = kind;
    op->client = tdsx__control_serial(cl);
    op->req_id = req_id;
    memcpy(op->peer, peer, n + 1);
    return op;
}

static agree_op_t *op_find(tdsx_agree_t *a, const char *peer, uint32_t stream)
{
    for (agree_op_t *op = a->ops; op; op = op->next)
        if (op->stream == stream && strcmp(op->peer, peer) == 0)
            return op;
    return NULL;
}

/* Puts our event on the wire on a new stream and waits for the answer. TDSX_E_NOTFOUND when
 * the peer is not connected. */
static int op_send(agree_op_t *op, Tdsx__Frame *f)
{
    tdsx_conn_t *c = tdsx__node_find_conn(op->a->node, op->peer);
    if (!c)
        return TDSX_E_NOTFOUND;
    op->stream = tdsx__conn_new_stream(c);
    f->stream_id = op->stream;
    int rc = tdsx__conn_send(c, f);
    if (rc)
        return rc;
    op->deadline = uv_now(op->a->node->loop) + TDSX_AGREE_ANSWER_TIMEOUT_MS;
    op_link(op);
    return 0;
}

static int send_envelope(agree_op_t *op)
{
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__AgreementPropose p = TDSX__AGREEMENT_PROPOSE__INIT;
    Tdsx__AgreementAccept ac = TDSX__AGREEMENT_ACCEPT__INIT;
    Tdsx__AgreementTerminate t = TDSX__AGREEMENT_TERMINATE__INIT;
    ProtobufCBinaryData env = {op->env_len, op->env};
    switch (op->kind) {
    case OP_PROPOSE:
        p.envelope = env;
        f.body_case = TDSX__FRAME__BODY_AGREEMENT_PROPOSE;
        f.agreement_propose = &p;
        break;
    case OP_ACCEPT:
        ac.envelope = env;
        f.body_case = TDSX__FRAME__BODY_AGREEMENT_ACCEPT;
        f.agreement_accept = &ac;
        break;
    case OP_TERMINATE:
        t.envelope = env;
        f.body_case = TDSX__FRAME__BODY_AGREEMENT_TERMINATE;
        f.agreement_terminate = &t;
        break;
    default: return TDSX_E_INTERNAL;
    }
    return op_send(op, &f);
}

/* Our termination is in force here the moment it is stored: running transfers under it stop
 * now, whether or not the peer can be told. */
static int terminate_here(tdsx_agree_t *a, const uint8_t hash[TDSX_SHA256_LEN], tdsx_bytes_t env,
                          const char *reason, const char *by)
{
    int rc = tdsx_store_agreement_move(a->store, hash, TDSX_AGREE_TERMINATED, env, reason);
    if (rc)
        return rc;
    tdsx_agreement_rec_t r;
    if (tdsx_store_agreement_get(a->store, hash, &r) == 0)
        log_event(a, TDSX_LOG_INFO, "agreement.terminated", &r, by, 0);
    tdsx_agreement_clear(&r);
    tdsx__exchange_policy_changed(a->node);
    return 0;
}

static void on_signed(void *ud, int status, tdsx_bytes_t env)
{
    agree_op_t *op = ud;
    tdsx_agree_t *a = op->a;
    if (status == TDSX_E_CANCELED) {
        /* The signer is going away with the node: nobody is left to answer. */
        op_free(op);
        return;
    }
    int rc = status;
    if (rc == 0 && !(op->env = tdsx_malloc(env.n)))
        rc = TDSX_E_NOMEM;
    if (rc) {
        reply_error(a, op->client, op->req_id, rc, "the statement could not be signed");
        op_free(op);
        return;
    }
    memcpy(op->env, env.p, env.n);
    op->env_len = env.n;
    const char *note = NULL;
    switch (op->kind) {
    case OP_PROPOSE:
        /* Kept before it leaves: it is a statement we signed, whatever the peer answers. */
        if (!tdsx__node_find_conn(a->node, op->peer)) {
            rc = TDSX_E_NOTFOUND;
            break;
        }
        tdsx_hash_t h;
        rc = tdsx_envelope_hash(env, &h);
        if (rc == 0) {
            memcpy(op->rec.hash, h.b, TDSX_SHA256_LEN);
            memcpy(op->hash, h.b, TDSX_SHA256_LEN);
            op->rec.proposal = env;
            rc = tdsx_store_agreement_put(a->store, &op->rec);
            op->rec.proposal = tdsx_bytes(NULL, 0);
        }
        if (rc)
            break;
        log_event(a, TDSX_LOG_INFO, "agreement.proposed", &op->rec, self_id(a), 0);
        rc = send_envelope(op);
        /* The connection failed under us: nobody saw it, so it must not stay open here. */
        if (rc && tdsx_store_agreement_move(a->store, op->hash, TDSX_AGREE_REFUSED,
                                            tdsx_bytes(NULL, 0), "not delivered") != 0)
            tdsx_log(TDSX_LOG_WARN, "agreement.close_failed", TDSX_KV_S("peer", op->peer));
        break;
    case OP_ACCEPT: rc = send_envelope(op); break;
    case OP_TERMINATE:
        rc = terminate_here(a, op->hash, env, op->reason, self_id(a));
        if (rc == 0 && send_envelope(op) != 0) {
            note = "the peer is not connected and was not told; transfers it attempts under "
                   "the agreement are refused here";
            reply_record(a, op->client, op->req_id, op->hash, note);
            op_free(op);
            return;
        }
        break;
    default: rc = TDSX_E_INTERNAL; break;
    }
    if (rc) {
        reply_error(a, op->client, op->req_id, rc,
                    rc == TDSX_E_NOTFOUND ? "the peer is not connected" : NULL);
        op_free(op);
    }
}

/* The peer answered one of our events. */
static void op_answered(agree_op_t *op, const Tdsx__AgreementResult *res)
{
    tdsx_agree_t *a = op->a;
    int err = res->error_code ? tdsx_err_from_wire(res->error_code) : 0;
    char msg[600];
    snprintf(msg, sizeof msg, "%s refused it: %s", op->peer,
             res->error_message && *res->error_message ? res->error_message : tdsx_strerror(err));
    int rc = 0;
    tdsx_agreement_rec_t r;
    switch (op->kind) {
    case OP_PROPOSE:
        if (!err) {
            reply_record(a, op->client, op->req_id, op->hash, NULL);
            break;
        }
        rc = tdsx_store_agreement_move(a->store, op->hash, TDSX_AGREE_REFUSED, tdsx_bytes(NULL, 0),
                                       msg);
        if (rc == 0 && tdsx_store_agreement_get(a->store, op->hash, &r) == 0) {
            log_event(a, TDSX_LOG_WARN, "agreement.refused", &r, op->peer, err);
            tdsx_agreement_clear(&r);
        }
        reply_error(a, op->client, op->req_id, err, msg);
        break;
    case OP_ACCEPT:
        if (err) {
            reply_error(a, op->client, op->req_id, err, msg);
            break;
        }
        rc = tdsx_store_agreement_move(a->store, op->hash, TDSX_AGREE_ACTIVE,
                                       tdsx_bytes(op->env, op->env_len), NULL);
        if (rc == 0 && tdsx_store_agreement_get(a->store, op->hash, &r) == 0) {
            log_event(a, TDSX_LOG_INFO, "agreement.accepted", &r, self_id(a), 0);
            tdsx_agreement_clear(&r);
        }
        if (rc)
            reply_error(a, op->client, op->req_id, rc, NULL);
        else
            reply_record(a, op->client, op->req_id, op->hash, NULL);
        break;
    default: reply_record(a, op->client, op->req_id, op->hash, err ? msg : NULL); break;
    }
    op_free(op);
}

void tdsx__agree_tick(tdsx_agree_t *a)
{
    if (!a)
        return;
    uint64_t now = uv_now(a->node->loop);
    for (agree_op_t *op = a->ops, *next; op; op = next) {
        next = op->next;
        if (now < op->deadline)
            continue;
        op_unlink(op);
        tdsx_log(TDSX_LOG_WARN, "agreement.no_answer", TDSX_KV_S("peer", op->peer),
                 TDSX_KV_I("stream", op->stream));
        if (op->kind == OP_PROPOSE)
            reply_error(a, op->client, op->req_id, TDSX_E_TIMEOUT,
                        "the peer did not answer: the proposal stays here as proposed-by-us "
                        "(terminate withdraws it)");
        else if (op->kind == OP_ACCEPT)
            reply_error(a, op->client, op->req_id, TDSX_E_TIMEOUT,
                        "the proposer did not answer: the agreement is not active here");
        else
            reply_record(a, op->client, op->req_id, op->hash, "the peer did not answer");
        op_free(op);
    }
}

/* ---- events from the peer -------------------------------------------------------------------- */

static int on_propose(tdsx_agree_t *a, tdsx_conn_t *c, uint32_t stream,
                      const Tdsx__AgreementPropose *p, const tdsx_hash_t *peer_key)
{
    const char *peer = tdsx__conn_peer_id(c);
    const char *why = NULL;
    tdsx_bytes_t env = tdsx_bytes(p->envelope.data, p->envelope.len);
    ProtobufCMessage *m = NULL;
    tdsx_verified_t info;
    tdsx_agreement_rec_t r, old;
    memset(&r, 0, sizeof r);
    memset(&old, 0, sizeof old);
    int rc =
        tdsx_statement_open(a->verifier, TDSX_STATEMENT_AGREEMENT_TERMS, env, a->arena, &m, &info);
    if (rc == 0 && memcmp(info.key_id.b, peer_key->b, TDSX_HASH_LEN) != 0) {
        rc = TDSX_E_SIG_INVALID;
        why = "terms not signed by the connected peer";
    }
    const Tdsx__AgreementTerms *t = (const Tdsx__AgreementTerms *)m;
    if (rc == 0)
        rc = tdsx__agree_terms_check(t, peer, self_id(a), tdsx_now(), &why);
    if (rc == 0)
        rc = record_from_terms(t, env, &r);
    tdsx_arena_reset(a->arena);
    if (rc == 0)
        rc = tdsx_store_agreement_put(a->store, &r);
    if (rc == TDSX_E_DUPLICATE) {
        /* The same proposal again (our answer was lost) is fine; a reused id is not. */
        if (tdsx_store_agreement_get(a->store, r.hash, &old) == 0 &&
            tdsx_bytes_equal(old.proposal, env)) {
            rc = answer(c, stream, 0, NULL, &old);
            tdsx_agreement_clear(&old);
            return rc;
        }
        why = "the agreement id is already in use";
    }
    if (rc) {
        log_rejected(peer, "propose", rc, why);
        return rc == TDSX_E_NOMEM ? rc : answer(c, stream, rc, why, NULL);
    }
    log_event(a, TDSX_LOG_INFO, "agreement.proposed", &r, peer, 0);
    return answer(c, stream, 0, NULL, &r);
}

/* Loads the agreement an event refers to and checks that the peer is its other party. */
static int load_for_peer(tdsx_agree_t *a, const uint8_t *hash, const uint8_t *id, const char *peer,
                         tdsx_agreement_rec_t *r, const char **why)
{
    int rc = hash ? tdsx_store_agreement_get(a->store, hash, r)
                  : tdsx_store_agreement_get_id(a->store, id, r);
    if (rc == TDSX_E_NOTFOUND)
        *why = "no such agreement here";
    else if (rc == 0 && !parties_are(r, self_id(a), peer)) {
        /* Answered like an unknown one: a third party learns nothing about it. */
        rc = TDSX_E_NOTFOUND;
        *why = "no such agreement here";
    }
    return rc;
}

static int on_accept(tdsx_agree_t *a, tdsx_conn_t *c, uint32_t stream,
                     const Tdsx__AgreementAccept *p, const tdsx_hash_t *peer_key)
{
    const char *peer = tdsx__conn_peer_id(c);
    const char *why = NULL;
    tdsx_bytes_t env = tdsx_bytes(p->envelope.data, p->envelope.len);
    ProtobufCMessage *m = NULL;
    uint8_t id[TDSX_AGREE_ID_LEN];
    tdsx_agreement_rec_t r;
    memset(&r, 0, sizeof r);
    int rc =
        tdsx_statement_open(a->verifier, TDSX_STATEMENT_AGREEMENT_TERMS, env, a->arena, &m, NULL);
    const Tdsx__AgreementTerms *t = (const Tdsx__AgreementTerms *)m;
    if (rc == 0 && t->agreement_id.len != TDSX_AGREE_ID_LEN)
        rc = TDSX_E_PROTO_FIELD;
    if (rc == 0)
        memcpy(id, t->agreement_id.data, TDSX_AGREE_ID_LEN);
    tdsx_arena_reset(a->arena);
    if (rc == 0)
        rc = load_for_peer(a, NULL, id, peer, &r, &why);
    if (rc == 0 && strcmp(r.proposer, self_id(a)) != 0) {
        rc = TDSX_E_STATE;
        why = "only the party that did not propose accepts";
    }
    int again = rc == 0 && r.state == TDSX_AGREE_ACTIVE;
    if (rc == 0 && r.state != TDSX_AGREE_PROPOSED && !again) {
        rc = TDSX_E_STATE;
        why = r.state == TDSX_AGREE_REFUSED ? "the proposal was refused"
                                            : "the agreement was terminated";
    }
    if (rc == 0 && !again && tdsx_now() > r.not_after) {
        rc = TDSX_E_AGREEMENT_EXPIRED;
        why = "the validity window is over";
    }
    /* Checked against the bytes we signed, not against what the acceptance says about them. */
    if (rc == 0) {
        rc = tdsx__agree_acceptance_check(a->verifier, a->arena, r.proposal, env, peer_key);
        if (rc == TDSX_E_HASH_MISMATCH)
            why = "the accepted terms differ from the proposal";
        else if (rc)
            why = "the acceptance does not verify as the peer's";
    }
    if (rc == 0 && !again)
        rc = tdsx_store_agreement_move(a->store, r.hash, TDSX_AGREE_ACTIVE, env, NULL);
    if (rc) {
        log_rejected(peer, "accept", rc, why);
        tdsx_agreement_clear(&r);
        return rc == TDSX_E_NOMEM ? rc : answer(c, stream, rc, why, NULL);
    }
    uint8_t hash[TDSX_SHA256_LEN];
    memcpy(hash, r.hash, sizeof hash);
    tdsx_agreement_clear(&r);
    if ((rc = tdsx_store_agreement_get(a->store, hash, &r)) != 0)
        return answer(c, stream, rc, NULL, NULL);
    if (!again)
        log_event(a, TDSX_LOG_INFO, "agreement.accepted", &r, peer, 0);
    rc = answer(c, stream, 0, NULL, &r);
    tdsx_agreement_clear(&r);
    return rc;
}

static int on_refuse(tdsx_agree_t *a, tdsx_conn_t *c, uint32_t stream,
                     const Tdsx__AgreementRefuse *p)
{
    const char *peer = tdsx__conn_peer_id(c);
    const char *why = NULL;
    char reason[TDSX_AGREE_REASON_MAX + 1];
    tdsx_hash_t h;
    tdsx_agreement_rec_t r;
    memset(&r, 0, sizeof r);
    int rc = tdsx_envelope_hash(tdsx_bytes(p->envelope.data, p->envelope.len), &h);
    if (rc == 0)
        rc = load_for_peer(a, h.b, NULL, peer, &r, &why);
    if (rc == 0 && (strcmp(r.proposer, self_id(a)) != 0 ||
                    (r.state != TDSX_AGREE_PROPOSED && r.state != TDSX_AGREE_REFUSED))) {
        rc = TDSX_E_STATE;
        why = "only a proposal of ours that is still open can be refused";
    }
    clip_text(reason, sizeof reason, p->reason);
    if (rc == 0 && r.state == TDSX_AGREE_PROPOSED)
        rc = tdsx_store_agreement_move(a->store, h.b, TDSX_AGREE_REFUSED, tdsx_bytes(NULL, 0),
                                       reason);
    tdsx_agreement_clear(&r);
    if (rc == 0)
        rc = tdsx_store_agreement_get(a->store, h.b, &r);
    if (rc) {
        log_rejected(peer, "refuse", rc, why);
        return rc == TDSX_E_NOMEM ? rc : answer(c, stream, rc, why, NULL);
    }
    log_event(a, TDSX_LOG_INFO, "agreement.refused", &r, peer, 0);
    rc = answer(c, stream, 0, NULL, &r);
    tdsx_agreement_clear(&r);
    return rc;
}

static int on_terminate(tdsx_agree_t *a, tdsx_conn_t *c, uint32_t stream,
                        const Tdsx__AgreementTerminate *p, const tdsx_hash_t *peer_key)
{
    const char *peer = tdsx__conn_peer_id(c);
    const char *why = NULL;
    char reason[TDSX_AGREE_REASON_MAX + 1] = "";
    uint8_t hash[TDSX_SHA256_LEN];
    tdsx_bytes_t env = tdsx_bytes(p->envelope.data, p->envelope.len);
    ProtobufCMessage *m = NULL;
    tdsx_verified_t info;
    tdsx_agreement_rec_t r;
    memset(&r, 0, sizeof r);
    int rc = tdsx_statement_open(a->verifier, TDSX_STATEMENT_AGREEMENT_TERMINATION, env, a->arena,
                                 &m, &info);
    const Tdsx__AgreementTermination *t = (const Tdsx__AgreementTermination *)m;
    if (rc == 0 &&
        (memcmp(info.key_id.b, peer_key->b, TDSX_HASH_LEN) != 0 || strcmp(t->by, peer) != 0)) {
        rc = TDSX_E_SIG_INVALID;
        why = "termination not signed by the connected peer";
    }
    if (rc == 0 && t->agreement_hash.len != TDSX_SHA256_LEN) {
        rc = TDSX_E_PROTO_FIELD;
        why = "the agreement hash must be 32 bytes";
    }
    if (rc == 0) {
        memcpy(hash, t->agreement_hash.data, sizeof hash);
        clip_text(reason, sizeof reason, t->reason);
    }
    tdsx_arena_reset(a->arena);
    if (rc == 0)
        rc = load_for_peer(a, hash, NULL, peer, &r, &why);
    int again = rc == 0 && r.state == TDSX_AGREE_TERMINATED;
    if (rc == 0 && r.state == TDSX_AGREE_REFUSED) {
        rc = TDSX_E_STATE;
        why = "the proposal was refused: there is nothing to terminate";
    }
    tdsx_agreement_clear(&r);
    if (rc == 0 && !again)
        rc = tdsx_store_agreement_move(a->store, hash, TDSX_AGREE_TERMINATED, env, reason);
    if (rc == 0)
        rc = tdsx_store_agreement_get(a->store, hash, &r);
    if (rc) {
        log_rejected(peer, "terminate", rc, why);
        return rc == TDSX_E_NOMEM ? rc : answer(c, stream, rc, why, NULL);
    }
    if (!again)
        log_event(a, TDSX_LOG_INFO, "agreement.terminated", &r, peer, 0);
    rc = answer(c, stream, 0, NULL, &r);
    tdsx_agreement_clear(&r);
    /* Running transfers under it stop here too (SPEC §7). */
    if (!again)
        tdsx__exchange_policy_changed(a->node);
    return rc;
}

int tdsx__agree_frame(tdsx_agree_t *a, tdsx_conn_t *c, const Tdsx__Frame *f,
                      const tdsx_hash_t *peer_key)
{
    if (!a || !c || !f || !peer_key)
        return TDSX_E_INVAL;
    switch (f->body_case) {
    case TDSX__FRAME__BODY_AGREEMENT_PROPOSE:
        return on_propose(a, c, f->stream_id, f->agreement_propose, peer_key);
    case TDSX__FRAME__BODY_AGREEMENT_ACCEPT:
        return on_accept(a, c, f->stream_id, f->agreement_accept, peer_key);
    case TDSX__FRAME__BODY_AGREEMENT_REFUSE:
        return on_refuse(a, c, f->stream_id, f->agreement_refuse);
    case TDSX__FRAME__BODY_AGREEMENT_TERMINATE:
        return on_terminate(a, c, f->stream_id, f->agreement_terminate, peer_key);
    case TDSX__FRAME__BODY_AGREEMENT_RESULT: {
        agree_op_t *op = op_find(a, tdsx__conn_peer_id(c), f->stream_id);
        /* A late answer (after our deadline) changes nothing. */
        if (op)
            op_answered(op, f->agreement_result);
        return 0;
    }
    case TDSX__FRAME__BODY_AGREEMENT_QUERY:
        return answer(c, f->stream_id, TDSX_E_UNSUPPORTED, "agreement queries are not served",
                      NULL);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

/* ---- local requests -------------------------------------------------------------------------- */

/* Answers the client now with a message of our own (the generic path only has the code). */
static int refuse_now(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id, int err,
                      const char *msg)
{
    reply_error(a, tdsx__control_serial(cl), req_id, err, msg);
    return 1;
}

static int local_propose(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id,
                         const Tdsx__AgreeProposeRequest *r)
{
    const char *self = self_id(a);
    const char *why = NULL;
    if (!tdsx__node_find_conn(a->node, r->with))
        return refuse_now(a, cl, req_id, TDSX_E_NOTFOUND,
                          "the counterpart is not connected to this node");
    if (r->n_actions > TDSX_AGREE_ACTIONS_MAX)
        return refuse_now(a, cl, req_id, TDSX_E_INVAL, "an agreement allows 1 to 6 actions");
    Tdsx__AgreementTerms t = TDSX__AGREEMENT_TERMS__INIT;
    Tdsx__Action actions[TDSX_AGREE_ACTIONS_MAX], *list[TDSX_AGREE_ACTIONS_MAX];
    char parties[TDSX_AGREE_ACTIONS_MAX][TDSX_ID_SIZE];
    uint8_t id[TDSX_AGREE_ID_LEN], nonce[16];
    for (size_t i = 0; i < r->n_actions; i++) {
        if (tdsx__agree_action_parse(r->actions[i], &actions[i], parties[i], TDSX_ID_SIZE) != 0)
            return refuse_now(a, cl, req_id, TDSX_E_INVAL,
                              "an action is receive, derive, relay-to:<role> or "
                              "relay-to:<USCC>/<node>");
        list[i] = &actions[i];
    }
    randombytes_buf(id, sizeof id);
    randombytes_buf(nonce, sizeof nonce);
    int64_t now = tdsx_now();
    t.agreement_id.data = id;
    t.agreement_id.len = sizeof id;
    t.nonce.data = nonce;
    t.nonce.len = sizeof nonce;
    t.proposer = (char *)self;
    t.provider = r->as_consumer ? r->with : (char *)self;
    t.consumer = r->as_consumer ? (char *)self : r->with;
    if (*r->dataset_id && !*r->category) {
        t.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT_DATASET_ID;
        t.dataset_id = r->dataset_id;
    } else if (*r->category && !*r->dataset_id) {
        t.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT_CATEGORY_SELECTOR;
        t.category_selector = r->category;
    }
    t.purpose_code = r->purpose_code;
    t.purpose_text = r->purpose_text;
    t.actions = list;
    t.n_actions = r->n_actions;
    t.not_before = r->not_before ? r->not_before : now;
    t.not_after = r->not_after;
    t.transfer_limit = r->transfer_limit;
    int rc = tdsx__agree_terms_check(&t, self, r->with, now, &why);
    if (rc)
        return refuse_now(a, cl, req_id, rc == TDSX_E_PROTO_FIELD ? TDSX_E_INVAL : rc, why);
    agree_op_t *op = op_new(a, cl, req_id, OP_PROPOSE, r->with);
    if (!op)
        return TDSX_E_NOMEM;
    rc = record_from_terms(&t, tdsx_bytes(NULL, 0), &op->rec);
    if (rc == 0)
        rc = tdsx_statement_submit(a->signer, TDSX_STATEMENT_AGREEMENT_TERMS, &t.base, on_signed,
                                   op);
    if (rc) {
        op_free(op);
        return rc;
    }
    return 1;
}

/* The agreement a local accept/refuse/terminate names. */
static int load_local(tdsx_agree_t *a, const Tdsx__AgreeAnswerRequest *r, tdsx_agreement_rec_t *out)
{
    if (r->agreement_id.len != TDSX_AGREE_ID_LEN) {
        memset(out, 0, sizeof *out);
        return TDSX_E_INVAL;
    }
    return tdsx_store_agreement_get_id(a->store, r->agreement_id.data, out);
}

static int local_accept(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id,
                        const Tdsx__AgreeAnswerRequest *q)
{
    tdsx_agreement_rec_t r;
    tdsx_arena_t *scratch = NULL;
    agree_op_t *op = NULL;
    const char *msg = NULL;
    int rc = load_local(a, q, &r);
    if (rc == TDSX_E_NOTFOUND) {
        msg = NO_SUCH;
    } else if (rc == 0 && r.state != TDSX_AGREE_PROPOSED) {
        rc = TDSX_E_STATE;
        msg = "only an open proposal can be accepted";
    } else if (rc == 0 && strcmp(r.proposer, self_id(a)) == 0) {
        rc = TDSX_E_STATE;
        msg = "this node proposed it: the other party accepts";
    } else if (rc == 0 && tdsx_now() > r.not_after) {
        rc = TDSX_E_AGREEMENT_EXPIRED;
        msg = "the validity window is over";
    } else if (rc == 0 && !tdsx__node_find_conn(a->node, r.proposer)) {
        rc = TDSX_E_NOTFOUND;
        msg = "the proposer is not connected to this node";
    }
    /* The acceptance signs the proposal's payload bytes exactly as they are. */
    Tdsx__Envelope *e = NULL;
    if (rc == 0)
        rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &scratch);
    if (rc == 0)
        rc = tdsx_proto_unpack(scratch, &tdsx__envelope__descriptor, r.proposal,
                               (ProtobufCMessage **)&e);
    if (rc == 0 && (!(op = op_new(a, cl, req_id, OP_ACCEPT, r.proposer))))
        rc = TDSX_E_NOMEM;
    if (rc == 0) {
        memcpy(op->hash, r.hash, sizeof op->hash);
        rc = tdsx_signer_submit(a->signer, tdsx_statement_type(TDSX_STATEMENT_AGREEMENT_TERMS),
                                tdsx_bytes(e->payload.data, e->payload.len), on_signed, op);
    }
    tdsx_arena_free(scratch);
    tdsx_agreement_clear(&r);
    if (rc) {
        op_free(op);
        return msg ? refuse_now(a, cl, req_id, rc, msg) : rc;
    }
    return 1;
}

static int local_refuse(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id,
                        const Tdsx__AgreeAnswerRequest *q, tdsx_arena_t *arena,
                        Tdsx__LocalResponse *resp)
{
    tdsx_agreement_rec_t r;
    char reason[TDSX_AGREE_REASON_MAX + 1];
    int rc = load_local(a, q, &r);
    if (rc)
        return rc == TDSX_E_NOTFOUND ? refuse_now(a, cl, req_id, rc, NO_SUCH) : rc;
    if (r.state != TDSX_AGREE_PROPOSED || strcmp(r.proposer, self_id(a)) == 0) {
        tdsx_agreement_clear(&r);
        return refuse_now(a, cl, req_id, TDSX_E_STATE,
                          "only an open proposal from the other party can be refused "
                          "(withdraw your own with terminate)");
    }
    clip_text(reason, sizeof reason, q->reason);
    rc = tdsx_store_agreement_move(a->store, r.hash, TDSX_AGREE_REFUSED, tdsx_bytes(NULL, 0),
                                   reason);
    if (rc) {
        tdsx_agreement_clear(&r);
        return rc;
    }
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    r.state = TDSX_AGREE_REFUSED;
    log_event(a, TDSX_LOG_INFO, "agreement.refused", &r, self_id(a), 0);
    /* Our refusal stands whatever happens next; the proposer is told when it is there. */
    Tdsx__AgreementRefuse rf = TDSX__AGREEMENT_REFUSE__INIT;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    rf.envelope.data = (uint8_t *)r.proposal.p;
    rf.envelope.len = r.proposal.n;
    rf.reason = reason;
    f.body_case = TDSX__FRAME__BODY_AGREEMENT_REFUSE;
    f.agreement_refuse = &rf;
    agree_op_t *op = op_new(a, cl, req_id, OP_REFUSE, r.proposer);
    if (op) {
        memcpy(op->hash, r.hash, sizeof op->hash);
        if (op_send(op, &f) == 0) {
            tdsx_agreement_clear(&r);
            return 1;
        }
        op_free(op);
    }
    rc = respond_one(arena, &r, self_id(a), "the proposer is not connected and was not told", resp);
    tdsx_agreement_clear(&r);
    return rc;
}

static int local_terminate(tdsx_agree_t *a, tdsx_ctl_client_t *cl, uint64_t req_id,
                           const Tdsx__AgreeAnswerRequest *q)
{
    tdsx_agreement_rec_t r;
    int rc = load_local(a, q, &r);
    if (rc)
        return rc == TDSX_E_NOTFOUND ? refuse_now(a, cl, req_id, rc, NO_SUCH) : rc;
    if (r.state != TDSX_AGREE_PROPOSED && r.state != TDSX_AGREE_ACTIVE) {
        tdsx_agreement_clear(&r);
        return refuse_now(a, cl, req_id, TDSX_E_STATE,
                          "the agreement is already refused or terminated");
    }
    agree_op_t *op = op_new(a, cl, req_id, OP_TERMINATE, other_party(&r, self_id(a)));
    if (!op) {
        tdsx_agreement_clear(&r);
        return TDSX_E_NOMEM;
    }
    memcpy(op->hash, r.hash, sizeof op->hash);
    clip_text(op->reason, sizeof op->reason, q->reason);
    tdsx_agreement_clear(&r);
    Tdsx__AgreementTermination t = TDSX__AGREEMENT_TERMINATION__INIT;
    t.agreement_hash.data = op->hash;
    t.agreement_hash.len = sizeof op->hash;
    t.by = (char *)self_id(a);
    t.reason = op->reason;
    t.time = tdsx_now();
    rc = tdsx_statement_submit(a->signer, TDSX_STATEMENT_AGREEMENT_TERMINATION, &t.base, on_signed,
                               op);
    if (rc) {
        op_free(op);
        return rc;
    }
    return 1;
}

typedef struct {
    tdsx_arena_t *arena;
    const char *self;
    Tdsx__AgreementSummary **items;
    size_t n;
} collect_t;

static int collect(void *ud, const tdsx_agreement_rec_t *r)
{
    collect_t *c = ud;
    return summary_new(c->arena, r, c->self, &c->items[c->n++]);
}

static int local_list(tdsx_agree_t *a, const Tdsx__AgreeListRequest *q, tdsx_arena_t *arena,
                      Tdsx__LocalResponse *resp)
{
    unsigned size =
        q->page_size && q->page_size <= AGREE_LIST_PAGE_MAX ? q->page_size : AGREE_LIST_PAGE;
    Tdsx__AgreeResponse *ar = tdsx_arena_alloc(arena, sizeof *ar);
    char *next = tdsx_arena_alloc(arena, TDSX_STORE_TOKEN_MAX);
    collect_t c = {arena, self_id(a), tdsx_arena_alloc(arena, size * sizeof *c.items), 0};
    if (!ar || !next || !c.items)
        return TDSX_E_NOMEM;
    tdsx__agree_response__init(ar);
    int rc = tdsx_store_agreement_list(a->store, q->page_token, size, collect, &c, next,
                                       TDSX_STORE_TOKEN_MAX);
    if (rc)
        return rc;
    ar->agreements = c.items;
    ar->n_agreements = c.n;
    ar->next_page_token = next;
    resp->body_case = TDSX__LOCAL_RESPONSE__BODY_AGREE;
    resp->agree = ar;
    return 0;
}

int tdsx__agree_local(tdsx_agree_t *a, tdsx_ctl_client_t *cl, const Tdsx__LocalRequest *req,
                      tdsx_arena_t *arena, Tdsx__LocalResponse *resp)
{
    if (!a || !cl || !req || !arena || !resp)
        return TDSX_E_INVAL;
    switch (req->body_case) {
    case TDSX__LOCAL_REQUEST__BODY_AGREE_PROPOSE:
        return local_propose(a, cl, req->id, req->agree_propose);
    case TDSX__LOCAL_REQUEST__BODY_AGREE_ACCEPT:
        return local_accept(a, cl, req->id, req->agree_accept);
    case TDSX__LOCAL_REQUEST__BODY_AGREE_REFUSE:
        return local_refuse(a, cl, req->id, req->agree_refuse, arena, resp);
    case TDSX__LOCAL_REQUEST__BODY_AGREE_TERMINATE:
        return local_terminate(a, cl, req->id, req->agree_terminate);
    case TDSX__LOCAL_REQUEST__BODY_AGREE_LIST: return local_list(a, req->agree_list, arena, resp);
    default: return TDSX_E_PROTO_UNSUPPORTED;
    }
}

/* ---- transfer decisions ---------------------------------------------------------------------- */

typedef struct {
    const char *provider, *consumer, *dataset_id, *category;
    int64_t now;
    int rank; /* of the best so far: 3 valid for the dataset, 2 valid by category, 1 lapsed */
    tdsx_agree_view_t *out;
} pick_t;

static void view_set(tdsx_agree_view_t *v, const tdsx_agreement_rec_t *r, tdsx_agreement_state_t st)
{
    v->state = st;
    memcpy(v->hash, r->hash, sizeof v->hash);
    v->purpose[0] = '\0';
    v->not_after = 0;
    if (st == TDSX_AGREEMENT_VALID) {
        snprintf(v->purpose, sizeof v->purpose, "%s", r->purpose_code);
        v->not_after = r->not_after;
    }
}

static int pick(void *ud, const tdsx_agreement_rec_t *r)
{
    pick_t *p = ud;
    if (!tdsx__agree_covers(r, p->provider, p->consumer, p->dataset_id, p->category))
        return 0;
    tdsx_agreement_state_t st = tdsx__agree_state(r, p->now);
    int rank = st == TDSX_AGREEMENT_VALID  ? (r->dataset_id[0] ? 3 : 2)
               : st == TDSX_AGREEMENT_NONE ? 0
                                           : 1;
    /* Rows come newest first, so on a tie the newest stays. */
    if (rank > p->rank) {
        p->rank = rank;
        view_set(p->out, r, st);
    }
    return 0;
}

void tdsx__agree_cover(tdsx_agree_t *a, const char *provider, const char *consumer,
                       const char *dataset_id, const char *category, const uint8_t *named,
                       int search, tdsx_agree_view_t *out)
{
    memset(out, 0, sizeof *out);
    out->state = TDSX_AGREEMENT_NONE;
    out->named = named != NULL;
    if (!a || !provider || !consumer)
        return;
    if (!dataset_id)
        dataset_id = "";
    if (!category)
        category = "";
    int64_t now = tdsx_now();
    int rc = 0;
    if (named) {
        tdsx_agreement_rec_t r;
        rc = tdsx_store_agreement_get(a->store, named, &r);
        if (rc == 0 && tdsx__agree_covers(&r, provider, consumer, dataset_id, category))
            view_set(out, &r, tdsx__agree_state(&r, now));
        tdsx_agreement_clear(&r);
        if (rc == TDSX_E_NOTFOUND)
            rc = 0; /* named but unknown here: no agreement, the policy decides */
    } else if (search) {
        pick_t p = {provider, consumer, dataset_id, category, now, 0, out};
        rc = tdsx_store_agreement_match(a->store, provider, consumer, dataset_id, category, pick,
                                        &p);
        if (rc)
            memset(out, 0, sizeof *out);
    }
    if (rc) {
        out->state = TDSX_AGREEMENT_NONE;
        tdsx_log(TDSX_LOG_ERROR, "agreement.lookup_failed", TDSX_KV_S("provider", provider),
                 TDSX_KV_S("consumer", consumer), TDSX_KV_S("dataset", dataset_id),
                 TDSX_KV_E("err", rc));
    }
}

int tdsx__agree_relay(tdsx_agree_t *a, const uint8_t *upstream, const char *origin,
                      const char *relayer, const char *dataset_id, const char *category,
                      const char *receiver, const char *receiver_role, tdsx_agree_view_t *out,
                      const char **why)
{
    const char *w = "the upstream transfer names no agreement that allows relaying";
    int rc = TDSX_E_AGREEMENT;
    tdsx_agreement_rec_t r;
    tdsx_agreement_state_t st;
    char act[TDSX_ID_SIZE + 16];
    int granted = 0, grc;
    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    out->state = TDSX_AGREEMENT_NONE;
    out->named = 1;
    if (!a || !upstream || !origin || !relayer || !receiver)
        goto fail;
    grc = tdsx_store_agreement_get(a->store, upstream, &r);
    if (grc) {
        if (grc != TDSX_E_NOTFOUND)
            tdsx_log(TDSX_LOG_ERROR, "agreement.lookup_failed", TDSX_KV_S("provider", origin),
                     TDSX_KV_S("consumer", relayer), TDSX_KV_E("err", grc));
        w = "the agreement the upstream transfer names is not held here";
        goto fail;
    }
    /* The upstream NRO is signed by the origin, but the agreement it names must still be the one
     * between the origin and us for this data: a hash alone proves nothing about its subject. */
    if (!tdsx__agree_covers(&r, origin, relayer, dataset_id ? dataset_id : "",
                            category ? category : "")) {
        w = "the agreement the upstream transfer names does not cover it";
        goto fail;
    }
    st = tdsx__agree_state(&r, tdsx_now());
    view_set(out, &r, st);
    if (st == TDSX_AGREEMENT_TERMINATED) {
        rc = TDSX_E_AGREEMENT_TERMINATED;
        w = "the upstream agreement has been terminated";
        goto fail;
    }
    if (st == TDSX_AGREEMENT_EXPIRED) {
        rc = TDSX_E_AGREEMENT_EXPIRED;
        w = "the upstream agreement has expired";
        goto fail;
    }
    if (st != TDSX_AGREEMENT_VALID) {
        w = "the upstream agreement is not valid now";
        goto fail;
    }
    /* relay-to names a party or a role (agree.h, action text form). */
    if (snprintf(act, sizeof act, "relay-to:%s", receiver) < (int)sizeof act)
        granted = list_has(r.actions, act);
    if (!granted && receiver_role && *receiver_role && strcmp(receiver_role, "none") != 0 &&
        snprintf(act, sizeof act, "relay-to:%s", receiver_role) < (int)sizeof act)
        granted = list_has(r.actions, act);
    if (!granted) {
        /* Not granted reads as no agreement for the policy, so nothing can lift it. */
        out->state = TDSX_AGREEMENT_NONE;
        out->purpose[0] = '\0';
        out->not_after = 0;
        w = "the upstream agreement does not grant relay-to this receiver";
        goto fail;
    }
    tdsx_agreement_clear(&r);
    if (why)
        *why = NULL;
    return 0;
fail:
    tdsx_agreement_clear(&r);
    if (why)
        *why = w;
    return rc;
}

int tdsx__agree_enforce(const tdsx_agree_view_t *v, tdsx_policy_decision_t *d)
{
    if (!v || !d || !v->named)
        return 0;
    if (v->state == TDSX_AGREEMENT_TERMINATED) {
        d->rule_id = "agreement:terminated";
        d->code = TDSX_E_AGREEMENT_TERMINATED;
        d->reason = "the agreement this transfer runs under has been terminated";
    } else if (v->state == TDSX_AGREEMENT_EXPIRED) {
        d->rule_id = "agreement:expired";
        d->code = TDSX_E_AGREEMENT_EXPIRED;
        d->reason = "the agreement this transfer runs under has expired";
    } else {
        return 0;
    }
    d->allow = 0;
    d->line = 0;
    return d->code;
}

void tdsx__agree_used(tdsx_agree_t *a, const uint8_t hash[TDSX_SHA256_LEN])
{
    if (!a || !hash)
        return;
    uint64_t used = 0;
    char hex[HASH_HEX];
    tdsx_hex_encode(hex, hash, TDSX_SHA256_LEN);
    int rc = tdsx_store_agreement_use(a->store, hash, &used);
    if (rc == 0)
        tdsx_log(TDSX_LOG_INFO, "agreement.used", TDSX_KV_S("hash", hex),
                 TDSX_KV_I("transfers", used));
    else if (rc != TDSX_E_NOTFOUND)
        tdsx_log(TDSX_LOG_WARN, "agreement.use_not_counted", TDSX_KV_S("hash", hex),
                 TDSX_KV_E("err", rc));
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

int tdsx__agree_new(tdsx_node_t *n, tdsx_store_t *store, tdsx_signer_t *signer,
                    tdsx_verifier_t *verifier, tdsx_agree_t **out)
{
    if (!n || !store || !signer || !verifier || !out)
        return TDSX_E_INVAL;
    tdsx_agree_t *a = tdsx_calloc(1, sizeof *a);
    if (!a)
        return TDSX_E_NOMEM;
    int rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a->arena);
    if (rc) {
        tdsx_free(a);
        return rc;
    }
    a->node = n;
    a->store = store;
    a->signer = signer;
    a->verifier = verifier;
    *out = a;
    return 0;
}

void tdsx__agree_free(tdsx_agree_t *a)
{
    if (!a)
        return;
    while (a->ops)
        op_free(a->ops);
    tdsx_arena_free(a->arena);
    tdsx_free(a);
}
