/* SPDX-License-Identifier: MIT */
/* ci-parse.c - parsing of V1 (§1.4) and V2 (§1.5) content information from a whole buffer.
 * Every count and length is checked against what is left of the buffer before it is used;
 * a failure names the field and its byte offset. Segment IDs are computed, never read. */
#include "ci-internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CI_V1_DESC_FIXED 16u /* ullOffsetInContent, cbSegment, cbBlockSize */
#define CI_V1_COUNT_SIZE 4u  /* cBlocks */

struct ci_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    struct ci_error *err;
};

static DWORD ci_bad(struct ci_reader *r, size_t offset, const char *what)
{
    return ci_fail(r->err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, offset, "%s", what);
}

static size_t ci_left(const struct ci_reader *r)
{
    return r->len - r->pos;
}

/* 0 if n more bytes are there, else the truncation error. */
static DWORD ci_need(struct ci_reader *r, size_t n, const char *what)
{
    if (ci_left(r) >= n)
        return ERROR_SUCCESS;
    return ci_fail(r->err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, r->pos,
        "truncated in %s: %zu bytes needed at offset %zu, %zu present", what, n, r->pos,
        ci_left(r));
}

/* The first two bytes read as a little-endian u16 tell V1 (0x0100) from V2 (0x0200). */
DWORD ci_check_version(const uint8_t *buf, size_t len, int *version, struct ci_error *err)
{
    uint16_t v;

    if (len < 2)
        return ci_fail(err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, 0,
            "truncated in the version field: 2 bytes needed, %zu present", len);
    v = ci_get_le16(buf);
    if (v == 0x0100 || v == 0x0200) {
        *version = v >> 8;
        return ERROR_SUCCESS;
    }
    return ci_fail(err, PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED, 0,
        "version bytes %02x %02x are neither 1.0 (00 01) nor 2.0 (00 02)", buf[0], buf[1]);
}

/* The hash algorithm, as soon as its bytes are there (the streaming parser asks early). */
DWORD ci_check_algo(int version, const uint8_t *buf, size_t len, enum ci_hash_alg *alg,
    struct ci_error *err)
{
    if (version == CI_VERSION_2) {
        if (len < 3)
            return ERROR_SUCCESS;
        *alg = CI_HASH_SHA512_TRUNC;
        if (buf[2] == CI_V2_ALGO_SHA512_TRUNC)
            return ERROR_SUCCESS;
        return ci_fail(err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, 2,
            "unknown V2 bHashAlgo 0x%02x (only 0x04, truncated SHA-512)", buf[2]);
    }
    if (len < 6)
        return ERROR_SUCCESS;
    switch (ci_get_le32(buf + 2)) {
    case CI_V1_ALGO_SHA256: *alg = CI_HASH_SHA256; return ERROR_SUCCESS;
    case CI_V1_ALGO_SHA384: *alg = CI_HASH_SHA384; return ERROR_SUCCESS;
    case CI_V1_ALGO_SHA512: *alg = CI_HASH_SHA512; return ERROR_SUCCESS;
    }
    return ci_fail(err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, 2,
        "unknown V1 dwHashAlgo 0x%08" PRIx32 " (0x800C, 0x800D or 0x800E)", ci_get_le32(buf + 2));
}

/* --- V1 --------------------------------------------------------------------------------- */

/* One SegmentDescription: 32 MiB segments of 64 KiB blocks, contiguous, only the last short
 * (§1.1). r->pos is at the description. */
