/* The decoding arena: budget, alignment, release at once, allocation failures. */
#include "support.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "fill.h"
#include "proto.h"

static void arena_allocations_are_aligned_distinct_and_counted(void **state)
{
    (void)state;
    tdsx_arena_t *a;
    assert_int_equal(tdsx_arena_new(1 << 20, &a), 0);
    assert_int_equal(tdsx_arena_used(a), 0);
    uint8_t *prev = NULL;
    for (size_t n = 0; n < 3000; n += 37) {
        uint8_t *p = tdsx_arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        assert_true(p != prev);
        memset(p, 0xa5, n); /* ASan would flag a block shorter than asked */
        prev = p;
    }
    size_t used = tdsx_arena_used(a);
    assert_true(used > 0 && used <= 1 << 20);
    tdsx_arena_reset(a);
    assert_int_equal(tdsx_arena_used(a), 0);
    assert_non_null(tdsx_arena_alloc(a, 10));
    tdsx_arena_free(a);
}

static void arena_holds_a_message_until_reset(void **state)
{
    (void)state;
    tdsx_arena_t *build, *a;
    assert_int_equal(tdsx_arena_new(1 << 20, &build), 0);
    assert_int_equal(tdsx_arena_new(1 << 20, &a), 0);
    ProtobufCMessage *m = tdsx_test_fill(build, &tdsx__trust_bundle__descriptor, 0, 5);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *wire = malloc(n);
    assert_non_null(wire);
    assert_int_equal(protobuf_c_message_pack(m, wire), n);
    ProtobufCMessage *back;
    assert_int_equal(
        tdsx_proto_unpack(a, &tdsx__trust_bundle__descriptor, tdsx_bytes(wire, n), &back), 0);
    /* The decoded message does not point into the wire bytes: they can go first. */
    memset(wire, 0, n);
    free(wire);
    Tdsx__TrustBundle *tb = (Tdsx__TrustBundle *)back;
    const Tdsx__TrustBundle *orig = (const Tdsx__TrustBundle *)m;
    assert_int_equal(tb->n_members, orig->n_members);
    assert_string_equal(tb->members[0]->endpoint, orig->members[0]->endpoint);
    assert_memory_equal(tb->root_certs[0].data, orig->root_certs[0].data, orig->root_certs[0].len);
    assert_true(tdsx_arena_used(a) > 0);
    /* One reset releases the whole message (ASan's leak check confirms nothing is left). */
    tdsx_arena_reset(a);
    assert_int_equal(tdsx_arena_used(a), 0);
    tdsx_arena_free(a);
    tdsx_arena_free(build);
}

static void arena_refuses_past_its_budget(void **state)
{
    (void)state;
    tdsx_arena_t *a;
    assert_int_equal(tdsx_arena_new(10000, &a), 0);
    size_t total = 0;
    int refused = 0;
    for (int i = 0; i < 1000; i++) {
        if (!tdsx_arena_alloc(a, 100)) {
            refused = 1;
            break;
        }
        total += 100;
    }
    assert_true(refused);
    assert_true(total >= 8000); /* most of the budget was usable */
    assert_true(tdsx_arena_used(a) <= 10000);
    assert_null(tdsx_arena_alloc(a, 20000));
    assert_null(tdsx_arena_alloc(a, SIZE_MAX));
    assert_true(tdsx_arena_used(a) <= 10000);
    tdsx_arena_free(a);
}

static void unpack_stops_at_the_budget(void **state)
{
    (void)state;
    /* A 100 KiB chunk needs more than a 64 KiB arena. */
    Tdsx__Frame f = TDSX__FRAME__INIT;
    Tdsx__TransferData data = TDSX__TRANSFER_DATA__INIT;
    uint8_t *chunk = calloc(1, 100 * 1024);
    assert_non_null(chunk);
    data.chunk.data = chunk;
    data.chunk.len = 100 * 1024;
    f.body_case = TDSX__FRAME__BODY_TRANSFER_DATA;
    f.transfer_data = &data;
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1 << 20);
    assert_int_equal(tdsx_frame_encode(&f, TDSX_FRAME_CAP_DEFAULT, &out), 0);
    tdsx_bytes_t body = tdsx_bytes(out.p + 4, out.len - 4);
    tdsx_arena_t *small, *big;
    assert_int_equal(tdsx_arena_new(64 * 1024, &small), 0);
    assert_int_equal(tdsx_arena_new(TDSX_ARENA_BUDGET_DEFAULT, &big), 0);
    Tdsx__Frame *back = NULL;
    assert_int_equal(tdsx_frame_unpack(small, body, &back), TDSX_E_ARENA_BUDGET);
    assert_null(back);
    assert_true(tdsx_arena_used(small) <= 64 * 1024);
    assert_int_equal(tdsx_frame_unpack(big, body, &back), 0);
    assert_int_equal(back->transfer_data->chunk.len, 100 * 1024);
    tdsx_arena_free(small);
    tdsx_arena_free(big);
    tdsx_buf_free(&out);
    free(chunk);
}

