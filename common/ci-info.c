/* SPDX-License-Identifier: MIT */
/* ci-info.c - the ci_info object: allocation, growth, freeing, error reports, and cutting the
 * content information of a byte range out of a whole-content description (§1.6) without the
 * content itself, as the daemon does for ranged requests of a publication. */
#include "ci-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CI_INITIAL_SEGMENTS 4

DWORD ci_fail(struct ci_error *err, DWORD code, size_t offset, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    err->offset = offset;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return code;
}

struct ci_info *ci_info_alloc(enum ci_version version, enum ci_hash_alg alg)
{
    struct ci_info *ci = calloc(1, sizeof(*ci));

    if (!ci)
        return NULL;
    ci->version = version;
    ci->alg = alg;
    ci->digest_len = ci_digest_len(alg);
    return ci;
}

/* The array doubles when the count reaches a power of two (from CI_INITIAL_SEGMENTS on). */
struct ci_segment *ci_info_push(struct ci_info *ci)
{
    size_t n = ci->n_segments;

    if (n == 0 || (n >= CI_INITIAL_SEGMENTS && (n & (n - 1)) == 0)) {
        size_t cap = n == 0 ? CI_INITIAL_SEGMENTS : 2 * n;
        struct ci_segment *segs = realloc(ci->segments, cap * sizeof(*segs));

        if (!segs)
            return NULL;
        ci->segments = segs;
    }
    memset(&ci->segments[n], 0, sizeof(ci->segments[n]));
    ci->n_segments = n + 1;
    return &ci->segments[n];
}

/* Whole content: header range fields all zero, as Windows writes them (§1.6). */
void ci_info_set_whole(struct ci_info *ci)
{
    const struct ci_segment *last = ci->n_segments ? &ci->segments[ci->n_segments - 1] : NULL;

    ci->whole = true;
    ci->range_offset = 0;
    ci->range_length = last ? last->offset + last->length : 0;
    ci->offset_in_first = 0;
    ci->read_in_last = 0;
    ci->v2_start = 0;
    ci->v2_first_index = 0;
    ci->v2_range_length = 0;
}

void ci_info_free(struct ci_info *ci)
{
    if (!ci)
        return;
    for (size_t i = 0; i < ci->n_segments; i++)
        free(ci->segments[i].block_hashes);
    free(ci->segments);
    free(ci->chunk_segments);
    free(ci);
}

/* Index of the segment holding content byte `pos` (segments are contiguous and sorted). */
static size_t ci_find_segment(const struct ci_info *ci, uint64_t pos)
{
    size_t lo = 0, hi = ci->n_segments;

    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (ci->segments[mid].offset <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Copies the block hashes of in-segment bytes [start, end) of a full-list V1 segment. */
static int ci_copy_blocks(const struct ci_info *full, const struct ci_segment *src,
    struct ci_segment *dst, uint32_t start, uint32_t end)
{
    uint32_t first = start / src->block_size;
    uint32_t last = (uint32_t)(((uint64_t)end + src->block_size - 1) / src->block_size);
    size_t bytes = (size_t)(last - first) * full->digest_len;

    dst->block_hashes = malloc(bytes ? bytes : 1);
    if (!dst->block_hashes)
        return -1;
    memcpy(dst->block_hashes, src->block_hashes + (size_t)first * full->digest_len, bytes);
    dst->first_block = first;
    dst->n_blocks = last - first;
    return 0;
}

static bool ci_usable_as_full(const struct ci_info *full)
{
    if (!full->whole)
        return false;
    for (size_t i = 0; full->version == CI_VERSION_1 && i < full->n_segments; i++)
        if (!ci_segment_has_full_list(&full->segments[i]))
            return false;
    return true;
}

/* Copies segments a..b and, for V1, the hashes of the blocks that intersect [off, end). */
static int ci_range_segments(const struct ci_info *full, struct ci_info *ci, size_t a, size_t b,
    uint64_t off, uint64_t end)
{
    for (size_t i = a; i <= b; i++) {
        const struct ci_segment *src = &full->segments[i];
        struct ci_segment *dst = ci_info_push(ci);
        uint32_t start = i == a ? (uint32_t)(off - src->offset) : 0;
        uint32_t stop = i == b ? (uint32_t)(end - src->offset) : src->length;

        if (!dst)
            return -1;
        *dst = *src;
        dst->block_hashes = NULL;
        dst->first_block = dst->n_blocks = 0;
        if (full->version == CI_VERSION_1 && ci_copy_blocks(full, src, dst, start, stop) < 0)
            return -1;
    }
    return 0;
}

static struct ci_info *ci_info_copy_whole(const struct ci_info *full)
{
    struct ci_info *ci = ci_info_alloc(full->version, full->alg);

    if (!ci)
        return NULL;
    if (full->n_segments &&
        ci_range_segments(full, ci, 0, full->n_segments - 1, 0, full->range_length) < 0) {
        ci_info_free(ci);
        return NULL;
    }
    ci_info_set_whole(ci);
    return ci;
}

int ci_range(const struct ci_info *full, uint64_t offset, uint64_t length, struct ci_info **out)
{
    uint64_t total = full->range_length, end = offset + length;
    struct ci_info *ci;
    size_t a, b;

    *out = NULL;
    if (!ci_usable_as_full(full) || end < offset || end > total ||
        (length == 0 && !(offset == 0 && total == 0))) {
        errno = EINVAL;
        return -1;
    }
    if (offset == 0 && length == total) { /* DESIGN.md: written as whole content */
        *out = ci_info_copy_whole(full);
        return *out ? 0 : -1;
    }
    a = ci_find_segment(full, offset);
    b = ci_find_segment(full, end - 1);
    ci = ci_info_alloc(full->version, full->alg);
    if (!ci || ci_range_segments(full, ci, a, b, offset, end) < 0) {
        ci_info_free(ci);
        errno = ENOMEM;
        return -1;
    }
    ci->range_offset = offset;
    ci->range_length = length;
    ci->offset_in_first = (uint32_t)(offset - full->segments[a].offset);
    /* V1: bytes of the range inside the last listed segment; with one segment that is the
     * range's length, as iPXE and the spec's length formula read it (§1.6). */
    ci->read_in_last = a == b ? (uint32_t)length : (uint32_t)(end - full->segments[b].offset);
    if (full->version == CI_VERSION_2) {
        ci->read_in_last = 0;
        ci->v2_start = full->segments[a].offset;
        ci->v2_first_index = a;
        ci->v2_range_length = length; /* a length, as the spec says (DESIGN.md) */
    }
    *out = ci;
    return 0;
}
