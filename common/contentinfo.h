/* SPDX-License-Identifier: MIT */
/* contentinfo.h - MS-PCCRC content information, versions 1 and 2: server secrets, generation
 * from a byte stream, parsing (whole buffer or streamed in chunks), serialization of the whole
 * content or of a byte range, and the checks a receiver makes before trusting blocks or IDs. */
#ifndef PEERDIST_CONTENTINFO_H
#define PEERDIST_CONTENTINFO_H

#include <peerdist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sizes fixed by MS-PCCRC (reference: branchcache-protocols.md §1.1, §1.4, §1.5). */
#define CI_MAX_DIGEST 64              /* SHA-512, the largest V1 algorithm */
#define CI_V1_SEGMENT_SIZE 0x2000000u /* V1 segments are exactly 32 MiB but the last */
#define CI_V1_BLOCK_SIZE 0x10000u     /* V1 blocks are 64 KiB but the very last */
#define CI_V1_BLOCKS_PER_SEGMENT (CI_V1_SEGMENT_SIZE / CI_V1_BLOCK_SIZE)
#define CI_V1_HEADER_SIZE 18u
#define CI_V2_HEADER_SIZE 31u
#define CI_V2_DIGEST 32 /* truncated SHA-512 */
#define CI_V2_SEGMENT_DESC_SIZE (4u + 2u * CI_V2_DIGEST)
#define CI_SEGMENT_ID_CONST_LEN 30 /* "MS_P2P_CACHING" UTF-16LE with its NUL */

/* Our V2 content-defined chunking (docs/contentinfo.md): no segment shorter than MIN except
 * the last, none longer than MAX; cut probability rises past NORMAL (FastCDC normalisation).
 * MAX stays far below the 384 KiB PCCRR response limit a V2 segment must travel in (§3.2). */
#define CI_V2_SEGMENT_MIN (16u * 1024)
#define CI_V2_SEGMENT_NORMAL (64u * 1024)
#define CI_V2_SEGMENT_MAX (128u * 1024)

/* Longest V2 segment the parser accepts. A V2 segment is retrieved as one MSG_BLK, and a
 * PCCRR response is at most 384 KiB (§3.2), so no working producer emits longer ones; the cap
 * also bounds what a receiver must hold to check a segment against its HoD. */
#define CI_V2_PARSE_SEGMENT_MAX (384u * 1024)

/* Default cap on content information fed to a streaming parser (about 4000 V1 segments, so
 * content of ~127 GiB); callers may pass their own. */
#define CI_STREAM_DEFAULT_MAX (64u * 1024 * 1024)

/* Wire identifiers (V1 dwHashAlgo is little-endian; V2 bHashAlgo one byte). */
#define CI_V1_ALGO_SHA256 0x0000800Cu
#define CI_V1_ALGO_SHA384 0x0000800Du
#define CI_V1_ALGO_SHA512 0x0000800Eu
#define CI_V2_ALGO_SHA512_TRUNC 0x04u

enum ci_version { CI_VERSION_1 = 1, CI_VERSION_2 = 2 };

enum ci_hash_alg {
    CI_HASH_SHA256 = 1,   /* V1 0x800C (the only one we generate for V1) */
    CI_HASH_SHA384,       /* V1 0x800D, parse only in practice */
    CI_HASH_SHA512,       /* V1 0x800E, parse only in practice */
    CI_HASH_SHA512_TRUNC, /* V2 0x04: SHA-512 (and HMAC-SHA-512) cut to 32 bytes */
};

/* Ks, the server secret, for one hash algorithm (§1.3). Never sent anywhere. */
struct ci_secret {
    enum ci_hash_alg alg;
    size_t len;
    uint8_t key[CI_MAX_DIGEST];
};

/* One segment. For V1 the listed block hashes may be a sub-list (ranged content information):
 * block_hashes holds n_blocks digests for the segment's blocks first_block .. +n_blocks-1. */
struct ci_segment {
    uint64_t offset;               /* where the segment starts in the content */
    uint32_t length;               /* cbSegment: the whole segment, even outside a range */
    uint32_t block_size;           /* V1 cbBlockSize (65536); V2: equals length */
    uint8_t hod[CI_MAX_DIGEST];    /* HoD */
    uint8_t secret[CI_MAX_DIGEST]; /* Kp, SegmentSecret */
    uint8_t id[CI_MAX_DIGEST];     /* HoHoDk: always computed from hod and secret */
    uint32_t first_block;          /* V1: in-segment index of block_hashes[0] */
    uint32_t n_blocks;             /* V1: listed hashes; V2: 0 */
    uint8_t *block_hashes;         /* V1: n_blocks * digest_len bytes; V2: NULL */
};

