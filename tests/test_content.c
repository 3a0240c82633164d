/* SPDX-License-Identifier: MIT */
/*
 * test_content.c - one content handle through <peerdist.h> against the real peerdistd: its
 * rules (hash verification, tags sharing bytes, ranged content information, state errors,
 * cancel, close with work pending) and what the library decides alone (synchronous errors,
 * exactly-once completions when the daemon stops, dies or the instance shuts down).
 * Content information comes from common/contentinfo.h; the whole path from a publication
 * to reads and flush at every size is test_datapath.c's.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"

static struct test_daemon td;

static void setup(void)
{
    td_init(&td, "local");
    td_start(&td);
}

static void teardown(void)
{
    td_cleanup(&td);
}

/* Content information for data made here: whole, or the range [off, off+rlen) if rlen > 0. */
static void make_ci(const uint8_t *data, size_t len, int version, uint64_t off, uint64_t rlen,
    struct api_ci *out)
{
    struct ci_secret ks;
    enum ci_hash_alg alg = version == 1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC;
    ck_assert_int_eq(ci_secret_from_passphrase(alg, "test-passphrase", 15, &ks), 0);
    struct ci_gen *g = ci_gen_new(version == 1 ? CI_VERSION_1 : CI_VERSION_2, &ks);
    ck_assert_ptr_nonnull(g);
    for (size_t at = 0; at < len; at += MiB)
        ck_assert_int_eq(ci_gen_feed(g, data + at, len - at < MiB ? len - at : MiB), 0);
    ck_assert_int_eq(ci_gen_finish(g, &out->info), 0);
    ci_gen_free(g);
    struct ci_info *ser = out->info, *ranged = NULL;
    if (rlen) {
        ck_assert_int_eq(ci_range(out->info, off, rlen, &ranged), 0);
        ser = ranged;
    }
    ck_assert_int_eq(ci_serialize(ser, &out->bytes, &out->len), 0);
    if (ranged)
        ci_info_free(ranged);
}

/* ---- a content handle's rules ---- */

/*
 * A block that fails its hash is refused and nothing of it is readable, through this handle
 * or another; the block before it is stored on its own, and the right bytes are accepted.
 */
START_TEST(corrupted_data_rejected)
{
    for (int version = 1; version <= 2; version++) {
        size_t len = 300 * KiB + 7;
        uint8_t *data = api_make_content(len, 40 + version);
        struct api_ci ci;
        make_ci(data, len, version, 0, 0, &ci);
        struct api_model m;
        api_model_init(&m, data, len, ci.info);
        ck_assert_uint_ge(m.nblocks, 3); /* V1 blocks, or V2 segments */
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(40 + version));
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
        PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h, &tag, &ci);
        uint8_t buf[16];
        /* Block 0, then block 1, each with one byte flipped. */
        for (size_t b = 0; b < 2; b++) {
            uint8_t *bad = malloc(m.blen[b]);
            memcpy(bad, data + m.boff[b], m.blen[b]);
            bad[m.blen[b] / 2] ^= 0x5a;
            ck_assert_uint_eq(api_add_data(h, c, m.boff[b], bad, (DWORD)m.blen[b], NULL),
                ERROR_INVALID_DATA);
            free(bad);
            api_assert_missing(api_block_read(h, c, 0, sizeof(buf), buf), 0, len);
            api_assert_missing(api_block_read(h, c2, 0, sizeof(buf), buf), 0, len);
        }
        /* The right block 0: readable; the missing range runs from block 1 to the end. */
        ck_assert_uint_eq(api_add_data(h, c, 0, data, (DWORD)m.blen[0], NULL), ERROR_SUCCESS);
        api_read_back_block(h, c2, data, 0, m.blen[0]);
        api_assert_missing(api_block_read(h, c2, m.boff[1], sizeof(buf), buf), m.boff[1],
            len - m.boff[1]);
        /* The right bytes of everything are then accepted. */
        ck_assert_uint_eq(api_add_data(h, c, 0, data, (DWORD)len, NULL), ERROR_SUCCESS);
        api_read_back_block(h, c2, data, 0, len);
        PeerDistShutdown(h);
        api_model_free(&m);
        api_ci_free(&ci);
        free(data);
    }
}
END_TEST

