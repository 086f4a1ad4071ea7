/* Whole-file helpers: bounded reads and atomic writes with an explicit mode. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tdsx_file_read(const char *path, size_t cap, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TDSX_E_NOTFOUND : -errno;
    tdsx_buf_t b;
    tdsx_buf_init(&b, cap);
    uint8_t chunk[8192];
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
    b.p[b.len] = '\0';
    *out = (uint8_t *)tdsx_buf_take(&b, len);
    return 0;
}

int tdsx_file_write(const char *path, const void *p, size_t n, unsigned mode, int force)
{
    static atomic_uint counter;
    struct stat st;
    if (!force && lstat(path, &st) == 0)
        return TDSX_E_EXISTS;
    tdsx_buf_t tmp;
    tdsx_buf_init(&tmp, 4096);
    int rc =
        tdsx_buf_printf(&tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    if (rc)
        return rc;
    const char *tpath = (const char *)tmp.p;
    int fd = open(tpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* The umask may have narrowed the mode; make it exactly what was asked. */
    if (fchmod(fd, mode & 07777) != 0)
        rc = -errno;
    const uint8_t *q = p;
    size_t left = n;
    while (rc == 0 && left) {
        ssize_t w = write(fd, q, left);
        if (w < 0) {
            if (errno != EINTR)
                rc = -errno;
            continue;
        }
        q += w;
        left -= (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && !force && link(tpath, path) != 0) {
        /* link() refuses to replace, closing the race between lstat and rename. */
        rc = errno == EEXIST ? TDSX_E_EXISTS : -errno;
        unlink(tpath);
        goto fail;
    }
    if (rc == 0 && !force) {
        unlink(tpath);
        goto fail;
    }
    if (rc == 0 && rename(tpath, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tpath);
fail:
    tdsx_buf_free(&tmp);
    return rc;
}

int tdsx_dir_sync(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return TDSX_E_IO;
    int rc = 0, saved = 0;
    if (fsync(fd) != 0 && errno != EINVAL) {
        saved = errno;
        rc = TDSX_E_IO;
    }
    close(fd);
    if (rc)
        errno = saved;
    return rc;
}

static int64_t fixed_now;

int64_t tdsx_now(void)
{
    if (fixed_now)
        return fixed_now;
    return (int64_t)time(NULL);
}

void tdsx_now_set(int64_t fixed)
{
    fixed_now = fixed;
}
