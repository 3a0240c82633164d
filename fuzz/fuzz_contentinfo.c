/* SPDX-License-Identifier: MIT */
/* fuzz_contentinfo.c - libFuzzer harness for the content-information parsers: the whole-buffer
 * parser must accept input only if it serializes back byte for byte, and the streaming parser,
 * fed the same bytes in input-dependent pieces, must reach exactly the same verdict. */
#include "contentinfo.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_PIECE 23u /* small pieces reach every split point of short inputs */

/* Accepted input: byte-exact round trip, and ranges and checks run without faults. */
static void fuzz_accepted(const struct ci_info *ci, const uint8_t *data, size_t size)
{
    uint8_t *wire;
    size_t len;
    struct ci_info *r;

    if (ci_serialize(ci, &wire, &len) < 0)
        abort();
    if (len != size || memcmp(wire, data, size) != 0)
        abort();
    free(wire);
    for (size_t i = 0; i < ci->n_segments && i < 4; i++) {
        (void)ci_verify_segment_hashes(ci, i);
        (void)ci_verify_block(ci, i, ci->segments[i].first_block, data, size);
    }
    if (ci->range_length > 2 && ci_range(ci, 1, ci->range_length - 2, &r) == 0) {
        if (ci_serialize(r, &wire, &len) == 0)
            free(wire);
        ci_info_free(r);
    }
}

/* Piece sizes come from the input so the fuzzer explores split points too. */
static DWORD fuzz_stream(const uint8_t *data, size_t size, struct ci_error *err)
{
    struct ci_stream *st = ci_stream_new(0);
    struct ci_info *ci = NULL;
    DWORD rc = ERROR_SUCCESS;
    size_t pos = 0, k = 0;

    if (!st)
        abort();
    while (pos < size && !rc) {
        size_t piece = 1 + data[k++ % size] % FUZZ_MAX_PIECE;

        if (piece > size - pos)
            piece = size - pos;
        rc = ci_stream_feed(st, data + pos, piece, err);
        pos += piece;
    }
    if (!rc)
        rc = ci_stream_finish(st, &ci, err);
    ci_info_free(ci);
    ci_stream_free(st);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ci_info *ci = NULL;
    struct ci_error werr, serr;
    DWORD wrc = ci_parse(data, size, &ci, &werr), src;

    if (wrc == ERROR_SUCCESS)
        fuzz_accepted(ci, data, size);
    else if (ci != NULL || werr.offset > size)
        abort();
    ci_info_free(ci);
    src = fuzz_stream(data, size, &serr);
    if (src != wrc || (wrc && (serr.offset != werr.offset || strcmp(serr.reason, werr.reason))))
        abort();
    return 0;
}
