//! The OpenAPI 3 document of API v1 (`GET /openapi.json`) and a browsable UI of it
//! (`GET /docs`), both at the root and under `/api/v1`.
//!
//! Each operation is described by a `#[utoipa::path]` beside its handler; the waiting-room
//! routes, served by one generic handler under two prefixes, are described in `queue.rs`. Two
//! rules hold for every operation and are applied here rather than repeated at each one: every
//! 4xx and 5xx answer is an RFC 9457 `application/problem+json` [`Problem`], and every operation
//! that takes a bearer token may answer 401.

use std::sync::LazyLock;

use actix_web::web;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::{admin, auth, charges, check_in, coupons, events, metrics, orders, products, queue};
use super::{sagas, stock, system, time_sales, wallets, ws};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "surge",
        description = "Flash sales, ticket drops and limited promotions: every stock item, time \
            sale, coupon policy, seat map, wallet and waiting room is a supervised actor, and \
            every 2xx to a state change is sent after the change is committed to the journal.\n\n\
            Authenticate with `Authorization: Bearer <access token>` (from `POST /auth/login`, \
            or `surge token` for operations and load tests). The operations that list an \
            `Idempotency-Key` header take one (1-255 characters, scoped to the caller): a \
            retry with the same key and body returns the first answer with \
            `Idempotent-Replayed: true`. Errors are RFC 9457 `application/problem+json` with a \
            stable `code`; a 429 or 503 carries `Retry-After`. An operation's `bearer` \
            requirement names the roles it needs (`operator`, `admin`); none named means any \
            signed-in user, who then sees only their own wallet, coupons, orders and tickets. Lists take `?limit=` (default \
            50, at most `lists.limit_max`, 500 by default) and `?cursor=` and answer \
            `{items, next_cursor}`, newest first.",
        license(name = "MIT"),
    ),
    servers((url = "/api/v1", description = "API v1 on this server")),
    paths(
        system::healthz, system::readyz, metrics::metrics,
        auth::register, auth::login, auth::refresh, auth::logout, auth::me, auth::set_roles,
        stock::create, stock::get, stock::adjust, stock::movements,
        orders::place, orders::list, orders::get, orders::cancel, orders::pay,
        products::create, products::get,
        time_sales::create, time_sales::list, time_sales::get, time_sales::purchase,
        queue::sale_join, queue::sale_me, queue::sale_stats, queue::sale_configure,
        coupons::create, coupons::list_policies, coupons::get_policy, coupons::issue,
        coupons::list_coupons, coupons::get_coupon, coupons::use_coupon, coupons::cancel,
        wallets::get_mine, wallets::use_points, wallets::list_mine, wallets::get,
        wallets::earn, wallets::list, wallets::cancel, charges::charge,
        events::create, events::list, events::get, events::seats, events::hold,
        check_in::check_in,
        queue::event_join, queue::event_me, queue::event_stats, queue::event_configure,
        admin::console, admin::overview, admin::supervision, admin::actors, admin::actor,
        admin::act, sagas::list,
        ws::connect,
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme, &ProblemAnswers),
    tags(
        (name = "system", description = "Health, readiness, metrics"),
        (name = "auth", description = "Users, tokens and roles"),
        (name = "stock", description = "Stock items and their reservations"),
        (name = "orders", description = "Orders: reserved by a purchase, a hold or stock lines"),
        (name = "products", description = "Catalog rows a time sale sells"),
        (name = "time-sales", description = "Time sales: a window, a quantity, per-user limits"),
        (name = "queue", description = "Waiting rooms in front of a time sale or an event"),
        (name = "coupons", description = "Coupon policies and the coupons they issue"),
        (name = "wallets", description = "Point wallets, one per user"),
        (name = "events", description = "Events, seat maps and seat holds"),
        (name = "admin", description = "The console and its actor API"),
        (name = "live", description = "Live updates over WebSocket"),
    ),
)]
pub struct ApiDoc;

