/*
 * fill.h — builds protobuf messages with every field set, for round-trip tests and fuzz seeds.
 */
#ifndef TDSX_TEST_FILL_H
#define TDSX_TEST_FILL_H

#include "proto.h"

/*
 * Allocates from `a` a message of type `d` whose every field holds a deterministic non-default
 * value derived from `seed`: nested messages are filled too, repeated fields get 1 to 3
 * elements, strings are UTF-8 with multi-byte characters, enums take their last value. In each
 * oneof the member with field number `pick` is set when it belongs to that oneof, else the
 * first member. Aborts when the arena is too small (a bug in the caller's test).
 */
ProtobufCMessage *tdsx_test_fill(tdsx_arena_t *a, const ProtobufCMessageDescriptor *d,
                                 uint32_t pick, unsigned seed);

#endif
