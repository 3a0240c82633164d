/* SPDX-License-Identifier: MIT */
/*
 * api-content.c - the PeerDistClient* calls on a content handle: open and
 * close, content information, AddData, block and stream reads, cancellation
 * and GetInformationByHandle. The library lists each handle's pending
 * operations (OVERLAPPED and request id) so Cancel can name one to the daemon.
 *
 * Locking: pend_mu guards every pending record and the per-handle flags. It is
 * a leaf: on_reply takes it while conn.c may hold its own lock, so nothing
 * here calls into conn.c or win32.c with pend_mu held.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "api-internal.h"
#include "shm.h"

#define PEND_BUCKETS 64

enum op_kind { OP_ADD_CI, OP_COMPLETE, OP_ADD_DATA, OP_READ };

/*
 * One pending operation. on_reply finds it by serial (its pd_async.arg), never
 * by pointer: a record may end before every part of a split request answered
 * (the connection died), and the late parts then simply find nothing.
 */
struct pend {
    uint64_t serial;
    struct ccontent *ct; /* referenced while the record lives */
    enum op_kind kind;
    LPOVERLAPPED ov;
    uint64_t request_id; /* the (first) request's id once sent; 0 while being sent */
    unsigned parts_left; /* replies still to come */
    bool ended;          /* the last reply was seen; listed until delivered */
    PBYTE buf;           /* reads: where the data goes, at most cap bytes */
    DWORD cap;
    struct pd_shm_slot slot; /* reads through the shared region: the slot borrowed */
    TAILQ_ENTRY(pend) by_ct; /* in serial order */
    struct pend *hnext;
};

/* A content handle: struct content (the handle table's object) plus its pending work. */
struct ccontent {
    struct content c;
    TAILQ_HEAD(pend_list, pend) pending;
    bool add_ci_pending; /* one AddContentInformation at a time (Windows' rule) */
    bool completed;      /* CompleteContentInformation succeeded */
    bool closed;         /* closed or its instance shut down: no new operations */
};

static pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pend_cv = PTHREAD_COND_INITIALIZER; /* a record ended */
static struct pend *pend_hash[PEND_BUCKETS];
static uint64_t pend_next_serial;

/*
 * fork(): the records the child inherits are the parent's operations; their handles are
 * forgotten in the child (handles.c), so nothing there finds them. pend_mu must be free.
 */
static void pend_fork_prepare(void)
{
    pthread_mutex_lock(&pend_mu);
}

static void pend_fork_parent(void)
{
    pthread_mutex_unlock(&pend_mu);
}

static void pend_fork_child(void)
{
    pthread_cond_init(&pend_cv, NULL); /* the parent's waiters do not exist here */
    pthread_mutex_unlock(&pend_mu);
}

__attribute__((constructor)) static void pend_init(void)
{
    pthread_atfork(pend_fork_prepare, pend_fork_parent, pend_fork_child);
}

/* ---- pending records (pend_mu held unless said otherwise) ---- */

static struct pend *pend_find(uint64_t serial)
{
    for (struct pend *p = pend_hash[serial % PEND_BUCKETS]; p; p = p->hnext)
        if (p->serial == serial)
            return p;
    return NULL;
}

static void pend_unlink(struct pend *p)
{
    for (struct pend **pp = &pend_hash[p->serial % PEND_BUCKETS]; *pp; pp = &(*pp)->hnext) {
        if (*pp == p) {
            *pp = p->hnext;
            break;
        }
    }
    TAILQ_REMOVE(&p->ct->pending, p, by_ct);
    if (p->kind == OP_ADD_CI)
        p->ct->add_ci_pending = false;
    pthread_cond_broadcast(&pend_cv);
}

/* Frees an unlinked record (pend_mu not held: the last reference may free the handle). */
static void pend_free(struct pend *p)
{
    pd_shm_put(&p->slot); /* the daemon answered, or never will: it writes there no more */
    hobj_put(&p->ct->c.ch.h);
    free(p);
}

