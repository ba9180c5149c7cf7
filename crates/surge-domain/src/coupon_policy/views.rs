//! How a coupon policy and its coupons are shown (API.md "Coupons"), and coupon ids.

use crate::UserId;
use serde::{Deserialize, Serialize};

use super::{Coupon, CouponEvent, CouponPolicy, DiscountType};
use crate::time::rfc3339;

/// The id of coupon `n` of policy `policy_id`.
pub fn coupon_id(policy_id: &str, n: u64) -> String {
    format!("{policy_id}.{n:08}")
}

/// The policy id and number of coupon `id`: `{uuid}.{n:08}`, the uuid in its canonical form
/// (a UUID has no '.', so the first '.' ends it).
pub fn parse_coupon_id(id: &str) -> Option<(String, u64)> {
    let (policy, digits) = id.split_once('.')?;
    let uuid = uuid::Uuid::parse_str(policy).ok()?;
    if uuid.to_string() != policy
        || digits.len() != 8
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (n >= 1).then(|| (policy.to_string(), n))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub min_order_amount: i64,
    pub max_discount_amount: Option<i64>,
    pub total_quantity: i64,
    pub per_user_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub issued: u64,
    pub used: u64,
    pub remaining: u64,
    pub created_at: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponView {
    pub id: String,
    pub policy_id: String,
    pub user_id: UserId,
    /// `ISSUED` or `USED`.
    pub status: String,
    pub expires_at: String,
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseView {
    pub coupon: CouponView,
    pub discount: i64,
}

/// What a command answers, serialised as the response body itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CouponReply {
    Policy(PolicyView),
    Coupon(CouponView),
    Used(UseView),
}

impl CouponPolicy {
    /// The coupon `event` issued, used or gave back, as it is once the event is applied;
    /// `None` for the policy's creation. What the coupon lists are projected from.
    pub fn coupon_of_event(&self, event: &CouponEvent) -> Option<(&Coupon, CouponView)> {
        let n = match event {
            CouponEvent::Created { .. } => return None,
            CouponEvent::Issued { .. } => self.issued(),
            CouponEvent::Used { n, .. } | CouponEvent::UseCancelled { n, .. } => *n,
        };
        let coupon = self.coupon(n).ok()?;
        Some((coupon, self.coupon_view(n, coupon)))
    }

    pub fn policy_view(&self) -> PolicyView {
        let terms = self.terms();
        let total = u64::try_from(terms.total_quantity).unwrap_or(0);
        PolicyView {
            id: self.id.clone(),
            title: terms.title.clone(),
            description: terms.description.clone(),
            discount_type: terms.discount_type,
            discount_value: terms.discount_value,
            min_order_amount: terms.min_order_amount,
            max_discount_amount: terms.max_discount_amount,
            total_quantity: terms.total_quantity,
            per_user_limit: terms.per_user_limit,
            starts_at: rfc3339(terms.starts_at_ms),
            ends_at: rfc3339(terms.ends_at_ms),
            issued: self.issued(),
            used: self.used,
            remaining: total.saturating_sub(self.issued()),
            created_at: rfc3339(self.created_at_ms),
            version: self.version,
        }
    }

    /// Coupon `n` shown as `coupon` is (or is about to be).
    pub(super) fn coupon_view(&self, n: u64, coupon: &Coupon) -> CouponView {
        let used = coupon.redemption.as_ref();
        CouponView {
            id: coupon_id(&self.id, n),
            policy_id: self.id.clone(),
            user_id: coupon.user_id.clone(),
            status: if used.is_some() { "USED" } else { "ISSUED" }.to_string(),
            expires_at: rfc3339(self.terms().ends_at_ms),
            issued_at: rfc3339(coupon.issued_at_ms),
            used_at: used.map(|r| rfc3339(r.at_ms)),
            order_amount: used.map(|r| r.order_amount),
            discount: used.map(|r| r.discount),
            reference: used.and_then(|r| r.reference.clone()),
        }
    }
}
