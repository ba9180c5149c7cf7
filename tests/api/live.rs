//! Live updates over WebSocket (`GET /api/v1/ws`), on both stores: first values, changes
//! after commits, the sale's flip by its own deadline, ownership of order topics, bad ops,
//! and clean-up when subscribers leave.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    assert_problem, eventually_that, spawn_app, spawn_app_with, Backend, Options, TestApp,
};
use crate::on_both_stores;
use crate::time_sales::create_sale;

const HOUR_MS: i64 = 3_600_000;

/// A bound on waiting for a frame that should come, so a missing one fails instead of hanging.
const FRAME_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Live {
    pub(crate) socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Live {
    async fn connect(app: &TestApp, token: &str) -> Live {
        Live::connect_to(&app.base, token).await
    }

    /// A session with the server at `base` (`http://host:port`).
    pub(crate) async fn connect_to(base: &str, token: &str) -> Live {
        let url = format!(
            "{}/api/v1/ws?access_token={token}",
            base.replacen("http://", "ws://", 1)
        );
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the WebSocket handshake succeeds");
        Live { socket }
    }

    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("the frame is sent");
    }

    pub(crate) async fn subscribe(&mut self, topic: &str) {
        self.send(json!({"op": "subscribe", "topic": topic})).await;
    }

    /// The next text frame, as JSON.
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.socket.next())
                .await
                .expect("a frame arrives in time")
                .expect("the session is open")
                .expect("the frame is well-formed");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("frames are JSON");
            }
        }
    }

    /// The code of the close frame the server sends next, skipping other frames.
    pub(crate) async fn close_code(&mut self) -> u16 {
        let closing = tokio::time::timeout(FRAME_WAIT, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_))) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("the session is closed in time");
        match closing {
            Some(Ok(Message::Close(Some(frame)))) => u16::from(frame.code),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Frames until one on `topic` satisfies `wanted`; every frame on the topic must carry a
    /// larger seq than the one before.
    async fn until(&mut self, topic: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut last_seq = 0;
        loop {
            let frame = self.next().await;
            assert_eq!(frame["topic"], topic, "unexpected frame {frame}");
            let seq = frame["seq"].as_u64().expect("seq");
            assert!(seq > last_seq, "seq {seq} after {last_seq}");
            last_seq = seq;
            if wanted(&frame["data"]) {
                return frame;
            }
        }
    }
}

