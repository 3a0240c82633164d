/*
 * content.c - PeerDistClient* in the daemon: content handles (scoped to their connection),
 * content information streamed in and validated, AddData verified block by block on the
 * worker pool into the block store (blockstore.c), reads from verified blocks, cancellation,
 * and the caller's tags. Everything here runs on the loop thread except op_work.
 */
#include "content.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <peerdist.h>

#include "blockstore.h"
#include "contentinfo.h"
#include "frame.h"
#include "log.h"
#include "worker.h"

/* Bytes of incomplete blocks (V1) or segments (V2) held per handle (DESIGN.md, Bad bytes). */
#define CONTENT_HELD_MAX (64u * 1024 * 1024)
/* Content information accepted per handle (about 127 GiB of V1 content). */
#define CONTENT_INFO_MAX CI_STREAM_DEFAULT_MAX
/*
 * Memory one connection may make the daemon hold across all its handles: content
 * information fed plus bytes of incomplete blocks. Without it, 4096 handles of
 * 64 MiB each would let one client take 256 GiB.
 */
#define CONTENT_CONN_MEMORY_MAX (256u * 1024 * 1024)
/* V1 blocks per segment: the most one segment's slot table holds. */
#define CONTENT_SLOTS_MAX CI_V1_BLOCKS_PER_SEGMENT

#ifndef ERROR_WRITE_FAULT
#define ERROR_WRITE_FAULT 29L
#endif
#ifndef ERROR_DISK_FULL
#define ERROR_DISK_FULL 112L
#endif
#ifndef ERROR_INTERNAL_ERROR
#define ERROR_INTERNAL_ERROR 1359L
#endif

#define SLOT_NONE INT64_MIN /* no readable bytes for this block */

struct content_daemon {
    struct blockstore *bs;
    struct daemon *d;
    /*
     * Group sync: AddData ops whose bytes are written wait here; one worker job
     * fdatasyncs every file the waiting ops wrote (once per file), then their
     * metadata commits and they reply. Many 1 MiB AddData calls share one
     * fdatasync per file instead of paying one each.
     */
    struct op *sync_head, **sync_tail;
    bool syncing;
    /* Bumped whenever the block index changes: handles' cached slot maps are then stale. */
    uint64_t blocks_gen;
    /*
     * Writes deferred while a flush batch holds the database's write lock (daemon.h):
     * synced AddData ops waiting to commit, and Completes waiting to promote and reply.
     */
    struct op *commit_wait, **commit_wait_tail;
    LIST_HEAD(, content_handle) complete_wait;
};

/* Bytes of one incomplete block, held until the rest arrives. */
struct held {
    size_t seg;
    uint32_t block, len, filled;
    uint8_t *buf, *have; /* have: one bit per byte */
    struct held *next;
};

/* One complete block on its way through the worker. */
struct unit {
    size_t seg;
    uint32_t block, len;
    const uint8_t *data;
    uint8_t *own; /* data came from held bytes */
    int64_t owner;
    enum { UNIT_OK, UNIT_BAD_HASH, UNIT_IO } result;
    int err;
    bool synced; /* its file was fdatasync'ed by a group sync */
};

/* A pending AddData. */
struct op {
    uint64_t request_id;
    uint64_t offset; /* content offset of data[0], for log lines */
    struct content_handle *h;
    struct conn *c;
    struct content_daemon *cd;
    atomic_bool aborted; /* answered with ERROR_OPERATION_ABORTED; commit nothing */
    uint8_t *data;
    size_t len;
    struct unit *units;
    size_t nunits;
    struct op *sync_next; /* on the group-sync list or batch */
    LIST_ENTRY(op) link;
};

struct content_handle {
    uint64_t id;
    uint8_t tag[STORE_TAG_SIZE];
    unsigned refs;  /* the connection's list, plus each op */
    bool closed;
    struct ci_stream *stream;
    struct ci_info *ci; /* set at Complete; read-only afterwards (workers read it) */
    bool *bound;        /* per segment: hashes bound to the segment ID (shareable) */
    uint64_t read_lo, read_hi; /* the range reads serve: [S, S+L) */
    uint64_t add_lo, add_hi;   /* AddData bounds: the listed blocks, whole */
    uint64_t cursor;
    struct held *held;
    size_t held_bytes;
    size_t ci_bytes; /* content information fed (counted in content_conn.memory) */
    LIST_HEAD(, op) ops;
    struct slots *slots;  /* reads' cached slot map of one segment (read_slots) */
    uint64_t complete_id; /* a Complete waiting for the flush batch (complete_wait) */
    struct conn *complete_conn;
    LIST_ENTRY(content_handle) wait_link;
    uint64_t slots_gen;   /* cd->blocks_gen it was loaded at */
    LIST_ENTRY(content_handle) link;
};

