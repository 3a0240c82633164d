/* SPDX-License-Identifier: MIT */
/* pccrr.h - MS-PCCRR, the BranchCache retrieval protocol: encoders and strict decoders of its
 * messages, and the AES-CBC block encryption. Pure functions (no I/O, no state); every decoder
 * faces hostile peers, so every length is checked and nothing is allocated.
 * Layouts: branchcache-protocols.md §3 (and §9 for where the spec is wrong). */
#ifndef PEERDIST_PCCRR_H
#define PEERDIST_PCCRR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The path of every request (HTTP POST); servers match it case-insensitively (§3.1). */
#define PCCRR_PATH "/116B50EB-ECE2-41ac-8429-9F9E963361B7/"
#define PCCRR_DEFAULT_PORT 80

/* true if an HTTP request's path (no query) is PCCRR_PATH, compared case-insensitively. */
bool pccrr_path_match(const char *path);

/* Sizes (§3.2, §3.3). Requests are the POST body; responses carry a 4-byte big-endian
 * transport length (the bytes that follow, = MsgSize) in front of the message. */
#define PCCRR_HEADER_SIZE 16u
#define PCCRR_TRANSPORT_SIZE 4u
#define PCCRR_REQUEST_MAX 98304u   /* MsgSize of a request, at most */
#define PCCRR_RESPONSE_MAX 393216u /* MsgSize of a response, at most (384 KiB) */
#define PCCRR_NEGO_SIZE 24u        /* NEGO_REQ and NEGO_RESP MsgSize */
#define PCCRR_RANGES_MAX 256u      /* block ranges in one message (§3.2) */
#define PCCRR_BLOCKS_MAX 512u      /* V1 block indexes are 0..511 (§3.2) */
#define PCCRR_IV_SIZE 16u          /* AES block and IV size */
/* Segment IDs: HoHoDk is 32 bytes (SHA-256, V2), 48 (SHA-384) or 64 (SHA-512). */
#define PCCRR_ID_MAX 64u

/* Plaintext bytes of one block that always fit in one MSG_BLK with a 32-byte segment ID:
 * 393,216 - 88 bytes of fields leave 393,128 for the ciphertext, which PKCS#7 makes up to
 * 16 bytes longer than the plaintext (the bound; the exact limit for a 32-byte ID
 * is 393,119). A V2 segment longer than this cannot be served (§3.8): it counts as missing. */
#define PCCRR_BLK_PLAINTEXT_MAX 393111u

/* ProtVer: a big-endian u32 = (minor << 16) | major, so v1.0 is bytes 00 00 00 01 (§3.3). */
#define PCCRR_VERSION(major, minor) \
    ((((uint32_t)(minor)&0xffffu) << 16) | ((uint32_t)(major)&0xffffu))
#define PCCRR_VERSION_MAJOR(v) ((uint32_t)(v)&0xffffu)
#define PCCRR_VERSION_MINOR(v) (((uint32_t)(v) >> 16) & 0xffffu)
#define PCCRR_VERSION_1_0 PCCRR_VERSION(1, 0)
#define PCCRR_VERSION_2_0 PCCRR_VERSION(2, 0)
/* What this implementation speaks: major 1 (message types 0..5), the only one a peer needs
 * (iPXE, Windows 7 and later send 1.0 on types 0..5 even for V2 content). */
#define PCCRR_OUR_MIN_VERSION PCCRR_VERSION_1_0
#define PCCRR_OUR_MAX_VERSION PCCRR_VERSION_1_0

enum pccrr_msg_type {
    PCCRR_MSG_NEGO_REQ = 0x00,
    PCCRR_MSG_NEGO_RESP = 0x01,
    PCCRR_MSG_GETBLKLIST = 0x02,
    PCCRR_MSG_GETBLKS = 0x03,
    PCCRR_MSG_BLKLIST = 0x04,
    PCCRR_MSG_BLK = 0x05,
    PCCRR_MSG_GETSEGLIST = 0x06, /* v2.0, hosted cache only: not decoded */
    PCCRR_MSG_SEGLIST = 0x07,    /* v2.0, hosted cache only: not decoded */
};

