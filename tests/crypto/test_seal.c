/* Sealed payload streams: round trips at every chunk boundary and in any slicing, the format
 * re-read by hand with libsodium alone, streams forged by a dishonest sender, and every way a
 * relay or an attacker can damage, cut, reorder, extend or redirect a stream. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "certs.h"
#include "crypto.h"

#define C TDSX_SEAL_CHUNK
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL
/* Big enough for every stream these tests make. */
#define BIG_CAP (64u * 1024u * 1024u)

static uint8_t pk_r[32], sk_r[32]; /* the recipient */
static uint8_t pk_o[32], sk_o[32]; /* another node (a relay, say) */
static const uint8_t tid[TDSX_SEAL_TRANSFER_ID_LEN] = "transfer-0000001";
static const uint8_t tid_other[TDSX_SEAL_TRANSFER_ID_LEN] = "transfer-0000002";

/* A reproducible generator for slice sizes (no libc rand: the sizes must replay). */
static uint64_t prng_state = 0x5ea1ed5ea1ed5ea1ull;
static uint64_t next_u64(void)
{
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Mostly small and odd slices, sometimes several records at once. */
static size_t slice_len(size_t max)
{
    uint64_t r = next_u64();
    size_t n;
    switch (r % 4) {
    case 0: n = 1 + (size_t)(r >> 8) % 7; break;
    case 1: n = 1 + (size_t)(r >> 8) % 1000; break;
    case 2: n = 1 + (size_t)(r >> 8) % (C + 100); break;
    default: n = 1 + (size_t)(r >> 8) % (4 * C); break;
    }
    return n < max ? n : max;
}

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    crypto_box_keypair(pk_r, sk_r);
    crypto_box_keypair(pk_o, sk_o);
    return 0;
}

static uint8_t *random_bytes(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    randombytes_buf(p, n);
    return p;
}

/* Seals pt in updates of random sizes (sliced == 0: one update) and returns the whole stream
 * (free with tdsx_free). Checks the update and final output bounds of crypto.h on the way. */
static uint8_t *seal_with(const uint8_t pk[32], const uint8_t id[16], const uint8_t *pt, size_t n,
                          int sliced, size_t *ct_len, uint8_t hash[32])
{
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    tdsx_sealer_t *s = NULL;
    assert_int_equal(tdsx_sealer_new(pk, id, &out, &s), 0);
    assert_int_equal(out.len, TDSX_SEAL_HEADER_LEN);
    size_t off = 0;
    while (off < n) {
        size_t k = sliced ? slice_len(n - off) : n - off;
        size_t before = out.len;
        assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(pt + off, k), &out), 0);
        assert_true(out.len - before <= tdsx_seal_update_bound(k));
        off += k;
    }
    assert_int_equal(tdsx_sealer_plaintext_len(s), n);
    size_t before = out.len;
    assert_int_equal(tdsx_sealer_final(s, &out, hash), 0);
    assert_true(out.len - before <= TDSX_SEAL_FINAL_MAX);
    tdsx_sealer_free(s);
    char *p = tdsx_buf_take(&out, ct_len);
    assert_non_null(p);
    return (uint8_t *)p;
}

static uint8_t *seal(const uint8_t *pt, size_t n, size_t *ct_len)
{
    uint8_t h[32];
    return seal_with(pk_r, tid, pt, n, 1, ct_len, h);
}

/*
 * Opens a stream with `sk` for transfer `id`, feeding it whole (max_slice 0), in random slices
 * (max_slice SIZE_MAX) or in slices of at most max_slice bytes. Returns the first error of a
 * feed (after checking final repeats it: errors are sticky) or final's answer. pt (may be NULL)
 * receives the plaintext handed out.
 */
static int open_with(const uint8_t sk[32], const uint8_t id[16], const uint8_t *ct, size_t n,
                     size_t max_slice, tdsx_buf_t *pt, uint64_t *len, uint8_t hash[32])
{
    tdsx_buf_t local;
    tdsx_buf_init(&local, BIG_CAP);
    if (!pt)
        pt = &local;
    tdsx_opener_t *o = NULL;
    assert_int_equal(tdsx_opener_new(sk, id, &o), 0);
    size_t off = 0;
    int rc = 0;
    while (off < n && rc == 0) {
        size_t k = n - off;
        if (max_slice == SIZE_MAX)
            k = slice_len(n - off);
        else if (max_slice && k > max_slice)
            k = max_slice;
        size_t before = pt->len;
        rc = tdsx_opener_feed(o, tdsx_bytes(ct + off, k), pt);
        assert_true(pt->len - before <= k + TDSX_SEAL_RECORD_MAX);
        off += k;
    }
    if (rc == 0)
        rc = tdsx_opener_final(o, len, hash);
    else
        assert_int_equal(tdsx_opener_final(o, len, hash), rc);
    tdsx_opener_free(o);
    tdsx_buf_free(&local);
    return rc;
}

static int open_status(const uint8_t *ct, size_t n)
{
    return open_with(sk_r, tid, ct, n, 0, NULL, NULL, NULL);
}

/* The records of a stream as crypto.h documents them: offsets of each length prefix. */
typedef struct {
    size_t off[64];
    size_t len[64]; /* prefix included */
    size_t count;
} records_t;

static void split_records(const uint8_t *ct, size_t n, records_t *r)
{
    size_t off = TDSX_SEAL_HEADER_LEN;
    r->count = 0;
    while (off < n) {
        assert_true(off + 4 <= n && r->count < 64);
        size_t l = ((size_t)ct[off] << 24) | ((size_t)ct[off + 1] << 16) |
                   ((size_t)ct[off + 2] << 8) | ct[off + 3];
        assert_true(off + 4 + l <= n);
        r->off[r->count] = off;
        r->len[r->count] = 4 + l;
        r->count++;
        off += 4 + l;
    }
}

/* A new stream: the header, then the given records in the given order (indexes into r). */
static uint8_t *rebuild(const uint8_t *ct, const records_t *r, const size_t *order, size_t k,
                        size_t *len)
{
    size_t n = TDSX_SEAL_HEADER_LEN;
    for (size_t i = 0; i < k; i++)
        n += r->len[order[i]];
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, ct, TDSX_SEAL_HEADER_LEN);
    size_t off = TDSX_SEAL_HEADER_LEN;
    for (size_t i = 0; i < k; i++) {
        memcpy(p + off, ct + r->off[order[i]], r->len[order[i]]);
        off += r->len[order[i]];
    }
    *len = n;
    return p;
}

