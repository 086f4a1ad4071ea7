/*
 * Agreements (SPEC §7, 企业数据授权, 双向公平授权): the checks on terms and acceptances, the
 * store's agreements table, and real daemons proposing, accepting, refusing and terminating —
 * the enterprise (provider) and the brain (consumer) with the same powers — with transfers
 * decided under them: refused without one, allowed with one (its hash in the receipt), refused
 * once terminated, expired or used up, and a termination aborting a running 100 MiB transfer at
 * both ends with nothing kept.
 */
#include "daemon.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "agree.h"
#include "store.h"

/* ---- unit level: terms, acceptances, states, actions ----------------------------------------- */

#define PROPOSER "91350100M000100Y43/ent"
#define OTHER "91350100M000100Y43/brain"

typedef struct {
    Tdsx__AgreementTerms t;
    Tdsx__Action receive, relay;
    Tdsx__Action *actions[2];
    uint8_t id[16], nonce[16];
} terms_t;

static void terms_init(terms_t *x, int64_t now)
{
    memset(x, 0, sizeof *x);
    tdsx__agreement_terms__init(&x->t);
    tdsx__action__init(&x->receive);
    tdsx__action__init(&x->relay);
    x->receive.kind = TDSX__ACTION_KIND__ACTION_KIND_RECEIVE;
    x->relay.kind = TDSX__ACTION_KIND__ACTION_KIND_RELAY_TO;
    x->relay.relay_to_role = TDSX__ROLE__ROLE_CENTRE;
    x->actions[0] = &x->receive;
    x->actions[1] = &x->relay;
    memset(x->id, 0x11, sizeof x->id);
    memset(x->nonce, 0x22, sizeof x->nonce);
    x->t.agreement_id.data = x->id;
    x->t.agreement_id.len = sizeof x->id;
    x->t.nonce.data = x->nonce;
    x->t.nonce.len = sizeof x->nonce;
    x->t.provider = PROPOSER;
    x->t.consumer = OTHER;
    x->t.proposer = PROPOSER;
    x->t.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT_DATASET_ID;
    x->t.dataset_id = "line-3";
    x->t.purpose_code = "quality.analytics";
    x->t.purpose_text = "工艺质量分析";
    x->t.actions = x->actions;
    x->t.n_actions = 2;
    x->t.not_before = now;
    x->t.not_after = now + 3600;
}

static int check(const terms_t *x, int64_t now)
{
    return tdsx__agree_terms_check(&x->t, PROPOSER, OTHER, now, NULL);
}

static void terms_are_checked_field_by_field(void **state)
{
    (void)state;
    int64_t now = 1800000000;
    terms_t x;
    terms_init(&x, now);
    const char *why = NULL;
    assert_int_equal(tdsx__agree_terms_check(&x.t, PROPOSER, OTHER, now, &why), 0);
    assert_null(why);
    /* Consumer proposing: the same terms are fine from either side. */
    x.t.proposer = OTHER;
    assert_int_equal(tdsx__agree_terms_check(&x.t, OTHER, PROPOSER, now, NULL), 0);

    terms_init(&x, now);
    x.t.proposer = OTHER; /* signed by one, naming the other as proposer */
    assert_int_equal(tdsx__agree_terms_check(&x.t, PROPOSER, OTHER, now, &why), TDSX_E_PROTO_FIELD);
    assert_non_null(strstr(why, "proposer"));
    terms_init(&x, now);
    x.t.consumer = "91350100M000100Y43/centre"; /* a third party */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.consumer = PROPOSER; /* with itself */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.agreement_id.len = 8;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.nonce.len = 0;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT__NOT_SET;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.subject_case = TDSX__AGREEMENT_TERMS__SUBJECT_CATEGORY_SELECTOR;
    x.t.category_selector = "production..process";
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    x.t.category_selector = "production.process";
    assert_int_equal(check(&x, now), 0);
    terms_init(&x, now);
    x.t.purpose_code = "";
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    x.t.purpose_code = "has space";
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.purpose_text = "quality\x1b[2J"; /* a terminal escape, shown by `tdsx agree list` */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.dataset_id = "line\n3";
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.n_actions = 0;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.relay.relay_to_role = TDSX__ROLE__ROLE_UNSPECIFIED; /* relay to nobody */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    x.relay.relay_to_party = "not-an-id";
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    x.relay.relay_to_party = "91350100M000100Y43/a,b"; /* a comma would split the list */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    x.relay.relay_to_party = "91350100M000100Y43/centre";
    assert_int_equal(check(&x, now), 0);
    x.relay.relay_to_role = TDSX__ROLE__ROLE_BRAIN; /* both a party and a role */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.receive.relay_to_role = TDSX__ROLE__ROLE_BRAIN; /* receive takes no target */
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.not_before = now + 100; /* starts after it ends */
    x.t.not_after = now + 50;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.transfer_limit = (uint64_t)INT64_MAX + 1;
    assert_int_equal(check(&x, now), TDSX_E_PROTO_FIELD);
    terms_init(&x, now);
    x.t.not_after = now - 1; /* over before it starts */
    assert_int_equal(tdsx__agree_terms_check(&x.t, PROPOSER, OTHER, now, &why),
                     TDSX_E_AGREEMENT_EXPIRED);
    assert_non_null(why);
}

typedef struct {
    uint8_t *p;
    size_t n;
} blob_t;

static void on_env(void *ud, int status, tdsx_bytes_t env)
{
    blob_t *b = ud;
    assert_int_equal(status, 0);
    b->p = malloc(env.n);
    assert_non_null(b->p);
    memcpy(b->p, env.p, env.n);
    b->n = env.n;
}

static tdsx_signer_t *new_signer(void)
{
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    tdsx_signer_t *s = NULL;
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), 0);
    sodium_memzero(seed, sizeof seed);
    return s;
}