/* CryptoAlgoId (§3.3, §3.6). Key = the first 16/24/32 bytes of the segment secret Kp. */
enum pccrr_crypto {
    PCCRR_CRYPTO_NONE = 0, /* plaintext: never sent by us (iPXE refuses it) */
    PCCRR_CRYPTO_AES_128 = 1,
    PCCRR_CRYPTO_AES_192 = 2,
    PCCRR_CRYPTO_AES_256 = 3,
};
#define PCCRR_CRYPTO_DEFAULT PCCRR_CRYPTO_AES_128

/* Results: 0 or one of these (negative). pccrr_strerror() names them for log lines. */
enum pccrr_error {
    PCCRR_OK = 0,
    PCCRR_E_TRUNCATED = -1, /* fewer bytes than the fields need */
    PCCRR_E_SIZE = -2,      /* MsgSize/transport length wrong, over the limit, or bytes left over */
    PCCRR_E_VERSION = -3, /* major version not spoken; the header was decoded (answer NEGO_RESP) */
    PCCRR_E_TYPE = -4,    /* message type unknown or not of this direction */
    PCCRR_E_FIELD = -5,   /* a field out of range: ID size, range, count, crypto algorithm */
    PCCRR_E_PADDING = -6, /* a ZeroPad byte is not zero */
    PCCRR_E_SPACE = -7,   /* encoder: output buffer too small, or message over the limit */
    PCCRR_E_CRYPTO = -8,  /* cipher failure: bad key length, IV, ciphertext size or padding */
};
const char *pccrr_strerror(int err);

/* MESSAGE_HEADER (§3.3), host order. */
struct pccrr_header {
    uint32_t version; /* ProtVer */
    uint32_t type;    /* enum pccrr_msg_type */
    uint32_t size;    /* MsgSize: the whole message with this header */
    uint32_t crypto;  /* enum pccrr_crypto: asked for (request) or used (MSG_BLK) */
};

/* BLOCK_RANGE: Count >= 1, Index + Count <= PCCRR_BLOCKS_MAX (checked by the decoders). */
struct pccrr_range {
    uint32_t index;
    uint32_t count;
};

/*
 * Decodes the 16-byte header at buf (a request body, or a response after its transport
 * length). Checks only that 16 bytes are there; the message decoders check the rest.
 */
int pccrr_header_decode(const uint8_t *buf, size_t len, struct pccrr_header *out);

/* ---- requests: encoded by the client (POST body, no transport length), decoded by the
 * server ---- */

/* A decoded request. ranges is copied out (at most PCCRR_RANGES_MAX), so nothing points into
 * the input. */
struct pccrr_request {
    struct pccrr_header hdr;
    /* MSG_NEGO_REQ */
    uint32_t min_version, max_version;
    /* MSG_GETBLKLIST, MSG_GETBLKS */
    uint8_t segment_id[PCCRR_ID_MAX];
    size_t segment_id_len;
    uint32_t range_count;
    struct pccrr_range ranges[PCCRR_RANGES_MAX];
};

/*
 * Decodes one request (the whole POST body, len bytes). Accepts MSG_NEGO_REQ, MSG_GETBLKLIST
 * and MSG_GETBLKS with major version 1: MsgSize must equal len and be within
 * PCCRR_HEADER_SIZE..PCCRR_REQUEST_MAX; segment ID sizes 32, 48 or 64; 1..PCCRR_RANGES_MAX
 * ranges each within 0..PCCRR_BLOCKS_MAX; crypto 0..3 (a server refusing plaintext answers
 * with AES-128: the caller's choice); zero padding; GETBLKS' DataForVrfBlock may be present
 * (and is skipped) within MsgSize. Ranges are kept as sent (not normalised).
 * PCCRR_E_VERSION: another major version (a 2.0 MSG_GETSEGLIST among them); out->hdr is valid
 * and the server answers with pccrr_encode_nego_resp() (§3.7). NEGO_REQ is accepted whatever
 * its header's version. A 1.x GETSEGLIST, a response type or an unknown type: PCCRR_E_TYPE.
 */