/* A parsed or generated content information. Owned by whoever got it; ci_info_free(). */
struct ci_info {
    enum ci_version version;
    enum ci_hash_alg alg;
    size_t digest_len;
    uint64_t range_offset; /* first content byte described */
    uint64_t range_length; /* bytes described; for whole content, the content length */
    bool whole;            /* describes the content from byte 0 to the end of its segments */
    /* Header fields exactly as on the wire, so parse -> serialize gives back the same bytes. */
    uint32_t offset_in_first; /* dwOffsetInFirstSegment (V1 and V2) */
    uint32_t read_in_last;    /* V1 dwReadBytesInLastSegment (0 = to the segment's end) */
    uint64_t v2_start;        /* V2 ullStartInContent */
    uint64_t v2_first_index;  /* V2 ullIndexOfFirstSegment */
    uint64_t v2_range_length; /* V2 ullLengthOfRange (0 = whole resource) */
    size_t n_segments;
    struct ci_segment *segments;
    size_t n_chunks;          /* V2 chunk layout as parsed; 0 = our default layout */
    uint32_t *chunk_segments; /* segments in each chunk */
};

/* Why a parse failed: code is ERROR_SUCCESS, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO or
 * PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED (or ERROR_NOT_ENOUGH_MEMORY); offset is the
 * byte at fault, reason a sentence for people. */
struct ci_error {
    DWORD code;
    size_t offset;
    char reason[160];
};

/* --- hashes and keys (§1.2, §1.3) --------------------------------------------------------- */
size_t ci_digest_len(enum ci_hash_alg alg);
const char *ci_hash_alg_name(enum ci_hash_alg alg);
int ci_hash(enum ci_hash_alg alg, const void *data, size_t len, uint8_t *out);
/* Ks from the binary passphrase: V1 H(passphrase), V2 SHA-512(passphrase)[0:32]. */
int ci_secret_from_passphrase(enum ci_hash_alg alg, const void *pass, size_t len,
    struct ci_secret *ks);
/* Ks from a text key: UTF-8 in, hashed as UTF-16LE without NUL. -1 on invalid UTF-8. */
int ci_secret_from_text(enum ci_hash_alg alg, const char *utf8, struct ci_secret *ks);
/* The passphrase bytes a text key stands for (UTF-16LE without NUL, as `netsh branchcache
 * set key passphrase=` stores them) in *out (malloc'd, the caller cleanses and frees it).
 * -1 on invalid UTF-8 or a text over 64 KiB. */
int ci_text_key_bytes(const char *utf8, uint8_t **out, size_t *out_len);
/* Kp = HMAC(Ks, HoD) and HoHoDk = HMAC(Kp, HoD || C), truncated to 32 bytes for V2. */
int ci_segment_secret(const struct ci_secret *ks, const uint8_t *hod, uint8_t *kp);
int ci_segment_id(enum ci_hash_alg alg, const uint8_t *hod, const uint8_t *kp, uint8_t *id);

/* --- generation from a stream ------------------------------------------------------------- */
/* A generator is fed the content bytes in pieces of any size, then finished once. V1 keeps
 * only the block hashes (16 KiB per 32 MiB with SHA-256); V2 keeps nothing but hash state.
 * Two generators fed the same bytes are independent (V1 and V2 in one pass). */
struct ci_gen;
/* V1 with ks->alg SHA-256/384/512, or V2 with ks->alg CI_HASH_SHA512_TRUNC. */
struct ci_gen *ci_gen_new(enum ci_version version, const struct ci_secret *ks);
/* V2 with segment lengths imposed (tests, reproduction of given vectors); once the list is
 * used up, content-defined chunking cuts the rest. */
struct ci_gen *ci_gen_new_v2_imposed(const struct ci_secret *ks, const uint32_t *lengths,
    size_t n_lengths);
int ci_gen_feed(struct ci_gen *gen, const void *data, size_t len);

/* V2 in two halves, for two threads: a cutter finds where segments end (the cuts ci_gen_feed
 * would make), and a V2 generator fed the bytes with those ends only hashes. The cutter keeps
 * its state between calls, so any split of the input gives the same ends. */
struct ci_cutter;
struct ci_cutter *ci_cutter_new(void);
void ci_cutter_free(struct ci_cutter *cut);
/* Most segment ends one scan of len bytes can report (the first may close a segment begun in
 * an earlier scan). */
