/* SPDX-License-Identifier: MIT */
/*
 * test_content_store.c - the block store under the daemon's content handles: block rows and
 * their bytes, flush deleting what no label keeps (and reclaiming its space), start-up
 * reconciliation, the flush transaction's cost, and the consuming requests on the wire
 * against a real peerdistd (raw protocol: the library side lands separately).
 */
#include <check.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "blockstore.h"
#include "check_run.h"
#include "contentinfo.h"
#include "frame.h"
#include "harness.h"
#include "store.h"
#include "worker.h"

static char dir[64];
static char path[128];
static struct store *st;
static struct event_base *base;
static struct worker_pool *wp;
static struct blockstore *bs;

static const uint8_t tag_a[16] = {0xa};
static const uint8_t tag_b[16] = {0xb};
static const uint8_t seg1[32] = {0x11, 0x22};

static void open_all(void)
{
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    base = event_base_new();
    wp = worker_pool_new(base, 2);
    ck_assert_int_eq(bs_open(path, wp, &bs), 0);
    store_set_reclaim_hook(st, bs_reclaim, bs);
}

static void close_all(void)
{
    worker_pool_free(wp); /* runs every queued reclaim to its end */
    bs_close(bs);
    event_base_free(base);
    store_close(st);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/pdcstore.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cache.db", dir);
    open_all();
}

static void teardown(void)
{
    close_all();
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes block `block` of seg1 (filled with `fill`), syncs it, then commits row and label. */
static void put_block(uint32_t uid, const uint8_t *tag, uint32_t block, uint8_t fill, int64_t owner)
{
    uint8_t buf[BS_SLOT_SIZE];
    memset(buf, fill, sizeof(buf));
    int fd = bs_open_write(bs, seg1, sizeof(seg1), owner, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)block * BS_SLOT_SIZE),
        (ssize_t)sizeof(buf));
    ck_assert_int_eq(fdatasync(fd), 0);
    close(fd);
    uint8_t hash[32];
    memset(hash, fill, sizeof(hash));
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_block_put(st, seg1, sizeof(seg1), block, owner, hash, sizeof(hash),
                         sizeof(buf), owner),
        0);
    ck_assert_int_eq(store_label_put(st, uid, tag, seg1, sizeof(seg1), block, sizeof(buf)), 0);
    ck_assert_int_eq(store_commit(st), 0);
}

struct seen {
    int n;
    uint32_t blocks[16];
    int64_t owners[16];
};

static int collect(void *arg, const struct store_block_row *row)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->blocks[s->n] = row->block;
        s->owners[s->n] = row->owner;
        s->n++;
    }
    return 0;
}

static struct seen rows_for(uint32_t uid)
{
    struct seen s = {0};
    ck_assert_int_eq(store_segment_blocks(st, seg1, sizeof(seg1), uid, collect, &s), 0);
    return s;
}

static void file_of(int64_t owner, char *buf, size_t len)
{
    bs_file_path(bs, seg1, sizeof(seg1), owner, buf, len);
}

START_TEST(block_stored_and_read_back)
{
    put_block(1000, tag_a, 3, 0x5a, STORE_OWNER_SHARED);
    struct seen s = rows_for(42); /* a shared row: every uid sees it */
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.blocks[0], 3);
    uint8_t buf[100];
    ck_assert_int_eq(bs_read(bs, seg1, sizeof(seg1), STORE_OWNER_SHARED, 3 * BS_SLOT_SIZE + 1000,
                         buf, sizeof(buf)),
        0);
    for (size_t i = 0; i < sizeof(buf); i++)
        ck_assert_uint_eq(buf[i], 0x5a);
    /* Past the end of what was written: a short read is an error, never zeros. */
    ck_assert_int_eq(bs_read(bs, seg1, sizeof(seg1), STORE_OWNER_SHARED, 4 * BS_SLOT_SIZE, buf, 10),
        -1);
}
END_TEST

START_TEST(private_rows_serve_their_uid_until_promoted)
{
    put_block(1000, tag_a, 0, 0x01, 1000);
    ck_assert_int_eq(rows_for(1000).n, 1);
    ck_assert_int_eq(rows_for(1001).n, 0); /* not shared with another uid */
    uint8_t hash[32];
    memset(hash, 0x02, sizeof(hash));
    ck_assert_int_eq(store_block_promote(st, seg1, sizeof(seg1), 0, hash, sizeof(hash)), 0);
    ck_assert_int_eq(rows_for(1001).n, 0); /* another hash: no promotion */
    memset(hash, 0x01, sizeof(hash));
    ck_assert_int_eq(store_block_promote(st, seg1, sizeof(seg1), 0, hash, sizeof(hash)), 0);
    struct seen s = rows_for(1001);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.owners[0], STORE_OWNER_SHARED);
    /* The bytes stay in the uid's file: the row says so. */
    uint8_t b;
    ck_assert_int_eq(bs_read(bs, seg1, sizeof(seg1), 1000, 5, &b, 1), 0);
    ck_assert_uint_eq(b, 0x01);
}
END_TEST

static bool slot_has_data(const char *file, uint32_t block)
{
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        return false;
    off_t d = lseek(fd, (off_t)block * BS_SLOT_SIZE, SEEK_DATA);
    close(fd);
    return d >= 0 && d < (off_t)(block + 1) * BS_SLOT_SIZE;
}

START_TEST(flush_deletes_unreferenced_blocks_and_keeps_shared)
{
    put_block(1000, tag_a, 0, 0x10, STORE_OWNER_SHARED);
    put_block(1000, tag_b, 0, 0x10, STORE_OWNER_SHARED); /* tag b also added block 0 */
    put_block(1000, tag_a, 1, 0x11, STORE_OWNER_SHARED);
    put_block(2000, tag_a, 2, 0x12, STORE_OWNER_SHARED); /* another uid, same tag bytes */
    struct store_flush_result res;
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_int_eq(store_commit(st), 0);
    ck_assert_uint_eq(res.labels_removed, 2);
    ck_assert_uint_eq(res.bytes_freed, BS_SLOT_SIZE); /* block 1 only: tag b keeps block 0 */
    struct seen s = rows_for(1000);
    ck_assert_int_eq(s.n, 2); /* block 0 (tag b) and block 2 (uid 2000) survive */
    ck_assert_uint_eq(s.blocks[0], 0);
    ck_assert_uint_eq(s.blocks[1], 2);
    /* Reclaim runs on a worker: block 1's slot is punched, the file stays. */
    worker_pool_free(wp);
    wp = NULL;
    char file[4096];
    file_of(STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert(slot_has_data(file, 0));
    ck_assert(!slot_has_data(file, 1));
    ck_assert(slot_has_data(file, 2));
    ck_assert_uint_eq(bs_reclaim_pending(bs), 0);
    ck_assert_uint_eq(bs_reclaimed(bs), 1);
    wp = worker_pool_new(base, 2);
    bs_close(bs);
    ck_assert_int_eq(bs_open(path, wp, &bs), 0);
    store_set_reclaim_hook(st, bs_reclaim, bs);
    /* Flushing the rest removes the file itself. */
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_b, &res), 0); /* autocommit works too */
    ck_assert_int_eq(store_flush_tag(st, 2000, tag_a, &res), 0);
    ck_assert_int_eq(rows_for(1000).n, 0);
    worker_pool_free(wp);
    wp = worker_pool_new(base, 2);
    struct stat sb;
    ck_assert_int_eq(stat(file, &sb), -1);
}
END_TEST

START_TEST(rolled_back_flush_keeps_blocks_and_bytes)
{
    put_block(7, tag_a, 0, 0x33, STORE_OWNER_SHARED);
    struct store_flush_result res;
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_flush_tag(st, 7, tag_a, &res), 0);
    store_rollback(st);
    ck_assert_int_eq(rows_for(7).n, 1);
    worker_pool_free(wp);
    wp = worker_pool_new(base, 2);
    char file[4096];
    file_of(STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert(slot_has_data(file, 0));
}
END_TEST

START_TEST(private_block_kept_by_its_uid_only)
{
    put_block(5, tag_a, 0, 0x44, 5);
    put_block(6, tag_a, 0, 0x44, 6); /* uid 6's own private copy */
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 5, tag_a, &res), 0);
    ck_assert_uint_eq(res.bytes_freed, BS_SLOT_SIZE); /* uid 5's private row went */
    ck_assert_int_eq(rows_for(5).n, 0);
    ck_assert_int_eq(rows_for(6).n, 1);
}
END_TEST

START_TEST(reconcile_drops_rows_without_bytes_and_files_without_rows)
{
    put_block(1, tag_a, 0, 0x01, STORE_OWNER_SHARED);
    put_block(1, tag_a, 1, 0x02, STORE_OWNER_SHARED);
    put_block(1, tag_a, 0, 0x03, 1);
    char shared[4096], priv[4096];
    file_of(STORE_OWNER_SHARED, shared, sizeof(shared));
    file_of(1, priv, sizeof(priv));
    close_all();
    /* The shared file loses block 1 (cut short), the private file vanishes, and a stray
     * file no row names appears (an AddData whose commit never happened). */
    ck_assert_int_eq(truncate(shared, BS_SLOT_SIZE), 0);
    ck_assert_int_eq(unlink(priv), 0);
    char stray[4200];
    snprintf(stray, sizeof(stray), "%s/data/ab", dir);
    mkdir(stray, 0700);
    snprintf(stray, sizeof(stray),
        "%s/data/ab/ab00000000000000000000000000000000000000000000000000000000000000", dir);
    int fd = open(stray, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    open_all();
    ck_assert_int_eq(bs_reconcile(bs, st), 0);
    struct seen s = rows_for(1);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.blocks[0], 0);
    ck_assert_int_eq(s.owners[0], STORE_OWNER_SHARED);
    struct stat sb;
    ck_assert_int_eq(stat(stray, &sb), -1);
    ck_assert_int_eq(stat(shared, &sb), 0);
    /* Labels of the lost blocks go with them (block 1); block 0 keeps its label. */
    ck_assert_int_eq(store_tag_labels(st, 1, tag_a), 1);
}
END_TEST

