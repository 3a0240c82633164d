/* SPDX-License-Identifier: MIT */
/* pccrr.c - MS-PCCRR message codecs and block encryption (pccrr.h). Not implemented yet. */
#include "pccrr.h"

const char *pccrr_strerror(int err) { (void)err; return "not implemented"; }
int pccrr_header_decode(const uint8_t *b, size_t l, struct pccrr_header *o) { (void)b; (void)l; (void)o; return PCCRR_E_TYPE; }
int pccrr_request_decode(const uint8_t *b, size_t l, struct pccrr_request *o) { (void)b; (void)l; (void)o; return PCCRR_E_TYPE; }
bool pccrr_request_first_block(const struct pccrr_request *r, uint32_t *i) { (void)r; (void)i; return false; }
long pccrr_encode_nego_req(uint8_t *o, size_t c, uint32_t a, uint32_t b) { (void)o; (void)c; (void)a; (void)b; return PCCRR_E_SPACE; }
long pccrr_encode_getblklist(uint8_t *o, size_t c, enum pccrr_crypto k, const uint8_t *s, size_t l, const struct pccrr_range *r, size_t n) { (void)o; (void)c; (void)k; (void)s; (void)l; (void)r; (void)n; return PCCRR_E_SPACE; }
long pccrr_encode_getblks(uint8_t *o, size_t c, enum pccrr_crypto k, const uint8_t *s, size_t l, const struct pccrr_range *r, size_t n) { (void)o; (void)c; (void)k; (void)s; (void)l; (void)r; (void)n; return PCCRR_E_SPACE; }
int pccrr_response_length(const uint8_t *b, size_t l, size_t *t) { (void)b; (void)l; (void)t; return PCCRR_E_TRUNCATED; }
int pccrr_response_decode(const uint8_t *b, size_t l, struct pccrr_response *o) { (void)b; (void)l; (void)o; return PCCRR_E_TYPE; }
long pccrr_encode_nego_resp(uint8_t *o, size_t c, uint32_t a, uint32_t b) { (void)o; (void)c; (void)a; (void)b; return PCCRR_E_SPACE; }
long pccrr_encode_blklist(uint8_t *o, size_t c, const uint8_t *s, size_t l, const struct pccrr_range *r, size_t n, uint32_t x) { (void)o; (void)c; (void)s; (void)l; (void)r; (void)n; (void)x; return PCCRR_E_SPACE; }
long pccrr_encode_blk(uint8_t *o, size_t c, enum pccrr_crypto k, const uint8_t *s, size_t l, uint32_t i, uint32_t x, const uint8_t *kp, size_t kl, const uint8_t *p, size_t pl) { (void)o; (void)c; (void)k; (void)s; (void)l; (void)i; (void)x; (void)kp; (void)kl; (void)p; (void)pl; return PCCRR_E_SPACE; }
long pccrr_encode_blk_iv(uint8_t *o, size_t c, enum pccrr_crypto k, const uint8_t *s, size_t l, uint32_t i, uint32_t x, const uint8_t *kp, size_t kl, const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *p, size_t pl) { (void)o; (void)c; (void)k; (void)s; (void)l; (void)i; (void)x; (void)kp; (void)kl; (void)iv; (void)p; (void)pl; return PCCRR_E_SPACE; }
long pccrr_encode_blk_empty(uint8_t *o, size_t c, const uint8_t *s, size_t l, uint32_t i) { (void)o; (void)c; (void)s; (void)l; (void)i; return PCCRR_E_SPACE; }
size_t pccrr_blk_size(size_t l, size_t p) { (void)l; (void)p; return 0; }
size_t pccrr_blk_plaintext_max(size_t l) { (void)l; return 0; }
size_t pccrr_crypto_key_len(uint32_t c) { (void)c; return 0; }
int pccrr_block_encrypt(enum pccrr_crypto k, const uint8_t *kp, size_t kl, const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *i, size_t il, uint8_t *o, size_t c, size_t *ol) { (void)k; (void)kp; (void)kl; (void)iv; (void)i; (void)il; (void)o; (void)c; (void)ol; return PCCRR_E_CRYPTO; }
int pccrr_block_decrypt(enum pccrr_crypto k, const uint8_t *kp, size_t kl, const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *i, size_t il, uint8_t *o, size_t c, size_t *ol) { (void)k; (void)kp; (void)kl; (void)iv; (void)i; (void)il; (void)o; (void)c; (void)ol; return PCCRR_E_CRYPTO; }
int pccrr_blk_decrypt(const struct pccrr_response *b, const uint8_t *kp, size_t kl, uint8_t *o, size_t c, size_t *ol) { (void)b; (void)kp; (void)kl; (void)o; (void)c; (void)ol; return PCCRR_E_CRYPTO; }
bool pccrr_negotiate(uint32_t a, uint32_t b, uint32_t c, uint32_t d, uint32_t *m) { (void)a; (void)b; (void)c; (void)d; (void)m; return false; }
