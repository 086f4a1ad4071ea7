/* The tdsxd config file: a table of keys, one parser, every problem reported with its line. */
#include "config.h"

#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum {
    K_STRING,   /* any non-empty text */
    K_PATH,     /* a path, resolved against the config file's directory */
    K_ADDR,     /* host:port */
    K_ROLE,     /* centre | brain | enterprise */
    K_LEVEL,    /* log level */
    K_SIZE,     /* bytes, with optional k/m/g suffix (powers of 1024) */
    K_COUNT,    /* plain number */
    K_DURATION, /* milliseconds, or with a ms/s/m/h suffix */
    K_PEER,     /* "<id> <host:port>", repeatable */
    K_CRL,      /* a path, repeatable */
    K_BOOL,     /* yes | no */
    K_URL       /* bundle_url: an http:// or https:// URL, repeatable */
} key_type_t;

typedef struct {
    const char *name;
    key_type_t type;
    size_t offset;
    uint64_t min, max; /* numeric range, inclusive */
    int required;
} key_t_;

#define OFF(f) offsetof(tdsx_config_t, f)
#define KIB 1024ull
#define MIB (1024ull * 1024ull)

static const key_t_ keys[] = {
    {"role", K_ROLE, OFF(role), 0, 0, 1},
    {"listen", K_ADDR, OFF(listen), 0, 0, 0},
    {"credentials", K_PATH, OFF(credentials), 0, 0, 1},
    {"data_dir", K_PATH, OFF(data_dir), 0, 0, 1},
    {"registry", K_PATH, OFF(registry), 0, 0, 0}, /* required unless a bundle is (below) */
    {"control_socket", K_PATH, OFF(control_socket), 0, 0, 0},
    {"http_listen", K_ADDR, OFF(http_listen), 0, 0, 0},
    {"policy", K_PATH, OFF(policy), 0, 0, 0},
    {"taxonomy", K_PATH, OFF(taxonomy), 0, 0, 0},
    {"crl", K_CRL, 0, 0, 0, 0},
    {"peer", K_PEER, 0, 0, 0, 0},
    {"log_level", K_LEVEL, OFF(log_level), 0, 0, 0},
    {"frame_cap", K_SIZE, OFF(frame_cap), 4 * KIB, 64 * MIB, 0},
    {"stream_window", K_SIZE, OFF(stream_window), 16 * KIB, 64 * MIB, 0},
    {"conn_window", K_SIZE, OFF(conn_window), 16 * KIB, 1024 * MIB, 0},
    {"max_streams", K_COUNT, OFF(max_streams), 1, 65536, 0},
    {"max_connections", K_COUNT, OFF(max_connections), 1, 1000000, 0},
    {"handshake_timeout", K_DURATION, OFF(handshake_timeout_ms), 100, 600000, 0},
    {"idle_timeout", K_DURATION, OFF(idle_timeout_ms), 100, 86400000, 0},
    {"stall_timeout", K_DURATION, OFF(stall_timeout_ms), 100, 3600000, 0},
    {"drain_timeout", K_DURATION, OFF(drain_timeout_ms), 0, 3600000, 0},
    {"ping_interval", K_DURATION, OFF(ping_interval_ms), 100, 3600000, 0},
    {"redial_min", K_DURATION, OFF(redial_min_ms), 10, 600000, 0},
    {"redial_max", K_DURATION, OFF(redial_max_ms), 10, 3600000, 0},
    {"sync_every", K_SIZE, OFF(sync_every), 64 * KIB, 64 * 1024 * MIB, 0},
    {"part_ttl", K_DURATION, OFF(part_ttl_ms), 1000, 30ull * 86400 * 1000, 0},
    {"receipt_timeout", K_DURATION, OFF(receipt_timeout_ms), 1000, 86400000, 0},
    {"checkpoint_interval", K_DURATION, OFF(checkpoint_interval_ms), 100, 86400000, 0},
    {"witness", K_STRING, OFF(witness), 0, 0, 0},
    /* Trust-status reports (gateway/report.h): one each period, submitted to the witness. */
    {"report_period", K_DURATION, OFF(report_period_ms), 1000, 3650ull * 86400 * 1000, 0},
    /* HTTP endpoint and bundle fetching (gateway/http.h). */
    {"http_public", K_BOOL, OFF(http_public), 0, 0, 0},
    {"http_timeout", K_DURATION, OFF(http_timeout_ms), 100, 600000, 0},
    {"http_max_connections", K_COUNT, OFF(http_max_connections), 1, 10000, 0},
    {"publish_dir", K_PATH, OFF(publish_dir), 0, 0, 0},
    {"bundle_url", K_URL, 0, 0, 0, 0},
    {"bundle_refresh", K_DURATION, OFF(bundle_refresh_ms), 1000, 7ull * 86400 * 1000, 0},
    /* Trust bundle (gateway/bundle.h): its registry replaces the registry file. */
    {"bundle_file", K_PATH, OFF(bundle_file), 0, 0, 0},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

void tdsx_config_defaults(tdsx_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = TDSX_LOG_INFO;
    c->frame_cap = 1 * MIB;
    c->stream_window = 1 * MIB;
    c->conn_window = 16 * MIB;
    c->max_streams = 4096;
    c->max_connections = 10000;
    c->handshake_timeout_ms = 10000;
    c->idle_timeout_ms = 300000;
    c->stall_timeout_ms = 30000;
    c->drain_timeout_ms = 10000;
    c->ping_interval_ms = 30000;
    c->redial_min_ms = 200;
    c->redial_max_ms = 30000;
    c->sync_every = 64 * MIB;
    c->part_ttl_ms = 24ull * 3600 * 1000;
    c->receipt_timeout_ms = TDSX_RECEIPT_TIMEOUT_DEFAULT_MS;
    c->checkpoint_interval_ms = 10000;
    c->report_period_ms = 30ull * 86400 * 1000; /* "monthly" */
    c->http_timeout_ms = 10000;
    c->http_max_connections = 64;
    c->bundle_refresh_ms = 3600ull * 1000;
}

static void diag(tdsx_config_diags_t *d, unsigned line, int err, const char *fmt, ...)
    TDSX_PRINTF(4, 5);

static void diag(tdsx_config_diags_t *d, unsigned line, int err, const char *fmt, ...)
{
    if (d->n == TDSX_CONFIG_MAX_DIAGS) {
        d->dropped++;
        return;
    }
    tdsx_config_diag_t *x = &d->d[d->n++];
    x->line = line;
    x->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof x->msg, fmt, ap);
    va_end(ap);
}

