/*
 * tdsx bench send | pull — the load generator for the exchange (shared/BENCH.md).
 *
 * One control-socket connection keeps C SendRequests in flight, each naming a file made once
 * in a temporary directory; every answer is the final TransferResult of one transfer (hash,
 * NRO, data, fsync, NRR, both receipt halves stored). Latency is from the moment a request is
 * handed to the socket to the moment its result is read.
 */
#include "cli.h"
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Caps, defined once. */
#define BENCH_COUNT_MAX 10000000ul
#define BENCH_CONCURRENCY_MAX 4096ul /* the daemon's default max_streams */
#define BENCH_SIZE_MAX (64ull << 30)
#define BENCH_DISTINCT_BYTES_MAX (256ull << 20) /* above this, every send names one file */
#define BENCH_OUT_CAP (64u << 20)               /* requests framed and not yet written */
#define BENCH_READ_SIZE (64u * 1024u)
#define BENCH_ARENA_BUDGET (4u << 20) /* one decoded answer (a receipt bundle and strings) */
#define BENCH_TIMEOUT_S_DEFAULT 120
#define BENCH_FILL_CHUNK (1u << 20)
/* Tags the built-in default policy lets an enterprise send to a brain or centre without an
 * agreement (general grade 1-2 from the base library). */
#define BENCH_TAGS_DEFAULT                                                                         \
    "grade=general:2 domain=production category=production.process personal=none "                 \
    "library=base source=enterprise"

typedef struct {
    const char *cmd;
    const char *to;
    const char *tags;
    const char *dataset;
    const char *files_dir; /* NULL: a temporary directory, removed at the end */
    const char *sock;
    const char *conf;
    uint64_t size;
    unsigned long count;
    unsigned long concurrency;
    double rate;          /* requests started per second; 0: as fast as the window allows */
    uint64_t duration_ns; /* no new request after this long; 0: until count */
    int same_file;
    int json;
    int timeout_ms;
    const char *from; /* pull: the dataset's owner; NULL for send */
} bench_opts_t;

typedef struct {
    const bench_opts_t *o;
    char dir[PATH_MAX]; /* the temporary directory holding the payload files */
    int dir_made;
    unsigned long n_files; /* 1, or count when every send has its own bytes */
    char path[PATH_MAX + 32];

    int fd;
    tdsx_buf_t out;
    tdsx_frame_decoder_t dec;
    tdsx_arena_t *arena;
    uint64_t *started_ns; /* by request id - 1; 0 once answered */
    double *lat_ms;       /* latencies of receipted transfers */
    unsigned long sent, answered, failed, receipted;
    char first_failure[512];
} bench_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "1024", "64k", "1M", "1G": powers of 1024. */
TDSX_MUST_CHECK static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return TDSX_E_USAGE;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k':
    case 'K': shift = 10; break;
    case 'm':
    case 'M': shift = 20; break;
    case 'g':
    case 'G': shift = 30; break;
    default: return TDSX_E_USAGE;
    }
    if (*end && end[1])
        return TDSX_E_USAGE;
    if (v > (BENCH_SIZE_MAX >> shift))
        return TDSX_E_USAGE;
    *out = (uint64_t)v << shift;
    return 0;
}

TDSX_MUST_CHECK static int parse_count(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v == 0 || v > max)
        return TDSX_E_USAGE;
    *out = v;
    return 0;
}

/* ---- payload files -------------------------------------------------------------------------- */

static void file_path(bench_t *b, unsigned long i)
{
    snprintf(b->path, sizeof b->path, "%s/f%lu.bin", b->dir, b->n_files > 1 ? i : 0ul);
}

