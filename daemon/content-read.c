/* SPDX-License-Identifier: MIT */
/*
 * content-read.c - BlockRead and StreamRead in the daemon: where a content offset lies
 * (segment, block), which stored blocks a handle may read (the slot map: rows whose hash is
 * the one the handle's content information lists, shared or the caller's own, not found bad),
 * and the reply. Bytes checked this run go from the data file straight into the reply frame,
 * or, for a read that asks for it, into the connection's shared region (proto/README.md,
 * Shared-memory reads): the same bytes after the same checks, the reply carrying their count.
 * A read that meets a block not checked since the start (DESIGN.md, Trust in stored bytes)
 * goes to a worker, which reads and hashes its blocks, and replies when it is done: good bytes
 * are served, a bad block is reported missing, logged once, and leaves the index.
 */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "blockstore.h"
#include "budget.h"
#include "content-internal.h"
#include "evict.h"
#include "log.h"
#include "peer-fetch.h"
#include "worker.h"

/*
 * Blocks (V2: segments) one read covers at most: 1 MiB of V1 is 16, of V2 segments of 4 KiB
 * or more at most 256. A content information of tiny segments would otherwise make one read
 * a query and a check per segment; such a read returns fewer bytes, as any read may.
 */
#define READ_BLOCKS_MAX 256

/* Where a read's bytes go: the reply frame, or the connection's shared region at `offset`. */
struct read_to {
    bool shm;
    uint64_t offset;
};

/* One whole block a read waiting for a worker covers. */
struct piece {
    size_t seg;
    uint32_t block;
    int64_t file;
    uint64_t start; /* content offset */
    uint32_t len;
    bool check; /* not known good this run: hashed on the worker */
    enum { PIECE_OK, PIECE_BAD, PIECE_IO, PIECE_SKIPPED } result;
    struct bs_check ck;
};

/*
 * A read waiting for a worker, or a stream read waiting for the one before it. Its op is on
 * the handle's ops list, so Close and Cancel answer it (content.c): then it replies nothing.
 * It holds a reference on the handle and on the connection.
 */
struct read_op {
    struct op op;
    bool stream;
    uint64_t offset, max_bytes; /* as asked (offset: block reads) */
    uint64_t off, n;            /* the run being read: [off, off + n) */
    struct piece *pieces;
    size_t npieces;
    uint8_t *buf; /* the pieces' bytes, from pieces[0].start (worker) */
    bool oom;
    bool held;            /* its pieces' segments are held against eviction (bs_hold) */
    struct read_op *next; /* handle's stream_wait */
    uint32_t timeout_ms;  /* as asked (ReadRequest.timeout_ms) */
    struct read_to to;
    /* Waiting on a fetch from peers (distributed mode): until bytes at off are stored, the
     * fetch ends, or the deadline (timer) passes. */
    struct peer_fetch_wait wait;
    struct event *timer;
    uint64_t miss; /* missing bytes from off when the wait began */
};

static int slot_row(void *arg, const struct store_block_row *row)
{
    struct slots *s = arg;
    if (row->block >= CONTENT_SLOTS_MAX || s->file[row->block] != SLOT_NONE)
        return 0;
    const uint8_t *hash = content_listed_hash(s->ci, s->seg, row->block);
    /* Never serve bytes that do not match this handle's own hash for the block. */
    if (!hash || row->hash_len != s->ci->digest_len || memcmp(hash, row->hash, row->hash_len) != 0)
        return 0;
    if (row->length != ci_block_length(s->seg, row->block))
        return 0;
    if (row->owner != STORE_OWNER_SHARED && row->owner != (int64_t)s->uid)
        return 0;
    /* Found bad on a read: its row is on its way out of the index. */
    if (bs_bad_slots(s->bs) &&
        bs_slot_state(s->bs, s->seg->id, s->ci->digest_len, row->file_owner, row->block) ==
            BS_SLOT_BAD)
        return 0;
    s->file[row->block] = row->file_owner;
    return 0;
}

static int slots_load(struct store *st, struct slots *s, size_t i)
{
    if (s->seg_index == i)
        return 0;
    s->seg = &s->ci->segments[i];
    s->seg_index = SIZE_MAX;
    for (size_t b = 0; b < CONTENT_SLOTS_MAX; b++)
        s->file[b] = SLOT_NONE;
    if (store_segment_blocks(st, s->seg->id, s->ci->digest_len, s->uid, slot_row, s) != 0)
        return -1;
    s->seg_index = i;
    s->maybe_more = false;
    return 0;
}

