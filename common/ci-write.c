/* SPDX-License-Identifier: MIT */
/* ci-write.c - serialization of a ci_info to the MS-PCCRC wire format: V1 little-endian
 * (§1.4), V2 big-endian with chunks (§1.5). Header fields are written as held in the ci_info,
 * so a parsed buffer serializes back to the same bytes. */
#include "ci-internal.h"

#include <stdlib.h>
#include <string.h>

static uint32_t ci_v1_wire_algo(enum ci_hash_alg alg)
{
    switch (alg) {
    case CI_HASH_SHA384: return CI_V1_ALGO_SHA384;
    case CI_HASH_SHA512: return CI_V1_ALGO_SHA512;
    default: return CI_V1_ALGO_SHA256;
    }
}

/* The parsed chunk layout if it accounts for every segment, else ours: as few chunks as the
 * 32-bit dwChunkDataLength allows (Windows put both IIS segments in one chunk). */
static bool ci_v2_parsed_layout(const struct ci_info *ci)
{
    size_t sum = 0;

    for (size_t i = 0; i < ci->n_chunks; i++)
        sum += ci->chunk_segments[i];
    return ci->n_chunks > 0 && sum == ci->n_segments;
}

static size_t ci_v2_chunk_count(const struct ci_info *ci)
{
    if (ci_v2_parsed_layout(ci))
        return ci->n_chunks;
    return (ci->n_segments + CI_V2_SEGMENTS_PER_CHUNK - 1) / CI_V2_SEGMENTS_PER_CHUNK;
}

static size_t ci_v2_chunk_size(const struct ci_info *ci, size_t chunk, size_t left)
{
    if (ci_v2_parsed_layout(ci))
        return ci->chunk_segments[chunk];
    return left < CI_V2_SEGMENTS_PER_CHUNK ? left : CI_V2_SEGMENTS_PER_CHUNK;
}

size_t ci_wire_size(const struct ci_info *ci)
{
    size_t d = ci->digest_len, size;

    if (ci->version == CI_VERSION_2)
        return CI_V2_HEADER_SIZE + ci_v2_chunk_count(ci) * CI_V2_CHUNK_HEADER_SIZE +
            ci->n_segments * CI_V2_SEGMENT_DESC_SIZE;
    size = CI_V1_HEADER_SIZE + ci->n_segments * (16 + 2 * d + 4);
    for (size_t i = 0; i < ci->n_segments; i++)
        size += (size_t)ci->segments[i].n_blocks * d;
    return size;
}

static void ci_write_v1(const struct ci_info *ci, uint8_t *p)
{
    size_t d = ci->digest_len;

    p = ci_put_le16(p, 0x0100);
    p = ci_put_le32(p, ci_v1_wire_algo(ci->alg));
    p = ci_put_le32(p, ci->offset_in_first);
    p = ci_put_le32(p, ci->read_in_last);
    p = ci_put_le32(p, (uint32_t)ci->n_segments);
    for (size_t i = 0; i < ci->n_segments; i++) {
        const struct ci_segment *s = &ci->segments[i];

        p = ci_put_le64(p, s->offset);
        p = ci_put_le32(p, s->length);
        p = ci_put_le32(p, s->block_size);
        memcpy(p, s->hod, d);
        memcpy(p + d, s->secret, d);
        p += 2 * d;
    }
    /* All descriptions first, then every segment's block list (§1.4). */
    for (size_t i = 0; i < ci->n_segments; i++) {
        const struct ci_segment *s = &ci->segments[i];

        p = ci_put_le32(p, s->n_blocks);
        memcpy(p, s->block_hashes, (size_t)s->n_blocks * d);
        p += (size_t)s->n_blocks * d;
    }
}

static void ci_write_v2(const struct ci_info *ci, uint8_t *p)
{
    size_t seg = 0, chunks = ci_v2_chunk_count(ci);

    *p++ = 0x00; /* bMinorVersion */
    *p++ = 0x02; /* bMajorVersion */
    *p++ = CI_V2_ALGO_SHA512_TRUNC;
    p = ci_put_be64(p, ci->v2_start);
    p = ci_put_be64(p, ci->v2_first_index);
    p = ci_put_be32(p, ci->offset_in_first);
    p = ci_put_be64(p, ci->v2_range_length);
    for (size_t c = 0; c < chunks; c++) {
        size_t n = ci_v2_chunk_size(ci, c, ci->n_segments - seg);

        *p++ = CI_V2_CHUNK_TYPE;
        p = ci_put_be32(p, (uint32_t)(n * CI_V2_SEGMENT_DESC_SIZE));
        for (size_t end = seg + n; seg < end; seg++) {
            const struct ci_segment *s = &ci->segments[seg];

            p = ci_put_be32(p, s->length);
            memcpy(p, s->hod, CI_V2_DIGEST);
            memcpy(p + CI_V2_DIGEST, s->secret, CI_V2_DIGEST);
            p += 2 * CI_V2_DIGEST;
        }
    }
}

void ci_write(const struct ci_info *ci, uint8_t *buf)
{
    if (ci->version == CI_VERSION_2)
        ci_write_v2(ci, buf);
    else
        ci_write_v1(ci, buf);
}

int ci_serialize(const struct ci_info *ci, uint8_t **out, size_t *out_len)
{
    size_t len = ci_wire_size(ci);
    uint8_t *buf = malloc(len);

    if (!buf)
        return -1;
    ci_write(ci, buf);
    *out = buf;
    *out_len = len;
    return 0;
}
