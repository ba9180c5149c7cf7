//! The one table of error codes: each code's HTTP status and title, and its problem+json body
//! (RFC 9457). Every error a client can see goes through [`ApiError`].

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $title:literal)),+ $(,)?) => {
        /// Stable error codes (API.md). Adding one is fine; renaming one is a breaking change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::from_u16($status).expect("valid status")),+
                }
            }

            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title),+ }
            }
        }
    };
}

error_codes! {
    MalformedRequest => ("MALFORMED_REQUEST", 400, "Malformed request"),
    ValidationFailed => ("VALIDATION_FAILED", 422, "Validation failed"),
    Unauthorized => ("UNAUTHORIZED", 401, "Unauthorized"),
    Forbidden => ("FORBIDDEN", 403, "Forbidden"),
    NotFound => ("NOT_FOUND", 404, "Not found"),
    MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405, "Method not allowed"),
    RequestTimeout => ("REQUEST_TIMEOUT", 408, "Request timeout"),
    Conflict => ("CONFLICT", 409, "Conflict"),
    PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413, "Payload too large"),
    UnsupportedMediaType => ("UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type"),
    EmailTaken => ("EMAIL_TAKEN", 409, "Email already registered"),
    InvalidCredentials => ("INVALID_CREDENTIALS", 401, "Invalid credentials"),
    IdempotencyKeyReused => ("IDEMPOTENCY_KEY_REUSED", 422, "Idempotency key reused with a different request"),
    IdempotencyInFlight => ("IDEMPOTENCY_IN_FLIGHT", 409, "A request with this idempotency key is still running"),
    RateLimited => ("RATE_LIMITED", 429, "Rate limited"),
    Unavailable => ("UNAVAILABLE", 503, "Temporarily unavailable"),
    InsufficientStock => ("INSUFFICIENT_STOCK", 409, "Insufficient stock"),
    SaleNotActive => ("SALE_NOT_ACTIVE", 422, "Sale not active"),
    SoldOut => ("SOLD_OUT", 409, "Sold out"),
    PerUserLimitExceeded => ("PER_USER_LIMIT_EXCEEDED", 422, "Per-user limit exceeded"),
    QueuePassRequired => ("QUEUE_PASS_REQUIRED", 403, "Queue pass required"),
    CouponExhausted => ("COUPON_EXHAUSTED", 409, "Coupons exhausted"),
    CouponLimitReached => ("COUPON_LIMIT_REACHED", 409, "Coupon limit reached"),
    CouponNotUsable => ("COUPON_NOT_USABLE", 422, "Coupon not usable"),
    MinOrderNotMet => ("MIN_ORDER_NOT_MET", 422, "Minimum order amount not met"),
    InsufficientPoints => ("INSUFFICIENT_POINTS", 409, "Insufficient points"),
    AlreadyCancelled => ("ALREADY_CANCELLED", 409, "Already cancelled"),
    SeatUnavailable => ("SEAT_UNAVAILABLE", 409, "Seat unavailable"),
    TooManySeats => ("TOO_MANY_SEATS", 422, "Too many seats"),
    SalesNotOpen => ("SALES_NOT_OPEN", 422, "Sales not open"),
    OrderNotPayable => ("ORDER_NOT_PAYABLE", 409, "Order not payable"),
    OrderExpired => ("ORDER_EXPIRED", 409, "Order expired"),
    PaymentDeclined => ("PAYMENT_DECLINED", 402, "Payment declined"),
    GatewayUnavailable => ("GATEWAY_UNAVAILABLE", 503, "Payment gateway unavailable"),
    Internal => ("INTERNAL", 500, "Internal error"),
}

/// One invalid field, listed in a 422 `VALIDATION_FAILED` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = ProblemField)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Collects the invalid fields of one request body, so the client hears of all of them in one
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

    /// `Ok` when every check passed, else the 422 listing each failure.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(ApiError::invalid_fields(self.0)),
        }
    }
}

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// The change may or may not have been made (a timeout or a failed commit after the
    /// events were handed to the journal): callers must not compensate, and the client
    /// should retry with the same Idempotency-Key.
    pub outcome_unknown: bool,
    /// For 429 and 503: seconds until a retry may succeed, if known better than the default.
    pub retry_after_secs: Option<u64>,
}

/// Seconds a client should wait before retrying a 429 or 503.
const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            outcome_unknown: false,
            retry_after_secs: None,
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid_fields(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    pub fn invalid_fields(errors: Vec<FieldError>) -> ApiError {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            code: ErrorCode::ValidationFailed,
            detail,
            errors,
            outcome_unknown: false,
            retry_after_secs: None,
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, detail)
    }

    /// 503 for a change whose outcome is not known yet.
    pub fn outcome_unknown(detail: impl Into<String>) -> ApiError {
        ApiError {
            outcome_unknown: true,
            ..ApiError::unavailable(detail)
        }
    }

    /// 429, with the seconds until the next attempt is allowed.
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ApiError::new(ErrorCode::RateLimited, detail)
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, what)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, detail)
    }

    /// A server-side failure: logged in full, shown to the client without internals.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "the server failed to handle this request",
        )
    }

    pub fn body(&self) -> serde_json::Value {
        let kebab = self.code.as_str().to_ascii_lowercase().replace('_', "-");
        let mut body = serde_json::json!({
            "type": format!("/problems/{kebab}"),
            "title": self.code.title(),
            "status": self.code.status().as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        });
        if !self.errors.is_empty() {
            body["errors"] = serde_json::to_value(&self.errors).expect("field errors serialise");
        }
        body
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        if self.code == ErrorCode::RequestTimeout {
            // RFC 9110 15.5.9: a 408 closes the connection; what the client still sends of
            // its request could not be told from a next one.
            response.force_close();
        }
        if matches!(self.code.status().as_u16(), 429 | 503) {
            let secs = self.retry_after_secs.unwrap_or(RETRY_AFTER_SECS);
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.json(self.body())
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
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["quantity", "name"]);
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

    #[test]
    fn problem_body_has_kebab_type_and_code() {
        let err = ApiError::new(ErrorCode::InsufficientStock, "only 3 left");
        let body = err.body();
        assert_eq!(body["type"], "/problems/insufficient-stock");
        assert_eq!(body["status"], 409);
        assert_eq!(body["code"], "INSUFFICIENT_STOCK");
        assert_eq!(body["detail"], "only 3 left");
    }

    #[test]
    fn validation_errors_list_their_fields() {
        let err = ApiError::validation("quantity", "must be at least 1");
        assert_eq!(err.code.status().as_u16(), 422);
        assert_eq!(err.body()["errors"][0]["field"], "quantity");
    }
}
