/*
 * gen_frame_seeds.c — writes the seed corpus of fuzz_frame: one valid frame per body type,
 * a stream of several frames, and edge cases (empty, over the cap, truncated, unknown member,
 * bad UTF-8; the oversize chunk is left to the unit tests: 256 KiB seeds slow fuzzing). Usage:
 * gen_frame_seeds DIR (e.g. tests/fuzz/corpus/frame). Each file starts with fuzz_frame's control
 * byte.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fill.h"
#include "proto.h"

static const char *dir;

static void write_seed(const char *name, uint8_t ctl, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&ctl, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "gen_frame_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void encode_or_die(const Tdsx__Frame *f, tdsx_buf_t *out)
{
    if (tdsx_frame_encode(f, TDSX_FRAME_CAP_DEFAULT, out)) {
        fprintf(stderr, "gen_frame_seeds: encode failed\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    tdsx_arena_t *a;
    if (tdsx_arena_new(1 << 22, &a))
        return 1;
    tdsx_buf_t out, stream;
    tdsx_buf_init(&out, 1 << 21);
    tdsx_buf_init(&stream, 1 << 21);

    const ProtobufCMessageDescriptor *fd = &tdsx__frame__descriptor;
    for (unsigned i = 0; i < fd->n_fields; i++) {
        const ProtobufCFieldDescriptor *fld = &fd->fields[i];
        if (!(fld->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        Tdsx__Frame *f = (Tdsx__Frame *)tdsx_test_fill(a, fd, fld->id, i);
        tdsx_buf_reset(&out);
        encode_or_die(f, &out);
        char name[128];
        snprintf(name, sizeof name, "body-%s", fld->name);
        /* Vary the slicing between seeds so both decoder paths are covered. */
        write_seed(name, (uint8_t)(i % 16), out.p, out.len);
        if (i % 4 == 0 && tdsx_buf_append(&stream, out.p, out.len))
            return 1;
    }
    write_seed("stream-several", 0x03, stream.p, stream.len);
    write_seed("stream-several-bytewise", 0x00, stream.p, stream.len);

    /* Edge cases, by hand. */
    static const uint8_t empty[] = {0, 0, 0, 0};
    write_seed("edge-empty-frame", 0x00, empty, sizeof empty);
    static const uint8_t over_default[] = {0x00, 0x10, 0x00, 0x01};
    write_seed("edge-over-default-cap", 0x00, over_default, sizeof over_default);
    static const uint8_t over_small[] = {0, 0, 0, 65, 0x08, 0x01};
    write_seed("edge-over-small-cap", 0x10, over_small, sizeof over_small);
    static const uint8_t truncated[] = {0, 0, 0, 9, 0x12, 0x02, 0x08};
    write_seed("edge-truncated", 0x02, truncated, sizeof truncated);
    static const uint8_t unknown[] = {0, 0, 0, 5, 0x08, 0x05, 0x9a, 0x06, 0x00};
    write_seed("edge-unknown-member", 0x05, unknown, sizeof unknown);
    static const uint8_t no_body[] = {0, 0, 0, 2, 0x08, 0x05};
    write_seed("edge-no-body", 0x01, no_body, sizeof no_body);
    static const uint8_t bad_utf8[] = {0, 0, 0, 8, 0x22, 0x06, 0x08, 0x01, 0x12, 0x02, 0xc0, 0x80};
    write_seed("edge-bad-utf8", 0x07, bad_utf8, sizeof bad_utf8);
    static const uint8_t bad_varint[] = {0, 0, 0, 3, 0x08, 0xff, 0xff};
    write_seed("edge-bad-varint", 0x00, bad_varint, sizeof bad_varint);
    static const uint8_t tiny_sigs[] = {0x1a, 0x00, 0x1a, 0x00, 0x1a, 0x00, 0x1a, 0x00};
    write_seed("edge-bundle-bytes", 0x60, tiny_sigs, sizeof tiny_sigs);

    tdsx_buf_free(&out);
    tdsx_buf_free(&stream);
    tdsx_arena_free(a);
    return 0;
}