static blob_t sign_msg(tdsx_signer_t *s, tdsx_statement_kind_t kind, const ProtobufCMessage *m)
{
    blob_t b = {NULL, 0};
    assert_int_equal(tdsx_statement_submit(s, kind, m, on_env, &b), 0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_non_null(b.p);
    return b;
}

/* The accepter's side: the same payload bytes, signed again. */
static blob_t sign_same_payload(tdsx_signer_t *s, blob_t proposal)
{
    Tdsx__Envelope *e = tdsx__envelope__unpack(NULL, proposal.n, proposal.p);
    assert_non_null(e);
    blob_t b = {NULL, 0};
    assert_int_equal(tdsx_signer_submit(s, e->payload_type,
                                        tdsx_bytes(e->payload.data, e->payload.len), on_env, &b),
                     0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    tdsx__envelope__free_unpacked(e, NULL);
    assert_non_null(b.p);
    return b;
}

static void acceptance_must_sign_identical_bytes(void **state)
{
    (void)state;
    tdsx_signer_t *prop = new_signer(), *acc = new_signer(), *stranger = new_signer();
    uint8_t pk[32];
    tdsx_verifier_t *v = NULL;
    tdsx_arena_t *arena = NULL;
    assert_int_equal(tdsx_verifier_new(0, &v), 0);
    tdsx_signer_public_key(prop, pk);
    assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    tdsx_signer_public_key(acc, pk);
    assert_int_equal(tdsx_verifier_add_key(v, pk), 0);
    assert_int_equal(tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &arena), 0);
    const tdsx_hash_t *acc_id = tdsx_signer_key_id(acc);

    terms_t x;
    terms_init(&x, 1800000000);
    blob_t proposal = sign_msg(prop, TDSX_STATEMENT_AGREEMENT_TERMS, &x.t.base);
    tdsx_bytes_t pb = tdsx_bytes(proposal.p, proposal.n);

    blob_t same = sign_same_payload(acc, proposal);
    assert_int_equal(tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(same.p, same.n), acc_id),
                     0);
    assert_int_equal(tdsx_arena_used(arena), 0); /* left reset */

    /* Terms that differ in one field (the limit) are not an acceptance of these. */
    x.t.transfer_limit = 100;
    blob_t other = sign_msg(acc, TDSX_STATEMENT_AGREEMENT_TERMS, &x.t.base);
    assert_int_equal(
        tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(other.p, other.n), acc_id),
        TDSX_E_HASH_MISMATCH);

    /* The identical payload, but signed by the proposer itself: not the accepter's word. */
    blob_t self = sign_same_payload(prop, proposal);
    assert_int_equal(tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(self.p, self.n), acc_id),
                     TDSX_E_SIG_INVALID);

    /* Signed by a key nobody registered. */
    blob_t unknown = sign_same_payload(stranger, proposal);
    assert_int_equal(
        tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(unknown.p, unknown.n), acc_id),
        TDSX_E_SIGNER_UNKNOWN);

    /* Another statement type (a termination) is not an acceptance. */
    Tdsx__AgreementTermination term = TDSX__AGREEMENT_TERMINATION__INIT;
    uint8_t h[32] = {1};
    term.agreement_hash.data = h;
    term.agreement_hash.len = 32;
    term.by = OTHER;
    blob_t wrong = sign_msg(acc, TDSX_STATEMENT_AGREEMENT_TERMINATION, &term.base);
    assert_int_equal(
        tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(wrong.p, wrong.n), acc_id),
        TDSX_E_SIG_TYPE);

    /* One flipped byte in the accepted payload breaks its signature. */
    same.p[same.n / 2] ^= 1;
    assert_int_not_equal(
        tdsx__agree_acceptance_check(v, arena, pb, tdsx_bytes(same.p, same.n), acc_id), 0);

    free(proposal.p);
    free(same.p);
    free(other.p);
    free(self.p);
    free(unknown.p);
    free(wrong.p);
    tdsx_arena_free(arena);
    tdsx_verifier_free(v);
    tdsx_signer_free(prop);
    tdsx_signer_free(acc);
    tdsx_signer_free(stranger);
}

static void rec_init(tdsx_agreement_rec_t *r, uint8_t tag)
{
    memset(r, 0, sizeof *r);
    memset(r->hash, tag, sizeof r->hash);
    memset(r->id, tag, sizeof r->id);
    snprintf(r->provider, sizeof r->provider, "%s", PROPOSER);
    snprintf(r->consumer, sizeof r->consumer, "%s", OTHER);
    snprintf(r->proposer, sizeof r->proposer, "%s", PROPOSER);
    snprintf(r->dataset_id, sizeof r->dataset_id, "line-3");
    snprintf(r->purpose_code, sizeof r->purpose_code, "analytics");
    snprintf(r->actions, sizeof r->actions, "receive,relay-to:centre");
    r->not_before = 1000;
    r->not_after = 2000;
    r->state = TDSX_AGREE_PROPOSED;
    r->proposal = tdsx_bytes("proposal", 8);
}

static void state_follows_window_limit_and_termination(void **state)
{
    (void)state;
    tdsx_agreement_rec_t r;
    rec_init(&r, 1);
    assert_int_equal(tdsx__agree_state(&r, 1500), TDSX_AGREEMENT_NONE); /* only proposed */
    r.state = TDSX_AGREE_ACTIVE;
    assert_int_equal(tdsx__agree_state(&r, 999), TDSX_AGREEMENT_NONE); /* not yet */
    assert_int_equal(tdsx__agree_state(&r, 1000), TDSX_AGREEMENT_VALID);
    assert_int_equal(tdsx__agree_state(&r, 2000), TDSX_AGREEMENT_VALID); /* last second */
    assert_int_equal(tdsx__agree_state(&r, 2001), TDSX_AGREEMENT_EXPIRED);
    r.transfer_limit = 2;
    r.transfers_used = 1;
    assert_int_equal(tdsx__agree_state(&r, 1500), TDSX_AGREEMENT_VALID);
    r.transfers_used = 2;
    assert_int_equal(tdsx__agree_state(&r, 1500), TDSX_AGREEMENT_EXPIRED);
    r.state = TDSX_AGREE_TERMINATED;
    assert_int_equal(tdsx__agree_state(&r, 1500), TDSX_AGREEMENT_TERMINATED);
    r.state = TDSX_AGREE_REFUSED;
    assert_int_equal(tdsx__agree_state(&r, 1500), TDSX_AGREEMENT_NONE);

    /* What it covers: direction, subject, the receive action. */
    rec_init(&r, 1);
    assert_true(tdsx__agree_covers(&r, PROPOSER, OTHER, "line-3", "production.process"));
    assert_false(tdsx__agree_covers(&r, OTHER, PROPOSER, "line-3", "production.process"));
    assert_false(tdsx__agree_covers(&r, PROPOSER, OTHER, "line-4", "production.process"));
    snprintf(r.actions, sizeof r.actions, "derive,relay-to:centre");
    assert_false(tdsx__agree_covers(&r, PROPOSER, OTHER, "line-3", "production.process"));
    snprintf(r.actions, sizeof r.actions, "receive");
    r.dataset_id[0] = '\0';
    snprintf(r.category, sizeof r.category, "production.process");
    assert_true(tdsx__agree_covers(&r, PROPOSER, OTHER, "x", "production.process"));
    assert_true(tdsx__agree_covers(&r, PROPOSER, OTHER, "x", "production.process.quality"));
    assert_false(tdsx__agree_covers(&r, PROPOSER, OTHER, "x", "production.processing"));
    assert_false(tdsx__agree_covers(&r, PROPOSER, OTHER, "x", "production"));

    /* A transfer that names a lapsed agreement stops whatever the policy said. */
    tdsx_agree_view_t v;
    tdsx_policy_decision_t d;
    memset(&v, 0, sizeof v);
    memset(&d, 0, sizeof d);
    d.allow = 1;
    v.named = 1;
    v.state = TDSX_AGREEMENT_TERMINATED;
    assert_int_equal(tdsx__agree_enforce(&v, &d), TDSX_E_AGREEMENT_TERMINATED);
    assert_int_equal(d.allow, 0);
    assert_string_equal(d.rule_id, "agreement:terminated");
    v.state = TDSX_AGREEMENT_EXPIRED;
    assert_int_equal(tdsx__agree_enforce(&v, &d), TDSX_E_AGREEMENT_EXPIRED);
    v.named = 0; /* found by looking, not named by the transfer: the policy decides */
    assert_int_equal(tdsx__agree_enforce(&v, &d), 0);
    v.named = 1;
    v.state = TDSX_AGREEMENT_NONE;
    assert_int_equal(tdsx__agree_enforce(&v, &d), 0);
}

