//! StockItem: the units of one SKU.
//!
//! Supervised by `Region<StockItem>`; persistence id `stock_item:{sku}`.
//! Accepts: create, get, adjust (receipts and write-offs), reserve (for an order, with an
//! expiry), release (cancel, expiry, compensation), commit (a paid order takes its units),
//! return (a refunded order gives them back).
//! Journals: `Created`, `Adjusted`, `Reserved`, `Released`, `Committed`, `Returned`.
//! Each reservation carries its own expiry, so units held for an order that never got paid,
//! or never got created because of a crash, come back by themselves at `expires_at`.
//!
//! # Invariants
//! - `available = on_hand - reserved >= 0`, and `on_hand, reserved, sold, safety_stock >= 0`;
//! - `on_hand <= ON_HAND_MAX`;
//! - `reserved` is the sum of the open reservations (deep check);
//! - the expiry index holds exactly the open reservations (deep check; [`ExpiringHolds`]);
//! - `sold` grows only when a reservation is committed, and shrinks only when a refunded
//!   order's units are returned.

use crate::{OrderId, Sku};
use serde::{Deserialize, Serialize};

use super::expiring_holds::{Expiring, ExpiringHolds};
use super::{Ctx, Decision, Entity};
use crate::{ErrorCode, Rejection};

/// Most units one item may hold, so that no sum of its counters can overflow.
pub const ON_HAND_MAX: i64 = 1_000_000_000_000_000;

pub use crate::money::LINE_AMOUNT_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub quantity: i64,
    pub expires_at_ms: i64,
}

