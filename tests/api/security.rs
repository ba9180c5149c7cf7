//! Secure by default: what a fresh install generates and refuses, tokens kept out of URLs, JSON
//! bodies only, the headers every answer carries, and text that cannot hide what it says.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::{mint_access_token, Role};
use surge::clock::{Clock, SystemClock};
use surge::config::Settings;
use surge::secrets::{ADMIN_PASSWORD_FILE, JWT_SECRET_FILE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crash::{kill_9, Node};
use crate::helpers::{assert_problem, spawn_app, Backend, TestApp};
use crate::on_both_stores;

/// The secret `config/default.toml` shipped with until it stopped shipping one.
const OLD_PUBLISHED_SECRET: &str = "surge-dev-secret-change-me-please-0123456789";

fn read_private(path: &Path) -> String {
    let mode = std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} is private", path.display());
    std::fs::read_to_string(path)
        .expect("readable")
        .trim()
        .to_string()
}

async fn me(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
}

async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Value {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK, "{email} logs in");
    response.json().await.expect("token pair")
}

/// `surge token` with no configured secret, reading the data dir's.
fn cli_token(data_dir: &Path, user: &str, role: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(["token", "--user-id", user, "--role", role, "--data-dir"])
        .arg(data_dir)
        .env_remove("SURGE_AUTH__JWT_SECRET")
        .output()
        .expect("surge token runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A fresh data dir gets its own signing secret and admin password, each in a 0600 file; a
/// restart reuses both; a token signed with the secret once published in this repository is
/// refused; and `surge token` signs with the generated secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_install_generates_private_secrets_that_restarts_reuse() {
    let node = Node::new(Backend::Sqlite, &[])
        .expect("sqlite")
        .without_secret();
    let client = reqwest::Client::new();
    let server = node.start().await;
    let secret = read_private(&node.data_dir().join(JWT_SECRET_FILE));
    let password = read_private(&node.data_dir().join(ADMIN_PASSWORD_FILE));
    assert_eq!(secret.len(), 64, "256 bits, hex");
    assert!(password.len() >= 32);
    let admin = Settings::defaults().auth.bootstrap_admin_email;
    let pair = login(&client, &server.base, &admin, &password).await;
    let access = pair["access_token"].as_str().expect("token").to_string();
    assert_eq!(
        me(&client, &server.base, &access).await.status(),
        StatusCode::OK
    );

    let mut published = Settings::defaults().auth;
    published.jwt_secret = OLD_PUBLISHED_SECRET.to_string();
    let forged = mint_access_token(
        &published,
        "mallory",
        &[Role::Admin],
        600,
        SystemClock.now_ms(),
    )
    .expect("mints");
    let refused = me(&client, &server.base, &forged).await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let operator = cli_token(node.data_dir(), "ops-1", "operator");

    kill_9(server).await;
    let server = node.start().await;
    assert_eq!(read_private(&node.data_dir().join(JWT_SECRET_FILE)), secret);
    assert_eq!(
        read_private(&node.data_dir().join(ADMIN_PASSWORD_FILE)),
        password
    );
    for token in [&access, &operator] {
        let response = me(&client, &server.base, token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "still valid after a restart"
        );
    }
    login(&client, &server.base, &admin, &password).await;
    kill_9(server).await;
}

/// A configured secret that is short or was published refuses to start, saying why.
#[tokio::test]
async fn weak_or_published_secrets_refuse_to_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    for (secret, why) in [
        (OLD_PUBLISHED_SECRET, "published"),
        ("sixteen-bytes-ok", "at least 32 bytes"),
    ] {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_surge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("SURGE_AUTH__JWT_SECRET", secret)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("exits at once")
            .expect("ran");
        assert!(!output.status.success(), "{secret} must not start");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains(why), "{secret}: {said}");
    }
}

async fn balance(app: &TestApp, token: &str) -> i64 {
    let wallet: Value = app
        .get("/wallets/me", token)
        .await
        .json()
        .await
        .expect("json");
    wallet["balance"].as_i64().expect("balance")
}

