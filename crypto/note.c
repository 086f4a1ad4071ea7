/* note.c — C2SP signed notes, checkpoints and cosignatures (SPEC §11-§12).
 *
 * References: c2sp.org/signed-note (format, key IDs, signature types 0x01 and 0x04),
 * c2sp.org/tlog-checkpoint (note text), c2sp.org/tlog-cosignature (cosignature/v1),
 * golang.org/x/mod/sumdb/note (verifier and signer key strings). Base64 is RFC 4648 §4 with
 * padding, decoded strictly by libsodium (no whitespace, no stray bits), so one note has one
 * encoding and a changed character never decodes to the same bytes. */
#include "crypto.h"

#include <string.h>

#include <sodium.h>

#define B64 sodium_base64_VARIANT_ORIGINAL
/* U+2014 EM DASH then a space: the start of every signature line. */
static const char SIG_PREFIX[] = "\xe2\x80\x94 ";
#define SIG_PREFIX_LEN 4
static const char COSIG_HEADER[] = "cosignature/v1\n";
#define COSIG_HEADER_LEN 15
/* be64(timestamp) || Ed25519 signature (c2sp.org/tlog-cosignature, timestamped_signature). */
#define COSIG_SIG_LEN (8 + TDSX_ED25519_SIG_LEN)
/* "time " + at most 19 digits (timestamp <= 2^63-1) + "\n". */
#define COSIG_TIME_MAX 32
#define TS_MAX ((uint64_t)INT64_MAX)
/* Encoded root hash of a checkpoint: 32 bytes in base64 with padding. */
#define ROOT_B64_LEN 44

struct tdsx_note_signer_s {
    tdsx_note_verifier_t pub;
    unsigned char *sk; /* sodium_malloc, read-only once made */
};

struct tdsx_note_s {
    uint8_t *msg; /* copy of the whole note */
    size_t text_len;
    size_t nsigs;
    tdsx_note_sig_t sigs[TDSX_NOTE_SIGS_MAX];
    uint8_t *decoded; /* decoded signature lines, each sig views into it */
};

/* ------------------------------------------------------------------------------------------
 * Text rules
 * ---------------------------------------------------------------------------------------- */