impl Expiring for Reservation {
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
    pub sku: Sku,
    pub created: bool,
    pub name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
    pub safety_stock: i64,
    pub price: i64,
    pub version: u64,
    reservations: ExpiringHolds<Reservation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    Cancelled,
    Expired,
    Compensated,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Expired => "expired",
            ReleaseReason::Compensated => "compensated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    Create {
        name: String,
        on_hand: i64,
        safety_stock: i64,
        price: i64,
    },
    Get,
    Adjust {
        delta: i64,
        reason: String,
    },
    Reserve {
        order: OrderId,
        quantity: i64,
        expires_at_ms: i64,
    },
    Release {
        order: OrderId,
        reason: ReleaseReason,
    },
    Commit {
        order: OrderId,
    },
    /// A refunded order's units come back to the shelf: `sold` gives them back to `on_hand`.
    Return {
        order: OrderId,
        quantity: i64,
    },
    ExpireDue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockEvent {
    Created {
        name: String,
        on_hand: i64,
        safety_stock: i64,
        price: i64,
    },
    Adjusted {
        delta: i64,
        reason: String,
    },
    Reserved {
        order: OrderId,
        quantity: i64,
        expires_at_ms: i64,
    },
    Released {
        order: OrderId,
        quantity: i64,
        reason: ReleaseReason,
    },
    Committed {
        order: OrderId,
        quantity: i64,
    },
    Returned {
        order: OrderId,
        quantity: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockView {
    pub sku: Sku,
    pub name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub sold: i64,
    pub safety_stock: i64,
    pub price: i64,
    pub version: u64,
}

impl StockItem {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    /// Units a new reservation may take: the safety stock is never reserved.
    pub fn reservable(&self) -> i64 {
        (self.available() - self.safety_stock).max(0)
    }

    /// Reservations not yet committed, released or expired.
    pub fn open_reservations(&self) -> usize {
        self.reservations.len()
    }

    pub fn reservation(&self, order: OrderId) -> Option<Reservation> {
        self.reservations.get(order).copied()
    }

    pub fn view(&self) -> StockView {
        StockView {
            sku: self.sku.clone(),
            name: self.name.clone(),
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.available(),
            sold: self.sold,
            safety_stock: self.safety_stock,
            price: self.price,
            version: self.version,
        }
    }

    fn accept(&self, events: Vec<StockEvent>) -> Result<Decision<Self>, Rejection> {
        let mut next = self.clone_counters();
        events.iter().for_each(|e| next.apply_counters(e));
        Ok(Decision {
            events,
            reply: next.view(),
        })
    }

    /// The counters alone, enough to compute the reply of a decision cheaply.
    fn clone_counters(&self) -> StockItem {
        StockItem {
            sku: self.sku.clone(),
            created: self.created,
            name: self.name.clone(),
            on_hand: self.on_hand,
            reserved: self.reserved,
            sold: self.sold,
            safety_stock: self.safety_stock,
            price: self.price,
            version: self.version,
            reservations: ExpiringHolds::default(),
        }
    }

    /// The counter side of `apply`, from the event alone: replies are computed with it on a
    /// copy of the counters, without cloning the reservations.
    fn apply_counters(&mut self, event: &StockEvent) {
        self.version += 1;
        match event {
            StockEvent::Created {
                name,
                on_hand,
                safety_stock,
                price,
            } => {
                self.created = true;
                self.name = name.clone();
                self.on_hand = *on_hand;
                self.safety_stock = *safety_stock;
                self.price = *price;
            }
            StockEvent::Adjusted { delta, .. } => self.on_hand += delta,
            StockEvent::Reserved { quantity, .. } => self.reserved += quantity,
            StockEvent::Released { quantity, .. } => self.reserved -= quantity,
            StockEvent::Committed { quantity, .. } => {
                self.reserved -= quantity;
                self.on_hand -= quantity;
                self.sold += quantity;
            }
            StockEvent::Returned { quantity, .. } => {
                self.on_hand += quantity;
                self.sold -= quantity;
            }
        }
    }

    fn decide_create(
        &self,
        name: &str,
        on_hand: i64,
        safety_stock: i64,
        price: i64,
    ) -> Result<Decision<Self>, Rejection> {
        if self.created {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                format!("stock item {} already exists", self.sku),
            ));
        }
        if on_hand < 0 || safety_stock < 0 || price < 0 {
            return Err(Rejection::validation(
                "on_hand",
                "on_hand, safety_stock and price must be >= 0",
            ));
        }
        if on_hand > ON_HAND_MAX {
            return Err(Rejection::validation(
                "on_hand",
                format!("on_hand may not exceed {ON_HAND_MAX}"),
            ));
        }
        self.accept(vec![StockEvent::Created {
            name: name.to_string(),
            on_hand,
            safety_stock,
            price,
        }])
    }

    fn decide_reserve(
        &self,
        order: OrderId,
        quantity: i64,
        expires_at_ms: i64,
    ) -> Result<Decision<Self>, Rejection> {
        if self.reservations.contains(order) {
            return Ok(Decision::reply(self.view()));
        }
        if quantity < 1 {
            return Err(Rejection::validation("quantity", "must be at least 1"));
        }
        let amount = self.price.checked_mul(quantity);
        if amount.is_none_or(|amount| amount > LINE_AMOUNT_MAX) {
            return Err(Rejection::validation(
                "quantity",
                format!("price × quantity must not exceed {LINE_AMOUNT_MAX}"),
            ));
        }
        if quantity > self.reservable() {
            return Err(Rejection::new(
                ErrorCode::InsufficientStock,
                format!(
                    "{} has {} units available, {} asked",
                    self.sku,
                    self.reservable(),
                    quantity
                ),
            ));
        }
        self.accept(vec![StockEvent::Reserved {
            order,
            quantity,
            expires_at_ms,
        }])
    }

    fn decide_commit(&self, order: OrderId, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let reservation = self.reservations.committable(order, ctx.now_ms)?;
        self.accept(vec![StockEvent::Committed {
            order,
            quantity: reservation.quantity,
        }])
    }

    fn decide_expire(&self, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let events: Vec<StockEvent> = self
            .reservations
            .due(ctx.now_ms)
            .map(|(order, r)| StockEvent::Released {
                order,
                quantity: r.quantity,
                reason: ReleaseReason::Expired,
            })
            .collect();
        self.accept(events)
    }
}

impl Entity for StockItem {
    const KIND: &'static str = "stock_item";
    const VERSION: u8 = 1;

    type Command = StockCommand;
    type Event = StockEvent;
    type Reply = StockView;

