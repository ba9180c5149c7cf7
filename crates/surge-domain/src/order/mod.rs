//! Order: what a customer reserved and what became of it.
//!
//! Supervised by `Region<Order>`; persistence id `order:{id}`.
//! An order is born `RESERVED` by the step that reserved its units: its `Place` decision runs
//! inside that step, and its first event is committed in the same transaction as the last
//! reservation (see [`birth`]), so the purchase path is one journal append. Accepts: place
//! (on a blank order only), get, expire (its own deadline), cancel. The checkout saga (pay,
//! refund; `crate::checkout`) extends this entity with its steps.
//! Journals: `Placed`, `Expired`, `Cancelled`, and for its payment (driven by its
//! [`crate::pay_saga`]) `PayBegun`, `Confirmed`, `PaymentFailed`, `RefundBegun`, `Refunded`.
//!
//! # Invariants
//! - `amount = sum(unit_price * quantity)` over the items, and every quantity is >= 1;
//! - `card_amount = amount - discount - points_used >= 0`;
//! - a placed order has at least one item and a user;
//! - a `RESERVED` or `PAYMENT_FAILED` order has a deadline at `expires_at`; other states
//!   (`PAYING` among them: its saga decides) have none.

use crate::UserId;
use serde::{Deserialize, Serialize};

use super::{Ctx, Decision, Entity};
use crate::time::rfc3339;
use crate::{ErrorCode, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Reserved,
    Paying,
    Confirmed,
    PaymentFailed,
    Expired,
    Cancelled,
    Refunding,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Reserved => "RESERVED",
            OrderStatus::Paying => "PAYING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Refunding => "REFUNDING",
            OrderStatus::Refunded => "REFUNDED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub id: String,
}

/// What kind of entity holds an order's units, and so where they go back. Encoded as its name
/// (`"stock"`, `"time_sale"`, `"event"`) in JSON and in journaled events alike, as it was when
/// it was a string: events written before it was an enum decode unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SourceKind {
    Stock,
    TimeSale,
    Event,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::Stock, SourceKind::TimeSale, SourceKind::Event];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Stock => "stock",
            SourceKind::TimeSale => "time_sale",
            SourceKind::Event => "event",
        }
    }
}

impl From<SourceKind> for String {
    fn from(kind: SourceKind) -> String {
        kind.as_str().to_string()
    }
}

impl TryFrom<String> for SourceKind {
    type Error = String;

    fn try_from(name: String) -> Result<SourceKind, String> {
        SourceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| format!("unknown order source '{name}'"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    #[serde(rename = "ref")]
    pub reference: String,
    pub quantity: i64,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub status: String,
    pub at_ms: i64,
}

/// Everything an order is born with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub user_id: UserId,
    pub source: Source,
    pub items: Vec<OrderItem>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub placed: Option<Placed>,
    pub status: Option<OrderStatus>,
    pub amount: i64,
    pub discount: i64,
    pub points_used: i64,
    pub coupon_id: Option<String>,
    pub payment_id: Option<String>,
    pub updated_at_ms: i64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// The birth of the order; refused once it exists (an order is placed once).
    Place(Placed),
    Get,
    Expire,
    Cancel,
    /// Its payment saga starts: `RESERVED` or `PAYMENT_FAILED`, and not expired, becomes
    /// `PAYING`; the order no longer expires by itself, the saga decides.
    BeginPay,
    /// The saga took the money: `PAYING` becomes `CONFIRMED` with what paid for it.
    Confirm(Paid),
    /// The saga gave everything back: `PAYING` becomes `PAYMENT_FAILED`.
    MarkFailed,
    /// Its refund starts: `CONFIRMED` becomes `REFUNDING`.
    BeginRefund,
    /// Everything it took went back: `REFUNDING` becomes `REFUNDED`.
    MarkRefunded,
}

/// What paid for an order: the coupon's discount, the points and the card payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    pub discount: i64,
    pub points_used: i64,
    pub coupon_id: Option<String>,
    pub payment_id: Option<String>,
}

