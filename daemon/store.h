/* SPDX-License-Identifier: MIT */
/*
 * store.h - the cache's SQLite database, and every SQL statement peerdistd runs: opening it
 * in WAL mode, the schema migrations, the block index, labels and flushes, and the queries of
 * the block store's reclaim and start-up reconciliation. One thread at a time uses a struct
 * store; peerdistd keeps one per user (the loop, the flush worker, the reclaim worker).
 */
#ifndef PEERDIST_STORE_H
#define PEERDIST_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define STORE_TAG_SIZE 16
#define STORE_BUSY_TIMEOUT_MS 5000

struct store;

/* Opens (creating if needed) and migrates the database. -1 with a message in err. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
/* A read-only connection for the block store's reclaim (store_file_in_use, store_slot_in_use). */
int store_open_reader(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *st);
/* The last failure on this connection: SQLite's result code and message. */
int store_errcode(struct store *st);
const char *store_errmsg(struct store *st);

/*
 * Applies migrations[0..count) that the database has not seen yet, each in its
 * own transaction together with its PRAGMA user_version. Refuses a database
 * whose user_version is newer than the last migration (never migrates down).
 */
int store_migrate(sqlite3 *db, const struct schema_migration *migrations, int count, char *err,
    size_t errlen);
int store_user_version(sqlite3 *db);

/* Group commit: many requests, one transaction. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/* What one flush did: labels removed, and bytes of the block rows deleted with them. */
struct store_flush_result {
    uint64_t labels_removed;
    uint64_t bytes_freed;
};
/*
 * Removes every label of (uid, tag). In the same transaction the rows of those blocks that
 * uid's labels could keep (the shared row, uid's own) and that no label keeps any more are
 * deleted, so they stop being readable with it; a label keeps only the row it was made for
 * (labels.row_owner), so another uid's label on its own private row keeps no shared row.
 * Their disk space goes to the reclaim hook after the COMMIT. peerdistd runs it on its flush
 * connection, off the event loop (flush.c).
 */
int store_flush_tag(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    struct store_flush_result *result);
/*
 * A read transaction (BEGIN ... COMMIT) around several reads, so SQLite takes its WAL read
 * lock once: 0, or -1 when none was opened (one is open already, or it failed); only after
 * 0, store_read_end. No write may run inside it.
 */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);
/* 1 if (uid, tag) holds a label, 0 if none, -1 on error (one index probe). */
int store_tag_has_labels(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);
/* Number of labels (uid, tag) holds; -1 on error. */
int64_t store_tag_labels(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);
/*
 * A walk over the (uid, tag) keys of the labels, in key order, one seek of the primary key per
 * key (the cursor is kept as SQLite's own values, so rows written by hand with other types
 * are passed, never met twice). Between start and the end it may span many transactions.
 * next: 1 with *uid and tag set to a pair a client can flush (an integer uid that is a
 * uint32_t, a 16-byte blob tag); 2 past a key that is none (nothing set); 0 at the end; -1
 * on error.
 */
void store_label_walk_start(struct store *st);
int store_label_walk_next(struct store *st, uint32_t *uid, uint8_t tag[STORE_TAG_SIZE]);
/* Called by store_label_put before it writes a label of (uid, tag): the daemon's tag filter. */
typedef void (*store_label_fn)(void *arg, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);
void store_set_label_hook(struct store *st, store_label_fn fn, void *arg);

/* ---- the block index (schema 002; docs/cache.md) ---- */

#define STORE_OWNER_SHARED (-1) /* blocks.owner of a block bound to its segment ID */
#define STORE_MAX_ID 64         /* longest segment ID or hash (SHA-512) */

struct store_block_row {
    uint32_t block;
    int64_t owner;      /* STORE_OWNER_SHARED or the uid whose partial list verified it */
    int64_t file_owner; /* which data file holds the bytes (docs/cache.md) */
    uint32_t length;
    size_t hash_len;
    uint8_t hash[STORE_MAX_ID];
};

/* A block row removed by a flush: its bytes may be reclaimed once nothing refers to them. */
struct store_reclaim {
    uint8_t segment_id[STORE_MAX_ID];
    uint8_t segment_id_len;
    int64_t file_owner;
    uint32_t block;
};

/* Called after a COMMIT that removed block rows; takes ownership of items (free()). */
typedef void (*store_reclaim_fn)(void *arg, struct store_reclaim *items, size_t n);
void store_set_reclaim_hook(struct store *st, store_reclaim_fn fn, void *arg);

