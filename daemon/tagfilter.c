/* SPDX-License-Identifier: MIT */
/*
 * tagfilter.c - the (uid, tag) filter (see tagfilter.h): two bitmaps of 2^TAGFILTER_BITS_LOG2
 * bits, the one in force and the one a build fills, and a keyed hash that picks two bits per
 * pair. Loop thread only. The key is random per start, so which pairs collide is not known
 * outside; a collision costs a probe, never a wrong answer.
 */
#include "tagfilter.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define WORDS ((size_t)1 << (TAGFILTER_BITS_LOG2 - 6))
#define MASK (((uint64_t)1 << TAGFILTER_BITS_LOG2) - 1)

struct tagfilter {
    uint64_t *bits; /* in force once ready */
    uint64_t *next; /* the build's, NULL when none runs */
    size_t nset, next_nset;
    bool ready;
    uint64_t key;
};

/* MurmurHash3's 64-bit finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t pair_hash(const struct tagfilter *tf, uint32_t uid, const uint8_t *tag)
{
    uint64_t w0, w1;
    memcpy(&w0, tag, 8);
    memcpy(&w1, tag + 8, 8);
    uint64_t h = mix(tf->key ^ ((uint64_t)uid * 0x9e3779b97f4a7c15ULL));
    h = mix(h ^ w0);
    return mix(h ^ w1);
}

static void set_bit(uint64_t *bits, size_t *nset, uint64_t i)
{
    uint64_t m = (uint64_t)1 << (i & 63);
    if (!(bits[i >> 6] & m)) {
        bits[i >> 6] |= m;
        (*nset)++;
    }
}

static bool has_bit(const uint64_t *bits, uint64_t i)
{
    return bits[i >> 6] & ((uint64_t)1 << (i & 63));
}

static void set_pair(uint64_t *bits, size_t *nset, uint64_t h)
{
    set_bit(bits, nset, h & MASK);
    set_bit(bits, nset, (h >> 32) & MASK);
}

struct tagfilter *tagfilter_new(void)
{
    struct tagfilter *tf = calloc(1, sizeof(*tf));
    if (!tf)
        return NULL;
    tf->bits = calloc(WORDS, sizeof(uint64_t));
    if (!tf->bits || RAND_bytes((unsigned char *)&tf->key, sizeof(tf->key)) != 1) {
        tagfilter_free(tf);
        return NULL;
    }
    return tf;
}

void tagfilter_free(struct tagfilter *tf)
{
    if (!tf)
        return;
    free(tf->bits);
    free(tf->next);
    free(tf);
}

void tagfilter_add(struct tagfilter *tf, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    uint64_t h = pair_hash(tf, uid, tag);
    set_pair(tf->bits, &tf->nset, h);
    if (tf->next)
        set_pair(tf->next, &tf->next_nset, h);
}

bool tagfilter_may_have(const struct tagfilter *tf, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    if (!tf->ready)
        return true;
    uint64_t h = pair_hash(tf, uid, tag);
    return has_bit(tf->bits, h & MASK) && has_bit(tf->bits, (h >> 32) & MASK);
}

int tagfilter_build_begin(struct tagfilter *tf)
{
    if (!tf->next && !(tf->next = malloc(WORDS * sizeof(uint64_t))))
        return -1;
    memset(tf->next, 0, WORDS * sizeof(uint64_t));
    tf->next_nset = 0;
    return 0;
}

void tagfilter_build_add(struct tagfilter *tf, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    if (tf->next)
        set_pair(tf->next, &tf->next_nset, pair_hash(tf, uid, tag));
}

void tagfilter_build_end(struct tagfilter *tf)
{
    if (!tf->next)
        return;
    free(tf->bits);
    tf->bits = tf->next;
    tf->nset = tf->next_nset;
    tf->next = NULL;
    tf->ready = true;
}

void tagfilter_build_abort(struct tagfilter *tf)
{
    free(tf->next);
    tf->next = NULL;
}

bool tagfilter_building(const struct tagfilter *tf)
{
    return tf->next != NULL;
}

bool tagfilter_ready(const struct tagfilter *tf)
{
    return tf->ready;
}

size_t tagfilter_bits_set(const struct tagfilter *tf)
{
    return tf->nset;
}
