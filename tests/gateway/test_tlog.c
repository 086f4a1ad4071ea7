/* The transparency log store: proofs from tiles against a naive RFC 9162 model for every size
 * up to 300, the tlog-tiles files, reopening, crash recovery, and damaged files. */
#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "tlog.h"

#define ORIGIN "91350100M000100Y43/node-a"
#define MODEL_MAX 300

/* ---- a naive model: RFC 9162 §2.1 written as recursion over the leaf hashes ---------------- */

typedef struct model_s {
    size_t n;
    tdsx_hash_t leaf[MODEL_MAX];
    tdsx_hash_t *memo; /* MTH(D[lo:hi]) at lo * (MODEL_MAX + 1) + hi */
    uint8_t *have;
} model_t;

static void model_init(model_t *m)
{
    memset(m, 0, sizeof *m);
    m->memo = calloc((MODEL_MAX + 1) * (MODEL_MAX + 1), sizeof *m->memo);
    m->have = calloc((MODEL_MAX + 1) * (MODEL_MAX + 1), 1);
    assert_non_null(m->memo);
    assert_non_null(m->have);
}

static void model_free(model_t *m)
{
    free(m->memo);
    free(m->have);
}

static uint64_t largest_pow2_below(uint64_t n)
{
    uint64_t k = 1;
    while (2 * k < n)
        k *= 2;
    return k;
}

/* MTH(D[lo:hi]) by §2.1.1's definition. */
static tdsx_hash_t mth(model_t *m, size_t lo, size_t hi)
{
    size_t at = lo * (MODEL_MAX + 1) + hi;
    if (m->have[at])
        return m->memo[at];
    tdsx_hash_t h;
    if (hi == lo) {
        assert_int_equal(tdsx_sha256(NULL, 0, h.b), 0);
    } else if (hi - lo == 1) {
        h = m->leaf[lo];
    } else {
        size_t k = (size_t)largest_pow2_below(hi - lo);
        tdsx_hash_t l = mth(m, lo, lo + k), r = mth(m, lo + k, hi);
        assert_int_equal(tdsx_merkle_node_hash(&l, &r, &h), 0);
    }
    m->memo[at] = h;
    m->have[at] = 1;
    return h;
}

/* PATH(i, D[lo:hi]) of §2.1.3.1. */
static void path_of(model_t *m, size_t i, size_t lo, size_t hi, tdsx_hash_t *out, size_t *len)
{
    size_t n = hi - lo;
    if (n <= 1)
        return;
    size_t k = (size_t)largest_pow2_below(n);
    if (i < k) {
        path_of(m, i, lo, lo + k, out, len);
        out[(*len)++] = mth(m, lo + k, hi);
    } else {
        path_of(m, i - k, lo + k, hi, out, len);
        out[(*len)++] = mth(m, lo, lo + k);
    }
}

