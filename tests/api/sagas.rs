//! `GET /admin/sagas` (API.md "Admin console"): the payment sagas from their read rows, with
//! their steps, filtered by status and paged, against the gateway simulator on both stores.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;

use crate::gateway::Sim;
use crate::helpers::{assert_problem, eventually_that, Backend, TestApp};
use crate::on_both_stores;
use crate::openapi::{document, keys, property_names, schema};
use crate::pay::{app_with, json_of, pay, placed};

async fn sagas(app: &TestApp, query: &str) -> Value {
    let path = format!("/admin/sagas{query}");
    json_of(app.get(&path, &app.operator()).await, StatusCode::OK).await
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

fn order_ids(page: &Value) -> Vec<&str> {
    items(page)
        .iter()
        .map(|s| s["order_id"].as_str().expect("order_id"))
        .collect()
}

/// `[(name, status)]` of a saga's steps; each has its start, and its end once it is not running.
fn steps(saga: &Value) -> Vec<(&str, &str)> {
    let steps = saga["steps"].as_array().expect("steps");
    for step in steps {
        assert!(is_rfc3339(&step["started_at"]), "{step}");
        let running = step["status"] == "RUNNING";
        assert_eq!(step.get("ended_at").is_none(), running, "{step}");
        if !running {
            assert!(is_rfc3339(&step["ended_at"]), "{step}");
        }
    }
    steps
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect()
}

fn is_rfc3339(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && surge::clock::parse_rfc3339(t).is_some())
}