/// Appended variants only: journals written before them decode unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    Placed(Placed),
    Expired { at_ms: i64 },
    Cancelled { at_ms: i64 },
    PayBegun { at_ms: i64 },
    Confirmed { paid: Paid, at_ms: i64 },
    PaymentFailed { at_ms: i64 },
    RefundBegun { at_ms: i64 },
    Refunded { at_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    pub status: String,
    pub at: String,
}

/// One seat's ticket of a confirmed event order: the code the door checks in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatTicket {
    pub seat_id: String,
    pub code: String,
}

/// The order as API.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub user_id: UserId,
    pub source: Source,
    pub items: Vec<OrderItem>,
    pub status: OrderStatus,
    pub amount: i64,
    pub discount: i64,
    pub points_used: i64,
    pub card_amount: i64,
    pub coupon_id: Option<String>,
    pub payment_id: Option<String>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// `{code, detail}` of a failed payment.
    pub failure: Option<serde_json::Value>,
    pub steps: Vec<StepView>,
    /// A `CONFIRMED` event order's tickets, one per seat. Signed by the server with a key the
    /// domain never sees, so they are added where the order is answered; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<Vec<SeatTicket>>,
}

impl Order {
    /// What the order was placed with; only for an order that [`Entity::exists`].
    pub fn placed(&self) -> &Placed {
        self.placed.as_ref().expect("only called on placed orders")
    }

    pub fn card_amount(&self) -> i64 {
        self.amount - self.discount - self.points_used
    }

    pub fn user_id(&self) -> Option<&str> {
        self.placed.as_ref().map(|p| p.user_id.as_str())
    }

    pub fn view(&self) -> Option<OrderView> {
        let placed = self.placed.as_ref()?;
        Some(OrderView {
            id: self.id.clone(),
            user_id: placed.user_id.clone(),
            source: placed.source.clone(),
            items: placed.items.clone(),
            status: self.status?,
            amount: self.amount,
            discount: self.discount,
            points_used: self.points_used,
            card_amount: self.card_amount(),
            coupon_id: self.coupon_id.clone(),
            payment_id: self.payment_id.clone(),
            expires_at: rfc3339(placed.expires_at_ms),
            created_at: rfc3339(placed.created_at_ms),
            updated_at: rfc3339(self.updated_at_ms),
            failure: None,
            steps: self
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.name.clone(),
                    status: s.status.clone(),
                    at: rfc3339(s.at_ms),
                })
                .collect(),
            tickets: None,
        })
    }

    /// The birth of this blank order, if what it is born with keeps its invariants.
    fn place(&self, placed: &Placed) -> Result<Decision<Self>, Rejection> {
        placed_problem(placed).map_err(|why| Rejection::new(ErrorCode::ValidationFailed, why))?;
        self.accept(OrderEvent::Placed(placed.clone()))
    }

    fn step(&mut self, status: OrderStatus, name: &str, step_status: &str, at_ms: i64) {
        self.status = Some(status);
        self.updated_at_ms = at_ms;
        self.steps.push(Step {
            name: name.into(),
            status: step_status.into(),
            at_ms,
        });
    }

    fn accept(&self, event: OrderEvent) -> Result<Decision<Self>, Rejection> {
        let mut next = self.clone();
        next.apply(&event);
        Ok(Decision {
            events: vec![event],
            reply: next.view().expect("a placed order has a view"),
        })
    }
}

fn not_paying(view: &OrderView) -> Rejection {
    Rejection::new(
        ErrorCode::Conflict,
        format!("the order is {}, not PAYING", view.status.as_str()),
    )
}

