/* SPDX-License-Identifier: MIT */
/* test_pccrr.c - Check tests of common/pccrr: the NEGO_REQ, GETBLKS and BLK wire vectors (the
 * BLK decrypted with the segment key of the content-information vector and checked against its
 * block hash), every other message round-tripped and held to the byte layouts of §3, and
 * malformed input (every truncation, wrong sizes, fields, padding, cipher padding) refused. */
#include "check_run.h"
#include "contentinfo.h"
#include "pccrr.h"

#include <check.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PEERDIST_VECTORS_DIR
#error "PEERDIST_VECTORS_DIR must name the tests/vectors directory"
#endif

#define V_NEGO "pccrr_nego_req_v1_to_v2.hex"
#define V_GETBLKS "synth300k_pccrr_getblks_seg0_blk0.hex"
#define V_BLK "synth300k_pccrr_blk_seg0_blk0_aes128.hex"
#define V_CI "synth300k_v1_content_info.hex"
#define BLK_WIRE_SIZE 65644u
#define BLOCK_SIZE 65536u

/* --- helpers ---------------------------------------------------------------------------- */

static uint8_t *load_hex(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", PEERDIST_VECTORS_DIR, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    uint8_t *out = malloc(1u << 20);
    ck_assert(out != NULL);
    size_t n = 0;
    int c, hi = -1;
    while ((c = fgetc(f)) != EOF) {
        int v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            ck_assert(n < (1u << 20));
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    fclose(f);
    *len = n;
    return out;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The synthetic content: byte[i] = (7*i + 13*(i>>8)) mod 256 (vectors/README.md). */
static uint8_t synth_byte(size_t i)
{
    return (uint8_t)(7 * i + 13 * (i >> 8));
}

static struct ci_info *synth_ci(void)
{
    size_t len;
    uint8_t *bytes = load_hex(V_CI, &len);
    struct ci_info *ci = NULL;
    struct ci_error err;
    ck_assert_uint_eq(ci_parse(bytes, len, &ci, &err), 0);
    free(bytes);
    return ci;
}

static const uint8_t ID32[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* --- the vectors -------------------------------------------------------------------------- */

START_TEST(test_nego_req_vector)
{
    size_t len;
    uint8_t *v = load_hex(V_NEGO, &len);
    ck_assert_uint_eq(len, PCCRR_NEGO_SIZE);

    struct pccrr_request req;
    ck_assert_int_eq(pccrr_request_decode(v, len, &req), 0);
    ck_assert_uint_eq(req.hdr.type, PCCRR_MSG_NEGO_REQ);
    ck_assert_uint_eq(req.hdr.version, PCCRR_VERSION_1_0);
    ck_assert_uint_eq(req.hdr.size, 24);
    ck_assert_uint_eq(req.hdr.crypto, PCCRR_CRYPTO_NONE);
    ck_assert_uint_eq(req.min_version, PCCRR_VERSION_1_0);
    ck_assert_uint_eq(req.max_version, PCCRR_VERSION_2_0);

    uint8_t out[64];
    long n = pccrr_encode_nego_req(out, sizeof(out), PCCRR_VERSION_1_0, PCCRR_VERSION_2_0);
    ck_assert_int_eq(n, (long)len);
    ck_assert(memcmp(out, v, len) == 0);
    ck_assert_int_eq(pccrr_encode_nego_req(out, len - 1, PCCRR_VERSION_1_0, PCCRR_VERSION_2_0),
        PCCRR_E_SPACE);
    free(v);
}
END_TEST

START_TEST(test_getblks_vector)
{
    size_t len;
    uint8_t *v = load_hex(V_GETBLKS, &len);
    struct ci_info *ci = synth_ci();
    ck_assert_uint_eq(len, 68);

    struct pccrr_request req;
    ck_assert_int_eq(pccrr_request_decode(v, len, &req), 0);
    ck_assert_uint_eq(req.hdr.type, PCCRR_MSG_GETBLKS);
    ck_assert_uint_eq(req.hdr.version, PCCRR_VERSION_1_0);
    ck_assert_uint_eq(req.hdr.crypto, PCCRR_CRYPTO_AES_128);
    ck_assert_uint_eq(req.segment_id_len, 32);
    ck_assert(memcmp(req.segment_id, ci->segments[0].id, 32) == 0);
    ck_assert_uint_eq(req.range_count, 1);
    ck_assert_uint_eq(req.ranges[0].index, 0);
    ck_assert_uint_eq(req.ranges[0].count, 1);
    uint32_t first;
    ck_assert(pccrr_request_first_block(&req, &first));
    ck_assert_uint_eq(first, 0);

    uint8_t out[128];
    struct pccrr_range r = {0, 1};
    long n = pccrr_encode_getblks(out, sizeof(out), PCCRR_CRYPTO_AES_128, ci->segments[0].id, 32,
        &r, 1);
    ck_assert_int_eq(n, (long)len);
    ck_assert(memcmp(out, v, len) == 0);
    ci_info_free(ci);
    free(v);
}
END_TEST

START_TEST(test_blk_vector)
{
    size_t len;
    uint8_t *v = load_hex(V_BLK, &len);
    struct ci_info *ci = synth_ci();
    const struct ci_segment *seg = &ci->segments[0];
    ck_assert_uint_eq(len, BLK_WIRE_SIZE);

    struct pccrr_response resp;
    ck_assert_int_eq(pccrr_response_decode(v, len, &resp), 0);
    ck_assert_uint_eq(resp.hdr.type, PCCRR_MSG_BLK);
    ck_assert_uint_eq(resp.hdr.crypto, PCCRR_CRYPTO_AES_128);
    ck_assert_uint_eq(resp.hdr.size, len - 4);
    ck_assert_uint_eq(resp.segment_id_len, 32);
    ck_assert(memcmp(resp.segment_id, seg->id, 32) == 0);
    ck_assert_uint_eq(resp.block_index, 0);
    ck_assert_uint_eq(resp.next_block_index, 1);
    ck_assert_uint_eq(resp.block_len, BLOCK_SIZE + 16);
    ck_assert_uint_eq(resp.iv_len, 16);
    for (unsigned i = 0; i < 16; i++)
        ck_assert_uint_eq(resp.iv[i], i);

    /* Key = Kp[0:16] of the segment, from the content information; the hash of the block. */
    uint8_t *plain = malloc(BLOCK_SIZE + 16);
    size_t plain_len;
    ck_assert_int_eq(
        pccrr_blk_decrypt(&resp, seg->secret, ci->digest_len, plain, BLOCK_SIZE + 16, &plain_len),
        0);
    ck_assert_uint_eq(plain_len, BLOCK_SIZE);
    ck_assert(ci_verify_block(ci, 0, 0, plain, plain_len));
    for (size_t i = 0; i < BLOCK_SIZE; i++)
        ck_assert_uint_eq(plain[i], synth_byte(i));
    /* The key of another algorithm, or of another segment, fails its padding or its hash. */
    uint8_t wrong[32];
    memcpy(wrong, seg->secret, 32);
    wrong[0] ^= 1;
    size_t wl;
    int rc = pccrr_blk_decrypt(&resp, wrong, 32, plain, BLOCK_SIZE + 16, &wl);
    ck_assert(rc != 0 || !ci_verify_block(ci, 0, 0, plain, wl));

    /* Encoding the same block with the same IV gives the vector byte for byte. */
    for (size_t i = 0; i < BLOCK_SIZE; i++)
        plain[i] = synth_byte(i);
    uint8_t *out = malloc(BLK_WIRE_SIZE);
    uint8_t iv[16];
    for (unsigned i = 0; i < 16; i++)
        iv[i] = (uint8_t)i;
    ck_assert_uint_eq(pccrr_blk_size(32, BLOCK_SIZE), BLK_WIRE_SIZE);
    long n = pccrr_encode_blk_iv(out, BLK_WIRE_SIZE, PCCRR_CRYPTO_AES_128, seg->id, 32, 0, 1,
        seg->secret, ci->digest_len, iv, plain, BLOCK_SIZE);
    ck_assert_int_eq(n, (long)BLK_WIRE_SIZE);
    ck_assert(memcmp(out, v, len) == 0);
    ck_assert_int_eq(pccrr_encode_blk_iv(out, BLK_WIRE_SIZE - 1, PCCRR_CRYPTO_AES_128, seg->id, 32,
                         0, 1, seg->secret, 32, iv, plain, BLOCK_SIZE),
        PCCRR_E_SPACE);

    /* A fresh IV each time. */
    uint8_t *out2 = malloc(BLK_WIRE_SIZE);
    ck_assert_int_eq(pccrr_encode_blk(out, BLK_WIRE_SIZE, PCCRR_CRYPTO_AES_128, seg->id, 32, 0, 1,
                         seg->secret, 32, plain, BLOCK_SIZE),
        (long)BLK_WIRE_SIZE);
    ck_assert_int_eq(pccrr_encode_blk(out2, BLK_WIRE_SIZE, PCCRR_CRYPTO_AES_128, seg->id, 32, 0, 1,
                         seg->secret, 32, plain, BLOCK_SIZE),
        (long)BLK_WIRE_SIZE);
    ck_assert(memcmp(out + BLK_WIRE_SIZE - 16, out2 + BLK_WIRE_SIZE - 16, 16) != 0);
    struct pccrr_response r2;
    ck_assert_int_eq(pccrr_response_decode(out2, BLK_WIRE_SIZE, &r2), 0);
    ck_assert_int_eq(pccrr_blk_decrypt(&r2, seg->secret, 32, out, BLK_WIRE_SIZE, &wl), 0);
    ck_assert(ci_verify_block(ci, 0, 0, out, wl));

    free(out2);
    free(out);
    free(plain);
    ci_info_free(ci);
    free(v);
}
END_TEST

/* Every proper prefix of each vector is refused, by the right decoder. */
static const char *const VECTORS[] = {V_NEGO, V_GETBLKS, V_BLK};

START_TEST(test_truncations)
{
    size_t len;
    uint8_t *v = load_hex(VECTORS[_i], &len);
    bool response = _i == 2;
    for (size_t k = 0; k < len; k++) {
        /* a copy of exactly k bytes, so ASan sees any read past them */
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, v, k);
        if (response) {
            struct pccrr_response r;
            ck_assert_msg(pccrr_response_decode(c, k, &r) < 0, "prefix %zu accepted", k);
        } else {
            struct pccrr_request r;
            ck_assert_msg(pccrr_request_decode(c, k, &r) < 0, "prefix %zu accepted", k);
        }
        free(c);
    }
    /* A prefix whose lengths are made to agree (MsgSize and transport) is refused too. */
    if (!response) {
        for (size_t k = 16; k < len; k++) {
            uint8_t *c = malloc(k);
            memcpy(c, v, k);
            put_be32(c + 8, (uint32_t)k);
            struct pccrr_request r;
            ck_assert_msg(pccrr_request_decode(c, k, &r) < 0, "resized prefix %zu accepted", k);
            free(c);
        }
    } else {
        for (size_t k = 20; k < len; k += (k < 200 || k > len - 200) ? 1 : 997) {
            uint8_t *c = malloc(k);
            memcpy(c, v, k);
            put_be32(c, (uint32_t)(k - 4));
            put_be32(c + 12, (uint32_t)(k - 4));
            struct pccrr_response r;
            ck_assert_msg(pccrr_response_decode(c, k, &r) < 0, "resized prefix %zu accepted", k);
            free(c);
        }
    }
    free(v);
}
END_TEST

/* --- requests ----------------------------------------------------------------------------- */

START_TEST(test_getblklist_layout)
{
    uint8_t id48[48];
    memset(id48, 0xab, sizeof(id48));
    struct pccrr_range rs[3] = {{0, 4}, {10, 2}, {500, 12}};
    uint8_t out[256];
    long n = pccrr_encode_getblklist(out, sizeof(out), PCCRR_CRYPTO_AES_256, id48, 48, rs, 3);
    /* header 16, size 4, id 48, count 4, 3 ranges 24 */
    ck_assert_int_eq(n, 16 + 4 + 48 + 4 + 24);
    ck_assert_uint_eq(be32(out), PCCRR_VERSION_1_0);
    ck_assert_uint_eq(be32(out + 4), PCCRR_MSG_GETBLKLIST);
    ck_assert_uint_eq(be32(out + 8), (uint32_t)n);
    ck_assert_uint_eq(be32(out + 12), PCCRR_CRYPTO_AES_256);
    ck_assert_uint_eq(be32(out + 16), 48);
    ck_assert(memcmp(out + 20, id48, 48) == 0);
    ck_assert_uint_eq(be32(out + 68), 3);
    ck_assert_uint_eq(be32(out + 72), 0);
    ck_assert_uint_eq(be32(out + 76), 4);
    ck_assert_uint_eq(be32(out + 88), 500);
    ck_assert_uint_eq(be32(out + 92), 12);

    struct pccrr_request req;
    ck_assert_int_eq(pccrr_request_decode(out, (size_t)n, &req), 0);
    ck_assert_uint_eq(req.hdr.type, PCCRR_MSG_GETBLKLIST);
    ck_assert_uint_eq(req.hdr.crypto, PCCRR_CRYPTO_AES_256);
    ck_assert_uint_eq(req.segment_id_len, 48);
    ck_assert(memcmp(req.segment_id, id48, 48) == 0);
    ck_assert_uint_eq(req.range_count, 3);
    ck_assert_uint_eq(req.ranges[1].index, 10);
    ck_assert_uint_eq(req.ranges[1].count, 2);

    /* Encoder limits: no ranges, a range past block 511, count 0, a bad ID size or crypto. */
    struct pccrr_range bad[2] = {{511, 2}, {0, 0}};
    ck_assert_int_eq(pccrr_encode_getblklist(out, sizeof(out), 1, id48, 48, rs, 0), PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_getblklist(out, sizeof(out), 1, id48, 48, bad, 1), PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_getblklist(out, sizeof(out), 1, id48, 48, bad + 1, 1),
        PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_getblklist(out, sizeof(out), 1, id48, 33, rs, 1), PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_getblklist(out, sizeof(out), 4, id48, 48, rs, 1), PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_getblklist(out, 40, 1, id48, 48, rs, 1), PCCRR_E_SPACE);
}
END_TEST

START_TEST(test_getblks_many_ranges)
{
    /* 256 ranges, the most a request carries; the lowest block is the one to serve. */
    struct pccrr_range rs[PCCRR_RANGES_MAX + 1];
    for (unsigned i = 0; i <= PCCRR_RANGES_MAX; i++) {
        rs[i].index = i < PCCRR_RANGES_MAX ? 511 - 2 * i : 0;
        rs[i].count = 1;
    }
    uint8_t out[4096];
    long n = pccrr_encode_getblks(out, sizeof(out), PCCRR_CRYPTO_AES_128, ID32, 32, rs,
        PCCRR_RANGES_MAX);
    ck_assert_int_eq(n, 16 + 36 + 4 + 8 * 256 + 4);
    struct pccrr_request req;
    ck_assert_int_eq(pccrr_request_decode(out, (size_t)n, &req), 0);
    ck_assert_uint_eq(req.range_count, 256);
    uint32_t first;
    ck_assert(pccrr_request_first_block(&req, &first));
    ck_assert_uint_eq(first, 1);
    ck_assert_int_eq(pccrr_encode_getblks(out, sizeof(out), 1, ID32, 32, rs, 257), PCCRR_E_FIELD);

    /* A count over 256 in the message is refused before anything is read for it. */
    uint8_t msg[80];
    memcpy(msg, out, 56);
    put_be32(msg + 52, 257);
    put_be32(msg + 8, 80);
    ck_assert_int_eq(pccrr_request_decode(msg, 80, &req), PCCRR_E_FIELD);
    put_be32(msg + 52, 0xffffffffu);
    ck_assert_int_eq(pccrr_request_decode(msg, 80, &req), PCCRR_E_FIELD);
}
END_TEST

/* Mutations of the GETBLKS vector, each refused with its reason. */
START_TEST(test_getblks_malformed)
{
    size_t len;
    uint8_t *v = load_hex(V_GETBLKS, &len);
    uint8_t m[256];
    struct pccrr_request req;
#define MUT(off, val, want)                                           \
    do {                                                              \
        memcpy(m, v, len);                                            \
        put_be32(m + (off), (val));                                   \
        ck_assert_int_eq(pccrr_request_decode(m, len, &req), (want)); \
    } while (0)
    MUT(8, 67, PCCRR_E_SIZE); /* MsgSize one short */
    MUT(8, 69, PCCRR_E_SIZE); /* one long */
    MUT(8, 0xffffffffu, PCCRR_E_SIZE);
    MUT(4, 7, PCCRR_E_TYPE); /* SEGLIST, a response type */
    MUT(4, PCCRR_MSG_BLK, PCCRR_E_TYPE);
    MUT(4, 0x100, PCCRR_E_TYPE);
    MUT(12, 4, PCCRR_E_FIELD);  /* unknown algorithm */
    MUT(16, 31, PCCRR_E_FIELD); /* ID sizes */
    MUT(16, 0, PCCRR_E_FIELD);
    MUT(16, 64, PCCRR_E_TRUNCATED);
    MUT(16, 0x7fffffffu, PCCRR_E_FIELD);
    MUT(52, 0, PCCRR_E_FIELD); /* no range */
    MUT(52, 2, PCCRR_E_TRUNCATED);
    MUT(56, 512, PCCRR_E_FIELD); /* block index past 511 */
    MUT(60, 0, PCCRR_E_FIELD);   /* count 0 */
    MUT(60, 513, PCCRR_E_FIELD);
    MUT(56, 511, 0);               /* (511, 1) is the last block */
    MUT(64, 1, PCCRR_E_TRUNCATED); /* VRF data announced, not there */
    MUT(64, 0xfffffff0u, PCCRR_E_TRUNCATED);
    /* Other major versions: the header comes back for the NEGO_RESP answer. */
    MUT(0, PCCRR_VERSION_2_0, PCCRR_E_VERSION);
    ck_assert_uint_eq(req.hdr.type, PCCRR_MSG_GETBLKS);
    ck_assert_uint_eq(req.hdr.version, PCCRR_VERSION_2_0);
    MUT(0, PCCRR_VERSION(0, 1), PCCRR_E_VERSION);
    MUT(0, PCCRR_VERSION(1, 7), 0); /* another minor of 1 is fine */
    /* GETSEGLIST (hosted cache): 2.0 gets NEGO_RESP, a 1.0 one is not a request we know. */
    memcpy(m, v, len);
    put_be32(m, PCCRR_VERSION_2_0);
    put_be32(m + 4, PCCRR_MSG_GETSEGLIST);
    ck_assert_int_eq(pccrr_request_decode(m, len, &req), PCCRR_E_VERSION);
    put_be32(m, PCCRR_VERSION_1_0);
    ck_assert_int_eq(pccrr_request_decode(m, len, &req), PCCRR_E_TYPE);
    ck_assert(pccrr_path_match("/116b50eb-ece2-41AC-8429-9f9e963361b7/"));
    ck_assert(pccrr_path_match(PCCRR_PATH));
    ck_assert(!pccrr_path_match("/116B50EB-ECE2-41ac-8429-9F9E963361B7"));
    ck_assert(!pccrr_path_match("/"));
    ck_assert(!pccrr_path_match(NULL));
#undef MUT

    /* Bytes past MsgSize, or MsgSize over the request limit. */
    memcpy(m, v, len);
    m[len] = 0;
    ck_assert_int_eq(pccrr_request_decode(m, len + 1, &req), PCCRR_E_SIZE);
    put_be32(m + 8, (uint32_t)len + 4);
    memset(m + len, 0, 4);
    ck_assert_int_eq(pccrr_request_decode(m, len + 4, &req), PCCRR_E_SIZE);
    uint8_t *huge = calloc(1, PCCRR_REQUEST_MAX + 4);
    memcpy(huge, v, len);
    put_be32(huge + 8, PCCRR_REQUEST_MAX + 4);
    ck_assert_int_eq(pccrr_request_decode(huge, PCCRR_REQUEST_MAX + 4, &req), PCCRR_E_SIZE);
    free(huge);

    /* DataForVrfBlock: 3 bytes and a zero pad byte are skipped; a non-zero pad is refused. */
    memcpy(m, v, len);
    put_be32(m + 8, 76);
    put_be32(m + 64, 3);
    memcpy(m + 68, "\x01\x02\x03\x00", 4);
    memset(m + 72, 0, 4);
    ck_assert_int_eq(pccrr_request_decode(m, 72, &req), PCCRR_E_SIZE);
    put_be32(m + 8, 72);
    ck_assert_int_eq(pccrr_request_decode(m, 72, &req), 0);
    m[71] = 1;
    ck_assert_int_eq(pccrr_request_decode(m, 72, &req), PCCRR_E_PADDING);
    /* The last field may come without its padding (python-peerdist's encoder), not with part
     * of it. */
    put_be32(m + 8, 71);
    ck_assert_int_eq(pccrr_request_decode(m, 71, &req), 0);
    put_be32(m + 64, 2);
    m[70] = 0;
    put_be32(m + 8, 71);
    ck_assert_int_eq(pccrr_request_decode(m, 71, &req), PCCRR_E_TRUNCATED);
    free(v);
}
END_TEST

START_TEST(test_nego)
{
    uint8_t out[64];
    long n = pccrr_encode_nego_resp(out, sizeof(out), PCCRR_OUR_MIN_VERSION, PCCRR_OUR_MAX_VERSION);
    ck_assert_int_eq(n, 28);
    static const uint8_t want[28] = {0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 24, 0, 0, 0, 0,
        0, 0, 0, 1, 0, 0, 0, 1};
    ck_assert(memcmp(out, want, 28) == 0);
    struct pccrr_response r;
    ck_assert_int_eq(pccrr_response_decode(out, 28, &r), 0);
    ck_assert_uint_eq(r.hdr.type, PCCRR_MSG_NEGO_RESP);
    ck_assert_uint_eq(r.min_version, PCCRR_VERSION_1_0);
    ck_assert_uint_eq(r.max_version, PCCRR_VERSION_1_0);
    /* A Windows Server 2012 answer (max 2.0) decodes too. */
    pccrr_encode_nego_resp(out, sizeof(out), PCCRR_VERSION_1_0, PCCRR_VERSION(2, 0));
    ck_assert_int_eq(pccrr_response_decode(out, 28, &r), 0);
    ck_assert_uint_eq(r.max_version, PCCRR_VERSION_2_0);
    ck_assert_int_eq(pccrr_response_decode(out, 27, &r), PCCRR_E_TRUNCATED);

    /* A NEGO_REQ of any version is answered (it is how versions are learnt). */
    pccrr_encode_nego_req(out, sizeof(out), PCCRR_VERSION_2_0, PCCRR_VERSION(3, 1));
    put_be32(out, PCCRR_VERSION_2_0);
    struct pccrr_request q;
    ck_assert_int_eq(pccrr_request_decode(out, 24, &q), 0);
    ck_assert_uint_eq(q.max_version, PCCRR_VERSION(3, 1));

    uint32_t major = 99;
    ck_assert(pccrr_negotiate(PCCRR_VERSION_1_0, PCCRR_VERSION_1_0, PCCRR_VERSION_1_0,
        PCCRR_VERSION_2_0, &major));
    ck_assert_uint_eq(major, 1);
    ck_assert(pccrr_negotiate(PCCRR_VERSION(1, 5), PCCRR_VERSION(2, 3), PCCRR_VERSION(2, 0),
        PCCRR_VERSION(4, 0), &major));
    ck_assert_uint_eq(major, 2);
    ck_assert(!pccrr_negotiate(PCCRR_VERSION_1_0, PCCRR_VERSION_1_0, PCCRR_VERSION_2_0,
        PCCRR_VERSION_2_0, &major));
}
END_TEST

/* --- responses ---------------------------------------------------------------------------- */

START_TEST(test_blklist)
{
    struct pccrr_range rs[2] = {{0, 3}, {7, 505}};
    uint8_t out[256];
    long n = pccrr_encode_blklist(out, sizeof(out), ID32, 32, rs, 2, 3);
    /* transport 4, header 16, id 36, count 4, ranges 16, next 4 */
    ck_assert_int_eq(n, 4 + 16 + 36 + 4 + 16 + 4);
    ck_assert_uint_eq(be32(out), (uint32_t)n - 4);
    ck_assert_uint_eq(be32(out + 4), PCCRR_VERSION_1_0);
    ck_assert_uint_eq(be32(out + 8), PCCRR_MSG_BLKLIST);
    ck_assert_uint_eq(be32(out + 12), (uint32_t)n - 4);
    ck_assert_uint_eq(be32(out + 20), 32);
    ck_assert_uint_eq(be32(out + 56), 2);
    ck_assert_uint_eq(be32(out + 68), 7);
    ck_assert_uint_eq(be32(out + 72), 505);
    ck_assert_uint_eq(be32(out + 76), 3);
    struct pccrr_response r;
    ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.hdr.type, PCCRR_MSG_BLKLIST);
    ck_assert(memcmp(r.segment_id, ID32, 32) == 0);
    ck_assert_uint_eq(r.range_count, 2);
    ck_assert_uint_eq(r.ranges[1].index, 7);
    ck_assert_uint_eq(r.ranges[1].count, 505);
    ck_assert_uint_eq(r.next_block_index, 3);
    size_t total;
    ck_assert_int_eq(pccrr_response_length(out, 4, &total), 0);
    ck_assert_uint_eq(total, (size_t)n);
    for (long k = 0; k < n; k++)
        ck_assert_int_lt(pccrr_response_decode(out, (size_t)k, &r), 0);

    /* The empty answer (nothing held, or busy). */
    n = pccrr_encode_blklist(out, sizeof(out), ID32, 32, NULL, 0, 0);
    ck_assert_int_eq(n, 4 + 16 + 36 + 4 + 4);
    ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.range_count, 0);
    /* Next index past 511 and a bad range are refused. */
    put_be32(out + n - 4, 512);
    ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), PCCRR_E_FIELD);
    ck_assert_int_eq(pccrr_encode_blklist(out, sizeof(out), ID32, 32, rs, 2, 512), PCCRR_E_FIELD);
}
END_TEST

