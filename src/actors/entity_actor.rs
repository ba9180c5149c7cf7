//! `EntityActor<E>`: the one actor that runs every entity kind.
//!
//! Supervised by its kind's [`crate::supervisors::region::Region`]. On start it waits for the
//! journal writer to drain what earlier incarnations queued, then recovers from the latest
//! snapshot plus the journal tail. For each command it decides, applies the events in memory,
//! hands them to the group-commit writer and goes on to the next message; the reply leaves when
//! the batch holding the events has committed (pipelined persistence). A query that arrives
//! while commits are pending is answered behind them, so nobody reads a state that is not yet
//! durable. A failed commit stops the actor, and the region restarts it from the journal.
//! When a batch commits, the entity's view as of that batch goes to its live topic, if anyone
//! watches it ([`crate::live`]).
//!
//! Parking: an actor costs about 8 KB (its mailboxes and task) whatever its entity, so an
//! entity idle for `actors.park_after_secs`, with nothing waiting to commit, hands its state
//! back to the region's registry and stops. It stays activated (in memory, addressable without
//! a database read); its next message starts a new actor from that state.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{checked_snapshot, pid, Ctx, Entity, Hosted, SideWrites};
use crate::error::ApiError;
use crate::live::{Changes, LiveChange, LiveHub, Update};
use crate::persistence::journal::{Append, CommitError, WriterId};
use crate::persistence::{codec, Batch, DeadlineWrite, EventRecord, SnapshotRecord};
use crate::runtime::SharedRuntime;

/// How soon a deadline step that found the journal full is tried again.
const DEADLINE_RETRY_MS: i64 = 100;

pub type ReplyTx<E> = oneshot::Sender<Result<<E as Entity>::Reply, ApiError>>;

pub struct CommandEnvelope<E: Hosted> {
    pub command: E::Command,
    pub side: Option<SideWrites<E>>,
    pub reply: ReplyTx<E>,
    /// Set when the actor takes the command: a reply dropped after that is not safe to retry.
    pub taken: Arc<std::sync::atomic::AtomicBool>,
}

/// What the admin console and tests see of a running entity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// False for an entity that was never created (a blank state activated by the look-up).
    pub exists: bool,
    pub last_seq: u64,
    pub snapshot_seq: u64,
    pub pending_commits: usize,
    pub state: serde_json::Value,
}

pub enum EntityMsg<E: Hosted> {
    Command(CommandEnvelope<E>),
    DeadlineDue,
    /// Stop if idle (sent by the region's sweeper) or unconditionally when `force`.
    Passivate {
        force: bool,
    },
    /// Hand the state to the registry and stop, if idle (sent by the region's sweeper).
    Park,
    CommitFailed(CommitError),
    Inspect(oneshot::Sender<Inspection>),
    /// Take a snapshot now if the journal is ahead of the last one (admin); answers the seq
    /// the entity's snapshot covers once the queued one is written.
    SnapshotNow(oneshot::Sender<u64>),
    /// Publish the current view to the entity's live topic once it is durable (a new
    /// subscriber's first value); answers whether the entity exists.
    PublishLive(oneshot::Sender<Result<bool, ApiError>>),
    /// Fault injection for tests and drills: the actor panics on this message.
    InjectPanic,
    /// Fault injection for tests and drills: the actor stops taking messages until the sender
    /// is used or dropped (a stalled entity, to exercise admission bounds).
    Stall(oneshot::Receiver<()>),
}

/// Counters shared between an actor and the callers that address it.
#[derive(Debug)]
pub struct EntityShared {
    /// Commands sent but not yet taken from the mailbox (admission bound).
    pub inflight: AtomicUsize,
    pub last_active_ms: AtomicI64,
    pub last_seq: AtomicU64,
    pub snapshot_seq: AtomicU64,
    /// Set by a failed commit before anything else can see the state it failed to persist;
    /// from then on this incarnation answers nothing and writes nothing.
    pub commit_failed: std::sync::atomic::AtomicBool,
}

