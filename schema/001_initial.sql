-- SPDX-License-Identifier: MIT
-- 001_initial.sql: labels, the record of what each (uid, tag) added to the cache.
-- PeerDistClientFlushContent(tag) is one indexed delete of the caller's rows here.
CREATE TABLE labels (
    uid        INTEGER NOT NULL,
    tag        BLOB    NOT NULL CHECK (length(tag) = 16),
    segment_id BLOB    NOT NULL,
    block      INTEGER NOT NULL CHECK (block >= 0),
    added_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (uid, tag, segment_id, block)
) WITHOUT ROWID;

-- What still refers to a block, once a flush removed some labels.
CREATE INDEX labels_by_block ON labels (segment_id, block);

-- Inspection view for administrators (sqlite3 -readonly cache.db 'SELECT * FROM v_tags').
CREATE VIEW v_tags AS
    SELECT uid, lower(hex(tag)) AS tag, count(*) AS blocks, max(added_at) AS last_added
    FROM labels GROUP BY uid, tag;
