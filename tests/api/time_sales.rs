//! Products and time sales over HTTP, on both stores.

use futures::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::{rfc3339, Clock, SystemClock};

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, Backend, Options, TestApp,
};
use crate::on_both_stores;

const HOUR_MS: i64 = 3_600_000;

pub(crate) fn now_ms(app: &TestApp) -> i64 {
    app.clock
        .as_ref()
        .map_or_else(|| SystemClock.now_ms(), |c| c.now_ms())
}

async fn create_product(app: &TestApp) -> String {
    let response = app
        .post(
            "/products",
            &app.operator(),
            json!({"name": "Runner 2", "price": 129_000, "description": "a shoe"}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let product: Value = response.json().await.expect("json");
    product["id"].as_str().expect("id").to_string()
}

/// A sale of `quantity` whose window is [now + from_ms, now + to_ms).
pub(crate) async fn create_sale(
    app: &TestApp,
    quantity: i64,
    extra: Value,
    from_ms: i64,
    to_ms: i64,
) -> Value {
    let product_id = create_product(app).await;
    let now = now_ms(app);
    let mut body = json!({
        "product_id": product_id,
        "quantity": quantity,
        "sale_price": 99_000,
        "starts_at": rfc3339(now + from_ms),
        "ends_at": rfc3339(now + to_ms),
    });
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    let response = app.post("/time-sales", &app.operator(), body, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("sale json")
}

async fn open_sale(app: &TestApp, quantity: i64, extra: Value) -> String {
    let sale = create_sale(app, quantity, extra, -1_000, HOUR_MS).await;
    assert_eq!(sale["status"], "ACTIVE");
    sale["id"].as_str().expect("id").to_string()
}

async fn purchase(
    app: &TestApp,
    user: &str,
    sale: &str,
    quantity: i64,
    key: Option<&str>,
) -> Response {
    let token = app.token(user, Role::Customer);
    let path = format!("/time-sales/{sale}/purchase");
    app.post(&path, &token, json!({"quantity": quantity}), key)
        .await
}

async fn sale(app: &TestApp, id: &str) -> Value {
    let response = app
        .get(
            &format!("/time-sales/{id}"),
            &app.token("anyone", Role::Customer),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("sale json")
}

/// Counts of each (status, code) among the responses.
async fn tally(responses: Vec<Response>) -> std::collections::BTreeMap<(u16, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for response in responses {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        let code = body["code"].as_str().unwrap_or("").to_string();
        *counts.entry((status, code)).or_default() += 1;
    }
    counts
}

async fn a_thousand_buyers_race_for_one_hundred_units(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = open_sale(&app, 100, json!({})).await;
    let attempts = (0..1000).map(|i| {
        let (app, id) = (&app, &id);
        async move { purchase(app, &format!("buyer-{i}"), id, 1, None).await }
    });
    let counts = tally(join_all(attempts).await).await;
    let expected = [((201, String::new()), 100), ((409, "SOLD_OUT".into()), 900)];
    assert_eq!(counts, expected.into_iter().collect());
    let after = sale(&app, &id).await;
    assert_eq!(
        (after["remaining"].clone(), after["reserved"].clone()),
        (json!(0), json!(100))
    );
    assert_eq!(after["status"], "SOLD_OUT");
    let listed: Value = app
        .get("/orders?limit=500", &app.operator())
        .await
        .json()
        .await
        .expect("json");
    let of_sale = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|o| o["source"]["id"] == id.as_str());
    assert_eq!(of_sale.count(), 100, "every 201 is an order");
    app.stop().await;
}
on_both_stores!(a_thousand_buyers_race_for_one_hundred_units);

async fn one_user_firing_twenty_purchases_with_a_limit_of_one_gets_one(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = open_sale(&app, 50, json!({})).await;
    let attempts = (0..20).map(|_| purchase(&app, "eager", &id, 1, None));
    let counts = tally(join_all(attempts).await).await;
    let expected = [
        ((201, String::new()), 1),
        ((422, "PER_USER_LIMIT_EXCEEDED".into()), 19),
    ];
    assert_eq!(counts, expected.into_iter().collect());
    assert_eq!(sale(&app, &id).await["reserved"], 1);
    // null means unlimited; a limit counts units, not purchases.
    let unlimited = open_sale(&app, 50, json!({"per_user_limit": null})).await;
    let attempts = (0..20).map(|_| purchase(&app, "eager", &unlimited, 2, None));
    let counts = tally(join_all(attempts).await).await;
    assert_eq!(counts, [((201, String::new()), 20)].into_iter().collect());
    let three = open_sale(&app, 50, json!({"per_user_limit": 3})).await;
    assert_eq!(
        purchase(&app, "eager", &three, 2, None).await.status(),
        StatusCode::CREATED
    );
    let over = purchase(&app, "eager", &three, 2, None).await;
    assert_problem(
        over,
        StatusCode::UNPROCESSABLE_ENTITY,
        "PER_USER_LIMIT_EXCEEDED",
    )
    .await;
    app.stop().await;
}
on_both_stores!(one_user_firing_twenty_purchases_with_a_limit_of_one_gets_one);

async fn a_sale_flips_by_its_deadlines_and_only_sells_while_active(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let created = create_sale(&app, 5, json!({}), HOUR_MS, 2 * HOUR_MS).await;
    assert_eq!(created["status"], "SCHEDULED");
    let id = created["id"].as_str().expect("id").to_string();
    let early = purchase(&app, "ann", &id, 1, None).await;
    assert_problem(early, StatusCode::UNPROCESSABLE_ENTITY, "SALE_NOT_ACTIVE").await;
    let listed = |status: &'static str| {
        let app = &app;
        async move {
            let page: Value = app
                .get(&format!("/time-sales?status={status}"), &app.operator())
                .await
                .json()
                .await
                .expect("json");
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["id"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("SCHEDULED").await, vec![json!(id)]);
    // Nobody touches the sale: its deadline opens it, and the list shows it.
    clock.advance_ms(HOUR_MS);
    eventually(|| async { listed("ACTIVE").await == vec![json!(id)] }).await;
    assert!(listed("SCHEDULED").await.is_empty());
    assert_eq!(
        purchase(&app, "ann", &id, 1, None).await.status(),
        StatusCode::CREATED
    );
    clock.advance_ms(HOUR_MS);
    eventually(|| async { listed("ENDED").await == vec![json!(id)] }).await;
    let late = purchase(&app, "bob", &id, 1, None).await;
    assert_problem(late, StatusCode::UNPROCESSABLE_ENTITY, "SALE_NOT_ACTIVE").await;
    let bad = app.get("/time-sales?status=OPEN", &app.operator()).await;
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    app.stop().await;
}
on_both_stores!(a_sale_flips_by_its_deadlines_and_only_sells_while_active);

async fn an_unpaid_purchase_expires_and_its_unit_and_allowance_return(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let id = open_sale(&app, 1, json!({})).await;
    let order: Value = purchase(&app, "cid", &id, 1, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(order["status"], "RESERVED");
    assert_eq!(order["source"], json!({"type": "time_sale", "id": id}));
    assert_eq!(
        order["items"],
        json!([{"ref": id, "quantity": 1, "unit_price": 99_000}])
    );
    assert_eq!(order["amount"], 99_000);
    let sold_out = purchase(&app, "dee", &id, 1, None).await;
    assert_problem(sold_out, StatusCode::CONFLICT, "SOLD_OUT").await;
    let pay_within_ms = i64::try_from(app.settings.orders.pay_within_secs * 1000).expect("fits");
    clock.advance_ms(pay_within_ms + 1);
    eventually(|| async { sale(&app, &id).await["remaining"] == 1 }).await;
    let cid = app.token("cid", Role::Customer);
    let order_path = format!("/orders/{}", order["id"].as_str().expect("id"));
    eventually(|| async {
        let order: Value = app.get(&order_path, &cid).await.json().await.expect("json");
        order["status"] == "EXPIRED"
    })
    .await;
    assert_eq!(
        purchase(&app, "cid", &id, 1, None).await.status(),
        StatusCode::CREATED,
        "allowance back"
    );
    app.stop().await;
}
on_both_stores!(an_unpaid_purchase_expires_and_its_unit_and_allowance_return);

async fn a_cancelled_purchase_returns_its_unit_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = open_sale(&app, 1, json!({})).await;
    let order: Value = purchase(&app, "eve", &id, 1, None)
        .await
        .json()
        .await
        .expect("json");
    let eve = app.token("eve", Role::Customer);
    let path = format!("/orders/{}/cancel", order["id"].as_str().expect("id"));
    let cancelled = app.post(&path, &eve, json!({}), None).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let after = sale(&app, &id).await;
    assert_eq!(
        (after["remaining"].clone(), after["status"].clone()),
        (json!(1), json!("ACTIVE"))
    );
    assert_eq!(
        purchase(&app, "eve", &id, 1, None).await.status(),
        StatusCode::CREATED
    );
    app.stop().await;
}
on_both_stores!(a_cancelled_purchase_returns_its_unit_at_once);

async fn a_purchase_retried_with_its_key_replays_and_reserves_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = open_sale(&app, 10, json!({"per_user_limit": 5})).await;
    let first = purchase(&app, "fay", &id, 2, Some("buy-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(first.headers()["content-type"], "application/json");
    let first: Value = first.json().await.expect("json");
    let retry = purchase(&app, "fay", &id, 2, Some("buy-1")).await;
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(sale(&app, &id).await["reserved"], 2);
    let reused = purchase(&app, "fay", &id, 3, Some("buy-1")).await;
    assert_problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // The order is there at once (read your writes).
    let fay = app.token("fay", Role::Customer);
    let got = app
        .get(
            &format!("/orders/{}", first["id"].as_str().expect("id")),
            &fay,
        )
        .await;
    assert_eq!(got.status(), StatusCode::OK);
    app.stop().await;
}
on_both_stores!(a_purchase_retried_with_its_key_replays_and_reserves_once);

async fn bad_sale_requests_get_problem_json_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let op = app.operator();
    let customer = app.token("gus", Role::Customer);
    let product_id = create_product(&app).await;
    let product = app.get(&format!("/products/{product_id}"), &customer).await;
    assert_eq!(
        product.json::<Value>().await.expect("json")["name"],
        "Runner 2"
    );
    let now = SystemClock.now_ms();
    let good = json!({"product_id": product_id, "quantity": 5, "sale_price": 10,
        "starts_at": rfc3339(now), "ends_at": rfc3339(now + HOUR_MS)});
    let by_customer = app.post("/time-sales", &customer, good.clone(), None).await;
    assert_problem(by_customer, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    for (field, value) in [
        ("quantity", json!(0)),
        ("sale_price", json!(-1)),
        ("starts_at", json!("soon")),
        ("ends_at", json!(rfc3339(now - 1))),
        ("per_user_limit", json!(0)),
        ("product_id", json!(uuid::Uuid::now_v7().to_string())),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let refused = app.post("/time-sales", &op, body, None).await;
        let problem = assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let listed: Value = app
        .get("/time-sales", &op)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]), "nothing was created");
    let id = open_sale(&app, 5, json!({})).await;
    let path = format!("/time-sales/{id}/purchase");
    let malformed = app
        .client
        .post(app.url(&path))
        .bearer_auth(&customer)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let zero = purchase(&app, "gus", &id, 0, None).await;
    assert_problem(zero, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let unknown = purchase(&app, "gus", &uuid::Uuid::now_v7().to_string(), 1, None).await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let no_token = app
        .client
        .post(app.url(&path))
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_problem(no_token, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(sale(&app, &id).await["reserved"], 0);
    let queued = open_sale(&app, 5, json!({"queue_required": true})).await;
    let no_pass = purchase(&app, "gus", &queued, 1, None).await;
    assert_problem(no_pass, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    // An empty body buys one unit.
    let empty = app
        .client
        .post(app.url(&path))
        .bearer_auth(&customer)
        .send()
        .await
        .expect("sent");
    assert_eq!(empty.status(), StatusCode::CREATED);
    // So does JSON `null`, as the API document allows; any other non-object is refused.
    let null = app
        .post(&path, &app.token("hal", Role::Customer), Value::Null, None)
        .await;
    assert_eq!(null.status(), StatusCode::CREATED);
    assert_eq!(
        null.json::<Value>().await.expect("json")["items"][0]["quantity"],
        1
    );
    // An array too, though serde alone would read `[2]` as `{"quantity": 2}`.
    for body in [json!("one"), json!([2]), json!([])] {
        let not_an_object = app
            .post(&path, &app.token("ida", Role::Customer), body, None)
            .await;
        let problem = assert_problem(
            not_an_object,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "body", "{problem}");
    }
    // Every field in order, which serde alone reads as the object.
    let array_of_fields = json!([
        product_id,
        5,
        10,
        rfc3339(now),
        rfc3339(now + HOUR_MS),
        1,
        false
    ]);
    let array_of_fields = app.post("/time-sales", &op, array_of_fields, None).await;
    assert_problem(
        array_of_fields,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(sale(&app, &id).await["reserved"], 2);
    let listed: Value = app
        .get("/time-sales", &op)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "only the two opened above"
    );
    app.stop().await;
}
on_both_stores!(bad_sale_requests_get_problem_json_and_change_nothing);
