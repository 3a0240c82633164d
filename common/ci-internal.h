/* SPDX-License-Identifier: MIT */
/* ci-internal.h - helpers shared by the content-information files (ci-*.c) and nobody else:
 * byte order, the OpenSSL digest behind each algorithm, building a ci_info, error reports. */
#ifndef PEERDIST_CI_INTERNAL_H
#define PEERDIST_CI_INTERNAL_H

#include "contentinfo.h"

#include <openssl/evp.h>

/* V2 chunks hold at most this many 68-byte descriptions (dwChunkDataLength is 32 bits). */
#define CI_V2_SEGMENTS_PER_CHUNK (UINT32_MAX / CI_V2_SEGMENT_DESC_SIZE)
#define CI_V2_CHUNK_HEADER_SIZE 5u
#define CI_V2_CHUNK_TYPE 0x00u

const EVP_MD *ci_alg_md(enum ci_hash_alg alg);
int ci_alg_version(enum ci_hash_alg alg); /* which content-information version uses it */

/* Kp and HoHoDk for a segment whose hod is set. */
int ci_segment_keys(const struct ci_secret *ks, struct ci_segment *seg);

struct ci_info *ci_info_alloc(enum ci_version version, enum ci_hash_alg alg);
/* Appends a zeroed segment; NULL on allocation failure. */
struct ci_segment *ci_info_push(struct ci_info *ci);
void ci_info_set_whole(struct ci_info *ci);

/* Checks shared by the whole-buffer and the streaming parser (ci-parse.c). */
DWORD ci_check_version(const uint8_t *buf, size_t len, int *version, struct ci_error *err);
DWORD ci_check_algo(int version, const uint8_t *buf, size_t len, enum ci_hash_alg *alg,
    struct ci_error *err);

/* V2 cut points (ci-chunker.c). */
struct ci_chunker {
    uint64_t gear[256]; /* per-byte random values of the gear hash */
    uint64_t fp;        /* rolling hash */
    uint32_t pos;       /* bytes in the current segment */
};
void ci_chunker_init(struct ci_chunker *ch);
size_t ci_chunker_scan(struct ci_chunker *ch, const uint8_t *p, size_t len, bool *cut);

DWORD ci_fail(struct ci_error *err, DWORD code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline uint16_t ci_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t ci_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t ci_get_le64(const uint8_t *p)
{
    return (uint64_t)ci_get_le32(p) | (uint64_t)ci_get_le32(p + 4) << 32;
}

static inline uint32_t ci_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t ci_get_be64(const uint8_t *p)
{
    return (uint64_t)ci_get_be32(p) << 32 | ci_get_be32(p + 4);
}

static inline uint8_t *ci_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static inline uint8_t *ci_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static inline uint8_t *ci_put_le64(uint8_t *p, uint64_t v)
{
    ci_put_le32(p, (uint32_t)v);
    return ci_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint8_t *ci_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    return p + 4;
}

static inline uint8_t *ci_put_be64(uint8_t *p, uint64_t v)
{
    ci_put_be32(p, (uint32_t)(v >> 32));
    return ci_put_be32(p + 4, (uint32_t)v);
}

#endif
