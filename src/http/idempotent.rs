//! Idempotency keys at the HTTP edge: look a key up before running a request, replay a stored
//! response, and hand the actor the record to commit with its events.

use std::sync::{Arc, OnceLock};

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::State;
use crate::actors::hosted::order::{birth, Birth};
use crate::actors::order::Placed;
use crate::actors::{Entity, Hosted, SideWrites};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::persistence::idempotency::{fingerprint, validate_key, Begin};
use crate::persistence::{Batch, IdempotencyRecord};
use crate::supervisors::region::{Hold, Region};

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// Who used which key for which request: everything its record needs but the response.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

impl IdemKey {
    pub fn record(
        &self,
        status: StatusCode,
        body: &impl Serialize,
        now_ms: i64,
    ) -> IdempotencyRecord {
        self.record_json(
            status,
            serde_json::to_vec(body).expect("responses serialise"),
            now_ms,
        )
    }

    /// The record of a response whose JSON body is already at hand.
    pub fn record_json(&self, status: StatusCode, json: Vec<u8>, now_ms: i64) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            status: status.as_u16(),
            body: json,
            created_at_ms: now_ms,
        }
    }
}

/// Where the actor that gives birth to an order leaves the order's JSON for the request that
/// placed it. The order is serialised once, in [`birth`], and those bytes are its read row, its
/// idempotency record and the 201 (on the hot purchase path a second and third serialisation
/// were measurable).
#[derive(Clone, Default)]
pub struct Answer(Arc<OnceLock<String>>);

impl Answer {
    /// The rows of order `id`'s birth, with the idempotency record of its 201 when keyed.
    pub fn birth(&self, id: &str, placed: Placed, key: Option<&IdemKey>, now_ms: i64) -> Batch {
        let Birth {
            mut batch, json, ..
        } = birth(id, placed);
        if let Some(key) = key {
            let body = json.clone().into_bytes();
            batch
                .idempotency
                .push(key.record_json(StatusCode::CREATED, body, now_ms));
        }
        // Set once: a step runs its side writes once.
        let _ = self.0.set(json);
        batch
    }

    /// The side writes that give birth to order `order_id` with the step whose reply
    /// `placed` reads the order's lines from (`None`: this reply places no order).
    pub fn birth_side<E, F>(
        &self,
        order_id: uuid::Uuid,
        keyed: Option<&KeyedRequest>,
        placed: F,
    ) -> SideWrites<E>
    where
        E: Entity,
        F: Fn(&E::Reply) -> Option<Placed> + Send + Sync + 'static,
    {
        let answer = self.clone();
        let key = keyed.map(|k| k.id.clone());
        Arc::new(move |reply: &E::Reply, now_ms: i64| match placed(reply) {
            Some(placed) => answer.birth(&order_id.to_string(), placed, key.as_ref(), now_ms),
            None => Batch::default(),
        })
    }

    /// The 201 with the order the actor gave birth to (after its commit).
    pub fn created(&self) -> Result<HttpResponse, ApiError> {
        let json = self.0.get().cloned().ok_or_else(|| {
            ApiError::internal("the step succeeded without writing the order's birth")
        })?;
        Ok(HttpResponse::Created()
            .content_type(ContentType::json())
            .body(json))
    }
}

/// A request that carries a key and runs for the first time; it holds the key until its
/// outcome is known (past a timeout, the region keeps holding it).
pub struct KeyedRequest {
    pub id: IdemKey,
    pub hold: Option<Hold>,
}

/// The hold of an optional keyed request, for [`crate::supervisors::region::Region::ask_holding`].
pub fn hold_of<'a>(
    keyed: &'a mut Option<KeyedRequest>,
    none: &'a mut Option<Hold>,
) -> &'a mut Option<Hold> {
    match keyed {
        Some(keyed) => &mut keyed.hold,
        None => none,
    }
}

pub enum Prepared {
    /// The stored first response, to send as it is.
    Replay(HttpResponse),
    /// Run the request; `Some` when it carries a key.
    Run(Option<KeyedRequest>),
}

pub async fn prepare(
    state: &State,
    req: &HttpRequest,
    caller: &Caller,
    body: &[u8],
) -> Result<Prepared, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(Prepared::Run(None));
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::MalformedRequest, "Idempotency-Key must be text"))?;
    validate_key(key)?;
    let fingerprint = fingerprint(req.method().as_str(), req.path(), body);
    match state
        .idempotency
        .begin(&caller.user_id, key, &fingerprint)
        .await?
    {
        Begin::Replay(record) => Ok(Prepared::Replay(replay(&record))),
        Begin::Fresh(guard) => Ok(Prepared::Run(Some(KeyedRequest {
            id: IdemKey {
                scope: caller.user_id.clone(),
                key: key.to_string(),
                fingerprint,
            },
            hold: Some(Box::new(guard)),
        }))),
    }
}

fn replay(record: &IdempotencyRecord) -> HttpResponse {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((REPLAYED_HEADER, "true"))
        .body(record.body.clone())
}

impl KeyedRequest {
    /// After the record has committed: later look-ups find it in memory.
    pub fn finish(self, state: &State) {
        state.idempotency.remember(&self.id.scope, &self.id.key);
    }
}

/// Side writes that commit the idempotency record of a response rendered from the reply.
pub fn record_side<E, F, T>(
    keyed: Option<&KeyedRequest>,
    status: StatusCode,
    render: F,
) -> Option<SideWrites<E>>
where
    E: Entity,
    F: Fn(&E::Reply) -> T + Send + Sync + 'static,
    T: Serialize,
{
    let id = keyed?.id.clone();
    Some(Arc::new(move |reply: &E::Reply, now_ms: i64| {
        let mut batch = Batch::default();
        batch
            .idempotency
            .push(id.record(status, &render(reply), now_ms));
        batch
    }))
}

/// Asks entity `id` of `region`, keeping the key's guard until the outcome is known, and
/// remembers the key once the change (and its record) has committed.
pub async fn ask_keyed<E: Hosted>(
    state: &State,
    region: &Region<E>,
    id: &str,
    command: E::Command,
    side: Option<SideWrites<E>>,
    mut keyed: Option<KeyedRequest>,
) -> Result<E::Reply, ApiError> {
    let mut none = None;
    let hold = hold_of(&mut keyed, &mut none);
    let reply = region.ask_holding(id, command, side, hold).await?;
    if let Some(keyed) = keyed {
        keyed.finish(state);
    }
    Ok(reply)
}