/* Two tags add the same bytes; flushing one keeps what the other labelled. */
START_TEST(two_tags_share_data)
{
    const size_t len = 2 * MiB + 1, half = MiB + 4321; /* AddData of several requests */
    uint8_t *data = api_make_content(len, 50);
    struct api_ci ci;
    make_ci(data, len, 1, 0, 0, &ci);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG ta = api_make_tag(51), tb = api_make_tag(52);
    PEERDIST_CONTENT_HANDLE a = api_open_with_ci(h, &ta, &ci), b = api_open_with_ci(h, &tb, &ci);
    /* Each handle adds every byte, the second part first. */
    PEERDIST_CONTENT_HANDLE both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(api_add_data(h, both[i], half, data + half, (DWORD)(len - half), NULL),
            ERROR_SUCCESS);
        ck_assert_uint_eq(api_add_data(h, both[i], 0, data, (DWORD)half, NULL), ERROR_SUCCESS);
    }
    ck_assert_uint_eq(api_flush(h, &ta), ERROR_SUCCESS);
    /* tb's labels keep the bytes: readable through a's handle and a new one under ta. */
    api_read_back_block(h, a, data, 0, len);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &ta, &ci);
    api_read_back_stream(h, c, data, 0, len);
    ck_assert_uint_eq(api_flush(h, &tb), ERROR_SUCCESS);
    uint8_t buf[16];
    api_assert_missing(api_block_read(h, c, 0, sizeof(buf), buf), 0, len);
    api_assert_missing(api_block_read(h, b, 0, sizeof(buf), buf), 0, len);
    PeerDistShutdown(h);
    api_ci_free(&ci);
    free(data);
}
END_TEST

/* Ranged content information binds the handle to its range. */
START_TEST(ranged_content_information)
{
    for (int version = 1; version <= 2; version++) {
        size_t len = 700 * KiB + 3;
        uint64_t off = 100000, rlen = 300000;
        uint8_t *data = api_make_content(len, 60 + version);
        struct api_ci ci;
        make_ci(data, len, version, off, rlen, &ci);
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(60 + version));
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
        uint8_t buf[16];
        ck_assert_uint_eq(api_block_read(h, c, off - 1, sizeof(buf), buf).status,
            PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(api_block_read(h, c, off + rlen + 1, sizeof(buf), buf).status,
            PEERDIST_ERROR_NO_MORE);
        /* The missing range is clipped to the range. */
        api_assert_missing(api_block_read(h, c, off, sizeof(buf), buf), off, rlen);
        api_assert_missing(api_block_read(h, c, off + 10, sizeof(buf), buf), off + 10, rlen - 10);
        api_assert_missing(api_stream_read(h, c, sizeof(buf), buf), off, rlen);
        ck_assert_uint_eq(api_stream_read(h, c, sizeof(buf), buf).status, PEERDIST_ERROR_NO_MORE);
        /* The bytes of every block (segment) the range touches, then the range reads back. */
        struct api_model m;
        api_model_init(&m, data, len, ci.info);
        size_t b0 = api_model_block_at(&m, off), b1 = api_model_block_at(&m, off + rlen - 1);
        uint64_t from = m.boff[b0], to = m.boff[b1] + m.blen[b1];
        ck_assert_uint_eq(api_add_data(h, c, from, data + from, (DWORD)(to - from), NULL),
            ERROR_SUCCESS);
        api_read_back_block(h, c, data, off, off + rlen);
        PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h, &tag, &ci);
        api_read_back_stream(h, c2, data, off, off + rlen);
        api_model_free(&m);
        PeerDistShutdown(h);
        api_ci_free(&ci);
        free(data);
    }
}
END_TEST

