/* SPDX-License-Identifier: MIT */
/*
 * test_lib_conn.c - the library's connection to peerdistd when the daemon misbehaves:
 * it restarts (every pending operation fails once with PEERDIST_ERROR_SERVICE_UNAVAILABLE,
 * the status registration fires, the next call reconnects at once), it stops reading (every
 * call still returns within its deadline; a request not wholly sent fails synchronously and
 * never completes), it refuses the connection (ERROR_REQ_NOT_ACCEP, tried again later); a
 * caller waiting for its reply gets it whether it spins first or not (PEERDIST_SYNC_SPIN_US).
 * The real daemon throughout, except a small fake that refuses every Hello.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "frame.h"
#include "harness.h"

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

/* A crash and a start: the library's socket sees EOF, nobody reading it. */
static void restart(void)
{
    td_kill(&td);
    td_start(&td);
}

/* Dequeues one packet within TD_WAIT_MS: the GQCS result; *err its last error. */
static BOOL dequeue(HANDLE port, DWORD *bytes, ULONG_PTR *key, LPOVERLAPPED *ov, DWORD *err)
{
    SetLastError(0);
    BOOL ok = GetQueuedCompletionStatus(port, bytes, key, ov, TD_WAIT_MS);
    *err = ok ? 0 : GetLastError();
    return ok;
}

/* Nothing is queued on port now. */
static void assert_port_empty(HANDLE port)
{
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &ov, 0));
    ck_assert_ptr_null(ov);
    ck_assert_uint_eq(GetLastError(), WAIT_TIMEOUT);
}

static bool is_set(void *arg)
{
    return atomic_load((atomic_int *)arg) != 0;
}

static bool daemon_has_unread(void *arg)
{
    (void)arg;
    return td_unread(&td) > 0;
}

/* ---- a caller waiting for its reply ---- */

struct resume_later {
    atomic_int sent; /* the caller's request reached the paused daemon */
};

static void *resume_after_request(void *arg)
{
    struct resume_later *r = arg;
    if (td_wait_until(daemon_has_unread, NULL)) /* else the caller sees sent 0 */
        atomic_store(&r->sent, 1);
    usleep(50 * 1000); /* the caller has long given up spinning and sleeps in read() */
    td_resume(&td);
    return NULL;
}

/*
 * A synchronous caller first looks for its reply without blocking (PEERDIST_SYNC_SPIN_US,
 * default 20 us, here also 0 and the largest, 1000), then sleeps in read(). Replies that come
 * during the spin (the daemon answers a GetStatus in about 15 us) and after it (the daemon
 * paused until the request is there, then 50 ms more) both reach the caller, right ones; so
 * do the replies a caller waiting on an event reads itself (FlushContent, waited for).
 */
START_TEST(replies_reach_callers_whether_they_spin_or_not)
{
    static const char *const spins[] = {NULL, "0", "1000"};
    for (size_t k = 0; k < sizeof(spins) / sizeof(spins[0]); k++) {
        if (spins[k])
            setenv("PEERDIST_SYNC_SPIN_US", spins[k], 1);
        else
            unsetenv("PEERDIST_SYNC_SPIN_US");
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        PEERDIST_STATUS st;
        for (int i = 0; i < 300; i++) {
            st = PEERDIST_STATUS_DISABLED;
            ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
            ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
        }
        PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(40 + k));
        for (int i = 0; i < 50; i++)
            ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
        /* The reply comes long after any spin. */
        td_pause(&td);
        struct resume_later r = {0};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, resume_after_request, &r), 0);
        st = PEERDIST_STATUS_DISABLED;
        ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
        ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
        ck_assert(atomic_load(&r.sent));
        pthread_join(th, NULL);
        td_pause(&td);
        ck_assert_int_eq(pthread_create(&th, NULL, resume_after_request, &r), 0);
        ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
        pthread_join(th, NULL);
        ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    }
    unsetenv("PEERDIST_SYNC_SPIN_US");
}
END_TEST

/* ---- the first call after a restart ---- */

/*
 * An idle instance (no operation pending, no registration: nobody reads its socket) and a
 * daemon that restarted: each kind of call made right after reconnects and works.
 */
