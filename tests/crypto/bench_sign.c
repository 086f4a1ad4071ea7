/*
 * bench_sign.c — statements signed and verified per second at batch sizes 1, 16, 64 and 256
 * (a micro-benchmark, not a test; build Release: cmake -DCMAKE_BUILD_TYPE=Release ...).
 *
 *     tdsx_bench_sign [payload-bytes] [seconds-per-measurement]     (defaults 512 and 1)
 *
 * Signing: submit a batch of statements, flush, count them (the callback only looks at the
 * envelope). Verifying: every batch pays one Ed25519 check and its other statements hit the
 * root cache, as at a receiver of a busy peer. For reference
 * the same run also times bare SHA-256 over the payload and one bare Ed25519 sign/verify, so
 * the report shows whether hashing or Ed25519 dominates at each size.
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

struct sink {
    uint8_t **env;
    size_t *len;
    size_t next;
    int keep;
    unsigned long bytes;
};

static void on_signed(void *userdata, int status, tdsx_bytes_t envelope)
{
    struct sink *s = userdata;
    if (status != 0) {
        fprintf(stderr, "bench: signing failed: %s\n", tdsx_strerror(status));
        exit(1);
    }
    s->bytes += envelope.n;
    if (s->keep) {
        s->env[s->next] = malloc(envelope.n);
        if (!s->env[s->next])
            exit(1);
        memcpy(s->env[s->next], envelope.p, envelope.n);
        s->len[s->next] = envelope.n;
    }
    s->next++;
}

static void sign_batch(tdsx_signer_t *signer, struct sink *sink, const uint8_t *payload,
                       size_t payload_len, size_t batch)
{
    sink->next = 0;
    for (size_t i = 0; i < batch; i++) {
        if (tdsx_signer_submit(signer, "application/vnd.tdsx.nro.v1+protobuf",
                               tdsx_bytes(payload, payload_len), on_signed, sink) != 0)
            exit(1);
    }
    if (tdsx_signer_flush(signer) != 0 || sink->next != batch)
        exit(1);
}

/* The hashing a flush of `batch` statements does (one leaf per statement over 0x00 || PAE, then
 * the tree), timed on its own: microseconds per statement. */
static double hashing_us(const uint8_t *payload, size_t payload_len, size_t batch, double secs)
{
    tdsx_buf_t pae;
    tdsx_buf_init(&pae, TDSX_ENVELOPE_MAX);
    tdsx_sha256_t h;
    tdsx_hash_t *leaves = calloc(batch, sizeof *leaves);
    if (!leaves || tdsx_buf_append(&pae, "", 1) != 0 ||
        tdsx_pae(&pae, "application/vnd.tdsx.nro.v1+protobuf", tdsx_bytes(payload, payload_len)) !=
            0 ||
        tdsx_sha256_init(&h) != 0)
        exit(1);
    unsigned long n = 0;
    double t0 = now();
    while (now() - t0 < secs) {
        for (size_t i = 0; i < batch; i++) {
            if (tdsx_sha256_update(&h, pae.p, pae.len) != 0 || tdsx_sha256_final(&h, leaves[i].b))
                exit(1);
        }
        tdsx_merkle_tree_t *t = NULL;
        if (tdsx_merkle_tree_new(leaves, batch, &t) != 0)
            exit(1);
        tdsx_merkle_tree_free(t);
        n += batch;
    }
    double us = (now() - t0) / (double)n * 1e6;
    tdsx_sha256_free(&h);
    tdsx_buf_free(&pae);
    free(leaves);
    return us;
}

