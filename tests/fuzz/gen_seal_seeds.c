/*
 * gen_seal_seeds.c — writes the seed corpus of fuzz_seal: streams sealed to fuzz_seal's fixed
 * recipient (X25519 secret = 32 bytes 0x5e) in its transfer "fuzz-transfer-01", at the sizes
 * around a record boundary, and the ways a stream goes wrong (another recipient, another
 * transfer, cut short, extended, a flipped byte, an unknown version). Usage:
 * gen_seal_seeds DIR (e.g. tests/fuzz/corpus/seal). Keys and nonces are fresh on every run, so
 * the files differ between runs; each is what its name says whatever the run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

static const char *dir;
static const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN] = "fuzz-transfer-01";

static void write_seed(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "gen_seal_seeds: cannot write %s\n", path);
        exit(1);
    }
}

/* A stream of n bytes of pattern plaintext to pk in transfer id, appended to out. */
static void seal_to(const uint8_t pk[32], const uint8_t *id, size_t n, tdsx_buf_t *out)
{
    tdsx_sealer_t *s = NULL;
    uint8_t chunk[1000];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 7 + 1);
    if (tdsx_sealer_new(pk, id, out, &s) != 0)
        exit(1);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        if (tdsx_sealer_update(s, tdsx_bytes(chunk, k), out) != 0)
            exit(1);
        done += k;
    }
    if (tdsx_sealer_final(s, out, NULL) != 0)
        exit(1);
    tdsx_sealer_free(s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    if (sodium_init() < 0)
        return 1;
    uint8_t sk[32], pk[32], other_pk[32], other_sk[32];
    memset(sk, 0x5e, sizeof sk);
    if (crypto_scalarmult_base(pk, sk) != 0)
        return 1;
    crypto_box_keypair(other_pk, other_sk);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 4u * TDSX_SEAL_CHUNK);

    /* Valid streams: no data record, short ones, one full record and one more byte, and
     * several records with a short last one. Whole chunks make 64 KiB seeds, so only two. */
    const size_t sizes[] = {0, 1, 40, 1000, TDSX_SEAL_CHUNK + 1, 2 * TDSX_SEAL_CHUNK + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "valid-%zu", sizes[i]);
        tdsx_buf_reset(&b);
        seal_to(pk, transfer_id, sizes[i], &b);
        write_seed(name, b.p, b.len);
    }

    tdsx_buf_reset(&b);
    seal_to(other_pk, transfer_id, 100, &b);
    write_seed("other-recipient", b.p, b.len);

    tdsx_buf_reset(&b);
    seal_to(pk, (const uint8_t *)"fuzz-transfer-02", 100, &b);
    write_seed("other-transfer", b.p, b.len);

    tdsx_buf_reset(&b);
    seal_to(pk, transfer_id, 100, &b);
    write_seed("cut-before-final", b.p, b.len - TDSX_SEAL_FINAL_RECORD_LEN);
    write_seed("cut-in-header", b.p, TDSX_SEAL_HEADER_LEN / 2);
    write_seed("cut-in-prefix", b.p, TDSX_SEAL_HEADER_LEN + 2);
    if (tdsx_buf_append(&b, "x", 1) != 0)
        return 1;
    write_seed("extended", b.p, b.len);
    b.len--;
    b.p[TDSX_SEAL_HEADER_LEN + 20] ^= 0x04;
    write_seed("flipped-record", b.p, b.len);
    b.p[TDSX_SEAL_HEADER_LEN + 20] ^= 0x04;
    b.p[8] = 2;
    write_seed("version-2", b.p, b.len);

    tdsx_buf_free(&b);
    sodium_memzero(other_sk, sizeof other_sk);
    return 0;
}
