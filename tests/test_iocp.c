/*
 * test_iocp.c - unit tests of the Win32 shim: completion ports (FIFO order,
 * several waiting threads, timeouts, close while waiting, the pollable fd,
 * completion routines), event objects and handle validation.
 */
#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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
    atomic_int abandoned;
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
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&w.abandoned), 4);
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
    ck_assert_uint_eq(WaitForSingleObject(automatic, 0), WAIT_TIMEOUT); /* a wait consumed it */
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

int main(void)
{
    Suite *s = suite_create("iocp");
    TCase *tc = tcase_create("iocp");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, post_dequeue_fifo);
    tcase_add_test(tc, timeout_gives_wait_timeout);
    tcase_add_test(tc, several_threads_share_packets_and_close_wakes_them);
    tcase_add_test(tc, pollable_fd_follows_the_queue);
    tcase_add_test(tc, completion_routine_runs_on_a_library_thread);
    tcase_add_test(tc, events_manual_and_auto_reset);
    tcase_add_test(tc, handles_are_typed_and_never_reused);
    tcase_add_test(tc, overlapped_layout_matches_windows);
    suite_add_tcase(s, tc);
    return check_run(s);
}
