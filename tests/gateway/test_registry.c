/* The member registry: parsing, lookups, pinning checks and the line formatter. */
#include "support.h"

#include "gateway.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define USCC_A "91350100M000100Y43"

/* 64 hex digits made of one repeated byte, so each test value is easy to tell apart. */
static const char *hex_of(char *out, uint8_t byte)
{
    uint8_t v[32];
    memset(v, byte, sizeof v);
    tdsx_hex_encode(out, v, sizeof v);
    return out;
}

/* A valid USCC other than USCC_A: 17 characters and their computed check character. */
static void uscc_b(char out[TDSX_USCC_LEN + 1])
{
    memcpy(out, "91110000MA0012345", 17);
    out[17] = tdsx_uscc_check_char(out);
    out[18] = '\0';
    assert_int_equal(tdsx_uscc_check(out, NULL), 0);
}

/* One registry line for node `node` with values made from `seed`. */
static void line_for(tdsx_buf_t *b, const char *uscc, const char *node, const char *role,
                     const char *endpoint, uint8_t seed)
{
    char a[65], s[65], e[65];
    assert_int_equal(tdsx_buf_printf(b, "%s/%s %s %s auth=%s sign=%s enc=%s\n", uscc, node, role,
                                     endpoint, hex_of(a, seed), hex_of(s, (uint8_t)(seed + 1)),
                                     hex_of(e, (uint8_t)(seed + 2))),
                     0);
}

static int parse_str(const char *text, tdsx_registry_t **r, tdsx_registry_error_t *e)
{
    return tdsx_registry_parse(tdsx_bytes(text, strlen(text)), r, e);
}

/* Parses text that must fail, and checks where and why. */
static void expect_fault(const char *text, unsigned line, tdsx_registry_fault_t fault)
{
    tdsx_registry_t *r = (tdsx_registry_t *)1;
    tdsx_registry_error_t e;
    int rc = parse_str(text, &r, &e);
    if (rc != TDSX_E_CONFIG || e.line != line || e.fault != fault)
        fail_msg("want line %u fault %d, got rc %s line %u fault %d (%s) for:\n%s", line,
                 (int)fault, tdsx_err_name(rc), e.line, (int)e.fault, e.msg, text);
    assert_null(r);
    assert_int_equal(e.err, TDSX_E_CONFIG);
    assert_true(strlen(e.msg) > 0);
}

/* A file whose line 2 is `bad` between two good members. */
static void expect_bad_line(const char *bad, tdsx_registry_fault_t fault)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    char ub[TDSX_USCC_LEN + 1];
    uscc_b(ub);
    line_for(&b, USCC_A, "centre", "centre", "10.0.0.1:7001", 0x10);
    assert_int_equal(tdsx_buf_printf(&b, "%s\n", bad), 0);
    line_for(&b, ub, "ent-1", "enterprise", "10.0.0.3:7003", 0x30);
    expect_fault((const char *)b.p, 2, fault);
    tdsx_buf_free(&b);
}

/* ------------------------------------------------------------------------------------------
 * Valid files
 * ---------------------------------------------------------------------------------------- */

