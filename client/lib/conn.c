/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the library's connection to peerdistd.
 *
 * Reading is a token: whoever holds `reading` owns the read side of the
 * socket and delivers every reply it finds, its own or not. A synchronous
 * caller takes the token itself when it is free, so a call with nothing else
 * in flight is one write and one read on the caller's thread (no hand-off).
 * A caller about to block waiting for an asynchronous operation (win32.c's
 * waits) does the same through pdconn_help_wait: it takes the token if nobody
 * but the background thread holds it (that thread hands it over), reads once,
 * delivering every reply, and puts it down; whoever completes what it waits
 * for writes its eventfd, which ends its read early.
 * The per-connection background thread takes the token only while
 * asynchronous operations or a status registration need someone to read; once
 * waiters read ("lazy", lazy_look) it is not woken per request but looks each
 * PD_LAZY_TICK_MS, and reads what no waiter read across a whole tick.
 * Whoever holds the token and sees the socket die completes everything
 * pending with PEERDIST_ERROR_SERVICE_UNAVAILABLE.
 *
 * Writing is a token too (`writing`): one write at a time, without c->mu
 * held and never past the call's deadline (a stopped daemon fills the socket;
 * the writer then gives up and drops the connection). Waiting for either
 * token is a wait on c->cv with the deadline, so no caller waits on another's
 * write. The socket is closed only once no write is in progress, so a request
 * its caller wrote and did not finish is never completed asynchronously: its
 * caller gets the synchronous error. In lazy mode asynchronous requests are
 * corked instead (c->cork): written together, in order, by the next write, a
 * blocking waiter, or the background thread's next look; if that write fails
 * they complete with PEERDIST_ERROR_SERVICE_UNAVAILABLE, as if unanswered.
 *
 * Lock order: conns_mu, then c->mu; completion delivery (win32.c) takes only
 * its own locks, so it may run under c->mu.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "win32.h"

#define OP_BUCKETS 256
/* Bytes a read() asks for when no large frame is in progress. */
#define READ_CHUNK (64 * 1024)
/* A synchronous caller's blocking read returns at least this often to check its deadline. */
#define PD_READ_SLICE_MS 1000
#define SEND_STACK_BYTES 1024
/* Lazy mode (lazy_look): how often the background thread looks, and for how long idle. */
#define PD_LAZY_TICK_MS 1
#define PD_LAZY_IDLE_TICKS 100
/* Lazy: asynchronous requests wait in c->cork, written together, up to this many bytes. */
#define PD_CORK_MAX (64 * 1024)
/*
 * A synchronous caller, its request sent, looks for the reply without blocking for this long,
 * giving the CPU up between looks (sched_yield: a daemon sharing the CPU runs), before it
 * sleeps in read(). A small call's reply comes in about 15 us: a caller that sleeps pays a
 * wake-up on top (GetStatus 21.5 us sleeping, 14 us spinning; bench/README.md, 2026-12-03).
 * PEERDIST_SYNC_SPIN_US (0 .. 1000, read at PeerDistStartup) sets it; 0 never spins. A
 * connection whose last PD_SPIN_MISSES spins in a row saw nothing come (a busy daemon, long
 * calls) spins again only every PD_SPIN_PROBE_EVERY-th time, until one sees something: under
 * load, spinning callers would take the CPU the daemon needs (1,000 clients' p99 5.0 -> 6.0 ms
 * when all spun). One miss alone (a reply a little late) does not stop it.
 */
#define PD_SYNC_SPIN_US 20
#define PD_SYNC_SPIN_US_MAX 1000
#define PD_SPIN_MISSES 4
#define PD_SPIN_PROBE_EVERY 16
/* write_all, write_frame: the daemon had closed the connection; nothing was written. */
#define WRITE_PEER_CLOSED 1

struct pd_op {
    uint64_t id;
    bool async;
    bool done;              /* sync: reply (or failure) arrived */
    DWORD status;           /* sync */
    Peerdist__Reply *reply; /* sync */
    struct pd_async a;      /* async */
    struct pd_multi *multi; /* async: one part of a split request, or NULL */
    struct pd_op *next;
    struct pd_op *anext, **aprev; /* async: the connection's list of them, for waiters */
    int pass_fd;                  /* sync: a descriptor sent with the request (SCM_RIGHTS), or -1 */
};

/* One OVERLAPPED completed by several requests (a buffer larger than PD_MAX_CHUNK). */
struct pd_multi {
    atomic_uint remaining; /* parts not answered yet */
    atomic_uint status;    /* the first failure, else ERROR_SUCCESS */
    atomic_uint bytes;     /* summed over the parts */
    struct pd_async a;
};

struct status_reg {
    bool active;
    bool ex;
    LPOVERLAPPED ov;
    HANDLE port;
    ULONG_PTR key;
    void *out;
    uint32_t last_reported; /* the first registration's baseline is DISABLED */
};

struct pdconn {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* callers waiting for a reply or the read token */
    pthread_cond_t bg_cv; /* the background thread waiting for work */
    unsigned waiters;     /* callers waiting on cv: no wake-up when there are none */
    int fd;
    dev_t fd_dev; /* the socket's identity, so a forked child closes only its copy of it */
    ino_t fd_ino;
    bool broken;     /* given up on (write failed, deadline passed): shut down, cleanup pending */
    bool reading;    /* the read token */
    bool bg_reading; /* ... held by the background thread, which hands it to a waiter */
    unsigned yield_want; /* waiters asking the background thread for the token */
    unsigned helpers;    /* waiters using c (pdconn_help_wait): c is not freed under them */
    bool lazy;           /* waiters read: the background thread looks each tick (lazy_look) */
    uint8_t *cork;       /* lazy: asynchronous requests' frames not written yet (send_locked) */
    size_t cork_len, cork_cap;
    uint64_t help_reads; /* reads done by waiters, for lazy_look */
    bool writing;        /* the write token */
    bool stop;
    DWORD down_error;     /* why the last connection attempt failed (synchronous error of calls) */
    int down_errno;       /* ... as an errno value, for messages (pdconn_down_reason) */
    int timeout_ms;       /* PD_CALL_TIMEOUT_MS, or PEERDIST_CALL_TIMEOUT_MS */
    int spin_us;          /* PD_SYNC_SPIN_US, or PEERDIST_SYNC_SPIN_US */
    unsigned spin_missed; /* waits since one saw something come while spinning (token holder's) */
    int connect_timeout_ms; /* connect() plus Hello: PD_HELLO_TIMEOUT_MS unless set at creation */
    uint64_t generation;
    uint64_t next_id;
    struct frame_buf rbuf; /* touched only by the token holder */
    struct pd_op *ops[OP_BUCKETS];
    struct pd_op *alist; /* the asynchronous ones, also in ops */
    unsigned nasync;
    uint32_t status;
    struct status_reg reg;
    int wake_fd;
    pthread_t thread;
    bool has_thread;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct pdconn *conn_next, **conn_prev; /* the list of live connections (conns) */
};

