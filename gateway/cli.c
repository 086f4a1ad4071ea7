/* Shared error reporting for the tdsx commands. */
#include "cli.h"

#include <errno.h>
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
