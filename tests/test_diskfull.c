/* SPDX-License-Identifier: MIT */
/*
 * test_diskfull.c - the cache on a full filesystem, for real: a 64 MiB ext4 image mounted on
 * a loop device (tmpfs where loop devices are not available; skipped with a message when not
 * root). AddData fails cleanly with ERROR_DISK_FULL, reads keep working, a flush works on the
 * full disk (across a restart too), and the cache recovers by itself once space is free.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "harness.h"

#define IMAGE_MIB 64
#define CONTENT_LEN (96u * MiB) /* more than the filesystem holds */

static char mnt[64];
static char image[80];
static const char *fs_kind;
static struct test_daemon td;

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A small filesystem to fill: ext4 on a loop device, else tmpfs. NULL: no way (not root). */
static const char *mount_small_fs(void)
{
    snprintf(mnt, sizeof(mnt), "/tmp/pdfull.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(mnt));
    if (geteuid() != 0)
        return NULL;
    snprintf(image, sizeof(image), "%s.img", mnt);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
        "truncate -s %dM %s && mkfs.ext4 -q -F %s >/dev/null 2>&1 && "
        "mount -o loop %s %s 2>/dev/null",
        IMAGE_MIB, image, image, image, mnt);
    if (run(cmd) == 0)
        return "ext4 on a loop device";
    unlink(image);
    image[0] = '\0';
    snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=%dm tmpfs %s 2>/dev/null", IMAGE_MIB, mnt);
    if (run(cmd) == 0)
        return "tmpfs";
    return NULL;
}

static void unmount_small_fs(void)
{
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    if (image[0])
        unlink(image);
}

/* Writes a file until the filesystem refuses: another program filling the disk. */
static void fill_with(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    static uint8_t buf[64 * 1024];
    memset(buf, 0x5a, sizeof(buf));
    for (;;) {
        ssize_t w = write(fd, buf, sizeof(buf));
        if (w < 0) {
            ck_assert_int_eq(errno, ENOSPC);
            break;
        }
    }
    for (size_t small = 4096; small >= 512; small /= 2)
        while (write(fd, buf, small) > 0)
            ;
    fsync(fd);
    close(fd);
}

static void start_daemon(void)
{
    td_start(&td);
}

static void setup(void)
{
    td_init(&td, "local");
    fs_kind = mount_small_fs();
    if (!fs_kind)
        return;
    /* The database and its data files on the small filesystem; a 4 MiB reserve. */
    snprintf(td.db, sizeof(td.db), "%s/cache.db", mnt);
    td_config_append(&td, "disk_reserve = 4M\n");
}

static void teardown(void)
{
    td_stop(&td);
    if (fs_kind)
        unmount_small_fs();
    td_cleanup(&td);
}

/* The first bytes at off read back right (more may be readable after them). */
static void read_prefix(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    uint64_t off)
{
    uint8_t buf[4096];
    struct api_read r = api_block_read(h, c, off, sizeof(buf), buf);
    ck_assert_uint_eq(r.status, ERROR_SUCCESS);
    ck_assert_uint_eq(r.bytes, sizeof(buf));
    ck_assert(memcmp(buf, data + off, sizeof(buf)) == 0);
}

struct add_ctx {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    const uint8_t *data;
    uint64_t off;
};

static bool add_accepted(void *arg)
{
    struct add_ctx *a = arg;
    DWORD n = 0;
    return api_add_data(a->h, a->c, a->off, a->data + a->off, MiB, &n) == ERROR_SUCCESS;
}

/* AddData 1 MiB at a time from 0 until refused; every refusal is ERROR_DISK_FULL. */
static uint64_t add_until_full(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data)
{
    uint64_t off = 0;
    for (; off < CONTENT_LEN; off += MiB) {
        DWORD n = 0;
        DWORD rc = api_add_data(h, c, off, data + off, MiB, &n);
        if (rc != ERROR_SUCCESS) {
            ck_assert_uint_eq(rc, ERROR_DISK_FULL);
            break;
        }
        ck_assert_uint_eq(n, MiB);
    }
    ck_assert_msg(off < CONTENT_LEN, "a %d MiB filesystem took %u MiB", IMAGE_MIB,
        CONTENT_LEN / MiB);
    return off;
}

