//! Buying points by card (`POST /wallets/me/charge`) against the real gateway simulator served
//! on a port of its own, on both stores: a charge credits the points once; a decline credits
//! nothing; one key charges once, also when sent twice at once; an open breaker refuses before
//! anything is called; a gateway that cannot be reached is 503 and the same key runs the charge
//! again once it is back; bad bodies change nothing; the charge goes to the caller's own wallet; a
//! charge left between the card and the wallet is credited once when resumed; and a credit the
//! wallet refuses is refunded at the gateway.

use std::net::SocketAddr;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use surge::actors::points_charge::{
    ChargeCommand, ChargeRequest, ChargeStatus, PointsCharge, Step,
};
use surge::actors::wallet::{WalletCommand, AMOUNT_MAX, BALANCE_MAX};
use surge::auth::Role;
use surge::checkout::charge_id;
use surge::error::ErrorCode;

use crate::gateway::Sim;
use crate::helpers::{assert_problem, eventually_that, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;
use crate::pay::{app_with, app_with_touchy_breaker, json_of};

async fn charge(app: &TestApp, user: &str, body: Value, key: Option<&str>) -> reqwest::Response {
    let token = app.token(user, Role::Customer);
    app.post("/wallets/me/charge", &token, body, key).await
}

async fn balance(app: &TestApp, user: &str) -> i64 {
    let wallet = json_of(
        app.get(&format!("/wallets/{user}"), &app.operator()).await,
        StatusCode::OK,
    )
    .await;
    wallet["balance"].as_i64().expect("balance")
}

/// The user's transactions, newest first.
async fn transactions(app: &TestApp, user: &str) -> Vec<Value> {
    let path = format!("/wallets/{user}/transactions");
    let page = json_of(app.get(&path, &app.operator()).await, StatusCode::OK).await;
    page["items"].as_array().expect("items").clone()
}

/// The payments (approved or declined) and refunds the simulator recorded.
async fn records_of(sim: &Sim, kind: &str, status: &str) -> Vec<Value> {
    let records = sim.records().await;
    records
        .into_iter()
        .filter(|r| r["kind"] == kind && r["status"] == status)
        .collect()
}

async fn earn(app: &TestApp, user: &str, amount: i64) {
    let path = format!("/wallets/{user}/earn");
    let body = json!({"amount": amount});
    let earned = app.post(&path, &app.operator(), body, None).await;
    assert_eq!(earned.status(), StatusCode::CREATED);
}

async fn a_charge_pays_at_the_gateway_and_credits_the_points_once(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    earn(&app, "alice", 300).await;
    let body = json!({"amount": 5_000, "card_token": "tok_visa"});
    let tx = json_of(charge(&app, "alice", body, None).await, StatusCode::CREATED).await;
    assert_eq!(
        (&tx["type"], &tx["amount"], &tx["balance_after"]),
        (&json!("CHARGE"), &json!(5_000), &json!(5_300))
    );
    assert_eq!(tx["id"], "alice.0000000002");
    let payments = records_of(&sim, "payment", "APPROVED").await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["amount"], 5_000);
    assert_eq!(payments[0]["card_token"], "tok_visa");
    assert_eq!(tx["reference"], payments[0]["id"], "the gateway's payment");
    assert_eq!(balance(&app, "alice").await, 5_300);
    let history = transactions(&app, "alice").await;
    assert_eq!(history[0], tx, "the history shows the transaction answered");
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_charge_pays_at_the_gateway_and_credits_the_points_once);