static void actions_have_one_text_form(void **state)
{
    (void)state;
    static const char *const good[] = {"receive", "derive", "relay-to:centre", "relay-to:brain",
                                       "relay-to:91350100M000100Y43/centre-1"};
    static const char *const bad[] = {"",
                                      "Receive",
                                      "relay-to:",
                                      "relay-to:nobody",
                                      "relay-to:91350100M000100Y4Z/x",
                                      "relay-to:91350100M000100Y43/a,b",
                                      "relay-to:centre,brain",
                                      "send"};
    char party[TDSX_ID_SIZE], text[TDSX_ID_SIZE + 16];
    Tdsx__Action a;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(tdsx__agree_action_parse(good[i], &a, party, sizeof party), 0);
        assert_int_equal(tdsx__agree_action_format(&a, text, sizeof text), 0);
        assert_string_equal(text, good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tdsx__agree_action_parse(bad[i], &a, party, sizeof party), TDSX_E_INVAL);
    assert_int_equal(tdsx__agree_action_parse("receive", &a, party, sizeof party), 0);
    assert_int_equal(tdsx__agree_action_format(&a, text, 4), TDSX_E_TOOBIG);
}

/* ---- unit level: the store's agreements ------------------------------------------------------ */

static int count_cb(void *ud, const tdsx_agreement_rec_t *a)
{
    (void)a;
    (*(int *)ud)++;
    return 0;
}

static int match_count(tdsx_store_t *s, const char *dataset, const char *category)
{
    int n = 0;
    assert_int_equal(
        tdsx_store_agreement_match(s, PROPOSER, OTHER, dataset, category, count_cb, &n), 0);
    return n;
}

