/*
 * bundle.c — the signed trust bundle (SPEC §3): make and sign at the centre, verify, and the
 * bundle in force at a node (registry, CRLs, expiry).
 */
#include "bundle.h"

#include "exchange.h"
#include "trust.pb-c.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps, defined once. */
#define PATH_CAP 4096u
#define PEM_CAP (16u * 1024u * 1024u)  /* certificates or CRLs of one bundle, as PEM */
#define TEXT_CAP (64u * 1024u * 1024u) /* `tdsx bundle show` output */
#define ANCHOR_CAP (1u << 20)          /* ca.pem, chain.pem */
#define CRL_FILE_CAP (8u * 1024u * 1024u)
/* The SignedBundle and the TrustBundle decoded from its envelope share one arena. */
#define ARENA_BUDGET (TDSX_ENVELOPE_ARENA_BUDGET + 4u * TDSX_BUNDLE_FILE_CAP)
#define RETIRED_MAX 16u /* superseded TLS contexts kept while connections may use them */

struct tdsx_bundle_s {
    tdsx_arena_t *arena; /* holds msg and signed_msg */
    const Tdsx__TrustBundle *msg;
    const Tdsx__SignedBundle *signed_msg; /* for the signer certificates */
    tdsx_bundle_info_t info;
};

/* ------------------------------------------------------------------------------------------
 * DER and PEM helpers
 * ---------------------------------------------------------------------------------------- */

static X509 *der_cert(ProtobufCBinaryData d)
{
    const unsigned char *p = d.data;
    if (!d.data || d.len == 0 || d.len > (size_t)TDSX_BUNDLE_FILE_CAP)
        return NULL;
    X509 *x = d2i_X509(NULL, &p, (long)d.len);
    if (x && p != d.data + d.len) { /* trailing bytes: not one DER certificate */
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509_CRL *der_crl(ProtobufCBinaryData d)
{
    const unsigned char *p = d.data;
    if (!d.data || d.len == 0 || d.len > (size_t)TDSX_BUNDLE_FILE_CAP)
        return NULL;
    X509_CRL *x = d2i_X509_CRL(NULL, &p, (long)d.len);
    if (x && p != d.data + d.len) {
        X509_CRL_free(x);
        return NULL;
    }
    return x;
}

/* Appends the PEM of a certificate (crl == NULL) or a CRL. */
static int append_pem(tdsx_buf_t *b, X509 *cert, X509_CRL *crl)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    int rc = TDSX_E_NOMEM;
    if (!bio)
        return rc;
    if (cert ? PEM_write_bio_X509(bio, cert) == 1 : PEM_write_bio_X509_CRL(bio, crl) == 1) {
        long n = BIO_get_mem_data(bio, &p);
        rc = n > 0 ? tdsx_buf_append(b, p, (size_t)n) : TDSX_E_INTERNAL;
    }
    BIO_free(bio);
    return rc;
}

/* DER of a certificate or CRL into a new heap buffer (freed with tdsx_free). */
static int to_der(X509 *cert, X509_CRL *crl, ProtobufCBinaryData *out)
{
    int n = cert ? i2d_X509(cert, NULL) : i2d_X509_CRL(crl, NULL);
    if (n <= 0)
        return TDSX_E_INTERNAL;
    uint8_t *p = tdsx_malloc((size_t)n);
    if (!p)
        return TDSX_E_NOMEM;
    unsigned char *w = p;
    if ((cert ? i2d_X509(cert, &w) : i2d_X509_CRL(crl, &w)) != n) {
        tdsx_free(p);
        return TDSX_E_INTERNAL;
    }
    out->data = p;
    out->len = (size_t)n;
    return 0;
}

/* A list of heap DER blobs for the repeated bytes fields of the bundle. */
typedef struct der_list_s {
    ProtobufCBinaryData *v;
    size_t n;
} der_list_t;

static int der_list_add(der_list_t *l, X509 *cert, X509_CRL *crl)
{
    ProtobufCBinaryData d;
    ProtobufCBinaryData *v = tdsx_reallocarray(l->v, l->n + 1, sizeof *v);
    if (!v)
        return TDSX_E_NOMEM;
    l->v = v;
    int rc = to_der(cert, crl, &d);
    if (rc == 0)
        l->v[l->n++] = d;
    return rc;
}

static void der_list_free(der_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        tdsx_free(l->v[i].data);
    tdsx_free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *join(const char *dir, const char *name)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, PATH_CAP);
    if (tdsx_buf_printf(&b, "%s/%s", dir, name) != 0) {
        tdsx_buf_free(&b);
        return NULL;
    }
    return tdsx_buf_take(&b, NULL);
}

static void set_what(char *what, size_t size, const char *s)
{
    if (what && size)
        snprintf(what, size, "%s", s);
}

/* Every CRL of a PEM buffer, as DER. TDSX_E_CRL_INVALID when there is none or one is bad. */
static int crls_from_pem(const uint8_t *pem, size_t n, der_list_t *out)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    X509_CRL *crl = NULL;
    size_t found = 0;
    int rc = 0;
    if (!bio)
        return TDSX_E_NOMEM;
    while (rc == 0 && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
        rc = der_list_add(out, NULL, crl);
        X509_CRL_free(crl);
        found++;
    }
    BIO_free(bio);
    if (rc == 0 && found == 0)
        rc = TDSX_E_CRL_INVALID;
    return rc;
}

/* The trust of a CA or credential directory: `anchor` as anchor, `inter` (may be absent) as
 * intermediates. */
