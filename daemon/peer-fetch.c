/* SPDX-License-Identifier: MIT */
/* peer-fetch.c - fetching missing blocks from peers (peer.h). Not built yet. */
#include "daemon.h"
#include "peer.h"

int peer_fetch_init(struct daemon *d)
{
    (void)d;
    return 0;
}

void peer_fetch_free(struct daemon *d)
{
    (void)d;
}