START_TEST(test_blk_empty)
{
    uint8_t out[128];
    long n = pccrr_encode_blk_empty(out, sizeof(out), ID32, 32, 17);
    /* transport 4, header 16, id 36, index 4, next 4, size 4, vrf 4, iv 4 */
    ck_assert_int_eq(n, 4 + 16 + 36 + 4 + 4 + 4 + 4 + 4);
    ck_assert_uint_eq(be32(out + 8), PCCRR_MSG_BLK);
    ck_assert_uint_eq(be32(out + 16), PCCRR_CRYPTO_NONE);
    ck_assert_uint_eq(be32(out + 56), 17);
    ck_assert_uint_eq(be32(out + 64), 0);
    struct pccrr_response r;
    ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.block_index, 17);
    ck_assert_uint_eq(r.block_len, 0);
    ck_assert_ptr_null(r.block);
    uint8_t plain[16];
    size_t pl;
    ck_assert_int_eq(pccrr_blk_decrypt(&r, ID32, 32, plain, sizeof(plain), &pl), PCCRR_E_FIELD);
}
END_TEST

START_TEST(test_blk_algorithms)
{
    /* Each algorithm with a 64-byte ID and lengths around the cipher block. */
    uint8_t kp[64], id64[64];
    for (unsigned i = 0; i < 64; i++) {
        kp[i] = (uint8_t)(i * 3 + 1);
        id64[i] = (uint8_t)(255 - i);
    }
    static const size_t lens[] = {0, 1, 15, 16, 17, 1000, 65535};
    uint8_t *plain = malloc(65536), *out = malloc(70000), *dec = malloc(70000);
    for (size_t i = 0; i < 65536; i++)
        plain[i] = synth_byte(i * 5);
    for (int c = PCCRR_CRYPTO_AES_128; c <= PCCRR_CRYPTO_AES_256; c++) {
        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
            size_t len = lens[li], want = pccrr_blk_size(64, len);
            long n = pccrr_encode_blk(out, 70000, (enum pccrr_crypto)c, id64, 64, 3, 4, kp,
                pccrr_crypto_key_len((uint32_t)c), plain, len);
            ck_assert_int_eq(n, (long)want);
            ck_assert_uint_eq(be32(out + 16), (uint32_t)c);
            struct pccrr_response r;
            ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), 0);
            ck_assert_uint_eq(r.block_len, (len / 16 + 1) * 16);
            ck_assert_uint_eq(r.block_index, 3);
            ck_assert_uint_eq(r.next_block_index, 4);
            size_t dl;
            ck_assert_int_eq(pccrr_blk_decrypt(&r, kp, 64, dec, 70000, &dl), 0);
            ck_assert_uint_eq(dl, len);
            ck_assert(memcmp(dec, plain, len) == 0);
            /* The key is Kp's first 16/24/32 bytes: the bytes after them do not matter. */
            kp[40] ^= 0xff;
            ck_assert_int_eq(pccrr_blk_decrypt(&r, kp, 64, dec, 70000, &dl), 0);
            kp[40] ^= 0xff;
            /* ... and a Kp shorter than the key is refused. */
            ck_assert_int_eq(
                pccrr_blk_decrypt(&r, kp, pccrr_crypto_key_len((uint32_t)c) - 1, dec, 70000, &dl),
                PCCRR_E_CRYPTO);
        }
    }
    /* Plaintext is never encoded, and a plaintext MSG_BLK is never decrypted. */
    ck_assert_int_eq(
        pccrr_encode_blk(out, 70000, PCCRR_CRYPTO_NONE, ID32, 32, 0, 0, kp, 32, plain, 16),
        PCCRR_E_FIELD);
    free(dec);
    free(out);
    free(plain);
}
END_TEST

