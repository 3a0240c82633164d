-- SPDX-License-Identifier: MIT
-- 004_cache_bounds.sql: what the cache's bounds need (docs/cache.md, Bounds and eviction):
-- when each segment was added and last used, counters kept across restarts, the limits in
-- force, and read-only views for administrators. Every timestamp is written by peerdistd
-- (Unix seconds from its one clock), never by an SQL default.

-- One row per segment with stored blocks. last_used: the last add or read of any of its
-- blocks (reads are recorded in memory and written in batches, so it may lag a minute).
CREATE TABLE segment_use (
    segment_id BLOB    NOT NULL PRIMARY KEY,
    added_at   INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
) WITHOUT ROWID;

-- Eviction takes the least recently used segments first.
CREATE INDEX segment_use_by_last_used ON segment_use (last_used);

-- Segments stored before this version: added and last used when their first label was made
-- (or, without labels, when the newest label of the cache was).
INSERT OR IGNORE INTO segment_use (segment_id, added_at, last_used)
    SELECT b.segment_id,
           coalesce((SELECT min(l.added_at) FROM labels l WHERE l.segment_id = b.segment_id),
                    (SELECT max(added_at) FROM labels), 0),
           coalesce((SELECT min(l.added_at) FROM labels l WHERE l.segment_id = b.segment_id),
                    (SELECT max(added_at) FROM labels), 0)
    FROM (SELECT DISTINCT segment_id FROM blocks) b;

-- Counters, kept across restarts (bytes): hits, misses, added, evicted_size, evicted_age,
-- flushed. peerdistd adds to them; nothing else writes them.
CREATE TABLE cache_counters (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO cache_counters (name, value) VALUES
    ('hits', 0), ('misses', 0), ('added', 0), ('evicted_size', 0), ('evicted_age', 0),
    ('flushed', 0);

-- The bounds in force, as peerdistd resolved them (limit_bytes: cache_size in bytes; max_age_s;
-- uid_quota: 0 off), so that the views can compare the cache against them.
CREATE TABLE cache_settings (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO cache_settings (name, value) VALUES
    ('limit_bytes', 0), ('max_age_s', 0), ('uid_quota', 0);

-- Tags, richer: segments, bytes, first add and last use (Unix seconds and UTC text), and the
-- tag in GUID text as Windows lays a GUID out (first three groups little-endian).
DROP VIEW v_tags;
CREATE VIEW v_tags AS
    SELECT t.uid,
           lower(hex(t.tag)) AS tag,
           '{' || lower(hex(substr(t.tag, 4, 1)) || hex(substr(t.tag, 3, 1)) ||
                 hex(substr(t.tag, 2, 1)) || hex(substr(t.tag, 1, 1))) || '-' ||
                  lower(hex(substr(t.tag, 6, 1)) || hex(substr(t.tag, 5, 1))) || '-' ||
                  lower(hex(substr(t.tag, 8, 1)) || hex(substr(t.tag, 7, 1))) || '-' ||
                  lower(hex(substr(t.tag, 9, 2))) || '-' ||
                  lower(hex(substr(t.tag, 11, 6))) || '}' AS guid,
           t.blocks, t.bytes, t.segments,
           t.added_at, datetime(t.added_at, 'unixepoch') AS added_at_utc,
           t.last_used, datetime(t.last_used, 'unixepoch') AS last_used_utc,
           t.last_added
    FROM (SELECT l.uid, l.tag, count(*) AS blocks, sum(l.bytes) AS bytes,
                 count(DISTINCT l.segment_id) AS segments, min(l.added_at) AS added_at,
                 max(l.added_at) AS last_added,
                 max(coalesce(u.last_used, l.added_at)) AS last_used
          FROM labels l LEFT JOIN segment_use u ON u.segment_id = l.segment_id
          GROUP BY l.uid, l.tag) t;

-- Segments by recency: what eviction would take first comes first.
CREATE VIEW v_segments AS
    SELECT lower(hex(u.segment_id)) AS segment_id,
           (SELECT count(*) FROM blocks b WHERE b.segment_id = u.segment_id) AS blocks,
           (SELECT coalesce(sum(length), 0) FROM blocks b WHERE b.segment_id = u.segment_id)
               AS bytes,
           u.added_at, datetime(u.added_at, 'unixepoch') AS added_at_utc,
           u.last_used, datetime(u.last_used, 'unixepoch') AS last_used_utc
    FROM segment_use u ORDER BY u.last_used;

-- The whole cache against its limit.
CREATE VIEW v_cache AS
    SELECT (SELECT coalesce(sum(length), 0) FROM blocks) AS stored_bytes,
           (SELECT value FROM cache_settings WHERE name = 'limit_bytes') AS limit_bytes,
           (SELECT count(*) FROM blocks) AS blocks,
           (SELECT count(DISTINCT segment_id) FROM blocks) AS segments,
           (SELECT count(*) FROM (SELECT DISTINCT uid, tag FROM labels)) AS tags,
           (SELECT value FROM cache_settings WHERE name = 'max_age_s') AS max_age_s,
           (SELECT value FROM cache_settings WHERE name = 'uid_quota') AS uid_quota;

-- The counters, one column each (bytes).
CREATE VIEW v_counters AS
    SELECT (SELECT value FROM cache_counters WHERE name = 'hits') AS hits_bytes,
           (SELECT value FROM cache_counters WHERE name = 'misses') AS misses_bytes,
           (SELECT value FROM cache_counters WHERE name = 'added') AS added_bytes,
           (SELECT value FROM cache_counters WHERE name = 'evicted_size') +
           (SELECT value FROM cache_counters WHERE name = 'evicted_age') AS evicted_bytes,
           (SELECT value FROM cache_counters WHERE name = 'evicted_size') AS evicted_size_bytes,
           (SELECT value FROM cache_counters WHERE name = 'evicted_age') AS evicted_age_bytes,
           (SELECT value FROM cache_counters WHERE name = 'flushed') AS flushed_bytes;
