/*
 * api.c - the PeerDist functions of <peerdist.h>: argument checks and
 * handle validation (synchronous failures), then a request to peerdistd.
 * Behaviour where Windows is silent follows DESIGN.md and is listed in
 * peerdist(3). Functions whose feature has not landed yet return
 * ERROR_CALL_NOT_IMPLEMENTED.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "conn.h"
#include "handles.h"
#include "win32.h"

/* The highest API version this library implements: 2.0 (Windows 8). */
#define PD_API_VERSION_MAJOR 2
#define PD_API_VERSION_MINOR 0

struct content;

struct instance {
    struct hobj h;
    struct pdconn *conn;
    pthread_mutex_t mu; /* guards contents */
    LIST_HEAD(, content) contents;
};

struct content {
    struct hobj h;
    struct instance *inst; /* not referenced: the instance outlives its listed contents */
    HANDLE handle;
    uint64_t daemon_id;
    uint64_t generation; /* connection generation the daemon-side handle belongs to */
    PEERDIST_CONTENT_TAG tag;
    HANDLE port;
    ULONG_PTR key;
    LIST_ENTRY(content) link;
};

static void instance_destroy(struct hobj *h)
{
    struct instance *inst = (struct instance *)h;
    pdconn_free(inst->conn);
    pthread_mutex_destroy(&inst->mu);
    free(inst);
}

static void content_destroy(struct hobj *h)
{
    free(h);
}

static struct instance *instance_get(HANDLE h)
{
    return (struct instance *)handle_lookup(h, HT_INSTANCE);
}

static void instance_put(struct instance *inst)
{
    hobj_put(&inst->h);
}

/* ---- session ---- */