impl Order {
    fn decide_begin_pay(&self, view: &OrderView, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let expired = self.placed().expires_at_ms <= ctx.now_ms;
        match self.status {
            Some(OrderStatus::Reserved | OrderStatus::PaymentFailed) if !expired => {
                self.accept(OrderEvent::PayBegun { at_ms: ctx.now_ms })
            }
            Some(OrderStatus::Paying) => Ok(Decision::reply(view.clone())),
            Some(OrderStatus::Reserved | OrderStatus::PaymentFailed | OrderStatus::Expired) => {
                Err(Rejection::new(
                    ErrorCode::OrderExpired,
                    "the order's reservation has expired",
                ))
            }
            _ => Err(Rejection::new(
                ErrorCode::OrderNotPayable,
                format!("an order in status {} cannot be paid", view.status.as_str()),
            )),
        }
    }

    fn decide_confirm(
        &self,
        paid: &Paid,
        view: &OrderView,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        match self.status {
            Some(OrderStatus::Paying) => {
                let card_amount = self.amount - paid.discount - paid.points_used;
                if paid.discount < 0 || paid.points_used < 0 || card_amount < 0 {
                    return Err(Rejection::validation(
                        "paid",
                        "the amounts exceed the order's",
                    ));
                }
                self.accept(OrderEvent::Confirmed {
                    paid: paid.clone(),
                    at_ms: ctx.now_ms,
                })
            }
            Some(OrderStatus::Confirmed) => Ok(Decision::reply(view.clone())),
            _ => Err(not_paying(view)),
        }
    }
}

impl Entity for Order {
    const KIND: &'static str = "order";
    const VERSION: u8 = 1;

    type Command = OrderCommand;
    type Event = OrderEvent;
    type Reply = OrderView;

    fn blank(id: &str) -> Self {
        Order {
            id: id.to_string(),
            ..Order::default()
        }
    }

    fn exists(&self) -> bool {
        self.placed.is_some()
    }

