/* SPDX-License-Identifier: MIT */
/*
 * winerr.h - the one place where failures become the Win32 codes the daemon sends: SQLite
 * result codes and errno values. Every number comes from a public constant of <peerdist.h>.
 */
#ifndef PEERDIST_WINERR_H
#define PEERDIST_WINERR_H

#include <stdint.h>

/* SQLITE_FULL: ERROR_DISK_FULL; SQLITE_NOMEM: ERROR_NOT_ENOUGH_MEMORY; else ERROR_INTERNAL_ERROR. */
uint32_t winerr_from_sqlite(int rc);
/* A failed write or sync of block bytes: ENOSPC/EDQUOT ERROR_DISK_FULL, ENOMEM
 * ERROR_NOT_ENOUGH_MEMORY, else ERROR_WRITE_FAULT. */
uint32_t winerr_from_write_errno(int err);

#endif
