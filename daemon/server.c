/* SPDX-License-Identifier: MIT */
/*
 * server.c - the transport: the Unix stream socket, accepting (with SO_PEERCRED identity and
 * the connection limits: max_connections fitted to the descriptor limit, a reserve for root
 * and group peerdist, max_connections_per_uid, the Hello deadline), reading length-prefixed
 * frames with their size checked before unpacking and their decoding bounded, handing each
 * request to the daemon's one handler, writing replies with backpressure, counting unread
 * replies and large frames against the memory budget (budget.h), and closing a misbehaving
 * connection without touching any other. It knows no service: modules register close hooks
 * (server_on_close), which run from the loop after a close, never inside a handler.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <peerdist.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "budget.h"
#include "daemon.h"
#include "fsutil.h"
#include "log.h"

#define LISTEN_BACKLOG 128

/* Bytes asked of one read(): many small frames, or a good part of a large one. */
#define READ_CHUNK (64 * 1024)
/* A connection that is refused may send this much: its Hello, not a large frame. */
#define REFUSED_FRAME_MAX 4096

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void big_put(struct daemon *d, uint8_t *b, size_t n);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* " (N more not logged)" when refusal lines were left out (budget_log_pass), else "". */
static const char *left_out(char *buf, size_t len, unsigned dropped)
{
    if (!dropped)
        return "";
    snprintf(buf, len, " (%u more not logged)", dropped);
    return buf;
}

void conn_unref(struct conn *c)
{
    if (--c->refs == 0)
        free(c);
}

/* Accepting again: a descriptor may just have been freed. */
static void resume_accepting(struct daemon *d)
{
    if (!d->accept_paused || !d->listener || d->stopping)
        return;
    d->accept_paused = false;
    event_del(d->accept_retry_ev);
    evconnlistener_enable(d->listener);
}

/* Brings the budget's count of c's unread replies up to date. */
static void conn_count_out(struct conn *c)
{
    size_t queued = c->fd >= 0 ? evbuffer_get_length(c->out) : 0;
    if (queued > c->out_charged)
        budget_force(c, queued - c->out_charged);
    else if (queued < c->out_charged)
        budget_give(c, c->out_charged - queued);
    c->out_charged = queued;
}

/* ---- descriptors received with frames (SCM_RIGHTS) ---- */

/*
 * A descriptor a client sends is installed in the daemon by recvmsg, and close() of it runs
 * its filesystem's flush: a file on a FUSE mount its sender serves could hold the loop
 * thread in close(), fstat() or fstatfs() for ever. So only shared-memory descriptors (the
 * ones F_GET_SEALS answers for, which asks no filesystem) are kept and closed on the loop;
 * any other goes at once to this thread, which closes them one after the other, and its
 * sender's connection is closed. A closer stuck on one leaves the rest queued in its pipe;
 * past the pipe's room (thousands), a descriptor is left open and logged (the EMFILE pause,
 * server.c, bounds that).
 */
static int closer_pipe[2] = {-1, -1};
static pthread_once_t closer_once = PTHREAD_ONCE_INIT;

static void *closer_main(void *arg)
{
    (void)arg;
    int fd;
    for (;;) {
        ssize_t n = read(closer_pipe[0], &fd, sizeof(fd));
        if (n == (ssize_t)sizeof(fd))
            close(fd);
        else if (n == 0 || (n < 0 && errno != EINTR))
            return NULL;
    }
}

static void closer_start(void)
{
    if (pipe2(closer_pipe, O_CLOEXEC) != 0) {
        closer_pipe[0] = closer_pipe[1] = -1;
        return;
    }
    fcntl(closer_pipe[1], F_SETFL, O_NONBLOCK);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay the loop's */
    pthread_t t;
    if (pthread_create(&t, NULL, closer_main, NULL) == 0) {
        pthread_detach(t);
    } else {
        close(closer_pipe[0]);
        close(closer_pipe[1]);
        closer_pipe[0] = closer_pipe[1] = -1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A received descriptor that is not shared memory: closed off the loop (see above). */
static void closer_give(int fd)
{
    pthread_once(&closer_once, closer_start);
    if (closer_pipe[1] < 0 || write(closer_pipe[1], &fd, sizeof(fd)) != (ssize_t)sizeof(fd))
        log_error("a received descriptor could not be handed to the closer thread: left open");
}

/* Closes the received descriptors of bytes before stream position `before` (all: UINT64_MAX). */
static void rx_fds_close_before(struct conn *c, uint64_t before, const char *why)
{
    unsigned kept = 0, closed = 0;
    for (unsigned i = 0; i < c->nrx_fds; i++) {
        if (c->rx_pos[i] < before) {
            close(c->rx_fd[i]);
            closed++;
            continue;
        }
        c->rx_fd[kept] = c->rx_fd[i];
        c->rx_pos[kept++] = c->rx_pos[i];
    }
    c->nrx_fds = kept;
    unsigned dropped;
    if (closed && why && budget_log_pass(c->d->budget, &dropped))
        log_warn(CONN_FMT ": %u descriptor(s) sent with %s: closed (%u lines left out)",
            CONN_ARGS(c), closed, why, dropped);
}

/* Descriptors that came with a read of bytes ending at c->in_total: kept for their frame. */
static void rx_fds_add(struct conn *c, struct msghdr *msg)
{
    if (msg->msg_flags & MSG_CTRUNC)
        log_warn(CONN_FMT ": more than %u descriptors in one message: the kernel closed the rest",
            CONN_ARGS(c), SERVER_RX_FDS_MAX);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
            if (fcntl(fd, F_GET_SEALS) < 0) {
                closer_give(fd);
                c->rx_foreign = true;
                continue;
            }
            if (c->nrx_fds == SERVER_RX_FDS_MAX) {
                log_warn(CONN_FMT ": more than %u descriptors waiting for their frames: closed",
                    CONN_ARGS(c), SERVER_RX_FDS_MAX);
                close(fd);
                continue;
            }
            /* The kernel ends a read with the message carrying descriptors: they belong to
             * the frame holding the last byte read. */
            c->rx_fd[c->nrx_fds] = fd;
            c->rx_pos[c->nrx_fds++] = c->in_total - 1;
        }
    }
}