START_TEST(first_call_after_restart_reconnects)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_STATUS st = PEERDIST_STATUS_UNAVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);

    restart();
    st = PEERDIST_STATUS_UNAVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);

    td_stop(&td); /* a clean stop closes the connection the same way */
    td_start(&td);
    PEERDIST_STATUS_INFO info = {.cbSize = sizeof(info)};
    ck_assert_uint_eq(PeerDistGetStatusEx(h, &info), ERROR_SUCCESS);
    ck_assert_int_eq(info.status, PEERDIST_STATUS_AVAILABLE);

    /*
     * The open's request finds the old connection closed and goes out on a new one: the
     * handle belongs to that one, so it works (not INVALIDATED).
     */
    restart();
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    PEERDIST_CLIENT_BASIC_INFO ci_info = {0};
    /* Answered by the daemon for this handle: no content information added yet. */
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo,
                          sizeof(ci_info), &ci_info),
        PEERDIST_ERROR_NOT_INITIALIZED);

    /* Never ERROR_IO_PENDING and then SERVICE_UNAVAILABLE: the flush goes on the new one. */
    restart();
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL),
        ERROR_SUCCESS);

    /* A handle from before the restart is INVALIDATED, not "service unavailable". */
    restart();
    uint8_t buf[16];
    OVERLAPPED rov = {0};
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(buf), buf, 0, &rov),
        PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);

    restart();
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 3, (PBYTE) "abc", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/*
 * An instance that was told DISABLED answers ERROR_ACCESS_DISABLED_BY_POLICY without
 * writing anything, so no write notices the daemon going away: once the daemon restarts
 * enabled, the next call must see it (the library probes the connection on that path).
 */
START_TEST(disabled_then_enabled_daemon_is_seen_by_an_idle_instance)
{
    td_stop(&td);
    td_set_mode(&td, "disabled");
    td_start(&td);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c),
        ERROR_ACCESS_DISABLED_BY_POLICY);
    td_stop(&td);
    td_set_mode(&td, "local");
    td_start(&td);
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/*
 * Waiters that read their own replies put the library in its lazy mode, where asynchronous
 * requests may be corked and written later. A lone request after the daemon died must still
 * fail synchronously, never ERROR_IO_PENDING and then SERVICE_UNAVAILABLE; after a restart
 * it must go out on the new connection and succeed.
 */
START_TEST(lone_flush_after_the_daemon_died_is_never_pending_then_failed)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    ck_assert_ptr_nonnull(port);
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    OVERLAPPED ov[3];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) { /* waited for on the port: the waiter reads */
            memset(&ov[i], 0, sizeof(ov[i]));
            ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, 1, &ov[i]),
                ERROR_IO_PENDING);
            ck_assert(dequeue(port, &bytes, &key, &got, &err));
            ck_assert_uint_eq(err, ERROR_SUCCESS);
        }
        td_kill(&td);
        if (round == 1)
            td_start(&td);
        OVERLAPPED last = {0};
        DWORD rc = PeerDistClientFlushContent(h, &tag, port, 1, &last);
        if (round == 0) {
            ck_assert_uint_eq(rc, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
            td_start(&td);
        } else {
            ck_assert_uint_eq(rc, ERROR_IO_PENDING);
            ck_assert(dequeue(port, &bytes, &key, &got, &err));
            ck_assert_ptr_eq(got, &last);
            ck_assert_uint_eq(err, ERROR_SUCCESS);
        }
    }
    ck_assert(CloseHandle(port));
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}
END_TEST

/* ---- the library across a restart: every kind of pending operation ---- */

#define KEY_REG 900
#define KEY_FLUSH 1
#define KEY_CI 3
#define KEY_STREAM 4
#define NFLUSH 3
#define NOPS (NFLUSH + 6)

