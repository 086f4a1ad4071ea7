/*
 * The signed trust bundle (SPEC §3): make, sign and verify without sockets (a round trip, a
 * foreign signer, a non-centre signer, a certificate swapped under a valid signature, every
 * single-byte tampering, a signer revoked by its own CRLs, bad inputs), then real daemons
 * loading a bundle_file and re-reading it on SIGHUP: wrong signer, non-centre signer, tampered
 * byte, older serial and expired bundles refused with the bundle in force kept; a peer revoked
 * in a new bundle closed at once and refused at its next handshake while other peers stay;
 * an expired bundle stopping every exchange (connections, new handshakes, `tdsx send`) with a
 * clear `tdsx status`, until a fresh bundle is applied.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bundle.h"
#include "trust.pb-c.h"

#define TAGS                                                                                       \
    "grade=general:2 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"

static struct {
    tdsx_test_province_t p;
    tdsx_test_node_t centre, centre2, foreign, ent, brain, other;
    char *bundle_file; /* ent's bundle_file */
    char *payload;
    uint8_t *anchor; /* the province root, PEM */
    size_t anchor_len;
    uint32_t floor;       /* policy floor version of the bundles make() builds */
    const char *registry; /* the registry make() reads (NULL: the province's) */
    tdsx_buf_t leaked;    /* serial 1000 signed by centre2 before its key was revoked */
} W;

/* ---- helpers ---------------------------------------------------------------------------- */

static void read_all(const char *path, uint8_t **p, size_t *n)
{
    assert_int_equal(tdsx_file_read(path, TDSX_BUNDLE_FILE_CAP, p, n), 0);
}

/* The unsigned bundle of the province registry: serial, issued_at (0: now), valid seconds. */
static void make(uint64_t serial, int64_t issued, int64_t valid, tdsx_buf_t *out)
{
    const char *creds[] = {W.centre.creds, W.ent.creds, W.brain.creds};
    tdsx_bundle_make_opts_t o = {0};
    char what[512];
    o.ca_dir = W.p.ca;
    o.registry = W.registry ? W.registry : W.p.registry;
    o.creds = creds;
    o.n_creds = 3;
    o.witness = W.centre.id;
    o.serial = serial;
    o.issued_at = issued;
    o.valid = valid;
    o.policy_floor = W.floor;
    tdsx_buf_init(out, TDSX_STATEMENT_MAX);
    int rc = tdsx__bundle_make(&o, out, what, sizeof what);
    if (rc)
        fail_msg("bundle make: %s: %s", what, tdsx_err_name(rc));
}

/* make + sign by `signer` (credential directory). */
static void make_signed(uint64_t serial, int64_t issued, int64_t valid, const char *signer,
                        tdsx_buf_t *out)
{
    tdsx_buf_t u;
    make(serial, issued, valid, &u);
    tdsx_buf_init(out, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), signer, out), 0);
    tdsx_buf_free(&u);
}

typedef struct {
    int status;
    tdsx_buf_t env;
} signed_t;

static void on_signed(void *ud, int status, tdsx_bytes_t env)
{
    signed_t *s = ud;
    s->status = status ? status : tdsx_buf_append(&s->env, env.p, env.n);
}

/* What `tdsx bundle sign` refuses to do: a SignedBundle signed by any member's sign key. */
static void forge(const char *creds, tdsx_bytes_t unsigned_bundle, tdsx_buf_t *out)
{
    char *key = tdsx_test_path(creds, TDSX_CRED_SIGN_KEY);
    char *pem = tdsx_test_path(creds, TDSX_CRED_SIGN_CERT);
    uint8_t seed[32];
    tdsx_signer_t *s = NULL;
    signed_t r = {-1, {NULL, 0, 0, 0}};
    tdsx_buf_init(&r.env, TDSX_ENVELOPE_MAX);
    assert_int_equal(tdsx_key_load_ed25519(key, seed), 0);
    assert_int_equal(tdsx_signer_new(seed, NULL, &s), 0);
    assert_int_equal(tdsx_signer_submit(s, tdsx_statement_type(TDSX_STATEMENT_TRUST_BUNDLE),
                                        unsigned_bundle, on_signed, &r),
                     0);
    assert_int_equal(tdsx_signer_flush(s), 0);
    assert_int_equal(r.status, 0);
    /* The member's sign certificate, then the intermediate, as `tdsx bundle sign` writes. */
    STACK_OF(X509) *sk = NULL;
    char *chain = tdsx_test_path(creds, TDSX_CRED_CHAIN);
    assert_int_equal(tdsx_cert_load_file(pem, &sk), 0);
    STACK_OF(X509) *ch = NULL;
    assert_int_equal(tdsx_cert_load_file(chain, &ch), 0);
    unsigned char *der[2] = {NULL, NULL};
    ProtobufCBinaryData cert[2];
    for (int i = 0; i < 2; i++) {
        int der_len = i2d_X509(sk_X509_value(i ? ch : sk, 0), &der[i]);
        assert_true(der_len > 0);
        cert[i] = (ProtobufCBinaryData){(size_t)der_len, der[i]};
    }
    Tdsx__SignedBundle sb = TDSX__SIGNED_BUNDLE__INIT;
    sb.envelope = (ProtobufCBinaryData){r.env.len, r.env.p};
    sb.n_signer_certs = 2;
    sb.signer_certs = cert;
    size_t len = tdsx__signed_bundle__get_packed_size(&sb);
    uint8_t *packed = malloc(len);
    assert_non_null(packed);
    tdsx__signed_bundle__pack(&sb, packed);
    tdsx_buf_init(out, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx_buf_append(out, packed, len), 0);
    free(packed);
    OPENSSL_free(der[0]);
    OPENSSL_free(der[1]);
    sk_X509_pop_free(sk, X509_free);
    sk_X509_pop_free(ch, X509_free);
    free(chain);
    tdsx_signer_free(s);
    tdsx_buf_free(&r.env);
    free(key);
    free(pem);
}

