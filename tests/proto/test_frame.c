/* Framing: the stateless parser, the incremental decoder and the encoder (SPEC §4). */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* Appends a header announcing `len` and then `body_len` bytes of body (which may differ from
 * len, to build truncated or lying frames). */
static void put_frame(tdsx_buf_t *b, uint32_t len, const void *body, size_t body_len)
{
    assert_int_equal(tdsx_buf_u32be(b, len), 0);
    assert_int_equal(tdsx_buf_append(b, body, body_len), 0);
}

/* A body of n bytes whose content depends on its tag, so frames are told apart. */
static uint8_t *make_body(size_t n, uint8_t tag)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tag + i * 7);
    return p;
}

static void parse_returns_consumed_and_body(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    put_frame(&b, 5, "hello", 5);
    assert_int_equal(tdsx_buf_append(&b, "\0\0", 2), 0); /* start of the next frame */
    tdsx_bytes_t body;
    size_t need = 999;
    assert_int_equal(tdsx_frame_parse(tdsx_buf_bytes(&b), 64, &body, &need), 9);
    assert_int_equal(body.n, 5);
    assert_ptr_equal(body.p, b.p + 4);
    assert_memory_equal(body.p, "hello", 5);
    assert_int_equal(need, 999); /* only set when more is needed */
    tdsx_buf_free(&b);
}

static void parse_two_frames_back_to_back(void **state)
{
    (void)state;
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    put_frame(&b, 3, "abc", 3);
    put_frame(&b, 1, "z", 1);
    tdsx_bytes_t in = tdsx_buf_bytes(&b), body;
    int rc = tdsx_frame_parse(in, 64, &body, NULL);
    assert_int_equal(rc, 7);
    assert_memory_equal(body.p, "abc", 3);
    assert_int_equal(tdsx_bytes_skip(&in, (size_t)rc), 0);
    assert_int_equal(tdsx_frame_parse(in, 64, &body, NULL), 5);
    assert_memory_equal(body.p, "z", 1);
    tdsx_buf_free(&b);
}

static void parse_frame_exactly_at_cap(void **state)
{
    (void)state;
    uint8_t *body_bytes = make_body(100, 1);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1024);
    put_frame(&b, 100, body_bytes, 100);
    tdsx_bytes_t body;
    assert_int_equal(tdsx_frame_parse(tdsx_buf_bytes(&b), 100, &body, NULL), 104);
    assert_int_equal(tdsx_frame_parse(tdsx_buf_bytes(&b), 99, &body, NULL), TDSX_E_FRAME_TOOBIG);
    tdsx_buf_free(&b);
    free(body_bytes);
}

static void parse_refuses_zero_length(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 0, 0, 0, 0, 1, 'x'};
    tdsx_bytes_t body = {NULL, 0};
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, sizeof in), 64, &body, NULL),
                     TDSX_E_FRAME_EMPTY);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, 4), 64, &body, NULL), TDSX_E_FRAME_EMPTY);
    assert_null(body.p);
}

static void parse_refuses_over_cap_from_header_alone(void **state)
{
    (void)state;
    /* Only the four header bytes exist: the body was never supplied. */
    const uint8_t over_default[] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    const uint8_t at_default[] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB exactly */
    tdsx_bytes_t body;
    size_t need = 0;
    assert_int_equal(
        tdsx_frame_parse(tdsx_bytes(over_default, 4), TDSX_FRAME_CAP_DEFAULT, &body, &need),
        TDSX_E_FRAME_TOOBIG);
    assert_int_equal(need, 0);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(huge, 4), TDSX_FRAME_CAP_MAX, &body, &need),
                     TDSX_E_FRAME_TOOBIG);
    /* The cap itself is allowed: that header only asks for more. */
    assert_int_equal(
        tdsx_frame_parse(tdsx_bytes(at_default, 4), TDSX_FRAME_CAP_DEFAULT, &body, &need),
        TDSX_FRAME_NEED_MORE);
    assert_int_equal(need, 4 + TDSX_FRAME_CAP_DEFAULT);
}

static void parse_asks_for_more_on_truncated_input(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f'};
    tdsx_bytes_t body;
    size_t need;
    for (size_t n = 0; n < sizeof in; n++) {
        need = 0;
        assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, n), 64, &body, &need),
                         TDSX_FRAME_NEED_MORE);
        assert_int_equal(need, n < 4 ? 4 : 10);
    }
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, sizeof in), 64, &body, &need), 10);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(NULL, 0), 64, &body, &need), TDSX_FRAME_NEED_MORE);
}

