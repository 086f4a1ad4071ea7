/* Signed notes, checkpoints and cosignatures: the golang.org/x/mod/sumdb/note vectors, C2SP
 * examples, round trips, and every way a note, a key or a checkpoint can be wrong. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

/* golang.org/x/mod/sumdb/note (note_test.go, package doc). */
#define PETER_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define PETER_SKEY "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
#define ENOCH_VKEY "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
#define GO_TEXT                                                                                    \
    "If you think cryptography is the answer to your problem,\n"                                   \
    "then you don't know what your problem is.\n"
#define PETER_SIG                                                                                  \
    "\xe2\x80\x94 PeterNeumann "                                                                   \
    "x08go/ZJkuBS9UG/"                                                                             \
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
#define ENOCH_SIG                                                                                  \
    "\xe2\x80\x94 EnochRoot "                                                                      \
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/"                                                 \
    "5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
#define GO_NOTE GO_TEXT "\n" PETER_SIG

/* Published witness and log keys (transparency-dev/formats note tests): a cosignature/v1 key
 * (type 0x04) and an Ed25519 note key, to check key IDs against keys made elsewhere. */
#define REMORA_VKEY "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
#define TEST_VKEY "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"

/* c2sp.org/tlog-checkpoint example text. */
#define C2SP_CHECKPOINT                                                                            \
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

#define ORIGIN "91350100M000100Y43/node-a"
#define WITNESS "91350100M000100Y43/centre"

static tdsx_bytes_t str(const char *s)
{
    return tdsx_bytes(s, strlen(s));
}

static tdsx_note_verifier_t vkey(const char *s)
{
    tdsx_note_verifier_t v;
    assert_int_equal(tdsx_note_verifier_parse(str(s), &v), 0);
    return v;
}

static tdsx_note_signer_t *signer(const char *name, uint8_t type, uint8_t fill)
{
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    memset(seed, fill, sizeof seed);
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_note_signer_new(name, type, seed, &s), 0);
    return s;
}

static int open_rc(const void *p, size_t n, const tdsx_note_verifier_t *keys, size_t nkeys)
{
    tdsx_note_t *note = NULL;
    int rc = tdsx_note_open(tdsx_bytes(p, n), keys, nkeys, &note);
    if (rc == 0)
        assert_non_null(note);
    else
        assert_null(note);
    tdsx_note_free(note);
    return rc;
}

/* Signs `text` with one signer into a new buffer (caller frees with tdsx_buf_free). */
static tdsx_buf_t sign_text(const char *text, const tdsx_note_signer_t *s)
{
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_note_sign(str(text), &s, 1, &b), 0);
    return b;
}

/* A signed checkpoint of `size` entries with a root derived from the size. */
static tdsx_buf_t signed_checkpoint(const tdsx_note_signer_t *log, uint64_t size, const char *ext)
{
    tdsx_checkpoint_t cp = {str(ORIGIN), size, {{0}}, ext ? str(ext) : tdsx_bytes(NULL, 0)};
    for (size_t i = 0; i < TDSX_HASH_LEN; i++)
        cp.root.b[i] = (uint8_t)(size * 7 + i);
    tdsx_buf_t b;
    tdsx_buf_init(&b, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_checkpoint_sign(&cp, log, &b), 0);
    return b;
}

/* ---- positive: published vectors ---------------------------------------------------------- */

static void go_vector_verifies(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY);
    assert_string_equal(peter.name, "PeterNeumann");
    assert_int_equal(peter.key_id, 0xc74f20a3u);
    assert_int_equal(peter.type, TDSX_NOTE_ED25519);

    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    assert_int_equal(tdsx_note_verifier_format(&peter, &b), 0);
    assert_int_equal(b.len, strlen(PETER_VKEY));
    assert_memory_equal(b.p, PETER_VKEY, b.len);
    tdsx_buf_free(&b);

    tdsx_note_t *n = NULL;
    assert_int_equal(tdsx_note_open(str(GO_NOTE), &peter, 1, &n), 0);
    tdsx_bytes_t text = tdsx_note_text(n);
    assert_int_equal(text.n, strlen(GO_TEXT));
    assert_memory_equal(text.p, GO_TEXT, text.n);
    assert_int_equal(tdsx_note_sig_count(n), 1);
    const tdsx_note_sig_t *s = tdsx_note_sig(n, 0);
    assert_true(s->verified);
    assert_int_equal(s->key_id, 0xc74f20a3u);
    assert_int_equal(s->sig.n, TDSX_ED25519_SIG_LEN);
    assert_ptr_equal(tdsx_note_verified_by(n, &peter), s);
    assert_null(tdsx_note_sig(n, 1));
    tdsx_note_free(n);
}

static void go_signer_key_reproduces_the_note(void **state)
{
    (void)state;
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_note_signer_parse(str(PETER_SKEY), &s), 0);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    assert_int_equal(tdsx_note_verifier_format(tdsx_note_signer_verifier(s), &b), 0);
    assert_int_equal(b.len, strlen(PETER_VKEY));
    assert_memory_equal(b.p, PETER_VKEY, b.len);
    tdsx_buf_reset(&b);
    /* Ed25519 is deterministic: the same key and text give Go's exact bytes. */
    assert_int_equal(tdsx_note_sign(str(GO_TEXT), (const tdsx_note_signer_t *const *)&s, 1, &b), 0);
    assert_int_equal(b.len, strlen(GO_NOTE));
    assert_memory_equal(b.p, GO_NOTE, b.len);
    tdsx_buf_free(&b);
    tdsx_note_signer_free(s);
}

