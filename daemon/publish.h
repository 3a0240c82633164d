/* SPDX-License-Identifier: MIT */
/*
 * publish.h - PeerDistServer* in the daemon: publication streams hashed off
 * the loop into V1 (and V2) content information, publications per uid, the
 * server secret, and content-information handles that hand out the bytes.
 */
#ifndef PEERDIST_PUBLISH_H
#define PEERDIST_PUBLISH_H

#include <stdbool.h>

#include "contentinfo.h"
#include "daemon.h"

/* Loads (or creates, 0600) the server secret in cfg.state_dir, and registers the module's
 * close hook (a connection's streams, handles and publications go with it). 0 or -1 (logged). */
int publish_init(struct daemon *d);
void publish_free(struct daemon *d);
/* A new server secret (Ks for V1 and V2): streams opened from now on hash with it; streams
 * already open and publications already made keep the one they started with. */
void publish_set_keys(struct daemon *d, const struct ci_secret *ks_v1,
    const struct ci_secret *ks_v2);
/* Handles the request if it is a publishing one (then true: it replies, now or later). */
bool publish_dispatch(struct conn *c, const Peerdist__Request *req);

#endif