static int verify(tdsx_bytes_t file, tdsx_bundle_t **b)
{
    return tdsx__bundle_verify(file, tdsx_bytes(W.anchor, W.anchor_len), tdsx_bytes(NULL, 0), 0, b);
}

static void revoke_cert(const tdsx_test_node_t *n, const char *file)
{
    tdsx_ca_t *ca = NULL;
    STACK_OF(X509) *sk = NULL;
    char *path = tdsx_test_path(n->creds, file);
    assert_int_equal(tdsx_ca_open(W.p.ca, &ca), 0);
    assert_int_equal(tdsx_cert_load_file(path, &sk), 0);
    assert_int_equal(tdsx_ca_revoke(ca, sk_X509_value(sk, 0)), 0);
    sk_X509_pop_free(sk, X509_free);
    tdsx_ca_free(ca);
    free(path);
}

/* Puts a bundle in ent's bundle_file and sends SIGHUP. */
static void hup_with(tdsx_bytes_t file)
{
    tdsx_test_write_file(W.bundle_file, file.p, file.n);
    assert_int_equal(kill(W.ent.pid, SIGHUP), 0);
}

/* Runs a command line (stderr folded in); returns its output (never NULL), *status its exit. */
static char *run(int *status, const char *fmt, ...) TDSX_PRINTF(2, 3);
static char *run(int *status, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL, *out = NULL;
    va_start(ap, fmt);
    assert_true(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    int rc = tdsx_test_run(&out, "%s 2>&1", cmd);
    free(cmd);
    if (status)
        *status = rc;
    if (!out)
        out = strdup("");
    assert_non_null(out);
    return out;
}

static char *status_of(const tdsx_test_node_t *n)
{
    int rc;
    char *out = run(&rc, "tdsx status --socket '%s'", n->sock);
    assert_int_equal(rc, 0);
    return out;
}

/* ---- setup ------------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    tdsx_test_province_t *p = &W.p;
    char extra[4096];
    tdsx_test_province_init(p);
    W.floor = TDSX_BUNDLE_FLOOR_VERSION;
    tdsx_test_node_issue(p, &W.centre, "centre", TDSX_ROLE_CENTRE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.ent, "ent", TDSX_ROLE_ENTERPRISE, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.brain, "brain", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    tdsx_test_node_issue(p, &W.other, "other", TDSX_ROLE_BRAIN, 0, 0, 1, 0);
    /* A second centre, not in the registry; and a centre of another CA altogether. */
    tdsx_test_node_issue(p, &W.centre2, "centre2", TDSX_ROLE_CENTRE, 0, 0, 0, 0);
    tdsx_test_node_issue(p, &W.foreign, "fcentre", TDSX_ROLE_CENTRE, 0, 0, 0, 1);
    char *root = tdsx_test_path(p->ca, TDSX_CA_ROOT_CERT);
    read_all(root, &W.anchor, &W.anchor_len);
    free(root);
    W.bundle_file = tdsx_test_path(p->dir, "ent-bundle.tdsx");
    W.payload = tdsx_test_path(p->dir, "payload.csv");
    tdsx_test_write_file(W.payload, "日期,产量\n2026-11-01,1200\n", 30);
    tdsx_buf_t b;
    make_signed(10, 0, 3600, W.centre.creds, &b);
    tdsx_test_write_file(W.bundle_file, b.p, b.len);
    tdsx_buf_free(&b);
    /* Only the enterprise runs on the bundle; brain and other keep the registry file. */
    snprintf(extra, sizeof extra, "bundle_file %s\npeer %s 127.0.0.1:%d\npeer %s 127.0.0.1:%d\n",
             W.bundle_file, W.brain.id, W.brain.port, W.other.id, W.other.port);
    tdsx_test_node_config(p, &W.ent, extra);
    tdsx_test_node_config(p, &W.brain, NULL);
    tdsx_test_node_config(p, &W.other, NULL);
    tdsx_test_node_start(&W.brain);
    tdsx_test_node_start(&W.other);
    tdsx_test_node_start(&W.ent);
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.brain.id, NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"conn.open\"", W.other.id, NULL));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdsx_test_node_free(&W.ent);
    tdsx_test_node_free(&W.brain);
    tdsx_test_node_free(&W.other);
    tdsx_test_node_free(&W.centre);
    tdsx_test_node_free(&W.centre2);
    tdsx_test_node_free(&W.foreign);
    tdsx_buf_free(&W.leaked);
    free(W.bundle_file);
    free(W.payload);
    free(W.anchor);
    tdsx_test_province_free(&W.p);
    return 0;
}

/* ---- no sockets ------------------------------------------------------------------------- */