/* A BLK around the 393,216-byte response limit. */
START_TEST(test_blk_limit)
{
    size_t max = pccrr_blk_plaintext_max(32);
    ck_assert_uint_ge(max, PCCRR_BLK_PLAINTEXT_MAX);
    ck_assert_uint_eq(max, 393119);
    ck_assert_uint_lt(pccrr_blk_plaintext_max(64), max);
    size_t cap = PCCRR_TRANSPORT_SIZE + PCCRR_RESPONSE_MAX;
    uint8_t *plain = calloc(1, max + 1), *out = malloc(cap), *dec = malloc(cap);
    uint8_t kp[32] = {9};
    ck_assert_uint_le(pccrr_blk_size(32, max), cap);
    ck_assert_uint_eq(pccrr_blk_size(32, max + 1), 0);
    long n = pccrr_encode_blk(out, cap, PCCRR_CRYPTO_AES_128, ID32, 32, 0, 0, kp, 32, plain, max);
    ck_assert_int_gt(n, 0);
    struct pccrr_response r;
    ck_assert_int_eq(pccrr_response_decode(out, (size_t)n, &r), 0);
    size_t dl;
    ck_assert_int_eq(pccrr_blk_decrypt(&r, kp, 32, dec, cap, &dl), 0);
    ck_assert_uint_eq(dl, max);
    ck_assert_int_eq(
        pccrr_encode_blk(out, cap, PCCRR_CRYPTO_AES_128, ID32, 32, 0, 0, kp, 32, plain, max + 1),
        PCCRR_E_SPACE);
    ck_assert_int_gt(pccrr_encode_blk(out, cap, PCCRR_CRYPTO_AES_128, ID32, 32, 0, 0, kp, 32, plain,
                         PCCRR_BLK_PLAINTEXT_MAX),
        0);
    /* A transport length over the limit is refused from its first four bytes. */
    size_t total;
    put_be32(out, PCCRR_RESPONSE_MAX + 1);
    ck_assert_int_eq(pccrr_response_length(out, 4, &total), PCCRR_E_SIZE);
    put_be32(out, 15);
    ck_assert_int_eq(pccrr_response_length(out, 4, &total), PCCRR_E_SIZE);
    ck_assert_int_eq(pccrr_response_length(out, 3, &total), PCCRR_E_TRUNCATED);
    free(dec);
    free(out);
    free(plain);
}
END_TEST

