/* SPDX-License-Identifier: MIT */
/* pccrr.c - MS-PCCRR message codecs and block encryption (pccrr.h). Every integer on the wire
 * is big-endian; variable fields are a u32 size, the bytes, then zero padding to 4 (§3.2).
 * Decoders read through a bounded cursor: no read past the message, no length trusted before
 * it is checked against what is left. */
#include "pccrr.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>

bool pccrr_path_match(const char *path)
{
    return path && strcasecmp(path, PCCRR_PATH) == 0;
}

const char *pccrr_strerror(int err)
{
    switch (err) {
    case PCCRR_OK: return "ok";
    case PCCRR_E_TRUNCATED: return "message truncated";
    case PCCRR_E_SIZE: return "message size wrong or over the limit";
    case PCCRR_E_VERSION: return "protocol major version not supported";
    case PCCRR_E_TYPE: return "message type unexpected";
    case PCCRR_E_FIELD: return "field out of range";
    case PCCRR_E_PADDING: return "padding not zero";
    case PCCRR_E_SPACE: return "output buffer too small or message too long";
    case PCCRR_E_CRYPTO: return "block encryption failed (key, IV, size or padding)";
    default: return "unknown error";
    }
}

/* ---- byte order and cursors ---- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t pad4(size_t n)
{
    return (4 - (n & 3)) & 3;
}

struct rd {
    const uint8_t *p;
    size_t left;
};

static int rd_u32(struct rd *r, uint32_t *v)
{
    if (r->left < 4)
        return PCCRR_E_TRUNCATED;
    *v = get32(r->p);
    r->p += 4;
    r->left -= 4;
    return 0;
}

/* n bytes (n already bounded by the caller or by left) then their zero padding. */
static int rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
    if (n > r->left)
        return PCCRR_E_TRUNCATED;
    *out = r->p;
    r->p += n;
    r->left -= n;
    size_t pad = pad4(n);
    if (pad > r->left)
        return PCCRR_E_TRUNCATED;
    for (size_t i = 0; i < pad; i++)
        if (r->p[i] != 0)
            return PCCRR_E_PADDING;
    r->p += pad;
    r->left -= pad;
    return 0;
}

/* The last field of a message: its padding may be left out when nothing follows (the
 * python-peerdist encoder pads only fields that are not last), else it is zero bytes. */
static int rd_bytes_last(struct rd *r, size_t n, const uint8_t **out)
{
    if (n > r->left)
        return PCCRR_E_TRUNCATED;
    if (r->left == n) {
        *out = r->p;
        r->p += n;
        r->left = 0;
        return 0;
    }
    return rd_bytes(r, n, out);
}

static bool id_len_ok(size_t n)
{
    return n == 32 || n == 48 || n == 64;
}

/* u32 SizeOfSegmentID, the ID, ZeroPad. */
static int rd_segment_id(struct rd *r, uint8_t *id, size_t *id_len)
{
    uint32_t n;
    const uint8_t *p;
    int rc = rd_u32(r, &n);
    if (rc)
        return rc;
    if (!id_len_ok(n))
        return PCCRR_E_FIELD;
    if ((rc = rd_bytes(r, n, &p)))
        return rc;
    memcpy(id, p, n);
    *id_len = n;
    return 0;
}

static bool range_ok(uint32_t index, uint32_t count)
{
    return count >= 1 && index < PCCRR_BLOCKS_MAX && count <= PCCRR_BLOCKS_MAX - index;
}

/* u32 count then count BLOCK_RANGEs; min_count 0 for BLKLIST, 1 for requests. */
static int rd_ranges(struct rd *r, uint32_t min_count, uint32_t *count, struct pccrr_range *ranges)
{
    uint32_t n;
    int rc = rd_u32(r, &n);
    if (rc)
        return rc;
    if (n < min_count || n > PCCRR_RANGES_MAX)
        return PCCRR_E_FIELD;
    if ((size_t)n * 8 > r->left)
        return PCCRR_E_TRUNCATED;
    for (uint32_t i = 0; i < n; i++) {
        rd_u32(r, &ranges[i].index);
        rd_u32(r, &ranges[i].count);
        if (!range_ok(ranges[i].index, ranges[i].count))
            return PCCRR_E_FIELD;
    }
    *count = n;
    return 0;
}