struct content_conn {
    uint64_t next_handle;
    unsigned nhandles;
    size_t memory; /* content information fed + held bytes, all handles (CONTENT_CONN_MEMORY_MAX) */
    LIST_HEAD(, content_handle) handles;
};

/* ---- daemon-wide ---- */

int content_init(struct daemon *d)
{
    struct content_daemon *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return -1;
    if (bs_open(d->cfg.db_path, d->workers, &cd->bs) != 0 || bs_reconcile(cd->bs, d->store) != 0) {
        bs_close(cd->bs);
        free(cd);
        return -1;
    }
    store_set_reclaim_hook(d->store, bs_reclaim, cd->bs);
    cd->d = d;
    cd->sync_tail = &cd->sync_head;
    cd->commit_wait_tail = &cd->commit_wait;
    LIST_INIT(&cd->complete_wait);
    d->content = cd;
    return 0;
}

void content_free(struct daemon *d)
{
    struct content_daemon *cd = d->content;
    if (!cd)
        return;
    store_set_reclaim_hook(d->store, NULL, NULL);
    bs_close(cd->bs);
    free(cd);
    d->content = NULL;
}

struct blockstore *content_blockstore(const struct daemon *d)
{
    const struct content_daemon *cd = d->content;
    return cd ? cd->bs : NULL;
}

/* ---- handles ---- */

static void held_free(struct held *hb)
{
    free(hb->buf);
    free(hb->have);
    free(hb);
}

static void handle_unref(struct content_handle *h)
{
    if (--h->refs)
        return;
    while (h->held) {
        struct held *hb = h->held;
        h->held = hb->next;
        held_free(hb);
    }
    ci_stream_free(h->stream);
    ci_info_free(h->ci);
    free(h->bound);
    free(h->slots);
    free(h);
}

