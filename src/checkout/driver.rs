//! The driver of entities that are a sequence of steps carried out elsewhere: payment sagas
//! ([`super::pay`]) and points charges ([`super::charge`]). The entity decides which step runs
//! next and journals its start and outcome; a [`Driver`] asks it for the step, has a
//! [`Performer`] carry the step out against other entities or the payment gateway, and reports
//! the outcome, until the entity has ended. The entity decides; this only carries out.
//!
//! Every step is keyed: a call to another entity goes through an idempotency record (scope
//! [`SAGA_SCOPE`], the step's key) committed with that entity's events ([`keyed`]), and the
//! gateway dedupes on the same key; so a step run again after a crash, or after an answer that
//! was lost, takes effect once. What the entity has not journaled as ended is run again with
//! the same key, which replays the first outcome.
//!
//! Failures: a definite refusal of a step that may fail is reported, and the entity decides
//! what follows (compensation, or the end). An unknown outcome (a timeout, a gateway that may
//! have charged) is never reported as a failure: the step is retried with the same key, with
//! backoff, up to [`STEP_ATTEMPTS_MAX`] times; then the driver stops and the entity waits to be
//! driven again: every unfinished one is resumed at start-up and every [`RESUME_EVERY_SECS`]
//! seconds after. A step found running when a driver begins was started by one before it (in
//! a process that died, or a driver that stopped): it may have taken effect, so a gateway that
//! now cannot be called does not fail it either.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::actors::steps::StepResult;
use crate::actors::{Hosted, SideWrites};
use crate::error::{ApiError, ErrorCode};
use crate::gateway::GatewayError;
use crate::persistence::idempotency::{Begin, Idempotency};
use crate::persistence::{Batch, IdempotencyRecord};
use crate::runtime::SharedRuntime;
use crate::supervisors::region::{Hold, Region};

/// The idempotency scope of the steps' calls to other entities: no user id has a `~`, so no
/// request's key meets it. Keys of payment sagas (`{order}:{attempt}:{step}`) and of points
/// charges (`points_charge:{charge}:{step}`) never meet each other.
pub const SAGA_SCOPE: &str = "~pay_saga";
/// Tries of one step whose outcome stays unknown before the driver stops for now.
const STEP_ATTEMPTS_MAX: u32 = 8;
/// The first wait between tries; it doubles, up to [`RETRY_WAIT_MAX_MS`].
const RETRY_WAIT_MS: u64 = 100;
const RETRY_WAIT_MAX_MS: u64 = 5_000;
/// Entities resumed, at most, per page of read rows.
const RESUME_PAGE: u32 = 500;
/// How often entities that stopped for now (their step's outcome still unknown) are resumed.
pub const RESUME_EVERY_SECS: u64 = 5;

/// Why a step did not succeed.
#[derive(Debug)]
pub enum StepError {
    /// Refused for good: report it, the entity decides what follows.
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

/// An entity that a [`Driver`] runs step by step, through its own commands: `Next` starts the
/// next step (journaling its start) and answers it; a report journals the step's outcome and,
/// in the same decision, starts the step after it (one journal append per step), which its
/// reply hands out.
pub trait Stepped: Hosted {
    type Step: Copy + PartialEq + Send + Sync + 'static;
    type Outcome: Send + 'static;
    /// The kind of the read rows that list every entity of this kind with its status.
    const ROW_KIND: &'static str;
    /// The statuses of the rows of those that have not ended.
    const UNFINISHED: &'static [&'static str];

    fn next_command() -> Self::Command;
    fn get_command() -> Self::Command;
    fn report_command(step: Self::Step, result: StepResult<Self::Outcome>) -> Self::Command;
    /// The step to run now and its key; `None` once it has ended (or never started).
    fn to_run(reply: &Self::Reply) -> Option<(Self::Step, String)>;
    /// The step started and not yet ended, if any.
    fn running(reply: &Self::Reply) -> Option<Self::Step>;
    fn may_fail(step: Self::Step) -> bool;
    fn step_name(step: Self::Step) -> &'static str;
}

/// What carries out the steps of `E`.
pub trait Performer<E: Stepped>: Send + Sync + 'static {
    /// Runs `step` of entity `id`, as `view` shows it, with `key`.
    fn perform(
        &self,
        id: &str,
        view: &E::Reply,
        step: E::Step,
        key: &str,
    ) -> impl Future<Output = Result<E::Outcome, StepError>> + Send;
}