static void published_key_ids_match(void **state)
{
    (void)state;
    tdsx_note_verifier_t w = vkey(REMORA_VKEY), t = vkey(TEST_VKEY);
    assert_int_equal(w.type, TDSX_NOTE_COSIG);
    assert_int_equal(w.key_id, 0xda77ade7u);
    assert_int_equal(t.type, TDSX_NOTE_ED25519);
    assert_int_equal(t.key_id, 0x7997405cu);
    /* The same public key under the other type gets another ID (domain separation). */
    uint32_t other;
    assert_int_equal(tdsx_note_key_id(str("remora.n621.de"), TDSX_NOTE_ED25519, w.pk, &other), 0);
    assert_int_not_equal(other, w.key_id);
}

static void unknown_signers_are_ignored(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY), enoch = vkey(ENOCH_VKEY);
    const char *two = GO_TEXT "\n" PETER_SIG ENOCH_SIG "\xe2\x80\x94 Someone AAAAAAAA\n";
    tdsx_note_t *n = NULL;
    assert_int_equal(tdsx_note_open(str(two), &peter, 1, &n), 0);
    assert_int_equal(tdsx_note_sig_count(n), 3);
    assert_true(tdsx_note_sig(n, 0)->verified);
    assert_false(tdsx_note_sig(n, 1)->verified);
    assert_false(tdsx_note_sig(n, 2)->verified);
    assert_null(tdsx_note_verified_by(n, &enoch));
    tdsx_note_free(n);

    tdsx_note_verifier_t both[2] = {peter, enoch};
    assert_int_equal(tdsx_note_open(str(two), both, 2, &n), 0);
    assert_non_null(tdsx_note_verified_by(n, &peter));
    assert_non_null(tdsx_note_verified_by(n, &enoch));
    tdsx_note_free(n);
}

static void several_signers_and_limits_at_the_cap(void **state)
{
    (void)state;
    tdsx_note_signer_t *s[TDSX_NOTE_SIGS_MAX];
    tdsx_note_verifier_t v[TDSX_NOTE_SIGS_MAX];
    for (size_t i = 0; i < TDSX_NOTE_SIGS_MAX; i++) {
        char name[32];
        snprintf(name, sizeof name, "signer.example/%zu", i);
        s[i] = signer(name, TDSX_NOTE_ED25519, (uint8_t)(i + 1));
        v[i] = *tdsx_note_signer_verifier(s[i]);
    }
    /* TDSX_NOTE_LINES_MAX lines of text, TDSX_NOTE_SIGS_MAX signatures: accepted. */
    tdsx_buf_t text, note;
    tdsx_buf_init(&text, TDSX_NOTE_MAX);
    tdsx_buf_init(&note, TDSX_NOTE_MAX);
    for (size_t i = 0; i < TDSX_NOTE_LINES_MAX; i++)
        assert_int_equal(tdsx_buf_printf(&text, "line %zu\n", i), 0);
    assert_int_equal(tdsx_note_sign(tdsx_buf_bytes(&text), (const tdsx_note_signer_t *const *)s,
                                    TDSX_NOTE_SIGS_MAX, &note),
                     0);
    tdsx_note_t *n = NULL;
    assert_int_equal(tdsx_note_open(tdsx_buf_bytes(&note), v, TDSX_NOTE_SIGS_MAX, &n), 0);
    assert_int_equal(tdsx_note_sig_count(n), TDSX_NOTE_SIGS_MAX);
    for (size_t i = 0; i < TDSX_NOTE_SIGS_MAX; i++)
        assert_ptr_equal(tdsx_note_verified_by(n, &v[i]), tdsx_note_sig(n, i));
    tdsx_note_free(n);
    /* Any one of the keys is enough. */
    assert_int_equal(open_rc(note.p, note.len, &v[TDSX_NOTE_SIGS_MAX - 1], 1), 0);
    tdsx_buf_free(&text);
    tdsx_buf_free(&note);
    for (size_t i = 0; i < TDSX_NOTE_SIGS_MAX; i++)
        tdsx_note_signer_free(s[i]);
}

static void checkpoint_round_trip(void **state)
{
    (void)state;
    tdsx_checkpoint_t cp;
    assert_int_equal(tdsx_checkpoint_parse(str(C2SP_CHECKPOINT), &cp), 0);
    assert_int_equal(cp.origin.n, strlen("example.com/behind-the-sofa"));
    assert_memory_equal(cp.origin.p, "example.com/behind-the-sofa", cp.origin.n);
    assert_int_equal(cp.size, 20852163);
    assert_int_equal(cp.extensions.n, 0);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), 0);
    assert_int_equal(b.len, strlen(C2SP_CHECKPOINT));
    assert_memory_equal(b.p, C2SP_CHECKPOINT, b.len);
    tdsx_buf_free(&b);

    tdsx_note_signer_t *log = signer(ORIGIN, TDSX_NOTE_ED25519, 7);
    tdsx_buf_t signed_cp = signed_checkpoint(log, 0, "ext one\next two\n");
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t got;
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&signed_cp),
                                          tdsx_note_signer_verifier(log), NULL, 0, ORIGIN, &n,
                                          &got),
                     0);
    assert_int_equal(got.size, 0);
    assert_int_equal(got.root.b[1], 1);
    assert_int_equal(got.extensions.n, strlen("ext one\next two\n"));
    assert_memory_equal(got.extensions.p, "ext one\next two\n", got.extensions.n);
    /* Sizes up to 2^64-1 survive the decimal form. */
    tdsx_buf_free(&signed_cp);
    tdsx_note_free(n);
    signed_cp = signed_checkpoint(log, UINT64_MAX, NULL);
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&signed_cp),
                                          tdsx_note_signer_verifier(log), NULL, 0, NULL, &n, &got),
                     0);
    assert_true(got.size == UINT64_MAX);
    tdsx_note_free(n);
    tdsx_buf_free(&signed_cp);
    tdsx_note_signer_free(log);
}

