/* Shared error reporting for the tdsx commands. */
#include "cli.h"
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <getopt.h>
#include <time.h>
#include <string.h>

int tdsx_cli_fail(const char *cmd, int err, const char *what)
{
    if (what)
        fprintf(stderr, "tdsx %s: %s: %s (%s)\n", cmd, what, tdsx_strerror(err),
                tdsx_err_name(err));
    else
        fprintf(stderr, "tdsx %s: %s (%s)\n", cmd, tdsx_strerror(err), tdsx_err_name(err));
    switch (err) {
    case TDSX_E_USAGE:
    case TDSX_E_NOMEM:
    case TDSX_E_IO:
    case TDSX_E_NOTFOUND:
    case TDSX_E_EXISTS:
    case TDSX_E_INTERNAL:
    case TDSX_E_CA_STATE: return TDSX_EXIT_ERROR;
    default:
        /* Negated errno values are system failures: the command could not run. */
        return err > -4096 ? TDSX_EXIT_ERROR : TDSX_EXIT_INVALID;
    }
}

int tdsx_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tdsx %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'tdsx %s --help'.\n", cmd);
    return TDSX_EXIT_ERROR;
}

int tdsx_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    }
    return 0;
}

void tdsx__cli_print_time(int width, const char *label, int64_t t)
{
    char buf[32] = "-";
    if (t > 0) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    printf("%-*s%s\n", width, label, buf);
}

int tdsx__cli_take_socket_opt(int o, tdsx_cli_target_t *t)
{
    if (o == 'S')
        t->sock = optarg;
    else if (o == 'c')
        t->conf = optarg;
    else
        return 0;
    return 1;
}

int tdsx__cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return TDSX_E_USAGE;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return TDSX_E_USAGE;
    *out = v;
    return 0;
}

int tdsx__cli_ask(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req, int timeout_ms,
                  int want_body, int (*error_exit)(int err), tdsx_arena_t **arena,
                  Tdsx__LocalResponse **resp)
{
    *arena = NULL;
    *resp = NULL;
    char *path = NULL;
    int code = tdsx__cli_socket(t->cmd, t->sock, t->conf, &path);
    if (code)
        return code;
    req->id = 1;
    int rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET_CLI, arena);
    if (rc == 0)
        rc = tdsx_control_call(path, req, *arena, timeout_ms, NULL, NULL, resp);
    if (rc) {
        code = tdsx_cli_fail(t->cmd, rc, path);
        if (rc == TDSX_E_NOTFOUND || rc == TDSX_E_TIMEOUT || rc == TDSX_E_CLOSED)
            code = TDSX_EXIT_ERROR;
    } else if ((*resp)->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR) {
        rc = tdsx_err_from_wire((*resp)->error->code);
        fprintf(stderr, "tdsx %s: %s (%s)\n", t->cmd, (*resp)->error->message, tdsx_err_name(rc));
        code = error_exit(rc);
    } else if (want_body && (int)(*resp)->body_case != want_body) {
        code = tdsx_cli_fail(t->cmd, TDSX_E_PROTOCOL, "daemon answer");
    }
    tdsx_free(path);
    if (code) {
        tdsx_arena_free(*arena);
        *arena = NULL;
        *resp = NULL;
    }
    return code;
}