static void round_trip(void **state)
{
    (void)state;
    tdsx_buf_t f;
    tdsx_bundle_t *b = NULL;
    tdsx_bundle_info_t info;
    int64_t now = tdsx_now();
    make_signed(7, now, 600, W.centre.creds, &f);
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), 0);
    tdsx__bundle_info(b, &info);
    assert_int_equal(info.serial, 7);
    assert_int_equal(info.issued_at, now);
    assert_int_equal(info.expires_at, now + 600);
    assert_int_equal(info.policy_floor, TDSX_BUNDLE_FLOOR_VERSION);
    assert_int_equal(info.n_members, 4); /* centre, ent, brain, other */
    assert_int_equal(info.n_roots, 1);
    assert_int_equal(info.n_intermediates, 1);
    assert_int_equal(info.n_crls, 2); /* the root's and the intermediate's */
    assert_int_equal(info.n_log_keys, 3);
    assert_int_equal(info.n_witness_keys, 1);
    assert_int_equal(info.verified, 1);
    assert_string_equal(info.signer, W.centre.id);
    /* The registry it carries is the province's: same fingerprints, roles, endpoints. */
    tdsx_registry_t *file = NULL, *reg = NULL;
    assert_int_equal(tdsx_registry_load(W.p.registry, &file, NULL), 0);
    assert_int_equal(tdsx__bundle_registry(b, &reg, NULL), 0);
    assert_int_equal(tdsx_registry_count(reg), tdsx_registry_count(file));
    for (size_t i = 0; i < tdsx_registry_count(file); i++) {
        const tdsx_member_t *a = tdsx_registry_at(file, i);
        const tdsx_member_t *m = tdsx_registry_find(reg, a->id);
        assert_non_null(m);
        assert_int_equal(m->role, a->role);
        assert_int_equal(m->port, a->port);
        assert_memory_equal(m->auth_fp, a->auth_fp, 32);
        assert_memory_equal(m->sign_fp, a->sign_fp, 32);
        assert_memory_equal(m->enc_pub, a->enc_pub, 32);
    }
    /* The witness key is the centre's sign key; organisation names come from the creds. */
    const Tdsx__TrustBundle *tb = tdsx__bundle_msg(b);
    tdsx_identity_t cid;
    char *pem = tdsx_test_path(W.centre.creds, TDSX_CRED_SIGN_CERT);
    uint8_t *pp = NULL;
    size_t pn = 0;
    read_all(pem, &pp, &pn);
    tdsx_trust_t *t = NULL;
    assert_int_equal(tdsx_trust_new(&t), 0);
    assert_int_equal(tdsx_trust_add_anchors_pem(t, W.anchor, W.anchor_len), 0);
    char *chain = tdsx_test_path(W.centre.creds, TDSX_CRED_CHAIN);
    uint8_t *cp = NULL;
    size_t cn = 0;
    read_all(chain, &cp, &cn);
    assert_int_equal(tdsx_trust_add_intermediates_pem(t, cp, cn), 0);
    free(cp);
    free(chain);
    tdsx_verify_opts_t vo = {TDSX_PURPOSE_SIGN, TDSX_ROLE_CENTRE, 0, 0};
    assert_int_equal(tdsx_cert_verify_pem(t, pp, pn, &vo, &cid), 0);
    assert_memory_equal(tb->witness_keys[0].data, cid.pubkey, 32);
    for (size_t i = 0; i < tb->n_members; i++)
        if (strcmp(tb->members[i]->node, "centre") == 0)
            assert_string_equal(tb->members[i]->org, cid.org);
    /* Its text form names the serial and every member; an unanchored decode says so. */
    tdsx_buf_t text;
    tdsx_buf_init(&text, 1 << 20);
    assert_int_equal(tdsx__bundle_format(b, now, &text), 0);
    assert_int_equal(tdsx_buf_append(&text, "", 1), 0);
    assert_non_null(strstr((char *)text.p, "serial        7\n"));
    assert_non_null(strstr((char *)text.p, W.other.id));
    assert_null(strstr((char *)text.p, "EXPIRED"));
    tdsx__bundle_free(b);
    b = NULL;
    assert_int_equal(tdsx__bundle_decode(tdsx_buf_bytes(&f), &b), 0);
    tdsx__bundle_info(b, &info);
    assert_int_equal(info.verified, 0);
    tdsx_buf_reset(&text);
    assert_int_equal(tdsx__bundle_format(b, now + 600, &text), 0);
    assert_int_equal(tdsx_buf_append(&text, "", 1), 0);
    assert_non_null(strstr((char *)text.p, "(EXPIRED)"));
    assert_non_null(strstr((char *)text.p, "verified      NO"));
    tdsx__bundle_free(b);
    tdsx_buf_free(&text);
    tdsx_trust_free(t);
    free(pp);
    free(pem);
    tdsx_registry_free(reg);
    tdsx_registry_free(file);
    tdsx_buf_free(&f);
}

static void wrong_signers_refused(void **state)
{
    (void)state;
    tdsx_buf_t u, f;
    tdsx_bundle_t *b = NULL;
    make(8, 0, 600, &u);
    /* A centre of another CA: signs fine at home, chains to nothing here. */
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.foreign.creds, &f), 0);
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), TDSX_E_CERT_UNTRUSTED);
    assert_null(b);
    tdsx_buf_free(&f);
    /* `tdsx bundle sign` refuses a member that is not a centre... */
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.ent.creds, &f), TDSX_E_CERT_ROLE);
    assert_int_equal(f.len, 0);
    tdsx_buf_free(&f);
    /* ...and a node refuses one such member forged by hand. */
    forge(W.ent.creds, tdsx_buf_bytes(&u), &f);
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), TDSX_E_CERT_ROLE);
    tdsx_buf_free(&f);
    /* A valid centre certificate put in front of another centre's signature. */
    tdsx_buf_t g;
    make_signed(8, 0, 600, W.centre.creds, &g);
    forge(W.centre2.creds, tdsx_buf_bytes(&u), &f);
    tdsx_arena_t *a = NULL;
    Tdsx__SignedBundle *sg = NULL, *sf = NULL;
    assert_int_equal(tdsx_arena_new(1 << 24, &a), 0);
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__signed_bundle__descriptor, tdsx_buf_bytes(&g),
                                       (ProtobufCMessage **)&sg),
                     0);
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__signed_bundle__descriptor, tdsx_buf_bytes(&f),
                                       (ProtobufCMessage **)&sf),
                     0);
    sf->signer_certs[0] = sg->signer_certs[0]; /* centre's cert, centre2's signature */
    uint8_t swapped[8192];
    size_t n = tdsx__signed_bundle__get_packed_size(sf);
    assert_true(n <= sizeof swapped);
    tdsx__signed_bundle__pack(sf, swapped);
    assert_int_equal(verify(tdsx_bytes(swapped, n), &b), TDSX_E_SIGNER_UNKNOWN);
    /* centre2 is a real centre of this CA: its own signed bundle verifies. */
    tdsx_buf_free(&f);
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.centre2.creds, &f), 0);
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), 0);
    tdsx__bundle_free(b);
    tdsx_arena_free(a);
    tdsx_buf_free(&f);
    tdsx_buf_free(&g);
    tdsx_buf_free(&u);
}