static void cosignature_round_trip(void **state)
{
    (void)state;
    tdsx_note_signer_t *log = signer(ORIGIN, TDSX_NOTE_ED25519, 7);
    tdsx_note_signer_t *wit = signer(WITNESS, TDSX_NOTE_COSIG, 9);
    tdsx_buf_t cp = signed_checkpoint(log, 42, NULL), co, co2;
    tdsx_buf_init(&co, TDSX_NOTE_MAX);
    tdsx_buf_init(&co2, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), wit, 1679315147, &co), 0);
    /* The log's line is kept byte for byte, the cosignature follows it. */
    assert_memory_equal(co.p, cp.p, cp.len);

    const tdsx_note_verifier_t *lk = tdsx_note_signer_verifier(log);
    const tdsx_note_verifier_t *wk = tdsx_note_signer_verifier(wit);
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t got;
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&co), lk, wk, 1, ORIGIN, &n, &got), 0);
    assert_int_equal(got.size, 42);
    const tdsx_note_sig_t *ws = tdsx_note_verified_by(n, wk);
    assert_non_null(ws);
    assert_int_equal(ws->timestamp, 1679315147);
    assert_int_equal(ws->sig.n, 72);

    /* Independently of note.c: the signature is Ed25519 over the cosignature/v1 message. */
    tdsx_bytes_t text = tdsx_note_text(n);
    tdsx_buf_t m;
    tdsx_buf_init(&m, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_buf_append_str(&m, "cosignature/v1\ntime 1679315147\n"), 0);
    assert_int_equal(tdsx_buf_append(&m, text.p, text.n), 0);
    assert_int_equal(crypto_sign_verify_detached(ws->sig.p + 8, m.p, m.len, wk->pk), 0);
    uint8_t ts[8] = {0, 0, 0, 0, 0x64, 0x18, 0x50, 0xcb}; /* 1679315147 big-endian */
    assert_memory_equal(ws->sig.p, ts, 8);
    tdsx_buf_free(&m);
    tdsx_note_free(n);

    /* Cosigning again replaces the witness's earlier line instead of adding one. */
    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&co), wit, 1700000000, &co2), 0);
    assert_int_equal(tdsx_note_open(tdsx_buf_bytes(&co2), wk, 1, &n), 0);
    assert_int_equal(tdsx_note_sig_count(n), 2);
    assert_int_equal(tdsx_note_verified_by(n, wk)->timestamp, 1700000000);
    tdsx_note_free(n);

    tdsx_buf_free(&cp);
    tdsx_buf_free(&co);
    tdsx_buf_free(&co2);
    tdsx_note_signer_free(log);
    tdsx_note_signer_free(wit);
}

/* ---- negative ------------------------------------------------------------------------------ */

static void any_changed_or_missing_byte_fails(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY);
    size_t n = strlen(GO_NOTE);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, GO_NOTE, n);
        buf[i] = (uint8_t)(buf[i] + 1);
        assert_int_not_equal(open_rc(buf, n, &peter, 1), 0);
        buf[i] = (uint8_t)(buf[i] ^ 0x40);
        assert_int_not_equal(open_rc(buf, n, &peter, 1), 0);
        /* Byte i removed. */
        memcpy(buf, GO_NOTE, i);
        memcpy(buf + i, &GO_NOTE[i + 1], n - i - 1);
        assert_int_not_equal(open_rc(buf, n - 1, &peter, 1), 0);
    }
    free(buf);
}

static void mangled_verifier_keys_fail(void **state)
{
    (void)state;
    const char *k = PETER_VKEY;
    size_t n = strlen(k);
    char buf[128];
    tdsx_note_verifier_t v;
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i + 1; j <= n; j++)
            if (i != 0 || j != n)
                assert_int_equal(tdsx_note_verifier_parse(tdsx_bytes(k + i, j - i), &v),
                                 TDSX_E_KEY);
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, k, n);
        buf[i]++;
        assert_int_equal(tdsx_note_verifier_parse(tdsx_bytes(buf, n), &v), TDSX_E_KEY);
    }
    /* Go's: wrong key length and unknown algorithm, each with a matching key hash. */
    assert_int_equal(
        tdsx_note_verifier_parse(
            str("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="), &v),
        TDSX_E_KEY);
    assert_int_equal(
        tdsx_note_verifier_parse(
            str("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"), &v),
        TDSX_E_KEY);
    /* A non-ASCII byte pair in place of the last two base64 letters. */
    memcpy(buf, k, n);
    buf[n - 2] = (char)0xc9;
    buf[n - 1] = (char)0xb9;
    assert_int_equal(tdsx_note_verifier_parse(tdsx_bytes(buf, n), &v), TDSX_E_KEY);
    /* Trailing garbage, a name with a space, an oversize string. */
    assert_int_equal(tdsx_note_verifier_parse(str(PETER_VKEY "="), &v), TDSX_E_KEY);
    assert_int_equal(tdsx_note_verifier_parse(str(PETER_VKEY " "), &v), TDSX_E_KEY);
    char big[TDSX_NOTE_VKEY_MAX + 2];
    memset(big, 'a', sizeof big);
    assert_int_equal(tdsx_note_verifier_parse(tdsx_bytes(big, sizeof big), &v), TDSX_E_KEY);
}

