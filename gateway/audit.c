/*
 * audit.c — evidence export and offline verification (SPEC §13). The layout is in audit.h.
 *
 * The verifier trusts only the anchor: the node's sign certificate must chain to it before its
 * key opens a checkpoint; the tiles must reproduce the signed root (RFC 9162 §2.1.1) before an
 * entry counts; every receipt half must verify under a certificate that chains to the anchor
 * and was not revoked when the statement says it was signed. The MANIFEST only detects damage
 * in transit: it is unsigned, so every check below stands on signatures, not on it.
 */
#include "audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <sqlite3.h>

#include "bundle.h"
#include "certs.h"
#include "crypto.h"
#include "gateway.h"
#include "log.h"
#include "proto.h"
#include "report.h"
#include "statement.pb-c.h"
#include "tlog.h"

#define PATH_CAP 4096
#define TILE_W 256u
#define ENTRIES_LEVEL (-1)
#define EXPORT_RETRIES 10
#define EXPORT_SKEW 600 /* seconds the node's and the witness's clocks may differ */
#define CERTS_MAX 4096u
#define VERIFIER_CACHE 4096u
#define LEVELS_MAX 8
#define TILE_FAILS_SHOWN 10
/* Leaves one audit holds in memory (32 bytes each): a signed size beyond it is refused. */
#define TREE_MAX (1ull << 30)

/* ---- small helpers ------------------------------------------------------------------------ */

const char *tdsx_audit_result_name(tdsx_audit_result_t r)
{
    return r == TDSX_AUDIT_PASS ? "PASS" : r == TDSX_AUDIT_FAIL ? "FAIL" : "INDETERMINATE";
}

/* C2SP tlog-tiles tile index: 3-digit groups, all but the last prefixed with 'x'. */
static int index_path(char *out, size_t size, uint64_t index)
{
    unsigned g[8];
    size_t k = 0, used = 0;
    do {
        g[k++] = (unsigned)(index % 1000);
        index /= 1000;
    } while (index && k < 8);
    for (size_t i = k; i-- > 0;) {
        int w = snprintf(out + used, size - used, i ? "x%03u/" : "%03u", g[i]);
        if (w < 0 || (size_t)w >= size - used)
            return TDSX_E_TOOBIG;
        used += (size_t)w;
    }
    return 0;
}

/* "log/tile/<L>/<N>[.p/<W>]" relative to the evidence or log parent. */
static int tile_rel(char *out, size_t size, const char *prefix, int level, uint64_t index,
                    unsigned width)
{
    char n[48], lv[16];
    int rc = index_path(n, sizeof n, index);
    if (rc)
        return rc;
    if (level == ENTRIES_LEVEL)
        snprintf(lv, sizeof lv, "entries");
    else
        snprintf(lv, sizeof lv, "%d", level);
    int w = width ? snprintf(out, size, "%s/tile/%s/%s.p/%u", prefix, lv, n, width)
                  : snprintf(out, size, "%s/tile/%s/%s", prefix, lv, n);
    return w < 0 || (size_t)w >= size ? TDSX_E_TOOBIG : 0;
}

static int join(char *out, const char *a, const char *b)
{
    int w = snprintf(out, PATH_CAP, "%s/%s", a, b);
    return w < 0 || w >= PATH_CAP ? TDSX_E_TOOBIG : 0;
}

/* mkdir -p for the parents of path (0700). */
static int mkparents(const char *path)
{
    char p[PATH_CAP];
    size_t n = strlen(path);
    if (n >= sizeof p)
        return TDSX_E_TOOBIG;
    memcpy(p, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (p[i] != '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -errno;
        p[i] = '/';
    }
    return 0;
}

static int64_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Reads a whole evidence or node file; the caller tdsx_free()s *data (NULL for an empty file
 * or on error). */
static int read_all(const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    return tdsx_file_read(path, TDSX_AUDIT_FILE_MAX, data, len);
}

/*
 * Reads a file that must be a regular file reached without a symlink as its last component:
 * evidence files (the audited party made them) and the node's reports/ and bundles/ (export
 * copies nothing from outside the data directory through them). O_NONBLOCK: a FIFO put in
 * their place must not hang the reader on open(). A symlink is TDSX_E_UNSUPPORTED (ELOOP),
 * as is any other non-regular file.
 */
static int read_plain(const char *path, uint8_t **data, size_t *len)
{
    struct stat sb;
    uint8_t chunk[8192];
    tdsx_buf_t b;
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TDSX_E_NOTFOUND : errno == ELOOP ? TDSX_E_UNSUPPORTED : -errno;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return TDSX_E_UNSUPPORTED;
    }
    tdsx_buf_init(&b, TDSX_AUDIT_FILE_MAX);
    int rc = tdsx_buf_reserve(&b, 0);
    while (rc == 0) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : 0;
            break;
        }
        rc = tdsx_buf_append(&b, chunk, (size_t)r);
    }
    close(fd);
    if (rc) {
        tdsx_buf_free(&b);
        return rc;
    }
    b.p[b.len] = '\0'; /* as tdsx_file_read */
    *data = (uint8_t *)tdsx_buf_take(&b, len);
    return 0;
}

/* Takes the first `count` be16-length entries of a bundle; *n is their byte length. */
static int bundle_prefix(tdsx_bytes_t b, unsigned count, size_t *n)
{
    tdsx_bytes_t c = b;
    for (unsigned i = 0; i < count; i++) {
        uint16_t l;
        if (tdsx_bytes_u16be(&c, &l) != 0 || tdsx_bytes_skip(&c, l) != 0)
            return TDSX_E_LOG_CORRUPT;
    }
    *n = b.n - c.n;
    return 0;
}

/* ---- export ------------------------------------------------------------------------------- */

typedef struct {
    char *rel;
    char hex[2 * TDSX_HASH_LEN + 1];
} mfile_t;

typedef struct {
    const tdsx_config_t *cfg;
    const char *out;
    char logdir[PATH_CAP];
    mfile_t *files;
    size_t nfiles, afiles;
    uint8_t (*fps)[32]; /* peer certificates already written */
    size_t nfps;
} exporter_t;

static int put_file(exporter_t *x, const char *rel, const void *p, size_t n)
{
    char path[PATH_CAP];
    int rc = join(path, x->out, rel);
    if (rc == 0)
        rc = mkparents(path);
    if (rc)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? TDSX_E_EXISTS : -errno;
    const uint8_t *q = p;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, q, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : TDSX_E_IO;
            break;
        }
        q += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        return rc;
    if (x->nfiles == x->afiles) {
        size_t na = x->afiles ? 2 * x->afiles : 64;
        mfile_t *f = tdsx_reallocarray(x->files, na, sizeof *f);
        if (!f)
            return TDSX_E_NOMEM;
        x->files = f;
        x->afiles = na;
    }
    uint8_t h[TDSX_HASH_LEN];
    if ((rc = tdsx_sha256(p, n, h)) != 0)
        return rc;
    size_t rl = strlen(rel);
    char *r = tdsx_malloc(rl + 1);
    if (!r)
        return TDSX_E_NOMEM;
    memcpy(r, rel, rl + 1);
    x->files[x->nfiles].rel = r;
    tdsx_hex_encode(x->files[x->nfiles].hex, h, sizeof h);
    x->nfiles++;
    return 0;
}

/* Copies a file when it exists (an absent one is not an error: the evidence says what there
 * was). */
static int copy_file(exporter_t *x, const char *src, const char *rel)
{
    uint8_t *d = NULL;
    size_t n = 0;
    int rc = read_all(src, &d, &n);
    if (rc == TDSX_E_NOTFOUND)
        return 0;
    if (rc == 0)
        rc = put_file(x, rel, d, n);
    tdsx_free(d);
    return rc;
}

/*
 * Reads the first `count` hashes (level >= 0) or entries (entries level) of tile `k` as the
 * tree of `count` in that tile needs them. A live daemon removes a partial tile once a wider
 * one is written, so a missing file is looked for as a wider partial or the full tile: a
 * tile's prefix never changes (c2sp.org/tlog-tiles).
 */
static int read_tile(exporter_t *x, int level, uint64_t k, unsigned count, uint8_t **data,
                     size_t *len)
{
    char path[PATH_CAP];
    int rc = TDSX_E_NOTFOUND;
    /* The exact width first, then wider partials, then the full tile (width 0 in its name). */
    for (unsigned w = count == TILE_W ? TILE_W : count; w <= TILE_W && rc == TDSX_E_NOTFOUND; w++) {
        if ((rc = tile_rel(path, sizeof path, x->logdir, level, k, w == TILE_W ? 0 : w)) != 0)
            return rc;
        tdsx_free(*data);
        *data = NULL;
        rc = read_all(path, data, len);
    }
    if (rc)
        return rc;
    if (level == ENTRIES_LEVEL)
        return bundle_prefix(tdsx_bytes(*data, *len), count, len);
    if (*len < (size_t)count * TDSX_HASH_LEN)
        return TDSX_E_LOG_CORRUPT;
    *len = (size_t)count * TDSX_HASH_LEN;
    return 0;
}

/* Writes every tile of the tree of `size` (entry bundles only for [from, to)); fills leaves. */
static int export_tiles(exporter_t *x, uint64_t size, uint64_t from, uint64_t to,
                        tdsx_hash_t *leaves)
{
    char rel[PATH_CAP];
    uint8_t *d = NULL;
    size_t n = 0;
    int rc = 0;
    for (int level = 0; level < LEVELS_MAX && rc == 0; level++) {
        uint64_t count = size >> (8 * level);
        if (count == 0)
            break;
        for (uint64_t k = 0; k * TILE_W < count && rc == 0; k++) {
            unsigned w = (unsigned)(count - k * TILE_W >= TILE_W ? TILE_W : count - k * TILE_W);
            if ((rc = read_tile(x, level, k, w, &d, &n)) != 0 ||
                (rc = tile_rel(rel, sizeof rel, "log", level, k, w == TILE_W ? 0 : w)) != 0 ||
                (rc = put_file(x, rel, d, n)) != 0)
                break;
            if (level == 0)
                memcpy(leaves + k * TILE_W, d, n);
        }
    }
    for (uint64_t k = from / TILE_W; rc == 0 && k * TILE_W < to; k++) {
        unsigned w = (unsigned)(size - k * TILE_W >= TILE_W ? TILE_W : size - k * TILE_W);
        if ((rc = read_tile(x, ENTRIES_LEVEL, k, w, &d, &n)) != 0 ||
            (rc = tile_rel(rel, sizeof rel, "log", ENTRIES_LEVEL, k, w == TILE_W ? 0 : w)) != 0)
            break;
        rc = put_file(x, rel, d, n);
    }
    tdsx_free(d);
    return rc == TDSX_E_NOTFOUND ? TDSX_E_LOG_CORRUPT : rc;
}

/* Size and root of a checkpoint note, unverified (the exporter only needs the numbers). */
static int peek_checkpoint(tdsx_bytes_t msg, uint64_t *size, tdsx_hash_t *root)
{
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t cp;
    int rc = tdsx_note_parse(msg, &note);
    if (rc == 0 && (rc = tdsx_checkpoint_parse(tdsx_note_text(note), &cp)) == 0) {
        *size = cp.size;
        if (root)
            *root = cp.root;
    }
    tdsx_note_free(note);
    return rc;
}

static int put_proof(exporter_t *x, const tdsx_hash_t *leaves, uint64_t m, uint64_t n)
{
    tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t len = 0;
    char rel[64], hex[2 * TDSX_HASH_LEN + 1];
    tdsx_buf_t b;
    tdsx_buf_init(&b, 8192);
    int rc = 0;
    if (m > 0 && m < n)
        rc = tdsx_merkle_consistency_proof(leaves, (size_t)n, (size_t)m, proof, &len);
    if (rc == 0)
        rc = tdsx_buf_printf(&b, "tdsx-consistency v1 %llu %llu\n", (unsigned long long)m,
                             (unsigned long long)n);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        tdsx_hex_encode(hex, proof[i].b, TDSX_HASH_LEN);
        rc = tdsx_buf_printf(&b, "%s\n", hex);
    }
    snprintf(rel, sizeof rel, "proofs/%llu-%llu", (unsigned long long)m, (unsigned long long)n);
    if (rc == 0)
        rc = put_file(x, rel, b.p, b.len);
    tdsx_buf_free(&b);
    return rc == TDSX_E_EXISTS ? 0 : rc;
}

static int put_der(exporter_t *x, const void *der, size_t n, const char *rel_or_null)
{
    uint8_t fp[32];
    char rel[128], hex[65];
    int rc = tdsx_sha256(der, n, fp);
    if (rc || n == 0)
        return rc;
    if (rel_or_null)
        return put_file(x, rel_or_null, der, n);
    for (size_t i = 0; i < x->nfps; i++)
        if (memcmp(x->fps[i], fp, 32) == 0)
            return 0;
    if (x->nfps >= CERTS_MAX)
        return 0;
    if (!x->fps && !(x->fps = tdsx_calloc(CERTS_MAX, 32)))
        return TDSX_E_NOMEM;
    memcpy(x->fps[x->nfps++], fp, 32);
    tdsx_hex_encode(hex, fp, 32);
    snprintf(rel, sizeof rel, "certs/peers/%s.der", hex);
    return put_file(x, rel, der, n);
}

/* Counterparts' sign certificates from the node's SQLite store, opened read-only (WAL lets
 * the daemon keep writing). A store that is not there is not an error: no counterparts. */
static int export_peer_certs(exporter_t *x)
{
    char path[PATH_CAP];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = join(path, x->cfg->data_dir, "meta.db");
    if (rc)
        return rc;
    if (access(path, R_OK) != 0)
        return 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = TDSX_E_IO;
        goto done;
    }
    sqlite3_busy_timeout(db, 5000);
    static const char *const queries[] = {"SELECT peer, der FROM peer_certs",
                                          "SELECT '', sender_cert FROM receipts",
                                          "SELECT '', receiver_cert FROM receipts"};
    for (size_t q = 0; q < sizeof queries / sizeof queries[0] && rc == 0; q++) {
        if (sqlite3_prepare_v2(db, queries[q], -1, &st, NULL) != SQLITE_OK) {
            rc = TDSX_E_IO;
            break;
        }
        int s;
        while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
            const void *der = sqlite3_column_blob(st, 1);
            size_t n = (size_t)sqlite3_column_bytes(st, 1);
            const char *peer = (const char *)sqlite3_column_text(st, 0);
            if (!der || !n)
                continue;
            rc = put_der(x, der, n, NULL);
            if (rc == 0 && x->cfg->witness && peer && strcmp(peer, x->cfg->witness) == 0)
                rc = put_der(x, der, n, "certs/witness.der");
        }
        sqlite3_finalize(st);
        st = NULL;
    }
