/* SPDX-License-Identifier: MIT */
/*
 * worker.h - a small thread pool for work that must not run on the event
 * loop (hashing, disk writes, large deletes). A job's `work` runs on a worker
 * thread; its `done` runs afterwards on the loop thread, where it may touch
 * daemon state and send replies. Jobs run in parallel; each job's done comes
 * after its own work, in no particular order relative to other jobs.
 */
#ifndef PEERDIST_WORKER_H
#define PEERDIST_WORKER_H

#include <event2/event.h>

#define WORKER_THREADS 2
/*
 * AddData's group fdatasyncs have threads of their own: they wait on the disk, so on a worker
 * they would idle one of the two hashing threads for the length of every sync, and queued
 * behind hashing jobs the disk would sit idle between syncs. Two, so the ops written while
 * one batch syncs start their own sync at once (content-commit.c; they commit in order).
 */
#define SYNCER_THREADS 2

struct worker_pool;

typedef void (*worker_fn)(void *arg);

struct worker_pool *worker_pool_new(struct event_base *base, int threads);
/* Runs every queued job to its done, then stops the threads. */
void worker_pool_free(struct worker_pool *wp);
/* 0, or -1 when out of memory (nothing will run). */
int worker_submit(struct worker_pool *wp, worker_fn work, worker_fn done, void *arg);

#endif
