//! Counters of the gateway client's calls, read by `GET /metrics` when it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use super::failure::Failure;
use super::Accepted;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Charge,
    Refund,
}

impl Operation {
    const ALL: [Operation; 2] = [Operation::Charge, Operation::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Charge => "charge",
            Operation::Refund => "refund",
        }
    }
}

/// How a call ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Declined,
    Rejected,
    /// Retries ran out.
    Unavailable,
    /// The open breaker refused the (last) attempt: nothing more was sent.
    BreakerOpen,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Declined,
        Outcome::Rejected,
        Outcome::Unavailable,
        Outcome::BreakerOpen,
    ];

    fn of(outcome: &Result<Accepted, Failure>) -> Outcome {
        match outcome {
            Ok(_) => Outcome::Ok,
            Err(Failure::Declined { .. }) => Outcome::Declined,
            Err(Failure::Rejected { .. }) => Outcome::Rejected,
            Err(Failure::Transient { .. }) => Outcome::Unavailable,
            Err(Failure::BreakerOpen { .. }) => Outcome::BreakerOpen,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Declined => "declined",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable => "unavailable",
            Outcome::BreakerOpen => "breaker_open",
        }
    }
}

#[derive(Debug, Default)]
pub struct GatewayStats {
    /// By operation, then outcome, in the order of their `ALL`.
    calls: [[AtomicU64; Outcome::ALL.len()]; Operation::ALL.len()],
    retries: AtomicU64,
}

impl GatewayStats {
    pub(super) fn count(&self, operation: Operation, outcome: &Result<Accepted, Failure>) {
        let outcome = Outcome::of(outcome);
        self.calls[operation as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// `(operation, outcome, calls)` for every pair, zeros included.
    pub fn calls(&self) -> Vec<(&'static str, &'static str, u64)> {
        Operation::ALL
            .iter()
            .flat_map(|op| Outcome::ALL.iter().map(move |outcome| (*op, *outcome)))
            .map(|(op, outcome)| {
                let calls = self.calls[op as usize][outcome as usize].load(Ordering::Relaxed);
                (op.as_str(), outcome.as_str(), calls)
            })
            .collect()
    }

    /// Attempts made again after a failure that another try might fix.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_operation_and_outcome() {
        let stats = GatewayStats::default();
        let declined = Err(Failure::Declined {
            reason: "no".into(),
        });
        stats.count(Operation::Refund, &declined);
        stats.count(Operation::Refund, &declined);
        let calls = stats.calls();
        assert_eq!(calls.len(), 10);
        assert!(calls.contains(&("refund", "declined", 2)));
        assert_eq!(calls.iter().map(|c| c.2).sum::<u64>(), 2);
    }
}