static void revoked_signer_cannot_outrun_the_bundle_in_force(void **state)
{
    (void)state;
    tdsx_buf_t u, good, next;
    tdsx_bundle_t *in_force = NULL, *b = NULL;
    /* centre2's sign key leaks; whoever holds it keeps a bundle made before the revocation,
     * whose CRLs therefore leave centre2 out, with a serial far ahead. */
    make(1000, 0, 3600, &u);
    tdsx_buf_init(&W.leaked, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.centre2.creds, &W.leaked), 0);
    tdsx_buf_free(&u);
    revoke_cert(&W.centre2, TDSX_CRED_SIGN_CERT);
    /* The centre's next bundle carries the CRL that lists centre2's sign certificate. */
    make_signed(40, 0, 600, W.centre.creds, &good);
    assert_int_equal(verify(tdsx_buf_bytes(&good), &in_force), 0);
    /* Alone, the leaked bundle verifies (its own CRLs do not revoke its signer)... */
    assert_int_equal(verify(tdsx_buf_bytes(&W.leaked), &b), 0);
    assert_int_equal(tdsx__bundle_check_signer(b, NULL), 0);
    /* ...but not over the bundle in force. */
    assert_int_equal(tdsx__bundle_check_signer(b, in_force), TDSX_E_CERT_REVOKED);
    tdsx__bundle_free(b);
    b = NULL;
    /* The centre's own next bundle does pass over it. */
    make_signed(41, 0, 600, W.centre.creds, &next);
    assert_int_equal(verify(tdsx_buf_bytes(&next), &b), 0);
    assert_int_equal(tdsx__bundle_check_signer(b, in_force), 0);
    tdsx__bundle_free(b);
    b = NULL;
    /* A bundle centre2 signs now carries the new CRL: refused on its own already. */
    make(42, 0, 600, &u);
    tdsx_buf_t late;
    tdsx_buf_init(&late, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.centre2.creds, &late), 0);
    assert_int_equal(verify(tdsx_buf_bytes(&late), &b), TDSX_E_CERT_REVOKED);
    assert_null(b);
    tdsx_buf_free(&late);
    tdsx_buf_free(&u);
    tdsx__bundle_free(in_force);
    tdsx_buf_free(&good);
    tdsx_buf_free(&next);
}

static void every_tampered_byte_refused(void **state)
{
    (void)state;
    tdsx_buf_t f;
    tdsx_bundle_t *b = NULL;
    make_signed(9, 0, 600, W.centre.creds, &f);
    size_t refused = 0;
    for (size_t i = 0; i < f.len; i++) {
        f.p[i] ^= 0x01;
        int rc = verify(tdsx_buf_bytes(&f), &b);
        if (rc == 0) {
            tdsx__bundle_free(b);
            b = NULL;
            fail_msg("a bundle with byte %zu of %zu flipped was accepted", i, f.len);
        }
        refused++;
        f.p[i] ^= 0x01;
    }
    assert_int_equal(refused, f.len);
    /* Truncated anywhere, or with a byte appended: refused too. */
    for (size_t n = 0; n < f.len; n += 97)
        assert_int_not_equal(verify(tdsx_bytes(f.p, n), &b), 0);
    assert_int_equal(tdsx_buf_append(&f, "\x00", 1), 0);
    assert_int_not_equal(verify(tdsx_buf_bytes(&f), &b), 0);
    f.len--;
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), 0); /* and intact it still verifies */
    tdsx__bundle_free(b);
    tdsx_buf_free(&f);
}

static void bad_inputs_refused(void **state)
{
    (void)state;
    tdsx_buf_t out;
    tdsx_bundle_t *b = NULL;
    char what[512];
    const char *stray[] = {W.foreign.creds};
    tdsx_bundle_make_opts_t o = {0};
    tdsx_buf_init(&out, TDSX_STATEMENT_MAX);
    o.ca_dir = W.p.ca;
    o.registry = W.p.registry;
    assert_int_equal(tdsx__bundle_make(&o, &out, what, sizeof what), TDSX_E_INVAL); /* serial 0 */
    o.serial = 1;
    o.witness = W.centre.id; /* no creds for the witness */
    assert_int_equal(tdsx__bundle_make(&o, &out, what, sizeof what), TDSX_E_INVAL);
    assert_non_null(strstr(what, "witness"));
    o.witness = NULL;
    o.creds = stray; /* not a member of this registry: another CA's */
    o.n_creds = 1;
    assert_int_not_equal(tdsx__bundle_make(&o, &out, what, sizeof what), 0);
    assert_string_equal(what, W.foreign.creds);
    o.creds = NULL;
    o.n_creds = 0;
    o.registry = W.payload; /* not a registry */
    assert_int_equal(tdsx__bundle_make(&o, &out, what, sizeof what), TDSX_E_CONFIG);
    assert_int_equal(out.len, 0);
    /* Signing something that is not a TrustBundle, or an expired-at-birth one. */
    assert_int_equal(tdsx__bundle_sign(tdsx_bytes("\x0a\x03", 2), W.centre.creds, &out),
                     TDSX_E_BUNDLE);
    Tdsx__TrustBundle tb = TDSX__TRUST_BUNDLE__INIT;
    uint8_t raw[64];
    tb.serial = 5;
    tb.issued_at = 100;
    tb.expires_at = 100;
    size_t n = tdsx__trust_bundle__pack(&tb, raw);
    assert_int_equal(tdsx__bundle_sign(tdsx_bytes(raw, n), W.centre.creds, &out), TDSX_E_BUNDLE);
    /* Verifying garbage, an empty file, or with an anchor that is no certificate. */
    assert_int_equal(verify(tdsx_bytes("garbage!", 8), &b), TDSX_E_BUNDLE);
    assert_int_equal(verify(tdsx_bytes(NULL, 0), &b), TDSX_E_BUNDLE);
    tdsx_buf_t f;
    make_signed(3, 0, 600, W.centre.creds, &f);
    assert_int_equal(
        tdsx__bundle_verify(tdsx_buf_bytes(&f), tdsx_bytes("x", 1), tdsx_bytes(NULL, 0), 0, &b),
        TDSX_E_CERT_PARSE);
    /* A bundle whose signer certificate has expired at the verification time. */
    assert_int_equal(tdsx__bundle_verify(tdsx_buf_bytes(&f), tdsx_bytes(W.anchor, W.anchor_len),
                                         tdsx_bytes(NULL, 0), tdsx_now() + 400 * 86400, &b),
                     TDSX_E_CERT_EXPIRED);
    assert_null(b);
    tdsx_buf_free(&f);
    tdsx_buf_free(&out);
}

