//! Durable state: the journal-and-snapshot [`Store`] (SQLite embedded, or PostgreSQL), the
//! group-commit [`journal`] writer, the event [`codec`], [`idempotency`] records and the
//! [`deadlines`] scheduler.
//!
//! Everything one actor step writes (its events, a snapshot, its next deadline, its read rows,
//! an idempotency record, the first event of an entity it creates) travels as one [`Batch`] and
//! is committed in one transaction together with the other actors' steps of the same flush.

pub mod codec;
pub mod idempotency;
pub mod journal;
mod sql;
mod sqlite_journal;

use std::sync::Arc;

use async_trait::async_trait;

pub use sql::{connect, sqlite_index_path, PostgresStore, SqliteStore};

/// One event row. `pid` is `"{kind}:{id}"`; `seq` starts at 1 and has no gaps per pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub pid: String,
    pub seq: u64,
    pub at_ms: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub pid: String,
    pub seq: u64,
    pub at_ms: i64,
    pub payload: Vec<u8>,
}

/// Writes a snapshot row (`$5` parts, 0 when the payload `$4` is inline); it replaces the pid's
/// only if it is newer. Both stores, inline snapshots and the last part of a large one alike.
pub(crate) const SNAPSHOT_UPSERT_SQL: &str = "INSERT INTO snapshots (pid, seq, at_ms, payload, \
    parts) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pid) DO UPDATE SET seq = excluded.seq, \
    at_ms = excluded.at_ms, payload = excluded.payload, parts = excluded.parts \
    WHERE excluded.seq > snapshots.seq";

/// Deletes the parts of `$1`'s snapshots other than its current one: the parts of a snapshot
/// replaced by a newer one, or of one that never became current (a newer snapshot came first, or
/// the process stopped half-way). Runs whenever a snapshot row is written.
pub(crate) const STALE_SNAPSHOT_PARTS_SQL: &str = "DELETE FROM snapshot_parts WHERE pid = $1 \
    AND seq <> (SELECT seq FROM snapshots WHERE pid = $1)";

/// Writes part `$3` of `$1`'s snapshot at seq `$2`, unless the pid's current snapshot is at that
/// seq or newer: rewriting the parts of the current snapshot in place (a later incarnation
/// snapshotting the same seq, with its maps encoded in another order) would let a load splice
/// two encodings. The parts of a snapshot that is not current yet may be rewritten.
pub(crate) const SNAPSHOT_PART_SQL: &str = "INSERT INTO snapshot_parts (pid, seq, n, bytes) \
    SELECT $1, $2, $3, $4 WHERE NOT EXISTS \
    (SELECT 1 FROM snapshots WHERE pid = $1 AND seq >= $2) \
    ON CONFLICT (pid, seq, n) DO UPDATE SET bytes = excluded.bytes";

/// Parts that belong to no current snapshot (a write that stopped half-way); run at start-up.
pub(crate) const ORPHAN_SNAPSHOT_PARTS_SQL: &str = "DELETE FROM snapshot_parts WHERE NOT EXISTS \
    (SELECT 1 FROM snapshots s WHERE s.pid = snapshot_parts.pid AND s.seq = snapshot_parts.seq \
    AND s.parts > 0)";

/// One part of a snapshot too large to write in one commit: the journal writer commits a large
/// snapshot part by part between groups (see [`journal`]), and the last part's commit makes the
/// parts the entity's snapshot. A load reads the parts only once that has happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPart {
    pub pid: String,
    pub seq: u64,
    /// From 0.
    pub n: u32,
    pub bytes: Vec<u8>,
    /// On the last part: the snapshot's time and its number of parts.
    pub last: Option<SnapshotLast>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLast {
    pub at_ms: i64,
    pub parts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineWrite {
    Set { pid: String, due_at_ms: i64 },
    Clear { pid: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub status: u16,
    pub body: Vec<u8>,
    pub created_at_ms: i64,
}

/// Where an idempotency look-up searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The indexed records and the unindexed tail of recent ones: always complete.
    Everywhere,
    /// The indexed records only: enough for a key known not to be recent.
    IndexedOnly,
}

/// A row of a read table: lists across entities (a user's orders) are served from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRow {
    pub kind: String,
    pub id: String,
    pub owner: String,
    pub created_at_ms: i64,
    pub status: String,
    pub body: String,
}

