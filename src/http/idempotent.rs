//! Idempotency keys at the HTTP edge: look a key up before running a request, replay a stored
//! response, and hand the actor the record to commit with its events.

use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::State;
use crate::actors::{Entity, Hosted, SideWrites};
use crate::auth::Caller;
use crate::checkout::{BirthRows, Rider};
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

    /// After its record has committed: later look-ups find the key in memory.
    pub fn remember(&self, state: &State) {
        state.idempotency.remember(&self.scope, &self.key);
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

/// What a keyed request brings to the step that gives birth to its order (the idempotency
/// record of its 201, built from the order's JSON, and the key's hold), and the key, to
/// remember once that step has committed ([`created`]).
pub fn birth_rider(keyed: Option<KeyedRequest>) -> (Rider, Option<IdemKey>) {
    let Some(KeyedRequest { id, hold }) = keyed else {
        return (Rider::default(), None);
    };
    let key = id.clone();
    let rows: BirthRows = Arc::new(move |json: &str, now_ms: i64| {
        let mut batch = Batch::default();
        let body = json.as_bytes().to_vec();
        batch
            .idempotency
            .push(key.record_json(StatusCode::CREATED, body, now_ms));
        batch
    });
    let rider = Rider {
        birth_rows: Some(rows),
        hold,
    };
    (rider, Some(id))
}

/// The 201 with the order whose JSON `json` the step that gave birth to it answered (after
/// its commit, with the key's record); the key is remembered.
pub fn created(state: &State, key: Option<IdemKey>, json: String) -> HttpResponse {
    if let Some(key) = key {
        key.remember(state);
    }
    HttpResponse::Created()
        .content_type(ContentType::json())
        .body(json)
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
        self.id.remember(state);
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
