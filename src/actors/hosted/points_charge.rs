//! What the runtime shows of a points charge: a `points_charge` read row per charge, whose
//! status (`RUNNING`, `COMPENSATING`, `CREDITED`, `FAILED`) finds the charges in flight at
//! start-up, and its view as the admin state.

use crate::actors::points_charge::{ChargeStatus, PointsCharge};
use crate::actors::{Inspect, Live, Projection};
use crate::persistence::ReadRow;

/// The read-row kind of points charges.
pub const ROW_KIND: &str = "points_charge";

/// A status as the read rows write it.
pub const fn status_name(status: ChargeStatus) -> &'static str {
    match status {
        ChargeStatus::Running => "RUNNING",
        ChargeStatus::Compensating => "COMPENSATING",
        ChargeStatus::Credited => "CREDITED",
        ChargeStatus::Failed => "FAILED",
    }
}

impl Projection for PointsCharge {
    fn read_row(&self) -> Option<ReadRow> {
        let request = self.request.as_ref()?;
        Some(ReadRow {
            kind: ROW_KIND.to_string(),
            id: self.charge_id.clone(),
            owner: request.user_id.to_string(),
            created_at_ms: self.started_at_ms,
            status: status_name(self.status()?).to_string(),
            body: serde_json::to_string(&self.view()).expect("charge view serialises"),
        })
    }
}

impl Live for PointsCharge {}

impl Inspect for PointsCharge {
    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).expect("charge view serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_named_as_it_serialises() {
        for status in [
            ChargeStatus::Running,
            ChargeStatus::Compensating,
            ChargeStatus::Credited,
            ChargeStatus::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(status).expect("json"),
                status_name(status)
            );
        }
    }
}
