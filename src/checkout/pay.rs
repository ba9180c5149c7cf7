//! Payment sagas: what each step of an order's [`Saga`] does against the other entities and
//! the payment gateway ([`PaySteps`]), and [`Payments`], which starts, drives (through the
//! shared [`Driver`]) and resumes them. The saga decides; this only carries out.
//!
//! Every step is keyed (see [`super::driver`]): a call to another entity goes through an
//! idempotency record committed with that entity's events, and the gateway dedupes on the
//! same key, so a step run again after a crash, or after an answer that was lost, takes effect
//! once.

use std::sync::Arc;
use std::time::Duration;

use super::driver::{gateway_failure, keyed, Driver, Performer, StepError, Stepped};
use crate::actors::coupon_policy::{parse_coupon_id, CouponCommand, CouponPolicy, CouponReply};
use crate::actors::hosted::pay_saga::{status_name, ROW_KIND};
use crate::actors::order::{Order, OrderCommand, OrderView, Paid, SourceKind};
use crate::actors::pay_saga::{
    Attempt, OrderFacts, Outcome, PayRequest, Saga, SagaCommand, SagaKind, SagaStatus, SagaView,
    Step,
};
use crate::actors::seat_map::{SeatCommand, SeatMap};
use crate::actors::steps::StepResult;
use crate::actors::stock_item::{StockCommand, StockItem};
use crate::actors::time_sale::{SaleCommand, TimeSale};
use crate::actors::wallet::{parse_tx_id, Wallet, WalletCommand, WalletReply};
use crate::actors::OrderId;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::Gateway;
use crate::persistence::idempotency::Idempotency;
use crate::runtime::SharedRuntime;
use crate::supervisors::region::Region;

/// The regions and clients a saga's steps reach.
pub struct PayParts {
    pub rt: SharedRuntime,
    pub sagas: Region<Saga>,
    pub orders: Region<Order>,
    pub wallets: Region<Wallet>,
    pub coupons: Region<CouponPolicy>,
    pub stock: Region<StockItem>,
    pub sales: Region<TimeSale>,
    pub seats: Region<SeatMap>,
    pub gateway: Arc<Gateway>,
    pub idempotency: Idempotency,
}

impl Stepped for Saga {
    type Step = Step;
    type Outcome = Outcome;
    const ROW_KIND: &'static str = ROW_KIND;
    const UNFINISHED: &'static [&'static str] = &[
        status_name(SagaStatus::Running),
        status_name(SagaStatus::Compensating),
    ];

    fn next_command() -> SagaCommand {
        SagaCommand::Next
    }

    fn get_command() -> SagaCommand {
        SagaCommand::Get
    }

    fn report_command(step: Step, result: StepResult<Outcome>) -> SagaCommand {
        SagaCommand::Report { step, result }
    }

    fn to_run(view: &SagaView) -> Option<(Step, String)> {
        view.next.to_run()
    }

    fn running(view: &SagaView) -> Option<Step> {
        let last = view.attempt.as_ref()?.steps.last()?;
        last.ended.is_none().then_some(last.step)
    }

    fn may_fail(step: Step) -> bool {
        step.may_fail()
    }

    fn step_name(step: Step) -> &'static str {
        step.as_str()
    }
}

/// Starts, drives and resumes payment sagas; cheap to clone.
#[derive(Clone)]
pub struct Payments {
    driver: Driver<Saga, PaySteps>,
}

impl Payments {
    pub fn new(parts: PayParts) -> Payments {
        let (rt, sagas) = (parts.rt.clone(), parts.sagas.clone());
        Payments {
            driver: Driver::new(rt, sagas, PaySteps { parts }),
        }
    }

    pub fn sagas(&self) -> &Region<Saga> {
        self.driver.region()
    }

    /// Starts paying `order` (or answers the attempt already running with the same request),
    /// and drives it in the background.
    pub async fn pay(&self, order: OrderId, request: PayRequest) -> Result<SagaView, ApiError> {
        let id = order.to_string();
        let view = self
            .sagas()
            .ask(&id, SagaCommand::Pay(request), None)
            .await?;
        self.drive(order);
        Ok(view)
    }

    /// Starts refunding the confirmed payment of `order` (repeating it changes nothing), and
    /// drives it in the background.
    pub async fn refund(&self, order: &OrderView) -> Result<SagaView, ApiError> {
        let id: OrderId = order.id.parse().map_err(ApiError::internal)?;
        let view = self
            .sagas()
            .ask(&order.id, SagaCommand::Refund, None)
            .await?;
        self.drive(id);
        Ok(view)
    }

    /// Drives the saga of `order` in a task of its own, unless one already does.
    pub fn drive(&self, order: OrderId) {
        self.driver.drive(&order.to_string());
    }

    /// The saga of `order` once it has ended, or as it is after `wait` (still running, or
    /// paused until it is driven again).
    pub async fn wait_for_end(&self, order: OrderId, wait: Duration) -> Result<SagaView, ApiError> {
        self.driver.wait_for_end(&order.to_string(), wait).await
    }

