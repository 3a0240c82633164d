/*
 * store.h - the cache's SQLite database: opening it in WAL mode, applying the
 * schema migrations, and the label operations behind PeerDistClientFlushContent.
 * One thread owns a struct store (the event loop's thread in peerdistd).
 */
#ifndef PEERDIST_STORE_H
#define PEERDIST_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define STORE_TAG_SIZE 16
#define STORE_BUSY_TIMEOUT_MS 5000

struct store;

/* Opens (creating if needed) and migrates the database. -1 with a message in err. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *st);

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

/* Records that (uid, tag) added block `block` of segment `segment_id`. */
int store_label_add(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    const uint8_t *segment_id, size_t segment_id_len, uint32_t block);
/* Removes every label of (uid, tag); *removed gets how many. */
int store_flush_tag(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE],
    uint64_t *removed);
/* Number of labels (uid, tag) holds; -1 on error. */
int64_t store_tag_labels(struct store *st, uint32_t uid, const uint8_t tag[STORE_TAG_SIZE]);

/* Bytes on disk: the database file and its WAL. */
uint64_t store_disk_bytes(const struct store *st);
const char *store_path(const struct store *st);
sqlite3 *store_db(struct store *st);

#endif