/* SUBPROOF(m, D[lo:hi], b) of §2.1.4.1. */
static void subproof(model_t *m, size_t k0, size_t lo, size_t hi, int b, tdsx_hash_t *out,
                     size_t *len)
{
    size_t n = hi - lo;
    if (k0 == n) {
        if (!b)
            out[(*len)++] = mth(m, lo, hi);
        return;
    }
    size_t k = (size_t)largest_pow2_below(n);
    if (k0 <= k) {
        subproof(m, k0, lo, lo + k, b, out, len);
        out[(*len)++] = mth(m, lo + k, hi);
    } else {
        subproof(m, k0 - k, lo + k, hi, 0, out, len);
        out[(*len)++] = mth(m, lo, lo + k);
    }
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Entry i: varied lengths, an empty one at 5, one at the 65535-byte cap at 77. */
static size_t entry_bytes(size_t i, uint8_t *buf)
{
    size_t len = i == 5 ? 0 : i == 77 ? TDSX_TLOG_ENTRY_MAX : 1 + (i * 37) % 300;
    for (size_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(i * 131 + k * 7 + 1);
    return len;
}

static uint8_t *entry_buf(void)
{
    uint8_t *b = malloc(TDSX_TLOG_ENTRY_MAX + 1);
    assert_non_null(b);
    return b;
}

static tdsx_note_signer_t *log_key(uint8_t fill)
{
    uint8_t seed[TDSX_ED25519_SEED_LEN];
    memset(seed, fill, sizeof seed);
    tdsx_note_signer_t *s = NULL;
    assert_int_equal(tdsx_note_signer_new(ORIGIN, TDSX_NOTE_ED25519, seed, &s), 0);
    return s;
}

typedef struct fixture_s {
    char *tmp;
    char *dir;
    tdsx_note_signer_t *key;
    tdsx_tlog_t *log;
    model_t model;
} fixture_t;

static fixture_t *fixture(void)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = tdsx_test_mkdtemp();
    f->dir = tdsx_test_path(f->tmp, "log");
    f->key = log_key(7);
    model_init(&f->model);
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    return f;
}

static void fixture_free(fixture_t *f)
{
    tdsx_tlog_close(f->log);
    tdsx_note_signer_free(f->key);
    model_free(&f->model);
    free(f->dir);
    tdsx_test_rmdir(f->tmp);
    free(f);
}

static void reopen(fixture_t *f)
{
    tdsx_tlog_close(f->log);
    f->log = NULL;
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
}

/* Appends entries [model.n, model.n + k) as one batch and checks the index it got. */
static void append_batch(fixture_t *f, size_t k)
{
    uint8_t *bufs[64];
    tdsx_bytes_t e[64];
    tdsx_bytes_t *ents = k <= 64 ? e : calloc(k, sizeof *ents);
    uint8_t **b = k <= 64 ? bufs : calloc(k, sizeof *b);
    assert_non_null(ents);
    assert_non_null(b);
    for (size_t i = 0; i < k; i++) {
        b[i] = entry_buf();
        size_t idx = f->model.n + i;
        ents[i] = tdsx_bytes(b[i], entry_bytes(idx, b[i]));
        if (idx < MODEL_MAX)
            assert_int_equal(tdsx_merkle_leaf_hash(b[i], ents[i].n, &f->model.leaf[idx]), 0);
    }
    uint64_t first = 999999;
    assert_int_equal(tdsx_tlog_append(f->log, ents, k, &first), 0);
    assert_int_equal(first, f->model.n);
    f->model.n += k;
    for (size_t i = 0; i < k; i++)
        free(b[i]);
    if (k > 64) {
        free(ents);
        free(b);
    }
}

/* Batches of varied sizes up to n entries, crossing the 256 boundary inside a batch. */
static void fill(fixture_t *f, size_t n)
{
    static const size_t sizes[] = {1, 7, 64, 3, 60, 1, 2, 64, 29, 33, 1, 5};
    for (size_t i = 0; f->model.n < n; i++) {
        size_t k = sizes[i % (sizeof sizes / sizeof sizes[0])];
        if (k > n - f->model.n)
            k = n - f->model.n;
        append_batch(f, k);
    }
}

static char *log_file(const fixture_t *f, const char *rel)
{
    return tdsx_test_path(f->dir, rel);
}

static int file_exists(const fixture_t *f, const char *rel)
{
    char *p = log_file(f, rel);
    struct stat st;
    int ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

static off_t file_size(const fixture_t *f, const char *rel)
{
    char *p = log_file(f, rel);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    free(p);
    return st.st_size;
}

static void write_rel(const fixture_t *f, const char *rel, const void *p, size_t n)
{
    char *path = log_file(f, rel);
    tdsx_test_write_file(path, p, n);
    free(path);
}

static uint8_t *read_rel(const fixture_t *f, const char *rel, size_t *len)
{
    char *path = log_file(f, rel);
    uint8_t *data = NULL;
    assert_int_equal(tdsx_file_read(path, 64u << 20, &data, len), 0);
    free(path);
    return data;
}

/* Checks every entry, root and (for the listed sizes) every proof against the model. */
static void check_against_model(fixture_t *f, size_t sizes_from)
{
    model_t *m = &f->model;
    uint64_t size;
    tdsx_hash_t root, want, path[TDSX_MERKLE_CONSISTENCY_MAX], naive[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t len, nlen;
    tdsx_tlog_head(f->log, &size, &root);
    assert_int_equal(size, m->n);
    want = mth(m, 0, m->n);
    assert_memory_equal(root.b, want.b, TDSX_HASH_LEN);

    uint8_t *b = entry_buf();
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_TLOG_ENTRY_MAX);
    for (size_t i = 0; i < m->n; i++) {
        tdsx_buf_reset(&out);
        assert_int_equal(tdsx_tlog_entry(f->log, i, &out), 0);
        size_t n = entry_bytes(i, b);
        assert_int_equal(out.len, n);
        if (n)
            assert_memory_equal(out.p, b, n);
    }
    tdsx_buf_free(&out);
    free(b);

    for (size_t s = sizes_from; s <= m->n; s++) {
        tdsx_hash_t r = mth(m, 0, s);
        assert_int_equal(tdsx_tlog_root_at(f->log, s, &root), 0);
        assert_memory_equal(root.b, r.b, TDSX_HASH_LEN);
        for (size_t i = 0; i < s; i++) {
            assert_int_equal(tdsx_tlog_inclusion_proof(f->log, i, s, path, &len), 0);
            nlen = 0;
            path_of(m, i, 0, s, naive, &nlen);
            assert_int_equal(len, nlen);
            if (len)
                assert_memory_equal(path, naive, len * sizeof path[0]);
            assert_int_equal(tdsx_merkle_inclusion_verify(i, s, &m->leaf[i], path, len, &r), 0);
        }
        for (size_t old = 0; old <= s; old++) {
            assert_int_equal(tdsx_tlog_consistency_proof(f->log, old, s, path, &len), 0);
            nlen = 0;
            if (old > 0)
                subproof(m, old, 0, s, 1, naive, &nlen);
            assert_int_equal(len, nlen);
            if (len)
                assert_memory_equal(path, naive, len * sizeof path[0]);
            tdsx_hash_t ro = mth(m, 0, old);
            assert_int_equal(tdsx_merkle_consistency_verify(old, s, &ro, &r, path, len), 0);
        }
    }
}

/* The checkpoint file, opened with the log key: its size and root. */
static void checkpoint_on_disk(const fixture_t *f, uint64_t *size, tdsx_hash_t *root)
{
    size_t len;
    uint8_t *data = read_rel(f, "checkpoint", &len);
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t cp;
    assert_int_equal(tdsx_checkpoint_open(tdsx_bytes(data, len), tdsx_note_signer_verifier(f->key),
                                          NULL, 0, ORIGIN, &n, &cp),
                     0);
    *size = cp.size;
    *root = cp.root;
    tdsx_note_free(n);
    tdsx_free(data);
}

/* ---- positive ----------------------------------------------------------------------------- */

static void new_log_is_empty_and_signed(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    uint64_t size = 1;
    tdsx_hash_t root, empty, disk_root;
    tdsx_tlog_head(f->log, &size, &root);
    assert_int_equal(size, 0);
    assert_int_equal(tdsx_sha256(NULL, 0, empty.b), 0);
    assert_memory_equal(root.b, empty.b, TDSX_HASH_LEN);
    checkpoint_on_disk(f, &size, &disk_root);
    assert_int_equal(size, 0);
    assert_memory_equal(disk_root.b, empty.b, TDSX_HASH_LEN);
    tdsx_buf_t cp;
    tdsx_buf_init(&cp, TDSX_NOTE_MAX);
    assert_int_equal(tdsx_tlog_checkpoint(f->log, &cp), 0);
    size_t len;
    uint8_t *data = read_rel(f, "checkpoint", &len);
    assert_int_equal(cp.len, len);
    assert_memory_equal(cp.p, data, len);
    tdsx_free(data);
    tdsx_buf_free(&cp);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char *p = log_file(f, "checkpoint");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(p);
    fixture_free(f);
}

static void proofs_from_tiles_match_the_rfc_for_every_size_to_300(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, MODEL_MAX);
    check_against_model(f, 0);
    /* The same from a cold start: tiles come back from disk. */
    reopen(f);
    tdsx_tlog_stats_t st;
    check_against_model(f, MODEL_MAX - 3);
    tdsx_tlog_stats(f->log, &st);
    assert_true(st.tile_reads > 0);
    fixture_free(f);
}

static void tiles_and_bundles_follow_the_c2sp_layout(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, MODEL_MAX);
    /* 300 = one full level-0 tile and a partial of 44; level 1 has one hash. */
    assert_int_equal(file_size(f, "tile/0/000"), 8192);
    assert_int_equal(file_size(f, "tile/0/001.p/44"), 44 * 32);
    assert_int_equal(file_size(f, "tile/1/000.p/1"), 32);
    assert_true(file_exists(f, "tile/entries/000"));
    assert_true(file_exists(f, "tile/entries/001.p/44"));
    assert_false(file_exists(f, "tile/1/000"));
    assert_false(file_exists(f, "tile/2"));
    /* Partial files of a tile that became full were dropped. */
    assert_false(file_exists(f, "tile/0/000.p"));
    assert_false(file_exists(f, "tile/entries/000.p"));

    /* Level 0 holds the leaf hashes, level 1 the root of the full tile below. */
    size_t len;
    uint8_t *t0 = read_rel(f, "tile/0/000", &len);
    for (size_t i = 0; i < 256; i++)
        assert_memory_equal(t0 + 32 * i, f->model.leaf[i].b, 32);
    uint8_t *t1 = read_rel(f, "tile/1/000.p/1", &len);
    tdsx_hash_t r = mth(&f->model, 0, 256);
    assert_memory_equal(t1, r.b, 32);
    /* The bundle: be16 length then the entry, 256 times, nothing after. */
    uint8_t *b = read_rel(f, "tile/entries/000", &len);
    uint8_t *want = entry_buf();
    size_t off = 0;
    for (size_t i = 0; i < 256; i++) {
        size_t n = entry_bytes(i, want);
        assert_true(off + 2 + n <= len);
        assert_int_equal(((size_t)b[off] << 8) | b[off + 1], n);
        if (n)
            assert_memory_equal(b + off + 2, want, n);
        off += 2 + n;
    }
    assert_int_equal(off, len);
    struct stat st;
    char *p = log_file(f, "tile/0/000");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(p);
    p = log_file(f, "tile/0");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    free(p);
    free(want);
    tdsx_free(b);
    tdsx_free(t0);
    tdsx_free(t1);
    fixture_free(f);
}