/* The frame [lo, hi) of the stream is about to be handled: the first descriptor sent with it
 * becomes c->frame_fd; any other (and any of bytes before it) is closed. */
static void rx_fds_for_frame(struct conn *c, uint64_t lo, uint64_t hi)
{
    rx_fds_close_before(c, lo, "bytes dropped");
    c->frame_fd = -1;
    if (c->nrx_fds && c->rx_pos[0] < hi) {
        c->frame_fd = c->rx_fd[0];
        memmove(c->rx_fd, c->rx_fd + 1, (c->nrx_fds - 1) * sizeof(int));
        memmove(c->rx_pos, c->rx_pos + 1, (c->nrx_fds - 1) * sizeof(uint64_t));
        c->nrx_fds--;
    }
    rx_fds_close_before(c, hi, "a frame that takes at most one");
}

/* After the handler: a descriptor its request did not take is closed. */
static void rx_fds_frame_done(struct conn *c)
{
    if (c->frame_fd < 0)
        return;
    unsigned dropped;
    if (budget_log_pass(c->d->budget, &dropped))
        log_warn(CONN_FMT ": a descriptor sent with a request that takes none: closed (%u lines "
                          "left out)",
            CONN_ARGS(c), dropped);
    close(c->frame_fd);
    c->frame_fd = -1;
}

static void shm_refuse(struct conn *c, uint64_t id, uint32_t status, const char *why)
{
    unsigned dropped;
    if (budget_log_pass(c->d->budget, &dropped))
        log_warn(CONN_FMT ": shared read region refused: %s (%u lines left out)", CONN_ARGS(c), why,
            dropped);
    conn_reply_status(c, id, status);
}

void server_shm_attach(struct conn *c, uint64_t id, const Peerdist__ShmAttachRequest *rq)
{
    int fd = c->frame_fd;
    c->frame_fd = -1;
    struct stat st;
    struct statfs sfs;
    int seals;
    char why[160];
    if (fd < 0) {
        shm_refuse(c, id, ERROR_INVALID_PARAMETER, "no descriptor came with the request");
        return;
    }
    /* The checks keep a client from making the daemon fault: a region it could shrink
     * under the mapping would SIGBUS the loop; a hugetlb one could fail a page on touch. */
    if (c->shm)
        shm_refuse(c, id, ERROR_INVALID_PARAMETER, "a region is already attached");
    else if (fstatfs(fd, &sfs) != 0 || sfs.f_type != TMPFS_MAGIC || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode))
        shm_refuse(c, id, ERROR_INVALID_PARAMETER, "the descriptor is not a memfd");
    else if ((seals = fcntl(fd, F_GET_SEALS)) < 0 ||
        (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        shm_refuse(c, id, ERROR_INVALID_PARAMETER,
            "the memfd is not sealed against shrinking and growing (F_SEAL_SHRINK, F_SEAL_GROW)");
    else if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != rq->size ||
        st.st_size < (off_t)SERVER_SHM_MIN || st.st_size > (off_t)SERVER_SHM_MAX) {
        snprintf(why, sizeof(why), "size %lld (request: %llu; bounds %u..%u)",
            (long long)st.st_size, (unsigned long long)rq->size, SERVER_SHM_MIN, SERVER_SHM_MAX);
        shm_refuse(c, id, ERROR_INVALID_PARAMETER, why);
    } else if (!budget_take(c, (size_t)st.st_size, "a shared read region")) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    } else {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            budget_give(c, (size_t)st.st_size);
            snprintf(why, sizeof(why), "mmap: %s", strerror(errno));
            shm_refuse(c, id, ERROR_INVALID_PARAMETER, why);
        } else {
            c->shm = m;
            c->shm_size = (size_t)st.st_size;
            log_debug(CONN_FMT ": shared read region of %zu bytes", CONN_ARGS(c), c->shm_size);
            conn_reply_status(c, id, ERROR_SUCCESS);
        }
    }
    close(fd);
}

void conn_close(struct conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    struct daemon *d = c->d;
    if (why)
        log_info(CONN_FMT " closed: %s", CONN_ARGS(c), why);
    else
        log_debug(CONN_FMT " closed", CONN_ARGS(c));
    if (c->write_queued) {
        TAILQ_REMOVE(&d->to_write, c, write_link);
        c->write_queued = false;
    }
    if (c->backlogged) {
        TAILQ_REMOVE(&d->backlog, c, backlog_link);
        c->backlogged = false;
        c->refs--; /* the backlog's; the list's reference keeps c until its hooks ran */
    }
    event_free(c->rev);
    event_free(c->wev);
    if (c->hello_ev)
        event_free(c->hello_ev);
    c->hello_ev = NULL;
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    close(c->fd);
    c->fd = -1;
    rx_fds_close_before(c, UINT64_MAX, NULL);
    if (c->frame_fd >= 0)
        close(c->frame_fd);
    c->frame_fd = -1;
    if (c->shm) {
        /* Reads still on a worker check c->shm before they write (content-read.c). */
        munmap(c->shm, c->shm_size);
        budget_give(c, c->shm_size);
        c->shm = NULL;
        c->shm_size = 0;
    }
    conn_count_out(c); /* gives back every unread reply */
    if (c->big)
        big_put(d, c->big, c->in_charged);
    c->big = NULL;
    if (c->in_charged)
        budget_give(c, c->in_charged);
    c->in_charged = 0;
    TAILQ_REMOVE(&d->conns, c, link);
    if (c->refused) {
        d->nrefusing--;
    } else {
        d->nconns--;
        budget_conn_del(d->budget, c->uid);
    }
    resume_accepting(d);
    /* The hooks run from reap_cb: the caller may be a handler still using the modules' state. */
    TAILQ_INSERT_TAIL(&d->closed, c, link);
    event_active(d->reap_ev, EV_TIMEOUT, 0);
}

