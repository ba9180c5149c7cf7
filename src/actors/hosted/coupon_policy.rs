//! What the runtime shows of a CouponPolicy: its read rows, live topic and admin view.

use crate::actors::coupon_policy::*;
use crate::actors::{Inspect, Live, Projection};
use crate::persistence::ReadRow;

impl Projection for CouponPolicy {
    fn read_row(&self) -> Option<ReadRow> {
        let view = self.terms.as_ref().map(|_| self.policy_view())?;
        Some(ReadRow {
            kind: POLICY_ROW_KIND.to_string(),
            id: self.id.clone(),
            owner: self.created_by.clone(),
            created_at_ms: self.created_at_ms,
            status: if view.remaining > 0 {
                "OPEN"
            } else {
                "EXHAUSTED"
            }
            .to_string(),
            body: serde_json::to_string(&view).expect("policy view serialises"),
        })
    }

    /// The coupon the event issued, used or gave back, as it now is.
    fn event_rows(&self, event: &CouponEvent, _at_ms: i64) -> Vec<ReadRow> {
        let Some((coupon, view)) = self.coupon_of_event(event) else {
            return Vec::new();
        };
        vec![ReadRow {
            kind: COUPON_ROW_KIND.to_string(),
            id: view.id.clone(),
            owner: coupon.user_id.to_string(),
            created_at_ms: coupon.issued_at_ms,
            status: view.status.to_string(),
            body: serde_json::to_string(&view).expect("coupon view serialises"),
        }]
    }
}

impl Live for CouponPolicy {}

impl Inspect for CouponPolicy {
    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.terms.as_ref().map(|_| self.policy_view()))
            .expect("policy view serialises")
    }
}
