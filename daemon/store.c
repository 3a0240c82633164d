/* SPDX-License-Identifier: MIT */
/*
 * store.c - SQLite behind the cache, and all of peerdistd's SQL: WAL journal, numbered
 * migrations tracked with PRAGMA user_version, and prepared statements for the block index,
 * labels, flushes, and the block store's reclaim and reconciliation queries.
 * Acknowledged changes are committed before the reply leaves the daemon; with
 * WAL and synchronous=NORMAL a daemon crash loses nothing committed, a power
 * loss may roll back the last commits (the cache forgets, never serves wrong).
 */
#include "store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"

#define STORE_BOUNDS_STMTS 24
#define STORE_SERVE_STMTS 8

struct store {
    void (*wal_fn)(void *arg, int wal_pages); /* store_set_wal_hook */
    void *wal_arg;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *flush_tag, *tag_labels, *tag_any, *read_begin, *read_end;
    sqlite3_stmt *block_put, *label_put, *segment_blocks, *tags;
    sqlite3_stmt *flush_blocks, *flush_clear, *flush_collect, *segment_private;
    sqlite3_stmt *slot_replace, *slot_drop, *row_labels_drop;
    sqlite3_stmt *promote_pick, *promote_row, *promote_labels;
    sqlite3_stmt *savepoint, *release, *rollback_to;
    sqlite3_stmt *file_used, *slot_used; /* the block store's */
    /* Block rows deleted in the open transaction: their slots go to reclaim at COMMIT. */
    struct store_reclaim *reclaim;
    size_t nreclaim, reclaim_cap;
    store_reclaim_fn reclaim_fn;
    void *reclaim_arg;
    /* Slots store_block_put filled in the open transaction: told to put_fn at COMMIT. */
    struct store_slot *puts;
    size_t nputs, puts_cap;
    store_put_fn put_fn;
    void *put_arg;
    store_label_fn label_fn; /* told of each label before it is written */
    void *label_arg;
    /* store_label_walk_next's statements (prepared on first use) and its last key. */
    sqlite3_stmt *walk_first, *walk_next;
    sqlite3_value *walk_uid, *walk_tag;
    /* The row the last store_block_put named: store_label_put labels it (op_commit's order). */
    struct {
        bool valid;
        uint8_t segment_id[STORE_MAX_ID];
        size_t segment_id_len;
        uint32_t block;
        int64_t owner;
    } last_put;
    uint64_t replaced; /* rows store_block_put's slot_replace removed, ever */
    /* The cache's bounds (schema 004): statements prepared on first use, and the time labels
     * made now carry (store_set_now). */
    sqlite3_stmt *bounds[STORE_BOUNDS_STMTS];
    int64_t now;
    /* Serving peers (schema 005): statements prepared on first use. */
    sqlite3_stmt *serve[STORE_SERVE_STMTS];
};

int store_user_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int apply_migration(sqlite3 *db, const struct schema_migration *m, char *err, size_t errlen)
{
    char *msg = NULL;
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK)
        goto fail_rollback;
    if (sqlite3_exec(db, pragma, NULL, NULL, &msg) != SQLITE_OK)
        goto fail_rollback;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
        goto fail_rollback;
    log_info("database migrated to schema version %d (%s)", m->version, m->name);
    return 0;
