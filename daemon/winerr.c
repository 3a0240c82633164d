/* SPDX-License-Identifier: MIT */
/*
 * winerr.c - failures to Win32 codes (see winerr.h). Clients see these numbers; the daemon's
 * log line says what really happened.
 */
#include "winerr.h"

#include <errno.h>
#include <sqlite3.h>

#include <peerdist.h>

uint32_t winerr_from_sqlite(int rc)
{
    switch (rc & 0xff) { /* extended codes keep the primary one in the low byte */
    case SQLITE_FULL: return ERROR_DISK_FULL;
    case SQLITE_NOMEM: return ERROR_NOT_ENOUGH_MEMORY;
    default: return ERROR_INTERNAL_ERROR;
    }
}

uint32_t winerr_from_write_errno(int err)
{
    switch (err) {
    case ENOSPC:
    case EDQUOT: return ERROR_DISK_FULL;
    case ENOMEM: return ERROR_NOT_ENOUGH_MEMORY;
    default: return ERROR_WRITE_FAULT;
    }
}
