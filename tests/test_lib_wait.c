/* SPDX-License-Identifier: MIT */
/*
 * test_lib_wait.c - waiters that read their own replies (client/README.md, threading model):
 * many threads waiting through events, GetOverlappedResult, ports and a completion routine
 * all get every completion once; operations nobody waits for still complete; a daemon that
 * goes away, a port closed under a waiter and a Shutdown each end the wait. The real daemon.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "harness.h"

/* Flushes per thread in the many-threads test, and its threads per way of waiting. */
#define FLUSHES_PER_THREAD 300
#define THREADS_PER_WAY 2
#define ROUTINE_FLUSHES 200

static struct test_daemon td;

static void setup(void)
{
    unsetenv("PEERDIST_CALL_TIMEOUT_MS");
    td_init(&td, "local");
    td_start(&td);
}

static void teardown(void)
{
    td_cleanup(&td);
}

static bool is_set(void *arg)
{
    return atomic_load((atomic_int *)arg) != 0;
}

static bool ov_done(void *arg)
{
    return HasOverlappedIoCompleted((OVERLAPPED *)arg);
}

/* ---- many threads, every way of waiting, one instance ---- */

enum way { WAY_EVENT, WAY_GET_RESULT, WAY_PEERDIST_RESULT, WAY_PORT, WAY_STATUS, WAY_COUNT };

struct waiter {
    PEERDIST_INSTANCE_HANDLE h;
    enum way way;
    unsigned seed;
    int ok;   /* completions with status 0, byte count 0, the right OVERLAPPED */
    int fail; /* anything else */
};

static void *waiter_thread(void *arg)
{
    struct waiter *w = arg;
    PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(100 + w->seed));
    HANDLE ev = CreateEvent(NULL, FALSE, FALSE, NULL);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    for (int i = 0; i < FLUSHES_PER_THREAD; i++) {
        if (w->way == WAY_STATUS) {
            PEERDIST_STATUS st;
            if (PeerDistGetStatus(w->h, &st) == ERROR_SUCCESS && st == PEERDIST_STATUS_AVAILABLE)
                w->ok++;
            else
                w->fail++;
            continue;
        }
        OVERLAPPED ov = {0};
        ov.hEvent = w->way == WAY_EVENT ? ev : NULL;
        DWORD rc = PeerDistClientFlushContent(w->h, &tag, w->way == WAY_PORT ? port : NULL,
            (ULONG_PTR)w->seed, &ov);
        if (rc != ERROR_IO_PENDING) {
            w->fail++;
            continue;
        }
        DWORD bytes = 1;
        bool good = false;
        switch (w->way) {
        case WAY_EVENT:
            good = WaitForSingleObject(ev, INFINITE) == WAIT_OBJECT_0 &&
                ov.Internal == ERROR_SUCCESS;
            break;
        case WAY_GET_RESULT:
            good = GetOverlappedResult(NULL, &ov, &bytes, TRUE) && bytes == 0;
            break;
        case WAY_PEERDIST_RESULT:
            good = PeerDistGetOverlappedResult(&ov, &bytes, TRUE) && bytes == 0;
            break;
        case WAY_PORT: {
            ULONG_PTR key = 0;
            LPOVERLAPPED got = NULL;
            good = GetQueuedCompletionStatus(port, &bytes, &key, &got, INFINITE) && got == &ov &&
                key == (ULONG_PTR)w->seed && bytes == 0;
            break;
        }
        default: break;
        }
        if (good)
            w->ok++;
        else
            w->fail++;
    }
    CloseHandle(port);
    CloseHandle(ev);
    return NULL;
}

struct routine_count {
    atomic_int ok, fail;
};

static void count_routine(DWORD status, DWORD bytes, ULONG_PTR key, LPOVERLAPPED ov, void *ctx)
{
    struct routine_count *rc = ctx;
    if (status == ERROR_SUCCESS && bytes == 0 && ov && ov->Internal == ERROR_SUCCESS)
        atomic_fetch_add(&rc->ok, 1);
    else
        atomic_fetch_add(&rc->fail, 1);
}