static void mangled_signer_keys_fail(void **state)
{
    (void)state;
    const char *k = PETER_SKEY;
    size_t n = strlen(k);
    char buf[128];
    tdsx_note_signer_t *s = NULL;
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i + 1; j <= n; j++) {
            if (i == 0 && j == n)
                continue;
            assert_int_equal(tdsx_note_signer_parse(tdsx_bytes(k + i, j - i), &s), TDSX_E_KEY);
            assert_null(s);
        }
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, k, n);
        buf[i]++;
        assert_int_equal(tdsx_note_signer_parse(tdsx_bytes(buf, n), &s), TDSX_E_KEY);
        assert_null(s);
    }
    /* A verifier key is not a signer key, and the reverse. */
    assert_int_equal(tdsx_note_signer_parse(str(PETER_VKEY), &s), TDSX_E_KEY);
    tdsx_note_verifier_t v;
    assert_int_equal(tdsx_note_verifier_parse(str(PETER_SKEY), &v), TDSX_E_KEY);
}

static void malformed_notes_fail(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY);
    static const struct {
        const char *msg;
        int rc;
    } bad[] = {
        /* Go's list. */
        {GO_TEXT, TDSX_E_NOTE_FORMAT},
        {GO_TEXT "\n", TDSX_E_NOTE_FORMAT},
        {GO_TEXT "\n"
                 "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGU"
                 "gYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
         TDSX_E_NOTE_FORMAT},
        {"\x01" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT},
        {"\xff" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT},
        {GO_TEXT "\n"
                 "\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1"
                 "FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
         TDSX_E_NOTE_FORMAT},
        {GO_TEXT "\n" PETER_SIG "Unexpected line.\n", TDSX_E_NOTE_FORMAT},
        /* Ours. */
        {GO_TEXT "\n" PETER_SIG "\n", TDSX_E_NOTE_FORMAT},           /* blank after sigs */
        {GO_TEXT "\n- PeterNeumann AAAAAAAA\n", TDSX_E_NOTE_FORMAT}, /* hyphen, not em dash */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann AAAAAA==\n", TDSX_E_NOTE_FORMAT},  /* 4 bytes */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann AAAAAAB=\n", TDSX_E_NOTE_FORMAT},  /* stray bits */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann AAAA AAAA\n", TDSX_E_NOTE_FORMAT}, /* space */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann A\xc9\xb9"
                 "AAAA=\n",
         TDSX_E_NOTE_FORMAT},                                                     /* U+0279 */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann AAAAAA=A\n", TDSX_E_NOTE_FORMAT},   /* inner = */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann AAAAAAAA\r\n", TDSX_E_NOTE_FORMAT}, /* CR */
        {GO_TEXT "\n\xe2\x80\x94 Peter+Neumann AAAAAAAA\n", TDSX_E_NOTE_FORMAT},  /* '+' */
        {GO_TEXT "\n\xe2\x80\x94 Peter\xc2\xa0Neumann AAAAAAAA\n", TDSX_E_NOTE_FORMAT}, /* NBSP */
        {GO_TEXT "\n\xe2\x80\x94 Peter\xe3\x80\x80X AAAAAAAA\n", TDSX_E_NOTE_FORMAT},   /* U+3000 */
        {GO_TEXT "\n\xe2\x80\x94  AAAAAAAA\n", TDSX_E_NOTE_FORMAT}, /* empty name */
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann\n", TDSX_E_NOTE_FORMAT},
        {GO_TEXT "\n\xe2\x80\x94 PeterNeumann \n", TDSX_E_NOTE_FORMAT},
        {"\xc0\xaf" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT},         /* overlong '/' */
        {"\xed\xa0\x80" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT},     /* surrogate */
        {"\xf4\x90\x80\x80" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT}, /* > U+10FFFF */
        {"\xe2\x80" GO_TEXT "\n" PETER_SIG, TDSX_E_NOTE_FORMAT},         /* truncated */
        {"tab\there\n\n" PETER_SIG, TDSX_E_NOTE_FORMAT},
        {"", TDSX_E_NOTE_FORMAT},
        {"\n\n", TDSX_E_NOTE_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tdsx_note_t *n = NULL;
        int rc = tdsx_note_parse(str(bad[i].msg), &n);
        if (rc != bad[i].rc)
            fail_msg("bad[%zu]: parse gave %s", i, tdsx_err_name(rc));
        assert_null(n);
        assert_int_equal(open_rc(bad[i].msg, strlen(bad[i].msg), &peter, 1), bad[i].rc);
    }
}

