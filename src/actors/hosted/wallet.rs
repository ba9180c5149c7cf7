//! What the runtime shows of a Wallet: its read rows, live topic and admin view.

use crate::actors::wallet::*;
use crate::actors::{Inspect, Live, Projection};
use crate::persistence::ReadRow;

impl Projection for Wallet {
    /// The transaction just applied, with the balance it left.
    fn event_rows(&self, event: &WalletEvent, _at_ms: i64) -> Vec<ReadRow> {
        let WalletEvent::Recorded(record) = event;
        let view = self.recorded_view(event);
        vec![ReadRow {
            kind: TX_ROW_KIND.to_string(),
            id: view.id.clone(),
            owner: self.user_id.to_string(),
            created_at_ms: record.at_ms,
            status: record.kind.as_str().to_string(),
            body: serde_json::to_string(&view).expect("transaction view serialises"),
        }]
    }
}

impl Live for Wallet {}

impl Inspect for Wallet {
    fn state_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self.view()).expect("wallet view serialises");
        json["cancelled"] = self.cancelled().into();
        json
    }
}
