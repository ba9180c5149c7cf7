//! The waiting room in front of a resource: join, my status, stats and settings, and the signed
//! pass an admitted user shows (`X-Queue-Pass`) to buy from a `queue_required` resource.
//!
//! A pass is an HS256 JWT `{sub: user, res: "time-sales/{id}", exp, typ: "queue_pass"}` signed
//! with a key derived from `auth.jwt_secret`, so it can never pass for an access token (nor the
//! reverse). It is handed out with every status answer while the ticket is admitted, valid for
//! `queue.pass_ttl_secs` from then, and checked without touching any actor.

use crate::actors::UserId;
use std::future::Future;

use actix_web::{web, HttpRequest, HttpResponse, Scope};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{RawBody, State};
use crate::actors::waiting_room::{RoomCommand, RoomReply, RoomStats, RoomTerms, TicketStatus};
use crate::auth::Caller;
use crate::clock::rfc3339;
use crate::error::{ApiError, ErrorCode};

/// The request header that carries a pass.
pub const PASS_HEADER: &str = "X-Queue-Pass";

#[derive(Serialize, Deserialize)]
struct PassClaims {
    sub: String,
    res: String,
    exp: i64,
    typ: PassKind,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PassKind {
    QueuePass,
}

/// Mints and checks queue passes; keys are built once.
pub struct QueuePasses {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl QueuePasses {
    pub fn new(jwt_secret: &str, ttl_secs: u64) -> QueuePasses {
        let key = format!("{jwt_secret}/queue-pass");
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injected clock in `check`.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        QueuePasses {
            encoding: EncodingKey::from_secret(key.as_bytes()),
            decoding: DecodingKey::from_secret(key.as_bytes()),
            validation,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1000),
        }
    }

    /// A pass for `user_id` on `resource`, and when it expires (ms).
    pub fn mint(
        &self,
        user_id: &str,
        resource: &str,
        now_ms: i64,
    ) -> Result<(String, i64), ApiError> {
        let exp = now_ms.div_euclid(1000).saturating_add(self.ttl_secs);
        let claims = PassClaims {
            sub: user_id.to_string(),
            res: resource.to_string(),
            exp,
            typ: PassKind::QueuePass,
        };
        let pass = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok((pass, exp.saturating_mul(1000)))
    }

    /// True when `pass` is a valid, unexpired pass of `user_id` for `resource`.
    pub fn admits(&self, pass: Option<&str>, user_id: &str, resource: &str, now_ms: i64) -> bool {
        let Some(pass) = pass else { return false };
        match jsonwebtoken::decode::<PassClaims>(pass, &self.decoding, &self.validation) {
            Ok(data) => {
                let claims = data.claims;
                claims.sub == user_id
                    && claims.res == resource
                    && now_ms < claims.exp.saturating_mul(1000)
            }
            Err(_) => false,
        }
    }

    /// Whether the request carries a pass of the caller for resource `id` of kind `R`. Without
    /// the header (every purchase of a sale that needs none) it costs one header look-up.
    pub fn request_admits<R: Queued>(
        &self,
        req: &HttpRequest,
        caller: &Caller,
        id: &str,
        now_ms: i64,
    ) -> bool {
        let Some(pass) = req.headers().get(PASS_HEADER) else {
            return false;
        };
        let pass = pass.to_str().ok();
        self.admits(pass, &caller.user_id, &resource_of::<R>(id), now_ms)
    }
}

/// A resource with a waiting room in front of it: a time sale, an event. The room's routes,
/// handlers and pass names are the same for every kind; only these differ.
pub trait Queued: 'static {
    /// The resource's path segment, also the prefix of its room's and passes' names.
    const KIND: &'static str;
    /// The canonical id named by a path segment; 404 when it names none.
    fn id_of(path: &str) -> Result<String, ApiError>;
    /// When the resource's room opens (admission starts, early joins are shuffled); 404 when
    /// there is no such resource.
    fn opens_at_ms(state: &State, id: &str) -> impl Future<Output = Result<i64, ApiError>>;
}

/// The name of a resource's room, also the `res` of its passes: `time-sales/{id}`.
pub fn resource_of<R: Queued>(id: &str) -> String {
    format!("{}/{id}", R::KIND)
}

/// The waiting-room routes of `R`, added to its scope.
pub fn routes<R: Queued>(scope: Scope) -> Scope {
    scope
        .route("/{id}/queue/join", web::post().to(join::<R>))
        .route("/{id}/queue/me", web::get().to(my_ticket::<R>))
        .route("/{id}/queue", web::get().to(queue_stats::<R>))
        .route("/{id}/queue", web::patch().to(configure_queue::<R>))
}