int pccrr_request_decode(const uint8_t *buf, size_t len, struct pccrr_request *out);

/* The lowest block a GETBLKS names (the one a server serves, §3.4); false if none. */
bool pccrr_request_first_block(const struct pccrr_request *req, uint32_t *index);

/*
 * Request encoders. Each writes the message at out (cap bytes) and returns its length (> 0)
 * or a negative enum pccrr_error. Header version 1.0.
 */
long pccrr_encode_nego_req(uint8_t *out, size_t cap, uint32_t min_version, uint32_t max_version);
long pccrr_encode_getblklist(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, const struct pccrr_range *ranges, size_t n);
long pccrr_encode_getblks(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, const struct pccrr_range *ranges, size_t n);

/* ---- responses: encoded by the server (with the 4-byte transport length in front),
 * decoded by the client ---- */

/* A decoded response. block and iv point into the decoded buffer (valid while it is). */
struct pccrr_response {
    struct pccrr_header hdr;
    /* MSG_NEGO_RESP */
    uint32_t min_version, max_version;
    /* MSG_BLKLIST, MSG_BLK */
    uint8_t segment_id[PCCRR_ID_MAX];
    size_t segment_id_len;
    /* MSG_BLKLIST */
    uint32_t range_count;
    struct pccrr_range ranges[PCCRR_RANGES_MAX];
    uint32_t next_block_index; /* BLKLIST and BLK: 0 if none */
    /* MSG_BLK */
    uint32_t block_index;
    const uint8_t *block; /* SizeOfBlock bytes: ciphertext (or plaintext when crypto is 0) */
    size_t block_len;     /* 0: the server does not have the block (or is busy) */
    const uint8_t *iv;    /* PCCRR_IV_SIZE bytes when block_len > 0 and crypto != 0, else NULL */
    size_t iv_len;
};

/*
 * How many bytes a whole response takes (the transport length + 4) once its first 4 bytes
 * are in: 0 and *total set, PCCRR_E_TRUNCATED with fewer than 4 bytes, PCCRR_E_SIZE when the
 * announced length is outside PCCRR_HEADER_SIZE..PCCRR_RESPONSE_MAX (drop the peer).
 */
int pccrr_response_length(const uint8_t *buf, size_t len, size_t *total);

/*
 * Decodes one response: buf = the transport length then the message, len = all of it (exactly
 * 4 + MsgSize). Accepts MSG_NEGO_RESP (any header version), MSG_BLKLIST and MSG_BLK (major 1)
 * with the same checks as pccrr_request_decode; a MSG_BLK with crypto 1..3 and a block must
 * carry a 16-byte IV and a ciphertext that is a non-zero multiple of 16 bytes.
 */
int pccrr_response_decode(const uint8_t *buf, size_t len, struct pccrr_response *out);

/*
 * Response encoders: each writes the transport length and the message at out (cap bytes) and
 * returns the total length (> 0) or a negative enum pccrr_error. Header version 1.0.
 */
/* NEGO_RESP carrying the server's min and max (§3.5); also the answer to any request whose
 * major version the server does not speak (§3.7): pass PCCRR_OUR_MIN/MAX_VERSION. */
long pccrr_encode_nego_resp(uint8_t *out, size_t cap, uint32_t min_version, uint32_t max_version);
/* BLKLIST: n = 0 is the empty answer (nothing held, or over the active-request limit). */
long pccrr_encode_blklist(uint8_t *out, size_t cap, const uint8_t *segment_id, size_t id_len,
    const struct pccrr_range *ranges, size_t n, uint32_t next_block_index);
