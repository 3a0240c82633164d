/*
 * daemon.h - peerdistd's shared state: the event loop, the store, the
 * listening socket, the connections and the group-commit queue. Everything
 * here is touched only on the event loop's thread.
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
#define CONN_MAX_OUTPUT_BYTES (8u * 1024 * 1024) /* stop reading a client that does not read */
#define CONN_MAX_CONTENT_HANDLES 4096
/* Flushes committed in one transaction at most. */
#define FLUSH_BATCH_MAX 4096

struct conn {
    struct daemon *d;
    int fd;                 /* -1 once closed */
    struct event *rev;      /* readable: persistent while reading is allowed */
    struct event *wev;      /* writable: armed only while replies wait for socket space */
    struct evbuffer *in;    /* bytes read, not yet a whole frame */
    struct evbuffer *out;   /* replies not yet written */
    bool flush_queued;      /* on d->to_flush */
    uint64_t serial;         /* for log lines */
    uid_t uid;
    gid_t gid;
    pid_t pid;
    bool hello_done;
    bool close_after_write;
    bool read_paused;
    uint32_t version;
    /*
     * The list membership plus every piece of queued work that will reply
     * later: take a reference (c->refs++) before handing c to a worker or a
     * later callback, conn_send after conn_close is a no-op, conn_unref last.
     */
    unsigned refs;
    void *pub;     /* publish.c's per-connection state (streams, handles) */
    void *content; /* content.c's per-connection state (content handles) */
    TAILQ_ENTRY(conn) link;
    TAILQ_ENTRY(conn) flush_link;
};

struct pending_flush {
    struct conn *conn;
    uint64_t request_id;
    uint32_t uid;
    uint8_t tag[STORE_TAG_SIZE];
    STAILQ_ENTRY(pending_flush) link;
};

struct daemon {
    struct event_base *base;
    struct config cfg;
    struct store *store;
    struct evconnlistener *listener;
    struct event *signals[3];
    struct event *commit_ev;
    struct event *flush_ev; /* writes queued replies once the loop has read what is ready */
    TAILQ_HEAD(, conn) to_flush;
    TAILQ_HEAD(, conn) conns;
    unsigned nconns;
    uint64_t conn_serial;
    STAILQ_HEAD(, pending_flush) flushes;
    unsigned nflushes;
    /*
     * Flushes run on a worker, one batch at a time, in one transaction on their own
     * connection: readers on the loop keep the WAL snapshot from before until the COMMIT,
     * so a flush becomes visible all at once, and the loop never waits for it. While a
     * batch runs, the loop defers its own writes (content.c) instead of waiting for the lock.
     */
    struct store *flush_store;
    bool flush_running;
    time_t started;
    bool stopping;
    struct worker_pool *workers; /* hashing, disk writes, large deletes */
    void *pub;                   /* publish.c's daemon-wide state (publications, secret) */
    void *content;               /* content.c's daemon-wide state (block store) */
};

/* server.c */
int server_start(struct daemon *d);
/* A connection on a connected non-blocking socket (takes fd); NULL, fd closed, on failure. */
struct conn *server_adopt(struct daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid);
void server_flush(struct daemon *d);
void server_stop(struct daemon *d);
void conn_send(struct conn *c, const Peerdist__Reply *reply);
/*
 * For replies built in place (a read's bytes go straight into the output buffer):
 * conn_reserve gives n contiguous bytes (NULL: connection gone or closed), conn_commit
 * queues the first n of them. Reserving again before committing drops the reservation.
 */
uint8_t *conn_reserve(struct conn *c, size_t n);
void conn_commit(struct conn *c, uint8_t *frame, size_t n);
void conn_close(struct conn *c, const char *why);
void conn_unref(struct conn *c);
void server_broadcast_status(struct daemon *d);

/* dispatch.c */
void dispatch_request(struct conn *c, const Peerdist__Request *req);
void dispatch_commit(struct daemon *d);
/* At stop: waits for a running flush batch and runs the queued ones, answering them all. */
void dispatch_drain_flushes(struct daemon *d);
uint32_t dispatch_service_status(const struct daemon *d);
void dispatch_reply_status(struct conn *c, uint64_t id, uint32_t status);

#endif
