/* SPDX-License-Identifier: MIT */
/* ci-gen.c - content information generated from a byte stream fed in pieces of any size
 * (§1.7). V1 keeps one digest state and the current segment's block hashes; V2 keeps one
 * digest state and the chunker. Neither buffers content. */
#include "ci-internal.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct ci_gen {
    enum ci_version version;
    struct ci_secret ks;
    EVP_MD_CTX *ctx;            /* digest of the current block (V1) or segment (V2) */
    struct ci_info *info;       /* segments closed so far */
    bool broken;                /* a call failed: the result would be wrong, finish refuses */
    uint64_t seg_start;         /* content offset of the current segment */
    uint32_t fill;              /* V1: bytes in the current block; V2: in the current segment */
    uint32_t seg_len;           /* V1: bytes in the closed blocks of the current segment */
    uint32_t seg_blocks;        /* V1: closed blocks of the current segment */
    uint8_t *hashes;            /* V1: their hashes, at most 512 digests (16 KiB with SHA-256) */
    struct ci_chunker *chunker; /* V2 */
    uint32_t *imposed;          /* V2: imposed segment lengths, then content-defined cuts */
    size_t n_imposed, next_imposed;
};

static bool ci_gen_alg_fits(enum ci_version version, const struct ci_secret *ks)
{
    return ks->len == ci_digest_len(ks->alg) && ks->len != 0 &&
        ci_alg_version(ks->alg) == (int)version;
}

struct ci_gen *ci_gen_new(enum ci_version version, const struct ci_secret *ks)
{
    struct ci_gen *gen;

    if (!ci_gen_alg_fits(version, ks))
        return NULL;
    gen = calloc(1, sizeof(*gen));
    if (!gen)
        return NULL;
    gen->version = version;
    gen->ks = *ks;
    gen->ctx = EVP_MD_CTX_new();
    gen->info = ci_info_alloc(version, ks->alg);
    if (version == CI_VERSION_1)
        gen->hashes = malloc(CI_V1_BLOCKS_PER_SEGMENT * ks->len);
    else if ((gen->chunker = malloc(sizeof(*gen->chunker))))
        ci_chunker_init(gen->chunker);
    if (!gen->ctx || !gen->info || (!gen->hashes && !gen->chunker)) {
        ci_gen_free(gen);
        return NULL;
    }
    return gen;
}

struct ci_gen *ci_gen_new_v2_imposed(const struct ci_secret *ks, const uint32_t *lengths,
    size_t n_lengths)
{
    struct ci_gen *gen;

    for (size_t i = 0; i < n_lengths; i++)
        if (lengths[i] == 0 || lengths[i] > CI_V2_PARSE_SEGMENT_MAX)
            return NULL;
    gen = ci_gen_new(CI_VERSION_2, ks);
    if (!gen || n_lengths == 0)
        return gen;
    gen->imposed = malloc(n_lengths * sizeof(*lengths));
    if (!gen->imposed) {
        ci_gen_free(gen);
        return NULL;
    }
    memcpy(gen->imposed, lengths, n_lengths * sizeof(*lengths));
    gen->n_imposed = n_lengths;
    return gen;
}

void ci_gen_free(struct ci_gen *gen)
{
    if (!gen)
        return;
    EVP_MD_CTX_free(gen->ctx);
    ci_info_free(gen->info);
    free(gen->hashes);
    free(gen->chunker);
    free(gen->imposed);
    OPENSSL_cleanse(&gen->ks, sizeof(gen->ks));
    free(gen);
}

/* Appends the segment [seg_start, seg_start+length) whose HoD is set, with Kp and HoHoDk. */
static struct ci_segment *ci_gen_close_segment(struct ci_gen *gen, const uint8_t *hod,
    uint32_t length, uint32_t block_size)
{
    struct ci_segment *seg = ci_info_push(gen->info);

    if (!seg)
        return NULL;
    seg->offset = gen->seg_start;
    seg->length = length;
    seg->block_size = block_size;
    memcpy(seg->hod, hod, gen->ks.len);
    if (ci_segment_keys(&gen->ks, seg) < 0)
        return NULL;
    gen->seg_start += length;
    return seg;
}

/* V1 segment: HoD = H(all block hashes), and the list is kept for the block lists. */
static int ci_v1_end_segment(struct ci_gen *gen)
{
    size_t bytes = (size_t)gen->seg_blocks * gen->ks.len;
    uint8_t hod[CI_MAX_DIGEST];
    struct ci_segment *seg;

    if (ci_hash(gen->ks.alg, gen->hashes, bytes, hod) < 0)
        return -1;
    seg = ci_gen_close_segment(gen, hod, gen->seg_len, CI_V1_BLOCK_SIZE);
    if (!seg || !(seg->block_hashes = malloc(bytes)))
        return -1;
    memcpy(seg->block_hashes, gen->hashes, bytes);
    seg->n_blocks = gen->seg_blocks;
    gen->seg_blocks = 0;
    gen->seg_len = 0;
    return 0;
}