static bool routine_all_ran(void *arg)
{
    struct routine_count *rc = arg;
    return atomic_load(&rc->ok) + atomic_load(&rc->fail) >= ROUTINE_FLUSHES;
}

START_TEST(every_way_of_waiting_from_many_threads)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct waiter w[WAY_COUNT * THREADS_PER_WAY];
    pthread_t t[WAY_COUNT * THREADS_PER_WAY];
    int n = WAY_COUNT * THREADS_PER_WAY;
    /* Meanwhile a completion routine gets flushes nobody waits for on this thread. */
    struct routine_count rcount = {0};
    HANDLE rport = peerdist_port_create_routine(count_routine, &rcount);
    ck_assert_ptr_nonnull(rport);
    for (int i = 0; i < n; i++) {
        w[i] = (struct waiter){.h = h, .way = (enum way)(i % WAY_COUNT), .seed = (unsigned)i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, waiter_thread, &w[i]), 0);
    }
    static OVERLAPPED rov[ROUTINE_FLUSHES];
    PEERDIST_CONTENT_TAG rtag = api_make_tag(99);
    for (int i = 0; i < ROUTINE_FLUSHES; i++)
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &rtag, rport, 0, &rov[i]),
            ERROR_IO_PENDING);
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(w[i].fail == 0 && w[i].ok == FLUSHES_PER_THREAD,
            "thread %d (way %d): %d good, %d bad", i, (int)w[i].way, w[i].ok, w[i].fail);
    }
    ck_assert_msg(td_wait_until(routine_all_ran, &rcount), "the routine ran %d times of %d",
        atomic_load(&rcount.ok) + atomic_load(&rcount.fail), ROUTINE_FLUSHES);
    for (int i = 0; i < ROUTINE_FLUSHES; i++)
        ck_assert(HasOverlappedIoCompleted(&rov[i]));
    CloseHandle(rport);
    ck_assert_int_eq(atomic_load(&rcount.ok), ROUTINE_FLUSHES);
    ck_assert_int_eq(atomic_load(&rcount.fail), 0);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* ---- flushes with and without labels in one burst ---- */

#define LABELLED_LEN (1024 * 1024 + 333)
#define EMPTY_FLUSHES 64

/*
 * A tag with labels and many without, flushed together (several times over): peerdistd
 * answers the empty ones on its loop and the labelled one after its batch. Every flush
 * completes with status 0, and once the labelled tag's flush completed, its labels are gone
 * and its bytes no longer readable.
 */
START_TEST(labelled_and_empty_flushes_in_one_burst)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = api_make_content(LABELLED_LEN, 61);
    api_publish(h, "burst", data, LABELLED_LEN, 1, NULL, 0);
    PEERDIST_CONTENTINFO_HANDLE hci;
    ck_assert_uint_eq(api_open_ci(h, "burst", 0, 0, NULL, &hci), ERROR_SUCCESS);
    struct api_ci ci = {0};
    ci.bytes = api_retrieve_ci(h, hci, 1000, &ci.len);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, hci), ERROR_SUCCESS);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    for (int round = 0; round < 3; round++) {
        PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(70 + round));
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
        DWORD got;
        ck_assert_uint_eq(api_add_data(h, c, 0, data, LABELLED_LEN, &got), ERROR_SUCCESS);
        ck_assert_uint_eq(got, LABELLED_LEN);
        char sql[200], hex[33];
        for (int i = 0; i < 16; i++)
            sprintf(hex + 2 * i, "%02x", tag.Data[i]);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM labels WHERE tag = x'%s'", hex);
        ck_assert_int_gt(td_sql(&td, sql), 0); /* the flush has labels to remove */
        static OVERLAPPED ovs[EMPTY_FLUSHES + 1];
        memset(ovs, 0, sizeof(ovs));
        for (int i = 0; i <= EMPTY_FLUSHES; i++) {
            PEERDIST_CONTENT_TAG t = i == EMPTY_FLUSHES / 2 ? tag : api_make_tag((uint8_t)(i + 1));
            ck_assert_uint_eq(PeerDistClientFlushContent(h, &t, port, (ULONG_PTR)i, &ovs[i]),
                ERROR_IO_PENDING);
        }
        bool labelled_done = false;
        for (int i = 0; i <= EMPTY_FLUSHES; i++) {
            DWORD bytes;
            ULONG_PTR key;
            LPOVERLAPPED ov;
            ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &ov, TD_WAIT_MS));
            ck_assert_ptr_eq(ov, &ovs[key]);
            if (key == EMPTY_FLUSHES / 2)
                labelled_done = true;
        }
        ck_assert(labelled_done);
        ck_assert_int_eq(td_sql(&td, sql), 0);
        uint8_t buf[16];
        api_assert_missing(api_block_read(h, c, 0, sizeof(buf), buf), 0, LABELLED_LEN);
        ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    }
    CloseHandle(port);
    api_ci_free(&ci);
    free(data);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* ---- nobody waits ---- */

