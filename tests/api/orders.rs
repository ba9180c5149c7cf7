//! Stock items and orders over HTTP, on both stores.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::Clock;

use crate::helpers::{assert_problem, eventually, spawn_app, spawn_app_with, Backend, Options};
use crate::on_both_stores;

async fn three_hundred_buyers_race_for_one_hundred_units(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("HOT", 100).await;
    let attempts = (0..300).map(|i| {
        let app = &app;
        async move { app.order(&format!("buyer-{i}"), "HOT", 1, None).await }
    });
    let responses = join_all(attempts).await;
    let mut created = 0;
    let mut refused = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_problem(response, StatusCode::CONFLICT, "INSUFFICIENT_STOCK").await;
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, refused), (100, 200));
    let stock = app.stock("HOT").await;
    assert_eq!(stock["reserved"], 100);
    assert_eq!(stock["available"], 0);
    assert_eq!(stock["on_hand"], 100);
    app.stop().await;
}
on_both_stores!(three_hundred_buyers_race_for_one_hundred_units);

async fn a_retry_with_the_same_key_replays_and_reserves_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("SKU-1", 10).await;
    let first = app.order("alice", "SKU-1", 2, Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let retry = app.order("alice", "SKU-1", 2, Some("key-1")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    let retry: Value = retry.json().await.expect("json");
    assert_eq!(retry, first);
    assert_eq!(app.stock("SKU-1").await["reserved"], 2);
    // Another user's identical key is their own.
    let other = app.order("bob", "SKU-1", 2, Some("key-1")).await;
    assert_eq!(other.status(), StatusCode::CREATED);
    assert_eq!(app.stock("SKU-1").await["reserved"], 4);
    app.stop().await;
}
on_both_stores!(a_retry_with_the_same_key_replays_and_reserves_once);

async fn the_same_key_with_another_body_is_422(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("SKU-1", 10).await;
    let first = app.order("alice", "SKU-1", 1, Some("key-9")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let reused = app.order("alice", "SKU-1", 3, Some("key-9")).await;
    assert_problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.stock("SKU-1").await["reserved"], 1);
    app.stop().await;
}
on_both_stores!(the_same_key_with_another_body_is_422);

async fn bad_requests_get_problem_json_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("SKU-1", 10).await;
    let body = json!({"items": [{"sku": "SKU-1", "quantity": 1}]});
    let no_token = app
        .client
        .post(app.url("/orders"))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_problem(no_token, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let bad_token = app.post("/orders", "not-a-jwt", body.clone(), None).await;
    assert_problem(bad_token, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let customer = app.token("carol", Role::Customer);
    let forbidden = app
        .post(
            "/stock-items",
            &customer,
            json!({"sku": "X", "name": "x", "on_hand": 1}),
            None,
        )
        .await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let malformed = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&customer)
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let negative = app
        .post(
            "/orders",
            &customer,
            json!({"items": [{"sku": "SKU-1", "quantity": -1}]}),
            None,
        )
        .await;
    let problem = assert_problem(
        negative,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "items[0].quantity");
    let too_big = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&customer)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"items\": [], \"pad\": \"{}\"}}",
            "x".repeat(70_000)
        ))
        .send()
        .await
        .expect("sent");
    assert_problem(too_big, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    let unknown = app.order("carol", "NOPE", 1, None).await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let stock = app.stock("SKU-1").await;
    assert_eq!(
        (stock["reserved"].clone(), stock["version"].clone()),
        (json!(0), json!(1))
    );
    app.stop().await;
}
on_both_stores!(bad_requests_get_problem_json_and_change_nothing);

async fn an_order_reads_back_at_once_and_lists_for_its_owner_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("A", 10).await;
    app.create_stock("B", 10).await;
    let dave = app.token("dave", Role::Customer);
    let response = app
        .post(
            "/orders",
            &dave,
            json!({"items": [{"sku": "B", "quantity": 2}, {"sku": "A", "quantity": 1}]}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("json");
    assert_eq!(order["status"], "RESERVED");
    assert_eq!(order["amount"], 300);
    let id = order["id"].as_str().expect("id");
    let read = app.get(&format!("/orders/{id}"), &dave).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.expect("json"), order);
    let eve = app.token("eve", Role::Customer);
    let other = app.get(&format!("/orders/{id}"), &eve).await;
    assert_problem(other, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let mine: Value = app.get("/orders", &dave).await.json().await.expect("json");
    assert_eq!(mine["items"].as_array().expect("items").len(), 1);
    assert_eq!(mine["items"][0], order, "listed as it was answered");
    let eves: Value = app.get("/orders", &eve).await.json().await.expect("json");
    assert!(eves["items"].as_array().expect("items").is_empty());
    let all: Value = app
        .get("/orders?user_id=dave", &app.operator())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["items"][0]["id"], id);
    app.stop().await;
}
on_both_stores!(an_order_reads_back_at_once_and_lists_for_its_owner_only);