/* The file holding block `block` of segment `seg` for this map, or SLOT_NONE; -1 on error. */
static int slot_get(struct store *st, struct slots *s, size_t seg, uint32_t block, int64_t *file)
{
    if (slots_load(st, s, seg) != 0)
        return -1;
    if (s->file[block] == SLOT_NONE && s->maybe_more) {
        s->seg_index = SIZE_MAX;
        if (slots_load(st, s, seg) != 0)
            return -1;
    }
    *file = s->file[block];
    return 0;
}

/* Readable bytes from off (stopping at hi): contiguous run length; the slots stay loaded. */
static int64_t readable_run(struct store *st, struct slots *s, uint64_t off, uint64_t hi,
    uint64_t limit)
{
    uint64_t p = off;
    unsigned most = limit <= PD_MAX_CHUNK ? READ_BLOCKS_MAX : UINT_MAX; /* queries: all of it */
    for (unsigned blocks = 0; p < hi && p - off < limit && blocks < most; blocks++) {
        struct pos ps;
        content_pos_at(s->ci, p, &ps);
        int64_t file;
        if (slot_get(st, s, ps.seg, ps.block, &file) != 0)
            return -1;
        if (file == SLOT_NONE)
            break;
        p = ps.start + ps.len;
    }
    if (p > hi)
        p = hi;
    return (int64_t)(p - off < limit ? p - off : limit);
}

/* Missing bytes from off: up to the next readable byte or hi. */
static int64_t missing_run(struct store *st, struct slots *s, uint64_t off, uint64_t hi)
{
    uint64_t p = off;
    while (p < hi) {
        struct pos ps;
        content_pos_at(s->ci, p, &ps);
        int64_t file;
        if (slot_get(st, s, ps.seg, ps.block, &file) != 0)
            return -1;
        if (file != SLOT_NONE)
            break;
        p = ps.start + ps.len;
    }
    return (int64_t)((p < hi ? p : hi) - off);
}

/* Copies n readable bytes from off; consecutive blocks in one file go in one read. */
static int copy_out(struct blockstore *bs, struct store *st, struct slots *s, uint64_t off,
    uint8_t *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        struct pos ps;
        content_pos_at(s->ci, off + done, &ps);
        int64_t file;
        if (slot_get(st, s, ps.seg, ps.block, &file) != 0 || file == SLOT_NONE)
            return -1;
        uint64_t in = off + done - ps.start;
        size_t k = ps.len - in < n - done ? (size_t)(ps.len - in) : n - done;
        /* Following blocks of the segment in the same file sit right after this one. */
        uint32_t nb = ci_segment_block_count(s->seg);
        for (uint32_t b = ps.block + 1; done + k < n && b < nb && s->file[b] == file &&
             ci_block_length(s->seg, b - 1) == BS_SLOT_SIZE;
             b++) {
            uint32_t blen = ci_block_length(s->seg, b);
            k += n - done - k < blen ? n - done - k : blen;
        }
        if (bs_read(bs, s->seg->id, s->ci->digest_len, file, (uint64_t)ps.block * BS_SLOT_SIZE + in,
                buf + done, k) != 0)
            return -1;
        done += k;
    }
    return 0;
}

/* The handle's slot map, reused while the block index is unchanged since it was loaded. */
static struct slots *read_slots(struct daemon *d, struct content_handle *h, uint32_t uid)
{
    bool fresh = !h->slots;
    if (fresh && !(h->slots = malloc(sizeof(*h->slots))))
        return NULL;
    if (fresh || h->slots->ci != h->ci ||
        h->slots_gen - h->slots_added != d->blocks_gen - d->blocks_added) {
        /* Rows went or changed since it was loaded (or it never was): start over. */
        h->slots->ci = h->ci;
        h->slots->bs = d->bs;
        h->slots->uid = uid;
        h->slots->seg_index = SIZE_MAX;
        h->slots->maybe_more = false;
    } else if (h->slots_gen != d->blocks_gen) {
        h->slots->maybe_more = true; /* only added: what it holds is still right */
    }
    h->slots_gen = d->blocks_gen;
    h->slots_added = d->blocks_added;
    return h->slots;
}

/* ---- reads waiting for a worker ---- */