impl EntityShared {
    pub fn new(now_ms: i64) -> EntityShared {
        EntityShared {
            inflight: AtomicUsize::new(0),
            last_active_ms: AtomicI64::new(now_ms),
            last_seq: AtomicU64::new(0),
            snapshot_seq: AtomicU64::new(0),
            commit_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A running entity as its region's registry holds it.
pub struct LiveEntity<E: Hosted> {
    pub actor: ActorRef<EntityMsg<E>>,
    pub shared: Arc<EntityShared>,
}

impl<E: Hosted> Clone for LiveEntity<E> {
    fn clone(&self) -> Self {
        LiveEntity {
            actor: self.actor.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// An activated entity whose actor is stopped: its state waits in the registry.
pub struct Parked<E: Hosted> {
    pub entity: E,
    pub last_seq: u64,
    pub snapshot_seq: u64,
    pub snapshot_weight: u64,
    pub last_active_ms: i64,
}

/// A registry entry: a running actor, or a parked state.
pub enum Slot<E: Hosted> {
    Live(LiveEntity<E>),
    Parked(Box<Parked<E>>),
}

impl<E: Hosted> Slot<E> {
    pub fn live(&self) -> Option<&LiveEntity<E>> {
        match self {
            Slot::Live(live) => Some(live),
            Slot::Parked(_) => None,
        }
    }

    /// `running` (an actor) or `parked` (state in memory, actor stopped), as the admin API and
    /// the metrics name it.
    pub fn status(&self) -> &'static str {
        match self {
            Slot::Live(_) => "running",
            Slot::Parked(_) => "parked",
        }
    }
}

pub type LiveMap<E> = Arc<DashMap<String, Slot<E>>>;

pub struct EntityArgs<E: Hosted> {
    pub id: String,
    pub rt: SharedRuntime,
    pub shared: Arc<EntityShared>,
    pub live: LiveMap<E>,
    /// The state of a parked entity; `None` recovers from the journal.
    pub parked: Option<Box<Parked<E>>>,
}

pub struct EntityActor<E>(PhantomData<fn() -> E>);

/// A view, or a step's changes, waiting for its batch to commit before it goes to the topic's
/// subscribers.
struct Published {
    hub: Arc<LiveHub>,
    topic: String,
    value: PublishedValue,
}

enum PublishedValue {
    View(Update),
    Changes(Changes),
}

impl Published {
    fn send(self) {
        match self.value {
            PublishedValue::View(update) => self.hub.publish(&self.topic, update),
            PublishedValue::Changes(changes) => self.hub.publish_changes(&self.topic, changes),
        }
    }
}

impl<E> Default for EntityActor<E> {
    fn default() -> Self {
        EntityActor(PhantomData)
    }
}

pub struct EntityState<E: Hosted> {
    id: String,
    pid: String,
    /// The live-update topic, if the kind has one.
    topic: Option<String>,
    entity: E,
    last_seq: u64,
    snapshot_seq: u64,
    /// The state's size at the last snapshot: the next one waits at least that many events.
    snapshot_weight: u64,
    incarnation: u64,
    pending: Arc<AtomicUsize>,
    timer: Option<(i64, JoinHandle<()>)>,
    written: WrittenRows,
    /// The seq of a change topic's full view queued behind pending commits, 0 when none is in
    /// flight: a second request at the same seq builds nothing (a stadium's view is 60,000
    /// seats). The queued append clears it, whatever became of the view.
    full_view_queued: Arc<AtomicU64>,
    /// The last seq a change topic was not told of (nobody watched, for an instant): a full
    /// view older than it misses that step.
    uncollected_seq: u64,
    rt: SharedRuntime,
    shared: Arc<EntityShared>,
    live: LiveMap<E>,
    parked: Option<Box<Parked<E>>>,
}

impl<E: Hosted> Actor for EntityActor<E> {
    type Msg = EntityMsg<E>;
    type State = EntityState<E>;
    type Arguments = EntityArgs<E>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: EntityArgs<E>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let incarnation = args.rt.next_incarnation();
        Ok(EntityState {
            pid: pid::<E>(&args.id),
            topic: E::live_topic(&args.id),
            entity: E::blank(&args.id),
            id: args.id,
            last_seq: 0,
            snapshot_seq: 0,
            snapshot_weight: 0,
            incarnation,
            pending: Arc::new(AtomicUsize::new(0)),
            timer: None,
            written: WrittenRows::default(),
            full_view_queued: Arc::new(AtomicU64::new(0)),
            uncollected_seq: 0,
            rt: args.rt,
            shared: args.shared,
            live: args.live,
            parked: args.parked,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match state.parked.take() {
            Some(parked) => state.unpark(*parked),
            None => state.recover().await?,
        }
        state.arm_deadline(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, timer)) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EntityMsg::Command(envelope) => {
                envelope.taken.store(true, Ordering::Release);
                state.shared.inflight.fetch_sub(1, Ordering::AcqRel);
                let now_ms = state.rt.now_ms();
                state.shared.last_active_ms.store(now_ms, Ordering::Relaxed);
                state.run(
                    &myself,
                    envelope.command,
                    envelope.side,
                    Some(envelope.reply),
                );
                if !state.entity.exists() && state.last_seq == 0 && state.idle() {
                    // Nothing lives here: do not keep an actor for a miss.
                    state.passivate(&myself);
                }
            }
            EntityMsg::DeadlineDue => {
                state.timer = None;
                let ctx = Ctx {
                    now_ms: state.rt.now_ms(),
                };
                let ran = match state.entity.deadline_command(&ctx) {
                    Some(command) => state.run(&myself, command, None, None),
                    None => true,
                };
                if ran {
                    state.arm_deadline(&myself);
                } else {
                    // The journal is full: try again shortly instead of spinning on a due timer.
                    state.arm_at(&myself, Some(ctx.now_ms + DEADLINE_RETRY_MS));
                }
            }
            EntityMsg::Passivate { force } => {
                if force || state.may_passivate() {
                    state.passivate(&myself);
                }
            }
            EntityMsg::Park => {
                if state.may_park() {
                    if state.entity.exists() {
                        state.park(&myself);
                    } else {
                        // Woken for nothing (an inspection, a stale deadline row): just go.
                        state.passivate(&myself);
                    }
                }
            }
            EntityMsg::CommitFailed(error) => {
                return Err(format!("{}: journal commit failed: {error}", state.pid).into());
            }
            EntityMsg::Inspect(reply) => {
                let _ = reply.send(state.inspection());
            }
            EntityMsg::SnapshotNow(reply) => {
                if state.last_seq > state.snapshot_seq {
                    let now_ms = state.rt.now_ms();
                    state.snapshot_behind(&myself, now_ms);
                }
                let _ = reply.send(state.snapshot_seq);
            }
            EntityMsg::PublishLive(reply) => {
                let _ = reply.send(state.publish_live());
                if !state.entity.exists() && state.last_seq == 0 && state.idle() {
                    state.passivate(&myself);
                }
            }
            EntityMsg::InjectPanic => panic!("{}: injected panic", state.pid),
            EntityMsg::Stall(resume) => {
                let _ = resume.await;
            }
        }
        Ok(())
    }
}

impl<E: Hosted> EntityState<E> {
    async fn recover(&mut self) -> Result<(), ActorProcessingErr> {
        // Appends queued by an earlier incarnation land before we read.
        self.rt.journal.barrier().await?;
        let (snapshot, events) = self.rt.store.load(&self.pid).await?;
        if let Some(snapshot) = snapshot {
            let mut entity: E = codec::decode(E::VERSION, &snapshot.payload)?;
            entity.restore();
            entity.check_deep_invariants().map_err(|e| {
                format!(
                    "{}: snapshot {} breaks invariants: {e}",
                    self.pid, snapshot.seq
                )
            })?;
            self.entity = entity;
            self.last_seq = snapshot.seq;
            self.snapshot_seq = snapshot.seq;
            self.snapshot_weight = self.entity.snapshot_weight();
        }
        for record in events {
            if record.seq != self.last_seq + 1 {
                return Err(format!("{}: journal gap before seq {}", self.pid, record.seq).into());
            }
            let event: E::Event = codec::decode(E::VERSION, &record.payload)?;
            self.entity.apply(&event);
            self.last_seq = record.seq;
        }
        self.entity
            .check_deep_invariants()
            .map_err(|e| format!("{}: recovered state breaks invariants: {e}", self.pid))?;
        self.written = WrittenRows {
            deadline_ms: self.entity.next_deadline_ms(),
            read_row_body: self.entity.read_row().map(|row| row.body),
        };
        self.publish_seqs();
        Ok(())
    }

    fn unpark(&mut self, parked: Parked<E>) {
        self.entity = parked.entity;
        self.last_seq = parked.last_seq;
        self.snapshot_seq = parked.snapshot_seq;
        self.snapshot_weight = parked.snapshot_weight;
        self.written = WrittenRows {
            deadline_ms: self.entity.next_deadline_ms(),
            // Unknown after parking: the next change rewrites the read row once.
            read_row_body: None,
        };
        self.publish_seqs();
    }

    /// Decide, apply, append; the reply leaves once the append has committed.
    /// Returns false when the command could not be taken (journal queue full, or this
    /// incarnation's state is no longer trusted).
    fn run(
        &mut self,
        myself: &ActorRef<EntityMsg<E>>,
        command: E::Command,
        side: Option<SideWrites<E>>,
        reply: Option<ReplyTx<E>>,
    ) -> bool {
        if self.failed() {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ApiError::unavailable("the entity is restarting")));
            }
            return false;
        }
        let rt = self.rt.clone();
        let Some(permit) = rt.journal.try_reserve() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ApiError::unavailable("the journal queue is full")));
            }
            return false;
        };
        let now_ms = self.rt.now_ms();
        let decision = match self.entity.decide(&command, &Ctx { now_ms }) {
            Ok(decision) => decision,
            Err(rejection) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(rejection.into()));
                }
                return true;
            }
        };
        let nothing_to_write = decision.events.is_empty() && side.is_none();
        if nothing_to_write && self.pending.load(Ordering::Acquire) == 0 {
            // Checked after `pending`: a failed commit marks the entity before lowering
            // `pending`, so this sees any failure among the commits it waited for.
            let answer = if self.failed() {
                Err(ApiError::unavailable("the entity is restarting"))
            } else {
                Ok(decision.reply)
            };
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
            return true;
        }
        let prev_seq = self.last_seq;
        let mut live_items = self.collects_changes().then(Vec::new);
        let step = StepInput {
            events: decision.events,
            at_ms: now_ms,
            side: side.map(|side| side(&decision.reply, now_ms)),
            live_items: live_items.as_mut(),
        };
        let batch = step_rows(
            &mut self.entity,
            &self.pid,
            &mut self.last_seq,
            &mut self.written,
            step,
        );
        self.publish_seqs();
        let published = self.published_after(prev_seq, live_items, now_ms);
        self.pending.fetch_add(1, Ordering::AcqRel);
        permit.send(Append {
            batch,
            writer: Some(self.writer_id()),
            done: self.completion(myself.clone(), decision.reply, reply, published),
        });
        // After the send: the snapshot's append queues behind the events it covers.
        if self.snapshot_due() {
            self.snapshot_behind(myself, now_ms);
        }
        self.arm_deadline(myself);
        true
    }

    fn writer_id(&self) -> WriterId {
        WriterId {
            pid: self.pid.clone(),
            incarnation: self.incarnation,
        }
    }

    /// Waiting as many events as the last snapshot had entries keeps snapshot cost amortised
    /// O(1) per event for states that grow (a hot item's open reservations).
    fn snapshot_due(&self) -> bool {
        let every = self.rt.settings.journal.snapshot_every_events;
        self.last_seq - self.snapshot_seq >= every.max(self.snapshot_weight)
    }

    /// A periodic snapshot: the actor only clones its state; the invariant check, the
    /// encoding and the append run on a blocking thread. Done in the actor they stalled every
    /// caller of a hot entity whose state had grown (a coupon storm's policy with 100k
    /// holders: p99 76 ms with snapshots, 17 ms without, `scripts/bench-hot.sh PARTS=coupons`).
    /// The append carries this incarnation's writer id and queues behind the events it
    /// covers, so the journal commits it only after them, and refuses it if they failed.
    fn snapshot_behind(&mut self, myself: &ActorRef<EntityMsg<E>>, now_ms: i64) {
        let entity = self.entity.clone();
        let (pid, seq, writer) = (self.pid.clone(), self.last_seq, self.writer_id());
        self.snapshot_seq = seq;
        self.snapshot_weight = entity.snapshot_weight();
        self.publish_seqs();
        let journal = self.rt.journal.clone();
        let myself = myself.clone();
        tokio::task::spawn_blocking(move || match checked_snapshot(&entity, pid, seq, now_ms) {
            Ok(record) => journal.offer_snapshot(record, Some(writer)),
            Err(violation) => {
                // Corrupt state: the actor fails and is restarted from the journal.
                let error = format!("refusing to snapshot a broken state: {violation}");
                let _ = myself.cast(EntityMsg::CommitFailed(CommitError::Failed(error)));
            }
        });
    }

    fn snapshot(&mut self, now_ms: i64) -> SnapshotRecord {
        let record = checked_snapshot(&self.entity, self.pid.clone(), self.last_seq, now_ms)
            .unwrap_or_else(|violation| {
                panic!(
                    "{}: refusing to snapshot a broken state: {violation}",
                    self.pid
                )
            });
        self.snapshot_seq = self.last_seq;
        self.snapshot_weight = self.entity.snapshot_weight();
        self.publish_seqs();
        record
    }

    fn completion(
        &self,
        myself: ActorRef<EntityMsg<E>>,
        value: E::Reply,
        reply: Option<ReplyTx<E>>,
        published: Option<Published>,
    ) -> Box<dyn FnOnce(Result<(), CommitError>) + Send> {
        let pending = self.pending.clone();
        let shared = self.shared.clone();
        Box::new(move |result| {
            if result.is_err() {
                // Before `pending` drops: nothing may read or park the unpersisted state.
                shared.commit_failed.store(true, Ordering::Release);
            }
            pending.fetch_sub(1, Ordering::AcqRel);
            match result {
                Ok(()) => {
                    if let Some(published) = published {
                        published.send();
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(value));
                    }
                }
                Err(error) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(ApiError::outcome_unknown(
                            "the change could not be confirmed durable; retry with the same Idempotency-Key",
                        )));
                    }
                    let _ = myself.cast(EntityMsg::CommitFailed(error));
                }
            }
        })
    }

    /// The view for the live topic as of now, if anyone watches it.
    fn live_update(&self, now_ms: i64) -> Option<Published> {
        let topic = self.topic.as_ref()?;
        if !self.rt.live.is_watched(topic) {
            return None;
        }
        let data = self.entity.live_view(now_ms)?;
        Some(Published {
            hub: self.rt.live.clone(),
            topic: topic.clone(),
            value: PublishedValue::View(Update::new(topic, self.last_seq, &data)),
        })
    }

    /// True when a step's changes are wanted: a change topic that someone watches. Every
    /// step with events then publishes its changes, even none, so that the topic's steps
    /// chain from one sequence number to the next.
    fn collects_changes(&self) -> bool {
        E::LIVE_CHANGES
            && self
                .topic
                .as_ref()
                .is_some_and(|topic| self.rt.live.is_watched(topic))
    }

    /// The change topic holds a full view a session can start from (see
    /// [`LiveHub::holds_usable_view`]).
    fn holds_usable_view(&self) -> bool {
        self.topic
            .as_ref()
            .is_some_and(|topic| self.rt.live.holds_usable_view(topic, self.uncollected_seq))
    }

    /// What goes to the live topic once the step that took the entity from `prev_seq` to
    /// `last_seq` has committed: its changes (`live_items`, collected for a watched change
    /// topic), or its view; nothing for a step without events.
    fn published_after(
        &mut self,
        prev_seq: u64,
        live_items: Option<Vec<LiveChange>>,
        now_ms: i64,
    ) -> Option<Published> {
        if self.last_seq == prev_seq {
            return None;
        }
        match live_items {
            Some(items) => self.changes_update(prev_seq, items),
            None if E::LIVE_CHANGES => {
                self.uncollected_seq = self.last_seq;
                None
            }
            None => self.live_update(now_ms),
        }
    }

    fn changes_update(&self, prev_seq: u64, items: Vec<LiveChange>) -> Option<Published> {
        Some(Published {
            hub: self.rt.live.clone(),
            topic: self.topic.clone()?,
            value: PublishedValue::Changes(Changes {
                prev_seq,
                seq: self.last_seq,
                items,
            }),
        })
    }

    /// A new subscriber's first value: published at once if every event is durable, else
    /// behind the pending commits (an empty append), like a query.
    fn publish_live(&mut self) -> Result<bool, ApiError> {
        if self.failed() {
            return Err(ApiError::unavailable("the entity is restarting"));
        }
        if !self.entity.exists() {
            return Ok(false);
        }
        if E::LIVE_CHANGES
            && (self.holds_usable_view()
                || self.full_view_queued.load(Ordering::Acquire) == self.last_seq)
        {
            // A full view is big (every seat): one serves every session that starts while the
            // topic keeps the steps after it.
            return Ok(true);
        }
        let Some(published) = self.live_update(self.rt.now_ms()) else {
            return Ok(true);
        };
        // `failed` is read after `pending`, as in `run`: a commit that failed meanwhile is
        // seen, and its unpersisted state is not published.
        if self.pending.load(Ordering::Acquire) == 0 {
            if self.failed() {
                return Err(ApiError::unavailable("the entity is restarting"));
            }
            published.send();
            return Ok(true);
        }
        let permit = self
            .rt
            .journal
            .try_reserve()
            .ok_or_else(|| ApiError::unavailable("the journal queue is full"))?;
        let (queued, seq) = (self.full_view_queued.clone(), self.last_seq);
        queued.store(seq, Ordering::Release);
        permit.send(Append {
            batch: Batch::default(),
            writer: Some(self.writer_id()),
            done: Box::new(move |result| {
                if result.is_ok() {
                    published.send();
                }
                let _ = queued.compare_exchange(seq, 0, Ordering::AcqRel, Ordering::Acquire);
            }),
        });
        Ok(true)
    }

    /// Keeps exactly one timer, for the entity's next deadline.
    fn arm_deadline(&mut self, myself: &ActorRef<EntityMsg<E>>) {
        let wanted = self.entity.next_deadline_ms();
        self.arm_at(myself, wanted);
    }

    fn arm_at(&mut self, myself: &ActorRef<EntityMsg<E>>, wanted: Option<i64>) {
        if self.timer.as_ref().map(|(at, _)| *at) == wanted {
            return;
        }
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
        if let Some(at_ms) = wanted {
            let sleep = self.rt.clock.sleep_until(at_ms);
            let myself = myself.clone();
            let timer = tokio::spawn(async move {
                sleep.await;
                let _ = myself.cast(EntityMsg::DeadlineDue);
            });
            self.timer = Some((at_ms, timer));
        }
    }

    fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0 && !self.failed()
    }

    fn failed(&self) -> bool {
        self.shared.commit_failed.load(Ordering::Acquire)
    }

    fn may_passivate(&self) -> bool {
        let settings = &self.rt.settings;
        let now_ms = self.rt.now_ms();
        let idle_for_ms = now_ms - self.shared.last_active_ms.load(Ordering::Relaxed);
        let passivate_after_ms = i64::try_from(settings.actors.passivate_after_secs * 1000)
            .expect("passivation delay fits i64");
        let lookahead_ms =
            i64::try_from(settings.deadlines.lookahead_secs * 1000).expect("lookahead fits i64");
        let deadline_near = self
            .entity
            .next_deadline_ms()
            .is_some_and(|at| at <= now_ms + lookahead_ms);
        self.idle() && idle_for_ms >= passivate_after_ms && !deadline_near
    }

    fn may_park(&self) -> bool {
        let settings = &self.rt.settings;
        let now_ms = self.rt.now_ms();
        let idle_for_ms = now_ms - self.shared.last_active_ms.load(Ordering::Relaxed);
        let park_after_ms =
            i64::try_from(settings.actors.park_after_secs * 1000).unwrap_or(i64::MAX);
        let lookahead_ms =
            i64::try_from(settings.deadlines.lookahead_secs * 1000).unwrap_or(i64::MAX);
        let deadline_near = self
            .entity
            .next_deadline_ms()
            .is_some_and(|at| at <= now_ms + lookahead_ms);
        self.idle() && idle_for_ms >= park_after_ms && !deadline_near
    }

    /// Leaves the state in the registry and stops. Messages still queued are dropped and
    /// retried by their callers on a new actor started from that state.
    fn park(&mut self, myself: &ActorRef<EntityMsg<E>>) {
        let my_id = myself.get_id();
        let mut parked = Some(Box::new(Parked {
            entity: std::mem::replace(&mut self.entity, E::blank(&self.id)),
            last_seq: self.last_seq,
            snapshot_seq: self.snapshot_seq,
            snapshot_weight: self.snapshot_weight,
            last_active_ms: self.shared.last_active_ms.load(Ordering::Relaxed),
        }));
        if let Some(mut slot) = self.live.get_mut(&self.id) {
            if slot.live().is_some_and(|live| live.actor.get_id() == my_id) {
                *slot = Slot::Parked(parked.take().expect("parked once"));
            }
        }
        if let Some(parked) = parked {
            // Not ours to park (the registry moved on): keep serving.
            self.entity = parked.entity;
            return;
        }
        myself.stop(Some("parked".into()));
    }

    /// Snapshot if behind, leave the registry, stop. Messages still queued are dropped, and
    /// their callers retry on a fresh activation (nothing of theirs was persisted).
    fn passivate(&mut self, myself: &ActorRef<EntityMsg<E>>) {
        // Only a state whose every event has committed may be snapshotted.
        if self.idle() && self.entity.exists() && self.last_seq > self.snapshot_seq {
            let record = self.snapshot(self.rt.now_ms());
            self.rt.journal.offer_snapshot(record, None);
        }
        let my_id = myself.get_id();
        self.live.remove_if(&self.id, |_, slot| {
            slot.live().is_some_and(|live| live.actor.get_id() == my_id)
        });
        myself.stop(Some("passivated".into()));
    }

    fn publish_seqs(&self) {
        self.shared.last_seq.store(self.last_seq, Ordering::Relaxed);
        self.shared
            .snapshot_seq
            .store(self.snapshot_seq, Ordering::Relaxed);
    }

    fn inspection(&self) -> Inspection {
        Inspection {
            exists: self.entity.exists(),
            last_seq: self.last_seq,
            snapshot_seq: self.snapshot_seq,
            pending_commits: self.pending.load(Ordering::Acquire),
            state: self.entity.state_json(),
        }
    }
}

