/* seal.c — sealed payload streams for the final recipient (SPEC §9): a per-payload stream key
 * wrapped with crypto_box_seal, the payload in crypto_secretstream_xchacha20poly1305 records, a
 * FINAL record carrying the plaintext length and SHA-256. The format is documented in crypto.h. */
#include "internal.h"

#include <string.h>

#include <sodium.h>

#define MAGIC "TDSXSEAL"
#define MAGIC_LEN 8u
#define WRAPPED_LEN (crypto_secretstream_xchacha20poly1305_KEYBYTES + crypto_box_SEALBYTES)
#define AD_LEN (MAGIC_LEN + 1u + TDSX_SEAL_TRANSFER_ID_LEN + TDSX_X25519_KEY_LEN)
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL

/* The public sizes are plain numbers so crypto.h need not include sodium.h; keep them honest. */
_Static_assert(TDSX_X25519_KEY_LEN == crypto_box_PUBLICKEYBYTES, "X25519 public key size");
_Static_assert(TDSX_X25519_KEY_LEN == crypto_box_SECRETKEYBYTES, "X25519 secret key size");
_Static_assert(TDSX_SEAL_HEADER_LEN ==
                   MAGIC_LEN + 1u + WRAPPED_LEN + crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "header layout");
_Static_assert(TDSX_SEAL_RECORD_OVERHEAD == 4u + ABYTES, "record overhead");
_Static_assert(TDSX_SEAL_TRAILER_LEN == 8u + TDSX_HASH_LEN, "trailer layout");
_Static_assert(TDSX_SEAL_CHUNK >= TDSX_SEAL_TRAILER_LEN, "the record buffer also holds a header");
_Static_assert(TDSX_SEAL_RECORD_MAX >= TDSX_SEAL_HEADER_LEN, "the record buffer holds a header");

/* Everything secret of one stream, in one sodium_malloc region (guard pages, mlock, wiped by
 * sodium_free). The secretstream state changes with every record, so it stays read-write. */
struct secrets {
    crypto_secretstream_xchacha20poly1305_state st;
    uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    uint8_t sk[TDSX_X25519_KEY_LEN];
};

static int new_secrets(struct secrets **out)
{
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    *out = sodium_malloc(sizeof **out);
    if (!*out)
        return TDSX_E_NOMEM;
    sodium_memzero(*out, sizeof **out);
    return 0;
}

