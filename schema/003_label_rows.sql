-- SPDX-License-Identifier: MIT
-- 003_label_rows.sql: each label names the block row it keeps alive (labels.row_owner, the
-- row's blocks.owner: -1 the shared row, else the labelling uid's private row). A flush then
-- releases exactly what only the flushing uid's labels keep: a label on a uid's own private
-- (possibly forged) block no longer keeps another user's shared block of the same number.

-- Rows naming one slot of a data file with different hashes cannot all match its bytes (the
-- later write replaced them): none of them is trusted any more. Collected first, so that the
-- labels made for them are known and go with them.
CREATE TEMP TABLE v3_untrusted AS
    SELECT segment_id, block, owner FROM blocks WHERE EXISTS (
        SELECT 1 FROM blocks o
        WHERE o.segment_id = blocks.segment_id AND o.file_owner = blocks.file_owner
          AND o.block = blocks.block AND o.hash <> blocks.hash);

-- The table is rebuilt: row_owner joins the primary key (one tag of one uid may label both
-- the shared row and its own private row of a block, each label keeping its own row).
DROP VIEW v_tags;
CREATE TABLE labels_v3 (
    uid        INTEGER NOT NULL,
    tag        BLOB    NOT NULL CHECK (length(tag) = 16),
    segment_id BLOB    NOT NULL,
    block      INTEGER NOT NULL CHECK (block >= 0),
    added_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    bytes      INTEGER NOT NULL DEFAULT 0,
    -- -1: the shared row; otherwise the labelling uid's own (never another uid's). A label
    -- written by hand without it names the shared row.
    row_owner  INTEGER NOT NULL DEFAULT -1 CHECK (row_owner = -1 OR row_owner = uid),
    PRIMARY KEY (uid, tag, segment_id, block, row_owner)
) WITHOUT ROWID;

-- Existing labels: the shared row where there is one, else the labelling uid's.
INSERT INTO labels_v3 (uid, tag, segment_id, block, added_at, bytes, row_owner)
    SELECT uid, tag, segment_id, block, added_at, bytes,
           CASE WHEN EXISTS (SELECT 1 FROM blocks b WHERE b.segment_id = l.segment_id
                             AND b.block = l.block AND b.owner = -1) THEN -1 ELSE uid END
    FROM labels l;

DELETE FROM blocks WHERE (segment_id, block, owner) IN
    (SELECT segment_id, block, owner FROM temp.v3_untrusted);
DELETE FROM labels_v3 WHERE (segment_id, block, row_owner) IN
    (SELECT segment_id, block, owner FROM temp.v3_untrusted);
DROP TABLE temp.v3_untrusted;

DROP TABLE labels;
ALTER TABLE labels_v3 RENAME TO labels;

-- What still keeps a row, once a flush removed some labels (replaces labels_by_block).
CREATE INDEX labels_by_row ON labels (segment_id, block, row_owner);

CREATE VIEW v_tags AS
    SELECT uid, lower(hex(tag)) AS tag, count(*) AS blocks, max(added_at) AS last_added
    FROM labels GROUP BY uid, tag;