#define CI_CUTTER_MAX_ENDS(len) ((len) / CI_V2_SEGMENT_MIN + 1)
/* Writes to ends[] (room for CI_CUTTER_MAX_ENDS(len)) the offsets in data, 1..len and
 * increasing, just past each segment end found; returns how many. */
size_t ci_cutter_scan(struct ci_cutter *cut, const void *data, size_t len, size_t *ends);
/* Feeds a V2 generator (from ci_gen_new) bytes with the ends a cutter found in these same
 * bytes; the generator cuts nowhere else. Never mixed with ci_gen_feed on one generator.
 * -1 (and the generator refuses to finish) on ends out of order or out of the bytes. */
int ci_gen_feed_cut(struct ci_gen *gen, const void *data, size_t len, const size_t *ends,
    size_t n_ends);
/* Whole-content information of everything fed; the generator is spent afterwards. Refused
 * (-1) for a lane: lanes finish together. */
int ci_gen_finish(struct ci_gen *gen, struct ci_info **out);

/* The digests split across threads: n_lanes generators (lane 0 .. n_lanes-1), each on its
 * own thread, are all fed the same bytes (V2 through ci_gen_feed_cut with the same ends, or
 * ci_gen_feed), and each computes only every n_lanes-th digest: V1 blocks b with b % n_lanes
 * == lane, V2 segments k with k % n_lanes == lane (HoD, Kp and HoHoDk). The rest of the
 * bytes are only counted. ci_gen_finish_lanes(lanes in lane order) then assembles what one
 * generator would have given, byte for byte (V1 HoDs and keys are computed there: one
 * hash of the block list per 32 MiB); lane 0 is spent, all may be freed. -1 if the lanes
 * were not fed alike or a feed failed. */
struct ci_gen *ci_gen_new_lane(enum ci_version version, const struct ci_secret *ks, unsigned lane,
    unsigned n_lanes);
int ci_gen_finish_lanes(struct ci_gen **lanes, size_t n_lanes, struct ci_info **out);
void ci_gen_free(struct ci_gen *gen);

/* --- parsing ------------------------------------------------------------------------------ */
DWORD ci_parse(const void *buf, size_t len, struct ci_info **out, struct ci_error *err);

struct ci_stream;
struct ci_stream *ci_stream_new(size_t max_bytes); /* 0 = CI_STREAM_DEFAULT_MAX */
/* Errors stick: once a feed fails, every later call returns the same error. The version
 * error is reported by the feed that completes the 2-byte version field. */
DWORD ci_stream_feed(struct ci_stream *st, const void *data, size_t len, struct ci_error *err);
DWORD ci_stream_finish(struct ci_stream *st, struct ci_info **out, struct ci_error *err);
int ci_stream_version(const struct ci_stream *st); /* 0 until the version is known */
void ci_stream_free(struct ci_stream *st);

/* --- ranges and serialization ------------------------------------------------------------- */
/* Content information for [offset, offset+length) cut from a whole-content description with
 * full block lists, without the content. (0, content length) gives whole content (Windows'
 * zero fields). -1 with errno EINVAL if the range is empty or outside the content. */
int ci_range(const struct ci_info *full, uint64_t offset, uint64_t length, struct ci_info **out);
size_t ci_wire_size(const struct ci_info *ci);
void ci_write(const struct ci_info *ci, uint8_t *buf); /* buf holds ci_wire_size() bytes */
int ci_serialize(const struct ci_info *ci, uint8_t **out, size_t *out_len);
void ci_info_free(struct ci_info *ci);

/* --- checks a receiver makes (§1.8) ------------------------------------------------------- */
uint32_t ci_segment_block_count(const struct ci_segment *seg); /* blocks in the whole segment */
uint32_t ci_block_length(const struct ci_segment *seg, uint32_t block);
bool ci_segment_has_full_list(const struct ci_segment *seg);
/* data must be exactly block `block` (in-segment index) of segment `seg`, and listed. */
bool ci_verify_block(const struct ci_info *ci, size_t seg, uint32_t block, const void *data,
    size_t len);
/* V1: the full block-hash list hashes to HoD. False for V2 or a partial list. */
bool ci_verify_segment_hashes(const struct ci_info *ci, size_t seg);
/* The whole segment's bytes hash to HoD (V2 directly; V1 through its block hashes). */
bool ci_verify_segment_data(const struct ci_info *ci, size_t seg, const void *data, size_t len);
/* Kp == HMAC(Ks, HoD): the publisher's check that a segment came from this server secret. */
bool ci_verify_segment_secret(const struct ci_secret *ks, const struct ci_segment *seg);

#endif
