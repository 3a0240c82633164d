/* SPDX-License-Identifier: MIT */
/*
 * test_iocp.c - unit tests of the Win32 shim: completion ports (FIFO order,
 * several waiting threads, timeouts, close while waiting, the pollable fd,
 * completion routines, several packets per call), event objects and waits on
 * several of them, GetOverlappedResult, Sleep, the memory macros and
 * handle validation.
 */
#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>
#include "check_run.h"

static HANDLE new_port(void)
{
    HANDLE p = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST(post_dequeue_fifo)
{
    HANDLE port = new_port();
    OVERLAPPED ov[5];
    for (int i = 0; i < 5; i++)
        ck_assert(PostQueuedCompletionStatus(port, 100 + i, 7 + i, &ov[i]));
    for (int i = 0; i < 5; i++) {
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED got;
        ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
        ck_assert_ptr_eq(got, &ov[i]);
        ck_assert_uint_eq(bytes, 100 + i);
        ck_assert_uint_eq(key, 7 + i);
    }
    ck_assert(CloseHandle(port));
}
END_TEST

START_TEST(timeout_gives_wait_timeout)
{
    HANDLE port = new_port();
    DWORD bytes = 1;
    ULONG_PTR key = 1;
    LPOVERLAPPED got = (LPOVERLAPPED)1;
    SetLastError(0);
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(GetLastError(), WAIT_TIMEOUT);
    double t0 = now_s();
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 50));
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(GetLastError(), WAIT_TIMEOUT);
    ck_assert(now_s() - t0 >= 0.045); /* it did wait (a lower bound, not a timing target) */
    CloseHandle(port);
}
END_TEST

struct waiter_arg {
    HANDLE port;
    atomic_int got;
    atomic_int abandoned; /* woken by the close */
    atomic_int late;      /* called again only after the close: the handle is gone */
};

static void *waiter(void *p)
{
    struct waiter_arg *w = p;
    for (;;) {
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED ov;
        if (GetQueuedCompletionStatus(w->port, &bytes, &key, &ov, INFINITE)) {
            atomic_fetch_add(&w->got, 1);
            continue;
        }
        if (ov == NULL && GetLastError() == ERROR_ABANDONED_WAIT_0)
            atomic_fetch_add(&w->abandoned, 1);
        else if (ov == NULL && GetLastError() == ERROR_INVALID_HANDLE)
            atomic_fetch_add(&w->late, 1);
        return NULL;
    }
}

START_TEST(several_threads_share_packets_and_close_wakes_them)
{
    struct waiter_arg w = {.port = new_port()};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, waiter, &w);
    static OVERLAPPED ov[1000];
    for (int i = 0; i < 1000; i++)
        ck_assert(PostQueuedCompletionStatus(w.port, 0, 0, &ov[i]));
    while (atomic_load(&w.got) < 1000)
        usleep(1000);
    /* Each packet went to exactly one waiter. */
    ck_assert_int_eq(atomic_load(&w.got), 1000);
    ck_assert(CloseHandle(w.port));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL); /* a waiter the close did not wake would hang here */
    /* A thread that took the last packet may come back only after the close. */
    ck_assert_int_eq(atomic_load(&w.abandoned) + atomic_load(&w.late), 4);
    ck_assert_int_ge(atomic_load(&w.abandoned), 1);
    /* The handle is gone. */
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(!GetQueuedCompletionStatus(w.port, &bytes, &key, &got, 0));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    ck_assert(!PostQueuedCompletionStatus(w.port, 0, 0, NULL));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    ck_assert(!CloseHandle(w.port));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
}
END_TEST