/*
 * BLK with the block encrypted by `crypto` (1..3) under the first 16/24/32 bytes of kp
 * (kp_len >= that), PKCS#7 padding, and a fresh random IV (RAND_bytes). plain_len at most
 * pccrr_blk_plaintext_max(id_len). PCCRR_CRYPTO_NONE is refused (PCCRR_E_FIELD).
 */
long pccrr_encode_blk(uint8_t *out, size_t cap, enum pccrr_crypto crypto, const uint8_t *segment_id,
    size_t id_len, uint32_t block_index, uint32_t next_block_index, const uint8_t *kp,
    size_t kp_len, const uint8_t *plain, size_t plain_len);
/* The same with the caller's IV (tests and vectors only: a server always uses a fresh one). */
long pccrr_encode_blk_iv(uint8_t *out, size_t cap, enum pccrr_crypto crypto,
    const uint8_t *segment_id, size_t id_len, uint32_t block_index, uint32_t next_block_index,
    const uint8_t *kp, size_t kp_len, const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *plain,
    size_t plain_len);
/* BLK with SizeOfBlock 0, "I don't have it" (also the answer when busy, §3.7): CryptoAlgoId
 * 0, NextBlockIndex 0, no IV. */
long pccrr_encode_blk_empty(uint8_t *out, size_t cap, const uint8_t *segment_id, size_t id_len,
    uint32_t block_index);

/* Total bytes (transport length included) of a BLK carrying plain_len bytes of block encrypted
 * with crypto 1..3; what pccrr_encode_blk needs as cap. 0 if it would not fit a response. */
size_t pccrr_blk_size(size_t id_len, size_t plain_len);
/* The longest plaintext block that fits one MSG_BLK for this segment ID size
 * (>= PCCRR_BLK_PLAINTEXT_MAX for 32-byte IDs). */
size_t pccrr_blk_plaintext_max(size_t id_len);

/* ---- block encryption (§3.6) ---- */

/* Key bytes of an algorithm (16/24/32), 0 for NONE or unknown. */
size_t pccrr_crypto_key_len(uint32_t crypto);

/*
 * AES-CBC with PKCS#7: encrypts in_len bytes into out (cap >= in_len + 16 - in_len % 16) with
 * key = kp[0 .. key length) and the given IV; *out_len = ciphertext length.
 */
int pccrr_block_encrypt(enum pccrr_crypto crypto, const uint8_t *kp, size_t kp_len,
    const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
    size_t *out_len);
/*
 * The reverse: in_len a non-zero multiple of 16; out needs in_len bytes of room; the PKCS#7
 * padding is checked and removed (*out_len = plaintext length). PCCRR_E_CRYPTO on a wrong key
 * length or padding; the caller still checks the plaintext against its block hash.
 */
int pccrr_block_decrypt(enum pccrr_crypto crypto, const uint8_t *kp, size_t kp_len,
    const uint8_t iv[PCCRR_IV_SIZE], const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
    size_t *out_len);
/*
 * Decrypts the block of a decoded MSG_BLK by its own CryptoAlgoId (§3.6: a client decrypts by
 * what the server says it used). Plaintext MSG_BLKs (crypto 0) are refused (PCCRR_E_CRYPTO),
 * as iPXE does; an empty block is PCCRR_E_FIELD.
 */
int pccrr_blk_decrypt(const struct pccrr_response *blk, const uint8_t *kp, size_t kp_len,
    uint8_t *out, size_t cap, size_t *out_len);

/* ---- version negotiation (§3.7) ---- */

/*
 * The major both ranges share, the highest one: true and *major set, or false (no common
 * major: a client drops the exchange; a server answers NEGO_RESP anyway).
 */
bool pccrr_negotiate(uint32_t a_min, uint32_t a_max, uint32_t b_min, uint32_t b_max,
    uint32_t *major);

#endif