    /// Drives every saga a previous run left unfinished.
    pub async fn resume_all(&self) -> anyhow::Result<usize> {
        self.driver.resume_all().await
    }
}

/// What each step of a payment saga does.
pub struct PaySteps {
    parts: PayParts,
}

impl Performer<Saga> for PaySteps {
    async fn perform(
        &self,
        id: &str,
        view: &SagaView,
        step: Step,
        key: &str,
    ) -> Result<Outcome, StepError> {
        let attempt = view.attempt.as_ref().expect("a step runs in an attempt");
        let order: OrderId = id.parse().map_err(|_| StepError::Retry("bad id".into()))?;
        let facts = || {
            attempt
                .facts
                .as_ref()
                .ok_or_else(|| StepError::Retry("the order is not known yet".into()))
        };
        let p = &self.parts;
        match step {
            Step::BeginPay => {
                let order_view = p.orders.ask(id, OrderCommand::BeginPay, None).await?;
                Ok(Outcome::Order(facts_of(&order_view)))
            }
            Step::RedeemCoupon => self.redeem_coupon(attempt, facts()?, id, key).await,
            Step::DebitPoints => {
                let facts = facts()?;
                let command = WalletCommand::Use {
                    amount: attempt.request.points,
                    description: Some(format!("order {id}")),
                    reference: Some(id.to_string()),
                };
                let user = facts.user_id.to_string();
                let owner = user.clone();
                let tx = keyed(
                    &p.idempotency,
                    &p.wallets,
                    &user,
                    command,
                    key,
                    move |reply| match reply {
                        WalletReply::Tx(tx) => parse_tx_id(&owner, &tx.id),
                        WalletReply::Wallet(_) => None,
                    },
                )
                .await?;
                let n = tx.ok_or_else(|| StepError::Retry("no transaction".into()))?;
                Ok(Outcome::Transaction(n))
            }
            Step::ChargeCard => self.charge(attempt, facts()?, key).await,
            Step::CommitUnits => {
                self.commit_units(facts()?, order, key).await?;
                Ok(Outcome::Done)
            }
            Step::Confirm => {
                let facts = facts()?;
                let paid = Paid {
                    discount: attempt.discount.unwrap_or(0),
                    points_used: attempt.request.points,
                    coupon_id: attempt.request.coupon_id.clone(),
                    payment_id: attempt.payment_id.clone(),
                };
                debug_assert!(facts.amount >= paid.discount + paid.points_used);
                p.orders.ask(id, OrderCommand::Confirm(paid), None).await?;
                Ok(Outcome::Done)
            }
            Step::RefundCard => self.refund_card(attempt, facts()?, key).await,
            Step::RestorePoints => {
                let facts = facts()?;
                let n = attempt
                    .points_tx
                    .ok_or_else(|| StepError::Retry("no transaction to cancel".into()))?;
                let user = facts.user_id.to_string();
                let command = WalletCommand::Cancel { n };
                let cancel = keyed(&p.idempotency, &p.wallets, &user, command, key, |_| ());
                match cancel.await {
                    Err(StepError::Definite(ErrorCode::Conflict, _)) | Ok(()) => Ok(Outcome::Done),
                    Err(error) => Err(error),
                }
            }
            Step::RestoreCoupon => {
                let (policy, n) = coupon_of(attempt)?;
                let command = CouponCommand::Cancel {
                    n,
                    by_user: facts()?.user_id.to_string(),
                    operator: true,
                };
                keyed(&p.idempotency, &p.coupons, &policy, command, key, |_| ()).await?;
                Ok(Outcome::Done)
            }
            Step::MarkFailed => {
                p.orders.ask(id, OrderCommand::MarkFailed, None).await?;
                Ok(Outcome::Done)
            }
            Step::BeginRefund => {
                p.orders.ask(id, OrderCommand::BeginRefund, None).await?;
                Ok(Outcome::Done)
            }
            Step::ReleaseUnits => {
                self.return_units(facts()?, order, key).await?;
                Ok(Outcome::Done)
            }
            Step::MarkRefunded => {
                p.orders.ask(id, OrderCommand::MarkRefunded, None).await?;
                Ok(Outcome::Done)
            }
        }
    }
}

impl PaySteps {
    async fn redeem_coupon(
        &self,
        attempt: &Attempt,
        facts: &OrderFacts,
        id: &str,
        key: &str,
    ) -> Result<Outcome, StepError> {
        let (policy, n) = coupon_of(attempt)?;
        let command = CouponCommand::Use {
            n,
            by_user: facts.user_id.to_string(),
            order_amount: facts.amount,
            reference: Some(id.to_string()),
        };
        let p = &self.parts;
        let discount = keyed(
            &p.idempotency,
            &p.coupons,
            &policy,
            command,
            key,
            |reply| match reply {
                CouponReply::Used(used) => Some(used.discount),
                _ => None,
            },
        )
        .await?;
        let discount = discount.ok_or_else(|| StepError::Retry("no discount".into()))?;
        Ok(Outcome::Discount(discount))
    }