/* The fd asked for while packets wait already polls readable for them. */
START_TEST(pollable_fd_asked_for_late_shows_what_is_queued)
{
    HANDLE port = new_port();
    OVERLAPPED a;
    ck_assert(PostQueuedCompletionStatus(port, 1, 1, &a));
    int fd = peerdist_port_fd(port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(peerdist_port_fd(port), fd);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    ck_assert(PostQueuedCompletionStatus(port, 2, 2, &a));
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    CloseHandle(port);
}
END_TEST

START_TEST(pollable_fd_follows_the_queue)
{
    HANDLE port = new_port();
    int fd = peerdist_port_fd(port);
    ck_assert_int_ge(fd, 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    OVERLAPPED a, b;
    PostQueuedCompletionStatus(port, 1, 1, &a);
    PostQueuedCompletionStatus(port, 2, 2, &b);
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
    ck_assert_int_eq(poll(&pfd, 1, 0), 1); /* one still queued */
    ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0));
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    ck_assert_int_eq(peerdist_port_fd((HANDLE)(uintptr_t)0x1234), -1);
    CloseHandle(port);
}
END_TEST

struct routine_ctx {
    pthread_mutex_t mu;
    int calls;
    ULONG_PTR keys_sum;
    pthread_t thread;
};

static void routine(DWORD err, DWORD bytes, ULONG_PTR key, LPOVERLAPPED ov, void *context)
{
    struct routine_ctx *c = context;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    c->keys_sum += key;
    c->thread = pthread_self();
    pthread_mutex_unlock(&c->mu);
}

START_TEST(completion_routine_runs_on_a_library_thread)
{
    struct routine_ctx c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    HANDLE port = peerdist_port_create_routine(routine, &c);
    ck_assert_ptr_nonnull(port);
    for (ULONG_PTR k = 1; k <= 10; k++)
        ck_assert(PostQueuedCompletionStatus(port, 0, k, NULL));
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&c.mu);
        int n = c.calls;
        pthread_mutex_unlock(&c.mu);
        if (n == 10)
            break;
        usleep(1000);
    }
    ck_assert(CloseHandle(port)); /* joins the routine thread */
    ck_assert_int_eq(c.calls, 10);
    ck_assert_uint_eq(c.keys_sum, 55);
    ck_assert(!pthread_equal(c.thread, pthread_self()));
}
END_TEST

START_TEST(events_manual_and_auto_reset)
{
    HANDLE manual = CreateEvent(NULL, TRUE, FALSE, NULL);
    HANDLE automatic = CreateEventA(NULL, FALSE, TRUE, NULL);
    ck_assert_ptr_nonnull(manual);
    ck_assert_ptr_nonnull(automatic);
    ck_assert_uint_eq(WaitForSingleObject(manual, 0), WAIT_TIMEOUT);
    ck_assert(SetEvent(manual));
    ck_assert_uint_eq(WaitForSingleObject(manual, 0), WAIT_OBJECT_0);
    ck_assert_uint_eq(WaitForSingleObject(manual, 0), WAIT_OBJECT_0); /* stays set */
    ck_assert(ResetEvent(manual));
    ck_assert_uint_eq(WaitForSingleObject(manual, 10), WAIT_TIMEOUT);
    ck_assert_uint_eq(WaitForSingleObject(automatic, 0), WAIT_OBJECT_0); /* initially set */
    ck_assert_uint_eq(WaitForSingleObject(automatic, 0), WAIT_TIMEOUT);  /* a wait consumed it */
    ck_assert_ptr_null(CreateEventA(NULL, TRUE, FALSE, "named"));
    ck_assert_uint_eq(GetLastError(), ERROR_NOT_SUPPORTED);
    ck_assert(CloseHandle(manual));
    ck_assert(CloseHandle(automatic));
    ck_assert_uint_eq(WaitForSingleObject(manual, 0), WAIT_FAILED);
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
}
END_TEST

