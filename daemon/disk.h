/* SPDX-License-Identifier: MIT */
/*
 * disk.h - the cache filesystem's free space. A reserve file beside the database holds
 * disk_reserve bytes that only deletes may use: when the database cannot journal a flush for
 * lack of space, the reserve goes back to the filesystem and the flush runs again. AddData
 * is refused (ERROR_DISK_FULL) while free space is below a margin, so it never eats into
 * what the database's own writes need. The reserve comes back by itself once space is free.
 */
#ifndef PEERDIST_DISK_H
#define PEERDIST_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"

/* Free bytes AddData leaves for the database's own writes (rows, WAL, checkpoints). */
#define DISK_ADMIT_MARGIN (16u * 1024 * 1024)
/* How often a missing reserve is tried again, and a refusal logged at most. */
#define DISK_CHECK_INTERVAL_S 5

/* Before the database opens: releases a held reserve if space is short, so start-up
 * (WAL recovery, reconciliation) can write; then keeps it. 0, or -1 (logged). */
int disk_init(struct daemon *d);
void disk_free(struct daemon *d);
/* May an AddData write n more bytes of blocks? false: refuse it with ERROR_DISK_FULL. */
bool disk_admit(struct daemon *d, uint64_t n);
/* The database ran out of space: the reserve goes back to the filesystem. True if there was
 * one to give (retry the write once); false if it is gone already. */
bool disk_release_reserve(struct daemon *d);
/* Free bytes on the cache filesystem for the daemon; UINT64_MAX if unknown. */
uint64_t disk_available(const struct daemon *d);

#endif
