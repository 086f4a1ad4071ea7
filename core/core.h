/*
 * core.h — the common core every TDSX module uses: error codes, bounds-checked byte
 * cursors, capped growable buffers, a hookable allocator and JSON-lines logging.
 *
 * Nothing here does network I/O; the logger writes to a caller-chosen FILE (stderr by
 * default) and is the only part with a side effect.
 */
#ifndef TDSX_CORE_H
#define TDSX_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__) || defined(__clang__)
#define TDSX_MUST_CHECK __attribute__((warn_unused_result))
#define TDSX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TDSX_MUST_CHECK
#define TDSX_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------------------------
 * Errors
 *
 * 0 is success; every failure is a negative int. libuv's codes are negated errno values and
 * its own private range (down to about -4095), so ours start at TDSX_ERR_BASE and go down:
 * code = TDSX_ERR_BASE - offset, offsets from core/errors.def. Codes are stable: tests,
 * logs and other nodes (Error frames) rely on them.
 * ---------------------------------------------------------------------------------------- */
#define TDSX_ERR_BASE (-10000)

typedef enum {
#define X(name, off, msg) TDSX_E_##name = TDSX_ERR_BASE - (off),
#include "errors.def"
#undef X
    TDSX_E_LAST_ = TDSX_ERR_BASE - 100000
} tdsx_err_t;

/* Human-readable message for any code (ours, or a negated errno). Never NULL. */
const char *tdsx_strerror(int err);
/* Stable symbolic name ("TDSX_E_CERT_REVOKED", "EIO", "OK"). Never NULL. */
const char *tdsx_err_name(int err);
/* The offset of one of our codes, as it travels in Error frames (0 for unknown codes). */
uint32_t tdsx_err_wire(int err);
/* Inverse of tdsx_err_wire: the code for a wire value, TDSX_E_PROTOCOL when unknown. */
int tdsx_err_from_wire(uint32_t wire);

/* ------------------------------------------------------------------------------------------
 * Allocation
 *
 * Every allocation in TDSX goes through these, so tests can make the N-th one fail. The
 * hooks must be set before any other TDSX call and are process-wide. tdsx_free(NULL) is a
 * no-op. tdsx_calloc and tdsx_reallocarray check n*size for overflow.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_allocator_s {
    void *(*malloc_fn)(size_t size, void *ctx);
    void *(*realloc_fn)(void *ptr, size_t size, void *ctx);
    void (*free_fn)(void *ptr, void *ctx);
    void *ctx;
} tdsx_allocator_t;

/* Installs `a` (copied); NULL restores the libc allocator. */
void tdsx_allocator_set(const tdsx_allocator_t *a);

void *tdsx_malloc(size_t size);
void *tdsx_calloc(size_t n, size_t size);
void *tdsx_realloc(void *ptr, size_t size);
void *tdsx_reallocarray(void *ptr, size_t n, size_t size);
void tdsx_free(void *ptr);
/* Copies a NUL-terminated string; NULL on allocation failure. */
char *tdsx_strdup(const char *s);
/* Copies at most n bytes of s and terminates the copy. */
char *tdsx_strndup(const char *s, size_t n);

/* ------------------------------------------------------------------------------------------
 * Byte cursor
 *
 * Untrusted input is read only through a cursor. Every read checks the remaining length and
 * returns TDSX_E_BOUNDS without moving when there is not enough; the cursor never points
 * outside the buffer it was made from. The cursor does not own its bytes.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_bytes_s {
    const uint8_t *p;
    size_t n;
} tdsx_bytes_t;

static inline tdsx_bytes_t tdsx_bytes(const void *p, size_t n)
{
    tdsx_bytes_t b;
    b.p = (const uint8_t *)p;
    b.n = n;
    return b;
}

TDSX_MUST_CHECK int tdsx_bytes_u8(tdsx_bytes_t *c, uint8_t *out);
TDSX_MUST_CHECK int tdsx_bytes_u16be(tdsx_bytes_t *c, uint16_t *out);
TDSX_MUST_CHECK int tdsx_bytes_u32be(tdsx_bytes_t *c, uint32_t *out);
TDSX_MUST_CHECK int tdsx_bytes_u64be(tdsx_bytes_t *c, uint64_t *out);
/* Takes the next n bytes as a sub-cursor. */
TDSX_MUST_CHECK int tdsx_bytes_take(tdsx_bytes_t *c, size_t n, tdsx_bytes_t *out);
/* Copies the next n bytes into dst. */
TDSX_MUST_CHECK int tdsx_bytes_copy(tdsx_bytes_t *c, void *dst, size_t n);
/* Skips n bytes. */
TDSX_MUST_CHECK int tdsx_bytes_skip(tdsx_bytes_t *c, size_t n);
/* Looks at the next n bytes without consuming them; *out points into the buffer. */
TDSX_MUST_CHECK int tdsx_bytes_peek(const tdsx_bytes_t *c, size_t n, const uint8_t **out);
/* 1 when both hold the same bytes (constant time in the length when lengths are equal). */
int tdsx_bytes_equal(tdsx_bytes_t a, tdsx_bytes_t b);

