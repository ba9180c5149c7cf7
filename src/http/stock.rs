//! Stock items (API.md "Stock items"): create, get, adjust, movements.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::idempotent::{self, Prepared};
use super::openapi::{IdempotencyKey, Page, Paging};
use super::{is_valid_ident, ListQuery, RawBody, State};
use crate::actors::stock_item::{StockCommand, StockEvent, StockItem, StockView};
use crate::actors::OrderId;
use crate::actors::{pid, Entity};
use crate::auth::Caller;
use crate::clock::rfc3339;
use crate::error::{ApiError, FieldErrors};
use crate::persistence::codec;
use crate::text;

/// The largest unit count one call may name; far above any real stock, far below overflow.
pub const UNITS_MAX: i64 = 1_000_000_000_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/stock-items")
            .route("", web::post().to(create))
            .route("/{sku}", web::get().to(get))
            .route("/{sku}/adjustments", web::post().to(adjust))
            .route("/{sku}/movements", web::get().to(movements)),
    );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateStockItem)]
struct CreateBody {
    /// `[A-Za-z0-9._-]{1,64}`, chosen by the client.
    #[schema(example = "SNEAKER-42", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    on_hand: i64,
    /// Units never reserved.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, default = 0)]
    safety_stock: i64,
    /// The unit price orders take, in the smallest currency unit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, default = 0)]
    price: i64,
}

impl CreateBody {
    fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        errors.check(
            is_valid_ident(&self.sku),
            "sku",
            "must match [A-Za-z0-9._-]{1,64}",
        );
        errors.check(
            !self.name.trim().is_empty()
                && self.name.chars().count() <= 200
                && text::is_plain(&self.name, false),
            "name",
            format!("must be 1-200 characters, {}", text::PLAIN_RULE),
        );
        errors.check(
            (0..=UNITS_MAX).contains(&self.on_hand),
            "on_hand",
            "must be 0..=10^12",
        );
        errors.check(
            (0..=UNITS_MAX).contains(&self.safety_stock),
            "safety_stock",
            "must be 0..=10^12",
        );
        errors.check(
            (0..=UNITS_MAX).contains(&self.price),
            "price",
            "must be 0..=10^12",
        );
        Ok(errors.finish()?)
    }
}

#[utoipa::path(post, path = "/stock-items", summary = "Create a stock item", tag = "stock",
    operation_id = "create_stock_item",
    security(("bearer" = ["operator", "admin"])), request_body = CreateBody,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "The new item", body = StockViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 409, description = "CONFLICT: the SKU exists"),
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
    input.validate()?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let command = StockCommand::Create {
        name: input.name.trim().to_string(),
        on_hand: input.on_hand,
        safety_stock: input.safety_stock,
        price: input.price,
    };
    let side = idempotent::record_side::<StockItem, _, _>(
        keyed.as_ref(),
        StatusCode::CREATED,
        StockView::clone,
    );
    let view =
        idempotent::ask_keyed(&state, &state.stock, &input.sku, command, side, keyed).await?;
    Ok(HttpResponse::Created().json(view))
}

fn sku_of(path: &web::Path<String>) -> Result<&str, ApiError> {
    let sku = path.as_str();
    if is_valid_ident(sku) {
        Ok(sku)
    } else {
        Err(ApiError::not_found(format!("stock item {sku} not found")))
    }
}

#[utoipa::path(get, path = "/stock-items/{sku}", summary = "Get a stock item", tag = "stock",
    operation_id = "get_stock_item",
    security(("bearer" = [])), params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, description = "The item; `available = on_hand - reserved`",
            body = StockViewSchema),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state
        .stock
        .ask(sku_of(&path)?, StockCommand::Get, None)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = StockAdjustment)]
struct AdjustBody {
    /// Units added (positive) or taken out (negative); not 0.
    #[schema(minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
    delta: i64,
    #[schema(min_length = 1, max_length = 200)]
    reason: String,
}