static void build_ad(uint8_t ad[AD_LEN], const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN],
                     const uint8_t pk[TDSX_X25519_KEY_LEN])
{
    memcpy(ad, MAGIC, MAGIC_LEN);
    ad[MAGIC_LEN] = TDSX_SEAL_VERSION;
    memcpy(ad + MAGIC_LEN + 1, transfer_id, TDSX_SEAL_TRANSFER_ID_LEN);
    memcpy(ad + MAGIC_LEN + 1 + TDSX_SEAL_TRANSFER_ID_LEN, pk, TDSX_X25519_KEY_LEN);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Bytes written straight into reserved room become part of the buffer; tdsx_buf_t keeps a NUL
 * after its contents. */
static void buf_commit(tdsx_buf_t *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

/* ------------------------------------------------------------------------------------------
 * Lengths
 * ---------------------------------------------------------------------------------------- */
int tdsx_seal_ciphertext_len(uint64_t plaintext_len, uint64_t *out)
{
    if (!out)
        return TDSX_E_INVAL;
    uint64_t records = plaintext_len / TDSX_SEAL_CHUNK + (plaintext_len % TDSX_SEAL_CHUNK != 0);
    uint64_t fixed = TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN;
    if (records > (UINT64_MAX - fixed) / TDSX_SEAL_RECORD_OVERHEAD)
        return TDSX_E_TOOBIG;
    uint64_t overhead = fixed + records * TDSX_SEAL_RECORD_OVERHEAD;
    if (plaintext_len > UINT64_MAX - overhead)
        return TDSX_E_TOOBIG;
    *out = plaintext_len + overhead;
    return 0;
}

int tdsx_seal_plaintext_len(uint64_t ciphertext_len, uint64_t *out)
{
    if (!out)
        return TDSX_E_INVAL;
    uint64_t fixed = TDSX_SEAL_HEADER_LEN + TDSX_SEAL_FINAL_RECORD_LEN;
    if (ciphertext_len < fixed)
        return TDSX_E_SEAL;
    uint64_t body = ciphertext_len - fixed;
    uint64_t full = body / TDSX_SEAL_RECORD_MAX;
    uint64_t rest = body % TDSX_SEAL_RECORD_MAX;
    /* A partial last record holds 1..CHUNK-1 bytes after its overhead. */
    if (rest != 0 && rest <= TDSX_SEAL_RECORD_OVERHEAD)
        return TDSX_E_SEAL;
    *out = full * TDSX_SEAL_CHUNK + (rest ? rest - TDSX_SEAL_RECORD_OVERHEAD : 0);
    return 0;
}

size_t tdsx_seal_update_bound(size_t n)
{
    size_t records = n / TDSX_SEAL_CHUNK + (n % TDSX_SEAL_CHUNK != 0);
    if (records > SIZE_MAX / TDSX_SEAL_RECORD_MAX)
        return SIZE_MAX;
    return records * TDSX_SEAL_RECORD_MAX;
}

/* ------------------------------------------------------------------------------------------
 * Sealer
 * ---------------------------------------------------------------------------------------- */
typedef enum { SEALER_OPEN, SEALER_DONE, SEALER_FAILED } sealer_state_t;

struct tdsx_sealer_s {
    struct secrets *sec;
    uint8_t ad[AD_LEN];
    uint8_t *chunk; /* TDSX_SEAL_CHUNK bytes of plaintext waiting for a full record */
    size_t have;
    uint64_t total;
    tdsx_sha256_t sha;
    sealer_state_t state;
    int err; /* the sticky error of SEALER_FAILED */
};

/* One record into room the caller reserved: prefix, then the secretstream message. */
static int push_record(tdsx_sealer_t *s, tdsx_buf_t *out, const uint8_t *m, size_t mlen,
                       unsigned char tag)
{
    uint8_t *p = out->p + out->len;
    put_be32(p, (uint32_t)(mlen + ABYTES));
    if (crypto_secretstream_xchacha20poly1305_push(&s->sec->st, p + 4, NULL, m, mlen, s->ad, AD_LEN,
                                                   tag) != 0)
        return TDSX_E_INTERNAL;
    buf_commit(out, 4 + mlen + ABYTES);
    return 0;
}

static int sealer_fail(tdsx_sealer_t *s, int rc)
{
    s->state = SEALER_FAILED;
    s->err = rc;
    return rc;
}

int tdsx_sealer_new(const uint8_t recipient_pk[TDSX_X25519_KEY_LEN],
                    const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN], tdsx_buf_t *out,
                    tdsx_sealer_t **sealer)
{
    tdsx_sealer_t *s = NULL;
    uint8_t header[TDSX_SEAL_HEADER_LEN];
    int rc;

    if (!sealer)
        return TDSX_E_INVAL;
    *sealer = NULL;
    if (!recipient_pk || !transfer_id || !out)
        return TDSX_E_INVAL;
    s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    s->chunk = tdsx_malloc(TDSX_SEAL_CHUNK);
    if (!s->chunk) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = new_secrets(&s->sec);
    if (rc < 0)
        goto fail;
    rc = tdsx_sha256_init(&s->sha);
    if (rc < 0)
        goto fail;
    build_ad(s->ad, transfer_id, recipient_pk);

    memcpy(header, MAGIC, MAGIC_LEN);
    header[MAGIC_LEN] = TDSX_SEAL_VERSION;
    crypto_secretstream_xchacha20poly1305_keygen(s->sec->key);
    /* crypto_box refuses public keys whose shared secret would be all zero (low order). */
    if (crypto_box_seal(header + MAGIC_LEN + 1, s->sec->key, sizeof s->sec->key, recipient_pk) !=
        0) {
        rc = TDSX_E_KEY;
        goto fail;
    }
    if (crypto_secretstream_xchacha20poly1305_init_push(
            &s->sec->st, header + MAGIC_LEN + 1 + WRAPPED_LEN, s->sec->key) != 0) {
        rc = TDSX_E_INTERNAL;
        goto fail;
    }
    /* The state holds its own subkey; the stream key itself is needed no longer. */
    sodium_memzero(s->sec->key, sizeof s->sec->key);
    rc = tdsx_buf_append(out, header, sizeof header);
    if (rc < 0)
        goto fail;
    s->state = SEALER_OPEN;
    *sealer = s;
    return 0;
fail:
    tdsx_sealer_free(s);
    return rc;
}

int tdsx_sealer_update(tdsx_sealer_t *s, tdsx_bytes_t plaintext, tdsx_buf_t *out)
{
    if (!s || !out || (!plaintext.p && plaintext.n))
        return TDSX_E_INVAL;
    if (s->state == SEALER_FAILED)
        return s->err;
    if (s->state != SEALER_OPEN)
        return TDSX_E_STATE;
    if (plaintext.n > UINT64_MAX - s->total || plaintext.n > SIZE_MAX - s->have)
        return TDSX_E_TOOBIG;
    /* All the room first, so a full buffer changes nothing and the caller can retry. */
    size_t records = (s->have + plaintext.n) / TDSX_SEAL_CHUNK;
    if (records > SIZE_MAX / TDSX_SEAL_RECORD_MAX)
        return TDSX_E_TOOBIG;
    int rc = tdsx_buf_reserve(out, records * TDSX_SEAL_RECORD_MAX);
    if (rc < 0)
        return rc;

    rc = tdsx_sha256_update(&s->sha, plaintext.p, plaintext.n);
    if (rc < 0)
        return sealer_fail(s, rc);
    s->total += plaintext.n;
    tdsx_bytes_t in = plaintext;
    while (in.n) {
        tdsx_bytes_t part;
        if (s->have == 0 && in.n >= TDSX_SEAL_CHUNK) {
            /* Whole chunks go straight from the caller's bytes, without a copy. */
            if (tdsx_bytes_take(&in, TDSX_SEAL_CHUNK, &part) < 0)
                return sealer_fail(s, TDSX_E_INTERNAL);
            rc = push_record(s, out, part.p, part.n, TAG_MESSAGE);
            if (rc < 0)
                return sealer_fail(s, rc);
            continue;
        }
        size_t take = TDSX_SEAL_CHUNK - s->have;
        if (take > in.n)
            take = in.n;
        if (tdsx_bytes_copy(&in, s->chunk + s->have, take) < 0)
            return sealer_fail(s, TDSX_E_INTERNAL);
        s->have += take;
        if (s->have == TDSX_SEAL_CHUNK) {
            rc = push_record(s, out, s->chunk, s->have, TAG_MESSAGE);
            if (rc < 0)
                return sealer_fail(s, rc);
            s->have = 0;
        }
    }
    return 0;
}

int tdsx_sealer_final(tdsx_sealer_t *s, tdsx_buf_t *out, uint8_t plaintext_sha256[TDSX_HASH_LEN])
{
    uint8_t trailer[TDSX_SEAL_TRAILER_LEN];

    if (!s || !out)
        return TDSX_E_INVAL;
    if (s->state == SEALER_FAILED)
        return s->err;
    if (s->state != SEALER_OPEN)
        return TDSX_E_STATE;
    size_t need = TDSX_SEAL_FINAL_RECORD_LEN + (s->have ? s->have + TDSX_SEAL_RECORD_OVERHEAD : 0);
    int rc = tdsx_buf_reserve(out, need);
    if (rc < 0)
        return rc;

    if (s->have) {
        rc = push_record(s, out, s->chunk, s->have, TAG_MESSAGE);
        if (rc < 0)
            return sealer_fail(s, rc);
        sodium_memzero(s->chunk, s->have);
        s->have = 0;
    }
    put_be64(trailer, s->total);
    rc = tdsx_sha256_final(&s->sha, trailer + 8);
    if (rc < 0)
        return sealer_fail(s, rc);
    rc = push_record(s, out, trailer, sizeof trailer, TAG_FINAL);
    if (rc < 0)
        return sealer_fail(s, rc);
    if (plaintext_sha256)
        memcpy(plaintext_sha256, trailer + 8, TDSX_HASH_LEN);
    s->state = SEALER_DONE;
    return 0;
}

uint64_t tdsx_sealer_plaintext_len(const tdsx_sealer_t *s)
{
    return s->total;
}

void tdsx_sealer_free(tdsx_sealer_t *s)
{
    if (!s)
        return;
    if (s->chunk) {
        sodium_memzero(s->chunk, TDSX_SEAL_CHUNK);
        tdsx_free(s->chunk);
    }
    sodium_free(s->sec);
    tdsx_sha256_free(&s->sha);
    tdsx_free(s);
}

/* ------------------------------------------------------------------------------------------
 * Opener: a short state machine over the input, header then records then nothing.
 * ---------------------------------------------------------------------------------------- */
typedef enum { OPENER_HEADER, OPENER_RECORDS, OPENER_DONE, OPENER_FAILED } opener_state_t;

struct tdsx_opener_s {
    struct secrets *sec;
    uint8_t pk[TDSX_X25519_KEY_LEN];
    uint8_t ad[AD_LEN];
    uint8_t *rec;   /* the incomplete header or record, TDSX_SEAL_RECORD_MAX bytes */
    size_t have;    /* bytes of it received */
    size_t need;    /* its full length once known (the header's, or 4 + the record's prefix) */
    int short_seen; /* a data record shorter than a chunk arrived: only FINAL may follow */
    uint64_t total;
    tdsx_sha256_t sha;
    uint8_t trailer[TDSX_SEAL_TRAILER_LEN];
    opener_state_t state;
    int err;
};

static int opener_fail(tdsx_opener_t *o, int rc)
{
    o->state = OPENER_FAILED;
    o->err = rc;
    /* Nothing of a failed stream is needed again, least of all its keys. */
    sodium_memzero(o->sec, sizeof *o->sec);
    sodium_memzero(o->rec, TDSX_SEAL_RECORD_MAX);
    o->have = 0;
    return rc;
}

int tdsx_opener_new(const uint8_t recipient_sk[TDSX_X25519_KEY_LEN],
                    const uint8_t transfer_id[TDSX_SEAL_TRANSFER_ID_LEN], tdsx_opener_t **opener)
{
    tdsx_opener_t *o = NULL;
    int rc;

    if (!opener)
        return TDSX_E_INVAL;
    *opener = NULL;
    if (!recipient_sk || !transfer_id)
        return TDSX_E_INVAL;
    o = tdsx_calloc(1, sizeof *o);
    if (!o)
        return TDSX_E_NOMEM;
    o->rec = tdsx_malloc(TDSX_SEAL_RECORD_MAX);
    if (!o->rec) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    rc = new_secrets(&o->sec);
    if (rc < 0)
        goto fail;
    rc = tdsx_sha256_init(&o->sha);
    if (rc < 0)
        goto fail;
    memcpy(o->sec->sk, recipient_sk, TDSX_X25519_KEY_LEN);
    /* crypto_box_seal_open wants the public key too (it derives the nonce from it); the AD binds
     * the same key, so both come from the secret rather than from the caller. */
    if (crypto_scalarmult_base(o->pk, o->sec->sk) != 0) {
        rc = TDSX_E_KEY;
        goto fail;
    }
    build_ad(o->ad, transfer_id, o->pk);
    o->state = OPENER_HEADER;
    o->need = TDSX_SEAL_HEADER_LEN;
    *opener = o;
    return 0;
fail:
    tdsx_opener_free(o);
    return rc;
}

static int open_header(tdsx_opener_t *o, tdsx_bytes_t h)
{
    const uint8_t *magic;
    uint8_t version;
    tdsx_bytes_t wrapped, ss_header;

    if (tdsx_bytes_peek(&h, MAGIC_LEN, &magic) < 0 || memcmp(magic, MAGIC, MAGIC_LEN) != 0 ||
        tdsx_bytes_skip(&h, MAGIC_LEN) < 0 || tdsx_bytes_u8(&h, &version) < 0)
        return TDSX_E_SEAL;
    if (version != TDSX_SEAL_VERSION)
        return TDSX_E_UNSUPPORTED;
    if (tdsx_bytes_take(&h, WRAPPED_LEN, &wrapped) < 0 ||
        tdsx_bytes_take(&h, crypto_secretstream_xchacha20poly1305_HEADERBYTES, &ss_header) < 0 ||
        h.n != 0)
        return TDSX_E_SEAL;
    if (crypto_box_seal_open(o->sec->key, wrapped.p, wrapped.n, o->pk, o->sec->sk) != 0)
        return TDSX_E_SEAL_RECIPIENT;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&o->sec->st, ss_header.p, o->sec->key) != 0)
        return TDSX_E_SEAL;
    /* The recipient secret opened the only thing it was needed for. */
    sodium_memzero(o->sec->key, sizeof o->sec->key);
    sodium_memzero(o->sec->sk, sizeof o->sec->sk);
    o->state = OPENER_RECORDS;
    return 0;
}

