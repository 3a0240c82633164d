/* SPDX-License-Identifier: MIT */
/*
 * daemon.h - peerdistd's shared state (the event loop, the store, the block store, the
 * connections) and the transport (server.c): connections, frames in, replies out. The
 * transport knows no service: requests go to one handler, and modules that keep state per
 * connection register a close hook. Set-up and tear-down of the whole: daemon_init and
 * daemon_free (daemon.c).
 *
 * Threads: everything here belongs to the event loop's thread. Work that leaves it goes
 * through the worker pool (worker.h) and comes back as a done callback on the loop; the flush
 * worker uses its own database connection (flush.c), never d->store.
 */
#ifndef PEERDIST_DAEMON_H
#define PEERDIST_DAEMON_H

#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "frame.h"
#include "store.h"

/* Per-connection limits; see proto/README.md. */
/*
 * A connection's queued reply bytes past which its next requests are not read until they are
 * written: a client that does not read, or one whose 1 MiB in-frame reads pile up, holds at
 * most this (plus the replies of requests already taken) in the daemon.
 */
#define CONN_MAX_OUTPUT_BYTES (4u * 1024 * 1024)
#define CONN_MAX_CONTENT_HANDLES 4096
/* Close hooks a daemon holds (one per module that keeps per-connection state). */
#define SERVER_MAX_CLOSE_HOOKS 8
/*
 * Connection slots (peerdistd.conf(5)): of max_connections, this many (at most a quarter) are
 * kept for root and group peerdist; connections over a limit are accepted only to answer
 * their Hello ERROR_REQ_NOT_ACCEP, at most SERVER_REFUSING_MAX at once (past that they are
 * closed unanswered); SERVER_FD_RESERVE descriptors stay for the daemon's own files.
 */
#define SERVER_ADMIN_RESERVE 16
#define SERVER_ADMIN_GROUP "peerdist"
#define SERVER_REFUSING_MAX 64
#define SERVER_FD_RESERVE 64
/* Out of descriptors (EMFILE, ENFILE): accepting pauses this long, one log line each time. */
#define SERVER_ACCEPT_RETRY_SECONDS 1
/*
 * Frames up to this size are read without asking the memory budget (one per connection
 * beyond its read buffer); a larger one is counted against its uid's share while it arrives
 * and is handled, or, past the share, read and dropped and answered ERROR_NOT_ENOUGH_MEMORY.
 */
#define SERVER_SMALL_FRAME (64u * 1024)
/*
 * One connection's turn: the loop turns to the others (and reads it again later) once it has
 * handled this many frames, or request and reply bytes of this many (a 1 MiB AddData or
 * in-frame read ends its turn: the small calls of other connections go between big ones).
 */
#define SERVER_FRAMES_PER_TURN 64
#define SERVER_BYTES_PER_TURN (256u * 1024)
/*
 * Descriptors (SCM_RIGHTS) a connection may have in flight with bytes not yet handled as a
 * frame; more are closed as they come. Only ShmAttachRequest takes one; any other is closed
 * when the frame it came with is handled.
 */
#define SERVER_RX_FDS_MAX 4
/* Size bounds of a shared read region (ShmAttachRequest), one per connection. */
#define SERVER_SHM_MIN (64u * 1024)
#define SERVER_SHM_MAX (16u * 1024 * 1024)

struct blockstore;
struct budget;
struct worker_pool;

