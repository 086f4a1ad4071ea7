/*
 * internal.h — what the gateway/ sources share with each other and nobody else (tdsx__ names).
 */
#ifndef TDSX_GATEWAY_INTERNAL_H
#define TDSX_GATEWAY_INTERNAL_H

#include "gateway.h"

/* Checks a "host:port" endpoint as the registry accepts it (see gateway.h) and splits it.
 * host receives the host as written (IPv6 brackets kept), at most TDSX_HOST_MAX bytes plus
 * NUL; either output may be NULL. TDSX_E_CONFIG when malformed. */
TDSX_MUST_CHECK int tdsx__endpoint_parse(tdsx_bytes_t s, char host[TDSX_HOST_MAX + 1],
                                         uint16_t *port);

/* 1 when `node` (n bytes) can be written in a registry line and in an id: 1..TDSX_NODE_MAX
 * bytes, none of them white space, '/', '#', DEL or another control character. */
int tdsx__node_name_ok(tdsx_bytes_t node);

#endif
