/* SPDX-License-Identifier: MIT */
/*
 * test_lib_handles.c - the library's handles and OVERLAPPEDs under concurrency and fork():
 * no content handle outlives PeerDistShutdown (nor is accepted by a later instance), a
 * completion's fields are read whole by a thread polling for it, and a child process
 * inherits an instance it cannot use while the parent's goes on untouched.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "harness.h"

#if defined(__SANITIZE_THREAD__)
#define PD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PD_TSAN 1
#endif
#endif

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

/* ---- OpenContent racing Shutdown ---- */

#define OPENERS 4
#define ROUNDS 150
#define MAX_OPENED 512

struct opener {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_TAG tag;
    PEERDIST_CONTENT_HANDLE opened[MAX_OPENED];
    atomic_int nopened;
    DWORD last_rc;
    int accepted_later; /* stale handles a later instance of this thread accepted */
};

static void *opener_thread(void *arg)
{
    struct opener *o = arg;
    int n = 0;
    for (;;) {
        PEERDIST_CONTENT_HANDLE c;
        o->last_rc = PeerDistClientOpenContent(o->h, &o->tag, NULL, 0, &c);
        if (o->last_rc != ERROR_SUCCESS)
            break;
        if (n < MAX_OPENED) {
            o->opened[n++] = c;
            atomic_store(&o->nopened, n);
        }
    }
    /*
     * If this thread dropped the last reference to the shut-down instance, the next
     * instance it starts likely sits at the same address: a stale handle must still fail.
     */
    PEERDIST_INSTANCE_HANDLE h2;
    if (PeerDistStartup(PEERDIST_VERSION, &h2, NULL) == ERROR_SUCCESS) {
        for (int i = 0; i < n; i++)
            o->accepted_later += PeerDistClientCloseContent(h2, o->opened[i]) !=
                ERROR_INVALID_HANDLE;
        PeerDistShutdown(h2);
    }
    return NULL;
}

static bool some_opened(void *arg)
{
    struct opener *o = arg;
    int total = 0;
    for (int i = 0; i < OPENERS; i++)
        total += atomic_load(&o[i].nopened);
    return total >= 2 * OPENERS;
}

START_TEST(no_handle_outlives_shutdown)
{
    static struct opener o[OPENERS];
    int accepted = 0, after_shutdown = 0;
    for (int round = 0; round < ROUNDS; round++) {
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        pthread_t t[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
            memset(&o[i], 0, sizeof(o[i]));
            o[i].h = h;
            o[i].tag = api_make_tag((uint8_t)i);
            ck_assert_int_eq(pthread_create(&t[i], NULL, opener_thread, &o[i]), 0);
        }
        ck_assert(td_wait_until(some_opened, o));
        ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
        for (int i = 0; i < OPENERS; i++)
            pthread_join(t[i], NULL);
        /* The freed instance's memory most likely serves this thread's next one. */
        PEERDIST_INSTANCE_HANDLE h2 = api_startup();
        for (int i = 0; i < OPENERS; i++) {
            ck_assert(o[i].last_rc == ERROR_INVALID_HANDLE ||
                o[i].last_rc == PEERDIST_ERROR_SERVICE_UNAVAILABLE ||
                o[i].last_rc == ERROR_OPERATION_ABORTED);
            accepted += o[i].accepted_later;
            int n = atomic_load(&o[i].nopened);
            for (int k = 0; k < n; k++) {
                PEERDIST_CONTENT_HANDLE c = o[i].opened[k];
                after_shutdown += PeerDistClientCloseContent(h, c) != ERROR_INVALID_HANDLE;
                accepted += PeerDistClientCloseContent(h2, c) != ERROR_INVALID_HANDLE;
            }
        }
        ck_assert_uint_eq(PeerDistShutdown(h2), ERROR_SUCCESS);
    }
    ck_assert_int_eq(after_shutdown, 0);
    ck_assert_msg(accepted == 0, "%d handles from shut-down instances were accepted later",
        accepted);
}
END_TEST

/* ---- reading a completion while it lands ---- */

#define POLLED_OPS 300

/*
 * The caller's thread polls while the library's thread completes: each way of asking
 * sees the completion whole (its byte count), never a pending status with stale fields.
 * A data race here is what ThreadSanitizer (make test-tsan) reports.
 */
