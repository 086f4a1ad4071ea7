/*
 * fuzz_seal.c — arbitrary bytes as a sealed stream (SPEC §9), opened by a fixed recipient in a
 * fixed transfer, and the same bytes sealed as plaintext and opened again.
 *
 * The recipient's X25519 secret is 32 bytes 0x5e and the transfer id "fuzz-transfer-01", the
 * same as tests/fuzz/gen_seal_seeds.c, so mutations of the seeds get past the key unwrap and
 * reach the record parser, secretstream and the trailer check.
 * Checks: only documented errors come out; the input fed whole and fed in small slices gives the
 * same answer and the same plaintext; the plaintext handed out never exceeds the bound of
 * crypto.h; an accepted stream has exactly the length tdsx_seal_ciphertext_len predicts and its
 * final length and SHA-256 are those of the plaintext handed out; sealing the input as
 * plaintext round-trips.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN] = "fuzz-transfer-01";

static int documented(int rc)
{
    return rc == TDSX_E_SEAL || rc == TDSX_E_SEAL_RECIPIENT || rc == TDSX_E_SEAL_TRUNCATED ||
           rc == TDSX_E_UNSUPPORTED;
}

/* Opens data in slices of `stride` bytes (0: whole); the plaintext goes to out. */
static int open_in_slices(const uint8_t sk[32], const uint8_t *data, size_t size, size_t stride,
                          tdsx_buf_t *out, uint64_t *len, uint8_t hash[TDSX_HASH_LEN])
{
    tdsx_opener_t *o = NULL;
    check(tdsx_opener_new(sk, transfer_id, &o) == 0);
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0;) {
        size_t k = stride && stride < size - off ? stride : size - off;
        size_t before = out->len;
        rc = tdsx_opener_feed(o, tdsx_bytes(data + off, k), out);
        check(out->len - before <= k + TDSX_SEAL_RECORD_MAX);
        off += k;
    }
    int frc = tdsx_opener_final(o, len, hash);
    check(rc == 0 || frc == rc); /* errors are sticky */
    tdsx_opener_free(o);
    return frc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t sk[32], pk[32];
    check(sodium_init() >= 0);
    memset(sk, 0x5e, sizeof sk);
    check(crypto_scalarmult_base(pk, sk) == 0);
    const size_t cap = size + 2 * TDSX_SEAL_RECORD_MAX;
    tdsx_buf_t whole, sliced;
    tdsx_buf_init(&whole, cap);
    tdsx_buf_init(&sliced, cap);

    uint64_t len = 0, len2 = 0;
    uint8_t hash[TDSX_HASH_LEN], hash2[TDSX_HASH_LEN], digest[TDSX_HASH_LEN];
    int rc = open_in_slices(sk, data, size, 0, &whole, &len, hash);
    check(rc == 0 || documented(rc));
    int rc2 = open_in_slices(sk, data, size, 1 + size % 61, &sliced, &len2, hash2);
    check(rc2 == rc);
    if (rc == 0) {
        check(whole.len == sliced.len && len == len2 && len == whole.len);
        check(whole.len == 0 || memcmp(whole.p, sliced.p, whole.len) == 0);
        check(memcmp(hash, hash2, sizeof hash) == 0);
        check(tdsx_sha256(whole.p, whole.len, digest) == 0);
        check(memcmp(hash, digest, sizeof hash) == 0);
        uint64_t want;
        check(tdsx_seal_ciphertext_len(len, &want) == 0 && want == size);
        check(tdsx_seal_plaintext_len(size, &want) == 0 && want == len);
    }

    /* The input as plaintext: sealed in two updates, it opens to itself. */
    tdsx_buf_t ct, back;
    tdsx_buf_init(&ct, size + 4 * TDSX_SEAL_RECORD_MAX);
    tdsx_buf_init(&back, size + 4 * TDSX_SEAL_RECORD_MAX);
    tdsx_sealer_t *s = NULL;
    check(tdsx_sealer_new(pk, transfer_id, &ct, &s) == 0);
    check(tdsx_sealer_update(s, tdsx_bytes(data, size / 3), &ct) == 0);
    check(tdsx_sealer_update(s, tdsx_bytes(data + size / 3, size - size / 3), &ct) == 0);
    check(tdsx_sealer_final(s, &ct, hash) == 0);
    tdsx_sealer_free(s);
    uint64_t want;
    check(tdsx_seal_ciphertext_len(size, &want) == 0 && want == ct.len);
    check(open_in_slices(sk, ct.p, ct.len, 1 + size % 97, &back, &len, hash2) == 0);
    check(len == size && back.len == size && (size == 0 || memcmp(back.p, data, size) == 0));
    check(memcmp(hash, hash2, sizeof hash) == 0);

    tdsx_buf_free(&ct);
    tdsx_buf_free(&back);
    tdsx_buf_free(&whole);
    tdsx_buf_free(&sliced);
    return 0;
}