/* ------------------------------------------------------------------------------------------
 * A dishonest sender: streams written by hand after the documented format, so the opener can
 * be shown records no honest sealer makes.
 * ---------------------------------------------------------------------------------------- */
typedef struct {
    unsigned char tag;
    const uint8_t *m;
    size_t n;
} forged_t;

static void doc_ad(uint8_t ad[57], const uint8_t id[16], const uint8_t pk[32])
{
    memcpy(ad, "TDSXSEAL", 8);
    ad[8] = 1;
    memcpy(ad + 9, id, 16);
    memcpy(ad + 25, pk, 32);
}

static void trailer_of(uint8_t t[40], uint64_t len, const uint8_t *pt, size_t n)
{
    for (int i = 7; i >= 0; i--) {
        t[i] = (uint8_t)len;
        len >>= 8;
    }
    crypto_hash_sha256(t + 8, pt, n);
}

static uint8_t *forge(const forged_t *recs, size_t k, const uint8_t *ad, size_t ad_len, size_t *len)
{
    size_t n = TDSX_SEAL_HEADER_LEN;
    for (size_t i = 0; i < k; i++)
        n += 4 + recs[i].n + ABYTES;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_keygen(key);
    memcpy(p, "TDSXSEAL", 8);
    p[8] = 1;
    assert_int_equal(crypto_box_seal(p + 9, key, sizeof key, pk_r), 0);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_push(&st, p + 89, key), 0);
    size_t off = TDSX_SEAL_HEADER_LEN;
    for (size_t i = 0; i < k; i++) {
        size_t l = recs[i].n + ABYTES;
        p[off] = (uint8_t)(l >> 24);
        p[off + 1] = (uint8_t)(l >> 16);
        p[off + 2] = (uint8_t)(l >> 8);
        p[off + 3] = (uint8_t)l;
        assert_int_equal(crypto_secretstream_xchacha20poly1305_push(
                             &st, p + off + 4, NULL, recs[i].m, recs[i].n, ad, ad_len, recs[i].tag),
                         0);
        off += 4 + l;
    }
    *len = n;
    return p;
}

/* Forges with the documented associated data and opens the result. */
static int forged_status(const forged_t *recs, size_t k)
{
    uint8_t ad[57];
    size_t len;
    doc_ad(ad, tid, pk_r);
    uint8_t *ct = forge(recs, k, ad, sizeof ad, &len);
    int rc = open_status(ct, len);
    free(ct);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * What works
 * ---------------------------------------------------------------------------------------- */
static void round_trip_at_every_chunk_boundary_in_any_slicing(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, C - 1, C, C + 1, 2 * C, 3u * 1024 * 1024 + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *pt = random_bytes(n);
        uint8_t want[32], sealed_hash[32], opened_hash[32];
        crypto_hash_sha256(want, pt, n);
        for (int sliced = 0; sliced <= 1; sliced++) {
            size_t ct_len;
            uint8_t *ct = seal_with(pk_r, tid, pt, n, sliced, &ct_len, sealed_hash);
            assert_memory_equal(sealed_hash, want, 32);
            uint64_t expect_len, back;
            assert_int_equal(tdsx_seal_ciphertext_len(n, &expect_len), 0);
            assert_int_equal(ct_len, expect_len);
            assert_int_equal(tdsx_seal_plaintext_len(ct_len, &back), 0);
            assert_int_equal(back, n);
            /* Whole, in random slices, and byte by byte for the small ones. */
            size_t ways[] = {0, SIZE_MAX, 1};
            for (size_t w = 0; w < (n <= C + 1 ? 3u : 2u); w++) {
                tdsx_buf_t out;
                tdsx_buf_init(&out, BIG_CAP);
                uint64_t got_len = 0;
                assert_int_equal(
                    open_with(sk_r, tid, ct, ct_len, ways[w], &out, &got_len, opened_hash), 0);
                assert_int_equal(out.len, n);
                if (n)
                    assert_memory_equal(out.p, pt, n);
                assert_int_equal(got_len, n);
                assert_memory_equal(opened_hash, want, 32);
                tdsx_buf_free(&out);
            }
            tdsx_free(ct);
        }
        free(pt);
    }
}

/* The format of crypto.h, read with libsodium alone: key unwrapped with crypto_box_seal_open,
 * every record pulled with the documented associated data, full chunks then one short one,
 * then a FINAL trailer with the length and SHA-256. */
static void stream_follows_the_documented_format(void **state)
{
    (void)state;
    size_t n = 2 * C + 777, ct_len;
    uint8_t *pt = random_bytes(n);
    uint8_t *ct = seal(pt, n, &ct_len);
    assert_memory_equal(ct, "TDSXSEAL\x01", 9);

    uint8_t key[32], ad[57];
    assert_int_equal(crypto_box_seal_open(key, ct + 9, 80, pk_r, sk_r), 0);
    crypto_secretstream_xchacha20poly1305_state st;
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&st, ct + 89, key), 0);
    doc_ad(ad, tid, pk_r);

    records_t r;
    split_records(ct, ct_len, &r);
    assert_int_equal(r.count, 4);
    uint8_t *m = malloc(C);
    assert_non_null(m);
    const size_t want_len[4] = {C, C, 777, 40};
    const unsigned char want_tag[4] = {TAG_MESSAGE, TAG_MESSAGE, TAG_MESSAGE, TAG_FINAL};
    for (size_t i = 0; i < r.count; i++) {
        unsigned long long mlen;
        unsigned char tag;
        assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(
                             &st, m, &mlen, &tag, ct + r.off[i] + 4, r.len[i] - 4, ad, sizeof ad),
                         0);
        assert_int_equal(mlen, want_len[i]);
        assert_int_equal(tag, want_tag[i]);
        if (i < 3)
            assert_memory_equal(m, pt + i * C, mlen);
    }
    uint8_t trailer[40];
    trailer_of(trailer, n, pt, n);
    assert_memory_equal(m, trailer, 40);
    free(m);
    free(pt);
    tdsx_free(ct);
}

