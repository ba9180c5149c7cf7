//! What the runtime shows of a SeatMap: its read rows, live topic and admin view.

use crate::actors::seat_map::*;
use crate::actors::{Entity, Inspect, Live, Projection};
use crate::live::LiveChange;
use crate::persistence::ReadRow;

impl Projection for SeatMap {
    fn read_row(&self) -> Option<ReadRow> {
        let terms = self.terms.as_ref()?;
        let view = self.view();
        let status = match view.availability.available {
            0 => "SOLD_OUT",
            _ => "AVAILABLE",
        };
        Some(ReadRow {
            kind: Self::KIND.to_string(),
            id: self.id.to_string(),
            owner: String::new(),
            created_at_ms: terms.starts_at_ms,
            status: status.to_string(),
            body: serde_json::to_string(&view).expect("map view serialises"),
        })
    }
}

impl Live for SeatMap {
    fn live_topic(id: &str) -> Option<String> {
        Some(format!("event:{id}:seats"))
    }

    const LIVE_CHANGES: bool = true;

    /// Where a subscriber starts: every seat that is not AVAILABLE (`full: true` says that
    /// the seats not listed are AVAILABLE).
    fn live_view(&self, _now_ms: i64) -> Option<serde_json::Value> {
        self.terms.as_ref()?;
        let changes: Vec<LiveChange> = self
            .seats_taken()
            .map(|(seat, status)| seat_change(self.seat_id(seat), status))
            .collect();
        Some(serde_json::json!({ "full": true, "changes": changes }))
    }

    fn live_changes(&self, event: &SeatEvent, out: &mut Vec<LiveChange>) {
        let (seats, to) = self.seats_moved_by(event);
        out.extend(
            seats
                .iter()
                .map(|&seat| seat_change(self.seat_id(seat), to)),
        );
    }
}

impl Inspect for SeatMap {
    fn state_json(&self) -> serde_json::Value {
        if self.terms.is_none() {
            return serde_json::json!({ "id": self.id, "created": false });
        }
        let mut json = serde_json::to_value(self.view()).expect("view serialises");
        json["open_holds"] = self.open_holds().into();
        json["checked_in"] = self.checked_in_count().into();
        json["seat_state_bytes"] = self.seat_state_bytes().into();
        json
    }
}

/// One item of the `event:{id}:seats` topic's `changes`.
fn seat_change(id: String, status: SeatStatus) -> LiveChange {
    LiveChange {
        id,
        status: status.as_str(),
    }
}
