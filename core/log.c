/* JSON-lines structured logging. One line per event, written with a single fwrite so lines
 * from one process never interleave mid-line. */
#include "core.h"

#include <string.h>
#include <time.h>

#define LOG_LINE_CAP (16u * 1024u)

static tdsx_log_level_t min_level = TDSX_LOG_INFO;
static FILE *out_file;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void tdsx_log_set_level(tdsx_log_level_t level)
{
    min_level = level;
}

tdsx_log_level_t tdsx_log_get_level(void)
{
    return min_level;
}

int tdsx_log_level_parse(const char *s, tdsx_log_level_t *out)
{
    for (int i = TDSX_LOG_DEBUG; i <= TDSX_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (tdsx_log_level_t)i;
            return 0;
        }
    }
    return TDSX_E_INVAL;
}

void tdsx_log_set_output(FILE *f)
{
    out_file = f;
}

int tdsx_json_str(tdsx_buf_t *b, const char *s)
{
    int rc = tdsx_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p; p++) {
        switch (*p) {
        case '"': rc = tdsx_buf_append(b, "\\\"", 2); break;
        case '\\': rc = tdsx_buf_append(b, "\\\\", 2); break;
        case '\n': rc = tdsx_buf_append(b, "\\n", 2); break;
        case '\r': rc = tdsx_buf_append(b, "\\r", 2); break;
        case '\t': rc = tdsx_buf_append(b, "\\t", 2); break;
        default:
            /* UTF-8 bytes >= 0x80 pass through; other control bytes are escaped. */
            if (*p < 0x20 || *p == 0x7f)
                rc = tdsx_buf_printf(b, "\\u%04x", *p);
            else
                rc = tdsx_buf_append(b, p, 1);
            break;
        }
    }
    return rc ? rc : tdsx_buf_append(b, "\"", 1);
}

static int write_ts(tdsx_buf_t *b)
{
    struct timespec ts;
    struct tm tm;
    char t[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    return tdsx_buf_printf(b, "{\"ts\":\"%s.%03ldZ\"", t, ts.tv_nsec / 1000000);
}

void tdsx_log_kv(tdsx_log_level_t level, const char *event, const tdsx_kv_t *kv, size_t n)
{
    if (level < min_level || level >= TDSX_LOG_OFF)
        return;
    tdsx_buf_t b;
    tdsx_buf_init(&b, LOG_LINE_CAP);
    int rc = write_ts(&b);
    if (rc == 0)
        rc = tdsx_buf_printf(&b, ",\"level\":\"%s\",\"event\":", level_names[level]);
    if (rc == 0)
        rc = tdsx_json_str(&b, event);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = tdsx_buf_append(&b, ",", 1);
        if (rc == 0)
            rc = tdsx_json_str(&b, kv[i].key);
        if (rc == 0)
            rc = tdsx_buf_append(&b, ":", 1);
        if (rc)
            break;
        switch (kv[i].type) {
        case TDSX_KV_STR: rc = tdsx_json_str(&b, kv[i].s ? kv[i].s : ""); break;
        case TDSX_KV_INT: rc = tdsx_buf_printf(&b, "%lld", kv[i].i); break;
        case TDSX_KV_ERR:
            rc = tdsx_json_str(&b, tdsx_err_name((int)kv[i].i));
            if (rc == 0)
                rc = tdsx_buf_printf(&b, ",\"%s_msg\":", kv[i].key);
            if (rc == 0)
                rc = tdsx_json_str(&b, tdsx_strerror((int)kv[i].i));
            break;
        default: rc = TDSX_E_INTERNAL; break;
        }
    }
    if (rc == 0)
        rc = tdsx_buf_append(&b, "}\n", 2);
    if (rc == 0) {
        FILE *f = out_file ? out_file : stderr;
        fwrite(b.p, 1, b.len, f);
        fflush(f);
    }
    tdsx_buf_free(&b);
}
