//! PointsCharge: points bought by card, from the card to the wallet, exactly once.
//!
//! Persistence id `points_charge:{charge_id}`: one entity per request to buy points. The server
//! derives the id from the caller and their Idempotency-Key (a new UUID without one), so a
//! retried request finds the charge it started. Like the payment saga (`pay_saga`), it only
//! decides: a driver on the runtime side asks [`ChargeCommand::Next`] for the step to run,
//! performs it against the payment gateway or the wallet, and reports the outcome. A step's
//! start is journaled before it runs (`StepStarted`), its outcome when reported (`StepDone`,
//! `StepFailed`, with the start of the step after it, which the report's reply hands out); a
//! charge running when the process died is resumed from its journal, its running step handed
//! out again with the same key ([`PointsCharge::step_key`]), which the other side dedupes, so it
//! takes effect once.
//!
//! Steps: `Charge` takes `amount` from the card at the payment gateway; `Credit` records it in
//! the wallet as a `CHARGE` transaction (through an idempotency record committed with the
//! wallet's event). A charge declined, or refused by a gateway that certainly took nothing,
//! ends `FAILED` with nothing credited. A credit the wallet refuses (the balance would pass its
//! bound) is compensated: `Refund` gives the money back at the gateway, then the charge ends
//! `FAILED`. `Refund` cannot fail for good: the driver retries it until the gateway takes it.
//! So money the gateway took always ends as points, or refunded.
//!
//! Starting a charge again with the same terms answers it as it is (with other terms: 422
//! `IDEMPOTENCY_KEY_REUSED`), except that a charge which ended because the gateway was
//! unavailable, having taken nothing, runs again with the same keys: the gateway answers a
//! key it did see with what it did the first time.
//!
//! Accepts: `Start`, `Next`, `Report`, `Get`.
//! Journals: `Started`, `StepStarted`, `StepDone`, `StepFailed`.
//!
//! # Invariants
//! - at most one step is running (started, outcome not yet journaled), and only once started;
//! - `Credit` starts only after `Charge` is done, `Refund` only after `Credit` failed;
//! - a payment id exists once `Charge` is done; a transaction, of `amount` points, once
//!   `Credit` is; a refund id once `Refund` is.

use serde::{Deserialize, Serialize};

use crate::steps::{judge_report, StepResult};
use crate::wallet::{TxKind, TxView};
use crate::{Ctx, Decision, Entity, ErrorCode, Rejection, UserId};

#[cfg(test)]
mod tests;

/// The longest card token taken, in characters.
pub const CARD_TOKEN_LEN_MAX: usize = 128;

/// The steps of a charge, in the order they may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Charge,
    Credit,
    Refund,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Charge => "charge",
            Step::Credit => "credit",
            Step::Refund => "refund",
        }
    }

    /// Steps that may fail definitely. `Refund` is retried by the driver until it succeeds.
    pub fn may_fail(self) -> bool {
        matches!(self, Step::Charge | Step::Credit)
    }
}

/// Who buys how many points, with which card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub user_id: UserId,
    pub amount: i64,
    pub card_token: String,
}

