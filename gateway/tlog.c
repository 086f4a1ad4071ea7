/* tlog.c — the transparency log store (SPEC §11) in the C2SP tlog-tiles layout.
 *
 * Memory holds the right edge of the tree: at each level the tile still being filled (with all
 * its internal nodes) and the partial entry bundle. An append extends a copy of the edge,
 * which yields every file the batch must write; recovery extends a copy the same way and
 * compares instead of writing. Full tiles are read back only for proofs and old entries, and
 * each is checked against the hash one level up before it is trusted. */
#include "tlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TILE_H 8 /* a tile is a subtree of height 8 */
#define TILE_W 256u
#define TILE_BYTES (TILE_W * TDSX_HASH_LEN)
#define TILE_NODES (2 * TILE_W - 1)
/* Levels 0..7 of 256-wide tiles cover every size below 2^64. */
#define LEVELS 8
#define CACHE_SLOTS 16
#define PATH_CAP 4096
#define BUNDLE_CAP (TILE_W * (2u + TDSX_TLOG_ENTRY_MAX))
#define SIZE_LIMIT ((uint64_t)1 << 63)
/* Files of one batch kept open between their write and their fsync. */
#define FD_BATCH 64
/* Tiles past the checkpoint that recovery looks at; a batch covers at most 257 of them. */
#define RECOVER_TILES_MAX 4096u
#define ENTRIES_LEVEL (-1)

_Static_assert(sizeof(tdsx_hash_t) == TDSX_HASH_LEN, "hash arrays are stored as raw bytes");

typedef struct tile_s {
    uint32_t width; /* hashes at layer 0 */
    tdsx_hash_t n[TILE_NODES];
} tile_t;

typedef struct edge_s {
    uint64_t size;
    tile_t tile[LEVELS]; /* tile[L]: the level-L tile index size / 256^(L+1), not yet full */
    tdsx_buf_t bundle;   /* entries [size - size % 256, size), each be16(len) || bytes */
} edge_t;

typedef struct slot_s {
    int used;
    unsigned level;
    uint64_t index;
    uint64_t tick;
    tile_t tile;
} slot_t;

typedef struct file_s {
    char *path;
    uint8_t *data;
    size_t len;
} file_t;

/* Files one append writes, and the full tiles it completes (whose partial files can go). */
typedef struct plan_s {
    file_t *f;
    size_t n, alloc;
    struct full_s {
        int level;
        uint64_t index;
    } * full;
    size_t nfull, full_alloc;
} plan_t;

struct tdsx_tlog_s {
    char dir[TDSX_TLOG_DIR_MAX + 1];
    int dirfd;
    const tdsx_note_signer_t *signer;
    pthread_mutex_t lock;        /* cur, root, checkpoint, cache, stats */
    pthread_mutex_t append_lock; /* one append at a time; next */
    edge_t *cur, *next;
    tdsx_hash_t root;
    tdsx_buf_t checkpoint;
    int failed; /* first I/O error of an append: sticky */
    slot_t cache[CACHE_SLOTS];
    uint64_t tick;
    /* The last full entry bundle read, every entry checked against its level-0 hash. */
    struct {
        int used;
        uint64_t index;
        uint8_t *data;
        tdsx_bytes_t ent[TILE_W];
    } bcache;
    tdsx_tlog_stats_t stats;
};

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static int io_fail(const char *op, const char *path, int err)
{
    tdsx_log(TDSX_LOG_WARN, "tlog.io", TDSX_KV_S("op", op), TDSX_KV_S("path", path),
             TDSX_KV_S("errno", strerror(err)));
    return TDSX_E_IO;
}

static int corrupt(const char *what, const char *path)
{
    tdsx_log(TDSX_LOG_ERROR, "tlog.corrupt", TDSX_KV_S("what", what), TDSX_KV_S("path", path));
    return TDSX_E_LOG_CORRUPT;
}

static size_t layer(unsigned k)
{
    return 2 * TILE_W - ((2 * TILE_W) >> k);
}

/* Index of the level-L tile that holds hash positions around tree size s (its right edge). */
static uint64_t tile_index(uint64_t s, unsigned level)
{
    unsigned shift = TILE_H * (level + 1);
    return shift >= 64 ? 0 : s >> shift;
}

/* Width of the partial level-L tile of a tree of size s (tlog-tiles "Partial Tiles"). */
static unsigned tile_width(uint64_t s, unsigned level)
{
    return (unsigned)((s >> (TILE_H * level)) & (TILE_W - 1));
}

static int hash_eq(const tdsx_hash_t *a, const tdsx_hash_t *b)
{
    return memcmp(a->b, b->b, TDSX_HASH_LEN) == 0;
}