/* The record length prefix: only lengths a sealer can produce are buffered at all. */
static int record_len(tdsx_bytes_t prefix, size_t *len)
{
    uint32_t l;
    if (tdsx_bytes_u32be(&prefix, &l) < 0)
        return TDSX_E_SEAL;
    if (l <= ABYTES || l > TDSX_SEAL_CHUNK + ABYTES)
        return TDSX_E_SEAL;
    *len = l;
    return 0;
}

static int check_trailer(tdsx_opener_t *o, const uint8_t *t)
{
    uint8_t digest[TDSX_HASH_LEN];
    uint64_t len;
    tdsx_bytes_t c = tdsx_bytes(t, TDSX_SEAL_TRAILER_LEN);
    if (tdsx_bytes_u64be(&c, &len) < 0 || c.n != TDSX_HASH_LEN)
        return TDSX_E_SEAL;
    int rc = tdsx_sha256_final(&o->sha, digest);
    if (rc < 0)
        return rc;
    if (len != o->total || sodium_memcmp(digest, c.p, TDSX_HASH_LEN) != 0)
        return TDSX_E_SEAL;
    memcpy(o->trailer, t, TDSX_SEAL_TRAILER_LEN);
    return 0;
}

/* Authenticates and decrypts one whole secretstream message (prefix already removed). */
static int open_record(tdsx_opener_t *o, tdsx_bytes_t c, tdsx_buf_t *out)
{
    uint8_t small[TDSX_SEAL_TRAILER_LEN];
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    size_t plen = c.n - ABYTES;
    uint8_t *m = small;
    int rc;

    /* Short messages (every FINAL record) land in a local buffer, so a FINAL record never
     * needs room in the caller's buffer; data goes straight to the caller. */
    if (plen > sizeof small) {
        rc = tdsx_buf_reserve(out, plen);
        if (rc < 0)
            return rc;
        m = out->p + out->len;
    }
    if (crypto_secretstream_xchacha20poly1305_pull(&o->sec->st, m, &mlen, &tag, c.p, c.n, o->ad,
                                                   AD_LEN) != 0 ||
        mlen != plen)
        return TDSX_E_SEAL;
    switch (tag) {
    case TAG_MESSAGE:
        /* Canonical chunking: only the last data record may be short (crypto.h). */
        if (o->short_seen)
            return TDSX_E_SEAL;
        if (plen < TDSX_SEAL_CHUNK)
            o->short_seen = 1;
        rc = tdsx_sha256_update(&o->sha, m, plen);
        if (rc < 0)
            return rc;
        o->total += plen;
        if (m == small) {
            rc = tdsx_buf_append(out, small, plen);
            sodium_memzero(small, sizeof small);
            return rc;
        }
        buf_commit(out, plen);
        return 0;
    case TAG_FINAL:
        if (plen != TDSX_SEAL_TRAILER_LEN)
            return TDSX_E_SEAL;
        rc = check_trailer(o, small);
        if (rc < 0)
            return rc;
        o->state = OPENER_DONE;
        sodium_memzero(o->sec, sizeof *o->sec);
        return 0;
    default: return TDSX_E_SEAL;
    }
}