int main(int argc, char **argv)
{
    size_t payload_len = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
    double secs = argc > 2 ? strtod(argv[2], NULL) : 1.0;
    if (payload_len == 0 || payload_len > TDSX_STATEMENT_MAX || secs <= 0) {
        fprintf(stderr, "usage: %s [payload-bytes] [seconds]\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    uint8_t *payload = malloc(payload_len);
    if (!payload)
        return 1;
    randombytes_buf(payload, payload_len);
    uint8_t seed[TDSX_ED25519_SEED_LEN], pk[TDSX_ED25519_PK_LEN];
    randombytes_buf(seed, sizeof seed);
    tdsx_signer_opts_t opts = {.max_batch = 256, .max_queue = 256};
    tdsx_signer_t *signer = NULL;
    if (tdsx_signer_new(seed, &opts, &signer) != 0)
        return 1;
    sodium_memzero(seed, sizeof seed);
    tdsx_signer_public_key(signer, pk);

    /* Reference costs. */
    double t0 = now();
    unsigned long n = 0;
    uint8_t digest[TDSX_HASH_LEN];
    while (now() - t0 < secs / 2) {
        for (int i = 0; i < 256; i++)
            if (tdsx_sha256(payload, payload_len, digest) != 0)
                return 1;
        n += 256;
    }
    double sha_us = (now() - t0) / (double)n * 1e6;
    unsigned char sk[crypto_sign_SECRETKEYBYTES], rpk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_keypair(rpk, sk);
    t0 = now();
    n = 0;
    while (now() - t0 < secs / 2) {
        crypto_sign_detached(sig, NULL, digest, sizeof digest, sk);
        n++;
    }
    double sign_us = (now() - t0) / (double)n * 1e6;
    t0 = now();
    n = 0;
    while (now() - t0 < secs / 2) {
        if (crypto_sign_verify_detached(sig, digest, sizeof digest, rpk) != 0)
            return 1;
        n++;
    }
    double verify_us = (now() - t0) / (double)n * 1e6;
    sodium_memzero(sk, sizeof sk);

    printf("payload %zu bytes; SHA-256 of one payload %.2f us, Ed25519 sign %.1f us, "
           "verify %.1f us\n",
           payload_len, sha_us, sign_us, verify_us);
    printf("%6s %12s %12s %14s %12s %12s %12s\n", "batch", "signed/s", "verified/s", "sign us/stmt",
           "of it: hash", "of it: Ed25519", "verify us/stmt");

    static const size_t batches[] = {1, 16, 64, 256};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        size_t batch = batches[b];
        struct sink sink = {0};

        unsigned long signed_n = 0;
        t0 = now();
        while (now() - t0 < secs) {
            sign_batch(signer, &sink, payload, payload_len, batch);
            signed_n += batch;
        }
        double sign_rate = (double)signed_n / (now() - t0);

        /* Two batches kept (different roots), verified alternately by one verifier whose
         * cache holds a single root: every batch pays one Ed25519 check, the rest of its
         * statements hit the cache. */
        struct sink kept[2] = {{0}};
        for (int k = 0; k < 2; k++) {
            kept[k].env = calloc(batch, sizeof *kept[k].env);
            kept[k].len = calloc(batch, sizeof *kept[k].len);
            if (!kept[k].env || !kept[k].len)
                return 1;
            kept[k].keep = 1;
            payload[0] ^= 0x01;
            sign_batch(signer, &kept[k], payload, payload_len, batch);
        }
        tdsx_arena_t *arena = NULL;
        tdsx_verifier_t *v = NULL;
        if (tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &arena) != 0 ||
            tdsx_verifier_new(1, &v) != 0 || tdsx_verifier_add_key(v, pk) != 0)
            return 1;
        unsigned long verified_n = 0;
        t0 = now();
        for (int k = 0; now() - t0 < secs; k ^= 1) {
            for (size_t i = 0; i < batch; i++) {
                tdsx_verified_t out;
                if (tdsx_envelope_verify(v, "application/vnd.tdsx.nro.v1+protobuf",
                                         tdsx_bytes(kept[k].env[i], kept[k].len[i]), arena,
                                         &out) != 0)
                    return 1;
                tdsx_arena_reset(arena);
            }
            verified_n += batch;
        }
        double verify_rate = (double)verified_n / (now() - t0);
        double hash_us = hashing_us(payload, payload_len, batch, secs / 2);
        printf("%6zu %12.0f %12.0f %14.2f %12.2f %14.2f %12.2f\n", batch, sign_rate, verify_rate,
               1e6 / sign_rate, hash_us, sign_us / (double)batch, 1e6 / verify_rate);

        tdsx_verifier_stats_t st;
        tdsx_verifier_stats(v, &st);
        if (st.verified - st.cache_hits != verified_n / batch)
            fprintf(stderr, "bench: unexpected cache behaviour\n");
        tdsx_verifier_free(v);
        tdsx_arena_free(arena);
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < batch; i++)
                free(kept[k].env[i]);
            free(kept[k].env);
            free(kept[k].len);
        }
    }
    tdsx_signer_free(signer);
    free(payload);
    return 0;
}