static DWORD ci_v1_segment(struct ci_reader *r, struct ci_info *ci, size_t i)
{
    struct ci_segment *s = &ci->segments[i];
    const uint8_t *p = r->p + r->pos;
    size_t at = r->pos, d = ci->digest_len;
    char why[128];

    s->offset = ci_get_le64(p);
    s->length = ci_get_le32(p + 8);
    s->block_size = ci_get_le32(p + 12);
    if (s->block_size != CI_V1_BLOCK_SIZE) {
        snprintf(why, sizeof(why), "segment %zu: cbBlockSize %" PRIu32 ", expected 65536", i,
            s->block_size);
        return ci_bad(r, at + 12, why);
    }
    if (s->length == 0 || s->length > CI_V1_SEGMENT_SIZE) {
        snprintf(why, sizeof(why), "segment %zu: cbSegment %" PRIu32 " not in 1..33554432", i,
            s->length);
        return ci_bad(r, at + 8, why);
    }
    if (i > 0 && s[-1].length != CI_V1_SEGMENT_SIZE) {
        snprintf(why, sizeof(why),
            "segment %zu: cbSegment %" PRIu32
            " but only the last segment may be shorter than 32 MiB",
            i - 1, s[-1].length);
        return ci_bad(r, at - (CI_V1_DESC_FIXED + 2 * d) + 8, why);
    }
    if (i == 0 ? s->offset % CI_V1_SEGMENT_SIZE != 0 : s->offset != s[-1].offset + s[-1].length) {
        snprintf(why, sizeof(why),
            "segment %zu: ullOffsetInContent %" PRIu64 " is not where segment %zu should start", i,
            s->offset, i);
        return ci_bad(r, at, why);
    }
    if (s->offset > UINT64_MAX - s->length) {
        snprintf(why, sizeof(why), "segment %zu: offset + length overflows 64 bits", i);
        return ci_bad(r, at, why);
    }
    memcpy(s->hod, p + CI_V1_DESC_FIXED, d);
    memcpy(s->secret, p + CI_V1_DESC_FIXED + d, d);
    if (ci_segment_id(ci->alg, s->hod, s->secret, s->id) < 0)
        return ci_fail(r->err, ERROR_NOT_ENOUGH_MEMORY, at, "hashing failed");
    r->pos += CI_V1_DESC_FIXED + 2 * d;
    return ERROR_SUCCESS;
}

/* dwOffsetInFirstSegment and dwReadBytesInLastSegment against the listed segments (§1.6). */
static DWORD ci_v1_range(struct ci_reader *r, struct ci_info *ci)
{
    const struct ci_segment *first = &ci->segments[0], *last;

    if (ci->n_segments == 0) {
        if (ci->offset_in_first != 0)
            return ci_bad(r, 6, "dwOffsetInFirstSegment is not 0 but there are no segments");
        if (ci->read_in_last != 0)
            return ci_bad(r, 10, "dwReadBytesInLastSegment is not 0 but there are no segments");
        ci_info_set_whole(ci);
        return ERROR_SUCCESS;
    }
    last = &ci->segments[ci->n_segments - 1];
    if (ci->offset_in_first >= first->length)
        return ci_bad(r, 6, "dwOffsetInFirstSegment is past the end of the first segment");
    if (ci->n_segments == 1 ? (uint64_t)ci->offset_in_first + ci->read_in_last > last->length
                            : ci->read_in_last > last->length)
        return ci_bad(r, 10, "dwReadBytesInLastSegment is past the end of the last segment");
    ci->range_offset = first->offset + ci->offset_in_first;
    if (ci->read_in_last == 0) /* Windows' whole-content zero: to the end (§1.6) */
        ci->range_length = last->offset + last->length - ci->range_offset;
    else if (ci->n_segments == 1)
        ci->range_length = ci->read_in_last;
    else
        ci->range_length = last->offset + ci->read_in_last - ci->range_offset;
    /* DESIGN.md: a non-zero dwReadBytesInLastSegment equal to the last length is whole too. */
    ci->whole = first->offset == 0 && ci->offset_in_first == 0 &&
        ci->range_length == last->offset + last->length;
    return ERROR_SUCCESS;
}