done:
    sqlite3_close(db);
    return rc;
}

static int cmp_mfile(const void *a, const void *b)
{
    return strcmp(((const mfile_t *)a)->rel, ((const mfile_t *)b)->rel);
}

/* Copies the regular files of <data_dir>/<sub> (not its subdirectories) to <sub>/. */
static int export_dir(exporter_t *x, const char *sub)
{
    char dir[PATH_CAP], src[PATH_CAP], rel[PATH_CAP];
    int rc = join(dir, x->cfg->data_dir, sub);
    if (rc)
        return rc;
    /* O_NOFOLLOW, lstat and read_plain: a symlink as the directory or as one of its files
     * would copy files from outside the data directory into the evidence. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        uint8_t *data = NULL;
        size_t n = 0;
        if (de->d_name[0] == '.' || join(src, dir, de->d_name) != 0 || lstat(src, &sb) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        snprintf(rel, sizeof rel, "%s/%s", sub, de->d_name);
        rc = read_plain(src, &data, &n);
        if (rc == 0)
            rc = put_file(x, rel, data, n);
        else if (rc == TDSX_E_NOTFOUND || rc == TDSX_E_UNSUPPORTED)
            rc = 0; /* gone or replaced since readdir */
        tdsx_free(data);
    }
    closedir(d);
    return rc;
}

int tdsx_audit_export(const tdsx_config_t *cfg, const char *out, uint64_t from, uint64_t to)
{
    if (!cfg || !out || !cfg->data_dir || from > to)
        return TDSX_E_INVAL;
    exporter_t x = {cfg, out, {0}, NULL, 0, 0, NULL, 0};
    uint8_t *pub = NULL, *cos = NULL, *head = NULL;
    size_t npub = 0, ncos = 0, nhead = 0;
    tdsx_hash_t *leaves = NULL;
    tdsx_buf_t m;
    tdsx_buf_init(&m, TDSX_AUDIT_FILE_MAX);
    char path[PATH_CAP], rel[64];
    int rc;
    if ((rc = join(x.logdir, cfg->data_dir, TDSX_LOG_DIR)) != 0)
        return rc;
    if (mkdir(out, 0700) != 0) {
        DIR *d;
        struct dirent *de;
        int empty = 1;
        if (errno != EEXIST || !(d = opendir(out)))
            return -errno;
        while ((de = readdir(d)) != NULL)
            empty &= strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
        closedir(d);
        if (!empty)
            return TDSX_E_EXISTS;
    }
    /* Published and cosigned first: the head read after them is at least as large. */
    uint64_t spub = 0, scos = 0, size = 0;
    tdsx_hash_t root;
    if ((rc = join(path, cfg->data_dir, TDSX_LOG_PUBLISHED_FILE)) != 0)
        goto done;
    rc = read_all(path, &pub, &npub);
    if (rc == 0 && (rc = peek_checkpoint(tdsx_bytes(pub, npub), &spub, NULL)) != 0)
        goto done;
    if (rc && rc != TDSX_E_NOTFOUND)
        goto done;
    if ((rc = join(path, cfg->data_dir, TDSX_LOG_COSIGNED_FILE)) != 0)
        goto done;
    rc = read_all(path, &cos, &ncos);
    if (rc == 0 && (rc = peek_checkpoint(tdsx_bytes(cos, ncos), &scos, NULL)) != 0)
        goto done;
    if (rc && rc != TDSX_E_NOTFOUND)
        goto done;
    rc = TDSX_E_NOTFOUND;
    for (int attempt = 0; attempt < EXPORT_RETRIES; attempt++) {
        /* A retry starts the tiles over: forget what the failed attempt wrote. */
        for (size_t i = 0; i < x.nfiles; i++) {
            if (join(path, out, x.files[i].rel) == 0)
                unlink(path);
            tdsx_free(x.files[i].rel);
        }
        x.nfiles = 0;
        tdsx_free(head);
        head = NULL;
        if ((rc = join(path, x.logdir, "checkpoint")) != 0 ||
            (rc = read_all(path, &head, &nhead)) != 0 ||
            (rc = peek_checkpoint(tdsx_bytes(head, nhead), &size, &root)) != 0)
            goto done;
        if (from > size) {
            rc = TDSX_E_INVAL;
            goto done;
        }
        uint64_t end = to > size ? size : to;
        tdsx_free(leaves);
        if (!(leaves = tdsx_calloc(size ? (size_t)size : 1, sizeof *leaves))) {
            rc = TDSX_E_NOMEM;
            goto done;
        }
        rc = export_tiles(&x, size, from, end, leaves);
        tdsx_hash_t check;
        if (rc == 0 && (rc = tdsx_merkle_root(leaves, (size_t)size, &check)) == 0 &&
            memcmp(check.b, root.b, TDSX_HASH_LEN) != 0)
            rc = TDSX_E_LOG_CORRUPT;
        if (rc != TDSX_E_LOG_CORRUPT)
            break;
        usleep(100000); /* the daemon was growing the log under us */
    }
    if (rc)
        goto done;
    uint64_t end = to > size ? size : to;
    if ((rc = put_file(&x, "log/checkpoint", head, nhead)) != 0 ||
        (pub && (rc = put_file(&x, "checkpoints/published", pub, npub)) != 0) ||
        (cos && (rc = put_file(&x, "checkpoints/cosigned", cos, ncos)) != 0))
        goto done;
    /* Successive checkpoints: cosigned -> published -> head. */
    uint64_t sizes[3];
    size_t ns = 0;
    if (cos && scos <= size)
        sizes[ns++] = scos;
    if (pub && spub <= size)
        sizes[ns++] = spub;
    sizes[ns++] = size;
    for (size_t i = 0; i + 1 < ns && rc == 0; i++)
        if (sizes[i] <= sizes[i + 1])
            rc = put_proof(&x, leaves, sizes[i], sizes[i + 1]);
    if (rc)
        goto done;
    static const char *const creds[] = {TDSX_CRED_SIGN_CERT, TDSX_CRED_AUTH_CERT, TDSX_CRED_CHAIN,
                                        TDSX_CRED_ROOT};
    for (size_t i = 0; i < sizeof creds / sizeof creds[0] && cfg->credentials; i++) {
        snprintf(rel, sizeof rel, "certs/%s", creds[i]);
        if ((rc = join(path, cfg->credentials, creds[i])) != 0 ||
            (rc = copy_file(&x, path, rel)) != 0)
            goto done;
    }
    if ((rc = export_peer_certs(&x)) != 0)
        goto done;
    for (size_t i = 0; i < cfg->n_crls; i++) {
        snprintf(rel, sizeof rel, "crls/%zu.pem", i);
        if ((rc = copy_file(&x, cfg->crls[i], rel)) != 0)
            goto done;
    }
    if ((rc = join(path, cfg->data_dir, "bundle.current")) != 0 ||
        (rc = copy_file(&x, path, "bundles/bundle.current")) != 0 ||
        (rc = export_dir(&x, TDSX_BUNDLE_HISTORY)) != 0 || (rc = export_dir(&x, "reports")) != 0)
        goto done;
    qsort(x.files, x.nfiles, sizeof *x.files, cmp_mfile);
    char id[TDSX_ID_SIZE] = "";
    {
        tdsx_note_t *note = NULL;
        tdsx_checkpoint_t cp;
        if (tdsx_note_parse(tdsx_bytes(head, nhead), &note) == 0 &&
            tdsx_checkpoint_parse(tdsx_note_text(note), &cp) == 0 && cp.origin.n < sizeof id)
            memcpy(id, cp.origin.p, cp.origin.n);
        tdsx_note_free(note);
    }
    rc = tdsx_buf_printf(&m, "%s\nnode %s\nsize %llu\nfrom %llu\nto %llu\nexported_at %lld\n",
                         TDSX_AUDIT_MAGIC, id, (unsigned long long)size, (unsigned long long)from,
                         (unsigned long long)end, (long long)tdsx_now());
    for (size_t i = 0; rc == 0 && i < x.nfiles; i++)
        rc = tdsx_buf_printf(&m, "%s %s\n", x.files[i].hex, x.files[i].rel);
    if (rc == 0 && (rc = join(path, out, TDSX_AUDIT_MANIFEST)) == 0)
        rc = tdsx_file_write(path, m.p, m.len, 0600, 0);
done:
    for (size_t i = 0; i < x.nfiles; i++)
        tdsx_free(x.files[i].rel);
    tdsx_free(x.files);
    tdsx_free(x.fps);
    tdsx_free(leaves);
    tdsx_free(pub);
    tdsx_free(cos);
    tdsx_free(head);
    tdsx_buf_free(&m);
    return rc;
}

/* ---- verification ------------------------------------------------------------------------- */

typedef struct {
    X509 *x;
    uint8_t fp[32];
    tdsx_hash_t key_id;
    tdsx_identity_t id;
    char ids[TDSX_ID_SIZE];
    int64_t nb, na;
    int64_t revoked_at; /* 0: not revoked by any CRL in the evidence */
    int base_rc;        /* chain, purpose, role, subject at a time inside its validity */
} cert_t;

typedef struct {
    int present, ok;
    uint64_t size;
    tdsx_hash_t root;
    const char *name;
} cp_t;

typedef struct relay_s {
    uint64_t idx;
    uint8_t upstream[TDSX_HASH_LEN];
} relay_t;

typedef struct {
    tdsx_audit_cb cb;
    void *ud;
    tdsx_audit_summary_t sum;
    const char *dir;
    /* MANIFEST header */
    char node[TDSX_ID_SIZE];
    uint64_t size, from, to;
    int64_t exported_at, at;
    int64_t witness_at; /* the verified cosignature's time: the export came after it */
    /* trust */
    tdsx_trust_t *nocrl; /* anchor + chain; revocation is judged here, with its dates */
    STACK_OF(X509) *cas;
    STACK_OF(X509_CRL) *crls;
    cert_t *certs;
    size_t ncerts;
    cert_t *node_cert, *witness_cert;
    int node_ok;
    tdsx_note_verifier_t node_v, witness_v;
    /* the tree */
    cp_t head, published, cosigned;
    tdsx_hash_t *leaves;
    int tree_ok;
    /* entries */
    tdsx_verifier_t *v;
    tdsx_arena_t *arena;
    uint64_t n_receipt, n_nrd, n_key, n_fail_entries;
    uint64_t f_receipt, f_nrd, f_key;
    uint64_t n_agreement, f_agreement;
    struct ag_s *ags; /* open-addressing table: each agreement's state so far in the replay */
    size_t ags_cap, ags_n;
    struct ag_s *ups; /* NRR envelope hashes of transfers this node accepted, so far */
    size_t ups_cap, ups_n;
    struct relay_s *relays; /* outbound receipts naming an upstream NRR, in index order */
    size_t n_relays, cap_relays;
    int oom; /* TDSX_E_NOMEM once an allocation failed */
    /* reports, from REPORT entries and reports/ */
    struct rep_s *reps;
    size_t nreps;
    uint64_t report_seq; /* highest verified sequence */
    uint64_t recounted;  /* entries the report recounts have tallied so far */
    /* the trust bundle in the evidence, when it verified */
    uint8_t *anchor_pem;
    size_t anchor_n;
    int have_bundle;
    uint64_t bundle_serial;
    int64_t bundle_expires;
    struct {
        uint64_t serial;
        int64_t expires;
    } history[256]; /* earlier bundles that verified (bundles/<serial>.tdsx) */
    size_t n_history;
    uint8_t witness_keys[8][TDSX_ED25519_PK_LEN]; /* the bundle's witness keys */
    size_t n_witness_keys;
    /* the entry bundle last read (reports re-read their range) */
    uint64_t cached_k;
    uint8_t *cached;
    size_t cached_n;
} audit_t;

/* One report note found in the evidence. */
typedef struct rep_s {
    uint8_t *note, *cosigned; /* heap copies; cosigned may be NULL */
    size_t note_n, cosigned_n;
    char src[64]; /* "entry 12" or "reports/3.note" */
    tdsx_hash_t hash;
    int ok; /* signature verified, r parsed */
    tdsx_report_t r;
} rep_t;

#define REPORTS_MAX 1024u

static void report(audit_t *a, tdsx_audit_result_t r, const char *check, const char *where,
                   const char *fmt, ...) TDSX_PRINTF(5, 6);

static void report(audit_t *a, tdsx_audit_result_t r, const char *check, const char *where,
                   const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (r == TDSX_AUDIT_PASS)
        a->sum.pass++;
    else if (r == TDSX_AUDIT_FAIL)
        a->sum.fail++;
    else
        a->sum.indeterminate++;
    if (a->cb)
        a->cb(a->ud, r, check, where ? where : "", detail);
}

static int path_of(const audit_t *a, const char *rel, char *out)
{
    return join(out, a->dir, rel);
}

/* An allocation that failed anywhere makes the whole audit "could not run": a check skipped
 * for want of memory must not read as absent evidence. */
static void *oom(audit_t *a)
{
    a->oom = TDSX_E_NOMEM;
    return NULL;
}

static int read_rel(audit_t *a, const char *rel, uint8_t **d, size_t *n)
{
    char p[PATH_CAP];
    int rc = path_of(a, rel, p);
    if (rc == 0)
        rc = read_plain(p, d, n);
    if (rc == TDSX_E_NOMEM)
        (void)oom(a);
    return rc;
}

/* ---- manifest ---- */

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static int safe_rel(const char *s)
{
    if (!*s || *s == '/' || strstr(s, "..") || strstr(s, "//"))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '/'))
            return 0;
    return 1;
}

