/* SPDX-License-Identifier: MIT */
/*
 * flush.c - flushes (see flush.h). Requests queue on the loop; a batch of up to
 * FLUSH_BATCH_MAX runs on a worker in one transaction on the flush connection, so readers on
 * the loop keep the WAL snapshot from before until the COMMIT (a flush becomes visible all
 * at once) and the loop never waits for it. While a batch runs, the write gate is closed.
 * A filter of the tags that hold labels (tagfilter.h) answers most flushes of a tag without
 * any at once, without SQL. Others may hold the gate too (flush_gate_hold): a checkpoint that
 * must catch up with the WAL.
 */
#include "flush.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <peerdist.h>

#include "blockstore.h"
#include "disk.h"
#include "evict.h"
#include "log.h"
#include "tagfilter.h"
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
    /* Flushes of tags with no label, answered once the running batch is done (no SQL). */
    STAILQ_HEAD(, pending_flush) after_batch;
    /* Flushes read in this loop pass, probed together (probe_cb) before they are sorted. */
    STAILQ_HEAD(, pending_flush) probing;
    struct event *probe_ev;
    /* Pairs that may hold labels: most flushes of a tag without any skip the probe. */
    struct tagfilter *filter;
    struct event *build_ev; /* the filter's build: the next slice, or a retry */
    bool labels_went;       /* a flush or an eviction removed labels since the build began */
    double build_began_ms;  /* CLOCK_MONOTONIC, when the last build began */
    double build_ms;        /* how long the last build took */
    bool running;           /* a batch holds the write lock, or a hold runs: the gate is closed */
    bool evict_wanted;      /* an eviction pass runs once no flush is queued */
    struct event *evict_ev; /* the periodic pass */
    struct event *evict_soon_ev; /* the next slice, once reclaim has caught up */
    STAILQ_HEAD(, flush_waiter) waiters;
    /* Admin flushes (flush_admin_queue): a slice at a time, when no flush batch waits. */
    STAILQ_HEAD(, admin_flush) admin;
    struct event *admin_ev; /* the next slice, once the loop has polled */
    /* Asked to hold the gate (flush_gate_hold): fn runs once no batch does. */
    void (*hold_fn)(void *arg);
    void *hold_arg;
};

/* A batch of flushes on its way through the flush worker. */
struct flush_batch {
    struct daemon *d;
    STAILQ_HEAD(, pending_flush) items;
    unsigned n;
    uint32_t status;
    struct evict_pass *pass;       /* an eviction pass instead of flushes */
    struct store_reclaim *reclaim; /* block rows the COMMIT removed, for the block store */
    size_t nreclaim;
};

static void flush_next_batch(struct daemon *d);
static void gate_open(struct flush_state *fs);
static void flush_admin_next(struct daemon *d);
static int flush_admin_init(struct daemon *d);
static void flush_admin_abort(struct daemon *d);
static void probe_cb(evutil_socket_t fd, short what, void *arg);
static void build_cb(evutil_socket_t fd, short what, void *arg);
static void filter_maybe_rebuild(struct daemon *d);

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_next_batch(arg);
}

static void evict_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    flush_evict_kick(d);
    filter_maybe_rebuild(d);
    bs_spare_tidy(d->bs);
}

#define EVICT_AFTER_SLICE (-2) /* evict_soon_cb's fd when called as a slice ends */

/* The next slice of a large eviction starts once the slots of the last one are reclaimed:
 * reclaim and passes then take one worker at most, and the other stays for clients. */
static void evict_soon_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct flush_state *fs = d->flush;
    struct timeval soon = {0, EVICT_SLICE_WAIT_MS * 1000};
    if (bs_reclaim_pending(d->bs) > 0 || fd == EVICT_AFTER_SLICE)
        event_add(fs->evict_soon_ev, &soon); /* and a pause after each slice */
    else
        flush_evict_kick(d);
}

void flush_evict_kick(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (!fs || d->stopping)
        return;
    fs->evict_wanted = true;
    if (!fs->running)
        event_active(fs->commit_ev, EV_TIMEOUT, 0);
}

/* ---- the tag filter (tagfilter.h) ---- */

/* Keys the build adds per loop pass: about a millisecond of seeks. */
#define FILTER_BUILD_SLICE 256
/* A build that failed (the database said no) is tried again after this long. */
#define FILTER_RETRY_S 5
/* A rebuild, to drop the pairs whose labels went since the last, once this share of the
 * bits is set... */
