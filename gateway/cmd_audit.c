/*
 * tdsx audit export | verify — the evidence bundle and the offline auditor (SPEC §13). Thin:
 * the work is in audit.c.
 */
#include "audit.h"
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tdsx_cmd_audit_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"out", required_argument, NULL, 'o'},
        {"from", required_argument, NULL, 'f'},   {"to", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *cmd = "audit export", *conf = NULL, *out = NULL;
    uint64_t from = 0, to = UINT64_MAX;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': conf = optarg; break;
        case 'o': out = optarg; break;
        case 'f':
            if (tdsx__cli_u64(optarg, 0, UINT64_MAX, &from))
                return tdsx_cli_usage(cmd, "--from takes an entry index");
            break;
        case 't':
            if (tdsx__cli_u64(optarg, 0, UINT64_MAX, &to))
                return tdsx_cli_usage(cmd, "--to takes an entry index");
            break;
        case 'h':
            printf("usage: tdsx audit export -c CONFIG --out DIR [--from SEQ --to SEQ]\n\n"
                   "Writes the node's evidence bundle into DIR (new or empty, 0700): the log\n"
                   "tiles and the entries from SEQ (default 0) up to but not including SEQ\n"
                   "(default: the head), the head, published and cosigned checkpoints with the\n"
                   "consistency proofs between them, the certificates, CRLs, trust bundle and\n"
                   "reports, and a MANIFEST of SHA-256 sums. Reads files only: the daemon may\n"
                   "keep running. Exit 0 written, 1 refused, 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (!conf || !out || optind != argc)
        return tdsx_cli_usage(cmd, "needs -c CONFIG and --out DIR");
    if (from > to)
        return tdsx_cli_usage(cmd, "--from is after --to");
    tdsx_config_t c;
    tdsx_config_diags_t diags;
    int rc = tdsx_config_load(&c, conf, &diags);
    if (rc == 0 && !c.data_dir)
        rc = TDSX_E_CONFIG;
    if (rc) {
        tdsx_config_free(&c);
        return tdsx_cli_fail(cmd, rc, conf);
    }
    rc = tdsx_audit_export(&c, out, from, to);
    tdsx_config_free(&c);
    if (rc)
        return tdsx_cli_fail(cmd, rc, out);
    printf("evidence   %s\n", out);
    return TDSX_EXIT_OK;
}

typedef struct {
    int json;
    tdsx_buf_t *b;
    int first;
} printer_t;

/* Prints s with every control byte (and backslash) as \xNN: `where` and `detail` carry names
 * from the evidence (file names, identities in signed statements) that the audited party
 * chose, and a newline in one of them would print a line of the auditor's report that no
 * check wrote, such as "PASS state ...". */
static void put_escaped(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            printf("\\x%02x", *c);
        else
            putchar(*c);
    }
}

static void on_check(void *ud, tdsx_audit_result_t r, const char *check, const char *where,
                     const char *detail)
{
    printer_t *p = ud;
    if (!p->json) {
        printf("%s %s%s", tdsx_audit_result_name(r), check, where[0] ? " " : "");
        put_escaped(where);
        putchar(' ');
        put_escaped(detail);
        putchar('\n');
        return;
    }
    int rc = tdsx_buf_append_str(p->b, p->first ? "\n  {\"check\":" : ",\n  {\"check\":");
    p->first = 0;
    if (rc == 0)
        rc = tdsx_json_str(p->b, check);
    if (rc == 0)
        rc = tdsx_buf_printf(p->b, ",\"result\":\"%s\",\"where\":", tdsx_audit_result_name(r));
    if (rc == 0)
        rc = tdsx_json_str(p->b, where);
    if (rc == 0)
        rc = tdsx_buf_append_str(p->b, ",\"detail\":");
    if (rc == 0)
        rc = tdsx_json_str(p->b, detail);
    if (rc == 0)
        rc = tdsx_buf_append_str(p->b, "}");
    (void)rc; /* a buffer over its cap is caught at the end (the summary will not fit) */
}

int tdsx_cmd_audit_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"anchor", required_argument, NULL, 'a'},
                                         {"state", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "audit verify";
    tdsx_audit_opts_t ao = {NULL, NULL, 0};
    int json = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "a:s:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'a': ao.anchor = optarg; break;
        case 's': ao.state = optarg; break;
        case 'j': json = 1; break;
        case 'h':
            printf("usage: tdsx audit verify DIR --anchor ROOT.pem [--state FILE] [--json]\n\n"
                   "Verifies an evidence bundle offline trusting only ROOT.pem. One line per\n"
                   "check: PASS|FAIL|INDETERMINATE <check> [<index or field>] <detail>.\n"
                   "--state refuses a log or report sequence older than the last audit saw and\n"
                   "records this audit when nothing failed. --json prints one JSON document.\n"
                   "Exit 0 all passed, 1 something failed, 2 could not run. Never prompts.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind + 1 != argc || !ao.anchor)
        return tdsx_cli_usage(cmd, "needs DIR and --anchor ROOT.pem");
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 30);
    printer_t p = {json, &b, 1};
    tdsx_audit_summary_t sum;
    if (json && tdsx_buf_append_str(&b, "{\"checks\":[") != 0)
        return tdsx_cli_fail(cmd, TDSX_E_NOMEM, NULL);
    int rc = tdsx_audit_verify(argv[optind], &ao, on_check, &p, &sum);
    if (rc) {
        tdsx_buf_free(&b);
        return tdsx_cli_fail(cmd, rc, argv[optind]);
    }
    if (json) {
        if (tdsx_buf_printf(&b,
                            "\n],\"summary\":{\"pass\":%llu,\"fail\":%llu,\"indeterminate\":%llu,"
                            "\"entries\":%llu,\"receipts\":%llu,\"result\":\"%s\"}}\n",
                            (unsigned long long)sum.pass, (unsigned long long)sum.fail,
                            (unsigned long long)sum.indeterminate, (unsigned long long)sum.entries,
                            (unsigned long long)sum.receipts, sum.fail ? "FAIL" : "PASS") != 0) {
            tdsx_buf_free(&b);
            return tdsx_cli_fail(cmd, TDSX_E_NOMEM, NULL);
        }
        fwrite(b.p, 1, b.len, stdout);
    } else {
        printf("SUMMARY %s: %llu pass, %llu fail, %llu indeterminate; %llu entries, %llu "
               "receipts\n",
               sum.fail ? "FAIL" : "PASS", (unsigned long long)sum.pass,
               (unsigned long long)sum.fail, (unsigned long long)sum.indeterminate,
               (unsigned long long)sum.entries, (unsigned long long)sum.receipts);
    }
    tdsx_buf_free(&b);
    return sum.fail ? TDSX_EXIT_INVALID : TDSX_EXIT_OK;
}