static void reopen_gives_the_same_root_and_continues(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 200);
    tdsx_hash_t before, after;
    uint64_t size;
    tdsx_tlog_head(f->log, &size, &before);
    reopen(f);
    tdsx_tlog_head(f->log, &size, &after);
    assert_int_equal(size, 200);
    assert_memory_equal(before.b, after.b, TDSX_HASH_LEN);
    fill(f, MODEL_MAX); /* crosses 256 after the reopen */
    reopen(f);
    check_against_model(f, MODEL_MAX);
    tdsx_hash_t disk_root;
    checkpoint_on_disk(f, &size, &disk_root);
    assert_int_equal(size, MODEL_MAX);
    tdsx_tlog_head(f->log, NULL, &after);
    assert_memory_equal(disk_root.b, after.b, TDSX_HASH_LEN);
    fixture_free(f);
}

static void recovery_adopts_a_durable_batch_whose_checkpoint_was_lost(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 250);
    size_t old_len;
    uint8_t *old = read_rel(f, "checkpoint", &old_len);
    append_batch(f, 20); /* 250 -> 270: completes tile 0 */
    tdsx_hash_t root;
    tdsx_tlog_head(f->log, NULL, &root);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    /* As if the checkpoint rename never reached the disk. */
    write_rel(f, "checkpoint", old, old_len);
    tdsx_free(old);
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    uint64_t size;
    tdsx_hash_t now, disk_root;
    tdsx_tlog_head(f->log, &size, &now);
    assert_int_equal(size, 270);
    assert_memory_equal(now.b, root.b, TDSX_HASH_LEN);
    checkpoint_on_disk(f, &size, &disk_root);
    assert_int_equal(size, 270);
    assert_memory_equal(disk_root.b, root.b, TDSX_HASH_LEN);
    fill(f, MODEL_MAX);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

