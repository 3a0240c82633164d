/* SPDX-License-Identifier: MIT */
/*
 * content-commit.c - the second half of AddData: an op's bytes are written (content-add.c);
 * a group sync fdatasyncs every file the waiting ops wrote, once per file, on a worker; then
 * the verified blocks' rows and the callers' labels of every op that sync covered commit in
 * one transaction, and the ops reply. Bytes are synced before the commit that makes them
 * readable (DESIGN.md, Store).
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

/* Group syncs at once: one per syncer thread. */
#define SYNCS_IN_FLIGHT SYNCER_THREADS

static void group_sync_kick(struct content_daemon *cd);
static bool group_sync_submit(struct content_daemon *cd);

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

/*
 * Loop, inside a transaction: the rows and labels of op's verified blocks. -1 on a database
 * error (the caller rolls back). *bad: some block failed its hash; *io_err: the errno of a
 * failed write or sync; *added: bytes given rows.
 */
static int op_rows(struct op *op, int64_t now, bool *bad, int *io_err, uint64_t *added)
{
    struct content_handle *h = op->h;
    const struct ci_info *ci = h->ci;
    struct store *st = op->c->d->store;
    size_t used_seg = SIZE_MAX; /* the segment whose recency was written last */
    for (size_t i = 0; i < op->nunits; i++) {
        struct unit *u = &op->units[i];
        if (u->result == UNIT_BAD_HASH) {
            *bad = true;
            continue;
        }
        if (u->result == UNIT_IO) {
            *io_err = u->err;
            continue;
        }
        const struct ci_segment *seg = &ci->segments[u->seg];
        if (store_block_put(st, seg->id, ci->digest_len, u->block, u->owner,
                content_listed_hash(ci, seg, u->block), ci->digest_len, u->len, u->owner) != 0 ||
            store_label_put(st, op->c->uid, h->tag, seg->id, ci->digest_len, u->block, u->len) !=
                0 ||
            (u->seg != used_seg && store_segment_used(st, seg->id, ci->digest_len, now) != 0))
            return -1;
        used_seg = u->seg;
        *added += u->len;
    }
    return 0;
}

/*
 * Loop: the ops' rows are in the index (one commit): slot maps and eviction learn of them.
 * A handle's map takes the new rows only when every op of the commit is that handle's (a
 * fetch's blocks, one caller's AddData): it then holds all of them. Otherwise every map just
 * sees the index changed, and loads a segment again when it meets a block it lacks.
 */
static void ops_committed(struct daemon *d, struct op *const *ops, size_t n, uint64_t added,
    bool replaced)
{
    uint64_t gen_before = d->blocks_gen++;
    if (!replaced) { /* replaced: rows of another hash went, every map reloads */
        d->blocks_added++;
        bool one_handle = true;
        for (size_t i = 1; i < n && one_handle; i++)
            one_handle = ops[i]->h == ops[0]->h;
        for (size_t i = 0; i < n && one_handle; i++)
            content_slots_added(d, ops[i], gen_before);
    }
    if (added && evict_note_added(d, added))
        flush_evict_kick(d); /* over the limit: an eviction pass */
}

/* The status an op whose rows committed answers with. */
static DWORD op_status(struct op *op, bool bad, int io_err)
{
    struct conn *c = op->c;
    if (io_err) {
        log_error(CONN_FMT ": writing block bytes: %s", CONN_ARGS(c), strerror(io_err));
        return winerr_from_write_errno(io_err);
    }
    if (bad) {
        log_warn(CONN_FMT ": AddData at offset %llu: bytes do not match their hash; the "
                          "failing blocks were not stored",
            CONN_ARGS(c), (unsigned long long)op->offset);
        return ERROR_INVALID_DATA;
    }
    return ERROR_SUCCESS;
}

/*
 * Ops committed together, at most: one transaction for the rows of every op one group sync
 * covered (instead of one each: a fetched 64 KiB block, or a small AddData, paid a commit of
 * its own). No op answers before the commit that holds its rows.
 */
#define COMMIT_BATCH_MAX 256

/*
 * Loop: the rows and labels of the ops with include[i] (n <= COMMIT_BATCH_MAX) in one
 * transaction, then ops_committed. bad[i], io_err[i]: as op_rows found them. ERROR_SUCCESS,
 * or the database's error (rolled back: nothing of them committed).
 */