static int dir_trust(const char *dir, const char *anchor, const char *inter, tdsx_trust_t **out)
{
    char *a = join(dir, anchor), *i = inter ? join(dir, inter) : NULL;
    uint8_t *pem = NULL;
    size_t len = 0;
    int rc = (!a || (inter && !i)) ? TDSX_E_NOMEM : tdsx_trust_new(out);
    if (rc == 0)
        rc = tdsx_trust_add_anchors_file(*out, a);
    if (rc == 0 && i && tdsx_file_read(i, ANCHOR_CAP, &pem, &len) == 0 && len > 0)
        rc = tdsx_trust_add_intermediates_pem(*out, pem, len);
    if (rc) {
        tdsx_trust_free(*out);
        *out = NULL;
    }
    tdsx_free(pem);
    tdsx_free(a);
    tdsx_free(i);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Make
 * ---------------------------------------------------------------------------------------- */

typedef struct make_member_s {
    Tdsx__Member m;
    char endpoint[TDSX_HOST_MAX + 8];
    char org[256];
    char uscc[TDSX_USCC_LEN + 1];
    char node[TDSX_NODE_MAX + 1];
    uint8_t sign_pub[32];
    int have_creds;
} make_member_t;

/* Adds the certificates of a PEM file (each as DER) to l; a missing file when optional is
 * not an error. */
static int certs_of_file(const char *dir, const char *name, int optional, der_list_t *l)
{
    char *path = join(dir, name);
    STACK_OF(X509) *sk = NULL;
    int rc = path ? 0 : TDSX_E_NOMEM;
    if (rc == 0 && optional && access(path, F_OK) != 0) {
        tdsx_free(path);
        return 0;
    }
    if (rc == 0)
        rc = tdsx_cert_load_file(path, &sk);
    for (int k = 0; rc == 0 && k < sk_X509_num(sk); k++)
        rc = der_list_add(l, sk_X509_value(sk, k), NULL);
    sk_X509_pop_free(sk, X509_free);
    tdsx_free(path);
    return rc;
}

/* The CA's current CRLs, issued now into a private temporary directory and read back. */
static int issue_crls(const char *ca_dir, int64_t days, der_list_t *out)
{
    const char *tmp = getenv("TMPDIR");
    tdsx_buf_t dir;
    tdsx_ca_t *ca = NULL;
    char *file = NULL;
    uint8_t *pem = NULL;
    size_t len = 0;
    int made = 0;
    tdsx_buf_init(&dir, PATH_CAP);
    int rc = tdsx_buf_printf(&dir, "%s/tdsx-bundle-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (rc)
        goto fail;
    rc = TDSX_E_IO;
    if (!mkdtemp((char *)dir.p))
        goto fail;
    made = 1;
    rc = TDSX_E_NOMEM;
    if (!(file = join((const char *)dir.p, "crl.pem")))
        goto fail;
    if ((rc = tdsx_ca_open(ca_dir, &ca)) != 0 || (rc = tdsx_ca_crl(ca, days, file, 1)) != 0 ||
        (rc = tdsx_file_read(file, CRL_FILE_CAP, &pem, &len)) != 0)
        goto fail;
    rc = crls_from_pem(pem, len, out);
fail:
    if (file)
        unlink(file);
    if (made)
        rmdir((const char *)dir.p);
    tdsx_ca_free(ca);
    tdsx_free(pem);
    tdsx_free(file);
    tdsx_buf_free(&dir);
    return rc;
}

/* Matches a member credential directory to its registry line by the sign certificate's
 * fingerprint, and takes its organisation name and raw sign key. */
static int take_creds(const char *dir, const tdsx_trust_t *ca_trust, int64_t at, make_member_t *mm,
                      size_t n)
{
    char *path = join(dir, TDSX_CRED_SIGN_CERT);
    STACK_OF(X509) *sk = NULL;
    tdsx_identity_t id;
    int rc = path ? tdsx_cert_load_file(path, &sk) : TDSX_E_NOMEM;
    if (rc == 0) {
        tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE, at, 0};
        rc = tdsx_cert_verify(ca_trust, sk_X509_value(sk, 0), sk, &o, &id);
    }
    if (rc == 0) {
        rc = TDSX_E_CONFIG; /* no member has this sign certificate */
        for (size_t i = 0; i < n; i++) {
            if (memcmp(mm[i].m.sign_fingerprint.data, id.fingerprint, 32) != 0)
                continue;
            snprintf(mm[i].org, sizeof mm[i].org, "%s", id.org);
            memcpy(mm[i].sign_pub, id.pubkey, 32);
            mm[i].have_creds = 1;
            rc = 0;
            break;
        }
    }
    sk_X509_pop_free(sk, X509_free);
    tdsx_free(path);
    return rc;
}

int tdsx__bundle_make(const tdsx_bundle_make_opts_t *o, tdsx_buf_t *out, char *what,
                      size_t what_size)
{
    Tdsx__TrustBundle tb = TDSX__TRUST_BUNDLE__INIT;
    tdsx_registry_t *reg = NULL;
    tdsx_registry_error_t rerr;
    tdsx_trust_t *ca_trust = NULL;
    make_member_t *mm = NULL;
    Tdsx__Member **mp = NULL;
    ProtobufCBinaryData *log_keys = NULL, witness_key = {0, NULL};
    der_list_t roots = {NULL, 0}, inters = {NULL, 0}, crls = {NULL, 0};
    uint8_t *packed = NULL;
    int rc = TDSX_E_INVAL;
    if (!o || !out || !o->ca_dir || !o->registry || o->serial == 0 || o->valid < 0 ||
        (o->n_creds && !o->creds) || (o->n_crl_files && !o->crl_files))
        return TDSX_E_INVAL;
    int64_t issued = o->issued_at ? o->issued_at : tdsx_now();
    int64_t valid = o->valid ? o->valid : TDSX_BUNDLE_VALID_DEFAULT;

    if ((rc = tdsx_registry_load(o->registry, &reg, &rerr)) != 0) {
        set_what(what, what_size, o->registry);
        goto fail;
    }
    set_what(what, what_size, o->ca_dir);
    if ((rc = certs_of_file(o->ca_dir, TDSX_CA_ROOT_CERT, 0, &roots)) != 0 ||
        (rc = certs_of_file(o->ca_dir, TDSX_CA_INTER_CERT, 1, &inters)) != 0 ||
        (rc = dir_trust(o->ca_dir, TDSX_CA_ROOT_CERT, TDSX_CA_INTER_CERT, &ca_trust)) != 0)
        goto fail;
    for (size_t i = 0; i < o->n_crl_files; i++) {
        uint8_t *pem = NULL;
        size_t len = 0;
        set_what(what, what_size, o->crl_files[i]);
        rc = tdsx_file_read(o->crl_files[i], CRL_FILE_CAP, &pem, &len);
        if (rc == 0)
            rc = crls_from_pem(pem, len, &crls);
        tdsx_free(pem);
        if (rc)
            goto fail;
    }
    if (o->n_crl_files == 0) {
        /* The CRL must outlive the bundle, or nodes would refuse every peer before expiry. */
        int64_t days = (issued + valid - tdsx_now() + 86399) / 86400;
        set_what(what, what_size, o->ca_dir);
        if ((rc = issue_crls(o->ca_dir, days < 1 ? 1 : days, &crls)) != 0)
            goto fail;
    }

    size_t n = tdsx_registry_count(reg);
    mm = tdsx_calloc(n ? n : 1, sizeof *mm);
    mp = tdsx_calloc(n ? n : 1, sizeof *mp);
    log_keys = tdsx_calloc(n ? n : 1, sizeof *log_keys);
    rc = TDSX_E_NOMEM;
    if (!mm || !mp || !log_keys)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const tdsx_member_t *m = tdsx_registry_at(reg, i);
        make_member_t *x = &mm[i];
        tdsx__member__init(&x->m);
        snprintf(x->uscc, sizeof x->uscc, "%s", m->uscc);
        snprintf(x->node, sizeof x->node, "%s", m->node);
        snprintf(x->endpoint, sizeof x->endpoint, "%s:%u", m->host, (unsigned)m->port);
        x->m.uscc = x->uscc;
        x->m.org = x->org;
        x->m.role = (Tdsx__Role)m->role;
        x->m.node = x->node;
        x->m.endpoint = x->endpoint;
        x->m.auth_fingerprint = (ProtobufCBinaryData){32, (uint8_t *)m->auth_fp};
        x->m.sign_fingerprint = (ProtobufCBinaryData){32, (uint8_t *)m->sign_fp};
        x->m.enc_public_key = (ProtobufCBinaryData){32, (uint8_t *)m->enc_pub};
        mp[i] = &x->m;
    }
    for (size_t i = 0; i < o->n_creds; i++) {
        set_what(what, what_size, o->creds[i]);
        if ((rc = take_creds(o->creds[i], ca_trust, 0, mm, n)) != 0)
            goto fail;
    }
    size_t n_log = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mm[i].have_creds)
            continue;
        log_keys[n_log++] = (ProtobufCBinaryData){32, mm[i].sign_pub};
        const tdsx_member_t *m = tdsx_registry_at(reg, i);
        if (o->witness && strcmp(o->witness, m->id) == 0)
            witness_key = (ProtobufCBinaryData){32, mm[i].sign_pub};
    }
    if (o->witness && !witness_key.data) {
        set_what(what, what_size, "witness (no member credentials given for it)");
        rc = TDSX_E_INVAL;
        goto fail;
    }

    tb.serial = o->serial;
    tb.issued_at = issued;
    tb.expires_at = issued + valid;
    tb.n_root_certs = roots.n;
    tb.root_certs = roots.v;
    tb.n_intermediate_certs = inters.n;
    tb.intermediate_certs = inters.v;
    tb.n_crls = crls.n;
    tb.crls = crls.v;
    tb.n_members = n;
    tb.members = mp;
    tb.n_log_keys = n_log;
    tb.log_keys = log_keys;
    tb.n_witness_keys = witness_key.data ? 1 : 0;
    tb.witness_keys = &witness_key;
    tb.policy_floor_version = o->policy_floor;
    size_t len = tdsx__trust_bundle__get_packed_size(&tb);
    rc = TDSX_E_TOOBIG;
    if (len > TDSX_STATEMENT_MAX)
        goto fail;
    rc = TDSX_E_NOMEM;
    if (!(packed = tdsx_malloc(len ? len : 1)))
        goto fail;
    tdsx__trust_bundle__pack(&tb, packed);
    rc = tdsx_buf_append(out, packed, len);
    if (rc == 0)
        set_what(what, what_size, "");
fail:
    tdsx_free(packed);
    der_list_free(&roots);
    der_list_free(&inters);
    der_list_free(&crls);
    tdsx_free(log_keys);
    tdsx_free(mp);
    tdsx_free(mm);
    tdsx_trust_free(ca_trust);
    tdsx_registry_free(reg);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Sign
 * ---------------------------------------------------------------------------------------- */

typedef struct sign_result_s {
    int status;
    tdsx_buf_t env;
} sign_result_t;

static void on_signed(void *ud, int status, tdsx_bytes_t envelope)
{
    sign_result_t *r = ud;
    r->status = status;
    if (status == 0)
        r->status = tdsx_buf_append(&r->env, envelope.p, envelope.n);
}