/* Adds one hash at the end of a tile and completes every internal node it closes. */
static int tile_push(tile_t *t, const tdsx_hash_t *h)
{
    uint32_t i = t->width;
    if (i >= TILE_W)
        return TDSX_E_INTERNAL;
    t->n[i] = *h;
    t->width = i + 1;
    for (unsigned k = 1; k <= TILE_H && ((i + 1) & ((1u << k) - 1)) == 0; k++) {
        uint32_t idx = ((i + 1) >> k) - 1;
        const tdsx_hash_t *lo = &t->n[layer(k - 1) + 2 * idx];
        int rc = tdsx_merkle_node_hash(lo, lo + 1, &t->n[layer(k) + idx]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Paths: <dir>/tile/<L|entries>/<N>[.p/<W>], N in 3-digit groups, all but the last 'x'-prefixed
 * ---------------------------------------------------------------------------------------- */

static int index_path(char *out, size_t cap, uint64_t index)
{
    unsigned g[7];
    size_t k = 0, used = 0;
    do {
        g[k++] = (unsigned)(index % 1000);
        index /= 1000;
    } while (index);
    while (k--) {
        int n = snprintf(out + used, cap - used, k ? "x%03u/" : "%03u", g[k]);
        if (n < 0 || (size_t)n >= cap - used)
            return TDSX_E_TOOBIG;
        used += (size_t)n;
    }
    return 0;
}

/* width 0: the full tile; 1..255: the partial one. */
static int tile_path(const tdsx_tlog_t *t, char *out, int level, uint64_t index, unsigned width)
{
    char n[40], lv[16];
    int rc = index_path(n, sizeof n, index);
    if (rc < 0)
        return rc;
    if (level == ENTRIES_LEVEL)
        snprintf(lv, sizeof lv, "entries");
    else
        snprintf(lv, sizeof lv, "%d", level);
    int w = width ? snprintf(out, PATH_CAP, "%s/tile/%s/%s.p/%u", t->dir, lv, n, width)
                  : snprintf(out, PATH_CAP, "%s/tile/%s/%s", t->dir, lv, n);
    return w < 0 || w >= PATH_CAP ? TDSX_E_TOOBIG : 0;
}

static int pdir_path(const tdsx_tlog_t *t, char *out, int level, uint64_t index)
{
    int rc = tile_path(t, out, level, index, 0);
    if (rc == 0 && strlen(out) + 3 >= PATH_CAP)
        rc = TDSX_E_TOOBIG;
    if (rc == 0)
        memcpy(out + strlen(out), ".p", 3);
    return rc;
}

static int top_path(const tdsx_tlog_t *t, char *out, const char *name)
{
    int n = snprintf(out, PATH_CAP, "%s/%s", t->dir, name);
    return n < 0 || n >= PATH_CAP ? TDSX_E_TOOBIG : 0;
}

/* A partial width as a file name: "1".."255", no leading zero; 0 otherwise. */
static unsigned width_name(const char *s)
{
    unsigned v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 3 || s[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v < TILE_W ? v : 0;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Reads a whole file; TDSX_E_NOTFOUND when absent, TDSX_E_LOG_CORRUPT when over cap. */
static int read_file(const char *path, size_t cap, uint8_t **data, size_t *len)
{
    int rc = tdsx_file_read(path, cap, data, len);
    if (rc == TDSX_E_TOOBIG)
        return corrupt("file larger than it can be", path);
    if (rc < 0 && rc != TDSX_E_NOTFOUND && rc != TDSX_E_NOMEM)
        return io_fail("read", path, rc > TDSX_ERR_BASE ? -rc : EIO);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Entry bundles: be16(length) || entry, repeated (c2sp.org/tlog-tiles "Log entries")
 * ---------------------------------------------------------------------------------------- */

/* Splits a bundle into exactly `count` entries (views into it); *used gets the bytes they
 * take. With exact set, nothing may follow them. */
static int bundle_split(tdsx_bytes_t b, size_t count, int exact, tdsx_bytes_t *out, size_t *used)
{
    tdsx_bytes_t c = b;
    for (size_t i = 0; i < count; i++) {
        uint16_t len;
        if (tdsx_bytes_u16be(&c, &len) != 0 || tdsx_bytes_take(&c, len, &out[i]) != 0)
            return TDSX_E_LOG_CORRUPT;
    }
    if (exact && c.n)
        return TDSX_E_LOG_CORRUPT;
    *used = b.n - c.n;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Reading tiles and hashes for a snapshot of the edge
 * ---------------------------------------------------------------------------------------- */

static int get_tile(tdsx_tlog_t *t, const edge_t *e, unsigned level, uint64_t index,
                    const tile_t **out);

/* A full tile from disk, accepted only when its root is the hash above it. */
static int load_full(tdsx_tlog_t *t, const edge_t *e, unsigned level, uint64_t index,
                     const tile_t **out)
{
    char path[PATH_CAP];
    uint8_t *data = NULL;
    size_t len;
    tile_t *tmp = NULL;
    const tile_t *parent;
    int rc = tile_path(t, path, (int)level, index, 0);
    if (rc < 0)
        return rc;
    rc = read_file(path, TILE_BYTES, &data, &len);
    if (rc == TDSX_E_NOTFOUND)
        rc = corrupt("full tile missing", path);
    if (rc < 0)
        return rc;
    t->stats.tile_reads++;
    tmp = tdsx_malloc(sizeof *tmp);
    if (!tmp) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if (len != TILE_BYTES) {
        rc = corrupt("full tile of the wrong size", path);
        goto fail;
    }
    tmp->width = 0;
    for (size_t i = 0; i < TILE_W; i++) {
        tdsx_hash_t h;
        memcpy(h.b, data + i * TDSX_HASH_LEN, TDSX_HASH_LEN);
        rc = tile_push(tmp, &h);
        if (rc < 0)
            goto fail;
    }
    rc = get_tile(t, e, level + 1, index / TILE_W, &parent);
    if (rc < 0)
        goto fail;
    if (parent->width <= index % TILE_W ||
        !hash_eq(&parent->n[index % TILE_W], &tmp->n[layer(TILE_H)])) {
        rc = corrupt("full tile does not hash to the level above", path);
        goto fail;
    }
    slot_t *s = &t->cache[0];
    for (size_t i = 1; i < CACHE_SLOTS && s->used; i++)
        if (!t->cache[i].used || t->cache[i].tick < s->tick)
            s = &t->cache[i];
    s->used = 1;
    s->level = level;
    s->index = index;
    s->tick = ++t->tick;
    s->tile = *tmp;
    *out = &s->tile;
fail:
    tdsx_free(tmp);
    tdsx_free(data);
    return rc;
}

/* The tile (level, index) as of edge e: the edge's own, or a full one (cache or disk). The
 * pointer is valid until the next call. */
static int get_tile(tdsx_tlog_t *t, const edge_t *e, unsigned level, uint64_t index,
                    const tile_t **out)
{
    if (level >= LEVELS)
        return TDSX_E_LOG_CORRUPT;
    uint64_t ei = tile_index(e->size, level);
    if (index == ei) {
        *out = &e->tile[level];
        return 0;
    }
    if (index > ei || level + 1 >= LEVELS)
        return TDSX_E_LOG_CORRUPT;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        slot_t *s = &t->cache[i];
        if (s->used && s->level == level && s->index == index) {
            s->tick = ++t->tick;
            t->stats.cache_hits++;
            *out = &s->tile;
            return 0;
        }
    }
    return load_full(t, e, level, index, out);
}

/* MTH of the 2^h leaves from `start` (a multiple of 2^h): one node of one tile. */
static int perfect(tdsx_tlog_t *t, const edge_t *e, unsigned h, uint64_t start, tdsx_hash_t *out)
{
    unsigned level = h / TILE_H, b = h % TILE_H;
    uint64_t j = start >> (TILE_H * level);
    const tile_t *tile;
    int rc = get_tile(t, e, level, j / TILE_W, &tile);
    if (rc < 0)
        return rc;
    unsigned p = (unsigned)(j % TILE_W);
    if (p + (1u << b) > tile->width)
        return TDSX_E_LOG_CORRUPT;
    *out = tile->n[layer(b) + (p >> b)];
    return 0;
}

/* MTH(D[lo:hi]) for the subtrees RFC 9162's recursion visits (lo a multiple of the smallest
 * power of two >= hi - lo): the perfect subtrees of hi - lo's binary digits, folded from the
 * right as §2.1.1's split at the largest power of two does. */
static int range_hash(tdsx_tlog_t *t, const edge_t *e, uint64_t lo, uint64_t hi, tdsx_hash_t *out)
{
    tdsx_hash_t part[64];
    size_t n = 0;
    if (lo == hi)
        return tdsx_sha256(NULL, 0, out->b);
    while (lo < hi) {
        unsigned h = 0;
        while (h < 63 && !((lo >> h) & 1) && ((hi - lo) >> (h + 1)) != 0)
            h++;
        if (n == 64)
            return TDSX_E_INTERNAL;
        int rc = perfect(t, e, h, lo, &part[n++]);
        if (rc < 0)
            return rc;
        lo += (uint64_t)1 << h;
    }
    *out = part[n - 1];
    for (size_t i = n - 1; i-- > 0;) {
        int rc = tdsx_merkle_node_hash(&part[i], out, out);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The largest power of two strictly below n (n >= 2): RFC 9162 §2.1.1's k. */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k <= (n - 1) / 2)
        k <<= 1;
    return k;
}

static void reverse(tdsx_hash_t *v, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        tdsx_hash_t x = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = x;
    }
}

/* ------------------------------------------------------------------------------------------
 * Extending the edge: the files a batch writes
 * ---------------------------------------------------------------------------------------- */

static void plan_free(plan_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        tdsx_free(p->f[i].path);
        tdsx_free(p->f[i].data);
    }
    tdsx_free(p->f);
    tdsx_free(p->full);
    memset(p, 0, sizeof *p);
}

static int plan_add(plan_t *p, const char *path, const void *data, size_t len)
{
    if (p->n == p->alloc) {
        size_t na = p->alloc ? 2 * p->alloc : 16;
        file_t *nf = tdsx_reallocarray(p->f, na, sizeof *nf);
        if (!nf)
            return TDSX_E_NOMEM;
        p->f = nf;
        p->alloc = na;
    }
    file_t *f = &p->f[p->n];
    f->path = tdsx_strdup(path);
    f->data = tdsx_malloc(len ? len : 1);
    if (!f->path || !f->data) {
        tdsx_free(f->path);
        tdsx_free(f->data);
        return TDSX_E_NOMEM;
    }
    if (len)
        memcpy(f->data, data, len);
    f->len = len;
    p->n++;
    return 0;
}

static int plan_full(plan_t *p, int level, uint64_t index)
{
    if (p->nfull == p->full_alloc) {
        size_t na = p->full_alloc ? 2 * p->full_alloc : 8;
        struct full_s *nf = tdsx_reallocarray(p->full, na, sizeof *nf);
        if (!nf)
            return TDSX_E_NOMEM;
        p->full = nf;
        p->full_alloc = na;
    }
    p->full[p->nfull].level = level;
    p->full[p->nfull].index = index;
    p->nfull++;
    return 0;
}

static int edge_copy(edge_t *dst, const edge_t *src)
{
    dst->size = src->size;
    for (unsigned l = 0; l < LEVELS; l++) {
        dst->tile[l].width = src->tile[l].width;
        /* Only the nodes a width has filled are meaningful; copy the whole array when any. */
        if (src->tile[l].width)
            memcpy(dst->tile[l].n, src->tile[l].n, sizeof dst->tile[l].n);
    }
    tdsx_buf_reset(&dst->bundle);
    return tdsx_buf_append(&dst->bundle, src->bundle.p, src->bundle.len);
}

/* Appends the entries to edge e as one batch and adds to plan every file that batch writes:
 * each full bundle and tile completed on the way, then the partial bundle and partial tiles
 * whose contents changed. */
static int edge_advance(tdsx_tlog_t *t, edge_t *e, const tdsx_bytes_t *entries, size_t n,
                        plan_t *plan)
{
    char path[PATH_CAP];
    int changed[LEVELS] = {0}, bundle_changed = 0;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        tdsx_hash_t h;
        rc = tdsx_merkle_leaf_hash(entries[i].p ? entries[i].p : (const uint8_t *)"", entries[i].n,
                                   &h);
        if (rc == 0)
            rc = tdsx_buf_append(
                &e->bundle, (uint8_t[2]){(uint8_t)(entries[i].n >> 8), (uint8_t)entries[i].n}, 2);
        if (rc == 0 && entries[i].n)
            rc = tdsx_buf_append(&e->bundle, entries[i].p, entries[i].n);
        if (rc < 0)
            return rc;
        e->size++;
        bundle_changed = 1;
        if (tile_width(e->size, 0) == 0) {
            uint64_t bi = (e->size - 1) / TILE_W;
            rc = tile_path(t, path, ENTRIES_LEVEL, bi, 0);
            if (rc == 0)
                rc = plan_add(plan, path, e->bundle.p, e->bundle.len);
            if (rc == 0)
                rc = plan_full(plan, ENTRIES_LEVEL, bi);
            if (rc < 0)
                return rc;
            tdsx_buf_reset(&e->bundle);
            bundle_changed = 0;
        }
        for (unsigned l = 0;; l++) {
            if (l >= LEVELS)
                return TDSX_E_TOOBIG;
            rc = tile_push(&e->tile[l], &h);
            if (rc < 0)
                return rc;
            changed[l] = 1;
            if (e->tile[l].width < TILE_W)
                break;
            /* A full tile: write it, and its root becomes the next hash one level up. */
            uint64_t ti = tile_index(e->size - 1, l);
            rc = tile_path(t, path, (int)l, ti, 0);
            if (rc == 0)
                rc = plan_add(plan, path, e->tile[l].n, TILE_BYTES);
            if (rc == 0)
                rc = plan_full(plan, (int)l, ti);
            if (rc < 0)
                return rc;
            h = e->tile[l].n[layer(TILE_H)];
            e->tile[l].width = 0;
            changed[l] = 0;
        }
    }
    if (bundle_changed) {
        rc = tile_path(t, path, ENTRIES_LEVEL, tile_index(e->size, 0), tile_width(e->size, 0));
        if (rc == 0)
            rc = plan_add(plan, path, e->bundle.p, e->bundle.len);
        if (rc < 0)
            return rc;
    }
    for (unsigned l = 0; l < LEVELS; l++) {
        if (!changed[l] || !e->tile[l].width)
            continue;
        rc = tile_path(t, path, (int)l, tile_index(e->size, l), e->tile[l].width);
        if (rc == 0)
            rc = plan_add(plan, path, e->tile[l].n, (size_t)e->tile[l].width * TDSX_HASH_LEN);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Writing a plan: one group of fsyncs
 * ---------------------------------------------------------------------------------------- */

typedef struct dirset_s {
    char **d;
    size_t n, alloc;
} dirset_t;

static void dirset_free(dirset_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        tdsx_free(s->d[i]);
    tdsx_free(s->d);
}

static int dirset_add(dirset_t *s, const char *path, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->d[i]) == len && memcmp(s->d[i], path, len) == 0)
            return 0;
    if (s->n == s->alloc) {
        size_t na = s->alloc ? 2 * s->alloc : 8;
        char **nd = tdsx_reallocarray(s->d, na, sizeof *nd);
        if (!nd)
            return TDSX_E_NOMEM;
        s->d = nd;
        s->alloc = na;
    }
    s->d[s->n] = tdsx_strndup(path, len);
    if (!s->d[s->n])
        return TDSX_E_NOMEM;
    s->n++;
    return 0;
}

static size_t parent_len(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? (size_t)(slash - path) : 0;
}

/* Creates the missing directories of `path` below the log directory (0700); each new one's
 * parent must be fsynced for the new entry to last. */
static int make_parents(const tdsx_tlog_t *t, const char *path, dirset_t *sync)
{
    char buf[PATH_CAP];
    size_t plen = parent_len(path);
    struct stat st;
    memcpy(buf, path, plen);
    buf[plen] = '\0';
    if (stat(buf, &st) == 0)
        return 0;
    for (size_t i = strlen(t->dir) + 1; i <= plen; i++) {
        if (i < plen && buf[i] != '/')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) == 0) {
            if (chmod(buf, 0700) != 0)
                return io_fail("chmod", buf, errno);
            int rc = dirset_add(sync, buf, parent_len(buf));
            if (rc < 0)
                return rc;
        } else if (errno != EEXIST) {
            return io_fail("mkdir", buf, errno);
        }
        buf[i] = c;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, const char *path)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return io_fail("write", path, errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *path, uint64_t *count)
{
    (*count)++;
    return tdsx_dir_sync(path) == 0 ? 0 : io_fail("sync dir", path, errno);
}

static int sync_fds(int *fds, const char **paths, size_t *n, uint64_t *count)
{
    int rc = 0;
    for (size_t i = 0; i < *n; i++) {
        if (rc == 0 && fsync(fds[i]) != 0)
            rc = io_fail("fsync", paths[i], errno);
        (*count)++;
        if (close(fds[i]) != 0 && rc == 0)
            rc = io_fail("close", paths[i], errno);
    }
    *n = 0;
    return rc;
}

/* Writes every file of the plan, then fsyncs them and every directory whose entries changed:
 * nothing is durable until all of it is. Directories are made and the list to fsync is built
 * first, so that once *wrote is set (the first file opened) nothing allocates any more. */
static int plan_write(tdsx_tlog_t *t, const plan_t *p, uint64_t *fsyncs, int *wrote)
{
    dirset_t sync = {0};
    int fds[FD_BATCH];
    const char *paths[FD_BATCH];
    size_t nfd = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        rc = make_parents(t, p->f[i].path, &sync);
        if (rc == 0)
            rc = dirset_add(&sync, p->f[i].path, parent_len(p->f[i].path));
    }
    if (rc < 0)
        goto done;
    *wrote = 1;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        const file_t *f = &p->f[i];
        int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = io_fail("open", f->path, errno);
            break;
        }
        fds[nfd] = fd;
        paths[nfd++] = f->path;
        /* The umask may have narrowed the mode; make it exactly 0600. */
        if (fchmod(fd, 0600) != 0)
            rc = io_fail("fchmod", f->path, errno);
        if (rc == 0)
            rc = write_all(fd, f->data, f->len, f->path);
        if (rc == 0 && nfd == FD_BATCH)
            rc = sync_fds(fds, paths, &nfd, fsyncs);
    }
    int rc2 = sync_fds(fds, paths, &nfd, fsyncs);
    if (rc == 0)
        rc = rc2;
    for (size_t i = 0; rc == 0 && i < sync.n; i++)
        rc = fsync_dir(sync.d[i], fsyncs);
done:
    dirset_free(&sync);
    return rc;
}

