/*
 * frame.c - length-prefixed framing (see frame.h). Nothing here trusts the
 * length header: it is checked against FRAME_MAX_PAYLOAD before anything is
 * allocated or unpacked.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

uint32_t frame_header_length(const uint8_t hdr[FRAME_HEADER_SIZE])
{
    return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
}

enum frame_status frame_parse(const uint8_t *data, size_t len, const uint8_t **payload,
    uint32_t *payload_len, size_t *frame_len)
{
    if (len < FRAME_HEADER_SIZE)
        return FRAME_NEED_MORE;
    uint32_t n = frame_header_length(data);
    if (n > FRAME_MAX_PAYLOAD)
        return FRAME_TOO_BIG;
    if (len - FRAME_HEADER_SIZE < n)
        return FRAME_NEED_MORE;
    *payload = data + FRAME_HEADER_SIZE;
    *payload_len = n;
    *frame_len = FRAME_HEADER_SIZE + (size_t)n;
    return FRAME_OK;
}

size_t frame_size(const ProtobufCMessage *msg)
{
    return FRAME_HEADER_SIZE + protobuf_c_message_get_packed_size(msg);
}

size_t frame_pack(const ProtobufCMessage *msg, uint8_t *out)
{
    size_t n = protobuf_c_message_pack(msg, out + FRAME_HEADER_SIZE);
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return FRAME_HEADER_SIZE + n;
}

void frame_buf_init(struct frame_buf *fb)
{
    memset(fb, 0, sizeof(*fb));
}

void frame_buf_free(struct frame_buf *fb)
{
    free(fb->data);
    frame_buf_init(fb);
}

void frame_buf_reset(struct frame_buf *fb)
{
    fb->start = fb->len = 0;
}

uint8_t *frame_buf_space(struct frame_buf *fb, size_t want, size_t *avail)
{
    if (fb->start > 0 && fb->start == fb->len) {
        fb->start = fb->len = 0;
    } else if (fb->start > 0 && fb->cap - fb->len < want) {
        memmove(fb->data, fb->data + fb->start, fb->len - fb->start);
        fb->len -= fb->start;
        fb->start = 0;
    }
    if (fb->cap - fb->len < want) {
        size_t cap = fb->cap ? fb->cap : 4096;
        while (cap - fb->len < want)
            cap *= 2;
        uint8_t *p = realloc(fb->data, cap);
        if (!p)
            return NULL;
        fb->data = p;
        fb->cap = cap;
    }
    *avail = fb->cap - fb->len;
    return fb->data + fb->len;
}

void frame_buf_commit(struct frame_buf *fb, size_t n)
{
    fb->len += n;
}

enum frame_status frame_buf_next(struct frame_buf *fb, const uint8_t **payload,
    uint32_t *payload_len)
{
    size_t frame_len;
    enum frame_status st =
        frame_parse(fb->data + fb->start, fb->len - fb->start, payload, payload_len, &frame_len);
    if (st == FRAME_OK)
        fb->start += frame_len;
    return st;
}