static void parses_members_comments_and_blank_lines(void **state)
{
    (void)state;
    char ub[TDSX_USCC_LEN + 1], a[65], s[65], e[65];
    uscc_b(ub);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    assert_int_equal(tdsx_buf_printf(&b, "# province members\n\n   \t\n"), 0);
    line_for(&b, USCC_A, "centre", "centre", "centre.example.cn:7001", 0x10);
    /* Tabs, CRLF, a trailing comment, keys out of order and an IPv6 endpoint. */
    assert_int_equal(tdsx_buf_printf(&b,
                                     "%s/brain-1\tbrain\t[2001:db8::1]:443 enc=%s auth=%s "
                                     "sign=%s   # the steel brain\r\n",
                                     USCC_A, hex_of(e, 0x22), hex_of(a, 0x20), hex_of(s, 0x21)),
                     0);
    line_for(&b, ub, "ent-1", "enterprise", "192.0.2.7:65535", 0x30);
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t err;
    assert_int_equal(parse_str((const char *)b.p, &r, &err), 0);
    assert_int_equal(tdsx_registry_count(r), 3);

    const tdsx_member_t *m = tdsx_registry_find(r, USCC_A "/brain-1");
    assert_non_null(m);
    assert_string_equal(m->id, USCC_A "/brain-1");
    assert_string_equal(m->uscc, USCC_A);
    assert_string_equal(m->node, "brain-1");
    assert_int_equal(m->role, TDSX_ROLE_BRAIN);
    assert_string_equal(m->host, "[2001:db8::1]");
    assert_int_equal(m->port, 443);
    assert_int_equal(m->line, 5);
    uint8_t want[32];
    memset(want, 0x20, 32);
    assert_memory_equal(m->auth_fp, want, 32);
    memset(want, 0x21, 32);
    assert_memory_equal(m->sign_fp, want, 32);
    memset(want, 0x22, 32);
    assert_memory_equal(m->enc_pub, want, 32);

    /* File order, and lookups by fingerprint. */
    assert_string_equal(tdsx_registry_at(r, 0)->id, USCC_A "/centre");
    assert_string_equal(tdsx_registry_at(r, 2)->node, "ent-1");
    assert_int_equal(tdsx_registry_at(r, 2)->port, 65535);
    assert_null(tdsx_registry_at(r, 3));
    memset(want, 0x30, 32);
    assert_ptr_equal(tdsx_registry_find_auth(r, want), tdsx_registry_at(r, 2));
    memset(want, 0x31, 32); /* a sign fingerprint is not an auth fingerprint */
    assert_null(tdsx_registry_find_auth(r, want));
    assert_null(tdsx_registry_find(r, USCC_A "/brain-2"));
    assert_null(tdsx_registry_find(r, USCC_A));
    tdsx_registry_free(r);
    tdsx_buf_free(&b);
}

static void empty_and_comment_only_files_have_no_members(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "\n\n", "# nothing yet\n   # still nothing", "\t\r\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tdsx_registry_t *r = NULL;
        assert_int_equal(parse_str(texts[i], &r, NULL), 0);
        assert_int_equal(tdsx_registry_count(r), 0);
        assert_null(tdsx_registry_find(r, USCC_A "/centre"));
        uint8_t fp[32] = {0};
        assert_null(tdsx_registry_find_auth(r, fp));
        tdsx_registry_free(r);
    }
}

static void many_members_are_all_found(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    char node[32];
    /* Written in reverse name order, so sorting is exercised. */
    for (int i = 0; i < 200; i++) {
        uint8_t v[32];
        char a[65], s[65], e[65];
        memset(v, 0, sizeof v);
        v[0] = (uint8_t)i;
        v[1] = 'a';
        tdsx_hex_encode(a, v, 32);
        v[1] = 's';
        tdsx_hex_encode(s, v, 32);
        v[1] = 'e';
        tdsx_hex_encode(e, v, 32);
        snprintf(node, sizeof node, "node-%03d", 199 - i);
        assert_int_equal(tdsx_buf_printf(&b, "%s/%s brain h.example:%d auth=%s sign=%s enc=%s\n",
                                         USCC_A, node, i + 1, a, s, e),
                         0);
    }
    tdsx_registry_t *r = NULL;
    assert_int_equal(parse_str((const char *)b.p, &r, NULL), 0);
    assert_int_equal(tdsx_registry_count(r), 200);
    for (int i = 0; i < 200; i++) {
        snprintf(node, sizeof node, "%s/node-%03d", USCC_A, 199 - i);
        const tdsx_member_t *m = tdsx_registry_find(r, node);
        assert_non_null(m);
        assert_int_equal(m->port, i + 1);
        assert_ptr_equal(tdsx_registry_find_auth(r, m->auth_fp), m);
    }
    tdsx_registry_free(r);
    tdsx_buf_free(&b);
}

static void check_pins_fingerprint_and_role(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    line_for(&b, USCC_A, "brain-1", "brain", "10.0.0.2:7002", 0x40);
    tdsx_registry_t *r = NULL;
    assert_int_equal(parse_str((const char *)b.p, &r, NULL), 0);

    tdsx_identity_t id;
    memset(&id, 0, sizeof id);
    memcpy(id.uscc, USCC_A, sizeof id.uscc);
    snprintf(id.node, sizeof id.node, "brain-1");
    id.role = TDSX_ROLE_BRAIN;
    memset(id.fingerprint, 0x40, 32);
    const tdsx_member_t *m = NULL;
    assert_int_equal(tdsx_registry_check(r, &id, &m), 0);
    assert_ptr_equal(m, tdsx_registry_at(r, 0));

    id.fingerprint[31] ^= 1; /* same name, another certificate */
    assert_int_equal(tdsx_registry_check(r, &id, &m), TDSX_E_CERT_FINGERPRINT);
    id.fingerprint[31] ^= 1;
    id.role = TDSX_ROLE_CENTRE;
    assert_int_equal(tdsx_registry_check(r, &id, &m), TDSX_E_CERT_ROLE);
    id.role = TDSX_ROLE_BRAIN;
    snprintf(id.node, sizeof id.node, "brain-2");
    assert_int_equal(tdsx_registry_check(r, &id, &m), TDSX_E_PEER_UNKNOWN);
    assert_null(m);
    tdsx_registry_free(r);
    tdsx_buf_free(&b);
}

