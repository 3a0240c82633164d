/* SPDX-License-Identifier: MIT */
/*
 * content-info.c - content information on a content handle: streamed in (AddContentInformation),
 * parsed and checked at Complete against DESIGN.md's trust rules (a V1 hash list is bound to
 * its segment ID only when the full list hashes to HoD), the ranges the handle may read and
 * add, and the promotion of private blocks whose segment's full list has now verified.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "blockstore.h"
#include "budget.h"
#include "content-internal.h"
#include "evict.h"
#include "log.h"

static void log_refusal(struct conn *c, const char *what, const struct ci_error *e)
{
    log_warn("connection %llu (uid %u pid %d): %s refused: %s (byte %zu, error %u)",
        (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, what, e->reason, e->offset,
        (unsigned)e->code);
}

void content_add_info(struct conn *c, uint64_t id, const Peerdist__AddContentInfoRequest *a)
{
    struct content_handle *h = content_find_handle(c, a->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    if (h->ci) {
        conn_reply_status(c, id, PEERDIST_ERROR_ALREADY_COMPLETED);
        return;
    }
    struct content_conn *cc = c->content;
    if (cc->memory + a->data.len > CONTENT_CONN_MEMORY_MAX) {
        log_warn("connection %llu (uid %u pid %d): AddContentInformation refused: more than %u "
                 "bytes of content information and held blocks on this connection",
            (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, CONTENT_CONN_MEMORY_MAX);
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    if (!budget_take(c, a->data.len, "AddContentInformation")) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    if (!h->stream && !(h->stream = ci_stream_new(CONTENT_INFO_MAX))) {
        budget_give(c, a->data.len);
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    struct ci_error e = {0};
    DWORD rc = ci_stream_feed(h->stream, a->data.data, a->data.len, &e);
    if (rc != ERROR_SUCCESS) {
        budget_give(c, a->data.len);
        log_refusal(c, "content information", &e);
        conn_reply_status(c, id, rc);
        return;
    }
    h->ci_bytes += a->data.len;
    cc->memory += a->data.len;
    conn_reply_count(c, id, a->data.len);
}

void content_memory_give(struct conn *c, size_t n)
{
    struct content_conn *cc = c->content;
    cc->memory -= n;
    if (n)
        budget_give(c, n);
}

/* Bound segments' hashes are now trusted: private rows with the same hash become shared. */
struct promote_ctx {
    const struct ci_info *ci;
    const struct ci_segment *seg;
    uint32_t blocks[CONTENT_SLOTS_MAX];
    size_t n;
};

static int promote_row(void *arg, const struct store_block_row *row)
{
    struct promote_ctx *p = arg;
    const uint8_t *hash = content_listed_hash(p->ci, p->seg, row->block);
    if (hash && row->hash_len == p->ci->digest_len && memcmp(hash, row->hash, row->hash_len) == 0 &&
        p->n < CONTENT_SLOTS_MAX)
        p->blocks[p->n++] = row->block;
    return 0;
}

/*
 * Bound segments can be served to peers (peer-serve.c): their secret, HoD, version and size
 * are stored with them, in one transaction. Never a segment bound only by a ranged list: it
 * is not bound. Failure only means peers are not served it (logged without the secret).
 */
static void bind_secrets(struct conn *c, struct content_handle *h)
{
    struct store *st = c->d->store;
    const struct ci_info *ci = h->ci;
    size_t i = 0;
    while (i < ci->n_segments && !h->bound[i])
        i++;
    if (i == ci->n_segments || store_begin(st) != 0)
        return;
    int64_t now = evict_now(c->d);
    struct store_segment_secret s;
    bool ok = true;
    for (; ok && i < ci->n_segments; i++) {
        const struct ci_segment *seg = &ci->segments[i];
        if (!h->bound[i] || ci->digest_len > STORE_MAX_ID)
            continue;
        s.segment_id_len = s.hod_len = s.secret_len = ci->digest_len;
        memcpy(s.segment_id, seg->id, ci->digest_len);
        memcpy(s.hod, seg->hod, ci->digest_len);
        memcpy(s.secret, seg->secret, ci->digest_len);
        s.version = ci->version == CI_VERSION_1 ? 1 : 2;
        s.blocks = ci->version == CI_VERSION_1 ? ci_segment_block_count(seg) : 1;
        s.length = seg->length;
        ok = store_segment_secret_put(st, &s, now) == 0;
    }
    OPENSSL_cleanse(&s, sizeof(s));
    if (!ok || store_commit(st) != 0) {
        store_rollback(st);
        log_error(CONN_FMT ": storing the bound segments for serving peers failed: %s",
            CONN_ARGS(c), store_errmsg(st));
    }
}

