//! `Region<E>`: the supervisor of one entity kind, and the only way to address its entities.
//!
//! - Activation: the first message for an id starts its actor (virtual actors: nobody creates
//!   a wallet actor). The registry is a dashmap, so a message to a running entity does not pass
//!   through the supervisor.
//! - Parking: a sweeper asks entities idle for `actors.park_after_secs` to stop their actor and
//!   leave their state in the registry (an actor costs ~8 KB; a parked stock item a few hundred
//!   bytes). The next message starts an actor from that state, with no database read.
//! - Passivation: parked entities idle for `actors.passivate_after_secs` are snapshotted (if
//!   behind) and dropped from memory.
//! - Restarts: a failed entity is restarted at once from durable state. More than
//!   `actors.restart_max` failures within `actors.restart_window_secs` mark it failed: callers
//!   get 503 `UNAVAILABLE` until an operator restarts it or the process restarts.
//! - Admission: at most `actors.inflight_max` commands wait in one entity's mailbox; past it,
//!   503.
//!
//! What the admin API reads of a region (its actors, their figures and state) is in [`admin`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;

use crate::actors::entity_actor::{
    CommandEnvelope, EntityActor, EntityArgs, EntityMsg, EntityShared, Inspection, LiveEntity,
    LiveMap, Slot,
};
use crate::actors::{Hosted, SideWrites};
use crate::error::ApiError;
use crate::runtime::SharedRuntime;

mod admin;
pub use admin::{ActorRow, AdminRegion};

/// A caller whose message was dropped by a stopping actor tries again this often, waiting
/// 1, 2, 4, ... ms (at most [`ASK_BACKOFF_MAX_MS`]) so its supervisor can restart it.
const ASK_ATTEMPTS: u32 = 8;
const ASK_BACKOFF_MAX_MS: u64 = 50;

/// Something to keep alive until a command's outcome is known.
pub type Hold = Box<dyn Send>;

pub enum RegionMsg<E: Hosted> {
    Activate {
        id: String,
        reply: oneshot::Sender<Result<LiveEntity<E>, ApiError>>,
    },
    /// Clears a failed mark (admin restart).
    Reset { id: String },
}

/// Failure times per entity, kept by the region's supervisor and read by the admin API.
type Failures = Arc<DashMap<String, VecDeque<i64>>>;

pub struct Region<E: Hosted> {
    live: LiveMap<E>,
    failed: Arc<DashMap<String, String>>,
    /// The supervisor's books: each entity's failures within `actors.restart_window_secs`.
    failures: Failures,
    supervisor: ActorRef<RegionMsg<E>>,
    rt: SharedRuntime,
}

impl<E: Hosted> Clone for Region<E> {
    fn clone(&self) -> Self {
        Region {
            live: self.live.clone(),
            failed: self.failed.clone(),
            failures: self.failures.clone(),
            supervisor: self.supervisor.clone(),
            rt: self.rt.clone(),
        }
    }
}

/// Per-kind counts for the console and the benchmarks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionCounts {
    pub kind: &'static str,
    /// Entities with a running actor.
    pub running: usize,
    /// Activated entities whose actor is stopped (state in memory).
    pub parked: usize,
    pub failed: usize,
}

impl<E: Hosted> Region<E> {
    /// Starts the supervisor actor and the passivation sweeper.
    pub async fn start(rt: SharedRuntime) -> anyhow::Result<Region<E>> {
        let live: LiveMap<E> = Arc::new(DashMap::new());
        let failed = Arc::new(DashMap::new());
        let failures = Failures::default();
        let args = SupervisorArgs {
            live: live.clone(),
            failed: failed.clone(),
            failures: failures.clone(),
            rt: rt.clone(),
        };
        let (supervisor, _) = Actor::spawn(None, RegionSupervisor::<E>::default(), args)
            .await
            .map_err(|e| anyhow::anyhow!("region {} did not start: {e}", E::KIND))?;
        let region = Region {
            live,
            failed,
            failures,
            supervisor,
            rt,
        };
        region.spawn_sweeper();
        Ok(region)
    }

    /// Sends a command to entity `id` and waits for its reply (which, for a change, means the
    /// change is durable).
    pub async fn ask(
        &self,
        id: &str,
        command: E::Command,
        side: Option<SideWrites<E>>,
    ) -> Result<E::Reply, ApiError> {
        self.ask_holding(id, command, side, &mut None).await
    }

