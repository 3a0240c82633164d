/* SPDX-License-Identifier: MIT */
/* ci-crypto.c - MS-PCCRC hashes, server secret, segment secret and segment ID, and the checks
 * a receiver makes on blocks and segments (branchcache-protocols.md §1.2, §1.3, §1.8).
 * Every digest and HMAC comes from OpenSSL. */
#include "ci-internal.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

/* C: "MS_P2P_CACHING" in UTF-16LE with its NUL, not ASCII as the spec text says (§0). */
static const uint8_t ci_segment_id_const[CI_SEGMENT_ID_CONST_LEN] = {
    'M',
    0,
    'S',
    0,
    '_',
    0,
    'P',
    0,
    '2',
    0,
    'P',
    0,
    '_',
    0,
    'C',
    0,
    'A',
    0,
    'C',
    0,
    'H',
    0,
    'I',
    0,
    'N',
    0,
    'G',
    0,
    0,
    0,
};

#define CI_UTF8_MAX_TEXT (64u * 1024) /* a typed key; far more than netsh would take */

size_t ci_digest_len(enum ci_hash_alg alg)
{
    switch (alg) {
    case CI_HASH_SHA256: return 32;
    case CI_HASH_SHA384: return 48;
    case CI_HASH_SHA512: return 64;
    case CI_HASH_SHA512_TRUNC: return CI_V2_DIGEST;
    }
    return 0;
}

const char *ci_hash_alg_name(enum ci_hash_alg alg)
{
    switch (alg) {
    case CI_HASH_SHA256: return "SHA-256";
    case CI_HASH_SHA384: return "SHA-384";
    case CI_HASH_SHA512: return "SHA-512";
    case CI_HASH_SHA512_TRUNC: return "truncated SHA-512";
    }
    return "unknown";
}

const EVP_MD *ci_alg_md(enum ci_hash_alg alg)
{
    switch (alg) {
    case CI_HASH_SHA256: return EVP_sha256();
    case CI_HASH_SHA384: return EVP_sha384();
    case CI_HASH_SHA512:
    case CI_HASH_SHA512_TRUNC: return EVP_sha512();
    }
    return NULL;
}

int ci_alg_version(enum ci_hash_alg alg)
{
    return alg == CI_HASH_SHA512_TRUNC ? CI_VERSION_2 : CI_VERSION_1;
}

/* Full digest into a scratch buffer, then the algorithm's length: V2 keeps SHA-512[0:32]. */
int ci_hash(enum ci_hash_alg alg, const void *data, size_t len, uint8_t *out)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    const EVP_MD *md = ci_alg_md(alg);

    if (!md || !EVP_Digest(data, len, full, NULL, md, NULL))
        return -1;
    memcpy(out, full, ci_digest_len(alg));
    return 0;
}

/* HMAC over the full digest, cut to the algorithm's length (V2: §1.2 notes, VERIFIED). */
static int ci_hmac(enum ci_hash_alg alg, const uint8_t *key, size_t key_len, const uint8_t *msg,
    size_t msg_len, uint8_t *out)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned int full_len = 0;
    const EVP_MD *md = ci_alg_md(alg);

    if (!md || !HMAC(md, key, (int)key_len, msg, msg_len, full, &full_len))
        return -1;
    memcpy(out, full, ci_digest_len(alg));
    return 0;
}

int ci_secret_from_passphrase(enum ci_hash_alg alg, const void *pass, size_t len,
    struct ci_secret *ks)
{
    memset(ks, 0, sizeof(*ks));
    ks->alg = alg;
    ks->len = ci_digest_len(alg);
    if (ks->len == 0)
        return -1;
    return ci_hash(alg, pass, len, ks->key);
}

/* One code point from UTF-8, rejecting overlongs, surrogates and values past U+10FFFF. */
static int ci_utf8_next(const unsigned char **pp, uint32_t *cp)
{
    const unsigned char *p = *pp;
    static const uint32_t min_for_len[4] = {0, 0x80, 0x800, 0x10000};
    int n;
    uint32_t v;

    if (p[0] < 0x80)
        n = 0;
    else if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 1;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 2;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 3;
    else
        return -1;
    v = n == 0 ? p[0] : p[0] & (0x3Fu >> n);
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (p[i] & 0x3F);
    }
    if (v < min_for_len[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    *cp = v;
    *pp = p + n + 1;
    return 0;
}

/* UTF-16LE without a terminating NUL: DESIGN.md "Server secret", netsh parity (§1.3). */
static int ci_utf8_to_utf16le(const char *utf8, uint8_t *out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)utf8;
    size_t n = 0;
    uint32_t cp;

    while (*p) {
        if (ci_utf8_next(&p, &cp) < 0)
            return -1;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            ci_put_le16(out + n, (uint16_t)(0xD800 | cp >> 10));
            n += 2;
            cp = 0xDC00 | (cp & 0x3FF);
        }
        ci_put_le16(out + n, (uint16_t)cp);
        n += 2;
    }
    *out_len = n;
    return 0;
}

int ci_text_key_bytes(const char *utf8, uint8_t **out, size_t *out_len)
{
    size_t in_len = strlen(utf8);
    uint8_t *buf;

    *out = NULL;
    *out_len = 0;
    if (in_len > CI_UTF8_MAX_TEXT)
        return -1;
    /* Each UTF-8 byte yields at most 2 bytes of UTF-16 (4-byte sequences give 4). */
    buf = malloc(2 * in_len + 1);
    if (!buf)
        return -1;
    if (ci_utf8_to_utf16le(utf8, buf, out_len) < 0) {
        OPENSSL_cleanse(buf, 2 * in_len + 1);
        free(buf);
        *out_len = 0;
        return -1;
    }
    *out = buf;
    return 0;
}

