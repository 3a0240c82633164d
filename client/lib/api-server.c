/* SPDX-License-Identifier: MIT */
/*
 * api-server.c - PeerDistServer* of <peerdist.h>: stream and
 * content-information handles, their asynchronous operations, and
 * cancellation by (content identifier, OVERLAPPED). Behaviour where Windows
 * is silent: DESIGN.md and docs/publishing.md.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"

/* Longest content identifier accepted (the daemon has the same limit). */
#define PD_MAX_CONTENT_ID (64u * 1024)

/* A stream or content-information handle: remembers its content id for Cancel. */
struct srvobj {
    struct child ch;
    pthread_mutex_t mu; /* guards ops and add_pending; taken after inst->mu, never before */
    uint8_t *id;
    DWORD id_len;
    bool add_pending; /* streams: one AddToStream at a time */
    LIST_HEAD(, srvop) ops;
};

/* One pending asynchronous call, until its last part is answered. */
struct srvop {
    struct srvobj *o; /* referenced */
    LPOVERLAPPED ov;
    uint64_t request_id; /* the first part's; set while the call is sent */
    atomic_uint parts_left;
    bool is_add;
    PBYTE buf; /* Retrieve: the caller's buffer */
    DWORD max;
    LIST_ENTRY(srvop) link;
};

static void srvobj_destroy(struct hobj *h)
{
    struct srvobj *o = (struct srvobj *)h;
    pthread_mutex_destroy(&o->mu);
    free(o->id);
    free(o);
}

static bool id_ok(DWORD cb, const BYTE *id)
{
    return id && cb > 0 && cb <= PD_MAX_CONTENT_ID;
}

/* The child's daemon-side object is usable: else the synchronous error. */
static DWORD child_ready(struct instance *inst, const struct child *ch)
{
    uint64_t gen;
    DWORD rc = pd_service_ready(inst, &gen);
    if (rc == ERROR_SUCCESS && gen != ch->generation)
        rc = PEERDIST_ERROR_INVALIDATED;
    return rc;
}

/*
 * A stream or content-information handle for the daemon's object daemon_id, listed
 * under inst: ERROR_SUCCESS with *out, ERROR_NOT_ENOUGH_MEMORY, or ERROR_INVALID_HANDLE
 * when inst is being shut down (the daemon's object then stays until the connection
 * closes; nobody can name it).
 */
static struct srvobj *srvobj_new(enum handle_type type, const BYTE *id, DWORD id_len,
    uint64_t daemon_id, uint64_t gen, HANDLE port, ULONG_PTR key);

static DWORD srvobj_open(struct instance *inst, enum handle_type type, const BYTE *id, DWORD id_len,
    uint64_t daemon_id, uint64_t gen, HANDLE port, ULONG_PTR key, HANDLE *out)
{
    struct srvobj *o = srvobj_new(type, id, id_len, daemon_id, gen, port, key);
    if (!o)
        return ERROR_NOT_ENOUGH_MEMORY;
    DWORD rc = child_register(inst, &o->ch, out);
    if (rc != ERROR_SUCCESS)
        srvobj_destroy(&o->ch.h);
    return rc;
}

static struct srvobj *srvobj_new(enum handle_type type, const BYTE *id, DWORD id_len,
    uint64_t daemon_id, uint64_t gen, HANDLE port, ULONG_PTR key)
{
    struct srvobj *o = calloc(1, sizeof(*o));
    if (!o || !(o->id = malloc(id_len))) {
        free(o);
        return NULL;
    }
    hobj_init(&o->ch.h, type, srvobj_destroy);
    pthread_mutex_init(&o->mu, NULL);
    LIST_INIT(&o->ops);
    memcpy(o->id, id, id_len);
    o->id_len = id_len;
    o->ch.daemon_id = daemon_id;
    o->ch.generation = gen;
    o->ch.port = port;
    o->ch.key = key;
    return o;
}

