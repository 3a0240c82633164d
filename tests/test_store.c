/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - unit tests of the store: migrations (fresh, partial,
 * refusing a newer database, a failing migration rolls back) and the
 * label flush, which must remove exactly one (uid, tag)'s rows; the walk over the labels'
 * (uid, tag) keys and the flush filter built from it (tagfilter.h); a connection with a WAL
 * hook never checkpoints, and the WAL starts over once a checkpoint elsewhere copied it all.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "tagfilter.h"
#include "check_run.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/pdstore.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cache.db", dir);
}

static void teardown(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const uint8_t tag_a[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t tag_b[16] = {0xaa};
static const uint8_t seg1[32] = {0x11};
static const uint8_t seg2[32] = {0x22};

START_TEST(fresh_database_is_migrated)
{
    struct store *st;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(store_user_version(store_db(st)), schema_migration_count);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(store_db(st), "PRAGMA journal_mode", -1, &s, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    store_close(st);
    /* Re-opening applies nothing and keeps the version. */
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(store_user_version(store_db(st)), schema_migration_count);
    store_close(st);
}
END_TEST

START_TEST(newer_database_is_refused)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", schema_migration_count + 1);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    char err[256] = "";
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "newer"));
    /* Never migrated down: the version is untouched. */
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(store_user_version(db), schema_migration_count + 1);
    sqlite3_close(db);
}
END_TEST