/* A waiting read, or NULL (out of memory, or CONTENT_CONN_READS_MAX: logged once). */
static struct read_op *read_op_new(struct conn *c, struct content_handle *h, uint64_t id,
    bool stream, uint64_t offset, uint64_t max_bytes, const struct read_to *to)
{
    struct content_conn *cc = c->content;
    if (cc->reads_waiting >= CONTENT_CONN_READS_MAX) {
        if (!cc->reads_refused)
            log_warn(CONN_FMT ": more than %u reads waiting for their blocks' first check or "
                              "for the stream read ahead; refusing more",
                CONN_ARGS(c), CONTENT_CONN_READS_MAX);
        cc->reads_refused = true;
        return NULL;
    }
    struct read_op *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    cc->reads_waiting++;
    r->op.request_id = id;
    r->op.h = h;
    r->op.c = c;
    r->op.cd = c->d->content;
    r->stream = stream;
    r->offset = offset;
    r->max_bytes = max_bytes;
    r->to = *to;
    LIST_INSERT_HEAD(&h->ops, &r->op, link);
    h->refs++;
    c->refs++;
    return r;
}

/* Loop: the segments of the read's pieces, each once; fn(bs, id, len). */
static void read_segments(struct read_op *r, void (*fn)(struct read_op *r, const uint8_t *id))
{
    for (size_t i = 0; i < r->npieces; i++)
        if (i == 0 || r->pieces[i].seg != r->pieces[i - 1].seg)
            fn(r, r->op.h->ci->segments[r->pieces[i].seg].id);
}

static void hold_one(struct read_op *r, const uint8_t *id)
{
    if (bs_hold(r->op.c->d->bs, id, r->op.h->ci->digest_len) != 0)
        log_warn("out of memory holding a segment for a read: eviction may take it meanwhile "
                 "(the read then reports it missing)");
}

static void release_one(struct read_op *r, const uint8_t *id)
{
    bs_release(r->op.c->d->bs, id, r->op.h->ci->digest_len);
}

static void read_op_free(struct read_op *r)
{
    struct content_handle *h = r->op.h;
    struct conn *c = r->op.c;
    struct content_conn *cc = c->content; /* NULL once the connection closed */
    if (r->held)
        read_segments(r, release_one);
    peer_fetch_detach(&r->wait);
    if (r->timer)
        event_free(r->timer);
    if (cc)
        cc->reads_waiting--;
    LIST_REMOVE(&r->op, link);
    free(r->pieces);
    free(r->buf);
    free(r);
    content_handle_unref(h);
    conn_unref(c);
}

/*
 * Worker: reads each piece's whole block and hashes it; stops at a failure. Blocks known good
 * are hashed too: between the plan on the loop and this read, a flush may have removed a
 * block's row and reclaim punched its slot, and what this read serves must still be the
 * bytes of the handle's hash. Only pieces planned as checks give a verdict (read_verdicts).
 */
static void read_work(void *arg)
{
    struct read_op *r = arg;
    const struct ci_info *ci = r->op.h->ci;
    struct blockstore *bs = r->op.c->d->bs;
    const struct piece *last = &r->pieces[r->npieces - 1];
    uint64_t lo = r->pieces[0].start;
    bool stop = atomic_load(&r->op.aborted) || !(r->buf = malloc(last->start + last->len - lo));
    r->oom = !r->buf && !atomic_load(&r->op.aborted);
    for (size_t i = 0; i < r->npieces; i++) {
        struct piece *p = &r->pieces[i];
        if (stop) {
            p->result = PIECE_SKIPPED;
            continue;
        }
        uint8_t *data = r->buf + (p->start - lo);
        const struct ci_segment *seg = &ci->segments[p->seg];
        if (bs_read(bs, seg->id, ci->digest_len, p->file, (uint64_t)p->block * BS_SLOT_SIZE, data,
                p->len) != 0)
            p->result = PIECE_IO;
        else if (ci->version == CI_VERSION_2 ? ci_verify_segment_data(ci, p->seg, data, p->len)
                                             : ci_verify_block(ci, p->seg, p->block, data, p->len))
            p->result = PIECE_OK;
        else
            p->result = PIECE_BAD;
        stop = p->result != PIECE_OK; /* the reply ends before it; the rest can wait */
    }
}

/* Loop: the rows of slots found bad leave the index, once no flush batch holds the lock. */
static void drop_bad_rows(struct content_daemon *cd);

static void drop_gate_opened(struct flush_waiter *w)
{
    drop_bad_rows(
        (struct content_daemon *)((char *)w - offsetof(struct content_daemon, drop_waiter)));
}

static void drop_bad_rows(struct content_daemon *cd)
{
    struct daemon *d = cd->d;
    struct store *st = d->store;
    if (!flush_gate_open(d)) {
        cd->drop_waiter.fn = drop_gate_opened;
        flush_gate_wait(d, &cd->drop_waiter);
        return;
    }
    struct store_slot batch[64];
    size_t n;
    while ((n = bs_bad_take(d->bs, batch, sizeof(batch) / sizeof(batch[0]))) > 0) {
        bool ok = store_begin(st) == 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = store_block_drop(st, batch[i].segment_id, batch[i].segment_id_len,
                     batch[i].file_owner, batch[i].block) >= 0;
        if (!ok || store_commit(st) != 0) {
            /* Readers skip them anyway; the next start finds them bad again. */
            log_error("dropping %zu bad blocks from the index: %s", n, store_errmsg(st));
            store_rollback(st);
            return;
        }
        d->blocks_gen++;
    }
}

