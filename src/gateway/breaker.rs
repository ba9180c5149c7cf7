//! The circuit breaker of one gateway, as a pure state machine: time comes in as `now_ms`, so
//! every transition is tested with plain numbers and the client reads its injected
//! [`Clock`](crate::clock::Clock).
//!
//! - **Closed**: calls go through. `failures_max` failed attempts within `window_ms` open it.
//! - **Open**: calls are refused at once, with the time left until the cooldown ends.
//! - **Half-open** (the cooldown has passed): one call at a time goes through as a probe. Its
//!   success closes the breaker; its failure opens it again for another cooldown.
//!
//! Written here rather than taken from `failsafe`, the crate that came closest: its clock is a
//! thread-local test hook rather than one per breaker, so it cannot follow surge's injected
//! clock across the threads an async call runs on; its state can only be watched through
//! callbacks, not read for a gauge; and it has no "N failures within a window" policy (only
//! consecutive failures, or a success rate). What surge needs is small, and below.

use std::collections::VecDeque;

use serde::Serialize;

/// How long a caller refused while a probe is out should wait: about one attempt.
const PROBE_WAIT_MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures_max: u32,
    pub window_ms: i64,
    pub cooldown_ms: i64,
}

/// Serialised as the admin overview names it: `closed`, `half_open`, `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    /// The name the overview and the log show.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// The value of the `surge_gateway_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Whether a call may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; a `probe` must report its outcome (or [`Breaker::release_probe`]).
    Call { probe: bool },
    /// Do not call; try again in this long.
    Refused { retry_after_ms: i64 },
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    /// The latest failures' times, oldest first: at most `failures_max` of them.
    failures_at_ms: VecDeque<i64>,
    opened_at_ms: Option<i64>,
    probe_out: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        assert!(settings.failures_max > 0, "a breaker needs a failure bound");
        Breaker {
            settings,
            state: BreakerState::Closed,
            failures_at_ms: VecDeque::new(),
            opened_at_ms: None,
            probe_out: false,
        }
    }

    /// The state at `now_ms` (an open breaker whose cooldown has passed is half-open).
    pub fn state(&mut self, now_ms: i64) -> BreakerState {
        self.advance(now_ms);
        self.state
    }

    /// Failures counted within the window ending at `now_ms`.
    pub fn failures(&self, now_ms: i64) -> usize {
        let since_ms = now_ms - self.settings.window_ms;
        self.failures_at_ms
            .iter()
            .filter(|at| **at > since_ms)
            .count()
    }

    /// When the breaker last opened, while it is open or half-open.
    pub fn opened_at_ms(&self) -> Option<i64> {
        self.opened_at_ms
    }

    /// While it is open: how long until it lets a probe through.
    pub fn cooldown_left_ms(&mut self, now_ms: i64) -> Option<i64> {
        (self.state(now_ms) == BreakerState::Open).then(|| self.cooldown_end_ms() - now_ms)
    }

    pub fn admit(&mut self, now_ms: i64) -> Admission {
        self.advance(now_ms);
        match self.state {
            BreakerState::Closed => Admission::Call { probe: false },
            BreakerState::Open => Admission::Refused {
                retry_after_ms: self.cooldown_end_ms() - now_ms,
            },
            BreakerState::HalfOpen if self.probe_out => Admission::Refused {
                retry_after_ms: PROBE_WAIT_MS,
            },
            BreakerState::HalfOpen => {
                self.probe_out = true;
                Admission::Call { probe: true }
            }
        }
    }

    /// The gateway answered (an approval, a decline, a refusal of the request itself).
    pub fn succeeded(&mut self, probe: bool) {
        if probe && self.state == BreakerState::HalfOpen {
            self.state = BreakerState::Closed;
            self.failures_at_ms.clear();
            self.opened_at_ms = None;
            self.probe_out = false;
        }
    }

    /// An attempt failed in a way that says the gateway is unwell (timeout, connection, 5xx).
    /// A call admitted before the breaker opened and failing after counts for nothing more.
    pub fn failed(&mut self, now_ms: i64, probe: bool) {
        match self.state {
            BreakerState::Closed => {
                self.count_failure(now_ms);
                if self.failures(now_ms) >= self.failures_max() {
                    self.open(now_ms);
                }
            }
            BreakerState::HalfOpen if probe => {
                self.count_failure(now_ms);
                self.open(now_ms);
            }
            BreakerState::HalfOpen | BreakerState::Open => {}
        }
    }

    /// A probe ended without an outcome (its caller gave up): let the next call probe.
    pub fn release_probe(&mut self) {
        self.probe_out = false;
    }

    fn count_failure(&mut self, now_ms: i64) {
        self.failures_at_ms.push_back(now_ms);
        while self.failures_at_ms.len() > self.failures_max() {
            self.failures_at_ms.pop_front();
        }
    }

    fn open(&mut self, now_ms: i64) {
        self.state = BreakerState::Open;
        self.opened_at_ms = Some(now_ms);
        self.probe_out = false;
    }

    fn advance(&mut self, now_ms: i64) {
        if self.state == BreakerState::Open && now_ms >= self.cooldown_end_ms() {
            self.state = BreakerState::HalfOpen;
        }
    }

    fn cooldown_end_ms(&self) -> i64 {
        self.opened_at_ms.unwrap_or(i64::MIN) + self.settings.cooldown_ms
    }

    fn failures_max(&self) -> usize {
        usize::try_from(self.settings.failures_max).expect("u32 fits in usize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failures_max: 3,
        window_ms: 10_000,
        cooldown_ms: 5_000,
    };

    /// A breaker opened at 1_000 by three failures.
    fn opened() -> Breaker {
        let mut breaker = Breaker::new(SETTINGS);
        for _ in 0..3 {
            breaker.failed(1_000, false);
        }
        assert_eq!(breaker.state(1_000), BreakerState::Open);
        breaker
    }

    #[test]
    fn a_new_breaker_is_closed_and_lets_calls_through() {
        let mut breaker = Breaker::new(SETTINGS);
        assert_eq!(breaker.admit(0), Admission::Call { probe: false });
        assert_eq!(breaker.state(0), BreakerState::Closed);
        assert_eq!(breaker.opened_at_ms(), None);
    }

    #[test]
    fn failures_up_to_the_bound_within_the_window_open_it() {
        let mut breaker = Breaker::new(SETTINGS);
        breaker.failed(1_000, false);
        breaker.failed(2_000, false);
        assert_eq!(breaker.state(2_000), BreakerState::Closed);
        assert_eq!(breaker.failures(2_000), 2);
        breaker.failed(3_000, false);
        assert_eq!(breaker.state(3_000), BreakerState::Open);
        assert_eq!(breaker.opened_at_ms(), Some(3_000));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_open_it() {
        let mut breaker = Breaker::new(SETTINGS);
        for at_ms in [0, 6_000, 12_000, 18_000] {
            breaker.failed(at_ms, false);
        }
        assert_eq!(breaker.state(18_000), BreakerState::Closed);
        assert_eq!(breaker.failures(18_000), 2);
    }

    #[test]
    fn an_open_breaker_refuses_with_the_time_left_of_its_cooldown() {
        let mut breaker = opened();
        assert_eq!(
            breaker.admit(2_500),
            Admission::Refused {
                retry_after_ms: 3_500
            }
        );
        assert_eq!(breaker.cooldown_left_ms(5_999), Some(1));
        assert_eq!(breaker.state(5_999), BreakerState::Open);
        assert_eq!(breaker.cooldown_left_ms(6_000), None);
    }

    #[test]
    fn after_the_cooldown_it_is_half_open_and_lets_one_probe_through() {
        let mut breaker = opened();
        assert_eq!(breaker.state(6_000), BreakerState::HalfOpen);
        assert_eq!(breaker.admit(6_000), Admission::Call { probe: true });
        assert_eq!(
            breaker.admit(6_001),
            Admission::Refused {
                retry_after_ms: PROBE_WAIT_MS
            }
        );
    }

    #[test]
    fn a_successful_probe_closes_it_and_forgets_the_failures() {
        let mut breaker = opened();
        assert_eq!(breaker.admit(6_000), Admission::Call { probe: true });
        breaker.succeeded(true);
        assert_eq!(breaker.state(6_000), BreakerState::Closed);
        assert_eq!(breaker.failures(6_000), 0);
        assert_eq!(breaker.opened_at_ms(), None);
        assert_eq!(breaker.admit(6_000), Admission::Call { probe: false });
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_whole_cooldown() {
        let mut breaker = opened();
        assert_eq!(breaker.admit(6_000), Admission::Call { probe: true });
        breaker.failed(7_000, true);
        assert_eq!(breaker.state(7_000), BreakerState::Open);
        assert_eq!(breaker.opened_at_ms(), Some(7_000));
        assert_eq!(
            breaker.admit(11_999),
            Admission::Refused { retry_after_ms: 1 }
        );
        assert_eq!(breaker.admit(12_000), Admission::Call { probe: true });
    }

    #[test]
    fn a_probe_given_up_lets_the_next_call_probe() {
        let mut breaker = opened();
        assert_eq!(breaker.admit(6_000), Admission::Call { probe: true });
        breaker.release_probe();
        assert_eq!(breaker.admit(6_100), Admission::Call { probe: true });
    }

    #[test]
    fn late_outcomes_of_calls_admitted_before_it_opened_change_nothing() {
        let mut breaker = opened();
        breaker.failed(2_000, false);
        breaker.succeeded(false);
        assert_eq!(breaker.opened_at_ms(), Some(1_000));
        assert_eq!(breaker.state(6_000), BreakerState::HalfOpen);
        breaker.succeeded(false);
        breaker.failed(6_000, false);
        assert_eq!(breaker.state(6_000), BreakerState::HalfOpen);
    }

    #[test]
    fn the_gauge_and_names_follow_the_state() {
        let states = [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ];
        let seen: Vec<_> = states.iter().map(|s| (s.as_str(), s.gauge())).collect();
        assert_eq!(seen, [("closed", 0), ("half_open", 1), ("open", 2)]);
    }
}