async fn a_refused_line_releases_the_lines_already_reserved(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("A", 10).await;
    app.create_stock("B", 1).await;
    let frank = app.token("frank", Role::Customer);
    let response = app
        .post(
            "/orders",
            &frank,
            json!({"items": [{"sku": "A", "quantity": 5}, {"sku": "B", "quantity": 2}]}),
            None,
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "INSUFFICIENT_STOCK").await;
    assert_eq!(app.stock("A").await["reserved"], 0);
    assert_eq!(app.stock("B").await["reserved"], 0);
    let orders: Value = app.get("/orders", &frank).await.json().await.expect("json");
    assert!(orders["items"].as_array().expect("items").is_empty());
    app.stop().await;
}
on_both_stores!(a_refused_line_releases_the_lines_already_reserved);

async fn cancelling_a_reserved_order_gives_its_units_back(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("A", 10).await;
    let order: Value = app
        .order("gina", "A", 4, None)
        .await
        .json()
        .await
        .expect("json");
    let id = order["id"].as_str().expect("id");
    let gina = app.token("gina", Role::Customer);
    let cancelled = app
        .post(&format!("/orders/{id}/cancel"), &gina, json!({}), None)
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(
        cancelled.json::<Value>().await.expect("json")["status"],
        "CANCELLED"
    );
    assert_eq!(app.stock("A").await["reserved"], 0);
    // The list shows the change, beside an order that never changed.
    let kept: Value = app
        .order("gina", "A", 1, None)
        .await
        .json()
        .await
        .expect("json");
    let listed: Value = app.get("/orders", &gina).await.json().await.expect("json");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], kept, "newest first, as it was answered");
    assert_eq!(
        (items[1]["id"].as_str(), &items[1]["status"]),
        (Some(id), &json!("CANCELLED"))
    );
    app.stop().await;
}
on_both_stores!(cancelling_a_reserved_order_gives_its_units_back);

async fn an_unpaid_order_expires_by_itself_and_its_units_return(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    app.create_stock("A", 10).await;
    let order: Value = app
        .order("hugo", "A", 3, None)
        .await
        .json()
        .await
        .expect("json");
    let id = order["id"].as_str().expect("id").to_string();
    assert_eq!(app.stock("A").await["reserved"], 3);
    let clock = app.clock.clone().expect("manual clock");
    let pay_within_ms = i64::try_from(app.settings.orders.pay_within_secs * 1000).expect("fits");
    clock.advance_ms(pay_within_ms - 1_000);
    assert_eq!(app.stock("A").await["reserved"], 3, "not yet due");
    clock.advance_ms(1_001);
    eventually(|| async { app.stock("A").await["reserved"] == 0 }).await;
    let hugo = app.token("hugo", Role::Customer);
    eventually(|| async {
        let order: Value = app
            .get(&format!("/orders/{id}"), &hugo)
            .await
            .json()
            .await
            .expect("json");
        order["status"] == "EXPIRED"
    })
    .await;
    let listed: Value = app.get("/orders", &hugo).await.json().await.expect("json");
    assert_eq!(listed["items"][0]["status"], "EXPIRED");
    app.stop().await;
}
on_both_stores!(an_unpaid_order_expires_by_itself_and_its_units_return);

