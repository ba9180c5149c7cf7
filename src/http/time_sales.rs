//! Time sales (API.md "Time sales"): create, get, list by status, purchase.
//!
//! A purchase is one message to the sale's actor, sent by [`crate::checkout`]: the reservation
//! is its event, and the order's birth (first event, expiry deadline, read row) and the
//! idempotency record ride on it as side writes, so the 201 follows one journal append.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};

use super::idempotent::{self, Prepared};
use super::openapi::{IdempotencyKey, Page, Paging};
use super::products::{uuid_path, PRICE_MAX};
use super::{queue, ListQuery, RawBody, State};
use crate::actors::product::ProductCommand;
use crate::actors::time_sale::{SaleCommand, SaleStatus, SaleTerms, SaleView, TimeSale};
use crate::auth::Caller;
use crate::checkout::SalePurchase;
use crate::clock::parse_rfc3339;
use crate::error::{ApiError, ErrorCode, FieldErrors};

/// Most units of a sale one purchase may ask for.
const PURCHASE_QUANTITY_MAX: i64 = 10_000;
/// The largest quantity a sale may offer.
const SALE_QUANTITY_MAX: i64 = 1_000_000_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let scope = web::scope("/time-sales")
        .route("/{id}/purchase", web::post().to(purchase))
        .route("", web::post().to(create))
        .route("", web::get().to(list))
        .route("/{id}", web::get().to(get));
    cfg.service(queue::routes::<SaleQueue>(scope));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateTimeSale)]
struct CreateBody {
    product_id: String,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    quantity: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    sale_price: i64,
    /// RFC 3339.
    #[schema(example = "2026-12-01T12:00:00Z")]
    starts_at: String,
    /// RFC 3339, after `starts_at`.
    #[schema(example = "2026-12-01T13:00:00Z")]
    ends_at: String,
    /// Absent: 1. `null`: unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, default = 1, minimum = 1, maximum = 1_000_000_000)]
    per_user_limit: Option<Option<i64>>,
    #[serde(default)]
    queue_required: bool,
}

/// Tells a field given as `null` (Some(None)) from one left out (None).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

impl CreateBody {
    fn terms(&self) -> Result<SaleTerms, ApiError> {
        let mut errors = FieldErrors::new();
        let starts_at_ms = parse_rfc3339(&self.starts_at);
        let ends_at_ms = parse_rfc3339(&self.ends_at);
        let per_user_limit = self.per_user_limit.unwrap_or(Some(1));
        errors.check(
            (1..=SALE_QUANTITY_MAX).contains(&self.quantity),
            "quantity",
            "must be 1..=10^9",
        );
        errors.check(
            (0..=PRICE_MAX).contains(&self.sale_price),
            "sale_price",
            "must be 0..=10^12",
        );
        errors.check(starts_at_ms.is_some(), "starts_at", "must be RFC 3339");
        errors.check(ends_at_ms.is_some(), "ends_at", "must be RFC 3339");
        errors.check(
            starts_at_ms.zip(ends_at_ms).is_none_or(|(s, e)| s < e),
            "ends_at",
            "must be after starts_at",
        );
        errors.check(
            per_user_limit.is_none_or(|l| (1..=SALE_QUANTITY_MAX).contains(&l)),
            "per_user_limit",
            "must be at least 1, or null for unlimited",
        );
        errors.finish()?;
        Ok(SaleTerms {
            product_id: self.product_id.clone(),
            quantity: self.quantity,
            sale_price: self.sale_price,
            starts_at_ms: starts_at_ms.expect("checked above"),
            ends_at_ms: ends_at_ms.expect("checked above"),
            per_user_limit,
            queue_required: self.queue_required,
        })
    }
}

#[utoipa::path(post, path = "/time-sales", summary = "Create a time sale", tag = "time-sales",
    operation_id = "create_time_sale",
    security(("bearer" = ["operator", "admin"])), request_body = CreateBody, params(IdempotencyKey),
    description = "Its status flips by itself at `starts_at` and `ends_at` (durable \
        deadlines), so live subscribers see it change without any request.",
    responses(
        (status = 201, description = "The new sale", body = SaleViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 422, description = "VALIDATION_FAILED (also for a `product_id` that names no \
            product)"),
    ))]
async fn create(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let input: CreateBody = body.json()?;
    let mut terms = input.terms()?;
    terms.product_id = product_of(&state, &terms.product_id).await?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side = idempotent::record_side::<TimeSale, _, _>(
        keyed.as_ref(),
        StatusCode::CREATED,
        SaleView::clone,
    );
    let id = uuid::Uuid::now_v7().to_string();
    let command = SaleCommand::Create(terms);
    let view = idempotent::ask_keyed(&state, &state.sales, &id, command, side, keyed).await?;
    Ok(HttpResponse::Created().json(view))
}

/// The product's canonical id; 422 when there is no such product.
async fn product_of(state: &State, product_id: &str) -> Result<String, ApiError> {
    let unknown = || ApiError::validation("product_id", "no such product");
    let id = uuid_path(product_id, "product").map_err(|_| unknown())?;
    match state.products.ask(&id, ProductCommand::Get, None).await {
        Ok(product) => Ok(product.id),
        Err(e) if e.code == ErrorCode::NotFound => Err(unknown()),
        Err(e) => Err(e),
    }
}