static struct srvop *srvop_new(struct srvobj *o, LPOVERLAPPED ov, unsigned parts, bool is_add)
{
    struct srvop *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    hobj_get(&o->ch.h);
    op->o = o;
    op->ov = ov;
    op->is_add = is_add;
    atomic_init(&op->parts_left, parts);
    pthread_mutex_lock(&o->mu);
    LIST_INSERT_HEAD(&o->ops, op, link);
    pthread_mutex_unlock(&o->mu);
    return op;
}

static void srvop_end(struct srvop *op)
{
    struct srvobj *o = op->o;
    pthread_mutex_lock(&o->mu);
    LIST_REMOVE(op, link);
    if (op->is_add)
        o->add_pending = false;
    pthread_mutex_unlock(&o->mu);
    hobj_put(&o->ch.h);
    free(op);
}

/* Per part; the last part ends the op, before the completion is delivered. */
static void srvop_on_reply(struct pd_op *pop, const Peerdist__Reply *reply, DWORD *status,
    DWORD *bytes)
{
    struct srvop *op = pd_op_arg(pop);
    if (reply && *status == ERROR_SUCCESS) {
        if (reply->body_case == PEERDIST__REPLY__BODY_COUNT)
            *bytes = (DWORD)reply->count->bytes;
        if (reply->body_case == PEERDIST__REPLY__BODY_RETRIEVE_CONTENT_INFO) {
            const Peerdist__RetrieveContentInfoReply *rr = reply->retrieve_content_info;
            size_t n = rr->data.len < op->max ? rr->data.len : op->max;
            memcpy(op->buf, rr->data.data, n);
            *bytes = (DWORD)n;
            op->ov->Offset = (DWORD)rr->offset;
            op->ov->OffsetHigh = (DWORD)(rr->offset >> 32);
        }
    }
    if (atomic_fetch_sub(&op->parts_left, 1) == 1)
        srvop_end(op);
}