/*
 * Loop: the verdict of each checked piece, recorded unless a write touched its slot meanwhile.
 * A piece whose bytes failed is called bad only if a row still names its slot (a flush may
 * have removed the row and reclaim punched the slot since). True if one became bad.
 */
static bool read_verdicts(struct read_op *r)
{
    struct conn *c = r->op.c;
    struct daemon *d = c->d;
    const struct ci_info *ci = r->op.h->ci;
    bool found = false;
    for (size_t i = 0; i < r->npieces; i++) {
        struct piece *p = &r->pieces[i];
        if (!p->check)
            continue;
        const uint8_t *seg = ci->segments[p->seg].id;
        enum bs_verdict v = BS_VERDICT_NONE;
        if (p->result == PIECE_OK)
            v = BS_VERDICT_GOOD;
        else if (p->result == PIECE_BAD &&
            store_slot_in_use(d->store, seg, ci->digest_len, p->file, p->block) == 1)
            v = BS_VERDICT_BAD;
        if (bs_check_end(d->bs, &p->ck, v) && v == BS_VERDICT_BAD) {
            char path[4096];
            bs_file_path(d->bs, seg, ci->digest_len, p->file, path, sizeof(path));
            log_warn("%s: block %u does not match its hash: it leaves the index and reads report "
                     "it missing (found by a read of " CONN_FMT ")",
                path, (unsigned)p->block, CONN_ARGS(c));
            found = true;
        }
    }
    return found;
}

static void read_serve(struct conn *c, struct content_handle *h, struct read_op *r, uint64_t id,
    bool stream, uint64_t offset, uint64_t max_bytes, uint32_t timeout_ms,
    const struct read_to *to);

/*
 * Where n bytes of a shm read go: the region at to->offset, bounds checked when the request
 * came (content_read) and again here; NULL when the connection (and its region) is gone.
 */
static uint8_t *shm_dest(struct conn *c, const struct read_to *to, size_t n)
{
    if (!c->shm || to->offset > c->shm_size || n > c->shm_size - to->offset)
        return NULL;
    return c->shm + to->offset;
}

/* A successful shm read: the count, no bytes (they are in the region). */
static void reply_shm(struct conn *c, uint64_t id, uint64_t off, uint64_t n)
{
    Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
    Peerdist__Reply rep = PEERDIST__REPLY__INIT;
    rep.id = id;
    rep.body_case = PEERDIST__REPLY__BODY_READ;
    rep.read = &rr;
    rr.offset = off;
    rr.shm_length = n;
    conn_send(c, &rep);
}

/* Loop: n bytes from off were served: a hit, and their segments were used (recency). */
static void read_hit(struct conn *c, struct content_handle *h, uint64_t off, uint64_t n)
{
    struct daemon *d = c->d;
    evict_count(d, STORE_CTR_HITS, n);
    int64_t now = evict_now(d);
    struct pos first, last;
    content_pos_at(h->ci, off, &first);
    content_pos_at(h->ci, off + n - 1, &last);
    for (size_t i = first.seg; i <= last.seg; i++) {
        if (i == h->touched_seg && h->touched_at == now)
            continue; /* already marked this second */
        h->touched_seg = i;
        h->touched_at = now;
        if (evict_touch(d, h->ci->segments[i].id, h->ci->digest_len))
            flush_evict_kick(d); /* many segments used since the last pass: write them down */
    }
}

/* Loop: a read of max_bytes found len bytes missing: a miss of the smaller. */
static void read_miss(struct conn *c, uint64_t max_bytes, uint64_t len)
{
    evict_count(c->d, STORE_CTR_MISSES, len < max_bytes ? len : max_bytes);
}

/*
 * Loop: stream reads that waited for the one before them, in order, until one waits again.
 * Called from read_done only, whose read still holds the handle while these are freed.
 */
static void stream_next(struct content_handle *h)
{
    while (!h->stream_busy && h->stream_wait) {
        struct read_op *r = h->stream_wait;
        if (!(h->stream_wait = r->next))
            h->stream_wait_tail = &h->stream_wait;
        if (atomic_load(&r->op.aborted))
            read_op_free(r); /* answered by Close or Cancel */
        else
            read_serve(r->op.c, h, r, r->op.request_id, true, 0, r->max_bytes, r->timeout_ms,
                &r->to);
    }
}

