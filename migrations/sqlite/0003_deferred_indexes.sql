-- Deferred secondary indexes. An order's idempotency record and its read row land at random
-- places of their look-up indexes (random key hashes, many owners), and on the hot SKU bench
-- those two random inserts in the acknowledging commit cost more than everything else the
-- commit writes (docs/BENCHMARKS.md). So both tables are now appended in `pos` order only, and
-- their look-up indexes (idempotency_by_hash, read_rows_by_owner, with their watermarks in
-- deferred_indexes) live in a second file, surge-index.db, that a background indexer fills in
-- sorted batches (see src/persistence/sql.rs, INDEX_SCHEMA). Look-ups read the index for rows
-- up to the watermark and scan the short unindexed tail after it, in one statement, so they
-- never miss a committed row. The old indexes are dropped with the tables below.

-- Idempotency records, appended; `pos` is their commit order.
CREATE TABLE idempotency_v3 (
    pos INTEGER PRIMARY KEY,
    key_hash INTEGER NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO idempotency_v3 (pos, key_hash, scope, key, fingerprint, status, body, created_at_ms)
    SELECT rowid, key_hash, scope, key, fingerprint, status, body, created_at_ms
    FROM idempotency ORDER BY rowid;
DROP TABLE idempotency;
ALTER TABLE idempotency_v3 RENAME TO idempotency;
-- No index on created_at_ms either: `pos` follows creation, so the purge and the start-up
-- warm-up find their boundary by walking `pos` from the oldest row.

-- Read rows, appended; an update keeps the row's `pos`. The owner never changes.
CREATE TABLE read_rows_v3 (
    pos INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
INSERT INTO read_rows_v3 (pos, kind, id, owner, created_at_ms, status, body)
    SELECT rowid, kind, id, owner, created_at_ms, status, body FROM read_rows ORDER BY rowid;
DROP TABLE read_rows;
ALTER TABLE read_rows_v3 RENAME TO read_rows;
-- Ids are UUIDv7, so this unique index is appended to as well.
CREATE UNIQUE INDEX read_rows_id ON read_rows (kind, id);