#define FILTER_REBUILD_FILL_DIV 8
/* ...at most once a minute, and never more than 1 % of the time: a build of many pairs takes
 * loop time (1.4 us a pair here), and one after the cache filled with live tags gains nothing. */
#define FILTER_REBUILD_MIN_MS 60000.0
#define FILTER_REBUILD_TIME_FACTOR 100

static void label_cb(void *arg, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    struct flush_state *fs = arg;
    tagfilter_add(fs->filter, uid, tag);
}

/* The next slice after the loop has polled its sockets: clients are served between slices
 * (an event made active from its own callback would run again in the same pass). */
static void build_next_slice(struct flush_state *fs)
{
    static const struct timeval now = {0, 0};
    event_add(fs->build_ev, &now);
}

static void filter_build_start(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (tagfilter_building(fs->filter))
        return;
    if (tagfilter_build_begin(fs->filter) != 0) {
        struct timeval retry = {FILTER_RETRY_S, 0};
        event_add(fs->build_ev, &retry);
        return;
    }
    store_label_walk_start(d->store);
    fs->labels_went = false;
    fs->build_began_ms = daemon_mono_ms();
    build_next_slice(fs);
}

/*
 * Loop: the next slice of the build, one seek per (uid, tag) key of the labels. No snapshot
 * spans the build, and none needs to: a label present all along is met when the seek passes
 * its key, and one written meanwhile went through label_cb into the build too.
 */
static void build_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct flush_state *fs = d->flush;
    if (!tagfilter_building(fs->filter)) { /* a retry after a failed begin */
        filter_build_start(d);
        return;
    }
    bool tx = store_read_begin(d->store) == 0;
    int rc = 1;
    uint32_t uid;
    uint8_t tag[STORE_TAG_SIZE];
    for (int i = 0; i < FILTER_BUILD_SLICE && rc > 0; i++) {
        rc = store_label_walk_next(d->store, &uid, tag);
        if (rc == 1)
            tagfilter_build_add(fs->filter, uid, tag);
    }
    if (tx)
        store_read_end(d->store);
    if (rc > 0) {
        build_next_slice(fs);
    } else if (rc == 0) {
        tagfilter_build_end(fs->filter);
        fs->build_ms = daemon_mono_ms() - fs->build_began_ms;
        log_debug("flush filter built: %zu of %u bits set, in %.0f ms",
            tagfilter_bits_set(fs->filter), 1u << TAGFILTER_BITS_LOG2, fs->build_ms);
    } else {
        log_warn("flush filter: cannot read the labels' tags (%s); flushes ask the database "
                 "until a build succeeds, the next in %d s",
            store_errmsg(d->store), FILTER_RETRY_S);
        tagfilter_build_abort(fs->filter);
        struct timeval retry = {FILTER_RETRY_S, 0};
        event_add(fs->build_ev, &retry);
    }
}

/* Pairs whose labels went (flushed, evicted) stay set until a build leaves them out: one
 * runs once the filter fills up, if labels went since the last, not too often. */
static void filter_maybe_rebuild(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    double every = FILTER_REBUILD_TIME_FACTOR * fs->build_ms;
    if (every < FILTER_REBUILD_MIN_MS)
        every = FILTER_REBUILD_MIN_MS;
    if (!fs->labels_went || tagfilter_building(fs->filter) || !tagfilter_ready(fs->filter) ||
        tagfilter_bits_set(fs->filter) <
            ((size_t)1 << TAGFILTER_BITS_LOG2) / FILTER_REBUILD_FILL_DIV ||
        daemon_mono_ms() - fs->build_began_ms < every)
        return;
    filter_build_start(d);
}

/* ---- holding the gate for others (flush_gate_hold) ---- */

/* The hold asked for, if it may start now: true if the gate closed for it. */
static bool hold_start(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (d->stopping)
        fs->hold_fn = NULL; /* stopping: the queued flushes and the last pass go first */
    if (!fs->hold_fn || fs->running)
        return false;
    void (*fn)(void *arg) = fs->hold_fn;
    fs->hold_fn = NULL;
    fs->running = true;
    fn(fs->hold_arg);
    return true;
}

