/* Length-prefixed framing of Frame messages (SPEC §4): parser, incremental decoder, encoder. */
#include "internal.h"

#include <string.h>

/* Largest buffer an idle decoder keeps between frames; bigger ones are released. */
#define DECODER_KEEP (16u * 1024)

static int cap_ok(size_t cap)
{
    return cap > 0 && cap <= TDSX_FRAME_CAP_MAX;
}

int tdsx_frame_parse(tdsx_bytes_t in, size_t cap, tdsx_bytes_t *body, size_t *need)
{
    if (!body || !cap_ok(cap) || (!in.p && in.n))
        return TDSX_E_INVAL;
    tdsx_bytes_t c = in;
    uint32_t len;
    if (tdsx_bytes_u32be(&c, &len)) {
        if (need)
            *need = TDSX_FRAME_HEADER_LEN;
        return TDSX_FRAME_NEED_MORE;
    }
    /* Both refusals come from the header alone, so an oversized frame is never buffered. */
    if (len == 0)
        return TDSX_E_FRAME_EMPTY;
    if (len > cap)
        return TDSX_E_FRAME_TOOBIG;
    if (tdsx_bytes_take(&c, len, body)) {
        if (need)
            *need = TDSX_FRAME_HEADER_LEN + (size_t)len;
        return TDSX_FRAME_NEED_MORE;
    }
    return (int)(TDSX_FRAME_HEADER_LEN + len);
}

int tdsx_frame_decoder_init(tdsx_frame_decoder_t *d, size_t cap)
{
    if (!d)
        return TDSX_E_INVAL;
    d->cap = cap;
    d->err = cap_ok(cap) ? 0 : TDSX_E_INVAL;
    d->handed_out = 0;
    tdsx_buf_init(&d->buf, cap_ok(cap) ? cap + TDSX_FRAME_HEADER_LEN : 0);
    return d->err;
}

static int fail(tdsx_frame_decoder_t *d, int err)
{
    d->err = err;
    return err;
}

/* Moves up to `want` bytes from *in into the partial frame. */
static int take_into(tdsx_frame_decoder_t *d, tdsx_bytes_t *in, size_t want)
{
    tdsx_bytes_t part;
    size_t n = want < in->n ? want : in->n;
    if (n == 0)
        return 0;
    if (tdsx_bytes_take(in, n, &part))
        return TDSX_E_INTERNAL;
    return tdsx_buf_append(&d->buf, part.p, part.n);
}

int tdsx_frame_decoder_next(tdsx_frame_decoder_t *d, tdsx_bytes_t *in, tdsx_bytes_t *body)
{
    if (!d)
        return TDSX_E_INVAL;
    if (d->err)
        return d->err;
    if (!in || !body || (!in->p && in->n))
        return fail(d, TDSX_E_INVAL);
    if (d->handed_out) {
        /* A connection that once carried a large frame should not keep its buffer forever. */
        if (d->buf.alloc > DECODER_KEEP)
            tdsx_buf_free(&d->buf);
        else
            tdsx_buf_reset(&d->buf);
        d->handed_out = 0;
    }

    int rc;
    size_t need = 0;
    if (d->buf.len == 0) {
        /* Nothing pending: a frame wholly inside the caller's slice is handed out in place. */
        rc = tdsx_frame_parse(*in, d->cap, body, &need);
        if (rc > 0) {
            if (tdsx_bytes_skip(in, (size_t)rc))
                return fail(d, TDSX_E_INTERNAL);
            return 1;
        }
        if (rc < 0)
            return fail(d, rc);
    }

    /* Header first, on its own, so the length is judged before any body byte is kept. */
    if (d->buf.len < TDSX_FRAME_HEADER_LEN) {
        rc = take_into(d, in, TDSX_FRAME_HEADER_LEN - d->buf.len);
        if (rc)
            return fail(d, rc);
        if (d->buf.len < TDSX_FRAME_HEADER_LEN)
            return TDSX_FRAME_NEED_MORE;
    }
    rc = tdsx_frame_parse(tdsx_buf_bytes(&d->buf), d->cap, body, &need);
    if (rc == TDSX_FRAME_NEED_MORE) {
        rc = take_into(d, in, need - d->buf.len);
        if (rc)
            return fail(d, rc);
        rc = tdsx_frame_parse(tdsx_buf_bytes(&d->buf), d->cap, body, &need);
    }
    if (rc < 0)
        return fail(d, rc);
    if (rc == TDSX_FRAME_NEED_MORE)
        return TDSX_FRAME_NEED_MORE;
    d->handed_out = 1;
    return 1;
}

int tdsx_frame_decoder_finish(tdsx_frame_decoder_t *d)
{
    if (!d)
        return TDSX_E_INVAL;
    if (d->err)
        return d->err;
    if (d->buf.len && !d->handed_out)
        return fail(d, TDSX_E_FRAME_TRUNCATED);
    return 0;
}

size_t tdsx_frame_decoder_buffered(const tdsx_frame_decoder_t *d)
{
    return d && !d->handed_out ? d->buf.len : 0;
}

void tdsx_frame_decoder_free(tdsx_frame_decoder_t *d)
{
    if (!d)
        return;
    tdsx_buf_free(&d->buf);
    d->handed_out = 0;
}

int tdsx_frame_encode_message(const ProtobufCMessage *msg, size_t cap, tdsx_buf_t *out)
{
    if (!msg || !msg->descriptor || !out || !cap_ok(cap))
        return TDSX_E_INVAL;
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n == 0)
        return TDSX_E_INVAL; /* the peer would refuse it as TDSX_E_FRAME_EMPTY */
    if (n > cap)
        return TDSX_E_FRAME_TOOBIG;
    int rc = tdsx_buf_reserve(out, TDSX_FRAME_HEADER_LEN + n);
    if (rc)
        return rc;
    uint8_t *p = out->p + out->len;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    if (protobuf_c_message_pack(msg, p + TDSX_FRAME_HEADER_LEN) != n)
        return TDSX_E_INTERNAL;
    out->len += TDSX_FRAME_HEADER_LEN + n;
    out->p[out->len] = '\0';
    return 0;
}

int tdsx_frame_encode(const Tdsx__Frame *frame, size_t cap, tdsx_buf_t *out)
{
    if (!frame || frame->base.descriptor != &tdsx__frame__descriptor ||
        frame->body_case == TDSX__FRAME__BODY__NOT_SET)
        return TDSX_E_INVAL;
    if (frame->body_case == TDSX__FRAME__BODY_TRANSFER_DATA &&
        (!frame->transfer_data || frame->transfer_data->chunk.len > TDSX_CHUNK_MAX))
        return TDSX_E_PROTO_FIELD;
    return tdsx_frame_encode_message(&frame->base, cap, out);
}