static void limits_refuse_with_their_codes(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 2 * TDSX_NOTE_MAX);

    /* One byte over the size cap, in an otherwise valid note. */
    size_t fill = TDSX_NOTE_MAX - strlen(GO_NOTE) + 1;
    assert_int_equal(tdsx_buf_append_str(&b, "x"), 0);
    for (size_t i = 1; i < fill - 1; i++)
        assert_int_equal(tdsx_buf_append(&b, "y", 1), 0);
    assert_int_equal(tdsx_buf_append_str(&b, "\n" GO_NOTE), 0);
    assert_int_equal(b.len, TDSX_NOTE_MAX + 1);
    assert_int_equal(open_rc(b.p, b.len, &peter, 1), TDSX_E_NOTE_TOOBIG);

    /* One line too many. */
    tdsx_buf_reset(&b);
    for (size_t i = 0; i < TDSX_NOTE_LINES_MAX - 1; i++)
        assert_int_equal(tdsx_buf_append_str(&b, "l\n"), 0);
    assert_int_equal(tdsx_buf_append_str(&b, GO_NOTE), 0);
    assert_int_equal(open_rc(b.p, b.len, &peter, 1), TDSX_E_NOTE_LINES);

    /* One signature too many (the extra lines are copies of a valid one). */
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_buf_append_str(&b, GO_NOTE), 0);
    for (size_t i = 0; i < TDSX_NOTE_SIGS_MAX; i++)
        assert_int_equal(tdsx_buf_append_str(&b, PETER_SIG), 0);
    assert_int_equal(open_rc(b.p, b.len, &peter, 1), TDSX_E_NOTE_SIGS);
    assert_int_equal(open_rc(b.p, b.len, NULL, 0), TDSX_E_NOTE_SIGS);

    /* Signing refuses the same limits. */
    tdsx_note_signer_t *s = signer(ORIGIN, TDSX_NOTE_ED25519, 3);
    tdsx_buf_t out;
    tdsx_buf_init(&out, 4 * TDSX_NOTE_MAX);
    tdsx_buf_reset(&b);
    for (size_t i = 0; i <= TDSX_NOTE_LINES_MAX; i++)
        assert_int_equal(tdsx_buf_append_str(&b, "l\n"), 0);
    assert_int_equal(
        tdsx_note_sign(tdsx_buf_bytes(&b), (const tdsx_note_signer_t *const *)&s, 1, &out),
        TDSX_E_NOTE_LINES);
    tdsx_buf_reset(&b);
    for (size_t i = 0; i < TDSX_NOTE_MAX - 10; i++)
        assert_int_equal(tdsx_buf_append(&b, "z", 1), 0);
    assert_int_equal(tdsx_buf_append_str(&b, "\n"), 0);
    assert_int_equal(
        tdsx_note_sign(tdsx_buf_bytes(&b), (const tdsx_note_signer_t *const *)&s, 1, &out),
        TDSX_E_NOTE_TOOBIG);
    const tdsx_note_signer_t *many[TDSX_NOTE_SIGS_MAX + 1];
    for (size_t i = 0; i <= TDSX_NOTE_SIGS_MAX; i++)
        many[i] = s;
    assert_int_equal(tdsx_note_sign(str("t\n"), many, TDSX_NOTE_SIGS_MAX + 1, &out),
                     TDSX_E_NOTE_SIGS);
    assert_int_equal(out.len, 0);
    tdsx_buf_free(&out);
    tdsx_buf_free(&b);
    tdsx_note_signer_free(s);
}

static void no_trusted_signature_is_unverified(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY), enoch = vkey(ENOCH_VKEY);
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), NULL, 0), TDSX_E_NOTE_UNVERIFIED);
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), &enoch, 1), TDSX_E_NOTE_UNVERIFIED);
    /* Same name, other key ID; same key ID, other name: both unknown keys, not failures. */
    tdsx_note_verifier_t other_id = peter, other_name = peter;
    other_id.key_id ^= 1;
    memcpy(other_name.name, "PeterNeumanN", 12);
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), &other_id, 1), TDSX_E_NOTE_UNVERIFIED);
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), &other_name, 1), TDSX_E_NOTE_UNVERIFIED);
}

static void bad_signature_by_a_trusted_key_refuses_the_note(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY), enoch = vkey(ENOCH_VKEY);
    /* Go's "Invalid signature": four characters spliced into Peter's base64. */
    char sig[sizeof PETER_SIG + 4];
    size_t cut = 60;
    memcpy(sig, PETER_SIG, cut);
    memcpy(sig + cut, "ABCD", 4);
    memcpy(sig + cut + 4, &PETER_SIG[cut], sizeof PETER_SIG - cut);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 4096);
    assert_int_equal(tdsx_buf_append_str(&b, GO_TEXT "\n"), 0);
    assert_int_equal(tdsx_buf_append_str(&b, sig), 0);
    assert_int_equal(open_rc(b.p, b.len, &peter, 1), TDSX_E_SIG_INVALID);
    /* A good signature by another trusted key does not rescue it. */
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_buf_append_str(&b, GO_TEXT "\n" ENOCH_SIG), 0);
    assert_int_equal(tdsx_buf_append_str(&b, sig), 0);
    tdsx_note_verifier_t both[2] = {enoch, peter};
    assert_int_equal(open_rc(b.p, b.len, both, 2), TDSX_E_SIG_INVALID);
    /* Nor does a good copy of the same signature before it. */
    tdsx_buf_reset(&b);
    assert_int_equal(tdsx_buf_append_str(&b, GO_NOTE), 0);
    assert_int_equal(tdsx_buf_append_str(&b, sig), 0);
    assert_int_equal(open_rc(b.p, b.len, &peter, 1), TDSX_E_SIG_INVALID);
    /* A trusted key with the right name and ID but another public key. */
    tdsx_note_verifier_t forged = peter;
    memcpy(forged.pk, enoch.pk, sizeof forged.pk);
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), &forged, 1), TDSX_E_SIG_INVALID);
    tdsx_buf_free(&b);
}