/* State errors are completion statuses. */
START_TEST(state_errors_complete_async)
{
    size_t len = 100 * KiB;
    uint8_t *data = api_make_content(len, 70);
    struct api_ci ci;
    make_ci(data, len, 2, 0, 0, &ci);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(70);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, NULL);
    uint8_t buf[16];
    ck_assert_uint_eq(api_block_read(h, c, 0, sizeof(buf), buf).status,
        PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(api_stream_read(h, c, sizeof(buf), buf).status,
        PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(api_add_data(h, c, 0, data, 10, NULL), PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(api_feed_ci(h, c, &ci), ERROR_SUCCESS);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL),
        PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientAddContentInformation(h, c, 4, ci.bytes, &ov), &ov, NULL),
        PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(api_add_data(h, c, len - 5, data, 10, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);
    ck_assert_uint_eq(api_add_data(h, c, len + 5, data, 10, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);

    /* Truncated content information does not parse. */
    PEERDIST_CONTENT_HANDLE t = api_open_content(h, &tag, NULL);
    ck_assert_uint_eq(api_wait_pending(PeerDistClientAddContentInformation(h, t,
                                           (DWORD)(ci.len / 2), ci.bytes, &ov),
                          &ov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientCompleteContentInformation(h, t, &ov), &ov, NULL),
        PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO);
    /* An unknown version: refused when the version is seen, or at completion. */
    PEERDIST_CONTENT_HANDLE v = api_open_content(h, &tag, NULL);
    uint8_t v9[64] = {0x09, 0x00};
    DWORD st = api_wait_pending(PeerDistClientAddContentInformation(h, v, sizeof(v9), v9, &ov), &ov,
        NULL);
    if (st == ERROR_SUCCESS)
        st = api_wait_pending(PeerDistClientCompleteContentInformation(h, v, &ov), &ov, NULL);
    ck_assert_uint_eq(st, PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED);
    PeerDistShutdown(h);
    api_ci_free(&ci);
    free(data);
}
END_TEST

/* ---- cancellation and close ---- */

/* A reading of td_unread; sent_more waits for it to grow: another request went out. */
struct sent_mark {
    long before;
};

static bool sent_more(void *arg)
{
    return td_unread(&td) > ((struct sent_mark *)arg)->before;
}

/*
 * The daemon paused, requests queue in its socket; a thread resumes it once the call the
 * main thread is blocked in (a cancel, a close) has put its request there too, so the daemon
 * finds that request with everything before it.
 */
struct resume_after {
    pthread_t thread;
    struct sent_mark mark;
    bool sent; /* the call's request reached the socket before TD_WAIT_MS */
};

static void *resume_when_sent(void *arg)
{
    struct resume_after *r = arg;
    r->sent = td_wait_until(sent_more, &r->mark);
    td_resume(&td);
    return NULL;
}

/* Call just before the blocking call, and resume_after_join after it. */
static void resume_after_next_request(struct resume_after *r)
{
    r->mark.before = td_unread(&td);
    r->sent = false;
    pthread_create(&r->thread, NULL, resume_when_sent, r);
}

static void resume_after_join(struct resume_after *r)
{
    pthread_join(r->thread, NULL);
    ck_assert_msg(r->sent, "the request never reached the paused daemon's socket");
}

/* A content handle with content information and no data, for pending reads. */
static PEERDIST_CONTENT_HANDLE ready_handle(PEERDIST_INSTANCE_HANDLE h, HANDLE port, size_t len,
    uint8_t **data, struct api_ci *ci)
{
    *data = api_make_content(len, 80);
    make_ci(*data, len, 1, 0, 0, ci);
    PEERDIST_CONTENT_TAG tag = api_make_tag(80);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    ck_assert_uint_eq(api_feed_ci(h, c, ci), ERROR_SUCCESS);
    /*
     * api_feed_ci's completions: one per piece, one for CompleteContentInformation. A packet
     * may reach the port after its OVERLAPPED already says done (as on Windows, where the
     * status is written before the packet is queued), so wait for each, however late.
     */
    size_t packets = (ci->len + API_CI_CHUNK - 1) / API_CI_CHUNK + 1;
    for (size_t i = 0; i < packets; i++) {
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED got = NULL;
        ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 10000));
        ck_assert_ptr_nonnull(got);
    }
    return c;
}