void flush_gate_hold(struct daemon *d, void (*fn)(void *arg), void *arg)
{
    struct flush_state *fs = d->flush;
    fs->hold_fn = fn;
    fs->hold_arg = arg;
    if (fn && !fs->running)
        event_active(fs->commit_ev, EV_TIMEOUT, 0);
}

void flush_gate_release(struct daemon *d)
{
    gate_open(d->flush);
    flush_next_batch(d);
}

/* The flush connection's commits never checkpoint either: checkpoint.c does, off the gate. */
static void flush_wal_grew(void *arg, int pages)
{
    (void)arg;
    (void)pages;
}

int flush_init(struct daemon *d)
{
    struct flush_state *fs = calloc(1, sizeof(*fs));
    char err[512];
    if (!fs)
        return -1;
    STAILQ_INIT(&fs->queued);
    STAILQ_INIT(&fs->after_batch);
    STAILQ_INIT(&fs->probing);
    STAILQ_INIT(&fs->waiters);
    STAILQ_INIT(&fs->admin);
    d->flush = fs;
    if (store_open(d->cfg.db_path, &fs->store, err, sizeof(err)) != 0) {
        log_error("database (flush connection): %s", err);
        return -1;
    }
    fs->commit_ev = event_new(d->base, -1, 0, commit_cb, d);
    fs->probe_ev = event_new(d->base, -1, 0, probe_cb, d);
    fs->build_ev = event_new(d->base, -1, 0, build_cb, d);
    if (!(fs->filter = tagfilter_new()) || !fs->build_ev)
        return -1;
    store_set_label_hook(d->store, label_cb, fs);
    store_set_wal_hook(fs->store, flush_wal_grew, NULL);
    filter_build_start(d);
    fs->evict_ev = event_new(d->base, -1, EV_PERSIST, evict_timer_cb, d);
    fs->evict_soon_ev = event_new(d->base, -1, 0, evict_soon_cb, d);
    struct timeval every = {EVICT_INTERVAL_S, 0};
    if (!fs->commit_ev || !fs->probe_ev || flush_admin_init(d) != 0 || !fs->evict_ev ||
        !fs->evict_soon_ev || evict_init(d) != 0 || event_add(fs->evict_ev, &every) != 0)
        return -1;
    flush_evict_kick(d); /* the bounds in force go to the database at once */
    return 0;
}

