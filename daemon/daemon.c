/*
 * daemon.c - peerdistd's parts put together and taken apart, in one place for main.c and the
 * fuzz harness: the database and its directory, the event loop, the disk reserve, the worker
 * pool, the block store (reconciled with the database), the transport, and the modules
 * (publish, content, flush). The listening socket and the signals are main.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "blockstore.h"
#include "content.h"
#include "disk.h"
#include "daemon.h"
#include "flush.h"
#include "fsutil.h"
#include "log.h"
#include "publish.h"
#include "worker.h"

int daemon_init(struct daemon *d)
{
    char err[512];
    d->started = time(NULL);
    if (fs_make_parent_dir(d->cfg.db_path) != 0)
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
        !(d->workers = worker_pool_new(d->base, WORKER_THREADS))) {
        log_error("out of memory setting up the daemon");
        return -1;
    }
    if (bs_open(d->cfg.db_path, d->workers, &d->bs) != 0 || bs_reconcile(d->bs, d->store) != 0)
        return -1;
    store_set_reclaim_hook(d->store, bs_reclaim, d->bs);
    if (publish_init(d) != 0 || content_init(d) != 0 || flush_init(d) != 0)
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
    worker_pool_free(d->workers); /* every job's done runs before the stores close */
    d->workers = NULL;
    flush_free(d);
    content_free(d);
    publish_free(d);
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
}