/* Runs the close hooks of every closed connection, then drops the list's reference. */
static void reap_closed(struct daemon *d)
{
    while (!TAILQ_EMPTY(&d->closed)) {
        struct conn *c = TAILQ_FIRST(&d->closed);
        TAILQ_REMOVE(&d->closed, c, link);
        for (unsigned i = 0; i < d->nclose_hooks; i++)
            d->close_hooks[i](c);
        conn_unref(c);
    }
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    reap_closed(arg);
}

/* Stops reading c until its replies are written (conn_write_out reads on). */
static void conn_pause_reading(struct conn *c, bool for_budget)
{
    event_del(c->rev);
    c->read_paused = true;
    unsigned dropped;
    char more[48];
    if (for_budget && budget_log_pass(c->d->budget, &dropped))
        log_info(CONN_FMT ": not reading its requests while %zu bytes of replies wait: its uid "
                          "holds %zu bytes, more than its share of the memory budget%s",
            CONN_ARGS(c), evbuffer_get_length(c->out), budget_uid_used(c->d->budget, c->uid),
            left_out(more, sizeof(more), dropped));
}

/*
 * Replies are queued, then written together once the loop has handled what
 * is ready (write_queued_cb): one write for many replies, and no write-event
 * registration unless the socket is full.
 */
uint8_t *conn_reserve(struct conn *c, size_t n)
{
    if (c->fd < 0)
        return NULL; /* the client went away while its request was queued */
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->out, (ev_ssize_t)n, &v, 1) < 1) {
        conn_close(c, "out of memory queueing a reply");
        return NULL;
    }
    return v.iov_base;
}

void conn_commit(struct conn *c, uint8_t *frame, size_t n)
{
    struct evbuffer_iovec v = {frame, n};
    evbuffer_commit_space(c->out, &v, 1);
    conn_count_out(c);
    if (!c->write_queued) {
        c->write_queued = true;
        TAILQ_INSERT_TAIL(&c->d->to_write, c, write_link);
        event_active(c->d->write_ev, EV_TIMEOUT, 0);
    }
    /* A client not reading its replies: stop reading its requests, at 4 MiB of them, or once
     * its uid holds more than its share of the memory budget. */
    if (!c->read_paused && evbuffer_get_length(c->out) > CONN_MAX_OUTPUT_BYTES)
        conn_pause_reading(c, false);
    else if (!c->read_paused && budget_over(c))
        conn_pause_reading(c, true);
}

void conn_send(struct conn *c, const Peerdist__Reply *reply)
{
    size_t n = frame_size(&reply->base);
    uint8_t *frame = conn_reserve(c, n);
    if (frame)
        conn_commit(c, frame, frame_pack(&reply->base, frame));
}

void conn_reply_status(struct conn *c, uint64_t id, uint32_t status)
{
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.status = status;
    conn_send(c, &r);
}

void conn_reply_count(struct conn *c, uint64_t id, uint64_t bytes)
{
    Peerdist__CountReply cr = PEERDIST__COUNT_REPLY__INIT;
    cr.bytes = bytes;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_COUNT;
    r.count = &cr;
    conn_send(c, &r);
}

/*
 * c has whole frames waiting: they are handled once the loop has polled (backlog_cb), after
 * what the other connections have ready, not in this pass.
 */
static void conn_next_turn(struct conn *c)
{
    struct daemon *d = c->d;
    if (!c->backlogged) {
        c->backlogged = true;
        TAILQ_INSERT_TAIL(&d->backlog, c, backlog_link);
        c->refs++;
    }
    static const struct timeval now = {0, 0};
    event_add(d->backlog_ev, &now);
}

/* Writes what the socket takes; 0 = all out or waiting for space, -1 = connection closed. */
static int conn_write_out(struct conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        int w = evbuffer_write(c->out, c->fd);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_count_out(c);
            event_add(c->wev, NULL);
            return 0;
        }
        if (w < 0) {
            conn_close(c, strerror(errno));
            return -1;
        }
    }
    conn_count_out(c);
    event_del(c->wev);
    if (c->close_after_write) {
        conn_close(c, NULL);
        return -1;
    }
    if (c->read_paused) {
        c->read_paused = false;
        event_add(c->rev, NULL);
        conn_next_turn(c); /* requests may be waiting in the input buffer */
    }
    return 0;
}

static void write_queued_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    while (!TAILQ_EMPTY(&d->to_write)) {
        struct conn *c = TAILQ_FIRST(&d->to_write);
        TAILQ_REMOVE(&d->to_write, c, write_link);
        c->write_queued = false;
        conn_write_out(c);
    }
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_write_out(arg);
}

/*
 * A large frame refused for memory: its bytes are dropped as they come, keeping the first
 * ones for its request id; once all are in it is answered ERROR_NOT_ENOUGH_MEMORY. True when
 * it is done (the next frame may be read), false when more bytes are to come or c closed.
 */
static bool conn_discard(struct conn *c)
{
    size_t have = evbuffer_get_length(c->in), take = have < c->discard ? have : c->discard;
    if (c->discard_seen < sizeof(c->discard_head)) {
        size_t k = sizeof(c->discard_head) - c->discard_seen;
        if (k > take)
            k = take;
        evbuffer_copyout(c->in, c->discard_head + c->discard_seen, k);
        c->discard_seen += k;
    }
    evbuffer_drain(c->in, take);
    c->discard -= take;
    rx_fds_close_before(c, c->in_total - evbuffer_get_length(c->in), "a frame dropped");
    if (c->discard)
        return false;
    uint64_t id = frame_peek_request_id(c->discard_head + FRAME_HEADER_SIZE,
        c->discard_seen - FRAME_HEADER_SIZE);
    if (!id) {
        conn_close(c, "a large frame refused for memory does not start with its request id");
        return false;
    }
    conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    return true;
}

