//! The driver of payment sagas: it asks an order's [`Saga`] for its next step, performs it
//! against the other entities or the payment gateway, and reports the outcome, until the saga
//! ends. The saga decides; this only carries out.
//!
//! Every step is keyed: a call to another entity goes through an idempotency record (scope
//! [`SAGA_SCOPE`], the saga's step key) committed with that entity's events, and the gateway
//! dedupes on the same key; so a step run again after a crash, or after an answer that was
//! lost, takes effect once. What the saga has not journaled as ended is run again with the same
//! key, which replays the first outcome.
//!
//! Failures: a definite refusal of a step that may fail is reported, and the saga compensates.
//! An unknown outcome (a timeout, a gateway that may have charged) is never reported as a
//! failure, nor is a later try that could not even be sent (a step found running when a driver
//! starts, begun before a crash or by a driver that paused, counts as unknown from the start):
//! the step is retried with the same key, with backoff, up to
//! [`STEP_ATTEMPTS_MAX`] times; then the driver stops and the saga waits, `PAYING`, to be
//! driven again: every unfinished saga is resumed at start-up and every
//! [`RESUME_EVERY_SECS`] seconds after.

use std::sync::Arc;
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::actors::coupon_policy::{parse_coupon_id, CouponCommand, CouponPolicy, CouponReply};
use crate::actors::hosted::pay_saga::ROW_KIND;
use crate::actors::order::{Order, OrderCommand, OrderView, Paid, SourceKind};
use crate::actors::pay_saga::{
    Action, Attempt, OrderFacts, Outcome, PayRequest, Saga, SagaCommand, SagaKind, SagaView, Step,
};
use crate::actors::seat_map::{SeatCommand, SeatMap};
use crate::actors::stock_item::{StockCommand, StockItem};
use crate::actors::time_sale::{SaleCommand, TimeSale};
use crate::actors::wallet::{parse_tx_id, Wallet, WalletCommand, WalletReply};
use crate::actors::{Hosted, OrderId, SideWrites};
use crate::error::{ApiError, ErrorCode};
use crate::gateway::{Gateway, GatewayError};
use crate::persistence::idempotency::{Begin, Idempotency};
use crate::persistence::{Batch, IdempotencyRecord};
use crate::runtime::SharedRuntime;
use crate::supervisors::region::{Hold, Region};

/// The idempotency scope of saga steps: no user id has a `~`, so no request's key meets it.
pub const SAGA_SCOPE: &str = "~pay_saga";
/// Tries of one step whose outcome stays unknown before the driver stops for now.
const STEP_ATTEMPTS_MAX: u32 = 8;
/// The first wait between tries; it doubles, up to [`RETRY_WAIT_MAX_MS`].
const RETRY_WAIT_MS: u64 = 100;
const RETRY_WAIT_MAX_MS: u64 = 5_000;
/// Sagas resumed at start-up, at most, per page read.
const RESUME_PAGE: u32 = 500;
/// How often sagas that stopped for now (their step's outcome still unknown) are resumed.
pub const RESUME_EVERY_SECS: u64 = 5;

/// Why a step did not succeed.
#[derive(Debug)]
enum StepError {
    /// Refused for good: report it, the saga compensates.
    Definite(ErrorCode, String),
    /// Unknown or transient: try again with the same key.
    Retry(String),
}

impl From<ApiError> for StepError {
    fn from(error: ApiError) -> StepError {
        let transient = error.outcome_unknown
            || matches!(
                error.code,
                ErrorCode::Unavailable
                    | ErrorCode::Internal
                    | ErrorCode::IdempotencyInFlight
                    | ErrorCode::RateLimited
            );
        match transient {
            true => StepError::Retry(error.detail),
            false => StepError::Definite(error.code, error.detail),
        }
    }
}

/// What the driver does with a try of a step.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Journal it: the step succeeded, or failed for good.
    Report(Result<Outcome, (ErrorCode, String)>),
    /// Try again with the same key, whose outcome is unknown or may yet change.
    Retry(String),
}

/// The verdict on a try of `step`. `uncertain`: an earlier try of it may have taken effect
/// (its outcome was never known), so a later try that could not even be sent ("the gateway is
/// unavailable", nothing sent) proves nothing: failing the step then would leave a charge the
/// gateway took with no refund, since only a step known done is compensated. The same key
/// is tried again until the gateway answers what it did.
fn verdict(step: Step, tried: Result<Outcome, StepError>, uncertain: bool) -> Verdict {
    match tried {
        Ok(outcome) => Verdict::Report(Ok(outcome)),
        Err(StepError::Definite(ErrorCode::GatewayUnavailable, detail)) if uncertain => {
            Verdict::Retry(detail)
        }
        Err(StepError::Definite(code, detail)) if step.may_fail() => {
            Verdict::Report(Err((code, detail)))
        }
        Err(StepError::Definite(_, detail) | StepError::Retry(detail)) => Verdict::Retry(detail),
    }
}

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

