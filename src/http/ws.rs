//! `GET /api/v1/ws`: live updates over WebSocket (API.md "WebSocket: live updates").
//!
//! A session subscribes to topics with `{"op": "subscribe", "topic": T}`. Each topic it
//! watches has a small task that waits for the topic's next value ([`crate::live`]) and
//! writes it as `{"topic": T, "seq": n, "data": {...}}`. The first value is the entity's
//! current durable view; later ones follow each committed change, at most about once per
//! `ws.topic_frame_interval_ms`. A client that reads slowly makes only its own tasks wait, and
//! they then skip to the latest value: the actor never waits for a socket. Bad ops get
//! `{"topic"?: T, "error": {"code", "detail"}}` and the session goes on.
//!
//! Served topics: `time-sale:{id}`, `stock:{sku}` and `order:{id}` (the caller's own, or any
//! for operators), published by their entities; `event:{id}:seats`, whose frames carry seat
//! changes rather than a view (see [`forward_changes`]); and `queue:time-sales:{id}` and
//! `queue:events:{id}`, the caller's own ticket, which moves with the clock rather than with
//! events, so its task re-reads it every `ws.queue_poll_ms` and sends it when it changed.
//!
//! Bounds, all in `[ws]`: open sessions and sessions per user (checked at the handshake),
//! topics per session, ops per second (past it an op gets a `RATE_LIMITED` error frame and is
//! not done), frame size, and a heartbeat. A session ends with close code 1008 when its token
//! expires, when the client breaks the protocol or stops reading (a write that cannot finish
//! within `ws.client_timeout_secs`); 1001 when the client goes silent; 1012 when the server
//! stops, so clients reconnect elsewhere or later.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytestring::ByteString;
use governor::{DefaultDirectRateLimiter, Quota};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{is_valid_ident, orders, queue, State};
use crate::actors::waiting_room::TicketStatus;
use crate::actors::OrderId;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::live::{ChangeCursor, ChangeStep, Subscription, Update};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(connect));
}

#[utoipa::path(get, path = "/ws", summary = "Live updates (WebSocket)", tag = "live",
    operation_id = "live_updates",
    security(("bearer" = [])),
    params(("access_token" = Option<String>, Query,
        description = "The token, for a browser that cannot set a header on a WebSocket")),
    description = "A WebSocket of JSON text frames. Send `{\"op\": \"subscribe\", \"topic\": T}` \
        or `{\"op\": \"unsubscribe\", \"topic\": T}`; receive `{\"topic\": T, \"seq\": n, \
        \"data\": {...}}`, or `{\"error\": {\"code\", \"detail\"}}` for a bad op. Topics: \
        `time-sale:{id}`, `stock:{sku}`, `event:{id}:seats`, `queue:time-sales:{id}`, \
        `queue:events:{id}` and `order:{id}` (your own). Updates per topic are coalesced to the \
        latest, so a slow client never slows an actor.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade"),
        (status = 503, description = "UNAVAILABLE: too many sessions, in all or for this user"),
    ))]
async fn connect(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.rt.settings.ws;
    let seat = state.rt.live.admit_session(
        &caller.user_id,
        settings.sessions_max,
        settings.sessions_per_user_max,
    )?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("expected a WebSocket upgrade: {e}"),
        )
    })?;
    let stream = stream
        .max_frame_size(settings.frame_bytes_max)
        .aggregate_continuations()
        .max_continuation_size(settings.frame_bytes_max);
    let ops_per_sec = NonZeroU32::new(settings.ops_per_sec.max(1)).expect("at least 1");
    let connection = Connection {
        state: state.clone(),
        caller,
        session,
        watching: HashMap::new(),
        ops: DefaultDirectRateLimiter::direct(Quota::per_second(ops_per_sec)),
    };
    actix_web::rt::spawn(async move {
        connection.run(stream).await;
        drop(seat);
    });
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum ClientOp {
    Subscribe { topic: String },
    Unsubscribe { topic: String },
}