/* Every regular file under dir/rel not in the sorted list is reported. */
static void walk_unlisted(audit_t *a, const char *rel, char **listed, size_t n, int depth)
{
    char p[PATH_CAP], sub[PATH_CAP];
    if (depth > 16 || (rel[0] ? path_of(a, rel, p) : (snprintf(p, sizeof p, "%s", a->dir), 0)))
        return;
    DIR *d = opendir(p);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int w = rel[0] ? snprintf(sub, sizeof sub, "%s/%s", rel, de->d_name)
                       : snprintf(sub, sizeof sub, "%s", de->d_name);
        if (w < 0 || (size_t)w >= sizeof sub)
            continue;
        char full[PATH_CAP];
        struct stat sb;
        if (path_of(a, sub, full) != 0 || lstat(full, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            walk_unlisted(a, sub, listed, n, depth + 1);
            continue;
        }
        if (strcmp(sub, TDSX_AUDIT_MANIFEST) == 0)
            continue;
        char *key = sub;
        if (!bsearch(&key, listed, n, sizeof *listed, cmp_str))
            report(a, TDSX_AUDIT_FAIL, "manifest", sub, "file is not listed in the MANIFEST");
    }
    closedir(d);
}

/* The next line of c, without its newline, as a NUL-terminated copy in out. 0; 1 at the end of
 * the input; TDSX_E_FORMAT for a line with a NUL byte, longer than size - 1, or without its
 * newline (the line is still consumed, so parsing can go on). */
static int next_line(tdsx_bytes_t *c, char *out, size_t size)
{
    size_t len = 0;
    int bad = 0, rc;
    uint8_t ch = 0;
    if (c->n == 0)
        return 1;
    while ((rc = tdsx_bytes_u8(c, &ch)) == 0 && ch != '\n') {
        if (ch == 0 || len + 1 >= size)
            bad = 1;
        else
            out[len++] = (char)ch;
    }
    out[len] = '\0';
    return rc || bad ? TDSX_E_FORMAT : 0;
}

/* A MANIFEST header value: decimal, no sign, fits 64 bits. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return TDSX_E_FORMAT;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return TDSX_E_FORMAT;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int manifest_header(audit_t *a, char *line)
{
    char *sp = strchr(line, ' ');
    uint64_t v = 0;
    if (!sp)
        return TDSX_E_FORMAT;
    *sp = '\0';
    const char *key = line, *arg = sp + 1;
    if (strcmp(key, "node") == 0)
        return snprintf(a->node, sizeof a->node, "%s", arg) < (int)sizeof a->node ? 0
                                                                                  : TDSX_E_FORMAT;
    if (parse_u64(arg, &v) != 0)
        return TDSX_E_FORMAT;
    if (strcmp(key, "size") == 0)
        a->size = v;
    else if (strcmp(key, "from") == 0)
        a->from = v;
    else if (strcmp(key, "to") == 0)
        a->to = v;
    else if (strcmp(key, "exported_at") == 0 && v <= INT64_MAX)
        a->exported_at = (int64_t)v;
    else
        return TDSX_E_FORMAT;
    return 0;
}

static int check_manifest(audit_t *a)
{
    uint8_t *m = NULL;
    size_t n = 0, nl = 0, bad = 0;
    char **listed = NULL, line[PATH_CAP];
    int rc = read_rel(a, TDSX_AUDIT_MANIFEST, &m, &n);
    if (rc)
        return rc;
    /* Every listed line holds at least a 64-digit hash, a space and a name. */
    if (!(listed = tdsx_calloc(n / 66 + 1, sizeof *listed))) {
        tdsx_free(m);
        return TDSX_E_NOMEM;
    }
    tdsx_bytes_t c = tdsx_bytes(m, n);
    int lrc = next_line(&c, line, sizeof line);
    if (lrc != 0 || strcmp(line, TDSX_AUDIT_MAGIC) != 0) {
        report(a, TDSX_AUDIT_FAIL, "manifest", TDSX_AUDIT_MANIFEST, "not a tdsx evidence manifest");
        bad++;
    }
    while (lrc != 1 && (lrc = next_line(&c, line, sizeof line)) != 1) {
        uint8_t want[TDSX_HASH_LEN];
        int hashline = lrc == 0 && strlen(line) > 2 * TDSX_HASH_LEN + 1 &&
                       line[2 * TDSX_HASH_LEN] == ' ' &&
                       strspn(line, "0123456789abcdef") == 2 * TDSX_HASH_LEN;
        if (lrc == 0 && !hashline && manifest_header(a, line) == 0)
            continue;
        if (hashline)
            line[2 * TDSX_HASH_LEN] = '\0';
        const char *rel = line + 2 * TDSX_HASH_LEN + 1;
        if (!hashline || tdsx_hex_decode(want, sizeof want, line) != 0 || !safe_rel(rel)) {
            report(a, TDSX_AUDIT_FAIL, "manifest", TDSX_AUDIT_MANIFEST, "malformed line");
            bad++;
            continue;
        }
        /* The name, its NUL, then the hash it is listed with: hashed below, once per name. */
        size_t rl = strlen(rel);
        if (!(listed[nl] = tdsx_malloc(rl + 1 + sizeof want))) {
            rc = TDSX_E_NOMEM;
            goto fail;
        }
        memcpy(listed[nl], rel, rl + 1);
        memcpy(listed[nl] + rl + 1, want, sizeof want);
        nl++;
    }
    qsort(listed, nl, sizeof *listed, cmp_str);
    /* A name listed twice would make the auditor hash one big file once per line (a 64 MiB
     * MANIFEST holds a million lines). */
    for (size_t i = 0; i < nl; i++) {
        const char *rel = listed[i];
        const uint8_t *want = (const uint8_t *)rel + strlen(rel) + 1;
        uint8_t got[TDSX_HASH_LEN];
        if (i > 0 && strcmp(rel, listed[i - 1]) == 0) {
            report(a, TDSX_AUDIT_FAIL, "manifest", rel, "listed more than once");
            bad++;
            continue;
        }
        uint8_t *d = NULL;
        size_t dn = 0;
        int frc = read_rel(a, rel, &d, &dn);
        if (frc == 0)
            frc = tdsx_sha256(d, dn, got);
        tdsx_free(d);
        if (frc) {
            report(a, TDSX_AUDIT_FAIL, "manifest", rel, "listed file cannot be read: %s",
                   tdsx_err_name(frc));
            bad++;
        } else if (memcmp(want, got, sizeof got) != 0) {
            report(a, TDSX_AUDIT_FAIL, "manifest", rel, "SHA-256 differs from the MANIFEST");
            bad++;
        }
    }
    uint64_t before = a->sum.fail;
    walk_unlisted(a, "", listed, nl, 0);
    bad += (size_t)(a->sum.fail - before);
    if (!bad)
        report(a, TDSX_AUDIT_PASS, "manifest", "", "%zu files match their SHA-256", nl);
    rc = 0;
fail:
    for (size_t i = 0; i < nl; i++)
        tdsx_free(listed[i]);
    tdsx_free(listed);
    tdsx_free(m);
    return rc;
}

/* ---- trust: anchor, chain, CRLs, certificates ---- */

static int load_pem_certs(const void *pem, size_t n, STACK_OF(X509) *into)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    X509 *x;
    int count = 0;
    if (!bio)
        return TDSX_E_NOMEM;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(into, x)) {
            X509_free(x);
            break;
        }
        count++;
    }
    ERR_clear_error();
    BIO_free(bio);
    return count;
}

static int load_trust(audit_t *a, const char *anchor)
{
    uint8_t *pem = NULL, *chain = NULL;
    size_t n = 0, nchain = 0;
    int rc = read_all(anchor, &pem, &n);
    if (rc)
        return rc;
    if (!(a->cas = sk_X509_new_null()) || !(a->crls = sk_X509_CRL_new_null())) {
        rc = TDSX_E_NOMEM;
        goto done;
    }
    int nanchors = load_pem_certs(pem, n, a->cas);
    if (nanchors <= 0) {
        rc = TDSX_E_CERT_PARSE;
        goto done;
    }
    if ((rc = tdsx_trust_new(&a->nocrl)) != 0 ||
        (rc = tdsx_trust_add_anchors_pem(a->nocrl, pem, n)) != 0)
        goto done;
    report(a, TDSX_AUDIT_PASS, "anchor", anchor, "%d root certificate(s) trusted", nanchors);
    /* Intermediates help build chains; as CRL issuers only those the anchor itself signed. */
    if (read_rel(a, "certs/chain.pem", &chain, &nchain) == 0 && nchain) {
        STACK_OF(X509) *inter = sk_X509_new_null();
        if (!inter) {
            rc = TDSX_E_NOMEM;
            goto done;
        }
        load_pem_certs(chain, nchain, inter);
        for (int i = 0; i < sk_X509_num(inter); i++) {
            X509 *c = sk_X509_value(inter, i);
            for (int j = 0; j < nanchors; j++) {
                if (X509_verify(c, X509_get0_pubkey(sk_X509_value(a->cas, j))) == 1 &&
                    X509_up_ref(c) == 1 && !sk_X509_push(a->cas, c))
                    X509_free(c);
            }
        }
        ERR_clear_error();
        sk_X509_pop_free(inter, X509_free);
        if (tdsx_trust_add_intermediates_pem(a->nocrl, chain, nchain) != 0)
            report(a, TDSX_AUDIT_FAIL, "cert-chain", "certs/chain.pem",
                   "intermediate certificates do not parse");
    }
done:
    if (rc == 0) {
        a->anchor_pem = pem; /* the trust bundle is verified against the same anchor */
        a->anchor_n = n;
        pem = NULL;
    }
    tdsx_free(pem);
    tdsx_free(chain);
    return rc;
}

/* A CRL counts only when a CA of the anchor's tree signed it (its issuer by name and key). */
static int crl_signed_by_ca(const audit_t *a, X509_CRL *crl)
{
    for (int j = 0; j < sk_X509_num(a->cas); j++) {
        X509 *ca = sk_X509_value(a->cas, j);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            return 1;
    }
    ERR_clear_error();
    return 0;
}

/* Adds the CRLs a verified bundle carries, those signed by a CA of the anchor's tree, to the
 * revocation check; returns how many joined. */
static int join_bundle_crls(audit_t *a, const Tdsx__TrustBundle *m)
{
    int joined = 0;
    for (size_t i = 0; i < m->n_crls; i++) {
        const uint8_t *p = m->crls[i].data;
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)m->crls[i].len);
        if (crl && crl_signed_by_ca(a, crl) && sk_X509_CRL_push(a->crls, crl)) {
            joined++;
            continue;
        }
        X509_CRL_free(crl);
    }
    ERR_clear_error();
    return joined;
}

/* The trust bundle in force when the evidence was made (issue 9): verified against the
 * anchor with bundle.h; its CRLs join the evidence's. No bundle, no line. */
static void check_bundle(audit_t *a)
{
    static const char rel[] = "bundles/bundle.current";
    uint8_t *file = NULL, *chain = NULL;
    size_t n = 0, nchain = 0;
    tdsx_bundle_t *b = NULL;
    if (read_rel(a, rel, &file, &n) != 0) {
        tdsx_free(file);
        return;
    }
    if (read_rel(a, "certs/chain.pem", &chain, &nchain) != 0)
        nchain = 0;
    int rc = tdsx__bundle_verify(tdsx_bytes(file, n), tdsx_bytes(a->anchor_pem, a->anchor_n),
                                 tdsx_bytes(chain, nchain), a->at, &b);
    if (rc) {
        report(a, TDSX_AUDIT_FAIL, "bundle", rel, "%s: %s", tdsx_err_name(rc), tdsx_strerror(rc));
    } else {
        tdsx_bundle_info_t info;
        const Tdsx__TrustBundle *m = tdsx__bundle_msg(b);
        tdsx__bundle_info(b, &info);
        int crls = join_bundle_crls(a, m);
        for (size_t i = 0; i < m->n_witness_keys && a->n_witness_keys < 8; i++)
            if (m->witness_keys[i].len == TDSX_ED25519_PK_LEN)
                memcpy(a->witness_keys[a->n_witness_keys++], m->witness_keys[i].data,
                       TDSX_ED25519_PK_LEN);
        a->have_bundle = 1;
        a->bundle_serial = info.serial;
        a->bundle_expires = info.expires_at;
        report(a, TDSX_AUDIT_PASS, "bundle", rel,
               "serial %llu signed by %s, expires %lld, %d CRL(s) carried",
               (unsigned long long)info.serial, info.signer, (long long)info.expires_at, crls);
    }
    tdsx__bundle_free(b);
    tdsx_free(file);
    tdsx_free(chain);
}

/* Every earlier bundle the node applied (bundles/<serial>.tdsx, bundle.c's history): each must
 * verify against the anchor at the time it was issued and carry the serial its name says;
 * its CRLs join the revocation check (revocations are judged by their dates). A report that
 * states one of these serials is checked against it (report_fields). */
static void check_bundle_history(audit_t *a)
{
    char dir[PATH_CAP];
    if (path_of(a, TDSX_BUNDLE_HISTORY, dir) != 0)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    uint8_t *chain = NULL;
    size_t nchain = 0;
    if (read_rel(a, "certs/chain.pem", &chain, &nchain) != 0)
        nchain = 0;
    unsigned ok = 0, bad = 0;
    uint64_t lo = 0, hi = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char rel[PATH_CAP], *end = NULL;
        if (len < 6 || strcmp(de->d_name + len - 5, ".tdsx") != 0 || de->d_name[0] < '1' ||
            de->d_name[0] > '9')
            continue;
        unsigned long long named = strtoull(de->d_name, &end, 10);
        snprintf(rel, sizeof rel, TDSX_BUNDLE_HISTORY "/%s", de->d_name);
        uint8_t *file = NULL;
        size_t n = 0;
        tdsx_bundle_t *b = NULL;
        tdsx_bundle_info_t info;
        memset(&info, 0, sizeof info);
        int rc = read_rel(a, rel, &file, &n);
        /* Judged at its own issue time: an old bundle's signer may have expired since. */
        if (rc == 0 && (rc = tdsx__bundle_decode(tdsx_bytes(file, n), &b)) == 0) {
            tdsx__bundle_info(b, &info);
            tdsx__bundle_free(b);
            b = NULL;
            rc = tdsx__bundle_verify(tdsx_bytes(file, n), tdsx_bytes(a->anchor_pem, a->anchor_n),
                                     tdsx_bytes(chain, nchain), info.issued_at, &b);
        }
        if (rc) {
            report(a, TDSX_AUDIT_FAIL, "bundle", rel, "%s: %s", tdsx_err_name(rc),
                   tdsx_strerror(rc));
            bad++;
        } else if (!end || strcmp(end, ".tdsx") != 0 || named != info.serial) {
            report(a, TDSX_AUDIT_FAIL, "bundle", rel, "holds serial %llu",
                   (unsigned long long)info.serial);
            bad++;
        } else {
            (void)join_bundle_crls(a, tdsx__bundle_msg(b));
            if (a->n_history < sizeof a->history / sizeof a->history[0]) {
                a->history[a->n_history].serial = info.serial;
                a->history[a->n_history++].expires = info.expires_at;
            }
            lo = ok == 0 || info.serial < lo ? info.serial : lo;
            hi = info.serial > hi ? info.serial : hi;
            ok++;
        }
        tdsx__bundle_free(b);
        tdsx_free(file);
    }
    closedir(d);
    tdsx_free(chain);
    if (ok && !bad)
        report(a, TDSX_AUDIT_PASS, "bundle", TDSX_BUNDLE_HISTORY,
               "%u bundle(s) the node applied, serials %llu..%llu, each signed by a centre of the "
               "anchor at its issue time",
               ok, (unsigned long long)lo, (unsigned long long)hi);
}

