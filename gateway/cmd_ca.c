/* Placeholder: replaced by the certs work. */
#include "cli.h"

#define NOT_YET(fn)                                                                           \
    int fn(int argc, char **argv)                                                             \
    {                                                                                         \
        (void)argc;                                                                           \
        return tdsx_cli_fail(argv[0], TDSX_E_UNSUPPORTED, "not built yet");                   \
    }
NOT_YET(tdsx_cmd_ca_init)
NOT_YET(tdsx_cmd_ca_issue)
NOT_YET(tdsx_cmd_ca_revoke)
NOT_YET(tdsx_cmd_ca_crl)
NOT_YET(tdsx_cmd_ca_verify)
