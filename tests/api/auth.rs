//! Auth over HTTP (API.md "Auth"), on both stores.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, Backend};
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
