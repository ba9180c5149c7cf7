-- Deferred secondary indexes. An order's idempotency record and its read row land at random
-- places of their look-up indexes (random key hashes, many owners), and on the hot SKU bench
-- those two random inserts in the acknowledging commit cost more than everything else the
-- commit writes (docs/BENCHMARKS.md). So both tables are now appended in `pos` order only, and
-- their look-up indexes are separate tables that the journal writer fills in sorted batches
-- behind a watermark (`deferred_indexes.upto_pos`). Look-ups read the index for rows up to the
-- watermark and scan the short unindexed tail after it, in one statement, so they never miss a
-- committed row.

CREATE TABLE deferred_indexes (
    name TEXT PRIMARY KEY,
    upto_pos INTEGER NOT NULL
);

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
CREATE INDEX idempotency_created ON idempotency (created_at_ms);

CREATE TABLE idempotency_by_hash (
    key_hash INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    PRIMARY KEY (key_hash, pos)
) WITHOUT ROWID;
INSERT INTO idempotency_by_hash (key_hash, pos) SELECT key_hash, pos FROM idempotency;
INSERT INTO deferred_indexes (name, upto_pos)
    SELECT 'idempotency', COALESCE(MAX(pos), 0) FROM idempotency;

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

CREATE TABLE read_rows_by_owner (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (kind, owner, id)
) WITHOUT ROWID;
INSERT INTO read_rows_by_owner (kind, owner, id) SELECT kind, owner, id FROM read_rows;
INSERT INTO deferred_indexes (name, upto_pos)
    SELECT 'read_rows', COALESCE(MAX(pos), 0) FROM read_rows;
