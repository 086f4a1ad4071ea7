/*
 * bench_seal.c — sealing and opening throughput (a micro-benchmark, not a test; build Release:
 * cmake -DCMAKE_BUILD_TYPE=Release ...).
 *
 *     tdsx_bench_seal [MiB] [update-KiB]          (defaults 1024 and 256)
 *
 * Seals MiB of plaintext in updates of update-KiB and opens every update's output as soon as it
 * is made (so nothing is held whole in memory), timing the sealer and the opener apart. For
 * reference the same run times bare SHA-256 over the same bytes (what an unsealed transfer
 * spends per byte at each end) and bare secretstream pushes of whole chunks, so the report shows
 * what sealing adds and where it goes. The measurements are interleaved update by update, so
 * load from other processes shifts them alike. Figures are per core, plaintext MB (10^6 bytes)
 * per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "crypto.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_seal: %s: %s\n", what, tdsx_strerror(rc));
    exit(1);
}

static size_t arg_size(const char *s, size_t dflt)
{
    if (!s)
        return dflt;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (!end || *end || v == 0) {
        fprintf(stderr, "usage: tdsx_bench_seal [MiB] [update-KiB]\n");
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t total = arg_size(argc > 1 ? argv[1] : NULL, 1024) * 1024 * 1024;
    size_t update = arg_size(argc > 2 ? argv[2] : NULL, 256) * 1024;
    if (sodium_init() < 0)
        return 1;
    uint8_t *pt = malloc(update);
    if (!pt)
        return 1;
    randombytes_buf(pt, update);
    uint8_t pk[32], sk[32], id[TDSX_SEAL_TRANSFER_ID_LEN];
    crypto_box_keypair(pk, sk);
    randombytes_buf(id, sizeof id);
    int rc;

    /* Every measurement advances one update at a time, interleaved with the others, so a busy
     * shared machine slows them all alike and the ratios stay meaningful. */
    tdsx_sha256_t h, cth;
    uint8_t digest[TDSX_HASH_LEN], base[TDSX_HASH_LEN];
    if ((rc = tdsx_sha256_init(&h)) != 0 || (rc = tdsx_sha256_init(&cth)) != 0)
        die("sha256", rc);
    /* Bare secretstream over whole chunks: the cipher's share of sealing. */
    crypto_secretstream_xchacha20poly1305_state st;
    uint8_t key[32], ssh[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    uint8_t *c = malloc(TDSX_SEAL_CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES);
    if (!c)
        return 1;
    crypto_secretstream_xchacha20poly1305_keygen(key);
    crypto_secretstream_xchacha20poly1305_init_push(&st, ssh, key);

    tdsx_buf_t ct, out;
    tdsx_buf_init(&ct, tdsx_seal_update_bound(update) + TDSX_SEAL_FINAL_MAX + TDSX_SEAL_HEADER_LEN);
    tdsx_buf_init(&out, ct.cap + TDSX_SEAL_RECORD_MAX);
    tdsx_sealer_t *s = NULL;
    tdsx_opener_t *o = NULL;
    if ((rc = tdsx_opener_new(sk, id, &o)) != 0)
        die("opener", rc);
    double t_sha = 0, t_ss = 0, t_seal = 0, t_open = 0, t_cth = 0;
    uint64_t ct_total = 0, pt_out = 0;
    double t0 = now();
    if ((rc = tdsx_sealer_new(pk, id, &ct, &s)) != 0)
        die("sealer", rc);
    t_seal += now() - t0;
    for (size_t done = 0, k = 0; done <= total; done += k ? k : 1) {
        /* The last round (k == 0) is the final record. */
        k = total - done < update ? total - done : update;
        double a = now();
        if (k)
            rc = tdsx_sealer_update(s, tdsx_bytes(pt, k), &ct);
        else
            rc = tdsx_sealer_final(s, &ct, digest);
        if (rc != 0)
            die("seal", rc);
        double b = now();
        /* The sender hashes the ciphertext it sends: the NRO covers it. */
        if ((rc = tdsx_sha256_update(&cth, ct.p, ct.len)) != 0)
            die("sha256", rc);
        double d = now();
        if ((rc = tdsx_opener_feed(o, tdsx_buf_bytes(&ct), &out)) != 0)
            die("open", rc);
        double e = now();
        if ((rc = tdsx_sha256_update(&h, pt, k)) != 0)
            die("sha256", rc);
        double f = now();
        for (size_t off = 0; off < k; off += TDSX_SEAL_CHUNK) {
            size_t m = k - off < TDSX_SEAL_CHUNK ? k - off : TDSX_SEAL_CHUNK;
            crypto_secretstream_xchacha20poly1305_push(&st, c, NULL, pt + off, m, NULL, 0, 0);
        }
        double g = now();
        t_seal += b - a;
        t_cth += d - b;
        t_open += e - d;
        t_sha += f - e;
        t_ss += g - f;
        ct_total += ct.len;
        pt_out += out.len;
        tdsx_buf_reset(&ct);
        tdsx_buf_reset(&out);
    }
    if ((rc = tdsx_sha256_final(&h, base)) != 0)
        die("sha256", rc);
    free(c);
    uint64_t plen = 0;
    uint8_t opened[TDSX_HASH_LEN];
    if ((rc = tdsx_opener_final(o, &plen, opened)) != 0)
        die("open final", rc);
    uint64_t want_ct;
    if (plen != total || pt_out != total || memcmp(opened, digest, sizeof opened) != 0 ||
        memcmp(base, digest, sizeof base) != 0 || tdsx_seal_ciphertext_len(total, &want_ct) != 0 ||
        want_ct != ct_total) {
        fprintf(stderr, "bench_seal: the stream did not round-trip\n");
        return 1;
    }
    tdsx_sealer_free(s);
    tdsx_opener_free(o);
    tdsx_sha256_free(&h);
    tdsx_sha256_free(&cth);
    tdsx_buf_free(&ct);
    tdsx_buf_free(&out);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(key, sizeof key);
    free(pt);

    double mb = (double)total / 1e6;
    printf("sealed stream: %zu MiB in %zu KiB updates, %u KiB records, %.3f%% overhead\n",
           total >> 20, update >> 10, TDSX_SEAL_CHUNK >> 10,
           100.0 * (double)(ct_total - total) / (double)total);
    printf("%-44s %8.0f MB/s\n", "SHA-256 (OpenSSL EVP)", mb / t_sha);
    printf("%-44s %8.0f MB/s\n", "secretstream push alone (libsodium)", mb / t_ss);
    printf("%-44s %8.0f MB/s\n", "seal (secretstream + plaintext SHA-256)", mb / t_seal);
    printf("%-44s %8.0f MB/s\n", "open (secretstream + plaintext SHA-256)", mb / t_open);
    /* Per byte, an unsealed sender hashes the plaintext once; a sealed one seals (which hashes
     * the plaintext) and hashes the ciphertext for the NRO. A receiver likewise. */
    printf("%-44s %8.2f\n", "sender crypto, sealed / unsealed rate", t_sha / (t_seal + t_cth));
    printf("%-44s %8.2f\n", "receiver crypto, sealed / unsealed rate", t_sha / (t_open + t_cth));
    printf("%-44s %8.0f MB/s\n", "extra work of sealing at the sender",
           mb / (t_seal + t_cth - t_sha));
    printf("%-44s %8.0f MB/s\n", "extra work of opening at the receiver",
           mb / (t_open + t_cth - t_sha));
    return 0;
}
