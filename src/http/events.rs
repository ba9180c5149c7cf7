//! Events, their seat maps and holds (API.md "Events, seat maps and holds"), and the waiting room
//! in front of an event. Checking tickets in at the door: [`super::check_in`].
//!
//! A hold is one actor hop to the event's `SeatMap` and one journal append, sent by
//! [`crate::checkout`]: the RESERVED order (one item per seat) is born in the same batch as the
//! `Held` event, as a time-sale purchase is. Its expiry is `now + hold_ttl_secs`, set by the map
//! and copied into the order; the seat map and the order each carry that deadline and release or
//! expire by themselves, also across a restart.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::openapi::{IdempotencyKey, Page, Paging};
use super::products::uuid_path;
use super::{queue, ListQuery, RawBody, State};
use crate::actors::seat_map::{
    EventTerms, MapView, SeatCommand, SeatMap, SeatReply, SeatRequest, SectionTerms,
    HOLD_TTL_SECS_DEFAULT, MAX_SEATS_PER_ORDER_DEFAULT,
};
use crate::actors::Entity;
use crate::auth::Caller;
use crate::checkout::SeatHold;
use crate::clock::parse_rfc3339;
use crate::error::{ApiError, FieldError};

/// A stadium's layout is larger than an ordinary request: its create body may take this much.
pub const LAYOUT_BODY_MAX_BYTES: usize = 1 << 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let scope = web::scope("/events")
        .route("/{id}/holds", web::post().to(hold))
        .service(
            web::resource("")
                .app_data(web::PayloadConfig::default().limit(LAYOUT_BODY_MAX_BYTES))
                .route(web::post().to(create))
                .route(web::get().to(list))
                // Else actix answers another method with its own bodiless 405.
                .default_service(web::to(super::no_route)),
        )
        .route("/{id}", web::get().to(get))
        .route("/{id}/seats", web::get().to(seats))
        .route("/{id}/check-in", web::post().to(super::check_in::check_in));
    cfg.service(queue::routes::<EventQueue>(scope));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateEvent)]
struct CreateBody {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(min_length = 1, max_length = 200)]
    venue: String,
    /// RFC 3339.
    #[schema(example = "2026-12-24T19:00:00Z")]
    starts_at: String,
    /// RFC 3339; holds before it get 422 `SALES_NOT_OPEN`. Absent: open at once.
    sales_open_at: Option<String>,
    /// Seconds a hold waits for payment before its seats go back.
    #[schema(default = 600, minimum = 1, maximum = 86_400)]
    hold_ttl_secs: Option<i64>,
    #[schema(default = 4, minimum = 1, maximum = 50)]
    max_seats_per_order: Option<u32>,
    #[serde(default)]
    queue_required: bool,
    /// At most 200,000 seats in all.
    #[schema(min_items = 1, value_type = Vec<SectionTermsSchema>)]
    sections: Vec<SectionTerms>,
}

impl CreateBody {
    /// Times parsed; the layout and bounds are checked by the entity (`validate_terms`).
    fn terms(self) -> Result<EventTerms, ApiError> {
        let time = |field: &str, text: &str| {
            parse_rfc3339(text).ok_or_else(|| FieldError {
                field: field.to_string(),
                message: "must be an RFC 3339 time".into(),
            })
        };
        let starts_at_ms = time("starts_at", &self.starts_at);
        let sales_open_at_ms = self
            .sales_open_at
            .as_deref()
            .map(|t| time("sales_open_at", t))
            .transpose();
        let errors: Vec<FieldError> =
            [starts_at_ms.as_ref().err(), sales_open_at_ms.as_ref().err()]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(errors));
        }
        Ok(EventTerms {
            name: self.name,
            venue: self.venue,
            starts_at_ms: starts_at_ms.expect("checked above"),
            sales_open_at_ms: sales_open_at_ms.expect("checked above"),
            hold_ttl_secs: self.hold_ttl_secs.unwrap_or(HOLD_TTL_SECS_DEFAULT),
            max_seats_per_order: self
                .max_seats_per_order
                .unwrap_or(MAX_SEATS_PER_ORDER_DEFAULT),
            queue_required: self.queue_required,
            sections: self.sections,
        })
    }
}

