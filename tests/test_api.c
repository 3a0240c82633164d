/* SPDX-License-Identifier: MIT */
/*
 * test_api.c - integration tests: the real peerdistd on a temporary socket
 * and database, driven only through the public <peerdist.h> API (raw sockets
 * only where a hostile client is the point). Covers every synchronous error
 * of PeerDistClientFlushContent, completions through ports, events and
 * routines, concurrency, policy, and the daemon going away and coming back.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "frame.h"
#include "harness.h"
#include "check_run.h"

static struct test_daemon td;

static void setup_local(void)
{
    td_init(&td, "local");
    td_start(&td);
}

static void teardown(void)
{
    td_cleanup(&td);
}

static PEERDIST_INSTANCE_HANDLE startup(void)
{
    PEERDIST_INSTANCE_HANDLE h = NULL;
    DWORD ver = 0;
    ck_assert_uint_eq(PeerDistStartup(PEERDIST_VERSION, &h, &ver), ERROR_SUCCESS);
    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(ver, PEERDIST_VERSION);
    return h;
}

static PEERDIST_CONTENT_TAG make_tag(uint8_t seed)
{
    PEERDIST_CONTENT_TAG t;
    for (int i = 0; i < 16; i++)
        t.Data[i] = (uint8_t)(seed * 17 + i);
    return t;
}

/* Dequeues one packet; returns the GQCS result and fills the outputs. */
static BOOL dequeue(HANDLE port, DWORD ms, DWORD *bytes, ULONG_PTR *key, LPOVERLAPPED *ov,
    DWORD *err)
{
    SetLastError(0);
    BOOL ok = GetQueuedCompletionStatus(port, bytes, key, ov, ms);
    *err = ok ? 0 : GetLastError();
    return ok;
}

static void assert_port_empty(HANDLE port)
{
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    ck_assert(!dequeue(port, 100, &bytes, &key, &ov, &err));
    ck_assert_ptr_null(ov);
    ck_assert_uint_eq(err, WAIT_TIMEOUT);
}

static void insert_labels(uid_t uid, const PEERDIST_CONTENT_TAG *tag, int n)
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", tag->Data[i]);
    for (int b = 0; b < n; b++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
            "INSERT INTO labels (uid, tag, segment_id, block) VALUES (%u, x'%s', x'0102', %d)",
            (unsigned)uid, hex, b);
        td_sql(&td, sql);
    }
}

static long long count_labels(uid_t uid, const PEERDIST_CONTENT_TAG *tag)
{
    char hex[33], sql[200];
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", tag->Data[i]);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM labels WHERE uid = %u AND tag = x'%s'",
        (unsigned)uid, hex);
    return td_sql(&td, sql);
}

/* ---- session ---- */

START_TEST(startup_negotiates_versions)
{
    PEERDIST_INSTANCE_HANDLE h;
    DWORD ver = 0;
    ck_assert_uint_eq(PeerDistStartup(MAKEWORD(1, 0), &h, &ver), ERROR_SUCCESS);
    ck_assert_uint_eq(ver, 2);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistStartup(MAKEWORD(2, 1), &h, &ver),
        PEERDIST_ERROR_VERSION_UNSUPPORTED);
    ck_assert_uint_eq(PeerDistStartup(MAKEWORD(3, 0), &h, NULL),
        PEERDIST_ERROR_VERSION_UNSUPPORTED);
    ck_assert_uint_eq(PeerDistStartup(PEERDIST_VERSION, NULL, NULL), ERROR_INVALID_PARAMETER);
    h = startup();
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistShutdown(NULL), ERROR_INVALID_HANDLE);
}
END_TEST

START_TEST(status_reports_available)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_STATUS st = PEERDIST_STATUS_DISABLED;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(PeerDistGetStatus(h, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistGetStatus((HANDLE)(uintptr_t)0x40, &st), ERROR_INVALID_HANDLE);
    PEERDIST_STATUS_INFO info = {.cbSize = sizeof(info)};
    ck_assert_uint_eq(PeerDistGetStatusEx(h, &info), ERROR_SUCCESS);
    ck_assert_int_eq(info.status, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(info.dwMinVer, 1);
    ck_assert_uint_eq(info.dwMaxVer, 2);
    info.cbSize = 8;
    ck_assert_uint_eq(PeerDistGetStatusEx(h, &info), ERROR_INVALID_PARAMETER);
    PeerDistShutdown(h);
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_INVALID_HANDLE);
}
END_TEST

