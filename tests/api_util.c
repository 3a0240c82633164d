/* SPDX-License-Identifier: MIT */
/*
 * api_util.c - the steps the integration tests through <peerdist.h> share (api_util.h).
 * Every step asserts what it expects with Check, so a test reads as its scenario.
 */
#include "api_util.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

PEERDIST_INSTANCE_HANDLE api_startup(void)
{
    PEERDIST_INSTANCE_HANDLE h = NULL;
    ck_assert_uint_eq(PeerDistStartup(PEERDIST_VERSION, &h, NULL), ERROR_SUCCESS);
    return h;
}

DWORD api_wait(OVERLAPPED *ov, DWORD *bytes)
{
    DWORD n = 0;
    BOOL ok = PeerDistGetOverlappedResult(ov, &n, TRUE);
    if (bytes)
        *bytes = n;
    return ok ? ERROR_SUCCESS : GetLastError();
}

DWORD api_wait_pending(DWORD rc, OVERLAPPED *ov, DWORD *bytes)
{
    ck_assert_uint_eq(rc, ERROR_IO_PENDING);
    return api_wait(ov, bytes);
}

uint8_t *api_make_content(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    uint32_t x = 2463534242u + seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

PEERDIST_CONTENT_TAG api_make_tag(uint8_t seed)
{
    PEERDIST_CONTENT_TAG t;
    for (int i = 0; i < 16; i++)
        t.Data[i] = (uint8_t)(seed * 29 + i);
    return t;
}

/* ---- publishing ---- */

void api_publish(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data, size_t n,
    DWORD version, const size_t *pieces, size_t npieces)
{
    PEERDIST_PUBLICATION_OPTIONS po = {version, 0};
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id, n,
                          version ? &po : NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    size_t off = 0;
    for (size_t i = 0; off < n; i++) {
        size_t k = npieces ? pieces[i % npieces] : n;
        if (k > n - off)
            k = n - off;
        OVERLAPPED ov = {0};
        DWORD got = 0;
        ck_assert_uint_eq(api_wait_pending(PeerDistServerPublishAddToStream(h, s, (DWORD)k,
                                               (PBYTE)data + off, &ov),
                              &ov, &got),
            ERROR_SUCCESS);
        ck_assert_uint_eq(got, k);
        off += k;
    }
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(api_wait_pending(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
}

DWORD api_open_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, ULONGLONG off, ULONGLONG len,
    const PEERDIST_RETRIEVAL_OPTIONS *ro, PEERDIST_CONTENTINFO_HANDLE *ci)
{
    if (ro)
        return PeerDistServerOpenContentInformationEx(h, (DWORD)strlen(id), (PBYTE)id, off, len,
            (PEERDIST_RETRIEVAL_OPTIONS *)ro, NULL, 0, ci);
    return PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, off, len, NULL, 0,
        ci);
}

uint8_t *api_retrieve_ci(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENTINFO_HANDLE ci, DWORD chunk,
    size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *out = malloc(cap);
    uint8_t *buf = malloc(chunk);
    for (;;) {
        OVERLAPPED ov = {0};
        DWORD got;
        DWORD rc = api_wait_pending(
            PeerDistServerRetrieveContentInformation(h, ci, chunk, buf, &ov), &ov, &got);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_uint_eq(rc, ERROR_SUCCESS);
        ck_assert_uint_le(got, chunk);
        ck_assert_uint_gt(got, 0);
        ck_assert_uint_eq(((uint64_t)ov.OffsetHigh << 32 | ov.Offset), n); /* where it belongs */
        while (n + got > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + n, buf, got);
        n += got;
    }
    free(buf);
    *len = n;
    return out;
}

uint8_t *api_get_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, ULONGLONG off, ULONGLONG len,
    const PEERDIST_RETRIEVAL_OPTIONS *ro, size_t *n)
{
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(h, id, off, len, ro, &ci), ERROR_SUCCESS);
    uint8_t *b = api_retrieve_ci(h, ci, 1000, n);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    return b;
}

/* ---- content handles ---- */

void api_ci_free(struct api_ci *ci)
{
    free(ci->bytes);
    ci_info_free(ci->info);
}

PEERDIST_CONTENT_HANDLE api_open_content(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, HANDLE port)
{
    PEERDIST_CONTENT_HANDLE c = NULL;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, tag, port, API_KEY, &c), ERROR_SUCCESS);
    return c;
}

DWORD api_feed_ci(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const struct api_ci *ci)
{
    for (size_t at = 0; at < ci->len; at += API_CI_CHUNK) {
        OVERLAPPED ov = {0};
        DWORD n = ci->len - at < API_CI_CHUNK ? (DWORD)(ci->len - at) : API_CI_CHUNK, got;
        DWORD st = api_wait_pending(
            PeerDistClientAddContentInformation(h, c, n, ci->bytes + at, &ov), &ov, &got);
        ck_assert_uint_eq(st, ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
    }
    OVERLAPPED ov = {0};
    return api_wait_pending(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL);
}

PEERDIST_CONTENT_HANDLE api_open_with_ci(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, const struct api_ci *ci)
{
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, tag, NULL);
    ck_assert_uint_eq(api_feed_ci(h, c, ci), ERROR_SUCCESS);
    return c;
}

DWORD api_add_data(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    const uint8_t *buf, DWORD n, DWORD *accepted)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    return api_wait_pending(PeerDistClientAddData(h, c, n, (PBYTE)buf, &ov), &ov, accepted);
}

static uint64_t ov_offset(const OVERLAPPED *ov)
{
    return (uint64_t)ov->OffsetHigh << 32 | ov->Offset;
}