/// Keys of an item as `Saga` in the API document describes it: no more, and all it requires.
fn assert_described(doc: &Value, saga: &Value) {
    let described = schema(doc, "Saga");
    let required: BTreeSet<String> = described["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let sent = keys(saga);
    assert!(sent.is_subset(&property_names(described)), "{saga}");
    assert!(
        required.is_subset(&sent),
        "{saga} lacks some of {required:?}"
    );
    for step in saga["steps"].as_array().unwrap() {
        assert!(keys(step).is_subset(&property_names(schema(doc, "SagaStep"))));
    }
}

async fn paid_and_declined_sagas_are_listed_filtered_and_paged(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let paid = placed(&app, "ann", "SAGA-OK", 2).await;
    let body = json!({"card_token": "tok_visa"});
    let order = json_of(pay(&app, "ann", &paid, body, None).await, StatusCode::OK).await;
    assert_eq!(order["status"], "CONFIRMED");
    let declined = placed(&app, "ben", "SAGA-NO", 1).await;
    let body = json!({"card_token": "tok_decline"});
    let order = json_of(
        pay(&app, "ben", &declined, body, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order["status"], "PAYMENT_FAILED");

    // Both, newest order first.
    let page = sagas(&app, "").await;
    let mut expected = vec![paid.as_str(), declined.as_str()];
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order_ids(&page), expected);
    assert_eq!(page["next_cursor"], Value::Null);
    let find = |id: &str| {
        items(&page)
            .iter()
            .find(|s| s["order_id"] == id)
            .expect("listed")
            .clone()
    };
    let confirmed = find(&paid);
    assert_eq!(
        (
            &confirmed["status"],
            &confirmed["kind"],
            &confirmed["attempt"]
        ),
        (&json!("CONFIRMED"), &json!("PAY"), &json!(1))
    );
    assert!(is_rfc3339(&confirmed["started_at"]));
    assert!(confirmed.get("failure").is_none(), "{confirmed}");
    assert_eq!(
        steps(&confirmed),
        [
            ("begin_pay", "DONE"),
            ("charge_card", "DONE"),
            ("commit_units", "DONE"),
            ("confirm", "DONE"),
        ]
    );
    let failed = find(&declined);
    assert_eq!(
        (&failed["status"], &failed["kind"], &failed["attempt"]),
        (&json!("FAILED"), &json!("PAY"), &json!(1))
    );
    assert_eq!(
        steps(&failed),
        [
            ("begin_pay", "DONE"),
            ("charge_card", "FAILED"),
            ("mark_failed", "DONE"),
        ]
    );
    assert_eq!(failed["failure"]["step"], "charge_card");
    assert_eq!(failed["failure"]["code"], "PAYMENT_DECLINED");
    assert!(failed["failure"]["detail"].is_string());
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    assert_described(&doc, &confirmed);
    assert_described(&doc, &failed);

    // Filters.
    assert_eq!(
        order_ids(&sagas(&app, "?status=FAILED").await),
        [declined.as_str()]
    );
    assert_eq!(
        order_ids(&sagas(&app, "?status=CONFIRMED").await),
        [paid.as_str()]
    );
    assert!(items(&sagas(&app, "?status=in_flight").await).is_empty());
    assert!(items(&sagas(&app, "?status=REFUNDED").await).is_empty());

    // Pages of one.
    let first = sagas(&app, "?limit=1").await;
    assert_eq!(order_ids(&first), [expected[0]]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = sagas(&app, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(order_ids(&second), [expected[1]]);
    assert_eq!(second["next_cursor"], Value::Null);

    // Who may ask, and what.
    let customer = app.token("ann", Role::Customer);
    let refused = app.get("/admin/sagas", &customer).await;
    assert_problem(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let admin = app.token("admin-1", Role::Admin);
    assert_eq!(
        app.get("/admin/sagas", &admin).await.status(),
        StatusCode::OK
    );
    for bad in ["?status=running", "?status=PAYING", "?limit=0", "?cursor="] {
        let response = app
            .get(&format!("/admin/sagas{bad}"), &app.operator())
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(
            problem["errors"][0]["field"].is_string(),
            "{bad}: {problem}"
        );
    }
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(paid_and_declined_sagas_are_listed_filtered_and_paged);

/// The first saga in flight once its last step is the charge; polled, for up to 5 s.
async fn charging(app: &TestApp) -> Value {
    for _ in 0..200 {
        let page = sagas(app, "?status=in_flight").await;
        if let Some(saga) = items(&page).first() {
            let last = saga["steps"].as_array().and_then(|s| s.last());
            if last.is_some_and(|s| s["name"] == "charge_card") {
                return saga.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no charge listed in flight within 5 s");
}

/// A payment held up at the gateway is listed in flight, its charge running, until it ends.
async fn a_slow_charge_is_listed_in_flight_until_it_ends(backend: Backend) {
    let sim = Sim::start();
    let Some(app) = app_with(backend, &sim, false).await else {
        return;
    };
    let order = placed(&app, "cho", "SAGA-SLOW", 1).await;
    sim.set_mode(json!({"mode": "up", "latency_ms": 1500}))
        .await;
    let paying = app
        .post(
            &format!("/orders/{order}/pay?wait_secs=0"),
            &app.token("cho", Role::Customer),
            json!({"card_token": "tok_visa"}),
            None,
        )
        .await;
    assert_eq!(paying.status(), StatusCode::ACCEPTED);
    let charging = charging(&app).await;
    assert_eq!(charging["order_id"], order.as_str());
    assert_eq!(charging["status"], "RUNNING");
    assert_eq!(
        steps(&charging),
        [("begin_pay", "DONE"), ("charge_card", "RUNNING")]
    );
    assert_eq!(
        order_ids(&sagas(&app, "?status=RUNNING").await),
        [order.as_str()]
    );
    eventually_that("the payment ends", || async {
        items(&sagas(&app, "?status=in_flight").await).is_empty()
    })
    .await;
    assert_eq!(
        order_ids(&sagas(&app, "?status=CONFIRMED").await),
        [order.as_str()]
    );
    app.stop().await;
    sim.stop().await;
}
on_both_stores!(a_slow_charge_is_listed_in_flight_until_it_ends);
