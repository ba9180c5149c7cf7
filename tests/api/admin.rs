//! The admin API's actors (API.md "Admin console"): the list with status and figures, one
//! actor's state and latest events, and the snapshot, passivate and restart actions.

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;

use crate::helpers::{assert_problem, eventually_that, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.expect("JSON")
}

fn admin(app: &TestApp) -> String {
    app.token("admin-1", Role::Admin)
}

async fn actors_are_listed_inspected_and_acted_on(backend: Backend) {
    let options = Options::tweaked(|s| s.actors.restart_max = 0);
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    app.create_stock("A-1", 10).await;
    app.create_stock("A-2", 10).await;
    let placed = app.order("u1", "A-1", 2, None).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order: Value = placed.json().await.expect("the order");
    let order_id = order["id"].as_str().expect("an id").to_string();
    let operator = app.operator();

    // The list: both stock items run, with their journal position.
    let list = get_json(&app, "/admin/actors?kind=stock_item", &operator).await;
    let items = list["items"].as_array().expect("items");
    let ids: Vec<&str> = items.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A-1", "A-2"]);
    assert_eq!(items[0]["status"], "running");
    assert_eq!(items[0]["kind"], "stock_item");
    assert_eq!(items[0]["last_seq"], 2, "created, then reserved");
    assert_eq!(items[0]["restarts"], 0);
    // Paging: one at a time, the cursor leads to the second.
    let first = get_json(&app, "/admin/actors?kind=stock_item&limit=1", &operator).await;
    assert_eq!(first["items"][0]["id"], "A-1");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = get_json(
        &app,
        &format!("/admin/actors?kind=stock_item&limit=1&cursor={cursor}"),
        &operator,
    )
    .await;
    assert_eq!(second["items"][0]["id"], "A-2");
    assert_eq!(second["next_cursor"], Value::Null);
    // The order is born in the stock item's commit; reading it activates its own actor.
    let orders = get_json(&app, "/admin/actors?kind=order", &operator).await;
    assert_eq!(orders["items"], json!([]));
    get_json(&app, &format!("/orders/{order_id}"), &operator).await;
    let orders = get_json(&app, "/admin/actors?kind=order", &operator).await;
    assert_eq!(orders["items"][0]["id"], order_id.as_str());

    // One actor: its state and latest events, newest first.
    let detail = get_json(&app, "/admin/actors/stock_item/A-1", &operator).await;
    assert_eq!(detail["state"]["reserved"], 2);
    assert_eq!(detail["recent_events"][0]["seq"], 2);
    assert_eq!(detail["recent_events"][1]["seq"], 1);
    // The reservation names its order as the API does, by UUID.
    let reserved = detail["recent_events"][0]["event"].as_str().unwrap();
    assert!(reserved.contains(order_id.as_str()), "{reserved}");
    assert_eq!(detail["actor"]["status"], "running");
    let unknown = app.get("/admin/actors/stock_item/NEVER", &operator).await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let bad_kind = app.get("/admin/actors/spaceship/A-1", &operator).await;
    assert_problem(bad_kind, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // Actions are for admins; operators read only.
    let refused = app
        .post(
            "/admin/actors/stock_item/A-1/snapshot",
            &operator,
            json!({}),
            None,
        )
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let snapshot = app
        .post(
            "/admin/actors/stock_item/A-1/snapshot",
            &admin(&app),
            json!({}),
            None,
        )
        .await;
    assert_eq!(snapshot.status(), StatusCode::OK);
    let snapshot: Value = snapshot.json().await.unwrap();
    assert_eq!(snapshot["snapshot_seq"], 2);
    assert_eq!(snapshot["actor"]["snapshot_seq"], 2);

    let passivated = app
        .post(
            "/admin/actors/stock_item/A-2/passivate",
            &admin(&app),
            json!({}),
            None,
        )
        .await;
    assert_eq!(passivated.status(), StatusCode::OK);
    eventually_that("A-2 leaves memory", || async {
        !app.services.stock.is_activated("A-2")
    })
    .await;
    let running = get_json(
        &app,
        "/admin/actors?kind=stock_item&status=running",
        &operator,
    )
    .await;
    let ids: Vec<&str> = running["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A-1"]);
    assert_eq!(
        app.stock("A-2").await["on_hand"],
        10,
        "back from durable state"
    );

    // A failed entity (restart_max = 0: its first failure) is listed as failed, then restarted.
    assert!(app.services.stock.inject_panic("A-1"));
    eventually_that("A-1 is marked failed", || async {
        app.services.stock.is_failed("A-1")
    })
    .await;
    let failed = get_json(&app, "/admin/actors?status=failed", &operator).await;
    assert_eq!(failed["items"][0]["id"], "A-1");
    assert_eq!(failed["items"][0]["status"], "failed");
    assert_eq!(failed["items"][0]["restarts"], 1);
    assert!(failed["items"][0]["failure"].as_str().is_some());
    let restarted = app
        .post(
            "/admin/actors/stock_item/A-1/restart",
            &admin(&app),
            json!({}),
            None,
        )
        .await;
    assert_eq!(restarted.status(), StatusCode::OK);
    eventually_that("A-1 is no longer failed", || async {
        !app.services.stock.is_failed("A-1")
    })
    .await;
    assert_eq!(
        app.stock("A-1").await["reserved"],
        2,
        "restarted from the journal"
    );

    // Bad input changes nothing and says why.
    for query in [
        "status=sleeping",
        "kind=spaceship",
        "limit=0",
        "cursor=nonsense",
    ] {
        let bad = app.get(&format!("/admin/actors?{query}"), &operator).await;
        assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    }
    let customer = app.token("c-1", Role::Customer);
    let forbidden = app.get("/admin/actors", &customer).await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let unknown_action = app
        .post(
            "/admin/actors/stock_item/A-1/explode",
            &admin(&app),
            json!({}),
            None,
        )
        .await;
    assert_problem(unknown_action, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.stop().await;
}
on_both_stores!(actors_are_listed_inspected_and_acted_on);

/// The console page, which holds no data, is served to anyone without a token in its address,
/// under a policy that allows its own script only; the supervision tree names each region with
/// its running actors.
async fn the_console_page_and_the_supervision_tree(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    app.create_stock("T-1", 3).await;
    let operator = app.operator();
    for url in [format!("{}/admin", app.base), app.url("/admin")] {
        let page = app.client.get(&url).send().await.expect("sent");
        assert_eq!(page.status(), StatusCode::OK, "{url}");
        let headers = page.headers().clone();
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        let html = page.text().await.unwrap();
        assert!(html.contains("surge console") && html.contains("/admin/console.js"));
        assert!(
            !html.contains("<script>"),
            "no inline script: the policy forbids it"
        );
    }
    let script = app
        .client
        .get(format!("{}/admin/console.js", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(script.status(), StatusCode::OK);
    let script = script.text().await.unwrap();
    assert!(script.contains("/admin/supervision") && script.contains("/auth/login"));
    assert!(
        script.contains("/admin/sagas") && script.contains(".gateway"),
        "the payments panel: sagas and the gateway's breaker"
    );
    assert!(
        !script.contains("innerHTML"),
        "text reaches the page through textContent only"
    );
    assert!(!script.contains("access_token="), "no token in any address");

    let tree = get_json(&app, "/admin/supervision", &operator).await;
    assert_eq!(tree["name"], "surge");
    let regions = tree["children"].as_array().expect("regions");
    assert_eq!(regions.len(), 10, "one supervisor per kind");
    let stock = regions
        .iter()
        .find(|r| r["kind"] == "stock_item")
        .expect("the stock region");
    assert_eq!(stock["name"], "region:stock_item");
    assert_eq!(stock["running"], 1);
    assert_eq!(stock["children"], json!(["stock_item:T-1"]));
    app.stop().await;
}
on_both_stores!(the_console_page_and_the_supervision_tree);
