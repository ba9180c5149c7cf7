//! `POST /events/{id}/check-in`: the door scans a ticket (API.md "Orders and payment").
//!
//! The code's tag is checked without touching any actor ([`crate::tickets`]): a forged code,
//! or one of another event, is refused there. Then the order is asked whether it is still
//! `CONFIRMED` and holds that seat of this event (a refunded order's tickets are void), and
//! the event's seat map records the check-in, once, in the seat's status byte (a `CheckedIn`
//! event; see `seat_map/after_sale.rs`). Every reason a ticket does not admit is 422
//! `TICKET_INVALID`, save a second scan of a good one: 409 `ALREADY_CHECKED_IN`.
//!
//! The order's answer and the map's turn are one hop apart. A refund begun after the answer
//! gives the seat back only at the end of its saga (after the card refund at the gateway), and
//! the map refuses a seat that is not sold; only a whole refund, a new hold and a new payment
//! of that seat (two gateway round trips) inside that one hop could slip through.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::openapi::IdempotencyKey;
use super::products::uuid_path;
use super::{RawBody, State};
use crate::actors::order::{OrderCommand, OrderStatus, SourceKind};
use crate::actors::seat_map::{SeatCommand, SeatMap, SeatReply};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::tickets::{TicketClaims, CODE_LEN_MAX};

/// `{code}`: a ticket's code as an order shows it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CheckIn)]
struct CheckInBody {
    #[schema(max_length = 200)]
    code: String,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::TicketInvalid, detail)
}

/// The ticket `code` claims, if the server signed it for event `event_id`.
fn read_code(state: &State, event_id: &str, code: &str) -> Result<TicketClaims, ApiError> {
    if code.chars().count() > CODE_LEN_MAX {
        return Err(ApiError::validation(
            "code",
            format!("must be at most {CODE_LEN_MAX} characters"),
        ));
    }
    let claims = (state.tickets)
        .read(code)
        .ok_or_else(|| invalid("this is not a ticket of ours"))?;
    if claims.event_id.to_string() != event_id {
        return Err(invalid("this ticket is for another event"));
    }
    Ok(claims)
}

/// The ticket's order must still be `CONFIRMED` (a refund voids its tickets) with the seat.
async fn check_order(state: &State, event_id: &str, ticket: &TicketClaims) -> Result<(), ApiError> {
    let order_id = ticket.order_id.to_string();
    let order = match state.orders.ask(&order_id, OrderCommand::Get, None).await {
        Ok(order) => order,
        Err(error) if error.code == ErrorCode::NotFound => {
            return Err(invalid(format!("order {order_id} does not exist")))
        }
        Err(error) => return Err(error),
    };
    if order.status != OrderStatus::Confirmed {
        return Err(invalid(format!(
            "order {order_id} is {}: its tickets are void",
            order.status.as_str()
        )));
    }
    let of_event = order.source.kind == SourceKind::Event && order.source.id == event_id;
    let has_seat = order.items.iter().any(|i| i.reference == ticket.seat_id);
    if !(of_event && has_seat) {
        return Err(invalid(format!(
            "seat {} of this event is not in order {order_id}",
            ticket.seat_id
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/events/{id}/check-in", summary = "Check a ticket in at the door",
    tag = "events", operation_id = "check_in",
    security(("bearer" = ["operator", "admin"])), request_body = CheckInBody,
    params(("id" = String, Path, description = "The event id"), IdempotencyKey),
    description = "Admits the seat of a ticket (a `code` from a `CONFIRMED` event order's \
        `tickets`) once. The same Idempotency-Key answers the first check-in again.",
    responses(
        (status = 200, description = "Checked in, the first time", body = CheckInViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND: no such event"),
        (status = 409, description = "ALREADY_CHECKED_IN"),
        (status = 422, description = "TICKET_INVALID: forged, void (its order refunded) or \
            another event's; VALIDATION_FAILED"),
    ))]
pub(super) async fn check_in(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let event_id = uuid_path(&path, "event")?;
    let input: CheckInBody = body.json()?;
    let ticket = read_code(&state, &event_id, &input.code)?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    check_order(&state, &event_id, &ticket).await?;
    let side = idempotent::record_side::<SeatMap, _, _>(
        keyed.as_ref(),
        StatusCode::OK,
        |reply: &SeatReply| match reply {
            SeatReply::CheckedIn(view) => serde_json::to_value(view).expect("view serialises"),
            _ => serde_json::Value::Null,
        },
    );
    let command = SeatCommand::CheckIn {
        order: ticket.order_id,
        seat: ticket.seat_id,
    };
    let reply =
        idempotent::ask_keyed(&state, &state.events, &event_id, command, side, keyed).await?;
    match reply {
        SeatReply::CheckedIn(view) => Ok(HttpResponse::Ok().json(view)),
        other => Err(ApiError::internal(format!(
            "expected a check-in, got {other:?}"
        ))),
    }
}

/// A ticket checked in.
#[derive(utoipa::ToSchema)]
#[schema(as = CheckInView)]
#[allow(dead_code)] // Describes the domain's `CheckInView`; never built.
pub struct CheckInViewSchema {
    #[schema(example = "A-3-12")]
    pub seat_id: String,
    /// The order the ticket belongs to (a UUID).
    pub order_id: String,
}
