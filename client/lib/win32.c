/* SPDX-License-Identifier: MIT */
/*
 * win32.c - the Win32 shim: per-thread last error, event objects and waits
 * on them, Sleep, I/O completion ports (FIFO of packets, a pollable eventfd,
 * optional completion routine thread) and GetOverlappedResult. Deviations
 * from Windows are listed in client/README.md: ports carry only PeerDist and
 * posted packets, waiters wake in FIFO order, NumberOfConcurrentThreads is
 * ignored, events cannot be named, only events can be waited on. A thread about to
 * block for an operation of the library reads its replies itself (conn.h,
 * pdconn_help_wait), woken from that read through its own eventfd.
 */
#include "win32.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "handles.h"

static _Thread_local DWORD last_error;

void w32_set_error(DWORD err)
{
    last_error = err;
}

PEERDIST_API DWORD WINAPI pdw32_GetLastError(void)
{
    return last_error;
}

PEERDIST_API void WINAPI pdw32_SetLastError(DWORD dwErrCode)
{
    last_error = dwErrCode;
}

/* An absolute CLOCK_MONOTONIC deadline ms from now (conds use the monotonic clock). */
static struct timespec deadline_after(DWORD ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Milliseconds left until deadline (INFINITE: -1), at least 0. */
static int ms_left(DWORD ms, const struct timespec *deadline)
{
    if (ms == INFINITE)
        return -1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 +
        (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return left > 0 ? (int)left : 0;
}

/*
 * Waiters that read (conn.h: pdconn_help_wait): a thread about to block reads the replies
 * of its own operations itself, polling its eventfd, which whoever completes what it waits
 * for writes. One per thread, made at its first wait, closed when the thread exits. The
 * poll that sees it written reads it empty; a write that lands after that poll, before the
 * waiter leaves its helper list, only makes the thread's next helping poll return at once
 * for one spare turn, which costs less than a read of the eventfd after every wait.
 */
static pthread_key_t help_key;
static _Thread_local int help_fd = -1;

static void help_fd_close(void *v)
{
    close((int)(intptr_t)v - 1);
}

static int help_fd_get(void)
{
    if (help_fd < 0) {
        help_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (help_fd >= 0)
            pthread_setspecific(help_key, (void *)(intptr_t)(help_fd + 1));
    }
    return help_fd;
}

/* Ends a waiter's read early; not this thread's own: it delivers, so it is not reading. */
static void help_wake(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && fd != help_fd)
        (void)!write(fd, &one, sizeof(one));
}

/* A waiter reading replies, listed where its wakers look (a port, or overlapped_helpers). */
struct help_link {
    int fd;
    LPOVERLAPPED ov; /* GetOverlappedResult: the one it waits for */
    struct help_link *next;
};

static void help_unlink(struct help_link **head, struct help_link *h)
{
    for (struct help_link **p = head; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            return;
        }
}

/* Waits on cv until *ready or the deadline; INFINITE waits forever. 0 = ready, -1 = timed out. */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline)
{
    if (!deadline)
        return pthread_cond_wait(cv, mu), 0;
    return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? -1 : 0;
}

/* ---- events ----
 *
 * One lock for all events: WaitForMultipleObjects must see several events'
 * states at one instant and, waiting for all, consume the auto-reset ones
 * together. Each waiting thread has its own condition variable, linked from
 * every event it waits on, so SetEvent wakes only the threads waiting on it.
 */

static pthread_mutex_t events_mu = PTHREAD_MUTEX_INITIALIZER;

struct event_waiter {
    pthread_cond_t cv;
    int wake_fd; /* while the waiter reads replies instead (pdconn_help_wait), else -1 */
};

struct wait_link {
    struct event_waiter *waiter;
    LIST_ENTRY(wait_link) link;
};

struct event_obj {
    struct hobj h;
    bool manual_reset;
    bool signaled;                /* guarded by events_mu */
    LIST_HEAD(, wait_link) waits; /* guarded by events_mu */
};

static void event_destroy(struct hobj *h)
{
    free(h); /* no waiter left: each holds a reference while it waits */
}

