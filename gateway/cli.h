/*
 * cli.h — the `tdsx` command table and the helpers every command uses.
 *
 * A command is `tdsx GROUP VERB [options]` (or `tdsx WORD` for single-word commands). Its
 * run function receives argv with argv[0] = "GROUP VERB" so getopt_long works unchanged.
 * Exit codes are the same everywhere: 0 success, 1 the thing checked is invalid or the
 * operation was refused, 2 the command could not run (usage, missing file, I/O).
 */
#ifndef TDSX_CLI_H
#define TDSX_CLI_H

#include "core.h"

#define TDSX_EXIT_OK 0
#define TDSX_EXIT_INVALID 1
#define TDSX_EXIT_ERROR 2

typedef struct tdsx_cmd_s {
    const char *group; /* "ca"; NULL for a single-word command */
    const char *verb;  /* "issue" */
    int (*run)(int argc, char **argv);
    const char *summary; /* one line for `tdsx --help` */
} tdsx_cmd_t;

/* Prints "tdsx <cmd>: <what>: <message> (<TDSX_E_NAME>)" to stderr and returns the exit code
 * that goes with err: TDSX_EXIT_ERROR for usage, I/O and allocation, TDSX_EXIT_INVALID
 * otherwise. `what` may be NULL. */
int tdsx_cli_fail(const char *cmd, int err, const char *what);
/* Prints a usage error and the hint to run --help; returns TDSX_EXIT_ERROR. */
int tdsx_cli_usage(const char *cmd, const char *fmt, ...) TDSX_PRINTF(2, 3);
/* 1 when s is "-h" or "--help" appears among argv[1..]. */
int tdsx_cli_wants_help(int argc, char **argv);

/* Commands, each in gateway/cmd_<group>.c. */
int tdsx_cmd_uscc_check(int argc, char **argv);
int tdsx_cmd_ca_init(int argc, char **argv);
int tdsx_cmd_ca_issue(int argc, char **argv);
int tdsx_cmd_ca_revoke(int argc, char **argv);
int tdsx_cmd_ca_crl(int argc, char **argv);
int tdsx_cmd_ca_verify(int argc, char **argv);
int tdsx_cmd_status(int argc, char **argv);
int tdsx_cmd_send(int argc, char **argv);
int tdsx_cmd_pull(int argc, char **argv);
int tdsx_cmd_catalog_publish(int argc, char **argv);
int tdsx_cmd_catalog_list(int argc, char **argv);
int tdsx_cmd_catalog_withdraw(int argc, char **argv);
int tdsx_cmd_receipts_list(int argc, char **argv);
int tdsx_cmd_receipts_show(int argc, char **argv);
int tdsx_cmd_receipts_verify(int argc, char **argv);
/* gateway/cmd_bundle.c: the trust bundle (SPEC §3). */
int tdsx_cmd_bundle_make(int argc, char **argv);
int tdsx_cmd_bundle_sign(int argc, char **argv);
int tdsx_cmd_bundle_show(int argc, char **argv);

/* The daemon a command talks to, from --socket PATH or -c CONFIG (see tdsx__cli_socket). */
typedef struct tdsx_cli_target_s {
    const char *cmd;
    const char *sock;
    const char *conf;
} tdsx_cli_target_t;

/* getopt_long entries for --socket, --config and --help (include <getopt.h>). */
#define TDSX_CLI_SOCKET_OPTIONS                                                                    \
    {"socket", required_argument, NULL, 'S'}, {"config", required_argument, NULL, 'c'},            \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* Takes -S/-c into t; 1 when o was one of them, 0 otherwise. */
int tdsx__cli_take_socket_opt(int o, tdsx_cli_target_t *t);

/* Prints "label  2026-11-21T23:30:00Z" (or "-" for 0) with the label padded to width. */
void tdsx__cli_print_time(int width, const char *label, int64_t t);

/* Finds the daemon's control socket: --socket PATH, else the one named by the config file
 * (-c), else $TDSX_SOCKET. Returns 0 with a heap path, or the exit code after a message. */
int tdsx__cli_socket(const char *cmd, const char *sock, const char *conf, char **out);

/* Appends the node in cred_dir, reachable at endpoint, to a member registry file (atomically,
 * refusing duplicates). Returns an exit code. */
int tdsx__registry_append(const char *cmd, const char *registry, const char *cred_dir,
                          const char *endpoint);

/* Parses a decimal in [min, max] (digits only: no sign, no space, no suffix). 0 or
 * TDSX_E_USAGE. */
TDSX_MUST_CHECK int tdsx__cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

struct Tdsx__LocalRequest;
struct Tdsx__LocalResponse;
struct tdsx_arena_s;
/* Asks the daemon t names (tdsx__cli_socket) and waits up to timeout_ms. Returns 0 with *resp
 * decoded in *arena (the caller frees *arena), or the exit code after a message, with *arena
 * NULL: not reachable, timed out or gone is TDSX_EXIT_ERROR; an Error answer prints its message
 * and code and exits with error_exit(code); an answer other than `want_body` (a
 * LocalResponse body case; 0: any) is a protocol error. req->id is set. */
int tdsx__cli_ask(const tdsx_cli_target_t *t, struct Tdsx__LocalRequest *req, int timeout_ms,
                  int want_body, int (*error_exit)(int err), struct tdsx_arena_s **arena,
                  struct Tdsx__LocalResponse **resp);

/* Arena budget for answers from the daemon (a receipt bundle holds two envelopes). */
#define TDSX_ENVELOPE_ARENA_BUDGET_CLI (64u << 20)
int tdsx_cmd_registry_add(int argc, char **argv);
int tdsx_cmd_registry_check(int argc, char **argv);
int tdsx_cmd_policy_check(int argc, char **argv);
int tdsx_cmd_policy_explain(int argc, char **argv);
int tdsx_cmd_bench_send(int argc, char **argv);
int tdsx_cmd_bench_pull(int argc, char **argv);
int tdsx_cmd_bench_conns(int argc, char **argv);
int tdsx_cmd_agree_propose(int argc, char **argv);
int tdsx_cmd_agree_accept(int argc, char **argv);
int tdsx_cmd_agree_refuse(int argc, char **argv);
int tdsx_cmd_agree_terminate(int argc, char **argv);
int tdsx_cmd_agree_list(int argc, char **argv);
int tdsx_cmd_log_status(int argc, char **argv);
int tdsx_cmd_log_proof(int argc, char **argv);
int tdsx_cmd_log_consistency(int argc, char **argv);
int tdsx_cmd_log_verify_proof(int argc, char **argv);
/* gateway/cmd_audit.c */
int tdsx_cmd_audit_export(int argc, char **argv);
int tdsx_cmd_audit_verify(int argc, char **argv);

/* gateway/cmd_report.c: trust-status reports (SPEC §12). */
int tdsx_cmd_report_make(int argc, char **argv);
int tdsx_cmd_report_show(int argc, char **argv);
int tdsx_cmd_report_submit(int argc, char **argv);

#endif
