//! ExpiringHolds: what an entity holds for orders until a deadline (a stock item's
//! reservations, a time sale's holds, a seat map's holds), by order id, with the index of their
//! deadlines that makes the due scan and the next deadline cheap.
//!
//! Snapshots store the holds alone, in exactly the bytes of the map they are (so snapshots
//! written before this type existed still load); the index is rebuilt when they are decoded,
//! so a loaded entity knows its deadlines without any further step.
//!
//! # Invariants
//! - the expiry index holds exactly one `(expires_at_ms, order)` per hold (`check`).

use std::fmt::Debug;

use imbl::{HashMap, OrdSet};

use crate::OrderId;
use crate::{ErrorCode, Rejection};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most holds one expiry step releases; the rest follow in the next step at once.
pub const EXPIRE_BATCH_MAX: usize = 1000;

/// A hold that ends by itself at its deadline.
pub trait Expiring: Clone {
    fn expires_at_ms(&self) -> i64;
}

/// Holds by order id, and their deadlines in order.
// Persistent collections: a snapshot's clone of a hot entity (hundreds of thousands of holds)
// is O(1) in the actor instead of a copy that stalls every buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringHolds<H: Expiring> {
    holds: HashMap<OrderId, H>,
    expiry: OrdSet<(i64, OrderId)>,
}

impl<H: Expiring> Default for ExpiringHolds<H> {
    fn default() -> Self {
        ExpiringHolds {
            holds: HashMap::new(),
            expiry: OrdSet::new(),
        }
    }
}

impl<H: Expiring> ExpiringHolds<H> {
    /// Holds `hold` for `order`, in place of the order's previous hold if it had one.
    pub fn insert(&mut self, order: OrderId, hold: H) -> Option<H> {
        let previous = self.remove(order);
        self.expiry.insert((hold.expires_at_ms(), order));
        self.holds.insert(order, hold);
        previous
    }

    pub fn remove(&mut self, order: OrderId) -> Option<H> {
        let hold = self.holds.remove(&order)?;
        self.expiry.remove(&(hold.expires_at_ms(), order));
        Some(hold)
    }

    pub fn get(&self, order: OrderId) -> Option<&H> {
        self.holds.get(&order)
    }

    /// The hold of `order` while it may still be committed: before its expiry. After it, or
    /// once released, committing is refused as `ORDER_EXPIRED` (the units may be someone
    /// else's by now).
    pub fn committable(&self, order: OrderId, now_ms: i64) -> Result<&H, Rejection> {
        match self.holds.get(&order) {
            Some(hold) if hold.expires_at_ms() > now_ms => Ok(hold),
            _ => Err(Rejection::new(
                ErrorCode::OrderExpired,
                "the reservation has expired or was released",
            )),
        }
    }

    pub fn contains(&self, order: OrderId) -> bool {
        self.holds.contains_key(&order)
    }

    pub fn len(&self) -> usize {
        self.holds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Every hold with its order, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&OrderId, &H)> {
        self.holds.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &OrderId> {
        self.holds.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &H> {
        self.holds.values()
    }

    /// The holds due at `now_ms` (deadline at or before it), earliest first (then by order),
    /// at most [`EXPIRE_BATCH_MAX`] of them.
    pub fn due(&self, now_ms: i64) -> impl Iterator<Item = (OrderId, &H)> {
        self.expiry
            .iter()
            .take_while(move |(at, _)| *at <= now_ms)
            .take(EXPIRE_BATCH_MAX)
            .map(|(_, order)| (*order, &self.holds[order]))
    }

    /// The earliest deadline of any hold.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.expiry.get_min().map(|(at, _)| *at)
    }

    /// The index holds exactly the holds' deadlines (a deep check: it reads every entry).
    pub fn check(&self) -> Result<(), String> {
        let indexed = self.expiry.len() == self.holds.len()
            && self.expiry.iter().all(|(at, order)| {
                self.holds
                    .get(order)
                    .is_some_and(|h| h.expires_at_ms() == *at)
            });
        match indexed {
            true => Ok(()),
            false => Err("expiry index out of step with the holds".into()),
        }
    }

    fn with_index(holds: HashMap<OrderId, H>) -> Self {
        let expiry = holds
            .iter()
            .map(|(order, h)| (h.expires_at_ms(), *order))
            .collect();
        ExpiringHolds { holds, expiry }
    }
}

/// The map alone: the bytes of the `imbl::HashMap<u128, H>` the entities stored before (an
/// `OrderId` encodes as its `u128`).
impl<H: Expiring + Serialize> Serialize for ExpiringHolds<H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.holds.serialize(serializer)
    }
}

/// The map, then its index rebuilt.
impl<'de, H: Expiring + Deserialize<'de>> Deserialize<'de> for ExpiringHolds<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HashMap::<OrderId, H>::deserialize(deserializer).map(Self::with_index)
    }
}

#[cfg(test)]
mod tests;