static DWORD commit_rows(struct op *const *ops, size_t n, const bool *include, bool *bad,
    int *io_err)
{
    struct daemon *d = ops[0]->c->d;
    struct store *st = d->store;
    int64_t now = evict_now(d);
    uint64_t added = 0;
    store_set_now(st, now); /* the labels' added_at */
    if (store_begin(st) != 0)
        return winerr_from_sqlite(store_errcode(st));
    uint64_t replaced = store_rows_replaced(st);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = !include[i] || op_rows(ops[i], now, &bad[i], &io_err[i], &added) == 0;
    if (!ok || store_commit(st) != 0) {
        DWORD status = winerr_from_sqlite(store_errcode(st));
        store_rollback(st);
        return status;
    }
    struct op *committed[COMMIT_BATCH_MAX];
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        if (include[i])
            committed[nc++] = ops[i];
    ops_committed(d, committed, nc, added, store_rows_replaced(st) != replaced);
    return ERROR_SUCCESS;
}

/* Loop: one op's rows and labels in a transaction of their own; its status. */
static DWORD op_commit(struct op *op, bool *committed)
{
    bool include = true, bad = false;
    int io_err = 0;
    DWORD rc = commit_rows(&op, 1, &include, &bad, &io_err);
    if (rc != ERROR_SUCCESS)
        return rc;
    *committed = true;
    return op_status(op, bad, io_err);
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

/* Loop: an AddData op about to be answered ERROR_SUCCESS: its stages join the daemon's sums. */
static void timing_add(struct content_daemon *cd, const struct op *op)
{
    const double *b = op->began_ms;
    for (int s = 0; s < ADD_STAGES; s++)
        if (b[s] == 0)
            return; /* not stamped at every stage */
    double now = daemon_mono_ms();
    struct add_timing *t = &cd->timing;
    t->calls++;
    t->bytes += op->len;
    for (int s = 0; s < ADD_STAGES; s++)
        t->ms[s] += (s + 1 < ADD_STAGES ? b[s + 1] : now) - b[s];
}

void content_add_timing(const struct daemon *d, struct add_timing *out)
{
    *out = ((const struct content_daemon *)d->content)->timing;
}

/* Loop: the op's answer (unless aborted), then its pins, uncommitted slots and memory go. */
static void op_release(struct op *op, bool answer, DWORD status, bool committed)
{
    struct content_handle *h = op->h;
    struct conn *c = op->c;
    LIST_REMOVE(op, link);
    if (answer && status == ERROR_SUCCESS && !op->done)
        timing_add(op->cd, op);
    if (answer) {
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

static bool op_live(struct op *op)
{
    return !atomic_load(&op->aborted) && !op->h->closed;
}

/* Loop: commit (unless aborted) in a transaction of its own, reply, release. */
static void op_finish(struct op *op)
{
    bool committed = false;
    DWORD status = ERROR_SUCCESS;
    bool live = op_live(op);
    if (live)
        status = op_commit(op, &committed);
    op_release(op, live, status, committed);
}

/*
 * Loop: the synced ops of a batch (sync_next), committed in one transaction and then
 * answered in order. If the shared transaction fails, each op is committed on its own
 * (op_finish), so one op's database error fails that op alone, as it would have alone.
 */
static void batch_finish(struct op *batch)
{
    while (batch) {
        struct op *ops[COMMIT_BATCH_MAX];
        bool was_live[COMMIT_BATCH_MAX], bad[COMMIT_BATCH_MAX] = {false};
        int io_err[COMMIT_BATCH_MAX] = {0};
        size_t n = 0, live = 0;
        while (batch && n < COMMIT_BATCH_MAX) {
            was_live[n] = op_live(batch);
            live += was_live[n];
            ops[n++] = batch;
            batch = batch->sync_next;
        }
        bool together = live >= 2;
        if (together && commit_rows(ops, n, was_live, bad, io_err) != ERROR_SUCCESS) {
            log_warn("committing %zu writes together failed: committing each on its own", live);
            together = false;
        }
        if (!together) {
            for (size_t i = 0; i < n; i++)
                op_finish(ops[i]);
            continue;
        }
        /* An answer may close a later op's handle (a failed send closes the connection):
         * that op's rows stay committed, and Close has answered it. */
        for (size_t i = 0; i < n; i++) {
            bool answer = was_live[i] && op_live(ops[i]);
            op_release(ops[i], answer, answer ? op_status(ops[i], bad[i], io_err[i]) : 0,
                was_live[i]);
        }
    }
}

/* The waiting ops, as the batch the next sync covers: last in the commit order, syncing. */
static struct op *take_batch(struct content_daemon *cd)
{
    struct op *batch = cd->sync_head;
    cd->sync_head = NULL;
    cd->sync_tail = &cd->sync_head;
    batch->batch_next = NULL;
    batch->batch_synced = false;
    *cd->batches_tail = batch;
    cd->batches_tail = &batch->batch_next;
    cd->nsyncing++;
    return batch;
}

/* Loop: the first batch, synced, commits (or waits for the write gate). */
static void commit_first_batch(struct content_daemon *cd)
{
    struct op *batch = cd->batches;
    if (!(cd->batches = batch->batch_next))
        cd->batches_tail = &cd->batches;
    if (!flush_gate_open(cd->d)) { /* commit once the flush batch has: content_gate_opened */
        *cd->commit_wait_tail = batch;
        while (*cd->commit_wait_tail)
            cd->commit_wait_tail = &(*cd->commit_wait_tail)->sync_next;
        flush_gate_wait(cd->d, &cd->gate_waiter);
        return;
    }
    batch_finish(batch);
}

/* Worker: fdatasync each file the batch's ops wrote, once; a failure fails its blocks. */
static void group_sync_work(void *arg)
{
    struct op *batch = arg;
    struct content_daemon *cd = batch->cd;
    double began = daemon_mono_ms();
    for (struct op *op = batch; op; op = op->sync_next)
        op->began_ms[ADD_SYNC] = began;
    for (struct op *op = batch; op; op = op->sync_next) {
        if (atomic_load(&op->aborted))
            continue;
        const struct ci_info *ci = op->h->ci;
        for (size_t i = 0; i < op->nunits; i++) {
            struct unit *u = &op->units[i];
            if (u->result != UNIT_OK || u->synced)
                continue;
            const uint8_t *seg = ci->segments[u->seg].id;
            int fd = bs_open_existing(cd->d->bs, seg, ci->digest_len, u->owner);
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
    double ended = daemon_mono_ms();
    for (struct op *op = batch; op; op = op->sync_next)
        op->began_ms[ADD_COMMIT] = ended;
}

static void group_sync_done(void *arg)
{
    struct op *batch = arg;
    struct content_daemon *cd = batch->cd;
    batch->batch_synced = true;
    cd->nsyncing--;
    /*
     * The next sync starts on the syncer while synced batches commit here, so the disk does
     * not wait for the database; the batches commit in the order they were taken, whichever
     * sync ended first. A sync that must run right here comes after the commits instead.
     */
    bool started = group_sync_submit(cd);
    while (cd->batches && cd->batches->batch_synced)
        commit_first_batch(cd);
    if (!started)
        group_sync_kick(cd);
}

/*
 * Hands the waiting ops to the syncer as the next batch: true when that is done, when there
 * is nothing to do, or when a running sync's done will try again (SYNCS_IN_FLIGHT run, or
 * the pool refused one while another runs); false when they must be synced on the loop
 * instead, no sync running (stopping: the pool no longer runs new jobs; or out of memory).
 * The syncer only reads the batch's chain, which the loop leaves alone once it is taken,
 * right after.
 */
static bool group_sync_submit(struct content_daemon *cd)
{
    if (cd->nsyncing >= SYNCS_IN_FLIGHT || !cd->sync_head)
        return true;
    if (cd->d->stopping ||
        worker_submit(cd->d->syncer, group_sync_work, group_sync_done, cd->sync_head) != 0)
        return cd->nsyncing > 0; /* the running sync's done tries again */
    take_batch(cd);
    return true;
}

static void group_sync_kick(struct content_daemon *cd)
{
    if (group_sync_submit(cd))
        return;
    struct op *batch = take_batch(cd);
    group_sync_work(batch);
    group_sync_done(batch);
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
    batch_finish(batch);
    content_info_resume(cd);
}
