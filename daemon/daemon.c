/* SPDX-License-Identifier: MIT */
/*
 * daemon.c - peerdistd's parts put together and taken apart, in one place for main.c and the
 * fuzz harness: the database directory (made, checked, locked), the event loop, the disk
 * reserve, the database, the worker pool, the block store (reconciled with the database), the
 * transport, and the modules (publish, content, flush). The listening socket and the signals
 * are main.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "blockstore.h"
#include "checkpoint.h"
#include "content.h"
#include "disk.h"
#include "daemon.h"
#include "flush.h"
#include "peer.h"
#include "fsutil.h"
#include "log.h"
#include "publish.h"
#include "worker.h"

/* Whether a and b name the same existing directory. */
static bool same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
        sa.st_ino == sb.st_ino;
}

/*
 * The database directory, before anything in it is opened: made if missing (FS_DIR_MODE, or
 * 0755 when the socket will live there too, so that every user reaches the socket), refused
 * if someone else could change it, then locked, so that a second daemon on the same
 * directory (the same database, or another one sharing its data/) stops here, before it
 * migrates, reconciles or tests the socket. Files an older start left readable by others
 * lose that.
 */
/*
 * The database and its -wal and -shm, before SQLite opens them: 0640 (fsutil.h) whatever an
 * older start left. Never after: closing any descriptor of a file drops every POSIX lock this
 * process holds on it, SQLite's included. Files SQLite creates get 0640 from the umask
 * (FS_UMASK; its -wal and -shm copy the database's mode).
 */
static int restrict_db_files(const struct daemon *d)
{
    char path[PATH_MAX + 8];
    static const char *const files[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", d->cfg.db_path, files[i]);
        if (fs_restrict_file(path) != 0)
            return -1;
    }
    return 0;
}

static int claim_db_dir(struct daemon *d)
{
    char dir[PATH_MAX], sock_dir[PATH_MAX];
    bool created;
    fs_dirname(d->cfg.db_path, dir, sizeof(dir));
    fs_dirname(d->cfg.socket_path, sock_dir, sizeof(sock_dir));
    if (fs_make_dir(dir, FS_DIR_MODE, &created) != 0)
        return -1;
    if (created && same_dir(dir, sock_dir) && chmod(dir, 0755) != 0) {
        log_error("chmod %s: %s", dir, strerror(errno));
        return -1;
    }
    if (fs_check_dir("database directory", dir) != 0 || (d->dir_lock = fs_lock_dir(dir)) < 0)
        return -1;
    /* A new database is made here, 0640 in so many words, before SQLite opens it (an empty
     * file is an empty database); SQLite gives its -wal and -shm the database's mode. */
    int fd = open(d->cfg.db_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FS_FILE_MODE);
    if (fd >= 0) {
        bool ok = fchmod(fd, FS_FILE_MODE) == 0;
        close(fd);
        if (!ok) {
            log_error("chmod %s: %s", d->cfg.db_path, strerror(errno));
            return -1;
        }
    } else if (errno != EEXIST) {
        log_error("cannot create %s: %s", d->cfg.db_path, strerror(errno));
        return -1;
    }
    return restrict_db_files(d);
}

int daemon_init(struct daemon *d)
{
    char err[512];
    d->started = time(NULL);
    d->dir_lock = -1;
    fs_init_ownership(); /* before anything is created, before any thread */
    if (claim_db_dir(d) != 0)
        return -1;
    if (!(d->base = event_base_new())) {
        log_error("out of memory creating the event loop");
        return -1;
    }
    if (disk_init(d) != 0) /* before anything writes: on a full disk, the reserve goes */
        return -1;
    if (store_open(d->cfg.db_path, &d->store, err, sizeof(err)) != 0) {
        log_error("database: %s", err);
        return -1;
    }
    if (server_init(d, dispatch_request) != 0 ||
        !(d->workers = worker_pool_new(d->base, WORKER_THREADS)) ||
        !(d->syncer = worker_pool_new(d->base, SYNCER_THREADS))) {
        log_error("out of memory setting up the daemon");
        return -1;
    }
    char data_dir[PATH_MAX + 8];
    fs_dirname(d->cfg.db_path, data_dir, PATH_MAX);
    strcat(data_dir, "/data");
    if (bs_open(d->cfg.db_path, d->workers, &d->bs) != 0 || fs_restrict_dir(data_dir) != 0 ||
        bs_reconcile(d->bs, d->store) != 0)
        return -1;
    store_set_reclaim_hook(d->store, bs_reclaim, d->bs);
    if (publish_init(d) != 0 || admin_init(d) != 0 || content_init(d) != 0 || flush_init(d) != 0)
        return -1;
    if (peer_serve_init(d) != 0 || discovery_init(d) != 0 || peer_fetch_init(d) != 0)
        return -1;
    if (checkpoint_init(d) != 0)
        return -1;
    return 0;
}

void daemon_stop(struct daemon *d)
{
    d->stopping = true;
    server_stop_listening(d);
    flush_drain(d); /* answer what is queued */
    server_close_all(d);
}

void daemon_free(struct daemon *d)
{
    d->stopping = true; /* work finishing from here on runs inline, not on the pool */
    if (d->base)
        server_close_all(d);
    checkpoint_free(d);           /* the loop's commits from here on checkpoint by themselves */
    worker_pool_free(d->workers); /* every job's done runs before the stores close */
    d->workers = NULL;
    worker_pool_free(d->syncer); /* after the workers: their dones may have queued syncs */
    d->syncer = NULL;
    peer_fetch_free(d);
    discovery_free(d);
    peer_serve_free(d);
    flush_free(d);
    content_free(d);
    publish_free(d);
    admin_free(d);
    if (d->base)
        server_free(d);
    if (d->store)
        store_set_reclaim_hook(d->store, NULL, NULL);
    bs_close(d->bs);
    d->bs = NULL;
    disk_free(d);
    if (d->base)
        event_base_free(d->base);
    d->base = NULL;
    store_close(d->store);
    d->store = NULL;
    if (d->dir_lock >= 0) /* last: the directory is free once nothing in it is open */
        close(d->dir_lock);
    d->dir_lock = -1;
}
