/*
 * win32.c - the Win32 shim: per-thread last error, event objects and I/O
 * completion ports (FIFO of packets, a pollable eventfd, optional completion
 * routine thread). Deviations from Windows are listed in client/README.md:
 * ports carry only PeerDist and posted packets, waiters wake in FIFO order,
 * NumberOfConcurrentThreads is ignored, events cannot be named.
 */
#include "win32.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

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

/* Waits on cv until *ready or the deadline; INFINITE waits forever. 0 = ready, -1 = timed out. */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline)
{
    if (!deadline)
        return pthread_cond_wait(cv, mu), 0;
    return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? -1 : 0;
}

/* ---- events ---- */

struct event_obj {
    struct hobj h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool manual_reset;
    bool signaled;
};

static void event_destroy(struct hobj *h)
{
    struct event_obj *e = (struct event_obj *)h;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
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
    pthread_mutex_init(&e->mu, NULL);
    cond_init_monotonic(&e->cv);
    e->manual_reset = manual;
    e->signaled = initial;
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
    pthread_mutex_lock(&e->mu);
    e->signaled = signaled;
    if (signaled) {
        if (e->manual_reset)
            pthread_cond_broadcast(&e->cv);
        else
            pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
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

PEERDIST_API DWORD WINAPI pdw32_WaitForSingleObject(HANDLE h, DWORD ms)
{
    struct event_obj *e = (struct event_obj *)handle_lookup(h, HT_EVENT);
    if (!e) {
        w32_set_error(ERROR_INVALID_HANDLE);
        return WAIT_FAILED;
    }
    struct timespec deadline = deadline_after(ms);
    DWORD rc = WAIT_OBJECT_0;
    pthread_mutex_lock(&e->mu);
    while (!e->signaled) {
        if (ms == 0 || wait_until(&e->cv, &e->mu, ms == INFINITE ? NULL : &deadline) != 0) {
            if (!e->signaled)
                rc = WAIT_TIMEOUT;
            break;
        }
    }
    if (rc == WAIT_OBJECT_0 && !e->manual_reset)
        e->signaled = false; /* auto-reset: one waiter takes it */
    pthread_mutex_unlock(&e->mu);
    hobj_put(&e->h);
    return rc;
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
    int efd; /* readable while packets are queued */
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

PEERDIST_API HANDLE WINAPI pdw32_CreateIoCompletionPort(HANDLE file, HANDLE existing,
    ULONG_PTR key, DWORD threads)
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
    }
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
        (void)!write(p->efd, &one, sizeof(one));
    }
    p->tail = pk;
    pthread_cond_signal(&p->cv);
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

/* Pops one packet. 0 = got one, else the Win32 error (WAIT_TIMEOUT, ERROR_ABANDONED_WAIT_0). */
static DWORD port_get(struct port_obj *p, DWORD ms, struct packet *out)
{
    struct timespec deadline = deadline_after(ms);
    DWORD rc = 0;
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->closed) {
        if (ms == 0 || wait_until(&p->cv, &p->mu, ms == INFINITE ? NULL : &deadline) != 0) {
            if (!p->head && !p->closed)
                rc = WAIT_TIMEOUT;
            break;
        }
    }
    if (rc == 0 && p->closed)
        rc = ERROR_ABANDONED_WAIT_0;
    if (rc == 0) {
        struct packet *pk = p->head;
        p->head = pk->next;
        if (!p->head) {
            p->tail = NULL;
            uint64_t drain;
            (void)!read(p->efd, &drain, sizeof(drain));
        }
        *out = *pk;
        free(pk);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatus(HANDLE port, LPDWORD bytes,
    PULONG_PTR key, LPOVERLAPPED *ov, DWORD ms)
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
    struct packet pk;
    DWORD rc = port_get(p, ms, &pk);
    hobj_put(&p->h);
    if (rc != 0) {
        w32_set_error(rc);
        return FALSE;
    }
    *bytes = pk.bytes;
    *key = pk.key;
    *ov = pk.ov;
    if (pk.status != ERROR_SUCCESS) {
        w32_set_error(pk.status);
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
    int fd = p->efd;
    hobj_put(&p->h);
    return fd;
}

static void *routine_thread(void *arg)
{
    struct port_obj *p = arg;
    struct packet pk;
    while (port_get(p, INFINITE, &pk) == 0)
        p->routine(pk.status, pk.bytes, pk.key, pk.ov, p->routine_ctx);
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
    hobj_get(&p->h); /* the thread's reference */
    if (pthread_create(&p->thread, NULL, routine_thread, p) != 0) {
        port_destroy(&p->h);
        w32_set_error(ERROR_NOT_ENOUGH_MEMORY);
        return NULL;
    }
    HANDLE h = handle_insert(&p->h);
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

void w32_begin(LPOVERLAPPED ov)
{
    ov->InternalHigh = 0;
    atomic_store_explicit((_Atomic ULONG_PTR *)&ov->Internal, STATUS_PENDING, memory_order_release);
}

void w32_complete(LPOVERLAPPED ov, HANDLE port, ULONG_PTR key, DWORD status, DWORD bytes)
{
    /* Read hEvent before Internal changes: after that the caller may reuse ov. */
    uintptr_t ev = (uintptr_t)ov->hEvent;
    ov->InternalHigh = bytes;
    atomic_store_explicit((_Atomic ULONG_PTR *)&ov->Internal, status, memory_order_release);
    if (ev)
        pdw32_SetEvent((HANDLE)(ev & ~(uintptr_t)1));
    pthread_mutex_lock(&overlapped_mu);
    if (overlapped_waiters)
        pthread_cond_broadcast(&overlapped_cv);
    pthread_mutex_unlock(&overlapped_mu);
    if (port && !(ev & 1)) {
        struct port_obj *p = (struct port_obj *)handle_lookup(port, HT_PORT);
        if (p) { /* a port closed meanwhile just loses the packet */
            port_post(p, bytes, key, ov, status);
            hobj_put(&p->h);
        }
    }
}

void w32_wait_overlapped(LPOVERLAPPED ov)
{
    pthread_mutex_lock(&overlapped_mu);
    overlapped_waiters++;
    while (!HasOverlappedIoCompleted(ov))
        pthread_cond_wait(&overlapped_cv, &overlapped_mu);
    overlapped_waiters--;
    pthread_mutex_unlock(&overlapped_mu);
}