/* ---- flush ---- */

START_TEST(flush_synchronous_errors_never_complete)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(1);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, NULL, port, 1, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, NULL), ERROR_INVALID_PARAMETER);
    ov.Offset = 1;
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov), ERROR_INVALID_PARAMETER);
    ov.Offset = 0;
    ov.OffsetHigh = 1;
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov), ERROR_INVALID_PARAMETER);
    ov.OffsetHigh = 0;
    ck_assert_uint_eq(PeerDistClientFlushContent((HANDLE)(uintptr_t)0x44, &tag, port, 1, &ov),
        ERROR_INVALID_HANDLE);
    HANDLE ev = CreateEvent(NULL, TRUE, FALSE, NULL);
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, ev, 1, &ov), ERROR_INVALID_PARAMETER);
    CloseHandle(ev);
    PeerDistShutdown(h);
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(ov.Internal, 0); /* untouched */
    assert_port_empty(port);
    CloseHandle(port);
}
END_TEST

START_TEST(flush_completes_through_port)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(2);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 0xfeed, &ov), ERROR_IO_PENDING);
    DWORD bytes = 99, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &ov);
    ck_assert_uint_eq(key, 0xfeed);
    ck_assert_uint_eq(bytes, 0);
    ck_assert_uint_eq(ov.Internal, ERROR_SUCCESS);
    ck_assert(HasOverlappedIoCompleted(&ov));
    assert_port_empty(port); /* exactly once */
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

START_TEST(flush_completes_through_event)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_CONTENT_TAG tag = make_tag(3);
    OVERLAPPED ov = {.hEvent = CreateEvent(NULL, TRUE, FALSE, NULL)};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), ERROR_IO_PENDING);
    ck_assert_uint_eq(WaitForSingleObject(ov.hEvent, 5000), WAIT_OBJECT_0);
    DWORD bytes = 7;
    ck_assert(PeerDistGetOverlappedResult(&ov, &bytes, FALSE));
    ck_assert_uint_eq(bytes, 0);
    /* Without an event: PeerDistGetOverlappedResult waits by itself. */
    OVERLAPPED ov2 = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov2), ERROR_IO_PENDING);
    ck_assert(PeerDistGetOverlappedResult(&ov2, &bytes, TRUE));
    ck_assert_uint_eq(ov2.Internal, 0);
    CloseHandle(ov.hEvent);
    PeerDistShutdown(h);
}
END_TEST

struct routine_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    DWORD err;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    PEERDIST_INSTANCE_HANDLE h;
    DWORD nested; /* a routine may call the API */
};

static void flush_routine(DWORD err, DWORD bytes, ULONG_PTR key, LPOVERLAPPED ov, void *ctx)
{
    struct routine_state *s = ctx;
    PEERDIST_STATUS st;
    DWORD nested = PeerDistGetStatus(s->h, &st);
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->err = err;
    s->key = key;
    s->ov = ov;
    s->nested = nested == ERROR_SUCCESS && st == PEERDIST_STATUS_AVAILABLE;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

START_TEST(flush_completes_through_routine)
{
    struct routine_state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    s.h = startup();
    HANDLE port = peerdist_port_create_routine(flush_routine, &s);
    PEERDIST_CONTENT_TAG tag = make_tag(4);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(s.h, &tag, port, 42, &ov), ERROR_IO_PENDING);
    pthread_mutex_lock(&s.mu);
    while (s.calls == 0)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    CloseHandle(port);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_uint_eq(s.err, 0);
    ck_assert_uint_eq(s.key, 42);
    ck_assert_ptr_eq(s.ov, &ov);
    ck_assert(s.nested);
    PeerDistShutdown(s.h);
}
END_TEST

/*
 * Labels written straight into the database are the daemon's to see at its next start (while
 * it runs, its flushes see those it writes itself: schema/README.md), so these tests write
 * them with the daemon stopped.
 */
START_TEST(flush_removes_only_the_callers_tag)
{
    PEERDIST_CONTENT_TAG a = make_tag(5), b = make_tag(6);
    uid_t me = getuid();
    td_stop(&td);
    insert_labels(me, &a, 5);
    insert_labels(me, &b, 3);
    insert_labels(4242, &a, 4);
    td_start(&td);
    PEERDIST_INSTANCE_HANDLE h = startup();
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &a, NULL, 0, &ov), ERROR_IO_PENDING);
    DWORD bytes;
    ck_assert(PeerDistGetOverlappedResult(&ov, &bytes, TRUE));
    ck_assert_int_eq(count_labels(me, &a), 0);
    ck_assert_int_eq(count_labels(me, &b), 3);
    ck_assert_int_eq(count_labels(4242, &a), 4);
    PeerDistShutdown(h);
}
END_TEST

