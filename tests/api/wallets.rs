//! Wallets over HTTP, on both stores.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;

use crate::helpers::{assert_problem, spawn_app, Backend, TestApp};
use crate::on_both_stores;

async fn earn(app: &TestApp, user: &str, amount: i64, key: Option<&str>) -> reqwest::Response {
    let body = json!({"amount": amount, "description": "welcome points"});
    app.post(&format!("/wallets/{user}/earn"), &app.operator(), body, key)
        .await
}

async fn spend(app: &TestApp, user: &str, amount: i64, key: Option<&str>) -> reqwest::Response {
    let token = app.token(user, Role::Customer);
    let body = json!({"amount": amount, "reference": "order-1"});
    app.post("/wallets/me/use", &token, body, key).await
}

async fn created(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("transaction json")
}

async fn wallet(app: &TestApp, user: &str) -> Value {
    let response = app.get(&format!("/wallets/{user}"), &app.operator()).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("wallet json")
}

/// The whole history, newest first, read page by page.
async fn history(app: &TestApp, user: &str, page_size: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/wallets/{user}/transactions?limit={page_size}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let response = app.get(&path, &app.operator()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.expect("page json");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}

/// Oldest first, each `balance_after` is the previous one plus the amount; returns the sum.
fn assert_chain(newest_first: &[Value]) -> i64 {
    let mut balance = 0;
    for tx in newest_first.iter().rev() {
        balance += tx["amount"].as_i64().expect("amount");
        assert_eq!(tx["balance_after"], json!(balance), "chain broken at {tx}");
    }
    balance
}

async fn a_hundred_parallel_uses_spend_exactly_the_balance(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    created(earn(&app, "spender", 500, None).await).await;
    let uses = (0..100).map(|_| spend(&app, "spender", 10, None));
    let mut accepted = 0;
    let mut refused = 0;
    for response in join_all(uses).await {
        match response.status() {
            StatusCode::CREATED => accepted += 1,
            _ => {
                assert_problem(response, StatusCode::CONFLICT, "INSUFFICIENT_POINTS").await;
                refused += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (50, 50));
    let wallet = wallet(&app, "spender").await;
    assert_eq!(wallet["balance"], 0);
    assert_eq!(wallet["version"], 51);
    let history = history(&app, "spender", 20).await;
    assert_eq!(history.len(), 51);
    assert_eq!(assert_chain(&history), 0, "the history sums to the balance");
    let ids: Vec<&str> = history
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(ids[50], "spender.0000000001");
    assert_eq!(history[0]["type"], "USE");
    assert_eq!(history[0]["amount"], -10);
    app.stop().await;
}
on_both_stores!(a_hundred_parallel_uses_spend_exactly_the_balance);

async fn customers_see_only_their_own_wallet(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    created(earn(&app, "alice", 100, None).await).await;
    let alice = app.token("alice", Role::Customer);
    let bob = app.token("bob", Role::Customer);
    let mine = app.get("/wallets/me", &alice).await;
    assert_eq!(mine.status(), StatusCode::OK);
    let mine: Value = mine.json().await.expect("json");
    assert_eq!(
        mine,
        json!({"user_id": "alice", "balance": 100, "version": 1})
    );
    assert_eq!(
        app.get("/wallets/alice", &alice).await.status(),
        StatusCode::OK
    );
    for path in ["/wallets/alice", "/wallets/alice/transactions"] {
        assert_problem(
            app.get(path, &bob).await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
    }
    let blank: Value = app
        .get("/wallets/me", &bob)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(blank, json!({"user_id": "bob", "balance": 0, "version": 0}));
    let empty: Value = app
        .get("/wallets/me/transactions", &bob)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(empty, json!({"items": [], "next_cursor": null}));
    let own: Value = app
        .get("/wallets/me/transactions", &alice)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(own["items"][0]["id"], "alice.0000000001");
    let self_earn = app
        .post("/wallets/bob/earn", &bob, json!({"amount": 5}), None)
        .await;
    assert_problem(self_earn, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let self_cancel = app
        .post(
            "/wallets/alice/transactions/alice.0000000001/cancel",
            &alice,
            json!({}),
            None,
        )
        .await;
    assert_problem(self_cancel, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(wallet(&app, "alice").await["balance"], 100);
    assert_eq!(wallet(&app, "bob").await["version"], 0);
    app.stop().await;
}
on_both_stores!(customers_see_only_their_own_wallet);

async fn cancel(app: &TestApp, user: &str, tx: &str) -> reqwest::Response {
    let path = format!("/wallets/{user}/transactions/{tx}/cancel");
    app.post(&path, &app.operator(), json!({}), None).await
}

async fn cancelling_follows_the_rules(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let earned = created(earn(&app, "carol", 100, None).await).await;
    let used = created(spend(&app, "carol", 30, None).await).await;
    let (earned_id, used_id) = (
        earned["id"].as_str().expect("id"),
        used["id"].as_str().expect("id"),
    );
    let spent = cancel(&app, "carol", earned_id).await;
    assert_problem(spent, StatusCode::CONFLICT, "INSUFFICIENT_POINTS").await;
    let reversal = created(cancel(&app, "carol", used_id).await).await;
    assert_eq!(reversal["type"], "CANCEL");
    assert_eq!(reversal["amount"], 30);
    assert_eq!(reversal["cancels"], used_id);
    assert_eq!(reversal["balance_after"], 100);
    let again = cancel(&app, "carol", used_id).await;
    assert_problem(again, StatusCode::CONFLICT, "ALREADY_CANCELLED").await;
    let of_reversal = cancel(&app, "carol", reversal["id"].as_str().expect("id")).await;
    assert_problem(of_reversal, StatusCode::CONFLICT, "CONFLICT").await;
    for unknown in ["carol.0000000009", "dave.0000000001", "carol.1", "nonsense"] {
        let response = cancel(&app, "carol", unknown).await;
        assert_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let last = created(cancel(&app, "carol", earned_id).await).await;
    assert_eq!(
        (last["amount"].as_i64(), last["balance_after"].as_i64()),
        (Some(-100), Some(0))
    );
    let history = history(&app, "carol", 50).await;
    assert_eq!(history.len(), 4);
    assert_eq!(assert_chain(&history), 0);
    assert_eq!(wallet(&app, "carol").await["balance"], 0);
    app.stop().await;
}
on_both_stores!(cancelling_follows_the_rules);

async fn a_retried_earn_or_use_with_its_key_happens_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let first = created(earn(&app, "dan", 80, Some("earn-1")).await).await;
    let retry = earn(&app, "dan", 80, Some("earn-1")).await;
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(created(retry).await, first);
    let first_use = created(spend(&app, "dan", 20, Some("use-1")).await).await;
    let retry_use = spend(&app, "dan", 20, Some("use-1")).await;
    assert_eq!(retry_use.headers()["Idempotent-Replayed"], "true");
    assert_eq!(created(retry_use).await, first_use);
    let reused = spend(&app, "dan", 21, Some("use-1")).await;
    assert_problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    let wallet = wallet(&app, "dan").await;
    assert_eq!(
        (wallet["balance"].as_i64(), wallet["version"].as_i64()),
        (Some(60), Some(2))
    );
    app.stop().await;
}
on_both_stores!(a_retried_earn_or_use_with_its_key_happens_once);

async fn malformed_wallet_requests_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    created(earn(&app, "erin", 50, None).await).await;
    let erin = app.token("erin", Role::Customer);
    let invalid = [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 1_000_000_000_001_i64}),
        json!({"amount": "ten"}),
        json!({"description": "no amount"}),
        json!({"amount": 5, "description": "x".repeat(201)}),
    ];
    for body in invalid {
        let response = app.post("/wallets/me/use", &erin, body.clone(), None).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let response = app
            .post("/wallets/erin/earn", &app.operator(), body, None)
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
        .post(app.url("/wallets/me/use"))
        .bearer_auth(&erin)
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let bad_user = earn(&app, "not%20a%20user", 5, None).await;
    assert_problem(bad_user, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let bad_cursor = app.get("/wallets/me/transactions?cursor=", &erin).await;
    assert_problem(
        bad_cursor,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let wallet = wallet(&app, "erin").await;
    assert_eq!(
        (wallet["balance"].as_i64(), wallet["version"].as_i64()),
        (Some(50), Some(1))
    );
    assert_eq!(history(&app, "erin", 50).await.len(), 1);
    app.stop().await;
}
on_both_stores!(malformed_wallet_requests_change_nothing);
