/*
 * test_ctl_util.c - peerdistctl's tag syntax: 32 hex digits in order, and a
 * GUID read as Windows lays it out in memory (first three groups little-endian).
 */
#include <check.h>
#include <string.h>

#include "ctl-util.h"
#include "check_run.h"

START_TEST(hex_tag_is_bytes_in_order)
{
    PEERDIST_CONTENT_TAG t;
    ck_assert_int_eq(ctl_parse_tag("00112233445566778899aabbccddeeff", &t), 0);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(t.Data[i], i * 0x11);
    char back[33];
    ctl_format_tag(&t, back);
    ck_assert_str_eq(back, "00112233445566778899aabbccddeeff");
}
END_TEST

START_TEST(guid_tag_uses_windows_layout)
{
    static const uint8_t want[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99,
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    PEERDIST_CONTENT_TAG t;
    ck_assert_int_eq(ctl_parse_tag("{00112233-4455-6677-8899-aabbccddeeff}", &t), 0);
    ck_assert_mem_eq(t.Data, want, 16);
    ck_assert_int_eq(ctl_parse_tag("00112233-4455-6677-8899-AABBCCDDEEFF", &t), 0);
    ck_assert_mem_eq(t.Data, want, 16);
}
END_TEST

START_TEST(bad_tags_rejected)
{
    PEERDIST_CONTENT_TAG t;
    const char *bad[] = {"", "0011", "00112233445566778899aabbccddeeff00",
        "0011223344556677889gaabbccddeeff", "{00112233-4455-6677-8899-aabbccddeeff",
        "00112233-4455-6677-8899aabbccddeeff0", "{00112233_4455-6677-8899-aabbccddeeff}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ctl_parse_tag(bad[i], &t) == -1, "accepted '%s'", bad[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ctl_util");
    TCase *tc = tcase_create("tags");
    tcase_add_test(tc, hex_tag_is_bytes_in_order);
    tcase_add_test(tc, guid_tag_uses_windows_layout);
    tcase_add_test(tc, bad_tags_rejected);
    suite_add_tcase(s, tc);
    return check_run(s);
}