void flush_free(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (!fs)
        return;
    if (fs->commit_ev)
        event_free(fs->commit_ev);
    if (fs->probe_ev)
        event_free(fs->probe_ev);
    if (fs->build_ev)
        event_free(fs->build_ev);
    if (fs->filter)
        store_set_label_hook(d->store, NULL, NULL);
    tagfilter_free(fs->filter);
    flush_admin_abort(d);
    if (fs->admin_ev)
        event_free(fs->admin_ev);
    if (fs->evict_ev)
        event_free(fs->evict_ev);
    if (fs->evict_soon_ev)
        event_free(fs->evict_soon_ev);
    evict_free(d);
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

static void reply_flush(struct pending_flush *pf, uint32_t status);
static void send_flush_reply(struct conn *c, uint64_t id, uint32_t status,
    const struct store_flush_result *result);

/*
 * The batch committed (or failed) and what it removed was reclaimed: first the flushes of
 * label-less tags that came meanwhile are answered (before the writes deferred behind the
 * batch, which may label those tags, commit and answer), then the loop may write again:
 * waiters, in order.
 */
static void gate_open(struct flush_state *fs)
{
    fs->running = false;
    while (!STAILQ_EMPTY(&fs->after_batch)) {
        struct pending_flush *pf = STAILQ_FIRST(&fs->after_batch);
        STAILQ_REMOVE_HEAD(&fs->after_batch, link);
        reply_flush(pf, ERROR_SUCCESS);
        conn_unref(pf->conn);
        free(pf);
    }
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
    /* No label to delete: answered at once, without SQL (see probe_cb for why not while a
     * batch runs). */
    bool none = !tagfilter_may_have(fs->filter, c->uid, f->tag.data);
    if (none && !fs->running) {
        const struct store_flush_result nothing = {0};
        send_flush_reply(c, id, ERROR_SUCCESS, &nothing);
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
    if (none) {
        STAILQ_INSERT_TAIL(&fs->after_batch, pf, link);
        return;
    }
    bool first = STAILQ_EMPTY(&fs->probing);
    STAILQ_INSERT_TAIL(&fs->probing, pf, link);
    if (first)
        event_active(fs->probe_ev, EV_TIMEOUT, 0); /* once the loop has read what is ready */
}

/*
 * Loop: the flushes read in this pass that the filter could not answer (flush_request),
 * sorted. A tag the uid holds no label under (the loop's connection writes every label, so
 * it sees each one acknowledged) has nothing to delete: no transaction, no worker. Such a
 * flush is answered at once, or, while a batch runs (its COMMIT may be what removed the
 * labels, with the reclaim still to come on the loop), right after that batch is done. The
 * others queue for the next batch. Several probes share one read transaction: SQLite takes
 * its WAL read lock once, not per flush.
 */
static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct flush_state *fs = d->flush;
    struct pending_flush *head = STAILQ_FIRST(&fs->probing);
    bool tx = head && STAILQ_NEXT(head, link) && store_read_begin(d->store) == 0;
    while (!STAILQ_EMPTY(&fs->probing)) {
        struct pending_flush *pf = STAILQ_FIRST(&fs->probing);
        STAILQ_REMOVE_HEAD(&fs->probing, link);
        int has = store_tag_has_labels(d->store, pf->uid, pf->tag);
        if (has == 0 && !fs->running) {
            reply_flush(pf, ERROR_SUCCESS);
            conn_unref(pf->conn);
            free(pf);
        } else if (has == 0) {
            STAILQ_INSERT_TAIL(&fs->after_batch, pf, link);
        } else {
            bool first = STAILQ_EMPTY(&fs->queued);
            STAILQ_INSERT_TAIL(&fs->queued, pf, link);
            if (first)
                event_active(fs->commit_ev, EV_TIMEOUT, 0); /* group commit: after this pass */
        }
    }
    if (tx)
        store_read_end(d->store);
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
    if (b->pass) {
        evict_pass_work(b->pass, st);
        return;
    }
    store_set_reclaim_hook(st, collect_reclaim, b);
    bool ok = store_begin(st) == 0;
    struct pending_flush *pf;
    uint64_t counted[STORE_CTR_COUNT] = {0};
    STAILQ_FOREACH (pf, &b->items, link) {
        if (!ok || store_flush_tag(st, pf->uid, pf->tag, &pf->result) != 0) {
            ok = false;
            break;
        }
        counted[STORE_CTR_FLUSHED] += pf->result.bytes_freed;
    }
    ok = ok && store_counters_add(st, counted) == 0; /* flushed bytes, with the flush */
    ok = ok && store_commit(st) == 0;
    b->status = ERROR_SUCCESS;
    if (!ok) {
        b->status = winerr_from_sqlite(store_errcode(st));
        log_error("flush transaction failed: %s; %u flushes answered with Win32 error %u",
            store_errmsg(st), b->n, b->status);
        store_rollback(st);
    }
}

static void send_flush_reply(struct conn *c, uint64_t id, uint32_t status,
    const struct store_flush_result *result)
{
    Peerdist__FlushReply fr = PEERDIST__FLUSH_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.status = status;
    if (status == ERROR_SUCCESS) {
        fr.labels_removed = result->labels_removed;
        fr.bytes_freed = result->bytes_freed;
        r.body_case = PEERDIST__REPLY__BODY_FLUSH;
        r.flush = &fr;
    }
    conn_send(c, &r);
}

static void reply_flush(struct pending_flush *pf, uint32_t status)
{
    send_flush_reply(pf->conn, pf->request_id, status, &pf->result);
}

/* Loop: the COMMIT is done (or failed): reclaim, answer, open the gate, next batch. */
static void batch_done(void *arg)
{
    struct flush_batch *b = arg;
    struct daemon *d = b->d;
    struct flush_state *fs = d->flush;
    if (b->pass) {
        fs->labels_went |= evict_pass_removed(b->pass);
        /* The database could not journal the deletes: the reserve goes, the pass runs again
         * (once: the reserve is gone now), as for a flush below. */
        bool again = evict_pass_disk_full(b->pass) && disk_release_reserve(d);
        if (evict_pass_done(b->pass) && !again)
            evict_soon_cb(EVICT_AFTER_SLICE, 0, d); /* more: the next slice, after reclaim */
        else if (again)
            fs->evict_wanted = true;
        free(b);
        gate_open(fs);
        flush_next_batch(d);
        return;
    }
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
        if (b->status == ERROR_SUCCESS) {
            evict_note_flushed(d, pf->result.bytes_freed);
            fs->labels_went |= pf->result.labels_removed > 0;
        }
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
    if (fs->running || hold_start(d))
        return;
    if (STAILQ_EMPTY(&fs->queued) && (!STAILQ_EMPTY(&fs->admin) || !fs->evict_wanted)) {
        flush_admin_next(d); /* admin flushes' slices go when no flush waits */
        return;
    }
    struct flush_batch *b = calloc(1, sizeof(*b));
    if (!b) {
        event_active(fs->commit_ev, EV_TIMEOUT, 0); /* try again on the next pass */
        return;
    }
    b->d = d;
    if (STAILQ_EMPTY(&fs->queued)) {
        /* No flush waits: the eviction pass (flushes queued meanwhile run after it). */
        fs->evict_wanted = false;
        if (!(b->pass = evict_pass_new(d))) {
            free(b);
            return;
        }
        fs->running = true;
        if (d->stopping || worker_submit(d->workers, batch_work, batch_done, b) != 0) {
            batch_work(b);
            batch_done(b);
        }
        return;
    }
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
    probe_cb(-1, 0, d); /* flushes read but not sorted yet */
    while (fs->running)
        event_base_loop(d->base, EVLOOP_ONCE); /* the running batch's done arrives */
    while (!STAILQ_EMPTY(&fs->queued))
        flush_next_batch(d); /* stopping: runs inline */
    flush_admin_abort(d);
    /* Counters and recency gathered since the last pass are written down. */
    fs->evict_wanted = true;
    flush_next_batch(d);
    fs->evict_wanted = false;
}

/* ---- admin flushes: the whole cache, or one uid's labels, in slices ---- */

/*
 * An admin flush may cover the whole cache: as one transaction it would hold the write gate
 * (and every other writer) for as long as it takes. So it runs as slices of
 * STORE_ADMIN_SLICE_ROWS keys, each a transaction of its own on the flush connection on a
 * worker, like a flush batch; between slices the gate opens, waiting writers commit, the
 * loop polls, and queued user flushes go first. Each slice is atomic; the reply comes after
 * the last one with the sums. Reads in flight keep their guarantees as with any flush: bytes
 * read on a worker are hashed again, and reclaim re-checks under the block store's lock.
 */
struct admin_flush {
    struct conn *conn;
    uint64_t request_id;
    struct store_admin_flush job;
    struct store_admin_flush before; /* the job as it was before the running slice */
    uint32_t status;
    struct store_reclaim *reclaim; /* block rows the slice's COMMIT removed */
    size_t nreclaim;
    struct daemon *d;
    STAILQ_ENTRY(admin_flush) link;
};

static void admin_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_next_batch(arg);
}

