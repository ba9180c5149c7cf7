//! The one table of error codes' HTTP statuses and titles, and the problem+json body (RFC
//! 9457). Every error a client can see goes through [`ApiError`]; an entity's [`Rejection`]
//! becomes one here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

pub use surge_domain::{ErrorCode, FieldError, FieldErrors, Rejection};

macro_rules! statuses {
    ($($variant:ident => ($status:literal, $title:literal)),+ $(,)?) => {
        /// The HTTP status of each code.
        pub fn status_of(code: ErrorCode) -> StatusCode {
            match code {
                $(ErrorCode::$variant => StatusCode::from_u16($status).expect("valid status")),+
            }
        }

        /// The problem title of each code.
        pub fn title_of(code: ErrorCode) -> &'static str {
            match code { $(ErrorCode::$variant => $title),+ }
        }
    };
}

statuses! {
    MalformedRequest => (400, "Malformed request"),
    ValidationFailed => (422, "Validation failed"),
    Unauthorized => (401, "Unauthorized"),
    Forbidden => (403, "Forbidden"),
    NotFound => (404, "Not found"),
    MethodNotAllowed => (405, "Method not allowed"),
    RequestTimeout => (408, "Request timeout"),
    Conflict => (409, "Conflict"),
    PayloadTooLarge => (413, "Payload too large"),
    UnsupportedMediaType => (415, "Unsupported media type"),
    EmailTaken => (409, "Email already registered"),
    InvalidCredentials => (401, "Invalid credentials"),
    IdempotencyKeyReused => (422, "Idempotency key reused with a different request"),
    IdempotencyInFlight => (409, "A request with this idempotency key is still running"),
    RateLimited => (429, "Rate limited"),
    Unavailable => (503, "Temporarily unavailable"),
    InsufficientStock => (409, "Insufficient stock"),
    SaleNotActive => (422, "Sale not active"),
    SoldOut => (409, "Sold out"),
    PerUserLimitExceeded => (422, "Per-user limit exceeded"),
    QueuePassRequired => (403, "Queue pass required"),
    CouponExhausted => (409, "Coupons exhausted"),
    CouponLimitReached => (409, "Coupon limit reached"),
    CouponNotUsable => (422, "Coupon not usable"),
    MinOrderNotMet => (422, "Minimum order amount not met"),
    InsufficientPoints => (409, "Insufficient points"),
    AlreadyCancelled => (409, "Already cancelled"),
    SeatUnavailable => (409, "Seat unavailable"),
    TooManySeats => (422, "Too many seats"),
    SalesNotOpen => (422, "Sales not open"),
    OrderNotPayable => (409, "Order not payable"),
    OrderExpired => (409, "Order expired"),
    PaymentDeclined => (402, "Payment declined"),
    GatewayUnavailable => (503, "Payment gateway unavailable"),
    Internal => (500, "Internal error"),
    TicketInvalid => (422, "Ticket invalid"),
    AlreadyCheckedIn => (409, "Already checked in"),
}

/// One invalid field, listed in a 422 `VALIDATION_FAILED` body.
// The OpenAPI schema of the domain's `FieldError`, which knows no OpenAPI.
#[derive(utoipa::ToSchema)]
#[schema(as = ProblemField)]
#[allow(dead_code)]
pub struct ProblemFieldSchema {
    pub field: String,
    pub message: String,
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

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        ApiError {
            code: rejection.code,
            detail: rejection.detail,
            errors: rejection.fields,
            outcome_unknown: false,
            retry_after_secs: None,
        }
    }
}

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
        Rejection::invalid_fields(errors).into()
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
            "title": title_of(self.code),
            "status": status_of(self.code).as_u16(),
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
        status_of(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        if self.code == ErrorCode::RequestTimeout {
            // RFC 9110 15.5.9: a 408 closes the connection; what the client still sends of
            // its request could not be told from a next one.
            response.force_close();
        }
        if matches!(status_of(self.code).as_u16(), 429 | 503) {
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
        assert_eq!(status_of(err.code).as_u16(), 422);
        assert_eq!(err.body()["errors"][0]["field"], "quantity");
    }
}