/* Sanity of a decoded bundle that does not need any certificate. */
static int check_shape(const Tdsx__TrustBundle *tb, const char **why)
{
    if (tb->serial == 0)
        return *why = "serial is 0", TDSX_E_BUNDLE;
    if (tb->expires_at <= tb->issued_at)
        return *why = "expires_at is not after issued_at", TDSX_E_BUNDLE;
    if (tb->n_root_certs == 0)
        return *why = "no root certificate", TDSX_E_BUNDLE;
    for (size_t i = 0; i < tb->n_log_keys; i++)
        if (tb->log_keys[i].len != 32)
            return *why = "a log key is not 32 bytes", TDSX_E_BUNDLE;
    for (size_t i = 0; i < tb->n_witness_keys; i++)
        if (tb->witness_keys[i].len != 32)
            return *why = "a witness key is not 32 bytes", TDSX_E_BUNDLE;
    for (size_t i = 0; i < tb->n_members; i++) {
        const Tdsx__Member *m = tb->members[i];
        if (m->auth_fingerprint.len != 32 || m->sign_fingerprint.len != 32 ||
            m->enc_public_key.len != 32)
            return *why = "a member key or fingerprint is not 32 bytes", TDSX_E_BUNDLE;
        /* Printed by `tdsx bundle show`: no terminal control sequences. */
        size_t len = strlen(m->org);
        if (len > 255)
            return *why = "a member organisation name is over 255 bytes", TDSX_E_BUNDLE;
        for (size_t k = 0; k < len; k++)
            if ((unsigned char)m->org[k] < 0x20 || m->org[k] == 0x7f)
                return *why = "a member organisation name holds a control character", TDSX_E_BUNDLE;
    }
    return 0;
}

int tdsx__bundle_sign(tdsx_bytes_t unsigned_bundle, const char *cred_dir, tdsx_buf_t *out)
{
    tdsx_arena_t *arena = NULL;
    Tdsx__TrustBundle *tb = NULL;
    tdsx_trust_t *trust = NULL;
    STACK_OF(X509) *sk = NULL;
    tdsx_signer_t *signer = NULL;
    der_list_t certs = {NULL, 0};
    sign_result_t res = {TDSX_E_INTERNAL, {NULL, 0, 0, 0}};
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    uint8_t *packed = NULL;
    char *path = NULL;
    const char *why = NULL;
    int rc;
    tdsx_buf_init(&res.env, TDSX_ENVELOPE_MAX);
    if (!cred_dir || !out)
        return TDSX_E_INVAL;
    if ((rc = tdsx_arena_new(ARENA_BUDGET, &arena)) != 0)
        goto fail;
    if (tdsx_proto_unpack(arena, &tdsx__trust_bundle__descriptor, unsigned_bundle,
                          (ProtobufCMessage **)&tb) != 0 ||
        check_shape(tb, &why) != 0) {
        rc = TDSX_E_BUNDLE;
        goto fail;
    }
    /* Only a centre's sign key may sign: refuse here, not only at every node. */
    if ((rc = dir_trust(cred_dir, TDSX_CRED_ROOT, TDSX_CRED_CHAIN, &trust)) != 0)
        goto fail;
    if (!(path = join(cred_dir, TDSX_CRED_SIGN_CERT))) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if ((rc = tdsx_cert_load_file(path, &sk)) != 0)
        goto fail;
    tdsx_verify_opts_t vo = {TDSX_PURPOSE_SIGN, TDSX_ROLE_CENTRE, 0, 0};
    if ((rc = tdsx_cert_verify(trust, sk_X509_value(sk, 0), sk, &vo, NULL)) != 0)
        goto fail;
    for (int k = 0; rc == 0 && k < sk_X509_num(sk); k++)
        rc = der_list_add(&certs, sk_X509_value(sk, k), NULL);
    tdsx_free(path);
    path = NULL;
    if (rc == 0 && !(path = join(cred_dir, TDSX_CRED_CHAIN)))
        rc = TDSX_E_NOMEM;
    if (rc == 0 && access(path, F_OK) == 0) {
        STACK_OF(X509) *chain = NULL;
        uint8_t *pem = NULL;
        size_t len = 0;
        /* chain.pem may be empty when the root issued the node directly. */
        if (tdsx_file_read(path, ANCHOR_CAP, &pem, &len) == 0 && len > 0 &&
            strstr((const char *)pem, "-----BEGIN CERTIFICATE-----") &&
            (rc = tdsx_cert_load_file(path, &chain)) == 0)
            for (int k = 0; rc == 0 && k < sk_X509_num(chain); k++)
                rc = der_list_add(&certs, sk_X509_value(chain, k), NULL);
        sk_X509_pop_free(chain, X509_free);
        tdsx_free(pem);
    }
    if (rc)
        goto fail;
    rc = TDSX_E_TOOBIG;
    if (certs.n > TDSX_BUNDLE_SIGNER_CERTS_MAX)
        goto fail;
    tdsx_free(path);
    if (!(path = join(cred_dir, TDSX_CRED_SIGN_KEY))) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = tdsx_key_load_ed25519(path, seed);
    if (rc == 0)
        rc = tdsx_signer_new(seed, NULL, &signer);
    sodium_memzero(seed, sizeof seed);
    if (rc)
        goto fail;
    /* The exact bytes the centre built are what is signed: never re-serialised. */
    if ((rc = tdsx_signer_submit(signer, tdsx_statement_type(TDSX_STATEMENT_TRUST_BUNDLE),
                                 unsigned_bundle, on_signed, &res)) != 0 ||
        (rc = tdsx_signer_flush(signer)) != 0)
        goto fail;
    if ((rc = res.status) != 0)
        goto fail;
    Tdsx__SignedBundle sb = TDSX__SIGNED_BUNDLE__INIT;
    sb.envelope = (ProtobufCBinaryData){res.env.len, res.env.p};
    sb.n_signer_certs = certs.n;
    sb.signer_certs = certs.v;
    size_t len = tdsx__signed_bundle__get_packed_size(&sb);
    rc = TDSX_E_TOOBIG;
    if (len > TDSX_BUNDLE_FILE_CAP)
        goto fail;
    rc = TDSX_E_NOMEM;
    if (!(packed = tdsx_malloc(len)))
        goto fail;
    tdsx__signed_bundle__pack(&sb, packed);
    rc = tdsx_buf_append(out, packed, len);
fail:
    tdsx_free(packed);
    tdsx_signer_free(signer);
    der_list_free(&certs);
    tdsx_buf_free(&res.env);
    sk_X509_pop_free(sk, X509_free);
    tdsx_trust_free(trust);
    tdsx_free(path);
    tdsx_arena_free(arena);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Verify and decode
 * ---------------------------------------------------------------------------------------- */

void tdsx__bundle_free(tdsx_bundle_t *b)
{
    if (!b)
        return;
    tdsx_arena_free(b->arena);
    tdsx_free(b);
}

void tdsx__bundle_info(const tdsx_bundle_t *b, tdsx_bundle_info_t *out)
{
    *out = b->info;
}

const Tdsx__TrustBundle *tdsx__bundle_msg(const tdsx_bundle_t *b)
{
    return b->msg;
}

/* One registry line per member: the registry parser then applies exactly the rules of a
 * registry file (gateway.h), so a bundle cannot hold a member a file could not. */
static int registry_text(const Tdsx__TrustBundle *tb, tdsx_buf_t *text)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < tb->n_members; i++) {
        const Tdsx__Member *m = tb->members[i];
        char a[65], s[65], e[65];
        tdsx_role_t role = (tdsx_role_t)m->role;
        if (m->auth_fingerprint.len != 32 || m->sign_fingerprint.len != 32 ||
            m->enc_public_key.len != 32 || role < TDSX_ROLE_CENTRE || role > TDSX_ROLE_ENTERPRISE)
            return TDSX_E_CONFIG;
        tdsx_hex_encode(a, m->auth_fingerprint.data, 32);
        tdsx_hex_encode(s, m->sign_fingerprint.data, 32);
        tdsx_hex_encode(e, m->enc_public_key.data, 32);
        rc = tdsx_buf_printf(text, "%s/%s %s %s auth=%s sign=%s enc=%s\n", m->uscc, m->node,
                             tdsx_role_name(role), m->endpoint, a, s, e);
    }
    return rc;
}