static void raw_sql(const char *dir, const char *sql)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void store_keeps_agreements_and_their_moves(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    tdsx_store_t *s = NULL;
    assert_int_equal(tdsx_store_open(dir, &s), 0);
    tdsx_agreement_rec_t r, got;
    rec_init(&r, 7);
    r.transfer_limit = 2;
    assert_int_equal(tdsx_store_agreement_put(s, &r), 0);
    assert_int_equal(tdsx_store_agreement_put(s, &r), TDSX_E_DUPLICATE);
    rec_init(&r, 8);
    memset(r.id, 7, sizeof r.id); /* another hash, a reused id */
    assert_int_equal(tdsx_store_agreement_put(s, &r), TDSX_E_DUPLICATE);
    rec_init(&r, 9);
    snprintf(r.category, sizeof r.category, "production.process"); /* two subjects */
    assert_int_equal(tdsx_store_agreement_put(s, &r), TDSX_E_INVAL);
    r.dataset_id[0] = '\0';
    r.not_after = r.not_before - 1;
    assert_int_equal(tdsx_store_agreement_put(s, &r), TDSX_E_INVAL);
    r.not_after = 2000;
    assert_int_equal(tdsx_store_agreement_put(s, &r), 0); /* the category one */

    uint8_t h7[32], h9[32], nope[32];
    memset(h7, 7, 32);
    memset(h9, 9, 32);
    memset(nope, 0x55, 32);
    assert_int_equal(tdsx_store_agreement_get(s, h7, &got), 0);
    assert_string_equal(got.actions, "receive,relay-to:centre");
    assert_int_equal(got.state, TDSX_AGREE_PROPOSED);
    assert_int_equal(got.proposal.n, 8);
    assert_memory_equal(got.proposal.p, "proposal", 8);
    assert_int_equal(got.acceptance.n, 0);
    tdsx_agreement_clear(&got);
    assert_int_equal(tdsx_store_agreement_get(s, nope, &got), TDSX_E_NOTFOUND);
    assert_int_equal(tdsx_store_agreement_get_id(s, h7, &got), 0); /* id = 16 bytes of 7 */
    tdsx_agreement_clear(&got);

    /* A proposal is not counted against, nor matched for transfers. */
    assert_int_equal(tdsx_store_agreement_use(s, h7, NULL), TDSX_E_STATE);
    assert_int_equal(match_count(s, "line-3", "production.process"), 0);
    /* Moves: acceptance needs its envelope; a refusal carries none. */
    assert_int_equal(tdsx_store_agreement_move(s, h7, TDSX_AGREE_ACTIVE, tdsx_bytes(NULL, 0), NULL),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_store_agreement_move(s, h7, TDSX_AGREE_REFUSED, tdsx_bytes("x", 1), "no"),
                     TDSX_E_INVAL);
    assert_int_equal(
        tdsx_store_agreement_move(s, nope, TDSX_AGREE_ACTIVE, tdsx_bytes("acc", 3), NULL),
        TDSX_E_NOTFOUND);
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_ACTIVE, tdsx_bytes("acc", 3), NULL), 0);
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_REFUSED, tdsx_bytes(NULL, 0), "late"),
        TDSX_E_STATE);
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_ACTIVE, tdsx_bytes("acc2", 4), NULL),
        TDSX_E_STATE);
    assert_int_equal(match_count(s, "line-3", "production.process"), 1);
    assert_int_equal(match_count(s, "line-4", "production.process"), 0);
    assert_int_equal(
        tdsx_store_agreement_move(s, h9, TDSX_AGREE_ACTIVE, tdsx_bytes("acc", 3), NULL), 0);
    assert_int_equal(match_count(s, "any", "production.process.quality"), 1);
    assert_int_equal(match_count(s, "any", "production.processing"), 0);
    assert_int_equal(match_count(s, "any", "production"), 0);
    assert_int_equal(match_count(s, "line-3", "production.process"), 2);

    /* The limit holds: two counted, the third refused. */
    uint64_t used = 0;
    assert_int_equal(tdsx_store_agreement_use(s, h7, &used), 0);
    assert_int_equal(used, 1);
    assert_int_equal(tdsx_store_agreement_use(s, h7, &used), 0);
    assert_int_equal(used, 2);
    assert_int_equal(tdsx_store_agreement_use(s, h7, &used), TDSX_E_STATE);
    assert_int_equal(tdsx_store_agreement_use(s, nope, &used), TDSX_E_NOTFOUND);

    char reason[600];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_TERMINATED, tdsx_bytes("term", 4), reason),
        TDSX_E_TOOBIG);
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_TERMINATED, tdsx_bytes("term", 4), "ended"), 0);
    assert_int_equal(
        tdsx_store_agreement_move(s, h7, TDSX_AGREE_TERMINATED, tdsx_bytes("term", 4), "again"),
        TDSX_E_STATE);
    assert_int_equal(tdsx_store_agreement_get(s, h7, &got), 0);
    assert_int_equal(got.state, TDSX_AGREE_TERMINATED);
    assert_string_equal(got.reason, "ended");
    assert_int_equal(got.transfers_used, 2);
    assert_memory_equal(got.acceptance.p, "acc", 3);
    assert_memory_equal(got.termination.p, "term", 4);
    tdsx_agreement_clear(&got);

    /* Listing pages newest first. */
    char next[TDSX_STORE_TOKEN_MAX], token[TDSX_STORE_TOKEN_MAX];
    int n = 0;
    assert_int_equal(tdsx_store_agreement_list(s, "", 1, count_cb, &n, next, sizeof next), 0);
    assert_int_equal(n, 1);
    assert_true(next[0] != '\0');
    memcpy(token, next, sizeof token);
    assert_int_equal(tdsx_store_agreement_list(s, token, 10, count_cb, &n, next, sizeof next), 0);
    assert_int_equal(n, 2);
    assert_string_equal(next, "");
    assert_int_equal(tdsx_store_agreement_list(s, "x1", 10, count_cb, &n, next, sizeof next),
                     TDSX_E_INVAL);
    tdsx_store_close(s);

    /* A version-1 database gains the table on open, the rest untouched. */
    raw_sql(dir, "DROP TABLE agreements; DROP TABLE sent_nros; DROP INDEX receipts_log_index;"
                 " ALTER TABLE receipts DROP COLUMN log_index; PRAGMA user_version=1");
    assert_int_equal(tdsx_store_open(dir, &s), 0);
    rec_init(&r, 7);
    assert_int_equal(tdsx_store_agreement_put(s, &r), 0);
    tdsx_store_close(s);
    tdsx_test_rmdir(dir);
}

/* ---- real daemons ---------------------------------------------------------------------------- */

typedef struct {
    tdsx_test_province_t p;
    tdsx_test_node_t brain, ent;
    char *small; /* 1 KiB */
    char *big;   /* 100 MiB */
    char *root;  /* province root.pem */
    char *receipt, *receipt2;
} world_t;

static world_t W;

#define TAGS(grade, category)                                                                      \
    "grade=" grade " domain=production category=" category                                         \
    " personal=none library=base source=enterprise"

/* The brain takes general:3 and up only under an agreement, general:2 only for research. */
static const char brain_policy[] = "[need-agreement] allow grade general>=3 from enterprise "
                                   "require agreement\n"
                                   "[research-only]  allow grade general:2 purpose research "
                                   "from enterprise\n"
                                   "[closed]         deny any\n";
static const char ent_policy[] = "[out-3]   allow grade general>=3 to brain require agreement\n"
                                 "[out-low] allow grade general<=2 to brain\n"
                                 "[closed]  deny any\n";

static void write_random(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static uint8_t buf[1 << 20];
    uint32_t x = 0x9e3779b9u;
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        for (size_t i = 0; i < k; i += 4) {
            x = x * 1664525u + 1013904223u; /* deterministic LCG filler */
            memcpy(buf + i, &x, k - i < 4 ? k - i : 4);
        }
        assert_int_equal(fwrite(buf, 1, k, f), k);
        n -= k;
    }
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    tdsx_test_province_init(p);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    char *bp = tdsx_test_path(p->dir, "brain-policy.txt");
    char *ep = tdsx_test_path(p->dir, "ent-policy.txt");
    tdsx_test_write_file(bp, brain_policy, strlen(brain_policy));
    tdsx_test_write_file(ep, ent_policy, strlen(ent_policy));
    char extra[8192];
    /* Tight windows on the receiver keep the big transfer running long enough to be cut. */
    snprintf(extra, sizeof extra, "policy %s\nstream_window 16k\nconn_window 16k\n", bp);
    tdsx_test_node_config(p, &W.brain, extra);
    snprintf(extra, sizeof extra, "policy %s\npeer %s 127.0.0.1:%d\n", ep, W.brain.id,
             W.brain.port);
    tdsx_test_node_config(p, &W.ent, extra);
    free(bp);
    free(ep);
    W.small = tdsx_test_path(p->dir, "small.bin");
    write_random(W.small, 1024);
    W.big = tdsx_test_path(p->dir, "big.bin");
    write_random(W.big, 100u << 20);
    W.root = tdsx_test_path(p->ca, "root.pem");
    W.receipt = tdsx_test_path(p->dir, "receipt.bin");
    W.receipt2 = tdsx_test_path(p->dir, "receipt-brain.bin");
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    usleep(200000); /* both Hellos */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.ent);
    free(W.small);
    free(W.big);
    free(W.root);
    free(W.receipt);
    free(W.receipt2);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* Runs `tdsx agree VERB ARGS` against node n; returns the exit code, output in *out (never
 * NULL). */
