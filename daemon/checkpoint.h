/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.h - the database's checkpoints, off the event loop: a commit never checkpoints
 * (store.h, Checkpoints); this module does, on a thread of its own (checkpoint.c).
 */
#ifndef PEERDIST_CHECKPOINT_H
#define PEERDIST_CHECKPOINT_H

#include "daemon.h"

/* After the database is open and the flush connection is up. 0, or -1 (logged). */
int checkpoint_init(struct daemon *d);
/* First in daemon_free: waits for a running checkpoint (a held gate opens); the loop's
 * commits checkpoint by themselves again. */
void checkpoint_free(struct daemon *d);

#endif