static HANDLE event_create(BOOL manual, BOOL initial, const void *name)
{
    if (name) {
        w32_set_error(ERROR_NOT_SUPPORTED); /* named events: not in this shim */
        return NULL;
    }
    struct event_obj *e = calloc(1, sizeof(*e));
    if (!e) {
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    hobj_init(&e->h, HT_EVENT, event_destroy);
    e->manual_reset = manual;
    e->signaled = initial;
    LIST_INIT(&e->waits);
    HANDLE h = handle_insert(&e->h);
    if (!h) {
        event_destroy(&e->h);
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
    }
    return h;
}

PEERDIST_API HANDLE WINAPI pdw32_CreateEventA(LPSECURITY_ATTRIBUTES attrs, BOOL manual,
    BOOL initial, LPCSTR name)
{
    return event_create(manual, initial, name);
}

PEERDIST_API HANDLE WINAPI pdw32_CreateEventW(LPSECURITY_ATTRIBUTES attrs, BOOL manual,
    BOOL initial, LPCWSTR name)
{
    return event_create(manual, initial, name);
}

static BOOL event_set_state(HANDLE h, bool signaled)
{
    struct event_obj *e = (struct event_obj *)handle_lookup(h, HT_EVENT);
    if (!e) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    pthread_mutex_lock(&events_mu);
    e->signaled = signaled;
    if (signaled) {
        struct wait_link *l;
        LIST_FOREACH (l, &e->waits, link) {
            pthread_cond_signal(&l->waiter->cv);
            help_wake(l->waiter->wake_fd);
        }
    }
    pthread_mutex_unlock(&events_mu);
    hobj_put(&e->h);
    return TRUE;
}

PEERDIST_API BOOL WINAPI pdw32_SetEvent(HANDLE h)
{
    return event_set_state(h, true);
}

PEERDIST_API BOOL WINAPI pdw32_ResetEvent(HANDLE h)
{
    return event_set_state(h, false);
}

/*
 * With events_mu held: if the wait is satisfied, consumes what it takes
 * (auto-reset events go unsignaled) and returns WAIT_OBJECT_0 + index (for
 * all: WAIT_OBJECT_0); else WAIT_TIMEOUT. Any: the lowest signaled index.
 */
static DWORD events_take(struct event_obj **ev, DWORD n, BOOL all)
{
    if (!all) {
        for (DWORD i = 0; i < n; i++) {
            if (ev[i]->signaled) {
                if (!ev[i]->manual_reset)
                    ev[i]->signaled = false;
                return WAIT_OBJECT_0 + i;
            }
        }
        return WAIT_TIMEOUT;
    }
    for (DWORD i = 0; i < n; i++)
        if (!ev[i]->signaled)
            return WAIT_TIMEOUT;
    for (DWORD i = 0; i < n; i++)
        if (!ev[i]->manual_reset)
            ev[i]->signaled = false;
    return WAIT_OBJECT_0;
}

static DWORD events_wait(struct event_obj **ev, const HANDLE *handles, DWORD n, BOOL all, DWORD ms)
{
    struct timespec deadline = deadline_after(ms);
    struct event_waiter w = {.wake_fd = -1};
    struct wait_link links[MAXIMUM_WAIT_OBJECTS];
    bool linked = false, may_help = true;
    pthread_mutex_lock(&events_mu);
    DWORD rc = events_take(ev, n, all);
    while (rc == WAIT_TIMEOUT && ms != 0) {
        if (!linked) {
            cond_init_monotonic(&w.cv);
            for (DWORD i = 0; i < n; i++) {
                links[i].waiter = &w;
                LIST_INSERT_HEAD(&ev[i]->waits, &links[i], link);
            }
            linked = true;
        }
        int left = ms_left(ms, &deadline);
        if (may_help && left != 0 && (w.wake_fd = help_fd_get()) >= 0) {
            /* Read the replies that would set the events here, rather than be woken. */
            pthread_mutex_unlock(&events_mu);
            struct w32_wait_target t = {.events = handles, .nevents = n};
            int helped = pdconn_help_wait(&t, w.wake_fd, left);
            pthread_mutex_lock(&events_mu);
            w.wake_fd = -1;
            rc = events_take(ev, n, all);
            may_help = helped;
            if (helped && rc == WAIT_TIMEOUT && ms_left(ms, &deadline) == 0)
                break;
            continue;
        }
        if (left == 0)
            break;
        may_help = true; /* woken: an operation may be waiting to be read now */
        int timed_out = wait_until(&w.cv, &events_mu, ms == INFINITE ? NULL : &deadline);
        rc = events_take(ev, n, all);
        if (timed_out)
            break;
    }
    if (linked)
        for (DWORD i = 0; i < n; i++)
            LIST_REMOVE(&links[i], link);
    pthread_mutex_unlock(&events_mu);
    if (linked)
        pthread_cond_destroy(&w.cv);
    return rc;
}

PEERDIST_API DWORD WINAPI pdw32_WaitForMultipleObjects(DWORD n, const HANDLE *handles, BOOL all,
    DWORD ms)
{
    if (n == 0 || n > MAXIMUM_WAIT_OBJECTS || !handles) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return WAIT_FAILED;
    }
    struct event_obj *ev[MAXIMUM_WAIT_OBJECTS];
    DWORD got = 0, err = 0;
    for (; got < n; got++) {
        ev[got] = (struct event_obj *)handle_lookup(handles[got], HT_EVENT);
        if (!ev[got]) {
            err = ERROR_INVALID_HANDLE; /* events only: a port is not waitable here */
            break;
        }
        /* As Windows (STATUS_INVALID_PARAMETER_MIX): waiting for all, no handle twice. */
        for (DWORD j = 0; all && j < got; j++)
            if (ev[j] == ev[got])
                err = ERROR_INVALID_PARAMETER;
        if (err) {
            got++;
            break;
        }
    }
    DWORD rc = err ? WAIT_FAILED : events_wait(ev, handles, n, all, ms);
    for (DWORD i = 0; i < got; i++)
        hobj_put(&ev[i]->h);
    if (err)
        w32_set_error(err);
    return rc;
}

