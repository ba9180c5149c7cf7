//! Orders of stock lines (API.md "Stock items" and "Orders"): place, get, list, cancel.
//!
//! Placing reserves every line on its stock item, in SKU order. The last reservation carries
//! the order's birth (its first event, deadline and read row) and the idempotency record, so
//! a one-line order is one actor hop and one journal append. If a line is refused, the lines
//! already reserved are released (compensation); if the process dies in between, their
//! reservations expire by themselves at `expires_at`.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Answer, KeyedRequest, Prepared};
use super::openapi::{IdempotencyKey, Page, Paging};
use super::{is_valid_ident, ListQuery, RawBody, State};
use crate::actors::order::{
    OrderCommand, OrderItem, OrderStatus, OrderView, Placed, Source, SourceKind,
};
use crate::actors::seat_map::SeatCommand;
use crate::actors::stock_item::{ReleaseReason, StockCommand, StockItem, StockView};
use crate::actors::time_sale::SaleCommand;
use crate::actors::SideWrites;
use crate::auth::Caller;
use crate::error::{ApiError, FieldErrors};

/// Most units one order line may ask for.
const LINE_QUANTITY_MAX: i64 = 1_000_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/orders")
            .route("", web::post().to(place))
            .route("", web::get().to(list))
            .route("/{id}", web::get().to(get))
            .route("/{id}/cancel", web::post().to(cancel)),
    );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = PlaceOrder)]
struct PlaceBody {
    /// 1 to `orders.lines_max` (50) lines, each SKU once.
    #[schema(min_items = 1)]
    items: Vec<LineBody>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = OrderLine)]
struct LineBody {
    #[schema(example = "SNEAKER-42", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: i64,
}

fn validate_lines(lines: &[LineBody], lines_max: usize) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    errors.check(
        !lines.is_empty() && lines.len() <= lines_max,
        "items",
        format!("must hold 1 to {lines_max} lines"),
    );
    let mut seen = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let sku_field = format!("items[{i}].sku");
        if !is_valid_ident(&line.sku) {
            errors.check(false, &sku_field, "must match [A-Za-z0-9._-]{1,64}");
        } else {
            let first = seen.insert(line.sku.as_str());
            errors.check(first, &sku_field, "each SKU may appear once");
        }
        errors.check(
            (1..=LINE_QUANTITY_MAX).contains(&line.quantity),
            &format!("items[{i}].quantity"),
            format!("must be 1 to {LINE_QUANTITY_MAX}"),
        );
    }
    Ok(errors.finish()?)
}

/// What the order will be born with, once the last line's price is known.
#[derive(Clone)]
struct Plan {
    order_id: uuid::Uuid,
    user_id: String,
    lines: Vec<LineBody>,
    expires_at_ms: i64,
    created_at_ms: i64,
}

impl Plan {
    fn placed(&self, prices: &[i64]) -> Placed {
        Placed {
            user_id: self.user_id.clone(),
            source: Source {
                kind: SourceKind::Stock,
                id: self.lines[0].sku.clone(),
            },
            items: self
                .lines
                .iter()
                .zip(prices)
                .map(|(line, price)| OrderItem {
                    reference: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price: *price,
                })
                .collect(),
            expires_at_ms: self.expires_at_ms,
            created_at_ms: self.created_at_ms,
        }
    }

    fn reserve(&self, line: &LineBody) -> StockCommand {
        StockCommand::Reserve {
            order: self.order_id.as_u128(),
            quantity: line.quantity,
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// The birth of the order (and its idempotency record) riding on the last reservation.
    fn birth_side(
        &self,
        prices: &[i64],
        keyed: Option<&KeyedRequest>,
        answer: &Answer,
    ) -> SideWrites<StockItem> {
        let plan = self.clone();
        let prices = prices.to_vec();
        answer.birth_side::<StockItem, _>(self.order_id, keyed, move |last: &StockView| {
            let mut all_prices = prices.clone();
            all_prices.push(last.price);
            Some(plan.placed(&all_prices))
        })
    }
}

#[utoipa::path(post, path = "/orders", summary = "Reserve stock lines as an order", tag = "orders",
    operation_id = "place_order",
    security(("bearer" = [])), request_body = PlaceBody, params(IdempotencyKey),
    description = "Reserves every line or none (a line refused releases the lines reserved \
        before it). The order is `RESERVED` until it is paid or its `expires_at` passes, when \
        its units go back by themselves.",
    responses(
        (status = 201, description = "The order, `RESERVED`", body = OrderViewSchema),
        (status = 404, description = "NOT_FOUND: a SKU that does not exist"),
        (status = 409, description = "INSUFFICIENT_STOCK"),
        (status = 422, description = "VALIDATION_FAILED"),
        (status = 503, description = "UNAVAILABLE: an entity failed or is overloaded"),
    ))]
