/*
 * fuzz_frame.c — arbitrary bytes through the frame parser, the incremental decoder and the
 * arena decoder, with differential checks between them.
 *
 * Input: one control byte, then the byte stream.
 *   bits 0-3  slice length for the decoder (1-16 bytes per feed)
 *   bit  4    frame cap 64 bytes instead of the default
 *   bit  5    arena budget 4 KiB instead of the default
 *   bit  6    also decode the whole stream as a TrustBundle statement
 * Checks: the decoder yields exactly the frames the stateless parser finds, whatever the
 * slicing, and stops with the same error; the decoder never holds more than cap + 4 bytes;
 * a body that decodes re-encodes and decodes again to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*n ? *n : 1);
    check(p != NULL);
    check(protobuf_c_message_pack(m, p) == *n);
    return p;
}

/* Decodes a body; when it is a valid frame, checks encode(decode(.)) is a fixed point. */
static void decode_body(tdsx_bytes_t body, size_t budget)
{
    tdsx_arena_t *a = NULL, *b = NULL;
    tdsx_buf_t out;
    tdsx_buf_init(&out, TDSX_FRAME_CAP_MAX + TDSX_FRAME_HEADER_LEN);
    uint8_t *p1 = NULL, *p2 = NULL;
    check(tdsx_arena_new(budget, &a) == 0);
    Tdsx__Frame *f;
    int rc = tdsx_frame_unpack(a, body, &f);
    check(rc == 0 || rc == TDSX_E_PROTO_DECODE || rc == TDSX_E_PROTO_UNSUPPORTED ||
          rc == TDSX_E_PROTO_FIELD || rc == TDSX_E_ARENA_BUDGET);
    check(tdsx_arena_used(a) <= budget);
    if (rc)
        goto done;
    check(f->body_case != TDSX__FRAME__BODY__NOT_SET);
    check(tdsx_frame_encode(f, TDSX_FRAME_CAP_MAX, &out) == 0);
    tdsx_bytes_t again;
    check(tdsx_frame_parse(tdsx_buf_bytes(&out), TDSX_FRAME_CAP_MAX, &again, NULL) == (int)out.len);
    check(tdsx_arena_new(TDSX_ARENA_BUDGET_DEFAULT * 4, &b) == 0);
    Tdsx__Frame *g;
    check(tdsx_frame_unpack(b, again, &g) == 0);
    check(g->body_case == f->body_case && g->stream_id == f->stream_id);
    size_t n1, n2;
    p1 = pack(&f->base, &n1);
    p2 = pack(&g->base, &n2);
    check(n1 == n2 && memcmp(p1, p2, n1) == 0);
done:
    free(p1);
    free(p2);
    tdsx_buf_free(&out);
    tdsx_arena_free(a);
    tdsx_arena_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    size_t stride = 1 + (ctl & 15);
    size_t cap = (ctl & 0x10) ? 64 : TDSX_FRAME_CAP_DEFAULT;
    size_t budget = (ctl & 0x20) ? 4096 : TDSX_ARENA_BUDGET_DEFAULT;
    tdsx_bytes_t stream = tdsx_bytes(data + 1, size - 1);

    if (ctl & 0x40) {
        tdsx_arena_t *a;
        check(tdsx_arena_new(budget, &a) == 0);
        ProtobufCMessage *m;
        int rc = tdsx_proto_unpack(a, &tdsx__trust_bundle__descriptor, stream, &m);
        check(rc == 0 || rc == TDSX_E_PROTO_DECODE || rc == TDSX_E_ARENA_BUDGET);
        tdsx_arena_free(a);
    }

    tdsx_frame_decoder_t d;
    check(tdsx_frame_decoder_init(&d, cap) == 0);
    tdsx_bytes_t ref = stream; /* what the stateless parser has not consumed yet */
    int ref_rc = 0;
    size_t off = 0;
    while (off < stream.n && ref_rc >= 0) {
        size_t n = stream.n - off < stride ? stream.n - off : stride;
        tdsx_bytes_t in = tdsx_bytes(stream.p + off, n), body;
        int rc;
        while ((rc = tdsx_frame_decoder_next(&d, &in, &body)) == 1) {
            tdsx_bytes_t expect;
            ref_rc = tdsx_frame_parse(ref, cap, &expect, NULL);
            check(ref_rc > 0);
            check(body.n == expect.n && memcmp(body.p, expect.p, body.n) == 0);
            check(tdsx_bytes_skip(&ref, (size_t)ref_rc) == 0);
            decode_body(body, budget);
        }
        check(tdsx_frame_decoder_buffered(&d) <= cap + TDSX_FRAME_HEADER_LEN);
        if (rc < 0) {
            /* The parser must fail on the same frame, for the same reason. */
            tdsx_bytes_t expect;
            ref_rc = tdsx_frame_parse(ref, cap, &expect, NULL);
            check(ref_rc == rc);
            check(tdsx_frame_decoder_next(&d, &in, &body) == rc);
        }
        off += n;
    }
    if (ref_rc >= 0) {
        tdsx_bytes_t expect;
        int end = tdsx_frame_parse(ref, cap, &expect, NULL);
        check(end == TDSX_FRAME_NEED_MORE);
        check(tdsx_frame_decoder_finish(&d) == (ref.n ? TDSX_E_FRAME_TRUNCATED : 0));
    }
    tdsx_frame_decoder_free(&d);
    return 0;
}
