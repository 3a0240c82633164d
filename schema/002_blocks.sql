-- SPDX-License-Identifier: MIT
-- 002_blocks.sql: the block index. A row says "these verified bytes are on disk and readable";
-- the bytes themselves live in data files beside the database (docs/cache.md).
-- owner -1: the block's hash is bound to the segment ID (a full V1 hash list that hashes to
-- HoD, or V2 segment bytes that hash to HoD): readable by every handle listing that hash.
-- owner = uid: verified against a partial (ranged) list of that uid only; readable by that
-- uid's handles listing the same hash, until a full list verifies and promotes it to -1.
-- file_owner names the file holding the bytes: -1 data/xx/<id>, else data/xx/<id>.<uid>;
-- the bytes sit at block * 65536 (V1) or 0 (V2, block 0 = the whole segment).
CREATE TABLE blocks (
    segment_id BLOB    NOT NULL,
    block      INTEGER NOT NULL CHECK (block >= 0),
    owner      INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    length     INTEGER NOT NULL CHECK (length > 0),
    file_owner INTEGER NOT NULL,
    PRIMARY KEY (segment_id, block, owner)
) WITHOUT ROWID;

CREATE INDEX blocks_by_file ON blocks (segment_id, file_owner, block);

-- Bytes each label stands for, so listing a tag needs no join (0 on rows from version 1).
ALTER TABLE labels ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;

-- Inspection view: the block index, one row per stored block.
CREATE VIEW v_blocks AS
    SELECT lower(hex(segment_id)) AS segment_id, block, owner = -1 AS shared,
           CASE owner WHEN -1 THEN NULL ELSE owner END AS private_uid, length
    FROM blocks;