int pccrr_header_decode(const uint8_t *buf, size_t len, struct pccrr_header *out)
{
    if (len < PCCRR_HEADER_SIZE)
        return PCCRR_E_TRUNCATED;
    out->version = get32(buf);
    out->type = get32(buf + 4);
    out->size = get32(buf + 8);
    out->crypto = get32(buf + 12);
    return 0;
}

/* Header checks shared by both directions: MsgSize = the bytes there, within the limit, a
 * known algorithm; the version checked after the type (NEGO goes with any version). */
static int check_header(const struct pccrr_header *h, size_t len, uint32_t max)
{
    if (h->size != len || len < PCCRR_HEADER_SIZE || len > max)
        return PCCRR_E_SIZE;
    return 0;
}

/* ---- writer ---- */

struct wr {
    uint8_t *p;
    size_t left;
    bool overflow;
};

static void wr_u32(struct wr *w, uint32_t v)
{
    if (w->left < 4) {
        w->overflow = true;
        return;
    }
    put32(w->p, v);
    w->p += 4;
    w->left -= 4;
}

static void wr_bytes(struct wr *w, const uint8_t *b, size_t n)
{
    size_t pad = pad4(n);
    if (w->left < n || w->left - n < pad) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->p, b, n);
    memset(w->p + n, 0, pad);
    w->p += n + pad;
    w->left -= n + pad;
}

static void wr_header(struct wr *w, uint32_t version, uint32_t type, uint32_t size, uint32_t crypto)
{
    wr_u32(w, version);
    wr_u32(w, type);
    wr_u32(w, size);
    wr_u32(w, crypto);
}

static void wr_ranges(struct wr *w, const struct pccrr_range *ranges, size_t n)
{
    wr_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        wr_u32(w, ranges[i].index);
        wr_u32(w, ranges[i].count);
    }
}

static int check_ranges(const struct pccrr_range *ranges, size_t n, size_t min)
{
    if (n < min || n > PCCRR_RANGES_MAX || (n && !ranges))
        return PCCRR_E_FIELD;
    for (size_t i = 0; i < n; i++)
        if (!range_ok(ranges[i].index, ranges[i].count))
            return PCCRR_E_FIELD;
    return 0;
}

static size_t id_field(size_t id_len)
{
    return 4 + id_len + pad4(id_len);
}

/* ---- requests ---- */

int pccrr_request_decode(const uint8_t *buf, size_t len, struct pccrr_request *out)
{
    memset(out, 0, sizeof(*out));
    int rc = pccrr_header_decode(buf, len, &out->hdr);
    if (rc)
        return rc;
    if ((rc = check_header(&out->hdr, len, PCCRR_REQUEST_MAX)))
        return rc;
    uint32_t type = out->hdr.type;
    if (type != PCCRR_MSG_NEGO_REQ && type != PCCRR_MSG_GETBLKLIST && type != PCCRR_MSG_GETBLKS &&
        type != PCCRR_MSG_GETSEGLIST)
        return PCCRR_E_TYPE;
    /* a request of a major we do not speak (GETSEGLIST is 2.0) is answered with NEGO_RESP */
    if (type != PCCRR_MSG_NEGO_REQ && PCCRR_VERSION_MAJOR(out->hdr.version) != 1)
        return PCCRR_E_VERSION;
    if (type == PCCRR_MSG_GETSEGLIST)
        return PCCRR_E_TYPE;
    if (out->hdr.crypto > PCCRR_CRYPTO_AES_256)
        return PCCRR_E_FIELD;

    struct rd r = {buf + PCCRR_HEADER_SIZE, len - PCCRR_HEADER_SIZE};
    if (type == PCCRR_MSG_NEGO_REQ) {
        if ((rc = rd_u32(&r, &out->min_version)) || (rc = rd_u32(&r, &out->max_version)))
            return rc;
    } else {
        if ((rc = rd_segment_id(&r, out->segment_id, &out->segment_id_len)))
            return rc;
        if ((rc = rd_ranges(&r, 1, &out->range_count, out->ranges)))
            return rc;
        if (type == PCCRR_MSG_GETBLKS) {
            uint32_t vrf;
            const uint8_t *p;
            if ((rc = rd_u32(&r, &vrf)))
                return rc;
            if ((rc = rd_bytes_last(&r, vrf, &p)))
                return rc;
        }
    }
    return r.left ? PCCRR_E_SIZE : 0;
}