static int flush_admin_init(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    fs->admin_ev = evtimer_new(d->base, admin_ev_cb, d);
    return fs->admin_ev ? 0 : -1;
}

static void admin_reply(struct admin_flush *af, uint32_t status)
{
    Peerdist__FlushReply fr = PEERDIST__FLUSH_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = af->request_id;
    r.status = status;
    /* What went, also on failure: every slice before the failing one committed. */
    fr.labels_removed = af->job.result.labels_removed;
    fr.bytes_freed = af->job.result.bytes_freed;
    r.body_case = PEERDIST__REPLY__BODY_FLUSH;
    r.flush = &fr;
    conn_send(af->conn, &r);
    char what[80];
    if (af->job.scope == STORE_ADMIN_ALL)
        snprintf(what, sizeof(what), "the whole cache");
    else
        snprintf(what, sizeof(what), "uid %u%s", (unsigned)af->job.uid,
            af->job.scope == STORE_ADMIN_UID_TAG ? ", one tag" : ", every tag");
    log_info(CONN_FMT ": admin flush of %s ended with Win32 status %u: %llu labels removed, "
                      "%llu bytes freed",
        CONN_ARGS(af->conn), what, status, (unsigned long long)af->job.result.labels_removed,
        (unsigned long long)af->job.result.bytes_freed);
    conn_unref(af->conn);
    free(af);
}