PEERDIST_API DWORD WINAPI pdw32_WaitForSingleObject(HANDLE h, DWORD ms)
{
    return pdw32_WaitForMultipleObjects(1, &h, FALSE, ms);
}

PEERDIST_API void WINAPI pdw32_Sleep(DWORD ms)
{
    if (ms == INFINITE)
        for (;;)
            pause();
    if (ms == 0) {
        sched_yield(); /* Windows: give up the rest of the time slice */
        return;
    }
    struct timespec until = deadline_after(ms);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
}

/* ---- completion ports ---- */

struct packet {
    DWORD bytes;
    DWORD status;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    struct packet *next;
};

struct port_obj {
    struct hobj h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct packet *head, *tail;
    bool closed;
    int efd;      /* readable while packets are queued, once fd_used */
    bool fd_used; /* peerdist_port_fd gave efd out: until then nobody polls it, and posting
                   * and dequeuing skip its two system calls */
    HANDLE self;  /* its handle: operations name their port by it */
    struct help_link
        *helpers; /* waiters reading replies for it: a packet or the close wakes them */
    PEERDIST_COMPLETION_ROUTINE routine;
    void *routine_ctx;
    pthread_t thread;
};

static void port_destroy(struct hobj *h)
{
    struct port_obj *p = (struct port_obj *)h;
    while (p->head) {
        struct packet *pk = p->head;
        p->head = pk->next;
        free(pk);
    }
    if (p->efd >= 0)
        close(p->efd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

static struct port_obj *port_new(void)
{
    struct port_obj *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    hobj_init(&p->h, HT_PORT, port_destroy);
    pthread_mutex_init(&p->mu, NULL);
    cond_init_monotonic(&p->cv);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        port_destroy(&p->h);
        return NULL;
    }
    return p;
}

PEERDIST_API HANDLE WINAPI pdw32_CreateIoCompletionPort(HANDLE file, HANDLE existing, ULONG_PTR key,
    DWORD threads)
{
    /* Only new, free-standing ports: there are no file handles to associate here. */
    if (file != INVALID_HANDLE_VALUE || existing != NULL) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return NULL;
    }
    struct port_obj *p = port_new();
    HANDLE h = p ? handle_insert(&p->h) : NULL;
    if (!h) {
        if (p)
            port_destroy(&p->h);
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->self = h;
    pthread_mutex_unlock(&p->mu);
    return h;
}

static BOOL port_post(struct port_obj *p, DWORD bytes, ULONG_PTR key, LPOVERLAPPED ov, DWORD status)
{
    struct packet *pk = malloc(sizeof(*pk));
    if (!pk)
        return FALSE;
    *pk = (struct packet){bytes, status, key, ov, NULL};
    pthread_mutex_lock(&p->mu);
    if (p->closed) {
        pthread_mutex_unlock(&p->mu);
        free(pk);
        return FALSE;
    }
    if (p->tail)
        p->tail->next = pk;
    else {
        p->head = pk;
        uint64_t one = 1;
        if (p->fd_used)
            (void)!write(p->efd, &one, sizeof(one));
    }
    p->tail = pk;
    pthread_cond_signal(&p->cv);
    for (struct help_link *h = p->helpers; h; h = h->next)
        help_wake(h->fd);
    pthread_mutex_unlock(&p->mu);
    return TRUE;
}

PEERDIST_API BOOL WINAPI pdw32_PostQueuedCompletionStatus(HANDLE port, DWORD bytes, ULONG_PTR key,
    LPOVERLAPPED ov)
{
    struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
    if (!p) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    BOOL ok = port_post(p, bytes, key, ov, ERROR_SUCCESS);
    hobj_put(&p->h);
    if (!ok)
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
    return ok;
}

/*
 * Pops up to max packets into out (Internal: the packet's status), waiting up
 * to ms for the first. 0 with *n packets, else the Win32 error (WAIT_TIMEOUT,
 * ERROR_ABANDONED_WAIT_0) and none.
 */
static DWORD port_get(struct port_obj *p, DWORD ms, OVERLAPPED_ENTRY *out, ULONG max, ULONG *n)
{
    struct timespec deadline = deadline_after(ms);
    DWORD rc = 0;
    *n = 0;
    bool may_help = true;
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->closed) {
        int left = ms == 0 ? 0 : ms_left(ms, &deadline);
        struct help_link h = {.fd = help_fd_get()};
        if (may_help && left != 0 && h.fd >= 0 && p->self) {
            /* Read the replies that would post here, rather than be woken by a packet. */
            h.next = p->helpers;
            p->helpers = &h;
            pthread_mutex_unlock(&p->mu);
            struct w32_wait_target t = {.port = p->self};
            may_help = pdconn_help_wait(&t, h.fd, left);
            pthread_mutex_lock(&p->mu);
            help_unlink(&p->helpers, &h);
            if (may_help && !p->head && !p->closed && ms_left(ms, &deadline) == 0) {
                rc = WAIT_TIMEOUT;
                break;
            }
            continue;
        }
        may_help = true; /* woken: an operation may be waiting to be read now */
        if (ms == 0 || left == 0 ||
            wait_until(&p->cv, &p->mu, ms == INFINITE ? NULL : &deadline) != 0) {
            if (!p->head && !p->closed)
                rc = WAIT_TIMEOUT;
            break;
        }
    }
    if (rc == 0 && p->closed)
        rc = ERROR_ABANDONED_WAIT_0;
    while (rc == 0 && p->head && *n < max) {
        struct packet *pk = p->head;
        p->head = pk->next;
        out[(*n)++] = (OVERLAPPED_ENTRY){.lpCompletionKey = pk->key,
            .lpOverlapped = pk->ov,
            .Internal = pk->status,
            .dwNumberOfBytesTransferred = pk->bytes};
        free(pk);
    }
    if (rc == 0 && !p->head) {
        p->tail = NULL;
        uint64_t drain;
        if (p->fd_used)
            (void)!read(p->efd, &drain, sizeof(drain));
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatus(HANDLE port, LPDWORD bytes, PULONG_PTR key,
    LPOVERLAPPED *ov, DWORD ms)
{
    if (!bytes || !key || !ov) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    *ov = NULL;
    struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
    if (!p) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    OVERLAPPED_ENTRY e;
    ULONG n;
    DWORD rc = port_get(p, ms, &e, 1, &n);
    hobj_put(&p->h);
    if (rc != 0) {
        w32_set_error(rc);
        return FALSE;
    }
    *bytes = e.dwNumberOfBytesTransferred;
    *key = e.lpCompletionKey;
    *ov = e.lpOverlapped;
    if (e.Internal != ERROR_SUCCESS) {
        w32_set_error((DWORD)e.Internal);
        return FALSE;
    }
    return TRUE;
}

/* Unlike the plain call, a failed operation dequeues as TRUE: its status is in the entry's Internal. */
PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatusEx(HANDLE port, LPOVERLAPPED_ENTRY entries,
    ULONG count, PULONG removed, DWORD ms, BOOL alertable)
{
    if (removed)
        *removed = 0;
    if (!entries || count == 0 || !removed) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
    if (!p) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    DWORD rc = port_get(p, ms, entries, count, removed);
    hobj_put(&p->h);
    if (rc != 0) {
        w32_set_error(rc);
        return FALSE;
    }
    return TRUE;
}

PEERDIST_API int peerdist_port_fd(HANDLE port)
{
    struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
    if (!p) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    int fd = p->efd;
    if (!p->fd_used) {
        p->fd_used = true;
        uint64_t one = 1;
        if (p->head) /* what is queued already makes it readable */
            (void)!write(p->efd, &one, sizeof(one));
    }
    pthread_mutex_unlock(&p->mu);
    hobj_put(&p->h);
    return fd;
}

static void *routine_thread(void *arg)
{
    struct port_obj *p = arg;
    OVERLAPPED_ENTRY e;
    ULONG n;
    while (port_get(p, INFINITE, &e, 1, &n) == 0)
        p->routine((DWORD)e.Internal, e.dwNumberOfBytesTransferred, e.lpCompletionKey,
            e.lpOverlapped, p->routine_ctx);
    hobj_put(&p->h);
    return NULL;
}

PEERDIST_API HANDLE peerdist_port_create_routine(PEERDIST_COMPLETION_ROUTINE routine, void *ctx)
{
    if (!routine) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return NULL;
    }
    struct port_obj *p = port_new();
    if (!p) {
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    p->routine = routine;
    p->routine_ctx = ctx;
    hobj_get(&p->h);            /* the thread's reference */
    pthread_mutex_lock(&p->mu); /* the thread waits without helping until the handle is known */
    if (pthread_create(&p->thread, NULL, routine_thread, p) != 0) {
        pthread_mutex_unlock(&p->mu);
        port_destroy(&p->h);
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    HANDLE h = handle_insert(&p->h);
    p->self = h;
    pthread_mutex_unlock(&p->mu);
    if (!h) {
        pthread_mutex_lock(&p->mu);
        p->closed = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        hobj_put(&p->h);
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
    }
    return h;
}

static void port_close(struct port_obj *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = true; /* waiters wake with ERROR_ABANDONED_WAIT_0 */
    pthread_cond_broadcast(&p->cv);
    for (struct help_link *h = p->helpers; h; h = h->next)
        help_wake(h->fd);
    pthread_mutex_unlock(&p->mu);
    if (p->routine) {
        /* No routine runs once CloseHandle returns, unless a routine closes its own port. */
        if (pthread_equal(p->thread, pthread_self()))
            pthread_detach(p->thread);
        else
            pthread_join(p->thread, NULL);
    }
    hobj_put(&p->h);
}

PEERDIST_API BOOL WINAPI pdw32_CloseHandle(HANDLE h)
{
    struct hobj *obj = handle_remove(h, HT_PORT | HT_EVENT);
    if (!obj) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    if (obj->type == HT_PORT)
        port_close((struct port_obj *)obj);
    else
        hobj_put(obj);
    return TRUE;
}

BOOL w32_is_port_or_null(HANDLE h)
{
    if (!h)
        return TRUE;
    struct hobj *obj = handle_lookup(h, HT_PORT);
    if (obj)
        hobj_put(obj);
    return obj != NULL;
}

/* ---- completion delivery ---- */

static pthread_mutex_t overlapped_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t overlapped_cv = PTHREAD_COND_INITIALIZER;
static int overlapped_waiters;
static struct help_link *overlapped_helpers; /* GetOverlappedResult waiters reading replies */

/*
 * Internal is the flag other threads poll (HasOverlappedIoCompleted, GetOverlappedResult):
 * stored with release after everything else the completion fills, loaded with acquire
 * before any of it is read. InternalHigh is accessed atomically too, so a caller that
 * reads it early races with nothing.
 */
static _Atomic ULONG_PTR *ov_internal(LPOVERLAPPED ov)
{
    return (_Atomic ULONG_PTR *)&ov->Internal;
}

static _Atomic ULONG_PTR *ov_internal_high(LPOVERLAPPED ov)
{
    return (_Atomic ULONG_PTR *)&ov->InternalHigh;
}

void w32_begin(LPOVERLAPPED ov)
{
    atomic_store_explicit(ov_internal_high(ov), 0, memory_order_relaxed);
    atomic_store_explicit(ov_internal(ov), STATUS_PENDING, memory_order_release);
}

void w32_finish_sync(LPOVERLAPPED ov, DWORD status)
{
    atomic_store_explicit(ov_internal(ov), status, memory_order_release);
}

void w32_complete(LPOVERLAPPED ov, HANDLE port, ULONG_PTR key, DWORD status, DWORD bytes)
{
    /* Read hEvent before Internal changes: after that the caller may reuse ov. */
    uintptr_t ev = (uintptr_t)ov->hEvent;
    atomic_store_explicit(ov_internal_high(ov), bytes, memory_order_relaxed);
    atomic_store_explicit(ov_internal(ov), status, memory_order_release);
    if (ev)
        pdw32_SetEvent((HANDLE)(ev & ~(uintptr_t)1));
    pthread_mutex_lock(&overlapped_mu);
    if (overlapped_waiters)
        pthread_cond_broadcast(&overlapped_cv);
    for (struct help_link *h = overlapped_helpers; h; h = h->next)
        if (h->ov == ov)
            help_wake(h->fd);
    pthread_mutex_unlock(&overlapped_mu);
    if (port && !(ev & 1)) {
        struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
        if (p) { /* a port closed meanwhile just loses the packet */
            port_post(p, bytes, key, ov, status);
            hobj_put(&p->h);
        }
    }
}

static DWORD ov_status(LPOVERLAPPED ov)
{
    return (DWORD)atomic_load_explicit(ov_internal(ov), memory_order_acquire);
}

/* Waits until ov completes (Internal leaves STATUS_PENDING); returns its status. */
static DWORD wait_overlapped(LPOVERLAPPED ov)
{
    DWORD status;
    bool may_help = true;
    struct help_link h = {.fd = help_fd_get(), .ov = ov};
    pthread_mutex_lock(&overlapped_mu);
    overlapped_waiters++;
    while ((status = ov_status(ov)) == STATUS_PENDING) {
        if (may_help && h.fd >= 0) {
            /* Read the reply that completes ov here, rather than be woken by its reader. */
            h.next = overlapped_helpers;
            overlapped_helpers = &h;
            pthread_mutex_unlock(&overlapped_mu);
            struct w32_wait_target t = {.ov = ov};
            may_help = pdconn_help_wait(&t, h.fd, -1);
            pthread_mutex_lock(&overlapped_mu);
            help_unlink(&overlapped_helpers, &h);
            continue;
        }
        pthread_cond_wait(&overlapped_cv, &overlapped_mu);
        may_help = true; /* woken: an operation may be waiting to be read now */
    }
    overlapped_waiters--;
    pthread_mutex_unlock(&overlapped_mu);
    return status;
}

BOOL w32_overlapped_result(LPOVERLAPPED ov, LPDWORD bytes, BOOL wait)
{
    if (!ov || !bytes) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    DWORD status = ov_status(ov);
    if (status == STATUS_PENDING) {
        if (!wait) {
            w32_set_error(ERROR_IO_INCOMPLETE);
            return FALSE;
        }
        status = wait_overlapped(ov);
    }
    /* After the acquire load of Internal: the completion's byte count, never a stale one. */
    *bytes = (DWORD)atomic_load_explicit(ov_internal_high(ov), memory_order_relaxed);
    if (status != ERROR_SUCCESS) {
        w32_set_error(status);
        return FALSE;
    }
    return TRUE;
}

/*
 * Windows waits on hEvent, or on hFile when there is none. A PeerDist
 * operation belongs to no file (Microsoft does not say which handle a Windows
 * 7 program should pass), so hFile is ignored and the wait is on the
 * operation itself, as PeerDistGetOverlappedResult does.
 */
PEERDIST_API BOOL WINAPI pdw32_GetOverlappedResult(HANDLE hFile, LPOVERLAPPED ov, LPDWORD bytes,
    BOOL wait)
{
    return w32_overlapped_result(ov, bytes, wait);
}

/* ---- fork() ----
 *
 * Ports and events the child inherits answer ERROR_INVALID_HANDLE there (handles.c);
 * these handlers keep the shim's own global locks usable in the child.
 */

static void fork_prepare(void)
{
    pthread_mutex_lock(&events_mu);
    pthread_mutex_lock(&overlapped_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&overlapped_mu);
    pthread_mutex_unlock(&events_mu);
}

/* The locks this thread took in fork_prepare; a fresh condition variable, since the
 * parent's waiters do not exist here. */
static void fork_child(void)
{
    pthread_cond_init(&overlapped_cv, NULL);
    overlapped_waiters = 0;
    overlapped_helpers = NULL;
    pthread_mutex_unlock(&overlapped_mu);
    pthread_mutex_unlock(&events_mu);
    /* The forking thread's wake-up eventfd is the parent's thread's too: the child makes
     * its own, or each would drain the other's wake-ups. */
    if (help_fd >= 0) {
        close(help_fd);
        help_fd = -1;
        pthread_setspecific(help_key, NULL);
    }
}

/* The child's copy of an inherited port's pollable fd (the parent's stays open). */
static void port_forget(struct hobj *h)
{
    close(((struct port_obj *)h)->efd);
}

__attribute__((constructor)) static void w32_init(void)
{
    pthread_key_create(&help_key, help_fd_close);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    handle_on_fork(HT_PORT, port_forget);
}