/* A second real user: its flush removes its labels only, and root's stay. */
START_TEST(flush_as_another_uid)
{
    const uid_t other = 65534;
    PEERDIST_CONTENT_TAG a = make_tag(7);
    td_stop(&td);
    insert_labels(getuid(), &a, 2);
    insert_labels(other, &a, 6);
    td_start(&td);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgid(other) != 0 || setuid(other) != 0)
            _exit(10);
        PEERDIST_INSTANCE_HANDLE h;
        if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
            _exit(11);
        OVERLAPPED ov = {0};
        if (PeerDistClientFlushContent(h, &a, NULL, 0, &ov) != ERROR_IO_PENDING)
            _exit(12);
        DWORD bytes;
        _exit(PeerDistGetOverlappedResult(&ov, &bytes, TRUE) ? 0 : 13);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(count_labels(other, &a), 0);
    ck_assert_int_eq(count_labels(getuid(), &a), 2);
    ck_assert(td_log_contains(&td, "uid 65534"));
}
END_TEST

#define FLUSH_THREADS 4
#define FLUSHES_PER_THREAD 250

struct flood {
    PEERDIST_INSTANCE_HANDLE h;
    HANDLE port;
    OVERLAPPED ov[FLUSH_THREADS][FLUSHES_PER_THREAD];
    atomic_int issued_errors;
};

static struct flood fl;

static void *flood_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < FLUSHES_PER_THREAD; i++) {
        PEERDIST_CONTENT_TAG tag = make_tag((uint8_t)(i + t));
        if (PeerDistClientFlushContent(fl.h, &tag, fl.port, (ULONG_PTR)t, &fl.ov[t][i]) !=
            ERROR_IO_PENDING)
            atomic_fetch_add(&fl.issued_errors, 1);
    }
    return NULL;
}

START_TEST(thousand_flushes_from_four_threads_complete_once)
{
    memset(&fl, 0, sizeof(fl));
    fl.h = startup();
    fl.port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    pthread_t t[FLUSH_THREADS];
    for (int i = 0; i < FLUSH_THREADS; i++)
        pthread_create(&t[i], NULL, flood_thread, (void *)(intptr_t)i);
    static int seen[FLUSH_THREADS][FLUSHES_PER_THREAD];
    memset(seen, 0, sizeof(seen));
    int total = 0;
    while (total < FLUSH_THREADS * FLUSHES_PER_THREAD) {
        DWORD bytes, err;
        ULONG_PTR key;
        LPOVERLAPPED ov;
        ck_assert_msg(dequeue(fl.port, 10000, &bytes, &key, &ov, &err), "error %u after %d", err,
            total);
        ck_assert_uint_lt(key, FLUSH_THREADS);
        ptrdiff_t i = ov - fl.ov[key];
        ck_assert(i >= 0 && i < FLUSHES_PER_THREAD);
        seen[key][i]++;
        total++;
    }
    for (int i = 0; i < FLUSH_THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&fl.issued_errors), 0);
    for (int i = 0; i < FLUSH_THREADS; i++)
        for (int j = 0; j < FLUSHES_PER_THREAD; j++)
            ck_assert_int_eq(seen[i][j], 1);
    assert_port_empty(fl.port);
    PeerDistShutdown(fl.h);
    CloseHandle(fl.port);
}
END_TEST

/*
 * More labelled tags than the flush filter's build reads per slice (FILTER_BUILD_SLICE, 256),
 * of three uids, in the database at the start: once the build has ended, a flush of each of
 * the caller's tags finds its label (the filter never says "none" for a tag that has one),
 * and the other uids' labels of the same tags stay.
 */
#define PRESTART_TAGS 1200

static PEERDIST_CONTENT_TAG numbered_tag(int i)
{
    PEERDIST_CONTENT_TAG t;
    char text[17];
    snprintf(text, sizeof(text), "t%015d", i); /* as the SQL below writes it */
    memcpy(t.Data, text, 16);
    return t;
}

/* The daemon's log says the flush filter was built more than *arg times (builds of earlier
 * starts stay in the log). */