void flush_admin_queue(struct conn *c, uint64_t id, enum store_admin_scope scope, uint32_t uid,
    const uint8_t tag[STORE_TAG_SIZE])
{
    struct daemon *d = c->d;
    struct flush_state *fs = d->flush;
    struct admin_flush *af = calloc(1, sizeof(*af));
    if (!af) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    af->conn = c;
    af->request_id = id;
    af->d = d;
    store_admin_flush_init(&af->job, scope, uid, tag);
    c->refs++;
    STAILQ_INSERT_TAIL(&fs->admin, af, link);
    if (!fs->running)
        event_active(fs->admin_ev, EV_TIMEOUT, 0);
}

static void admin_collect_reclaim(void *arg, struct store_reclaim *items, size_t n)
{
    struct admin_flush *af = arg;
    af->reclaim = items;
    af->nreclaim = n;
}

/* Worker: one slice in one transaction on the flush connection. */
static void admin_slice_work(void *arg)
{
    struct admin_flush *af = arg;
    struct store *st = ((struct flush_state *)af->d->flush)->store;
    af->before = af->job;
    store_set_reclaim_hook(st, admin_collect_reclaim, af);
    bool ok = store_begin(st) == 0 &&
        store_admin_flush_slice(st, &af->job, STORE_ADMIN_SLICE_ROWS) == 0;
    uint64_t counted[STORE_CTR_COUNT] = {0};
    counted[STORE_CTR_FLUSHED] = af->job.result.bytes_freed - af->before.result.bytes_freed;
    ok = ok && store_counters_add(st, counted) == 0; /* flushed bytes, with the slice */
    ok = ok && store_commit(st) == 0;
    af->status = ERROR_SUCCESS;
    if (!ok) {
        af->status = winerr_from_sqlite(store_errcode(st));
        log_error("admin flush slice failed: %s (Win32 error %u)", store_errmsg(st), af->status);
        store_rollback(st);
        af->job = af->before; /* nothing of the slice happened */
    }
}

/* Loop: the slice committed (or failed): reclaim, open the gate, then the next slice. */
static void admin_slice_done(void *arg)
{
    struct admin_flush *af = arg;
    struct daemon *d = af->d;
    struct flush_state *fs = d->flush;
    if (af->nreclaim)
        bs_reclaim(d->bs, af->reclaim, af->nreclaim); /* takes the items */
    af->reclaim = NULL;
    af->nreclaim = 0;
    d->blocks_gen++; /* blocks may be gone: readers reload */
    fs->labels_went |= af->job.result.labels_removed > af->before.result.labels_removed;
    if (af->status == ERROR_SUCCESS)
        evict_note_flushed(d, af->job.result.bytes_freed - af->before.result.bytes_freed);
    bool retry = af->status == ERROR_DISK_FULL && disk_release_reserve(d);
    if (af->status != ERROR_SUCCESS && !retry) {
        admin_reply(af, af->status);
    } else if (af->job.phase == STORE_ADMIN_PHASE_DONE) {
        admin_reply(af, ERROR_SUCCESS);
    } else {
        STAILQ_INSERT_HEAD(&fs->admin, af, link); /* its next slice, after a loop pass */
    }
    gate_open(fs);
    if (d->stopping) {
        flush_next_batch(d);
        return;
    }
    static const struct timeval now = {0, 0};
    event_add(fs->admin_ev, &now);
}

/* The next slice of the first admin flush, unless stopping (then every one is aborted). */
static void flush_admin_next(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (fs->running || STAILQ_EMPTY(&fs->admin))
        return;
    if (d->stopping) {
        flush_admin_abort(d);
        return;
    }
    struct admin_flush *af = STAILQ_FIRST(&fs->admin);
    STAILQ_REMOVE_HEAD(&fs->admin, link);
    fs->running = true;
    if (worker_submit(d->workers, admin_slice_work, admin_slice_done, af) != 0) {
        admin_slice_work(af); /* out of memory: here and now */
        admin_slice_done(af);
    }
}

/* Stopping: admin flushes not finished are answered with what they removed so far. */
static void flush_admin_abort(struct daemon *d)
{
    struct flush_state *fs = d->flush;
    if (!fs)
        return;
    while (!STAILQ_EMPTY(&fs->admin)) {
        struct admin_flush *af = STAILQ_FIRST(&fs->admin);
        STAILQ_REMOVE_HEAD(&fs->admin, link);
        admin_reply(af, ERROR_OPERATION_ABORTED);
    }
}