    fn decide(&self, command: &OrderCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let Some(view) = self.view() else {
            return match command {
                OrderCommand::Place(placed) => self.place(placed),
                _ => Err(Rejection::not_found(format!("order {} not found", self.id))),
            };
        };
        match command {
            // A second birth would replace what the first one reserved and was told.
            OrderCommand::Place(_) => Err(Rejection::new(
                ErrorCode::Conflict,
                format!("order {} already exists", self.id),
            )),
            OrderCommand::Get => Ok(Decision::reply(view)),
            OrderCommand::Expire => {
                let due = self.placed().expires_at_ms <= ctx.now_ms;
                let unpaid = matches!(
                    self.status,
                    Some(OrderStatus::Reserved | OrderStatus::PaymentFailed)
                );
                if unpaid && due {
                    self.accept(OrderEvent::Expired { at_ms: ctx.now_ms })
                } else {
                    Ok(Decision::reply(view))
                }
            }
            OrderCommand::BeginPay => self.decide_begin_pay(&view, ctx),
            OrderCommand::Confirm(paid) => self.decide_confirm(paid, &view, ctx),
            OrderCommand::MarkFailed => match self.status {
                Some(OrderStatus::Paying) => {
                    self.accept(OrderEvent::PaymentFailed { at_ms: ctx.now_ms })
                }
                Some(OrderStatus::PaymentFailed) => Ok(Decision::reply(view)),
                _ => Err(not_paying(&view)),
            },
            OrderCommand::BeginRefund => match self.status {
                Some(OrderStatus::Confirmed) => {
                    self.accept(OrderEvent::RefundBegun { at_ms: ctx.now_ms })
                }
                Some(OrderStatus::Refunding | OrderStatus::Refunded) => Ok(Decision::reply(view)),
                _ => Err(Rejection::new(
                    ErrorCode::Conflict,
                    format!(
                        "an order in status {} cannot be refunded",
                        view.status.as_str()
                    ),
                )),
            },
            OrderCommand::MarkRefunded => match self.status {
                Some(OrderStatus::Refunding) => {
                    self.accept(OrderEvent::Refunded { at_ms: ctx.now_ms })
                }
                Some(OrderStatus::Refunded) => Ok(Decision::reply(view)),
                _ => Err(Rejection::new(
                    ErrorCode::Conflict,
                    format!("the order is {}, not REFUNDING", view.status.as_str()),
                )),
            },
            OrderCommand::Cancel => match self.status {
                Some(OrderStatus::Reserved | OrderStatus::PaymentFailed) => {
                    self.accept(OrderEvent::Cancelled { at_ms: ctx.now_ms })
                }
                Some(OrderStatus::Cancelled) => Ok(Decision::reply(view)),
                Some(OrderStatus::Expired) => Err(Rejection::new(
                    ErrorCode::OrderExpired,
                    "the order has expired; its units are already back",
                )),
                _ => Err(Rejection::new(
                    ErrorCode::Conflict,
                    format!(
                        "an order in status {} cannot be cancelled",
                        view.status.as_str()
                    ),
                )),
            },
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed(placed) => {
                self.amount = amount_of(&placed.items);
                self.status = Some(OrderStatus::Reserved);
                self.updated_at_ms = placed.created_at_ms;
                self.steps.push(Step {
                    name: "reserve".into(),
                    status: "DONE".into(),
                    at_ms: placed.created_at_ms,
                });
                self.placed = Some(placed.clone());
            }
            OrderEvent::Expired { at_ms } => {
                self.status = Some(OrderStatus::Expired);
                self.updated_at_ms = *at_ms;
            }
            OrderEvent::Cancelled { at_ms } => {
                self.status = Some(OrderStatus::Cancelled);
                self.updated_at_ms = *at_ms;
            }
            OrderEvent::PayBegun { at_ms } => {
                self.step(OrderStatus::Paying, "pay", "STARTED", *at_ms)
            }
            OrderEvent::Confirmed { paid, at_ms } => {
                self.discount = paid.discount;
                self.points_used = paid.points_used;
                self.coupon_id = paid.coupon_id.clone();
                self.payment_id = paid.payment_id.clone();
                self.step(OrderStatus::Confirmed, "pay", "DONE", *at_ms);
            }
            OrderEvent::PaymentFailed { at_ms } => {
                self.step(OrderStatus::PaymentFailed, "pay", "FAILED", *at_ms)
            }
            OrderEvent::RefundBegun { at_ms } => {
                self.step(OrderStatus::Refunding, "refund", "STARTED", *at_ms)
            }
            OrderEvent::Refunded { at_ms } => {
                self.step(OrderStatus::Refunded, "refund", "DONE", *at_ms)
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let Some(placed) = &self.placed else {
            return match self.status {
                None => Ok(()),
                Some(_) => Err("a status without a placed order".into()),
            };
        };
        placed_problem(placed)?;
        let amount = amount_of(&placed.items);
        if amount != self.amount {
            return Err(format!("amount {} but items sum to {amount}", self.amount));
        }
        if self.card_amount() < 0 {
            return Err("card_amount below 0".into());
        }
        Ok(())
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        match self.status {
            Some(OrderStatus::Reserved | OrderStatus::PaymentFailed) => {
                Some(self.placed().expires_at_ms)
            }
            _ => None,
        }
    }

    fn deadline_command(&self, ctx: &Ctx) -> Option<OrderCommand> {
        self.next_deadline_ms()
            .filter(|at| *at <= ctx.now_ms)
            .map(|_| OrderCommand::Expire)
    }
}

/// What is wrong with the lines and owner an order would be born with, if anything.
fn placed_problem(placed: &Placed) -> Result<(), String> {
    if placed.items.is_empty() || placed.user_id.is_empty() {
        return Err("a placed order needs items and a user".into());
    }
    if placed
        .items
        .iter()
        .any(|i| i.quantity < 1 || i.unit_price < 0)
    {
        return Err("item quantities are >= 1 and prices >= 0".into());
    }
    Ok(())
}

/// `sum(unit_price * quantity)`, saturating: reservations cap each line far below overflow,
/// and a saturated total is refused by no one but can never panic an actor.
pub fn amount_of(items: &[OrderItem]) -> i64 {
    items.iter().fold(0i64, |total, item| {
        total.saturating_add(item.unit_price.saturating_mul(item.quantity))
    })
}

#[cfg(test)]
mod tests;