    /// Like [`Region::ask`]; if the reply does not come in time, `hold` (an idempotency key's
    /// in-flight guard) is kept until the command's outcome is known, so a retry with the same
    /// key cannot run the command a second time meanwhile.
    pub async fn ask_holding(
        &self,
        id: &str,
        command: E::Command,
        side: Option<SideWrites<E>>,
        hold: &mut Option<Hold>,
    ) -> Result<E::Reply, ApiError> {
        let timeout = Duration::from_millis(self.rt.settings.server.request_timeout_ms);
        for attempt in 0..ASK_ATTEMPTS {
            if attempt > 0 {
                let backoff_ms = (1u64 << (attempt - 1)).min(ASK_BACKOFF_MAX_MS);
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            }
            let live = self.activate(id).await?;
            self.admit(&live)?;
            let (reply, mut answer) = oneshot::channel();
            let taken = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let envelope = CommandEnvelope {
                command: command.clone(),
                side: side.clone(),
                reply,
                taken: taken.clone(),
            };
            if live.actor.cast(EntityMsg::Command(envelope)).is_err() {
                live.shared.inflight.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            match tokio::time::timeout(timeout, &mut answer).await {
                Ok(Ok(result)) => return result,
                // The actor failed while handling it: running it again could fail again (or
                // twice succeed), so the caller hears of it instead.
                Ok(Err(_)) if taken.load(Ordering::Acquire) => {
                    return Err(ApiError::outcome_unknown(
                        "the entity failed while handling this request; retry with the same Idempotency-Key",
                    ))
                }
                // The actor stopped before taking the message: nothing was persisted.
                Ok(Err(_)) => continue,
                Err(_) => {
                    if let Some(kept) = hold.take() {
                        // Bounded: the actor answers or drops the reply port.
                        tokio::spawn(async move {
                            let _ = answer.await;
                            drop(kept);
                        });
                    }
                    return Err(ApiError::outcome_unknown(
                        "the entity did not answer in time; retry with the same Idempotency-Key",
                    ));
                }
            }
        }
        Err(ApiError::unavailable("the entity is restarting"))
    }

    fn admit(&self, live: &LiveEntity<E>) -> Result<(), ApiError> {
        let max = self.rt.settings.actors.inflight_max;
        if live.shared.inflight.fetch_add(1, Ordering::AcqRel) >= max {
            live.shared.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::unavailable("the entity is overloaded"));
        }
        Ok(())
    }