async fn a_declined_card_is_402_and_credits_nothing(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    earn(&app, "bob", 300).await;
    let body = json!({"amount": 2_000, "card_token": "tok_decline"});
    let declined = charge(&app, "bob", body.clone(), Some("d-1")).await;
    assert_problem(declined, StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED").await;
    assert_eq!(balance(&app, "bob").await, 300);
    assert_eq!(transactions(&app, "bob").await.len(), 1);
    assert!(records_of(&sim, "payment", "APPROVED").await.is_empty());
    assert_eq!(records_of(&sim, "payment", "DECLINED").await.len(), 1);
    // The same key again: the same answer, and the gateway is not asked again.
    let calls = sim.calls().await;
    let again = charge(&app, "bob", body, Some("d-1")).await;
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    assert_problem(again, StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED").await;
    assert_eq!(sim.calls().await, calls);
    assert_eq!(balance(&app, "bob").await, 300);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_declined_card_is_402_and_credits_nothing);

async fn one_key_charges_once_even_when_sent_twice_at_once(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let body = json!({"amount": 700, "card_token": "tok_visa"});
    let both = join_all((0..2).map(|_| charge(&app, "carol", body.clone(), Some("k")))).await;
    let mut answered = Vec::new();
    for response in both {
        match response.status() {
            StatusCode::CREATED => answered.push(response.json::<Value>().await.expect("json")),
            _ => {
                assert_problem(response, StatusCode::CONFLICT, "IDEMPOTENCY_IN_FLIGHT").await;
            }
        }
    }
    assert!(!answered.is_empty(), "one of the two charged");
    let again = charge(&app, "carol", body.clone(), Some("k")).await;
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let again = json_of(again, StatusCode::CREATED).await;
    assert!(
        answered.iter().all(|tx| *tx == again),
        "{answered:?} vs {again}"
    );
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 1);
    let history = transactions(&app, "carol").await;
    assert_eq!(history.len(), 1, "one CHARGE transaction: {history:?}");
    assert_eq!(balance(&app, "carol").await, 700);
    // The key with another body is refused; another key is another charge.
    let other = json!({"amount": 701, "card_token": "tok_visa"});
    let reused = charge(&app, "carol", other, Some("k")).await;
    assert_problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    json_of(
        charge(&app, "carol", body, Some("k2")).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 2);
    assert_eq!(balance(&app, "carol").await, 1_400);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(one_key_charges_once_even_when_sent_twice_at_once);

async fn an_open_breaker_refuses_at_once_with_retry_after_and_calls_nothing(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with_touchy_breaker(backend, &sim).await else {
        return;
    };
    // An outage opens the breaker: one call answered 503.
    sim.set_mode(json!({"mode": "down"})).await;
    let gateway = &app.services.gateway;
    let probe = gateway
        .charge(1, gateway.currency(), "tok_visa", "probe")
        .await;
    assert!(probe.is_err());
    let calls = sim.calls().await;
    let body = json!({"amount": 900, "card_token": "tok_visa"});
    let refused = charge(&app, "dave", body, Some("b-1")).await;
    assert_eq!(refused.headers()["Retry-After"], "600");
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "GATEWAY_UNAVAILABLE",
    )
    .await;
    assert_eq!(sim.calls().await, calls, "nothing reached the gateway");
    assert_eq!(balance(&app, "dave").await, 0);
    // Nothing was started: the key's charge does not exist.
    let id = charge_id("dave", Some("b-1"));
    let view = (app.services.charges.region())
        .ask(&id, ChargeCommand::Get, None)
        .await
        .expect("a view");
    assert_eq!(view.status, None);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(an_open_breaker_refuses_at_once_with_retry_after_and_calls_nothing);

async fn a_charge_the_gateway_could_not_take_runs_again_with_the_same_key(backend: Backend) {
    // A port bound but not listening: every connection is refused, so the card certainly
    // was not charged; the port stays ours until the gateway serves on it.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&any_port.into()).expect("bound");
    let address = socket.local_addr().expect("its address");
    let address = address.as_socket().expect("an IP address");
    let options = Options {
        gateway_url: Some(format!("http://{address}")),
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let body = json!({"amount": 1_000, "card_token": "tok_visa"});
    let refused = charge(&app, "jill", body.clone(), Some("r-1")).await;
    assert!(refused.headers().contains_key("Retry-After"));
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "GATEWAY_UNAVAILABLE",
    )
    .await;
    assert_eq!(balance(&app, "jill").await, 0);
    // The gateway is back: the same key runs the charge again, once.
    socket.listen(128).expect("listening");
    let sim = Sim::serving(socket.into());
    let again = charge(&app, "jill", body.clone(), Some("r-1")).await;
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let tx = json_of(again, StatusCode::CREATED).await;
    assert_eq!(tx["amount"], 1_000);
    let replayed = charge(&app, "jill", body, Some("r-1")).await;
    assert_eq!(json_of(replayed, StatusCode::CREATED).await, tx);
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 1);
    assert_eq!(balance(&app, "jill").await, 1_000);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_charge_the_gateway_could_not_take_runs_again_with_the_same_key);

/// Earns `user` the largest balance a wallet may hold, straight through the wallet's region.
async fn fill_wallet(app: &TestApp, user: &str) {
    let earns = (0..1_000).map(|_| {
        let command = WalletCommand::Earn {
            amount: AMOUNT_MAX,
            description: None,
            reference: None,
        };
        app.services.wallets.ask(user, command, None)
    });
    for earned in join_all(earns).await {
        earned.expect("earned");
    }
}

async fn bad_charge_bodies_are_refused_and_change_nothing(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    earn(&app, "erin", 300).await;
    for body in [
        json!({"amount": 0, "card_token": "tok_visa"}),
        json!({"amount": -5, "card_token": "tok_visa"}),
        json!({"amount": AMOUNT_MAX + 1, "card_token": "tok_visa"}),
        json!({"amount": "5", "card_token": "tok_visa"}),
        json!({"amount": 5}),
        json!({"card_token": "tok_visa"}),
        json!({"amount": 5, "card_token": ""}),
        json!({"amount": 5, "card_token": "t".repeat(129)}),
        json!({"amount": 5, "card_token": "tok\u{202e}visa"}),
        json!({"amount": 5, "card_token": "tok_visa", "points": 1}),
        json!([5, "tok_visa"]),
    ] {
        let refused = charge(&app, "erin", body.clone(), Some("bad")).await;
        let problem = assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(problem["errors"].is_array(), "{body}: {problem}");
    }
    // A token of 128 characters (not bytes) is taken.
    let long = json!({"amount": 5, "card_token": "토".repeat(128)});
    json_of(charge(&app, "erin", long, None).await, StatusCode::CREATED).await;
    // A balance that would pass its bound.
    fill_wallet(&app, "rich").await;
    let body = json!({"amount": 1, "card_token": "tok_visa"});
    let refused = charge(&app, "rich", body, None).await;
    let problem = assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "amount");
    assert_eq!(balance(&app, "erin").await, 305);
    assert_eq!(transactions(&app, "erin").await.len(), 2);
    assert_eq!(sim.records().await.len(), 1, "only the good charge");
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(bad_charge_bodies_are_refused_and_change_nothing);

async fn a_customer_charges_only_their_own_wallet(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let body = json!({"amount": 400, "card_token": "tok_visa"});
    let tx = json_of(
        charge(&app, "frank", body.clone(), None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(tx["id"], "frank.0000000001");
    // No route charges someone else's wallet.
    let token = app.token("frank", Role::Customer);
    let elsewhere = app.post("/wallets/grace/charge", &token, body, None).await;
    assert_problem(elsewhere, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(balance(&app, "frank").await, 400);
    assert_eq!(balance(&app, "grace").await, 0);
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 1);
    // The charge is the caller's, even with a key someone else used.
    let mine = json!({"amount": 10, "card_token": "tok_visa"});
    json_of(
        charge(&app, "grace", mine.clone(), Some("same")).await,
        StatusCode::CREATED,
    )
    .await;
    json_of(
        charge(&app, "frank", mine, Some("same")).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(balance(&app, "grace").await, 10);
    assert_eq!(balance(&app, "frank").await, 410);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_customer_charges_only_their_own_wallet);

/// Starts a charge straight through its region, as a request would, without driving it.
async fn started(app: &TestApp, user: &str, amount: i64, key: &str) -> String {
    let id = charge_id(user, Some(key));
    let request = ChargeRequest {
        user_id: user.into(),
        amount,
        card_token: "tok_visa".into(),
    };
    let region = app.services.charges.region();
    region
        .ask(&id, ChargeCommand::Start(request), None)
        .await
        .expect("started");
    id
}

async fn a_charge_left_between_the_card_and_the_wallet_is_credited_once_when_resumed(
    backend: Backend,
) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    // As a process that died after the gateway charged, before the outcome was journaled:
    // the step's start is journaled, and the gateway took the money under the step's key.
    let id = started(&app, "hana", 1_200, "crash-1").await;
    let region = app.services.charges.region();
    region
        .ask(&id, ChargeCommand::Next, None)
        .await
        .expect("the charge step starts");
    let shadow = PointsCharge {
        charge_id: id.clone(),
        ..PointsCharge::default()
    };
    let key = shadow.step_key(Step::Charge);
    let gateway = &app.services.gateway;
    let taken = gateway
        .charge(1_200, gateway.currency(), "tok_visa", &key)
        .await;
    let payment = taken.expect("charged").payment_id;

    // What start-up does, and every few seconds after (which may come first: either way).
    app.services.charges.resume_all().await.expect("resumed");
    eventually_that("the charge is credited", || async {
        let view = region
            .ask(&id, ChargeCommand::Get, None)
            .await
            .expect("view");
        view.status == Some(ChargeStatus::Credited)
    })
    .await;
    assert_eq!(balance(&app, "hana").await, 1_200);
    let history = transactions(&app, "hana").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["reference"], payment.as_str());
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 1);
    // The request retried with its key answers the transaction.
    let body = json!({"amount": 1_200, "card_token": "tok_visa"});
    let again = charge(&app, "hana", body, Some("crash-1")).await;
    assert_eq!(json_of(again, StatusCode::CREATED).await, history[0]);
    assert_eq!(records_of(&sim, "payment", "APPROVED").await.len(), 1);
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_charge_left_between_the_card_and_the_wallet_is_credited_once_when_resumed);

async fn a_credit_the_wallet_refuses_is_refunded_at_the_gateway(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    // Full since the request's check: the credit is refused after the card paid.
    fill_wallet(&app, "ivan").await;
    let id = started(&app, "ivan", 3_000, "late").await;
    app.services.charges.drive(&id);
    let wait = std::time::Duration::from_secs(20);
    let view = (app.services.charges)
        .wait_for_end(&id, wait)
        .await
        .expect("ended");
    assert_eq!(view.status, Some(ChargeStatus::Failed));
    let failure = view.charge.failure.as_ref().expect("a failure");
    assert_eq!(failure.code, ErrorCode::ValidationFailed);
    let payments = records_of(&sim, "payment", "APPROVED").await;
    let refunds = records_of(&sim, "refund", "REFUNDED").await;
    assert_eq!((payments.len(), refunds.len()), (1, 1));
    assert_eq!(refunds[0]["payment_id"], payments[0]["id"]);
    assert_eq!(refunds[0]["amount"], 3_000);
    assert_eq!(view.charge.transaction, None);
    assert_eq!(balance(&app, "ivan").await, BALANCE_MAX);
    assert_eq!(
        transactions(&app, "ivan").await[0]["type"],
        "EARN",
        "no charge"
    );
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_credit_the_wallet_refuses_is_refunded_at_the_gateway);
