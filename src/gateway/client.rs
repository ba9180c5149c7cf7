//! [`Gateway`]: the client of the payment gateway (API.md "Payment gateway").
//!
//! Each call is a few attempts at most (`gateway.retries_max` retries after the first), each
//! bounded by `gateway.timeout_ms`, with jittered exponential waits between them (`backon`).
//! Only what another try may change is retried ([`super::failure`]); every attempt of a call
//! carries the caller's idempotency key, so the gateway charges or refunds once however many
//! of them reach it. One circuit breaker ([`super::breaker`]) watches the attempts: while it is
//! open, calls fail at once and nothing is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::Url;
use serde::Serialize;

use super::breaker::{Admission, Breaker, BreakerSettings, BreakerState};
use super::failure::{self, Failure};
use super::stats::{GatewayStats, Operation};
use super::{Accepted, ChargeRequest, RefundRequest, APPROVED, REFUNDED};
use crate::clock::SharedClock;
use crate::config::GatewaySettings;

/// The `gateway` label of the metrics: surge talks to one gateway.
pub const GATEWAY_NAME: &str = "default";
/// Idle connections kept open to the gateway.
const IDLE_CONNECTIONS_MAX: usize = 64;

/// An approved payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    pub payment_id: String,
}

/// A refund made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    pub refund_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The card was declined (402). The outcome is known: nothing was charged. Not retried:
    /// the gateway would decline again.
    #[error("the payment was declined: {reason}")]
    Declined { reason: String },
    /// No answer was had: the breaker is open (nothing was sent), or every attempt timed out,
    /// failed to connect or got a 5xx or 429. The outcome is NOT known when `outcome_unknown`:
    /// an attempt that timed out after sending, or got a 5xx, may have been carried out. Call
    /// again later (`retry_after_secs`) with the same idempotency key: the gateway answers
    /// what it did the first time, and never does it twice.
    #[error("the payment gateway is unavailable")]
    Unavailable {
        retry_after_secs: u64,
        outcome_unknown: bool,
    },
    /// The gateway refused the request itself with another 4xx (an unknown payment, a refund
    /// past what was paid, an idempotency key already used for another request, an invalid
    /// field). The outcome is known: nothing was done. Not retried: it would be refused again.
    #[error("the payment gateway refused the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
}

/// The breaker as the admin overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStatus {
    pub url: String,
    pub breaker: BreakerState,
    /// Failed attempts within `gateway.breaker_window_secs`.
    pub failures: usize,
    /// RFC 3339, while the breaker is open or half-open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<String>,
}

pub struct Gateway {
    http: reqwest::Client,
    /// As configured, for the overview.
    url: String,
    base: Url,
    currency: String,
    backoff: ExponentialBuilder,
    breaker: Mutex<Watched>,
    clock: SharedClock,
    stats: GatewayStats,
}

/// The breaker and the state the log last reported, so that each transition is logged once.
struct Watched {
    breaker: Breaker,
    logged: BreakerState,
}

/// `url` if it is an http(s) URL with a host, as a base that paths can be added to.
pub fn base_url(url: &str) -> anyhow::Result<Url> {
    let base = Url::parse(url).map_err(|e| anyhow::anyhow!("gateway.url {url:?}: {e}"))?;
    anyhow::ensure!(
        matches!(base.scheme(), "http" | "https") && base.has_host() && !base.cannot_be_a_base(),
        "gateway.url must be an http or https URL with a host, not {url:?}"
    );
    Ok(base)
}

