/* tdsx ca init | issue | revoke | crl | verify — the province CA, run offline. */
#include "certs.h"
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLI_DAYS_MAX 36500
#define CLI_PATH_CAP 4096u

/* getopt_long reports through these; every command parses long options only. */
static int bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return tdsx_cli_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
    return tdsx_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
}

static void start_options(void)
{
    optind = 1;
    opterr = 0; /* our own one-line message instead of getopt's */
}

/* Parses a decimal integer in [min, max]; 0 on success. */
static int parse_num(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static void fmt_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

static char *join(const char *dir, const char *name)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, CLI_PATH_CAP);
    if (tdsx_buf_printf(&b, "%s/%s", dir, name) != 0) {
        tdsx_buf_free(&b);
        return NULL;
    }
    return tdsx_buf_take(&b, NULL);
}

/* Prints "<label> <path> sha256:<hex>" for the first certificate of dir/name. */
static int print_cert(const char *label, const char *dir, const char *name)
{
    STACK_OF(X509) *sk = NULL;
    uint8_t fp[32];
    char hex[65];
    char *path = join(dir, name);
    int rc = path ? tdsx_cert_load_file(path, &sk) : TDSX_E_NOMEM;
    if (rc == 0)
        rc = tdsx_cert_fingerprint(sk_X509_value(sk, 0), fp);
    if (rc == 0) {
        tdsx_hex_encode(hex, fp, sizeof fp);
        printf("%-13s %s  sha256:%s\n", label, path, hex);
    }
    sk_X509_pop_free(sk, X509_free);
    tdsx_free(path);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * tdsx ca init
 * ---------------------------------------------------------------------------------------- */

static void init_usage(FILE *f)
{
    fputs("usage: tdsx ca init --dir DIR --name NAME [--intermediate] [--days N] [--force]\n"
          "\n"
          "Creates a province root CA (Ed25519, self-signed) in DIR, and with --intermediate\n"
          "an issuing intermediate CA (path length 0) that then signs every node certificate.\n"
          "\n"
          "  --dir DIR        CA directory, created 0700; keys are written 0600\n"
          "  --name NAME      the CA's name (subject CN and O, UTF-8)\n"
          "  --intermediate   also create an issuing intermediate under the root\n"
          "  --days N         validity in days (default 3650)\n"
          "  --force          replace an existing CA in DIR (its index is lost)\n"
          "\n"
          "The root certificate DIR/root.pem is the trust anchor to give every node.\n"
          "Exit status: 0 created, 2 usage error or the CA could not be written.\n",
          f);
}

int tdsx_cmd_ca_init(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"intermediate", no_argument, NULL, 'i'},
                                             {"days", required_argument, NULL, 'D'},
                                             {"force", no_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    tdsx_ca_init_opts_t o = {0};
    const char *dir = NULL;
    if (tdsx_cli_wants_help(argc, argv)) {
        init_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'n': o.name = optarg; break;
        case 'i': o.intermediate = 1; break;
        case 'f': o.force = 1; break;
        case 'D':
            if (parse_num(optarg, 1, CLI_DAYS_MAX, &o.days))
                return tdsx_cli_usage(cmd, "--days must be 1..%d", CLI_DAYS_MAX);
            break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!dir || !o.name)
        return tdsx_cli_usage(cmd, "--dir and --name are required");
    if (!o.name[0])
        return tdsx_cli_usage(cmd, "--name must not be empty");
    int rc = tdsx_ca_init(dir, &o);
    if (rc) {
        tdsx_cli_fail(cmd, rc,
                      rc == TDSX_E_INVAL
                          ? "--name must be 1-64 characters of UTF-8 (53 with --intermediate)"
                          : dir);
        return TDSX_EXIT_ERROR;
    }
    printf("created CA \"%s\" in %s\n", o.name, dir);
    if ((rc = print_cert("anchor", dir, TDSX_CA_ROOT_CERT)) ||
        (o.intermediate && (rc = print_cert("intermediate", dir, TDSX_CA_INTER_CERT)))) {
        tdsx_cli_fail(cmd, rc, dir);
        return TDSX_EXIT_ERROR;
    }
    return TDSX_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * tdsx ca issue
 * ---------------------------------------------------------------------------------------- */

static void issue_usage(FILE *f)
{
    fputs("usage: tdsx ca issue --dir DIR --uscc USCC --org ORG --node NODE\n"
          "                     --role centre|brain|enterprise --out OUTDIR\n"
          "                     [--days N] [--not-before UNIX_SECONDS] [--force]\n"
          "                     [--registry FILE --endpoint HOST:PORT]\n"
          "\n"
          "Issues a node's credentials from the CA in DIR into OUTDIR (created 0700):\n"
          "  ca.pem, chain.pem         the root and any intermediate\n"
          "  auth.pem, auth.key        TLS certificate (clientAuth+serverAuth) and key\n"
          "  sign.pem, sign.key        statement-signing certificate (nonRepudiation) and key\n"
          "  enc.pub, enc.key          X25519 sealing key pair\n"
          "Private keys are written 0600. The subject is O=ORG, serialNumber=USCC, CN=NODE;\n"
          "the role is set as a certificate policy only the CA can write.\n"
          "\n"
          "  --uscc USCC              统一社会信用代码, validated (GB 32100-2015)\n"
          "  --org ORG                organisation name (UTF-8)\n"
          "  --node NODE              node name (no '/')\n"
          "  --role ROLE              centre, brain or enterprise\n"
          "  --days N                 validity in days (default 365)\n"
          "  --not-before SECONDS     start of validity (default now)\n"
          "  --force                  overwrite existing credential files\n"
          "  --registry FILE          also add the node to this member registry file,\n"
          "  --endpoint HOST:PORT     reachable at HOST:PORT (duplicates are refused)\n"
          "\n"
          "Exit status: 0 issued, 1 refused (invalid USCC, name), 2 usage or I/O error.\n",
          f);
}

int tdsx_cmd_ca_issue(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"uscc", required_argument, NULL, 'u'},
                                             {"org", required_argument, NULL, 'o'},
                                             {"node", required_argument, NULL, 'n'},
                                             {"role", required_argument, NULL, 'r'},
                                             {"out", required_argument, NULL, 'O'},
                                             {"days", required_argument, NULL, 'D'},
                                             {"not-before", required_argument, NULL, 'b'},
                                             {"force", no_argument, NULL, 'f'},
                                             {"registry", required_argument, NULL, 'R'},
                                             {"endpoint", required_argument, NULL, 'E'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    tdsx_issue_opts_t o = {0};
    const char *dir = NULL, *out = NULL, *role = NULL, *registry = NULL, *endpoint = NULL;
    tdsx_ca_t *ca = NULL;
    if (tdsx_cli_wants_help(argc, argv)) {
        issue_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'u': o.uscc = optarg; break;
        case 'o': o.org = optarg; break;
        case 'n': o.node = optarg; break;
        case 'r': role = optarg; break;
        case 'O': out = optarg; break;
        case 'f': o.force = 1; break;
        case 'R': registry = optarg; break;
        case 'E': endpoint = optarg; break;
        case 'D':
            if (parse_num(optarg, 1, CLI_DAYS_MAX, &o.days))
                return tdsx_cli_usage(cmd, "--days must be 1..%d", CLI_DAYS_MAX);
            break;
        case 'b':
            if (parse_num(optarg, 1, INT64_MAX / 2, &o.not_before))
                return tdsx_cli_usage(cmd, "--not-before must be seconds since the epoch");
            break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!dir || !o.uscc || !o.org || !o.node || !role || !out)
        return tdsx_cli_usage(cmd, "--dir, --uscc, --org, --node, --role and --out are required");
    if (tdsx_role_parse(role, &o.role) != 0)
        return tdsx_cli_usage(cmd, "--role must be centre, brain or enterprise");
    if (!registry != !endpoint)
        return tdsx_cli_usage(cmd, "--registry and --endpoint go together");
    int warning = 0;
    int rc = tdsx_uscc_check(o.uscc, &warning);
    if (rc)
        return tdsx_cli_fail(cmd, rc, o.uscc);
    if (warning)
        fprintf(stderr,
                "tdsx %s: warning: organisation code %.9s (positions 9-17) fails its GB 11714 "
                "check\n",
                cmd, o.uscc + 8);
    if ((rc = tdsx_ca_open(dir, &ca))) {
        tdsx_cli_fail(cmd, rc, dir);
        return TDSX_EXIT_ERROR;
    }
    rc = tdsx_ca_issue(ca, &o, out);
    tdsx_ca_free(ca);
    if (rc == TDSX_E_INVAL)
        return tdsx_cli_fail(cmd, rc,
                             "--org and --node must be 1-64 characters of UTF-8 without control "
                             "characters, and --node without '/'");
    if (rc)
        return tdsx_cli_fail(cmd, rc, out);
    printf("issued %s/%s (%s) into %s\n", o.uscc, o.node, tdsx_role_name(o.role), out);
    if ((rc = print_cert("auth", out, TDSX_CRED_AUTH_CERT)) ||
        (rc = print_cert("sign", out, TDSX_CRED_SIGN_CERT)))
        return tdsx_cli_fail(cmd, rc, out);
    /* Until the trust bundle carries the member registry, the CA appends to a local one. */
    if (registry)
        return tdsx__registry_append(cmd, registry, out, endpoint);
    return TDSX_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * tdsx ca revoke
 * ---------------------------------------------------------------------------------------- */

static void revoke_usage(FILE *f)
{
    fputs("usage: tdsx ca revoke --dir DIR --cert FILE\n"
          "\n"
          "Marks the certificate in FILE (the first one, PEM) as revoked in the index of the CA\n"
          "in DIR. The CA must have issued it: its signature is checked. Revoking again keeps\n"
          "the first date. Publish the change with 'tdsx ca crl'.\n"
          "\n"
          "Exit status: 0 revoked, 1 the CA did not issue this certificate, 2 usage or I/O "
          "error.\n",
          f);
}

int tdsx_cmd_ca_revoke(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"cert", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *dir = NULL, *cert = NULL;
    STACK_OF(X509) *sk = NULL;
    tdsx_ca_t *ca = NULL;
    uint8_t fp[32];
    char hex[65];
    if (tdsx_cli_wants_help(argc, argv)) {
        revoke_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'c': cert = optarg; break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!dir || !cert)
        return tdsx_cli_usage(cmd, "--dir and --cert are required");
    int rc = tdsx_cert_load_file(cert, &sk);
    int status = TDSX_EXIT_ERROR;
    if (rc) {
        tdsx_cli_fail(cmd, rc, cert);
        goto fail;
    }
    if ((rc = tdsx_ca_open(dir, &ca))) {
        tdsx_cli_fail(cmd, rc, dir);
        goto fail;
    }
    X509 *x = sk_X509_value(sk, 0);
    rc = tdsx_ca_revoke(ca, x);
    if (rc == TDSX_E_NOTFOUND) {
        tdsx_cli_fail(cmd, rc, "this CA did not issue the certificate");
        status = TDSX_EXIT_INVALID;
        goto fail;
    }
    if (rc || (rc = tdsx_cert_fingerprint(x, fp))) {
        status = tdsx_cli_fail(cmd, rc, cert);
        goto fail;
    }
    tdsx_hex_encode(hex, fp, sizeof fp);
    printf("revoked %s sha256:%s\n", cert, hex);
    status = TDSX_EXIT_OK;
fail:
    tdsx_ca_free(ca);
    sk_X509_pop_free(sk, X509_free);
    return status;
}

/* ------------------------------------------------------------------------------------------
 * tdsx ca crl
 * ---------------------------------------------------------------------------------------- */

static void crl_usage(FILE *f)
{
    fputs("usage: tdsx ca crl --dir DIR --out FILE [--days N] [--force]\n"
          "\n"
          "Writes the current CRLs of the CA in DIR to FILE (PEM): the root's, then the\n"
          "intermediate's when there is one. Each is a v2 CRL with a new CRL number.\n"
          "\n"
          "  --days N   days until nextUpdate (default 7)\n"
          "  --force    overwrite FILE\n"
          "\n"
          "Exit status: 0 written, 2 usage or I/O error.\n",
          f);
}

int tdsx_cmd_ca_crl(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},  {"out", required_argument, NULL, 'O'},
        {"days", required_argument, NULL, 'D'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *dir = NULL, *out = NULL;
    int64_t days = 0;
    int force = 0;
    tdsx_ca_t *ca = NULL;
    if (tdsx_cli_wants_help(argc, argv)) {
        crl_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'O': out = optarg; break;
        case 'f': force = 1; break;
        case 'D':
            if (parse_num(optarg, 1, CLI_DAYS_MAX, &days))
                return tdsx_cli_usage(cmd, "--days must be 1..%d", CLI_DAYS_MAX);
            break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!dir || !out)
        return tdsx_cli_usage(cmd, "--dir and --out are required");
    int rc = tdsx_ca_open(dir, &ca);
    if (rc) {
        tdsx_cli_fail(cmd, rc, dir);
        return TDSX_EXIT_ERROR;
    }
    rc = tdsx_ca_crl(ca, days, out, force);
    tdsx_ca_free(ca);
    if (rc) {
        tdsx_cli_fail(cmd, rc, out);
        return TDSX_EXIT_ERROR;
    }
    printf("wrote CRL to %s\n", out);
    return TDSX_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * tdsx ca verify
 * ---------------------------------------------------------------------------------------- */

static void verify_usage(FILE *f)
{
    fputs("usage: tdsx ca verify --anchor ROOT.pem --cert FILE [--chain FILE] [--crl FILE]\n"
          "                      [--purpose auth|sign] [--role ROLE] [--at UNIX_SECONDS]\n"
          "                      [--require-crl]\n"
          "\n"
          "Verifies a node certificate (the first in FILE; any others are offered as\n"
          "intermediates) against the trust anchor: chain, validity, revocation when a CRL\n"
          "is given, key usage for the purpose, role, subject and USCC. Prints the identity.\n"
          "\n"
          "  --anchor FILE      trusted root certificate(s)\n"
          "  --chain FILE       intermediate certificates (may be empty)\n"
          "  --crl FILE         CRLs (PEM); revocation is checked when given\n"
          "  --purpose P        auth (TLS) or sign (statements); default: any\n"
          "  --role ROLE        require centre, brain or enterprise\n"
          "  --at SECONDS       verify at this time instead of now\n"
          "  --require-crl      fail when a CA in the chain has no CRL\n"
          "\n"
          "Exit status: 0 valid, 1 invalid (the reason code is printed), 2 could not run.\n",
          f);
}

/* Loads the trust set; every failure here means the verification could not run. */
static int load_trust(const char *cmd, const char *anchor, const char *chain, const char *crl,
                      tdsx_trust_t **out)
{
    tdsx_trust_t *t = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    const char *what = anchor;
    int rc = tdsx_trust_new(&t);
    if (rc == 0)
        rc = tdsx_trust_add_anchors_file(t, anchor);
    if (rc == 0 && chain) {
        what = chain;
        rc = tdsx_file_read(chain, 1u << 20, &data, &len);
        if (rc == 0)
            rc = tdsx_trust_add_intermediates_pem(t, data, len);
        tdsx_free(data);
    }
    if (rc == 0 && crl) {
        what = crl;
        rc = tdsx_trust_add_crls_file(t, crl);
    }
    if (rc) {
        tdsx_cli_fail(cmd, rc, what);
        tdsx_trust_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static void print_identity(const tdsx_identity_t *id)
{
    char idstr[TDSX_USCC_LEN + 1 + sizeof id->node];
    char nb[32], na[32], hex[65];
    tdsx_identity_id(id, idstr, sizeof idstr);
    fmt_time(id->not_before, nb);
    fmt_time(id->not_after, na);
    tdsx_hex_encode(hex, id->fingerprint, sizeof id->fingerprint);
    printf("valid\n"
           "id           %s\n"
           "org          %s\n"
           "role         %s\n"
           "not_before   %s\n"
           "not_after    %s\n"
           "fingerprint  %s\n",
           idstr, id->org, tdsx_role_name(id->role), nb, na, hex);
}

int tdsx_cmd_ca_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"anchor", required_argument, NULL, 'a'},  {"cert", required_argument, NULL, 'c'},
        {"chain", required_argument, NULL, 'C'},   {"crl", required_argument, NULL, 'l'},
        {"purpose", required_argument, NULL, 'p'}, {"role", required_argument, NULL, 'r'},
        {"at", required_argument, NULL, 't'},      {"require-crl", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *anchor = NULL, *cert = NULL, *chain = NULL, *crl = NULL;
    tdsx_verify_opts_t o = {0};
    tdsx_trust_t *trust = NULL;
    tdsx_identity_t id;
    uint8_t *pem = NULL;
    size_t len = 0;
    if (tdsx_cli_wants_help(argc, argv)) {
        verify_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': anchor = optarg; break;
        case 'c': cert = optarg; break;
        case 'C': chain = optarg; break;
        case 'l': crl = optarg; break;
        case 'R': o.require_crl = 1; break;
        case 'p':
            if (strcmp(optarg, "auth") == 0)
                o.purpose = TDSX_PURPOSE_AUTH;
            else if (strcmp(optarg, "sign") == 0)
                o.purpose = TDSX_PURPOSE_SIGN;
            else
                return tdsx_cli_usage(cmd, "--purpose must be auth or sign");
            break;
        case 'r':
            if (tdsx_role_parse(optarg, &o.role) != 0)
                return tdsx_cli_usage(cmd, "--role must be centre, brain or enterprise");
            break;
        case 't':
            if (parse_num(optarg, 1, INT64_MAX / 2, &o.at))
                return tdsx_cli_usage(cmd, "--at must be seconds since the epoch");
            break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!anchor || !cert)
        return tdsx_cli_usage(cmd, "--anchor and --cert are required");
    if (load_trust(cmd, anchor, chain, crl, &trust))
        return TDSX_EXIT_ERROR;
    int status = TDSX_EXIT_ERROR;
    int rc = tdsx_file_read(cert, 1u << 20, &pem, &len);
    if (rc) {
        tdsx_cli_fail(cmd, rc, cert);
        goto fail;
    }
    rc = tdsx_cert_verify_pem(trust, pem, len, &o, &id);
    if (rc) {
        status = tdsx_cli_fail(cmd, rc, cert);
        goto fail;
    }
    if (id.org_warning)
        fprintf(stderr,
                "tdsx %s: warning: organisation code %.9s (positions 9-17) fails its GB 11714 "
                "check\n",
                cmd, id.uscc + 8);
    print_identity(&id);
    status = TDSX_EXIT_OK;
fail:
    tdsx_free(pem);
    tdsx_trust_free(trust);
    return status;
}
