/*
 * blockstore.h - the bytes of verified blocks, in data files beside the database
 * (layout and rules: docs/cache.md). Files only: the rows saying which bytes are readable
 * are store.c's. Writes and reclaim run on worker threads; pins keep reclaim away from a
 * slot a write is about to fill; start-up reconciles files with rows.
 */
#ifndef PEERDIST_BLOCKSTORE_H
#define PEERDIST_BLOCKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "worker.h"

/* V1 blocks sit at block * BS_SLOT_SIZE in their segment file; a V2 segment at 0. */
#define BS_SLOT_SIZE 0x10000u

struct blockstore;

/* Opens <dir of db_path>/data (created if needed). -1 with a log line on failure. */
int bs_open(const char *db_path, struct worker_pool *wp, struct blockstore **out);
void bs_close(struct blockstore *bs);
/* Start-up: drops rows whose bytes are missing or short, deletes files no row refers to. */
int bs_reconcile(struct blockstore *bs, struct store *st);

/* "<data>/<xx>/<segment-id-hex>" (file_owner -1) or "...<hex>.<uid>". */
void bs_file_path(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, char *buf, size_t buflen);
/* Worker or loop: the file for writing (created with its folder), or -1. */
int bs_open_write(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner);
/* Loop: reads exactly len bytes of a stored block; 0, or -1 (short file, I/O error). */
int bs_read(const struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint64_t file_offset, void *buf, size_t len);

/* Loop: a write to (segment, file, block) is under way; reclaim leaves the slot alone. */
int bs_pin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block);
void bs_unpin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block);

/* store's reclaim hook: frees the space of deleted rows on a worker (takes items). */
void bs_reclaim(void *bs, struct store_reclaim *items, size_t n);
/* Block slots waiting for reclaim (for peerdistctl). */
uint64_t bs_reclaim_pending(const struct blockstore *bs);
/* Slots reclaimed since start (punched or unlinked with their file). */
uint64_t bs_reclaimed(const struct blockstore *bs);

#endif