START_TEST(test_blk_malformed)
{
    size_t len;
    uint8_t *v = load_hex(V_BLK, &len);
    uint8_t *m = malloc(len + 16);
    struct pccrr_response r;
    /* offsets: 0 transport, 4 header, 20 id size, 24 id, 56 index, 60 next, 64 block size,
     * 68 block, 68+65552 vrf size, then iv size and iv */
    size_t vrf = 68 + 65552, ivs = vrf + 4;
#define MUT(off, val, want)                                          \
    do {                                                             \
        memcpy(m, v, len);                                           \
        put_be32(m + (off), (val));                                  \
        ck_assert_int_eq(pccrr_response_decode(m, len, &r), (want)); \
    } while (0)
    MUT(0, (uint32_t)len - 5, PCCRR_E_SIZE);      /* transport length short */
    MUT(0, (uint32_t)len - 3, PCCRR_E_TRUNCATED); /* long */
    MUT(12, (uint32_t)len - 5, PCCRR_E_SIZE);     /* MsgSize disagrees with it */
    MUT(8, PCCRR_MSG_GETBLKS, PCCRR_E_TYPE);      /* a request type */
    MUT(4, PCCRR_VERSION_2_0, PCCRR_E_VERSION);
    MUT(16, 9, PCCRR_E_FIELD);
    MUT(20, 16, PCCRR_E_FIELD);
    MUT(56, 512, PCCRR_E_FIELD);
    MUT(60, 0xffffffffu, PCCRR_E_FIELD);
    MUT(64, 65551, PCCRR_E_PADDING); /* the block shorter: its "padding" is ciphertext */
    MUT(64, 65536, PCCRR_E_TRUNCATED);
    MUT(64, 0xffffffffu, PCCRR_E_TRUNCATED);
    MUT(64, (uint32_t)len, PCCRR_E_TRUNCATED);
    MUT(vrf, 4, PCCRR_E_TRUNCATED);
    MUT(vrf, 0x80000000u, PCCRR_E_TRUNCATED);
    MUT(ivs, 8, PCCRR_E_FIELD);
    MUT(ivs, 17, PCCRR_E_TRUNCATED);
#undef MUT
    /* An IV of 8 bytes in a message sized for it: refused for an AES block. */
    memcpy(m, v, len);
    put_be32(m + ivs, 8);
    put_be32(m, (uint32_t)len - 12);
    put_be32(m + 12, (uint32_t)len - 12);
    ck_assert_int_eq(pccrr_response_decode(m, len - 8, &r), PCCRR_E_FIELD);
    /* No IV at all for an AES block. */
    put_be32(m + ivs, 0);
    put_be32(m, (uint32_t)len - 20);
    put_be32(m + 12, (uint32_t)len - 20);
    ck_assert_int_eq(pccrr_response_decode(m, len - 16, &r), PCCRR_E_FIELD);
    /* Ciphertext not a multiple of 16 (block 65548 plus a zero pad... of ciphertext bytes
     * made zero): refused as a field, not handed to the cipher. */
    memcpy(m, v, len);
    put_be32(m + 64, 65548);
    memset(m + 68 + 65548, 0, 4);
    ck_assert_int_eq(pccrr_response_decode(m, len, &r), PCCRR_E_FIELD);
    free(m);
    free(v);
}
END_TEST