const char *pdconn_default_path(void)
{
    const char *p = getenv("PEERDIST_SOCKET");
    return p && *p ? p : PD_DEFAULT_SOCKET;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The call deadline: PEERDIST_CALL_TIMEOUT_MS (1 ms .. 1 hour) if set, else PD_CALL_TIMEOUT_MS. */
static int call_timeout_ms(void)
{
    const char *v = getenv("PEERDIST_CALL_TIMEOUT_MS");
    char *end;
    long ms = v && *v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && ms >= 1 && ms <= 3600 * 1000 ? (int)ms : PD_CALL_TIMEOUT_MS;
}

/* PEERDIST_SYNC_SPIN_US (0 .. PD_SYNC_SPIN_US_MAX) if set, else PD_SYNC_SPIN_US. */
static int sync_spin_us(void)
{
    const char *v = getenv("PEERDIST_SYNC_SPIN_US");
    char *end;
    long us = v && *v ? strtol(v, &end, 10) : -1;
    return v && *v && !*end && us >= 0 && us <= PD_SYNC_SPIN_US_MAX ? (int)us : PD_SYNC_SPIN_US;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wakes callers waiting on cv, if any (a needless wake-up costs as much as a round trip). */
static void wake_waiters(struct pdconn *c)
{
    if (c->waiters)
        pthread_cond_broadcast(&c->cv);
}

static bool bg_has_work(const struct pdconn *c)
{
    return c->nasync > 0 || c->reg.active || c->stop;
}

/* Whether the background thread should take the read token now. */
static bool bg_should_read(const struct pdconn *c)
{
    return (c->nasync > 0 || c->reg.active) && c->fd >= 0 && !c->reading && !c->yield_want;
}

static void wait_on(struct pdconn *c, pthread_cond_t *cv)
{
    c->waiters += cv == &c->cv;
    pthread_cond_wait(cv, &c->mu);
    c->waiters -= cv == &c->cv;
}

static void timed_wait(struct pdconn *c, pthread_cond_t *cv, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    c->waiters += cv == &c->cv;
    pthread_cond_timedwait(cv, &c->mu, &ts);
    c->waiters -= cv == &c->cv;
}

/* Waits on c->cv until woken or the deadline (ms, CLOCK_MONOTONIC); false once it has passed. */
static bool wait_until(struct pdconn *c, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return false;
    timed_wait(c, &c->cv, left);
    return true;
}

/* ---- pending operations ---- */

static void op_insert(struct pdconn *c, struct pd_op *op)
{
    struct pd_op **b = &c->ops[op->id % OP_BUCKETS];
    op->next = *b;
    *b = op;
    if (!op->async)
        return;
    op->anext = c->alist;
    op->aprev = &c->alist;
    if (c->alist)
        c->alist->aprev = &op->anext;
    c->alist = op;
    if (c->nasync++ == 0 && !c->lazy)
        pthread_cond_signal(&c->bg_cv); /* the background thread should read */
}

static struct pd_op *op_remove(struct pdconn *c, uint64_t id)
{
    for (struct pd_op **p = &c->ops[id % OP_BUCKETS]; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            struct pd_op *op = *p;
            *p = op->next;
            if (op->async) {
                c->nasync--;
                *op->aprev = op->anext;
                if (op->anext)
                    op->anext->aprev = op->aprev;
            }
            return op;
        }
    }
    return NULL;
}

static void multi_part_done(struct pd_multi *m, DWORD status, DWORD bytes, unsigned parts)
{
    unsigned none = ERROR_SUCCESS;
    if (status != ERROR_SUCCESS)
        atomic_compare_exchange_strong(&m->status, &none, status);
    atomic_fetch_add(&m->bytes, bytes);
    if (atomic_fetch_sub(&m->remaining, parts) == parts) {
        w32_complete(m->a.ov, m->a.port, m->a.key, atomic_load(&m->status), atomic_load(&m->bytes));
        if (m->a.on_delivered)
            m->a.on_delivered(m->a.arg);
        free(m);
    }
}

/* reply is NULL when the operation ends without one (connection lost, aborted). */
static void op_complete_async(struct pd_op *op, const Peerdist__Reply *reply, DWORD status)
{
    DWORD bytes = 0;
    if (op->a.on_reply)
        op->a.on_reply(op, reply, &status, &bytes);
    if (op->multi) {
        multi_part_done(op->multi, status, bytes, 1);
    } else {
        w32_complete(op->a.ov, op->a.port, op->a.key, status, bytes);
        if (op->a.on_delivered)
            op->a.on_delivered(op->a.arg);
    }
    free(op);
}

void *pd_op_arg(const struct pd_op *op)
{
    return op->a.arg;
}

/* Ends every pending operation with `status` (called with c->mu held). */
static void fail_all_locked(struct pdconn *c, DWORD status)
{
    for (int i = 0; i < OP_BUCKETS; i++) {
        while (c->ops[i]) {
            struct pd_op *op = c->ops[i];
            c->ops[i] = op->next;
            if (op->async) {
                op_complete_async(op, NULL, status);
            } else {
                op->status = status;
                op->done = true;
            }
        }
    }
    c->nasync = 0;
    c->alist = NULL;
    wake_waiters(c);
}

/* ---- status registration ---- */

static uint32_t current_status_locked(struct pdconn *c)
{
    return c->fd >= 0 ? c->status : PEERDIST_STATUS_UNAVAILABLE;
}

static void reg_fill(struct status_reg *r, uint32_t status)
{
    if (r->ex) {
        PEERDIST_STATUS_INFO *info = r->out;
        info->status = (PEERDIST_STATUS)status;
        info->dwMinVer = PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1;
        info->dwMaxVer = PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2;
    } else {
        *(PEERDIST_STATUS *)r->out = (PEERDIST_STATUS)status;
    }
}

/* Fires the registration if the status differs from the last one reported. */
static void reg_check_locked(struct pdconn *c)
{
    struct status_reg *r = &c->reg;
    uint32_t st = current_status_locked(c);
    if (!r->active || st == r->last_reported)
        return;
    r->active = false;
    r->last_reported = st;
    reg_fill(r, st);
    w32_complete(r->ov, r->port, r->key, ERROR_SUCCESS, 0);
}

/* ---- socket ---- */

/* Waits until fd takes more bytes, or the deadline (ms, CLOCK_MONOTONIC) passes: 0, or -1. */
static int wait_writable(int fd, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    if (left <= 0 ||
        (poll(&pfd, 1, (int)(left < INT32_MAX ? left : INT32_MAX)) < 0 && errno != EINTR))
        return -1;
    return 0;
}

/* The daemon has closed its end: a write to it fails at once with one of these. */
static bool peer_closed(int e)
{
    return e == EPIPE || e == ECONNRESET;
}

/*
 * Writes buf whole before the deadline (ms, CLOCK_MONOTONIC): 0, or -1 when the socket
 * failed or the deadline passed first (then part of it may have gone out), or
 * WRITE_PEER_CLOSED when the daemon had closed its end before the first byte went out.
 */
static int write_all(int fd, const uint8_t *buf, size_t n, int64_t deadline)
{
    bool first = true;
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
            first = false;
            continue;
        }
        if (w < 0 && first && peer_closed(errno))
            return WRITE_PEER_CLOSED;
        if (w == 0 || (errno != EAGAIN && errno != EINTR))
            return -1;
        if (wait_writable(fd, deadline) != 0)
            return -1;
    }
    return 0;
}

