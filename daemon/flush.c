/*
 * flush.c - flushes (see flush.h). Requests queue on the loop; a batch of up to
 * FLUSH_BATCH_MAX runs on a worker in one transaction on the flush connection, so readers on
 * the loop keep the WAL snapshot from before until the COMMIT (a flush becomes visible all
 * at once) and the loop never waits for it. While a batch runs, the write gate is closed.
 */
#include "flush.h"

#include <stdlib.h>
#include <string.h>

#include <peerdist.h>

#include "blockstore.h"
#include "disk.h"
#include "log.h"
#include "winerr.h"
#include "worker.h"

struct pending_flush {
    struct conn *conn;
    uint64_t request_id;
    uint32_t uid;
    uint8_t tag[STORE_TAG_SIZE];
    struct store_flush_result result;
    STAILQ_ENTRY(pending_flush) link;
};

struct flush_state {
    struct store *store;     /* the flush connection: used by one batch at a time */
    struct event *commit_ev; /* starts a batch once the loop has read what is ready */
    STAILQ_HEAD(, pending_flush) queued;
    bool running; /* a batch holds the write lock: the gate is closed */
    STAILQ_HEAD(, flush_waiter) waiters;
};

/* A batch of flushes on its way through the flush worker. */
struct flush_batch {
    struct daemon *d;
    STAILQ_HEAD(, pending_flush) items;
    unsigned n;
    uint32_t status;
    struct store_reclaim *reclaim; /* block rows the COMMIT removed, for the block store */
    size_t nreclaim;
};

static void flush_next_batch(struct daemon *d);

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_next_batch(arg);
}

int flush_init(struct daemon *d)
{
    struct flush_state *fs = calloc(1, sizeof(*fs));
    char err[512];
    if (!fs)
        return -1;
    STAILQ_INIT(&fs->queued);
    STAILQ_INIT(&fs->waiters);
    d->flush = fs;
    if (store_open(d->cfg.db_path, &fs->store, err, sizeof(err)) != 0) {
        log_error("database (flush connection): %s", err);
        return -1;
    }
    fs->commit_ev = event_new(d->base, -1, 0, commit_cb, d);
    return fs->commit_ev ? 0 : -1;
}

void flush_free(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (!fs)
        return;
    if (fs->commit_ev)
        event_free(fs->commit_ev);
    store_close(fs->store);
    free(fs);
    d->flush = NULL;
}

bool flush_gate_open(const struct daemon *d)
{
    const struct flush_state *fs = d->flush;
    return !fs || !fs->running;
}

void flush_gate_wait(struct daemon *d, struct flush_waiter *w)
{
    struct flush_state *fs = d->flush;
    if (w->waiting)
        return;
    w->waiting = true;
    STAILQ_INSERT_TAIL(&fs->waiters, w, link);
}

/* The batch committed (or failed): the loop may write again; waiters first, in order. */
static void gate_open(struct flush_state *fs)
{
    fs->running = false;
    while (!STAILQ_EMPTY(&fs->waiters)) {
        struct flush_waiter *w = STAILQ_FIRST(&fs->waiters);
        STAILQ_REMOVE_HEAD(&fs->waiters, link);
        w->waiting = false;
        w->fn(w);
    }
}