static int agree(char **out, const tdsx_test_node_t *n, const char *verb, const char *args)
{
    char *o = NULL;
    int rc = tdsx_test_run(&o, "tdsx agree %s --socket '%s' %s 2>&1", verb, n->sock, args);
    *out = o ? o : strdup("");
    return rc;
}

/* Proposes from n to its counterpart; fills id and hash from the output. */
static int propose(const tdsx_test_node_t *n, const tdsx_test_node_t *to, const char *args,
                   char id[33], char hash[65], char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "--with %s %s", to->id, args);
    int rc = agree(out, n, "propose", cmd);
    id[0] = hash[0] = '\0';
    const char *p = strstr(*out, "agreement  ");
    if (p)
        sscanf(p, "agreement  %32[0-9a-f]", id);
    p = strstr(*out, "hash       ");
    if (p)
        sscanf(p, "hash       %64[0-9a-f]", hash);
    return rc;
}

/* The state column of agreement id in n's list ("" when it is not listed). */
static void list_state(const tdsx_test_node_t *n, const char *id, char state[32], char used[32])
{
    char *out = NULL;
    assert_int_equal(agree(&out, n, "list", ""), 0);
    state[0] = used[0] = '\0';
    const char *p = strstr(out, id);
    if (p) {
        char role[16], peer[200], subject[300], purpose[80], until[32];
        assert_int_equal(sscanf(p + strlen(id), " %31s %15s %199s %299s %79s %31s %31s", state,
                                role, peer, subject, purpose, until, used),
                         7);
    }
    free(out);
}

static int send_file(char **out, const char *dataset, const char *tags, const char *receipt)
{
    char *o = NULL;
    int rc =
        tdsx_test_run(&o, "tdsx send --socket '%s' --to %s '%s' --dataset %s --tags '%s' %s%s 2>&1",
                      W.ent.sock, W.brain.id, W.small, dataset, tags,
                      receipt ? "--receipt-out " : "", receipt ? receipt : "");
    *out = o ? o : strdup("");
    return rc;
}

/* Proposes dataset `ds` from the enterprise and has the brain accept it; returns in id. */
static void agreed(const char *ds, const char *extra, char id[33], char hash[65])
{
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "--dataset %s --purpose analytics --action receive %s", ds,
             extra ? extra : "--days 1");
    assert_int_equal(propose(&W.ent, &W.brain, args, id, hash, &out), 0);
    free(out);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(agree(&out, &W.brain, "accept", id), 0);
    assert_non_null(strstr(out, "state      active"));
    free(out);
}

/* Decodes the NRO and NRR of a receipt file (protobuf-c's allocator; caller frees). */
static void read_receipt(const char *path, Tdsx__Nro **nro, Tdsx__Nrr **nrr)
{
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(tdsx_file_read(path, 16u << 20, &b, &n), 0);
    Tdsx__ReceiptBundle *rb = tdsx__receipt_bundle__unpack(NULL, n, b);
    assert_non_null(rb);
    Tdsx__Envelope *e1 = tdsx__envelope__unpack(NULL, rb->nro.len, rb->nro.data);
    Tdsx__Envelope *e2 = tdsx__envelope__unpack(NULL, rb->nrr.len, rb->nrr.data);
    assert_non_null(e1);
    assert_non_null(e2);
    *nro = tdsx__nro__unpack(NULL, e1->payload.len, e1->payload.data);
    *nrr = tdsx__nrr__unpack(NULL, e2->payload.len, e2->payload.data);
    assert_non_null(*nro);
    assert_non_null(*nrr);
    tdsx__envelope__free_unpacked(e1, NULL);
    tdsx__envelope__free_unpacked(e2, NULL);
    tdsx__receipt_bundle__free_unpacked(rb, NULL);
    tdsx_free(b);
}

static void provider_proposes_and_transfer_needs_it(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    /* general:3 needs an agreement: refused by the sender before anything leaves. */
    assert_int_equal(send_file(&out, "g3-a", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);

    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset g3-a --purpose analytics --purpose-text '质量分析' "
                             "--action receive --action derive --days 30",
                             id, hash, &out),
                     0);
    assert_non_null(strstr(out, "state      proposed-by-us"));
    assert_non_null(strstr(out, "actions    receive,derive"));
    free(out);
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "proposed-by-us");
    list_state(&W.brain, id, st, used);
    assert_string_equal(st, "proposed-to-us");
    /* Proposed is not agreed: still refused. */
    assert_int_equal(send_file(&out, "g3-a", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);
    /* The proposer cannot accept its own terms. */
    assert_int_equal(agree(&out, &W.ent, "accept", id), 1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);

    assert_int_equal(agree(&out, &W.brain, "accept", id), 0);
    assert_non_null(strstr(out, "state      active"));
    assert_non_null(strstr(out, "we are the consumer"));
    free(out);
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "active");
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"agreement.accepted\"", id, NULL));
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"agreement.accepted\"", id, NULL));

    assert_int_equal(send_file(&out, "g3-a", TAGS("general:3", "production.process"), W.receipt),
                     0);
    assert_non_null(strstr(out, "state      receipted"));
    /* The brain holds the same receipt. */
    char tid[33] = "";
    const char *p = strstr(out, "transfer   ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "transfer   %32[0-9a-f]", tid), 1);
    free(out);
    assert_int_equal(tdsx_test_run(&out,
                                   "tdsx receipts show %s --anchor '%s' --out '%s' "
                                   "--socket '%s' 2>&1",
                                   tid, W.root, W.receipt2, W.brain.sock),
                     0);
    free(out);
    const char *files[2] = {W.receipt, W.receipt2};
    for (int i = 0; i < 2; i++) {
        Tdsx__Nro *nro = NULL;
        Tdsx__Nrr *nrr = NULL;
        read_receipt(files[i], &nro, &nrr);
        char got[65];
        assert_int_equal(nro->agreement_hash.len, 32);
        tdsx_hex_encode(got, nro->agreement_hash.data, 32);
        assert_string_equal(got, hash);
        assert_string_equal(nro->policy_rule, "out-3");
        assert_string_equal(nrr->policy_rule, "need-agreement");
        assert_int_equal(nrr->status, TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED);
        tdsx__nro__free_unpacked(nro, NULL);
        tdsx__nrr__free_unpacked(nrr, NULL);
    }
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"agreement.used\"", hash, NULL));
    list_state(&W.ent, id, st, used);
    assert_string_equal(used, "1/-");
}

