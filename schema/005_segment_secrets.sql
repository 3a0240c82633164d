-- SPDX-License-Identifier: MIT
-- 005_segment_secrets.sql: what distributed mode needs to serve a segment to peers
-- (MS-PCCRR, docs/peerdistd.8.md, Serving peers): the segment secret Kp that encrypts its
-- blocks, its HoD, its version and its size. A row is written when a reader's content
-- information binds the segment (a V1 full block-hash list that hashes to HoD, or any V2
-- segment): the same rule that makes its blocks shared (blocks.owner -1). No view shows it.

CREATE TABLE segment_secrets (
    segment_id BLOB    NOT NULL PRIMARY KEY, -- HoHoDk, recomputed from hod and secret
    version    INTEGER NOT NULL,             -- content information version: 1 or 2
    hod        BLOB    NOT NULL,             -- HoD
    secret     BLOB    NOT NULL,             -- Kp (SegmentSecret): never in a view or a log
    blocks     INTEGER NOT NULL,             -- blocks of the whole segment (V2: 1)
    length     INTEGER NOT NULL,             -- bytes of the whole segment
    stored_at  INTEGER NOT NULL              -- Unix seconds, peerdistd's clock
) WITHOUT ROWID;

-- A segment whose last block row goes (flush, eviction, a bad block) is no longer served:
-- its secret goes with it. peerdistd also drops, at start, secrets of segments without blocks
-- (bound by a reader whose blocks never came).
CREATE TRIGGER segment_secrets_unused AFTER DELETE ON blocks
    WHEN NOT EXISTS (SELECT 1 FROM blocks WHERE segment_id = OLD.segment_id)
BEGIN
    DELETE FROM segment_secrets WHERE segment_id = OLD.segment_id;
END;