/* Signs `tb` with the real centre's key, bypassing the shape check of `tdsx bundle sign`, and
 * verifies it. */
static int signed_variant(const Tdsx__TrustBundle *tb)
{
    size_t n = tdsx__trust_bundle__get_packed_size(tb);
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    tdsx__trust_bundle__pack(tb, raw);
    tdsx_buf_t f;
    tdsx_bundle_t *b = NULL;
    forge(W.centre.creds, tdsx_bytes(raw, n), &f);
    int rc = verify(tdsx_buf_bytes(&f), &b);
    tdsx__bundle_free(b);
    tdsx_buf_free(&f);
    free(raw);
    return rc;
}

/* Correctly signed by the centre, but wrong inside: every one refused as TDSX_E_BUNDLE. */
static void bad_contents_refused(void **state)
{
    (void)state;
    tdsx_buf_t u;
    tdsx_arena_t *a = NULL;
    Tdsx__TrustBundle *tb = NULL;
    make(6, 0, 600, &u);
    assert_int_equal(tdsx_arena_new(1 << 24, &a), 0);
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__trust_bundle__descriptor, tdsx_buf_bytes(&u),
                                       (ProtobufCMessage **)&tb),
                     0);
    assert_int_equal(signed_variant(tb), 0); /* as made, it is fine */

    char *org = tb->members[1]->org;
    tb->members[1]->org = "某企业\x1b[2J"; /* a terminal escape for `tdsx bundle show` */
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    size_t n = tdsx__trust_bundle__get_packed_size(tb);
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    tdsx__trust_bundle__pack(tb, raw);
    tdsx_buf_t f;
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_bytes(raw, n), W.centre.creds, &f), TDSX_E_BUNDLE);
    assert_int_equal(f.len, 0); /* the centre's own tool refuses to sign it */
    tdsx_buf_free(&f);
    free(raw);
    tb->members[1]->org = org;

    Tdsx__Member *second = tb->members[1];
    tb->members[1] = tb->members[0]; /* the same member twice */
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->members[1] = second;

    tb->members[0]->auth_fingerprint.len = 31;
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->members[0]->auth_fingerprint.len = 32;

    Tdsx__Role role = tb->members[0]->role;
    tb->members[0]->role = TDSX__ROLE__ROLE_UNSPECIFIED;
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->members[0]->role = role;

    char *endpoint = tb->members[0]->endpoint;
    tb->members[0]->endpoint = "127.0.0.1:0";
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->members[0]->endpoint = endpoint;

    tb->log_keys[0].len = 31;
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->log_keys[0].len = 32;

    tb->crls[0].len -= 1; /* a CRL cut short */
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->crls[0].len += 1;

    size_t roots = tb->n_root_certs;
    tb->n_root_certs = 0;
    assert_int_equal(signed_variant(tb), TDSX_E_BUNDLE);
    tb->n_root_certs = roots;

    assert_int_equal(signed_variant(tb), 0); /* every change undone: fine again */
    tdsx_arena_free(a);
    tdsx_buf_free(&u);
}

/* Every allocation of verification failing in turn: a clean TDSX_E_NOMEM, nothing half made
 * (and nothing leaked: the sanitizer checks at exit). */
static void verify_survives_allocation_failures(void **state)
{
    (void)state;
    tdsx_buf_t f;
    tdsx_bundle_t *b = NULL;
    make_signed(5, 0, 600, W.centre.creds, &f);
    tdsx_test_alloc_fail_after(0);
    assert_int_equal(verify(tdsx_buf_bytes(&f), &b), 0);
    unsigned long needed = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    tdsx__bundle_free(b);
    assert_true(needed >= 5);
    for (unsigned long n = 1; n <= needed; n++) {
        b = NULL;
        tdsx_test_alloc_fail_after(n);
        int rc = verify(tdsx_buf_bytes(&f), &b);
        tdsx_test_alloc_reset();
        if (rc != TDSX_E_NOMEM)
            fail_msg("allocation %lu of %lu failing: %s", n, needed, tdsx_err_name(rc));
        assert_null(b);
    }
    tdsx_buf_free(&f);
}

/* ---- real daemons ----------------------------------------------------------------------- */

static void status_shows_bundle(void **state)
{
    (void)state;
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.loaded\"", "\"serial\":10",
                                   "\"state\":\"valid\"", NULL));
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           10 valid\n"));
    assert_non_null(strstr(out, "bundle expires"));
    free(out);
    out = status_of(&W.brain); /* a node on its registry file has none */
    assert_non_null(strstr(out, "bundle           none\n"));
    free(out);
    /* The applied bundle is kept in data_dir, owner-only. */
    char *cur = tdsx_test_path(W.ent.data, TDSX_BUNDLE_CURRENT);
    struct stat st;
    assert_int_equal(stat(cur, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(cur);
}

/* Each refused bundle: the refusal is logged with its code, and the one in force stays. */
static void refused_on_sighup(tdsx_bytes_t file, const char *code)
{
    int before = tdsx_test_log_count(&W.ent, "\"event\":\"bundle.refused\"", code, NULL);
    hup_with(file);
    for (int i = 0; i < 100 && tdsx_test_log_count(&W.ent, "\"event\":\"bundle.refused\"", code,
                                                   NULL) == before;
         i++)
        usleep(50 * 1000);
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"event\":\"bundle.refused\"", code, NULL),
                     before + 1);
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           10 valid\n"));
    free(out);
}

