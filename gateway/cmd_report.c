/*
 * tdsx report make | show | submit — trust-status reports (SPEC §12, gateway/report.h).
 *
 * make and submit ask the daemon (it holds the sign key and the log); show is offline: it
 * parses a report file and prints its fields, verifying the signature with --key (a note
 * verifier key), --cert (a PEM sign certificate) or -c CONFIG (the node's own sign
 * certificate in its credentials directory).
 */
#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "report.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define REPORT_TIMEOUT_MS 60000 /* the tally reads the whole range; the witness has 10 s */

/* An Error answer: could not ask (busy, gone, nothing published yet) versus refused. */
static int report_error_exit(int rc)
{
    return rc == TDSX_E_TIMEOUT || rc == TDSX_E_CLOSED || rc == TDSX_E_BUSY ||
                   rc == TDSX_E_NOTFOUND || rc == TDSX_E_IO || rc == TDSX_E_STATE
               ? TDSX_EXIT_ERROR
               : TDSX_EXIT_INVALID;
}

/* Sends req and waits for the ReportResponse (tdsx__cli_ask). */
static int call(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req, tdsx_arena_t **arena,
                Tdsx__LocalResponse **resp)
{
    return tdsx__cli_ask(t, req, REPORT_TIMEOUT_MS, TDSX__LOCAL_RESPONSE__BODY_REPORT,
                         report_error_exit, arena, resp);
}

static uint64_t total(const tdsx_report_counts_t *c, unsigned dir)
{
    uint64_t n = 0;
    for (unsigned g = 0; g < TDSX_REPORT_GRADES; g++)
        for (unsigned k = 0; k < TDSX_REPORT_ROLES; k++)
            n += c->transfers[dir][g][k];
    return n;
}

/* A one-paragraph summary of a report the daemon just made or submitted. */
static void summary(const Tdsx__ReportResponse *rr)
{
    tdsx_report_t *r = tdsx_calloc(1, sizeof *r);
    printf("report     %" PRIu64 "\n", rr->sequence);
    printf("file       %s\n", rr->path);
    if (r && tdsx_report_open(tdsx_bytes(rr->note.data, rr->note.len), NULL, r) == 0) {
        const tdsx_report_counts_t *c = &r->counts;
        printf("range      %" PRIu64 " .. %" PRIu64 " (%" PRIu64 " entries)\n", r->first, r->size,
               r->size - r->first);
        tdsx__cli_print_time(11, "from", r->period_from);
        tdsx__cli_print_time(11, "to", r->period_to);
        printf("transfers  in %" PRIu64 ", out %" PRIu64 ", relayed %" PRIu64 "\n",
               total(c, TDSX_REPORT_IN), total(c, TDSX_REPORT_OUT), total(c, TDSX_REPORT_RELAYED));
        printf(
            "denials    %zu rule%s; unacknowledged %" PRIu64 "; integrity failures %" PRIu64 "\n",
            c->n_denials, c->n_denials == 1 ? "" : "s", c->unacknowledged, c->integrity_failures);
    }
    printf("logged     index %" PRIu64 "\n", rr->log_index);
    if (*rr->witness)
        printf("cosigned   by %s\n", rr->witness);
    tdsx_free(r);
}

/* Sends a make or submit request and prints the report the daemon answers with. */
static int ask_and_summarise(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req)
{
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = call(t, req, &arena, &resp);
    if (code)
        return code;
    summary(resp->report);
    tdsx_arena_free(arena);
    return TDSX_EXIT_OK;
}