/*
 * A label keeps alive only the row it was made for (issue 7, item 8). uid 2000 forged a
 * private block 0 of the segment uid 1000 stored shared: uid 2000's label keeps its own row,
 * never uid 1000's shared one, so uid 1000's flush makes the shared block unreadable.
 */
START_TEST(forged_private_label_does_not_keep_shared_row)
{
    put_block(1000, tag_a, 0, 0x10, STORE_OWNER_SHARED);
    put_block(2000, tag_b, 0, 0x66, 2000); /* forged bytes, verified against uid 2000's list */
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_uint_eq(res.labels_removed, 1);
    ck_assert_uint_eq(res.bytes_freed, BS_SLOT_SIZE);
    ck_assert_int_eq(rows_for(3000).n, 0); /* nobody else sees a shared block 0 any more */
    struct seen s = rows_for(2000);        /* uid 2000 keeps its own private row */
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.owners[0], 2000);
    /* And the converse: uid 2000's flush releases its private row only. */
    put_block(1000, tag_a, 0, 0x10, STORE_OWNER_SHARED);
    ck_assert_int_eq(store_flush_tag(st, 2000, tag_b, &res), 0);
    ck_assert_uint_eq(res.bytes_freed, BS_SLOT_SIZE);
    s = rows_for(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.owners[0], STORE_OWNER_SHARED);
}
END_TEST

/* A label on the shared row keeps it, whoever else flushes; the last one's flush frees it. */
START_TEST(shared_label_keeps_shared_row)
{
    put_block(1000, tag_a, 0, 0x10, STORE_OWNER_SHARED);
    put_block(2000, tag_b, 0, 0x10, STORE_OWNER_SHARED); /* uid 2000 added the same block */
    put_block(2000, tag_b, 1, 0x67, 2000);               /* and a private block 1 */
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_uint_eq(res.bytes_freed, 0);
    ck_assert_int_eq(rows_for(3000).n, 1);
    ck_assert_int_eq(store_flush_tag(st, 2000, tag_b, &res), 0);
    ck_assert_uint_eq(res.labels_removed, 2);
    ck_assert_uint_eq(res.bytes_freed, 2 * BS_SLOT_SIZE);
    ck_assert_int_eq(rows_for(2000).n, 0);
}
END_TEST

/* A private row promoted to shared takes its labels along: they keep the shared row now. */
START_TEST(promotion_moves_labels_to_the_shared_row)
{
    put_block(2000, tag_b, 0, 0x01, 2000);
    uint8_t hash[32];
    memset(hash, 0x01, sizeof(hash));
    ck_assert_int_eq(store_block_promote(st, seg1, sizeof(seg1), 0, hash, sizeof(hash)), 0);
    put_block(1000, tag_a, 0, 0x01, STORE_OWNER_SHARED); /* another user labels it too */
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_int_eq(rows_for(3000).n, 1); /* uid 2000's label, moved with the row, keeps it */
    ck_assert_int_eq(store_flush_tag(st, 2000, tag_b, &res), 0);
    ck_assert_int_eq(rows_for(3000).n, 0);
    ck_assert_uint_eq(res.bytes_freed, BS_SLOT_SIZE);
}
END_TEST

/*
 * Bytes written over a slot replace what the rows naming it described: a row whose hash the
 * new bytes do not match goes when the new row commits, shared or not. Otherwise a user could
 * promote its honest private block, then overwrite it with bytes of its own choosing through a
 * forged partial list, and everybody reading the shared row would get them.
 */
START_TEST(overwritten_slot_drops_rows_of_another_hash)
{
    put_block(2000, tag_b, 0, 0x01, 2000);
    uint8_t hash[32];
    memset(hash, 0x01, sizeof(hash));
    ck_assert_int_eq(store_block_promote(st, seg1, sizeof(seg1), 0, hash, sizeof(hash)), 0);
    ck_assert_int_eq(rows_for(3000).n, 1);
    put_block(2000, tag_b, 0, 0x02, 2000); /* other bytes, another hash, the same slot */
    ck_assert_int_eq(rows_for(3000).n, 0);
    struct seen s = rows_for(2000);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.owners[0], 2000);
}
END_TEST

/* ---- what the block store knows of each slot's bytes (issue 7, item 5) ---- */

static enum bs_slot_state state_of(int64_t file, uint32_t block)
{
    return bs_slot_state(bs, seg1, sizeof(seg1), file, block);
}

static bool check(int64_t file, uint32_t block, enum bs_verdict v, struct bs_check *ck)
{
    struct bs_check own;
    if (!ck) {
        ck = &own;
        bs_check_begin(bs, seg1, sizeof(seg1), file, block, ck);
    }
    return bs_check_end(bs, ck, v);
}

/* A verdict stands only for the bytes that were read: a write since, or under way, voids it. */
START_TEST(check_verdicts_stand_unless_a_write_intervened)
{
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_UNCHECKED);
    ck_assert(check(-1, 3, BS_VERDICT_GOOD, NULL));
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_GOOD);
    ck_assert_int_eq(state_of(-1, 4), BS_SLOT_UNCHECKED);
    ck_assert_int_eq(state_of(7, 3), BS_SLOT_UNCHECKED); /* another file */
    /* A pin (a write starting) forgets what was known. */
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), -1, 3), 0);
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_UNCHECKED);
    struct bs_check ck;
    bs_check_begin(bs, seg1, sizeof(seg1), -1, 3, &ck);
    ck_assert(!check(-1, 3, BS_VERDICT_GOOD, &ck)); /* read while the write was under way */
    bs_unpin(bs, seg1, sizeof(seg1), -1, 3);
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_UNCHECKED);
    /* A write that came and went during the check voids it too. */
    bs_check_begin(bs, seg1, sizeof(seg1), -1, 3, &ck);
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), -1, 3), 0);
    bs_unpin(bs, seg1, sizeof(seg1), -1, 3);
    ck_assert(!check(-1, 3, BS_VERDICT_BAD, &ck));
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_UNCHECKED);
    ck_assert_uint_eq(bs_bad_slots(bs), 0);
    /* Bad: known once, queued once, taken once; readers look while one is bad. */
    struct bs_check c1, c2;
    bs_check_begin(bs, seg1, sizeof(seg1), -1, 3, &c1);
    bs_check_begin(bs, seg1, sizeof(seg1), -1, 3, &c2);
    ck_assert(check(-1, 3, BS_VERDICT_BAD, &c1));
    ck_assert(!check(-1, 3, BS_VERDICT_BAD, &c2)); /* already known: not reported again */
    ck_assert_int_eq(state_of(-1, 3), BS_SLOT_BAD);
    ck_assert_uint_eq(bs_bad_slots(bs), 1);
    struct store_slot out[4];
    ck_assert_uint_eq(bs_bad_take(bs, out, 4), 1);
    ck_assert_uint_eq(out[0].block, 3);
    ck_assert_int_eq(out[0].file_owner, -1);
    ck_assert_uint_eq(bs_bad_take(bs, out, 4), 0);
    /* A write replaces the bad bytes: not bad any more, and a queued drop is called off. */
    ck_assert(check(-1, 5, BS_VERDICT_BAD, NULL));
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), -1, 5), 0);
    ck_assert_int_eq(state_of(-1, 5), BS_SLOT_UNCHECKED);
    ck_assert_uint_eq(bs_bad_take(bs, out, 4), 0);
    bs_unpin(bs, seg1, sizeof(seg1), -1, 5);
    ck_assert_uint_eq(bs_bad_slots(bs), 1); /* block 3: its row is for the read path to drop */
}
END_TEST

/* Pins and commits the way AddData does (content-add.c, content-commit.c). */
static void add_block(uint32_t uid, uint32_t block, uint8_t fill, int64_t owner)
{
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), owner, block), 0);
    put_block(uid, tag_a, block, fill, owner);
    bs_unpin(bs, seg1, sizeof(seg1), owner, block);
}

/* Blocks AddData wrote and committed this run count as checked, unless writes overlapped. */
START_TEST(committed_sole_writes_count_as_checked)
{
    ck_assert_int_eq(bs_reconcile(bs, st), 0); /* hooks the block store to st's commits */
    add_block(1, 0, 0x01, STORE_OWNER_SHARED);
    ck_assert_int_eq(state_of(-1, 0), BS_SLOT_GOOD);
    add_block(1, 1, 0x02, 1);
    ck_assert_int_eq(state_of(1, 1), BS_SLOT_GOOD);
    /* Rows put without a write pinned (not AddData's way): nothing is assumed. */
    put_block(1, tag_a, 2, 0x03, STORE_OWNER_SHARED);
    ck_assert_int_eq(state_of(-1, 2), BS_SLOT_UNCHECKED);
    /* Two writes to one slot at once: whose bytes landed last is unknown. */
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), -1, 4), 0);
    add_block(1, 4, 0x04, STORE_OWNER_SHARED);
    bs_unpin(bs, seg1, sizeof(seg1), -1, 4);
    ck_assert_int_eq(state_of(-1, 4), BS_SLOT_UNCHECKED);
    /* A rolled-back commit reports nothing. */
    ck_assert_int_eq(bs_pin(bs, seg1, sizeof(seg1), -1, 5), 0);
    uint8_t hash[32] = {5};
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_block_put(st, seg1, sizeof(seg1), 5, -1, hash, sizeof(hash), 10, -1), 0);
    store_rollback(st);
    bs_unpin(bs, seg1, sizeof(seg1), -1, 5);
    ck_assert_int_eq(state_of(-1, 5), BS_SLOT_UNCHECKED);
}
END_TEST