static int registry_of(const Tdsx__TrustBundle *tb, tdsx_registry_t **out,
                       tdsx_registry_error_t *err)
{
    tdsx_buf_t text;
    tdsx_buf_init(&text, TDSX_REGISTRY_FILE_CAP);
    int rc = registry_text(tb, &text);
    if (rc == TDSX_E_CONFIG && err) {
        memset(err, 0, sizeof *err);
        err->err = rc;
        snprintf(err->msg, sizeof err->msg, "a member has a bad role, key or fingerprint");
    }
    if (rc == 0)
        rc = tdsx_registry_parse(tdsx_buf_bytes(&text), out, err);
    tdsx_buf_free(&text);
    return rc;
}

int tdsx__bundle_registry(const tdsx_bundle_t *b, tdsx_registry_t **out, tdsx_registry_error_t *err)
{
    return registry_of(b->msg, out, err);
}

/* The bundle's intermediates and CRLs as PEM, for the tdsx_trust_add_*_pem calls. */
static int trust_pem(const Tdsx__TrustBundle *tb, tdsx_buf_t *inter, tdsx_buf_t *crls)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < tb->n_intermediate_certs; i++) {
        X509 *x = der_cert(tb->intermediate_certs[i]);
        rc = x ? append_pem(inter, x, NULL) : TDSX_E_CERT_PARSE;
        X509_free(x);
    }
    for (size_t i = 0; rc == 0 && i < tb->n_crls; i++) {
        X509_CRL *x = der_crl(tb->crls[i]);
        rc = x ? append_pem(crls, NULL, x) : TDSX_E_CRL_INVALID;
        X509_CRL_free(x);
    }
    return rc;
}

static int add_trust(const Tdsx__TrustBundle *tb, tdsx_trust_t *t)
{
    tdsx_buf_t inter, crls;
    tdsx_buf_init(&inter, PEM_CAP);
    tdsx_buf_init(&crls, PEM_CAP);
    int rc = trust_pem(tb, &inter, &crls);
    if (rc == 0 && inter.len)
        rc = tdsx_trust_add_intermediates_pem(t, inter.p, inter.len);
    if (rc == 0 && crls.len)
        rc = tdsx_trust_add_crls_pem(t, crls.p, crls.len);
    tdsx_buf_free(&inter);
    tdsx_buf_free(&crls);
    return rc;
}

int tdsx__bundle_add_trust(const tdsx_bundle_t *b, tdsx_trust_t *t)
{
    return add_trust(b->msg, t);
}

/* Every certificate and CRL of the bundle must parse, and its members must make a registry. */
static int check_contents(const Tdsx__TrustBundle *tb, const char **why)
{
    int rc = check_shape(tb, why);
    if (rc)
        return rc;
    for (size_t i = 0; i < tb->n_root_certs + tb->n_intermediate_certs; i++) {
        X509 *x = der_cert(i < tb->n_root_certs ? tb->root_certs[i]
                                                : tb->intermediate_certs[i - tb->n_root_certs]);
        if (!x)
            return *why = "a CA certificate does not parse", TDSX_E_BUNDLE;
        X509_free(x);
    }
    for (size_t i = 0; i < tb->n_crls; i++) {
        X509_CRL *x = der_crl(tb->crls[i]);
        if (!x)
            return *why = "a CRL does not parse", TDSX_E_BUNDLE;
        X509_CRL_free(x);
    }
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t err;
    rc = registry_of(tb, &r, &err);
    tdsx_registry_free(r);
    if (rc == TDSX_E_CONFIG)
        return *why = "the member registry is malformed", TDSX_E_BUNDLE;
    return rc;
}

/* The signer's raw Ed25519 key and "<USCC>/<node>" read from the certificate alone (decode
 * without an anchor). */
static int signer_unverified(X509 *leaf, tdsx_identity_t *id)
{
    memset(id, 0, sizeof *id);
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    size_t len = sizeof id->pubkey;
    if (!pk || EVP_PKEY_get_raw_public_key(pk, id->pubkey, &len) != 1 || len != 32)
        return TDSX_E_CERT_KEY;
    X509_NAME *s = X509_get_subject_name(leaf);
    if (X509_NAME_get_text_by_NID(s, NID_serialNumber, id->uscc, sizeof id->uscc) < 0 ||
        X509_NAME_get_text_by_NID(s, NID_commonName, id->node, sizeof id->node) < 0)
        return TDSX_E_CERT_SUBJECT;
    return tdsx_cert_fingerprint(leaf, id->fingerprint);
}

static int open_bundle(tdsx_bytes_t file, const tdsx_bytes_t *anchor, tdsx_bytes_t chain,
                       int64_t at, tdsx_bundle_t **out)
{
    tdsx_bundle_t *b = NULL;
    Tdsx__SignedBundle *sb = NULL;
    Tdsx__TrustBundle *tb = NULL;
    STACK_OF(X509) *sk = NULL;
    tdsx_trust_t *trust = NULL;
    tdsx_verifier_t *v = NULL;
    tdsx_identity_t id;
    const char *why = NULL;
    int rc;
    *out = NULL;
    if (file.n > TDSX_BUNDLE_FILE_CAP)
        return TDSX_E_TOOBIG;
    if (!(b = tdsx_calloc(1, sizeof *b)) || !(sk = sk_X509_new_null())) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if ((rc = tdsx_arena_new(ARENA_BUDGET, &b->arena)) != 0)
        goto fail;
    rc = tdsx_proto_unpack(b->arena, &tdsx__signed_bundle__descriptor, file,
                           (ProtobufCMessage **)&sb);
    if (rc == TDSX_E_PROTO_DECODE ||
        (rc == 0 &&
         (sb->n_signer_certs == 0 || sb->n_signer_certs > TDSX_BUNDLE_SIGNER_CERTS_MAX))) {
        why = rc ? "not a signed trust bundle" : "no signer certificate, or too many";
        rc = TDSX_E_BUNDLE;
    }
    if (rc)
        goto fail;
    for (size_t i = 0; i < sb->n_signer_certs; i++) {
        X509 *x = der_cert(sb->signer_certs[i]);
        if (!x || !sk_X509_push(sk, x)) {
            X509_free(x);
            why = "a signer certificate does not parse";
            rc = TDSX_E_BUNDLE;
            goto fail;
        }
    }
    X509 *leaf = sk_X509_value(sk, 0);
    tdsx_verify_opts_t vo = {TDSX_PURPOSE_SIGN, TDSX_ROLE_CENTRE, at, 0};
    if (anchor) {
        /* Chain first, signature second, decode third (verify before decode, SPEC §10). */
        if ((rc = tdsx_trust_new(&trust)) != 0 ||
            (rc = tdsx_trust_add_anchors_pem(trust, anchor->p, anchor->n)) != 0 ||
            (chain.n && (rc = tdsx_trust_add_intermediates_pem(trust, chain.p, chain.n)) != 0) ||
            (rc = tdsx_cert_verify(trust, leaf, sk, &vo, &id)) != 0)
            goto fail;
    } else if ((rc = signer_unverified(leaf, &id)) != 0) {
        goto fail;
    }
    if ((rc = tdsx_verifier_new(1, &v)) != 0 || (rc = tdsx_verifier_add_key(v, id.pubkey)) != 0)
        goto fail;
    rc = tdsx_statement_open(v, TDSX_STATEMENT_TRUST_BUNDLE,
                             tdsx_bytes(sb->envelope.data, sb->envelope.len), b->arena,
                             (ProtobufCMessage **)&tb, NULL);
    if (rc == TDSX_E_PROTO_DECODE) {
        why = "the signed payload is not a TrustBundle";
        rc = TDSX_E_BUNDLE;
    }
    if (rc || (rc = check_contents(tb, &why)) != 0)
        goto fail;
    if (anchor) {
        /* The signer must not be revoked by the very CRLs it publishes. */
        tdsx_trust_free(trust);
        trust = NULL;
        if ((rc = tdsx_trust_new(&trust)) != 0 ||
            (rc = tdsx_trust_add_anchors_pem(trust, anchor->p, anchor->n)) != 0 ||
            (chain.n && (rc = tdsx_trust_add_intermediates_pem(trust, chain.p, chain.n)) != 0) ||
            (rc = add_trust(tb, trust)) != 0 || (rc = tdsx_cert_verify(trust, leaf, sk, &vo, &id)))
            goto fail;
    }
    b->msg = tb;
    b->signed_msg = sb;
    b->info.serial = tb->serial;
    b->info.issued_at = tb->issued_at;
    b->info.expires_at = tb->expires_at;
    b->info.policy_floor = tb->policy_floor_version;
    b->info.n_members = tb->n_members;
    b->info.n_roots = tb->n_root_certs;
    b->info.n_intermediates = tb->n_intermediate_certs;
    b->info.n_crls = tb->n_crls;
    b->info.n_log_keys = tb->n_log_keys;
    b->info.n_witness_keys = tb->n_witness_keys;
    b->info.verified = anchor != NULL;
    snprintf(b->info.signer, sizeof b->info.signer, "%s/%s", id.uscc, id.node);
    memcpy(b->info.signer_fp, id.fingerprint, 32);
    crypto_hash_sha256(b->info.sha256, file.p, file.n);
    *out = b;
    b = NULL;
fail:
    if (rc && why)
        tdsx_log(TDSX_LOG_WARN, "bundle.invalid", TDSX_KV_S("problem", why));
    tdsx_verifier_free(v);
    tdsx_trust_free(trust);
    sk_X509_pop_free(sk, X509_free);
    tdsx__bundle_free(b);
    return rc;
}

