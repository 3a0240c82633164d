/* SPDX-License-Identifier: MIT */
/*
 * tagfilter.h - which (uid, tag) pairs may hold labels: a bitmap filter (two bits per pair)
 * on the loop, so a flush of a tag that holds none is answered without SQL. It can say
 * "maybe" for a pair without labels (a collision, or labels flushed since), never "no" for
 * one with labels: every label the daemon writes is added as it is written, and what the
 * database held before is added by a build that scans the labels' (uid, tag) keys in slices.
 * Until a build has finished, it says "maybe" for everything.
 */
#ifndef PEERDIST_TAGFILTER_H
#define PEERDIST_TAGFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Bits of the filter: 2^20, 128 KiB (two while a build runs). With two bits per pair, a pair
 * without labels is a "maybe" (1 - e^(-pairs / 2^19))^2 of the time: 2 % at 70,000 pairs. */
#define TAGFILTER_BITS_LOG2 20

struct tagfilter;

/* A filter that says "maybe" until its first build ends; NULL when out of memory. */
struct tagfilter *tagfilter_new(void);
void tagfilter_free(struct tagfilter *tf);

/* A label of (uid, tag) is being written: from now on, never "no" for the pair. */
void tagfilter_add(struct tagfilter *tf, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);
/* False only if (uid, tag) holds no label. */
bool tagfilter_may_have(const struct tagfilter *tf, uint32_t uid,
    const uint8_t tag[STORE_TAG_SIZE]);

/*
 * A build: begin clears a second bitmap; the caller adds each (uid, tag) the database holds
 * (tagfilter_build_add) while tagfilter_add goes on adding to both; end makes the second the
 * filter. abort drops it (the filter in force stays). begin: 0, or -1 (no memory).
 */
int tagfilter_build_begin(struct tagfilter *tf);
void tagfilter_build_add(struct tagfilter *tf, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);
void tagfilter_build_end(struct tagfilter *tf);
void tagfilter_build_abort(struct tagfilter *tf);
bool tagfilter_building(const struct tagfilter *tf);

/* Whether a build has ended; the filter's bits set, of 2^TAGFILTER_BITS_LOG2. */
bool tagfilter_ready(const struct tagfilter *tf);
size_t tagfilter_bits_set(const struct tagfilter *tf);

#endif
