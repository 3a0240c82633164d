/* SPDX-License-Identifier: MIT */
/*
 * dispatch.c - the daemon's request handler: the session requests (Hello, status, daemon
 * information) answered here, every other request routed to the module that owns it
 * (publish.c, content.c, flush.c). Every request gets exactly one reply carrying its id and
 * a Win32 status code.
 */
#include <stdlib.h>
#include <string.h>

#include <peerdist.h>

#include "admin.h"
#include "blockstore.h"
#include "content.h"
#include "daemon.h"
#include "evict.h"
#include "flush.h"
#include "peer-fetch.h"
#include "peer.h"
#include "publish.h"
#include "log.h"

/* Content-information versions this daemon parses (PEERDIST_STATUS_INFO.dwMin/MaxVer). */
#define CONTENTINFO_VERSION_MIN 1
#define CONTENTINFO_VERSION_MAX 2

uint32_t dispatch_service_status(const struct daemon *d)
{
    return d->cfg.mode == MODE_DISABLED ? PEERDIST_STATUS_DISABLED : PEERDIST_STATUS_AVAILABLE;
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
    uint32_t hi = h->max_version < PD_PROTOCOL_VERSION_MAX ? h->max_version
                                                           : PD_PROTOCOL_VERSION_MAX;
    uint32_t lo = h->min_version > PD_PROTOCOL_VERSION_MIN ? h->min_version
                                                           : PD_PROTOCOL_VERSION_MIN;
    if (c->hello_done) {
        r.status = ERROR_INVALID_PARAMETER;
    } else if (hi < lo) {
        log_warn(CONN_FMT " (%s): speaks protocol %u..%u, we speak %u..%u", CONN_ARGS(c),
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
    di.reclaim_pending = bs_reclaim_pending(d->bs);
    di.reclaimed = bs_reclaimed(d->bs);
    struct add_timing t;
    content_add_timing(d, &t);
    Peerdist__AddDataTiming at = PEERDIST__ADD_DATA_TIMING__INIT;
    at.calls = t.calls;
    at.bytes = t.bytes;
    at.queued_us = (uint64_t)(t.ms[ADD_QUEUED] * 1e3);
    at.verify_write_us = (uint64_t)(t.ms[ADD_VERIFY_WRITE] * 1e3);
    at.sync_wait_us = (uint64_t)(t.ms[ADD_SYNC_WAIT] * 1e3);
    at.sync_us = (uint64_t)(t.ms[ADD_SYNC] * 1e3);
    at.commit_us = (uint64_t)(t.ms[ADD_COMMIT] * 1e3);
    di.add_data = &at;
    struct bs_spare_stats ss;
    bs_spare_stats(d->bs, &ss);
    Peerdist__SpareFiles sf = PEERDIST__SPARE_FILES__INIT;
    sf.files = ss.files;
    sf.bytes = ss.bytes;
    sf.kept = ss.kept;
    sf.taken = ss.taken;
    di.spare_files = &sf;
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
    case PEERDIST__REQUEST__BODY_HELLO: handle_hello(c, req->id, req->hello); return;
    case PEERDIST__REQUEST__BODY_GET_STATUS: handle_get_status(c, req->id); return;
    case PEERDIST__REQUEST__BODY_FLUSH: flush_request(c, req->id, req->flush); return;
    case PEERDIST__REQUEST__BODY_DAEMON_INFO: handle_daemon_info(c, req->id); return;
    case PEERDIST__REQUEST__BODY_ADMIN_FLUSH: /* admins only: admin.c checks */
    case PEERDIST__REQUEST__BODY_KEY: admin_dispatch(c, req); return;
    case PEERDIST__REQUEST__BODY_CACHE_INFO:
        peer_fetch_counts_refresh(c->d); /* the served counter, where evict.c reads it */
        evict_cache_info(c, req->id);
        return;
    case PEERDIST__REQUEST__BODY_PEERS: peer_fetch_peers(c, req->id); return; /* admins only */
    case PEERDIST__REQUEST__BODY_SHM_ATTACH: server_shm_attach(c, req->id, req->shm_attach); return;
    case PEERDIST__REQUEST__BODY_CACHE_SET:
        if (evict_cache_set(c, req->id, req->cache_set))
            flush_evict_kick(c->d); /* the new bounds apply now */
        return;
    default:
        if (publish_dispatch(c, req) || content_dispatch(c, req))
            return;
        /* A newer client's request type: a clear error, the connection stays up. */
        conn_reply_status(c, req->id, ERROR_CALL_NOT_IMPLEMENTED);
        return;
    }
}

void dispatch_broadcast_status(struct daemon *d)
{
    Peerdist__StatusChanged sc = PEERDIST__STATUS_CHANGED__INIT;
    sc.service_status = dispatch_service_status(d);
    sc.mode = (char *)config_mode_name(d->cfg.mode);
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.body_case = PEERDIST__REPLY__BODY_STATUS_CHANGED;
    r.status_changed = &sc;
    for (struct conn *c = TAILQ_FIRST(&d->conns), *next; c; c = next) {
        next = TAILQ_NEXT(c, link); /* conn_send may close c (it leaves the list) */
        if (c->hello_done)
            conn_send(c, &r);
    }
}