/// Everything committed in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub events: Vec<EventRecord>,
    pub snapshots: Vec<SnapshotRecord>,
    pub snapshot_parts: Vec<SnapshotPart>,
    pub deadlines: Vec<DeadlineWrite>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub read_rows: Vec<ReadRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.snapshots.is_empty()
            && self.snapshot_parts.is_empty()
            && self.deadlines.is_empty()
            && self.idempotency.is_empty()
            && self.read_rows.is_empty()
    }

    /// Rows this batch writes; the group-commit bound counts these.
    pub fn rows(&self) -> usize {
        self.events.len()
            + self.snapshots.len()
            + self.snapshot_parts.len()
            + self.deadlines.len()
            + self.idempotency.len()
            + self.read_rows.len()
    }

    pub fn extend(&mut self, other: Batch) {
        self.events.extend(other.events);
        self.snapshots.extend(other.snapshots);
        self.snapshot_parts.extend(other.snapshot_parts);
        self.deadlines.extend(other.deadlines);
        self.idempotency.extend(other.idempotency);
        self.read_rows.extend(other.read_rows);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at_ms: i64,
}

/// A refresh token's row as [`RefreshTokenStore::refresh_use`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub user_id: String,
    /// The login it descends from: every rotation keeps it.
    pub family_id: String,
    pub expires_at_ms: i64,
    /// When it was rotated; `None` while it is the newest of its family.
    pub used_at_ms: Option<i64>,
    pub family_revoked: bool,
}

/// What [`RefreshTokenStore::refresh_use`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// This call marked the token used: it was unused, unexpired and its family live.
    Marked(RefreshToken),
    /// The token was left as found: used before, expired, or of a revoked family.
    Refused(RefreshToken),
    /// No such token: never issued, or purged after its expiry.
    Unknown,
}

/// Why a refresh-token family was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// A token was presented again after its rotation: someone holds a copy.
    Reuse,
    Logout,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Reuse => "reuse",
            RevocationReason::Logout => "logout",
        }
    }

    fn parse(text: &str) -> StoreResult<RevocationReason> {
        [RevocationReason::Reuse, RevocationReason::Logout]
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown revocation reason '{text}'")))
    }
}

/// A revoked refresh-token family (a row of `refresh_revocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub family_id: String,
    pub user_id: String,
    pub revoked_at_ms: i64,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique key clashed: for the journal, a second writer of the same (pid, seq).
    #[error("unique key clash: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Unavailable(err.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A page of read rows, newest first, with the cursor of the next page.
#[derive(Debug, Clone, Default)]
pub struct ReadPage {
    pub rows: Vec<ReadRow>,
    pub next_cursor: Option<String>,
}

/// [`JournalStore::commit_parts`] and [`JournalStore::sync`] as blocking calls (see
/// [`JournalStore::blocking`]).
pub trait BlockingJournal: Send + Sync + 'static {
    fn commit_parts(&self, parts: &[&Batch]) -> StoreResult<()>;
    fn sync(&self) -> StoreResult<()>;
}