static void ciphertext_length_is_known_in_advance_and_invertible(void **state)
{
    (void)state;
    uint64_t len, back;
    assert_int_equal(tdsx_seal_ciphertext_len(0, &len), 0);
    assert_int_equal(len, TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN);
    assert_int_equal(tdsx_seal_ciphertext_len(1, &len), 0);
    assert_int_equal(len, TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN + 1 +
                              TDSX_SEAL_RECORD_OVERHEAD);
    /* 1 GiB: 16384 full records. */
    assert_int_equal(tdsx_seal_ciphertext_len(1ull << 30, &len), 0);
    assert_int_equal(len, (1ull << 30) + 16384ull * TDSX_SEAL_RECORD_OVERHEAD +
                              TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN);
    /* Every length near the chunk boundaries maps back, and no two plaintexts share one. */
    for (uint64_t n = 0; n < 3 * C + 50; n += (n % C < 40 || n % C > C - 40) ? 1 : 997) {
        assert_int_equal(tdsx_seal_ciphertext_len(n, &len), 0);
        assert_int_equal(tdsx_seal_plaintext_len(len, &back), 0);
        assert_int_equal(back, n);
        uint64_t next;
        assert_int_equal(tdsx_seal_ciphertext_len(n + 1, &next), 0);
        assert_true(next > len);
    }
    /* The update bound covers a full chunk already waiting in the sealer. */
    assert_int_equal(tdsx_seal_update_bound(0), 0);
    assert_int_equal(tdsx_seal_update_bound(1), TDSX_SEAL_RECORD_MAX);
    assert_int_equal(tdsx_seal_update_bound(C + 1), 2 * TDSX_SEAL_RECORD_MAX);
    assert_int_equal(tdsx_seal_update_bound(SIZE_MAX), SIZE_MAX);
}

static void impossible_lengths_are_refused(void **state)
{
    (void)state;
    uint64_t out = 7;
    assert_int_equal(tdsx_seal_ciphertext_len(UINT64_MAX, &out), TDSX_E_TOOBIG);
    assert_int_equal(tdsx_seal_ciphertext_len(UINT64_MAX - 100, &out), TDSX_E_TOOBIG);
    assert_int_equal(out, 7);
    assert_int_equal(tdsx_seal_ciphertext_len(1, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_seal_plaintext_len(1, NULL), TDSX_E_INVAL);
    /* Shorter than an empty stream; a last record with no room for a byte of plaintext. */
    const uint64_t fixed = TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN;
    const uint64_t bad[] = {0, fixed - 1, fixed + 1, fixed + TDSX_SEAL_RECORD_OVERHEAD,
                            fixed + TDSX_SEAL_RECORD_MAX + TDSX_SEAL_RECORD_OVERHEAD};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tdsx_seal_plaintext_len(bad[i], &out), TDSX_E_SEAL);
    assert_int_equal(out, 7);
}

static void each_stream_has_its_own_key(void **state)
{
    (void)state;
    uint8_t pt[100];
    memset(pt, 'x', sizeof pt);
    size_t la, lb;
    uint8_t *a = seal(pt, sizeof pt, &la);
    uint8_t *b = seal(pt, sizeof pt, &lb);
    assert_int_equal(la, lb);
    /* Wrapped key, stream header and every record differ; both open. */
    assert_memory_not_equal(a + 9, b + 9, 80);
    assert_memory_not_equal(a + 89, b + 89, 24);
    assert_memory_not_equal(a + TDSX_SEAL_HEADER_LEN + 4, b + TDSX_SEAL_HEADER_LEN + 4, 100);
    assert_int_equal(open_status(a, la), 0);
    assert_int_equal(open_status(b, lb), 0);
    tdsx_free(a);
    tdsx_free(b);
}

/* The enc keys the CA issues (certs/) are crypto_box keys as they are. */
static void keys_issued_by_the_ca_seal_and_open(void **state)
{
    (void)state;
    char *dir = tdsx_test_mkdtemp();
    char *ca_dir = tdsx_test_path(dir, "ca");
    char *node = tdsx_test_path(dir, "node");
    char *relay = tdsx_test_path(dir, "relay");
    tdsx_ca_init_opts_t io = {.name = "Seal Test Root"};
    assert_int_equal(tdsx_ca_init(ca_dir, &io), 0);
    tdsx_ca_t *ca = NULL;
    assert_int_equal(tdsx_ca_open(ca_dir, &ca), 0);
    tdsx_issue_opts_t o = {.uscc = "91350100M000100Y43",
                           .org = "省级能力中心",
                           .node = "centre",
                           .role = TDSX_ROLE_CENTRE};
    assert_int_equal(tdsx_ca_issue(ca, &o, node), 0);
    o.node = "brain";
    o.role = TDSX_ROLE_BRAIN;
    assert_int_equal(tdsx_ca_issue(ca, &o, relay), 0);
    tdsx_ca_free(ca);

    uint8_t pub[32], sec[32], derived[32], relay_sec[32];
    char *p = tdsx_test_path(node, TDSX_CRED_ENC_PUB);
    assert_int_equal(tdsx_key_load_x25519_pub(p, pub), 0);
    free(p);
    p = tdsx_test_path(node, TDSX_CRED_ENC_KEY);
    assert_int_equal(tdsx_key_load_x25519(p, sec), 0);
    free(p);
    p = tdsx_test_path(relay, TDSX_CRED_ENC_KEY);
    assert_int_equal(tdsx_key_load_x25519(p, relay_sec), 0);
    free(p);
    /* OpenSSL's raw X25519 secret is the scalar libsodium uses for crypto_box. */
    assert_int_equal(crypto_scalarmult_base(derived, sec), 0);
    assert_memory_equal(derived, pub, 32);

    size_t n = C + 5, ct_len;
    uint8_t *pt = random_bytes(n);
    uint8_t hash[32];
    uint8_t *ct = seal_with(pub, tid, pt, n, 1, &ct_len, hash);
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    assert_int_equal(open_with(sec, tid, ct, ct_len, SIZE_MAX, &out, NULL, NULL), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.p, pt, n);
    /* The relaying brain forwards what it cannot open. */
    assert_int_equal(open_with(relay_sec, tid, ct, ct_len, 0, NULL, NULL, NULL),
                     TDSX_E_SEAL_RECIPIENT);
    tdsx_buf_free(&out);
    sodium_memzero(sec, sizeof sec);
    sodium_memzero(relay_sec, sizeof relay_sec);
    tdsx_free(ct);
    free(pt);
    free(ca_dir);
    free(node);
    free(relay);
    tdsx_test_rmdir(dir);
}

