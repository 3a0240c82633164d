/* SPDX-License-Identifier: MIT */
/*
 * api_util.h - the steps the integration tests through <peerdist.h> share, in one place:
 * an instance and its OVERLAPPEDs, publishing and retrieving content information, a content
 * handle's calls (content information, AddData, BlockRead, StreamRead, flush), and a model
 * of which bytes a handle can read. Each test file keeps only its tests.
 */
#ifndef PEERDIST_TEST_API_UTIL_H
#define PEERDIST_TEST_API_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <peerdist.h>

#include "contentinfo.h"

#define MiB (1024u * 1024)
#define KiB 1024u
#define API_KEY 77       /* the completion key of content handles opened on a port */
#define API_CI_CHUNK 333 /* content information goes in and out in small, odd pieces */

PEERDIST_INSTANCE_HANDLE api_startup(void);
/* Waits for ov's completion: its status, and its byte count in *bytes (if bytes). */
DWORD api_wait(OVERLAPPED *ov, DWORD *bytes);
/* For a call that returned rc: asserts ERROR_IO_PENDING, then waits as api_wait. */
DWORD api_wait_pending(DWORD rc, OVERLAPPED *ov, DWORD *bytes);

/* len pseudo-random bytes (xorshift: no two blocks alike, so a block served at the wrong
 * offset shows); free() them. */
uint8_t *api_make_content(size_t len, unsigned seed);
PEERDIST_CONTENT_TAG api_make_tag(uint8_t seed);

/* ---- publishing ---- */

/* Publishes data in the given piece sizes (cycled; none: one piece), completes and closes
 * the stream. version 0 passes no options (the daemon's default). */
void api_publish(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data, size_t n,
    DWORD version, const size_t *pieces, size_t npieces);
/* Opens the publication's content information for [off, off+len) (0, 0: all of it), with
 * retrieval options ro if not NULL: the call's status. */
DWORD api_open_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, ULONGLONG off, ULONGLONG len,
    const PEERDIST_RETRIEVAL_OPTIONS *ro, PEERDIST_CONTENTINFO_HANDLE *ci);
/* Retrieves all of ci in chunks of `chunk` bytes, each where it belongs; free() the result. */
uint8_t *api_retrieve_ci(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENTINFO_HANDLE ci, DWORD chunk,
    size_t *len);
/* Open, retrieve in 1000-byte chunks, close. */
uint8_t *api_get_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, ULONGLONG off, ULONGLONG len,
    const PEERDIST_RETRIEVAL_OPTIONS *ro, size_t *n);

/* ---- content handles ---- */

/* Content information for a content handle: its bytes, and the whole content's description
 * (the block layout the model uses; for a ranged list, the content it was cut from; NULL
 * where no model is used). */
struct api_ci {
    uint8_t *bytes;
    size_t len;
    struct ci_info *info;
};
void api_ci_free(struct api_ci *ci);

/* A content handle on port (or none), with completion key API_KEY. */
PEERDIST_CONTENT_HANDLE api_open_content(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, HANDLE port);
/* Adds ci in API_CI_CHUNK pieces (each consumed whole), then completes it: its status. */
DWORD api_feed_ci(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const struct api_ci *ci);
/* api_open_content without a port, then api_feed_ci, which must succeed. */
PEERDIST_CONTENT_HANDLE api_open_with_ci(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, const struct api_ci *ci);
/* AddData of buf[0, n) at content offset off: its status, bytes accepted in *accepted. */
DWORD api_add_data(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    const uint8_t *buf, DWORD n, DWORD *accepted);

/* A read's completion: status, byte count, and the offset the OVERLAPPED reports. */
struct api_read {
    DWORD status;
    DWORD bytes;
    uint64_t offset;
};
struct api_read api_block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    DWORD cap, void *buf);
struct api_read api_stream_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, DWORD cap,
    void *buf);
/* r reports exactly the missing range [off, off+len). */
void api_assert_missing(struct api_read r, uint64_t off, uint64_t len);
/* Reads data[from, to) back with BlockRead and compares. */
void api_read_back_block(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    uint64_t from, uint64_t to);
/* Reads the stream from its cursor to NO_MORE: it must be data[from, to). */
void api_read_back_stream(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, uint64_t from, uint64_t to);
/* PeerDistClientFlushContent of tag: its completion status. */
DWORD api_flush(PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag);

/* ---- a model of what is readable: a block is, once all its bytes were added ---- */

struct api_model {
    const uint8_t *data;
    size_t len;
    uint8_t *added; /* per content byte */
    size_t nblocks; /* V1 blocks, or V2 segments */
    uint64_t *boff;
    uint64_t *blen;
};
void api_model_init(struct api_model *m, const uint8_t *data, size_t len, const struct ci_info *ci);
void api_model_free(struct api_model *m);
/* The block holding content offset off. */
size_t api_model_block_at(const struct api_model *m, uint64_t off);
/* BlockRead at off gives what the model says: the data (and cbMax 0 its contiguous cached
 * length), or exactly the missing range. */
void api_model_probe(const struct api_model *m, PEERDIST_INSTANCE_HANDLE h,
    PEERDIST_CONTENT_HANDLE c, uint64_t off);

#endif
