/* tdsx bundle make | sign | show — the centre's signed trust bundle (SPEC §3). */
#include "bundle.h"
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CLI_PATH_CAP 4096u
#define CLI_MAX_LIST 256 /* --creds and --crl given at most this many times each */
#define CLI_VALID_MAX (366ll * 86400ll)

static int bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return tdsx_cli_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
    return tdsx_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
}

static void start_options(void)
{
    optind = 1;
    opterr = 0;
}

/* "90", "90s", "30m", "24h", "7d": seconds, 1..CLI_VALID_MAX. */
static int parse_valid(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long unit = 1;
    if (errno || end == s)
        return -1;
    if (*end) {
        switch (*end) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return -1;
        }
        if (end[1])
            return -1;
    }
    if (v == 0 || v > (unsigned long long)CLI_VALID_MAX / unit)
        return -1;
    *out = (int64_t)(v * unit);
    return 0;
}

/* Writes the bytes to `out`, or to publish_dir/bundle.tdsx, atomically. */
static int write_out(const char *cmd, const char *out, const char *publish, tdsx_buf_t *b,
                     unsigned mode)
{
    char path[CLI_PATH_CAP];
    if (!out) {
        int n = snprintf(path, sizeof path, "%s/%s", publish, TDSX_BUNDLE_PUBLISHED);
        if (n < 0 || (size_t)n >= sizeof path)
            return tdsx_cli_fail(cmd, TDSX_E_TOOBIG, publish);
        out = path;
    }
    int rc = tdsx_file_write(out, b->p, b->len, mode, 1);
    if (rc)
        return tdsx_cli_fail(cmd, rc, out);
    printf("wrote %s (%zu bytes)\n", out, b->len);
    return TDSX_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------
 * tdsx bundle make
 * ---------------------------------------------------------------------------------------- */

static void make_usage(FILE *f)
{
    fputs("usage: tdsx bundle make --ca CADIR --registry FILE --serial N --out FILE\n"
          "                        [--creds DIR]... [--crl FILE]... [--witness ID]\n"
          "                        [--valid DURATION] [--policy-floor V] [--sign CREDDIR]\n"
          "\n"
          "Builds the trust bundle (SPEC 3) from the CA in CADIR and the member registry\n"
          "FILE: root and intermediate certificates, the CA's current CRLs (issued now, or\n"
          "the --crl files), every member, log and witness keys, the policy floor, serial,\n"
          "issued-at and expires-at. Without --sign the output is the unsigned bundle for\n"
          "'tdsx bundle sign'; with --sign it is signed at once by that centre.\n"
          "\n"
          "  --creds DIR        a member's credential directory: gives its organisation name\n"
          "                     and its sign key as a log key (repeatable)\n"
          "  --crl FILE         PEM CRLs to carry instead of issuing new ones (repeatable)\n"
          "  --witness ID       the member whose sign key is the witness key (needs --creds)\n"
          "  --valid DURATION   lifetime: 90s, 30m, 24h (default), 7d; at most 366d\n"
          "  --policy-floor V   minimum policy floor version (default 0)\n"
          "  --sign CREDDIR     sign with this centre's sign key (as 'tdsx bundle sign')\n"
          "\n"
          "Exit status: 0 written, 1 refused (bad input), 2 usage or I/O error.\n",
          f);
}

int tdsx_cmd_bundle_make(int argc, char **argv)
{
    static const struct option longopts[] = {{"ca", required_argument, NULL, 'a'},
                                             {"registry", required_argument, NULL, 'r'},
                                             {"serial", required_argument, NULL, 's'},
                                             {"out", required_argument, NULL, 'O'},
                                             {"creds", required_argument, NULL, 'C'},
                                             {"crl", required_argument, NULL, 'L'},
                                             {"witness", required_argument, NULL, 'w'},
                                             {"valid", required_argument, NULL, 'v'},
                                             {"policy-floor", required_argument, NULL, 'p'},
                                             {"sign", required_argument, NULL, 'S'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *creds[CLI_MAX_LIST], *crls[CLI_MAX_LIST];
    tdsx_bundle_make_opts_t o = {0};
    const char *out = NULL, *sign = NULL;
    uint64_t v;
    if (tdsx_cli_wants_help(argc, argv)) {
        make_usage(stdout);
        return TDSX_EXIT_OK;
    }
    o.creds = creds;
    o.crl_files = crls;
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': o.ca_dir = optarg; break;
        case 'r': o.registry = optarg; break;
        case 'O': out = optarg; break;
        case 'w': o.witness = optarg; break;
        case 'S': sign = optarg; break;
        case 's':
            if (tdsx__cli_u64(optarg, 1, UINT64_MAX, &o.serial))
                return tdsx_cli_usage(cmd, "--serial must be a positive integer");
            break;
        case 'p':
            if (tdsx__cli_u64(optarg, 0, UINT32_MAX, &v))
                return tdsx_cli_usage(cmd, "--policy-floor must be 0..%u", UINT32_MAX);
            o.policy_floor = (uint32_t)v;
            break;
        case 'v':
            if (parse_valid(optarg, &o.valid))
                return tdsx_cli_usage(cmd, "--valid takes 1s..366d (e.g. 90s, 30m, 24h, 7d)");
            break;
        case 'C':
            if (o.n_creds == CLI_MAX_LIST)
                return tdsx_cli_usage(cmd, "--creds given more than %d times", CLI_MAX_LIST);
            creds[o.n_creds++] = optarg;
            break;
        case 'L':
            if (o.n_crl_files == CLI_MAX_LIST)
                return tdsx_cli_usage(cmd, "--crl given more than %d times", CLI_MAX_LIST);
            crls[o.n_crl_files++] = optarg;
            break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o.ca_dir || !o.registry || !o.serial || !out)
        return tdsx_cli_usage(cmd, "--ca, --registry, --serial and --out are required");
    if (o.policy_floor > TDSX_BUNDLE_FLOOR_VERSION)
        fprintf(stderr,
                "tdsx %s: warning: nodes of this version enforce policy floor %u; policy floor "
                "%u stops their exchange (TDSX_E_BUNDLE_FLOOR)\n",
                cmd, TDSX_BUNDLE_FLOOR_VERSION, (unsigned)o.policy_floor);
    tdsx_buf_t b, s;
    char what[CLI_PATH_CAP] = "";
    tdsx_buf_init(&b, TDSX_STATEMENT_MAX);
    tdsx_buf_init(&s, TDSX_BUNDLE_FILE_CAP);
    int rc = tdsx__bundle_make(&o, &b, what, sizeof what);
    int exit_code;
    if (rc)
        exit_code = tdsx_cli_fail(cmd, rc, what[0] ? what : NULL);
    else if (sign && (rc = tdsx__bundle_sign(tdsx_buf_bytes(&b), sign, &s)) != 0)
        exit_code = tdsx_cli_fail(cmd, rc, sign);
    else
        exit_code = write_out(cmd, out, NULL, sign ? &s : &b, 0644);
    tdsx_buf_free(&b);
    tdsx_buf_free(&s);
    return exit_code;
}

/* ------------------------------------------------------------------------------------------
 * tdsx bundle sign
 * ---------------------------------------------------------------------------------------- */

static void sign_usage(FILE *f)
{
    fputs("usage: tdsx bundle sign --creds CENTRE_CREDDIR --in FILE (--out FILE | --publish DIR)\n"
          "\n"
          "Signs the unsigned bundle FILE (from 'tdsx bundle make') with the centre's sign\n"
          "key as a TrustBundle statement, and writes the published form: the envelope and\n"
          "the centre's sign certificate chain. --publish DIR writes DIR/bundle.tdsx (the\n"
          "node's publish_dir, served over HTTP at /pub/bundle.tdsx).\n"
          "The sign certificate must be a centre's: any other member is refused.\n"
          "\n"
          "Exit status: 0 written, 1 refused (not a bundle, not a centre), 2 usage or I/O "
          "error.\n",
          f);
}

int tdsx_cmd_bundle_sign(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"creds", required_argument, NULL, 'C'}, {"in", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'O'},   {"publish", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *creds = NULL, *in = NULL, *out = NULL, *publish = NULL;
    if (tdsx_cli_wants_help(argc, argv)) {
        sign_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'C': creds = optarg; break;
        case 'i': in = optarg; break;
        case 'O': out = optarg; break;
        case 'P': publish = optarg; break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind < argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!creds || !in || (!out == !publish))
        return tdsx_cli_usage(cmd, "--creds, --in and one of --out or --publish are required");
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(in, TDSX_STATEMENT_MAX, &p, &len);
    if (rc)
        return tdsx_cli_fail(cmd, rc, in);
    tdsx_buf_t s;
    tdsx_buf_init(&s, TDSX_BUNDLE_FILE_CAP);
    rc = tdsx__bundle_sign(tdsx_bytes(p, len), creds, &s);
    int exit_code = rc ? tdsx_cli_fail(cmd, rc, rc == TDSX_E_BUNDLE ? in : creds)
                       : write_out(cmd, out, publish, &s, 0644);
    tdsx_free(p);
    tdsx_buf_free(&s);
    return exit_code;
}

/* ------------------------------------------------------------------------------------------
 * tdsx bundle show
 * ---------------------------------------------------------------------------------------- */

static void show_usage(FILE *f)
{
    fputs("usage: tdsx bundle show FILE [--anchor ROOT.pem [--chain CHAIN.pem]]\n"
          "\n"
          "Prints a signed trust bundle. With --anchor it is verified as a node would: the\n"
          "signer must be a centre's sign certificate chaining to the anchor and not revoked\n"
          "by the bundle's own CRLs, and the signature must hold. Without --anchor nothing is\n"
          "trusted: the output says NO under 'verified'.\n"
          "\n"
          "Exit status: 0 shown (and verified when asked; an expired bundle still shows),\n"
          "1 invalid or refused, 2 usage or I/O error.\n",
          f);
}

int tdsx_cmd_bundle_show(int argc, char **argv)
{
    static const struct option longopts[] = {{"anchor", required_argument, NULL, 'a'},
                                             {"chain", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *anchor = NULL, *chain = NULL;
    if (tdsx_cli_wants_help(argc, argv)) {
        show_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': anchor = optarg; break;
        case 'c': chain = optarg; break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (optind + 1 != argc)
        return tdsx_cli_usage(cmd, "exactly one bundle FILE is required");
    if (chain && !anchor)
        return tdsx_cli_usage(cmd, "--chain needs --anchor");
    const char *file = argv[optind];
    uint8_t *p = NULL, *a = NULL, *ch = NULL;
    size_t len = 0, alen = 0, chlen = 0;
    tdsx_bundle_t *b = NULL;
    tdsx_buf_t text;
    tdsx_buf_init(&text, 64u * 1024u * 1024u);
    int exit_code;
    const char *what = file;
    int rc = tdsx_file_read(file, TDSX_BUNDLE_FILE_CAP, &p, &len);
    if (rc == 0 && anchor && (rc = tdsx_file_read(anchor, 1u << 20, &a, &alen)) != 0)
        what = anchor;
    if (rc == 0 && chain && (rc = tdsx_file_read(chain, 1u << 20, &ch, &chlen)) != 0)
        what = chain;
    if (rc == 0)
        rc = anchor ? tdsx__bundle_verify(tdsx_bytes(p, len), tdsx_bytes(a, alen),
                                          tdsx_bytes(ch, chlen), 0, &b)
                    : tdsx__bundle_decode(tdsx_bytes(p, len), &b);
    if (rc == 0)
        rc = tdsx__bundle_format(b, 0, &text);
    if (rc) {
        exit_code = tdsx_cli_fail(cmd, rc, what);
    } else {
        fwrite(text.p, 1, text.len, stdout);
        exit_code = TDSX_EXIT_OK;
    }
    tdsx__bundle_free(b);
    tdsx_buf_free(&text);
    tdsx_free(p);
    tdsx_free(a);
    tdsx_free(ch);
    return exit_code;
}
