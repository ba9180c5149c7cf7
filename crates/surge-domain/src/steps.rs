//! What entities that journal steps carried out elsewhere share (the payment saga, the points
//! charge): the driver asks for the next step and is told an [`Action`]; it reports each
//! step's outcome, which [`judge_report`] turns into what to journal; a step that failed for
//! good leaves a [`Failure`].

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Rejection};

/// What the driver must do next, in an entity whose steps are `S` and statuses `St`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action<S, St> {
    /// Run `step` with `key`, which the other side dedupes on.
    Run { step: S, key: String },
    /// Nothing: it has ended (or never started).
    Finished(Option<St>),
}

impl<S: Copy, St> Action<S, St> {
    /// The step to run and its key; `None` once it has ended.
    pub fn to_run(&self) -> Option<(S, String)> {
        match self {
            Action::Run { step, key } => Some((*step, key.clone())),
            Action::Finished(_) => None,
        }
    }
}

/// A step that failed for good, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure<S> {
    pub step: S,
    pub code: ErrorCode,
    pub detail: String,
}

/// A step's outcome as its driver reports it: what it did, or why it was refused.
pub type StepResult<O> = Result<O, (ErrorCode, String)>;

/// What a report of `step` journals: `None` when `step` is not the one `running` (a report
/// repeated after its outcome was journaled changes nothing); the outcome when `check` finds
/// that it fits the step; the refusal when the step `may_fail`. A step that may not fail is
/// never journaled failed: the report is refused, and the driver tries the step again.
pub fn judge_report<S: PartialEq, O: Clone>(
    running: Option<S>,
    step: S,
    step_name: &str,
    may_fail: bool,
    result: &StepResult<O>,
    check: impl FnOnce(&O) -> Result<(), Rejection>,
) -> Result<Option<StepResult<O>>, Rejection> {
    if running.as_ref() != Some(&step) {
        return Ok(None);
    }
    match result {
        Ok(outcome) => check(outcome).map(|()| Some(Ok(outcome.clone()))),
        Err(refusal) if may_fail => Ok(Some(Err(refusal.clone()))),
        Err((code, detail)) => Err(Rejection::new(
            ErrorCode::Conflict,
            format!("{step_name} cannot fail; retry it ({code:?}: {detail})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(running: Option<u8>, may_fail: bool, result: StepResult<i64>) -> Option<ErrorCode> {
        let judged = judge_report(running, 1, "one", may_fail, &result, |n| match *n >= 0 {
            true => Ok(()),
            false => Err(Rejection::validation("outcome", "negative")),
        });
        judged.err().map(|rejection| rejection.code)
    }

    #[test]
    fn only_the_running_step_is_judged_and_its_outcome_must_fit() {
        assert_eq!(
            judge_report(Some(2u8), 1, "one", true, &Ok(5), |_| Ok(())),
            Ok(None),
            "a repeated report changes nothing"
        );
        assert_eq!(judge(Some(1), true, Ok(5)), None);
        assert_eq!(
            judge(Some(1), true, Ok(-5)),
            Some(ErrorCode::ValidationFailed)
        );
    }

    #[test]
    fn a_refusal_fails_only_a_step_that_may_fail() {
        let refused = Err((ErrorCode::PaymentDeclined, "no".to_string()));
        let judged = judge_report(Some(1u8), 1, "one", true, &refused, |_: &i64| Ok(()));
        assert_eq!(judged, Ok(Some(refused.clone())));
        assert_eq!(judge(Some(1), false, refused), Some(ErrorCode::Conflict));
    }
}