static void parse_refuses_bad_arguments(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 1, 'a'};
    tdsx_bytes_t body;
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, 5), 0, &body, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, 5), TDSX_FRAME_CAP_MAX + 1, &body, NULL),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(in, 5), 64, NULL, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_parse(tdsx_bytes(NULL, 5), 64, &body, NULL), TDSX_E_INVAL);
}

/* A stream of frames of assorted sizes, and the bodies expected from it. */
#define NSTREAM 5
static const size_t stream_sizes[NSTREAM] = {1, 3, 70, 4, 300};

static void build_stream(tdsx_buf_t *b, uint8_t *bodies[NSTREAM])
{
    tdsx_buf_init(b, 4096);
    for (int i = 0; i < NSTREAM; i++) {
        bodies[i] = make_body(stream_sizes[i], (uint8_t)(i * 40 + 1));
        put_frame(b, (uint32_t)stream_sizes[i], bodies[i], stream_sizes[i]);
    }
}

/* Feeds `slices` (sum = whole stream) and checks every frame comes out intact, in order. */
static void feed_and_check(tdsx_bytes_t stream, const size_t *cuts, size_t ncuts,
                           uint8_t *bodies[NSTREAM], size_t cap)
{
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, cap), 0);
    int got = 0;
    size_t start = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : stream.n;
        tdsx_bytes_t in = tdsx_bytes(stream.p + start, end - start), body;
        int rc;
        while ((rc = tdsx_frame_decoder_next(&d, &in, &body)) == 1) {
            assert_true(got < NSTREAM);
            assert_int_equal(body.n, stream_sizes[got]);
            assert_memory_equal(body.p, bodies[got], body.n);
            got++;
        }
        assert_int_equal(rc, TDSX_FRAME_NEED_MORE);
        assert_int_equal(in.n, 0);
        assert_true(tdsx_frame_decoder_buffered(&d) <= cap + 4);
        start = end;
    }
    assert_int_equal(got, NSTREAM);
    assert_int_equal(tdsx_frame_decoder_finish(&d), 0);
    tdsx_frame_decoder_free(&d);
}

static void free_bodies(uint8_t *bodies[NSTREAM])
{
    for (int i = 0; i < NSTREAM; i++)
        free(bodies[i]);
}

static void decoder_split_at_every_byte_boundary(void **state)
{
    (void)state;
    tdsx_buf_t b;
    uint8_t *bodies[NSTREAM];
    build_stream(&b, bodies);
    tdsx_bytes_t stream = tdsx_buf_bytes(&b);
    /* Two slices, cut at every position (including 0 and the end). */
    for (size_t cut = 0; cut <= stream.n; cut++)
        feed_and_check(stream, &cut, 1, bodies, 300);
    /* Three slices: every pair of cuts within the first frames. */
    for (size_t c1 = 0; c1 < 90; c1++)
        for (size_t c2 = c1; c2 < 90; c2 += 3) {
            size_t cuts[2] = {c1, c2};
            feed_and_check(stream, cuts, 2, bodies, 300);
        }
    /* One byte at a time. */
    size_t *cuts = malloc(stream.n * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < stream.n; i++)
        cuts[i] = i;
    feed_and_check(stream, cuts, stream.n, bodies, 300);
    free(cuts);
    free_bodies(bodies);
    tdsx_buf_free(&b);
}

static void decoder_yields_many_frames_from_one_slice_without_copying(void **state)
{
    (void)state;
    enum { N = 500 };
    tdsx_buf_t b;
    tdsx_buf_init(&b, 1 << 20);
    for (uint32_t i = 0; i < N; i++) {
        uint8_t body[8];
        for (int j = 0; j < 8; j++)
            body[j] = (uint8_t)(i >> (j % 4 * 8));
        put_frame(&b, 1 + i % 8, body, 1 + i % 8);
    }
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, 16), 0);
    tdsx_bytes_t in = tdsx_buf_bytes(&b), body;
    uint32_t i = 0;
    int rc;
    while ((rc = tdsx_frame_decoder_next(&d, &in, &body)) == 1) {
        assert_int_equal(body.n, 1 + i % 8);
        assert_true(body.p > b.p && body.p < b.p + b.len); /* in place, not copied */
        assert_int_equal(body.p[0], (uint8_t)i);
        i++;
    }
    assert_int_equal(rc, TDSX_FRAME_NEED_MORE);
    assert_int_equal(i, N);
    assert_int_equal(tdsx_frame_decoder_buffered(&d), 0);
    tdsx_frame_decoder_free(&d);
    tdsx_buf_free(&b);
}

