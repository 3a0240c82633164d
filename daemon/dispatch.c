/*
 * dispatch.c - one handler per request type, and the group commit that turns
 * many queued flushes into one SQLite transaction. Every request gets exactly
 * one reply carrying its id and a Win32 status code.
 */
#include <stdlib.h>
#include <string.h>

#include <peerdist.h>

#include "blockstore.h"
#include "content.h"
#include "daemon.h"
#include "publish.h"
#include "worker.h"
#include "log.h"

/* Content-information versions this daemon parses (PEERDIST_STATUS_INFO.dwMin/MaxVer). */
#define CONTENTINFO_VERSION_MIN 1
#define CONTENTINFO_VERSION_MAX 2

uint32_t dispatch_service_status(const struct daemon *d)
{
    return d->cfg.mode == MODE_DISABLED ? PEERDIST_STATUS_DISABLED : PEERDIST_STATUS_AVAILABLE;
}

void dispatch_reply_status(struct conn *c, uint64_t id, uint32_t status)
{
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.status = status;
    conn_send(c, &r);
}

static void handle_hello(struct conn *c, uint64_t id, const Peerdist__Hello *h)
{
    Peerdist__HelloReply hr = PEERDIST__HELLO_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_HELLO;
    r.hello = &hr;
    hr.software = "peerdistd " PEERDIST_SOFTWARE_VERSION;
    hr.min_version = PD_PROTOCOL_VERSION_MIN;
    hr.max_version = PD_PROTOCOL_VERSION_MAX;
    hr.service_status = dispatch_service_status(c->d);
    hr.mode = (char *)config_mode_name(c->d->cfg.mode);
    /* The highest version both sides speak. */
    uint32_t hi = h->max_version < PD_PROTOCOL_VERSION_MAX ? h->max_version : PD_PROTOCOL_VERSION_MAX;
    uint32_t lo = h->min_version > PD_PROTOCOL_VERSION_MIN ? h->min_version : PD_PROTOCOL_VERSION_MIN;
    if (c->hello_done) {
        r.status = ERROR_INVALID_PARAMETER;
    } else if (hi < lo) {
        log_warn("connection %llu (uid %u pid %d, %s): speaks protocol %u..%u, we speak %u..%u",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid,
            h->software ? h->software : "?", h->min_version, h->max_version,
            PD_PROTOCOL_VERSION_MIN, PD_PROTOCOL_VERSION_MAX);
        r.status = PEERDIST_ERROR_VERSION_UNSUPPORTED;
        c->close_after_write = true;
    } else {
        c->hello_done = true;
        c->version = hi;
        hr.version = hi;
    }
    conn_send(c, &r);
}

static void handle_get_status(struct conn *c, uint64_t id)
{
    Peerdist__GetStatusReply gs = PEERDIST__GET_STATUS_REPLY__INIT;
    gs.service_status = dispatch_service_status(c->d);
    gs.min_content_info_version = CONTENTINFO_VERSION_MIN;
    gs.max_content_info_version = CONTENTINFO_VERSION_MAX;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_GET_STATUS;
    r.get_status = &gs;
    conn_send(c, &r);
}

/* Flushes wait for the group commit, which runs once the loop has read what is ready. */
static void handle_flush(struct conn *c, uint64_t id, const Peerdist__FlushRequest *f)
{
    struct daemon *d = c->d;
    if (d->cfg.mode == MODE_DISABLED)
        return dispatch_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
    if (f->tag.len != STORE_TAG_SIZE)
        return dispatch_reply_status(c, id, ERROR_INVALID_PARAMETER);
    struct pending_flush *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    pf->conn = c;
    pf->request_id = id;
    pf->uid = c->uid;
    memcpy(pf->tag, f->tag.data, STORE_TAG_SIZE);
    c->refs++;
    STAILQ_INSERT_TAIL(&d->flushes, pf, link);
    if (++d->nflushes == 1)
        event_active(d->commit_ev, EV_TIMEOUT, 0);
}

static uint32_t sqlite_to_win32(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return 112; /* ERROR_DISK_FULL */
    case SQLITE_NOMEM:
        return ERROR_NOT_ENOUGH_MEMORY;
    default:
        return 1359; /* ERROR_INTERNAL_ERROR */
    }
}

/* A batch of flushes on its way through the flush worker. */
struct flush_batch {
    struct daemon *d;
    STAILQ_HEAD(, pending_flush) items;
    unsigned n;
    uint32_t status;
    struct store_reclaim *reclaim; /* block rows the COMMIT removed, for the block store */
    size_t nreclaim;
};

/* flush_store's reclaim hook, on the worker: keep the rows for the loop thread. */
static void flush_collect_reclaim(void *arg, struct store_reclaim *items, size_t n)
{
    struct flush_batch *b = arg;
    b->reclaim = items;
    b->nreclaim = n;
}

