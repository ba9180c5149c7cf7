//! What the runtime shows of a WaitingRoom: its read rows, live topic and admin view.

use crate::actors::waiting_room::*;
use crate::actors::{Inspect, Live, Projection};

impl Projection for WaitingRoom {}

impl Live for WaitingRoom {}

impl Inspect for WaitingRoom {
    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource,
            "tickets": self.len(),
            "admitted_base": self.admitted_base(),
            "admit_per_sec": self.admit_per_sec,
            "paused": self.paused,
            "opened": self.opened(),
        })
    }
}
