//! The [`Store`] on SQLite and on PostgreSQL. Both run the same SQL text (SQLite accepts `$N`
//! parameters); only connection set-up and the migration files differ, so one macro writes
//! both implementations and one test suite covers both.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use super::idempotency::stored_key_hash;
use super::sqlite_journal::{SqliteJournal, SqliteJournalOptions};
use super::*;
use crate::config::{DatabaseSettings, SqliteSynchronous as SyncSetting};

pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection commits go through (see [`SqliteJournal`]): SQLite has one writer
    /// anyway, and a single connection keeps the hot pages in its cache.
    journal: Arc<SqliteJournal>,
    /// The one connection that fills the deferred indexes. They live in a second database
    /// file (attached as `ix` to every connection), so filling them takes that file's write
    /// lock and never the journal's: index steps run beside group commits, not between them.
    indexer: SqlitePool,
    checkpointer: tokio::task::AbortHandle,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// The writer checkpoints every 1000 pages of WAL (SQLite's default, ~4 MiB), which is what
/// restarts the WAL; the background checkpointer has done most of the copying by then.
/// Measured on the hot-SKU bench (15 s, FULL): 1000 pages gave p99 18 ms at 7.8k orders/s,
/// 2000 pages 24 ms at 8.7k/s, 10000 pages 31 ms at 10k/s, 65536 pages 96 ms; a background
/// checkpointer alone let the WAL grow to 7 GB.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 1000;

/// How often a PASSIVE checkpoint copies the WAL back beside the writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Runs until the store is dropped. PASSIVE checkpoints never block the writer; they do most
/// of the copying in the background, so the writer's own checkpoint (every 1000 pages of WAL,
/// which is what lets the WAL restart from the beginning) finds little left to copy and
/// stalls its group commit only briefly.
fn spawn_checkpointer(pool: SqlitePool) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
        loop {
            ticks.tick().await;
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::warn!(%error, "background WAL checkpoint failed; retrying");
            }
        }
    })
    .abort_handle()
}

pub struct PostgresStore {
    pool: PgPool,
    writer: PgPool,
    /// PostgreSQL locks rows, not the database: index steps run on a pooled connection,
    /// beside the journal writer's commits.
    indexer: PgPool,
}

/// Opens the store the settings name: PostgreSQL when `database.url` is set, else SQLite at
/// `<data_dir>/surge.db`. Runs the migrations.
pub async fn connect(
    db: &DatabaseSettings,
    data_dir: &std::path::Path,
) -> anyhow::Result<SharedStore> {
    let store: SharedStore = if db.url.trim().is_empty() {
        std::fs::create_dir_all(data_dir)?;
        Arc::new(SqliteStore::open(&data_dir.join("surge.db"), db).await?)
    } else {
        let schema = Some(db.schema.as_str()).filter(|s| !s.is_empty());
        Arc::new(PostgresStore::open(&db.url, schema, db).await?)
    };
    store.migrate().await?;
    Ok(store)
}

