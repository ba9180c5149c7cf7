//! The journal writer: group commit for all actors of one store.
//!
//! Actors hand their step's [`Batch`] to the writer and move on to their next message
//! (pipelined persistence). The writer drains whatever has queued up, up to
//! `journal.batch_events_max` rows, commits it in one transaction and only then runs each
//! append's completion, which is what sends the caller's reply. So every reply still means
//! "durable", and one fsync is shared by everything that queued while the last one ran.
//!
//! Pipelined fsync: a store whose commits return before they are durable (SQLite with
//! `synchronous=full`, see [`super::JournalStore::defers_sync`]) hands each group's completions to a
//! syncer, which runs one fsync for everything committed since its last one and only then
//! runs them, in order. The writer meanwhile commits the next group, so the disk flush of one
//! group overlaps the writing of the next; every reply still waits for an fsync that began
//! after its group was written. An fsync that fails stops the process (see [`run_syncer`]).
//!
//! Threads: on PostgreSQL the writer and the syncer are tasks of the runtime, awaiting sqlx.
//! On SQLite each runs on a thread of its own (`surge-journal`, `surge-fsync`) and calls the
//! store's connection and the WAL's fsync directly ([`super::JournalStore::blocking`]): under load
//! every hop to another thread costs a wait in the run queue, and a group commit through
//! sqlx's worker thread took about eight of them.
//!
//! Failure rules:
//! - A unique-key clash in a group means some append reused a (pid, seq): the group is retried
//!   append by append so only the clashing one fails, with [`CommitError::Fenced`].
//! - Any other failure fails every append of the group. Their writers (actor incarnations) are
//!   poisoned: appends they queued behind the failed one are refused too, so a pid never gets a
//!   gap in its sequence. A new incarnation, recovered from the journal, writes again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{
    Batch, BlockingJournal, SharedStore, SnapshotLast, SnapshotPart, SnapshotRecord, StoreError,
};
use crate::config::JournalSettings;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("sequence clash, another writer exists: {0}")]
    Fenced(String),
    #[error("commit failed: {0}")]
    Failed(String),
    #[error("journal writer is closed")]
    Closed,
}

/// Runs on the writer task once the append's fate is known; keep it short.
pub type Completion = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// The actor incarnation an append comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterId {
    pub pid: String,
    pub incarnation: u64,
}

pub struct Append {
    pub batch: Batch,
    pub writer: Option<WriterId>,
    pub done: Completion,
}

/// Figures the admin console and the benchmarks read.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub events: AtomicU64,
    pub last_batch_rows: AtomicU64,
    pub last_commit_micros: AtomicU64,
    pub commit_micros_total: AtomicU64,
    /// The slowest commit and fsync so far: what a request's tail latency is made of.
    pub commit_micros_max: AtomicU64,
    pub sync_micros_max: AtomicU64,
    pub failures: AtomicU64,
    /// Rows the deferred indexes took in, and the time spent on it (see
    /// [`super::spawn_indexer`]).
    pub indexed_rows: AtomicU64,
    /// Pipelined fsyncs (stores that defer them) and the time they took.
    pub syncs: AtomicU64,
    pub sync_micros_total: AtomicU64,
    pub index_micros_total: AtomicU64,
}

#[derive(Clone)]
pub struct JournalHandle {
    tx: mpsc::Sender<Append>,
    pub stats: Arc<JournalStats>,
}

pub type Permit<'a> = mpsc::Permit<'a, Append>;

impl JournalHandle {
    /// Starts the writer (and the syncer, for a store that defers its fsync); they end when
    /// every handle is dropped and the queue is empty.
    pub fn start(store: SharedStore, settings: &JournalSettings) -> JournalHandle {
        let (tx, rx) = mpsc::channel(settings.queue_len_max);
        let stats = Arc::new(JournalStats::default());
        let committer = match store.blocking() {
            Some(blocking) => Committer::Blocking(blocking),
            None => Committer::Async(store.clone()),
        };
        let syncer = store.defers_sync().then(|| {
            let (settle_tx, settle_rx) = mpsc::channel(SETTLE_QUEUE_MAX);
            committer.spawn(
                "surge-fsync",
                run_syncer(committer.clone(), settle_rx, stats.clone()),
            );
            settle_tx
        });
        let writer = Writer {
            committer: committer.clone(),
            rx,
            batch_rows_max: settings.batch_events_max,
            stats: stats.clone(),
            poisoned: HashMap::new(),
            syncer,
            snapshot_part_bytes: settings.snapshot_part_bytes.max(1),
            large_snapshots: VecDeque::new(),
        };
        committer.spawn("surge-journal", writer.run());
        JournalHandle { tx, stats }
    }