static void ambiguous_trusted_keys_are_refused(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY), enoch = vkey(ENOCH_VKEY);
    tdsx_note_verifier_t twin = peter;
    memcpy(twin.pk, enoch.pk, sizeof twin.pk);
    tdsx_note_verifier_t keys[2] = {peter, twin};
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), keys, 2), TDSX_E_DUPLICATE);
    /* The same key listed twice is not ambiguous. */
    keys[1] = peter;
    assert_int_equal(open_rc(GO_NOTE, strlen(GO_NOTE), keys, 2), 0);
}

static void signing_refuses_bad_text_and_keys(void **state)
{
    (void)state;
    tdsx_note_signer_t *s = signer(ORIGIN, TDSX_NOTE_ED25519, 3);
    tdsx_note_signer_t *w = signer(WITNESS, TDSX_NOTE_COSIG, 4);
    const tdsx_note_signer_t *one[1] = {s}, *two[2] = {s, s}, *cos[1] = {w};
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_note_sign(str("no newline"), one, 1, &out), TDSX_E_NOTE_FORMAT);
    assert_int_equal(tdsx_note_sign(str("bell\a\n"), one, 1, &out), TDSX_E_NOTE_FORMAT);
    assert_int_equal(tdsx_note_sign(str("\xff\n"), one, 1, &out), TDSX_E_NOTE_FORMAT);
    assert_int_equal(tdsx_note_sign(str(""), one, 1, &out), TDSX_E_NOTE_FORMAT);
    /* A text shaped like a cosignature message would let this key's signature pass for one. */
    assert_int_equal(tdsx_note_sign(str("cosignature/v1\ntime 1\n" C2SP_CHECKPOINT), one, 1, &out),
                     TDSX_E_NOTE_FORMAT);
    assert_int_equal(tdsx_note_sign(str("t\n"), cos, 1, &out), TDSX_E_KEY);
    assert_int_equal(tdsx_note_sign(str("t\n"), two, 2, &out), TDSX_E_DUPLICATE);
    assert_int_equal(tdsx_note_sign(str("t\n"), one, 0, &out), TDSX_E_INVAL);
    assert_int_equal(out.len, 0);
    /* Bad names and types for new keys. */
    uint8_t seed[TDSX_ED25519_SEED_LEN] = {1};
    tdsx_note_signer_t *x = NULL;
    assert_int_equal(tdsx_note_signer_new("a b", TDSX_NOTE_ED25519, seed, &x), TDSX_E_INVAL);
    assert_int_equal(tdsx_note_signer_new("a+b", TDSX_NOTE_ED25519, seed, &x), TDSX_E_INVAL);
    assert_int_equal(tdsx_note_signer_new("", TDSX_NOTE_ED25519, seed, &x), TDSX_E_INVAL);
    assert_int_equal(tdsx_note_signer_new("ok", 0x02, seed, &x), TDSX_E_INVAL);
    assert_null(x);
    /* A public key that is not a usable point (all zeros is of small order). */
    tdsx_note_verifier_t v;
    uint8_t zero[TDSX_ED25519_PK_LEN] = {0};
    assert_int_equal(tdsx_note_verifier_init(&v, "ok", TDSX_NOTE_ED25519, zero), TDSX_E_KEY);
    tdsx_buf_free(&out);
    tdsx_note_signer_free(s);
    tdsx_note_signer_free(w);
}

static void malformed_checkpoints_fail(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "origin\n",
        "origin\n5\n",
        "origin\n5\nAAAA\n",                                     /* root too short */
        "\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",   /* empty origin */
        "o\n05\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* leading zero */
        "o\n+5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* sign */
        "o\n-5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n5 \nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* 2^64 */
        "o\n0x5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",      /* empty size */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",     /* stray bits */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",      /* no padding */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=AAAA\n", /* 35 bytes */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",   /* empty extension */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\next\n\n",
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\next", /* no final newline */
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
        "o\x01\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", /* control character */
    };
    /* Base64 with a non-ASCII letter of the same length (libsodium 1.0.18 would take it). */
    tdsx_checkpoint_t cp;
    assert_int_equal(tdsx_checkpoint_parse(
                         str("o\n5\nC\xc9\xb9YapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"), &cp),
                     TDSX_E_CHECKPOINT);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tdsx_checkpoint_parse(str(bad[i]), &cp);
        if (rc != TDSX_E_CHECKPOINT)
            fail_msg("bad[%zu] gave %s", i, tdsx_err_name(rc));
    }
    /* An origin over the cap; formatting refuses what would not parse back. */
    char origin[TDSX_NOTE_NAME_MAX + 2];
    memset(origin, 'o', sizeof origin);
    cp = (tdsx_checkpoint_t){tdsx_bytes(origin, sizeof origin), 1, {{0}}, tdsx_bytes(NULL, 0)};
    tdsx_buf_t b;
    tdsx_buf_init(&b, 4096);
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), TDSX_E_CHECKPOINT);
    cp.origin = str("two\nlines");
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), TDSX_E_CHECKPOINT);
    cp.origin = str("");
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), TDSX_E_CHECKPOINT);
    cp.origin = str("o");
    cp.extensions = str("no newline");
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), TDSX_E_CHECKPOINT);
    cp.extensions = str("a\n\nb\n");
    assert_int_equal(tdsx_checkpoint_format(&cp, &b), TDSX_E_CHECKPOINT);
    assert_int_equal(b.len, 0);
    tdsx_buf_free(&b);
}