/// Starts, drives and resumes payment sagas; cheap to clone.
#[derive(Clone)]
pub struct Payments {
    parts: Arc<PayParts>,
    /// Orders whose saga a driver task is running now: one driver per saga.
    driving: Arc<DashSet<String>>,
    /// Requests waiting for a saga to end (or pause), woken when its driver stops.
    waiters: Arc<DashMap<String, Arc<Notify>>>,
}

impl Payments {
    pub fn new(parts: PayParts) -> Payments {
        Payments {
            parts: Arc::new(parts),
            driving: Arc::new(DashSet::new()),
            waiters: Arc::new(DashMap::new()),
        }
    }

    pub fn sagas(&self) -> &Region<Saga> {
        &self.parts.sagas
    }

    /// Starts paying `order` (or answers the attempt already running with the same request),
    /// and drives it in the background.
    pub async fn pay(&self, order: OrderId, request: PayRequest) -> Result<SagaView, ApiError> {
        let id = order.to_string();
        let view = self
            .parts
            .sagas
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
            .parts
            .sagas
            .ask(&order.id, SagaCommand::Refund, None)
            .await?;
        self.drive(id);
        Ok(view)
    }

    /// Drives the saga of `order` in a task of its own, unless one already does.
    pub fn drive(&self, order: OrderId) {
        let id = order.to_string();
        if !self.driving.insert(id.clone()) {
            return;
        }
        let payments = self.clone();
        tokio::spawn(async move {
            if let Err(error) = payments.run(&id).await {
                tracing::warn!(order_id = %id, error = %error.detail, "payment saga paused; it resumes at the next start-up or pay");
            }
            payments.driving.remove(&id);
            if let Some((_, waiters)) = payments.waiters.remove(&id) {
                waiters.notify_waiters();
            }
        });
    }

