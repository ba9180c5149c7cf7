//! Coupon policies and coupons (API.md "Coupons"): create, list and get policies; issue,
//! list, get, use and cancel coupons.
//!
//! A coupon lives in its policy's actor: the handler finds the policy from the coupon id
//! (`{policy_id}.{n:08}`). Reads of one policy or coupon go to the actor (read your writes);
//! lists come from the read rows committed with each change.

use crate::actors::UserId;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::lists::read_list;
use super::openapi::{IdempotencyKey, Page, Paging};
use super::{ListQuery, RawBody, State};
use crate::actors::coupon_policy::{
    parse_coupon_id, CouponCommand, CouponPolicy, CouponReply, CouponView, DiscountType, Terms,
    AMOUNT_MAX, COUPON_ROW_KIND, POLICY_ROW_KIND, TEXT_LEN_MAX,
};
use crate::auth::{is_valid_user_id, Caller};
use crate::error::{ApiError, FieldError, FieldErrors};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/coupon-policies")
            .route("/{id}/issue", web::post().to(issue))
            .route("", web::post().to(create))
            .route("", web::get().to(list_policies))
            .route("/{id}", web::get().to(get_policy)),
    )
    .service(
        web::scope("/coupons")
            .route("/{id}/use", web::post().to(use_coupon))
            .route("", web::get().to(list_coupons))
            .route("/{id}", web::get().to(get_coupon))
            .route("/{id}/cancel", web::post().to(cancel)),
    );
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateCouponPolicy)]
struct CreateBody {
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    #[schema(max_length = 200)]
    description: Option<String>,
    #[schema(value_type = DiscountTypeSchema)]
    discount_type: DiscountType,
    /// A percentage (1-100) or an amount (1 to 10^12).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    discount_value: i64,
    /// The smallest order a coupon may be used on.
    #[serde(default)]
    #[schema(default = 0, minimum = 0, maximum = 1_000_000_000_000_i64)]
    min_order_amount: i64,
    /// Caps a percentage discount.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    max_discount_amount: Option<i64>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    total_quantity: i64,
    #[serde(default = "one")]
    #[schema(default = 1, minimum = 1, maximum = 1_000_000)]
    per_user_limit: i64,
    /// RFC 3339.
    #[schema(example = "2026-12-01T00:00:00Z")]
    starts_at: String,
    /// RFC 3339, after `starts_at`; issued coupons expire then.
    #[schema(example = "2026-12-31T00:00:00Z")]
    ends_at: String,
}

fn parse_time(field: &str, text: &str) -> Result<i64, FieldError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| FieldError {
            field: field.into(),
            message: "must be an RFC 3339 timestamp".into(),
        })
}

impl CreateBody {
    /// The terms, or every field that is wrong.
    fn terms(self) -> Result<Terms, ApiError> {
        let starts = parse_time("starts_at", &self.starts_at);
        let ends = parse_time("ends_at", &self.ends_at);
        let (starts_at_ms, ends_at_ms) = match (starts, ends) {
            (Ok(starts), Ok(ends)) => (starts, ends),
            (starts, ends) => {
                let errors = [starts.err(), ends.err()].into_iter().flatten().collect();
                return Err(ApiError::invalid_fields(errors));
            }
        };
        let terms = Terms {
            title: self.title.trim().to_string(),
            description: self.description,
            discount_type: self.discount_type,
            discount_value: self.discount_value,
            min_order_amount: self.min_order_amount,
            max_discount_amount: self.max_discount_amount,
            total_quantity: self.total_quantity,
            per_user_limit: self.per_user_limit,
            starts_at_ms,
            ends_at_ms,
        };
        terms.validate()?;
        Ok(terms)
    }
}

