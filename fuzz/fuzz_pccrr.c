/* SPDX-License-Identifier: MIT */
/* fuzz_pccrr.c - libFuzzer harness for the MS-PCCRR codecs (common/pccrr.c): every input goes
 * to the request and response decoders as it is and with its length fields made to agree; what
 * they accept must encode again to a message that decodes to the same fields, and a BLK's
 * ciphertext must decrypt and re-encrypt (same key, same IV) to the same bytes. */
#include "pccrr.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t KP[32] = {0x79, 0x0c, 0x33, 0x9c, 0x40, 0xd3, 0x1f, 0x55, 0x22, 0x54, 0x2b,
    0x69, 0xed, 0x7d, 0x01, 0x06, 0x55, 0x3d, 0xe5, 0x8d, 0x81, 0x50, 0xb1, 0xed, 0x11, 0xfb, 0xa2,
    0x01, 0xd3, 0x9d, 0x05, 0x15};

static uint8_t out[PCCRR_TRANSPORT_SIZE + PCCRR_RESPONSE_MAX];
static uint8_t plain[PCCRR_TRANSPORT_SIZE + PCCRR_RESPONSE_MAX];

static void same_ranges(uint32_t n, const struct pccrr_range *a, uint32_t m,
    const struct pccrr_range *b)
{
    if (n != m || memcmp(a, b, n * sizeof(*a)) != 0)
        abort();
}

static void request(const uint8_t *data, size_t size)
{
    static struct pccrr_request q, r;
    int rc = pccrr_request_decode(data, size, &q);
    if (rc == PCCRR_E_VERSION && q.hdr.type == PCCRR_MSG_NEGO_REQ)
        abort(); /* NEGO_REQ is taken whatever its version */
    if (rc)
        return;
    if (q.hdr.size != size || size > PCCRR_REQUEST_MAX)
        abort();
    long n;
    if (q.hdr.type == PCCRR_MSG_NEGO_REQ) {
        n = pccrr_encode_nego_req(out, sizeof(out), q.min_version, q.max_version);
    } else {
        uint32_t first;
        if (!pccrr_request_first_block(&q, &first) || first >= PCCRR_BLOCKS_MAX)
            abort();
        n = (q.hdr.type == PCCRR_MSG_GETBLKS ? pccrr_encode_getblks : pccrr_encode_getblklist)(out,
            sizeof(out), (enum pccrr_crypto)q.hdr.crypto, q.segment_id, q.segment_id_len, q.ranges,
            q.range_count);
    }
    if (n <= 0 || pccrr_request_decode(out, (size_t)n, &r) != 0)
        abort();
    if (r.hdr.type != q.hdr.type || r.min_version != q.min_version ||
        r.max_version != q.max_version || r.segment_id_len != q.segment_id_len ||
        memcmp(r.segment_id, q.segment_id, q.segment_id_len) != 0)
        abort();
    same_ranges(q.range_count, q.ranges, r.range_count, r.ranges);
}

static void blk(const struct pccrr_response *p)
{
    static struct pccrr_response r;
    size_t pl;
    long n;
    if (p->block_len == 0) {
        n = pccrr_encode_blk_empty(out, sizeof(out), p->segment_id, p->segment_id_len,
            p->block_index);
        if (n <= 0 || pccrr_response_decode(out, (size_t)n, &r) != 0 || r.block_len != 0 ||
            r.block_index != p->block_index)
            abort();
        return;
    }
    if (p->hdr.crypto == PCCRR_CRYPTO_NONE) {
        if (pccrr_blk_decrypt(p, KP, sizeof(KP), plain, sizeof(plain), &pl) != PCCRR_E_CRYPTO)
            abort();
        return;
    }
    if (pccrr_blk_decrypt(p, KP, sizeof(KP), plain, sizeof(plain), &pl) != 0)
        return; /* wrong padding for this key: refused, as it must be */
    if (pl >= p->block_len || p->block_len - pl > PCCRR_IV_SIZE)
        abort();
    n = pccrr_encode_blk_iv(out, sizeof(out), (enum pccrr_crypto)p->hdr.crypto, p->segment_id,
        p->segment_id_len, p->block_index, p->next_block_index, KP, sizeof(KP), p->iv, plain, pl);
    if (n <= 0 || pccrr_response_decode(out, (size_t)n, &r) != 0)
        abort();
    if (r.block_len != p->block_len || memcmp(r.block, p->block, p->block_len) != 0 ||
        r.block_index != p->block_index || r.next_block_index != p->next_block_index)
        abort();
}

static void response(const uint8_t *data, size_t size)
{
    static struct pccrr_response p, r;
    size_t total;
    int rc = pccrr_response_decode(data, size, &p);
    if (rc == 0 && (pccrr_response_length(data, size, &total) != 0 || total != size))
        abort();
    if (rc)
        return;
    long n;
    switch (p.hdr.type) {
    case PCCRR_MSG_NEGO_RESP:
        n = pccrr_encode_nego_resp(out, sizeof(out), p.min_version, p.max_version);
        if (n <= 0 || pccrr_response_decode(out, (size_t)n, &r) != 0 ||
            r.min_version != p.min_version || r.max_version != p.max_version)
            abort();
        break;
    case PCCRR_MSG_BLKLIST:
        n = pccrr_encode_blklist(out, sizeof(out), p.segment_id, p.segment_id_len, p.ranges,
            p.range_count, p.next_block_index);
        if (n <= 0 || pccrr_response_decode(out, (size_t)n, &r) != 0 ||
            r.next_block_index != p.next_block_index ||
            memcmp(r.segment_id, p.segment_id, p.segment_id_len) != 0)
            abort();
        same_ranges(p.range_count, p.ranges, r.range_count, r.ranges);
        break;
    case PCCRR_MSG_BLK: blk(&p); break;
    default: abort();
    }
}

static void put32(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PCCRR_TRANSPORT_SIZE + PCCRR_RESPONSE_MAX)
        return 0;
    /* as it is: a request, and a response (transport length first) */
    request(data, size);
    response(data, size);
    /* with the lengths made to agree, so mutations reach the fields behind them */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    if (size >= PCCRR_HEADER_SIZE) {
        put32(copy + 8, size);
        request(copy, size);
        memcpy(copy + 8, data + 8, 4);
    }
    if (size >= PCCRR_TRANSPORT_SIZE + PCCRR_HEADER_SIZE) {
        put32(copy, size - PCCRR_TRANSPORT_SIZE);
        put32(copy + 12, size - PCCRR_TRANSPORT_SIZE);
        response(copy, size);
    }
    free(copy);
    return 0;
}