    fn blank(id: &str) -> Self {
        StockItem {
            sku: Sku::from(id),
            ..StockItem::default()
        }
    }

    fn exists(&self) -> bool {
        self.created
    }

    fn decide(&self, command: &StockCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        if let StockCommand::Create {
            name,
            on_hand,
            safety_stock,
            price,
        } = command
        {
            return self.decide_create(name, *on_hand, *safety_stock, *price);
        }
        if !self.created {
            return Err(Rejection::not_found(format!(
                "stock item {} not found",
                self.sku
            )));
        }
        match command {
            StockCommand::Create { .. } => unreachable!("handled above"),
            StockCommand::Get => Ok(Decision::reply(self.view())),
            StockCommand::Adjust { delta, reason } => {
                let on_hand = self.on_hand.checked_add(*delta);
                if on_hand.is_none_or(|units| units > ON_HAND_MAX) {
                    return Err(Rejection::validation(
                        "delta",
                        format!("on_hand may not exceed {ON_HAND_MAX}"),
                    ));
                }
                if self.available() + delta < 0 {
                    return Err(Rejection::new(
                        ErrorCode::InsufficientStock,
                        format!("{} has {} units available", self.sku, self.available()),
                    ));
                }
                self.accept(vec![StockEvent::Adjusted {
                    delta: *delta,
                    reason: reason.clone(),
                }])
            }
            StockCommand::Reserve {
                order,
                quantity,
                expires_at_ms,
            } => self.decide_reserve(*order, *quantity, *expires_at_ms),
            StockCommand::Release { order, reason } => match self.reservations.get(*order) {
                Some(r) => self.accept(vec![StockEvent::Released {
                    order: *order,
                    quantity: r.quantity,
                    reason: *reason,
                }]),
                None => Ok(Decision::reply(self.view())),
            },
            StockCommand::Commit { order } => self.decide_commit(*order, ctx),
            StockCommand::Return { order, quantity } => {
                if !(1..=self.sold).contains(quantity) {
                    return Err(Rejection::validation(
                        "quantity",
                        format!("must be 1 to the {} units sold", self.sold),
                    ));
                }
                self.accept(vec![StockEvent::Returned {
                    order: *order,
                    quantity: *quantity,
                }])
            }
            StockCommand::ExpireDue => self.decide_expire(ctx),
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        self.apply_counters(event);
        match event {
            StockEvent::Reserved {
                order,
                quantity,
                expires_at_ms,
            } => {
                self.reservations.insert(
                    *order,
                    Reservation {
                        quantity: *quantity,
                        expires_at_ms: *expires_at_ms,
                    },
                );
            }
            StockEvent::Released { order, .. } | StockEvent::Committed { order, .. } => {
                self.reservations.remove(*order);
            }
            StockEvent::Created { .. }
            | StockEvent::Adjusted { .. }
            | StockEvent::Returned { .. } => {}
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let counters = [self.on_hand, self.reserved, self.sold, self.safety_stock];
        if counters.iter().any(|c| *c < 0) {
            return Err(format!("negative counter in {:?}", self.view()));
        }
        if self.available() < 0 {
            return Err(format!("available below 0: {:?}", self.view()));
        }
        if self.on_hand > ON_HAND_MAX {
            return Err(format!("on_hand above {ON_HAND_MAX}: {:?}", self.view()));
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        let sum: i64 = self.reservations.values().map(|r| r.quantity).sum();
        if sum != self.reserved {
            return Err(format!(
                "reserved {} but reservations sum to {sum}",
                self.reserved
            ));
        }
        self.reservations.check()
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.reservations.next_deadline_ms()
    }

    fn deadline_command(&self, ctx: &Ctx) -> Option<StockCommand> {
        self.next_deadline_ms()
            .filter(|at| *at <= ctx.now_ms)
            .map(|_| StockCommand::ExpireDue)
    }

    fn snapshot_weight(&self) -> u64 {
        u64::try_from(self.reservations.len()).expect("usize fits u64")
    }
}

#[cfg(test)]
mod tests;
