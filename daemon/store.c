/*
 * store.c - SQLite behind the cache: WAL journal, numbered migrations tracked
 * with PRAGMA user_version, and prepared statements for the label operations.
 * Acknowledged changes are committed before the reply leaves the daemon; with
 * WAL and synchronous=NORMAL a daemon crash loses nothing committed, a power
 * loss may roll back the last commits (the cache forgets, never serves wrong).
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *label_add, *flush_tag, *tag_labels;
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

static int prepare_all(struct store *st)
{
    return prepare(st, &st->begin, "BEGIN IMMEDIATE") || prepare(st, &st->commit, "COMMIT") ||
           prepare(st, &st->rollback, "ROLLBACK") ||
           prepare(st, &st->label_add,
               "INSERT OR IGNORE INTO labels (uid, tag, segment_id, block) VALUES (?, ?, ?, ?)") ||
           prepare(st, &st->flush_tag, "DELETE FROM labels WHERE uid = ? AND tag = ?") ||
           prepare(st, &st->tag_labels, "SELECT count(*) FROM labels WHERE uid = ? AND tag = ?");
}

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(st);
        return -1;
    }
    int rc = sqlite3_open_v2(path, &st->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    char *msg = NULL;
    if (sqlite3_exec(st->db,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
            NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (store_migrate(st->db, schema_migrations, schema_migration_count, err, errlen) != 0)
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

void store_close(struct store *st)
{
    if (!st)
        return;
    sqlite3_stmt *all[] = {st->begin, st->commit, st->rollback, st->label_add, st->flush_tag,
        st->tag_labels};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
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

int store_commit(struct store *st)
{
    return step_done(st, st->commit);
}

void store_rollback(struct store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        step_done(st, st->rollback);
}

static void bind_owner(sqlite3_stmt *s, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE])
{
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_blob(s, 2, tag, STORE_TAG_SIZE, SQLITE_STATIC);
}

int store_label_add(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    const uint8_t *segment_id, size_t segment_id_len, uint32_t block)
{
    bind_owner(st->label_add, uid, tag);
    sqlite3_bind_blob(st->label_add, 3, segment_id, (int)segment_id_len, SQLITE_STATIC);
    sqlite3_bind_int64(st->label_add, 4, block);
    return step_done(st, st->label_add);
}

int store_flush_tag(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    uint64_t *removed)
{
    bind_owner(st->flush_tag, uid, tag);
    if (step_done(st, st->flush_tag) != 0)
        return -1;
    *removed = (uint64_t)sqlite3_changes64(st->db);
    return 0;
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