bool pccrr_request_first_block(const struct pccrr_request *req, uint32_t *index)
{
    if (req->range_count == 0)
        return false;
    uint32_t lo = UINT32_MAX;
    for (uint32_t i = 0; i < req->range_count && i < PCCRR_RANGES_MAX; i++)
        if (req->ranges[i].count && req->ranges[i].index < lo)
            lo = req->ranges[i].index;
    if (lo == UINT32_MAX)
        return false;
    *index = lo;
    return true;
}

static long finish(struct wr *w, const uint8_t *start)
{
    if (w->overflow)
        return PCCRR_E_SPACE;
    return (long)(w->p - start);
}

long pccrr_encode_nego_req(uint8_t *out, size_t cap, uint32_t min_version, uint32_t max_version)
{
    struct wr w = {out, cap, false};
    wr_header(&w, PCCRR_VERSION_1_0, PCCRR_MSG_NEGO_REQ, PCCRR_NEGO_SIZE, PCCRR_CRYPTO_NONE);
    wr_u32(&w, min_version);
    wr_u32(&w, max_version);
    return finish(&w, out);
}

static long encode_range_request(uint8_t *out, size_t cap, uint32_t type, enum pccrr_crypto crypto,
    const uint8_t *id, size_t id_len, const struct pccrr_range *ranges, size_t n)
{
    if ((unsigned)crypto > PCCRR_CRYPTO_AES_256 || !id || !id_len_ok(id_len))
        return PCCRR_E_FIELD;
    int rc = check_ranges(ranges, n, 1);
    if (rc)
        return rc;
    size_t size = PCCRR_HEADER_SIZE + id_field(id_len) + 4 + 8 * n;
    if (type == PCCRR_MSG_GETBLKS)
        size += 4; /* SizeOfDataForVrfBlock = 0 */
    if (size > PCCRR_REQUEST_MAX)
        return PCCRR_E_SPACE;
    struct wr w = {out, cap, false};
    wr_header(&w, PCCRR_VERSION_1_0, type, (uint32_t)size, (uint32_t)crypto);
    wr_u32(&w, (uint32_t)id_len);
    wr_bytes(&w, id, id_len);
    wr_ranges(&w, ranges, n);
    if (type == PCCRR_MSG_GETBLKS)
        wr_u32(&w, 0);
    return finish(&w, out);
}

long pccrr_encode_getblklist(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, const struct pccrr_range *ranges, size_t n)
{
    return encode_range_request(out, cap, PCCRR_MSG_GETBLKLIST, crypto, segment_id, id_len, ranges,
        n);
}

long pccrr_encode_getblks(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, const struct pccrr_range *ranges, size_t n)
{
    return encode_range_request(out, cap, PCCRR_MSG_GETBLKS, crypto, segment_id, id_len, ranges, n);
}

/* ---- responses ---- */

int pccrr_response_length(const uint8_t *buf, size_t len, size_t *total)
{
    if (len < PCCRR_TRANSPORT_SIZE)
        return PCCRR_E_TRUNCATED;
    uint32_t n = get32(buf);
    if (n < PCCRR_HEADER_SIZE || n > PCCRR_RESPONSE_MAX)
        return PCCRR_E_SIZE;
    *total = PCCRR_TRANSPORT_SIZE + (size_t)n;
    return 0;
}

static int decode_blk(struct rd *r, struct pccrr_response *out)
{
    int rc;
    uint32_t n;
    const uint8_t *p;
    if ((rc = rd_segment_id(r, out->segment_id, &out->segment_id_len)))
        return rc;
    if ((rc = rd_u32(r, &out->block_index)) || (rc = rd_u32(r, &out->next_block_index)))
        return rc;
    if (out->block_index >= PCCRR_BLOCKS_MAX || out->next_block_index >= PCCRR_BLOCKS_MAX)
        return PCCRR_E_FIELD;
    /* Block */
    if ((rc = rd_u32(r, &n)))
        return rc;
    if (n > r->left)
        return PCCRR_E_TRUNCATED;
    if ((rc = rd_bytes(r, n, &p)))
        return rc;
    out->block = n ? p : NULL;
    out->block_len = n;
    /* VrfBlock: unused, skipped */
    if ((rc = rd_u32(r, &n)))
        return rc;
    if (n > r->left)
        return PCCRR_E_TRUNCATED;
    if ((rc = rd_bytes(r, n, &p)))
        return rc;
    /* IVBlock: the last field (16 or 0 bytes, so no padding in practice) */
    if ((rc = rd_u32(r, &n)))
        return rc;
    if ((rc = rd_bytes_last(r, n, &p)))
        return rc;
    out->iv = n ? p : NULL;
    out->iv_len = n;
    if (out->block_len && out->hdr.crypto != PCCRR_CRYPTO_NONE) {
        if (out->iv_len != PCCRR_IV_SIZE || out->block_len % PCCRR_IV_SIZE)
            return PCCRR_E_FIELD;
    } else if (out->iv_len != 0 && out->iv_len != PCCRR_IV_SIZE) {
        return PCCRR_E_FIELD;
    }
    return 0;
}