/// An error answer (RFC 9457), as every 4xx and 5xx of this API is sent.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `ApiError::body`; never built.
pub struct Problem {
    /// `/problems/<code-in-kebab-case>`.
    #[schema(example = "/problems/sold-out")]
    r#type: String,
    #[schema(example = "Sold out")]
    title: String,
    /// The HTTP status code.
    #[schema(example = 409)]
    status: u16,
    /// What went wrong with this request; never internals for a 5xx.
    detail: String,
    /// One of API.md's stable error codes.
    #[schema(example = "SOLD_OUT")]
    code: String,
    /// For `VALIDATION_FAILED`: each field that failed and why.
    #[schema(nullable = false)]
    errors: Option<Vec<crate::error::ProblemFieldSchema>>,
}

/// A page of a list, newest first.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the lists' JSON; never built.
pub struct Page<T> {
    items: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// `?limit=&cursor=` of every list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes `ListQuery`; never built.
pub struct Paging {
    /// Items per page: 1-500, 50 when not given.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    #[param(min_length = 1, max_length = 128)]
    cursor: Option<String>,
}

/// The `Idempotency-Key` header of a POST that changes state.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Describes the header; never built.
pub struct IdempotencyKey {
    /// 1-255 characters, scoped to the caller. A retry with the same key and body answers as the
    /// first did, with `Idempotent-Replayed: true`, and changes nothing; with another body, 422
    /// `IDEMPOTENCY_KEY_REUSED`; while the first is still running, 409 `IDEMPOTENCY_IN_FLIGHT`.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 255)]
    key: Option<String>,
}

/// The bearer-token scheme that `security(("bearer" = []))` names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token from POST /auth/login (1 hour) or `surge token`.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Adds the answers every operation of a kind may give (a token: 401, and 503 from an entity or
/// the journal; a body: 400, 408, 413 and 415; an `Idempotency-Key`: 400, 409 and 422), to the
/// operation's own description of that status when it has one, and makes every error answer a
/// [`Problem`] (with `Retry-After` on 429 and 503).
struct ProblemAnswers;

impl Modify for ProblemAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for item in doc.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                add_common_answers(operation);
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        let problem = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"));
                        response.content.clear();
                        response.content.insert(
                            PROBLEM_JSON.to_string(),
                            RefOr::T(Content::new(Some(problem))),
                        );
                    }
                    if status == "429" || status == "503" {
                        let header = Header::builder()
                            .schema(Some(Object::with_type(Type::Integer)))
                            .description(Some("Seconds to wait before a retry"))
                            .build();
                        response
                            .headers
                            .insert("Retry-After".to_string(), RefOr::T(header));
                    }
                }
            }
        }
    }
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn add_common_answers(operation: &mut Operation) {
    let takes_token = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    // An operation a token is optional for (`/metrics`) sends no message to an entity.
    let needs_token = takes_token
        && operation.security.iter().flatten().all(|requirement| {
            serde_json::to_value(requirement).is_ok_and(|json| json != serde_json::json!({}))
        });
    let takes_body = operation.request_body.is_some();
    let takes_key = operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| matches!(parameter, RefOr::T(p) if p.name == "Idempotency-Key"));
    // An operation that already names the code of an answer keeps its own words for it.
    let mut add = |status: &str, description: &str| {
        let code = description.split(':').next().unwrap_or(description);
        match operation.responses.responses.get_mut(status) {
            Some(RefOr::T(answer)) if !answer.description.contains(code) => {
                answer.description = format!("{}; {description}", answer.description);
            }
            Some(_) => {}
            None => {
                let answer = ResponseBuilder::new().description(description).build();
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), RefOr::T(answer));
            }
        }
    };
    if takes_token {
        add("401", "UNAUTHORIZED: no token, or a bad or expired one");
    }
    if needs_token {
        add(
            "503",
            "UNAVAILABLE: an entity failed or is overloaded, or the journal is stalled",
        );
    }
    if takes_body || takes_key {
        add(
            "400",
            "MALFORMED_REQUEST: a body that is not JSON, or a header that does not parse",
        );
    }
    if takes_body {
        add(
            "408",
            "REQUEST_TIMEOUT: the body did not arrive within `server.body_read_timeout_secs`",
        );
        add(
            "413",
            "PAYLOAD_TOO_LARGE: a body over `server.body_limit_bytes`",
        );
        add(
            "415",
            "UNSUPPORTED_MEDIA_TYPE: a body not sent as `application/json`",
        );
    }
    if takes_key {
        add("409", "IDEMPOTENCY_IN_FLIGHT");
        add("422", "IDEMPOTENCY_KEY_REUSED");
    }
}