/* A connection over a limit: whatever it asks first is answered ERROR_REQ_NOT_ACCEP. */
static void conn_refuse_request(struct conn *c, const Peerdist__Request *req)
{
    c->close_after_write = true;
    if (req->id == 0) {
        conn_close(c, "request id 0 (reserved for notices)");
        return;
    }
    conn_reply_status(c, req->id, ERROR_REQ_NOT_ACCEP);
}

/*
 * The frame at the head of the input: whether to read it (true), or, for a large one past its
 * uid's share of the memory budget, drop it (c->discard set). False if c was closed.
 */
static bool conn_admit_frame(struct conn *c, size_t frame_len)
{
    if (frame_len <= SERVER_SMALL_FRAME || c->in_charged)
        return true;
    if (c->refused || !c->hello_done) {
        conn_close(c, c->refused ? "a large frame while refused" : "a large frame before Hello");
        return false;
    }
    if (budget_take(c, frame_len, "a large request frame")) {
        c->in_charged = frame_len;
        return true;
    }
    c->discard = frame_len;
    c->discard_seen = 0;
    return true;
}

/*
 * Decodes and handles the whole frame of frame_len bytes at the head of the input. Returns its
 * cost for the turn's byte budget beyond the replies it queues: its bytes, plus those a read into
 * the shared region copies on the loop.
 */
static size_t conn_handle_frame(struct conn *c, uint32_t payload_len, size_t frame_len)
{
    size_t cost = frame_len;
    uint64_t lo = c->in_total - evbuffer_get_length(c->in);
    rx_fds_for_frame(c, lo, lo + frame_len);
    const uint8_t *p = evbuffer_pullup(c->in, (ev_ssize_t)frame_len);
    struct frame_alloc fa;
    frame_alloc_init(&fa, payload_len);
    Peerdist__Request *req = frame_unpack_request(&fa, p + FRAME_HEADER_SIZE, payload_len);
    evbuffer_drain(c->in, frame_len);
    if (!req && fa.refused) {
        log_warn(CONN_FMT ": a frame of %u bytes needs more than %zu bytes to decode", CONN_ARGS(c),
            payload_len, fa.cap);
        conn_close(c, "frame too costly to decode");
    } else if (!req) {
        log_warn(CONN_FMT ": undecodable frame of %u bytes", CONN_ARGS(c), payload_len);
        conn_close(c, "malformed frame");
    } else if (c->refused) {
        conn_refuse_request(c, req);
    } else {
        if (req->body_case == PEERDIST__REQUEST__BODY_READ && req->read && req->read->shm)
            cost += req->read->max_bytes < SERVER_SHM_MAX ? req->read->max_bytes : SERVER_SHM_MAX;
        c->d->on_request(c, req);
    }
    rx_fds_frame_done(c);
    if (req)
        frame_free_request(&fa, req);
    if (c->in_charged) {
        budget_give(c, c->in_charged);
        c->in_charged = 0;
    }
    if (c->hello_ev && c->hello_done) {
        event_free(c->hello_ev);
        c->hello_ev = NULL;
    }
    return cost;
}

/*
 * Takes whole frames off the input buffer, a turn's worth (SERVER_FRAMES_PER_TURN frames or
 * SERVER_BYTES_PER_TURN bytes of requests and replies): with more waiting, c is backlogged for
 * another turn once the loop has polled, so one client's pipeline of requests, cheap or big,
 * never holds up the others. A bad frame closes this connection only.
 */
static void conn_process_input(struct conn *c)
{
    size_t out0 = evbuffer_get_length(c->out), bytes = 0;
    for (unsigned turn = 0; c->fd >= 0 && !c->read_paused && !c->close_after_write; turn++) {
        size_t out = c->fd >= 0 ? evbuffer_get_length(c->out) : 0;
        if (turn == SERVER_FRAMES_PER_TURN ||
            bytes + (out > out0 ? out - out0 : 0) >= SERVER_BYTES_PER_TURN) {
            conn_next_turn(c);
            break;
        }
        if (c->discard) {
            if (!conn_discard(c))
                break;
            continue;
        }
        uint8_t hdr[FRAME_HEADER_SIZE];
        if (evbuffer_copyout(c->in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr))
            break;
        uint32_t payload_len = frame_header_length(hdr);
        uint32_t max = c->refused ? REFUSED_FRAME_MAX : FRAME_MAX_PAYLOAD;
        if (payload_len > max) {
            log_warn(CONN_FMT ": frame length %u exceeds %u bytes", CONN_ARGS(c), payload_len, max);
            conn_close(c, "oversized frame");
            break;
        }
        size_t frame_len = FRAME_HEADER_SIZE + (size_t)payload_len;
        if (!conn_admit_frame(c, frame_len))
            break;
        if (c->discard)
            continue;
        if (evbuffer_get_length(c->in) < frame_len)
            break;
        bytes += conn_handle_frame(c, payload_len, frame_len);
    }
}

/* The next turn of every connection with whole frames waiting (conn_process_input). */
static void backlog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    unsigned n = 0; /* those waiting now: a connection backlogged again waits for the next */
    struct conn *c;
    TAILQ_FOREACH (c, &d->backlog, backlog_link)
        n++;
    while (n-- > 0 && (c = TAILQ_FIRST(&d->backlog))) {
        TAILQ_REMOVE(&d->backlog, c, backlog_link);
        c->backlogged = false;
        conn_process_input(c); /* may backlog c again */
        conn_unref(c);
    }
}

/* A buffer for a large frame of n bytes: the spare one if it is big enough. */
static uint8_t *big_alloc(struct daemon *d, size_t n)
{
    if (d->big_spare && d->big_spare_size >= n) {
        uint8_t *b = d->big_spare;
        d->big_spare = NULL;
        return b;
    }
    return malloc(n);
}

