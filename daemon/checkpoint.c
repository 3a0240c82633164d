/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - the database's checkpoints, on a thread of their own (checkpoint.h).
 *
 * Neither connection that writes checkpoints in its commits (store_set_wal_hook; the flush
 * connection's hook is flush.c's). The loop's commits say how long the WAL is. Once
 * STORE_CHECKPOINT_PAGES pages were added since the last checkpoint, a passive checkpoint runs
 * on this module's thread and connection: it waits for no reader and no writer, and the loop
 * goes on committing. It copies the pages that were in the WAL when it began; the WAL starts
 * over at the first commit after a checkpoint that left nothing behind. Under a steady stream
 * of commits (AddData at full speed) one always lands meanwhile, and the WAL would only grow:
 * past CHECKPOINT_RESTART_PAGES, once no checkpoint runs, the next one runs with the loop's
 * writes held at the write gate (flush_gate_hold), copies what is left, and the WAL starts
 * over at the next commit. One checkpoint runs at a time, always on this thread.
 */
#include "checkpoint.h"

#include <stdlib.h>
#include <time.h>

#include "flush.h"
#include "log.h"
#include "store.h"
#include "worker.h"

/*
 * Past this many pages in the WAL, the next checkpoint holds the loop's writes so that the
 * WAL can start over; if it cannot (a reader keeps an old snapshot), the next one held waits
 * for as many pages more, so that writes are not held at every commit.
 */
#define CHECKPOINT_RESTART_PAGES (4 * STORE_CHECKPOINT_PAGES)
/* A failing checkpoint is logged at most this often. */
#define CHECKPOINT_LOG_INTERVAL_S 60

enum hold_state {
    HOLD_NONE,
    HOLD_WANTED, /* asked for once the running checkpoint is done */
    HOLD_ASKED,  /* flush_gate_hold called; gate_held not yet */
};

struct checkpointer {
    struct daemon *d;
    struct store *st;         /* its own connection, used by the job alone */
    struct worker_pool *pool; /* one thread: a checkpoint waits on the disk */
    bool running;             /* a job is submitted and its done has not run */
    bool job_held;            /* the running job has the gate closed: its done opens it */
    enum hold_state hold;
    int copied;        /* WAL pages copied, or being copied by the running job */
    int last_pages;    /* the WAL's length after the loop's last commit */
    int hold_at;       /* from this length on, the next checkpoint holds the writes */
    unsigned restarts; /* times the WAL was seen to start over */
    unsigned job_restarts;
    /* The job's outcome, for its done on the loop. */
    int rc, wal_pages, done_pages;
    double ms;
    time_t logged;
};

static void checkpoint_work(void *arg)
{
    struct checkpointer *cp = arg;
    double t0 = daemon_mono_ms();
    cp->rc = store_checkpoint(cp->st, &cp->wal_pages, &cp->done_pages);
    cp->ms = daemon_mono_ms() - t0;
}

static void checkpoint_done(void *arg);

/* Starts a checkpoint (held: the gate is closed for it, and opens when it ends). */
static void checkpoint_start(struct checkpointer *cp, bool held)
{
    /* Stopping: the connections' last close checkpoints. Out of memory: a later commit asks
     * again. Either way a held gate opens. */
    if (cp->d->stopping || worker_submit(cp->pool, checkpoint_work, checkpoint_done, cp) != 0) {
        if (held)
            flush_gate_release(cp->d);
        return;
    }
    cp->running = true;
    cp->job_held = held;
    cp->job_restarts = cp->restarts;
    cp->copied = cp->last_pages; /* a failure waits as many new pages before trying again */
}

/* Loop: the write gate is closed for us (flush_gate_hold); no checkpoint runs. */
static void gate_held(void *arg)
{
    struct checkpointer *cp = arg;
    cp->hold = HOLD_NONE;
    checkpoint_start(cp, true);
}

static void ask_hold(struct checkpointer *cp)
{
    cp->hold = HOLD_ASKED;
    flush_gate_hold(cp->d, gate_held, cp);
}

static void checkpoint_done(void *arg)
{
    struct checkpointer *cp = arg;
    bool held = cp->job_held;
    cp->running = false;
    cp->job_held = false;
    if (cp->restarts != cp->job_restarts)
        cp->copied = 0; /* the WAL started over meanwhile: all of it is new */
    else if (cp->rc == 0)
        cp->copied = cp->done_pages;
    if (cp->rc < 0) {
        time_t now = time(NULL);
        if (now - cp->logged >= CHECKPOINT_LOG_INTERVAL_S) {
            cp->logged = now;
            log_warn("database checkpoint failed: %s (the WAL grows until one succeeds)",
                store_errmsg(cp->st));
        }
    } else if (cp->rc == 0) {
        log_debug("checkpoint%s: %d of %d WAL pages copied to the database in %.1f ms",
            held ? ", writes held" : "", cp->done_pages, cp->wal_pages, cp->ms);
    }
    if (held)
        flush_gate_release(cp->d);
    if (cp->hold == HOLD_WANTED)
        ask_hold(cp);
    else if (cp->hold == HOLD_NONE && cp->last_pages - cp->copied >= STORE_CHECKPOINT_PAGES)
        checkpoint_start(cp, false); /* as many pages came while it ran */
}

/* The loop's connection committed: the WAL holds pages pages. */
static void wal_grew(void *arg, int pages)
{
    struct checkpointer *cp = arg;
    if (pages < cp->last_pages) { /* the WAL started over */
        cp->restarts++;
        cp->copied = 0;
        cp->hold_at = CHECKPOINT_RESTART_PAGES;
    }
    cp->last_pages = pages;
    if (cp->hold != HOLD_NONE)
        return; /* the held checkpoint comes, and copies what a passive one would */
    if (pages >= cp->hold_at) {
        cp->hold_at = pages + CHECKPOINT_RESTART_PAGES;
        cp->hold = HOLD_WANTED;
        if (!cp->running)
            ask_hold(cp); /* else its done asks: the gate never waits for a checkpoint */
        return;
    }
    if (!cp->running && pages - cp->copied >= STORE_CHECKPOINT_PAGES)
        checkpoint_start(cp, false);
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
    if (cp->hold == HOLD_ASKED)
        flush_gate_hold(d, NULL, NULL); /* not wanted any more */
    worker_pool_free(cp->pool); /* a running checkpoint ends first (and opens a held gate) */
    store_close(cp->st);
    free(cp);
    d->checkpoint = NULL;
}
