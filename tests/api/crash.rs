//! Crash tests: the real `surge` binary as a child process, killed with SIGKILL mid-load and
//! started again on the same data. Nothing acknowledged may be lost, counts must match, and
//! reservations that fell due while the process was down are released right after start-up.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::{mint_access_token, Role};
use surge::clock::{Clock, SystemClock};
use surge::config::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{postgres_url, test_secret, Backend};
use crate::live::Live;
use crate::on_both_stores;

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

pub(crate) struct Node {
    data_dir: tempfile::TempDir,
    schema: Option<String>,
    env: Vec<(String, String)>,
    client: reqwest::Client,
}

impl Node {
    /// `None` for PostgreSQL without a configured URL.
    pub(crate) fn new(backend: Backend, extra_env: &[(&str, &str)]) -> Option<Node> {
        let mut env: Vec<(String, String)> = vec![
            ("SURGE_AUTH__JWT_SECRET".into(), test_secret().into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        let mut schema = None;
        if backend == Backend::Postgres {
            env.push(("SURGE_DATABASE__URL".into(), postgres_url()?));
            let name = format!("crash_{}", uuid::Uuid::now_v7().simple());
            env.push(("SURGE_DATABASE__SCHEMA".into(), name.clone()));
            schema = Some(name);
        }
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Some(Node {
            data_dir: tempfile::tempdir().expect("temp dir"),
            schema,
            env,
            client: reqwest::Client::new(),
        })
    }

    /// As a fresh install: no signing secret configured, so the server makes its own.
    pub(crate) fn without_secret(mut self) -> Node {
        self.env.retain(|(key, _)| key != "SURGE_AUTH__JWT_SECRET");
        self
    }

    /// Sets `key` in the environment of the next start (a start with other settings).
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub(crate) async fn clean_up(&self) {
        if let Some(schema) = &self.schema {
            crate::helpers::drop_schema(schema).await;
        }
    }

    pub(crate) async fn start(&self) -> Server {
        self.start_later(0).await
    }

    /// Starts the binary with its clock `ahead_ms` ahead of the system clock: a restart that
    /// happens "later", so deadlines fall due while it was down without the test sleeping.
    pub(crate) async fn start_later(&self, ahead_ms: i64) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_surge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir.path())
            .arg(format!("--clock-offset-ms={ahead_ms}"))
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("surge starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("stdout readable") {
                if let Some(addr) = line.strip_prefix("surge listening on ") {
                    return addr.to_string();
                }
            }
            panic!("surge exited before listening");
        });
        let base = read.await.expect("surge listens within 30 s");
        Server { child, base }
    }

    pub(crate) fn token(&self, user: &str, role: Role) -> String {
        let mut auth = Settings::defaults().auth;
        auth.jwt_secret = test_secret().into();
        mint_access_token(&auth, user, &[role], 3600, SystemClock.now_ms()).expect("token")
    }

    pub(crate) async fn call(
        &self,
        server: &Server,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .client
            .request(method, format!("{}/api/v1{path}", server.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await
    }

    pub(crate) async fn json(&self, server: &Server, path: &str) -> Value {
        let op = self.token("op", Role::Operator);
        let response = self
            .call(server, reqwest::Method::GET, path, &op, None)
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// A stock item of `on_hand` units at 100 a unit.
    pub(crate) async fn create_stock(&self, server: &Server, sku: &str, on_hand: i64) {
        let op = self.token("op", Role::Operator);
        let body = json!({"sku": sku, "name": sku, "on_hand": on_hand, "price": 100});
        let response = self
            .call(
                server,
                reqwest::Method::POST,
                "/stock-items",
                &op,
                Some(body),
            )
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn keyed_order(&self, server: &Server, user: &str, key: &str) -> reqwest::Response {
        let token = self.token(user, Role::Customer);
        self.client
            .post(format!("{}/api/v1/orders", server.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"items": [{"sku": "CRASH", "quantity": 1}]}))
            .send()
            .await
            .expect("request")
    }

    /// Every order of every user, via the operator's list.
    async fn all_orders(&self, server: &Server) -> Vec<Value> {
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/orders?limit=500&cursor={c}"),
                None => "/orders?limit=500".to_string(),
            };
            let page = self.json(server, &path).await;
            orders.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return orders,
            }
        }
    }
}