/* Keeps the largest buffer as the spare (at most one frame, FRAME_MAX_PAYLOAD), frees the other. */
static void big_put(struct daemon *d, uint8_t *b, size_t n)
{
    if (d->big_spare && d->big_spare_size >= n) {
        free(b);
        return;
    }
    free(d->big_spare);
    d->big_spare = b;
    d->big_spare_size = n;
}

static void big_free(const void *data, size_t len, void *arg)
{
    struct conn *c = arg;
    big_put(c->d, (uint8_t *)data, len);
    conn_unref(c);
}

/* The large frame read into c->big is all in: the input buffer takes it as one chunk. */
static void conn_big_whole(struct conn *c)
{
    uint8_t *big = c->big;
    c->big = NULL;
    c->refs++; /* big_free's, which gives the buffer back to c->d */
    if (evbuffer_add_reference(c->in, big, c->in_charged, big_free, c) != 0) {
        c->refs--;
        free(big);
        conn_close(c, "out of memory reading a large frame");
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->refs++; /* a handler may close the connection under us */
    /* What is buffered goes first (a connection read again after a pause has whole frames
     * waiting): reading more while frames wait would grow the buffer by a chunk each time. */
    conn_process_input(c);
    if (c->fd < 0 || c->read_paused || c->close_after_write || c->backlogged) {
        conn_unref(c);
        return;
    }
    struct evbuffer_iovec v;
    /* A large frame admitted: the rest of it is read straight into a buffer of its size (c->big),
     * not 64 KiB at a time, then handed to the input buffer whole: decoding it needs no copy
     * (evbuffer_pullup of a single chunk). */
    size_t have = evbuffer_get_length(c->in);
    if (!c->big && c->in_charged > have && c->in_charged - have > READ_CHUNK &&
        (c->big = big_alloc(c->d, c->in_charged)) != NULL) {
        c->big_have = (size_t)evbuffer_remove(c->in, c->big, have); /* all of it this frame's */
    }
    bool room;
    if (c->big) {
        v.iov_base = c->big + c->big_have;
        v.iov_len = c->in_charged - c->big_have;
        room = true;
    } else {
        room = evbuffer_reserve_space(c->in, READ_CHUNK, &v, 1) >= 1;
    }
    if (!c->read_paused && room) {
        /* recvmsg: a client may pass a descriptor (ShmAttachRequest), or attach some to any
         * frame; each is kept for its frame, and closed unless that frame takes it. */
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * SERVER_RX_FDS_MAX)];
        } cbuf;
        struct iovec iov = {v.iov_base, v.iov_len};
        struct msghdr msg = {.msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = cbuf.buf,
            .msg_controllen = sizeof(cbuf.buf)};
        ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
        if (n > 0) {
            c->in_total += (uint64_t)n;
            if (msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC))
                rx_fds_add(c, &msg);
            if (c->rx_foreign) {
                conn_close(c, "sent a descriptor that is not a memfd");
                conn_unref(c);
                return;
            }
            v.iov_len = (size_t)n;
            if (!c->big)
                evbuffer_commit_space(c->in, &v, 1);
            else if ((c->big_have += (size_t)n) == c->in_charged)
                conn_big_whole(c);
            if (c->hello_ev)
                c->heard_ms = now_ms();
        } else if (n == 0) {
            conn_close(c, NULL);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c, strerror(errno));
        }
    }
    if (c->fd >= 0)
        conn_process_input(c);
    conn_unref(c);
}

/* Until the Hello: closes c past hello_timeout from accept or hello_idle_timeout silent. */
static void hello_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    const struct config *cfg = &c->d->cfg;
    uint64_t now = now_ms(), deadline = c->accepted_ms + cfg->hello_timeout * 1000ull,
             idle_end = c->heard_ms + cfg->hello_idle_timeout * 1000ull;
    char why[96];
    if (now >= deadline)
        snprintf(why, sizeof(why), "no Hello within %u s", cfg->hello_timeout);
    else if (now >= idle_end)
        snprintf(why, sizeof(why), "silent for %u s before its Hello", cfg->hello_idle_timeout);
    else {
        uint64_t next = (deadline < idle_end ? deadline : idle_end) - now;
        struct timeval tv = {(time_t)(next / 1000), (suseconds_t)(next % 1000) * 1000};
        event_add(c->hello_ev, &tv);
        return;
    }
    unsigned dropped;
    char more[48];
    if (budget_log_pass(c->d->budget, &dropped))
        log_info(CONN_FMT " closed: %s%s", CONN_ARGS(c), why,
            left_out(more, sizeof(more), dropped));
    conn_close(c, NULL);
}

