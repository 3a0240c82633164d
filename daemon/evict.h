/* SPDX-License-Identifier: MIT */
/*
 * evict.h - the cache's bounds (docs/cache.md, Bounds and eviction): the settings in force
 * (cache_size, max_age, uid_quota, and the run-time override in <state_dir>/cache.conf), the
 * daemon's clock, recency and counters gathered on the loop, and the eviction pass that
 * flush.c runs as a batch of its own on the flush connection. Loop thread, except
 * evict_pass_work (the flush worker).
 */
#ifndef PEERDIST_EVICT_H
#define PEERDIST_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

/* A pass every this many seconds (expiry, and recency and counters written down). */
#define EVICT_INTERVAL_S 60
/* Over the limit, eviction goes down to this percent of it (so it does not run per add). */
#define EVICT_LOW_WATER_PERCENT 90
/* At most this many block rows deleted per transaction (about 5 ms here: bench/README.md),
 * so that other clients' writes, which wait for the transaction, stay fast. */
#define EVICT_SLICE_BLOCKS 1024
/* A large eviction's next slice starts this long after the last one and once its slots are
 * reclaimed (flush.c): reclaim's unlinks (about 10 ms per 32 MiB file here) and clients'
 * fdatasyncs share the filesystem journal (bench/README.md, evict_e2e). */
#define EVICT_SLICE_WAIT_MS 25
/* Segments looked at per query of candidates. */
#define EVICT_CANDIDATES 256
/* Segments whose reads are recorded in memory between passes; more asks for a pass early. */
#define EVICT_RECENCY_MAX 65536
/* The run-time override's file in the state directory. */
#define EVICT_OVERRIDE_FILE "cache.conf"
/* Test hook (peerdistd(8)): a file holding seconds added to the daemon's clock. */
#define EVICT_CLOCK_ENV "PEERDIST_TEST_CLOCK_OFFSET_FILE"

int evict_init(struct daemon *d);
void evict_free(struct daemon *d);

/* The daemon's clock: Unix seconds (plus the test offset). Every stored timestamp uses it. */
int64_t evict_now(const struct daemon *d);
/* A read used the segment (kept in memory, written by the next pass). True: a pass is due. */
bool evict_touch(struct daemon *d, const uint8_t *segment_id, size_t segment_id_len);
/* Loop-side counters (hits, misses, added), written by the next pass. */
void evict_count(struct daemon *d, enum store_counter which, uint64_t bytes);
/* A flush deleted block rows of `bytes` (the stored-bytes estimate follows). */
void evict_note_flushed(struct daemon *d, uint64_t bytes);
/* AddData committed `bytes`: true when the cache may be over its limit (a pass is due). */
bool evict_note_added(struct daemon *d, uint64_t bytes);

/*
 * Something to run once the reads noted so far are in the database (the Tags reply's
 * last_used): at once (false) if none are pending, else after the next pass (true: the
 * caller kicks one, flush_evict_kick). The waiter is the caller's, valid until fn runs.
 */
struct evict_waiter {
    void (*fn)(struct evict_waiter *w);
    uint64_t pass; /* runs once this pass has ended */
    struct evict_waiter *next;
};
bool evict_after_recency(struct daemon *d, struct evict_waiter *w);

/* SIGHUP: the file's cache keys (an override still wins); the clock offset is read again. */
void evict_reload(struct daemon *d, const struct config *fresh);
/* CacheInfoRequest (any uid) and CacheSetRequest (admins): each replies. CacheSet returns
 * true when the bounds changed (a pass is due). */
void evict_cache_info(struct conn *c, uint64_t id);
bool evict_cache_set(struct conn *c, uint64_t id, const Peerdist__CacheSetRequest *rq);

/* ---- the pass, run by flush.c ---- */
struct evict_pass;
/* Loop: what the pass will do (recency and counters taken from memory); NULL if out of memory. */
struct evict_pass *evict_pass_new(struct daemon *d);
/* Worker, on the flush connection: one transaction. */
void evict_pass_work(struct evict_pass *p, struct store *st);
/* Loop, before evict_pass_done: the pass failed for want of disk space (SQLITE_FULL). */
bool evict_pass_disk_full(const struct evict_pass *p);
/* Loop, before evict_pass_done: the pass committed and removed labels. */
bool evict_pass_removed(const struct evict_pass *p);
/* Loop: reclaim what the pass deleted, free it. True when more is left to evict (another pass
 * should follow at once). */
bool evict_pass_done(struct evict_pass *p);

#endif