static void signed_checkpoint_tampering_fails(void **state)
{
    (void)state;
    tdsx_note_signer_t *log = signer(ORIGIN, TDSX_NOTE_ED25519, 7);
    tdsx_note_signer_t *wit = signer(WITNESS, TDSX_NOTE_COSIG, 9);
    const tdsx_note_verifier_t *lk = tdsx_note_signer_verifier(log);
    const tdsx_note_verifier_t *wk = tdsx_note_signer_verifier(wit);
    tdsx_buf_t cp = signed_checkpoint(log, 300, "ext\n"), co;
    tdsx_buf_init(&co, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), wit, 1700000000, &co), 0);
    uint8_t *buf = malloc(co.len);
    assert_non_null(buf);
    for (size_t i = 0; i < co.len; i++) {
        memcpy(buf, co.p, co.len);
        buf[i] = (uint8_t)(buf[i] + 1);
        tdsx_note_t *n = NULL;
        tdsx_checkpoint_t got;
        int rc = tdsx_checkpoint_open(tdsx_bytes(buf, co.len), lk, wk, 1, ORIGIN, &n, &got);
        if (rc == 0) {
            /* Only a change inside the witness's line can leave the log's signature intact, and
             * then the cosignature must be gone (unknown name) or the open must fail. */
            assert_true(i >= cp.len);
            assert_null(tdsx_note_verified_by(n, wk));
        }
        tdsx_note_free(n);
        /* With the witness required, every change fails. */
        assert_int_not_equal(open_rc(buf, co.len, wk, 1) == 0 && open_rc(buf, co.len, lk, 1) == 0,
                             1);
    }
    free(buf);

    /* The witness alone does not make a checkpoint valid; nor does another origin. */
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t got;
    tdsx_note_verifier_t other;
    tdsx_note_signer_t *stranger = signer(ORIGIN, TDSX_NOTE_ED25519, 8);
    other = *tdsx_note_signer_verifier(stranger);
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&co), &other, wk, 1, NULL, &n, &got),
                     TDSX_E_NOTE_UNVERIFIED);
    assert_int_equal(
        tdsx_checkpoint_open(tdsx_buf_bytes(&co), lk, NULL, 0, "other/origin", &n, &got),
        TDSX_E_CHECKPOINT);
    assert_null(n);
    /* A log-signed note that is not a checkpoint. */
    tdsx_buf_t plain = sign_text("not\na checkpoint\n", log);
    assert_int_equal(tdsx_checkpoint_open(tdsx_buf_bytes(&plain), lk, NULL, 0, NULL, &n, &got),
                     TDSX_E_CHECKPOINT);
    tdsx_buf_free(&plain);
    tdsx_buf_free(&cp);
    tdsx_buf_free(&co);
    tdsx_note_signer_free(log);
    tdsx_note_signer_free(wit);
    tdsx_note_signer_free(stranger);
}