async fn purchase(app: &TestApp, user: &str, sale: &str) -> Value {
    let token = app.token(user, Role::Customer);
    let response = app
        .post(
            &format!("/time-sales/{sale}/purchase"),
            &token,
            json!({"quantity": 1}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("order json")
}

async fn a_sale_subscriber_sees_it_open_by_itself_and_sell(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let sale = create_sale(&app, 5, json!({}), HOUR_MS, 2 * HOUR_MS).await;
    let id = sale["id"].as_str().expect("id");
    let topic = format!("time-sale:{id}");
    // The clock moves an hour below; the session must outlive it.
    let watcher = app.token_valid_for("watcher", Role::Customer, 3 * 3600);
    let mut live = Live::connect(&app, &watcher).await;
    live.subscribe(&topic).await;
    let first = live.next().await;
    assert_eq!(first["topic"], topic.as_str());
    assert_eq!(first["data"]["status"], "SCHEDULED");
    assert_eq!(first["data"]["remaining"], 5);
    // Nobody sends a request: the sale's own deadline opens it, and the subscriber sees it.
    clock.advance_ms(HOUR_MS);
    let opened = live.next().await;
    assert_eq!(opened["data"]["status"], "ACTIVE");
    assert!(opened["seq"].as_u64() > first["seq"].as_u64());
    for (n, user) in ["ann", "bob"].into_iter().enumerate() {
        purchase(&app, user, id).await;
        let remaining = 4 - i64::try_from(n).expect("small");
        let frame = live
            .until(&topic, |data| data["remaining"] == remaining)
            .await;
        assert_eq!(frame["data"]["reserved"], 5 - remaining);
    }
    app.stop().await;
}
on_both_stores!(a_sale_subscriber_sees_it_open_by_itself_and_sell);

async fn a_stock_subscriber_follows_orders_and_reads_only_durable_values(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("LIVE-1", 10).await;
    let mut live = Live::connect(&app, &app.token("watcher", Role::Customer)).await;
    live.subscribe("stock:LIVE-1").await;
    let first = live.next().await;
    assert_eq!(first["data"]["available"], 10);
    let buyers: Vec<String> = (0..6).map(|n| format!("buyer-{n}")).collect();
    let placed =
        futures::future::join_all(buyers.iter().map(|b| app.order(b, "LIVE-1", 1, None))).await;
    assert!(placed.iter().all(|r| r.status() == StatusCode::CREATED));
    // Every reservation is acknowledged, so the latest value shows all of them.
    let last = live
        .until("stock:LIVE-1", |data| data["available"] == 4)
        .await;
    assert_eq!(last["data"]["reserved"], 6);
    assert_eq!(app.stock("LIVE-1").await["available"], 4);
    app.stop().await;
}
on_both_stores!(a_stock_subscriber_follows_orders_and_reads_only_durable_values);

async fn an_order_topic_is_for_its_owner_and_operators(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("LIVE-2", 3).await;
    let placed: Value = app
        .order("owner", "LIVE-2", 1, None)
        .await
        .json()
        .await
        .expect("order json");
    let topic = format!("order:{}", placed["id"].as_str().expect("id"));
    let mut stranger = Live::connect(&app, &app.token("stranger", Role::Customer)).await;
    stranger.subscribe(&topic).await;
    let refused = stranger.next().await;
    assert_eq!(refused["topic"], topic.as_str());
    assert_eq!(refused["error"]["code"], "FORBIDDEN");
    let mut operator = Live::connect(&app, &app.operator()).await;
    operator.subscribe(&topic).await;
    assert_eq!(operator.next().await["data"]["status"], "RESERVED");
    let owner_token = app.token("owner", Role::Customer);
    let mut owner = Live::connect(&app, &owner_token).await;
    owner.subscribe(&topic).await;
    assert_eq!(owner.next().await["data"]["user_id"], "owner");
    let path = format!("/orders/{}/cancel", placed["id"].as_str().expect("id"));
    let cancelled = app.post(&path, &owner_token, json!({}), None).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    for session in [&mut owner, &mut operator] {
        session
            .until(&topic, |data| data["status"] == "CANCELLED")
            .await;
    }
    app.stop().await;
}
on_both_stores!(an_order_topic_is_for_its_owner_and_operators);

async fn bad_ops_get_error_frames_and_the_session_goes_on(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("LIVE-3", 1).await;
    let mut live = Live::connect(&app, &app.token("watcher", Role::Customer)).await;
    live.socket
        .send(Message::text("{not json"))
        .await
        .expect("sent");
    assert_eq!(live.next().await["error"]["code"], "MALFORMED_REQUEST");
    live.send(json!({"op": "shout", "topic": "stock:LIVE-3"}))
        .await;
    assert_eq!(live.next().await["error"]["code"], "VALIDATION_FAILED");
    live.subscribe("weather:today").await;
    assert_eq!(live.next().await["error"]["code"], "VALIDATION_FAILED");
    let unknown = format!("time-sale:{}", uuid::Uuid::now_v7());
    live.subscribe(&unknown).await;
    let missing = live.next().await;
    assert_eq!(missing["error"]["code"], "NOT_FOUND");
    assert_eq!(missing["topic"], unknown.as_str());
    live.subscribe("stock:NOPE").await;
    assert_eq!(live.next().await["error"]["code"], "NOT_FOUND");
    // Still serving: a good subscribe after all that gets its first value.
    live.subscribe("stock:LIVE-3").await;
    assert_eq!(live.next().await["data"]["available"], 1);
    app.stop().await;
}
on_both_stores!(bad_ops_get_error_frames_and_the_session_goes_on);

async fn a_session_flooding_ops_is_refused_past_its_rate(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|settings| settings.ws.ops_per_sec = 3),
    )
    .await
    else {
        return;
    };
    let mut live = Live::connect(&app, &app.token("flooder", Role::Customer)).await;
    // Unsubscribing from nothing is a no-op that answers nothing, so only refusals come back.
    for _ in 0..5 {
        live.send(json!({"op": "unsubscribe", "topic": "stock:X"}))
            .await;
    }
    for _ in 0..2 {
        assert_eq!(live.next().await["error"]["code"], "RATE_LIMITED");
    }
    app.stop().await;
}
on_both_stores!(a_session_flooding_ops_is_refused_past_its_rate);