static void load_reads_a_file_and_reports_missing_ones(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *path = tdsx_test_path(dir, "registry.txt");
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    line_for(&b, USCC_A, "centre", "centre", "127.0.0.1:7001", 0x50);
    tdsx_test_write_file(path, b.p, b.len);
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t e;
    assert_int_equal(tdsx_registry_load(path, &r, &e), 0);
    assert_int_equal(tdsx_registry_count(r), 1);
    tdsx_registry_free(r);

    char *missing = tdsx_test_path(dir, "absent.txt");
    r = (tdsx_registry_t *)1;
    assert_int_equal(tdsx_registry_load(missing, &r, &e), TDSX_E_NOTFOUND);
    assert_null(r);
    assert_int_equal(e.fault, TDSX_REGISTRY_FILE);
    assert_int_equal(e.line, 0);
    assert_non_null(strstr(e.msg, "absent.txt"));

    /* One byte over the file cap is refused before parsing. */
    size_t big = TDSX_REGISTRY_FILE_CAP + 1;
    char *blob = malloc(big);
    assert_non_null(blob);
    memset(blob, '\n', big);
    tdsx_test_write_file(path, blob, big);
    free(blob);
    assert_int_equal(tdsx_registry_load(path, &r, &e), TDSX_E_TOOBIG);
    assert_null(r);
    assert_int_equal(e.fault, TDSX_REGISTRY_FILE);

    free(missing);
    free(path);
    tdsx_buf_free(&b);
    tdsx_test_rmdir(dir);
}

/* ------------------------------------------------------------------------------------------
 * Malformed lines: each kind, with its line number
 * ---------------------------------------------------------------------------------------- */

#define FP64 "0000000000000000000000000000000000000000000000000000000000000000"
#define FP64B "1111111111111111111111111111111111111111111111111111111111111111"
#define FP64C "2222222222222222222222222222222222222222222222222222222222222222"
#define KEYS " auth=" FP64 " sign=" FP64B " enc=" FP64C

static void refuses_wrong_field_counts(void **state)
{
    (void)state;
    expect_bad_line(USCC_A "/x brain 10.0.0.9:1 auth=" FP64 " sign=" FP64B, TDSX_REGISTRY_FIELDS);
    expect_bad_line(USCC_A "/x brain 10.0.0.9:1" KEYS " extra", TDSX_REGISTRY_FIELDS);
    expect_bad_line(USCC_A "/x", TDSX_REGISTRY_FIELDS);
}