impl Gateway {
    /// Time (the breaker's windows and cooldowns) is read from `clock`.
    pub fn new(settings: &GatewaySettings, clock: SharedClock) -> anyhow::Result<Gateway> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A payment is never sent on to another address.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .build()?;
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(settings.retry_base_ms))
            .with_max_delay(timeout)
            .with_max_times(usize::try_from(settings.retries_max)?)
            .with_jitter();
        let breaker = Breaker::new(BreakerSettings {
            failures_max: settings.breaker_failures,
            window_ms: secs_to_ms(settings.breaker_window_secs)?,
            cooldown_ms: secs_to_ms(settings.breaker_cooldown_secs)?,
        });
        Ok(Gateway {
            http,
            url: settings.url.clone(),
            base: base_url(&settings.url)?,
            currency: settings.currency.clone(),
            backoff,
            breaker: Mutex::new(Watched {
                breaker,
                logged: BreakerState::Closed,
            }),
            clock,
            stats: GatewayStats::default(),
        })
    }

    /// The configured currency (`gateway.currency`), which surge's amounts are in.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Charges `amount` (in the smallest unit of `currency`) to the card.
    pub async fn charge(
        &self,
        amount: i64,
        currency: &str,
        card_token: &str,
        idempotency_key: &str,
    ) -> Result<Charged, GatewayError> {
        let request = ChargeRequest {
            amount,
            currency: currency.to_string(),
            card_token: card_token.to_string(),
            idempotency_key: idempotency_key.to_string(),
        };
        let url = self.endpoint(&["payments"]);
        let accepted = self.call(Operation::Charge, url, &request).await?;
        Ok(Charged {
            payment_id: accepted.id,
        })
    }

    /// Refunds `amount` of the payment `payment_id`.
    pub async fn refund(
        &self,
        payment_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Refunded, GatewayError> {
        let request = RefundRequest {
            amount,
            idempotency_key: idempotency_key.to_string(),
        };
        let url = self.endpoint(&["payments", payment_id, "refund"]);
        let accepted = self.call(Operation::Refund, url, &request).await?;
        Ok(Refunded {
            refund_id: accepted.id,
        })
    }

    pub fn status(&self) -> GatewayStatus {
        self.with_breaker(|breaker, now_ms| GatewayStatus {
            url: self.url.clone(),
            breaker: breaker.state(now_ms),
            failures: breaker.failures(now_ms),
            opened_at: breaker.opened_at_ms().map(crate::clock::rfc3339),
        })
    }

    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// The base URL with `segments` added, each percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base_url checked that the URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Attempts until one answers, a failure is definite, or the retries run out.
    async fn call(
        &self,
        operation: Operation,
        url: Url,
        request: &(impl Serialize + Sync),
    ) -> Result<Accepted, GatewayError> {
        let expected = match operation {
            Operation::Charge => APPROVED,
            Operation::Refund => REFUNDED,
        };
        let sent = AtomicBool::new(false);
        let outcome = (|| self.attempt(&url, request, expected, &sent))
            .retry(self.backoff)
            .when(Failure::is_retryable)
            .notify(|failure, wait| {
                self.stats.retried();
                tracing::debug!(?failure, wait_ms = wait.as_millis(), "gateway retry");
            })
            .await;
        self.stats.count(operation, &outcome);
        outcome.map_err(|failure| self.give_up(operation, failure, sent.load(Ordering::Relaxed)))
    }

    /// One request, if the breaker lets it out; its outcome goes to the breaker.
    async fn attempt(
        &self,
        url: &Url,
        request: &(impl Serialize + Sync),
        expected: &str,
        sent: &AtomicBool,
    ) -> Result<Accepted, Failure> {
        let ticket = self.admit()?;
        let outcome = self.exchange(url, request, expected).await;
        if let Err(Failure::Transient { sent: true, .. }) = &outcome {
            sent.store(true, Ordering::Relaxed);
        }
        ticket.report(&outcome);
        outcome
    }

    async fn exchange(
        &self,
        url: &Url,
        request: &(impl Serialize + Sync),
        expected: &str,
    ) -> Result<Accepted, Failure> {
        let response = self
            .http
            .post(url.clone())
            .json(request)
            .send()
            .await
            .map_err(|e| failure::transport(&e))?;
        let status = response.status();
        let body = failure::read_answer(response).await?;
        match status.is_success() {
            true => failure::accepted(&body, expected),
            false => Err(failure::answered(status.as_u16(), &body)),
        }
    }

    fn admit(&self) -> Result<Ticket<'_>, Failure> {
        match self.with_breaker(|breaker, now_ms| breaker.admit(now_ms)) {
            Admission::Call { probe } => Ok(Ticket {
                gateway: self,
                probe,
                reported: false,
            }),
            Admission::Refused { retry_after_ms } => Err(Failure::BreakerOpen {
                retry_after_secs: ms_to_whole_secs(retry_after_ms),
            }),
        }
    }

    fn give_up(&self, operation: Operation, failure: Failure, sent: bool) -> GatewayError {
        match failure {
            Failure::Declined { reason } => GatewayError::Declined { reason },
            Failure::Rejected { status, detail } => GatewayError::Rejected { status, detail },
            Failure::BreakerOpen { retry_after_secs } => GatewayError::Unavailable {
                retry_after_secs,
                outcome_unknown: sent,
            },
            Failure::Transient { why, .. } => {
                tracing::warn!(operation = operation.as_str(), %why, outcome_unknown = sent,
                    "payment gateway call failed after its retries");
                GatewayError::Unavailable {
                    retry_after_secs: self.retry_after_secs(),
                    outcome_unknown: sent,
                }
            }
        }
    }

    /// What is left of an open breaker's cooldown, else a second.
    fn retry_after_secs(&self) -> u64 {
        self.with_breaker(|breaker, now_ms| breaker.cooldown_left_ms(now_ms))
            .map_or(1, ms_to_whole_secs)
    }

    /// Runs `f` on the breaker at the clock's now, and logs the transition it made, if any.
    fn with_breaker<T>(&self, f: impl FnOnce(&mut Breaker, i64) -> T) -> T {
        let now_ms = self.clock.now_ms();
        let mut watched = self
            .breaker
            .lock()
            .expect("nothing panics while holding the breaker");
        let out = f(&mut watched.breaker, now_ms);
        let state = watched.breaker.state(now_ms);
        if state != watched.logged {
            log_transition(watched.logged, state, &watched.breaker, now_ms);
            watched.logged = state;
        }
        out
    }
}

