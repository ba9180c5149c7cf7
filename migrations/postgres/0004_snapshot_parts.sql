-- Large snapshots are written in parts (see migrations/sqlite/0004_snapshot_parts.sql).
ALTER TABLE snapshots ADD COLUMN parts BIGINT NOT NULL DEFAULT 0;
CREATE TABLE snapshot_parts (
    pid TEXT NOT NULL,
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (pid, seq, n)
);