/// Runs a command with the request's Idempotency-Key and answers its reply with `status`.
async fn keyed(
    state: &State,
    req: &HttpRequest,
    caller: &Caller,
    body: &RawBody,
    policy_id: &str,
    command: CouponCommand,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let keyed = match idempotent::prepare(state, req, caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side =
        idempotent::record_side::<CouponPolicy, _, _>(keyed.as_ref(), status, CouponReply::clone);
    let reply =
        idempotent::ask_keyed(state, &state.coupons, policy_id, command, side, keyed).await?;
    Ok(HttpResponse::build(status).json(reply))
}

#[utoipa::path(post, path = "/coupon-policies", summary = "Create a coupon policy", tag = "coupons",
    operation_id = "create_coupon_policy",
    security(("bearer" = ["operator", "admin"])), request_body = CreateBody, params(IdempotencyKey),
    responses(
        (status = 201, description = "The new policy", body = PolicyViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn create(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let input: CreateBody = body.json()?;
    let command = CouponCommand::Create {
        terms: input.terms()?,
        created_by: caller.user_id.clone(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    keyed(
        &state,
        &req,
        &caller,
        &body,
        &id,
        command,
        StatusCode::CREATED,
    )
    .await
}

fn policy_of(path: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(path)
        .ok()
        .map(|id| id.to_string())
        .filter(|id| id == path)
        .ok_or_else(|| ApiError::not_found(format!("coupon policy {path} not found")))
}

#[utoipa::path(get, path = "/coupon-policies/{id}", summary = "Get a coupon policy",
    tag = "coupons",
    operation_id = "get_coupon_policy",
    security(("bearer" = [])), params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = 200, description = "The policy with `issued`, `used` and `remaining`",
            body = PolicyViewSchema),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get_policy(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_of(&path)?;
    let reply = state.coupons.ask(&id, CouponCommand::Get, None).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// Every policy, newest first (ids are UUIDv7).
#[utoipa::path(get, path = "/coupon-policies", summary = "List coupon policies", tag = "coupons",
    operation_id = "list_coupon_policies",
    security(("bearer" = [])), params(Paging),
    responses(
        (status = 200, description = "Policies, newest first", body = Page<PolicyViewSchema>),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list_policies(
    state: State,
    _caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    read_list(&state, POLICY_ROW_KIND, None, &query).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IssueCoupon)]
struct IssueBody {
    /// Operators: the user to issue to. Absent (or an empty body): the caller.
    user_id: Option<String>,
}

/// A customer issues for themselves; an operator for anyone named in the body. An empty body
/// means the caller.
#[utoipa::path(post, path = "/coupon-policies/{id}/issue", summary = "Issue a coupon",
    tag = "coupons",
    operation_id = "issue_coupon",
    security(("bearer" = [])), params(("id" = String, Path, description = "The policy id"),
        IdempotencyKey),
    request_body(content = Option<IssueBody>,
        description = "Optional: no body (or `null`) issues to the caller"),
    description = "Never more issued than `total_quantity`, never more to one user than \
        `per_user_limit`, under any concurrency.",
    responses(
        (status = 201, description = "The coupon, `ISSUED`", body = CouponViewSchema),
        (status = 403, description = "FORBIDDEN: a customer issuing to someone else"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "COUPON_EXHAUSTED, COUPON_LIMIT_REACHED"),
        (status = 422, description = "COUPON_NOT_USABLE outside the policy's window; \
            VALIDATION_FAILED"),
    ))]
async fn issue(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = policy_of(&path)?;
    let input: IssueBody = body.json_or_default()?;
    let user_id = input.user_id.unwrap_or_else(|| caller.user_id.clone());
    if !is_valid_user_id(&user_id) {
        return Err(ApiError::validation("user_id", "not a valid user id"));
    }
    if user_id != caller.user_id {
        caller.require_operator()?;
    }
    let command = CouponCommand::Issue {
        user_id: UserId::from(user_id),
    };
    keyed(
        &state,
        &req,
        &caller,
        &body,
        &id,
        command,
        StatusCode::CREATED,
    )
    .await
}

/// The caller's coupons, newest first; an operator may name `?user_id=`.
#[utoipa::path(get, path = "/coupons", summary = "List coupons", tag = "coupons",
    operation_id = "list_coupons",
    security(("bearer" = [])),
    params(Paging, ("user_id" = Option<String>, Query,
        description = "Operators: this user's coupons. Absent: the caller's")),
    responses(
        (status = 200, description = "Coupons, newest first", body = Page<CouponViewSchema>),
        (status = 403, description = "FORBIDDEN: a customer naming another user"),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list_coupons(
    state: State,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = query.user_id.as_deref().unwrap_or(&caller.user_id);
    if !caller.can_see(owner) {
        return Err(ApiError::forbidden("customers see only their own coupons"));
    }
    read_list(&state, COUPON_ROW_KIND, Some(owner), &query).await
}

fn coupon_of(path: &str) -> Result<(String, u64), ApiError> {
    parse_coupon_id(path).ok_or_else(|| ApiError::not_found(format!("coupon {path} not found")))
}

#[utoipa::path(get, path = "/coupons/{id}", summary = "Get a coupon", tag = "coupons",
    operation_id = "get_coupon",
    security(("bearer" = [])), params(("id" = String, Path, description = "The coupon id")),
    responses(
        (status = 200, description = "The coupon", body = CouponViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's coupon"),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get_coupon(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (policy, n) = coupon_of(&path)?;
    let reply = state
        .coupons
        .ask(&policy, CouponCommand::GetCoupon { n }, None)
        .await?;
    let owner = match &reply {
        CouponReply::Coupon(CouponView { user_id, .. }) => user_id,
        other => {
            return Err(ApiError::internal(format!(
                "a coupon read answered {other:?}"
            )))
        }
    };
    if !caller.can_see(owner.as_str()) {
        return Err(ApiError::forbidden("this coupon belongs to someone else"));
    }
    Ok(HttpResponse::Ok().json(reply))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = UseCoupon)]
struct UseBody {
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    order_amount: i64,
    #[schema(max_length = 200)]
    reference: Option<String>,
}

/// Only the owner may use a coupon; the policy's actor checks it against the caller.
#[utoipa::path(post, path = "/coupons/{id}/use", summary = "Use a coupon", tag = "coupons",
    operation_id = "use_coupon",
    security(("bearer" = [])), params(("id" = String, Path, description = "The coupon id"),
        IdempotencyKey), request_body = UseBody,
    description = "`PERCENTAGE`: `floor(order_amount * value / 100)`, capped by \
        `max_discount_amount`. `FIXED`: `min(value, order_amount)`.",
    responses(
        (status = 200, description = "The coupon, `USED`, and the discount", body = UseViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's coupon"),
        (status = 404, description = "NOT_FOUND"),
        (status = 422, description = "MIN_ORDER_NOT_MET, COUPON_NOT_USABLE, VALIDATION_FAILED"),
    ))]
async fn use_coupon(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (policy, n) = coupon_of(&path)?;
    let input: UseBody = body.json()?;
    let mut errors = FieldErrors::new();
    errors.check(
        (0..=AMOUNT_MAX).contains(&input.order_amount),
        "order_amount",
        format!("must be 0 to {AMOUNT_MAX}"),
    );
    errors.check(
        input
            .reference
            .as_ref()
            .is_none_or(|r| r.chars().count() <= TEXT_LEN_MAX && crate::text::is_plain(r, false)),
        "reference",
        format!(
            "must be at most {TEXT_LEN_MAX} characters, {}",
            crate::text::PLAIN_RULE
        ),
    );
    errors.finish()?;
    let command = CouponCommand::Use {
        n,
        by_user: caller.user_id.clone(),
        order_amount: input.order_amount,
        reference: input.reference,
    };
    keyed(
        &state,
        &req,
        &caller,
        &body,
        &policy,
        command,
        StatusCode::OK,
    )
    .await
}

/// Undoes a use (owner or operator). A coupon that is `ISSUED` is answered as it is.
#[utoipa::path(post, path = "/coupons/{id}/cancel", summary = "Undo a coupon's use",
    tag = "coupons",
    operation_id = "cancel_coupon_use",
    security(("bearer" = [])), params(("id" = String, Path, description = "The coupon id"),
        IdempotencyKey),
    description = "Undoes a use: the coupon is `ISSUED` again. An `ISSUED` coupon is answered \
        as it is.",
    responses(
        (status = 200, description = "The coupon, `ISSUED`", body = CouponViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's coupon"),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn cancel(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let (policy, n) = coupon_of(&path)?;
    let command = CouponCommand::Cancel {
        n,
        by_user: caller.user_id.clone(),
        operator: caller.is_operator(),
    };
    keyed(
        &state,
        &req,
        &caller,
        &body,
        &policy,
        command,
        StatusCode::OK,
    )
    .await
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = PolicyView)]
#[allow(dead_code)] // Describes the domain's `PolicyView`; never built.
pub struct PolicyViewSchema {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub discount_type: DiscountTypeSchema,
    pub discount_value: i64,
    pub min_order_amount: i64,
    pub max_discount_amount: Option<i64>,
    pub total_quantity: i64,
    pub per_user_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub issued: u64,
    pub used: u64,
    pub remaining: u64,
    pub created_at: String,
    pub version: u64,
}

#[derive(utoipa::ToSchema)]
#[schema(as = CouponView)]
#[allow(dead_code)] // Describes the domain's `CouponView`; never built.
pub struct CouponViewSchema {
    pub id: String,
    pub policy_id: String,
    pub user_id: String,
    /// `ISSUED` or `USED`.
    pub status: String,
    pub expires_at: String,
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(as = UseView)]
#[allow(dead_code)] // Describes the domain's `UseView`; never built.
pub struct UseViewSchema {
    pub coupon: CouponViewSchema,
    pub discount: i64,
}

#[derive(utoipa::ToSchema)]
#[schema(as = DiscountType)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountTypeSchema {
    Percentage,
    Fixed,
}