/* The connection itself: c->refused set by the caller counts it apart from the admitted. */
static struct conn *conn_new(struct daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid,
    bool refused)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c) {
        c->rev = event_new(d->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
        c->wev = event_new(d->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
        c->in = evbuffer_new();
        c->out = evbuffer_new();
    }
    if (!c || !c->rev || !c->wev || !c->in || !c->out || event_add(c->rev, NULL) != 0 ||
        (!refused && budget_conn_add(d->budget, uid) != 0)) {
        log_error("out of memory accepting a connection");
        if (c) {
            if (c->rev)
                event_free(c->rev);
            if (c->wev)
                event_free(c->wev);
            if (c->in)
                evbuffer_free(c->in);
            if (c->out)
                evbuffer_free(c->out);
            free(c);
        }
        close(fd);
        return NULL;
    }
    c->d = d;
    c->fd = fd;
    c->serial = ++d->conn_serial;
    c->uid = uid;
    c->gid = gid;
    c->pid = pid;
    c->refused = refused;
    c->frame_fd = -1;
    c->refs = 1;
    TAILQ_INSERT_TAIL(&d->conns, c, link);
    if (refused)
        d->nrefusing++;
    else
        d->nconns++;
    log_debug("connection %llu from uid %u gid %u pid %d", (unsigned long long)c->serial,
        (unsigned)c->uid, (unsigned)c->gid, (int)c->pid);
    return c;
}

/*
 * Makes a connection of an already-connected, non-blocking stream socket whose peer is
 * (uid, gid, pid). Takes fd: on failure it is closed and NULL returned. How
 * fuzz/fuzz_daemon.c hands the daemon one end of a socketpair.
 */
struct conn *server_adopt(struct daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid)
{
    return conn_new(d, fd, uid, gid, pid, false);
}

/* Root, or a member of group peerdist (primary or supplementary, SO_PEERGROUPS). */
static bool peer_is_admin(const struct daemon *d, int fd, const struct ucred *cred)
{
    if (cred->uid == 0)
        return true;
    if (!d->have_admin_gid)
        return false;
    if (cred->gid == d->admin_gid)
        return true;
    gid_t stack[64], *groups = stack;
    socklen_t len = sizeof(stack);
    bool admin = false;
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    if (rc != 0 && errno == ERANGE && (groups = malloc(len)))
        rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    for (size_t i = 0; rc == 0 && i < len / sizeof(gid_t) && !admin; i++)
        admin = groups[i] == d->admin_gid;
    if (groups != stack)
        free(groups);
    return admin;
}

/* Why a new connection of uid cannot have a slot, or NULL if it can (why has room for 160). */
static const char *admission(struct daemon *d, uid_t uid, bool admin, char *why, size_t len)
{
    if (d->nconns >= d->max_conns) {
        snprintf(why, len, "max_connections (%u) reached", d->max_conns);
    } else if (!admin && d->nconns >= d->max_conns - d->conn_reserve) {
        snprintf(why, len,
            "max_connections (%u) reached but for the %u kept for root and "
            "group " SERVER_ADMIN_GROUP,
            d->max_conns, d->conn_reserve);
    } else if (!admin && budget_conns(d->budget, uid) >= d->cfg.max_connections_per_uid) {
        snprintf(why, len, "max_connections_per_uid (%u) reached", d->cfg.max_connections_per_uid);
    } else {
        return NULL;
    }
    return why;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
    void *arg)
{
    struct daemon *d = arg;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
        log_warn("SO_PEERCRED: %s; refusing connection", strerror(errno));
        close(fd);
        return;
    }
    if (d->stopping) {
        log_debug("refusing connection from uid %u pid %d: shutting down", (unsigned)cred.uid,
            (int)cred.pid);
        close(fd);
        return;
    }
    bool admin = peer_is_admin(d, fd, &cred);
    char buf[160], more[48];
    const char *why = admission(d, cred.uid, admin, buf, sizeof(buf));
    if (why) {
        bool answered = d->nrefusing < d->max_refusing;
        unsigned dropped;
        if (budget_log_pass(d->budget, &dropped))
            log_warn("refusing connection from uid %u pid %d: %s%s%s", (unsigned)cred.uid,
                (int)cred.pid, why,
                answered ? "" : "; closed unanswered, too many refusals pending",
                left_out(more, sizeof(more), dropped));
        if (!answered) {
            close(fd);
            return;
        }
    }
    struct conn *c = conn_new(d, fd, cred.uid, cred.gid, cred.pid, why != NULL);
    if (!c)
        return;
    c->admin = admin;
    c->accepted_ms = c->heard_ms = now_ms();
    const struct config *cfg = &d->cfg;
    unsigned first = cfg->hello_idle_timeout < cfg->hello_timeout ? cfg->hello_idle_timeout
                                                                  : cfg->hello_timeout;
    struct timeval tv = {(time_t)first, 0};
    if (!(c->hello_ev = evtimer_new(d->base, hello_timer_cb, c)) ||
        evtimer_add(c->hello_ev, &tv) != 0)
        conn_close(c, "out of memory arming its Hello deadline");
}

/*
 * Out of descriptors (EMFILE, ENFILE) or memory: the listening socket stays readable, so
 * accepting pauses (the clients wait in the backlog) and resumes on a timer or when a
 * connection closes; one log line per SERVER_ACCEPT_RETRY_SECONDS at most.
 */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct daemon *d = arg;
    int err = EVUTIL_SOCKET_ERROR();
    evconnlistener_disable(l);
    d->accept_paused = true;
    struct timeval tv = {SERVER_ACCEPT_RETRY_SECONDS, 0};
    event_add(d->accept_retry_ev, &tv);
    d->accept_failures++;
    time_t now = time(NULL);
    if (now - d->accept_logged < SERVER_ACCEPT_RETRY_SECONDS)
        return;
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    log_warn("accept: %s; not accepting for %d s (%u connections, descriptor limit %llu; %u "
             "failures since the last such line)",
        strerror(err), SERVER_ACCEPT_RETRY_SECONDS, d->nconns + d->nrefusing,
        (unsigned long long)rl.rlim_cur, d->accept_failures);
    d->accept_logged = now;
    d->accept_failures = 0;
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    resume_accepting(arg);
}

/*
 * Only a stale socket is ever removed: a path that is anything but a socket (a regular file,
 * a symbolic link, a directory) stops the daemon untouched; a socket that answers belongs to
 * a live daemon.
 */
