//! The HTTP layer (actix-web). Handlers parse and check input, authorise the caller and send
//! one message per entity to its region; they hold no business rules.

pub mod admin;
pub mod auth;
pub mod charges;
pub mod check_in;
pub mod connections;
pub mod coupons;
pub mod events;
pub mod idempotent;
pub mod lists;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod queue;
pub mod sagas;
pub mod security;
pub mod stock;
pub mod system;
pub mod throttle;
pub mod time_sales;
pub mod wallets;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::app::Services;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::breaker::BreakerState;

pub type State = web::Data<Services>;

/// Every route of API v1, under `/api/v1`; health checks also at the root.
///
/// Each family of routes is a scope with a static prefix: actix matches a dynamic path segment
/// with a regex, tried route by route, so a flat list made every hot request run about ten regex
/// searches (12% of the server's CPU under the time-sale flagship). A static prefix is a plain
/// string compare, and within a scope the hot route comes first.
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(system::routes)
        .configure(metrics::routes)
        .route("/admin", web::get().to(admin::console))
        .route("/admin/console.js", web::get().to(admin::console_js))
        .route("/admin/console.css", web::get().to(admin::console_css))
        .service(
            web::scope("/api/v1")
                .configure(system::routes)
                .configure(metrics::routes)
                .configure(orders::routes)
                .configure(time_sales::routes)
                .configure(coupons::routes)
                .configure(wallets::routes)
                .configure(events::routes)
                .configure(stock::routes)
                .configure(products::routes)
                .configure(auth::routes)
                .configure(admin::routes)
                .configure(sagas::routes)
                .configure(ws::routes)
                .configure(openapi::routes),
        )
        .configure(openapi::routes);
}

/// Extractor settings that turn malformed input into problem+json. JSON bodies are read by
/// [`RawBody`] (bounded here) and parsed by [`RawBody::json`], one path for every route.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, body_limit_bytes: usize) {
    cfg.app_data(web::PayloadConfig::default().limit(body_limit_bytes))
        .app_data(web::PathConfig::default().error_handler(|err, _| {
            ApiError::new(ErrorCode::MalformedRequest, err.to_string()).into()
        }))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::validation("query", err.to_string()).into()),
        );
}

/// 503 `GATEWAY_UNAVAILABLE`, with the breaker's cooldown as `Retry-After`.
pub(crate) fn gateway_unavailable(state: &Services, detail: impl Into<String>) -> ApiError {
    ApiError {
        retry_after_secs: Some(state.rt.settings.gateway.breaker_cooldown_secs),
        ..ApiError::new(ErrorCode::GatewayUnavailable, detail)
    }
}

/// A card payment while the gateway's breaker is open fails at once, changing nothing.
pub(crate) fn refuse_while_gateway_open(state: &Services) -> Result<(), ApiError> {
    match state.gateway.status().breaker {
        BreakerState::Open => Err(gateway_unavailable(
            state,
            "the payment gateway is unavailable",
        )),
        BreakerState::Closed | BreakerState::HalfOpen => Ok(()),
    }
}

fn serde_error(err: &serde_json::Error) -> ApiError {
    if err.is_data() {
        ApiError::validation("body", err.to_string())
    } else {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("malformed JSON: {err}"),
        )
    }
}

/// The raw request body, bounded by `server.body_limit_bytes` (413 past it) and in time by
/// `server.body_read_timeout_secs` (408 past it). Handlers that take idempotency keys need the
/// bytes to fingerprint the request.
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        if let Err(error) = security::require_json(req) {
            return Box::pin(std::future::ready(Err(error)));
        }
        let bytes = web::Bytes::from_request(req, payload);
        let timeout = body_read_timeout(req);
        Box::pin(async move { read_within(timeout, bytes).await.map(RawBody) })
    }
}

/// The bound of an app built without [`Services`] (none is, outside unit tests); the server's
/// comes from `server.body_read_timeout_secs`.
const BODY_READ_TIMEOUT_FALLBACK: Duration = Duration::from_secs(10);

fn body_read_timeout(req: &HttpRequest) -> Duration {
    req.app_data::<State>()
        .map_or(BODY_READ_TIMEOUT_FALLBACK, |state| {
            Duration::from_secs(state.rt.settings.server.body_read_timeout_secs)
        })
}

