//! Coupon policies and coupons over HTTP, on both stores.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::{rfc3339, Clock, SystemClock};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;

const HOUR_MS: i64 = 3_600_000;

fn now_ms(app: &TestApp) -> i64 {
    app.clock
        .as_ref()
        .map_or_else(|| SystemClock.now_ms(), |c| c.now_ms())
}

/// A 10% policy (at most 500 off, orders from 1000) open from a minute ago for an hour.
fn policy_body(app: &TestApp, total_quantity: i64, per_user_limit: i64) -> Value {
    let now = now_ms(app);
    json!({
        "title": "Ten percent off",
        "discount_type": "PERCENTAGE",
        "discount_value": 10,
        "min_order_amount": 1_000,
        "max_discount_amount": 500,
        "total_quantity": total_quantity,
        "per_user_limit": per_user_limit,
        "starts_at": rfc3339(now - 60_000),
        "ends_at": rfc3339(now + HOUR_MS),
    })
}

async fn create_policy(app: &TestApp, body: Value) -> Value {
    let response = app
        .post("/coupon-policies", &app.operator(), body, None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("policy json")
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("id").to_string()
}

async fn issue(app: &TestApp, policy: &str, user: &str, key: Option<&str>) -> reqwest::Response {
    // No body at all: an empty body means the caller.
    let token = app.token(user, Role::Customer);
    let mut request = app
        .client
        .post(app.url(&format!("/coupon-policies/{policy}/issue")))
        .bearer_auth(token);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("request is sent")
}

async fn ok_json(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.expect("json")
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    ok_json(app.get(path, token).await, StatusCode::OK).await
}

async fn five_hundred_users_race_for_fifty_coupons(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let policy = id_of(&create_policy(&app, policy_body(&app, 50, 1)).await);
    let attempts = (0..500).map(|i| {
        let (app, policy) = (&app, &policy);
        async move { issue(app, policy, &format!("racer-{i}"), Some(&format!("k-{i}"))).await }
    });
    let (mut issued, mut refused) = (0, 0);
    for response in join_all(attempts).await {
        if response.status() == StatusCode::CREATED {
            issued += 1;
        } else {
            assert_problem(response, StatusCode::CONFLICT, "COUPON_EXHAUSTED").await;
            refused += 1;
        }
    }
    assert_eq!((issued, refused), (50, 450));
    let op = app.operator();
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &op).await;
    assert_eq!(
        (view["issued"].as_i64(), view["remaining"].as_i64()),
        (Some(50), Some(0))
    );
    let anyone = app.token("someone", Role::Customer);
    let listed = get_json(&app, "/coupon-policies", &anyone).await;
    assert_eq!(listed["items"][0]["id"], json!(policy));
    assert_eq!(listed["items"][0]["issued"], 50);
    app.stop().await;
}
on_both_stores!(five_hundred_users_race_for_fifty_coupons);

async fn one_user_issuing_ten_times_at_once_gets_one(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let policy = id_of(&create_policy(&app, policy_body(&app, 100, 1)).await);
    let attempts = (0..10).map(|i| {
        let (app, policy) = (&app, &policy);
        async move { issue(app, policy, "greedy", Some(&format!("k-{i}"))).await }
    });
    let mut issued = 0;
    for response in join_all(attempts).await {
        if response.status() == StatusCode::CREATED {
            issued += 1;
        } else {
            assert_problem(response, StatusCode::CONFLICT, "COUPON_LIMIT_REACHED").await;
        }
    }
    assert_eq!(issued, 1);
    let greedy = app.token("greedy", Role::Customer);
    let mine = get_json(&app, "/coupons", &greedy).await;
    assert_eq!(mine["items"].as_array().expect("items").len(), 1);
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &greedy).await;
    assert_eq!(view["issued"], 1);
    app.stop().await;
}
on_both_stores!(one_user_issuing_ten_times_at_once_gets_one);