#[utoipa::path(post, path = "/stock-items/{sku}/adjustments", summary = "Adjust on-hand units",
    tag = "stock",
    operation_id = "adjust_stock_item", security(("bearer" = ["operator", "admin"])), request_body = AdjustBody,
    params(("sku" = String, Path, description = "The SKU"), IdempotencyKey),
    responses(
        (status = 200, description = "The item after the adjustment", body = StockViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "INSUFFICIENT_STOCK: it would take `available` below 0"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn adjust(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let sku = sku_of(&path)?;
    let input: AdjustBody = body.json()?;
    // `unsigned_abs`: `i64::MIN.abs()` overflows.
    if !(1..=UNITS_MAX.unsigned_abs()).contains(&input.delta.unsigned_abs()) {
        return Err(ApiError::validation(
            "delta",
            "must be non-zero and at most 10^12 in size",
        ));
    }
    if input.reason.trim().is_empty()
        || input.reason.chars().count() > 200
        || !text::is_plain(&input.reason, false)
    {
        return Err(ApiError::validation(
            "reason",
            format!("must be 1-200 characters, {}", text::PLAIN_RULE),
        ));
    }
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let command = StockCommand::Adjust {
        delta: input.delta,
        reason: input.reason.trim().to_string(),
    };
    let side = idempotent::record_side::<StockItem, _, _>(
        keyed.as_ref(),
        StatusCode::OK,
        StockView::clone,
    );
    let view = idempotent::ask_keyed(&state, &state.stock, sku, command, side, keyed).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StockMovement)]
struct Movement {
    seq: u64,
    /// `created`, `adjusted`, `reserved`, `released` or `committed`.
    #[schema(value_type = String)]
    kind: &'static str,
    quantity: i64,
    reference: String,
    at: String,
}

fn movement(seq: u64, at_ms: i64, event: StockEvent) -> Movement {
    let (kind, quantity, reference) = match event {
        StockEvent::Created { on_hand, name, .. } => ("created", on_hand, name),
        StockEvent::Adjusted { delta, reason } => ("adjusted", delta, reason),
        StockEvent::Reserved {
            order, quantity, ..
        } => ("reserved", quantity, order_ref(order)),
        StockEvent::Released {
            order,
            quantity,
            reason,
        } => (
            "released",
            quantity,
            format!("{} ({})", order_ref(order), reason.as_str()),
        ),
        StockEvent::Committed { order, quantity } => ("committed", quantity, order_ref(order)),
        StockEvent::Returned { order, quantity } => ("returned", quantity, order_ref(order)),
    };
    Movement {
        seq,
        kind,
        quantity,
        reference,
        at: rfc3339(at_ms),
    }
}

fn order_ref(order: OrderId) -> String {
    order.to_string()
}

/// The item's journal, newest first; `cursor` is the seq to continue below.
#[utoipa::path(get, path = "/stock-items/{sku}/movements", summary = "A stock item's movements",
    tag = "stock",
    operation_id = "list_stock_movements", security(("bearer" = ["operator", "admin"])),
    params(("sku" = String, Path, description = "The SKU"), Paging),
    responses(
        (status = 200, description = "The item's journal, newest first", body = Page<Movement>),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND"),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn movements(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let sku = sku_of(&path)?;
    let limit = query.limit(&state)?;
    let before_seq = match &query.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::validation("cursor", "invalid"))?,
        ),
    };
    state.stock.ask(sku, StockCommand::Get, None).await?;
    let records = state
        .rt
        .store
        .events_desc(&pid::<StockItem>(sku), before_seq, limit)
        .await
        .map_err(ApiError::internal)?;
    let mut items = Vec::with_capacity(records.len());
    for record in &records {
        let event: StockEvent =
            codec::decode(StockItem::VERSION, &record.payload).map_err(ApiError::internal)?;
        items.push(movement(record.seq, record.at_ms, event));
    }
    let full_page = u32::try_from(records.len()).unwrap_or(u32::MAX) == limit;
    let next_cursor = records
        .last()
        .filter(|r| full_page && r.seq > 1)
        .map(|r| r.seq.to_string());
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next_cursor": next_cursor })))
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = StockView)]
#[allow(dead_code)] // Describes the domain's `StockView`; never built.
pub struct StockViewSchema {
    pub sku: String,
    pub name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub sold: i64,
    pub safety_stock: i64,
    pub price: i64,
    pub version: u64,
}
