/* SPDX-License-Identifier: MIT */
/*
 * api-client.c - PeerDistClientFlushContent, the one client call not tied to
 * a content handle. The calls on content handles are in api-content.c.
 */
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"

PEERDIST_API DWORD WINAPI PeerDistClientFlushContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PCPEERDIST_CONTENT_TAG pContentTag, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped)
{
    if (!pContentTag || !lpOverlapped || lpOverlapped->Offset || lpOverlapped->OffsetHigh ||
        !w32_is_port_or_null(hCompletionPort))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    DWORD rc = pd_service_ready(inst, NULL);
    if (rc == ERROR_SUCCESS) {
        Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
        f.tag.data = (uint8_t *)pContentTag->Data;
        f.tag.len = sizeof(pContentTag->Data);
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
        req.flush = &f;
        struct pd_async a = {.ov = lpOverlapped, .port = hCompletionPort, .key = ulCompletionKey};
        rc = pdconn_submit(inst->conn, 0, &req, &a);
        if (rc == ERROR_SUCCESS)
            rc = ERROR_IO_PENDING;
    }
    instance_put(inst);
    return rc;
}