typedef struct reader_s {
    tdsx_tlog_t *log;
    int stop;
    int checks;
    int failures;
} reader_t;

static void *reader(void *arg)
{
    reader_t *r = arg;
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_TLOG_ENTRY_MAX);
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t size;
        tdsx_hash_t root, leaf, path[TDSX_MERKLE_PATH_MAX];
        size_t len;
        tdsx_tlog_head(r->log, &size, &root);
        if (size == 0)
            continue;
        uint64_t i = size / 2;
        tdsx_buf_reset(&out);
        if (tdsx_tlog_entry(r->log, i, &out) != 0 ||
            tdsx_merkle_leaf_hash(out.p ? out.p : (const uint8_t *)"", out.len, &leaf) != 0 ||
            tdsx_tlog_inclusion_proof(r->log, i, size, path, &len) != 0 ||
            tdsx_merkle_inclusion_verify(i, size, &leaf, path, len, &root) != 0)
            r->failures++;
        r->checks++;
    }
    tdsx_buf_free(&out);
    return NULL;
}

static void reads_run_while_appending(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    reader_t r = {f->log, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader, &r), 0);
    fill(f, MODEL_MAX);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(r.checks > 0);
    assert_int_equal(r.failures, 0);
    fixture_free(f);
}

static void proofs_read_a_few_tiles_per_level(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    /* Three levels: 65536 + 300 entries, appended in large batches. */
    const size_t total = 65536 + 300, batch = 8192;
    tdsx_bytes_t *e = calloc(batch, sizeof *e);
    uint8_t *data = malloc(batch * 8);
    assert_non_null(e);
    assert_non_null(data);
    for (size_t done = 0; done < total;) {
        size_t k = total - done < batch ? total - done : batch;
        for (size_t i = 0; i < k; i++) {
            uint64_t v = done + i;
            memcpy(data + 8 * i, &v, 8);
            e[i] = tdsx_bytes(data + 8 * i, 8);
        }
        uint64_t first;
        assert_int_equal(tdsx_tlog_append(f->log, e, k, &first), 0);
        assert_int_equal(first, done);
        done += k;
    }
    assert_int_equal(file_size(f, "tile/2/000.p/1"), 32);
    assert_int_equal(file_size(f, "tile/1/000"), 8192);
    assert_int_equal(file_size(f, "tile/0/255"), 8192);
    assert_int_equal(file_size(f, "tile/0/256"), 8192);
    assert_int_equal(file_size(f, "tile/0/257.p/44"), 44 * 32);
    assert_int_equal(file_size(f, "tile/1/001.p/1"), 32);
    uint64_t size;
    tdsx_hash_t root;
    tdsx_tlog_head(f->log, &size, &root);
    static const uint64_t at[][2] = {{0, 65836},     {12345, 65836}, {65535, 65836},
                                     {65600, 65836}, {7, 40000},     {39999, 65537}};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        reopen(f); /* a cold cache each time */
        tdsx_tlog_stats_t before, after;
        tdsx_tlog_stats(f->log, &before);
        tdsx_hash_t path[TDSX_MERKLE_CONSISTENCY_MAX], r, leaf;
        size_t len;
        uint64_t i = at[k][0], n = at[k][1];
        assert_int_equal(tdsx_tlog_root_at(f->log, n, &r), 0);
        assert_int_equal(tdsx_tlog_inclusion_proof(f->log, i, n, path, &len), 0);
        assert_int_equal(tdsx_merkle_leaf_hash(&i, 8, &leaf), 0);
        assert_int_equal(tdsx_merkle_inclusion_verify(i, n, &leaf, path, len, &r), 0);
        assert_int_equal(tdsx_tlog_consistency_proof(f->log, i + 1, n, path, &len), 0);
        tdsx_hash_t rm;
        assert_int_equal(tdsx_tlog_root_at(f->log, i + 1, &rm), 0);
        assert_int_equal(tdsx_merkle_consistency_verify(i + 1, n, &rm, &r, path, len), 0);
        tdsx_tlog_stats(f->log, &after);
        /* Two roots and two proofs, each needing at most a couple of tiles per level. */
        if (after.tile_reads - before.tile_reads > 8)
            fail_msg("(%llu, %llu): %llu tile reads", (unsigned long long)i, (unsigned long long)n,
                     (unsigned long long)(after.tile_reads - before.tile_reads));
    }
    tdsx_hash_t r;
    assert_int_equal(tdsx_tlog_root_at(f->log, size, &r), 0);
    assert_memory_equal(r.b, root.b, TDSX_HASH_LEN);
    free(e);
    free(data);
    fixture_free(f);
}

