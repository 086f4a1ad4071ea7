/*
 * fuzz_http.c — the node's HTTP request-head parser (gateway/http.h) on arbitrary bytes.
 *
 * Only documented results: 0, 1 (need more) or one of the TDSX_E_HTTP_* refusals. When a head
 * parses: it ends inside the input and within the cap, the path is an origin-form path without
 * query, NUL-terminated inside its buffer, and parsing exactly the head gives the same answer
 * while any shorter prefix does not parse (the parser never reads past the empty line). A
 * /pub/NAME the charset accepts has no '/' and no leading '.'.
 * Seeds (corpus/http/): requests the endpoint serves and refuses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static tdsx_http_req_t req, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0, len2 = 0;
    int rc = tdsx__http_parse(tdsx_bytes(data, size), &req, &len);
    check(rc == 0 || rc == 1 || rc == TDSX_E_HTTP_REQUEST || rc == TDSX_E_HTTP_HEAD_TOOBIG ||
          rc == TDSX_E_HTTP_METHOD || rc == TDSX_E_HTTP_BODY || rc == TDSX_E_HTTP_VERSION);
    if (rc == 1)
        check(size < TDSX_HTTP_HEAD_CAP);
    if (rc != 0)
        return 0;
    check(len > 0 && len <= size && len <= TDSX_HTTP_HEAD_CAP);
    check(req.method == TDSX_HTTP_GET || req.method == TDSX_HTTP_HEAD);
    check(memchr(req.path, '\0', sizeof req.path) != NULL);
    check(req.path[0] == '/' && strchr(req.path, '?') == NULL);
    check(memchr(req.if_none_match, '\0', sizeof req.if_none_match) != NULL);
    check(tdsx__http_parse(tdsx_bytes(data, len), &again, &len2) == 0 && len2 == len);
    check(again.method == req.method && strcmp(again.path, req.path) == 0);
    check(tdsx__http_parse(tdsx_bytes(data, len - 1), &again, &len2) != 0);
    if (strncmp(req.path, "/pub/", 5) == 0 && tdsx__http_name_ok(req.path + 5))
        check(strchr(req.path + 5, '/') == NULL && req.path[5] != '.');
    return 0;
}