static void decoder_releases_a_large_buffer_after_its_frame(void **state)
{
    (void)state;
    enum { BIG = 100 * 1024 };
    uint8_t *big = make_body(BIG, 5);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 2 * BIG);
    put_frame(&b, BIG, big, BIG);
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, TDSX_FRAME_CAP_DEFAULT), 0);
    tdsx_bytes_t in = tdsx_bytes(b.p, 1000), body;
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_FRAME_NEED_MORE);
    in = tdsx_bytes(b.p + 1000, b.len - 1000);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), 1);
    assert_int_equal(body.n, BIG);
    assert_memory_equal(body.p, big, BIG);
    assert_true(d.buf.alloc > BIG);
    /* The next call (here with no input) lets the 100 KiB buffer go. */
    in = tdsx_bytes(NULL, 0);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_FRAME_NEED_MORE);
    assert_int_equal(d.buf.alloc, 0);
    tdsx_frame_decoder_free(&d);
    tdsx_buf_free(&b);
    free(big);
}

static void decoder_refuses_oversize_before_the_body_arrives(void **state)
{
    (void)state;
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, 1000), 0);
    const uint8_t hdr[4] = {0, 0, 0x03, 0xe9}; /* 1001 */
    tdsx_bytes_t body;
    /* Header split over two slices; the error comes with the fourth byte, no body given. */
    tdsx_bytes_t in = tdsx_bytes(hdr, 2);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_FRAME_NEED_MORE);
    in = tdsx_bytes(hdr + 2, 2);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_FRAME_TOOBIG);
    assert_true(tdsx_frame_decoder_buffered(&d) <= 4);
    /* Sticky: a perfectly good frame afterwards is not looked at. */
    const uint8_t good[] = {0, 0, 0, 1, 'a'};
    in = tdsx_bytes(good, sizeof good);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_FRAME_TOOBIG);
    assert_int_equal(tdsx_frame_decoder_finish(&d), TDSX_E_FRAME_TOOBIG);
    tdsx_frame_decoder_free(&d);
}

static void decoder_refuses_empty_frame_after_good_ones(void **state)
{
    (void)state;
    const uint8_t in_bytes[] = {0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1, 'b'};
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, 64), 0);
    tdsx_bytes_t in = tdsx_bytes(in_bytes, sizeof in_bytes), body;
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), 1);
    assert_memory_equal(body.p, "a", 1);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_FRAME_EMPTY);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_FRAME_EMPTY);
    tdsx_frame_decoder_free(&d);
}

static void decoder_reports_truncated_stream(void **state)
{
    (void)state;
    const uint8_t in_bytes[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 5, 'x', 'y'};
    for (size_t n = 8; n < sizeof in_bytes; n++) {
        tdsx_frame_decoder_t d;
        assert_int_equal(tdsx_frame_decoder_init(&d, 64), 0);
        tdsx_bytes_t in = tdsx_bytes(in_bytes, n), body;
        assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), 1);
        assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_FRAME_NEED_MORE);
        assert_int_equal(tdsx_frame_decoder_buffered(&d), n - 7);
        assert_int_equal(tdsx_frame_decoder_finish(&d), TDSX_E_FRAME_TRUNCATED);
        in = tdsx_bytes("zzz", 3);
        assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_FRAME_TRUNCATED);
        tdsx_frame_decoder_free(&d);
    }
}

static void decoder_never_holds_more_than_cap_plus_header(void **state)
{
    (void)state;
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, 16), 0);
    uint8_t *body16 = make_body(16, 9);
    tdsx_buf_t b;
    tdsx_buf_init(&b, 256);
    put_frame(&b, 16, body16, 16);
    put_frame(&b, 17, body16, 16); /* over the cap by one */
    tdsx_bytes_t body;
    int frames = 0, rc = 0;
    for (size_t i = 0; i < b.len && rc >= 0; i++) {
        tdsx_bytes_t in = tdsx_bytes(b.p + i, 1);
        while ((rc = tdsx_frame_decoder_next(&d, &in, &body)) == 1) {
            assert_memory_equal(body.p, body16, 16);
            frames++;
        }
        assert_true(d.buf.alloc <= 16 + 4 + 1); /* + the NUL tdsx_buf keeps */
        assert_true(tdsx_frame_decoder_buffered(&d) <= 20);
    }
    assert_int_equal(frames, 1);
    assert_int_equal(rc, TDSX_E_FRAME_TOOBIG);
    free(body16);
    tdsx_buf_free(&b);
    tdsx_frame_decoder_free(&d);
}

