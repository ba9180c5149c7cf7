//! Auth over HTTP (API.md "Auth"), on both stores.

use std::net::IpAddr;

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::persistence::RevocationReason;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;

async fn register_login_refresh_logout_and_roles(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = &app.client;
    let registered = client
        .post(app.url("/auth/register"))
        .json(&json!({"email": "Ann@Example.com", "password": "correct horse", "name": "Ann"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let user: Value = registered.json().await.expect("json");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["roles"], json!(["customer"]));
    let again = client
        .post(app.url("/auth/register"))
        .json(&json!({"email": "ann@example.com", "password": "another one", "name": "Ann"}))
        .send()
        .await
        .expect("sent");
    assert_problem(again, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
    let short = client
        .post(app.url("/auth/register"))
        .json(&json!({"email": "bob@example.com", "password": "short", "name": "Bob"}))
        .send()
        .await
        .expect("sent");
    assert_problem(short, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    // The fields in order, as an array, are not a body: it registers nobody.
    let array = client
        .post(app.url("/auth/register"))
        .json(&json!(["bob@example.com", "correct horse", "Bob"]))
        .send()
        .await
        .expect("sent");
    assert_problem(array, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let as_bob = client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "bob@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("sent");
    assert_problem(as_bob, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let malformed = client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;

    let wrong = client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "ann@example.com", "password": "wrong password"}))
        .send()
        .await
        .expect("sent");
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let pair: Value = client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "ann@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(pair["token_type"], "Bearer");
    let access = pair["access_token"].as_str().expect("access");
    let me: Value = app
        .get("/auth/me", access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["id"], user["id"]);

    let refresh = pair["refresh_token"].clone();
    let rotated = client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("sent");
    assert_eq!(rotated.status(), StatusCode::OK);
    let reused = client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("sent");
    assert_problem(reused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let rotated: Value = rotated.json().await.expect("json");
    let logout = client
        .post(app.url("/auth/logout"))
        .json(&json!({"refresh_token": rotated["refresh_token"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    let id = user["id"].as_str().expect("id");
    let as_customer = app
        .post(
            &format!("/admin/users/{id}/roles"),
            access,
            json!({"roles": ["operator"]}),
            None,
        )
        .await;
    assert_problem(as_customer, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let admin: Value = client
        .post(app.url("/auth/login"))
        .json(&json!({
            "email": app.settings.auth.bootstrap_admin_email,
            "password": app.settings.auth.bootstrap_admin_password,
        }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let admin_token = admin["access_token"].as_str().expect("admin token");
    let promoted = app
        .post(
            &format!("/admin/users/{id}/roles"),
            admin_token,
            json!({"roles": ["operator"]}),
            None,
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(
        promoted.json::<Value>().await.expect("json")["roles"],
        json!(["operator"])
    );
    app.stop().await;
}
on_both_stores!(register_login_refresh_logout_and_roles);

async fn credential_routes_are_throttled_per_email_and_per_address(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|settings| {
            settings.auth.failed_logins_per_minute_per_email_and_address = 3;
            settings.auth.attempts_per_minute_per_address = 8;
        }),
    )
    .await
    else {
        return;
    };
    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url(path))
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    let registered = post(
        "/auth/register",
        json!({"email": "zoe@example.com", "password": "correct horse", "name": "Zoe"}),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let right = json!({"email": "ZOE@example.com", "password": "correct horse"});
    let fine = post("/auth/login", right.clone()).await;
    assert_eq!(fine.status(), StatusCode::OK, "successes do not count");
    let guess = json!({"email": "zoe@example.com", "password": "wrong guess"});
    for _ in 0..4 {
        let wrong = post("/auth/login", guess.clone()).await;
        assert_problem(wrong, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    }
    // Failures past the budget (3): even the right password waits, and says how long.
    let limited = post("/auth/login", right).await;
    let retry_after: u64 = limited
        .headers()
        .get("Retry-After")
        .expect("Retry-After")
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Another account from the same address still has its own budget, until the address's
    // (8 a minute, 7 used) runs out too.
    let other = json!({"email": "nobody@example.com", "password": "whatever1"});
    let unknown = post("/auth/login", other.clone()).await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let address_spent = post("/auth/login", other).await;
    assert_problem(address_spent, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    let register_spent = post(
        "/auth/register",
        json!({"email": "yan@example.com", "password": "correct horse", "name": "Yan"}),
    )
    .await;
    assert_problem(
        register_spent,
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    )
    .await;
    app.stop().await;
}
on_both_stores!(credential_routes_are_throttled_per_email_and_per_address);

/// Posts a JSON body to `path` from `client` (which may bind another source address).
async fn post_from(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("sent")
}

async fn login_from(client: &reqwest::Client, app: &TestApp, email: &str) -> reqwest::Response {
    let body = json!({"email": email, "password": "correct horse"});
    post_from(client, app, "/auth/login", body).await
}

/// Registers `email` with the password "correct horse"; the new user.
async fn register(app: &TestApp, email: &str) -> Value {
    let body = json!({"email": email, "password": "correct horse", "name": "Someone"});
    let registered = post_from(&app.client, app, "/auth/register", body).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    registered.json().await.expect("json")
}

/// The refresh token of a successful login or refresh.
async fn refresh_token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let pair: Value = response.json().await.expect("json");
    pair["refresh_token"]
        .as_str()
        .expect("refresh token")
        .into()
}

async fn a_reused_refresh_token_revokes_its_whole_family(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let user = register(&app, "rae@example.com").await;
    let user_id = user["id"].as_str().expect("id");
    let login_once =
        || async { refresh_token_of(login_from(&app.client, &app, "rae@example.com").await).await };
    let send = |path: &'static str, token: String| {
        let app = &app;
        async move { post_from(&app.client, app, path, json!({"refresh_token": token})).await }
    };
    let refresh = |token: String| send("/auth/refresh", token);
    let untouched = login_once().await;

    // R1 -> R2; R1 again is reuse: 401, and R2, the newest, is dead too.
    let r1 = login_once().await;
    let r2 = refresh_token_of(refresh(r1.clone()).await).await;
    assert_problem(refresh(r1).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_problem(refresh(r2).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // A chain one longer: S1 -> S2 -> S3; S1 again ends S3, the descendant of S2.
    let s1 = login_once().await;
    let s2 = refresh_token_of(refresh(s1.clone()).await).await;
    let s3 = refresh_token_of(refresh(s2).await).await;
    assert_problem(refresh(s1).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_problem(refresh(s3).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Another login of the same user keeps working; its logout ends its chain.
    let next = refresh_token_of(refresh(untouched).await).await;
    let logout = send("/auth/logout", next.clone()).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_problem(
        refresh(next).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;

    let revocations = app
        .services
        .rt
        .store
        .refresh_revocations(user_id, 10)
        .await
        .expect("reads");
    let reasons: Vec<_> = revocations.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            RevocationReason::Reuse,
            RevocationReason::Reuse,
            RevocationReason::Logout
        ],
        "{revocations:?}"
    );
    assert!(revocations.iter().all(|r| r.user_id == user_id));
    app.stop().await;
}
on_both_stores!(a_reused_refresh_token_revokes_its_whole_family);

async fn failed_logins_lock_out_only_the_address_they_come_from(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|settings| {
            settings.auth.failed_logins_per_minute_per_email_and_address = 5;
            settings.auth.attempts_per_minute_per_address = 1000;
        }),
    )
    .await
    else {
        return;
    };
    register(&app, "owner@example.com").await;
    // `app.client` connects from 127.0.0.1: 30 wrong guesses from there.
    let guess = json!({"email": "owner@example.com", "password": "wrong guess"});
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let answer = post_from(&app.client, &app, "/auth/login", guess.clone()).await;
        statuses.push(answer.status());
    }
    // The budget's 5 failures and the one that spends it are checked; the rest are refused
    // (one more is allowed only 12 s later).
    assert_eq!(statuses[..6], [StatusCode::UNAUTHORIZED; 6], "{statuses:?}");
    assert_eq!(
        statuses[6..],
        [StatusCode::TOO_MANY_REQUESTS; 24],
        "{statuses:?}"
    );
    let here = login_from(&app.client, &app, "owner@example.com").await;
    assert_problem(here, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // The owner, from another address, is not locked out.
    let elsewhere = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let owner = login_from(&elsewhere, &app, "owner@example.com").await;
    assert_eq!(owner.status(), StatusCode::OK);
    app.stop().await;
}
on_both_stores!(failed_logins_lock_out_only_the_address_they_come_from);