int tdsx_config_split_addr(const char *addr, char *host, size_t host_size, int *port)
{
    /* One endpoint syntax for the config and the registry (gateway/registry.c). */
    char h[TDSX_HOST_MAX + 1];
    uint16_t p;
    if (tdsx__endpoint_parse(tdsx_bytes(addr, strlen(addr)), h, &p) != 0)
        return TDSX_E_CONFIG;
    const char *start = h;
    size_t len = strlen(h);
    if (h[0] == '[') { /* the registry keeps IPv6 brackets; sockets want the address */
        start++;
        len -= 2;
    }
    if (len >= host_size)
        return TDSX_E_CONFIG;
    memcpy(host, start, len);
    host[len] = '\0';
    *port = p;
    return 0;
}

/* Parses an unsigned number with an optional unit. `units` lists suffix/multiplier pairs. */
typedef struct {
    const char *suffix;
    uint64_t mult;
} unit_t;

static const unit_t size_units[] = {{"", 1},    {"k", KIB},        {"K", KIB},        {"m", MIB},
                                    {"M", MIB}, {"g", 1024 * MIB}, {"G", 1024 * MIB}, {NULL, 0}};
static const unit_t count_units[] = {{"", 1}, {NULL, 0}};
static const unit_t time_units[] = {{"", 1},          {"ms", 1},          {"s", 1000},
                                    {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0}};

static int parse_number(const char *s, const unit_t *units, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return TDSX_E_CONFIG;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s++ - '0');
        if (v > (UINT64_MAX - d) / 10)
            return TDSX_E_CONFIG;
        v = v * 10 + d;
    }
    for (const unit_t *u = units; u->suffix; u++) {
        if (strcmp(s, u->suffix) == 0) {
            if (v > UINT64_MAX / u->mult)
                return TDSX_E_CONFIG;
            *out = v * u->mult;
            return 0;
        }
    }
    return TDSX_E_CONFIG;
}

static int make_path(const char *base_dir, const char *v, char **out)
{
    if (!base_dir || v[0] == '/') {
        *out = tdsx_strdup(v);
    } else {
        tdsx_buf_t b;
        tdsx_buf_init(&b, 8192);
        int rc = tdsx_buf_printf(&b, "%s/%s", base_dir, v);
        if (rc) {
            tdsx_buf_free(&b);
            return rc;
        }
        *out = tdsx_buf_take(&b, NULL);
    }
    return *out ? 0 : TDSX_E_NOMEM;
}

