/* SPDX-License-Identifier: MIT */
/*
 * content-handle.c - the content handle and what every part of the content module asks of
 * it: lookup on its connection, references, held bytes, and where a content offset lies in
 * its content information (segment, block, the hash listed for it).
 */
#include <stdlib.h>

#include "content-internal.h"

struct content_handle *content_find_handle(struct conn *c, uint64_t id)
{
    struct content_conn *cc = c->content;
    struct content_handle *h;
    if (cc)
        LIST_FOREACH (h, &cc->handles, link)
            if (h->id == id)
                return h;
    return NULL;
}

struct content_handle *content_usable_handle(struct conn *c, uint64_t id, uint64_t handle)
{
    uint32_t status = ERROR_SUCCESS;
    struct content_handle *h = NULL;
    if (c->d->cfg.mode == MODE_DISABLED)
        status = ERROR_ACCESS_DISABLED_BY_POLICY;
    else if (!(h = content_find_handle(c, handle)))
        status = ERROR_INVALID_HANDLE;
    else if (!h->ci)
        status = PEERDIST_ERROR_NOT_INITIALIZED;
    if (status == ERROR_SUCCESS)
        return h;
    conn_reply_status(c, id, status);
    return NULL;
}

void content_held_free_all(struct content_handle *h)
{
    while (h->held) {
        struct held *hb = h->held;
        h->held = hb->next;
        content_held_free(hb);
    }
}

void content_handle_unref(struct content_handle *h)
{
    if (--h->refs)
        return;
    content_held_free_all(h);
    ci_stream_free(h->stream);
    ci_info_free(h->ci);
    free(h->bound);
    free(h->slots);
    free(h);
}

void content_held_free(struct held *hb)
{
    free(hb->buf);
    free(hb->have);
    free(hb);
}

const uint8_t *content_listed_hash(const struct ci_info *ci, const struct ci_segment *seg,
    uint32_t block)
{
    if (ci->version == CI_VERSION_2)
        return block == 0 ? seg->hod : NULL;
    if (block < seg->first_block || block - seg->first_block >= seg->n_blocks)
        return NULL;
    return seg->block_hashes + (size_t)(block - seg->first_block) * ci->digest_len;
}

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

/* Position of content offset off: segment, block, and where the block lies. */
void content_pos_at(const struct ci_info *ci, uint64_t off, struct pos *p)
{
    p->seg = seg_at(ci, off);
    const struct ci_segment *seg = &ci->segments[p->seg];
    uint32_t bsz = seg_block_size(ci, seg);
    p->block = (uint32_t)((off - seg->offset) / bsz);
    p->start = seg->offset + (uint64_t)p->block * bsz;
    p->len = ci_block_length(seg, p->block);
}

void content_slots_added(struct daemon *d, const struct op *op, uint64_t gen_before)
{
    struct content_handle *h = op->h;
    struct slots *s = h->slots;
    /* Only a map that was current before this commit is current after it (or one an op of
     * the same commit brought current: every op of it comes here in turn). */
    if (!s || s->ci != h->ci || s->maybe_more ||
        (h->slots_gen != gen_before && h->slots_gen != d->blocks_gen))
        return;
    for (size_t i = 0; s->seg_index != SIZE_MAX && i < op->nunits; i++) {
        const struct unit *u = &op->units[i];
        /* As slot_row would take the row just put: verified against this handle's own hash,
         * whole, and the uid's or shared; a row already there keeps its place. */
        if (u->result == UNIT_OK && u->seg == s->seg_index && u->block < CONTENT_SLOTS_MAX &&
            s->file[u->block] == SLOT_NONE &&
            (u->owner == STORE_OWNER_SHARED || u->owner == (int64_t)s->uid))
            s->file[u->block] = u->owner;
    }
    h->slots_gen = d->blocks_gen;
    h->slots_added = d->blocks_added;
}