/*
 * Lists a new operation before it is sent (its reply may arrive before
 * pdconn_submit returns). Returns the record, or NULL with *err set.
 */
static struct pend *pend_add(struct ccontent *ct, enum op_kind kind, LPOVERLAPPED ov,
    unsigned parts, DWORD *err)
{
    struct pend *p = calloc(1, sizeof(*p));
    if (!p) {
        *err = ERROR_NOT_ENOUGH_MEMORY;
        return NULL;
    }
    pthread_mutex_lock(&pend_mu);
    *err = ERROR_SUCCESS;
    if (ct->closed)
        *err = ERROR_INVALID_HANDLE; /* CloseContent raced with this call */
    else if (kind == OP_ADD_CI && ct->add_ci_pending)
        *err = ERROR_INVALID_PARAMETER;
    if (*err != ERROR_SUCCESS) {
        pthread_mutex_unlock(&pend_mu);
        free(p);
        return NULL;
    }
    p->serial = ++pend_next_serial;
    p->ct = ct;
    p->kind = kind;
    p->ov = ov;
    p->parts_left = parts;
    if (kind == OP_ADD_CI)
        ct->add_ci_pending = true;
    TAILQ_INSERT_TAIL(&ct->pending, p, by_ct);
    p->hnext = pend_hash[p->serial % PEND_BUCKETS];
    pend_hash[p->serial % PEND_BUCKETS] = p;
    hobj_get(&ct->c.ch.h);
    pthread_mutex_unlock(&pend_mu);
    return p;
}

/* After pdconn_submit*: records the request id, or drops the record if nothing was sent. */
static void pend_sent(uint64_t serial, DWORD rc, uint64_t request_id)
{
    pthread_mutex_lock(&pend_mu);
    struct pend *p = pend_find(serial);
    if (p && rc != ERROR_SUCCESS)
        pend_unlink(p);
    else if (p)
        p->request_id = request_id;
    pthread_cond_broadcast(&pend_cv); /* a Cancel may wait for the id */
    pthread_mutex_unlock(&pend_mu);
    if (p && rc != ERROR_SUCCESS)
        pend_free(p);
}

static DWORD clamp_dword(uint64_t v)
{
    return v > 0xFFFFFFFFu ? 0xFFFFFFFFu : (DWORD)v;
}

static void set_offset(LPOVERLAPPED ov, uint64_t off)
{
    ov->Offset = (DWORD)off;
    ov->OffsetHigh = (DWORD)(off >> 32);
}

static uint64_t get_offset(const OVERLAPPED *ov)
{
    return (uint64_t)ov->OffsetHigh << 32 | ov->Offset;
}

/* A read's reply: data into the caller's buffer, or the missing range (DESIGN.md, Missing data). */
static void read_result(struct pend *p, const Peerdist__Reply *r, DWORD status, DWORD *bytes)
{
    if (!r || r->body_case != PEERDIST__REPLY__BODY_READ)
        return;
    const Peerdist__ReadReply *rr = r->read;
    if (status == ERROR_SUCCESS) {
        set_offset(p->ov, rr->offset);
        if (p->cap == 0) {
            *bytes = clamp_dword(rr->length);
        } else if (p->slot.reg && rr->data.len == 0) {
            /* In the shared region: never more than the slot, whatever the reply says. */
            size_t n = rr->shm_length < p->cap ? (size_t)rr->shm_length : p->cap;
            if (n)
                memcpy(p->buf, pd_shm_data(&p->slot), n);
            *bytes = (DWORD)n;
        } else {
            size_t n = rr->data.len < p->cap ? rr->data.len : p->cap;
            if (n)
                memcpy(p->buf, rr->data.data, n);
            *bytes = (DWORD)n;
        }
    } else if (status == PEERDIST_ERROR_MISSING_DATA || status == ERROR_TIMEOUT) {
        set_offset(p->ov, rr->offset);
        *bytes = clamp_dword(rr->length);
    }
}

