/* Placeholder: replaced by the certs work. */
#include "cli.h"

int tdsx_cmd_uscc_check(int argc, char **argv)
{
    (void)argc;
    return tdsx_cli_fail(argv[0], TDSX_E_UNSUPPORTED, "not built yet");
}
