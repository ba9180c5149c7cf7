//! The terms of a coupon policy, their validation and the discount they give: pure values,
//! shared by the `CouponPolicy` entity and the HTTP handlers that build them.

use serde::{Deserialize, Serialize};

use crate::{FieldError, Rejection};

pub use crate::money::AMOUNT_MAX;
/// Most coupons one policy may issue. Its actor keeps every coupon in memory (user id, times,
/// the use), so this bounds one actor to some hundred megabytes at worst.
pub const QUANTITY_MAX: i64 = 1_000_000;
/// Longest title, description or reference.
pub const TEXT_LEN_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    Percentage,
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub title: String,
    pub description: Option<String>,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub min_order_amount: i64,
    pub max_discount_amount: Option<i64>,
    pub total_quantity: i64,
    pub per_user_limit: i64,
    pub starts_at_ms: i64,
    /// Also when every coupon of the policy expires.
    pub ends_at_ms: i64,
}

impl Terms {
    /// Every rule the terms break, as field errors (422 `VALIDATION_FAILED`).
    pub fn validate(&self) -> Result<(), Rejection> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, message: String| {
            if !ok {
                errors.push(FieldError {
                    field: field.into(),
                    message,
                });
            }
        };
        let title = self.title.trim();
        check(
            !title.is_empty()
                && title.chars().count() <= TEXT_LEN_MAX
                && crate::text::is_plain(title, false),
            "title",
            format!(
                "must be 1 to {TEXT_LEN_MAX} characters, {}",
                crate::text::PLAIN_RULE
            ),
        );
        check(
            self.description.as_ref().is_none_or(|d| {
                d.chars().count() <= TEXT_LEN_MAX && crate::text::is_plain(d, true)
            }),
            "description",
            format!(
                "must be at most {TEXT_LEN_MAX} characters, {}",
                crate::text::PLAIN_RULE
            ),
        );
        let value_range = match self.discount_type {
            DiscountType::Percentage => 1..=100,
            DiscountType::Fixed => 1..=AMOUNT_MAX,
        };
        check(
            value_range.contains(&self.discount_value),
            "discount_value",
            format!("must be {} to {}", value_range.start(), value_range.end()),
        );
        check(
            (0..=AMOUNT_MAX).contains(&self.min_order_amount),
            "min_order_amount",
            format!("must be 0 to {AMOUNT_MAX}"),
        );
        check(
            self.max_discount_amount
                .is_none_or(|m| (0..=AMOUNT_MAX).contains(&m)),
            "max_discount_amount",
            format!("must be 0 to {AMOUNT_MAX}"),
        );
        check(
            (1..=QUANTITY_MAX).contains(&self.total_quantity),
            "total_quantity",
            format!("must be 1 to {QUANTITY_MAX}"),
        );
        check(
            (1..=QUANTITY_MAX).contains(&self.per_user_limit),
            "per_user_limit",
            format!("must be 1 to {QUANTITY_MAX}"),
        );
        check(
            self.starts_at_ms < self.ends_at_ms,
            "ends_at",
            "must be after starts_at".into(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Rejection::invalid_fields(errors))
        }
    }

    /// The discount these terms give on an order of `order_amount`.
    pub fn discount(&self, order_amount: i64) -> i64 {
        discount(
            self.discount_type,
            self.discount_value,
            self.max_discount_amount,
            order_amount,
        )
    }
}

