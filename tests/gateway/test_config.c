#include "support.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

static const char good[] = "# a brain node\n"
                           "role brain\n"
                           "listen 127.0.0.1:7443   # inbound\n"
                           "credentials creds\n"
                           "data_dir /var/lib/tdsx\n"
                           "registry registry.txt\n"
                           "crl crl-root.pem\n"
                           "crl crl-int.pem\n"
                           "peer 91350100M000100Y43/centre 127.0.0.1:7001\n"
                           "peer 91350100M000100Y43/ent-a [::1]:7002\n"
                           "log_level debug\n"
                           "frame_cap 2m\n"
                           "stream_window 256k\n"
                           "max_streams 100\n"
                           "handshake_timeout 2s\n"
                           "idle_timeout 5m\n"
                           "stall_timeout 1500\n"
                           "\n";

static void parses_every_key(void **state)
{
    (void)state;
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_parse(&c, good, strlen(good), "/etc/tdsx", &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.role, TDSX_ROLE_BRAIN);
    assert_string_equal(c.listen, "127.0.0.1:7443");
    assert_string_equal(c.credentials, "/etc/tdsx/creds");
    assert_string_equal(c.data_dir, "/var/lib/tdsx");
    assert_string_equal(c.registry, "/etc/tdsx/registry.txt");
    assert_string_equal(c.control_socket, "/var/lib/tdsx/tdsxd.sock");
    assert_int_equal(c.n_crls, 2);
    assert_string_equal(c.crls[1], "/etc/tdsx/crl-int.pem");
    assert_int_equal(c.n_peers, 2);
    assert_string_equal(c.peers[1].id, "91350100M000100Y43/ent-a");
    assert_string_equal(c.peers[1].address, "[::1]:7002");
    assert_int_equal(c.log_level, TDSX_LOG_DEBUG);
    assert_int_equal(c.frame_cap, 2 * 1024 * 1024);
    assert_int_equal(c.stream_window, 256 * 1024);
    assert_int_equal(c.max_streams, 100);
    assert_int_equal(c.handshake_timeout_ms, 2000);
    assert_int_equal(c.idle_timeout_ms, 300000);
    assert_int_equal(c.stall_timeout_ms, 1500);
    /* Untouched keys keep their defaults. */
    assert_int_equal(c.conn_window, 16 * 1024 * 1024);
    tdsx_config_free(&c);
}

/* Each bad line must be reported with its own line number; parsing goes on after it. */
static void reports_every_bad_line(void **state)
{
    (void)state;
    static const char bad[] = "role king\n"                          /* 1 */
                              "listen 127.0.0.1\n"                   /* 2 */
                              "credentials c\n"                      /* 3 */
                              "data_dir d\n"                         /* 4 */
                              "registry r\n"                         /* 5 */
                              "frobnicate 1\n"                       /* 6 */
                              "frame_cap 12x\n"                      /* 7 */
                              "max_streams 0\n"                      /* 8 */
                              "handshake_timeout soon\n"             /* 9 */
                              "peer 91350100M000100Y4Z/x h:1\n"      /* 10 */
                              "peer nonsense\n"                      /* 11 */
                              "data_dir again\n"                     /* 12 */
                              "log_level loud\n"                     /* 13 */
                              "idle_timeout\n"                       /* 14 */
                              "max_streams 10k\n"                    /* 15 */
                              "peer 91350100M000100Y43/a h:99999\n"; /* 16 */
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_parse(&c, bad, strlen(bad), NULL, &d), TDSX_E_CONFIG);
    static const unsigned want[] = {1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    assert_int_equal(d.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.d[i].line, want[i]);
        assert_true(d.d[i].err < 0);
        assert_true(strlen(d.d[i].msg) > 0);
    }
    assert_non_null(strstr(d.d[2].msg, "unknown key 'frobnicate'"));
    assert_non_null(strstr(d.d[8].msg, "already set on line 4"));
    tdsx_config_free(&c);
}

