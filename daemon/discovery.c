/* SPDX-License-Identifier: MIT */
/* discovery.c - MS-PCCRD (peer.h). Not built yet: no sockets, no Probes. */
#include "daemon.h"
#include "peer.h"

int discovery_init(struct daemon *d)
{
    (void)d;
    return 0;
}

void discovery_free(struct daemon *d)
{
    (void)d;
}

struct discovery_probe *discovery_probe_start(struct daemon *d, int version,
    const uint8_t *const *ids, const size_t *id_lens, size_t n, unsigned window_ms,
    discovery_match_fn on_match, discovery_done_fn on_done, void *arg)
{
    (void)d, (void)version, (void)ids, (void)id_lens, (void)n, (void)window_ms;
    (void)on_match, (void)on_done, (void)arg;
    return NULL;
}

void discovery_probe_cancel(struct discovery_probe *p)
{
    (void)p;
}

unsigned discovery_recent_probers(struct daemon *d, const uint8_t *id, size_t id_len,
    unsigned seconds)
{
    (void)d, (void)id, (void)id_len, (void)seconds;
    return 0;
}