START_TEST(restart_fails_every_pending_operation_once)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    DWORD bytes, err;
    ULONG_PTR key;
    LPOVERLAPPED got;
    PEERDIST_STATUS st;
    OVERLAPPED rov = {0};
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, KEY_REG, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert(dequeue(port, &bytes, &key, &got, &err)); /* the first one: AVAILABLE */
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, KEY_REG, &rov, &st),
        ERROR_IO_PENDING);

    /* A handle of each kind, each completing on the port. */
    PEERDIST_CONTENT_TAG tag = api_make_tag(2);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);
    uint8_t *data = api_make_content(100000, 1);
    api_publish(h, "restart-ci", data, 100000, 0, NULL, 0);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(
        PeerDistServerOpenContentInformation(h, 10, (PBYTE) "restart-ci", 0, 0, port, KEY_CI, &ci),
        ERROR_SUCCESS);
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(
        PeerDistServerPublishStream(h, 14, (PBYTE) "restart-stream", 0, NULL, port, KEY_STREAM, &s),
        ERROR_SUCCESS);

    /* Stopped, the daemon answers nothing: every operation stays pending (small writes). */
    td_pause(&td);
    static OVERLAPPED ov[NOPS];
    memset(ov, 0, sizeof(ov));
    static uint8_t out[3][4096];
    int n = 0;
    for (int i = 0; i < NFLUSH; i++)
        ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, KEY_FLUSH, &ov[n++]),
            ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 100, data, &ov[n++]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 16 * KiB, data, &ov[n++]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(out[0]), out[0], 0, &ov[n++]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, sizeof(out[1]), out[1], 0, &ov[n++]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 8 * KiB, data, &ov[n++]),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(
        PeerDistServerRetrieveContentInformation(h, ci, sizeof(out[2]), out[2], &ov[n++]),
        ERROR_IO_PENDING);
    ck_assert_int_eq(n, NOPS);
    td_kill(&td);

    /* Each operation completes exactly once with SERVICE_UNAVAILABLE; the registration fires. */
    int seen[NOPS] = {0}, notices = 0;
    for (int i = 0; i < NOPS + 1; i++) {
        BOOL ok = dequeue(port, &bytes, &key, &got, &err);
        ck_assert_msg(got != NULL, "only %d of %d completions came", i, NOPS + 1);
        if (got == &rov) {
            ck_assert(ok);
            ck_assert_uint_eq(key, KEY_REG);
            ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
            notices++;
            continue;
        }
        ck_assert(got >= ov && got < ov + NOPS);
        ck_assert(!ok);
        ck_assert_uint_eq(err, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
        seen[got - ov]++;
    }
    ck_assert_int_eq(notices, 1);
    for (int i = 0; i < NOPS; i++) {
        ck_assert_int_eq(seen[i], 1);
        ck_assert(HasOverlappedIoCompleted(&ov[i]));
        ck_assert(!PeerDistGetOverlappedResult(&ov[i], &bytes, FALSE));
        ck_assert_uint_eq(GetLastError(), PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    }
    assert_port_empty(port);

    /* Back: a registration reports AVAILABLE, a new call works, old handles still close. */
    td_start(&td);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, port, KEY_REG, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert(dequeue(port, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &rov);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    OVERLAPPED later = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, port, KEY_FLUSH, &later),
        ERROR_IO_PENDING);
    ck_assert(dequeue(port, &bytes, &key, &got, &err));
    ck_assert_ptr_eq(got, &later);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 16 * KiB, data, &ov[0]),
        PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    assert_port_empty(port);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    CloseHandle(port);
    free(data);
}
END_TEST

/* ---- a request not wholly sent never completes ---- */

struct add_call {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    const uint8_t *buf;
    DWORD len;
    OVERLAPPED ov;
    DWORD rc;
    atomic_int done;
};

static void *add_data_thread(void *arg)
{
    struct add_call *a = arg;
    a->rc = PeerDistClientAddData(a->h, a->c, a->len, (PBYTE)a->buf, &a->ov);
    atomic_store(&a->done, 1);
    return NULL;
}

/*
 * The daemon, stopped, cannot take 4 MiB: the AddData's write is stuck part-way when the
 * daemon dies. The daemon never had the request, so the call fails synchronously with
 * SERVICE_UNAVAILABLE and no completion ever comes (not ERROR_IO_PENDING plus a failure).
 * Who sees the death first, the writer or the library's reading thread, varies: so, rounds.
 */
#define UNSENT_ROUNDS 8