/* Blocks of segment i that intersect the range: [*first, *first + *count). */
static void ci_v1_expected_blocks(const struct ci_info *ci, size_t i, uint32_t *first,
    uint32_t *count)
{
    const struct ci_segment *s = &ci->segments[i];
    uint64_t start = 0, end = s->length;

    if (i == 0)
        start = ci->range_offset - s->offset;
    if (i == ci->n_segments - 1)
        end = ci->range_offset + ci->range_length - s->offset;
    *first = (uint32_t)(start / s->block_size);
    *count = (uint32_t)((end + s->block_size - 1) / s->block_size) - *first;
}

/* One SegmentContentBlocks. A range starting inside segment 0 lists the blocks from the
 * first intersecting one; a list from block 0 (iPXE's reading, §9 item 9) is accepted too. */
static DWORD ci_v1_block_list(struct ci_reader *r, struct ci_info *ci, size_t i)
{
    struct ci_segment *s = &ci->segments[i];
    uint32_t first, count, n;
    size_t bytes;
    char why[160];
    DWORD rc = ci_need(r, CI_V1_COUNT_SIZE, "a cBlocks field");

    if (rc)
        return rc;
    n = ci_get_le32(r->p + r->pos);
    ci_v1_expected_blocks(ci, i, &first, &count);
    if (n != count && !(i == 0 && first > 0 && n == first + count)) {
        snprintf(why, sizeof(why),
            "segment %zu: cBlocks %" PRIu32 ", but %" PRIu32 " blocks of it intersect the range", i,
            n, count);
        return ci_bad(r, r->pos, why);
    }
    s->first_block = n == count ? first : 0;
    s->n_blocks = n;
    r->pos += CI_V1_COUNT_SIZE;
    bytes = (size_t)n * ci->digest_len;
    if ((rc = ci_need(r, bytes, "a block-hash list")))
        return rc;
    s->block_hashes = malloc(bytes ? bytes : 1);
    if (!s->block_hashes)
        return ci_fail(r->err, ERROR_NOT_ENOUGH_MEMORY, r->pos, "out of memory");
    memcpy(s->block_hashes, r->p + r->pos, bytes);
    r->pos += bytes;
    return ERROR_SUCCESS;
}

/* The header is there and checked; counts are checked against the bytes left before use. */
static DWORD ci_v1_body(struct ci_reader *r, struct ci_info *ci, uint32_t count)
{
    size_t per_segment = CI_V1_DESC_FIXED + 2 * ci->digest_len + CI_V1_COUNT_SIZE;
    char why[160];
    DWORD rc;

    if ((uint64_t)count * per_segment > ci_left(r)) {
        snprintf(why, sizeof(why),
            "cSegments %" PRIu32 " needs at least %" PRIu64 " bytes, %zu present", count,
            (uint64_t)count * per_segment, ci_left(r));
        return ci_bad(r, 14, why);
    }
    ci->segments = calloc(count ? count : 1, sizeof(*ci->segments));
    if (!ci->segments)
        return ci_fail(r->err, ERROR_NOT_ENOUGH_MEMORY, 14, "out of memory");
    ci->n_segments = count;
    for (size_t i = 0; i < count; i++)
        if ((rc = ci_v1_segment(r, ci, i)))
            return rc;
    if ((rc = ci_v1_range(r, ci)))
        return rc;
    for (size_t i = 0; i < count; i++)
        if ((rc = ci_v1_block_list(r, ci, i)))
            return rc;
    return ERROR_SUCCESS;
}

static DWORD ci_parse_v1(struct ci_reader *r, struct ci_info *ci)
{
    /* The algorithm first, as the streaming parser judges it as soon as its bytes are in. */
    DWORD rc = ci_check_algo(CI_VERSION_1, r->p, r->len, &ci->alg, r->err);

    if (rc || (rc = ci_need(r, CI_V1_HEADER_SIZE, "the V1 header")))
        return rc;
    ci->digest_len = ci_digest_len(ci->alg);
    ci->offset_in_first = ci_get_le32(r->p + 6);
    ci->read_in_last = ci_get_le32(r->p + 10);
    r->pos = CI_V1_HEADER_SIZE;
    return ci_v1_body(r, ci, ci_get_le32(r->p + 14));
}