pub(crate) async fn kill_9(mut server: Server) {
    server.child.start_kill().expect("SIGKILL sent");
    server.child.wait().await.expect("child reaped");
}

async fn acknowledged_orders_survive_kill_9(backend: Backend) {
    let Some(node) = Node::new(backend, &[]) else {
        return;
    };
    let server = node.start().await;
    node.create_stock(&server, "CRASH", 10_000).await;
    let keyed = node.keyed_order(&server, "keyed-buyer", "crash-key").await;
    assert_eq!(keyed.status(), StatusCode::CREATED);
    let keyed: Value = keyed.json().await.expect("json");
    let node = Arc::new(node);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let base = server.base.clone();
    let buyers: Vec<_> = (0..600)
        .map(|i| {
            let (node, acked, acked_count, base) = (
                node.clone(),
                acked.clone(),
                acked_count.clone(),
                base.clone(),
            );
            tokio::spawn(async move {
                let token = node.token(&format!("buyer-{i}"), Role::Customer);
                let body = json!({"items": [{"sku": "CRASH", "quantity": 1}]});
                let sent = node
                    .client
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == StatusCode::CREATED {
                        if let Ok(order) = response.json::<Value>().await {
                            let id = order["id"].as_str().expect("id").to_string();
                            acked.lock().expect("lock").push(id);
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    while acked_count.load(Ordering::SeqCst) < 100 {
        tokio::task::yield_now().await;
    }
    kill_9(server).await;
    for buyer in buyers {
        buyer.await.expect("buyer task");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 100);

    let server = node.start().await;
    for id in &acked {
        let order = node.json(&server, &format!("/orders/{id}")).await;
        assert_eq!(order["status"], "RESERVED", "acknowledged order {id} lost");
    }
    let replay = node.keyed_order(&server, "keyed-buyer", "crash-key").await;
    assert_eq!(
        replay.headers()["Idempotent-Replayed"],
        "true",
        "the key survived the crash"
    );
    assert_eq!(
        replay.json::<Value>().await.expect("json")["id"],
        keyed["id"]
    );
    let orders = node.all_orders(&server).await;
    let reserved_orders = orders.iter().filter(|o| o["status"] == "RESERVED").count();
    assert!(reserved_orders >= acked.len());
    let stock = node.json(&server, "/stock-items/CRASH").await;
    assert_eq!(
        stock["reserved"],
        json!(reserved_orders),
        "stock agrees with the orders"
    );
    assert_eq!(stock["on_hand"], 10_000);
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(acknowledged_orders_survive_kill_9);

async fn reservations_due_while_down_are_released_at_start_up(backend: Backend) {
    let Some(node) = Node::new(backend, &[("SURGE_ORDERS__PAY_WITHIN_SECS", "60")]) else {
        return;
    };
    let server = node.start().await;
    node.create_stock(&server, "SHORT", 10).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let token = node.token(&format!("late-{i}"), Role::Customer);
        let body = json!({"items": [{"sku": "SHORT", "quantity": 1}]});
        let response = node
            .call(
                &server,
                reqwest::Method::POST,
                "/orders",
                &token,
                Some(body),
            )
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.expect("json");
        ids.push(order["id"].as_str().expect("id").to_string());
    }
    assert_eq!(
        node.json(&server, "/stock-items/SHORT").await["reserved"],
        5
    );
    kill_9(server).await;
    // The process comes back two minutes "later": the reservations fell due while it was down.
    let server = node.start_later(120_000).await;
    // Polls for up to 20 s: a bound for a loaded machine (the whole suite runs in parallel), not
    // a timing claim; the release itself comes from the deadline scan right after start-up.
    let mut released = false;
    for _ in 0..400 {
        if node.json(&server, "/stock-items/SHORT").await["reserved"] == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "reservations were not released after start-up");
    for id in &ids {
        let order = node.json(&server, &format!("/orders/{id}")).await;
        assert_eq!(order["status"], "EXPIRED");
    }
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(reservations_due_while_down_are_released_at_start_up);

async fn sigterm_drains_flushes_and_exits_zero(backend: Backend) {
    // A drain that waited for open WebSocket sessions would take this whole minute.
    let Some(node) = Node::new(backend, &[("SURGE_SERVER__SHUTDOWN_TIMEOUT_SECS", "60")]) else {
        return;
    };
    let mut server = node.start().await;
    node.create_stock(&server, "TERM", 100).await;
    let token = node.token("t", Role::Customer);
    let body = json!({"items": [{"sku": "TERM", "quantity": 3}]});
    let response = node
        .call(
            &server,
            reqwest::Method::POST,
            "/orders",
            &token,
            Some(body),
        )
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut live = Live::connect_to(&server.base, &token).await;
    live.subscribe("stock:TERM").await;
    assert_eq!(live.next().await["data"]["reserved"], 3);
    let pid = server.child.id().expect("running");
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    assert_eq!(
        live.close_code().await,
        1012,
        "closed for a service restart"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("exits within 30 s")
        .expect("reaped");
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
    let server = node.start().await;
    assert_eq!(node.json(&server, "/stock-items/TERM").await["reserved"], 3);
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(sigterm_drains_flushes_and_exits_zero);

/// A product and an open time sale of `quantity` units, one per user; returns the sale id.
async fn open_sale(node: &Node, server: &Server, quantity: i64) -> String {
    let op = node.token("op", Role::Operator);
    let post = |path: &'static str, body: Value| {
        let op = op.clone();
        async move {
            let response = node
                .call(server, reqwest::Method::POST, path, &op, Some(body))
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
            response.json::<Value>().await.expect("json")
        }
    };
    let product = post("/products", json!({"name": "crash shoe", "price": 10})).await;
    let now = SystemClock.now_ms();
    let sale = post(
        "/time-sales",
        json!({"product_id": product["id"], "quantity": quantity, "sale_price": 5,
            "starts_at": surge::clock::rfc3339(now - 1_000),
            "ends_at": surge::clock::rfc3339(now + 3_600_000)}),
    )
    .await;
    sale["id"].as_str().expect("id").to_string()
}

async fn acknowledged_sale_purchases_survive_kill_9(backend: Backend) {
    let Some(node) = Node::new(backend, &[]) else {
        return;
    };
    let server = node.start().await;
    let sale_id = open_sale(&node, &server, 300).await;
    let node = Arc::new(node);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    // 550 distinct buyers and one greedy user firing 50 times, against 300 units.
    let buyers: Vec<_> = (0..600)
        .map(|i| {
            let user = if i % 12 == 0 {
                "greedy".to_string()
            } else {
                format!("fan-{i}")
            };
            let (node, acked, acked_count) = (node.clone(), acked.clone(), acked_count.clone());
            let url = format!("{}/api/v1/time-sales/{sale_id}/purchase", server.base);
            tokio::spawn(async move {
                let token = node.token(&user, Role::Customer);
                let sent = node
                    .client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == StatusCode::CREATED {
                        if let Ok(order) = response.json::<Value>().await {
                            acked
                                .lock()
                                .expect("lock")
                                .push(order["id"].as_str().expect("id").to_string());
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    while acked_count.load(Ordering::SeqCst) < 60 {
        tokio::task::yield_now().await;
    }
    kill_9(server).await;
    for buyer in buyers {
        buyer.await.expect("buyer task");
    }
    let acked = acked.lock().expect("lock").clone();

    let server = node.start().await;
    for id in &acked {
        let order = node.json(&server, &format!("/orders/{id}")).await;
        assert_eq!(order["status"], "RESERVED", "acknowledged order {id} lost");
    }
    let orders: Vec<Value> = node
        .all_orders(&server)
        .await
        .into_iter()
        .filter(|o| o["source"]["id"] == sale_id.as_str())
        .collect();
    assert!(orders.len() >= acked.len());
    let greedy = orders.iter().filter(|o| o["user_id"] == "greedy").count();
    assert!(
        greedy <= 1,
        "the per-user limit held across the crash: {greedy}"
    );
    let sale = node.json(&server, &format!("/time-sales/{sale_id}")).await;
    assert_eq!(
        sale["reserved"],
        json!(orders.len()),
        "the sale agrees with its orders"
    );
    assert_eq!(sale["remaining"], json!(300 - orders.len()));
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(acknowledged_sale_purchases_survive_kill_9);