START_TEST(request_not_wholly_sent_fails_synchronously)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag(3);
    uint8_t *buf = api_make_content(4 * MiB, 3);
    for (int round = 0; round < UNSENT_ROUNDS; round++) {
        if (round > 0)
            td_start(&td);
        struct add_call a = {.h = h, .len = 4 * MiB, .buf = buf};
        a.c = api_open_content(h, &tag, port);
        td_pause(&td);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, add_data_thread, &a), 0);
        ck_assert_msg(td_wait_until(daemon_has_unread, NULL), "the AddData never started writing");
        ck_assert(!is_set(&a.done)); /* 4 MiB cannot all fit in the socket */
        td_kill(&td);
        ck_assert_msg(td_wait_until(is_set, &a.done), "AddData did not return after the kill");
        pthread_join(t, NULL);
        ck_assert_msg(a.rc == PEERDIST_ERROR_SERVICE_UNAVAILABLE, "round %d: AddData gave %u",
            round, (unsigned)a.rc);
        ck_assert(HasOverlappedIoCompleted(&a.ov));
        /* Once a call has seen the connection gone, whatever it had pending was delivered. */
        PEERDIST_STATUS st;
        ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
        ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
        assert_port_empty(port);
        ck_assert_uint_eq(PeerDistClientCloseContent(h, a.c), ERROR_SUCCESS);
    }
    td_start(&td);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    assert_port_empty(port);
    CloseHandle(port);
    free(buf);
}
END_TEST

/* ---- deadlines hold with a full send buffer ---- */

struct status_call {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_STATUS st;
    DWORD rc;
    atomic_int done;
};

static void *status_thread(void *arg)
{
    struct status_call *s = arg;
    s->rc = PeerDistGetStatus(s->h, &s->st);
    atomic_store(&s->done, 1);
    return NULL;
}

struct flush_call {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_TAG tag;
    OVERLAPPED ov;
    DWORD rc;
    atomic_int done;
};

static void *flush_thread(void *arg)
{
    struct flush_call *f = arg;
    f->rc = PeerDistClientFlushContent(f->h, &f->tag, NULL, 0, &f->ov);
    atomic_store(&f->done, 1);
    return NULL;
}

/* Waits for *flag, TD_WAIT_MS at most (far above the 2 s deadlines involved): whether it came. */
static bool wait_returned(atomic_int *flag)
{
    return td_wait_until(is_set, flag);
}

/*
 * A stopped daemon, a writer stuck on a full socket: a GetStatus and a flush from other
 * threads still return (the deadline is 2 s here, PEERDIST_CALL_TIMEOUT_MS), and so does
 * the stuck writer, all while the daemon stays stopped. Then it continues and calls work.
 */
START_TEST(calls_return_within_deadline_while_a_write_is_stuck)
{
    setenv("PEERDIST_CALL_TIMEOUT_MS", "2000", 1);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    unsetenv("PEERDIST_CALL_TIMEOUT_MS");
    PEERDIST_CONTENT_TAG tag = api_make_tag(4);
    struct add_call a = {.h = h, .len = 4 * MiB};
    a.c = api_open_content(h, &tag, NULL);
    uint8_t *buf = api_make_content(a.len, 4);
    a.buf = buf;
    td_pause(&td);
    pthread_t ta, ts, tf;
    ck_assert_int_eq(pthread_create(&ta, NULL, add_data_thread, &a), 0);
    ck_assert_msg(td_wait_until(daemon_has_unread, NULL), "the AddData never started writing");
    struct status_call s = {.h = h};
    struct flush_call f = {.h = h, .tag = tag};
    ck_assert_int_eq(pthread_create(&ts, NULL, status_thread, &s), 0);
    ck_assert_int_eq(pthread_create(&tf, NULL, flush_thread, &f), 0);

    ck_assert_msg(wait_returned(&s.done), "GetStatus blocked behind a stuck write");
    ck_assert_msg(wait_returned(&f.done), "FlushContent blocked behind a stuck write");
    ck_assert_msg(wait_returned(&a.done), "the stuck AddData never gave up");
    pthread_join(ta, NULL);
    pthread_join(ts, NULL);
    pthread_join(tf, NULL);
    ck_assert_uint_eq(s.rc, ERROR_SUCCESS);
    ck_assert_int_eq(s.st, PEERDIST_STATUS_UNAVAILABLE);
    ck_assert_uint_eq(a.rc, PEERDIST_ERROR_SERVICE_UNAVAILABLE); /* never sent whole */
    ck_assert_uint_eq(f.rc, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    ck_assert(HasOverlappedIoCompleted(&f.ov));

    td_resume(&td);
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, a.c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    free(buf);
}
END_TEST

/* ---- a daemon that refuses the connection (its owner is over a connection limit) ---- */

/*
 * The daemon's answer to a client over its per-uid connection cap (proto/README.md): a
 * status-only Reply to the Hello carrying ERROR_REQ_NOT_ACCEP, then the socket closes. This
 * fake gives that answer to every connection until stopped.
 */
struct refuser {
    int listen_fd;
    atomic_int stop;
    atomic_int refused; /* connections accepted (and answered) */
    pthread_t thread;
};

static bool read_full(int fd, uint8_t *buf, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, buf, n);
        if (r <= 0)
            return false;
        buf += r;
        n -= (size_t)r;
    }
    return true;
}

