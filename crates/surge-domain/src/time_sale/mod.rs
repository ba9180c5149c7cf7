//! TimeSale: a fixed quantity of one product at a sale price, inside a window.
//!
//! Supervised by `Region<TimeSale>`; persistence id `time_sale:{id}` (a UUIDv7).
//! Accepts: create, get, purchase (a reservation for an order, with an expiry), release
//! (cancel, expiry, compensation), commit (a paid order takes its units), advance (its own
//! deadlines: the window opening and closing, reservations falling due).
//! Journals: `Created`, `Opened`, `Closed`, `Reserved`, `Released`, `Committed`.
//! A purchase is one actor hop and one journal append: the order is born in the same
//! transaction as the reservation (see `http::time_sales`). Per-user limits are enforced here,
//! on the units a user holds or bought, so no number of parallel requests can pass them.
//! The window decides by the clock in `ctx` (authoritative to the millisecond); the `Opened`
//! and `Closed` events are the durable deadlines that make the flip visible (read row, live
//! subscribers) without any request.
//!
//! # Invariants
//! - `remaining = quantity - reserved - sold >= 0`, and `reserved, sold >= 0`;
//! - `reserved` is the sum of the open reservations (deep check);
//! - each user's count is the sum of their open reservations and committed units, and never
//!   exceeds `per_user_limit` (deep check);
//! - the expiry index holds exactly the open reservations (deep check; [`ExpiringHolds`]);
//! - the phase only moves forward: scheduled, open, closed.

use crate::{OrderId, SaleId, UserId};
use imbl::HashMap;
use serde::{Deserialize, Serialize};

use super::expiring_holds::{Expiring, ExpiringHolds};
use super::stock_item::ReleaseReason;
use super::{Ctx, Decision, Entity};
use crate::time::rfc3339;
use crate::{ErrorCode, Rejection};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Scheduled,
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleStatus {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

impl SaleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Scheduled => "SCHEDULED",
            SaleStatus::Active => "ACTIVE",
            SaleStatus::SoldOut => "SOLD_OUT",
            SaleStatus::Ended => "ENDED",
        }
    }
}

/// What a sale is created with (the window in ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleTerms {
    pub product_id: String,
    pub quantity: i64,
    pub sale_price: i64,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    /// `None`: unlimited.
    pub per_user_limit: Option<i64>,
    pub queue_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub user_id: UserId,
    pub quantity: i64,
    pub expires_at_ms: i64,
}

