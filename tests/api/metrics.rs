//! `GET /metrics`: Prometheus text with the HTTP figures per route pattern and the runtime's own
//! figures (journal, actors, live updates); a token can be required by config.

use reqwest::StatusCode;
use surge::auth::Role;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;

/// The value of the sample whose name and labels are exactly `series`, if it is there.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub(crate) async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("request is sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("a text body")
}

async fn metrics_count_requests_by_route_and_show_the_runtime(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("M-1", 10).await;
    let before = scrape(&app).await;
    let stock_gets =
        r#"surge_http_requests_total{method="GET",route="/api/v1/stock-items/{sku}",status="200"}"#;
    let not_found =
        r#"surge_http_requests_total{method="GET",route="/api/v1/stock-items/{sku}",status="404"}"#;
    let timed = r#"surge_http_request_duration_seconds_count{route="/api/v1/stock-items/{sku}"}"#;
    let seen_before = sample(&before, stock_gets).unwrap_or(0.0);
    let timed_before = sample(&before, timed).unwrap_or(0.0);
    for _ in 0..3 {
        app.stock("M-1").await;
    }
    // Not a valid SKU, so the 404 activates no entity (a blank actor for a valid one could
    // still be running at the scrape below and be counted).
    let missing = app.get("/stock-items/NO%20PE", &app.operator()).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // A HEAD is routed as GET but counted as the HEAD it was.
    let head = app
        .client
        .head(app.url("/stock-items/M-1"))
        .bearer_auth(app.operator())
        .send()
        .await
        .expect("sent");
    assert_eq!(head.status(), StatusCode::OK);

    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, stock_gets),
        Some(seen_before + 3.0),
        "{after}"
    );
    assert_eq!(sample(&after, not_found), Some(1.0), "{after}");
    let heads = r#"surge_http_requests_total{method="HEAD",route="/api/v1/stock-items/{sku}",status="200"}"#;
    assert_eq!(sample(&after, heads), Some(1.0), "{after}");
    // The latency histogram counts the same requests, under the pattern and never the path.
    assert_eq!(sample(&after, timed), Some(timed_before + 5.0), "{after}");
    assert!(!after.contains("M-1"), "paths must not become labels");

    // The creation committed events, and the stock item's actor runs.
    assert!(sample(&after, "surge_journal_events_total").is_some_and(|n| n >= 1.0));
    assert!(sample(&after, "surge_journal_batches_total").is_some_and(|n| n >= 1.0));
    assert_eq!(
        sample(
            &after,
            r#"surge_actors{kind="stock_item",status="running"}"#
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(sample(&after, "surge_ws_sessions"), Some(0.0));
    app.stop().await;
}
on_both_stores!(metrics_count_requests_by_route_and_show_the_runtime);

#[tokio::test]
async fn metrics_can_require_an_operator_token() {
    let options = Options::tweaked(|s| s.metrics.require_token = true);
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let url = format!("{}/metrics", app.base);
    let anonymous = app.client.get(&url).send().await.expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let customer = app.token("c-1", Role::Customer);
    let refused = app
        .client
        .get(&url)
        .bearer_auth(&customer)
        .send()
        .await
        .expect("sent");
    assert_problem(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let allowed = app
        .client
        .get(&url)
        .bearer_auth(app.operator())
        .send()
        .await
        .expect("sent");
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(allowed
        .text()
        .await
        .unwrap()
        .contains("surge_uptime_seconds"));
    app.stop().await;
}