int pccrr_response_decode(const uint8_t *buf, size_t len, struct pccrr_response *out)
{
    memset(out, 0, sizeof(*out));
    size_t total;
    int rc = pccrr_response_length(buf, len, &total);
    if (rc)
        return rc;
    if (total != len)
        return len < total ? PCCRR_E_TRUNCATED : PCCRR_E_SIZE;
    const uint8_t *msg = buf + PCCRR_TRANSPORT_SIZE;
    size_t mlen = len - PCCRR_TRANSPORT_SIZE;
    if ((rc = pccrr_header_decode(msg, mlen, &out->hdr)))
        return rc;
    if ((rc = check_header(&out->hdr, mlen, PCCRR_RESPONSE_MAX)))
        return rc;
    uint32_t type = out->hdr.type;
    if (type != PCCRR_MSG_NEGO_RESP && type != PCCRR_MSG_BLKLIST && type != PCCRR_MSG_BLK)
        return PCCRR_E_TYPE;
    if (type != PCCRR_MSG_NEGO_RESP && PCCRR_VERSION_MAJOR(out->hdr.version) != 1)
        return PCCRR_E_VERSION;
    if (out->hdr.crypto > PCCRR_CRYPTO_AES_256)
        return PCCRR_E_FIELD;

    struct rd r = {msg + PCCRR_HEADER_SIZE, mlen - PCCRR_HEADER_SIZE};
    if (type == PCCRR_MSG_NEGO_RESP) {
        if ((rc = rd_u32(&r, &out->min_version)) || (rc = rd_u32(&r, &out->max_version)))
            return rc;
    } else if (type == PCCRR_MSG_BLKLIST) {
        if ((rc = rd_segment_id(&r, out->segment_id, &out->segment_id_len)))
            return rc;
        if ((rc = rd_ranges(&r, 0, &out->range_count, out->ranges)))
            return rc;
        if ((rc = rd_u32(&r, &out->next_block_index)))
            return rc;
        if (out->next_block_index >= PCCRR_BLOCKS_MAX)
            return PCCRR_E_FIELD;
    } else if ((rc = decode_blk(&r, out))) {
        return rc;
    }
    return r.left ? PCCRR_E_SIZE : 0;
}

long pccrr_encode_nego_resp(uint8_t *out, size_t cap, uint32_t min_version, uint32_t max_version)
{
    struct wr w = {out, cap, false};
    wr_u32(&w, PCCRR_NEGO_SIZE);
    wr_header(&w, PCCRR_VERSION_1_0, PCCRR_MSG_NEGO_RESP, PCCRR_NEGO_SIZE, PCCRR_CRYPTO_NONE);
    wr_u32(&w, min_version);
    wr_u32(&w, max_version);
    return finish(&w, out);
}

long pccrr_encode_blklist(uint8_t *out, size_t cap, const uint8_t *segment_id, size_t id_len,
    const struct pccrr_range *ranges, size_t n, uint32_t next_block_index)
{
    if (!segment_id || !id_len_ok(id_len) || next_block_index >= PCCRR_BLOCKS_MAX)
        return PCCRR_E_FIELD;
    int rc = check_ranges(ranges, n, 0);
    if (rc)
        return rc;
    size_t size = PCCRR_HEADER_SIZE + id_field(id_len) + 4 + 8 * n + 4;
    struct wr w = {out, cap, false};
    wr_u32(&w, (uint32_t)size);
    wr_header(&w, PCCRR_VERSION_1_0, PCCRR_MSG_BLKLIST, (uint32_t)size, PCCRR_CRYPTO_NONE);
    wr_u32(&w, (uint32_t)id_len);
    wr_bytes(&w, segment_id, id_len);
    wr_ranges(&w, ranges, n);
    wr_u32(&w, next_block_index);
    return finish(&w, out);
}

/* MsgSize of a BLK with a block field of block_len bytes and an IV of iv_len. */
static size_t blk_msg_size(size_t id_len, size_t block_len, size_t iv_len)
{
    return PCCRR_HEADER_SIZE + id_field(id_len) + 4 + 4 + 4 + block_len + pad4(block_len) + 4 + 4 +
        iv_len;
}

