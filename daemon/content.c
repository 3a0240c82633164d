/* SPDX-License-Identifier: MIT */
/*
 * content.c - PeerDistClient* in the daemon: content handles (scoped to their connection),
 * cancellation, the caller's tags, and the routing of the module's requests to its parts:
 * content information and trust (content-info.c), AddData intake and verification
 * (content-add.c), the write/sync/commit pipeline (content-commit.c), reads (content-read.c).
 */
#include "content.h"

#include <stdlib.h>
#include <string.h>

#include "content-internal.h"
#include "evict.h"
#include "log.h"
#include "peer-fetch.h"

/* ---- daemon-wide ---- */

static void content_conn_closed(struct conn *c);

int content_init(struct daemon *d)
{
    struct content_daemon *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return -1;
    cd->d = d;
    cd->sync_tail = &cd->sync_head;
    cd->batches_tail = &cd->batches;
    cd->commit_wait_tail = &cd->commit_wait;
    cd->gate_waiter.fn = content_gate_opened;
    LIST_INIT(&cd->complete_wait);
    d->content = cd;
    return server_on_close(d, content_conn_closed);
}

void content_free(struct daemon *d)
{
    free(d->content);
    d->content = NULL;
}

/* ---- handles ---- */

static struct content_conn *conn_state(struct conn *c)
{
    if (!c->content) {
        struct content_conn *cc = calloc(1, sizeof(*cc));
        if (!cc)
            return NULL;
        LIST_INIT(&cc->handles);
        c->content = cc;
    }
    return c->content;
}

/* Answers every pending op of h (or just request_id) with ERROR_OPERATION_ABORTED. */
static unsigned abort_ops(struct content_handle *h, uint64_t request_id)
{
    unsigned n = 0;
    struct op *op;
    LIST_FOREACH (op, &h->ops, link) {
        if (op->done || atomic_load(&op->aborted) || (request_id && op->request_id != request_id))
            continue; /* op->done: a fetch's store, no request of the client's */
        atomic_store(&op->aborted, true);
        conn_reply_status(op->c, op->request_id, ERROR_OPERATION_ABORTED);
        n++;
    }
    return n;
}

static void handle_close(struct conn *c, struct content_handle *h)
{
    struct content_conn *cc = c->content;
    abort_ops(h, 0);
    h->closed = true;
    peer_fetch_handle_closed(c, h); /* its fetches stop; reads waiting on them end */
    LIST_REMOVE(h, link);
    cc->nhandles--;
    h->closed = true;
    content_held_free_all(h); /* lost, never served wrong (DESIGN.md, What a completion promises) */
    content_memory_give(c, h->held_bytes + h->ci_bytes);
    h->held_bytes = h->ci_bytes = 0;
    content_handle_unref(h);
}