/* --- V2 --------------------------------------------------------------------------------- */

/* First walk: chunk headers only, so the segment array is sized before it is filled. */
static DWORD ci_v2_count(struct ci_reader *r, size_t *n_segments, size_t *n_chunks)
{
    char why[160];
    DWORD rc;

    *n_segments = *n_chunks = 0;
    for (r->pos = CI_V2_HEADER_SIZE; r->pos < r->len;) {
        uint32_t data_len;

        if ((rc = ci_need(r, CI_V2_CHUNK_HEADER_SIZE, "a chunk header")))
            return rc;
        if (r->p[r->pos] != CI_V2_CHUNK_TYPE) {
            snprintf(why, sizeof(why), "chunk %zu: unknown bChunkType 0x%02x", *n_chunks,
                r->p[r->pos]);
            return ci_bad(r, r->pos, why);
        }
        data_len = ci_get_be32(r->p + r->pos + 1);
        if (data_len == 0 || data_len % CI_V2_SEGMENT_DESC_SIZE != 0) {
            snprintf(why, sizeof(why),
                "chunk %zu: dwChunkDataLength %" PRIu32 " is not a positive multiple of 68",
                *n_chunks, data_len);
            return ci_bad(r, r->pos + 1, why);
        }
        r->pos += CI_V2_CHUNK_HEADER_SIZE;
        if ((rc = ci_need(r, data_len, "chunk data")))
            return rc;
        r->pos += data_len;
        *n_segments += data_len / CI_V2_SEGMENT_DESC_SIZE;
        (*n_chunks)++;
    }
    return ERROR_SUCCESS;
}

static DWORD ci_v2_segment(struct ci_reader *r, struct ci_info *ci, size_t i, uint64_t *next)
{
    struct ci_segment *s = &ci->segments[i];
    const uint8_t *p = r->p + r->pos;
    char why[128];

    s->offset = *next;
    s->length = s->block_size = ci_get_be32(p);
    if (s->length == 0 || s->length > CI_V2_PARSE_SEGMENT_MAX) {
        snprintf(why, sizeof(why), "segment %zu: cbSegment %" PRIu32 " not in 1..%u", i, s->length,
            CI_V2_PARSE_SEGMENT_MAX);
        return ci_bad(r, r->pos, why);
    }
    if (*next > UINT64_MAX - s->length)
        return ci_bad(r, r->pos, "segment end overflows 64 bits");
    *next += s->length;
    memcpy(s->hod, p + 4, CI_V2_DIGEST);
    memcpy(s->secret, p + 4 + CI_V2_DIGEST, CI_V2_DIGEST);
    if (ci_segment_id(ci->alg, s->hod, s->secret, s->id) < 0)
        return ci_fail(r->err, ERROR_NOT_ENOUGH_MEMORY, r->pos, "hashing failed");
    r->pos += CI_V2_SEGMENT_DESC_SIZE;
    return ERROR_SUCCESS;
}

/* Second walk: the segment descriptions, chunk by chunk. */
static DWORD ci_v2_fill(struct ci_reader *r, struct ci_info *ci)
{
    uint64_t next = ci->v2_start;
    size_t seg = 0;
    DWORD rc;

    for (size_t c = 0; c < ci->n_chunks; c++) {
        uint32_t n = ci_get_be32(r->p + r->pos + 1) / CI_V2_SEGMENT_DESC_SIZE;

        ci->chunk_segments[c] = n;
        r->pos += CI_V2_CHUNK_HEADER_SIZE;
        for (uint32_t k = 0; k < n; k++, seg++)
            if ((rc = ci_v2_segment(r, ci, seg, &next)))
                return rc;
    }
    return ERROR_SUCCESS;
}

