//! Tickets and seat refunds over HTTP, with the gateway simulator in-process, on both stores: a
//! paid event order carries one signed ticket per seat, which checks in once; forged, other
//! events' and refunded orders' codes are invalid; a refund gives the seats back, voids the
//! tickets and refunds the card once.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;

use crate::events::{availability, create_event, hold, seat_statuses};
use crate::gateway::Sim;
use crate::helpers::{assert_problem, Backend, TestApp};
use crate::on_both_stores;
use crate::openapi::{document, keys, property_names, schema};
use crate::pay::{app_with, json_of, pay};

/// Row 1 costs 1,000 a seat (`events::create_event`).
const ROW_1_PRICE: i64 = 1_000;

/// A CONFIRMED order of `seats` of `event`, held and paid by card by `user`.
async fn bought(app: &TestApp, user: &str, event: &str, seats: &[&str]) -> Value {
    let held = hold(app, user, event, json!({ "seat_ids": seats })).await;
    let held = json_of(held, StatusCode::CREATED).await;
    assert!(held.get("tickets").is_none(), "a RESERVED order has none");
    let order = held["id"].as_str().expect("id");
    let body = json!({"card_token": "tok_visa"});
    let paid = json_of(pay(app, user, order, body, None).await, StatusCode::OK).await;
    assert_eq!(paid["status"], "CONFIRMED", "{paid}");
    paid
}

/// Seat id -> code of an order's tickets.
fn codes_of(order: &Value) -> Vec<(String, String)> {
    order["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| {
            let seat = t["seat_id"].as_str().expect("seat_id");
            (
                seat.to_string(),
                t["code"].as_str().expect("code").to_string(),
            )
        })
        .collect()
}

async fn check_in(app: &TestApp, event: &str, code: &str, key: Option<&str>) -> Response {
    let path = format!("/events/{event}/check-in");
    app.post(&path, &app.operator(), json!({ "code": code }), key)
        .await
}

async fn order_of(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/orders/{id}"), &app.operator()).await;
    json_of(response, StatusCode::OK).await
}

fn status_of(statuses: &[(String, String)], seat: &str) -> String {
    let found = statuses
        .iter()
        .find(|(id, _)| id == seat)
        .expect("the seat");
    found.1.clone()
}

