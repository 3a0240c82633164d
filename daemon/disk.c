/* SPDX-License-Identifier: MIT */
/*
 * disk.c - free space on the cache filesystem (see disk.h). The reserve is a plain file,
 * <database>.reserve, allocated with fallocate so its blocks are really taken; releasing it
 * is an unlink, which needs no space. A timer re-creates it once the filesystem has room for
 * it and the AddData margin again.
 */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "blockstore.h"
#include "log.h"

struct disk_state {
    char reserve_path[PATH_MAX + 16];
    char dir[PATH_MAX]; /* the database's directory: the filesystem whose space counts */
    bool have_reserve;
    struct event *check_ev;
    time_t last_refusal_log;
    uint64_t refused; /* AddData refusals since the last log line */
};

uint64_t disk_available(const struct daemon *d)
{
    const struct disk_state *ds = d->disk;
    struct statvfs sv;
    if (!ds || statvfs(ds->dir, &sv) != 0)
        return UINT64_MAX;
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/* Allocates the reserve file; true if it now holds cfg.disk_reserve bytes. */
static bool reserve_make(struct daemon *d)
{
    struct disk_state *ds = d->disk;
    uint64_t size = d->cfg.disk_reserve;
    int fd = open(ds->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("disk reserve %s: %s", ds->reserve_path, strerror(errno));
        return false;
    }
    int rc = fallocate(fd, 0, 0, (off_t)size);
    int err = errno;
    close(fd);
    if (rc != 0) {
        unlink(ds->reserve_path); /* a part of it would only look like a reserve */
        if (err != ENOSPC)
            log_warn("disk reserve %s: fallocate: %s", ds->reserve_path, strerror(err));
        return false;
    }
    return true;
}

static bool reserve_held(const struct disk_state *ds, uint64_t size)
{
    struct stat sb;
    return stat(ds->reserve_path, &sb) == 0 && (uint64_t)sb.st_blocks * 512 >= size;
}

bool disk_release_reserve(struct daemon *d)
{
    struct disk_state *ds = d->disk;
    if (!ds || !ds->have_reserve)
        return false;
    if (unlink(ds->reserve_path) != 0 && errno != ENOENT)
        log_error("disk reserve %s: unlink: %s", ds->reserve_path, strerror(errno));
    ds->have_reserve = false;
    log_warn("cache filesystem full: %llu reserved bytes released so deletes can run; "
             "AddData is refused until space is free",
        (unsigned long long)d->cfg.disk_reserve);
    event_add(ds->check_ev, &(struct timeval){DISK_CHECK_INTERVAL_S, 0});
    return true;
}

/* Timer: re-creates a released reserve once the filesystem has room for it and the margin. */
static void check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct disk_state *ds = d->disk;
    if (ds->have_reserve || d->cfg.disk_reserve == 0)
        return;
    uint64_t avail = disk_available(d);
    if (avail != UINT64_MAX && avail >= d->cfg.disk_reserve + DISK_ADMIT_MARGIN &&
        reserve_make(d)) {
        ds->have_reserve = true;
        log_info("cache filesystem has room again: %llu bytes reserved for deletes",
            (unsigned long long)d->cfg.disk_reserve);
        return;
    }
    event_add(ds->check_ev, &(struct timeval){DISK_CHECK_INTERVAL_S, 0});
}

int disk_init(struct daemon *d)
{
    struct disk_state *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return -1;
    d->disk = ds;
    snprintf(ds->reserve_path, sizeof(ds->reserve_path), "%s.reserve", d->cfg.db_path);
    const char *slash = strrchr(d->cfg.db_path, '/');
    if (slash)
        snprintf(ds->dir, sizeof(ds->dir), "%.*s", (int)(slash - d->cfg.db_path + 1),
            d->cfg.db_path);
    else
        snprintf(ds->dir, sizeof(ds->dir), ".");
    if (!(ds->check_ev = evtimer_new(d->base, check_cb, d)))
        return -1;
    if (d->cfg.disk_reserve == 0) {
        unlink(ds->reserve_path);
        return 0;
    }
    uint64_t avail = disk_available(d);
    bool held = reserve_held(ds, d->cfg.disk_reserve);
    if (held && avail != UINT64_MAX && avail < DISK_ADMIT_MARGIN) {
        /* Full at start: start-up itself (WAL recovery, reconciliation) may need to write. */
        ds->have_reserve = true;
        disk_release_reserve(d);
        return 0;
    }
    if (held || reserve_make(d)) {
        ds->have_reserve = true;
        return 0;
    }
    log_warn("cache filesystem: no room for the %llu-byte reserve; retrying every %d s",
        (unsigned long long)d->cfg.disk_reserve, DISK_CHECK_INTERVAL_S);
    event_add(ds->check_ev, &(struct timeval){DISK_CHECK_INTERVAL_S, 0});
    return 0;
}

void disk_free(struct daemon *d)
{
    struct disk_state *ds = d->disk;
    if (!ds)
        return;
    if (ds->check_ev)
        event_free(ds->check_ev);
    free(ds);
    d->disk = NULL;
}

bool disk_admit(struct daemon *d, uint64_t n)
{
    struct disk_state *ds = d->disk;
    uint64_t avail = disk_available(d);
    if (ds && !ds->have_reserve && d->cfg.disk_reserve && avail != UINT64_MAX &&
        avail >= d->cfg.disk_reserve + DISK_ADMIT_MARGIN + n && reserve_make(d)) {
        ds->have_reserve = true; /* space is back: so is the reserve, before any AddData */
        log_info("cache filesystem has room again: %llu bytes reserved for deletes",
            (unsigned long long)d->cfg.disk_reserve);
        avail = disk_available(d);
    }
    if (!ds || avail == UINT64_MAX ||
        (avail >= n && avail - n >= DISK_ADMIT_MARGIN &&
            (ds->have_reserve || d->cfg.disk_reserve == 0)))
        return true;
    ds->refused++;
    if (d->bs)
        bs_spare_drop(d->bs); /* space for what comes after this refusal */
    time_t now = time(NULL);
    if (now - ds->last_refusal_log >= DISK_CHECK_INTERVAL_S) {
        log_warn("cache filesystem nearly full (%llu bytes free, %s): %llu AddData refused with "
                 "ERROR_DISK_FULL since the last report",
            (unsigned long long)avail, ds->have_reserve ? "reserve held" : "reserve released",
            (unsigned long long)ds->refused);
        ds->last_refusal_log = now;
        ds->refused = 0;
    }
    return false;
}