/* write_all, with pass_fd (if >= 0) attached to the frame's first bytes (SCM_RIGHTS). */
static int write_frame(int fd, const uint8_t *buf, size_t n, int pass_fd, int64_t deadline)
{
    bool sent = false; /* the descriptor's message went out: the frame has begun */
    while (pass_fd >= 0) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        memset(&cbuf, 0, sizeof(cbuf));
        struct iovec iov = {(void *)buf, n};
        struct msghdr msg = {.msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = cbuf.buf,
            .msg_controllen = sizeof(cbuf.buf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
            sent = true;
            break;
        }
        if (w < 0 && peer_closed(errno))
            return WRITE_PEER_CLOSED;
        if (w == 0 || (errno != EAGAIN && errno != EINTR))
            return -1;
        if (wait_writable(fd, deadline) != 0)
            return -1;
    }
    int rc = write_all(fd, buf, n, deadline);
    return rc == WRITE_PEER_CLOSED && sent ? -1 : rc;
}

/* Gives up on the connection: a reader wakes with EOF (and a writer with EPIPE) and cleans up. */
static void drop_locked(struct pdconn *c)
{
    if (c->fd >= 0 && !c->broken) {
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);
    }
}

/*
 * Closes the socket and fails what is pending. Caller holds c->mu and the read token. A
 * write in progress ends first (the shutdown wakes it): its request, not wholly sent, is
 * its caller's synchronous failure, never a completion.
 */