/// What a topic names, checked before anything is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Sale(String),
    Stock(String),
    Order(OrderId),
    /// The seats of an event's map.
    Seats(String),
    /// The caller's own ticket in the waiting room of a resource (`time-sales/{id}`).
    Queue(String),
}

fn not_reading() -> CloseReason {
    CloseReason {
        code: CloseCode::Policy,
        description: Some("the client does not read its frames".to_string()),
    }
}

fn parse_topic(topic: &str) -> Result<Target, ApiError> {
    let not_found = || ApiError::not_found(format!("nothing is published on {topic}"));
    if let Some(id) = topic.strip_prefix("time-sale:") {
        let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
        return Ok(Target::Sale(id.to_string()));
    }
    if let Some(sku) = topic.strip_prefix("stock:") {
        return is_valid_ident(sku)
            .then(|| Target::Stock(sku.to_string()))
            .ok_or_else(not_found);
    }
    if let Some(id) = topic.strip_prefix("order:") {
        return id
            .parse::<OrderId>()
            .map(Target::Order)
            .map_err(|_| not_found());
    }
    if let Some(id) = topic
        .strip_prefix("event:")
        .and_then(|rest| rest.strip_suffix(":seats"))
    {
        let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
        return Ok(Target::Seats(id.to_string()));
    }
    for kind in ["time-sales", "events"] {
        if let Some(id) = topic.strip_prefix(&format!("queue:{kind}:")) {
            let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
            return Ok(Target::Queue(format!("{kind}/{id}")));
        }
    }
    Err(ApiError::validation(
        "topic",
        "must be time-sale:{id}, stock:{sku}, order:{id}, event:{id}:seats or \
         queue:time-sales|events:{id}",
    ))
}

struct Connection {
    state: State,
    caller: Caller,
    session: Session,
    /// The forwarding task of each watched topic; aborting it drops its subscription.
    watching: HashMap<String, JoinHandle<()>>,
    /// Ops this session may still send (`ws.ops_per_sec`).
    ops: DefaultDirectRateLimiter,
}

