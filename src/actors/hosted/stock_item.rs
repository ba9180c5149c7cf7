//! What the runtime shows of a StockItem: its read rows, live topic and admin view.

use crate::actors::stock_item::*;
use crate::actors::{Entity, Inspect, Live, Projection};

impl Projection for StockItem {}

impl Live for StockItem {
    fn live_topic(sku: &str) -> Option<String> {
        Some(format!("stock:{sku}"))
    }

    /// API.md's fields: what can be reserved, what is reserved, what is sold.
    fn live_view(&self, _now_ms: i64) -> Option<serde_json::Value> {
        self.exists().then(|| {
            serde_json::json!({
                "available": self.available(),
                "reserved": self.reserved,
                "sold": self.sold,
            })
        })
    }
}

impl Inspect for StockItem {
    fn state_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self.view()).expect("view serialises");
        json["open_reservations"] = self.open_reservations().into();
        json
    }
}