static void unpack_bounds_expansion_of_tiny_repeated_fields(void **state)
{
    (void)state;
    /* 20000 empty Signature entries: 40 KB on the wire, far more once decoded. */
    enum { N = 20000 };
    uint8_t *wire = malloc(2 * N);
    assert_non_null(wire);
    for (size_t i = 0; i < N; i++) {
        wire[2 * i] = 0x1a; /* field 3 (signatures), length-delimited */
        wire[2 * i + 1] = 0x00;
    }
    tdsx_arena_t *a;
    assert_int_equal(tdsx_arena_new(256 * 1024, &a), 0);
    ProtobufCMessage *m;
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__envelope__descriptor, tdsx_bytes(wire, 2 * N), &m),
                     TDSX_E_ARENA_BUDGET);
    assert_true(tdsx_arena_used(a) <= 256 * 1024);
    /* The arena is usable again after a reset, for a message that fits. */
    tdsx_arena_reset(a);
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__envelope__descriptor, tdsx_bytes(wire, 200), &m),
                     0);
    assert_int_equal(((Tdsx__Envelope *)m)->n_signatures, 100);
    tdsx_arena_free(a);
    free(wire);
}

static void unpack_reports_allocator_failure_as_nomem(void **state)
{
    (void)state;
    tdsx_arena_t *build;
    assert_int_equal(tdsx_arena_new(1 << 20, &build), 0);
    ProtobufCMessage *m =
        tdsx_test_fill(build, &tdsx__frame__descriptor, TDSX__FRAME__BODY_CATALOG_RESULT, 1);
    tdsx_buf_t out;
    tdsx_buf_init(&out, 1 << 20);
    assert_int_equal(tdsx_frame_encode((Tdsx__Frame *)m, TDSX_FRAME_CAP_DEFAULT, &out), 0);
    tdsx_bytes_t body = tdsx_bytes(out.p + 4, out.len - 4);
    /* Fail the 1st, 2nd, ... allocation until decoding needs no more than were allowed: every
     * failure is NOMEM (never mistaken for malformed input) and leaks nothing. */
    int succeeded = 0;
    for (unsigned long n = 1; n < 200 && !succeeded; n++) {
        tdsx_arena_t *a;
        tdsx_test_alloc_fail_after(n);
        int rc = tdsx_arena_new(1 << 20, &a);
        if (rc) {
            tdsx_test_alloc_reset();
            assert_int_equal(rc, TDSX_E_NOMEM);
            continue;
        }
        Tdsx__Frame *back;
        rc = tdsx_frame_unpack(a, body, &back);
        tdsx_test_alloc_reset();
        if (rc == 0) {
            assert_int_equal(back->body_case, TDSX__FRAME__BODY_CATALOG_RESULT);
            assert_true(n > 2); /* the arena and at least one chunk were allocated */
            succeeded = 1;
        } else {
            assert_int_equal(rc, TDSX_E_NOMEM);
        }
        tdsx_arena_free(a);
    }
    assert_true(succeeded);
    tdsx_buf_free(&out);
    tdsx_arena_free(build);
}

static void arena_refuses_bad_arguments(void **state)
{
    (void)state;
    tdsx_arena_t *a = NULL;
    assert_int_equal(tdsx_arena_new(0, &a), TDSX_E_INVAL);
    assert_null(a);
    assert_int_equal(tdsx_arena_new(100, NULL), TDSX_E_INVAL);
    assert_null(tdsx_arena_alloc(NULL, 1));
    assert_int_equal(tdsx_arena_used(NULL), 0);
    tdsx_arena_free(NULL);
    ProtobufCMessage *m;
    assert_int_equal(tdsx_proto_unpack(NULL, &tdsx__ping__descriptor, tdsx_bytes("", 0), &m),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_arena_new(100, &a), 0);
    assert_int_equal(tdsx_proto_unpack(a, NULL, tdsx_bytes("", 0), &m), TDSX_E_INVAL);
    assert_int_equal(tdsx_proto_unpack(a, &tdsx__ping__descriptor, tdsx_bytes(NULL, 3), &m),
                     TDSX_E_INVAL);
    assert_int_equal(tdsx_frame_unpack(a, tdsx_bytes("\x08\x01", 2), NULL), TDSX_E_INVAL);
    tdsx_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_allocations_are_aligned_distinct_and_counted),
        cmocka_unit_test(arena_holds_a_message_until_reset),
        cmocka_unit_test(arena_refuses_past_its_budget),
        cmocka_unit_test(unpack_stops_at_the_budget),
        cmocka_unit_test(unpack_bounds_expansion_of_tiny_repeated_fields),
        cmocka_unit_test(unpack_reports_allocator_failure_as_nomem),
        cmocka_unit_test(arena_refuses_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
