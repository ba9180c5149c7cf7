//! Orders of stock lines (API.md "Stock items" and "Orders"): place, get, list, cancel.
//!
//! The handlers translate HTTP: they parse and check the request, run its idempotency key and
//! hand the order to [`crate::checkout`], which reserves the lines (every one or none, the
//! order born with the last reservation), compensates, and gives units back on a cancel.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::openapi::{IdempotencyKey, Page, Paging};
use super::{is_valid_ident, ListQuery, RawBody, State};
use crate::actors::order::{Order, OrderCommand, OrderStatus, OrderView};
use crate::actors::pay_saga::{
    amounts_problem, Action, PayRequest, Saga, SagaCommand, SagaView, Step,
};
use crate::actors::OrderId;
use crate::auth::Caller;
use crate::checkout::Line;
use crate::error::{ApiError, FieldErrors};

/// Most units one order line may ask for.
const LINE_QUANTITY_MAX: i64 = 1_000_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/orders")
            .route("", web::post().to(place))
            .route("", web::get().to(list))
            .route("/{id}", web::get().to(get))
            .route("/{id}/cancel", web::post().to(cancel))
            .route("/{id}/pay", web::post().to(pay)),
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

impl LineBody {
    fn into_line(self) -> Line {
        Line {
            sku: self.sku,
            quantity: self.quantity,
        }
    }
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
    let input: PlaceBody = body.json()?;
    validate_lines(&input.items, state.rt.settings.orders.lines_max)?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let lines = input.items.into_iter().map(LineBody::into_line).collect();
    let (mut rider, key) = idempotent::birth_rider(keyed);
    let json = (state.checkout)
        .place_stock(&caller.user_id, lines, &mut rider)
        .await?;
    Ok(idempotent::created(&state, key, json))
}

fn order_id(path: &web::Path<String>) -> Result<OrderId, ApiError> {
    path.as_str()
        .parse::<OrderId>()
        .map_err(|_| ApiError::not_found(format!("order {} not found", path.as_str())))
}

/// Reads the order and checks the caller may see it.
pub(crate) async fn owned_order(
    state: &State,
    caller: &Caller,
    id: OrderId,
) -> Result<OrderView, ApiError> {
    let view = state
        .orders
        .ask(&id.to_string(), OrderCommand::Get, None)
        .await?;
    if !caller.can_see(view.user_id.as_str()) {
        return Err(ApiError::forbidden("this order belongs to someone else"));
    }
    Ok(view)
}

#[utoipa::path(get, path = "/orders/{id}", summary = "Get an order", tag = "orders",
    operation_id = "get_order",
    security(("bearer" = [])), params(("id" = String, Path, description = "The order id (a UUID)")),
    description = "Read your writes: right after the 201 that created it, it is there. A \
        `CONFIRMED` event order carries `tickets`, one signed code per seat, which the door \
        checks in (`POST /events/{id}/check-in`); a refund voids them and they are no longer \
        shown.",
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
    Ok(HttpResponse::Ok().json(state.tickets.with_tickets(view)))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", summary = "Cancel an order", tag = "orders",
    operation_id = "cancel_order",
    security(("bearer" = [])), params(("id" = String, Path, description = "The order id (a UUID)"),
        IdempotencyKey),
    description = "A `RESERVED` (or `PAYMENT_FAILED`) order becomes `CANCELLED` and its units \
        or seats go back; cancelling a `CANCELLED` order again answers it as it is. A \
        `CONFIRMED` order is refunded: card refund, points back, coupon back, units or seats \
        back (an event order's tickets are void from then on), then `REFUNDED`.",
    responses(
        (status = 200, description = "The order after the cancel (or the refund)", body = OrderViewSchema),
        (status = 202, description = "The order, still `REFUNDING`", body = OrderViewSchema),
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
    let order = owned_order(&state, &caller, id).await?;
    if matches!(
        order.status,
        OrderStatus::Confirmed | OrderStatus::Refunding | OrderStatus::Refunded
    ) {
        return refund(&state, &order, id).await;
    }
    let mut keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side =
        idempotent::record_side::<Order, _, _>(keyed.as_ref(), StatusCode::OK, OrderView::clone);
    let mut none = None;
    let hold = idempotent::hold_of(&mut keyed, &mut none);
    let cancelled = state.checkout.cancel(id, side, hold).await?;
    // Before the units go back: the cancel and its record have committed.
    if let Some(keyed) = keyed {
        keyed.finish(&state);
    }
    Ok(HttpResponse::Ok().json(cancelled.give_back().await))
}

/// Cancelling a paid order refunds it: card, points, coupon and units go back through its
/// saga (each step keyed, so repeating the cancel refunds once); 200 with the order once
/// `REFUNDED`, 202 while `REFUNDING`.
async fn refund(state: &State, order: &OrderView, id: OrderId) -> Result<HttpResponse, ApiError> {
    state.payments.refund(order).await?;
    let wait = Duration::from_secs(PAY_WAIT_SECS_DEFAULT);
    let saga = state.payments.wait_for_end(id, wait).await?;
    answer_payment(state, id, &saga).await
}