/*
 * Runs once per request part, on whichever thread read its reply (reply NULL:
 * the connection went away or the instance shut down). With the last part it fills
 * what the completion carries; the record stays listed until content_on_delivered, so a
 * Cancel that waits for it returns only once the OVERLAPPED says done.
 */
static void content_on_reply(struct pd_op *op, const Peerdist__Reply *r, DWORD *status,
    DWORD *bytes)
{
    uint64_t serial = (uint64_t)(uintptr_t)pd_op_arg(op);
    pthread_mutex_lock(&pend_mu);
    struct pend *p = pend_find(serial);
    enum op_kind kind = p ? p->kind : OP_ADD_DATA;
    bool last = false;
    if (p && !p->ended) {
        /* A request sent after the daemon closed the handle: to the caller, it was aborted. */
        if (r && p->ct->closed && *status == ERROR_INVALID_HANDLE)
            *status = ERROR_OPERATION_ABORTED;
        last = --p->parts_left == 0 || !r;
        if (last) {
            p->ended = true;
            if (kind == OP_COMPLETE && r && *status == ERROR_SUCCESS)
                p->ct->completed = true;
            if (kind == OP_ADD_CI) /* the caller may add the next piece once it sees this one */
                p->ct->add_ci_pending = false;
        }
    }
    pthread_mutex_unlock(&pend_mu);
    if ((kind == OP_ADD_CI || kind == OP_ADD_DATA) && r &&
        r->body_case == PEERDIST__REPLY__BODY_COUNT)
        *bytes = clamp_dword(r->count->bytes);
    if (p && last && kind == OP_READ) {
        read_result(p, r, *status, bytes); /* p stays: only on_delivered frees it */
        /* Answered: the daemon writes that slot no more, and the next read may have it now
         * rather than after the completion is delivered (a caller reissuing at once). */
        if (r)
            pd_shm_put(&p->slot);
    }
}

/* The completion is out: the record goes, and a waiting Cancel returns. */
static void content_on_delivered(void *arg)
{
    uint64_t serial = (uint64_t)(uintptr_t)arg;
    pthread_mutex_lock(&pend_mu);
    struct pend *p = pend_find(serial);
    if (p)
        pend_unlink(p);
    pthread_mutex_unlock(&pend_mu);
    if (p)
        pend_free(p);
}

/* ---- handle lookup shared by every call ---- */

struct call {
    struct instance *inst;
    struct ccontent *ct;
};

static void call_end(struct call *cl)
{
    if (cl->ct)
        hobj_put(&cl->ct->c.ch.h);
    if (cl->inst)
        instance_put(cl->inst);
}

/*
 * The synchronous checks after the arguments: the instance and the handle
 * (ERROR_INVALID_HANDLE), the service (pd_service_ready), and a handle from an
 * earlier connection (PEERDIST_ERROR_INVALIDATED).
 */
static DWORD call_begin(PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContent,
    struct call *cl)
{
    cl->ct = NULL;
    cl->inst = instance_get(hPeerDist);
    if (!cl->inst)
        return ERROR_INVALID_HANDLE;
    cl->ct = (struct ccontent *)child_get(cl->inst, hContent, HT_CONTENT);
    if (!cl->ct)
        return ERROR_INVALID_HANDLE;
    uint64_t gen;
    DWORD rc = pd_service_ready(cl->inst, &gen);
    if (rc != ERROR_SUCCESS)
        return rc;
    if (gen != cl->ct->c.ch.generation)
        return PEERDIST_ERROR_INVALIDATED;
    return ERROR_SUCCESS;
}

