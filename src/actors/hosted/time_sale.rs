//! What the runtime shows of a TimeSale: its read rows, live topic and admin view.

use crate::actors::time_sale::*;
use crate::actors::{Entity, Inspect, Live, Projection};
use crate::persistence::ReadRow;

impl Projection for TimeSale {
    fn read_row(&self) -> Option<ReadRow> {
        let terms = self.terms.as_ref()?;
        let view = self.view(self.status_by_phase());
        Some(ReadRow {
            kind: Self::KIND.to_string(),
            id: self.id.to_string(),
            owner: String::new(),
            created_at_ms: terms.starts_at_ms,
            status: view.status.as_str().to_string(),
            body: serde_json::to_string(&view).expect("sale view serialises"),
        })
    }
}

impl Live for TimeSale {
    fn live_topic(id: &str) -> Option<String> {
        Some(format!("time-sale:{id}"))
    }

    /// API.md's fields: the counts, and the status by the clock, then the stock.
    fn live_view(&self, now_ms: i64) -> Option<serde_json::Value> {
        self.terms.as_ref()?;
        Some(serde_json::json!({
            "remaining": self.remaining(),
            "reserved": self.reserved,
            "sold": self.sold,
            "status": self.status_at(now_ms).as_str(),
        }))
    }
}

impl Inspect for TimeSale {
    fn state_json(&self) -> serde_json::Value {
        let Some(_) = self.terms else {
            return serde_json::json!({ "id": self.id, "created": false });
        };
        let mut json =
            serde_json::to_value(self.view(self.status_by_phase())).expect("view serialises");
        json["open_reservations"] = self.open_reservations().into();
        json["buyers"] = self.buyers().into();
        json
    }
}