static bool filter_built(void *arg)
{
    return td_log_count(&td, "flush filter built") > *(int *)arg;
}

START_TEST(flush_finds_every_tag_labelled_before_the_start)
{
    uid_t me = getuid();
    td_stop(&td);
    char sql[512];
    const unsigned uids[] = {me, 4242, 4243};
    for (size_t u = 0; u < 3; u++) {
        snprintf(sql, sizeof(sql),
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
            "INSERT INTO labels (uid, tag, segment_id, block) "
            "SELECT %u, CAST(printf('t%%015d', i) AS BLOB), x'0102', i %% 7 FROM n "
            "WHERE i %% %zu = 0",
            PRESTART_TAGS - 1, uids[u], u + 1);
        td_sql(&td, sql);
    }
    ck_assert_int_eq(td_sql(&td, "SELECT count(*) FROM labels"),
        PRESTART_TAGS + PRESTART_TAGS / 2 + PRESTART_TAGS / 3);
    int builds = td_log_count(&td, "flush filter built");
    td_start(&td);
    ck_assert_msg(td_wait_until(filter_built, &builds), "the flush filter was never built");
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    static OVERLAPPED ov[PRESTART_TAGS];
    memset(ov, 0, sizeof(ov));
    for (int i = 0; i < PRESTART_TAGS; i++) {
        PEERDIST_CONTENT_TAG t = numbered_tag(i);
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &t, port, (ULONG_PTR)i, &ov[i]),
            ERROR_IO_PENDING);
    }
    for (int n = 0; n < PRESTART_TAGS; n++) {
        DWORD bytes, err;
        ULONG_PTR key;
        LPOVERLAPPED done;
        ck_assert_msg(dequeue(port, 10000, &bytes, &key, &done, &err), "error %u", err);
    }
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM labels WHERE uid = %u", (unsigned)me);
    ck_assert_int_eq(td_sql(&td, sql), 0);
    ck_assert_int_eq(td_sql(&td, "SELECT count(*) FROM labels"),
        PRESTART_TAGS / 2 + PRESTART_TAGS / 3);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

/*
 * The build at start runs in slices with the loop serving clients between them: with 300,000
 * labelled tags in the database (seconds of seeks), a GetStatus right after the start is
 * answered before the build has ended. Then a flush of one of those tags still finds its label.
 */
#define MANY_TAGS 300000

START_TEST(flush_filter_build_lets_clients_in)
{
    td_stop(&td);
    char sql[512];
    snprintf(sql, sizeof(sql),
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
        "INSERT INTO labels (uid, tag, segment_id, block) "
        "SELECT %u, CAST(printf('t%%015d', i) AS BLOB), x'0102', 0 FROM n",
        MANY_TAGS - 1, (unsigned)getuid());
    td_sql(&td, sql);
    int builds = td_log_count(&td, "flush filter built");
    td_start(&td);
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_msg(!filter_built(&builds), "the loop answered nobody until the filter was built");
    ck_assert_msg(td_wait_until(filter_built, &builds), "the flush filter was never built");
    PEERDIST_CONTENT_TAG t = numbered_tag(MANY_TAGS - 1);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &t, NULL, 0, &ov), ERROR_IO_PENDING);
    DWORD bytes;
    ck_assert(PeerDistGetOverlappedResult(&ov, &bytes, TRUE));
    ck_assert_int_eq(count_labels(getuid(), &t), 0);
    ck_assert_int_eq(td_sql(&td, "SELECT count(*) FROM labels"), MANY_TAGS - 1);
    PeerDistShutdown(h);
}
END_TEST

/* ---- content handles ---- */

START_TEST(open_and_close_content)
{
    PEERDIST_INSTANCE_HANDLE h = startup(), h2 = startup();
    PEERDIST_CONTENT_TAG tag = make_tag(8);
    PEERDIST_CONTENT_HANDLE c = NULL;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(PeerDistClientOpenContent(h, NULL, NULL, 0, &c), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientOpenContent(NULL, &tag, NULL, 0, &c), ERROR_INVALID_HANDLE);
    /* A content handle belongs to its instance. */
    ck_assert_uint_eq(PeerDistClientCloseContent(h2, c), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, h2), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_INVALID_HANDLE);
    /* Shutdown closes what is left; the stale handle stays invalid. */
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_INVALID_HANDLE);
    PeerDistShutdown(h2);
}
END_TEST

/* ---- status notifications ---- */