    /// False once the writer task has ended (then nothing can be made durable).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// A slot in the queue, or `None` when it is full (the caller answers 503).
    pub fn try_reserve(&self) -> Option<Permit<'_>> {
        self.tx.try_reserve().ok()
    }

    /// Queues a snapshot on its own if there is room, with `writer`'s fencing when given.
    /// Nobody waits for it: a snapshot skipped or lost only makes a recovery read more events.
    pub fn offer_snapshot(&self, record: SnapshotRecord, writer: Option<WriterId>) {
        if let Some(permit) = self.try_reserve() {
            permit.send(Append {
                batch: Batch {
                    snapshots: vec![record],
                    ..Batch::default()
                },
                writer,
                done: Box::new(|_| {}),
            });
        }
    }

    /// Commits `batch` and waits for the outcome (for callers that are not actors).
    pub async fn commit(&self, batch: Batch) -> Result<(), CommitError> {
        let (done_tx, done_rx) = oneshot::channel();
        let append = Append {
            batch,
            writer: None,
            done: Box::new(move |result| {
                let _ = done_tx.send(result);
            }),
        };
        self.tx
            .send(append)
            .await
            .map_err(|_| CommitError::Closed)?;
        done_rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Resolves once everything queued before it has been committed or failed.
    pub async fn barrier(&self) -> Result<(), CommitError> {
        self.commit(Batch::default()).await
    }
}

/// How the writer and the syncer reach the store.
#[derive(Clone)]
enum Committer {
    /// Awaited, as tasks of the caller's runtime (PostgreSQL: sqlx drives the connection).
    Async(SharedStore),
    /// Blocking calls, each of the writer and the syncer on a thread of its own (SQLite, see
    /// [`super::JournalStore::blocking`]): a commit or an fsync is then no hop to another thread
    /// and back, which on 2 busy cores cost ~100 us of run-queue wait each way.
    Blocking(Arc<dyn BlockingJournal>),
}

impl Committer {
    /// Runs `work` as a task, or on a named thread of its own with a single-threaded runtime
    /// (its awaits are only on channels, which work across runtimes).
    fn spawn(&self, name: &str, work: impl Future<Output = ()> + Send + 'static) {
        match self {
            Committer::Async(_) => {
                tokio::spawn(work);
            }
            Committer::Blocking(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a single-threaded runtime builds");
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || runtime.block_on(work))
                    .expect("the journal's thread starts");
            }
        }
    }

    async fn commit_parts(&self, parts: &[&Batch]) -> Result<(), StoreError> {
        match self {
            Committer::Async(store) => store.commit_parts(parts).await,
            Committer::Blocking(journal) => journal.commit_parts(parts),
        }
    }

    async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.commit_parts(&[batch]).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        match self {
            Committer::Async(store) => store.sync().await,
            Committer::Blocking(journal) => journal.sync(),
        }
    }
}

struct Writer {
    committer: Committer,
    rx: mpsc::Receiver<Append>,
    batch_rows_max: usize,
    stats: Arc<JournalStats>,
    poisoned: HashMap<String, u64>,
    /// Where completions go when the store defers its fsync; `None`: they run at once.
    syncer: Option<mpsc::Sender<Settle>>,
    /// Snapshots larger than this are written in parts of this size.
    snapshot_part_bytes: usize,
    /// Large snapshots being written, one part between two groups (at most one per pid).
    large_snapshots: VecDeque<LargeSnapshot>,
}

/// A large snapshot and the next part of it to write.
struct LargeSnapshot {
    record: SnapshotRecord,
    next_part: usize,
}

/// Completions to run in order once, if `needs_sync`, an fsync has covered them.
struct Settle {
    items: Vec<(Completion, Result<(), CommitError>)>,
    needs_sync: bool,
}

/// Groups the syncer may hold: past it the writer waits, which bounds the unsynced work.
const SETTLE_QUEUE_MAX: usize = 256;

