//! Throttles for the credential routes (register, login, refresh): 429 `RATE_LIMITED` with a
//! `Retry-After` that says when the next attempt is allowed. governor's GCRA does the counting.
//!
//! Why these routes: each one checks or hashes a secret, and Argon2id is expensive on purpose,
//! so an unthrottled client could both guess passwords at will and take the server's CPU from
//! everyone else. Attempts are limited per client address (the TCP peer: behind a proxy, that is
//! the proxy; IPv6 by /64, which one host usually holds whole), and failed logins per email and
//! address together. Not per email alone: then anyone who knows an email could keep its owner
//! locked out from everywhere with one bad attempt every few seconds. Keyed by the pair, a
//! guesser locks out only itself, and guessing one account from many addresses is bounded by
//! each address's own budget. Only failures count against a pair, so its owner logging in often
//! is never refused; a pair whose failures ran past the budget is refused (before any password
//! check) until the budget allows one more. Hot routes (orders, purchases) are not throttled
//! here: their bounds are the per-actor admission limit and the journal queue.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota};

use crate::error::ApiError;

/// Longest email kept as a key (RFC 5321's path limit); longer ones are cut, which only makes
/// them share a budget.
const EMAIL_KEY_BYTES_MAX: usize = 254;

/// Failed logins are counted per email and client address together.
type FailureKey = (String, IpAddr);

pub struct AuthThrottle {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    failures_per_email_and_address: DefaultKeyedRateLimiter<FailureKey>,
    /// Pairs refused until the instant their failure budget allows one more attempt.
    locked_until: DashMap<FailureKey, Instant>,
}

impl AuthThrottle {
    /// Each address may make `per_address` attempts a minute, and each (email, address) pair
    /// `failures_per_pair` failed logins a minute: a burst of that many, then one every
    /// `60 / n` seconds.
    pub fn new(per_address: u32, failures_per_pair: u32) -> AuthThrottle {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        AuthThrottle {
            per_address: DefaultKeyedRateLimiter::keyed(quota(per_address)),
            failures_per_email_and_address: DefaultKeyedRateLimiter::keyed(quota(
                failures_per_pair,
            )),
            locked_until: DashMap::new(),
        }
    }

    /// An attempt from `address` (unknown addresses, such as Unix sockets, share one budget).
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.per_address
            .check_key(&address_key(address))
            .map_err(limited)
    }

    /// Refuses a login for `email` from `address` while that pair's failures are past the
    /// budget.
    pub fn check_login(&self, email: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let key = failure_key(email, address);
        let Some(until) = self.locked_until.get(&key).map(|at| *at) else {
            return Ok(());
        };
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        Err(rate_limited(wait))
    }

    /// Counts a failed login for `email` from `address`; past the budget, the pair is refused
    /// until the budget allows one more.
    pub fn record_failure(&self, email: &str, address: Option<IpAddr>) {
        let key = failure_key(email, address);
        if let Err(not_until) = self.failures_per_email_and_address.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.locked_until.insert(key, Instant::now() + wait);
        }
    }

    /// Drops keys whose budget is full again, so memory follows recent attempts only.
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.failures_per_email_and_address.retain_recent();
        self.per_address.shrink_to_fit();
        self.failures_per_email_and_address.shrink_to_fit();
        let now = Instant::now();
        self.locked_until.retain(|_, until| *until > now);
    }

    /// Keys currently remembered (tests, console).
    pub fn keys(&self) -> usize {
        self.per_address.len() + self.failures_per_email_and_address.len() + self.locked_until.len()
    }
}

/// What a client address counts as: IPv4 as itself, also when a dual-stack listener (`[::]`)
/// sees it as `::ffff:a.b.c.d` (else every IPv4 client would share the key `::`); IPv6 by its
/// /64 (one host usually holds a whole one, so counting single addresses would let it spread
/// over 2^64 of them); unknown addresses (Unix sockets) as one, 0.0.0.0.
pub fn address_key(address: Option<IpAddr>) -> IpAddr {
    match address.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & (u128::MAX << 64))),
        Some(v4) => v4,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