/* ullStartInContent, dwOffsetInFirstSegment and ullLengthOfRange against the segments. */
static DWORD ci_v2_range(struct ci_reader *r, struct ci_info *ci)
{
    uint64_t total;

    if (ci->n_segments == 0) {
        if (ci->v2_start || ci->v2_first_index || ci->offset_in_first || ci->v2_range_length)
            return ci_bad(r, 3, "no segments, but the header describes a non-empty range");
        ci_info_set_whole(ci);
        return ERROR_SUCCESS;
    }
    total = ci->segments[ci->n_segments - 1].offset + ci->segments[ci->n_segments - 1].length -
        ci->v2_start;
    if (ci->offset_in_first >= ci->segments[0].length)
        return ci_bad(r, 19, "dwOffsetInFirstSegment is past the end of the first segment");
    if (ci->v2_range_length > total - ci->offset_in_first)
        return ci_bad(r, 23, "ullLengthOfRange runs past the end of the listed segments");
    ci->range_offset = ci->v2_start + ci->offset_in_first;
    ci->range_length = ci->v2_range_length ? ci->v2_range_length : total - ci->offset_in_first;
    ci->whole = ci->v2_start == 0 && ci->v2_first_index == 0 && ci->offset_in_first == 0 &&
        ci->range_length == total;
    return ERROR_SUCCESS;
}

static DWORD ci_parse_v2(struct ci_reader *r, struct ci_info *ci)
{
    size_t n_segments, n_chunks;
    DWORD rc = ci_check_algo(CI_VERSION_2, r->p, r->len, &ci->alg, r->err);

    if (rc || (rc = ci_need(r, CI_V2_HEADER_SIZE, "the V2 header")))
        return rc;
    ci->digest_len = CI_V2_DIGEST;
    ci->v2_start = ci_get_be64(r->p + 3);
    ci->v2_first_index = ci_get_be64(r->p + 11);
    ci->offset_in_first = ci_get_be32(r->p + 19);
    ci->v2_range_length = ci_get_be64(r->p + 23);
    if ((rc = ci_v2_count(r, &n_segments, &n_chunks)))
        return rc;
    ci->segments = calloc(n_segments ? n_segments : 1, sizeof(*ci->segments));
    ci->chunk_segments = calloc(n_chunks ? n_chunks : 1, sizeof(*ci->chunk_segments));
    if (!ci->segments || !ci->chunk_segments)
        return ci_fail(r->err, ERROR_NOT_ENOUGH_MEMORY, 0, "out of memory");
    ci->n_segments = n_segments;
    ci->n_chunks = n_chunks;
    r->pos = CI_V2_HEADER_SIZE;
    if ((rc = ci_v2_fill(r, ci)))
        return rc;
    return ci_v2_range(r, ci);
}

/* --- entry point ------------------------------------------------------------------------ */

DWORD ci_parse(const void *buf, size_t len, struct ci_info **out, struct ci_error *err)
{
    struct ci_error scratch;
    struct ci_reader r = {buf, len, 0, err ? err : &scratch};
    struct ci_info *ci;
    int version = 0;
    DWORD rc;

    *out = NULL;
    ci_fail(r.err, ERROR_SUCCESS, 0, "ok");
    if ((rc = ci_check_version(buf, len, &version, r.err)))
        return rc;
    ci = ci_info_alloc(version, version == CI_VERSION_1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC);
    if (!ci)
        return ci_fail(r.err, ERROR_NOT_ENOUGH_MEMORY, 0, "out of memory");
    rc = version == CI_VERSION_1 ? ci_parse_v1(&r, ci) : ci_parse_v2(&r, ci);
    if (!rc && r.pos != len)
        rc = ci_fail(r.err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, r.pos,
            "%zu trailing bytes after the content information", len - r.pos);
    if (rc) {
        ci_info_free(ci);
        return rc;
    }
    *out = ci;
    return ERROR_SUCCESS;
}