/* Decodes one UTF-8 scalar value (RFC 3629 §4: shortest form, no surrogates, <= U+10FFFF).
 * Returns its length, 0 when the bytes are not valid UTF-8. */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t b = p[0];
    size_t len;
    uint32_t v, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if ((b & 0xe0) == 0xc0) {
        len = 2, v = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, v = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, v = b & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Unicode White_Space (what Go's unicode.IsSpace reports), which key names must not hold. */
static int is_space(uint32_t c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* signed-note "Format": valid UTF-8, no control character other than newline. */
static int text_chars_ok(tdsx_bytes_t t)
{
    size_t i = 0;
    while (i < t.n) {
        uint32_t c;
        size_t len = utf8_next(t.p + i, t.n - i, &c);
        if (len == 0 || (c < 0x20 && c != '\n'))
            return 0;
        i += len;
    }
    return 1;
}

int tdsx_note_name_valid(tdsx_bytes_t name)
{
    if (!name.p || name.n == 0 || name.n > TDSX_NOTE_NAME_MAX)
        return 0;
    size_t i = 0;
    while (i < name.n) {
        uint32_t c;
        size_t len = utf8_next(name.p + i, name.n - i, &c);
        if (len == 0 || c < 0x20 || c == '+' || is_space(c))
            return 0;
        i += len;
    }
    return 1;
}

static int name_ok(const char *name, size_t *len)
{
    if (!name)
        return 0;
    size_t n = strnlen(name, TDSX_NOTE_NAME_MAX + 1);
    *len = n;
    return tdsx_note_name_valid(tdsx_bytes(name, n));
}

static size_t find_byte(tdsx_bytes_t b, uint8_t c)
{
    const uint8_t *q = b.n ? memchr(b.p, c, b.n) : NULL;
    return q ? (size_t)(q - b.p) : b.n;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int b64_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Strict base64 (with padding) of exactly `want` bytes, or of at most `cap` bytes when want is
 * 0; *len gets the decoded length. The alphabet is checked here: libsodium 1.0.18 decodes bytes
 * above 0x7f as if they were base64 characters, which would give one value many spellings. */
static int b64_decode(tdsx_bytes_t in, uint8_t *out, size_t cap, size_t want, size_t *len)
{
    size_t got = 0;
    if (in.n == 0 || in.n % 4 != 0)
        return -1;
    size_t pad = in.p[in.n - 1] == '=' ? 1 + (in.p[in.n - 2] == '=') : 0;
    for (size_t i = 0; i < in.n - pad; i++)
        if (!b64_char(in.p[i]))
            return -1;
    if (sodium_base642bin(out, cap, (const char *)in.p, in.n, NULL, &got, NULL, B64) != 0)
        return -1;
    if (want && got != want)
        return -1;
    *len = got;
    return 0;
}

static int b64_append(tdsx_buf_t *out, const uint8_t *p, size_t n)
{
    char tmp[sodium_base64_ENCODED_LEN(4 + COSIG_SIG_LEN, B64)];
    size_t enc = sodium_base64_encoded_len(n, B64);
    if (enc > sizeof tmp)
        return TDSX_E_INTERNAL;
    sodium_bin2base64(tmp, sizeof tmp, p, n, B64);
    return tdsx_buf_append(out, tmp, enc - 1);
}

/* ------------------------------------------------------------------------------------------
 * Keys
 * ---------------------------------------------------------------------------------------- */

int tdsx_note_key_id(tdsx_bytes_t name, uint8_t type, const uint8_t pk[TDSX_ED25519_PK_LEN],
                     uint32_t *out)
{
    if (!pk || !out || !tdsx_note_name_valid(name))
        return TDSX_E_INVAL;
    tdsx_sha256_t h;
    uint8_t sep[2] = {'\n', type}, d[TDSX_HASH_LEN];
    int rc = tdsx_sha256_init(&h);
    if (rc == 0)
        rc = tdsx_sha256_update(&h, name.p, name.n);
    if (rc == 0)
        rc = tdsx_sha256_update(&h, sep, sizeof sep);
    if (rc == 0)
        rc = tdsx_sha256_update(&h, pk, TDSX_ED25519_PK_LEN);
    if (rc == 0)
        rc = tdsx_sha256_final(&h, d);
    tdsx_sha256_free(&h);
    if (rc == 0)
        *out = be32(d);
    return rc;
}

static int type_ok(uint8_t type)
{
    return type == TDSX_NOTE_ED25519 || type == TDSX_NOTE_COSIG;
}

int tdsx_note_verifier_init(tdsx_note_verifier_t *out, const char *name, uint8_t type,
                            const uint8_t pk[TDSX_ED25519_PK_LEN])
{
    size_t len;
    if (!out || !pk || !name_ok(name, &len) || !type_ok(type))
        return TDSX_E_INVAL;
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    if (crypto_core_ed25519_is_valid_point(pk) != 1)
        return TDSX_E_KEY;
    tdsx_note_verifier_t v;
    memset(&v, 0, sizeof v);
    memcpy(v.name, name, len);
    v.name_len = len;
    v.type = type;
    memcpy(v.pk, pk, TDSX_ED25519_PK_LEN);
    int rc = tdsx_note_key_id(tdsx_bytes(name, len), type, pk, &v.key_id);
    if (rc < 0)
        return rc;
    *out = v;
    return 0;
}

/* Splits "<name>+<8 hex>+<base64(type || 32 bytes)>" (the tail of both key strings) and
 * decodes it; key gets type || 32 bytes. Every defect is TDSX_E_KEY. */
static int key_fields(tdsx_bytes_t s, tdsx_bytes_t *name, uint32_t *id, uint8_t key[33])
{
    size_t p1 = find_byte(s, '+');
    if (p1 == s.n)
        return TDSX_E_KEY;
    *name = tdsx_bytes(s.p, p1);
    tdsx_bytes_t rest = tdsx_bytes(s.p + p1 + 1, s.n - p1 - 1);
    size_t p2 = find_byte(rest, '+');
    if (!tdsx_note_name_valid(*name) || p2 != 8)
        return TDSX_E_KEY;
    char hex[9];
    uint8_t idb[4];
    memcpy(hex, rest.p, 8);
    hex[8] = '\0';
    /* Either case, as golang.org/x/mod/sumdb/note reads it; we write lowercase. */
    if (tdsx_hex_decode(idb, 4, hex) != 0)
        return TDSX_E_KEY;
    *id = be32(idb);
    size_t got;
    if (b64_decode(tdsx_bytes(rest.p + 9, rest.n - 9), key, 33, 33, &got) != 0)
        return TDSX_E_KEY;
    return 0;
}

int tdsx_note_verifier_parse(tdsx_bytes_t vkey, tdsx_note_verifier_t *out)
{
    if (!vkey.p || !out)
        return TDSX_E_INVAL;
    if (vkey.n > TDSX_NOTE_VKEY_MAX)
        return TDSX_E_KEY;
    tdsx_bytes_t name;
    uint32_t id;
    uint8_t key[33];
    int rc = key_fields(vkey, &name, &id, key);
    if (rc < 0)
        return rc;
    char cname[TDSX_NOTE_NAME_MAX + 1];
    memcpy(cname, name.p, name.n);
    cname[name.n] = '\0';
    tdsx_note_verifier_t v;
    rc = tdsx_note_verifier_init(&v, cname, key[0], key + 1);
    if (rc == TDSX_E_INVAL)
        rc = TDSX_E_KEY;
    if (rc < 0)
        return rc;
    if (v.key_id != id)
        return TDSX_E_KEY;
    *out = v;
    return 0;
}

int tdsx_note_verifier_format(const tdsx_note_verifier_t *v, tdsx_buf_t *out)
{
    if (!v || !out)
        return TDSX_E_INVAL;
    size_t mark = out->len;
    uint8_t key[33];
    key[0] = v->type;
    memcpy(key + 1, v->pk, TDSX_ED25519_PK_LEN);
    int rc = tdsx_buf_printf(out, "%s+%08lx+", v->name, (unsigned long)v->key_id);
    if (rc == 0)
        rc = b64_append(out, key, sizeof key);
    if (rc < 0)
        out->len = mark;
    return rc;
}

int tdsx_note_signer_new(const char *name, uint8_t type, const uint8_t seed[TDSX_ED25519_SEED_LEN],
                         tdsx_note_signer_t **out)
{
    tdsx_note_signer_t *s = NULL;
    uint8_t pk[TDSX_ED25519_PK_LEN];
    size_t len;
    int rc;

    if (!seed || !out || !name_ok(name, &len) || !type_ok(type))
        return TDSX_E_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    s = tdsx_calloc(1, sizeof *s);
    if (!s)
        return TDSX_E_NOMEM;
    s->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!s->sk) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    /* Read-only, not no-access between uses: signing threads never change the protection, so
     * concurrent signatures cannot race on it. */
    if (crypto_sign_seed_keypair(pk, s->sk, seed) != 0 || sodium_mprotect_readonly(s->sk) != 0) {
        rc = TDSX_E_INTERNAL;
        goto fail;
    }
    rc = tdsx_note_verifier_init(&s->pub, name, type, pk);
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    if (s)
        sodium_free(s->sk);
    tdsx_free(s);
    return rc;
}

int tdsx_note_signer_parse(tdsx_bytes_t skey, tdsx_note_signer_t **out)
{
    static const char prefix[] = "PRIVATE+KEY+";
    uint8_t key[33];
    tdsx_bytes_t name;
    uint32_t id;
    char cname[TDSX_NOTE_NAME_MAX + 1];
    tdsx_note_signer_t *s = NULL;
    int rc;

    if (!skey.p || !out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (skey.n > TDSX_NOTE_SKEY_MAX || skey.n < sizeof prefix - 1 ||
        memcmp(skey.p, prefix, sizeof prefix - 1) != 0)
        return TDSX_E_KEY;
    rc = key_fields(tdsx_bytes(skey.p + sizeof prefix - 1, skey.n - (sizeof prefix - 1)), &name,
                    &id, key);
    if (rc < 0)
        goto fail;
    memcpy(cname, name.p, name.n);
    cname[name.n] = '\0';
    if (!type_ok(key[0])) {
        rc = TDSX_E_KEY;
        goto fail;
    }
    rc = tdsx_note_signer_new(cname, key[0], key + 1, &s);
    if (rc == TDSX_E_INVAL)
        rc = TDSX_E_KEY;
    if (rc < 0)
        goto fail;
    /* The key ID names the public key, which only the seed determines. */
    if (s->pub.key_id != id) {
        rc = TDSX_E_KEY;
        goto fail;
    }
    sodium_memzero(key, sizeof key);
    *out = s;
    return 0;
fail:
    sodium_memzero(key, sizeof key);
    tdsx_note_signer_free(s);
    return rc;
}

const tdsx_note_verifier_t *tdsx_note_signer_verifier(const tdsx_note_signer_t *s)
{
    return &s->pub;
}

void tdsx_note_signer_free(tdsx_note_signer_t *s)
{
    if (!s)
        return;
    sodium_free(s->sk); /* sodium_free wipes before unmapping */
    tdsx_free(s);
}

/* ------------------------------------------------------------------------------------------
 * Parsing and verifying notes
 * ---------------------------------------------------------------------------------------- */

static size_t count_byte(tdsx_bytes_t b, uint8_t c)
{
    size_t n = 0;
    for (size_t i = 0; i < b.n; i++)
        n += b.p[i] == c;
    return n;
}

/* The offset of the last "\n\n" in b, or b.n when there is none. */
static size_t last_blank(tdsx_bytes_t b)
{
    for (size_t i = b.n; i >= 2; i--)
        if (b.p[i - 1] == '\n' && b.p[i - 2] == '\n')
            return i - 2;
    return b.n;
}

/* One signature line (without its newline) into *sig; decoded bytes go to dec. */
static int parse_sig_line(tdsx_bytes_t line, uint8_t *dec, size_t dec_cap, size_t *dec_len,
                          tdsx_note_sig_t *sig)
{
    if (line.n < SIG_PREFIX_LEN || memcmp(line.p, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
        return TDSX_E_NOTE_FORMAT;
    tdsx_bytes_t rest = tdsx_bytes(line.p + SIG_PREFIX_LEN, line.n - SIG_PREFIX_LEN);
    size_t sp = find_byte(rest, ' ');
    if (sp == rest.n)
        return TDSX_E_NOTE_FORMAT;
    tdsx_bytes_t name = tdsx_bytes(rest.p, sp);
    tdsx_bytes_t b64 = tdsx_bytes(rest.p + sp + 1, rest.n - sp - 1);
    size_t got;
    if (!tdsx_note_name_valid(name) || b64_decode(b64, dec, dec_cap, 0, &got) != 0 || got < 5)
        return TDSX_E_NOTE_FORMAT;
    memset(sig, 0, sizeof *sig);
    sig->name = name;
    sig->key_id = be32(dec);
    sig->sig = tdsx_bytes(dec + 4, got - 4);
    *dec_len = got;
    return 0;
}

int tdsx_note_parse(tdsx_bytes_t msg, tdsx_note_t **out)
{
    tdsx_note_t *n = NULL;
    int rc;

    if (!out || (!msg.p && msg.n))
        return TDSX_E_INVAL;
    *out = NULL;
    if (msg.n > TDSX_NOTE_MAX)
        return TDSX_E_NOTE_TOOBIG;
    if (!text_chars_ok(msg))
        return TDSX_E_NOTE_FORMAT;
    /* signed-note "Format": the text is separated from the signatures by the last empty line,
     * and the note ends with a newline. */
    size_t split = last_blank(msg);
    if (split == msg.n || split + 2 == msg.n || msg.p[msg.n - 1] != '\n')
        return TDSX_E_NOTE_FORMAT;
    tdsx_bytes_t text = tdsx_bytes(msg.p, split + 1);
    tdsx_bytes_t block = tdsx_bytes(msg.p + split + 2, msg.n - split - 2);
    if (count_byte(text, '\n') > TDSX_NOTE_LINES_MAX)
        return TDSX_E_NOTE_LINES;
    if (count_byte(block, '\n') > TDSX_NOTE_SIGS_MAX)
        return TDSX_E_NOTE_SIGS;

    n = tdsx_calloc(1, sizeof *n);
    if (!n)
        return TDSX_E_NOMEM;
    /* One copy of the note and room for every decoded line (base64 shrinks by a quarter). */
    n->msg = tdsx_malloc(2 * msg.n);
    if (!n->msg) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    memcpy(n->msg, msg.p, msg.n);
    n->decoded = n->msg + msg.n;
    n->text_len = text.n;

    size_t off = split + 2, used = 0;
    while (off < msg.n) {
        tdsx_bytes_t rest = tdsx_bytes(n->msg + off, msg.n - off);
        size_t nl = find_byte(rest, '\n'); /* always found: the note ends with one */
        size_t dlen;
        tdsx_note_sig_t *sig = &n->sigs[n->nsigs];
        rc = parse_sig_line(tdsx_bytes(rest.p, nl), n->decoded + used, msg.n - used, &dlen, sig);
        if (rc < 0)
            goto fail;
        sig->line = tdsx_bytes(rest.p, nl + 1);
        used += dlen;
        n->nsigs++;
        off += nl + 1;
    }
    *out = n;
    return 0;
fail:
    tdsx_note_free(n);
    return rc;
}

/* The message a cosignature/v1 signs (c2sp.org/tlog-cosignature, "Ed25519 signed message"). */
static int cosig_message(tdsx_bytes_t text, uint64_t ts, tdsx_buf_t *m)
{
    int rc = tdsx_buf_append(m, COSIG_HEADER, COSIG_HEADER_LEN);
    if (rc == 0)
        rc = tdsx_buf_printf(m, "time %llu\n", (unsigned long long)ts);
    if (rc == 0)
        rc = tdsx_buf_append(m, text.p, text.n);
    return rc;
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int verify_line(tdsx_bytes_t text, const tdsx_note_verifier_t *k, tdsx_note_sig_t *sig)
{
    if (k->type == TDSX_NOTE_ED25519) {
        if (sig->sig.n != TDSX_ED25519_SIG_LEN ||
            crypto_sign_verify_detached(sig->sig.p, text.p, text.n, k->pk) != 0)
            return TDSX_E_SIG_INVALID;
        sig->timestamp = 0;
    } else {
        if (sig->sig.n != COSIG_SIG_LEN)
            return TDSX_E_COSIGNATURE;
        uint64_t ts = be64(sig->sig.p);
        if (ts > TS_MAX)
            return TDSX_E_COSIGNATURE;
        tdsx_buf_t m;
        tdsx_buf_init(&m, COSIG_HEADER_LEN + COSIG_TIME_MAX + text.n);
        int rc = cosig_message(text, ts, &m);
        if (rc == 0 && crypto_sign_verify_detached(sig->sig.p + 8, m.p, m.len, k->pk) != 0)
            rc = TDSX_E_SIG_INVALID;
        tdsx_buf_free(&m);
        if (rc < 0)
            return rc;
        sig->timestamp = ts;
    }
    sig->verified = 1;
    sig->type = k->type;
    memcpy(sig->pk, k->pk, TDSX_ED25519_PK_LEN);
    return 0;
}

static int same_key(const tdsx_note_verifier_t *a, const tdsx_note_verifier_t *b)
{
    return a->type == b->type && memcmp(a->pk, b->pk, TDSX_ED25519_PK_LEN) == 0;
}

static int names_equal(tdsx_bytes_t a, const tdsx_note_verifier_t *k)
{
    return a.n == k->name_len && memcmp(a.p, k->name, a.n) == 0;
}

int tdsx_note_open(tdsx_bytes_t msg, const tdsx_note_verifier_t *keys, size_t nkeys,
                   tdsx_note_t **out)
{
    tdsx_note_t *n = NULL;
    if (!out || (!keys && nkeys))
        return TDSX_E_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return TDSX_E_INTERNAL;
    int rc = tdsx_note_parse(msg, &n);
    if (rc < 0)
        return rc;
    tdsx_bytes_t text = tdsx_note_text(n);
    size_t good = 0;
    for (size_t i = 0; i < n->nsigs; i++) {
        tdsx_note_sig_t *sig = &n->sigs[i];
        const tdsx_note_verifier_t *k = NULL;
        for (size_t j = 0; j < nkeys; j++) {
            if (keys[j].key_id != sig->key_id || !names_equal(sig->name, &keys[j]))
                continue;
            /* signed-note: name and key ID identify the key; two keys sharing both cannot
             * both be meant, so the note cannot be judged. */
            if (k && !same_key(k, &keys[j])) {
                rc = TDSX_E_DUPLICATE;
                goto fail;
            }
            k = &keys[j];
        }
        if (!k)
            continue; /* unknown signer: ignored, as the spec requires */
        rc = verify_line(text, k, sig);
        if (rc < 0)
            goto fail;
        good++;
    }
    if (good == 0) {
        rc = TDSX_E_NOTE_UNVERIFIED;
        goto fail;
    }
    *out = n;
    return 0;
fail:
    tdsx_note_free(n);
    return rc;
}

tdsx_bytes_t tdsx_note_text(const tdsx_note_t *n)
{
    return tdsx_bytes(n->msg, n->text_len);
}

size_t tdsx_note_sig_count(const tdsx_note_t *n)
{
    return n->nsigs;
}

const tdsx_note_sig_t *tdsx_note_sig(const tdsx_note_t *n, size_t i)
{
    return i < n->nsigs ? &n->sigs[i] : NULL;
}

const tdsx_note_sig_t *tdsx_note_verified_by(const tdsx_note_t *n, const tdsx_note_verifier_t *key)
{
    for (size_t i = 0; i < n->nsigs; i++) {
        const tdsx_note_sig_t *s = &n->sigs[i];
        if (s->verified && s->key_id == key->key_id && names_equal(s->name, key) &&
            s->type == key->type && memcmp(s->pk, key->pk, TDSX_ED25519_PK_LEN) == 0)
            return s;
    }
    return NULL;
}

void tdsx_note_free(tdsx_note_t *n)
{
    if (!n)
        return;
    tdsx_free(n->msg);
    tdsx_free(n);
}

/* ------------------------------------------------------------------------------------------
 * Signing
 * ---------------------------------------------------------------------------------------- */

/* Appends "— <name> base64(be32(id) || sig)\n". */
static int sig_line(tdsx_buf_t *out, const tdsx_note_verifier_t *k, const uint8_t *sig,
                    size_t sig_len)
{
    uint8_t raw[4 + COSIG_SIG_LEN];
    put_be32(raw, k->key_id);
    memcpy(raw + 4, sig, sig_len);
    int rc = tdsx_buf_append(out, SIG_PREFIX, SIG_PREFIX_LEN);
    if (rc == 0)
        rc = tdsx_buf_append(out, k->name, k->name_len);
    if (rc == 0)
        rc = tdsx_buf_append(out, " ", 1);
    if (rc == 0)
        rc = b64_append(out, raw, 4 + sig_len);
    if (rc == 0)
        rc = tdsx_buf_append(out, "\n", 1);
    return rc;
}

/* A text a note may carry: valid characters, ends with a newline, within the line cap. */
static int text_ok(tdsx_bytes_t text)
{
    if (text.n == 0 || text.p[text.n - 1] != '\n' || !text_chars_ok(text))
        return TDSX_E_NOTE_FORMAT;
    if (text.n > TDSX_NOTE_MAX)
        return TDSX_E_NOTE_TOOBIG;
    if (count_byte(text, '\n') > TDSX_NOTE_LINES_MAX)
        return TDSX_E_NOTE_LINES;
    return 0;
}

/* Refuses a finished note that its own parser would refuse for size. */
static int note_size_ok(size_t len)
{
    return len <= TDSX_NOTE_MAX ? 0 : TDSX_E_NOTE_TOOBIG;
}

int tdsx_note_sign(tdsx_bytes_t text, const tdsx_note_signer_t *const *signers, size_t n,
                   tdsx_buf_t *out)
{
    if (!text.p || !signers || !out || n == 0)
        return TDSX_E_INVAL;
    if (n > TDSX_NOTE_SIGS_MAX)
        return TDSX_E_NOTE_SIGS;
    int rc = text_ok(text);
    if (rc < 0)
        return rc;
    if (text.n >= COSIG_HEADER_LEN && memcmp(text.p, COSIG_HEADER, COSIG_HEADER_LEN) == 0)
        return TDSX_E_NOTE_FORMAT;
    for (size_t i = 0; i < n; i++) {
        if (!signers[i])
            return TDSX_E_INVAL;
        const tdsx_note_verifier_t *a = &signers[i]->pub;
        if (a->type != TDSX_NOTE_ED25519)
            return TDSX_E_KEY;
        for (size_t j = 0; j < i; j++) {
            const tdsx_note_verifier_t *b = &signers[j]->pub;
            if (a->key_id == b->key_id && a->name_len == b->name_len &&
                memcmp(a->name, b->name, a->name_len) == 0)
                return TDSX_E_DUPLICATE;
        }
    }

    size_t mark = out->len;
    rc = tdsx_buf_append(out, text.p, text.n);
    if (rc == 0)
        rc = tdsx_buf_append(out, "\n", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t sig[TDSX_ED25519_SIG_LEN];
        if (crypto_sign_detached(sig, NULL, text.p, text.n, signers[i]->sk) != 0)
            rc = TDSX_E_INTERNAL;
        if (rc == 0)
            rc = sig_line(out, &signers[i]->pub, sig, sizeof sig);
    }
    if (rc == 0)
        rc = note_size_ok(out->len - mark);
    if (rc < 0)
        out->len = mark;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Checkpoints
 * ---------------------------------------------------------------------------------------- */

/* tlog-checkpoint: decimal, no leading zeros except "0" itself, fits in 64 bits. */
static int parse_size(tdsx_bytes_t s, uint64_t *out)
{
    if (s.n == 0 || s.n > 20 || (s.n > 1 && s.p[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned d = (unsigned)s.p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int tdsx_checkpoint_parse(tdsx_bytes_t text, tdsx_checkpoint_t *out)
{
    if (!out || (!text.p && text.n))
        return TDSX_E_INVAL;
    if (text.n == 0 || text.n > TDSX_NOTE_MAX || text.p[text.n - 1] != '\n' || !text_chars_ok(text))
        return TDSX_E_CHECKPOINT;
    tdsx_bytes_t line[3], rest = text;
    for (int i = 0; i < 3; i++) {
        size_t nl = find_byte(rest, '\n');
        if (nl == rest.n || nl == 0)
            return TDSX_E_CHECKPOINT;
        line[i] = tdsx_bytes(rest.p, nl);
        rest = tdsx_bytes(rest.p + nl + 1, rest.n - nl - 1);
    }
    tdsx_checkpoint_t cp;
    size_t got;
    if (line[0].n > TDSX_NOTE_NAME_MAX || parse_size(line[1], &cp.size) != 0 ||
        line[2].n != ROOT_B64_LEN ||
        b64_decode(line[2], cp.root.b, TDSX_HASH_LEN, TDSX_HASH_LEN, &got) != 0)
        return TDSX_E_CHECKPOINT;
    /* Extension lines MUST be non-empty: no "\n\n" and no leading "\n". */
    if (rest.n && (rest.p[0] == '\n' || last_blank(rest) != rest.n))
        return TDSX_E_CHECKPOINT;
    cp.origin = line[0];
    cp.extensions = rest;
    *out = cp;
    return 0;
}

int tdsx_checkpoint_format(const tdsx_checkpoint_t *cp, tdsx_buf_t *out)
{
    if (!cp || !out || (!cp->origin.p && cp->origin.n) || (!cp->extensions.p && cp->extensions.n))
        return TDSX_E_INVAL;
    size_t mark = out->len;
    int rc = tdsx_buf_append(out, cp->origin.p, cp->origin.n);
    if (rc == 0)
        rc = tdsx_buf_printf(out, "\n%llu\n", (unsigned long long)cp->size);
    if (rc == 0)
        rc = b64_append(out, cp->root.b, TDSX_HASH_LEN);
    if (rc == 0)
        rc = tdsx_buf_append(out, "\n", 1);
    if (rc == 0 && cp->extensions.n)
        rc = tdsx_buf_append(out, cp->extensions.p, cp->extensions.n);
    /* What we write must parse back to the same fields: that rejects an origin with a newline,
     * an empty origin or extension line, control characters, ... */
    tdsx_checkpoint_t back;
    if (rc == 0 && (tdsx_checkpoint_parse(tdsx_bytes(out->p + mark, out->len - mark), &back) != 0 ||
                    back.origin.n != cp->origin.n || back.extensions.n != cp->extensions.n))
        rc = TDSX_E_CHECKPOINT;
    if (rc < 0)
        out->len = mark;
    return rc;
}

int tdsx_checkpoint_sign(const tdsx_checkpoint_t *cp, const tdsx_note_signer_t *log,
                         tdsx_buf_t *out)
{
    if (!cp || !log || !out)
        return TDSX_E_INVAL;
    tdsx_buf_t text;
    tdsx_buf_init(&text, TDSX_NOTE_MAX);
    int rc = tdsx_checkpoint_format(cp, &text);
    if (rc == 0)
        rc = tdsx_note_sign(tdsx_buf_bytes(&text), &log, 1, out);
    tdsx_buf_free(&text);
    return rc;
}

int tdsx_checkpoint_open(tdsx_bytes_t msg, const tdsx_note_verifier_t *log,
                         const tdsx_note_verifier_t *witnesses, size_t nwitnesses,
                         const char *origin, tdsx_note_t **note, tdsx_checkpoint_t *out)
{
    tdsx_note_verifier_t *keys = NULL;
    tdsx_note_t *n = NULL;
    int rc;

    if (!log || !note || !out || (!witnesses && nwitnesses) || nwitnesses >= SIZE_MAX / 2)
        return TDSX_E_INVAL;
    *note = NULL;
    keys = tdsx_calloc(nwitnesses + 1, sizeof *keys);
    if (!keys)
        return TDSX_E_NOMEM;
    keys[0] = *log;
    if (nwitnesses)
        memcpy(keys + 1, witnesses, nwitnesses * sizeof *keys);
    rc = tdsx_note_open(msg, keys, nwitnesses + 1, &n);
    if (rc < 0)
        goto fail;
    if (!tdsx_note_verified_by(n, log)) {
        rc = TDSX_E_NOTE_UNVERIFIED;
        goto fail;
    }
    tdsx_checkpoint_t cp;
    rc = tdsx_checkpoint_parse(tdsx_note_text(n), &cp);
    if (rc < 0)
        goto fail;
    if (origin &&
        (cp.origin.n != strlen(origin) || memcmp(cp.origin.p, origin, cp.origin.n) != 0)) {
        rc = TDSX_E_CHECKPOINT;
        goto fail;
    }
    tdsx_free(keys);
    *note = n;
    *out = cp;
    return 0;
fail:
    tdsx_free(keys);
    tdsx_note_free(n);
    return rc;
}

int tdsx_checkpoint_cosign(tdsx_bytes_t msg, const tdsx_note_signer_t *witness, uint64_t timestamp,
                           tdsx_buf_t *out)
{
    tdsx_note_t *n = NULL;
    tdsx_buf_t m;
    int rc;

    if (!witness || !out)
        return TDSX_E_INVAL;
    if (witness->pub.type != TDSX_NOTE_COSIG)
        return TDSX_E_KEY;
    if (timestamp > TS_MAX)
        return TDSX_E_COSIGNATURE;
    rc = tdsx_note_parse(msg, &n);
    if (rc < 0)
        return rc;
    tdsx_bytes_t text = tdsx_note_text(n);
    tdsx_checkpoint_t cp;
    tdsx_buf_init(&m, COSIG_HEADER_LEN + COSIG_TIME_MAX + text.n);
    size_t mark = out->len;
    rc = tdsx_checkpoint_parse(text, &cp);
    if (rc < 0)
        goto fail;

    uint8_t sig[COSIG_SIG_LEN];
    for (int i = 0; i < 8; i++)
        sig[i] = (uint8_t)(timestamp >> (56 - 8 * i));
    rc = cosig_message(text, timestamp, &m);
    if (rc == 0 && crypto_sign_detached(sig + 8, NULL, m.p, m.len, witness->sk) != 0)
        rc = TDSX_E_INTERNAL;
    if (rc == 0)
        rc = tdsx_buf_append(out, text.p, text.n);
    if (rc == 0)
        rc = tdsx_buf_append(out, "\n", 1);
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < n->nsigs; i++) {
        const tdsx_note_sig_t *s = &n->sigs[i];
        if (s->key_id == witness->pub.key_id && names_equal(s->name, &witness->pub))
            continue;
        rc = tdsx_buf_append(out, s->line.p, s->line.n);
        kept++;
    }
    if (rc == 0 && kept + 1 > TDSX_NOTE_SIGS_MAX)
        rc = TDSX_E_NOTE_SIGS;
    if (rc == 0)
        rc = sig_line(out, &witness->pub, sig, sizeof sig);
    if (rc == 0)
        rc = note_size_ok(out->len - mark);
fail:
    if (rc < 0)
        out->len = mark;
    tdsx_buf_free(&m);
    tdsx_note_free(n);
    return rc;
}
