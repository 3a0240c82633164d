/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.h - the database's checkpoints, off the event loop. SQLite's automatic
 * checkpoint runs in the thread of the commit that takes the WAL past 1000 pages: on the
 * loop, an fdatasync of the WAL, the pages' writes and an fdatasync of the database, 10-20 ms
 * while AddData keeps the disk busy, with no client served meanwhile. Here the loop's
 * connection never checkpoints (store_set_wal_hook); see checkpoint.c.
 */
#ifndef PEERDIST_CHECKPOINT_H
#define PEERDIST_CHECKPOINT_H

#include "daemon.h"

/* After the database is open and the flush connection is up. 0, or -1 (logged). */
int checkpoint_init(struct daemon *d);
/* Waits for a running checkpoint; the loop's commits checkpoint by themselves again. */
void checkpoint_free(struct daemon *d);

#endif