/* Moves input into the pending header or record; 1 once it holds all o->need bytes. */
static int fill(tdsx_opener_t *o, tdsx_bytes_t *in)
{
    size_t take = o->need - o->have;
    if (take > in->n)
        take = in->n;
    if (tdsx_bytes_copy(in, o->rec + o->have, take) < 0)
        return TDSX_E_INTERNAL;
    o->have += take;
    return o->have == o->need;
}

static int feed_records(tdsx_opener_t *o, tdsx_bytes_t *in, tdsx_buf_t *out)
{
    size_t len;
    tdsx_bytes_t prefix, body;
    int rc;

    if (o->have == 0) {
        /* A whole record in the input is opened where it lies: no copy. */
        if (tdsx_bytes_take(in, 4, &prefix) < 0) {
            o->need = 4;
            return fill(o, in) < 0 ? TDSX_E_INTERNAL : 0;
        }
        rc = record_len(prefix, &len);
        if (rc < 0)
            return rc;
        if (tdsx_bytes_take(in, len, &body) == 0)
            return open_record(o, body, out);
        memcpy(o->rec, prefix.p, 4);
        o->have = 4;
        o->need = 4 + len;
        return fill(o, in) < 0 ? TDSX_E_INTERNAL : 0;
    }
    rc = fill(o, in);
    if (rc <= 0)
        return rc;
    if (o->need == 4) {
        rc = record_len(tdsx_bytes(o->rec, 4), &len);
        if (rc < 0)
            return rc;
        o->need = 4 + len;
        return 0;
    }
    o->have = 0;
    return open_record(o, tdsx_bytes(o->rec + 4, o->need - 4), out);
}