impl Connection {
    /// Runs until the client closes, goes silent, breaks the protocol or the server stops.
    async fn run(mut self, mut stream: AggregatedMessageStream) {
        let settings = self.state.rt.settings.ws.clone();
        let every = Duration::from_secs(settings.heartbeat_secs.max(1));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let client_timeout = Duration::from_secs(settings.client_timeout_secs);
        let mut last_heard = Instant::now();
        let closed = self.state.rt.live.closed();
        tokio::pin!(closed);
        // The token was checked once, at the handshake; the session lives no longer than it.
        let mut expired = self.state.rt.clock.sleep_until(self.caller.expires_at_ms);
        let reason = loop {
            tokio::select! {
                _ = &mut closed => break Some(CloseReason {
                    code: CloseCode::Restart,
                    description: Some("the server is stopping; reconnect".to_string()),
                }),
                _ = &mut expired => break Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("the access token expired; reconnect with a fresh one".to_string()),
                }),
                message = stream.recv() => {
                    last_heard = Instant::now();
                    match message {
                        // Bounded: a client that stops reading fills the session's outgoing
                        // queue, and an unbounded write would hold this loop (and its seat)
                        // forever, deaf to the timeout and to shutdown.
                        Some(Ok(message)) => {
                            match tokio::time::timeout(client_timeout, self.on_message(message)).await {
                                Ok(Ok(true)) => {}
                                Ok(Ok(false) | Err(_)) => break None,
                                Err(_) => break Some(not_reading()),
                            }
                        }
                        None => break None,
                        Some(Err(error)) => break Some(CloseReason {
                            code: CloseCode::Policy,
                            description: Some(error.to_string()),
                        }),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > client_timeout {
                        break Some(CloseReason {
                            code: CloseCode::Away,
                            description: Some("no word from the client".to_string()),
                        });
                    }
                    match tokio::time::timeout(client_timeout, self.session.ping(b"")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some(not_reading()),
                    }
                }
            }
        };
        for (_, task) in self.watching.drain() {
            task.abort();
        }
        // A full queue may never take the close frame; dropping the session ends it anyway.
        let _ = tokio::time::timeout(client_timeout, self.session.close(reason)).await;
    }

    /// False once the client has closed.
    async fn on_message(&mut self, message: AggregatedMessage) -> Result<bool, actix_ws::Closed> {
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text).await?,
            AggregatedMessage::Binary(_) => {
                let error = ApiError::new(ErrorCode::MalformedRequest, "send JSON text frames");
                self.send_error(None, &error).await?;
            }
            AggregatedMessage::Ping(bytes) => self.session.pong(&bytes).await?,
            AggregatedMessage::Pong(_) => {}
            AggregatedMessage::Close(_) => return Ok(false),
        }
        Ok(true)
    }

    async fn on_text(&mut self, text: &str) -> Result<(), actix_ws::Closed> {
        if self.ops.check().is_err() {
            let error = ApiError::rate_limited("too many ops on this session; slow down", 1);
            return self.send_error(None, &error).await;
        }
        let op = match serde_json::from_str::<ClientOp>(text) {
            Ok(op) => op,
            Err(error) => {
                let code = if error.is_data() {
                    ErrorCode::ValidationFailed
                } else {
                    ErrorCode::MalformedRequest
                };
                let detail = format!(
                    "expected {{\"op\": \"subscribe\" or \"unsubscribe\", \"topic\": T}}: {error}"
                );
                return self.send_error(None, &ApiError::new(code, detail)).await;
            }
        };
        match op {
            ClientOp::Subscribe { topic } => {
                if let Err(error) = self.subscribe(&topic).await {
                    return self.send_error(Some(&topic), &error).await;
                }
            }
            ClientOp::Unsubscribe { topic } => {
                if let Some(task) = self.watching.remove(&topic) {
                    task.abort();
                }
            }
        }
        Ok(())
    }

    /// Checks the topic and the caller's right to it, starts watching, then has the entity
    /// publish its current durable view (which is also how an unknown entity is found out).
    async fn subscribe(&mut self, topic: &str) -> Result<(), ApiError> {
        if let Some(task) = self.watching.get(topic) {
            // A queue topic goes quiet after admission, so subscribing again reads it afresh;
            // other topics are already being sent.
            if !task.is_finished() && !topic.starts_with("queue:") {
                return Ok(());
            }
            if let Some(task) = self.watching.remove(topic) {
                task.abort();
            }
        }
        let topics_max = self.state.rt.settings.ws.topics_per_session_max;
        if self.watching.len() >= topics_max {
            return Err(ApiError::validation(
                "topic",
                format!("a session may watch at most {topics_max} topics"),
            ));
        }
        let target = parse_topic(topic)?;
        if let Target::Queue(resource) = &target {
            // 404 unless the caller holds a ticket; then that ticket is watched.
            let first = queue::my_ticket_body(&self.state, &self.caller, resource).await?;
            let task = watch_ticket(self.ticket_watch(topic, resource), first);
            self.watching.insert(topic.to_string(), task);
            return Ok(());
        }
        if let Target::Order(id) = &target {
            // Before anything is watched, so nothing is built for a caller who is refused.
            orders::owned_order(&self.state, &self.caller, *id).await?;
        }
        let subscription = self.state.rt.live.subscribe(topic);
        if !self.prime(&target).await? {
            return Err(ApiError::not_found(format!(
                "nothing is published on {topic}"
            )));
        }
        let interval = Duration::from_millis(self.state.rt.settings.ws.topic_frame_interval_ms);
        let task = match target {
            Target::Seats(id) => forward_changes(
                self.session.clone(),
                subscription,
                interval,
                (self.state.clone(), id),
            ),
            _ => forward(self.session.clone(), subscription, interval),
        };
        self.watching.insert(topic.to_string(), task);
        Ok(())
    }

    async fn prime(&self, target: &Target) -> Result<bool, ApiError> {
        let state = &self.state;
        match target {
            Target::Sale(id) => state.sales.publish_live(id).await,
            Target::Stock(sku) => state.stock.publish_live(sku).await,
            Target::Order(id) => state.orders.publish_live(&id.to_string()).await,
            Target::Seats(id) => state.events.publish_live(id).await,
            Target::Queue(_) => unreachable!("queue topics are not published by an entity"),
        }
    }

    fn ticket_watch(&self, topic: &str, resource: &str) -> TicketWatch {
        TicketWatch {
            session: self.session.clone(),
            state: self.state.clone(),
            caller: self.caller.clone(),
            topic: topic.to_string(),
            resource: resource.to_string(),
            every: Duration::from_millis(self.state.rt.settings.ws.queue_poll_ms.max(1)),
        }
    }

    async fn send_error(
        &mut self,
        topic: Option<&str>,
        error: &ApiError,
    ) -> Result<(), actix_ws::Closed> {
        let mut frame = serde_json::json!({
            "error": { "code": error.code.as_str(), "detail": error.detail },
        });
        if let Some(topic) = topic {
            frame["topic"] = topic.into();
        }
        self.session.text(frame.to_string()).await
    }
}