static int ci_v1_end_block(struct ci_gen *gen)
{
    if (!EVP_DigestFinal_ex(gen->ctx, gen->hashes + (size_t)gen->seg_blocks * gen->ks.len, NULL))
        return -1;
    gen->seg_blocks++;
    gen->seg_len += gen->fill;
    gen->fill = 0;
    if (gen->seg_blocks == CI_V1_BLOCKS_PER_SEGMENT)
        return ci_v1_end_segment(gen);
    return 0;
}

static int ci_v1_feed(struct ci_gen *gen, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t n = CI_V1_BLOCK_SIZE - gen->fill < len ? CI_V1_BLOCK_SIZE - gen->fill : len;

        if (gen->fill == 0 && !EVP_DigestInit_ex(gen->ctx, ci_alg_md(gen->ks.alg), NULL))
            return -1;
        if (!EVP_DigestUpdate(gen->ctx, p, n))
            return -1;
        gen->fill += (uint32_t)n;
        p += n;
        len -= n;
        if (gen->fill == CI_V1_BLOCK_SIZE && ci_v1_end_block(gen) < 0)
            return -1;
    }
    return 0;
}

/* V2 segment: HoD = SHA-512(segment bytes)[0:32] (§1.2). */
static int ci_v2_end_segment(struct ci_gen *gen)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    uint32_t length = gen->fill;

    if (!EVP_DigestFinal_ex(gen->ctx, full, NULL) ||
        !ci_gen_close_segment(gen, full, length, length))
        return -1;
    gen->fill = 0;
    if (gen->next_imposed < gen->n_imposed)
        gen->next_imposed++;
    return 0;
}

/* How much of p goes into the current V2 segment, and whether it ends there. */
static size_t ci_v2_next_cut(struct ci_gen *gen, const uint8_t *p, size_t len, bool *cut)
{
    if (gen->next_imposed < gen->n_imposed) {
        size_t want = gen->imposed[gen->next_imposed] - gen->fill;

        *cut = len >= want;
        return *cut ? want : len;
    }
    return ci_chunker_scan(gen->chunker, p, len, cut);
}

static int ci_v2_feed(struct ci_gen *gen, const uint8_t *p, size_t len)
{
    while (len > 0) {
        bool cut;
        size_t n;

        if (gen->fill == 0 && !EVP_DigestInit_ex(gen->ctx, ci_alg_md(gen->ks.alg), NULL))
            return -1;
        n = ci_v2_next_cut(gen, p, len, &cut);
        if (!EVP_DigestUpdate(gen->ctx, p, n))
            return -1;
        gen->fill += (uint32_t)n;
        p += n;
        len -= n;
        if (cut && ci_v2_end_segment(gen) < 0)
            return -1;
    }
    return 0;
}

/* Hashes p[0..len) into the current V2 segment. */
static int ci_v2_hash(struct ci_gen *gen, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    if (len > CI_V2_PARSE_SEGMENT_MAX - gen->fill)
        return -1; /* ends too far apart: not a cutter's */
    if (gen->fill == 0 && !EVP_DigestInit_ex(gen->ctx, ci_alg_md(gen->ks.alg), NULL))
        return -1;
    if (!EVP_DigestUpdate(gen->ctx, p, len))
        return -1;
    gen->fill += (uint32_t)len;
    return 0;
}

int ci_gen_feed_cut(struct ci_gen *gen, const void *data, size_t len, const size_t *ends,
    size_t n_ends)
{
    const uint8_t *p = data;
    size_t at = 0;

    if (gen->broken || !gen->info || gen->version != CI_VERSION_2)
        return -1;
    for (size_t i = 0; i < n_ends; i++) {
        if (ends[i] <= at || ends[i] > len || ci_v2_hash(gen, p + at, ends[i] - at) < 0 ||
            ci_v2_end_segment(gen) < 0) {
            gen->broken = true;
            return -1;
        }
        at = ends[i];
    }
    if (ci_v2_hash(gen, p + at, len - at) < 0) {
        gen->broken = true;
        return -1;
    }
    return 0;
}

int ci_gen_feed(struct ci_gen *gen, const void *data, size_t len)
{
    int rc;

    if (gen->broken || !gen->info)
        return -1;
    if (gen->version == CI_VERSION_1)
        rc = ci_v1_feed(gen, data, len);
    else
        rc = ci_v2_feed(gen, data, len);
    if (rc < 0)
        gen->broken = true;
    return rc;
}

static int ci_gen_flush(struct ci_gen *gen)
{
    if (gen->version == CI_VERSION_2)
        return gen->fill ? ci_v2_end_segment(gen) : 0;
    if (gen->fill && ci_v1_end_block(gen) < 0)
        return -1;
    return gen->seg_blocks ? ci_v1_end_segment(gen) : 0;
}

int ci_gen_finish(struct ci_gen *gen, struct ci_info **out)
{
    *out = NULL;
    if (gen->broken || !gen->info || ci_gen_flush(gen) < 0) {
        gen->broken = true;
        return -1;
    }
    ci_info_set_whole(gen->info);
    *out = gen->info;
    gen->info = NULL;
    return 0;
}
