-- Large snapshots are written in parts, one part per commit between group commits, so that a
-- multi-megabyte state never holds up the journal for the whole of its write. `snapshots.parts`
-- is 0 for a snapshot whose payload is inline, else the number of rows of `snapshot_parts`
-- (pid, seq, n) that hold it. Parts of a snapshot that never became current are deleted when the
-- pid's next snapshot is written.
ALTER TABLE snapshots ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE snapshot_parts (
    pid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (pid, seq, n)
) WITHOUT ROWID;