START_TEST(status_notification_rules)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_STATUS st = PEERDIST_STATUS_DISABLED;
    OVERLAPPED ov = {0}, ov2 = {0};
    /* First registration: baseline DISABLED, so it fires at once with AVAILABLE. */
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 5, &ov, &st),
        ERROR_IO_PENDING);
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &ov);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    /* The next one waits for a change; a second concurrent one is refused. */
    PEERDIST_STATUS_INFO info = {.cbSize = sizeof(info)};
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotificationEx(h, port, 6, &ov, &info),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 7, &ov2, &st),
        PEERDIST_ERROR_ALREADY_EXISTS);
    assert_port_empty(port);
    /* Unregister completes the pending one with ERROR_OPERATION_ABORTED. */
    ck_assert_uint_eq(PeerDistUnregisterForStatusChangeNotification(h), ERROR_SUCCESS);
    ck_assert(!dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &ov);
    ck_assert_uint_eq(err, ERROR_OPERATION_ABORTED);
    ck_assert(!PeerDistGetOverlappedResult(&ov, &bytes, FALSE));
    ck_assert_uint_eq(GetLastError(), ERROR_OPERATION_ABORTED);
    ck_assert_uint_eq(PeerDistUnregisterForStatusChangeNotification(h),
        ERROR_SUCCESS); /* idempotent */
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 5, NULL, &st),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 5, &ov, NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistUnregisterForStatusChangeNotification(NULL), ERROR_INVALID_HANDLE);

    /* A mode change (SIGHUP) is a status change: notification and GetStatus both see it. */
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotificationEx(h, port, 6, &ov, &info),
        ERROR_IO_PENDING);
    td_set_mode(&td, "disabled");
    td_signal(&td, SIGHUP);
    ck_assert(dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_uint_eq(key, 6);
    ck_assert_int_eq(info.status, PEERDIST_STATUS_DISABLED);
    ck_assert_uint_eq(info.dwMaxVer, 2);
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_DISABLED);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

/* ---- policy and availability ---- */

START_TEST(disabled_mode_refuses_calls)
{
    td_stop(&td);
    td_set_mode(&td, "disabled");
    td_start(&td);
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_DISABLED);
    PEERDIST_CONTENT_TAG tag = make_tag(9);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov),
        ERROR_ACCESS_DISABLED_BY_POLICY);
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c),
        ERROR_ACCESS_DISABLED_BY_POLICY);
    /* Registration works; DISABLED equals the baseline, so it stays pending. */
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 1, &ov, &st),
        ERROR_IO_PENDING);
    assert_port_empty(port);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert(!dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_uint_eq(err, ERROR_OPERATION_ABORTED); /* Shutdown cancels it */
    CloseHandle(port);
}
END_TEST

START_TEST(no_daemon_is_unavailable_not_fatal)
{
    td_stop(&td);
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_STATUS st = PEERDIST_STATUS_AVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
    PEERDIST_CONTENT_TAG tag = make_tag(10);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov),
        PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    ck_assert(HasOverlappedIoCompleted(&ov)); /* nothing pending is left behind */
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c),
        PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    HANDLE ev = CreateEvent(NULL, TRUE, FALSE, NULL);
    OVERLAPPED rov = {.hEvent = ev};
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, NULL, 0, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(WaitForSingleObject(ev, 5000), WAIT_OBJECT_0);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
    /* The daemon starts: the next registration reports AVAILABLE, and calls work. */
    ResetEvent(ev);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, NULL, 0, &rov, &st),
        ERROR_IO_PENDING);
    td_start(&td);
    ck_assert_uint_eq(WaitForSingleObject(ev, 10000), WAIT_OBJECT_0);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), ERROR_IO_PENDING);
    DWORD bytes;
    ck_assert(PeerDistGetOverlappedResult(&ov, &bytes, TRUE));
    CloseHandle(ev);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

#define PENDING_AT_KILL 100