START_TEST(polling_an_overlapped_sees_the_whole_completion)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 6, (PBYTE) "polled", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    uint8_t *data = api_make_content(POLLED_OPS + 1000, 12);
    for (int i = 0; i < POLLED_OPS; i++) {
        OVERLAPPED ov = {0};
        DWORD want = 1 + (DWORD)i, bytes = 0;
        ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, want, data, &ov),
            ERROR_IO_PENDING);
        switch (i % 3) {
        case 0:
            while (!PeerDistGetOverlappedResult(&ov, &bytes, FALSE))
                ck_assert_uint_eq(GetLastError(), ERROR_IO_INCOMPLETE);
            break;
        case 1:
            while (!GetOverlappedResult(NULL, &ov, &bytes, FALSE))
                ck_assert_uint_eq(GetLastError(), ERROR_IO_INCOMPLETE);
            break;
        default: /* as a Windows program polls: the macro, then the field itself */
            while (!HasOverlappedIoCompleted(&ov))
                ;
            ck_assert_uint_eq((DWORD)ov.Internal, ERROR_SUCCESS);
            bytes = (DWORD)ov.InternalHigh;
        }
        ck_assert_uint_eq(bytes, want);
    }
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(api_wait_pending(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    free(data);
}
END_TEST

/* ---- fork() after Startup ---- */

#define FORK_PENDING 5

/* What the child checks; its exit code names the first check that failed. */
static int child_after_fork(PEERDIST_INSTANCE_HANDLE h, HANDLE port, HANDLE ev,
    PEERDIST_CONTENT_HANDLE c)
{
    PEERDIST_STATUS st;
    PEERDIST_CONTENT_TAG tag = api_make_tag(13);
    OVERLAPPED ov = {0};
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    PEERDIST_CONTENT_HANDLE c2;
    /* The inherited instance, its handles, port and event: unknown here. */
    if (PeerDistGetStatus(h, &st) != ERROR_INVALID_HANDLE)
        return 10;
    if (PeerDistClientFlushContent(h, &tag, NULL, 0, &ov) != ERROR_INVALID_HANDLE)
        return 11;
    if (PeerDistClientOpenContent(h, &tag, NULL, 0, &c2) != ERROR_INVALID_HANDLE)
        return 12;
    uint8_t buf[16];
    if (PeerDistClientBlockRead(h, c, sizeof(buf), buf, 0, &ov) != ERROR_INVALID_HANDLE)
        return 13;
    if (GetQueuedCompletionStatus(port, &bytes, &key, &got, 0) ||
        GetLastError() != ERROR_INVALID_HANDLE)
        return 14;
    if (WaitForSingleObject(ev, 0) != WAIT_FAILED || GetLastError() != ERROR_INVALID_HANDLE)
        return 15;
    if (PeerDistUnregisterForStatusChangeNotification(h) != ERROR_INVALID_HANDLE)
        return 16;
    /* Its Shutdown and closes touch nothing: they are not the child's to close. */
    if (PeerDistClientCloseContent(h, c) != ERROR_INVALID_HANDLE)
        return 17;
    if (PeerDistShutdown(h) != ERROR_INVALID_HANDLE)
        return 18;
    if (CloseHandle(port) || CloseHandle(ev))
        return 19;
    /* A fresh start works, with handle values of its own. */
    PEERDIST_INSTANCE_HANDLE h2;
    if (PeerDistStartup(PEERDIST_VERSION, &h2, NULL) != ERROR_SUCCESS || h2 == h)
        return 20;
    HANDLE port2 = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (!port2 || port2 == port)
        return 21;
    /* The parent resumes the daemon after the fork: wait until it answers. */
    for (int i = 0; i < TD_WAIT_MS &&
         (PeerDistGetStatus(h2, &st) != ERROR_SUCCESS || st != PEERDIST_STATUS_AVAILABLE);
         i += 10)
        Sleep(10);
    if (st != PEERDIST_STATUS_AVAILABLE)
        return 22;
    memset(&ov, 0, sizeof(ov));
    if (PeerDistClientFlushContent(h2, &tag, port2, 7, &ov) != ERROR_IO_PENDING)
        return 23;
    if (!GetQueuedCompletionStatus(port2, &bytes, &key, &got, TD_WAIT_MS) || got != &ov || key != 7)
        return 24;
    if (PeerDistShutdown(h2) != ERROR_SUCCESS || !CloseHandle(port2))
        return 25;
    return 0;
}

START_TEST(fork_child_cannot_use_the_parents_instance)
{
#ifdef PD_TSAN
    /* ThreadSanitizer cannot start threads in the child of a multi-threaded fork. */
    fprintf(stderr, "fork_child_cannot_use_the_parents_instance: skipped under TSan\n");
    return;
#endif
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    HANDLE ev = CreateEvent(NULL, TRUE, FALSE, NULL);
    PEERDIST_CONTENT_TAG tag = api_make_tag(13);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    /* A registration keeps the library's thread reading the socket across the fork. */
    PEERDIST_STATUS st;
    OVERLAPPED rov = {0};
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 900, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert(GetQueuedCompletionStatus(port, &bytes, &key, &got, TD_WAIT_MS));
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 900, &rov, &st),
        ERROR_IO_PENDING);
    /* And operations in flight at the fork, answered once the daemon continues. */
    td_pause(&td);
    static OVERLAPPED ov[FORK_PENDING];
    memset(ov, 0, sizeof(ov));
    for (int i = 0; i < FORK_PENDING; i++)
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov[i]), ERROR_IO_PENDING);
    /*
     * The child allocates (it calls the library), so the library's thread must not be inside
     * malloc or free at the fork: ASan's allocator takes no lock around fork(), and a child
     * that inherited one of its locks held hung at its first allocation of that size. About
     * one fork in four here found that thread running (reading what the daemon had sent, or
     * waking for a request). It reads the socket across the fork all the same: asleep in poll,
     * where nothing wakes it now, the daemon paused.
     */
    ck_assert_msg(td_wait_until(td_others_sleep_in_poll, NULL),
        "the library's thread did not settle in poll");

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(child_after_fork(h, port, ev, c));
    td_resume(&td);

    /* The parent's operations complete, each once, successfully. */
    int seen[FORK_PENDING] = {0};
    for (int i = 0; i < FORK_PENDING; i++) {
        BOOL ok = GetQueuedCompletionStatus(port, &bytes, &key, &got, TD_WAIT_MS);
        ck_assert_msg(got != NULL, "only %d of the parent's completions came", i);
        ck_assert_msg(ok, "a parent's flush failed with %u", (unsigned)GetLastError());
        ck_assert(got >= ov && got < ov + FORK_PENDING);
        seen[got - ov]++;
    }
    for (int i = 0; i < FORK_PENDING; i++)
        ck_assert_int_eq(seen[i], 1);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < TD_WAIT_MS && (w = waitpid(pid, &status, WNOHANG)) == 0; i++)
        usleep(1000);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("the child hung");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the child failed its check %d (status %#x)", WEXITSTATUS(status), status);

    /* The parent is unaffected: same connection (its handle is not INVALIDATED), same
     * registration, same port and event. */
    uint8_t buf[16];
    OVERLAPPED bov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientBlockRead(h, c, sizeof(buf), buf, 0, &bov), &bov, NULL),
        PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, TD_WAIT_MS)); /* its packet */
    ck_assert_ptr_eq(got, &bov);
    ck_assert_uint_eq(GetLastError(), PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(PeerDistUnregisterForStatusChangeNotification(h), ERROR_SUCCESS);
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, TD_WAIT_MS));
    ck_assert_ptr_eq(got, &rov);
    ck_assert_uint_eq(GetLastError(), ERROR_OPERATION_ABORTED);
    ck_assert(SetEvent(ev));
    ck_assert_uint_eq(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    ck_assert(CloseHandle(port));
    ck_assert(CloseHandle(ev));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib_handles");
    TCase *tc = tcase_create("lib_handles");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, no_handle_outlives_shutdown);
    tcase_add_test(tc, polling_an_overlapped_sees_the_whole_completion);
    tcase_add_test(tc, fork_child_cannot_use_the_parents_instance);
    suite_add_tcase(s, tc);
    return check_run(s);
}
