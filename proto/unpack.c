/* Decoding protobuf messages into an arena, with the checks protobuf-c leaves out. */
#include "internal.h"

/* Our schema has no recursive types (SPEC §5), so real nesting is shallow; the limit only
 * bounds the walk below should a descriptor ever be recursive. */
#define NEST_MAX 16

/* Largest field number protobuf allows (2^29 - 1). */
#define FIELD_NUMBER_MAX 536870911u

/* Protobuf wire types (protobuf encoding guide). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int read_varint(tdsx_bytes_t *c, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (tdsx_bytes_u8(c, &b))
            return TDSX_E_PROTO_DECODE;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return TDSX_E_PROTO_DECODE;
}

/* Strict UTF-8 (RFC 3629 §4): no overlong forms, no surrogates, nothing above U+10FFFF; NUL
 * is refused too because protobuf-c hands strings out NUL-terminated. */
static int check_utf8(tdsx_bytes_t s)
{
    while (s.n) {
        uint8_t b0;
        if (tdsx_bytes_u8(&s, &b0))
            return TDSX_E_PROTO_DECODE;
        if (b0 == 0)
            return TDSX_E_PROTO_DECODE;
        if (b0 < 0x80)
            continue;
        size_t extra;
        uint32_t cp, min;
        if (b0 >= 0xc2 && b0 <= 0xdf) {
            extra = 1, cp = b0 & 0x1f, min = 0x80;
        } else if (b0 >= 0xe0 && b0 <= 0xef) {
            extra = 2, cp = b0 & 0x0f, min = 0x800;
        } else if (b0 >= 0xf0 && b0 <= 0xf4) {
            extra = 3, cp = b0 & 0x07, min = 0x10000;
        } else {
            return TDSX_E_PROTO_DECODE;
        }
        for (size_t i = 0; i < extra; i++) {
            uint8_t b;
            if (tdsx_bytes_u8(&s, &b) || (b & 0xc0) != 0x80)
                return TDSX_E_PROTO_DECODE;
            cp = cp << 6 | (b & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return TDSX_E_PROTO_DECODE;
    }
    return 0;
}

/* Walks the wire form of a message protobuf-c has already accepted and checks every string
 * field, descending into message fields. Unknown fields are skipped like protobuf-c does. */
static int check_strings(const ProtobufCMessageDescriptor *desc, tdsx_bytes_t in, int depth)
{
    if (depth > NEST_MAX)
        return TDSX_E_PROTO_DECODE;
    while (in.n) {
        uint64_t key, len;
        tdsx_bytes_t value;
        if (read_varint(&in, &key))
            return TDSX_E_PROTO_DECODE;
        /* protobuf-c checks field number 0 only in a tag's first byte, so it accepts 0 spelled
         * long (0x80 0x00) and would re-encode it as a tag it then refuses. */
        if ((key >> 3) == 0 || (key >> 3) > FIELD_NUMBER_MAX)
            return TDSX_E_PROTO_DECODE;
        switch (key & 7) {
        case WT_VARINT:
            if (read_varint(&in, &len))
                return TDSX_E_PROTO_DECODE;
            break;
        case WT_I64:
            if (tdsx_bytes_skip(&in, 8))
                return TDSX_E_PROTO_DECODE;
            break;
        case WT_I32:
            if (tdsx_bytes_skip(&in, 4))
                return TDSX_E_PROTO_DECODE;
            break;
        case WT_LEN: {
            if (read_varint(&in, &len) || len > in.n || tdsx_bytes_take(&in, (size_t)len, &value))
                return TDSX_E_PROTO_DECODE;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
            int rc = 0;
            if (f && f->type == PROTOBUF_C_TYPE_STRING)
                rc = check_utf8(value);
            else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
                rc = check_strings(f->descriptor, value, depth + 1);
            if (rc)
                return rc;
            break;
        }
        default:
            /* Groups (3, 4) are gone from proto3 and none of our peers sends them. */
            return TDSX_E_PROTO_DECODE;
        }
    }
    return 0;
}

int tdsx_proto_unpack(tdsx_arena_t *a, const ProtobufCMessageDescriptor *desc, tdsx_bytes_t bytes,
                      ProtobufCMessage **msg)
{
    if (!a || !desc || !msg || (!bytes.p && bytes.n))
        return TDSX_E_INVAL;
    (void)tdsx__arena_take_failure(a);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, tdsx__arena_protobuf(a), bytes.n, bytes.p);
    if (!m) {
        int why = tdsx__arena_take_failure(a);
        return why ? why : TDSX_E_PROTO_DECODE;
    }
    int rc = check_strings(desc, bytes, 0);
    if (rc)
        return rc;
    *msg = m;
    return 0;
}

int tdsx_frame_unpack(tdsx_arena_t *a, tdsx_bytes_t body, Tdsx__Frame **frame)
{
    if (!frame)
        return TDSX_E_INVAL;
    ProtobufCMessage *m;
    int rc = tdsx_proto_unpack(a, &tdsx__frame__descriptor, body, &m);
    if (rc)
        return rc;
    Tdsx__Frame *f = (Tdsx__Frame *)m;
    /* An unknown member leaves the case NOT_SET (protobuf-c keeps it as an unknown field). */
    if (f->body_case == TDSX__FRAME__BODY__NOT_SET)
        return TDSX_E_PROTO_UNSUPPORTED;
    if (f->body_case == TDSX__FRAME__BODY_TRANSFER_DATA &&
        f->transfer_data->chunk.len > TDSX_CHUNK_MAX)
        return TDSX_E_PROTO_FIELD;
    *frame = f;
    return 0;
}
