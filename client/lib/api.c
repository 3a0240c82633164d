/* SPDX-License-Identifier: MIT */
/*
 * api.c - session functions of <peerdist.h> (startup, shutdown, status,
 * notifications, overlapped results) and the instance object the client
 * (api-client.c) and server (api-server.c) functions hang off. Behaviour
 * where Windows is silent follows DESIGN.md and is listed in peerdist(3).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "api-internal.h"
#include "shm.h"

/* The highest API version this library implements: 2.0 (Windows 8). */
#define PD_API_VERSION_MAJOR 2
#define PD_API_VERSION_MINOR 0

static atomic_uint_fast64_t instance_serials;

static void instance_destroy(struct hobj *h)
{
    struct instance *inst = (struct instance *)h;
    pdconn_free(inst->conn);
    pd_shm_free(inst->shm);
    pthread_mutex_destroy(&inst->mu);
    free(inst);
}

/* fork(): the child's copies of the instance's sockets go (handles.c, handle_on_fork). */
static void instance_forget(struct hobj *h)
{
    pdconn_forget_in_child(((struct instance *)h)->conn);
}

__attribute__((constructor)) static void instance_init(void)
{
    handle_on_fork(HT_INSTANCE, instance_forget);
}

struct instance *instance_get(HANDLE h)
{
    return (struct instance *)handle_lookup(h, HT_INSTANCE);
}

void instance_put(struct instance *inst)
{
    hobj_put(&inst->h);
}

DWORD pd_service_ready(struct instance *inst, uint64_t *generation)
{
    DWORD rc = pdconn_ensure(inst->conn, generation);
    if (rc != ERROR_SUCCESS)
        return rc;
    return pdconn_status(inst->conn) == PEERDIST_STATUS_DISABLED ? ERROR_ACCESS_DISABLED_BY_POLICY
                                                                 : ERROR_SUCCESS;
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
    if (major > PD_API_VERSION_MAJOR ||
        (major == PD_API_VERSION_MAJOR && minor > PD_API_VERSION_MINOR))
        return PEERDIST_ERROR_VERSION_UNSUPPORTED;
    struct instance *inst = calloc(1, sizeof(*inst));
    if (!inst)
        return ERROR_NOT_ENOUGH_MEMORY;
    hobj_init(&inst->h, HT_INSTANCE, instance_destroy);
    inst->serial = atomic_fetch_add(&instance_serials, 1) + 1;
    pthread_mutex_init(&inst->mu, NULL);
    LIST_INIT(&inst->children);
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

DWORD pd_call_expecting(struct instance *inst, Peerdist__Request *req, int expect,
    Peerdist__Reply **reply, uint64_t *generation)
{
    *reply = NULL;
    DWORD rc = pd_service_ready(inst, NULL);
    if (rc == ERROR_SUCCESS)
        rc = pdconn_call_sent_on(inst->conn, req, reply, generation);
    if (rc == ERROR_SUCCESS && (int)(*reply)->body_case != expect)
        rc = PEERDIST_ERROR_SERVICE_UNAVAILABLE; /* a daemon that answers nonsense */
    return rc;
}

/*
 * Under inst->mu, so Shutdown's sweep (also under it) either finds the child or runs
 * first and makes this fail: no handle outlives its instance.
 */
DWORD child_register(struct instance *inst, struct child *ch, HANDLE *out)
{
    ch->inst_serial = inst->serial;
    HANDLE h = NULL;
    pthread_mutex_lock(&inst->mu);
    if (!inst->shut) {
        h = handle_insert(&ch->h);
        ch->handle = h;
        if (h)
            LIST_INSERT_HEAD(&inst->children, ch, link);
    }
    bool shut = inst->shut;
    pthread_mutex_unlock(&inst->mu);
    if (h)
        *out = h; /* not ch->handle: once unlocked, ch may already be gone */
    return h ? ERROR_SUCCESS : shut ? ERROR_INVALID_HANDLE : ERROR_NOT_ENOUGH_MEMORY;
}

struct child *child_get(struct instance *inst, HANDLE h, unsigned mask)
{
    struct child *ch = (struct child *)handle_lookup(h, mask);
    if (ch && ch->inst_serial != inst->serial) {
        hobj_put(&ch->h);
        ch = NULL;
    }
    return ch;
}

struct child *child_remove(struct instance *inst, HANDLE h, unsigned mask)
{
    struct child *ch = NULL;
    pthread_mutex_lock(&inst->mu);
    struct child *probe = child_get(inst, h, mask);
    if (probe) {
        ch = (struct child *)handle_remove(h, mask);
        if (ch)
            LIST_REMOVE(ch, link);
        hobj_put(&probe->h);
    }
    pthread_mutex_unlock(&inst->mu);
    return ch;
}

PEERDIST_API DWORD WINAPI PeerDistShutdown(PEERDIST_INSTANCE_HANDLE hPeerDist)
{
    struct instance *inst = (struct instance *)handle_remove(hPeerDist, HT_INSTANCE);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    /* Child handles die with the instance; pending operations complete ABORTED. */
    pthread_mutex_lock(&inst->mu);
    inst->shut = true; /* a call that already holds inst registers no child from now on */
    while (!LIST_EMPTY(&inst->children)) {
        struct child *ch = LIST_FIRST(&inst->children);
        LIST_REMOVE(ch, link);
        struct hobj *obj = handle_remove(ch->handle, ch->h.type);
        if (obj) {
            if (ch->on_close)
                ch->on_close(ch);
            hobj_put(obj);
        }
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
    return w32_overlapped_result(lpOverlapped, lpNumberOfBytesTransferred, bWait);
}