START_TEST(handles_are_typed_and_never_reused)
{
    HANDLE port = new_port();
    HANDLE ev = CreateEvent(NULL, FALSE, FALSE, NULL);
    ck_assert(!SetEvent(port)); /* a port is not an event */
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    ck_assert(!PostQueuedCompletionStatus(ev, 0, 0, NULL));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    CloseHandle(ev);
    HANDLE ev2 = CreateEvent(NULL, FALSE, FALSE, NULL);
    ck_assert_ptr_ne(ev, ev2); /* same slot, new serial: the stale value stays dead */
    ck_assert(!SetEvent(ev));
    ck_assert(CloseHandle(ev2));
    ck_assert(!CloseHandle(NULL));
    ck_assert(!CloseHandle(INVALID_HANDLE_VALUE));
    ck_assert_ptr_null(CreateIoCompletionPort((HANDLE)(uintptr_t)3, NULL, 0, 0));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    CloseHandle(port);
}
END_TEST

START_TEST(overlapped_layout_matches_windows)
{
    /* x64 layout: Internal 0, InternalHigh 8, Offset 16, OffsetHigh 20, Pointer 16, hEvent 24. */
    ck_assert_uint_eq(sizeof(OVERLAPPED), 32);
    ck_assert_uint_eq(offsetof(OVERLAPPED, InternalHigh), 8);
    ck_assert_uint_eq(offsetof(OVERLAPPED, Offset), 16);
    ck_assert_uint_eq(offsetof(OVERLAPPED, OffsetHigh), 20);
    ck_assert_uint_eq(offsetof(OVERLAPPED, Pointer), 16);
    ck_assert_uint_eq(offsetof(OVERLAPPED, hEvent), 24);
    ck_assert_uint_eq(sizeof(PEERDIST_CONTENT_TAG), 16);
    ck_assert_uint_eq(sizeof(PEERDIST_PUBLICATION_OPTIONS), 8);
    ck_assert_uint_eq(sizeof(PEERDIST_RETRIEVAL_OPTIONS), 16);
    ck_assert_uint_eq(sizeof(PEERDIST_STATUS_INFO), 16);
    ck_assert_uint_eq(sizeof(PEERDIST_CLIENT_BASIC_INFO), 4);
    ck_assert_uint_eq(sizeof(DWORD), 4);
    ck_assert_uint_eq(sizeof(ULONG), 4);
    ck_assert_uint_eq(PEERDIST_VERSION, 2);
    OVERLAPPED ov = {.Internal = STATUS_PENDING};
    ck_assert(!HasOverlappedIoCompleted(&ov));
    ov.Internal = 0;
    ck_assert(HasOverlappedIoCompleted(&ov));
}
END_TEST