START_TEST(daemon_killed_while_operations_pending)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(11);
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    PEERDIST_STATUS st;
    OVERLAPPED rov = {0};
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 900, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert(dequeue(port, 5000, &bytes, &key, &got, &err)); /* AVAILABLE */
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 900, &rov, &st),
        ERROR_IO_PENDING);

    /* Paused (every thread stopped), the daemon answers nothing: the flushes stay pending. */
    td_pause(&td);
    static OVERLAPPED ov[PENDING_AT_KILL];
    memset(ov, 0, sizeof(ov));
    for (int i = 0; i < PENDING_AT_KILL; i++)
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov[i]), ERROR_IO_PENDING);
    for (int i = 0; i < PENDING_AT_KILL; i++)
        ck_assert(!HasOverlappedIoCompleted(&ov[i]));
    td_kill(&td);

    int flushes = 0, notices = 0;
    while (flushes + notices < PENDING_AT_KILL + 1) {
        BOOL ok = dequeue(port, 10000, &bytes, &key, &got, &err);
        ck_assert_msg(got != NULL, "nothing completed after %d", flushes + notices);
        if (key == 900) {
            ck_assert(ok);
            ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
            notices++;
        } else {
            ck_assert(!ok);
            ck_assert_uint_eq(err, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
            flushes++;
        }
    }
    ck_assert_int_eq(notices, 1);
    assert_port_empty(port);
    OVERLAPPED later = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &later),
        PEERDIST_ERROR_SERVICE_UNAVAILABLE);

    /* Back again: AVAILABLE is reported, the same instance works, old handles still close. */
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, 900, &rov, &st),
        ERROR_IO_PENDING);
    td_start(&td);
    ck_assert(dequeue(port, 10000, &bytes, &key, &got, &err));
    ck_assert_uint_eq(key, 900);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &later), ERROR_IO_PENDING);
    ck_assert(dequeue(port, 5000, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &later);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

START_TEST(shutdown_aborts_pending_operations)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(12);
    td_pause(&td); /* nothing can complete but by the shutdown */
    OVERLAPPED ov[10] = {0};
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov[i]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    for (int i = 0; i < 10; i++) {
        DWORD bytes, err;
        ULONG_PTR key;
        LPOVERLAPPED got;
        ck_assert(!dequeue(port, 5000, &bytes, &key, &got, &err));
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(err, ERROR_OPERATION_ABORTED);
    }
    assert_port_empty(port);
    td_resume(&td);
    CloseHandle(port);
}
END_TEST

/* ---- hostile clients and the protocol ---- */

static int raw_connect(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(td.sock), sizeof(sun.sun_path));
    memcpy(sun.sun_path, td.sock, strlen(td.sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void raw_send(int fd, const Peerdist__Request *req)
{
    uint8_t buf[256];
    size_t n = frame_pack(&req->base, buf);
    ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
}

/* Reads one reply, or NULL at EOF. */
static Peerdist__Reply *raw_recv(int fd)
{
    uint8_t hdr[4];
    ssize_t n = recv(fd, hdr, 4, MSG_WAITALL);
    if (n != 4)
        return NULL;
    uint32_t len = frame_header_length(hdr);
    ck_assert_uint_le(len, 4096);
    uint8_t buf[4096];
    ck_assert_int_eq(recv(fd, buf, len, MSG_WAITALL), (ssize_t)len);
    return peerdist__reply__unpack(NULL, len, buf);
}

static void raw_hello(int fd, uint32_t lo, uint32_t hi, uint32_t expect_status,
    uint32_t expect_version)
{
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = lo;
    h.max_version = hi;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 1;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    raw_send(fd, &req);
    Peerdist__Reply *r = raw_recv(fd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 1);
    ck_assert_uint_eq(r->status, expect_status);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_HELLO);
    ck_assert_uint_eq(r->hello->version, expect_version);
    ck_assert_uint_eq(r->hello->max_version, PD_PROTOCOL_VERSION_MAX);
    peerdist__reply__free_unpacked(r, NULL);
}

static void assert_closed(int fd)
{
    char b;
    ck_assert_int_eq(recv(fd, &b, 1, 0), 0);
    close(fd);
}

static void assert_daemon_serves(void)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    PeerDistShutdown(h);
}

START_TEST(version_negotiation)
{
    /* A newer client speaking 1..5 gets 1; one speaking only 99 is refused and closed. */
    int fd = raw_connect();
    raw_hello(fd, 1, 5, ERROR_SUCCESS, 1);
    close(fd);
    fd = raw_connect();
    raw_hello(fd, 99, 99, PEERDIST_ERROR_VERSION_UNSUPPORTED, 0);
    assert_closed(fd);
    ck_assert(td_log_contains(&td, "speaks protocol 99..99"));
}
END_TEST

