//! Events, seat maps and holds over HTTP, on both stores; and holds expiring across a kill -9.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::rfc3339;

use crate::crash::{kill_9, Node};
use crate::helpers::{assert_problem, eventually, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;
use crate::time_sales::now_ms;

/// Section A with `rows` rows of `seats` seats (row n costs n * 1,000), open for sales now.
fn layout(app_now_ms: i64, rows: u32, seats: u32, extra: Value) -> Value {
    let rows: Vec<Value> = (1..=rows)
        .map(|r| json!({"name": r.to_string(), "seats": seats, "price": 1_000 * i64::from(r)}))
        .collect();
    let mut body = json!({
        "name": "Final",
        "venue": "Arena",
        "starts_at": rfc3339(app_now_ms + 86_400_000),
        "sections": [{"name": "A", "rows": rows}],
    });
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    body
}

pub(crate) async fn create_event(app: &TestApp, rows: u32, seats: u32, extra: Value) -> String {
    let body = layout(now_ms(app), rows, seats, extra);
    let response = app.post("/events", &app.operator(), body, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let event: Value = response.json().await.expect("json");
    assert_eq!(event["seats_total"], rows * seats);
    event["id"].as_str().expect("id").to_string()
}

pub(crate) async fn hold(app: &TestApp, user: &str, event: &str, body: Value) -> Response {
    let token = app.token(user, Role::Customer);
    app.post(&format!("/events/{event}/holds"), &token, body, None)
        .await
}

/// The event's `availability` in all: `{available, held, sold}`.
pub(crate) async fn availability(app: &TestApp, event: &str) -> Value {
    let view: Value = app
        .get(&format!("/events/{event}"), &app.operator())
        .await
        .json()
        .await
        .expect("json");
    view["availability"].clone()
}

/// Seat id -> status.
pub(crate) async fn seat_statuses(app: &TestApp, event: &str) -> Vec<(String, String)> {
    let seats: Value = app
        .get(&format!("/events/{event}/seats"), &app.operator())
        .await
        .json()
        .await
        .expect("json");
    seats["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").into(),
                s["status"].as_str().expect("status").into(),
            )
        })
        .collect()
}

fn seat_refs(order: &Value) -> Vec<String> {
    order["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["ref"].as_str().expect("ref").to_string())
        .collect()
}

async fn fifty_users_racing_for_one_seat_get_one_hold(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    let event = create_event(&app, 2, 10, json!({})).await;
    let race = (0..50).map(|i| {
        let (app, event) = (&app, &event);
        async move {
            hold(
                app,
                &format!("fan{i}"),
                event,
                json!({"seat_ids": ["A-1-5"]}),
            )
            .await
        }
    });
    let responses = join_all(race).await;
    let mut held = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => {
                held += 1;
                let order: Value = response.json().await.expect("json");
                assert_eq!(order["status"], "RESERVED");
                assert_eq!(order["source"]["type"], "event");
                assert_eq!(seat_refs(&order), vec!["A-1-5"]);
                assert_eq!(order["amount"], 1_000);
            }
            _ => {
                assert_problem(response, StatusCode::CONFLICT, "SEAT_UNAVAILABLE").await;
            }
        }
    }
    assert_eq!(held, 1);
    assert_eq!(
        availability(&app, &event).await,
        json!({"available": 19, "held": 1, "sold": 0})
    );
    app.stop().await;
}
on_both_stores!(fifty_users_racing_for_one_seat_get_one_hold);

