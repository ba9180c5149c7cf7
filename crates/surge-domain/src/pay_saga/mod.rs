//! PaySaga: paying for one order, or refunding it, one step at a time.
//!
//! Persistence id `pay_saga:{order_id}`: one saga per order, which runs its attempts to pay
//! and, once paid, its refund. The saga only decides; a driver on the runtime side performs
//! each step against the other entities and the payment gateway, then reports the outcome.
//! The driver asks [`SagaCommand::Next`]: the first time a step is handed out its start is
//! journaled (`StepStarted`), and its outcome is journaled when reported (`StepDone`,
//! `StepFailed`), together with the start of the step after it, which the report's reply
//! hands out. A saga that was running when the process died is resumed from its journal:
//! a step started but never reported is handed out again with the same key
//! ([`Saga::step_key`]), which the other side dedupes, so it takes effect once.
//!
//! Paying runs `BeginPay` (the order becomes `PAYING`, or the attempt ends at once if the order
//! cannot be paid), `RedeemCoupon`, `DebitPoints`, `ChargeCard`, `CommitUnits` and `Confirm`,
//! skipping the steps with nothing to do. A step that fails definitely is compensated: the
//! steps done are undone in reverse (`RefundCard`, `RestorePoints`, `RestoreCoupon`), then
//! `MarkFailed` ends the order `PAYMENT_FAILED`; a new attempt may start. Compensations and
//! `Confirm`/`MarkFailed` cannot fail definitely: the driver retries them until they succeed.
//! Refunding a confirmed order runs `BeginRefund`, `RefundCard`, `RestorePoints`,
//! `RestoreCoupon`, `ReleaseUnits` and `MarkRefunded`.
//!
//! Amounts (docs/API.md): `discount` comes from the coupon, `points_used <= amount - discount`,
//! `card_amount = amount - discount - points_used`, which must be 0 without a card token;
//! checked once the coupon's discount is known, before any point or card is touched.
//!
//! # Invariants
//! - at most one step is running (started, outcome not yet journaled);
//! - the current attempt is the last one started;
//! - a compensation runs only for a forward step that is done, and each runs once;
//! - `card_amount = amount - discount - points >= 0` once the discount is known.

use serde::{Deserialize, Serialize};

use crate::order::SourceKind;
use crate::steps::{judge_report, StepResult};
use crate::{Ctx, Decision, Entity, ErrorCode, Rejection, UserId};

#[cfg(test)]
mod tests;

/// The steps of paying and refunding. The order of the variants is the order they run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    BeginPay,
    RedeemCoupon,
    DebitPoints,
    ChargeCard,
    CommitUnits,
    Confirm,
    RefundCard,
    RestorePoints,
    RestoreCoupon,
    MarkFailed,
    BeginRefund,
    ReleaseUnits,
    MarkRefunded,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::BeginPay => "begin_pay",
            Step::RedeemCoupon => "redeem_coupon",
            Step::DebitPoints => "debit_points",
            Step::ChargeCard => "charge_card",
            Step::CommitUnits => "commit_units",
            Step::Confirm => "confirm",
            Step::RefundCard => "refund_card",
            Step::RestorePoints => "restore_points",
            Step::RestoreCoupon => "restore_coupon",
            Step::MarkFailed => "mark_failed",
            Step::BeginRefund => "begin_refund",
            Step::ReleaseUnits => "release_units",
            Step::MarkRefunded => "mark_refunded",
        }
    }

    /// The step that undoes this one when a later step fails, if it changed anything outside
    /// the order.
    fn compensation(self) -> Option<Step> {
        match self {
            Step::RedeemCoupon => Some(Step::RestoreCoupon),
            Step::DebitPoints => Some(Step::RestorePoints),
            Step::ChargeCard => Some(Step::RefundCard),
            _ => None,
        }
    }

    /// Steps that may fail definitely, which ends or compensates the attempt. The others are
    /// retried by the driver until they succeed.
    pub fn may_fail(self) -> bool {
        matches!(
            self,
            Step::BeginPay
                | Step::RedeemCoupon
                | Step::DebitPoints
                | Step::ChargeCard
                | Step::CommitUnits
                | Step::BeginRefund
        )
    }
}

/// What a customer asked to pay with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    pub coupon_id: Option<String>,
    pub points: i64,
    pub card_token: Option<String>,
}

/// What `BeginPay` (or `BeginRefund`) learned of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub user_id: UserId,
    pub amount: i64,
    pub source_kind: SourceKind,
    pub source_id: String,
    /// The items' references and quantities: the lines of a stock order commit (and return)
    /// one by one.
    pub lines: Vec<(String, i64)>,
    /// A refund's: what the payment took.
    pub discount: i64,
    pub points: i64,
    pub coupon_id: Option<String>,
    pub payment_id: Option<String>,
}