/* A sealer whose output buffer is full loses nothing: retried with room, the stream opens. */
static void sealer_retries_after_a_full_buffer(void **state)
{
    (void)state;
    size_t n = 2 * C + 10;
    uint8_t *pt = random_bytes(n);
    tdsx_buf_t small, all;
    tdsx_buf_init(&small, 10);
    tdsx_buf_init(&all, BIG_CAP);
    tdsx_sealer_t *s = NULL;
    assert_int_equal(tdsx_sealer_new(pk_r, tid, &small, &s), TDSX_E_TOOBIG);
    assert_null(s);
    assert_int_equal(small.len, 0);
    assert_int_equal(tdsx_sealer_new(pk_r, tid, &all, &s), 0);
    tdsx_buf_free(&small);
    tdsx_buf_init(&small, C);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(pt, n), &small), TDSX_E_TOOBIG);
    assert_int_equal(small.len, 0);
    assert_int_equal(tdsx_sealer_plaintext_len(s), 0);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(pt, n), &all), 0);
    tdsx_buf_free(&small);
    tdsx_buf_init(&small, TDSX_SEAL_FINAL_RECORD_LEN);
    assert_int_equal(tdsx_sealer_final(s, &small, NULL), TDSX_E_TOOBIG);
    assert_int_equal(small.len, 0);
    assert_int_equal(tdsx_sealer_final(s, &all, NULL), 0);
    tdsx_sealer_free(s);
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    assert_int_equal(open_with(sk_r, tid, all.p, all.len, SIZE_MAX, &out, NULL, NULL), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.p, pt, n);
    tdsx_buf_free(&out);
    tdsx_buf_free(&small);
    tdsx_buf_free(&all);
    free(pt);
}

/* Opening several MiB in small slices holds at most one record inside the opener. */
static size_t live_bytes, peak_bytes;
static void *count_malloc(size_t n, void *ctx)
{
    (void)ctx;
    size_t *p = malloc(sizeof(max_align_t) + n);
    if (!p)
        return NULL;
    *p = n;
    live_bytes += n;
    if (live_bytes > peak_bytes)
        peak_bytes = live_bytes;
    return (char *)p + sizeof(max_align_t);
}
static void count_free(void *q, void *ctx)
{
    (void)ctx;
    if (!q)
        return;
    size_t *p = (size_t *)(void *)((char *)q - sizeof(max_align_t));
    live_bytes -= *p;
    free(p);
}
static void *count_realloc(void *q, size_t n, void *ctx)
{
    void *r = count_malloc(n, ctx);
    if (r && q) {
        size_t old = *(size_t *)(void *)((char *)q - sizeof(max_align_t));
        memcpy(r, q, old < n ? old : n);
        count_free(q, ctx);
    }
    return r;
}

static void opener_memory_is_bounded_by_one_record(void **state)
{
    (void)state;
    size_t n = 4u * 1024 * 1024 + 3, ct_len;
    uint8_t *pt = random_bytes(n);
    uint8_t *ct = seal(pt, n, &ct_len);
    uint8_t want[32], got[32];
    crypto_hash_sha256(want, pt, n);

    tdsx_allocator_t a = {count_malloc, count_realloc, count_free, NULL};
    tdsx_allocator_set(&a);
    live_bytes = peak_bytes = 0;
    tdsx_opener_t *o = NULL;
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    const size_t slice = 16 * 1024;
    tdsx_buf_t out;
    tdsx_buf_init(&out, slice + TDSX_SEAL_RECORD_MAX);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    for (size_t off = 0; off < ct_len; off += slice) {
        size_t k = ct_len - off < slice ? ct_len - off : slice;
        assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct + off, k), &out), 0);
        crypto_hash_sha256_update(&h, out.p, out.len);
        tdsx_buf_reset(&out);
    }
    crypto_hash_sha256_final(&h, got);
    assert_int_equal(tdsx_opener_final(o, NULL, NULL), 0);
    assert_memory_equal(got, want, 32);
    /* The opener's record buffer, its object, and the caller's output buffer. */
    assert_true(peak_bytes <= 2 * TDSX_SEAL_RECORD_MAX + slice + 4096);
    tdsx_buf_free(&out);
    tdsx_opener_free(o);
    tdsx_allocator_set(NULL);
    assert_int_equal(live_bytes, 0);
    tdsx_free(ct);
    free(pt);
}

/* ------------------------------------------------------------------------------------------
 * What fails
 * ---------------------------------------------------------------------------------------- */
static void another_recipient_cannot_open(void **state)
{
    (void)state;
    uint8_t pt[1000];
    randombytes_buf(pt, sizeof pt);
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    assert_int_equal(open_with(sk_o, tid, ct, len, SIZE_MAX, &out, NULL, NULL),
                     TDSX_E_SEAL_RECIPIENT);
    assert_int_equal(out.len, 0);
    /* Fed up to the header only, the refusal comes as soon as the header is complete. */
    tdsx_opener_t *o = NULL;
    assert_int_equal(tdsx_opener_new(sk_o, tid, &o), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct, TDSX_SEAL_HEADER_LEN - 1), &out), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct + TDSX_SEAL_HEADER_LEN - 1, 1), &out),
                     TDSX_E_SEAL_RECIPIENT);
    tdsx_opener_free(o);
    tdsx_buf_free(&out);
    tdsx_free(ct);
}

/* A sender who took the wrong registry entry sealed to another node: the intended recipient
 * cannot open it, only the holder of that other key can. */
static void stream_opens_only_for_the_key_it_was_sealed_to(void **state)
{
    (void)state;
    uint8_t pt[10] = "0123456789";
    size_t len;
    uint8_t h[32];
    uint8_t *ct = seal_with(pk_o, tid, pt, sizeof pt, 0, &len, h);
    assert_int_equal(open_status(ct, len), TDSX_E_SEAL_RECIPIENT);
    assert_int_equal(open_with(sk_o, tid, ct, len, 0, NULL, NULL, NULL), 0);
    tdsx_free(ct);
}

static void another_transfer_cannot_replay_the_stream(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 5, C + 3};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *pt = random_bytes(sizes[i]);
        size_t len;
        uint8_t *ct = seal(pt, sizes[i], &len);
        tdsx_buf_t out;
        tdsx_buf_init(&out, BIG_CAP);
        assert_int_equal(open_with(sk_r, tid_other, ct, len, SIZE_MAX, &out, NULL, NULL),
                         TDSX_E_SEAL);
        /* Not one byte of plaintext is handed out: the first record already fails. */
        assert_int_equal(out.len, 0);
        tdsx_buf_free(&out);
        tdsx_free(ct);
        free(pt);
    }
}