/* ---- negative: recovery ------------------------------------------------------------------- */

static void torn_partial_files_past_the_end_are_discarded(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 270); /* edge: level-0 tile 1 of width 14 */
    tdsx_hash_t root;
    tdsx_tlog_head(f->log, NULL, &root);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    /* A crash in the middle of the next append: a wider partial bundle cut short, a partial
     * tile of garbage, a full tile that cannot exist yet, a far tile. */
    size_t len;
    uint8_t *bundle = read_rel(f, "tile/entries/001.p/14", &len);
    write_rel(f, "tile/entries/001.p/17", bundle, len + 1 > 40 ? 40 : len);
    uint8_t junk[17 * 32];
    memset(junk, 0xa5, sizeof junk);
    write_rel(f, "tile/0/001.p/17", junk, sizeof junk);
    write_rel(f, "tile/0/001", junk, 100);
    char *d = log_file(f, "tile/entries/002.p");
    assert_int_equal(mkdir(d, 0700), 0);
    free(d);
    write_rel(f, "tile/entries/002.p/3", junk, 9);
    tdsx_free(bundle);

    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    uint64_t size;
    tdsx_hash_t now;
    tdsx_tlog_head(f->log, &size, &now);
    assert_int_equal(size, 270);
    assert_memory_equal(now.b, root.b, TDSX_HASH_LEN);
    assert_false(file_exists(f, "tile/entries/001.p/17"));
    assert_false(file_exists(f, "tile/0/001.p/17"));
    assert_false(file_exists(f, "tile/0/001"));
    assert_false(file_exists(f, "tile/entries/002.p/3"));
    assert_true(file_exists(f, "tile/entries/001.p/14"));
    /* The next append starts at 270: no published index is reused. */
    append_batch(f, 3);
    fill(f, MODEL_MAX);
    reopen(f);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

static void recovery_keeps_only_what_the_tiles_agree_on(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 250);
    size_t old_len;
    uint8_t *old = read_rel(f, "checkpoint", &old_len);
    /* A batch 250..269 whose level-0 edge tile and checkpoint never reached the disk: its
     * first six entries completed tile 0, whose full bundle and tiles are there and agree. */
    append_batch(f, 20);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    char *p = log_file(f, "tile/0/001.p/14");
    assert_int_equal(unlink(p), 0);
    free(p);
    write_rel(f, "checkpoint", old, old_len);
    tdsx_free(old);

    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    uint64_t size;
    tdsx_hash_t now, want = mth(&f->model, 0, 256), disk_root;
    tdsx_tlog_head(f->log, &size, &now);
    assert_int_equal(size, 256);
    assert_memory_equal(now.b, want.b, TDSX_HASH_LEN);
    checkpoint_on_disk(f, &size, &disk_root);
    assert_int_equal(size, 256);
    /* What lay beyond is gone, and indexes 256.. are assigned afresh. */
    assert_false(file_exists(f, "tile/entries/001.p/14"));
    f->model.n = 256;
    fill(f, MODEL_MAX);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

static void a_torn_batch_inside_one_tile_is_discarded(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 231);
    size_t old_len;
    uint8_t *old = read_rel(f, "checkpoint", &old_len);
    tdsx_hash_t root231;
    tdsx_tlog_head(f->log, NULL, &root231);
    /* 231 -> 250 with other bytes, then its partial tile lost: nothing of it agrees. */
    uint8_t bytes[19];
    tdsx_bytes_t e[19];
    for (size_t i = 0; i < 19; i++) {
        bytes[i] = (uint8_t)(0xe0 + i);
        e[i] = tdsx_bytes(&bytes[i], 1);
    }
    uint64_t first;
    assert_int_equal(tdsx_tlog_append(f->log, e, 19, &first), 0);
    assert_int_equal(first, 231);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    char *p = log_file(f, "tile/0/000.p/250");
    assert_int_equal(unlink(p), 0);
    free(p);
    write_rel(f, "checkpoint", old, old_len);
    tdsx_free(old);

    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    uint64_t size;
    tdsx_hash_t now;
    tdsx_tlog_head(f->log, &size, &now);
    assert_int_equal(size, 231);
    assert_memory_equal(now.b, root231.b, TDSX_HASH_LEN);
    assert_false(file_exists(f, "tile/entries/000.p/250"));
    fill(f, MODEL_MAX);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

static void damage_at_the_published_size_refuses_to_open(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 270);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    static const char *edge_files[] = {"tile/0/001.p/14", "tile/entries/001.p/14",
                                       "tile/1/000.p/1"};
    for (size_t k = 0; k < 3; k++) {
        size_t len;
        uint8_t *orig = read_rel(f, edge_files[k], &len);
        /* Cut short, a changed byte, one byte more, gone. */
        for (int how = 0; how < 4; how++) {
            if (how == 3) {
                char *p = log_file(f, edge_files[k]);
                assert_int_equal(unlink(p), 0);
                free(p);
            } else {
                uint8_t *bad = malloc(len + 1);
                memcpy(bad, orig, len);
                bad[len] = 0;
                if (how == 1)
                    bad[len / 2] ^= 1;
                write_rel(f, edge_files[k], bad, how == 0 ? len - 1 : how == 2 ? len + 1 : len);
                free(bad);
            }
            tdsx_tlog_t *log = NULL;
            int rc = tdsx_tlog_open(f->dir, f->key, &log);
            if (rc != TDSX_E_LOG_CORRUPT)
                fail_msg("%s damage %d: %s", edge_files[k], how, tdsx_err_name(rc));
            assert_null(log);
            write_rel(f, edge_files[k], orig, len);
        }
        tdsx_free(orig);
    }
    /* Restored, it opens again at the same size. */
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    uint64_t size;
    tdsx_tlog_head(f->log, &size, NULL);
    assert_int_equal(size, 270);
    fixture_free(f);
}