static void load_crls(audit_t *a)
{
    char dir[PATH_CAP];
    if (path_of(a, "crls", dir) != 0)
        return;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char rel[PATH_CAP];
        uint8_t *pem = NULL;
        size_t n = 0;
        if (de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof rel, "crls/%s", de->d_name);
        if (read_rel(a, rel, &pem, &n) != 0 || !n) {
            tdsx_free(pem);
            continue;
        }
        BIO *bio = BIO_new_mem_buf(pem, (int)n);
        X509_CRL *crl;
        int ok = 1, count = 0;
        STACK_OF(X509_CRL) *mine = sk_X509_CRL_new_null();
        while (bio && mine && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
            ok &= crl_signed_by_ca(a, crl);
            count++;
            if (!sk_X509_CRL_push(mine, crl))
                X509_CRL_free(crl);
        }
        ERR_clear_error();
        BIO_free(bio);
        if (ok && count > 0) {
            X509_CRL *c;
            while ((c = sk_X509_CRL_shift(mine)) != NULL)
                if (!sk_X509_CRL_push(a->crls, c))
                    X509_CRL_free(c);
            report(a, TDSX_AUDIT_PASS, "crl", rel, "%d CRL(s) signed by the anchor's CAs", count);
        } else {
            report(a, TDSX_AUDIT_FAIL, "crl", rel,
                   count ? "CRL not signed by a CA that chains to the anchor"
                         : "file holds no CRL");
        }
        sk_X509_CRL_pop_free(mine, X509_CRL_free);
        tdsx_free(pem);
    }
    if (d)
        closedir(d);
}

static void report_revocation(audit_t *a)
{
    int n = sk_X509_CRL_num(a->crls);
    if (n > 0)
        report(a, TDSX_AUDIT_PASS, "revocation", "",
               "revocation checked against %d CRL(s) signed by the anchor's CAs", n);
    else
        report(a, TDSX_AUDIT_INDETERMINATE, "revocation", "",
               "no CRL from the CA in the evidence: revocation not checked");
}

/* Adds a certificate (owned by the table afterwards) and judges it once. */
static cert_t *cert_add(audit_t *a, X509 *x)
{
    uint8_t fp[32];
    if (tdsx_cert_fingerprint(x, fp) != 0) {
        X509_free(x);
        return NULL;
    }
    for (size_t i = 0; i < a->ncerts; i++)
        if (memcmp(a->certs[i].fp, fp, 32) == 0) {
            X509_free(x);
            return &a->certs[i];
        }
    if (a->ncerts >= CERTS_MAX) {
        X509_free(x);
        return NULL;
    }
    cert_t *c = &a->certs[a->ncerts++];
    memset(c, 0, sizeof *c);
    c->x = x;
    memcpy(c->fp, fp, 32);
    c->nb = asn1_time(X509_get0_notBefore(x));
    c->na = asn1_time(X509_get0_notAfter(x));
    tdsx_verify_opts_t o = {TDSX_PURPOSE_SIGN, TDSX_ROLE_NONE,
                            c->nb + 1 <= c->na ? c->nb + 1 : c->nb, 0};
    c->base_rc = tdsx_cert_verify(a->nocrl, x, NULL, &o, &c->id);
    if (c->base_rc == 0) {
        tdsx_identity_id(&c->id, c->ids, sizeof c->ids);
        if (tdsx_key_id(c->id.pubkey, &c->key_id) != 0 ||
            tdsx_verifier_add_key(a->v, c->id.pubkey) != 0)
            c->base_rc = TDSX_E_CERT_KEY;
    }
    for (int i = 0; i < sk_X509_CRL_num(a->crls); i++) {
        X509_REVOKED *rev = NULL;
        if (X509_CRL_get0_by_cert(sk_X509_CRL_value(a->crls, i), &rev, x) == 1 && rev) {
            int64_t t = asn1_time(X509_REVOKED_get0_revocationDate(rev));
            if (!c->revoked_at || t < c->revoked_at)
                c->revoked_at = t ? t : 1;
        }
    }
    return c;
}

static cert_t *cert_add_der(audit_t *a, tdsx_bytes_t der)
{
    const uint8_t *p = der.p;
    X509 *x = d2i_X509(NULL, &p, (long)der.n);
    if (!x || p != der.p + der.n) {
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    return cert_add(a, x);
}

/* The certificate's standing at time t (SPEC §2, §13: status at the time). */
static int cert_at(const cert_t *c, int64_t t)
{
    if (c->base_rc)
        return c->base_rc;
    if (t < c->nb)
        return TDSX_E_CERT_NOT_YET_VALID;
    if (t > c->na)
        return TDSX_E_CERT_EXPIRED;
    if (c->revoked_at && t >= c->revoked_at)
        return TDSX_E_CERT_REVOKED;
    return 0;
}

static cert_t *cert_by_key(audit_t *a, const tdsx_hash_t *key_id)
{
    for (size_t i = 0; i < a->ncerts; i++)
        if (a->certs[i].base_rc == 0 && memcmp(a->certs[i].key_id.b, key_id->b, 32) == 0)
            return &a->certs[i];
    return NULL;
}

static cert_t *cert_file(audit_t *a, const char *rel)
{
    uint8_t *d = NULL;
    size_t n = 0;
    cert_t *c = NULL;
    if (read_rel(a, rel, &d, &n) != 0 || !n) {
        tdsx_free(d);
        return NULL;
    }
    if (n > 10 && memcmp(d, "-----", 5) == 0) {
        BIO *bio = BIO_new_mem_buf(d, (int)n);
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (x)
            c = cert_add(a, x);
    } else {
        c = cert_add_der(a, tdsx_bytes(d, n));
    }
    ERR_clear_error();
    tdsx_free(d);
    return c;
}

static void load_peer_certs(audit_t *a)
{
    char dir[PATH_CAP];
    if (path_of(a, "certs/peers", dir) != 0)
        return;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char rel[PATH_CAP];
        if (de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof rel, "certs/peers/%s", de->d_name);
        cert_t *c = cert_file(a, rel);
        if (!c)
            report(a, TDSX_AUDIT_FAIL, "cert-chain", rel, "not a certificate");
        else if (c->base_rc)
            report(a, TDSX_AUDIT_FAIL, "cert-chain", rel, "%s: %s", tdsx_err_name(c->base_rc),
                   tdsx_strerror(c->base_rc));
    }
    if (d)
        closedir(d);
}

static void check_node_cert(audit_t *a)
{
    cert_t *c = cert_file(a, "certs/sign.pem");
    if (!c) {
        report(a, TDSX_AUDIT_FAIL, "cert-chain", "certs/sign.pem",
               "the node's sign certificate is missing or does not parse");
        return;
    }
    a->node_cert = c;
    /* A checkpoint carries no signing time: a key revoked at any time before the audit could
     * have signed it after its revocation, so revocation counts whatever its date. */
    int rc = cert_at(c, a->at);
    if (rc == 0 && c->revoked_at)
        rc = TDSX_E_CERT_REVOKED;
    if (c->base_rc == 0 && a->node[0] && strcmp(c->ids, a->node) != 0) {
        report(a, TDSX_AUDIT_FAIL, "cert-chain", "certs/sign.pem",
               "certificate names %s, the evidence is for %s", c->ids, a->node);
        return;
    }
    if (rc) {
        report(a, TDSX_AUDIT_FAIL, "cert-chain", "certs/sign.pem", "%s: %s%s", tdsx_err_name(rc),
               tdsx_strerror(rc),
               rc == TDSX_E_CERT_REVOKED ? " (revoked by a CRL in the evidence)" : "");
    } else {
        report(a, TDSX_AUDIT_PASS, "cert-chain", "certs/sign.pem",
               "%s (%s) chains to the anchor, not revoked", c->ids, tdsx_role_name(c->id.role));
    }
    if (c->base_rc == 0 &&
        tdsx_note_verifier_init(&a->node_v, c->ids, TDSX_NOTE_ED25519, c->id.pubkey) == 0)
        a->node_ok = rc == 0 ? 1 : -1; /* -1: key known, but not trustworthy now */
}

/* ---- checkpoints and the tree ---- */

/* With a verified trust bundle that names witness keys, the witness must be one of them. */
static int witness_in_bundle(const audit_t *a)
{
    if (!a->have_bundle || a->n_witness_keys == 0)
        return 1;
    for (size_t i = 0; i < a->n_witness_keys; i++)
        if (memcmp(a->witness_keys[i], a->witness_cert->id.pubkey, TDSX_ED25519_PK_LEN) == 0)
            return 1;
    return 0;
}

static void check_checkpoint(audit_t *a, cp_t *cp, const char *rel, int with_witness)
{
    uint8_t *d = NULL;
    size_t n = 0;
    cp->name = rel;
    int rc = read_rel(a, rel, &d, &n);
    if (rc == TDSX_E_NOTFOUND && !with_witness && strcmp(rel, "log/checkpoint") != 0) {
        tdsx_free(d);
        return;
    }
    if (rc) {
        if (with_witness)
            report(a, TDSX_AUDIT_FAIL, "witness", rel, "no cosigned checkpoint in the evidence");
        else
            report(a, TDSX_AUDIT_FAIL, "checkpoint-signature", rel, "missing: %s",
                   tdsx_err_name(rc));
        tdsx_free(d);
        return;
    }
    cp->present = 1;
    tdsx_note_t *note = NULL;
    tdsx_checkpoint_t c;
    if (!a->node_ok) {
        report(a, TDSX_AUDIT_FAIL, "checkpoint-signature", rel,
               "no node key that chains to the anchor to check it with");
    } else if ((rc = tdsx_checkpoint_open(tdsx_bytes(d, n), &a->node_v, NULL, 0, a->node_v.name,
                                          &note, &c)) != 0) {
        report(a, TDSX_AUDIT_FAIL, "checkpoint-signature", rel, "%s: %s", tdsx_err_name(rc),
               tdsx_strerror(rc));
    } else {
        cp->size = c.size;
        cp->root = c.root;
        /* The signature is the certified key's even when that key is no longer trusted: the
         * failure is reported, and the tree is still replayed so the auditor learns which
         * statements were signed while the keys were good. */
        cp->ok = 1;
        if (a->node_ok < 0)
            report(a, TDSX_AUDIT_FAIL, "checkpoint-signature", rel,
                   "signed by %s whose certificate is %s", a->node_v.name,
                   a->node_cert->revoked_at ? "revoked"
                                            : tdsx_err_name(cert_at(a->node_cert, a->at)));
        else
            report(a, TDSX_AUDIT_PASS, "checkpoint-signature", rel, "size %llu signed by %s",
                   (unsigned long long)c.size, a->node_v.name);
    }
    tdsx_note_free(note);
    note = NULL;
    if (with_witness) {
        if (!a->witness_cert) {
            report(a, TDSX_AUDIT_FAIL, "witness", rel, "no witness certificate in the evidence");
        } else if (a->witness_cert->base_rc || a->witness_cert->id.role != TDSX_ROLE_CENTRE) {
            report(a, TDSX_AUDIT_FAIL, "witness", "certs/witness.der",
                   "witness certificate is not a centre's that chains to the anchor (%s)",
                   tdsx_err_name(a->witness_cert->base_rc ? a->witness_cert->base_rc
                                                          : TDSX_E_CERT_ROLE));
        } else if (!witness_in_bundle(a)) {
            report(a, TDSX_AUDIT_FAIL, "witness", "certs/witness.der",
                   "%s is not a witness the trust bundle names", a->witness_cert->ids);
        } else if (!a->node_ok) {
            report(a, TDSX_AUDIT_FAIL, "witness", rel, "checkpoint cannot be opened");
        } else if ((rc = tdsx_checkpoint_open(tdsx_bytes(d, n), &a->node_v, &a->witness_v, 1,
                                              a->node_v.name, &note, &c)) != 0) {
            report(a, TDSX_AUDIT_FAIL, "witness", rel, "%s: %s", tdsx_err_name(rc),
                   tdsx_strerror(rc));
        } else {
            const tdsx_note_sig_t *s = tdsx_note_verified_by(note, &a->witness_v);
            int crc = s ? cert_at(a->witness_cert, (int64_t)s->timestamp) : 0;
            if (!s)
                report(a, TDSX_AUDIT_FAIL, "witness", rel, "no cosignature by the witness %s",
                       a->witness_cert->ids);
            else if (crc)
                report(a, TDSX_AUDIT_FAIL, "witness", rel,
                       "cosigned at %llu by %s whose certificate was then %s",
                       (unsigned long long)s->timestamp, a->witness_cert->ids, tdsx_err_name(crc));
            else {
                report(a, TDSX_AUDIT_PASS, "witness", rel, "size %llu cosigned by %s at %llu",
                       (unsigned long long)c.size, a->witness_cert->ids,
                       (unsigned long long)s->timestamp);
                if (s->timestamp <= INT64_MAX)
                    a->witness_at = (int64_t)s->timestamp;
            }
        }
        tdsx_note_free(note);
    }
    tdsx_free(d);
}

