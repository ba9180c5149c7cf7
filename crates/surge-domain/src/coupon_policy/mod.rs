//! CouponPolicy: a limited run of coupons and the coupons it has issued.
//!
//! Supervised by `Region<CouponPolicy>`; persistence id `coupon_policy:{id}` (a UUIDv7 made by
//! the create handler). The policy owns its coupons, so "never more than `total_quantity`, never
//! more than `per_user_limit` per user" is decided by one actor, one command at a time.
//! Coupon `n` (from 1) has the id `{policy_id}.{n:08}`.
//! Accepts: create, get, issue, get a coupon, use a coupon, cancel a coupon's use.
//! Journals: `Created`, `Issued`, `Used`, `UseCancelled`.
//! Read rows: the policy's own row (`coupon_policy`, for the list of policies) and, committed
//! with each event, the row of the coupon it touches (`coupon`, owner = its user), rewritten
//! when the coupon's status changes.
//! Cancelling a coupon that is `ISSUED` changes nothing and answers the coupon as it is, so a
//! retried cancel is safe even without an Idempotency-Key.
//!
//! # Invariants
//! - a policy without terms has no coupons;
//! - `issued <= total_quantity`, `used <= issued`;
//! - no user holds more than `per_user_limit` coupons (`most_held`, cheap);
//! - the per-user counts and `used` equal a recount of the coupons (deep check).

use crate::UserId;
use serde::{Deserialize, Serialize};

use super::{Ctx, Decision, Entity};
use crate::{ErrorCode, Rejection};

mod decide;
mod terms;
mod views;
pub use terms::{discount, DiscountType, Terms, AMOUNT_MAX, QUANTITY_MAX, TEXT_LEN_MAX};
pub use views::{coupon_id, parse_coupon_id, CouponReply, CouponView, PolicyView, UseView};