#[utoipa::path(get, path = "/time-sales/{id}", summary = "Get a time sale", tag = "time-sales",
    operation_id = "get_time_sale",
    security(("bearer" = [])), params(("id" = String, Path, description = "The sale id")),
    responses(
        (status = 200, description = "The sale; `remaining = quantity - reserved - sold`",
            body = SaleViewSchema),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid_path(&path, "time sale")?;
    let view = state.sales.ask(&id, SaleCommand::Get, None).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A sale's waiting room opens at its `starts_at`.
pub struct SaleQueue;

impl queue::Queued for SaleQueue {
    const KIND: &'static str = "time-sales";

    fn id_of(path: &str) -> Result<String, ApiError> {
        uuid_path(path, "time sale")
    }

    async fn opens_at_ms(state: &State, id: &str) -> Result<i64, ApiError> {
        let sale = state.sales.ask(id, SaleCommand::Get, None).await?;
        parse_rfc3339(&sale.starts_at)
            .ok_or_else(|| ApiError::internal("a sale's starts_at does not parse"))
    }
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

/// Sales, newest first, from the read table that each sale's commits keep current; `status`
/// is as of the sale's last event (its window deadlines are events, so it lags the clock by
/// no more than the time a deadline takes to fire).
#[utoipa::path(get, path = "/time-sales", summary = "List time sales", tag = "time-sales",
    operation_id = "list_time_sales",
    security(("bearer" = [])),
    params(Paging, ("status" = Option<SaleStatusSchema>, Query,
        description = "Only sales in this status")),
    responses(
        (status = 200, description = "Sales, newest first", body = Page<SaleViewSchema>),
        (status = 422, description = "VALIDATION_FAILED: a bad status, limit or cursor"),
    ))]
async fn list(
    state: State,
    _caller: Caller,
    query: web::Query<ListQuery>,
    status: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(&state)?;
    let all = [
        SaleStatus::Scheduled,
        SaleStatus::Active,
        SaleStatus::SoldOut,
        SaleStatus::Ended,
    ];
    let status = match status.status.as_deref() {
        None => None,
        Some(s) => Some(
            all.iter()
                .map(|st| st.as_str())
                .find(|name| *name == s)
                .ok_or_else(|| {
                    ApiError::validation("status", "SCHEDULED, ACTIVE, SOLD_OUT or ENDED")
                })?,
        ),
    };
    let page = super::read_page(&state, "time_sale", None, status, &query, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = Purchase)]
struct PurchaseBody {
    /// Units to buy; an empty body buys one.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 10_000, default = 1)]
    quantity: i64,
}

fn one() -> i64 {
    1
}

impl Default for PurchaseBody {
    fn default() -> PurchaseBody {
        PurchaseBody { quantity: one() }
    }
}

#[utoipa::path(post, path = "/time-sales/{id}/purchase", summary = "Buy from a time sale",
    tag = "time-sales",
    operation_id = "purchase", security(("bearer" = [])),
    request_body(content = Option<PurchaseBody>,
        description = "Optional: no body (or `null`) buys one unit"),
    params(("id" = String, Path, description = "The sale id"), IdempotencyKey,
        ("X-Queue-Pass" = Option<String>, Header,
            description = "The pass of the sale's waiting room, when it is `queue_required`")),
    description = "One actor hop and one journal append: the sale's reservation and the order it \
        gives birth to are committed together. A reservation not paid by its `expires_at` goes \
        back to `remaining` by itself.",
    responses(
        (status = 201, description = "The order, `RESERVED`",
            body = super::orders::OrderViewSchema),
        (status = 403, description = "QUEUE_PASS_REQUIRED"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "SOLD_OUT; INSUFFICIENT_STOCK when fewer remain than \
            asked"),
        (status = 422, description = "SALE_NOT_ACTIVE, PER_USER_LIMIT_EXCEEDED, \
            VALIDATION_FAILED"),
        (status = 503, description = "UNAVAILABLE: the sale failed or is overloaded"),
    ))]
async fn purchase(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let sale_id = uuid_path(&path, "time sale")?;
    // No body buys one unit.
    let input: PurchaseBody = body.json_or_default()?;
    if !(1..=PURCHASE_QUANTITY_MAX).contains(&input.quantity) {
        return Err(ApiError::validation(
            "quantity",
            format!("must be 1 to {PURCHASE_QUANTITY_MAX}"),
        ));
    }
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let now_ms = state.rt.now_ms();
    let queue_pass = (state.passes).request_admits::<SaleQueue>(&req, &caller, &sale_id, now_ms);
    let purchase = SalePurchase {
        sale_id,
        user_id: caller.user_id.clone(),
        quantity: input.quantity,
        queue_pass,
    };
    let (mut rider, key) = idempotent::birth_rider(keyed);
    let json = (state.checkout).buy_from_sale(purchase, &mut rider).await?;
    Ok(idempotent::created(&state, key, json))
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = SaleStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleStatusSchema {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

/// The sale as API.md shows it.
#[derive(utoipa::ToSchema)]
#[schema(as = SaleView)]
#[allow(dead_code)] // Describes the domain's `SaleView`; never built.
pub struct SaleViewSchema {
    pub id: String,
    pub product_id: String,
    pub quantity: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub sold: i64,
    pub sale_price: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub status: SaleStatusSchema,
    /// Units one user may hold in reserved or paid orders; null: unlimited.
    pub per_user_limit: Option<i64>,
    /// Purchases need the `X-Queue-Pass` of the sale's waiting room.
    pub queue_required: bool,
    pub version: u64,
}