static void missing_required_keys(void **state)
{
    (void)state;
    static const char text[] = "listen 127.0.0.1:1\n";
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_parse(&c, text, strlen(text), NULL, &d), TDSX_E_CONFIG);
    assert_int_equal(d.n, 4); /* role, credentials, data_dir, registry */
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.d[i].line, 0);
        assert_non_null(strstr(d.d[i].msg, "required key missing"));
    }
    tdsx_config_free(&c);
}

static void hostile_lines(void **state)
{
    (void)state;
    char text[3000];
    memset(text, 'a', sizeof text);
    text[sizeof text - 1] = '\n';
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_parse(&c, text, sizeof text, NULL, &d), TDSX_E_CONFIG);
    assert_int_equal(d.d[0].line, 1);
    assert_int_equal(d.d[0].err, TDSX_E_TOOBIG);
    tdsx_config_free(&c);
    static const char nul[] = "role brain\0evil\n";
    assert_int_equal(tdsx_config_parse(&c, nul, sizeof nul - 1, NULL, &d), TDSX_E_CONFIG);
    assert_int_equal(d.d[0].line, 1);
    tdsx_config_free(&c);
    /* Many bad lines: the list is bounded and counts what it dropped. */
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1 << 20);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tdsx_buf_append_str(&b, "nope 1\n"), 0);
    assert_int_equal(tdsx_config_parse(&c, (char *)b.p, b.len, NULL, &d), TDSX_E_CONFIG);
    assert_int_equal(d.n, TDSX_CONFIG_MAX_DIAGS);
    assert_true(d.dropped > 0);
    tdsx_config_free(&c);
    tdsx_buf_free(&b);
}

static void split_addr(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(tdsx_config_split_addr("127.0.0.1:7443", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7443);
    assert_int_equal(tdsx_config_split_addr("[::1]:1", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(tdsx_config_split_addr("::1:1", host, sizeof host, &port), TDSX_E_CONFIG);
    assert_int_equal(tdsx_config_split_addr("h:", host, sizeof host, &port), TDSX_E_CONFIG);
    assert_int_equal(tdsx_config_split_addr(":80", host, sizeof host, &port), TDSX_E_CONFIG);
    assert_int_equal(tdsx_config_split_addr("h:65536", host, sizeof host, &port), TDSX_E_CONFIG);
    assert_int_equal(tdsx_config_split_addr("h:8a", host, sizeof host, &port), TDSX_E_CONFIG);
    assert_int_equal(tdsx_config_split_addr("[::1]80", host, sizeof host, &port), TDSX_E_CONFIG);
}

static void load_from_file_resolves_relative_paths(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *path = tdsx_test_path(dir, "tdsxd.conf");
    tdsx_test_write_file(path, good, strlen(good));
    tdsx_config_t c;
    tdsx_config_diags_t d;
    assert_int_equal(tdsx_config_load(&c, path, &d), 0);
    char *want = tdsx_test_path(dir, "creds");
    assert_string_equal(c.credentials, want);
    free(want);
    tdsx_config_free(&c);
    free(path);
    char *missing = tdsx_test_path(dir, "nope.conf");
    assert_int_equal(tdsx_config_load(&c, missing, &d), TDSX_E_NOTFOUND);
    assert_int_equal(d.n, 1);
    tdsx_config_free(&c);
    free(missing);
    tdsx_test_rmdir(dir);
}

static void allocation_failure_is_reported(void **state)
{
    (void)state;
    /* Fail each allocation in turn: parse must return NOMEM (never crash or leak). */
    for (unsigned long n = 1; n < 40; n++) {
        tdsx_config_t c;
        tdsx_config_diags_t d;
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_config_parse(&c, good, strlen(good), "/x", &d);
        unsigned long used = tdsx_test_alloc_count();
        tdsx_test_alloc_reset();
        tdsx_config_free(&c);
        if (used < n) {
            assert_int_equal(rc, 0);
            break;
        }
        assert_int_equal(rc, TDSX_E_NOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_every_key),
        cmocka_unit_test(reports_every_bad_line),
        cmocka_unit_test(missing_required_keys),
        cmocka_unit_test(hostile_lines),
        cmocka_unit_test(split_addr),
        cmocka_unit_test(load_from_file_resolves_relative_paths),
        cmocka_unit_test(allocation_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