static void a_bad_checkpoint_file_refuses_to_open(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 20);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    size_t len;
    uint8_t *orig = read_rel(f, "checkpoint", &len);
    uint8_t *bad = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, orig, len);
        bad[i] = (uint8_t)(bad[i] + 1);
        write_rel(f, "checkpoint", bad, len);
        tdsx_tlog_t *log = NULL;
        int rc = tdsx_tlog_open(f->dir, f->key, &log);
        assert_int_not_equal(rc, 0);
        assert_null(log);
    }
    free(bad);
    /* Another key, and garbage. */
    write_rel(f, "checkpoint", orig, len);
    tdsx_note_signer_t *other = log_key(8);
    tdsx_tlog_t *log = NULL;
    assert_int_equal(tdsx_tlog_open(f->dir, other, &log), TDSX_E_NOTE_UNVERIFIED);
    tdsx_note_signer_free(other);
    write_rel(f, "checkpoint", "garbage", 7);
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &log), TDSX_E_NOTE_FORMAT);
    /* No checkpoint at all while tiles exist: not a new log. */
    char *p = log_file(f, "checkpoint");
    assert_int_equal(unlink(p), 0);
    free(p);
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &log), TDSX_E_LOG_CORRUPT);
    assert_null(log);
    tdsx_free(orig);
    fixture_free(f);
}

/* ---- negative: damaged files found on read ------------------------------------------------ */

static void list_files(const char *dir, const char *rel, char ***out, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || de->d_name[1] == '.'))
            continue;
        char sub[1024];
        int w = snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        assert_true(w > 0 && (size_t)w < sizeof sub);
        w = snprintf(path, sizeof path, "%s/%s", dir, sub);
        assert_true(w > 0 && (size_t)w < sizeof path);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            list_files(dir, sub, out, n);
        } else {
            *out = realloc(*out, (*n + 1) * sizeof **out);
            assert_non_null(*out);
            (*out)[(*n)++] = strdup(sub);
        }
    }
    closedir(d);
}

/* Every call either fails with TDSX_E_LOG_CORRUPT or gives the model's answer. */
static size_t reads_are_right_or_refused(fixture_t *f)
{
    size_t refused = 0;
    model_t *m = &f->model;
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_TLOG_ENTRY_MAX);
    uint8_t *b = entry_buf();
    for (size_t i = 0; i < m->n; i += 1 + (i < 250) * 6) {
        tdsx_buf_reset(&out);
        int rc = tdsx_tlog_entry(f->log, i, &out);
        if (rc == TDSX_E_LOG_CORRUPT) {
            assert_int_equal(out.len, 0);
            refused++;
            continue;
        }
        assert_int_equal(rc, 0);
        size_t n = entry_bytes(i, b);
        assert_int_equal(out.len, n);
        if (n)
            assert_memory_equal(out.p, b, n);
    }
    free(b);
    tdsx_buf_free(&out);
    tdsx_hash_t path[TDSX_MERKLE_CONSISTENCY_MAX], root;
    size_t len;
    for (size_t s = 1; s <= m->n; s += 13) {
        tdsx_hash_t r = mth(m, 0, s);
        int rc = tdsx_tlog_root_at(f->log, s, &root);
        assert_true(rc == 0 || rc == TDSX_E_LOG_CORRUPT);
        refused += rc != 0;
        if (rc == 0)
            assert_memory_equal(root.b, r.b, TDSX_HASH_LEN);
        for (size_t i = 0; i < s; i += 17) {
            rc = tdsx_tlog_inclusion_proof(f->log, i, s, path, &len);
            assert_true(rc == 0 || rc == TDSX_E_LOG_CORRUPT);
            refused += rc != 0;
            if (rc == 0)
                assert_int_equal(tdsx_merkle_inclusion_verify(i, s, &m->leaf[i], path, len, &r), 0);
            tdsx_hash_t ro = mth(m, 0, i);
            rc = tdsx_tlog_consistency_proof(f->log, i, s, path, &len);
            assert_true(rc == 0 || rc == TDSX_E_LOG_CORRUPT);
            refused += rc != 0;
            if (rc == 0)
                assert_int_equal(tdsx_merkle_consistency_verify(i, s, &ro, &r, path, len), 0);
        }
    }
    return refused;
}