static void refuses_bad_ids(void **state)
{
    (void)state;
    expect_bad_line(USCC_A "-x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_ID);
    expect_bad_line(USCC_A "/ brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_ID);
    expect_bad_line(USCC_A "/a/b brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_ID);
    char longnode[300];
    memset(longnode, 'n', TDSX_NODE_MAX + 1);
    longnode[TDSX_NODE_MAX + 1] = '\0';
    char line[600];
    snprintf(line, sizeof line, "%s/%s brain 10.0.0.9:1%s", USCC_A, longnode, KEYS);
    expect_bad_line(line, TDSX_REGISTRY_ID);
    /* The longest node name allowed is accepted. */
    longnode[TDSX_NODE_MAX] = '\0';
    snprintf(line, sizeof line, "%s/%s brain 10.0.0.9:1%s", USCC_A, longnode, KEYS);
    tdsx_registry_t *r = NULL;
    assert_int_equal(parse_str(line, &r, NULL), 0);
    assert_int_equal(strlen(tdsx_registry_at(r, 0)->node), TDSX_NODE_MAX);
    tdsx_registry_free(r);
}

static void refuses_bad_usccs(void **state)
{
    (void)state;
    expect_bad_line("91350100M000100Y4Z/x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_USCC);
    expect_bad_line("91350100M000100Y4/x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_USCC);
    expect_bad_line("91350100M000100Y433/x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_USCC);
    expect_bad_line("91350100m000100Y43/x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_USCC);
    expect_bad_line("/x brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_USCC);
}

static void refuses_bad_roles(void **state)
{
    (void)state;
    expect_bad_line(USCC_A "/x king 10.0.0.9:1" KEYS, TDSX_REGISTRY_ROLE);
    expect_bad_line(USCC_A "/x Brain 10.0.0.9:1" KEYS, TDSX_REGISTRY_ROLE);
    expect_bad_line(USCC_A "/x none 10.0.0.9:1" KEYS, TDSX_REGISTRY_ROLE);
}

static void refuses_bad_endpoints(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "10.0.0.9",   "10.0.0.9:", "10.0.0.9:0", "10.0.0.9:65536", "10.0.0.9:80a",
        ":80",        "::1:80",    "[::1]",      "[::1]80",        "[]:80",
        "[zz::1]:80", "a!b:80",    "h:123456",   "h:-1",           "[::1]:0",
    };
    char line[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(line, sizeof line, "%s/x brain %s%s", USCC_A, bad[i], KEYS);
        expect_bad_line(line, TDSX_REGISTRY_ENDPOINT);
    }
}

static void refuses_bad_keys(void **state)
{
    (void)state;
    expect_bad_line(USCC_A "/x brain h:1 auth=" FP64 " sign=" FP64B " foo=" FP64C,
                    TDSX_REGISTRY_KEY);
    expect_bad_line(USCC_A "/x brain h:1 auth=" FP64 " auth=" FP64B " enc=" FP64C,
                    TDSX_REGISTRY_KEY);
    expect_bad_line(USCC_A "/x brain h:1 auth" FP64 " sign=" FP64B " enc=" FP64C,
                    TDSX_REGISTRY_KEY);
    expect_bad_line(USCC_A "/x brain h:1 AUTH=" FP64 " sign=" FP64B " enc=" FP64C,
                    TDSX_REGISTRY_KEY);
}

static void refuses_bad_hex(void **state)
{
    (void)state;
    /* 63 digits, 65 digits, a non-hex digit, empty. */
    expect_bad_line(USCC_A "/x brain h:1 auth=" FP64 " sign=" FP64B " enc=" FP64C "2",
                    TDSX_REGISTRY_HEX);
    char line[400];
    snprintf(line, sizeof line, "%s/x brain h:1 auth=%.63s sign=%s enc=%s", USCC_A, FP64, FP64B,
             FP64C);
    expect_bad_line(line, TDSX_REGISTRY_HEX);
    snprintf(line, sizeof line, "%s/x brain h:1 auth=%s sign=%.63sg enc=%s", USCC_A, FP64, FP64B,
             FP64C);
    expect_bad_line(line, TDSX_REGISTRY_HEX);
    expect_bad_line(USCC_A "/x brain h:1 auth= sign=" FP64B " enc=" FP64C, TDSX_REGISTRY_HEX);
}

static void refuses_control_bytes_and_long_lines(void **state)
{
    (void)state;
    /* A NUL in the middle of line 2: the text is passed with its real length. */
    char text[512];
    int n = snprintf(text, sizeof text, "# members\n%s/x brain h:1%s\n", USCC_A, KEYS);
    text[12] = '\0';
    tdsx_registry_t *r = (tdsx_registry_t *)1;
    tdsx_registry_error_t e;
    assert_int_equal(tdsx_registry_parse(tdsx_bytes(text, (size_t)n), &r, &e), TDSX_E_CONFIG);
    assert_null(r);
    assert_int_equal(e.line, 2);
    assert_int_equal(e.fault, TDSX_REGISTRY_BAD_BYTE);

    expect_bad_line(USCC_A "/x brain\x1b h:1" KEYS, TDSX_REGISTRY_BAD_BYTE);
    expect_bad_line("# a comment with an escape \x7f byte", TDSX_REGISTRY_BAD_BYTE);
    expect_bad_line(USCC_A "/x brain h:1" KEYS "\r\r", TDSX_REGISTRY_BAD_BYTE);

    char *longline = malloc(TDSX_REGISTRY_LINE_CAP + 2);
    assert_non_null(longline);
    memset(longline, '#', TDSX_REGISTRY_LINE_CAP + 1);
    longline[TDSX_REGISTRY_LINE_CAP + 1] = '\0';
    expect_bad_line(longline, TDSX_REGISTRY_LINE_TOO_LONG);
    longline[TDSX_REGISTRY_LINE_CAP] = '\0'; /* exactly at the cap: a fine comment */
    assert_int_equal(parse_str(longline, &r, NULL), 0);
    tdsx_registry_free(r);
    free(longline);
}

static void refuses_duplicates_at_the_second_line(void **state)
{
    (void)state;
    char ub[TDSX_USCC_LEN + 1];
    uscc_b(ub);
    tdsx_registry_error_t e;
    tdsx_registry_t *r = (tdsx_registry_t *)1;

    /* Same id on lines 2 and 4 (different keys). */
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    line_for(&b, ub, "a", "brain", "h:1", 0x10);
    line_for(&b, USCC_A, "dup", "brain", "h:2", 0x20);
    line_for(&b, ub, "b", "brain", "h:3", 0x30);
    line_for(&b, USCC_A, "dup", "enterprise", "h:4", 0x40);
    assert_int_equal(parse_str((const char *)b.p, &r, &e), TDSX_E_CONFIG);
    assert_null(r);
    assert_int_equal(e.line, 4);
    assert_int_equal(e.fault, TDSX_REGISTRY_DUP_ID);
    assert_non_null(strstr(e.msg, "line 2"));

    /* Same auth fingerprint under two ids. */
    char a[65], s[65], x[65];
    tdsx_buf_reset(&b);
    line_for(&b, USCC_A, "one", "brain", "h:1", 0x10);
    assert_int_equal(tdsx_buf_printf(&b, "%s/two brain h:2 auth=%s sign=%s enc=%s\n", USCC_A,
                                     hex_of(a, 0x10), hex_of(s, 0x55), hex_of(x, 0x56)),
                     0);
    assert_int_equal(parse_str((const char *)b.p, &r, &e), TDSX_E_CONFIG);
    assert_int_equal(e.line, 2);
    assert_int_equal(e.fault, TDSX_REGISTRY_DUP_AUTH);

    /* Same sign fingerprint under two ids, after a comment line. */
    tdsx_buf_reset(&b);
    line_for(&b, USCC_A, "one", "brain", "h:1", 0x10);
    assert_int_equal(tdsx_buf_printf(&b, "# second\n%s/two brain h:2 auth=%s sign=%s enc=%s\n",
                                     USCC_A, hex_of(a, 0x60), hex_of(s, 0x11), hex_of(x, 0x62)),
                     0);
    assert_int_equal(parse_str((const char *)b.p, &r, &e), TDSX_E_CONFIG);
    assert_int_equal(e.line, 3);
    assert_int_equal(e.fault, TDSX_REGISTRY_DUP_SIGN);
    assert_non_null(strstr(e.msg, "line 1"));
    tdsx_buf_free(&b);
}

static void first_bad_line_is_the_one_reported(void **state)
{
    (void)state;
    const char *text = "# header\n" USCC_A "/x brain h:1" KEYS "\n" USCC_A "/y king h:1" KEYS
                       "\n" USCC_A "/z brain h:0" KEYS "\n";
    expect_fault(text, 3, TDSX_REGISTRY_ROLE);
}

static void allocation_failures_are_reported_without_leaks(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 20);
    for (int i = 0; i < 40; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%d", i);
        uint8_t v[32];
        char a[65], s[65], x[65];
        memset(v, i, sizeof v);
        tdsx_hex_encode(a, v, 32);
        v[0] = 0xee;
        tdsx_hex_encode(s, v, 32);
        tdsx_hex_encode(x, v, 32);
        assert_int_equal(
            tdsx_buf_printf(&b, "%s/%s brain h:1 auth=%s sign=%s enc=%s\n", USCC_A, node, a, s, x),
            0);
    }
    tdsx_test_alloc_fail_after(0);
    tdsx_registry_t *r = NULL;
    assert_int_equal(parse_str((const char *)b.p, &r, NULL), 0);
    unsigned long needed = tdsx_test_alloc_count();
    tdsx_test_alloc_reset();
    tdsx_registry_free(r);
    assert_true(needed >= 3);
    for (unsigned long n = 1; n <= needed; n++) {
        tdsx_test_alloc_fail_after(n);
        tdsx_registry_error_t e;
        r = (tdsx_registry_t *)1;
        int rc = parse_str((const char *)b.p, &r, &e);
        tdsx_test_alloc_reset();
        assert_int_equal(rc, TDSX_E_NOMEM);
        assert_int_equal(e.err, TDSX_E_NOMEM);
        assert_null(r);
    }
    tdsx_buf_free(&b);
}

/* ------------------------------------------------------------------------------------------
 * Formatting a line from credentials (uses a real CA in a temporary directory)
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    char *dir;
    char *ca_dir;
    char *node_dir;
    char *expired_dir;
    char *other_dir;
} fmt_fixture_t;

static int fmt_setup(void **state)
{
    fmt_fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tdsx_test_mkdtemp();
    f->ca_dir = tdsx_test_path(f->dir, "ca");
    f->node_dir = tdsx_test_path(f->dir, "brain");
    f->expired_dir = tdsx_test_path(f->dir, "expired");
    f->other_dir = tdsx_test_path(f->dir, "other");
    tdsx_ca_init_opts_t io = {"山东省数据流通根CA", 1, 0, 0};
    assert_int_equal(tdsx_ca_init(f->ca_dir, &io), 0);
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(f->ca_dir, &ca), 0);
    tdsx_issue_opts_t o = {USCC_A, "某某钢铁产业大脑", "brain-1", TDSX_ROLE_BRAIN, 0, 0, 0};
    assert_int_equal(tdsx_ca_issue(ca, &o, f->node_dir), 0);
    tdsx_issue_opts_t old = {USCC_A, "旧节点", "old", TDSX_ROLE_ENTERPRISE, tdsx_now() - 10 * 86400,
                             1,      0};
    assert_int_equal(tdsx_ca_issue(ca, &old, f->expired_dir), 0);
    tdsx_issue_opts_t other = {USCC_A, "某某企业", "ent-2", TDSX_ROLE_ENTERPRISE, 0, 0, 0};
    assert_int_equal(tdsx_ca_issue(ca, &other, f->other_dir), 0);
    tdsx_ca_free(ca);
    *state = f;
    return 0;
}

static int fmt_teardown(void **state)
{
    fmt_fixture_t *f = *state;
    free(f->ca_dir);
    free(f->node_dir);
    free(f->expired_dir);
    free(f->other_dir);
    tdsx_test_rmdir(f->dir);
    free(f);
    return 0;
}

static void format_writes_a_line_the_parser_accepts(void **state)
{
    fmt_fixture_t *f = *state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 16);
    assert_int_equal(tdsx_buf_append_str(&b, "# registry\n"), 0);
    assert_int_equal(tdsx_registry_format(f->node_dir, "brain.example.cn:7443", 0, &b), 0);
    assert_int_equal(b.p[b.len - 1], '\n');
    tdsx_registry_t *r = NULL;
    tdsx_registry_error_t e;
    assert_int_equal(tdsx_registry_parse(tdsx_buf_bytes(&b), &r, &e), 0);
    const tdsx_member_t *m = tdsx_registry_find(r, USCC_A "/brain-1");
    assert_non_null(m);
    assert_int_equal(m->role, TDSX_ROLE_BRAIN);
    assert_string_equal(m->host, "brain.example.cn");
    assert_int_equal(m->port, 7443);
    assert_int_equal(m->line, 2);

    /* The fingerprints are those of the certificates in the directory. */
    char *auth = tdsx_test_path(f->node_dir, TDSX_CRED_AUTH_CERT);
    char *sign = tdsx_test_path(f->node_dir, TDSX_CRED_SIGN_CERT);
    char *enc = tdsx_test_path(f->node_dir, TDSX_CRED_ENC_PUB);
    STACK_OF(X509) *sk = NULL;
    uint8_t fp[32], pub[32];
    assert_int_equal(tdsx_cert_load_file(auth, &sk), 0);
    assert_int_equal(tdsx_cert_fingerprint(sk_X509_value(sk, 0), fp), 0);
    sk_X509_pop_free(sk, X509_free);
    assert_memory_equal(m->auth_fp, fp, 32);
    assert_ptr_equal(tdsx_registry_find_auth(r, fp), m);
    assert_int_equal(tdsx_cert_load_file(sign, &sk), 0);
    assert_int_equal(tdsx_cert_fingerprint(sk_X509_value(sk, 0), fp), 0);
    sk_X509_pop_free(sk, X509_free);
    assert_memory_equal(m->sign_fp, fp, 32);
    assert_int_equal(tdsx_key_load_x25519_pub(enc, pub), 0);
    assert_memory_equal(m->enc_pub, pub, 32);
    free(auth);
    free(sign);
    free(enc);
    tdsx_registry_free(r);
    tdsx_buf_free(&b);
}

static void format_refuses_bad_endpoints_and_credentials(void **state)
{
    fmt_fixture_t *f = *state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1u << 16);
    assert_int_equal(tdsx_buf_append_str(&b, "keep\n"), 0);
    assert_int_equal(tdsx_registry_format(f->node_dir, "no-port", 0, &b), TDSX_E_CONFIG);
    assert_int_equal(tdsx_registry_format(f->node_dir, "h:70000", 0, &b), TDSX_E_CONFIG);
    assert_int_equal(tdsx_registry_format(f->node_dir, "two words:1", 0, &b), TDSX_E_CONFIG);
    assert_int_equal(tdsx_registry_format(f->expired_dir, "h:1", 0, &b), TDSX_E_CERT_EXPIRED);
    char *nowhere = tdsx_test_path(f->dir, "nowhere");
    assert_int_equal(tdsx_registry_format(nowhere, "h:1", 0, &b), TDSX_E_NOTFOUND);
    free(nowhere);

    /* A directory whose sign certificate is another node's: auth and sign disagree. */
    char *mixed = tdsx_test_path(f->dir, "mixed");
    assert_int_equal(mkdir(mixed, 0700), 0);
    static const char *const files[] = {TDSX_CRED_ROOT, TDSX_CRED_CHAIN, TDSX_CRED_AUTH_CERT,
                                        TDSX_CRED_ENC_PUB};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *from = tdsx_test_path(f->node_dir, files[i]);
        char *to = tdsx_test_path(mixed, files[i]);
        uint8_t *data;
        size_t len;
        assert_int_equal(tdsx_file_read(from, 1u << 20, &data, &len), 0);
        tdsx_test_write_file(to, data, len);
        tdsx_free(data);
        free(from);
        free(to);
    }
    char *from = tdsx_test_path(f->other_dir, TDSX_CRED_SIGN_CERT);
    char *to = tdsx_test_path(mixed, TDSX_CRED_SIGN_CERT);
    uint8_t *data;
    size_t len;
    assert_int_equal(tdsx_file_read(from, 1u << 20, &data, &len), 0);
    tdsx_test_write_file(to, data, len);
    tdsx_free(data);
    assert_int_equal(tdsx_registry_format(mixed, "h:1", 0, &b), TDSX_E_CERT_SUBJECT);
    free(from);
    free(to);
    free(mixed);
    /* Nothing was appended by any failure. */
    assert_int_equal(b.len, 5);
    assert_string_equal((const char *)b.p, "keep\n");
    tdsx_buf_free(&b);
}

int main(void)
{
    tdsx_log_set_level(TDSX_LOG_OFF);
    const struct CMUnitTest parse[] = {
        cmocka_unit_test(parses_members_comments_and_blank_lines),
        cmocka_unit_test(empty_and_comment_only_files_have_no_members),
        cmocka_unit_test(many_members_are_all_found),
        cmocka_unit_test(check_pins_fingerprint_and_role),
        cmocka_unit_test(load_reads_a_file_and_reports_missing_ones),
        cmocka_unit_test(refuses_wrong_field_counts),
        cmocka_unit_test(refuses_bad_ids),
        cmocka_unit_test(refuses_bad_usccs),
        cmocka_unit_test(refuses_bad_roles),
        cmocka_unit_test(refuses_bad_endpoints),
        cmocka_unit_test(refuses_bad_keys),
        cmocka_unit_test(refuses_bad_hex),
        cmocka_unit_test(refuses_control_bytes_and_long_lines),
        cmocka_unit_test(refuses_duplicates_at_the_second_line),
        cmocka_unit_test(first_bad_line_is_the_one_reported),
        cmocka_unit_test(allocation_failures_are_reported_without_leaks),
    };
    const struct CMUnitTest format[] = {
        cmocka_unit_test(format_writes_a_line_the_parser_accepts),
        cmocka_unit_test(format_refuses_bad_endpoints_and_credentials),
    };
    int failed = cmocka_run_group_tests_name("registry parse", parse, NULL, NULL);
    failed += cmocka_run_group_tests_name("registry format", format, fmt_setup, fmt_teardown);
    return failed;
}