/* Sends reqs[0..n) as one operation completing ov; ERROR_IO_PENDING or the synchronous error. */
static DWORD submit(struct call *cl, struct pend *p, Peerdist__Request **reqs, size_t n)
{
    uint64_t rid = 0;
    struct pd_async a = {
        .ov = p->ov,
        .port = cl->ct->c.ch.port,
        .key = cl->ct->c.ch.key,
        .on_reply = content_on_reply,
        .on_delivered = content_on_delivered,
        .arg = (void *)(uintptr_t)p->serial,
        .request_id = &rid,
    };
    uint64_t serial = p->serial; /* p may be gone once the request is out */
    uint64_t gen = cl->ct->c.ch.generation;
    DWORD rc = pdconn_submit_many(cl->inst->conn, gen, reqs, n, &a);
    pend_sent(serial, rc, rid);
    return rc == ERROR_SUCCESS ? ERROR_IO_PENDING : rc;
}

/* ---- open and close ---- */

static void content_destroy(struct hobj *h)
{
    free(h);
}

/* Shutdown: conn.c aborts what is pending; later replies must not count as live. */
static void content_on_close(struct child *ch)
{
    struct ccontent *ct = (struct ccontent *)ch;
    pthread_mutex_lock(&pend_mu);
    ct->closed = true;
    pthread_mutex_unlock(&pend_mu);
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
    struct ccontent *ct = NULL;
    Peerdist__Reply *r;
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)pContentTag->Data;
    o.tag.len = sizeof(pContentTag->Data);
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    DWORD rc = pd_call_expecting(inst, &req, PEERDIST__REPLY__BODY_OPEN_CONTENT, &r, &gen);
    if (rc != ERROR_SUCCESS)
        goto out;
    ct = calloc(1, sizeof(*ct));
    if (!ct) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    hobj_init(&ct->c.ch.h, HT_CONTENT, content_destroy);
    TAILQ_INIT(&ct->pending);
    ct->c.ch.daemon_id = r->open_content->handle;
    ct->c.ch.generation = gen;
    ct->c.ch.port = hCompletionPort;
    ct->c.ch.key = ulCompletionKey;
    ct->c.ch.on_close = content_on_close;
    ct->c.tag = *pContentTag;
    /* The daemon-side handle of a failed registration goes with the connection. */
    rc = child_register(inst, &ct->c.ch, phContentHandle);
    if (rc != ERROR_SUCCESS)
        free(ct);
out:
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    instance_put(inst);
    return rc;
}

/*
 * The daemon answers what is pending on the handle with ERROR_OPERATION_ABORTED
 * before it answers the close, so those completions are delivered when this
 * returns; a request that crosses the close is reported aborted too.
 */
PEERDIST_API DWORD WINAPI PeerDistClientCloseContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle)
{
    struct instance *inst = instance_get(hPeerDist);
    if (!inst)
        return ERROR_INVALID_HANDLE;
    struct ccontent *ct = (struct ccontent *)child_remove(inst, hContentHandle, HT_CONTENT);
    if (!ct) {
        instance_put(inst);
        return ERROR_INVALID_HANDLE;
    }
    content_on_close(&ct->c.ch);
    /* The daemon-side handle exists only on the connection it was opened on (else: not sent). */
    Peerdist__CloseContentRequest cc = PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
    cc.handle = ct->c.ch.daemon_id;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT;
    req.close_content = &cc;
    pdconn_call_on(inst->conn, ct->c.ch.generation, &req, NULL);
    hobj_put(&ct->c.ch.h);
    instance_put(inst);
    return ERROR_SUCCESS;
}

/* ---- content information and data ---- */

/*
 * AddContentInformation and AddData: the buffer goes out in PD_MAX_CHUNK
 * pieces, one request each, completing one OVERLAPPED with the bytes summed.
 */