/// What the journal holds of an entity's derived rows, so that a step writes them only when
/// they change: the deadline and the read row's body last written. `default()` for an entity
/// that has written nothing yet.
#[derive(Debug, Default)]
pub struct WrittenRows {
    pub deadline_ms: Option<i64>,
    pub read_row_body: Option<String>,
}

impl WrittenRows {
    /// Pushes `entity`'s deadline row and read row onto `batch` where they changed.
    fn push_changed<E: Hosted>(&mut self, entity: &E, pid: &str, batch: &mut Batch) {
        let deadline = entity.next_deadline_ms();
        if deadline != self.deadline_ms {
            batch.deadlines.push(match deadline {
                Some(due_at_ms) => DeadlineWrite::Set {
                    pid: pid.to_string(),
                    due_at_ms,
                },
                None => DeadlineWrite::Clear {
                    pid: pid.to_string(),
                },
            });
            self.deadline_ms = deadline;
        }
        if let Some(row) = entity.read_row() {
            if self.read_row_body.as_deref() != Some(row.body.as_str()) {
                self.read_row_body = Some(row.body.clone());
                batch.read_rows.push(row);
            }
        }
    }
}

/// One step of an entity, as [`step_rows`] writes it.
pub struct StepInput<'a, E: Hosted> {
    pub events: Vec<E::Event>,
    pub at_ms: i64,
    /// The rows the caller commits with the step (its [`SideWrites`], already called).
    pub side: Option<Batch>,
    /// For a watched change topic: where the events' live changes go.
    pub live_items: Option<&'a mut Vec<LiveChange>>,
}