static void reply_missing(struct conn *c, struct content_handle *h, uint64_t id, bool stream,
    uint64_t off, uint64_t len)
{
    Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
    Peerdist__Reply rep = PEERDIST__REPLY__INIT;
    rep.id = id;
    rep.status = PEERDIST_ERROR_MISSING_DATA;
    rep.body_case = PEERDIST__REPLY__BODY_READ;
    rep.read = &rr;
    rr.offset = off;
    rr.length = len;
    if (stream)
        h->cursor = off + len;
    conn_send(c, &rep);
}

/* Loop: the worker is done: verdicts, then the reply from the bytes it read. */
static void read_done(void *arg)
{
    struct read_op *r = arg;
    struct content_handle *h = r->op.h;
    struct conn *c = r->op.c;
    struct daemon *d = c->d;
    if (read_verdicts(r)) {
        d->blocks_gen++; /* slot maps skip the bad blocks from now on */
        drop_bad_rows(d->content);
    }
    /* Good bytes from off, up to the first piece that failed. */
    uint64_t lo = r->pieces[0].start, end = lo;
    for (size_t i = 0; i < r->npieces && r->pieces[i].result == PIECE_OK; i++)
        end = r->pieces[i].start + r->pieces[i].len;
    uint64_t good = end > r->off ? end - r->off : 0;
    if (good > r->n)
        good = r->n;
    if (atomic_load(&r->op.aborted)) {
        /* answered by Close or Cancel: the cursor stays */
    } else if (r->oom) {
        conn_reply_status(c, r->op.request_id, ERROR_NOT_ENOUGH_MEMORY);
    } else if (good > 0 && r->to.shm) {
        uint8_t *dst = shm_dest(c, &r->to, (size_t)good);
        if (dst) {
            memcpy(dst, r->buf + (r->off - lo), (size_t)good);
            reply_shm(c, r->op.request_id, r->off, good);
            read_hit(c, h, r->off, good);
        }
        if (r->stream)
            h->cursor = r->off + good;
    } else if (good > 0) {
        size_t total = frame_read_reply_size(r->op.request_id, r->off, (size_t)good);
        uint8_t *frame = conn_reserve(c, total);
        if (frame) {
            uint8_t *data = frame_read_reply_pack(frame, r->op.request_id, r->off, (size_t)good);
            memcpy(data, r->buf + (r->off - lo), (size_t)good);
            conn_commit(c, frame, total);
            read_hit(c, h, r->off, good);
        }
        if (r->stream)
            h->cursor = r->off + good;
    } else {
        /* Missing up to the next readable byte, and at least to the end of the failed block. */
        const struct piece *p = &r->pieces[0];
        struct slots *s = read_slots(d, h, c->uid);
        int64_t m = s ? missing_run(d->store, s, r->off, h->read_hi) : -1;
        uint64_t past = p->start + p->len < h->read_hi ? p->start + p->len : h->read_hi;
        if (m < 0) {
            if (s)
                s->seg_index = SIZE_MAX;
            conn_reply_status(c, r->op.request_id, ERROR_INTERNAL_ERROR);
        } else {
            if (p->result == PIECE_IO)
                log_error(CONN_FMT ": reading cached bytes at %llu failed; reported as missing",
                    CONN_ARGS(c), (unsigned long long)p->start);
            uint64_t len = (uint64_t)m > past - r->off ? (uint64_t)m : past - r->off;
            read_miss(c, r->max_bytes, len);
            reply_missing(c, h, r->op.request_id, r->stream, r->off, len);
        }
    }
    if (r->stream) {
        h->stream_busy = false;
        stream_next(h);
    }
    read_op_free(r);
}

/* Loop: does a block of the readable run [off, off + n) need its check? 1, 0, or -1. */
static int run_unchecked(struct daemon *d, struct slots *s, uint64_t off, uint64_t n)
{
    const struct ci_info *ci = s->ci;
    for (uint64_t p = off; p < off + n;) {
        struct pos ps;
        content_pos_at(ci, p, &ps);
        int64_t file;
        if (slot_get(d->store, s, ps.seg, ps.block, &file) != 0 || file == SLOT_NONE)
            return -1;
        if (bs_slot_state(d->bs, ci->segments[ps.seg].id, ci->digest_len, file, ps.block) !=
            BS_SLOT_GOOD)
            return 1;
        p = ps.start + ps.len;
    }
    return 0;
}