int tdsx__bundle_verify(tdsx_bytes_t file, tdsx_bytes_t anchor_pem, tdsx_bytes_t chain_pem,
                        int64_t at, tdsx_bundle_t **out)
{
    if (!out || (!anchor_pem.p && anchor_pem.n) || (!chain_pem.p && chain_pem.n))
        return TDSX_E_INVAL;
    return open_bundle(file, &anchor_pem, chain_pem, at, out);
}

/* 1 when crl lists x (same issuer, same serial). */
static int crl_lists(X509_CRL *crl, X509 *x)
{
    X509_REVOKED *r = NULL;
    return crl && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) == 0 &&
           X509_CRL_get0_by_cert(crl, &r, x) == 1;
}

/* 1 when one of the CRLs of `by` lists x. */
static int listed(const Tdsx__TrustBundle *by, X509 *x)
{
    int found = 0;
    for (size_t i = 0; !found && i < by->n_crls; i++) {
        X509_CRL *crl = der_crl(by->crls[i]);
        found = crl_lists(crl, x);
        X509_CRL_free(crl);
    }
    return found;
}

int tdsx__bundle_check_signer(const tdsx_bundle_t *b, const tdsx_bundle_t *in_force)
{
    if (!in_force)
        return 0;
    /* The CRLs were accepted with the bundle in force (signed by the centre): what they list
     * stays revoked whatever CRLs a newer bundle carries, and whether or not they are past
     * their nextUpdate (a node whose bundle expired must still be able to take a fresh one). */
    const Tdsx__SignedBundle *sb = b->signed_msg;
    for (size_t i = 0; i < sb->n_signer_certs; i++) {
        X509 *x = der_cert(sb->signer_certs[i]);
        int revoked = x && listed(in_force->msg, x);
        X509_free(x);
        if (!x)
            return TDSX_E_BUNDLE;
        if (revoked) {
            tdsx_log(TDSX_LOG_WARN, "bundle.invalid",
                     TDSX_KV_S("problem", i == 0 ? "its signer certificate is revoked by the "
                                                   "bundle in force"
                                                 : "a CA certificate of its signer is revoked by "
                                                   "the bundle in force"));
            return TDSX_E_CERT_REVOKED;
        }
    }
    return 0;
}

int tdsx__bundle_decode(tdsx_bytes_t file, tdsx_bundle_t **out)
{
    if (!out)
        return TDSX_E_INVAL;
    return open_bundle(file, NULL, tdsx_bytes(NULL, 0), 0, out);
}

/* ------------------------------------------------------------------------------------------
 * Text form (`tdsx bundle show`)
 * ---------------------------------------------------------------------------------------- */

static void fmt_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

static int format_name(tdsx_buf_t *out, const char *label, X509_NAME *name)
{
    /* RFC 2253 form with UTF-8 kept as is; control characters stay escaped. */
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n = 0;
    if (!bio)
        return TDSX_E_NOMEM;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        n = BIO_get_mem_data(bio, &p);
    int rc = tdsx_buf_printf(out, "%s%.*s\n", label, (int)(n > 0 ? n : 0), n > 0 ? p : "");
    BIO_free(bio);
    return rc;
}

static int format_crl(tdsx_buf_t *out, ProtobufCBinaryData der)
{
    X509_CRL *crl = der_crl(der);
    if (!crl)
        return TDSX_E_CRL_INVALID;
    int rc = format_name(out, "crl           issuer ", X509_CRL_get_issuer(crl));
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    int n = sk_X509_REVOKED_num(rev);
    if (rc == 0)
        rc = tdsx_buf_printf(out, "              revoked %d\n", n < 0 ? 0 : n);
    for (int i = 0; rc == 0 && i < n; i++) {
        const ASN1_INTEGER *serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rev, i));
        BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        rc = hex ? tdsx_buf_printf(out, "              serial %s\n", hex) : TDSX_E_NOMEM;
        OPENSSL_free(hex);
        BN_free(bn);
    }
    X509_CRL_free(crl);
    return rc;
}

int tdsx__bundle_format(const tdsx_bundle_t *b, int64_t at, tdsx_buf_t *out)
{
    const Tdsx__TrustBundle *tb = b->msg;
    const tdsx_bundle_info_t *i = &b->info;
    char t1[32], t2[32], hex[65];
    if (at == 0)
        at = tdsx_now();
    fmt_time(i->issued_at, t1);
    fmt_time(i->expires_at, t2);
    tdsx_hex_encode(hex, i->signer_fp, 32);
    int rc = tdsx_buf_printf(out,
                             "serial        %llu\nissued        %s\nexpires       %s%s\n"
                             "policy_floor  %u\nsigner        %s  sign sha256:%s\n",
                             (unsigned long long)i->serial, t1, t2,
                             at >= i->expires_at ? "  (EXPIRED)" : "", (unsigned)i->policy_floor,
                             i->signer, hex);
    if (rc == 0) {
        tdsx_hex_encode(hex, i->sha256, 32);
        rc = tdsx_buf_printf(out, "file          sha256:%s\n", hex);
    }
    for (size_t k = 0; rc == 0 && k < tb->n_root_certs + tb->n_intermediate_certs; k++) {
        int root = k < tb->n_root_certs;
        X509 *x = der_cert(root ? tb->root_certs[k] : tb->intermediate_certs[k - tb->n_root_certs]);
        if (!x)
            return TDSX_E_CERT_PARSE;
        rc = format_name(out, root ? "root          " : "intermediate  ", X509_get_subject_name(x));
        X509_free(x);
    }
    for (size_t k = 0; rc == 0 && k < tb->n_crls; k++)
        rc = format_crl(out, tb->crls[k]);
    if (rc == 0)
        rc = tdsx_buf_printf(out, "members       %zu\n", tb->n_members);
    for (size_t k = 0; rc == 0 && k < tb->n_members; k++) {
        const Tdsx__Member *m = tb->members[k];
        char a[65], s[65], e[65];
        tdsx_hex_encode(a, m->auth_fingerprint.data, m->auth_fingerprint.len < 32 ? 0 : 32);
        tdsx_hex_encode(s, m->sign_fingerprint.data, m->sign_fingerprint.len < 32 ? 0 : 32);
        tdsx_hex_encode(e, m->enc_public_key.data, m->enc_public_key.len < 32 ? 0 : 32);
        rc = tdsx_buf_printf(out,
                             "member        %s/%s %s %s org=\"%s\"\n"
                             "              auth=%s\n              sign=%s\n              enc=%s\n",
                             m->uscc, m->node, tdsx_role_name((tdsx_role_t)m->role), m->endpoint,
                             m->org, a, s, e);
    }
    for (size_t k = 0; rc == 0 && k < tb->n_log_keys + tb->n_witness_keys; k++) {
        int log = k < tb->n_log_keys;
        ProtobufCBinaryData d = log ? tb->log_keys[k] : tb->witness_keys[k - tb->n_log_keys];
        tdsx_hex_encode(hex, d.data, d.len < 32 ? 0 : 32);
        rc = tdsx_buf_printf(out, "%s%s\n", log ? "log_key       " : "witness_key   ", hex);
    }
    if (rc == 0)
        rc = tdsx_buf_printf(out, "verified      %s\n",
                             i->verified ? "yes (signer chains to the anchor)"
                                         : "NO (no --anchor: signature checked with the "
                                           "certificate in the file only)");
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The bundle in force at a node
 * ---------------------------------------------------------------------------------------- */

/* A superseded TLS context with the trust set and registry it borrows: connections made from
 * it still use it, so it is freed only once no connection made from it is left. */
typedef struct retired_s {
    tdsx_tls_ctx_t *tls;
    tdsx_trust_t *trust;
    tdsx_registry_t *registry;
} retired_t;

struct tdsx_bundle_node_s {
    uint8_t *anchor; /* the node's ca.pem */
    size_t anchor_len;
    uint8_t *chain; /* its chain.pem, may be empty */
    size_t chain_len;
    tdsx_bundle_t *b; /* in force; NULL: none */
    tdsx_bundle_info_t info;
    int expired;      /* exchange stopped (the expiry was acted on) */
    uint8_t *pending; /* bundle_file bytes in force but not yet in bundle.current */
    size_t pending_len;
    int timer_init;
    retired_t *retired;
    size_t n_retired;
};

static char *data_path(const tdsx_node_t *n, const char *name)
{
    return join(n->cfg.data_dir, name);
}

/* Keeps every bundle the node applied as <data_dir>/bundles/<serial>.tdsx (0600, never
 * replaced), so an auditor sees the trust bundles that applied over time, not only the last
 * (tdsx audit export). A failure is logged: the bundle is in force all the same. */
static void keep_history(const tdsx_node_t *n, uint64_t serial, tdsx_bytes_t file)
{
    char name[64];
    snprintf(name, sizeof name, TDSX_BUNDLE_HISTORY "/%llu.tdsx", (unsigned long long)serial);
    char *dir = data_path(n, TDSX_BUNDLE_HISTORY), *path = data_path(n, name);
    int rc = !dir || !path ? TDSX_E_NOMEM
             : mkdir(dir, 0700) != 0 && errno != EEXIST
                 ? TDSX_E_IO
                 : tdsx_file_write(path, file.p, file.n, 0600, 0);
    if (rc == 0)
        rc = tdsx_dir_sync(dir);
    if (rc && rc != TDSX_E_EXISTS)
        tdsx_log(TDSX_LOG_WARN, "bundle.history_failed", TDSX_KV_S("file", path ? path : name),
                 TDSX_KV_E("err", rc));
    tdsx_free(dir);
    tdsx_free(path);
}

static tdsx_bytes_t anchor_of(const struct tdsx_bundle_node_s *st)
{
    return tdsx_bytes(st->anchor, st->anchor_len);
}

/* Reads and verifies one bundle file; with `bytes`, hands over what was verified. */
static int read_verify(const struct tdsx_bundle_node_s *st, const char *path, tdsx_bundle_t **out,
                       uint8_t **bytes, size_t *len)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int rc = tdsx_file_read(path, TDSX_BUNDLE_FILE_CAP, &p, &n);
    if (rc == 0)
        rc = tdsx__bundle_verify(tdsx_bytes(p, n), anchor_of(st),
                                 tdsx_bytes(st->chain, st->chain_len), 0, out);
    if (rc == 0 && bytes) {
        *bytes = p;
        *len = n;
        p = NULL;
    }
    tdsx_free(p);
    return rc;
}

