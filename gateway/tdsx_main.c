/* tdsx — the command-line tool. Thin: finds the command and hands it argv. */
#include "cli.h"

#include <string.h>

static const tdsx_cmd_t commands[] = {
    {"uscc", "check", tdsx_cmd_uscc_check, "validate a 统一社会信用代码 (GB 32100-2015)"},
    {"ca", "init", tdsx_cmd_ca_init, "create a province root CA (and optional intermediate)"},
    {"ca", "issue", tdsx_cmd_ca_issue, "issue a node's auth, sign and enc credentials"},
    {"ca", "revoke", tdsx_cmd_ca_revoke, "revoke a certificate issued by this CA"},
    {"ca", "crl", tdsx_cmd_ca_crl, "write the CA's current CRL"},
    {"ca", "verify", tdsx_cmd_ca_verify, "verify a certificate and print its identity"},
    {"registry", "add", tdsx_cmd_registry_add, "append a node to the member registry file"},
    {"registry", "check", tdsx_cmd_registry_check, "validate a member registry file"},
    {"policy", "check", tdsx_cmd_policy_check, "lint a policy file and print its hash"},
    {"policy", "explain", tdsx_cmd_policy_explain, "show which rule decides a transfer, and why"},
    {NULL, "send", tdsx_cmd_send, "push a file or a catalog dataset to a peer, with receipt"},
    {NULL, "pull", tdsx_cmd_pull, "pull a dataset from a peer's catalog, with receipt"},
    {"catalog", "publish", tdsx_cmd_catalog_publish,
     "register a file as a dataset (数据登记/上架)"},
    {"catalog", "list", tdsx_cmd_catalog_list, "list this node's or a peer's catalog"},
    {"catalog", "withdraw", tdsx_cmd_catalog_withdraw, "withdraw a dataset from the catalog"},
    {"agree", "propose", tdsx_cmd_agree_propose,
     "propose agreement terms to a peer (企业数据授权)"},
    {"agree", "accept", tdsx_cmd_agree_accept, "accept a peer's proposal: sign the same terms"},
    {"agree", "refuse", tdsx_cmd_agree_refuse, "refuse a peer's proposal"},
    {"agree", "terminate", tdsx_cmd_agree_terminate, "end an agreement; running transfers abort"},
    {"agree", "list", tdsx_cmd_agree_list, "list agreements with their state and use"},
    {"receipts", "list", tdsx_cmd_receipts_list, "list the receipts this node holds"},
    {"receipts", "show", tdsx_cmd_receipts_show, "fetch, verify and print one receipt"},
    {"receipts", "verify", tdsx_cmd_receipts_verify, "verify a receipt file offline"},
    {NULL, "status", tdsx_cmd_status, "show the local daemon: identity, peers, counters"},
    {"log", "status", tdsx_cmd_log_status, "transparency log: size, checkpoints, witness"},
    {"log", "proof", tdsx_cmd_log_proof, "print an entry's inclusion proof (a proof file)"},
    {"log", "consistency", tdsx_cmd_log_consistency,
     "print a consistency proof from an earlier size (a proof file)"},
    {"log", "verify-proof", tdsx_cmd_log_verify_proof, "check a proof file offline"},
    {"report", "make", tdsx_cmd_report_make, "make and log the next trust-status report"},
    {"report", "show", tdsx_cmd_report_show, "print a report file; verify it with --key/--cert"},
    {"report", "submit", tdsx_cmd_report_submit, "submit a report to the centre for cosigning"},
    {"audit", "export", tdsx_cmd_audit_export, "write the node's evidence bundle for auditors"},
    {"audit", "verify", tdsx_cmd_audit_verify, "verify an evidence bundle offline (anchor only)"},
    {"bench", "send", tdsx_cmd_bench_send, "load generator: N sends, C in flight; rate, latency"},
    {"bench", "pull", tdsx_cmd_bench_pull, "load generator: N pulls of a dataset, C in flight"},
    {"bench", "conns", tdsx_cmd_bench_conns,
     "mutual-TLS connections/s and server memory per idle connection"},
    {"bundle", "make", tdsx_cmd_bundle_make, "build the trust bundle (registry, CRLs, keys)"},
    {"bundle", "sign", tdsx_cmd_bundle_sign, "sign a trust bundle with the centre's sign key"},
    {"bundle", "show", tdsx_cmd_bundle_show, "print a trust bundle; verify it with --anchor"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tdsx COMMAND [options]    (tdsx COMMAND --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", commands[i].group ? commands[i].group : "",
                 commands[i].group ? " " : "", commands[i].verb);
        fprintf(f, "  %-16s %s\n", name, commands[i].summary);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? TDSX_EXIT_ERROR : TDSX_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tdsx %s\n", TDSX_VERSION);
        return TDSX_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const tdsx_cmd_t *c = &commands[i];
        if (!c->group) {
            if (strcmp(argv[1], c->verb) == 0)
                return c->run(argc - 1, argv + 1);
            continue;
        }
        if (strcmp(argv[1], c->group) != 0 || argc < 3 || strcmp(argv[2], c->verb) != 0)
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s %s", c->group, c->verb);
        argv[2] = name;
        return c->run(argc - 2, argv + 2);
    }
    fprintf(stderr, "tdsx: unknown command '%s%s%s'\n", argv[1], argc > 2 ? " " : "",
            argc > 2 ? argv[2] : "");
    usage(stderr);
    return TDSX_EXIT_ERROR;
}