/// Reads a whole body within `timeout`: actix bounds the headers' arrival but not the body's,
/// so a client that sends part of a body and stalls would hold its connection (and a file
/// descriptor) for ever. Past the bound: 408, which closes the connection (see `ApiError`).
async fn read_within(
    timeout: Duration,
    body: impl Future<Output = Result<web::Bytes, actix_web::Error>>,
) -> Result<web::Bytes, ApiError> {
    let Ok(read) = tokio::time::timeout(timeout, body).await else {
        return Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        ));
    };
    read.map_err(|err| {
        if err.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        } else {
            // The framework's text names internals (decoder states, I/O error kinds).
            tracing::debug!(error = %err, "request body unreadable");
            ApiError::new(
                ErrorCode::MalformedRequest,
                "the request body could not be read (a broken encoding or an early end)",
            )
        }
    })
}

impl RawBody {
    /// 400 for JSON that does not parse, 422 for JSON of the wrong shape. Every body of the
    /// API is an object: serde would also read a struct from an array of its fields in order
    /// (`[1]` as `{"quantity": 1}`), which no client means, so anything else is refused.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let value: T = serde_json::from_slice(&self.0).map_err(|e| serde_error(&e))?;
        match first_byte(&self.0) {
            Some(b'{') => Ok(value),
            _ => Err(ApiError::validation("body", "must be a JSON object")),
        }
    }

    /// As [`RawBody::json`] for an optional body: no body, or JSON `null`, is `T::default()`.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        match first_byte(&self.0) {
            None => Ok(T::default()),
            Some(b'n') => Ok(self.json_null()?.unwrap_or_default()),
            Some(_) => self.json(),
        }
    }

    /// The body read as `null` (or a parse error that says what is wrong with it).
    fn json_null<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        serde_json::from_slice::<Option<T>>(&self.0).map_err(|e| serde_error(&e))
    }
}

/// The first byte of a body that is not JSON white space.
fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub user_id: Option<String>,
}

impl ListQuery {
    pub fn limit(&self, state: &Services) -> Result<u32, ApiError> {
        let lists = &state.rt.settings.lists;
        match self.limit {
            None => Ok(lists.limit_default),
            Some(0) => Err(ApiError::validation("limit", "must be at least 1")),
            Some(n) if n > lists.limit_max => Err(ApiError::validation(
                "limit",
                format!("must be at most {}", lists.limit_max),
            )),
            Some(n) => Ok(n),
        }
    }
}

/// A page of a read table as API.md lists it: `{items, next_cursor}`, newest first.
pub async fn read_page(
    state: &Services,
    kind: &str,
    owner: Option<&str>,
    status: Option<&str>,
    query: &ListQuery,
    limit: u32,
) -> Result<serde_json::Value, ApiError> {
    let page = read_rows(state, kind, owner, status, query.cursor.as_deref(), limit).await?;
    let items: Vec<serde_json::Value> = page
        .rows
        .iter()
        .map(|row| serde_json::from_str(&row.body))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(serde_json::json!({ "items": items, "next_cursor": page.next_cursor }))
}

/// One page of a read table's rows, newest first; a cursor the store cannot read is 422.
pub async fn read_rows(
    state: &Services,
    kind: &str,
    owner: Option<&str>,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<crate::persistence::ReadPage, ApiError> {
    state
        .rt
        .store
        .read_rows(kind, owner, status, cursor, limit)
        .await
        .map_err(|e| match e {
            crate::persistence::StoreError::Corrupt(_) => ApiError::validation("cursor", "invalid"),
            other => ApiError::internal(other),
        })
}

/// `[A-Za-z0-9._-]{1,64}`: SKUs and user ids.
pub fn is_valid_ident(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a request no route took gets: 405 with `Allow` when the API has the path for other
/// methods, else 404; both as problem+json.
pub async fn no_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    // The path as the router matched it (percent-decoded), not as sent.
    let allowed = openapi::methods_for(req.match_info().as_str());
    if allowed.is_empty() {
        return Err(ApiError::not_found("no such route"));
    }
    let allow = allowed.join(", ");
    let error = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not served here; allowed: {allow}", req.method()),
    );
    let mut response = actix_web::ResponseError::error_response(&error);
    let value =
        actix_web::http::header::HeaderValue::from_str(&allow).map_err(ApiError::internal)?;
    response
        .headers_mut()
        .insert(actix_web::http::header::ALLOW, value);
    Ok(response)
}

