//! Crash test of coupons and wallets: the real binary, killed with SIGKILL while coupons are
//! being issued and points spent, then started again on the same data. Every acknowledged
//! coupon and transaction must be there (acknowledged <= durable), the counts must agree with
//! what is durable, and no limit may be exceeded, then or after more load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::{rfc3339, Clock, SystemClock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::crash::{kill_9, Node, Server};
use crate::helpers::Backend;
use crate::on_both_stores;

const COUPONS_TOTAL: usize = 700;
const RACERS: usize = 1_000;
const START_BALANCE: i64 = 700;
const SPENDER: &str = "spender";

/// Requests are sent in waves, so that the kill lands while some are still arriving: sent all
/// at once, one group commit would acknowledge them all together.
const WAVE_LEN: usize = 50;
const WAVE_GAP: Duration = Duration::from_millis(20);
/// The kill comes once this many requests are acknowledged.
const KILL_AFTER_ACKS: usize = 200;

/// What the clients were told succeeded before the kill.
#[derive(Default)]
struct Acked {
    coupons: Mutex<Vec<Value>>,
    txs: Mutex<Vec<Value>>,
    count: AtomicUsize,
    enough: Notify,
}

impl Acked {
    fn push(&self, list: &Mutex<Vec<Value>>, value: Value) {
        list.lock().expect("lock").push(value);
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
            self.enough.notify_one();
        }
    }
}

/// A POST that must succeed; its JSON answer.
pub(crate) async fn post(
    node: &Node,
    server: &Server,
    path: &str,
    token: &str,
    body: Value,
) -> Value {
    let response = node
        .call(server, Method::POST, path, token, Some(body))
        .await
        .expect("request");
    assert!(
        response.status().is_success(),
        "POST {path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

/// Sends `RACERS` issues (one per user) and `RACERS` uses of 1 point, in waves; ends when
/// every request has its answer or its error.
fn load(node: &Arc<Node>, base: &str, policy: &str, acked: &Arc<Acked>) -> JoinHandle<()> {
    let client = reqwest::Client::new();
    let issue_url = format!("{base}/api/v1/coupon-policies/{policy}/issue");
    let use_url = format!("{base}/api/v1/wallets/me/use");
    let (node, acked) = (node.clone(), acked.clone());
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            if i % WAVE_LEN == 0 {
                tokio::time::sleep(WAVE_GAP).await;
            }
            let token = node.token(&format!("racer-{i}"), Role::Customer);
            let issue = client.post(&issue_url).bearer_auth(token);
            tasks.push(spawn_acked(issue, acked.clone(), |a| &a.coupons));
            let token = node.token(SPENDER, Role::Customer);
            let body = json!({"amount": 1, "reference": format!("use-{i}")});
            let spend = client.post(&use_url).bearer_auth(token).json(&body);
            tasks.push(spawn_acked(spend, acked.clone(), |a| &a.txs));
        }
        for task in tasks {
            task.await.expect("request task");
        }
    })
}

/// Sends the request; a 201 that arrives in full is acknowledged in `list`.
fn spawn_acked(
    request: reqwest::RequestBuilder,
    acked: Arc<Acked>,
    list: fn(&Acked) -> &Mutex<Vec<Value>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(response) = request.send().await else {
            return;
        };
        if response.status() == StatusCode::CREATED {
            if let Ok(value) = response.json::<Value>().await {
                acked.push(list(&acked), value);
            }
        }
    })
}

/// The spender's whole history, newest first.
async fn history(node: &Node, server: &Server) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/wallets/{SPENDER}/transactions?limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = node.json(server, &path).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}