/* What is known is bounded: past BS_KNOWN_FILES_MAX files the least recently used goes. */
START_TEST(known_files_are_bounded)
{
    uint8_t seg[32] = {0};
    struct bs_check held;
    bs_check_begin(bs, seg1, sizeof(seg1), -1, 0, &held); /* a check under way: kept */
    for (uint32_t i = 0; i < BS_KNOWN_FILES_MAX + 100; i++) {
        memcpy(seg, &i, sizeof(i));
        struct bs_check ck;
        bs_check_begin(bs, seg, sizeof(seg), -1, 0, &ck);
        ck_assert(bs_check_end(bs, &ck, BS_VERDICT_GOOD));
    }
    uint32_t first = 0, last = BS_KNOWN_FILES_MAX + 99;
    memcpy(seg, &first, sizeof(first));
    ck_assert_int_eq(bs_slot_state(bs, seg, sizeof(seg), -1, 0), BS_SLOT_UNCHECKED);
    memcpy(seg, &last, sizeof(last));
    ck_assert_int_eq(bs_slot_state(bs, seg, sizeof(seg), -1, 0), BS_SLOT_GOOD);
    ck_assert(bs_check_end(bs, &held, BS_VERDICT_GOOD));
    ck_assert_int_eq(state_of(-1, 0), BS_SLOT_GOOD);
}
END_TEST

/* Rows (not bytes) for a tag labelling 1 GiB: 32 segments x 512 blocks. */
static void fill_rows(uint32_t uid, const uint8_t *tag, uint8_t segfill)
{
    uint8_t seg[32] = {0}, hash[32] = {0};
    ck_assert_int_eq(store_begin(st), 0);
    for (uint32_t s = 0; s < 32; s++) {
        seg[0] = segfill;
        seg[1] = (uint8_t)s;
        for (uint32_t b = 0; b < CI_V1_BLOCKS_PER_SEGMENT; b++) {
            ck_assert_int_eq(store_block_put(st, seg, 32, b, -1, hash, 32, BS_SLOT_SIZE, -1), 0);
            ck_assert_int_eq(store_label_put(st, uid, tag, seg, 32, b, BS_SLOT_SIZE), 0);
        }
    }
    ck_assert_int_eq(store_commit(st), 0);
}

static int count_place(void *arg, const struct store_block_place *p)
{
    (*(size_t *)arg)++;
    return 0;
}

static size_t block_rows(void)
{
    size_t n = 0;
    ck_assert_int_eq(store_each_block(st, count_place, &n), 0);
    return n;
}

/* A tag labelling 1 GiB goes in one flush, rows and labels alike (its speed: bench/). */
START_TEST(flush_of_one_gib_tag)
{
    fill_rows(2, tag_a, 2);
    ck_assert_uint_eq(block_rows(), 32 * CI_V1_BLOCKS_PER_SEGMENT);
    store_set_reclaim_hook(st, NULL, NULL); /* no data files here: the rows only */
    struct store_flush_result res;
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_flush_tag(st, 2, tag_a, &res), 0);
    ck_assert_int_eq(store_commit(st), 0);
    ck_assert_uint_eq(res.labels_removed, 32 * CI_V1_BLOCKS_PER_SEGMENT);
    ck_assert_uint_eq(res.bytes_freed, 32ull * CI_V1_BLOCKS_PER_SEGMENT * BS_SLOT_SIZE);
    ck_assert_uint_eq(block_rows(), 0);
    ck_assert_int_eq(store_tag_labels(st, 2, tag_a), 0);
}
END_TEST

/* ---- the consuming requests on the wire, against a real peerdistd ---- */

static struct test_daemon td;
static uint64_t next_id = 1;

static int raw_connect(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, td.sock, strlen(td.sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static uint64_t raw_send(int fd, Peerdist__Request *req)
{
    req->id = next_id++;
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    ck_assert_uint_eq(frame_pack(&req->base, buf), n);
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, buf + done, n - done);
        ck_assert_int_gt(w, 0);
        done += (size_t)w;
    }
    free(buf);
    return req->id;
}

static Peerdist__Reply *raw_recv(int fd)
{
    uint8_t hdr[4];
    ck_assert_int_eq(recv(fd, hdr, 4, MSG_WAITALL), 4);
    uint32_t len = frame_header_length(hdr);
    uint8_t *buf = malloc(len ? len : 1);
    ck_assert_int_eq(recv(fd, buf, len, MSG_WAITALL), (ssize_t)len);
    Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Sends and waits for that request's reply (the only one outstanding). */
static Peerdist__Reply *call(int fd, Peerdist__Request *req, uint32_t expect)
{
    uint64_t id = raw_send(fd, req);
    Peerdist__Reply *r = raw_recv(fd);
    ck_assert_uint_eq(r->id, id);
    ck_assert_msg(r->status == expect, "request %d: status %u, expected %u", req->body_case,
        r->status, expect);
    return r;
}

static void call_free(int fd, Peerdist__Request *req, uint32_t expect)
{
    peerdist__reply__free_unpacked(call(fd, req, expect), NULL);
}

static int wire_connect(void)
{
    int fd = raw_connect();
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = h.max_version = 1;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    call_free(fd, &req, ERROR_SUCCESS);
    return fd;
}

static uint64_t wire_open(int fd, const uint8_t *tag)
{
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)tag;
    o.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    Peerdist__Reply *r = call(fd, &req, ERROR_SUCCESS);
    uint64_t h = r->open_content->handle;
    peerdist__reply__free_unpacked(r, NULL);
    return h;
}

static void wire_add_ci(int fd, uint64_t h, const uint8_t *ci, size_t len, uint32_t expect)
{
    Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    a.handle = h;
    a.data.data = (uint8_t *)ci;
    a.data.len = len;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
    req.add_content_info = &a;
    call_free(fd, &req, expect);
}

static void wire_complete(int fd, uint64_t h, uint32_t expect)
{
    Peerdist__CompleteContentInfoRequest a = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
    a.handle = h;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
    req.complete_content_info = &a;
    call_free(fd, &req, expect);
}

static void wire_add_data(int fd, uint64_t h, uint64_t off, const uint8_t *data, size_t len,
    uint32_t expect)
{
    Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
    a.handle = h;
    a.offset = off;
    a.data.data = (uint8_t *)data;
    a.data.len = len;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
    req.add_data = &a;
    Peerdist__Reply *r = call(fd, &req, expect);
    if (expect == ERROR_SUCCESS) {
        ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_COUNT);
        ck_assert_uint_eq(r->count->bytes, len);
    }
    peerdist__reply__free_unpacked(r, NULL);
}

static Peerdist__Reply *wire_read(int fd, uint64_t h, bool stream, uint64_t off, uint32_t max,
    uint32_t expect)
{
    Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
    a.handle = h;
    a.stream = stream;
    a.offset = off;
    a.max_bytes = max;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_READ;
    req.read = &a;
    Peerdist__Reply *r = call(fd, &req, expect);
    if (expect != PEERDIST_ERROR_NOT_INITIALIZED)
        ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_READ);
    return r;
}

static void expect_read(int fd, uint64_t h, bool stream, uint64_t off, uint32_t max,
    uint32_t status, uint64_t r_off, uint64_t r_len)
{
    Peerdist__Reply *r = wire_read(fd, h, stream, off, max, status);
    ck_assert_uint_eq(r->read->offset, r_off);
    ck_assert_uint_eq(r->read->length, r_len);
    peerdist__reply__free_unpacked(r, NULL);
}

/* A flush; its FlushReply's figures in *labels and *bytes (either may be NULL). */
static void wire_flush_counted(int fd, const uint8_t *tag, uint64_t *labels, uint64_t *bytes)
{
    Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
    f.tag.data = (uint8_t *)tag;
    f.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
    req.flush = &f;
    Peerdist__Reply *r = call(fd, &req, ERROR_SUCCESS);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_FLUSH);
    if (labels)
        *labels = r->flush->labels_removed;
    if (bytes)
        *bytes = r->flush->bytes_freed;
    peerdist__reply__free_unpacked(r, NULL);
}

static void wire_flush(int fd, const uint8_t *tag)
{
    wire_flush_counted(fd, tag, NULL, NULL);
}

static uint8_t *content;
static size_t content_len;

static uint8_t *make_ci(enum ci_version v, size_t *len)
{
    struct ci_secret ks;
    ck_assert_int_eq(
        ci_secret_from_passphrase(v == CI_VERSION_1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC,
            "test-passphrase", 15, &ks),
        0);
    struct ci_gen *g = ci_gen_new(v, &ks);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(ci_gen_feed(g, content, content_len), 0);
    struct ci_info *ci;
    ck_assert_int_eq(ci_gen_finish(g, &ci), 0);
    ci_gen_free(g);
    uint8_t *out;
    ck_assert_int_eq(ci_serialize(ci, &out, len), 0);
    ci_info_free(ci);
    return out;
}

/* Whole-content information of `content`, parsed. */
static struct ci_info *make_full_ci(enum ci_version v)
{
    size_t len;
    uint8_t *wire = make_ci(v, &len);
    struct ci_info *ci;
    struct ci_error e;
    ck_assert_int_eq(ci_parse(wire, len, &ci, &e), ERROR_SUCCESS);
    free(wire);
    return ci;
}

static void wire_setup(void)
{
    td_init(&td, "local");
    td_start(&td);
    content_len = 300 * 1024 + 17; /* 5 blocks (V1) */
    content = malloc(content_len);
    srand(7);
    for (size_t i = 0; i < content_len; i++)
        content[i] = (uint8_t)rand();
}