static void damaged_files_give_errors_never_wrong_answers(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, MODEL_MAX);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    char **files = NULL;
    size_t nfiles = 0;
    list_files(f->dir, "", &files, &nfiles);
    assert_true(nfiles >= 6);
    size_t refused_open = 0, refused_read = 0;
    for (size_t k = 0; k < nfiles; k++) {
        if (strcmp(files[k], "checkpoint") == 0) {
            free(files[k]);
            continue;
        }
        size_t len;
        uint8_t *orig = read_rel(f, files[k], &len);
        for (int how = 0; how < 4; how++) {
            uint8_t *bad = malloc(len + 1);
            memcpy(bad, orig, len);
            bad[len] = 0x42;
            size_t blen = len;
            if (how == 0)
                blen = 0;
            else if (how == 1)
                blen = len - 1;
            else if (how == 2)
                bad[len / 3] ^= 0x80;
            else
                blen = len + 1;
            write_rel(f, files[k], bad, blen);
            free(bad);
            int rc = tdsx_tlog_open(f->dir, f->key, &f->log);
            if (rc == 0) {
                refused_read += reads_are_right_or_refused(f);
                tdsx_tlog_close(f->log);
                f->log = NULL;
            } else {
                assert_int_equal(rc, TDSX_E_LOG_CORRUPT);
                refused_open++;
            }
            write_rel(f, files[k], orig, len);
        }
        tdsx_free(orig);
        free(files[k]);
    }
    free(files);
    assert_true(refused_open > 0);
    assert_true(refused_read > 0);
    /* After all that, the undamaged log is whole. */
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

static void a_damaged_full_tile_is_caught_on_read(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, MODEL_MAX);
    tdsx_tlog_close(f->log);
    f->log = NULL;
    size_t len;
    uint8_t *t0 = read_rel(f, "tile/0/000", &len);
    t0[32 * 10] ^= 1; /* leaf hash of entry 10 */
    write_rel(f, "tile/0/000", t0, len);
    tdsx_free(t0);
    uint8_t *bundle = read_rel(f, "tile/entries/000", &len);
    bundle[len - 1] ^= 1; /* last byte of entry 255 */
    write_rel(f, "tile/entries/000", bundle, len);
    tdsx_free(bundle);

    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
    tdsx_hash_t path[TDSX_MERKLE_CONSISTENCY_MAX], root;
    size_t plen;
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_TLOG_ENTRY_MAX);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 10, 300, path, &plen), TDSX_E_LOG_CORRUPT);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 200, 256, path, &plen), TDSX_E_LOG_CORRUPT);
    assert_int_equal(tdsx_tlog_root_at(f->log, 100, &root), TDSX_E_LOG_CORRUPT);
    assert_int_equal(tdsx_tlog_consistency_proof(f->log, 11, 300, path, &plen), TDSX_E_LOG_CORRUPT);
    assert_int_equal(tdsx_tlog_entry(f->log, 255, &out), TDSX_E_LOG_CORRUPT);
    assert_int_equal(tdsx_tlog_entry(f->log, 10, &out), TDSX_E_LOG_CORRUPT);
    assert_int_equal(out.len, 0);
    /* What does not depend on that tile still works: the edge, and subtrees above it. */
    assert_int_equal(tdsx_tlog_entry(f->log, 299, &out), 0);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 299, 300, path, &plen), 0);
    tdsx_hash_t r = mth(&f->model, 0, 300);
    assert_int_equal(tdsx_merkle_inclusion_verify(299, 300, &f->model.leaf[299], path, plen, &r),
                     0);
    tdsx_buf_free(&out);
    fixture_free(f);
}

/* ---- negative: arguments and state -------------------------------------------------------- */

static void bad_arguments_change_nothing(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 10);
    uint8_t *big = calloc(1, TDSX_TLOG_ENTRY_MAX + 1);
    tdsx_bytes_t e[2] = {tdsx_bytes("a", 1), tdsx_bytes(big, TDSX_TLOG_ENTRY_MAX + 1)};
    uint64_t first = 77;
    assert_int_equal(tdsx_tlog_append(f->log, e, 0, &first), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_append(f->log, e, 2, &first), TDSX_E_TOOBIG);
    e[1] = tdsx_bytes(NULL, 3);
    assert_int_equal(tdsx_tlog_append(f->log, e, 2, &first), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_append(f->log, e, TDSX_TLOG_BATCH_MAX + 1, &first), TDSX_E_INVAL);
    assert_int_equal(first, 77);
    free(big);

    tdsx_hash_t path[TDSX_MERKLE_CONSISTENCY_MAX], root;
    size_t len;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 16);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 10, 10, path, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 0, 11, path, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_inclusion_proof(f->log, 0, 0, path, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_consistency_proof(f->log, 5, 4, path, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_consistency_proof(f->log, 5, 11, path, &len), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_root_at(f->log, 11, &root), TDSX_E_INVAL);
    assert_int_equal(tdsx_tlog_entry(f->log, 10, &out), TDSX_E_NOTFOUND);
    /* An entry larger than the caller's buffer cap leaves it unchanged. */
    assert_int_equal(tdsx_buf_append(&out, "ab", 2), 0);
    assert_int_equal(tdsx_tlog_entry(f->log, 2, &out), TDSX_E_TOOBIG); /* 75 bytes: over 16 */
    assert_int_equal(out.len, 2);
    tdsx_buf_free(&out);
    check_against_model(f, 10);

    /* A cosignature key cannot sign checkpoints; a second opener is refused. */
    uint8_t seed[32] = {1};
    tdsx_note_signer_t *cos = NULL;
    assert_int_equal(tdsx_note_signer_new(ORIGIN, TDSX_NOTE_COSIG, seed, &cos), 0);
    tdsx_tlog_t *log = NULL;
    assert_int_equal(tdsx_tlog_open(f->dir, cos, &log), TDSX_E_KEY);
    tdsx_note_signer_free(cos);
    assert_int_equal(tdsx_tlog_open(f->dir, f->key, &log), TDSX_E_BUSY);
    assert_null(log);
    char longdir[TDSX_TLOG_DIR_MAX + 2];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[sizeof longdir - 1] = '\0';
    assert_int_equal(tdsx_tlog_open(longdir, f->key, &log), TDSX_E_TOOBIG);
    fixture_free(f);
}