/// The base path of API v1, which the document's paths are relative to.
const API_BASE: &str = "/api/v1";
/// Routes of the document also served at the root.
const ROOT_ROUTES: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/admin"];
/// The document and its UI, at the root and under the base: GET only, not in the document.
const DOCUMENT_ROUTE: &str = "/openapi.json";
const UI_ROUTE: &str = "/docs";

/// The methods (upper-case, sorted) the API serves at `path`, by the document's path templates,
/// with HEAD wherever GET is (see `http::head_as_get`); empty when it has no such path.
pub fn methods_for(path: &str) -> Vec<&'static str> {
    let mut methods = documented_methods(path);
    if methods.contains(&"GET") {
        methods.push("HEAD");
        methods.sort_unstable();
    }
    methods
}

fn documented_methods(path: &str) -> Vec<&'static str> {
    let relative = path.strip_prefix(API_BASE).unwrap_or(path);
    let is_docs = relative == DOCUMENT_ROUTE
        || relative == UI_ROUTE
        || relative.starts_with(&format!("{UI_ROUTE}/"));
    if is_docs {
        return vec!["GET"];
    }
    if relative == path && !ROOT_ROUTES.contains(&path) {
        return Vec::new();
    }
    let segments: Vec<&str> = relative.split('/').collect();
    let mut methods: Vec<&'static str> = document()
        .paths
        .paths
        .iter()
        .filter(|(template, _)| template_matches(template, &segments))
        .flat_map(|(_, item)| methods_of(item))
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// `/orders/{id}` matches `["", "orders", "0192..."]`: a `{parameter}` takes one non-empty segment.
fn template_matches(template: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').collect();
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, segment)| {
            part == segment || (part.starts_with('{') && !segment.is_empty())
        })
}

fn methods_of(item: &utoipa::openapi::PathItem) -> impl Iterator<Item = &'static str> {
    [
        ("GET", item.get.is_some()),
        ("PUT", item.put.is_some()),
        ("POST", item.post.is_some()),
        ("DELETE", item.delete.is_some()),
        ("PATCH", item.patch.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, served)| served.then_some(method))
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);
    &DOCUMENT
}

/// `GET /openapi.json` and `GET /docs` (Swagger UI, from files built into the binary; it reads
/// the document at the root's `/openapi.json`, which is served wherever these routes are).
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Relative, so that `/api/v1/docs` goes to `/api/v1/docs/`.
    cfg.service(web::redirect("/docs", "docs/")).service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", document().clone())
            // No call to the public validator: it would send it this document's address.
            .config(utoipa_swagger_ui::Config::default().validator_url("none")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_path_templates() {
        assert_eq!(methods_for("/api/v1/orders"), ["GET", "HEAD", "POST"]);
        assert_eq!(methods_for("/api/v1/orders/0192f0c4-0000"), ["GET", "HEAD"]);
        assert_eq!(methods_for("/api/v1/orders/x/cancel"), ["POST"]);
        assert_eq!(
            methods_for("/api/v1/time-sales/x/queue"),
            ["GET", "HEAD", "PATCH"]
        );
        // `me` is also a `{user_id}`; both templates' methods count.
        assert_eq!(
            methods_for("/api/v1/wallets/me/transactions"),
            ["GET", "HEAD"]
        );
        assert_eq!(methods_for("/healthz"), ["GET", "HEAD"]);
        assert!(methods_for("/orders").is_empty(), "not served at the root");
        assert!(
            methods_for("/api/v1/orders//cancel").is_empty(),
            "an empty id"
        );
        assert!(methods_for("/api/v1/nothing").is_empty());
        assert!(methods_for("/api/v1x/orders").is_empty());
        assert!(
            methods_for("/api/v1/orders/").is_empty(),
            "no trailing slash"
        );
        assert_eq!(methods_for("/admin"), ["GET", "HEAD"]);
        for docs in ["/openapi.json", "/docs", "/docs/index.css", "/api/v1/docs/"] {
            assert_eq!(methods_for(docs), ["GET", "HEAD"], "{docs}");
        }
        assert!(methods_for("/api/v1/orders/x/y/z").is_empty());
    }
}
