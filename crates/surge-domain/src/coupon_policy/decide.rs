//! The commands of a coupon policy that issue, use and give back coupons.

use super::{Coupon, CouponEvent, CouponPolicy, CouponReply, Redemption, UseView, AMOUNT_MAX};
use crate::UserId;
use crate::{Ctx, Decision};
use crate::{ErrorCode, Rejection};

impl CouponPolicy {
    pub(super) fn decide_issue(
        &self,
        user_id: &str,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let terms = self.terms();
        if !self.in_window(ctx.now_ms) {
            return Err(Rejection::new(
                ErrorCode::CouponNotUsable,
                "coupons of this policy are issued only between its starts_at and ends_at",
            ));
        }
        // The user's own limit first: a user who already holds theirs hears so, sold out or not.
        if self.held_by(user_id) >= u64::try_from(terms.per_user_limit).unwrap_or(0) {
            return Err(Rejection::new(
                ErrorCode::CouponLimitReached,
                format!("{user_id} already holds {} of these", terms.per_user_limit),
            ));
        }
        if self.issued() >= u64::try_from(terms.total_quantity).unwrap_or(0) {
            return Err(Rejection::new(
                ErrorCode::CouponExhausted,
                "every coupon of this policy has been issued",
            ));
        }
        let coupon = Coupon {
            user_id: UserId::from(user_id),
            issued_at_ms: ctx.now_ms,
            redemption: None,
        };
        let reply = CouponReply::Coupon(self.coupon_view(self.issued() + 1, &coupon));
        Ok(Decision {
            events: vec![CouponEvent::Issued {
                user_id: UserId::from(user_id),
                at_ms: ctx.now_ms,
            }],
            reply,
        })
    }

    pub(super) fn decide_use(
        &self,
        n: u64,
        by_user: &str,
        order_amount: i64,
        reference: &Option<String>,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let coupon = self.coupon(n)?;
        if coupon.user_id != by_user {
            return Err(Rejection::forbidden("only its owner may use a coupon"));
        }
        if coupon.redemption.is_some() {
            return Err(Rejection::new(
                ErrorCode::CouponNotUsable,
                "this coupon has been used",
            ));
        }
        if !self.in_window(ctx.now_ms) {
            return Err(Rejection::new(
                ErrorCode::CouponNotUsable,
                "this coupon is usable only between its policy's starts_at and ends_at",
            ));
        }
        if !(0..=AMOUNT_MAX).contains(&order_amount) {
            return Err(Rejection::validation(
                "order_amount",
                format!("must be 0 to {AMOUNT_MAX}"),
            ));
        }
        let terms = self.terms();
        if order_amount < terms.min_order_amount {
            return Err(Rejection::new(
                ErrorCode::MinOrderNotMet,
                format!(
                    "this coupon needs an order of at least {}",
                    terms.min_order_amount
                ),
            ));
        }
        let discount = terms.discount(order_amount);
        let redemption = Redemption {
            at_ms: ctx.now_ms,
            order_amount,
            discount,
            reference: reference.clone(),
        };
        let used = Coupon {
            redemption: Some(redemption.clone()),
            ..coupon.clone()
        };
        let reply = CouponReply::Used(UseView {
            coupon: self.coupon_view(n, &used),
            discount,
        });
        Ok(Decision {
            events: vec![CouponEvent::Used { n, redemption }],
            reply,
        })
    }

    pub(super) fn decide_cancel(
        &self,
        n: u64,
        by_user: &str,
        operator: bool,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let coupon = self.coupon(n)?;
        if coupon.user_id != by_user && !operator {
            return Err(Rejection::forbidden("this coupon belongs to someone else"));
        }
        let issued = Coupon {
            redemption: None,
            ..coupon.clone()
        };
        let reply = CouponReply::Coupon(self.coupon_view(n, &issued));
        if coupon.redemption.is_none() {
            return Ok(Decision::reply(reply));
        }
        Ok(Decision {
            events: vec![CouponEvent::UseCancelled {
                n,
                at_ms: ctx.now_ms,
            }],
            reply,
        })
    }
}
