//! What the runtime shows of a payment saga: a `pay_saga` read row per order, whose status
//! (`RUNNING`, `COMPENSATING`, `CONFIRMED`, `FAILED`, `REFUNDED`) finds the sagas in flight at
//! start-up and for the console, and its view as the admin state.

use crate::actors::pay_saga::{Saga, SagaStatus};
use crate::actors::{Inspect, Live, Projection};
use crate::persistence::ReadRow;

/// The read-row kind of payment sagas.
pub const ROW_KIND: &str = "pay_saga";

/// A status as the read rows and the API write it.
pub const fn status_name(status: SagaStatus) -> &'static str {
    match status {
        SagaStatus::Running => "RUNNING",
        SagaStatus::Compensating => "COMPENSATING",
        SagaStatus::Confirmed => "CONFIRMED",
        SagaStatus::Failed => "FAILED",
        SagaStatus::Refunded => "REFUNDED",
    }
}

impl Projection for Saga {
    fn read_row(&self) -> Option<ReadRow> {
        let attempt = self.attempt.as_ref()?;
        let owner = attempt.facts.as_ref().map(|f| f.user_id.to_string());
        Some(ReadRow {
            kind: ROW_KIND.to_string(),
            id: self.order_id.clone(),
            owner: owner.unwrap_or_default(),
            created_at_ms: attempt.started_at_ms,
            status: status_name(self.status()?).to_string(),
            body: serde_json::to_string(&self.view()).expect("saga view serialises"),
        })
    }
}

impl Live for Saga {}

impl Inspect for Saga {
    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).expect("saga view serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_named_as_it_serialises() {
        for status in [
            SagaStatus::Running,
            SagaStatus::Compensating,
            SagaStatus::Confirmed,
            SagaStatus::Failed,
            SagaStatus::Refunded,
        ] {
            assert_eq!(
                serde_json::to_value(status).expect("json"),
                status_name(status)
            );
        }
    }
}