/// The rows of one step of entity `pid`: applies the events (checking the invariants after
/// each), numbers them after `last_seq` with the rows they project, adds the side rows, then
/// the deadline and read row where they differ from `written`. The one place a step's rows are
/// built, so that an order born inside another entity's step ([`super::order::birth`]) is
/// written exactly as its own actor would write it.
pub fn step_rows<E: Hosted>(
    entity: &mut E,
    pid: &str,
    last_seq: &mut u64,
    written: &mut WrittenRows,
    step: StepInput<'_, E>,
) -> Batch {
    let StepInput {
        events,
        at_ms,
        side,
        mut live_items,
    } = step;
    let mut batch = Batch::default();
    for event in events {
        if let Some(items) = live_items.as_deref_mut() {
            entity.live_changes(&event, items);
        }
        entity.apply(&event);
        if let Err(violation) = entity.check_invariants() {
            panic!("{pid}: invariant broken by {event:?}: {violation}");
        }
        *last_seq += 1;
        batch.read_rows.extend(entity.event_rows(&event, at_ms));
        batch.events.push(EventRecord {
            pid: pid.to_string(),
            seq: *last_seq,
            at_ms,
            payload: codec::encode(E::VERSION, &event),
        });
    }
    if let Some(side) = side {
        batch.extend(side);
    }
    written.push_changed(entity, pid, &mut batch);
    batch
}
