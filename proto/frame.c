/* SPDX-License-Identifier: MIT */
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
    return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 |
        (uint32_t)hdr[3];
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

/* What malloc keeps beside each block: counted so that many tiny fields cost what they do. */
#define FRAME_ALLOC_OVERHEAD 16

static void *frame_alloc_cb(void *data, size_t n)
{
    struct frame_alloc *fa = data;
    size_t cost = n + FRAME_ALLOC_OVERHEAD;
    if (cost < n || cost > fa->cap - fa->used) {
        fa->refused = 1;
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (p)
        fa->used += cost;
    return p;
}

static void frame_free_cb(void *data, void *p)
{
    free(p);
}

void frame_alloc_init(struct frame_alloc *fa, uint32_t payload_len)
{
    fa->pc.alloc = frame_alloc_cb;
    fa->pc.free = frame_free_cb;
    fa->pc.allocator_data = fa;
    fa->used = 0;
    fa->cap = 2 * (size_t)payload_len + FRAME_DECODE_SLACK;
    fa->refused = 0;
}

Peerdist__Request *frame_unpack_request(struct frame_alloc *fa, const uint8_t *payload, size_t len)
{
    return peerdist__request__unpack(&fa->pc, len, payload);
}

void frame_free_request(struct frame_alloc *fa, Peerdist__Request *req)
{
    peerdist__request__free_unpacked(req, &fa->pc);
}

uint64_t frame_peek_request_id(const uint8_t *payload, size_t len)
{
    if (len < 2 || payload[0] != 0x08) /* field 1, varint */
        return 0;
    uint64_t id = 0;
    for (size_t i = 1; i < len && i <= 10; i++) {
        id |= (uint64_t)(payload[i] & 0x7f) << (7 * (i - 1));
        if (!(payload[i] & 0x80))
            return id;
    }
    return 0;
}

/* Protobuf wire format (field number << 3 | wire type), for the in-place read reply. */
#define PB_VARINT 0
#define PB_BYTES 2
#define PB_KEY(field, type) ((uint8_t)((field) << 3 | (type)))
#define REPLY_ID_FIELD 1    /* peerdist.proto: Reply.id */
#define REPLY_READ_FIELD 12 /* Reply.read */
#define READ_OFFSET_FIELD 1 /* ReadReply.offset */
#define READ_DATA_FIELD 2   /* ReadReply.data */
#define READ_LENGTH_FIELD 3 /* ReadReply.length */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t read_reply_inner_size(uint64_t offset, size_t n)
{
    return (offset ? 1 + varint_size(offset) : 0) + 1 + varint_size(n) + n + 1 + varint_size(n);
}

size_t frame_read_reply_size(uint64_t id, uint64_t offset, size_t n)
{
    size_t inner = read_reply_inner_size(offset, n);
    return FRAME_HEADER_SIZE + 1 + varint_size(id) + 1 + varint_size(inner) + inner;
}

uint8_t *frame_read_reply_pack(uint8_t *out, uint64_t id, uint64_t offset, size_t n)
{
    size_t inner = read_reply_inner_size(offset, n);
    size_t payload = frame_read_reply_size(id, offset, n) - FRAME_HEADER_SIZE;
    out[0] = (uint8_t)(payload >> 24);
    out[1] = (uint8_t)(payload >> 16);
    out[2] = (uint8_t)(payload >> 8);
    out[3] = (uint8_t)payload;
    uint8_t *p = out + FRAME_HEADER_SIZE;
    *p++ = PB_KEY(REPLY_ID_FIELD, PB_VARINT);
    p = varint_put(p, id);
    *p++ = PB_KEY(REPLY_READ_FIELD, PB_BYTES);
    p = varint_put(p, inner);
    if (offset) {
        *p++ = PB_KEY(READ_OFFSET_FIELD, PB_VARINT);
        p = varint_put(p, offset);
    }
    *p++ = PB_KEY(READ_DATA_FIELD, PB_BYTES);
    p = varint_put(p, n);
    uint8_t *data = p;
    p += n;
    *p++ = PB_KEY(READ_LENGTH_FIELD, PB_VARINT);
    varint_put(p, n);
    return data;
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
    if (fb->start == fb->len) /* nothing buffered (fb->data may still be NULL) */
        return FRAME_NEED_MORE;
    enum frame_status st = frame_parse(fb->data + fb->start, fb->len - fb->start, payload,
        payload_len, &frame_len);
    if (st == FRAME_OK)
        fb->start += frame_len;
    return st;
}