/// The deferred indexes of a SQLite store, in their own file beside the journal. Everything
/// in it is derived from the journal's tables and rebuilt from them when the file is missing
/// (a fresh file starts with watermark 0), so it is committed with `synchronous=NORMAL`.
const INDEX_SCHEMA: &str = "\
    CREATE TABLE IF NOT EXISTS deferred_indexes (
        name TEXT PRIMARY KEY,
        upto_pos INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO deferred_indexes (name, upto_pos)
        VALUES ('idempotency', 0), ('read_rows', 0);
    CREATE TABLE IF NOT EXISTS idempotency_by_hash (
        key_hash INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        PRIMARY KEY (key_hash, pos)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS read_rows_by_owner (
        kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (kind, owner, id)
    ) WITHOUT ROWID;";

/// `<dir>/surge.db` keeps its deferred indexes in `<dir>/surge-index.db`.
pub fn sqlite_index_path(path: &std::path::Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "surge".to_string(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-index.db"))
}

impl SqliteStore {
    pub async fn open(path: &std::path::Path, db: &DatabaseSettings) -> anyhow::Result<Self> {
        let synchronous = match db.sqlite_synchronous {
            SyncSetting::Full => SqliteSynchronous::Full,
            SyncSetting::Normal => SqliteSynchronous::Normal,
        };
        let index_path = sqlite_index_path(path);
        create_index_file(&index_path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let pools = |connections: u32, options: SqliteConnectOptions, ix_cache_kib: i64| {
            let index_path = index_path.to_string_lossy().into_owned();
            SqlitePoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(db.connect_timeout_secs))
                // Connections live as long as the store: a reopened writer would start with a
                // cold page cache.
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(move |conn, _meta| {
                    let index_path = index_path.clone();
                    Box::pin(async move {
                        sqlx::query("ATTACH DATABASE $1 AS ix")
                            .bind(index_path)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA ix.synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(&format!("PRAGMA ix.cache_size = -{ix_cache_kib}"))
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
        };
        // SQLite's default page cache (2 MiB) for the index file, but the indexer's own
        // connection, whose inserts land all over it, gets 32 MiB.
        let pool = pools(db.max_connections.max(2), options.clone(), 2048).await?;
        // The journal's connection alone gets 64 MiB of page cache, so the hot index pages stay
        // in memory; readers keep SQLite's default (2 MiB each).
        let journal = Arc::new(SqliteJournal::open(
            path,
            &SqliteJournalOptions {
                pipelined_fsync: matches!(synchronous, SqliteSynchronous::Full),
                cache_size_kib: 65_536,
                wal_autocheckpoint_pages: WAL_AUTOCHECKPOINT_PAGES,
            },
        )?);
        let indexer = pools(1, options, 32768).await?;
        let checkpointer = spawn_checkpointer(pool.clone());
        Ok(SqliteStore {
            pool,
            journal,
            indexer,
            checkpointer,
        })
    }
}

impl SqliteStore {
    fn journal_defers_sync(&self) -> bool {
        self.journal.defers_sync()
    }

    async fn journal_sync(&self) -> StoreResult<()> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.sync())
            .await
            .map_err(|e| StoreError::Unavailable(format!("WAL fsync task: {e}")))?
    }

    fn journal_blocking(&self) -> Option<Arc<dyn BlockingJournal>> {
        Some(self.journal.clone())
    }

    /// For callers other than the journal writer (which calls the connection directly, see
    /// [`JournalStore::blocking`]): the rows are copied for a blocking thread.
    async fn commit_group(&self, parts: &[&Batch]) -> StoreResult<()> {
        let journal = self.journal.clone();
        let batches: Vec<Batch> = parts.iter().map(|b| (*b).clone()).collect();
        tokio::task::spawn_blocking(move || {
            let parts: Vec<&Batch> = batches.iter().collect();
            journal.commit_parts(&parts)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("journal commit task: {e}")))?
    }
}

impl PostgresStore {
    /// PostgreSQL commits durably (`synchronous_commit = on`) before it answers.
    fn journal_defers_sync(&self) -> bool {
        false
    }

    async fn journal_sync(&self) -> StoreResult<()> {
        Ok(())
    }

    fn journal_blocking(&self) -> Option<Arc<dyn BlockingJournal>> {
        None
    }
}

/// Creates the index file and its tables once, before any pool attaches it (switching a file
/// to WAL from several connections at once could fail with SQLITE_BUSY).
async fn create_index_file(index_path: &std::path::Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    let options = SqliteConnectOptions::new()
        .filename(index_path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::raw_sql(INDEX_SCHEMA).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

impl PostgresStore {
    /// `schema`, when given, is created if missing and used as the search path (tests give
    /// each server its own schema in one database).
    pub async fn open(
        url: &str,
        schema: Option<&str>,
        db: &DatabaseSettings,
    ) -> anyhow::Result<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            anyhow::ensure!(
                schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "schema names are [A-Za-z0-9_]"
            );
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(db.connect_timeout_secs))
                .connect_with(options.clone())
                .await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&admin)
                .await?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(db.connect_timeout_secs))
            .connect_with(options.clone())
            .await?;
        let writer = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(db.connect_timeout_secs))
            .connect_with(options)
            .await?;
        Ok(PostgresStore {
            indexer: pool.clone(),
            pool,
            writer,
        })
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("sequence numbers fit in i64")
}

fn to_u64(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative value {value}")))
}

fn event_from_row(
    (pid, seq, at_ms, payload): (String, i64, i64, Vec<u8>),
) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        pid,
        seq: to_u64(seq)?,
        at_ms,
        payload,
    })
}

/// The batches of one group commit, read in place: no row is copied to combine them.
struct Parts<'a>(&'a [&'a Batch]);

impl<'a> Parts<'a> {
    fn rows<T>(&self, of: impl Fn(&'a Batch) -> &'a Vec<T>) -> Vec<&'a T> {
        self.0.iter().flat_map(|b| of(b).iter()).collect()
    }
}

type UserRow = (String, String, String, String, String, i64);

fn user_from_row((id, email, name, password_hash, roles, created_at_ms): UserRow) -> User {
    User {
        id,
        email,
        name,
        password_hash,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_ms,
    }
}

type ReadRowTuple = (String, String, String, i64, String, String);

/// Row sizes of multi-row statements. Only these sizes are used, so the SQL texts repeat and
/// stay prepared in the connection's statement cache instead of being parsed every batch.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// Splits `items` into chunks whose sizes are all in [`CHUNK_SIZES`].
fn fixed_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    for size in CHUNK_SIZES {
        while items.len() >= size {
            let (chunk, rest) = items.split_at(size);
            chunks.push(chunk);
            items = rest;
        }
    }
    chunks
}