/*
 * After waiters have read their own replies, an operation whose caller only polls
 * HasOverlappedIoCompleted still completes: it is sent and read by the library's thread.
 */
START_TEST(operation_nobody_waits_for_completes)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(7);
    for (int round = 0; round < 20; round++) {
        OVERLAPPED ov = {0};
        ov.hEvent = CreateEvent(NULL, TRUE, FALSE, NULL);
        /* A waited-for flush: the waiter reads its reply itself. */
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), ERROR_IO_PENDING);
        ck_assert_uint_eq(WaitForSingleObject(ov.hEvent, INFINITE), WAIT_OBJECT_0);
        CloseHandle(ov.hEvent);
        /* Then one only polled, and one whose port is watched through its fd only. */
        OVERLAPPED polled = {0}, fd_only = {0};
        HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &polled), ERROR_IO_PENDING);
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 5, &fd_only), ERROR_IO_PENDING);
        ck_assert_msg(td_wait_until(ov_done, &polled), "a polled flush never completed");
        ck_assert_msg(td_wait_until(ov_done, &fd_only),
            "a flush to a watched port never completed");
        ck_assert_uint_eq(polled.Internal, ERROR_SUCCESS);
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED got;
        ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
        ck_assert_ptr_eq(got, &fd_only);
        CloseHandle(port);
    }
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* ---- the wait ends when the daemon, the port or the instance goes ---- */

struct blocked {
    PEERDIST_INSTANCE_HANDLE h;
    enum way way;
    HANDLE port;
    OVERLAPPED ov;
    BOOL ok;
    DWORD err; /* GetLastError after the wait, or its WAIT_* result for events */
    LPOVERLAPPED got;
    atomic_int done;
};

static void *blocked_thread(void *arg)
{
    struct blocked *b = arg;
    DWORD bytes = 0;
    ULONG_PTR key = 0;
    SetLastError(0);
    switch (b->way) {
    case WAY_EVENT: b->err = WaitForSingleObject(b->ov.hEvent, INFINITE); break;
    case WAY_GET_RESULT:
        b->ok = GetOverlappedResult(NULL, &b->ov, &bytes, TRUE);
        b->err = b->ok ? 0 : GetLastError();
        break;
    default:
        b->ok = GetQueuedCompletionStatus(b->port, &bytes, &key, &b->got, INFINITE);
        b->err = b->ok ? 0 : GetLastError();
        break;
    }
    atomic_store(&b->done, 1);
    return NULL;
}

/* Starts a flush of a fresh tag and a thread waiting for it the given way. */
static void start_blocked(struct blocked *b, PEERDIST_INSTANCE_HANDLE h, enum way way, pthread_t *t)
{
    memset(b, 0, sizeof(*b));
    b->h = h;
    b->way = way;
    if (way == WAY_EVENT)
        b->ov.hEvent = CreateEvent(NULL, TRUE, FALSE, NULL);
    if (way == WAY_PORT)
        b->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(40 + way));
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, b->port, 1, &b->ov), ERROR_IO_PENDING);
    ck_assert_int_eq(pthread_create(t, NULL, blocked_thread, b), 0);
}

static const enum way blocked_ways[] = {WAY_EVENT, WAY_GET_RESULT, WAY_PORT};
#define NBLOCKED (sizeof(blocked_ways) / sizeof(blocked_ways[0]))

