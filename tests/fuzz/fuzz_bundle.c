/*
 * fuzz_bundle.c — published trust bundle files (gateway/bundle.h) on arbitrary bytes.
 *
 * The input is tried as a SignedBundle file twice: decoded without an anchor, and verified
 * against the fuzz province's root below. Both give only documented results (0 or a TDSX code);
 * what verifies also decodes, to the same serial and counts, formats as text, and yields a
 * registry; the number of members matches the registry's. Seeds (corpus/bundle/): bundles
 * signed by that province's centre (one current, one with a revoked member), an unsigned
 * bundle, and cut or flipped variants. The province was made with `tdsx ca init --days 36500`
 * and its centre issued for 36500 days, so the seeds keep verifying.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

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

/* Every code the two calls document, or an allocation failure. */
static int documented(int rc)
{
    return rc == 0 || (rc <= TDSX_ERR_BASE && strncmp(tdsx_err_name(rc), "TDSX_E_", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tdsx_log_set_level(TDSX_LOG_ERROR); /* bundle.invalid warnings on every input */
    tdsx_bundle_t *d = NULL, *v = NULL;
    tdsx_bundle_info_t di, vi;
    int rd = tdsx__bundle_decode(tdsx_bytes(data, size), &d);
    int rv = tdsx__bundle_verify(tdsx_bytes(data, size), tdsx_bytes(anchor, sizeof anchor - 1),
                                 tdsx_bytes(NULL, 0), 0, &v);
    check(documented(rd) && documented(rv));
    check((rd == 0) == (d != NULL));
    check((rv == 0) == (v != NULL));
    if (v) {
        check(d != NULL); /* what verifies with an anchor also decodes without one */
        tdsx__bundle_info(d, &di);
        tdsx__bundle_info(v, &vi);
        check(vi.verified == 1 && di.verified == 0);
        check(vi.serial == di.serial && vi.n_members == di.n_members && vi.n_crls == di.n_crls);
        check(memcmp(vi.sha256, di.sha256, 32) == 0);
        check(vi.serial > 0 && vi.expires_at > vi.issued_at);
        tdsx_registry_t *r = NULL;
        check(tdsx__bundle_registry(v, &r, NULL) == 0);
        check(tdsx_registry_count(r) == vi.n_members);
        tdsx_registry_free(r);
    }
    if (d) {
        tdsx_buf_t text;
        tdsx_buf_init(&text, 64u * 1024u * 1024u);
        check(tdsx__bundle_format(d, 1, &text) == 0 && text.len > 0);
        tdsx_buf_free(&text);
    }
    tdsx__bundle_free(d);
    tdsx__bundle_free(v);
    return 0;
}