/* Sends reqs as one asynchronous call on o. ERROR_IO_PENDING or the synchronous error. */
static DWORD srv_submit(struct instance *inst, struct srvobj *o, struct srvop *op,
    Peerdist__Request **reqs, size_t n)
{
    struct pd_async a = {.ov = op->ov,
        .port = o->ch.port,
        .key = o->ch.key,
        .on_reply = srvop_on_reply,
        .arg = op,
        .request_id = &op->request_id};
    DWORD rc = pdconn_submit_many(inst->conn, o->ch.generation, reqs, n, &a);
    if (rc != ERROR_SUCCESS) {
        /* Nothing went out: no on_reply will run. */
        atomic_store(&op->parts_left, 1);
        srvop_end(op);
        return rc;
    }
    return ERROR_IO_PENDING;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG cbContentLength,
    PCPEERDIST_PUBLICATION_OPTIONS pPublishOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_STREAM_HANDLE phStream)
{
    if (!id_ok(cbContentIdentifier, pContentIdentifier) || !phStream ||
        !w32_is_port_or_null(hCompletionPort))
        return ERROR_INVALID_PARAMETER;
    DWORD version = PEERDIST_PUBLICATION_OPTIONS_VERSION_1;
    if (pPublishOptions) {
        if ((pPublishOptions->dwVersion != 1 && pPublishOptions->dwVersion != 2) ||
            pPublishOptions->dwFlags != 0)
            return ERROR_INVALID_PARAMETER;
        version = pPublishOptions->dwVersion;
    }
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    uint64_t gen;
    Peerdist__Reply *r;
    Peerdist__PublishStreamRequest ps = PEERDIST__PUBLISH_STREAM_REQUEST__INIT;
    ps.content_id.data = pContentIdentifier;
    ps.content_id.len = cbContentIdentifier;
    ps.content_length = cbContentLength;
    ps.version = version;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_STREAM;
    req.publish_stream = &ps;
    DWORD rc = pd_call_expecting(inst, &req, PEERDIST__REPLY__BODY_PUBLISH_STREAM, &r, &gen);
    if (rc != ERROR_SUCCESS)
        goto out;
    rc = srvobj_open(inst, HT_STREAM, pContentIdentifier, cbContentIdentifier,
        r->publish_stream->stream, gen, hCompletionPort, ulCompletionKey, phStream);
out:
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishAddToStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, DWORD cbNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || lpOverlapped->Offset || lpOverlapped->OffsetHigh || !pBuffer ||
        cbNumberOfBytes == 0)
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct srvobj *o = (struct srvobj *)child_get(inst, hStream, HT_STREAM);
    DWORD rc = ERROR_INVALID_HANDLE;
    size_t n = (cbNumberOfBytes + (size_t)PD_MAX_CHUNK - 1) / PD_MAX_CHUNK;
    Peerdist__Request *reqs = NULL, **preqs = NULL;
    Peerdist__PublishAddRequest *adds = NULL;
    if (!o)
        goto out;
    rc = child_ready(inst, &o->ch);
    if (rc != ERROR_SUCCESS)
        goto out;
    pthread_mutex_lock(&o->mu);
    bool busy = o->add_pending;
    o->add_pending = true;
    pthread_mutex_unlock(&o->mu);
    if (busy) { /* OUR CHOICE: a second AddToStream while one is pending */
        rc = ERROR_INVALID_PARAMETER;
        goto out;
    }
    reqs = calloc(n, sizeof(*reqs));
    preqs = calloc(n, sizeof(*preqs));
    adds = calloc(n, sizeof(*adds));
    struct srvop *op = reqs && preqs && adds ? srvop_new(o, lpOverlapped, (unsigned)n, true) : NULL;
    if (!op) {
        pthread_mutex_lock(&o->mu);
        o->add_pending = false;
        pthread_mutex_unlock(&o->mu);
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t off = i * PD_MAX_CHUNK;
        peerdist__publish_add_request__init(&adds[i]);
        adds[i].stream = o->ch.daemon_id;
        adds[i].data.data = pBuffer + off;
        adds[i].data.len = cbNumberOfBytes - off < PD_MAX_CHUNK ? cbNumberOfBytes - off
                                                                : PD_MAX_CHUNK;
        peerdist__request__init(&reqs[i]);
        reqs[i].body_case = PEERDIST__REQUEST__BODY_PUBLISH_ADD;
        reqs[i].publish_add = &adds[i];
        preqs[i] = &reqs[i];
    }
    rc = srv_submit(inst, o, op, preqs, n);
out:
    free(reqs);
    free(preqs);
    free(adds);
    if (o)
        hobj_put(&o->ch.h);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishCompleteStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || lpOverlapped->Offset || lpOverlapped->OffsetHigh)
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct srvobj *o = (struct srvobj *)child_get(inst, hStream, HT_STREAM);
    DWORD rc = ERROR_INVALID_HANDLE;
    if (!o)
        goto out;
    rc = child_ready(inst, &o->ch);
    if (rc != ERROR_SUCCESS)
        goto out;
    struct srvop *op = srvop_new(o, lpOverlapped, 1, false);
    if (!op) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    Peerdist__PublishCompleteRequest pc = PEERDIST__PUBLISH_COMPLETE_REQUEST__INIT;
    pc.stream = o->ch.daemon_id;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_COMPLETE;
    req.publish_complete = &pc;
    Peerdist__Request *preq = &req;
    rc = srv_submit(inst, o, op, &preq, 1);
out:
    if (o)
        hobj_put(&o->ch.h);
    instance_put(inst);
    return rc;
}