static DWORD add_bytes(PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContent,
    enum op_kind kind, DWORD cb, const uint8_t *buf, LPOVERLAPPED ov)
{
    struct call cl;
    DWORD rc = call_begin(hPeerDist, hContent, &cl);
    size_t n = ((size_t)cb + PD_MAX_CHUNK - 1) / PD_MAX_CHUNK;
    uint64_t offset = kind == OP_ADD_DATA ? get_offset(ov) : 0;
    Peerdist__Request *reqs = NULL, **preqs = NULL;
    Peerdist__AddDataRequest *ad = NULL;
    Peerdist__AddContentInfoRequest *ac = NULL;
    if (rc != ERROR_SUCCESS)
        goto out;
    reqs = calloc(n, sizeof(*reqs));
    preqs = calloc(n, sizeof(*preqs));
    if (kind == OP_ADD_DATA)
        ad = calloc(n, sizeof(*ad));
    else
        ac = calloc(n, sizeof(*ac));
    if (!reqs || !preqs || (!ad && !ac)) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = i * PD_MAX_CHUNK;
        size_t len = cb - at < PD_MAX_CHUNK ? cb - at : PD_MAX_CHUNK;
        reqs[i] = (Peerdist__Request)PEERDIST__REQUEST__INIT;
        if (kind == OP_ADD_DATA) {
            ad[i] = (Peerdist__AddDataRequest)PEERDIST__ADD_DATA_REQUEST__INIT;
            ad[i].handle = cl.ct->c.ch.daemon_id;
            ad[i].offset = offset + at;
            ad[i].data.data = (uint8_t *)buf + at;
            ad[i].data.len = len;
            reqs[i].body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
            reqs[i].add_data = &ad[i];
        } else {
            ac[i] = (Peerdist__AddContentInfoRequest)PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
            ac[i].handle = cl.ct->c.ch.daemon_id;
            ac[i].data.data = (uint8_t *)buf + at;
            ac[i].data.len = len;
            reqs[i].body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
            reqs[i].add_content_info = &ac[i];
        }
        preqs[i] = &reqs[i];
    }
    struct pend *p = pend_add(cl.ct, kind, ov, (unsigned)n, &rc);
    if (p)
        rc = submit(&cl, p, preqs, n);
out:
    free(reqs);
    free(preqs);
    free(ad);
    free(ac);
    call_end(&cl);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistClientAddContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || !pBuffer || cbNumberOfBytes == 0 || lpOverlapped->Offset ||
        lpOverlapped->OffsetHigh)
        return ERROR_INVALID_PARAMETER;
    return add_bytes(hPeerDist, hContentHandle, OP_ADD_CI, cbNumberOfBytes, pBuffer, lpOverlapped);
}

PEERDIST_API DWORD WINAPI PeerDistClientAddData(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || !pBuffer || cbNumberOfBytes == 0)
        return ERROR_INVALID_PARAMETER;
    return add_bytes(hPeerDist, hContentHandle, OP_ADD_DATA, cbNumberOfBytes, pBuffer,
        lpOverlapped);
}

PEERDIST_API DWORD WINAPI PeerDistClientCompleteContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContentHandle,
    LPOVERLAPPED lpOverlapped)
{
    if (!lpOverlapped || lpOverlapped->Offset || lpOverlapped->OffsetHigh)
        return ERROR_INVALID_PARAMETER;
    struct call cl;
    DWORD rc = call_begin(hPeerDist, hContentHandle, &cl);
    if (rc == ERROR_SUCCESS) {
        Peerdist__CompleteContentInfoRequest cc = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
        cc.handle = cl.ct->c.ch.daemon_id;
        Peerdist__Request req = PEERDIST__REQUEST__INIT, *preq = &req;
        req.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
        req.complete_content_info = &cc;
        struct pend *p = pend_add(cl.ct, OP_COMPLETE, lpOverlapped, 1, &rc);
        if (p)
            rc = submit(&cl, p, &preq, 1);
    }
    call_end(&cl);
    return rc;
}

/* ---- reads ---- */