/* The brain (consumer) has the same powers: it proposes, by category, and the enterprise
 * accepts. */
static void consumer_proposes_by_category(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    assert_int_equal(propose(&W.brain, &W.ent,
                             "--category production.condition --purpose analytics --action receive "
                             "--action relay-to:centre --days 1 --as consumer",
                             id, hash, &out),
                     0);
    assert_non_null(strstr(out, "we are the consumer"));
    free(out);
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "proposed-to-us");
    assert_int_equal(agree(&out, &W.ent, "accept", id), 0);
    assert_non_null(strstr(out, "we are the provider"));
    free(out);
    list_state(&W.brain, id, st, used);
    assert_string_equal(st, "active");
    /* Below the selector: covered. */
    assert_int_equal(
        send_file(&out, "cat-1", TAGS("general:3", "production.condition.vibration"), NULL), 0);
    free(out);
    /* Another category: not covered. */
    assert_int_equal(send_file(&out, "cat-2", TAGS("general:3", "production.control"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);
}

static void refused_proposal_allows_nothing(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset g3-r --purpose analytics --action receive --days 1", id,
                             hash, &out),
                     0);
    free(out);
    /* Only the party it was proposed to refuses it. */
    assert_int_equal(agree(&out, &W.ent, "refuse", id), 1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);
    char args[128];
    snprintf(args, sizeof args, "%s --reason 'not needed'", id);
    assert_int_equal(agree(&out, &W.brain, "refuse", args), 0);
    assert_non_null(strstr(out, "state      refused"));
    free(out);
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "refused");
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"agreement.refused\"",
                                   "\"reason\":\"not needed\"", NULL));
    assert_int_equal(send_file(&out, "g3-r", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT"));
    free(out);
    /* Refused is final: no accepting, refusing or terminating it afterwards. */
    assert_int_equal(agree(&out, &W.brain, "accept", id), 1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);
    assert_int_equal(agree(&out, &W.brain, "refuse", id), 1);
    free(out);
    assert_int_equal(agree(&out, &W.ent, "terminate", id), 1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);
}

static void terminated_agreement_refuses_next_transfer(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    agreed("g3-t", NULL, id, hash);
    assert_int_equal(send_file(&out, "g3-t", TAGS("general:3", "production.process"), NULL), 0);
    free(out);
    /* The enterprise (provider) ends it; the brain learns it at once. */
    char args[128];
    snprintf(args, sizeof args, "%s --reason 'contract ended'", id);
    assert_int_equal(agree(&out, &W.ent, "terminate", args), 0);
    assert_non_null(strstr(out, "state      terminated"));
    assert_null(strstr(out, "note"));
    free(out);
    list_state(&W.brain, id, st, used);
    assert_string_equal(st, "terminated");
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"agreement.terminated\"", id,
                                   "\"reason\":\"contract ended\"", NULL));
    assert_int_equal(send_file(&out, "g3-t", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_TERMINATED"));
    free(out);
    assert_int_equal(agree(&out, &W.brain, "terminate", id), 1);
    assert_non_null(strstr(out, "TDSX_E_STATE"));
    free(out);
}

static void expired_agreement_refused(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32], extra[64];
    /* A window already over is refused at the source. */
    snprintf(extra, sizeof extra, "--not-after %lld", (long long)time(NULL) - 10);
    char args[256];
    snprintf(args, sizeof args, "--dataset g3-old --purpose analytics --action receive %s", extra);
    assert_int_equal(propose(&W.ent, &W.brain, args, id, hash, &out), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_EXPIRED"));
    free(out);

    int64_t until = (int64_t)time(NULL) + 3;
    snprintf(extra, sizeof extra, "--not-after %lld", (long long)until);
    agreed("g3-e", extra, id, hash);
    while ((int64_t)time(NULL) <= until)
        usleep(100000);
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "expired");
    list_state(&W.brain, id, st, used);
    assert_string_equal(st, "expired");
    assert_int_equal(send_file(&out, "g3-e", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_EXPIRED"));
    free(out);
    /* An expired proposal can no longer be accepted either. */
    snprintf(extra, sizeof extra, "--not-after %lld", (long long)time(NULL) + 2);
    snprintf(args, sizeof args, "--dataset g3-late --purpose analytics --action receive %s", extra);
    assert_int_equal(propose(&W.ent, &W.brain, args, id, hash, &out), 0);
    free(out);
    sleep(3);
    assert_int_equal(agree(&out, &W.brain, "accept", id), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_EXPIRED"));
    free(out);
}

static void transfer_limit_is_kept(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    agreed("g3-l", "--days 1 --limit 1", id, hash);
    assert_int_equal(send_file(&out, "g3-l", TAGS("general:3", "production.process"), NULL), 0);
    free(out);
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"agreement.used\"", hash, NULL));
    list_state(&W.ent, id, st, used);
    assert_string_equal(st, "expired");
    assert_string_equal(used, "1/1");
    list_state(&W.brain, id, st, used);
    assert_string_equal(used, "1/1");
    assert_int_equal(send_file(&out, "g3-l", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_EXPIRED"));
    free(out);
}

/* A rule with `purpose CODE` only matches agreements with that purpose. */
static void purpose_must_match_the_rule(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65];
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset p2-m --purpose marketing --action receive --days 1", id,
                             hash, &out),
                     0);
    free(out);
    assert_int_equal(agree(&out, &W.brain, "accept", id), 0);
    free(out);
    assert_int_equal(send_file(&out, "p2-m", TAGS("general:2", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "state      refused"));
    assert_non_null(strstr(out, "under rule closed"));
    assert_non_null(strstr(out, "TDSX_E_POLICY_DENY"));
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset p2-r --purpose research --action receive --days 1", id,
                             hash, &out),
                     0);
    free(out);
    assert_int_equal(agree(&out, &W.brain, "accept", id), 0);
    free(out);
    assert_int_equal(send_file(&out, "p2-r", TAGS("general:2", "production.process"), W.receipt),
                     0);
    free(out);
    Tdsx__Nro *nro = NULL;
    Tdsx__Nrr *nrr = NULL;
    read_receipt(W.receipt, &nro, &nrr);
    assert_string_equal(nrr->policy_rule, "research-only");
    tdsx__nro__free_unpacked(nro, NULL);
    tdsx__nrr__free_unpacked(nrr, NULL);
}

