/*
 * server.c - the transport: the Unix stream socket, accepting (with SO_PEERCRED identity),
 * reading length-prefixed frames with their size checked before unpacking, handing each
 * request to the daemon's one handler, writing replies with backpressure, and closing a
 * misbehaving connection without touching any other. It knows no service: modules register
 * close hooks (server_on_close), which run from the loop after a close, never inside a handler.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "fsutil.h"
#include "log.h"

#define LISTEN_BACKLOG 128

/* Bytes asked of one read(): many small frames, or a good part of a large one. */
#define READ_CHUNK (64 * 1024)

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);

void conn_unref(struct conn *c)
{
    if (--c->refs == 0)
        free(c);
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
    event_free(c->rev);
    event_free(c->wev);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    close(c->fd);
    c->fd = -1;
    TAILQ_REMOVE(&d->conns, c, link);
    d->nconns--;
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
    if (!c->write_queued) {
        c->write_queued = true;
        TAILQ_INSERT_TAIL(&c->d->to_write, c, write_link);
        event_active(c->d->write_ev, EV_TIMEOUT, 0);
    }
    if (!c->read_paused && evbuffer_get_length(c->out) > CONN_MAX_OUTPUT_BYTES) {
        /* The client is not reading its replies: stop reading its requests. */
        event_del(c->rev);
        c->read_paused = true;
    }
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

/* Writes what the socket takes; 0 = all out or waiting for space, -1 = connection closed. */
static int conn_write_out(struct conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        int w = evbuffer_write(c->out, c->fd);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->wev, NULL);
            return 0;
        }
        if (w < 0) {
            conn_close(c, strerror(errno));
            return -1;
        }
    }
    event_del(c->wev);
    if (c->close_after_write) {
        conn_close(c, NULL);
        return -1;
    }
    if (c->read_paused) {
        c->read_paused = false;
        event_add(c->rev, NULL);
        event_active(c->rev, EV_READ, 0); /* requests may be waiting in the input buffer */
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

/* Takes whole frames off the input buffer; a bad one closes this connection only. */
static void conn_process_input(struct conn *c)
{
    struct evbuffer *in = c->in;
    while (c->fd >= 0 && !c->read_paused && !c->close_after_write) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        if (evbuffer_copyout(in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr))
            break;
        uint32_t payload_len = frame_header_length(hdr);
        if (payload_len > FRAME_MAX_PAYLOAD) {
            log_warn(CONN_FMT ": frame length %u exceeds %u bytes", CONN_ARGS(c), payload_len,
                FRAME_MAX_PAYLOAD);
            conn_close(c, "oversized frame");
            break;
        }
        size_t frame_len = FRAME_HEADER_SIZE + (size_t)payload_len;
        if (evbuffer_get_length(in) < frame_len)
            break;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)frame_len);
        Peerdist__Request *req = peerdist__request__unpack(NULL, payload_len,
            p + FRAME_HEADER_SIZE);
        evbuffer_drain(in, frame_len);
        if (!req) {
            log_warn(CONN_FMT ": undecodable frame of %u bytes", CONN_ARGS(c), payload_len);
            conn_close(c, "malformed frame");
            break;
        }
        c->d->on_request(c, req);
        peerdist__request__free_unpacked(req, NULL);
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->refs++; /* a handler may close the connection under us */
    struct evbuffer_iovec v;
    /* A large frame in progress: ask for the rest of it in one read, not 64 KiB at a time. */
    size_t want = READ_CHUNK, have = evbuffer_get_length(c->in);
    uint8_t hdr[FRAME_HEADER_SIZE];
    if (have >= FRAME_HEADER_SIZE &&
        evbuffer_copyout(c->in, hdr, sizeof(hdr)) == FRAME_HEADER_SIZE) {
        size_t frame = FRAME_HEADER_SIZE + (size_t)frame_header_length(hdr);
        if (frame > have && frame - have > want && frame <= FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD)
            want = frame - have;
    }
    if (!c->read_paused && evbuffer_reserve_space(c->in, (ev_ssize_t)want, &v, 1) >= 1) {
        ssize_t n = read(c->fd, v.iov_base, v.iov_len);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(c->in, &v, 1);
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

/*
 * Makes a connection of an already-connected, non-blocking stream socket whose peer is
 * (uid, gid, pid). Takes fd: on failure it is closed and NULL returned. accept_cb's only
 * path, and how fuzz/fuzz_daemon.c hands the daemon one end of a socketpair.
 */
struct conn *server_adopt(struct daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c) {
        c->rev = event_new(d->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
        c->wev = event_new(d->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
        c->in = evbuffer_new();
        c->out = evbuffer_new();
    }
    if (!c || !c->rev || !c->wev || !c->in || !c->out || event_add(c->rev, NULL) != 0) {
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
    c->refs = 1;
    TAILQ_INSERT_TAIL(&d->conns, c, link);
    d->nconns++;
    log_debug("connection %llu from uid %u gid %u pid %d", (unsigned long long)c->serial,
        (unsigned)c->uid, (unsigned)c->gid, (int)c->pid);
    return c;
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
    if (d->stopping || d->nconns >= d->cfg.max_connections) {
        log_warn("refusing connection from uid %u pid %d: %s", (unsigned)cred.uid, (int)cred.pid,
            d->stopping ? "shutting down" : "max_connections reached");
        close(fd);
        return;
    }
    server_adopt(d, fd, cred.uid, cred.gid, cred.pid);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: log and keep serving the connections we have. */
    log_warn("accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
}

/* A socket file that nobody answers on is stale; one that answers belongs to a live daemon. */
static int clear_stale_socket(const struct sockaddr_un *sun)
{
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

int server_listen(struct daemon *d)
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
    /* Every local user may use the API, as on Windows (DESIGN.md, Identity). */
    if (chmod(sun.sun_path, 0666) != 0)
        log_warn("chmod %s: %s", sun.sun_path, strerror(errno));
    d->listener = evconnlistener_new(d->base, accept_cb, d, LEV_OPT_CLOSE_ON_FREE, LISTEN_BACKLOG,
        fd);
    if (!d->listener) {
        log_error("cannot listen on %s", sun.sun_path);
        close(fd);
        unlink(sun.sun_path);
        return -1;
    }
    evconnlistener_set_error_cb(d->listener, accept_error_cb);
    return 0;
}

int server_init(struct daemon *d, server_request_fn on_request)
{
    TAILQ_INIT(&d->conns);
    TAILQ_INIT(&d->closed);
    TAILQ_INIT(&d->to_write);
    d->on_request = on_request;
    d->write_ev = event_new(d->base, -1, 0, write_queued_cb, d);
    d->reap_ev = event_new(d->base, -1, 0, reap_cb, d);
    return d->write_ev && d->reap_ev ? 0 : -1;
}

void server_free(struct daemon *d)
{
    server_stop_listening(d);
    server_close_all(d);
    if (d->write_ev)
        event_free(d->write_ev);
    if (d->reap_ev)
        event_free(d->reap_ev);
    d->write_ev = d->reap_ev = NULL;
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
    if (d->listener) {
        evconnlistener_free(d->listener);
        d->listener = NULL;
        unlink(d->cfg.socket_path);
    }
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