fn log_transition(from: BreakerState, to: BreakerState, breaker: &Breaker, now_ms: i64) {
    let (from, failures) = (from.as_str(), breaker.failures(now_ms));
    match to {
        BreakerState::Open => {
            tracing::warn!(gateway = GATEWAY_NAME, from, failures,
            "payment gateway circuit breaker opened: calls fail at once until its cooldown ends")
        }
        BreakerState::HalfOpen => tracing::info!(
            gateway = GATEWAY_NAME,
            from,
            "payment gateway circuit breaker half-open: the next call probes the gateway"
        ),
        BreakerState::Closed => tracing::info!(
            gateway = GATEWAY_NAME,
            from,
            "payment gateway circuit breaker closed: the gateway answers again"
        ),
    }
}

/// An admitted attempt. A probe must tell the breaker how it went; one dropped unreported
/// (its caller gave up) lets the next call probe instead.
struct Ticket<'a> {
    gateway: &'a Gateway,
    probe: bool,
    reported: bool,
}

impl Ticket<'_> {
    fn report(mut self, outcome: &Result<Accepted, Failure>) {
        self.reported = true;
        let probe = self.probe;
        self.gateway.with_breaker(|breaker, now_ms| match outcome {
            Err(failure) if failure.is_gateway_fault() => breaker.failed(now_ms, probe),
            _ => breaker.succeeded(probe),
        });
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.gateway
                .with_breaker(|breaker, _| breaker.release_probe());
        }
    }
}

fn secs_to_ms(secs: u64) -> anyhow::Result<i64> {
    Ok(i64::try_from(secs)?.saturating_mul(1_000))
}

/// Whole seconds to wait, rounded up, at least 1 (a `Retry-After` of 0 invites a storm).
fn ms_to_whole_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(1)).expect("positive").div_ceil(1_000)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Settings;

    fn gateway(url: &str) -> Gateway {
        let settings = GatewaySettings {
            url: url.into(),
            ..Settings::defaults().gateway
        };
        Gateway::new(&settings, Arc::new(ManualClock::new(0))).expect("a client")
    }

    #[test]
    fn paths_go_under_the_base_and_ids_are_encoded() {
        let refund = gateway("http://gw.test/v1/").endpoint(&["payments", "a/b?c", "refund"]);
        assert_eq!(
            refund.as_str(),
            "http://gw.test/v1/payments/a%2Fb%3Fc/refund"
        );
        let payments = gateway("http://gw.test").endpoint(&["payments"]);
        assert_eq!(payments.as_str(), "http://gw.test/payments");
    }

    #[test]
    fn only_http_urls_with_a_host_are_bases() {
        assert!(base_url("https://gw.test").is_ok());
        for url in [
            "gw.test:8090",
            "mailto:a@gw.test",
            "file:///tmp/gw",
            "http://",
        ] {
            assert!(base_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn calls_can_run_on_any_thread() {
        fn sendable<T: Send>(_: T) {}
        let gateway = gateway("http://gw.test");
        sendable(gateway.charge(1, "KRW", "tok", "key"));
        sendable(gateway.refund("p", 1, "key"));
    }

    #[test]
    fn waits_are_whole_seconds_rounded_up_and_never_zero() {
        let secs: Vec<_> = [-5, 0, 1, 1_000, 1_001].map(ms_to_whole_secs).into();
        assert_eq!(secs, [1, 1, 1, 1, 2]);
    }
}