int tdsx_cmd_report_make(int argc, char **argv)
{
    static const struct option opts[] = {
        TDSX_CLI_SOCKET_OPTIONS, {"period", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0}};
    static const char usage[] =
        "usage: tdsx report make [--socket PATH | -c CONFIG] [--period FROM TO]\n"
        "Makes the node's next trust-status report (SPEC 12): counts the log from the previous\n"
        "report's checkpoint to the last published one, signs it with the node's sign key,\n"
        "stores it as <data_dir>/reports/<seq>.note and appends it to the log. FROM and TO are\n"
        "unix seconds (default: from the previous report's end to now).\n"
        "Exit 0 made, 1 refused (e.g. the log has not grown since the last report), 2 could\n"
        "not ask the daemon.\n";
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    Tdsx__ReportMakeRequest mk = TDSX__REPORT_MAKE_REQUEST__INIT;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        uint64_t from, to;
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'h': fputs(usage, stdout); return TDSX_EXIT_OK;
        case 'p':
            if (optind >= argc || tdsx__cli_u64(optarg, 0, UINT64_MAX, &from) != 0 ||
                tdsx__cli_u64(argv[optind], 0, UINT64_MAX, &to) != 0 || from > INT64_MAX ||
                to > INT64_MAX)
                return tdsx_cli_usage(t.cmd, "--period takes two unix times, FROM TO");
            optind++;
            mk.period_from = (int64_t)from;
            mk.period_to = (int64_t)to;
            if (mk.period_to < mk.period_from || mk.period_to == 0)
                return tdsx_cli_usage(t.cmd, "--period: TO must not be before FROM");
            break;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(t.cmd, "unexpected argument '%s'", argv[optind]);
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_REPORT_MAKE;
    req.report_make = &mk;
    return ask_and_summarise(&t, &req);
}

int tdsx_cmd_report_submit(int argc, char **argv)
{
    static const struct option opts[] = {TDSX_CLI_SOCKET_OPTIONS, {NULL, 0, NULL, 0}};
    static const char usage[] =
        "usage: tdsx report submit [--socket PATH | -c CONFIG] [SEQ]\n"
        "Submits report SEQ (default: the latest) to the node's witness, the centre, which\n"
        "checks it and the checkpoint it states (the witness rules of SPEC 11) and cosigns;\n"
        "the cosigned checkpoint is stored as <data_dir>/reports/<seq>.cosigned and logged.\n"
        "Exit 0 cosigned, 1 refused by the centre, 2 could not run (no witness configured or\n"
        "connected, no such report, daemon not reachable).\n";
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    Tdsx__ReportSubmitRequest sb = TDSX__REPORT_SUBMIT_REQUEST__INIT;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        if (o == 'h') {
            fputs(usage, stdout);
            return TDSX_EXIT_OK;
        }
        return tdsx_cli_usage(t.cmd, "unknown option");
    }
    if (optind < argc &&
        (tdsx__cli_u64(argv[optind++], 0, UINT64_MAX, &sb.sequence) != 0 || sb.sequence == 0))
        return tdsx_cli_usage(t.cmd, "SEQ is a report sequence number (1, 2, ...)");
    if (optind != argc)
        return tdsx_cli_usage(t.cmd, "unexpected argument '%s'", argv[optind]);
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_REPORT_SUBMIT;
    req.report_submit = &sb;
    return ask_and_summarise(&t, &req);
}

/* ---- show --------------------------------------------------------------------------------------
 */

/* The raw Ed25519 key of the first certificate in a PEM file and the node id its subject
 * names ("<serialNumber>/<CN>"): a report is shown as verified only under the name of the
 * certificate that verified it. */
static int pem_key(const char *path, uint8_t pk[TDSX_ED25519_PK_LEN], char *id, size_t id_size)
{
    STACK_OF(X509) *sk = NULL;
    int rc = tdsx_cert_load_file(path, &sk);
    if (rc)
        return rc;
    unsigned char *der = NULL;
    X509 *x = sk_X509_num(sk) > 0 ? sk_X509_value(sk, 0) : NULL;
    int n = x ? i2d_X509(x, &der) : -1;
    rc = n > 0 ? tdsx__log_cert_key(tdsx_bytes(der, (size_t)n), pk) : TDSX_E_CERT_PARSE;
    char uscc[64], cn[TDSX_ID_SIZE];
    const X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    if (rc == 0 &&
        (!name || X509_NAME_get_text_by_NID(name, NID_serialNumber, uscc, sizeof uscc) <= 0 ||
         X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof cn) <= 0 ||
         snprintf(id, id_size, "%s/%s", uscc, cn) >= (int)id_size))
        rc = TDSX_E_CERT_PARSE;
    OPENSSL_free(der);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static void print_hash(const char *label, const tdsx_hash_t *h)
{
    char hex[2 * TDSX_HASH_LEN + 1];
    tdsx_hex_encode(hex, h->b, TDSX_HASH_LEN);
    printf("%-22s %s\n", label, hex);
}