/// What a customer pays an order with; every field may be left out.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PayOrder)]
struct PayBody {
    /// One of the caller's coupons (`{policy_id}.{n}`).
    coupon_id: Option<String>,
    /// Points from the caller's wallet, at most what is due after the discount.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    points: Option<i64>,
    /// Charged for what the coupon and points leave; required unless that is 0.
    #[schema(example = "tok_visa")]
    card_token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PayQuery {
    /// Seconds to wait for the payment to end (0 to 30, default 10): 200 if it ends in time,
    /// else 202 with the order `PAYING`.
    wait_secs: Option<u64>,
}

/// Longest a pay request waits for its saga.
const PAY_WAIT_SECS_MAX: u64 = 30;
const PAY_WAIT_SECS_DEFAULT: u64 = 10;

#[utoipa::path(post, path = "/orders/{id}/pay", summary = "Pay an order", tag = "orders",
    operation_id = "pay_order",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The order id (a UUID)"), PayQuery, IdempotencyKey),
    request_body = PayBody,
    description = "Runs the checkout saga: redeem the coupon, debit the points, charge the card \
        for the rest, commit the reserved units, then `CONFIRMED`. A step that fails undoes the \
        ones before it and the order ends `PAYMENT_FAILED` (its reservation kept until \
        `expires_at`; pay may be tried again, with another Idempotency-Key). The same key \
        never pays twice.",
    responses(
        (status = 200, description = "The order once its payment ended: `CONFIRMED` or \
            `PAYMENT_FAILED` (with `failure`)", body = OrderViewSchema),
        (status = 202, description = "The order, still `PAYING`", body = OrderViewSchema),
        (status = 403, description = "FORBIDDEN: someone else's order"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "ORDER_EXPIRED; ORDER_NOT_PAYABLE: paid, paying with \
            other terms, or cancelled"),
        (status = 422, description = "VALIDATION_FAILED"),
        (status = 503, description = "GATEWAY_UNAVAILABLE: the gateway's breaker is open \
            (the order stays as it was)"),
    ))]
async fn pay(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PayQuery>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let input: PayBody = body.json_or_default()?;
    let wait_secs = query.wait_secs.unwrap_or(PAY_WAIT_SECS_DEFAULT);
    if wait_secs > PAY_WAIT_SECS_MAX {
        return Err(ApiError::validation(
            "wait_secs",
            format!("must be 0 to {PAY_WAIT_SECS_MAX}"),
        ));
    }
    let order = owned_order(&state, &caller, id).await?;
    if order.user_id.as_str() != caller.user_id {
        return Err(ApiError::forbidden("only the order's owner pays it"));
    }
    let request = PayRequest {
        coupon_id: input.coupon_id,
        points: input.points.unwrap_or(0),
        card_token: input.card_token,
    };
    // Without a coupon the amounts are known now: refuse what cannot add up before anything
    // starts. A coupon's discount is known once it is redeemed, inside the saga.
    if request.coupon_id.is_none() {
        if let Some(problem) = amounts_problem(order.amount, 0, &request) {
            return Err(ApiError::validation("points", problem));
        }
    }
    if request.card_token.is_some() {
        super::refuse_while_gateway_open(&state)?;
    }
    match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        // The same key again: the payment it started, as it is now.
        Prepared::Replay(_) => {}
        Prepared::Run(keyed) => {
            let side =
                idempotent::record_side::<Saga, _, _>(keyed.as_ref(), StatusCode::ACCEPTED, |v| {
                    v.order_id.clone()
                });
            let mut none = None;
            let mut keyed = keyed;
            let hold = idempotent::hold_of(&mut keyed, &mut none);
            let command = SagaCommand::Pay(request);
            state
                .sagas
                .ask_holding(&id.to_string(), command, side, hold)
                .await?;
            if let Some(keyed) = keyed {
                keyed.finish(&state);
            }
        }
    }
    state.payments.drive(id);
    let saga = state
        .payments
        .wait_for_end(id, Duration::from_secs(wait_secs))
        .await?;
    answer_payment(&state, id, &saga).await
}

/// 200 with the order once its payment has ended (with `failure` if it failed), 202 while it
/// runs; an attempt that could not even begin answers its refusal.
async fn answer_payment(
    state: &State,
    id: OrderId,
    saga: &SagaView,
) -> Result<HttpResponse, ApiError> {
    let failure = saga.attempt.as_ref().and_then(|a| a.failure.clone());
    if let Some(failure) = failure.as_ref().filter(|f| f.step == Step::BeginPay) {
        return Err(ApiError::new(failure.code, failure.detail.clone()));
    }
    let mut order = state
        .orders
        .ask(&id.to_string(), OrderCommand::Get, None)
        .await?;
    if order.status == OrderStatus::PaymentFailed {
        order.failure = failure.map(|f| serde_json::json!({ "code": f.code, "detail": f.detail }));
    }
    let ended = matches!(saga.next, Action::Finished(_));
    let status = if ended {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(HttpResponse::build(status).json(state.tickets.with_tickets(order)))
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
    #[schema(example = "time_sale")]
    pub kind: String,
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
    /// A `CONFIRMED` event order's tickets, one per seat; absent for any other order.
    #[schema(nullable = false)]
    pub tickets: Option<Vec<SeatTicketSchema>>,
}

/// One seat's ticket: the code the door checks in.
#[derive(utoipa::ToSchema)]
#[schema(as = SeatTicket)]
#[allow(dead_code)] // Describes the domain's `SeatTicket`; never built.
pub struct SeatTicketSchema {
    #[schema(example = "A-3-12")]
    pub seat_id: String,
    /// Signed, bound to the event, the order and the seat.
    pub code: String,
}