/// What a `queue:` topic's task needs: a ticket moves with the clock (admission is computed
/// from the rate, not journaled per ticket), so it is read again every `every`, not published.
struct TicketWatch {
    session: Session,
    state: State,
    caller: Caller,
    topic: String,
    resource: String,
    every: Duration,
}

/// Sends the caller's ticket whenever its place, ETA or status changes, until it is admitted:
/// that frame carries the pass, and the topic then goes quiet. `seq` counts this session's
/// frames on the topic. A read that fails (an overloaded room) is skipped, not reported.
fn watch_ticket(mut watch: TicketWatch, first: queue::TicketBody) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticket = first;
        let mut last_sent = None;
        for seq in 1.. {
            let key = (
                ticket.ticket,
                ticket.position,
                ticket.eta_secs,
                ticket.status,
            );
            if last_sent != Some(key) {
                let data = serde_json::to_value(&ticket).expect("a ticket serialises");
                let frame = Update::new(&watch.topic, seq, &data).frame;
                if watch.session.text(frame).await.is_err() {
                    return;
                }
                last_sent = Some(key);
            }
            if ticket.status == TicketStatus::Admitted {
                return;
            }
            tokio::time::sleep(jittered(watch.every)).await;
            if let Ok(now) =
                queue::my_ticket_body(&watch.state, &watch.caller, &watch.resource).await
            {
                ticket = now;
            }
        }
    })
}

/// 0.5 to 1.5 times `interval`: sessions that subscribed together spread their work out
/// instead of all waking in the same instant.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random::<f64>() + 0.5)
}

/// Writes the topic's latest value, about once per `interval`, until the session closes or
/// the task is aborted. The session's outgoing queue is bounded, so a slow client makes this
/// task wait; values that change meanwhile are coalesced, and it sends only the latest. Each
/// wait is jittered (0.5 to 1.5 intervals) so that sessions which subscribed together spread
/// their writes out instead of all writing in the same instant.
fn forward(
    mut session: Session,
    mut subscription: Subscription,
    interval: Duration,
) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        while let Some(update) = subscription.next().await {
            if !send_paced(&mut session, update.frame.clone(), interval).await {
                return;
            }
        }
    })
}

/// Writes `frame`, then waits about `interval` (jittered) before the topic's next one; false
/// once the session is closed.
async fn send_paced(session: &mut Session, frame: ByteString, interval: Duration) -> bool {
    if session.text(frame).await.is_err() {
        return false;
    }
    if !interval.is_zero() {
        tokio::time::sleep(jittered(interval)).await;
    }
    true
}

