// SPDX-License-Identifier: MIT
/*
 * test_backlog.c - one connection's backlog of big replies against a real peerdistd: a client
 * that asks for many 1 MiB in-frame reads and leaves the replies unread does not stop another
 * connection's GetStatus from being answered, and its replies are all right once it reads.
 */
#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <peerdist.h>

#include "check_run.h"
#include "contentinfo.h"
#include "frame.h"
#include "harness.h"
#include "wire_util.h"

#define MIB (1024u * 1024)
#define CONTENT_LEN (4 * MIB)
#define READS 48 /* 48 MiB of replies: far past the daemon's per-connection output bound */

static struct test_daemon td;
static const uint8_t tag[16] = "backlog-test-tag";

static uint8_t *content_make(size_t len, uint8_t **ci, size_t *cilen)
{
    uint8_t *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (uint8_t)x;
    }
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA256, "test-passphrase", 15, &ks), 0);
    struct ci_gen *g = ci_gen_new(CI_VERSION_1, &ks);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(ci_gen_feed(g, data, len), 0);
    struct ci_info *info;
    ck_assert_int_eq(ci_gen_finish(g, &info), 0);
    ci_gen_free(g);
    ck_assert_int_eq(ci_serialize(info, ci, cilen), 0);
    ci_info_free(info);
    return data;
}

static void teardown(void)
{
    ck_assert_int_eq(td_stop(&td), 0);
    td_cleanup(&td);
}

START_TEST(unread_read_replies_do_not_hold_up_others)
{
    td_init(&td, "local");
    td_start(&td);
    uint8_t *ci;
    size_t cilen;
    uint8_t *data = content_make(CONTENT_LEN, &ci, &cilen);
    int adder = wu_open(td.sock);
    ck_assert_int_ge(adder, 0);
    uint64_t ah = wu_open_ci(adder, tag, ci, cilen);
    ck_assert_uint_ne(ah, 0);
    for (size_t off = 0; off < CONTENT_LEN; off += MIB) { /* 1 MiB frames: read in one buffer */
        Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
        a.handle = ah;
        a.offset = off;
        a.data.data = data + off;
        a.data.len = MIB;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
        req.add_data = &a;
        ck_assert_uint_eq(wu_status(adder, &req), ERROR_SUCCESS);
    }
    close(adder);

    /* The reader: a small receive buffer, READS in-frame reads of 1 MiB, nothing read back. */
    int rd = wu_open(td.sock);
    ck_assert_int_ge(rd, 0);
    int small = 16 * 1024;
    setsockopt(rd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    uint64_t h = wu_open_ci(rd, tag, ci, cilen);
    ck_assert_uint_ne(h, 0);
    uint64_t first = 0;
    for (int i = 0; i < READS; i++) {
        Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
        a.handle = h;
        a.offset = (uint64_t)(i % (CONTENT_LEN / MIB)) * MIB;
        a.max_bytes = MIB;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_READ;
        req.read = &a;
        uint64_t id = wu_send(rd, &req);
        ck_assert_uint_ne(id, 0);
        if (!first)
            first = id;
    }
    /* Some replies have reached the reader's socket: the daemon is busy with its reads. */
    int waited = 0, queued = 0;
    while ((ioctl(rd, FIONREAD, &queued) != 0 || queued == 0) && waited++ < TD_WAIT_MS)
        usleep(1000);
    ck_assert_int_gt(queued, 0);

    /* Another connection's small calls are answered while those replies stay unread. */
    int other = wu_open(td.sock);
    ck_assert_int_ge(other, 0);
    for (int i = 0; i < 20; i++) {
        Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
        req.get_status = &g;
        ck_assert_uint_eq(wu_status(other, &req), ERROR_SUCCESS);
    }
    /* The reader has not read a byte; the daemon still holds replies it could not write. */
    ck_assert_int_eq(ioctl(rd, FIONREAD, &queued), 0);
    ck_assert_int_gt(queued, 0);
    close(other);

    /* Then every read is answered once, with the right bytes. */
    bool seen[READS] = {false};
    for (int k = 0; k < READS; k++) {
        Peerdist__Reply *r = wu_recv(rd);
        ck_assert_ptr_nonnull(r);
        ck_assert(r->id >= first && r->id < first + READS && !seen[r->id - first]);
        int i = (int)(r->id - first);
        seen[i] = true;
        ck_assert_uint_eq(r->status, ERROR_SUCCESS);
        ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_READ);
        size_t off = (size_t)(i % (CONTENT_LEN / MIB)) * MIB;
        ck_assert_uint_eq(r->read->data.len, MIB);
        ck_assert(memcmp(r->read->data.data, data + off, MIB) == 0);
        peerdist__reply__free_unpacked(r, NULL);
    }
    close(rd);
    free(data);
    free(ci);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backlog");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, unread_read_replies_do_not_hold_up_others);
    suite_add_tcase(s, tc);
    return check_run(s);
}
