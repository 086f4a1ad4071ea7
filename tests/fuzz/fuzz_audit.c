/*
 * fuzz_audit.c — the auditor's own parsers (gateway/audit.h) on arbitrary bytes: the MANIFEST,
 * a consistency-proof file and the --state file, which an auditor reads from whoever hands
 * over the evidence.
 *
 * The input is split at its first two NUL bytes into those three files, written into a scratch
 * evidence directory beside the fuzz province's root (the anchor). tdsx_audit_verify must
 * return a documented code, report only PASS, FAIL or INDETERMINATE lines with a check name,
 * and never rewrite a state file when something failed (nothing here can pass: there is no
 * signed checkpoint). Seeds (corpus/audit/): a real export's MANIFEST, proof and state, and
 * cut, path-escaping and malformed variants.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The fuzz province's root (tests/fuzz/fuzz_bundle.c). */
static const char anchor[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBczCCASWgAwIBAgIQfkK+/4yQ54/pFz+QJe/vxTAFBgMrZXAwKDESMBAGA1UE\n"
                             "CgwJRnV6eiBSb290MRIwEAYDVQQDDAlGdXp6IFJvb3QwIBcNMjYxMTIyMDIzNzA2\n"
                             "WhgPMjEyNjEwMjkwMjM3MDZaMCgxEjAQBgNVBAoMCUZ1enogUm9vdDESMBAGA1UE\n"
                             "AwwJRnV6eiBSb290MCowBQYDK2VwAyEAR5QHvei8P3LVdmOFm3NPS0gWzfCidrbq\n"
                             "ZAdPmx7S+yWjYzBhMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0G\n"
                             "A1UdDgQWBBS9nkO2Yz0iptgkNAg2DsF+GQoUzjAfBgNVHSMEGDAWgBS9nkO2Yz0i\n"
                             "ptgkNAg2DsF+GQoUzjAFBgMrZXADQQAnNdYzBmbBOXYWhXXrzeBdz7ansY3750+Y\n"
                             "J1CdcsXm2QG72FyucXReeLfkHK3kN1j6H92tlnbBvceE6LUDRAoJ\n"
                             "-----END CERTIFICATE-----\n";

static char root[64], dir[96], anchor_path[96], state_path[96];

static void put(const char *path, const void *p, size_t n)
{
    unlink(path);
    check(tdsx_file_write(path, p, n, 0600, 1) == 0);
}

static void on_check(void *ud, tdsx_audit_result_t r, const char *check_name, const char *where,
                     const char *detail)
{
    (void)ud;
    check(r == TDSX_AUDIT_PASS || r == TDSX_AUDIT_FAIL || r == TDSX_AUDIT_INDETERMINATE);
    check(check_name && *check_name && where && detail);
}

static void cleanup(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, TDSX_AUDIT_MANIFEST);
    unlink(path);
    snprintf(path, sizeof path, "%s/proofs/0-0", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/proofs", dir);
    rmdir(path);
    rmdir(dir);
    unlink(anchor_path);
    unlink(state_path);
    rmdir(root);
}

static void setup(void)
{
    char path[160];
    snprintf(root, sizeof root, "/tmp/fuzz-audit-%ld", (long)getpid());
    snprintf(dir, sizeof dir, "%s/evidence", root);
    snprintf(anchor_path, sizeof anchor_path, "%s/root.pem", root);
    snprintf(state_path, sizeof state_path, "%s/state", root);
    check(mkdir(root, 0700) == 0 || access(root, W_OK) == 0);
    check(mkdir(dir, 0700) == 0 || access(dir, W_OK) == 0);
    snprintf(path, sizeof path, "%s/proofs", dir);
    check(mkdir(path, 0700) == 0 || access(path, W_OK) == 0);
    put(anchor_path, anchor, sizeof anchor - 1);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        setup();
    tdsx_log_set_level(TDSX_LOG_OFF);
    const uint8_t *part[3] = {data, NULL, NULL};
    size_t len[3] = {size, 0, 0};
    for (int i = 0; i < 2; i++) {
        const uint8_t *nul = part[i] ? memchr(part[i], 0, len[i]) : NULL;
        if (!nul)
            break;
        part[i + 1] = nul + 1;
        len[i + 1] = len[i] - (size_t)(nul + 1 - part[i]);
        len[i] = (size_t)(nul - part[i]);
    }
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, TDSX_AUDIT_MANIFEST);
    put(path, len[0] ? (const void *)part[0] : "", len[0]);
    snprintf(path, sizeof path, "%s/proofs/0-0", dir);
    put(path, part[1] ? (const void *)part[1] : "", len[1]);
    put(state_path, part[2] ? (const void *)part[2] : "", len[2]);

    tdsx_audit_opts_t o = {anchor_path, state_path, 0};
    tdsx_audit_summary_t sum;
    int rc = tdsx_audit_verify(dir, &o, on_check, NULL, &sum);
    check(rc == 0 || rc == TDSX_E_FORMAT || rc == TDSX_E_NOMEM || rc == TDSX_E_IO);
    if (rc == 0) {
        /* No signed checkpoint: the audit fails, and the state file is left as it was. */
        check(sum.fail > 0);
        uint8_t *st = NULL;
        size_t n = 0;
        check(tdsx_file_read(state_path, 1u << 20, &st, &n) == 0);
        check(n == len[2] && (n == 0 || memcmp(st, part[2], n) == 0));
        tdsx_free(st);
    }
    return 0;
}