static void wire_teardown(void)
{
    td_stop(&td);
    td_cleanup(&td);
    free(content);
}

static void check_data_path(enum ci_version v)
{
    int fd = wire_connect();
    size_t cilen;
    uint8_t *ci = make_ci(v, &cilen);
    uint64_t h = wire_open(fd, tag_a);
    peerdist__reply__free_unpacked(wire_read(fd, h, false, 0, 10, PEERDIST_ERROR_NOT_INITIALIZED),
        NULL);
    wire_add_data(fd, h, 0, content, 10, PEERDIST_ERROR_NOT_INITIALIZED);
    /* Content information in odd chunks. */
    for (size_t off = 0; off < cilen; off += 7)
        wire_add_ci(fd, h, ci + off, cilen - off < 7 ? cilen - off : 7, ERROR_SUCCESS);
    wire_complete(fd, h, ERROR_SUCCESS);
    wire_complete(fd, h, PEERDIST_ERROR_ALREADY_COMPLETED);
    wire_add_ci(fd, h, ci, 4, PEERDIST_ERROR_ALREADY_COMPLETED);
    /* Nothing cached: the whole content is missing. */
    expect_read(fd, h, false, 0, 4096, PEERDIST_ERROR_MISSING_DATA, 0, content_len);
    expect_read(fd, h, false, 100, 0, ERROR_SUCCESS, 100, 0);
    expect_read(fd, h, false, content_len, 10, PEERDIST_ERROR_NO_MORE, content_len, 0);
    wire_add_data(fd, h, content_len - 5, content, 6, PEERDIST_ERROR_OUT_OF_BOUNDS);
    /* Corrupted bytes: refused, nothing stored. */
    uint8_t *bad = malloc(content_len);
    memcpy(bad, content, content_len);
    bad[70000] ^= 1;
    wire_add_data(fd, h, 0, bad, content_len, ERROR_INVALID_DATA);
    free(bad);
    Peerdist__Reply *r;
    if (v == CI_VERSION_1) { /* block 0 verified and stored; block 1 (the bad byte) not */
        expect_read(fd, h, false, 0, 0, ERROR_SUCCESS, 0, 65536);
        expect_read(fd, h, false, 65536, 10, PEERDIST_ERROR_MISSING_DATA, 65536, 65536);
    }
    /* V1: blocks 0, 2.. verified and stored; block 1 (the bad byte) missing. V2: the bad
     * byte's segment missing. Flush and start again with good bytes out of order. */
    wire_flush(fd, tag_a);
    expect_read(fd, h, false, 0, 4096, PEERDIST_ERROR_MISSING_DATA, 0, content_len);
    size_t cut[] = {0, 1, 65535, 65537, 200000, 200001, content_len};
    for (int i = 5; i >= 0; i--)
        wire_add_data(fd, h, cut[i], content + cut[i], cut[i + 1] - cut[i], ERROR_SUCCESS);
    /* Read back through both reads. */
    uint8_t *back = malloc(content_len);
    size_t got = 0;
    while (got < content_len) {
        r = wire_read(fd, h, true, 0, 50000, ERROR_SUCCESS);
        ck_assert_uint_eq(r->read->offset, got);
        ck_assert_uint_gt(r->read->data.len, 0);
        memcpy(back + got, r->read->data.data, r->read->data.len);
        got += r->read->data.len;
        peerdist__reply__free_unpacked(r, NULL);
    }
    ck_assert(memcmp(back, content, content_len) == 0);
    expect_read(fd, h, true, 0, 10, PEERDIST_ERROR_NO_MORE, content_len, 0);
    r = wire_read(fd, h, false, 123, 1 << 20, ERROR_SUCCESS);
    ck_assert_uint_eq(r->read->data.len, content_len - 123);
    ck_assert(memcmp(r->read->data.data, content + 123, content_len - 123) == 0);
    peerdist__reply__free_unpacked(r, NULL);
    expect_read(fd, h, false, 5, 0, ERROR_SUCCESS, 5, content_len - 5);
    /* A second handle under another tag shares the stored bytes; flushing tag a keeps them
     * for tag b, which labelled them too. */
    uint64_t h2 = wire_open(fd, tag_b);
    wire_add_ci(fd, h2, ci, cilen, ERROR_SUCCESS);
    wire_complete(fd, h2, ERROR_SUCCESS);
    expect_read(fd, h2, false, 0, 0, ERROR_SUCCESS, 0, content_len);
    wire_add_data(fd, h2, 0, content, content_len, ERROR_SUCCESS);
    wire_flush(fd, tag_a);
    expect_read(fd, h, false, 0, 0, ERROR_SUCCESS, 0, content_len);
    wire_flush(fd, tag_b);
    expect_read(fd, h, false, 0, 10, PEERDIST_ERROR_MISSING_DATA, 0, content_len);
    /* A stream read moves past a missing range. */
    wire_add_data(fd, h, 0, content, content_len, ERROR_SUCCESS);
    wire_flush(fd, tag_a);
    free(back);
    free(ci);
    close(fd);
}

START_TEST(wire_v1)
{
    check_data_path(CI_VERSION_1);
}
END_TEST

START_TEST(wire_v2)
{
    check_data_path(CI_VERSION_2);
}
END_TEST

/*
 * AddData on a ranged handle (DESIGN.md, API behaviour): the blocks its content information
 * lists are stored, every other byte of the call is dropped, bytes past the content's end
 * included, and the completion counts every byte. A whole-content handle still refuses a
 * call reaching past the end (check_data_path).
 */
START_TEST(wire_ranged_add_data_stores_listed_blocks_only)
{
    int fd = wire_connect();
    struct ci_info *full = make_full_ci(CI_VERSION_1), *ranged;
    /* [70000, 170000) lists blocks 1 and 2: [65536, 196608). */
    ck_assert_int_eq(ci_range(full, 70000, 100000, &ranged), 0);
    uint8_t *rwire;
    size_t rlen;
    ck_assert_int_eq(ci_serialize(ranged, &rwire, &rlen), 0);
    uint64_t h = wire_open(fd, tag_a);
    wire_add_ci(fd, h, rwire, rlen, ERROR_SUCCESS);
    wire_complete(fd, h, ERROR_SUCCESS);
    /* The whole content plus bytes past its end, in one call: accepted and counted. */
    uint8_t *more = malloc(content_len + 100);
    memcpy(more, content, content_len);
    memset(more + content_len, 0xee, 100);
    wire_add_data(fd, h, 0, more, content_len + 100, ERROR_SUCCESS);
    wire_add_data(fd, h, content_len + 5000, more, 10, ERROR_SUCCESS); /* all outside */
    wire_add_data(fd, h, 0, more, 1000, ERROR_SUCCESS);                /* all outside */
    free(more);
    /* What the ranged handle reads: its range, whole. */
    expect_read(fd, h, false, 70000, 0, ERROR_SUCCESS, 70000, 100000);
    /* A whole-content handle of the same uid sees blocks 1 and 2 only (private rows: the
     * partial list is not bound to the segment ID). */
    size_t wlen;
    uint8_t *wwire = make_ci(CI_VERSION_1, &wlen);
    uint64_t w = wire_open(fd, tag_b);
    wire_add_ci(fd, w, wwire, wlen, ERROR_SUCCESS);
    wire_complete(fd, w, ERROR_SUCCESS);
    expect_read(fd, w, false, 0, 10, PEERDIST_ERROR_MISSING_DATA, 0, 65536);
    expect_read(fd, w, false, 65536, 0, ERROR_SUCCESS, 65536, 131072);
    expect_read(fd, w, false, 196608, 10, PEERDIST_ERROR_MISSING_DATA, 196608,
        content_len - 196608);
    /* The flush removes the two labels and the two private blocks. */
    uint64_t labels = 0, bytes = 0;
    wire_flush_counted(fd, tag_a, &labels, &bytes);
    ck_assert_uint_eq(labels, 2);
    ck_assert_uint_eq(bytes, 131072);
    expect_read(fd, w, false, 65536, 10, PEERDIST_ERROR_MISSING_DATA, 65536, content_len - 65536);
    free(rwire);
    free(wwire);
    ci_info_free(ranged);
    ci_info_free(full);
    close(fd);
}
END_TEST

/* The same for V2: segments, not blocks, are what is listed. */
START_TEST(wire_ranged_add_data_v2)
{
    int fd = wire_connect();
    struct ci_info *full = make_full_ci(CI_VERSION_2), *ranged;
    ck_assert_int_gt(full->n_segments, 2);
    uint64_t s1 = full->segments[1].offset, e1 = s1 + full->segments[1].length;
    ck_assert_int_eq(ci_range(full, s1 + 1, 10, &ranged), 0); /* lists segment 1 only */
    ck_assert_uint_eq(ranged->n_segments, 1);
    uint8_t *rwire;
    size_t rlen;
    ck_assert_int_eq(ci_serialize(ranged, &rwire, &rlen), 0);
    uint64_t h = wire_open(fd, tag_a);
    wire_add_ci(fd, h, rwire, rlen, ERROR_SUCCESS);
    wire_complete(fd, h, ERROR_SUCCESS);
    wire_add_data(fd, h, 0, content, content_len, ERROR_SUCCESS);
    size_t wlen;
    uint8_t *wwire = make_ci(CI_VERSION_2, &wlen);
    uint64_t w = wire_open(fd, tag_b);
    wire_add_ci(fd, w, wwire, wlen, ERROR_SUCCESS);
    wire_complete(fd, w, ERROR_SUCCESS);
    expect_read(fd, w, false, 0, 10, PEERDIST_ERROR_MISSING_DATA, 0, s1);
    expect_read(fd, w, false, s1, 0, ERROR_SUCCESS, s1, e1 - s1);
    expect_read(fd, w, false, e1, 10, PEERDIST_ERROR_MISSING_DATA, e1, content_len - e1);
    free(rwire);
    free(wwire);
    ci_info_free(ranged);
    ci_info_free(full);
    close(fd);
}
END_TEST