struct conn {
    struct daemon *d;
    int fd;               /* -1 once closed */
    struct event *rev;    /* readable: persistent while reading is allowed */
    struct event *wev;    /* writable: armed only while replies wait for socket space */
    struct evbuffer *in;  /* bytes read, not yet a whole frame */
    struct evbuffer *out; /* replies not yet written */
    bool write_queued;    /* on d->to_write */
    bool backlogged;      /* on d->backlog: whole frames wait for its next turn */
    uint64_t serial;      /* for log lines */
    uid_t uid;
    gid_t gid;
    pid_t pid;
    bool admin;   /* root or group peerdist: no per-uid cap, may use the reserved slots */
    bool refused; /* over a connection limit: its first request is answered 71, then closed */
    bool hello_done;
    bool close_after_write;
    bool read_paused;
    uint32_t version;
    /* Until the Hello: closed past hello_timeout from accept, or hello_idle_timeout silent. */
    struct event *hello_ev;
    uint64_t accepted_ms, heard_ms; /* CLOCK_MONOTONIC */
    /* Counted against the memory budget (budget.h): */
    size_t out_charged; /* bytes of out */
    size_t in_charged;  /* the large frame at the head of in, while it arrives and is handled */
    uint8_t *big;       /* that frame while it arrives, read straight into a buffer of its size */
    size_t big_have;    /* its bytes in big so far */
    /* A large frame refused for memory: bytes still to drop, and its first bytes (its id). */
    size_t discard;
    uint8_t discard_head[FRAME_HEADER_SIZE + 11];
    size_t discard_seen;
    /*
     * The list membership plus every piece of queued work that will reply
     * later: take a reference (c->refs++) before handing c to a worker or a
     * later callback, conn_send after conn_close is a no-op, conn_unref last.
     */
    unsigned refs;
    /* Descriptors received (SCM_RIGHTS), each with the stream position of its frame. */
    int rx_fd[SERVER_RX_FDS_MAX];
    uint64_t rx_pos[SERVER_RX_FDS_MAX];
    unsigned nrx_fds;
    bool rx_foreign;   /* sent a descriptor that is not shared memory: closed (server.c) */
    uint64_t in_total; /* bytes read from the socket so far */
    int frame_fd;      /* while a frame is handled: the descriptor it came with, or -1 */
    /* The shared read region (ShmAttachRequest): mapped MAP_SHARED, counted in the budget,
     * unmapped at close. The daemon writes read bytes into it and never reads it. */
    uint8_t *shm;
    size_t shm_size;
    /* Modules' per-connection state; each module frees its own in its close hook. */
    void *pub;              /* publish.c: streams, content-information handles, publications */
    void *content;          /* content.c: content handles */
    TAILQ_ENTRY(conn) link; /* d->conns while open, d->closed until its hooks ran */
    TAILQ_ENTRY(conn) write_link;   /* d->to_write */
    TAILQ_ENTRY(conn) backlog_link; /* d->backlog */
};

/* Handles one decoded request; must answer it (now or later) or close the connection. */
typedef void (*server_request_fn)(struct conn *c, const Peerdist__Request *req);
/* A connection closed: the module releases what it kept for it. */
typedef void (*server_close_fn)(struct conn *c);

struct daemon {
    struct event_base *base;
    struct config cfg;
    struct store *store;         /* the loop's database connection */
    struct blockstore *bs;       /* block bytes in data files (blockstore.h) */
    struct worker_pool *workers; /* hashing, disk writes, reclaim, flush batches */
    struct worker_pool *syncer;  /* AddData's group fdatasync, one thread (content-commit.c) */
    int dir_lock;                /* the database directory's lock (fsutil.h); -1 if not held */
    /* Bumped whenever the block index changes: cached views of it (read slot maps) reload. */
    uint64_t blocks_gen;
    /* How many of those bumps only added rows (AddData's commits): a slot map loaded since
     * the last other change is still right for every block it holds (content-read.c). */
    uint64_t blocks_added;
    time_t started;
    bool stopping;

    /* server.c */
    struct budget *budget; /* memory and connection slots per uid (budget.h) */
    struct evconnlistener *listener;
    dev_t sock_dev; /* the socket file we bound: removed at exit only if it is still ours */
    ino_t sock_ino;
    bool sock_bound;     /* we bound it (and may remove it at exit) */
    bool sock_activated; /* handed over by the service manager (LISTEN_FDS): never touched */
    struct event *accept_retry_ev; /* accepting again after running out of descriptors */
    bool accept_paused;
    time_t accept_logged;
    unsigned accept_failures;
    unsigned max_conns;    /* max_connections, fitted to the descriptor limit */
    unsigned conn_reserve; /* of max_conns, for root and group peerdist */
    unsigned max_refusing, nrefusing;
    bool have_admin_gid;
    gid_t admin_gid;
    server_request_fn on_request;
    server_close_fn close_hooks[SERVER_MAX_CLOSE_HOOKS];
    unsigned nclose_hooks;
    struct event *write_ev;   /* writes queued replies once the loop has read what is ready */
    struct event *reap_ev;    /* runs closed connections' hooks outside any handler */
    struct event *backlog_ev; /* next turn of connections with frames waiting, after polling */
    /* The last large frame's buffer, kept for the next one: a fresh one would be paged in
     * (and given back to the system) for every frame. */
    uint8_t *big_spare;
    size_t big_spare_size;
    TAILQ_HEAD(, conn) to_write;
    TAILQ_HEAD(, conn) backlog;
    TAILQ_HEAD(, conn) conns;
    TAILQ_HEAD(, conn) closed;
    unsigned nconns; /* accepted, not refused */
    uint64_t conn_serial;