/* Counts the port's packets until it is quiet; each overlapped of ovs exactly once. */
static void drain_exactly_once(HANDLE port, OVERLAPPED *ovs, int n)
{
    int seen[64] = {0};
    for (int k = 0; k < n; k++) {
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED got = NULL;
        GetQueuedCompletionStatus(port, &bytes, &key, &got, 10000);
        ck_assert_ptr_nonnull(got);
        ck_assert_int_ge(got - ovs, 0);
        ck_assert_int_lt(got - ovs, n);
        seen[got - ovs]++;
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(seen[i], 1);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got = NULL;
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 200));
    ck_assert_ptr_null(got);
}

/* Queues AddData of 64 KiB at 0 and 64 KiB (the daemon hashes and stores them on its workers)
 * and BlockReads at len - 100 (never added), alternately, into ov[0..n). */
static void queue_ops(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    size_t len, OVERLAPPED *ov, int n)
{
    static uint8_t bufs[8][256];
    for (int i = 0; i < n; i++) {
        memset(&ov[i], 0, sizeof(ov[i]));
        if (i % 2 == 0) {
            uint64_t off = (uint64_t)(i / 2 % 2) * 65536;
            ov[i].Offset = (DWORD)off;
            ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, (PBYTE)data + off, &ov[i]),
                ERROR_IO_PENDING);
        } else {
            ov[i].Offset = (DWORD)(len - 100);
            ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(bufs[i]), bufs[i],
                                  PEERDIST_READ_TIMEOUT_DEFAULT, &ov[i]),
                ERROR_IO_PENDING);
        }
    }
}

/* What queue_ops' operations end with: AddData accepted or aborted, reads missing. */
static void assert_queued_results(const OVERLAPPED *ov, int n, int cancelled, size_t len)
{
    for (int i = 0; i < n; i++) {
        DWORD st = (DWORD)ov[i].Internal;
        if (i == cancelled || cancelled < 0) {
            if (st == ERROR_OPERATION_ABORTED)
                continue;
        }
        if (i % 2 == 0) {
            ck_assert_msg(st == ERROR_SUCCESS, "AddData %d: %u", i, st);
            ck_assert_uint_eq(ov[i].InternalHigh, 65536);
        } else {
            ck_assert_msg(st == PEERDIST_ERROR_MISSING_DATA, "read %d: %u", i, st);
            ck_assert_uint_eq(ov[i].InternalHigh, 100);
            ck_assert_uint_eq(ov[i].Offset, len - 100);
        }
    }
}