/// The journal and its snapshots: group commits of events, snapshots and side rows, and the
/// reads that recover an entity.
#[async_trait]
pub trait JournalStore: Send + Sync + 'static {
    /// Writes the whole batch in one transaction. It is durable on return, unless the store
    /// [`JournalStore::defers_sync`]: then it is durable once a later [`JournalStore::sync`] has
    /// returned.
    async fn commit(&self, batch: &Batch) -> StoreResult<()> {
        self.commit_parts(&[batch]).await
    }
    /// [`JournalStore::commit`] of the batches together, as one, without copying them into one.
    async fn commit_parts(&self, parts: &[&Batch]) -> StoreResult<()>;
    /// True when commits return before their fsync (pipelined fsync, see `journal`).
    fn defers_sync(&self) -> bool {
        false
    }
    /// Makes every commit that has returned so far durable.
    async fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The same commits and syncs as blocking calls, for stores that own their connection
    /// (SQLite): the journal then runs its writer and syncer on threads of their own and
    /// calls these directly, with no hop to a driver's thread and back for each.
    fn blocking(&self) -> Option<Arc<dyn BlockingJournal>> {
        None
    }
    /// The latest snapshot and the events after it, in seq order.
    async fn load(&self, pid: &str) -> StoreResult<(Option<SnapshotRecord>, Vec<EventRecord>)>;
    /// Events of one entity, newest first, with seq below `before_seq` when given.
    async fn events_desc(
        &self,
        pid: &str,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
}

/// Durable deadlines: which entities must act by themselves, and when.
#[async_trait]
pub trait DeadlineStore: Send + Sync + 'static {
    /// Entities whose deadline is at or before `due_before_ms`, as (pid, due_at_ms), in
    /// (due_at_ms, pid) order, after the row `after` when given (paging).
    async fn due_deadlines(
        &self,
        due_before_ms: i64,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, i64)>>;
}

/// Idempotency records: the stored answer of each keyed request.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    async fn idempotency_get(
        &self,
        scope: &str,
        key: &str,
        lookup: Lookup,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// (scope, key) of records created at or after `since_ms`, at most `limit`.
    async fn idempotency_keys_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(String, String)>>;
    async fn idempotency_purge(&self, before_ms: i64) -> StoreResult<u64>;
}

/// Read rows (the projection lists come from) and the deferred look-up indexes they and the
/// idempotency records share.
#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// Fills the deferred look-up indexes (idempotency key hashes, read rows by owner) with at
    /// most `rows_max` rows each past their watermarks, in one transaction on the writer's
    /// connection; returns the rows indexed. Look-ups are correct whether or not this has run
    /// (they scan the unindexed tail); running it keeps that tail short.
    async fn index_deferred(&self, rows_max: u32) -> StoreResult<u64>;
    /// Pulls a deferred index's watermark back when it is ahead of its table, which happens
    /// when the journal lost commits the index file kept (a restore, or a power loss between
    /// a pipelined commit and its fsync); otherwise new rows could reuse indexed positions.
    async fn clamp_deferred_indexes(&self) -> StoreResult<()>;
    /// Read rows of one kind, newest first (by id), optionally of one owner and one status.
    async fn read_rows(
        &self,
        kind: &str,
        owner: Option<&str>,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> StoreResult<ReadPage>;
}

/// Registered users.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the email is taken.
    async fn user_insert(&self, user: &User) -> StoreResult<()>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_set_roles(&self, id: &str, roles: &[String]) -> StoreResult<Option<User>>;
    /// Replaces a user's password hash; false when there is no such user.
    async fn user_set_password_hash(&self, id: &str, password_hash: &str) -> StoreResult<bool>;
}

