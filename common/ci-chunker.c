/* SPDX-License-Identifier: MIT */
/* ci-chunker.c - content-defined cut points for V2 segments: a gear rolling hash with FastCDC's
 * normalised chunking (Xia et al., USENIX ATC 2016). Windows' own cut points are undocumented
 * (§1.1); ours only need to be stable and local, see docs/contentinfo.md. */
#include "ci-internal.h"

#include <stdlib.h>
#include <string.h>

/* The gear hash shifts one bit per byte, so its 64-bit state depends only on the last
 * CI_GEAR_WINDOW bytes: rolling may start that many bytes before the first possible cut. */
#define CI_GEAR_WINDOW 64u
#define CI_GEAR_SEED 0x9E3779B97F4A7C15ull /* fixed: boundaries must never change */

/* Cut when the masked top bits are all zero. Top bits mix the whole window; 18 bits before
 * NORMAL (cuts rare), 14 bits after (cuts likely): FastCDC's normalisation level 2. */
#define CI_MASK_STRICT 0xFFFFC00000000000ull /* 18 bits: p = 2^-18 */
#define CI_MASK_LOOSE 0xFFFC000000000000ull  /* 14 bits: p = 2^-14 */

static uint64_t ci_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ci_chunker_init(struct ci_chunker *ch)
{
    uint64_t state = CI_GEAR_SEED;

    memset(ch, 0, sizeof(*ch));
    for (int i = 0; i < 256; i++)
        ch->gear[i] = ci_splitmix64(&state);
}

/* Rolls the hash over p[i..end) and stops after the first byte where the masked bits are
 * zero; returns the index past that byte, or end. One tight loop per mask, so the common
 * case costs a shift, an add and a test per byte. */
static size_t ci_roll(const uint64_t *gear, uint64_t *fp, const uint8_t *p, size_t i, size_t end,
    uint64_t mask, bool *hit)
{
    uint64_t h = *fp;

    if (mask == 0) { /* warming the window up: no cut allowed yet */
        while (i < end)
            h = (h << 1) + gear[p[i++]];
    }
    while (i < end) {
        h = (h << 1) + gear[p[i++]];
        if (!(h & mask)) {
            *hit = true;
            break;
        }
    }
    *fp = h;
    return i;
}

/* Bytes of p, from i, up to the segment length `limit` (or the end of p). */
static size_t ci_until(uint32_t pos, size_t i, size_t len, uint32_t limit)
{
    return pos >= limit ? i : (limit - pos < len - i ? i + (limit - pos) : len);
}

/* The gear roll is a ~30-byte loop run once per byte: placed across a 64-byte line it ran
 * 1.3-1.6x slower (2026-12-02), so where it lands must not depend on the code linked
 * before it. */
#if defined(__GNUC__) && !defined(__clang__)
#define CI_ALIGN_LOOPS __attribute__((optimize("align-loops=64")))
#else
#define CI_ALIGN_LOOPS
#endif

/* Returns how many bytes of p belong to the current segment; *cut says the segment ends
 * there. The state carries over between calls, so any split of the input gives the same
 * boundaries. Phases by segment length: skip (nothing can influence a cut), warm up the
 * window (no cut before MIN), strict mask up to NORMAL, loose mask up to MAX. */
CI_ALIGN_LOOPS size_t ci_chunker_scan(struct ci_chunker *ch, const uint8_t *p, size_t len,
    bool *cut)
{
    /* Limits on the segment length once a byte is counted: no test up to MIN - 1, the strict
     * mask up to NORMAL - 1, the loose one up to MAX, where the cut is forced. */
    static const uint32_t limits[] = {CI_V2_SEGMENT_MIN - CI_GEAR_WINDOW, CI_V2_SEGMENT_MIN - 1,
        CI_V2_SEGMENT_NORMAL - 1, CI_V2_SEGMENT_MAX};
    static const uint64_t masks[] = {0, 0, CI_MASK_STRICT, CI_MASK_LOOSE};
    size_t i = 0;

    *cut = false;
    for (int phase = 0; phase < 4 && !*cut; phase++) {
        size_t start = i, end = ci_until(ch->pos, i, len, limits[phase]);

        if (phase == 0)
            i = end; /* skipped: these bytes cannot reach the window of any cut */
        else
            i = ci_roll(ch->gear, &ch->fp, p, i, end, masks[phase], cut);
        ch->pos += (uint32_t)(i - start);
    }
    if (*cut || ch->pos == CI_V2_SEGMENT_MAX) {
        *cut = true;
        ch->fp = 0;
        ch->pos = 0;
    }
    return i;
}

/* --- the cutter: the chunker alone, for a thread of its own ------------------------------- */

struct ci_cutter {
    struct ci_chunker ch;
};

struct ci_cutter *ci_cutter_new(void)
{
    struct ci_cutter *cut = malloc(sizeof(*cut));

    if (cut)
        ci_chunker_init(&cut->ch);
    return cut;
}

void ci_cutter_free(struct ci_cutter *cut)
{
    free(cut);
}

size_t ci_cutter_scan(struct ci_cutter *cut, const void *data, size_t len, size_t *ends)
{
    const uint8_t *p = data;
    size_t at = 0, n = 0;

    while (at < len) {
        bool hit;

        at += ci_chunker_scan(&cut->ch, p + at, len - at, &hit);
        if (hit)
            ends[n++] = at;
    }
    return n;
}