/* Removes the partial files of a tile (and their directory) once it is full: tlog-tiles lets a
 * log delete them then, and readers fall back on the full tile. Best effort. */
static void drop_partials(const tdsx_tlog_t *t, int level, uint64_t index, unsigned above)
{
    char dir[PATH_CAP], path[PATH_CAP];
    if (pdir_path(t, dir, level, index) < 0)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    unsigned left = 0;
    while ((de = readdir(d)) != NULL) {
        unsigned w = width_name(de->d_name);
        if (w == 0) {
            left += de->d_name[0] != '.';
            continue;
        }
        if (w <= above) {
            left++;
            continue;
        }
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(d);
    if (left == 0)
        rmdir(dir);
}

/* ------------------------------------------------------------------------------------------
 * Checkpoints
 * ---------------------------------------------------------------------------------------- */

static int sign_checkpoint(tdsx_tlog_t *t, uint64_t size, const tdsx_hash_t *root, tdsx_buf_t *out)
{
    const tdsx_note_verifier_t *k = tdsx_note_signer_verifier(t->signer);
    tdsx_checkpoint_t cp = {tdsx_bytes(k->name, k->name_len), size, *root, tdsx_bytes(NULL, 0)};
    return tdsx_checkpoint_sign(&cp, t->signer, out);
}

/* Writes the checkpoint durably (temporary file, fsync, rename, fsync of the directory). */
static int publish_durably(tdsx_tlog_t *t, const tdsx_buf_t *note)
{
    char tmp[PATH_CAP], final[PATH_CAP];
    plan_t plan = {0};
    uint64_t n = 0;
    int wrote = 0;
    int rc = top_path(t, tmp, "checkpoint.tmp");
    if (rc == 0)
        rc = top_path(t, final, "checkpoint");
    if (rc == 0)
        rc = plan_add(&plan, tmp, note->p, note->len);
    if (rc == 0)
        rc = plan_write(t, &plan, &n, &wrote);
    if (rc == 0 && rename(tmp, final) != 0)
        rc = io_fail("rename", final, errno);
    if (rc == 0 && fsync(t->dirfd) != 0 && errno != EINVAL)
        rc = io_fail("fsync dir", t->dir, errno);
    plan_free(&plan);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Opening and recovery
 * ---------------------------------------------------------------------------------------- */

/* The w hashes of the right-edge tile (level, index): its partial file, or the first w of the
 * full tile when the partial one was already dropped. */
static int read_edge_hashes(tdsx_tlog_t *t, unsigned level, uint64_t index, unsigned w,
                            tile_t *tile)
{
    char path[PATH_CAP];
    uint8_t *data = NULL;
    size_t len;
    int rc = tile_path(t, path, (int)level, index, w);
    if (rc == 0)
        rc = read_file(path, TILE_BYTES, &data, &len);
    if (rc == 0 && len != (size_t)w * TDSX_HASH_LEN)
        rc = corrupt("partial tile of the wrong size", path);
    if (rc == TDSX_E_NOTFOUND) {
        rc = tile_path(t, path, (int)level, index, 0);
        if (rc == 0)
            rc = read_file(path, TILE_BYTES, &data, &len);
        if (rc == TDSX_E_NOTFOUND)
            rc = corrupt("edge tile missing", path);
        if (rc == 0 && len != TILE_BYTES)
            rc = corrupt("full tile of the wrong size", path);
    }
    t->stats.tile_reads += rc == 0;
    tile->width = 0;
    for (unsigned i = 0; rc == 0 && i < w; i++) {
        tdsx_hash_t h;
        memcpy(h.b, data + (size_t)i * TDSX_HASH_LEN, TDSX_HASH_LEN);
        rc = tile_push(tile, &h);
    }
    tdsx_free(data);
    return rc;
}

/* The right edge of the tree of `size` entries, from the files on disk. */
static int load_edge(tdsx_tlog_t *t, edge_t *e, uint64_t size)
{
    char path[PATH_CAP];
    uint8_t *data = NULL;
    tdsx_bytes_t *ent = NULL;
    size_t len, used;
    int rc = 0;

    e->size = size;
    tdsx_buf_reset(&e->bundle);
    for (unsigned l = 0; l < LEVELS; l++) {
        e->tile[l].width = 0;
        unsigned w = tile_width(size, l);
        if (w && (rc = read_edge_hashes(t, l, tile_index(size, l), w, &e->tile[l])) < 0)
            return rc;
    }
    unsigned w = tile_width(size, 0);
    if (w == 0)
        return 0;
    int full = 0;
    rc = tile_path(t, path, ENTRIES_LEVEL, tile_index(size, 0), w);
    if (rc == 0)
        rc = read_file(path, BUNDLE_CAP, &data, &len);
    if (rc == TDSX_E_NOTFOUND) {
        full = 1;
        rc = tile_path(t, path, ENTRIES_LEVEL, tile_index(size, 0), 0);
        if (rc == 0)
            rc = read_file(path, BUNDLE_CAP, &data, &len);
        if (rc == TDSX_E_NOTFOUND)
            rc = corrupt("edge entry bundle missing", path);
    }
    if (rc < 0)
        return rc;
    t->stats.bundle_reads++;
    ent = tdsx_calloc(TILE_W, sizeof *ent);
    if (!ent) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    if (bundle_split(tdsx_bytes(data, len), full ? TILE_W : w, 1, ent, &used) < 0 ||
        (full && bundle_split(tdsx_bytes(data, len), w, 0, ent, &used) < 0)) {
        rc = corrupt("entry bundle does not parse", path);
        goto fail;
    }
    for (unsigned i = 0; i < w; i++) {
        tdsx_hash_t h;
        rc = tdsx_merkle_leaf_hash(ent[i].p ? ent[i].p : data, ent[i].n, &h);
        if (rc < 0)
            goto fail;
        if (!hash_eq(&h, &e->tile[0].n[i])) {
            rc = corrupt("entry does not hash to its tile", path);
            goto fail;
        }
    }
    rc = tdsx_buf_append(&e->bundle, data, used);
fail:
    tdsx_free(ent);
    tdsx_free(data);
    return rc;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Sizes past `from` for which an append might have written files: every partial width and
 * full entry bundle in the tiles from the edge onwards. */
static int candidates(const tdsx_tlog_t *t, uint64_t from, uint64_t **out, size_t *n)
{
    char path[PATH_CAP];
    uint64_t *c = NULL;
    size_t nc = 0, alloc = 0;
    int rc = 0;
    uint64_t t0 = tile_index(from, 0);
    for (uint64_t ti = t0; rc == 0 && ti - t0 < RECOVER_TILES_MAX; ti++) {
        rc = pdir_path(t, path, ENTRIES_LEVEL, ti);
        if (rc < 0)
            break;
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && rc == 0 && (de = readdir(d)) != NULL) {
            unsigned w = width_name(de->d_name);
            uint64_t s = ti * TILE_W + w;
            if (w == 0 || s <= from)
                continue;
            if (nc == alloc) {
                size_t na = alloc ? 2 * alloc : 64;
                uint64_t *nw = tdsx_reallocarray(c, na, sizeof *nw);
                if (!nw) {
                    rc = TDSX_E_NOMEM;
                    break;
                }
                c = nw;
                alloc = na;
            }
            c[nc++] = s;
        }
        if (d)
            closedir(d);
        if (rc < 0)
            break;
        rc = tile_path(t, path, ENTRIES_LEVEL, ti, 0);
        if (rc < 0 || !exists(path))
            break;
        if (nc == alloc) {
            size_t na = alloc ? 2 * alloc : 64;
            uint64_t *nw = tdsx_reallocarray(c, na, sizeof *nw);
            if (!nw) {
                rc = TDSX_E_NOMEM;
                break;
            }
            c = nw;
            alloc = na;
        }
        c[nc++] = (ti + 1) * TILE_W;
    }
    if (rc < 0) {
        tdsx_free(c);
        return rc;
    }
    if (nc)
        qsort(c, nc, sizeof *c, cmp_desc);
    *out = c;
    *n = nc;
    return 0;
}

/* Whether the files on disk hold a tree of `size` entries extending t->cur: replays an append
 * of the entries the bundles hold and compares every file it would write. 0 and t->next set
 * to that tree when they agree, TDSX_E_LOG_CORRUPT when not. */
static int try_size(tdsx_tlog_t *t, uint64_t size)
{
    const edge_t *cur = t->cur;
    edge_t *e = t->next;
    char path[PATH_CAP];
    uint8_t **bufs = NULL, *disk = NULL;
    tdsx_bytes_t *ent = NULL;
    size_t nbufs = 0, nent = 0;
    plan_t plan = {0};
    int rc;

    uint64_t t0 = tile_index(cur->size, 0), t1 = tile_index(size - 1, 0);
    bufs = tdsx_calloc((size_t)(t1 - t0 + 1), sizeof *bufs);
    ent = tdsx_calloc((size_t)(size - cur->size), sizeof *ent);
    if (!bufs || !ent) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    for (uint64_t ti = t0; ti <= t1; ti++) {
        int full = (ti + 1) * TILE_W <= size;
        size_t count = full ? TILE_W : tile_width(size, 0), len, used;
        tdsx_bytes_t split[TILE_W];
        rc = tile_path(t, path, ENTRIES_LEVEL, ti, full ? 0 : tile_width(size, 0));
        if (rc == 0)
            rc = read_file(path, BUNDLE_CAP, &bufs[nbufs], &len);
        if (rc == TDSX_E_NOTFOUND)
            rc = TDSX_E_LOG_CORRUPT;
        if (rc < 0)
            goto fail;
        t->stats.bundle_reads++;
        uint8_t *b = bufs[nbufs++];
        if (bundle_split(tdsx_bytes(b, len), count, 1, split, &used) < 0) {
            rc = TDSX_E_LOG_CORRUPT;
            goto fail;
        }
        size_t skip = ti == t0 ? tile_width(cur->size, 0) : 0;
        if (skip) {
            /* The entries the edge already holds must be these very bytes. */
            size_t held = cur->bundle.len;
            if (len < held || memcmp(b, cur->bundle.p, held) != 0) {
                rc = TDSX_E_LOG_CORRUPT;
                goto fail;
            }
        }
        for (size_t i = skip; i < count; i++)
            ent[nent++] = split[i];
    }
    rc = edge_copy(e, cur);
    if (rc == 0)
        rc = edge_advance(t, e, ent, nent, &plan);
    for (size_t i = 0; rc == 0 && i < plan.n; i++) {
        size_t len;
        rc = read_file(plan.f[i].path, plan.f[i].len, &disk, &len);
        if (rc == TDSX_E_NOTFOUND)
            rc = TDSX_E_LOG_CORRUPT;
        if (rc == 0 && (len != plan.f[i].len || memcmp(disk, plan.f[i].data, len) != 0))
            rc = TDSX_E_LOG_CORRUPT;
        tdsx_free(disk);
        disk = NULL;
    }
fail:
    plan_free(&plan);
    for (size_t i = 0; i < nbufs; i++)
        tdsx_free(bufs[i]);
    tdsx_free(bufs);
    tdsx_free(ent);
    return rc;
}

/* Removes what lies past `size`: the right-edge tiles' wider partial files, full tiles that
 * cannot exist yet, and whole tiles further right (torn writes of an unfinished append). */
static void remove_beyond(const tdsx_tlog_t *t, uint64_t size)
{
    char path[PATH_CAP];
    for (int l = ENTRIES_LEVEL; l < LEVELS; l++) {
        unsigned lv = l == ENTRIES_LEVEL ? 0 : (unsigned)l;
        uint64_t ti = tile_index(size, lv);
        drop_partials(t, l, ti, tile_width(size, lv));
        for (uint64_t k = ti; k - ti < RECOVER_TILES_MAX; k++) {
            int any = 0;
            if (tile_path(t, path, l, k, 0) == 0 && unlink(path) == 0) {
                any = 1;
                tdsx_log(TDSX_LOG_WARN, "tlog.discard", TDSX_KV_S("path", path));
            }
            if (k > ti && pdir_path(t, path, l, k) == 0 && exists(path)) {
                any = 1;
                drop_partials(t, l, k, 0);
            }
            if (!any && k > ti)
                break;
        }
    }
}

static void tlog_free(tdsx_tlog_t *t)
{
    if (!t)
        return;
    if (t->dirfd >= 0)
        close(t->dirfd); /* also releases the flock */
    if (t->cur)
        tdsx_buf_free(&t->cur->bundle);
    if (t->next)
        tdsx_buf_free(&t->next->bundle);
    tdsx_free(t->cur);
    tdsx_free(t->next);
    tdsx_buf_free(&t->checkpoint);
    tdsx_free(t->bcache.data);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->append_lock);
    tdsx_free(t);
}

/* Loads and checks the published checkpoint, extends it to what the disk holds, and removes
 * what lies beyond. */
static int recover(tdsx_tlog_t *t)
{
    char path[PATH_CAP];
    uint8_t *data = NULL;
    uint64_t *cand = NULL;
    size_t len, ncand = 0;
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    const tdsx_note_verifier_t *key = tdsx_note_signer_verifier(t->signer);
    int rc = top_path(t, path, "checkpoint");
    if (rc == 0)
        rc = read_file(path, TDSX_NOTE_MAX, &data, &len);
    if (rc == TDSX_E_NOTFOUND) {
        /* A new log. Tiles without any checkpoint are not: we never write one before the other. */
        rc = top_path(t, path, "tile");
        if (rc == 0 && exists(path))
            return corrupt("tiles without a checkpoint", path);
        tdsx_hash_t empty;
        rc = tdsx_sha256(NULL, 0, empty.b);
        if (rc == 0)
            rc = sign_checkpoint(t, 0, &empty, &t->checkpoint);
        if (rc == 0)
            rc = publish_durably(t, &t->checkpoint);
        if (rc == 0)
            t->root = empty;
        return rc;
    }
    if (rc < 0)
        return rc;
    rc = tdsx_checkpoint_open(tdsx_bytes(data, len), key, NULL, 0, key->name, &note, &cp);
    if (rc < 0) {
        tdsx_log(TDSX_LOG_ERROR, "tlog.checkpoint", TDSX_KV_S("path", path),
                 TDSX_KV_E("error", rc));
        goto fail;
    }
    if (cp.size >= SIZE_LIMIT) {
        rc = corrupt("checkpoint size out of range", path);
        goto fail;
    }
    rc = load_edge(t, t->cur, cp.size);
    if (rc == 0)
        rc = range_hash(t, t->cur, 0, cp.size, &t->root);
    if (rc == 0 && !hash_eq(&t->root, &cp.root))
        rc = corrupt("tiles do not reproduce the checkpoint root", path);
    if (rc == 0)
        rc = tdsx_buf_append(&t->checkpoint, data, len);
    if (rc < 0)
        goto fail;

    rc = candidates(t, cp.size, &cand, &ncand);
    for (size_t i = 0; rc == 0 && i < ncand; i++) {
        if (i && cand[i] == cand[i - 1])
            continue;
        rc = try_size(t, cand[i]);
        if (rc == TDSX_E_LOG_CORRUPT) {
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        /* The disk holds a longer tree than the checkpoint says (an append made its files
         * durable but its checkpoint rename was lost): publish it. */
        edge_t *x = t->cur;
        t->cur = t->next;
        t->next = x;
        tdsx_buf_reset(&t->checkpoint);
        rc = range_hash(t, t->cur, 0, t->cur->size, &t->root);
        if (rc == 0)
            rc = sign_checkpoint(t, t->cur->size, &t->root, &t->checkpoint);
        if (rc == 0)
            rc = publish_durably(t, &t->checkpoint);
        if (rc == 0)
            tdsx_log(TDSX_LOG_INFO, "tlog.recovered", TDSX_KV_I("checkpoint", cp.size),
                     TDSX_KV_I("size", t->cur->size));
        break;
    }
    if (rc == 0)
        remove_beyond(t, t->cur->size);
fail:
    tdsx_free(cand);
    tdsx_note_free(note);
    tdsx_free(data);
    return rc;
}

int tdsx_tlog_open(const char *dir, const tdsx_note_signer_t *log, tdsx_tlog_t **out)
{
    tdsx_tlog_t *t = NULL;
    int rc;

    if (!dir || !log || !out)
        return TDSX_E_INVAL;
    *out = NULL;
    if (tdsx_note_signer_verifier(log)->type != TDSX_NOTE_ED25519)
        return TDSX_E_KEY;
    size_t dlen = strlen(dir);
    if (dlen == 0)
        return TDSX_E_INVAL;
    if (dlen > TDSX_TLOG_DIR_MAX)
        return TDSX_E_TOOBIG;
    t = tdsx_calloc(1, sizeof *t);
    if (!t)
        return TDSX_E_NOMEM;
    t->dirfd = -1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->append_lock, NULL);
    memcpy(t->dir, dir, dlen + 1);
    t->signer = log;
    tdsx_buf_init(&t->checkpoint, TDSX_NOTE_MAX);
    t->cur = tdsx_calloc(1, sizeof *t->cur);
    t->next = tdsx_calloc(1, sizeof *t->next);
    if (!t->cur || !t->next) {
        rc = TDSX_E_NOMEM;
        goto fail;
    }
    tdsx_buf_init(&t->cur->bundle, BUNDLE_CAP);
    tdsx_buf_init(&t->next->bundle, BUNDLE_CAP);

    if (mkdir(dir, 0700) == 0) {
        if (chmod(dir, 0700) != 0) {
            rc = io_fail("chmod", dir, errno);
            goto fail;
        }
        /* The new directory's own name must last too. */
        char parent[PATH_CAP];
        size_t plen = parent_len(dir);
        const char *from = plen ? dir : dir[0] == '/' ? "/" : ".";
        plen = plen ? plen : 1;
        memcpy(parent, from, plen);
        parent[plen] = '\0';
        uint64_t n = 0;
        rc = fsync_dir(parent, &n);
        if (rc < 0)
            goto fail;
    } else if (errno != EEXIST) {
        rc = io_fail("mkdir", dir, errno);
        goto fail;
    }
    t->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->dirfd < 0) {
        rc = io_fail("open", dir, errno);
        goto fail;
    }
    if (flock(t->dirfd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? TDSX_E_BUSY : io_fail("flock", dir, errno);
        goto fail;
    }
    char tmp[PATH_CAP];
    if (top_path(t, tmp, "checkpoint.tmp") == 0)
        unlink(tmp);
    rc = recover(t);
    if (rc < 0)
        goto fail;
    *out = t;
    return 0;
fail:
    tlog_free(t);
    return rc;
}

void tdsx_tlog_close(tdsx_tlog_t *t)
{
    if (!t)
        return;
    /* The last append's rename becomes durable here, not only at the next append. */
    if (fsync(t->dirfd) != 0 && errno != EINVAL)
        (void)io_fail("fsync dir", t->dir, errno);
    tlog_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Appending
 * ---------------------------------------------------------------------------------------- */

int tdsx_tlog_append(tdsx_tlog_t *t, const tdsx_bytes_t *entries, size_t n, uint64_t *first)
{
    char tmp[PATH_CAP], final[PATH_CAP];
    plan_t plan = {0};
    tdsx_buf_t note;
    tdsx_hash_t root;
    uint64_t fsyncs = 0;
    int rc;

    if (!t || !entries || !first)
        return TDSX_E_INVAL;
    if (n == 0 || n > TDSX_TLOG_BATCH_MAX)
        return TDSX_E_INVAL;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].p && entries[i].n)
            return TDSX_E_INVAL;
        if (entries[i].n > TDSX_TLOG_ENTRY_MAX)
            return TDSX_E_TOOBIG;
        bytes += entries[i].n;
    }
    if (bytes > TDSX_TLOG_BATCH_BYTES_MAX)
        return TDSX_E_TOOBIG;
    tdsx_buf_init(&note, TDSX_NOTE_MAX);

    pthread_mutex_lock(&t->append_lock);
    edge_t *cur = t->cur, *next = t->next;
    if (t->failed) {
        rc = t->failed;
        goto done;
    }
    if (cur->size + n >= SIZE_LIMIT) {
        rc = TDSX_E_TOOBIG;
        goto done;
    }
    /* Until plan_write starts nothing is on disk, so failures up to there are not sticky. */
    rc = edge_copy(next, cur);
    if (rc == 0)
        rc = edge_advance(t, next, entries, n, &plan);
    if (rc == 0)
        rc = range_hash(t, next, 0, next->size, &root);
    if (rc == 0)
        rc = sign_checkpoint(t, next->size, &root, &note);
    if (rc == 0)
        rc = top_path(t, tmp, "checkpoint.tmp");
    if (rc == 0)
        rc = top_path(t, final, "checkpoint");
    if (rc == 0)
        rc = plan_add(&plan, tmp, note.p, note.len);
    if (rc < 0)
        goto done;

    int wrote = 0;
    rc = plan_write(t, &plan, &fsyncs, &wrote);
    if (rc == 0 && rename(tmp, final) != 0)
        rc = io_fail("rename", final, errno);
    if (rc < 0 && !wrote)
        goto done; /* only directories were made: nothing to recover from */
    if (rc < 0) {
        t->failed = rc;
        tdsx_log(TDSX_LOG_ERROR, "tlog.append_failed", TDSX_KV_S("dir", t->dir),
                 TDSX_KV_E("error", rc));
        goto done;
    }

    pthread_mutex_lock(&t->lock);
    *first = cur->size;
    t->cur = next;
    t->next = cur;
    t->root = root;
    tdsx_buf_t x = t->checkpoint; /* swapped, not copied: nothing may fail past the rename */
    t->checkpoint = note;
    note = x;
    t->stats.appends++;
    t->stats.entries += n;
    t->stats.fsyncs += fsyncs;
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < plan.nfull; i++)
        drop_partials(t, plan.full[i].level, plan.full[i].index, 0);