impl Expiring for Hold {
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSale {
    pub id: SaleId,
    pub terms: Option<SaleTerms>,
    pub phase: Phase,
    pub reserved: i64,
    pub sold: i64,
    pub version: u64,
    // Persistent maps: a snapshot's clone of a hot sale (hundreds of thousands of holds) is
    // O(1) in the actor instead of a copy that stalled every buyer (43 ms at 128k buyers).
    holds: ExpiringHolds<Hold>,
    /// Units each user holds or bought; a user at 0 is removed.
    per_user: HashMap<UserId, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleCommand {
    Create(SaleTerms),
    Get,
    Purchase {
        order: OrderId,
        user_id: UserId,
        quantity: i64,
        expires_at_ms: i64,
        /// The caller showed a valid waiting-room pass for this sale.
        queue_pass: bool,
    },
    Release {
        order: OrderId,
        reason: ReleaseReason,
    },
    Commit {
        order: OrderId,
    },
    /// A refunded order's units come back to the sale, and off its buyer's count.
    Return {
        order: OrderId,
        user_id: UserId,
        quantity: i64,
    },
    Advance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaleEvent {
    Created(SaleTerms),
    Opened,
    Closed,
    Reserved {
        order: OrderId,
        user_id: UserId,
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
        user_id: UserId,
        quantity: i64,
    },
}

/// The sale as API.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleView {
    pub id: SaleId,
    pub product_id: String,
    pub quantity: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub sold: i64,
    pub sale_price: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub status: SaleStatus,
    /// Units one user may hold in reserved or paid orders; null: unlimited.
    pub per_user_limit: Option<i64>,
    /// Purchases need the `X-Queue-Pass` of the sale's waiting room.
    pub queue_required: bool,
    pub version: u64,
}

impl TimeSale {
    /// Takes `units` off what `user` holds or bought.
    fn uncount(&mut self, user: &UserId, units: i64) {
        let counted = self.per_user.get_mut(user).expect("holder counted");
        *counted -= units;
        if *counted == 0 {
            self.per_user.remove(user);
        }
    }

    /// Reservations not yet committed, released or expired.
    pub fn open_reservations(&self) -> usize {
        self.holds.len()
    }

    /// Users who hold or bought units of this sale.
    pub fn buyers(&self) -> usize {
        self.per_user.len()
    }

    fn terms(&self) -> &SaleTerms {
        self.terms.as_ref().expect("only called on created sales")
    }

    pub fn remaining(&self) -> i64 {
        self.terms
            .as_ref()
            .map_or(0, |t| t.quantity - self.reserved - self.sold)
    }

    pub fn hold(&self, order: OrderId) -> Option<&Hold> {
        self.holds.get(order)
    }

    /// Units `user_id` holds or bought.
    pub fn units_of(&self, user_id: &str) -> i64 {
        self.per_user.get(user_id).copied().unwrap_or(0)
    }

    /// The status at `now_ms`: the window by the clock, then the stock.
    pub fn status_at(&self, now_ms: i64) -> SaleStatus {
        let terms = self.terms();
        if now_ms >= terms.ends_at_ms {
            SaleStatus::Ended
        } else if now_ms < terms.starts_at_ms {
            SaleStatus::Scheduled
        } else if self.remaining() == 0 {
            SaleStatus::SoldOut
        } else {
            SaleStatus::Active
        }
    }

    /// The status as of the last event: what the read table lists.
    pub fn status_by_phase(&self) -> SaleStatus {
        match self.phase {
            Phase::Scheduled => SaleStatus::Scheduled,
            Phase::Closed => SaleStatus::Ended,
            Phase::Open if self.remaining() == 0 => SaleStatus::SoldOut,
            Phase::Open => SaleStatus::Active,
        }
    }

    pub fn view(&self, status: SaleStatus) -> SaleView {
        let terms = self.terms();
        SaleView {
            id: self.id.clone(),
            product_id: terms.product_id.clone(),
            quantity: terms.quantity,
            remaining: self.remaining(),
            reserved: self.reserved,
            sold: self.sold,
            sale_price: terms.sale_price,
            starts_at: rfc3339(terms.starts_at_ms),
            ends_at: rfc3339(terms.ends_at_ms),
            status,
            per_user_limit: terms.per_user_limit,
            queue_required: terms.queue_required,
            version: self.version,
        }
    }

    /// The view after `events`, computed on a copy of the counters (not of the holds).
    fn accept(&self, events: Vec<SaleEvent>, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let mut next = TimeSale {
            id: self.id.clone(),
            terms: self.terms.clone(),
            phase: self.phase,
            reserved: self.reserved,
            sold: self.sold,
            version: self.version,
            ..TimeSale::default()
        };
        events.iter().for_each(|e| next.apply_counters(e));
        Ok(Decision {
            events,
            reply: next.view(next.status_at(ctx.now_ms)),
        })
    }

    fn apply_counters(&mut self, event: &SaleEvent) {
        self.version += 1;
        match event {
            SaleEvent::Created(terms) => self.terms = Some(terms.clone()),
            SaleEvent::Opened => self.phase = Phase::Open,
            SaleEvent::Closed => self.phase = Phase::Closed,
            SaleEvent::Reserved { quantity, .. } => self.reserved += quantity,
            SaleEvent::Released { quantity, .. } => self.reserved -= quantity,
            SaleEvent::Committed { quantity, .. } => {
                self.reserved -= quantity;
                self.sold += quantity;
            }
            SaleEvent::Returned { quantity, .. } => self.sold -= quantity,
        }
    }

    fn decide_create(&self, terms: &SaleTerms, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        if self.terms.is_some() {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                format!("time sale {} already exists", self.id),
            ));
        }
        validate_terms(terms)?;
        let mut events = vec![SaleEvent::Created(terms.clone())];
        events.extend(phase_steps(Phase::Scheduled, terms, ctx.now_ms));
        self.accept(events, ctx)
    }

