/*
 * content-read.c - BlockRead and StreamRead in the daemon: where a content offset lies
 * (segment, block), which stored blocks a handle may read (the slot map: rows whose hash is
 * the one the handle's content information lists, shared or the caller's own), and the
 * reply, whose bytes go from the data file straight into the output buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "blockstore.h"
#include "content-internal.h"
#include "log.h"

#define SLOT_NONE INT64_MIN /* no readable bytes for this block */

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
    const uint8_t *hash = content_listed_hash(s->ci, s->seg, row->block);
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

/* Readable bytes from off (stopping at hi): contiguous run length; the slots stay loaded. */
static int64_t readable_run(struct store *st, struct slots *s, uint64_t off, uint64_t hi,
    uint64_t limit)
{
    uint64_t p = off;
    while (p < hi && p - off < limit) {
        struct pos ps;
        content_pos_at(s->ci, p, &ps);
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
        content_pos_at(s->ci, p, &ps);
        if (slots_load(st, s, ps.seg) != 0)
            return -1;
        if (s->file[ps.block] != SLOT_NONE)
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
        if (slots_load(st, s, ps.seg) != 0 || s->file[ps.block] == SLOT_NONE)
            return -1;
        uint64_t in = off + done - ps.start;
        int64_t file = s->file[ps.block];
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
static struct slots *read_slots(const struct daemon *d, struct content_handle *h, uint32_t uid)
{
    if (!h->slots && !(h->slots = malloc(sizeof(*h->slots))))
        return NULL;
    if (h->slots_gen != d->blocks_gen || h->slots->ci != h->ci) {
        h->slots->ci = h->ci;
        h->slots->uid = uid;
        h->slots->seg_index = SIZE_MAX;
        h->slots_gen = d->blocks_gen;
    }
    return h->slots;
}

void content_read(struct conn *c, uint64_t id, const Peerdist__ReadRequest *rq)
{
    struct store *st = c->d->store;
    if (c->d->cfg.mode == MODE_DISABLED) {
        conn_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
        return;
    }
    struct content_handle *h = content_find_handle(c, rq->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    if (!h->ci) {
        conn_reply_status(c, id, PEERDIST_ERROR_NOT_INITIALIZED);
        return;
    }
    uint64_t off = rq->stream ? h->cursor : rq->offset;
    Peerdist__ReadReply rr = PEERDIST__READ_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_READ;
    r.read = &rr;
    rr.offset = off;
    if (off < h->read_lo || off >= h->read_hi) {
        r.status = PEERDIST_ERROR_NO_MORE;
        conn_send(c, &r);
        return;
    }
    struct slots *s = read_slots(c->d, h, c->uid);
    if (!s) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    uint64_t limit = rq->max_bytes == 0
        ? UINT64_MAX
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
            return; /* out of memory: the connection is closed (its hooks run later) */
        uint8_t *data = frame_read_reply_pack(frame, id, off, (size_t)n);
        if (rq->stream)
            h->cursor = off + (uint64_t)n;
        if (copy_out(c->d->bs, st, s, off, data, (size_t)n) == 0) {
            conn_commit(c, frame, total);
            return;
        }
        log_error(CONN_FMT ": reading cached bytes at %llu failed; reported as missing",
            CONN_ARGS(c), (unsigned long long)off);
        r.status = PEERDIST_ERROR_MISSING_DATA;
        rr.length = (uint64_t)n;
    }
    conn_send(c, &r);
    return;
fail:
    h->slots->seg_index = SIZE_MAX; /* reload next time */
    conn_reply_status(c, id, ERROR_INTERNAL_ERROR);
}