/// The room's name, and its settings for a first join or configure.
async fn room<R: Queued>(state: &State, path: &str) -> Result<(String, RoomTerms), ApiError> {
    let id = R::id_of(path)?;
    let opens_at_ms = R::opens_at_ms(state, &id).await?;
    Ok((resource_of::<R>(&id), room_terms(state, opens_at_ms)))
}

async fn join<R: Queued>(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (resource, terms) = room::<R>(&state, &path).await?;
    let command = RoomCommand::Join {
        user_id: UserId::from(caller.user_id.clone()),
        terms,
    };
    ticket(&state, &caller, resource, command).await
}

async fn my_ticket<R: Queued>(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resource = resource_of::<R>(&R::id_of(&path)?);
    let command = RoomCommand::Me {
        user_id: UserId::from(caller.user_id.clone()),
    };
    ticket(&state, &caller, resource, command).await
}

async fn queue_stats<R: Queued>(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let (resource, _) = room::<R>(&state, &path).await?;
    stats(&state, resource).await
}

async fn configure_queue<R: Queued>(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    // The role first: a customer learns nothing from how their body would have been judged.
    caller.require_operator()?;
    let body: ConfigureBody = body.json()?;
    let (resource, terms) = room::<R>(&state, &path).await?;
    configure(&state, resource, body, terms).await
}

/// One user's ticket as answered by join and me (and the `queue:` live topics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Ticket)]
pub(crate) struct TicketBody {
    pub(crate) ticket: u64,
    /// Tickets ahead still waiting, plus one; 0 once admitted.
    pub(crate) position: u64,
    /// Seconds until admission at the current rate; null when paused or unknown.
    pub(crate) eta_secs: Option<u64>,
    #[schema(value_type = TicketStatusSchema)]
    pub(crate) status: TicketStatus,
    /// While admitted: the pass to send as `X-Queue-Pass`, bound to user and resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pass: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pass_expires_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = QueueStats)]
struct StatsBody {
    waiting: u64,
    admitted: u64,
    admit_per_sec: u32,
    paused: bool,
}

impl From<RoomStats> for StatsBody {
    fn from(stats: RoomStats) -> StatsBody {
        StatsBody {
            waiting: stats.waiting,
            admitted: stats.admitted,
            admit_per_sec: stats.admit_per_sec,
            paused: stats.paused,
        }
    }
}

/// The room's settings for a resource opening at `opens_at_ms`, used when a room is first made.
fn room_terms(state: &State, opens_at_ms: i64) -> RoomTerms {
    let queue = &state.rt.settings.queue;
    RoomTerms {
        opens_at_ms,
        admit_per_sec: queue.admit_per_sec_default,
        seed: rand::random(),
        waiting_max: queue.waiting_max,
    }
}

/// Join (201 with a new ticket, 200 with the one already held) or read one's own ticket.
async fn ticket(
    state: &State,
    caller: &Caller,
    resource: String,
    command: RoomCommand,
) -> Result<HttpResponse, ApiError> {
    let (body, joined_now) = ticket_body(state, caller, &resource, command).await?;
    Ok(match joined_now {
        true => HttpResponse::Created().json(body),
        false => HttpResponse::Ok().json(body),
    })
}

/// The caller's ticket in `resource`'s room (`time-sales/{id}`) as `GET .../queue/me` answers
/// it; 404 when the caller has not joined.
pub(crate) async fn my_ticket_body(
    state: &State,
    caller: &Caller,
    resource: &str,
) -> Result<TicketBody, ApiError> {
    let me = RoomCommand::Me {
        user_id: UserId::from(caller.user_id.clone()),
    };
    Ok(ticket_body(state, caller, resource, me).await?.0)
}

/// A ticket command's answer, with a pass while admitted; and whether it created the ticket.
async fn ticket_body(
    state: &State,
    caller: &Caller,
    resource: &str,
    command: RoomCommand,
) -> Result<(TicketBody, bool), ApiError> {
    let reply = state.rooms.ask(resource, command, None).await?;
    let RoomReply::Ticket(view) = reply else {
        return Err(ApiError::internal("a ticket command answered stats"));
    };
    let (pass, pass_expires_at) = match view.status {
        TicketStatus::Admitted => {
            let (pass, expires_ms) =
                state
                    .passes
                    .mint(&caller.user_id, resource, state.rt.now_ms())?;
            (Some(pass), Some(rfc3339(expires_ms)))
        }
        TicketStatus::Waiting => (None, None),
    };
    let body = TicketBody {
        ticket: view.ticket,
        position: view.position,
        eta_secs: view.eta_secs,
        status: view.status,
        pass,
        pass_expires_at,
    };
    Ok((body, view.joined_now))
}

/// Stats of a room; a room nobody joined or configured shows the defaults.
async fn stats(state: &State, resource: String) -> Result<HttpResponse, ApiError> {
    let RoomReply::Stats(stats) = state.rooms.ask(&resource, RoomCommand::Stats, None).await?
    else {
        return Err(ApiError::internal("stats answered a ticket"));
    };
    let mut body = StatsBody::from(stats.clone());
    if stats.opens_at_ms.is_none() {
        body.admit_per_sec = state.rt.settings.queue.admit_per_sec_default;
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConfigureQueue)]
struct ConfigureBody {
    /// Admissions a second.
    #[schema(minimum = 1, maximum = 1_000_000)]
    admit_per_sec: Option<u32>,
    paused: Option<bool>,
}

/// PATCH a room's rate or pause.
async fn configure(
    state: &State,
    resource: String,
    body: ConfigureBody,
    terms: RoomTerms,
) -> Result<HttpResponse, ApiError> {
    if body.admit_per_sec.is_none() && body.paused.is_none() {
        return Err(ApiError::validation(
            "body",
            "give admit_per_sec, paused or both",
        ));
    }
    let command = RoomCommand::Configure {
        admit_per_sec: body.admit_per_sec,
        paused: body.paused,
        terms,
    };
    match state.rooms.ask(&resource, command, None).await? {
        RoomReply::Stats(stats) => Ok(HttpResponse::Ok().json(StatsBody::from(stats))),
        RoomReply::Ticket(_) => Err(ApiError::new(
            ErrorCode::Internal,
            "configure answered a ticket",
        )),
    }
}

/// The waiting-room routes in the OpenAPI document, once for each resource kind. Their handlers
/// are generic over the kind, so each kind's description sits on a stub made here.
macro_rules! documented_queue_routes {
    (
        $kind:literal, $what:literal, $room:literal,
        $join:ident, $me:ident, $stats:ident, $configure:ident
    ) => {
        #[utoipa::path(post, path = concat!("/", $kind, "/{id}/queue/join"), tag = "queue",
            operation_id = stringify!($join), summary = concat!("Join the ", $room),
            security(("bearer" = [])),
            params(("id" = String, Path, description = $what)),
            description = "Admission is FIFO at `admit_per_sec`. Joins before the resource \
                opens are shuffled at opening; later joins are FIFO. An admitted user's answer \
                carries a signed `pass` for the `X-Queue-Pass` header.",
            responses(
                (status = 201, description = "A new ticket", body = TicketBody),
                (status = 200, description = "The ticket the caller already holds",
                    body = TicketBody),
                (status = 404, description = "NOT_FOUND"),
                (status = 503, description = "UNAVAILABLE: the room is full"),
            ))]
        #[allow(dead_code)] // Describes `join`.
        pub(crate) fn $join() {}

