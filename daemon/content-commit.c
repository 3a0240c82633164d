/* SPDX-License-Identifier: MIT */
/*
 * content-commit.c - the second half of AddData: an op's bytes are written (content-add.c);
 * a group sync fdatasyncs every file the waiting ops wrote, once per file, on a worker; then
 * the verified blocks' rows and the caller's labels commit in one transaction, and the op
 * replies. Bytes are synced before the commit that makes them readable (DESIGN.md, Store).
 * While the flush write gate is closed, commits wait for it (flush.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockstore.h"
#include "budget.h"
#include "content-internal.h"
#include "evict.h"
#include "log.h"
#include "winerr.h"
#include "worker.h"

static void group_sync_kick(struct content_daemon *cd);

static void unit_free_all(struct op *op)
{
    for (size_t i = 0; i < op->nunits; i++)
        free(op->units[i].own);
    free(op->units);
}

void content_op_free(struct op *op)
{
    if (op->charged)
        budget_give(op->c, op->charged);
    unit_free_all(op);
    free(op->data);
    free(op);
}

/* A failed write or sync of a file fails every block of the op written to it. */
void content_mark_file_errors(struct op *op)
{
    for (size_t i = 0; i < op->nunits; i++) {
        struct unit *u = &op->units[i];
        if (u->err && u->result == UNIT_OK)
            for (size_t k = 0; k < op->nunits; k++)
                if (op->units[k].seg == u->seg && op->units[k].owner == u->owner &&
                    op->units[k].result == UNIT_OK) {
                    op->units[k].result = UNIT_IO;
                    op->units[k].err = u->err;
                }
    }
}

/* Loop: rows and labels for the verified blocks in one transaction, then the reply. */
static DWORD op_commit(struct op *op, bool *bad, bool *committed)
{
    struct content_handle *h = op->h;
    struct conn *c = op->c;
    const struct ci_info *ci = h->ci;
    struct store *st = c->d->store;
    DWORD status = ERROR_SUCCESS;
    int io_err = 0;
    int64_t now = evict_now(c->d);
    uint64_t added = 0;
    size_t used_seg = SIZE_MAX; /* the segment whose recency was written last */
    store_set_now(st, now);     /* the labels' added_at */
    if (store_begin(st) != 0)
        return winerr_from_sqlite(store_errcode(st));
    for (size_t i = 0; i < op->nunits; i++) {
        struct unit *u = &op->units[i];
        if (u->result == UNIT_BAD_HASH) {
            *bad = true;
            continue;
        }
        if (u->result == UNIT_IO) {
            io_err = u->err;
            continue;
        }
        const struct ci_segment *seg = &ci->segments[u->seg];
        if (store_block_put(st, seg->id, ci->digest_len, u->block, u->owner,
                content_listed_hash(ci, seg, u->block), ci->digest_len, u->len, u->owner) != 0 ||
            store_label_put(st, c->uid, h->tag, seg->id, ci->digest_len, u->block, u->len) != 0 ||
            (u->seg != used_seg && store_segment_used(st, seg->id, ci->digest_len, now) != 0)) {
            status = winerr_from_sqlite(store_errcode(st));
            store_rollback(st);
            return status;
        }
        used_seg = u->seg;
        added += u->len;
    }
    if (store_commit(st) != 0) {
        status = winerr_from_sqlite(store_errcode(st));
        store_rollback(st);
        return status;
    }
    c->d->blocks_gen++;
    *committed = true;
    if (added && evict_note_added(c->d, added))
        flush_evict_kick(c->d); /* over the limit: an eviction pass */
    if (io_err) {
        log_error(CONN_FMT ": writing block bytes: %s", CONN_ARGS(c), strerror(io_err));
        status = winerr_from_write_errno(io_err);
    }
    return status;
}

/* Loop: commit (unless aborted), reply, release. */
/*
 * Bytes written without a row (a failed write or sync, a failed or skipped commit) take disk
 * space nothing will read: they go to reclaim, which re-checks under the block store's lock
 * that no row and no pending write uses the slot. On a full disk this is what gives the space
 * back. Called after the op's own pins are gone.
 */
static void reclaim_uncommitted(struct op *op, bool committed)
{
    const struct ci_info *ci = op->h->ci;
    struct store_reclaim *items = NULL;
    size_t n = 0;
    for (size_t i = 0; i < op->nunits; i++) {
        const struct unit *u = &op->units[i];
        if (u->result == UNIT_BAD_HASH || (committed && u->result == UNIT_OK))
            continue;
        if (!items && !(items = calloc(op->nunits, sizeof(*items))))
            return; /* the space comes back at the next start-up (reconciliation) */
        struct store_reclaim *r = &items[n++];
        memcpy(r->segment_id, ci->segments[u->seg].id, ci->digest_len);
        r->segment_id_len = (uint8_t)ci->digest_len;
        r->file_owner = u->owner;
        r->block = u->block;
    }
    if (n)
        bs_reclaim(op->c->d->bs, items, n); /* takes items */
}

