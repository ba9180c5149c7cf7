//! Why a command was refused, in the words of the API contract: a stable [`ErrorCode`], a
//! detail for people, and the invalid fields of a 422. The server maps a [`Rejection`] to its
//! HTTP status and problem+json body in one place (`surge::error`); nothing here knows HTTP.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($variant:ident => $code:literal),+ $(,)?) => {
        /// Stable error codes (docs/API.md). Adding one is fine; renaming one is a breaking
        /// change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }
        }
    };
}

error_codes! {
    MalformedRequest => "MALFORMED_REQUEST",
    ValidationFailed => "VALIDATION_FAILED",
    Unauthorized => "UNAUTHORIZED",
    Forbidden => "FORBIDDEN",
    NotFound => "NOT_FOUND",
    MethodNotAllowed => "METHOD_NOT_ALLOWED",
    RequestTimeout => "REQUEST_TIMEOUT",
    Conflict => "CONFLICT",
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
    EmailTaken => "EMAIL_TAKEN",
    InvalidCredentials => "INVALID_CREDENTIALS",
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
    IdempotencyInFlight => "IDEMPOTENCY_IN_FLIGHT",
    RateLimited => "RATE_LIMITED",
    Unavailable => "UNAVAILABLE",
    InsufficientStock => "INSUFFICIENT_STOCK",
    SaleNotActive => "SALE_NOT_ACTIVE",
    SoldOut => "SOLD_OUT",
    PerUserLimitExceeded => "PER_USER_LIMIT_EXCEEDED",
    QueuePassRequired => "QUEUE_PASS_REQUIRED",
    CouponExhausted => "COUPON_EXHAUSTED",
    CouponLimitReached => "COUPON_LIMIT_REACHED",
    CouponNotUsable => "COUPON_NOT_USABLE",
    MinOrderNotMet => "MIN_ORDER_NOT_MET",
    InsufficientPoints => "INSUFFICIENT_POINTS",
    AlreadyCancelled => "ALREADY_CANCELLED",
    SeatUnavailable => "SEAT_UNAVAILABLE",
    TooManySeats => "TOO_MANY_SEATS",
    SalesNotOpen => "SALES_NOT_OPEN",
    OrderNotPayable => "ORDER_NOT_PAYABLE",
    OrderExpired => "ORDER_EXPIRED",
    PaymentDeclined => "PAYMENT_DECLINED",
    GatewayUnavailable => "GATEWAY_UNAVAILABLE",
    Internal => "INTERNAL",
    // Appended, never inserted: a saga's journal holds codes by their position.
    TicketInvalid => "TICKET_INVALID",
    AlreadyCheckedIn => "ALREADY_CHECKED_IN",
}

/// One invalid field, listed in a 422 `VALIDATION_FAILED` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A command refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub detail: String,
    /// The invalid fields, for `VALIDATION_FAILED`; empty otherwise.
    pub fields: Vec<FieldError>,
}

impl Rejection {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Rejection {
        Rejection {
            code,
            detail: detail.into(),
            fields: Vec::new(),
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Rejection {
        Rejection::invalid_fields(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    /// `VALIDATION_FAILED` listing `fields`; the detail names each one.
    pub fn invalid_fields(fields: Vec<FieldError>) -> Rejection {
        let detail = fields
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Rejection {
            code: ErrorCode::ValidationFailed,
            detail,
            fields,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Rejection {
        Rejection::new(ErrorCode::NotFound, what)
    }

    pub fn forbidden(detail: impl Into<String>) -> Rejection {
        Rejection::new(ErrorCode::Forbidden, detail)
    }
}

/// Collects the invalid fields of one command, so the client hears of all of them in one
/// 422 `VALIDATION_FAILED`.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// Records `field` as invalid with `message` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(FieldError {
                field: field.to_string(),
                message: message.into(),
            });
        }
    }

    /// `Ok` when every check passed, else the rejection listing each failure.
    pub fn finish(self) -> Result<(), Rejection> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(Rejection::invalid_fields(self.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_list_every_failed_check_in_order() {
        let mut errors = FieldErrors::new();
        errors.check(true, "fine", "never shown");
        errors.check(false, "quantity", "must be 1 to 10");
        errors.check(false, "name", format!("must be at most {} bytes", 200));
        let err = errors.finish().expect_err("two checks failed");
        assert_eq!(err.code, ErrorCode::ValidationFailed);
        let fields: Vec<&str> = err.fields.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["quantity", "name"]);
        assert_eq!(
            err.detail,
            "quantity: must be 1 to 10; name: must be at most 200 bytes"
        );
        assert!(FieldErrors::new().finish().is_ok());
    }

    #[test]
    fn every_code_has_a_distinct_screaming_snake_name() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json, code.as_str());
        }
    }
}