/* One slot of a data file: block `block` of the file (segment_id, file_owner). */
struct store_slot {
    uint8_t segment_id[STORE_MAX_ID];
    uint8_t segment_id_len;
    int64_t file_owner;
    uint32_t block;
};
/*
 * Called after the COMMIT (or at once, outside a transaction) with the slots whose rows
 * store_block_put wrote: the bytes just written there are the ones those rows describe.
 * Items are the store's (valid during the call). A rolled-back transaction reports nothing.
 */
typedef void (*store_put_fn)(void *arg, const struct store_slot *slots, size_t n);
void store_set_put_hook(struct store *st, store_put_fn fn, void *arg);

/*
 * Makes a verified block readable (INSERT OR IGNORE: a row already there is kept). The bytes
 * were just written into the slot (segment_id, file_owner, block): rows naming that slot with
 * another hash described bytes that are gone, and are deleted first, with their labels.
 */
int store_block_put(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, int64_t owner, const uint8_t *hash, size_t hash_len, uint32_t length,
    int64_t file_owner);
/* Rows store_block_put has deleted that way since the store opened (in rolled-back
 * transactions too): a commit that moved it removed rows, not only added them. */
uint64_t store_rows_replaced(const struct store *st);
/*
 * Records that (uid, tag) added `bytes` bytes at block `block` of the segment. The label
 * keeps one row alive (labels.row_owner): the row this connection's last store_block_put of
 * that block named (AddData puts a block's row, then its label), else the block's shared row
 * if there is one, else uid's own.
 */
int store_label_put(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    const uint8_t *segment_id, size_t segment_id_len, uint32_t block, uint32_t bytes);
/* The segment's rows uid may see (shared ones and uid's own), ordered by block then owner
 * (shared first). fn returns non-zero to stop. 0, or -1 on a database error. */
typedef int (*store_block_fn)(void *arg, const struct store_block_row *row);
int store_segment_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t uid, store_block_fn fn, void *arg);
/* Every private row of the segment (any owner), for promotion. */
int store_segment_private_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    store_block_fn fn, void *arg);
/* A private row of the block with this hash becomes the shared row, unless there is one
 * already (its full list verified); the labels made for it follow it. */
int store_block_promote(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, const uint8_t *hash, size_t hash_len);
/* The caller's tags: fn(arg, tag, blocks, bytes) per tag. 0, or -1 on a database error. */
typedef void (
    *store_tag_fn)(void *arg, const uint8_t tag[STORE_TAG_SIZE], uint64_t blocks, uint64_t bytes);
int store_tags(struct store *st, uint32_t uid, store_tag_fn fn, void *arg);

/* ---- the block store's queries (blockstore.c) ---- */

/* Does a row still use the data file (seg, file_owner), or its slot `block`? 1, 0, or -1. */
int store_file_in_use(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner);
int store_slot_in_use(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner, uint32_t block);
/* Every block row, ordered by (segment, file_owner): where its bytes must be on disk. */
struct store_block_place {
    uint8_t segment_id[STORE_MAX_ID];
    uint8_t segment_id_len;
    int64_t file_owner;
    uint32_t block;
    uint32_t length;
};
typedef int (*store_place_fn)(void *arg, const struct store_block_place *p);
int store_each_block(struct store *st, store_place_fn fn, void *arg);
/*
 * Removes the rows of one slot (every owner: its bytes are missing or failed their hash) and
 * the labels made for them, in the caller's transaction; the slot goes to the reclaim hook
 * at COMMIT. The number of rows removed, or -1.
 */
int64_t store_block_drop(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner, uint32_t block);
/* Labels whose row is gone stop counting (they would list bytes nobody has). */
int store_drop_orphan_labels(struct store *st);

/*
 * Checkpoints. SQLite copies the WAL back into the database (a checkpoint: two fdatasyncs and
 * the pages' writes) in the thread of the commit that takes the WAL past 1000 pages; on the
 * loop's connection that would stall every client for as long. With a hook set, st's commits
 * never checkpoint: fn(arg, pages) is told the WAL's length in pages after each commit, in
 * the committing thread, and store_checkpoint runs when the caller chooses (checkpoint.c).
 * fn NULL: automatic checkpoints again.
 */