static void bad_bundles_refused_by_daemon(void **state)
{
    (void)state;
    tdsx_buf_t u, f;
    make(11, 0, 3600, &u);
    /* Signed by the wrong key: another CA's centre. */
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.foreign.creds, &f), 0);
    refused_on_sighup(tdsx_buf_bytes(&f), "TDSX_E_CERT_UNTRUSTED");
    tdsx_buf_free(&f);
    /* Signed by a member that is not a centre. */
    forge(W.ent.creds, tdsx_buf_bytes(&u), &f);
    refused_on_sighup(tdsx_buf_bytes(&f), "TDSX_E_CERT_ROLE");
    tdsx_buf_free(&f);
    /* A valid one with one byte of its payload changed. */
    tdsx_buf_init(&f, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), W.centre.creds, &f), 0);
    f.p[f.len / 4] ^= 0x20;
    refused_on_sighup(tdsx_buf_bytes(&f), "\"err\":\"TDSX_E_");
    tdsx_buf_free(&f);
    /* An older serial than the one in force. */
    make_signed(9, 0, 3600, W.centre.creds, &f);
    refused_on_sighup(tdsx_buf_bytes(&f), "TDSX_E_BUNDLE_ROLLBACK");
    tdsx_buf_free(&f);
    /* A newer serial that has already expired. */
    make_signed(12, tdsx_now() - 7200, 3600, W.centre.creds, &f);
    refused_on_sighup(tdsx_buf_bytes(&f), "TDSX_E_BUNDLE_EXPIRED");
    tdsx_buf_free(&f);
    /* A missing bundle_file. */
    unlink(W.bundle_file);
    assert_int_equal(kill(W.ent.pid, SIGHUP), 0);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.refused\"", "TDSX_E_NOTFOUND", NULL));
    /* None of it touched the connections. */
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"event\":\"bundle.peer_closed\"", NULL), 0);
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"event\":\"conn.close\"", NULL), 0);
    tdsx_buf_free(&u);
}

static void revoked_peer_closed_and_refused(void **state)
{
    (void)state;
    revoke_cert(&W.brain, TDSX_CRED_AUTH_CERT);
    tdsx_buf_t f;
    make_signed(20, 0, 3600, W.centre.creds, &f);
    hup_with(tdsx_buf_bytes(&f));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.applied\"", "\"serial\":20",
                                   "\"previous\":10", NULL));
    /* The live connection to the revoked brain is closed at once, with the reason... */
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.peer_closed\"", W.brain.id,
                                   "TDSX_E_CERT_REVOKED", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.close\"", W.brain.id,
                                   "TDSX_E_CERT_REVOKED", NULL));
    /* ...and its next handshakes are refused: ent's own redial... */
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"",
                                   "TDSX_E_CERT_REVOKED", "\"dir\":\"out\"", NULL));
    /* ...and the brain dialling in. */
    tdsx_test_client_t c;
    /* TLS 1.3: the client is done before the server judges its certificate; then the server's
     * alert ends it. */
    if (tdsx_test_client_open(&c, &W.p, W.brain.creds, W.ent.port) == 0)
        assert_true(tdsx_test_client_closed(&c, 5000));
    tdsx_test_client_free(&c);
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"",
                                   "TDSX_E_CERT_REVOKED", "\"dir\":\"in\"", NULL));
    /* The other peer was not touched. */
    assert_int_equal(tdsx_test_log_count(&W.ent, "\"event\":\"conn.close\"", W.other.id, NULL), 0);
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           20 valid\n"));
    assert_non_null(strstr(out, W.other.id));
    free(out);
    int rc;
    out = run(&rc, "tdsx send --socket '%s' --to '%s' '%s' --dataset d1 --tags '%s'", W.ent.sock,
              W.other.id, W.payload, TAGS);
    if (rc != 0)
        fail_msg("send: exit %d: %s", rc, out);
    free(out);
    tdsx_buf_free(&f);
}

static void revoked_centre_key_refused_by_daemon(void **state)
{
    (void)state;
    /* Serial 20 in force lists centre2's sign key as revoked: the bundle signed with it
     * before the revocation is refused, whatever its serial, and 20 stays in force. */
    assert_true(W.leaked.len > 0);
    int before =
        tdsx_test_log_count(&W.ent, "\"event\":\"bundle.refused\"", "TDSX_E_CERT_REVOKED", NULL);
    hup_with(tdsx_buf_bytes(&W.leaked));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.refused\"",
                                   "TDSX_E_CERT_REVOKED", "\"serial\":1000", NULL));
    assert_int_equal(
        tdsx_test_log_count(&W.ent, "\"event\":\"bundle.refused\"", "TDSX_E_CERT_REVOKED", NULL),
        before + 1);
    assert_int_equal(
        tdsx_test_log_count(&W.ent, "\"event\":\"bundle.applied\"", "\"serial\":1000", NULL), 0);
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           20 valid\n"));
    free(out);
}

static void expired_bundle_stops_exchange(void **state)
{
    (void)state;
    tdsx_buf_t f;
    /* Valid for a few seconds from now: applied, then expires under the running node. */
    make_signed(30, 0, 4, W.centre.creds, &f);
    hup_with(tdsx_buf_bytes(&f));
    tdsx_buf_free(&f);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.applied\"", "\"serial\":30", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 10000, "\"event\":\"bundle.expired\"", "\"serial\":30",
                                   "exchange stopped", NULL));
    /* The open connection is closed with the reason... */
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.close\"", W.other.id,
                                   "TDSX_E_BUNDLE_EXPIRED", NULL));
    /* ...status says why... */
    char *out = status_of(&W.ent);
    assert_non_null(
        strstr(out, "bundle           30 EXPIRED: exchange stopped until a fresh bundle"));
    free(out);
    /* ...transfers are refused... */
    int rc;
    out = run(&rc, "tdsx send --socket '%s' --to '%s' '%s' --dataset d1 --tags '%s'", W.ent.sock,
              W.other.id, W.payload, TAGS);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "TDSX_E_BUNDLE_EXPIRED"));
    free(out);
    /* ...and new connections too, both ways. */
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"", W.other.id,
                                   "TDSX_E_BUNDLE_EXPIRED", "\"dir\":\"out\"", NULL));
    tdsx_test_client_t c;
    if (tdsx_test_client_open(&c, &W.p, W.other.creds, W.ent.port) == 0)
        assert_true(tdsx_test_client_closed(&c, 5000));
    tdsx_test_client_free(&c);
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"",
                                   "TDSX_E_BUNDLE_EXPIRED", "\"dir\":\"in\"", NULL));
    /* A fresh bundle brings exchange back: the dialer reconnects and a send goes through. */
    make_signed(31, 0, 3600, W.centre.creds, &f);
    int opens = tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id, NULL);
    hup_with(tdsx_buf_bytes(&f));
    tdsx_buf_free(&f);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.applied\"", "\"serial\":31", NULL));
    for (int i = 0; i < 200 && tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id,
                                                   NULL) == opens;
         i++)
        usleep(50 * 1000);
    assert_true(tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id, NULL) > opens);
    out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           31 valid\n"));
    free(out);
    out = run(&rc, "tdsx send --socket '%s' --to '%s' '%s' --dataset d1 --tags '%s'", W.ent.sock,
              W.other.id, W.payload, TAGS);
    if (rc != 0)
        fail_msg("send: exit %d: %s", rc, out);
    free(out);
}