static void an_io_failure_is_sticky(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 250);
    /* A file where the next batch needs a directory. */
    char *d = log_file(f, "tile/0/001.p");
    tdsx_test_write_file(d, "x", 1);
    free(d);
    tdsx_bytes_t e[20];
    uint8_t buf[20];
    for (size_t i = 0; i < 20; i++) {
        buf[i] = (uint8_t)i;
        e[i] = tdsx_bytes(&buf[i], 1);
    }
    uint64_t first = 5, size;
    assert_int_equal(tdsx_tlog_append(f->log, e, 20, &first), TDSX_E_IO);
    assert_int_equal(tdsx_tlog_append(f->log, e, 1, &first), TDSX_E_IO);
    assert_int_equal(first, 5);
    tdsx_tlog_head(f->log, &size, NULL);
    assert_int_equal(size, 250);
    /* Reads still work. */
    check_against_model(f, 249);
    /* Reopened, recovery decides: the batch's files disagree, so it is not in the log. */
    d = log_file(f, "tile/0/001.p");
    assert_int_equal(unlink(d), 0);
    free(d);
    reopen(f);
    tdsx_tlog_head(f->log, &size, NULL);
    assert_int_equal(size, 250);
    fill(f, MODEL_MAX);
    check_against_model(f, MODEL_MAX);
    fixture_free(f);
}

static void allocation_failures_are_reported(void **state)
{
    (void)state;
    fixture_t *f = fixture();
    fill(f, 250);
    tdsx_bytes_t e[10];
    uint8_t *bufs[10];
    for (unsigned long k = 1; k < 40; k++) {
        for (size_t i = 0; i < 10; i++) {
            bufs[i] = entry_buf();
            e[i] = tdsx_bytes(bufs[i], entry_bytes(f->model.n + i, bufs[i]));
        }
        uint64_t first;
        tdsx_test_alloc_fail_after(k);
        int rc = tdsx_tlog_append(f->log, e, 10, &first);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            for (size_t i = 0; i < 10; i++)
                assert_int_equal(
                    tdsx_merkle_leaf_hash(bufs[i], e[i].n, &f->model.leaf[f->model.n + i]), 0);
            f->model.n += 10;
        } else {
            /* Memory runs out before the first file is written: not sticky, nothing appended. */
            assert_int_equal(rc, TDSX_E_NOMEM);
            uint64_t size;
            tdsx_tlog_head(f->log, &size, NULL);
            assert_int_equal(size, f->model.n);
        }
        for (size_t i = 0; i < 10; i++)
            free(bufs[i]);
        if (f->model.n >= MODEL_MAX - 10)
            break;
    }
    for (unsigned long k = 1; k < 60; k++) {
        tdsx_tlog_close(f->log);
        f->log = NULL;
        tdsx_test_alloc_fail_after(k);
        int rc = tdsx_tlog_open(f->dir, f->key, &f->log);
        tdsx_test_alloc_reset();
        if (rc != 0) {
            assert_int_equal(rc, TDSX_E_NOMEM);
            assert_null(f->log);
            assert_int_equal(tdsx_tlog_open(f->dir, f->key, &f->log), 0);
        }
    }
    check_against_model(f, f->model.n);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_log_is_empty_and_signed),
        cmocka_unit_test(proofs_from_tiles_match_the_rfc_for_every_size_to_300),
        cmocka_unit_test(tiles_and_bundles_follow_the_c2sp_layout),
        cmocka_unit_test(reopen_gives_the_same_root_and_continues),
        cmocka_unit_test(recovery_adopts_a_durable_batch_whose_checkpoint_was_lost),
        cmocka_unit_test(reads_run_while_appending),
        cmocka_unit_test(proofs_read_a_few_tiles_per_level),
        cmocka_unit_test(torn_partial_files_past_the_end_are_discarded),
        cmocka_unit_test(recovery_keeps_only_what_the_tiles_agree_on),
        cmocka_unit_test(a_torn_batch_inside_one_tile_is_discarded),
        cmocka_unit_test(damage_at_the_published_size_refuses_to_open),
        cmocka_unit_test(a_bad_checkpoint_file_refuses_to_open),
        cmocka_unit_test(damaged_files_give_errors_never_wrong_answers),
        cmocka_unit_test(a_damaged_full_tile_is_caught_on_read),
        cmocka_unit_test(bad_arguments_change_nothing),
        cmocka_unit_test(an_io_failure_is_sticky),
        cmocka_unit_test(allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
