//! What every answer carries and every request is held to, whatever its route:
//!
//! - **No tokens in URLs.** Proxies, logs, browser history and `Referer` headers keep URLs, so
//!   `?access_token=` is taken out of every request before anything logs it, and refused with
//!   401 everywhere except the WebSocket handshake (a browser cannot set a header on one).
//! - **JSON bodies are JSON.** A body must say `Content-Type: application/json` (or a `+json`
//!   type), else 415: a plain HTML form on another site can then never post to the API.
//! - **Headers.** Every answer: `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//!   no-referrer`. HTML pages (the console, the API docs): a Content-Security-Policy that allows
//!   only this server's own scripts and forbids framing. Every answer that is not a static file:
//!   `Cache-Control: no-store`, since most carry somebody's orders, wallet or tokens.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::error::{ApiError, ErrorCode};

/// The one route that may carry `?access_token=`: browsers open WebSockets without headers.
const WEBSOCKET_PATH: &str = "/api/v1/ws";

/// The console: its own script and style files only, talking to this server only.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";
/// Swagger UI sets style attributes and draws data: images as it renders; still no inline or
/// foreign script.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; font-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The outermost layer: one pass for every request, since each layer costs every request an
/// allocation (these checks in four layers cost /healthz 2 us of CPU, a fifth of its cost).
///
/// 1. Takes every `access_token` out of the query before anything (the request log among it)
///    sees the URI. On the WebSocket handshake the first one becomes the `Authorization`
///    header (unless one is there: the header wins); on any other route the request is
///    answered 401, whatever else it carries, so a client learns at once instead of leaking
///    tokens into logs for ever.
/// 2. Refuses a request on a connection past its address's bound (429, then close).
/// 3. Adds the headers every answer carries (see the module's doc).
///
/// The refusals of 1 and 2 are answered here, before the request log and the request metrics:
/// `surge_http_connections_refused_total` counts the second kind.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refusal = take_url_token(&mut req).or_else(|| super::connections::over_cap_refusal(&req));
    // Decided before the call: the request may not be kept (actix needs it unshared to route).
    let docs = is_docs(req.path());
    let static_file = is_static_file(req.path());
    let mut response = match refusal {
        Some(refusal) => req.into_response(refusal).map_into_right_body(),
        None => next.call(req).await?.map_into_left_body(),
    };
    add_headers(response.headers_mut(), docs, static_file);
    Ok(response)
}

/// Takes the `access_token`s out of the request's URI; the 401 to answer when the route is not
/// the WebSocket handshake.
fn take_url_token(req: &mut ServiceRequest) -> Option<HttpResponse> {
    let (token, rest) = req.uri().query().and_then(split_access_token)?;
    let target = match rest.is_empty() {
        true => req.path().to_string(),
        false => format!("{}?{rest}", req.path()),
    };
    let websocket = req.path() == WEBSOCKET_PATH;
    if let Ok(uri) = target.parse() {
        req.head_mut().uri = uri;
    }
    if !websocket {
        let error = ApiError::new(
            ErrorCode::Unauthorized,
            "an access token is never accepted in a URL (proxies and logs keep URLs); send it \
             in the Authorization header",
        );
        return Some(error.error_response());
    }
    if !req.headers().contains_key(header::AUTHORIZATION) {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
    }
    None
}

fn add_headers(out: &mut HeaderMap, docs: bool, static_file: bool) {
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if is_html(out.get(header::CONTENT_TYPE)) {
        let policy = if docs { DOCS_CSP } else { CONSOLE_CSP };
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy),
        );
        out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !static_file && !out.contains_key(header::CACHE_CONTROL) {
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// 415 unless a request that has a body says it is JSON. A request without a body (no
/// `Content-Length` above 0, no `Transfer-Encoding`) needs no type.
pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|length| length.trim() != "0");
    if !has_body {
        return Ok(());
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if is_json_media_type(media_type) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "the body must be JSON, sent with Content-Type: application/json",
    ))
}

/// `application/json` or `application/<anything>+json`, any parameters, any case.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_html(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/html"))
}

fn is_docs(path: &str) -> bool {
    path.starts_with("/docs") || path.starts_with("/api/v1/docs")
}

/// Files that are the same for everyone and hold nothing personal, so caches may keep them.
fn is_static_file(path: &str) -> bool {
    path.starts_with("/docs/")
        || path.starts_with("/api/v1/docs/")
        || path == "/admin/console.js"
        || path == "/admin/console.css"
}

/// The first `access_token` of a query and the query without any of them; `None` when it has
/// none.
fn split_access_token(query: &str) -> Option<(String, String)> {
    // Every request with a query passes here: most have no token, and need no allocation.
    if !query.contains("access_token=") {
        return None;
    }
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("access_token=") {
            Some(value) => {
                token.get_or_insert_with(|| value.to_string());
            }
            None => rest.push(pair),
        }
    }
    token.map(|token| (token, rest.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::{web, App, HttpResponse};

    /// Answers with what the layers inside the stripping middleware (the request log among
    /// them) see of the request: its URI and its Authorization header.
    async fn echo(req: HttpRequest) -> HttpResponse {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map_or("-", |v| v.to_str().expect("text"));
        HttpResponse::Ok().body(format!("{} {auth}", req.uri()))
    }

    #[actix_web::test]
    async fn a_url_token_reaches_no_inner_layer_and_only_the_websocket_takes_it() {
        let app = init_service(
            App::new()
                .default_service(web::to(echo))
                .wrap(from_fn(guard)),
        )
        .await;
        let seen = |uri: &'static str| TestRequest::get().uri(uri).to_request();
        let response = call_service(&app, seen("/api/v1/ws?access_token=abc&x=1")).await;
        assert_eq!(read_body(response).await, "/api/v1/ws?x=1 Bearer abc");
        let refused = call_service(&app, seen("/api/v1/orders?access_token=abc")).await;
        assert_eq!(refused.status(), 401);
        let nosniff = refused.headers().get(header::X_CONTENT_TYPE_OPTIONS);
        assert_eq!(nosniff.map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
        let plain = call_service(&app, seen("/api/v1/orders?limit=2")).await;
        assert_eq!(read_body(plain).await, "/api/v1/orders?limit=2 -");
    }

    #[test]
    fn an_access_token_is_taken_out_of_the_query() {
        assert_eq!(split_access_token("a=1&b=2"), None);
        assert_eq!(
            split_access_token("access_token=abc"),
            Some(("abc".to_string(), String::new()))
        );
        assert_eq!(
            split_access_token("actor=stock_item/X&access_token=abc&access_token=def&z"),
            Some(("abc".to_string(), "actor=stock_item/X&z".to_string()))
        );
    }

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_suffixes() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for refused in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json+html",
        ] {
            assert!(!is_json_media_type(refused), "{refused}");
        }
    }

    #[test]
    fn only_a_request_with_a_body_must_say_it_is_json() {
        let no_body = TestRequest::post().to_http_request();
        assert!(require_json(&no_body).is_ok());
        let empty = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "0"))
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert!(require_json(&empty).is_ok());
        let form = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "9"))
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .to_http_request();
        let refused = require_json(&form).expect_err("a form");
        assert_eq!(refused.code, ErrorCode::UnsupportedMediaType);
        let untyped_chunks = TestRequest::post()
            .insert_header((header::TRANSFER_ENCODING, "chunked"))
            .to_http_request();
        assert!(require_json(&untyped_chunks).is_err());
        let json = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "2"))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .to_http_request();
        assert!(require_json(&json).is_ok());
    }
}