static int expected_flip_status(size_t pos, const records_t *r, int *alt)
{
    *alt = 0;
    if (pos < 8)
        return TDSX_E_SEAL; /* magic */
    if (pos == 8)
        return TDSX_E_UNSUPPORTED; /* version */
    if (pos < 89)
        return TDSX_E_SEAL_RECIPIENT; /* wrapped key */
    if (pos < TDSX_SEAL_HEADER_LEN)
        return TDSX_E_SEAL; /* secretstream header: the first record fails */
    for (size_t i = 0; i < r->count; i++) {
        if (pos >= r->off[i] && pos < r->off[i] + 4) {
            /* A longer length may leave the opener waiting for bytes that never come. */
            *alt = TDSX_E_SEAL_TRUNCATED;
            return TDSX_E_SEAL;
        }
    }
    return TDSX_E_SEAL;
}

static void every_flipped_byte_is_refused(void **state)
{
    (void)state;
    uint8_t pt[300];
    randombytes_buf(pt, sizeof pt);
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    records_t r;
    split_records(ct, len, &r);
    assert_int_equal(r.count, 2);
    const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            ct[pos] ^= masks[m];
            int alt, want = expected_flip_status(pos, &r, &alt);
            int rc = open_status(ct, len);
            if (rc != want && (alt == 0 || rc != alt))
                fail_msg("byte %zu ^ 0x%02x: %s, expected %s", pos, masks[m], tdsx_err_name(rc),
                         tdsx_err_name(want));
            ct[pos] ^= masks[m];
        }
    }
    assert_int_equal(open_status(ct, len), 0);
    tdsx_free(ct);
}

/* A stream of several full records: flips in the tag byte, the body, the MAC and the prefix of
 * each record, and a spread of other places. */
static void flips_in_a_long_stream_are_refused(void **state)
{
    (void)state;
    size_t n = 3 * C + 5, len;
    uint8_t *pt = random_bytes(n);
    uint8_t *ct = seal(pt, n, &len);
    records_t r;
    split_records(ct, len, &r);
    assert_int_equal(r.count, 5);
    size_t pos[64], k = 0;
    for (size_t i = 0; i < r.count; i++) {
        pos[k++] = r.off[i] + 3;             /* prefix, low byte */
        pos[k++] = r.off[i] + 4;             /* encrypted tag */
        pos[k++] = r.off[i] + 5;             /* first byte of the body */
        pos[k++] = r.off[i] + r.len[i] / 2;  /* middle */
        pos[k++] = r.off[i] + r.len[i] - 17; /* last byte of the body */
        pos[k++] = r.off[i] + r.len[i] - 1;  /* last byte of the MAC */
    }
    for (size_t i = 0; i < 20; i++)
        pos[k++] = TDSX_SEAL_HEADER_LEN + (size_t)(next_u64() % (len - TDSX_SEAL_HEADER_LEN));
    for (size_t i = 0; i < k; i++) {
        ct[pos[i]] ^= 0x20;
        int rc = open_with(sk_r, tid, ct, len, SIZE_MAX, NULL, NULL, NULL);
        if (rc != TDSX_E_SEAL)
            fail_msg("byte %zu: %s", pos[i], tdsx_err_name(rc));
        ct[pos[i]] ^= 0x20;
    }
    assert_int_equal(open_status(ct, len), 0);
    free(pt);
    tdsx_free(ct);
}

static void truncation_anywhere_is_reported_at_final(void **state)
{
    (void)state;
    /* A small stream cut at every length. */
    uint8_t pt[200];
    randombytes_buf(pt, sizeof pt);
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = open_with(sk_r, tid, ct, cut, SIZE_MAX, NULL, NULL, NULL);
        if (rc != TDSX_E_SEAL_TRUNCATED)
            fail_msg("cut at %zu: %s", cut, tdsx_err_name(rc));
    }
    tdsx_free(ct);

    /* A long one cut at every record boundary, inside each prefix and inside each record. */
    size_t n = 3 * C + 5;
    uint8_t *big = random_bytes(n);
    ct = seal(big, n, &len);
    records_t r;
    split_records(ct, len, &r);
    for (size_t i = 0; i < r.count; i++) {
        const size_t cuts[] = {r.off[i], r.off[i] + 2, r.off[i] + 4, r.off[i] + r.len[i] / 2,
                               r.off[i] + r.len[i] - 1};
        for (size_t j = 0; j < 5; j++) {
            tdsx_buf_t out;
            tdsx_buf_init(&out, BIG_CAP);
            int rc = open_with(sk_r, tid, ct, cuts[j], SIZE_MAX, &out, NULL, NULL);
            if (rc != TDSX_E_SEAL_TRUNCATED)
                fail_msg("cut at %zu: %s", cuts[j], tdsx_err_name(rc));
            /* What came out before the cut is the plaintext's prefix, and only whole records. */
            assert_int_equal(out.len, i < 4 ? i * C : n);
            assert_memory_equal(out.p, big, out.len);
            tdsx_buf_free(&out);
        }
    }
    free(big);
    tdsx_free(ct);
}

static void dropped_duplicated_or_reordered_records_are_refused(void **state)
{
    (void)state;
    size_t n = 3 * C + 5, len;
    uint8_t *pt = random_bytes(n);
    uint8_t *ct = seal(pt, n, &len);
    records_t r;
    split_records(ct, len, &r);
    assert_int_equal(r.count, 5); /* three full, one short, FINAL */
    size_t order[8], k, blen;
    uint8_t *b;

    for (size_t drop = 0; drop < r.count; drop++) {
        k = 0;
        for (size_t i = 0; i < r.count; i++)
            if (i != drop)
                order[k++] = i;
        b = rebuild(ct, &r, order, k, &blen);
        /* Without FINAL the stream is merely cut short. */
        assert_int_equal(open_status(b, blen),
                         drop == r.count - 1 ? TDSX_E_SEAL_TRUNCATED : TDSX_E_SEAL);
        free(b);
    }
    for (size_t dup = 0; dup < r.count; dup++) {
        k = 0;
        for (size_t i = 0; i < r.count; i++) {
            order[k++] = i;
            if (i == dup)
                order[k++] = i;
        }
        b = rebuild(ct, &r, order, k, &blen);
        assert_int_equal(open_status(b, blen), TDSX_E_SEAL);
        free(b);
    }
    for (size_t sw = 0; sw + 1 < r.count; sw++) {
        for (size_t i = 0; i < r.count; i++)
            order[i] = i;
        order[sw] = sw + 1;
        order[sw + 1] = sw;
        b = rebuild(ct, &r, order, r.count, &blen);
        assert_int_equal(open_status(b, blen), TDSX_E_SEAL);
        free(b);
    }
    /* The records in the right order still open (the rebuild itself is sound). */
    for (size_t i = 0; i < r.count; i++)
        order[i] = i;
    b = rebuild(ct, &r, order, r.count, &blen);
    assert_int_equal(open_status(b, blen), 0);
    free(b);
    free(pt);
    tdsx_free(ct);
}