static void decoder_reports_allocation_failure(void **state)
{
    (void)state;
    tdsx_frame_decoder_t d;
    assert_int_equal(tdsx_frame_decoder_init(&d, 64), 0);
    const uint8_t in_bytes[] = {0, 0, 0, 2, 'o', 'k'};
    tdsx_bytes_t in = tdsx_bytes(in_bytes, 3), body;
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    in = tdsx_bytes(in_bytes + 3, 3);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_NOMEM);
    tdsx_frame_decoder_free(&d);
}

static void decoder_refuses_bad_init_and_arguments(void **state)
{
    (void)state;
    tdsx_frame_decoder_t d;
    tdsx_bytes_t in = tdsx_bytes("\0\0\0\1a", 5), body;
    assert_int_equal(tdsx_frame_decoder_init(&d, 0), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_INVAL);
    tdsx_frame_decoder_free(&d);
    assert_int_equal(tdsx_frame_decoder_init(&d, TDSX_FRAME_CAP_MAX + 1), TDSX_E_INVAL);
    tdsx_frame_decoder_free(&d);
    assert_int_equal(tdsx_frame_decoder_init(&d, 8), 0);
    assert_int_equal(tdsx_frame_decoder_next(&d, NULL, &body), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_decoder_next(&d, &in, &body), TDSX_E_INVAL); /* sticky */
    tdsx_frame_decoder_free(&d);
    assert_int_equal(tdsx_frame_decoder_init(NULL, 8), TDSX_E_INVAL);
}

static void encode_then_decode_round_trip(void **state)
{
    (void)state;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__Ping ping = TDSX__PING__INIT;
    ping.nonce = 0x1122334455667788ull;
    f.stream_id = 7;
    f.body_case = TDSX__FRAME__BODY_PING;
    f.ping = &ping;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1024);
    assert_int_equal(tdsx_buf_append(&out, "pre", 3), 0);
    assert_int_equal(tdsx_frame_encode(&f, TDSX_FRAME_CAP_DEFAULT, &out), 0);
    size_t n = protobuf_c_message_get_packed_size(&f.base);
    assert_int_equal(out.len, 3 + 4 + n);
    assert_memory_equal(out.p, "pre", 3);
    tdsx_bytes_t in = tdsx_bytes(out.p + 3, out.len - 3), body;
    assert_int_equal(tdsx_frame_parse(in, TDSX_FRAME_CAP_DEFAULT, &body, NULL), (int)(4 + n));
    tdsx_arena_t *a;
    assert_int_equal(tdsx_arena_new(4096, &a), 0);
    Tdsx__Frame *back;
    assert_int_equal(tdsx_frame_unpack(a, body, &back), 0);
    assert_int_equal(back->stream_id, 7);
    assert_int_equal(back->body_case, TDSX__FRAME__BODY_PING);
    assert_true(back->ping->nonce == 0x1122334455667788ull);
    tdsx_arena_free(a);
    tdsx_buf_free(&out);
}

static void encode_refuses_frame_over_the_cap(void **state)
{
    (void)state;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__TransferData data = TDSX__TRANSFER_DATA__INIT;
    uint8_t *chunk = make_body(1000, 3);
    data.chunk.data = chunk;
    data.chunk.len = 1000;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &data;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1 << 20);
    assert_int_equal(tdsx_frame_encode(&f, 1000, &out), TDSX_E_FRAME_TOOBIG);
    assert_int_equal(out.len, 0);
    /* The same frame fits the default cap. */
    assert_int_equal(tdsx_frame_encode(&f, TDSX_FRAME_CAP_DEFAULT, &out), 0);
    assert_true(out.len > 1004);
    free(chunk);
    tdsx_buf_free(&out);
}

static void encode_refuses_oversize_chunk(void **state)
{
    (void)state;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__TransferData data = TDSX__TRANSFER_DATA__INIT;
    uint8_t *chunk = calloc(1, TDSX_CHUNK_MAX + 1);
    assert_non_null(chunk);
    data.chunk.data = chunk;
    data.chunk.len = TDSX_CHUNK_MAX + 1;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &data;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1 << 21);
    assert_int_equal(tdsx_frame_encode(&f, TDSX_FRAME_CAP_DEFAULT, &out), TDSX_E_PROTO_FIELD);
    assert_int_equal(out.len, 0);
    data.chunk.len = TDSX_CHUNK_MAX;
    assert_int_equal(tdsx_frame_encode(&f, TDSX_FRAME_CAP_DEFAULT, &out), 0);
    free(chunk);
    tdsx_buf_free(&out);
}