static void handle_open_content(struct conn *c, uint64_t id, const Peerdist__OpenContentRequest *o)
{
    if (c->d->cfg.mode == MODE_DISABLED) {
        conn_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
        return;
    }
    if (o->tag.len != STORE_TAG_SIZE) {
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    struct content_conn *cc = conn_state(c);
    if (!cc) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    if (cc->nhandles >= CONN_MAX_CONTENT_HANDLES) {
        log_warn(CONN_FMT ": more than %d content handles open", CONN_ARGS(c),
            CONN_MAX_CONTENT_HANDLES);
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    struct content_handle *h = calloc(1, sizeof(*h));
    if (!h) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    h->id = ++cc->next_handle;
    h->refs = 1;
    LIST_INIT(&h->ops);
    memcpy(h->tag, o->tag.data, STORE_TAG_SIZE);
    LIST_INSERT_HEAD(&cc->handles, h, link);
    cc->nhandles++;
    Peerdist__OpenContentReply oc = PEERDIST__OPEN_CONTENT_REPLY__INIT;
    oc.handle = h->id;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_OPEN_CONTENT;
    r.open_content = &oc;
    conn_send(c, &r);
}

static void handle_close_content(struct conn *c, uint64_t id,
    const Peerdist__CloseContentRequest *o)
{
    struct content_handle *h = content_find_handle(c, o->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    handle_close(c, h);
    conn_reply_status(c, id, ERROR_SUCCESS);
}

/* PeerDistClientGetInformationByHandle: fFlashCrowd (false outside distributed mode). */
static void handle_info(struct conn *c, uint64_t id, const Peerdist__ContentHandleInfoRequest *rq)
{
    struct content_handle *h = content_find_handle(c, rq->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    Peerdist__ContentHandleInfoReply ir = PEERDIST__CONTENT_HANDLE_INFO_REPLY__INIT;
    ir.flash_crowd = peer_fetch_flash_crowd(c, h);
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_CONTENT_HANDLE_INFO;
    r.content_handle_info = &ir;
    conn_send(c, &r);
}

/* ---- cancel, tags ---- */

static void handle_cancel(struct conn *c, uint64_t id, const Peerdist__CancelRequest *rq)
{
    struct content_handle *h = content_find_handle(c, rq->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    unsigned n = abort_ops(h, rq->request_id);
    conn_reply_status(c, id, n ? ERROR_SUCCESS : PEERDIST_ERROR_OPERATION_NOTFOUND);
}

struct tags_ctx {
    Peerdist__TagInfo *infos;
    Peerdist__TagInfo **ptrs;
    uint8_t (*tags)[STORE_TAG_SIZE];
    size_t n, cap;
    bool oom;
};

static void tag_row(void *arg, const struct store_tag_info *ti)
{
    struct tags_ctx *t = arg;
    if (t->oom)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        Peerdist__TagInfo *ni = realloc(t->infos, cap * sizeof(*ni));
        if (ni)
            t->infos = ni;
        uint8_t(*nt)[STORE_TAG_SIZE] = realloc(t->tags, cap * sizeof(*nt));
        if (nt)
            t->tags = nt;
        if (!ni || !nt) {
            t->oom = true;
            return;
        }
        t->cap = cap;
    }
    memcpy(t->tags[t->n], ti->tag, STORE_TAG_SIZE);
    Peerdist__TagInfo info = PEERDIST__TAG_INFO__INIT;
    info.blocks = ti->blocks;
    info.bytes = ti->bytes;
    info.uid = ti->uid;
    info.segments = ti->segments;
    info.added_at = ti->added_at > 0 ? (uint64_t)ti->added_at : 0;
    info.last_used = ti->last_used > 0 ? (uint64_t)ti->last_used : 0;
    t->infos[t->n++] = info;
}

/* The Tags reply from the database. */
static void tags_reply(struct conn *c, uint64_t id, bool all)
{
    struct tags_ctx t = {0};
    DWORD status = ERROR_SUCCESS;
    if (store_tags_info(c->d->store, all, c->uid, tag_row, &t) != 0)
        status = ERROR_INTERNAL_ERROR;
    else if (t.oom || (t.n && !(t.ptrs = calloc(t.n, sizeof(*t.ptrs)))))
        status = ERROR_NOT_ENOUGH_MEMORY;
    if (status != ERROR_SUCCESS) {
        conn_reply_status(c, id, status);
    } else {
        for (size_t i = 0; i < t.n; i++) {
            t.infos[i].tag.data = t.tags[i];
            t.infos[i].tag.len = STORE_TAG_SIZE;
            t.ptrs[i] = &t.infos[i];
        }
        Peerdist__TagsReply tr = PEERDIST__TAGS_REPLY__INIT;
        tr.n_tags = t.n;
        tr.tags = t.ptrs;
        Peerdist__Reply r = PEERDIST__REPLY__INIT;
        r.id = id;
        r.body_case = PEERDIST__REPLY__BODY_TAGS;
        r.tags = &tr;
        conn_send(c, &r);
    }
    free(t.infos);
    free(t.tags);
    free(t.ptrs);
}

/* A Tags request waiting for the reads noted in memory to reach the database. */
struct tags_wait {
    struct evict_waiter w; /* first: the waiter is the struct */
    struct conn *c;
    uint64_t id;
    bool all;
};

static void tags_waited(struct evict_waiter *w)
{
    struct tags_wait *tw = (struct tags_wait *)w;
    tags_reply(tw->c, tw->id, tw->all); /* a connection closed meanwhile gets nothing */
    conn_unref(tw->c);
    free(tw);
}

/*
 * The caller's tags, or every uid's (TagsRequest.all: admins only). last_used is the newest
 * use of a segment the tag labels: reads noted in memory since the last eviction pass are
 * written by a pass first, so the reply waits for it when there are some.
 */
static void handle_tags(struct conn *c, uint64_t id, const Peerdist__TagsRequest *rq)
{
    bool all = rq && rq->all;
    if (all && !c->admin) {
        log_warn(CONN_FMT ": Tags of every uid refused: only root and group %s may list them",
            CONN_ARGS(c), SERVER_ADMIN_GROUP);
        conn_reply_status(c, id, ERROR_ACCESS_DENIED);
        return;
    }
    struct tags_wait *tw = calloc(1, sizeof(*tw));
    if (!tw) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    tw->w.fn = tags_waited;
    tw->c = c;
    tw->id = id;
    tw->all = all;
    if (!c->d->stopping && evict_after_recency(c->d, &tw->w)) {
        c->refs++;
        flush_evict_kick(c->d);
        return;
    }
    free(tw);
    tags_reply(c, id, all);
}

bool content_dispatch(struct conn *c, const Peerdist__Request *req)
{
    switch (req->body_case) {
    case PEERDIST__REQUEST__BODY_OPEN_CONTENT:
        handle_open_content(c, req->id, req->open_content);
        return true;
    case PEERDIST__REQUEST__BODY_CLOSE_CONTENT:
        handle_close_content(c, req->id, req->close_content);
        return true;
    case PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO:
        content_add_info(c, req->id, req->add_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO:
        content_complete_info(c, req->id, req->complete_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_ADD_DATA: content_add_data(c, req->id, req->add_data); return true;
    case PEERDIST__REQUEST__BODY_READ: content_read(c, req->id, req->read); return true;
    case PEERDIST__REQUEST__BODY_CANCEL:
        if (req->cancel->kind != PEERDIST__HANDLE_KIND__HANDLE_KIND_CONTENT)
            return false; /* publication streams and content-information handles: publish.c */
        handle_cancel(c, req->id, req->cancel);
        return true;
    case PEERDIST__REQUEST__BODY_TAGS: handle_tags(c, req->id, req->tags); return true;
    case PEERDIST__REQUEST__BODY_CONTENT_HANDLE_INFO:
        handle_info(c, req->id, req->content_handle_info);
        return true;
    default: return false;
    }
}

/* Close hook: the connection's content handles close, their pending ops are aborted. */
static void content_conn_closed(struct conn *c)
{
    struct content_conn *cc = c->content;
    if (!cc)
        return;
    /* Pending ops hold their handle and the connection: their done frees what is left. */
    while (!LIST_EMPTY(&cc->handles))
        handle_close(c, LIST_FIRST(&cc->handles));
    free(cc);
    c->content = NULL;
}