/* A bundle asking for a newer policy floor than this tdsxd enforces: applied (its CRLs and
 * registry hold) but exchange stops, and says why, until a bundle this node can honour. */
static void newer_floor_stops_exchange(void **state)
{
    (void)state;
    tdsx_buf_t f;
    int rc;
    W.floor = TDSX_BUNDLE_FLOOR_VERSION + 1;
    make_signed(32, 0, 3600, W.centre.creds, &f);
    W.floor = TDSX_BUNDLE_FLOOR_VERSION;
    hup_with(tdsx_buf_bytes(&f));
    tdsx_buf_free(&f);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.applied\"", "\"serial\":32", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.floor_outdated\"",
                                   "\"required\":2", "\"enforced\":1", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.close\"", W.other.id,
                                   "TDSX_E_BUNDLE_FLOOR", NULL));
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           32 FLOOR: requires policy floor 2, this node "
                                "enforces 1: exchange stopped\n"));
    free(out);
    out = run(&rc, "tdsx send --socket '%s' --to '%s' '%s' --dataset d1 --tags '%s'", W.ent.sock,
              W.other.id, W.payload, TAGS);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "TDSX_E_BUNDLE_FLOOR"));
    free(out);
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"", W.other.id,
                                   "TDSX_E_BUNDLE_FLOOR", "\"dir\":\"out\"", NULL));
    /* The centre lowers it again: exchange resumes. */
    make_signed(33, 0, 3600, W.centre.creds, &f);
    int opens = tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id, NULL);
    hup_with(tdsx_buf_bytes(&f));
    tdsx_buf_free(&f);
    for (int i = 0; i < 200 && tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id,
                                                   NULL) == opens;
         i++)
        usleep(50 * 1000);
    assert_true(tdsx_test_log_count(&W.ent, "\"event\":\"conn.open\"", W.other.id, NULL) > opens);
    out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           33 valid\n"));
    free(out);
}

/* A member left out of a new bundle: its live connection is closed, its next handshake
 * refused as an unknown peer. */
static void removed_member_closed(void **state)
{
    (void)state;
    tdsx_registry_t *r = NULL;
    tdsx_buf_t text, f;
    assert_int_equal(tdsx_registry_load(W.p.registry, &r, NULL), 0);
    tdsx_buf_init(&text, 1 << 20);
    for (size_t i = 0; i < tdsx_registry_count(r); i++) {
        const tdsx_member_t *m = tdsx_registry_at(r, i);
        char a[65], s[65], e[65];
        if (strcmp(m->id, W.other.id) == 0)
            continue;
        tdsx_hex_encode(a, m->auth_fp, 32);
        tdsx_hex_encode(s, m->sign_fp, 32);
        tdsx_hex_encode(e, m->enc_pub, 32);
        assert_int_equal(tdsx_buf_printf(&text, "%s %s %s:%u auth=%s sign=%s enc=%s\n", m->id,
                                         tdsx_role_name(m->role), m->host, (unsigned)m->port, a, s,
                                         e),
                         0);
    }
    char *path = tdsx_test_path(W.p.dir, "without-other.txt");
    tdsx_test_write_file(path, text.p, text.len);
    W.registry = path;
    make_signed(34, 0, 3600, W.centre.creds, &f);
    W.registry = NULL;
    hup_with(tdsx_buf_bytes(&f));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.applied\"", "\"serial\":34",
                                   "\"members\":3", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.peer_closed\"", W.other.id,
                                   "TDSX_E_PEER_UNKNOWN", "no longer a member", NULL));
    tdsx_test_client_t c;
    if (tdsx_test_client_open(&c, &W.p, W.other.creds, W.ent.port) == 0)
        assert_true(tdsx_test_client_closed(&c, 5000));
    tdsx_test_client_free(&c);
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"conn.refused\"",
                                   "TDSX_E_PEER_UNKNOWN", "\"dir\":\"in\"", NULL));
    free(path);
    tdsx_buf_free(&f);
    tdsx_buf_free(&text);
    tdsx_registry_free(r);
}