START_TEST(cancel_one_and_all)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint8_t *data;
    struct api_ci ci;
    size_t len = 6 * MiB + 4321;
    PEERDIST_CONTENT_HANDLE c = ready_handle(h, port, len, &data, &ci);

    /* Nothing pending: not found, synchronously (and nothing completes). */
    OVERLAPPED idle = {0};
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &idle),
        PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Cancel one: the daemon is paused, so the operations are all queued when the cancel is sent. */
    OVERLAPPED ov[6];
    struct resume_after ra;
    td_pause(&td);
    queue_ops(h, c, data, len, ov, 4);
    resume_after_next_request(&ra);
    DWORD rc = PeerDistClientCancelAsyncOperation(h, c, &ov[2]);
    resume_after_join(&ra);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel one: %u\n", rc);
    /* Either it was aborted, or its real result was already on its way; either way, delivered. */
    ck_assert(HasOverlappedIoCompleted(&ov[2]));
    if (rc == ERROR_SUCCESS)
        ck_assert_uint_eq(ov[2].Internal, ERROR_OPERATION_ABORTED);
    else
        ck_assert_uint_eq(rc, PEERDIST_ERROR_OPERATION_NOTFOUND);
    drain_exactly_once(port, ov, 4);
    assert_queued_results(ov, 4, rc == ERROR_SUCCESS ? 2 : 99, len);
    ck_assert(rc != ERROR_SUCCESS || ov[2].Internal == ERROR_OPERATION_ABORTED);
    /* Cancelling a finished operation: not found. */
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &ov[0]),
        PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Cancel all: everything pending ends, aborted or with its result, exactly once. */
    td_pause(&td);
    queue_ops(h, c, data, len, ov, 6);
    resume_after_next_request(&ra);
    rc = PeerDistClientCancelAsyncOperation(h, c, NULL);
    resume_after_join(&ra);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel all: %u\n", rc);
    ck_assert_msg(rc == ERROR_SUCCESS || rc == PEERDIST_ERROR_OPERATION_NOTFOUND, "cancel all: %u",
        rc);
    for (int i = 0; i < 6; i++)
        ck_assert(HasOverlappedIoCompleted(&ov[i]));
    drain_exactly_once(port, ov, 6);
    assert_queued_results(ov, 6, -1, len);

    /* Cancel one split AddData (6 requests) while the daemon works on it. */
    memset(ov, 0, sizeof(ov));
    ck_assert_uint_eq(PeerDistClientAddData(h, c, (DWORD)len, data, &ov[0]), ERROR_IO_PENDING);
    rc = PeerDistClientCancelAsyncOperation(h, c, &ov[0]);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel split: %u\n", rc);
    DWORD n;
    if (rc == ERROR_SUCCESS) {
        ck_assert(HasOverlappedIoCompleted(&ov[0]));
        ck_assert_uint_eq(ov[0].Internal, ERROR_OPERATION_ABORTED);
    } else {
        ck_assert_uint_eq(rc, PEERDIST_ERROR_OPERATION_NOTFOUND);
        ck_assert(PeerDistGetOverlappedResult(&ov[0], &n, TRUE));
    }
    drain_exactly_once(port, ov, 1);

    /* The handle still works (the parts after the cancelled one may have been stored). */
    uint8_t one[8];
    struct api_read r = api_block_read(h, c, len - 100, sizeof(one), one);
    ck_assert(r.status == ERROR_SUCCESS || r.status == PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(r.offset, len - 100);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    CloseHandle(port);
    api_ci_free(&ci);
    free(data);
}
END_TEST

START_TEST(close_with_operations_pending)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint8_t *data;
    struct api_ci ci;
    size_t len = 2 * MiB + 500;
    PEERDIST_CONTENT_HANDLE c = ready_handle(h, port, len, &data, &ci);
    static uint8_t bufs[6][4096];
    OVERLAPPED ov[8] = {{0}};
    td_pause(&td);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq((i & 1 ? PeerDistClientStreamRead : PeerDistClientBlockRead)(h, c,
                              sizeof(bufs[i]), bufs[i], PEERDIST_READ_TIMEOUT_DEFAULT, &ov[i]),
            ERROR_IO_PENDING);
    /* Paused, the daemon reads nothing: only what fits in the socket buffer can be sent. */
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, data, &ov[6]), ERROR_IO_PENDING);
    ov[7].Offset = 65536;
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, data + 65536, &ov[7]), ERROR_IO_PENDING);
    struct resume_after ra;
    resume_after_next_request(&ra); /* the close request */
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    resume_after_join(&ra);
    for (int i = 0; i < 8; i++) {
        DWORD st = (DWORD)ov[i].Internal;
        ck_assert_msg(HasOverlappedIoCompleted(&ov[i]), "op %d still pending after close", i);
        ck_assert_msg(st == ERROR_OPERATION_ABORTED || st == ERROR_SUCCESS ||
                st == PEERDIST_ERROR_MISSING_DATA || st == PEERDIST_ERROR_NO_MORE,
            "op %d: %u", i, st);
    }
    drain_exactly_once(port, ov, 8);
    PeerDistShutdown(h);
    CloseHandle(port);
    api_ci_free(&ci);
    free(data);
}
END_TEST

/* ---- what the library decides alone ---- */

