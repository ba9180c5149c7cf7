//! Entities and the one generic actor that runs them.
//!
//! An [`Entity`] is a pure state machine: `decide` turns a command into events and a reply (or
//! a rejection) without touching I/O or the clock; `apply` folds an event into the state;
//! `check_invariants` states what must always hold. [`entity_actor::EntityActor`] runs any
//! entity: recovery, persistence, snapshots, deadlines.

pub mod coupon_policy;
pub mod entity_actor;
pub mod expiring_holds;
pub mod order;
pub mod product;
pub mod seat_map;
pub mod stock_item;
pub mod time_sale;
pub mod waiting_room;
pub mod wallet;

#[cfg(test)]
mod snapshot_fixtures_tests;

use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;
use crate::persistence::{Batch, ReadRow, SnapshotRecord};

/// What an entity may know about the world while deciding: the time, passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    pub now_ms: i64,
}

/// The outcome of a command that is accepted: events to persist, then the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<E: Entity> {
    pub events: Vec<E::Event>,
    pub reply: E::Reply,
}

impl<E: Entity> Decision<E> {
    pub fn reply(reply: E::Reply) -> Decision<E> {
        Decision {
            events: Vec::new(),
            reply,
        }
    }
}

/// Extra rows a caller wants committed with the entity's events, built from the reply: an
/// idempotency record, or the first event of an entity this step creates (an order born of a
/// reservation). Called with the reply and the time of the step.
pub type SideWrites<E> = Arc<dyn Fn(&<E as Entity>::Reply, i64) -> Batch + Send + Sync>;

pub trait Entity: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// The actor kind, also the prefix of the persistence id (`"{KIND}:{id}"`).
    const KIND: &'static str;
    /// Version byte of this entity's events and snapshots.
    const VERSION: u8;

    type Command: Clone + Debug + Send + Sync + 'static;
    type Event: Clone + Debug + Send + Sync + Serialize + DeserializeOwned + 'static;
    type Reply: Debug + Send + Sync + 'static;

    /// The state before any event.
    fn blank(id: &str) -> Self;
    /// False until the creating event has been applied.
    fn exists(&self) -> bool;
    fn decide(&self, command: &Self::Command, ctx: &Ctx) -> Result<Decision<Self>, ApiError>;
    fn apply(&mut self, event: &Self::Event);
    /// Cheap checks, run after every apply. A violation panics the actor, which is then
    /// restarted from durable state.
    fn check_invariants(&self) -> Result<(), String>;
    /// Thorough checks, run around every snapshot save and load.
    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()
    }
    /// Rebuilds derived indexes after a snapshot is loaded.
    fn restore(&mut self) {}
    /// When the entity next needs to act by itself.
    fn next_deadline_ms(&self) -> Option<i64> {
        None
    }
    /// The command to run when the deadline is due.
    fn deadline_command(&self, _ctx: &Ctx) -> Option<Self::Command> {
        None
    }
    /// Entries in the state; snapshots come no more often than this many events.
    fn snapshot_weight(&self) -> u64 {
        0
    }
    /// This entity's row in a read table, if it has one.
    fn read_row(&self) -> Option<ReadRow> {
        None
    }
    /// Rows of read tables that this event adds or changes (a wallet's transaction, an issued
    /// coupon), called right after the event is applied and committed with it: the projection
    /// of entities whose history, not only whose latest state, is listed.
    fn event_rows(&self, _event: &Self::Event, _at_ms: i64) -> Vec<ReadRow> {
        Vec::new()
    }
    /// The live-update topic of entity `id` (API.md "WebSocket"), if its kind has one.
    fn live_topic(_id: &str) -> Option<String> {
        None
    }
    /// What the topic's subscribers see, as JSON, at `now_ms`; `None` until it exists. For a
    /// change topic ([`Entity::LIVE_CHANGES`]), the full view a session starts from.
    fn live_view(&self, _now_ms: i64) -> Option<serde_json::Value> {
        None
    }
    /// True for kinds whose topic carries changes rather than views (see [`crate::live`]):
    /// after each committed step its subscribers get [`Entity::live_changes`], and
    /// [`Entity::live_view`] only on subscribing or falling behind.
    const LIVE_CHANGES: bool = false;
    /// The items `event` adds to its step's changes (change topics only), pushed onto `out`;
    /// called just before the event is applied.
    fn live_changes(&self, _event: &Self::Event, _out: &mut Vec<crate::live::LiveChange>) {}
    /// Its state as JSON (admin console).
    fn state_json(&self) -> serde_json::Value;
}

/// The snapshot of `entity` at `seq`, once its deep invariants hold: a broken state is never
/// written. What a violation means (a failed actor, a logged error) is the caller's call.
pub fn checked_snapshot<E: Entity>(
    entity: &E,
    pid: String,
    seq: u64,
    at_ms: i64,
) -> Result<SnapshotRecord, String> {
    entity.check_deep_invariants()?;
    Ok(SnapshotRecord {
        pid,
        seq,
        at_ms,
        payload: crate::persistence::codec::encode(E::VERSION, entity),
    })
}

/// The persistence id of an entity.
pub fn pid<E: Entity>(id: &str) -> String {
    format!("{}:{}", E::KIND, id)
}
