/*
 * content.c - content handles in the daemon. Today: open and close (a handle
 * and its tag, scoped to the connection). Content information, AddData,
 * reads and cancellation land here next.
 */
#include "content.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <peerdist.h>

#include "log.h"


struct content_handle {
    uint64_t id;
    uint8_t tag[STORE_TAG_SIZE];
    LIST_ENTRY(content_handle) link;
};

struct content_conn {
    uint64_t next_handle;
    unsigned nhandles;
    LIST_HEAD(, content_handle) handles;
};

int content_init(struct daemon *d)
{
    return 0;
}

void content_free(struct daemon *d)
{
}

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

static void handle_open_content(struct conn *c, uint64_t id, const Peerdist__OpenContentRequest *o)
{
    if (c->d->cfg.mode == MODE_DISABLED)
        return dispatch_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
    if (o->tag.len != STORE_TAG_SIZE)
        return dispatch_reply_status(c, id, ERROR_INVALID_PARAMETER);
    struct content_conn *cc = conn_state(c);
    if (!cc)
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    if (cc->nhandles >= CONN_MAX_CONTENT_HANDLES) {
        log_warn("connection %llu (uid %u pid %d): more than %d content handles open",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid,
            CONN_MAX_CONTENT_HANDLES);
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    }
    struct content_handle *h = calloc(1, sizeof(*h));
    if (!h)
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    h->id = ++cc->next_handle;
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

static void handle_close_content(struct conn *c, uint64_t id, const Peerdist__CloseContentRequest *o)
{
    struct content_conn *cc = c->content;
    struct content_handle *h;
    if (cc) {
        LIST_FOREACH(h, &cc->handles, link) {
            if (h->id == o->handle) {
                LIST_REMOVE(h, link);
                cc->nhandles--;
                free(h);
                return dispatch_reply_status(c, id, ERROR_SUCCESS);
            }
        }
    }
    dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
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
    default:
        return false;
    }
}

void content_conn_closed(struct conn *c)
{
    struct content_conn *cc = c->content;
    if (!cc)
        return;
    while (!LIST_EMPTY(&cc->handles)) {
        struct content_handle *h = LIST_FIRST(&cc->handles);
        LIST_REMOVE(h, link);
        free(h);
    }
    free(cc);
    c->content = NULL;
}