/* Loop: the blocks of the run [r->off, r->off + r->n); checks begin for those not known good. */
static int read_plan(struct daemon *d, struct slots *s, struct read_op *r)
{
    const struct ci_info *ci = s->ci;
    size_t cap = 0;
    for (uint64_t p = r->off; p < r->off + r->n;) {
        struct pos ps;
        content_pos_at(ci, p, &ps);
        int64_t file;
        if (slot_get(d->store, s, ps.seg, ps.block, &file) != 0 || file == SLOT_NONE)
            return -1;
        if (r->npieces == cap) {
            cap = cap ? cap * 2 : 32;
            struct piece *np = realloc(r->pieces, cap * sizeof(*np));
            if (!np)
                return -1;
            r->pieces = np;
        }
        struct piece *pc = &r->pieces[r->npieces++];
        memset(pc, 0, sizeof(*pc));
        pc->seg = ps.seg;
        pc->block = ps.block;
        pc->file = file;
        pc->start = ps.start;
        pc->len = ps.len;
        pc->check = bs_slot_state(d->bs, ci->segments[ps.seg].id, ci->digest_len, pc->file,
                        pc->block) != BS_SLOT_GOOD;
        p = ps.start + ps.len;
    }
    for (size_t i = 0; i < r->npieces; i++)
        if (r->pieces[i].check)
            bs_check_begin(d->bs, ci->segments[r->pieces[i].seg].id, ci->digest_len,
                r->pieces[i].file, r->pieces[i].block, &r->pieces[i].ck);
    return 0;
}

/* Loop: the read of [off, off + n) goes to a worker (r: the read, planned). */
static void read_submit(struct conn *c, struct content_handle *h, struct read_op *r)
{
    size_t nchecks = 0;
    for (size_t i = 0; i < r->npieces; i++)
        nchecks += r->pieces[i].check;
    log_debug(CONN_FMT ": read at %llu: checking %zu blocks against their hashes on their first "
                       "read since start",
        CONN_ARGS(c), (unsigned long long)r->off, nchecks);
    if (r->stream)
        h->stream_busy = true;
    /* Eviction leaves the segments alone until the read is answered. */
    read_segments(r, hold_one);
    r->held = true;
    if (!c->d->stopping && worker_submit(c->d->workers, read_work, read_done, r) == 0)
        return;
    for (size_t i = 0; i < r->npieces; i++)
        if (r->pieces[i].check)
            bs_check_end(c->d->bs, &r->pieces[i].ck, BS_VERDICT_NONE);
    if (r->stream)
        h->stream_busy = false;
    conn_reply_status(c, r->op.request_id,
        c->d->stopping ? ERROR_OPERATION_ABORTED : ERROR_NOT_ENOUGH_MEMORY);
    read_op_free(r);
}

/*
 * Serves one read now, or hands it to a worker when it meets blocks not known good. r is the
 * read's record when it waited (a queued stream read), else NULL; served now, it is freed.
 */
static int read_wait_fetch(struct conn *c, struct content_handle *h, struct read_op *r,
    struct slots *s);

/* ---- reads waiting on a fetch from peers (distributed mode) ---- */

/*
 * Loop: the waiting read r ends: answered by read_serve (bytes at its offset arrived),
 * MISSING_DATA (the fetch ended without them) or ERROR_TIMEOUT (status), unless Close or
 * Cancel answered it already. Stream reads behind it go on.
 */
static void read_fetch_finish(struct read_op *r, uint32_t status)
{
    struct content_handle *h = r->op.h;
    struct conn *c = r->op.c;
    peer_fetch_detach(&r->wait);
    if (r->timer)
        event_del(r->timer);
    h->refs++; /* past read_op_free, for the stream reads behind it */
    c->refs++;
    if (r->stream)
        h->stream_busy = false;
    if (atomic_load(&r->op.aborted) || h->closed) {
        read_op_free(r);
    } else if (status == ERROR_SUCCESS) {
        read_serve(c, h, r, r->op.request_id, r->stream, r->offset, r->max_bytes,
            PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &r->to);
    } else {
        struct slots *s = read_slots(c->d, h, c->uid);
        int64_t m = s ? missing_run(c->d->store, s, r->off, h->read_hi) : -1;
        uint64_t len = m > 0 ? (uint64_t)m : r->miss;
        read_miss(c, r->max_bytes, len);
        if (status == ERROR_TIMEOUT) {
            Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
            Peerdist__Reply rep = PEERDIST__REPLY__INIT;
            rep.id = r->op.request_id;
            rep.status = ERROR_TIMEOUT;
            rep.body_case = PEERDIST__REPLY__BODY_READ;
            rep.read = &rr;
            rr.offset = r->off;
            rr.length = len;
            conn_send(c, &rep); /* the stream cursor stays: the bytes may still come */
        } else {
            reply_missing(c, h, r->op.request_id, r->stream, r->off, len);
        }
        read_op_free(r);
    }
    if (!h->stream_busy && !h->closed)
        stream_next(h);
    content_handle_unref(h);
    conn_unref(c);
}