static void lost_locked(struct pdconn *c)
{
    drop_locked(c);
    while (c->writing)
        wait_on(c, &c->cv);
    close(c->fd);
    c->fd = -1;
    c->broken = false;
    c->cork_len = 0; /* their operations fail below */
    frame_buf_reset(&c->rbuf);
    fail_all_locked(c, c->stop ? ERROR_OPERATION_ABORTED : PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    reg_check_locked(c);
}

static void handle_notice(struct pdconn *c, const Peerdist__Reply *r)
{
    if (r->body_case != PEERDIST__REPLY__BODY_STATUS_CHANGED)
        return;
    pthread_mutex_lock(&c->mu);
    c->status = r->status_changed->service_status;
    reg_check_locked(c);
    pthread_mutex_unlock(&c->mu);
}

static void handle_reply(struct pdconn *c, Peerdist__Reply *r)
{
    if (r->id == 0) {
        handle_notice(c, r);
        peerdist__reply__free_unpacked(r, NULL);
        return;
    }
    pthread_mutex_lock(&c->mu);
    struct pd_op *op = op_remove(c, r->id);
    if (op && !op->async) {
        op->reply = r;
        op->status = r->status;
        op->done = true;
        wake_waiters(c);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    pthread_mutex_unlock(&c->mu);
    if (op)
        op_complete_async(op, r, r->status);
    peerdist__reply__free_unpacked(r, NULL); /* an unknown id is ignored */
}

enum read_result { READ_DATA, READ_IDLE, READ_LOST };

/* Room to ask read() for: the rest of a large frame in progress, else READ_CHUNK. */
static size_t read_want(const struct frame_buf *fb)
{
    size_t have = fb->len - fb->start;
    if (have >= FRAME_HEADER_SIZE) {
        size_t frame = FRAME_HEADER_SIZE + (size_t)frame_header_length(fb->data + fb->start);
        if (frame > have && frame - have > READ_CHUNK &&
            frame <= FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD)
            return frame - have;
    }
    return READ_CHUNK;
}

/*
 * A caller waiting for its reply spins first (PD_SYNC_SPIN_US, PD_SPIN_MISSES): look(arg),
 * which must not block, until it sees something (true), yielding the CPU between tries, for
 * up to c->spin_us; false: nothing came (or no spin this time), block now. The token
 * holder's; errno is look's when it saw something.
 */
static bool spin_wait(struct pdconn *c, bool (*look)(void *arg), void *arg)
{
    if (c->spin_us <= 0)
        return false;
    bool hit = false;
    if (c->spin_missed < PD_SPIN_MISSES ||
        (c->spin_missed - PD_SPIN_MISSES) % PD_SPIN_PROBE_EVERY == 0) {
        int64_t end = now_us() + c->spin_us;
        while (!(hit = look(arg)) && now_us() < end)
            sched_yield();
    }
    c->spin_missed = hit ? 0 : c->spin_missed + 1 == 0 ? PD_SPIN_MISSES : c->spin_missed + 1;
    return hit;
}

struct recv_look {
    int fd;
    uint8_t *space;
    size_t avail;
    ssize_t got;
};

static bool recv_look(void *arg)
{
    struct recv_look *r = arg;
    r->got = recv(r->fd, r->space, r->avail, MSG_DONTWAIT);
    return r->got >= 0 || errno != EAGAIN;
}

/* A synchronous caller's read: spin_wait, then read() (bounded by SO_RCVTIMEO). */
static ssize_t read_sync(struct pdconn *c, int fd, uint8_t *space, size_t avail)
{
    struct recv_look r = {fd, space, avail, -1};
    return spin_wait(c, recv_look, &r) ? r.got : read(fd, space, avail);
}

struct poll_look {
    struct pollfd *pfd;
    int n;
};

static bool poll_look(void *arg)
{
    struct poll_look *p = arg;
    p->n = poll(p->pfd, 2, 0);
    return p->n != 0;
}

/* A waiting caller's poll of the socket and its wake-up fd: spin_wait, then poll(). */
static int poll_waiter(struct pdconn *c, struct pollfd pfd[2], int timeout_ms)
{
    struct poll_look p = {pfd, 0};
    return spin_wait(c, poll_look, &p) ? p.n : poll(pfd, 2, timeout_ms);
}

/*
 * One poll + read on the socket, delivering every whole reply found (spin: a caller waiting
 * for its reply, not the background thread, which never spins). The caller holds the read
 * token (so c->fd is stable) but not c->mu.
 */
static enum read_result read_some(struct pdconn *c, int fd, int wake_fd, int timeout_ms, bool spin)
{
    /*
     * The background thread polls so that its wake-up fd can stop it. A
     * synchronous caller reads straight away (one system call fewer per round
     * trip); SO_RCVTIMEO bounds that read so the caller can check its deadline.
     */
    if (wake_fd >= 0) {
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int n = spin ? poll_waiter(c, pfd, timeout_ms) : poll(pfd, 2, timeout_ms);
        if (n < 0 && errno != EINTR)
            return READ_LOST;
        if (n <= 0)
            return READ_IDLE;
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            (void)!read(wake_fd, &v, sizeof(v));
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            return READ_IDLE;
    }
    size_t avail;
    uint8_t *space = frame_buf_space(&c->rbuf, read_want(&c->rbuf), &avail);
    if (!space)
        return READ_LOST;
    ssize_t got = wake_fd >= 0 ? read(fd, space, avail) : read_sync(c, fd, space, avail);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return READ_IDLE;
    if (got <= 0)
        return READ_LOST;
    frame_buf_commit(&c->rbuf, (size_t)got);
    const uint8_t *payload;
    uint32_t len;
    enum frame_status st;
    while ((st = frame_buf_next(&c->rbuf, &payload, &len)) == FRAME_OK) {
        Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, payload);
        if (!r)
            return READ_LOST; /* a daemon that sends garbage is treated as gone */
        handle_reply(c, r);
    }
    return st == FRAME_TOO_BIG ? READ_LOST : READ_DATA;
}

/*
 * Takes the read token for one read_some (bg: on the background thread, polling wake_fd;
 * else a caller: synchronous with wake_fd -1, or a waiter polling its own wake_fd for at
 * most timeout_ms); called and returns with c->mu held.
 */
static enum read_result read_turn_ex(struct pdconn *c, int wake_fd, int timeout_ms, bool bg)
{
    c->reading = true;
    c->bg_reading = bg;
    int fd = c->fd;
    pthread_mutex_unlock(&c->mu);
    enum read_result rr = read_some(c, fd, wake_fd, timeout_ms, !bg);
    pthread_mutex_lock(&c->mu);
    if (rr == READ_LOST || c->broken)
        lost_locked(c);
    c->reading = false;
    c->bg_reading = false;
    wake_waiters(c);
    if (!bg && bg_has_work(c) && !c->lazy)
        pthread_cond_signal(&c->bg_cv); /* hand the token back to the background thread */
    return rr;
}

static enum read_result read_turn(struct pdconn *c, int wake_fd)
{
    return read_turn_ex(c, wake_fd, -1, wake_fd >= 0);
}

/*
 * Hello on a new socket, answered before the deadline: 0, else -1 with c->down_error set
 * (ERROR_REQ_NOT_ACCEP when the daemon refused this client, proto/README.md).
 */
static int hello_locked(struct pdconn *c, int fd, int64_t deadline)
{
    c->down_error = PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = PD_PROTOCOL_VERSION_MIN;
    h.max_version = PD_PROTOCOL_VERSION_MAX;
    h.software = "libpeerdist " PEERDIST_SOFTWARE_VERSION;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = ++c->next_id;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    uint8_t buf[256];
    size_t n = frame_pack(&req.base, buf);
    if (write_all(fd, buf, n, deadline) != 0) {
        c->down_errno = errno == EAGAIN ? ETIMEDOUT : errno;
        return -1;
    }
    frame_buf_reset(&c->rbuf);
    for (;;) {
        const uint8_t *payload;
        uint32_t len;
        enum frame_status st = frame_buf_next(&c->rbuf, &payload, &len);
        if (st == FRAME_OK) {
            Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, payload);
            int ok = r && r->id == req.id && r->status == ERROR_SUCCESS &&
                r->body_case == PEERDIST__REPLY__BODY_HELLO;
            if (ok)
                c->status = r->hello->service_status;
            if (r && r->status == ERROR_REQ_NOT_ACCEP)
                c->down_error = ERROR_REQ_NOT_ACCEP; /* over a connection limit: try later */
            if (!ok)
                c->down_errno = !r                                    ? EPROTO
                    : r->status == ERROR_REQ_NOT_ACCEP                ? EUSERS
                    : r->status == PEERDIST_ERROR_VERSION_UNSUPPORTED ? EPROTONOSUPPORT
                                                                      : EPROTO;
            if (r)
                peerdist__reply__free_unpacked(r, NULL);
            return ok ? 0 : -1;
        }
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = st == FRAME_TOO_BIG || left <= 0 ? 0 : poll(&pfd, 1, (int)left);
        if (ready <= 0) {
            c->down_errno = st == FRAME_TOO_BIG ? EPROTO : ready < 0 ? errno : ETIMEDOUT;
            return -1;
        }
        size_t avail;
        uint8_t *space = frame_buf_space(&c->rbuf, 4096, &avail);
        ssize_t got = space ? read(fd, space, avail) : -1;
        if (got <= 0) {
            c->down_errno = !space ? ENOMEM : got == 0 ? ECONNRESET : errno;
            return -1;
        }
        frame_buf_commit(&c->rbuf, (size_t)got);
    }
}

static void set_timeout(int fd, int opt, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * Connects and says Hello, within c->connect_timeout_ms (PD_HELLO_TIMEOUT_MS unless the
 * creator chose) and the deadline. Nobody reads or writes while c->fd < 0, so connecting
 * under c->mu is safe.
 */
static void connect_locked(struct pdconn *c, int64_t deadline)
{
    int64_t hello_deadline = now_ms() + c->connect_timeout_ms;
    if (hello_deadline < deadline)
        deadline = hello_deadline;
    c->down_error = PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    c->down_errno = 0;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, c->path, sizeof(sun.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->down_errno = errno;
        return;
    }
    /*
     * A listener whose backlog is full (a stopped daemon) blocks connect() up to SO_SNDTIMEO,
     * then fails with EAGAIN: reported as the timeout it is.
     */
    set_timeout(fd, SO_SNDTIMEO, deadline - now_ms() > 0 ? deadline - now_ms() : 1);
    struct stat st;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        c->down_errno = errno == EAGAIN ? ETIMEDOUT : errno;
        close(fd);
        return;
    }
    if (hello_locked(c, fd, deadline) != 0 || fstat(fd, &st) != 0) {
        if (!c->down_errno)
            c->down_errno = errno ? errno : EPROTO;
        close(fd);
        return;
    }
    set_timeout(fd, SO_RCVTIMEO, PD_READ_SLICE_MS);
    c->fd_dev = st.st_dev;
    c->fd_ino = st.st_ino;
    c->fd = fd;
    c->generation++;
    reg_check_locked(c);
}