START_TEST(dequeue_several_packets_at_once)
{
    HANDLE port = new_port();
    OVERLAPPED ov[5];
    for (int i = 0; i < 5; i++)
        ck_assert(PostQueuedCompletionStatus(port, 100 + i, 7 + i, &ov[i]));
    OVERLAPPED_ENTRY e[8];
    ULONG n = 99;
    ck_assert(GetQueuedCompletionStatusEx(port, e, 3, &n, 0, FALSE)); /* no more than asked */
    ck_assert_uint_eq(n, 3);
    ck_assert(GetQueuedCompletionStatusEx(port, e + 3, 5, &n, INFINITE, TRUE)); /* what is there */
    ck_assert_uint_eq(n, 2);
    for (int i = 0; i < 5; i++) {
        ck_assert_ptr_eq(e[i].lpOverlapped, &ov[i]); /* FIFO across calls */
        ck_assert_uint_eq(e[i].dwNumberOfBytesTransferred, 100 + i);
        ck_assert_uint_eq(e[i].lpCompletionKey, 7 + i);
        ck_assert_uint_eq(e[i].Internal, 0);
    }
    int fd = peerdist_port_fd(port);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 0); /* drained */
    SetLastError(0);
    double t0 = now_s();
    ck_assert(!GetQueuedCompletionStatusEx(port, e, 8, &n, 50, FALSE));
    ck_assert_uint_eq(GetLastError(), WAIT_TIMEOUT);
    ck_assert_uint_eq(n, 0);
    ck_assert(now_s() - t0 >= 0.045);
    ck_assert(!GetQueuedCompletionStatusEx(port, e, 0, &n, 0, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    ck_assert(!GetQueuedCompletionStatusEx(port, NULL, 1, &n, 0, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    ck_assert(!GetQueuedCompletionStatusEx(port, e, 1, NULL, 0, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    HANDLE ev = CreateEvent(NULL, FALSE, FALSE, NULL);
    ck_assert(!GetQueuedCompletionStatusEx(ev, e, 1, &n, 0, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    CloseHandle(ev);
    CloseHandle(port);
}
END_TEST

struct ex_waiter {
    HANDLE port;
    BOOL ok;
    DWORD err;
    ULONG n;
};

static void *ex_wait(void *arg)
{
    struct ex_waiter *w = arg;
    OVERLAPPED_ENTRY e[4];
    w->ok = GetQueuedCompletionStatusEx(w->port, e, 4, &w->n, INFINITE, FALSE);
    w->err = GetLastError();
    return NULL;
}

START_TEST(dequeue_several_wakes_on_post_and_on_close)
{
    /* A waiter that a post or a close did not wake would hang in pthread_join. */
    struct ex_waiter w = {.port = new_port()};
    pthread_t t;
    pthread_create(&t, NULL, ex_wait, &w);
    usleep(20000);
    OVERLAPPED ov;
    ck_assert(PostQueuedCompletionStatus(w.port, 1, 2, &ov));
    pthread_join(t, NULL);
    ck_assert(w.ok);
    ck_assert_uint_eq(w.n, 1);
    /* Closed while it waits: ERROR_ABANDONED_WAIT_0 (ERROR_INVALID_HANDLE if it came late). */
    bool abandoned = false;
    for (int attempt = 0; attempt < 20 && !abandoned; attempt++) {
        w = (struct ex_waiter){.port = new_port(), .n = 99};
        pthread_create(&t, NULL, ex_wait, &w);
        usleep(10000);
        ck_assert(CloseHandle(w.port));
        pthread_join(t, NULL);
        ck_assert(!w.ok);
        ck_assert_uint_eq(w.n, 0);
        ck_assert(w.err == ERROR_ABANDONED_WAIT_0 || w.err == ERROR_INVALID_HANDLE);
        abandoned = w.err == ERROR_ABANDONED_WAIT_0;
    }
    ck_assert(abandoned);
}
END_TEST

START_TEST(wait_for_any_takes_the_lowest_signalled)
{
    HANDLE ev[3];
    for (int i = 0; i < 3; i++)
        ev[i] = CreateEvent(NULL, i == 2, FALSE, NULL); /* 0, 1 auto-reset; 2 manual */
    ck_assert_uint_eq(WaitForMultipleObjects(3, ev, FALSE, 0), WAIT_TIMEOUT);
    SetEvent(ev[1]);
    SetEvent(ev[2]);
    ck_assert_uint_eq(WaitForMultipleObjects(3, ev, FALSE, 0), WAIT_OBJECT_0 + 1);
    /* ev[1] was auto-reset and taken; ev[2] is manual and stays set. */
    ck_assert_uint_eq(WaitForMultipleObjects(3, ev, FALSE, 0), WAIT_OBJECT_0 + 2);
    ck_assert_uint_eq(WaitForMultipleObjects(3, ev, FALSE, 0), WAIT_OBJECT_0 + 2);
    ck_assert_uint_eq(WaitForSingleObject(ev[1], 0), WAIT_TIMEOUT);
    /* The same handle twice is allowed when waiting for any. */
    HANDLE twice[2] = {ev[2], ev[2]};
    ck_assert_uint_eq(WaitForMultipleObjects(2, twice, FALSE, 0), WAIT_OBJECT_0);
    double t0 = now_s();
    ck_assert_uint_eq(WaitForMultipleObjects(2, ev, FALSE, 50), WAIT_TIMEOUT);
    ck_assert(now_s() - t0 >= 0.045);
    for (int i = 0; i < 3; i++)
        CloseHandle(ev[i]);
}
END_TEST

START_TEST(wait_for_all_takes_all_at_once)
{
    HANDLE ev[2] = {CreateEvent(NULL, FALSE, FALSE, NULL), CreateEvent(NULL, TRUE, FALSE, NULL)};
    SetEvent(ev[0]);
    ck_assert_uint_eq(WaitForMultipleObjects(2, ev, TRUE, 0), WAIT_TIMEOUT);
    /* A wait for all that fails takes nothing: ev[0] is still set. */
    ck_assert_uint_eq(WaitForMultipleObjects(1, ev, TRUE, 0), WAIT_OBJECT_0);
    SetEvent(ev[0]);
    SetEvent(ev[1]);
    ck_assert_uint_eq(WaitForMultipleObjects(2, ev, TRUE, 0), WAIT_OBJECT_0);
    ck_assert_uint_eq(WaitForSingleObject(ev[0], 0), WAIT_TIMEOUT);  /* auto-reset: taken */
    ck_assert_uint_eq(WaitForSingleObject(ev[1], 0), WAIT_OBJECT_0); /* manual: still set */
    CloseHandle(ev[0]);
    CloseHandle(ev[1]);
}
END_TEST

struct multi_waiter {
    HANDLE *ev;
    DWORD n;
    BOOL all;
    atomic_uint rc;
};

static void *multi_wait(void *arg)
{
    struct multi_waiter *w = arg;
    /* INFINITE: a SetEvent that wakes nobody hangs the test instead of passing on a re-check. */
    atomic_store(&w->rc, WaitForMultipleObjects(w->n, w->ev, w->all, INFINITE));
    return NULL;
}

START_TEST(waits_wake_when_another_thread_sets)
{
    HANDLE ev[3];
    for (int i = 0; i < 3; i++)
        ev[i] = CreateEvent(NULL, FALSE, FALSE, NULL);
    struct multi_waiter all = {ev, 3, TRUE, 12345}, any = {ev + 1, 2, FALSE, 12345};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, multi_wait, &all);
    SetEvent(ev[0]);
    SetEvent(ev[1]);
    usleep(30000);
    ck_assert_uint_eq(atomic_load(&all.rc), 12345); /* one of three is still unset */
    SetEvent(ev[2]);
    pthread_join(ta, NULL);
    ck_assert_uint_eq(atomic_load(&all.rc), WAIT_OBJECT_0);
    pthread_create(&tb, NULL, multi_wait, &any);
    usleep(30000);
    ck_assert_uint_eq(atomic_load(&any.rc), 12345);
    SetEvent(ev[2]);
    pthread_join(tb, NULL);
    ck_assert_uint_eq(atomic_load(&any.rc), WAIT_OBJECT_0 + 1);
    for (int i = 0; i < 3; i++)
        CloseHandle(ev[i]);
}
END_TEST

START_TEST(wait_for_multiple_rejects_what_windows_rejects)
{
    HANDLE ev = CreateEvent(NULL, TRUE, TRUE, NULL);
    HANDLE port = new_port();
    HANDLE many[MAXIMUM_WAIT_OBJECTS + 1];
    for (int i = 0; i <= MAXIMUM_WAIT_OBJECTS; i++)
        many[i] = ev;
    ck_assert_uint_eq(WaitForMultipleObjects(MAXIMUM_WAIT_OBJECTS, many, FALSE, 0), WAIT_OBJECT_0);
    SetLastError(0);
    ck_assert_uint_eq(WaitForMultipleObjects(MAXIMUM_WAIT_OBJECTS + 1, many, FALSE, 0),
        WAIT_FAILED);
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(WaitForMultipleObjects(0, many, FALSE, 0), WAIT_FAILED);
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(WaitForMultipleObjects(2, many, TRUE, 0), WAIT_FAILED); /* twice, for all */
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
    HANDLE mixed[2] = {ev, port}; /* events only */
    ck_assert_uint_eq(WaitForMultipleObjects(2, mixed, FALSE, 0), WAIT_FAILED);
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
    CloseHandle(port);
    CloseHandle(ev);
    ck_assert_uint_eq(WaitForMultipleObjects(1, &ev, FALSE, 0), WAIT_FAILED);
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_HANDLE);
}
END_TEST

START_TEST(get_overlapped_result_reads_the_overlapped)
{
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));
    DWORD bytes = 7;
    ov.Internal = STATUS_PENDING;
    SetLastError(0);
    /* The file handle is ignored: a PeerDist operation belongs to no file. */
    ck_assert(!GetOverlappedResult((HANDLE)(uintptr_t)0x1234, &ov, &bytes, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_IO_INCOMPLETE);
    ov.Internal = ERROR_SUCCESS;
    ov.InternalHigh = 4096;
    ck_assert(GetOverlappedResult(NULL, &ov, &bytes, TRUE));
    ck_assert_uint_eq(bytes, 4096);
    ov.Internal = PEERDIST_ERROR_MISSING_DATA;
    ov.InternalHigh = 100;
    ck_assert(!GetOverlappedResult(INVALID_HANDLE_VALUE, &ov, &bytes, TRUE));
    ck_assert_uint_eq(GetLastError(), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(bytes, 100); /* the missing length travels on a failure too */
    ck_assert(!GetOverlappedResult(NULL, NULL, &bytes, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_INVALID_PARAMETER);
}
END_TEST

START_TEST(sleep_sleeps)
{
    double t0 = now_s();
    Sleep(50);
    ck_assert(now_s() - t0 >= 0.045);
    Sleep(0); /* yields, returns */
}
END_TEST

START_TEST(memory_macros_and_large_integers)
{
    BYTE a[16], b[16];
    FillMemory(a, sizeof(a), 0x5A);
    ZeroMemory(a + 4, 4);
    CopyMemory(b, a, sizeof(b));
    for (SIZE_T i = 0; i < sizeof(b); i++)
        ck_assert_uint_eq(b[i], i >= 4 && i < 8 ? 0 : 0x5A);
    LARGE_INTEGER li;
    li.QuadPart = -2;
    ck_assert_uint_eq(li.LowPart, 0xFFFFFFFE);
    ck_assert_int_eq(li.HighPart, -1);
    ck_assert_int_eq(li.u.HighPart, -1);
    ULARGE_INTEGER ul;
    ul.LowPart = 1;
    ul.HighPart = 2;
    ck_assert_uint_eq(ul.QuadPart, 0x200000001ULL);
    ck_assert_uint_eq(ul.u.LowPart, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("iocp");
    TCase *tc = tcase_create("iocp");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, post_dequeue_fifo);
    tcase_add_test(tc, timeout_gives_wait_timeout);
    tcase_add_test(tc, several_threads_share_packets_and_close_wakes_them);
    tcase_add_test(tc, pollable_fd_follows_the_queue);
    tcase_add_test(tc, pollable_fd_asked_for_late_shows_what_is_queued);
    tcase_add_test(tc, completion_routine_runs_on_a_library_thread);
    tcase_add_test(tc, events_manual_and_auto_reset);
    tcase_add_test(tc, handles_are_typed_and_never_reused);
    tcase_add_test(tc, overlapped_layout_matches_windows);
    tcase_add_test(tc, dequeue_several_packets_at_once);
    tcase_add_test(tc, dequeue_several_wakes_on_post_and_on_close);
    tcase_add_test(tc, wait_for_any_takes_the_lowest_signalled);
    tcase_add_test(tc, wait_for_all_takes_all_at_once);
    tcase_add_test(tc, waits_wake_when_another_thread_sets);
    tcase_add_test(tc, wait_for_multiple_rejects_what_windows_rejects);
    tcase_add_test(tc, get_overlapped_result_reads_the_overlapped);
    tcase_add_test(tc, sleep_sleeps);
    tcase_add_test(tc, memory_macros_and_large_integers);
    suite_add_tcase(s, tc);
    return check_run(s);
}
