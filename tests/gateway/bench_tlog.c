/*
 * bench_tlog.c — durable transparency-log appends per second (SPEC §11), a tool, not a test.
 *
 *   tdsx_bench_tlog [--dir DIR] [--seconds S] [--entry-bytes N]
 *
 * For batch sizes 1, 64, 256 and 1024 it appends to a fresh log in DIR (default $TMPDIR or
 * /tmp) for about S seconds (default 2) with entries of N bytes (default 512, about a receipt),
 * and prints batches and entries made durable per second, the mean append latency and the
 * fsyncs per batch; then inclusion proofs per second on the last log. Every append fsyncs, so
 * the numbers are those of the disk under DIR: run it on the disk the daemon will use, in a
 * Release build.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "tlog.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_tlog: %s: %s\n", what, tdsx_strerror(rc));
    exit(1);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench_tlog: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    const char *base = getenv("TMPDIR");
    double seconds = 2.0;
    size_t entry_bytes = 512;
    if (!base || !*base)
        base = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--entry-bytes") == 0 && i + 1 < argc) {
            entry_bytes = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--dir DIR] [--seconds S] [--entry-bytes N]\n", argv[0]);
            return 2;
        }
    }
    if (seconds <= 0 || entry_bytes > TDSX_TLOG_ENTRY_MAX) {
        fprintf(stderr, "bench_tlog: bad --seconds or --entry-bytes\n");
        return 2;
    }

    uint8_t seed[TDSX_ED25519_SEED_LEN];
    memset(seed, 0x42, sizeof seed);
    tdsx_note_signer_t *key = NULL;
    int rc = tdsx_note_signer_new("91350100M000100Y43/bench", TDSX_NOTE_ED25519, seed, &key);
    if (rc < 0)
        die("key", rc);

    static const size_t batches[] = {1, 64, 256, 1024};
    tdsx_bytes_t *e = calloc(1024, sizeof *e);
    uint8_t *data = malloc(1024 * (entry_bytes ? entry_bytes : 1));
    if (!e || !data)
        die("memory", TDSX_E_NOMEM);
    printf("durable appends, %zu-byte entries, under %s\n", entry_bytes, base);
    printf("%8s %12s %12s %12s %14s\n", "batch", "batches/s", "entries/s", "ms/append",
           "fsyncs/batch");

    char dir[4096];
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        size_t n = batches[b];
        if (snprintf(dir, sizeof dir, "%s/tdsx-bench-tlog-XXXXXX", base) >= (int)sizeof dir ||
            !mkdtemp(dir))
            die("mkdtemp", TDSX_E_IO);
        tdsx_tlog_t *log = NULL;
        rc = tdsx_tlog_open(dir, key, &log);
        if (rc < 0)
            die("open", rc);
        uint64_t count = 0, appends = 0, first;
        double t0 = now(), t = t0;
        while (t - t0 < seconds || appends < 3) {
            for (size_t i = 0; i < n; i++) {
                uint8_t *p = data + i * entry_bytes;
                for (size_t k = 0; k < entry_bytes; k++)
                    p[k] = (uint8_t)(count + i + k);
                e[i] = tdsx_bytes(p, entry_bytes);
            }
            rc = tdsx_tlog_append(log, e, n, &first);
            if (rc < 0)
                die("append", rc);
            count += n;
            appends++;
            t = now();
        }
        tdsx_tlog_stats_t st;
        tdsx_tlog_stats(log, &st);
        double dt = t - t0;
        printf("%8zu %12.1f %12.0f %12.3f %14.1f\n", n, (double)appends / dt, (double)count / dt,
               1000.0 * dt / (double)appends, (double)st.fsyncs / (double)st.appends);
        fflush(stdout);

        if (b + 1 == sizeof batches / sizeof batches[0]) {
            /* Proofs on the largest log, from a cold start: tiles come from disk then cache. */
            tdsx_tlog_close(log);
            rc = tdsx_tlog_open(dir, key, &log);
            if (rc < 0)
                die("reopen", rc);
            uint64_t size;
            tdsx_tlog_head(log, &size, NULL);
            tdsx_hash_t path[TDSX_MERKLE_PATH_MAX];
            size_t len, proofs = 0;
            double p0 = now();
            for (uint64_t i = 0; i < size && now() - p0 < seconds; i += 1 + size / 20000) {
                rc = tdsx_tlog_inclusion_proof(log, i, size, path, &len);
                if (rc < 0)
                    die("proof", rc);
                proofs++;
            }
            double pdt = now() - p0;
            tdsx_tlog_stats(log, &st);
            printf("inclusion proofs over %llu entries: %.0f/s, %.2f tile reads per proof\n",
                   (unsigned long long)size, (double)proofs / pdt,
                   (double)st.tile_reads / (double)(proofs ? proofs : 1));
        }
        tdsx_tlog_close(log);
        remove_tree(dir);
    }
    free(e);
    free(data);
    tdsx_note_signer_free(key);
    return 0;
}