/*
 * The daemon said DISABLED, which callers answer without sending anything
 * (ERROR_ACCESS_DISABLED_BY_POLICY), so no write would ever notice that the daemon has
 * closed the connection (restarted, enabled): probed here, on this rare path only.
 */
static bool disabled_and_gone(struct pdconn *c)
{
    if (c->status != PEERDIST_STATUS_DISABLED || c->reading || c->cork_len)
        return false;
    struct pollfd pfd = {.fd = c->fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * One step towards the EOF of a connection that is going: read it here (read_turn: what is
 * left, then the EOF, lost_locked), or wait for the reader, who sees it. c->mu held; false
 * if the deadline passed while waiting.
 */
static bool eof_turn(struct pdconn *c, int64_t deadline)
{
    if (!c->reading) {
        read_turn(c, -1);
        return true;
    }
    return wait_until(c, deadline);
}

/*
 * Makes sure there is a live connection, connecting if needed; a connection given up on
 * (c->broken) is cleaned up first. Called and returns with c->mu held: ERROR_SUCCESS, or the
 * synchronous error. A connection the daemon closed while nobody was reading it (it
 * restarted while the instance was idle) is not probed for here, which would cost a
 * system call per request: the request's write fails at once (WRITE_PEER_CLOSED) and
 * send_locked makes a new connection then (settle_closed_locked). Only while the daemon
 * said DISABLED, when nothing is written, is it probed (disabled_and_gone).
 */
static DWORD ensure_locked(struct pdconn *c, int64_t deadline)
{
    while (c->fd >= 0 && (c->broken || disabled_and_gone(c)))
        if (!eof_turn(c, deadline))
            return PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    if (c->fd < 0 && !c->stop)
        connect_locked(c, deadline);
    if (c->fd >= 0)
        return ERROR_SUCCESS;
    return c->stop ? PEERDIST_ERROR_SERVICE_UNAVAILABLE : c->down_error;
}

/*
 * The connection `generation` was found closed by the daemon: its last replies are
 * delivered (read until the EOF) and its pending operations failed, as when a reader sees
 * the EOF. c->mu held. false if the deadline passed first.
 */
static bool settle_closed_locked(struct pdconn *c, uint64_t generation, int64_t deadline)
{
    while (c->fd >= 0 && c->generation == generation)
        if (now_ms() >= deadline || !eof_turn(c, deadline))
            return false;
    return true;
}

DWORD pdconn_ensure(struct pdconn *c, uint64_t *generation)
{
    pthread_mutex_lock(&c->mu);
    DWORD rc = ensure_locked(c, now_ms() + c->timeout_ms);
    if (generation)
        *generation = c->generation;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int pdconn_down_reason(struct pdconn *c, DWORD *status)
{
    pthread_mutex_lock(&c->mu);
    int e = c->fd >= 0 ? 0 : c->down_errno ? c->down_errno : ECONNREFUSED;
    if (status)
        *status = c->fd >= 0 ? ERROR_SUCCESS : c->down_error;
    pthread_mutex_unlock(&c->mu);
    return e;
}

uint32_t pdconn_status(struct pdconn *c)
{
    pthread_mutex_lock(&c->mu);
    uint32_t st = current_status_locked(c);
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* Room for n more bytes in c->cork (c->mu held, no write in progress): 0, or -1. */
static int cork_reserve(struct pdconn *c, size_t n)
{
    if (c->cork_len + n <= c->cork_cap)
        return 0;
    size_t cap = c->cork_cap ? c->cork_cap : 4096;
    while (cap < c->cork_len + n)
        cap *= 2;
    uint8_t *b = realloc(c->cork, cap);
    if (!b)
        return -1;
    c->cork = b;
    c->cork_cap = cap;
    return 0;
}

/*
 * Writes the corked bytes (c->mu held, no write in progress, c->fd open). block: until all
 * are sent, or the deadline passes, or the socket fails; then the connection is dropped, so
 * the corked operations complete with PEERDIST_ERROR_SERVICE_UNAVAILABLE when the reader
 * sees it go: 0, or -1. Not block (a waiter, whose own wait may be short): what the socket
 * takes now, the rest stays corked, in order, for the next write: 0, or 1 if some is left.
 */
static int cork_flush_locked(struct pdconn *c, int64_t deadline, bool block)
{
    if (!c->cork_len)
        return 0;
    c->writing = true; /* nobody touches the cork until it is false again */
    int fd = c->fd;
    const uint8_t *buf = c->cork;
    size_t len = c->cork_len, sent = 0;
    int rc = 0;
    pthread_mutex_unlock(&c->mu);
    while (sent < len) {
        ssize_t w = send(fd, buf + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0 || errno != EAGAIN) {
            rc = -1;
            break;
        }
        if (!block) {
            rc = 1;
            break;
        }
        if (wait_writable(fd, deadline) != 0) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->writing = false;
    memmove(c->cork, c->cork + sent, len - sent);
    c->cork_len = len - sent;
    if (rc < 0) {
        c->cork_len = 0;
        drop_locked(c);
    }
    if (c->cork_len == 0 && c->cork_cap > PD_CORK_MAX) {
        /* grown by a large request queued behind small ones: not kept for the connection */
        free(c->cork);
        c->cork = NULL;
        c->cork_cap = 0;
    }
    wake_waiters(c);
    return rc;
}

/*
 * Sends what is corked; c->mu held. block (the background thread's look): after the write
 * in progress, within the call deadline. Not block (a waiter): only if no write is in
 * progress (that one sends the cork), and only what the socket takes now.
 */
static void cork_send(struct pdconn *c, bool block)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    while (block && c->cork_len && c->writing)
        if (!wait_until(c, deadline)) {
            drop_locked(c);
            return;
        }
    if (c->cork_len && !c->writing && c->fd >= 0 && !c->broken)
        cork_flush_locked(c, deadline, block);
}

/*
 * Connects if needed, then sends req for op (registered first: its reply may be read by
 * another thread before the write returns). generation, if not 0, is the connection the
 * request belongs to (it names daemon-side handles): another one gives
 * PEERDIST_ERROR_INVALIDATED, so a request never reaches a connection it was not made for.
 * Called and returns with c->mu held. ERROR_SUCCESS: sent whole, and op will be answered
 * or failed; otherwise op is not registered and nothing will answer it.
 */
static DWORD send_locked(struct pdconn *c, uint64_t generation, Peerdist__Request *req,
    struct pd_op *op, int64_t deadline)
{
    bool retried = false;
again:
    for (;;) {
        DWORD rc = ensure_locked(c, deadline);
        if (rc != ERROR_SUCCESS)
            return rc;
        if (generation && generation != c->generation)
            return PEERDIST_ERROR_INVALIDATED;
        if (!c->writing)
            break;
        if (!wait_until(c, deadline)) {
            drop_locked(c); /* the write in progress is stuck past the deadline too */
            return PEERDIST_ERROR_SERVICE_UNAVAILABLE;
        }
    }
    uint64_t id = req->id = op->id = ++c->next_id; /* before sizing: the id is encoded too */
    size_t n = frame_size(&req->base);
    if (n - FRAME_HEADER_SIZE > FRAME_MAX_PAYLOAD)
        return ERROR_INVALID_PARAMETER;
    if (!op->async && op->pass_fd >= 0 && c->cork_len) {
        /* A descriptor rides on its own frame's first bytes: the corked frames go out first. */
        if (cork_flush_locked(c, deadline, true) != 0 || c->fd < 0)
            return PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    }
    /*
     * Corked only behind other asynchronous requests still pending (they are what a later
     * write batches with). A lone request goes out now: a connection the daemon closed
     * while idle is then noticed by this write, which reconnects (below), rather than by a
     * later write of the cork, which could only fail it after ERROR_IO_PENDING.
     */
    bool defer = op->async && c->lazy && c->nasync > 0 && c->cork_len + n <= PD_CORK_MAX;
    if (defer || c->cork_len) {
        if (cork_reserve(c, n) != 0)
            return ERROR_NOT_ENOUGH_MEMORY; /* it cannot go out before what is corked */
        /* Behind the corked frames, in order: sent now with them, or later (cork_send). */
        if (op->async && op->a.request_id && *op->a.request_id == 0)
            *op->a.request_id = op->id;
        frame_pack(&req->base, c->cork + c->cork_len);
        c->cork_len += n;
        op_insert(c, op);
        if (defer || cork_flush_locked(c, deadline, true) == 0)
            return ERROR_SUCCESS;
        op_remove(c, id); /* not sent whole: the caller's synchronous failure */
        return PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    }
    uint8_t stack[SEND_STACK_BYTES];
    uint8_t *buf = n <= sizeof(stack) ? stack : malloc(n);
    if (!buf)
        return ERROR_NOT_ENOUGH_MEMORY;
    if (op->async && op->a.request_id && *op->a.request_id == 0)
        *op->a.request_id = op->id; /* the first part's id names a split request */
    frame_pack(&req->base, buf);
    op_insert(c, op);
    c->writing = true;
    int fd = c->fd;
    uint64_t sent_on = c->generation;
    pthread_mutex_unlock(&c->mu);
    int w = write_frame(fd, buf, n, op->async ? -1 : op->pass_fd, deadline);
    pthread_mutex_lock(&c->mu);
    c->writing = false;
    wake_waiters(c);
    if (buf != stack)
        free(buf);
    if (w == 0)
        return ERROR_SUCCESS;
    /*
     * Not sent whole, so not answered: op is still registered (the socket is closed only
     * once no write is in progress).
     */
    op_remove(c, id);
    if (op->async && op->a.request_id && *op->a.request_id == id)
        *op->a.request_id = 0; /* named by its id on the next connection */
    if (w == WRITE_PEER_CLOSED && !retried) {
        /* The daemon went away while the connection was idle: nothing of this request went
         * out, so it goes on a new connection (or, naming older handles, INVALIDATED). */
        retried = true;
        if (settle_closed_locked(c, sent_on, deadline))
            goto again;
    }
    drop_locked(c); /* a partial frame leaves the stream unusable */
    return PEERDIST_ERROR_SERVICE_UNAVAILABLE;
}

/* The synchronous calls; *sent_on (if not NULL): the connection the request went out on. */
static DWORD call(struct pdconn *c, uint64_t generation, Peerdist__Request *req, int pass_fd,
    Peerdist__Reply **reply, uint64_t *sent_on)
{
    struct pd_op op = {.pass_fd = pass_fd};
    if (reply)
        *reply = NULL;
    pthread_mutex_lock(&c->mu);
    int64_t deadline = now_ms() + c->timeout_ms;
    DWORD rc = send_locked(c, generation, req, &op, deadline);
    if (rc != ERROR_SUCCESS) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    if (sent_on)
        *sent_on = c->generation;
    while (!op.done) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            drop_locked(c); /* the daemon stopped answering: drop the connection rather than hang */
        if (!c->reading && c->fd >= 0)
            read_turn(c, -1);
        else
            timed_wait(c, &c->cv, left > 0 ? left : 10);
    }
    pthread_mutex_unlock(&c->mu);
    if (reply)
        *reply = op.reply;
    else if (op.reply)
        peerdist__reply__free_unpacked(op.reply, NULL);
    return op.status;
}

DWORD pdconn_call(struct pdconn *c, Peerdist__Request *req, Peerdist__Reply **reply)
{
    return call(c, 0, req, -1, reply, NULL);
}

DWORD pdconn_call_sent_on(struct pdconn *c, Peerdist__Request *req, Peerdist__Reply **reply,
    uint64_t *generation)
{
    return call(c, 0, req, -1, reply, generation);
}

DWORD pdconn_call_on(struct pdconn *c, uint64_t generation, Peerdist__Request *req,
    Peerdist__Reply **reply)
{
    return call(c, generation, req, -1, reply, NULL);
}

DWORD pdconn_call_fd(struct pdconn *c, uint64_t generation, Peerdist__Request *req, int pass_fd,
    Peerdist__Reply **reply)
{
    return call(c, generation, req, pass_fd, reply, NULL);
}

DWORD pdconn_submit(struct pdconn *c, uint64_t generation, Peerdist__Request *req,
    const struct pd_async *a)
{
    struct pd_op *op = calloc(1, sizeof(*op));
    if (!op)
        return ERROR_NOT_ENOUGH_MEMORY;
    op->async = true;
    op->a = *a;
    w32_begin(a->ov);
    pthread_mutex_lock(&c->mu);
    DWORD rc = send_locked(c, generation, req, op, now_ms() + c->timeout_ms);
    pthread_mutex_unlock(&c->mu);
    if (rc != ERROR_SUCCESS) {
        w32_finish_sync(a->ov, rc);
        free(op);
    }
    return rc;
}

DWORD pdconn_submit_many(struct pdconn *c, uint64_t generation, Peerdist__Request **reqs, size_t n,
    const struct pd_async *a)
{
    if (n == 1)
        return pdconn_submit(c, generation, reqs[0], a);
    struct pd_multi *m = calloc(1, sizeof(*m));
    if (!m || n == 0) {
        free(m);
        return n == 0 ? ERROR_INVALID_PARAMETER : ERROR_NOT_ENOUGH_MEMORY;
    }
    atomic_init(&m->remaining, (unsigned)n);
    atomic_init(&m->status, ERROR_SUCCESS);
    atomic_init(&m->bytes, 0);
    m->a = *a;
    w32_begin(a->ov);
    for (size_t i = 0; i < n; i++) {
        struct pd_op *op = calloc(1, sizeof(*op));
        DWORD rc = ERROR_NOT_ENOUGH_MEMORY;
        if (op) {
            op->async = true;
            op->a = *a;
            op->multi = m;
            pthread_mutex_lock(&c->mu);
            rc = send_locked(c, generation, reqs[i], op, now_ms() + c->timeout_ms);
            if (rc == ERROR_SUCCESS)
                generation = c->generation; /* every part on the connection of the first */
            pthread_mutex_unlock(&c->mu);
            if (rc != ERROR_SUCCESS)
                free(op);
        }
        if (rc == ERROR_SUCCESS)
            continue;
        if (i == 0) { /* nothing went out: a synchronous failure, no completion */
            free(m);
            w32_finish_sync(a->ov, rc);
            return rc;
        }
        /* Parts already sent will answer; the ones never sent end now, each seen by on_reply. */
        if (rc == PEERDIST_ERROR_INVALIDATED)
            rc = PEERDIST_ERROR_SERVICE_UNAVAILABLE; /* the connection went away mid-way */
        for (size_t j = i; j < n && a->on_reply; j++) {
            struct pd_op unsent = {.async = true, .a = *a, .multi = m};
            DWORD st = rc, bytes = 0;
            a->on_reply(&unsent, NULL, &st, &bytes);
        }
        multi_part_done(m, rc, 0, (unsigned)(n - i));
        break;
    }
    return ERROR_SUCCESS;
}

DWORD pdconn_register_status(struct pdconn *c, BOOL ex, LPOVERLAPPED ov, HANDLE port, ULONG_PTR key,
    void *out)
{
    pthread_mutex_lock(&c->mu);
    if (c->reg.active) {
        pthread_mutex_unlock(&c->mu);
        return PEERDIST_ERROR_ALREADY_EXISTS;
    }
    ensure_locked(c, now_ms() + c->timeout_ms); /* report the status as it is now */
    struct status_reg *r = &c->reg;
    r->ex = ex;
    r->ov = ov;
    r->port = port;
    r->key = key;
    r->out = out;
    r->active = true;
    w32_begin(ov);
    reg_check_locked(c);
    if (r->active)
        pthread_cond_signal(&c->bg_cv); /* the background thread watches for changes */
    pthread_mutex_unlock(&c->mu);
    return ERROR_IO_PENDING;
}

void pdconn_unregister_status(struct pdconn *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->reg.active) {
        c->reg.active = false;
        w32_complete(c->reg.ov, c->reg.port, c->reg.key, ERROR_OPERATION_ABORTED, 0);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- waiters that read (pdconn_help_wait) ---- */

/* Every live connection object, so a waiter can find the one that will answer it. */
static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pdconn *conns;

/* Whether op's completion would satisfy a wait for t (its OVERLAPPED, event or port). */
static bool op_completes_to(const struct pd_async *a, const struct w32_wait_target *t)
{
    if (t->ov)
        return a->ov == t->ov;
    uintptr_t ev = a->ov ? (uintptr_t)a->ov->hEvent : 0; /* the caller's, while pending */
    if (t->port)
        return a->port == t->port && !(ev & 1);
    for (DWORD i = 0; ev && i < t->nevents; i++)
        if ((HANDLE)(ev & ~(uintptr_t)1) == t->events[i])
            return true;
    return false;
}

static bool waited_for_locked(const struct pdconn *c, const struct w32_wait_target *t)
{
    for (const struct pd_op *op = c->alist; op; op = op->anext)
        if (op_completes_to(&op->a, t))
            return true;
    return false;
}

int pdconn_help_wait(const struct w32_wait_target *t, int wake_fd, int timeout_ms)
{
    if (timeout_ms == 0 || wake_fd < 0)
        return 0;
    if (timeout_ms < 0 || timeout_ms > PD_READ_SLICE_MS)
        timeout_ms = PD_READ_SLICE_MS;
    struct pdconn *c;
    pthread_mutex_lock(&conns_mu);
    for (c = conns; c; c = c->conn_next) {
        pthread_mutex_lock(&c->mu);
        if (!c->stop && c->fd >= 0 && !c->broken && waited_for_locked(c, t))
            break;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&conns_mu);
    if (!c)
        return 0;        /* nothing pending completes to t */
    c->helpers++;        /* pdconn_stop waits for it: c stays valid until helpers-- below */
    cork_send(c, false); /* the requests waited for may still be corked */
    if (c->reading && !c->bg_reading) {
        c->helpers--; /* another caller reads: it delivers */
        wake_waiters(c);
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    if (c->reading) {
        /* The background thread reads: it hands the token over at its next wake-up. */
        c->yield_want++;
        uint64_t one = 1;
        (void)!write(c->wake_fd, &one, sizeof(one));
        while (c->reading && c->bg_reading && !c->stop)
            wait_on(c, &c->cv);
        c->yield_want--;
    }
    int helped = 0;
    if (!c->reading && !c->stop && c->fd >= 0 && !c->broken) {
        read_turn_ex(c, wake_fd, timeout_ms, false); /* hands the token back if work is left */
        helped = 1;
        c->help_reads++;
        if (!c->lazy) {
            c->lazy = true; /* waiters read: the background thread only looks now and then */
            pthread_cond_signal(&c->bg_cv);
        }
    } else if (bg_should_read(c)) {
        pthread_cond_signal(&c->bg_cv); /* not read here after all: the thread reads again */
    }
    c->helpers--;
    wake_waiters(c); /* pdconn_stop may wait for the last helper */
    pthread_mutex_unlock(&c->mu);
    return helped;
}

/*
 * fork(): the child has none of the parent's live connections, so it starts with an empty
 * list and a fresh lock (a thread of the parent may have held it). Not locked around the
 * fork: conns_mu comes before c->mu and the shim's locks, which other handlers take there.
 */
static void conns_child(void)
{
    pthread_mutex_init(&conns_mu, NULL);
    conns = NULL;
}

__attribute__((constructor)) static void conns_init(void)
{
    pthread_atfork(NULL, NULL, conns_child);
}

static void conns_add(struct pdconn *c)
{
    pthread_mutex_lock(&conns_mu);
    c->conn_next = conns;
    c->conn_prev = &conns;
    if (conns)
        conns->conn_prev = &c->conn_next;
    conns = c;
    pthread_mutex_unlock(&conns_mu);
}

static void conns_remove(struct pdconn *c)
{
    pthread_mutex_lock(&conns_mu);
    if (c->conn_prev) {
        *c->conn_prev = c->conn_next;
        if (c->conn_next)
            c->conn_next->conn_prev = c->conn_prev;
        c->conn_prev = NULL;
    }
    pthread_mutex_unlock(&conns_mu);
}

/* ---- background reader ---- */

/*
 * Lazy mode (c->lazy): while waiters read their own replies, nobody wakes the background
 * thread when an operation is sent or a waiter puts the token down; it looks every
 * PD_LAZY_TICK_MS instead. An operation no waiter read across a whole tick (its caller
 * polls, or watches the port's fd) is read by the thread, which goes back to being woken
 * at once. After PD_LAZY_IDLE_TICKS looks with nothing pending the thread stops looking.
 * Called with c->mu held; true if it is to look again after a tick.
 */
static bool lazy_look(struct pdconn *c, uint64_t *seen, unsigned *idle)
{
    /*
     * Requests no waiter sent since the last look, as far as the socket takes them now: a
     * look never blocks on a write, since the daemon may be waiting for this connection to
     * read its replies first (it stops reading a connection with 4 MiB of them unread).
     * What is left, or a write in progress, ends lazy mode: the thread reads, and sends the
     * rest between reads (reader_thread).
     */
    cork_send(c, false);
    if (c->cork_len || c->writing) {
        c->lazy = false;
        *idle = 0;
        return false;
    }
    if (c->help_reads != *seen) { /* a waiter read since the last look */
        *seen = c->help_reads;
        *idle = 0;
        return true;
    }
    bool stuck = bg_should_read(c) || (c->reg.active && c->fd < 0);
    if (stuck || (c->nasync == 0 && ++*idle > PD_LAZY_IDLE_TICKS)) {
        c->lazy = false;
        *idle = 0;
        return false;
    }
    return true;
}

static void *reader_thread(void *arg)
{
    struct pdconn *c = arg;
    uint64_t seen = 0;
    unsigned idle = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (c->lazy && lazy_look(c, &seen, &idle)) {
            timed_wait(c, &c->bg_cv, PD_LAZY_TICK_MS);
        } else if (bg_should_read(c)) {
            cork_send(c, false); /* what the socket takes; the rest after the next look */
            read_turn_ex(c, c->wake_fd, c->cork_len ? PD_LAZY_TICK_MS : -1, true);
        } else if (c->reg.active && c->fd < 0) {
            connect_locked(c, now_ms() + c->timeout_ms);
            if (c->fd < 0)
                timed_wait(c, &c->bg_cv,
                    c->down_error == ERROR_REQ_NOT_ACCEP ? PD_REFUSED_RETRY_MS
                                                         : PD_RECONNECT_INTERVAL_MS);
        } else {
            wait_on(c, &c->bg_cv);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct pdconn *pdconn_new(const char *path)
{
    return pdconn_new_timeout(path, PD_HELLO_TIMEOUT_MS);
}

struct pdconn *pdconn_new_timeout(const char *path, int connect_timeout_ms)
{
    struct pdconn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_cond_init(&c->bg_cv, &ca);
    pthread_condattr_destroy(&ca);
    c->fd = -1;
    c->down_error = PEERDIST_ERROR_SERVICE_UNAVAILABLE;
    c->timeout_ms = call_timeout_ms();
    c->spin_us = sync_spin_us();
    c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : PD_HELLO_TIMEOUT_MS;
    c->reg.last_reported = PEERDIST_STATUS_DISABLED;
    c->status = PEERDIST_STATUS_UNAVAILABLE;
    frame_buf_init(&c->rbuf);
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0 || pthread_create(&c->thread, NULL, reader_thread, c) != 0) {
        if (c->wake_fd >= 0)
            close(c->wake_fd);
        free(c);
        return NULL;
    }
    c->has_thread = true;
    pthread_mutex_lock(&c->mu);
    connect_locked(c, now_ms() + c->timeout_ms);
    pthread_mutex_unlock(&c->mu);
    conns_add(c);
    return c;
}

void pdconn_stop(struct pdconn *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->stop) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->stop = true;
    if (c->reg.active) {
        c->reg.active = false;
        w32_complete(c->reg.ov, c->reg.port, c->reg.key, ERROR_OPERATION_ABORTED, 0);
    }
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR); /* a reader wakes with EOF and aborts what is pending */
    pthread_cond_broadcast(&c->cv);
    pthread_cond_signal(&c->bg_cv);
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    (void)!write(c->wake_fd, &one, sizeof(one));
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->mu);
    while (c->reading || c->helpers)
        wait_on(c, &c->cv);
    if (c->fd >= 0) {
        c->reading = true;
        lost_locked(c);
        c->reading = false;
    }
    pthread_mutex_unlock(&c->mu);
}

void pdconn_free(struct pdconn *c)
{
    conns_remove(c); /* no new waiter finds c; pdconn_stop waits for the ones using it */
    pdconn_stop(c);
    close(c->wake_fd);
    free(c->cork);
    frame_buf_free(&c->rbuf);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->bg_cv);
    free(c);
}

/*
 * c->fd is read without c->mu (the parent may have been reconnecting at the fork): it is
 * closed only if it still is the socket connect_locked made, never a reused number.
 */
void pdconn_forget_in_child(struct pdconn *c)
{
    struct stat st;
    if (c->fd >= 0 && fstat(c->fd, &st) == 0 && st.st_dev == c->fd_dev && st.st_ino == c->fd_ino)
        close(c->fd);
    close(c->wake_fd);
}
