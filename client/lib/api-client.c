/*
 * api-client.c - PeerDistClient* of <peerdist.h>: content handles and their
 * tag, and FlushContent. Content information, AddData, reads and
 * cancellation are not built yet and return ERROR_CALL_NOT_IMPLEMENTED.
 */
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"

static void content_destroy(struct hobj *h)
{
    free(h);
}


PEERDIST_API DWORD WINAPI PeerDistClientOpenContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PCPEERDIST_CONTENT_TAG pContentTag, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    PPEERDIST_CONTENT_HANDLE phContentHandle)
{
    if (!pContentTag || !phContentHandle || !w32_is_port_or_null(hCompletionPort))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    uint64_t gen;
    DWORD rc = service_ready(inst, &gen);
    struct content *ct = NULL;
    Peerdist__Reply *r = NULL;
    if (rc != ERROR_SUCCESS)
        goto out;
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)pContentTag->Data;
    o.tag.len = sizeof(pContentTag->Data);
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    rc = pdconn_call(inst->conn, &req, &r);
    if (rc != ERROR_SUCCESS)
        goto out;
    if (r->body_case != PEERDIST__REPLY__BODY_OPEN_CONTENT) {
        rc = PEERDIST_ERROR_SERVICE_UNAVAILABLE;
        goto out;
    }
    ct = calloc(1, sizeof(*ct));
    if (!ct) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    hobj_init(&ct->ch.h, HT_CONTENT, content_destroy);
    ct->ch.daemon_id = r->open_content->handle;
    ct->ch.generation = gen;
    ct->ch.port = hCompletionPort;
    ct->ch.key = ulCompletionKey;
    ct->tag = *pContentTag;
    if (!child_register(inst, &ct->ch)) {
        free(ct);
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    *phContentHandle = ct->ch.handle;
out:
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistClientCloseContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle)
{
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct content *ct = (struct content *)child_remove(inst, hContentHandle, HT_CONTENT);
    if (!ct) {
        instance_put(inst);
        return ERROR_INVALID_HANDLE;
    }
    /* The daemon-side handle exists only if the connection is the one it was opened on. */
    if (child_alive(inst, &ct->ch)) {
        Peerdist__CloseContentRequest cc = PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
        cc.handle = ct->ch.daemon_id;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT;
        req.close_content = &cc;
        pdconn_call(inst->conn, &req, NULL);
    }
    hobj_put(&ct->ch.h);
    instance_put(inst);
    return ERROR_SUCCESS;
}

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
    DWORD rc = service_ready(inst, NULL);
    if (rc == ERROR_SUCCESS) {
        Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
        f.tag.data = (uint8_t *)pContentTag->Data;
        f.tag.len = sizeof(pContentTag->Data);
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
        req.flush = &f;
        struct pd_async a = {.ov = lpOverlapped, .port = hCompletionPort, .key = ulCompletionKey};
        rc = pdconn_submit(inst->conn, &req, &a);
        if (rc == ERROR_SUCCESS)
            rc = ERROR_IO_PENDING;
    }
    instance_put(inst);
    return rc;
}

/* ---- not implemented yet: declared so programs link, and fail clearly ---- */

PEERDIST_API DWORD WINAPI PeerDistClientAddContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContentHandle,
    DWORD cbNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientCompleteContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContentHandle,
    LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientAddData(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientBlockRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientStreamRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, LPOVERLAPPED pOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistClientGetInformationByHandle(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContentHandle,
    PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS PeerDistClientInfoClass, DWORD dwBufferSize,
    LPVOID lpInformation)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}