static void op_finish(struct op *op)
{
    struct content_handle *h = op->h;
    struct conn *c = op->c;
    bool committed = false;
    LIST_REMOVE(op, link);
    if (!atomic_load(&op->aborted) && !h->closed) {
        bool bad = false;
        DWORD status = op_commit(op, &bad, &committed);
        if (status == ERROR_SUCCESS && bad) {
            status = ERROR_INVALID_DATA;
            log_warn(CONN_FMT ": AddData at offset %llu: bytes do not match their hash; the "
                              "failing blocks were not stored",
                CONN_ARGS(c), (unsigned long long)op->offset);
        }
        if (op->done)
            op->done(op->done_arg, status);
        else if (status == ERROR_SUCCESS)
            conn_reply_count(c, op->request_id, op->len);
        else
            conn_reply_status(c, op->request_id, status);
    } else if (op->done) {
        op->done(op->done_arg, ERROR_OPERATION_ABORTED);
    }
    const struct ci_info *ci = h->ci;
    for (size_t i = 0; i < op->nunits; i++)
        bs_unpin(c->d->bs, ci->segments[op->units[i].seg].id, ci->digest_len, op->units[i].owner,
            op->units[i].block);
    reclaim_uncommitted(op, committed);
    content_op_free(op);
    content_handle_unref(h);
    conn_unref(c);
}

/* Worker: fdatasync each file the batch's ops wrote, once; a failure fails its blocks. */
static void group_sync_work(void *arg)
{
    struct op *batch = arg;
    struct content_daemon *cd = batch->cd;
    for (struct op *op = batch; op; op = op->sync_next) {
        if (atomic_load(&op->aborted))
            continue;
        const struct ci_info *ci = op->h->ci;
        for (size_t i = 0; i < op->nunits; i++) {
            struct unit *u = &op->units[i];
            if (u->result != UNIT_OK || u->synced)
                continue;
            const uint8_t *seg = ci->segments[u->seg].id;
            int fd = bs_open_write(cd->d->bs, seg, ci->digest_len, u->owner);
            int err = fd < 0 ? (errno ? errno : EIO) : fdatasync(fd) != 0 ? errno : 0;
            if (fd >= 0)
                close(fd);
            /* Every unit of the batch in the same file is covered by this one sync. */
            for (struct op *o2 = op; o2; o2 = o2->sync_next) {
                const struct ci_info *ci2 = o2->h->ci;
                for (size_t k = 0; k < o2->nunits; k++) {
                    struct unit *v = &o2->units[k];
                    if (v->result == UNIT_OK && !v->synced && v->owner == u->owner &&
                        ci2->digest_len == ci->digest_len &&
                        memcmp(ci2->segments[v->seg].id, seg, ci->digest_len) == 0) {
                        v->synced = true;
                        v->err = err;
                    }
                }
            }
        }
        content_mark_file_errors(op);
    }
}

static void group_sync_done(void *arg)
{
    struct op *batch = arg;
    struct content_daemon *cd = batch->cd;
    cd->syncing = false;
    if (!flush_gate_open(cd->d)) { /* commit once the flush batch has: content_gate_opened */
        *cd->commit_wait_tail = batch;
        while (*cd->commit_wait_tail)
            cd->commit_wait_tail = &(*cd->commit_wait_tail)->sync_next;
        flush_gate_wait(cd->d, &cd->gate_waiter);
        group_sync_kick(cd);
        return;
    }
    while (batch) {
        struct op *op = batch;
        batch = op->sync_next;
        op_finish(op);
    }
    group_sync_kick(cd);
}

static void group_sync_kick(struct content_daemon *cd)
{
    if (cd->syncing || !cd->sync_head)
        return;
    struct op *batch = cd->sync_head;
    cd->sync_head = NULL;
    cd->sync_tail = &cd->sync_head;
    cd->syncing = true;
    /* Stopping (the pool no longer runs new jobs) or out of memory: sync right here. */
    if (cd->d->stopping ||
        worker_submit(cd->d->workers, group_sync_work, group_sync_done, batch) != 0) {
        group_sync_work(batch);
        group_sync_done(batch);
    }
}

/* Loop: the op's bytes are written; it waits for the next group sync (or ends now). */
void content_op_written(void *arg)
{
    struct op *op = arg;
    struct content_daemon *cd = op->cd;
    if (atomic_load(&op->aborted) || op->h->closed) {
        op_finish(op);
        return;
    }
    op->sync_next = NULL;
    *cd->sync_tail = op;
    cd->sync_tail = &op->sync_next;
    group_sync_kick(cd);
}

void content_gate_opened(struct flush_waiter *w)
{
    struct content_daemon *cd = (struct content_daemon *)((char *)w -
        offsetof(struct content_daemon, gate_waiter));
    struct op *batch = cd->commit_wait;
    cd->commit_wait = NULL;
    cd->commit_wait_tail = &cd->commit_wait;
    while (batch) {
        struct op *op = batch;
        batch = op->sync_next;
        op_finish(op);
    }
    content_info_resume(cd);
}