const READ_ROW_COLUMNS: &str = "SELECT kind, id, owner, created_at_ms, status, body FROM read_rows";

fn push_before<'q, DB: sqlx::Database>(query: &mut QueryBuilder<'q, DB>, cursor: Option<&'q str>)
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if let Some(cursor) = cursor {
        query.push(" AND id < ").push_bind(cursor);
    }
}

fn push_status<'q, DB: sqlx::Database>(query: &mut QueryBuilder<'q, DB>, status: Option<&'q str>)
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if let Some(status) = status {
        query.push(" AND status = ").push_bind(status);
    }
}

/// A key's record through the hash index (rows up to the watermark) or in the unindexed tail.
const IDEMPOTENCY_GET_EVERYWHERE: &str = "\
    SELECT i.fingerprint, i.status, i.body, i.created_at_ms \
    FROM idempotency_by_hash h JOIN idempotency i ON i.pos = h.pos \
    WHERE h.key_hash = $1 AND i.scope = $2 AND i.key = $3 \
    UNION ALL \
    SELECT fingerprint, status, body, created_at_ms FROM idempotency \
    WHERE pos > (SELECT upto_pos FROM deferred_indexes WHERE name = 'idempotency') \
        AND key_hash = $1 AND scope = $2 AND key = $3 \
    LIMIT 1";

/// A key's record through the hash index only: for keys the memory index proves are not in
/// the tail (see `idempotency::Idempotency::begin`).
const IDEMPOTENCY_GET_INDEXED: &str = "\
    SELECT i.fingerprint, i.status, i.body, i.created_at_ms \
    FROM idempotency_by_hash h JOIN idempotency i ON i.pos = h.pos \
    WHERE h.key_hash = $1 AND i.scope = $2 AND i.key = $3 LIMIT 1";

/// Most records one purge step deletes.
const PURGE_STEP_ROWS: i64 = 10_000;

/// Rotation's one atomic step: of two concurrent uses of a token, only one finds it unused.
/// A revoked family's tokens are never marked, whatever their own state.
const REFRESH_USE_SQL: &str = "\
    UPDATE refresh_tokens SET used_at_ms = $2 \
    WHERE token_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2 \
        AND NOT EXISTS (SELECT 1 FROM refresh_revocations r \
            WHERE r.family_id = refresh_tokens.family_id) \
    RETURNING user_id, family_id, expires_at_ms";

/// A token as it is, with its family's revocation (NULL when live).
const REFRESH_FIND_SQL: &str = "\
    SELECT t.user_id, t.family_id, t.expires_at_ms, t.used_at_ms, r.family_id \
    FROM refresh_tokens t LEFT JOIN refresh_revocations r ON r.family_id = t.family_id \
    WHERE t.token_hash = $1";

/// Revokes the family of token `$1`. The WHERE clause also keeps SQLite from reading
/// `ON CONFLICT` as a join constraint of the SELECT.
const REFRESH_REVOKE_SQL: &str = "\
    INSERT INTO refresh_revocations (family_id, user_id, revoked_at_ms, reason) \
    SELECT family_id, user_id, $2, $3 FROM refresh_tokens WHERE token_hash = $1 \
    ON CONFLICT (family_id) DO NOTHING \
    RETURNING family_id, user_id";

/// One bounded step of the refresh purge: tokens expired by `$1`, at most `$2`.
const REFRESH_PURGE_TOKENS_SQL: &str = "\
    DELETE FROM refresh_tokens WHERE token_hash IN \
    (SELECT token_hash FROM refresh_tokens WHERE expires_at_ms <= $1 LIMIT $2)";

/// One bounded step of the refresh purge: revocations made by `$1` whose family has no token
/// left, at most `$2`. A token rotated just as its family was revoked can outlive the
/// revocation's age by that moment; its row keeps the revocation.
const REFRESH_PURGE_REVOCATIONS_SQL: &str = "\
    DELETE FROM refresh_revocations WHERE family_id IN \
    (SELECT family_id FROM refresh_revocations r WHERE revoked_at_ms <= $1 \
        AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = r.family_id) \
        LIMIT $2)";

type RefreshRow = (String, String, i64, Option<i64>, Option<String>);

fn refresh_from_row(
    (user_id, family_id, expires_at_ms, used_at_ms, revoked): RefreshRow,
) -> RefreshToken {
    RefreshToken {
        user_id,
        family_id,
        expires_at_ms,
        used_at_ms,
        family_revoked: revoked.is_some(),
    }
}