static void encode_refuses_frames_without_a_body(void **state)
{
    (void)state;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1024);
    f.stream_id = 3;
    assert_int_equal(tdsx_frame_encode(&f, 1024, &out), TDSX_E_INVAL);
    /* Not a Frame at all. */
    Tdsx__Ping ping = TDSX__PING__INIT;
    assert_int_equal(tdsx_frame_encode((const Tdsx__Frame *)(const void *)&ping, 1024, &out),
                     TDSX_E_INVAL);
    f.body_case = TDSX__FRAME__BODY_PING;
    f.ping = &ping;
    assert_int_equal(tdsx_frame_encode(&f, 0, &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_encode(NULL, 1024, &out), TDSX_E_INVAL);
    assert_int_equal(out.len, 0);
    tdsx_buf_free(&out);
}

static void encode_respects_output_cap_and_allocation_failure(void **state)
{
    (void)state;
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__Error err = TDSX__ERROR__INIT;
    err.code = tdsx_err_wire(TDSX_E_POLICY_DENY);
    err.message = "refused by policy";
    f.body_case = TDSX__FRAME__BODY_ERROR;
    f.error = &err;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 10);
    assert_int_equal(tdsx_frame_encode(&f, 1024, &out), TDSX_E_TOOBIG);
    assert_int_equal(out.len, 0);
    tdsx_buf_free(&out);
    tdsx_buf_init(&out, 1024);
    tdsx_test_alloc_fail_after(1);
    assert_int_equal(tdsx_frame_encode(&f, 1024, &out), TDSX_E_NOMEM);
    tdsx_test_alloc_reset();
    assert_int_equal(out.len, 0);
    tdsx_buf_free(&out);
}

static void encode_message_frames_any_message_type(void **state)
{
    (void)state;
    Tdsx__Pong pong = TDSX__PONG__INIT;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1024);
    /* All defaults: 0 bytes, which no peer would accept as a frame. */
    assert_int_equal(tdsx_frame_encode_message(&pong.base, 1024, &out), TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_encode_message(NULL, 1024, &out), TDSX_E_INVAL);
    pong.nonce = 300;
    assert_int_equal(tdsx_frame_encode_message(&pong.base, 2, &out), TDSX_E_FRAME_TOOBIG);
    assert_int_equal(out.len, 0);
    assert_int_equal(tdsx_frame_encode_message(&pong.base, 1024, &out), 0);
    /* field 1 varint 300 = 08 ac 02, after a 3-byte length header */
    const uint8_t expect[] = {0, 0, 0, 3, 0x08, 0xac, 0x02};
    assert_int_equal(out.len, sizeof expect);
    assert_memory_equal(out.p, expect, sizeof expect);
    tdsx_arena_t *a;
    assert_int_equal(tdsx_arena_new(1024, &a), 0);
    tdsx_bytes_t body;
    assert_int_equal(tdsx_frame_parse(tdsx_buf_bytes(&out), 1024, &body, NULL), 7);
    ProtobufCMessage *m;
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__pong__descriptor, body, &m), 0);
    assert_int_equal(((Tdsx__Pong *)m)->nonce, 300);
    tdsx_arena_free(a);
    tdsx_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_returns_consumed_and_body),
        cmocka_unit_test(parse_two_frames_back_to_back),
        cmocka_unit_test(parse_frame_exactly_at_cap),
        cmocka_unit_test(parse_refuses_zero_length),
        cmocka_unit_test(parse_refuses_over_cap_from_header_alone),
        cmocka_unit_test(parse_asks_for_more_on_truncated_input),
        cmocka_unit_test(parse_refuses_bad_arguments),
        cmocka_unit_test(decoder_split_at_every_byte_boundary),
        cmocka_unit_test(decoder_yields_many_frames_from_one_slice_without_copying),
        cmocka_unit_test(decoder_releases_a_large_buffer_after_its_frame),
        cmocka_unit_test(decoder_refuses_oversize_before_the_body_arrives),
        cmocka_unit_test(decoder_refuses_empty_frame_after_good_ones),
        cmocka_unit_test(decoder_reports_truncated_stream),
        cmocka_unit_test(decoder_never_holds_more_than_cap_plus_header),
        cmocka_unit_test(decoder_reports_allocation_failure),
        cmocka_unit_test(decoder_refuses_bad_init_and_arguments),
        cmocka_unit_test(encode_then_decode_round_trip),
        cmocka_unit_test(encode_refuses_frame_over_the_cap),
        cmocka_unit_test(encode_refuses_oversize_chunk),
        cmocka_unit_test(encode_refuses_frames_without_a_body),
        cmocka_unit_test(encode_respects_output_cap_and_allocation_failure),
        cmocka_unit_test(encode_message_frames_any_message_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
