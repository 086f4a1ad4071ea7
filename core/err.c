/* Error table: names and messages generated from errors.def (libuv's UV_ERRNO_MAP idea). */
#include "core.h"

#include <errno.h>
#include <string.h>

typedef struct {
    int code;
    const char *name;
    const char *msg;
} err_row_t;

static const err_row_t rows[] = {
#define X(name, off, msg) {TDSX_E_##name, "TDSX_E_" #name, msg},
#include "errors.def"
#undef X
};

static const err_row_t *find(int err)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].code == err)
            return &rows[i];
    return NULL;
}

const char *tdsx_strerror(int err)
{
    if (err == 0)
        return "success";
    const err_row_t *r = find(err);
    if (r)
        return r->msg;
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *tdsx_err_name(int err)
{
    if (err == 0)
        return "OK";
    const err_row_t *r = find(err);
    if (r)
        return r->name;
    switch (-err) {
    case EIO: return "EIO";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENOSPC: return "ENOSPC";
    default: return "UNKNOWN";
    }
}

uint32_t tdsx_err_wire(int err)
{
    return find(err) ? (uint32_t)(TDSX_ERR_BASE - err) : 0;
}

int tdsx_err_from_wire(uint32_t wire)
{
    if (wire == 0 || wire > 100000)
        return TDSX_E_PROTOCOL;
    int code = TDSX_ERR_BASE - (int)wire;
    return find(code) ? code : TDSX_E_PROTOCOL;
}