static void bad_requests_are_refused(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65];
    /* A peer this node has no connection to. */
    assert_int_equal(agree(&out, &W.ent, "propose",
                           "--with 91350100M000100Y43/nobody --dataset x --purpose p "
                           "--action receive --days 1"),
                     2);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    free(out);
    /* Usage: no purpose, two subjects, no action, both --days and --not-after. */
    assert_int_equal(
        propose(&W.ent, &W.brain, "--dataset x --action receive --days 1", id, hash, &out), 2);
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset x --category production --purpose p --action receive "
                             "--days 1",
                             id, hash, &out),
                     2);
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain, "--dataset x --purpose p --days 1", id, hash, &out),
                     2);
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset x --purpose p --action receive --days 1 --not-after 9", id,
                             hash, &out),
                     2);
    free(out);
    /* Refused by the daemon: a malformed action, a category outside the grammar, a purpose
     * code with spaces. */
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset x --purpose p --action relay-to:nobody --days 1", id, hash,
                             &out),
                     2);
    assert_non_null(strstr(out, "TDSX_E_INVAL"));
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--category 'Production.X' --purpose p --action receive --days 1", id,
                             hash, &out),
                     2);
    assert_non_null(strstr(out, "TDSX_E_INVAL"));
    free(out);
    assert_int_equal(propose(&W.ent, &W.brain,
                             "--dataset x --purpose 'two words' --action receive --days 1", id,
                             hash, &out),
                     2);
    free(out);
    /* Unknown and malformed agreement ids. */
    assert_int_equal(agree(&out, &W.brain, "accept", "00112233445566778899aabbccddeeff"), 2);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    assert_non_null(strstr(out, "no agreement with this id"));
    free(out);
    assert_int_equal(agree(&out, &W.ent, "terminate", "00112233445566778899aabbccddeeff"), 2);
    assert_non_null(strstr(out, "TDSX_E_NOTFOUND"));
    free(out);
    assert_int_equal(agree(&out, &W.brain, "terminate", "xyz"), 2);
    free(out);
    /* None of that left anything behind on the brain. */
    assert_false(tdsx_test_log_wait(&W.brain, 100, "\"event\":\"agreement.proposed\"",
                                    "\"dataset\":\"x\"", NULL));
}

static int count_files(const tdsx_test_node_t *n, const char *sub)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", n->data, sub);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (strcmp(sub, "objects") == 0) {
            char inner[4096 + 300];
            snprintf(inner, sizeof inner, "%s/%s", sub, e->d_name);
            count += count_files(n, inner);
        } else {
            count++;
        }
    }
    closedir(d);
    return count;
}

/* Reads the background send's output file until it holds the exit line (or ~10 s pass). */
static char *wait_exit(const char *outfile)
{
    char *text = NULL;
    for (int i = 0; i < 200; i++) {
        uint8_t *b = NULL;
        size_t len = 0;
        free(text);
        text = NULL;
        if (tdsx_file_read(outfile, 1 << 20, &b, &len) == 0) {
            text = strdup((char *)b);
            tdsx_free(b);
            if (strstr(text, "exit "))
                break;
        }
        usleep(50000);
    }
    return text;
}

/* The brain ends the agreement while 100 MiB flow under it: both ends abort, nothing kept. */
static void termination_aborts_running_transfer(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65];
    agreed("g3-big", NULL, id, hash);
    char *outfile = tdsx_test_path(W.p.dir, "big-send.out");
    int objects = count_files(&W.brain, "objects");
    assert_int_equal(
        tdsx_test_run(&out,
                      "(tdsx send --socket '%s' --to %s '%s' --dataset g3-big "
                      "--tags '%s' > '%s' 2>&1; echo \"exit $?\" >> '%s') >/dev/null 2>&1 &",
                      W.ent.sock, W.brain.id, W.big, TAGS("general:3", "production.process"),
                      outfile, outfile),
        0);
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 20000, "\"event\":\"transfer.started\"",
                                   "\"dataset\":\"g3-big\"", NULL));
    assert_int_equal(count_files(&W.brain, "tmp"), 1); /* the part file is there */
    char args[128];
    snprintf(args, sizeof args, "%s --reason 'stop now'", id);
    assert_int_equal(agree(&out, &W.brain, "terminate", args), 0);
    free(out);
    /* The receiver decided again under the terminated agreement and refused. */
    assert_true(tdsx_test_log_wait(&W.brain, 5000, "\"event\":\"policy.refused\"",
                                   "\"dataset\":\"g3-big\"", "TDSX_E_AGREEMENT_TERMINATED", NULL));
    char *text = wait_exit(outfile);
    assert_non_null(text);
    assert_non_null(strstr(text, "exit 1"));
    assert_non_null(strstr(text, "TDSX_E_AGREEMENT_TERMINATED"));
    free(text);
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"transfer.aborted\"", NULL) ||
                tdsx_test_log_wait(&W.ent, 100, "\"event\":\"transfer.peer_abort\"", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"agreement.terminated\"", id, NULL));
    assert_int_equal(count_files(&W.brain, "objects"), objects);
    assert_int_equal(count_files(&W.brain, "tmp"), 0);
    free(outfile);
}

/* An agreement that expires while its transfer runs stops it at both ends. The receiver is
 * frozen (SIGSTOP) mid-transfer so the transfer is certainly still running when the agreement
 * lapses; the sender notices on its own, and the receiver drops its part once it runs again. */