async fn a_request_naming_a_taken_seat_holds_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    let event = create_event(&app, 1, 10, json!({})).await;
    let first = hold(&app, "ann", &event, json!({"seat_ids": ["A-1-2"]})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let clash = hold(
        &app,
        "bob",
        &event,
        json!({"seat_ids": ["A-1-1", "A-1-2", "A-1-3"]}),
    )
    .await;
    assert_problem(clash, StatusCode::CONFLICT, "SEAT_UNAVAILABLE").await;
    let too_many = hold(
        &app,
        "bob",
        &event,
        json!({"seat_ids": ["A-1-4", "A-1-5", "A-1-6", "A-1-7", "A-1-8"]}),
    )
    .await;
    assert_problem(too_many, StatusCode::UNPROCESSABLE_ENTITY, "TOO_MANY_SEATS").await;
    let too_many_best = hold(&app, "bob", &event, json!({"quantity": 5})).await;
    assert_problem(
        too_many_best,
        StatusCode::UNPROCESSABLE_ENTITY,
        "TOO_MANY_SEATS",
    )
    .await;
    let unknown = hold(&app, "bob", &event, json!({"seat_ids": ["Z-9-9"]})).await;
    assert_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let both = hold(
        &app,
        "bob",
        &event,
        json!({"seat_ids": ["A-1-4"], "quantity": 1}),
    )
    .await;
    assert_problem(both, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let held: Vec<String> = seat_statuses(&app, &event)
        .await
        .into_iter()
        .filter(|(_, status)| status != "AVAILABLE")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(held, vec!["A-1-2"], "only ann's seat is taken");
    let orders: Value = app
        .get("/orders?user_id=bob", &app.operator())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(orders["items"], json!([]), "bob got no order");
    app.stop().await;
}
on_both_stores!(a_request_naming_a_taken_seat_holds_nothing);

async fn a_hundred_users_asking_for_two_adjacent_seats_each_get_a_pair(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    // 10 rows of 21: the pairs must be adjacent and never overlap (which seats best-available
    // picks, and that it strands no single seat when it can, is tested in the seat map's units).
    let event = create_event(&app, 10, 21, json!({})).await;
    let asks = (0..100).map(|i| {
        let (app, event) = (&app, &event);
        async move { hold(app, &format!("pair{i}"), event, json!({"quantity": 2})).await }
    });
    let mut taken = BTreeSet::new();
    for response in join_all(asks).await {
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.expect("json");
        let seats = seat_refs(&order);
        assert_eq!(seats.len(), 2);
        let parts: Vec<Vec<&str>> = seats.iter().map(|s| s.split('-').collect()).collect();
        assert_eq!(parts[0][1], parts[1][1], "one row: {seats:?}");
        let numbers: Vec<u32> = parts
            .iter()
            .map(|p| p[2].parse().expect("number"))
            .collect();
        assert_eq!(numbers[0].abs_diff(numbers[1]), 1, "adjacent: {seats:?}");
        for seat in seats {
            assert!(taken.insert(seat.clone()), "{seat} held twice");
        }
    }
    assert_eq!(taken.len(), 200);
    app.stop().await;
}
on_both_stores!(a_hundred_users_asking_for_two_adjacent_seats_each_get_a_pair);

async fn holds_expire_after_the_ttl_and_cancel_gives_seats_back(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let event = create_event(&app, 1, 4, json!({"hold_ttl_secs": 60})).await;
    let order: Value = hold(&app, "kim", &event, json!({"seat_ids": ["A-1-1"]}))
        .await
        .json()
        .await
        .expect("json");
    let at = |field: &str| {
        surge::clock::parse_rfc3339(order[field].as_str().expect("time")).expect("rfc3339")
    };
    assert_eq!(
        at("expires_at") - at("created_at"),
        60_000,
        "the order expires with its hold"
    );
    let cancel_me: Value = hold(&app, "lee", &event, json!({"seat_ids": ["A-1-2"]}))
        .await
        .json()
        .await
        .expect("json");
    let lee = app.token("lee", Role::Customer);
    let cancelled = app
        .post(
            &format!("/orders/{}/cancel", cancel_me["id"].as_str().expect("id")),
            &lee,
            json!({}),
            None,
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    eventually(|| async { seat_statuses(&app, &event).await[1].1 == "AVAILABLE" }).await;
    assert_eq!(seat_statuses(&app, &event).await[0].1, "HELD");

    clock.advance_ms(61_000);
    eventually(|| async { seat_statuses(&app, &event).await[0].1 == "AVAILABLE" }).await;
    let id = order["id"].as_str().expect("id");
    eventually(|| async {
        let order: Value = app
            .get(&format!("/orders/{id}"), &app.operator())
            .await
            .json()
            .await
            .expect("json");
        order["status"] == "EXPIRED"
    })
    .await;
    app.stop().await;
}
on_both_stores!(holds_expire_after_the_ttl_and_cancel_gives_seats_back);

async fn sales_open_and_queue_rules_are_kept(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let later = rfc3339(now_ms(&app) + 60_000);
    let event = create_event(
        &app,
        1,
        10,
        json!({"sales_open_at": later, "queue_required": true}),
    )
    .await;
    let early = hold(&app, "ivy", &event, json!({"quantity": 1})).await;
    assert_problem(early, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    let token = app.token("ivy", Role::Customer);
    let joined = app
        .post(
            &format!("/events/{event}/queue/join"),
            &token,
            json!({}),
            None,
        )
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    clock.advance_ms(61_000);
    let ticket: Value = app
        .get(&format!("/events/{event}/queue/me"), &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ticket["status"], "ADMITTED", "{ticket}");
    let pass = ticket["pass"].as_str().expect("pass");
    let with_pass = app
        .client
        .post(app.url(&format!("/events/{event}/holds")))
        .bearer_auth(&token)
        .header("X-Queue-Pass", pass)
        .json(&json!({"quantity": 2}))
        .send()
        .await
        .expect("sent");
    assert_eq!(with_pass.status(), StatusCode::CREATED);

    let closed = create_event(
        &app,
        1,
        10,
        json!({"sales_open_at": rfc3339(now_ms(&app) + 60_000)}),
    )
    .await;
    let not_open = hold(&app, "ivy", &closed, json!({"quantity": 1})).await;
    assert_problem(not_open, StatusCode::UNPROCESSABLE_ENTITY, "SALES_NOT_OPEN").await;
    app.stop().await;
}
on_both_stores!(sales_open_and_queue_rules_are_kept);

async fn bad_events_are_refused_and_create_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    let now = now_ms(&app);
    let customer = app.token("cus", Role::Customer);
    let forbidden = app
        .post("/events", &customer, layout(now, 1, 5, json!({})), None)
        .await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    for bad in [
        layout(now, 1, 0, json!({})),
        layout(now, 1, 5, json!({"starts_at": "tomorrow"})),
        layout(now, 1, 5, json!({"max_seats_per_order": 0})),
        layout(now, 1, 5, json!({"sections": []})),
        layout(
            now,
            1,
            5,
            json!({"sections": [{"name": "A-B", "rows": [{"name": "1", "seats": 2, "price": 1}]}]}),
        ),
    ] {
        let response = app
            .post("/events", &app.operator(), bad.clone(), None)
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let malformed = app
        .client
        .post(app.url("/events"))
        .bearer_auth(app.operator())
        .header("Content-Type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    eventually(|| async {
        let page: Value = app
            .get("/events", &app.operator())
            .await
            .json()
            .await
            .expect("json");
        page["items"] == json!([])
    })
    .await;
    // A stadium-sized layout fits: 60,000 seats as 100 sections of 30 rows of 20.
    let sections: Vec<Value> = (0..100)
        .map(|s| {
            let rows: Vec<Value> = (1..=30)
                .map(|r| json!({"name": r.to_string(), "seats": 20, "price": 5_000}))
                .collect();
            json!({"name": format!("S{s}"), "rows": rows})
        })
        .collect();
    let stadium = layout(now, 1, 1, json!({"sections": sections}));
    let response = app.post("/events", &app.operator(), stadium, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let view: Value = response.json().await.expect("json");
    assert_eq!(view["seats_total"], 60_000);
    eventually(|| async {
        let page: Value = app
            .get("/events", &app.operator())
            .await
            .json()
            .await
            .expect("json");
        page["items"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    app.stop().await;
}
on_both_stores!(bad_events_are_refused_and_create_nothing);

async fn holds_that_fall_due_while_down_are_released_at_start_up(backend: Backend) {
    let Some(node) = Node::new(backend, &[]) else {
        return;
    };
    let server = node.start().await;
    let op = node.token("op", Role::Operator);
    let starts = rfc3339(surge::clock::Clock::now_ms(&surge::clock::SystemClock) + 86_400_000);
    let body = json!({
        "name": "Gig", "venue": "Club", "starts_at": starts, "hold_ttl_secs": 60,
        "sections": [{"name": "F", "rows": [{"name": "1", "seats": 10, "price": 100}]}],
    });
    let created = node
        .call(&server, Method::POST, "/events", &op, Some(body))
        .await
        .expect("sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    let event = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut orders = Vec::new();
    for i in 0..3 {
        let token = node.token(&format!("gig{i}"), Role::Customer);
        let held = node
            .call(
                &server,
                Method::POST,
                &format!("/events/{event}/holds"),
                &token,
                Some(json!({"quantity": 2})),
            )
            .await
            .expect("sent");
        assert_eq!(held.status(), StatusCode::CREATED);
        orders.push(
            held.json::<Value>().await.expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let view = node.json(&server, &format!("/events/{event}")).await;
    assert_eq!(view["availability"]["held"], 6);
    kill_9(server).await;
    // The process comes back two minutes "later": the holds fell due while it was down.
    let server = node.start_later(120_000).await;
    let mut released = false;
    // Polls the read table (GET /events), which does not wake the seat map: only the start-up
    // deadline scan can release the holds here. Up to 20 s: a bound for a loaded machine.
    for _ in 0..400 {
        let page = node.json(&server, "/events").await;
        let held = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|e| e["id"] == json!(event))
            .map(|e| e["availability"]["held"].clone());
        if held == Some(json!(0)) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "holds were not released after start-up");
    for id in &orders {
        let order = node.json(&server, &format!("/orders/{id}")).await;
        assert_eq!(order["status"], "EXPIRED");
    }
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(holds_that_fall_due_while_down_are_released_at_start_up);