async fn place(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let mut input: PlaceBody = body.json()?;
    validate_lines(&input.items, state.rt.settings.orders.lines_max)?;
    let mut keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    input.items.sort_by(|a, b| a.sku.cmp(&b.sku));
    let now_ms = state.rt.now_ms();
    let pay_within_ms = i64::try_from(state.rt.settings.orders.pay_within_secs * 1000)
        .map_err(ApiError::internal)?;
    let plan = Plan {
        order_id: uuid::Uuid::now_v7(),
        user_id: caller.user_id.clone(),
        lines: input.items,
        expires_at_ms: now_ms + pay_within_ms,
        created_at_ms: now_ms,
    };
    let answer = Answer::default();
    reserve_lines(&state, &plan, &mut keyed, &answer).await?;
    let created = answer.created()?;
    if let Some(keyed) = keyed {
        keyed.finish(&state);
    }
    Ok(created)
}

/// Reserves every line or none; returns the unit prices in line order. A definite refusal
/// releases the lines already reserved; an unknown outcome (a timeout, a failed commit) leaves
/// them to expire, since the line in doubt may yet have been reserved with the order's birth.
async fn reserve_lines(
    state: &State,
    plan: &Plan,
    keyed: &mut Option<KeyedRequest>,
    answer: &Answer,
) -> Result<(), ApiError> {
    let mut prices = Vec::with_capacity(plan.lines.len());
    for (i, line) in plan.lines.iter().enumerate() {
        let last = i + 1 == plan.lines.len();
        let side = last.then(|| plan.birth_side(&prices, keyed.as_ref(), answer));
        let mut none = None;
        let hold = idempotent::hold_of(keyed, &mut none);
        match state
            .stock
            .ask_holding(&line.sku, plan.reserve(line), side, hold)
            .await
        {
            Ok(view) => prices.push(view.price),
            Err(error) if error.outcome_unknown => return Err(error),
            Err(error) => {
                release_lines(state, plan, &plan.lines[..i], ReleaseReason::Compensated).await;
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Best effort: what is not released here expires at `expires_at`.
async fn release_lines(state: &State, plan: &Plan, lines: &[LineBody], reason: ReleaseReason) {
    release(
        state,
        plan.order_id,
        lines.iter().map(|l| l.sku.as_str()),
        reason,
    )
    .await;
}

async fn release<'a>(
    state: &State,
    order_id: uuid::Uuid,
    skus: impl Iterator<Item = &'a str>,
    reason: ReleaseReason,
) {
    for sku in skus {
        let command = StockCommand::Release {
            order: order_id.as_u128(),
            reason,
        };
        if let Err(error) = state.stock.ask(sku, command, None).await {
            tracing::warn!(%sku, %order_id, error = %error.detail, "release failed; the reservation will expire");
        }
    }
}

/// Returns a cancelled order's units to where they were reserved. Best effort: what is not
/// released here expires at `expires_at`.
async fn give_back(state: &State, view: &OrderView) {
    let id = uuid::Uuid::parse_str(&view.id).expect("order ids are UUIDs");
    match view.source.kind {
        SourceKind::Stock => {
            let skus = view.items.iter().map(|i| i.reference.as_str());
            release(state, id, skus, ReleaseReason::Cancelled).await;
        }
        SourceKind::TimeSale => {
            let command = SaleCommand::Release {
                order: id.as_u128(),
                reason: ReleaseReason::Cancelled,
            };
            if let Err(error) = state.sales.ask(&view.source.id, command, None).await {
                tracing::warn!(order_id = %id, error = %error.detail, "release failed; the reservation will expire");
            }
        }
        SourceKind::Event => {
            let command = SeatCommand::Release {
                order: id.as_u128(),
                reason: ReleaseReason::Cancelled,
            };
            if let Err(error) = state.events.ask(&view.source.id, command, None).await {
                tracing::warn!(order_id = %id, error = %error.detail, "release failed; the hold will expire");
            }
        }
    }
}

fn order_id(path: &web::Path<String>) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(path.as_str())
        .map_err(|_| ApiError::not_found(format!("order {} not found", path.as_str())))
}

/// Reads the order and checks the caller may see it.
pub(crate) async fn owned_order(
    state: &State,
    caller: &Caller,
    id: uuid::Uuid,
) -> Result<OrderView, ApiError> {
    let view = state
        .orders
        .ask(&id.to_string(), OrderCommand::Get, None)
        .await?;
    if !caller.can_see(&view.user_id) {
        return Err(ApiError::forbidden("this order belongs to someone else"));
    }
    Ok(view)
}

#[utoipa::path(get, path = "/orders/{id}", summary = "Get an order", tag = "orders",
    operation_id = "get_order",
    security(("bearer" = [])), params(("id" = String, Path, description = "The order id (a UUID)")),
    description = "Read your writes: right after the 201 that created it, it is there.",
    responses(
        (status = 200, description = "The order", body = OrderViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's order"),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = owned_order(&state, &caller, order_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", summary = "Cancel an order", tag = "orders",
    operation_id = "cancel_order",
    security(("bearer" = [])), params(("id" = String, Path, description = "The order id (a UUID)"),
        IdempotencyKey),
    description = "A `RESERVED` (or `PAYMENT_FAILED`) order becomes `CANCELLED` and its units \
        or seats go back; cancelling a `CANCELLED` order again answers it as it is.",
    responses(
        (status = 200, description = "The order after the cancel", body = OrderViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's order"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "ORDER_EXPIRED: its units are already back; CONFLICT: \
            an order in another status"),
    ))]
async fn cancel(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    owned_order(&state, &caller, id).await?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side = idempotent::record_side::<crate::actors::order::Order, _, _>(
        keyed.as_ref(),
        StatusCode::OK,
        OrderView::clone,
    );
    let view = idempotent::ask_keyed(
        &state,
        &state.orders,
        &id.to_string(),
        OrderCommand::Cancel,
        side,
        keyed,
    )
    .await?;
    if view.status == OrderStatus::Cancelled {
        give_back(&state, &view).await;
    }
    Ok(HttpResponse::Ok().json(view))
}

/// The caller's orders, newest first; operators may name `?user_id=` or see everyone's.
#[utoipa::path(get, path = "/orders", summary = "List orders", tag = "orders",
    operation_id = "list_orders",
    security(("bearer" = [])),
    params(Paging, ("user_id" = Option<String>, Query,
        description = "Operators: one user's orders (everyone's without it). Customers: only \
            their own id")),
    responses(
        (status = 200, description = "Orders, newest first", body = Page<OrderViewSchema>),
        (status = 403, description = "FORBIDDEN: a customer naming another user"),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list(
    state: State,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(&state)?;
    let owner = match (&query.user_id, caller.is_operator()) {
        (Some(user), true) => Some(user.as_str()),
        (None, true) => None,
        (Some(user), false) if *user != caller.user_id => {
            return Err(ApiError::forbidden("customers see only their own orders"))
        }
        _ => Some(caller.user_id.as_str()),
    };
    let page = super::read_page(&state, "order", owner, None, &query, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = OrderStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatusSchema {
    Reserved,
    Paying,
    Confirmed,
    PaymentFailed,
    Expired,
    Cancelled,
    Refunding,
    Refunded,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Source)]
#[allow(dead_code)] // Describes the domain's `Source`; never built.
pub struct SourceSchema {
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "time_sale")]
    pub kind: SourceKind,
    pub id: String,
}

#[derive(utoipa::ToSchema)]
#[schema(as = OrderItem)]
#[allow(dead_code)] // Describes the domain's `OrderItem`; never built.
pub struct OrderItemSchema {
    #[serde(rename = "ref")]
    pub reference: String,
    pub quantity: i64,
    pub unit_price: i64,
}

#[derive(utoipa::ToSchema)]
#[schema(as = StepView)]
#[allow(dead_code)] // Describes the domain's `StepView`; never built.
pub struct StepViewSchema {
    pub name: String,
    pub status: String,
    pub at: String,
}

/// The order as API.md shows it.
#[derive(utoipa::ToSchema)]
#[schema(as = OrderView)]
#[allow(dead_code)] // Describes the domain's `OrderView`; never built.
pub struct OrderViewSchema {
    pub id: String,
    pub user_id: String,
    pub source: SourceSchema,
    pub items: Vec<OrderItemSchema>,
    pub status: OrderStatusSchema,
    pub amount: i64,
    pub discount: i64,
    pub points_used: i64,
    pub card_amount: i64,
    pub coupon_id: Option<String>,
    pub payment_id: Option<String>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// `{code, detail}` of a failed payment.
    #[schema(value_type = Option<Object>)]
    pub failure: Option<serde_json::Value>,
    pub steps: Vec<StepViewSchema>,
}