impl Writer {
    /// Runs until every sender is gone (the process is shutting down). A part of a large
    /// snapshot is written after each group, and back to back while nothing else waits; what
    /// is left of them at the end is dropped (recovery then reads more events).
    async fn run(mut self) {
        loop {
            let next = if self.large_snapshots.is_empty() {
                self.rx.recv().await
            } else {
                match self.rx.try_recv() {
                    Ok(append) => Some(append),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.write_snapshot_part().await;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(first) = next else {
                break;
            };
            self.commit_gathered(first).await;
            self.write_snapshot_part().await;
        }
    }

    /// Commits the next part of the oldest large snapshot; its last part makes it current.
    async fn write_snapshot_part(&mut self) {
        let Some(large) = self.large_snapshots.front() else {
            return;
        };
        let record = &large.record;
        let parts = record.payload.len().div_ceil(self.snapshot_part_bytes);
        let start = large.next_part * self.snapshot_part_bytes;
        let end = (start + self.snapshot_part_bytes).min(record.payload.len());
        let last = (large.next_part + 1 == parts).then(|| SnapshotLast {
            at_ms: record.at_ms,
            parts: u32::try_from(parts).expect("parts of an in-memory snapshot fit u32"),
        });
        let batch = Batch {
            snapshot_parts: vec![SnapshotPart {
                pid: record.pid.clone(),
                seq: record.seq,
                n: u32::try_from(large.next_part).expect("parts fit u32"),
                bytes: record.payload[start..end].to_vec(),
                last,
            }],
            ..Batch::default()
        };
        match self.committer.commit(&batch).await {
            Ok(()) if last.is_none() => {
                if let Some(large) = self.large_snapshots.front_mut() {
                    large.next_part += 1;
                }
            }
            Ok(()) => {
                self.large_snapshots.pop_front();
            }
            Err(error) => {
                tracing::warn!(%error, "snapshot part write failed; recovery replays more events");
                self.large_snapshots.pop_front();
            }
        }
    }

    /// Commits `first` with whatever queued behind it, up to the group bound.
    async fn commit_gathered(&mut self, first: Append) {
        let mut group = vec![first];
        let mut rows = group[0].batch.rows();
        while rows < self.batch_rows_max {
            match self.rx.try_recv() {
                Ok(next) => {
                    rows += next.batch.rows();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let group = self.refuse_poisoned(group).await;
        self.commit_group(group).await;
    }

    async fn refuse_poisoned(&mut self, group: Vec<Append>) -> Vec<Append> {
        if self.poisoned.is_empty() {
            return group;
        }
        let mut accepted = Vec::with_capacity(group.len());
        let mut refused = Vec::new();
        for append in group {
            let poisoned = append
                .writer
                .as_ref()
                .and_then(|w| self.poisoned.get(&w.pid).map(|inc| (w, *inc)));
            match poisoned {
                Some((w, inc)) if w.incarnation == inc => refused.push((
                    append.done,
                    Err(CommitError::Failed(
                        "an earlier append of this entity failed".into(),
                    )),
                )),
                Some((w, _)) => {
                    let pid = w.pid.clone();
                    self.poisoned.remove(&pid);
                    accepted.push(append);
                }
                None => accepted.push(append),
            }
        }
        self.settle(refused, false).await;
        accepted
    }

    /// Runs completions, or hands them to the syncer so they run after an fsync (when
    /// `needs_sync`) and never before completions settled earlier.
    async fn settle(
        &mut self,
        items: Vec<(Completion, Result<(), CommitError>)>,
        needs_sync: bool,
    ) {
        if items.is_empty() {
            return;
        }
        let Some(syncer) = &self.syncer else {
            items.into_iter().for_each(|(done, result)| done(result));
            return;
        };
        if let Err(mpsc::error::SendError(settle)) = syncer.send(Settle { items, needs_sync }).await
        {
            // The syncer only ends with the process; nothing is durable any more.
            for (done, _) in settle.items {
                done(Err(CommitError::Closed));
            }
        }
    }

    async fn commit_group(&mut self, group: Vec<Append>) {
        // Barriers (appends with nothing to write) are answered once the whole group,
        // snapshots included, has been dealt with.
        let (barriers, mut group): (Vec<Append>, Vec<Append>) =
            group.into_iter().partition(|a| a.batch.is_empty());
        // Snapshots are committed after the callers have their replies: the journal is the
        // truth, a snapshot only shortens recovery, and a large one must not delay a group.
        let snapshots: Vec<_> = group
            .iter_mut()
            .flat_map(|a| std::mem::take(&mut a.batch.snapshots))
            .collect();
        let parts: Vec<&Batch> = group
            .iter()
            .map(|a| &a.batch)
            .filter(|b| !b.is_empty())
            .collect();
        if !parts.is_empty() {
            let started = Instant::now();
            let result = self.committer.commit_parts(&parts).await;
            self.record(&parts, started, result.is_ok());
            match result {
                Ok(()) => self.settle(succeeded(group), true).await,
                // One by one, to find the clashing append; the group's snapshots are dropped
                // (they are only a shortcut for recovery, and some may be of fenced states).
                Err(StoreError::Conflict(_)) if group.len() > 1 => {
                    self.commit_one_by_one(group).await;
                    self.answer_barriers(barriers).await;
                    return;
                }
                // A snapshot of a state whose events did not commit must never be written.
                Err(err) => {
                    let failed = group.into_iter().map(|a| self.fail(a, &err)).collect();
                    self.settle(failed, false).await;
                    self.answer_barriers(barriers).await;
                    return;
                }
            }
        } else {
            self.settle(succeeded(group), false).await;
        }
        self.commit_snapshots(snapshots).await;
        self.answer_barriers(barriers).await;
    }

    /// A barrier from an actor whose earlier append failed fails too: the read waiting behind
    /// it would otherwise see a state that was never persisted.
    async fn answer_barriers(&mut self, barriers: Vec<Append>) {
        let mut answers = Vec::with_capacity(barriers.len());
        for barrier in barriers {
            let poisoned = barrier
                .writer
                .as_ref()
                .is_some_and(|w| self.poisoned.get(&w.pid) == Some(&w.incarnation));
            let answer = if poisoned {
                Err(CommitError::Failed(
                    "an earlier append of this entity failed".into(),
                ))
            } else {
                Ok(())
            };
            answers.push((barrier.done, answer));
        }
        // In order behind the group, so a barrier never resolves before its fsync.
        self.settle(answers, false).await;
    }

    async fn commit_snapshots(&mut self, snapshots: Vec<super::SnapshotRecord>) {
        // A newer snapshot of an entity makes a large one of it still under way pointless.
        for new in &snapshots {
            self.large_snapshots
                .retain(|l| l.record.pid != new.pid || l.record.seq > new.seq);
        }
        let (large, snapshots): (Vec<_>, Vec<_>) = snapshots
            .into_iter()
            .partition(|s| s.payload.len() > self.snapshot_part_bytes);
        for record in large {
            self.large_snapshots.push_back(LargeSnapshot {
                record,
                next_part: 0,
            });
        }
        if snapshots.is_empty() {
            return;
        }
        let batch = Batch {
            snapshots,
            ..Batch::default()
        };
        if let Err(error) = self.committer.commit(&batch).await {
            tracing::warn!(%error, "snapshot write failed; recovery replays more events");
        }
    }

    /// After a clash in a group: find the clashing append(s) and let the others through. An
    /// append behind a failed one of the same incarnation is refused, as in any group.
    async fn commit_one_by_one(&mut self, group: Vec<Append>) {
        for append in group {
            let Some(append) = self.refuse_poisoned(vec![append]).await.pop() else {
                continue;
            };
            let started = Instant::now();
            let result = self.committer.commit(&append.batch).await;
            self.record(&[&append.batch], started, result.is_ok());
            match result {
                Ok(()) => self.settle(vec![(append.done, Ok(()))], true).await,
                Err(err) => {
                    let failed = self.fail(append, &err);
                    self.settle(vec![failed], false).await;
                }
            }
        }
    }

    /// Poisons the append's incarnation; returns its completion with the error to settle.
    fn fail(&mut self, append: Append, err: &StoreError) -> (Completion, Result<(), CommitError>) {
        let error = match err {
            StoreError::Conflict(detail) => CommitError::Fenced(detail.clone()),
            other => CommitError::Failed(other.to_string()),
        };
        if let Some(writer) = &append.writer {
            self.poisoned.insert(writer.pid.clone(), writer.incarnation);
        }
        tracing::error!(error = %error, "journal append failed");
        (append.done, Err(error))
    }

    fn record(&self, parts: &[&Batch], started: Instant, ok: bool) {
        let micros = micros_since(started);
        let stats = &self.stats;
        if !ok {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let rows: usize = parts.iter().map(|b| b.rows()).sum();
        let events: usize = parts.iter().map(|b| b.events.len()).sum();
        let rows = u64::try_from(rows).expect("usize fits u64");
        let events = u64::try_from(events).expect("usize fits u64");
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.rows.fetch_add(rows, Ordering::Relaxed);
        stats.events.fetch_add(events, Ordering::Relaxed);
        stats.last_batch_rows.store(rows, Ordering::Relaxed);
        stats.last_commit_micros.store(micros, Ordering::Relaxed);
        stats
            .commit_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        stats.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
    }
}

/// Microseconds since `started`, for the figures in [`JournalStats`].
pub(crate) fn micros_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn succeeded(group: Vec<Append>) -> Vec<(Completion, Result<(), CommitError>)> {
    group.into_iter().map(|a| (a.done, Ok(()))).collect()
}

/// Runs until the writer is gone: takes every group settled since its last fsync, runs one
/// fsync if any of them needs it, then their completions in order.
///
/// An fsync that fails stops the process: after a failed fsync the kernel may have dropped the
/// dirty pages, so neither retrying nor carrying on can be trusted (PostgreSQL panics for the
/// same reason). A restart recovers from what the journal holds; callers who got no answer
/// resolve the outcome with their Idempotency-Key, as after any crash.
async fn run_syncer(
    committer: Committer,
    mut rx: mpsc::Receiver<Settle>,
    stats: Arc<JournalStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut settles = vec![first];
        while let Ok(next) = rx.try_recv() {
            settles.push(next);
        }
        if settles.iter().any(|s| s.needs_sync) {
            let started = Instant::now();
            if let Err(error) = committer.sync().await {
                tracing::error!(%error, "journal fsync failed; stopping the process");
                std::process::abort();
            }
            let micros = micros_since(started);
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            stats.sync_micros_total.fetch_add(micros, Ordering::Relaxed);
            stats.sync_micros_max.fetch_max(micros, Ordering::Relaxed);
        }
        for settle in settles {
            for (done, result) in settle.items {
                done(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Settings;
    use crate::persistence::{EventRecord, SqliteStore, Store};

    async fn store() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Settings::defaults().database;
        let store = SqliteStore::open(&dir.path().join("j.db"), &db)
            .await
            .expect("opens");
        store.migrate().await.expect("migrates");
        (dir, Arc::new(store))
    }

    fn settings() -> JournalSettings {
        JournalSettings {
            queue_len_max: 64,
            ..Settings::defaults().journal
        }
    }

    fn event(pid: &str, seq: u64) -> Batch {
        Batch {
            events: vec![EventRecord {
                pid: pid.into(),
                seq,
                at_ms: 0,
                payload: vec![1, seq as u8],
            }],
            ..Batch::default()
        }
    }

    /// Queues an append and returns the receiver of its outcome.
    fn queue(
        handle: &JournalHandle,
        batch: Batch,
        writer: Option<(&str, u64)>,
    ) -> oneshot::Receiver<Result<(), CommitError>> {
        let (tx, rx) = oneshot::channel();
        let permit = handle.try_reserve().expect("queue has room");
        permit.send(Append {
            batch,
            writer: writer.map(|(pid, incarnation)| WriterId {
                pid: pid.into(),
                incarnation,
            }),
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
        rx
    }

    #[tokio::test]
    async fn appends_queued_together_share_one_commit() {
        let (_dir, store) = store().await;
        let handle = JournalHandle::start(store.clone(), &settings());
        let outcomes: Vec<_> = (1..=20)
            .map(|i| queue(&handle, event(&format!("e:{i}"), 1), None))
            .collect();
        for outcome in outcomes {
            assert_eq!(outcome.await.expect("answered"), Ok(()));
        }
        let batches = handle.stats.batches.load(Ordering::Relaxed);
        assert!(batches < 20, "20 appends took {batches} commits");
        let (_, events) = store.load("e:7").await.expect("loads");
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn a_clashing_append_is_fenced_and_its_neighbours_commit() {
        let (_dir, store) = store().await;
        store.commit(&event("x:1", 1)).await.expect("first writer");
        let handle = JournalHandle::start(store.clone(), &settings());
        let clash = queue(&handle, event("x:1", 1), Some(("x:1", 7)));
        let neighbour = queue(&handle, event("y:1", 1), Some(("y:1", 8)));
        assert!(matches!(
            clash.await.expect("answered"),
            Err(CommitError::Fenced(_))
        ));
        assert_eq!(neighbour.await.expect("answered"), Ok(()));
        // The fenced incarnation's later appends are refused: no gap, no second writer.
        let later = queue(&handle, event("x:1", 2), Some(("x:1", 7)));
        assert!(matches!(
            later.await.expect("answered"),
            Err(CommitError::Failed(_))
        ));
        // A new incarnation, recovered from the journal, writes again.
        let fresh = queue(&handle, event("x:1", 2), Some(("x:1", 9)));
        assert_eq!(fresh.await.expect("answered"), Ok(()));
        let (_, events) = store.load("x:1").await.expect("loads");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn after_a_clash_the_same_incarnations_later_appends_in_the_group_are_refused() {
        let (_dir, store) = store().await;
        store
            .commit(&event("p:1", 1))
            .await
            .expect("the other writer");
        let handle = JournalHandle::start(store.clone(), &settings());
        // One group: the stale incarnation's seq 1 (clash) and seq 2, and a neighbour.
        let clash = queue(&handle, event("p:1", 1), Some(("p:1", 3)));
        let behind = queue(&handle, event("p:1", 2), Some(("p:1", 3)));
        let neighbour = queue(&handle, event("q:1", 1), Some(("q:1", 4)));
        assert!(matches!(
            clash.await.expect("answered"),
            Err(CommitError::Fenced(_))
        ));
        assert!(matches!(
            behind.await.expect("answered"),
            Err(CommitError::Failed(_))
        ));
        assert_eq!(neighbour.await.expect("answered"), Ok(()));
        let (_, events) = store.load("p:1").await.expect("loads");
        assert_eq!(events.len(), 1, "only the other writer's event");
    }

    #[tokio::test]
    async fn a_read_barrier_behind_a_failed_append_of_its_actor_fails_too() {
        let (_dir, store) = store().await;
        store
            .commit(&event("r:1", 1))
            .await
            .expect("the other writer");
        let handle = JournalHandle::start(store.clone(), &settings());
        let clash = queue(&handle, event("r:1", 1), Some(("r:1", 6)));
        let read = queue(&handle, Batch::default(), Some(("r:1", 6)));
        let unrelated = queue(&handle, Batch::default(), None);
        assert!(matches!(
            clash.await.expect("answered"),
            Err(CommitError::Fenced(_))
        ));
        assert!(matches!(
            read.await.expect("answered"),
            Err(CommitError::Failed(_))
        ));
        assert_eq!(unrelated.await.expect("answered"), Ok(()));
    }

    #[tokio::test]
    async fn with_synchronous_full_no_append_is_answered_before_an_fsync_covers_it() {
        let (_dir, store) = store().await;
        assert!(store.defers_sync(), "FULL pipelines its fsync");
        let handle = JournalHandle::start(store.clone(), &settings());
        let mut seen = Vec::new();
        for i in 1..=20 {
            let (tx, rx) = oneshot::channel();
            let stats = handle.stats.clone();
            let permit = handle.try_reserve().expect("queue has room");
            permit.send(Append {
                batch: event(&format!("s:{i}"), 1),
                writer: None,
                done: Box::new(move |r| {
                    // The fsyncs finished when this append was answered.
                    let _ = tx.send((r, stats.syncs.load(Ordering::Relaxed)));
                }),
            });
            seen.push(rx);
        }
        let mut last_syncs = 0;
        for rx in seen {
            let (result, syncs) = rx.await.expect("answered");
            assert_eq!(result, Ok(()));
            assert!(
                syncs >= 1 && syncs >= last_syncs,
                "answered after {syncs} fsyncs"
            );
            last_syncs = syncs;
        }
        handle.barrier().await.expect("barrier");
        let syncs = handle.stats.syncs.load(Ordering::Relaxed);
        assert!(syncs <= handle.stats.batches.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn with_synchronous_normal_commits_answer_without_an_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Settings::defaults().database;
        db.sqlite_synchronous = crate::config::SqliteSynchronous::Normal;
        let store = SqliteStore::open(&dir.path().join("n.db"), &db)
            .await
            .expect("opens");
        store.migrate().await.expect("migrates");
        let store: SharedStore = Arc::new(store);
        assert!(!store.defers_sync());
        let handle = JournalHandle::start(store.clone(), &settings());
        let outcome = queue(&handle, event("n:1", 1), None);
        assert_eq!(outcome.await.expect("answered"), Ok(()));
        assert_eq!(handle.stats.syncs.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_barrier_waits_for_everything_queued_before_it() {
        let (_dir, store) = store().await;
        let handle = JournalHandle::start(store.clone(), &settings());
        let _first = queue(&handle, event("b:1", 1), None);
        handle.barrier().await.expect("barrier");
        let (_, events) = store.load("b:1").await.expect("loads");
        assert_eq!(
            events.len(),
            1,
            "the append before the barrier is committed"
        );
    }

    /// The parts of a large snapshot are rows of their own, and a snapshot whose parts are not
    /// all there is not used: the entity is recovered from its events alone.
    #[tokio::test]
    async fn a_large_snapshot_is_stored_in_parts_and_a_missing_part_voids_it() {
        let (dir, store) = store().await;
        let settings = JournalSettings {
            snapshot_part_bytes: 100,
            ..settings()
        };
        let handle = JournalHandle::start(store.clone(), &settings);
        handle.commit(event("p", 1)).await.expect("commits");
        let snapshot = SnapshotRecord {
            pid: "p".into(),
            seq: 1,
            at_ms: 0,
            payload: vec![5; 250],
        };
        handle.offer_snapshot(snapshot.clone(), None);
        // A part is written after each group: a few barriers see all three through.
        let mut loaded = None;
        for _ in 0..10 {
            handle.barrier().await.expect("a group");
            loaded = store.load("p").await.expect("loads").0;
            if loaded.is_some() {
                break;
            }
        }
        assert_eq!(loaded.as_ref(), Some(&snapshot));
        let db = rusqlite::Connection::open(dir.path().join("j.db")).expect("opens");
        let count = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).expect("counts") };
        assert_eq!(
            count("SELECT count(*) FROM snapshot_parts WHERE pid = 'p'"),
            3
        );
        assert_eq!(
            count("SELECT length(payload) FROM snapshots WHERE pid = 'p'"),
            0
        );

        // The same seq snapshotted again (another incarnation, its maps encoded in another
        // order) leaves the current parts alone: a load must never splice two encodings.
        let again = SnapshotRecord {
            payload: vec![7; 250],
            ..snapshot.clone()
        };
        handle.offer_snapshot(again, None);
        handle.commit(event("other", 1)).await.expect("commits");
        for _ in 0..4 {
            handle.barrier().await.expect("a group");
        }
        assert_eq!(
            store.load("p").await.expect("loads").0.as_ref(),
            Some(&snapshot)
        );
        assert_eq!(
            count("SELECT count(*) FROM snapshot_parts WHERE pid = 'p'"),
            3
        );
        db.execute("DELETE FROM snapshot_parts WHERE pid = 'p' AND n = 1", [])
            .expect("deletes");
        let (voided, events) = store.load("p").await.expect("loads");
        assert_eq!(voided, None);
        assert_eq!(events.len(), 1, "recovery reads every event instead");

        // A newer snapshot, small enough to go inline, takes the old one's parts with it.
        handle.commit(event("p", 2)).await.expect("commits");
        let small = SnapshotRecord {
            seq: 2,
            payload: vec![6; 10],
            ..snapshot
        };
        handle.offer_snapshot(small.clone(), None);
        handle
            .barrier()
            .await
            .expect("the snapshot's group is done");
        assert_eq!(store.load("p").await.expect("loads").0, Some(small));
        assert_eq!(
            count("SELECT count(*) FROM snapshot_parts WHERE pid = 'p'"),
            0
        );

        // Parts of a write that stopped half-way are dropped at the next start-up.
        db.execute(
            "INSERT INTO snapshot_parts (pid, seq, n, bytes) VALUES ('q', 9, 0, x'01')",
            [],
        )
        .expect("inserts");
        store.migrate().await.expect("migrates");
        assert_eq!(count("SELECT count(*) FROM snapshot_parts"), 0);
    }
}