done:
    pthread_mutex_unlock(&t->append_lock);
    plan_free(&plan);
    tdsx_buf_free(&note);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------------------------- */

void tdsx_tlog_head(tdsx_tlog_t *t, uint64_t *size, tdsx_hash_t *root)
{
    pthread_mutex_lock(&t->lock);
    if (size)
        *size = t->cur->size;
    if (root)
        *root = t->root;
    pthread_mutex_unlock(&t->lock);
}

int tdsx_tlog_checkpoint(tdsx_tlog_t *t, tdsx_buf_t *out)
{
    if (!t || !out)
        return TDSX_E_INVAL;
    pthread_mutex_lock(&t->lock);
    int rc = tdsx_buf_append(out, t->checkpoint.p, t->checkpoint.len);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Reads full bundle bi into the bundle cache, accepting it only when every entry hashes to its
 * level-0 hash. */
static int load_bundle(tdsx_tlog_t *t, const edge_t *e, uint64_t bi)
{
    char path[PATH_CAP];
    uint8_t *data = NULL;
    tdsx_bytes_t ent[TILE_W];
    const tile_t *tile;
    size_t len, used;
    int rc = tile_path(t, path, ENTRIES_LEVEL, bi, 0);
    if (rc == 0)
        rc = read_file(path, BUNDLE_CAP, &data, &len);
    if (rc == TDSX_E_NOTFOUND)
        rc = corrupt("entry bundle missing", path);
    if (rc < 0)
        return rc;
    t->stats.bundle_reads++;
    if (bundle_split(tdsx_bytes(data, len), TILE_W, 1, ent, &used) < 0) {
        rc = corrupt("entry bundle does not parse", path);
        goto fail;
    }
    rc = get_tile(t, e, 0, bi, &tile);
    for (size_t i = 0; rc == 0 && i < TILE_W; i++) {
        tdsx_hash_t h;
        rc = tdsx_merkle_leaf_hash(ent[i].p ? ent[i].p : data, ent[i].n, &h);
        if (rc == 0 && (tile->width != TILE_W || !hash_eq(&h, &tile->n[i])))
            rc = corrupt("entry does not hash to its tile", path);
    }
    if (rc < 0)
        goto fail;
    tdsx_free(t->bcache.data);
    t->bcache.used = 1;
    t->bcache.index = bi;
    t->bcache.data = data;
    memcpy(t->bcache.ent, ent, sizeof ent);
    return 0;
fail:
    tdsx_free(data);
    return rc;
}

static int entry_locked(tdsx_tlog_t *t, uint64_t index, tdsx_buf_t *out)
{
    const edge_t *e = t->cur;
    tdsx_bytes_t ent[TILE_W];
    size_t used;

    if (index >= e->size)
        return TDSX_E_NOTFOUND;
    uint64_t bi = index / TILE_W;
    size_t k = (size_t)(index % TILE_W);
    if (bi == tile_index(e->size, 0)) {
        /* The edge's bundle is ours, built by our appends. */
        int rc = bundle_split(tdsx_buf_bytes(&e->bundle), k + 1, 0, ent, &used);
        return rc < 0 ? TDSX_E_INTERNAL : tdsx_buf_append(out, ent[k].p, ent[k].n);
    }
    if (!t->bcache.used || t->bcache.index != bi) {
        int rc = load_bundle(t, e, bi);
        if (rc < 0)
            return rc;
    }
    return tdsx_buf_append(out, t->bcache.ent[k].p, t->bcache.ent[k].n);
}

int tdsx_tlog_entry(tdsx_tlog_t *t, uint64_t index, tdsx_buf_t *out)
{
    if (!t || !out)
        return TDSX_E_INVAL;
    size_t mark = out->len;
    pthread_mutex_lock(&t->lock);
    int rc = entry_locked(t, index, out);
    pthread_mutex_unlock(&t->lock);
    if (rc < 0)
        out->len = mark;
    return rc;
}

int tdsx_tlog_root_at(tdsx_tlog_t *t, uint64_t size, tdsx_hash_t *root)
{
    if (!t || !root)
        return TDSX_E_INVAL;
    pthread_mutex_lock(&t->lock);
    int rc = size > t->cur->size ? TDSX_E_INVAL : range_hash(t, t->cur, 0, size, root);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* RFC 9162 §2.1.3.1 PATH(m, D[n]) walked from the root down; each step records the sibling
 * subtree's hash, listed leaf first at the end. */
static int inclusion_locked(tdsx_tlog_t *t, uint64_t index, uint64_t size,
                            tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *len)
{
    const edge_t *e = t->cur;
    if (index >= size || size > e->size)
        return TDSX_E_INVAL;
    uint64_t lo = 0, n = size, m = index;
    size_t k = 0;
    while (n > 1) {
        uint64_t s = split_point(n);
        int rc;
        if (m < s) {
            rc = range_hash(t, e, lo + s, lo + n, &path[k]);
            n = s;
        } else {
            rc = range_hash(t, e, lo, lo + s, &path[k]);
            lo += s;
            m -= s;
            n -= s;
        }
        if (rc < 0)
            return rc;
        k++;
    }
    reverse(path, k);
    *len = k;
    return 0;
}

int tdsx_tlog_inclusion_proof(tdsx_tlog_t *t, uint64_t index, uint64_t size,
                              tdsx_hash_t path[TDSX_MERKLE_PATH_MAX], size_t *len)
{
    if (!t || !path || !len)
        return TDSX_E_INVAL;
    pthread_mutex_lock(&t->lock);
    int rc = inclusion_locked(t, index, size, path, len);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], true), unrolled from the root down. */
static int consistency_locked(tdsx_tlog_t *t, uint64_t m, uint64_t n,
                              tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX], size_t *len)
{
    const edge_t *e = t->cur;
    if (m > n || n > e->size)
        return TDSX_E_INVAL;
    *len = 0;
    if (m == 0 || m == n)
        return 0;
    uint64_t lo = 0, size = n, mm = m;
    size_t k = 0;
    int whole = 1; /* b: the subtree of mm leaves is the old tree itself */
    for (;;) {
        int rc = 0;
        if (mm == size) {
            if (!whole)
                rc = range_hash(t, e, lo, lo + size, &proof[k++]);
            if (rc < 0)
                return rc;
            break;
        }
        uint64_t s = split_point(size);
        if (mm <= s) {
            rc = range_hash(t, e, lo + s, lo + size, &proof[k]);
            size = s;
        } else {
            rc = range_hash(t, e, lo, lo + s, &proof[k]);
            lo += s;
            mm -= s;
            size -= s;
            whole = 0;
        }
        if (rc < 0)
            return rc;
        k++;
    }
    reverse(proof, k);
    *len = k;
    return 0;
}

int tdsx_tlog_consistency_proof(tdsx_tlog_t *t, uint64_t m, uint64_t n,
                                tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX], size_t *len)
{
    if (!t || !proof || !len)
        return TDSX_E_INVAL;
    pthread_mutex_lock(&t->lock);
    int rc = consistency_locked(t, m, n, proof, len);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void tdsx_tlog_stats(tdsx_tlog_t *t, tdsx_tlog_stats_t *out)
{
    pthread_mutex_lock(&t->lock);
    *out = t->stats;
    pthread_mutex_unlock(&t->lock);
}