/* The trust a node's TLS and verifications use under bundle b: the anchor and chain it was
 * installed with, its configured CRL files, then the bundle's intermediates and CRLs. */
static int build_trust(const tdsx_node_t *n, const tdsx_bundle_t *b, tdsx_trust_t **out)
{
    const struct tdsx_bundle_node_s *st = n->bundle;
    tdsx_trust_t *t = NULL;
    int rc = tdsx_trust_new(&t);
    if (rc == 0)
        rc = tdsx_trust_add_anchors_pem(t, st->anchor, st->anchor_len);
    if (rc == 0 && st->chain_len)
        rc = tdsx_trust_add_intermediates_pem(t, st->chain, st->chain_len);
    for (size_t i = 0; rc == 0 && i < n->cfg.n_crls; i++)
        rc = tdsx_trust_add_crls_file(t, n->cfg.crls[i]);
    if (rc == 0)
        rc = tdsx__bundle_add_trust(b, t);
    if (rc) {
        tdsx_trust_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}

static void log_refused(const tdsx_node_t *n, int err, const char *source, uint64_t serial)
{
    const struct tdsx_bundle_node_s *st = n->bundle;
    tdsx_log(TDSX_LOG_ERROR, "bundle.refused", TDSX_KV_S("source", source ? source : ""),
             TDSX_KV_E("err", err), TDSX_KV_I("serial", serial),
             TDSX_KV_I("in_force", st && st->b ? st->info.serial : 0),
             TDSX_KV_S("action", st && st->b ? "keeping the bundle in force" : "no bundle"));
}

/* The node's own `crl` files: an operator who revoked a centre key there (before any bundle
 * says so) must not see a bundle signed with it applied. TDSX_E_CERT_REVOKED, file errors. */
static int config_revokes(const tdsx_node_t *n, const tdsx_bundle_t *b)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n->cfg.n_crls; i++) {
        uint8_t *pem = NULL;
        size_t len = 0;
        if ((rc = tdsx_file_read(n->cfg.crls[i], CRL_FILE_CAP, &pem, &len)) != 0)
            break;
        BIO *bio = BIO_new_mem_buf(pem, (int)len);
        X509_CRL *crl;
        if (!bio)
            rc = TDSX_E_NOMEM;
        while (rc == 0 && bio && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
            const Tdsx__SignedBundle *sb = b->signed_msg;
            for (size_t k = 0; rc == 0 && k < sb->n_signer_certs; k++) {
                X509 *x = der_cert(sb->signer_certs[k]);
                if (crl_lists(crl, x))
                    rc = TDSX_E_CERT_REVOKED;
                X509_free(x);
            }
            X509_CRL_free(crl);
        }
        ERR_clear_error();
        BIO_free(bio);
        tdsx_free(pem);
    }
    if (rc == TDSX_E_CERT_REVOKED)
        tdsx_log(TDSX_LOG_WARN, "bundle.invalid",
                 TDSX_KV_S("problem", "its signer is revoked by a crl file of the config"));
    return rc;
}

/* Closes every connection (expiry). */
static void close_all(tdsx_node_t *n, int err, const char *reason)
{
    for (tdsx_conn_t *c = tdsx__conn_next(n, NULL), *next; c; c = next) {
        next = tdsx__conn_next(n, c);
        tdsx__conn_fail(c, err, reason);
    }
}

/* The bundle asks for floors this build does not have: its registry and CRLs apply, but no
 * exchange until tdsxd is upgraded (or the centre lowers the floor). */
static void log_floor(const tdsx_node_t *n)
{
    tdsx_log(TDSX_LOG_ERROR, "bundle.floor_outdated", TDSX_KV_I("serial", n->bundle->info.serial),
             TDSX_KV_I("required", n->bundle->info.policy_floor),
             TDSX_KV_I("enforced", TDSX_BUNDLE_FLOOR_VERSION),
             TDSX_KV_E("err", TDSX_E_BUNDLE_FLOOR),
             TDSX_KV_S("action", "exchange stopped until tdsxd enforces that policy floor"));
}

static void expire(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    if (st->expired)
        return;
    st->expired = 1;
    tdsx_log(TDSX_LOG_ERROR, "bundle.expired", TDSX_KV_I("serial", st->info.serial),
             TDSX_KV_I("expires_at", st->info.expires_at), TDSX_KV_E("err", TDSX_E_BUNDLE_EXPIRED),
             TDSX_KV_S("action", "exchange stopped until a fresh trust bundle is applied"));
    close_all(n, TDSX_E_BUNDLE_EXPIRED, "trust bundle expired: exchange stopped");
}

static void arm(tdsx_node_t *n);

static void on_expiry(uv_timer_t *t)
{
    tdsx_node_t *n = t->data;
    if (tdsx_now() >= n->bundle->info.expires_at)
        expire(n);
    else
        arm(n); /* the timer ran early against the wall clock */
}

static void arm(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    if (!st || !st->timer_init || uv_is_closing((uv_handle_t *)&n->bundle_timer))
        return; /* not started, or shutting down (a late fetch may still apply a bundle) */
    uv_timer_stop(&n->bundle_timer);
    if (!st->b)
        return;
    int64_t left = st->info.expires_at - tdsx_now();
    if (left <= 0) {
        expire(n);
        return;
    }
    /* Whole seconds of the wall clock; one more so the check in on_expiry holds. */
    uv_timer_start(&n->bundle_timer, on_expiry, (uint64_t)left * 1000u + 1000u, 0);
}