int ci_secret_from_text(enum ci_hash_alg alg, const char *utf8, struct ci_secret *ks)
{
    uint8_t *buf;
    size_t len;
    int rc;

    if (ci_text_key_bytes(utf8, &buf, &len) < 0)
        return -1;
    rc = ci_secret_from_passphrase(alg, buf, len, ks);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

int ci_segment_secret(const struct ci_secret *ks, const uint8_t *hod, uint8_t *kp)
{
    return ci_hmac(ks->alg, ks->key, ks->len, hod, ci_digest_len(ks->alg), kp);
}

int ci_segment_id(enum ci_hash_alg alg, const uint8_t *hod, const uint8_t *kp, uint8_t *id)
{
    uint8_t msg[CI_MAX_DIGEST + CI_SEGMENT_ID_CONST_LEN];
    size_t d = ci_digest_len(alg);

    if (d == 0)
        return -1;
    memcpy(msg, hod, d);
    memcpy(msg + d, ci_segment_id_const, sizeof(ci_segment_id_const));
    return ci_hmac(alg, kp, d, msg, d + sizeof(ci_segment_id_const), id);
}

int ci_segment_keys(const struct ci_secret *ks, struct ci_segment *seg)
{
    if (ci_segment_secret(ks, seg->hod, seg->secret) < 0)
        return -1;
    return ci_segment_id(ks->alg, seg->hod, seg->secret, seg->id);
}

uint32_t ci_segment_block_count(const struct ci_segment *seg)
{
    if (seg->block_size == 0)
        return 0;
    return (uint32_t)(((uint64_t)seg->length + seg->block_size - 1) / seg->block_size);
}

uint32_t ci_block_length(const struct ci_segment *seg, uint32_t block)
{
    uint64_t start = (uint64_t)block * seg->block_size;

    if (start >= seg->length)
        return 0;
    return seg->length - start < seg->block_size ? (uint32_t)(seg->length - start)
                                                 : seg->block_size;
}

bool ci_segment_has_full_list(const struct ci_segment *seg)
{
    return seg->first_block == 0 && seg->n_blocks == ci_segment_block_count(seg);
}

bool ci_verify_block(const struct ci_info *ci, size_t seg, uint32_t block, const void *data,
    size_t len)
{
    const struct ci_segment *s;
    uint8_t digest[CI_MAX_DIGEST];

    if (seg >= ci->n_segments)
        return false;
    s = &ci->segments[seg];
    if (ci->version == CI_VERSION_2) /* a V2 segment is its own single block (§3.8) */
        return block == 0 && ci_verify_segment_data(ci, seg, data, len);
    if (block < s->first_block || block - s->first_block >= s->n_blocks)
        return false;
    if (len != ci_block_length(s, block) || ci_hash(ci->alg, data, len, digest) < 0)
        return false;
    return CRYPTO_memcmp(digest,
               s->block_hashes + (size_t)(block - s->first_block) * ci->digest_len,
               ci->digest_len) == 0;
}

bool ci_verify_segment_hashes(const struct ci_info *ci, size_t seg)
{
    const struct ci_segment *s;
    uint8_t digest[CI_MAX_DIGEST];

    if (seg >= ci->n_segments || ci->version != CI_VERSION_1)
        return false;
    s = &ci->segments[seg];
    if (!ci_segment_has_full_list(s) ||
        ci_hash(ci->alg, s->block_hashes, (size_t)s->n_blocks * ci->digest_len, digest) < 0)
        return false;
    return CRYPTO_memcmp(digest, s->hod, ci->digest_len) == 0;
}

/* V1: hash each block, then the list (HoD covers every block of the segment, §1.2). */
static bool ci_v1_segment_data_hod(const struct ci_info *ci, const struct ci_segment *s,
    const uint8_t *data, uint8_t *hod)
{
    uint32_t n = ci_segment_block_count(s);
    uint8_t *list = malloc((size_t)n * ci->digest_len + 1);
    bool ok = list != NULL;

    for (uint32_t b = 0; ok && b < n; b++)
        ok = ci_hash(ci->alg, data + (size_t)b * s->block_size, ci_block_length(s, b),
                 list + (size_t)b * ci->digest_len) == 0;
    ok = ok && ci_hash(ci->alg, list, (size_t)n * ci->digest_len, hod) == 0;
    free(list);
    return ok;
}

bool ci_verify_segment_data(const struct ci_info *ci, size_t seg, const void *data, size_t len)
{
    const struct ci_segment *s;
    uint8_t hod[CI_MAX_DIGEST];
    bool ok;

    if (seg >= ci->n_segments)
        return false;
    s = &ci->segments[seg];
    if (len != s->length)
        return false;
    if (ci->version == CI_VERSION_2)
        ok = ci_hash(ci->alg, data, len, hod) == 0;
    else
        ok = ci_v1_segment_data_hod(ci, s, data, hod);
    return ok && CRYPTO_memcmp(hod, s->hod, ci->digest_len) == 0;
}

bool ci_verify_segment_secret(const struct ci_secret *ks, const struct ci_segment *seg)
{
    uint8_t kp[CI_MAX_DIGEST];

    if (ci_segment_secret(ks, seg->hod, kp) < 0)
        return false;
    return CRYPTO_memcmp(kp, seg->secret, ks->len) == 0;
}