/// The read-row kinds of policies and of coupons.
pub const POLICY_ROW_KIND: &str = "coupon_policy";
pub const COUPON_ROW_KIND: &str = "coupon";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub at_ms: i64,
    pub order_amount: i64,
    pub discount: i64,
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub user_id: UserId,
    pub issued_at_ms: i64,
    pub redemption: Option<Redemption>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponPolicy {
    pub id: String,
    pub terms: Option<Terms>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub used: u64,
    pub version: u64,
    coupons: imbl::Vector<Coupon>,
    /// Coupons issued per user (used ones count too): rebuilt by `restore`.
    #[serde(skip)]
    held: imbl::HashMap<UserId, u64>,
    #[serde(skip)]
    most_held: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponCommand {
    Create {
        terms: Terms,
        created_by: String,
    },
    Get,
    Issue {
        user_id: UserId,
    },
    GetCoupon {
        n: u64,
    },
    /// Only the coupon's owner may use it; `by_user` is the caller.
    Use {
        n: u64,
        by_user: String,
        order_amount: i64,
        reference: Option<String>,
    },
    /// The owner or an operator may undo a use.
    Cancel {
        n: u64,
        by_user: String,
        operator: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponEvent {
    Created {
        terms: Terms,
        created_by: String,
        at_ms: i64,
    },
    Issued {
        user_id: UserId,
        at_ms: i64,
    },
    Used {
        n: u64,
        redemption: Redemption,
    },
    UseCancelled {
        n: u64,
        at_ms: i64,
    },
}

impl CouponPolicy {
    pub fn issued(&self) -> u64 {
        u64::try_from(self.coupons.len()).expect("usize fits u64")
    }

    pub fn held_by(&self, user_id: &str) -> u64 {
        self.held.get(user_id).copied().unwrap_or(0)
    }

    fn terms(&self) -> &Terms {
        self.terms
            .as_ref()
            .expect("only called on created policies")
    }

    fn coupon(&self, n: u64) -> Result<&Coupon, Rejection> {
        n.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.coupons.get(i))
            .ok_or_else(|| {
                Rejection::not_found(format!("coupon {} not found", coupon_id(&self.id, n)))
            })
    }

    fn coupon_mut(&mut self, n: u64) -> Option<&mut Coupon> {
        let index = usize::try_from(n.checked_sub(1)?).ok()?;
        self.coupons.get_mut(index)
    }

    fn in_window(&self, now_ms: i64) -> bool {
        let terms = self.terms();
        terms.starts_at_ms <= now_ms && now_ms < terms.ends_at_ms
    }

    /// Rebuilds the per-user counts from the coupons.
    fn recount(&self) -> imbl::HashMap<UserId, u64> {
        let mut held = imbl::HashMap::new();
        for coupon in &self.coupons {
            *held.entry(coupon.user_id.clone()).or_insert(0) += 1;
        }
        held
    }
}

impl Entity for CouponPolicy {
    const KIND: &'static str = "coupon_policy";
    const VERSION: u8 = 1;

    type Command = CouponCommand;
    type Event = CouponEvent;
    type Reply = CouponReply;

    fn blank(id: &str) -> Self {
        CouponPolicy {
            id: id.to_string(),
            ..CouponPolicy::default()
        }
    }

    fn exists(&self) -> bool {
        self.terms.is_some()
    }

    fn decide(&self, command: &CouponCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        if let CouponCommand::Create { terms, created_by } = command {
            if self.terms.is_some() {
                return Err(Rejection::new(
                    ErrorCode::Conflict,
                    format!("coupon policy {} already exists", self.id),
                ));
            }
            terms.validate()?;
            let mut created = self.clone();
            let event = CouponEvent::Created {
                terms: terms.clone(),
                created_by: created_by.clone(),
                at_ms: ctx.now_ms,
            };
            created.apply(&event);
            return Ok(Decision {
                events: vec![event],
                reply: CouponReply::Policy(created.policy_view()),
            });
        }
        if self.terms.is_none() {
            return Err(Rejection::not_found(format!(
                "coupon policy {} not found",
                self.id
            )));
        }
        match command {
            CouponCommand::Create { .. } => unreachable!("handled above"),
            CouponCommand::Get => Ok(Decision::reply(CouponReply::Policy(self.policy_view()))),
            CouponCommand::Issue { user_id } => self.decide_issue(user_id.as_str(), ctx),
            CouponCommand::GetCoupon { n } => Ok(Decision::reply(CouponReply::Coupon(
                self.coupon_view(*n, self.coupon(*n)?),
            ))),
            CouponCommand::Use {
                n,
                by_user,
                order_amount,
                reference,
            } => self.decide_use(*n, by_user, *order_amount, reference, ctx),
            CouponCommand::Cancel {
                n,
                by_user,
                operator,
            } => self.decide_cancel(*n, by_user, *operator, ctx),
        }
    }

    fn apply(&mut self, event: &CouponEvent) {
        self.version += 1;
        match event {
            CouponEvent::Created {
                terms,
                created_by,
                at_ms,
            } => {
                self.terms = Some(terms.clone());
                self.created_by = created_by.clone();
                self.created_at_ms = *at_ms;
            }
            CouponEvent::Issued { user_id, at_ms } => {
                self.coupons.push_back(Coupon {
                    user_id: user_id.clone(),
                    issued_at_ms: *at_ms,
                    redemption: None,
                });
                let held = self.held.entry(user_id.clone()).or_insert(0);
                *held += 1;
                self.most_held = self.most_held.max(*held);
            }
            CouponEvent::Used { n, redemption } => {
                if let Some(coupon) = self.coupon_mut(*n) {
                    coupon.redemption = Some(redemption.clone());
                    self.used += 1;
                }
            }
            CouponEvent::UseCancelled { n, .. } => {
                if let Some(coupon) = self.coupon_mut(*n) {
                    if coupon.redemption.take().is_some() {
                        self.used -= 1;
                    }
                }
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let Some(terms) = &self.terms else {
            return match self.coupons.is_empty() && self.used == 0 {
                true => Ok(()),
                false => Err("coupons without a policy".into()),
            };
        };
        if self.issued() > u64::try_from(terms.total_quantity).unwrap_or(0) {
            return Err(format!(
                "{} issued of {}",
                self.issued(),
                terms.total_quantity
            ));
        }
        if self.used > self.issued() {
            return Err(format!("{} used of {} issued", self.used, self.issued()));
        }
        if self.most_held > u64::try_from(terms.per_user_limit).unwrap_or(0) {
            return Err(format!(
                "a user holds {} coupons, the limit is {}",
                self.most_held, terms.per_user_limit
            ));
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        let held = self.recount();
        if held != self.held || held.values().max().copied().unwrap_or(0) != self.most_held {
            return Err("per-user counts out of step with the coupons".into());
        }
        let used = self
            .coupons
            .iter()
            .filter(|c| c.redemption.is_some())
            .count();
        if u64::try_from(used).ok() != Some(self.used) {
            return Err(format!("used {} but {used} coupons are used", self.used));
        }
        Ok(())
    }

    fn restore(&mut self) {
        self.held = self.recount();
        self.most_held = self.held.values().max().copied().unwrap_or(0);
    }

    fn snapshot_weight(&self) -> u64 {
        self.issued()
    }
}

#[cfg(test)]
mod tests;