async fn topics_and_sessions_are_given_back_when_subscribers_leave(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("LIVE-4", 1).await;
    let hub = app.services.rt.live.clone();
    let mut live = Live::connect(&app, &app.token("watcher", Role::Customer)).await;
    live.subscribe("stock:LIVE-4").await;
    live.next().await;
    assert_eq!(hub.topics_watched(), 1);
    assert_eq!(hub.sessions_open(), 1);
    let overview: Value = app
        .get("/admin/overview", &app.operator())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(overview["live"], json!({"sessions": 1, "topics": 1}));
    live.send(json!({"op": "unsubscribe", "topic": "stock:LIVE-4"}))
        .await;
    eventually_that("the unwatched topic is dropped", || async {
        hub.topics_held() == 0
    })
    .await;
    live.subscribe("stock:LIVE-4").await;
    live.next().await;
    live.socket.close(None).await.expect("closed");
    eventually_that(
        "the closed session's topic and seat are given back",
        || async { hub.topics_held() == 0 && hub.sessions_open() == 0 },
    )
    .await;
    app.stop().await;
}
on_both_stores!(topics_and_sessions_are_given_back_when_subscribers_leave);

async fn a_handshake_without_a_token_is_401_problem_json(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/ws"))
        .send()
        .await
        .expect("request is sent");
    assert_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = app.get("/ws", &app.operator()).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    app.stop().await;
}
on_both_stores!(a_handshake_without_a_token_is_401_problem_json);

async fn one_user_cannot_open_more_sessions_than_the_cap(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|settings| settings.ws.sessions_per_user_max = 2),
    )
    .await
    else {
        return;
    };
    let token = app.token("greedy", Role::Customer);
    let _first = Live::connect(&app, &token).await;
    let _second = Live::connect(&app, &token).await;
    let url = format!(
        "{}?access_token={token}",
        app.url("/ws").replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!(
            "expected a 429 handshake, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    let _other_user = Live::connect(&app, &app.token("modest", Role::Customer)).await;
    assert_eq!(app.services.rt.live.sessions_open(), 3);
    app.stop().await;
}
on_both_stores!(one_user_cannot_open_more_sessions_than_the_cap);

async fn a_session_ends_when_its_token_expires(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    app.create_stock("LIVE-5", 1).await;
    let mut live = Live::connect(&app, &app.token("short-lived", Role::Customer)).await;
    live.subscribe("stock:LIVE-5").await;
    assert_eq!(live.next().await["data"]["available"], 1);
    // The helper's tokens live an hour.
    app.clock
        .as_ref()
        .expect("manual clock")
        .advance_ms(HOUR_MS);
    assert_eq!(live.close_code().await, 1008, "closed for policy");
    eventually_that("the expired session's seat is given back", || async {
        app.services.rt.live.sessions_open() == 0
    })
    .await;
    app.stop().await;
}
on_both_stores!(a_session_ends_when_its_token_expires);

async fn a_session_keeps_to_its_topic_and_frame_bounds(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|settings| {
            settings.ws.topics_per_session_max = 2;
            settings.ws.frame_bytes_max = 1024;
        }),
    )
    .await
    else {
        return;
    };
    for sku in ["LIVE-6", "LIVE-7", "LIVE-8"] {
        app.create_stock(sku, 1).await;
    }
    let mut live = Live::connect(&app, &app.token("watcher", Role::Customer)).await;
    for sku in ["LIVE-6", "LIVE-7"] {
        live.subscribe(&format!("stock:{sku}")).await;
        assert_eq!(live.next().await["topic"], format!("stock:{sku}"));
    }
    live.subscribe("stock:LIVE-8").await;
    let refused = live.next().await;
    assert_eq!(refused["topic"], "stock:LIVE-8");
    assert_eq!(refused["error"]["code"], "VALIDATION_FAILED");
    assert_eq!(
        app.services.rt.live.topics_held(),
        2,
        "the third was not watched"
    );
    // A frame past frame_bytes_max breaks the protocol's bound: the session is closed.
    let huge = json!({"op": "subscribe", "topic": "x".repeat(2048)});
    live.send(huge).await;
    assert_eq!(live.close_code().await, 1008, "closed for policy");
    eventually_that("the closed session gives its topics back", || async {
        app.services.rt.live.topics_held() == 0
    })
    .await;
    app.stop().await;
}
on_both_stores!(a_session_keeps_to_its_topic_and_frame_bounds);