static void bytes_after_final_are_refused(void **state)
{
    (void)state;
    uint8_t pt[64];
    randombytes_buf(pt, sizeof pt);
    size_t len, len2;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    uint8_t *second = seal(pt, sizeof pt, &len2);
    uint8_t *ext = malloc(len + len2);
    assert_non_null(ext);
    memcpy(ext, ct, len);
    memcpy(ext + len, second, len2);
    /* One byte more, the FINAL record again, a whole second stream. */
    assert_int_equal(open_status(ext, len + 1), TDSX_E_SEAL);
    memcpy(ext + len, ct + len - TDSX_SEAL_FINAL_RECORD_LEN, TDSX_SEAL_FINAL_RECORD_LEN);
    assert_int_equal(open_status(ext, len + TDSX_SEAL_FINAL_RECORD_LEN), TDSX_E_SEAL);
    memcpy(ext + len, second, len2);
    assert_int_equal(open_with(sk_r, tid, ext, len + len2, SIZE_MAX, NULL, NULL, NULL),
                     TDSX_E_SEAL);
    /* Extra bytes in a later feed, after the opener already reached FINAL. */
    tdsx_opener_t *o = NULL;
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct, len), &out), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(NULL, 0), &out), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes("\0", 1), &out), TDSX_E_SEAL);
    assert_int_equal(tdsx_opener_final(o, NULL, NULL), TDSX_E_SEAL);
    tdsx_opener_free(o);
    tdsx_buf_free(&out);
    free(ext);
    tdsx_free(second);
    tdsx_free(ct);
}

/* Records of one stream behind the header of another (same recipient, same transfer, same
 * plaintext) do not open: the header's key and nonce bind the records. */
static void spliced_streams_are_refused(void **state)
{
    (void)state;
    size_t n = C + 10, la, lb;
    uint8_t *pt = random_bytes(n);
    uint8_t *a = seal(pt, n, &la);
    uint8_t *b = seal(pt, n, &lb);
    assert_int_equal(la, lb);
    memcpy(b, a, TDSX_SEAL_HEADER_LEN); /* header of a, records of b */
    assert_int_equal(open_status(b, lb), TDSX_E_SEAL);
    memcpy(b, a, 89); /* key of a, secretstream header of b */
    uint8_t *c = seal(pt, n, &lb);
    memcpy(c + 89, b + 89, 24);
    assert_int_equal(open_status(c, lb), TDSX_E_SEAL);
    /* The last records of another stream after the first record of this one. */
    records_t ra, rb;
    split_records(a, la, &ra);
    uint8_t *d = seal(pt, n, &lb);
    split_records(d, lb, &rb);
    memcpy(a + ra.off[1], d + rb.off[1], la - ra.off[1]);
    assert_int_equal(open_status(a, la), TDSX_E_SEAL);
    free(pt);
    tdsx_free(a);
    tdsx_free(b);
    tdsx_free(c);
    tdsx_free(d);
}

static void record_lengths_outside_the_cap_are_refused_before_buffering(void **state)
{
    (void)state;
    uint8_t pt[10] = {0};
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    const uint32_t bad[] = {0, 1, ABYTES, C + ABYTES + 1, 0x7fffffffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t s[TDSX_SEAL_HEADER_LEN + 4];
        memcpy(s, ct, TDSX_SEAL_HEADER_LEN);
        s[TDSX_SEAL_HEADER_LEN] = (uint8_t)(bad[i] >> 24);
        s[TDSX_SEAL_HEADER_LEN + 1] = (uint8_t)(bad[i] >> 16);
        s[TDSX_SEAL_HEADER_LEN + 2] = (uint8_t)(bad[i] >> 8);
        s[TDSX_SEAL_HEADER_LEN + 3] = (uint8_t)bad[i];
        /* Refused on the prefix alone, whole or split inside the prefix. */
        assert_int_equal(open_status(s, sizeof s), TDSX_E_SEAL);
        assert_int_equal(open_with(sk_r, tid, s, sizeof s, 1, NULL, NULL, NULL), TDSX_E_SEAL);
    }
    tdsx_free(ct);
}

static void bad_magic_and_versions_are_refused(void **state)
{
    (void)state;
    size_t len;
    uint8_t *ct = seal((const uint8_t *)"x", 1, &len);
    ct[8] = 2;
    assert_int_equal(open_status(ct, len), TDSX_E_UNSUPPORTED);
    ct[8] = 0;
    assert_int_equal(open_status(ct, len), TDSX_E_UNSUPPORTED);
    ct[8] = 1;
    memcpy(ct, "tdsxseal", 8);
    assert_int_equal(open_status(ct, len), TDSX_E_SEAL);
    /* Something that is not a sealed stream at all. */
    uint8_t junk[500];
    memset(junk, 'A', sizeof junk);
    assert_int_equal(open_status(junk, sizeof junk), TDSX_E_SEAL);
    tdsx_free(ct);
}

/* A correct forgery opens (the forge follows the documented format), and every departure from
 * the format a dishonest sender could make is refused. */
