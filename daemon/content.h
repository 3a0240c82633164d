/*
 * content.h - PeerDistClient* in the daemon: content handles, content
 * information added and validated, AddData verified block by block into the
 * block store, reads, cancellation, and the tags listing.
 */
#ifndef PEERDIST_CONTENT_H
#define PEERDIST_CONTENT_H

#include <stdbool.h>

#include "daemon.h"

/* Opens the block store beside the database (and reconciles it with the metadata). */
int content_init(struct daemon *d);
void content_free(struct daemon *d);
/* Handles the request if it is a consuming one (then true: it replies, now or later). */
bool content_dispatch(struct conn *c, const Peerdist__Request *req);
/* A flush batch released the write lock: run the writes deferred meanwhile. */
void content_writes_resume(struct daemon *d);
/* The block index changed outside content.c (a flush): cached slot maps are stale. */
void content_blocks_changed(struct daemon *d);
/* The connection is going: its content handles are closed, pending work aborted. */
void content_conn_closed(struct conn *c);

#endif
