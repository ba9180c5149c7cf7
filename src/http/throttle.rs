//! Throttles for the credential routes (register, login, refresh): 429 `RATE_LIMITED` with a
//! `Retry-After` that says when the next attempt is allowed. governor's GCRA does the counting.
//!
//! Why these routes: each one checks or hashes a secret, and Argon2id is expensive on purpose,
//! so an unthrottled client could both guess passwords at will and take the server's CPU from
//! everyone else. Attempts are limited per client address (the TCP peer: behind a proxy, that is
//! the proxy) and, for login, per email as well, so spreading guesses for one account over many
//! addresses does not help either. Hot routes (orders, purchases) are not throttled here: their
//! bounds are the per-actor admission limit and the journal queue.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota};

use crate::error::ApiError;

/// Longest email kept as a key (RFC 5321's path limit); longer ones are cut, which only makes
/// them share a budget.
const EMAIL_KEY_BYTES_MAX: usize = 254;

pub struct AuthThrottle {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_email: DefaultKeyedRateLimiter<String>,
}

impl AuthThrottle {
    /// Each address may make `per_address` attempts a minute and each email `per_email` login
    /// attempts a minute: a burst of that many, then one every `60 / n` seconds.
    pub fn new(per_address: u32, per_email: u32) -> AuthThrottle {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        AuthThrottle {
            per_address: DefaultKeyedRateLimiter::keyed(quota(per_address)),
            per_email: DefaultKeyedRateLimiter::keyed(quota(per_email)),
        }
    }

    /// An attempt from `address` (unknown addresses, such as Unix sockets, share one budget).
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let address = address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.per_address.check_key(&address).map_err(limited)
    }

    /// A login attempt for `email`, whatever address it comes from.
    pub fn check_email(&self, email: &str) -> Result<(), ApiError> {
        let mut key = email.trim().to_lowercase();
        if key.len() > EMAIL_KEY_BYTES_MAX {
            let mut cut = EMAIL_KEY_BYTES_MAX;
            while !key.is_char_boundary(cut) {
                cut -= 1;
            }
            key.truncate(cut);
        }
        self.per_email.check_key(&key).map_err(limited)
    }

    /// Drops keys whose budget is full again, so memory follows recent attempts only.
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_email.retain_recent();
        self.per_address.shrink_to_fit();
        self.per_email.shrink_to_fit();
    }

    /// Keys currently remembered (tests, console).
    pub fn keys(&self) -> usize {
        self.per_address.len() + self.per_email.len()
    }
}

fn limited(not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::rate_limited(
        "too many attempts; wait before trying again",
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn an_address_past_its_budget_is_told_when_to_come_back() {
        let throttle = AuthThrottle::new(3, 100);
        let address = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            throttle.check_address(address).expect("within the burst");
        }
        let refused = throttle.check_address(address).expect_err("past the burst");
        assert_eq!(refused.code, ErrorCode::RateLimited);
        // One attempt comes back every 20 s at 3 a minute.
        let wait = refused.retry_after_secs.expect("a wait");
        assert!((1..=20).contains(&wait), "waited {wait}s");
        throttle
            .check_address(Some(IpAddr::from([10, 0, 0, 2])))
            .expect("another address has its own budget");
    }

    #[test]
    fn emails_share_a_budget_whatever_their_case_or_length() {
        let throttle = AuthThrottle::new(100, 2);
        throttle.check_email("Ann@Example.com").expect("first");
        throttle.check_email(" ann@example.com ").expect("second");
        assert!(throttle.check_email("ANN@EXAMPLE.COM").is_err());
        let long = "é".repeat(300);
        throttle
            .check_email(&long)
            .expect("a long key is cut, not refused");
        throttle
            .check_email(&(long.clone() + "x"))
            .expect("same cut key");
        assert!(throttle.check_email(&long).is_err());
    }

    #[test]
    fn forgetting_keeps_only_keys_still_waiting() {
        let throttle = AuthThrottle::new(100, 1);
        throttle.check_email("a@b.c").expect("first");
        assert_eq!(throttle.keys(), 1);
        throttle.forget_idle();
        assert_eq!(throttle.keys(), 1, "its budget is not full again yet");
    }
}
