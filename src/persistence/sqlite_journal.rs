//! The SQLite journal's own connection: where every group commit of a SQLite store is
//! written, by blocking calls from the journal writer's own thread (see
//! [`super::journal`]), and the WAL file the journal's syncer fsyncs.
//!
//! Why not sqlx's connection: sqlx runs each SQLite connection on a worker thread and answers
//! BEGIN and COMMIT through rendezvous channels, so one group commit took about eight thread
//! wake-ups between the journal writer's task and that worker (schedstat under the time-sale
//! flagship: 8.5 run slices of the worker per commit, each after ~90 µs in the run queue on
//! 2 busy cores; the commit lasted 2.2 ms for 0.9 ms of SQLite work). Here a commit is one
//! direct call on the writer's thread, and the statements are prepared once and kept.
//!
//! The connection is the only one that writes the journal's tables in normal operation (other
//! connections write users, refresh tokens and purges, rarely, and wait on SQLite's lock like
//! any second writer).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::{
    last_per_key, Batch, BlockingJournal, DeadlineWrite, ReadRow, StoreError, StoreResult,
};

/// How long a commit waits for another connection's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the journal's connection.
pub struct SqliteJournalOptions {
    /// The connection commits with `synchronous = NORMAL` (no fsync). For `full`, the journal
    /// syncs the WAL through [`BlockingJournal::sync`] before it answers anyone: the same
    /// durability as FULL, but the fsync of one group overlaps the writing of the next.
    pub pipelined_fsync: bool,
    pub cache_size_kib: i64,
    /// Pages of WAL after which a commit checkpoints (SQLite's `wal_autocheckpoint`).
    pub wal_autocheckpoint_pages: u32,
}

/// The journal's connection, and the WAL file it syncs when the fsync is pipelined.
pub struct SqliteJournal {
    conn: Mutex<Connection>,
    wal: Option<WalFile>,
}

impl SqliteJournal {
    /// Opens the database at `path` (in WAL mode).
    pub fn open(path: &Path, options: &SqliteJournalOptions) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -options.cache_size_kib)?;
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint_pages)?;
        let wal = options.pipelined_fsync.then(|| WalFile {
            path: PathBuf::from(format!("{}-wal", path.display())),
            file: Mutex::new(None),
        });
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
            wal,
        })
    }

    /// True when commits return before their fsync.
    pub fn defers_sync(&self) -> bool {
        self.wal.is_some()
    }
}

impl BlockingJournal for SqliteJournal {
    fn commit_parts(&self, parts: &[&Batch]) -> StoreResult<()> {
        // A panic mid-commit dropped its transaction, which rolled back: the connection is fine.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        commit(&mut conn, parts).map_err(store_error)
    }

    fn sync(&self) -> StoreResult<()> {
        match &self.wal {
            Some(wal) => wal
                .sync()
                .map_err(|e| StoreError::Unavailable(format!("WAL fsync failed: {e}"))),
            None => Ok(()),
        }
    }
}

/// The journal's WAL file, for the pipelined fsync.
struct WalFile {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl WalFile {
    /// fdatasync of the WAL as it is now. SQLite only deletes a WAL (last connection closed)
    /// after checkpointing it into the database file and syncing that, so frames in an older
    /// WAL file are durable already; the inode check makes sure the current one is synced.
    fn sync(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut file = self.file.lock().expect("WAL file lock");
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.ino(),
            // No WAL: the last connection checkpointed it into the database and synced that.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let stale = match file.as_ref() {
            Some(open) => open.metadata()?.ino() != current,
            None => true,
        };
        if stale {
            *file = Some(std::fs::File::open(&self.path)?);
        }
        file.as_ref().expect("opened above").sync_data()
    }
}

/// A unique-key clash (a second writer of a journal (pid, seq)) is a conflict, as sqlx's
/// `is_unique_violation` made it; anything else leaves the store unavailable.
fn store_error(err: rusqlite::Error) -> StoreError {
    let unique = matches!(
        &err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    );
    if unique {
        StoreError::Conflict(err.to_string())
    } else {
        StoreError::Unavailable(err.to_string())
    }
}

fn to_i64(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// One transaction; dropped without commit (an error) it rolls back.
fn commit(conn: &mut Connection, batches: &[&Batch]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO journal (pid, seq, at_ms, payload) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for e in batches.iter().flat_map(|b| &b.events) {
            insert.execute(params![e.pid, to_i64(e.seq)?, e.at_ms, e.payload])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO idempotency (key_hash, scope, key, fingerprint, status, body, \
             created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in batches.iter().flat_map(|b| &b.idempotency) {
            let key_hash = super::idempotency::stored_key_hash(&r.scope, &r.key);
            insert.execute(params![
                key_hash,
                r.scope,
                r.key,
                r.fingerprint,
                r.status,
                r.body,
                r.created_at_ms
            ])?;
        }
    }
    {
        // The owner is fixed at creation: the deferred owner index never revisits a row.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO read_rows (kind, id, owner, created_at_ms, status, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (kind, id) DO UPDATE SET status = excluded.status, body = excluded.body",
        )?;
        // A hot entity's read row changes with every step: only a group's last one is written.
        let rows: Vec<&ReadRow> = batches.iter().flat_map(|b| &b.read_rows).collect();
        for r in last_per_key(&rows, |r| (&r.kind, &r.id)) {
            upsert.execute(params![
                r.kind,
                r.id,
                r.owner,
                r.created_at_ms,
                r.status,
                r.body
            ])?;
        }
    }
    {
        let mut set = tx.prepare_cached(
            "INSERT INTO deadlines (pid, due_at_ms) VALUES (?1, ?2) \
             ON CONFLICT (pid) DO UPDATE SET due_at_ms = excluded.due_at_ms",
        )?;
        let mut clear = tx.prepare_cached("DELETE FROM deadlines WHERE pid = ?1")?;
        for d in batches.iter().flat_map(|b| &b.deadlines) {
            match d {
                DeadlineWrite::Set { pid, due_at_ms } => set.execute(params![pid, due_at_ms])?,
                DeadlineWrite::Clear { pid } => clear.execute(params![pid])?,
            };
        }
    }
    {
        let mut upsert = tx.prepare_cached(super::SNAPSHOT_UPSERT_SQL)?;
        let mut part = tx.prepare_cached(super::SNAPSHOT_PART_SQL)?;
        let mut stale = tx.prepare_cached(super::STALE_SNAPSHOT_PARTS_SQL)?;
        for s in batches.iter().flat_map(|b| &b.snapshots) {
            upsert.execute(params![s.pid, to_i64(s.seq)?, s.at_ms, s.payload, 0])?;
            stale.execute(params![s.pid])?;
        }
        for p in batches.iter().flat_map(|b| &b.snapshot_parts) {
            part.execute(params![p.pid, to_i64(p.seq)?, p.n, p.bytes])?;
            if let Some(last) = p.last {
                upsert.execute(params![
                    p.pid,
                    to_i64(p.seq)?,
                    last.at_ms,
                    [0u8; 0],
                    last.parts
                ])?;
                stale.execute(params![p.pid])?;
            }
        }
    }
    tx.commit()
}