async fn coupons_are_seen_and_used_only_by_their_owner(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let policy = id_of(&create_policy(&app, policy_body(&app, 10, 2)).await);
    let coupon = ok_json(
        issue(&app, &policy, "alice", None).await,
        StatusCode::CREATED,
    )
    .await;
    let coupon_id = id_of(&coupon);
    assert_eq!(coupon_id, format!("{policy}.00000001"));
    assert_eq!(
        (coupon["user_id"].as_str(), coupon["status"].as_str()),
        (Some("alice"), Some("ISSUED"))
    );
    let (alice, bob, op) = (
        app.token("alice", Role::Customer),
        app.token("bob", Role::Customer),
        app.operator(),
    );
    let path = format!("/coupons/{coupon_id}");
    assert_eq!(get_json(&app, &path, &alice).await, coupon);
    assert_eq!(get_json(&app, &path, &op).await, coupon);
    assert_problem(
        app.get(&path, &bob).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let theirs = app.get("/coupons?user_id=alice", &bob).await;
    assert_problem(theirs, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let listed = get_json(&app, "/coupons?user_id=alice", &op).await;
    assert_eq!(listed["items"], json!([coupon]));
    assert_eq!(get_json(&app, "/coupons", &bob).await["items"], json!([]));
    let use_body = json!({"order_amount": 5_000});
    let stolen = app
        .post(&format!("{path}/use"), &bob, use_body.clone(), None)
        .await;
    assert_problem(stolen, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let cancelled = app
        .post(&format!("{path}/cancel"), &bob, json!({}), None)
        .await;
    assert_problem(cancelled, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let for_other = app
        .post(
            &format!("/coupon-policies/{policy}/issue"),
            &bob,
            json!({"user_id": "carol"}),
            None,
        )
        .await;
    assert_problem(for_other, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let by_operator = app
        .post(
            &format!("/coupon-policies/{policy}/issue"),
            &op,
            json!({"user_id": "bob"}),
            None,
        )
        .await;
    let by_operator = ok_json(by_operator, StatusCode::CREATED).await;
    assert_eq!(by_operator["user_id"], "bob");
    assert_eq!(
        get_json(&app, "/coupons", &bob).await["items"],
        json!([by_operator])
    );
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &op).await;
    assert_eq!(
        (view["issued"].as_i64(), view["used"].as_i64()),
        (Some(2), Some(0))
    );
    app.stop().await;
}
on_both_stores!(coupons_are_seen_and_used_only_by_their_owner);

async fn a_coupon_is_used_once_and_a_cancel_gives_it_back(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut body = policy_body(&app, 10, 1);
    body["discount_type"] = json!("FIXED");
    body["discount_value"] = json!(3_000);
    body["min_order_amount"] = json!(5_000);
    let policy = id_of(&create_policy(&app, body).await);
    let coupon = id_of(
        &ok_json(
            issue(&app, &policy, "dora", None).await,
            StatusCode::CREATED,
        )
        .await,
    );
    let dora = app.token("dora", Role::Customer);
    let use_path = format!("/coupons/{coupon}/use");
    let small = app
        .post(&use_path, &dora, json!({"order_amount": 4_999}), None)
        .await;
    assert_problem(small, StatusCode::UNPROCESSABLE_ENTITY, "MIN_ORDER_NOT_MET").await;
    let used = app
        .post(
            &use_path,
            &dora,
            json!({"order_amount": 10_000, "reference": "ord-7"}),
            None,
        )
        .await;
    let used = ok_json(used, StatusCode::OK).await;
    assert_eq!(used["discount"], 3_000);
    assert_eq!(used["coupon"]["status"], "USED");
    assert_eq!(used["coupon"]["reference"], "ord-7");
    let twice = app
        .post(&use_path, &dora, json!({"order_amount": 10_000}), None)
        .await;
    assert_problem(twice, StatusCode::UNPROCESSABLE_ENTITY, "COUPON_NOT_USABLE").await;
    let listed = get_json(&app, "/coupons", &dora).await;
    assert_eq!(
        listed["items"][0]["status"], "USED",
        "the row follows the coupon"
    );
    let policy_view = get_json(&app, &format!("/coupon-policies/{policy}"), &dora).await;
    assert_eq!(policy_view["used"], 1);
    let cancel_path = format!("/coupons/{coupon}/cancel");
    let back = ok_json(
        app.post(&cancel_path, &dora, json!({}), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["status"], "ISSUED");
    assert!(back.get("discount").is_none() && back.get("used_at").is_none());
    let again = ok_json(
        app.post(&cancel_path, &app.operator(), json!({}), None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again, back, "cancelling an issued coupon changes nothing");
    assert_eq!(get_json(&app, "/coupons", &dora).await["items"][0], back);
    let reused = app
        .post(&use_path, &dora, json!({"order_amount": 2_000_000}), None)
        .await;
    assert_eq!(ok_json(reused, StatusCode::OK).await["discount"], 3_000);
    let percent = id_of(&create_policy(&app, policy_body(&app, 10, 1)).await);
    let coupon = id_of(
        &ok_json(
            issue(&app, &percent, "dora", None).await,
            StatusCode::CREATED,
        )
        .await,
    );
    let capped = app
        .post(
            &format!("/coupons/{coupon}/use"),
            &dora,
            json!({"order_amount": 12_345}),
            None,
        )
        .await;
    assert_eq!(
        ok_json(capped, StatusCode::OK).await["discount"],
        500,
        "10% capped at 500"
    );
    app.stop().await;
}
on_both_stores!(a_coupon_is_used_once_and_a_cancel_gives_it_back);

async fn issuing_outside_the_window_is_not_usable(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let mut body = policy_body(&app, 10, 1);
    body["starts_at"] = json!(rfc3339(now_ms(&app) + HOUR_MS));
    body["ends_at"] = json!(rfc3339(now_ms(&app) + 2 * HOUR_MS));
    let policy = id_of(&create_policy(&app, body).await);
    let early = issue(&app, &policy, "eve", None).await;
    assert_problem(early, StatusCode::UNPROCESSABLE_ENTITY, "COUPON_NOT_USABLE").await;
    let clock = app.clock.as_ref().expect("manual clock");
    clock.advance_ms(HOUR_MS);
    let coupon =
        id_of(&ok_json(issue(&app, &policy, "eve", None).await, StatusCode::CREATED).await);
    clock.advance_ms(HOUR_MS);
    let late = issue(&app, &policy, "frank", None).await;
    assert_problem(late, StatusCode::UNPROCESSABLE_ENTITY, "COUPON_NOT_USABLE").await;
    let eve = app.token("eve", Role::Customer);
    let expired = app
        .post(
            &format!("/coupons/{coupon}/use"),
            &eve,
            json!({"order_amount": 5_000}),
            None,
        )
        .await;
    assert_problem(
        expired,
        StatusCode::UNPROCESSABLE_ENTITY,
        "COUPON_NOT_USABLE",
    )
    .await;
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &eve).await;
    assert_eq!(
        (view["issued"].as_i64(), view["used"].as_i64()),
        (Some(1), Some(0))
    );
    app.stop().await;
}
on_both_stores!(issuing_outside_the_window_is_not_usable);

async fn a_retried_issue_or_use_with_its_key_happens_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let policy = id_of(&create_policy(&app, policy_body(&app, 10, 3)).await);
    let first = ok_json(
        issue(&app, &policy, "gus", Some("issue-1")).await,
        StatusCode::CREATED,
    )
    .await;
    let retry = issue(&app, &policy, "gus", Some("issue-1")).await;
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(ok_json(retry, StatusCode::CREATED).await, first);
    let gus = app.token("gus", Role::Customer);
    let use_path = format!("/coupons/{}/use", id_of(&first));
    let body = json!({"order_amount": 3_000});
    let used = ok_json(
        app.post(&use_path, &gus, body.clone(), Some("use-1")).await,
        StatusCode::OK,
    )
    .await;
    let replay = app.post(&use_path, &gus, body, Some("use-1")).await;
    assert_eq!(replay.headers()["Idempotent-Replayed"], "true");
    assert_eq!(ok_json(replay, StatusCode::OK).await, used);
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &gus).await;
    assert_eq!(
        (view["issued"].as_i64(), view["used"].as_i64()),
        (Some(1), Some(1))
    );
    app.stop().await;
}
on_both_stores!(a_retried_issue_or_use_with_its_key_happens_once);

async fn malformed_coupon_requests_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let op = app.operator();
    let policy = id_of(&create_policy(&app, policy_body(&app, 5, 1)).await);
    let mut invalid = policy_body(&app, 0, 0);
    invalid["discount_value"] = json!(150);
    invalid["ends_at"] = invalid["starts_at"].clone();
    let response = app.post("/coupon-policies", &op, invalid, None).await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        [
            "discount_value",
            "total_quantity",
            "per_user_limit",
            "ends_at"
        ]
    );
    let mut bad_type = policy_body(&app, 5, 1);
    bad_type["discount_type"] = json!("BOGUS");
    let mut bad_time = policy_body(&app, 5, 1);
    bad_time["starts_at"] = json!("yesterday");
    for body in [bad_type, bad_time, json!({"title": "no terms"})] {
        let response = app.post("/coupon-policies", &op, body, None).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let customer = app.token("hank", Role::Customer);
    let forbidden = app
        .post("/coupon-policies", &customer, policy_body(&app, 5, 1), None)
        .await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let malformed = app
        .client
        .post(app.url("/coupon-policies"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/coupon-policies/{unknown}"),
        "/coupon-policies/nope".into(),
    ] {
        assert_problem(
            app.get(&path, &customer).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    let missing = issue(&app, &unknown.to_string(), "hank", None).await;
    assert_problem(missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let coupon = id_of(
        &ok_json(
            issue(&app, &policy, "hank", None).await,
            StatusCode::CREATED,
        )
        .await,
    );
    for path in [
        format!("/coupons/{policy}.00000002"),
        format!("/coupons/{policy}"),
        "/coupons/x.1".into(),
    ] {
        assert_problem(
            app.get(&path, &op).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    for body in [
        json!({"order_amount": -1}),
        json!({"order_amount": "lots"}),
        json!({}),
    ] {
        let response = app
            .post(&format!("/coupons/{coupon}/use"), &customer, body, None)
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let listed = get_json(&app, "/coupon-policies", &customer).await;
    assert_eq!(
        listed["items"].as_array().expect("items").len(),
        1,
        "only the valid policy"
    );
    let view = get_json(&app, &format!("/coupon-policies/{policy}"), &op).await;
    assert_eq!(
        (view["issued"].as_i64(), view["used"].as_i64()),
        (Some(1), Some(0))
    );
    app.stop().await;
}
on_both_stores!(malformed_coupon_requests_change_nothing);

/// An issue's body is optional: none, or JSON `null`, issues to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_issue_body_issues_to_the_caller() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let policy = id_of(&create_policy(&app, policy_body(&app, 5, 1)).await);
    let path = format!("/coupon-policies/{policy}/issue");
    let token = app.token("nia", Role::Customer);
    let coupon = ok_json(
        app.post(&path, &token, Value::Null, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(coupon["user_id"], "nia");
    let for_someone_else = app
        .post(&path, &token, json!({"user_id": "omar"}), None)
        .await;
    assert_problem(for_someone_else, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    app.stop().await;
}