async fn a_change_whose_commit_failed_is_never_published(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("LIVE-9", 10).await;
    let mut live = Live::connect(&app, &app.token("watcher", Role::Customer)).await;
    live.subscribe("stock:LIVE-9").await;
    assert_eq!(live.next().await["data"]["available"], 10);
    // Another writer takes seq 2 behind the actor's back, so the actor's own seq 2 (a
    // reservation it has already applied in memory) fails to commit.
    app.append_foreign_adjustment("LIVE-9", 2, 5).await;
    let clashed = app.order("w", "LIVE-9", 1, None).await;
    assert_problem(clashed, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    // Restarted from the journal, the next order commits as seq 3: 15 on hand, 1 reserved.
    let ordered =
        || async { app.order("w", "LIVE-9", 1, None).await.status() == StatusCode::CREATED };
    eventually_that("an order after the restart", ordered).await;
    let mut last_seq = 1;
    loop {
        let frame = live.next().await;
        let seq = frame["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
        // 10 on hand with 1 reserved existed only in the failed incarnation's memory.
        assert_ne!(
            frame["data"]["available"], 9,
            "a failed change was published: {frame}"
        );
        if frame["data"]["available"] == 14 {
            assert_eq!(seq, 3);
            break;
        }
    }
    app.stop().await;
}
on_both_stores!(a_change_whose_commit_failed_is_never_published);

async fn a_queue_subscriber_sees_its_ticket_move_and_the_pass_arrive(backend: Backend) {
    let options = Options {
        manual_clock: true,
        tweak: |settings| settings.ws.queue_poll_ms = 20,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let sale = create_sale(&app, 100, json!({}), -1_000, HOUR_MS).await;
    let sale = sale["id"].as_str().expect("id").to_string();
    let topic = format!("queue:time-sales:{sale}");
    let rate = json!({"admit_per_sec": 1});
    let path = format!("/time-sales/{sale}/queue");
    let set = app
        .client
        .patch(app.url(&path))
        .bearer_auth(app.operator())
        .json(&rate);
    assert_eq!(set.send().await.expect("sent").status(), StatusCode::OK);
    let token = app.token_valid_for("third", Role::Customer, 3 * 3600);
    let mut live = Live::connect(&app, &token).await;
    live.subscribe(&topic).await;
    let not_joined = live.next().await;
    assert_eq!(not_joined["error"]["code"], "NOT_FOUND", "{not_joined}");
    for user in ["first", "second"] {
        let joined = app
            .post(
                &format!("/time-sales/{sale}/queue/join"),
                &app.token(user, Role::Customer),
                json!({}),
                None,
            )
            .await;
        assert_eq!(joined.status(), StatusCode::CREATED);
    }
    let joined = app
        .post(
            &format!("/time-sales/{sale}/queue/join"),
            &token,
            json!({}),
            None,
        )
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    live.subscribe(&topic).await;
    let first = live.next().await;
    assert_eq!(first["topic"], topic.as_str());
    assert_eq!(first["data"]["status"], "WAITING");
    assert_eq!(first["data"]["position"], 3);
    assert!(first["data"].get("pass").is_none());
    // One ticket a second: after a second the ticket is second in line, nobody asking.
    clock.advance_ms(1_000);
    let moved = live.until(&topic, |data| data["position"] == 2).await;
    assert_eq!(moved["data"]["status"], "WAITING");
    clock.advance_ms(2_000);
    let admitted = live
        .until(&topic, |data| data["status"] == "ADMITTED")
        .await;
    assert_eq!(admitted["data"]["position"], 0);
    assert!(admitted["data"]["pass"].is_string(), "{admitted}");
    // The topic went quiet; subscribing again sends the ticket, pass and all, once more.
    live.subscribe(&topic).await;
    let again = live.next().await;
    assert_eq!(again["data"]["status"], "ADMITTED");
    assert!(again["data"]["pass"].is_string(), "{again}");
    app.stop().await;
}
on_both_stores!(a_queue_subscriber_sees_its_ticket_move_and_the_pass_arrive);

/// What a seats subscriber knows: the seats that are not AVAILABLE, with their status.
type SeatModel = std::collections::BTreeMap<String, String>;

/// Applies one `event:{id}:seats` frame to `model`, as a client would: a full view replaces
/// it, changes update it.
fn apply_seats(model: &mut SeatModel, data: &Value) {
    if data["full"] == true {
        model.clear();
    }
    for change in data["changes"].as_array().expect("changes") {
        let id = change["id"].as_str().expect("id").to_string();
        match change["status"].as_str().expect("status") {
            "AVAILABLE" => model.remove(&id),
            status => model.insert(id, status.to_string()),
        };
    }
}

fn seats(entries: &[(&str, &str)]) -> SeatModel {
    entries
        .iter()
        .map(|(id, status)| (id.to_string(), status.to_string()))
        .collect()
}

impl Live {
    /// Frames on `topic`, applied to `model`, until it equals `wanted`.
    async fn seats_until(&mut self, topic: &str, model: &mut SeatModel, wanted: &SeatModel) {
        let mut last_seq = 0;
        while model != wanted {
            let frame = self.next().await;
            assert_eq!(frame["topic"], topic, "unexpected frame {frame}");
            let seq = frame["seq"].as_u64().expect("seq");
            assert!(seq > last_seq, "seq {seq} after {last_seq}");
            last_seq = seq;
            apply_seats(model, &frame["data"]);
        }
    }
}

async fn a_seats_subscriber_sees_every_hold_release_and_expiry(backend: Backend) {
    use crate::events::{create_event, hold, seat_statuses};
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let event = create_event(&app, 1, 6, json!({"hold_ttl_secs": 60})).await;
    let topic = format!("event:{event}:seats");
    let held = hold(&app, "kim", &event, json!({"seat_ids": ["A-1-1"]})).await;
    assert_eq!(held.status(), StatusCode::CREATED);

    let watcher = app.token_valid_for("watcher", Role::Customer, 3600);
    let mut live = Live::connect(&app, &watcher).await;
    live.subscribe(&topic).await;
    let first = live.next().await;
    assert_eq!(first["data"]["full"], true, "{first}");
    let mut model = SeatModel::new();
    apply_seats(&mut model, &first["data"]);
    assert_eq!(model, seats(&[("A-1-1", "HELD")]));

    let lee = app.token("lee", Role::Customer);
    let pair: Value = hold(&app, "lee", &event, json!({"seat_ids": ["A-1-2", "A-1-3"]}))
        .await
        .json()
        .await
        .expect("json");
    let wanted = seats(&[("A-1-1", "HELD"), ("A-1-2", "HELD"), ("A-1-3", "HELD")]);
    live.seats_until(&topic, &mut model, &wanted).await;

    // Held and given back, likely between two frames: whether or not the session saw the
    // hold, it must not leave the seat HELD.
    let brief: Value = hold(&app, "max", &event, json!({"seat_ids": ["A-1-6"]}))
        .await
        .json()
        .await
        .expect("json");
    let cancel = |order: &Value, token: &str| {
        let path = format!("/orders/{}/cancel", order["id"].as_str().expect("id"));
        let token = token.to_string();
        let app = &app;
        async move { app.post(&path, &token, json!({}), None).await.status() }
    };
    assert_eq!(
        cancel(&brief, &app.token("max", Role::Customer)).await,
        StatusCode::OK
    );
    assert_eq!(cancel(&pair, &lee).await, StatusCode::OK);
    live.seats_until(&topic, &mut model, &seats(&[("A-1-1", "HELD")]))
        .await;

    // A late subscriber, after the map changed again, ends up with the map as it is now (from
    // a full view and the changes after it).
    let held = hold(&app, "ned", &event, json!({"seat_ids": ["A-1-4"]})).await;
    assert_eq!(held.status(), StatusCode::CREATED);
    let now = seats(&[("A-1-1", "HELD"), ("A-1-4", "HELD")]);
    live.seats_until(&topic, &mut model, &now).await;
    let mut late = Live::connect(&app, &watcher).await;
    late.subscribe(&topic).await;
    let first = late.next().await;
    assert_eq!(first["data"]["full"], true, "{first}");
    let mut late_model = SeatModel::new();
    apply_seats(&mut late_model, &first["data"]);
    late.seats_until(&topic, &mut late_model, &now).await;

    // Nobody sends a request: the holds' own deadline releases the seats, for both sessions.
    clock.advance_ms(61_000);
    live.seats_until(&topic, &mut model, &SeatModel::new())
        .await;
    late.seats_until(&topic, &mut late_model, &SeatModel::new())
        .await;
    let statuses = seat_statuses(&app, &event).await;
    assert!(statuses.iter().all(|(_, status)| status == "AVAILABLE"));

    live.subscribe(&format!("event:{}:seats", uuid::Uuid::now_v7()))
        .await;
    let unknown = live.next().await;
    assert_eq!(unknown["error"]["code"], "NOT_FOUND", "{unknown}");
    app.stop().await;
}
on_both_stores!(a_seats_subscriber_sees_every_hold_release_and_expiry);