START_TEST(wire_refusals)
{
    int fd = wire_connect();
    uint64_t h = wire_open(fd, tag_a);
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    wire_add_ci(fd, h, (const uint8_t[]){0x07, 0x00}, 2,
        PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED);
    wire_complete(fd, h, PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED);
    uint64_t h2 = wire_open(fd, tag_a);
    wire_add_ci(fd, h2, ci, cilen / 2, ERROR_SUCCESS); /* cut short */
    wire_complete(fd, h2, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO);
    /* A full block list that does not hash to HoD: refused at Complete. */
    uint64_t h3 = wire_open(fd, tag_a);
    ci[cilen - 1] ^= 1; /* the last block hash */
    wire_add_ci(fd, h3, ci, cilen, ERROR_SUCCESS);
    wire_complete(fd, h3, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO);
    free(ci);
    /* Cancel with nothing pending; unknown handles. */
    Peerdist__CancelRequest cr = PEERDIST__CANCEL_REQUEST__INIT;
    cr.handle = h;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CANCEL;
    req.cancel = &cr;
    call_free(fd, &req, PEERDIST_ERROR_OPERATION_NOTFOUND);
    cr.handle = 999;
    call_free(fd, &req, ERROR_INVALID_HANDLE);
    ck_assert(td_log_contains(&td, "content information refused"));
    close(fd);
}
END_TEST

START_TEST(wire_held_limit_tags_and_close_with_pending)
{
    int fd = wire_connect();
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    uint64_t h = wire_open(fd, tag_b);
    wire_add_ci(fd, h, ci, cilen, ERROR_SUCCESS);
    wire_complete(fd, h, ERROR_SUCCESS);
    /* Partial blocks are held until the rest arrives, then verified. */
    wire_add_data(fd, h, 10, content + 10, 100, ERROR_SUCCESS);
    expect_read(fd, h, false, 0, 10, PEERDIST_ERROR_MISSING_DATA, 0, content_len);
    wire_add_data(fd, h, 0, content, 10, ERROR_SUCCESS);
    wire_add_data(fd, h, 110, content + 110, 65536 - 110, ERROR_SUCCESS);
    expect_read(fd, h, false, 0, 0, ERROR_SUCCESS, 0, 65536);
    expect_read(fd, h, false, 65536, 10, PEERDIST_ERROR_MISSING_DATA, 65536, content_len - 65536);
    Peerdist__TagsRequest tq = PEERDIST__TAGS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_TAGS;
    req.tags = &tq;
    Peerdist__Reply *r = call(fd, &req, ERROR_SUCCESS);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_TAGS);
    ck_assert_uint_eq(r->tags->n_tags, 1);
    ck_assert_uint_eq(r->tags->tags[0]->blocks, 1);
    ck_assert_uint_eq(r->tags->tags[0]->bytes, 65536);
    ck_assert(memcmp(r->tags->tags[0]->tag.data, tag_b, 16) == 0);
    peerdist__reply__free_unpacked(r, NULL);
    /* AddData then Close at once: the AddData completes first (aborted or done), then close. */
    Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
    a.handle = h;
    a.offset = 65536;
    a.data.data = content + 65536;
    a.data.len = content_len - 65536;
    Peerdist__Request ar = PEERDIST__REQUEST__INIT;
    ar.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
    ar.add_data = &a;
    uint64_t add_id = raw_send(fd, &ar);
    Peerdist__CloseContentRequest cl = PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
    cl.handle = h;
    Peerdist__Request clr = PEERDIST__REQUEST__INIT;
    clr.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT;
    clr.close_content = &cl;
    uint64_t close_id = raw_send(fd, &clr);
    r = raw_recv(fd);
    ck_assert_uint_eq(r->id, add_id);
    ck_assert(r->status == ERROR_OPERATION_ABORTED || r->status == ERROR_SUCCESS);
    peerdist__reply__free_unpacked(r, NULL);
    r = raw_recv(fd);
    ck_assert_uint_eq(r->id, close_id);
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    peerdist__reply__free_unpacked(r, NULL);
    /* The held limit: 64 MiB of incomplete blocks per handle. Here content is small, so the
     * limit cannot be hit; a 1-byte AddData past the end is out of bounds instead. */
    uint64_t h3 = wire_open(fd, tag_b);
    wire_add_ci(fd, h3, ci, cilen, ERROR_SUCCESS);
    wire_complete(fd, h3, ERROR_SUCCESS);
    wire_add_data(fd, h3, content_len, content, 1, PEERDIST_ERROR_OUT_OF_BOUNDS);
    ck_assert(td_log_contains(&td, "out of bounds"));
    wire_flush(fd, tag_b);
    free(ci);
    close(fd);
}
END_TEST

/* ---- trust in stored bytes across restarts and users (issue 7, items 5 and 8) ---- */

/* The data file holding segment `seg` of ci (file_owner -1, or a uid's own file). */
static void data_file(const struct ci_info *ci, size_t seg, int64_t owner, char *buf, size_t len)
{
    char h[2 * CI_MAX_DIGEST + 1];
    for (size_t i = 0; i < ci->digest_len; i++)
        snprintf(h + 2 * i, 3, "%02x", ci->segments[seg].id[i]);
    if (owner == STORE_OWNER_SHARED)
        snprintf(buf, len, "%s/data/%.2s/%s", td.dir, h, h);
    else
        snprintf(buf, len, "%s/data/%.2s/%s.%lld", td.dir, h, h, (long long)owner);
}

/* Overwrites n bytes of a data file at off (the daemon stopped). */
static void scribble(const char *file, off_t off, size_t n)
{
    int fd = open(file, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    uint8_t junk[64];
    ck_assert_uint_le(n, sizeof(junk));
    for (size_t i = 0; i < n; i++)
        junk[i] = (uint8_t)(0xa5 ^ i);
    ck_assert_int_eq(pwrite(fd, junk, n, off), (ssize_t)n);
    close(fd);
}

/* A handle on `tag` with ci (serialized) completed. */
static uint64_t wire_open_ci(int fd, const uint8_t *tag, const uint8_t *ci, size_t cilen)
{
    uint64_t h = wire_open(fd, tag);
    wire_add_ci(fd, h, ci, cilen, ERROR_SUCCESS);
    wire_complete(fd, h, ERROR_SUCCESS);
    return h;
}

/* A read that must succeed with exactly content[off, off + len). */
static void expect_bytes(int fd, uint64_t h, uint64_t off, uint32_t len)
{
    Peerdist__Reply *r = wire_read(fd, h, false, off, len, ERROR_SUCCESS);
    ck_assert_uint_eq(r->read->offset, off);
    ck_assert_uint_eq(r->read->data.len, len);
    ck_assert(memcmp(r->read->data.data, content + off, len) == 0);
    peerdist__reply__free_unpacked(r, NULL);
}

static const char corrupt_line[] = "does not match its hash";

static struct {
    const char *sql;
    long long want;
} row_wait;

static bool row_count_is(void *arg)
{
    return td_sql(&td, row_wait.sql) == row_wait.want;
}

/* Waits until the SQL count (over the daemon's database) reaches want. */
static void wait_rows(const char *sql, long long want)
{
    row_wait.sql = sql;
    row_wait.want = want;
    ck_assert_msg(td_wait_until(row_count_is, NULL), "%s never gave %lld", sql, want);
}

/* Adds the whole content through a fresh connection and handle, then stops the daemon. */
static void store_then_stop(const uint8_t *ci, size_t cilen)
{
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_a, ci, cilen);
    wire_add_data(fd, h, 0, content, content_len, ERROR_SUCCESS);
    close(fd);
    ck_assert_int_eq(td_stop(&td), 0);
}

/*
 * 16 bytes of a data file overwritten while the daemon is stopped: after the restart the block
 * reads as missing (never as the wrong bytes), one line is logged, its row is gone, and a
 * later AddData of the right bytes makes it readable again.
 */
START_TEST(corrupted_block_is_missing_after_restart)
{
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    struct ci_info *full = make_full_ci(CI_VERSION_1);
    store_then_stop(ci, cilen);
    char file[512];
    data_file(full, 0, STORE_OWNER_SHARED, file, sizeof(file));
    scribble(file, 2 * 65536 + 100, 16);
    td_start(&td);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_b, ci, cilen);
    expect_read(fd, h, false, 2 * 65536 + 50, 1000, PEERDIST_ERROR_MISSING_DATA, 2 * 65536 + 50,
        65536 - 50);
    expect_bytes(fd, h, 65536, 65536);
    expect_read(fd, h, false, 2 * 65536, 10, PEERDIST_ERROR_MISSING_DATA, 2 * 65536, 65536);
    /* A read that reaches it from a good block stops before it. */
    expect_read(fd, h, false, 65536 + 10, 0, ERROR_SUCCESS, 65536 + 10, 65536 - 10);
    ck_assert_int_eq(td_log_count(&td, corrupt_line), 1);
    wait_rows("SELECT count(*) FROM blocks WHERE block = 2", 0);
    ck_assert_int_eq(td_sql(&td, "SELECT count(*) FROM blocks"), 4);
    /* The right bytes again: readable again, and the first read after that is the bytes. */
    wire_add_data(fd, h, 2 * 65536, content + 2 * 65536, 65536, ERROR_SUCCESS);
    expect_bytes(fd, h, 2 * 65536 - 5, 65536 + 10);
    expect_bytes(fd, h, 0, (uint32_t)content_len);
    ck_assert_int_eq(td_log_count(&td, corrupt_line), 1);
    close(fd);
    ci_info_free(full);
    free(ci);
}
END_TEST

