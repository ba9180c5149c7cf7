//! The SQLite journal's own connection, on its own thread: where every group commit of a
//! SQLite store is written.
//!
//! Why not sqlx's connection: sqlx runs each SQLite connection on a worker thread and answers
//! BEGIN and COMMIT through rendezvous channels, so one group commit took about eight thread
//! wake-ups between the journal writer's task and that worker (schedstat under the time-sale
//! flagship: 8.5 run slices of the worker per commit, each after ~90 µs in the run queue on
//! 2 busy cores; the commit lasted 2.2 ms for 0.9 ms of SQLite work). Here a commit is one
//! message to this thread and one reply, and the statements are prepared once and kept.
//!
//! The connection is the only one that writes the journal's tables in normal operation (other
//! connections write users, refresh tokens and purges, rarely, and wait on SQLite's lock like
//! any second writer).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{Batch, DeadlineWrite, StoreError, StoreResult};

/// Commits waiting for the thread. The journal writer runs one at a time; the bound only
/// matters if more callers appear.
const JOBS_MAX: usize = 16;

/// How long a commit waits for another connection's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the journal's connection.
pub struct JournalConnectionOptions {
    /// `NORMAL` when the journal syncs the WAL itself (pipelined fsync), else as configured.
    pub synchronous: &'static str,
    pub cache_size_kib: i64,
    /// Pages of WAL after which a commit checkpoints (SQLite's `wal_autocheckpoint`).
    pub wal_autocheckpoint_pages: u32,
}

struct Job {
    batches: Vec<Batch>,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// The handle to the journal thread; the thread ends (closing its connection) when the handle
/// is dropped.
pub struct JournalConnection {
    jobs: mpsc::Sender<Job>,
}

impl JournalConnection {
    /// Opens the database at `path` (it must already be in WAL mode or become so) and starts
    /// the thread that owns the connection.
    pub fn open(path: &Path, options: &JournalConnectionOptions) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", options.synchronous)?;
        conn.pragma_update(None, "cache_size", -options.cache_size_kib)?;
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint_pages)?;
        let (jobs, rx) = mpsc::channel(JOBS_MAX);
        std::thread::Builder::new()
            .name("surge-journal".into())
            .spawn(move || run(conn, rx))?;
        Ok(JournalConnection { jobs })
    }

    /// Writes the batches in one transaction, in order: for a key written twice, the later
    /// write is the one that stays. The rows are copied for the thread (sqlx copied every
    /// bound value too).
    pub async fn commit(&self, parts: &[&Batch]) -> StoreResult<()> {
        let batches = parts.iter().map(|b| (*b).clone()).collect();
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable("the journal connection's thread is gone".into());
        self.jobs
            .send(Job { batches, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn run(mut conn: Connection, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        let result = commit(&mut conn, &job.batches).map_err(store_error);
        // Free the rows before waking the caller; nobody reads them after the commit.
        drop(job.batches);
        let _ = job.reply.send(result);
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
fn commit(conn: &mut Connection, batches: &[Batch]) -> rusqlite::Result<()> {
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
        for r in batches.iter().flat_map(|b| &b.read_rows) {
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
        let mut upsert = tx.prepare_cached(
            "INSERT INTO snapshots (pid, seq, at_ms, payload) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (pid) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms, \
             payload = excluded.payload WHERE excluded.seq > snapshots.seq",
        )?;
        for s in batches.iter().flat_map(|b| &b.snapshots) {
            upsert.execute(params![s.pid, to_i64(s.seq)?, s.at_ms, s.payload])?;
        }
    }
    tx.commit()
}