struct api_read api_block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    DWORD cap, void *buf)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    struct api_read r;
    r.status = api_wait_pending(
        PeerDistClientBlockRead(h, c, cap, buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov), &ov,
        &r.bytes);
    r.offset = ov_offset(&ov);
    return r;
}

struct api_read api_stream_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, DWORD cap,
    void *buf)
{
    OVERLAPPED ov = {.Offset = 0x1234}; /* ignored by StreamRead */
    struct api_read r;
    r.status = api_wait_pending(
        PeerDistClientStreamRead(h, c, cap, buf, PEERDIST_READ_TIMEOUT_DEFAULT, &ov), &ov,
        &r.bytes);
    r.offset = ov_offset(&ov);
    return r;
}

void api_assert_missing(struct api_read r, uint64_t off, uint64_t len)
{
    ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(r.offset, off);
    ck_assert_uint_eq(r.bytes, len);
}

void api_read_back_block(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    uint64_t from, uint64_t to)
{
    uint8_t *buf = malloc(300 * KiB);
    for (uint64_t at = from; at < to;) {
        struct api_read r = api_block_read(h, c, at, 300 * KiB, buf);
        ck_assert_msg(r.status == ERROR_SUCCESS, "BlockRead at %llu: %u", (unsigned long long)at,
            r.status);
        ck_assert_uint_eq(r.offset, at);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, to - at);
        ck_assert(memcmp(buf, data + at, r.bytes) == 0);
        at += r.bytes;
    }
    free(buf);
}

void api_read_back_stream(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, uint64_t from, uint64_t to)
{
    /* Asking for more than one request's worth returns at most PD_MAX_CHUNK (1 MiB). */
    DWORD cap = 3 * MiB;
    uint8_t *buf = malloc(cap);
    uint64_t at = from;
    for (;;) {
        struct api_read r = api_stream_read(h, c, cap, buf);
        if (r.status == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_msg(r.status == ERROR_SUCCESS, "StreamRead at %llu: %u", (unsigned long long)at,
            r.status);
        ck_assert_uint_eq(r.offset, at);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, MiB);
        ck_assert_uint_le(r.bytes, to - at);
        ck_assert(memcmp(buf, data + at, r.bytes) == 0);
        at += r.bytes;
    }
    ck_assert_uint_eq(at, to);
    free(buf);
}

DWORD api_flush(PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag)
{
    OVERLAPPED ov = {0};
    return api_wait_pending(PeerDistClientFlushContent(h, tag, NULL, 0, &ov), &ov, NULL);
}

/* ---- the model ---- */

void api_model_init(struct api_model *m, const uint8_t *data, size_t len, const struct ci_info *ci)
{
    m->data = data;
    m->len = len;
    m->added = calloc(len ? len : 1, 1);
    m->nblocks = 0;
    size_t cap = 16;
    m->boff = malloc(cap * sizeof(uint64_t));
    m->blen = malloc(cap * sizeof(uint64_t));
    for (size_t s = 0; s < ci->n_segments; s++) {
        const struct ci_segment *seg = &ci->segments[s];
        uint32_t nb = ci->version == CI_VERSION_1 ? ci_segment_block_count(seg) : 1;
        for (uint32_t b = 0; b < nb; b++) {
            if (m->nblocks == cap) {
                cap *= 2;
                m->boff = realloc(m->boff, cap * sizeof(uint64_t));
                m->blen = realloc(m->blen, cap * sizeof(uint64_t));
            }
            m->boff[m->nblocks] = seg->offset + (uint64_t)b * seg->block_size;
            m->blen[m->nblocks] = ci->version == CI_VERSION_1 ? ci_block_length(seg, b)
                                                              : seg->length;
            m->nblocks++;
        }
    }
}

void api_model_free(struct api_model *m)
{
    free(m->added);
    free(m->boff);
    free(m->blen);
}

/* Whether every byte of block b was added: a block is stored whole or not at all. */
static bool block_ready(const struct api_model *m, size_t b)
{
    return memchr(m->added + m->boff[b], 0, m->blen[b]) == NULL;
}

size_t api_model_block_at(const struct api_model *m, uint64_t off)
{
    size_t b = 0;
    while (b + 1 < m->nblocks && m->boff[b + 1] <= off)
        b++;
    return b;
}

void api_model_probe(const struct api_model *m, PEERDIST_INSTANCE_HANDLE h,
    PEERDIST_CONTENT_HANDLE c, uint64_t off)
{
    static uint8_t buf[64 * KiB];
    size_t b = api_model_block_at(m, off);
    struct api_read r = api_block_read(h, c, off, sizeof(buf), buf);
    if (block_ready(m, b)) {
        uint64_t end = m->boff[b] + m->blen[b];
        while (++b < m->nblocks && block_ready(m, b))
            end = m->boff[b] + m->blen[b];
        ck_assert_msg(r.status == ERROR_SUCCESS, "read at %llu: %u", (unsigned long long)off,
            r.status);
        ck_assert_uint_eq(r.offset, off);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, end - off);
        ck_assert(memcmp(buf, m->data + off, r.bytes) == 0);
        /* cbMax 0: the contiguous cached bytes from off. */
        struct api_read q = api_block_read(h, c, off, 0, NULL);
        ck_assert_uint_eq(q.status, ERROR_SUCCESS);
        ck_assert_uint_eq(q.bytes, end - off);
    } else {
        uint64_t end = m->len;
        while (++b < m->nblocks) {
            if (block_ready(m, b)) {
                end = m->boff[b];
                break;
            }
        }
        api_assert_missing(r, off, end - off);
    }
}
