-- Deferred secondary indexes (see migrations/sqlite/0003_deferred_indexes.sql for the why).
-- Idempotency records and read rows are appended in `pos` order (one writer connection commits
-- them, so `pos` order is commit order); their look-up indexes are separate tables the journal
-- writer fills in sorted batches behind `deferred_indexes.upto_pos`.

CREATE TABLE deferred_indexes (
    name TEXT PRIMARY KEY,
    upto_pos BIGINT NOT NULL
);

ALTER TABLE idempotency ADD COLUMN pos BIGSERIAL PRIMARY KEY;
DROP INDEX idempotency_hash;
-- `pos` follows creation: the purge and the warm-up walk it instead of a created_at index.
DROP INDEX idempotency_created;
CREATE TABLE idempotency_by_hash (
    key_hash BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (key_hash, pos)
);
INSERT INTO idempotency_by_hash (key_hash, pos) SELECT key_hash, pos FROM idempotency;
INSERT INTO deferred_indexes (name, upto_pos)
    SELECT 'idempotency', COALESCE(MAX(pos), 0) FROM idempotency;

ALTER TABLE read_rows ADD COLUMN pos BIGSERIAL;
CREATE UNIQUE INDEX read_rows_pos ON read_rows (pos);
DROP INDEX read_rows_owner;
CREATE TABLE read_rows_by_owner (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (kind, owner, id)
);
INSERT INTO read_rows_by_owner (kind, owner, id) SELECT kind, owner, id FROM read_rows;
INSERT INTO deferred_indexes (name, upto_pos)
    SELECT 'read_rows', COALESCE(MAX(pos), 0) FROM read_rows;