/* Reads level `level` of the tree of `size` from the tiles: count hashes into out. */
static int read_level(audit_t *a, int level, uint64_t count, tdsx_hash_t *out, uint64_t *bad)
{
    char rel[PATH_CAP];
    for (uint64_t k = 0; k * TILE_W < count; k++) {
        unsigned w = (unsigned)(count - k * TILE_W >= TILE_W ? TILE_W : count - k * TILE_W);
        uint8_t *d = NULL;
        size_t n = 0;
        int rc = tile_rel(rel, sizeof rel, "log", level, k, w == TILE_W ? 0 : w);
        if (rc == 0)
            rc = read_rel(a, rel, &d, &n);
        if (rc || n != (size_t)w * TDSX_HASH_LEN) {
            /* A few lines name the first bad tiles; a huge signed size with no tiles behind
             * it must not print millions. */
            if (*bad < TILE_FAILS_SHOWN && rc)
                report(a, TDSX_AUDIT_FAIL, "tiles", rel, "missing (%s)", tdsx_err_name(rc));
            else if (*bad < TILE_FAILS_SHOWN)
                report(a, TDSX_AUDIT_FAIL, "tiles", rel, "holds %zu bytes, not %u", n,
                       w * TDSX_HASH_LEN);
            else if (*bad == TILE_FAILS_SHOWN)
                report(a, TDSX_AUDIT_FAIL, "tiles", "log/tile", "more tiles missing or damaged");
            (*bad)++;
            if (out)
                memset(out + k * TILE_W, 0, (size_t)w * TDSX_HASH_LEN);
        } else if (out) {
            memcpy(out + k * TILE_W, d, n);
        }
        tdsx_free(d);
    }
    return 0;
}

static void check_tree(audit_t *a)
{
    uint64_t size = a->head.size, bad = 0;
    if (!a->head.ok) {
        report(a, TDSX_AUDIT_INDETERMINATE, "tree-root", "log/checkpoint",
               "no verified head checkpoint: the tiles prove nothing");
        return;
    }
    if (a->size != size)
        report(a, TDSX_AUDIT_FAIL, "tree-root", TDSX_AUDIT_MANIFEST,
               "MANIFEST says size %llu, the head checkpoint %llu", (unsigned long long)a->size,
               (unsigned long long)size);
    if (size > TREE_MAX) {
        report(a, TDSX_AUDIT_FAIL, "tree-root", "log/checkpoint",
               "size %llu is beyond what this auditor replays (%llu)", (unsigned long long)size,
               (unsigned long long)TREE_MAX);
        return;
    }
    /* The leaves are allocated only once the evidence holds every level-0 tile at its size: a
     * signed size with no tiles behind it (the node signs what it likes) must not make the
     * auditor allocate 32 bytes a leaf and hash a tree of zeros. */
    for (uint64_t k = 0; k * TILE_W < size; k++) {
        unsigned w = (unsigned)(size - k * TILE_W >= TILE_W ? TILE_W : size - k * TILE_W);
        char rel[PATH_CAP], p[PATH_CAP];
        struct stat sb;
        if (tile_rel(rel, sizeof rel, "log", 0, k, w == TILE_W ? 0 : w) != 0 ||
            path_of(a, rel, p) != 0 || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode) ||
            (uint64_t)sb.st_size != (uint64_t)w * TDSX_HASH_LEN) {
            report(a, TDSX_AUDIT_FAIL, "tiles", rel, "missing or not %u bytes", w * TDSX_HASH_LEN);
            report(a, TDSX_AUDIT_FAIL, "tree-root", "log/checkpoint",
                   "the level-0 tiles of size %llu are not all in the evidence",
                   (unsigned long long)size);
            return;
        }
    }
    if (!(a->leaves = tdsx_calloc(size ? (size_t)size : 1, sizeof *a->leaves))) {
        (void)oom(a);
        return;
    }
    read_level(a, 0, size, a->leaves, &bad);
    /* Each hash above level 0 is the root of a full tile below it (c2sp.org/tlog-tiles). */
    tdsx_hash_t *below = a->leaves, *level = NULL;
    uint64_t nbelow = size;
    for (int l = 1; l < LEVELS_MAX; l++) {
        uint64_t count = size >> (8 * l);
        if (count == 0)
            break;
        tdsx_hash_t *mine = tdsx_calloc((size_t)count, sizeof *mine);
        if (!mine) {
            (void)oom(a);
            break;
        }
        read_level(a, l, count, mine, &bad);
        for (uint64_t j = 0; j < count && j * TILE_W + TILE_W <= nbelow; j++) {
            tdsx_hash_t r;
            if (tdsx_merkle_root(below + j * TILE_W, TILE_W, &r) != 0 ||
                memcmp(r.b, mine[j].b, TDSX_HASH_LEN) != 0) {
                char rel[PATH_CAP];
                uint64_t k = j / TILE_W, w = count - k * TILE_W >= TILE_W ? 0 : count - k * TILE_W;
                if (tile_rel(rel, sizeof rel, "log", l, k, (unsigned)w) == 0)
                    report(a, TDSX_AUDIT_FAIL, "tiles", rel,
                           "hash %llu is not the root of the tile below it",
                           (unsigned long long)(j % TILE_W));
                bad++;
            }
        }
        if (level)
            tdsx_free(level);
        level = mine;
        below = mine;
        nbelow = count;
    }
    tdsx_free(level);
    if (!bad)
        report(a, TDSX_AUDIT_PASS, "tiles", "log/tile",
               "every tile of size %llu present and "
               "consistent",
               (unsigned long long)size);
    tdsx_hash_t root;
    if (tdsx_merkle_root(a->leaves, (size_t)size, &root) == 0 &&
        memcmp(root.b, a->head.root.b, TDSX_HASH_LEN) == 0) {
        a->tree_ok = 1;
        report(a, TDSX_AUDIT_PASS, "tree-root", "log/checkpoint",
               "the %llu leaf hashes reproduce the signed root", (unsigned long long)size);
    } else {
        report(a, TDSX_AUDIT_FAIL, "tree-root", "log/checkpoint",
               "the leaf hashes of the tiles do not reproduce the signed root");
    }
    cp_t *others[] = {&a->published, &a->cosigned};
    for (size_t i = 0; i < 2; i++) {
        cp_t *cp = others[i];
        if (!cp->ok)
            continue;
        if (cp->size > size) {
            report(a, TDSX_AUDIT_FAIL, "checkpoint-root", cp->name,
                   "size %llu is beyond the head (%llu)", (unsigned long long)cp->size,
                   (unsigned long long)size);
        } else if (tdsx_merkle_root(a->leaves, (size_t)cp->size, &root) == 0 &&
                   memcmp(root.b, cp->root.b, TDSX_HASH_LEN) == 0) {
            report(a, TDSX_AUDIT_PASS, "checkpoint-root", cp->name,
                   "the first %llu leaves reproduce its root", (unsigned long long)cp->size);
        } else {
            report(a, TDSX_AUDIT_FAIL, "checkpoint-root", cp->name,
                   "the first %llu leaves do not reproduce its root", (unsigned long long)cp->size);
        }
    }
}

static const cp_t *cp_of_size(const audit_t *a, uint64_t size)
{
    const cp_t *all[] = {&a->head, &a->published, &a->cosigned};
    for (size_t i = 0; i < 3; i++)
        if (all[i]->ok && all[i]->size == size)
            return all[i];
    return NULL;
}

