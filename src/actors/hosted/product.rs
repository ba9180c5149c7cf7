//! What the runtime shows of a Product: its read rows, live topic and admin view.

use crate::actors::product::*;
use crate::actors::{Inspect, Live, Projection};

impl Projection for Product {}

impl Live for Product {}

impl Inspect for Product {
    fn state_json(&self) -> serde_json::Value {
        match &self.details {
            Some(details) => serde_json::to_value(self.view_of(details)).expect("view serialises"),
            None => serde_json::json!({ "id": self.id, "created": false }),
        }
    }
}