/// Serves HEAD wherever GET is served (RFC 9110 asks every general-purpose server to): the
/// request is routed as GET, and actix sends the answer's headers (with its `Content-Length`)
/// without its body, because its codec marked the request HEAD when it read it.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    use actix_web::http::Method;
    if req.method() == Method::HEAD {
        // A WebSocket handshake is a GET (RFC 6455); as a HEAD, answered without a body, it
        // would open a session whose frames are never sent.
        if req.headers().contains_key(actix_web::http::header::UPGRADE) {
            let error = ApiError::new(
                ErrorCode::MalformedRequest,
                "a protocol upgrade (WebSocket) must be asked with GET",
            );
            let response = actix_web::ResponseError::error_response(&error);
            return Ok(req.into_response(response).map_into_right_body());
        }
        req.head_mut().method = Method::GET;
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Echoes the request id that tracing-actix-web gave the request as `X-Request-Id`, so a
/// client can quote it and an operator can find the request's log lines.
pub async fn request_id_header(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let request_id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .map(|id| id.to_string());
    let mut response = next.call(req).await?;
    if let Some(id) = request_id {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-request-id"),
                value,
            );
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_sku_alphabet() {
        assert!(is_valid_ident("SKU-1.a_b"));
        assert!(!is_valid_ident(""));
        assert!(!is_valid_ident("has space"));
        assert!(!is_valid_ident(&"x".repeat(65)));
    }

    #[test]
    fn malformed_json_is_400_and_wrong_shape_is_422() {
        let body = RawBody(web::Bytes::from_static(b"{not json"));
        let err = body.json::<serde_json::Value>().expect_err("malformed");
        assert_eq!(err.code, ErrorCode::MalformedRequest);
        #[derive(Debug, Deserialize)]
        struct Shape {
            #[allow(dead_code)]
            quantity: i64,
        }
        let body = RawBody(web::Bytes::from_static(b"{\"quantity\": \"x\"}"));
        let err = body.json::<Shape>().expect_err("wrong type");
        assert_eq!(err.code, ErrorCode::ValidationFailed);
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Quantity {
        #[serde(default)]
        quantity: i64,
    }

    fn raw(text: &'static str) -> RawBody {
        RawBody(web::Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn a_body_is_an_object_not_an_array_of_its_fields() {
        // serde alone reads `[5]` as `{"quantity": 5}`.
        assert_eq!(
            serde_json::from_str::<Quantity>("[5]").unwrap(),
            Quantity { quantity: 5 }
        );
        for text in ["[5]", " [5]", "5"] {
            let err = raw(text).json::<Quantity>().expect_err(text);
            assert_eq!(err.code, ErrorCode::ValidationFailed, "{text}");
            let err = raw(text).json_or_default::<Quantity>().expect_err(text);
            assert_eq!(err.code, ErrorCode::ValidationFailed, "{text}");
        }
        let err = raw("[5").json::<Quantity>().expect_err("unparsable");
        assert_eq!(err.code, ErrorCode::MalformedRequest);
        assert_eq!(
            raw(" \n{\"quantity\": 5}").json::<Quantity>().unwrap(),
            Quantity { quantity: 5 }
        );
    }

    #[test]
    fn an_optional_body_may_be_missing_or_null() {
        for text in ["", " \n", "null", " null "] {
            assert_eq!(
                raw(text).json_or_default::<Quantity>().unwrap(),
                Quantity::default(),
                "{text:?}"
            );
        }
        assert_eq!(
            raw("{\"quantity\": 2}")
                .json_or_default::<Quantity>()
                .unwrap(),
            Quantity { quantity: 2 }
        );
        let err = raw("nul")
            .json_or_default::<Quantity>()
            .expect_err("unparsable");
        assert_eq!(err.code, ErrorCode::MalformedRequest);
    }
}