/// `PERCENTAGE`: `floor(order_amount * value / 100)`, capped by `max_discount`; `FIXED`:
/// `min(value, order_amount)`. Never negative and never more than the order. The product is
/// taken in i128, so no input overflows.
pub fn discount(
    discount_type: DiscountType,
    value: i64,
    max_discount: Option<i64>,
    order_amount: i64,
) -> i64 {
    let order_amount = order_amount.max(0);
    let raw = match discount_type {
        DiscountType::Percentage => {
            let exact = i128::from(order_amount) * i128::from(value.max(0)) / 100;
            let raw = i64::try_from(exact).unwrap_or(i64::MAX);
            max_discount.map_or(raw, |cap| raw.min(cap))
        }
        DiscountType::Fixed => value,
    };
    raw.clamp(0, order_amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DiscountType::{Fixed, Percentage};

    #[test]
    fn discounts_follow_the_table() {
        // (type, value, max_discount, order_amount, expected)
        let table: &[(DiscountType, i64, Option<i64>, i64, i64)] = &[
            (Percentage, 10, None, 10_000, 1_000),
            (Percentage, 10, None, 999, 99),
            (Percentage, 15, None, 1_001, 150),
            (Percentage, 33, None, 100, 33),
            (Percentage, 1, None, 99, 0),
            (Percentage, 100, None, 5_000, 5_000),
            (Percentage, 50, Some(2_000), 10_000, 2_000),
            (Percentage, 50, Some(2_000), 3_000, 1_500),
            (Percentage, 50, Some(0), 3_000, 0),
            (Percentage, 20, None, 0, 0),
            (Percentage, 100, None, AMOUNT_MAX, AMOUNT_MAX),
            (
                Percentage,
                99,
                None,
                i64::MAX,
                i64::MAX / 100 * 99 + (i64::MAX % 100) * 99 / 100,
            ),
            (Fixed, 3_000, None, 10_000, 3_000),
            (Fixed, 3_000, None, 3_000, 3_000),
            (Fixed, 3_000, None, 1_200, 1_200),
            (Fixed, 3_000, None, 0, 0),
            (Fixed, AMOUNT_MAX, None, AMOUNT_MAX - 1, AMOUNT_MAX - 1),
            (Fixed, 3_000, Some(1_000), 10_000, 3_000),
        ];
        for (i, (kind, value, cap, order, expected)) in table.iter().enumerate() {
            assert_eq!(
                discount(*kind, *value, *cap, *order),
                *expected,
                "row {i}: {kind:?} {value} cap {cap:?} on {order}"
            );
        }
    }

    fn terms() -> Terms {
        Terms {
            title: "Welcome".into(),
            description: None,
            discount_type: Percentage,
            discount_value: 10,
            min_order_amount: 0,
            max_discount_amount: None,
            total_quantity: 100,
            per_user_limit: 1,
            starts_at_ms: 1_000,
            ends_at_ms: 2_000,
        }
    }

    /// Breaks one rule of valid terms.
    type Breaker = fn(&mut Terms);

    fn invalid_fields(terms: &Terms) -> Vec<String> {
        match terms.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.fields.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn terms_out_of_bounds_name_their_fields() {
        assert!(terms().validate().is_ok());
        let cases: Vec<(Breaker, &str)> = vec![
            (|t| t.title = "  ".into(), "title"),
            (|t| t.discount_value = 0, "discount_value"),
            (|t| t.discount_value = 101, "discount_value"),
            (
                |t| {
                    t.discount_type = Fixed;
                    t.discount_value = 0;
                },
                "discount_value",
            ),
            (|t| t.min_order_amount = -1, "min_order_amount"),
            (
                |t| t.max_discount_amount = Some(AMOUNT_MAX + 1),
                "max_discount_amount",
            ),
            (|t| t.total_quantity = 0, "total_quantity"),
            (|t| t.total_quantity = QUANTITY_MAX + 1, "total_quantity"),
            (|t| t.per_user_limit = 0, "per_user_limit"),
            (|t| t.ends_at_ms = t.starts_at_ms, "ends_at"),
        ];
        for (break_it, field) in cases {
            let mut t = terms();
            break_it(&mut t);
            assert_eq!(invalid_fields(&t), vec![field.to_string()]);
        }
        let mut fixed = terms();
        fixed.discount_type = Fixed;
        fixed.discount_value = 5_000;
        assert!(fixed.validate().is_ok(), "a fixed discount may exceed 100");
    }
}