void content_blocks_changed(struct daemon *d)
{
    struct content_daemon *cd = d->content;
    if (cd)
        cd->blocks_gen++;
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

static struct content_handle *find_handle(struct conn *c, uint64_t id)
{
    struct content_conn *cc = c->content;
    struct content_handle *h;
    if (cc)
        LIST_FOREACH(h, &cc->handles, link)
            if (h->id == id)
                return h;
    return NULL;
}

static void reply_count(struct conn *c, uint64_t id, uint64_t bytes)
{
    Peerdist__CountReply cr = PEERDIST__COUNT_REPLY__INIT;
    cr.bytes = bytes;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_COUNT;
    r.count = &cr;
    conn_send(c, &r);
}

/* Answers every pending op of h (or just request_id) with ERROR_OPERATION_ABORTED. */
static unsigned abort_ops(struct content_handle *h, uint64_t request_id)
{
    unsigned n = 0;
    struct op *op;
    LIST_FOREACH(op, &h->ops, link) {
        if (atomic_load(&op->aborted) || (request_id && op->request_id != request_id))
            continue;
        atomic_store(&op->aborted, true);
        dispatch_reply_status(op->c, op->request_id, ERROR_OPERATION_ABORTED);
        n++;
    }
    return n;
}

static void handle_close(struct content_conn *cc, struct content_handle *h)
{
    abort_ops(h, 0);
    LIST_REMOVE(h, link);
    cc->nhandles--;
    h->closed = true;
    while (h->held) { /* lost, never served wrong (DESIGN.md, What a completion promises) */
        struct held *hb = h->held;
        h->held = hb->next;
        held_free(hb);
    }
    cc->memory -= h->held_bytes + h->ci_bytes;
    h->held_bytes = h->ci_bytes = 0;
    handle_unref(h);
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

static void handle_close_content(struct conn *c, uint64_t id, const Peerdist__CloseContentRequest *o)
{
    struct content_handle *h = find_handle(c, o->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    handle_close(c->content, h);
    dispatch_reply_status(c, id, ERROR_SUCCESS);
}

/* ---- content information ---- */

static void log_refusal(struct conn *c, const char *what, const struct ci_error *e)
{
    log_warn("connection %llu (uid %u pid %d): %s refused: %s (byte %zu, error %u)",
        (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, what, e->reason, e->offset,
        (unsigned)e->code);
}

static void handle_add_content_info(struct conn *c, uint64_t id, const Peerdist__AddContentInfoRequest *a)
{
    struct content_handle *h = find_handle(c, a->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    if (h->ci)
        return dispatch_reply_status(c, id, PEERDIST_ERROR_ALREADY_COMPLETED);
    struct content_conn *cc = c->content;
    if (cc->memory + a->data.len > CONTENT_CONN_MEMORY_MAX) {
        log_warn("connection %llu (uid %u pid %d): AddContentInformation refused: more than %u "
                 "bytes of content information and held blocks on this connection",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, CONTENT_CONN_MEMORY_MAX);
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    }
    if (!h->stream && !(h->stream = ci_stream_new(CONTENT_INFO_MAX)))
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    struct ci_error e = {0};
    DWORD rc = ci_stream_feed(h->stream, a->data.data, a->data.len, &e);
    if (rc != ERROR_SUCCESS) {
        log_refusal(c, "content information", &e);
        return dispatch_reply_status(c, id, rc);
    }
    h->ci_bytes += a->data.len;
    cc->memory += a->data.len;
    reply_count(c, id, a->data.len);
}

/* Bound segments' hashes are now trusted: private rows with the same hash become shared. */
struct promote_ctx {
    const struct ci_info *ci;
    const struct ci_segment *seg;
    uint32_t blocks[CONTENT_SLOTS_MAX];
    size_t n;
};

static const uint8_t *listed_hash(const struct ci_info *ci, const struct ci_segment *seg,
    uint32_t block)
{
    if (ci->version == CI_VERSION_2)
        return block == 0 ? seg->hod : NULL;
    if (block < seg->first_block || block - seg->first_block >= seg->n_blocks)
        return NULL;
    return seg->block_hashes + (size_t)(block - seg->first_block) * ci->digest_len;
}

static int promote_row(void *arg, const struct store_block_row *row)
{
    struct promote_ctx *p = arg;
    const uint8_t *hash = listed_hash(p->ci, p->seg, row->block);
    if (hash && row->hash_len == p->ci->digest_len && memcmp(hash, row->hash, row->hash_len) == 0 &&
        p->n < CONTENT_SLOTS_MAX)
        p->blocks[p->n++] = row->block;
    return 0;
}

static void promote_bound(struct conn *c, struct content_handle *h)
{
    struct store *st = c->d->store;
    struct promote_ctx *p = malloc(sizeof(*p));
    if (!p)
        return; /* promotion is an optimisation: the blocks stay readable to their uid */
    for (size_t i = 0; i < h->ci->n_segments; i++) {
        if (!h->bound[i] || h->ci->version != CI_VERSION_1)
            continue;
        p->ci = h->ci;
        p->seg = &h->ci->segments[i];
        p->n = 0;
        const struct ci_segment *seg = p->seg;
        if (store_segment_private_blocks(st, seg->id, h->ci->digest_len, promote_row, p) != 0)
            break;
        for (size_t k = 0; k < p->n; k++)
            store_block_promote(st, seg->id, h->ci->digest_len, p->blocks[k],
                listed_hash(h->ci, seg, p->blocks[k]), h->ci->digest_len);
    }
    free(p);
    content_blocks_changed(c->d);
}

/* The checks of DESIGN.md (Trust in stored bytes) and what the handle may read and add. */
static DWORD validate(struct conn *c, struct content_handle *h, struct ci_info *ci)
{
    h->bound = calloc(ci->n_segments ? ci->n_segments : 1, sizeof(bool));
    if (!h->bound)
        return ERROR_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; i < ci->n_segments; i++) {
        const struct ci_segment *seg = &ci->segments[i];
        const char *why = NULL;
        if (ci->version == CI_VERSION_1) {
            if (seg->block_size != BS_SLOT_SIZE || seg->n_blocks == 0)
                why = "V1 segment with an unusual block size or no block hashes";
            else if (ci_segment_has_full_list(seg) && !(h->bound[i] = ci_verify_segment_hashes(ci, i)))
                why = "V1 block-hash list does not hash to the segment's HoD";
        } else {
            if (seg->length == 0 || seg->length > CI_V2_PARSE_SEGMENT_MAX)
                why = "V2 segment length out of bounds";
            h->bound[i] = true; /* bytes are checked against HoD itself */
        }
        if (why) {
            log_warn("connection %llu (uid %u pid %d): content information refused: segment %zu: %s",
                (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, i, why);
            return PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO;
        }
    }
    h->read_lo = ci->range_offset;
    h->read_hi = ci->range_offset + ci->range_length;
    if (ci->n_segments) {
        const struct ci_segment *first = &ci->segments[0], *last = &ci->segments[ci->n_segments - 1];
        if (ci->version == CI_VERSION_1) {
            h->add_lo = first->offset + (uint64_t)first->first_block * first->block_size;
            uint64_t end = (uint64_t)(last->first_block + last->n_blocks) * last->block_size;
            h->add_hi = last->offset + (end < last->length ? end : last->length);
        } else {
            h->add_lo = first->offset;
            h->add_hi = last->offset + last->length;
        }
    }
    if (h->read_lo < h->add_lo)
        h->read_lo = h->add_lo;
    if (h->read_hi > h->add_hi)
        h->read_hi = h->add_hi;
    if (h->read_hi < h->read_lo)
        h->read_hi = h->read_lo;
    h->cursor = h->read_lo;
    return ERROR_SUCCESS;
}

static void handle_complete_content_info(struct conn *c, uint64_t id,
    const Peerdist__CompleteContentInfoRequest *a)
{
    struct content_handle *h = find_handle(c, a->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    if (h->ci)
        return dispatch_reply_status(c, id, PEERDIST_ERROR_ALREADY_COMPLETED);
    if (!h->stream && !(h->stream = ci_stream_new(CONTENT_INFO_MAX)))
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    struct ci_error e = {0};
    struct ci_info *ci = NULL;
    DWORD rc = ci_stream_finish(h->stream, &ci, &e);
    if (rc != ERROR_SUCCESS) {
        log_refusal(c, "content information", &e);
        return dispatch_reply_status(c, id, rc);
    }
    rc = validate(c, h, ci);
    if (rc != ERROR_SUCCESS) {
        free(h->bound);
        h->bound = NULL;
        ci_info_free(ci);
        return dispatch_reply_status(c, id, rc);
    }
    ci_stream_free(h->stream);
    h->stream = NULL;
    h->ci = ci;
    if (c->d->flush_running) { /* promotion writes: after the flush batch */
        struct content_daemon *cd = c->d->content;
        h->complete_id = id;
        h->complete_conn = c;
        h->refs++;
        c->refs++;
        LIST_INSERT_HEAD(&cd->complete_wait, h, wait_link);
        return;
    }
    promote_bound(c, h);
    dispatch_reply_status(c, id, ERROR_SUCCESS);
}

static void op_finish(struct op *op);

void content_writes_resume(struct daemon *d)
{
    struct content_daemon *cd = d->content;
    if (!cd)
        return;
    struct op *batch = cd->commit_wait;
    cd->commit_wait = NULL;
    cd->commit_wait_tail = &cd->commit_wait;
    while (batch) {
        struct op *op = batch;
        batch = op->sync_next;
        op_finish(op);
    }
    while (!LIST_EMPTY(&cd->complete_wait)) {
        struct content_handle *h = LIST_FIRST(&cd->complete_wait);
        LIST_REMOVE(h, wait_link);
        struct conn *c = h->complete_conn;
        if (h->closed) {
            dispatch_reply_status(c, h->complete_id, ERROR_OPERATION_ABORTED);
        } else {
            promote_bound(c, h);
            dispatch_reply_status(c, h->complete_id, ERROR_SUCCESS);
        }
        handle_unref(h);
        conn_unref(c);
    }
}

/* ---- where bytes are: segments, blocks and the slots a handle may read ---- */

/* The segment holding content offset off (off within the listed segments). */
static size_t seg_at(const struct ci_info *ci, uint64_t off)
{
    size_t lo = 0, hi = ci->n_segments;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ci->segments[mid].offset <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t seg_block_size(const struct ci_info *ci, const struct ci_segment *seg)
{
    return ci->version == CI_VERSION_2 ? seg->length : seg->block_size;
}

/* Per block of one segment: the file holding bytes this handle may read, or SLOT_NONE. */
struct slots {
    const struct ci_info *ci;
    const struct ci_segment *seg;
    uint32_t uid;
    size_t seg_index; /* which segment is loaded; SIZE_MAX none */
    int64_t file[CONTENT_SLOTS_MAX];
};

static int slot_row(void *arg, const struct store_block_row *row)
{
    struct slots *s = arg;
    if (row->block >= CONTENT_SLOTS_MAX || s->file[row->block] != SLOT_NONE)
        return 0;
    const uint8_t *hash = listed_hash(s->ci, s->seg, row->block);
    /* Never serve bytes that do not match this handle's own hash for the block. */
    if (!hash || row->hash_len != s->ci->digest_len || memcmp(hash, row->hash, row->hash_len) != 0)
        return 0;
    if (row->length != ci_block_length(s->seg, row->block))
        return 0;
    if (row->owner == STORE_OWNER_SHARED || row->owner == (int64_t)s->uid)
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
    return 0;
}

/* Position of content offset off: segment, block, and where the block lies. */
struct pos {
    size_t seg;
    uint32_t block;
    uint64_t start; /* content offset of the block */
    uint32_t len;
};

static void pos_at(const struct ci_info *ci, uint64_t off, struct pos *p)
{
    p->seg = seg_at(ci, off);
    const struct ci_segment *seg = &ci->segments[p->seg];
    uint32_t bsz = seg_block_size(ci, seg);
    p->block = (uint32_t)((off - seg->offset) / bsz);
    p->start = seg->offset + (uint64_t)p->block * bsz;
    p->len = ci_block_length(seg, p->block);
}

/* ---- AddData ---- */

static void unit_free_all(struct op *op)
{
    for (size_t i = 0; i < op->nunits; i++)
        free(op->units[i].own);
    free(op->units);
}

static void op_free(struct op *op)
{
    unit_free_all(op);
    free(op->data);
    free(op);
}

static struct held *held_find(struct content_handle *h, size_t seg, uint32_t block, struct held ***prev)
{
    struct held **pp = &h->held;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->seg == seg && (*pp)->block == block)
            break;
    if (prev)
        *prev = pp;
    return *pp;
}

static size_t held_cost(uint32_t len)
{
    return len + (len + 7) / 8;
}

static void mark_file_errors(struct op *op);

/* Worker: verify every complete block and write the good ones (group_sync_work syncs them). */
static void op_work(void *arg)
{
    struct op *op = arg;
    const struct ci_info *ci = op->h->ci;
    struct blockstore *bs = op->cd->bs;
    int fd = -1;
    const struct unit *fd_for = NULL;
    for (size_t i = 0; i < op->nunits && !atomic_load(&op->aborted); i++) {
        struct unit *u = &op->units[i];
        const struct ci_segment *seg = &ci->segments[u->seg];
        bool ok = ci->version == CI_VERSION_2 ? ci_verify_segment_data(ci, u->seg, u->data, u->len)
                                              : ci_verify_block(ci, u->seg, u->block, u->data, u->len);
        if (!ok) {
            u->result = UNIT_BAD_HASH;
            continue;
        }
        if (!fd_for || fd_for->seg != u->seg || fd_for->owner != u->owner) {
            if (fd >= 0)
                close(fd); /* synced later, with other ops' writes to it (group sync) */
            fd = bs_open_write(bs, seg->id, ci->digest_len, u->owner);
            fd_for = u;
        }
        uint64_t at = (uint64_t)u->block * BS_SLOT_SIZE;
        size_t done = 0;
        while (fd >= 0 && done < u->len) {
            ssize_t w = pwrite(fd, u->data + done, u->len - done, (off_t)(at + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        if (done != u->len) {
            u->result = UNIT_IO;
            u->err = errno ? errno : EIO;
        }
    }
    if (fd >= 0)
        close(fd);
    mark_file_errors(op);
}

/* A failed write or sync of a file fails every block of the op written to it. */
static void mark_file_errors(struct op *op)
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
static DWORD op_commit(struct op *op, bool *bad)
{
    struct content_handle *h = op->h;
    struct conn *c = op->c;
    const struct ci_info *ci = h->ci;
    struct store *st = c->d->store;
    DWORD status = ERROR_SUCCESS;
    int io_err = 0;
    if (store_begin(st) != 0)
        return ERROR_INTERNAL_ERROR;
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
                listed_hash(ci, seg, u->block), ci->digest_len, u->len, u->owner) != 0 ||
            store_label_put(st, c->uid, h->tag, seg->id, ci->digest_len, u->block, u->len) != 0) {
            store_rollback(st);
            return ERROR_INTERNAL_ERROR;
        }
    }
    if (store_commit(st) != 0) {
        store_rollback(st);
        return sqlite3_errcode(store_db(st)) == SQLITE_FULL ? ERROR_DISK_FULL : ERROR_INTERNAL_ERROR;
    }
    content_blocks_changed(c->d);
    if (io_err) {
        log_error("connection %llu (uid %u pid %d): writing block bytes: %s",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, strerror(io_err));
        status = io_err == ENOSPC ? ERROR_DISK_FULL : ERROR_WRITE_FAULT;
    }
    return status;
}

/* Loop: commit (unless aborted), reply, release. */
static void op_finish(struct op *op)
{
    struct content_handle *h = op->h;
    struct conn *c = op->c;
    LIST_REMOVE(op, link);
    if (!atomic_load(&op->aborted) && !h->closed) {
        bool bad = false;
        DWORD status = op_commit(op, &bad);
        if (status == ERROR_SUCCESS && bad) {
            status = ERROR_INVALID_DATA;
            log_warn("connection %llu (uid %u pid %d): AddData at offset %llu: bytes do not match "
                     "their hash; the failing blocks were not stored",
                (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid,
                (unsigned long long)op->offset);
        }
        if (status == ERROR_SUCCESS)
            reply_count(c, op->request_id, op->len);
        else
            dispatch_reply_status(c, op->request_id, status);
    }
    const struct ci_info *ci = h->ci;
    for (size_t i = 0; i < op->nunits; i++)
        bs_unpin(op->cd->bs, ci->segments[op->units[i].seg].id, ci->digest_len,
            op->units[i].owner, op->units[i].block);
    op_free(op);
    handle_unref(h);
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
            int fd = bs_open_write(cd->bs, seg, ci->digest_len, u->owner);
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
        mark_file_errors(op);
    }
}

static void group_sync_kick(struct content_daemon *cd);

static void group_sync_done(void *arg)
{
    struct op *batch = arg;
    struct content_daemon *cd = batch->cd;
    cd->syncing = false;
    if (cd->d->flush_running) { /* commit after the flush batch: content_writes_resume */
        *cd->commit_wait_tail = batch;
        while (*cd->commit_wait_tail)
            cd->commit_wait_tail = &(*cd->commit_wait_tail)->sync_next;
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
    if (cd->d->stopping || worker_submit(cd->d->workers, group_sync_work, group_sync_done, batch) != 0) {
        group_sync_work(batch);
        group_sync_done(batch);
    }
}

/* Loop: the op's bytes are written; it waits for the next group sync (or ends now). */
static void op_written(void *arg)
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

/* Adds bytes [a, b) of the call (content offsets) to a held block; true once it is whole. */
static bool held_fill(struct held *hb, uint64_t block_start, uint64_t a, uint64_t b,
    const uint8_t *src)
{
    uint32_t from = (uint32_t)(a - block_start), to = (uint32_t)(b - block_start);
    memcpy(hb->buf + from, src, to - from);
    for (uint32_t k = from; k < to; k++) {
        uint8_t bit = (uint8_t)(1u << (k & 7));
        if (!(hb->have[k >> 3] & bit)) {
            hb->have[k >> 3] |= bit;
            hb->filled++;
        }
    }
    return hb->filled == hb->len;
}

static void handle_add_data(struct conn *c, uint64_t id, const Peerdist__AddDataRequest *a)
{
    struct content_daemon *cd = c->d->content;
    if (c->d->cfg.mode == MODE_DISABLED)
        return dispatch_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
    struct content_handle *h = find_handle(c, a->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    if (!h->ci)
        return dispatch_reply_status(c, id, PEERDIST_ERROR_NOT_INITIALIZED);
    if (a->data.len > PD_MAX_CHUNK)
        return dispatch_reply_status(c, id, ERROR_INVALID_PARAMETER);
    const struct ci_info *ci = h->ci;
    uint64_t off = a->offset, end = a->offset + a->data.len;
    if (end < off || off < h->add_lo || end > h->add_hi || (a->data.len == 0 && off > h->add_hi)) {
        log_warn("connection %llu (uid %u pid %d): AddData [%llu, %llu) out of bounds [%llu, %llu)",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, (unsigned long long)off,
            (unsigned long long)end, (unsigned long long)h->add_lo, (unsigned long long)h->add_hi);
        return dispatch_reply_status(c, id, PEERDIST_ERROR_OUT_OF_BOUNDS);
    }
    if (a->data.len == 0)
        return reply_count(c, id, 0);
    /* Pass 1: what more must be held (refuse before touching anything). */
    size_t need = 0, nunits = 0;
    for (uint64_t p = off; p < end;) {
        struct pos ps;
        pos_at(ci, p, &ps);
        uint64_t bend = ps.start + ps.len, to = end < bend ? end : bend;
        if (!listed_hash(ci, &ci->segments[ps.seg], ps.block))
            return dispatch_reply_status(c, id, PEERDIST_ERROR_OUT_OF_BOUNDS);
        if (p == ps.start && to == bend)
            nunits++;
        else {
            struct held *hb = held_find(h, ps.seg, ps.block, NULL);
            if (!hb)
                need += held_cost(ps.len);
            nunits++; /* may complete */
        }
        p = to;
    }
    struct content_conn *cc = c->content;
    if (h->held_bytes + need > CONTENT_HELD_MAX || cc->memory + need > CONTENT_CONN_MEMORY_MAX) {
        log_warn("connection %llu (uid %u pid %d): AddData refused: incomplete blocks held would "
                 "pass %u bytes for handle %llu or %u bytes for the connection",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, CONTENT_HELD_MAX,
            (unsigned long long)h->id, CONTENT_CONN_MEMORY_MAX);
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    }
    struct op *op = calloc(1, sizeof(*op));
    if (!op || !(op->units = calloc(nunits, sizeof(*op->units))) ||
        !(op->data = malloc(a->data.len)))
        goto nomem;
    memcpy(op->data, a->data.data, a->data.len);
    op->len = a->data.len;
    op->request_id = id;
    op->offset = off;
    op->h = h;
    op->c = c;
    op->cd = cd;
    /* Pass 2: whole blocks go to the worker; partial ones are held, and go once whole. */
    for (uint64_t p = off; p < end;) {
        struct pos ps;
        pos_at(ci, p, &ps);
        uint64_t bend = ps.start + ps.len, to = end < bend ? end : bend;
        const uint8_t *src = op->data + (p - off);
        struct held **prev;
        struct held *hb = held_find(h, ps.seg, ps.block, &prev);
        struct unit *u = &op->units[op->nunits];
        u->seg = ps.seg;
        u->block = ps.block;
        u->len = ps.len;
        u->owner = h->bound[ps.seg] ? STORE_OWNER_SHARED : (int64_t)c->uid;
        if (p == ps.start && to == bend) {
            u->data = src;
            op->nunits++;
            if (hb) { /* the whole block came at once: the partial copy is moot */
                *prev = hb->next;
                h->held_bytes -= held_cost(hb->len);
                cc->memory -= held_cost(hb->len);
                held_free(hb);
            }
        } else {
            if (!hb) {
                hb = calloc(1, sizeof(*hb));
                if (!hb || !(hb->buf = malloc(ps.len)) || !(hb->have = calloc((ps.len + 7) / 8, 1))) {
                    if (hb)
                        held_free(hb);
                    goto nomem_late;
                }
                hb->seg = ps.seg;
                hb->block = ps.block;
                hb->len = ps.len;
                hb->next = h->held;
                h->held = hb;
                h->held_bytes += held_cost(ps.len);
                cc->memory += held_cost(ps.len);
                held_find(h, ps.seg, ps.block, &prev);
            }
            if (held_fill(hb, ps.start, p, to, src)) {
                *prev = hb->next;
                h->held_bytes -= held_cost(hb->len);
                cc->memory -= held_cost(hb->len);
                u->own = hb->buf;
                u->data = hb->buf;
                hb->buf = NULL;
                held_free(hb);
                op->nunits++;
            }
        }
        p = to;
    }
    if (op->nunits == 0) { /* only held bytes: accepted, nothing to verify yet */
        op_free(op);
        return reply_count(c, id, a->data.len);
    }
    for (size_t i = 0; i < op->nunits; i++)
        bs_pin(cd->bs, ci->segments[op->units[i].seg].id, ci->digest_len, op->units[i].owner,
            op->units[i].block);
    LIST_INSERT_HEAD(&h->ops, op, link);
    h->refs++;
    c->refs++;
    if (worker_submit(c->d->workers, op_work, op_written, op) != 0) {
        LIST_REMOVE(op, link);
        for (size_t i = 0; i < op->nunits; i++)
            bs_unpin(cd->bs, ci->segments[op->units[i].seg].id, ci->digest_len,
                op->units[i].owner, op->units[i].block);
        h->refs--;
        c->refs--;
        goto nomem;
    }
    return;
nomem_late:
    /* Some partial bytes may be held already: they are correct bytes, kept for later. */
nomem:
    if (op)
        op_free(op);
    dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
}

/* ---- reads ---- */

/* Readable bytes from off (stopping at hi): contiguous run length; the slots stay loaded. */
static int64_t readable_run(struct store *st, struct slots *s, uint64_t off, uint64_t hi, uint64_t limit)
{
    uint64_t p = off;
    while (p < hi && p - off < limit) {
        struct pos ps;
        pos_at(s->ci, p, &ps);
        if (slots_load(st, s, ps.seg) != 0)
            return -1;
        if (s->file[ps.block] == SLOT_NONE)
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
        pos_at(s->ci, p, &ps);
        if (slots_load(st, s, ps.seg) != 0)
            return -1;
        if (s->file[ps.block] != SLOT_NONE)
            break;
        p = ps.start + ps.len;
    }
    return (int64_t)((p < hi ? p : hi) - off);
}

/* Copies n readable bytes from off; consecutive blocks in one file go in one read. */
static int copy_out(struct content_daemon *cd, struct store *st, struct slots *s, uint64_t off,
    uint8_t *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        struct pos ps;
        pos_at(s->ci, off + done, &ps);
        if (slots_load(st, s, ps.seg) != 0 || s->file[ps.block] == SLOT_NONE)
            return -1;
        uint64_t in = off + done - ps.start;
        int64_t file = s->file[ps.block];
        size_t k = ps.len - in < n - done ? (size_t)(ps.len - in) : n - done;
        /* Following blocks of the segment in the same file sit right after this one. */
        uint32_t nb = ci_segment_block_count(s->seg);
        for (uint32_t b = ps.block + 1; done + k < n && b < nb && s->file[b] == file &&
                                        ci_block_length(s->seg, b - 1) == BS_SLOT_SIZE; b++) {
            uint32_t blen = ci_block_length(s->seg, b);
            k += n - done - k < blen ? n - done - k : blen;
        }
        if (bs_read(cd->bs, s->seg->id, s->ci->digest_len, file,
                (uint64_t)ps.block * BS_SLOT_SIZE + in, buf + done, k) != 0)
            return -1;
        done += k;
    }
    return 0;
}

/* The handle's slot map, reused while the block index is unchanged since it was loaded. */
static struct slots *read_slots(struct content_daemon *cd, struct content_handle *h, uint32_t uid)
{
    if (!h->slots && !(h->slots = malloc(sizeof(*h->slots))))
        return NULL;
    if (h->slots_gen != cd->blocks_gen || h->slots->ci != h->ci) {
        h->slots->ci = h->ci;
        h->slots->uid = uid;
        h->slots->seg_index = SIZE_MAX;
        h->slots_gen = cd->blocks_gen;
    }
    return h->slots;
}

static void handle_read(struct conn *c, uint64_t id, const Peerdist__ReadRequest *rq)
{
    struct content_daemon *cd = c->d->content;
    struct store *st = c->d->store;
    if (c->d->cfg.mode == MODE_DISABLED)
        return dispatch_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
    struct content_handle *h = find_handle(c, rq->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    if (!h->ci)
        return dispatch_reply_status(c, id, PEERDIST_ERROR_NOT_INITIALIZED);
    uint64_t off = rq->stream ? h->cursor : rq->offset;
    Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_READ;
    r.read = &rr;
    rr.offset = off;
    if (off < h->read_lo || off >= h->read_hi) {
        r.status = PEERDIST_ERROR_NO_MORE;
        return conn_send(c, &r);
    }
    struct slots *s = read_slots(cd, h, c->uid);
    if (!s)
        return dispatch_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
    uint64_t limit = rq->max_bytes == 0 ? UINT64_MAX
                                        : (rq->max_bytes < PD_MAX_CHUNK ? rq->max_bytes : PD_MAX_CHUNK);
    int64_t n = readable_run(st, s, off, h->read_hi, limit);
    if (n < 0)
        goto fail;
    if (rq->max_bytes == 0) {
        rr.length = (uint64_t)n; /* a query: the cursor stays */
    } else if (n == 0) {
        int64_t m = missing_run(st, s, off, h->read_hi);
        if (m < 0)
            goto fail;
        r.status = PEERDIST_ERROR_MISSING_DATA;
        rr.length = (uint64_t)m;
        if (rq->stream)
            h->cursor = off + (uint64_t)m;
    } else {
        /* The bytes go straight from the data file into the reply frame: no extra copy. */
        size_t total = frame_read_reply_size(id, off, (size_t)n);
        uint8_t *frame = conn_reserve(c, total);
        if (!frame)
            return; /* out of memory: the connection was closed, h with it */
        uint8_t *data = frame_read_reply_pack(frame, id, off, (size_t)n);
        if (rq->stream)
            h->cursor = off + (uint64_t)n;
        if (copy_out(cd, st, s, off, data, (size_t)n) == 0) {
            conn_commit(c, frame, total);
            return;
        }
        log_error("connection %llu (uid %u pid %d): reading cached bytes at %llu failed; "
                  "reported as missing",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, (unsigned long long)off);
        r.status = PEERDIST_ERROR_MISSING_DATA;
        rr.length = (uint64_t)n;
    }
    conn_send(c, &r);
    return;
fail:
    h->slots->seg_index = SIZE_MAX; /* reload next time */
    dispatch_reply_status(c, id, ERROR_INTERNAL_ERROR);
}

/* ---- cancel, tags ---- */

static void handle_cancel(struct conn *c, uint64_t id, const Peerdist__CancelRequest *rq)
{
    struct content_handle *h = find_handle(c, rq->handle);
    if (!h)
        return dispatch_reply_status(c, id, ERROR_INVALID_HANDLE);
    unsigned n = abort_ops(h, rq->request_id);
    dispatch_reply_status(c, id, n ? ERROR_SUCCESS : PEERDIST_ERROR_OPERATION_NOTFOUND);
}

struct tags_ctx {
    Peerdist__TagInfo *infos;
    Peerdist__TagInfo **ptrs;
    uint8_t (*tags)[STORE_TAG_SIZE];
    size_t n, cap;
    bool oom;
};

static void tag_row(void *arg, const uint8_t tag[STORE_TAG_SIZE], uint64_t blocks, uint64_t bytes)
{
    struct tags_ctx *t = arg;
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
    memcpy(t->tags[t->n], tag, STORE_TAG_SIZE);
    Peerdist__TagInfo ti = PEERDIST__TAG_INFO__INIT;
    ti.blocks = blocks;
    ti.bytes = bytes;
    t->infos[t->n++] = ti;
}

static void handle_tags(struct conn *c, uint64_t id)
{
    struct tags_ctx t = {0};
    DWORD status = ERROR_SUCCESS;
    if (store_tags(c->d->store, c->uid, tag_row, &t) != 0)
        status = ERROR_INTERNAL_ERROR;
    else if (t.oom || (t.n && !(t.ptrs = calloc(t.n, sizeof(*t.ptrs)))))
        status = ERROR_NOT_ENOUGH_MEMORY;
    if (status != ERROR_SUCCESS) {
        dispatch_reply_status(c, id, status);
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
        handle_add_content_info(c, req->id, req->add_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO:
        handle_complete_content_info(c, req->id, req->complete_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_ADD_DATA:
        handle_add_data(c, req->id, req->add_data);
        return true;
    case PEERDIST__REQUEST__BODY_READ:
        handle_read(c, req->id, req->read);
        return true;
    case PEERDIST__REQUEST__BODY_CANCEL:
        if (req->cancel->kind != 0)
            return false; /* publication streams and content-information handles: publish.c */
        handle_cancel(c, req->id, req->cancel);
        return true;
    case PEERDIST__REQUEST__BODY_TAGS:
        handle_tags(c, req->id);
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
    /* Pending ops hold their handle and the connection: their done frees what is left. */
    while (!LIST_EMPTY(&cc->handles))
        handle_close(cc, LIST_FIRST(&cc->handles));
    free(cc);
    c->content = NULL;
}