/* The same for a V2 segment: the whole segment is what is checked, and what goes missing. */
START_TEST(corrupted_v2_segment_is_missing_after_restart)
{
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_2, &cilen);
    struct ci_info *full = make_full_ci(CI_VERSION_2);
    ck_assert_uint_gt(full->n_segments, 2);
    uint64_t s1 = full->segments[1].offset;
    uint32_t l1 = full->segments[1].length;
    store_then_stop(ci, cilen);
    char file[512];
    data_file(full, 1, STORE_OWNER_SHARED, file, sizeof(file));
    scribble(file, l1 - 16, 16);
    td_start(&td);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_b, ci, cilen);
    expect_read(fd, h, false, s1, 10, PEERDIST_ERROR_MISSING_DATA, s1, l1);
    expect_bytes(fd, h, 0, (uint32_t)s1);
    expect_read(fd, h, false, 0, 0, ERROR_SUCCESS, 0, s1);
    ck_assert_int_eq(td_log_count(&td, corrupt_line), 1);
    wait_rows("SELECT count(*) FROM blocks", (long long)full->n_segments - 1);
    wire_add_data(fd, h, s1, content + s1, l1, ERROR_SUCCESS);
    expect_bytes(fd, h, 0, (uint32_t)content_len);
    close(fd);
    ci_info_free(full);
    free(ci);
}
END_TEST

/*
 * Stream reads sent back to back while blocks wait for their first check keep their order:
 * each starts where the one before it ended, the bad block is reported missing and stepped
 * over, and a block read sent in between is answered on its own. Replies come in any order.
 */
START_TEST(stream_reads_keep_the_cursor_while_blocks_are_checked)
{
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    struct ci_info *full = make_full_ci(CI_VERSION_1);
    store_then_stop(ci, cilen);
    char file[512];
    data_file(full, 0, STORE_OWNER_SHARED, file, sizeof(file));
    scribble(file, 2 * 65536 + 7, 16);
    td_start(&td);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_b, ci, cilen);
    enum { N = 10 };
    uint64_t ids[N];
    bool stream[N];
    for (int i = 0; i < N; i++) {
        Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
        a.handle = h;
        a.stream = stream[i] = i != 3;
        a.offset = 250000; /* the block read */
        a.max_bytes = 50000;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_READ;
        req.read = &a;
        ids[i] = raw_send(fd, &req);
    }
    Peerdist__Reply *rep[N] = {0};
    for (int k = 0; k < N; k++) {
        Peerdist__Reply *r = raw_recv(fd);
        int i = (int)(r->id - ids[0]);
        ck_assert(i >= 0 && i < N && !rep[i]);
        rep[i] = r;
    }
    /* The stream: [0, 50000) [50000, 100000) [100000, 131072) then block 2 missing, then on. */
    uint64_t cursor = 0;
    const uint64_t bad_lo = 2 * 65536, bad_hi = 3 * 65536;
    for (int i = 0; i < N; i++) {
        Peerdist__Reply *r = rep[i];
        ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_READ);
        if (!stream[i]) {
            ck_assert_uint_eq(r->status, ERROR_SUCCESS);
            ck_assert_uint_eq(r->read->offset, 250000);
            ck_assert(memcmp(r->read->data.data, content + 250000, r->read->data.len) == 0);
            continue;
        }
        ck_assert_uint_eq(r->read->offset, cursor);
        if (cursor >= content_len) {
            ck_assert_uint_eq(r->status, PEERDIST_ERROR_NO_MORE);
        } else if (cursor == bad_lo) {
            ck_assert_uint_eq(r->status, PEERDIST_ERROR_MISSING_DATA);
            ck_assert_uint_eq(r->read->length, bad_hi - bad_lo);
            cursor = bad_hi;
        } else {
            ck_assert_uint_eq(r->status, ERROR_SUCCESS);
            uint64_t want = content_len - cursor < 50000 ? content_len - cursor : 50000;
            if (cursor < bad_lo && cursor + want > bad_lo)
                want = bad_lo - cursor;
            ck_assert_uint_eq(r->read->data.len, want);
            ck_assert(memcmp(r->read->data.data, content + cursor, want) == 0);
            cursor += want;
        }
    }
    ck_assert_uint_eq(cursor, content_len);
    for (int i = 0; i < N; i++)
        peerdist__reply__free_unpacked(rep[i], NULL);
    ck_assert_int_eq(td_log_count(&td, corrupt_line), 1);
    close(fd);
    ci_info_free(full);
    free(ci);
}
END_TEST

/* Blocks are checked once per start: not those AddData wrote this run, then once each. */
START_TEST(blocks_are_checked_once_per_start)
{
    static const char checked[] = "on their first read since start";
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_a, ci, cilen);
    wire_add_data(fd, h, 0, content, content_len, ERROR_SUCCESS);
    expect_bytes(fd, h, 0, (uint32_t)content_len);
    ck_assert_int_eq(td_log_count(&td, checked), 0); /* verified as AddData wrote them */
    close(fd);
    ck_assert_int_eq(td_stop(&td), 0);
    td_start(&td);
    fd = wire_connect();
    h = wire_open_ci(fd, tag_b, ci, cilen);
    expect_bytes(fd, h, 100, 1000);
    ck_assert_int_eq(td_log_count(&td, checked), 1);
    expect_bytes(fd, h, 10, 65000); /* block 0 again: known good now */
    ck_assert_int_eq(td_log_count(&td, checked), 1);
    expect_bytes(fd, h, 0, (uint32_t)content_len); /* blocks 1 to 4: one more check */
    ck_assert_int_eq(td_log_count(&td, checked), 2);
    expect_bytes(fd, h, 0, (uint32_t)content_len);
    ck_assert_int_eq(td_log_count(&td, checked), 2);
    close(fd);
    free(ci);
}
END_TEST

/* A read covers at most 256 blocks: 1000-byte V2 segments give 256,000 bytes of a 1 MiB read. */
START_TEST(a_read_covers_at_most_256_segments)
{
    enum { SEGS = 300, LEN = 1000 };
    uint32_t lengths[SEGS];
    for (int i = 0; i < SEGS; i++)
        lengths[i] = LEN;
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA512_TRUNC, "test-passphrase", 15, &ks),
        0);
    struct ci_gen *g = ci_gen_new_v2_imposed(&ks, lengths, SEGS);
    ck_assert_int_eq(ci_gen_feed(g, content, SEGS * LEN), 0);
    struct ci_info *info;
    ck_assert_int_eq(ci_gen_finish(g, &info), 0);
    ci_gen_free(g);
    ck_assert_uint_eq(info->n_segments, SEGS);
    uint8_t *ci;
    size_t cilen;
    ck_assert_int_eq(ci_serialize(info, &ci, &cilen), 0);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_a, ci, cilen);
    wire_add_data(fd, h, 0, content, SEGS * LEN, ERROR_SUCCESS);
    for (uint64_t off = 0; off < 1000; off += 500) { /* from inside a segment: to the 256th's end */
        Peerdist__Reply *r = wire_read(fd, h, false, off, 1 << 20, ERROR_SUCCESS);
        ck_assert_uint_eq(r->read->data.len, 256 * LEN - off);
        ck_assert(memcmp(r->read->data.data, content + off, r->read->data.len) == 0);
        peerdist__reply__free_unpacked(r, NULL);
    }
    expect_read(fd, h, false, 0, 0, ERROR_SUCCESS, 0, SEGS * LEN); /* a query: all of it */
    close(fd);
    free(ci);
    ci_info_free(info);
}
END_TEST

/*
 * Reads waiting for a first check (or behind a stream read that does) have no reply queued yet,
 * so the output limit does not hold their sender back: past CONTENT_CONN_READS_MAX per
 * connection, reads are refused, and the rest are answered in order.
 */
START_TEST(waiting_reads_are_bounded_per_connection)
{
    /*
     * N stream reads of one block each on one handle, every block unchecked since the start:
     * each read waits for a worker, and the later ones wait behind it (the stream's order).
     * The daemon takes a turn's worth of frames at a time while the checks complete one by
     * one, so the queue passes MAX: the first MAX are always taken, some later ones refused.
     */
    enum { N = 600, MAX = 256 };
    free(content);
    content_len = (size_t)N * 65536 + 17;
    content = malloc(content_len);
    for (size_t i = 0; i < content_len; i++)
        content[i] = (uint8_t)(i * 2654435761u >> 13);
    size_t cilen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    int sfd = wire_connect();
    uint64_t sh = wire_open_ci(sfd, tag_a, ci, cilen);
    for (size_t off = 0; off < content_len; off += 1u << 20)
        wire_add_data(sfd, sh, off, content + off,
            content_len - off < (1u << 20) ? content_len - off : (1u << 20), ERROR_SUCCESS);
    close(sfd);
    ck_assert_int_eq(td_stop(&td), 0);
    td_start(&td);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_b, ci, cilen);
    /* All N frames in one write, while the daemon is stopped: it finds them all at once. */
    static uint8_t frames[N * 64];
    size_t len = 0;
    uint64_t first = next_id;
    for (int i = 0; i < N; i++) {
        Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
        a.handle = h;
        a.stream = true;
        a.max_bytes = 65536;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_READ;
        req.read = &a;
        req.id = next_id++;
        ck_assert_uint_le(len + frame_size(&req.base), sizeof(frames));
        len += frame_pack(&req.base, frames + len);
    }
    td_pause(&td);
    ck_assert_int_eq(write(fd, frames, len), (ssize_t)len);
    td_resume(&td);
    static uint32_t status[N];
    static uint64_t offset[N];
    for (int k = 0; k < N; k++) {
        Peerdist__Reply *r = raw_recv(fd);
        ck_assert(r->id >= first && r->id < first + N);
        status[r->id - first] = r->status;
        offset[r->id - first] = r->body_case == PEERDIST__REPLY__BODY_READ ? r->read->offset : 0;
        if (r->status == ERROR_SUCCESS)
            ck_assert(memcmp(r->read->data.data, content + r->read->offset, 65536) == 0);
        peerdist__reply__free_unpacked(r, NULL);
    }
    /* The first MAX are taken; the stream's cursor moves by each read taken, in order. */
    unsigned refused = 0;
    uint64_t next = 0;
    for (int i = 0; i < N; i++) {
        if (i < MAX)
            ck_assert_uint_eq(status[i], ERROR_SUCCESS);
        if (status[i] == ERROR_SUCCESS) {
            ck_assert_uint_eq(offset[i], next);
            next += 65536;
        } else {
            ck_assert_uint_eq(status[i], ERROR_NOT_ENOUGH_MEMORY);
            refused++;
        }
    }
    ck_assert_uint_gt(refused, 0);
    ck_assert_int_eq(td_log_count(&td, "reads waiting for their blocks' first check"), 1);
    close(fd);
    free(ci);
}
END_TEST

