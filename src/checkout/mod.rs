//! Checkout: the runtime side of an order's life across entities. An order's units live in
//! other entities (stock items, a time sale, a seat map), and no one entity can decide for
//! them all, so [`Checkout`] sequences their steps: it places orders, compensates a placement
//! that failed half-way, and gives units back when an order is cancelled. Entities whose
//! events record steps carried out elsewhere are driven from here too ([`driver`]): the
//! checkout saga (pay, refund; [`pay`]) and the points charge (points bought by card;
//! [`charge`]).
//!
//! # Placing
//! An order is born with the step that reserved its units: its `Place` decision, first event,
//! deadline and read row ([`crate::actors::order::birth`]) ride on that step as side writes, so
//! the reservation and the order are one journal append, and the order exists if and only if
//! its last reservation was made.
//! - A stock order reserves its lines one by one, in SKU order, the birth riding on the last
//!   ([`Checkout::place_stock`]). A line definitely refused releases the lines reserved before
//!   it (compensation). An unknown outcome (`ApiError::outcome_unknown`: a timeout, a failed
//!   commit) leaves them: the line in doubt may yet be reserved with the order's birth. Every
//!   reservation expires by itself at the order's `expires_at`, which also covers the lines a
//!   crash left reserved.
//! - A time-sale purchase or a seat hold is one step of one entity ([`Checkout::buy_from_sale`],
//!   [`Checkout::hold_seats`]).
//!
//! # Giving back
//! A cancel is a step of the order; once it has committed, [`Cancelled::give_back`] returns
//! the units to where they were reserved, whatever the order's [`SourceKind`]. Best effort:
//! what is not released expires at `expires_at`.
//!
//! # The seam with the edge
//! Checkout depends on the runtime and the entities, never on `crate::http`. What a request
//! brings is a [`Rider`]: opaque rows to commit with the order's birth, made from the born
//! order's JSON (at the HTTP edge, the idempotency record of the 201), and a guard to keep past
//! a step that does not answer in time (the key's in-flight hold). A placement answers with
//! that JSON: the order is serialised once, in the reserving actor. A cancel takes the order
//! step's own side writes and hold, and its give-back is a second call, so that the edge can
//! remember its key between the two as soon as the cancel has committed.

mod birth;
mod charge;
mod driver;
mod pay;
mod purchases;
mod stock;

#[cfg(test)]
mod tests;

pub use birth::{BirthRows, Rider};
pub use charge::{charge_id, ChargeParts, ChargeSteps, Charges};
pub use driver::{Driver, Performer, StepError, Stepped, RESUME_EVERY_SECS, SAGA_SCOPE};
pub use pay::{PayParts, PaySteps, Payments};
pub use purchases::{SalePurchase, SeatHold};
pub use stock::Line;

use crate::actors::order::{Order, OrderCommand, OrderStatus, OrderView, SourceKind};
use crate::actors::seat_map::{SeatCommand, SeatMap};
use crate::actors::stock_item::{ReleaseReason, StockItem};
use crate::actors::time_sale::{SaleCommand, TimeSale};
use crate::actors::OrderId;
use crate::actors::{Hosted, SideWrites};
use crate::error::ApiError;
use crate::runtime::SharedRuntime;
use crate::supervisors::region::{Hold, Region};

/// The coordinator of orders across entities; cheap to clone (regions are handles).
#[derive(Clone)]
pub struct Checkout {
    rt: SharedRuntime,
    stock: Region<StockItem>,
    orders: Region<Order>,
    sales: Region<TimeSale>,
    seats: Region<SeatMap>,
}

impl Checkout {
    pub fn new(
        rt: SharedRuntime,
        stock: Region<StockItem>,
        orders: Region<Order>,
        sales: Region<TimeSale>,
        seats: Region<SeatMap>,
    ) -> Checkout {
        Checkout {
            rt,
            stock,
            orders,
            sales,
            seats,
        }
    }

    /// When an order placed now is created and when, unpaid, it expires
    /// (`orders.pay_within_secs` later).
    fn order_times_ms(&self) -> Result<(i64, i64), ApiError> {
        let now_ms = self.rt.now_ms();
        let pay_within_ms = i64::try_from(self.rt.settings.orders.pay_within_secs * 1000)
            .map_err(ApiError::internal)?;
        Ok((now_ms, now_ms + pay_within_ms))
    }

    /// Cancels order `id`, committing `side`'s rows with the cancel and keeping `hold` past a
    /// timeout. Its units are still out until [`Cancelled::give_back`].
    pub async fn cancel(
        &self,
        id: OrderId,
        side: Option<SideWrites<Order>>,
        hold: &mut Option<Hold>,
    ) -> Result<Cancelled<'_>, ApiError> {
        let view = (self.orders)
            .ask_holding(&id.to_string(), OrderCommand::Cancel, side, hold)
            .await?;
        Ok(Cancelled {
            checkout: self,
            view,
        })
    }

    /// Returns a cancelled order's units to where they were reserved. Best effort: what is not
    /// released here expires at `expires_at`.
    async fn give_back(&self, view: &OrderView) {
        let order: OrderId = view.id.parse().expect("order ids are UUIDs");
        let reason = ReleaseReason::Cancelled;
        let source = view.source.id.as_str();
        match view.source.kind {
            SourceKind::Stock => {
                let skus = view.items.iter().map(|i| i.reference.as_str());
                self.release_lines(order, skus, reason).await;
            }
            SourceKind::TimeSale => {
                let command = SaleCommand::Release { order, reason };
                release(&self.sales, source, command, order).await;
            }
            SourceKind::Event => {
                let command = SeatCommand::Release { order, reason };
                release(&self.seats, source, command, order).await;
            }
        }
    }
}

/// Sends `command`, a release of order `order_id`'s units, to entity `id`. Best effort: a
/// release that fails is logged, and the units come back by themselves at `expires_at`.
async fn release<E: Hosted>(region: &Region<E>, id: &str, command: E::Command, order_id: OrderId) {
    if let Err(error) = region.ask(id, command, None).await {
        tracing::warn!(kind = E::KIND, %id, %order_id, error = %error.detail, "release failed; the units will come back at expires_at");
    }
}

/// An order whose cancel has committed, its units not yet given back.
#[must_use = "a cancelled order's units go back only through give_back"]
pub struct Cancelled<'a> {
    checkout: &'a Checkout,
    view: OrderView,
}

impl Cancelled<'_> {
    /// Gives the order's units back; answers the order.
    pub async fn give_back(self) -> OrderView {
        if self.view.status == OrderStatus::Cancelled {
            self.checkout.give_back(&self.view).await;
        }
        self.view
    }
}