    /// The saga of `order` once it has ended, or as it is after `wait` (still running, or
    /// paused until it is driven again).
    pub async fn wait_for_end(&self, order: OrderId, wait: Duration) -> Result<SagaView, ApiError> {
        let id = order.to_string();
        let notify = self.waiters.entry(id.clone()).or_default().clone();
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let view = self.parts.sagas.ask(&id, SagaCommand::Get, None).await?;
        if view.next == Action::Finished(view.status) || !self.driving.contains(&id) {
            return Ok(view);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.parts.sagas.ask(&id, SagaCommand::Get, None).await
    }

    /// Drives every saga a previous run left unfinished.
    pub async fn resume_all(&self) -> anyhow::Result<usize> {
        let mut resumed = 0;
        for status in ["RUNNING", "COMPENSATING"] {
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .parts
                    .rt
                    .store
                    .read_rows(ROW_KIND, None, Some(status), cursor.as_deref(), RESUME_PAGE)
                    .await?;
                for row in &page.rows {
                    if let Ok(order) = row.id.parse::<OrderId>() {
                        self.drive(order);
                        resumed += 1;
                    }
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(resumed)
    }

    async fn run(&self, id: &str) -> Result<(), ApiError> {
        let mut tries = 0;
        // Whether a try of the running step may have taken effect (see [`verdict`]). So may
        // the try of a step that an earlier driver started and never reported: the process
        // died while it ran (a charge the gateway took before the kill), or that driver paused.
        let current = self.parts.sagas.ask(id, SagaCommand::Get, None).await?;
        let mut uncertain = current
            .attempt
            .as_ref()
            .and_then(Attempt::running)
            .is_some();
        let mut view = self.parts.sagas.ask(id, SagaCommand::Next, None).await?;
        loop {
            let Action::Run { step, key } = view.next.clone() else {
                return Ok(());
            };
            let tried = self.perform(id, &view, step, &key).await;
            let result = match verdict(step, tried, uncertain) {
                Verdict::Report(result) => result,
                Verdict::Retry(detail) => {
                    uncertain = true;
                    tries += 1;
                    if tries >= STEP_ATTEMPTS_MAX {
                        return Err(ApiError::unavailable(format!(
                            "{} did not succeed in {tries} tries: {detail}",
                            step.as_str()
                        )));
                    }
                    self.wait(tries).await;
                    continue;
                }
            };
            (tries, uncertain) = (0, false);
            let report = SagaCommand::Report { step, result };
            // The reply hands out the next step, already started.
            view = self.parts.sagas.ask(id, report, None).await?;
        }
    }

    async fn wait(&self, tries: u32) {
        let wait_ms = (RETRY_WAIT_MS << tries.min(16)).min(RETRY_WAIT_MAX_MS);
        let jittered = wait_ms / 2 + rand::random::<u64>() % (wait_ms / 2 + 1);
        tokio::time::sleep(Duration::from_millis(jittered)).await;
    }

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
                    p,
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
                match keyed(p, &p.wallets, &user, command, key, |_| ()).await {
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
                keyed(p, &p.coupons, &policy, command, key, |_| ()).await?;
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
        let discount = keyed(p, &p.coupons, &policy, command, key, |reply| match reply {
            CouponReply::Used(used) => Some(used.discount),
            _ => None,
        })
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
                    keyed(p, &p.stock, sku, command, &line_key, |_| ()).await?;
                }
                Ok(())
            }
            SourceKind::TimeSale => keyed(p, &p.sales, source, commands.sale, key, |_| ()).await,
            SourceKind::Event => keyed(p, &p.seats, source, commands.seats, key, |_| ()).await,
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

/// Runs `command` on entity `id` of `region` once per `key`: the first time with an
/// idempotency record committed with its events, holding `render(reply)`; a repeat answers
/// that record.
async fn keyed<E, T, F>(
    parts: &PayParts,
    region: &Region<E>,
    id: &str,
    command: E::Command,
    key: &str,
    render: F,
) -> Result<T, StepError>
where
    E: Hosted,
    T: Serialize + DeserializeOwned,
    F: Fn(&E::Reply) -> T + Send + Sync + 'static,
{
    let begun = parts.idempotency.begin(SAGA_SCOPE, key, "saga").await?;
    let guard = match begun {
        Begin::Replay(record) => {
            return serde_json::from_slice(&record.body)
                .map_err(|e| StepError::Retry(format!("a stored outcome did not read: {e}")));
        }
        Begin::Fresh(guard) => guard,
    };
    let record_key = key.to_string();
    let render = Arc::new(render);
    let side_render = render.clone();
    let side: SideWrites<E> = Arc::new(move |reply: &E::Reply, now_ms: i64| {
        let body = serde_json::to_vec(&side_render(reply)).expect("outcomes serialise");
        let mut batch = Batch::default();
        batch.idempotency.push(IdempotencyRecord {
            scope: SAGA_SCOPE.to_string(),
            key: record_key.clone(),
            fingerprint: "saga".to_string(),
            status: 200,
            body,
            created_at_ms: now_ms,
        });
        batch
    });
    let mut hold: Option<Hold> = Some(Box::new(guard));
    let reply = region
        .ask_holding(id, command, Some(side), &mut hold)
        .await?;
    parts.idempotency.remember(SAGA_SCOPE, key);
    Ok(render(&reply))
}

fn gateway_failure(error: GatewayError) -> StepError {
    match error {
        GatewayError::Declined { reason } => {
            StepError::Definite(ErrorCode::PaymentDeclined, reason)
        }
        // Nothing was sent: the charge certainly did not happen, so the attempt may fail now
        // and the order go back to being payable.
        GatewayError::Unavailable {
            outcome_unknown: false,
            ..
        } => StepError::Definite(
            ErrorCode::GatewayUnavailable,
            "the payment gateway is unavailable".into(),
        ),
        GatewayError::Unavailable { .. } => {
            StepError::Retry("the gateway may have charged; asking again".into())
        }
        GatewayError::Rejected { status, detail } => StepError::Definite(
            ErrorCode::PaymentDeclined,
            format!("the gateway refused the charge ({status}): {detail}"),
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<Outcome, StepError> {
        Err(StepError::Definite(
            ErrorCode::GatewayUnavailable,
            "not sent".into(),
        ))
    }

    #[test]
    fn a_charge_not_sent_fails_only_when_no_earlier_try_may_have_charged() {
        let failed = Verdict::Report(Err((ErrorCode::GatewayUnavailable, "not sent".into())));
        assert_eq!(verdict(Step::ChargeCard, unavailable(), false), failed);
        // An earlier try (in this process, or in one killed while it ran) may have charged.
        assert_eq!(
            verdict(Step::ChargeCard, unavailable(), true),
            Verdict::Retry("not sent".into())
        );
    }

    #[test]
    fn a_decline_fails_the_charge_even_after_an_unknown_try() {
        // The gateway answers a key with its first outcome: a decline is the charge's outcome.
        let declined = || Err(StepError::Definite(ErrorCode::PaymentDeclined, "no".into()));
        let failed = Verdict::Report(Err((ErrorCode::PaymentDeclined, "no".into())));
        assert_eq!(verdict(Step::ChargeCard, declined(), true), failed);
        assert_eq!(verdict(Step::ChargeCard, declined(), false), failed);
    }

    #[test]
    fn steps_that_cannot_fail_are_retried_and_outcomes_reported() {
        for step in [Step::RefundCard, Step::Confirm, Step::MarkFailed] {
            assert_eq!(
                verdict(step, unavailable(), false),
                Verdict::Retry("not sent".into())
            );
        }
        let paid = Outcome::Payment("p-1".into());
        assert_eq!(
            verdict(Step::ChargeCard, Ok(paid.clone()), true),
            Verdict::Report(Ok(paid))
        );
    }
}