#define STORE_CHECKPOINT_PAGES 1000 /* SQLite's own automatic threshold */
/* A read-write connection for store_checkpoint only (no schema work, no statements). */
int store_open_checkpointer(const char *path, struct store **out, char *err, size_t errlen);
void store_set_wal_hook(struct store *st, void (*fn)(void *arg, int wal_pages), void *arg);
/* A passive checkpoint (waits for nobody): 0 done as far as readers allow (*wal_pages in the
 * WAL, *done_pages of them in the database), 1 another checkpoint is running, -1 error. */
int store_checkpoint(struct store *st, int *wal_pages, int *done_pages);

/* Bytes on disk: the database file and its WAL. */
uint64_t store_disk_bytes(const struct store *st);
const char *store_path(const struct store *st);
sqlite3 *store_db(struct store *st);

/* ---- administration (admins only; flush.c runs these in slices off the loop) ---- */

/* Keys one slice of an admin flush takes at most: each slice is its own transaction. */
#define STORE_ADMIN_SLICE_ROWS 1024

enum store_admin_scope {
    STORE_ADMIN_ALL,     /* every block and every label: the whole cache */
    STORE_ADMIN_UID,     /* one uid's labels, every tag */
    STORE_ADMIN_UID_TAG, /* one uid's labels of one tag */
};
enum store_admin_phase {
    STORE_ADMIN_PHASE_BLOCKS, /* whole cache: block rows with their labels */
    STORE_ADMIN_PHASE_LABELS, /* labels (whole cache: those left whose row is gone) */
    STORE_ADMIN_PHASE_DONE,
};
/* An admin flush's progress: the scope, where the next slice starts, and what went. */
struct store_admin_flush {
    enum store_admin_scope scope;
    enum store_admin_phase phase;
    uint32_t uid;
    uint8_t tag[STORE_TAG_SIZE];
    struct {
        int64_t uid;
        uint8_t tag[STORE_TAG_SIZE];
        size_t tag_len;
        uint8_t seg[STORE_MAX_ID];
        size_t seg_len;
        int64_t block, owner;
    } cur; /* the last key removed (labels: uid, tag, segment, block, row_owner) */
    struct store_flush_result result; /* summed over the slices */
};
/* tag is read for STORE_ADMIN_UID_TAG only. */
void store_admin_flush_init(struct store_admin_flush *f, enum store_admin_scope scope, uint32_t uid,
    const uint8_t tag[STORE_TAG_SIZE]);
void store_admin_flush_init_cursor(struct store_admin_flush *f);
/*
 * One slice, in the caller's transaction: at most `limit` keys after the cursor are removed
 * (whole cache: block rows and their labels, then labels whose row is gone; a uid: its
 * labels, then the rows only they kept, as store_flush_tag), f->result grows and the cursor
 * moves; f->phase is STORE_ADMIN_PHASE_DONE once nothing is left. The rows' space goes to
 * the reclaim hook at COMMIT. 0, or -1 (roll back, and restore f from before the slice).
 */
int store_admin_flush_slice(struct store *st, struct store_admin_flush *f, unsigned limit);

/* ---- the cache's bounds (schema 004; docs/cache.md, Bounds and eviction) ---- */

/* The timestamp (Unix seconds, the daemon's clock) labels made from now on carry. */
void store_set_now(struct store *st, int64_t now);
/* The segment was added or used at `now` (last_used never goes back). */
int store_segment_used(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t now);

enum store_counter {
    STORE_CTR_HITS,
    STORE_CTR_MISSES,
    STORE_CTR_ADDED,
    STORE_CTR_EVICTED_SIZE,
    STORE_CTR_EVICTED_AGE,
    STORE_CTR_FLUSHED,
    STORE_CTR_COUNT
};
/* Adds delta[i] to each counter (in the caller's transaction, if any). */
int store_counters_add(struct store *st, const uint64_t delta[STORE_CTR_COUNT]);
int store_counters_get(struct store *st, uint64_t out[STORE_CTR_COUNT]);
/* The bounds in force, for the views (cache_settings). */
int store_settings_put(struct store *st, uint64_t limit_bytes, uint64_t max_age_s,
    uint64_t uid_quota);

struct store_totals {
    uint64_t stored_bytes, blocks, segments, tags;
};
int store_cache_totals(struct store *st, struct store_totals *out);
/* Sum of the stored blocks' lengths; -1 on error. */
int64_t store_stored_bytes(struct store *st);

