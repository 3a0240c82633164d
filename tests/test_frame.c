/* SPDX-License-Identifier: MIT */
/*
 * test_frame.c - unit tests of the wire framing: truncated, oversized and
 * garbage frames, frames split across reads, and a request round trip.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "check_run.h"

static size_t pack_request(uint64_t id, uint8_t *out)
{
    Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = id;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &g;
    ck_assert_uint_le(frame_size(&req.base), 64);
    return frame_pack(&req.base, out);
}

START_TEST(round_trip)
{
    uint8_t buf[64];
    size_t n = pack_request(0x1122334455667788ull, buf);
    const uint8_t *payload;
    uint32_t len;
    size_t flen;
    ck_assert_int_eq(frame_parse(buf, n, &payload, &len, &flen), FRAME_OK);
    ck_assert_uint_eq(flen, n);
    ck_assert_uint_eq(len, n - FRAME_HEADER_SIZE);
    Peerdist__Request *r = peerdist__request__unpack(NULL, len, payload);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 0x1122334455667788ull);
    ck_assert_int_eq(r->body_case, PEERDIST__REQUEST__BODY_GET_STATUS);
    peerdist__request__free_unpacked(r, NULL);
}
END_TEST

START_TEST(truncated_needs_more)
{
    uint8_t buf[64];
    size_t n = pack_request(7, buf);
    const uint8_t *payload;
    uint32_t len;
    size_t flen;
    for (size_t cut = 0; cut < n; cut++)
        ck_assert_int_eq(frame_parse(buf, cut, &payload, &len, &flen), FRAME_NEED_MORE);
}
END_TEST

START_TEST(oversized_rejected_from_header)
{
    const uint8_t *payload;
    uint32_t len;
    size_t flen;
    uint32_t big = FRAME_MAX_PAYLOAD + 1;
    uint8_t hdr[4] = {big >> 24, big >> 16, big >> 8, big};
    ck_assert_int_eq(frame_parse(hdr, 4, &payload, &len, &flen), FRAME_TOO_BIG);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(frame_parse(huge, 4, &payload, &len, &flen), FRAME_TOO_BIG);
    uint32_t max = FRAME_MAX_PAYLOAD;
    uint8_t at_cap[4] = {max >> 24, max >> 16, max >> 8, max};
    ck_assert_int_eq(frame_parse(at_cap, 4, &payload, &len, &flen), FRAME_NEED_MORE);
}
END_TEST

START_TEST(garbage_payload_fails_unpack)
{
    /* Field 1 as a length-delimited field running past the end. */
    const uint8_t garbage[] = {0x0a, 0x7f, 0x01, 0x02};
    ck_assert_ptr_null(peerdist__request__unpack(NULL, sizeof(garbage), garbage));
    const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff};
    ck_assert_ptr_null(peerdist__request__unpack(NULL, sizeof(bad_varint), bad_varint));
}
END_TEST

START_TEST(split_across_reads)
{
    uint8_t stream[64 * 3];
    size_t total = 0;
    for (uint64_t id = 1; id <= 3; id++)
        total += pack_request(id, stream + total);
    /* Feed one byte at a time: every frame comes out whole, in order, exactly once. */
    struct frame_buf fb;
    frame_buf_init(&fb);
    uint64_t next = 1;
    for (size_t i = 0; i < total; i++) {
        size_t avail;
        uint8_t *space = frame_buf_space(&fb, 1, &avail);
        ck_assert_ptr_nonnull(space);
        *space = stream[i];
        frame_buf_commit(&fb, 1);
        const uint8_t *payload;
        uint32_t len;
        while (frame_buf_next(&fb, &payload, &len) == FRAME_OK) {
            Peerdist__Request *r = peerdist__request__unpack(NULL, len, payload);
            ck_assert_ptr_nonnull(r);
            ck_assert_uint_eq(r->id, next++);
            peerdist__request__free_unpacked(r, NULL);
        }
    }
    ck_assert_uint_eq(next, 4);
    frame_buf_free(&fb);
}
END_TEST

START_TEST(buffer_reports_oversized)
{
    struct frame_buf fb;
    frame_buf_init(&fb);
    size_t avail;
    uint8_t *space = frame_buf_space(&fb, 4, &avail);
    memset(space, 0xff, 4);
    frame_buf_commit(&fb, 4);
    const uint8_t *payload;
    uint32_t len;
    ck_assert_int_eq(frame_buf_next(&fb, &payload, &len), FRAME_TOO_BIG);
    frame_buf_free(&fb);
}
END_TEST

/* The in-place read reply is exactly what protobuf-c unpacks as that Reply. */
START_TEST(read_reply_built_in_place_unpacks)
{
    const uint64_t ids[] = {1, 127, 128, 0x1122334455667788ull};
    const uint64_t offsets[] = {0, 1, 300, 1ull << 40};
    const size_t sizes[] = {1, 127, 128, 65536, 1u << 20};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++)
            for (size_t k = 0; k < 5; k++) {
                size_t n = sizes[k];
                size_t total = frame_read_reply_size(ids[i], offsets[j], n);
                uint8_t *buf = malloc(total);
                uint8_t *data = frame_read_reply_pack(buf, ids[i], offsets[j], n);
                ck_assert(data > buf && data + n < buf + total);
                for (size_t b = 0; b < n; b++)
                    data[b] = (uint8_t)(b * 31 + k);
                const uint8_t *payload;
                uint32_t len;
                size_t flen;
                ck_assert_int_eq(frame_parse(buf, total, &payload, &len, &flen), FRAME_OK);
                ck_assert_uint_eq(flen, total);
                Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, payload);
                ck_assert_ptr_nonnull(r);
                ck_assert_uint_eq(r->id, ids[i]);
                ck_assert_uint_eq(r->status, 0);
                ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_READ);
                ck_assert_uint_eq(r->read->offset, offsets[j]);
                ck_assert_uint_eq(r->read->length, n);
                ck_assert_uint_eq(r->read->data.len, n);
                ck_assert_int_eq(memcmp(r->read->data.data, data, n), 0);
                peerdist__reply__free_unpacked(r, NULL);
                free(buf);
            }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, truncated_needs_more);
    tcase_add_test(tc, oversized_rejected_from_header);
    tcase_add_test(tc, garbage_payload_fails_unpack);
    tcase_add_test(tc, split_across_reads);
    tcase_add_test(tc, buffer_reports_oversized);
    tcase_add_test(tc, read_reply_built_in_place_unpacks);
    suite_add_tcase(s, tc);
    return check_run(s);
}