/// What a step that succeeded reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The step had nothing to report.
    Done,
    /// `BeginPay` / `BeginRefund`.
    Order(OrderFacts),
    /// `RedeemCoupon`: the discount the coupon gives this order.
    Discount(i64),
    /// `ChargeCard`: the gateway's payment id.
    Payment(String),
    /// `DebitPoints`: the number of the wallet transaction that took them, which undoing
    /// cancels.
    Transaction(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaKind {
    Pay,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaStatus {
    /// Forward steps are running.
    Running,
    /// A step failed; the steps done are being undone.
    Compensating,
    Confirmed,
    Failed,
    Refunded,
}

/// The step that failed an attempt, and why.
pub type Failure = crate::steps::Failure<Step>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub started_at_ms: i64,
    /// `None` while it runs.
    pub ended: Option<StepEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepEnd {
    Done { outcome: Outcome, at_ms: i64 },
    Failed { at_ms: i64 },
}

/// One attempt to pay, or the refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub kind: SagaKind,
    pub number: u32,
    pub request: PayRequest,
    pub facts: Option<OrderFacts>,
    pub discount: Option<i64>,
    pub payment_id: Option<String>,
    pub points_tx: Option<u64>,
    pub steps: Vec<StepRecord>,
    pub failure: Option<Failure>,
    pub started_at_ms: i64,
}

impl Attempt {
    /// The step running now: started, its outcome not yet journaled. Seen by a driver before
    /// it asks for the next step, it was started by an earlier one (before a crash, or one
    /// that paused), so it may have taken effect.
    pub fn running(&self) -> Option<Step> {
        let last = self.steps.last()?;
        last.ended.is_none().then_some(last.step)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaCommand {
    /// Start an attempt to pay. Refused while another attempt runs or once paid.
    Pay(PayRequest),
    /// Start refunding a confirmed payment. Repeating it while it runs changes nothing.
    Refund,
    /// The next step to run: journals its start the first time it is handed out.
    Next,
    /// The outcome of the running step.
    Report {
        step: Step,
        result: StepResult<Outcome>,
    },
    Get,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaEvent {
    Started {
        kind: SagaKind,
        request: PayRequest,
        at_ms: i64,
    },
    StepStarted {
        step: Step,
        at_ms: i64,
    },
    StepDone {
        step: Step,
        outcome: Outcome,
        at_ms: i64,
    },
    StepFailed {
        step: Step,
        code: ErrorCode,
        detail: String,
        at_ms: i64,
    },
}

/// What the driver must do next: run a step, or nothing once the saga has ended.
pub type Action = crate::steps::Action<Step, SagaStatus>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaView {
    pub order_id: String,
    pub status: Option<SagaStatus>,
    pub attempt: Option<Attempt>,
    pub next: Action,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub order_id: String,
    pub attempt: Option<Attempt>,
    /// Attempts started, so keys of a new attempt never match an old one's.
    pub attempts: u32,
    pub version: u64,
}

impl Saga {
    /// The key of `step` in the current attempt: derived from the order, the attempt and the
    /// step, so a step run again after a crash is recognised by whoever it changed.
    pub fn step_key(&self, step: Step) -> String {
        let number = self.attempt.as_ref().map_or(0, |a| a.number);
        format!("{}:{number}:{}", self.order_id, step.as_str())
    }

    pub fn status(&self) -> Option<SagaStatus> {
        let attempt = self.attempt.as_ref()?;
        Some(status_of(attempt, self.plan_next(attempt)))
    }

    /// The amount the card pays, once the discount is known.
    pub fn card_amount(&self) -> Option<i64> {
        let attempt = self.attempt.as_ref()?;
        let facts = attempt.facts.as_ref()?;
        Some(facts.amount - attempt.discount? - attempt.request.points)
    }

    /// The step running now: started, its outcome not yet journaled.
    pub fn running(&self) -> Option<Step> {
        self.attempt.as_ref()?.running()
    }

    pub fn view(&self) -> SagaView {
        SagaView {
            order_id: self.order_id.clone(),
            status: self.status(),
            attempt: self.attempt.clone(),
            next: self.next_action(),
        }
    }

    fn next_action(&self) -> Action {
        let Some(attempt) = &self.attempt else {
            return Action::Finished(None);
        };
        if let Some(step) = self.running() {
            return Action::Run {
                step,
                key: self.step_key(step),
            };
        }
        match self.plan_next(attempt) {
            Some(step) => Action::Run {
                step,
                key: self.step_key(step),
            },
            None => Action::Finished(self.status()),
        }
    }

    /// The next step of `attempt` after the ones it has run, or `None` when it has ended.
    fn plan_next(&self, attempt: &Attempt) -> Option<Step> {
        let done = |step: Step| attempt.steps.iter().any(|r| r.step == step && is_done(r));
        if attempt.failure.is_some() {
            return compensation_plan(attempt)
                .into_iter()
                .find(|s| !done(*s))
                .or_else(|| {
                    let begun = done(Step::BeginPay) || done(Step::BeginRefund);
                    (begun && !done(Step::MarkFailed)).then_some(Step::MarkFailed)
                });
        }
        forward_plan(attempt).into_iter().find(|s| !done(*s))
    }

    fn accept(&self, events: Vec<SagaEvent>) -> Result<Decision<Self>, Rejection> {
        let mut next = self.clone();
        events.iter().for_each(|e| next.apply(e));
        Ok(Decision {
            events,
            reply: next.view(),
        })
    }

    fn decide_pay(&self, request: &PayRequest, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        validate_request(request)?;
        match self.status() {
            None | Some(SagaStatus::Failed) => self.accept(vec![SagaEvent::Started {
                kind: SagaKind::Pay,
                request: request.clone(),
                at_ms: ctx.now_ms,
            }]),
            Some(SagaStatus::Running | SagaStatus::Compensating)
                if self.attempt.as_ref().is_some_and(|a| a.request == *request) =>
            {
                Ok(Decision::reply(self.view()))
            }
            Some(status) => Err(Rejection::new(
                ErrorCode::OrderNotPayable,
                format!("its payment is {status:?}"),
            )),
        }
    }

    fn decide_refund(&self, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let attempt = self.attempt.as_ref();
        match (self.status(), attempt.map(|a| a.kind)) {
            (Some(SagaStatus::Confirmed), Some(SagaKind::Pay)) => {
                let request = attempt.expect("confirmed").request.clone();
                self.accept(vec![SagaEvent::Started {
                    kind: SagaKind::Refund,
                    request,
                    at_ms: ctx.now_ms,
                }])
            }
            (_, Some(SagaKind::Refund)) => Ok(Decision::reply(self.view())),
            _ => Err(Rejection::new(
                ErrorCode::Conflict,
                "only a confirmed payment can be refunded",
            )),
        }
    }

    fn decide_next(&self, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match self.next_action() {
            Action::Run { step, .. } if self.running().is_none() => {
                self.accept(vec![SagaEvent::StepStarted {
                    step,
                    at_ms: ctx.now_ms,
                }])
            }
            _ => Ok(Decision::reply(self.view())),
        }
    }

    fn decide_report(
        &self,
        step: Step,
        result: &StepResult<Outcome>,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let judged = judge_report(
            self.running(),
            step,
            step.as_str(),
            step.may_fail(),
            result,
            |outcome| check_outcome(step, outcome),
        )?;
        let at_ms = ctx.now_ms;
        let event = match judged {
            // A report of a step already journaled (a retried report): nothing changes.
            None => return Ok(Decision::reply(self.view())),
            Some(Ok(outcome)) => SagaEvent::StepDone {
                step,
                outcome,
                at_ms,
            },
            Some(Err((code, detail))) => SagaEvent::StepFailed {
                step,
                code,
                detail,
                at_ms,
            },
        };
        // The next step starts in the same decision, one journal append instead of two: the
        // driver takes the reply's `next` and runs it.
        let mut after = self.clone();
        after.apply(&event);
        let mut events = vec![event];
        if let Action::Run { step, .. } = after.next_action() {
            events.push(SagaEvent::StepStarted { step, at_ms });
        }
        self.accept(events)
    }
}

/// What is wrong with paying `amount` less `discount` as `request` asks, if anything.
pub fn amounts_problem(amount: i64, discount: i64, request: &PayRequest) -> Option<String> {
    let due = amount - discount;
    if request.points > due {
        return Some(format!(
            "points {} exceed the {due} due after the discount",
            request.points
        ));
    }
    let card_amount = due - request.points;
    if card_amount > 0 && request.card_token.is_none() {
        return Some(format!(
            "{card_amount} remain to pay and no card_token was given"
        ));
    }
    None
}

fn validate_request(request: &PayRequest) -> Result<(), Rejection> {
    let mut errors = crate::FieldErrors::new();
    errors.check(
        (0..=crate::money::AMOUNT_MAX).contains(&request.points),
        "points",
        format!("must be 0 to {}", crate::money::AMOUNT_MAX),
    );
    let token_ok = request
        .card_token
        .as_deref()
        .is_none_or(|t| (1..=128).contains(&t.len()) && crate::text::is_plain(t, false));
    errors.check(token_ok, "card_token", "must be 1 to 128 plain characters");
    errors.finish()
}

/// A success must say what its step is expected to say.
fn check_outcome(step: Step, outcome: &Outcome) -> Result<(), Rejection> {
    let fits = match (step, outcome) {
        (Step::BeginPay | Step::BeginRefund, Outcome::Order(_)) => true,
        (Step::BeginRefund, Outcome::Done) => true,
        (Step::RedeemCoupon, Outcome::Discount(d)) => *d >= 0,
        (Step::ChargeCard, Outcome::Payment(_)) => true,
        (Step::DebitPoints, Outcome::Transaction(_)) => true,
        (
            Step::BeginPay
            | Step::BeginRefund
            | Step::RedeemCoupon
            | Step::ChargeCard
            | Step::DebitPoints,
            _,
        ) => false,
        (_, Outcome::Done) => true,
        _ => false,
    };
    match fits {
        true => Ok(()),
        false => Err(Rejection::validation(
            "outcome",
            format!("{} does not report {outcome:?}", step.as_str()),
        )),
    }
}

fn is_done(record: &StepRecord) -> bool {
    matches!(record.ended, Some(StepEnd::Done { .. }))
}

/// The forward steps of an attempt, given what it has learned so far.
fn forward_plan(attempt: &Attempt) -> Vec<Step> {
    let request = &attempt.request;
    match attempt.kind {
        SagaKind::Pay => {
            let card = match (&attempt.facts, attempt.discount) {
                (Some(facts), Some(discount)) => facts.amount - discount - request.points > 0,
                _ => request.card_token.is_some(),
            };
            let mut plan = vec![Step::BeginPay];
            plan.extend(request.coupon_id.as_ref().map(|_| Step::RedeemCoupon));
            plan.extend((request.points > 0).then_some(Step::DebitPoints));
            plan.extend(card.then_some(Step::ChargeCard));
            plan.extend([Step::CommitUnits, Step::Confirm]);
            plan
        }
        SagaKind::Refund => {
            let facts = attempt.facts.as_ref();
            let mut plan = vec![Step::BeginRefund];
            plan.extend(
                facts
                    .and_then(|f| f.payment_id.as_ref())
                    .map(|_| Step::RefundCard),
            );
            plan.extend(
                facts
                    .is_some_and(|f| f.points > 0)
                    .then_some(Step::RestorePoints),
            );
            plan.extend(
                facts
                    .and_then(|f| f.coupon_id.as_ref())
                    .map(|_| Step::RestoreCoupon),
            );
            plan.extend([Step::ReleaseUnits, Step::MarkRefunded]);
            plan
        }
    }
}

/// The compensations of a failed attempt: the steps done, undone in reverse.
fn compensation_plan(attempt: &Attempt) -> Vec<Step> {
    attempt
        .steps
        .iter()
        .rev()
        .filter(|r| is_done(r))
        .filter_map(|r| r.step.compensation())
        .collect()
}

fn status_of(attempt: &Attempt, next: Option<Step>) -> SagaStatus {
    match (attempt.kind, &attempt.failure, next) {
        (_, Some(_), Some(_)) => SagaStatus::Compensating,
        (_, Some(_), None) => SagaStatus::Failed,
        (SagaKind::Pay, None, None) => SagaStatus::Confirmed,
        (SagaKind::Refund, None, None) => SagaStatus::Refunded,
        (_, None, Some(_)) => SagaStatus::Running,
    }
}

impl Entity for Saga {
    const KIND: &'static str = "pay_saga";
    const VERSION: u8 = 1;

    type Command = SagaCommand;
    type Event = SagaEvent;
    type Reply = SagaView;

    fn blank(id: &str) -> Self {
        Saga {
            order_id: id.to_string(),
            ..Saga::default()
        }
    }

    fn exists(&self) -> bool {
        self.attempt.is_some()
    }

    fn decide(&self, command: &SagaCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match command {
            SagaCommand::Pay(request) => self.decide_pay(request, ctx),
            SagaCommand::Refund => self.decide_refund(ctx),
            SagaCommand::Next => self.decide_next(ctx),
            SagaCommand::Report { step, result } => self.decide_report(*step, result, ctx),
            SagaCommand::Get => Ok(Decision::reply(self.view())),
        }
    }

    fn apply(&mut self, event: &SagaEvent) {
        self.version += 1;
        match event {
            SagaEvent::Started {
                kind,
                request,
                at_ms,
            } => self.start(*kind, request, *at_ms),
            SagaEvent::StepStarted { step, at_ms } => {
                let attempt = self.attempt.as_mut().expect("a step runs in an attempt");
                attempt.steps.push(StepRecord {
                    step: *step,
                    started_at_ms: *at_ms,
                    ended: None,
                });
            }
            SagaEvent::StepDone {
                step,
                outcome,
                at_ms,
            } => self.step_done(*step, outcome, *at_ms),
            SagaEvent::StepFailed {
                step,
                code,
                detail,
                at_ms,
            } => {
                let attempt = self.attempt.as_mut().expect("a step runs in an attempt");
                if let Some(record) = attempt.steps.iter_mut().rev().find(|r| r.step == *step) {
                    record.ended = Some(StepEnd::Failed { at_ms: *at_ms });
                }
                attempt.failure = Some(Failure {
                    step: *step,
                    code: *code,
                    detail: detail.clone(),
                });
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let Some(attempt) = &self.attempt else {
            return Ok(());
        };
        let running = attempt.steps.iter().filter(|r| r.ended.is_none()).count();
        if running > 1 {
            return Err(format!("{running} steps running at once"));
        }
        if attempt.number != self.attempts {
            return Err("the attempt is not the last one started".into());
        }
        let mut compensations: Vec<Step> = attempt
            .steps
            .iter()
            .filter(|r| {
                matches!(
                    r.step,
                    Step::RefundCard | Step::RestorePoints | Step::RestoreCoupon
                )
            })
            .filter(|_| attempt.kind == SagaKind::Pay)
            .map(|r| r.step)
            .collect();
        let count = compensations.len();
        compensations.dedup();
        if compensations.len() != count {
            return Err("a compensation ran twice".into());
        }
        if self.card_amount().is_some_and(|c| c < 0) && attempt.failure.is_none() {
            return Err("card_amount below 0".into());
        }
        Ok(())
    }
}

impl Saga {
    fn start(&mut self, kind: SagaKind, request: &PayRequest, at_ms: i64) {
        self.attempts += 1;
        // A refund carries over what the payment learned of the order.
        let facts = match kind {
            SagaKind::Refund => self
                .attempt
                .as_ref()
                .and_then(|a| a.facts.clone())
                .map(|f| {
                    let paid = self.attempt.as_ref().expect("a confirmed payment");
                    OrderFacts {
                        discount: paid.discount.unwrap_or(0),
                        points: paid.request.points,
                        coupon_id: paid.request.coupon_id.clone(),
                        payment_id: paid.payment_id.clone(),
                        ..f
                    }
                }),
            SagaKind::Pay => None,
        };
        self.attempt = Some(Attempt {
            kind,
            number: self.attempts,
            request: request.clone(),
            facts,
            discount: None,
            payment_id: None,
            points_tx: self.attempt.as_ref().and_then(|a| a.points_tx),
            steps: Vec::new(),
            failure: None,
            started_at_ms: at_ms,
        });
    }

    fn step_done(&mut self, step: Step, outcome: &Outcome, at_ms: i64) {
        let attempt = self.attempt.as_mut().expect("a step runs in an attempt");
        if let Some(record) = attempt.steps.iter_mut().rev().find(|r| r.step == step) {
            record.ended = Some(StepEnd::Done {
                outcome: outcome.clone(),
                at_ms,
            });
        }
        match outcome {
            Outcome::Order(facts) if step == Step::BeginPay => {
                if attempt.request.coupon_id.is_none() {
                    attempt.discount = Some(0);
                }
                attempt.facts = Some(facts.clone());
            }
            Outcome::Discount(discount) => attempt.discount = Some(*discount),
            Outcome::Payment(id) => attempt.payment_id = Some(id.clone()),
            Outcome::Transaction(n) => attempt.points_tx = Some(*n),
            _ => {}
        }
        // Once the discount is known the amounts asked for must add up, else the attempt fails
        // here, before any point or card is touched; the step itself stays done (a redeemed
        // coupon is given back). Derived in `apply`, so a replay decides the same.
        if matches!(step, Step::BeginPay | Step::RedeemCoupon) {
            let amount = attempt.facts.as_ref().map(|f| f.amount);
            let problem = amount
                .zip(attempt.discount)
                .and_then(|(amount, discount)| amounts_problem(amount, discount, &attempt.request));
            if let Some(detail) = problem {
                attempt.failure = Some(Failure {
                    step,
                    code: ErrorCode::ValidationFailed,
                    detail,
                });
            }
        }
    }
}