/* Waiters reading their replies when the daemon dies: each gets SERVICE_UNAVAILABLE. */
START_TEST(daemon_gone_ends_every_wait)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    api_flush(h, &(PEERDIST_CONTENT_TAG){{0}}); /* connected, and a waiter has read once */
    td_pause(&td);
    struct blocked b[NBLOCKED];
    pthread_t t[NBLOCKED];
    for (size_t i = 0; i < NBLOCKED; i++)
        start_blocked(&b[i], h, blocked_ways[i], &t[i]);
    usleep(20 * 1000); /* let them block: the assertions hold either way */
    td_kill(&td);
    for (size_t i = 0; i < NBLOCKED; i++) {
        ck_assert_msg(td_wait_until(is_set, &b[i].done), "waiter %zu still blocked", i);
        pthread_join(t[i], NULL);
        ck_assert_uint_eq(b[i].ov.Internal, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
        if (b[i].way == WAY_EVENT) {
            ck_assert_uint_eq(b[i].err, WAIT_OBJECT_0);
            CloseHandle(b[i].ov.hEvent);
        } else {
            ck_assert(!b[i].ok);
            ck_assert_uint_eq(b[i].err, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
        }
        if (b[i].way == WAY_PORT) {
            ck_assert_ptr_eq(b[i].got, &b[i].ov);
            CloseHandle(b[i].port);
        }
    }
    /* The next call reconnects to a new daemon. */
    td_start(&td);
    ck_assert_uint_eq(api_flush(h, &(PEERDIST_CONTENT_TAG){{1}}), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* A port closed while its waiter reads replies: the waiter gets ERROR_ABANDONED_WAIT_0, and
 * the operation still completes (its OVERLAPPED), its packet lost with the port. */
START_TEST(port_closed_under_a_reading_waiter)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    api_flush(h, &(PEERDIST_CONTENT_TAG){{0}});
    td_pause(&td);
    struct blocked b;
    pthread_t t;
    start_blocked(&b, h, WAY_PORT, &t);
    usleep(20 * 1000);
    CloseHandle(b.port);
    ck_assert_msg(td_wait_until(is_set, &b.done), "the waiter did not see its port close");
    pthread_join(t, NULL);
    ck_assert(!b.ok);
    ck_assert_ptr_null(b.got);
    ck_assert_uint_eq(b.err, ERROR_ABANDONED_WAIT_0);
    td_resume(&td);
    DWORD bytes;
    ck_assert(GetOverlappedResult(NULL, &b.ov, &bytes, TRUE));
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* PeerDistShutdown while waiters read: their operations end with ERROR_OPERATION_ABORTED. */
START_TEST(shutdown_ends_reading_waiters)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    api_flush(h, &(PEERDIST_CONTENT_TAG){{0}});
    td_pause(&td);
    struct blocked b[NBLOCKED];
    pthread_t t[NBLOCKED];
    for (size_t i = 0; i < NBLOCKED; i++)
        start_blocked(&b[i], h, blocked_ways[i], &t[i]);
    usleep(20 * 1000);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    for (size_t i = 0; i < NBLOCKED; i++) {
        ck_assert_msg(td_wait_until(is_set, &b[i].done), "waiter %zu still blocked", i);
        pthread_join(t[i], NULL);
        ck_assert_uint_eq(b[i].ov.Internal, ERROR_OPERATION_ABORTED);
        if (b[i].way == WAY_EVENT)
            CloseHandle(b[i].ov.hEvent);
        if (b[i].way == WAY_PORT)
            CloseHandle(b[i].port);
    }
    td_resume(&td);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib_wait");
    TCase *tc = tcase_create("waiters");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, every_way_of_waiting_from_many_threads);
    tcase_add_test(tc, operation_nobody_waits_for_completes);
    tcase_add_test(tc, labelled_and_empty_flushes_in_one_burst);
    tcase_add_test(tc, daemon_gone_ends_every_wait);
    tcase_add_test(tc, port_closed_under_a_reading_waiter);
    tcase_add_test(tc, shutdown_ends_reading_waiters);
    suite_add_tcase(s, tc);
    return check_run(s);
}