/* Ranged content information listing block b only, with the hash of `forged` for it. */
static uint8_t *forged_ranged_ci(const struct ci_info *full, uint32_t b, const uint8_t *forged,
    size_t *len)
{
    struct ci_info *r;
    ck_assert_int_eq(ci_range(full, (uint64_t)b * 65536, 65536, &r), 0);
    ck_assert_uint_eq(r->n_segments, 1);
    ck_assert_uint_eq(r->segments[0].n_blocks, 1);
    if (forged)
        ck_assert_int_eq(ci_hash(full->alg, forged, 65536, r->segments[0].block_hashes), 0);
    uint8_t *out;
    ck_assert_int_eq(ci_serialize(r, &out, len), 0);
    ci_info_free(r);
    return out;
}

/*
 * One user promotes its honest private block (a full list arrives), then writes other bytes
 * over it through a forged partial list: the shared row named the overwritten bytes, and must
 * not serve them to anybody.
 */
/*
 * The forger's handle opened after the reader read (its open reloads every slot map) and
 * before (the reader's map of the slot outlives the open, and the forger's AddData, which
 * replaces the shared row, must still make it reload).
 */
START_TEST(overwriting_a_promoted_block_never_serves_the_new_bytes)
{
    for (int forger_first = 0; forger_first < 2; forger_first++) {
        struct ci_info *full = make_full_ci(CI_VERSION_1);
        size_t cilen, hlen, flen;
        uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
        uint8_t forged[65536];
        memset(forged, 0x66, sizeof(forged));
        uint8_t *honest = forged_ranged_ci(full, 0, NULL, &hlen);
        uint8_t *bad = forged_ranged_ci(full, 0, forged, &flen);
        int fd = wire_connect();
        uint64_t h1 = wire_open_ci(fd, tag_a, honest, hlen);
        wire_add_data(fd, h1, 0, content, 65536, ERROR_SUCCESS); /* private: a partial list */
        uint64_t h2 = wire_open_ci(fd, tag_b, ci, cilen);        /* the full list: promoted */
        uint64_t h3 = forger_first ? wire_open_ci(fd, tag_a, bad, flen) : 0;
        expect_bytes(fd, h2, 0, 65536);
        if (!forger_first)
            h3 = wire_open_ci(fd, tag_a, bad, flen);
        wire_add_data(fd, h3, 0, forged, sizeof(forged), ERROR_SUCCESS);
        /* Every reader through the real hash: never the forged bytes. */
        expect_read(fd, h2, false, 0, 65536, PEERDIST_ERROR_MISSING_DATA, 0, content_len);
        Peerdist__Reply *r;
        /* The forger's own handle reads what it verified. */
        r = wire_read(fd, h3, false, 0, 65536, ERROR_SUCCESS);
        ck_assert(memcmp(r->read->data.data, forged, 65536) == 0);
        peerdist__reply__free_unpacked(r, NULL);
        /* The next round starts from an empty cache. */
        wire_flush(fd, tag_a);
        wire_flush(fd, tag_b);
        close(fd);
        free(honest);
        free(bad);
        free(ci);
        ci_info_free(full);
    }
}
END_TEST

/* In a child as uid 65534: forges block 0 (private) and adds the real block 1 (shared). */
static int other_user_labels(const uint8_t *ci, size_t cilen, const uint8_t *bad, size_t flen,
    const uint8_t *forged)
{
    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    int fd = wire_connect();
    uint64_t hb = wire_open_ci(fd, tag_b, bad, flen);
    wire_add_data(fd, hb, 0, forged, 65536, ERROR_SUCCESS);
    uint64_t hf = wire_open_ci(fd, tag_b, ci, cilen);
    wire_add_data(fd, hf, 65536, content + 65536, 65536, ERROR_SUCCESS);
    close(fd);
    return 0;
}

/*
 * uid 65534's label on its own forged, privately verified block 0 must not keep root's shared
 * block 0 readable once root flushed its tag; its label on the shared block 1 does keep that.
 */
START_TEST(forged_private_row_keeps_no_shared_block_alive)
{
    struct ci_info *full = make_full_ci(CI_VERSION_1);
    size_t cilen, flen;
    uint8_t *ci = make_ci(CI_VERSION_1, &cilen);
    uint8_t forged[65536];
    memset(forged, 0x66, sizeof(forged));
    uint8_t *bad = forged_ranged_ci(full, 0, forged, &flen);
    int fd = wire_connect();
    uint64_t h = wire_open_ci(fd, tag_a, ci, cilen);
    wire_add_data(fd, h, 0, content, content_len, ERROR_SUCCESS);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(other_user_labels(ci, cilen, bad, flen, forged));
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    wire_flush(fd, tag_a);
    uint64_t h2 = wire_open_ci(fd, tag_a, ci, cilen);
    expect_read(fd, h2, false, 0, 10, PEERDIST_ERROR_MISSING_DATA, 0, 65536);
    expect_bytes(fd, h2, 65536, 65536);
    expect_read(fd, h2, false, 2 * 65536, 10, PEERDIST_ERROR_MISSING_DATA, 2 * 65536,
        content_len - 2 * 65536);
    /* The forged row stayed uid 65534's own; the labels say which row each keeps. */
    ck_assert_int_eq(td_sql(&td, "SELECT count(*) FROM blocks WHERE owner = 65534"), 1);
    close(fd);
    free(bad);
    free(ci);
    ci_info_free(full);
}
END_TEST

/* ---- spare files ---- */

static const uint8_t seg2[32] = {0x22}, seg3[32] = {0x33}, seg_small[32] = {0x44};

/* Writes and syncs n whole slots of seg (filled with fill) through bs_open_write(want). */
static void write_slots(const uint8_t *seg, uint32_t n, uint8_t fill, uint64_t want)
{
    uint8_t buf[BS_SLOT_SIZE];
    memset(buf, fill, sizeof(buf));
    int fd = bs_open_write(bs, seg, 32, STORE_OWNER_SHARED, want);
    ck_assert_int_ge(fd, 0);
    for (uint32_t b = 0; b < n; b++)
        ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)b * BS_SLOT_SIZE),
            (ssize_t)sizeof(buf));
    ck_assert_int_eq(fdatasync(fd), 0);
    close(fd);
}

/* Rows and uid 1's labels under tag for slots [0, n) of seg. */
static void put_rows(const uint8_t *seg, uint32_t n, const uint8_t *tag)
{
    uint8_t hash[32] = {0};
    ck_assert_int_eq(store_begin(st), 0);
    for (uint32_t b = 0; b < n; b++) {
        hash[0] = (uint8_t)b;
        ck_assert_int_eq(store_block_put(st, seg, 32, b, STORE_OWNER_SHARED, hash, sizeof(hash),
                             BS_SLOT_SIZE, STORE_OWNER_SHARED),
            0);
        ck_assert_int_eq(store_label_put(st, 1, tag, seg, 32, b, BS_SLOT_SIZE), 0);
    }
    ck_assert_int_eq(store_commit(st), 0);
}

/* Flushes uid 1's tag and waits (the block store's worker pool running) for its reclaim. */
static void flush_and_reclaim(const uint8_t *tag)
{
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 1, tag, &res), 0);
    for (int i = 0; i < 10000 && bs_reclaim_pending(bs) > 0; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK); /* the jobs' done callbacks */
        usleep(1000);
    }
    ck_assert_uint_eq(bs_reclaim_pending(bs), 0);
}

/* A 2 MiB data file of seg, labelled by tag, flushed: a spare once reclaim has run. */
static void freed_file(const uint8_t *seg, uint8_t fill, const uint8_t *tag)
{
    write_slots(seg, 32, fill, 0);
    put_rows(seg, 32, tag);
    flush_and_reclaim(tag);
}

static struct bs_spare_stats spares(void)
{
    struct bs_spare_stats ss;
    bs_spare_stats(bs, &ss);
    return ss;
}

static uint64_t disk_bytes(const uint8_t *seg)
{
    char file[4096];
    bs_file_path(bs, seg, 32, STORE_OWNER_SHARED, file, sizeof(file));
    struct stat sb;
    ck_assert_int_eq(stat(file, &sb), 0);
    return (uint64_t)sb.st_blocks * 512;
}

/* Files in the spare folder (0 or more). */
static int spare_dir_entries(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s/data/" BS_SPARE_DIR "' | wc -l) -eq 0", dir);
    return system(cmd) == 0 ? 0 : 1;
}