TDSX_MUST_CHECK static int write_fd(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TDSX_E_IO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The first bytes of every file: its index, then a nonce drawn for this run. Within a run no
 * two files hash alike, and no file hashes like one sent by an earlier run, so the receiver's
 * store never finds the object already there (cheaper than what the baseline does with each
 * upload, and a deleted part file per transfer on the receiver). */
#define BENCH_STAMP_LEN 24

static void stamp(uint8_t out[BENCH_STAMP_LEN], unsigned long i, const uint8_t nonce[16])
{
    for (int k = 0; k < 8; k++)
        out[k] = (uint8_t)((uint64_t)i >> (8 * k));
    memcpy(out + 8, nonce, 16);
}

/* Makes file i, or when it already has the right size (a kept --files directory), only
 * rewrites its stamp in place: no inode is created or deleted, which on some file systems
 * would slow every file creation that follows for a while (ext4 without a journal skips
 * recently deleted inodes one by one). */
TDSX_MUST_CHECK static int make_file(bench_t *b, unsigned long i, uint8_t *fill, size_t fill_len,
                                     const uint8_t nonce[16])
{
    file_path(b, i);
    int fd = open(b->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return TDSX_E_IO;
    int rc = 0;
    uint8_t st[BENCH_STAMP_LEN];
    size_t st_len = b->o->size < BENCH_STAMP_LEN ? (size_t)b->o->size : BENCH_STAMP_LEN;
    stamp(st, i, nonce);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = TDSX_E_IO;
    } else if ((uint64_t)sb.st_size == b->o->size) {
        if (pwrite(fd, st, st_len, 0) != (ssize_t)st_len)
            rc = TDSX_E_IO;
    } else if (ftruncate(fd, 0) != 0) {
        rc = TDSX_E_IO;
    } else {
        uint64_t left = b->o->size;
        memcpy(fill, st, st_len < fill_len ? st_len : fill_len);
        while (rc == 0 && left > 0) {
            size_t n = left < fill_len ? (size_t)left : fill_len;
            rc = write_fd(fd, fill, n);
            left -= n;
        }
    }
    if (close(fd) != 0 && rc == 0)
        rc = TDSX_E_IO;
    return rc;
}

TDSX_MUST_CHECK static int make_files(bench_t *b)
{
    const bench_opts_t *o = b->o;
    if (o->files_dir) {
        if (mkdir(o->files_dir, 0700) != 0 && errno != EEXIST)
            return TDSX_E_IO;
        /* The daemon opens the files by absolute path. */
        if (!realpath(o->files_dir, b->dir)) {
            snprintf(b->dir, sizeof b->dir, "%s", o->files_dir);
            return TDSX_E_NOTFOUND;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        char tmpl[PATH_MAX];
        if (snprintf(tmpl, sizeof tmpl, "%s/tdsx-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp") >=
            (int)sizeof tmpl)
            return TDSX_E_TOOBIG;
        if (!mkdtemp(tmpl))
            return TDSX_E_IO;
        b->dir_made = 1;
        if (!realpath(tmpl, b->dir)) {
            snprintf(b->dir, sizeof b->dir, "%s", tmpl);
            return TDSX_E_IO;
        }
    }
    int distinct = !o->same_file && o->size >= 8 &&
                   o->size * o->count <= BENCH_DISTINCT_BYTES_MAX && o->count > 1;
    b->n_files = distinct ? o->count : 1;
    size_t fill_len = o->size < BENCH_FILL_CHUNK ? (size_t)o->size : BENCH_FILL_CHUNK;
    uint8_t *fill = tdsx_malloc(fill_len ? fill_len : 1);
    if (!fill)
        return TDSX_E_NOMEM;
    uint8_t nonce[16];
    randombytes_buf(fill, fill_len);
    randombytes_buf(nonce, sizeof nonce);
    int rc = 0;
    for (unsigned long i = 0; rc == 0 && i < b->n_files; i++)
        rc = make_file(b, i, fill, fill_len, nonce);
    tdsx_free(fill);
    return rc;
}

/* Removes what make_files made in a temporary directory; a --files directory is kept. */
static void remove_files(bench_t *b)
{
    if (!b->dir_made)
        return;
    for (unsigned long i = 0; i < b->n_files; i++) {
        file_path(b, i);
        (void)unlink(b->path);
    }
    (void)rmdir(b->dir);
}

/* ---- the control connection ----------------------------------------------------------------- */

TDSX_MUST_CHECK static int connect_daemon(bench_t *b, const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return TDSX_E_INVAL;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    b->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (b->fd < 0)
        return TDSX_E_IO;
    if (connect(b->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return errno == ENOENT || errno == ECONNREFUSED ? TDSX_E_NOTFOUND : TDSX_E_IO;
    /* Requests are written as the socket takes them while answers keep arriving. */
    int fl = fcntl(b->fd, F_GETFL);
    if (fl < 0 || fcntl(b->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return TDSX_E_IO;
    return 0;
}

/* Frames request number id (1-based) into the output buffer: a SendRequest, or with --from a
 * PullRequest of the dataset (kept in the store: each pull is a transfer of its own). */
TDSX_MUST_CHECK static int queue_send(bench_t *b, unsigned long id)
{
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__SendRequest s = TDSX__SEND_REQUEST__INIT;
    Tdsx__PullRequest pl = TDSX__PULL_REQUEST__INIT;
    req.id = id;
    if (b->o->from) {
        pl.from = (char *)b->o->from;
        pl.dataset_id = (char *)b->o->dataset;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_PULL;
        req.pull = &pl;
    } else {
        file_path(b, id - 1);
        s.to = (char *)b->o->to;
        s.path = b->path;
        s.dataset_id = (char *)b->o->dataset;
        s.tags = (char *)b->o->tags;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_SEND;
        req.send = &s;
    }
    size_t len = tdsx__local_request__get_packed_size(&req);
    int rc = tdsx_buf_u32be(&b->out, (uint32_t)len);
    if (rc == 0)
        rc = tdsx_buf_reserve(&b->out, len);
    if (rc)
        return rc;
    tdsx__local_request__pack(&req, b->out.p + b->out.len);
    b->out.len += len;
    b->started_ns[id - 1] = now_ns();
    return 0;
}

TDSX_MUST_CHECK static int flush_out(bench_t *b)
{
    while (b->out.len > 0) {
        ssize_t w = write(b->fd, b->out.p, b->out.len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w <= 0)
            return errno == EPIPE ? TDSX_E_CLOSED : TDSX_E_IO;
        tdsx_buf_consume(&b->out, (size_t)w);
    }
    return 0;
}

static void note_failure(bench_t *b, unsigned long id, const char *state, const char *msg, int err)
{
    b->failed++;
    if (b->first_failure[0])
        return;
    snprintf(b->first_failure, sizeof b->first_failure, "request %lu: %s: %s (%s)", id, state,
             msg && *msg ? msg : tdsx_strerror(err), tdsx_err_name(err));
}

/* One answer from the daemon. Progress answers are not final and are skipped. */
TDSX_MUST_CHECK static int on_answer(bench_t *b, tdsx_bytes_t body)
{
    Tdsx__LocalResponse *m = NULL;
    int rc = tdsx_proto_unpack(b->arena, &tdsx__local_response__descriptor, body,
                               (ProtobufCMessage **)&m);
    if (rc)
        goto done;
    if (m->id == 0 || m->id > b->sent || b->started_ns[m->id - 1] == 0) {
        rc = TDSX_E_PROTOCOL; /* an answer to nothing we asked, or asked once */
        goto done;
    }
    if (m->body_case == TDSX__LOCAL_RESPONSE__BODY_PROGRESS)
        goto done;
    unsigned long id = (unsigned long)m->id;
    uint64_t elapsed = now_ns() - b->started_ns[id - 1];
    b->started_ns[id - 1] = 0;
    b->answered++;
    switch (m->body_case) {
    case TDSX__LOCAL_RESPONSE__BODY_RESULT: {
        const Tdsx__TransferResult *r = m->result;
        if (r->error == 0 && strcmp(r->state, "receipted") == 0) {
            b->lat_ms[b->receipted++] = (double)elapsed / 1e6;
        } else {
            note_failure(b, id, r->state, r->message,
                         r->error ? tdsx_err_from_wire(r->error) : TDSX_E_STATE);
        }
        break;
    }
    case TDSX__LOCAL_RESPONSE__BODY_ERROR:
        note_failure(b, id, "refused by the daemon", m->error->message,
                     tdsx_err_from_wire(m->error->code));
        break;
    default: note_failure(b, id, "unexpected answer", NULL, TDSX_E_PROTOCOL); break;
    }
done:
    tdsx_arena_reset(b->arena);
    return rc;
}

TDSX_MUST_CHECK static int read_answers(bench_t *b)
{
    uint8_t buf[BENCH_READ_SIZE];
    for (;;) {
        ssize_t r = read(b->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r < 0)
            return TDSX_E_IO;
        if (r == 0)
            return TDSX_E_CLOSED;
        tdsx_bytes_t in = tdsx_bytes(buf, (size_t)r), body;
        int rc;
        while ((rc = tdsx_frame_decoder_next(&b->dec, &in, &body)) > 0)
            if ((rc = on_answer(b, body)) != 0)
                return rc;
        if (rc < 0)
            return rc;
        if ((size_t)r < sizeof buf)
            return 0;
    }
}

/* When request i (0-based) is due under --rate: an open-loop schedule, so a slow answer
 * does not delay the requests after it (up to the concurrency window). */
static uint64_t due_ns(const bench_t *b, uint64_t t0, unsigned long i)
{
    return b->o->rate > 0 ? t0 + (uint64_t)((double)i * 1e9 / b->o->rate) : t0;
}

/* Whether another request may start now: count, window, schedule and duration allow it. */
static int may_start(const bench_t *b, uint64_t t0, uint64_t now)
{
    const bench_opts_t *o = b->o;
    return b->sent < o->count && b->sent - b->answered < o->concurrency &&
           (o->duration_ns == 0 || now - t0 < o->duration_ns);
}

/* Keeps up to `concurrency` requests in flight until every one started is answered and no
 * more may start. */
TDSX_MUST_CHECK static int run_load(bench_t *b, uint64_t t0)
{
    const bench_opts_t *o = b->o;
    uint64_t last_answer = now_ns();
    for (;;) {
        uint64_t now = now_ns();
        while (may_start(b, t0, now) && due_ns(b, t0, b->sent) <= now) {
            int rc = queue_send(b, b->sent + 1);
            if (rc)
                return rc;
            b->sent++;
        }
        if (b->answered == b->sent && !may_start(b, t0, now))
            return 0;
        int rc = flush_out(b);
        if (rc)
            return rc;
        /* Wake for the next scheduled request, rounding up to poll's millisecond. */
        int wait_ms = o->timeout_ms;
        if (may_start(b, t0, now)) {
            uint64_t due = due_ns(b, t0, b->sent);
            uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
            if (ms < (uint64_t)wait_ms)
                wait_ms = (int)ms;
        }
        struct pollfd pfd = {b->fd, (short)(POLLIN | (b->out.len ? POLLOUT : 0)), 0};
        int pr = poll(&pfd, 1, wait_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return TDSX_E_IO;
        if (b->answered < b->sent && now_ns() - last_answer >= (uint64_t)o->timeout_ms * 1000000u)
            return TDSX_E_TIMEOUT;
        if (pr == 0)
            continue;
        unsigned long before = b->answered;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            if ((rc = read_answers(b)) != 0)
                return rc;
        if (b->answered != before)
            last_answer = now_ns();
    }
    return 0;
}

/* ---- report ------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile (pct of 100) of a sorted array. */
static double percentile(const double *v, size_t n, unsigned pct)
{
    if (n == 0)
        return 0;
    size_t rank = (n * pct + 99) / 100;
    return v[rank ? rank - 1 : 0];
}

static void report(const bench_t *b, double secs)
{
    const bench_opts_t *o = b->o;
    qsort(b->lat_ms, b->receipted, sizeof *b->lat_ms, cmp_double);
    double p50 = percentile(b->lat_ms, b->receipted, 50);
    double p99 = percentile(b->lat_ms, b->receipted, 99);
    double rate = secs > 0 ? (double)b->receipted / secs : 0;
    double mbs = secs > 0 ? (double)b->receipted * (double)o->size / secs / 1e6 : 0;
    unsigned long missing = b->sent - b->answered;
    const char *peer = o->from ? o->from : o->to, *dir = o->from ? "from" : "to";
    if (o->json) {
        tdsx_buf_t to;
        tdsx_buf_init(&to, 4096);
        if (tdsx_json_str(&to, peer) != 0) {
            tdsx_buf_reset(&to);
            if (tdsx_buf_append_str(&to, "\"\"") != 0)
                tdsx_buf_reset(&to);
        }
        printf(
            "{\"%s\":%s,\"size\":%llu,\"count\":%lu,\"sent\":%lu,\"concurrency\":%lu,\"rate\":%.0f,"
            "\"files\":%lu,"
            "\"transfers\":%lu,\"failed\":%lu,\"unanswered\":%lu,\"seconds\":%.6f,"
            "\"transfers_per_s\":%.1f,\"mb_per_s\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
            dir, to.p ? (const char *)to.p : "\"\"", (unsigned long long)o->size, o->count, b->sent,
            o->concurrency, o->rate, b->n_files, b->receipted, b->failed, missing, secs, rate, mbs,
            p50, p99);
        tdsx_buf_free(&to);
        return;
    }
    printf("%-13s %s\n", dir, peer);
    if (o->from)
        printf("dataset       %s\n", o->dataset);
    else
        printf("size          %llu bytes, %lu distinct file%s\n", (unsigned long long)o->size,
               b->n_files, b->n_files == 1 ? "" : "s");
    printf("concurrency   %lu\n", o->concurrency);
    if (o->rate > 0)
        printf("rate          %.0f sends/s scheduled\n", o->rate);
    printf("transfers     %lu receipted of %lu sent\n", b->receipted, b->sent);
    printf("failed        %lu\n", b->failed + missing);
    printf("seconds       %.3f\n", secs);
    printf("transfers/s   %.1f\n", rate);
    if (!o->from)
        printf("MB/s          %.2f\n", mbs);
    printf("latency p50   %.3f ms\n", p50);
    printf("latency p99   %.3f ms\n", p99);
}

/* ---- the command ----------------------------------------------------------------------------- */

static int bench_usage(int pull)
{
    if (pull) {
        printf("usage: tdsx bench pull --from NODE --dataset ID --count N --concurrency C\n"
               "                       [--rate PER_SECOND] [--duration SECONDS] [--json]\n"
               "                       [--timeout SECONDS] [--socket PATH | -c CONFIG]\n"
               "Load generator for downloads: pulls dataset ID from NODE's catalog N times\n"
               "through the local daemon, C pulls in flight on one control-socket connection.\n"
               "Each pull is a full transfer (NODE decides, hashes, signs and streams; this\n"
               "node stores the object durably; both receipt it). Output, --rate, --duration,\n"
               "--timeout and exit codes as tdsx bench send.\n");
        return TDSX_EXIT_OK;
    }
    printf("usage: tdsx bench send --to NODE --size BYTES --count N --concurrency C\n"
           "                       [--tags TAGS] [--dataset ID] [--rate PER_SECOND]\n"
           "                       [--duration SECONDS] [--same-file] [--files DIR]\n"
           "                       [--json] [--timeout SECONDS]\n"
           "                       [--socket PATH | -c CONFIG]\n"
           "Load generator: pushes N payloads of BYTES bytes (k, M, G suffixes: powers of\n"
           "1024) to NODE through the local daemon, keeping C sends in flight on one\n"
           "control-socket connection. Each is a full transfer: hashed, signed, streamed,\n"
           "stored durably by NODE and receipted by both. The payload files are made once,\n"
           "before timing, in a temporary directory under $TMPDIR that is removed at the\n"
           "end, or in DIR with --files, kept and reused by later runs (only their first\n"
           "bytes are rewritten: no file is created or deleted). Each file has its own\n"
           "bytes, new for every run, so no transfer stores an object the receiver already\n"
           "holds, unless --same-file is given or N x BYTES is above 256 MiB.\n"
           "Prints transfers, seconds, transfers/s, MB/s and the p50/p99 latency from\n"
           "request written to result read (--json: one JSON line instead).\n"
           "--tags and --dataset are given to every send as with tdsx send; the default\n"
           "tags are \"%s\",\n"
           "which the built-in policy lets an enterprise send to a brain without an\n"
           "agreement. Both nodes' policies decide every transfer, as in production.\n"
           "--duration stops starting sends after SECONDS (N is then the most sent);\n"
           "the rate counts what was receipted over the time until the last answer.\n"
           "--rate starts sends on a fixed schedule (open loop, still at most C in flight)\n"
           "instead of as fast as answers come back: latency at a chosen load.\n"
           "--timeout is the longest silence from the daemon (default %d s).\n"
           "Exit 0 every transfer receipted, 1 any failed, 2 could not run.\n",
           BENCH_TAGS_DEFAULT, BENCH_TIMEOUT_S_DEFAULT);
    return TDSX_EXIT_OK;
}

TDSX_MUST_CHECK static int parse_opts(int argc, char **argv, bench_opts_t *o)
{
    static const struct option opts[] = {{"to", required_argument, NULL, 't'},
                                         {"size", required_argument, NULL, 'z'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"concurrency", required_argument, NULL, 'C'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"same-file", no_argument, NULL, 'f'},
                                         {"tags", required_argument, NULL, 'g'},
                                         {"dataset", required_argument, NULL, 'd'},
                                         {"files", required_argument, NULL, 'F'},
                                         {"duration", required_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"socket", required_argument, NULL, 'S'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"from", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const int pull = o->from != NULL; /* the pull command passes "" until --from is read */
    int have_size = 0, have_tags = 0, o_;
    unsigned long secs = BENCH_TIMEOUT_S_DEFAULT;
    optind = 1;
    while ((o_ = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o_) {
        case 't': o->to = optarg; break;
        case 'o': o->from = optarg; break;
        case 'z':
            if (parse_size(optarg, &o->size) != 0)
                return tdsx_cli_usage(o->cmd, "--size takes BYTES up to 64G (k, M, G suffixes)");
            have_size = 1;
            break;
        case 'n':
            if (parse_count(optarg, BENCH_COUNT_MAX, &o->count) != 0)
                return tdsx_cli_usage(o->cmd, "--count takes 1..%lu", BENCH_COUNT_MAX);
            break;
        case 'C':
            if (parse_count(optarg, BENCH_CONCURRENCY_MAX, &o->concurrency) != 0)
                return tdsx_cli_usage(o->cmd, "--concurrency takes 1..%lu", BENCH_CONCURRENCY_MAX);
            break;
        case 'r': {
            unsigned long r;
            if (parse_count(optarg, 10000000ul, &r) != 0)
                return tdsx_cli_usage(o->cmd, "--rate takes 1..10000000 sends per second");
            o->rate = (double)r;
            break;
        }
        case 'g':
            o->tags = optarg;
            have_tags = 1;
            break;
        case 'd': o->dataset = optarg; break;
        case 'F': o->files_dir = optarg; break;
        case 'D': {
            unsigned long d;
            if (parse_count(optarg, 86400, &d) != 0)
                return tdsx_cli_usage(o->cmd, "--duration takes 1..86400 seconds");
            o->duration_ns = (uint64_t)d * 1000000000u;
            break;
        }
        case 'f': o->same_file = 1; break;
        case 'j': o->json = 1; break;
        case 'T':
            if (parse_count(optarg, 86400, &secs) != 0)
                return tdsx_cli_usage(o->cmd, "--timeout takes 1..86400 seconds");
            break;
        case 'S': o->sock = optarg; break;
        case 'c': o->conf = optarg; break;
        case 'h': return -1;
        default: return tdsx_cli_usage(o->cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(o->cmd, "unexpected argument '%s'", argv[optind]);
    if (pull) {
        if (!*o->from || !*o->dataset || !o->count || !o->concurrency)
            return tdsx_cli_usage(o->cmd,
                                  "--from, --dataset, --count and --concurrency are required");
        if (o->to || have_size || o->files_dir || o->same_file || have_tags)
            return tdsx_cli_usage(o->cmd, "a pull takes no --to, --size, --files, --same-file "
                                          "or --tags (the owner's catalog says them)");
    } else {
        if (o->from)
            return tdsx_cli_usage(o->cmd, "--from is for tdsx bench pull");
        if (!o->to || !have_size || !o->count || !o->concurrency)
            return tdsx_cli_usage(o->cmd, "--to, --size, --count and --concurrency are required");
    }
    o->timeout_ms = (int)secs * 1000;
    return 0;
}

static int bench_run(int argc, char **argv, int pull)
{
    bench_opts_t o;
    memset(&o, 0, sizeof o);
    o.cmd = argv[0];
    o.tags = BENCH_TAGS_DEFAULT;
    o.dataset = "";
    o.from = pull ? "" : NULL;
    int code = parse_opts(argc, argv, &o);
    if (code < 0)
        return bench_usage(pull);
    if (code)
        return code;
    char *sock = NULL;
    if ((code = tdsx__cli_socket(o.cmd, o.sock, o.conf, &sock)) != 0)
        return code;
    bench_t *b = tdsx_calloc(1, sizeof *b);
    if (!b) {
        tdsx_free(sock);
        return tdsx_cli_fail(o.cmd, TDSX_E_NOMEM, NULL);
    }
    b->o = &o;
    b->fd = -1;
    tdsx_buf_init(&b->out, BENCH_OUT_CAP);
    const char *what = NULL;
    int rc = tdsx_frame_decoder_init(&b->dec, TDSX_CONTROL_FRAME_CAP);
    if (rc == 0)
        rc = tdsx_arena_new(BENCH_ARENA_BUDGET, &b->arena);
    if (rc == 0) {
        b->started_ns = tdsx_calloc(o.count, sizeof *b->started_ns);
        b->lat_ms = tdsx_calloc(o.count, sizeof *b->lat_ms);
        if (!b->started_ns || !b->lat_ms)
            rc = TDSX_E_NOMEM;
    }
    if (rc == 0 && !o.from && (rc = make_files(b)) != 0)
        what = b->dir[0] ? b->dir : "temporary directory";
    if (rc == 0 && (rc = connect_daemon(b, sock)) != 0)
        what = sock;
    if (rc) {
        code = tdsx_cli_fail(o.cmd, rc, what);
        goto fail;
    }
    uint64_t t0 = now_ns();
    rc = run_load(b, t0);
    double secs = (double)(now_ns() - t0) / 1e9;
    if (rc) {
        /* The load could not finish: what was answered is still reported. */
        fprintf(stderr, "tdsx %s: stopped after %lu of %lu answers: %s (%s)\n", o.cmd, b->answered,
                o.count, tdsx_strerror(rc), tdsx_err_name(rc));
    }
    report(b, secs);
    if (b->first_failure[0])
        fprintf(stderr, "tdsx %s: %lu failed; first: %s\n", o.cmd, b->failed, b->first_failure);
    /* A daemon that went silent or away failed the transfers still in flight; anything else
     * that stopped the load means the numbers are not a measurement. */
    if (rc == 0 || rc == TDSX_E_TIMEOUT || rc == TDSX_E_CLOSED)
        code = rc || b->failed ? TDSX_EXIT_INVALID : TDSX_EXIT_OK;
    else
        code = TDSX_EXIT_ERROR;
fail:
    if (b->fd >= 0)
        close(b->fd);
    remove_files(b);
    tdsx_free(b->lat_ms);
    tdsx_free(b->started_ns);
    tdsx_arena_free(b->arena);
    tdsx_frame_decoder_free(&b->dec);
    tdsx_buf_free(&b->out);
    tdsx_free(b);
    tdsx_free(sock);
    return code;
}

int tdsx_cmd_bench_send(int argc, char **argv)
{
    return bench_run(argc, argv, 0);
}

int tdsx_cmd_bench_pull(int argc, char **argv)
{
    return bench_run(argc, argv, 1);
}