static int clear_stale_socket(const struct sockaddr_un *sun)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        log_error("socket %s: %s", sun->sun_path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_error("%s exists and is not a socket; not replacing it", sun->sun_path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    if (live) {
        log_error("another peerdistd is already listening on %s", sun->sun_path);
        return -1;
    }
    if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
        log_error("cannot remove stale socket %s: %s", sun->sun_path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * max_connections, the refusals answered and the daemon's own descriptors must fit
 * RLIMIT_NOFILE: the soft limit is raised toward the hard one if need be, and what still does
 * not fit lowers max_connections, with a log line. -1 if not even one connection fits.
 */
static int fit_descriptor_limit(struct daemon *d)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_error("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    rlim_t want = (rlim_t)d->cfg.max_connections + SERVER_REFUSING_MAX + SERVER_FD_RESERVE;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("descriptor limit (RLIMIT_NOFILE) raised from %llu to %llu",
                (unsigned long long)was, (unsigned long long)rl.rlim_cur);
        else
            rl.rlim_cur = was;
    }
    d->max_conns = d->cfg.max_connections;
    d->max_refusing = SERVER_REFUSING_MAX;
    if (rl.rlim_cur < want) {
        if (rl.rlim_cur < SERVER_FD_RESERVE + 2) {
            log_error("the descriptor limit (RLIMIT_NOFILE %llu) leaves no room for "
                      "connections: peerdistd needs at least %d",
                (unsigned long long)rl.rlim_cur, SERVER_FD_RESERVE + 2);
            return -1;
        }
        unsigned room = (unsigned)(rl.rlim_cur - SERVER_FD_RESERVE);
        d->max_refusing = room / 8 < SERVER_REFUSING_MAX ? room / 8 : SERVER_REFUSING_MAX;
        d->max_conns = room - d->max_refusing;
        log_warn("max_connections %u lowered to %u: the descriptor limit (RLIMIT_NOFILE) is %llu, "
                 "and peerdistd keeps %u for itself and %u to answer refused connections",
            d->cfg.max_connections, d->max_conns, (unsigned long long)rl.rlim_cur,
            SERVER_FD_RESERVE, d->max_refusing);
    }
    d->conn_reserve = d->max_conns / 4 < SERVER_ADMIN_RESERVE ? d->max_conns / 4
                                                              : SERVER_ADMIN_RESERVE;
    return 0;
}

/*
 * Socket activation (sd_listen_fds(3), spoken directly): the service manager passes
 * LISTEN_FDS sockets from descriptor 3 on, for the process LISTEN_PID. Returns the listening
 * socket it handed us, -1 if none was (or not to us: a LISTEN_PID of another process is
 * ignored), -2 if the one handed is unusable (logged). The variables are unset either way,
 * so nothing this process starts takes them for its own.
 */
#define SD_LISTEN_FDS_START 3

static int take_activated_socket(void)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    if (!pid_s || !fds_s) {
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return -1;
    }
    char *end;
    errno = 0;
    long long pid = strtoll(pid_s, &end, 10);
    bool pid_ok = errno == 0 && *pid_s && !*end;
    errno = 0;
    long long n = strtoll(fds_s, &end, 10);
    bool n_ok = errno == 0 && *fds_s && !*end;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!pid_ok || pid != (long long)getpid()) {
        log_info("LISTEN_PID=%s is not this process (%d): ignoring socket activation, binding "
                 "the socket myself",
            pid_s, (int)getpid());
        return -1;
    }
    if (!n_ok || n < 0 || n > 1024) {
        log_error("socket activation: LISTEN_FDS=%s is not a count of sockets (1 expected)", fds_s);
        return -2;
    }
    if (n == 0) {
        log_info("socket activation: LISTEN_FDS=0, no socket handed over: binding it myself");
        return -1;
    }
    int fd = SD_LISTEN_FDS_START;
    int type = 0, listening = 0;
    socklen_t tl = sizeof(type), ll = sizeof(listening);
    struct sockaddr_un sun;
    socklen_t al = sizeof(sun);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) != 0 ||
        getsockname(fd, (struct sockaddr *)&sun, &al) != 0) {
        log_error("socket activation: descriptor %d is not a socket (%s); a stream socket of "
                  "the unix family, listening, is expected (ListenStream= in the .socket unit)",
            fd, strerror(errno));
        return -2;
    }
    if (sun.sun_family != AF_UNIX || type != SOCK_STREAM || !listening) {
        log_error("socket activation: descriptor %d is %s; peerdistd needs one listening unix "
                  "stream socket (ListenStream= a path, in peerdistd.socket)",
            fd,
            sun.sun_family != AF_UNIX ? "not a unix socket"
                : type != SOCK_STREAM ? "not a stream socket"
                                      : "not listening");
        return -2;
    }
    if (n > 1)
        log_warn("socket activation: %lld sockets handed over; using descriptor %d, closing the "
                 "others",
            n, fd);
    for (long long i = 1; i < n; i++)
        close((int)(SD_LISTEN_FDS_START + i));
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        log_error("socket activation: descriptor %d: %s", fd, strerror(errno));
        return -2;
    }
    return fd;
}

/* Binds the configured path (replacing only a stale socket), mode 0666. fd, or -1 (logged). */
static int bind_own_socket(struct daemon *d)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(d->cfg.socket_path) >= sizeof(sun.sun_path)) {
        log_error("socket path too long (max %zu bytes): %s", sizeof(sun.sun_path) - 1,
            d->cfg.socket_path);
        return -1;
    }
    strcpy(sun.sun_path, d->cfg.socket_path);
    if (fs_make_parent_dir(sun.sun_path) != 0 || clear_stale_socket(&sun) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        log_error("cannot bind %s: %s", sun.sun_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct stat st;
    if (lstat(sun.sun_path, &st) == 0) {
        d->sock_dev = st.st_dev;
        d->sock_ino = st.st_ino;
        d->sock_bound = true;
    }
    /* Every local user may use the API, as on Windows (DESIGN.md, Identity). */
    if (chmod(sun.sun_path, 0666) != 0)
        log_warn("chmod %s: %s", sun.sun_path, strerror(errno));
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        log_error("cannot listen on %s: %s", sun.sun_path, strerror(errno));
        close(fd);
        unlink(sun.sun_path);
        d->sock_bound = false;
        return -1;
    }
    return fd;
}