static void read_fetch_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_fetch_finish(arg, ERROR_TIMEOUT);
}

/* The fetch stored a block, or ended: is the byte at the read's offset there now? */
static void read_fetch_event(struct peer_fetch_wait *w, enum peer_fetch_event ev)
{
    struct read_op *r = (struct read_op *)((char *)w - offsetof(struct read_op, wait));
    struct content_handle *h = r->op.h;
    struct conn *c = r->op.c;
    if (atomic_load(&r->op.aborted) || h->closed) {
        read_fetch_finish(r, ERROR_OPERATION_ABORTED);
        return;
    }
    struct slots *s = read_slots(c->d, h, c->uid);
    int64_t n = s ? readable_run(c->d->store, s, r->off, h->read_hi, 1) : -1;
    if (n > 0)
        read_fetch_finish(r, ERROR_SUCCESS);
    else if (ev == PEER_FETCH_ENDED)
        read_fetch_finish(r, PEERDIST_ERROR_MISSING_DATA);
}

/*
 * Loop: r (a block or stream read at r->off, nothing readable there) waits on the fetch of
 * the segment holding r->off: read-ahead to the segment's end. -1 if no fetch can run.
 */
static int read_wait_fetch(struct conn *c, struct content_handle *h, struct read_op *r,
    struct slots *s)
{
    struct pos ps;
    content_pos_at(h->ci, r->off, &ps);
    int64_t file; /* missing: slot_get has loaded the segment afresh if rows were added */
    if (slot_get(c->d->store, s, ps.seg, ps.block, &file) != 0)
        return -1;
    const struct ci_segment *seg = &h->ci->segments[ps.seg];
    uint32_t nb = ci_segment_block_count(seg);
    bool missing[CONTENT_SLOTS_MAX];
    if (nb > CONTENT_SLOTS_MAX)
        return -1;
    for (uint32_t b = 0; b < nb; b++)
        missing[b] = s->file[b] == SLOT_NONE && content_listed_hash(h->ci, seg, b) != NULL;
    r->wait.fn = read_fetch_event;
    if (peer_fetch_wait(c, h, ps.seg, ps.block, missing, nb, &r->wait) != 0)
        return -1;
    uint32_t t = r->timeout_ms;
    if (t != INFINITE) {
        if (t == PEERDIST_READ_TIMEOUT_DEFAULT)
            t = 5000;
        if (!r->timer)
            r->timer = evtimer_new(c->d->base, read_fetch_timeout, r);
        struct timeval tv = {t / 1000, (t % 1000) * 1000};
        if (!r->timer || evtimer_add(r->timer, &tv) != 0) {
            peer_fetch_detach(&r->wait);
            return -1;
        }
    }
    if (r->stream)
        h->stream_busy = true;
    return 0;
}