    fn decide_purchase(
        &self,
        order: OrderId,
        user_id: &str,
        quantity: i64,
        expires_at_ms: i64,
        queue_pass: bool,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        if self.holds.contains(order) {
            return Ok(Decision::reply(self.view(self.status_at(ctx.now_ms))));
        }
        if self.terms().queue_required && !queue_pass {
            return Err(Rejection::new(
                ErrorCode::QueuePassRequired,
                "this sale admits buyers through its waiting room; send X-Queue-Pass",
            ));
        }
        if quantity < 1 {
            return Err(Rejection::validation("quantity", "must be at least 1"));
        }
        match self.status_at(ctx.now_ms) {
            SaleStatus::Scheduled => return Err(not_active("has not started yet")),
            SaleStatus::Ended => return Err(not_active("has ended")),
            SaleStatus::SoldOut => {
                return Err(Rejection::new(
                    ErrorCode::SoldOut,
                    format!("time sale {} is sold out", self.id),
                ))
            }
            SaleStatus::Active => {}
        }
        let held = self.units_of(user_id);
        if let Some(limit) = self.terms().per_user_limit {
            if held + quantity > limit {
                return Err(Rejection::new(
                    ErrorCode::PerUserLimitExceeded,
                    format!("the limit is {limit} per user; you hold or bought {held}"),
                ));
            }
        }
        if quantity > self.remaining() {
            return Err(Rejection::new(
                ErrorCode::InsufficientStock,
                format!("{} left, {quantity} asked", self.remaining()),
            ));
        }
        let event = SaleEvent::Reserved {
            order,
            user_id: UserId::from(user_id),
            quantity,
            expires_at_ms,
        };
        self.accept(vec![event], ctx)
    }

    fn decide_commit(&self, order: OrderId, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let hold = self.holds.committable(order, ctx.now_ms)?;
        let event = SaleEvent::Committed {
            order,
            quantity: hold.quantity,
        };
        self.accept(vec![event], ctx)
    }

    /// The window's steps that are due, then the reservations that are due.
    fn decide_advance(&self, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let mut events = phase_steps(self.phase, self.terms(), ctx.now_ms);
        events.extend(
            self.holds
                .due(ctx.now_ms)
                .map(|(order, hold)| SaleEvent::Released {
                    order,
                    quantity: hold.quantity,
                    reason: ReleaseReason::Expired,
                }),
        );
        self.accept(events, ctx)
    }
}

fn not_active(why: &str) -> Rejection {
    Rejection::new(ErrorCode::SaleNotActive, format!("the sale {why}"))
}

/// `Opened` and `Closed`, as far as `now_ms` has passed them from `phase`.
fn phase_steps(phase: Phase, terms: &SaleTerms, now_ms: i64) -> Vec<SaleEvent> {
    let mut events = Vec::new();
    if phase == Phase::Scheduled && now_ms >= terms.starts_at_ms {
        events.push(SaleEvent::Opened);
    }
    if phase < Phase::Closed && now_ms >= terms.ends_at_ms {
        events.push(SaleEvent::Closed);
    }
    events
}

/// The rules on a sale's terms; handlers check the same before asking, with field names.
pub fn validate_terms(terms: &SaleTerms) -> Result<(), Rejection> {
    if terms.quantity < 1 || terms.sale_price < 0 {
        return Err(Rejection::validation(
            "quantity",
            "quantity must be >= 1 and sale_price >= 0",
        ));
    }
    if terms.starts_at_ms >= terms.ends_at_ms {
        return Err(Rejection::validation("ends_at", "must be after starts_at"));
    }
    if terms.per_user_limit.is_some_and(|limit| limit < 1) {
        return Err(Rejection::validation(
            "per_user_limit",
            "must be at least 1, or null for unlimited",
        ));
    }
    Ok(())
}

impl Entity for TimeSale {
    const KIND: &'static str = "time_sale";
    const VERSION: u8 = 1;

    type Command = SaleCommand;
    type Event = SaleEvent;
    type Reply = SaleView;

    fn blank(id: &str) -> Self {
        TimeSale {
            id: SaleId::from(id),
            ..TimeSale::default()
        }
    }

    fn exists(&self) -> bool {
        self.terms.is_some()
    }