        #[utoipa::path(get, path = concat!("/", $kind, "/{id}/queue/me"), tag = "queue",
            operation_id = stringify!($me), summary = concat!("My ticket in the ", $room),
            security(("bearer" = [])),
            params(("id" = String, Path, description = $what)),
            responses(
                (status = 200, description = "The caller's ticket", body = TicketBody),
                (status = 404, description = "NOT_FOUND: the caller has not joined"),
            ))]
        #[allow(dead_code)] // Describes `my_ticket`.
        pub(crate) fn $me() {}

        #[utoipa::path(get, path = concat!("/", $kind, "/{id}/queue"), tag = "queue",
            operation_id = stringify!($stats), summary = concat!("The ", $room),
            security(("bearer" = ["operator", "admin"])),
            params(("id" = String, Path, description = $what)),
            responses(
                (status = 200, description = "The room", body = StatsBody),
                (status = 403, description = "FORBIDDEN: not an operator"),
                (status = 404, description = "NOT_FOUND"),
            ))]
        #[allow(dead_code)] // Describes `queue_stats`.
        pub(crate) fn $stats() {}

        #[utoipa::path(patch, path = concat!("/", $kind, "/{id}/queue"), tag = "queue",
            operation_id = stringify!($configure),
            summary = concat!("Set the rate or pause the ", $room),
            security(("bearer" = ["operator", "admin"])),
            params(("id" = String, Path, description = $what)), request_body = ConfigureBody,
            responses(
                (status = 200, description = "The room with its new settings", body = StatsBody),
                (status = 403, description = "FORBIDDEN: not an operator"),
                (status = 404, description = "NOT_FOUND"),
                (status = 422, description = "VALIDATION_FAILED"),
            ))]
        #[allow(dead_code)] // Describes `configure_queue`.
        pub(crate) fn $configure() {}
    };
}

documented_queue_routes!(
    "time-sales",
    "The sale id",
    "sale's waiting room",
    sale_join,
    sale_me,
    sale_stats,
    sale_configure
);
documented_queue_routes!(
    "events",
    "The event id",
    "event's waiting room",
    event_join,
    event_me,
    event_stats,
    event_configure
);

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = TicketStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatusSchema {
    Waiting,
    Admitted,
}
