/* SPDX-License-Identifier: MIT */
/*
 * content-add.c - AddData in the daemon: the call's bytes checked against the handle's bounds,
 * cut into blocks (whole blocks go to a worker, parts of blocks are held until the rest
 * arrives), each complete block verified against the hash its content information lists and
 * written to its data file on the worker. content-commit.c takes it from there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockstore.h"
#include "budget.h"
#include "content-internal.h"
#include "disk.h"
#include "log.h"
#include "worker.h"

static struct held *held_find(struct content_handle *h, size_t seg, uint32_t block,
    struct held ***prev)
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

/* Worker: verify every complete block and write the good ones (the group sync syncs them). */
static void op_work(void *arg)
{
    struct op *op = arg;
    const struct ci_info *ci = op->h->ci;
    struct blockstore *bs = op->cd->d->bs;
    int fd = -1;
    op->began_ms[ADD_VERIFY_WRITE] = daemon_mono_ms();
    const struct unit *fd_for = NULL;
    if (op->fill && op->fill(op->fill_arg, op->data, op->len) != 0) {
        for (size_t i = 0; i < op->nunits; i++)
            op->units[i].result = UNIT_BAD_HASH; /* undecipherable: as bytes failing a hash */
        return;
    }
    for (size_t i = 0; i < op->nunits && !atomic_load(&op->aborted); i++) {
        struct unit *u = &op->units[i];
        const struct ci_segment *seg = &ci->segments[u->seg];
        bool ok = ci->version == CI_VERSION_2
            ? ci_verify_segment_data(ci, u->seg, u->data, u->len)
            : ci_verify_block(ci, u->seg, u->block, u->data, u->len);
        if (!ok) {
            u->result = UNIT_BAD_HASH;
            continue;
        }
        if (!fd_for || fd_for->seg != u->seg || fd_for->owner != u->owner) {
            if (fd >= 0)
                close(fd); /* synced later, with other ops' writes to it (group sync) */
            /* V1 only from spares: a tidy punches by 64 KiB block, a V2 segment is one. */
            fd = bs_open_write(bs, seg->id, ci->digest_len, u->owner,
                ci->version == CI_VERSION_2 ? 0 : seg->length);
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
    content_mark_file_errors(op);
    op->began_ms[ADD_SYNC_WAIT] = daemon_mono_ms();
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

/*
 * Step 1: which bytes of the call to store. A whole-content handle knows where the content
 * ends: a call with any byte past it is refused (PEERDIST_ERROR_OUT_OF_BOUNDS) and stores
 * nothing. A ranged handle cannot know the end, and Microsoft documents that AddData accepts
 * data outside the range: the blocks its content information lists are stored, every other
 * byte is dropped, and the reply counts them all (DESIGN.md, API behaviour). [*lo, *hi) is
 * the part to store, empty when nothing of the call is listed.
 */
static DWORD add_bounds(struct conn *c, const struct content_handle *h, uint64_t off, size_t len,
    uint64_t *lo, uint64_t *hi)
{
    uint64_t end = off + len;
    if (end < off ||
        (h->ci->whole && (off < h->add_lo || end > h->add_hi || (len == 0 && off > h->add_hi)))) {
        log_warn(CONN_FMT ": AddData [%llu, %llu) out of bounds [%llu, %llu)", CONN_ARGS(c),
            (unsigned long long)off, (unsigned long long)end, (unsigned long long)h->add_lo,
            (unsigned long long)h->add_hi);
        return PEERDIST_ERROR_OUT_OF_BOUNDS;
    }
    *lo = off > h->add_lo ? off : h->add_lo;
    *hi = end < h->add_hi ? end : h->add_hi;
    if (*hi < *lo)
        *hi = *lo;
    return ERROR_SUCCESS;
}

/*
 * Step 2: the units [lo, hi) can make (every block it touches may complete) and the memory it
 * would hold; refused before anything is touched if the handle or the connection would pass
 * its limit, or the uid its share of the memory budget. The memory is taken (*prepaid); the
 * held blocks created draw on it, and what they do not use is given back.
 */
static DWORD add_plan(struct conn *c, struct content_handle *h, uint64_t lo, uint64_t hi,
    size_t *nunits, size_t *prepaid)
{
    const struct ci_info *ci = h->ci;
    size_t need = 0;
    *nunits = 0;
    for (uint64_t p = lo; p < hi;) {
        struct pos ps;
        content_pos_at(ci, p, &ps);
        uint64_t bend = ps.start + ps.len, to = hi < bend ? hi : bend;
        if (content_listed_hash(ci, &ci->segments[ps.seg], ps.block)) {
            if ((p != ps.start || to != bend) && !held_find(h, ps.seg, ps.block, NULL))
                need += held_cost(ps.len);
            (*nunits)++;
        }
        p = to;
    }
    struct content_conn *cc = c->content;
    if (h->held_bytes + need > CONTENT_HELD_MAX || cc->memory + need > CONTENT_CONN_MEMORY_MAX) {
        log_warn(CONN_FMT ": AddData refused: incomplete blocks held would pass %u bytes for "
                          "handle %llu or %u bytes for the connection",
            CONN_ARGS(c), CONTENT_HELD_MAX, (unsigned long long)h->id, CONTENT_CONN_MEMORY_MAX);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    if (need && !budget_take(c, need, "AddData (bytes of incomplete blocks)"))
        return ERROR_NOT_ENOUGH_MEMORY;
    *prepaid = need;
    return ERROR_SUCCESS;
}

static void held_unlink(struct conn *c, struct content_handle *h, struct held **prev)
{
    struct held *hb = *prev;
    *prev = hb->next;
    h->held_bytes -= held_cost(hb->len);
    content_memory_give(c, held_cost(hb->len));
}

/*
 * The held copy of (seg, block), created empty if there is none (its memory drawn from
 * *prepaid); NULL when out of memory.
 */
static struct held *held_get(struct content_handle *h, struct content_conn *cc,
    const struct pos *ps, struct held ***prev, size_t *prepaid)
{
    struct held *hb = held_find(h, ps->seg, ps->block, prev);
    if (hb)
        return hb;
    hb = calloc(1, sizeof(*hb));
    if (!hb || !(hb->buf = malloc(ps->len)) || !(hb->have = calloc((ps->len + 7) / 8, 1))) {
        if (hb)
            content_held_free(hb);
        return NULL;
    }
    hb->seg = ps->seg;
    hb->block = ps->block;
    hb->len = ps->len;
    hb->next = h->held;
    h->held = hb;
    h->held_bytes += held_cost(ps->len);
    cc->memory += held_cost(ps->len);
    *prepaid -= held_cost(ps->len); /* add_plan took it */
    held_find(h, ps->seg, ps->block, prev);
    return hb;
}

/*
 * Step 3: whole blocks become units straight from the call's bytes; parts of blocks are held,
 * and a held block that this call completes becomes a unit too. -1 when out of memory (bytes
 * held so far are correct bytes, kept for later).
 */
static int add_split(struct op *op, uint64_t lo, uint64_t hi, size_t *prepaid)
{
    struct content_handle *h = op->h;
    struct content_conn *cc = op->c->content;
    const struct ci_info *ci = h->ci;
    for (uint64_t p = lo; p < hi;) {
        struct pos ps;
        content_pos_at(ci, p, &ps);
        uint64_t bend = ps.start + ps.len, to = hi < bend ? hi : bend;
        const uint8_t *src = op->data + (p - lo);
        struct held **prev;
        struct held *hb;
        const uint8_t *data = NULL;
        uint8_t *own = NULL;
        if (!content_listed_hash(ci, &ci->segments[ps.seg], ps.block)) {
            /* not listed (a ranged handle): dropped, but counted */
        } else if (p == ps.start && to == bend) {
            data = src;
            if ((hb = held_find(h, ps.seg, ps.block, &prev))) {
                held_unlink(op->c, h, prev); /* the whole block came at once: the part is moot */
                content_held_free(hb);
            }
        } else {
            if (!(hb = held_get(h, cc, &ps, &prev, prepaid)))
                return -1;
            if (held_fill(hb, ps.start, p, to, src)) {
                held_unlink(op->c, h, prev);
                own = hb->buf;
                data = own;
                hb->buf = NULL;
                content_held_free(hb);
            }
        }
        if (data) { /* a complete block: add_plan counted it */
            struct unit *u = &op->units[op->nunits++];
            u->seg = ps.seg;
            u->block = ps.block;
            u->len = ps.len;
            u->data = data;
            u->own = own;
            u->owner = h->bound[ps.seg] ? STORE_OWNER_SHARED : (int64_t)op->c->uid;
        }
        p = to;
    }
    return 0;
}

/* Step 4: pin the units' slots and hand the op to a worker (content_op_work). */
static int add_submit(struct op *op)
{
    struct content_handle *h = op->h;
    struct blockstore *bs = op->c->d->bs;
    const struct ci_info *ci = h->ci;
    for (size_t i = 0; i < op->nunits; i++)
        bs_pin(bs, ci->segments[op->units[i].seg].id, ci->digest_len, op->units[i].owner,
            op->units[i].block);
    LIST_INSERT_HEAD(&h->ops, op, link);
    h->refs++;
    op->c->refs++;
    if (worker_submit(op->c->d->workers, op_work, content_op_written, op) == 0)
        return 0;
    LIST_REMOVE(op, link);
    for (size_t i = 0; i < op->nunits; i++)
        bs_unpin(bs, ci->segments[op->units[i].seg].id, ci->digest_len, op->units[i].owner,
            op->units[i].block);
    h->refs--;
    op->c->refs--;
    return -1;
}

/*
 * AddData's bytes [off, off + len) on h: 0 once they are on their way (the op replies, or
 * calls done), else the status to answer with. done == NULL: the request id's reply.
 */
static DWORD add_bytes(struct conn *c, struct content_handle *h, uint64_t id, uint64_t off,
    const uint8_t *bytes, size_t len, void (*done)(void *arg, uint32_t status), void *done_arg,
    int (*fill)(void *arg, uint8_t *out, size_t len), void *fill_arg)
{
    double decoded = daemon_mono_ms();
    uint64_t lo, hi;
    size_t nunits, prepaid = 0;
    DWORD rc = add_bounds(c, h, off, len, &lo, &hi);
    if (rc == ERROR_SUCCESS && hi > lo && !disk_admit(c->d, hi - lo))
        rc = ERROR_DISK_FULL; /* disk.c logs it, at most once per interval */
    if (rc == ERROR_SUCCESS)
        rc = add_plan(c, h, lo, hi, &nunits, &prepaid);
    if (rc != ERROR_SUCCESS)
        return rc;
    if (nunits == 0) { /* nothing listed, or nothing at all */
        if (done)
            done(done_arg, ERROR_SUCCESS);
        else
            conn_reply_count(c, id, len);
        return ERROR_SUCCESS;
    }
    /* The op's copy of the bytes, until it is answered (content_op_free gives it back). */
    if (!budget_take(c, hi - lo, "AddData (bytes being verified and written)")) {
        if (prepaid)
            budget_give(c, prepaid);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    struct op *op = calloc(1, sizeof(*op));
    if (!op) {
        budget_give(c, hi - lo);
        goto nomem;
    }
    op->c = c;
    op->charged = hi - lo;
    if (!(op->units = calloc(nunits, sizeof(*op->units))) ||
        !(op->data = malloc(hi - lo + (fill ? CONTENT_FILL_SLACK : 0))))
        goto nomem;
    if (fill) { /* one whole block (content_add_fetched): its bytes come on the worker */
        op->fill = fill;
        op->fill_arg = fill_arg;
    } else {
        memcpy(op->data, bytes + (lo - off), hi - lo);
    }
    op->len = len;
    op->request_id = id;
    op->done = done;
    op->done_arg = done_arg;
    op->offset = lo;
    op->h = h;
    op->cd = c->d->content;
    if (add_split(op, lo, hi, &prepaid) != 0)
        goto nomem;
    if (prepaid)
        budget_give(c, prepaid);
    if (op->nunits == 0) { /* only held bytes: accepted, nothing to verify yet */
        content_op_free(op);
        if (done)
            done(done_arg, ERROR_SUCCESS);
        else
            conn_reply_count(c, id, len);
        return ERROR_SUCCESS;
    }
    op->began_ms[ADD_QUEUED] = decoded;
    if (add_submit(op) == 0)
        return ERROR_SUCCESS;
    prepaid = 0;
nomem:
    if (prepaid)
        budget_give(c, prepaid);
    if (op)
        content_op_free(op);
    return ERROR_NOT_ENOUGH_MEMORY;
}

void content_add_data(struct conn *c, uint64_t id, const Peerdist__AddDataRequest *a)
{
    struct content_handle *h = content_usable_handle(c, id, a->handle);
    if (!h)
        return;
    if (a->data.len > PD_MAX_CHUNK) {
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    DWORD rc = add_bytes(c, h, id, a->offset, a->data.data, a->data.len, NULL, NULL, NULL, NULL);
    if (rc != ERROR_SUCCESS)
        conn_reply_status(c, id, rc);
}

int content_add_fetched(struct conn *c, struct content_handle *h, uint64_t off, size_t len,
    int (*fill)(void *arg, uint8_t *out, size_t len), void *fill_arg,
    void (*done)(void *arg, uint32_t status), void *arg)
{
    /* One whole listed block, or nothing: its bytes are not there yet, so no part of it may
     * be held (add_split copies parts) and it must be stored, not dropped as unlisted. */
    struct pos ps;
    DWORD rc = ERROR_INVALID_PARAMETER;
    if (h->ci && off >= h->add_lo && off < h->add_hi) {
        content_pos_at(h->ci, off, &ps);
        if (ps.start == off && ps.len == len &&
            content_listed_hash(h->ci, &h->ci->segments[ps.seg], ps.block))
            rc = add_bytes(c, h, 0, off, NULL, len, done, arg, fill, fill_arg);
    }
    if (rc != ERROR_SUCCESS)
        log_warn(CONN_FMT ": storing %zu bytes fetched from a peer at %llu: error %u", CONN_ARGS(c),
            len, (unsigned long long)off, (unsigned)rc);
    return rc == ERROR_SUCCESS ? 0 : -1;
}