static void dishonest_sender_streams_are_refused(void **state)
{
    (void)state;
    uint8_t pt[C + 10];
    randombytes_buf(pt, sizeof pt);
    uint8_t good[40], bad_len[40], bad_hash[40], tr[41];
    trailer_of(good, sizeof pt, pt, sizeof pt);
    trailer_of(bad_len, sizeof pt - 1, pt, sizeof pt);
    memcpy(bad_hash, good, 40);
    bad_hash[39] ^= 1;
    memcpy(tr, good, 40);
    tr[40] = 0;
    const uint8_t *full = pt, *rest = pt + C;

    forged_t ok[] = {{TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}, {TAG_FINAL, good, 40}};
    assert_int_equal(forged_status(ok, 3), 0);

    forged_t lie_len[] = {
        {TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}, {TAG_FINAL, bad_len, 40}};
    assert_int_equal(forged_status(lie_len, 3), TDSX_E_SEAL);
    forged_t lie_hash[] = {
        {TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}, {TAG_FINAL, bad_hash, 40}};
    assert_int_equal(forged_status(lie_hash, 3), TDSX_E_SEAL);
    forged_t short_final[] = {
        {TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}, {TAG_FINAL, good, 39}};
    assert_int_equal(forged_status(short_final, 3), TDSX_E_SEAL);
    forged_t long_final[] = {{TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}, {TAG_FINAL, tr, 41}};
    assert_int_equal(forged_status(long_final, 3), TDSX_E_SEAL);
    /* A FINAL carrying payload too. */
    forged_t fat_final[] = {{TAG_MESSAGE, full, C}, {TAG_FINAL, rest, 10}};
    assert_int_equal(forged_status(fat_final, 2), TDSX_E_SEAL);
    /* Tags the format does not use, on a record the trailer does not count (so only the tag
     * itself can be the reason for the refusal). */
    uint8_t first_chunk[40];
    trailer_of(first_chunk, C, pt, C);
    const unsigned char other_tags[] = {crypto_secretstream_xchacha20poly1305_TAG_PUSH,
                                        crypto_secretstream_xchacha20poly1305_TAG_REKEY, 0x10};
    for (size_t i = 0; i < sizeof other_tags; i++) {
        forged_t odd[] = {
            {TAG_MESSAGE, full, C}, {other_tags[i], rest, 10}, {TAG_FINAL, first_chunk, 40}};
        assert_int_equal(forged_status(odd, 3), TDSX_E_SEAL);
    }
    forged_t plain[] = {{TAG_MESSAGE, full, C}, {TAG_FINAL, first_chunk, 40}};
    assert_int_equal(forged_status(plain, 2), 0);
    /* Chunking other than the canonical one: a short record that is not the last one, an empty
     * record, a split that keeps the bytes but not the layout. */
    uint8_t t2[40];
    forged_t short_first[] = {
        {TAG_MESSAGE, pt, 10}, {TAG_MESSAGE, pt + 10, C}, {TAG_FINAL, good, 40}};
    assert_int_equal(forged_status(short_first, 3), TDSX_E_SEAL);
    trailer_of(t2, 0, pt, 0);
    forged_t empty_rec[] = {{TAG_MESSAGE, pt, 0}, {TAG_FINAL, t2, 40}};
    assert_int_equal(forged_status(empty_rec, 2), TDSX_E_SEAL);
    /* Data, but never a FINAL record. */
    forged_t no_final[] = {{TAG_MESSAGE, full, C}, {TAG_MESSAGE, rest, 10}};
    assert_int_equal(forged_status(no_final, 2), TDSX_E_SEAL_TRUNCATED);
    /* Right records under associated data without the recipient key, or of another transfer. */
    uint8_t ad[57];
    size_t len;
    doc_ad(ad, tid, pk_r);
    uint8_t *ct = forge(ok, 3, ad, 25, &len);
    assert_int_equal(open_status(ct, len), TDSX_E_SEAL);
    free(ct);
    ct = forge(ok, 3, NULL, 0, &len);
    assert_int_equal(open_status(ct, len), TDSX_E_SEAL);
    free(ct);
    doc_ad(ad, tid_other, pk_r);
    ct = forge(ok, 3, ad, sizeof ad, &len);
    assert_int_equal(open_status(ct, len), TDSX_E_SEAL);
    free(ct);
}

static void opener_errors_are_sticky(void **state)
{
    (void)state;
    uint8_t pt[100];
    randombytes_buf(pt, sizeof pt);
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    tdsx_opener_t *o = NULL;
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    ct[TDSX_SEAL_HEADER_LEN + 10] ^= 1;
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct, len), &out), TDSX_E_SEAL);
    ct[TDSX_SEAL_HEADER_LEN + 10] ^= 1;
    /* The intact stream, fed again, does not bring the failed opener back. */
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct, len), &out), TDSX_E_SEAL);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(NULL, 0), &out), TDSX_E_SEAL);
    assert_int_equal(tdsx_opener_final(o, NULL, NULL), TDSX_E_SEAL);
    assert_int_equal(out.len, 0);
    tdsx_opener_free(o);
    tdsx_buf_free(&out);
    tdsx_free(ct);
}

static void opener_output_cap_is_honoured(void **state)
{
    (void)state;
    size_t n = C + 1, len;
    uint8_t *pt = random_bytes(n);
    uint8_t *ct = seal(pt, n, &len);
    tdsx_opener_t *o = NULL;
    tdsx_buf_t out;
    tdsx_buf_init(&out, C - 1);
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(ct, len), &out), TDSX_E_TOOBIG);
    assert_int_equal(out.len, 0);
    assert_int_equal(tdsx_opener_final(o, NULL, NULL), TDSX_E_TOOBIG);
    tdsx_opener_free(o);
    tdsx_buf_free(&out);
    /* An empty stream needs no room at all for its FINAL record. */
    uint8_t *empty = seal(NULL, 0, &len);
    tdsx_buf_init(&out, 0);
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(empty, len), &out), 0);
    assert_int_equal(tdsx_opener_final(o, NULL, NULL), 0);
    tdsx_opener_free(o);
    tdsx_buf_free(&out);
    tdsx_free(empty);
    tdsx_free(ct);
    free(pt);
}