/* Closes a stream or content-information handle; the daemon side only if still alive. */
static DWORD close_child(PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE h, enum handle_type type)
{
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct child *ch = child_remove(inst, h, type);
    if (!ch) {
        instance_put(inst);
        return ERROR_INVALID_HANDLE;
    }
    /* Sent only on the connection the daemon-side object lives on; its pending work
     * completes ABORTED before the close is answered. */
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    Peerdist__CloseStreamRequest cs = PEERDIST__CLOSE_STREAM_REQUEST__INIT;
    Peerdist__CloseContentInfoRequest cc = PEERDIST__CLOSE_CONTENT_INFO_REQUEST__INIT;
    if (type == HT_STREAM) {
        cs.stream = ch->daemon_id;
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_STREAM;
        req.close_stream = &cs;
    } else {
        cc.handle = ch->daemon_id;
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT_INFO;
        req.close_content_info = &cc;
    }
    pdconn_call_on(inst->conn, ch->generation, &req, NULL);
    hobj_put(&ch->h);
    instance_put(inst);
    return ERROR_SUCCESS;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseStreamHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream)
{
    return close_child(hPeerDist, hStream, HT_STREAM);
}

PEERDIST_API DWORD WINAPI PeerDistServerUnpublish(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier)
{
    if (!id_ok(cbContentIdentifier, pContentIdentifier))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    DWORD rc = pd_service_ready(inst, NULL);
    if (rc == ERROR_SUCCESS) {
        Peerdist__UnpublishRequest u = PEERDIST__UNPUBLISH_REQUEST__INIT;
        u.content_id.data = pContentIdentifier;
        u.content_id.len = cbContentIdentifier;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_UNPUBLISH;
        req.unpublish = &u;
        rc = pdconn_call(inst->conn, &req, NULL);
    }
    instance_put(inst);
    return rc;
}

static DWORD open_ci(PEERDIST_INSTANCE_HANDLE hPeerDist, DWORD cbId, PBYTE pId, ULONGLONG offset,
    ULONGLONG length, DWORD min_version, DWORD max_version, HANDLE port, ULONG_PTR key,
    PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    if (!id_ok(cbId, pId) || !phContentInfo || !w32_is_port_or_null(port))
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    uint64_t gen;
    Peerdist__Reply *r;
    Peerdist__OpenContentInfoRequest oc = PEERDIST__OPEN_CONTENT_INFO_REQUEST__INIT;
    oc.content_id.data = pId;
    oc.content_id.len = cbId;
    oc.offset = offset;
    oc.length = length;
    oc.min_version = min_version;
    oc.max_version = max_version;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT_INFO;
    req.open_content_info = &oc;
    DWORD rc = pd_call_expecting(inst, &req, PEERDIST__REPLY__BODY_OPEN_CONTENT_INFO, &r, &gen);
    if (rc != ERROR_SUCCESS)
        goto out;
    rc = srvobj_open(inst, HT_CONTENTINFO, pId, cbId, r->open_content_info->handle, gen, port, key,
        phContentInfo);
out:
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG ullContentOffset,
    ULONGLONG cbContentLength, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    /* min = max = 0: the publication's own version (DESIGN.md, Versions). */
    return open_ci(hPeerDist, cbContentIdentifier, pContentIdentifier, ullContentOffset,
        cbContentLength, 0, 0, hCompletionPort, ulCompletionKey, phContentInfo);
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformationEx(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG ullContentOffset,
    ULONGLONG cbContentLength, PEERDIST_RETRIEVAL_OPTIONS *pRetrievalOptions,
    HANDLE hCompletionPort, ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    const PEERDIST_RETRIEVAL_OPTIONS *ro = pRetrievalOptions;
    if (!ro || ro->cbSize != sizeof(*ro) || ro->dwReserved != 0 ||
        ro->dwContentInfoMinVersion < PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1 ||
        ro->dwContentInfoMinVersion > ro->dwContentInfoMaxVersion ||
        ro->dwContentInfoMaxVersion > PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2)
        return ERROR_INVALID_PARAMETER;
    return open_ci(hPeerDist, cbContentIdentifier, pContentIdentifier, ullContentOffset,
        cbContentLength, ro->dwContentInfoMinVersion, ro->dwContentInfoMaxVersion, hCompletionPort,
        ulCompletionKey, phContentInfo);
}

PEERDIST_API DWORD WINAPI PeerDistServerRetrieveContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo,
    DWORD cbMaxNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || lpOverlapped->Offset || lpOverlapped->OffsetHigh || !pBuffer ||
        cbMaxNumberOfBytes == 0)
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct srvobj *o = (struct srvobj *)child_get(inst, hContentInfo, HT_CONTENTINFO);
    DWORD rc = ERROR_INVALID_HANDLE;
    if (!o)
        goto out;
    rc = child_ready(inst, &o->ch);
    if (rc != ERROR_SUCCESS)
        goto out;
    struct srvop *op = srvop_new(o, lpOverlapped, 1, false);
    if (!op) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    op->buf = pBuffer;
    op->max = cbMaxNumberOfBytes < PD_MAX_CHUNK ? cbMaxNumberOfBytes : PD_MAX_CHUNK;
    Peerdist__RetrieveContentInfoRequest rr = PEERDIST__RETRIEVE_CONTENT_INFO_REQUEST__INIT;
    rr.handle = o->ch.daemon_id;
    rr.max_bytes = op->max;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_RETRIEVE_CONTENT_INFO;
    req.retrieve_content_info = &rr;
    Peerdist__Request *preq = &req;
    rc = srv_submit(inst, o, op, &preq, 1);