    async fn charge(
        &self,
        attempt: &Attempt,
        facts: &OrderFacts,
        key: &str,
    ) -> Result<Outcome, StepError> {
        let amount = facts.amount - attempt.discount.unwrap_or(0) - attempt.request.points;
        let token = attempt.request.card_token.as_deref().unwrap_or_default();
        let gateway = &self.parts.gateway;
        match gateway.charge(amount, gateway.currency(), token, key).await {
            Ok(charged) => Ok(Outcome::Payment(charged.payment_id)),
            Err(error) => Err(gateway_failure(error)),
        }
    }

    async fn refund_card(
        &self,
        attempt: &Attempt,
        facts: &OrderFacts,
        key: &str,
    ) -> Result<Outcome, StepError> {
        // Undoing this attempt's charge, or refunding the payment a confirmed order took.
        let payment = attempt
            .payment_id
            .as_deref()
            .or(facts.payment_id.as_deref())
            .ok_or_else(|| StepError::Retry("no payment to refund".into()))?;
        let amount = match attempt.kind {
            SagaKind::Refund => facts.amount - facts.discount - facts.points,
            SagaKind::Pay => facts.amount - attempt.discount.unwrap_or(0) - attempt.request.points,
        };
        match self.parts.gateway.refund(payment, amount, key).await {
            Ok(_) => Ok(Outcome::Done),
            // A refund cannot fail for good: it is tried again until the gateway takes it.
            Err(error) => Err(StepError::Retry(error.to_string())),
        }
    }

    /// Commits the units the order reserved, wherever they are.
    async fn commit_units(
        &self,
        facts: &OrderFacts,
        order: OrderId,
        key: &str,
    ) -> Result<(), StepError> {
        let commands = HolderCommands {
            stock: &|_| StockCommand::Commit { order },
            sale: SaleCommand::Commit { order },
            seats: SeatCommand::Commit { order },
        };
        self.on_holders(facts, key, commands).await
    }

    /// Gives a refunded order's units back to where they were bought: an event order's seats
    /// (its items' refs) go back on sale, which also voids their tickets.
    async fn return_units(
        &self,
        facts: &OrderFacts,
        order: OrderId,
        key: &str,
    ) -> Result<(), StepError> {
        let commands = HolderCommands {
            stock: &|quantity| StockCommand::Return { order, quantity },
            sale: SaleCommand::Return {
                order,
                user_id: facts.user_id.clone(),
                quantity: facts.lines.iter().map(|(_, q)| q).sum(),
            },
            seats: SeatCommand::Return {
                order,
                seats: facts.lines.iter().map(|(seat, _)| seat.clone()).collect(),
            },
        };
        self.on_holders(facts, key, commands).await
    }

    /// Runs, keyed, the command of the entity that holds the order's units: one per line of a
    /// stock order (each line's key is the step's key and its SKU), else one.
    async fn on_holders(
        &self,
        facts: &OrderFacts,
        key: &str,
        commands: HolderCommands<'_>,
    ) -> Result<(), StepError> {
        let p = &self.parts;
        let source = &facts.source_id;
        match facts.source_kind {
            SourceKind::Stock => {
                for (sku, quantity) in &facts.lines {
                    let line_key = format!("{key}:{sku}");
                    let command = (commands.stock)(*quantity);
                    keyed(&p.idempotency, &p.stock, sku, command, &line_key, |_| ()).await?;
                }
                Ok(())
            }
            SourceKind::TimeSale => {
                keyed(&p.idempotency, &p.sales, source, commands.sale, key, |_| ()).await
            }
            SourceKind::Event => {
                keyed(
                    &p.idempotency,
                    &p.seats,
                    source,
                    commands.seats,
                    key,
                    |_| (),
                )
                .await
            }
        }
    }
}

/// One step's command for each kind of entity that may hold an order's units; a stock line's
/// is made from its quantity.
struct HolderCommands<'a> {
    stock: &'a (dyn Fn(i64) -> StockCommand + Sync),
    sale: SaleCommand,
    seats: SeatCommand,
}

fn coupon_of(attempt: &Attempt) -> Result<(String, u64), StepError> {
    let coupon = attempt.request.coupon_id.as_deref().unwrap_or_default();
    parse_coupon_id(coupon).ok_or_else(|| {
        StepError::Definite(ErrorCode::NotFound, format!("coupon {coupon} not found"))
    })
}

/// What a saga needs to know of the order it pays.
fn facts_of(order: &OrderView) -> OrderFacts {
    OrderFacts {
        user_id: order.user_id.clone(),
        amount: order.amount,
        source_kind: order.source.kind,
        source_id: order.source.id.clone(),
        lines: order
            .items
            .iter()
            .map(|i| (i.reference.clone(), i.quantity))
            .collect(),
        discount: order.discount,
        points: order.points_used,
        coupon_id: order.coupon_id.clone(),
        payment_id: order.payment_id.clone(),
    }
}
