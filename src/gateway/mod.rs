//! The payment gateway edge (API.md "Payment gateway"): the client that the checkout saga
//! charges and refunds through, and the simulator of the gateway that `surge gateway-sim` runs.
//!
//! - [`client`]: [`Gateway`], the HTTP client: a timeout per attempt, jittered retries of what
//!   another try may fix, and one circuit breaker whose state the metrics and the admin
//!   overview show.
//! - [`breaker`]: the breaker's state machine, pure, with time passed in.
//! - [`failure`]: what one attempt came to, and which outcomes are retried.
//! - [`stats`]: the calls by outcome, for `GET /metrics`.
//! - [`sim`]: the simulator's HTTP server, and in [`sim::ledger`] its book of payments and
//!   refunds (dedupe by idempotency key, refund bounds, the record bound).
//! - The bodies below, which both sides of the wire share.

pub mod breaker;
pub mod client;
pub mod failure;
pub mod sim;
pub mod stats;

use serde::{Deserialize, Serialize};

pub use client::{Charged, Gateway, GatewayError, GatewayStatus, Refunded};

/// `status` of an approved payment.
pub const APPROVED: &str = "APPROVED";
/// `status` of a declined payment.
pub const DECLINED: &str = "DECLINED";
/// `status` of a refund.
pub const REFUNDED: &str = "REFUNDED";

/// `POST {url}/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub amount: i64,
    pub currency: String,
    pub card_token: String,
    pub idempotency_key: String,
}

/// `POST {url}/payments/{id}/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub amount: i64,
    pub idempotency_key: String,
}

/// 200 to a payment (`APPROVED`, the payment's id) or a refund (`REFUNDED`, the refund's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub id: String,
    pub status: String,
}

/// 402 to a payment: `DECLINED` and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declined {
    pub status: String,
    pub reason: String,
}