/// How long a session on a change topic waits for a full view it asked for before asking
/// again (the request can fail: a full journal queue, an entity restarting).
const FULL_VIEW_RETRY: Duration = Duration::from_secs(1);

/// Writes a change topic's frames (see [`crate::live`]): first a full view, then, about once
/// per `interval`, the changes committed since the last frame, merged per seat. A session
/// that fell behind what the topic keeps starts again from a full view newer than what its
/// client has, asking the map (`seats`: the state and the event id) for one when the topic
/// holds none, and again every [`FULL_VIEW_RETRY`] until one comes.
fn forward_changes(
    mut session: Session,
    mut subscription: Subscription,
    interval: Duration,
    seats: (State, String),
) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let (state, id) = seats;
        let topic = subscription.topic().to_string();
        let mut cursor = ChangeCursor::default();
        let mut asked: Option<Instant> = None;
        loop {
            let wanted = subscription.read(|value| cursor.wanted(value));
            match cursor.step(&topic, &wanted) {
                ChangeStep::Send(frame) => {
                    if !send_paced(&mut session, frame, interval).await {
                        return;
                    }
                    continue;
                }
                ChangeStep::Wait => {
                    if subscription.changed().await.is_none() {
                        return;
                    }
                }
                ChangeStep::NeedView => {
                    // At most once per retry wait, however many steps commit meanwhile; a
                    // failed request is asked again after it.
                    if asked.is_none_or(|at| at.elapsed() >= FULL_VIEW_RETRY) {
                        let _ = state.events.publish_live(&id).await;
                        asked = Some(Instant::now());
                    }
                    let changed =
                        tokio::time::timeout(FULL_VIEW_RETRY, subscription.changed()).await;
                    if matches!(changed, Ok(None)) {
                        return;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_entity() {
        let id = OrderId::new_v7();
        assert_eq!(
            parse_topic(&format!("time-sale:{id}")).expect("a sale"),
            Target::Sale(id.to_string())
        );
        assert_eq!(
            parse_topic("stock:SKU-1").expect("a stock item"),
            Target::Stock("SKU-1".to_string())
        );
        assert_eq!(
            parse_topic(&format!("order:{id}")).expect("an order"),
            Target::Order(id)
        );
        assert_eq!(
            parse_topic(&format!("event:{id}:seats")).expect("an event's seats"),
            Target::Seats(id.to_string())
        );
        assert_eq!(
            parse_topic(&format!("queue:time-sales:{id}")).expect("a sale's room"),
            Target::Queue(format!("time-sales/{id}"))
        );
        assert_eq!(
            parse_topic(&format!("queue:events:{id}")).expect("an event's room"),
            Target::Queue(format!("events/{id}"))
        );
    }

    #[test]
    fn malformed_ids_are_not_found_and_unknown_topics_are_invalid() {
        let code = |topic: &str| parse_topic(topic).expect_err(topic).code;
        assert_eq!(code("time-sale:not-a-uuid"), ErrorCode::NotFound);
        assert_eq!(code("stock:has space"), ErrorCode::NotFound);
        assert_eq!(code("order:"), ErrorCode::NotFound);
        assert_eq!(code("queue:time-sales:nope"), ErrorCode::NotFound);
        assert_eq!(code("queue:coupons:x"), ErrorCode::ValidationFailed);
        assert_eq!(code("weather:today"), ErrorCode::ValidationFailed);
        assert_eq!(code("event:x:seats"), ErrorCode::NotFound);
        assert_eq!(code("event:x:rows"), ErrorCode::ValidationFailed);
    }

    #[test]
    fn client_ops_are_tagged_by_op() {
        let op: ClientOp =
            serde_json::from_str(r#"{"op":"subscribe","topic":"stock:A"}"#).expect("a subscribe");
        assert!(matches!(op, ClientOp::Subscribe { topic } if topic == "stock:A"));
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"shout","topic":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"subscribe"}"#).is_err());
    }
}
