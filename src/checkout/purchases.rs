//! Orders born with one step of one entity: a purchase from a time sale (the reservation is
//! the sale's event) and a hold of seats (the seat map's `Held`).

use super::birth::{Born, Rider};
use super::Checkout;
use crate::actors::order::{OrderItem, Placed, Source, SourceKind};
use crate::actors::seat_map::{HoldView, SeatCommand, SeatMap, SeatReply, SeatRequest};
use crate::actors::time_sale::{SaleCommand, SaleView, TimeSale};
use crate::actors::OrderId;
use crate::actors::UserId;
use crate::error::ApiError;

/// A purchase from a time sale, as the edge checked it.
#[derive(Debug, Clone)]
pub struct SalePurchase {
    pub sale_id: String,
    pub user_id: String,
    pub quantity: i64,
    /// The request showed the caller's valid pass for the sale's waiting room.
    pub queue_pass: bool,
}

/// A hold of seats for an event, as the edge checked it.
#[derive(Debug, Clone)]
pub struct SeatHold {
    pub event_id: String,
    pub user_id: String,
    pub request: SeatRequest,
    /// The request showed the caller's valid pass for the event's waiting room.
    pub queue_pass: bool,
}

impl Checkout {
    /// Buys from a time sale: one message to the sale, whose reservation and the order born
    /// with it are one journal append. Answers the order's JSON.
    pub async fn buy_from_sale(
        &self,
        purchase: SalePurchase,
        rider: &mut Rider,
    ) -> Result<String, ApiError> {
        let (created_at_ms, expires_at_ms) = self.order_times_ms()?;
        let order_id = OrderId::new_v7();
        let command = SaleCommand::Purchase {
            order: order_id,
            user_id: UserId::from(purchase.user_id.clone()),
            quantity: purchase.quantity,
            expires_at_ms,
            queue_pass: purchase.queue_pass,
        };
        // Priced by the sale's reply.
        let unpriced = Placed {
            user_id: UserId::from(purchase.user_id),
            source: Source {
                kind: SourceKind::TimeSale,
                id: purchase.sale_id.clone(),
            },
            items: vec![OrderItem {
                reference: purchase.sale_id.clone(),
                quantity: purchase.quantity,
                unit_price: 0,
            }],
            expires_at_ms,
            created_at_ms,
        };
        let born = Born::default();
        let rows = rider.birth_rows.clone();
        let side = born.side::<TimeSale, _>(order_id, rows, move |sale: &SaleView| {
            let mut placed = unpriced.clone();
            placed.items[0].unit_price = sale.sale_price;
            Some(placed)
        });
        (self.sales)
            .ask_holding(&purchase.sale_id, command, Some(side), &mut rider.hold)
            .await?;
        born.json()
    }

    /// Holds seats: one message to the event's seat map, whose `Held` and the order born with
    /// it (one item per seat, expiring with the hold) are one journal append. Answers the
    /// order's JSON.
    pub async fn hold_seats(&self, hold: SeatHold, rider: &mut Rider) -> Result<String, ApiError> {
        let created_at_ms = self.rt.now_ms();
        let order_id = OrderId::new_v7();
        let command = SeatCommand::Hold {
            order: order_id,
            user_id: UserId::from(hold.user_id.clone()),
            request: hold.request,
            queue_pass: hold.queue_pass,
        };
        let (user_id, event_id) = (hold.user_id, hold.event_id.clone());
        let born = Born::default();
        let rows = rider.birth_rows.clone();
        let side = born.side::<SeatMap, _>(order_id, rows, move |reply: &SeatReply| match reply {
            SeatReply::Hold(held) => Some(seat_order(&user_id, &event_id, created_at_ms, held)),
            _ => None,
        });
        let reply = (self.seats)
            .ask_holding(&hold.event_id, command, Some(side), &mut rider.hold)
            .await?;
        match reply {
            SeatReply::Hold(_) => born.json(),
            other => Err(ApiError::internal(format!(
                "expected a hold, got {other:?}"
            ))),
        }
    }
}

/// The order of seats `held`: one item per seat, priced by its row.
fn seat_order(user_id: &str, event_id: &str, created_at_ms: i64, held: &HoldView) -> Placed {
    let items = held
        .seats
        .iter()
        .zip(&held.unit_prices)
        .map(|(seat, price)| OrderItem {
            reference: seat.clone(),
            quantity: 1,
            unit_price: *price,
        })
        .collect();
    Placed {
        user_id: UserId::from(user_id),
        source: Source {
            kind: SourceKind::Event,
            id: event_id.to_string(),
        },
        items,
        expires_at_ms: held.expires_at_ms,
        created_at_ms,
    }
}
