/* SPDX-License-Identifier: MIT */
/*
 * blockstore.h - the bytes of verified blocks, in data files beside the database
 * (layout and rules: docs/cache.md). Files only: the rows saying which bytes are readable
 * are store.c's. Writes and reclaim run on worker threads; pins keep reclaim away from a
 * slot a write is about to fill; start-up reconciles files with rows; what this run knows of
 * each slot's bytes (checked against their hash, or found bad) is kept here too.
 */
#ifndef PEERDIST_BLOCKSTORE_H
#define PEERDIST_BLOCKSTORE_H

#include <stdbool.h>
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
/*
 * Start-up, on the loop's database connection: drops rows whose bytes are missing or short,
 * deletes files no row refers to. From then on st tells the block store which slots AddData
 * filled and committed (store_set_put_hook), so those count as checked; bs_close unhooks.
 */
int bs_reconcile(struct blockstore *bs, struct store *st);

/* "<data>/<xx>/<segment-id-hex>" (file_owner -1) or "...<hex>.<uid>". */
void bs_file_path(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, char *buf, size_t buflen);
/*
 * Worker: the file for writing, or -1. A file that does not exist yet is made from a spare no
 * longer than want bytes (the most the file will hold; 0: never a spare), else created, with
 * its folder.
 */
int bs_open_write(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint64_t want);
/* Worker: the file for writing if it exists (else -1, ENOENT): for syncing what was written. */
int bs_open_existing(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner);
/* Loop or worker: reads exactly len bytes of a stored block; 0, or -1 (short file, I/O error). */
int bs_read(const struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint64_t file_offset, void *buf, size_t len);

/* Loop: a write to (segment, file, block) is under way; reclaim leaves the slot alone, and
 * what was known of the slot's bytes is forgotten (bs_slot_state). */
int bs_pin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block);
void bs_unpin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block);

/*
 * Trust in stored bytes (DESIGN.md): the bytes of a slot are checked against their hash on
 * their first read after a start, on a worker; the verdict is kept here, for the rows naming
 * the slot (store.c keeps them all of one hash). Loop thread only. At most
 * BS_KNOWN_FILES_MAX files are remembered: past that the least recently used file's verdicts
 * are forgotten, and its blocks are checked again on their next read.
 */
#define BS_KNOWN_FILES_MAX 65536
enum bs_slot_state {
    BS_SLOT_UNCHECKED, /* not checked since the start, or written since */
    BS_SLOT_GOOD,      /* matched its hash, or AddData wrote and verified it */
    BS_SLOT_BAD,       /* failed its hash: readers skip it until a write replaces it */
};
enum bs_slot_state bs_slot_state(struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, uint32_t block);
/* A check of one slot, from before its bytes are read until its verdict is in. */
struct bs_check {
    struct bs_known *file; /* NULL: nothing can be recorded (out of memory) */
    uint64_t writes;
    uint32_t block;
};
void bs_check_begin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block, struct bs_check *ck);
enum bs_verdict { BS_VERDICT_NONE, BS_VERDICT_GOOD, BS_VERDICT_BAD };
/*
 * Ends the check. The verdict is recorded only if no write pinned the slot since
 * bs_check_begin and none is under way (the bytes read are still the slot's); then true,
 * except for a slot already known bad (so a bad slot is reported once). A recorded BAD also
 * queues the slot for bs_bad_take.
 */
bool bs_check_end(struct blockstore *bs, struct bs_check *ck, enum bs_verdict v);
/* Slots found bad and not written since (0: no slot map needs to look). */
size_t bs_bad_slots(const struct blockstore *bs);
/* Up to max slots found bad that are still bad (no write since), for dropping their rows. */
size_t bs_bad_take(struct blockstore *bs, struct store_slot *out, size_t max);
/* store's put hook: slots AddData wrote, verified and committed, unless another write to the
 * same slot overlapped (then the next read checks them). */
void bs_puts_committed(void *bs, const struct store_slot *slots, size_t n);

/*
 * Holds: reads in flight (waiting for a worker) hold the segments they read, and eviction
 * (evict.c) leaves a held segment alone. The eviction worker checks holds under
 * bs_holds_lock and keeps the lock until its transaction has committed, so a read either
 * holds the segment before the check or plans from the index after the COMMIT.
 * bs_hold and bs_release: loop thread; bs_hold returns -1 when out of memory.
 */
int bs_hold(struct blockstore *bs, const uint8_t *seg, size_t seglen);
void bs_release(struct blockstore *bs, const uint8_t *seg, size_t seglen);
void bs_holds_lock(struct blockstore *bs);
void bs_holds_unlock(struct blockstore *bs);
/* Under bs_holds_lock. */
bool bs_held_locked(const struct blockstore *bs, const uint8_t *seg, size_t seglen);

/*
 * Spare files (docs/cache.md, Spare data files): a data file reclaim frees whole is kept in
 * <data>/spare/, up to a limit of bytes on disk, and the next new data file no shorter than it
 * is that file renamed into place. New blocks then write over space the filesystem has
 * allocated already, and their group sync needs no allocation nor journal commit of its own
 * (bench/README.md, 2026-12-03). A file is kept only while the filesystem keeps
 * BS_SPARE_FREE_MARGIN free beyond the pool's limit and the file; bs_spare_drop gives them all
 * back. A spare's old bytes are never read: a slot is read only through a row, which only a
 * verified write of the new segment makes.
 */
#define BS_SPARE_DIR "spare"
#define BS_SPARE_FILES_MAX 64
#define BS_SPARE_MIN_BYTES (1024u * 1024)         /* smaller files are released, never kept */
#define BS_SPARE_FREE_MARGIN (256u * 1024 * 1024) /* free space kept beyond the pool */
/*
 * A file made from a spare holds the old bytes in the slots its new segment does not fill
 * (a ranged handle, an AddData cut short). Once a commit has given every slot of the spare a
 * row, none is left. Else, BS_SPARE_TIDY_S after it was taken, the next bs_spare_tidy punches
 * the slots with no row, as reclaim punches freed slots; bs_close does so for all. At most
 * BS_SPARE_TAKEN_MAX files wait: with as many, no spare is taken.
 */
#define BS_SPARE_TAKEN_MAX 16
#define BS_SPARE_TIDY_S 60
/* Loop (the eviction timer): tidies, on a worker, the files taken BS_SPARE_TIDY_S ago. */
void bs_spare_tidy(struct blockstore *bs);
/* Any thread: the most the spares may hold on disk (0: none); the excess goes on a worker. */
void bs_spare_limit(struct blockstore *bs, uint64_t limit);
/* Loop: the filesystem is nearly full: every spare is released (on a worker). */
void bs_spare_drop(struct blockstore *bs);
struct bs_spare_stats {
    uint64_t files, bytes; /* in the pool now */
    uint64_t kept, taken;  /* since start */
    uint64_t untidy;       /* files made from spares that may still hold old bytes */
};
void bs_spare_stats(struct blockstore *bs, struct bs_spare_stats *out);

/* store's reclaim hook: frees the space of deleted rows on a worker (takes items). */
void bs_reclaim(void *bs, struct store_reclaim *items, size_t n);
/* Block slots waiting for reclaim (for peerdistctl). */
uint64_t bs_reclaim_pending(const struct blockstore *bs);
/* Slots reclaimed since start (punched or unlinked with their file). */
uint64_t bs_reclaimed(const struct blockstore *bs);

#endif