PEERDIST_API DWORD WINAPI PeerDistStartup(DWORD dwVersionRequested,
    PPEERDIST_INSTANCE_HANDLE phPeerDist, PDWORD pdwSupportedVersion)
{
    if (!phPeerDist)
        return ERROR_INVALID_PARAMETER;
    /* Low byte major, high byte minor; the request is the minimum the caller needs. */
    unsigned major = LOBYTE(LOWORD(dwVersionRequested));
    unsigned minor = HIBYTE(LOWORD(dwVersionRequested));
    if (major == 0 || HIWORD(dwVersionRequested) != 0)
        return ERROR_INVALID_PARAMETER;
    if (pdwSupportedVersion)
        *pdwSupportedVersion = MAKEWORD(PD_API_VERSION_MAJOR, PD_API_VERSION_MINOR);
    if (major > PD_API_VERSION_MAJOR || (major == PD_API_VERSION_MAJOR && minor > PD_API_VERSION_MINOR))
        return PEERDIST_ERROR_VERSION_UNSUPPORTED;
    struct instance *inst = calloc(1, sizeof(*inst));
    if (!inst)
        return ERROR_NOT_ENOUGH_MEMORY;
    hobj_init(&inst->h, HT_INSTANCE, instance_destroy);
    pthread_mutex_init(&inst->mu, NULL);
    LIST_INIT(&inst->contents);
    /* A daemon that is not running is not an error here (DESIGN.md, No daemon). */
    inst->conn = pdconn_new(pdconn_default_path());
    HANDLE h = inst->conn ? handle_insert(&inst->h) : NULL;
    if (!h) {
        if (inst->conn)
            pdconn_free(inst->conn);
        pthread_mutex_destroy(&inst->mu);
        free(inst);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    *phPeerDist = h;
    return ERROR_SUCCESS;
}

PEERDIST_API DWORD WINAPI PeerDistShutdown(PEERDIST_INSTANCE_HANDLE hPeerDist)
{
    struct instance *inst = (struct instance *)handle_remove(hPeerDist, HT_INSTANCE);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    /* Child handles die with the instance; pending operations complete ABORTED. */
    pthread_mutex_lock(&inst->mu);
    while (!LIST_EMPTY(&inst->contents)) {
        struct content *ct = LIST_FIRST(&inst->contents);
        LIST_REMOVE(ct, link);
        struct hobj *obj = handle_remove(ct->handle, HT_CONTENT);
        if (obj)
            hobj_put(obj);
    }
    pthread_mutex_unlock(&inst->mu);
    pdconn_stop(inst->conn);
    instance_put(inst);
    return ERROR_SUCCESS;
}

/* PEERDIST_STATUS from the daemon itself; UNAVAILABLE when it cannot be asked. */
static PEERDIST_STATUS ask_status(struct instance *inst)
{
    Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &g;
    Peerdist__Reply *r;
    PEERDIST_STATUS st = PEERDIST_STATUS_UNAVAILABLE;
    if (pdconn_call(inst->conn, &req, &r) == ERROR_SUCCESS &&
        r->body_case == PEERDIST__REPLY__BODY_GET_STATUS &&
        r->get_status->service_status <= PEERDIST_STATUS_AVAILABLE)
        st = (PEERDIST_STATUS)r->get_status->service_status;
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    return st;
}

PEERDIST_API DWORD WINAPI PeerDistGetStatus(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STATUS *pPeerDistStatus)
{
    if (!pPeerDistStatus)
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    *pPeerDistStatus = ask_status(inst);
    instance_put(inst);
    return ERROR_SUCCESS;
}

PEERDIST_API DWORD WINAPI PeerDistGetStatusEx(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STATUS_INFO *pPeerDistStatus)
{
    if (!pPeerDistStatus || pPeerDistStatus->cbSize < sizeof(PEERDIST_STATUS_INFO))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    pPeerDistStatus->status = ask_status(inst);
    pPeerDistStatus->dwMinVer = PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1;
    pPeerDistStatus->dwMaxVer = PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2;
    instance_put(inst);
    return ERROR_SUCCESS;
}

static DWORD register_status(PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE port, ULONG_PTR key,
    LPOVERLAPPED ov, void *out, BOOL ex)
{
    if (!ov || !out || !w32_is_port_or_null(port))
        return ERROR_INVALID_PARAMETER;
    if (ex && ((PEERDIST_STATUS_INFO *)out)->cbSize < sizeof(PEERDIST_STATUS_INFO))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    DWORD rc = pdconn_register_status(inst->conn, ex, ov, port, key, out);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistRegisterForStatusChangeNotification(
    PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped, PEERDIST_STATUS *pPeerDistStatus)
{
    return register_status(hPeerDist, hCompletionPort, ulCompletionKey, lpOverlapped,
        pPeerDistStatus, FALSE);
}

PEERDIST_API DWORD WINAPI PeerDistRegisterForStatusChangeNotificationEx(
    PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped, PEERDIST_STATUS_INFO *pPeerDistStatus)
{
    return register_status(hPeerDist, hCompletionPort, ulCompletionKey, lpOverlapped,
        pPeerDistStatus, TRUE);
}

PEERDIST_API DWORD WINAPI PeerDistUnregisterForStatusChangeNotification(
    PEERDIST_INSTANCE_HANDLE hPeerDist)
{
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    pdconn_unregister_status(inst->conn);
    instance_put(inst);
    return ERROR_SUCCESS;
}

PEERDIST_API BOOL WINAPI PeerDistGetOverlappedResult(LPOVERLAPPED lpOverlapped,
    LPDWORD lpNumberOfBytesTransferred, BOOL bWait)
{
    if (!lpOverlapped || !lpNumberOfBytesTransferred) {
        w32_set_error(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    if (!HasOverlappedIoCompleted(lpOverlapped)) {
        if (!bWait) {
            w32_set_error(ERROR_IO_INCOMPLETE);
            return FALSE;
        }
        w32_wait_overlapped(lpOverlapped);
    }
    *lpNumberOfBytesTransferred = (DWORD)lpOverlapped->InternalHigh;
    DWORD status = (DWORD)lpOverlapped->Internal;
    if (status != ERROR_SUCCESS) {
        w32_set_error(status);
        return FALSE;
    }
    return TRUE;
}

/* ---- service state shared by the data-path calls ---- */

/* Connected and enabled: 0, else the synchronous error (DESIGN.md, Which failures are synchronous). */
static DWORD service_ready(struct instance *inst, uint64_t *generation)
{
    DWORD rc = pdconn_ensure(inst->conn, generation);
    if (rc != ERROR_SUCCESS)
        return rc;
    return pdconn_status(inst->conn) == PEERDIST_STATUS_DISABLED ? ERROR_ACCESS_DISABLED_BY_POLICY
                                                                 : ERROR_SUCCESS;
}

/* ---- client functions ---- */

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
    hobj_init(&ct->h, HT_CONTENT, content_destroy);
    ct->inst = inst;
    ct->daemon_id = r->open_content->handle;
    ct->generation = gen;
    ct->tag = *pContentTag;
    ct->port = hCompletionPort;
    ct->key = ulCompletionKey;
    ct->handle = handle_insert(&ct->h);
    if (!ct->handle) {
        free(ct);
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    pthread_mutex_lock(&inst->mu);
    LIST_INSERT_HEAD(&inst->contents, ct, link);
    pthread_mutex_unlock(&inst->mu);
    *phContentHandle = ct->handle;
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
    struct content *ct = NULL;
    pthread_mutex_lock(&inst->mu);
    struct content *probe = (struct content *)handle_lookup(hContentHandle, HT_CONTENT);
    if (probe && probe->inst == inst) {
        ct = (struct content *)handle_remove(hContentHandle, HT_CONTENT);
        if (ct)
            LIST_REMOVE(ct, link);
    }
    pthread_mutex_unlock(&inst->mu);
    if (probe)
        hobj_put(&probe->h);
    if (!ct) {
        instance_put(inst);
        return ERROR_INVALID_HANDLE;
    }
    /* The daemon-side handle exists only if the connection is the one it was opened on. */
    uint64_t gen;
    if (pdconn_ensure(inst->conn, &gen) == ERROR_SUCCESS && gen == ct->generation) {
        Peerdist__CloseContentRequest cc = PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
        cc.handle = ct->daemon_id;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT;
        req.close_content = &cc;
        pdconn_call(inst->conn, &req, NULL);
    }
    hobj_put(&ct->h);
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
        struct pd_async a = {lpOverlapped, hCompletionPort, ulCompletionKey, NULL, NULL};
        rc = pdconn_submit(inst->conn, &req, &a);
        if (rc == ERROR_SUCCESS)
            rc = ERROR_IO_PENDING;
    }
    instance_put(inst);
    return rc;
}

/* ---- not implemented yet: declared so programs link, and fail clearly ---- */

PEERDIST_API DWORD WINAPI PeerDistServerPublishStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG cbContentLength,
    PCPEERDIST_PUBLICATION_OPTIONS pPublishOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_STREAM_HANDLE phStream)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishAddToStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishCompleteStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseStreamHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerUnpublish(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, DWORD cbContentIdentifier, PBYTE pContentIdentifier,
    ULONGLONG ullContentOffset, ULONGLONG cbContentLength, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformationEx(
    PEERDIST_INSTANCE_HANDLE hPeerDist, DWORD cbContentIdentifier, PBYTE pContentIdentifier,
    ULONGLONG ullContentOffset, ULONGLONG cbContentLength,
    PEERDIST_RETRIEVAL_OPTIONS *pRetrievalOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerRetrieveContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo,
    DWORD cbMaxNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, LPOVERLAPPED pOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

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
