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

/*
 * Flushes commit in transactions of at most STORE_FLUSH_SLICE_LABELS labels: small flushes
 * share one (group commit); a large one is cut into slices, the loop serving other clients
 * between them (DESIGN.md, Latency isolation). A flush replies after its last slice's COMMIT.
 */
void dispatch_commit(struct daemon *d)
{
    if (STAILQ_EMPTY(&d->flushes))
        return;
    unsigned n = 0, budget = STORE_FLUSH_SLICE_LABELS;
    bool done = true, ok = store_begin(d->store) == 0;
    for (struct pending_flush *pf = STAILQ_FIRST(&d->flushes);
         ok && pf && n < FLUSH_BATCH_MAX && budget > 0; pf = STAILQ_NEXT(pf, link)) {
        uint64_t removed;
        ok = store_flush_tag_slice(d->store, pf->uid, pf->tag, budget, &removed, &done) == 0;
        if (!ok || !done)
            break; /* failed, or this flush continues in the next slice */
        n++;
        budget -= (unsigned)removed; /* done means removed < budget */
    }
    ok = ok && store_commit(d->store) == 0;
    content_blocks_changed(d); /* blocks may be gone: readers reload */
    uint32_t status = ERROR_SUCCESS;
    if (!ok) {
        status = sqlite_to_win32(sqlite3_errcode(store_db(d->store)));
        store_rollback(d->store);
        n = n + 1 < d->nflushes ? n + 1 : d->nflushes; /* the failing flush too */
        log_error("flush transaction failed: %s; %u flushes answered with Win32 error %u",
            sqlite3_errmsg(store_db(d->store)), n, status);
    }
    for (unsigned i = 0; i < n; i++) {
        struct pending_flush *pf = STAILQ_FIRST(&d->flushes);
        STAILQ_REMOVE_HEAD(&d->flushes, link);
        d->nflushes--;
        dispatch_reply_status(pf->conn, pf->request_id, status);
        conn_unref(pf->conn);
        free(pf);
    }
    if (!STAILQ_EMPTY(&d->flushes)) {
        /* Continue after the loop has served what is ready: a 0 s timer runs after I/O. */
        struct timeval now = {0, 0};
        event_add(d->commit_ev, &now);
    }
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
