/* tdsx registry add|check — the local member registry used until the trust bundle lands. */
#include "cli.h"
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

/* Appends the member described by cred_dir to the registry file, refusing a result that
 * would not parse (a duplicate id or fingerprint): the file is rewritten atomically with the
 * new line, never left half-written. */
int tdsx__registry_append(const char *cmd, const char *registry, const char *cred_dir,
                          const char *endpoint)
{
    tdsx_buf_t all;
    uint8_t *old = NULL;
    size_t old_len = 0;
    tdsx_buf_init(&all, TDSX_REGISTRY_FILE_CAP);
    int rc = tdsx_file_read(registry, TDSX_REGISTRY_FILE_CAP, &old, &old_len);
    if (rc == TDSX_E_NOTFOUND)
        rc = 0;
    if (rc)
        return tdsx_cli_fail(cmd, rc, registry);
    rc = tdsx_buf_append(&all, old ? old : (const uint8_t *)"", old_len);
    if (rc == 0 && old_len > 0 && old[old_len - 1] != '\n')
        rc = tdsx_buf_append(&all, "\n", 1);
    tdsx_free(old);
    if (rc == 0)
        rc = tdsx_registry_format(cred_dir, endpoint, 0, &all);
    if (rc) {
        tdsx_buf_free(&all);
        return tdsx_cli_fail(cmd, rc, cred_dir);
    }
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t err;
    rc = tdsx_registry_parse(tdsx_buf_bytes(&all), &r, &err);
    tdsx_registry_free(r);
    if (rc) {
        fprintf(stderr, "tdsx %s: %s: the new entry would make line %u invalid: %s\n", cmd,
                registry, err.line, err.msg);
        tdsx_buf_free(&all);
        return TDSX_EXIT_INVALID;
    }
    rc = tdsx_file_write(registry, all.p, all.len, 0644, 1);
    if (rc == 0) {
        /* The new line is the last one: print its id. */
        const char *last = (const char *)all.p + all.len - 1;
        while (last > (const char *)all.p && last[-1] != '\n')
            last--;
        printf("added %.*s to %s\n", (int)strcspn(last, " "), last, registry);
    }
    tdsx_buf_free(&all);
    return rc ? tdsx_cli_fail(cmd, rc, registry) : TDSX_EXIT_OK;
}

int tdsx_cmd_registry_add(int argc, char **argv)
{
    static const struct option opts[] = {{"registry", required_argument, NULL, 'r'},
                                         {"creds", required_argument, NULL, 'd'},
                                         {"endpoint", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0], *registry = NULL, *creds = NULL, *endpoint = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'r': registry = optarg; break;
        case 'd': creds = optarg; break;
        case 'e': endpoint = optarg; break;
        case 'h':
            printf("usage: tdsx registry add --registry FILE --creds DIR --endpoint HOST:PORT\n"
                   "Appends the node whose credentials are in DIR (as written by tdsx ca issue)\n"
                   "to the member registry FILE, after verifying its auth and sign certificates\n"
                   "against DIR/ca.pem. A duplicate id or fingerprint is refused.\n"
                   "Exit 0 added, 1 refused, 2 usage or I/O error.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!registry || !creds || !endpoint)
        return tdsx_cli_usage(cmd, "--registry, --creds and --endpoint are required");
    return tdsx__registry_append(cmd, registry, creds, endpoint);
}

int tdsx_cmd_registry_check(int argc, char **argv)
{
    const char *cmd = argv[0];
    if (tdsx_cli_wants_help(argc, argv)) {
        printf("usage: tdsx registry check FILE\n"
               "Parses a member registry; prints the member count, or the first problem with\n"
               "its line. Exit 0 valid, 1 invalid, 2 could not read it.\n");
        return TDSX_EXIT_OK;
    }
    if (argc != 2)
        return tdsx_cli_usage(cmd, "expected one FILE");
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t err;
    int rc = tdsx_registry_load(argv[1], &r, &err);
    if (rc) {
        if (err.fault == TDSX_REGISTRY_FILE)
            return tdsx_cli_fail(cmd, rc, argv[1]);
        fprintf(stderr, "%s:%u: %s (%s)\n", argv[1], err.line, err.msg, tdsx_err_name(rc));
        return TDSX_EXIT_INVALID;
    }
    printf("%s: %zu members\n", argv[1], tdsx_registry_count(r));
    tdsx_registry_free(r);
    return TDSX_EXIT_OK;
}
