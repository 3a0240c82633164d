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
    /* Lanes (ci_gen_new_lane): this generator computes only the digests of the units (V1
     * blocks, V2 segments) whose index modulo n_lanes is lane; 0 lanes means all of them. */
    unsigned lane, n_lanes;
    uint64_t unit; /* index of the current V1 block or V2 segment in the content */
};

/* Whether this generator computes the digest of the current unit. */
static bool ci_gen_mine(const struct ci_gen *gen)
{
    return gen->n_lanes == 0 || gen->unit % gen->n_lanes == gen->lane;
}

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

struct ci_gen *ci_gen_new_lane(enum ci_version version, const struct ci_secret *ks, unsigned lane,
    unsigned n_lanes)
{
    struct ci_gen *gen;

    if (n_lanes == 0 || lane >= n_lanes)
        return NULL;
    gen = ci_gen_new(version, ks);
    if (gen) {
        gen->lane = lane;
        gen->n_lanes = n_lanes;
    }
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

    if (gen->n_lanes) { /* a lane has only some block hashes: HoD and keys when assembled */
        seg = ci_info_push(gen->info);
        if (seg) {
            seg->offset = gen->seg_start;
            seg->length = gen->seg_len;
            seg->block_size = CI_V1_BLOCK_SIZE;
            gen->seg_start += gen->seg_len;
        }
    } else if (ci_hash(gen->ks.alg, gen->hashes, bytes, hod) < 0) {
        return -1;
    } else {
        seg = ci_gen_close_segment(gen, hod, gen->seg_len, CI_V1_BLOCK_SIZE);
    }
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
    uint8_t *slot = gen->hashes + (size_t)gen->seg_blocks * gen->ks.len;

    if (!ci_gen_mine(gen))
        memset(slot, 0, gen->ks.len); /* another lane's */
    else if (!EVP_DigestFinal_ex(gen->ctx, slot, NULL))
        return -1;
    gen->unit++;
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
        bool mine = ci_gen_mine(gen);

        if (mine && gen->fill == 0 && !EVP_DigestInit_ex(gen->ctx, ci_alg_md(gen->ks.alg), NULL))
            return -1;
        if (mine && !EVP_DigestUpdate(gen->ctx, p, n))
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

    if (!ci_gen_mine(gen)) { /* another lane's: only where it lies */
        struct ci_segment *seg = ci_info_push(gen->info);

        if (!seg)
            return -1;
        seg->offset = gen->seg_start;
        seg->length = length;
        seg->block_size = length;
        gen->seg_start += length;
    } else if (!EVP_DigestFinal_ex(gen->ctx, full, NULL) ||
        !ci_gen_close_segment(gen, full, length, length)) {
        return -1;
    }
    gen->unit++;
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
        bool cut, mine = ci_gen_mine(gen);
        size_t n;

        if (mine && gen->fill == 0 && !EVP_DigestInit_ex(gen->ctx, ci_alg_md(gen->ks.alg), NULL))
            return -1;
        n = ci_v2_next_cut(gen, p, len, &cut);
        if (mine && !EVP_DigestUpdate(gen->ctx, p, n))
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
    if (!ci_gen_mine(gen)) {
        gen->fill += (uint32_t)len;
        return 0;
    }
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
    if (gen->n_lanes)
        return -1; /* ci_gen_finish_lanes */
    if (gen->broken || !gen->info || ci_gen_flush(gen) < 0) {
        gen->broken = true;
        return -1;
    }
    ci_info_set_whole(gen->info);
    *out = gen->info;
    gen->info = NULL;
    return 0;
}

/* Segment k of the assembled V2 content comes whole from lane k % n. */
static int ci_lanes_v2(struct ci_gen **lanes, size_t n, struct ci_info *ci)
{
    for (size_t k = 0; k < ci->n_segments; k++) {
        const struct ci_segment *src = &lanes[k % n]->info->segments[k];

        memcpy(ci->segments[k].hod, src->hod, sizeof(src->hod));
        memcpy(ci->segments[k].secret, src->secret, sizeof(src->secret));
        memcpy(ci->segments[k].id, src->id, sizeof(src->id));
    }
    return 0;
}

/* V1 block b of the content (all segments but the last hold 512) comes from lane b % n; HoD
 * and the keys follow from the assembled list. */
static int ci_lanes_v1(struct ci_gen **lanes, size_t n, struct ci_info *ci,
    const struct ci_secret *ks)
{
    for (size_t k = 0; k < ci->n_segments; k++) {
        struct ci_segment *seg = &ci->segments[k];

        for (uint32_t b = 0; b < seg->n_blocks; b++) {
            uint64_t unit = (uint64_t)k * CI_V1_BLOCKS_PER_SEGMENT + b;
            const struct ci_segment *src = &lanes[unit % n]->info->segments[k];

            if (unit % n != 0) /* lane 0's are in place */
                memcpy(seg->block_hashes + (size_t)b * ks->len,
                    src->block_hashes + (size_t)b * ks->len, ks->len);
        }
        if (ci_hash(ks->alg, seg->block_hashes, (size_t)seg->n_blocks * ks->len, seg->hod) < 0 ||
            ci_segment_keys(ks, seg) < 0)
            return -1;
    }
    return 0;
}

int ci_gen_finish_lanes(struct ci_gen **lanes, size_t n, struct ci_info **out)
{
    struct ci_info *ci;
    int rc;

    *out = NULL;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct ci_gen *g = lanes[i];

        if (g->n_lanes != n || g->lane != i || g->version != lanes[0]->version || g->broken ||
            !g->info || ci_gen_flush(g) < 0)
            goto broken;
        if (g->info->n_segments != lanes[0]->info->n_segments)
            goto broken;
        for (size_t k = 0; k < g->info->n_segments; k++)
            if (g->info->segments[k].offset != lanes[0]->info->segments[k].offset ||
                g->info->segments[k].length != lanes[0]->info->segments[k].length)
                goto broken; /* fed different bytes or ends */
    }
    ci = lanes[0]->info;
    rc = ci->version == CI_VERSION_1 ? ci_lanes_v1(lanes, n, ci, &lanes[0]->ks)
                                     : ci_lanes_v2(lanes, n, ci);
    if (rc < 0)
        goto broken;
    ci_info_set_whole(ci);
    *out = ci;
    lanes[0]->info = NULL;
    return 0;
broken:
    for (size_t i = 0; i < n; i++)
        lanes[i]->broken = true;
    return -1;
}
