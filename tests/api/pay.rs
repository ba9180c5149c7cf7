//! Paying orders through the checkout saga, against the real gateway simulator served on a
//! port of its own, on both stores: coupon, points and card with exact amounts; a decline that
//! gives everything back; an expired order; one key, one charge; an open breaker.

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;

use crate::gateway::Sim;
use crate::helpers::{assert_problem, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;

/// Stock items cost 100 a unit (`TestApp::create_stock`).
const UNIT_PRICE: i64 = 100;

pub(crate) async fn app_with(backend: Backend, sim: &Sim, manual_clock: bool) -> Option<TestApp> {
    let options = Options {
        manual_clock,
        gateway_url: Some(sim.base.clone()),
        ..Options::default()
    };
    spawn_app_with(backend, options).await
}

/// A placed order of `quantity` units of a new stock item; returns its id.
pub(crate) async fn placed(app: &TestApp, user: &str, sku: &str, quantity: i64) -> String {
    app.create_stock(sku, 100).await;
    let response = app.order(user, sku, quantity, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("json");
    order["id"].as_str().expect("id").to_string()
}

/// A coupon policy of 10% off (at most 500, on orders of 100 or more), one per user, open
/// from a minute before `now_ms` for an hour.
pub(crate) fn ten_percent_off(now_ms: i64) -> Value {
    json!({
        "title": "Ten percent off",
        "discount_type": "PERCENTAGE",
        "discount_value": 10,
        "min_order_amount": 100,
        "max_discount_amount": 500,
        "total_quantity": 10,
        "per_user_limit": 1,
        "starts_at": surge::clock::rfc3339(now_ms - 60_000),
        "ends_at": surge::clock::rfc3339(now_ms + 3_600_000),
    })
}

/// A 10% coupon (at most 500 off) issued to `user`; returns its id.
async fn coupon_for(app: &TestApp, user: &str) -> String {
    let body = ten_percent_off(app.services.rt.clock.now_ms());
    let response = app
        .post("/coupon-policies", &app.operator(), body, None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let policy: Value = response.json().await.expect("json");
    let path = format!(
        "/coupon-policies/{}/issue",
        policy["id"].as_str().expect("id")
    );
    let token = app.token(user, Role::Customer);
    let response = app.post(&path, &token, json!({}), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let coupon: Value = response.json().await.expect("json");
    coupon["id"].as_str().expect("id").to_string()
}

async fn earn(app: &TestApp, user: &str, points: i64) {
    let body = json!({"amount": points, "description": "welcome"});
    let response = app
        .post(
            &format!("/wallets/{user}/earn"),
            &app.operator(),
            body,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

pub(crate) async fn pay(
    app: &TestApp,
    user: &str,
    order: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let token = app.token(user, Role::Customer);
    app.post(
        &format!("/orders/{order}/pay?wait_secs=20"),
        &token,
        body,
        key,
    )
    .await
}

pub(crate) async fn json_of(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.expect("json")
}

async fn get(app: &TestApp, path: &str) -> Value {
    json_of(app.get(path, &app.operator()).await, StatusCode::OK).await
}

/// The payments the simulator approved.
async fn approved(sim: &Sim) -> Vec<Value> {
    let records = sim.records().await;
    records
        .into_iter()
        .filter(|r| r["kind"] == "payment" && r["status"] == "APPROVED")
        .collect()
}

async fn paying_with_coupon_points_and_card_confirms_with_exact_amounts(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "alice", "SNEAKER", 30).await;
    let coupon = coupon_for(&app, "alice").await;
    earn(&app, "alice", 700).await;
    let body = json!({"coupon_id": coupon, "points": 700, "card_token": "tok_visa"});
    let paid = json_of(pay(&app, "alice", &order, body, None).await, StatusCode::OK).await;

    let amount = 30 * UNIT_PRICE;
    let discount = 300; // 10% of 3,000, under the 500 cap.
    assert_eq!(paid["status"], "CONFIRMED");
    assert_eq!(
        (
            &paid["amount"],
            &paid["discount"],
            &paid["points_used"],
            &paid["card_amount"]
        ),
        (
            &json!(amount),
            &json!(discount),
            &json!(700),
            &json!(amount - discount - 700)
        )
    );
    assert_eq!(paid["coupon_id"], coupon.as_str());
    let charges = approved(&sim).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["amount"], amount - discount - 700);
    assert_eq!(paid["payment_id"], charges[0]["id"]);

    let stock = app.stock("SNEAKER").await;
    assert_eq!(
        (&stock["sold"], &stock["reserved"]),
        (&json!(30), &json!(0))
    );
    assert_eq!(get(&app, "/wallets/alice").await["balance"], 0);
    assert_eq!(
        get(&app, &format!("/coupons/{coupon}")).await["status"],
        "USED"
    );
    assert_eq!(
        get(&app, &format!("/orders/{order}")).await["status"],
        "CONFIRMED"
    );
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(paying_with_coupon_points_and_card_confirms_with_exact_amounts);

async fn a_declined_card_gives_everything_back_and_pay_may_be_tried_again(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "bob", "CAP", 20).await;
    let coupon = coupon_for(&app, "bob").await;
    earn(&app, "bob", 500).await;
    let body = json!({"coupon_id": coupon, "points": 500, "card_token": "tok_decline"});
    let failed = json_of(
        pay(&app, "bob", &order, body, Some("try-1")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failed["status"], "PAYMENT_FAILED");
    assert_eq!(failed["failure"]["code"], "PAYMENT_DECLINED");
    assert_eq!(
        (&failed["discount"], &failed["points_used"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(
        get(&app, &format!("/coupons/{coupon}")).await["status"],
        "ISSUED"
    );
    assert_eq!(get(&app, "/wallets/bob").await["balance"], 500);
    let stock = app.stock("CAP").await;
    assert_eq!(
        (&stock["reserved"], &stock["sold"]),
        (&json!(20), &json!(0)),
        "kept"
    );
    assert!(approved(&sim).await.is_empty());

    // Another try, with another key and a good card.
    let body = json!({"coupon_id": coupon, "points": 500, "card_token": "tok_visa"});
    let paid = json_of(
        pay(&app, "bob", &order, body, Some("try-2")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(paid["status"], "CONFIRMED");
    assert_eq!(paid["card_amount"], 2_000 - 200 - 500);
    assert_eq!(get(&app, "/wallets/bob").await["balance"], 0);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_declined_card_gives_everything_back_and_pay_may_be_tried_again);

async fn paying_twice_with_one_key_charges_once(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "carol", "HAT", 3).await;
    let body = json!({"card_token": "tok_visa"});
    let (first, second) = tokio::join!(
        pay(&app, "carol", &order, body.clone(), Some("k")),
        pay(&app, "carol", &order, body.clone(), Some("k")),
    );
    let statuses = [first.status(), second.status()];
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::OK, StatusCode::CONFLICT].contains(s)),
        "{statuses:?}"
    );
    let again = json_of(
        pay(&app, "carol", &order, body, Some("k")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "CONFIRMED");
    assert_eq!(approved(&sim).await.len(), 1);
    let another = pay(
        &app,
        "carol",
        &order,
        json!({"card_token": "tok_visa"}),
        Some("k2"),
    )
    .await;
    assert_problem(another, StatusCode::CONFLICT, "ORDER_NOT_PAYABLE").await;
    assert_eq!(approved(&sim).await.len(), 1);
    assert_eq!(app.stock("HAT").await["sold"], 3);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(paying_twice_with_one_key_charges_once);

async fn an_expired_order_cannot_be_paid(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, true).await else {
        return;
    };
    let order = placed(&app, "dave", "SCARF", 1).await;
    let clock = app.clock.as_ref().expect("a manual clock");
    clock.advance_ms(i64::try_from(app.settings.orders.pay_within_secs * 1_000).expect("fits"));
    let refused = pay(
        &app,
        "dave",
        &order,
        json!({"card_token": "tok_visa"}),
        None,
    )
    .await;
    assert_problem(refused, StatusCode::CONFLICT, "ORDER_EXPIRED").await;
    assert!(approved(&sim).await.is_empty());
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(an_expired_order_cannot_be_paid);

async fn bad_pay_requests_are_refused_and_change_nothing(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "erin", "SOCK", 2).await;
    for body in [
        json!({"points": -1, "card_token": "tok_visa"}),
        json!({"card_token": ""}),
        json!({"unknown": true}),
    ] {
        let refused = pay(&app, "erin", &order, body, None).await;
        assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let someone_else = pay(
        &app,
        "mallory",
        &order,
        json!({"card_token": "tok_visa"}),
        None,
    )
    .await;
    assert_problem(someone_else, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Nothing to pay the rest with, or more points than the order is worth.
    for body in [json!({}), json!({"points": 300, "card_token": "tok_visa"})] {
        let short = pay(&app, "erin", &order, body, None).await;
        assert_problem(short, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    }
    assert_eq!(
        get(&app, &format!("/orders/{order}")).await["status"],
        "RESERVED"
    );
    assert_eq!(app.stock("SOCK").await["reserved"], 2);
    assert!(sim.records().await.is_empty());
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(bad_pay_requests_are_refused_and_change_nothing);

/// An app on `sim` whose breaker opens at the first failed call (no retries) and stays open
/// for 600 s.
pub(crate) async fn app_with_touchy_breaker(backend: Backend, sim: &Sim) -> Option<TestApp> {
    let options = Options {
        gateway_url: Some(sim.base.clone()),
        tweak: |s| {
            s.gateway.retries_max = 0;
            s.gateway.breaker_failures = 1;
            s.gateway.breaker_cooldown_secs = 600;
        },
        ..Options::default()
    };
    spawn_app_with(backend, options).await
}

async fn an_open_breaker_fails_card_payments_at_once_and_keeps_the_order(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with_touchy_breaker(backend, &sim).await else {
        return;
    };
    let first = placed(&app, "fay", "GLOVE", 1).await;
    sim.set_mode(json!({"mode": "down"})).await;
    // The outage: the charge gets a 503, which opens the breaker.
    let paying = app
        .post(
            &format!("/orders/{first}/pay?wait_secs=0"),
            &app.token("fay", Role::Customer),
            json!({"card_token": "tok_visa"}),
            None,
        )
        .await;
    assert!([StatusCode::OK, StatusCode::ACCEPTED].contains(&paying.status()));
    crate::helpers::eventually_that("the breaker opens", || async {
        get(&app, "/admin/overview").await["gateway"]["breaker"] == "open"
    })
    .await;
    let second = placed(&app, "fay", "BELT", 1).await;
    let calls = sim.calls().await;
    let refused = pay(
        &app,
        "fay",
        &second,
        json!({"card_token": "tok_visa"}),
        None,
    )
    .await;
    assert!(refused.headers().contains_key("Retry-After"));
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "GATEWAY_UNAVAILABLE",
    )
    .await;
    assert_eq!(sim.calls().await, calls, "nothing reached the gateway");
    assert_eq!(
        get(&app, &format!("/orders/{second}")).await["status"],
        "RESERVED"
    );
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(an_open_breaker_fails_card_payments_at_once_and_keeps_the_order);

async fn cancelling_a_paid_order_refunds_card_points_coupon_and_units(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "gus", "JACKET", 10).await;
    let coupon = coupon_for(&app, "gus").await;
    earn(&app, "gus", 400).await;
    let body = json!({"coupon_id": coupon, "points": 400, "card_token": "tok_visa"});
    let paid = json_of(pay(&app, "gus", &order, body, None).await, StatusCode::OK).await;
    assert_eq!(paid["status"], "CONFIRMED");
    let token = app.token("gus", Role::Customer);
    let path = format!("/orders/{order}/cancel");
    let cancel = |key| app.post(&path, &token, json!({}), key);
    let refunded = json_of(cancel(Some("c1")).await, StatusCode::OK).await;
    assert_eq!(refunded["status"], "REFUNDED");

    let records = sim.records().await;
    let refunds: Vec<&Value> = records.iter().filter(|r| r["kind"] == "refund").collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["payment_id"], paid["payment_id"]);
    assert_eq!(refunds[0]["amount"], paid["card_amount"]);
    assert_eq!(get(&app, "/wallets/gus").await["balance"], 400);
    assert_eq!(
        get(&app, &format!("/coupons/{coupon}")).await["status"],
        "ISSUED"
    );
    let stock = app.stock("JACKET").await;
    assert_eq!(
        (&stock["sold"], &stock["on_hand"]),
        (&json!(0), &json!(100))
    );

    // Again, with another key: it is refunded already, nothing moves twice.
    let again = json_of(cancel(Some("c2")).await, StatusCode::OK).await;
    assert_eq!(again["status"], "REFUNDED");
    let records = sim.records().await;
    assert_eq!(records.iter().filter(|r| r["kind"] == "refund").count(), 1);
    assert_eq!(get(&app, "/wallets/gus").await["balance"], 400);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(cancelling_a_paid_order_refunds_card_points_coupon_and_units);