/* Worker: every flush of the batch in one transaction on the flush connection. */
static void flush_work(void *arg)
{
    struct flush_batch *b = arg;
    struct store *st = b->d->flush_store;
    store_set_reclaim_hook(st, flush_collect_reclaim, b);
    bool ok = store_begin(st) == 0;
    struct pending_flush *pf;
    STAILQ_FOREACH(pf, &b->items, link) {
        uint64_t removed;
        if (!ok || store_flush_tag(st, pf->uid, pf->tag, &removed) != 0) {
            ok = false;
            break;
        }
    }
    ok = ok && store_commit(st) == 0;
    b->status = ERROR_SUCCESS;
    if (!ok) {
        b->status = sqlite_to_win32(sqlite3_errcode(store_db(st)));
        log_error("flush transaction failed: %s; %u flushes answered with Win32 error %u",
            sqlite3_errmsg(store_db(st)), b->n, b->status);
        store_rollback(st);
    }
}

/* Loop: the COMMIT is done (or failed): reclaim, answer, let the loop write again. */
static void flush_done(void *arg)
{
    struct flush_batch *b = arg;
    struct daemon *d = b->d;
    d->flush_running = false;
    content_blocks_changed(d); /* blocks may be gone: readers reload */
    if (b->nreclaim) {
        struct blockstore *bs = content_blockstore(d);
        if (bs)
            bs_reclaim(bs, b->reclaim, b->nreclaim); /* takes the items */
        else
            free(b->reclaim);
    }
    while (!STAILQ_EMPTY(&b->items)) {
        struct pending_flush *pf = STAILQ_FIRST(&b->items);
        STAILQ_REMOVE_HEAD(&b->items, link);
        dispatch_reply_status(pf->conn, pf->request_id, b->status);
        conn_unref(pf->conn);
        free(pf);
    }
    free(b);
    content_writes_resume(d); /* what the loop deferred while the flush held the lock */
    dispatch_commit(d);       /* flushes that queued meanwhile */
}

/*
 * Starts the next batch of queued flushes (up to FLUSH_BATCH_MAX: group commit) unless one
 * is running. Replies go out after the batch's COMMIT.
 */
void dispatch_commit(struct daemon *d)
{
    if (d->flush_running || STAILQ_EMPTY(&d->flushes))
        return;
    struct flush_batch *b = calloc(1, sizeof(*b));
    if (!b) {
        event_active(d->commit_ev, EV_TIMEOUT, 0); /* try again on the next pass */
        return;
    }
    b->d = d;
    STAILQ_INIT(&b->items);
    while (!STAILQ_EMPTY(&d->flushes) && b->n < FLUSH_BATCH_MAX) {
        struct pending_flush *pf = STAILQ_FIRST(&d->flushes);
        STAILQ_REMOVE_HEAD(&d->flushes, link);
        d->nflushes--;
        STAILQ_INSERT_TAIL(&b->items, pf, link);
        b->n++;
    }
    d->flush_running = true;
    if (d->stopping || worker_submit(d->workers, flush_work, flush_done, b) != 0) {
        flush_work(b); /* stopping (no new jobs run) or out of memory: here and now */
        flush_done(b);
    }
}

void dispatch_drain_flushes(struct daemon *d)
{
    while (d->flush_running)
        event_base_loop(d->base, EVLOOP_ONCE); /* the running batch's done arrives */
    while (!STAILQ_EMPTY(&d->flushes))
        dispatch_commit(d); /* stopping: runs inline */
}

static void handle_daemon_info(struct conn *c, uint64_t id)
{
    struct daemon *d = c->d;
    Peerdist__DaemonInfoReply di = PEERDIST__DAEMON_INFO_REPLY__INIT;
    di.software = "peerdistd " PEERDIST_SOFTWARE_VERSION;
    di.service_status = dispatch_service_status(d);
    di.mode = (char *)config_mode_name(d->cfg.mode);
    di.socket_path = d->cfg.socket_path;
    di.database_path = (char *)store_path(d->store);
    di.database_bytes = store_disk_bytes(d->store);
    di.connections = d->nconns;
    di.uptime_seconds = (uint64_t)(time(NULL) - d->started);
    di.protocol_version = c->version;
    struct blockstore *bs = content_blockstore(d);
    if (bs) {
        di.reclaim_pending = bs_reclaim_pending(bs);
        di.reclaimed = bs_reclaimed(bs);
    }
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_DAEMON_INFO;
    r.daemon_info = &di;
    conn_send(c, &r);
}

void dispatch_request(struct conn *c, const Peerdist__Request *req)
{
    if (req->id == 0) {
        conn_close(c, "request id 0 (reserved for notices)");
        return;
    }
    if (!c->hello_done && req->body_case != PEERDIST__REQUEST__BODY_HELLO) {
        conn_close(c, "request before Hello");
        return;
    }
    switch (req->body_case) {
    case PEERDIST__REQUEST__BODY_HELLO:
        return handle_hello(c, req->id, req->hello);
    case PEERDIST__REQUEST__BODY_GET_STATUS:
        return handle_get_status(c, req->id);
    case PEERDIST__REQUEST__BODY_FLUSH:
        return handle_flush(c, req->id, req->flush);
    case PEERDIST__REQUEST__BODY_DAEMON_INFO:
        return handle_daemon_info(c, req->id);
    default:
        if (publish_dispatch(c, req) || content_dispatch(c, req))
            return;
        /* A newer client's request type: a clear error, the connection stays up. */
        return dispatch_reply_status(c, req->id, ERROR_CALL_NOT_IMPLEMENTED);
    }
}