async fn adjustments_and_movements_follow_the_journal(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("M", 5).await;
    let op = app.operator();
    let up = app
        .post(
            "/stock-items/M/adjustments",
            &op,
            json!({"delta": 7, "reason": "receipt"}),
            None,
        )
        .await;
    assert_eq!(up.status(), StatusCode::OK);
    assert_eq!(up.json::<Value>().await.expect("json")["on_hand"], 12);
    app.order("ivy", "M", 10, None).await;
    let down = app
        .post(
            "/stock-items/M/adjustments",
            &op,
            json!({"delta": -3, "reason": "damaged"}),
            None,
        )
        .await;
    assert_problem(down, StatusCode::CONFLICT, "INSUFFICIENT_STOCK").await;
    // Deltas out of range, including one whose absolute value overflows, change nothing.
    for delta in [i64::MIN, -1_000_000_000_001, 0, 1_000_000_000_001] {
        let body = json!({"delta": delta, "reason": "fuzz"});
        let refused = app
            .post("/stock-items/M/adjustments", &op, body, None)
            .await;
        assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_eq!(app.stock("M").await["on_hand"], 12);
    let movements: Value = app
        .get("/stock-items/M/movements?limit=2", &op)
        .await
        .json()
        .await
        .expect("json");
    let items = movements["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["kind"], "reserved");
    assert_eq!(items[1]["kind"], "adjusted");
    let cursor = movements["next_cursor"].as_str().expect("more pages");
    let rest: Value = app
        .get(
            &format!("/stock-items/M/movements?limit=2&cursor={cursor}"),
            &op,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(rest["items"][0]["kind"], "created");
    assert!(rest["next_cursor"].is_null());
    let customer = app.token("ivy", Role::Customer);
    let forbidden = app.get("/stock-items/M/movements", &customer).await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let duplicate = app
        .post(
            "/stock-items",
            &op,
            json!({"sku": "M", "name": "again", "on_hand": 1}),
            None,
        )
        .await;
    assert_problem(duplicate, StatusCode::CONFLICT, "CONFLICT").await;
    app.stop().await;
}
on_both_stores!(adjustments_and_movements_follow_the_journal);

async fn a_keyed_retry_after_a_timeout_never_runs_twice(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|s| s.server.request_timeout_ms = 1_000),
    )
    .await
    else {
        return;
    };
    app.create_stock("SLOW", 10).await;
    let resume = app.services.stock.stall("SLOW").expect("running");
    let first = app.order("kim", "SLOW", 1, Some("slow-key")).await;
    let problem = assert_problem(first, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("Idempotency-Key"));
    // The first attempt's outcome is still unknown: the key stays taken.
    let early = app.order("kim", "SLOW", 1, Some("slow-key")).await;
    assert_problem(early, StatusCode::CONFLICT, "IDEMPOTENCY_IN_FLIGHT").await;
    resume.send(()).expect("resumed");
    eventually(|| async { app.stock("SLOW").await["reserved"] == 1 }).await;
    let mut replayed = None;
    for _ in 0..200 {
        let retry = app.order("kim", "SLOW", 1, Some("slow-key")).await;
        if retry.status() == StatusCode::CREATED {
            replayed = Some(retry);
            break;
        }
        assert_eq!(
            retry.status(),
            StatusCode::CONFLICT,
            "only in-flight while resolving"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let replayed = replayed.expect("the retry is answered");
    assert_eq!(replayed.headers()["Idempotent-Replayed"], "true");
    assert_eq!(app.stock("SLOW").await["reserved"], 1, "reserved once");
    app.stop().await;
}
on_both_stores!(a_keyed_retry_after_a_timeout_never_runs_twice);

async fn an_order_too_large_to_total_is_refused_and_harms_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let op = app.operator();
    let created = app
        .post(
            "/stock-items",
            &op,
            json!({"sku": "GOLD", "name": "gold", "on_hand": 1_000_000, "price": 1_000_000_000_000i64}),
            None,
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let huge = app.order("midas", "GOLD", 100_000, None).await;
    assert_problem(huge, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let fine = app.order("midas", "GOLD", 1, None).await;
    assert_eq!(fine.status(), StatusCode::CREATED);
    assert_eq!(app.stock("GOLD").await["reserved"], 1);
    app.stop().await;
}
on_both_stores!(an_order_too_large_to_total_is_refused_and_harms_nothing);

async fn due_rows_of_running_entities_never_hide_later_deadlines(backend: Backend) {
    let options = Options {
        manual_clock: true,
        tweak: |s| s.deadlines.scan_batch_max = 2,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    // Five running entities whose (stale) deadline rows sit at the head of every scan.
    let mut stale = surge::persistence::Batch::default();
    for i in 0..5 {
        app.create_stock(&format!("RUN-{i}"), 1).await;
        stale
            .deadlines
            .push(surge::persistence::DeadlineWrite::Set {
                pid: format!("stock_item:RUN-{i}"),
                due_at_ms: clock.now_ms() - 60_000,
            });
    }
    app.services
        .rt
        .store
        .commit(&stale)
        .await
        .expect("stale rows");
    app.create_stock("LATE", 5).await;
    let order: Value = app
        .order("lou", "LATE", 1, None)
        .await
        .json()
        .await
        .expect("json");
    let pay_within_ms = i64::try_from(app.settings.orders.pay_within_secs * 1000).expect("fits");
    clock.advance_ms(pay_within_ms + 1);
    let lou = app.token("lou", Role::Customer);
    // The list comes from read rows: it shows EXPIRED only once the scan woke the order.
    eventually(|| async {
        let listed: Value = app.get("/orders", &lou).await.json().await.expect("json");
        listed["items"][0]["status"] == "EXPIRED"
    })
    .await;
    assert_eq!(order["status"], "RESERVED");
    app.stop().await;
}
on_both_stores!(due_rows_of_running_entities_never_hide_later_deadlines);