/// A look-up index filled behind a watermark by [`ReadModelStore::index_deferred`].
struct DeferredIndex {
    name: &'static str,
    last_pos_sql: &'static str,
    /// Pulls the watermark back to the table's last `pos` when it is ahead of it.
    clamp_sql: &'static str,
    /// Drops index entries past the (clamped) watermark, for indexes that keep `pos`.
    drop_ahead_sql: Option<&'static str>,
    /// Indexes the rows with `$1 < pos <= $2`, sorted so that neighbours share index pages.
    fill_sql: &'static str,
}

const DEFERRED_INDEXES: [DeferredIndex; 2] = [
    DeferredIndex {
        name: "idempotency",
        last_pos_sql: "SELECT MAX(pos) FROM idempotency",
        clamp_sql: "UPDATE deferred_indexes SET upto_pos = \
            (SELECT COALESCE(MAX(pos), 0) FROM idempotency) WHERE name = 'idempotency' \
            AND upto_pos > (SELECT COALESCE(MAX(pos), 0) FROM idempotency)",
        drop_ahead_sql: Some(
            "DELETE FROM idempotency_by_hash WHERE pos > \
             (SELECT upto_pos FROM deferred_indexes WHERE name = 'idempotency')",
        ),
        fill_sql: "INSERT INTO idempotency_by_hash (key_hash, pos) \
            SELECT key_hash, pos FROM idempotency WHERE pos > $1 AND pos <= $2 \
            ORDER BY key_hash, pos ON CONFLICT DO NOTHING",
    },
    DeferredIndex {
        name: "read_rows",
        last_pos_sql: "SELECT MAX(pos) FROM read_rows",
        // Entries of lost rows find no row to join and are never listed.
        clamp_sql: "UPDATE deferred_indexes SET upto_pos = \
            (SELECT COALESCE(MAX(pos), 0) FROM read_rows) WHERE name = 'read_rows' \
            AND upto_pos > (SELECT COALESCE(MAX(pos), 0) FROM read_rows)",
        drop_ahead_sql: None,
        fill_sql: "INSERT INTO read_rows_by_owner (kind, owner, id) \
            SELECT kind, owner, id FROM read_rows WHERE pos > $1 AND pos <= $2 \
            ORDER BY kind, owner, id ON CONFLICT DO NOTHING",
    },
];

fn read_page(rows: Vec<ReadRowTuple>, limit: u32) -> ReadPage {
    let mut rows: Vec<ReadRow> = rows
        .into_iter()
        .map(|(kind, id, owner, created_at_ms, status, body)| ReadRow {
            kind,
            id,
            owner,
            created_at_ms,
            status,
            body,
        })
        .collect();
    let limit = usize::try_from(limit).expect("u32 fits usize");
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| row.id.clone())
    } else {
        None
    };
    ReadPage { rows, next_cursor }
}

/// Read rows page by id (UUIDv7, so by creation time); the cursor is the last id served.
/// Longest cursor (a row id) a list accepts: room for ids built on a 64-byte user id, such
/// as wallet transactions (`{user_id}.{n:010}`).
const CURSOR_LEN_MAX: usize = 128;

fn check_cursor(cursor: &str) -> StoreResult<&str> {
    if cursor.is_empty() || cursor.len() > CURSOR_LEN_MAX {
        return Err(StoreError::Corrupt("bad cursor".into()));
    }
    Ok(cursor)
}

impl PostgresStore {
    /// One transaction on the writer connection. PostgreSQL's extended protocol takes one
    /// statement per round trip, so each table's rows go as a few fixed-size multi-row
    /// statements that stay prepared.
    async fn commit_group(&self, parts: &[&Batch]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        Self::commit_in(&mut tx, parts).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn flush(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        query: &mut QueryBuilder<'_, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        if !query.sql().is_empty() {
            query.build().execute(&mut **tx).await?;
            query.reset();
        }
        Ok(())
    }

