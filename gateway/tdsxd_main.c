/* tdsxd — the node daemon. Thin: reads the config, builds the node, runs the loop. */
#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: tdsxd -c FILE [--check-config]\n"
               "  -c, --config FILE   the node's configuration (key value lines)\n"
               "      --check-config  report every problem in FILE (and the files it names),\n"
               "                      then exit: 0 fine, 1 problems, 2 could not read it\n"
               "      --version       print the version\n");
}

static void print_diags(const char *path, const tdsx_config_diags_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->d[i].line)
            fprintf(stderr, "%s:%u: %s (%s)\n", path, d->d[i].line, d->d[i].msg,
                    tdsx_err_name(d->d[i].err));
        else
            fprintf(stderr, "%s: %s (%s)\n", path, d->d[i].msg, tdsx_err_name(d->d[i].err));
    }
    if (d->dropped)
        fprintf(stderr, "%s: %zu more problems not shown\n", path, d->dropped);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int check = 0, o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'v': printf("tdsxd %s\n", TDSX_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }
    tdsx_config_t cfg;
    tdsx_config_diags_t diags;
    int rc = tdsx_config_load(&cfg, path, &diags);
    if (rc) {
        print_diags(path, &diags);
        tdsx_config_free(&cfg);
        return rc == TDSX_E_CONFIG || rc == TDSX_E_TOOBIG ? 1 : 2;
    }
    tdsx_log_set_level(check ? TDSX_LOG_OFF : cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tdsx_node_t *node = NULL;
    char what[512] = "";
    rc = tdsx_node_new(&loop, &cfg, &node, what, sizeof what);
    if (rc) {
        /* The config was sound line by line; a file it names is not. */
        fprintf(stderr, "%s: %s: %s (%s)\n", path, *what ? what : "node", tdsx_strerror(rc),
                tdsx_err_name(rc));
        uv_loop_close(&loop);
        return 1;
    }
    if (check) {
        printf("%s: ok (%s, %s)\n", path, node->self_id, tdsx_role_name(node->cfg.role));
        tdsx_node_free(node);
        uv_loop_close(&loop);
        return 0;
    }
    rc = tdsx_node_start(node);
    uv_run(&loop, UV_RUN_DEFAULT);
    tdsx_node_free(node);
    if (uv_loop_close(&loop) != 0)
        tdsx_log(TDSX_LOG_WARN, "node.exit", TDSX_KV_S("reason", "handles left open"));
    if (rc) {
        fprintf(stderr, "tdsxd: could not start: %s (%s)\n", tdsx_strerror(rc), tdsx_err_name(rc));
        return 1;
    }
    return 0;
}