static int set_value(tdsx_config_t *c, const key_t_ *k, const char *v, const char *base_dir,
                     unsigned line, tdsx_config_diags_t *d)
{
    char *field_s = NULL;
    uint64_t num = 0;
    char host[256];
    int port;
    void *field = (char *)c + k->offset;
    switch (k->type) {
    case K_STRING:
    case K_PATH:
    case K_ADDR:
        if (k->type == K_ADDR && tdsx_config_split_addr(v, host, sizeof host, &port) != 0) {
            diag(d, line, TDSX_E_CONFIG, "%s: expected host:port, got '%s'", k->name, v);
            return 0;
        }
        if (make_path(k->type == K_PATH ? base_dir : NULL, v, &field_s) != 0)
            return TDSX_E_NOMEM;
        *(char **)field = field_s;
        return 0;
    case K_ROLE:
        if (tdsx_role_parse(v, (tdsx_role_t *)field) != 0)
            diag(d, line, TDSX_E_CONFIG, "role: expected centre, brain or enterprise, got '%s'", v);
        return 0;
    case K_LEVEL:
        if (tdsx_log_level_parse(v, (tdsx_log_level_t *)field) != 0)
            diag(d, line, TDSX_E_CONFIG,
                 "log_level: expected debug, info, warn, error or off, got '%s'", v);
        return 0;
    case K_SIZE:
    case K_COUNT:
    case K_DURATION:
        if (parse_number(v,
                         k->type == K_SIZE       ? size_units
                         : k->type == K_DURATION ? time_units
                                                 : count_units,
                         &num) != 0) {
            diag(d, line, TDSX_E_CONFIG, "%s: '%s' is not a %s", k->name, v,
                 k->type == K_DURATION ? "duration (e.g. 500ms, 10s, 5m)"
                 : k->type == K_SIZE   ? "size (e.g. 65536, 256k, 1m)"
                                       : "whole number");
            return 0;
        }
        if (num < k->min || num > k->max) {
            diag(d, line, TDSX_E_CONFIG, "%s: %" PRIu64 " is outside %" PRIu64 "..%" PRIu64,
                 k->name, num, k->min, k->max);
            return 0;
        }
        *(uint64_t *)field = num;
        return 0;
    case K_CRL:
        if (c->n_crls == TDSX_CONFIG_MAX_CRLS) {
            diag(d, line, TDSX_E_TOOBIG, "crl: at most %d", TDSX_CONFIG_MAX_CRLS);
            return 0;
        }
        if (make_path(base_dir, v, &field_s) != 0)
            return TDSX_E_NOMEM;
        c->crls[c->n_crls++] = field_s;
        return 0;
    case K_BOOL:
        if (strcmp(v, "yes") == 0 || strcmp(v, "no") == 0)
            *(int *)field = v[0] == 'y';
        else
            diag(d, line, TDSX_E_CONFIG, "%s: expected yes or no, got '%s'", k->name, v);
        return 0;
    case K_URL:
        /* Only what libcurl is allowed to fetch (fetch.c limits the protocols the same way). */
        if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
            strpbrk(v, " \t") != NULL || strlen(v) > 900) {
            diag(d, line, TDSX_E_CONFIG, "bundle_url: expected an http:// or https:// URL");
            return 0;
        }
        if (c->n_bundle_urls == TDSX_CONFIG_MAX_BUNDLE_URLS) {
            diag(d, line, TDSX_E_TOOBIG, "bundle_url: at most %d", TDSX_CONFIG_MAX_BUNDLE_URLS);
            return 0;
        }
        if ((c->bundle_urls[c->n_bundle_urls] = tdsx_strdup(v)) == NULL)
            return TDSX_E_NOMEM;
        c->n_bundle_urls++;
        return 0;
    case K_PEER: {
        const char *sp = strpbrk(v, " \t");
        if (!sp) {
            diag(d, line, TDSX_E_CONFIG, "peer: expected '<USCC>/<node> host:port'");
            return 0;
        }
        const char *addr = sp;
        while (*addr == ' ' || *addr == '\t')
            addr++;
        char id[256];
        size_t idlen = (size_t)(sp - v);
        const char *slash = memchr(v, '/', idlen);
        if (idlen >= sizeof id || !slash || slash - v != TDSX_USCC_LEN || slash + 1 == sp) {
            diag(d, line, TDSX_E_CONFIG, "peer: '%.*s' is not <USCC>/<node>", (int)idlen, v);
            return 0;
        }
        memcpy(id, v, idlen);
        id[idlen] = '\0';
        char uscc[TDSX_USCC_LEN + 1];
        memcpy(uscc, v, TDSX_USCC_LEN);
        uscc[TDSX_USCC_LEN] = '\0';
        if (tdsx_uscc_check(uscc, NULL) != 0) {
            diag(d, line, TDSX_E_CONFIG, "peer: '%s' is not a valid USCC", uscc);
            return 0;
        }
        if (tdsx_config_split_addr(addr, host, sizeof host, &port) != 0) {
            diag(d, line, TDSX_E_CONFIG, "peer: expected host:port, got '%s'", addr);
            return 0;
        }
        for (size_t i = 0; i < c->n_peers; i++) {
            if (strcmp(c->peers[i].id, id) == 0) {
                diag(d, line, TDSX_E_CONFIG, "peer: '%s' given twice", id);
                return 0;
            }
        }
        if (c->n_peers == TDSX_CONFIG_MAX_PEERS) {
            diag(d, line, TDSX_E_TOOBIG, "peer: at most %d", TDSX_CONFIG_MAX_PEERS);
            return 0;
        }
        tdsx_config_peer_t *p = &c->peers[c->n_peers];
        p->id = tdsx_strdup(id);
        p->address = tdsx_strdup(addr);
        if (!p->id || !p->address) {
            tdsx_free(p->id);
            tdsx_free(p->address);
            p->id = p->address = NULL;
            return TDSX_E_NOMEM;
        }
        c->n_peers++;
        return 0;
    }
    default: return TDSX_E_INTERNAL;
    }
}