START_TEST(migrations_apply_in_order_and_fail_atomically)
{
    const struct schema_migration ms[] = {
        {1, "001_a.sql", "CREATE TABLE a (x INTEGER);"},
        {2, "002_b.sql", "CREATE TABLE b (y INTEGER);"},
        {3, "003_bad.sql", "CREATE TABLE c (z INTEGER); THIS IS NOT SQL;"},
    };
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(store_migrate(db, ms, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(store_user_version(db), 1);
    /* A later daemon knows more migrations: only the new ones run. */
    ck_assert_int_eq(store_migrate(db, ms, 2, err, sizeof(err)), 0);
    ck_assert_int_eq(store_user_version(db), 2);
    /* A failing migration leaves neither its table nor a new version behind. */
    ck_assert_int_eq(store_migrate(db, ms, 3, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "003_bad.sql"));
    ck_assert_int_eq(store_user_version(db), 2);
    ck_assert_int_ne(sqlite3_exec(db, "SELECT * FROM c", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}
END_TEST

START_TEST(flush_removes_only_that_uid_and_tag)
{
    struct store *st;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    for (uint32_t b = 0; b < 10; b++) {
        ck_assert_int_eq(store_label_put(st, 1000, tag_a, seg1, sizeof(seg1), b, 100), 0);
        ck_assert_int_eq(store_label_put(st, 1000, tag_b, seg1, sizeof(seg1), b, 100), 0);
        ck_assert_int_eq(store_label_put(st, 1001, tag_a, seg2, sizeof(seg2), b, 100), 0);
    }
    /* Adding a label twice is idempotent. */
    ck_assert_int_eq(store_label_put(st, 1000, tag_a, seg1, sizeof(seg1), 3, 100), 0);
    ck_assert_int_eq(store_tag_labels(st, 1000, tag_a), 10);

    struct store_flush_result res = {99, 99};
    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_uint_eq(res.labels_removed, 10);
    ck_assert_int_eq(store_tag_labels(st, 1000, tag_a), 0);
    ck_assert_int_eq(store_tag_labels(st, 1000, tag_b), 10); /* another tag of the same uid */
    ck_assert_int_eq(store_tag_labels(st, 1001, tag_a), 10); /* the same tag of another uid */

    ck_assert_int_eq(store_flush_tag(st, 1000, tag_a, &res), 0);
    ck_assert_uint_eq(res.labels_removed, 0); /* flushing an empty tag is fine */
    store_close(st);
}
END_TEST

START_TEST(flush_in_a_rolled_back_transaction_keeps_labels)
{
    struct store *st;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(store_label_put(st, 5, tag_a, seg1, sizeof(seg1), 0, 100), 0);
    ck_assert_int_eq(store_begin(st), 0);
    struct store_flush_result res;
    ck_assert_int_eq(store_flush_tag(st, 5, tag_a, &res), 0);
    ck_assert_uint_eq(res.labels_removed, 1);
    store_rollback(st);
    ck_assert_int_eq(store_tag_labels(st, 5, tag_a), 1);
    ck_assert_int_eq(store_begin(st), 0);
    ck_assert_int_eq(store_flush_tag(st, 5, tag_a, &res), 0);
    ck_assert_int_eq(store_commit(st), 0);
    store_close(st);
    /* Committed means durable across a re-open. */
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(store_tag_labels(st, 5, tag_a), 0);
    store_close(st);
}
END_TEST

START_TEST(bad_tag_length_rejected_by_schema)
{
    struct store *st;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_ne(
        sqlite3_exec(store_db(st),
            "INSERT INTO labels (uid, tag, segment_id, block) VALUES (1, x'00', x'11', 0)", NULL,
            NULL, NULL),
        SQLITE_OK);
    store_close(st);
}
END_TEST

static long long sql_value(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql,
        sqlite3_errmsg(db));
    long long v = -99;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void sql_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg);
}

/*
 * Version 3: each label names the row it keeps (labels.row_owner). A label from before names
 * the shared row of its block where there is one, else the labelling uid's own; rows that
 * share a slot of a data file with a row of another hash cannot all match its bytes, and go
 * with their labels.
 */
START_TEST(labels_name_their_row_after_migration)
{
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(store_migrate(db, schema_migrations, 2, err, sizeof(err)), 0);
    sql_exec(db,
        "INSERT INTO blocks VALUES (x'11', 0, -1, x'aa', 10, -1), (x'11', 1, 5, x'bb', 10, 5),"
        " (x'22', 0, 6, x'cc', 10, 6), (x'11', 2, -1, x'dd', 10, 5), (x'11', 2, 5, x'ee', 10, 5)");
    sql_exec(db,
        "INSERT INTO labels (uid, tag, segment_id, block, bytes) VALUES"
        " (5, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', x'11', 0, 10),"
        " (5, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', x'11', 1, 10),"
        " (7, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', x'11', 1, 10),"
        " (6, x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', x'22', 0, 10),"
        " (5, x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', x'11', 2, 10),"
        " (8, x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', x'33', 0, 0)");
    sqlite3_close(db);
    struct store *st;
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    db = store_db(st);
    ck_assert_int_eq(store_user_version(db), schema_migration_count);
    ck_assert_int_eq(sql_value(db, "SELECT row_owner FROM labels WHERE uid = 5 AND block = 0"), -1);
    ck_assert_int_eq(sql_value(db,
                         "SELECT row_owner FROM labels WHERE uid = 5 AND segment_id = x'11' AND "
                         "block = 1"),
        5);
    ck_assert_int_eq(sql_value(db, "SELECT row_owner FROM labels WHERE uid = 7"), 7);
    ck_assert_int_eq(sql_value(db, "SELECT row_owner FROM labels WHERE uid = 6"), 6);
    ck_assert_int_eq(sql_value(db, "SELECT row_owner FROM labels WHERE uid = 8"), 8);
    /* Block 2's two rows named one slot with two hashes: both go, and the label with them. */
    ck_assert_int_eq(sql_value(db, "SELECT count(*) FROM blocks WHERE block = 2"), 0);
    ck_assert_int_eq(sql_value(db, "SELECT count(*) FROM labels WHERE block = 2"), 0);
    ck_assert_int_eq(sql_value(db, "SELECT count(*) FROM blocks"), 3);
    ck_assert_int_eq(sql_value(db, "SELECT count(*) FROM labels"), 5);
    /* A label keeps the shared row or its own uid's, never another uid's. */
    ck_assert_int_ne(sqlite3_exec(db,
                         "INSERT INTO labels (uid, tag, segment_id, block, row_owner) VALUES "
                         "(5, x'0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c', x'22', 0, 6)",
                         NULL, NULL, NULL),
        SQLITE_OK);
    store_close(st);
}
END_TEST

/*
 * The walk over the labels' (uid, tag) keys meets each once, in key order, and sets only the
 * pairs a client can flush; rows written by hand with other types (a text uid or tag, a real
 * uid, uids no uid_t has) are passed, and never make it skip a real pair or go round again.
 */
START_TEST(label_walk_meets_each_key_once_in_order)
{
    struct store *st;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    sqlite3 *db = store_db(st);
    ck_assert_int_eq(sqlite3_exec(db,
                         "INSERT INTO labels (uid, tag, segment_id, block) VALUES "
                         "(7, x'000000000000000000000000000000bb', x'11', 0),"
                         "(7, x'000000000000000000000000000000bb', x'11', 1),"
                         "(7, x'000000000000000000000000000000aa', x'22', 0),"
                         "(7, 'zzzzzzzzzzzzzzzz', x'11', 0),"
                         "(8, '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                         "\xc3\xa9', x'11', 0),"
                         "(0, x'ffffffffffffffffffffffffffffffff', x'11', 0),"
                         "(1000.5, x'000000000000000000000000000000ab', x'11', 0),"
                         "(4294967295, x'000000000000000000000000000000cc', x'11', 0),"
                         "(-1, x'000000000000000000000000000000dd', x'11', 0),"
                         "(4294967296, x'000000000000000000000000000000ee', x'11', 0),"
                         "('alice', x'000000000000000000000000000000ef', x'11', 0)",
                         NULL, NULL, NULL),
        SQLITE_OK);
    const struct {
        uint32_t uid;
        uint8_t last;
    } want[] = {{0, 0xff}, {7, 0xaa}, {7, 0xbb}, {4294967295u, 0xcc}};
    uint32_t uid = 0;
    uint8_t tag[16];
    size_t n = 0, passed = 0, steps = 0;
    int rc;
    store_label_walk_start(st);
    while ((rc = store_label_walk_next(st, &uid, tag)) > 0) {
        ck_assert_uint_lt(++steps, 20); /* 11 distinct keys: it never goes round */
        if (rc == 2) {
            passed++;
            continue;
        }
        ck_assert_uint_lt(n, 4);
        ck_assert_uint_eq(uid, want[n].uid);
        ck_assert_uint_eq(tag[15], want[n].last);
        n++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(passed, 6); /* -1, the two text tags, 1000.5, 2^32, 'alice' */
    store_close(st);
}
END_TEST

static void numbered(uint8_t tag[16], uint32_t i)
{
    memset(tag, 0, 16);
    memcpy(tag, &i, sizeof(i));
}

/* Until its first build ends, the filter says "maybe" for everything; after, "none" only for
 * pairs neither the build nor an add met; a pair added during a build survives the swap. */
START_TEST(tag_filter_never_says_none_for_a_pair_it_was_given)
{
    struct tagfilter *tf = tagfilter_new();
    ck_assert_ptr_nonnull(tf);
    uint8_t t[16];
    numbered(t, 1);
    ck_assert(tagfilter_may_have(tf, 5, t)); /* not built yet */
    tagfilter_add(tf, 5, t);
    ck_assert_int_eq(tagfilter_build_begin(tf), 0);
    ck_assert(tagfilter_building(tf));
    for (uint32_t i = 100; i < 5000; i++) {
        numbered(t, i);
        tagfilter_build_add(tf, 5, t);
    }
    numbered(t, 2);
    tagfilter_add(tf, 6, t); /* written while the build runs */
    ck_assert(!tagfilter_ready(tf));
    tagfilter_build_end(tf);
    ck_assert(tagfilter_ready(tf) && !tagfilter_building(tf));
    for (uint32_t i = 100; i < 5000; i++) {
        numbered(t, i);
        ck_assert(tagfilter_may_have(tf, 5, t));
    }
    numbered(t, 2);
    ck_assert(tagfilter_may_have(tf, 6, t));
    /* Pairs nobody gave it: "none", but for the odd collision. */
    int maybes = 0;
    for (uint32_t i = 100; i < 5000; i++) {
        numbered(t, i);
        maybes += tagfilter_may_have(tf, 9, t); /* another uid, same tags */
    }
    ck_assert_int_lt(maybes, 50); /* 4,901 pairs in 2^20 bits: about 0.01 % */
    /* A rebuild that is dropped leaves the filter in force as it was. */
    ck_assert_int_eq(tagfilter_build_begin(tf), 0);
    numbered(t, 3);
    tagfilter_add(tf, 7, t);
    tagfilter_build_abort(tf);
    ck_assert(tagfilter_may_have(tf, 7, t));
    numbered(t, 4000);
    ck_assert(tagfilter_may_have(tf, 5, t));
    tagfilter_free(tf);
}
END_TEST

/* What the WAL hook was told: the WAL's length after each commit. */
struct wal_seen {
    int calls, last, max;
};

static void wal_seen_cb(void *arg, int pages)
{
    struct wal_seen *w = arg;
    w->calls++;
    w->last = pages;
    if (pages > w->max)
        w->max = pages;
}

/* One commit of n rows of about a page each. */
static void commit_pages(struct store *st, int n)
{
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_exec(store_db(st), "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(store_db(st),
                         "INSERT INTO scratch (b) VALUES (zeroblob(3500))", -1, &s, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    ck_assert_int_eq(sqlite3_exec(store_db(st), "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

/*
 * With a WAL hook a connection's commits never checkpoint (SQLite's automatic checkpoint would
 * copy the WAL at 1000 pages, and the next commit start it over): the WAL only grows, and the
 * hook hears its length after every commit. A passive checkpoint on a checkpointer connection
 * copies all of it, and the next commit starts the WAL over. Without the hook, the automatic
 * checkpoint is back.
 */
START_TEST(wal_hook_connection_leaves_checkpoints_to_another)
{
    struct store *st, *ck;
    char err[256];
    ck_assert_int_eq(store_open(path, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(sqlite3_exec(store_db(st), "CREATE TABLE scratch (b BLOB)", NULL, NULL, NULL),
        SQLITE_OK);
    ck_assert_int_eq(store_open_checkpointer(path, &ck, err, sizeof(err)), 0);
    struct wal_seen w = {0};
    store_set_wal_hook(st, wal_seen_cb, &w);
    for (int i = 0; i < 30; i++)
        commit_pages(st, 100);
    ck_assert_int_eq(w.calls, 30);
    ck_assert_int_ge(w.last, 3000); /* never started over: nothing checkpointed */
    ck_assert_int_eq(w.last, w.max);
    int wal = 0, done = 0;
    ck_assert_int_eq(store_checkpoint(ck, &wal, &done), 0);
    ck_assert_int_eq(wal, w.last);
    ck_assert_int_eq(done, wal);
    commit_pages(st, 10);
    ck_assert_int_lt(w.last, 100); /* the WAL started over */
    /* Back to SQLite's automatic checkpoints: the WAL never passes 1000 pages by far. */
    store_set_wal_hook(st, NULL, NULL);
    for (int i = 0; i < 30; i++)
        commit_pages(st, 100);
    store_set_wal_hook(st, wal_seen_cb, &w);
    commit_pages(st, 1);
    ck_assert_int_lt(w.last, STORE_CHECKPOINT_PAGES + 200);
    store_close(ck);
    store_close(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fresh_database_is_migrated);
    tcase_add_test(tc, newer_database_is_refused);
    tcase_add_test(tc, migrations_apply_in_order_and_fail_atomically);
    tcase_add_test(tc, flush_removes_only_that_uid_and_tag);
    tcase_add_test(tc, flush_in_a_rolled_back_transaction_keeps_labels);
    tcase_add_test(tc, bad_tag_length_rejected_by_schema);
    tcase_add_test(tc, labels_name_their_row_after_migration);
    tcase_add_test(tc, label_walk_meets_each_key_once_in_order);
    tcase_add_test(tc, tag_filter_never_says_none_for_a_pair_it_was_given);
    tcase_add_test(tc, wal_hook_connection_leaves_checkpoints_to_another);
    suite_add_tcase(s, tc);
    return check_run(s);
}
