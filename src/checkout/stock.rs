//! Orders of stock lines: every line reserved or none, the order born with the last.

use super::birth::{Born, Rider};
use super::Checkout;
use crate::actors::order::{OrderItem, Placed, Source, SourceKind};
use crate::actors::stock_item::{ReleaseReason, StockCommand, StockItem, StockView};
use crate::actors::OrderId;
use crate::actors::SideWrites;
use crate::actors::UserId;
use crate::error::ApiError;

/// One line of a stock order. The edge has checked the lines: 1 to `orders.lines_max` of them,
/// each SKU once, each quantity in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// What the order will be born with, once the last line's price is known.
#[derive(Clone)]
struct Plan {
    order_id: OrderId,
    user_id: String,
    /// In SKU order.
    lines: Vec<Line>,
    expires_at_ms: i64,
    created_at_ms: i64,
}

impl Plan {
    fn placed(&self, prices: &[i64]) -> Placed {
        Placed {
            user_id: UserId::from(self.user_id.clone()),
            source: Source {
                kind: SourceKind::Stock,
                id: self.lines[0].sku.clone(),
            },
            items: self
                .lines
                .iter()
                .zip(prices)
                .map(|(line, price)| OrderItem {
                    reference: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price: *price,
                })
                .collect(),
            expires_at_ms: self.expires_at_ms,
            created_at_ms: self.created_at_ms,
        }
    }

    fn reserve(&self, line: &Line) -> StockCommand {
        StockCommand::Reserve {
            order: self.order_id,
            quantity: line.quantity,
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// The birth of the order (with the rider's rows) riding on the last reservation, whose
    /// reply brings the last price.
    fn birth_side(&self, prices: &[i64], rider: &Rider, born: &Born) -> SideWrites<StockItem> {
        let plan = self.clone();
        let prices = prices.to_vec();
        let rows = rider.birth_rows.clone();
        born.side::<StockItem, _>(self.order_id, rows, move |last: &StockView| {
            let mut all_prices = prices.clone();
            all_prices.push(last.price);
            Some(plan.placed(&all_prices))
        })
    }
}

impl Checkout {
    /// Places an order of `lines` for `user_id`: reserves every line or none, and answers the
    /// order's JSON. Lines go in SKU order, so that two orders after the same items meet at the
    /// first of them rather than each holding a part of what the other needs.
    pub async fn place_stock(
        &self,
        user_id: &str,
        mut lines: Vec<Line>,
        rider: &mut Rider,
    ) -> Result<String, ApiError> {
        lines.sort_by(|a, b| a.sku.cmp(&b.sku));
        let (created_at_ms, expires_at_ms) = self.order_times_ms()?;
        let plan = Plan {
            order_id: OrderId::new_v7(),
            user_id: user_id.to_string(),
            lines,
            expires_at_ms,
            created_at_ms,
        };
        let born = Born::default();
        self.reserve_lines(&plan, rider, &born).await?;
        born.json()
    }

    /// Reserves every line or none. A definite refusal releases the lines already reserved;
    /// an unknown outcome (a timeout, a failed commit) leaves them to expire, since the line in
    /// doubt may yet have been reserved with the order's birth.
    async fn reserve_lines(
        &self,
        plan: &Plan,
        rider: &mut Rider,
        born: &Born,
    ) -> Result<(), ApiError> {
        let mut prices = Vec::with_capacity(plan.lines.len());
        for (i, line) in plan.lines.iter().enumerate() {
            let last = i + 1 == plan.lines.len();
            let side = last.then(|| plan.birth_side(&prices, rider, born));
            match (self.stock)
                .ask_holding(&line.sku, plan.reserve(line), side, &mut rider.hold)
                .await
            {
                Ok(view) => prices.push(view.price),
                Err(error) if error.outcome_unknown => return Err(error),
                Err(error) => {
                    let skus = plan.lines[..i].iter().map(|l| l.sku.as_str());
                    self.release_lines(plan.order_id, skus, ReleaseReason::Compensated)
                        .await;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Releases order `order_id`'s reservations on `skus`. Best effort: what is not released
    /// here expires at `expires_at`.
    pub(super) async fn release_lines<'a>(
        &self,
        order_id: OrderId,
        skus: impl Iterator<Item = &'a str>,
        reason: ReleaseReason,
    ) {
        for sku in skus {
            let command = StockCommand::Release {
                order: order_id,
                reason,
            };
            super::release(&self.stock, sku, command, order_id).await;
        }
    }
}
