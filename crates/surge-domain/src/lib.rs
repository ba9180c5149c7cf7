//! surge's business rules, with no web, SQL or async runtime in reach.
//!
//! An [`Entity`] is a pure state machine: `decide` turns a command into events and a reply (or
//! a [`Rejection`]) without touching I/O or the clock; `apply` folds an event into the state;
//! `check_invariants` states what must always hold. The server crate runs every entity in one
//! generic actor (recovery, journal, snapshots, deadlines) and adds, on its side, what the
//! outside world sees of it: read rows, live topics and admin views.
//!
//! Each entity's module states its invariants at the top and checks them in
//! `check_invariants`; its tests run here, without actors or a store.

pub mod codec;
pub mod coupon_policy;
pub mod expiring_holds;
pub mod ids;
pub mod money;
pub mod order;
pub mod pay_saga;
pub mod points_charge;
pub mod product;
pub mod rejection;
pub mod seat_map;
pub mod steps;
pub mod stock_item;
pub mod text;
pub mod time;
pub mod time_sale;
pub mod waiting_room;
pub mod wallet;

#[cfg(test)]
mod snapshot_fixtures_tests;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use ids::{EventId, OrderId, SaleId, Sku, UserId};
pub use rejection::{ErrorCode, FieldError, FieldErrors, Rejection};

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
    fn decide(&self, command: &Self::Command, ctx: &Ctx) -> Result<Decision<Self>, Rejection>;
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
}

/// The persistence id of an entity.
pub fn pid<E: Entity>(id: &str) -> String {
    format!("{}:{}", E::KIND, id)
}