void flush_request(struct conn *c, uint64_t id, const Peerdist__FlushRequest *f)
{
    struct daemon *d = c->d;
    struct flush_state *fs = d->flush;
    if (d->cfg.mode == MODE_DISABLED) {
        conn_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
        return;
    }
    if (f->tag.len != STORE_TAG_SIZE) {
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    struct pending_flush *pf = calloc(1, sizeof(*pf));
    if (!pf) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    pf->conn = c;
    pf->request_id = id;
    pf->uid = c->uid;
    memcpy(pf->tag, f->tag.data, STORE_TAG_SIZE);
    c->refs++;
    bool first = STAILQ_EMPTY(&fs->queued);
    STAILQ_INSERT_TAIL(&fs->queued, pf, link);
    if (first)
        event_active(fs->commit_ev, EV_TIMEOUT, 0); /* group commit: after this loop pass */
}

/* The flush connection's reclaim hook, on the worker: keep the rows for the loop thread. */
static void collect_reclaim(void *arg, struct store_reclaim *items, size_t n)
{
    struct flush_batch *b = arg;
    b->reclaim = items;
    b->nreclaim = n;
}

/* Worker: every flush of the batch in one transaction on the flush connection. */
static void batch_work(void *arg)
{
    struct flush_batch *b = arg;
    struct store *st = ((struct flush_state *)b->d->flush)->store;
    store_set_reclaim_hook(st, collect_reclaim, b);
    bool ok = store_begin(st) == 0;
    struct pending_flush *pf;
    STAILQ_FOREACH (pf, &b->items, link) {
        if (!ok || store_flush_tag(st, pf->uid, pf->tag, &pf->result) != 0) {
            ok = false;
            break;
        }
    }
    ok = ok && store_commit(st) == 0;
    b->status = ERROR_SUCCESS;
    if (!ok) {
        b->status = winerr_from_sqlite(store_errcode(st));
        log_error("flush transaction failed: %s; %u flushes answered with Win32 error %u",
            store_errmsg(st), b->n, b->status);
        store_rollback(st);
    }
}

static void reply_flush(struct pending_flush *pf, uint32_t status)
{
    Peerdist__FlushReply fr = PEERDIST__FLUSH_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = pf->request_id;
    r.status = status;
    if (status == ERROR_SUCCESS) {
        fr.labels_removed = pf->result.labels_removed;
        fr.bytes_freed = pf->result.bytes_freed;
        r.body_case = PEERDIST__REPLY__BODY_FLUSH;
        r.flush = &fr;
    }
    conn_send(pf->conn, &r);
}

/* Loop: the COMMIT is done (or failed): reclaim, answer, open the gate, next batch. */
static void batch_done(void *arg)
{
    struct flush_batch *b = arg;
    struct daemon *d = b->d;
    struct flush_state *fs = d->flush;
    if (b->status == ERROR_DISK_FULL && disk_release_reserve(d)) {
        /* The database could not journal the deletes: with the reserve given back to the
         * filesystem, the same batch runs again (once: the reserve is gone now). */
        STAILQ_CONCAT(&b->items, &fs->queued); /* the batch first, then what queued since */
        STAILQ_CONCAT(&fs->queued, &b->items);
        free(b);
        gate_open(fs);
        flush_next_batch(d);
        return;
    }
    d->blocks_gen++; /* blocks may be gone: readers reload */
    if (b->nreclaim)
        bs_reclaim(d->bs, b->reclaim, b->nreclaim); /* takes the items */
    while (!STAILQ_EMPTY(&b->items)) {
        struct pending_flush *pf = STAILQ_FIRST(&b->items);
        STAILQ_REMOVE_HEAD(&b->items, link);
        reply_flush(pf, b->status);
        conn_unref(pf->conn);
        free(pf);
    }
    free(b);
    gate_open(d->flush); /* what the loop deferred while the batch held the lock */
    flush_next_batch(d); /* flushes that queued meanwhile */
}

/*
 * Starts the next batch of queued flushes (up to FLUSH_BATCH_MAX: group commit) unless one
 * is running. Replies go out after the batch's COMMIT.
 */
static void flush_next_batch(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (fs->running || STAILQ_EMPTY(&fs->queued))
        return;
    struct flush_batch *b = calloc(1, sizeof(*b));
    if (!b) {
        event_active(fs->commit_ev, EV_TIMEOUT, 0); /* try again on the next pass */
        return;
    }
    b->d = d;
    STAILQ_INIT(&b->items);
    while (!STAILQ_EMPTY(&fs->queued) && b->n < FLUSH_BATCH_MAX) {
        struct pending_flush *pf = STAILQ_FIRST(&fs->queued);
        STAILQ_REMOVE_HEAD(&fs->queued, link);
        STAILQ_INSERT_TAIL(&b->items, pf, link);
        b->n++;
    }
    fs->running = true;
    if (d->stopping || worker_submit(d->workers, batch_work, batch_done, b) != 0) {
        batch_work(b); /* stopping (no new jobs run) or out of memory: here and now */
        batch_done(b);
    }
}

void flush_drain(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (!fs)
        return;
    while (fs->running)
        event_base_loop(d->base, EVLOOP_ONCE); /* the running batch's done arrives */
    while (!STAILQ_EMPTY(&fs->queued))
        flush_next_batch(d); /* stopping: runs inline */
}