/// Refresh tokens, their families and revocations.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Stores a refresh token (by its hash) as the newest of `family_id`, unused.
    async fn refresh_insert(
        &self,
        token_hash: &str,
        user_id: &str,
        family_id: &str,
        expires_at_ms: i64,
    ) -> StoreResult<()>;
    /// Marks the token used at `now_ms` if it is unused, unexpired and its family not revoked,
    /// in one conditional UPDATE: of two concurrent uses of one token exactly one marks it.
    /// Otherwise reports the token as found, so the caller can tell reuse from expiry.
    async fn refresh_use(&self, token_hash: &str, now_ms: i64) -> StoreResult<RefreshUse>;
    /// Revokes the family of the token, for `reason`: none of its tokens works again. Returns
    /// the revocation when this call made it; `None` for an unknown token or a family
    /// already revoked.
    async fn refresh_revoke(
        &self,
        token_hash: &str,
        at_ms: i64,
        reason: RevocationReason,
    ) -> StoreResult<Option<Revocation>>;
    /// A user's revoked families, oldest first, at most `limit`.
    async fn refresh_revocations(&self, user_id: &str, limit: u32) -> StoreResult<Vec<Revocation>>;
    /// Deletes tokens that expired by `now_ms`, then revocations made by `revoked_by_ms`
    /// whose family has no token left (so a revocation outlives every token it guards).
    /// Returns the rows deleted.
    async fn refresh_purge(&self, now_ms: i64, revoked_by_ms: i64) -> StoreResult<u64>;
}

/// Everything surge keeps, on one database: one trait per table family, so a caller names the
/// family it uses. Implemented for SQLite and PostgreSQL with the same SQL where possible.
#[async_trait]
pub trait Store:
    JournalStore
    + DeadlineStore
    + IdempotencyStore
    + ReadModelStore
    + UserStore
    + RefreshTokenStore
    + Send
    + Sync
    + 'static
{
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
}

pub type SharedStore = Arc<dyn Store>;

/// Rows per deferred-index transaction while catching up at start-up.
const CATCH_UP_ROWS_MAX: u32 = 100_000;

/// Indexes everything committed before this process started, before anyone looks: from then
/// on the unindexed tail only holds keys this process wrote, which its memory index knows
/// (the guarantee [`Lookup::IndexedOnly`] rests on).
pub async fn catch_up_deferred_indexes(store: &dyn Store) -> StoreResult<u64> {
    store.clamp_deferred_indexes().await?;
    let mut total = 0;
    loop {
        let indexed = store.index_deferred(CATCH_UP_ROWS_MAX).await?;
        if indexed == 0 {
            return Ok(total);
        }
        total += indexed;
    }
}

/// Runs for the life of the process: fills the deferred indexes every `index_every_ms`, at
/// most `index_rows_max` rows per index and step (a step that hits that bound is followed by
/// the next at once), beside the journal writer (on its own
/// connection; for SQLite in its own file, so it never holds the journal's write lock).
pub fn spawn_indexer(
    store: SharedStore,
    settings: &crate::config::JournalSettings,
    stats: Arc<journal::JournalStats>,
) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    let every = std::time::Duration::from_millis(settings.index_every_ms.max(1));
    let rows_max = settings.index_rows_max.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut behind = false;
        loop {
            // A step that hit its bound left rows behind: the next one starts at once.
            if !behind {
                ticks.tick().await;
            }
            let started = std::time::Instant::now();
            let step = store.index_deferred(rows_max).await;
            behind = matches!(step, Ok(rows) if rows >= u64::from(rows_max));
            match step {
                Ok(rows) => {
                    let micros = journal::micros_since(started);
                    stats.indexed_rows.fetch_add(rows, Ordering::Relaxed);
                    stats
                        .index_micros_total
                        .fetch_add(micros, Ordering::Relaxed);
                }
                // Look-ups read the unindexed tail, so a failed step costs time, not correctness.
                Err(error) => tracing::warn!(%error, "deferred index step failed; retrying"),
            }
        }
    })
}

/// The last item per key, in first-seen key order: one multi-row upsert may not touch a row
/// twice (PostgreSQL refuses it), and the last write of a batch is the one that counts.
pub(crate) fn last_per_key<'a, T, K, F>(items: &'a [T], key: F) -> Vec<&'a T>
where
    K: std::hash::Hash + Eq,
    F: Fn(&'a T) -> K,
{
    let mut position: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut kept: Vec<&'a T> = Vec::new();
    for item in items {
        match position.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(slot) => kept[*slot.get()] = item,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(kept.len());
                kept.push(item);
            }
        }
    }
    kept
}