async fn a_paid_event_order_carries_tickets_that_check_in_once(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let event = create_event(&app, 1, 4, json!({})).await;
    let paid = bought(&app, "ann", &event, &["A-1-1", "A-1-2"]).await;
    let order = paid["id"].as_str().expect("id");
    let tickets = codes_of(&paid);
    let seats: Vec<&str> = tickets.iter().map(|(seat, _)| seat.as_str()).collect();
    assert_eq!(seats, ["A-1-1", "A-1-2"]);
    assert_ne!(tickets[0].1, tickets[1].1, "a code per seat");
    assert_eq!(
        codes_of(&order_of(&app, order).await),
        tickets,
        "the same on read"
    );
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    assert_eq!(keys(&paid), property_names(schema(&doc, "OrderView")));
    let ticket_keys = property_names(schema(&doc, "SeatTicket"));
    assert_eq!(keys(&paid["tickets"][0]), ticket_keys);

    let first = check_in(&app, &event, &tickets[0].1, None).await;
    let first = json_of(first, StatusCode::OK).await;
    assert_eq!(first, json!({"seat_id": "A-1-1", "order_id": order}));
    assert_eq!(keys(&first), property_names(schema(&doc, "CheckInView")));
    let again = check_in(&app, &event, &tickets[0].1, None).await;
    assert_problem(again, StatusCode::CONFLICT, "ALREADY_CHECKED_IN").await;

    // With a key, a retry answers the first check-in again.
    let keyed = check_in(&app, &event, &tickets[1].1, Some("gate-1")).await;
    let keyed = json_of(keyed, StatusCode::OK).await;
    let replayed = check_in(&app, &event, &tickets[1].1, Some("gate-1")).await;
    assert_eq!(
        replayed
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(json_of(replayed, StatusCode::OK).await, keyed);

    // Customers do not check in; a checked-in seat is still SOLD to everyone else.
    let path = format!("/events/{event}/check-in");
    let customer = app.token("ann", Role::Customer);
    let body = json!({ "code": tickets[0].1 });
    let refused = app.post(&path, &customer, body, None).await;
    assert_problem(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let statuses = seat_statuses(&app, &event).await;
    assert_eq!(status_of(&statuses, "A-1-1"), "SOLD");
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_paid_event_order_carries_tickets_that_check_in_once);

/// `code` with one character of its payload changed.
fn flipped(code: &str) -> String {
    let mut bytes = code.as_bytes().to_vec();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

async fn forged_other_events_and_refunded_codes_are_invalid(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let final_match = create_event(&app, 1, 4, json!({})).await;
    let concert = create_event(&app, 1, 4, json!({})).await;
    let paid = bought(&app, "ben", &final_match, &["A-1-3"]).await;
    let elsewhere = bought(&app, "cat", &concert, &["A-1-3"]).await;
    let code = codes_of(&paid).remove(0).1;
    let other_code = codes_of(&elsewhere).remove(0).1;

    let invalid = [
        flipped(&code),
        other_code.clone(),
        "not-a-ticket".to_string(),
        String::new(),
    ];
    for bad in &invalid {
        let response = check_in(&app, &final_match, bad, None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "TICKET_INVALID").await;
    }
    let path = format!("/events/{final_match}/check-in");
    let no_code = app.post(&path, &app.operator(), json!({}), None).await;
    assert_problem(
        no_code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // Checked in, then refunded all the same: the code is void from then on.
    json_of(
        check_in(&app, &final_match, &code, None).await,
        StatusCode::OK,
    )
    .await;
    let order = paid["id"].as_str().expect("id");
    let token = app.token("ben", Role::Customer);
    let cancel = app
        .post(&format!("/orders/{order}/cancel"), &token, json!({}), None)
        .await;
    let refunded = json_of(cancel, StatusCode::OK).await;
    assert_eq!(refunded["status"], "REFUNDED");
    assert!(refunded.get("tickets").is_none(), "{refunded}");
    assert!(order_of(&app, order).await.get("tickets").is_none());
    let void = check_in(&app, &final_match, &code, None).await;
    assert_problem(void, StatusCode::UNPROCESSABLE_ENTITY, "TICKET_INVALID").await;
    let statuses = seat_statuses(&app, &final_match).await;
    assert_eq!(status_of(&statuses, "A-1-3"), "AVAILABLE");
    // The other event's ticket still admits at its own door.
    json_of(
        check_in(&app, &concert, &other_code, None).await,
        StatusCode::OK,
    )
    .await;
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(forged_other_events_and_refunded_codes_are_invalid);

async fn refunding_an_event_order_gives_the_seats_back_and_refunds_the_card_once(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let event = create_event(&app, 1, 4, json!({})).await;
    let paid = bought(&app, "dan", &event, &["A-1-1", "A-1-2"]).await;
    assert_eq!(paid["card_amount"], 2 * ROW_1_PRICE);
    assert_eq!(
        availability(&app, &event).await,
        json!({"available": 2, "held": 0, "sold": 2})
    );

    let order = paid["id"].as_str().expect("id");
    let token = app.token("dan", Role::Customer);
    let path = format!("/orders/{order}/cancel");
    let cancel = |key| app.post(&path, &token, json!({}), key);
    let refunded = json_of(cancel(Some("r1")).await, StatusCode::OK).await;
    assert_eq!(refunded["status"], "REFUNDED");
    let again = json_of(cancel(Some("r2")).await, StatusCode::OK).await;
    assert_eq!(again["status"], "REFUNDED");

    let records = sim.records().await;
    let refunds: Vec<&Value> = records.iter().filter(|r| r["kind"] == "refund").collect();
    assert_eq!(refunds.len(), 1, "{records:?}");
    assert_eq!(refunds[0]["payment_id"], paid["payment_id"]);
    assert_eq!(refunds[0]["amount"], paid["card_amount"]);
    assert_eq!(
        availability(&app, &event).await,
        json!({"available": 4, "held": 0, "sold": 0})
    );
    let statuses = seat_statuses(&app, &event).await;
    assert!(statuses.iter().all(|(_, status)| status == "AVAILABLE"));

    // On sale again: someone else buys one of them.
    bought(&app, "eve", &event, &["A-1-2"]).await;
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(refunding_an_event_order_gives_the_seats_back_and_refunds_the_card_once);