    /// The running actor of `id`, started if needed.
    pub async fn activate(&self, id: &str) -> Result<LiveEntity<E>, ApiError> {
        if let Some(live) = self.live.get(id).and_then(|slot| slot.live().cloned()) {
            return Ok(live);
        }
        if self.failed.contains_key(id) {
            return Err(ApiError::unavailable(format!(
                "{} {id} has failed and is stopped",
                E::KIND
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.supervisor
            .cast(RegionMsg::Activate {
                id: id.to_string(),
                reply,
            })
            .map_err(|_| ApiError::unavailable("the region supervisor is gone"))?;
        answer
            .await
            .map_err(|_| ApiError::unavailable("the region supervisor is gone"))?
    }

    pub async fn inspect(&self, id: &str) -> Result<Inspection, ApiError> {
        self.call(id, EntityMsg::Inspect).await
    }

    /// Has the entity publish its current view to its live topic once that view is durable
    /// (a new subscriber's first value). False if the entity does not exist.
    pub async fn publish_live(&self, id: &str) -> Result<bool, ApiError> {
        self.call(id, EntityMsg::PublishLive).await?
    }

    /// Sends entity `id` a message carrying a reply port and waits for the answer. Not
    /// admission-counted: these are operator and subscription requests, not commands.
    async fn call<T>(
        &self,
        id: &str,
        message: impl FnOnce(oneshot::Sender<T>) -> EntityMsg<E>,
    ) -> Result<T, ApiError> {
        let live = self.activate(id).await?;
        let (reply, answer) = oneshot::channel();
        live.actor
            .cast(message(reply))
            .map_err(|_| ApiError::unavailable("the entity stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::unavailable("the entity stopped"))
    }

    /// Fault injection: the entity's actor panics (tests and drills).
    pub fn inject_panic(&self, id: &str) -> bool {
        self.live_actor(id)
            .is_some_and(|live| live.actor.cast(EntityMsg::InjectPanic).is_ok())
    }

    /// Fault injection: the running entity stops taking messages until the returned sender is
    /// used or dropped.
    pub fn stall(&self, id: &str) -> Option<oneshot::Sender<()>> {
        let live = self.live_actor(id)?;
        let (resume, stalled) = oneshot::channel();
        live.actor.cast(EntityMsg::Stall(stalled)).ok()?;
        Some(resume)
    }

    fn live_actor(&self, id: &str) -> Option<LiveEntity<E>> {
        self.live.get(id).and_then(|slot| slot.live().cloned())
    }

    /// Snapshots the entity if behind and drops it from memory now.
    pub fn passivate(&self, id: &str) -> bool {
        if let Some(live) = self.live_actor(id) {
            return live
                .actor
                .cast(EntityMsg::Passivate { force: true })
                .is_ok();
        }
        let removed = self
            .live
            .remove_if(id, |_, slot| matches!(slot, Slot::Parked(_)));
        match removed {
            Some((id, Slot::Parked(parked))) => {
                super::sweeper::write_snapshot(&self.rt, &id, &parked);
                true
            }
            _ => false,
        }
    }

    /// Clears a failed mark so the next message activates the entity again.
    pub fn reset(&self, id: &str) {
        let _ = self
            .supervisor
            .cast(RegionMsg::Reset { id: id.to_string() });
    }

    /// The running actor's id, which changes with every activation.
    pub fn actor_id(&self, id: &str) -> Option<ActorId> {
        self.live_actor(id).map(|live| live.actor.get_id())
    }

    /// Commands waiting in the running entity's mailbox.
    pub fn inflight(&self, id: &str) -> Option<usize> {
        self.live_actor(id)
            .map(|live| live.shared.inflight.load(Ordering::Acquire))
    }

    /// True while the entity has a running actor.
    pub fn is_running(&self, id: &str) -> bool {
        self.live_actor(id).is_some()
    }

    /// True while the entity is in memory, with or without an actor.
    pub fn is_activated(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    pub fn is_failed(&self, id: &str) -> bool {
        self.failed.contains_key(id)
    }

    pub fn counts(&self) -> RegionCounts {
        let (mut running, mut parked) = (0, 0);
        for slot in self.live.iter() {
            match &*slot {
                Slot::Live(_) => running += 1,
                Slot::Parked(_) => parked += 1,
            }
        }
        RegionCounts {
            kind: E::KIND,
            running,
            parked,
            failed: self.failed.len(),
        }
    }

    /// One sweep now (the sweeper does this every `idle_check_interval_secs`).
    pub fn sweep_now(&self) {
        super::sweeper::sweep::<E>(&self.rt, &self.live);
    }

    /// Runs for the life of the process: every `idle_check_interval_secs`, parks running
    /// entities idle for `park_after_secs` (each actor decides for itself whether it is idle)
    /// and passivates parked ones idle for `passivate_after_secs`.
    fn spawn_sweeper(&self) {
        let region = Arc::downgrade(&self.live);
        let rt = self.rt.clone();
        let every = Duration::from_secs(rt.settings.actors.idle_check_interval_secs.max(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(live) = region.upgrade() else { return };
                super::sweeper::sweep::<E>(&rt, &live);
            }
        });
    }
}

/// Wakes an entity of any kind by id (the deadline scheduler uses this).
pub trait RegionControl: Send + Sync {
    fn kind(&self) -> &'static str;
    /// True while the entity has a running actor (which keeps its own deadline timer).
    fn is_running(&self, id: &str) -> bool;
    fn wake<'a>(
        &'a self,
        id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;
    fn counts(&self) -> RegionCounts;
}

impl<E: Hosted> RegionControl for Region<E> {
    fn kind(&self) -> &'static str {
        E::KIND
    }

    fn is_running(&self, id: &str) -> bool {
        Region::is_running(self, id)
    }

    fn wake<'a>(
        &'a self,
        id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        Box::pin(async move { self.activate(id).await.map(|_| ()) })
    }

    fn counts(&self) -> RegionCounts {
        Region::counts(self)
    }
}

struct RegionSupervisor<E>(PhantomData<fn() -> E>);

impl<E> Default for RegionSupervisor<E> {
    fn default() -> Self {
        RegionSupervisor(PhantomData)
    }
}

struct SupervisorArgs<E: Hosted> {
    live: LiveMap<E>,
    failed: Arc<DashMap<String, String>>,
    failures: Failures,
    rt: SharedRuntime,
}

struct SupervisorState<E: Hosted> {
    live: LiveMap<E>,
    failed: Arc<DashMap<String, String>>,
    failures: Failures,
    rt: SharedRuntime,
    children: HashMap<ActorId, String>,
}

impl<E: Hosted> Actor for RegionSupervisor<E> {
    type Msg = RegionMsg<E>;
    type State = SupervisorState<E>;
    type Arguments = SupervisorArgs<E>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<E>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            live: args.live,
            failed: args.failed,
            failures: args.failures,
            rt: args.rt,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegionMsg::Activate { id, reply } => {
                let result = state.activate(&myself, &id).await;
                let _ = reply.send(result);
            }
            RegionMsg::Reset { id } => {
                state.failed.remove(&id);
                state.failures.remove(&id);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(id) = state.forget(cell.get_id()) {
                    state.on_failure(&myself, id, error.to_string()).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl<E: Hosted> SupervisorState<E> {
    async fn activate(
        &mut self,
        myself: &ActorRef<RegionMsg<E>>,
        id: &str,
    ) -> Result<LiveEntity<E>, ApiError> {
        if let Some(live) = self.live.get(id).and_then(|slot| slot.live().cloned()) {
            return Ok(live);
        }
        if self.failed.contains_key(id) {
            return Err(ApiError::unavailable(format!(
                "{} {id} has failed and is stopped",
                E::KIND
            )));
        }
        let parked = match self
            .live
            .remove_if(id, |_, slot| matches!(slot, Slot::Parked(_)))
        {
            Some((_, Slot::Parked(parked))) => Some(parked),
            _ => None,
        };
        let shared = Arc::new(EntityShared::new(self.rt.now_ms()));
        let args = EntityArgs {
            id: id.to_string(),
            rt: self.rt.clone(),
            shared: shared.clone(),
            live: self.live.clone(),
            parked,
        };
        let (actor, _) =
            Actor::spawn_linked(None, EntityActor::<E>::default(), args, myself.get_cell())
                .await
                .map_err(|e| ApiError::internal(format!("{} {id} did not start: {e}", E::KIND)))?;
        self.children.insert(actor.get_id(), id.to_string());
        let live = LiveEntity { actor, shared };
        self.live.insert(id.to_string(), Slot::Live(live.clone()));
        Ok(live)
    }

    /// Drops a stopped child from the books; returns its entity id.
    fn forget(&mut self, actor_id: ActorId) -> Option<String> {
        let id = self.children.remove(&actor_id)?;
        self.live.remove_if(&id, |_, slot| {
            slot.live()
                .is_some_and(|live| live.actor.get_id() == actor_id)
        });
        Some(id)
    }

    async fn on_failure(&mut self, myself: &ActorRef<RegionMsg<E>>, id: String, error: String) {
        let now_ms = self.rt.now_ms();
        let window_ms =
            i64::try_from(self.rt.settings.actors.restart_window_secs * 1000).unwrap_or(i64::MAX);
        // Forget entities whose failures have all left the window, so the map stays bounded.
        self.failures
            .retain(|_, at| at.back().is_some_and(|last| now_ms - last <= window_ms));
        let recent = {
            let mut recent = self.failures.entry(id.clone()).or_default();
            recent.push_back(now_ms);
            while recent.front().is_some_and(|at| now_ms - at > window_ms) {
                recent.pop_front();
            }
            recent.len()
        };
        let restart_max = usize::try_from(self.rt.settings.actors.restart_max).unwrap_or(0);
        if recent > restart_max {
            tracing::error!(kind = E::KIND, %id, %error, "entity failed too often; marked failed");
            self.failed.insert(id, error);
            return;
        }
        tracing::warn!(kind = E::KIND, %id, %error, "entity failed; restarting from the journal");
        if let Err(e) = self.activate(myself, &id).await {
            tracing::error!(kind = E::KIND, %id, error = %e, "entity restart failed");
        }
    }
}
