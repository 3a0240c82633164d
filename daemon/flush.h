/* SPDX-License-Identifier: MIT */
/*
 * flush.h - PeerDistClientFlushContent in the daemon: queued flushes committed in batches (one
 * transaction each) on the flush worker's own database connection, and the write gate that
 * keeps the loop's writers from waiting on that transaction's lock.
 */
#ifndef PEERDIST_FLUSH_H
#define PEERDIST_FLUSH_H

#include <stdbool.h>
#include <sys/queue.h>

#include "daemon.h"

/* Flushes committed in one transaction at most. */
#define FLUSH_BATCH_MAX 4096

/*
 * A writer waiting for the gate to open, embedded in the writer's own state (no allocation,
 * so waiting cannot fail). fn runs on the loop once the running batch has committed (or the
 * hold that closed the gate is released).
 */
struct flush_waiter {
    void (*fn)(struct flush_waiter *w);
    bool waiting;
    STAILQ_ENTRY(flush_waiter) link;
};

/* Opens the flush connection to d->cfg.db_path. 0, or -1 (logged). */
int flush_init(struct daemon *d);
void flush_free(struct daemon *d);
/* Queues a FlushRequest; it is answered (FlushReply) after its batch commits. */
void flush_request(struct conn *c, uint64_t id, const Peerdist__FlushRequest *f);
/*
 * An admin flush (AdminFlushRequest, after the caller's rights were checked): the whole cache,
 * one uid's labels, or one uid's labels of tag. Runs in slices (flush.c); answered with a
 * FlushReply of the sums after its last slice (on a failure or at stop: what went so far).
 */
void flush_admin_queue(struct conn *c, uint64_t id, enum store_admin_scope scope, uint32_t uid,
    const uint8_t tag[STORE_TAG_SIZE]);
/*
 * An eviction pass (evict.h) is due: it runs as a batch of its own on the flush connection,
 * behind the flushes queued before it. Passes also run every EVICT_INTERVAL_S seconds.
 */
void flush_evict_kick(struct daemon *d);
/* At stop: waits for the running batch (or hold), then runs the queued ones, answering them
 * all, and a last eviction pass (counters and recency written down); a hold asked for and not
 * started is dropped. */
void flush_drain(struct daemon *d);

/*
 * The write gate. While a batch holds the database's write lock, the loop must not write
 * (it would wait up to the busy timeout); nor while a hold runs (flush_gate_hold). A writer
 * asks flush_gate_open, and if it is closed
 * queues its writes and calls flush_gate_wait (once; a waiting waiter is not queued twice).
 */
bool flush_gate_open(const struct daemon *d);
void flush_gate_wait(struct daemon *d, struct flush_waiter *w);

/*
 * Holds the gate for work that must run with no writer on the loop (checkpoint.c: the
 * checkpoint that lets the WAL start over): once no batch runs, the gate closes and fn(arg)
 * runs on the loop; the loop's writers wait, as for a batch, until flush_gate_release. One
 * hold is asked for at a time (a second call replaces a hold not started yet; fn NULL drops
 * it). Never started once the daemon stops.
 */
void flush_gate_hold(struct daemon *d, void (*fn)(void *arg), void *arg);
void flush_gate_release(struct daemon *d);

#endif