static void refuse(int fd)
{
    uint8_t hdr[FRAME_HEADER_SIZE], payload[512];
    if (!read_full(fd, hdr, sizeof(hdr)) || frame_header_length(hdr) > sizeof(payload) ||
        !read_full(fd, payload, frame_header_length(hdr)))
        return;
    Peerdist__Request *req = peerdist__request__unpack(NULL, frame_header_length(hdr), payload);
    if (!req)
        return;
    Peerdist__Reply reply = PEERDIST__REPLY__INIT;
    reply.id = req->id;
    reply.status = ERROR_REQ_NOT_ACCEP;
    uint8_t out[64];
    size_t n = frame_pack(&reply.base, out);
    peerdist__request__free_unpacked(req, NULL);
    (void)!write(fd, out, n);
}

static void *refuser_thread(void *arg)
{
    struct refuser *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = r->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        int fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&r->refused, 1); /* before the answer: the client counts on it */
        refuse(fd);
        close(fd);
    }
    return NULL;
}

static void refuser_start(struct refuser *r, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(r->listen_fd, 0);
    unlink(path);
    ck_assert_int_eq(bind(r->listen_fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    ck_assert_int_eq(listen(r->listen_fd, 16), 0);
    atomic_init(&r->stop, 0);
    atomic_init(&r->refused, 0);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, refuser_thread, r), 0);
}

static void refuser_stop(struct refuser *r, const char *path)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
    unlink(path);
}