static int check_proof_file(audit_t *a, uint64_t m, uint64_t n)
{
    char rel[96];
    uint8_t *d = NULL;
    size_t len = 0;
    snprintf(rel, sizeof rel, "proofs/%llu-%llu", (unsigned long long)m, (unsigned long long)n);
    int rc = read_rel(a, rel, &d, &len);
    if (rc) {
        report(a, TDSX_AUDIT_FAIL, "consistency", rel, "no consistency proof in the evidence");
        return 0;
    }
    /* "tdsx-consistency v1 <m> <n>", then one hex hash per line (audit.h). */
    tdsx_hash_t proof[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t np = 0;
    char line[128], want[64];
    tdsx_bytes_t c = tdsx_bytes(d, len);
    snprintf(want, sizeof want, "tdsx-consistency v1 %llu %llu", (unsigned long long)m,
             (unsigned long long)n);
    int ok = next_line(&c, line, sizeof line) == 0 && strcmp(line, want) == 0, lrc;
    while (ok && (lrc = next_line(&c, line, sizeof line)) != 1)
        ok = lrc == 0 && np < TDSX_MERKLE_CONSISTENCY_MAX && strlen(line) == 2 * TDSX_HASH_LEN &&
             tdsx_hex_decode(proof[np++].b, TDSX_HASH_LEN, line) == 0;
    unsigned long long pm = m, pn = n;
    const cp_t *cm = cp_of_size(a, m), *cn = cp_of_size(a, n);
    tdsx_hash_t empty;
    if (tdsx_merkle_root(NULL, 0, &empty) != 0)
        ok = 0;
    if (!ok)
        report(a, TDSX_AUDIT_FAIL, "consistency", rel, "malformed proof file");
    else if (!cn || (!cm && m != 0))
        report(a, TDSX_AUDIT_INDETERMINATE, "consistency", rel,
               "no verified checkpoint of one of these sizes");
    else if ((rc = tdsx_merkle_consistency_verify(m, n, cm ? &cm->root : &empty, &cn->root, proof,
                                                  np)) != 0)
        report(a, TDSX_AUDIT_FAIL, "consistency", rel,
               "the checkpoint of size %llu is not a prefix of the one of size %llu", pm, pn);
    else
        report(a, TDSX_AUDIT_PASS, "consistency", rel, "size %llu extends size %llu", pn, pm);
    tdsx_free(d);
    return 0;
}

static void check_consistency(audit_t *a)
{
    const cp_t *seq[3];
    size_t n = 0;
    if (a->cosigned.ok)
        seq[n++] = &a->cosigned;
    if (a->published.ok)
        seq[n++] = &a->published;
    if (a->head.ok)
        seq[n++] = &a->head;
    for (size_t i = 0; i + 1 < n; i++) {
        if (i > 0 && seq[i - 1]->size == seq[i]->size && seq[i]->size == seq[i + 1]->size)
            continue; /* the same proof again */
        if (seq[i]->size > seq[i + 1]->size) {
            report(a, TDSX_AUDIT_FAIL, "consistency", seq[i + 1]->name,
                   "size %llu is smaller than the %s checkpoint's %llu",
                   (unsigned long long)seq[i + 1]->size, seq[i]->name,
                   (unsigned long long)seq[i]->size);
            continue;
        }
        check_proof_file(a, seq[i]->size, seq[i + 1]->size);
    }
}

/* ---- entries ---- */

static void fail_entry(audit_t *a, const char *check, uint64_t idx, const char *fmt, ...)
    TDSX_PRINTF(4, 5);

static void fail_entry(audit_t *a, const char *check, uint64_t idx, const char *fmt, ...)
{
    char where[32], detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(where, sizeof where, "%llu", (unsigned long long)idx);
    report(a, TDSX_AUDIT_FAIL, check, where, "%s", detail);
    a->n_fail_entries++;
    a->f_receipt += strcmp(check, "receipt") == 0;
    a->f_nrd += strcmp(check, "nrd") == 0;
    a->f_key += strcmp(check, "key") == 0;
    a->f_agreement += strcmp(check, "agreement") == 0;
}

/* What the replay has seen of one agreement (by hash). */
typedef struct ag_s {
    uint8_t hash[TDSX_HASH_LEN];
    uint8_t used, state; /* state: AG_OPEN, AG_ACCEPTED, AG_TERMINATED */
} ag_t;

enum { AG_OPEN = 0, AG_ACCEPTED, AG_TERMINATED };

/* Keyed (SipHash, a key drawn per process): the node chooses its proposals, so it could
 * grind hashes that all fall in one slot and make every lookup walk the whole table. */
static ag_t *ag_slot(ag_t *t, size_t cap, const uint8_t *h)
{
    static uint8_t key[crypto_shorthash_KEYBYTES];
    static int keyed;
    uint8_t out[crypto_shorthash_BYTES];
    if (!keyed) {
        randombytes_buf(key, sizeof key);
        keyed = 1;
    }
    crypto_shorthash(out, h, TDSX_HASH_LEN, key);
    size_t i = 0;
    for (size_t k = 0; k < sizeof out; k++)
        i = i << 8 | out[k];
    i &= cap - 1;
    while (t[i].used && memcmp(t[i].hash, h, TDSX_HASH_LEN) != 0)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* The slot of h in the table *t (grown as needed), marked used: NULL when out of memory. */
static ag_t *tab_put(audit_t *a, ag_t **t, size_t *cap, size_t *n, const uint8_t *h)
{
    if (2 * (*n + 1) > *cap) {
        size_t ncap = *cap ? 2 * *cap : 64;
        ag_t *nt = tdsx_calloc(ncap, sizeof *nt);
        if (!nt)
            return oom(a);
        for (size_t i = 0; i < *cap; i++)
            if ((*t)[i].used)
                *ag_slot(nt, ncap, (*t)[i].hash) = (*t)[i];
        tdsx_free(*t);
        *t = nt;
        *cap = ncap;
    }
    ag_t *g = ag_slot(*t, *cap, h);
    if (!g->used) {
        memcpy(g->hash, h, TDSX_HASH_LEN);
        g->used = 1;
        g->state = 0;
        (*n)++;
    }
    return g;
}

/* The checks of receipt.c (tdsx_receipt_verify), with certificates judged once and verified
 * batch roots cached across the whole log instead of per receipt. */
static int check_receipt(audit_t *a, uint64_t idx, const tdsx_log_entry_t *e)
{
    ProtobufCMessage *m = NULL;
    tdsx_verified_t ni, ri;
    tdsx_arena_reset(a->arena);
    int rc = tdsx_statement_open(a->v, TDSX_STATEMENT_NRO, e->item[0], a->arena, &m, &ni);
    if (rc) {
        fail_entry(a, "receipt", idx, "nro: %s: %s", tdsx_err_name(rc), tdsx_strerror(rc));
        return rc;
    }
    const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
    if ((rc = tdsx_statement_open(a->v, TDSX_STATEMENT_NRR, e->item[1], a->arena, &m, &ri)) != 0) {
        fail_entry(a, "receipt", idx, "nrr: %s: %s", tdsx_err_name(rc), tdsx_strerror(rc));
        return rc;
    }
    const Tdsx__Nrr *nrr = (const Tdsx__Nrr *)m;
    cert_t *s = cert_by_key(a, &ni.key_id), *r = cert_by_key(a, &ri.key_id);
    int src = s ? cert_at(s, nro->time) : 0, rrc = r ? cert_at(r, nro->time) : 0;
    tdsx_hash_t nro_hash;
    uint8_t sig_hash[32];
    if ((rc = tdsx_envelope_hash(e->item[0], &nro_hash)) != 0 ||
        (rc = tdsx_sha256(ni.sig, sizeof ni.sig, sig_hash)) != 0)
        return rc;
    rc = TDSX_E_HASH_MISMATCH;
    if (!s || !r)
        fail_entry(a, "receipt", idx, "%s signer has no certificate in the evidence",
                   !s ? "nro" : "nrr");
    else if (src)
        fail_entry(a, "receipt", idx, "sender certificate at the nro's time: %s",
                   tdsx_err_name(src));
    else if (rrc)
        fail_entry(a, "receipt", idx, "receiver certificate at the nro's time: %s",
                   tdsx_err_name(rrc));
    else if (strcmp(nro->sender, s->ids) != 0)
        fail_entry(a, "receipt", idx, "nro sender %s is not its signer %s", nro->sender, s->ids);
    else if (strcmp(nro->receiver, r->ids) != 0 || strcmp(nrr->receiver, r->ids) != 0)
        fail_entry(a, "receipt", idx, "nro receiver is not the nrr's signer %s", r->ids);
    else if (strcmp(s->ids, a->node_v.name) != 0 && strcmp(r->ids, a->node_v.name) != 0)
        fail_entry(a, "receipt", idx, "a receipt between %s and %s in %s's log", s->ids, r->ids,
                   a->node_v.name);
    else if (nro->transfer_id.len != 16 || nrr->transfer_id.len != 16 ||
             memcmp(nro->transfer_id.data, nrr->transfer_id.data, 16) != 0)
        fail_entry(a, "receipt", idx, "nrr transfer id differs from the nro's");
    else if (nrr->nro_hash.len != 32 || memcmp(nrr->nro_hash.data, nro_hash.b, 32) != 0)
        fail_entry(a, "receipt", idx, "nrr nro_hash does not name this nro");
    else if (nrr->nro_signature_hash.len != 32 ||
             memcmp(nrr->nro_signature_hash.data, sig_hash, 32) != 0)
        fail_entry(a, "receipt", idx, "nrr nro_signature_hash does not name this nro");
    else if (nrr->status == TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED &&
             (nrr->received_length != nro->payload_length || nrr->received_sha256.len != 32 ||
              nro->payload_sha256.len != 32 ||
              memcmp(nrr->received_sha256.data, nro->payload_sha256.data, 32) != 0))
        fail_entry(a, "receipt", idx, "accepted nrr reports other bytes than the nro promised");
    else
        rc = 0;
    /* A relay names the NRR of the transfer it forwards (SPEC §9, exchange.c): this node must
     * have accepted that transfer, or an outbound transfer passes for a relay of data the node
     * never received (数据溯源 followed to nothing). Looked up once the whole range is replayed
     * (check_relays): a receipt re-logged after a crash may come after the relay. */
    if (rc == 0 && strcmp(s->ids, a->node_v.name) == 0 && nro->upstream_receipt_hash.len) {
        if (nro->upstream_receipt_hash.len != TDSX_HASH_LEN) {
            fail_entry(a, "receipt", idx, "upstream receipt hash is not a SHA-256");
            rc = TDSX_E_HASH_MISMATCH;
        } else if (a->n_relays == a->cap_relays) {
            size_t cap = a->cap_relays ? 2 * a->cap_relays : 64;
            relay_t *v = tdsx_reallocarray(a->relays, cap, sizeof *v);
            if (!v) {
                (void)oom(a);
            } else {
                a->relays = v;
                a->cap_relays = cap;
            }
        }
        if (rc == 0 && a->n_relays < a->cap_relays) {
            a->relays[a->n_relays].idx = idx;
            memcpy(a->relays[a->n_relays++].upstream, nro->upstream_receipt_hash.data,
                   TDSX_HASH_LEN);
        }
    }
    if (rc == 0 && strcmp(r->ids, a->node_v.name) == 0 &&
        nrr->status == TDSX__NRR_STATUS__NRR_STATUS_ACCEPTED) {
        tdsx_hash_t nrr_hash;
        if (tdsx_envelope_hash(e->item[1], &nrr_hash) == 0)
            (void)tab_put(a, &a->ups, &a->ups_cap, &a->ups_n, nrr_hash.b);
    }
    if (rc == 0)
        a->n_receipt++;
    return rc;
}

static void check_nrd(audit_t *a, uint64_t idx, const tdsx_log_entry_t *e)
{
    ProtobufCMessage *m = NULL;
    tdsx_verified_t ni, di;
    tdsx_arena_reset(a->arena);
    int rc = tdsx_statement_open(a->v, TDSX_STATEMENT_NRO, e->item[0], a->arena, &m, &ni);
    if (rc) {
        fail_entry(a, "nrd", idx, "nro: %s", tdsx_err_name(rc));
        return;
    }
    const Tdsx__Nro *nro = (const Tdsx__Nro *)m;
    if ((rc = tdsx_statement_open(a->v, TDSX_STATEMENT_NRD, e->item[1], a->arena, &m, &di)) != 0) {
        fail_entry(a, "nrd", idx, "nrd: %s", tdsx_err_name(rc));
        return;
    }
    const Tdsx__Nrd *nrd = (const Tdsx__Nrd *)m;
    cert_t *s = cert_by_key(a, &ni.key_id);
    tdsx_hash_t h;
    if (!s || memcmp(ni.key_id.b, di.key_id.b, 32) != 0)
        fail_entry(a, "nrd", idx, "nro and nrd are not signed by the same certified sender");
    else if ((rc = cert_at(s, nro->time)) != 0)
        fail_entry(a, "nrd", idx, "sender certificate at the nro's time: %s", tdsx_err_name(rc));
    else if (strcmp(nro->sender, s->ids) != 0 || strcmp(nrd->sender, s->ids) != 0)
        fail_entry(a, "nrd", idx, "sender named is not the signer %s", s->ids);
    else if (strcmp(s->ids, a->node_v.name) != 0)
        fail_entry(a, "nrd", idx, "an NRD by %s in %s's log", s->ids, a->node_v.name);
    else if (tdsx_envelope_hash(e->item[0], &h) != 0 || nrd->nro_hash.len != 32 ||
             memcmp(nrd->nro_hash.data, h.b, 32) != 0)
        fail_entry(a, "nrd", idx, "nrd nro_hash does not name this nro");
    else
        a->n_nrd++;
}

/*
 * The tally lets the last event of an agreement decide its count (report.h), and refusals
 * carry no signature: a "refused" or "proposed" logged after the acceptance would drop an
 * active agreement from the counts, an "accepted" after the termination would revive one.
 * agree.c never logs either (only open proposals are refused). 0, or 1 after reporting.
 */
static int ag_step(audit_t *a, uint64_t idx, const uint8_t *h, size_t ev)
{
    size_t had = a->ags_n;
    ag_t *g = tab_put(a, &a->ags, &a->ags_cap, &a->ags_n, h);
    if (!g)
        return 1;
    int next = ev == 1 ? AG_ACCEPTED : ev == 3 ? AG_TERMINATED : AG_OPEN;
    if (a->ags_n == had && ((next == AG_OPEN && g->state != AG_OPEN) ||
                            (next == AG_ACCEPTED && g->state == AG_TERMINATED))) {
        fail_entry(a, "agreement", idx, "event %s after the agreement was %s",
                   next == AG_OPEN ? (ev == 0 ? "proposed" : "refused") : "accepted",
                   g->state == AG_ACCEPTED ? "accepted" : "terminated");
        return 1;
    }
    g->state = (uint8_t)next;
    return 0;
}

/* An agreement event (SPEC §7): the proposal is the hash the entry names and is signed by one
 * of the two parties, an acceptance is the same terms signed by the other, a termination is
 * signed by a party and names the agreement. */
static void check_agreement(audit_t *a, uint64_t idx, const tdsx_log_entry_t *e)
{
    ProtobufCMessage *m = NULL;
    tdsx_verified_t pi, ai, ti;
    tdsx_hash_t h;
    tdsx_arena_reset(a->arena);
    /* The tally counts by the event word (report.c): an "accepted" or "terminated" that
     * carries no envelope of the other party's acceptance or of a termination would count an
     * agreement nobody signed into that state. */
    static const char *const events[] = {"proposed", "accepted", "refused", "terminated"};
    size_t ev = 0;
    while (ev < 4 && !tdsx_bytes_equal(e->item[0], tdsx_bytes(events[ev], strlen(events[ev]))))
        ev++;
    if (ev == 4 || (ev == 1 && e->item[4].n == 0) || (ev == 3 && e->item[5].n == 0)) {
        fail_entry(a, "agreement", idx, "event %s without the signed statement it needs",
                   ev == 4 ? "unknown" : events[ev]);
        return;
    }
    if (e->item[2].n != TDSX_HASH_LEN || tdsx_envelope_hash(e->item[3], &h) != 0 ||
        memcmp(h.b, e->item[2].p, TDSX_HASH_LEN) != 0) {
        fail_entry(a, "agreement", idx, "agreement hash is not the proposal envelope's");
        return;
    }
    int rc =
        tdsx_statement_open(a->v, TDSX_STATEMENT_AGREEMENT_TERMS, e->item[3], a->arena, &m, &pi);
    if (rc) {
        fail_entry(a, "agreement", idx, "proposal: %s", tdsx_err_name(rc));
        return;
    }
    const Tdsx__AgreementTerms *t = (const Tdsx__AgreementTerms *)m;
    const cert_t *pc = cert_by_key(a, &pi.key_id);
    if (!pc || strcmp(pc->ids, t->proposer) != 0 ||
        (strcmp(pc->ids, t->provider) != 0 && strcmp(pc->ids, t->consumer) != 0)) {
        fail_entry(a, "agreement", idx, "proposal not signed by its proposer, a party");
        return;
    }
    if (e->item[4].n) {
        rc = tdsx_statement_open(a->v, TDSX_STATEMENT_AGREEMENT_TERMS, e->item[4], a->arena, &m,
                                 &ai);
        const cert_t *ac = rc ? NULL : cert_by_key(a, &ai.key_id);
        const char *other = strcmp(t->proposer, t->provider) == 0 ? t->consumer : t->provider;
        if (rc || !ac || strcmp(ac->ids, other) != 0 || ai.payload.n != pi.payload.n ||
            memcmp(ai.payload.p, pi.payload.p, pi.payload.n) != 0) {
            fail_entry(a, "agreement", idx,
                       "acceptance is not the same terms signed by the other party (%s)",
                       rc ? tdsx_err_name(rc) : "signer or terms differ");
            return;
        }
    }
    if (e->item[5].n) {
        rc = tdsx_statement_open(a->v, TDSX_STATEMENT_AGREEMENT_TERMINATION, e->item[5], a->arena,
                                 &m, &ti);
        const Tdsx__AgreementTermination *x = rc ? NULL : (const Tdsx__AgreementTermination *)m;
        const cert_t *tc = rc ? NULL : cert_by_key(a, &ti.key_id);
        if (rc || !tc || strcmp(tc->ids, x->by) != 0 ||
            (strcmp(x->by, t->provider) != 0 && strcmp(x->by, t->consumer) != 0) ||
            x->agreement_hash.len != TDSX_HASH_LEN ||
            memcmp(x->agreement_hash.data, h.b, TDSX_HASH_LEN) != 0) {
            fail_entry(a, "agreement", idx, "termination not signed by a party of this agreement");
            return;
        }
    }
    if (ag_step(a, idx, h.b, ev) == 0)
        a->n_agreement++;
}

static uint8_t *dup_bytes(audit_t *a, tdsx_bytes_t b)
{
    uint8_t *p = tdsx_malloc(b.n ? b.n : 1);
    if (!p)
        return oom(a);
    if (p && b.n)
        memcpy(p, b.p, b.n);
    return p;
}

/* Keeps a report note (and the cosigned checkpoint that came with it) for the report checks;
 * the same note from the log and from reports/ is kept once. */
static void add_report(audit_t *a, tdsx_bytes_t note, tdsx_bytes_t cosigned, const char *src)
{
    tdsx_hash_t h;
    if (tdsx_report_note_hash(note, &h) != 0)
        return;
    for (size_t i = 0; i < a->nreps; i++) {
        rep_t *r = &a->reps[i];
        if (memcmp(r->hash.b, h.b, TDSX_HASH_LEN) != 0)
            continue;
        if (!r->cosigned && cosigned.n && (r->cosigned = dup_bytes(a, cosigned)) != NULL)
            r->cosigned_n = cosigned.n;
        return;
    }
    if (!a->reps && !(a->reps = tdsx_calloc(REPORTS_MAX, sizeof *a->reps))) {
        (void)oom(a);
        return;
    }
    if (a->nreps >= REPORTS_MAX) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-signature", src,
               "more than %u reports: the rest are not checked", REPORTS_MAX);
        return;
    }
    rep_t *r = &a->reps[a->nreps];
    memset(r, 0, sizeof *r);
    if (!(r->note = dup_bytes(a, note)))
        return;
    r->note_n = note.n;
    if (cosigned.n && (r->cosigned = dup_bytes(a, cosigned)) != NULL)
        r->cosigned_n = cosigned.n;
    r->hash = h;
    snprintf(r->src, sizeof r->src, "%s", src);
    a->nreps++;
}

static void check_entry(audit_t *a, uint64_t idx, tdsx_bytes_t bytes)
{
    tdsx_log_entry_t e;
    if (tdsx__log_entry_parse(bytes, &e) != 0) {
        fail_entry(a, "entry-format", idx, "entry does not parse (gateway/log.h format)");
        return;
    }
    a->sum.entries++;
    switch (e.type) {
    case TDSX_LOG_ENTRY_RECEIPT: (void)check_receipt(a, idx, &e); break;
    case TDSX_LOG_ENTRY_NRD: check_nrd(a, idx, &e); break;
    case TDSX_LOG_ENTRY_AGREEMENT: check_agreement(a, idx, &e); break;
    case TDSX_LOG_ENTRY_KEY: {
        cert_t *c = cert_add_der(a, e.item[1]);
        if (!c)
            fail_entry(a, "key", idx, "key entry does not hold a certificate");
        else if (c->base_rc)
            fail_entry(a, "key", idx, "%s", tdsx_err_name(c->base_rc));
        else if (strcmp(c->ids, a->node_v.name) != 0)
            fail_entry(a, "key", idx, "key entry names %s, not the log's node", c->ids);
        else
            a->n_key++;
        break;
    }
    case TDSX_LOG_ENTRY_REPORT: {
        char src[64];
        snprintf(src, sizeof src, "entry %llu", (unsigned long long)idx);
        add_report(a, e.item[0], e.item[1], src);
        break;
    }
    default: break;
    }
}