out:
    if (o)
        hobj_put(&o->ch.h);
    instance_put(inst);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENTINFO_HANDLE hContentInfo)
{
    return close_child(hPeerDist, hContentInfo, HT_CONTENTINFO);
}

/*
 * Finds the pending call by (content id, OVERLAPPED) on this instance's
 * stream and content-information handles and asks the daemon to abort it.
 * The daemon answers the aborted call before the cancel, and replies are
 * delivered in order, so on ERROR_SUCCESS its completion has been delivered.
 */
PEERDIST_API DWORD WINAPI PeerDistServerCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, LPOVERLAPPED pOverlapped)
{
    if (!id_ok(cbContentIdentifier, pContentIdentifier) || !pOverlapped)
        return ERROR_INVALID_PARAMETER;
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    uint64_t gen;
    DWORD rc = pd_service_ready(inst, &gen);
    if (rc != ERROR_SUCCESS)
        goto out;
    bool found = false;
    Peerdist__CancelRequest cr = PEERDIST__CANCEL_REQUEST__INIT;
    struct child *ch;
    pthread_mutex_lock(&inst->mu);
    LIST_FOREACH (ch, &inst->children, link) {
        if (!(ch->h.type & (HT_STREAM | HT_CONTENTINFO)) || ch->generation != gen)
            continue;
        struct srvobj *o = (struct srvobj *)ch;
        if (o->id_len != cbContentIdentifier || memcmp(o->id, pContentIdentifier, o->id_len) != 0)
            continue;
        pthread_mutex_lock(&o->mu);
        struct srvop *op;
        LIST_FOREACH (op, &o->ops, link) {
            if (op->ov == pOverlapped && op->request_id != 0) {
                cr.handle = ch->daemon_id;
                cr.request_id = op->request_id;
                cr.kind = ch->h.type == HT_STREAM ? PEERDIST__HANDLE_KIND__HANDLE_KIND_STREAM
                                                  : PEERDIST__HANDLE_KIND__HANDLE_KIND_CONTENT_INFO;
                found = true;
                break;
            }
        }
        pthread_mutex_unlock(&o->mu);
        if (found)
            break;
    }
    pthread_mutex_unlock(&inst->mu);
    if (!found) {
        rc = PEERDIST_ERROR_OPERATION_NOTFOUND;
        goto out;
    }
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CANCEL;
    req.cancel = &cr;
    rc = pdconn_call_on(inst->conn, gen, &req, NULL);
out:
    instance_put(inst);
    return rc;
}