/* The socket handed over by the service manager: its path becomes the configured one. */
static void adopt_activated_socket(struct daemon *d, int fd)
{
    struct sockaddr_un sun;
    socklen_t al = sizeof(sun);
    memset(&sun, 0, sizeof(sun));
    if (getsockname(fd, (struct sockaddr *)&sun, &al) == 0 &&
        al > offsetof(struct sockaddr_un, sun_path) && sun.sun_path[0]) {
        size_t len = strnlen(sun.sun_path, al - offsetof(struct sockaddr_un, sun_path));
        if (len != strlen(d->cfg.socket_path) || memcmp(sun.sun_path, d->cfg.socket_path, len) != 0)
            log_warn("socket activation: the socket handed over is %.*s, not the configured %s; "
                     "serving on the one handed over",
                (int)len, sun.sun_path, d->cfg.socket_path);
        snprintf(d->cfg.socket_path, sizeof(d->cfg.socket_path), "%.*s", (int)len, sun.sun_path);
    }
    d->sock_activated = true;
    struct stat st;
    if (stat(d->cfg.socket_path, &st) == 0 && (st.st_mode & 0666) != 0666)
        log_warn("socket activation: %s is mode %04o, so not every user can connect ("
                 "SocketMode=0666 in peerdistd.socket); left as handed over",
            d->cfg.socket_path, (unsigned)(st.st_mode & 07777));
    log_info("socket activation: listening on the socket handed over (descriptor %d, %s); it is "
             "the service manager's, never removed or changed here",
        fd, d->cfg.socket_path);
}

int server_listen(struct daemon *d)
{
    pthread_once(&closer_once,
        closer_start); /* before any client: its pipe is there from the start */
    if (fit_descriptor_limit(d) != 0)
        return -1;
    int fd = take_activated_socket();
    if (fd == -2)
        return -1;
    if (fd >= 0)
        adopt_activated_socket(d, fd);
    else if ((fd = bind_own_socket(d)) < 0)
        return -1;
    /* backlog 0: the socket listens already (bind_own_socket, or the service manager). */
    d->listener = evconnlistener_new(d->base, accept_cb, d,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!d->listener) {
        log_error("cannot listen on %s", d->cfg.socket_path);
        close(fd);
        if (d->sock_bound)
            unlink(d->cfg.socket_path);
        d->sock_bound = false;
        return -1;
    }
    evconnlistener_set_error_cb(d->listener, accept_error_cb);
    log_info("at most %u connections (%u of them for root and group " SERVER_ADMIN_GROUP
             "), %u per uid; Hello within %u s, silent at most %u s before it; memory budget "
             "%zu bytes",
        d->max_conns, d->conn_reserve, d->cfg.max_connections_per_uid, d->cfg.hello_timeout,
        d->cfg.hello_idle_timeout, budget_limit(d->budget));
    return 0;
}

/* The gid of group peerdist, whose members are admins (DESIGN.md, Identity). */
static void find_admin_group(struct daemon *d)
{
    char buf[4096];
    struct group gr, *res = NULL;
    if (getgrnam_r(SERVER_ADMIN_GROUP, &gr, buf, sizeof(buf), &res) == 0 && res) {
        d->have_admin_gid = true;
        d->admin_gid = res->gr_gid;
    }
}

int server_init(struct daemon *d, server_request_fn on_request)
{
    TAILQ_INIT(&d->conns);
    TAILQ_INIT(&d->closed);
    TAILQ_INIT(&d->to_write);
    TAILQ_INIT(&d->backlog);
    d->on_request = on_request;
    d->max_conns = d->cfg.max_connections;
    d->max_refusing = SERVER_REFUSING_MAX;
    d->conn_reserve = d->max_conns / 4 < SERVER_ADMIN_RESERVE ? d->max_conns / 4
                                                              : SERVER_ADMIN_RESERVE;
    find_admin_group(d);
    d->budget = budget_new(d->cfg.memory_budget);
    d->write_ev = event_new(d->base, -1, 0, write_queued_cb, d);
    d->reap_ev = event_new(d->base, -1, 0, reap_cb, d);
    d->accept_retry_ev = evtimer_new(d->base, accept_retry_cb, d);
    d->backlog_ev = evtimer_new(d->base, backlog_cb, d);
    return d->budget && d->write_ev && d->reap_ev && d->accept_retry_ev && d->backlog_ev ? 0 : -1;
}

void server_free(struct daemon *d)
{
    server_stop_listening(d);
    server_close_all(d);
    if (d->write_ev)
        event_free(d->write_ev);
    if (d->reap_ev)
        event_free(d->reap_ev);
    if (d->accept_retry_ev)
        event_free(d->accept_retry_ev);
    if (d->backlog_ev)
        event_free(d->backlog_ev);
    d->write_ev = d->reap_ev = d->accept_retry_ev = d->backlog_ev = NULL;
    free(d->big_spare);
    d->big_spare = NULL;
    budget_free(d->budget); /* last: the modules gave back what they held as they closed */
    d->budget = NULL;
}

int server_on_close(struct daemon *d, server_close_fn fn)
{
    if (d->nclose_hooks == SERVER_MAX_CLOSE_HOOKS)
        return -1;
    d->close_hooks[d->nclose_hooks++] = fn;
    return 0;
}

void server_stop_listening(struct daemon *d)
{
    if (!d->listener)
        return;
    evconnlistener_free(d->listener);
    d->listener = NULL;
    d->accept_paused = false;
    if (d->accept_retry_ev)
        event_del(d->accept_retry_ev);
    /* Only the socket we bound (never one handed over by socket activation): someone may
     * have put something else there meanwhile. */
    struct stat st;
    if (d->sock_bound && lstat(d->cfg.socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == d->sock_dev && st.st_ino == d->sock_ino)
        unlink(d->cfg.socket_path);
    d->sock_bound = false;
}

void server_close_all(struct daemon *d)
{
    /* Best effort, non-blocking: push out replies already queued before the sockets close. */
    struct conn *c;
    TAILQ_FOREACH (c, &d->conns, link) {
        while (evbuffer_get_length(c->out) > 0 && evbuffer_write(c->out, c->fd) > 0)
            ;
    }
    while (!TAILQ_EMPTY(&d->conns))
        conn_close(TAILQ_FIRST(&d->conns), NULL);
    reap_closed(d);
}