    fn decide(&self, command: &SaleCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        if let SaleCommand::Create(terms) = command {
            return self.decide_create(terms, ctx);
        }
        if self.terms.is_none() {
            return Err(Rejection::not_found(format!(
                "time sale {} not found",
                self.id
            )));
        }
        match command {
            SaleCommand::Create(_) => unreachable!("handled above"),
            SaleCommand::Get => Ok(Decision::reply(self.view(self.status_at(ctx.now_ms)))),
            SaleCommand::Purchase {
                order,
                user_id,
                quantity,
                expires_at_ms,
                queue_pass,
            } => self.decide_purchase(
                *order,
                user_id.as_str(),
                *quantity,
                *expires_at_ms,
                *queue_pass,
                ctx,
            ),
            SaleCommand::Release { order, reason } => match self.holds.get(*order) {
                Some(h) => {
                    let event = SaleEvent::Released {
                        order: *order,
                        quantity: h.quantity,
                        reason: *reason,
                    };
                    self.accept(vec![event], ctx)
                }
                None => Ok(Decision::reply(self.view(self.status_at(ctx.now_ms)))),
            },
            SaleCommand::Commit { order } => self.decide_commit(*order, ctx),
            SaleCommand::Return {
                order,
                user_id,
                quantity,
            } => {
                let bought = self.per_user.get(user_id).copied().unwrap_or(0);
                if !(1..=bought.min(self.sold)).contains(quantity) {
                    return Err(Rejection::validation(
                        "quantity",
                        format!("{user_id} holds or bought {bought} units of this sale"),
                    ));
                }
                let event = SaleEvent::Returned {
                    order: *order,
                    user_id: user_id.clone(),
                    quantity: *quantity,
                };
                self.accept(vec![event], ctx)
            }
            SaleCommand::Advance => self.decide_advance(ctx),
        }
    }

    fn apply(&mut self, event: &SaleEvent) {
        self.apply_counters(event);
        match event {
            SaleEvent::Reserved {
                order,
                user_id,
                quantity,
                expires_at_ms,
            } => {
                *self.per_user.entry(user_id.clone()).or_default() += quantity;
                self.holds.insert(
                    *order,
                    Hold {
                        user_id: user_id.clone(),
                        quantity: *quantity,
                        expires_at_ms: *expires_at_ms,
                    },
                );
            }
            SaleEvent::Released { order, .. } => {
                if let Some(hold) = self.holds.remove(*order) {
                    self.uncount(&hold.user_id, hold.quantity);
                }
            }
            SaleEvent::Returned {
                user_id, quantity, ..
            } => self.uncount(user_id, *quantity),
            SaleEvent::Committed { order, .. } => {
                self.holds.remove(*order);
            }
            SaleEvent::Created(_) | SaleEvent::Opened | SaleEvent::Closed => {}
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        if self.terms.is_none() {
            return match self.reserved == 0 && self.sold == 0 && self.holds.is_empty() {
                true => Ok(()),
                false => Err("counters on a sale that was never created".into()),
            };
        }
        if self.reserved < 0 || self.sold < 0 || self.remaining() < 0 {
            return Err(format!(
                "counters out of range: reserved {} sold {} remaining {}",
                self.reserved,
                self.sold,
                self.remaining()
            ));
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        let sum: i64 = self.holds.values().map(|h| h.quantity).sum();
        if sum != self.reserved {
            return Err(format!("reserved {} but holds sum to {sum}", self.reserved));
        }
        let counted: i64 = self.per_user.values().sum();
        if counted != self.reserved + self.sold {
            return Err(format!(
                "users hold or bought {counted}, but reserved + sold is {}",
                self.reserved + self.sold
            ));
        }
        let limit = self.terms.as_ref().and_then(|t| t.per_user_limit);
        if let Some((user, units)) = self
            .per_user
            .iter()
            .find(|(_, units)| **units < 1 || limit.is_some_and(|l| **units > l))
        {
            return Err(format!(
                "user {user} counts {units} units (limit {limit:?})"
            ));
        }
        self.holds.check()
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        let terms = self.terms.as_ref()?;
        let window = match self.phase {
            Phase::Scheduled => Some(terms.starts_at_ms),
            Phase::Open => Some(terms.ends_at_ms),
            Phase::Closed => None,
        };
        let expiry = self.holds.next_deadline_ms();
        window.into_iter().chain(expiry).min()
    }

    fn deadline_command(&self, ctx: &Ctx) -> Option<SaleCommand> {
        self.next_deadline_ms()
            .filter(|at| *at <= ctx.now_ms)
            .map(|_| SaleCommand::Advance)
    }

    fn snapshot_weight(&self) -> u64 {
        u64::try_from(self.holds.len() + self.per_user.len()).expect("usize fits u64")
    }
}

#[cfg(test)]
mod tests;
