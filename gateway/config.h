/*
 * config.h — the tdsxd configuration file (SPEC §15).
 *
 * A plain text file, one `key value` per line; `#` starts a comment; blank lines are
 * ignored; values run to the end of the line (trailing white space trimmed). Keys marked
 * repeatable may appear many times; any other key given twice is an error. Relative paths
 * are resolved against the directory of the config file.
 *
 * The parser is pure: it reads a buffer and returns the configuration plus every problem
 * it found, each with its line number, so `tdsxd --check-config` can report them all at once.
 */
#ifndef TDSX_GATEWAY_CONFIG_H
#define TDSX_GATEWAY_CONFIG_H

#include "certs.h"
#include "core.h"

#define TDSX_CONFIG_FILE_CAP (256u * 1024u)
#define TDSX_CONFIG_MAX_PEERS 256
#define TDSX_CONFIG_MAX_CRLS 16
#define TDSX_RECEIPT_TIMEOUT_DEFAULT_MS 30000u /* config receipt_timeout; SPEC §10 NRD */
#define TDSX_CONFIG_MAX_BUNDLE_URLS 8          /* bundle_url mirrors */

typedef struct tdsx_config_peer_s {
    char *id;      /* "<USCC>/<node>" */
    char *address; /* "host:port" */
} tdsx_config_peer_t;

typedef struct tdsx_config_s {
    tdsx_role_t role;
    char *listen;         /* "host:port"; NULL: accept no inbound connections */
    char *credentials;    /* credential directory (see certs.h) */
    char *data_dir;       /* objects, metadata, log */
    char *registry;       /* member registry file */
    char *control_socket; /* Unix socket for `tdsx`; default <data_dir>/tdsxd.sock */
    char *http_listen;    /* metrics/health endpoint, "host:port"; NULL: off */
    char *policy;         /* policy file (SPEC §8); NULL: the built-in default policy */
    char *taxonomy;       /* category taxonomy file (SPEC §6); NULL: the built-in MIIT one */
    char *crls[TDSX_CONFIG_MAX_CRLS];
    size_t n_crls;
    tdsx_config_peer_t peers[TDSX_CONFIG_MAX_PEERS];
    size_t n_peers;
    tdsx_log_level_t log_level;

    /* Limits (bytes, counts) and timeouts (milliseconds). */
    uint64_t frame_cap;
    uint64_t stream_window;
    uint64_t conn_window;
    uint64_t max_streams;
    uint64_t max_connections;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t stall_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t ping_interval_ms;
    uint64_t redial_min_ms;
    uint64_t redial_max_ms;
    uint64_t sync_every;  /* receiver: fdatasync a transfer's part file every this many bytes */
    uint64_t part_ttl_ms; /* an interrupted transfer not resumed within this is abandoned */
    uint64_t receipt_timeout_ms; /* sender: no receipt this long after TransferEnd: sign an NRD */

    /* Transparency log (SPEC §11, gateway/log.h). */
    uint64_t checkpoint_interval_ms; /* publish a checkpoint this often when the log grew */
    char *witness; /* "<USCC>/<node>" of the centre that cosigns our checkpoints; NULL: none */
    uint64_t report_period_ms; /* trust-status reports (report.h): make one this often; 0 never */

    /* HTTP endpoint (gateway/http.h) and bundle fetching (SPEC §3). */
    int http_public;          /* `http_public yes`: http_listen may be a non-loopback address */
    uint64_t http_timeout_ms; /* a client that has not sent a whole request by then is closed */
    uint64_t http_max_connections; /* HTTP clients at once; more are closed on accept */
    char *publish_dir;             /* files served at /pub/NAME; NULL: /pub/ serves nothing */
    char *bundle_urls[TDSX_CONFIG_MAX_BUNDLE_URLS]; /* mirrors, tried in order; http(s):// */
    size_t n_bundle_urls;
    uint64_t bundle_refresh_ms; /* how often the mirrors are asked for a newer bundle */

    /* Trust bundle (gateway/bundle.h). */
    char *bundle_file; /* a signed bundle loaded at start and on SIGHUP; NULL: none */
} tdsx_config_t;

/* One problem found in a config file. */
typedef struct tdsx_config_diag_s {
    unsigned line; /* 1-based; 0 for file-level problems such as a missing required key */
    int err;       /* TDSX_E_CONFIG, TDSX_E_TOOBIG, ... */
    char msg[160];
} tdsx_config_diag_t;

#define TDSX_CONFIG_MAX_DIAGS 64

typedef struct tdsx_config_diags_s {
    tdsx_config_diag_t d[TDSX_CONFIG_MAX_DIAGS];
    size_t n;
    size_t dropped; /* problems beyond TDSX_CONFIG_MAX_DIAGS */
} tdsx_config_diags_t;

/* Fills *c with the defaults (every string NULL, limits at their documented defaults). */
void tdsx_config_defaults(tdsx_config_t *c);

/* Parses text (not necessarily NUL-terminated) into *c (which it first sets to the
 * defaults). `base_dir` resolves relative paths (NULL: leave them as written). Returns 0
 * when there was no problem, TDSX_E_CONFIG when diags holds at least one, TDSX_E_NOMEM.
 * On failure *c still owns whatever it parsed: always release with tdsx_config_free. */
TDSX_MUST_CHECK int tdsx_config_parse(tdsx_config_t *c, const char *text, size_t n,
                                      const char *base_dir, tdsx_config_diags_t *diags);

/* Reads and parses a file (at most TDSX_CONFIG_FILE_CAP bytes). */
TDSX_MUST_CHECK int tdsx_config_load(tdsx_config_t *c, const char *path,
                                     tdsx_config_diags_t *diags);

void tdsx_config_free(tdsx_config_t *c);

/* Splits "host:port" ("[v6]:port" too) into host and port. TDSX_E_CONFIG when malformed. */
TDSX_MUST_CHECK int tdsx_config_split_addr(const char *addr, char *host, size_t host_size,
                                           int *port);

#endif