async fn acknowledged_coupons_and_points_survive_kill_9(backend: Backend) {
    let Some(node) = Node::new(backend, &[]) else {
        return;
    };
    let server = node.start().await;
    let op = node.token("op", Role::Operator);
    let now = SystemClock.now_ms();
    let policy_body = json!({
        "title": "crash", "discount_type": "FIXED", "discount_value": 100,
        "total_quantity": COUPONS_TOTAL, "per_user_limit": 1,
        "starts_at": rfc3339(now - 60_000), "ends_at": rfc3339(now + 3_600_000),
    });
    let policy = post(&node, &server, "/coupon-policies", &op, policy_body).await;
    let policy = policy["id"].as_str().expect("id").to_string();
    let earn = json!({"amount": START_BALANCE});
    post(
        &node,
        &server,
        &format!("/wallets/{SPENDER}/earn"),
        &op,
        earn,
    )
    .await;
    let node = Arc::new(node);
    let acked = Arc::new(Acked::default());
    let load = load(&node, &server.base, &policy, &acked);
    acked.enough.notified().await;
    kill_9(server).await;
    load.await.expect("load");
    let coupons = acked.coupons.lock().expect("lock").clone();
    let txs = acked.txs.lock().expect("lock").clone();

    let server = node.start().await;
    let issued = check_coupons(&node, &server, &policy, &coupons).await;
    check_wallet(&node, &server, &txs).await;
    // The restored count goes on: exactly the rest can still be issued, no more.
    let statuses: Vec<StatusCode> = stream::iter(0..(COUPONS_TOTAL - issued + 20))
        .map(|i| {
            let (node, server, policy) = (&node, &server, &policy);
            async move {
                let token = node.token(&format!("late-{i}"), Role::Customer);
                let path = format!("/coupon-policies/{policy}/issue");
                let response = node
                    .call(server, Method::POST, &path, &token, None)
                    .await
                    .expect("request");
                response.status()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for status in &statuses {
        assert!(
            matches!(*status, StatusCode::CREATED | StatusCode::CONFLICT),
            "late issue answered {status}"
        );
    }
    let more = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(issued + more, COUPONS_TOTAL);
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(acknowledged_coupons_and_points_survive_kill_9);

/// Every acknowledged coupon is in its actor and in its owner's list; the policy's count is
/// what is durable, within the limits. Returns the durable count.
async fn check_coupons(node: &Node, server: &Server, policy: &str, acked: &[Value]) -> usize {
    for coupon in acked {
        let id = coupon["id"].as_str().expect("id");
        assert_eq!(
            &node.json(server, &format!("/coupons/{id}")).await,
            coupon,
            "coupon {id} lost"
        );
    }
    let view = node
        .json(server, &format!("/coupon-policies/{policy}"))
        .await;
    let issued = usize::try_from(view["issued"].as_u64().expect("issued")).expect("fits");
    assert!(
        issued >= acked.len(),
        "{issued} durable < {} acknowledged",
        acked.len()
    );
    assert!(issued <= COUPONS_TOTAL);
    let pages = stream::iter(0..RACERS)
        .map(|i| async move {
            let page = node
                .json(server, &format!("/coupons?user_id=racer-{i}"))
                .await;
            (i, page["items"].as_array().expect("items").clone())
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut listed = 0;
    for (i, items) in pages {
        assert!(items.len() <= 1, "racer-{i} holds {} coupons", items.len());
        listed += items.len();
        let acked_one = acked.iter().find(|c| c["user_id"] == format!("racer-{i}"));
        if let Some(coupon) = acked_one {
            assert_eq!(items.first(), Some(coupon), "racer-{i}'s row lost");
        }
    }
    assert_eq!(listed, issued, "one row per durable coupon");
    issued
}

/// Every acknowledged transaction is in the history, which chains and sums to the balance.
async fn check_wallet(node: &Node, server: &Server, acked: &[Value]) {
    let wallet = node.json(server, &format!("/wallets/{SPENDER}")).await;
    let history = history(node, server).await;
    for tx in acked {
        assert!(history.contains(tx), "acknowledged {tx} lost");
    }
    let uses = history.iter().filter(|t| t["type"] == "USE").count();
    assert!(
        uses >= acked.len(),
        "{uses} durable < {} acknowledged",
        acked.len()
    );
    let mut balance = 0;
    for tx in history.iter().rev() {
        balance += tx["amount"].as_i64().expect("amount");
        assert_eq!(tx["balance_after"], json!(balance), "chain broken at {tx}");
    }
    assert_eq!(wallet["balance"], json!(balance));
    assert_eq!(balance, START_BALANCE - i64::try_from(uses).expect("fits"));
    assert!(balance >= 0);
    assert_eq!(wallet["version"], json!(history.len()));
}
