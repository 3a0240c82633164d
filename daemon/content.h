/* SPDX-License-Identifier: MIT */
/*
 * content.h - PeerDistClient* in the daemon: content handles, content information added and
 * validated, AddData verified block by block into the block store, reads, cancellation, and
 * the tags listing. The module's parts: content-internal.h.
 */
#ifndef PEERDIST_CONTENT_H
#define PEERDIST_CONTENT_H

#include <stdbool.h>

#include "daemon.h"

/* The module's daemon-wide state, and its close hook (a connection's handles close with it). */
int content_init(struct daemon *d);
void content_free(struct daemon *d);
/* Handles the request if it is a consuming one (then true: it replies, now or later). */
bool content_dispatch(struct conn *c, const Peerdist__Request *req);

/*
 * AddData calls since start that stored blocks and were answered ERROR_SUCCESS, and the sum of
 * each stage's time, from the decoded request until its reply is queued.
 */
enum add_stage {
    ADD_QUEUED,       /* decoded, until a worker took it */
    ADD_VERIFY_WRITE, /* hashed and written on the worker */
    ADD_SYNC_WAIT,    /* written, until its group sync started */
    ADD_SYNC,         /* the group sync */
    ADD_COMMIT,       /* synced, until committed and its reply queued */
    ADD_STAGES
};
struct add_timing {
    uint64_t calls, bytes;
    double ms[ADD_STAGES];
};
void content_add_timing(const struct daemon *d, struct add_timing *out);

#endif
