/* tdsx status — what the local daemon is, who it is connected to, and its counters. */
#include "cli.h"
#include "daemon.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_TIMEOUT_MS 5000

int tdsx__cli_socket(const char *cmd, const char *sock, const char *conf, char **out)
{
    if (!sock && !conf)
        sock = getenv("TDSX_SOCKET");
    if (sock) {
        *out = tdsx_strdup(sock);
        return *out ? 0 : tdsx_cli_fail(cmd, TDSX_E_NOMEM, NULL);
    }
    if (!conf)
        return tdsx_cli_usage(cmd, "name the daemon with --socket PATH or -c CONFIG");
    tdsx_config_t cfg;
    tdsx_config_diags_t d;
    int rc = tdsx_config_load(&cfg, conf, &d);
    if (rc) {
        tdsx_config_free(&cfg);
        return tdsx_cli_fail(cmd, rc, conf);
    }
    *out = cfg.control_socket;
    cfg.control_socket = NULL;
    tdsx_config_free(&cfg);
    return 0;
}

int tdsx_cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0], *sock = NULL, *conf = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "s:c:h", opts, NULL)) != -1) {
        switch (o) {
        case 's': sock = optarg; break;
        case 'c': conf = optarg; break;
        case 'h':
            printf("usage: tdsx status [--socket PATH | -c CONFIG]\n"
                   "Shows the local daemon's role, identity, listen address, connected peers\n"
                   "with their verified identities, certificate expiry and counters.\n"
                   "Exit 0 when the daemon answered, 2 when it could not be reached.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    char *path = NULL;
    int rc = tdsx__cli_socket(cmd, sock, conf, &path);
    if (rc)
        return rc;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__StatusRequest sreq = TDSX__STATUS_REQUEST__INIT;
    Tdsx__LocalResponse *resp = NULL;
    req.id = 1;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_STATUS;
    req.status = &sreq;
    rc = tdsx_arena_new(1u << 22, &arena);
    if (rc == 0)
        rc = tdsx_control_call(path, &req, arena, STATUS_TIMEOUT_MS, NULL, NULL, &resp);
    if (rc == 0 && resp->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR)
        rc = tdsx_err_from_wire(resp->error->code);
    else if (rc == 0 && resp->body_case != TDSX__LOCAL_RESPONSE__BODY_STATUS)
        rc = TDSX_E_PROTOCOL;
    if (rc) {
        int code = tdsx_cli_fail(cmd, rc, path);
        tdsx_free(path);
        tdsx_arena_free(arena);
        return rc == TDSX_E_NOTFOUND || rc == TDSX_E_TIMEOUT ? TDSX_EXIT_ERROR : code;
    }
    const Tdsx__StatusResponse *st = resp->status;
    printf("%-16s %s\n", "id", st->id);
    printf("%-16s %s\n", "org", st->org);
    printf("%-16s %s\n", "role", st->role);
    printf("%-16s %s\n", "listen", *st->listen ? st->listen : "-");
    printf("%-16s %s%s\n", "version", st->version, st->draining ? " (draining)" : "");
    tdsx__cli_print_time(17, "started", st->started_at);
    tdsx__cli_print_time(17, "auth expires", st->auth_not_after);
    tdsx__cli_print_time(17, "sign expires", st->sign_not_after);
    /* Trust bundle (SPEC §3): an expired one means every exchange is stopped. */
    if (st->bundle_serial) {
        if (strcmp(st->bundle_state, "expired") == 0)
            printf("%-16s %llu %s\n", "bundle", (unsigned long long)st->bundle_serial,
                   "EXPIRED: exchange stopped until a fresh bundle is applied");
        else if (strcmp(st->bundle_state, "floor-outdated") == 0)
            printf("%-16s %llu FLOOR: requires policy floor %u, this node enforces %u: "
                   "exchange stopped\n",
                   "bundle", (unsigned long long)st->bundle_serial, st->bundle_policy_floor,
                   st->policy_floor);
        else
            printf("%-16s %llu %s\n", "bundle", (unsigned long long)st->bundle_serial,
                   st->bundle_state);
        tdsx__cli_print_time(17, "bundle issued", st->bundle_issued_at);
        tdsx__cli_print_time(17, "bundle expires", st->bundle_expires_at);
    } else {
        printf("%-16s %s\n", "bundle", "none");
    }
    if (st->bundle_fetch_at) {
        printf("%-16s %s\n", "bundle fetch", st->bundle_fetch_result);
        tdsx__cli_print_time(17, "fetched at", st->bundle_fetch_at);
        tdsx__cli_print_time(17, "last fetch ok", st->bundle_fetch_ok_at);
    }
    printf("peers            %zu\n", st->n_peers);
    for (size_t i = 0; i < st->n_peers; i++) {
        const Tdsx__PeerStatus *p = st->peers[i];
        printf("  %-3s %-40s %-10s %-10s %-22s in=%llu out=%llu queued=%llu streams=%u%s%s\n",
               p->direction, *p->id ? p->id : "(unverified)", *p->role ? p->role : "-", p->state,
               p->address, (unsigned long long)p->bytes_in, (unsigned long long)p->bytes_out,
               (unsigned long long)p->queued_out, p->streams, *p->last_error ? " error=" : "",
               p->last_error);
    }
    printf("counters\n");
    for (size_t i = 0; i < st->n_counters; i++)
        printf("  %-28s %llu\n", st->counters[i]->name, (unsigned long long)st->counters[i]->value);
    tdsx_free(path);
    tdsx_arena_free(arena);
    return TDSX_EXIT_OK;
}
