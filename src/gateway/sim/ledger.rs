//! The simulator's book: every payment and refund it accepted, in memory, in the order they
//! came. Pure: the server holds it under one lock, so a charge and its key's dedupe are one
//! step and concurrent calls with one key charge once.
//!
//! # Rules
//! - An idempotency key names one request: the same request again gets the first answer and
//!   changes nothing; the same key on another request (another amount, card, payment) is 422
//!   `IDEMPOTENCY_KEY_REUSED`. Payments and refunds share one key space.
//! - Card token `tok_decline` is declined (402); the decline is kept like an answer.
//! - A refund names an approved payment (404 otherwise; 409 for a declined one), and the
//!   refunds of a payment never add up to more than it (409 `CONFLICT`).
//! - At most `records_max` records: past it, new requests get 503 and replays still answer.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{ApiError, ErrorCode, FieldErrors};
use crate::gateway::{ChargeRequest, RefundRequest, APPROVED, DECLINED, REFUNDED};
use surge_domain::money::AMOUNT_MAX;
use surge_domain::text;

/// The card token the simulator declines.
pub const DECLINED_CARD: &str = "tok_decline";
/// Why it declines it.
pub const DECLINE_REASON: &str = "card declined";
/// The longest card token and idempotency key taken.
const TEXT_CHARS_MAX: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Payment,
    Refund,
}

/// One accepted request, as `GET /_sim/payments` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `APPROVED` or `DECLINED` for payments, `REFUNDED` for refunds.
    pub status: &'static str,
    pub idempotency_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_token: Option<String>,
}

/// What the simulator answers to a payment or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 `{id, status}`.
    Accepted { id: String, status: &'static str },
    /// 402 `{status: "DECLINED", reason}`.
    Declined { reason: &'static str },
}

#[derive(Debug)]
pub struct Ledger {
    records: Vec<Record>,
    /// Index in `records` by idempotency key.
    by_key: HashMap<String, usize>,
    /// By payment id: its index in `records` and what has been refunded of it.
    payments: HashMap<String, (usize, i64)>,
    records_max: usize,
}

impl Ledger {
    pub fn new(records_max: usize) -> Ledger {
        Ledger {
            records: Vec::new(),
            by_key: HashMap::new(),
            payments: HashMap::new(),
            records_max,
        }
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn charge(&mut self, request: ChargeRequest) -> Result<Answer, ApiError> {
        check_charge(&request)?;
        let declined = request.card_token == DECLINED_CARD;
        let record = Record {
            id: new_id(),
            kind: Kind::Payment,
            payment_id: None,
            amount: request.amount,
            currency: Some(request.currency),
            status: if declined { DECLINED } else { APPROVED },
            idempotency_key: request.idempotency_key,
            card_token: Some(request.card_token),
        };
        if let Some(first) = self.replay(&record)? {
            return Ok(first);
        }
        self.check_room()?;
        self.payments
            .insert(record.id.clone(), (self.records.len(), 0));
        Ok(self.keep(record))
    }

    pub fn refund(&mut self, payment_id: &str, request: RefundRequest) -> Result<Answer, ApiError> {
        check_refund(&request)?;
        let record = Record {
            id: new_id(),
            kind: Kind::Refund,
            payment_id: Some(payment_id.to_string()),
            amount: request.amount,
            currency: None,
            status: REFUNDED,
            idempotency_key: request.idempotency_key,
            card_token: None,
        };
        if let Some(first) = self.replay(&record)? {
            return Ok(first);
        }
        self.check_room()?;
        self.take_from_payment(payment_id, request.amount)?;
        Ok(self.keep(record))
    }

    /// The first answer to `record`'s key, if the key was used by the same request.
    fn replay(&self, record: &Record) -> Result<Option<Answer>, ApiError> {
        let Some(&index) = self.by_key.get(&record.idempotency_key) else {
            return Ok(None);
        };
        let first = &self.records[index];
        let same = first.kind == record.kind
            && first.payment_id == record.payment_id
            && first.amount == record.amount
            && first.currency == record.currency
            && first.card_token == record.card_token;
        match same {
            true => Ok(Some(answer(first))),
            false => Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this idempotency key was used for another request",
            )),
        }
    }

    fn check_room(&self) -> Result<(), ApiError> {
        match self.records.len() < self.records_max {
            true => Ok(()),
            false => Err(ApiError::unavailable(format!(
                "the simulator holds its most records ({})",
                self.records_max
            ))),
        }
    }

    /// Counts `amount` as refunded of the payment, if it is approved and that much is left.
    fn take_from_payment(&mut self, payment_id: &str, amount: i64) -> Result<(), ApiError> {
        let Some((index, refunded)) = self.payments.get_mut(payment_id) else {
            return Err(ApiError::not_found("no such payment"));
        };
        let payment = &self.records[*index];
        if payment.status == DECLINED {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a declined payment has nothing to refund",
            ));
        }
        let paid = payment.amount;
        if *refunded + amount > paid {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("{refunded} of {paid} is refunded already; {amount} more is too much"),
            ));
        }
        *refunded += amount;
        Ok(())
    }

    fn keep(&mut self, record: Record) -> Answer {
        let answer = answer(&record);
        self.by_key
            .insert(record.idempotency_key.clone(), self.records.len());
        self.records.push(record);
        answer
    }
}

fn answer(record: &Record) -> Answer {
    match record.status {
        DECLINED => Answer::Declined {
            reason: DECLINE_REASON,
        },
        status => Answer::Accepted {
            id: record.id.clone(),
            status,
        },
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn check_charge(request: &ChargeRequest) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    check_common(&mut errors, request.amount, &request.idempotency_key);
    errors.check(
        request.currency.len() == 3 && request.currency.bytes().all(|b| b.is_ascii_uppercase()),
        "currency",
        "must be an ISO 4217 code of three capital letters",
    );
    check_text(&mut errors, "card_token", &request.card_token);
    errors.finish().map_err(ApiError::from)
}

fn check_refund(request: &RefundRequest) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    check_common(&mut errors, request.amount, &request.idempotency_key);
    errors.finish().map_err(ApiError::from)
}

/// The fields every request has.
fn check_common(errors: &mut FieldErrors, amount: i64, idempotency_key: &str) {
    errors.check(
        (1..=AMOUNT_MAX).contains(&amount),
        "amount",
        format!("must be 1 to {AMOUNT_MAX}"),
    );
    check_text(errors, "idempotency_key", idempotency_key);
}

fn check_text(errors: &mut FieldErrors, field: &str, value: &str) {
    errors.check(
        (1..=TEXT_CHARS_MAX).contains(&value.chars().count()) && text::is_plain(value, false),
        field,
        format!(
            "must be 1 to {TEXT_CHARS_MAX} characters, {}",
            text::PLAIN_RULE
        ),
    );
}

#[cfg(test)]
mod tests;
