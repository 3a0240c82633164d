/*
 * publish.c - PeerDistServer* in the daemon (see publish.h). Not built yet:
 * every publishing request is left to dispatch's ERROR_CALL_NOT_IMPLEMENTED.
 */
#include "publish.h"

int publish_init(struct daemon *d)
{
    return 0;
}

void publish_free(struct daemon *d)
{
}

bool publish_dispatch(struct conn *c, const Peerdist__Request *req)
{
    return false;
}

void publish_conn_closed(struct conn *c)
{
}