/// Starts, drives and resumes entities of kind `E`; cheap to clone.
pub struct Driver<E: Stepped, P> {
    rt: SharedRuntime,
    region: Region<E>,
    performer: Arc<P>,
    /// Entities a driver task is running now: one driver per entity.
    driving: Arc<DashSet<String>>,
    /// Requests waiting for an entity to end (or pause), woken when its driver stops.
    waiters: Arc<DashMap<String, Arc<Notify>>>,
}

impl<E: Stepped, P> Clone for Driver<E, P> {
    fn clone(&self) -> Self {
        Driver {
            rt: self.rt.clone(),
            region: self.region.clone(),
            performer: self.performer.clone(),
            driving: self.driving.clone(),
            waiters: self.waiters.clone(),
        }
    }
}

impl<E: Stepped, P: Performer<E>> Driver<E, P> {
    pub fn new(rt: SharedRuntime, region: Region<E>, performer: P) -> Driver<E, P> {
        Driver {
            rt,
            region,
            performer: Arc::new(performer),
            driving: Arc::new(DashSet::new()),
            waiters: Arc::new(DashMap::new()),
        }
    }

    pub fn region(&self) -> &Region<E> {
        &self.region
    }

    /// Drives entity `id` in a task of its own, unless one already does.
    pub fn drive(&self, id: &str) {
        if !self.driving.insert(id.to_string()) {
            return;
        }
        let (driver, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(error) = driver.run(&id).await {
                tracing::warn!(kind = E::KIND, %id, error = %error.detail,
                    "paused; it resumes within {RESUME_EVERY_SECS} s or at the next start-up");
            }
            driver.driving.remove(&id);
            if let Some((_, waiters)) = driver.waiters.remove(&id) {
                waiters.notify_waiters();
            }
        });
    }

    /// Entity `id` once it has ended, or as it is after `wait` (still running, or paused
    /// until it is driven again).
    pub async fn wait_for_end(&self, id: &str, wait: Duration) -> Result<E::Reply, ApiError> {
        let notify = self.waiters.entry(id.to_string()).or_default().clone();
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let view = self.region.ask(id, E::get_command(), None).await?;
        if E::to_run(&view).is_none() || !self.driving.contains(id) {
            return Ok(view);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.region.ask(id, E::get_command(), None).await
    }

    /// Drives every entity of the kind that has not ended, as its read row says.
    pub async fn resume_all(&self) -> anyhow::Result<usize> {
        let mut resumed = 0;
        for status in E::UNFINISHED {
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .rt
                    .store
                    .read_rows(
                        E::ROW_KIND,
                        None,
                        Some(status),
                        cursor.as_deref(),
                        RESUME_PAGE,
                    )
                    .await?;
                for row in &page.rows {
                    self.drive(&row.id);
                    resumed += 1;
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
        // A step running before this driver asks for one was started by an earlier driver.
        let before = self.region.ask(id, E::get_command(), None).await?;
        let mut tries = Tries {
            count: 0,
            uncertain: E::running(&before).is_some(),
        };
        let mut view = self.region.ask(id, E::next_command(), None).await?;
        loop {
            let Some((step, key)) = E::to_run(&view) else {
                return Ok(());
            };
            if E::running(&view) != Some(step) {
                // A step is journaled as started before it runs.
                view = self.region.ask(id, E::next_command(), None).await?;
                continue;
            }
            let result = self.performer.perform(id, &view, step, &key).await;
            let Some(result) = tries.settle(result, E::may_fail(step), E::step_name(step))? else {
                tries.wait().await;
                continue;
            };
            tries = Tries::default();
            // The reply hands out the next step, which the report has started.
            view = self
                .region
                .ask(id, E::report_command(step, result), None)
                .await?;
        }
    }
}

/// The tries of the step running now.
#[derive(Debug, Default)]
struct Tries {
    count: u32,
    /// A try whose outcome was not known: it may have taken effect, so the step must not be
    /// reported failed on a later try that merely could not be sent.
    uncertain: bool,
}

impl Tries {
    /// What to report of a try's `result`, or `None` to try again; an error once the tries
    /// have run out.
    fn settle<O>(
        &mut self,
        result: Result<O, StepError>,
        may_fail: bool,
        step_name: &str,
    ) -> Result<Option<StepResult<O>>, ApiError> {
        let result = match result {
            Err(StepError::Definite(ErrorCode::GatewayUnavailable, detail)) if self.uncertain => {
                Err(StepError::Retry(detail))
            }
            other => other,
        };
        match result {
            Ok(outcome) => Ok(Some(Ok(outcome))),
            Err(StepError::Definite(code, detail)) if may_fail => Ok(Some(Err((code, detail)))),
            Err(StepError::Definite(_, detail) | StepError::Retry(detail)) => {
                self.uncertain = true;
                self.count += 1;
                if self.count >= STEP_ATTEMPTS_MAX {
                    return Err(ApiError::unavailable(format!(
                        "{step_name} did not succeed in {} tries: {detail}",
                        self.count
                    )));
                }
                Ok(None)
            }
        }
    }

    /// Backs off before the next try: doubling, jittered.
    async fn wait(&self) {
        let wait_ms = (RETRY_WAIT_MS << self.count.min(16)).min(RETRY_WAIT_MAX_MS);
        let jittered = wait_ms / 2 + rand::random::<u64>() % (wait_ms / 2 + 1);
        tokio::time::sleep(Duration::from_millis(jittered)).await;
    }
}

/// Runs `command` on entity `id` of `region` once per `key`: the first time with an
/// idempotency record committed with its events, holding `render(reply)`; a repeat answers
/// that record.
pub(crate) async fn keyed<E, T, F>(
    idempotency: &Idempotency,
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
    let begun = idempotency.begin(SAGA_SCOPE, key, "saga").await?;
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
    idempotency.remember(SAGA_SCOPE, key);
    Ok(render(&reply))
}

/// A failed charge at the gateway, as a step's error.
pub(crate) fn gateway_failure(error: GatewayError) -> StepError {
    match error {
        GatewayError::Declined { reason } => {
            StepError::Definite(ErrorCode::PaymentDeclined, reason)
        }
        // Nothing was sent: the charge certainly did not happen, so the step may fail now.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn definite(code: ErrorCode) -> Result<(), StepError> {
        Err(StepError::Definite(code, "no".into()))
    }

    #[test]
    fn a_definite_refusal_of_a_step_that_may_fail_is_reported_at_once() {
        let mut tries = Tries::default();
        let settled = tries.settle(definite(ErrorCode::PaymentDeclined), true, "charge");
        let reported = settled.expect("not out of tries").expect("reported");
        assert_eq!(
            reported.map_err(|(code, _)| code),
            Err(ErrorCode::PaymentDeclined)
        );
    }

    #[test]
    fn a_decline_fails_the_step_even_after_a_try_whose_outcome_was_unknown() {
        // The gateway answers a key with its first outcome: a decline is the charge's outcome.
        let mut tries = Tries {
            count: 1,
            uncertain: true,
        };
        let settled = tries.settle(definite(ErrorCode::PaymentDeclined), true, "charge");
        assert!(matches!(
            settled,
            Ok(Some(Err((ErrorCode::PaymentDeclined, _))))
        ));
    }

    #[test]
    fn an_unreachable_gateway_fails_a_step_only_while_no_try_may_have_taken_effect() {
        let mut tries = Tries::default();
        let settled = tries.settle(definite(ErrorCode::GatewayUnavailable), true, "charge");
        assert!(
            matches!(settled, Ok(Some(Err(_)))),
            "nothing sent yet: it fails"
        );
        // A try found running when the driver began (or one that timed out) may have charged.
        let mut resumed = Tries {
            count: 0,
            uncertain: true,
        };
        let settled = resumed.settle(definite(ErrorCode::GatewayUnavailable), true, "charge");
        assert!(matches!(settled, Ok(None)), "tried again instead");
    }

    #[test]
    fn unknown_outcomes_are_tried_again_until_the_tries_run_out() {
        let mut tries = Tries::default();
        for _ in 1..STEP_ATTEMPTS_MAX {
            let settled = tries.settle::<()>(Err(StepError::Retry("lost".into())), true, "x");
            assert!(matches!(settled, Ok(None)));
        }
        let settled = tries.settle::<()>(Err(StepError::Retry("lost".into())), true, "x");
        assert_eq!(settled.map_err(|e| e.code), Err(ErrorCode::Unavailable));
        // A step that cannot fail is tried again even when refused.
        let mut tries = Tries::default();
        let settled = tries.settle(definite(ErrorCode::Conflict), false, "refund");
        assert!(matches!(settled, Ok(None)));
    }
}