static void sealer_misuse_is_refused(void **state)
{
    (void)state;
    tdsx_buf_t out;
    tdsx_buf_init(&out, BIG_CAP);
    tdsx_sealer_t *s = (tdsx_sealer_t *)&out;
    assert_int_equal(tdsx_sealer_new(NULL, tid, &out, &s), TDSX_E_INVAL);
    assert_null(s);
    assert_int_equal(tdsx_sealer_new(pk_r, NULL, &out, &s), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_new(pk_r, tid, NULL, &s), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_new(pk_r, tid, &out, NULL), TDSX_E_INVAL);
    /* Low-order points: crypto_box refuses them, nothing is written. */
    uint8_t zero[32] = {0}, one[32] = {1};
    assert_int_equal(tdsx_sealer_new(zero, tid, &out, &s), TDSX_E_KEY);
    assert_int_equal(tdsx_sealer_new(one, tid, &out, &s), TDSX_E_KEY);
    assert_null(s);
    assert_int_equal(out.len, 0);

    assert_int_equal(tdsx_sealer_new(pk_r, tid, &out, &s), 0);
    assert_int_equal(tdsx_sealer_update(NULL, tdsx_bytes("a", 1), &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(NULL, 1), &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes("a", 1), NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_final(s, NULL, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes("a", 1), &out), 0);
    assert_int_equal(tdsx_sealer_final(s, &out, NULL), 0);
    size_t len = out.len;
    assert_int_equal(tdsx_sealer_update(s, tdsx_bytes("b", 1), &out), TDSX_E_STATE);
    assert_int_equal(tdsx_sealer_final(s, &out, NULL), TDSX_E_STATE);
    assert_int_equal(out.len, len);
    /* The misuse did not damage the stream already made. */
    assert_int_equal(open_status(out.p, out.len), 0);
    tdsx_sealer_free(s);
    tdsx_sealer_free(NULL);
    tdsx_buf_free(&out);
}

static void opener_misuse_is_refused(void **state)
{
    (void)state;
    tdsx_opener_t *o = (tdsx_opener_t *)&o;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 16);
    assert_int_equal(tdsx_opener_new(NULL, tid, &o), TDSX_E_INVAL);
    assert_null(o);
    assert_int_equal(tdsx_opener_new(sk_r, NULL, &o), TDSX_E_INVAL);
    assert_int_equal(tdsx_opener_new(sk_r, tid, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_opener_new(sk_r, tid, &o), 0);
    assert_int_equal(tdsx_opener_feed(NULL, tdsx_bytes("a", 1), &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes(NULL, 1), &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_opener_feed(o, tdsx_bytes("a", 1), NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_opener_final(NULL, NULL, NULL), TDSX_E_INVAL);
    /* Nothing fed: that is a truncated stream, and it stays one. */
    uint64_t plen = 99;
    assert_int_equal(tdsx_opener_final(o, &plen, NULL), TDSX_E_SEAL_TRUNCATED);
    assert_int_equal(plen, 99);
    tdsx_opener_free(o);
    tdsx_opener_free(NULL);
    tdsx_buf_free(&out);
}

static void allocation_failures_are_reported(void **state)
{
    (void)state;
    uint8_t pt[C + 7];
    randombytes_buf(pt, sizeof pt);
    size_t len;
    uint8_t *ct = seal(pt, sizeof pt, &len);
    int sealed = 0, opened = 0;
    for (unsigned long k = 1; k < 50 && !(sealed && opened); k++) {
        tdsx_buf_t out, pout;
        tdsx_buf_init(&out, BIG_CAP);
        tdsx_buf_init(&pout, BIG_CAP);
        tdsx_sealer_t *s = NULL;
        tdsx_opener_t *o = NULL;
        tdsx_test_alloc_fail_after(k);
        int rc = tdsx_sealer_new(pk_r, tid, &out, &s);
        if (rc == 0)
            rc = tdsx_sealer_update(s, tdsx_bytes(pt, sizeof pt), &out);
        if (rc == 0)
            rc = tdsx_sealer_final(s, &out, NULL);
        if (rc == 0)
            sealed = 1;
        else
            assert_int_equal(rc, TDSX_E_NOMEM);
        int orc = tdsx_opener_new(sk_r, tid, &o);
        if (orc == 0)
            orc = tdsx_opener_feed(o, tdsx_bytes(ct, len), &pout);
        if (orc == 0)
            orc = tdsx_opener_final(o, NULL, NULL);
        if (orc == 0)
            opened = 1;
        else
            assert_int_equal(orc, TDSX_E_NOMEM);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            assert_int_equal(open_status(out.p, out.len), 0);
        } else if (s) {
            /* A failed allocation in update or final loses nothing: retry with memory. */
            if (tdsx_sealer_plaintext_len(s) == 0)
                assert_int_equal(tdsx_sealer_update(s, tdsx_bytes(pt, sizeof pt), &out), 0);
            assert_int_equal(tdsx_sealer_final(s, &out, NULL), 0);
            assert_int_equal(open_status(out.p, out.len), 0);
        } else {
            assert_int_equal(out.len, 0);
        }
        if (orc == 0)
            assert_int_equal(pout.len, sizeof pt);
        tdsx_sealer_free(s);
        tdsx_opener_free(o);
        tdsx_buf_free(&out);
        tdsx_buf_free(&pout);
    }
    assert_true(sealed && opened);
    tdsx_free(ct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_at_every_chunk_boundary_in_any_slicing),
        cmocka_unit_test(stream_follows_the_documented_format),
        cmocka_unit_test(ciphertext_length_is_known_in_advance_and_invertible),
        cmocka_unit_test(each_stream_has_its_own_key),
        cmocka_unit_test(keys_issued_by_the_ca_seal_and_open),
        cmocka_unit_test(sealer_retries_after_a_full_buffer),
        cmocka_unit_test(opener_memory_is_bounded_by_one_record),
        cmocka_unit_test(impossible_lengths_are_refused),
        cmocka_unit_test(another_recipient_cannot_open),
        cmocka_unit_test(stream_opens_only_for_the_key_it_was_sealed_to),
        cmocka_unit_test(another_transfer_cannot_replay_the_stream),
        cmocka_unit_test(every_flipped_byte_is_refused),
        cmocka_unit_test(flips_in_a_long_stream_are_refused),
        cmocka_unit_test(truncation_anywhere_is_reported_at_final),
        cmocka_unit_test(dropped_duplicated_or_reordered_records_are_refused),
        cmocka_unit_test(bytes_after_final_are_refused),
        cmocka_unit_test(spliced_streams_are_refused),
        cmocka_unit_test(record_lengths_outside_the_cap_are_refused_before_buffering),
        cmocka_unit_test(bad_magic_and_versions_are_refused),
        cmocka_unit_test(dishonest_sender_streams_are_refused),
        cmocka_unit_test(opener_errors_are_sticky),
        cmocka_unit_test(opener_output_cap_is_honoured),
        cmocka_unit_test(sealer_misuse_is_refused),
        cmocka_unit_test(opener_misuse_is_refused),
        cmocka_unit_test(allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