static size_t cipher_len(size_t plain_len)
{
    return plain_len + PCCRR_IV_SIZE - plain_len % PCCRR_IV_SIZE;
}

size_t pccrr_blk_size(size_t id_len, size_t plain_len)
{
    if (!id_len_ok(id_len) || plain_len > PCCRR_RESPONSE_MAX)
        return 0;
    size_t size = blk_msg_size(id_len, cipher_len(plain_len), PCCRR_IV_SIZE);
    return size > PCCRR_RESPONSE_MAX ? 0 : PCCRR_TRANSPORT_SIZE + size;
}

size_t pccrr_blk_plaintext_max(size_t id_len)
{
    if (!id_len_ok(id_len))
        return 0;
    size_t room = PCCRR_RESPONSE_MAX - blk_msg_size(id_len, 0, PCCRR_IV_SIZE);
    room -= room % PCCRR_IV_SIZE; /* the longest ciphertext: a multiple of 16 */
    return room - 1;              /* PKCS#7 adds at least one byte */
}

long pccrr_encode_blk_iv(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, uint32_t block_index, uint32_t next_block_index,
    const uint8_t *kp, size_t kp_len, const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *plain,
    size_t plain_len)
{
    if (crypto == PCCRR_CRYPTO_NONE || pccrr_crypto_key_len(crypto) == 0 || !segment_id ||
        !id_len_ok(id_len) || block_index >= PCCRR_BLOCKS_MAX ||
        next_block_index >= PCCRR_BLOCKS_MAX || (!plain && plain_len))
        return PCCRR_E_FIELD;
    size_t total = pccrr_blk_size(id_len, plain_len);
    if (total == 0 || total > cap)
        return PCCRR_E_SPACE;
    size_t clen = cipher_len(plain_len);
    size_t size = total - PCCRR_TRANSPORT_SIZE;
    struct wr w = {out, cap, false};
    wr_u32(&w, (uint32_t)size);
    wr_header(&w, PCCRR_VERSION_1_0, PCCRR_MSG_BLK, (uint32_t)size, (uint32_t)crypto);
    wr_u32(&w, (uint32_t)id_len);
    wr_bytes(&w, segment_id, id_len);
    wr_u32(&w, block_index);
    wr_u32(&w, next_block_index);
    wr_u32(&w, (uint32_t)clen);
    if (w.overflow || w.left < clen)
        return PCCRR_E_SPACE;
    size_t got;
    int rc = pccrr_block_encrypt(crypto, kp, kp_len, iv, plain, plain_len, w.p, w.left, &got);
    if (rc)
        return rc;
    if (got != clen)
        return PCCRR_E_CRYPTO;
    w.p += clen;
    w.left -= clen; /* clen is a multiple of 16: no padding */
    wr_u32(&w, 0);  /* SizeOfVrfBlock */
    wr_u32(&w, PCCRR_IV_SIZE);
    wr_bytes(&w, iv, PCCRR_IV_SIZE);
    return finish(&w, out);
}

long pccrr_encode_blk(uint8_t *out, size_t cap, enum pccrr_crypto crypto, const uint8_t *segment_id,
    size_t id_len, uint32_t block_index, uint32_t next_block_index, const uint8_t *kp,
    size_t kp_len, const uint8_t *plain, size_t plain_len)
{
    uint8_t iv[PCCRR_IV_SIZE];
    if (RAND_bytes(iv, sizeof(iv)) != 1)
        return PCCRR_E_CRYPTO;
    return pccrr_encode_blk_iv(out, cap, crypto, segment_id, id_len, block_index, next_block_index,
        kp, kp_len, iv, plain, plain_len);
}

long pccrr_encode_blk_empty(uint8_t *out, size_t cap, const uint8_t *segment_id, size_t id_len,
    uint32_t block_index)
{
    if (!segment_id || !id_len_ok(id_len) || block_index >= PCCRR_BLOCKS_MAX)
        return PCCRR_E_FIELD;
    size_t size = blk_msg_size(id_len, 0, 0);
    struct wr w = {out, cap, false};
    wr_u32(&w, (uint32_t)size);
    wr_header(&w, PCCRR_VERSION_1_0, PCCRR_MSG_BLK, (uint32_t)size, PCCRR_CRYPTO_NONE);
    wr_u32(&w, (uint32_t)id_len);
    wr_bytes(&w, segment_id, id_len);
    wr_u32(&w, block_index);
    wr_u32(&w, 0); /* NextBlockIndex */
    wr_u32(&w, 0); /* SizeOfBlock: not here */
    wr_u32(&w, 0); /* SizeOfVrfBlock */
    wr_u32(&w, 0); /* SizeOfIVBlock */
    return finish(&w, out);
}