static void restart_keeps_newest_bundle(void **state)
{
    (void)state;
    /* bundle_file still holds 34; bundle.current too. Put an older one in bundle_file: the node
     * restarts on the newer bundle.current, not on what the file says. */
    tdsx_buf_t f;
    make_signed(25, 0, 3600, W.centre.creds, &f);
    tdsx_test_write_file(W.bundle_file, f.p, f.len);
    tdsx_buf_free(&f);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    tdsx_test_node_start(&W.ent);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.loaded\"", "\"serial\":34", NULL));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.file_not_newer\"",
                                   "\"serial\":25", NULL));
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           34 valid\n"));
    free(out);
    /* Every bundle it applied is kept for auditors (bundles/<serial>.tdsx, 0600): 34 is, the
     * older bundle_file it refused is not. */
    char *kept = tdsx_test_path(W.ent.data, TDSX_BUNDLE_HISTORY "/34.tdsx");
    char *refused = tdsx_test_path(W.ent.data, TDSX_BUNDLE_HISTORY "/25.tdsx");
    char *now = tdsx_test_path(W.ent.data, TDSX_BUNDLE_CURRENT);
    struct stat sb;
    assert_int_equal(stat(kept, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_not_equal(stat(refused, &sb), 0);
    uint8_t *k = NULL, *c = NULL;
    size_t nk = 0, nc = 0;
    read_all(kept, &k, &nk);
    read_all(now, &c, &nc);
    assert_int_equal(nk, nc);
    assert_memory_equal(k, c, nk);
    free(k);
    free(c);
    free(kept);
    free(refused);
    free(now);
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    /* --check-config verifies a newer bundle_file but changes nothing on disk. */
    char *cur = tdsx_test_path(W.ent.data, TDSX_BUNDLE_CURRENT);
    uint8_t *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    read_all(cur, &before, &nb);
    make_signed(50, 0, 3600, W.centre.creds, &f);
    tdsx_test_write_file(W.bundle_file, f.p, f.len);
    tdsx_buf_free(&f);
    int rc;
    out = run(&rc, "tdsxd -c '%s' --check-config", W.ent.conf);
    assert_int_equal(rc, 0);
    free(out);
    read_all(cur, &after, &na);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, nb);
    free(after);
    free(before);
    free(cur);
    /* A bundle_file that does not verify fails the check and keeps the node from starting,
     * naming the file. */
    tdsx_test_write_file(W.bundle_file, "not a bundle", 12);
    out = run(&rc, "tdsxd -c '%s' --check-config", W.ent.conf);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "ent-bundle.tdsx"));
    assert_non_null(strstr(out, "TDSX_E_BUNDLE"));
    free(out);
    out = run(&rc, "timeout 10 tdsxd -c '%s'", W.ent.conf);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "ent-bundle.tdsx"));
    free(out);
}

static void crl_file_revokes_a_bundle_signer(void **state)
{
    (void)state;
    /* A third centre key leaks; a bundle signed with it before its revocation has a serial
     * far ahead and CRLs that leave it out. */
    tdsx_test_node_t c3;
    memset(&c3, 0, sizeof c3);
    tdsx_test_node_issue(&W.p, &c3, "centre3", TDSX_ROLE_CENTRE, 0, 0, 0, 0);
    tdsx_buf_t u, leaked, f;
    make(3000, 0, 3600, &u);
    tdsx_buf_init(&leaked, TDSX_BUNDLE_FILE_CAP);
    assert_int_equal(tdsx__bundle_sign(tdsx_buf_bytes(&u), c3.creds, &leaked), 0);
    tdsx_buf_free(&u);
    /* The centre's next bundle was made before the revocation too: it does not list it. */
    make_signed(60, 0, 3600, W.centre.creds, &f);
    tdsx_test_write_file(W.bundle_file, f.p, f.len);
    tdsx_buf_free(&f);
    /* The operator revokes it and puts the CA's new CRL in ent's config at once. */
    revoke_cert(&c3, TDSX_CRED_SIGN_CERT);
    char *crl = tdsx_test_path(W.p.dir, "ent-crl.pem");
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(W.p.ca, &ca), 0);
    assert_int_equal(tdsx_ca_crl(ca, 1, crl, 1), 0);
    tdsx_ca_free(ca);
    char extra[4096];
    snprintf(extra, sizeof extra,
             "bundle_file %s\ncrl %s\npeer %s 127.0.0.1:%d\npeer %s 127.0.0.1:%d\n", W.bundle_file,
             crl, W.brain.id, W.brain.port, W.other.id, W.other.port);
    tdsx_test_node_config(&W.p, &W.ent, extra);
    tdsx_test_node_start(&W.ent);
    assert_true(
        tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.loaded\"", "\"serial\":60", NULL));
    /* The leaked bundle is refused for the config's CRL, and 60 stays in force. */
    hup_with(tdsx_buf_bytes(&leaked));
    assert_true(tdsx_test_log_wait(&W.ent, 5000, "\"event\":\"bundle.refused\"",
                                   "TDSX_E_CERT_REVOKED", "\"serial\":3000", NULL));
    assert_int_equal(
        tdsx_test_log_count(&W.ent, "\"event\":\"bundle.applied\"", "\"serial\":3000", NULL), 0);
    char *out = status_of(&W.ent);
    assert_non_null(strstr(out, "bundle           60 valid\n"));
    free(out);
    /* Nor does a node start from it as a bundle_file newer than bundle.current. */
    assert_int_equal(tdsx_test_node_stop(&W.ent, 10000), 0);
    int rc;
    out = run(&rc, "tdsxd -c '%s' --check-config", W.ent.conf);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "ent-bundle.tdsx"));
    assert_non_null(strstr(out, "TDSX_E_CERT_REVOKED"));
    free(out);
    tdsx_buf_free(&leaked);
    free(crl);
    tdsx_test_node_free(&c3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(wrong_signers_refused),
        cmocka_unit_test(revoked_signer_cannot_outrun_the_bundle_in_force),
        cmocka_unit_test(every_tampered_byte_refused),
        cmocka_unit_test(bad_inputs_refused),
        cmocka_unit_test(bad_contents_refused),
        cmocka_unit_test(verify_survives_allocation_failures),
        cmocka_unit_test(status_shows_bundle),
        cmocka_unit_test(bad_bundles_refused_by_daemon),
        cmocka_unit_test(revoked_peer_closed_and_refused),
        cmocka_unit_test(revoked_centre_key_refused_by_daemon),
        cmocka_unit_test(expired_bundle_stops_exchange),
        cmocka_unit_test(newer_floor_stops_exchange),
        cmocka_unit_test(removed_member_closed),
        cmocka_unit_test(restart_keeps_newest_bundle),
        cmocka_unit_test(crl_file_revokes_a_bundle_signer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