START_TEST(synchronous_argument_errors)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup(), other = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    uint8_t buf[64] = {1};
    OVERLAPPED ov = {0}, off = {.Offset = 1}, offh = {.OffsetHigh = 1};
    PEERDIST_CLIENT_BASIC_INFO bi;

    /* NULL overlapped, NULL buffer with a size, size 0, reserved offsets. */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, NULL, &ov),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 0, buf, &ov),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &off),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &offh),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &off),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &offh),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, buf, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, NULL, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 0, buf, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, buf, 0, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, NULL, 0, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, buf, 0, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, NULL, 0, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c,
                          MaximumPeerDistClientInfoByHandlesClass, sizeof(bi), &bi),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c,
                          (PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS)7, sizeof(bi), &bi),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi) - 1, &bi),
        ERROR_INSUFFICIENT_BUFFER);
    /* Before CompleteContentInformation has succeeded. */
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        PEERDIST_ERROR_NOT_INITIALIZED);
    /* Nothing pending on the handle: nothing to cancel. */
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &ov),
        PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Unknown instance; unknown, foreign and closed content handles. */
    PEERDIST_INSTANCE_HANDLE gone = api_startup();
    PeerDistShutdown(gone);
    PEERDIST_CONTENT_HANDLE foreign = api_open_content(other, &tag, NULL),
                            closed = api_open_content(h, &tag, NULL);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, closed), ERROR_SUCCESS);
    PEERDIST_INSTANCE_HANDLE insts[] = {gone, NULL, h, h, h, h};
    PEERDIST_CONTENT_HANDLE hs[] = {c, c, NULL, foreign, closed, (PEERDIST_CONTENT_HANDLE)port};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        PEERDIST_INSTANCE_HANDLE hi = insts[i];
        PEERDIST_CONTENT_HANDLE hc = hs[i];
        OVERLAPPED z = {0};
        ck_assert_uint_eq(PeerDistClientAddContentInformation(hi, hc, 4, buf, &z),
            ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCompleteContentInformation(hi, hc, &z),
            ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientAddData(hi, hc, 4, buf, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientBlockRead(hi, hc, 4, buf, 0, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientStreamRead(hi, hc, 0, NULL, 0, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(hi, hc, NULL), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(hi, hc, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(
            PeerDistClientGetInformationByHandle(hi, hc, PeerDistClientBasicInfo, sizeof(bi), &bi),
            ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(z.Internal, 0); /* untouched: no completion is coming */
    }
    ck_assert_uint_eq(PeerDistClientCloseContent(h, foreign), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, closed), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(gone, c), ERROR_INVALID_HANDLE);

    /* None of this posted anything. */
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got = NULL;
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 100));
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(other);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

/* Every call on a content handle, with one result expected from each (synchronously). */
static void assert_all_calls_fail(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, DWORD want)
{
    uint8_t buf[8] = {0};
    OVERLAPPED ov = {0};
    PEERDIST_CLIENT_BASIC_INFO bi;
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &ov), want);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov), want);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, buf, &ov), want);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, buf, 0, &ov), want);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, buf, 0, &ov), want);
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, NULL), want);
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi), want);
    ck_assert(ov.Internal != STATUS_PENDING);
}

/* The condition a SIGHUP to "disabled" is waited on: the instance's status says so. */
static bool status_disabled(void *arg)
{
    PEERDIST_STATUS st = PEERDIST_STATUS_AVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(arg, &st), ERROR_SUCCESS);
    return st == PEERDIST_STATUS_DISABLED;
}

START_TEST(synchronous_service_errors)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(2);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, NULL);
    /* Disabled by policy (mode change on SIGHUP). */
    td_set_mode(&td, "disabled");
    td_signal(&td, SIGHUP);
    ck_assert_msg(td_wait_until(status_disabled, h), "still not DISABLED after SIGHUP");
    assert_all_calls_fail(h, c, ERROR_ACCESS_DISABLED_BY_POLICY);
    /* No daemon (GetStatus is the round trip that notices it went away). */
    td_stop(&td);
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
    assert_all_calls_fail(h, c, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    /* Back: the handle from before is invalidated, and still closes. */
    td_set_mode(&td, "local");
    td_start(&td);
    assert_all_calls_fail(h, c, PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
}
END_TEST

START_TEST(one_add_content_information_at_a_time)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(3);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, NULL);
    uint8_t buf[100] = {1, 0};
    OVERLAPPED a = {0}, b = {0};
    td_pause(&td); /* the first one stays pending */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &a),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &b),
        ERROR_INVALID_PARAMETER);
    ck_assert(!HasOverlappedIoCompleted(&a));
    td_resume(&td);
    DWORD n;
    PeerDistGetOverlappedResult(&a, &n, TRUE);
    /* Once it completed, the next one is accepted. */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &b),
        ERROR_IO_PENDING);
    PeerDistGetOverlappedResult(&b, &n, TRUE);
    PeerDistShutdown(h);
}
END_TEST