/* ---- block encryption ---- */

size_t pccrr_crypto_key_len(uint32_t crypto)
{
    switch (crypto) {
    case PCCRR_CRYPTO_AES_128: return 16;
    case PCCRR_CRYPTO_AES_192: return 24;
    case PCCRR_CRYPTO_AES_256: return 32;
    default: return 0;
    }
}

static const EVP_CIPHER *cipher_of(uint32_t crypto)
{
    switch (crypto) {
    case PCCRR_CRYPTO_AES_128: return EVP_aes_128_cbc();
    case PCCRR_CRYPTO_AES_192: return EVP_aes_192_cbc();
    case PCCRR_CRYPTO_AES_256: return EVP_aes_256_cbc();
    default: return NULL;
    }
}

/* One EVP pass; PKCS#7 padding added (enc) or checked and removed (dec) by EVP. */
static int cbc(int enc, uint32_t crypto, const uint8_t *kp, size_t kp_len, const uint8_t *iv,
    const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
    const EVP_CIPHER *c = cipher_of(crypto);
    size_t klen = pccrr_crypto_key_len(crypto);
    if (!c || !kp || !iv || kp_len < klen || in_len > INT_MAX - 32 || (!in && in_len))
        return PCCRR_E_CRYPTO;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return PCCRR_E_CRYPTO;
    int rc = PCCRR_E_CRYPTO, n1 = 0, n2 = 0;
    static const uint8_t none[1];
    if (EVP_CipherInit_ex(ctx, c, NULL, kp, iv, enc) != 1)
        goto fail;
    if (EVP_CipherUpdate(ctx, out, &n1, in ? in : none, (int)in_len) != 1)
        goto fail;
    if (EVP_CipherFinal_ex(ctx, out + n1, &n2) != 1)
        goto fail;
    *out_len = (size_t)n1 + (size_t)n2;
    rc = 0;
fail:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int pccrr_block_encrypt(enum pccrr_crypto crypto, const uint8_t *kp, size_t kp_len,
    const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
    size_t *out_len)
{
    if (!out || cap < cipher_len(in_len))
        return PCCRR_E_SPACE;
    return cbc(1, crypto, kp, kp_len, iv, in, in_len, out, out_len);
}

int pccrr_block_decrypt(enum pccrr_crypto crypto, const uint8_t *kp, size_t kp_len,
    const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
    size_t *out_len)
{
    if (in_len == 0 || in_len % PCCRR_IV_SIZE)
        return PCCRR_E_CRYPTO;
    /* EVP writes up to in_len bytes (the last block's pad bytes before checking them). */
    if (!out || cap < in_len)
        return PCCRR_E_SPACE;
    return cbc(0, crypto, kp, kp_len, iv, in, in_len, out, out_len);
}

int pccrr_blk_decrypt(const struct pccrr_response *blk, const uint8_t *kp, size_t kp_len,
    uint8_t *out, size_t cap, size_t *out_len)
{
    if (blk->hdr.type != PCCRR_MSG_BLK || blk->block_len == 0 || !blk->block)
        return PCCRR_E_FIELD;
    if (blk->hdr.crypto == PCCRR_CRYPTO_NONE || blk->iv_len != PCCRR_IV_SIZE || !blk->iv)
        return PCCRR_E_CRYPTO;
    return pccrr_block_decrypt((enum pccrr_crypto)blk->hdr.crypto, kp, kp_len, blk->iv, blk->block,
        blk->block_len, out, cap, out_len);
}

/* ---- negotiation ---- */

bool pccrr_negotiate(uint32_t a_min, uint32_t a_max, uint32_t b_min, uint32_t b_max,
    uint32_t *major)
{
    uint32_t lo = PCCRR_VERSION_MAJOR(a_min), hi = PCCRR_VERSION_MAJOR(a_max);
    uint32_t blo = PCCRR_VERSION_MAJOR(b_min), bhi = PCCRR_VERSION_MAJOR(b_max);
    if (blo > lo)
        lo = blo;
    if (bhi < hi)
        hi = bhi;
    if (lo > hi)
        return false;
    *major = hi;
    return true;
}