/// What a step that succeeded reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `Charge`: the gateway's payment id.
    Payment(String),
    /// `Credit`: the wallet's `CHARGE` transaction.
    Credited(TxView),
    /// `Refund`: the gateway's refund id.
    Refunded(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChargeStatus {
    /// Charging the card or crediting the wallet.
    Running,
    /// The credit was refused; the card is being refunded.
    Compensating,
    /// The points are in the wallet.
    Credited,
    /// Nothing was credited, and whatever the card paid is refunded.
    Failed,
}

/// The step that failed the charge, and why.
pub type Failure = crate::steps::Failure<Step>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub started_at_ms: i64,
    /// `None` while it runs.
    pub ended: Option<StepEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepEnd {
    Done { at_ms: i64 },
    Failed { at_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeCommand {
    /// Start the charge; the same terms again answer it as it is.
    Start(ChargeRequest),
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
pub enum ChargeEvent {
    Started {
        request: ChargeRequest,
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

/// What the driver must do next: run a step, or nothing once the charge has ended.
pub type Action = crate::steps::Action<Step, ChargeStatus>;

/// The charge as the driver, the HTTP edge, its read row and the console see it: its state,
/// its status and what runs next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeView {
    #[serde(flatten)]
    pub charge: PointsCharge,
    pub status: Option<ChargeStatus>,
    pub next: Action,
}

impl ChargeView {
    /// Whether the charge has ended: no step is left to run.
    pub fn has_ended(&self) -> bool {
        matches!(self.next, Action::Finished(_))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsCharge {
    pub charge_id: String,
    pub request: Option<ChargeRequest>,
    pub payment_id: Option<String>,
    pub transaction: Option<TxView>,
    pub refund_id: Option<String>,
    pub failure: Option<Failure>,
    /// The steps of the latest run.
    pub steps: Vec<StepRecord>,
    /// Runs started: more than one when the gateway was unavailable and it was started again.
    pub runs: u32,
    pub started_at_ms: i64,
    pub version: u64,
}

impl PointsCharge {
    /// The key of `step`: derived from the charge and the step alone, so a step run again (after
    /// a crash, or in a later run) is recognised by whoever it changed.
    pub fn step_key(&self, step: Step) -> String {
        format!("{}:{}:{}", Self::KIND, self.charge_id, step.as_str())
    }

    pub fn status(&self) -> Option<ChargeStatus> {
        self.request.as_ref()?;
        Some(match (&self.failure, self.plan_next()) {
            (None, Some(_)) => ChargeStatus::Running,
            (None, None) => ChargeStatus::Credited,
            (Some(_), Some(_)) => ChargeStatus::Compensating,
            (Some(_), None) => ChargeStatus::Failed,
        })
    }

    /// The step running now: started, its outcome not yet journaled.
    pub fn running(&self) -> Option<Step> {
        let last = self.steps.last()?;
        last.ended.is_none().then_some(last.step)
    }

    pub fn view(&self) -> ChargeView {
        ChargeView {
            charge: self.clone(),
            status: self.status(),
            next: self.next_action(),
        }
    }

    /// Whether starting it again with the same terms runs it again: it ended because the
    /// gateway could not be called, so the card was not charged.
    pub fn runs_again(&self) -> bool {
        self.status() == Some(ChargeStatus::Failed)
            && self
                .failure
                .as_ref()
                .is_some_and(|f| f.step == Step::Charge && f.code == ErrorCode::GatewayUnavailable)
    }

    fn done(&self, step: Step) -> bool {
        self.steps
            .iter()
            .any(|r| r.step == step && matches!(r.ended, Some(StepEnd::Done { .. })))
    }

    /// The next step after the ones run, or `None` once the charge has ended.
    fn plan_next(&self) -> Option<Step> {
        self.request.as_ref()?;
        let next = match &self.failure {
            None => [Step::Charge, Step::Credit]
                .into_iter()
                .find(|s| !self.done(*s)),
            Some(failure) if failure.step == Step::Credit => Some(Step::Refund),
            Some(_) => None,
        };
        next.filter(|s| !self.done(*s))
    }

    fn next_action(&self) -> Action {
        match self.running().or_else(|| self.plan_next()) {
            Some(step) => Action::Run {
                step,
                key: self.step_key(step),
            },
            None => Action::Finished(self.status()),
        }
    }

    fn accept(&self, event: ChargeEvent) -> Result<Decision<Self>, Rejection> {
        self.accept_all(vec![event])
    }

    fn accept_all(&self, events: Vec<ChargeEvent>) -> Result<Decision<Self>, Rejection> {
        let mut next = self.clone();
        events.iter().for_each(|e| next.apply(e));
        Ok(Decision {
            events,
            reply: next.view(),
        })
    }

    fn decide_start(
        &self,
        request: &ChargeRequest,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        validate_request(request)?;
        let start = ChargeEvent::Started {
            request: request.clone(),
            at_ms: ctx.now_ms,
        };
        match &self.request {
            None => self.accept(start),
            Some(first) if first != request => Err(Rejection::new(
                ErrorCode::IdempotencyKeyReused,
                format!("charge {} was started with other terms", self.charge_id),
            )),
            Some(_) if self.runs_again() => self.accept(start),
            Some(_) => Ok(Decision::reply(self.view())),
        }
    }

    fn decide_next(&self, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match (self.running(), self.plan_next()) {
            (None, Some(step)) => self.accept(ChargeEvent::StepStarted {
                step,
                at_ms: ctx.now_ms,
            }),
            _ => Ok(Decision::reply(self.view())),
        }
    }

    fn decide_report(
        &self,
        step: Step,
        result: &StepResult<Outcome>,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let check = |outcome: &Outcome| self.check_outcome(step, outcome);
        let name = step.as_str();
        let judged = judge_report(self.running(), step, name, step.may_fail(), result, check)?;
        let at_ms = ctx.now_ms;
        let event = match judged {
            // A report of a step already journaled (a retried report): nothing changes.
            None => return Ok(Decision::reply(self.view())),
            Some(Ok(outcome)) => ChargeEvent::StepDone {
                step,
                outcome,
                at_ms,
            },
            Some(Err((code, detail))) => ChargeEvent::StepFailed {
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
        events.extend(
            after
                .plan_next()
                .map(|step| ChargeEvent::StepStarted { step, at_ms }),
        );
        self.accept_all(events)
    }

    /// A success must say what its step is expected to say: a credit, the points charged.
    fn check_outcome(&self, step: Step, outcome: &Outcome) -> Result<(), Rejection> {
        let amount = self.request.as_ref().map(|r| r.amount);
        let fits = match (step, outcome) {
            (Step::Charge, Outcome::Payment(id)) | (Step::Refund, Outcome::Refunded(id)) => {
                !id.is_empty()
            }
            (Step::Credit, Outcome::Credited(tx)) => {
                tx.kind == TxKind::Charge && Some(tx.amount) == amount
            }
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

    fn start(&mut self, request: &ChargeRequest, at_ms: i64) {
        if self.request.is_none() {
            self.started_at_ms = at_ms;
        }
        // A run again starts from nothing done: the run before took nothing.
        self.request = Some(request.clone());
        self.steps.clear();
        self.failure = None;
        self.runs += 1;
    }

    fn end_step(&mut self, step: Step, end: StepEnd) {
        if let Some(record) = self.steps.iter_mut().rev().find(|r| r.step == step) {
            record.ended = Some(end);
        }
    }
}

/// What is wrong with `request`, every field of it, if anything.
pub fn validate_request(request: &ChargeRequest) -> Result<(), Rejection> {
    let mut errors = crate::FieldErrors::new();
    errors.check(
        (1..=crate::money::AMOUNT_MAX).contains(&request.amount),
        "amount",
        format!("must be 1 to {}", crate::money::AMOUNT_MAX),
    );
    errors.check(
        is_card_token(&request.card_token),
        "card_token",
        format!("must be 1 to {CARD_TOKEN_LEN_MAX} plain characters"),
    );
    errors.check(!request.user_id.is_empty(), "user_id", "must not be empty");
    errors.finish()
}

/// What a card token may be: 1 to [`CARD_TOKEN_LEN_MAX`] characters of plain text.
pub fn is_card_token(token: &str) -> bool {
    (1..=CARD_TOKEN_LEN_MAX).contains(&token.chars().count()) && crate::text::is_plain(token, false)
}

impl Entity for PointsCharge {
    const KIND: &'static str = "points_charge";
    const VERSION: u8 = 1;

    type Command = ChargeCommand;
    type Event = ChargeEvent;
    type Reply = ChargeView;

    fn blank(id: &str) -> Self {
        PointsCharge {
            charge_id: id.to_string(),
            ..PointsCharge::default()
        }
    }

    fn exists(&self) -> bool {
        self.request.is_some()
    }

    fn decide(&self, command: &ChargeCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match command {
            ChargeCommand::Start(request) => self.decide_start(request, ctx),
            ChargeCommand::Next => self.decide_next(ctx),
            ChargeCommand::Report { step, result } => self.decide_report(*step, result, ctx),
            ChargeCommand::Get => Ok(Decision::reply(self.view())),
        }
    }

    fn apply(&mut self, event: &ChargeEvent) {
        self.version += 1;
        match event {
            ChargeEvent::Started { request, at_ms } => self.start(request, *at_ms),
            ChargeEvent::StepStarted { step, at_ms } => self.steps.push(StepRecord {
                step: *step,
                started_at_ms: *at_ms,
                ended: None,
            }),
            ChargeEvent::StepDone {
                step,
                outcome,
                at_ms,
            } => {
                self.end_step(*step, StepEnd::Done { at_ms: *at_ms });
                match outcome {
                    Outcome::Payment(id) => self.payment_id = Some(id.clone()),
                    Outcome::Credited(tx) => self.transaction = Some(tx.clone()),
                    Outcome::Refunded(id) => self.refund_id = Some(id.clone()),
                }
            }
            ChargeEvent::StepFailed {
                step,
                code,
                detail,
                at_ms,
            } => {
                self.end_step(*step, StepEnd::Failed { at_ms: *at_ms });
                self.failure = Some(Failure {
                    step: *step,
                    code: *code,
                    detail: detail.clone(),
                });
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let running = self.steps.iter().filter(|r| r.ended.is_none()).count();
        if running > 1 || (running > 0 && self.request.is_none()) {
            return Err(format!("{running} steps running"));
        }
        let started = |step: Step| self.steps.iter().any(|r| r.step == step);
        if started(Step::Credit) && !self.done(Step::Charge) {
            return Err("credit started before the charge was done".into());
        }
        let credit_failed = self
            .failure
            .as_ref()
            .is_some_and(|f| f.step == Step::Credit);
        if started(Step::Refund) && !credit_failed {
            return Err("refund started without a refused credit".into());
        }
        let amount = self.request.as_ref().map(|r| r.amount);
        let outcomes = [
            (Step::Charge, self.payment_id.is_some()),
            (
                Step::Credit,
                self.transaction.as_ref().map(|t| t.amount) == amount,
            ),
            (Step::Refund, self.refund_id.is_some()),
        ];
        if let Some((step, _)) = outcomes.iter().find(|(s, has)| self.done(*s) && !has) {
            return Err(format!("{} done without its outcome", step.as_str()));
        }
        Ok(())
    }
}
