/* SPDX-License-Identifier: MIT */
/*
 * frame.h - length-prefixed framing of protobuf messages, shared by peerdistd,
 * libpeerdist and peerdistctl: a 4-byte big-endian payload length, then one
 * packed peerdist.Request or peerdist.Reply. See proto/README.md.
 */
#ifndef PEERDIST_FRAME_H
#define PEERDIST_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "peerdist.pb-c.h"

/* Protocol versions this build speaks (Hello negotiation). */
#define PD_PROTOCOL_VERSION_MIN 1
#define PD_PROTOCOL_VERSION_MAX 1

#define FRAME_HEADER_SIZE 4
/* Most content bytes one request or reply carries; the library splits larger buffers. */
#define PD_MAX_CHUNK (1024u * 1024)

/* Hard cap on a payload, checked before unpacking: protobuf-c has no limit of its own. */
#define FRAME_MAX_PAYLOAD (4u * 1024 * 1024)

enum frame_status {
    FRAME_OK = 0,        /* a whole frame is present */
    FRAME_NEED_MORE = 1, /* not enough bytes yet */
    FRAME_TOO_BIG = -1,  /* the header announces more than FRAME_MAX_PAYLOAD */
};

/* The payload length a 4-byte header announces (not yet checked against the cap). */
uint32_t frame_header_length(const uint8_t hdr[FRAME_HEADER_SIZE]);

/*
 * Looks for one frame at the start of data[0..len). On FRAME_OK, *payload and
 * *payload_len describe the message and *frame_len is what to consume.
 */
enum frame_status frame_parse(const uint8_t *data, size_t len, const uint8_t **payload,
    uint32_t *payload_len, size_t *frame_len);

/* Total frame size (header + payload) of a message. */
size_t frame_size(const ProtobufCMessage *msg);

/* Writes header + packed message into out, which holds frame_size(msg) bytes. */
size_t frame_pack(const ProtobufCMessage *msg, uint8_t *out);

/*
 * Unpacking with a bound: protobuf-c allocates what a message's fields call for (about 100
 * bytes per field, known or not), so a 4 MiB frame of 1.4 million tiny unknown fields would
 * cost ~120 MiB and 0.2 s. A frame may allocate at most twice its payload plus
 * FRAME_DECODE_SLACK (room for the message structures): every request we define, and a
 * newer client's request type (one unknown field), fits; past it the frame is refused.
 */
#define FRAME_DECODE_SLACK (16u * 1024)

struct frame_alloc {
    ProtobufCAllocator pc; /* handed to protobuf-c: counts, and refuses past cap */
    size_t used, cap;
    int refused; /* an allocation was refused for the cap (not for want of memory) */
};

/* An allocator for one frame of payload_len bytes. */
void frame_alloc_init(struct frame_alloc *fa, uint32_t payload_len);
/* The Request in payload[0..len), or NULL (malformed, or fa->refused). Free it with
 * frame_free_request and the same allocator. */
Peerdist__Request *frame_unpack_request(struct frame_alloc *fa, const uint8_t *payload, size_t len);
void frame_free_request(struct frame_alloc *fa, Peerdist__Request *req);

/*
 * The request id of a Request from its first bytes alone (Request.id is field 1, which
 * encoders write first), or 0 if they do not start with it. For a frame dropped unread.
 */
uint64_t frame_peek_request_id(const uint8_t *payload, size_t len);

/*
 * A successful read's reply, Reply{id, read: ReadReply{offset, data, length}}, built in
 * place so the daemon can read cached bytes straight into its output buffer instead of
 * copying them through protobuf-c. The bytes are standard protobuf (fields in number
 * order), so receivers unpack them as any Reply. n > 0.
 */
size_t frame_read_reply_size(uint64_t id, uint64_t offset, size_t n);
/* Writes the frame into out (frame_read_reply_size bytes) but for the data: returns where
 * the n data bytes go. */
uint8_t *frame_read_reply_pack(uint8_t *out, uint64_t id, uint64_t offset, size_t n);

/*
 * A growable receive buffer for blocking readers (the library, peerdistctl):
 * append what read() returned, then take whole frames with frame_buf_next.
 */
struct frame_buf {
    uint8_t *data;
    size_t start; /* first unconsumed byte */
    size_t len;   /* bytes from data[0] that hold received data */
    size_t cap;
};

void frame_buf_init(struct frame_buf *fb);
void frame_buf_free(struct frame_buf *fb);
void frame_buf_reset(struct frame_buf *fb);
/* Space for at least `want` more bytes; returns where to read into, or NULL on ENOMEM. */
uint8_t *frame_buf_space(struct frame_buf *fb, size_t want, size_t *avail);
void frame_buf_commit(struct frame_buf *fb, size_t n);
enum frame_status frame_buf_next(struct frame_buf *fb, const uint8_t **payload,
    uint32_t *payload_len);

#endif /* PEERDIST_FRAME_H */
