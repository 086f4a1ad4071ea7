/*
 * daemon.h — integration-test helpers: a throw-away province (CA with an intermediate, a
 * member registry) in a temporary directory, nodes issued into it, real `tdsxd` processes
 * started on loopback, and a raw TLS client that talks to them through the gateway's own
 * TLS engine over a blocking socket.
 *
 * Everything asserts (cmocka) on failure; nothing here returns an error to check.
 */
#ifndef TDSX_TEST_DAEMON_H
#define TDSX_TEST_DAEMON_H

#include "support.h"

#include <sys/types.h>

#include "certs.h"
#include "gateway.h"

#define TDSX_TEST_MAX_NODES 8

typedef struct tdsx_test_node_s {
    char name[32];
    char uscc[TDSX_USCC_LEN + 1];
    char id[TDSX_ID_SIZE];
    tdsx_role_t role;
    char *creds; /* credential directory */
    char *conf;  /* tdsxd.conf */
    char *data;  /* data_dir */
    char *log;   /* the daemon's stderr (JSON lines) */
    char *sock;  /* control socket */
    int port;
    pid_t pid;
} tdsx_test_node_t;

typedef struct tdsx_test_province_s {
    char *dir;
    char *ca;       /* CA directory */
    char *registry; /* member registry file */
    char *crl;      /* CRL file (written by tdsx_test_province_crl) */
    char *foreign;  /* a second, unrelated CA */
    int next_uscc;
} tdsx_test_province_t;

/* Makes the province (root + intermediate) and a foreign CA under a fresh temp dir. */
void tdsx_test_province_init(tdsx_test_province_t *p);
/* Stops nothing: stop nodes first. Removes the directory. */
void tdsx_test_province_free(tdsx_test_province_t *p);
/* Writes the current CRL to p->crl. */
void tdsx_test_province_crl(tdsx_test_province_t *p);

/* Issues a node (valid from `not_before`, 0 = now, for `days`, 0 = 365) with a fresh USCC and
 * a free loopback port, and adds it to the registry unless `register_it` is 0. With
 * foreign = 1 the credentials come from the foreign CA instead. */
void tdsx_test_node_issue(tdsx_test_province_t *p, tdsx_test_node_t *n, const char *name,
                          tdsx_role_t role, int64_t not_before, int days, int register_it,
                          int foreign);
/* A loopback TCP port free right now (bound, read back, closed). */
int tdsx_test_free_port(void);
/* Writes n->conf: role, listen on n->port, credentials, data_dir, registry, small timeouts
 * fit for tests, then `extra` (more config lines, may be NULL). */
void tdsx_test_node_config(tdsx_test_province_t *p, tdsx_test_node_t *n, const char *extra);
/* Starts `tdsxd -c n->conf` with stderr to n->log and waits for its node.ready line. */
void tdsx_test_node_start(tdsx_test_node_t *n);
/* SIGTERM, then waits (up to timeout_ms, then SIGKILL and fails the test). Returns the exit
 * status. */
int tdsx_test_node_stop(tdsx_test_node_t *n, int timeout_ms);
void tdsx_test_node_free(tdsx_test_node_t *n);

/* Waits until the node's log holds a line containing every one of the given substrings
 * (NULL-terminated list); 1 when found within timeout_ms, else 0. */
int tdsx_test_log_wait(const tdsx_test_node_t *n, int timeout_ms, ...);
/* The number of lines of the node's log holding every one of the given substrings
 * (NULL-terminated list), read once, now. */
int tdsx_test_log_count(const tdsx_test_node_t *n, ...);
/* A heap copy (free()) of the first such line, or NULL when there is none. */
char *tdsx_test_log_line(const tdsx_test_node_t *n, ...);
/* Resident memory of a process in KiB (VmRSS). */
long tdsx_test_rss_kib(pid_t pid);
/* Runs a command line through /bin/sh with the build's binaries on PATH; returns its exit
 * status, and its stdout (heap, may be NULL) in *out. */
int tdsx_test_run(char **out, const char *fmt, ...) TDSX_PRINTF(2, 3);

/* A raw client. */
typedef struct tdsx_test_client_s {
    int fd;
    tdsx_trust_t *trust;
    tdsx_registry_t *registry;
    tdsx_tls_ctx_t *ctx;
    tdsx_tls_conn_t *tls;
} tdsx_test_client_t;

/* TCP-connects to 127.0.0.1:port (asserts). No TLS yet. */
void tdsx_test_client_tcp(tdsx_test_client_t *c, int port);
/* Connects and completes the TLS handshake as the node whose credentials are in creds,
 * trusting p's registry (and CRL when present). Returns 0 or the handshake error. */
int tdsx_test_client_open(tdsx_test_client_t *c, tdsx_test_province_t *p, const char *creds,
                          int port);
/* Sends plaintext bytes over TLS (asserts). */
void tdsx_test_client_send(tdsx_test_client_t *c, const void *p, size_t n);
/* Sends a frame (header + packed Frame) over TLS. */
void tdsx_test_client_send_frame(tdsx_test_client_t *c, const void *frame);
/* Reads plaintext until `n` bytes arrived, the peer closed, or timeout_ms passed. Returns
 * the bytes read (>= 0), or the engine's error when the connection failed or closed. */
long tdsx_test_client_recv(tdsx_test_client_t *c, void *p, size_t n, int timeout_ms);
/* 1 when the peer closed the connection (close_notify, EOF or reset) within timeout_ms,
 * reading and discarding whatever came before. */
int tdsx_test_client_closed(tdsx_test_client_t *c, int timeout_ms);
void tdsx_test_client_free(tdsx_test_client_t *c);

#endif
