#include "fill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *need(tdsx_arena_t *a, size_t n)
{
    void *p = tdsx_arena_alloc(a, n);
    if (!p) {
        fprintf(stderr, "tdsx_test_fill: arena too small\n");
        abort();
    }
    memset(p, 0, n);
    return p;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return sizeof(uint32_t);
    }
}

static void set_value(tdsx_arena_t *a, const ProtobufCFieldDescriptor *f, void *dst, unsigned seed)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: *(int32_t *)dst = -(int32_t)(seed % 1000) - 1; break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: *(uint32_t *)dst = 1000u * f->id + seed + 1; break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)dst = 1700000000 + 1000 * (int64_t)f->id + seed;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)dst = ((uint64_t)f->id << 40) + 0x10000u + seed;
        break;
    case PROTOBUF_C_TYPE_FLOAT: *(float *)dst = 1.5f + (float)seed; break;
    case PROTOBUF_C_TYPE_DOUBLE: *(double *)dst = 2.5 + seed; break;
    case PROTOBUF_C_TYPE_BOOL: *(protobuf_c_boolean *)dst = 1; break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        *(int *)dst = e->values[e->n_values - 1].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char tmp[96];
        int n = snprintf(tmp, sizeof tmp, "%s-%u-数据", f->name, seed);
        char *s = need(a, (size_t)n + 1);
        memcpy(s, tmp, (size_t)n + 1);
        *(char **)dst = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = dst;
        b->len = 8 + (f->id + seed) % 25;
        b->data = need(a, b->len);
        for (size_t i = 0; i < b->len; i++)
            b->data[i] = (uint8_t)(f->id * 31 + seed + i);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)dst = tdsx_test_fill(a, f->descriptor, 0, seed + f->id);
        break;
    default: abort();
    }
}

/* 1 when field number `pick` is a member of the oneof whose case lives at `case_offset`. */
static int oneof_has(const ProtobufCMessageDescriptor *d, unsigned case_offset, uint32_t pick)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->quantifier_offset == case_offset &&
            f->id == pick)
            return 1;
    }
    return 0;
}

ProtobufCMessage *tdsx_test_fill(tdsx_arena_t *a, const ProtobufCMessageDescriptor *d,
                                 uint32_t pick, unsigned seed)
{
    ProtobufCMessage *m = need(a, d->sizeof_message);
    protobuf_c_message_init(d, m);
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *member = base + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
            int chosen = oneof_has(d, f->quantifier_offset, pick) ? f->id == pick : *which == 0;
            if (!chosen)
                continue;
            *which = f->id;
            set_value(a, f, member, seed);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = 1 + (seed + f->id) % 3;
            char *arr = need(a, n * elem_size(f));
            for (size_t j = 0; j < n; j++)
                set_value(a, f, arr + j * elem_size(f), seed + (unsigned)j);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)member = arr;
        } else {
            set_value(a, f, member, seed);
        }
    }
    return m;
}