int tdsx__bundle_load(tdsx_node_t *n, char *what, size_t what_size)
{
    struct tdsx_bundle_node_s *st = tdsx_calloc(1, sizeof *st);
    tdsx_bundle_t *cur = NULL, *file = NULL;
    char *path = NULL, *current = NULL;
    int rc = TDSX_E_NOMEM;
    if (!st)
        return rc;
    n->bundle = st;
    if (!(path = join(n->cfg.credentials, TDSX_CRED_ROOT)) ||
        !(current = data_path(n, TDSX_BUNDLE_CURRENT)))
        goto fail;
    if ((rc = tdsx_file_read(path, ANCHOR_CAP, &st->anchor, &st->anchor_len)) != 0) {
        set_what(what, what_size, TDSX_CRED_ROOT);
        goto fail;
    }
    tdsx_free(path);
    if (!(path = join(n->cfg.credentials, TDSX_CRED_CHAIN))) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    /* chain.pem may be absent or empty when the root issued the node itself. */
    if (tdsx_file_read(path, ANCHOR_CAP, &st->chain, &st->chain_len) != 0 ||
        !strstr((const char *)st->chain, "-----BEGIN CERTIFICATE-----")) {
        tdsx_free(st->chain);
        st->chain = NULL;
        st->chain_len = 0;
    }
    /* The last applied bundle; a damaged one must not keep the node from starting. */
    rc = read_verify(st, current, &cur, NULL, NULL);
    if (rc && rc != TDSX_E_NOTFOUND)
        tdsx_log(TDSX_LOG_WARN, "bundle.current_invalid", TDSX_KV_S("file", current),
                 TDSX_KV_E("err", rc), TDSX_KV_S("action", "ignored"));
    if (n->cfg.bundle_file &&
        (rc = read_verify(st, n->cfg.bundle_file, &file, &st->pending, &st->pending_len)) != 0) {
        set_what(what, what_size, n->cfg.bundle_file);
        log_refused(n, rc, n->cfg.bundle_file, 0);
        goto fail;
    }
    if (file && cur && file->info.serial <= cur->info.serial)
        tdsx_log(TDSX_LOG_INFO, "bundle.file_not_newer", TDSX_KV_S("file", n->cfg.bundle_file),
                 TDSX_KV_I("serial", file->info.serial), TDSX_KV_I("current", cur->info.serial),
                 TDSX_KV_S("action", "keeping " TDSX_BUNDLE_CURRENT));
    if (file && (!cur || file->info.serial > cur->info.serial) &&
        ((rc = tdsx__bundle_check_signer(file, cur)) != 0 || (rc = config_revokes(n, file)) != 0)) {
        set_what(what, what_size, n->cfg.bundle_file);
        log_refused(n, rc, n->cfg.bundle_file, file->info.serial);
        goto fail;
    }
    if (file && (!cur || file->info.serial > cur->info.serial)) {
        /* Newer than the last applied: it becomes bundle.current once the node starts (not
         * under --check-config), from the very bytes verified here. */
        tdsx__bundle_free(cur);
        cur = file;
        file = NULL;
    } else {
        tdsx_free(st->pending);
        st->pending = NULL;
        st->pending_len = 0;
    }
    if (!cur) {
        rc = 0;
        if (!n->cfg.registry) {
            /* Only bundle_url: no member is accepted until a bundle is fetched. */
            tdsx_log(TDSX_LOG_WARN, "bundle.none",
                     TDSX_KV_S("action", "no member is accepted until a trust bundle is applied"));
            rc = tdsx_registry_parse(tdsx_bytes("", 0), &n->registry, NULL);
        }
        goto fail;
    }
    tdsx_registry_error_t rerr;
    if ((rc = tdsx__bundle_registry(cur, &n->registry, &rerr)) != 0 ||
        (rc = tdsx__bundle_add_trust(cur, n->trust)) != 0) {
        set_what(what, what_size, TDSX_BUNDLE_CURRENT);
        goto fail;
    }
    st->b = cur;
    cur = NULL;
    tdsx__bundle_info(st->b, &st->info);
    if (n->cfg.registry)
        tdsx_log(TDSX_LOG_INFO, "bundle.registry_file_ignored", TDSX_KV_S("file", n->cfg.registry));
    tdsx_log(TDSX_LOG_INFO, "bundle.loaded", TDSX_KV_I("serial", st->info.serial),
             TDSX_KV_I("issued_at", st->info.issued_at),
             TDSX_KV_I("expires_at", st->info.expires_at), TDSX_KV_I("members", st->info.n_members),
             TDSX_KV_I("crls", st->info.n_crls), TDSX_KV_S("signer", st->info.signer),
             TDSX_KV_S("state", tdsx_now() >= st->info.expires_at ? "expired" : "valid"));
    if (st->info.policy_floor > TDSX_BUNDLE_FLOOR_VERSION)
        log_floor(n);
    rc = 0;
fail:
    tdsx__bundle_free(cur);
    tdsx__bundle_free(file);
    tdsx_free(path);
    tdsx_free(current);
    return rc;
}

int tdsx__bundle_start(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    if (!st)
        return 0;
    uv_timer_init(n->loop, &n->bundle_timer);
    n->bundle_timer.data = n;
    st->timer_init = 1;
    if (st->pending) {
        char *current = data_path(n, TDSX_BUNDLE_CURRENT);
        int rc = current ? tdsx_file_write(current, st->pending, st->pending_len, 0600, 1)
                         : TDSX_E_NOMEM;
        if (rc) /* bundle_file is still newer: the next start uses it again */
            tdsx_log(TDSX_LOG_WARN, "bundle.persist_failed", TDSX_KV_S("file", current),
                     TDSX_KV_E("err", rc));
        else
            keep_history(n, st->info.serial, tdsx_bytes(st->pending, st->pending_len));
        tdsx_free(current);
        tdsx_free(st->pending);
        st->pending = NULL;
        st->pending_len = 0;
    }
    arm(n); /* an expired bundle stops exchange from the first moment */
    return 0;
}

void tdsx__bundle_stop(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    if (st && st->timer_init && !uv_is_closing((uv_handle_t *)&n->bundle_timer))
        uv_close((uv_handle_t *)&n->bundle_timer, NULL);
}

static void retired_free(retired_t *r)
{
    tdsx_tls_ctx_free(r->tls);
    tdsx_registry_free(r->registry);
    tdsx_trust_free(r->trust);
}

void tdsx__bundle_node_free(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    if (!st)
        return;
    for (size_t i = 0; i < st->n_retired; i++)
        retired_free(&st->retired[i]);
    tdsx_free(st->retired);
    tdsx__bundle_free(st->b);
    tdsx_free(st->pending);
    tdsx_free(st->anchor);
    tdsx_free(st->chain);
    tdsx_free(st);
    n->bundle = NULL;
}

/* Frees the superseded contexts no connection uses any more. */
static void collect_retired(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    size_t w = 0;
    for (size_t i = 0; i < st->n_retired; i++) {
        retired_t *r = &st->retired[i];
        int live = 0;
        for (tdsx_conn_t *c = tdsx__conn_next(n, NULL); c && !live; c = tdsx__conn_next(n, c))
            live = tdsx__conn_tls_ctx(c) == r->tls;
        if (live)
            st->retired[w++] = *r;
        else
            retired_free(r);
    }
    st->n_retired = w;
}

/* Takes back the last retire() when the swap does not happen after all. */
static void unretire(tdsx_node_t *n)
{
    n->bundle->n_retired--;
}

static int retire(tdsx_node_t *n)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    retired_t *v = tdsx_reallocarray(st->retired, st->n_retired + 1, sizeof *v);
    if (!v)
        return TDSX_E_NOMEM;
    st->retired = v;
    st->retired[st->n_retired++] = (retired_t){n->tls, n->trust, n->registry};
    return 0;
}

/* After a new bundle: every open connection's peer is checked again, as a new handshake would
 * be (certificate against the new CRLs, then membership); connections still in their
 * handshake verify against the superseded trust, so they are closed and dialled again. */