/* ------------------------------------------------------------------------------------------
 * Growable buffer with a cap
 *
 * Appending past `cap` fails with TDSX_E_TOOBIG and leaves the buffer unchanged. Every
 * buffer names its cap at init, so no peer can grow memory without bound.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_buf_s {
    uint8_t *p;
    size_t len;
    size_t alloc;
    size_t cap;
} tdsx_buf_t;

void tdsx_buf_init(tdsx_buf_t *b, size_t cap);
TDSX_MUST_CHECK int tdsx_buf_reserve(tdsx_buf_t *b, size_t extra);
TDSX_MUST_CHECK int tdsx_buf_append(tdsx_buf_t *b, const void *p, size_t n);
TDSX_MUST_CHECK int tdsx_buf_append_str(tdsx_buf_t *b, const char *s);
TDSX_MUST_CHECK int tdsx_buf_printf(tdsx_buf_t *b, const char *fmt, ...) TDSX_PRINTF(2, 3);
TDSX_MUST_CHECK int tdsx_buf_u32be(tdsx_buf_t *b, uint32_t v);
TDSX_MUST_CHECK int tdsx_buf_u64be(tdsx_buf_t *b, uint64_t v);
/* Drops the first n bytes (n <= len), keeping the rest. */
void tdsx_buf_consume(tdsx_buf_t *b, size_t n);
void tdsx_buf_reset(tdsx_buf_t *b);
/* Frees the storage; the buffer may be reused after tdsx_buf_init. */
void tdsx_buf_free(tdsx_buf_t *b);
/* Hands the storage to the caller (NUL-terminated, may be NULL when empty); buffer empties. */
char *tdsx_buf_take(tdsx_buf_t *b, size_t *len);
static inline tdsx_bytes_t tdsx_buf_bytes(const tdsx_buf_t *b)
{
    return tdsx_bytes(b->p, b->len);
}

/* ------------------------------------------------------------------------------------------
 * Hex
 * ---------------------------------------------------------------------------------------- */
/* Writes 2n lowercase hex digits and a NUL to out (size >= 2n+1). */
void tdsx_hex_encode(char *out, const void *p, size_t n);
/* Decodes exactly 2n hex digits from s into out; TDSX_E_FORMAT otherwise. */
TDSX_MUST_CHECK int tdsx_hex_decode(void *out, size_t n, const char *s);

/* ------------------------------------------------------------------------------------------
 * Logging: one JSON object per line,
 *   {"ts":"2026-11-21T23:30:00.123Z","level":"warn","event":"conn.refused","peer":"...",...}
 * Keys and events are ASCII identifiers chosen by the caller; string values are escaped.
 * Secrets are never passed to the logger: log fingerprints and identities, not keys.
 * ---------------------------------------------------------------------------------------- */
typedef enum {
    TDSX_LOG_DEBUG = 0,
    TDSX_LOG_INFO = 1,
    TDSX_LOG_WARN = 2,
    TDSX_LOG_ERROR = 3,
    TDSX_LOG_OFF = 4
} tdsx_log_level_t;

typedef enum { TDSX_KV_STR, TDSX_KV_INT, TDSX_KV_ERR } tdsx_kv_type_t;

typedef struct tdsx_kv_s {
    const char *key;
    tdsx_kv_type_t type;
    const char *s;
    long long i;
} tdsx_kv_t;

#define TDSX_KV_S(k, v) ((tdsx_kv_t){(k), TDSX_KV_STR, (v), 0})
#define TDSX_KV_I(k, v) ((tdsx_kv_t){(k), TDSX_KV_INT, NULL, (long long)(v)})
/* An error code: logged as "<k>":"TDSX_E_NAME" plus "<k>_msg" with its message. */
#define TDSX_KV_E(k, v) ((tdsx_kv_t){(k), TDSX_KV_ERR, NULL, (long long)(v)})

/* Messages below `level` are dropped. Default INFO. */
void tdsx_log_set_level(tdsx_log_level_t level);
tdsx_log_level_t tdsx_log_get_level(void);
/* Parses "debug|info|warn|error|off"; TDSX_E_INVAL otherwise. */
TDSX_MUST_CHECK int tdsx_log_level_parse(const char *s, tdsx_log_level_t *out);
/* Where lines go; NULL means stderr. The FILE is not closed by the logger. */
void tdsx_log_set_output(FILE *f);
/* Writes one line with the given fields (n may be 0). */
void tdsx_log_kv(tdsx_log_level_t level, const char *event, const tdsx_kv_t *kv, size_t n);

#define tdsx_log(level, event, ...)                                                                \
    do {                                                                                           \
        const tdsx_kv_t tdsx_kv_[] = {__VA_ARGS__};                                                \
        tdsx_log_kv((level), (event), tdsx_kv_, sizeof tdsx_kv_ / sizeof tdsx_kv_[0]);             \
    } while (0)

/* JSON string escaping into a buffer (quotes included). Shared with other JSON writers. */
TDSX_MUST_CHECK int tdsx_json_str(tdsx_buf_t *b, const char *s);

/* ------------------------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------------------------- */
/* Reads a whole file of at most `cap` bytes into a NUL-terminated heap buffer. */
TDSX_MUST_CHECK int tdsx_file_read(const char *path, size_t cap, uint8_t **out, size_t *len);
/* Writes a file atomically (temp + fsync + rename) with the given mode. With force == 0 an
 * existing file is TDSX_E_EXISTS and is left alone. */
TDSX_MUST_CHECK int tdsx_file_write(const char *path, const void *p, size_t n, unsigned mode,
                                    int force);

/* fsyncs a directory, so that a rename, link or unlink in it survives a power loss. 0, or
 * TDSX_E_IO with errno left as the failing open/fsync set it. A file system that cannot fsync
 * a directory (EINVAL) has nothing to sync: 0. */
TDSX_MUST_CHECK int tdsx_dir_sync(const char *path);

/* Wall clock in seconds since the epoch, overridable for tests (0 restores the real clock). */
int64_t tdsx_now(void);
void tdsx_now_set(int64_t fixed);

#endif
