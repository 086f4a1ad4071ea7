/* tdsx uscc check CODE */
#include "certs.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static void usage(FILE *f)
{
    fputs("usage: tdsx uscc check CODE\n"
          "\n"
          "Validates a 统一社会信用代码 (unified social credit code, GB 32100-2015): 18\n"
          "characters from 0-9 and A-Y without I O S V Z, upper case, whose 18th character is\n"
          "the check character of the first 17.\n"
          "\n"
          "Prints \"valid\" and exits 0 for a valid code. A code whose embedded organisation\n"
          "code (positions 9-17, GB 11714) fails its own check is still valid; a warning goes\n"
          "to stderr. Exits 1 for an invalid code, naming the reason, 2 on a usage error.\n",
          f);
}

int tdsx_cmd_uscc_check(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    if (tdsx_cli_wants_help(argc, argv)) {
        usage(stdout);
        return TDSX_EXIT_OK;
    }
    optind = 1;
    opterr = 0;
    /* --help was handled above, so any option here is unknown. */
    if (getopt_long(argc, argv, ":", longopts, NULL) != -1)
        return tdsx_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    if (argc - optind != 1)
        return tdsx_cli_usage(cmd, "expects exactly one CODE");
    const char *code = argv[optind];
    int warning = 0;
    int rc = tdsx_uscc_check(code, &warning);
    if (rc)
        return tdsx_cli_fail(cmd, rc, code);
    if (warning)
        fprintf(stderr,
                "tdsx %s: warning: organisation code %.9s (positions 9-17) fails its GB 11714 "
                "check\n",
                cmd, code + 8);
    puts("valid");
    return TDSX_EXIT_OK;
}