static void recheck_peers(tdsx_node_t *n)
{
    const struct tdsx_bundle_node_s *st = n->bundle;
    for (tdsx_conn_t *c = tdsx__conn_next(n, NULL), *next; c; c = next) {
        next = tdsx__conn_next(n, c);
        STACK_OF(X509) *chain = NULL;
        X509 *leaf = tdsx__conn_peer_cert(c, &chain);
        char reason[160];
        int rc;
        tdsx_conn_state_t state = tdsx__conn_state(c);
        if (!leaf && state != TDSX_CONN_CONNECTING && state != TDSX_CONN_HANDSHAKE)
            continue; /* already closing */
        if (!leaf) {
            rc = TDSX_E_BUNDLE;
            snprintf(reason, sizeof reason, "trust bundle %llu applied during the handshake",
                     (unsigned long long)st->info.serial);
        } else {
            tdsx_verify_opts_t o = {TDSX_PURPOSE_AUTH, TDSX_ROLE_NONE, tdsx_now(), 0};
            tdsx_identity_t id;
            rc = tdsx_cert_verify(n->trust, leaf, chain, &o, &id);
            if (rc == 0)
                rc = tdsx_registry_check(n->registry, &id, NULL);
            snprintf(reason, sizeof reason, "%s in trust bundle %llu",
                     rc == TDSX_E_CERT_REVOKED ? "certificate revoked" : "no longer a member",
                     (unsigned long long)st->info.serial);
        }
        if (rc == 0)
            continue;
        tdsx_log(TDSX_LOG_WARN, "bundle.peer_closed", TDSX_KV_S("peer", tdsx__conn_peer_id(c)),
                 TDSX_KV_E("err", rc), TDSX_KV_S("reason", reason));
        tdsx__conn_fail(c, rc, reason);
    }
}

int tdsx__bundle_apply(tdsx_node_t *n, tdsx_bytes_t envelope, const char *source)
{
    struct tdsx_bundle_node_s *st = n->bundle;
    tdsx_bundle_t *b = NULL;
    tdsx_registry_t *reg = NULL;
    tdsx_trust_t *trust = NULL;
    tdsx_tls_ctx_t *tls = NULL;
    tdsx_bundle_info_t info = {0};
    char *current = NULL;
    int rc;
    if (!st)
        return TDSX_E_STATE;
    if ((rc = tdsx__bundle_verify(envelope, anchor_of(st), tdsx_bytes(st->chain, st->chain_len), 0,
                                  &b)) != 0)
        goto fail;
    tdsx__bundle_info(b, &info);
    if (st->b && info.serial < st->info.serial) {
        rc = TDSX_E_BUNDLE_ROLLBACK;
        goto fail;
    }
    if (st->b && info.serial == st->info.serial) {
        if (memcmp(info.sha256, st->info.sha256, 32) != 0)
            tdsx_log(TDSX_LOG_WARN, "bundle.same_serial_differs",
                     TDSX_KV_S("source", source ? source : ""), TDSX_KV_I("serial", info.serial),
                     TDSX_KV_S("action", "keeping the bundle in force"));
        tdsx__bundle_free(b);
        return 1;
    }
    /* A signing key the centre revoked must not bring in its own CRLs (without itself). */
    if ((rc = tdsx__bundle_check_signer(b, st->b)) != 0 || (rc = config_revokes(n, b)) != 0)
        goto fail;
    if (tdsx_now() >= info.expires_at) {
        rc = TDSX_E_BUNDLE_EXPIRED;
        goto fail;
    }
    tdsx_registry_error_t rerr;
    if ((rc = tdsx__bundle_registry(b, &reg, &rerr)) != 0 || (rc = build_trust(n, b, &trust)) != 0)
        goto fail;
    tdsx_tls_config_t tc = {n->cfg.credentials, NULL, NULL, trust, reg};
    if ((rc = tdsx_tls_ctx_new(&tc, &tls)) != 0)
        goto fail;
    /* Persist before swapping: after a crash the node starts with what it last enforced. */
    if (!(current = data_path(n, TDSX_BUNDLE_CURRENT))) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if ((rc = retire(n)) != 0)
        goto fail;
    if ((rc = tdsx_file_write(current, envelope.p, envelope.n, 0600, 1)) != 0) {
        unretire(n);
        goto fail;
    }
    n->tls = tls;
    n->trust = trust;
    n->registry = reg;
    tls = NULL;
    trust = NULL;
    reg = NULL;
    keep_history(n, info.serial, envelope);
    uint64_t old = st->info.serial;
    tdsx__bundle_free(st->b);
    st->b = b;
    b = NULL;
    st->info = info;
    st->expired = 0;
    tdsx_log(TDSX_LOG_INFO, "bundle.applied", TDSX_KV_S("source", source ? source : ""),
             TDSX_KV_I("serial", info.serial), TDSX_KV_I("previous", old),
             TDSX_KV_I("issued_at", info.issued_at), TDSX_KV_I("expires_at", info.expires_at),
             TDSX_KV_I("members", info.n_members), TDSX_KV_I("crls", info.n_crls),
             TDSX_KV_S("signer", info.signer));
    if (n->cfg.witness && !tdsx_registry_find(n->registry, n->cfg.witness))
        tdsx_log(TDSX_LOG_WARN, "bundle.witness_missing", TDSX_KV_S("witness", n->cfg.witness));
    else
        tdsx__node_witness_dial(n);
    arm(n);
    if (info.policy_floor > TDSX_BUNDLE_FLOOR_VERSION) {
        log_floor(n);
        close_all(n, TDSX_E_BUNDLE_FLOOR, tdsx_strerror(TDSX_E_BUNDLE_FLOOR));
    } else {
        recheck_peers(n);
    }
    collect_retired(n);
    tdsx_free(current);
    return 0;
fail:
    log_refused(n, rc, source, info.serial);
    tdsx_tls_ctx_free(tls);
    tdsx_trust_free(trust);
    tdsx_registry_free(reg);
    tdsx__bundle_free(b);
    tdsx_free(current);
    return rc;
}

int tdsx__bundle_reload(tdsx_node_t *n)
{
    uint8_t *p = NULL;
    size_t len = 0;
    if (!n->bundle || !n->cfg.bundle_file)
        return 1;
    int rc = tdsx_file_read(n->cfg.bundle_file, TDSX_BUNDLE_FILE_CAP, &p, &len);
    if (rc)
        log_refused(n, rc, n->cfg.bundle_file, 0);
    else
        rc = tdsx__bundle_apply(n, tdsx_bytes(p, len), n->cfg.bundle_file);
    tdsx_free(p);
    return rc;
}

void tdsx__bundle_state(const tdsx_node_t *n, uint64_t *serial, int64_t *issued_at,
                        int64_t *expires_at, int *expired)
{
    const struct tdsx_bundle_node_s *st = n->bundle;
    int have = st && st->b;
    if (serial)
        *serial = have ? st->info.serial : 0;
    if (issued_at)
        *issued_at = have ? st->info.issued_at : 0;
    if (expires_at)
        *expires_at = have ? st->info.expires_at : 0;
    if (expired)
        *expired = tdsx__bundle_check(n) == TDSX_E_BUNDLE_EXPIRED;
}

int tdsx__bundle_check(const tdsx_node_t *n)
{
    const struct tdsx_bundle_node_s *st = n->bundle;
    if (!st || !st->b)
        return 0;
    if (st->expired || tdsx_now() >= st->info.expires_at)
        return TDSX_E_BUNDLE_EXPIRED;
    if (st->info.policy_floor > TDSX_BUNDLE_FLOOR_VERSION)
        return TDSX_E_BUNDLE_FLOOR;
    return 0;
}

void tdsx__bundle_status(const tdsx_node_t *n, Tdsx__StatusResponse *st)
{
    uint64_t serial;
    int64_t issued, expires;
    int expired;
    tdsx__bundle_state(n, &serial, &issued, &expires, &expired);
    int stop = tdsx__bundle_check(n);
    st->bundle_serial = serial;
    st->bundle_issued_at = issued;
    st->bundle_expires_at = expires;
    st->bundle_state = !serial                         ? "none"
                       : stop == TDSX_E_BUNDLE_EXPIRED ? "expired"
                       : stop == TDSX_E_BUNDLE_FLOOR   ? "floor-outdated"
                                                       : "valid";
    st->bundle_policy_floor = serial ? n->bundle->info.policy_floor : 0;
    st->policy_floor = TDSX_BUNDLE_FLOOR_VERSION;
}