fn map_of(reply: SeatReply) -> Result<MapView, ApiError> {
    match reply {
        SeatReply::Map(view) => Ok(view),
        other => Err(ApiError::internal(format!(
            "expected the map, got {other:?}"
        ))),
    }
}

#[utoipa::path(post, path = "/events", summary = "Create an event and its seat map",
    tag = "events", operation_id = "create_event",
    security(("bearer" = ["operator", "admin"])), request_body = CreateBody, params(IdempotencyKey),
    responses(
        (status = 201, description = "The event with `seats_total` and its availability",
            body = MapViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 413, description = "PAYLOAD_TOO_LARGE: a body over 1 MiB (a stadium's layout)"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn create(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let terms = body.json::<CreateBody>()?.terms()?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side = idempotent::record_side::<SeatMap, _, _>(
        keyed.as_ref(),
        StatusCode::CREATED,
        |reply: &SeatReply| match reply {
            SeatReply::Map(view) => serde_json::to_value(view).expect("map view serialises"),
            _ => serde_json::Value::Null,
        },
    );
    let id = uuid::Uuid::now_v7().to_string();
    let command = SeatCommand::Create(terms);
    let reply = idempotent::ask_keyed(&state, &state.events, &id, command, side, keyed).await?;
    Ok(HttpResponse::Created().json(map_of(reply)?))
}

#[utoipa::path(get, path = "/events/{id}", summary = "Get an event", tag = "events",
    operation_id = "get_event",
    security(("bearer" = [])), params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event with `availability: {available, held, sold}` \
            in all and per section", body = MapViewSchema),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid_path(&path, "event")?;
    let reply = state.events.ask(&id, SeatCommand::Get, None).await?;
    Ok(HttpResponse::Ok().json(map_of(reply)?))
}

#[utoipa::path(get, path = "/events/{id}/seats", summary = "An event's seats", tag = "events",
    operation_id = "list_seats",
    security(("bearer" = [])), params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "Every seat with its price and status", body = Seats),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn seats(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid_path(&path, "event")?;
    match state.events.ask(&id, SeatCommand::Seats, None).await? {
        SeatReply::Seats(snapshot) => {
            // Built here, not on the map's turn: a stadium is 60,000 views.
            let seats = snapshot.views();
            Ok(HttpResponse::Ok().json(serde_json::json!({ "seats": seats })))
        }
        other => Err(ApiError::internal(format!("expected seats, got {other:?}"))),
    }
}