static void print_report(const tdsx_report_t *r)
{
    const tdsx_report_counts_t *c = &r->counts;
    printf("%-22s %s (%s)\n", "node", r->node, tdsx_role_name(r->role));
    printf("%-22s %" PRIu64 "\n", "sequence", r->sequence);
    tdsx__cli_print_time(23, "period from", r->period_from);
    tdsx__cli_print_time(23, "period to", r->period_to);
    printf("%-22s %" PRIu64 " .. %" PRIu64 "\n", "log range", r->first, r->size);
    printf("%-22s %" PRIu64 "\n", "checkpoint size", r->size);
    print_hash("checkpoint root", &r->root);
    printf("%-22s %" PRIu64 "\n", "previous checkpoint", r->prev_size);
    print_hash("previous root", &r->prev_root);
    print_hash("previous report", &r->prev_report);
    printf("%-22s %" PRIu64 "%s\n", "bundle serial", r->bundle_serial,
           r->bundle_serial ? "" : " (no bundle)");
    tdsx__cli_print_time(23, "bundle expires", r->bundle_expires);
    tdsx__cli_print_time(23, "auth cert not after", r->auth_not_after);
    tdsx__cli_print_time(23, "sign cert not after", r->sign_not_after);
    printf("%-22s %s\n", "certificate status", tdsx_report_cert_status_name(r->cert_status));
    print_hash("policy", &r->policy);
    printf("%-22s %s\n", "software", r->software);
    printf("transfers (counterpart role: centre brain enterprise)\n");
    for (unsigned d = 0; d < TDSX_REPORT_DIRS; d++)
        for (unsigned g = 0; g < TDSX_REPORT_GRADES; g++) {
            const uint64_t *v = c->transfers[d][g];
            if (v[0] || v[1] || v[2])
                printf("  %-8s %-10s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                       tdsx_report_dir_name(d), tdsx_report_grade_name(g), v[0], v[1], v[2]);
        }
    printf("  in %" PRIu64 ", out %" PRIu64 ", relayed %" PRIu64 " in all\n",
           total(c, TDSX_REPORT_IN), total(c, TDSX_REPORT_OUT), total(c, TDSX_REPORT_RELAYED));
    printf("denials                %zu\n", c->n_denials);
    for (size_t i = 0; i < c->n_denials; i++)
        printf("  %-4s %s: %" PRIu64 "\n", tdsx_report_dir_name(c->denials[i].dir),
               c->denials[i].rule, c->denials[i].count);
    printf("%-22s active %" PRIu64 ", terminated %" PRIu64 ", expired %" PRIu64 "\n", "agreements",
           c->agreements_active, c->agreements_terminated, c->agreements_expired);
    printf("%-22s %" PRIu64 "\n", "unacknowledged", c->unacknowledged);
    printf("%-22s %" PRIu64 "\n", "integrity failures", c->integrity_failures);
    for (size_t i = 0; i < c->n_peers; i++)
        printf("%-22s %s (%s)\n", i ? "" : "peers", c->peers[i].id,
               tdsx_role_name(c->peers[i].role));
}

int tdsx_cmd_report_show(int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"cert", required_argument, NULL, 'C'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static const char usage[] =
        "usage: tdsx report show FILE [--key VKEY | --cert SIGN.pem | -c CONFIG]\n"
        "Prints a trust-status report. With --key (the node's note verifier key, as `tdsx log\n"
        "status` prints it), --cert (its sign certificate) or -c (the node's own sign\n"
        "certificate from the credentials in its config) the signature is verified first;\n"
        "without, the report is only parsed and says so.\n"
        "Exit 0 shown (and verified when asked), 1 the file is not a valid report or the\n"
        "signature does not verify, 2 could not read the file or key.\n";
    const char *cmd = argv[0], *vkey = NULL, *cert = NULL, *conf = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': vkey = optarg; break;
        case 'C': cert = optarg; break;
        case 'c': conf = optarg; break;
        case 'h': fputs(usage, stdout); return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind + 1 != argc)
        return tdsx_cli_usage(cmd, "one FILE is required");
    if (!!vkey + !!cert + !!conf > 1)
        return tdsx_cli_usage(cmd, "--key, --cert and -c are alternatives");
    const char *file = argv[optind];
    uint8_t *data = NULL;
    size_t len = 0;
    int code = TDSX_EXIT_OK;
    tdsx_report_t *r = tdsx_calloc(1, sizeof *r);
    char *cert_path = NULL;
    int rc = r ? tdsx_file_read(file, TDSX_NOTE_MAX, &data, &len) : TDSX_E_NOMEM;
    if (rc) {
        code = tdsx_cli_fail(cmd, rc, file);
        goto done;
    }
    if (conf) {
        tdsx_config_t cfg;
        tdsx_config_diags_t diags;
        memset(&diags, 0, sizeof diags);
        rc = tdsx_config_load(&cfg, conf, &diags);
        if (rc) {
            tdsx_config_free(&cfg);
            code = tdsx_cli_fail(cmd, rc, conf);
            goto done;
        }
        tdsx_buf_t b;
        tdsx_buf_init(&b, 8192);
        if (tdsx_buf_printf(&b, "%s/%s", cfg.credentials, TDSX_CRED_SIGN_CERT) == 0)
            cert_path = tdsx_buf_take(&b, NULL);
        tdsx_buf_free(&b);
        tdsx_config_free(&cfg);
        cert = cert_path;
        if (!cert) {
            code = tdsx_cli_fail(cmd, TDSX_E_NOMEM, conf);
            goto done;
        }
    }
    tdsx_note_verifier_t v;
    char id[TDSX_ID_SIZE] = "";
    if (vkey && tdsx_note_verifier_parse(tdsx_bytes(vkey, strlen(vkey)), &v) != 0) {
        code = tdsx_cli_usage(cmd, "--key is not a note verifier key");
        goto done;
    }
    if (cert) {
        /* The key name is the node the report names: parse first, then verify under it. */
        uint8_t pk[TDSX_ED25519_PK_LEN];
        rc = tdsx_report_open(tdsx_bytes(data, len), NULL, r);
        if (rc == 0 && (rc = pem_key(cert, pk, id, sizeof id)) != 0) {
            code = tdsx_cli_fail(cmd, rc, cert);
            goto done;
        }
        if (rc == 0)
            rc = tdsx_note_verifier_init(&v, r->node, TDSX_NOTE_ED25519, pk);
    }
    if (rc == 0)
        rc = tdsx_report_open(tdsx_bytes(data, len), vkey || cert ? &v : NULL, r);
    if (rc) {
        fprintf(stderr, "tdsx %s: %s: %s (%s)\n", cmd, file, tdsx_strerror(rc), tdsx_err_name(rc));
        code = TDSX_EXIT_INVALID;
        goto done;
    }
    /* The certificate's key alone would vouch for any name its holder signed under. */
    if (cert && strcmp(id, r->node) != 0) {
        fprintf(stderr, "tdsx %s: %s: the report names %s, the certificate is %s's (%s)\n", cmd,
                file, r->node, id, tdsx_err_name(TDSX_E_REPORT));
        code = TDSX_EXIT_INVALID;
        goto done;
    }
    printf("%-22s %s\n", "signature",
           vkey || cert ? "verified (sign key of the node named below)" : "NOT VERIFIED");
    print_report(r);
done:
    tdsx_free(cert_path);
    tdsx_free(data);
    tdsx_free(r);
    return code;
}