static DWORD content_read(PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContent,
    bool stream, DWORD cbMax, PBYTE buf, DWORD timeout_ms, LPOVERLAPPED ov)
{
    if (!ov || (cbMax && !buf))
        return ERROR_INVALID_PARAMETER;
    struct call cl;
    DWORD rc = call_begin(hPeerDist, hContent, &cl);
    if (rc == ERROR_SUCCESS) {
        Peerdist__ReadRequest rd = PEERDIST__READ_REQUEST__INIT;
        rd.handle = cl.ct->c.ch.daemon_id;
        rd.stream = stream;
        rd.offset = stream ? 0 : get_offset(ov);
        /* A read completes with what is available, so one reply's worth is enough. */
        rd.max_bytes = cbMax < PD_MAX_CHUNK ? cbMax : PD_MAX_CHUNK;
        rd.timeout_ms = timeout_ms;
        Peerdist__Request req = PEERDIST__REQUEST__INIT, *preq = &req;
        req.body_case = PEERDIST__REQUEST__BODY_READ;
        req.read = &rd;
        /* A large read asks for its bytes in the shared region: two copies per byte, not five. */
        struct pd_shm_slot slot;
        uint64_t at;
        if (pd_shm_get(&cl.inst->shm, cl.inst->conn, cl.ct->c.ch.generation, rd.max_bytes, &slot,
                &at)) {
            rd.shm = true;
            rd.shm_offset = at;
        }
        struct pend *p = pend_add(cl.ct, OP_READ, ov, 1, &rc);
        if (p) {
            p->buf = buf;
            p->cap = rd.max_bytes;
            p->slot = slot;
            rc = submit(&cl, p, &preq, 1);
        } else {
            pd_shm_put(&slot);
        }
    }
    call_end(&cl);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistClientBlockRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped)
{
    return content_read(hPeerDist, hContentHandle, false, cbMaxNumberOfBytes, pBuffer,
        dwTimeoutInMilliseconds, lpOverlapped);
}

PEERDIST_API DWORD WINAPI PeerDistClientStreamRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped)
{
    return content_read(hPeerDist, hContentHandle, true, cbMaxNumberOfBytes, pBuffer,
        dwTimeoutInMilliseconds, lpOverlapped);
}

/* ---- cancellation ---- */

/*
 * Waits (bounded) until the record `serial` has ended, or with serial 0 until
 * every record of ct up to `upto` has: the parts of a split request after the
 * cancelled one are still answered, and the completion follows the last.
 */
