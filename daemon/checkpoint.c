/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - the database's checkpoints, on a thread of their own (checkpoint.h).
 *
 * The loop's commits only say how long the WAL is. Once STORE_CHECKPOINT_PAGES pages were
 * added since the last checkpoint, a passive checkpoint runs on this module's thread and
 * connection: it waits for no reader and no writer, and the loop goes on committing. It copies
 * the pages that were in the WAL when it began; the WAL starts over at the first commit after
 * a checkpoint that left nothing behind. Under a steady stream of commits (AddData at full
 * speed) one always lands meanwhile, and the WAL would only grow: past
 * CHECKPOINT_RESTART_PAGES, the next checkpoint runs with the loop's writes held at the write
 * gate (flush_gate_hold), copies the few pages left, and the WAL starts over at the next
 * commit. Checkpoints run one at a time, all on this thread (two at once: one would find the
 * other's lock and do nothing). The flush connection keeps SQLite's own checkpoints: it
 * commits on a worker, with the gate closed.
 */
#include "checkpoint.h"

#include <stdlib.h>
#include <time.h>

#include "flush.h"
#include "log.h"
#include "store.h"
#include "worker.h"

/*
 * Past this many pages in the WAL, the next checkpoint holds the loop's writes
 * (flush_checkpoint) so that the WAL can start over.
 */
#define CHECKPOINT_RESTART_PAGES (4 * STORE_CHECKPOINT_PAGES)
/* A failing checkpoint is logged at most this often. */
#define CHECKPOINT_LOG_INTERVAL_S 60

struct checkpointer {
    struct daemon *d;
    struct store *st;         /* its own connection, used by the job alone */
    struct worker_pool *pool; /* one thread: a checkpoint waits on the disk */
    bool running;             /* a job is submitted and its done has not run */
    bool again;               /* the WAL grew past the threshold while it ran */
    bool hold_asked;          /* flush_gate_hold asked; gate_held not called yet */
    bool held;                /* the gate is closed for the next (or running) job */
    bool job_held;            /* the running job's: release the gate at its done */
    int copied;               /* WAL pages in the database after the last checkpoint */
    int last_pages;           /* the WAL's length after the loop's last commit */
    int hold_at;              /* past this length, a checkpoint with the writes held */
    /* The job's outcome, for its done on the loop. */
    int rc, wal_pages, done_pages;
    double ms;
    time_t logged;
};

static void checkpoint_kick(struct checkpointer *cp);

static void checkpoint_work(void *arg)
{
    struct checkpointer *cp = arg;
    double t0 = daemon_mono_ms();
    cp->rc = store_checkpoint(cp->st, &cp->wal_pages, &cp->done_pages);
    cp->ms = daemon_mono_ms() - t0;
}

static void checkpoint_done(void *arg)
{
    struct checkpointer *cp = arg;
    cp->running = false;
    bool held = cp->job_held;
    cp->job_held = false;
    if (cp->rc < 0) {
        time_t now = time(NULL);
        if (now - cp->logged >= CHECKPOINT_LOG_INTERVAL_S) {
            cp->logged = now;
            log_warn("database checkpoint failed: %s (the WAL grows until one succeeds)",
                store_errmsg(cp->st));
        }
    } else if (cp->rc == 0) {
        cp->copied = cp->done_pages;
        log_debug("checkpoint%s: %d of %d WAL pages copied to the database in %.1f ms",
            held ? ", writes held" : "", cp->done_pages, cp->wal_pages, cp->ms);
    }
    if (held)
        flush_gate_release(cp->d);
    if (cp->again || cp->held) {
        cp->again = false;
        checkpoint_kick(cp);
    }
}

static void checkpoint_kick(struct checkpointer *cp)
{
    if (cp->running) {
        cp->again = true;
        return;
    }
    /* Stopping: the connections' last close checkpoints. Out of memory: the next commit
     * asks again. Either way a held gate opens. */
    if (cp->d->stopping || worker_submit(cp->pool, checkpoint_work, checkpoint_done, cp) != 0) {
        if (cp->held) {
            cp->held = false;
            flush_gate_release(cp->d);
        }
        return;
    }
    cp->running = true;
    cp->job_held = cp->held;
    cp->held = false;
}

/* Loop: the write gate is closed for us (flush_gate_hold). */
static void gate_held(void *arg)
{
    struct checkpointer *cp = arg;
    cp->hold_asked = false;
    cp->held = true;
    checkpoint_kick(cp); /* after the running one, if any */
}

/* The loop's connection committed: the WAL holds pages pages. */
static void wal_grew(void *arg, int pages)
{
    struct checkpointer *cp = arg;
    if (pages < cp->last_pages) { /* the WAL started over */
        cp->copied = 0;
        cp->hold_at = CHECKPOINT_RESTART_PAGES;
    }
    cp->last_pages = pages;
    if (pages - cp->copied >= STORE_CHECKPOINT_PAGES)
        checkpoint_kick(cp);
    /* Once per CHECKPOINT_RESTART_PAGES of growth: if the WAL cannot start over (a reader
     * keeps an old snapshot), the writes are not held again at every commit. */
    if (pages >= cp->hold_at && !cp->hold_asked && !cp->held && !cp->job_held) {
        cp->hold_at = pages + CHECKPOINT_RESTART_PAGES;
        cp->hold_asked = true;
        flush_gate_hold(cp->d, gate_held, cp);
    }
}

int checkpoint_init(struct daemon *d)
{
    struct checkpointer *cp = calloc(1, sizeof(*cp));
    char err[512];
    if (!cp) {
        log_error("out of memory setting up checkpoints");
        return -1;
    }
    cp->d = d;
    cp->hold_at = CHECKPOINT_RESTART_PAGES;
    d->checkpoint = cp;
    if (store_open_checkpointer(d->cfg.db_path, &cp->st, err, sizeof(err)) != 0) {
        log_error("database (checkpoint connection): %s", err);
        return -1;
    }
    if (!(cp->pool = worker_pool_new(d->base, 1)))
        return -1;
    store_set_wal_hook(d->store, wal_grew, cp);
    return 0;
}

void checkpoint_free(struct daemon *d)
{
    struct checkpointer *cp = d->checkpoint;
    if (!cp)
        return;
    if (d->store)
        store_set_wal_hook(d->store, NULL, NULL);
    worker_pool_free(cp->pool); /* a running checkpoint ends first */
    store_close(cp->st);
    free(cp);
    d->checkpoint = NULL;
}