/* Each relay's upstream NRR must be one of the transfers this node accepted in the range; with
 * a range that is not the whole log it may lie outside it (INDETERMINATE, one line). */
static void check_relays(audit_t *a)
{
    uint64_t outside = 0;
    int whole = a->from == 0 && a->to == a->head.size;
    for (size_t i = 0; i < a->n_relays; i++) {
        const ag_t *g = a->ups_cap ? ag_slot(a->ups, a->ups_cap, a->relays[i].upstream) : NULL;
        if (g && g->used)
            continue;
        if (!whole)
            outside++;
        else
            fail_entry(a, "receipt", a->relays[i].idx,
                       "relays an upstream receipt this node never accepted (none in its log)");
    }
    if (outside)
        report(a, TDSX_AUDIT_INDETERMINATE, "receipt", "",
               "%llu relay(s) name an upstream receipt not in entries %llu..%llu: provenance "
               "not followed",
               (unsigned long long)outside, (unsigned long long)a->from, (unsigned long long)a->to);
}

static void check_entries(audit_t *a)
{
    uint64_t size = a->head.size;
    uint64_t bad_hash = 0, replayed = 0;
    if (!a->leaves || !a->head.ok) {
        report(a, TDSX_AUDIT_INDETERMINATE, "entries", "", "no verified tree to replay against");
        return;
    }
    if (a->from > a->to || a->to > size) {
        report(a, TDSX_AUDIT_FAIL, "entries", TDSX_AUDIT_MANIFEST,
               "range %llu..%llu is not inside the log of size %llu", (unsigned long long)a->from,
               (unsigned long long)a->to, (unsigned long long)size);
        return;
    }
    for (uint64_t k = a->from / TILE_W; k * TILE_W < a->to; k++) {
        unsigned w = (unsigned)(size - k * TILE_W >= TILE_W ? TILE_W : size - k * TILE_W);
        char rel[PATH_CAP];
        uint8_t *d = NULL;
        size_t n = 0;
        int rc = tile_rel(rel, sizeof rel, "log", ENTRIES_LEVEL, k, w == TILE_W ? 0 : w);
        if (rc == 0)
            rc = read_rel(a, rel, &d, &n);
        if (rc) {
            report(a, TDSX_AUDIT_FAIL, "entries", rel, "entry bundle missing (%s)",
                   tdsx_err_name(rc));
            bad_hash++;
            continue;
        }
        tdsx_bytes_t c = tdsx_bytes(d, n);
        unsigned i = 0;
        for (; i < w && c.n; i++) {
            uint16_t l;
            tdsx_bytes_t ent;
            uint64_t idx = k * TILE_W + i;
            if (tdsx_bytes_u16be(&c, &l) != 0 || tdsx_bytes_take(&c, l, &ent) != 0) {
                fail_entry(a, "entries", idx, "entry bundle %s is truncated", rel);
                bad_hash++;
                break;
            }
            tdsx_hash_t h;
            if (tdsx_merkle_leaf_hash(ent.p, ent.n, &h) != 0 ||
                memcmp(h.b, a->leaves[idx].b, TDSX_HASH_LEN) != 0) {
                fail_entry(a, "entries", idx, "entry does not hash to leaf %llu of the tree",
                           (unsigned long long)idx);
                bad_hash++;
            }
            if (idx >= a->from && idx < a->to) {
                replayed++;
                check_entry(a, idx, ent);
            }
        }
        if (i != w || c.n) {
            report(a, TDSX_AUDIT_FAIL, "entries", rel,
                   "bundle holds %s entries than the %u the "
                   "tree has there",
                   i < w ? "fewer" : "more", w);
            bad_hash++;
        }
        tdsx_free(d);
    }
    if (!bad_hash)
        report(a, TDSX_AUDIT_PASS, "entries", "",
               "entries %llu..%llu replayed: each hashes to "
               "its leaf",
               (unsigned long long)a->from, (unsigned long long)a->to);
    check_relays(a);
    if (!a->f_receipt)
        report(a, TDSX_AUDIT_PASS, "receipt", "",
               "%llu receipt(s) verified (both halves, both "
               "certificates, the links between them)",
               (unsigned long long)a->n_receipt);
    if (a->n_nrd && !a->f_nrd)
        report(a, TDSX_AUDIT_PASS, "nrd", "", "%llu delivery statement(s) verified",
               (unsigned long long)a->n_nrd);
    if (a->n_agreement && !a->f_agreement)
        report(a, TDSX_AUDIT_PASS, "agreement", "", "%llu agreement event(s) signed by the parties",
               (unsigned long long)a->n_agreement);
    if (a->n_key && !a->f_key)
        report(a, TDSX_AUDIT_PASS, "key", "", "%llu key entr(ies) chain to the anchor",
               (unsigned long long)a->n_key);
    a->sum.receipts = a->n_receipt;
    (void)replayed;
}

/* ---- reports (SPEC §12) ---- */

/* Entry `idx` of the evidence (the bundle holding it stays cached). */
static int entry_at(audit_t *a, uint64_t idx, tdsx_bytes_t *out)
{
    uint64_t size = a->head.size, k = idx / TILE_W;
    if (idx >= size)
        return TDSX_E_NOTFOUND;
    if (!a->cached || a->cached_k != k) {
        unsigned w = (unsigned)(size - k * TILE_W >= TILE_W ? TILE_W : size - k * TILE_W);
        char rel[PATH_CAP];
        tdsx_free(a->cached);
        a->cached = NULL;
        int rc = tile_rel(rel, sizeof rel, "log", ENTRIES_LEVEL, k, w == TILE_W ? 0 : w);
        if (rc == 0)
            rc = read_rel(a, rel, &a->cached, &a->cached_n);
        if (rc)
            return rc;
        a->cached_k = k;
    }
    tdsx_bytes_t c = tdsx_bytes(a->cached, a->cached_n), e;
    for (uint64_t i = k * TILE_W; i <= idx; i++) {
        uint16_t l;
        if (tdsx_bytes_u16be(&c, &l) != 0 || tdsx_bytes_take(&c, l, &e) != 0)
            return TDSX_E_LOG_CORRUPT;
    }
    tdsx_hash_t h;
    if (tdsx_merkle_leaf_hash(e.p, e.n, &h) != 0 ||
        memcmp(h.b, a->leaves[idx].b, TDSX_HASH_LEN) != 0)
        return TDSX_E_LOG_CORRUPT; /* already reported by the entries check */
    *out = e;
    return 0;
}

static int cmp_rep(const void *x, const void *y)
{
    const rep_t *p = x, *q = y;
    if (p->ok != q->ok)
        return q->ok - p->ok; /* verified first */
    return p->r.sequence < q->r.sequence ? -1 : p->r.sequence > q->r.sequence;
}

static void report_files(audit_t *a)
{
    char dir[PATH_CAP];
    if (path_of(a, "reports", dir) != 0)
        return;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        char rel[PATH_CAP];
        uint8_t *note = NULL, *cos = NULL;
        size_t nn = 0, cn = 0;
        if (n < 6 || strcmp(de->d_name + n - 5, ".note") != 0 || de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof rel, "reports/%s", de->d_name);
        if (read_rel(a, rel, &note, &nn) == 0 && note) {
            /* <seq>.cosigned beside it: the checkpoint it states, cosigned by the centre
             * (report.c's layout). */
            char crel[PATH_CAP];
            snprintf(crel, sizeof crel, "reports/%.*s.cosigned", (int)(n - 5), de->d_name);
            if (read_rel(a, crel, &cos, &cn) != 0) {
                tdsx_free(cos);
                cos = NULL;
                cn = 0;
            }
            add_report(a, tdsx_bytes(note, nn), tdsx_bytes(cos, cn), rel);
        }
        tdsx_free(note);
        tdsx_free(cos);
    }
    if (d)
        closedir(d);
}

/* The report's statements about the checkpoint it covers and the one before it. */
static void report_checkpoints(audit_t *a, const rep_t *p, const char *where)
{
    const tdsx_report_t *r = &p->r;
    tdsx_hash_t root;
    if (!a->tree_ok || r->size > a->head.size) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-checkpoint", where,
               "size %llu is beyond the verified log", (unsigned long long)r->size);
    } else if (tdsx_merkle_root(a->leaves, (size_t)r->size, &root) != 0 ||
               memcmp(root.b, r->root.b, TDSX_HASH_LEN) != 0 ||
               tdsx_merkle_root(a->leaves, (size_t)r->prev_size, &root) != 0 ||
               memcmp(root.b, r->prev_root.b, TDSX_HASH_LEN) != 0) {
        report(a, TDSX_AUDIT_FAIL, "report-checkpoint", where,
               "checkpoint or previous-checkpoint is not the log's at that size");
    } else {
        report(a, TDSX_AUDIT_PASS, "report-checkpoint", where,
               "checkpoints %llu and %llu are the log's", (unsigned long long)r->prev_size,
               (unsigned long long)r->size);
    }
    /* Witnessed: a cosigned checkpoint of the same size and root (its own or the log's). */
    int witnessed = 0, bad = 0;
    if (p->cosigned_n && a->witness_cert && a->witness_cert->base_rc == 0 && a->node_ok) {
        tdsx_note_t *note = NULL;
        tdsx_checkpoint_t cp;
        /* A checkpoint without the witness's line proves nothing either way; one that does
         * not open, or is witnessed for another tree than the report states, is a lie. */
        if (tdsx_checkpoint_open(tdsx_bytes(p->cosigned, p->cosigned_n), &a->node_v, &a->witness_v,
                                 1, a->node_v.name, &note, &cp) != 0)
            bad = 1;
        else if (tdsx_note_verified_by(note, &a->witness_v)) {
            witnessed = cp.size == r->size && memcmp(cp.root.b, r->root.b, TDSX_HASH_LEN) == 0;
            bad = !witnessed;
        }
        tdsx_note_free(note);
    }
    if (!witnessed && a->cosigned.ok && a->cosigned.size == r->size &&
        memcmp(a->cosigned.root.b, r->root.b, TDSX_HASH_LEN) == 0 && a->witness_cert &&
        a->witness_cert->base_rc == 0)
        witnessed = 2;
    if (bad)
        report(a, TDSX_AUDIT_FAIL, "report-cosignature", where,
               "the cosigned checkpoint beside it is not the witness's for this report");
    else if (witnessed)
        report(a, TDSX_AUDIT_PASS, "report-cosignature", where, "checkpoint %llu cosigned by %s",
               (unsigned long long)r->size, a->witness_cert->ids);
    else
        report(a, TDSX_AUDIT_INDETERMINATE, "report-cosignature", where,
               "no witness cosignature of this report's checkpoint in the evidence");
}

/* The fields a party other than the log vouches for, against the evidence's certificates. */
static void report_fields(audit_t *a, const rep_t *p, const char *seq)
{
    const tdsx_report_t *r = &p->r;
    char where[64 + TDSX_ID_SIZE];
    int bad = 0;
    if (a->node_cert && a->node_cert->base_rc == 0 && r->sign_not_after != a->node_cert->na) {
        snprintf(where, sizeof where, "%s cert-sign-not-after", seq);
        report(a, TDSX_AUDIT_FAIL, "report-field", where,
               "states %lld, the sign certificate says %lld", (long long)r->sign_not_after,
               (long long)a->node_cert->na);
        bad++;
    }
    if (a->node_cert && a->node_cert->base_rc == 0) {
        int revoked = a->node_cert->revoked_at && a->node_cert->revoked_at <= r->period_to;
        if ((r->cert_status == TDSX_REPORT_CERT_GOOD && revoked) ||
            (r->cert_status == TDSX_REPORT_CERT_REVOKED && !revoked && a->crls &&
             sk_X509_CRL_num(a->crls) > 0)) {
            snprintf(where, sizeof where, "%s cert-status", seq);
            report(a, TDSX_AUDIT_FAIL, "report-field", where,
                   "states %s, the CRLs in the evidence say otherwise at the period's end",
                   tdsx_report_cert_status_name(r->cert_status));
            bad++;
        }
    }
    if (strcmp(r->node, a->node_v.name) != 0) {
        snprintf(where, sizeof where, "%s node", seq);
        report(a, TDSX_AUDIT_FAIL, "report-field", where, "report of %s in %s's evidence", r->node,
               a->node_v.name);
        bad++;
    }
    if (a->node_cert && a->node_cert->base_rc == 0 && (unsigned)r->role != a->node_cert->id.role) {
        snprintf(where, sizeof where, "%s role", seq);
        report(a, TDSX_AUDIT_FAIL, "report-field", where, "states %s, the certificate %s",
               tdsx_role_name(r->role), tdsx_role_name(a->node_cert->id.role));
        bad++;
    }
    /* The peer table is the roles the counts were made with: each must be a certified one. */
    for (size_t i = 0; i < r->counts.n_peers; i++) {
        const tdsx_report_peer_t *peer = &r->counts.peers[i];
        const cert_t *c = NULL;
        for (size_t j = 0; j < a->ncerts && !c; j++)
            if (a->certs[j].base_rc == 0 && strcmp(a->certs[j].ids, peer->id) == 0)
                c = &a->certs[j];
        snprintf(where, sizeof where, "%s peer %s", seq, peer->id);
        if (!c)
            report(a, TDSX_AUDIT_INDETERMINATE, "report-field", where,
                   "no certificate of this counterpart in the evidence: its role is unchecked");
        else if (c->id.role != peer->role) {
            report(a, TDSX_AUDIT_FAIL, "report-field", where, "states %s, the certificate %s",
                   tdsx_role_name(peer->role), tdsx_role_name(c->id.role));
            bad++;
        }
    }
    snprintf(where, sizeof where, "%s bundle", seq);
    /* The bundle the report names: the current one, or one of the history. */
    int known = a->have_bundle && r->bundle_serial == a->bundle_serial;
    int64_t expires = known ? a->bundle_expires : 0;
    for (size_t i = 0; !known && i < a->n_history; i++)
        if (a->history[i].serial == r->bundle_serial) {
            known = 1;
            expires = a->history[i].expires;
        }
    if (r->bundle_serial && known && r->bundle_expires != expires) {
        report(a, TDSX_AUDIT_FAIL, "report-field", where,
               "states serial %llu expiring %lld, the bundle expires %lld",
               (unsigned long long)r->bundle_serial, (long long)r->bundle_expires,
               (long long)expires);
        bad++;
    } else if (r->bundle_serial && !known) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-field", where,
               "trust bundle serial %llu is not the one in the evidence",
               (unsigned long long)r->bundle_serial);
    }
    if (!bad)
        report(a, TDSX_AUDIT_PASS, "report-field", seq,
               "node, role, sign certificate expiry, status and peer roles match the evidence");
}