fn failure_key(email: &str, address: Option<IpAddr>) -> FailureKey {
    (email_key(email), address_key(address))
}

/// Emails differ only by case and surrounding spaces; long ones are cut, which only makes
/// them share a budget.
fn email_key(email: &str) -> String {
    let mut key = email.trim().to_lowercase();
    if key.len() > EMAIL_KEY_BYTES_MAX {
        let mut cut = EMAIL_KEY_BYTES_MAX;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
    key
}

fn limited(not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
    rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::rate_limited(
        "too many attempts; wait before trying again",
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

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
    fn ipv4_clients_of_a_dual_stack_listener_keep_their_own_keys() {
        let mapped = |last: u8| Some(IpAddr::from(Ipv4Addr::new(10, 0, 0, last).to_ipv6_mapped()));
        assert_eq!(address_key(mapped(1)), IpAddr::from([10, 0, 0, 1]));
        assert_ne!(address_key(mapped(1)), address_key(mapped(2)));
        let throttle = AuthThrottle::new(1, 100);
        throttle.check_address(mapped(1)).expect("first");
        assert!(throttle.check_address(mapped(1)).is_err(), "its own budget");
        throttle
            .check_address(mapped(2))
            .expect("another IPv4 client is not charged");
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let throttle = AuthThrottle::new(1, 100);
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        throttle.check_address(host(1)).expect("first");
        assert!(throttle.check_address(host(2)).is_err(), "same /64");
        let elsewhere = Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]));
        throttle.check_address(elsewhere).expect("another /64");
    }

    #[test]
    fn only_failures_count_against_an_email_whatever_its_case_or_length() {
        let throttle = AuthThrottle::new(100, 2);
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..10 {
            throttle
                .check_login("Ann@Example.com", here)
                .expect("no failures yet");
        }
        throttle.record_failure("Ann@Example.com", here);
        throttle.record_failure(" ann@example.com ", here);
        throttle
            .check_login("ann@example.com", here)
            .expect("within the budget");
        throttle.record_failure("ANN@EXAMPLE.COM", here);
        let refused = throttle
            .check_login("ann@example.com", here)
            .expect_err("locked");
        assert_eq!(refused.code, ErrorCode::RateLimited);
        throttle
            .check_login("bob@example.com", here)
            .expect("others are not");
        let long = "é".repeat(300);
        for _ in 0..3 {
            throttle.record_failure(&(long.clone() + "x"), here);
        }
        assert!(
            throttle.check_login(&long, here).is_err(),
            "the same cut key"
        );
    }

    #[test]
    fn failures_lock_an_email_out_from_their_address_only() {
        let throttle = AuthThrottle::new(100, 2);
        let guesser = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..30 {
            throttle.record_failure("ann@example.com", guesser);
        }
        assert!(throttle.check_login("ann@example.com", guesser).is_err());
        throttle
            .check_login("ann@example.com", Some(IpAddr::from([10, 0, 0, 2])))
            .expect("the owner elsewhere is not locked out");
        // A /64 is one host: failures from any of its addresses share the pair's budget.
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        for last in 1..=3 {
            throttle.record_failure("ann@example.com", host(last));
        }
        assert!(throttle.check_login("ann@example.com", host(9)).is_err());
        throttle
            .check_login(
                "ann@example.com",
                Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])),
            )
            .expect("another /64");
    }

    #[test]
    fn forgetting_keeps_only_keys_still_waiting() {
        let throttle = AuthThrottle::new(1, 100);
        throttle.check_address(None).expect("first");
        assert_eq!(throttle.keys(), 1);
        throttle.forget_idle();
        assert_eq!(throttle.keys(), 1, "its budget is not full again yet");
    }
}