/* Up to max segments by last use, oldest first; only those used before `before` if it is
 * not -1. fn returns non-zero to stop. 0, or -1. */
typedef int (*store_segment_fn)(void *arg, const uint8_t *segment_id, size_t segment_id_len,
    int64_t last_used);
int store_lru_segments(struct store *st, int64_t before, unsigned max, store_segment_fn fn,
    void *arg);
/*
 * Evicts a segment: every block row (any owner), every label on it and its recency row, in
 * the caller's transaction; the slots go to the reclaim hook at COMMIT. Bytes and rows freed.
 */
int store_evict_segment(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint64_t *bytes, uint64_t *blocks);

/* uid_quota: uids whose labels keep more than quota bytes (each block counted once). */
typedef int (*store_uid_fn)(void *arg, uint32_t uid, uint64_t charged);
int store_uids_over(struct store *st, uint64_t quota, store_uid_fn fn, void *arg);
/* The segments uid labels, its least recently used first, with the bytes charged for each. */
typedef int (*store_uid_segment_fn)(void *arg, const uint8_t *segment_id, size_t segment_id_len,
    uint64_t charged);
int store_uid_segments(struct store *st, uint32_t uid, unsigned max, store_uid_segment_fn fn,
    void *arg);
/*
 * Removes uid's labels on the segment, then the rows uid's labels could keep there (the shared
 * rows and uid's own) that no label keeps any more; never another uid's labels. Bytes of
 * block rows deleted (reclaimed at COMMIT).
 */
int store_uid_drop_segment(struct store *st, uint32_t uid, const uint8_t *segment_id,
    size_t segment_id_len, uint64_t *bytes_freed);

/* One (uid, tag) for the Tags reply. */
struct store_tag_info {
    uint32_t uid;
    uint8_t tag[STORE_TAG_SIZE];
    uint64_t blocks, bytes, segments;
    int64_t added_at, last_used;
};
typedef void (*store_tag_info_fn)(void *arg, const struct store_tag_info *t);
/* uid's tags, or every uid's when all. 0, or -1. */
int store_tags_info(struct store *st, bool all, uint32_t uid, store_tag_info_fn fn, void *arg);

/* ---- serving peers (schema 005; peer-serve.c, docs/peerdistd.8.md, Serving peers) ---- */

/* A segment bound by a reader's content information: what serving it to peers needs. The
 * secret is Kp: it encrypts the segment's blocks on the wire and is never logged or shown. */
struct store_segment_secret {
    uint8_t segment_id[STORE_MAX_ID];
    size_t segment_id_len;
    int version; /* 1 or 2 */
    uint8_t hod[STORE_MAX_ID];
    size_t hod_len;
    uint8_t secret[STORE_MAX_ID];
    size_t secret_len;
    uint32_t blocks; /* blocks of the whole segment (V2: 1) */
    uint64_t length; /* bytes of the whole segment */
};
/* Records a bound segment (the first record of an ID stays). 0, or -1. */
int store_segment_secret_put(struct store *st, const struct store_segment_secret *s, int64_t now);
/* The segment's version, secret, blocks and length (hod is not read back): 1 found, 0 not,
 * -1 on error. The caller cleanses out when done. */
int store_segment_secret_get(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    struct store_segment_secret *out);
/* One shared block of a segment whose secret is stored. */
struct store_servable {
    int version;
    uint32_t blocks; /* the segment's */
    uint64_t length; /* the segment's */
    uint32_t block;  /* this row's block */
    uint32_t block_length;
    int64_t file_owner;
};
/* The shared rows of a segment whose secret is stored, by block (none if it is not). fn
 * returns non-zero to stop. 0, or -1. */
typedef int (*store_servable_fn)(void *arg, const struct store_servable *sv);
int store_servable_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    store_servable_fn fn, void *arg);
/* The first block after `after` with a shared row, or 0 if none; -1 on error. */
int64_t store_next_served_block(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t after);
/* The shared row of one block: 1 found (out filled), 0 not, -1 on error. */
int store_served_block(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, struct store_block_row *out);
/* Drops the secrets of segments without block rows; how many, or -1. */
int64_t store_segment_secrets_prune(struct store *st);
/* Segments whose secret is stored, or -1. */
int64_t store_segment_secrets_count(struct store *st);

#endif
