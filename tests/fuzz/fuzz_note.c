/*
 * fuzz_note.c — signed notes, checkpoints, cosignatures and note keys on arbitrary bytes.
 *
 * The input is tried as all of these at once:
 *   - a signed note: parse and open (with the golang.org/x/mod/sumdb/note PeterNeumann key, a
 *     log key and a witness key) give only documented results; what parses keeps its shape
 *     (text ends in a newline, every line points inside the note, an opened note has a verified
 *     line, and a parsed note re-serialises to the same bytes);
 *   - a checkpoint text, and the text of the note: what parses formats back to the same bytes;
 *   - when the note's text is a checkpoint: the witness cosigns it and the result opens with
 *     the witness key at the cosigned time;
 *   - a verifier key and a signer key string: what parses formats to a string that parses to
 *     the same key.
 * Seeds (corpus/note/): the sumdb note vectors, notes and checkpoints signed and cosigned by the
 * keys below, key strings, and malformed variants.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define PETER_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define LOG_NAME "91350100M000100Y43/node-a"
#define WITNESS_NAME "91350100M000100Y43/centre"

static tdsx_note_signer_t *log_key, *witness;
static tdsx_note_verifier_t keys[3];

static void setup(void)
{
    if (log_key)
        return;
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    memset(seed, 7, sizeof seed);
    check(tdsx_note_signer_new(LOG_NAME, TDSX_NOTE_ED25519, seed, &log_key) == 0);
    memset(seed, 9, sizeof seed);
    check(tdsx_note_signer_new(WITNESS_NAME, TDSX_NOTE_COSIG, seed, &witness) == 0);
    check(tdsx_note_verifier_parse(tdsx_bytes(PETER_VKEY, strlen(PETER_VKEY)), &keys[0]) == 0);
    keys[1] = *tdsx_note_signer_verifier(log_key);
    keys[2] = *tdsx_note_signer_verifier(witness);
}

static int parse_error(int rc)
{
    return rc == TDSX_E_NOTE_FORMAT || rc == TDSX_E_NOTE_TOOBIG || rc == TDSX_E_NOTE_LINES ||
           rc == TDSX_E_NOTE_SIGS;
}

static int within(tdsx_bytes_t inner, const uint8_t *p, size_t n)
{
    return inner.p >= p && inner.n <= n && (size_t)(inner.p - p) <= n - inner.n;
}

static void as_note(tdsx_bytes_t in)
{
    tdsx_note_t *n = NULL;
    int rc = tdsx_note_parse(in, &n);
    check(rc == 0 || parse_error(rc));
    if (rc == 0) {
        tdsx_bytes_t text = tdsx_note_text(n);
        size_t count = tdsx_note_sig_count(n);
        check(text.n > 0 && text.p[text.n - 1] == '\n' && text.n < in.n);
        check(count >= 1 && count <= TDSX_NOTE_SIGS_MAX);
        /* Text, the empty line and the signature lines are the whole note, byte for byte. */
        size_t total = text.n + 1;
        for (size_t i = 0; i < count; i++) {
            const tdsx_note_sig_t *s = tdsx_note_sig(n, i);
            check(s && !s->verified && s->sig.n >= 1);
            check(tdsx_note_name_valid(s->name));
            check(s->line.n > 0 && s->line.p[s->line.n - 1] == '\n');
            total += s->line.n;
        }
        check(total == in.n);
        check(memcmp(text.p, in.p, text.n) == 0);
        check(tdsx_note_sig(n, count) == NULL);

        tdsx_checkpoint_t cp;
        if (tdsx_checkpoint_parse(text, &cp) == 0) {
            tdsx_buf_t out;
            tdsx_buf_init(&out, TDSX_NOTE_MAX * 2);
            uint64_t ts = (uint64_t)in.n * 1000003u;
            rc = tdsx_checkpoint_cosign(in, witness, ts, &out);
            check(rc == 0 || rc == TDSX_E_NOTE_SIGS || rc == TDSX_E_NOTE_TOOBIG);
            if (rc == 0) {
                tdsx_note_t *co = NULL;
                check(tdsx_note_open(tdsx_buf_bytes(&out), &keys[2], 1, &co) == 0);
                const tdsx_note_sig_t *ws = tdsx_note_verified_by(co, &keys[2]);
                check(ws && ws->timestamp == ts);
                tdsx_note_free(co);
            }
            tdsx_buf_free(&out);
        }
        tdsx_note_free(n);
    }

    n = NULL;
    rc = tdsx_note_open(in, keys, 3, &n);
    check(rc == 0 || parse_error(rc) || rc == TDSX_E_SIG_INVALID || rc == TDSX_E_COSIGNATURE ||
          rc == TDSX_E_NOTE_UNVERIFIED);
    if (rc == 0) {
        size_t good = 0;
        for (size_t i = 0; i < tdsx_note_sig_count(n); i++)
            good += tdsx_note_sig(n, i)->verified;
        check(good >= 1);
        tdsx_note_free(n);
    } else {
        check(n == NULL);
    }
}

static void as_checkpoint(tdsx_bytes_t in)
{
    tdsx_checkpoint_t cp;
    int rc = tdsx_checkpoint_parse(in, &cp);
    check(rc == 0 || rc == TDSX_E_CHECKPOINT);
    if (rc < 0)
        return;
    check(within(cp.origin, in.p, in.n) && within(cp.extensions, in.p, in.n));
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_NOTE_MAX);
    check(tdsx_checkpoint_format(&cp, &out) == 0);
    /* One encoding per checkpoint: what parsed is what formats. */
    check(out.len == in.n && memcmp(out.p, in.p, in.n) == 0);
    tdsx_buf_free(&out);
}

static void as_keys(tdsx_bytes_t in)
{
    tdsx_note_verifier_t v, back;
    int rc = tdsx_note_verifier_parse(in, &v);
    check(rc == 0 || rc == TDSX_E_KEY);
    if (rc == 0) {
        tdsx_buf_t out;
        tdsx_buf_init(&out, TDSX_NOTE_VKEY_MAX);
        check(tdsx_note_verifier_format(&v, &out) == 0);
        check(out.len == in.n); /* only the hex digits' case may differ */
        check(tdsx_note_verifier_parse(tdsx_buf_bytes(&out), &back) == 0);
        check(back.name_len == v.name_len && strcmp(back.name, v.name) == 0);
        check(back.type == v.type && back.key_id == v.key_id);
        check(memcmp(back.pk, v.pk, sizeof v.pk) == 0);
        tdsx_buf_free(&out);
    }
    tdsx_note_signer_t *s = NULL;
    rc = tdsx_note_signer_parse(in, &s);
    check(rc == 0 || rc == TDSX_E_KEY);
    check((rc == 0) == (s != NULL));
    tdsx_note_signer_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    tdsx_bytes_t in = tdsx_bytes(data, size);
    as_note(in);
    as_checkpoint(in);
    as_keys(in);
    return 0;
}