/* Wrong PKCS#7 padding is refused by the decryption (made with the raw cipher). */
START_TEST(test_cipher_padding)
{
    uint8_t key[16] = {1, 2, 3}, iv[16] = {4, 5, 6}, plain[32], ct[48], dec[48];
    static const struct {
        uint8_t last[4];
    } bad[] = {{{0, 0, 0, 0}}, {{0, 0, 0, 17}}, {{9, 9, 3, 3}}, {{1, 2, 2, 0x20}}};
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        memset(plain, 0x41, sizeof(plain));
        memcpy(plain + 28, bad[b].last, 4);
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n1, n2;
        ck_assert(EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv) == 1);
        EVP_CIPHER_CTX_set_padding(ctx, 0);
        ck_assert(EVP_EncryptUpdate(ctx, ct, &n1, plain, 32) == 1);
        ck_assert(EVP_EncryptFinal_ex(ctx, ct + n1, &n2) == 1);
        EVP_CIPHER_CTX_free(ctx);
        ck_assert_int_eq(n1 + n2, 32);
        size_t dl;
        ck_assert_int_eq(
            pccrr_block_decrypt(PCCRR_CRYPTO_AES_128, key, 16, iv, ct, 32, dec, sizeof(dec), &dl),
            PCCRR_E_CRYPTO);
    }
    /* Lengths that are not whole cipher blocks, and a buffer too small. */
    size_t dl, cl;
    ck_assert_int_eq(pccrr_block_decrypt(1, key, 16, iv, ct, 0, dec, 48, &dl), PCCRR_E_CRYPTO);
    ck_assert_int_eq(pccrr_block_decrypt(1, key, 16, iv, ct, 31, dec, 48, &dl), PCCRR_E_CRYPTO);
    ck_assert_int_eq(pccrr_block_decrypt(1, key, 16, iv, ct, 32, dec, 31, &dl), PCCRR_E_SPACE);
    ck_assert_int_eq(pccrr_block_encrypt(1, key, 16, iv, plain, 32, ct, 47, &cl), PCCRR_E_SPACE);
    ck_assert_int_eq(pccrr_block_encrypt(1, key, 16, iv, plain, 32, ct, 48, &cl), 0);
    ck_assert_uint_eq(cl, 48);
    ck_assert_int_eq(pccrr_block_decrypt(1, key, 16, iv, ct, 48, dec, 48, &dl), 0);
    ck_assert_uint_eq(dl, 32);
    ck_assert_int_eq(pccrr_block_decrypt(0, key, 16, iv, ct, 48, dec, 48, &dl), PCCRR_E_CRYPTO);
    ck_assert_int_eq(pccrr_block_decrypt(4, key, 16, iv, ct, 48, dec, 48, &dl), PCCRR_E_CRYPTO);
    ck_assert_uint_eq(pccrr_crypto_key_len(2), 24);
    ck_assert_uint_eq(pccrr_crypto_key_len(0), 0);
    ck_assert_str_eq(pccrr_strerror(PCCRR_E_PADDING), "padding not zero");
}
END_TEST

static Suite *pccrr_suite(void)
{
    Suite *s = suite_create("pccrr");
    TCase *vec = tcase_create("vectors"), *msg = tcase_create("messages");
    TCase *bad = tcase_create("malformed");
    tcase_add_test(vec, test_nego_req_vector);
    tcase_add_test(vec, test_getblks_vector);
    tcase_add_test(vec, test_blk_vector);
    tcase_add_test(msg, test_getblklist_layout);
    tcase_add_test(msg, test_getblks_many_ranges);
    tcase_add_test(msg, test_nego);
    tcase_add_test(msg, test_blklist);
    tcase_add_test(msg, test_blk_empty);
    tcase_add_test(msg, test_blk_algorithms);
    tcase_add_test(msg, test_blk_limit);
    tcase_add_loop_test(bad, test_truncations, 0, 3);
    tcase_add_test(bad, test_getblks_malformed);
    tcase_add_test(bad, test_blk_malformed);
    tcase_add_test(bad, test_cipher_padding);
    tcase_set_timeout(bad, 120);
    suite_add_tcase(s, vec);
    suite_add_tcase(s, msg);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    return check_run(pccrr_suite());
}