START_TEST(refused_connection_fails_calls_with_req_not_accep)
{
    td_stop(&td);
    struct refuser r;
    refuser_start(&r, td.sock);
    PEERDIST_INSTANCE_HANDLE h = api_startup(); /* Startup itself never needs the daemon */

    /* GetStatus still succeeds: the service is unavailable to this instance. */
    PEERDIST_STATUS st = PEERDIST_STATUS_AVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);

    /* Calls fail synchronously with the refusal, each after trying again. */
    PEERDIST_CONTENT_TAG tag = api_make_tag(5);
    PEERDIST_CONTENT_HANDLE c;
    int before = atomic_load(&r.refused);
    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_REQ_NOT_ACCEP);
    ck_assert_int_gt(atomic_load(&r.refused), before);
    before = atomic_load(&r.refused);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), ERROR_REQ_NOT_ACCEP);
    ck_assert(HasOverlappedIoCompleted(&ov)); /* nothing pending is left behind */
    ck_assert_int_gt(atomic_load(&r.refused), before);
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 3, (PBYTE) "abc", 0, NULL, NULL, 0, &s),
        ERROR_REQ_NOT_ACCEP);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 3, (PBYTE) "abc"), ERROR_REQ_NOT_ACCEP);

    /* A registration reports UNAVAILABLE at once, and AVAILABLE once a connection is taken. */
    HANDLE ev = CreateEvent(NULL, TRUE, FALSE, NULL);
    OVERLAPPED rov = {.hEvent = ev};
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, NULL, 0, &rov, &st),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(WaitForSingleObject(ev, TD_WAIT_MS), WAIT_OBJECT_0);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
    ResetEvent(ev);
    ck_assert_uint_eq(PeerDistRegisterForStatusChangeNotification(h, NULL, 0, &rov, &st),
        ERROR_IO_PENDING);
    refuser_stop(&r, td.sock);
    td_start(&td);
    ck_assert_uint_eq(WaitForSingleObject(ev, TD_WAIT_MS), WAIT_OBJECT_0);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);

    ck_assert_uint_eq(PeerDistClientOpenContent(h, &tag, NULL, 0, &c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    CloseHandle(ev);
}
END_TEST

/* The child of real_daemon_refusal_reaches_the_caller, as an unprivileged uid: 0, or the
 * number of the first check that failed. */
static int refused_child(void)
{
    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    PEERDIST_INSTANCE_HANDLE h1, h2;
    PEERDIST_STATUS st;
    PEERDIST_CONTENT_TAG tag = api_make_tag(6);
    PEERDIST_CONTENT_HANDLE c;
    OVERLAPPED ov = {0};
    /* h1 takes the uid's one connection; h2's is refused. */
    if (PeerDistStartup(PEERDIST_VERSION, &h1, NULL) != ERROR_SUCCESS ||
        PeerDistGetStatus(h1, &st) != ERROR_SUCCESS || st != PEERDIST_STATUS_AVAILABLE)
        return 11;
    if (PeerDistStartup(PEERDIST_VERSION, &h2, NULL) != ERROR_SUCCESS)
        return 12;
    if (PeerDistClientOpenContent(h2, &tag, NULL, 0, &c) != ERROR_REQ_NOT_ACCEP)
        return 13;
    if (PeerDistClientFlushContent(h2, &tag, NULL, 0, &ov) != ERROR_REQ_NOT_ACCEP)
        return 14;
    if (PeerDistGetStatus(h2, &st) != ERROR_SUCCESS || st != PEERDIST_STATUS_UNAVAILABLE)
        return 15;
    /* Once h1's connection is gone (the daemon sees it soon after), h2's next call gets in. */
    if (PeerDistShutdown(h1) != ERROR_SUCCESS)
        return 16;
    DWORD rc = ERROR_REQ_NOT_ACCEP;
    for (int ms = 0; ms < TD_WAIT_MS && rc == ERROR_REQ_NOT_ACCEP; ms += 10) {
        rc = PeerDistClientOpenContent(h2, &tag, NULL, 0, &c);
        if (rc == ERROR_REQ_NOT_ACCEP)
            Sleep(10);
    }
    if (rc != ERROR_SUCCESS)
        return 17;
    if (PeerDistClientCloseContent(h2, c) != ERROR_SUCCESS || PeerDistShutdown(h2) != ERROR_SUCCESS)
        return 18;
    return 0;
}

/* The same with the real daemon, configured for one connection per unprivileged uid. */
START_TEST(real_daemon_refusal_reaches_the_caller)
{
    td_stop(&td);
    td_config_append(&td, "max_connections_per_uid = 1\n");
    td_start(&td);
    pid_t pid = fork(); /* before any instance: the child has one thread */
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(refused_child());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed check %d",
        WEXITSTATUS(status));
    ck_assert(td_log_contains(&td, "max_connections_per_uid"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib_conn");
    TCase *tc = tcase_create("lib_conn");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, first_call_after_restart_reconnects);
    tcase_add_test(tc, disabled_then_enabled_daemon_is_seen_by_an_idle_instance);
    tcase_add_test(tc, lone_flush_after_the_daemon_died_is_never_pending_then_failed);
    tcase_add_test(tc, restart_fails_every_pending_operation_once);
    tcase_add_test(tc, request_not_wholly_sent_fails_synchronously);
    tcase_add_test(tc, calls_return_within_deadline_while_a_write_is_stuck);
    tcase_add_test(tc, refused_connection_fails_calls_with_req_not_accep);
    tcase_add_test(tc, real_daemon_refusal_reaches_the_caller);
    tcase_add_test(tc, replies_reach_callers_whether_they_spin_or_not);
    suite_add_tcase(s, tc);
    return check_run(s);
}
