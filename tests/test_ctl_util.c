/* SPDX-License-Identifier: MIT */
/*
 * test_ctl_util.c - peerdistctl's tag syntax: 32 hex digits in order, and a
 * GUID read as Windows lays it out in memory (first three groups little-endian); its number,
 * size and duration syntax; and output files replaced only on success.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

START_TEST(guid_text_round_trips)
{
    PEERDIST_CONTENT_TAG t, back;
    char guid[39];
    ck_assert_int_eq(ctl_parse_tag("{00112233-4455-6677-8899-aabbccddeeff}", &t), 0);
    ctl_format_guid(&t, guid);
    ck_assert_str_eq(guid, "{00112233-4455-6677-8899-aabbccddeeff}");
    ck_assert_int_eq(ctl_parse_tag(guid, &back), 0);
    ck_assert_mem_eq(back.Data, t.Data, 16);
}
END_TEST

START_TEST(numbers_are_checked)
{
    uint64_t v = 7;
    ck_assert_int_eq(ctl_parse_u64("4294967295", UINT32_MAX, &v), 0);
    ck_assert_uint_eq(v, UINT32_MAX);
    ck_assert_int_eq(ctl_parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
    const char *bad[] = {"", "abc", "-1", "+1", " 1", "1 ", "12x", "4294967296",
        "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ctl_parse_u64(bad[i], UINT32_MAX, &v) == -1, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(sizes_and_durations)
{
    const uint64_t min = 64ull << 20;
    const char *good[] = {"5%", "1%", "100%", "64M", "512M", "20G", "1T", "67108864"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(ctl_check_cache_size(good[i], min) == 0, "refused '%s'", good[i]);
    const char *bad[] = {"", "0%", "101%", "5.5%", "63M", "10", "5x", "5MB", "m", "-5%", "1G ",
        "99999999999999999999G"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ctl_check_cache_size(bad[i], min) == -1, "accepted '%s'", bad[i]);
    uint64_t s = 0;
    ck_assert_int_eq(ctl_check_duration("28d", 100ull * 365 * 86400, &s), 0);
    ck_assert_uint_eq(s, 28 * 86400);
    ck_assert_int_eq(ctl_check_duration("90m", 100ull * 365 * 86400, &s), 0);
    ck_assert_uint_eq(s, 5400);
    ck_assert_int_eq(ctl_check_duration("3600", 100ull * 365 * 86400, &s), 0);
    ck_assert_uint_eq(s, 3600);
    const char *bad_d[] = {"", "0", "0d", "5y", "1dd", "d", "-1s", "36501d"};
    for (size_t i = 0; i < sizeof(bad_d) / sizeof(bad_d[0]); i++)
        ck_assert_msg(ctl_check_duration(bad_d[i], 100ull * 365 * 86400, &s) == -1, "accepted '%s'",
            bad_d[i]);
}
END_TEST

static char *read_all(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* OUT keeps its old bytes until commit; abort leaves nothing behind. */
START_TEST(output_replaced_only_on_commit)
{
    char dir[] = "/tmp/ctlutil.XXXXXX", out[64], listing[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/out", dir);
    FILE *f = fopen(out, "w");
    fputs("old", f);
    fclose(f);
    struct ctl_out o;
    ck_assert_int_eq(ctl_out_open(&o, out, 0), 0);
    ck_assert_int_eq(ctl_write_all(o.fd, (const uint8_t *)"new bytes", 9), 0);
    ck_assert_str_eq(read_all(out), "old");
    ctl_out_abort(&o);
    ck_assert_str_eq(read_all(out), "old");
    ck_assert_int_eq(ctl_out_open(&o, out, 0), 0);
    ck_assert_int_eq(ctl_write_all(o.fd, (const uint8_t *)"new", 3), 0);
    ck_assert_int_eq(ctl_out_commit(&o, 5), 0); /* a hole at the end: zeros */
    ck_assert_int_eq(memcmp(read_all(out), "new", 4), 0);
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_int_eq(st.st_size, 5);
    /* NOREPLACE refuses an existing file; PRIVATE makes 0600. */
    ck_assert_int_eq(ctl_out_open(&o, out, CTL_OUT_NOREPLACE), -1);
    char key[80];
    snprintf(key, sizeof(key), "%s/key", dir);
    ck_assert_int_eq(ctl_out_open(&o, key, CTL_OUT_PRIVATE | CTL_OUT_NOREPLACE), 0);
    ck_assert_int_eq(ctl_out_commit(&o, -1), 0);
    ck_assert_int_eq(stat(key, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* Only out and key are left: no temporary file. */
    snprintf(listing, sizeof(listing), "test $(ls -A %s | wc -l) -eq 2", dir);
    ck_assert_int_eq(system(listing), 0);
    /* Something not a regular file is written in place: /dev/null stays /dev/null. */
    ck_assert_int_eq(ctl_out_open(&o, "/dev/null", 0), 0);
    ck_assert_ptr_null(o.tmp);
    ck_assert_int_eq(ctl_out_commit(&o, -1), 0);
    ck_assert_int_eq(stat("/dev/null", &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    unlink(out);
    unlink(key);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ctl_util");
    TCase *tc = tcase_create("tags");
    tcase_add_test(tc, hex_tag_is_bytes_in_order);
    tcase_add_test(tc, guid_tag_uses_windows_layout);
    tcase_add_test(tc, bad_tags_rejected);
    tcase_add_test(tc, guid_text_round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("syntax");
    tcase_add_test(tc, numbers_are_checked);
    tcase_add_test(tc, sizes_and_durations);
    suite_add_tcase(s, tc);
    tc = tcase_create("output");
    tcase_add_test(tc, output_replaced_only_on_commit);
    suite_add_tcase(s, tc);
    return check_run(s);
}
