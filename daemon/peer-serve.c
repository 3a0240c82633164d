/* SPDX-License-Identifier: MIT */
/* peer-serve.c - MS-PCCRR server (peer.h). Not built yet: nothing is served. */
#include "daemon.h"
#include "peer.h"

int peer_serve_init(struct daemon *d)
{
    (void)d;
    return 0;
}

void peer_serve_free(struct daemon *d)
{
    (void)d;
}

bool peer_serve_segment(struct daemon *d, const uint8_t *id, size_t id_len,
    struct peer_segment_info *out)
{
    (void)d, (void)id, (void)id_len, (void)out;
    return false;
}
