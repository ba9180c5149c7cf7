-- The journal: every entity's events in one table, in global commit order (position).
CREATE TABLE journal (
    position INTEGER PRIMARY KEY,
    pid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (pid, seq)
);

-- Latest snapshot per entity.
CREATE TABLE snapshots (
    pid TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
) WITHOUT ROWID;

-- The next deadline of each entity that has one; written in the same transaction as the event
-- that set it.
CREATE TABLE deadlines (
    pid TEXT PRIMARY KEY,
    due_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deadlines_due ON deadlines (due_at_ms);

-- Idempotency records, committed with the events they caused. Rows are appended; lookups go
-- through a compact index on a stable 64-bit hash of (scope, key) and then compare the two.
-- (A unique index on the (scope, key) text itself halved the hot path's throughput: measured
-- 12.2k vs 21.4k orders/s without it, 14.7k with this hash index.) Uniqueness is kept by the
-- in-flight guard and the look-up that precede every insert.
CREATE TABLE idempotency (
    key_hash INTEGER NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX idempotency_hash ON idempotency (key_hash);
CREATE INDEX idempotency_created ON idempotency (created_at_ms);

-- Read rows for lists across entities (a user's orders), written with the events. A rowid
-- table for the same reason as idempotency: bodies are appended, indexes stay compact.
CREATE TABLE read_rows (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX read_rows_id ON read_rows (kind, id);
-- Lists are newest first by id: ids are UUIDv7, so they sort by creation time.
CREATE INDEX read_rows_owner ON read_rows (kind, owner, id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