    /* Modules' daemon-wide state. */
    void *pub;        /* publish.c: publications, the server secret */
    void *content;    /* content.c: group sync, deferred writes */
    void *flush;      /* flush.c: queued flushes, the flush connection, the write gate */
    void *disk;       /* disk.c: the reserve file, free-space checks */
    void *admin;      /* admin.c: the server secret in use */
    void *evict;      /* evict.c: the cache's bounds, recency and counters in memory */
    void *discovery;  /* discovery.c: MS-PCCRD sockets and probes (distributed mode) */
    void *serve;      /* peer-serve.c: the MS-PCCRR server (distributed mode) */
    void *fetch;      /* peer-fetch.c: fetches from peers for reads (distributed mode) */
    void *checkpoint; /* checkpoint.c: the database's checkpoints, off the loop */
};

/* daemon.c: everything but the listening socket and the signals, from d->cfg. */
int daemon_init(struct daemon *d);
/* Answers what is pending, closes every connection (the listener first). */
void daemon_stop(struct daemon *d);
void daemon_free(struct daemon *d);
/* CLOCK_MONOTONIC in milliseconds, for durations; any thread. Inline: no module's call. */
static inline double daemon_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* server.c */
/* The transport and the memory budget (from d->cfg). */
int server_init(struct daemon *d, server_request_fn on_request);
void server_free(struct daemon *d);
/* Hooks run in registration order, on the loop, never inside a request handler. */
int server_on_close(struct daemon *d, server_close_fn fn);
/*
 * Fits max_connections to the descriptor limit, then listens: on the socket the service
 * manager handed over (LISTEN_PID is this process, LISTEN_FDS >= 1: descriptor 3, which must
 * be a listening unix stream socket; never unlinked or chmod-ed), else on cfg.socket_path,
 * bound here (replacing only a stale socket; mode 0666; removed at exit).
 */
int server_listen(struct daemon *d);
void server_stop_listening(struct daemon *d);
/* Closes every connection and runs their close hooks now. */
void server_close_all(struct daemon *d);
/*
 * A connection on a connected non-blocking socket (takes fd); NULL, fd closed, on failure.
 * No connection limit or Hello deadline applies: those are for accepted connections.
 */
struct conn *server_adopt(struct daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid);
void conn_send(struct conn *c, const Peerdist__Reply *reply);
/* A reply with no body (status only) and one carrying a byte count (CountReply). */
void conn_reply_status(struct conn *c, uint64_t id, uint32_t status);
void conn_reply_count(struct conn *c, uint64_t id, uint64_t bytes);
/*
 * ShmAttachRequest: checks the descriptor that came with the frame (a memfd sealed against
 * shrinking and growing, size within bounds, budget) and maps it as c's shared read region.
 */
void server_shm_attach(struct conn *c, uint64_t id, const Peerdist__ShmAttachRequest *rq);
/*
 * For replies built in place (a read's bytes go straight into the output buffer):
 * conn_reserve gives n contiguous bytes (NULL: connection gone, or closed for lack of
 * memory), conn_commit queues the first n of them. Reserving again before committing drops
 * the reservation.
 */
uint8_t *conn_reserve(struct conn *c, size_t n);
void conn_commit(struct conn *c, uint8_t *frame, size_t n);
/*
 * Stops the connection's I/O at once; its close hooks run later, from the loop, so a
 * handler that closes (or whose reply fails) never sees its own state freed under it.
 */
void conn_close(struct conn *c, const char *why);
void conn_unref(struct conn *c);
/* Log-line prefix data: "connection N (uid U pid P)". */
#define CONN_FMT "connection %llu (uid %u pid %d)"
#define CONN_ARGS(c) (unsigned long long)(c)->serial, (unsigned)(c)->uid, (int)(c)->pid

/* dispatch.c */
void dispatch_request(struct conn *c, const Peerdist__Request *req);
uint32_t dispatch_service_status(const struct daemon *d);
/* The mode changed (SIGHUP): every connection past its Hello gets a StatusChanged notice. */
void dispatch_broadcast_status(struct daemon *d);

#endif
