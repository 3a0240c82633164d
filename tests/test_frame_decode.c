/* SPDX-License-Identifier: MIT */
/*
 * test_frame_decode.c - unit tests of bounded decoding (frame_unpack_request): the largest
 * request of every kind we define, and a newer client's unknown request type, decode within
 * the bound; frames built to cost many times their size (many tiny fields, known or not,
 * repeated submessages) are refused, and say so; the request id of a frame read no further.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "frame.h"

static uint8_t *payload_of(const Peerdist__Request *req, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&req->base);
    uint8_t *p = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(p);
    protobuf_c_message_pack(&req->base, p);
    return p;
}

/* Decodes p[0..len) within its bound: must succeed. */
static Peerdist__Request *decode(struct frame_alloc *fa, const uint8_t *p, size_t len)
{
    frame_alloc_init(fa, (uint32_t)len);
    Peerdist__Request *r = frame_unpack_request(fa, p, len);
    ck_assert_msg(r != NULL, "refused=%d used=%zu cap=%zu", fa->refused, fa->used, fa->cap);
    ck_assert_uint_le(fa->used, fa->cap);
    return r;
}

START_TEST(largest_requests_decode)
{
    /* AddData of PD_MAX_CHUNK, and content information filling a whole frame. */
    static uint8_t data[FRAME_MAX_PAYLOAD - 64];
    memset(data, 0xa5, sizeof(data));
    Peerdist__AddDataRequest ad = PEERDIST__ADD_DATA_REQUEST__INIT;
    ad.handle = 1;
    ad.offset = 1ull << 40;
    ad.data.data = data;
    ad.data.len = PD_MAX_CHUNK;
    Peerdist__AddContentInfoRequest aci = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    aci.handle = 2;
    aci.data.data = data;
    aci.data.len = sizeof(data);
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 9;
    for (int i = 0; i < 2; i++) {
        req.body_case = i ? PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO
                          : PEERDIST__REQUEST__BODY_ADD_DATA;
        if (i)
            req.add_content_info = &aci;
        else
            req.add_data = &ad;
        size_t len;
        uint8_t *p = payload_of(&req, &len);
        ck_assert_uint_le(len, FRAME_MAX_PAYLOAD);
        struct frame_alloc fa;
        Peerdist__Request *r = decode(&fa, p, len);
        ck_assert_uint_eq(r->id, 9);
        ck_assert_int_eq(r->body_case, req.body_case);
        frame_free_request(&fa, r);
        free(p);
    }
}
END_TEST

START_TEST(small_requests_decode)
{
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.software = "a client with a long name, as they have";
    h.min_version = h.max_version = 1;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 1;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    size_t len;
    uint8_t *p = payload_of(&req, &len);
    struct frame_alloc fa;
    Peerdist__Request *r = decode(&fa, p, len);
    ck_assert_str_eq(r->hello->software, h.software);
    frame_free_request(&fa, r);
    free(p);
    /* An empty payload is a Request with nothing set. */
    r = decode(&fa, (const uint8_t *)"", 0);
    ck_assert_uint_eq(r->id, 0);
    frame_free_request(&fa, r);
}
END_TEST

/* A newer client's request type: one unknown field, kept whole, of any size. */
START_TEST(unknown_request_type_decodes)
{
    size_t len = FRAME_MAX_PAYLOAD;
    uint8_t *p = malloc(len);
    size_t fill = len - 8;
    uint8_t head[] = {0x08, 0x07, 0xe2, 0x03, (uint8_t)(fill | 0x80), (uint8_t)(fill >> 7 | 0x80),
        (uint8_t)(fill >> 14 | 0x80), (uint8_t)(fill >> 21)};
    memcpy(p, head, sizeof(head));
    memset(p + sizeof(head), 0x11, fill);
    struct frame_alloc fa;
    Peerdist__Request *r = decode(&fa, p, len);
    ck_assert_uint_eq(r->id, 7);
    ck_assert_int_eq(r->body_case, PEERDIST__REQUEST__BODY__NOT_SET);
    ck_assert_uint_eq(r->base.n_unknown_fields, 1);
    ck_assert_uint_eq(r->base.unknown_fields[0].len, 4 + fill); /* with its length prefix */
    frame_free_request(&fa, r);
    free(p);
}
END_TEST

/* len bytes of id 7, then the 3-byte (or 2-byte) unit repeated; refused with fa.refused. */
static void refused(const uint8_t *unit, size_t unit_len, size_t len)
{
    uint8_t *p = malloc(len);
    p[0] = 0x08;
    p[1] = 0x07;
    size_t n = 2;
    while (n + unit_len <= len) {
        memcpy(p + n, unit, unit_len);
        n += unit_len;
    }
    struct frame_alloc fa;
    frame_alloc_init(&fa, (uint32_t)n);
    ck_assert_ptr_null(frame_unpack_request(&fa, p, n));
    ck_assert(fa.refused);
    ck_assert_uint_le(fa.used, fa.cap);
    ck_assert_uint_eq(frame_peek_request_id(p, n), 7);
    free(p);
}

START_TEST(costly_frames_are_refused)
{
    static const uint8_t unknown_varint[] = {0xe0, 0x03, 0x00}; /* field 60 = 0 */
    static const uint8_t unknown_empty[] = {0xe2, 0x03, 0x00};  /* field 60 = "" */
    static const uint8_t known_varint[] = {0x08, 0x01};         /* id again, and again */
    static const uint8_t empty_body[] = {0x1a, 0x00};           /* get_status {} again */
    for (size_t len = 64 * 1024; len <= FRAME_MAX_PAYLOAD; len *= 8) {
        refused(unknown_varint, sizeof(unknown_varint), len);
        refused(unknown_empty, sizeof(unknown_empty), len);
        refused(known_varint, sizeof(known_varint), len);
        refused(empty_body, sizeof(empty_body), len);
    }
}
END_TEST

START_TEST(garbage_is_not_refused_for_cost)
{
    const uint8_t garbage[] = {0x0a, 0x7f, 0x01, 0x02};
    struct frame_alloc fa;
    frame_alloc_init(&fa, sizeof(garbage));
    ck_assert_ptr_null(frame_unpack_request(&fa, garbage, sizeof(garbage)));
    ck_assert(!fa.refused);
}
END_TEST

START_TEST(peek_request_id)
{
    const uint8_t ok[] = {0x08, 0xff, 0xff, 0x03, 0x1a};
    ck_assert_uint_eq(frame_peek_request_id(ok, sizeof(ok)), 0xffff);
    const uint8_t big[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    ck_assert_uint_eq(frame_peek_request_id(big, sizeof(big)), UINT64_MAX);
    const uint8_t other_first[] = {0x1a, 0x00, 0x08, 0x05};
    ck_assert_uint_eq(frame_peek_request_id(other_first, sizeof(other_first)), 0);
    const uint8_t cut[] = {0x08, 0xff};
    ck_assert_uint_eq(frame_peek_request_id(cut, sizeof(cut)), 0);
    const uint8_t endless[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x01};
    ck_assert_uint_eq(frame_peek_request_id(endless, sizeof(endless)), 0);
    ck_assert_uint_eq(frame_peek_request_id(ok, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame_decode");
    TCase *tc = tcase_create("frame_decode");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, largest_requests_decode);
    tcase_add_test(tc, small_requests_decode);
    tcase_add_test(tc, unknown_request_type_decodes);
    tcase_add_test(tc, costly_frames_are_refused);
    tcase_add_test(tc, garbage_is_not_refused_for_cost);
    tcase_add_test(tc, peek_request_id);
    suite_add_tcase(s, tc);
    return check_run(s);
}