START_TEST(unknown_request_type_gets_clear_error)
{
    int fd = raw_connect();
    raw_hello(fd, 1, 1, ERROR_SUCCESS, 1);
    /* Field 60 is no request type this daemon knows (a newer client's). */
    uint8_t frame[] = {0, 0, 0, 5, 0x08, 0x07, 0xe2, 0x03, 0x00};
    ck_assert_int_eq(write(fd, frame, sizeof(frame)), (ssize_t)sizeof(frame));
    Peerdist__Reply *r = raw_recv(fd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->id, 7);
    ck_assert_uint_eq(r->status, ERROR_CALL_NOT_IMPLEMENTED);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
}
END_TEST

START_TEST(hostile_frames_close_only_that_connection)
{
    PEERDIST_INSTANCE_HANDLE bystander = startup();
    /* Oversized length header. */
    int fd = raw_connect();
    uint8_t big[4] = {0x7f, 0xff, 0xff, 0xff};
    ck_assert_int_eq(write(fd, big, 4), 4);
    assert_closed(fd);
    ck_assert(td_log_contains(&td, "exceeds"));
    /* Garbage payload. */
    fd = raw_connect();
    uint8_t garbage[] = {0, 0, 0, 4, 0x0a, 0x7f, 0x01, 0x02};
    ck_assert_int_eq(write(fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
    assert_closed(fd);
    ck_assert(td_log_contains(&td, "undecodable frame"));
    /* A request before Hello. */
    fd = raw_connect();
    Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 3;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &g;
    raw_send(fd, &req);
    assert_closed(fd);
    /* Half a frame, then gone. */
    fd = raw_connect();
    uint8_t half[] = {0, 0, 0, 50, 1, 2, 3};
    ck_assert_int_eq(write(fd, half, sizeof(half)), (ssize_t)sizeof(half));
    close(fd);
    /* A flush for a 3-byte tag gets ERROR_INVALID_PARAMETER, not a crash. */
    fd = raw_connect();
    raw_hello(fd, 1, 1, ERROR_SUCCESS, 1);
    Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
    f.tag.data = (uint8_t *)"abc";
    f.tag.len = 3;
    req.id = 4;
    req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
    req.flush = &f;
    raw_send(fd, &req);
    Peerdist__Reply *r = raw_recv(fd);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->status, ERROR_INVALID_PARAMETER);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    /* The daemon and the other client are fine. */
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(bystander, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    assert_daemon_serves();
    PeerDistShutdown(bystander);
}
END_TEST

static long daemon_rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)td.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* A client that sends requests but never reads replies: the daemon stops reading it once
 * 4 MiB of replies are queued, its memory stays bounded, and others are still served. */
START_TEST(client_that_never_reads_is_bounded)
{
    long rss_before = daemon_rss_kib();
    (void)rss_before;
    int fd = raw_connect();
    raw_hello(fd, 1, 1, ERROR_SUCCESS, 1);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &g;
    static uint8_t burst[64 * 1024];
    size_t n = 0;
    for (req.id = 1; n + frame_size(&req.base) <= sizeof(burst); req.id++)
        n += frame_pack(&req.base, burst + n);
    /*
     * Writes until the socket is full and the daemon's event loop sleeps (td_loop_idle) with
     * our requests unread: then it has stopped reading us. A full socket alone only means the
     * daemon has not caught up yet: then wait for room.
     */
    long sent = 0;
    size_t off = 0;
    bool stopped = false;
    while (!stopped && sent < 64L * 1024 * 1024) {
        ssize_t w = write(fd, burst + off, n - off);
        if (w > 0) {
            sent += w;
            off = (off + (size_t)w) % n;
            continue;
        }
        ck_assert_int_eq(errno, EAGAIN);
        struct pollfd room = {.fd = fd, .events = POLLOUT};
        stopped = poll(&room, 1, 1) == 0 && td_loop_idle(&td);
    }
    ck_assert_msg(stopped, "the daemon never stopped reading (%ld bytes)", sent);
    ck_assert_msg(sent > 1024L * 1024, "stopped after only %ld bytes", sent);
#ifndef PEERDIST_SANITIZE /* ASan's quarantine, TSan's shadow: resident memory of their own */
    ck_assert_int_lt(daemon_rss_kib() - rss_before, 32 * 1024);
#endif
    assert_daemon_serves();
    close(fd);
    assert_daemon_serves();
}
END_TEST

START_TEST(sigterm_stops_cleanly)
{
    int status = td_stop(&td);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_ne(access(td.sock, F_OK), 0); /* socket removed */
    ck_assert(td_log_contains(&td, "database closed"));
}
END_TEST

/* SIGTERM with requests in flight: each completes (answered or unavailable), none hangs. */
START_TEST(sigterm_with_flushes_in_flight)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(13);
    static OVERLAPPED ov[200];
    memset(ov, 0, sizeof(ov));
    int pending = 0;
    for (int i = 0; i < 200; i++) {
        DWORD rc = PeerDistClientFlushContent(h, &tag, port, 1, &ov[i]);
        /* Once the daemon has gone, a call fails synchronously instead. */
        ck_assert(rc == ERROR_IO_PENDING || (i > 100 && rc == PEERDIST_ERROR_SERVICE_UNAVAILABLE));
        pending += rc == ERROR_IO_PENDING;
        if (i == 100)
            td_signal(&td, SIGTERM);
    }
    int answered = 0, unavailable = 0;
    for (int i = 0; i < pending; i++) {
        DWORD bytes, err;
        ULONG_PTR key;
        LPOVERLAPPED got;
        BOOL ok = dequeue(port, 10000, &bytes, &key, &got, &err);
        ck_assert_ptr_nonnull(got);
        if (ok)
            answered++;
        else if (err == PEERDIST_ERROR_SERVICE_UNAVAILABLE)
            unavailable++;
    }
    ck_assert_int_eq(answered + unavailable, pending);
    ck_assert_int_gt(answered, 0);
    assert_port_empty(port);
    int status = td_stop(&td);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

/*
 * systemd (or an impatient admin) may send TERM again while the daemon shuts down: it must
 * still finish closing the database and exit 0, never die of the signal's default action.
 */
START_TEST(sigterm_repeated_during_shutdown_exits_zero)
{
    PEERDIST_INSTANCE_HANDLE h = startup();
    PeerDistShutdown(h);
    pid_t pid = td.pid;
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 200000 && got == 0; i++) {
        kill(pid, SIGTERM);
        usleep(200);
        got = waitpid(pid, &status, WNOHANG);
    }
    if (got == 0)
        got = waitpid(pid, &status, 0);
    td.pid = 0;
    ck_assert_int_eq(got, pid);
    ck_assert_msg(WIFEXITED(status), "peerdistd died of signal %d during shutdown",
        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

START_TEST(second_daemon_on_same_socket_refused)
{
    struct test_daemon other = td;
    snprintf(other.db, sizeof(other.db), "%s/other.db", td.dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl(PEERDISTD_PATH, "peerdistd", "--socket", other.sock, "--db", other.db, "--config",
            other.conf, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 1);
    assert_daemon_serves(); /* the first one still owns the socket */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup_local, teardown);
    tcase_add_test(tc, startup_negotiates_versions);
    tcase_add_test(tc, status_reports_available);
    tcase_add_test(tc, flush_synchronous_errors_never_complete);
    tcase_add_test(tc, flush_completes_through_port);
    tcase_add_test(tc, flush_completes_through_event);
    tcase_add_test(tc, flush_completes_through_routine);
    tcase_add_test(tc, flush_removes_only_the_callers_tag);
    tcase_add_test(tc, flush_as_another_uid);
    tcase_add_test(tc, flush_finds_every_tag_labelled_before_the_start);
    tcase_add_test(tc, flush_filter_build_lets_clients_in);
    tcase_add_test(tc, thousand_flushes_from_four_threads_complete_once);
    tcase_add_test(tc, open_and_close_content);
    tcase_add_test(tc, status_notification_rules);
    tcase_add_test(tc, disabled_mode_refuses_calls);
    tcase_add_test(tc, no_daemon_is_unavailable_not_fatal);
    tcase_add_test(tc, daemon_killed_while_operations_pending);
    tcase_add_test(tc, shutdown_aborts_pending_operations);
    tcase_add_test(tc, version_negotiation);
    tcase_add_test(tc, unknown_request_type_gets_clear_error);
    tcase_add_test(tc, hostile_frames_close_only_that_connection);
    tcase_add_test(tc, client_that_never_reads_is_bounded);
    tcase_add_test(tc, sigterm_stops_cleanly);
    tcase_add_test(tc, sigterm_with_flushes_in_flight);
    tcase_add_test(tc, sigterm_repeated_during_shutdown_exits_zero);
    tcase_add_test(tc, second_daemon_on_same_socket_refused);
    suite_add_tcase(s, tc);
    return check_run(s);
}