static void expiry_aborts_running_transfer(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], extra[64];
    int64_t until = (int64_t)time(NULL) + 3;
    snprintf(extra, sizeof extra, "--not-after %lld", (long long)until);
    agreed("g3-exp", extra, id, hash);
    char *outfile = tdsx_test_path(W.p.dir, "exp-send.out");
    int objects = count_files(&W.brain, "objects");
    assert_int_equal(
        tdsx_test_run(&out,
                      "(tdsx send --socket '%s' --to %s '%s' --dataset g3-exp "
                      "--tags '%s' > '%s' 2>&1; echo \"exit $?\" >> '%s') >/dev/null 2>&1 &",
                      W.ent.sock, W.brain.id, W.big, TAGS("general:3", "production.process"),
                      outfile, outfile),
        0);
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 20000, "\"event\":\"transfer.started\"",
                                   "\"dataset\":\"g3-exp\"", NULL));
    assert_int_equal(kill(W.brain.pid, SIGSTOP), 0);
    assert_int_equal(count_files(&W.brain, "tmp"), 1); /* still receiving: not committed */
    while ((int64_t)time(NULL) <= until)
        usleep(100000);
    char *text = wait_exit(outfile);
    assert_int_equal(kill(W.brain.pid, SIGCONT), 0);
    assert_non_null(text);
    assert_non_null(strstr(text, "exit 1"));
    assert_non_null(strstr(text, "TDSX_E_AGREEMENT_EXPIRED"));
    free(text);
    /* The sender decided again on its own when the agreement lapsed. */
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"policy.refused\"",
                                   "\"dataset\":\"g3-exp\"", "TDSX_E_AGREEMENT_EXPIRED", NULL));
    /* The receiver, running again, drops what it had. */
    for (int i = 0; i < 100 && count_files(&W.brain, "tmp") != 0; i++)
        usleep(50000);
    assert_int_equal(count_files(&W.brain, "tmp"), 0);
    assert_int_equal(count_files(&W.brain, "objects"), objects);
    assert_true(tdsx_test_log_wait(&W.brain, 3000, "\"event\":\"transfer.aborted\"",
                                   "TDSX_E_AGREEMENT_EXPIRED", NULL));
    free(outfile);
}

/* A send interrupted by the receiver's crash and resumed later still runs under its agreement:
 * the resumed NRO names it, and both ends count the one transfer against its limit. */
static void resumed_transfer_counts_once(void **state)
{
    (void)state;
    char *out = NULL, id[33], hash[65], st[32], used[32];
    agreed("g3-res", "--days 1 --limit 1", id, hash);
    char *outfile = tdsx_test_path(W.p.dir, "res-send.out");
    assert_int_equal(
        tdsx_test_run(&out,
                      "(tdsx send --socket '%s' --to %s '%s' --dataset g3-res "
                      "--tags '%s' > '%s' 2>&1; echo \"exit $?\" >> '%s') >/dev/null 2>&1 &",
                      W.ent.sock, W.brain.id, W.big, TAGS("general:3", "production.process"),
                      outfile, outfile),
        0);
    free(out);
    assert_true(tdsx_test_log_wait(&W.brain, 20000, "\"event\":\"transfer.started\"",
                                   "\"dataset\":\"g3-res\"", NULL));
    assert_int_equal(kill(W.brain.pid, SIGKILL), 0);
    assert_int_equal(waitpid(W.brain.pid, NULL, 0), W.brain.pid);
    W.brain.pid = 0;
    char *text = wait_exit(outfile);
    assert_non_null(text);
    assert_non_null(strstr(text, "state      interrupted"));
    char tid[33] = "";
    const char *p = strstr(text, "transfer   ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "transfer   %32[0-9a-f]", tid), 1);
    free(text);

    tdsx_test_node_start(&W.brain);
    int rc = 2;
    for (int i = 0; i < 100; i++) {
        free(out);
        rc = tdsx_test_run(&out,
                           "tdsx send --socket '%s' --to %s '%s' --dataset g3-res --tags '%s' "
                           "--resume %s --receipt-out '%s' 2>&1",
                           W.ent.sock, W.brain.id, W.big, TAGS("general:3", "production.process"),
                           tid, W.receipt);
        /* Until the enterprise has redialled and has the brain's Hello: not ready (exit 2). */
        if (rc != 2)
            break;
        usleep(100000);
    }
    if (rc != 0)
        fprintf(stderr, "resume:\n%s\n", out ? out : "");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "state      receipted"));
    free(out);
    Tdsx__Nro *nro = NULL;
    Tdsx__Nrr *nrr = NULL;
    read_receipt(W.receipt, &nro, &nrr);
    char got[65];
    assert_int_equal(nro->agreement_hash.len, 32);
    tdsx_hex_encode(got, nro->agreement_hash.data, 32);
    assert_string_equal(got, hash);
    tdsx__nro__free_unpacked(nro, NULL);
    tdsx__nrr__free_unpacked(nrr, NULL);
    assert_true(tdsx_test_log_wait(&W.ent, 3000, "\"event\":\"agreement.used\"", hash, NULL));
    list_state(&W.ent, id, st, used);
    assert_string_equal(used, "1/1");
    list_state(&W.brain, id, st, used);
    assert_string_equal(used, "1/1");
    /* Used up at both ends: the next one is refused. */
    assert_int_equal(send_file(&out, "g3-res", TAGS("general:3", "production.process"), NULL), 1);
    assert_non_null(strstr(out, "TDSX_E_AGREEMENT_EXPIRED"));
    free(out);
    free(outfile);
}

int main(void)
{
    const struct CMUnitTest units[] = {
        cmocka_unit_test(terms_are_checked_field_by_field),
        cmocka_unit_test(acceptance_must_sign_identical_bytes),
        cmocka_unit_test(state_follows_window_limit_and_termination),
        cmocka_unit_test(actions_have_one_text_form),
        cmocka_unit_test(store_keeps_agreements_and_their_moves),
    };
    const struct CMUnitTest daemons[] = {
        cmocka_unit_test(provider_proposes_and_transfer_needs_it),
        cmocka_unit_test(consumer_proposes_by_category),
        cmocka_unit_test(refused_proposal_allows_nothing),
        cmocka_unit_test(terminated_agreement_refuses_next_transfer),
        cmocka_unit_test(expired_agreement_refused),
        cmocka_unit_test(transfer_limit_is_kept),
        cmocka_unit_test(purpose_must_match_the_rule),
        cmocka_unit_test(bad_requests_are_refused),
        cmocka_unit_test(expiry_aborts_running_transfer),
        cmocka_unit_test(termination_aborts_running_transfer),
        cmocka_unit_test(resumed_transfer_counts_once),
    };
    int failed = cmocka_run_group_tests_name("agree.units", units, NULL, NULL);
    return failed + cmocka_run_group_tests_name("agree.daemons", daemons, setup, teardown);
}
