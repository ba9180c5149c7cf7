//! What one attempt at the gateway came to, and which of those another attempt may change.
//!
//! Retried: timeouts, connection errors, 5xx, 429, and answers that cannot be read (a 2xx
//! whose body is not the contract's: the same key gets the same answer again, readable or
//! not). Never retried: a decline (402) and any other 4xx, which the gateway would answer
//! again, and a refusal by the open breaker, which has sent nothing.

use super::{Accepted, Declined};

/// The most bytes of an answer read; a larger one is treated as unreadable.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// The most characters of a refusal's text kept in [`Failure::Rejected`].
const DETAIL_CHARS_MAX: usize = 200;
/// The reason given for a 402 whose body does not say.
const REASON_UNKNOWN: &str = "declined";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 402: the card was declined.
    Declined { reason: String },
    /// Another 4xx: the gateway refused the request itself.
    Rejected { status: u16, detail: String },
    /// Another try may succeed. `sent` is false only when the request surely never left
    /// (the connection was not made): otherwise the gateway may have acted on it.
    Transient { sent: bool, why: String },
    /// The breaker is open: nothing was sent.
    BreakerOpen { retry_after_secs: u64 },
}

impl Failure {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Failure::Transient { .. })
    }

    /// Whether it says the gateway is unwell (the breaker counts these).
    pub fn is_gateway_fault(&self) -> bool {
        self.is_retryable()
    }
}

/// A request that got no answer.
pub fn transport(error: &reqwest::Error) -> Failure {
    Failure::Transient {
        sent: !error.is_connect(),
        why: without_url(error),
    }
}

/// An answer that is not a 2xx.
pub fn answered(status: u16, body: &[u8]) -> Failure {
    match status {
        402 => Failure::Declined {
            reason: serde_json::from_slice::<Declined>(body)
                .map_or_else(|_| REASON_UNKNOWN.to_string(), |d| truncated(&d.reason)),
        },
        429 | 500..=599 => Failure::Transient {
            sent: true,
            why: format!("the gateway answered {status}"),
        },
        400..=499 => Failure::Rejected {
            status,
            detail: detail_of(body),
        },
        // A redirect (not followed: a payment is never re-sent elsewhere) or an informational
        // status is no answer of the gateway's API: a proxy in the way, a wrong URL.
        _ => Failure::Transient {
            sent: true,
            why: format!("the gateway answered {status}, which its API never does"),
        },
    }
}

/// A 2xx: the contract's `{id, status}` with the expected status.
pub fn accepted(body: &[u8], expected_status: &str) -> Result<Accepted, Failure> {
    match serde_json::from_slice::<Accepted>(body) {
        Ok(accepted)
            if accepted.status == expected_status && (1..=255).contains(&accepted.id.len()) =>
        {
            Ok(accepted)
        }
        _ => Err(Failure::Transient {
            sent: true,
            why: format!("the gateway's 2xx was not {{id, status: {expected_status}}}"),
        }),
    }
}

/// The body of an answer, at most [`ANSWER_BYTES_MAX`] bytes of it.
pub async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > ANSWER_BYTES_MAX {
            return Err(Failure::Transient {
                sent: true,
                why: format!("the gateway's answer is larger than {ANSWER_BYTES_MAX} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A problem's `detail`, or the start of the text.
fn detail_of(body: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned));
    truncated(&detail.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()))
}

fn truncated(text: &str) -> String {
    text.chars().take(DETAIL_CHARS_MAX).collect()
}

/// reqwest's text names the URL; the kind of error is what a log needs.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    // The innermost cause says most ("Connection refused"); the outer ones wrap it.
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause.and_then(std::error::Error::source) {
        cause = Some(inner);
    }
    match cause {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(status: u16) -> bool {
        answered(status, b"").is_retryable()
    }

    #[test]
    fn server_errors_and_rate_limits_are_retried() {
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(transient(status), "{status}");
        }
    }

    #[test]
    fn a_decline_is_definite_and_keeps_its_reason() {
        let failure = answered(402, br#"{"status": "DECLINED", "reason": "card declined"}"#);
        assert_eq!(
            failure,
            Failure::Declined {
                reason: "card declined".into()
            }
        );
        assert!(!failure.is_retryable());
        assert!(!failure.is_gateway_fault());
        assert_eq!(
            answered(402, b"<html>"),
            Failure::Declined {
                reason: REASON_UNKNOWN.into()
            }
        );
    }

    #[test]
    fn other_client_errors_are_rejected_with_the_problem_detail() {
        let body = br#"{"code": "NOT_FOUND", "detail": "no such payment", "status": 404}"#;
        assert_eq!(
            answered(404, body),
            Failure::Rejected {
                status: 404,
                detail: "no such payment".into()
            }
        );
        for status in [400, 401, 403, 409, 422] {
            assert!(!transient(status), "{status}");
        }
        let long = "x".repeat(1_000);
        let Failure::Rejected { detail, .. } = answered(400, long.as_bytes()) else {
            panic!("a 400 is rejected");
        };
        assert_eq!(detail.len(), DETAIL_CHARS_MAX);
    }

    #[test]
    fn statuses_outside_the_api_are_retried_as_if_the_gateway_were_not_there() {
        for status in [101, 301, 302, 307] {
            assert!(transient(status), "{status}");
        }
    }

    #[test]
    fn a_2xx_must_be_the_contracts_answer() {
        let approved = br#"{"id": "p-1", "status": "APPROVED"}"#;
        assert_eq!(accepted(approved, "APPROVED").expect("approved").id, "p-1");
        for body in [
            &br#"{"id": "p-1", "status": "REFUNDED"}"#[..],
            br#"{"id": "", "status": "APPROVED"}"#,
            b"not json",
        ] {
            let failure = accepted(body, "APPROVED").expect_err("unreadable");
            assert!(failure.is_retryable(), "{failure:?}");
        }
    }

    #[test]
    fn the_open_breaker_is_not_retried_and_is_no_new_fault() {
        let failure = Failure::BreakerOpen {
            retry_after_secs: 3,
        };
        assert!(!failure.is_retryable());
        assert!(!failure.is_gateway_fault());
    }

    #[tokio::test]
    async fn a_refused_connection_was_never_sent_and_is_retried() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let error = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/payments"))
            .send()
            .await
            .expect_err("nothing listens");
        let failure = transport(&error);
        assert!(failure.is_retryable());
        let Failure::Transient { sent, why } = failure else {
            panic!("transient: {failure:?}");
        };
        assert!(!sent);
        assert!(why.starts_with("could not connect: "), "{why}");
        assert!(!why.contains("127.0.0.1"), "no URL: {why}");
    }

    #[tokio::test]
    async fn a_timeout_after_connecting_may_have_been_acted_on_and_is_retried() {
        // The kernel completes the handshake; nobody ever answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let address = silent.local_addr().expect("local addr");
        let error = reqwest::Client::new()
            .post(format!("http://{address}/payments"))
            .timeout(std::time::Duration::from_millis(50))
            .send()
            .await
            .expect_err("no answer comes");
        assert!(error.is_timeout());
        let failure = transport(&error);
        assert!(failure.is_retryable());
        assert!(matches!(failure, Failure::Transient { sent: true, .. }));
    }
}