/// A token in a URL is refused everywhere but on the WebSocket handshake, even next to a good
/// header; and a form post, which any web page can send, is refused for its type.
async fn tokens_stay_out_of_urls_and_bodies_must_be_json(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let customer = app.token("ann", Role::Customer);
    for path in ["/orders", "/wallets/me", "/auth/me"] {
        let url = format!("{}?access_token={customer}", app.url(path));
        let bare = app.client.get(&url).send().await.expect("sent");
        assert_problem(bare, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let with_header = app.client.get(&url).bearer_auth(&customer);
        let refused = with_header.send().await.expect("sent");
        assert_problem(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    let earned = app
        .post(
            "/wallets/ann/earn",
            &app.operator(),
            json!({"amount": 100}),
            None,
        )
        .await;
    assert_eq!(earned.status(), StatusCode::CREATED);
    let form = app
        .client
        .post(app.url("/wallets/me/use"))
        .bearer_auth(&customer)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"amount": 40}"#)
        .send()
        .await
        .expect("sent");
    assert_problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let untyped = app
        .client
        .post(app.url("/wallets/me/use"))
        .bearer_auth(&customer)
        .body(r#"{"amount": 40}"#)
        .send()
        .await
        .expect("sent");
    assert_problem(
        untyped,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_eq!(balance(&app, &customer).await, 100, "nothing was spent");
    let json_use = app
        .post("/wallets/me/use", &customer, json!({"amount": 40}), None)
        .await;
    assert_eq!(json_use.status(), StatusCode::CREATED);
    assert_eq!(balance(&app, &customer).await, 60);
    app.stop().await;
}
on_both_stores!(tokens_stay_out_of_urls_and_bodies_must_be_json);

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("text"))
}

/// nosniff everywhere; a strict policy on the HTML pages; no-store on what is personal;
/// Swagger UI never calls the public validator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let customer = app.token("ann", Role::Customer);
    let wallet = app.get("/wallets/me", &customer).await;
    let refused = app.get("/wallets/bob", &customer).await;
    let health = app.client.get(format!("{}/healthz", app.base)).send().await;
    let nowhere = app.client.get(app.url("/nowhere")).send().await;
    for response in [&wallet, &refused, &health.unwrap(), &nowhere.unwrap()] {
        assert_eq!(header(response, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(response, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(response, "cache-control"), Some("no-store"));
        assert_eq!(
            header(response, "content-security-policy"),
            None,
            "not a page"
        );
    }
    for page in ["/admin", "/docs/"] {
        let response = app
            .client
            .get(format!("{}{page}", app.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let policy = header(&response, "content-security-policy").expect("a policy");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{page}: {policy}"
        );
        assert!(policy.contains("script-src 'self'"), "{page}: {policy}");
        assert!(!policy.contains("unsafe-eval"), "{page}: {policy}");
        assert_eq!(header(&response, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    }
    let init = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .expect("sent");
    let init = init.text().await.expect("text");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    app.stop().await;
}

/// Names and titles refuse control and bidirectional-override characters, and `me` is never a
/// user id: in a wallet path it is the caller.
async fn text_shows_what_it_says_and_me_is_the_caller(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let operator = app.operator();
    for name in ["a\u{0}b", "invoice\u{202e}fdp.exe", "\u{1b}[31mred"] {
        let item = app
            .post(
                "/stock-items",
                &operator,
                json!({"sku": "T-1", "name": name, "on_hand": 1}),
                None,
            )
            .await;
        let body =
            assert_problem(item, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(body["errors"][0]["field"], "name", "{body}");
        let user = app
            .client
            .post(app.url("/auth/register"))
            .json(&json!({"email": "x@example.com", "password": "password-1", "name": name}))
            .send()
            .await
            .expect("sent");
        assert_problem(user, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    }
    let unknown = app.get("/stock-items/T-1", &operator).await;
    assert_eq!(
        unknown.status(),
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    let earned = app
        .post("/wallets/me/earn", &operator, json!({"amount": 7}), None)
        .await;
    assert_eq!(earned.status(), StatusCode::CREATED);
    assert_eq!(
        balance(&app, &operator).await,
        7,
        "the operator's own wallet"
    );
    let by_id: Value = app
        .get("/wallets/operator-1", &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_id["balance"], 7, "the operator is operator-1");
    let mut auth = Settings::defaults().auth;
    auth.jwt_secret = crate::helpers::test_secret().to_string();
    assert!(mint_access_token(&auth, "me", &[Role::Customer], 60, SystemClock.now_ms()).is_err());
    app.stop().await;
}
on_both_stores!(text_shows_what_it_says_and_me_is_the_caller);

/// Malformed HTTP is answered and counted, not logged as a server error; a broken body's
/// answer names no internals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_counted_and_body_errors_name_no_internals() {
    let node = Node::new(Backend::Sqlite, &[]).expect("sqlite");
    let server = node.start().await;
    let address = server.base.trim_start_matches("http://").to_string();
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    for request in [
        "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_string(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connects");
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .expect("answered, then closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("scraped")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("surge_http_protocol_errors_total 2"),
        "{metrics}"
    );
    let gzip_claimed = node
        .client()
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(r#"{"email": "a@b.c", "password": "x"}"#)
        .send()
        .await
        .expect("sent");
    let body = assert_problem(gzip_claimed, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let detail = body["detail"].as_str().expect("detail");
    for internal in ["Custom", "kind", "EOF", "Error"] {
        assert!(!detail.contains(internal), "{detail}");
    }
    kill_9(server).await;
}