struct big_add {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    const uint8_t *data;
    DWORD len;
    OVERLAPPED *ov;
    DWORD rc;
};

static void *big_add_thread(void *arg)
{
    struct big_add *b = arg;
    b->rc = PeerDistClientAddData(b->h, b->c, b->len, (PBYTE)b->data, b->ov);
    return NULL;
}

START_TEST(daemon_gone_completes_everything_once)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag(4);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    size_t big = 2 * MiB + 17; /* three requests */
    uint8_t *data = api_make_content(big, 4);
    static uint8_t rb[2][4096];
    OVERLAPPED ov[5] = {{0}};
    td_pause(&td);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 1000, data, &ov[0]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(rb[0]), rb[0], 0, &ov[1]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, sizeof(rb[1]), rb[1], 0, &ov[2]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov[3]), ERROR_IO_PENDING);
    /*
     * A paused daemon reads nothing, so the split AddData blocks in its writes until the kill
     * (its first 1 MiB request outgrows the socket buffer). Killed once its bytes start
     * reaching the socket: td_unread grows past its reading from before.
     */
    struct sent_mark sent = {td_unread(&td)};
    struct big_add ba = {h, c, data, (DWORD)big, &ov[4], 0};
    pthread_t t;
    pthread_create(&t, NULL, big_add_thread, &ba);
    ck_assert_msg(td_wait_until(sent_more, &sent), "the AddData never reached the socket");
    td_kill(&td);
    pthread_join(t, NULL);
    /* Pending (some part went out) and then completed, or failed synchronously: never both. */
    ck_assert(ba.rc == ERROR_IO_PENDING || ba.rc == PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    int n = ba.rc == ERROR_IO_PENDING ? 5 : 4;
    drain_exactly_once(port, ov, n);
    for (int i = 0; i < n; i++)
        ck_assert_uint_eq(ov[i].Internal, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    CloseHandle(port);
    free(data);
}
END_TEST

START_TEST(shutdown_aborts_content_operations)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag(5);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    static uint8_t data[50 * 1024], rb[4096];
    OVERLAPPED ov[3] = {{0}};
    td_pause(&td); /* nothing can complete but by the shutdown */
    ck_assert_uint_eq(PeerDistClientAddData(h, c, sizeof(data), data, &ov[0]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(rb), rb, 0, &ov[1]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov[2]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    drain_exactly_once(port, ov, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(ov[i].Internal, ERROR_OPERATION_ABORTED);
    td_resume(&td);
    CloseHandle(port);
}
END_TEST

static Suite *content_suite(void)
{
    Suite *s = suite_create("content");
    TCase *lib = tcase_create("library");
    tcase_add_checked_fixture(lib, setup, teardown);
    tcase_set_timeout(lib, 60);
    tcase_add_test(lib, synchronous_argument_errors);
    tcase_add_test(lib, synchronous_service_errors);
    tcase_add_test(lib, one_add_content_information_at_a_time);
    tcase_add_test(lib, daemon_gone_completes_everything_once);
    tcase_add_test(lib, shutdown_aborts_content_operations);
    suite_add_tcase(s, lib);

    TCase *handle = tcase_create("handle");
    tcase_add_checked_fixture(handle, setup, teardown);
    tcase_set_timeout(handle, 60);
    tcase_add_test(handle, corrupted_data_rejected);
    tcase_add_test(handle, two_tags_share_data);
    tcase_add_test(handle, ranged_content_information);
    tcase_add_test(handle, state_errors_complete_async);
    tcase_add_test(handle, cancel_one_and_all);
    tcase_add_test(handle, close_with_operations_pending);
    suite_add_tcase(s, handle);
    return s;
}

int main(void)
{
    return check_run(content_suite());
}