static void promote_bound(struct conn *c, struct content_handle *h)
{
    struct store *st = c->d->store;
    struct promote_ctx *p = malloc(sizeof(*p));
    if (!p)
        return;           /* promotion is an optimisation: the blocks stay readable to their uid */
    bool changed = false; /* rows may have changed owner */
    for (size_t i = 0; i < h->ci->n_segments; i++) {
        if (!h->bound[i] || h->ci->version != CI_VERSION_1)
            continue;
        p->ci = h->ci;
        p->seg = &h->ci->segments[i];
        p->n = 0;
        const struct ci_segment *seg = p->seg;
        if (store_segment_private_blocks(st, seg->id, h->ci->digest_len, promote_row, p) != 0) {
            changed = true; /* a database error: reload to be safe */
            break;
        }
        changed |= p->n > 0;
        for (size_t k = 0; k < p->n; k++)
            store_block_promote(st, seg->id, h->ci->digest_len, p->blocks[k],
                content_listed_hash(h->ci, seg, p->blocks[k]), h->ci->digest_len);
    }
    free(p);
    if (changed)
        c->d->blocks_gen++; /* rows changed owner: slot maps reload */
    bind_secrets(c, h);
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
            else if (ci_segment_has_full_list(seg) &&
                !(h->bound[i] = ci_verify_segment_hashes(ci, i)))
                why = "V1 block-hash list does not hash to the segment's HoD";
        } else {
            if (seg->length == 0 || seg->length > CI_V2_PARSE_SEGMENT_MAX)
                why = "V2 segment length out of bounds";
            h->bound[i] = true; /* bytes are checked against HoD itself */
        }
        if (why) {
            log_warn(
                "connection %llu (uid %u pid %d): content information refused: segment %zu: %s",
                (unsigned long long)c->serial, (unsigned)c->uid, (int)c->pid, i, why);
            return PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO;
        }
    }
    h->read_lo = ci->range_offset;
    h->read_hi = ci->range_offset + ci->range_length;
    if (ci->n_segments) {
        const struct ci_segment *first = &ci->segments[0],
                                *last = &ci->segments[ci->n_segments - 1];
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

void content_complete_info(struct conn *c, uint64_t id,
    const Peerdist__CompleteContentInfoRequest *a)
{
    struct content_handle *h = content_find_handle(c, a->handle);
    if (!h) {
        conn_reply_status(c, id, ERROR_INVALID_HANDLE);
        return;
    }
    if (h->ci) {
        conn_reply_status(c, id, PEERDIST_ERROR_ALREADY_COMPLETED);
        return;
    }
    if (!h->stream && !(h->stream = ci_stream_new(CONTENT_INFO_MAX))) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    struct ci_error e = {0};
    struct ci_info *ci = NULL;
    DWORD rc = ci_stream_finish(h->stream, &ci, &e);
    if (rc != ERROR_SUCCESS) {
        log_refusal(c, "content information", &e);
        conn_reply_status(c, id, rc);
        return;
    }
    rc = validate(c, h, ci);
    if (rc != ERROR_SUCCESS) {
        free(h->bound);
        h->bound = NULL;
        ci_info_free(ci);
        conn_reply_status(c, id, rc);
        return;
    }
    ci_stream_free(h->stream);
    h->stream = NULL;
    h->ci = ci;
    if (!flush_gate_open(c->d)) { /* promotion writes: once the flush batch committed */
        struct content_daemon *cd = c->d->content;
        h->complete_id = id;
        h->complete_conn = c;
        h->refs++;
        c->refs++;
        LIST_INSERT_HEAD(&cd->complete_wait, h, wait_link);
        flush_gate_wait(c->d, &cd->gate_waiter);
        return;
    }
    promote_bound(c, h);
    conn_reply_status(c, id, ERROR_SUCCESS);
}

void content_info_resume(struct content_daemon *cd)
{
    while (!LIST_EMPTY(&cd->complete_wait)) {
        struct content_handle *h = LIST_FIRST(&cd->complete_wait);
        LIST_REMOVE(h, wait_link);
        struct conn *c = h->complete_conn;
        if (h->closed) {
            conn_reply_status(c, h->complete_id, ERROR_OPERATION_ABORTED);
        } else {
            promote_bound(c, h);
            conn_reply_status(c, h->complete_id, ERROR_SUCCESS);
        }
        content_handle_unref(h);
        conn_unref(c);
    }
}