static size_t key_index(const char *name)
{
    size_t i = 0;
    while (i < N_KEYS && strcmp(keys[i].name, name) != 0)
        i++;
    return i;
}

/* A node identity as the registry writes it: a valid USCC, '/', a node name. */
static int id_ok(const char *id)
{
    size_t n = strlen(id);
    char uscc[TDSX_USCC_LEN + 1];
    if (n <= TDSX_USCC_LEN + 1 || n >= TDSX_ID_SIZE || id[TDSX_USCC_LEN] != '/')
        return 0;
    memcpy(uscc, id, TDSX_USCC_LEN);
    uscc[TDSX_USCC_LEN] = '\0';
    return tdsx_uscc_check(uscc, NULL) == 0 &&
           tdsx__node_name_ok(tdsx_bytes(id + TDSX_USCC_LEN + 1, n - TDSX_USCC_LEN - 1));
}

/* /metrics tells anyone who can connect about the node's traffic: loopback unless the
 * operator says otherwise (SPEC §15 "a local HTTP port"). */
/* 1 when a and b name the same existing directory (same device and inode). */
static int same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && S_ISDIR(sa.st_mode) &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int loopback_addr(const char *addr)
{
    char host[TDSX_HOST_MAX + 1];
    int port;
    if (tdsx_config_split_addr(addr, host, sizeof host, &port) != 0)
        return 0;
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

int tdsx_config_parse(tdsx_config_t *c, const char *text, size_t n, const char *base_dir,
                      tdsx_config_diags_t *d)
{
    unsigned seen_line[N_KEYS] = {0};
    tdsx_config_defaults(c);
    d->n = 0;
    d->dropped = 0;
    tdsx_bytes_t in = tdsx_bytes(text, n);
    unsigned line = 0;
    char buf[1024];
    while (in.n > 0) {
        line++;
        const uint8_t *nl = memchr(in.p, '\n', in.n);
        size_t len = nl ? (size_t)(nl - in.p) : in.n;
        tdsx_bytes_t l;
        if (tdsx_bytes_take(&in, len, &l) != 0 || (nl && tdsx_bytes_skip(&in, 1) != 0))
            return TDSX_E_INTERNAL;
        if (memchr(l.p, '\0', l.n)) {
            diag(d, line, TDSX_E_CONFIG, "NUL byte in line");
            continue;
        }
        if (l.n >= sizeof buf) {
            diag(d, line, TDSX_E_TOOBIG, "line longer than %zu bytes", sizeof buf - 1);
            continue;
        }
        memcpy(buf, l.p, l.n);
        buf[l.n] = '\0';
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *s = buf;
        while (isspace((unsigned char)*s))
            s++;
        char *end = s + strlen(s);
        while (end > s && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (!*s)
            continue;
        char *v = s;
        while (*v && !isspace((unsigned char)*v))
            v++;
        if (*v)
            *v++ = '\0';
        while (isspace((unsigned char)*v))
            v++;
        size_t ki = 0;
        while (ki < N_KEYS && strcmp(keys[ki].name, s) != 0)
            ki++;
        if (ki == N_KEYS) {
            diag(d, line, TDSX_E_CONFIG, "unknown key '%s'", s);
            continue;
        }
        const key_t_ *k = &keys[ki];
        if (!*v) {
            diag(d, line, TDSX_E_CONFIG, "%s: missing value", k->name);
            continue;
        }
        if (k->type != K_PEER && k->type != K_CRL && k->type != K_URL && seen_line[ki]) {
            diag(d, line, TDSX_E_CONFIG, "%s: already set on line %u", k->name, seen_line[ki]);
            continue;
        }
        seen_line[ki] = line;
        int rc = set_value(c, k, v, base_dir, line, d);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].required && !seen_line[i])
            diag(d, 0, TDSX_E_CONFIG, "%s: required key missing", keys[i].name);
    if (!c->registry && !c->bundle_file && c->n_bundle_urls == 0)
        diag(d, 0, TDSX_E_CONFIG, "registry: required key missing (or bundle_file / bundle_url)");
    if (c->redial_min_ms > c->redial_max_ms)
        diag(d, 0, TDSX_E_CONFIG, "redial_min is larger than redial_max");
    if (c->witness && !id_ok(c->witness))
        diag(d, seen_line[key_index("witness")], TDSX_E_CONFIG,
             "witness: '%.64s' is not <USCC>/<node>", c->witness);
    /* Every regular file of publish_dir is served to whoever reaches the HTTP port: never the
     * credentials (private keys) or the data directory (the store). Compared as files, so
     * another spelling of the same directory is caught too. */
    if (c->publish_dir &&
        (same_dir(c->publish_dir, c->credentials) || same_dir(c->publish_dir, c->data_dir)))
        diag(d, seen_line[key_index("publish_dir")], TDSX_E_CONFIG,
             "publish_dir: %.64s is the credentials or data directory: its files would be served "
             "over HTTP",
             c->publish_dir);
    if (c->http_listen && !c->http_public && !loopback_addr(c->http_listen))
        diag(d, seen_line[key_index("http_listen")], TDSX_E_CONFIG,
             "http_listen: %.64s is not a loopback address (set http_public yes to serve it)",
             c->http_listen);
    if (!c->control_socket && c->data_dir) {
        tdsx_buf_t b;
        tdsx_buf_init(&b, 8192);
        if (tdsx_buf_printf(&b, "%s/tdsxd.sock", c->data_dir) != 0) {
            tdsx_buf_free(&b);
            return TDSX_E_NOMEM;
        }
        c->control_socket = tdsx_buf_take(&b, NULL);
    }
    return d->n || d->dropped ? TDSX_E_CONFIG : 0;
}

int tdsx_config_load(tdsx_config_t *c, const char *path, tdsx_config_diags_t *d)
{
    uint8_t *text = NULL;
    size_t n = 0;
    tdsx_config_defaults(c);
    d->n = 0;
    d->dropped = 0;
    int rc = tdsx_file_read(path, TDSX_CONFIG_FILE_CAP, &text, &n);
    if (rc) {
        diag(d, 0, rc, "%s: %s", path, tdsx_strerror(rc));
        return rc;
    }
    char *dir = tdsx_strdup(path);
    if (!dir) {
        tdsx_free(text);
        return TDSX_E_NOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    /* Relative paths in the file are relative to the file, made absolute once so that
     * nothing depends on the daemon's working directory. */
    char *abs = realpath(slash ? (*dir ? dir : "/") : ".", NULL);
    rc = tdsx_config_parse(c, (const char *)text, n, abs ? abs : (slash ? dir : "."), d);
    free(abs);
    tdsx_free(dir);
    tdsx_free(text);
    return rc;
}

void tdsx_config_free(tdsx_config_t *c)
{
    tdsx_free(c->listen);
    tdsx_free(c->credentials);
    tdsx_free(c->data_dir);
    tdsx_free(c->registry);
    tdsx_free(c->bundle_file);
    tdsx_free(c->control_socket);
    tdsx_free(c->http_listen);
    tdsx_free(c->policy);
    tdsx_free(c->taxonomy);
    tdsx_free(c->witness);
    tdsx_free(c->publish_dir);
    for (size_t i = 0; i < c->n_bundle_urls; i++)
        tdsx_free(c->bundle_urls[i]);
    for (size_t i = 0; i < c->n_crls; i++)
        tdsx_free(c->crls[i]);
    for (size_t i = 0; i < c->n_peers; i++) {
        tdsx_free(c->peers[i].id);
        tdsx_free(c->peers[i].address);
    }
    tdsx_config_defaults(c);
}