    async fn commit_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        parts: &[&Batch],
    ) -> Result<(), sqlx::Error> {
        let all = Parts(parts);
        let mut query = QueryBuilder::<sqlx::Postgres>::new("");
        for chunk in fixed_chunks(&all.rows(|b| &b.events)) {
            query.push("INSERT INTO journal (pid, seq, at_ms, payload) ");
            query.push_values(chunk, |mut row, e| {
                row.push_bind(&e.pid)
                    .push_bind(to_i64(e.seq))
                    .push_bind(e.at_ms)
                    .push_bind(&e.payload);
            });
            Self::flush(tx, &mut query).await?;
        }
        for chunk in fixed_chunks(&all.rows(|b| &b.idempotency)) {
            query.push(
                "INSERT INTO idempotency \
                 (key_hash, scope, key, fingerprint, status, body, created_at_ms) ",
            );
            query.push_values(chunk, |mut row, r| {
                row.push_bind(stored_key_hash(&r.scope, &r.key))
                    .push_bind(&r.scope)
                    .push_bind(&r.key)
                    .push_bind(&r.fingerprint)
                    .push_bind(i64::from(r.status))
                    .push_bind(&r.body)
                    .push_bind(r.created_at_ms);
            });
            Self::flush(tx, &mut query).await?;
        }
        let read_rows = all.rows(|b| &b.read_rows);
        for chunk in fixed_chunks(&last_per_key(&read_rows, |r| (&r.kind, &r.id))) {
            query.push("INSERT INTO read_rows (kind, id, owner, created_at_ms, status, body) ");
            query.push_values(chunk, |mut row, r| {
                row.push_bind(&r.kind)
                    .push_bind(&r.id)
                    .push_bind(&r.owner)
                    .push_bind(r.created_at_ms)
                    .push_bind(&r.status)
                    .push_bind(&r.body);
            });
            // The owner is fixed at creation: the deferred owner index never revisits a row.
            query.push(
                " ON CONFLICT (kind, id) DO UPDATE SET \
                 status = excluded.status, body = excluded.body",
            );
            Self::flush(tx, &mut query).await?;
        }
        let deadlines = all.rows(|b| &b.deadlines);
        let deadlines = last_per_key(&deadlines, |d| match d {
            DeadlineWrite::Set { pid, .. } | DeadlineWrite::Clear { pid } => pid,
        });
        let (sets, clears): (Vec<&&DeadlineWrite>, Vec<_>) = deadlines
            .into_iter()
            .partition(|d| matches!(d, DeadlineWrite::Set { .. }));
        for chunk in fixed_chunks(&sets) {
            query.push("INSERT INTO deadlines (pid, due_at_ms) ");
            query.push_values(chunk, |mut row, d| {
                if let DeadlineWrite::Set { pid, due_at_ms } = d {
                    row.push_bind(pid).push_bind(*due_at_ms);
                }
            });
            query.push(" ON CONFLICT (pid) DO UPDATE SET due_at_ms = excluded.due_at_ms");
            Self::flush(tx, &mut query).await?;
        }
        for chunk in fixed_chunks(&clears) {
            query.push("DELETE FROM deadlines WHERE pid IN (");
            let mut pids = query.separated(", ");
            for d in chunk {
                if let DeadlineWrite::Clear { pid } = d {
                    pids.push_bind(pid);
                }
            }
            query.push(")");
            Self::flush(tx, &mut query).await?;
        }
        // Snapshots are rare: one statement per row is fine here, in order (newer wins).
        for snap in all.rows(|b| &b.snapshots) {
            Self::write_snapshot_row(tx, &snap.pid, snap.seq, snap.at_ms, &snap.payload, 0).await?;
        }
        for part in all.rows(|b| &b.snapshot_parts) {
            Self::write_snapshot_part(tx, part).await?;
        }
        Self::flush(tx, &mut query).await
    }

    /// One part of a large snapshot; the last one makes the parts the pid's snapshot.
    async fn write_snapshot_part(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        part: &SnapshotPart,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(SNAPSHOT_PART_SQL)
            .bind(&part.pid)
            .bind(to_i64(part.seq))
            .bind(i64::from(part.n))
            .bind(&part.bytes)
            .execute(&mut **tx)
            .await?;
        match part.last {
            Some(last) => {
                let parts = i64::from(last.parts);
                Self::write_snapshot_row(tx, &part.pid, part.seq, last.at_ms, &[], parts).await
            }
            None => Ok(()),
        }
    }

    /// A snapshot row (newer wins), then the parts of the pid's other snapshots go.
    async fn write_snapshot_row(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        pid: &str,
        seq: u64,
        at_ms: i64,
        payload: &[u8],
        parts: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(SNAPSHOT_UPSERT_SQL)
            .bind(pid)
            .bind(to_i64(seq))
            .bind(at_ms)
            .bind(payload)
            .bind(parts)
            .execute(&mut **tx)
            .await?;
        sqlx::query(STALE_SNAPSHOT_PARTS_SQL)
            .bind(pid)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal, $migrator:expr) => {
        impl $store {
            /// A snapshot stored in parts. Parts that are missing (a newer snapshot replaced
            /// them between the two reads) give no snapshot: the journal is complete, so the
            /// entity is then recovered from its events alone.
            async fn snapshot_in_parts(
                &self,
                pid: &str,
                seq: i64,
                at_ms: i64,
                parts: i64,
            ) -> StoreResult<Option<SnapshotRecord>> {
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT bytes FROM snapshot_parts WHERE pid = $1 AND seq = $2 ORDER BY n",
                )
                .bind(pid)
                .bind(seq)
                .fetch_all(&self.pool)
                .await?;
                if i64::try_from(rows.len()).ok() != Some(parts) {
                    tracing::warn!(pid, seq, parts, found = rows.len(),
                        "snapshot parts missing; recovering from the journal alone");
                    return Ok(None);
                }
                Ok(Some(SnapshotRecord {
                    pid: pid.to_string(),
                    seq: to_u64(seq)?,
                    at_ms,
                    payload: rows.into_iter().flat_map(|(bytes,)| bytes).collect(),
                }))
            }
        }

        impl $store {
            /// Runs a bounded purge step (`$1` the cut, `$2` the step's row bound) until a
            /// step deletes less than a full step: each its own short transaction, so the
            /// journal writer waits for one step at most.
            async fn delete_in_steps(&self, step_sql: &str, cut_ms: i64) -> StoreResult<u64> {
                let mut deleted = 0;
                loop {
                    let step = sqlx::query(step_sql)
                        .bind(cut_ms)
                        .bind(PURGE_STEP_ROWS)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    deleted += step;
                    if step < to_u64(PURGE_STEP_ROWS)? {
                        return Ok(deleted);
                    }
                }
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> StoreResult<()> {
                $migrator
                    .run(&self.pool)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
                // No writer runs yet: parts of no current snapshot are leftovers of a write
                // that stopped half-way (the process stopped, or a part failed).
                sqlx::query(ORPHAN_SNAPSHOT_PARTS_SQL)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl JournalStore for $store {
            async fn commit_parts(&self, parts: &[&Batch]) -> StoreResult<()> {
                self.commit_group(parts).await
            }

            fn defers_sync(&self) -> bool {
                self.journal_defers_sync()
            }

            async fn sync(&self) -> StoreResult<()> {
                self.journal_sync().await
            }

            fn blocking(&self) -> Option<Arc<dyn BlockingJournal>> {
                self.journal_blocking()
            }

            async fn load(
                &self,
                pid: &str,
            ) -> StoreResult<(Option<SnapshotRecord>, Vec<EventRecord>)> {
                let snapshot: Option<(i64, i64, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT seq, at_ms, payload, parts FROM snapshots WHERE pid = $1",
                )
                .bind(pid)
                .fetch_optional(&self.pool)
                .await?;
                let snapshot = match snapshot {
                    Some((seq, at_ms, payload, 0)) => Some(SnapshotRecord {
                        pid: pid.to_string(),
                        seq: to_u64(seq)?,
                        at_ms,
                        payload,
                    }),
                    Some((seq, at_ms, _, parts)) => {
                        self.snapshot_in_parts(pid, seq, at_ms, parts).await?
                    }
                    None => None,
                };
                let after = snapshot.as_ref().map_or(0, |s| to_i64(s.seq));
                let rows: Vec<(String, i64, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT pid, seq, at_ms, payload FROM journal WHERE pid = $1 AND seq > $2 \
                     ORDER BY seq",
                )
                .bind(pid)
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
                let events = rows.into_iter().map(event_from_row).collect::<Result<_, _>>()?;
                Ok((snapshot, events))
            }

            async fn events_desc(
                &self,
                pid: &str,
                before_seq: Option<u64>,
                limit: u32,
            ) -> StoreResult<Vec<EventRecord>> {
                let before = before_seq.map_or(i64::MAX, to_i64);
                let rows: Vec<(String, i64, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT pid, seq, at_ms, payload FROM journal WHERE pid = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                )
                .bind(pid)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(event_from_row).collect()
            }
        }

        #[async_trait]
        impl DeadlineStore for $store {
            async fn due_deadlines(
                &self,
                due_before_ms: i64,
                after: Option<(i64, &str)>,
                limit: u32,
            ) -> StoreResult<Vec<(String, i64)>> {
                let (after_ms, after_pid) = after.unwrap_or((i64::MIN, ""));
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT pid, due_at_ms FROM deadlines WHERE due_at_ms <= $1 \
                     AND (due_at_ms > $2 OR (due_at_ms = $2 AND pid > $3)) \
                     ORDER BY due_at_ms, pid LIMIT $4",
                )
                .bind(due_before_ms)
                .bind(after_ms)
                .bind(after_pid)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }
        }

        #[async_trait]
        impl IdempotencyStore for $store {
            async fn idempotency_get(
                &self,
                scope: &str,
                key: &str,
                lookup: Lookup,
            ) -> StoreResult<Option<IdempotencyRecord>> {
                let sql = match lookup {
                    Lookup::Everywhere => IDEMPOTENCY_GET_EVERYWHERE,
                    Lookup::IndexedOnly => IDEMPOTENCY_GET_INDEXED,
                };
                let row: Option<(String, i64, Vec<u8>, i64)> = sqlx::query_as(sql)
                    .bind(stored_key_hash(scope, key))
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(fingerprint, status, body, created_at_ms)| IdempotencyRecord {
                    scope: scope.to_string(),
                    key: key.to_string(),
                    fingerprint,
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                    created_at_ms,
                }))
            }

            async fn idempotency_keys_since(
                &self,
                since_ms: i64,
                limit: u32,
            ) -> StoreResult<Vec<(String, String)>> {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT scope, key FROM idempotency WHERE pos >= \
                     (SELECT pos FROM idempotency WHERE created_at_ms >= $1 ORDER BY pos LIMIT 1) \
                     ORDER BY pos LIMIT $2",
                )
                .bind(since_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn idempotency_purge(&self, before_ms: i64) -> StoreResult<u64> {
                // Records are in creation order: those before the first one young enough to
                // keep go, never one newer than the cut. The newest record always stays, so
                // SQLite never hands its `pos` out again (a rowid table reuses max + 1).
                let (keep_from,): (Option<i64>,) = sqlx::query_as(
                    "SELECT COALESCE(\
                     (SELECT pos FROM idempotency WHERE created_at_ms >= $1 ORDER BY pos LIMIT 1), \
                     (SELECT MAX(pos) FROM idempotency))",
                )
                .bind(before_ms)
                .fetch_one(&self.pool)
                .await?;
                let (first,): (Option<i64>,) =
                    sqlx::query_as("SELECT MIN(pos) FROM idempotency")
                        .fetch_one(&self.pool)
                        .await?;
                let (Some(keep_from), Some(mut from)) = (keep_from, first) else {
                    return Ok(0);
                };
                // Bounded steps, each its own short transaction: the journal writer waits for
                // one step at most, never for the whole purge.
                let mut purged = 0;
                while from < keep_from {
                    let to = from.saturating_add(PURGE_STEP_ROWS).min(keep_from);
                    sqlx::query(
                        "DELETE FROM idempotency_by_hash WHERE (key_hash, pos) IN \
                         (SELECT key_hash, pos FROM idempotency WHERE pos >= $1 AND pos < $2)",
                    )
                    .bind(from)
                    .bind(to)
                    .execute(&self.pool)
                    .await?;
                    let done = sqlx::query("DELETE FROM idempotency WHERE pos >= $1 AND pos < $2")
                        .bind(from)
                        .bind(to)
                        .execute(&self.pool)
                        .await?;
                    purged += done.rows_affected();
                    from = to;
                }
                Ok(purged)
            }
        }

        #[async_trait]
        impl ReadModelStore for $store {
            async fn index_deferred(&self, rows_max: u32) -> StoreResult<u64> {
                let mut tx = self.indexer.begin().await?;
                let mut indexed = 0;
                for index in &DEFERRED_INDEXES {
                    let (upto,): (i64,) =
                        sqlx::query_as("SELECT upto_pos FROM deferred_indexes WHERE name = $1")
                            .bind(index.name)
                            .fetch_one(&mut *tx)
                            .await?;
                    let (last,): (Option<i64>,) =
                        sqlx::query_as(index.last_pos_sql).fetch_one(&mut *tx).await?;
                    let end = last.unwrap_or(0).min(upto.saturating_add(i64::from(rows_max)));
                    if end <= upto {
                        continue;
                    }
                    sqlx::query(index.fill_sql).bind(upto).bind(end).execute(&mut *tx).await?;
                    sqlx::query("UPDATE deferred_indexes SET upto_pos = $1 WHERE name = $2")
                        .bind(end)
                        .bind(index.name)
                        .execute(&mut *tx)
                        .await?;
                    indexed += to_u64(end - upto)?;
                }
                tx.commit().await?;
                Ok(indexed)
            }

            async fn clamp_deferred_indexes(&self) -> StoreResult<()> {
                let mut tx = self.indexer.begin().await?;
                for index in &DEFERRED_INDEXES {
                    let clamped = sqlx::query(index.clamp_sql).execute(&mut *tx).await?;
                    if clamped.rows_affected() > 0 {
                        tracing::warn!(
                            index = index.name,
                            "deferred index was ahead of its table (restored or lost commits); \
                             clamped"
                        );
                        if let Some(drop_sql) = index.drop_ahead_sql {
                            sqlx::query(drop_sql).execute(&mut *tx).await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn read_rows(
                &self,
                kind: &str,
                owner: Option<&str>,
                status: Option<&str>,
                cursor: Option<&str>,
                limit: u32,
            ) -> StoreResult<ReadPage> {
                let cursor = cursor.map(check_cursor).transpose()?;
                let mut query = QueryBuilder::<$db>::new("");
                match owner {
                    // The owner index up to its watermark, then the unindexed tail after it (a
                    // short scan by `pos`): one statement, so both parts come from one snapshot
                    // and are disjoint. The index part is limited first, so a long history
                    // costs one page.
                    Some(owner) => {
                        query.push(READ_ROW_COLUMNS).push(" WHERE kind = ").push_bind(kind);
                        query.push(" AND id IN (SELECT id FROM read_rows_by_owner WHERE kind = ");
                        query.push_bind(kind).push(" AND owner = ").push_bind(owner);
                        push_before(&mut query, cursor);
                        // The owner index knows no status: with a status filter the index part
                        // is filtered after the look-up, so it cannot be limited first.
                        if status.is_none() {
                            query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
                        }
                        query.push(")");
                        push_status(&mut query, status);
                        query.push(" UNION ALL ").push(READ_ROW_COLUMNS);
                        // `kind || ''` keeps SQLite off the (kind, id) index, which would
                        // walk every row of the kind instead of the tail.
                        query.push(
                            " WHERE pos > (SELECT upto_pos FROM deferred_indexes \
                             WHERE name = 'read_rows') AND kind || '' = ",
                        );
                        query.push_bind(kind).push(" AND owner = ").push_bind(owner);
                    }
                    None => {
                        query.push(READ_ROW_COLUMNS).push(" WHERE kind = ").push_bind(kind);
                    }
                }
                push_status(&mut query, status);
                push_before(&mut query, cursor);
                query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
                let rows: Vec<ReadRowTuple> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                Ok(read_page(rows, limit))
            }
        }

        #[async_trait]
        impl UserStore for $store {
            async fn user_insert(&self, user: &User) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users (id, email, name, password_hash, roles, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(user.roles.join(","))
                .bind(user.created_at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, roles, created_at_ms FROM users \
                     WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(user_from_row))
            }

            async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, roles, created_at_ms FROM users \
                     WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(user_from_row))
            }

            async fn user_set_roles(&self, id: &str, roles: &[String]) -> StoreResult<Option<User>> {
                sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
                    .bind(roles.join(","))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                self.user_by_id(id).await
            }

            async fn user_set_password_hash(
                &self,
                id: &str,
                password_hash: &str,
            ) -> StoreResult<bool> {
                let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(updated > 0)
            }
        }

        #[async_trait]
        impl RefreshTokenStore for $store {
            async fn refresh_insert(
                &self,
                token_hash: &str,
                user_id: &str,
                family_id: &str,
                expires_at_ms: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(family_id)
                .bind(expires_at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn refresh_use(&self, token_hash: &str, now_ms: i64) -> StoreResult<RefreshUse> {
                let marked: Option<(String, String, i64)> = sqlx::query_as(REFRESH_USE_SQL)
                    .bind(token_hash)
                    .bind(now_ms)
                    .fetch_optional(&self.pool)
                    .await?;
                if let Some((user_id, family_id, expires_at_ms)) = marked {
                    return Ok(RefreshUse::Marked(RefreshToken {
                        user_id,
                        family_id,
                        expires_at_ms,
                        used_at_ms: Some(now_ms),
                        family_revoked: false,
                    }));
                }
                let found: Option<RefreshRow> = sqlx::query_as(REFRESH_FIND_SQL)
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(found.map_or(RefreshUse::Unknown, |row| {
                    RefreshUse::Refused(refresh_from_row(row))
                }))
            }

            async fn refresh_revoke(
                &self,
                token_hash: &str,
                at_ms: i64,
                reason: RevocationReason,
            ) -> StoreResult<Option<Revocation>> {
                let revoked: Option<(String, String)> = sqlx::query_as(REFRESH_REVOKE_SQL)
                    .bind(token_hash)
                    .bind(at_ms)
                    .bind(reason.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(revoked.map(|(family_id, user_id)| Revocation {
                    family_id,
                    user_id,
                    revoked_at_ms: at_ms,
                    reason,
                }))
            }

            async fn refresh_revocations(
                &self,
                user_id: &str,
                limit: u32,
            ) -> StoreResult<Vec<Revocation>> {
                let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
                    "SELECT family_id, user_id, revoked_at_ms, reason FROM refresh_revocations \
                     WHERE user_id = $1 ORDER BY revoked_at_ms, family_id LIMIT $2",
                )
                .bind(user_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(family_id, user_id, revoked_at_ms, reason)| {
                        Ok(Revocation {
                            family_id,
                            user_id,
                            revoked_at_ms,
                            reason: RevocationReason::parse(&reason)?,
                        })
                    })
                    .collect()
            }

            async fn refresh_purge(&self, now_ms: i64, revoked_by_ms: i64) -> StoreResult<u64> {
                let tokens = self.delete_in_steps(REFRESH_PURGE_TOKENS_SQL, now_ms).await?;
                let revocations = self
                    .delete_in_steps(REFRESH_PURGE_REVOCATIONS_SQL, revoked_by_ms)
                    .await?;
                Ok(tokens + revocations)
            }
        }
    };
}

impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    sqlx::migrate!("migrations/sqlite")
);
impl_store!(
    PostgresStore,
    sqlx::Postgres,
    "postgres",
    sqlx::migrate!("migrations/postgres")
);