static void read_serve(struct conn *c, struct content_handle *h, struct read_op *r, uint64_t id,
    bool stream, uint64_t offset, uint64_t max_bytes, uint32_t timeout_ms, const struct read_to *to)
{
    struct store *st = c->d->store;
    uint64_t off = stream ? h->cursor : offset;
    Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
    Peerdist__Reply rep = PEERDIST__REPLY__INIT;
    rep.id = id;
    rep.body_case = PEERDIST__REPLY__BODY_READ;
    rep.read = &rr;
    rr.offset = off;
    struct slots *s = NULL;
    if (off < h->read_lo || off >= h->read_hi) {
        rep.status = PEERDIST_ERROR_NO_MORE;
        conn_send(c, &rep);
        goto out;
    }
    if (!(s = read_slots(c->d, h, c->uid))) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        goto out;
    }
    uint64_t limit = max_bytes == 0 ? UINT64_MAX
                                    : (max_bytes < PD_MAX_CHUNK ? max_bytes : PD_MAX_CHUNK);
    int64_t n = readable_run(st, s, off, h->read_hi, limit);
    if (n < 0)
        goto fail;
    if (max_bytes == 0) {
        /* A query: what the index says is readable (not checked here); the cursor stays. */
        rr.length = (uint64_t)n;
        conn_send(c, &rep);
        goto out;
    }
    if (n == 0) {
        if (timeout_ms != PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY && peer_fetch_enabled(c)) {
            /* Distributed mode: the bytes may come from peers (docs/peerdist.3.md). The
             * missing run is measured when the wait ends (the walk to the next readable byte
             * may cross every segment after this one); until then, the block at off. */
            if (!r && !(r = read_op_new(c, h, id, stream, offset, max_bytes, to))) {
                conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
                goto out;
            }
            struct pos ps;
            content_pos_at(h->ci, off, &ps);
            uint64_t bend = ps.start + ps.len < h->read_hi ? ps.start + ps.len : h->read_hi;
            r->timeout_ms = timeout_ms;
            r->off = off;
            r->miss = bend - off;
            if (read_wait_fetch(c, h, r, s) == 0)
                return;
        }
        int64_t m = missing_run(st, s, off, h->read_hi);
        if (m < 0)
            goto fail;
        read_miss(c, max_bytes, (uint64_t)m);
        reply_missing(c, h, id, stream, off, (uint64_t)m);
        goto out;
    }
    int unchecked = run_unchecked(c->d, s, off, (uint64_t)n);
    if (unchecked < 0)
        goto fail;
    if (unchecked) {
        if (!r && !(r = read_op_new(c, h, id, stream, offset, max_bytes, to))) {
            conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
            goto out;
        }
        r->off = off;
        r->n = (uint64_t)n;
        if (read_plan(c->d, s, r) != 0)
            goto fail;
        read_submit(c, h, r);
        return;
    }
    /* Every block known good: the bytes go straight from the data file into the region ... */
    if (to->shm) {
        uint8_t *dst = shm_dest(c, to, (size_t)n);
        if (!dst)
            goto out; /* the connection is gone */
        if (stream)
            h->cursor = off + (uint64_t)n;
        if (copy_out(c->d->bs, st, s, off, dst, (size_t)n) == 0) {
            reply_shm(c, id, off, (uint64_t)n);
            read_hit(c, h, off, (uint64_t)n);
            goto out;
        }
        goto copy_failed;
    }
    /* ... or into the reply frame. */
    size_t total = frame_read_reply_size(id, off, (size_t)n);
    uint8_t *frame = conn_reserve(c, total);
    if (!frame)
        goto out; /* out of memory: the connection is closed (its hooks run later) */
    uint8_t *data = frame_read_reply_pack(frame, id, off, (size_t)n);
    if (stream)
        h->cursor = off + (uint64_t)n;
    if (copy_out(c->d->bs, st, s, off, data, (size_t)n) == 0) {
        conn_commit(c, frame, total);
        read_hit(c, h, off, (uint64_t)n);
        goto out;
    }
copy_failed:
    read_miss(c, max_bytes, (uint64_t)n);
    log_error(CONN_FMT ": reading cached bytes at %llu failed; reported as missing", CONN_ARGS(c),
        (unsigned long long)off);
    rep.status = PEERDIST_ERROR_MISSING_DATA;
    rr.length = (uint64_t)n;
    conn_send(c, &rep);
    goto out;
fail:
    if (s)
        s->seg_index = SIZE_MAX; /* reload next time */
    conn_reply_status(c, id, ERROR_INTERNAL_ERROR);
out:
    if (r)
        read_op_free(r);
}

void content_read(struct conn *c, uint64_t id, const Peerdist__ReadRequest *rq)
{
    struct read_to to = {rq->shm && rq->max_bytes > 0, rq->shm_offset};
    if (to.shm) {
        /* The region never changes once attached, so the bounds hold until the reply. */
        uint64_t most = rq->max_bytes < PD_MAX_CHUNK ? rq->max_bytes : PD_MAX_CHUNK;
        if (!c->shm || to.offset > c->shm_size || most > c->shm_size - to.offset) {
            unsigned dropped;
            if (budget_log_pass(c->d->budget, &dropped))
                log_warn(CONN_FMT ": a shm read of %llu bytes at %llu of a region of %zu bytes: "
                                  "refused (%u lines left out)",
                    CONN_ARGS(c), (unsigned long long)most, (unsigned long long)to.offset,
                    c->shm_size, dropped);
            conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
            return;
        }
    }
    struct content_handle *h = content_usable_handle(c, id, rq->handle);
    if (!h)
        return;
    if (rq->stream && h->stream_busy) {
        /* The cursor is not known until the stream read ahead of it is answered. */
        struct read_op *r = read_op_new(c, h, id, true, 0, rq->max_bytes, &to);
        if (!r) {
            conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
            return;
        }
        r->timeout_ms = rq->timeout_ms;
        if (!h->stream_wait)
            h->stream_wait_tail = &h->stream_wait;
        *h->stream_wait_tail = r;
        h->stream_wait_tail = &r->next;
        return;
    }
    read_serve(c, h, NULL, id, rq->stream, rq->offset, rq->max_bytes, rq->timeout_ms, &to);
}