/* Waits for the spares a worker releases to leave the folder. */
static void spare_dir_empties(void)
{
    for (int i = 0; i < 10000 && spare_dir_entries() > 0; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    ck_assert_int_eq(spare_dir_entries(), 0);
}

/*
 * A data file freed whole becomes a spare (a small one does not), and the next new file of
 * a segment at least as long is that spare renamed into place: its blocks are allocated
 * already. A segment too short for it gets a new file. The old bytes in the slots the new
 * segment did not fill are punched when the block store closes (the tidy), except a slot a
 * write has pinned.
 */
START_TEST(freed_files_become_spares_for_new_segments)
{
    bs_spare_limit(bs, 8u << 20);
    write_slots(seg1, 32, 0x11, 0); /* 2 MiB */
    put_rows(seg1, 32, tag_a);
    write_slots(seg_small, 4, 0x12, 0); /* 256 KiB long: under BS_SPARE_MIN_BYTES */
    put_rows(seg_small, 4, tag_a);
    /* ... though 2 MiB on disk (as a filesystem that allocates ahead may make it): a V2
     * segment's file, whose one block a tidy would take for 64 KiB, is never kept. */
    char small[4096];
    bs_file_path(bs, seg_small, 32, STORE_OWNER_SHARED, small, sizeof(small));
    int sfd = open(small, O_WRONLY);
    ck_assert_int_ge(sfd, 0);
    ck_assert_int_eq(fallocate(sfd, FALLOC_FL_KEEP_SIZE, 0, 2u << 20), 0);
    close(sfd);
    flush_and_reclaim(tag_a);
    struct bs_spare_stats ss = spares();
    ck_assert_uint_eq(ss.files, 1);
    ck_assert_uint_eq(ss.kept, 1);
    ck_assert_uint_ge(ss.bytes, 2u << 20);
    char file[4096];
    struct stat sb;
    file_of(STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert_int_eq(stat(file, &sb), -1); /* seg1's name is free */
    bs_file_path(bs, seg_small, 32, STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert_int_eq(stat(file, &sb), -1); /* and the small file is gone */
    ck_assert_int_eq(spare_dir_entries(), 1);

    write_slots(seg3, 1, 0x33, 1u << 20); /* at most 1 MiB: the 2 MiB spare does not fit */
    ck_assert_uint_le(disk_bytes(seg3), BS_SLOT_SIZE + 4096);
    ck_assert_uint_eq(spares().files, 1);

    write_slots(seg2, 1, 0x22, 2u << 20); /* fits: block 0 overwrites, 1..31 are old bytes */
    ck_assert_uint_ge(disk_bytes(seg2), 2u << 20);
    ss = spares();
    ck_assert_uint_eq(ss.files, 0);
    ck_assert_uint_eq(ss.bytes, 0);
    ck_assert_uint_eq(ss.taken, 1);
    ck_assert_int_eq(spare_dir_entries(), 0);
    put_rows(seg2, 1, tag_b);
    uint8_t b;
    ck_assert_int_eq(bs_read(bs, seg2, 32, STORE_OWNER_SHARED, 100, &b, 1), 0);
    ck_assert_uint_eq(b, 0x22);

    /* A write under way into slot 7 (pinned): the tidy leaves that slot to it. */
    ck_assert_int_eq(bs_pin(bs, seg2, 32, STORE_OWNER_SHARED, 7), 0);
    close_all(); /* the tidy: slots 1..31 of seg2 held seg1's bytes and no row */
    open_all();
    bs_file_path(bs, seg2, 32, STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert(slot_has_data(file, 0));
    ck_assert(slot_has_data(file, 7));
    for (uint32_t k = 1; k < 32; k++)
        ck_assert_msg(k == 7 || !slot_has_data(file, k), "slot %u still holds the spare's bytes",
            k);
}
END_TEST

/*
 * Spares outlive a restart (what else is in their folder goes), a nearly full filesystem
 * releases them, the pool's limit bounds them (lowering it releases the excess), and with no
 * room nothing is kept.
 */
START_TEST(spares_are_adopted_at_start_and_bounded)
{
    bs_spare_limit(bs, 8u << 20);
    freed_file(seg1, 0x11, tag_a);
    ck_assert_uint_eq(spares().files, 1);
    char junk[256];
    snprintf(junk, sizeof(junk), "%s/data/" BS_SPARE_DIR "/junk", dir);
    FILE *f = fopen(junk, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    close_all();
    open_all();
    struct bs_spare_stats ss = spares();
    ck_assert_uint_eq(ss.files, 1);
    ck_assert_uint_ge(ss.bytes, 2u << 20);
    struct stat sb;
    ck_assert_int_eq(stat(junk, &sb), -1);

    bs_spare_drop(bs); /* the filesystem is nearly full: every spare goes */
    ck_assert_uint_eq(spares().files, 0);
    spare_dir_empties();

    bs_spare_limit(bs, 8u << 20);
    freed_file(seg3, 0x33, tag_a);
    ck_assert_uint_eq(spares().files, 1);
    bs_spare_limit(bs, 1u << 20); /* under the file's size: released */
    ck_assert_uint_eq(spares().files, 0);
    spare_dir_empties();

    bs_spare_limit(bs, 0); /* none kept: a freed file is released */
    uint64_t kept = spares().kept;
    freed_file(seg2, 0x22, tag_b);
    ss = spares();
    ck_assert_uint_eq(ss.files, 0);
    ck_assert_uint_eq(ss.kept, kept);
    ck_assert_int_eq(spare_dir_entries(), 0);
    char file[4096];
    bs_file_path(bs, seg2, 32, STORE_OWNER_SHARED, file, sizeof(file));
    ck_assert_int_eq(stat(file, &sb), -1);
}
END_TEST

/* A file made from a spare whose every slot a commit has given a row holds none of the
 * spare's bytes: it leaves the list of files waiting for a tidy, which is bounded. */
START_TEST(a_spare_filled_whole_needs_no_tidy)
{
    bs_spare_limit(bs, 8u << 20);
    freed_file(seg1, 0x11, tag_a);
    write_slots(seg2, 32, 0x22, 2u << 20);
    ck_assert_uint_eq(spares().taken, 1);
    ck_assert_uint_eq(spares().untidy, 1);
    struct store_slot sl[32];
    for (uint32_t b = 0; b < 32; b++)
        sl[b] = (struct store_slot){.segment_id = {0x22},
            .segment_id_len = 32,
            .file_owner = STORE_OWNER_SHARED,
            .block = b};
    bs_puts_committed(bs, sl, 31);
    bs_puts_committed(bs, sl, 1); /* slot 0 again: counted once */
    ck_assert_uint_eq(spares().untidy, 1);
    bs_puts_committed(bs, sl + 31, 1);
    ck_assert_uint_eq(spares().untidy, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("content_store");
    TCase *tc = tcase_create("blockstore");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, block_stored_and_read_back);
    tcase_add_test(tc, private_rows_serve_their_uid_until_promoted);
    tcase_add_test(tc, flush_deletes_unreferenced_blocks_and_keeps_shared);
    tcase_add_test(tc, rolled_back_flush_keeps_blocks_and_bytes);
    tcase_add_test(tc, private_block_kept_by_its_uid_only);
    tcase_add_test(tc, reconcile_drops_rows_without_bytes_and_files_without_rows);
    tcase_add_test(tc, flush_of_one_gib_tag);
    tcase_add_test(tc, forged_private_label_does_not_keep_shared_row);
    tcase_add_test(tc, shared_label_keeps_shared_row);
    tcase_add_test(tc, promotion_moves_labels_to_the_shared_row);
    tcase_add_test(tc, overwritten_slot_drops_rows_of_another_hash);
    tcase_add_test(tc, check_verdicts_stand_unless_a_write_intervened);
    tcase_add_test(tc, committed_sole_writes_count_as_checked);
    tcase_add_test(tc, known_files_are_bounded);
    tcase_add_test(tc, freed_files_become_spares_for_new_segments);
    tcase_add_test(tc, spares_are_adopted_at_start_and_bounded);
    tcase_add_test(tc, a_spare_filled_whole_needs_no_tidy);
    suite_add_tcase(s, tc);
    TCase *tw = tcase_create("wire");
    tcase_add_checked_fixture(tw, wire_setup, wire_teardown);
    tcase_set_timeout(tw, 120);
    tcase_add_test(tw, wire_v1);
    tcase_add_test(tw, wire_v2);
    tcase_add_test(tw, wire_ranged_add_data_stores_listed_blocks_only);
    tcase_add_test(tw, wire_ranged_add_data_v2);
    tcase_add_test(tw, wire_refusals);
    tcase_add_test(tw, wire_held_limit_tags_and_close_with_pending);
    suite_add_tcase(s, tw);
    TCase *tt = tcase_create("trust");
    tcase_add_checked_fixture(tt, wire_setup, wire_teardown);
    tcase_set_timeout(tt, 120);
    tcase_add_test(tt, corrupted_block_is_missing_after_restart);
    tcase_add_test(tt, corrupted_v2_segment_is_missing_after_restart);
    tcase_add_test(tt, stream_reads_keep_the_cursor_while_blocks_are_checked);
    tcase_add_test(tt, blocks_are_checked_once_per_start);
    tcase_add_test(tt, overwriting_a_promoted_block_never_serves_the_new_bytes);
    tcase_add_test(tt, forged_private_row_keeps_no_shared_block_alive);
    tcase_add_test(tt, a_read_covers_at_most_256_segments);
    tcase_add_test(tt, waiting_reads_are_bounded_per_connection);
    suite_add_tcase(s, tt);
    return check_run(s);
}