static void cosignature_misuse_fails(void **state)
{
    (void)state;
    tdsx_note_signer_t *log = signer(ORIGIN, TDSX_NOTE_ED25519, 7);
    tdsx_note_signer_t *wit = signer(WITNESS, TDSX_NOTE_COSIG, 9);
    tdsx_note_signer_t *wit_as_note = signer(WITNESS, TDSX_NOTE_ED25519, 9);
    const tdsx_note_verifier_t *wk = tdsx_note_signer_verifier(wit);
    tdsx_buf_t cp = signed_checkpoint(log, 5, NULL), out;
    tdsx_buf_init(&out, TDSX_NOTE_MAX);

    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), log, 1, &out), TDSX_E_KEY);
    assert_int_equal(
        tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), wit, (uint64_t)INT64_MAX + 1, &out),
        TDSX_E_COSIGNATURE);
    tdsx_buf_t plain = sign_text("not a checkpoint\n", log);
    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&plain), wit, 1, &out),
                     TDSX_E_CHECKPOINT);
    assert_int_equal(out.len, 0);

    /* The same Ed25519 key used as a plain note key: its key ID differs, so its line is not a
     * cosignature (ignored), and a line under the cosigner's name and ID with a plain 64-byte
     * signature is malformed for a cosignature. */
    tdsx_buf_t plain_by_wit = sign_text(C2SP_CHECKPOINT, wit_as_note);
    assert_int_equal(open_rc(plain_by_wit.p, plain_by_wit.len, wk, 1), TDSX_E_NOTE_UNVERIFIED);
    tdsx_note_t *n = NULL;
    assert_int_equal(tdsx_note_parse(tdsx_buf_bytes(&plain_by_wit), &n), 0);
    uint8_t raw[4 + TDSX_ED25519_SIG_LEN];
    raw[0] = (uint8_t)(wk->key_id >> 24), raw[1] = (uint8_t)(wk->key_id >> 16);
    raw[2] = (uint8_t)(wk->key_id >> 8), raw[3] = (uint8_t)wk->key_id;
    memcpy(raw + 4, tdsx_note_sig(n, 0)->sig.p, TDSX_ED25519_SIG_LEN);
    tdsx_note_free(n);
    char b64[128];
    sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
    tdsx_buf_t forged;
    tdsx_buf_init(&forged, 4096);
    assert_int_equal(
        tdsx_buf_printf(&forged, "%s\n\xe2\x80\x94 %s %s\n", C2SP_CHECKPOINT, WITNESS, b64), 0);
    assert_int_equal(open_rc(forged.p, forged.len, wk, 1), TDSX_E_COSIGNATURE);

    /* A timestamp over 2^63-1 in an otherwise well-formed line. */
    uint8_t big[4 + 72] = {0};
    memcpy(big, raw, 4);
    big[4] = 0x80;
    sodium_bin2base64(b64, sizeof b64, big, sizeof big, sodium_base64_VARIANT_ORIGINAL);
    tdsx_buf_reset(&forged);
    assert_int_equal(
        tdsx_buf_printf(&forged, "%s\n\xe2\x80\x94 %s %s\n", C2SP_CHECKPOINT, WITNESS, b64), 0);
    assert_int_equal(open_rc(forged.p, forged.len, wk, 1), TDSX_E_COSIGNATURE);

    /* A cosignature moved to another checkpoint, or with its time changed, fails. */
    assert_int_equal(tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), wit, 1000, &out), 0);
    tdsx_buf_t cp6 = signed_checkpoint(log, 6, NULL);
    tdsx_buf_t moved;
    tdsx_buf_init(&moved, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_buf_append(&moved, cp6.p, cp6.len), 0);
    assert_int_equal(tdsx_buf_append(&moved, out.p + cp.len, out.len - cp.len), 0);
    assert_int_equal(open_rc(moved.p, moved.len, wk, 1), TDSX_E_SIG_INVALID);

    tdsx_buf_free(&moved);
    tdsx_buf_free(&cp6);
    tdsx_buf_free(&forged);
    tdsx_buf_free(&plain_by_wit);
    tdsx_buf_free(&plain);
    tdsx_buf_free(&cp);
    tdsx_buf_free(&out);
    tdsx_note_signer_free(log);
    tdsx_note_signer_free(wit);
    tdsx_note_signer_free(wit_as_note);
}

static void allocation_failures_are_reported(void **state)
{
    (void)state;
    tdsx_note_verifier_t peter = vkey(PETER_VKEY);
    tdsx_note_signer_t *log = signer(ORIGIN, TDSX_NOTE_ED25519, 7);
    tdsx_note_signer_t *wit = signer(WITNESS, TDSX_NOTE_COSIG, 9);
    tdsx_buf_t cp = signed_checkpoint(log, 5, NULL);
    const tdsx_note_verifier_t *lk = tdsx_note_signer_verifier(log);
    for (unsigned long k = 1; k < 12; k++) {
        tdsx_note_t *n = NULL;
        tdsx_checkpoint_t got;
        tdsx_buf_t out;
        tdsx_buf_init(&out, TDSX_NOTE_MAX);
        tdsx_test_alloc_fail_after(k);
        int a = tdsx_note_open(str(GO_NOTE), &peter, 1, &n);
        tdsx_test_alloc_reset();
        assert_true(a == 0 || a == TDSX_E_NOMEM);
        tdsx_note_free(n);
        n = NULL;
        tdsx_test_alloc_fail_after(k);
        int b = tdsx_checkpoint_open(tdsx_buf_bytes(&cp), lk, NULL, 0, ORIGIN, &n, &got);
        tdsx_test_alloc_reset();
        assert_true(b == 0 || b == TDSX_E_NOMEM);
        tdsx_note_free(n);
        tdsx_test_alloc_fail_after(k);
        int c = tdsx_checkpoint_cosign(tdsx_buf_bytes(&cp), wit, 7, &out);
        tdsx_test_alloc_reset();
        assert_true(c == 0 || c == TDSX_E_NOMEM);
        if (c < 0)
            assert_int_equal(out.len, 0);
        tdsx_buf_free(&out);
    }
    tdsx_buf_free(&cp);
    tdsx_note_signer_free(log);
    tdsx_note_signer_free(wit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(go_vector_verifies),
        cmocka_unit_test(go_signer_key_reproduces_the_note),
        cmocka_unit_test(published_key_ids_match),
        cmocka_unit_test(unknown_signers_are_ignored),
        cmocka_unit_test(several_signers_and_limits_at_the_cap),
        cmocka_unit_test(checkpoint_round_trip),
        cmocka_unit_test(cosignature_round_trip),
        cmocka_unit_test(any_changed_or_missing_byte_fails),
        cmocka_unit_test(mangled_verifier_keys_fail),
        cmocka_unit_test(mangled_signer_keys_fail),
        cmocka_unit_test(malformed_notes_fail),
        cmocka_unit_test(limits_refuse_with_their_codes),
        cmocka_unit_test(no_trusted_signature_is_unverified),
        cmocka_unit_test(bad_signature_by_a_trusted_key_refuses_the_note),
        cmocka_unit_test(ambiguous_trusted_keys_are_refused),
        cmocka_unit_test(signing_refuses_bad_text_and_keys),
        cmocka_unit_test(malformed_checkpoints_fail),
        cmocka_unit_test(signed_checkpoint_tampering_fails),
        cmocka_unit_test(cosignature_misuse_fails),
        cmocka_unit_test(allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
