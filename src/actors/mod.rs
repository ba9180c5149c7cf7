//! The runtime side of entities: the one generic actor that runs any
//! [`surge_domain::Entity`] (recovery, journal, snapshots, deadlines), and what the outside
//! world sees of each kind beyond its replies: read rows ([`Projection`]), live topics
//! ([`Live`]) and the admin console's view ([`Inspect`]), implemented per kind in [`hosted`].
//!
//! The entities themselves, their commands, events and rules, live in the `surge-domain`
//! crate; they are re-exported here so the server names them in one way.

pub mod entity_actor;
pub mod hosted;

use std::sync::Arc;

pub use surge_domain::{
    coupon_policy, expiring_holds, order, pay_saga, pid, points_charge, product, seat_map, steps,
    stock_item, time_sale, waiting_room, wallet, Ctx, Decision, Entity, EventId, OrderId, SaleId,
    Sku, UserId,
};

use crate::live::LiveChange;
use crate::persistence::{Batch, ReadRow, SnapshotRecord};

/// Extra rows a caller wants committed with the entity's events, built from the reply: an
/// idempotency record, or the first event of an entity this step creates (an order born of a
/// reservation). Called with the reply and the time of the step.
pub type SideWrites<E> = Arc<dyn Fn(&<E as Entity>::Reply, i64) -> Batch + Send + Sync>;

/// The read model of a kind: rows committed with its events, which serve lists and reads that
/// must not wake an actor.
pub trait Projection: Entity {
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
}

/// The live-update topic of a kind (docs/API.md "WebSocket"), if it has one.
pub trait Live: Entity {
    /// True for kinds whose topic carries changes rather than views (see [`crate::live`]):
    /// after each committed step its subscribers get [`Live::live_changes`], and
    /// [`Live::live_view`] only on subscribing or falling behind.
    const LIVE_CHANGES: bool = false;

    /// The topic of entity `id`.
    fn live_topic(_id: &str) -> Option<String> {
        None
    }
    /// What the topic's subscribers see, as JSON, at `now_ms`; `None` until it exists. For a
    /// change topic, the full view a session starts from.
    fn live_view(&self, _now_ms: i64) -> Option<serde_json::Value> {
        None
    }
    /// The items `event` adds to its step's changes (change topics only), pushed onto `out`;
    /// called just before the event is applied.
    fn live_changes(&self, _event: &Self::Event, _out: &mut Vec<LiveChange>) {}
}

/// What the admin console shows of one entity.
pub trait Inspect: Entity {
    /// Its state as JSON.
    fn state_json(&self) -> serde_json::Value;
}

/// An entity kind the runtime can host: all of the above.
pub trait Hosted: Projection + Live + Inspect {}

impl<E: Projection + Live + Inspect> Hosted for E {}

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