fail_rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
fail:
    snprintf(err, errlen, "migration %s: %s", m->name, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

int store_migrate(sqlite3 *db, const struct schema_migration *migrations, int count, char *err,
    size_t errlen)
{
    int have = store_user_version(db);
    if (have < 0) {
        snprintf(err, errlen, "cannot read schema version: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (have > count) {
        snprintf(err, errlen,
            "database schema version %d is newer than this peerdistd knows (%d); "
            "refusing to start (use the newer peerdistd, or move the database aside)",
            have, count);
        return -1;
    }
    for (int i = have; i < count; i++) {
        if (apply_migration(db, &migrations[i], err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int prepare(struct store *st, sqlite3_stmt **s, const char *sql)
{
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL) == SQLITE_OK)
        return 0;
    log_error("sqlite prepare '%s': %s", sql, sqlite3_errmsg(st->db));
    return -1;
}

/* The statements a reader connection needs too (the block store's reclaim). */
static int prepare_reader(struct store *st)
{
    return prepare(st, &st->file_used,
               "SELECT 1 FROM blocks WHERE segment_id = ? AND file_owner = ? LIMIT 1") ||
        prepare(st, &st->slot_used,
            "SELECT 1 FROM blocks WHERE segment_id = ? AND file_owner = ? AND block = ? LIMIT 1");
}

static int prepare_all(struct store *st)
{
    return prepare(st, &st->begin, "BEGIN IMMEDIATE") || prepare(st, &st->commit, "COMMIT") ||
        prepare(st, &st->rollback, "ROLLBACK") ||
        prepare(st, &st->flush_tag,
            "DELETE FROM labels WHERE uid = ? AND tag = ? AND (segment_id, block) IN "
            "(SELECT segment_id, block FROM temp.flushed)") ||
        prepare(st, &st->tag_labels, "SELECT count(*) FROM labels WHERE uid = ? AND tag = ?") ||
        /* One probe of the primary key's (uid, tag) prefix: may a flush of the tag skip work? */
        prepare(st, &st->tag_any, "SELECT 1 FROM labels WHERE uid = ? AND tag = ? LIMIT 1") ||
        prepare(st, &st->read_begin, "BEGIN") || prepare(st, &st->read_end, "COMMIT") ||
        prepare(st, &st->block_put,
            "INSERT OR IGNORE INTO blocks (segment_id, block, owner, hash, length, file_owner) "
            "VALUES (?, ?, ?, ?, ?, ?)") ||
        /* ?6, the row the label keeps: the one just put, else the shared row, else uid's. */
        prepare(st, &st->label_put,
            "INSERT OR IGNORE INTO labels (uid, tag, segment_id, block, bytes, added_at, "
            "row_owner) VALUES (?1, ?2, ?3, ?4, ?5, ?7, coalesce(?6, CASE WHEN EXISTS ("
            "SELECT 1 FROM blocks WHERE segment_id = ?3 AND block = ?4 AND owner = -1) "
            "THEN -1 ELSE ?1 END))") ||
        /* Shared (owner -1) before the uid's own: the primary key's order, no sort step. */
        prepare(st, &st->segment_blocks,
            "SELECT block, owner, file_owner, length, hash FROM blocks "
            "WHERE segment_id = ?1 AND owner IN (-1, ?2) ORDER BY block, owner") ||
        prepare(st, &st->segment_private,
            "SELECT block, owner, file_owner, length, hash FROM blocks "
            "WHERE segment_id = ?1 AND owner <> -1 AND ?2 IS NOT NULL ORDER BY block") ||
        /* Promotion: one private row with the bound hash becomes the shared row (unless there
         * is one), and its labels follow it (a label keeps the row it was made for). */
        prepare(st, &st->promote_pick,
            "SELECT owner FROM blocks WHERE segment_id = ?1 AND block = ?2 AND owner <> -1 "
            "AND hash = ?3 AND NOT EXISTS (SELECT 1 FROM blocks WHERE segment_id = ?1 "
            "AND block = ?2 AND owner = -1) LIMIT 1") ||
        prepare(st, &st->promote_row,
            "UPDATE blocks SET owner = -1 WHERE segment_id = ?1 AND block = ?2 AND owner = ?3") ||
        prepare(st, &st->promote_labels,
            "UPDATE OR REPLACE labels SET row_owner = -1 "
            "WHERE segment_id = ?1 AND block = ?2 AND row_owner = ?3") ||
        prepare(st, &st->savepoint, "SAVEPOINT store_step") ||
        prepare(st, &st->release, "RELEASE store_step") ||
        prepare(st, &st->rollback_to, "ROLLBACK TO store_step") ||
        prepare(st, &st->tags,
            "SELECT tag, count(*), sum(bytes) FROM labels WHERE uid = ? GROUP BY tag") ||
        prepare(st, &st->flush_clear, "DELETE FROM temp.flushed") ||
        prepare(st, &st->flush_collect,
            "INSERT OR IGNORE INTO temp.flushed SELECT segment_id, block FROM labels "
            "WHERE uid = ? AND tag = ?") ||
        /* A row is kept only by the labels made for it (labels.row_owner = its owner). Rows
         * the flushing uid's labels could keep: the shared one and its own. */
        prepare(st, &st->flush_blocks,
            "DELETE FROM blocks WHERE (segment_id, block) IN "
            " (SELECT segment_id, block FROM temp.flushed) AND owner IN (-1, ?1) AND"
            " NOT EXISTS (SELECT 1 FROM labels l WHERE l.segment_id = blocks.segment_id"
            "   AND l.block = blocks.block AND l.row_owner = blocks.owner)"
            " RETURNING segment_id, block, file_owner, length") ||
        /* New bytes in a slot: rows of another hash named the bytes they replaced. */
        prepare(st, &st->slot_replace,
            "DELETE FROM blocks WHERE segment_id = ?1 AND file_owner = ?2 AND block = ?3 "
            "AND hash <> ?4 RETURNING owner") ||
        prepare(st, &st->slot_drop,
            "DELETE FROM blocks WHERE segment_id = ?1 AND file_owner = ?2 AND block = ?3 "
            "RETURNING owner") ||
        prepare(st, &st->row_labels_drop,
            "DELETE FROM labels WHERE segment_id = ?1 AND block = ?2 AND row_owner = ?3") ||
        prepare_reader(st);
}

/* A connection to path (SQLite's open flags, NOMUTEX added) with the busy timeout; NULL and
 * err on failure. */
static struct store *store_connect(const char *path, int flags, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(st);
        return NULL;
    }
    if (sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        store_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    return st;
}

/* Runs sql (no rows) on st: 0, or -1 with err naming the database and SQLite's message. */
static int exec_or_err(struct store *st, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
}

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *st = store_connect(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (!st)
        return -1;
    if (exec_or_err(st,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err,
            errlen) != 0)
        goto fail;
    if (store_migrate(st->db, schema_migrations, schema_migration_count, err, errlen) != 0)
        goto fail;
    /* The flush's scratch table: per connection, never on disk in the database. */
    if (exec_or_err(st,
            "CREATE TEMP TABLE IF NOT EXISTS flushed (segment_id BLOB NOT NULL, block INTEGER NOT "
            "NULL,"
            " PRIMARY KEY (segment_id, block)) WITHOUT ROWID",
            err, errlen) != 0)
        goto fail;
    if (prepare_all(st) != 0) {
        snprintf(err, errlen, "%s: cannot prepare statements", path);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    store_close(st);
    return -1;
}

int store_open_reader(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *st = store_connect(path, SQLITE_OPEN_READONLY, err, errlen);
    if (!st)
        return -1;
    if (prepare_reader(st) != 0) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
        store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int store_open_checkpointer(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *st = store_connect(path, SQLITE_OPEN_READWRITE, err, errlen);
    if (!st)
        return -1;
    /* A connection knows the database is in WAL mode once it has read it: until then its
     * checkpoints do nothing. */
    if (exec_or_err(st, "PRAGMA journal_mode = WAL", err, errlen) != 0) {
        store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *st = arg;
    st->wal_fn(st->wal_arg, pages);
    return SQLITE_OK;
}

void store_set_wal_hook(struct store *st, void (*fn)(void *arg, int wal_pages), void *arg)
{
    st->wal_fn = fn;
    st->wal_arg = arg;
    if (fn)
        sqlite3_wal_hook(st->db, wal_hook, st); /* replaces the automatic checkpoint */
    else
        sqlite3_wal_autocheckpoint(st->db, STORE_CHECKPOINT_PAGES);
}

int store_checkpoint(struct store *st, int *wal_pages, int *done_pages)
{
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, wal_pages,
        done_pages);
    return rc == SQLITE_OK ? 0 : rc == SQLITE_BUSY ? 1 : -1;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    sqlite3_stmt *all[] = {st->begin, st->commit, st->rollback, st->flush_tag, st->tag_labels,
        st->tag_any, st->read_begin, st->read_end, st->block_put, st->label_put, st->segment_blocks,
        st->tags, st->flush_blocks, st->flush_clear, st->flush_collect, st->segment_private,
        st->slot_replace, st->slot_drop, st->row_labels_drop, st->promote_pick, st->promote_row,
        st->promote_labels, st->savepoint, st->release, st->rollback_to, st->file_used,
        st->slot_used, st->walk_first, st->walk_next};
    store_label_walk_start(st); /* frees the walk's last key */
    free(st->reclaim);
    free(st->puts);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    for (size_t i = 0; i < STORE_BOUNDS_STMTS; i++)
        sqlite3_finalize(st->bounds[i]);
    for (size_t i = 0; i < STORE_SERVE_STMTS; i++)
        sqlite3_finalize(st->serve[i]);
    if (st->db && sqlite3_close(st->db) != SQLITE_OK)
        log_error("closing %s: %s", st->path, sqlite3_errmsg(st->db));
    free(st->path);
    free(st);
}

static int step_done(struct store *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite: %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_begin(struct store *st)
{
    return step_done(st, st->begin);
}

/* After a COMMIT (or an autocommit flush): the deleted rows' space goes to reclaim. */
static void reclaim_handover(struct store *st)
{
    if (st->nreclaim == 0)
        return;
    if (st->reclaim_fn) {
        st->reclaim_fn(st->reclaim_arg, st->reclaim, st->nreclaim);
        st->reclaim = NULL;
        st->reclaim_cap = 0;
    }
    st->nreclaim = 0;
}

/* After a COMMIT (or an autocommit put): the filled slots' rows are committed. */
static void put_handover(struct store *st)
{
    if (st->nputs && st->put_fn)
        st->put_fn(st->put_arg, st->puts, st->nputs);
    st->nputs = 0;
}

int store_commit(struct store *st)
{
    if (step_done(st, st->commit) != 0)
        return -1;
    st->last_put.valid = false;
    reclaim_handover(st);
    put_handover(st);
    return 0;
}

void store_rollback(struct store *st)
{
    st->nreclaim = 0; /* the rows are back: nothing to reclaim */
    st->nputs = 0;    /* nor committed */
    st->last_put.valid = false;
    if (!sqlite3_get_autocommit(st->db))
        step_done(st, st->rollback);
}

void store_set_put_hook(struct store *st, store_put_fn fn, void *arg)
{
    st->put_fn = fn;
    st->put_arg = arg;
    st->nputs = 0;
}

void store_set_reclaim_hook(struct store *st, store_reclaim_fn fn, void *arg)
{
    st->reclaim_fn = fn;
    st->reclaim_arg = arg;
}

static void bind_owner(sqlite3_stmt *s, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_blob(s, 2, tag, STORE_TAG_SIZE, SQLITE_STATIC);
}

static int reclaim_push(struct store *st, const void *seg, size_t seglen, int64_t file_owner,
    uint32_t block)
{
    if (st->nreclaim == st->reclaim_cap) {
        size_t cap = st->reclaim_cap ? st->reclaim_cap * 2 : 256;
        struct store_reclaim *r = realloc(st->reclaim, cap * sizeof(*r));
        if (!r)
            return -1;
        st->reclaim = r;
        st->reclaim_cap = cap;
    }
    struct store_reclaim *r = &st->reclaim[st->nreclaim++];
    memcpy(r->segment_id, seg, seglen);
    r->segment_id_len = (uint8_t)seglen;
    r->file_owner = file_owner;
    r->block = block;
    return 0;
}

/*
 * Set-based: the tag's (segment, block) pairs go to a temporary table, the labels go, then
 * one DELETE removes the block rows no label keeps any more (a shared row is kept by any
 * label of its block, a private row by its own uid's). A statement per row costs 20x more.
 */
int store_flush_tag(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    struct store_flush_result *result)
{
    int rc;
    if (step_done(st, st->flush_clear) != 0)
        return -1;
    bind_owner(st->flush_collect, uid, tag);
    if (step_done(st, st->flush_collect) != 0)
        return -1;
    bind_owner(st->flush_tag, uid, tag);
    if (step_done(st, st->flush_tag) != 0)
        return -1;
    result->labels_removed = (uint64_t)sqlite3_changes64(st->db);
    result->bytes_freed = 0;
    sqlite3_stmt *s = st->flush_blocks;
    sqlite3_bind_int64(s, 1, uid);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(s, 0);
        if (len <= 0 || len > STORE_MAX_ID)
            continue;
        result->bytes_freed += (uint64_t)sqlite3_column_int64(s, 3);
        if (reclaim_push(st, sqlite3_column_blob(s, 0), (size_t)len, sqlite3_column_int64(s, 2),
                (uint32_t)sqlite3_column_int64(s, 1)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        log_error("sqlite (flush blocks): %s", sqlite3_errmsg(st->db));
        return -1;
    }
    if (sqlite3_get_autocommit(st->db))
        reclaim_handover(st); /* no transaction around us: already committed */
    return 0;
}

int store_read_begin(struct store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        return -1; /* a transaction is open: the reads are in it */
    int rc = sqlite3_step(st->read_begin);
    sqlite3_reset(st->read_begin);
    return rc == SQLITE_DONE ? 0 : -1;
}

void store_read_end(struct store *st)
{
    sqlite3_step(st->read_end);
    sqlite3_reset(st->read_end);
}

int store_tag_has_labels(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    bind_owner(st->tag_any, uid, tag);
    int rc = sqlite3_step(st->tag_any);
    sqlite3_reset(st->tag_any);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

void store_label_walk_start(struct store *st)
{
    sqlite3_value_free(st->walk_uid);
    sqlite3_value_free(st->walk_tag);
    st->walk_uid = st->walk_tag = NULL;
}

int store_label_walk_next(struct store *st, uint32_t *uid, uint8_t tag[STORE_TAG_SIZE])
{
    /* The row value compares as the primary key orders (uid, tag): a seek, not a scan. */
    if (!st->walk_next &&
        prepare(st, &st->walk_next,
            "SELECT uid, tag FROM labels WHERE (uid, tag) > (?1, ?2) "
            "ORDER BY uid, tag LIMIT 1") != 0)
        return -1;
    if (!st->walk_first &&
        prepare(st, &st->walk_first, "SELECT uid, tag FROM labels ORDER BY uid, tag LIMIT 1") != 0)
        return -1;
    sqlite3_stmt *s = st->walk_uid ? st->walk_next : st->walk_first;
    if (st->walk_uid) {
        sqlite3_bind_value(s, 1, st->walk_uid);
        sqlite3_bind_value(s, 2, st->walk_tag);
    }
    int rc = sqlite3_step(s), found = rc == SQLITE_DONE ? 0 : -1;
    sqlite3_value *u = NULL, *t = NULL;
    if (rc == SQLITE_ROW) {
        u = sqlite3_value_dup(sqlite3_column_value(s, 0));
        t = sqlite3_value_dup(sqlite3_column_value(s, 1));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (!u || !t) { /* the end, an error, or no memory for the copies */
        sqlite3_value_free(u);
        sqlite3_value_free(t);
        return found;
    }
    store_label_walk_start(st); /* the key before goes */
    st->walk_uid = u;
    st->walk_tag = t;
    int64_t v = sqlite3_value_int64(u);
    if (sqlite3_value_type(u) != SQLITE_INTEGER || v < 0 || v > UINT32_MAX ||
        sqlite3_value_type(t) != SQLITE_BLOB || sqlite3_value_bytes(t) != STORE_TAG_SIZE)
        return 2; /* written by hand: no flush can name it */
    *uid = (uint32_t)v;
    memcpy(tag, sqlite3_value_blob(t), STORE_TAG_SIZE);
    return 1;
}

void store_set_label_hook(struct store *st, store_label_fn fn, void *arg)
{
    st->label_fn = fn;
    st->label_arg = arg;
}

int64_t store_tag_labels(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    bind_owner(st->tag_labels, uid, tag);
    int64_t n = -1;
    if (sqlite3_step(st->tag_labels) == SQLITE_ROW)
        n = sqlite3_column_int64(st->tag_labels, 0);
    sqlite3_reset(st->tag_labels);
    return n;
}

/*
 * Runs a DELETE ... RETURNING owner over the rows of one slot (bound by the caller), then
 * deletes the labels made for each row it removed. The owners are collected first: SQLite
 * makes every change of a RETURNING statement at its first step. 0, or -1.
 */
static int drop_rows_and_labels(struct store *st, sqlite3_stmt *s, const uint8_t *segment_id,
    size_t segment_id_len, uint32_t block, uint64_t *removed)
{
    int64_t owners[8]; /* a slot is named by its file's private row and the shared one */
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (n < sizeof(owners) / sizeof(owners[0]))
            owners[n++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        log_error("sqlite (slot rows): %s", sqlite3_errmsg(st->db));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *l = st->row_labels_drop;
        sqlite3_bind_blob(l, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
        sqlite3_bind_int64(l, 2, block);
        sqlite3_bind_int64(l, 3, owners[i]);
        if (step_done(st, l) != 0)
            return -1;
    }
    if (removed)
        *removed = n;
    return 0;
}

static int put_record(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, int64_t file_owner)
{
    if (st->nputs == st->puts_cap) {
        size_t cap = st->puts_cap ? st->puts_cap * 2 : 64;
        struct store_slot *p = realloc(st->puts, cap * sizeof(*p));
        if (!p)
            return -1;
        st->puts = p;
        st->puts_cap = cap;
    }
    struct store_slot *p = &st->puts[st->nputs++];
    memcpy(p->segment_id, segment_id, segment_id_len);
    p->segment_id_len = (uint8_t)segment_id_len;
    p->file_owner = file_owner;
    p->block = block;
    return 0;
}

int store_block_put(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, int64_t owner, const uint8_t *hash, size_t hash_len, uint32_t length,
    int64_t file_owner)
{
    if (segment_id_len > STORE_MAX_ID)
        return -1;
    /* The slot holds these bytes now: rows of another hash described bytes that are gone. */
    sqlite3_stmt *r = st->slot_replace;
    sqlite3_bind_blob(r, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(r, 2, file_owner);
    sqlite3_bind_int64(r, 3, block);
    sqlite3_bind_blob(r, 4, hash, (int)hash_len, SQLITE_STATIC);
    uint64_t removed = 0;
    if (drop_rows_and_labels(st, r, segment_id, segment_id_len, block, &removed) != 0)
        return -1;
    st->replaced += removed;
    sqlite3_stmt *s = st->block_put;
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, block);
    sqlite3_bind_int64(s, 3, owner);
    sqlite3_bind_blob(s, 4, hash, (int)hash_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, length);
    sqlite3_bind_int64(s, 6, file_owner);
    if (step_done(st, s) != 0)
        return -1;
    memcpy(st->last_put.segment_id, segment_id, segment_id_len);
    st->last_put.segment_id_len = segment_id_len;
    st->last_put.block = block;
    st->last_put.owner = owner;
    st->last_put.valid = true;
    if (st->put_fn && put_record(st, segment_id, segment_id_len, block, file_owner) == 0 &&
        sqlite3_get_autocommit(st->db))
        put_handover(st); /* no transaction around us: already committed */
    return 0;
}

int store_label_put(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    const uint8_t *segment_id, size_t segment_id_len, uint32_t block, uint32_t bytes)
{
    sqlite3_stmt *s = st->label_put;
    if (st->label_fn)
        st->label_fn(st->label_arg, uid, tag);
    bind_owner(s, uid, tag);
    sqlite3_bind_blob(s, 3, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, block);
    sqlite3_bind_int64(s, 5, bytes);
    if (st->last_put.valid && st->last_put.block == block &&
        st->last_put.segment_id_len == segment_id_len &&
        memcmp(st->last_put.segment_id, segment_id, segment_id_len) == 0)
        sqlite3_bind_int64(s, 6, st->last_put.owner);
    else
        sqlite3_bind_null(s, 6);
    sqlite3_bind_int64(s, 7, st->now ? st->now : (int64_t)time(NULL));
    return step_done(st, s);
}

static int segment_rows(struct store *st, sqlite3_stmt *s, const uint8_t *segment_id,
    size_t segment_id_len, uint32_t uid, store_block_fn fn, void *arg)
{
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, uid);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_block_row row;
        int hl = sqlite3_column_bytes(s, 4);
        if (hl <= 0 || hl > STORE_MAX_ID)
            continue;
        row.block = (uint32_t)sqlite3_column_int64(s, 0);
        row.owner = sqlite3_column_int64(s, 1);
        row.file_owner = sqlite3_column_int64(s, 2);
        row.length = (uint32_t)sqlite3_column_int64(s, 3);
        row.hash_len = (size_t)hl;
        memcpy(row.hash, sqlite3_column_blob(s, 4), (size_t)hl);
        if (fn(arg, &row) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (segment blocks): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_segment_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t uid, store_block_fn fn, void *arg)
{
    return segment_rows(st, st->segment_blocks, segment_id, segment_id_len, uid, fn, arg);
}

int store_segment_private_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    store_block_fn fn, void *arg)
{
    return segment_rows(st, st->segment_private, segment_id, segment_id_len, 0, fn, arg);
}

static void bind_block(sqlite3_stmt *s, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block)
{
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, block);
}

/* The row and its labels change together (a savepoint: inside or outside a transaction). */
int store_block_promote(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, const uint8_t *hash, size_t hash_len)
{
    sqlite3_stmt *s = st->promote_pick;
    bind_block(s, segment_id, segment_id_len, block);
    sqlite3_bind_blob(s, 3, hash, (int)hash_len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t owner = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0; /* no private row with that hash, or a shared row already */
    if (rc != SQLITE_ROW) {
        log_error("sqlite (promote): %s", sqlite3_errmsg(st->db));
        return -1;
    }
    if (step_done(st, st->savepoint) != 0)
        return -1;
    sqlite3_stmt *steps[] = {st->promote_row, st->promote_labels};
    for (size_t i = 0; i < 2; i++) {
        bind_block(steps[i], segment_id, segment_id_len, block);
        sqlite3_bind_int64(steps[i], 3, owner);
        if (step_done(st, steps[i]) != 0) {
            step_done(st, st->rollback_to);
            step_done(st, st->release);
            return -1;
        }
    }
    return step_done(st, st->release);
}

int store_tags(struct store *st, uint32_t uid, store_tag_fn fn, void *arg)
{
    sqlite3_stmt *s = st->tags;
    sqlite3_bind_int64(s, 1, uid);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != STORE_TAG_SIZE)
            continue;
        fn(arg, sqlite3_column_blob(s, 0), (uint64_t)sqlite3_column_int64(s, 1),
            (uint64_t)sqlite3_column_int64(s, 2));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (tags): %s", sqlite3_errmsg(st->db));
    return -1;
}
/* ---- the block store's queries ---- */

static int in_use(struct store *st, sqlite3_stmt *s, const uint8_t *segment_id,
    size_t segment_id_len, int64_t file_owner, int64_t block)
{
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file_owner);
    if (block >= 0)
        sqlite3_bind_int64(s, 3, block);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc == SQLITE_ROW;
    log_error("sqlite (block in use): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_file_in_use(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner)
{
    return in_use(st, st->file_used, segment_id, segment_id_len, file_owner, -1);
}

int store_slot_in_use(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner, uint32_t block)
{
    return in_use(st, st->slot_used, segment_id, segment_id_len, file_owner, block);
}

int store_each_block(struct store *st, store_place_fn fn, void *arg)
{
    sqlite3_stmt *q;
    if (prepare(st, &q,
            "SELECT segment_id, file_owner, block, length FROM blocks "
            "ORDER BY segment_id, file_owner") != 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct store_block_place p = {0};
        int len = sqlite3_column_bytes(q, 0);
        if (len <= 0 || len > STORE_MAX_ID)
            continue;
        memcpy(p.segment_id, sqlite3_column_blob(q, 0), (size_t)len);
        p.segment_id_len = (uint8_t)len;
        p.file_owner = sqlite3_column_int64(q, 1);
        p.block = (uint32_t)sqlite3_column_int64(q, 2);
        p.length = (uint32_t)sqlite3_column_int64(q, 3);
        if (fn(arg, &p) != 0) {
            rc = SQLITE_ABORT;
            break;
        }
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ABORT)
        log_error("sqlite (each block): %s", sqlite3_errmsg(st->db));
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t store_block_drop(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t file_owner, uint32_t block)
{
    if (segment_id_len > STORE_MAX_ID)
        return -1;
    sqlite3_stmt *s = st->slot_drop;
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, file_owner);
    sqlite3_bind_int64(s, 3, block);
    uint64_t removed = 0;
    if (drop_rows_and_labels(st, s, segment_id, segment_id_len, block, &removed) != 0)
        return -1;
    if (removed && reclaim_push(st, segment_id, segment_id_len, file_owner, block) != 0)
        return -1;
    if (sqlite3_get_autocommit(st->db))
        reclaim_handover(st);
    return (int64_t)removed;
}

int store_drop_orphan_labels(struct store *st)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db,
            "DELETE FROM labels WHERE bytes > 0 AND NOT EXISTS (SELECT 1 FROM blocks b "
            "WHERE b.segment_id = labels.segment_id AND b.block = labels.block "
            "AND b.owner = labels.row_owner)",
            NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    log_error("sqlite (orphan labels): %s", msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
}

int store_errcode(struct store *st)
{
    return sqlite3_extended_errcode(st->db);
}

const char *store_errmsg(struct store *st)
{
    return sqlite3_errmsg(st->db);
}

static uint64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

uint64_t store_disk_bytes(const struct store *st)
{
    char wal[4096];
    snprintf(wal, sizeof(wal), "%s-wal", st->path);
    return file_bytes(st->path) + file_bytes(wal);
}

const char *store_path(const struct store *st)
{
    return st->path;
}

sqlite3 *store_db(struct store *st)
{
    return st->db;
}

/* ---- administration: flushes beyond one's own tag (flush.c's admin slices) ---- */

/*
 * An admin flush runs as slices, each in the caller's transaction: a slice takes the next
 * STORE_ADMIN_SLICE_ROWS keys after the cursor (keyset order, so a slice costs its own rows,
 * never a scan of what went before), removes them, and moves the cursor. Rows added behind
 * the cursor while the flush runs were added after it started, and stay.
 */

/* Prepared per slice: a slice is thousands of rows, a prepare tens of microseconds. */
static sqlite3_stmt *admin_prepare(struct store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        log_error("sqlite prepare '%s': %s", sql, sqlite3_errmsg(st->db));
        return NULL;
    }
    return s;
}

static int admin_exec(struct store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    log_error("sqlite (admin flush): %s", msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
}

/* Runs s (bound) to its end; its changes, or -1. s is finalized. */
static int64_t admin_run(struct store *st, sqlite3_stmt *s)
{
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    int64_t n = sqlite3_changes64(st->db);
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return n;
    log_error("sqlite (admin flush): %s", sqlite3_errmsg(st->db));
    return -1;
}

/* Steps a DELETE ... RETURNING segment_id, block, file_owner, length: bytes, and reclaim. */
static int admin_delete_blocks(struct store *st, sqlite3_stmt *s, struct store_flush_result *res)
{
    if (!s)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(s, 0);
        if (len <= 0 || len > STORE_MAX_ID)
            continue;
        res->bytes_freed += (uint64_t)sqlite3_column_int64(s, 3);
        if (reclaim_push(st, sqlite3_column_blob(s, 0), (size_t)len, sqlite3_column_int64(s, 2),
                (uint32_t)sqlite3_column_int64(s, 1)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (admin flush blocks): %s", sqlite3_errmsg(st->db));
    return -1;
}

static void bind_cursor_blob(sqlite3_stmt *s, int i, const uint8_t *b, size_t n)
{
    /* An empty blob sorts before every segment ID and tag: the start. */
    sqlite3_bind_blob(s, i, n ? (const void *)b : "", (int)n, SQLITE_TRANSIENT);
}

void store_admin_flush_init(struct store_admin_flush *f, enum store_admin_scope scope, uint32_t uid,
    const uint8_t tag[STORE_TAG_SIZE])
{
    memset(f, 0, sizeof(*f));
    f->scope = scope;
    f->uid = uid;
    if (tag)
        memcpy(f->tag, tag, STORE_TAG_SIZE);
    f->phase = scope == STORE_ADMIN_ALL ? STORE_ADMIN_PHASE_BLOCKS : STORE_ADMIN_PHASE_LABELS;
    store_admin_flush_init_cursor(f);
}

/* The last key a slice took (its temp table's greatest) becomes the cursor. */
static int admin_cursor_from(struct store *st, struct store_admin_flush *f, const char *sql,
    bool labels)
{
    sqlite3_stmt *s = admin_prepare(st, sql);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int c = 0;
        if (labels) {
            f->cur.uid = sqlite3_column_int64(s, c++);
            int tl = sqlite3_column_bytes(s, c);
            f->cur.tag_len = tl > 0 && tl <= STORE_TAG_SIZE ? (size_t)tl : 0;
            memcpy(f->cur.tag, sqlite3_column_blob(s, c++), f->cur.tag_len);
        }
        int sl = sqlite3_column_bytes(s, c);
        f->cur.seg_len = sl > 0 && sl <= STORE_MAX_ID ? (size_t)sl : 0;
        memcpy(f->cur.seg, sqlite3_column_blob(s, c++), f->cur.seg_len);
        f->cur.block = sqlite3_column_int64(s, c++);
        f->cur.owner = sqlite3_column_int64(s, c);
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The whole cache, first phase: the next block rows, their labels, then the rows. */
static int admin_slice_blocks(struct store *st, struct store_admin_flush *f, unsigned limit,
    bool *phase_done)
{
    sqlite3_stmt *s = admin_prepare(st,
        "INSERT INTO temp.admin_rows SELECT segment_id, block, owner FROM blocks "
        "WHERE (segment_id, block, owner) > (?1, ?2, ?3) "
        "ORDER BY segment_id, block, owner LIMIT ?4");
    if (!s)
        return -1;
    bind_cursor_blob(s, 1, f->cur.seg, f->cur.seg_len);
    sqlite3_bind_int64(s, 2, f->cur.block);
    sqlite3_bind_int64(s, 3, f->cur.owner);
    sqlite3_bind_int64(s, 4, limit);
    int64_t n = admin_run(st, s);
    if (n < 0)
        return -1;
    *phase_done = (uint64_t)n < limit;
    if (n == 0)
        return 0;
    if (admin_cursor_from(st, f,
            "SELECT segment_id, block, owner FROM temp.admin_rows "
            "ORDER BY segment_id DESC, block DESC, owner DESC LIMIT 1",
            false) != 0)
        return -1;
    int64_t labels = admin_run(st,
        admin_prepare(st,
            "DELETE FROM labels WHERE (segment_id, block, row_owner) IN "
            "(SELECT segment_id, block, owner FROM temp.admin_rows)"));
    if (labels < 0)
        return -1;
    f->result.labels_removed += (uint64_t)labels;
    return admin_delete_blocks(st,
        admin_prepare(st,
            "DELETE FROM blocks WHERE (segment_id, block, owner) IN "
            "(SELECT segment_id, block, owner FROM temp.admin_rows) "
            "RETURNING segment_id, block, file_owner, length"),
        &f->result);
}

/*
 * Labels: one uid's (of one tag), or, for the whole cache after its blocks, every label
 * left whose row is gone (a label made while the blocks phase ran keeps its row, and stays).
 */
static int admin_slice_labels(struct store *st, struct store_admin_flush *f, unsigned limit,
    bool *phase_done)
{
    static const char *const pick[] = {
        [STORE_ADMIN_ALL] = "INSERT INTO temp.admin_labels SELECT uid, tag, segment_id, block, "
                            "row_owner FROM labels WHERE (uid, tag, segment_id, block, row_owner) "
                            "> (?1, ?2, ?3, ?4, ?5) ORDER BY uid, tag, segment_id, block, "
                            "row_owner LIMIT ?6",
        [STORE_ADMIN_UID] = "INSERT INTO temp.admin_labels SELECT uid, tag, segment_id, block, "
                            "row_owner FROM labels WHERE uid = ?1 AND (tag, segment_id, block, "
                            "row_owner) > (?2, ?3, ?4, ?5) ORDER BY tag, segment_id, block, "
                            "row_owner LIMIT ?6",
        [STORE_ADMIN_UID_TAG] = "INSERT INTO temp.admin_labels SELECT uid, tag, segment_id, "
                                "block, row_owner FROM labels WHERE uid = ?1 AND tag = ?2 AND "
                                "(segment_id, block, row_owner) > (?3, ?4, ?5) ORDER BY "
                                "segment_id, block, row_owner LIMIT ?6",
    };
    sqlite3_stmt *s = admin_prepare(st, pick[f->scope]);
    if (!s)
        return -1;
    if (f->scope == STORE_ADMIN_ALL)
        sqlite3_bind_int64(s, 1, f->cur.uid);
    else
        sqlite3_bind_int64(s, 1, f->uid);
    if (f->scope == STORE_ADMIN_UID_TAG)
        sqlite3_bind_blob(s, 2, f->tag, STORE_TAG_SIZE, SQLITE_TRANSIENT);
    else
        bind_cursor_blob(s, 2, f->cur.tag, f->cur.tag_len);
    bind_cursor_blob(s, 3, f->cur.seg, f->cur.seg_len);
    sqlite3_bind_int64(s, 4, f->cur.block);
    sqlite3_bind_int64(s, 5, f->cur.owner);
    sqlite3_bind_int64(s, 6, limit);
    int64_t n = admin_run(st, s);
    if (n < 0)
        return -1;
    *phase_done = (uint64_t)n < limit;
    if (n == 0)
        return 0;
    if (admin_cursor_from(st, f,
            "SELECT uid, tag, segment_id, block, row_owner FROM temp.admin_labels ORDER BY uid "
            "DESC, tag DESC, segment_id DESC, block DESC, row_owner DESC LIMIT 1",
            true) != 0)
        return -1;
    int64_t labels = admin_run(st,
        admin_prepare(st,
            f->scope == STORE_ADMIN_ALL
                ? "DELETE FROM labels WHERE (uid, tag, segment_id, block, row_owner) IN "
                  "(SELECT uid, tag, segment_id, block, row_owner FROM temp.admin_labels) "
                  "AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.segment_id = "
                  "labels.segment_id AND b.block = labels.block AND b.owner = labels.row_owner)"
                : "DELETE FROM labels WHERE (uid, tag, segment_id, block, row_owner) IN "
                  "(SELECT uid, tag, segment_id, block, row_owner FROM temp.admin_labels)"));
    if (labels < 0)
        return -1;
    f->result.labels_removed += (uint64_t)labels;
    if (f->scope == STORE_ADMIN_ALL)
        return 0;
    /* As store_flush_tag: the rows of those blocks the uid's labels could keep (the shared
     * one, its own) that no label keeps any more. */
    sqlite3_stmt *d = admin_prepare(st,
        "DELETE FROM blocks WHERE (segment_id, block) IN "
        " (SELECT segment_id, block FROM temp.admin_labels) AND owner IN (-1, ?1) AND"
        " NOT EXISTS (SELECT 1 FROM labels l WHERE l.segment_id = blocks.segment_id"
        "   AND l.block = blocks.block AND l.row_owner = blocks.owner)"
        " RETURNING segment_id, block, file_owner, length");
    if (d)
        sqlite3_bind_int64(d, 1, f->uid);
    return admin_delete_blocks(st, d, &f->result);
}

int store_admin_flush_slice(struct store *st, struct store_admin_flush *f, unsigned limit)
{
    if (f->phase == STORE_ADMIN_PHASE_DONE)
        return 0;
    if (admin_exec(st,
            "CREATE TEMP TABLE IF NOT EXISTS admin_rows (segment_id BLOB NOT NULL, block "
            "INTEGER NOT NULL, owner INTEGER NOT NULL, PRIMARY KEY (segment_id, block, owner)) "
            "WITHOUT ROWID; "
            "CREATE TEMP TABLE IF NOT EXISTS admin_labels (uid INTEGER NOT NULL, tag BLOB NOT "
            "NULL, segment_id BLOB NOT NULL, block INTEGER NOT NULL, row_owner INTEGER NOT "
            "NULL, PRIMARY KEY (uid, tag, segment_id, block, row_owner)) WITHOUT ROWID; "
            "DELETE FROM temp.admin_rows; DELETE FROM temp.admin_labels") != 0)
        return -1;
    bool done = false;
    if (f->phase == STORE_ADMIN_PHASE_BLOCKS) {
        if (admin_slice_blocks(st, f, limit, &done) != 0)
            return -1;
        if (done) { /* on to the labels left, from their start */
            f->phase = STORE_ADMIN_PHASE_LABELS;
            store_admin_flush_init_cursor(f);
        }
        return 0;
    }
    if (admin_slice_labels(st, f, limit, &done) != 0)
        return -1;
    if (done)
        f->phase = STORE_ADMIN_PHASE_DONE;
    return 0;
}

void store_admin_flush_init_cursor(struct store_admin_flush *f)
{
    memset(&f->cur, 0, sizeof(f->cur));
    f->cur.uid = -1;
    f->cur.block = -1;
    f->cur.owner = -2;
}

/* ---- the cache's bounds (schema 004) ---- */

enum {
    B_SEG_USED,
    B_CTR_ADD,
    B_CTR_GET,
    B_SETTING,
    B_TOTALS,
    B_STORED,
    B_LRU_ALL,
    B_LRU_BEFORE,
    B_EV_LABELS,
    B_EV_BLOCKS,
    B_EV_USE,
    B_UIDS_OVER,
    B_UID_SEGS,
    B_UID_LABELS,
    B_UID_BLOCKS,
    B_TAGS_UID,
    B_TAGS_ALL,
    B_COUNT
};

static const char *const bounds_sql[B_COUNT] = {
    [B_SEG_USED] = "INSERT INTO segment_use (segment_id, added_at, last_used) VALUES (?1, ?2, ?2) "
                   "ON CONFLICT (segment_id) DO UPDATE SET last_used = "
                   "max(last_used, excluded.last_used)",
    [B_CTR_ADD] = "UPDATE cache_counters SET value = value + ?2 WHERE name = ?1",
    [B_CTR_GET] = "SELECT name, value FROM cache_counters",
    [B_SETTING] = "INSERT OR REPLACE INTO cache_settings (name, value) VALUES (?1, ?2)",
    [B_TOTALS] = "SELECT (SELECT coalesce(sum(length), 0) FROM blocks), (SELECT count(*) FROM "
                 "blocks), (SELECT count(DISTINCT segment_id) FROM blocks), (SELECT count(*) "
                 "FROM (SELECT DISTINCT uid, tag FROM labels))",
    [B_STORED] = "SELECT coalesce(sum(length), 0) FROM blocks",
    [B_LRU_ALL] = "SELECT segment_id, last_used FROM segment_use ORDER BY last_used LIMIT ?1",
    [B_LRU_BEFORE] = "SELECT segment_id, last_used FROM segment_use WHERE last_used < ?2 "
                     "ORDER BY last_used LIMIT ?1",
    [B_EV_LABELS] = "DELETE FROM labels WHERE segment_id = ?1",
    [B_EV_BLOCKS] = "DELETE FROM blocks WHERE segment_id = ?1 RETURNING block, file_owner, length",
    [B_EV_USE] = "DELETE FROM segment_use WHERE segment_id = ?1",
    /* A uid is charged once per block it labels, whatever its tags and rows. */
    [B_UIDS_OVER] = "SELECT uid, sum(b) FROM (SELECT uid, segment_id, block, max(bytes) AS b "
                    "FROM labels GROUP BY uid, segment_id, block) GROUP BY uid "
                    "HAVING sum(b) > ?1",
    [B_UID_SEGS] = "SELECT l.segment_id, sum(l.b) FROM (SELECT segment_id, block, max(bytes) "
                   "AS b FROM labels WHERE uid = ?1 GROUP BY segment_id, block) l "
                   "LEFT JOIN segment_use u ON u.segment_id = l.segment_id "
                   "GROUP BY l.segment_id ORDER BY coalesce(max(u.last_used), 0) LIMIT ?2",
    [B_UID_LABELS] = "DELETE FROM labels WHERE uid = ?1 AND segment_id = ?2",
    [B_UID_BLOCKS] = "DELETE FROM blocks WHERE segment_id = ?2 AND owner IN (-1, ?1) AND "
                     "NOT EXISTS (SELECT 1 FROM labels l WHERE l.segment_id = blocks.segment_id "
                     "AND l.block = blocks.block AND l.row_owner = blocks.owner) "
                     "RETURNING block, file_owner, length",
    [B_TAGS_UID] = "SELECT l.uid, l.tag, count(*), sum(l.bytes), count(DISTINCT l.segment_id), "
                   "min(l.added_at), max(coalesce(u.last_used, l.added_at)) FROM labels l "
                   "LEFT JOIN segment_use u ON u.segment_id = l.segment_id WHERE l.uid = ?1 "
                   "GROUP BY l.tag",
    [B_TAGS_ALL] = "SELECT l.uid, l.tag, count(*), sum(l.bytes), count(DISTINCT l.segment_id), "
                   "min(l.added_at), max(coalesce(u.last_used, l.added_at)) FROM labels l "
                   "LEFT JOIN segment_use u ON u.segment_id = l.segment_id "
                   "GROUP BY l.uid, l.tag",
};

static const char *const counter_names[STORE_CTR_COUNT] = {
    [STORE_CTR_HITS] = "hits",
    [STORE_CTR_MISSES] = "misses",
    [STORE_CTR_ADDED] = "added",
    [STORE_CTR_EVICTED_SIZE] = "evicted_size",
    [STORE_CTR_EVICTED_AGE] = "evicted_age",
    [STORE_CTR_FLUSHED] = "flushed",
};

/* The statement, prepared on its first use; NULL (logged) if it cannot be. */
static sqlite3_stmt *bstmt(struct store *st, int which)
{
    if (!st->bounds[which] && prepare(st, &st->bounds[which], bounds_sql[which]) != 0)
        return NULL;
    return st->bounds[which];
}

void store_set_now(struct store *st, int64_t now)
{
    st->now = now;
}

int store_segment_used(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    int64_t now)
{
    sqlite3_stmt *s = bstmt(st, B_SEG_USED);
    if (!s)
        return -1;
    sqlite3_bind_blob(s, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    return step_done(st, s);
}

int store_counters_add(struct store *st, const uint64_t delta[STORE_CTR_COUNT])
{
    sqlite3_stmt *s = bstmt(st, B_CTR_ADD);
    if (!s)
        return -1;
    for (int i = 0; i < STORE_CTR_COUNT; i++) {
        if (!delta[i])
            continue;
        sqlite3_bind_text(s, 1, counter_names[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)delta[i]);
        if (step_done(st, s) != 0)
            return -1;
    }
    return 0;
}

int store_counters_get(struct store *st, uint64_t out[STORE_CTR_COUNT])
{
    sqlite3_stmt *s = bstmt(st, B_CTR_GET);
    if (!s)
        return -1;
    memset(out, 0, sizeof(uint64_t) * STORE_CTR_COUNT);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        for (int i = 0; name && i < STORE_CTR_COUNT; i++)
            if (strcmp(name, counter_names[i]) == 0)
                out[i] = (uint64_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (counters): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_settings_put(struct store *st, uint64_t limit_bytes, uint64_t max_age_s,
    uint64_t uid_quota)
{
    sqlite3_stmt *s = bstmt(st, B_SETTING);
    if (!s)
        return -1;
    const char *names[] = {"limit_bytes", "max_age_s", "uid_quota"};
    uint64_t values[] = {limit_bytes, max_age_s, uid_quota};
    for (int i = 0; i < 3; i++) {
        sqlite3_bind_text(s, 1, names[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)values[i]);
        if (step_done(st, s) != 0)
            return -1;
    }
    return 0;
}

int store_cache_totals(struct store *st, struct store_totals *out)
{
    sqlite3_stmt *s = bstmt(st, B_TOTALS);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->stored_bytes = (uint64_t)sqlite3_column_int64(s, 0);
        out->blocks = (uint64_t)sqlite3_column_int64(s, 1);
        out->segments = (uint64_t)sqlite3_column_int64(s, 2);
        out->tags = (uint64_t)sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    log_error("sqlite (totals): %s", sqlite3_errmsg(st->db));
    return -1;
}

int64_t store_stored_bytes(struct store *st)
{
    sqlite3_stmt *s = bstmt(st, B_STORED);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (n < 0)
        log_error("sqlite (stored bytes): %s", sqlite3_errmsg(st->db));
    return n;
}

int store_lru_segments(struct store *st, int64_t before, unsigned max, store_segment_fn fn,
    void *arg)
{
    sqlite3_stmt *s = bstmt(st, before < 0 ? B_LRU_ALL : B_LRU_BEFORE);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, max);
    if (before >= 0)
        sqlite3_bind_int64(s, 2, before);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(s, 0);
        if (len <= 0 || len > STORE_MAX_ID)
            continue;
        if (fn(arg, sqlite3_column_blob(s, 0), (size_t)len, sqlite3_column_int64(s, 1)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (segments by use): %s", sqlite3_errmsg(st->db));
    return -1;
}

/* Runs a DELETE ... RETURNING block, file_owner, length over one segment's rows: each row's
 * slot goes to reclaim at COMMIT. */
static int delete_segment_rows(struct store *st, sqlite3_stmt *s, const uint8_t *segment_id,
    size_t segment_id_len, uint64_t *bytes, uint64_t *rows)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        *bytes += (uint64_t)sqlite3_column_int64(s, 2);
        if (rows)
            (*rows)++;
        if (reclaim_push(st, segment_id, segment_id_len, sqlite3_column_int64(s, 1),
                (uint32_t)sqlite3_column_int64(s, 0)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (segment rows): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_evict_segment(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint64_t *bytes, uint64_t *blocks)
{
    sqlite3_stmt *l = bstmt(st, B_EV_LABELS), *b = bstmt(st, B_EV_BLOCKS), *u = bstmt(st, B_EV_USE);
    *bytes = *blocks = 0;
    if (!l || !b || !u || segment_id_len > STORE_MAX_ID)
        return -1;
    sqlite3_bind_blob(l, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    if (step_done(st, l) != 0)
        return -1;
    sqlite3_bind_blob(b, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    if (delete_segment_rows(st, b, segment_id, segment_id_len, bytes, blocks) != 0)
        return -1;
    sqlite3_bind_blob(u, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    if (step_done(st, u) != 0)
        return -1;
    if (sqlite3_get_autocommit(st->db))
        reclaim_handover(st);
    return 0;
}

int store_uids_over(struct store *st, uint64_t quota, store_uid_fn fn, void *arg)
{
    sqlite3_stmt *s = bstmt(st, B_UIDS_OVER);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, (int64_t)quota);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(arg, (uint32_t)sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1))) {
            rc = SQLITE_DONE;
            break;
        }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (uids over quota): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_uid_segments(struct store *st, uint32_t uid, unsigned max, store_uid_segment_fn fn,
    void *arg)
{
    sqlite3_stmt *s = bstmt(st, B_UID_SEGS);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(s, 0);
        if (len <= 0 || len > STORE_MAX_ID)
            continue;
        if (fn(arg, sqlite3_column_blob(s, 0), (size_t)len, (uint64_t)sqlite3_column_int64(s, 1))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (a uid's segments): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_uid_drop_segment(struct store *st, uint32_t uid, const uint8_t *segment_id,
    size_t segment_id_len, uint64_t *bytes_freed)
{
    sqlite3_stmt *l = bstmt(st, B_UID_LABELS), *b = bstmt(st, B_UID_BLOCKS);
    *bytes_freed = 0;
    if (!l || !b || segment_id_len > STORE_MAX_ID)
        return -1;
    sqlite3_bind_int64(l, 1, uid);
    sqlite3_bind_blob(l, 2, segment_id, (int)segment_id_len, SQLITE_STATIC);
    if (step_done(st, l) != 0)
        return -1;
    sqlite3_bind_int64(b, 1, uid);
    sqlite3_bind_blob(b, 2, segment_id, (int)segment_id_len, SQLITE_STATIC);
    if (delete_segment_rows(st, b, segment_id, segment_id_len, bytes_freed, NULL) != 0)
        return -1;
    if (sqlite3_get_autocommit(st->db))
        reclaim_handover(st);
    return 0;
}

int store_tags_info(struct store *st, bool all, uint32_t uid, store_tag_info_fn fn, void *arg)
{
    sqlite3_stmt *s = bstmt(st, all ? B_TAGS_ALL : B_TAGS_UID);
    if (!s)
        return -1;
    if (!all)
        sqlite3_bind_int64(s, 1, uid);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 1) != STORE_TAG_SIZE)
            continue;
        struct store_tag_info t;
        t.uid = (uint32_t)sqlite3_column_int64(s, 0);
        memcpy(t.tag, sqlite3_column_blob(s, 1), STORE_TAG_SIZE);
        t.blocks = (uint64_t)sqlite3_column_int64(s, 2);
        t.bytes = (uint64_t)sqlite3_column_int64(s, 3);
        t.segments = (uint64_t)sqlite3_column_int64(s, 4);
        t.added_at = sqlite3_column_int64(s, 5);
        t.last_used = sqlite3_column_int64(s, 6);
        fn(arg, &t);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    log_error("sqlite (tags): %s", sqlite3_errmsg(st->db));
    return -1;
}

/* ---- serving peers (schema 005; peer-serve.c) ---- */

enum {
    S_SECRET_PUT,
    S_SECRET_GET,
    S_SERVABLE,
    S_BLOCK,
    S_PRUNE,
    S_COUNT,
    S_META,
    S_NEXT,
};
static const char *const serve_sql[] = {
    /* The first binding wins: the ID is computed from hod and secret, so a second one for the
     * same ID carries the same values. */
    [S_SECRET_PUT] = "INSERT OR IGNORE INTO segment_secrets (segment_id, version, hod, secret, "
                     "blocks, length, stored_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_SECRET_GET] = "SELECT version, secret, blocks, length FROM segment_secrets "
                     "WHERE segment_id = ?1",
    /* Two queries, not a join: 512 rows cost about half as much (bench: 75 vs 140 us). */
    [S_META] = "SELECT version, blocks, length FROM segment_secrets WHERE segment_id = ?1",
    [S_SERVABLE] =
        "SELECT block, length, file_owner FROM blocks WHERE segment_id = ?1 AND owner = -1",
    [S_NEXT] = "SELECT min(block) FROM blocks WHERE segment_id = ?1 AND owner = -1 AND block > ?2",
    [S_BLOCK] = "SELECT file_owner, length, hash FROM blocks WHERE segment_id = ?1 AND block = ?2 "
                "AND owner = -1",
    [S_PRUNE] = "DELETE FROM segment_secrets WHERE NOT EXISTS (SELECT 1 FROM blocks b "
                "WHERE b.segment_id = segment_secrets.segment_id)",
    [S_COUNT] = "SELECT count(*) FROM segment_secrets",
};

static sqlite3_stmt *sstmt(struct store *st, int which)
{
    if (!st->serve[which] && prepare(st, &st->serve[which], serve_sql[which]) != 0)
        return NULL;
    return st->serve[which];
}

int store_segment_secret_put(struct store *st, const struct store_segment_secret *s, int64_t now)
{
    sqlite3_stmt *q = sstmt(st, S_SECRET_PUT);
    if (!q)
        return -1;
    sqlite3_bind_blob(q, 1, s->segment_id, (int)s->segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, s->version);
    sqlite3_bind_blob(q, 3, s->hod, (int)s->hod_len, SQLITE_STATIC);
    sqlite3_bind_blob(q, 4, s->secret, (int)s->secret_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, s->blocks);
    sqlite3_bind_int64(q, 6, s->length);
    sqlite3_bind_int64(q, 7, now);
    int rc = step_done(st, q);
    sqlite3_clear_bindings(q); /* the secret's buffer is the caller's */
    return rc;
}

int store_segment_secret_get(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    struct store_segment_secret *out)
{
    sqlite3_stmt *q = sstmt(st, S_SECRET_GET);
    if (!q)
        return -1;
    sqlite3_bind_blob(q, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    int rc = sqlite3_step(q), found = 0;
    if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(q, 1);
        if (n > 0 && n <= STORE_MAX_ID && segment_id_len <= STORE_MAX_ID) {
            memcpy(out->segment_id, segment_id, segment_id_len);
            out->segment_id_len = segment_id_len;
            out->version = sqlite3_column_int(q, 0);
            memcpy(out->secret, sqlite3_column_blob(q, 1), (size_t)n);
            out->secret_len = (size_t)n;
            out->hod_len = 0; /* not read back: serving needs the key only */
            out->blocks = (uint32_t)sqlite3_column_int64(q, 2);
            out->length = (uint64_t)sqlite3_column_int64(q, 3);
            found = 1;
        }
        rc = SQLITE_DONE;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return found;
    log_error("sqlite (segment secret): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_servable_blocks(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    store_servable_fn fn, void *arg)
{
    sqlite3_stmt *m = sstmt(st, S_META), *q = sstmt(st, S_SERVABLE);
    if (!m || !q)
        return -1;
    struct store_servable sv = {0};
    sqlite3_bind_blob(m, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    int rc = sqlite3_step(m);
    if (rc == SQLITE_ROW) {
        sv.version = sqlite3_column_int(m, 0);
        sv.blocks = (uint32_t)sqlite3_column_int64(m, 1);
        sv.length = (uint64_t)sqlite3_column_int64(m, 2);
    }
    sqlite3_reset(m);
    if (rc == SQLITE_DONE)
        return 0; /* no secret: nothing of it is served */
    if (rc != SQLITE_ROW)
        goto fail;
    sqlite3_bind_blob(q, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sv.block = (uint32_t)sqlite3_column_int64(q, 0);
        sv.block_length = (uint32_t)sqlite3_column_int64(q, 1);
        sv.file_owner = sqlite3_column_int64(q, 2);
        if (fn(arg, &sv) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return 0;
fail:
    log_error("sqlite (servable blocks): %s", sqlite3_errmsg(st->db));
    return -1;
}

int64_t store_next_served_block(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t after)
{
    sqlite3_stmt *q = sstmt(st, S_NEXT);
    if (!q)
        return -1;
    sqlite3_bind_blob(q, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, after);
    int rc = sqlite3_step(q);
    int64_t next = rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL
        ? sqlite3_column_int64(q, 0)
        : -2;
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return next == -2 ? 0 : next;
    log_error("sqlite (next served block): %s", sqlite3_errmsg(st->db));
    return -1;
}

int store_served_block(struct store *st, const uint8_t *segment_id, size_t segment_id_len,
    uint32_t block, struct store_block_row *out)
{
    sqlite3_stmt *q = sstmt(st, S_BLOCK);
    if (!q)
        return -1;
    sqlite3_bind_blob(q, 1, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, block);
    int rc = sqlite3_step(q), found = 0;
    if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(q, 2);
        if (n > 0 && n <= STORE_MAX_ID) {
            out->block = block;
            out->owner = STORE_OWNER_SHARED;
            out->file_owner = sqlite3_column_int64(q, 0);
            out->length = (uint32_t)sqlite3_column_int64(q, 1);
            out->hash_len = (size_t)n;
            memcpy(out->hash, sqlite3_column_blob(q, 2), (size_t)n);
            found = 1;
        }
        rc = SQLITE_DONE;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return found;
    log_error("sqlite (served block): %s", sqlite3_errmsg(st->db));
    return -1;
}

int64_t store_segment_secrets_prune(struct store *st)
{
    sqlite3_stmt *q = sstmt(st, S_PRUNE);
    if (!q || step_done(st, q) != 0)
        return -1;
    return sqlite3_changes(st->db);
}

int64_t store_segment_secrets_count(struct store *st)
{
    sqlite3_stmt *q = sstmt(st, S_COUNT);
    if (!q)
        return -1;
    int64_t n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_reset(q);
    return n;
}

uint64_t store_rows_replaced(const struct store *st)
{
    return st->replaced;
}