int tdsx_opener_feed(tdsx_opener_t *o, tdsx_bytes_t ciphertext, tdsx_buf_t *out)
{
    int rc = 0;

    if (!o || !out || (!ciphertext.p && ciphertext.n))
        return TDSX_E_INVAL;
    tdsx_bytes_t in = ciphertext;
    while (in.n && rc == 0) {
        switch (o->state) {
        case OPENER_HEADER:
            rc = fill(o, &in);
            if (rc == 1) {
                o->have = 0;
                rc = open_header(o, tdsx_bytes(o->rec, TDSX_SEAL_HEADER_LEN));
            }
            break;
        case OPENER_RECORDS: rc = feed_records(o, &in, out); break;
        case OPENER_DONE:
            rc = TDSX_E_SEAL; /* an extension after FINAL */
            break;
        case OPENER_FAILED: return o->err;
        default: rc = TDSX_E_INTERNAL; break;
        }
    }
    if (o->state == OPENER_FAILED)
        return o->err;
    return rc < 0 ? opener_fail(o, rc) : 0;
}

int tdsx_opener_final(tdsx_opener_t *o, uint64_t *plaintext_len,
                      uint8_t plaintext_sha256[TDSX_HASH_LEN])
{
    if (!o)
        return TDSX_E_INVAL;
    switch (o->state) {
    case OPENER_DONE: break;
    case OPENER_FAILED: return o->err;
    case OPENER_HEADER:
    case OPENER_RECORDS: return TDSX_E_SEAL_TRUNCATED;
    default: return TDSX_E_INTERNAL;
    }
    if (plaintext_len)
        *plaintext_len = o->total;
    if (plaintext_sha256)
        memcpy(plaintext_sha256, o->trailer + 8, TDSX_HASH_LEN);
    return 0;
}

void tdsx_opener_free(tdsx_opener_t *o)
{
    if (!o)
        return;
    if (o->rec) {
        sodium_memzero(o->rec, TDSX_SEAL_RECORD_MAX);
        tdsx_free(o->rec);
    }
    sodium_free(o->sec);
    tdsx_sha256_free(&o->sha);
    tdsx_free(o);
}