/* Every count recomputed with report.h's tally over the entries of the report's range. */
static void report_counts(audit_t *a, const rep_t *p, const char *seq)
{
    const tdsx_report_t *r = &p->r;
    if (!a->tree_ok || r->first < a->from || r->size > a->to) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-count", seq,
               "range %llu..%llu is not all in the evidence (entries %llu..%llu)",
               (unsigned long long)r->first, (unsigned long long)r->size,
               (unsigned long long)a->from, (unsigned long long)a->to);
        return;
    }
    /* Chained reports cover disjoint ranges, so an honest evidence recounts each entry at most
     * once; a node that signs many reports over the whole log would otherwise make the auditor
     * tally it once per report. */
    if (r->size - r->first > (a->to - a->from) - a->recounted) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-count", seq,
               "range %llu..%llu overlaps ranges already recounted: not recounted again",
               (unsigned long long)r->first, (unsigned long long)r->size);
        return;
    }
    a->recounted += r->size - r->first;
    tdsx_report_tally_t *t = NULL;
    tdsx_report_counts_t *got = tdsx_malloc(sizeof *got);
    int rc = got ? tdsx_report_tally_new(r->node, r->period_to, tdsx_report_role_from_peers,
                                         (void *)&r->counts, &t)
                 : TDSX_E_NOMEM;
    for (uint64_t i = r->first; rc == 0 && i < r->size; i++) {
        tdsx_bytes_t e;
        if ((rc = entry_at(a, i, &e)) == 0)
            rc = tdsx_report_tally_add(t, e);
    }
    if (rc == 0)
        rc = tdsx_report_tally_finish(t, got);
    char field[128], where[192];
    if (rc) {
        report(a, TDSX_AUDIT_FAIL, "report-count", seq, "the range cannot be recounted: %s",
               tdsx_err_name(rc));
    } else if (tdsx_report_counts_diff(&r->counts, got, field, sizeof field)) {
        snprintf(where, sizeof where, "%s %s", seq, field);
        report(a, TDSX_AUDIT_FAIL, "report-count", where,
               "the report's count differs from the log's entries %llu..%llu",
               (unsigned long long)r->first, (unsigned long long)r->size);
    } else {
        report(a, TDSX_AUDIT_PASS, "report-count", seq,
               "every count matches the log's entries %llu..%llu", (unsigned long long)r->first,
               (unsigned long long)r->size);
    }
    tdsx_report_tally_free(t);
    tdsx_free(got);
}

static void check_reports(audit_t *a)
{
    report_files(a);
    if (a->nreps == 0) {
        report(a, TDSX_AUDIT_INDETERMINATE, "report-signature", "",
               "no trust-status report in the evidence");
        return;
    }
    for (size_t i = 0; i < a->nreps; i++) {
        rep_t *p = &a->reps[i];
        int rc = a->node_ok ? tdsx_report_open(tdsx_bytes(p->note, p->note_n), &a->node_v, &p->r)
                            : TDSX_E_NOTE_UNVERIFIED;
        if (rc == 0 && a->node_ok < 0)
            rc = TDSX_E_CERT_REVOKED;
        p->ok = rc == 0;
        if (rc)
            report(a, TDSX_AUDIT_FAIL, "report-signature", p->src, "%s: %s", tdsx_err_name(rc),
                   tdsx_strerror(rc));
    }
    qsort(a->reps, a->nreps, sizeof *a->reps, cmp_rep);
    const rep_t *prev = NULL;
    for (size_t i = 0; i < a->nreps && a->reps[i].ok; i++) {
        const rep_t *p = &a->reps[i];
        char seq[32];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)p->r.sequence);
        report(a, TDSX_AUDIT_PASS, "report-signature", seq, "signed by %s (%s)", a->node_v.name,
               p->src);
        if (prev && prev->r.sequence == p->r.sequence)
            report(a, TDSX_AUDIT_FAIL, "report-chain", seq,
                   "two different reports carry this sequence number");
        else if (!prev && p->r.sequence == 1)
            report(a,
                   tdsx_report_chain_check(NULL, NULL, &p->r) ? TDSX_AUDIT_FAIL : TDSX_AUDIT_PASS,
                   "report-chain", seq, "the first report");
        else if (!prev || prev->r.sequence + 1 != p->r.sequence)
            report(a, prev ? TDSX_AUDIT_FAIL : TDSX_AUDIT_INDETERMINATE, "report-chain", seq,
                   "report %llu is not in the evidence", (unsigned long long)p->r.sequence - 1);
        else if (tdsx_report_chain_check(&prev->r, &prev->hash, &p->r) != 0)
            report(a, TDSX_AUDIT_FAIL, "report-chain", seq,
                   "does not extend report %llu (sequence, previous-report hash, previous "
                   "checkpoint or period)",
                   (unsigned long long)prev->r.sequence);
        else
            report(a, TDSX_AUDIT_PASS, "report-chain", seq, "extends report %llu",
                   (unsigned long long)prev->r.sequence);
        report_checkpoints(a, p, seq);
        report_fields(a, p, seq);
        report_counts(a, p, seq);
        if (p->r.sequence > a->report_seq)
            a->report_seq = p->r.sequence;
        prev = p;
    }
}

/* ---- state (rollback protection) ---- */

typedef struct {
    int present;
    char origin[TDSX_ID_SIZE];
    uint64_t size, report_seq;
    tdsx_hash_t root;
} state_t;

static int read_state(const char *path, state_t *st)
{
    uint8_t *d = NULL;
    size_t n = 0;
    memset(st, 0, sizeof *st);
    int rc = read_all(path, &d, &n);
    if (rc == TDSX_E_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    /* Exactly the five lines write_state writes. */
    static const char *const keys[] = {"origin ", "size ", "root ", "report_seq "};
    char line[256];
    const char *val[4];
    char vals[4][256];
    tdsx_bytes_t c = tdsx_bytes(d, n);
    uint64_t size = 0, seq = 0;
    rc = next_line(&c, line, sizeof line) == 0 && strcmp(line, TDSX_AUDIT_STATE_MAGIC) == 0
             ? 0
             : TDSX_E_FORMAT;
    for (size_t i = 0; rc == 0 && i < 4; i++) {
        size_t kl = strlen(keys[i]);
        if (next_line(&c, vals[i], sizeof vals[i]) != 0 || strncmp(vals[i], keys[i], kl) != 0)
            rc = TDSX_E_FORMAT;
        val[i] = vals[i] + kl;
    }
    if (rc == 0 &&
        (c.n != 0 ||
         snprintf(st->origin, sizeof st->origin, "%s", val[0]) >= (int)sizeof st->origin ||
         parse_u64(val[1], &size) != 0 || strlen(val[2]) != 2 * TDSX_HASH_LEN ||
         tdsx_hex_decode(st->root.b, TDSX_HASH_LEN, val[2]) != 0 || parse_u64(val[3], &seq) != 0))
        rc = TDSX_E_FORMAT;
    st->size = size;
    st->report_seq = seq;
    st->present = rc == 0;
    tdsx_free(d);
    return rc;
}

static void check_state(audit_t *a, const state_t *st)
{
    if (!st->present) {
        report(a, TDSX_AUDIT_PASS, "state", "", "no earlier audit recorded: this one starts it");
        return;
    }
    if (!a->head.ok || !a->leaves) {
        report(a, TDSX_AUDIT_INDETERMINATE, "state", "", "no verified head to compare with");
        return;
    }
    tdsx_hash_t r;
    if (strcmp(st->origin, a->node_v.name) != 0)
        report(a, TDSX_AUDIT_FAIL, "state", "origin", "state is for %s, evidence for %s",
               st->origin, a->node_v.name);
    else if (a->head.size < st->size)
        report(a, TDSX_AUDIT_FAIL, "state", "size",
               "rollback: head size %llu is smaller than %llu seen by the last audit",
               (unsigned long long)a->head.size, (unsigned long long)st->size);
    else if (tdsx_merkle_root(a->leaves, (size_t)st->size, &r) != 0 ||
             memcmp(r.b, st->root.b, TDSX_HASH_LEN) != 0)
        report(a, TDSX_AUDIT_FAIL, "state", "root",
               "fork: the log's first %llu entries differ from what the last audit saw",
               (unsigned long long)st->size);
    else
        report(a, TDSX_AUDIT_PASS, "state", "", "extends the size %llu seen by the last audit",
               (unsigned long long)st->size);
    if (a->report_seq < st->report_seq)
        report(a, TDSX_AUDIT_FAIL, "state", "report-seq",
               "rollback: latest report %llu is older than report %llu seen by the last audit",
               (unsigned long long)a->report_seq, (unsigned long long)st->report_seq);
}

static int write_state(audit_t *a, const char *path, uint64_t report_seq)
{
    char hex[65];
    tdsx_buf_t b;
    tdsx_buf_init(&b, 4096);
    tdsx_hex_encode(hex, a->head.root.b, TDSX_HASH_LEN);
    int rc = tdsx_buf_printf(&b,
                             TDSX_AUDIT_STATE_MAGIC "\norigin %s\nsize %llu\nroot %s\n"
                                                    "report_seq %llu\n",
                             a->node_v.name, (unsigned long long)a->head.size, hex,
                             (unsigned long long)report_seq);
    if (rc == 0)
        rc = tdsx_file_write(path, b.p, b.len, 0600, 1);
    tdsx_buf_free(&b);
    return rc;
}

int tdsx_audit_verify(const char *dir, const tdsx_audit_opts_t *o, tdsx_audit_cb cb, void *ud,
                      tdsx_audit_summary_t *sum)
{
    if (!dir || !o || !o->anchor)
        return TDSX_E_INVAL;
    audit_t a;
    memset(&a, 0, sizeof a);
    a.cb = cb;
    a.ud = ud;
    a.dir = dir;
    state_t st;
    struct stat sb;
    int rc;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return TDSX_E_NOTFOUND;
    if (access(o->anchor, R_OK) != 0)
        return TDSX_E_NOTFOUND;
    if (o->state && (rc = read_state(o->state, &st)) != 0)
        return rc;
    if (!(a.certs = tdsx_calloc(CERTS_MAX, sizeof *a.certs)) ||
        (rc = tdsx_verifier_new(VERIFIER_CACHE, &a.v)) != 0 ||
        (rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET, &a.arena)) != 0) {
        rc = rc ? rc : TDSX_E_NOMEM;
        goto done;
    }
    {
        char mp[PATH_CAP];
        if ((rc = path_of(&a, TDSX_AUDIT_MANIFEST, mp)) != 0 || access(mp, R_OK) != 0) {
            rc = rc ? rc : TDSX_E_NOTFOUND;
            goto done;
        }
    }
    if ((rc = load_trust(&a, o->anchor)) != 0)
        goto done;
    if ((rc = check_manifest(&a)) != 0)
        goto done;
    a.at = o->at ? o->at : a.exported_at ? a.exported_at : tdsx_now();
    load_crls(&a);
    check_bundle(&a);
    check_bundle_history(&a);
    report_revocation(&a);
    check_node_cert(&a);
    load_peer_certs(&a);
    a.witness_cert = cert_file(&a, "certs/witness.der");
    if (a.witness_cert && a.witness_cert->base_rc == 0 &&
        tdsx_note_verifier_init(&a.witness_v, a.witness_cert->ids, TDSX_NOTE_COSIG,
                                a.witness_cert->id.pubkey) != 0)
        a.witness_cert = NULL;
    check_checkpoint(&a, &a.head, "log/checkpoint", 0);
    check_checkpoint(&a, &a.published, "checkpoints/published", 0);
    check_checkpoint(&a, &a.cosigned, "checkpoints/cosigned", 1);
    /* The MANIFEST is unsigned, yet its exported_at is the time the node's certificate and
     * bundle were judged at: a node whose certificate expired could state a time before
     * that. The witness's cosignature is a signed lower bound on the export time (the export
     * holds it); EXPORT_SKEW allows for the two clocks. */
    if (!o->at && a.witness_at > a.at && a.witness_at - a.at > EXPORT_SKEW)
        report(&a, TDSX_AUDIT_FAIL, "manifest", "exported_at",
               "states %lld, before the witness's cosignature at %lld in the evidence",
               (long long)a.at, (long long)a.witness_at);
    check_tree(&a);
    check_consistency(&a);
    check_entries(&a);
    check_reports(&a);
    if (o->state && !a.oom) {
        check_state(&a, &st);
        if (a.sum.fail == 0 && (rc = write_state(&a, o->state, a.report_seq)) != 0)
            goto done;
    }
    rc = a.oom;
done:
    if (sum)
        *sum = a.sum;
    for (size_t i = 0; i < a.ncerts; i++)
        X509_free(a.certs[i].x);
    tdsx_free(a.certs);
    tdsx_free(a.leaves);
    for (size_t i = 0; i < a.nreps; i++) {
        tdsx_free(a.reps[i].note);
        tdsx_free(a.reps[i].cosigned);
    }
    tdsx_free(a.reps);
    tdsx_free(a.cached);
    tdsx_free(a.ags);
    tdsx_free(a.ups);
    tdsx_free(a.relays);
    tdsx_free(a.anchor_pem);
    sk_X509_pop_free(a.cas, X509_free);
    sk_X509_CRL_pop_free(a.crls, X509_CRL_free);
    tdsx_trust_free(a.nocrl);
    tdsx_verifier_free(a.v);
    tdsx_arena_free(a.arena);
    return rc;
}