/// Events, newest start first, from the read table each seat map's commits keep current.
#[utoipa::path(get, path = "/events", summary = "List events", tag = "events",
    operation_id = "list_events",
    security(("bearer" = [])), params(Paging),
    responses(
        (status = 200, description = "Events, newest first", body = Page<MapViewSchema>),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list(
    state: State,
    _caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(&state)?;
    let page = super::read_page(&state, SeatMap::KIND, None, None, &query, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Every seat of an event, as `GET /events/{id}/seats` answers.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer's JSON; never built.
struct Seats {
    seats: Vec<SeatViewSchema>,
}

/// `{seat_ids: [..]}` or `{section?, quantity}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HoldSeats)]
struct HoldBody {
    /// These seats, all or none (`"A-3-12"`: section, row, number).
    seat_ids: Option<Vec<String>>,
    /// With `quantity`: best available in this section (any section without it).
    section: Option<String>,
    /// Best available: adjacent seats in one row, front rows first.
    #[schema(minimum = 1)]
    quantity: Option<u32>,
}

impl HoldBody {
    fn request(self) -> Result<SeatRequest, ApiError> {
        match (self.seat_ids, self.quantity) {
            (Some(ids), None) if self.section.is_none() => Ok(SeatRequest::ByIds(ids)),
            (None, Some(quantity)) => Ok(SeatRequest::BestAvailable {
                section: self.section,
                quantity,
            }),
            _ => Err(ApiError::validation(
                "body",
                "give either seat_ids, or quantity (with an optional section)",
            )),
        }
    }
}

#[utoipa::path(post, path = "/events/{id}/holds", summary = "Hold seats as an order",
    tag = "events", operation_id = "hold_seats",
    security(("bearer" = [])), request_body = HoldBody,
    params(("id" = String, Path, description = "The event id"), IdempotencyKey,
        ("X-Queue-Pass" = Option<String>, Header,
            description = "The pass of the event's waiting room, when it is `queue_required`")),
    description = "A seat is never sold twice. A hold not paid within `hold_ttl_secs` is \
        released by itself, also when the server was down at that moment.",
    responses(
        (status = 201, description = "The order, `RESERVED`, one item per seat",
            body = super::orders::OrderViewSchema),
        (status = 403, description = "QUEUE_PASS_REQUIRED"),
        (status = 404, description = "NOT_FOUND"),
        (status = 409, description = "SEAT_UNAVAILABLE (all or nothing)"),
        (status = 422, description = "TOO_MANY_SEATS, SALES_NOT_OPEN, VALIDATION_FAILED"),
    ))]
async fn hold(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let event_id = uuid_path(&path, "event")?;
    let request = body.json::<HoldBody>()?.request()?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let now_ms = state.rt.now_ms();
    let queue_pass = (state.passes).request_admits::<EventQueue>(&req, &caller, &event_id, now_ms);
    let hold = SeatHold {
        event_id,
        user_id: caller.user_id.clone(),
        request,
        queue_pass,
    };
    let (mut rider, key) = idempotent::birth_rider(keyed);
    let json = state.checkout.hold_seats(hold, &mut rider).await?;
    Ok(idempotent::created(&state, key, json))
}

/// An event's waiting room opens when its sales open (at once without a time: the epoch is
/// long past).
pub struct EventQueue;

impl queue::Queued for EventQueue {
    const KIND: &'static str = "events";

    fn id_of(path: &str) -> Result<String, ApiError> {
        uuid_path(path, "event")
    }

    async fn opens_at_ms(state: &State, id: &str) -> Result<i64, ApiError> {
        let event = map_of(state.events.ask(id, SeatCommand::Get, None).await?)?;
        match event.sales_open_at.as_deref() {
            Some(text) => parse_rfc3339(text)
                .ok_or_else(|| ApiError::internal("an event's sales_open_at does not parse")),
            None => Ok(0),
        }
    }
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = RowTerms)]
#[allow(dead_code)] // Describes the domain's `RowTerms`; never built.
pub struct RowTermsSchema {
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1000)]
    pub seats: u32,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: i64,
}

#[derive(utoipa::ToSchema)]
#[schema(as = SectionTerms)]
#[allow(dead_code)] // Describes the domain's `SectionTerms`; never built.
pub struct SectionTermsSchema {
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$")]
    pub name: String,
    #[schema(min_items = 1)]
    pub rows: Vec<RowTermsSchema>,
}

/// Seats by status; `available + held + sold` is the seats counted.
#[derive(utoipa::ToSchema)]
#[schema(as = Availability)]
#[allow(dead_code)] // Describes the domain's `Availability`; never built.
pub struct AvailabilitySchema {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

#[derive(utoipa::ToSchema)]
#[schema(as = SectionView)]
#[allow(dead_code)] // Describes the domain's `SectionView`; never built.
pub struct SectionViewSchema {
    pub name: String,
    pub seats_total: u32,
    pub availability: AvailabilitySchema,
}

/// The event as API.md shows it.
#[derive(utoipa::ToSchema)]
#[schema(as = MapView)]
#[allow(dead_code)] // Describes the domain's `MapView`; never built.
pub struct MapViewSchema {
    pub id: String,
    pub name: String,
    pub venue: String,
    pub starts_at: String,
    pub sales_open_at: Option<String>,
    pub hold_ttl_secs: i64,
    pub max_seats_per_order: u32,
    pub queue_required: bool,
    pub seats_total: u32,
    pub availability: AvailabilitySchema,
    pub sections: Vec<SectionViewSchema>,
    pub version: u64,
}

/// One seat of GET /events/{id}/seats.
#[derive(utoipa::ToSchema)]
#[schema(as = SeatView)]
#[allow(dead_code)] // Describes the domain's `SeatView`; never built.
pub struct SeatViewSchema {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub price: i64,
    pub status: SeatStatusSchema,
}

/// A seat's status; stored as its byte, one per seat.
#[derive(utoipa::ToSchema)]
#[schema(as = SeatStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatusSchema {
    Available,
    Held,
    Sold,
}