static void wait_ended(struct ccontent *ct, uint64_t serial, uint64_t upto)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += PD_CALL_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&pend_mu);
    for (;;) {
        bool pending;
        if (serial) {
            pending = pend_find(serial) != NULL;
        } else {
            struct pend *first = TAILQ_FIRST(&ct->pending);
            pending = first && first->serial <= upto;
        }
        if (!pending || pthread_cond_timedwait(&pend_cv, &pend_mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&pend_mu);
}

/*
 * Finds what to cancel: the record of ov on ct (its serial and request id), or
 * with ov NULL the newest record (to wait for everything up to it). Returns
 * PEERDIST_ERROR_OPERATION_NOTFOUND when ov is not pending on ct. A record
 * still being sent by another thread has no request id yet: wait for it.
 */
static DWORD cancel_target(struct ccontent *ct, LPOVERLAPPED ov, uint64_t *serial,
    uint64_t *request_id)
{
    *serial = *request_id = 0;
    pthread_mutex_lock(&pend_mu);
    if (!ov) {
        struct pend *last = TAILQ_LAST(&ct->pending, pend_list);
        *serial = last ? last->serial : 0;
        pthread_mutex_unlock(&pend_mu);
        return ERROR_SUCCESS;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += PD_CALL_TIMEOUT_MS / 1000;
    DWORD rc = PEERDIST_ERROR_OPERATION_NOTFOUND;
    for (;;) {
        struct pend *p, *sending = NULL;
        TAILQ_FOREACH (p, &ct->pending, by_ct) {
            if (p->ov != ov)
                continue;
            if (!p->request_id) {
                sending = p;
                continue;
            }
            *serial = p->serial;
            *request_id = p->request_id;
            rc = ERROR_SUCCESS;
            break;
        }
        if (rc == ERROR_SUCCESS || !sending || pthread_cond_timedwait(&pend_cv, &pend_mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&pend_mu);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistClientCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, LPOVERLAPPED pOverlapped)
{
    struct call cl;
    DWORD rc = call_begin(hPeerDist, hContentHandle, &cl);
    uint64_t serial, request_id;
    if (rc == ERROR_SUCCESS)
        rc = cancel_target(cl.ct, pOverlapped, &serial, &request_id);
    if (rc != ERROR_SUCCESS)
        goto out;
    Peerdist__CancelRequest cr = PEERDIST__CANCEL_REQUEST__INIT;
    cr.handle = cl.ct->c.ch.daemon_id;
    cr.request_id = request_id; /* 0: everything pending on the handle */
    cr.kind = PEERDIST__HANDLE_KIND__HANDLE_KIND_CONTENT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CANCEL;
    req.cancel = &cr;
    /* The aborted replies come before the cancel's own, so their completions are delivered. */
    rc = pdconn_call_on(cl.inst->conn, cl.ct->c.ch.generation, &req, NULL);
    if (rc == ERROR_SUCCESS && (pOverlapped || serial))
        wait_ended(cl.ct, pOverlapped ? serial : 0, serial);
out:
    call_end(&cl);
    return rc;
}

/* ---- information ---- */

/*
 * fFlashCrowd comes from the daemon (distributed mode: peers probing for the content); a
 * daemon without the request (120) has no peers, so never a flash crowd.
 */
static DWORD handle_info(struct call *cl, LPVOID out)
{
    Peerdist__ContentHandleInfoRequest ir = PEERDIST__CONTENT_HANDLE_INFO_REQUEST__INIT;
    ir.handle = cl->ct->c.ch.daemon_id;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CONTENT_HANDLE_INFO;
    req.content_handle_info = &ir;
    Peerdist__Reply *r = NULL;
    DWORD rc = pdconn_call_on(cl->inst->conn, cl->ct->c.ch.generation, &req, &r);
    PEERDIST_CLIENT_BASIC_INFO info = {.fFlashCrowd = FALSE};
    if (rc == ERROR_CALL_NOT_IMPLEMENTED)
        rc = ERROR_SUCCESS;
    else if (rc == ERROR_SUCCESS && r && r->body_case == PEERDIST__REPLY__BODY_CONTENT_HANDLE_INFO)
        info.fFlashCrowd = r->content_handle_info->flash_crowd ? TRUE : FALSE;
    else if (rc == ERROR_SUCCESS)
        rc = ERROR_INTERNAL_ERROR; /* a reply without its body */
    if (rc == ERROR_SUCCESS)
        memcpy(out, &info, sizeof(info));
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    return rc;
}

PEERDIST_API DWORD WINAPI PeerDistClientGetInformationByHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle,
    PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS PeerDistClientInfoClass, DWORD dwBufferSize,
    LPVOID lpInformation)
{
    if (PeerDistClientInfoClass != PeerDistClientBasicInfo || !lpInformation)
        return ERROR_INVALID_PARAMETER;
    struct call cl;
    DWORD rc = call_begin(hPeerDist, hContentHandle, &cl);
    if (rc == ERROR_SUCCESS && dwBufferSize < sizeof(PEERDIST_CLIENT_BASIC_INFO))
        rc = ERROR_INSUFFICIENT_BUFFER;
    if (rc == ERROR_SUCCESS) {
        pthread_mutex_lock(&pend_mu);
        bool completed = cl.ct->completed;
        pthread_mutex_unlock(&pend_mu);
        if (!completed)
            rc = PEERDIST_ERROR_NOT_INITIALIZED;
        else
            rc = handle_info(&cl, lpInformation);
    }
    call_end(&cl);
    return rc;
}