START_TEST(full_disk_refuses_adddata_and_still_flushes)
{
    if (!fs_kind) {
        fprintf(stderr, "test_diskfull: skipped: needs root to mount a small filesystem\n");
        return;
    }
    fprintf(stderr, "test_diskfull: on %s\n", fs_kind);
    start_daemon();
    uint8_t *data = api_make_content(CONTENT_LEN, 11);
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA256, "full-disk", 9, &ks), 0);
    struct ci_gen *g = ci_gen_new(CI_VERSION_1, &ks);
    ck_assert_int_eq(ci_gen_feed(g, data, CONTENT_LEN), 0);
    struct api_ci ci = {0};
    ck_assert_int_eq(ci_gen_finish(g, &ci.info), 0);
    ci_gen_free(g);
    ck_assert_int_eq(ci_serialize(ci.info, &ci.bytes, &ci.len), 0);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag_a = api_make_tag(1), tag_b = api_make_tag(2);
    PEERDIST_CONTENT_HANDLE a = api_open_with_ci(h, &tag_a, &ci);

    /* 1. AddData until the daemon says the disk is full: a clean ERROR_DISK_FULL. */
    uint64_t stored = add_until_full(h, a, data);
    ck_assert_uint_gt(stored, 8 * MiB);
    ck_assert(td_log_contains(&td, "ERROR_DISK_FULL"));
    /* What was acknowledged reads back, byte for byte. */
    api_read_back_block(h, a, data, 0, stored);

    /* 2. Another program takes the rest of the filesystem. AddData still fails cleanly and
     * reads still work; then a flush works: the database journals it in the reserve. */
    char filler[128];
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    fill_with(filler);
    DWORD n = 0;
    ck_assert_uint_eq(api_add_data(h, a, stored, data + stored, MiB, &n), ERROR_DISK_FULL);
    read_prefix(h, a, data, 0);
    read_prefix(h, a, data, stored - 4096);
    ck_assert_uint_eq(api_flush(h, &tag_a), ERROR_SUCCESS);
    uint8_t buf[4096];
    api_assert_missing(api_block_read(h, a, 0, sizeof(buf), buf), 0, CONTENT_LEN);

    /* 3. Space is back (the filler goes, and the flush's blocks are reclaimed): AddData works
     * again without a restart. */
    unlink(filler);
    PEERDIST_CONTENT_TAG tag_c = api_make_tag(3);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag_c, &ci);
    struct add_ctx ac = {h, c, data, 0};
    ck_assert_msg(td_wait_until(add_accepted, &ac), "AddData still refused with space free");
    ck_assert_uint_eq(api_flush(h, &tag_c), ERROR_SUCCESS);
    ck_assert_int_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);

    /* 4. Full again, then a restart on the full disk: the daemon starts, reads work, the
     * flush works. */
    PEERDIST_CONTENT_HANDLE b = api_open_with_ci(h, &tag_b, &ci);
    uint64_t stored_b = add_until_full(h, b, data);
    fill_with(filler);
    ck_assert_int_eq(PeerDistClientCloseContent(h, a), ERROR_SUCCESS);
    ck_assert_int_eq(PeerDistClientCloseContent(h, b), ERROR_SUCCESS);
    ck_assert_int_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    ck_assert_int_eq(td_stop(&td), 0);
    start_daemon();
    h = api_startup();
    b = api_open_with_ci(h, &tag_b, &ci);
    read_prefix(h, b, data, 0);
    read_prefix(h, b, data, stored_b - 4096);
    ck_assert_uint_eq(api_flush(h, &tag_b), ERROR_SUCCESS);
    api_assert_missing(api_block_read(h, b, 0, sizeof(buf), buf), 0, CONTENT_LEN);
    unlink(filler);
    ac = (struct add_ctx){h, b, data, 0};
    ck_assert_msg(td_wait_until(add_accepted, &ac), "AddData still refused after the restart");
    read_prefix(h, b, data, 0);
    ck_assert_int_eq(PeerDistClientCloseContent(h, b), ERROR_SUCCESS);
    ck_assert_int_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    fprintf(stderr,
        "full disk: %s of %d MiB; AddData acknowledged %llu MiB then ERROR_DISK_FULL (and %llu "
        "MiB after a restart); with the filesystem 100%% full: AddData ERROR_DISK_FULL, reads "
        "right, flush ERROR_SUCCESS (also right after a restart), AddData accepted again once "
        "space was free; lost 0\n",
        fs_kind, IMAGE_MIB, (unsigned long long)(stored / MiB),
        (unsigned long long)(stored_b / MiB));
    api_ci_free(&ci);
    free(data);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("diskfull");
    TCase *tc = tcase_create("diskfull");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, full_disk_refuses_adddata_and_still_flushes);
    suite_add_tcase(s, tc);
    return check_run(s);
}
