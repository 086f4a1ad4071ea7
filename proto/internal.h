/* internal.h — shared between the proto/ sources only; not part of the module's contract. */
#ifndef TDSX_PROTO_INTERNAL_H
#define TDSX_PROTO_INTERNAL_H

#include "proto.h"

/* The protobuf-c allocator view of an arena (its free is a no-op). */
ProtobufCAllocator *tdsx__arena_protobuf(tdsx_arena_t *a);

/* Why the last failed allocation failed (TDSX_E_ARENA_BUDGET or TDSX_E_NOMEM; 0 when none
 * failed since the last call), and forgets it. protobuf-c reports every failure as NULL, so
 * the decoder asks the arena what kind it was. */
int tdsx__arena_take_failure(tdsx_arena_t *a);

#endif
